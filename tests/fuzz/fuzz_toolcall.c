/*
 * fuzz_toolcall.c - libFuzzer harness for src/toolcall. The first byte picks the family
 * (byte % RL_TOOLCALL_FAMILY_COUNT), the second the mode and flags, the rest is the input:
 *   bit 7 clear: model output. rl_toolcall_parse must return RL_OK with a well-formed
 *           message (or RL_ERR_INVALID_ARG for invalid UTF-8); the streaming parser fed the
 *           text in pieces (cut where the input's hash says) must give the same message
 *           from finish, and its events must add up to it. Bits 0-1: the reasoning flags.
 *   bit 7 set: a tools array. rl_toolcall_grammar (choice from bits 0-1, parallel from bit
 *           2) either fails with a documented status or returns a grammar that compiles;
 *           its random texts must parse to calls of the tools whose arguments validate
 *           against their parameter schemas (required and named choices: at least one).
 * Every byte the library allocated is freed.
 */
#include "ruvllm.h"
#include "util/util.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_toolcall: %s:%d: requirement failed: %s\n", __FILE__, __LINE__,  \
                    #c);                                                                           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

typedef struct msg {
    char *content, *reasoning;
    size_t nc, nr;
    bool has_c, has_r;
    size_t n;
    char *id[64], *name[64], *args[64];
    size_t na[64];
} msg;

static void add(char **p, size_t *n, const char *s, size_t len) {
    *p = realloc(*p, *n + len + 1);
    REQUIRE(*p);
    memcpy(*p + *n, s, len);
    *n += len;
    (*p)[*n] = 0;
}

static void msg_free(msg *m) {
    free(m->content);
    free(m->reasoning);
    for (size_t i = 0; i < m->n; i++) free(m->id[i]), free(m->name[i]), free(m->args[i]);
    memset(m, 0, sizeof *m);
}

/* The message JSON: well formed, and its parts into m (up to 64 calls compared). */
static void parse_message(const char *js, msg *m) {
    memset(m, 0, sizeof *m);
    json_error_t je;
    json_t *j = json_loads(js, JSON_ALLOW_NUL, &je);
    if (!j) {
        fprintf(stderr, "fuzz_toolcall: the message is not JSON (%s):\n%s\n", je.text, js);
        abort();
    }
    REQUIRE(json_is_object(j));
    REQUIRE(strcmp(json_string_value(json_object_get(j, "role")), "assistant") == 0);
    json_t *c = json_object_get(j, "content");
    json_t *tc = json_object_get(j, "tool_calls");
    REQUIRE(json_is_string(c) || (json_is_null(c) && tc));
    if (json_is_string(c)) {
        add(&m->content, &m->nc, json_string_value(c), json_string_length(c));
        m->has_c = true;
    }
    json_t *r = json_object_get(j, "reasoning_content");
    if (r) {
        REQUIRE(json_is_string(r) && json_string_length(r) > 0);
        add(&m->reasoning, &m->nr, json_string_value(r), json_string_length(r));
        m->has_r = true;
    }
    if (tc) {
        REQUIRE(json_is_array(tc) && json_array_size(tc) > 0);
        size_t i;
        json_t *e;
        json_array_foreach(tc, i, e) {
            json_t *f = json_object_get(e, "function");
            const char *id = json_string_value(json_object_get(e, "id"));
            const char *nm = json_string_value(json_object_get(f, "name"));
            json_t *ar = json_object_get(f, "arguments");
            REQUIRE(id && id[0] && nm && nm[0] && json_is_string(ar));
            REQUIRE(strcmp(json_string_value(json_object_get(e, "type")), "function") == 0);
            const char *a = json_string_value(ar);
            size_t al = json_string_length(ar);
            REQUIRE(al >= 2 && a[0] == '{' && a[al - 1] == '}');
            if (m->n < 64) {
                m->id[m->n] = strdup(id);
                m->name[m->n] = strdup(nm);
                m->args[m->n] = strdup(a);
                m->n++;
            }
        }
    }
    json_decref(j);
}

static uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void collect(msg *ev, bool *ok_order, const rl_toolcall_event *e, size_t ne) {
    for (size_t k = 0; k < ne; k++) {
        switch (e[k].type) {
        case RL_TOOLCALL_EV_CONTENT:
            add(&ev->content, &ev->nc, e[k].text, e[k].len);
            ev->has_c = true;
            break;
        case RL_TOOLCALL_EV_REASONING:
            add(&ev->reasoning, &ev->nr, e[k].text, e[k].len);
            ev->has_r = true;
            break;
        case RL_TOOLCALL_EV_CALL:
            *ok_order = *ok_order && e[k].index == ev->n && e[k].id;
            if (ev->n < 64) {
                ev->id[ev->n] = strdup(e[k].id ? e[k].id : "");
                ev->name[ev->n] = strndup(e[k].text, e[k].len);
                ev->args[ev->n] = NULL;
                ev->na[ev->n] = 0;
            }
            ev->n++;
            break;
        case RL_TOOLCALL_EV_ARGS:
            *ok_order = *ok_order && e[k].index + 1 == ev->n;
            if (e[k].index < 64 && e[k].index < ev->n)
                add(&ev->args[e[k].index], &ev->na[e[k].index], e[k].text, e[k].len);
            break;
        }
    }
}

static void check_output(rl_toolcall_family f, uint32_t flags, const char *text, size_t len) {
    rl_toolcall_params p = rl_toolcall_default_params();
    p.flags = flags;
    p.id_seed = 7;
    char *one = NULL, err[256];
    rl_status st = rl_toolcall_parse(f, text, len, &p, &one, err, sizeof err);
    REQUIRE(st == RL_OK || st == RL_ERR_INVALID_ARG);
    REQUIRE((st == RL_OK) == (one != NULL));
    rl_toolcall_stream *s = NULL;
    REQUIRE(rl_toolcall_stream_create(f, &p, &s, err, sizeof err) == RL_OK);
    msg ev = {0};
    bool ok_order = true;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)text[i]) * 1099511628211ull;
    /* pieces of 1-4 bytes, or of any length, as the hash says */
    size_t pos = 0;
    rl_status sst = RL_OK;
    const rl_toolcall_event *e = NULL;
    size_t ne = 0;
    while (pos < len && sst == RL_OK) {
        h = mix(h);
        size_t take = len - pos;
        take = 1 + h % ((h >> 8) & 1 ? (take < 4 ? take : 4) : take);
        sst = rl_toolcall_stream_feed(s, text + pos, take, &e, &ne);
        if (sst == RL_OK) collect(&ev, &ok_order, e, ne);
        pos += take;
    }
    char *res = NULL;
    if (sst == RL_OK) {
        sst = rl_toolcall_stream_finish(s, &e, &ne, &res);
        if (sst == RL_OK) collect(&ev, &ok_order, e, ne);
    }
    /* invalid UTF-8: both refuse it */
    REQUIRE((sst == RL_OK) == (st == RL_OK));
    if (st == RL_OK) {
        REQUIRE(res && strcmp(res, one) == 0);
        msg m;
        parse_message(one, &m);
        REQUIRE(ok_order && ev.n == m.n);
        if (m.content)
            REQUIRE(m.nc == ev.nc && (m.nc == 0 || memcmp(m.content, ev.content, m.nc) == 0));
        else
            REQUIRE(!ev.has_c);
        REQUIRE(m.has_r == (ev.nr > 0));
        if (m.has_r) REQUIRE(m.nr == ev.nr && memcmp(m.reasoning, ev.reasoning, m.nr) == 0);
        for (size_t i = 0; i < m.n && i < 64; i++) {
            REQUIRE(strcmp(m.id[i], ev.id[i]) == 0 && strcmp(m.name[i], ev.name[i]) == 0);
            REQUIRE(ev.args[i] && strcmp(m.args[i], ev.args[i]) == 0);
        }
        msg_free(&m);
    }
    rl__free(res);
    msg_free(&ev);
    rl__free(one);
    rl_toolcall_stream_free(s);
}

