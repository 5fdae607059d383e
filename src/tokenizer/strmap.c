/*
 * strmap.c - the tokenizer's containers: a byte-string -> int32 hash table (token text ->
 * id, merge pair -> rank), growable token and byte buffers.
 */
#include "tok_impl.h"

/* ---- buffers ---------------------------------------------------------------------------- */

bool rl__tokvec_push(rl__tokvec *tv, rl_token t) {
    if (tv->n == tv->cap) {
        size_t cap = tv->cap ? tv->cap * 2 : 64;
        size_t bytes;
        if (!rl__mul_size(cap, sizeof(rl_token), &bytes)) return false;
        rl_token *nv = rl__realloc(tv->v, bytes);
        if (!nv) return false;
        tv->v = nv;
        tv->cap = cap;
    }
    tv->v[tv->n++] = t;
    return true;
}

bool rl__buf_reserve(rl__buf *b, size_t extra) {
    size_t need;
    if (!rl__add_size(b->n, extra, &need)) return false;
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *np = rl__realloc(b->p, cap);
    if (!np) return false;
    b->p = np;
    b->cap = cap;
    return true;
}

bool rl__buf_put(rl__buf *b, const void *s, size_t n) {
    if (!rl__buf_reserve(b, n)) return false;
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    return true;
}

void rl__buf_free(rl__buf *b) {
    rl__free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* ---- hash table -------------------------------------------------------------------------- */

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

static inline uint64_t fnv_feed(uint64_t h, const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * FNV_PRIME;
    return h;
}

/* FNV-1a spreads poorly in the low bits for short keys; a final mix fixes that. */
static inline uint64_t mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

bool rl__strmap_init(rl__strmap *m, size_t n_max) {
    memset(m, 0, sizeof(*m));
    size_t cap = 16;
    while (cap < n_max * 2 + 1) {
        if (cap > ((size_t)1 << 40)) return false;
        cap *= 2;
    }
    m->slots = rl__calloc(cap, sizeof(uint32_t));
    size_t nm = n_max ? n_max : 1;
    m->keys = rl__malloc(nm * sizeof(const char *));
    m->lens = rl__malloc(nm * sizeof(uint32_t));
    m->vals = rl__malloc(nm * sizeof(int32_t));
    m->hashes = rl__malloc(nm * sizeof(uint64_t));
    if (!m->slots || !m->keys || !m->lens || !m->vals || !m->hashes) {
        rl__strmap_free(m);
        return false;
    }
    m->cap = cap;
    m->n_max = n_max;
    return true;
}

void rl__strmap_free(rl__strmap *m) {
    rl__free(m->slots);
    rl__free(m->keys);
    rl__free(m->lens);
    rl__free(m->vals);
    rl__free(m->hashes);
    memset(m, 0, sizeof(*m));
}

bool rl__strmap_put(rl__strmap *m, const char *key, size_t len, int32_t val, bool *dup) {
    *dup = false;
    if (m->n >= m->n_max || len > UINT32_MAX) return false;
    uint64_t h = mix(fnv_feed(FNV_OFFSET, key, len));
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        uint32_t e = m->slots[i];
        if (!e) {
            size_t k = m->n++;
            m->keys[k] = key;
            m->lens[k] = (uint32_t)len;
            m->vals[k] = val;
            m->hashes[k] = h;
            m->slots[i] = (uint32_t)(k + 1);
            return true;
        }
        e--;
        if (m->hashes[e] == h && m->lens[e] == len && memcmp(m->keys[e], key, len) == 0) {
            *dup = true;
            return true;
        }
    }
}

int32_t rl__strmap_get(const rl__strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    uint64_t h = mix(fnv_feed(FNV_OFFSET, key, len));
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        uint32_t e = m->slots[i];
        if (!e) return -1;
        e--;
        if (m->hashes[e] == h && m->lens[e] == len && memcmp(m->keys[e], key, len) == 0)
            return m->vals[e];
    }
}

int32_t rl__strmap_get2(const rl__strmap *m, const char *a, size_t alen, char sep, const char *b,
                        size_t blen) {
    if (!m->cap) return -1;
    uint64_t h = fnv_feed(FNV_OFFSET, a, alen);
    h = fnv_feed(h, &sep, 1);
    h = mix(fnv_feed(h, b, blen));
    size_t len = alen + 1 + blen;
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        uint32_t e = m->slots[i];
        if (!e) return -1;
        e--;
        if (m->hashes[e] == h && m->lens[e] == len) {
            const char *k = m->keys[e];
            if (memcmp(k, a, alen) == 0 && k[alen] == sep && memcmp(k + alen + 1, b, blen) == 0)
                return m->vals[e];
        }
    }
}
