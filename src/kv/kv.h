/*
 * kv.h - the paged KV block manager: which cache blocks hold which tokens of which
 * sequence. Block ids and token counts only; the tensors live in the backend, which
 * reads the block tables given here (cell = block * block_size + offset) and executes
 * the block copies asked for here. Depends on src/util alone.
 *
 * The model (after vLLM v1/core/block_pool.py and kv_cache_manager.py):
 *  - One pool of n_blocks blocks of block_size token slots, sized by the caller. A block
 *    has a reference count: the number of sequence block tables that hold it.
 *  - A sequence is a list of known token ids (n_tokens) of which the first n_computed
 *    have their K/V written in the cache, and a block table covering its first n_slots
 *    token positions (n_computed <= n_slots <= n_tokens; the table has
 *    ceil(n_slots / block_size) entries). rl__kv_seq_reserve grows n_slots for the tokens
 *    a step will compute; rl__kv_seq_computed advances n_computed once they are written.
 *  - Fork and prefix hits share blocks. A block is written only by a sequence that holds
 *    it alone: writing into a shared block that already holds computed tokens
 *    (copy-on-write) takes a fresh block and queues a copy instruction (src, dst) that
 *    the backend executes before the step's forward pass.
 *  - Prefix cache: when a block is full of computed tokens it is registered under a key
 *    chained over the previous block's key and its own tokens:
 *        key_0 = SHA-256(salt_key || tok_0 .. tok_{bs-1})      (tokens as int32 LE)
 *        key_i = SHA-256(key_{i-1} || tokens of block i)
 *    where salt_key is 32 zero bytes, or SHA-256 of the salt for a salted sequence (the
 *    request's cache_salt: one tenant cannot hit another's blocks). SHA-256 is FIPS 180-4
 *    (src/kv/sha256.c). A key match is confirmed exactly before use: the stored tokens
 *    equal the request's, the stored parent is the very cache entry matched for the
 *    previous block (a 64-bit registration number that is never reused), and for a first
 *    block the stored salt key equals the request's. A collision therefore costs a miss,
 *    never a wrong hit. Only full blocks are cached; partial blocks are never shared
 *    through the cache.
 *  - Free blocks: uncached blocks with refcount 0 sit in a free list; cached blocks with
 *    refcount 0 stay findable in an intrusive LRU list (doubly linked through the block
 *    array). Allocation takes an uncached free block first; only when none remains does it
 *    evict the least recently freed cached block (its key is dropped). A sequence's blocks
 *    are freed last block first, so the deep end of a chain is evicted before its root.
 *  - "Doesn't fit" (too few free blocks) is a normal outcome reported through *fits,
 *    with nothing changed; the scheduler answers it by preempting.
 *
 * Thread-safety: none. A manager and its sequences are owned by one thread (the engine
 * thread). Pointers returned into the manager (block tables, tokens, copy list) stay
 * valid until the next call that modifies the same sequence or the manager.
 */
#ifndef RL_KV_H
#define RL_KV_H

#include "util/util.h"

#define RL_KV_DEFAULT_BLOCK_SIZE 16
#define RL_KV_MAX_BLOCK_SIZE 1024
#define RL_KV_MAX_BLOCKS (1 << 28)

typedef struct rl__kv rl__kv;

typedef struct rl__kv_params {
    int32_t n_blocks;   /* blocks in the pool, 1 .. RL_KV_MAX_BLOCKS */
    int32_t block_size; /* token slots per block, 1 .. RL_KV_MAX_BLOCK_SIZE (default 16) */
    bool prefix_cache;  /* register full blocks and look prefixes up (default true) */
} rl__kv_params;

/* A block copy for the backend: copy every slot of block src into block dst (all layers,
 * K and V). Execute a step's copies in list order, before its forward pass. */
typedef struct rl__kv_copy {
    int32_t src, dst;
} rl__kv_copy;

typedef struct rl__kv_stats {
    int32_t n_blocks, block_size;
    int32_t n_used; /* blocks with refcount > 0 */
    int32_t n_free; /* blocks with refcount 0: n_free_uncached + n_cached_free */
    int32_t n_free_uncached;
    int32_t n_cached;      /* blocks registered in the prefix cache (any refcount) */
    int32_t n_cached_free; /* cached blocks with refcount 0 (the LRU list) */
    int32_t n_seqs;        /* live sequences */
    /* Prefix lookups (rl__kv_seq_match_prefix): lookup_blocks counts the whole blocks
     * that could have hit, lookup_tokens the sequences' n_tokens; hit_* what was found.
     * Misses are lookup - hit. */
    uint64_t lookup_blocks, hit_blocks;
    uint64_t lookup_tokens, hit_tokens;
    uint64_t evictions;  /* cached blocks reused for other content (key dropped) */
    uint64_t collisions; /* key matches rejected by the exact confirmation */
    uint64_t cow_copies; /* copy instructions issued */
} rl__kv_stats;

