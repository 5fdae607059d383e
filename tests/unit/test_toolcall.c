/* Tests of the tool-call parsers and grammars (src/toolcall):
 *  - renderings: for each family, the text a published chat template renders for a known
 *    tool call (testdata/chat-templates/cases.json, scenario s4: get_weather(city="Paris",
 *    unit="c")), cut where the model's output would be, parses back to that call; the
 *    template's family is detected from its source;
 *  - hand-written model outputs: several and parallel calls, surrounding content, reasoning,
 *    malformed blocks (content, verbatim), built-in tools, ids;
 *  - streaming: for every case and every split point (and byte by byte), the events add up
 *    to the one-shot message, and text that may start a call is held back;
 *  - grammars: for each family, the grammar built from the tools accepts the renderings of
 *    valid calls and rejects invalid arguments and unknown functions (grammar matcher over
 *    bytes); auto grammars accept plain text;
 *  - allocation failures. */
#include "test.h"

#include "ruvllm.h"
#include "util/util.h"

#include <ctype.h>
#include <jansson.h>

/* the case tables leave trailing fields out */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

static char g_err[1024];

/* ---- the message ------------------------------------------------------------------ */

typedef struct want_call {
    const char *name;
    const char *args; /* JSON, compared as values */
} want_call;

typedef struct msg {
    char *content; /* NULL: null */
    char *reasoning;
    int n;
    char *id[16], *name[16], *args[16];
} msg;

static void msg_free(msg *m) {
    free(m->content);
    free(m->reasoning);
    for (int i = 0; i < m->n; i++) free(m->id[i]), free(m->name[i]), free(m->args[i]);
    memset(m, 0, sizeof *m);
}

