/*
 * test_grammar.c - the GBNF engine: every example grammar of llama.cpp parses; the IR of
 * llama.cpp's parser tests comes out element for element; the accept / reject strings of
 * its integration tests (token segments included); build failures (undefined rules, left
 * recursion, missing root); fast masks against a walk of every token and against a
 * one-by-one check on thousands of states from random documents, with real vocabularies;
 * rollback and clone; hostile grammars end in RL_ERR_LIMIT within a time bound.
 */
#include "test.h"

#include "ruvllm.h"
#include "grammar/grammar_impl.h"

#include <dirent.h>
#include <jansson.h>
#include <time.h>

static const char *k_grammar_files[] = {"arithmetic.gbnf", "c.gbnf",          "chess.gbnf",
                                        "english.gbnf",    "japanese.gbnf",   "json.gbnf",
                                        "json_arr.gbnf",   "list.gbnf"};

static char *read_text(const char *rel, size_t *n) {
    return (char *)rl_test_read_file(rl_test_data(rel), n);
}

static rl_grammar *compile(const char *text, const char *root, const rl_grammar_vocab *gv,
                           rl_status *st_out, char *err, size_t err_size) {
    rl_grammar *g = NULL;
    rl_status st = rl_grammar_compile(text, strlen(text), root, gv, NULL, &g, err, err_size);
    if (st_out) *st_out = st;
    return g;
}

/* ---- parsing ------------------------------------------------------------------------- */

TEST(example_grammars_parse) {
    for (size_t i = 0; i < RL_ARRAY_LEN(k_grammar_files); i++) {
        char rel[128], err[256];
        snprintf(rel, sizeof rel, "testdata/grammars/%s", k_grammar_files[i]);
        size_t n;
        char *text = read_text(rel, &n);
        if (!text) SKIP("%s missing", rel);
        rl_grammar *g = NULL;
        rl_status st = rl_grammar_compile(text, n, "root", NULL, NULL, &g, err, sizeof err);
        CHECKF(st == RL_OK, "%s: %s", k_grammar_files[i], err);
        rl_grammar_matcher *m = NULL;
        if (g) CHECK(rl_grammar_matcher_create(g, 4, &m) == RL_OK);
        /* a random sentence of each is accepted whole */
        for (uint64_t seed = 1; m && seed <= 20; seed++) {
            char buf[8192];
            size_t len;
            st = rl_grammar_sample_text(g, seed, 200, buf, sizeof buf, &len);
            CHECKF(st == RL_OK, "%s: sample: %s", k_grammar_files[i], rl_status_str(st));
            if (st != RL_OK) break;
            rl_grammar_matcher_reset(m);
            size_t ok = 0;
            st = rl_grammar_matcher_accept_bytes(m, buf, len, &ok);
            CHECKF(st == RL_OK && rl_grammar_matcher_can_end(m), "%s: sample %llu rejected at %zu: %s",
                   k_grammar_files[i], (unsigned long long)seed, ok, buf);
        }
        rl_grammar_matcher_free(m);
        rl_grammar_free(g);
        free(text);
    }
}

static uint32_t elem_type(const char *s) {
    static const char *names[] = {"END",      "ALT",            "RULE_REF", "CHAR",
                                  "CHAR_NOT", "CHAR_RNG_UPPER", "CHAR_ALT", "CHAR_ANY",
                                  "TOKEN",    "TOKEN_NOT"};
    for (uint32_t i = 0; i < RL_ARRAY_LEN(names); i++)
        if (!strcmp(s, names[i])) return i;
    return 99;
}

static uint32_t utf8_first(const char *s) {
    rl__utf8p p = {0};
    uint32_t cp = 0;
    for (size_t i = 0; s[i]; i++)
        if (rl__utf8_step(&p, (unsigned char)s[i], &cp) == 1) return cp;
    return 0; /* "" is U+0000 */
}

