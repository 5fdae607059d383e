/*
 * merge.c - the symbol list and candidate heap that SentencePiece BPE (spm.c) and byte-level
 * BPE (bpe.c) merge with; the two differ only in the key of a pair (a merge rank, or minus
 * the score of the token the pair spells) and in what they emit afterwards.
 */
#include "tok_impl.h"

static inline bool cand_before(const rl__mcand *a, const rl__mcand *b) {
    return a->key < b->key || (a->key == b->key && a->left < b->left);
}

static bool heap_push(rl__merger *m, rl__mcand p) {
    if (m->nheap == m->cheap) {
        size_t cap = m->cheap ? m->cheap * 2 : 64, bytes;
        if (!rl__mul_size(cap, sizeof(rl__mcand), &bytes)) return false;
        rl__mcand *nh = rl__realloc(m->heap, bytes);
        if (!nh) return false;
        m->heap = nh;
        m->cheap = cap;
    }
    size_t i = m->nheap++;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!cand_before(&p, &m->heap[up])) break;
        m->heap[i] = m->heap[up];
        i = up;
    }
    m->heap[i] = p;
    return true;
}

static rl__mcand heap_pop(rl__merger *m) {
    rl__mcand top = m->heap[0];
    rl__mcand last = m->heap[--m->nheap];
    size_t i = 0, n = m->nheap;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, c = i;
        const rl__mcand *best = &last;
        if (l < n && cand_before(&m->heap[l], best)) {
            c = l;
            best = &m->heap[l];
        }
        if (r < n && cand_before(&m->heap[r], best)) c = r;
        if (c == i) break;
        m->heap[i] = m->heap[c];
        i = c;
    }
    if (n) m->heap[i] = last;
    return top;
}

static bool try_pair(rl__merger *m, const rl_vocab *v, const char *text, rl__merge_key_fn key,
                     int32_t l, int32_t r) {
    if (l < 0 || r < 0) return true;
    const rl__msym *a = &m->syms[l], *b = &m->syms[r];
    rl__mcand p = {0, l, r, a->len, b->len};
    if (!key(v, text, a, b, &p.key)) return true;
    return heap_push(m, p);
}

bool rl__merger_add(rl__merger *m, size_t off, size_t len) {
    if (m->nsym == m->csym) {
        size_t cap = m->csym ? m->csym * 2 : 64, bytes;
        if (!rl__mul_size(cap, sizeof(rl__msym), &bytes)) return false;
        rl__msym *ns = rl__realloc(m->syms, bytes);
        if (!ns) return false;
        m->syms = ns;
        m->csym = cap;
    }
    rl__msym *s = &m->syms[m->nsym];
    s->prev = (int32_t)m->nsym - 1;
    s->next = (int32_t)m->nsym + 1;
    s->off = (uint32_t)off;
    s->len = (uint32_t)len;
    m->nsym++;
    return true;
}

rl_status rl__merger_run(rl__merger *m, const rl_vocab *v, const char *text, size_t s0, size_t s1,
                         rl__merge_key_fn key) {
    m->nheap = 0;
    if (s0 >= s1) return RL_OK;
    m->syms[s0].prev = -1;
    m->syms[s1 - 1].next = -1;
    for (size_t i = s0 + 1; i < s1; i++)
        if (!try_pair(m, v, text, key, (int32_t)i - 1, (int32_t)i)) return RL_ERR_NOMEM;
    while (m->nheap) {
        rl__mcand p = heap_pop(m);
        rl__msym *a = &m->syms[p.left], *b = &m->syms[p.right];
        if (a->len != p.llen || b->len != p.rlen || !a->len || !b->len) continue; /* stale */
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (b->next >= 0) m->syms[b->next].prev = p.left;
        if (!try_pair(m, v, text, key, a->prev, p.left) ||
            !try_pair(m, v, text, key, p.left, a->next))
            return RL_ERR_NOMEM;
    }
    return RL_OK;
}

void rl__merger_free(rl__merger *m) {
    rl__free(m->syms);
    rl__free(m->heap);
    memset(m, 0, sizeof *m);
}