static char *dupn(const char *s, size_t n) {
    char *p = malloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* The message JSON rl_toolcall_parse returns, checked for shape. */
static bool msg_from_json(const char *js, msg *m) {
    memset(m, 0, sizeof *m);
    json_error_t je;
    json_t *j = json_loads(js, 0, &je);
    if (!j) {
        fprintf(stderr, "result is not JSON: %s (%s)\n", je.text, js);
        return false;
    }
    bool ok = json_is_object(j) && json_is_string(json_object_get(j, "role")) &&
              strcmp(json_string_value(json_object_get(j, "role")), "assistant") == 0;
    json_t *c = json_object_get(j, "content");
    if (json_is_string(c))
        m->content = dupn(json_string_value(c), json_string_length(c));
    else
        ok = ok && json_is_null(c);
    json_t *r = json_object_get(j, "reasoning_content");
    if (json_is_string(r)) m->reasoning = dupn(json_string_value(r), json_string_length(r));
    json_t *tc = json_object_get(j, "tool_calls");
    if (tc) {
        ok = ok && json_is_array(tc) && json_array_size(tc) > 0 && json_array_size(tc) <= 16;
        size_t i;
        json_t *e;
        json_array_foreach(tc, i, e) {
            if (i >= 16) break;
            json_t *f = json_object_get(e, "function");
            const char *id = json_string_value(json_object_get(e, "id"));
            const char *ty = json_string_value(json_object_get(e, "type"));
            const char *nm = json_string_value(json_object_get(f, "name"));
            const char *ar = json_string_value(json_object_get(f, "arguments"));
            ok = ok && id && ty && strcmp(ty, "function") == 0 && nm && ar;
            m->id[m->n] = strdup(id ? id : "");
            m->name[m->n] = strdup(nm ? nm : "");
            m->args[m->n] = strdup(ar ? ar : "");
            m->n++;
            /* arguments: the text of a JSON object */
            json_t *a = ar ? json_loads(ar, JSON_DECODE_INT_AS_REAL, &je) : NULL;
            ok = ok && json_is_object(a);
            json_decref(a);
        }
    } else {
        ok = ok && m->content; /* no calls: content is a string */
    }
    json_decref(j);
    if (!ok) fprintf(stderr, "bad message shape: %s\n", js);
    return ok;
}

static bool json_text_equal(const char *a, const char *b) {
    json_t *x = json_loads(a, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL),
           *y = json_loads(b, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, NULL);
    bool eq = x && y && json_equal(x, y);
    json_decref(x);
    json_decref(y);
    return eq;
}

static char *parse(rl_toolcall_family f, const char *text, size_t len, uint32_t flags,
                   const char *tools) {
    rl_toolcall_params p = rl_toolcall_default_params();
    p.flags = flags;
    p.id_seed = 42;
    p.tools_json = tools;
    char *out = NULL;
    rl_status st = rl_toolcall_parse(f, text, len, &p, &out, g_err, sizeof g_err);
    if (st != RL_OK) {
        fprintf(stderr, "rl_toolcall_parse: %s: %s\n", rl_status_str(st), g_err);
        return NULL;
    }
    return out;
}

/* Check text parses (family f) to content `content` (NULL: null), reasoning and calls. */
static void check_msg(const char *where, rl_toolcall_family f, const char *text, uint32_t flags,
                      const char *tools, const char *content, const char *reasoning,
                      const want_call *calls, int n_calls) {
    char *js = parse(f, text, strlen(text), flags, tools);
    CHECKF(js != NULL, "%s: parse failed", where);
    if (!js) return;
    msg m;
    bool shape = msg_from_json(js, &m);
    CHECKF(shape, "%s: shape", where);
    if (content)
        CHECKF(m.content && strcmp(m.content, content) == 0, "%s: content [%s], want [%s]\n  %s",
               where, m.content ? m.content : "(null)", content, js);
    else
        CHECKF(!m.content, "%s: content [%s], want null\n  %s", where, m.content, js);
    if (reasoning)
        CHECKF(m.reasoning && strcmp(m.reasoning, reasoning) == 0, "%s: reasoning [%s], want [%s]",
               where, m.reasoning ? m.reasoning : "(none)", reasoning);
    else
        CHECKF(!m.reasoning, "%s: reasoning [%s], want none", where, m.reasoning);
    CHECKF(m.n == n_calls, "%s: %d calls, want %d\n  %s", where, m.n, n_calls, js);
    for (int i = 0; i < m.n && i < n_calls; i++) {
        CHECKF(strcmp(m.name[i], calls[i].name) == 0, "%s: call %d name [%s], want [%s]", where, i,
               m.name[i], calls[i].name);
        CHECKF(json_text_equal(m.args[i], calls[i].args), "%s: call %d arguments [%s], want [%s]",
               where, i, m.args[i], calls[i].args);
        CHECKF(strlen(m.id[i]) > 0, "%s: call %d: empty id", where, i);
        for (int k = 0; k < i; k++)
            CHECKF(strcmp(m.id[i], m.id[k]) != 0, "%s: ids %d and %d equal", where, k, i);
    }
    msg_free(&m);
    rl_free_string(js);
}

/* ---- streaming = one-shot ------------------------------------------------------------ */

typedef struct acc {
    char *content, *reasoning;
    size_t nc, nr;
    bool has_c, has_r;
    int n;
    char *id[16], *name[16], *args[16];
    size_t na[16];
    bool order_ok;
} acc;

static void acc_add(char **p, size_t *n, const char *s, size_t len) {
    *p = realloc(*p, *n + len + 1);
    memcpy(*p + *n, s, len);
    *n += len;
    (*p)[*n] = 0;
}

static void acc_events(acc *a, const rl_toolcall_event *ev, size_t n) {
    for (size_t i = 0; i < n; i++) {
        const rl_toolcall_event *e = &ev[i];
        switch (e->type) {
        case RL_TOOLCALL_EV_CONTENT:
            acc_add(&a->content, &a->nc, e->text, e->len);
            a->has_c = true;
            break;
        case RL_TOOLCALL_EV_REASONING:
            acc_add(&a->reasoning, &a->nr, e->text, e->len);
            a->has_r = true;
            break;
        case RL_TOOLCALL_EV_CALL:
            if ((int)e->index != a->n || a->n >= 16 || !e->id) {
                a->order_ok = false;
                break;
            }
            a->id[a->n] = strdup(e->id);
            a->name[a->n] = dupn(e->text, e->len);
            a->args[a->n] = NULL;
            a->na[a->n] = 0;
            a->n++;
            break;
        case RL_TOOLCALL_EV_ARGS:
            if ((int)e->index != a->n - 1) {
                a->order_ok = false;
                break;
            }
            acc_add(&a->args[e->index], &a->na[e->index], e->text, e->len);
            break;
        }
    }
}

static void acc_free(acc *a) {
    free(a->content);
    free(a->reasoning);
    for (int i = 0; i < a->n; i++) free(a->id[i]), free(a->name[i]), free(a->args[i]);
}

/* Stream text in pieces cut at cuts[0..n_cuts) (increasing); compare with the one-shot
 * message. Returns false (after reporting) on a mismatch. */
static bool stream_matches(const char *where, rl_toolcall_family f, const char *text, size_t len,
                           uint32_t flags, const size_t *cuts, size_t n_cuts, const char *oneshot) {
    rl_toolcall_params p = rl_toolcall_default_params();
    p.flags = flags;
    p.id_seed = 42;
    rl_toolcall_stream *st = NULL;
    if (rl_toolcall_stream_create(f, &p, &st, g_err, sizeof g_err) != RL_OK) {
        CHECKF(0, "%s: stream_create: %s", where, g_err);
        return false;
    }
    acc a = {.order_ok = true};
    size_t prev = 0;
    bool ok = true;
    for (size_t k = 0; k <= n_cuts && ok; k++) {
        size_t cut = k < n_cuts ? cuts[k] : len;
        const rl_toolcall_event *ev;
        size_t nev;
        rl_status r = rl_toolcall_stream_feed(st, text + prev, cut - prev, &ev, &nev);
        if (r != RL_OK) {
            CHECKF(0, "%s: feed: %s", where, rl_toolcall_stream_errmsg(st));
            ok = false;
            break;
        }
        acc_events(&a, ev, nev);
        prev = cut;
    }
    char *res = NULL;
    if (ok) {
        const rl_toolcall_event *ev;
        size_t nev;
        rl_status r = rl_toolcall_stream_finish(st, &ev, &nev, &res);
        CHECKF(r == RL_OK, "%s: finish: %s", where, rl_toolcall_stream_errmsg(st));
        if (r == RL_OK) acc_events(&a, ev, nev);
        ok = r == RL_OK;
    }
    if (ok) {
        ok = strcmp(res, oneshot) == 0;
        CHECKF(ok, "%s: finish's message differs\n  %s\n  %s", where, res, oneshot);
    }
    if (ok) {
        msg m;
        msg_from_json(oneshot, &m);
        bool same = a.order_ok && a.n == m.n;
        const char *ac = a.content ? a.content : "";
        if (m.content)
            same = same && strcmp(ac, m.content) == 0;
        else
            same = same && !a.has_c;
        if (m.reasoning)
            same = same && a.reasoning && strcmp(a.reasoning, m.reasoning) == 0;
        else
            same = same && !a.has_r;
        for (int i = 0; same && i < m.n; i++)
            same = strcmp(a.id[i], m.id[i]) == 0 && strcmp(a.name[i], m.name[i]) == 0 &&
                   a.args[i] && strcmp(a.args[i], m.args[i]) == 0;
        CHECKF(same, "%s: events differ from the message %s (content [%s], %d calls)", where,
               oneshot, ac, a.n);
        ok = same;
        msg_free(&m);
    }
    rl_free_string(res);
    acc_free(&a);
    rl_toolcall_stream_free(st);
    return ok;
}

/* Every split into two pieces, every byte on its own, and a few random 3-5 way splits. */
static void check_streaming(const char *where, rl_toolcall_family f, const char *text,
                            uint32_t flags) {
    size_t len = strlen(text);
    char *one = parse(f, text, len, flags, NULL);
    CHECKF(one != NULL, "%s: one-shot failed", where);
    if (!one) return;
    char w[256];
    for (size_t k = 0; k <= len; k++) {
        snprintf(w, sizeof w, "%s (split at %zu)", where, k);
        if (!stream_matches(w, f, text, len, flags, &k, 1, one)) break;
    }
    size_t *cuts = calloc(len + 1, sizeof *cuts);
    for (size_t k = 0; k < len; k++) cuts[k] = k;
    snprintf(w, sizeof w, "%s (byte by byte)", where);
    stream_matches(w, f, text, len, flags, cuts, len, one);
    uint64_t seed = 1469598103934665603ull ^ len;
    for (int rep = 0; rep < 8 && len > 4; rep++) {
        size_t n = 3 + rep % 3, c[8];
        for (size_t k = 0; k < n; k++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            c[k] = (size_t)(seed >> 33) % (len + 1);
        }
        for (size_t a = 0; a < n; a++)
            for (size_t b = a + 1; b < n; b++)
                if (c[b] < c[a]) {
                    size_t t = c[a];
                    c[a] = c[b];
                    c[b] = t;
                }
        snprintf(w, sizeof w, "%s (random split %d)", where, rep);
        stream_matches(w, f, text, len, flags, c, n, one);
    }
    free(cuts);
    rl_free_string(one);
}

/* ---- renderings of the published templates ------------------------------------------- */

#define WEATHER "{\"city\": \"Paris\", \"unit\": \"c\"}"

typedef struct tpl_case {
    const char *stem; /* templates/<stem>.jinja, case <stem>/<scenario> */
    const char *scenario;
    rl_toolcall_family fam;
    const char *start, *stop; /* the model's output: from start up to stop (excluded) */
    const char *content;      /* NULL: null */
    const char *reasoning;
} tpl_case;

static const tpl_case tpl_cases[] = {
    {"Qwen-Qwen2.5-7B-Instruct", "s4", RL_TOOLCALL_HERMES, "<tool_call>", "<|im_end|>"},
    {"Qwen-Qwen3-0.6B", "s4", RL_TOOLCALL_HERMES, "<tool_call>", "<|im_end|>"},
    {"Qwen-Qwen3-0.6B", "s4s", RL_TOOLCALL_HERMES, "<tool_call>", "<|im_end|>"},
    {"Qwen-QwQ-32B", "s4", RL_TOOLCALL_HERMES, "<tool_call>", "<|im_end|>"},
    {"NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", "s4", RL_TOOLCALL_HERMES, "<tool_call>",
     "<|im_end|>"},
    {"NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use", "s4s", RL_TOOLCALL_HERMES, "<tool_call>",
     "<|im_end|>"},
    {"NousResearch-Hermes-3-Llama-3.1-8B-tool_use", "s4", RL_TOOLCALL_HERMES, "<tool_call>",
     "<|im_end|>"},
    {"ibm-granite-granite-4.0", "s4", RL_TOOLCALL_HERMES, "<tool_call>", "<|end_of_text|>"},
    {"ibm-granite-granite-4.1", "s4s", RL_TOOLCALL_HERMES, "<tool_call>", "<|end_of_text|>"},
    {"MiMo-VL", "s4", RL_TOOLCALL_HERMES, "<tool_call>", "<|im_end|>"},
    {"Bielik-11B-v3.0-Instruct", "s4", RL_TOOLCALL_HERMES, "<tool_call>", "<|im_end|>"},
    {"Reka-Edge", "s4", RL_TOOLCALL_HERMES, "<tool_call>", "<sep>"},
    {"meta-llama-Llama-3.1-8B-Instruct", "s4", RL_TOOLCALL_LLAMA3, "{\"name\"", "<|eot_id|>"},
    {"meta-llama-Llama-3.2-3B-Instruct", "s4", RL_TOOLCALL_LLAMA3, "{\"name\"", "<|eot_id|>"},
    {"meta-llama-Llama-3.3-70B-Instruct", "s4", RL_TOOLCALL_LLAMA3, "{\"name\"", "<|eot_id|>"},
    {"mistralai-Mistral-Nemo-Instruct-2407", "s4", RL_TOOLCALL_MISTRAL, "[TOOL_CALLS]", "</s>"},
    {"mistralai-Ministral-3-14B-Reasoning-2512", "s4", RL_TOOLCALL_MISTRAL_ARGS, "[TOOL_CALLS]",
     "</s>"},
    {"mistralai-Ministral-3-14B-Reasoning-2512", "s4s", RL_TOOLCALL_MISTRAL_ARGS, "[TOOL_CALLS]",
     "</s>"},
    {"unsloth-mistral-Devstral-Small-2507", "s4", RL_TOOLCALL_MISTRAL_ARGS, "[TOOL_CALLS]", "</s>"},
    {"Mistral-Small-3.2-24B-Instruct-2506", "s4", RL_TOOLCALL_MISTRAL_ARGS, "[TOOL_CALLS]", "</s>"},
    {"deepseek-ai-DeepSeek-R1-Distill-Llama-8B", "s4", RL_TOOLCALL_DEEPSEEK_R1,
     "<｜tool▁calls▁begin｜>", "<｜tool▁outputs▁begin｜>"},
    {"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", "s4", RL_TOOLCALL_DEEPSEEK_R1,
     "<｜tool▁calls▁begin｜>", "<｜end▁of▁sentence｜>"},
    {"llama-cpp-deepseek-r1", NULL, RL_TOOLCALL_DEEPSEEK_R1},
    {"deepseek-ai-DeepSeek-V3.1", "s4", RL_TOOLCALL_DEEPSEEK_V3_1, "<｜tool▁calls▁begin｜>",
     "<｜end▁of▁sentence｜>"},
    {"meetkai-functionary-medium-v3.1", "s4", RL_TOOLCALL_FUNCTIONARY_V3_1,
     "<function=", "<|eom_id|>"},
    {"meetkai-functionary-medium-v3.2", "s4", RL_TOOLCALL_FUNCTIONARY_V3_2, ">>>get_weather",
     "<|eot_id|>"},
    {"meetkai-functionary-medium-v3.2", "s4", RL_TOOLCALL_FUNCTIONARY_V3_2, "get_weather\n",
     "<|eot_id|>"},
    {"CohereForAI-c4ai-command-r-plus-tool_use", "s4", RL_TOOLCALL_COMMAND_R,
     "Action:", "\n<|START_OF_TURN_TOKEN|>"},
    {"CohereForAI-c4ai-command-r7b-12-2024-tool_use", "s4", RL_TOOLCALL_COMMAND_R7B,
     "<|START_THINKING|>", "<|END_OF_TURN_TOKEN|>"},
    {"Cohere2MoE", "s4", RL_TOOLCALL_COMMAND_R7B, "<|START_ACTION|>", "<|END_OF_TURN_TOKEN|>"},
    {"ibm-granite-granite-3.3-2B-Instruct", NULL, RL_TOOLCALL_GRANITE},
    {"openai-gpt-oss-120b", "s4", RL_TOOLCALL_GPT_OSS, " to=functions", "<|call|>"},
    {"fireworks-ai-llama-3-firefunction-v2", "s4", RL_TOOLCALL_FIREFUNCTION, " functools",
     "<|eot_id|>"},
    {"NVIDIA-Nemotron-Nano-v2", "s4", RL_TOOLCALL_NEMOTRON, "<TOOLCALL>", "\n<SPECIAL_12>"},
    {"NVIDIA-Nemotron-Nano-v2", "s4s", RL_TOOLCALL_NEMOTRON, "<TOOLCALL>", "\n<SPECIAL_12>"},
    {"unsloth-Apriel-1.5", "s4", RL_TOOLCALL_APRIEL, "<tool_calls>", "\n<|end|>"},
    {"Apriel-1.6-15b-Thinker-fixed", "s4", RL_TOOLCALL_APRIEL, "<tool_calls>", "\n<|end|>"},
    {"MiniMax-M1", "s4", RL_TOOLCALL_APRIEL, "<tool_calls>", "<end_of_sentence>"},
    {"moonshotai-Kimi-K2", "s4", RL_TOOLCALL_KIMI_K2, "<|tool_calls_section_begin|>", "<|im_end|>"},
    {"Qwen3-Coder", "s4", RL_TOOLCALL_QWEN3_CODER, "<tool_call>", "<|im_end|>"},
    {"Qwen3.5-4B", "s4", RL_TOOLCALL_QWEN3_CODER, "<tool_call>", "<|im_end|>"},
    {"NVIDIA-Nemotron-3-Nano-30B-A3B-BF16", "s4", RL_TOOLCALL_QWEN3_CODER, "<tool_call>",
     "<|im_end|>"},
    {"StepFun3.5-Flash", "s4", RL_TOOLCALL_QWEN3_CODER, "<tool_call>", "<|im_end|>"},
    {"ByteDance-Seed-OSS", "s4", RL_TOOLCALL_SEED_OSS, "<seed:tool_call>", "<seed:eos>"},
    {"GLM-4.6", "s4", RL_TOOLCALL_GLM, "<tool_call>", "<|observation|>"},
    {"GLM-4.7-Flash", "s4", RL_TOOLCALL_GLM, "<tool_call>", "<|observation|>"},
    {"poolside-Laguna-XS.2", "s4", RL_TOOLCALL_GLM, "<tool_call>", "</assistant>"},
    {"MiniMax-M2", "s4", RL_TOOLCALL_MINIMAX_M2, "<minimax:tool_call>", "[e~["},
    {"deepseek-ai-DeepSeek-V3.2", "s4", RL_TOOLCALL_DEEPSEEK_DSML, "<｜DSML｜",
     "<｜end▁of▁sentence｜>"},
    {"deepseek-ai-DeepSeek-V4", "s4", RL_TOOLCALL_DEEPSEEK_DSML, "<｜DSML｜",
     "<｜end▁of▁sentence｜>"},
};

static json_t *g_cases;

static json_t *cases(void) {
    if (!g_cases)
        g_cases = json_load_file(rl_test_data("testdata/chat-templates/cases.json"), 0, NULL);
    return g_cases;
}

static const char *case_expected(const char *stem, const char *scen) {
    char id[256];
    snprintf(id, sizeof id, "%s/%s", stem, scen);
    size_t i;
    json_t *c;
    json_array_foreach(cases(), i, c) {
        if (strcmp(json_string_value(json_object_get(c, "id")), id) == 0)
            return json_string_value(json_object_get(c, "expected"));
    }
    return NULL;
}

/* The model output a template's s4 rendering holds: [start, stop) after the user's turn. */
static char *cut_span(const tpl_case *tc) {
    const char *e = case_expected(tc->stem, tc->scenario);
    if (!e) return NULL;
    const char *u = strstr(e, "Paris?");
    const char *a = u ? strstr(u, tc->start) : NULL;
    const char *b = a ? strstr(a + 1, tc->stop) : NULL;
    if (!a || !b) return NULL;
    return dupn(a, (size_t)(b - a));
}

static char *read_template(const char *stem) {
    char rel[256];
    snprintf(rel, sizeof rel, "testdata/chat-templates/templates/%s.jinja", stem);
    size_t n;
    unsigned char *d = rl_test_read_file(rl_test_data(rel), &n);
    if (!d) return NULL;
    char *s = realloc(d, n + 1);
    s[n] = 0;
    return s;
}

TEST(test_detect) {
    if (!cases()) SKIP("testdata/chat-templates/cases.json not found");
    for (size_t i = 0; i < RL_ARRAY_LEN(tpl_cases); i++) {
        char *src = read_template(tpl_cases[i].stem);
        CHECKF(src != NULL, "%s: template missing", tpl_cases[i].stem);
        if (!src) continue;
        rl_toolcall_family f = rl_toolcall_detect(src, strlen(src));
        CHECKF(f == tpl_cases[i].fam, "%s: detected %s, want %s", tpl_cases[i].stem,
               rl_toolcall_family_name(f), rl_toolcall_family_name(tpl_cases[i].fam));
        free(src);
    }
    /* templates without tool syntax */
    const char *plain[] = {"google-gemma-2-2b-it", "microsoft-Phi-3.5-mini-instruct",
                           "llama-cpp-rwkv-world"};
    for (size_t i = 0; i < RL_ARRAY_LEN(plain); i++) {
        char *src = read_template(plain[i]);
        if (!src) continue;
        CHECKF(rl_toolcall_detect(src, strlen(src)) == RL_TOOLCALL_GENERIC, "%s", plain[i]);
        free(src);
    }
    CHECK(rl_toolcall_detect("", 0) == RL_TOOLCALL_GENERIC);
    CHECK(rl_toolcall_detect(NULL, 0) == RL_TOOLCALL_GENERIC);
    /* names round trip */
    for (int f = 0; f < RL_TOOLCALL_FAMILY_COUNT; f++) {
        rl_toolcall_family g;
        const char *n = rl_toolcall_family_name((rl_toolcall_family)f);
        CHECKF(rl_toolcall_family_from_name(n, &g) == RL_OK && g == (rl_toolcall_family)f, "%s", n);
    }
    rl_toolcall_family g;
    CHECK(rl_toolcall_family_from_name("HERMES", &g) == RL_OK && g == RL_TOOLCALL_HERMES);
    CHECK(rl_toolcall_family_from_name("nope", &g) == RL_ERR_NOT_FOUND);
    CHECK(strcmp(rl_toolcall_family_name((rl_toolcall_family)999), "?") == 0);
}

TEST(test_renderings) {
    if (!cases()) SKIP("testdata/chat-templates/cases.json not found");
    want_call w = {"get_weather", WEATHER};
    for (size_t i = 0; i < RL_ARRAY_LEN(tpl_cases); i++) {
        const tpl_case *tc = &tpl_cases[i];
        if (!tc->scenario) continue;
        char *span = cut_span(tc);
        char where[300];
        snprintf(where, sizeof where, "%s/%s", tc->stem, tc->scenario);
        CHECKF(span != NULL, "%s: span not found", where);
        if (!span) continue;
        const char *reasoning = tc->fam == RL_TOOLCALL_COMMAND_R7B ? NULL : tc->reasoning;
        check_msg(where, tc->fam, span, 0, NULL, tc->content, reasoning, &w, 1);
        check_streaming(where, tc->fam, span, 0);
        free(span);
    }
}

/* ---- hand-written model outputs ----------------------------------------------------- */

typedef struct hcase {
    rl_toolcall_family fam;
    uint32_t flags;
    const char *text;
    const char *content; /* NULL: null */
    const char *reasoning;
    int n;
    want_call calls[4];
} hcase;

#define NOCALL                                                                                     \
    0, {                                                                                           \
        { 0 }                                                                                      \
    }
#define C1(n, a)                                                                                   \
    1, {                                                                                           \
        { n, a }                                                                                   \
    }
#define C2(n1, a1, n2, a2)                                                                         \
    2, {                                                                                           \
        {n1, a1}, { n2, a2 }                                                                       \
    }
#define C3(n1, a1, n2, a2, n3, a3)                                                                 \
    3, {                                                                                           \
        {n1, a1}, {n2, a2}, { n3, a3 }                                                             \
    }

static const hcase hcases[] = {
    /* none: everything is content */
    {RL_TOOLCALL_NONE, 0, "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>",
     "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>", NULL, NOCALL},
    {RL_TOOLCALL_HERMES, 0, "", "", NULL, NOCALL},
    {RL_TOOLCALL_HERMES, 0, "Hello!\n\n", "Hello!\n\n", NULL, NOCALL},
    /* hermes */
    {RL_TOOLCALL_HERMES, 0,
     "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
     "\"Paris\"}}\n</tool_call>\n"
     "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"x\"}}\n</tool_call>",
     NULL, NULL, C2("get_weather", "{\"city\": \"Paris\"}", "search", "{\"query\": \"x\"}")},
    {RL_TOOLCALL_HERMES, 0,
     "Let me check.\n<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich "
     "🌤️\"}}</tool_call>",
     "Let me check.", NULL, C1("get_weather", "{\"city\": \"Zürich 🌤️\"}")},
    {RL_TOOLCALL_HERMES, 0,
     "<tool_call>{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": [1, 2.5e3, {\\\"b\\\": "
     "null}]}\"}</tool_call> done",
     "done", NULL, C1("f", "{\"a\": [1, 2.5e3, {\"b\": null}]}")},
    {RL_TOOLCALL_HERMES, 0, "<tool_call>{\"name\": \"f\"}</tool_call>", NULL, NULL, C1("f", "{}")},
    {RL_TOOLCALL_HERMES, 0,
     "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"n\": 123456789012345678901234567890}}", NULL,
     NULL, C1("f", "{\"n\": 123456789012345678901234567890}")},
    {RL_TOOLCALL_HERMES, 0,
     "<tool_call>[{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", \"arguments\": {\"x\": "
     "1}}]</tool_call>",
     NULL, NULL, C2("a", "{}", "b", "{\"x\": 1}")},
    {RL_TOOLCALL_HERMES, 0,
     "<tool_call>{\"type\": \"function\", \"function\": {\"name\": \"a\", \"arguments\": {\"k\": "
     "\"v\"}}}</tool_call>",
     NULL, NULL, C1("a", "{\"k\": \"v\"}")},
    /* malformed: content, verbatim */
    {RL_TOOLCALL_HERMES, 0, "<tool_call>{\"name\": \"f\", \"arguments\": {bad}}</tool_call>",
     "<tool_call>{\"name\": \"f\", \"arguments\": {bad}}</tool_call>", NULL, NOCALL},
    {RL_TOOLCALL_HERMES, 0, "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}",
     "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}", NULL, NOCALL},
    {RL_TOOLCALL_HERMES, 0, "<tool_call>{\"name\": 5, \"arguments\": {}}</tool_call>",
     "<tool_call>{\"name\": 5, \"arguments\": {}}</tool_call>", NULL, NOCALL},
    {RL_TOOLCALL_HERMES, 0, "<tool_call>{\"name\": \"f\", \"arguments\": [1]}</tool_call>",
     "<tool_call>{\"name\": \"f\", \"arguments\": [1]}</tool_call>", NULL, NOCALL},
    {RL_TOOLCALL_HERMES, 0,
     "a <tool_call> b <tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>",
     "a <tool_call> b", NULL, C1("f", "{}")},
    {RL_TOOLCALL_HERMES, 0, "x <tool_cal", "x <tool_cal", NULL, NOCALL},
    {RL_TOOLCALL_HERMES, 0, "<tool_call>{\"name\": \"f\", \"arguments\": {}} junk</tool_call>",
     "<tool_call>{\"name\": \"f\", \"arguments\": {}} junk</tool_call>", NULL, NOCALL},
    /* hermes with reasoning */
    {RL_TOOLCALL_HERMES, RL_TOOLCALL_PARSE_REASONING,
     "<think>\nI should call it.\n</think>\n\n<tool_call>{\"name\": \"f\", \"arguments\": "
     "{}}</tool_call>",
     NULL, "I should call it.", C1("f", "{}")},
    {RL_TOOLCALL_HERMES, RL_TOOLCALL_REASONING_OPEN, "hmm\n</think>\n\nThe answer.", "The answer.",
     "hmm", NOCALL},
    {RL_TOOLCALL_HERMES, 0, "<think>x</think>y", "<think>x</think>y", NULL, NOCALL},
    /* llama 3 */
    {RL_TOOLCALL_LLAMA3, 0, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}",
     NULL, NULL, C1("get_weather", "{\"city\": \"Paris\"}")},
    {RL_TOOLCALL_LLAMA3, 0,
     "  {\"type\": \"function\", \"name\": \"a\", \"parameters\": {}}; {\"name\": \"b\", "
     "\"parameters\": {\"q\": true}}",
     NULL, NULL, C2("a", "{}", "b", "{\"q\": true}")},
    {RL_TOOLCALL_LLAMA3, 0, "{\"name\": \"Bob\", \"age\": 3}", "{\"name\": \"Bob\", \"age\": 3}",
     NULL, NOCALL},
    {RL_TOOLCALL_LLAMA3, 0, "The JSON is {\"name\": \"a\", \"parameters\": {}}",
     "The JSON is {\"name\": \"a\", \"parameters\": {}}", NULL, NOCALL},
    {RL_TOOLCALL_LLAMA3, 0, "<|python_tag|>{\"name\": \"a\", \"parameters\": {\"x\": [1]}}", NULL,
     NULL, C1("a", "{\"x\": [1]}")},
    {RL_TOOLCALL_LLAMA3, 0,
     "<|python_tag|>brave_search.call(query=\"weather in Paris\", n=3, safe=True)", NULL, NULL,
     C1("brave_search", "{\"query\": \"weather in Paris\", \"n\": 3, \"safe\": true}")},
    {RL_TOOLCALL_LLAMA3, 0, "<|python_tag|>wolfram_alpha.call(query='2+2')<|eom_id|>", NULL, NULL,
     C1("wolfram_alpha", "{\"query\": \"2+2\"}")},
    {RL_TOOLCALL_LLAMA3, 0, "Running code.<|python_tag|>print(1 + 1)\nx = 2", "Running code.", NULL,
     C1("python", "{\"code\": \"print(1 + 1)\\nx = 2\"}")},
    {RL_TOOLCALL_LLAMA3, 0, "{\"name\": \"a\", \"parameters\": {}} and then", "and then", NULL,
     C1("a", "{}")},
    /* mistral */
    {RL_TOOLCALL_MISTRAL, 0,
     "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {\"x\": 1}, \"id\": \"abcDEF123\"}, {\"name\": "
     "\"b\", \"arguments\": {}}]",
     NULL, NULL, C2("a", "{\"x\": 1}", "b", "{}")},
    {RL_TOOLCALL_MISTRAL, 0,
     "Sure. [TOOL_CALLS]a[ARGS]{\"x\": 1}[TOOL_CALLS]b[CALL_ID]Zz9Zz9Zz9[ARGS]{}", "Sure.", NULL,
     C2("a", "{\"x\": 1}", "b", "{}")},
    {RL_TOOLCALL_MISTRAL_ARGS, 0, "[TOOL_CALLS]get weather[ARGS]{}",
     "[TOOL_CALLS]get weather[ARGS]{}", NULL, NOCALL},
    {RL_TOOLCALL_MISTRAL_ARGS, 0, "[TOOL_CALLS]f[ARGS]{\"a\": \"}\"}", NULL, NULL,
     C1("f", "{\"a\": \"}\"}")},
    /* deepseek */
    {RL_TOOLCALL_DEEPSEEK_R1, 0,
     "I'll "
     "look.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>a\n```json\n{\"x\": "
     "1}\n```<｜tool▁call▁end｜>\n"
     "<｜tool▁call▁begin｜>function<｜tool▁sep｜>b\n```json\n{}\n```<｜tool▁call▁end｜><"
     "｜tool▁calls▁end｜>",
     "I'll look.", NULL, C2("a", "{\"x\": 1}", "b", "{}")},
    {RL_TOOLCALL_DEEPSEEK_V3_1, 0,
     "<｜tool▁call▁begin｜>a<｜tool▁sep｜>{\"x\": \"y\"}<｜tool▁call▁end｜>", NULL, NULL,
     C1("a", "{\"x\": \"y\"}")},
    {RL_TOOLCALL_DEEPSEEK_V3_1, 0,
     "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>a<｜tool▁sep｜>{oops<｜tool▁call▁end｜>",
     "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>a<｜tool▁sep｜>{oops<｜tool▁call▁end｜>", NULL,
     NOCALL},
    /* functionary */
    {RL_TOOLCALL_FUNCTIONARY_V3_1, 0, "<function=a>{\"x\": 1}</function><function=b>{}</function>",
     NULL, NULL, C2("a", "{\"x\": 1}", "b", "{}")},
    {RL_TOOLCALL_FUNCTIONARY_V3_1, 0, "ok <|python_tag|>import os", "ok", NULL,
     C1("python", "{\"code\": \"import os\"}")},
    {RL_TOOLCALL_FUNCTIONARY_V3_2, 0, "all\nHello there>>>get_weather\n{\"city\": \"Paris\"}",
     "Hello there", NULL, C1("get_weather", "{\"city\": \"Paris\"}")},
    {RL_TOOLCALL_FUNCTIONARY_V3_2, 0, "a\n{}\n>>>b\n{\"k\": [true]}>>>all\nDone.", "Done.", NULL,
     C2("a", "{}", "b", "{\"k\": [true]}")},
    {RL_TOOLCALL_FUNCTIONARY_V3_2, 0, "python\nprint('hi')\n>>>all\nok", "ok", NULL,
     C1("python", "{\"code\": \"print('hi')\"}")},
    {RL_TOOLCALL_FUNCTIONARY_V3_2, 0, "Hello there", "Hello there", NULL, NOCALL},
    /* command r */
    {RL_TOOLCALL_COMMAND_R, 0,
     "Action: ```json\n[{\"tool_name\": \"a\", \"parameters\": {\"q\": \"x\"}}, {\"tool_name\": "
     "\"b\", \"parameters\": {}}]\n```",
     NULL, NULL, C2("a", "{\"q\": \"x\"}", "b", "{}")},
    {RL_TOOLCALL_COMMAND_R, 0,
     "Action: ```json\n[{\"tool_name\": \"directly-answer\", \"parameters\": {}}]\n```", "", NULL,
     NOCALL},
    {RL_TOOLCALL_COMMAND_R7B, 0,
     "<|START_THINKING|>I need the weather.<|END_THINKING|><|START_ACTION|>[\n"
     "    {\"tool_call_id\": \"0\", \"tool_name\": \"a\", \"parameters\": {}},\n"
     "    {\"tool_call_id\": \"1\", \"tool_name\": \"b\", \"parameters\": {\"z\": "
     "0}}\n]<|END_ACTION|>",
     NULL, "I need the weather.", C2("a", "{}", "b", "{\"z\": 0}")},
    {RL_TOOLCALL_COMMAND_R7B, 0, "<|START_RESPONSE|>It is sunny.<|END_RESPONSE|>", "It is sunny.",
     NULL, NOCALL},
    /* granite */
    {RL_TOOLCALL_GRANITE, 0,
     "<|tool_call|>[{\"name\": \"a\", \"arguments\": {\"x\": 1}}, {\"name\": \"b\", \"arguments\": "
     "{}}]",
     NULL, NULL, C2("a", "{\"x\": 1}", "b", "{}")},
    /* gpt-oss */
    {RL_TOOLCALL_GPT_OSS, 0,
     "<|channel|>analysis<|message|>User wants "
     "weather.<|end|><|start|>assistant<|channel|>commentary "
     "to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Paris\"}<|call|>",
     NULL, "User wants weather.", C1("get_weather", "{\"city\": \"Paris\"}")},
    {RL_TOOLCALL_GPT_OSS, 0,
     "<|channel|>analysis<|message|>Simple.<|end|><|start|>assistant<|channel|>final<|message|>It "
     "is 21 °C.",
     "It is 21 °C.", "Simple.", NOCALL},
    {RL_TOOLCALL_GPT_OSS, 0, "Plain text, no channel.", "Plain text, no channel.", NULL, NOCALL},
    /* generic */
    {RL_TOOLCALL_GENERIC, 0,
     "{\"tool_calls\": [{\"name\": \"a\", \"arguments\": {\"x\": 1}}, {\"name\": \"b\", "
     "\"arguments\": {}}]}",
     NULL, NULL, C2("a", "{\"x\": 1}", "b", "{}")},
    {RL_TOOLCALL_GENERIC, 0, "{\"tool_call\": {\"name\": \"a\", \"arguments\": {}}}", NULL, NULL,
     C1("a", "{}")},
    {RL_TOOLCALL_GENERIC, 0, " {\"name\": \"a\", \"arguments\": {\"y\": \"z\"}}\n", NULL, NULL,
     C1("a", "{\"y\": \"z\"}")},
    {RL_TOOLCALL_GENERIC, 0, "{\"response\": \"Hi \\\"you\\\" \\u00e9\"}", "Hi \"you\" é", NULL,
     NOCALL},
    {RL_TOOLCALL_GENERIC, 0, "{\"a\": 1}", "{\"a\": 1}", NULL, NOCALL},
    {RL_TOOLCALL_GENERIC, 0, "{\"response\": \"x\"} trailing", "{\"response\": \"x\"} trailing",
     NULL, NOCALL},
    /* extra families */
    {RL_TOOLCALL_FIREFUNCTION, 0, " functools[{\"name\": \"a\", \"arguments\": {}}]", NULL, NULL,
     C1("a", "{}")},
    {RL_TOOLCALL_NEMOTRON, 0, "<TOOLCALL>[{\"name\": \"a\", \"arguments\": {\"b\": 2}}]</TOOLCALL>",
     NULL, NULL, C1("a", "{\"b\": 2}")},
    {RL_TOOLCALL_APRIEL, 0,
     "<tool_calls>\n{\"name\": \"a\", \"arguments\": {}}\n{\"name\": \"b\", \"arguments\": "
     "{}}\n</tool_calls>",
     NULL, NULL, C2("a", "{}", "b", "{}")},
    {RL_TOOLCALL_KIMI_K2, 0,
     "<|tool_calls_section_begin|><|tool_call_begin|>functions.a:0<|tool_call_argument_begin|>{}<|"
     "tool_call_end|>"
     "<|tool_call_begin|>functions.b:1<|tool_call_argument_begin|>{\"q\": "
     "1}<|tool_call_end|><|tool_calls_section_end|>",
     NULL, NULL, C2("a", "{}", "b", "{\"q\": 1}")},
    {RL_TOOLCALL_QWEN3_CODER, 0,
     "<tool_call>\n<function=f>\n<parameter=n>\n42\n</parameter>\n<parameter=s>\nline1\nline2\n</"
     "parameter>\n"
     "<parameter=o>\n{\"k\": [1]}\n</parameter>\n</function>\n</tool_call>",
     NULL, NULL, C1("f", "{\"n\": 42, \"s\": \"line1\\nline2\", \"o\": {\"k\": [1]}}")},
    {RL_TOOLCALL_GLM, 0,
     "<tool_call>f\n<arg_key>a</arg_key>\n<arg_value>true</arg_value>\n</tool_call>", NULL, NULL,
     C1("f", "{\"a\": true}")},
    {RL_TOOLCALL_MINIMAX_M2, 0,
     "<minimax:tool_call>\n<invoke name=\"a\">\n<parameter name=\"x\">1</parameter>\n</invoke>\n"
     "<invoke name=\"b\">\n</invoke>\n</minimax:tool_call>",
     NULL, NULL, C2("a", "{\"x\": 1}", "b", "{}")},
    {RL_TOOLCALL_DEEPSEEK_DSML, 0,
     "<｜DSML｜function_calls>\n<｜DSML｜invoke name=\"a\">\n<｜DSML｜parameter name=\"n\" "
     "string=\"true\">7</｜DSML｜parameter>\n"
     "<｜DSML｜parameter name=\"m\" "
     "string=\"false\">[7]</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜function_calls>",
     NULL, NULL, C1("a", "{\"n\": \"7\", \"m\": [7]}")},
};

TEST(test_outputs) {
    for (size_t i = 0; i < RL_ARRAY_LEN(hcases); i++) {
        const hcase *h = &hcases[i];
        char where[64];
        snprintf(where, sizeof where, "case %zu (%s)", i, rl_toolcall_family_name(h->fam));
        check_msg(where, h->fam, h->text, h->flags, NULL, h->content, h->reasoning, h->calls, h->n);
    }
}

TEST(test_streaming) {
    for (size_t i = 0; i < RL_ARRAY_LEN(hcases); i++) {
        char where[64];
        snprintf(where, sizeof where, "case %zu (%s)", i, rl_toolcall_family_name(hcases[i].fam));
        check_streaming(where, hcases[i].fam, hcases[i].text, hcases[i].flags);
    }
}

/* What comes out while streaming: content as soon as it cannot start a call, nothing of a
 * call before it is complete, then its events; and the delta objects built from them. */
typedef struct fed {
    char text[512];
    int n_calls;
    char name[64], id[64], args[256];
} fed;

static void feed_str(rl_toolcall_stream *st, const char *t, fed *out, bool finish) {
    const rl_toolcall_event *ev = NULL;
    size_t n = 0;
    char *res = NULL;
    rl_status r = finish ? rl_toolcall_stream_finish(st, &ev, &n, &res)
                         : rl_toolcall_stream_feed(st, t, strlen(t), &ev, &n);
    CHECK(r == RL_OK);
    rl_free_string(res);
    for (size_t i = 0; i < n; i++) {
        if (ev[i].type == RL_TOOLCALL_EV_CONTENT)
            strncat(out->text, ev[i].text, ev[i].len);
        else if (ev[i].type == RL_TOOLCALL_EV_CALL) {
            out->n_calls++;
            snprintf(out->name, sizeof out->name, "%.*s", (int)ev[i].len, ev[i].text);
            snprintf(out->id, sizeof out->id, "%s", ev[i].id);
        } else if (ev[i].type == RL_TOOLCALL_EV_ARGS)
            strncat(out->args, ev[i].text, ev[i].len);
    }
    if (n && !finish) {
        char *d = NULL;
        CHECK(rl_toolcall_delta_json(ev, n, &d) == RL_OK && d);
        json_t *j = d ? json_loads(d, 0, NULL) : NULL;
        CHECKF(json_is_object(j), "delta %s", d ? d : "(null)");
        json_decref(j);
        rl_free_string(d);
    }
}

TEST(test_stream_holdback) {
    rl_toolcall_stream *st = NULL;
    CHECK(rl_toolcall_stream_create(RL_TOOLCALL_HERMES, NULL, &st, g_err, sizeof g_err) == RL_OK);
    fed f = {0};
    feed_str(st, "Hello", &f, false);
    CHECK_STR(f.text, "Hello");
    feed_str(st, " <b>x</b> <tool", &f, false); /* "<b" is no marker; " <tool" may be one */
    CHECK_STR(f.text, "Hello <b>x</b>");
    feed_str(st, "_call>{\"name\": \"f\", \"arguments\": {\"a\": 1}}", &f, false);
    CHECK_STR(f.text, "Hello <b>x</b>");
    CHECK(f.n_calls == 0);
    feed_str(st, "</tool_call>", &f, false);
    CHECK(f.n_calls == 1);
    CHECK_STR(f.name, "f");
    CHECK_STR(f.args, "{\"a\": 1}");
    CHECK(strncmp(f.id, "call_", 5) == 0 && strlen(f.id) == 29);
    feed_str(st, " \n", &f, false);
    feed_str(st, NULL, &f, true);
    CHECK_STR(f.text, "Hello <b>x</b>");
    CHECK(rl_toolcall_stream_feed(st, "x", 1, NULL, NULL) == RL_ERR_INVALID_ARG); /* finished */
    rl_toolcall_stream_free(st);

    /* a partial marker that turns out to be text is released with it */
    CHECK(rl_toolcall_stream_create(RL_TOOLCALL_MISTRAL_ARGS, NULL, &st, g_err, sizeof g_err) ==
          RL_OK);
    memset(&f, 0, sizeof f);
    feed_str(st, "see [TOOL_", &f, false);
    CHECK_STR(f.text, "see");
    feed_str(st, "X] ok", &f, false);
    CHECK_STR(f.text, "see [TOOL_X] ok");
    rl_toolcall_stream_free(st);

    /* invalid UTF-8 is refused, a character split across deltas is not */
    CHECK(rl_toolcall_stream_create(RL_TOOLCALL_HERMES, NULL, &st, g_err, sizeof g_err) == RL_OK);
    memset(&f, 0, sizeof f);
    feed_str(st, "caf\xc3", &f, false);
    CHECK_STR(f.text, "caf");
    feed_str(st, "\xa9!", &f, false);
    CHECK_STR(f.text, "caf\xc3\xa9!");
    CHECK(rl_toolcall_stream_feed(st, "\xff", 1, NULL, NULL) == RL_ERR_INVALID_ARG);
    CHECK(strstr(rl_toolcall_stream_errmsg(st), "UTF-8") != NULL);
    rl_toolcall_stream_free(st);
    char *out = NULL;
    CHECK(rl_toolcall_parse(RL_TOOLCALL_HERMES, "a\xc3", 2, NULL, &out, g_err, sizeof g_err) ==
              RL_ERR_INVALID_ARG &&
          !out);
    CHECK(rl_toolcall_parse(RL_TOOLCALL_HERMES, "a\xed\xa0\x80", 4, NULL, &out, g_err,
                            sizeof g_err) == RL_ERR_INVALID_ARG);
    CHECK(rl_toolcall_parse((rl_toolcall_family)99, "a", 1, NULL, &out, g_err, sizeof g_err) ==
          RL_ERR_INVALID_ARG);
    rl_toolcall_params bad = rl_toolcall_default_params();
    bad.tools_json = "{oops";
    CHECK(rl_toolcall_parse(RL_TOOLCALL_HERMES, "a", 1, &bad, &out, g_err, sizeof g_err) ==
          RL_ERR_INVALID_ARG);
    CHECK(strstr(g_err, "tools") != NULL);
    rl_toolcall_stream_free(NULL);

    /* the delta object of a call's events */
    rl_toolcall_event ev[3] = {
        {RL_TOOLCALL_EV_CONTENT, 0, "Hi \"x\"", 6, NULL},
        {RL_TOOLCALL_EV_CALL, 0, "get_weather", 11, "call_abc"},
        {RL_TOOLCALL_EV_ARGS, 0, "{\"city\": \"Paris\"}", 17, NULL},
    };
    char *d = NULL;
    CHECK(rl_toolcall_delta_json(ev, 3, &d) == RL_OK && d);
    CHECK(d && json_text_equal(
                   d, "{\"content\": \"Hi \\\"x\\\"\", \"tool_calls\": [{\"index\": 0, \"id\": "
                      "\"call_abc\", \"type\": \"function\", \"function\": {\"name\": "
                      "\"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\"}\"}}]}"));
    rl_free_string(d);
    CHECK(rl_toolcall_delta_json(ev + 2, 1, &d) == RL_OK && d);
    CHECK(d && json_text_equal(d, "{\"tool_calls\": [{\"index\": 0, \"function\": {\"arguments\": "
                                  "\"{\\\"city\\\": \\\"Paris\\\"}\"}}]}"));
    rl_free_string(d);
    CHECK(rl_toolcall_delta_json(ev, 0, &d) == RL_OK && !d);
}

/* A long call streamed in small pieces (blocks over 4 KiB are retried as they grow). */
TEST(test_stream_long) {
    size_t n = 20000;
    char *t = malloc(n + 200);
    size_t k = (size_t)sprintf(
        t, "Writing it.\n<tool_call>{\"name\": \"write\", \"arguments\": {\"code\": \"");
    while (k < n) k += (size_t)sprintf(t + k, "x = {y}; } \\\"q\\\" \\n");
    k += (size_t)sprintf(t + k, "\"}}</tool_call>\n");
    char *one = parse(RL_TOOLCALL_HERMES, t, k, 0, NULL);
    msg m;
    CHECK(one && msg_from_json(one, &m) && m.n == 1);
    if (one && m.n == 1) {
        size_t cuts[3000];
        size_t nc = 0;
        for (size_t c = 3; c < k && nc < 3000; c += 7) cuts[nc++] = c;
        stream_matches("long call", RL_TOOLCALL_HERMES, t, k, 0, cuts, nc, one);
        msg_free(&m);
    }
    rl_free_string(one);
    free(t);
}

/* ---- grammars ------------------------------------------------------------------------ */

/* The tools of scenario s4, plus one with typed parameters. */
static const char TOOLS[] =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Get "
    "the "
    "current weather for a city\", \"parameters\": {\"type\": \"object\", \"properties\": "
    "{\"city\": "
    "{\"type\": \"string\", \"description\": \"City name, e.g. Paris\"}, \"unit\": {\"type\": "
    "\"string\", \"enum\": [\"c\", \"f\"], \"description\": \"Temperature unit\"}}, \"required\": "
    "[\"city\"]}}}, {\"type\": \"function\", \"function\": {\"name\": \"search\", \"description\": "
    "\"Search the web\", \"parameters\": {\"type\": \"object\", \"properties\": {\"query\": "
    "{\"type\": "
    "\"string\", \"description\": \"Search query\"}}, \"required\": [\"query\"]}}},"
    " {\"type\": \"function\", \"function\": {\"name\": \"set_alarm\", \"parameters\": {\"type\": "
    "\"object\", \"properties\": {\"hour\": {\"type\": \"integer\", \"minimum\": 0, \"maximum\": "
    "23}, "
    "\"days\": {\"type\": \"array\", \"items\": {\"enum\": [\"mon\", \"tue\"]}, \"maxItems\": 3}, "
    "\"loud\": {\"type\": \"boolean\"}}, \"required\": [\"hour\"]}}}]";

static char *grammar_text(rl_toolcall_family f, const rl_toolcall_grammar_params *p,
                          const char *tools) {
    char *gb = NULL;
    rl_status st = rl_toolcall_grammar(f, tools ? tools : TOOLS, p, &gb, g_err, sizeof g_err);
    CHECKF(st == RL_OK, "%s: rl_toolcall_grammar: %s: %s", rl_toolcall_family_name(f),
           rl_status_str(st), g_err);
    return st == RL_OK ? gb : NULL;
}

static rl_grammar *compile_text(const char *gb, const rl_grammar_vocab *gv, const char *where) {
    rl_grammar *g = NULL;
    rl_status st = rl_grammar_compile(gb, strlen(gb), NULL, gv, NULL, &g, g_err, sizeof g_err);
    CHECKF(st == RL_OK, "%s: grammar does not compile: %s\n%s", where, g_err, gb);
    return st == RL_OK ? g : NULL;
}

static rl_grammar *tc_grammar(rl_toolcall_family f, const rl_toolcall_grammar_params *p) {
    char *gb = grammar_text(f, p, NULL);
    if (!gb) return NULL;
    rl_grammar *g = compile_text(gb, NULL, rl_toolcall_family_name(f));
    rl_free_string(gb);
    return g;
}

/* Whether g accepts text completely (1), a prefix that may continue (0), or rejects (-1). */
static int accepts(rl_grammar *g, const char *text) {
    rl_grammar_matcher *m = NULL;
    if (rl_grammar_matcher_create(g, 0, &m) != RL_OK) return -2;
    size_t ok = 0;
    rl_status st = rl_grammar_matcher_accept_bytes(m, text, strlen(text), &ok);
    int r = st != RL_OK ? -1 : rl_grammar_matcher_can_end(m) ? 1 : 0;
    rl_grammar_matcher_free(m);
    return r;
}

/* text with the first `from` after `after` (NULL: anywhere) replaced by `to`. */
static char *replace_after(const char *text, const char *after, const char *from, const char *to) {
    const char *a = after ? strstr(text, after) : text;
    const char *f = a ? strstr(a + (after ? strlen(after) : 0), from) : NULL;
    if (!f) return NULL;
    size_t n = strlen(text) + strlen(to) + 1;
    char *r = malloc(n);
    snprintf(r, n, "%.*s%s%s", (int)(f - text), text, to, f + strlen(from));
    return r;
}

static bool is_xml_family(rl_toolcall_family f) {
    return f == RL_TOOLCALL_QWEN3_CODER || f == RL_TOOLCALL_SEED_OSS || f == RL_TOOLCALL_GLM ||
           f == RL_TOOLCALL_MINIMAX_M2 || f == RL_TOOLCALL_DEEPSEEK_DSML;
}

TEST(test_grammar_renderings) {
    if (!cases()) SKIP("testdata/chat-templates/cases.json not found");
    rl_toolcall_grammar_params p = rl_toolcall_grammar_default_params();
    for (size_t i = 0; i < RL_ARRAY_LEN(tpl_cases); i++) {
        const tpl_case *tc = &tpl_cases[i];
        if (!tc->scenario) continue;
        char *span = cut_span(tc);
        if (!span) continue;
        char where[300];
        snprintf(where, sizeof where, "%s/%s (%s)", tc->stem, tc->scenario,
                 rl_toolcall_family_name(tc->fam));
        rl_grammar *g = tc_grammar(tc->fam, &p);
        if (!g) {
            free(span);
            continue;
        }
        CHECKF(accepts(g, span) == 1, "%s: the rendering is not accepted:\n%s", where, span);
        /* an unknown function, an unknown parameter, a value outside the enum */
        char *bad[4] = {
            replace_after(span, NULL, "get_weather", "get_weathr"),
            replace_after(span, NULL, "unit", "unitx"), replace_after(span, "unit", "c", "k"),
            is_xml_family(tc->fam) ? NULL : replace_after(span, NULL, "\"Paris\"", "42")};
        for (int k = 0; k < 4; k++) {
            if (k < 3) CHECKF(bad[k] != NULL, "%s: variant %d not made", where, k);
            if (bad[k]) CHECKF(accepts(g, bad[k]) == -1, "%s: accepts invalid\n%s", where, bad[k]);
            free(bad[k]);
        }
        /* a prefix is not a whole call */
        size_t sl = strlen(span);
        while (sl > 1 && (span[sl - 1] == '\n' || span[sl - 1] == ' ')) sl--;
        span[sl - 1] = 0;
        CHECKF(accepts(g, span) == 0, "%s: accepts a truncated call", where);
        rl_grammar_free(g);
        free(span);
    }
}

/* The schema of tool `name` in TOOLS. */
static char *tool_schema(const char *name) {
    json_t *t = json_loads(TOOLS, 0, NULL);
    size_t i;
    json_t *v;
    char *r = NULL;
    json_array_foreach(t, i, v) {
        json_t *f = json_object_get(v, "function");
        if (strcmp(json_string_value(json_object_get(f, "name")), name) == 0)
            r = json_dumps(json_object_get(f, "parameters"), 0);
    }
    json_decref(t);
    return r;
}

static const rl_toolcall_family grammar_families[] = {
    RL_TOOLCALL_GENERIC,          RL_TOOLCALL_HERMES,
    RL_TOOLCALL_LLAMA3,           RL_TOOLCALL_MISTRAL,
    RL_TOOLCALL_MISTRAL_ARGS,     RL_TOOLCALL_DEEPSEEK_R1,
    RL_TOOLCALL_DEEPSEEK_V3_1,    RL_TOOLCALL_FUNCTIONARY_V3_1,
    RL_TOOLCALL_FUNCTIONARY_V3_2, RL_TOOLCALL_COMMAND_R,
    RL_TOOLCALL_COMMAND_R7B,      RL_TOOLCALL_GRANITE,
    RL_TOOLCALL_GPT_OSS,          RL_TOOLCALL_FIREFUNCTION,
    RL_TOOLCALL_NEMOTRON,         RL_TOOLCALL_APRIEL,
    RL_TOOLCALL_KIMI_K2,          RL_TOOLCALL_QWEN3_CODER,
    RL_TOOLCALL_SEED_OSS,         RL_TOOLCALL_GLM,
    RL_TOOLCALL_MINIMAX_M2,       RL_TOOLCALL_DEEPSEEK_DSML,
};

/* Random texts of each family's grammar parse to calls whose arguments validate: for
 * required (parallel or not), named and auto. */
TEST(test_grammar_samples) {
    static const struct {
        rl_toolcall_choice choice;
        bool parallel;
        const char *name;
    } modes[] = {{RL_TOOLCALL_CHOICE_REQUIRED, true, NULL},
                 {RL_TOOLCALL_CHOICE_REQUIRED, false, NULL},
                 {RL_TOOLCALL_CHOICE_NAMED, true, "set_alarm"},
                 {RL_TOOLCALL_CHOICE_AUTO, true, NULL}};
    char *buf = malloc(1 << 16);
    for (size_t fi = 0; fi < RL_ARRAY_LEN(grammar_families); fi++) {
        rl_toolcall_family f = grammar_families[fi];
        for (size_t mi = 0; mi < RL_ARRAY_LEN(modes); mi++) {
            rl_toolcall_grammar_params p = rl_toolcall_grammar_default_params();
            p.choice = modes[mi].choice;
            p.parallel = modes[mi].parallel;
            p.function_name = modes[mi].name;
            rl_grammar *g = tc_grammar(f, &p);
            if (!g) continue;
            int n_calls_total = 0;
            for (uint64_t seed = 1; seed <= 40; seed++) {
                size_t n = 0;
                rl_status st = rl_grammar_sample_text(g, seed, 600, buf, 1 << 16, &n);
                CHECKF(st == RL_OK, "%s mode %zu: sample: %s", rl_toolcall_family_name(f), mi,
                       rl_status_str(st));
                if (st != RL_OK) break;
                char *js = parse(f, buf, n, 0, TOOLS);
                msg m;
                bool ok = js && msg_from_json(js, &m);
                CHECKF(ok, "%s mode %zu: sample does not parse:\n%s", rl_toolcall_family_name(f),
                       mi, buf);
                if (!ok) {
                    rl_free_string(js);
                    continue;
                }
                if (p.choice != RL_TOOLCALL_CHOICE_AUTO)
                    CHECKF(m.n >= 1 && (p.parallel || m.n == 1) && !m.content,
                           "%s mode %zu: %d calls, content [%s] from\n%s\n%s",
                           rl_toolcall_family_name(f), mi, m.n, m.content ? m.content : "", buf,
                           js);
                for (int c = 0; c < m.n; c++) {
                    if (p.function_name) CHECK_STR(m.name[c], p.function_name);
                    char *schema = tool_schema(m.name[c]);
                    CHECKF(schema != NULL, "%s: unknown function %s", rl_toolcall_family_name(f),
                           m.name[c]);
                    if (!schema) continue;
                    bool valid = false;
                    char verr[512];
                    rl_status vs = rl_schema_validate(schema, m.args[c], &valid, verr, sizeof verr);
                    CHECKF(vs == RL_OK && valid,
                           "%s mode %zu: arguments %s do not validate: %s\n%s",
                           rl_toolcall_family_name(f), mi, m.args[c], verr, buf);
                    free(schema);
                }
                n_calls_total += m.n;
                msg_free(&m);
                rl_free_string(js);
            }
            if (p.choice != RL_TOOLCALL_CHOICE_AUTO) CHECK(n_calls_total >= 40);
            rl_grammar_free(g);
        }
    }
    free(buf);
}

/* Auto grammars take plain text; required ones do not; named ones take only that function;
 * without parallel a second call is refused. */
TEST(test_grammar_choices) {
    rl_toolcall_grammar_params p = rl_toolcall_grammar_default_params();
    p.choice = RL_TOOLCALL_CHOICE_AUTO;
    for (size_t fi = 0; fi < RL_ARRAY_LEN(grammar_families); fi++) {
        rl_toolcall_family f = grammar_families[fi];
        if (f == RL_TOOLCALL_GENERIC) continue; /* its text is JSON either way */
        rl_grammar *g = tc_grammar(f, &p);
        if (!g) continue;
        const char *plain = f == RL_TOOLCALL_FUNCTIONARY_V3_2 ? "all\nIt is sunny, 21 °C."
                            : f == RL_TOOLCALL_GPT_OSS
                                ? "<|channel|>final<|message|>It is sunny, 21 °C."
                                : "It is sunny, 21 °C.";
        CHECKF(accepts(g, plain) == 1, "%s auto: plain text refused", rl_toolcall_family_name(f));
        rl_grammar_free(g);
    }
    rl_grammar *g;
    p.choice = RL_TOOLCALL_CHOICE_AUTO;
    g = tc_grammar(RL_TOOLCALL_HERMES, &p);
    const char *call =
        "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"x\"}}\n</tool_call>";
    char both[512];
    snprintf(both, sizeof both, "Let me look that up.\n%s", call);
    if (g) {
        CHECK(accepts(g, both) == 1);
        CHECK(accepts(g, "a <tool_call> b") == -1);
        CHECK(accepts(g, "a <tool_cal b") == 1);
        rl_grammar_free(g);
    }
    p.choice = RL_TOOLCALL_CHOICE_REQUIRED;
    g = tc_grammar(RL_TOOLCALL_HERMES, &p);
    if (g) {
        CHECK(accepts(g, "It is sunny.") == -1);
        CHECK(accepts(g, call) == 1);
        snprintf(both, sizeof both, "%s\n%s", call, call);
        CHECK(accepts(g, both) == 1);
        rl_grammar_free(g);
    }
    p.parallel = false;
    g = tc_grammar(RL_TOOLCALL_HERMES, &p);
    if (g) {
        CHECK(accepts(g, call) == 1);
        CHECK(accepts(g, both) == -1);
        rl_grammar_free(g);
    }
    p.choice = RL_TOOLCALL_CHOICE_NAMED;
    p.function_name = "get_weather";
    g = tc_grammar(RL_TOOLCALL_HERMES, &p);
    if (g) {
        CHECK(accepts(g, call) == -1);
        CHECK(accepts(g, "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": "
                         "\"Oslo\"}}</tool_call>") == 1);
        rl_grammar_free(g);
    }
    /* errors */
    char *gb = NULL;
    p.function_name = "nope";
    CHECK(rl_toolcall_grammar(RL_TOOLCALL_HERMES, TOOLS, &p, &gb, g_err, sizeof g_err) ==
              RL_ERR_INVALID_ARG &&
          !gb);
    CHECK(strstr(g_err, "nope") != NULL);
    p = rl_toolcall_grammar_default_params();
    CHECK(rl_toolcall_grammar(RL_TOOLCALL_HERMES, "[]", &p, &gb, g_err, sizeof g_err) ==
          RL_ERR_INVALID_ARG);
    CHECK(rl_toolcall_grammar(RL_TOOLCALL_HERMES, "{", &p, &gb, g_err, sizeof g_err) ==
          RL_ERR_INVALID_ARG);
    CHECK(rl_toolcall_grammar(RL_TOOLCALL_HERMES, "[{\"type\": \"function\", \"function\": {}}]",
                              &p, &gb, g_err, sizeof g_err) == RL_ERR_INVALID_ARG);
    CHECK(strstr(g_err, "tools[0]") != NULL);
    CHECK(rl_toolcall_grammar(RL_TOOLCALL_NONE, TOOLS, &p, &gb, g_err, sizeof g_err) ==
          RL_ERR_UNSUPPORTED);
    CHECK(rl_toolcall_grammar((rl_toolcall_family)999, TOOLS, &p, &gb, g_err, sizeof g_err) ==
          RL_ERR_INVALID_ARG);
    /* a schema the grammar cannot express names the tool, or is dropped when lenient */
    const char *hard =
        "[{\"type\": \"function\", \"function\": {\"name\": \"odd\", \"parameters\": "
        "{\"type\": \"object\", \"properties\": {\"n\": {\"type\": \"integer\", \"multipleOf\": "
        "3}}}}}]";
    CHECK(rl_toolcall_grammar(RL_TOOLCALL_HERMES, hard, &p, &gb, g_err, sizeof g_err) ==
          RL_ERR_UNSUPPORTED);
    CHECK(strstr(g_err, "odd") != NULL);
    p.schema_flags = RL_SCHEMA_LENIENT;
    CHECK(rl_toolcall_grammar(RL_TOOLCALL_HERMES, hard, &p, &gb, g_err, sizeof g_err) == RL_OK &&
          gb);
    rl_free_string(gb);
    p.choice = RL_TOOLCALL_CHOICE_NONE;
    gb = (char *)1;
    CHECK(rl_toolcall_grammar(RL_TOOLCALL_HERMES, TOOLS, &p, &gb, g_err, sizeof g_err) == RL_OK &&
          !gb);
}

/* Markers that are control tokens become token references: a tiny SentencePiece vocabulary
 * (byte fallback) in which <|python_tag|> is a control token. */
static unsigned char *g_mem;
static size_t g_mem_n;
static rl_status mem_sink(void *user, const void *buf, size_t n) {
    (void)user;
    g_mem = realloc(g_mem, g_mem_n + n);
    memcpy(g_mem + g_mem_n, buf, n);
    g_mem_n += n;
    return RL_OK;
}

TEST(test_grammar_token_refs) {
    enum { NT = 4 + 256 };
    const char *toks[NT];
    char bytes[256][8];
    float scores[NT];
    int32_t types[NT];
    toks[0] = "<unk>", toks[1] = "<s>", toks[2] = "</s>", toks[3] = "<|python_tag|>";
    types[0] = 2, types[1] = types[2] = types[3] = 3;
    for (int b = 0; b < 256; b++) {
        snprintf(bytes[b], sizeof bytes[b], "<0x%02X>", b);
        toks[4 + b] = bytes[b];
        types[4 + b] = 6;
    }
    for (int i = 0; i < NT; i++) scores[i] = -(float)i;
    rl_gguf_writer *w;
    CHECK(rl_gguf_writer_create(&w) == RL_OK);
    rl_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    rl_gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", toks, NT);
    rl_gguf_writer_set_arr(w, "tokenizer.ggml.scores", RL_GGUF_TYPE_FLOAT32, scores, NT);
    rl_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", RL_GGUF_TYPE_INT32, types, NT);
    rl_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    rl_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    g_mem_n = 0;
    CHECK(rl_gguf_writer_write_to(w, mem_sink, NULL) == RL_OK);
    rl_gguf_writer_free(w);
    rl_gguf *gg = NULL;
    rl_vocab *v = NULL;
    rl_grammar_vocab *gv = NULL;
    CHECK(rl_gguf_open_memory(g_mem, g_mem_n, &gg, g_err, sizeof g_err) == RL_OK);
    CHECK(gg && rl_vocab_load(gg, &v, g_err, sizeof g_err) == RL_OK);
    CHECK(v && rl_grammar_vocab_create(v, &gv) == RL_OK);
    if (!gv) goto out;
    rl_toolcall_grammar_params p = rl_toolcall_grammar_default_params();
    p.vocab = v;
    char *gb = grammar_text(RL_TOOLCALL_LLAMA3, &p, NULL);
    CHECK(gb && strstr(gb, "<[3]>") && !strstr(gb, "python_tag"));
    rl_grammar *g = gb ? compile_text(gb, gv, "llama3 with a vocabulary") : NULL;
    rl_free_string(gb);
    if (!g) goto out;
    const char *json = "{\"name\": \"search\", \"parameters\": {\"query\": \"x\"}}";
    rl_grammar_matcher *m;
    CHECK(rl_grammar_matcher_create(g, 0, &m) == RL_OK);
    CHECK(rl_grammar_matcher_allows(m, 3));
    CHECK(rl_grammar_matcher_accept_token(m, 3) == RL_OK);
    CHECK(rl_grammar_matcher_accept_bytes(m, json, strlen(json), NULL) == RL_OK);
    CHECK(rl_grammar_matcher_can_end(m));
    CHECK(rl_grammar_matcher_accept_token(m, 2) == RL_OK); /* EOS where it may end */
    rl_grammar_matcher_reset(m);
    /* the marker spelled as text is not the marker */
    CHECK(rl_grammar_matcher_accept_bytes(m, "<|python_tag|>", 14, NULL) != RL_OK);
    CHECK(rl_grammar_matcher_accept_bytes(m, json, strlen(json), NULL) == RL_OK);
    rl_grammar_matcher_free(m);
    rl_grammar_free(g);
    /* auto: text, then the token, then a call */
    p.choice = RL_TOOLCALL_CHOICE_AUTO;
    gb = grammar_text(RL_TOOLCALL_LLAMA3, &p, NULL);
    g = gb ? compile_text(gb, gv, "llama3 auto with a vocabulary") : NULL;
    rl_free_string(gb);
    if (g) {
        CHECK(rl_grammar_matcher_create(g, 0, &m) == RL_OK);
        CHECK(rl_grammar_matcher_accept_bytes(m, "Let me search. ", 15, NULL) == RL_OK);
        CHECK(rl_grammar_matcher_can_end(m));
        CHECK(rl_grammar_matcher_accept_token(m, 3) == RL_OK);
        CHECK(!rl_grammar_matcher_can_end(m));
        CHECK(rl_grammar_matcher_accept_bytes(m, json, strlen(json), NULL) == RL_OK);
        CHECK(rl_grammar_matcher_can_end(m));
        rl_grammar_matcher_free(m);
        rl_grammar_free(g);
    }
out:
    rl_grammar_vocab_free(gv);
    rl_vocab_free(v);
    rl_gguf_free(gg);
    free(g_mem);
    g_mem = NULL;
}

/* Free text in auto grammars is long without trouble (the text rules are tail calls). */
TEST(test_grammar_long_text) {
    rl_toolcall_grammar_params p = rl_toolcall_grammar_default_params();
    p.choice = RL_TOOLCALL_CHOICE_AUTO;
    rl_grammar *g = tc_grammar(RL_TOOLCALL_HERMES, &p);
    if (!g) return;
    size_t n = 50000;
    char *t = malloc(n + 200);
    for (size_t i = 0; i < n; i++) t[i] = "ab <tool_cal>\n"[i % 14];
    strcpy(t + n,
           "<tool_call>{\"name\": \"search\", \"arguments\": {\"query\": \"q\"}}</tool_call>");
    CHECK(accepts(g, t) == 1);
    t[n] = 0;
    CHECK(accepts(g, t) == 1);
    free(t);
    rl_grammar_free(g);
}

/* Calls of tools not in tools_json stay content with RL_TOOLCALL_KNOWN_NAMES; XML values
 * follow the declared types. */
TEST(test_known_names) {
    const char *text =
        "<tool_call>{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}</tool_call>"
        "<tool_call>{\"name\": \"nope\", \"arguments\": {}}</tool_call>";
    want_call w[1] = {{"get_weather", "{\"city\": \"Oslo\"}"}};
    check_msg("known names", RL_TOOLCALL_HERMES, text, RL_TOOLCALL_KNOWN_NAMES, TOOLS,
              "<tool_call>{\"name\": \"nope\", \"arguments\": {}}</tool_call>", NULL, w, 1);
    const char *xml = "<tool_call>\n<function=search>\n<parameter=query>\n42\n</parameter>\n</"
                      "function>\n</tool_call>";
    want_call q[1] = {{"search", "{\"query\": \"42\"}"}};
    check_msg("typed xml", RL_TOOLCALL_QWEN3_CODER, xml, 0, TOOLS, NULL, NULL, q, 1);
    want_call q2[1] = {{"search", "{\"query\": 42}"}};
    check_msg("untyped xml", RL_TOOLCALL_QWEN3_CODER, xml, 0, NULL, NULL, NULL, q2, 1);
}

/* Ids: the seed's, "call_" and 24 letters and digits; Mistral's 9 letters and digits, the
 * model's own kept when its template takes them back. */
TEST(test_ids) {
    const char *t = "[TOOL_CALLS][{\"name\": \"a\", \"arguments\": {}, \"id\": \"abcDEF123\"}, "
                    "{\"name\": \"b\", \"arguments\": {}, \"id\": \"call_1\"}]";
    char *js = parse(RL_TOOLCALL_MISTRAL, t, strlen(t), 0, NULL);
    msg m;
    CHECK(js && msg_from_json(js, &m) && m.n == 2);
    if (m.n == 2) {
        CHECK_STR(m.id[0], "abcDEF123");
        CHECK(strlen(m.id[1]) == 9 && strcmp(m.id[1], "call_1") != 0);
        for (int i = 0; i < 9; i++) CHECK(isalnum((unsigned char)m.id[1][i]));
    }
    msg_free(&m);
    rl_free_string(js);
    /* the same seed gives the same ids, another seed others */
    const char *h = "<tool_call>{\"name\": \"a\", \"arguments\": {}}</tool_call>";
    char *x = parse(RL_TOOLCALL_HERMES, h, strlen(h), 0, NULL);
    char *y = parse(RL_TOOLCALL_HERMES, h, strlen(h), 0, NULL);
    rl_toolcall_params p = rl_toolcall_default_params();
    p.id_seed = 43;
    char *z = NULL;
    CHECK(rl_toolcall_parse(RL_TOOLCALL_HERMES, h, strlen(h), &p, &z, g_err, sizeof g_err) ==
          RL_OK);
    CHECK(x && y && z && strcmp(x, y) == 0 && strcmp(x, z) != 0);
    msg mx;
    CHECK(x && msg_from_json(x, &mx) && mx.n == 1);
    if (mx.n == 1) {
        CHECK(strncmp(mx.id[0], "call_", 5) == 0 && strlen(mx.id[0]) == 29);
        for (int i = 5; i < 29; i++) CHECK(isalnum((unsigned char)mx.id[0][i]));
    }
    msg_free(&mx);
    rl_free_string(x);
    rl_free_string(y);
    rl_free_string(z);
}

/* Every allocation failure is reported as RL_ERR_NOMEM and leaks nothing. */
TEST(test_alloc_failures) {
    const char *text = "Sure.<tool_call>{\"name\": \"a\", \"arguments\": {\"x\": 1}}</tool_call>\n"
                       "<tool_call>{\"name\": \"b\", \"arguments\": \"{}\"}</tool_call> bye";
    rl_toolcall_params p = rl_toolcall_default_params();
    p.tools_json = TOOLS;
    rl_toolcall_grammar_params gp = rl_toolcall_grammar_default_params();
    for (int op = 0; op < 4; op++) {
        int fails = 0;
        for (long k = 1; k < 100000; k++) {
            size_t before = rl_mem_in_use();
            rl__alloc_fail_after(k);
            rl_status st;
            char *out = NULL;
            if (op == 0) {
                st = rl_toolcall_parse(RL_TOOLCALL_HERMES, text, strlen(text), &p, &out, g_err,
                                       sizeof g_err);
            } else if (op == 1) {
                rl_toolcall_stream *sm = NULL;
                st = rl_toolcall_stream_create(RL_TOOLCALL_QWEN3_CODER, &p, &sm, g_err,
                                               sizeof g_err);
                const char *x = "ok "
                                "<tool_call>\n<function=search>\n<parameter=query>\nq\n</"
                                "parameter>\n</function>\n</tool_call>";
                for (size_t c = 0; st == RL_OK && x[c]; c += 5)
                    st = rl_toolcall_stream_feed(sm, x + c, strlen(x + c) < 5 ? strlen(x + c) : 5,
                                                 NULL, NULL);
                if (st == RL_OK) st = rl_toolcall_stream_finish(sm, NULL, NULL, &out);
                rl_toolcall_stream_free(sm);
            } else {
                st = rl_toolcall_grammar(op == 2 ? RL_TOOLCALL_MISTRAL : RL_TOOLCALL_MINIMAX_M2,
                                         TOOLS, &gp, &out, g_err, sizeof g_err);
            }
            rl__alloc_fail_after(0);
            CHECKF(st == RL_OK || st == RL_ERR_NOMEM, "op %d, failure %ld: %s", op, k,
                   rl_status_str(st));
            CHECKF((st == RL_OK) == (out != NULL), "op %d, failure %ld", op, k);
            rl_free_string(out);
            CHECKF(rl_mem_in_use() == before, "op %d, failure %ld: leak", op, k);
            if (st == RL_OK) break;
            fails++;
        }
        CHECKF(fails > 3, "op %d: only %d failures tried", op, fails);
    }
}

int main(void) {
    RUN(test_detect);
    RUN(test_renderings);
    RUN(test_outputs);
    RUN(test_streaming);
    RUN(test_stream_holdback);
    RUN(test_stream_long);
    RUN(test_grammar_renderings);
    RUN(test_grammar_samples);
    RUN(test_grammar_choices);
    RUN(test_grammar_token_refs);
    RUN(test_grammar_long_text);
    RUN(test_known_names);
    RUN(test_ids);
    RUN(test_alloc_failures);
    json_decref(g_cases);
    return rl_test_finish();
}
