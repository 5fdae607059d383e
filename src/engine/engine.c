/*
 * engine.c - the engine thread and its step loop: scheduler plan -> block copies -> one
 * forward pass over the paged cache -> a token per sequence that asked for logits ->
 * detokenize / stop strings -> scheduler update -> wake the readers.
 *
 * The model's context is created with one cell per token slot of the KV pool
 * (n_ctx = n_blocks * block_size), and the engine places every token itself: a block
 * table entry b and offset o give cell b * block_size + o (the model's
 * rl__context_forward takes the cells and the per-token attention spans). The context's
 * own cell table (rl_decode's) is never used.
 */
#include "engine_impl.h"
#include "sampler/sampler.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RL_ENGINE_CTX_DEFAULT_MAX 4096
#define RL_ENGINE_MAX_PARALLEL 256

/* ---- histograms --------------------------------------------------------------------- */

void rl__hist_init(rl_engine_histogram *h, const double *le, int32_t n) {
    memset(h, 0, sizeof *h);
    for (int32_t i = 0; i < n && i < RL_ENGINE_HIST_MAX - 1; i++) h->le[h->n_buckets++] = le[i];
    h->le[h->n_buckets++] = INFINITY;
}

void rl__hist_add(rl_engine_histogram *h, double v) {
    for (int32_t i = 0; i < h->n_buckets; i++)
        if (v <= h->le[i]) h->count[i]++;
    h->total++;
    h->sum += v;
}

static const double k_lat_le[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1,
                                  0.25,  0.5,    0.75,  1,    2.5,   5,    10,    30};
static const double k_seq_le[] = {1, 2, 4, 8, 16, 32, 64, 128};

/* ---- params ------------------------------------------------------------------------- */

RL_API rl_engine_params rl_engine_default_params(void) {
    rl_engine_params p = {
        .n_ctx = 0,
        .n_parallel = 8,
        .kv_mem = 0,
        .block_size = RL_KV_DEFAULT_BLOCK_SIZE,
        .batch_tokens = 512,
        .max_waiting = 0,
        .prefix_cache = true,
        .kv_type = RL_TYPE_F16,
        .n_threads = 0,
    };
    return p;
}

RL_API rl_engine_request_params rl_engine_request_default_params(void) {
    rl_engine_request_params p;
    memset(&p, 0, sizeof p);
    p.sampling = rl_sampler_default_params();
    p.n = 1;
    return p;
}

RL_API rl_engine_params rl_engine_get_params(const rl_engine *e) {
    return e ? e->p : rl_engine_default_params();
}

RL_API const rl_model *rl_engine_model(const rl_engine *e) { return e ? e->m : NULL; }

/* ---- registry of live requests (e->mu) ------------------------------------------------ */

static rl_engine_request *reg_find(rl_engine *e, uint64_t id) {
    for (rl_engine_request *r = e->reg[id % RL__ENGINE_BUCKETS]; r; r = r->hnext)
        if (r->id == id) return r;
    return NULL;
}

static void reg_add(rl_engine *e, rl_engine_request *r) {
    rl_engine_request **b = &e->reg[r->id % RL__ENGINE_BUCKETS];
    r->hnext = *b;
    *b = r;
}

static void reg_remove(rl_engine *e, rl_engine_request *r) {
    for (rl_engine_request **pp = &e->reg[r->id % RL__ENGINE_BUCKETS]; *pp; pp = &(*pp)->hnext)
        if (*pp == r) {
            *pp = r->hnext;
            r->hnext = NULL;
            return;
        }
}

/* Queue r for a notification after the step (the list holds a reference). */
static void queue_notify(rl_engine *e, rl_engine_request *r) {
    if (!r->notify || r->notify_queued) return;
    r->notify_queued = true;
    atomic_fetch_add(&r->refs, 1);
    r->nnext = e->notify_head;
    e->notify_head = r;
}

/* Call the queued notifications; e->mu is dropped meanwhile. */
static void run_notify(rl_engine *e) {
    rl_engine_request *list = e->notify_head;
    e->notify_head = NULL;
    for (rl_engine_request *r = list; r; r = r->nnext) r->notify_queued = false;
    if (!list) return;
    pthread_mutex_unlock(&e->mu);
    while (list) {
        rl_engine_request *next = list->nnext;
        rl__ereq_notify(list);
        rl__ereq_unref(list);
        list = next;
    }
    pthread_mutex_lock(&e->mu);
}

/* The request ended (every sequence finished, or aborted): publish DONE, forget it. */
static void finalize(rl_engine *e, rl_engine_request *r, rl_status st, const char *msg,
                     bool aborted) {
    if (!r->live) return;
    r->live = false;
    reg_remove(e, r);
    rl__ereq_done(r, st, msg);
    if (aborted) e->n_aborted++;
    else e->n_finished++;
    queue_notify(e, r);
    rl__ereq_unref(r); /* the engine's reference */
}

