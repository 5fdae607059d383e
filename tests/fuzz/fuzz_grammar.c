/*
 * fuzz_grammar.c - libFuzzer harness for the GBNF parser and the matcher. The input is a
 * grammar, then a NUL byte, then a text (no NUL: all of it is the grammar, and the text is
 * the grammar's own bytes). With tight limits the grammar is compiled twice (without and
 * with a vocabulary), and when it compiles:
 *   - the text is fed as bytes: the count of accepted bytes is at most its length, and
 *     feeding the accepted prefix again is accepted whole (a prefix of a sentence stays one);
 *   - rollback after a byte step brings back the start state (same mask);
 *   - a random sentence of the grammar (rl_grammar_sample_text) is accepted whole and can end;
 *   - with the vocabulary: at a few states along the text's tokens the fast mask equals the
 *     reference walk over every token (where it allows under a quarter of the vocabulary,
 *     to keep an input fast), and tokens drawn from the mask are accepted.
 * Errors other than RL_ERR_INVALID_ARG / RL_ERR_LIMIT / RL_ERR_UNSUPPORTED (a sentence
 * needs token references) trap, and so does any leak through the library's allocator.
 *
 * Vocabulary: $RUVLLM_TESTDATA/models/vocab/ggml-vocab-llama-spm.gguf when present
 * (32k tokens, byte fallback).
 */
#include "ruvllm.h"
#include "grammar/grammar_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_grammar: %s:%d: requirement failed: %s\n", __FILE__, __LINE__,   \
                    #c);                                                                           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static rl_gguf *g_file;
static rl_vocab *g_vocab;
static rl_grammar_vocab *g_gv;

static void init_vocab(void) {
    static bool done;
    if (done) return;
    done = true;
    const char *data = getenv("RUVLLM_TESTDATA");
    char path[1024], err[256];
    snprintf(path, sizeof path, "%s/models/vocab/ggml-vocab-llama-spm.gguf",
             data ? data : "../shared");
    if (rl_gguf_open(path, &g_file, err, sizeof err) != RL_OK) return;
    if (rl_vocab_load(g_file, &g_vocab, err, sizeof err) != RL_OK ||
        rl_grammar_vocab_create(g_vocab, &g_gv) != RL_OK) {
        rl_vocab_free(g_vocab);
        rl_gguf_free(g_file);
        g_vocab = NULL;
        g_file = NULL;
    }
}

static bool benign(rl_status st) {
    return st == RL_OK || st == RL_ERR_INVALID_ARG || st == RL_ERR_LIMIT;
}

static rl_grammar_limits tight(void) {
    rl_grammar_limits l = rl_grammar_default_limits();
    l.max_text = 1 << 16;
    l.max_elements = 1 << 15;
    l.max_nesting = 64;
    l.max_stacks = 256;
    l.max_depth = 512;
    l.max_expand = 1 << 14;
    l.max_nodes = 1 << 16;
    l.max_cache_bytes = 64u << 20;
    return l;
}

static void check_bytes(rl_grammar *g, const char *text, size_t tlen) {
    rl_grammar_matcher *m = NULL;
    rl_status st = rl_grammar_matcher_create(g, 4, &m);
    REQUIRE(benign(st));
    if (st != RL_OK) return;
    size_t ok = 0;
    st = rl_grammar_matcher_accept_bytes(m, text, tlen, &ok);
    REQUIRE(benign(st));
    REQUIRE(ok <= tlen);
    if (st == RL_OK) REQUIRE(ok == tlen && rl_grammar_matcher_n_history(m) == 1);
    if (st == RL_ERR_INVALID_ARG) {
        /* the accepted prefix is accepted again, whole */
        rl_grammar_matcher_reset(m);
        size_t ok2 = 0;
        st = rl_grammar_matcher_accept_bytes(m, text, ok, &ok2);
        REQUIRE(st == RL_OK || st == RL_ERR_LIMIT);
        if (st == RL_OK) REQUIRE(ok2 == ok);
    }
    if (rl_grammar_matcher_n_history(m) > 0) REQUIRE(rl_grammar_matcher_rollback(m, 1) == RL_OK);
    /* a random sentence is accepted */
    char buf[4096];
    size_t len = 0;
    st = rl_grammar_sample_text(g, tlen, 200, buf, sizeof buf, &len);
    REQUIRE(benign(st) || st == RL_ERR_UNSUPPORTED || st == RL_ERR_RANGE);
    if (st == RL_OK) {
        rl_grammar_matcher_reset(m);
        st = rl_grammar_matcher_accept_bytes(m, buf, len, &ok);
        REQUIRE(st == RL_OK || st == RL_ERR_LIMIT);
        if (st == RL_OK) REQUIRE(rl_grammar_matcher_can_end(m));
    }
    rl_grammar_matcher_free(m);
}

