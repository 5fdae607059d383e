/*
 * pool.c - the block pool of the KV manager: reference counts, the free list of uncached
 * blocks, the LRU list of cached unreferenced blocks, the prefix-cache index (chained
 * buckets keyed by SHA-256 chain keys, threaded through the block array) and the
 * invariant checker. After vLLM's v1/core/block_pool.py, with two free lists so that a
 * cached block is evicted only when no uncached free block remains.
 */
#include "kv_impl.h"

#include <stdio.h>

void rl__kv_seterr(rl__kv *kv, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    rl__vfmt(kv->err, sizeof kv->err, fmt, ap);
    va_end(ap);
}

rl__kv_params rl__kv_default_params(void) {
    rl__kv_params p = {0};
    p.n_blocks = 0;
    p.block_size = RL_KV_DEFAULT_BLOCK_SIZE;
    p.prefix_cache = true;
    return p;
}

rl_status rl__kv_create(const rl__kv_params *p, rl__kv **out, char *err, size_t err_size) {
    if (!out) return RL_ERR_INVALID_ARG;
    *out = NULL;
    if (!p) {
        rl__fmt(err, err_size, "kv: params is NULL");
        return RL_ERR_INVALID_ARG;
    }
    if (p->n_blocks < 1 || p->n_blocks > RL_KV_MAX_BLOCKS) {
        rl__fmt(err, err_size, "kv: n_blocks %d out of range 1..%d", (int)p->n_blocks,
                RL_KV_MAX_BLOCKS);
        return RL_ERR_INVALID_ARG;
    }
    if (p->block_size < 1 || p->block_size > RL_KV_MAX_BLOCK_SIZE) {
        rl__fmt(err, err_size, "kv: block_size %d out of range 1..%d", (int)p->block_size,
                RL_KV_MAX_BLOCK_SIZE);
        return RL_ERR_INVALID_ARG;
    }
    rl__kv *kv = rl__calloc(1, sizeof *kv);
    if (!kv) goto fail_nomem;
    kv->n_blocks = p->n_blocks;
    kv->bs = p->block_size;
    kv->prefix_cache = p->prefix_cache;
    kv->key_bits = 256;
    kv->next_gen = 1;
    kv->free_seq_id = KV_NIL;
    uint32_t nb = 1;
    while (nb < (uint32_t)p->n_blocks * 2u) nb <<= 1;
    kv->bucket_mask = nb - 1;
    kv->blocks = rl__calloc((size_t)p->n_blocks, sizeof *kv->blocks);
    if (!kv->blocks) goto fail_free_kv;
    size_t n_tok;
    if (!rl__mul_size((size_t)p->n_blocks, (size_t)p->block_size, &n_tok)) goto fail_free_blocks;
    kv->block_tokens = p->prefix_cache ? rl__malloc(n_tok * sizeof(int32_t)) : NULL;
    if (p->prefix_cache && !kv->block_tokens) goto fail_free_blocks;
    kv->buckets = p->prefix_cache ? rl__malloc((size_t)nb * sizeof(int32_t)) : NULL;
    if (p->prefix_cache && !kv->buckets) goto fail_free_tokens;
    if (kv->buckets)
        for (uint32_t i = 0; i < nb; i++) kv->buckets[i] = KV_NIL;
    kv->free_list = (kv_list){KV_NIL, KV_NIL, 0};
    kv->lru = (kv_list){KV_NIL, KV_NIL, 0};
    /* Ascending ids from the head: block 0 is handed out first (easy to read in tests). */
    for (int32_t b = 0; b < p->n_blocks; b++) {
        kv->blocks[b].hnext = KV_NIL;
        kv->blocks[b].where = KV_IN_FREE;
        rl__kv_list_push_tail(kv, &kv->free_list, b);
    }
    kv->st.n_blocks = p->n_blocks;
    kv->st.block_size = p->block_size;
    *out = kv;
    return RL_OK;

fail_free_tokens:
    rl__free(kv->block_tokens);
fail_free_blocks:
    rl__free(kv->blocks);
fail_free_kv:
    rl__free(kv);
fail_nomem:
    rl__fmt(err, err_size, "kv: out of memory for a pool of %d blocks", (int)p->n_blocks);
    return RL_ERR_NOMEM;
}