/* Defaults: n_blocks 0 (the caller must size the pool), block_size 16, prefix_cache on. */
rl__kv_params rl__kv_default_params(void);

/* Create a manager. RL_ERR_INVALID_ARG (err names the field) for out-of-range params,
 * RL_ERR_NOMEM. *out is NULL on failure. Memory: about 112 bytes + 4 * block_size bytes
 * per block, allocated here once. */
rl_status rl__kv_create(const rl__kv_params *p, rl__kv **out, char *err, size_t err_size);
/* Frees the manager and all its sequences. NULL is a no-op. */
void rl__kv_free(rl__kv *kv);

/* Message of the last failed call on kv ("" if none). */
const char *rl__kv_errmsg(const rl__kv *kv);
int32_t rl__kv_block_size(const rl__kv *kv);
int32_t rl__kv_n_blocks(const rl__kv *kv);
/* Blocks an allocation can take now: free uncached + cached with refcount 0. */
int32_t rl__kv_n_free(const rl__kv *kv);
void rl__kv_stats_get(const rl__kv *kv, rl__kv_stats *st);

/* ---- sequences -------------------------------------------------------------------- */
/* Sequence ids are small non-negative integers, reused after rl__kv_seq_free. Every
 * function taking a sequence id returns RL_ERR_INVALID_ARG for an id that is not live. */

/* New empty sequence. salt (salt_len bytes, copied as its SHA-256) isolates its prefix
 * cache entries; NULL or salt_len 0 means the shared, unsalted namespace. cap_tokens >= 0
 * pre-sizes its arrays for that many tokens, so that adding tokens and reserving slots up
 * to it never allocates. RL_ERR_NOMEM. */
rl_status rl__kv_seq_create(rl__kv *kv, const void *salt, size_t salt_len, int32_t cap_tokens,
                            int32_t *seq_out);
/* Release the sequence's blocks and its id. */
rl_status rl__kv_seq_free(rl__kv *kv, int32_t seq);

/* Append n >= 0 known token ids (no blocks are taken). Token ids must be >= 0
 * (RL_ERR_INVALID_ARG names the index). RL_ERR_NOMEM beyond the capacity when growing
 * fails; RL_ERR_RANGE past INT32_MAX / 2 tokens. */
rl_status rl__kv_seq_add_tokens(rl__kv *kv, int32_t seq, const int32_t *tokens, int32_t n);

/* Prefix-cache lookup for a sequence that holds no blocks (n_slots == 0; else
 * RL_ERR_INVALID_ARG): attach the longest chain of cached full blocks matching its
 * tokens, using at most max_tokens tokens (rounded down to whole blocks; pass
 * n_tokens - 1 so that the last token is computed and gives logits). Hit blocks gain a
 * reference (leaving the LRU list if they were free); n_computed = n_slots = hit tokens.
 * *hit_tokens (may be NULL) gets that count. Counts lookups and hits in the stats. With
 * the prefix cache off, hits nothing. */
rl_status rl__kv_seq_match_prefix(rl__kv *kv, int32_t seq, int32_t max_tokens, int32_t *hit_tokens);

/* Read-only form of rl__kv_seq_match_prefix: *hit_tokens gets what it would attach now
 * and *hit_free (may be NULL) how many of those blocks are unreferenced (attaching them
 * lowers rl__kv_n_free by that much). Changes nothing and counts nothing, so a scheduler
 * may ask every step whether a waiting request fits. */
rl_status rl__kv_seq_peek_prefix(const rl__kv *kv, int32_t seq, int32_t max_tokens,
                                 int32_t *hit_tokens, int32_t *hit_free);

/* Make room to compute tokens [n_computed, n_computed + n_new): n_computed + n_new must
 * not exceed n_tokens (RL_ERR_INVALID_ARG). Allocates the blocks missing from the table;
 * a block in that range that is shared (refcount > 1) is replaced by a fresh one, with a
 * copy instruction when it already holds computed tokens; a block held alone but cached
 * leaves the cache (it is about to be overwritten). All or nothing: when the free blocks
 * do not suffice, *fits = false and nothing changes. Never allocates except to grow the
 * copy list (RL_ERR_NOMEM, nothing changed); the table was sized by add_tokens. */
rl_status rl__kv_seq_reserve(rl__kv *kv, int32_t seq, int32_t n_new, bool *fits);

