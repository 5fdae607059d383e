/*
 * bpe.c - byte-pair encoding (Sennrich et al. 2016; GPT-2's byte-level variant): split the
 * text with the model's pre-tokenizer, then merge each word's adjacent symbols by merge
 * rank, lowest first, until no listed pair is left.
 *
 * Merging keeps the symbols in a linked list and candidate pairs in a binary heap ordered
 * by (rank, position), so a word of n characters costs O(n log n) whatever its length; a
 * candidate whose symbols changed since it was queued is recognised by their lengths and
 * dropped. Ties between equal ranks go to the leftmost pair, as in llama.cpp.
 */
#include "tok_impl.h"

typedef struct sym {
    int32_t prev, next;
    uint32_t off, len; /* bytes of the word; len 0: merged away */
} sym;

typedef struct pair {
    int32_t rank;
    int32_t left, right;
    uint32_t llen, rlen; /* symbol lengths when queued */
} pair;

typedef struct bpe_ctx {
    sym *syms;
    size_t nsym, csym;
    pair *heap;
    size_t nheap, cheap;
} bpe_ctx;

static inline bool pair_before(const pair *a, const pair *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static bool heap_push(bpe_ctx *c, pair p) {
    if (c->nheap == c->cheap) {
        size_t cap = c->cheap ? c->cheap * 2 : 64, bytes;
        if (!rl__mul_size(cap, sizeof(pair), &bytes)) return false;
        pair *nh = rl__realloc(c->heap, bytes);
        if (!nh) return false;
        c->heap = nh;
        c->cheap = cap;
    }
    size_t i = c->nheap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!pair_before(&p, &c->heap[up])) break;
        c->heap[i] = c->heap[up];
        i = up;
    }
    c->heap[i] = p;
    return true;
}

static pair heap_pop(bpe_ctx *c) {
    pair top = c->heap[0];
    pair last = c->heap[--c->nheap];
    size_t i = 0, n = c->nheap;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const pair *best = &last;
        if (l < n && pair_before(&c->heap[l], best)) {
            m = l;
            best = &c->heap[l];
        }
        if (r < n && pair_before(&c->heap[r], best)) m = r;
        if (m == i) break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n) c->heap[i] = last;
    return top;
}

static bool try_pair(bpe_ctx *c, const rl_vocab *v, const char *w, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return true;
    const sym *a = &c->syms[l], *b = &c->syms[r];
    int32_t rank = rl__strmap_get2(&v->merge_map, w + a->off, a->len, ' ', w + b->off, b->len);
    if (rank < 0) return true;
    pair p = {rank, l, r, a->len, b->len};
    return heap_push(c, p);
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

static rl_status bpe_word(bpe_ctx *c, const rl_vocab *v, const char *w, size_t n, bool byte_encode,
                          rl__tokvec *out) {
    if (v->ignore_merges) {
        rl_token t = rl__vocab_plain(v, w, n);
        if (t >= 0) return rl__tokvec_push(out, t) ? RL_OK : RL_ERR_NOMEM;
    }
    c->nsym = 0;
    c->nheap = 0;
    bool whole = false;
    if (v->newline_words_whole) { /* Gemma 4: a run of newlines that is a token stays one */
        size_t k = 0;
        while (k < n && w[k] == '\n') k++;
        whole = k == n && rl__vocab_plain(v, w, n) >= 0;
    }
    for (size_t off = 0; off < n;) {
        size_t k = whole ? n : RL_MIN(rl__utf8_len((unsigned char)w[off]), n - off);
        if (c->nsym == c->csym) {
            size_t cap = c->csym ? c->csym * 2 : 64, bytes;
            if (!rl__mul_size(cap, sizeof(sym), &bytes)) return RL_ERR_NOMEM;
            sym *ns = rl__realloc(c->syms, bytes);
            if (!ns) return RL_ERR_NOMEM;
            c->syms = ns;
            c->csym = cap;
        }
        sym *s = &c->syms[c->nsym];
        s->prev = (int32_t)c->nsym - 1;
        s->off = (uint32_t)off;
        s->len = (uint32_t)k;
        off += k;
        s->next = off == n ? -1 : (int32_t)c->nsym + 1;
        c->nsym++;
    }
    for (size_t i = 1; i < c->nsym; i++)
        if (!try_pair(c, v, w, (int32_t)i - 1, (int32_t)i)) return RL_ERR_NOMEM;

    while (c->nheap) {
        pair p = heap_pop(c);
        sym *a = &c->syms[p.left], *b = &c->syms[p.right];
        if (a->len != p.llen || b->len != p.rlen || a->next != p.right || !a->len || !b->len)
            continue; /* stale */
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (b->next >= 0) c->syms[b->next].prev = p.left;
        if (!try_pair(c, v, w, a->prev, p.left) || !try_pair(c, v, w, p.left, a->next))
            return RL_ERR_NOMEM;
    }
    for (int32_t i = c->nsym ? 0 : -1; i >= 0; i = c->syms[i].next)
        if (!emit_symbol(v, w + c->syms[i].off, c->syms[i].len, byte_encode, out))
            return RL_ERR_NOMEM;
    return RL_OK;
}

rl_status rl__bpe_tokenize(const rl_vocab *v, const char *text, size_t len, rl__tokvec *out) {
    rl_status st = RL_ERR_NOMEM;
    rl__buf esc = {0}, words = {0}, ends = {0};
    bpe_ctx c = {0};
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
    rl__free(c.syms);
    rl__free(c.heap);
    return st;
}
