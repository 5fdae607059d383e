/*
 * spm.c - SentencePiece BPE (Kudo & Richardson 2018) as llama.cpp runs it on "llama"
 * vocabularies: start from the UTF-8 characters of the text (spaces already U+2581), merge
 * the adjacent pair whose concatenation is the token of highest score, leftmost first on
 * ties, until no pair forms a token; pieces that are not tokens fall back to byte tokens
 * <0xXX>.
 *
 * The merging itself is merge.c's (a pair's key is minus its token's score), so n
 * characters cost O(n log n).
 *
 * The text is first cut between two characters that appear next to each other in no token:
 * no merge can cross such a cut, and merges on either side do not interact (a candidate
 * never spans it, and ties are broken by position within a side), so the pieces are merged
 * one at a time with small heaps and the same result.
 */
#include "tok_impl.h"

/* A pair's key: minus the score of the token it spells (the highest score merges first). */
static bool merge_score(const rl_vocab *v, const char *text, const rl__msym *a, const rl__msym *b,
                        double *key) {
    rl_token t = rl__vocab_plain(v, text + a->off, a->len + b->len); /* b follows a */
    if (t < 0) return false;
    *key = -(double)v->scores[t];
    return true;
}

/* True when s[0..n) is one structurally complete UTF-8 character (lead byte and its
 * continuation bytes). Such characters synchronize: inside a string of them, one can only
 * occur at a character boundary. */
static bool whole_char(const unsigned char *s, size_t n) {
    if (n != rl__utf8_len(s[0])) return false;
    if (n == 1) return s[0] < 0x80;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80) return false;
    return true;
}

rl_status rl__spm_prepare(rl_vocab *v) {
    size_t npairs = 0;
    v->spm_chunking = true;
    for (int32_t t = 0; t < v->n_tokens; t++) {
        if (v->attrs[t] & RL__ATTR_NOT_PLAIN) continue;
        size_t n;
        const unsigned char *s = (const unsigned char *)rl__tok_text(v, t, &n);
        for (size_t i = 0; i < n;) {
            size_t k = RL_MIN(rl__utf8_len(s[i]), n - i);
            if (!whole_char(s + i, k)) v->spm_chunking = false;
            i += k;
            npairs++;
        }
    }
    if (!v->spm_chunking) return RL_OK;
    if (!rl__strmap_init(&v->spm_pairs, npairs)) return RL_ERR_NOMEM;
    for (int32_t t = 0; t < v->n_tokens; t++) {
        if (v->attrs[t] & RL__ATTR_NOT_PLAIN) continue;
        size_t n;
        const char *s = rl__tok_text(v, t, &n);
        size_t prev = 0, plen = 0;
        for (size_t i = 0; i < n;) {
            size_t k = rl__utf8_len((unsigned char)s[i]);
            if (plen) {
                bool dup;
                if (!rl__strmap_put(&v->spm_pairs, s + prev, plen + k, 1, &dup))
                    return RL_ERR_NOMEM;
            }
            prev = i;
            plen = k;
            i += k;
        }
    }
    return RL_OK;
}

/* Merge the symbols [s0, s1) of the text and emit their tokens. */
static rl_status merge_chunk(rl__merger *c, const rl_vocab *v, const char *text, size_t s0,
                             size_t s1, rl__tokvec *out) {
    rl_status st = rl__merger_run(c, v, text, s0, s1, merge_score);
    if (st != RL_OK) return st;
    for (int32_t i = (int32_t)s0; i >= 0; i = c->syms[i].next) {
        const char *s = text + c->syms[i].off;
        size_t n = c->syms[i].len;
        rl_token t = rl__vocab_plain(v, s, n);
        if (t >= 0) {
            if (!rl__tokvec_push(out, t)) return RL_ERR_NOMEM;
            continue;
        }
        for (size_t j = 0; j < n; j++) { /* byte fallback */
            rl_token bt = v->byte_tok[(unsigned char)s[j]];
            if (bt < 0) bt = v->unk;
            if (bt >= 0 && !rl__tokvec_push(out, bt)) return RL_ERR_NOMEM;
        }
    }
    return RL_OK;
}

rl_status rl__spm_tokenize(const rl_vocab *v, const char *text, size_t len, rl__tokvec *out) {
    if (len == 0) return RL_OK;
    rl_status st = RL_ERR_NOMEM;
    rl__merger c = {0};
    for (size_t off = 0; off < len;) {
        size_t k = RL_MIN(rl__utf8_len((unsigned char)text[off]), len - off);
        if (!rl__merger_add(&c, off, k)) goto done;
        off += k;
    }
    size_t s0 = 0;
    const unsigned char *u = (const unsigned char *)text;
    for (size_t i = 1; i <= c.nsym; i++) {
        if (i < c.nsym) {
            if (!v->spm_chunking) continue;
            const rl__msym *a = &c.syms[i - 1], *b = &c.syms[i];
            if (!whole_char(u + a->off, a->len) || !whole_char(u + b->off, b->len)) continue;
            if (rl__strmap_get(&v->spm_pairs, text + a->off, a->len + b->len) >= 0) continue;
        }
        if ((st = merge_chunk(&c, v, text, s0, i, out)) != RL_OK) goto done;
        s0 = i;
    }
    st = RL_OK;
done:
    rl__merger_free(&c);
    return st;
}
