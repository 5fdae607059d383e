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

void *rl__fwd_host_alloc(rl__fwd *f, size_t bytes) {
    rl__arena *a = f->host;
    bytes = ((bytes ? bytes : 1) + 63) & ~(size_t)63;
    if (f->dry) {
        a->used += bytes;
        a->peak = RL_MAX(a->peak, a->used);
        return g_dry_buf;
    }
    if (a->used + bytes > a->size) {
        f->status = RL_ERR_INTERNAL;
        f->dry = true;
        return g_dry_buf;
    }
    void *p = a->base + a->used;
    a->used += bytes;
    a->peak = RL_MAX(a->peak, a->used);
    return p;
}

void rl__fwd_release(rl__fwd *f, size_t mark) {
    rl__arena *a = f->arena;
    if (!f->dry && a->used > mark && f->be->ops->discard)
        f->be->ops->discard(f->be, a->base + mark, a->used - mark);
    a->used = mark;
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

/* y[i] = x W_i^T (+ bias[i]) for n_w weights that read the same x (q/k/v, gate/up): one
 * backend call converting x once where the backend has matmul_multi, else one matmul each.
 * The same results either way (the biases touch only their own y[i]). */
static void linear_multi_into(rl__fwd *f, const rl_weight *const *w, const float *const *bias,
                              int n_w, const float *x, int64_t n, float *const *y) {
    const rl_backend_ops *ops = f->be->ops;
    if (f->dry || !ops->matmul_multi) {
        for (int i = 0; i < n_w; i++) linear_into(f, w[i], bias[i], x, n, y[i]);
        return;
    }
    set_status(f, ops->matmul_multi(f->be, w, n_w, x, n, y));
    for (int i = 0; i < n_w; i++)
        if (bias[i]) ops->add_row(f->be, y[i], n, w[i]->ne[1], w[i]->ne[1], bias[i]);
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
        q = rl__fwd_alloc(f, n * L->wq.ne[1]);
        k = rl__fwd_alloc(f, n * L->wk.ne[1]);
        v = rl__fwd_alloc(f, n * L->wv.ne[1]);
        const rl_weight *w[3] = {&L->wq, &L->wk, &L->wv};
        const float *b[3] = {L->bq, L->bk, L->bv};
        float *y[3] = {q, k, v};
        linear_multi_into(f, w, b, 3, h, n, y);
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
            /* the pass's cells and spans: the same in every layer of one kind */
            .cells_key = f->pass_key ? 2 * f->pass_key + (L->swa ? 1 : 0) : 0,
        };
        ops->attention(f->be, &f->kv[il], &a);
    }
    linear_into(f, &L->wo, L->bo, att, n, res);
    rl__fwd_release(f, mark);
    return res;
}

/* The weights of one gated FFN: a layer's dense FFN, one expert, or the shared expert.
 * gate->data == NULL: up is the fused [gate; up]. Biases may be NULL. */
typedef struct glu_ffn {
    const rl_weight *gate, *up, *down;
    const float *gate_b, *up_b, *down_b;
} glu_ffn;

/* y[n][down.ne[1]] = down(act(gate x) * up x), temporaries released. */
static void glu_ffn_into(rl__fwd *f, const glu_ffn *w, const float *x, int64_t n,
                         rl_glu_act act, float *y) {
    size_t mark = rl__fwd_mark(f);
    float *g;
    if (w->gate->data) {
        g = rl__fwd_alloc(f, n * w->gate->ne[1]);
        float *u = rl__fwd_alloc(f, n * w->up->ne[1]);
        const rl_weight *ws[2] = {w->gate, w->up};
        const float *b[2] = {w->gate_b, w->up_b};
        float *y[2] = {g, u};
        linear_multi_into(f, ws, b, 2, x, n, y);
        const int64_t nff = w->gate->ne[1];
        if (!f->dry) f->be->ops->glu(f->be, act, g, nff, u, nff, n, nff, g);
    } else {
        /* fused [gate; up]: the first half of each output row is the gate */
        float *gu = rl__op_linear(f, w->up, w->up_b, x, n);
        const int64_t nff = w->up->ne[1] / 2;
        g = rl__fwd_alloc(f, n * nff);
        if (!f->dry) f->be->ops->glu(f->be, act, gu, 2 * nff, gu + nff, 2 * nff, n, nff, g);
    }
    linear_into(f, w->down, w->down_b, g, n, y);
    rl__fwd_release(f, mark);
}