void rl__kv_free(rl__kv *kv) {
    if (!kv) return;
    for (int32_t i = 0; i < kv->n_seq_slots; i++) {
        kv_seq *s = &kv->seqs[i];
        rl__free(s->tokens);
        rl__free(s->table);
        rl__free(s->keys);
        rl__free(s->gens);
    }
    rl__free(kv->seqs);
    rl__free(kv->copies);
    rl__free(kv->buckets);
    rl__free(kv->block_tokens);
    rl__free(kv->blocks);
    rl__free(kv);
}

const char *rl__kv_errmsg(const rl__kv *kv) { return kv ? kv->err : "kv is NULL"; }
int32_t rl__kv_block_size(const rl__kv *kv) { return kv->bs; }
int32_t rl__kv_n_blocks(const rl__kv *kv) { return kv->n_blocks; }
int32_t rl__kv_n_free(const rl__kv *kv) { return kv->free_list.len + kv->lru.len; }

void rl__kv_stats_get(const rl__kv *kv, rl__kv_stats *st) {
    *st = kv->st;
    st->n_free_uncached = kv->free_list.len;
    st->n_cached_free = kv->lru.len;
    st->n_free = kv->free_list.len + kv->lru.len;
    st->n_used = kv->n_blocks - st->n_free;
    st->n_cached = kv->n_cached;
    st->n_seqs = kv->n_live_seqs;
}

void rl__kv_test_set_key_bits(rl__kv *kv, int bits) {
    kv->key_bits = bits < 0 ? 0 : bits > 256 ? 256 : bits;
}

/* ---- lists -------------------------------------------------------------------------- */

void rl__kv_list_remove(rl__kv *kv, kv_list *l, int32_t b) {
    kv_block *k = &kv->blocks[b];
    if (k->prev != KV_NIL)
        kv->blocks[k->prev].next = k->next;
    else
        l->head = k->next;
    if (k->next != KV_NIL)
        kv->blocks[k->next].prev = k->prev;
    else
        l->tail = k->prev;
    k->prev = k->next = KV_NIL;
    l->len--;
}

void rl__kv_list_push_tail(rl__kv *kv, kv_list *l, int32_t b) {
    kv_block *k = &kv->blocks[b];
    k->prev = l->tail;
    k->next = KV_NIL;
    if (l->tail != KV_NIL)
        kv->blocks[l->tail].next = b;
    else
        l->head = b;
    l->tail = b;
    l->len++;
}

/* ---- prefix-cache index --------------------------------------------------------------- */

static uint32_t bucket_of(const rl__kv *kv, const uint8_t key[KV_KEY]) {
    uint32_t h =
        (uint32_t)key[0] | (uint32_t)key[1] << 8 | (uint32_t)key[2] << 16 | (uint32_t)key[3] << 24;
    return h & kv->bucket_mask;
}

void rl__kv_key(const rl__kv *kv, const uint8_t parent_key[KV_KEY], const int32_t *tokens,
                uint8_t key[KV_KEY]) {
    rl__sha256_ctx c;
    rl__sha256_init(&c);
    rl__sha256_update(&c, parent_key, KV_KEY);
    uint8_t buf[256];
    int32_t n = 0;
    for (int32_t i = 0; i < kv->bs; i++) {
        uint32_t t = (uint32_t)tokens[i];
        buf[n++] = (uint8_t)t;
        buf[n++] = (uint8_t)(t >> 8);
        buf[n++] = (uint8_t)(t >> 16);
        buf[n++] = (uint8_t)(t >> 24);
        if (n == (int32_t)sizeof buf) {
            rl__sha256_update(&c, buf, (size_t)n);
            n = 0;
        }
    }
    rl__sha256_update(&c, buf, (size_t)n);
    rl__sha256_final(&c, key);
    if (kv->key_bits < 256) {
        int full = kv->key_bits / 8, rem = kv->key_bits % 8;
        if (rem) key[full] &= (uint8_t)(0xff << (8 - rem)), full++;
        memset(key + full, 0, (size_t)(KV_KEY - full));
    }
}

