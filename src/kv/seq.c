/*
 * seq.c - sequences of the KV manager: token lists with their chain keys, block tables,
 * reserve with copy-on-write, commit of full blocks to the prefix cache, prefix lookup,
 * fork, truncate and release.
 */
#include "kv_impl.h"

static int32_t ceil_div(int32_t a, int32_t b) { return (a + b - 1) / b; }

kv_seq *rl__kv_seq_get(const rl__kv *kv, int32_t seq) {
    if (!kv || seq < 0 || seq >= kv->n_seq_slots || !kv->seqs[seq].live) return NULL;
    return &kv->seqs[seq];
}

#define GET_SEQ(s, kv, seq)                                                                        \
    kv_seq *s = rl__kv_seq_get(kv, seq);                                                           \
    if (!s) {                                                                                      \
        if (kv) rl__kv_seterr(kv, "kv: sequence %d is not live", (int)(seq));                      \
        return RL_ERR_INVALID_ARG;                                                                 \
    }

/* Grow the arrays of s to hold at least need tokens. Each array is grown on its own;
 * cap_tokens moves only when all have, so a failure leaves s valid as it was. */
static rl_status seq_grow(rl__kv *kv, kv_seq *s, int32_t need) {
    if (need <= s->cap_tokens) return RL_OK;
    int64_t cap = s->cap_tokens < 16 ? 16 : (int64_t)s->cap_tokens * 2;
    if (cap < need) cap = need;
    if (cap > INT32_MAX / 2) cap = INT32_MAX / 2;
    size_t nt = (size_t)cap, nb = (size_t)ceil_div((int32_t)cap, kv->bs);
    int32_t *t = rl__realloc(s->tokens, nt * sizeof *t);
    if (!t) goto nomem;
    s->tokens = t;
    int32_t *tab = rl__realloc(s->table, nb * sizeof *tab);
    if (!tab) goto nomem;
    s->table = tab;
    uint8_t(*keys)[KV_KEY] = rl__realloc(s->keys, nb * sizeof *keys);
    if (!keys) goto nomem;
    s->keys = keys;
    uint64_t *gens = rl__realloc(s->gens, nb * sizeof *gens);
    if (!gens) goto nomem;
    s->gens = gens;
    s->cap_tokens = (int32_t)cap;
    return RL_OK;
nomem:
    rl__kv_seterr(kv, "kv: out of memory for a sequence of %lld tokens", (long long)cap);
    return RL_ERR_NOMEM;
}

/* A new live sequence with the given salt key; its id in *out. */
static rl_status seq_new(rl__kv *kv, const uint8_t salt_key[KV_KEY], int32_t cap_tokens,
                         int32_t *out) {
    int32_t id = kv->free_seq_id;
    if (id == KV_NIL) {
        if (kv->n_seq_slots >= INT32_MAX / 4) {
            rl__kv_seterr(kv, "kv: too many sequences");
            return RL_ERR_LIMIT;
        }
        int32_t n = kv->n_seq_slots ? kv->n_seq_slots * 2 : 8;
        kv_seq *seqs = rl__realloc(kv->seqs, (size_t)n * sizeof *seqs);
        if (!seqs) {
            rl__kv_seterr(kv, "kv: out of memory for %d sequences", (int)n);
            return RL_ERR_NOMEM;
        }
        memset(seqs + kv->n_seq_slots, 0, (size_t)(n - kv->n_seq_slots) * sizeof *seqs);
        /* New ids on the free stack, lowest on top. */
        for (int32_t i = n - 1; i >= kv->n_seq_slots; i--) {
            seqs[i].next_free_id = kv->free_seq_id;
            kv->free_seq_id = i;
        }
        kv->seqs = seqs;
        kv->n_seq_slots = n;
        id = kv->free_seq_id;
    }
    kv_seq *s = &kv->seqs[id];
    rl_status st = seq_grow(kv, s, cap_tokens);
    if (st) return st;
    kv->free_seq_id = s->next_free_id;
    s->live = true;
    s->next_free_id = KV_NIL;
    s->n_tokens = s->n_computed = s->n_slots = s->n_keyed = s->n_committed = 0;
    memcpy(s->salt_key, salt_key, KV_KEY);
    kv->n_live_seqs++;
    *out = id;
    return RL_OK;
}

