/*
 * test_grammar_constraint.c - rl_grammar_constraint, a grammar matcher as the sampler's
 * lazy constraint: its byte mask equals the matcher's word mask (padding rows of the logits
 * banned), allows() agrees with the mask, done() means "nothing but an end token", and
 * rl_sampler_sample_constrained under it returns only allowed tokens for every sampler
 * setting, with end tokens only where the grammar can end. Vocabularies: llama-spm (32k)
 * and llama-bpe (128k).
 */
#include "test.h"

#include "ruvllm.h"

typedef struct fixture {
    rl_gguf *gg;
    rl_vocab *v;
    rl_grammar_vocab *gv;
    int32_t n_tok;
} fixture;

static bool fixture_open(fixture *f, const char *rel) {
    memset(f, 0, sizeof *f);
    char err[256];
    if (rl_gguf_open(rl_test_data(rel), &f->gg, err, sizeof err) != RL_OK) return false;
    if (rl_vocab_load(f->gg, &f->v, err, sizeof err) != RL_OK) return false;
    if (rl_grammar_vocab_create(f->v, &f->gv) != RL_OK) return false;
    f->n_tok = rl_vocab_n_tokens(f->v);
    return true;
}

static void fixture_close(fixture *f) {
    rl_grammar_vocab_free(f->gv);
    rl_vocab_free(f->v);
    rl_gguf_free(f->gg);
}

static rl_grammar *compile(const fixture *f, const char *text) {
    rl_grammar *g = NULL;
    char err[256] = "";
    rl_status st =
        rl_grammar_compile(text, strlen(text), NULL, f ? f->gv : NULL, NULL, &g, err, sizeof err);
    CHECKF(st == RL_OK, "%s: %s", text, err);
    return g;
}

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

/* The constraint's byte mask against the matcher's word mask, and allows() against both
 * for some tokens; padding rows [n_tok, n_vocab) banned. */
static void check_state(rl_grammar_matcher *m, rl_grammar_constraint *gc, int32_t n_tok,
                        int32_t n_vocab) {
    const rl_sampler_constraint *c = rl_grammar_constraint_get(gc);
    size_t nb = ((size_t)n_vocab + 7) / 8, nw = ((size_t)n_tok + 31) / 32;
    uint8_t *bytes = malloc(nb);
    uint32_t *words = malloc(nw * 4);
    memset(bytes, 0xA5, nb);
    CHECK(c->fill_mask(c->user, bytes, n_vocab) == RL_OK);
    CHECK(rl_grammar_matcher_fill_mask(m, words, nw) == RL_OK);
    int bad = 0;
    for (int32_t t = 0; t < n_vocab; t++) {
        bool want = t < n_tok && ((words[t >> 5] >> (t & 31)) & 1);
        if (rl_mask_test(bytes, t) != want) bad++;
    }
    for (int32_t t = n_vocab; (size_t)t < nb * 8; t++) bad += rl_mask_test(bytes, t);
    CHECK_EQ_INT(bad, 0);
    for (int k = 0; k < 300; k++) {
        rl_token t = (rl_token)(rnd() % (uint64_t)n_vocab);
        CHECKF(c->allows(c->user, t) == rl_mask_test(bytes, t), "token %d", (int)t);
    }
    CHECK(!c->allows(c->user, -1) && !c->allows(c->user, n_vocab));
    free(bytes);
    free(words);
}

TEST(create_errors) {
    fixture f;
    if (!fixture_open(&f, "models/vocab/ggml-vocab-llama-spm.gguf")) SKIP("llama-spm vocab");
    rl_grammar_constraint *gc = (rl_grammar_constraint *)1;
    CHECK(rl_grammar_constraint_create(NULL, 10, &gc) == RL_ERR_INVALID_ARG && !gc);
    CHECK(rl_grammar_constraint_create(NULL, 10, NULL) == RL_ERR_INVALID_ARG);
    /* a grammar without a vocabulary has no masks */
    rl_grammar *g0 = compile(NULL, "root ::= \"a\"");
    rl_grammar_matcher *m0 = NULL;
    CHECK(rl_grammar_matcher_create(g0, 0, &m0) == RL_OK);
    CHECK(rl_grammar_constraint_create(m0, 100, &gc) == RL_ERR_INVALID_ARG && !gc);
    CHECK(strstr(rl_grammar_matcher_errmsg(m0), "vocabulary") != NULL);
    /* logits shorter than the vocabulary's words */
    rl_grammar *g = compile(&f, "root ::= \"a\"");
    rl_grammar_matcher *m = NULL;
    CHECK(rl_grammar_matcher_create(g, 0, &m) == RL_OK);
    CHECK(rl_grammar_constraint_create(m, f.n_tok - 64, &gc) == RL_ERR_INVALID_ARG && !gc);
    CHECK(rl_grammar_constraint_create(m, 0, &gc) == RL_ERR_INVALID_ARG && !gc);
    CHECK(rl_grammar_constraint_create(m, f.n_tok, &gc) == RL_OK && gc);
    /* fill_mask refuses another length than the one given at create */
    uint8_t *b = malloc((size_t)f.n_tok);
    const rl_sampler_constraint *c = rl_grammar_constraint_get(gc);
    CHECK(c->fill_mask(c->user, b, f.n_tok + 8) == RL_ERR_INVALID_ARG);
    free(b);
    rl_grammar_constraint_free(gc);
    rl_grammar_constraint_free(NULL);
    CHECK(rl_grammar_constraint_get(NULL) == NULL);
    CHECK(!rl_grammar_constraint_done(NULL));
    rl_grammar_matcher_free(m);
    rl_grammar_free(g);
    rl_grammar_matcher_free(m0);
    rl_grammar_free(g0);
    fixture_close(&f);
}