/* End every live request with f (engine stopping or a broken invariant). */
static void fail_all(rl_engine *e, rl_engine_finish f, rl_status st, const char *msg) {
    for (int b = 0; b < RL__ENGINE_BUCKETS; b++)
        while (e->reg[b]) {
            rl_engine_request *r = e->reg[b];
            rl__sched_abort(e->sched, r->id);
            for (int32_t k = 0; k < r->n; k++) rl__ereq_finish_seq(e, r, k, f);
            finalize(e, r, st, msg, f == RL_ENGINE_FINISH_ABORT);
        }
}

/* ---- the step ----------------------------------------------------------------------- */

/* Copy the plan into the step buffers: tokens, positions, cells from the block tables,
 * each token's span of its sequence's cell list (causal; the window for sliding-window
 * layers), the rows that want logits. */
static void prepare(rl_engine *e, const rl__sched_plan *pl) {
    const int32_t bs = e->p.block_size;
    int32_t nt = 0, n_out = 0;
    size_t a = 0;
    for (int32_t i = 0; i < pl->n_items; i++) {
        const rl__sched_item *it = &pl->items[i];
        const int32_t len = it->pos + it->n_tokens;
        int32_t *list = e->attn + a;
        for (int32_t j = 0; j < len; j++) list[j] = it->block_table[j / bs] * bs + j % bs;
        for (int32_t t = 0; t < it->n_tokens; t++, nt++) {
            const int32_t p = it->pos + t;
            e->b_tok[nt] = it->tokens[t];
            e->b_pos[nt] = p;
            e->b_cell[nt] = list[p];
            e->b_span[2 * nt] = (int32_t)a;
            e->b_span[2 * nt + 1] = (int32_t)a + p + 1;
            if (e->n_swa > 0) {
                int32_t lo = RL_MAX(0, p - e->n_swa + 1);
                e->b_span_swa[2 * nt] = (int32_t)a + lo;
                e->b_span_swa[2 * nt + 1] = (int32_t)a + p + 1;
            }
        }
        e->it_id[i] = it->id;
        e->it_seq[i] = it->seq_index;
        e->it_row[i] = -1;
        if (it->logits) {
            e->b_out[n_out] = nt - 1;
            e->it_row[i] = n_out++;
        }
        rl_engine_request *r = reg_find(e, it->id);
        if (r && !r->cached_known) {
            r->cached_known = true;
            pthread_mutex_lock(&r->mu);
            r->n_cached = it->pos;
            pthread_mutex_unlock(&r->mu);
        }
        a += (size_t)len;
    }
    e->n_tok = nt;
    e->n_out = n_out;
    e->n_items = pl->n_items;
}

/* Execute the plan's block copies (copy-on-write), as cell copies. */
static void run_copies(rl_engine *e, const rl__kv_copy *cp, int32_t n) {
    const int32_t bs = e->p.block_size, cap = 2 * e->p.n_parallel;
    for (int32_t c0 = 0; c0 < n; c0 += cap) {
        int32_t m = RL_MIN(cap, n - c0), k = 0;
        for (int32_t c = 0; c < m; c++)
            for (int32_t o = 0; o < bs; o++, k++) {
                e->cp_src[k] = cp[c0 + c].src * bs + o;
                e->cp_dst[k] = cp[c0 + c].dst * bs + o;
            }
        rl__context_kv_copy(e->ctx, e->cp_src, e->cp_dst, k);
    }
}

/* Contract: sampling on the device. A step samples on the device, and only the ids come
 * back, when
 *   1. the context's backend has sample_to_host (CUDA) and RUVLLM_CUDA_SAMPLE is not 0;
 *   2. every row that wants a token belongs to a request without a grammar or other
 *      constraint, whose sampler's next pass the device runs (rl__sampler_device_plan: no
 *      logit bias, DRY, typical-p, XTC, mirostat or logprobs; the filters in top-k, top-p,
 *      min-p order with temperature after them).
 * (H100, vocab 128256, test_cuda_sample's timing: one row with top-k 40 / top-p / min-p /
 * penalties 64.5 us on the device against 121 us to copy it and sample here, temperature
 * alone 107 against 296; 8 rows 69 against 1,227; 64 rows 230 against 11,898.)
 * Otherwise every row's logits are copied to the host and sampled there (sample_all):
 * all or nothing per step, so one constrained request makes its step copy. The device's
 * draw takes its uniform number from the sequence's own generator, before the forward pass,
 * where the CPU pass would take it, so a seed gives the same tokens on both paths up to
 * rounding at a draw's boundary (test_cuda_sample). e->mu held. */
