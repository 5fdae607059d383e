/*
 * engine_impl.h - internals of the engine (src/engine): the request objects shared by the
 * engine thread and the submitting threads, and the engine state.
 *
 * Locks. e->mu guards the scheduler, the KV manager, the registry of live requests, every
 * request's engine-side state (sampler, detokenizer, held-back text) and the counters. The
 * engine thread holds it except during a forward pass, so submit, abort and metrics wait
 * at most for the sampling of one step. r->mu guards what a request shares with its
 * reader: the unread output of each sequence, the finish reasons and the DONE state. The
 * order is e->mu, then r->mu; a reader takes r->mu alone. Notify callbacks run with
 * neither held.
 *
 * Lifetime. A request is reference-counted: the caller's handle holds one reference and
 * the engine one while the request is live (in the scheduler). The engine drops its
 * reference when the request is done, so a handle outlives the engine safely.
 */
#ifndef RL_ENGINE_IMPL_H
#define RL_ENGINE_IMPL_H

#include "kv/kv.h"
#include "model/model.h"
#include "sched/sched.h"

#include <pthread.h>
#include <stdatomic.h>

/* Compiled grammars shared by requests, and a request's grammar matchers (constrain.c). */
typedef struct rl__gcache rl__gcache;
typedef struct rl__rcon rl__rcon;

/* A growable byte buffer. */
typedef struct rl__ebuf {
    char *p;
    size_t len, cap;
} rl__ebuf;

/* Generated tokens with their log-probabilities; top[] holds each token's n_top entries
 * in order (rl_engine_token.top is set when handed out). */
typedef struct rl__etoks {
    rl_engine_token *t;
    int32_t n, cap;
    rl_token_logprob *top;
    int32_t n_top, cap_top;
} rl__etoks;

typedef struct rl__eseq {
    /* engine side (e->mu) */
    rl_sampler *smp;
    rl_detok *detok;
    rl__ebuf hold; /* detokenized text not yet released: may be the start of a stop string */
    int32_t n_gen;
    double t_last; /* time of the last token (inter-token latency) */
    /* shared with the reader (r->mu) */
    rl__ebuf out;  /* released text not yet read */
    rl__etoks toks; /* tokens not yet read */
    rl_engine_finish finish;
    bool finish_read;
} rl__eseq;

struct rl_engine_request {
    rl_engine *e;
    atomic_int refs;
    uint64_t id;
    pthread_mutex_t mu;
    pthread_cond_t cv;

    /* set at submit, then read-only */
    int32_t n, n_prompt, max_new;
    bool logprobs, ignore_eos;
    int32_t top_n;
    char **stop;
    size_t *stop_len;
    int32_t n_stop;
    rl_engine_notify_fn notify;
    void *notify_user;
    rl__rcon *con;             /* grammar matchers, one per sequence; NULL: unconstrained.
                                  Engine side (e->mu) once submitted; freed when done */
    pthread_mutex_t nmu;       /* held while notify runs; notify_on is cleared under it */
    bool notify_on;
    double t_submit;

    /* engine side (e->mu) */
    rl_engine_request *hnext;  /* registry chain */
    rl_engine_request *nnext;  /* notification list of a step */
    bool notify_queued;
    bool live;                 /* in the registry and the scheduler */
    bool first_token;          /* a token of any sequence was produced */
    bool cached_known;
    rl__eseq *seq;             /* [n] */

    /* shared with the reader (r->mu) */
    int32_t n_cached;
    bool done, done_read;
    int32_t n_completion;
    rl_status status;
    char msg[256];
    int32_t rr;                /* next sequence the reader looks at first */
    rl__ebuf r_text;           /* the buffers of the event last handed out */
    rl__etoks r_toks;
};

#define RL__ENGINE_BUCKETS 1024

struct rl_engine {
    const rl_model *m;
    const rl_vocab *vocab;
    int32_t n_vocab;
    rl_engine_params p;
    int32_t n_swa; /* sliding window of the model's windowed layers; 0: none */
    rl_token warm_token; /* a one-letter token: pushed through each new detokenizer so that its
                          * buffers exist before the steps (RL_TOKEN_NULL: none found) */

    rl_context *ctx;
    rl__kv *kv;
    rl__sched *sched;
    rl__gcache *gcache; /* compiled grammars (its own lock) */

    pthread_t thread;
    bool thread_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    uint64_t next_id;
    rl_engine_request *reg[RL__ENGINE_BUCKETS];
    rl_engine_request *notify_head;