/* Masks over the states of a few texts, with padded logits (n_vocab past the vocabulary,
 * not a multiple of 8 or 32) and exact sizes. */
TEST(masks_match_matcher) {
    const char *vocabs[] = {"models/vocab/ggml-vocab-llama-spm.gguf",
                            "models/vocab/ggml-vocab-llama-bpe.gguf"};
    for (int vi = 0; vi < 2; vi++) {
        fixture f;
        if (!fixture_open(&f, vocabs[vi])) SKIP("%s", vocabs[vi]);
        rl_grammar *g = compile(&f, "root ::= \"{\" ws (item (\",\" ws item)*)? \"}\"\n"
                                    "item ::= \"\\\"\" [a-zé]* \"\\\"\" | [0-9]+\n"
                                    "ws ::= [ \\n]?\n");
        const int32_t pads[] = {0, 1, 45, 96};
        for (int pi = 0; pi < 4; pi++) {
            const int32_t nv = f.n_tok + pads[pi];
            rl_grammar_matcher *m = NULL;
            rl_grammar_constraint *gc = NULL;
            CHECK(rl_grammar_matcher_create(g, 0, &m) == RL_OK);
            CHECK(rl_grammar_constraint_create(m, nv, &gc) == RL_OK);
            const char *steps[] = {"{", " \"ab", "é", "\",", "12", "}"};
            check_state(m, gc, f.n_tok, nv);
            for (int s = 0; s < 6; s++) {
                CHECK(rl_grammar_matcher_accept_bytes(m, steps[s], strlen(steps[s]), NULL) ==
                      RL_OK);
                check_state(m, gc, f.n_tok, nv);
            }
            /* complete: only end tokens are allowed, and done() says so */
            CHECK(rl_grammar_constraint_done(gc));
            rl_grammar_constraint_free(gc);
            rl_grammar_matcher_free(m);
        }
        rl_grammar_free(g);
        fixture_close(&f);
    }
}

