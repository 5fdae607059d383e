/*
 * context.c - rl_context: the KV cache, the per-pass scratch, and rl_decode.
 *
 * KV cache. n_ctx cells shared by all sequences; a cell holds one token's K and V rows
 * in every layer (rl_kv_layer tables, backend memory), its position, and the set of
 * sequences that hold it (a bit mask, so that rl_kv_seq_copy forks a sequence by
 * sharing cells instead of copying them). A cell no sequence holds is free. The cells of
 * a sequence need not be contiguous or in order: before each pass the cells of every
 * sequence in the micro-batch are listed in position order, and each token attends to a
 * span of its sequence's list (all cells up to its own position; for sliding-window
 * layers only the last n_swa positions). That is all the attention op knows of the
 * cache, which is why a paged cache can replace this one without touching the op.
 *
 * Memory. Everything is allocated at creation: the KV tables, host-side lists, the
 * logits buffer, and the arena of a pass, whose size comes from a dry run of the
 * architecture's forward function at the largest micro-batch (ops skipped, allocations
 * only counted), which also has the backend reserve its matmul scratch. rl_decode then
 * allocates nothing (test_model_context checks it).
 */
#include "model.h"
#include "sampler/sampler.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define RL_CTX_DEFAULT_MAX 4096
#define RL_SEQ_MAX 64

struct rl_context {
    const rl_model *m;
    rl_context_params p; /* resolved */
    rl_backend *be;
    char err[320];

    /* cells */
    int32_t n_cells;
    int32_t *cell_pos;   /* [n_cells], -1 when free */
    uint64_t *cell_seq;  /* [n_cells]: bit s set when sequence s holds the cell */
    int32_t n_used;
    int32_t head;        /* where the search for free cells starts */
    rl_kv_layer *kv;     /* [n_layer] */
    rl_rope_params *rope; /* [n_layer] */
    bool has_swa;

    rl__arena arena;
    rl__arena host_arena; /* host scratch of a pass (MoE routing) */

    /* one micro-batch, host side */
    int32_t *ub_tok, *ub_pos, *ub_seq, *ub_cells, *ub_out; /* [n_batch] */
    int32_t *span_full, *span_swa;                         /* [n_batch][2] */
    int32_t *attn_cells; /* the lists back to back (room: n_lists_max x n_cells) */
    int32_t n_lists_max;
    int32_t *list_base, *list_len;                         /* [n_seq_max] */
    int32_t *seq_last;                                     /* [n_seq_max] */
    int32_t *seq_prev;                                     /* [n_seq_max] */
    /* Each sequence's cells in position order, kept as rl_decode takes cells (its
     * positions only grow), so that a step neither scans the cell table for the
     * sequences' last positions nor for their lists. seq_cells[s * n_cells ..] holds
     * seq_len[s] cells. lists_ok false (a removal or copy changed them in the middle):
     * rebuilt by one scan at the next rl_decode. lists_scan (RUVLLM_KV_LISTS=0): rebuilt
     * every call, as a scan of the table each step did before. */
    int32_t *seq_cells; /* [n_seq_max][n_cells] */
    int32_t *seq_len;   /* [n_seq_max] */
    bool lists_ok, lists_scan;

    /* results of the last rl_decode */
    float *logits;          /* [n_outputs_max][n_vocab] host */
    bool logits_registered; /* its first rows are the backend's (host_register) */
    int32_t *out_batch_idx; /* [n_outputs_max] batch index of each logits row, ascending */
    int32_t n_outputs;
    bool argmax_only;       /* rl_context_set_argmax_only */
    bool out_is_argmax;     /* the last rl_decode kept ids in out_argmax, not logits */
    int32_t *out_argmax;    /* [n_outputs_max] */
    /* rl_context_set_sampler: each output row's token drawn on the device with dev_smp */
    rl_sampler *dev_smp;
    bool out_is_sampled;    /* the last rl_decode kept sampled ids in out_argmax */
    rl_sample_row *dev_rows; /* [n_outputs_max] */
    int32_t *dev_pen;        /* [n_vocab][2]: the sampler's penalty pairs */
};

