/*
 * backend_cpu.c - the CPU implementation of the layer ops (backend.h): memory is plain
 * host memory, matmul is rl_matmul on the backend's thread pool, the element-wise ops
 * are plain C loops split over the pool when they are large enough to pay for waking it.
 * RoPE lives in rope.c, the KV cache write and attention in attention.c.
 */
#include "backend_cpu.h"
#include "q4_0x16.h"
#include "q6_kx16.h"

#include <math.h>

/* Below this many elements an element-wise op runs on the calling thread: waking the
 * pool costs a few microseconds, more than the op. */
#define RL_CPU_PAR_MIN_ELEMS (1 << 15)

static void *cpu_alloc(rl_backend *be, size_t bytes) {
    (void)be;
    return rl__aligned_alloc(64, bytes ? bytes : 64);
}

static void cpu_free(rl_backend *be, void *p) {
    (void)be;
    rl__aligned_free(p);
}

static void cpu_copy(rl_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes) memcpy(dst, src, bytes);
}

/* The bytes rl_matmul takes from the pool's scratch for n rows of activations against a
 * weight of type t with cols columns, rounded up: the activations in the vec_dot type,
 * plus their "split" form (codes, float scales and sums) for the gemv kernels. An upper
 * bound of matmul.c's own computation; test_model_context checks that a decode step
 * after the dry run allocates nothing. */
static size_t matmul_scratch_bound(rl_type t, int64_t cols, int64_t n) {
    rl_type vdt = rl_type_vec_dot_type(t);
    if (vdt == RL_TYPE_F32 || rl__fdot_get(t)) return 0; /* F16/BF16: F32 activations (cpu.h) */
    size_t xrow = 0;
    if (rl_type_row_bytes(vdt, cols, &xrow) != RL_OK) return 0;
    /* matmul.c's xs_stride: codes, offsets, scales and sums */
    size_t split = ((size_t)cols * 2 + (size_t)cols / 4 + (size_t)cols / 8 + 63) & ~(size_t)63;
    return ((xrow * (size_t)n + 63) & ~(size_t)63) + split * (size_t)n + 64;
}

static rl_status cpu_reserve_matmul(rl_backend *be, const rl_weight *w, int64_t n) {
    rl__cpu_backend *c = be->impl;
    size_t need = matmul_scratch_bound(w->type, w->ne[0], n);
    if (need && !rl__threadpool_scratch(c->pool, need)) return RL_ERR_NOMEM;
    return RL_OK;
}

static rl_status cpu_matmul(rl_backend *be, const rl_weight *w, const float *x, int64_t n,
                            float *y) {
    rl__cpu_backend *c = be->impl;
    return rl__matmul_packed(c->pool, w->type, w->data, w->packed, w->ne[1], w->ne[0], x, n, y);
}

static rl_status cpu_matmul_multi(rl_backend *be, const rl_weight *const *w, int n_w,
                                  const float *x, int64_t n, float *const *y) {
    rl__cpu_backend *c = be->impl;
    if (n_w < 0 || n_w > RL__MM_MULTI_MAX || (n_w > 0 && (!w || !y))) return RL_ERR_INVALID_ARG;
    rl__mm_weight ws[RL__MM_MULTI_MAX];
    for (int i = 0; i < n_w; i++) {
        if (w[i]->ne[0] != w[0]->ne[0]) return RL_ERR_INVALID_ARG;
        ws[i] = (rl__mm_weight){w[i]->type, w[i]->data, w[i]->packed, w[i]->ne[1], y[i]};
    }
    return n_w ? rl__matmul_multi(c->pool, ws, n_w, w[0]->ne[0], x, n) : RL_OK;
}

static void cpu_get_rows(rl_backend *be, const rl_weight *w, const int32_t *ids, int64_t n,
                         float *y) {
    (void)be;
    const rl__type_traits *tr = rl__type_traits_get(w->type);
    const int64_t dim = w->ne[0];
    for (int64_t t = 0; t < n; t++) {
        if (w->packed && w->type == RL_TYPE_Q6_K) { /* q6_kx16.h */
            rl__q6_kx16_to_float(w->packed, dim, w->ne[1], ids[t], y + t * dim);
            continue;
        }
        if (w->packed) { /* the file's pages of a packed weight are released (repack.c) */
            size_t stride;
            const uint8_t *row = rl__q4_0x16_row(w->packed, dim, w->ne[1], ids[t], &stride);
            rl__q4_0x16_to_float(row, stride, y + t * dim, dim);
            continue;
        }
        const uint8_t *row = (const uint8_t *)w->data + (size_t)ids[t] * w->row_bytes;
        if (w->type == RL_TYPE_F32) memcpy(y + t * dim, row, (size_t)dim * sizeof(float));
        else tr->to_float(row, y + t * dim, dim);
    }
}