static bool dev_plan(rl_engine *e) {
    if (!e->dev_sample || e->n_out == 0) return false;
    int64_t n_pen = 0;
    for (int32_t i = 0; i < e->n_items; i++) {
        if (e->it_row[i] < 0) continue;
        rl_engine_request *r = reg_find(e, e->it_id[i]);
        const int32_t k = e->it_seq[i];
        if (!r || k < 0 || k >= r->n || r->seq[k].finish) continue; /* ignored later */
        rl__sampler_device d;
        if (r->con || !rl__sampler_device_plan(r->seq[k].smp, &d)) return false;
        n_pen += rl__sampler_penalty_pairs(r->seq[k].smp, NULL);
    }
    if (n_pen > e->cap_dev_pen) {
        if (n_pen > INT32_MAX / 2) return false;
        int32_t *p = rl__realloc(e->dev_pen, (size_t)n_pen * 2 * sizeof(int32_t));
        if (!p) return false;
        e->dev_pen = p;
        e->cap_dev_pen = (int32_t)n_pen;
    }
    int32_t at = 0;
    for (int32_t i = 0; i < e->n_items; i++) {
        const int32_t row = e->it_row[i];
        if (row < 0) continue;
        rl_engine_request *r = reg_find(e, e->it_id[i]);
        const int32_t k = e->it_seq[i];
        rl_sampler *smp = r && k >= 0 && k < r->n && !r->seq[k].finish ? r->seq[k].smp : NULL;
        const int32_t np = smp ? rl__sampler_penalty_pairs(smp, e->dev_pen + 2 * at) : 0;
        e->dev_rows[row] = rl__sample_row(smp, at, np);
        at += np;
    }
    return true;
}

/* Sample every item that asked for logits (e->mu held). */
static void sample_all(rl_engine *e) {
    const double now = rl__now();
    for (int32_t i = 0; i < e->n_items; i++) {
        e->outs[i] = (rl__sched_output){.token = 0, .stop = false};
        if (e->it_row[i] < 0) continue;
        rl_engine_request *r = reg_find(e, e->it_id[i]);
        const int32_t k = e->it_seq[i];
        if (!r || k < 0 || k >= r->n || r->seq[k].finish) {
            e->outs[i].stop = true; /* aborted meanwhile: the scheduler ignores it */
            continue;
        }
        rl__eseq *q = &r->seq[k];
        const float *row = e->logits + (size_t)e->it_row[i] * (size_t)e->n_vocab;
        rl_token tok = RL_TOKEN_NULL;
        bool dead_end = false, complete = false; /* the grammar allows no token / no more */
        rl_status st;
        const char *why = NULL;
        if (e->dev_step) { /* sampled on the device (dev_plan): accept it */
            tok = e->dev_ids[e->it_row[i]];
            st = tok >= 0 ? rl_sampler_accept(q->smp, tok) : RL_ERR_INVALID_ARG;
            if (tok < 0) why = "no token can be chosen: every token is at logit -inf";
        } else {
            st = rl__con_sample(e, r, k, row, &tok, &dead_end, &complete);
        }
        if (st == RL_OK && dead_end) {
            rl__ereq_finish_seq(e, r, k, RL_ENGINE_FINISH_STOP);
            e->outs[i].stop = true;
            queue_notify(e, r);
            continue;
        }
        if (st != RL_OK) {
            pthread_mutex_lock(&r->mu);
            if (r->status == RL_OK) {
                r->status = st;
                rl__fmt(r->msg, sizeof r->msg, "sampling: %s",
                        why ? why : rl_sampler_errmsg(q->smp));
            }
            pthread_mutex_unlock(&r->mu);
            rl__ereq_finish_seq(e, r, k, RL_ENGINE_FINISH_ERROR);
            e->outs[i].stop = true;
            queue_notify(e, r);
            continue;
        }
        e->outs[i].token = tok;
        e->outs[i].stop = rl__ereq_token(e, r, k, tok, now);
        if (complete && !e->outs[i].stop) {
            rl__ereq_finish_seq(e, r, k, RL_ENGINE_FINISH_STOP);
            e->outs[i].stop = true;
        }
        queue_notify(e, r);
    }
}

static void handle_events(rl_engine *e, const rl__sched_event *ev, int32_t n_ev) {
    for (int32_t i = 0; i < n_ev; i++) {
        rl_engine_request *r = reg_find(e, ev[i].id);
        if (!r) continue;
        const int32_t k = ev[i].seq_index;
        rl_status st = RL_OK;
        const char *msg = NULL;
        if (k >= 0 && k < r->n) {
            rl_engine_finish f = ev[i].reason == RL_SCHED_FINISH_LENGTH ? RL_ENGINE_FINISH_LENGTH
                                 : ev[i].reason == RL_SCHED_FINISH_ERROR ? RL_ENGINE_FINISH_ERROR
                                                                         : RL_ENGINE_FINISH_STOP;
            if (f == RL_ENGINE_FINISH_ERROR && !r->seq[k].finish) {
                st = RL_ERR_INTERNAL;
                msg = "the request could not be scheduled";
            }
            rl__ereq_finish_seq(e, r, k, f);
        }
        queue_notify(e, r);
        if (ev[i].request_done) finalize(e, r, st, msg, false);
    }
}