/* done(): a complete text that can still go on is not done; one that cannot is. */
TEST(done) {
    fixture f;
    if (!fixture_open(&f, "models/vocab/ggml-vocab-llama-spm.gguf")) SKIP("llama-spm vocab");
    static const struct {
        const char *grammar, *text;
        bool can_end, done;
    } cases[] = {
        {"root ::= \"yes\" | \"no\"", "", false, false},
        {"root ::= \"yes\" | \"no\"", "ye", false, false},
        {"root ::= \"yes\" | \"no\"", "yes", true, true},
        {"root ::= \"yes\" | \"yes!\"", "yes", true, false},
        {"root ::= [a-z]+", "abc", true, false},
        {"root ::= [a-z]{1,3}", "abc", true, true},
        {"root ::= \"x\" \" \"?", "x", true, false},
        {"root ::= \"x\" \" \"?", "x ", true, true},
        {"root ::= \"a\" \"é\"", "a\xc3", false, false},
        {"root ::= \"a\" \"é\"", "aé", true, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        rl_grammar *g = compile(&f, cases[i].grammar);
        rl_grammar_matcher *m = NULL;
        rl_grammar_constraint *gc = NULL;
        CHECK(rl_grammar_matcher_create(g, 0, &m) == RL_OK);
        CHECK(rl_grammar_constraint_create(m, f.n_tok, &gc) == RL_OK);
        CHECK(rl_grammar_matcher_accept_bytes(m, cases[i].text, strlen(cases[i].text), NULL) ==
              RL_OK);
        CHECKF(rl_grammar_matcher_can_end(m) == cases[i].can_end, "case %zu", i);
        CHECKF(rl_grammar_constraint_done(gc) == cases[i].done, "case %zu", i);
        if (cases[i].done) {
            /* nothing but end tokens in the mask */
            size_t nb = ((size_t)f.n_tok + 7) / 8;
            uint8_t *b = malloc(nb);
            const rl_sampler_constraint *c = rl_grammar_constraint_get(gc);
            CHECK(c->fill_mask(c->user, b, f.n_tok) == RL_OK);
            int n_other = 0, n_eog = 0;
            for (int32_t t = 0; t < f.n_tok; t++)
                if (rl_mask_test(b, t)) rl_vocab_is_eog(f.v, t) ? n_eog++ : n_other++;
            CHECKF(n_other == 0 && n_eog > 0, "case %zu: %d other, %d end tokens", i, n_other,
                   n_eog);
            free(b);
        }
        rl_grammar_constraint_free(gc);
        rl_grammar_matcher_free(m);
        rl_grammar_free(g);
    }
    fixture_close(&f);
}

/* Sampling under the constraint with every kind of sampler, from logits that favour
 * tokens the grammar bans: every token is allowed, end tokens come only where the grammar
 * can end, and the texts are sentences of the grammar. */
TEST(sampling_composes) {
    fixture f;
    if (!fixture_open(&f, "models/vocab/ggml-vocab-llama-spm.gguf")) SKIP("llama-spm vocab");
    rl_grammar *g = compile(&f, "root ::= \"[\" num (\", \" num){0,4} \"]\"\n"
                                "num ::= \"-\"? [1-9] [0-9]{0,3}\n");
    rl_grammar *gb = compile(NULL, "root ::= \"[\" num (\", \" num){0,4} \"]\"\n"
                                   "num ::= \"-\"? [1-9] [0-9]{0,3}\n");
    const int32_t nv = f.n_tok + 3; /* padded rows, never chosen */
    float *lg = malloc(sizeof(float) * (size_t)nv);
    for (int cfg = 0; cfg < 8; cfg++) {
        rl_sampler_params p = rl_sampler_default_params();
        p.seed = 1000 + (uint64_t)cfg;
        switch (cfg) {
        case 0:
            break; /* temperature 1 */
        case 1:
            p.temperature = 0;
            break;
        case 2:
            p.top_k = 40;
            break;
        case 3:
            p.top_p = 0.9f;
            break;
        case 4:
            p.min_p = 0.1f;
            break;
        case 5:
            p.mirostat = 2;
            break;
        case 6:
            p.typical_p = 0.8f;
            p.xtc_probability = 0.5f;
            break;
        case 7:
            p.top_k = 40;
            p.top_p = 0.95f;
            p.min_p = 0.05f;
            p.temperature = 0.8f;
            p.repeat_penalty = 1.3f;
            p.penalty_last_n = 16;
            break;
        }
        rl_sampler *s = NULL;
        char err[256];
        CHECK(rl_sampler_create(&p, nv, f.v, &s, err, sizeof err) == RL_OK);
        int n_done = 0;
        for (int gen = 0; gen < 20; gen++) {
            rl_grammar_matcher *m = NULL;
            rl_grammar_constraint *gc = NULL;
            CHECK(rl_grammar_matcher_create(g, 0, &m) == RL_OK);
            CHECK(rl_grammar_constraint_create(m, nv, &gc) == RL_OK);
            char text[512];
            size_t len = 0;
            bool ended = false;
            for (int step = 0; step < 64 && !ended; step++) {
                for (int32_t t = 0; t < nv; t++) lg[t] = (float)(rnd() % 1000) * 0.01f;
                lg[nv - 1] = lg[nv - 2] = 50; /* padding rows: banned by the mask */
                lg[(rl_token)(rnd() % (uint64_t)f.n_tok)] = 40;
                rl_token t = RL_TOKEN_NULL;
                rl_status st =
                    rl_sampler_sample_constrained(s, lg, rl_grammar_constraint_get(gc), &t);
                CHECKF(st == RL_OK, "cfg %d: %s", cfg, rl_sampler_errmsg(s));
                if (st != RL_OK) break;
                CHECKF(t >= 0 && t < f.n_tok, "cfg %d: token %d", cfg, (int)t);
                bool eog = rl_vocab_is_eog(f.v, t);
                CHECKF(!eog || rl_grammar_matcher_can_end(m), "cfg %d: end token early", cfg);
                CHECKF(rl_grammar_matcher_accept_token(m, t) == RL_OK, "cfg %d: %s", cfg,
                       rl_grammar_matcher_errmsg(m));
                rl_sampler_accept(s, t);
                if (eog) {
                    ended = true;
                    break;
                }
                char piece[64];
                size_t k = 0;
                CHECK(rl_token_to_piece(f.v, t, 0, piece, sizeof piece, &k) == RL_OK);
                if (len + k < sizeof text) {
                    memcpy(text + len, piece, k);
                    len += k;
                }
                ended = rl_grammar_constraint_done(gc);
            }
            /* the grammar is bounded (at most 5 numbers of 5 characters): it ends */
            CHECKF(ended, "cfg %d: not done after 64 tokens: %.*s", cfg, (int)len, text);
            n_done += ended;
            rl_grammar_matcher *mb = NULL;
            CHECK(rl_grammar_matcher_create(gb, 0, &mb) == RL_OK);
            CHECKF(rl_grammar_matcher_accept_bytes(mb, text, len, NULL) == RL_OK &&
                       rl_grammar_matcher_can_end(mb),
                   "cfg %d: %.*s", cfg, (int)len, text);
            rl_grammar_matcher_free(mb);
            rl_grammar_constraint_free(gc);
            rl_grammar_matcher_free(m);
        }
        CHECK_EQ_INT(n_done, 20);
        rl_sampler_free(s);
    }
    free(lg);
    rl_grammar_free(gb);
    rl_grammar_free(g);
    fixture_close(&f);
}

int main(void) {
    RUN(create_errors);
    RUN(masks_match_matcher);
    RUN(done);
    RUN(sampling_composes);
    return rl_test_finish();
}
