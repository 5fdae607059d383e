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
#include <pthread.h>
#include <time.h>

static const char *k_grammar_files[] = {"arithmetic.gbnf", "c.gbnf",        "chess.gbnf",
                                        "english.gbnf",    "japanese.gbnf", "json.gbnf",
                                        "json_arr.gbnf",   "list.gbnf"};

/* A file of the test data as a NUL-terminated string. */
static char *read_path(const char *path, size_t *n) {
    unsigned char *d = rl_test_read_file(path, n);
    if (!d) return NULL;
    char *s = malloc(*n + 1);
    memcpy(s, d, *n);
    s[*n] = '\0';
    free(d);
    return s;
}

static char *read_text(const char *rel, size_t *n) { return read_path(rl_test_data(rel), n); }

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
            CHECKF(st == RL_OK && rl_grammar_matcher_can_end(m),
                   "%s: sample %llu rejected at %zu: %s", k_grammar_files[i],
                   (unsigned long long)seed, ok, buf);
        }
        rl_grammar_matcher_free(m);
        rl_grammar_free(g);
        free(text);
    }
}

static uint32_t elem_type(const char *s) {
    static const char *names[] = {
        "END",      "ALT",      "RULE_REF", "CHAR",     "CHAR_NOT", "CHAR_RNG_UPPER",
        "CHAR_ALT", "CHAR_ANY", "TOKEN",    "TOKEN_NOT"};
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
                CHECKF(x->type == t && x->value == val,
                       "case %zu rule %zu elem %zu: (%u,%u) vs (%u,%u)", i, r, k, x->type, x->value,
                       t, val);
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
    rl_grammar *g =
        compile("root ::= [ぁ-ゟ]+ \"!\" | \"é\" [^a]", NULL, NULL, NULL, err, sizeof err);
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

/* ---- masks with real vocabularies ---------------------------------------------------- */

typedef struct vocab_fx {
    rl_gguf *gg;
    rl_vocab *v;
    rl_grammar_vocab *gv;
} vocab_fx;

static bool fx_open(vocab_fx *f, const char *name) {
    char path[256], err[256];
    memset(f, 0, sizeof *f);
    snprintf(path, sizeof path, "models/vocab/ggml-vocab-%s.gguf", name);
    if (rl_gguf_open(rl_test_data(path), &f->gg, err, sizeof err) != RL_OK) return false;
    if (rl_vocab_load(f->gg, &f->v, err, sizeof err) != RL_OK) {
        rl_gguf_free(f->gg);
        return false;
    }
    rl_status st = rl_grammar_vocab_create(f->v, &f->gv);
    CHECK(st == RL_OK);
    return st == RL_OK;
}

static void fx_close(vocab_fx *f) {
    rl_grammar_vocab_free(f->gv);
    rl_vocab_free(f->v);
    rl_gguf_free(f->gg);
}

/* The grammars of the mask tests: example grammars plus the benchmark schema grammar of
 * the repository (found next to this source file). */
static char *grammar_text(const char *name) {
    size_t n;
    if (!strcmp(name, "bench_schema.gbnf")) {
        char path[1024];
        snprintf(path, sizeof path, "%s", __FILE__);
        char *slash = strrchr(path, '/');
        if (!slash) return NULL;
        snprintf(slash, sizeof path - (size_t)(slash - path), "/../../bench/grammars/%s", name);
        return read_path(path, &n);
    }
    char rel[128];
    snprintf(rel, sizeof rel, "testdata/grammars/%s", name);
    return read_text(rel, &n);
}

static int32_t count_bits(const uint32_t *m, size_t n) {
    int32_t c = 0;
    for (size_t i = 0; i < n; i++) c += __builtin_popcount(m[i]);
    return c;
}

typedef struct cmp_stats {
    int states, distinct, brute, mismatches, in_char;
    uint64_t *seen;
    size_t n_seen, cap_seen;
} cmp_stats;

static bool seen_before(cmp_stats *cs, uint64_t h) {
    for (size_t i = 0; i < cs->n_seen; i++)
        if (cs->seen[i] == h) return true;
    if (cs->n_seen == cs->cap_seen) {
        cs->cap_seen = cs->cap_seen ? cs->cap_seen * 2 : 1024;
        cs->seen = realloc(cs->seen, cs->cap_seen * sizeof *cs->seen);
    }
    cs->seen[cs->n_seen++] = h;
    return false;
}

/* Compare the fast mask of m's state with the reference walk (every distinct state) and
 * with the one-by-one check (every brute_every-th distinct state). */
static void compare_state(rl_grammar_matcher *m, const rl_grammar_vocab *gv, cmp_stats *cs,
                          int brute_every, const char *what) {
    size_t nw = gv->n_words;
    uint32_t *fast = calloc(nw, 4), *ref = calloc(nw, 4);
    cs->states++;
    CHECK(rl_grammar_matcher_fill_mask(m, fast, nw) == RL_OK);
    if (!seen_before(cs, rl__grammar_matcher_state_hash(m))) {
        cs->distinct++;
        cs->in_char += rl__grammar_matcher_in_char(m);
        CHECK(rl__grammar_matcher_mask_walk(m, ref, nw) == RL_OK);
        bool same = !memcmp(fast, ref, nw * 4);
        if (same && brute_every && cs->distinct % brute_every == 0) {
            cs->brute++;
            CHECK(rl__grammar_matcher_mask_brute(m, ref, nw) == RL_OK);
            /* brute force has no can-end rule of its own: EOG via allows() */
            same = !memcmp(fast, ref, nw * 4);
        }
        if (!same) {
            cs->mismatches++;
            if (cs->mismatches <= 3) {
                for (int32_t t = 0, shown = 0; t < gv->n_tokens && shown < 5; t++) {
                    int a = (fast[t >> 5] >> (t & 31)) & 1, b = (ref[t >> 5] >> (t & 31)) & 1;
                    if (a == b) continue;
                    uint32_t len;
                    const unsigned char *p = rl__gv_piece(gv, t, &len);
                    fprintf(stderr, "  %s: token %d '%.*s': fast %d, reference %d\n", what, t,
                            (int)len, p, a, b);
                    shown++;
                }
            }
        }
    }
    free(fast);
    free(ref);
}

/* Documents: random sentences tokenized (BPE: the pieces spell the text). */
static void run_text_docs(rl_grammar *g, vocab_fx *f, int n_docs, size_t max_len, cmp_stats *cs,
                          const char *name) {
    rl_grammar_matcher *m = NULL;
    CHECK(rl_grammar_matcher_create(g, 0, &m) == RL_OK);
    char *buf = malloc(8 * max_len + 4096);
    for (int d = 0; d < n_docs && m; d++) {
        size_t len = 0, n = 0;
        CHECK(rl_grammar_sample_text(g, 1000 + d, max_len, buf, 8 * max_len + 4096, &len) == RL_OK);
        rl_tokenize(f->v, buf, len, 0, NULL, 0, &n);
        rl_token *t = malloc((n + 1) * sizeof *t);
        CHECK(rl_tokenize(f->v, buf, len, 0, t, n, &n) == RL_OK);
        rl_grammar_matcher_reset(m);
        for (size_t i = 0; i <= n; i++) {
            compare_state(m, f->gv, cs, 40, name);
            if (i == n) break;
            CHECKF(rl_grammar_matcher_allows(m, t[i]), "%s doc %d token %zu", name, d, i);
            if (rl_grammar_matcher_accept_token(m, t[i]) != RL_OK) {
                CHECKF(0, "%s doc %d: token %zu rejected: %s", name, d, i,
                       rl_grammar_matcher_errmsg(m));
                break;
            }
        }
        CHECKF(rl_grammar_matcher_can_end(m), "%s doc %d cannot end", name, d);
        free(t);
    }
    free(buf);
    rl_grammar_matcher_free(m);
}

static uint64_t rng64(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Documents made token by token: a random allowed token each step (end tokens now and
 * then where allowed). Reaches states text never does: byte tokens, odd boundaries. */
static void run_token_walks(rl_grammar *g, vocab_fx *f, int n_docs, int max_tokens, cmp_stats *cs,
                            const char *name) {
    size_t nw = f->gv->n_words;
    uint32_t *mask = calloc(nw, 4);
    rl_grammar_matcher *m = NULL;
    CHECK(rl_grammar_matcher_create(g, 0, &m) == RL_OK);
    uint64_t rng = 42;
    for (int d = 0; d < n_docs && m; d++) {
        rl_grammar_matcher_reset(m);
        for (int i = 0; i < max_tokens; i++) {
            compare_state(m, f->gv, cs, 40, name);
            CHECK(rl_grammar_matcher_fill_mask(m, mask, nw) == RL_OK);
            int32_t n_allowed = count_bits(mask, nw);
            if (n_allowed == 0) break;
            rl_token eos = rl_vocab_eos(f->v);
            if (rl_grammar_matcher_can_end(m) && rng64(&rng) % 4 == 0) {
                CHECK(eos >= 0 && ((mask[eos >> 5] >> (eos & 31)) & 1));
                break;
            }
            /* prefer short tokens and byte tokens half the time: more boundaries */
            int32_t pick = (int32_t)(rng64(&rng) % (uint64_t)n_allowed), t = -1;
            for (int32_t k = 0; k < f->gv->n_tokens; k++)
                if ((mask[k >> 5] >> (k & 31)) & 1 && pick-- == 0) {
                    t = k;
                    break;
                }
            if (rng64(&rng) % 2) {
                for (int tries = 0; tries < 64; tries++) {
                    int32_t k = (int32_t)(rng64(&rng) % (uint64_t)f->gv->n_tokens);
                    uint32_t len;
                    rl__gv_piece(f->gv, k, &len);
                    if (len <= 2 && ((mask[k >> 5] >> (k & 31)) & 1)) {
                        t = k;
                        break;
                    }
                }
            }
            if (rl_vocab_is_eog(f->v, t)) break;
            CHECK(rl_grammar_matcher_accept_token(m, t) == RL_OK);
        }
    }
    free(mask);
    rl_grammar_matcher_free(m);
}

static int env_int(const char *name, int dflt) {
    const char *s = getenv(name);
    return s && *s ? atoi(s) : dflt;
}

TEST(masks_match_reference) {
    static const struct {
        const char *vocab;
        const char *grammar;
        int text_docs, walk_docs;
    } plan[] = {
        {"llama-bpe", "json.gbnf", 150, 40},      {"llama-bpe", "bench_schema.gbnf", 60, 20},
        {"llama-bpe", "c.gbnf", 30, 12},          {"llama-bpe", "japanese.gbnf", 10, 20},
        {"llama-bpe", "arithmetic.gbnf", 30, 10}, {"llama-spm", "json.gbnf", 0, 40},
        {"llama-spm", "japanese.gbnf", 0, 20},    {"llama-spm", "chess.gbnf", 0, 20},
        {"llama-spm", "c.gbnf", 0, 20},
    };
    int scale = env_int("RUVLLM_GRAMMAR_TEST_SCALE", 1);
#ifdef RL_UNDER_SANITIZER
    int div = 4;
#else
    int div = 1;
#endif
    int total = 0, total_brute = 0, total_in_char = 0;
    vocab_fx f;
    const char *open_vocab = NULL;
    for (size_t k = 0; k < RL_ARRAY_LEN(plan); k++) {
        if (!open_vocab || strcmp(open_vocab, plan[k].vocab)) {
            if (open_vocab) fx_close(&f);
            open_vocab = NULL;
            if (!fx_open(&f, plan[k].vocab)) SKIP("vocabulary %s missing", plan[k].vocab);
            open_vocab = plan[k].vocab;
        }
        char *text = grammar_text(plan[k].grammar);
        CHECKF(text, "%s missing", plan[k].grammar);
        if (!text) continue;
        char err[256];
        rl_grammar *g = compile(text, NULL, f.gv, NULL, err, sizeof err);
        CHECKF(g, "%s: %s", plan[k].grammar, err);
        free(text);
        if (!g) continue;
        cmp_stats cs = {0};
        char name[128];
        snprintf(name, sizeof name, "%s/%s", plan[k].vocab, plan[k].grammar);
        int nt = (plan[k].text_docs * scale + div - 1) / div;
        int nw = (plan[k].walk_docs * scale + div - 1) / div;
        run_text_docs(g, &f, nt, 300, &cs, name);
        run_token_walks(g, &f, nw, 40, &cs, name);
        CHECKF(cs.mismatches == 0, "%s: %d of %d distinct states differ", name, cs.mismatches,
               cs.distinct);
        fprintf(stderr,
                "  %s: %d states, %d distinct compared with the walk (%d inside a character), "
                "%d one by one\n",
                name, cs.states, cs.distinct, cs.in_char, cs.brute);
        total += cs.distinct;
        total_in_char += cs.in_char;
        total_brute += cs.brute;
        free(cs.seen);
        rl_grammar_free(g);
    }
    if (open_vocab) fx_close(&f);
#ifndef RL_UNDER_SANITIZER
    CHECKF(total >= 2000, "only %d distinct states", total);
#endif
    CHECK(total_brute > 0);
    CHECK(total_in_char > 0);
}

/* ---- token references with a vocabulary --------------------------------------------- */

TEST(token_references) {
    vocab_fx f;
    if (!fx_open(&f, "llama-bpe")) SKIP("llama-bpe vocabulary missing");
    size_t nw = f.gv->n_words;
    uint32_t *fast = calloc(nw, 4), *ref = calloc(nw, 4);
    rl_token sh = rl_vocab_find(f.v, "<|start_header_id|>", 19);
    rl_token eh = rl_vocab_find(f.v, "<|end_header_id|>", 17);
    rl_token eot = rl_vocab_eot(f.v);
    CHECK(sh >= 0 && eh >= 0 && eot >= 0 && rl_vocab_is_eog(f.v, eot));
    /* the <text> form resolves to the same ids as <[id]> */
    char text[512], err[256];
    snprintf(text, sizeof text,
             "root ::= <|start_header_id|> (!<|end_header_id|>)* <|end_header_id|> \"ok\" <[%d]>\n",
             eot);
    rl_grammar *g = compile(text, NULL, f.gv, NULL, err, sizeof err);
    CHECKF(g, "%s", err);
    snprintf(text, sizeof text, "root ::= <[%d]> (!<[%d]>)* <[%d]> \"ok\" <[%d]>\n", sh, eh, eh,
             eot);
    rl_grammar *g2 = compile(text, NULL, f.gv, NULL, err, sizeof err);
    CHECKF(g2, "%s", err);
    CHECK(g && g2 && g->ir.n_rules == g2->ir.n_rules &&
          !memcmp(g->ir.elems, g2->ir.elems, g->ir.off[g->ir.n_rules] * sizeof *g->ir.elems));
    rl_grammar_free(g2);
    /* a text that is not one token is refused */
    rl_status st;
    rl_grammar *bad = compile("root ::= <hello world>", NULL, f.gv, &st, err, sizeof err);
    CHECKF(!bad && st == RL_ERR_INVALID_ARG && strstr(err, "single token"), "%s", err);
    rl_grammar_matcher *m = NULL;
    if (g) CHECK(rl_grammar_matcher_create(g, 4, &m) == RL_OK);
    if (m) {
        /* start: only the header token */
        CHECK(rl_grammar_matcher_fill_mask(m, fast, nw) == RL_OK);
        CHECK_EQ_INT(count_bits(fast, nw), 1);
        CHECK((fast[sh >> 5] >> (sh & 31)) & 1);
        CHECK(rl__grammar_matcher_mask_walk(m, ref, nw) == RL_OK && !memcmp(fast, ref, nw * 4));
        CHECK(rl_grammar_matcher_accept_token(m, sh) == RL_OK);
        /* any token but the end tokens, control tokens included (token level) */
        CHECK(rl_grammar_matcher_fill_mask(m, fast, nw) == RL_OK);
        CHECK_EQ_INT(count_bits(fast, nw), f.gv->n_tokens - count_bits(f.gv->eog, nw));
        CHECK(rl__grammar_matcher_mask_walk(m, ref, nw) == RL_OK && !memcmp(fast, ref, nw * 4));
        rl_token hi = rl_vocab_find(f.v, "Hello", 5);
        CHECK(rl_grammar_matcher_accept_token(m, hi) == RL_OK);
        CHECK(rl_grammar_matcher_accept_token(m, sh) == RL_OK);
        CHECK(rl_grammar_matcher_accept_token(m, eh) == RL_OK);
        /* text after a token reference; "o" then "k", or "ok" */
        CHECK(rl_grammar_matcher_fill_mask(m, fast, nw) == RL_OK);
        rl_token o = rl_vocab_find(f.v, "o", 1), ok = rl_vocab_find(f.v, "ok", 2);
        CHECK(((fast[o >> 5] >> (o & 31)) & 1) && ((fast[ok >> 5] >> (ok & 31)) & 1));
        CHECK(!((fast[eot >> 5] >> (eot & 31)) & 1) && !((fast[eh >> 5] >> (eh & 31)) & 1));
        CHECK(rl__grammar_matcher_mask_walk(m, ref, nw) == RL_OK && !memcmp(fast, ref, nw * 4));
        CHECK(rl_grammar_matcher_accept_token(m, ok) == RL_OK);
        /* the end token is named in the grammar: allowed before the grammar can end */
        CHECK(!rl_grammar_matcher_can_end(m));
        CHECK(rl_grammar_matcher_fill_mask(m, fast, nw) == RL_OK);
        CHECK_EQ_INT(count_bits(fast, nw), 1);
        CHECK(rl_grammar_matcher_allows(m, eot));
        CHECK(rl_grammar_matcher_accept_token(m, eot) == RL_OK);
        CHECK(rl_grammar_matcher_can_end(m));
        /* and then an end token finishes it */
        CHECK(rl_grammar_matcher_fill_mask(m, fast, nw) == RL_OK);
        CHECK_EQ_INT(count_bits(fast, nw), count_bits(f.gv->eog, nw));
        CHECK(rl_grammar_matcher_rollback(m, 2) == RL_OK);
        CHECK(!rl_grammar_matcher_allows(m, eot));
    }
    rl_grammar_matcher_free(m);
    rl_grammar_free(g);
    free(fast);
    free(ref);
    fx_close(&f);
}

/* ---- rollback and clone ---------------------------------------------------------------- */

TEST(rollback_and_clone) {
    vocab_fx f;
    if (!fx_open(&f, "llama-bpe")) SKIP("llama-bpe vocabulary missing");
    char *text = grammar_text("json.gbnf");
    rl_grammar *g = compile(text, NULL, f.gv, NULL, NULL, 0);
    free(text);
    CHECK(g);
    size_t nw = f.gv->n_words;
    const char *doc =
        "{\"name\": \"ひらがな \\u00e9\", \"list\": [1, -2.5e3, true, null], \"o\": {}}";
    rl_token toks[256];
    size_t n = 0;
    CHECK(rl_tokenize(f.v, doc, strlen(doc), 0, toks, 256, &n) == RL_OK);
    rl_grammar_matcher *m = NULL;
    CHECK(rl_grammar_matcher_create(g, 8, &m) == RL_OK);
    uint32_t **masks = calloc(n + 1, sizeof *masks);
    for (size_t i = 0; i <= n; i++) {
        masks[i] = calloc(nw, 4);
        CHECK(rl_grammar_matcher_fill_mask(m, masks[i], nw) == RL_OK);
        if (i < n) CHECK(rl_grammar_matcher_accept_token(m, toks[i]) == RL_OK);
    }
    CHECK(rl_grammar_matcher_can_end(m));
    CHECK_EQ_INT(rl_grammar_matcher_n_history(m), 8);
    uint32_t *cur = calloc(nw, 4);
    /* roll back 3, then 5 more: the masks of those states come back */
    CHECK(rl_grammar_matcher_rollback(m, 3) == RL_OK);
    CHECK(rl_grammar_matcher_fill_mask(m, cur, nw) == RL_OK);
    CHECK(!memcmp(cur, masks[n - 3], nw * 4));
    CHECK(rl_grammar_matcher_rollback(m, 5) == RL_OK);
    CHECK(rl_grammar_matcher_fill_mask(m, cur, nw) == RL_OK);
    CHECK(!memcmp(cur, masks[n - 8], nw * 4));
    CHECK(rl_grammar_matcher_rollback(m, 1) == RL_ERR_RANGE);
    /* replay, clone halfway, both go on alike */
    for (size_t i = n - 8; i < n - 4; i++)
        CHECK(rl_grammar_matcher_accept_token(m, toks[i]) == RL_OK);
    rl_grammar_matcher *c = NULL;
    CHECK(rl_grammar_matcher_clone(m, &c) == RL_OK);
    for (size_t i = n - 4; i < n; i++) {
        CHECK(rl_grammar_matcher_accept_token(m, toks[i]) == RL_OK);
        CHECK(rl_grammar_matcher_accept_token(c, toks[i]) == RL_OK);
        CHECK(rl_grammar_matcher_fill_mask(c, cur, nw) == RL_OK);
        CHECK(!memcmp(cur, masks[i + 1], nw * 4));
    }
    CHECK(rl_grammar_matcher_can_end(c));
    /* the clone's history is its own */
    CHECK(rl_grammar_matcher_rollback(c, 4) == RL_OK);
    CHECK(rl_grammar_matcher_can_end(m) && !rl_grammar_matcher_can_end(c));
    /* end of generation: allowed only where the grammar can end, then nothing else */
    rl_token eos = rl_vocab_eos(f.v);
    CHECK(!rl_grammar_matcher_allows(c, eos));
    CHECK(rl_grammar_matcher_accept_token(c, eos) == RL_ERR_INVALID_ARG);
    CHECK(rl_grammar_matcher_accept_token(m, eos) == RL_OK);
    CHECK(rl_grammar_matcher_fill_mask(m, cur, nw) == RL_OK);
    CHECK((cur[eos >> 5] >> (eos & 31)) & 1);
    CHECK_EQ_INT(count_bits(cur, nw), count_bits(f.gv->eog, nw));
    CHECK(rl_grammar_matcher_accept_token(m, toks[0]) == RL_ERR_INVALID_ARG);
    CHECK(rl_grammar_matcher_rollback(m, 1) == RL_OK);
    CHECK(rl_grammar_matcher_accept_token(m, toks[0]) == RL_ERR_INVALID_ARG); /* '{' after '}' */
    /* rejected tokens leave the state alone */
    rl_grammar_matcher_reset(m);
    CHECK(rl_grammar_matcher_accept_token(m, toks[1]) == RL_ERR_INVALID_ARG);
    CHECK(rl_grammar_matcher_fill_mask(m, cur, nw) == RL_OK);
    CHECK(!memcmp(cur, masks[0], nw * 4));
    CHECK(rl_grammar_matcher_fill_mask(m, cur, nw - 1) == RL_ERR_INVALID_ARG);
    for (size_t i = 0; i <= n; i++) free(masks[i]);
    free(masks);
    free(cur);
    rl_grammar_matcher_free(c);
    rl_grammar_matcher_free(m);
    rl_grammar_free(g);
    fx_close(&f);
}

/* ---- hostile grammars -------------------------------------------------------------------- */

TEST(hostile_grammars) {
    char err[256];
    rl_status st;
    /* exponentially many stacks: every "x" doubles them */
    double t0 = rl__now();
    rl_grammar *g = compile("root ::= a\na ::= \"x\" a \"y\" | \"x\" a \"z\" | \"\"", NULL, NULL,
                            &st, err, sizeof err);
    CHECK(g);
    rl_grammar_matcher *m = NULL;
    if (g) CHECK(rl_grammar_matcher_create(g, 0, &m) == RL_OK);
    size_t n_ok;
    if (m) {
        st = rl_grammar_matcher_accept_bytes(m, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 40,
                                             &n_ok);
        CHECK(st == RL_ERR_LIMIT);
        CHECKF(strstr(rl_grammar_matcher_errmsg(m), "max_stacks"), "%s",
               rl_grammar_matcher_errmsg(m));
    }
    rl_grammar_matcher_free(m);
    rl_grammar_free(g);
    m = NULL;
    /* unbounded nesting */
    g = compile("root ::= \"(\" root \")\" | \"\"", NULL, NULL, &st, err, sizeof err);
    CHECK(g);
    if (g) CHECK(rl_grammar_matcher_create(g, 0, &m) == RL_OK);
    if (m) {
        size_t big = 100000;
        char *s = malloc(big);
        memset(s, '(', big);
        st = rl_grammar_matcher_accept_bytes(m, s, big, &n_ok);
        CHECK(st == RL_ERR_LIMIT);
        CHECKF(strstr(rl_grammar_matcher_errmsg(m), "max_depth"), "%s",
               rl_grammar_matcher_errmsg(m));
        free(s);
    }
    rl_grammar_matcher_free(m);
    rl_grammar_free(g);
    m = NULL;
    /* nested optional repetitions: many stacks, still bounded and quick */
    g = compile("root ::= ((\"a\"? \"b\"?){0,40}){0,40} \"!\"", NULL, NULL, &st, err, sizeof err);
    CHECKF(g || st == RL_ERR_INVALID_ARG, "%s", err);
    if (g) CHECK(rl_grammar_matcher_create(g, 0, &m) == RL_OK);
    if (m) {
        st = rl_grammar_matcher_accept_bytes(m, "abababababbbbaaab!", 18, &n_ok);
        CHECK(st == RL_OK || st == RL_ERR_LIMIT);
        if (st == RL_OK) CHECK(rl_grammar_matcher_can_end(m));
    }
    rl_grammar_matcher_free(m);
    rl_grammar_free(g);
    m = NULL;
    /* text limits: deep parentheses, huge repetition products, element count */
    char *deep = malloc(20000);
    strcpy(deep, "root ::= ");
    size_t k = strlen(deep);
    for (int i = 0; i < 5000; i++) deep[k++] = '(';
    deep[k++] = '"';
    deep[k++] = 'a';
    deep[k++] = '"';
    for (int i = 0; i < 5000; i++) deep[k++] = ')';
    deep[k] = '\0';
    g = compile(deep, NULL, NULL, &st, err, sizeof err);
    CHECKF(!g && st == RL_ERR_LIMIT && strstr(err, "max_nesting"), "%s", err);
    free(deep);
    /* a 600-character literal in 1999 optional copies: 1.2 M elements */
    char *wide_lit = malloc(1000);
    strcpy(wide_lit, "root ::= \"");
    for (int i = 0; i < 600; i++) strcat(wide_lit, "a");
    strcat(wide_lit, "\"{0,1999}");
    g = compile(wide_lit, NULL, NULL, &st, err, sizeof err);
    CHECKF(!g && st == RL_ERR_LIMIT && strstr(err, "max_elements"), "%s", err);
    free(wide_lit);
    g = compile("root ::= ((((\"a\"{0,50}){0,50}){0,50}){0,50})", NULL, NULL, &st, err, sizeof err);
    CHECKF(!g && st == RL_ERR_INVALID_ARG, "%s", err);
    /* with a small stack limit the start of a wide grammar is refused at compile */
    rl_grammar_limits lim = rl_grammar_default_limits();
    lim.max_stacks = 8;
    const char *wide =
        "root ::= \"a\" | \"b\" | \"c\" | \"d\" | \"e\" | \"f\" | \"g\" | \"h\" | \"i\" | \"j\"";
    st = rl_grammar_compile(wide, strlen(wide), NULL, NULL, &lim, &g, err, sizeof err);
    CHECKF(st == RL_ERR_LIMIT && !g && strstr(err, "max_stacks"), "%s", err);
    double dt = rl__now() - t0;
    CHECKF(dt < 20.0, "hostile grammars took %.1f s", dt);
}

/* ---- threads share a grammar ------------------------------------------------------------ */

typedef struct thr_arg {
    rl_grammar *g;
    vocab_fx *f;
    int seed;
    uint64_t sum; /* a digest of every mask */
    int fails;
} thr_arg;

static void *thr_main(void *p) {
    thr_arg *a = p;
    size_t nw = a->f->gv->n_words;
    uint32_t *mask = calloc(nw, 4);
    rl_grammar_matcher *m = NULL;
    if (rl_grammar_matcher_create(a->g, 0, &m) != RL_OK) {
        a->fails++;
        free(mask);
        return NULL;
    }
    char buf[8192];
    for (int d = 0; d < 6; d++) {
        size_t len = 0, n = 0;
        rl_token t[2048];
        if (rl_grammar_sample_text(a->g, (uint64_t)(a->seed * 100 + d), 400, buf, sizeof buf,
                                   &len) != RL_OK ||
            rl_tokenize(a->f->v, buf, len, 0, t, 2048, &n) != RL_OK) {
            a->fails++;
            continue;
        }
        rl_grammar_matcher_reset(m);
        for (size_t i = 0; i <= n; i++) {
            if (rl_grammar_matcher_fill_mask(m, mask, nw) != RL_OK) a->fails++;
            for (size_t w = 0; w < nw; w++) a->sum = a->sum * 31 + mask[w];
            if (i < n && rl_grammar_matcher_accept_token(m, t[i]) != RL_OK) a->fails++;
        }
    }
    rl_grammar_matcher_free(m);
    free(mask);
    return NULL;
}

TEST(threads_share_a_grammar) {
    vocab_fx f;
    if (!fx_open(&f, "llama-bpe")) SKIP("llama-bpe vocabulary missing");
    char *text = grammar_text("json.gbnf");
    rl_grammar *g1 = compile(text, NULL, f.gv, NULL, NULL, 0);
    rl_grammar *g2 = compile(text, NULL, f.gv, NULL, NULL, 0);
    free(text);
    CHECK(g1 && g2);
    thr_arg one[4], many[4];
    for (int i = 0; i < 4; i++) { /* alone, one after the other, on g1 */
        one[i] = (thr_arg){g1, &f, i, 0, 0};
        thr_main(&one[i]);
    }
    pthread_t th[4];
    for (int i = 0; i < 4; i++) { /* together on a fresh g2: its tables fill concurrently */
        many[i] = (thr_arg){g2, &f, i, 0, 0};
        pthread_create(&th[i], NULL, thr_main, &many[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++) {
        CHECK(one[i].fails == 0 && many[i].fails == 0);
        CHECK(one[i].sum == many[i].sum);
    }
    rl_grammar_free(g1);
    rl_grammar_free(g2);
    fx_close(&f);
}

/* ---- allocation failures ------------------------------------------------------------------ */

TEST(allocation_failures) {
    const char *text = "root ::= (\"a\" | [b-z]+ \"!\" | x{2,5})*\nx ::= \"é\" | \"\\u0100\"";
    long base = rl__alloc_count();
    char err[256];
    rl_grammar *g = compile(text, NULL, NULL, NULL, err, sizeof err);
    CHECK(g);
    rl_grammar_free(g);
    long need = rl__alloc_count() - base;
    size_t before = rl_mem_in_use();
    for (long k = 1; k <= need + 5; k++) {
        rl__alloc_fail_after(k);
        rl_status st;
        g = compile(text, NULL, NULL, &st, err, sizeof err);
        rl__alloc_fail_after(0);
        CHECK(g || st == RL_ERR_NOMEM);
        if (g) {
            rl_grammar_matcher *m = NULL;
            rl__alloc_fail_after(k);
            st = rl_grammar_matcher_create(g, 4, &m);
            if (st == RL_OK) st = rl_grammar_matcher_accept_bytes(m, "aab!ééa", 9, NULL);
            rl__alloc_fail_after(0);
            CHECK(st == RL_OK || st == RL_ERR_NOMEM);
            rl_grammar_matcher_free(m);
        }
        rl_grammar_free(g);
    }
    CHECK_EQ_INT(rl_mem_in_use(), before);
}

/* ---- counted repetitions against llama.cpp's rule chains ----------------------------- */

static rl_grammar *compile_rep(const char *text, const rl_grammar_vocab *gv, bool rep) {
    if (!rep) setenv("RUVLLM_GRAMMAR_NO_REPEAT", "1", 1);
    char err[256];
    rl_grammar *g = compile(text, NULL, gv, NULL, err, sizeof err);
    unsetenv("RUVLLM_GRAMMAR_NO_REPEAT");
    CHECKF(g, "%s: %s", text, err);
    return g;
}

/* Accepted prefix length and whether the whole text is a sentence. */
static size_t judge(rl_grammar_matcher *m, const char *s, size_t len, bool *complete) {
    rl_grammar_matcher_reset(m);
    size_t ok = 0;
    rl_status st = rl_grammar_matcher_accept_bytes(m, s, len, &ok);
    *complete = st == RL_OK && rl_grammar_matcher_can_end(m);
    return ok;
}

TEST(repetition_counts) {
    static const char *grammars[] = {
        "root ::= \"a\"{0,20} \"b\"",
        "root ::= (\"ab\" | \"c\"){3,12} \"!\"",
        "root ::= x{2,10} x{0,9} \";\"\nx ::= [a-c] | \"zz\"",
        "root ::= [0-9]{10,} \".\"",
        "root ::= \"(\" root{0,9} \")\" | \"x\"",
        "root ::= ([a-b] [a-b]?){8,9} \"$\"",
        "root ::= \"<\" [^>]{1,30} \">\" (\" \" [a-z]{0,12}){0,10}",
    };
    for (size_t k = 0; k < RL_ARRAY_LEN(grammars); k++) {
        rl_grammar *a = compile_rep(grammars[k], NULL, true),
                   *b = compile_rep(grammars[k], NULL, false);
        if (!a || !b) {
            rl_grammar_free(a);
            rl_grammar_free(b);
            continue;
        }
        CHECKF(a->n_reps > 0 && b->n_reps == 0, "grammar %zu: %u / %u counted repetitions", k,
               a->n_reps, b->n_reps);
        rl_grammar_matcher *ma = NULL, *mb = NULL;
        CHECK(rl_grammar_matcher_create(a, 0, &ma) == RL_OK);
        CHECK(rl_grammar_matcher_create(b, 0, &mb) == RL_OK);
        uint64_t rng = 7 + k;
        int n_complete = 0, n_reject = 0;
        for (int i = 0; i < 400 && ma && mb; i++) {
            char buf[2048];
            size_t len = 0;
            rl_grammar *src = i % 2 ? a : b;
            CHECK(rl_grammar_sample_text(src, (uint64_t)i, 60, buf, sizeof buf, &len) == RL_OK);
            /* mutate half of them: drop, repeat or change a byte */
            if (i % 4 >= 2 && len > 0) {
                size_t at = rng64(&rng) % len;
                switch (rng64(&rng) % 3) {
                case 0:
                    memmove(buf + at, buf + at + 1, len - at);
                    len--;
                    break;
                case 1:
                    if (len + 1 < sizeof buf) {
                        memmove(buf + at + 1, buf + at, len - at + 1);
                        len++;
                    }
                    break;
                default:
                    buf[at] = "abcz09!(x;$<> ."[rng64(&rng) % 15];
                    break;
                }
            }
            bool ca, cb;
            size_t oa = judge(ma, buf, len, &ca), ob = judge(mb, buf, len, &cb);
            CHECKF(oa == ob && ca == cb, "grammar %zu, '%.*s': %zu/%d vs %zu/%d", k, (int)len, buf,
                   oa, ca, ob, cb);
            n_complete += ca;
            n_reject += !ca;
        }
        CHECK(n_complete > 50 && n_reject > 20);
        rl_grammar_matcher_free(ma);
        rl_grammar_matcher_free(mb);
        rl_grammar_free(a);
        rl_grammar_free(b);
    }
    /* masks with a vocabulary: counted and chained forms agree state by state */
    vocab_fx f;
    if (!fx_open(&f, "llama-bpe")) SKIP("llama-bpe vocabulary missing");
    const char *names[] = {"bench_schema.gbnf", "json.gbnf"};
    size_t nw = f.gv->n_words;
    uint32_t *ma_mask = calloc(nw, 4), *mb_mask = calloc(nw, 4);
    for (size_t k = 0; k < RL_ARRAY_LEN(names); k++) {
        char *text = grammar_text(names[k]);
        rl_grammar *a = compile_rep(text, f.gv, true), *b = compile_rep(text, f.gv, false);
        free(text);
        rl_grammar_matcher *ma = NULL, *mb = NULL;
        if (a && b) {
            CHECK(rl_grammar_matcher_create(a, 0, &ma) == RL_OK);
            CHECK(rl_grammar_matcher_create(b, 0, &mb) == RL_OK);
        }
        uint64_t rng = 99;
        int states = 0;
        for (int d = 0; d < 100 && states < 800 && ma && mb; d++) {
            rl_grammar_matcher_reset(ma);
            rl_grammar_matcher_reset(mb);
            for (int i = 0; i < 120; i++) {
                CHECK(rl_grammar_matcher_fill_mask(ma, ma_mask, nw) == RL_OK);
                CHECK(rl_grammar_matcher_fill_mask(mb, mb_mask, nw) == RL_OK);
                states++;
                if (memcmp(ma_mask, mb_mask, nw * 4)) {
                    CHECKF(0, "%s doc %d token %d: masks differ", names[k], d, i);
                    break;
                }
                int32_t n_allowed = count_bits(ma_mask, nw), pick, t = -1;
                if (n_allowed == 0) break;
                /* long runs inside strings: prefer one-character tokens */
                pick = (int32_t)(rng64(&rng) % (uint64_t)n_allowed);
                for (int32_t x = 0; x < f.gv->n_tokens; x++)
                    if (((ma_mask[x >> 5] >> (x & 31)) & 1) && pick-- == 0) t = x;
                for (int tries = 0; tries < 200 && rng64(&rng) % 8; tries++) {
                    int32_t x = (int32_t)(rng64(&rng) % 256);
                    uint32_t len;
                    rl__gv_piece(f.gv, x, &len);
                    if (((ma_mask[x >> 5] >> (x & 31)) & 1)) {
                        t = x;
                        break;
                    }
                }
                if (rl_vocab_is_eog(f.v, t)) break;
                CHECK(rl_grammar_matcher_accept_token(ma, t) == RL_OK);
                CHECK(rl_grammar_matcher_accept_token(mb, t) == RL_OK);
            }
        }
        CHECK(states > 500);
        rl_grammar_matcher_free(ma);
        rl_grammar_matcher_free(mb);
        rl_grammar_free(a);
        rl_grammar_free(b);
    }
    free(ma_mask);
    free(mb_mask);
    fx_close(&f);
}

int main(void) {
    RUN(example_grammars_parse);
    RUN(parser_cases);
    RUN(build_cases);
    RUN(parse_errors_have_positions);
    RUN(grammar_cases);
    RUN(bytes_and_utf8);
    RUN(repetition_counts);
    RUN(masks_match_reference);
    RUN(token_references);
    RUN(rollback_and_clone);
    RUN(hostile_grammars);
    RUN(threads_share_a_grammar);
    RUN(allocation_failures);
    return rl_test_finish();
}