    /* the step in flight, copied from the plan (host memory, sized at create) */
    int32_t n_tok, n_out, n_items;
    int32_t *b_tok, *b_pos, *b_cell; /* [batch_tokens] */
    int32_t *b_span, *b_span_swa;    /* [batch_tokens][2] */
    int32_t *b_out;                  /* [n_parallel] */
    int32_t *attn;                   /* [n_parallel * n_ctx] */
    size_t cap_attn;
    uint64_t *it_id;                 /* [n_parallel] */
    int32_t *it_seq, *it_row;        /* [n_parallel]; it_row -1: no logits */
    rl__sched_output *outs;          /* [n_parallel] */
    int32_t *cp_src, *cp_dst;        /* [2 * n_parallel * block_size] */
    rl__kv_copy *cbuf;               /* the plan's block copies */
    int32_t cap_cbuf;
    float *logits;                   /* [n_parallel][n_vocab] */
    /* sampling on the device (engine.c dev_plan): the backend has it and RUVLLM_CUDA_SAMPLE
     * is not 0 */
    bool dev_sample;
    bool dev_step;                   /* this step samples on the device */
    rl_sample_row *dev_rows;         /* [n_parallel], by output row */
    int32_t *dev_ids;                /* [n_parallel], by output row */
    int32_t *dev_pen;                /* (id, count) pairs of the rows' penalty windows */
    int32_t cap_dev_pen;             /* pairs */

    /* counters (e->mu) */
    uint64_t n_submitted, n_rejected, n_finished, n_aborted, tokens_prompt;
    rl_engine_histogram ttft, itl, step_seqs;
};

/* ---- requests (request.c) ---- */

/* Build a request from p for engine e: copies, samplers, detokenizers. Validation of
 * the prompt and limits is the caller's; this checks the sampling params and stops. */
rl_status rl__ereq_create(rl_engine *e, const rl_engine_request_params *p,
                          const rl_token *prompt, int32_t n_prompt, int32_t max_new,
                          rl_engine_request **out, char *err, size_t err_size);
void rl__ereq_unref(rl_engine_request *r);
/* Call r's notify unless the handle was freed (waits for a call in progress). */
void rl__ereq_notify(rl_engine_request *r);

/* Engine thread, e->mu held: token tok was sampled for sequence k (logprobs read from
 * its sampler). Detokenizes, applies stop strings and end-of-generation; returns true
 * when the sequence must stop (its finish is then set). */
bool rl__ereq_token(rl_engine *e, rl_engine_request *r, int32_t k, rl_token tok, double now);
/* e->mu held: sequence k ends with reason f (when it has not ended yet). For STOP and
 * LENGTH the held text is released (flushed through the stop strings); ABORT and ERROR
 * drop it. */
void rl__ereq_finish_seq(rl_engine *e, rl_engine_request *r, int32_t k, rl_engine_finish f);
/* e->mu held: the request is done (every sequence finished); publish usage and DONE. */
void rl__ereq_done(rl_engine_request *r, rl_status st, const char *msg);

/* Of hold[0..len), the bytes that can be released now: up to the first stop string found
 * (*matched then true), else all but the longest tail that could start a stop string. */
size_t rl__stop_scan(const char *hold, size_t len, char *const *stop, const size_t *stop_len,
                     int32_t n_stop, bool *matched);

/* ---- constraints (constrain.c) ---- */

rl_status rl__gcache_create(const rl_vocab *v, int32_t n_vocab, rl__gcache **out);
/* Every request using c must be done (its rl__rcon freed) first. */
void rl__gcache_free(rl__gcache *c);
/* Matchers for n sequences of the grammar text (start rule root, NULL: "root"), compiled
 * or taken from c. Errors name the grammar ("grammar: line 1, column 5: ..."). */
rl_status rl__rcon_create(rl__gcache *c, const char *text, const char *root, int32_t n,
                          rl__rcon **out, char *err, size_t err_size);
void rl__rcon_free(rl__rcon *rc);
/* Engine thread, e->mu held: sample sequence k of r from logits under its constraint (if
 * any) and accept the token in its sampler and matcher. *dead_end (then RL_OK): no token
 * can continue the grammar; nothing was accepted. *complete: the text with the token is a
 * sentence nothing can continue (only an end token could follow): end the sequence after
 * it. Errors: the sampler's (its errmsg). */
rl_status rl__con_sample(rl_engine *e, rl_engine_request *r, int32_t k, const float *logits,
                         rl_token *tok, bool *dead_end, bool *complete);

/* Histogram helpers (engine.c). */
void rl__hist_init(rl_engine_histogram *h, const double *le, int32_t n);
void rl__hist_add(rl_engine_histogram *h, double v);

#endif /* RL_ENGINE_IMPL_H */
