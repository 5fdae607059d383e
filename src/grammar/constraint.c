/*
 * constraint.c - a grammar matcher as the sampler's lazy constraint (rl_sampler_constraint).
 *
 * The sampler draws from the unmasked logits first and asks allows() about that one token;
 * only when the grammar rejects it does it ask fill_mask() for the whole allowed set and
 * draw again (llama.cpp's grammar rejection sampling). Most tokens of a model that follows
 * the format pass the first check, which costs about the token's length; a model that wants
 * garbage pays one mask per token, which the matcher's per-state cache keeps cheap.
 *
 * The matcher writes masks as 32-bit words (bit t & 31 of word t >> 5), the sampler reads
 * bytes (bit t & 7 of byte t >> 3); the words are converted through a buffer sized once
 * here, so a step allocates nothing.
 */
#include "grammar/grammar_impl.h"

struct rl_grammar_constraint {
    rl_sampler_constraint c; /* user: this object */
    rl_grammar_matcher *m;
    int32_t n_vocab;
    size_t n_words; /* (n_vocab + 31) / 32 */
    uint32_t *words;
};

static bool gc_allows(void *user, rl_token t) {
    rl_grammar_constraint *gc = user;
    return t >= 0 && t < gc->n_vocab && rl_grammar_matcher_allows(gc->m, t);
}

/* Words to bytes, little-endian order of bits (the layout of rl_mask_test). */
static void words_to_bytes(const uint32_t *w, uint8_t *b, size_t n_bytes) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(b, w, n_bytes);
#else
    for (size_t i = 0; i < n_bytes; i++) b[i] = (uint8_t)(w[i >> 2] >> (8 * (i & 3)));
#endif
}

static rl_status gc_fill(void *user, uint8_t *mask, int32_t n_vocab) {
    rl_grammar_constraint *gc = user;
    if (n_vocab != gc->n_vocab) return RL_ERR_INVALID_ARG;
    rl_status st = rl_grammar_matcher_fill_mask(gc->m, gc->words, gc->n_words);
    if (st != RL_OK) return st;
    /* bits from n_vocab up to the byte's end: the sampler never reads them, clear anyway */
    if (n_vocab & 31) gc->words[n_vocab >> 5] &= (1u << (n_vocab & 31)) - 1;
    words_to_bytes(gc->words, mask, ((size_t)n_vocab + 7) / 8);
    return RL_OK;
}

RL_API rl_status rl_grammar_constraint_create(rl_grammar_matcher *m, int32_t n_vocab,
                                              rl_grammar_constraint **out) {
    if (!out) return RL_ERR_INVALID_ARG;
    *out = NULL;
    if (!m || n_vocab <= 0) return RL_ERR_INVALID_ARG;
    rl_grammar_constraint *gc = rl__calloc(1, sizeof *gc);
    if (!gc) return RL_ERR_NOMEM;
    gc->m = m;
    gc->n_vocab = n_vocab;
    gc->n_words = ((size_t)n_vocab + 31) / 32;
    gc->words = rl__malloc(gc->n_words * sizeof *gc->words);
    if (!gc->words) {
        rl_grammar_constraint_free(gc);
        return RL_ERR_NOMEM;
    }
    /* one mask now: the matcher checks that it has a vocabulary that fits n_vocab (its
     * message says what is wrong); the state's tables are warm for the first step */
    rl_status st = rl_grammar_matcher_fill_mask(m, gc->words, gc->n_words);
    if (st != RL_OK) {
        rl_grammar_constraint_free(gc);
        return st;
    }
    gc->c.allows = gc_allows;
    gc->c.fill_mask = gc_fill;
    gc->c.user = gc;
    *out = gc;
    return RL_OK;
}

RL_API void rl_grammar_constraint_free(rl_grammar_constraint *gc) {
    if (!gc) return;
    rl__free(gc->words);
    rl__free(gc);
}

RL_API const rl_sampler_constraint *rl_grammar_constraint_get(const rl_grammar_constraint *gc) {
    return gc ? &gc->c : NULL;
}

RL_API bool rl_grammar_constraint_done(const rl_grammar_constraint *gc) {
    /* can_end means one stack is empty; being the only one, nothing else can follow */
    return gc && rl_grammar_matcher_can_end(gc->m) && rl__grammar_matcher_n_stacks(gc->m) == 1;
}