rl_status rl__kv_seq_create(rl__kv *kv, const void *salt, size_t salt_len, int32_t cap_tokens,
                            int32_t *seq_out) {
    if (!kv || !seq_out) return RL_ERR_INVALID_ARG;
    if (cap_tokens < 0 || cap_tokens > INT32_MAX / 2) {
        rl__kv_seterr(kv, "kv: cap_tokens %d out of range", (int)cap_tokens);
        return RL_ERR_INVALID_ARG;
    }
    if (!salt && salt_len) {
        rl__kv_seterr(kv, "kv: salt is NULL with salt_len %zu", salt_len);
        return RL_ERR_INVALID_ARG;
    }
    uint8_t salt_key[KV_KEY] = {0};
    if (salt_len) rl__sha256(salt, salt_len, salt_key);
    return seq_new(kv, salt_key, cap_tokens, seq_out);
}

/* Drop the sequence's references, last block first: the deep end of its chain reaches
 * the LRU list first and is evicted before the blocks it hangs from. */
static void release_from(rl__kv *kv, kv_seq *s, int32_t first_block) {
    for (int32_t j = ceil_div(s->n_slots, kv->bs) - 1; j >= first_block; j--)
        rl__kv_block_unref(kv, s->table[j]);
}

rl_status rl__kv_seq_free(rl__kv *kv, int32_t seq) {
    GET_SEQ(s, kv, seq);
    release_from(kv, s, 0);
    s->n_tokens = s->n_computed = s->n_slots = s->n_keyed = s->n_committed = 0;
    s->live = false;
    s->next_free_id = kv->free_seq_id;
    kv->free_seq_id = seq;
    kv->n_live_seqs--;
    return RL_OK;
}

rl_status rl__kv_seq_release(rl__kv *kv, int32_t seq) {
    GET_SEQ(s, kv, seq);
    release_from(kv, s, 0);
    s->n_computed = s->n_slots = s->n_committed = 0;
    return RL_OK;
}

/* Keys of the token blocks completed since the last call. */
static void seq_key_blocks(rl__kv *kv, kv_seq *s) {
    if (!kv->prefix_cache) return;
    for (; s->n_keyed < s->n_tokens / kv->bs; s->n_keyed++) {
        int32_t j = s->n_keyed;
        rl__kv_key(kv, j ? s->keys[j - 1] : s->salt_key, s->tokens + (size_t)j * kv->bs,
                   s->keys[j]);
    }
}

rl_status rl__kv_seq_add_tokens(rl__kv *kv, int32_t seq, const int32_t *tokens, int32_t n) {
    GET_SEQ(s, kv, seq);
    if (n < 0 || (n > 0 && !tokens)) {
        rl__kv_seterr(kv, "kv: add_tokens: bad n %d or NULL tokens", (int)n);
        return RL_ERR_INVALID_ARG;
    }
    if (n > INT32_MAX / 2 - s->n_tokens) {
        rl__kv_seterr(kv, "kv: sequence %d would exceed %d tokens", (int)seq, INT32_MAX / 2);
        return RL_ERR_RANGE;
    }
    for (int32_t i = 0; i < n; i++)
        if (tokens[i] < 0) {
            rl__kv_seterr(kv, "kv: add_tokens: tokens[%d] = %d is negative", (int)i,
                          (int)tokens[i]);
            return RL_ERR_INVALID_ARG;
        }
    rl_status st = seq_grow(kv, s, s->n_tokens + n);
    if (st) return st;
    memcpy(s->tokens + s->n_tokens, tokens, (size_t)n * sizeof *tokens);
    s->n_tokens += n;
    seq_key_blocks(kv, s);
    return RL_OK;
}