static void check_masks(rl_grammar *g, const char *text, size_t tlen) {
    size_t nw = g_gv->n_words;
    uint32_t *fast = malloc(nw * 4), *ref = malloc(nw * 4);
    rl_token toks[64];
    size_t nt = 0;
    if (rl_tokenize(g_vocab, text, tlen, 0, toks, 64, &nt) != RL_OK) nt = 0;
    rl_grammar_matcher *m = NULL;
    rl_status st = rl_grammar_matcher_create(g, 2, &m);
    REQUIRE(benign(st));
    uint64_t h = 0x12345;
    for (size_t i = 0; m && i < 4; i++) {
        st = rl_grammar_matcher_fill_mask(m, fast, nw);
        REQUIRE(benign(st));
        if (st != RL_OK) break;
        /* the reference walk costs about a step per trie node it keeps: compare where the
         * mask is not most of the vocabulary (the unit tests cover those) */
        int32_t n_fast = 0;
        for (size_t w = 0; w < nw; w++) n_fast += __builtin_popcount(fast[w]);
        if (n_fast < g_gv->n_tokens / 4) {
            st = rl__grammar_matcher_mask_walk(m, ref, nw);
            REQUIRE(benign(st));
            if (st != RL_OK) break;
            REQUIRE(!memcmp(fast, ref, nw * 4));
        }
        /* the text's token if allowed, else one drawn from the mask */
        rl_token t = i < nt ? toks[i] : -1;
        if (t < 0 || !((fast[t >> 5] >> (t & 31)) & 1)) {
            int32_t n = 0;
            for (size_t w = 0; w < nw; w++) n += __builtin_popcount(fast[w]);
            if (!n) break;
            h = h * 6364136223846793005ull + 1442695040888963407ull;
            int32_t pick = (int32_t)((h >> 33) % (uint64_t)n);
            for (int32_t k = 0; k < g_gv->n_tokens; k++)
                if (((fast[k >> 5] >> (k & 31)) & 1) && pick-- == 0) {
                    t = k;
                    break;
                }
        }
        REQUIRE(rl_grammar_matcher_allows(m, t) || rl_grammar_matcher_errmsg(m)[0]);
        st = rl_grammar_matcher_accept_token(m, t);
        REQUIRE(st == RL_OK || st == RL_ERR_LIMIT);
        if (st != RL_OK || rl_vocab_is_eog(g_vocab, t)) break;
    }
    rl_grammar_matcher_free(m);
    free(fast);
    free(ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init_vocab();
    size_t before = rl_mem_in_use();
    const char *s = (const char *)data;
    const char *nul = memchr(s, 0, size);
    size_t glen = nul ? (size_t)(nul - s) : size;
    const char *text = nul ? nul + 1 : s;
    size_t tlen = nul ? size - glen - 1 : size;
    rl_grammar_limits lim = tight();
    char err[256];
    rl_grammar *g = NULL;
    rl_status st = rl_grammar_compile(s, glen, NULL, NULL, &lim, &g, err, sizeof err);
    REQUIRE(benign(st));
    REQUIRE((st == RL_OK) == (g != NULL));
    if (st != RL_OK) REQUIRE(err[0]);
    if (g) {
        check_bytes(g, text, tlen);
        rl_grammar_free(g);
        g = NULL;
        if (g_gv) {
            st = rl_grammar_compile(s, glen, NULL, g_gv, &lim, &g, err, sizeof err);
            REQUIRE(benign(st));
            if (g) check_masks(g, text, tlen);
            rl_grammar_free(g);
        }
    }
    REQUIRE(rl_mem_in_use() == before);
    return 0;
}