TEST(parser_cases) {
    json_error_t je;
    json_t *cases = json_load_file(rl_test_data("testdata/grammars/parser_cases.json"), 0, &je);
    if (!cases) SKIP("parser_cases.json: %s", je.text);
    size_t i;
    json_t *c;
    int n_ok = 0, n_fail = 0;
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_object_get(c, "grammar"));
        bool expect_ok = !strcmp(json_string_value(json_object_get(c, "expect")), "ok");
        rl_grammar_limits lim = rl_grammar_default_limits();
        rl__gir ir;
        char err[256];
        rl_status st = rl__gbnf_parse(text, strlen(text), NULL, &lim, &ir, err, sizeof err);
        CHECKF((st == RL_OK) == expect_ok, "case %zu: %s: %s", i, rl_status_str(st), err);
        if (st != RL_OK) {
            n_fail++;
            CHECKF(strncmp(err, "line ", 5) == 0, "case %zu: no position in '%s'", i, err);
            continue;
        }
        n_ok++;
        json_t *syms = json_object_get(c, "symbol_ids"), *rules = json_object_get(c, "rules");
        CHECK_EQ_INT(ir.n_rules, json_array_size(rules));
        const char *name;
        json_t *idv;
        json_object_foreach(syms, name, idv) {
            int32_t id = rl__gir_find(&ir, name);
            CHECKF(id == json_integer_value(idv), "case %zu: symbol %s: %d vs %lld", i, name, id,
                   (long long)json_integer_value(idv));
        }
        for (size_t r = 0; r < json_array_size(rules) && r < ir.n_rules; r++) {
            json_t *rule = json_array_get(rules, r);
            uint32_t n = ir.off[r + 1] - ir.off[r];
            CHECKF(n == json_array_size(rule), "case %zu rule %zu: %u elements vs %zu", i, r, n,
                   json_array_size(rule));
            for (size_t k = 0; k < n && k < json_array_size(rule); k++) {
                json_t *e = json_array_get(rule, k);
                uint32_t t = elem_type(json_string_value(json_array_get(e, 0)));
                json_t *v = json_array_get(e, 1);
                uint32_t val = json_is_string(v) ? utf8_first(json_string_value(v))
                                                 : (uint32_t)json_integer_value(v);
                const rl__gelem *x = &ir.elems[ir.off[r] + k];
                CHECKF(x->type == t && x->value == val, "case %zu rule %zu elem %zu: (%u,%u) vs (%u,%u)",
                       i, r, k, x->type, x->value, t, val);
            }
        }
        rl__gir_free(&ir);
    }
    CHECK(n_ok > 5 && n_fail >= 3);
    json_decref(cases);
}

TEST(build_cases) {
    json_error_t je;
    json_t *cases =
        json_load_file(rl_test_data("testdata/grammars/grammar_build_cases.json"), 0, &je);
    if (!cases) SKIP("grammar_build_cases.json: %s", je.text);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_object_get(c, "grammar"));
        const char *root = json_string_value(json_object_get(c, "root"));
        bool expect_ok = !strcmp(json_string_value(json_object_get(c, "expect")), "ok");
        char err[256];
        rl_status st;
        rl_grammar *g = compile(text, root, NULL, &st, err, sizeof err);
        CHECKF((g != NULL) == expect_ok, "case %zu (%s): %s %s", i,
               json_string_value(json_object_get(c, "why")), rl_status_str(st), err);
        if (!expect_ok) CHECKF(st == RL_ERR_INVALID_ARG && err[0], "case %zu: %s", i, err);
        rl_grammar_free(g);
    }
    json_decref(cases);
}

TEST(parse_errors_have_positions) {
    static const struct {
        const char *text;
        const char *err; /* prefix */
    } cases[] = {
        {"root ::= \"a\"\nfoo ::= [a-", "line 2, column 12:"},
        {"root ::= \"a\" |\n   \"b\" )", "line 2, column 8:"},
        {"root ::= x\n", "line 1, column 10: undefined rule 'x'"},
        {"root ::= \"\\q\"", "line 1, column 11: unknown escape"},
        {"root ::= \"\\x4\"", "line 1, column 13: expecting 2 hex digits"},
        {"root ::= \"a\"{3,2}", "line 1, column 13: repetition maximum"},
        {"root ::= \"a\"{2001}", "line 1, column 13: repetition count"},
        {"root ::= (\"a\"", "line 1, column 10: unclosed"},
        {"root := \"a\"", "line 1, column 6: expecting ::="},
        {"root ::= <hello>", "line 1, column 10: a token given by its text needs a vocabulary"},
        {"root ::= \"é\" ü", "line 1, column 14: expecting newline"},
    };
    for (size_t i = 0; i < RL_ARRAY_LEN(cases); i++) {
        char err[256];
        rl_status st;
        rl_grammar *g = compile(cases[i].text, NULL, NULL, &st, err, sizeof err);
        CHECK(g == NULL && st == RL_ERR_INVALID_ARG);
        CHECKF(!strncmp(err, cases[i].err, strlen(cases[i].err)), "case %zu: '%s'", i, err);
        rl_grammar_free(g);
    }
    /* left recursion through a rule that is only nullable transitively (llama.cpp misses
     * it and loops) */
    char err[256];
    rl_status st;
    rl_grammar *g = compile("root ::= a\na ::= n a \"z\" | \"q\"\nn ::= m\nm ::= \"p\" | ", NULL,
                            NULL, &st, err, sizeof err);
    CHECKF(!g && st == RL_ERR_INVALID_ARG && strstr(err, "left recursion"), "%s", err);
    rl_grammar_free(g);
}

/* ---- accept / reject ------------------------------------------------------------------- */

/* Feed one case the way llama.cpp's test harness does: every code point as token 0 with
 * its text, token segments as their id. */
static bool run_segments(rl_grammar_matcher *m, json_t *item) {
    rl_grammar_matcher_reset(m);
    json_t *segs = json_is_string(item) ? NULL : json_object_get(item, "segments");
    size_t n = segs ? json_array_size(segs) : 1;
    for (size_t s = 0; s < n; s++) {
        json_t *seg = segs ? json_array_get(segs, s) : item;
        json_t *tokv = segs ? json_object_get(seg, "token") : NULL;
        if (tokv) {
            if (rl__grammar_matcher_accept_piece(m, (rl_token)json_integer_value(tokv), NULL, 0) !=
                RL_OK)
                return false;
            continue;
        }
        const char *text = json_string_value(segs ? json_object_get(seg, "text") : seg);
        size_t len = strlen(text);
        for (size_t i = 0; i < len;) {
            size_t k = 1;
            while (i + k < len && ((unsigned char)text[i + k] & 0xC0) == 0x80) k++;
            if (rl__grammar_matcher_accept_piece(m, 0, text + i, k) != RL_OK) return false;
            i += k;
        }
    }
    return rl_grammar_matcher_can_end(m);
}