/* A forward pass failed: end the plan's requests with an error (they would fail again). */
static void fail_plan(rl_engine *e, rl_status st) {
    char msg[160];
    rl__fmt(msg, sizeof msg, "forward pass failed: %s", rl_status_str(st));
    for (int32_t i = 0; i < e->n_items; i++) {
        rl_engine_request *r = reg_find(e, e->it_id[i]);
        if (!r) continue;
        rl__sched_abort(e->sched, r->id);
        for (int32_t k = 0; k < r->n; k++) rl__ereq_finish_seq(e, r, k, RL_ENGINE_FINISH_ERROR);
        finalize(e, r, st, msg, false);
    }
}

static void *engine_main(void *arg) {
    rl_engine *e = arg;
    pthread_mutex_lock(&e->mu);
    while (!e->stop) {
        if (rl__sched_n_live(e->sched) == 0) {
            pthread_cond_wait(&e->cv, &e->mu);
            continue;
        }
        const rl__sched_plan *pl = NULL;
        rl_status st = rl__sched_step(e->sched, &pl);
        if (st != RL_OK) {
            char msg[300];
            rl__fmt(msg, sizeof msg, "scheduler: %s", rl__sched_errmsg(e->sched));
            fail_all(e, RL_ENGINE_FINISH_ERROR, st, msg);
            run_notify(e);
            continue;
        }
        const rl__sched_event *ev = NULL;
        int32_t n_ev = 0;
        if (pl->n_items == 0) {
            rl__sched_update(e->sched, NULL, 0, &ev, &n_ev);
            handle_events(e, ev, n_ev);
            run_notify(e);
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            ts.tv_nsec += 5000000L;
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&e->cv, &e->mu, &ts);
            continue;
        }
        prepare(e, pl);
        e->dev_step = dev_plan(e);
        rl__hist_add(&e->step_seqs, pl->n_items);
        /* The copy list belongs to the KV manager, which submit may touch while the
         * lock is dropped: copy it out first. */
        if (pl->n_copies > e->cap_cbuf) {
            rl__kv_copy *c = rl__realloc(e->cbuf, (size_t)pl->n_copies * sizeof *c);
            if (!c) {
                rl__sched_update(e->sched, NULL, 0, &ev, &n_ev); /* retried later */
                handle_events(e, ev, n_ev);
                run_notify(e);
                continue;
            }
            e->cbuf = c;
            e->cap_cbuf = pl->n_copies;
        }
        const int32_t nc = pl->n_copies;
        if (nc) memcpy(e->cbuf, pl->copies, (size_t)nc * sizeof *e->cbuf);
        pthread_mutex_unlock(&e->mu);

        run_copies(e, e->cbuf, nc);
        rl__pass pass = {
            .n_tok = e->n_tok,
            .tokens = e->b_tok,
            .pos = e->b_pos,
            .kv_cells = e->b_cell,
            .attn_cells = e->attn,
            .span_full = e->b_span,
            .span_swa = e->n_swa > 0 ? e->b_span_swa : NULL,
            .n_out = e->n_out,
            .out_ids = e->b_out,
            .out_argmax = e->dev_step ? e->dev_ids : NULL,
            .out_sample = e->dev_step ? e->dev_rows : NULL,
            .sample_pen = e->dev_pen,
        };
        st = rl__context_forward(e->ctx, &pass, e->logits);

        pthread_mutex_lock(&e->mu);
        if (st == RL_OK) {
            sample_all(e);
            rl__sched_update(e->sched, e->outs, e->n_items, &ev, &n_ev);
        } else {
            fail_plan(e, st);
            rl__sched_update(e->sched, NULL, 0, &ev, &n_ev);
        }
        handle_events(e, ev, n_ev);
        run_notify(e);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ---- create / free ------------------------------------------------------------------ */

static rl_status fail(char *err, size_t es, rl_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static rl_status fail(char *err, size_t es, rl_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (es) rl__vfmt(err, es, fmt, ap);
    va_end(ap);
    return st;
}

static void engine_destroy(rl_engine *e) {
    rl__sched_free(e->sched);
    rl__gcache_free(e->gcache);
    rl__kv_free(e->kv);
    rl_context_free(e->ctx);
    rl__free(e->b_tok);
    rl__free(e->b_pos);
    rl__free(e->b_cell);
    rl__free(e->b_span);
    rl__free(e->b_span_swa);
    rl__free(e->b_out);
    rl__free(e->attn);
    rl__free(e->it_id);
    rl__free(e->it_seq);
    rl__free(e->it_row);
    rl__free(e->outs);
    rl__free(e->cp_src);
    rl__free(e->cp_dst);
    rl__free(e->cbuf);
    rl__aligned_free(e->logits);
    rl__free(e->dev_rows);
    rl__free(e->dev_ids);
    rl__free(e->dev_pen);
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    rl__free(e);
}

RL_API rl_status rl_engine_create(const rl_model *m, const rl_engine_params *pp,
                                  rl_engine **out, char *err, size_t es) {
    if (es) err[0] = 0;
    if (!out) return fail(err, es, RL_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!m) return fail(err, es, RL_ERR_INVALID_ARG, "model is NULL");
    rl_engine_params p = pp ? *pp : rl_engine_default_params();
    const rl__hparams *hp = &m->hp;

    if (p.n_ctx == 0) p.n_ctx = RL_MIN(hp->n_ctx_train, RL_ENGINE_CTX_DEFAULT_MAX);
    if (p.n_ctx < 1 || p.n_ctx > (1 << 24))
        return fail(err, es, RL_ERR_INVALID_ARG, "n_ctx = %d is out of range (1..%d)", p.n_ctx,
                    1 << 24);
    if (p.n_parallel < 1 || p.n_parallel > RL_ENGINE_MAX_PARALLEL)
        return fail(err, es, RL_ERR_INVALID_ARG, "n_parallel = %d is out of range (1..%d)",
                    p.n_parallel, RL_ENGINE_MAX_PARALLEL);
    if (p.block_size < 1 || p.block_size > RL_KV_MAX_BLOCK_SIZE)
        return fail(err, es, RL_ERR_INVALID_ARG, "block_size = %d is out of range (1..%d)",
                    p.block_size, RL_KV_MAX_BLOCK_SIZE);
    if (p.batch_tokens < p.n_parallel || p.batch_tokens > (1 << 16))
        return fail(err, es, RL_ERR_INVALID_ARG,
                    "batch_tokens = %d is out of range (n_parallel %d..%d)", p.batch_tokens,
                    p.n_parallel, 1 << 16);
    if (p.max_waiting < 0)
        return fail(err, es, RL_ERR_INVALID_ARG, "max_waiting = %d is negative", p.max_waiting);
    if (p.kv_type != RL_TYPE_F16 && p.kv_type != RL_TYPE_F32 && p.kv_type != RL_TYPE_Q8_0)
        return fail(err, es, RL_ERR_UNSUPPORTED, "kv_type %s is not supported (F16, F32, Q8_0)",
                    rl_type_valid(p.kv_type) ? rl_type_name(p.kv_type) : "?");

    /* The pool: bytes per token are a K row and a V row in every layer. */
    size_t kr = 0, vr = 0;
    if (rl_type_row_bytes(p.kv_type, (int64_t)hp->n_head_kv * hp->head_dim_k, &kr) != RL_OK ||
        rl_type_row_bytes(p.kv_type, (int64_t)hp->n_head_kv * hp->head_dim_v, &vr) != RL_OK)
        return fail(err, es, RL_ERR_UNSUPPORTED,
                    "kv_type %s does not fit the model's head sizes (%d, %d)",
                    rl_type_name(p.kv_type), hp->head_dim_k, hp->head_dim_v);
    const uint64_t per_token = (uint64_t)(kr + vr) * (uint64_t)hp->n_layer;
    const int32_t bs = p.block_size;
    uint64_t n_blocks;
    if (p.kv_mem == 0) {
        n_blocks = ((uint64_t)p.n_ctx * (uint64_t)p.n_parallel + (uint64_t)bs - 1) / (uint64_t)bs;
        p.kv_mem = n_blocks * (uint64_t)bs * per_token;
    } else {
        n_blocks = p.kv_mem / (per_token * (uint64_t)bs);
    }
    if (n_blocks < 1)
        return fail(err, es, RL_ERR_INVALID_ARG,
                    "kv_mem = %llu bytes holds no block of %d tokens (%llu bytes each)",
                    (unsigned long long)p.kv_mem, bs,
                    (unsigned long long)(per_token * (uint64_t)bs));
    if (n_blocks * (uint64_t)bs > (1u << 24))
        return fail(err, es, RL_ERR_INVALID_ARG,
                    "kv_mem = %llu bytes is %llu tokens, more than %d", (unsigned long long)p.kv_mem,
                    (unsigned long long)(n_blocks * (uint64_t)bs), 1 << 24);
    if ((uint64_t)p.n_ctx > n_blocks * (uint64_t)bs) p.n_ctx = (int32_t)(n_blocks * (uint64_t)bs);

    rl_engine *e = rl__calloc(1, sizeof *e);
    if (!e) return fail(err, es, RL_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&e->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&e->cv, &ca);
    pthread_condattr_destroy(&ca);
    e->m = m;
    e->vocab = rl_model_vocab(m);
    e->n_vocab = rl_model_n_vocab(m);
    e->next_id = 1;
    for (int32_t il = 0; il < hp->n_layer; il++)
        if (m->layers[il].swa && hp->n_swa > 0) e->n_swa = hp->n_swa;
    e->warm_token = RL_TOKEN_NULL;
    for (rl_token t = 0; t < e->n_vocab && e->warm_token == RL_TOKEN_NULL; t++) {
        char piece[8];
        size_t len = 0;
        if (rl_token_to_piece(e->vocab, t, 0, piece, sizeof piece, &len) == RL_OK && len == 1 &&
            ((piece[0] >= 'a' && piece[0] <= 'z') || (piece[0] >= 'A' && piece[0] <= 'Z')))
            e->warm_token = t;
    }
    rl__hist_init(&e->ttft, k_lat_le, (int32_t)RL_ARRAY_LEN(k_lat_le));
    rl__hist_init(&e->itl, k_lat_le, (int32_t)RL_ARRAY_LEN(k_lat_le));
    rl__hist_init(&e->step_seqs, k_seq_le, (int32_t)RL_ARRAY_LEN(k_seq_le));
    if (rl__gcache_create(e->vocab, e->n_vocab, &e->gcache) != RL_OK) {
        engine_destroy(e);
        return fail(err, es, RL_ERR_NOMEM, "out of memory");
    }

    rl_context_params cp = rl_context_default_params();
    cp.n_ctx = (int32_t)(n_blocks * (uint64_t)bs);
    cp.n_batch = p.batch_tokens;
    cp.n_seq_max = 1;
    cp.n_outputs_max = p.n_parallel;
    cp.kv_type = p.kv_type;
    cp.n_threads = p.n_threads;
    rl_status st = rl_context_create(m, &cp, &e->ctx, err, es);
    if (st != RL_OK) goto fail_ctx;
    p.batch_tokens = RL_MIN(p.batch_tokens, cp.n_ctx);

    rl__kv_params kp = rl__kv_default_params();
    kp.n_blocks = (int32_t)n_blocks;
    kp.block_size = bs;
    kp.prefix_cache = p.prefix_cache;
    st = rl__kv_create(&kp, &e->kv, err, es);
    if (st != RL_OK) goto fail_ctx;

    rl__sched_params sp = rl__sched_default_params();
    sp.batch_tokens = p.batch_tokens;
    sp.max_seqs = p.n_parallel;
    sp.n_ctx_max = p.n_ctx;
    sp.max_waiting = 0; /* checked in submit, to tell a full queue from a request too long */
    st = rl__sched_create(&sp, e->kv, &e->sched, err, es);
    if (st != RL_OK) goto fail_ctx;

    const size_t nb = (size_t)p.batch_tokens, np = (size_t)p.n_parallel;
    e->cap_attn = np * (size_t)p.n_ctx;
    e->b_tok = rl__malloc(nb * sizeof(int32_t));
    e->b_pos = rl__malloc(nb * sizeof(int32_t));
    e->b_cell = rl__malloc(nb * sizeof(int32_t));
    e->b_span = rl__malloc(2 * nb * sizeof(int32_t));
    e->b_span_swa = rl__malloc(2 * nb * sizeof(int32_t));
    e->b_out = rl__malloc(np * sizeof(int32_t));
    e->attn = rl__malloc(e->cap_attn * sizeof(int32_t));
    e->it_id = rl__malloc(np * sizeof(uint64_t));
    e->it_seq = rl__malloc(np * sizeof(int32_t));
    e->it_row = rl__malloc(np * sizeof(int32_t));
    e->outs = rl__malloc(np * sizeof(rl__sched_output));
    e->cp_src = rl__malloc(2 * np * (size_t)bs * sizeof(int32_t));
    e->cp_dst = rl__malloc(2 * np * (size_t)bs * sizeof(int32_t));
    e->logits = rl__aligned_alloc(64, np * (size_t)e->n_vocab * sizeof(float));
    e->dev_rows = rl__malloc(np * sizeof(rl_sample_row));
    e->dev_ids = rl__malloc(np * sizeof(int32_t));
    const char *ds = getenv("RUVLLM_CUDA_SAMPLE");
    e->dev_sample = rl__context_can_sample(e->ctx) && !(ds && strcmp(ds, "0") == 0);
    /* a step's block copies: a fork's or copy-on-write of each sequence's last block; more
     * make it grow */
    e->cap_cbuf = 2 * p.n_parallel;
    e->cbuf = rl__malloc((size_t)e->cap_cbuf * sizeof *e->cbuf);
    if (!e->b_tok || !e->b_pos || !e->b_cell || !e->b_span || !e->b_span_swa || !e->b_out ||
        !e->attn || !e->it_id || !e->it_seq || !e->it_row || !e->outs || !e->cp_src ||
        !e->cp_dst || !e->logits || !e->cbuf || !e->dev_rows || !e->dev_ids) {
        st = fail(err, es, RL_ERR_NOMEM, "out of memory");
        goto fail_ctx;
    }
    /* Every request must fit alone: sequences of n_ctx tokens, and the attention list of
     * a step holds at most n_parallel of them. */
    e->p = p;
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        st = fail(err, es, RL_ERR_INTERNAL, "cannot start the engine thread: %s",
                  strerror(errno));
        goto fail_ctx;
    }
    e->thread_started = true;
    *out = e;
    return RL_OK;

fail_ctx:
    engine_destroy(e);
    return st;
}

RL_API void rl_engine_free(rl_engine *e) {
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    e->stop = true;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (e->thread_started) pthread_join(e->thread, NULL);
    pthread_mutex_lock(&e->mu);
    fail_all(e, RL_ENGINE_FINISH_ABORT, RL_OK, NULL);
    run_notify(e);
    pthread_mutex_unlock(&e->mu);
    engine_destroy(e);
}

/* ---- submit / abort ----------------------------------------------------------------- */

RL_API rl_status rl_engine_submit(rl_engine *e, const rl_engine_request_params *p,
                                  rl_engine_request **out, char *err, size_t es) {
    if (es) err[0] = 0;
    if (!out) return fail(err, es, RL_ERR_INVALID_ARG, "out is NULL");
    *out = NULL;
    if (!e || !p) return fail(err, es, RL_ERR_INVALID_ARG, "engine or params is NULL");

    rl_status st = RL_OK;
    rl_token *owned = NULL;
    const rl_token *prompt = p->prompt;
    int32_t n_prompt = p->n_prompt;
    rl_engine_request *r = NULL;
    if (!prompt) {
        if (!p->prompt_text) {
            st = fail(err, es, RL_ERR_INVALID_ARG, "prompt: neither tokens nor text given");
            goto reject;
        }
        size_t n = 0;
        st = rl_tokenize(e->vocab, p->prompt_text, p->prompt_len, p->tokenize_flags, NULL, 0, &n);
        if (st != RL_OK && st != RL_ERR_RANGE) {
            st = fail(err, es, st, "prompt: tokenizing failed: %s", rl_status_str(st));
            goto reject;
        }
        if (n > (size_t)INT32_MAX / 4) {
            st = fail(err, es, RL_ERR_RANGE, "prompt: %zu tokens", n);
            goto reject;
        }
        owned = rl__malloc((n ? n : 1) * sizeof *owned);
        if (!owned) {
            st = fail(err, es, RL_ERR_NOMEM, "out of memory");
            goto reject;
        }
        st = rl_tokenize(e->vocab, p->prompt_text, p->prompt_len, p->tokenize_flags, owned, n, &n);
        if (st != RL_OK) {
            st = fail(err, es, st, "prompt: tokenizing failed: %s", rl_status_str(st));
            goto reject;
        }
        prompt = owned;
        n_prompt = (int32_t)n;
    }
    if (n_prompt < 1) {
        st = fail(err, es, RL_ERR_INVALID_ARG, "prompt: empty (n_prompt = %d)", n_prompt);
        goto reject;
    }
    for (int32_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= e->n_vocab) {
            st = fail(err, es, RL_ERR_INVALID_ARG, "prompt[%d] = %d is not a token id (0..%d)", i,
                      prompt[i], e->n_vocab - 1);
            goto reject;
        }
    const int32_t n_max = RL_MIN(RL_ENGINE_MAX_N, e->p.n_parallel);
    if (p->n < 1 || p->n > n_max) {
        st = fail(err, es, RL_ERR_INVALID_ARG, "n = %d is out of range (1..%d)", p->n, n_max);
        goto reject;
    }
    if (p->max_tokens < 0) {
        st = fail(err, es, RL_ERR_INVALID_ARG, "max_tokens = %d is negative", p->max_tokens);
        goto reject;
    }
    if (n_prompt >= e->p.n_ctx) {
        st = fail(err, es, RL_ERR_RANGE,
                  "prompt: %d tokens leave no room in the context of %d tokens", n_prompt,
                  e->p.n_ctx);
        goto reject;
    }
    int32_t max_new = p->max_tokens ? p->max_tokens : e->p.n_ctx - n_prompt;
    if ((int64_t)n_prompt + max_new > e->p.n_ctx) {
        st = fail(err, es, RL_ERR_RANGE,
                  "max_tokens: prompt of %d tokens + max_tokens %d exceeds the context of %d "
                  "tokens",
                  n_prompt, max_new, e->p.n_ctx);
        goto reject;
    }
    st = rl__ereq_create(e, p, prompt, n_prompt, max_new, &r, err, es);
    if (st != RL_OK) goto reject;

    pthread_mutex_lock(&e->mu);
    if (e->stop) {
        pthread_mutex_unlock(&e->mu);
        st = fail(err, es, RL_ERR_UNSUPPORTED, "the engine is stopping");
        goto reject;
    }
    rl__sched_stats ss;
    rl__sched_stats_get(e->sched, &ss);
    if (e->p.max_waiting && ss.n_waiting >= e->p.max_waiting) {
        e->n_rejected++;
        pthread_mutex_unlock(&e->mu);
        st = fail(err, es, RL_ERR_LIMIT, "the queue is full (%d requests waiting)", ss.n_waiting);
        goto reject_counted;
    }
    r->id = e->next_id++;
    const size_t salt_len = p->cache_salt ? strlen(p->cache_salt) : 0;
    rl__sched_req q = {
        .id = r->id,
        .priority = p->priority,
        .prompt = prompt,
        .n_prompt = n_prompt,
        .max_new_tokens = max_new,
        .n = p->n,
        .salt = salt_len ? p->cache_salt : NULL,
        .salt_len = salt_len,
    };
    st = rl__sched_add(e->sched, &q);
    if (st != RL_OK) {
        if (st == RL_ERR_LIMIT) st = RL_ERR_RANGE; /* can never fit in the pool */
        fail(err, es, st, "%s", rl__sched_errmsg(e->sched));
        e->n_rejected++;
        pthread_mutex_unlock(&e->mu);
        goto reject_counted;
    }
    atomic_fetch_add(&r->refs, 1); /* the engine's */
    r->live = true;
    reg_add(e, r);
    e->n_submitted++;
    e->tokens_prompt += (uint64_t)n_prompt;
    pthread_cond_signal(&e->cv);
    pthread_mutex_unlock(&e->mu);
    rl__free(owned);
    *out = r;
    return RL_OK;

reject:
    pthread_mutex_lock(&e->mu);
    e->n_rejected++;
    pthread_mutex_unlock(&e->mu);
reject_counted:
    rl__ereq_unref(r);
    rl__free(owned);
    return st;
}

RL_API void rl_engine_abort(rl_engine_request *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    bool done = r->done;
    pthread_mutex_unlock(&r->mu);
    if (done) return;
    rl_engine *e = r->e;
    pthread_mutex_lock(&e->mu);
    bool notify = false;
    if (r->live) {
        rl__sched_abort(e->sched, r->id);
        for (int32_t k = 0; k < r->n; k++) rl__ereq_finish_seq(e, r, k, RL_ENGINE_FINISH_ABORT);
        atomic_fetch_add(&r->refs, 1); /* keep r for the notification below */
        r->live = false;
        reg_remove(e, r);
        rl__ereq_done(r, RL_OK, NULL);
        e->n_aborted++;
        rl__ereq_unref(r); /* the engine's reference */
        notify = true;
    }
    pthread_mutex_unlock(&e->mu);
    if (notify) {
        rl__ereq_notify(r);
        rl__ereq_unref(r);
    }
}

RL_API void rl_engine_request_free(rl_engine_request *r) {
    if (!r) return;
    pthread_mutex_lock(&r->nmu);
    r->notify_on = false; /* waits for a notify in progress */
    pthread_mutex_unlock(&r->nmu);
    rl_engine_abort(r);
    rl__ereq_unref(r);
}

/* ---- metrics ------------------------------------------------------------------------- */

RL_API void rl_engine_metrics_get(rl_engine *e, rl_engine_metrics *out) {
    if (!out) return;
    memset(out, 0, sizeof *out);
    if (!e) return;
    pthread_mutex_lock(&e->mu);
    rl__sched_stats ss;
    rl__kv_stats ks;
    rl__sched_stats_get(e->sched, &ss);
    rl__kv_stats_get(e->kv, &ks);
    out->n_running = ss.n_running;
    out->n_waiting = ss.n_waiting;
    out->n_running_seqs = ss.n_running_seqs;
    out->n_submitted = e->n_submitted;
    out->n_rejected = e->n_rejected;
    out->n_finished = e->n_finished;
    out->n_aborted = e->n_aborted;
    out->tokens_prompt = e->tokens_prompt;
    out->tokens_prefill = ss.tokens_prefill;
    out->tokens_generated = ss.tokens_generated;
    out->n_steps = ss.n_steps;
    out->last_step_seqs = ss.last_step_seqs;
    out->max_step_seqs = ss.max_step_seqs;
    out->max_step_tokens = ss.max_step_tokens;
    out->n_preemptions = ss.n_preemptions;
    out->kv_block_size = ks.block_size;
    out->kv_blocks_total = ks.n_blocks;
    out->kv_blocks_used = ks.n_used;
    out->kv_blocks_free = ks.n_free;
    out->kv_blocks_cached = ks.n_cached;
    out->prefix_lookup_tokens = ks.lookup_tokens;
    out->prefix_hit_tokens = ks.hit_tokens;
    out->prefix_lookup_blocks = ks.lookup_blocks;
    out->prefix_hit_blocks = ks.hit_blocks;
    out->ttft = e->ttft;
    out->itl = e->itl;
    out->step_seqs = e->step_seqs;
    pthread_mutex_unlock(&e->mu);
}
