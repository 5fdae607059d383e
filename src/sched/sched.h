/*
 * sched.h - the continuous-batching scheduler. It decides, step by step, which tokens of
 * which sequences the engine computes, knowing token counts and KV block ids only (as
 * vLLM's v1/core/sched). Depends on src/kv and src/util.
 *
 * Requests enter a waiting queue ordered by priority (smaller first, as vLLM's) then
 * arrival. Each step builds a plan under a token budget (batch_tokens) and a cap on
 * sequences (max_seqs):
 *   1. decodes first: every running sequence with one token to compute gets it;
 *   2. then prefill chunks of running requests, in order, fill the remaining budget
 *      (chunked prefill with decode priority, as Sarathi-Serve's stall-free batching);
 *   3. then waiting requests are admitted in order while seats, budget and blocks allow:
 *      the longest cached prefix (KV prefix cache) is attached and skipped, and the first
 *      chunk must fit in free blocks. The head of the queue blocks those behind it, so the
 *      oldest waiting request is never overtaken by a younger one of the same priority.
 * When a running sequence needs blocks and none are free, its chunk shrinks to what fits;
 * if nothing fits, the last running request in (priority, arrival) order is preempted:
 * its blocks are released and it goes back to the waiting queue, to be recomputed from
 * its tokens later (its computed full blocks stay in the prefix cache meanwhile). No
 * admission happens in a step that preempted. A step therefore never preempts the first
 * running request, and a request accepted by rl__sched_add always fits alone, so every
 * request completes (unless blocks of the pool are held outside the scheduler: a request
 * that then fits no more even alone ends with RL_SCHED_FINISH_ERROR).
 *
 * A request with n > 1 samples n sequences from one prompt: its first sequence (the lead)
 * computes the prompt but its last token; then the other sequences share those blocks
 * (kv fork; the trailing partial block is copied on write) and each computes the last
 * prompt token with logits and goes on alone. A recomputed n > 1 request forks again the
 * same way, so it never needs more blocks than on its first run.
 *
 * The cycle: rl__sched_step gives a plan; the engine executes the plan's block copies,
 * then its items (one forward pass), samples a token for each item that asks for logits,
 * and reports them with rl__sched_update, which also reports finished sequences.
 * rl__sched_add and rl__sched_abort may be called at any time.
 *
 * Thread-safety: none; a scheduler and its KV manager are owned by the engine thread.
 */
#ifndef RL_SCHED_H
#define RL_SCHED_H

#include "kv/kv.h"

typedef struct rl__sched rl__sched;

typedef struct rl__sched_params {
    int32_t batch_tokens; /* token budget of one step, >= max_seqs (default 512) */
    int32_t max_seqs;     /* sequences running at once (and in one step), >= 1 (default 64) */
    int32_t chunk_tokens; /* largest prefill chunk of one sequence per step; 0: the budget */
    int32_t max_waiting;  /* waiting requests beyond which add refuses; 0: no limit */
    int32_t n_ctx_max;    /* longest sequence (prompt + new tokens); 0: no limit */
} rl__sched_params;

/* A request as handed to rl__sched_add; everything is copied. */
typedef struct rl__sched_req {
    uint64_t id;            /* the caller's id, unique among live requests */
    int32_t priority;       /* smaller is served first; 0 by default */
    const int32_t *prompt;  /* [n_prompt] token ids >= 0 */
    int32_t n_prompt;       /* >= 1 */
    int32_t max_new_tokens; /* >= 1: a sequence stops with LENGTH after this many */
    int32_t n;              /* sequences to sample, 1..max_seqs */
    const void *salt;       /* cache_salt: prefix-cache namespace; NULL/0 for the shared one */
    size_t salt_len;
} rl__sched_req;

/* One sequence's share of a step: compute tokens at positions [pos, pos + n_tokens). */
typedef struct rl__sched_item {
    uint64_t id;                /* request id */
    int32_t seq_index;          /* 0..n-1 within the request */
    int32_t kv_seq;             /* KV manager sequence id */
    int32_t pos;                /* first position (tokens before it are in the cache) */
    int32_t n_tokens;           /* >= 1 */
    const int32_t *tokens;      /* [n_tokens] ids at those positions */
    const int32_t *block_table; /* [n_blocks]; covers positions [0, pos + n_tokens) */
    int32_t n_blocks;
    bool logits;  /* sample a token from the logits of the last position */
    bool prefill; /* part of a prompt or of a recomputation (else a decode) */
} rl__sched_item;

/* A step's plan. Pointers stay valid until the next rl__sched_update. */
typedef struct rl__sched_plan {
    const rl__sched_item *items; /* in (priority, arrival, seq_index) order */
    int32_t n_items;
    int32_t n_tokens;          /* sum of items' n_tokens, <= batch_tokens */
    const rl__kv_copy *copies; /* execute in order before the forward pass */
    int32_t n_copies;
    const uint64_t *preempted; /* ids of requests preempted while building this plan */
    int32_t n_preempted;
} rl__sched_plan;

/* What the engine reports for plan item i (token is read only when the item asked for
 * logits). stop: the sequence ended (end-of-generation token or a stop string). */
typedef struct rl__sched_output {
    int32_t token;
    bool stop;
} rl__sched_output;