/* Free blocks rl__kv_seq_reserve(seq, n_new) would take now (allocation + copy-on-write),
 * or -1 for a bad id or range. */
int32_t rl__kv_seq_blocks_needed(const rl__kv *kv, int32_t seq, int32_t n_new);

/* The engine wrote K/V of tokens [n_computed, n_computed + n): n_computed += n
 * (n_computed + n <= n_slots, else RL_ERR_INVALID_ARG). Blocks that became full of
 * computed tokens are registered in the prefix cache (unless an identical, confirmed
 * entry exists already). */
rl_status rl__kv_seq_computed(rl__kv *kv, int32_t seq, int32_t n);

/* New sequence dst with src's salt and tokens, sharing src's blocks for its computed
 * tokens [0, n_computed) (references added; a trailing partial block is shared and will
 * be copied on the first write by either side). Slots src reserved beyond n_computed are
 * not shared. cap_tokens as for rl__kv_seq_create (at least src's n_tokens is used).
 * RL_ERR_NOMEM. */
rl_status rl__kv_seq_fork(rl__kv *kv, int32_t src, int32_t cap_tokens, int32_t *dst_out);

/* Share src's blocks for tokens [0, n) with dst, which holds no blocks (its n_slots is 0),
 * has the same salt and the same first n tokens (each checked: RL_ERR_INVALID_ARG), and
 * n <= src's n_computed. Then dst's n_computed = n_slots = n. This is how the scheduler
 * re-forks the sequences of a recomputed n > 1 request. */
rl_status rl__kv_seq_share_prefix(rl__kv *kv, int32_t dst, int32_t src, int32_t n);

/* Cut the sequence to its first n tokens (0 <= n <= n_tokens): n_computed and n_slots
 * become at most n; blocks past the new last slot are released. For speculative decoding
 * rollback. Cached blocks stay cached; a block that will be written again leaves the
 * cache (or is copied if shared) at the next reserve. */
rl_status rl__kv_seq_truncate(rl__kv *kv, int32_t seq, int32_t n);

/* Release all blocks but keep the tokens: n_computed = n_slots = 0 (recompute
 * preemption). Its computed full blocks stay in the prefix cache until evicted. */
rl_status rl__kv_seq_release(rl__kv *kv, int32_t seq);

/* Queries; -1 (or NULL) for an id that is not live. */
int32_t rl__kv_seq_n_tokens(const rl__kv *kv, int32_t seq);
int32_t rl__kv_seq_n_computed(const rl__kv *kv, int32_t seq);
int32_t rl__kv_seq_n_slots(const rl__kv *kv, int32_t seq);
/* Token ids [0, n_tokens). */
const int32_t *rl__kv_seq_tokens(const rl__kv *kv, int32_t seq);
/* Block table: *n_blocks = ceil(n_slots / block_size) entries. */
const int32_t *rl__kv_seq_blocks(const rl__kv *kv, int32_t seq, int32_t *n_blocks);

/* ---- copies ------------------------------------------------------------------------ */
/* Copy instructions queued since the last rl__kv_copies_clear, in issue order. */
const rl__kv_copy *rl__kv_copies(const rl__kv *kv, int32_t *n);
void rl__kv_copies_clear(rl__kv *kv);
/* Make room for n queued copies, so that rl__kv_seq_reserve does not allocate while the
 * list holds fewer (at most one copy is queued per reserve). RL_ERR_NOMEM. */
rl_status rl__kv_copies_reserve(rl__kv *kv, int32_t n);

/* ---- checking ---------------------------------------------------------------------- */
/* Walk every structure and verify the invariants: each refcount equals the number of
 * block-table entries holding the block; refcount 0 <=> on exactly one free list (cached
 * => LRU, uncached => free list); both lists doubly linked consistently, acyclic, with
 * the counted lengths; used + free == n_blocks; every cached block sits in the bucket of
 * its key, once, and the cached count matches; no uncached block is in a bucket; each
 * sequence has n_computed <= n_slots <= n_tokens, a table of ceil(n_slots / bs) valid ids,
 * and its committed full blocks, when cached, carry the sequence's key for that block.
 * RL_OK, or RL_ERR_INTERNAL with the first violation described in err. O(n_blocks + total
 * table length). */
rl_status rl__kv_check(const rl__kv *kv, char *err, size_t err_size);

/* Test hook: keep only the first `bits` bits (0..256) of every block key, zeroing the
 * rest, to force key collisions (salt keys are not affected). 256 restores full keys.
 * Affects keys computed afterwards; set it before adding tokens. */
void rl__kv_test_set_key_bits(rl__kv *kv, int bits);

#endif /* RL_KV_H */
