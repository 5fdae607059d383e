/*
 * kv_impl.h - internals of the KV block manager shared by pool.c (blocks, free lists,
 * prefix-cache index, checker) and seq.c (sequences, reserve, fork, truncate).
 */
#ifndef RL_KV_IMPL_H
#define RL_KV_IMPL_H

#include "kv.h"
#include "sha256.h"

#define KV_NIL (-1)
#define KV_KEY RL_SHA256_BYTES

enum { KV_IN_TABLE = 0, KV_IN_FREE = 1, KV_IN_LRU = 2 };

/* One pool block. prev/next link it into the free list or the LRU list while its
 * refcount is 0; hnext chains it in its key's bucket while cached. */
typedef struct kv_block {
    int32_t ref;
    int32_t prev, next;
    int32_t hnext;
    uint8_t where;       /* KV_IN_* */
    uint8_t cached;      /* registered in the prefix cache */
    uint64_t gen;        /* registration number while cached (never reused), else 0 */
    uint64_t parent_gen; /* registration number of the previous block of the chain, 0 first */
    uint8_t key[KV_KEY];
    uint8_t parent_key[KV_KEY]; /* previous block's key, or the salt key for a first block */
} kv_block;

/* A doubly linked list threaded through kv_block.prev/next. */
typedef struct kv_list {
    int32_t head, tail, len;
} kv_list;

typedef struct kv_seq {
    bool live;
    int32_t next_free_id; /* free-id stack link while not live */
    int32_t n_tokens, n_computed, n_slots;
    int32_t n_keyed;         /* full token blocks whose key is computed (n_tokens / bs) */
    int32_t n_committed;     /* full computed blocks handled by the prefix cache */
    int32_t cap_tokens;      /* capacity of tokens; tables hold ceil(cap_tokens / bs) */
    int32_t *tokens;         /* [cap_tokens] */
    int32_t *table;          /* [cap_blocks] block ids */
    uint8_t (*keys)[KV_KEY]; /* [cap_blocks] key of each full token block */
    uint64_t *gens;          /* [cap_blocks] cache entry standing for each committed block */
    uint8_t salt_key[KV_KEY];
} kv_seq;

struct rl__kv {
    int32_t n_blocks, bs;
    bool prefix_cache;
    int key_bits;
    kv_block *blocks;      /* [n_blocks] */
    int32_t *block_tokens; /* [n_blocks][bs]: tokens of cached blocks */
    int32_t *buckets;      /* [n_buckets] head of each key chain */
    uint32_t bucket_mask;
    kv_list free_list; /* refcount 0, uncached */
    kv_list lru;       /* refcount 0, cached; head = least recently freed */
    int32_t n_cached;
    uint64_t next_gen;
    kv_seq *seqs;
    int32_t n_seq_slots, free_seq_id, n_live_seqs;
    rl__kv_copy *copies;
    int32_t n_copies, cap_copies;
    rl__kv_stats st; /* the cumulative counters */
    char err[256];
};

/* pool.c */
void rl__kv_list_remove(rl__kv *kv, kv_list *l, int32_t b);
void rl__kv_list_push_tail(rl__kv *kv, kv_list *l, int32_t b);
/* Take one block for writing (ref becomes 1): a free uncached block, else the LRU head
 * evicted. The caller has checked that rl__kv_n_free() > 0. */
int32_t rl__kv_block_take(rl__kv *kv);
/* Add a reference (a block found in the cache may come off the LRU list). */
void rl__kv_block_ref(rl__kv *kv, int32_t b);
/* Drop a reference; at 0 the block goes to the LRU tail (cached) or the free list. */
void rl__kv_block_unref(rl__kv *kv, int32_t b);
/* Remove a block from the prefix cache (its contents are about to change). */
void rl__kv_uncache(rl__kv *kv, int32_t b);
/* Find a cached block confirmed to hold `tokens` after the chain entry (parent_gen,
 * parent_key) under key; KV_NIL if none. Counts rejected key matches in *collisions
 * (may be NULL). */
int32_t rl__kv_cache_find(const rl__kv *kv, const uint8_t key[KV_KEY], uint64_t parent_gen,
                          const uint8_t parent_key[KV_KEY], const int32_t *tokens,
                          uint64_t *collisions);
/* Register block b (held by the caller) under key; returns its registration number. */
uint64_t rl__kv_cache_insert(rl__kv *kv, int32_t b, const uint8_t key[KV_KEY], uint64_t parent_gen,
                             const uint8_t parent_key[KV_KEY], const int32_t *tokens);
/* key = SHA-256(parent_key || tokens as int32 LE), truncated to kv->key_bits. */
void rl__kv_key(const rl__kv *kv, const uint8_t parent_key[KV_KEY], const int32_t *tokens,
                uint8_t key[KV_KEY]);
kv_seq *rl__kv_seq_get(const rl__kv *kv, int32_t seq);
void rl__kv_seterr(rl__kv *kv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif /* RL_KV_IMPL_H */