int32_t rl__kv_cache_find(const rl__kv *kv, const uint8_t key[KV_KEY], uint64_t parent_gen,
                          const uint8_t parent_key[KV_KEY], const int32_t *tokens,
                          uint64_t *collisions) {
    for (int32_t b = kv->buckets[bucket_of(kv, key)]; b != KV_NIL; b = kv->blocks[b].hnext) {
        const kv_block *k = &kv->blocks[b];
        if (memcmp(k->key, key, KV_KEY) != 0) continue;
        if (k->parent_gen == parent_gen && memcmp(k->parent_key, parent_key, KV_KEY) == 0 &&
            memcmp(kv->block_tokens + (size_t)b * (size_t)kv->bs, tokens,
                   (size_t)kv->bs * sizeof(int32_t)) == 0)
            return b;
        /* Same key, tokens and parent key but another parent entry is not a collision:
         * the entry hangs from an evicted parent whose content came back under a new
         * registration number. It stays unreachable until evicted. */
        if (k->parent_gen != parent_gen && memcmp(k->parent_key, parent_key, KV_KEY) == 0 &&
            memcmp(kv->block_tokens + (size_t)b * (size_t)kv->bs, tokens,
                   (size_t)kv->bs * sizeof(int32_t)) == 0 &&
            kv->key_bits == 256)
            continue;
        if (collisions) (*collisions)++;
    }
    return KV_NIL;
}

uint64_t rl__kv_cache_insert(rl__kv *kv, int32_t b, const uint8_t key[KV_KEY], uint64_t parent_gen,
                             const uint8_t parent_key[KV_KEY], const int32_t *tokens) {
    kv_block *k = &kv->blocks[b];
    memcpy(k->key, key, KV_KEY);
    memcpy(k->parent_key, parent_key, KV_KEY);
    k->parent_gen = parent_gen;
    k->gen = kv->next_gen++;
    k->cached = 1;
    memcpy(kv->block_tokens + (size_t)b * (size_t)kv->bs, tokens, (size_t)kv->bs * sizeof(int32_t));
    uint32_t h = bucket_of(kv, key);
    k->hnext = kv->buckets[h];
    kv->buckets[h] = b;
    kv->n_cached++;
    return k->gen;
}

void rl__kv_uncache(rl__kv *kv, int32_t b) {
    kv_block *k = &kv->blocks[b];
    if (!k->cached) return;
    int32_t *pp = &kv->buckets[bucket_of(kv, k->key)];
    while (*pp != b) pp = &kv->blocks[*pp].hnext;
    *pp = k->hnext;
    k->hnext = KV_NIL;
    k->cached = 0;
    k->gen = 0;
    kv->n_cached--;
}

/* ---- references ------------------------------------------------------------------------ */

int32_t rl__kv_block_take(rl__kv *kv) {
    int32_t b;
    if (kv->free_list.len > 0) {
        b = kv->free_list.head;
        rl__kv_list_remove(kv, &kv->free_list, b);
    } else {
        b = kv->lru.head;
        rl__kv_list_remove(kv, &kv->lru, b);
        rl__kv_uncache(kv, b);
        kv->st.evictions++;
    }
    kv->blocks[b].where = KV_IN_TABLE;
    kv->blocks[b].ref = 1;
    return b;
}

void rl__kv_block_ref(rl__kv *kv, int32_t b) {
    kv_block *k = &kv->blocks[b];
    if (k->ref == 0) {
        rl__kv_list_remove(kv, k->where == KV_IN_LRU ? &kv->lru : &kv->free_list, b);
        k->where = KV_IN_TABLE;
    }
    k->ref++;
}

void rl__kv_block_unref(rl__kv *kv, int32_t b) {
    kv_block *k = &kv->blocks[b];
    if (--k->ref > 0) return;
    if (k->cached) {
        k->where = KV_IN_LRU;
        rl__kv_list_push_tail(kv, &kv->lru, b);
    } else {
        k->where = KV_IN_FREE;
        rl__kv_list_push_tail(kv, &kv->free_list, b);
    }
}

/* ---- copies ---------------------------------------------------------------------------- */