rl_status rl__kv_seq_match_prefix(rl__kv *kv, int32_t seq, int32_t max_tokens,
                                  int32_t *hit_tokens) {
    GET_SEQ(s, kv, seq);
    if (hit_tokens) *hit_tokens = 0;
    if (s->n_slots != 0) {
        rl__kv_seterr(kv, "kv: match_prefix: sequence %d already holds blocks", (int)seq);
        return RL_ERR_INVALID_ARG;
    }
    if (!kv->prefix_cache) return RL_OK;
    int32_t lim = max_tokens < 0 ? 0 : RL_MIN(max_tokens, s->n_tokens);
    int32_t max_blocks = lim / kv->bs, hits = 0;
    for (; hits < max_blocks; hits++) {
        int32_t j = hits;
        int32_t b = rl__kv_cache_find(kv, s->keys[j], j ? s->gens[j - 1] : 0,
                                      j ? s->keys[j - 1] : s->salt_key,
                                      s->tokens + (size_t)j * kv->bs, &kv->st.collisions);
        if (b == KV_NIL) break;
        rl__kv_block_ref(kv, b);
        s->table[j] = b;
        s->gens[j] = kv->blocks[b].gen;
    }
    s->n_computed = s->n_slots = hits * kv->bs;
    s->n_committed = hits;
    kv->st.lookup_blocks += (uint64_t)max_blocks;
    kv->st.hit_blocks += (uint64_t)hits;
    kv->st.lookup_tokens += (uint64_t)s->n_tokens;
    kv->st.hit_tokens += (uint64_t)(hits * kv->bs);
    if (hit_tokens) *hit_tokens = hits * kv->bs;
    return RL_OK;
}

rl_status rl__kv_seq_peek_prefix(const rl__kv *kv, int32_t seq, int32_t max_tokens,
                                 int32_t *hit_tokens, int32_t *hit_free) {
    const kv_seq *s = rl__kv_seq_get(kv, seq);
    if (!s || !hit_tokens || s->n_slots != 0) return RL_ERR_INVALID_ARG;
    *hit_tokens = 0;
    if (hit_free) *hit_free = 0;
    if (!kv->prefix_cache) return RL_OK;
    int32_t lim = max_tokens < 0 ? 0 : RL_MIN(max_tokens, s->n_tokens);
    int32_t max_blocks = lim / kv->bs, hits = 0, free = 0;
    uint64_t pgen = 0;
    for (; hits < max_blocks; hits++) {
        int32_t j = hits;
        int32_t b = rl__kv_cache_find(kv, s->keys[j], pgen, j ? s->keys[j - 1] : s->salt_key,
                                      s->tokens + (size_t)j * kv->bs, NULL);
        if (b == KV_NIL) break;
        pgen = kv->blocks[b].gen;
        free += kv->blocks[b].ref == 0;
    }
    *hit_tokens = hits * kv->bs;
    if (hit_free) *hit_free = free;
    return RL_OK;
}

/* Blocks a reserve of n_new tokens takes: table entries to add plus shared blocks in the
 * write range (copy-on-write). -1 for a bad range. */
static int32_t blocks_needed(const rl__kv *kv, const kv_seq *s, int32_t n_new) {
    if (n_new < 0 || n_new > s->n_tokens - s->n_computed) return -1;
    if (n_new == 0) return 0;
    int32_t first = s->n_computed / kv->bs, last = (s->n_computed + n_new - 1) / kv->bs;
    int32_t have = ceil_div(s->n_slots, kv->bs), need = 0;
    for (int32_t j = first; j <= last; j++)
        if (j >= have || kv->blocks[s->table[j]].ref > 1) need++;
    return need;
}

int32_t rl__kv_seq_blocks_needed(const rl__kv *kv, int32_t seq, int32_t n_new) {
    const kv_seq *s = rl__kv_seq_get(kv, seq);
    return s ? blocks_needed(kv, s, n_new) : -1;
}

