/*
 * bpe.c - byte-pair encoding (Sennrich et al. 2016; GPT-2's byte-level variant): split the
 * text with the model's pre-tokenizer, then merge each word's adjacent symbols by merge
 * rank, lowest first, until no listed pair is left.
 *
 * The merging itself is merge.c's (a pair's key is its rank), so a word of n characters
 * costs O(n log n) whatever its length. Ties between equal ranks go to the leftmost pair,
 * as in llama.cpp.
 */
#include "tok_impl.h"

/* A pair's key: its merge rank. */
static bool merge_rank(const rl_vocab *v, const char *w, const rl__msym *a, const rl__msym *b,
                       double *key) {
    int32_t rank = rl__strmap_get2(&v->merge_map, w + a->off, a->len, ' ', w + b->off, b->len);
    *key = rank;
    return rank >= 0;
}

static bool emit_symbol(const rl_vocab *v, const char *s, size_t n, bool byte_encode,
                        rl__tokvec *out) {
    rl_token t = rl__vocab_plain(v, s, n);
    if (t >= 0) return rl__tokvec_push(out, t);
    /* not a token: its bytes one by one, as llama.cpp does; a byte with no token of its
     * own is dropped there, and here */
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        rl_token bt = byte_encode ? rl__vocab_plain(v, s + i, 1) : v->byte_tok[b];
        if (bt >= 0 && !rl__tokvec_push(out, bt)) return false;
    }
    return true;
}

static rl_status bpe_word(rl__merger *c, const rl_vocab *v, const char *w, size_t n,
                          bool byte_encode, rl__tokvec *out) {
    if (v->ignore_merges) {
        rl_token t = rl__vocab_plain(v, w, n);
        if (t >= 0) return rl__tokvec_push(out, t) ? RL_OK : RL_ERR_NOMEM;
    }
    c->nsym = 0;
    bool whole = false;
    if (v->newline_words_whole) { /* Gemma 4: a run of newlines that is a token stays one */
        size_t k = 0;
        while (k < n && w[k] == '\n') k++;
        whole = k == n && rl__vocab_plain(v, w, n) >= 0;
    }
    for (size_t off = 0; off < n;) {
        size_t k = whole ? n : RL_MIN(rl__utf8_len((unsigned char)w[off]), n - off);
        if (!rl__merger_add(c, off, k)) return RL_ERR_NOMEM;
        off += k;
    }
    rl_status st = rl__merger_run(c, v, w, 0, c->nsym, merge_rank);
    if (st != RL_OK) return st;
    for (int32_t i = c->nsym ? 0 : -1; i >= 0; i = c->syms[i].next)
        if (!emit_symbol(v, w + c->syms[i].off, c->syms[i].len, byte_encode, out))
            return RL_ERR_NOMEM;
    return RL_OK;
}

rl_status rl__bpe_tokenize(const rl_vocab *v, const char *text, size_t len, rl__tokvec *out) {
    rl_status st = RL_ERR_NOMEM;
    rl__buf esc = {0}, words = {0}, ends = {0};
    rl__merger c = {0};
    if (v->escape_whitespaces) { /* spaces as U+2581, SentencePiece-style */
        if (!rl__buf_reserve(&esc, len + 16)) goto done;
        for (size_t i = 0; i < len; i++) {
            if (text[i] == ' ') {
                if (!rl__buf_put(&esc, "\xe2\x96\x81", 3)) goto done;
            } else if (!rl__buf_putc(&esc, text[i])) {
                goto done;
            }
        }
        text = esc.p;
        len = esc.n;
    }
    st = rl__pretok_split(v->pretok, text, len, &words, &ends);
    if (st != RL_OK) goto done;
    bool be = rl__pretok_byte_encode(v->pretok);
    size_t nw = ends.n / sizeof(size_t), start = 0;
    const size_t *endv = (const size_t *)(void *)ends.p;
    for (size_t k = 0; k < nw; k++) {
        size_t end = endv[k];
        st = bpe_word(&c, v, words.p + start, end - start, be, out);
        if (st != RL_OK) goto done;
        start = end;
    }
    st = RL_OK;
done:
    rl__buf_free(&esc);
    rl__buf_free(&words);
    rl__buf_free(&ends);
    rl__merger_free(&c);
    return st;
}