const rl__kv_copy *rl__kv_copies(const rl__kv *kv, int32_t *n) {
    *n = kv->n_copies;
    return kv->copies;
}

void rl__kv_copies_clear(rl__kv *kv) { kv->n_copies = 0; }

rl_status rl__kv_copies_reserve(rl__kv *kv, int32_t n) {
    if (n <= kv->cap_copies) return RL_OK;
    rl__kv_copy *c = rl__realloc(kv->copies, (size_t)n * sizeof *c);
    if (!c) {
        rl__kv_seterr(kv, "kv: out of memory for %d copies", (int)n);
        return RL_ERR_NOMEM;
    }
    kv->copies = c;
    kv->cap_copies = n;
    return RL_OK;
}

/* ---- checker --------------------------------------------------------------------------- */

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        rl__fmt(err, err_size, __VA_ARGS__);                                                       \
        st = RL_ERR_INTERNAL;                                                                      \
        goto done;                                                                                 \
    } while (0)

/* Walk one list from head to tail and back; every member must be marked `where`. */
static bool check_list(const rl__kv *kv, const kv_list *l, int where, const char *name, char *err,
                       size_t err_size) {
    int32_t n = 0, prev = KV_NIL;
    for (int32_t b = l->head; b != KV_NIL; b = kv->blocks[b].next) {
        if (b < 0 || b >= kv->n_blocks || n > kv->n_blocks) {
            rl__fmt(err, err_size, "%s list: bad link or cycle at %d", name, (int)b);
            return false;
        }
        const kv_block *k = &kv->blocks[b];
        if (k->prev != prev) {
            rl__fmt(err, err_size, "%s list: block %d prev %d, expected %d", name, (int)b,
                    (int)k->prev, (int)prev);
            return false;
        }
        if (k->where != where || k->ref != 0) {
            rl__fmt(err, err_size, "%s list: block %d marked %d with ref %d", name, (int)b,
                    (int)k->where, (int)k->ref);
            return false;
        }
        if ((where == KV_IN_LRU) != (k->cached != 0)) {
            rl__fmt(err, err_size, "%s list: block %d cached=%d", name, (int)b, (int)k->cached);
            return false;
        }
        prev = b;
        n++;
    }
    if (prev != l->tail || n != l->len) {
        rl__fmt(err, err_size, "%s list: tail %d (walk ended at %d), len %d (walked %d)", name,
                (int)l->tail, (int)prev, (int)l->len, (int)n);
        return false;
    }
    return true;
}