float *rl__blk_ffn(rl__fwd *f, int il, const float *h, int64_t n, rl_glu_act act) {
    const rl_model *m = f->m;
    const rl__layer *L = &m->layers[il];
    float *res = rl__fwd_alloc(f, n * m->hp.n_embd);
    glu_ffn w = {&L->ffn_gate, &L->ffn_up, &L->ffn_down, L->ffn_gate_b, L->ffn_up_b,
                 L->ffn_down_b};
    glu_ffn_into(f, &w, h, n, act, res);
    return res;
}

/* Routing on the host, as ggml's softmax gating computes it: per token, the softmax of
 * the router logits (maximum subtracted, expf, the sum in double, times the float
 * reciprocal), the k most probable experts (lowest index on ties), their probabilities
 * divided by their float sum (accumulated in double) when norm_w. Then the choices
 * grouped by expert (a counting sort): the tokens of expert e are ids[off[e] ..
 * off[e+1]), ascending, with weights w[...]. sel/selw: [n][k] scratch. */
static void moe_route(const float *logits, int64_t n, int n_exp, int k, bool norm_w,
                      float *prob, int32_t *sel, float *selw, int32_t *off, int32_t *ids,
                      float *w) {
    for (int e = 0; e <= n_exp; e++) off[e] = 0;
    for (int64_t t = 0; t < n; t++) {
        const float *l = logits + t * n_exp;
        float mx = -INFINITY;
        for (int e = 0; e < n_exp; e++) mx = l[e] > mx ? l[e] : mx;
        double sum = 0;
        for (int e = 0; e < n_exp; e++) {
            prob[e] = expf(l[e] - mx);
            sum += (double)prob[e];
        }
        const float inv = (float)(1.0 / sum);
        for (int e = 0; e < n_exp; e++) prob[e] *= inv;
        int32_t *s = sel + t * k;
        float *sw = selw + t * k;
        double wsum = 0;
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int e = 0; e < n_exp; e++)
                if (prob[e] != -1.0f && (best < 0 || prob[e] > prob[best])) best = e;
            s[j] = best;
            sw[j] = prob[best];
            wsum += (double)prob[best];
            prob[best] = -1.0f; /* taken */
            off[best + 1]++;
        }
        if (norm_w)
            for (int j = 0; j < k; j++) sw[j] /= (float)wsum;
    }
    for (int e = 0; e < n_exp; e++) off[e + 1] += off[e];
    /* fill in token order, so each expert's list is ascending; off[e] moves to the end
     * of e's list and is shifted back afterwards */
    for (int64_t t = 0; t < n; t++)
        for (int j = 0; j < k; j++) {
            int e = sel[t * k + j];
            ids[off[e]] = (int32_t)t;
            w[off[e]] = selw[t * k + j];
            off[e]++;
        }
    for (int e = n_exp; e > 0; e--) off[e] = off[e - 1];
    off[0] = 0;
}

