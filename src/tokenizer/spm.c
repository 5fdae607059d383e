/*
 * spm.c - SentencePiece BPE (Kudo & Richardson 2018) as llama.cpp runs it on "llama"
 * vocabularies: start from the UTF-8 characters of the text (spaces already U+2581), merge
 * the adjacent pair whose concatenation is the token of highest score, leftmost first on
 * ties, until no pair forms a token; pieces that are not tokens fall back to byte tokens
 * <0xXX>.
 *
 * Symbols form a linked list over the text and candidates wait in a binary heap, so n
 * characters cost O(n log n). A queued candidate is stale when either symbol has changed
 * length since (symbols only grow, or drop to 0 when merged into their left neighbour).
 *
 * The text is first cut between two characters that appear next to each other in no token:
 * no merge can cross such a cut, and merges on either side do not interact (a candidate
 * never spans it, and ties are broken by position within a side), so the pieces are merged
 * one at a time with small heaps and the same result.
 */
#include "tok_impl.h"

typedef struct sym {
    int32_t prev, next;
    uint32_t off, len;
} sym;

typedef struct cand {
    float score;
    int32_t left, right;
    uint32_t size; /* bytes of the pair when queued */
} cand;

typedef struct spm_ctx {
    sym *syms;
    size_t nsym;
    cand *heap;
    size_t nheap, cheap;
} spm_ctx;

static inline bool cand_before(const cand *a, const cand *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static bool heap_push(spm_ctx *c, cand p) {
    if (c->nheap == c->cheap) {
        size_t cap = c->cheap ? c->cheap * 2 : 64, bytes;
        if (!rl__mul_size(cap, sizeof(cand), &bytes)) return false;
        cand *nh = rl__realloc(c->heap, bytes);
        if (!nh) return false;
        c->heap = nh;
        c->cheap = cap;
    }
    size_t i = c->nheap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!cand_before(&p, &c->heap[up])) break;
        c->heap[i] = c->heap[up];
        i = up;
    }
    c->heap[i] = p;
    return true;
}

static cand heap_pop(spm_ctx *c) {
    cand top = c->heap[0];
    cand last = c->heap[--c->nheap];
    size_t i = 0, n = c->nheap;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < n && cand_before(&c->heap[l], best)) {
            m = l;
            best = &c->heap[l];
        }
        if (r < n && cand_before(&c->heap[r], best)) m = r;
        if (m == i) break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n) c->heap[i] = last;
    return top;
}

static bool try_pair(spm_ctx *c, const rl_vocab *v, const char *text, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return true;
    const sym *a = &c->syms[l], *b = &c->syms[r];
    uint32_t size = a->len + b->len; /* b follows a in the text */
    rl_token t = rl__vocab_plain(v, text + a->off, size);
    if (t < 0) return true;
    cand p = {v->scores[t], l, r, size};
    return heap_push(c, p);
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
static rl_status merge_chunk(spm_ctx *c, const rl_vocab *v, const char *text, size_t s0, size_t s1,
                             rl__tokvec *out) {
    c->nheap = 0;
    c->syms[s0].prev = -1;
    c->syms[s1 - 1].next = -1;
    for (size_t i = s0 + 1; i < s1; i++)
        if (!try_pair(c, v, text, (int32_t)i - 1, (int32_t)i)) return RL_ERR_NOMEM;
    while (c->nheap) {
        cand p = heap_pop(c);
        sym *a = &c->syms[p.left], *b = &c->syms[p.right];
        if (!a->len || !b->len || a->len + b->len != p.size) continue; /* stale */
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (b->next >= 0) c->syms[b->next].prev = p.left;
        if (!try_pair(c, v, text, a->prev, p.left) || !try_pair(c, v, text, p.left, a->next))
            return RL_ERR_NOMEM;
    }
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
    spm_ctx c = {0};
    size_t bytes;
    if (!rl__mul_size(len, sizeof(sym), &bytes) || !(c.syms = rl__malloc(bytes))) goto done;
    for (size_t off = 0; off < len;) {
        size_t k = RL_MIN(rl__utf8_len((unsigned char)text[off]), len - off);
        sym *s = &c.syms[c.nsym];
        s->prev = (int32_t)c.nsym - 1;
        s->off = (uint32_t)off;
        s->len = (uint32_t)k;
        off += k;
        s->next = off == len ? -1 : (int32_t)c.nsym + 1;
        c.nsym++;
    }
    size_t s0 = 0;
    const unsigned char *u = (const unsigned char *)text;
    for (size_t i = 1; i <= c.nsym; i++) {
        if (i < c.nsym) {
            if (!v->spm_chunking) continue;
            const sym *a = &c.syms[i - 1], *b = &c.syms[i];
            if (!whole_char(u + a->off, a->len) || !whole_char(u + b->off, b->len)) continue;
            if (rl__strmap_get(&v->spm_pairs, text + a->off, a->len + b->len) >= 0) continue;
        }
        if ((st = merge_chunk(&c, v, text, s0, i, out)) != RL_OK) goto done;
        s0 = i;
    }
    st = RL_OK;
done:
    rl__free(c.syms);
    rl__free(c.heap);
    return st;
}