rl_status rl__kv_check(const rl__kv *kv, char *err, size_t err_size) {
    rl_status st = RL_OK;
    int32_t *refs = rl__calloc((size_t)kv->n_blocks, sizeof(int32_t));
    if (!refs) {
        rl__fmt(err, err_size, "kv check: out of memory");
        return RL_ERR_NOMEM;
    }
    const int32_t bs = kv->bs;
    int32_t live = 0;
    for (int32_t i = 0; i < kv->n_seq_slots; i++) {
        const kv_seq *s = &kv->seqs[i];
        if (!s->live) continue;
        live++;
        if (!(0 <= s->n_computed && s->n_computed <= s->n_slots && s->n_slots <= s->n_tokens &&
              s->n_tokens <= s->cap_tokens))
            FAIL("seq %d: counts computed %d slots %d tokens %d cap %d", (int)i, (int)s->n_computed,
                 (int)s->n_slots, (int)s->n_tokens, (int)s->cap_tokens);
        if (kv->prefix_cache && s->n_keyed != s->n_tokens / bs)
            FAIL("seq %d: %d keys for %d tokens", (int)i, (int)s->n_keyed, (int)s->n_tokens);
        if (s->n_committed > s->n_computed / bs)
            FAIL("seq %d: %d committed blocks, %d computed tokens", (int)i, (int)s->n_committed,
                 (int)s->n_computed);
        if (kv->prefix_cache && s->n_committed != s->n_computed / bs)
            FAIL("seq %d: %d committed blocks, %d computed tokens (cache on)", (int)i,
                 (int)s->n_committed, (int)s->n_computed);
        int32_t nt = (s->n_slots + bs - 1) / bs;
        for (int32_t j = 0; j < nt; j++) {
            int32_t b = s->table[j];
            if (b < 0 || b >= kv->n_blocks) FAIL("seq %d: table[%d] = %d", (int)i, (int)j, (int)b);
            refs[b]++;
            const kv_block *k = &kv->blocks[b];
            if (j < s->n_committed && k->cached && memcmp(k->key, s->keys[j], KV_KEY) != 0)
                FAIL("seq %d: cached block %d at table[%d] has another key", (int)i, (int)b,
                     (int)j);
            if (j < s->n_committed && k->cached && k->gen != s->gens[j])
                FAIL("seq %d: cached block %d at table[%d]: gen %llu, seq says %llu", (int)i,
                     (int)b, (int)j, (unsigned long long)k->gen, (unsigned long long)s->gens[j]);
        }
    }
    if (live != kv->n_live_seqs) FAIL("live seqs %d, counted %d", (int)kv->n_live_seqs, (int)live);
    int32_t used = 0, n_cached = 0;
    for (int32_t b = 0; b < kv->n_blocks; b++) {
        const kv_block *k = &kv->blocks[b];
        if (k->ref != refs[b])
            FAIL("block %d: refcount %d but %d table entries", (int)b, (int)k->ref, (int)refs[b]);
        if (k->ref > 0) {
            used++;
            if (k->where != KV_IN_TABLE)
                FAIL("block %d: referenced but on list %d", (int)b, (int)k->where);
        } else if (k->where != (k->cached ? KV_IN_LRU : KV_IN_FREE)) {
            FAIL("block %d: ref 0, cached %d, on list %d", (int)b, (int)k->cached, (int)k->where);
        }
        if (k->cached) {
            n_cached++;
            if (!kv->prefix_cache) FAIL("block %d cached with the prefix cache off", (int)b);
            int32_t hits = 0, n = 0;
            for (int32_t c = kv->buckets[bucket_of(kv, k->key)]; c != KV_NIL;
                 c = kv->blocks[c].hnext) {
                if (c == b) hits++;
                if (++n > kv->n_blocks) FAIL("bucket of block %d: cycle", (int)b);
            }
            if (hits != 1) FAIL("block %d: %d times in its bucket", (int)b, (int)hits);
            if (k->gen == 0 || k->gen >= kv->next_gen) FAIL("block %d: bad gen", (int)b);
        } else if (k->gen != 0) {
            FAIL("block %d: uncached with gen %llu", (int)b, (unsigned long long)k->gen);
        }
    }
    if (!check_list(kv, &kv->free_list, KV_IN_FREE, "free", err, err_size) ||
        !check_list(kv, &kv->lru, KV_IN_LRU, "lru", err, err_size)) {
        st = RL_ERR_INTERNAL;
        goto done;
    }
    if (used + kv->free_list.len + kv->lru.len != kv->n_blocks)
        FAIL("used %d + free %d + lru %d != %d blocks", (int)used, (int)kv->free_list.len,
             (int)kv->lru.len, (int)kv->n_blocks);
    if (n_cached != kv->n_cached)
        FAIL("cached count %d, counted %d", (int)kv->n_cached, (int)n_cached);
    if (kv->buckets) {
        int32_t in_buckets = 0;
        for (uint32_t h = 0; h <= kv->bucket_mask; h++)
            for (int32_t c = kv->buckets[h]; c != KV_NIL; c = kv->blocks[c].hnext) {
                if (!kv->blocks[c].cached) FAIL("uncached block %d in bucket %u", (int)c, h);
                if (bucket_of(kv, kv->blocks[c].key) != h)
                    FAIL("block %d in bucket %u, key says %u", (int)c, h,
                         bucket_of(kv, kv->blocks[c].key));
                if (++in_buckets > kv->n_blocks) FAIL("buckets: cycle");
            }
        if (in_buckets != n_cached)
            FAIL("%d blocks in buckets, %d cached", (int)in_buckets, (int)n_cached);
    }
    if (err && err_size) err[0] = 0;
done:
    rl__free(refs);
    return st;
}