TEST(grammar_cases) {
    json_error_t je;
    json_t *cases = json_load_file(rl_test_data("testdata/grammars/grammar_cases.json"), 0, &je);
    if (!cases) SKIP("grammar_cases.json: %s", je.text);
    size_t i;
    json_t *c;
    int n_checked = 0;
    json_array_foreach(cases, i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        const char *text = json_string_value(json_object_get(c, "grammar"));
        char err[256];
        rl_grammar *g = compile(text, NULL, NULL, NULL, err, sizeof err);
        CHECKF(g, "%s: %s", name, err);
        if (!g) continue;
        rl_grammar_matcher *m = NULL;
        CHECK(rl_grammar_matcher_create(g, 0, &m) == RL_OK);
        for (int pass = 0; pass < 2; pass++) {
            json_t *list = json_object_get(c, pass == 0 ? "accept" : "reject");
            size_t k;
            json_t *item;
            json_array_foreach(list, k, item) {
                bool ok = run_segments(m, item);
                CHECKF(ok == (pass == 0), "%s: %s #%zu: %s", name, pass ? "reject" : "accept", k,
                       json_is_string(item) ? json_string_value(item) : "(segments)");
                n_checked++;
                if (json_is_string(item)) { /* the byte API agrees */
                    const char *s = json_string_value(item);
                    rl_grammar_matcher_reset(m);
                    size_t n_ok;
                    rl_status st = rl_grammar_matcher_accept_bytes(m, s, strlen(s), &n_ok);
                    bool ok2 = st == RL_OK && rl_grammar_matcher_can_end(m);
                    CHECKF(ok2 == (pass == 0), "%s: bytes %s", name, s);
                }
            }
        }
        rl_grammar_matcher_free(m);
        rl_grammar_free(g);
    }
    CHECK(n_checked > 100);
    json_decref(cases);
}

TEST(bytes_and_utf8) {
    char err[256];
    rl_grammar *g = compile("root ::= [ぁ-ゟ]+ \"!\" | \"é\" [^a]", NULL, NULL, NULL, err, sizeof err);
    CHECKF(g, "%s", err);
    if (!g) return;
    rl_grammar_matcher *m = NULL;
    CHECK(rl_grammar_matcher_create(g, 8, &m) == RL_OK);
    /* split inside a character */
    const char *s = "ひらがな!";
    size_t n_ok;
    CHECK(rl_grammar_matcher_accept_bytes(m, s, 1, &n_ok) == RL_OK);
    CHECK(!rl_grammar_matcher_can_end(m));
    CHECK(rl_grammar_matcher_accept_bytes(m, s + 1, 4, &n_ok) == RL_OK);
    CHECK(rl_grammar_matcher_accept_bytes(m, s + 5, strlen(s) - 5, &n_ok) == RL_OK);
    CHECK(rl_grammar_matcher_can_end(m));
    /* rejected at the byte that cannot continue: U+3040 is outside the range */
    rl_grammar_matcher_reset(m);
    CHECK(rl_grammar_matcher_accept_bytes(m, "\xE3\x81\x80", 3, &n_ok) == RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(n_ok, 2);
    /* invalid UTF-8: overlong, surrogate, stray continuation */
    rl_grammar_matcher_reset(m);
    CHECK(rl_grammar_matcher_accept_bytes(m, "\xC3\xA9\xC0\x80", 4, &n_ok) != RL_OK);
    CHECK_EQ_INT(n_ok, 2);
    rl_grammar_matcher_reset(m);
    CHECK(rl_grammar_matcher_accept_bytes(m, "\xC3\xA9\xED\xA0\x80", 5, &n_ok) != RL_OK);
    CHECK_EQ_INT(n_ok, 3);
    rl_grammar_matcher_reset(m);
    CHECK(rl_grammar_matcher_accept_bytes(m, "\xC3\xA9\x80", 3, &n_ok) != RL_OK);
    CHECK_EQ_INT(n_ok, 2);
    rl_grammar_matcher_reset(m);
    CHECK(rl_grammar_matcher_accept_bytes(m, "\xC3\xA9\xF0\x9F\x98\x80", 6, &n_ok) == RL_OK);
    CHECK(rl_grammar_matcher_can_end(m));
    rl_grammar_matcher_free(m);
    rl_grammar_free(g);
}

int main(void) {
    RUN(example_grammars_parse);
    RUN(parser_cases);
    RUN(build_cases);
    RUN(parse_errors_have_positions);
    RUN(grammar_cases);
    RUN(bytes_and_utf8);
    return rl_test_finish();
}