float *rl__blk_moe(rl__fwd *f, int il, const float *h, int64_t n, rl_glu_act act,
                   bool norm_w) {
    const rl_model *m = f->m;
    const rl__hparams *hp = &m->hp;
    const rl__layer *L = &m->layers[il];
    const rl_backend_ops *ops = f->be->ops;
    const int64_t d = hp->n_embd;
    const int n_exp = hp->n_expert, k = hp->n_expert_used;

    float *res = rl__fwd_alloc(f, n * d);
    size_t mark = rl__fwd_mark(f), hmark = f->host->used;
    float *logits = rl__op_linear(f, &L->ffn_gate_inp, NULL, h, n); /* [n][n_exp] */
    float *xe = rl__fwd_alloc(f, n * d);                             /* an expert's rows */
    float *y = rl__fwd_alloc(f, n * d);                              /* its outputs */
    const size_t nk = (size_t)n * (size_t)k;
    float *lh = rl__fwd_host_alloc(f, (size_t)n * (size_t)n_exp * sizeof(float));
    float *prob = rl__fwd_host_alloc(f, (size_t)n_exp * sizeof(float));
    int32_t *sel = rl__fwd_host_alloc(f, nk * sizeof(int32_t));
    float *selw = rl__fwd_host_alloc(f, nk * sizeof(float));
    int32_t *off = rl__fwd_host_alloc(f, (size_t)(n_exp + 1) * sizeof(int32_t));
    int32_t *ids = rl__fwd_host_alloc(f, nk * sizeof(int32_t));
    float *w = rl__fwd_host_alloc(f, nk * sizeof(float));
    if (!f->dry) {
        ops->fill(f->be, res, n * d, 0.0f);
        ops->to_host(f->be, lh, logits, (size_t)n * (size_t)n_exp * sizeof(float));
        moe_route(lh, n, n_exp, k, norm_w, prob, sel, selw, off, ids, w);
    }
    for (int e = 0; e < n_exp; e++) {
        /* a dry run sizes the worst case once: all n tokens on one expert (the experts'
         * shapes and types are the same) */
        const int64_t c = f->dry ? n : off[e + 1] - off[e];
        if (c == 0) continue;
        rl_weight wg = rl__weight_slice(&L->ffn_gate_exps, e);
        rl_weight wu = rl__weight_slice(&L->ffn_up_exps, e);
        rl_weight wd = rl__weight_slice(&L->ffn_down_exps, e);
        glu_ffn ew = {&wg, &wu, &wd, NULL, NULL, NULL};
        if (!f->dry) ops->get_rows_f32(f->be, h, ids + off[e], c, d, xe);
        glu_ffn_into(f, &ew, xe, c, act, y);
        if (!f->dry) ops->add_rows_scaled(f->be, res, d, ids + off[e], w + off[e], c, y);
        if (f->dry) break;
    }
    if (L->ffn_up_shexp.data) {
        /* shared expert, gated per token by sigmoid(ffn_gate_inp_shexp . h) */
        float *gl = rl__op_linear(f, &L->ffn_gate_inp_shexp, NULL, h, n); /* [n][1] */
        glu_ffn sw = {&L->ffn_gate_shexp, &L->ffn_up_shexp, &L->ffn_down_shexp, NULL, NULL,
                      NULL};
        glu_ffn_into(f, &sw, h, n, act, y);
        float *gh = rl__fwd_host_alloc(f, (size_t)n * sizeof(float));
        int32_t *rows = rl__fwd_host_alloc(f, (size_t)n * sizeof(int32_t));
        if (!f->dry) {
            ops->to_host(f->be, gh, gl, (size_t)n * sizeof(float));
            for (int64_t t = 0; t < n; t++) {
                gh[t] = 1.0f / (1.0f + expf(-gh[t]));
                rows[t] = (int32_t)t;
            }
            ops->add_rows_scaled(f->be, res, d, rows, gh, n, y);
        }
    }
    f->host->used = hmark;
    rl__fwd_release(f, mark);
    return res;
}

int64_t rl__blk_select_out(rl__fwd *f, float *x, int64_t dim) {
    if (f->n_out == f->n_tok) return f->n_out;
    if (!f->dry) f->be->ops->get_rows_f32(f->be, x, f->out_ids, f->n_out, dim, x);
    return f->n_out;
}

rl_status rl__blk_decoder(rl__fwd *f, const rl__decoder_opts *o) {
    const rl_model *m = f->m;
    const rl__hparams *hp = &m->hp;
    const int64_t d = hp->n_embd;

    float *x = rl__blk_embed(f, o->embd_scale);
    for (int il = 0; il < hp->n_layer; il++) {
        const rl__layer *L = &m->layers[il];
        size_t mark = rl__fwd_mark(f);
        int64_t n = f->n_tok;
        float *h = rl__op_rmsnorm(f, x, n, d, L->attn_norm, NULL);
        float *a = rl__blk_attn(f, il, h);
        if (il == hp->n_layer - 1) {
            /* only the tokens that want logits go on */
            n = rl__blk_select_out(f, x, d);
            rl__blk_select_out(f, a, d);
        }
        if (L->post_attn_norm) rl__op_rmsnorm(f, a, n, d, L->post_attn_norm, a);
        rl__op_add(f, x, a, n * d);
        rl__op_rmsnorm(f, x, n, d, L->ffn_norm, h);
        float *y = L->ffn_gate_inp.data ? rl__blk_moe(f, il, h, n, o->act, o->moe_norm_w)
                                        : rl__blk_ffn(f, il, h, n, o->act);
        if (L->post_ffn_norm) rl__op_rmsnorm(f, y, n, d, L->post_ffn_norm, y);
        rl__op_add(f, x, y, n * d);
        rl__fwd_release(f, mark);
    }
    rl__blk_output(f, x);
    return f->status;
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