typedef enum rl__sched_finish {
    RL_SCHED_FINISH_NONE = 0,
    RL_SCHED_FINISH_STOP,   /* the engine said stop */
    RL_SCHED_FINISH_LENGTH, /* max_new_tokens reached */
    RL_SCHED_FINISH_ERROR,  /* could not be scheduled (internal: the pool is used elsewhere) */
} rl__sched_finish;

/* A sequence finished; request_done when it was the request's last live sequence (the
 * scheduler has then forgotten the request). */
typedef struct rl__sched_event {
    uint64_t id;
    int32_t seq_index;
    rl__sched_finish reason;
    bool request_done;
} rl__sched_event;

typedef struct rl__sched_stats {
    int32_t n_running, n_waiting; /* requests */
    int32_t n_running_seqs;
    uint64_t n_steps;
    uint64_t n_preemptions;
    uint64_t n_added, n_finished, n_aborted;
    uint64_t tokens_scheduled; /* over all steps */
    uint64_t tokens_prefill;   /* of which prompt/recompute tokens */
    uint64_t tokens_generated; /* tokens sampled and reported */
    int32_t last_step_tokens, last_step_seqs;
    int32_t max_step_tokens, max_step_seqs; /* largest plans so far */
    /* From the KV manager: prefix-cache lookups and hits in tokens, hit_tokens/lookup. */
    uint64_t prefix_lookup_tokens, prefix_hit_tokens;
    double prefix_hit_rate; /* 0 when nothing was looked up */
    int32_t kv_blocks_used, kv_blocks_free, kv_blocks_cached;
} rl__sched_stats;

/* Defaults: batch_tokens 512, max_seqs 64, chunk_tokens 0, max_waiting 0, n_ctx_max 0. */
rl__sched_params rl__sched_default_params(void);

/* Create a scheduler over kv (borrowed: it must outlive the scheduler, and its sequences
 * are created and freed by the scheduler). RL_ERR_INVALID_ARG naming the field,
 * RL_ERR_NOMEM. All per-step memory is allocated here. */
rl_status rl__sched_create(const rl__sched_params *p, rl__kv *kv, rl__sched **out, char *err,
                           size_t err_size);
/* Frees the scheduler, its requests and their KV sequences. NULL is a no-op. */
void rl__sched_free(rl__sched *s);
/* Message of the last failed call ("" if none). */
const char *rl__sched_errmsg(const rl__sched *s);

/* Queue a request (copied). Errors, with a message naming the field:
 *  RL_ERR_INVALID_ARG  NULL/empty prompt, negative token id, max_new_tokens < 1,
 *                      n outside 1..max_seqs, duplicate live id;
 *  RL_ERR_RANGE        n_prompt + max_new_tokens > n_ctx_max;
 *  RL_ERR_LIMIT        the request could never fit in the KV pool even alone (the
 *                      message gives blocks needed and available), or the waiting queue
 *                      holds max_waiting requests already;
 *  RL_ERR_NOMEM.
 * Allocates the request's state and KV sequences here, sized for its whole life. */
rl_status rl__sched_add(rl__sched *s, const rl__sched_req *req);

/* Drop a request now (the client went away): its blocks are freed at once, or, while a
 * plan is out, right after the next update (the engine may still be writing them). The
 * request is then forgotten: no event and no output of it is reported later.
 * RL_ERR_NOT_FOUND for an unknown id. */
rl_status rl__sched_abort(rl__sched *s, uint64_t id);

/* Build the next plan into *plan (n_items may be 0 when nothing can run). Never
 * allocates. RL_ERR_INVALID_ARG when the previous plan has not been answered by
 * rl__sched_update; RL_ERR_INTERNAL if the KV manager refuses what it was checked to
 * accept (a broken invariant, with a message). */
rl_status rl__sched_step(rl__sched *s, const rl__sched_plan **plan);

/* Report the outcome of the last plan: out[i] for items[i], n_out == n_items. The
 * computed tokens are committed (full blocks enter the prefix cache); each sampled token
 * is appended to its sequence; sequences end with STOP (out[i].stop) or LENGTH. out ==
 * NULL says the plan was not executed: its requests are preempted (recomputed later).
 * *events (may be NULL) receives the finished sequences of this update and of the step
 * before it, valid until the next update. RL_ERR_INVALID_ARG (no plan out, n_out wrong,
 * negative token: nothing changed). */
rl_status rl__sched_update(rl__sched *s, const rl__sched_output *out, int32_t n_out,
                           const rl__sched_event **events, int32_t *n_events);

/* Counters for metrics. */
void rl__sched_stats_get(const rl__sched *s, rl__sched_stats *st);
/* Live requests (waiting + running). */
int32_t rl__sched_n_live(const rl__sched *s);

/* Verify the scheduler's invariants and the KV manager's (rl__kv_check): queues sorted
 * by (priority, arrival), waiting requests hold no blocks, seats equal the live sequences
 * of running requests and stay within max_seqs, each sequence's token count is prompt +
 * generated, generated <= max_new_tokens, unsplit n > 1 requests keep their other
 * sequences blockless, an outstanding plan respects the budget. RL_OK or
 * RL_ERR_INTERNAL with the violation in err. */
rl_status rl__sched_check(const rl__sched *s, char *err, size_t err_size);

#endif /* RL_SCHED_H */
