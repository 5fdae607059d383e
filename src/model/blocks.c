/*
 * blocks.c - the pieces every architecture's forward pass is assembled from: the arena,
 * op wrappers that skip work in a dry run, and the shared blocks (embedding, attention,
 * gated FFN, output head). The blocks read the layer's tensors to decide what to do
 * (fused or separate projections, biases, q/k norms), so the architectures differ only
 * in the order they call them and in a few parameters.
 *
 * Memory discipline: a block allocates its result first, then its temporaries, and
 * releases the temporaries before returning, so the arena's high-water mark is one
 * block's working set plus the live results (the residual stream).
 */
#include "model.h"

#include <math.h>

/* What a dry run hands out instead of memory: never read or written (ops are skipped). */
static float g_dry_buf[16] __attribute__((aligned(64)));

float *rl__fwd_alloc(rl__fwd *f, int64_t n) {
    rl__arena *a = f->arena;
    size_t bytes = ((size_t)(n > 0 ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
    if (f->dry) {
        a->used += bytes;
        a->peak = RL_MAX(a->peak, a->used);
        return g_dry_buf;
    }
    if (a->used + bytes > a->size) {
        /* cannot happen after a correct dry run; refuse the pass instead of overrunning */
        f->status = RL_ERR_INTERNAL;
        f->dry = true;
        return g_dry_buf;
    }
    float *p = (float *)(a->base + a->used);
    a->used += bytes;
    a->peak = RL_MAX(a->peak, a->used);
    return p;
}

static void set_status(rl__fwd *f, rl_status st) {
    if (st != RL_OK && f->status == RL_OK) f->status = st;
}

/* y = x W^T (+ bias) into y. */
static void linear_into(rl__fwd *f, const rl_weight *w, const float *bias, const float *x,
                        int64_t n, float *y) {
    if (f->dry) {
        set_status(f, f->be->ops->reserve_matmul(f->be, w, n));
        return;
    }
    set_status(f, f->be->ops->matmul(f->be, w, x, n, y));
    if (bias) f->be->ops->add_row(f->be, y, n, w->ne[1], w->ne[1], bias);
}

float *rl__op_linear(rl__fwd *f, const rl_weight *w, const float *bias, const float *x,
                     int64_t n) {
    float *y = rl__fwd_alloc(f, n * w->ne[1]);
    linear_into(f, w, bias, x, n, y);
    return y;
}

float *rl__op_rmsnorm(rl__fwd *f, const float *x, int64_t n, int64_t dim, const float *w,
                      float *y) {
    if (!y) y = rl__fwd_alloc(f, n * dim);
    if (!f->dry) f->be->ops->rmsnorm(f->be, x, n, dim, f->m->hp.norm_rms_eps, w, y);
    return y;
}

void rl__op_add(rl__fwd *f, float *x, const float *y, int64_t n) {
    if (!f->dry) f->be->ops->add(f->be, x, y, n);
}

void rl__op_scale(rl__fwd *f, float *x, int64_t n, float s) {
    if (!f->dry) f->be->ops->scale(f->be, x, n, s);
}

void rl__op_softcap(rl__fwd *f, float *x, int64_t n, float cap) {
    if (!f->dry) f->be->ops->softcap(f->be, x, n, cap);
}

/* ---- blocks ---------------------------------------------------------------------- */

float *rl__blk_embed(rl__fwd *f, float scale) {
    const rl_model *m = f->m;
    float *x = rl__fwd_alloc(f, (int64_t)f->n_tok * m->hp.n_embd);
    if (!f->dry) f->be->ops->get_rows(f->be, &m->tok_embd, f->tokens, f->n_tok, x);
    if (scale != 0.0f) rl__op_scale(f, x, (int64_t)f->n_tok * m->hp.n_embd, scale);
    return x;
}

float *rl__blk_attn(rl__fwd *f, int il, const float *h) {
    const rl_model *m = f->m;
    const rl__hparams *hp = &m->hp;
    const rl__layer *L = &m->layers[il];
    const rl_backend_ops *ops = f->be->ops;
    const int64_t n = f->n_tok;
    const int64_t nq = (int64_t)hp->n_head * hp->head_dim_k;
    const int64_t nk = (int64_t)hp->n_head_kv * hp->head_dim_k;
    const int64_t nv = (int64_t)hp->n_head_kv * hp->head_dim_v;
    const int64_t no = (int64_t)hp->n_head * hp->head_dim_v;

    float *res = rl__fwd_alloc(f, n * hp->n_embd);
    size_t mark = rl__fwd_mark(f);

    float *q, *k, *v;
    int64_t ld_q, ld_k, ld_v;
    if (L->wqkv.data) {
        q = rl__op_linear(f, &L->wqkv, L->bqkv, h, n);
        k = q + nq;
        v = q + nq + nk;
        ld_q = ld_k = ld_v = nq + nk + nv;
    } else {
        q = rl__op_linear(f, &L->wq, L->bq, h, n);
        k = rl__op_linear(f, &L->wk, L->bk, h, n);
        v = rl__op_linear(f, &L->wv, L->bv, h, n);
        ld_q = nq;
        ld_k = nk;
        ld_v = nv;
    }
    if (!f->dry) {
        /* per-head RMSNorm of q and k (qwen3), on dense rows of head_dim */
        if (L->q_norm)
            ops->rmsnorm(f->be, q, n * hp->n_head, hp->head_dim_k, hp->norm_rms_eps, L->q_norm, q);
        if (L->k_norm)
            ops->rmsnorm(f->be, k, n * hp->n_head_kv, hp->head_dim_k, hp->norm_rms_eps, L->k_norm,
                         k);
        ops->rope(f->be, q, n, ld_q, hp->n_head, hp->head_dim_k, f->pos, &f->rope[il]);
        ops->rope(f->be, k, n, ld_k, hp->n_head_kv, hp->head_dim_k, f->pos, &f->rope[il]);
        ops->kv_write(f->be, &f->kv[il], k, ld_k, v, ld_v, n, f->kv_cells);
    }

    float *att = rl__fwd_alloc(f, n * no);
    if (!f->dry) {
        rl_attn_args a = {
            .n_tok = (int32_t)n,
            .n_head = hp->n_head,
            .n_head_kv = hp->n_head_kv,
            .head_dim_k = hp->head_dim_k,
            .head_dim_v = hp->head_dim_v,
            .q = q,
            .q_ld = ld_q,
            .out = att,
            .out_ld = no,
            .cells = f->attn_cells,
            .span = L->swa ? f->span_swa : f->span_full,
            .scale = hp->kq_scale != 0.0f ? hp->kq_scale : 1.0f / sqrtf((float)hp->head_dim_k),
            .softcap = hp->attn_softcap,
        };
        ops->attention(f->be, &f->kv[il], &a);
    }
    linear_into(f, &L->wo, L->bo, att, n, res);
    rl__fwd_release(f, mark);
    return res;
}

float *rl__blk_ffn(rl__fwd *f, int il, const float *h, int64_t n, rl_glu_act act) {
    const rl_model *m = f->m;
    const rl__hparams *hp = &m->hp;
    const rl__layer *L = &m->layers[il];
    float *res = rl__fwd_alloc(f, n * hp->n_embd);
    size_t mark = rl__fwd_mark(f);
    float *g;
    if (L->ffn_gate.data) {
        g = rl__op_linear(f, &L->ffn_gate, L->ffn_gate_b, h, n);
        float *u = rl__op_linear(f, &L->ffn_up, L->ffn_up_b, h, n);
        const int64_t nff = L->ffn_gate.ne[1];
        if (!f->dry) f->be->ops->glu(f->be, act, g, nff, u, nff, n, nff, g);
    } else {
        /* fused [gate; up]: the first half of each output row is the gate */
        float *gu = rl__op_linear(f, &L->ffn_up, L->ffn_up_b, h, n);
        const int64_t nff = L->ffn_up.ne[1] / 2;
        g = rl__fwd_alloc(f, n * nff);
        if (!f->dry) f->be->ops->glu(f->be, act, gu, 2 * nff, gu + nff, 2 * nff, n, nff, g);
    }
    linear_into(f, &L->ffn_down, L->ffn_down_b, g, n, res);
    rl__fwd_release(f, mark);
    return res;
}

int64_t rl__blk_select_out(rl__fwd *f, float *x, int64_t dim) {
    if (f->n_out == f->n_tok) return f->n_out;
    if (!f->dry) f->be->ops->get_rows_f32(f->be, x, f->out_ids, f->n_out, dim, x);
    return f->n_out;
}

void rl__blk_output(rl__fwd *f, const float *x) {
    const rl_model *m = f->m;
    const int64_t n = f->n_out;
    if (n == 0) return;
    size_t mark = rl__fwd_mark(f);
    float *h = rl__op_rmsnorm(f, x, n, m->hp.n_embd, m->output_norm, NULL);
    linear_into(f, &m->output, NULL, h, n, f->logits);
    if (m->hp.final_softcap != 0.0f)
        rl__op_softcap(f, f->logits, n * m->hp.n_vocab, m->hp.final_softcap);
    rl__fwd_release(f, mark);
}