static rl_status ctx_fail(rl_context *ctx, rl_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static rl_status ctx_fail(rl_context *ctx, rl_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    rl__vfmt(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    return st;
}

RL_API rl_context_params rl_context_default_params(void) {
    rl_context_params p = {
        .n_ctx = 0,
        .n_batch = 512,
        .n_seq_max = 1,
        .n_outputs_max = 0,
        .kv_type = RL_TYPE_F16,
        .n_threads = 0,
    };
    return p;
}

RL_API void rl_context_free(rl_context *ctx) {
    if (!ctx) return;
    rl_backend *be = ctx->be;
    if (be) {
        if (ctx->kv)
            for (int32_t il = 0; il < ctx->m->hp.n_layer; il++) {
                be->ops->free(be, ctx->kv[il].k);
                be->ops->free(be, ctx->kv[il].v);
            }
        be->ops->free(be, ctx->arena.base);
    }
    rl__aligned_free(ctx->host_arena.base);
    rl__free(ctx->kv);
    rl__free(ctx->rope);
    rl__free(ctx->cell_pos);
    rl__free(ctx->cell_seq);
    rl__free(ctx->ub_tok);
    rl__free(ctx->ub_pos);
    rl__free(ctx->ub_seq);
    rl__free(ctx->ub_cells);
    rl__free(ctx->ub_out);
    rl__free(ctx->span_full);
    rl__free(ctx->span_swa);
    rl__free(ctx->attn_cells);
    rl__free(ctx->list_base);
    rl__free(ctx->list_len);
    rl__free(ctx->seq_last);
    rl__free(ctx->seq_prev);
    rl__free(ctx->seq_cells);
    rl__free(ctx->seq_len);
    if (ctx->logits_registered) be->ops->host_unregister(be, ctx->logits);
    rl__aligned_free(ctx->logits);
    rl__free(ctx->out_batch_idx);
    rl__free(ctx->out_argmax);
    rl__free(ctx->dev_rows);
    rl__free(ctx->dev_pen);
    rl__backend_free(be);
    rl__free(ctx);
}

/* n * size bytes, or 0 on overflow. */
static size_t nbytes(size_t n, size_t size) {
    size_t r;
    return rl__mul_size(n, size, &r) ? r : 0;
}

static rl_status check_params(const rl_model *m, rl_context_params *p, char *err, size_t es) {
    const rl__hparams *hp = &m->hp;
    if (p->n_ctx == 0) p->n_ctx = RL_MIN(hp->n_ctx_train, RL_CTX_DEFAULT_MAX);
    if (p->n_ctx < 1 || p->n_ctx > (1 << 24)) {
        rl__fmt(err, es, "n_ctx = %d is out of range (1..%d)", p->n_ctx, 1 << 24);
        return RL_ERR_INVALID_ARG;
    }
    if (p->n_batch < 1 || p->n_batch > (1 << 16)) {
        rl__fmt(err, es, "n_batch = %d is out of range (1..%d)", p->n_batch, 1 << 16);
        return RL_ERR_INVALID_ARG;
    }
    p->n_batch = RL_MIN(p->n_batch, p->n_ctx);
    if (p->n_seq_max < 1 || p->n_seq_max > RL_SEQ_MAX) {
        rl__fmt(err, es, "n_seq_max = %d is out of range (1..%d)", p->n_seq_max, RL_SEQ_MAX);
        return RL_ERR_INVALID_ARG;
    }
    if (p->n_outputs_max == 0) p->n_outputs_max = p->n_seq_max;
    if (p->n_outputs_max < 1 || p->n_outputs_max > (1 << 24)) {
        rl__fmt(err, es, "n_outputs_max = %d is out of range (1..%d)", p->n_outputs_max, 1 << 24);
        return RL_ERR_INVALID_ARG;
    }
    if (p->kv_type != RL_TYPE_F16 && p->kv_type != RL_TYPE_F32 && p->kv_type != RL_TYPE_Q8_0) {
        rl__fmt(err, es, "kv_type %s is not supported (F16, F32, Q8_0)",
                rl_type_valid(p->kv_type) ? rl_type_name(p->kv_type) : "?");
        return RL_ERR_UNSUPPORTED;
    }
    if (p->kv_type == RL_TYPE_Q8_0 && (hp->head_dim_k % 32 || hp->head_dim_v % 32)) {
        rl__fmt(err, es, "kv_type Q8_0 needs head sizes that are multiples of 32 (the model's "
                "are %d and %d)", hp->head_dim_k, hp->head_dim_v);
        return RL_ERR_UNSUPPORTED;
    }
    if (p->n_threads <= 0) p->n_threads = m->n_threads;
    return RL_OK;
}

/* The dry run: the architecture's forward over the largest micro-batch with ops skipped,
 * which measures the arena and reserves the backend's matmul scratch. */
static rl_status size_arena(rl_context *ctx) {
    const rl_model *m = ctx->m;
    rl__fwd f = {
        .m = m,
        .be = ctx->be,
        .arena = &ctx->arena,
        .dry = true,
        .n_tok = ctx->p.n_batch,
        .n_out = RL_MIN(ctx->p.n_batch, ctx->p.n_outputs_max),
        .kv = ctx->kv,
        .rope = ctx->rope,
        .host = &ctx->host_arena,
    };
    f.logits = rl__fwd_alloc(&f, (int64_t)f.n_out * m->hp.n_vocab);
    rl_status st = m->arch->forward(&f);
    if (st != RL_OK) return st;
    ctx->arena.size = ctx->arena.peak;
    ctx->arena.used = ctx->arena.peak = 0;
    ctx->arena.base = ctx->be->ops->alloc(ctx->be, ctx->arena.size);
    ctx->host_arena.size = ctx->host_arena.peak;
    ctx->host_arena.used = ctx->host_arena.peak = 0;
    if (ctx->host_arena.size) {
        ctx->host_arena.base = rl__aligned_alloc(64, ctx->host_arena.size);
        if (!ctx->host_arena.base) return RL_ERR_NOMEM;
    }
    return ctx->arena.base ? RL_OK : RL_ERR_NOMEM;
}

RL_API rl_status rl_context_create(const rl_model *m, const rl_context_params *pp,
                                   rl_context **out, char *err, size_t es) {
    if (es) err[0] = 0;
    if (!out) return RL_ERR_INVALID_ARG;
    *out = NULL;
    if (!m) {
        rl__fmt(err, es, "model is NULL");
        return RL_ERR_INVALID_ARG;
    }
    rl_context_params p = pp ? *pp : rl_context_default_params();
    rl_status st = check_params(m, &p, err, es);
    if (st != RL_OK) return st;
    const rl__hparams *hp = &m->hp;

    rl_context *ctx = rl__calloc(1, sizeof *ctx);
    if (!ctx) goto nomem;
    ctx->m = m;
    ctx->p = p;
    ctx->n_cells = p.n_ctx;
    if (m->dev) st = m->dev->ops->fork(m->dev, &ctx->be);
    else st = rl__backend_cpu_create(p.n_threads, &ctx->be);
    if (st != RL_OK) {
        if (m->dev) rl__fmt(err, es, "cannot start a %s queue: %s", m->dev->ops->name,
                            rl_status_str(st));
        else rl__fmt(err, es, "cannot start %d threads", p.n_threads);
        rl_context_free(ctx);
        return st;
    }
    if (ctx->be->ops->version != RL_BACKEND_OPS_VERSION) {
        rl__fmt(err, es, "backend %s has ops version %u, expected %u", ctx->be->ops->name,
                ctx->be->ops->version, RL_BACKEND_OPS_VERSION);
        rl_context_free(ctx);
        return RL_ERR_INTERNAL;
    }

    /* KV tables */
    const size_t n_cells = (size_t)p.n_ctx, n_layer = (size_t)hp->n_layer;
    ctx->kv = rl__calloc(n_layer, sizeof *ctx->kv);
    ctx->rope = rl__calloc(n_layer, sizeof *ctx->rope);
    if (!ctx->kv || !ctx->rope) goto nomem;
    for (size_t il = 0; il < n_layer; il++) {
        rl_kv_layer *kv = &ctx->kv[il];
        kv->type = p.kv_type;
        kv->n_embd_k = hp->n_head_kv * hp->head_dim_k;
        kv->n_embd_v = hp->n_head_kv * hp->head_dim_v;
        rl_type_row_bytes(p.kv_type, kv->n_embd_k, &kv->k_row_bytes);
        rl_type_row_bytes(p.kv_type, kv->n_embd_v, &kv->v_row_bytes);
        size_t kb = nbytes(n_cells, kv->k_row_bytes), vb = nbytes(n_cells, kv->v_row_bytes);
        if (!kb || !vb) goto nomem;
        kv->k = ctx->be->ops->alloc(ctx->be, kb);
        kv->v = ctx->be->ops->alloc(ctx->be, vb);
        if (!kv->k || !kv->v) goto nomem;
        if (m->layers[il].swa && hp->n_swa > 0) ctx->has_swa = true;
    }
    rl__rope_resolve(m, p.n_ctx, ctx->rope);

    /* cells and host lists */
    const size_t nb = (size_t)p.n_batch, ns = (size_t)p.n_seq_max;
    ctx->cell_pos = rl__malloc(n_cells * sizeof(int32_t));
    ctx->cell_seq = rl__calloc(n_cells, sizeof(uint64_t));
    ctx->ub_tok = rl__malloc(nb * sizeof(int32_t));
    ctx->ub_pos = rl__malloc(nb * sizeof(int32_t));
    ctx->ub_seq = rl__malloc(nb * sizeof(int32_t));
    ctx->ub_cells = rl__malloc(nb * sizeof(int32_t));
    ctx->ub_out = rl__malloc(nb * sizeof(int32_t));
    ctx->span_full = rl__malloc(2 * nb * sizeof(int32_t));
    ctx->span_swa = rl__malloc(2 * nb * sizeof(int32_t));
    ctx->n_lists_max = (int32_t)RL_MIN(ns, nb);
    size_t lists = nbytes(nbytes((size_t)ctx->n_lists_max, n_cells), sizeof(int32_t));
    ctx->attn_cells = lists ? rl__malloc(lists) : NULL;
    ctx->list_base = rl__malloc(ns * sizeof(int32_t));
    ctx->list_len = rl__malloc(ns * sizeof(int32_t));
    ctx->seq_last = rl__malloc(ns * sizeof(int32_t));
    ctx->seq_prev = rl__malloc(ns * sizeof(int32_t));
    size_t sl = nbytes(nbytes(ns, n_cells), sizeof(int32_t));
    ctx->seq_cells = sl ? rl__malloc(sl) : NULL;
    ctx->seq_len = rl__calloc(ns, sizeof(int32_t));
    ctx->lists_ok = true; /* every list empty */
    const char *lists_env = getenv("RUVLLM_KV_LISTS");
    ctx->lists_scan = lists_env && lists_env[0] == '0';
    size_t lb = nbytes(nbytes((size_t)p.n_outputs_max, (size_t)hp->n_vocab), sizeof(float));
    ctx->logits = lb ? rl__aligned_alloc(64, lb) : NULL;
    ctx->out_batch_idx = rl__malloc((size_t)p.n_outputs_max * sizeof(int32_t));
    ctx->out_argmax = rl__malloc((size_t)p.n_outputs_max * sizeof(int32_t));
    if (!ctx->cell_pos || !ctx->cell_seq || !ctx->ub_tok || !ctx->ub_pos || !ctx->ub_seq ||
        !ctx->ub_cells || !ctx->ub_out || !ctx->span_full || !ctx->span_swa ||
        !ctx->attn_cells || !ctx->list_base || !ctx->list_len || !ctx->seq_last || !ctx->seq_prev ||
        !ctx->seq_cells || !ctx->seq_len || !ctx->logits || !ctx->out_batch_idx || !ctx->out_argmax)
        goto nomem;
    for (size_t c = 0; c < n_cells; c++) ctx->cell_pos[c] = -1;
    if (ctx->be->ops->host_register) {
        /* the rows a decode step of up to 64 sequences fills come back with no bounce copy */
        const size_t rb = RL_MIN(lb, (size_t)RL_MIN(p.n_outputs_max, 64) * (size_t)hp->n_vocab *
                                         sizeof(float));
        st = ctx->be->ops->host_register(ctx->be, ctx->logits, rb);
        if (st != RL_OK) {
            rl__fmt(err, es, "cannot prepare the logits buffer (%zu bytes) for the %s backend: %s",
                    rb, ctx->be->ops->name, rl_status_str(st));
            rl_context_free(ctx);
            return st;
        }
        ctx->logits_registered = true;
    }

    st = size_arena(ctx);
    if (st != RL_OK) {
        if (st == RL_ERR_NOMEM) goto nomem;
        rl__fmt(err, es, "sizing the forward pass failed: %s", rl_status_str(st));
        rl_context_free(ctx);
        return st;
    }
    *out = ctx;
    return RL_OK;

nomem:
    rl__fmt(err, es, "out of memory");
    rl_context_free(ctx);
    return RL_ERR_NOMEM;
}

RL_API const char *rl_context_errmsg(const rl_context *ctx) { return ctx ? ctx->err : ""; }
RL_API int32_t rl_context_n_ctx(const rl_context *ctx) { return ctx ? ctx->n_cells : 0; }
RL_API const rl_model *rl_context_model(const rl_context *ctx) { return ctx ? ctx->m : NULL; }

RL_API rl_batch rl_batch_get(const rl_token *tokens, int32_t n) {
    rl_batch b = {.n_tokens = n, .token = tokens};
    return b;
}

/* ---- the cell table --------------------------------------------------------------- */

static int cmp_cell_pos(const void *a, const void *b, void *arg) {
    const int32_t *pos = arg;
    int32_t pa = pos[*(const int32_t *)a], pb = pos[*(const int32_t *)b];
    return (pa > pb) - (pa < pb);
}

/* Every sequence's list from one scan of the cell table (in cell order, then sorted by
 * position where that order is not it). */
static void rebuild_lists(rl_context *ctx) {
    const int32_t ns = ctx->p.n_seq_max, n_cells = ctx->n_cells;
    for (int32_t s = 0; s < ns; s++) ctx->seq_len[s] = 0;
    for (int32_t c = 0; c < n_cells; c++) {
        if (ctx->cell_pos[c] < 0) continue;
        for (uint64_t bits = ctx->cell_seq[c]; bits; bits &= bits - 1) {
            const int s = __builtin_ctzll(bits);
            if (s < ns) ctx->seq_cells[(size_t)s * n_cells + ctx->seq_len[s]++] = c;
        }
    }
    for (int32_t s = 0; s < ns; s++) {
        int32_t *list = ctx->seq_cells + (size_t)s * n_cells;
        bool sorted = true;
        for (int32_t j = 1; j < ctx->seq_len[s] && sorted; j++)
            sorted = ctx->cell_pos[list[j - 1]] < ctx->cell_pos[list[j]];
        if (!sorted)
            qsort_r(list, (size_t)ctx->seq_len[s], sizeof *list, cmp_cell_pos, ctx->cell_pos);
    }
    ctx->lists_ok = true;
}

/* seq_last[s] = the largest position sequence s holds, -1 when none: the position of the
 * last cell of its list. */
static void seq_pos_max_all(rl_context *ctx, int32_t *seq_last) {
    if (!ctx->lists_ok || ctx->lists_scan) rebuild_lists(ctx);
    for (int32_t s = 0; s < ctx->p.n_seq_max; s++) {
        const int32_t len = ctx->seq_len[s];
        seq_last[s] = len ? ctx->cell_pos[ctx->seq_cells[(size_t)s * ctx->n_cells + len - 1]] : -1;
    }
}

/* A free cell for (pos, seq), appended to seq's list: pos is after every position the
 * sequence holds (validate), so the list stays in position order. */
static int32_t take_cell(rl_context *ctx, int32_t pos, int32_t seq) {
    while (ctx->cell_pos[ctx->head] >= 0) ctx->head = (ctx->head + 1) % ctx->n_cells;
    int32_t c = ctx->head;
    ctx->cell_pos[c] = pos;
    ctx->cell_seq[c] = (uint64_t)1 << seq;
    ctx->n_used++;
    ctx->head = (c + 1) % ctx->n_cells;
    ctx->seq_cells[(size_t)seq * ctx->n_cells + ctx->seq_len[seq]++] = c;
    return c;
}

/* First index j of list[0..n) (sorted by position) with cell_pos[list[j]] > p. */
static int32_t upper_bound(const int32_t *list, int32_t n, const int32_t *cell_pos, int32_t p) {
    int32_t lo = 0, hi = n;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (cell_pos[list[mid]] <= p) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* The cell list of every sequence in the micro-batch, in position order, and each
 * token's spans of its list. The lists lie back to back in attn_cells, in the order the
 * tokens first name their sequences (a backend copies the part of the list its spans
 * touch: gaps between lists would be copied too, which at 64 sequences made the list 64 x
 * n_cells long). They are copies of the sequences' kept lists (seq_cells), which
 * validate brought up to date. */
static void build_spans(rl_context *ctx, int32_t n) {
    const int32_t ns = ctx->p.n_seq_max, n_cells = ctx->n_cells;
    for (int32_t s = 0; s < ns; s++) ctx->list_len[s] = -1;
    for (int32_t t = 0, at = 0; t < n; t++) {
        const int32_t s = ctx->ub_seq[t];
        if (ctx->list_len[s] >= 0) continue;
        ctx->list_len[s] = ctx->seq_len[s];
        ctx->list_base[s] = at;
        memcpy(ctx->attn_cells + at, ctx->seq_cells + (size_t)s * n_cells,
               (size_t)ctx->seq_len[s] * sizeof(int32_t));
        at += ctx->seq_len[s];
    }
    const int32_t n_swa = ctx->m->hp.n_swa;
    for (int32_t t = 0; t < n; t++) {
        int32_t s = ctx->ub_seq[t], base = ctx->list_base[s], len = ctx->list_len[s];
        const int32_t *list = ctx->attn_cells + base;
        /* a step's token is its sequence's last position: the whole list */
        int32_t hi = len > 0 && ctx->cell_pos[list[len - 1]] <= ctx->ub_pos[t]
                         ? len
                         : upper_bound(list, len, ctx->cell_pos, ctx->ub_pos[t]);
        ctx->span_full[2 * t] = base;
        ctx->span_full[2 * t + 1] = base + hi;
        if (ctx->has_swa) {
            /* visible: pos_t - cell_pos < n_swa */
            int32_t lo = upper_bound(list, len, ctx->cell_pos, ctx->ub_pos[t] - n_swa);
            ctx->span_swa[2 * t] = base + lo;
            ctx->span_swa[2 * t + 1] = base + hi;
        }
    }
}

/* ---- decode ------------------------------------------------------------------------ */

static bool wants_logits(const rl_batch *b, int32_t i) {
    return b->logits ? b->logits[i] != 0 : i == b->n_tokens - 1;
}

/* Check the whole batch against the cache before anything changes. On success seq_prev
 * holds each sequence's last position before the batch (seq_last is scratch here). */
static rl_status validate(rl_context *ctx, const rl_batch *b) {
    const int32_t n = b->n_tokens, n_vocab = ctx->m->hp.n_vocab;
    if (n <= 0) return ctx_fail(ctx, RL_ERR_INVALID_ARG, "batch: n_tokens = %d, expected >= 1", n);
    if (!b->token) return ctx_fail(ctx, RL_ERR_INVALID_ARG, "batch: token is NULL");
    seq_pos_max_all(ctx, ctx->seq_prev);
    memcpy(ctx->seq_last, ctx->seq_prev, (size_t)ctx->p.n_seq_max * sizeof(int32_t));
    int32_t n_out = 0;
    for (int32_t i = 0; i < n; i++) {
        rl_token tok = b->token[i];
        if (tok < 0 || tok >= n_vocab)
            return ctx_fail(ctx, RL_ERR_INVALID_ARG,
                            "batch token %d: id %d is out of range (n_vocab %d)", i, tok, n_vocab);
        int32_t s = b->seq_id ? b->seq_id[i] : 0;
        if (s < 0 || s >= ctx->p.n_seq_max)
            return ctx_fail(ctx, RL_ERR_INVALID_ARG,
                            "batch token %d: seq_id %d is out of range (n_seq_max %d)", i, s,
                            ctx->p.n_seq_max);
        int32_t last = ctx->seq_last[s];
        if (b->pos) {
            int32_t p = b->pos[i];
            if (p < 0 || p == INT32_MAX)
                return ctx_fail(ctx, RL_ERR_INVALID_ARG,
                                "batch token %d: position %d is out of range", i, p);
            if (p <= last)
                return ctx_fail(ctx, RL_ERR_INVALID_ARG,
                                "batch token %d: position %d of sequence %d is not after %d, "
                                "the last position it holds",
                                i, p, s, last);
            ctx->seq_last[s] = p;
        } else {
            if (last == INT32_MAX - 1)
                return ctx_fail(ctx, RL_ERR_INVALID_ARG,
                                "batch token %d: sequence %d has no position left", i, s);
            ctx->seq_last[s] = last + 1;
        }
        n_out += wants_logits(b, i);
    }
    if (n_out > ctx->p.n_outputs_max)
        return ctx_fail(ctx, RL_ERR_LIMIT,
                        "batch asks for the logits of %d tokens, more than n_outputs_max = %d",
                        n_out, ctx->p.n_outputs_max);
    int32_t n_free = ctx->n_cells - ctx->n_used;
    if (n > n_free)
        return ctx_fail(ctx, RL_ERR_LIMIT,
                        "context full: the batch has %d tokens but only %d of the %d cells "
                        "(n_ctx) are free; remove tokens with rl_kv_seq_remove or use a larger "
                        "n_ctx",
                        n, n_free, ctx->n_cells);
    return RL_OK;
}

/* The lowest index of the maximum of x[0..n) (NaN never wins; 0 when nothing is above
 * -inf): the same pick as the device backends' argmax_to_host. */
/* The first index of a row's maximum (0 when every entry is -inf), NaN entries never
 * chosen. The vector pass (the sampler's, ~6x the scalar loop, whose compare-and-keep
 * chain made a 128k vocabulary's pick take ~190 us a token) decides when the row is
 * finite; a row holding NaN or +inf takes the scalar definition. */
static int32_t argmax_row(const float *x, int32_t n) {
    bool ok = true;
    const int32_t v = rl__vargmax(x, NULL, n, &ok);
    if (ok) return v < 0 ? 0 : v;
    int32_t b = 0;
    float best = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (x[i] > best) {
            best = x[i];
            b = i;
        }
    return b;
}

/* A key no other pass of the process has (rl__fwd pass_key): 1, 2, ... */
static uint64_t next_pass_key(void) {
    static _Atomic uint64_t last;
    return atomic_fetch_add(&last, 1) + 1;
}

rl_status rl__context_forward(rl_context *ctx, const rl__pass *pass, float *logits) {
    const rl_model *m = ctx->m;
    if (pass->n_tok < 1 || pass->n_tok > ctx->p.n_batch || pass->n_out < 0 ||
        pass->n_out > RL_MIN(pass->n_tok, ctx->p.n_outputs_max) ||
        (pass->out_sample && (!pass->out_argmax || !ctx->be->ops->sample_to_host)))
        return RL_ERR_INVALID_ARG;
    ctx->arena.used = 0;
    ctx->host_arena.used = 0;
    rl__fwd f = {
        .m = m,
        .be = ctx->be,
        .arena = &ctx->arena,
        .n_tok = pass->n_tok,
        .tokens = pass->tokens,
        .pos = pass->pos,
        .kv_cells = pass->kv_cells,
        .kv = ctx->kv,
        .attn_cells = pass->attn_cells,
        .span_full = pass->span_full,
        .span_swa = pass->span_swa ? pass->span_swa : pass->span_full,
        .n_out = pass->n_out,
        .out_ids = pass->out_ids,
        .rope = ctx->rope,
        .host = &ctx->host_arena,
        .pass_key = next_pass_key(),
    };
    f.logits = rl__fwd_alloc(&f, (int64_t)pass->n_out * m->hp.n_vocab);
    rl_status st = m->arch->forward(&f);
    if (st == RL_OK) st = f.status;
    const rl_backend_ops *ops = ctx->be->ops;
    if (st == RL_OK && pass->n_out && pass->out_sample)
        st = ops->sample_to_host(ctx->be, f.logits, pass->n_out, m->hp.n_vocab, pass->out_sample,
                                 pass->sample_pen, pass->out_argmax, NULL);
    else if (st == RL_OK && pass->n_out && pass->out_argmax && ops->argmax_to_host)
        ops->argmax_to_host(ctx->be, f.logits, pass->n_out, m->hp.n_vocab, pass->out_argmax);
    else if (st == RL_OK && pass->n_out) {
        ops->to_host(ctx->be, logits, f.logits,
                     (size_t)pass->n_out * (size_t)m->hp.n_vocab * sizeof(float));
        if (pass->out_argmax)
            for (int32_t k = 0; k < pass->n_out; k++)
                pass->out_argmax[k] = argmax_row(logits + (size_t)k * m->hp.n_vocab,
                                                 m->hp.n_vocab);
    }
    if (ctx->be->ops->sync) {
        rl_status sst = ctx->be->ops->sync(ctx->be);
        if (st == RL_OK) st = sst;
    }
    return st;
}

bool rl__context_can_sample(const rl_context *ctx) {
    return ctx->be->ops->sample_to_host != NULL;
}

void rl__context_kv_copy(rl_context *ctx, const int32_t *src, const int32_t *dst, int64_t n) {
    for (int32_t il = 0; il < ctx->m->hp.n_layer; il++)
        ctx->be->ops->kv_copy(ctx->be, &ctx->kv[il], src, dst, n);
}

rl_sample_row rl__sample_row(rl_sampler *smp, int32_t pen_off, int32_t pen_n) {
    rl__sampler_device d = {.temperature = 0.0f, .top_p = 1.0f, .repeat_penalty = 1.0f};
    if (smp) rl__sampler_device_plan(smp, &d);
    return (rl_sample_row){
        .temperature = d.temperature, .top_k = d.top_k, .top_p = d.top_p, .min_p = d.min_p,
        .min_p_ln = d.min_p_ln, .min_keep = d.min_keep, .repeat_penalty = d.repeat_penalty,
        .frequency_penalty = d.frequency_penalty, .presence_penalty = d.presence_penalty,
        .pen_off = pen_off, .pen_n = pen_n,
        .u = smp && d.temperature > 0.0f ? rl__sampler_next_u(smp) : 0.0};
}

/* The device draw's parameters for n output rows from the context's sampler, in the order
 * the host would sample them; every row shares the sampler's penalty pairs (dev_pen).
 * Returns the pairs' count. */
static int32_t dev_rows(rl_context *ctx, int32_t n) {
    const int32_t np = rl__sampler_penalty_pairs(ctx->dev_smp, ctx->dev_pen);
    for (int32_t k = 0; k < n; k++) ctx->dev_rows[k] = rl__sample_row(ctx->dev_smp, 0, np);
    return np;
}

RL_API rl_status rl_decode(rl_context *ctx, const rl_batch *b) {
    if (!ctx) return RL_ERR_INVALID_ARG;
    ctx->err[0] = 0;
    ctx->n_outputs = 0;
    ctx->out_is_sampled = ctx->dev_smp != NULL;
    ctx->out_is_argmax = ctx->argmax_only && !ctx->out_is_sampled;
    if (!b) return ctx_fail(ctx, RL_ERR_INVALID_ARG, "batch is NULL");
    rl_status st = validate(ctx, b);
    if (st != RL_OK) return st;

    const rl_model *m = ctx->m;
    const int32_t n_vocab = m->hp.n_vocab;
    /* the sequences' last positions as validate took them from their lists */
    memcpy(ctx->seq_last, ctx->seq_prev, (size_t)ctx->p.n_seq_max * sizeof(int32_t));
    int32_t n_out_total = 0;
    for (int32_t b0 = 0; b0 < b->n_tokens; b0 += ctx->p.n_batch) {
        const int32_t n = RL_MIN(ctx->p.n_batch, b->n_tokens - b0);
        int32_t n_out = 0;
        for (int32_t t = 0; t < n; t++) {
            const int32_t i = b0 + t;
            const int32_t s = b->seq_id ? b->seq_id[i] : 0;
            const int32_t p = b->pos ? b->pos[i] : ctx->seq_last[s] + 1;
            ctx->seq_last[s] = p;
            ctx->ub_tok[t] = b->token[i];
            ctx->ub_pos[t] = p;
            ctx->ub_seq[t] = s;
            ctx->ub_cells[t] = take_cell(ctx, p, s);
            if (wants_logits(b, i)) {
                ctx->ub_out[n_out++] = t;
                ctx->out_batch_idx[n_out_total + n_out - 1] = i;
            }
        }
        build_spans(ctx, n);
        const int32_t n_pen = ctx->dev_smp && n_out ? dev_rows(ctx, n_out) : 0;

        rl__pass pass = {
            .n_tok = n,
            .tokens = ctx->ub_tok,
            .pos = ctx->ub_pos,
            .kv_cells = ctx->ub_cells,
            .attn_cells = ctx->attn_cells,
            .span_full = ctx->span_full,
            .span_swa = ctx->has_swa ? ctx->span_swa : ctx->span_full,
            .n_out = n_out,
            .out_ids = ctx->ub_out,
            .out_argmax = ctx->out_is_argmax || ctx->out_is_sampled ? ctx->out_argmax + n_out_total
                                                                    : NULL,
            .out_sample = ctx->out_is_sampled && n_out ? ctx->dev_rows : NULL,
            .sample_pen = n_pen ? ctx->dev_pen : NULL,
        };
        st = rl__context_forward(ctx, &pass, ctx->logits + (size_t)n_out_total * n_vocab);
        if (st != RL_OK) {
            /* take back what this call stored: its positions come after seq_prev */
            for (int32_t s = 0; s < ctx->p.n_seq_max; s++)
                rl_kv_seq_remove(ctx, s, ctx->seq_prev[s] + 1, -1);
            ctx->n_outputs = 0;
            return ctx_fail(ctx, st, "forward pass failed: %s", rl_status_str(st));
        }
        n_out_total += n_out;
        ctx->n_outputs = n_out_total;
    }
    return RL_OK;
}

/* The output row of token i of the last batch (i < 0: from the end), or -1. */
static int32_t out_row(const rl_context *ctx, int32_t i) {
    if (i < 0) {
        int32_t k = ctx->n_outputs + i;
        return k >= 0 ? k : -1;
    }
    int32_t lo = 0, hi = ctx->n_outputs;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (ctx->out_batch_idx[mid] < i) lo = mid + 1;
        else hi = mid;
    }
    return lo < ctx->n_outputs && ctx->out_batch_idx[lo] == i ? lo : -1;
}

RL_API const float *rl_get_logits(rl_context *ctx, int32_t i) {
    if (!ctx || ctx->out_is_argmax || ctx->out_is_sampled) return NULL;
    const int32_t k = out_row(ctx, i);
    return k >= 0 ? ctx->logits + (size_t)k * (size_t)ctx->m->hp.n_vocab : NULL;
}

RL_API void rl_context_set_argmax_only(rl_context *ctx, bool on) {
    if (ctx) ctx->argmax_only = on;
}

RL_API bool rl_context_set_sampler(rl_context *ctx, rl_sampler *smp) {
    if (!ctx) return false;
    ctx->dev_smp = NULL;
    rl__sampler_device d;
    if (!smp || !ctx->be->ops->sample_to_host || !rl__sampler_device_plan(smp, &d)) return false;
    const size_t nv = (size_t)ctx->m->hp.n_vocab;
    if (!ctx->dev_rows)
        ctx->dev_rows = rl__malloc((size_t)ctx->p.n_outputs_max * sizeof(rl_sample_row));
    if (!ctx->dev_pen) ctx->dev_pen = rl__malloc(2 * nv * sizeof(int32_t));
    if (!ctx->dev_rows || !ctx->dev_pen) return false;
    ctx->dev_smp = smp;
    return true;
}

RL_API rl_token rl_get_sampled(rl_context *ctx, int32_t i) {
    if (!ctx || !ctx->out_is_sampled) return -1;
    const int32_t k = out_row(ctx, i);
    return k >= 0 ? ctx->out_argmax[k] : -1;
}

RL_API rl_token rl_get_argmax(rl_context *ctx, int32_t i) {
    if (!ctx || ctx->out_is_sampled) return -1;
    const int32_t k = out_row(ctx, i);
    if (k < 0) return -1;
    if (ctx->out_is_argmax) return ctx->out_argmax[k];
    const int32_t n_vocab = ctx->m->hp.n_vocab;
    return argmax_row(ctx->logits + (size_t)k * (size_t)n_vocab, n_vocab);
}

/* ---- sequence operations ------------------------------------------------------------ */

static bool in_range(int32_t p, int32_t p0, int32_t p1) {
    return (p0 < 0 || p >= p0) && (p1 < 0 || p < p1);
}

static void free_cell(rl_context *ctx, int32_t c) {
    ctx->cell_pos[c] = -1;
    ctx->cell_seq[c] = 0;
    ctx->n_used--;
}

RL_API void rl_kv_clear(rl_context *ctx) {
    if (!ctx) return;
    for (int32_t c = 0; c < ctx->n_cells; c++) {
        ctx->cell_pos[c] = -1;
        ctx->cell_seq[c] = 0;
    }
    ctx->n_used = 0;
    ctx->head = 0;
    ctx->n_outputs = 0;
    for (int32_t s = 0; s < ctx->p.n_seq_max; s++) ctx->seq_len[s] = 0;
    ctx->lists_ok = true;
}

RL_API rl_status rl_kv_seq_remove(rl_context *ctx, int32_t seq, int32_t p0, int32_t p1) {
    if (!ctx) return RL_ERR_INVALID_ARG;
    if (seq >= ctx->p.n_seq_max)
        return ctx_fail(ctx, RL_ERR_INVALID_ARG, "seq_id %d is out of range (n_seq_max %d)", seq,
                        ctx->p.n_seq_max);
    ctx->lists_ok = false;
    for (int32_t c = 0; c < ctx->n_cells; c++) {
        if (ctx->cell_pos[c] < 0 || !in_range(ctx->cell_pos[c], p0, p1)) continue;
        if (seq < 0) ctx->cell_seq[c] = 0;
        else ctx->cell_seq[c] &= ~((uint64_t)1 << seq);
        if (!ctx->cell_seq[c]) free_cell(ctx, c);
    }
    return RL_OK;
}

RL_API rl_status rl_kv_seq_copy(rl_context *ctx, int32_t src, int32_t dst, int32_t p0,
                                int32_t p1) {
    if (!ctx) return RL_ERR_INVALID_ARG;
    if (src < 0 || src >= ctx->p.n_seq_max || dst < 0 || dst >= ctx->p.n_seq_max)
        return ctx_fail(ctx, RL_ERR_INVALID_ARG,
                        "seq_id %d or %d is out of range (n_seq_max %d)", src, dst,
                        ctx->p.n_seq_max);
    if (src == dst) return RL_OK;
    rl_kv_seq_remove(ctx, dst, p0, p1);
    ctx->lists_ok = false;
    const uint64_t sb = (uint64_t)1 << src, db = (uint64_t)1 << dst;
    for (int32_t c = 0; c < ctx->n_cells; c++)
        if (ctx->cell_pos[c] >= 0 && (ctx->cell_seq[c] & sb) && in_range(ctx->cell_pos[c], p0, p1))
            ctx->cell_seq[c] |= db;
    return RL_OK;
}

RL_API int32_t rl_kv_seq_pos_max(const rl_context *ctx, int32_t seq) {
    if (!ctx || seq < 0 || seq >= ctx->p.n_seq_max) return -1;
    int32_t best = -1;
    const uint64_t bit = (uint64_t)1 << seq;
    for (int32_t c = 0; c < ctx->n_cells; c++)
        if (ctx->cell_pos[c] >= 0 && (ctx->cell_seq[c] & bit)) best = RL_MAX(best, ctx->cell_pos[c]);
    return best;
}

RL_API int32_t rl_kv_n_used(const rl_context *ctx) { return ctx ? ctx->n_used : 0; }