/* ---- row-parallel helper: fn(ctx, r0, r1) over row ranges of about equal size ---- */
typedef void (*rows_fn)(void *ctx, int64_t r0, int64_t r1);
typedef struct rows_job {
    rows_fn fn;
    void *ctx;
    int64_t n;
} rows_job;

static void rows_task(void *p, int ith, int nth) {
    rows_job *j = p;
    int64_t per = (j->n + nth - 1) / nth;
    int64_t r0 = per * ith, r1 = RL_MIN(r0 + per, j->n);
    if (r0 < r1) j->fn(j->ctx, r0, r1);
}

void rl__cpu_par_rows(rl__cpu_backend *c, int64_t n, int64_t elems_per_row, rows_fn fn,
                      void *ctx) {
    if (n <= 1 || n * elems_per_row < RL_CPU_PAR_MIN_ELEMS ||
        rl_threadpool_n_threads(c->pool) == 1) {
        fn(ctx, 0, n);
        return;
    }
    rows_job j = {fn, ctx, n};
    rl__threadpool_run(c->pool, rows_task, &j);
}

/* ---- RMSNorm: y = x / sqrt(mean(x^2) + eps) * w. The sum of squares is kept in double
 * and the scale applied in float, then the weight in a second rounding, as ggml's
 * rms_norm followed by mul. ---- */
typedef struct norm_ctx {
    const float *x, *w;
    float *y;
    int64_t dim;
    float eps;
    bool avx512; /* act_avx512.c's row */
} norm_ctx;

static void norm_rows(void *p, int64_t r0, int64_t r1) {
    norm_ctx *c = p;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = c->x + r * c->dim;
        float *y = c->y + r * c->dim;
        if (c->avx512) {
            rl__rmsnorm_row_avx512(x, c->w, y, c->dim, c->eps);
            continue;
        }
        double ss = 0;
        for (int64_t i = 0; i < c->dim; i++) ss += (double)x[i] * (double)x[i];
        float mean = (float)(ss / (double)c->dim);
        float sc = 1.0f / sqrtf(mean + c->eps);
        if (c->w)
            for (int64_t i = 0; i < c->dim; i++) y[i] = (x[i] * sc) * c->w[i];
        else
            for (int64_t i = 0; i < c->dim; i++) y[i] = x[i] * sc;
    }
}

static void cpu_rmsnorm(rl_backend *be, const float *x, int64_t n, int64_t dim, float eps,
                        const float *w, float *y) {
    norm_ctx c = {x, w, y, dim, eps, rl_cpu_isa_active() >= RL_CPU_ISA_AVX512};
    rl__cpu_par_rows(be->impl, n, dim, norm_rows, &c);
}

/* ---- element-wise ---- */
typedef struct ew_ctx {
    float *x;
    const float *y;
    int64_t dim, ld;
    float s;
} ew_ctx;

static void add_row_rows(void *p, int64_t r0, int64_t r1) {
    ew_ctx *c = p;
    for (int64_t r = r0; r < r1; r++) {
        float *x = c->x + r * c->ld;
        for (int64_t i = 0; i < c->dim; i++) x[i] += c->y[i];
    }
}

static void cpu_add_row(rl_backend *be, float *x, int64_t n, int64_t dim, int64_t ld,
                        const float *b) {
    ew_ctx c = {.x = x, .y = b, .dim = dim, .ld = ld};
    rl__cpu_par_rows(be->impl, n, dim, add_row_rows, &c);
}

/* Flat ops split into rows of 4096 elements for the row helper. */
#define FLAT_ROW 4096

static void add_rows(void *p, int64_t r0, int64_t r1) {
    ew_ctx *c = p;
    int64_t i1 = RL_MIN(r1 * FLAT_ROW, c->dim);
    for (int64_t i = r0 * FLAT_ROW; i < i1; i++) c->x[i] += c->y[i];
}

static void cpu_add(rl_backend *be, float *x, const float *y, int64_t n) {
    ew_ctx c = {.x = x, .y = y, .dim = n};
    rl__cpu_par_rows(be->impl, (n + FLAT_ROW - 1) / FLAT_ROW, FLAT_ROW, add_rows, &c);
}