rl_status rl__kv_seq_reserve(rl__kv *kv, int32_t seq, int32_t n_new, bool *fits) {
    GET_SEQ(s, kv, seq);
    if (!fits) return RL_ERR_INVALID_ARG;
    *fits = false;
    int32_t need = blocks_needed(kv, s, n_new);
    if (need < 0) {
        rl__kv_seterr(kv, "kv: reserve: n_new %d out of range 0..%d", (int)n_new,
                      (int)(s->n_tokens - s->n_computed));
        return RL_ERR_INVALID_ARG;
    }
    if (need > rl__kv_n_free(kv)) return RL_OK;
    /* At most one copy per reserve: only the first block of the write range can hold
     * computed tokens. Room for it first, so that nothing changes on failure. */
    const int32_t bs = kv->bs;
    int32_t have = ceil_div(s->n_slots, bs), first = s->n_computed / bs;
    bool copy = n_new > 0 && first < have && first * bs < s->n_computed &&
                kv->blocks[s->table[first]].ref > 1;
    if (copy && kv->n_copies == kv->cap_copies) {
        rl_status st = rl__kv_copies_reserve(kv, kv->cap_copies ? kv->cap_copies * 2 : 64);
        if (st) return st;
    }
    int32_t end = s->n_computed + n_new;
    for (int32_t j = first; n_new > 0 && j <= (end - 1) / bs; j++) {
        if (j >= have) {
            s->table[j] = rl__kv_block_take(kv);
            continue;
        }
        int32_t b = s->table[j];
        if (kv->blocks[b].ref > 1) {
            int32_t nb = rl__kv_block_take(kv);
            if (j * bs < s->n_computed) {
                kv->copies[kv->n_copies++] = (rl__kv_copy){b, nb};
                kv->st.cow_copies++;
            }
            s->table[j] = nb;
            rl__kv_block_unref(kv, b);
        } else if (kv->blocks[b].cached) {
            rl__kv_uncache(kv, b);
        }
    }
    if (end > s->n_slots) s->n_slots = end;
    *fits = true;
    return RL_OK;
}

/* Register the blocks that became full of computed tokens, in chain order. A block whose
 * confirmed twin is cached already stays out of the index; the sequence records the
 * twin's registration number as the parent of its next block. */
static void seq_commit(rl__kv *kv, kv_seq *s) {
    const int32_t bs = kv->bs;
    for (; s->n_committed < s->n_computed / bs; s->n_committed++) {
        if (!kv->prefix_cache) continue;
        int32_t j = s->n_committed, b = s->table[j];
        const int32_t *toks = s->tokens + (size_t)j * bs;
        uint64_t pgen = j ? s->gens[j - 1] : 0;
        const uint8_t *pkey = j ? s->keys[j - 1] : s->salt_key;
        kv_block *k = &kv->blocks[b];
        if (k->cached) {
            if (memcmp(k->key, s->keys[j], KV_KEY) == 0 && k->parent_gen == pgen) {
                s->gens[j] = k->gen;
                continue;
            }
            rl__kv_uncache(kv, b);
        }
        int32_t twin = rl__kv_cache_find(kv, s->keys[j], pgen, pkey, toks, &kv->st.collisions);
        if (twin != KV_NIL)
            s->gens[j] = kv->blocks[twin].gen;
        else
            s->gens[j] = rl__kv_cache_insert(kv, b, s->keys[j], pgen, pkey, toks);
    }
}

rl_status rl__kv_seq_computed(rl__kv *kv, int32_t seq, int32_t n) {
    GET_SEQ(s, kv, seq);
    if (n < 0 || n > s->n_slots - s->n_computed) {
        rl__kv_seterr(kv, "kv: computed: n %d out of range 0..%d", (int)n,
                      (int)(s->n_slots - s->n_computed));
        return RL_ERR_INVALID_ARG;
    }
    s->n_computed += n;
    seq_commit(kv, s);
    return RL_OK;
}

/* dst (no blocks) takes references on src's blocks for tokens [0, n). */
static void share_blocks(rl__kv *kv, kv_seq *dst, const kv_seq *src, int32_t n) {
    int32_t nb = ceil_div(n, kv->bs);
    for (int32_t j = 0; j < nb; j++) {
        dst->table[j] = src->table[j];
        rl__kv_block_ref(kv, src->table[j]);
    }
    memcpy(dst->gens, src->gens, (size_t)(n / kv->bs) * sizeof *dst->gens);
    dst->n_computed = dst->n_slots = n;
    dst->n_committed = n / kv->bs;
}