/* The parameters schema of tool name in tools (NULL: none given). */
static char *tool_schema(json_t *tools, const char *name) {
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *f = json_object_get(t, "function");
        if (!json_is_object(f)) f = t;
        const char *n = json_string_value(json_object_get(f, "name"));
        if (n && strcmp(n, name) == 0) {
            json_t *p = json_object_get(f, "parameters");
            return json_is_object(p) ? json_dumps(p, JSON_COMPACT)
                                     : strdup("{\"type\":\"object\",\"properties\":{}}");
        }
    }
    return NULL;
}

static void check_grammar(rl_toolcall_family f, unsigned mode, const char *tools, size_t len) {
    char *text = strndup(tools, len);
    REQUIRE(text);
    rl_toolcall_grammar_params p = rl_toolcall_grammar_default_params();
    p.choice = (rl_toolcall_choice)(mode & 3);
    p.parallel = (mode >> 2) & 1;
    json_t *tj = json_loads(text, 0, NULL);
    if (p.choice == RL_TOOLCALL_CHOICE_NAMED && json_is_array(tj) && json_array_size(tj)) {
        json_t *t = json_array_get(tj, json_array_size(tj) - 1);
        json_t *fn = json_object_get(t, "function");
        p.function_name = json_string_value(json_object_get(json_is_object(fn) ? fn : t, "name"));
    }
    char *gb = NULL, err[512];
    rl_status st = rl_toolcall_grammar(f, text, &p, &gb, err, sizeof err);
    REQUIRE(st == RL_OK || st == RL_ERR_INVALID_ARG || st == RL_ERR_UNSUPPORTED ||
            st == RL_ERR_LIMIT);
    REQUIRE(st == RL_OK || (err[0] && !gb));
    if (st == RL_OK && gb) {
        rl_grammar *g = NULL;
        st = rl_grammar_compile(gb, strlen(gb), NULL, NULL, NULL, &g, err, sizeof err);
        if (st != RL_OK && st != RL_ERR_LIMIT) {
            fprintf(stderr, "fuzz_toolcall: the grammar does not compile: %s\n%s\n", err, gb);
            abort();
        }
        static char buf[8192];
        for (uint64_t seed = 1; g && seed <= 3; seed++) {
            size_t n = 0;
            if (rl_grammar_sample_text(g, seed, 400, buf, sizeof buf, &n) != RL_OK) continue;
            rl_toolcall_params pp = rl_toolcall_default_params();
            pp.tools_json = text;
            char *js = NULL;
            REQUIRE(rl_toolcall_parse(f, buf, n, &pp, &js, err, sizeof err) == RL_OK);
            msg m;
            parse_message(js, &m);
            if (p.choice != RL_TOOLCALL_CHOICE_AUTO && m.n == 0) {
                fprintf(stderr,
                        "fuzz_toolcall: no call parsed from a sentence of the grammar:\n%.*s\n%s\n",
                        (int)n, buf, gb);
                abort();
            }
            for (size_t c = 0; c < m.n; c++) {
                char *schema = tool_schema(tj, m.name[c]);
                if (!schema) {
                    fprintf(stderr, "fuzz_toolcall: a call of an unknown tool %s from:\n%.*s\n",
                            m.name[c], (int)n, buf);
                    abort();
                }
                bool valid = false;
                char verr[512];
                rl_status vs = rl_schema_validate(schema, m.args[c], &valid, verr, sizeof verr);
                if (vs == RL_OK && !valid) {
                    fprintf(stderr,
                            "fuzz_toolcall: arguments %s of %s do not validate (%s):\n%.*s\n%s\n",
                            m.args[c], m.name[c], verr, (int)n, buf, gb);
                    abort();
                }
                free(schema);
            }
            msg_free(&m);
            rl__free(js);
        }
        rl_grammar_free(g);
    }
    rl__free(gb);
    json_decref(tj);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t before = rl_mem_in_use();
    rl_toolcall_family f = (rl_toolcall_family)(data[0] % RL_TOOLCALL_FAMILY_COUNT);
    unsigned mode = data[1];
    if (mode & 0x80)
        check_grammar(f, mode, (const char *)data + 2, size - 2);
    else
        check_output(f, mode & 3, (const char *)data + 2, size - 2);
    REQUIRE(rl_mem_in_use() == before);
    return 0;
}