static void scale_rows(void *p, int64_t r0, int64_t r1) {
    ew_ctx *c = p;
    int64_t i1 = RL_MIN(r1 * FLAT_ROW, c->dim);
    for (int64_t i = r0 * FLAT_ROW; i < i1; i++) c->x[i] *= c->s;
}

static void cpu_scale(rl_backend *be, float *x, int64_t n, float s) {
    ew_ctx c = {.x = x, .dim = n, .s = s};
    rl__cpu_par_rows(be->impl, (n + FLAT_ROW - 1) / FLAT_ROW, FLAT_ROW, scale_rows, &c);
}

static void softcap_rows(void *p, int64_t r0, int64_t r1) {
    ew_ctx *c = p;
    int64_t i1 = RL_MIN(r1 * FLAT_ROW, c->dim);
    for (int64_t i = r0 * FLAT_ROW; i < i1; i++) c->x[i] = tanhf(c->x[i] / c->s) * c->s;
}

static void cpu_softcap(rl_backend *be, float *x, int64_t n, float cap) {
    ew_ctx c = {.x = x, .dim = n, .s = cap};
    rl__cpu_par_rows(be->impl, (n + FLAT_ROW - 1) / FLAT_ROW, FLAT_ROW, softcap_rows, &c);
}

/* ---- gated activations ---- */
typedef struct glu_ctx {
    rl_glu_act act;
    const float *g, *u;
    int64_t ld_g, ld_u, dim;
    float *out;
    bool avx512; /* act_avx512.c's SwiGLU row */
} glu_ctx;

/* SiLU x * sigmoid(x) = x / (1 + e^-x), as ggml_silu_f32. GELU with the tanh
 * approximation 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) evaluated exactly in
 * float (ggml-cpu reads it from an fp16 table instead). */
static void glu_rows(void *p, int64_t r0, int64_t r1) {
    glu_ctx *c = p;
    const float k0 = 0.7978845608028654f, k1 = 0.044715f;
    for (int64_t r = r0; r < r1; r++) {
        const float *g = c->g + r * c->ld_g, *u = c->u + r * c->ld_u;
        float *o = c->out + r * c->dim;
        if (c->act == RL_GLU_SILU && c->avx512) {
            rl__silu_mul_avx512(g, u, o, c->dim);
        } else if (c->act == RL_GLU_SILU) {
            for (int64_t i = 0; i < c->dim; i++) o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
        } else {
            for (int64_t i = 0; i < c->dim; i++) {
                float x = g[i];
                float ge = 0.5f * x * (1.0f + tanhf(k0 * x * (1.0f + k1 * x * x)));
                o[i] = ge * u[i];
            }
        }
    }
}

static void cpu_glu(rl_backend *be, rl_glu_act act, const float *gate, int64_t ld_g,
                    const float *up, int64_t ld_u, int64_t n, int64_t dim, float *out) {
    glu_ctx c = {act, gate, up, ld_g, ld_u, dim, out, rl_cpu_isa_active() >= RL_CPU_ISA_AVX512};
    rl__cpu_par_rows(be->impl, n, dim, glu_rows, &c);
}

static void cpu_get_rows_f32(rl_backend *be, const float *src, const int32_t *ids, int64_t n,
                             int64_t dim, float *dst) {
    (void)be;
    for (int64_t t = 0; t < n; t++) {
        const float *s = src + (int64_t)ids[t] * dim;
        float *d = dst + t * dim;
        if (s != d) memmove(d, s, (size_t)dim * sizeof(float));
    }
}

static void cpu_kv_copy(rl_backend *be, const rl_kv_layer *kv, const int32_t *src,
                        const int32_t *dst, int64_t n) {
    (void)be;
    for (int64_t i = 0; i < n; i++) {
        uint8_t *k = kv->k, *v = kv->v;
        memcpy(k + (size_t)dst[i] * kv->k_row_bytes, k + (size_t)src[i] * kv->k_row_bytes,
               kv->k_row_bytes);
        memcpy(v + (size_t)dst[i] * kv->v_row_bytes, v + (size_t)src[i] * kv->v_row_bytes,
               kv->v_row_bytes);
    }
}

static void fill_rows(void *p, int64_t r0, int64_t r1) {
    ew_ctx *c = p;
    int64_t i1 = RL_MIN(r1 * FLAT_ROW, c->dim);
    for (int64_t i = r0 * FLAT_ROW; i < i1; i++) c->x[i] = c->s;
}