rl_status rl__kv_seq_fork(rl__kv *kv, int32_t src, int32_t cap_tokens, int32_t *dst_out) {
    if (!dst_out) return RL_ERR_INVALID_ARG;
    GET_SEQ(s0, kv, src);
    int32_t cap = RL_MAX(cap_tokens, s0->n_tokens);
    uint8_t salt_key[KV_KEY];
    memcpy(salt_key, s0->salt_key, KV_KEY);
    int32_t id;
    rl_status st = seq_new(kv, salt_key, cap, &id);
    if (st) return st;
    kv_seq *s = &kv->seqs[src], *d = &kv->seqs[id]; /* seq_new may move the array */
    memcpy(d->tokens, s->tokens, (size_t)s->n_tokens * sizeof *d->tokens);
    d->n_tokens = s->n_tokens;
    if (kv->prefix_cache) {
        memcpy(d->keys, s->keys, (size_t)s->n_keyed * sizeof *d->keys);
        d->n_keyed = s->n_keyed;
    }
    share_blocks(kv, d, s, s->n_computed);
    *dst_out = id;
    return RL_OK;
}

rl_status rl__kv_seq_share_prefix(rl__kv *kv, int32_t dst, int32_t src, int32_t n) {
    GET_SEQ(d, kv, dst);
    GET_SEQ(s, kv, src);
    if (dst == src || d->n_slots != 0) {
        rl__kv_seterr(kv, "kv: share_prefix: destination %d holds blocks", (int)dst);
        return RL_ERR_INVALID_ARG;
    }
    if (n < 0 || n > s->n_computed || n > d->n_tokens) {
        rl__kv_seterr(kv, "kv: share_prefix: n %d out of range 0..min(%d, %d)", (int)n,
                      (int)s->n_computed, (int)d->n_tokens);
        return RL_ERR_INVALID_ARG;
    }
    if (memcmp(d->salt_key, s->salt_key, KV_KEY) != 0) {
        rl__kv_seterr(kv, "kv: share_prefix: sequences %d and %d have different salts", (int)dst,
                      (int)src);
        return RL_ERR_INVALID_ARG;
    }
    if (memcmp(d->tokens, s->tokens, (size_t)n * sizeof *d->tokens) != 0) {
        rl__kv_seterr(kv, "kv: share_prefix: sequences %d and %d differ in the first %d tokens",
                      (int)dst, (int)src, (int)n);
        return RL_ERR_INVALID_ARG;
    }
    share_blocks(kv, d, s, n);
    return RL_OK;
}

rl_status rl__kv_seq_truncate(rl__kv *kv, int32_t seq, int32_t n) {
    GET_SEQ(s, kv, seq);
    if (n < 0 || n > s->n_tokens) {
        rl__kv_seterr(kv, "kv: truncate: n %d out of range 0..%d", (int)n, (int)s->n_tokens);
        return RL_ERR_INVALID_ARG;
    }
    int32_t slots = RL_MIN(s->n_slots, n);
    release_from(kv, s, ceil_div(slots, kv->bs));
    s->n_slots = slots;
    s->n_tokens = n;
    s->n_computed = RL_MIN(s->n_computed, n);
    s->n_keyed = RL_MIN(s->n_keyed, n / kv->bs);
    s->n_committed = RL_MIN(s->n_committed, s->n_computed / kv->bs);
    return RL_OK;
}

int32_t rl__kv_seq_n_tokens(const rl__kv *kv, int32_t seq) {
    const kv_seq *s = rl__kv_seq_get(kv, seq);
    return s ? s->n_tokens : -1;
}

int32_t rl__kv_seq_n_computed(const rl__kv *kv, int32_t seq) {
    const kv_seq *s = rl__kv_seq_get(kv, seq);
    return s ? s->n_computed : -1;
}

int32_t rl__kv_seq_n_slots(const rl__kv *kv, int32_t seq) {
    const kv_seq *s = rl__kv_seq_get(kv, seq);
    return s ? s->n_slots : -1;
}

const int32_t *rl__kv_seq_tokens(const rl__kv *kv, int32_t seq) {
    const kv_seq *s = rl__kv_seq_get(kv, seq);
    return s ? s->tokens : NULL;
}

const int32_t *rl__kv_seq_blocks(const rl__kv *kv, int32_t seq, int32_t *n_blocks) {
    const kv_seq *s = rl__kv_seq_get(kv, seq);
    if (n_blocks) *n_blocks = s ? ceil_div(s->n_slots, kv->bs) : 0;
    return s ? s->table : NULL;
}