static void cpu_fill(rl_backend *be, float *x, int64_t n, float v) {
    ew_ctx c = {.x = x, .dim = n, .s = v};
    rl__cpu_par_rows(be->impl, (n + FLAT_ROW - 1) / FLAT_ROW, FLAT_ROW, fill_rows, &c);
}

/* ---- MoE combine: x[ids[t]] += w[t] * y[t], the product rounded before the sum as
 * ggml's mul then add. The ids of one call are distinct, so rows split freely. ---- */
typedef struct scatter_ctx {
    float *x;
    const float *y, *w;
    const int32_t *ids;
    int64_t dim;
} scatter_ctx;

static void scatter_rows(void *p, int64_t r0, int64_t r1) {
    scatter_ctx *c = p;
    for (int64_t t = r0; t < r1; t++) {
        float *x = c->x + (int64_t)c->ids[t] * c->dim;
        const float *y = c->y + t * c->dim;
        const float w = c->w[t];
        for (int64_t i = 0; i < c->dim; i++) x[i] += y[i] * w;
    }
}

static void cpu_add_rows_scaled(rl_backend *be, float *x, int64_t dim, const int32_t *ids,
                                const float *w, int64_t n, const float *y) {
    scatter_ctx c = {x, y, w, ids, dim};
    rl__cpu_par_rows(be->impl, n, dim, scatter_rows, &c);
}

static void cpu_destroy(rl_backend *be) {
    if (!be) return;
    rl__cpu_backend *c = be->impl;
    rl_threadpool_free(c->pool);
    rl__free(c);
    rl__free(be);
}

/* Greedy picks without copying the logits: the context otherwise copies n rows of the
 * vocabulary (4 MiB for 8 rows of 128k) and scans them in scalar code. Same pick as
 * context.c's argmax_row on every path. */
static void cpu_argmax_to_host(rl_backend *be, const float *x, int64_t n, int64_t dim,
                               int32_t *ids) {
    (void)be;
    const bool avx512 = rl_cpu_isa_active() >= RL_CPU_ISA_AVX512;
    for (int64_t t = 0; t < n; t++) {
        const float *r = x + t * dim;
        if (avx512) {
            ids[t] = rl__argmax_avx512(r, dim);
            continue;
        }
        int32_t b = 0;
        float best = -INFINITY;
        for (int64_t i = 0; i < dim; i++)
            if (r[i] > best) {
                best = r[i];
                b = (int32_t)i;
            }
        ids[t] = b;
    }
}

static const rl_backend_ops k_cpu_ops = {
    .version = RL_BACKEND_OPS_VERSION,
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_host = cpu_copy,
    .from_host = cpu_copy,
    .reserve_matmul = cpu_reserve_matmul,
    .matmul = cpu_matmul,
    .get_rows = cpu_get_rows,
    .rmsnorm = cpu_rmsnorm,
    .rope = rl__cpu_rope,
    .add_row = cpu_add_row,
    .add = cpu_add,
    .scale = cpu_scale,
    .softcap = cpu_softcap,
    .glu = cpu_glu,
    .get_rows_f32 = cpu_get_rows_f32,
    .kv_write = rl__cpu_kv_write,
    .attention = rl__cpu_attention,
    .kv_copy = cpu_kv_copy,
    .fill = cpu_fill,
    .add_rows_scaled = cpu_add_rows_scaled,
    .argmax_to_host = cpu_argmax_to_host,
    .matmul_multi = cpu_matmul_multi,
};

rl_status rl__backend_cpu_create(int n_threads, rl_backend **out) {
    *out = NULL;
    rl_backend *be = rl__calloc(1, sizeof *be);
    if (!be) goto fail_be;
    rl__cpu_backend *c = rl__calloc(1, sizeof *c);
    if (!c) goto fail_impl;
    rl_status st = rl_threadpool_create(n_threads, &c->pool);
    if (st != RL_OK) {
        rl__free(c);
        rl__free(be);
        return st;
    }
    be->ops = &k_cpu_ops;
    be->impl = c;
    *out = be;
    return RL_OK;

fail_impl:
    rl__free(be);
fail_be:
    return RL_ERR_NOMEM;
}

rl_threadpool *rl__backend_cpu_pool(rl_backend *be) {
    return ((rl__cpu_backend *)be->impl)->pool;
}
