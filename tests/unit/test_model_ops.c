/* The CPU backend's layer ops (backend.h) against plain double-precision references, on
 * every ISA path: attention over scattered cells with spans (GQA, MQA, softcap, every KV
 * type, empty spans), the KV write's conversions, RoPE in both orders with frequency
 * factors and linear / YaRN scaling, RMSNorm, the gated activations, row gathers, and the
 * mixture-of-experts ops (fill, scaled scatter-add of expert rows). */
#include "backend/backend.h"
#include "backend/cpu/backend_cpu.h"
#include "test.h"
#include "rng.h"

static uint64_t g_rng = 0x5eedf00d12345ull;
static uint64_t rnd64(void) { return rl_test_rand64(&g_rng); }
static float rnd(void) { return (float)rl_test_rand_unit(&g_rng) * 2.0f - 1.0f; }

static rl_backend *backend(void) {
    rl_backend *be = NULL;
    CHECK(rl__backend_cpu_create(2, &be) == RL_OK);
    return be;
}

/* ---- attention ------------------------------------------------------------------------ */

typedef struct attn_case {
    int n_head, n_head_kv, hd;
    rl_type kv;
    float softcap;
} attn_case;

static void attn_case_run(rl_backend *be, const attn_case *c) {
    const int n_cells = 150, n_tok = 9;
    const int n_embd_kv = c->n_head_kv * c->hd;
    rl_kv_layer kv = {.type = c->kv, .n_embd_k = n_embd_kv, .n_embd_v = n_embd_kv};
    rl_type_row_bytes(c->kv, n_embd_kv, &kv.k_row_bytes);
    kv.v_row_bytes = kv.k_row_bytes;
    kv.k = be->ops->alloc(be, kv.k_row_bytes * n_cells);
    kv.v = be->ops->alloc(be, kv.v_row_bytes * n_cells);
    /* write every cell through the op, in a scattered order */
    float *k = malloc(sizeof(float) * (size_t)(n_cells * n_embd_kv));
    float *v = malloc(sizeof(float) * (size_t)(n_cells * n_embd_kv));
    for (int i = 0; i < n_cells * n_embd_kv; i++) {
        k[i] = rnd() * 2.0f;
        v[i] = rnd();
    }
    int32_t order[150];
    for (int i = 0; i < n_cells; i++) order[i] = (i * 37) % n_cells;
    be->ops->kv_write(be, &kv, k, n_embd_kv, v, n_embd_kv, n_cells, order);
    /* the stored values, as float: the reference attends over exactly these */
    float *ks = malloc(sizeof(float) * (size_t)(n_cells * n_embd_kv));
    float *vs = malloc(sizeof(float) * (size_t)(n_cells * n_embd_kv));
    const rl__type_traits *tr = rl__type_traits_get(c->kv);
    for (int i = 0; i < n_cells; i++) {
        int cell = order[i];
        const uint8_t *kr = (const uint8_t *)kv.k + (size_t)cell * kv.k_row_bytes;
        const uint8_t *vr = (const uint8_t *)kv.v + (size_t)cell * kv.v_row_bytes;
        if (c->kv == RL_TYPE_F32) {
            memcpy(ks + (size_t)i * n_embd_kv, kr, sizeof(float) * (size_t)n_embd_kv);
            memcpy(vs + (size_t)i * n_embd_kv, vr, sizeof(float) * (size_t)n_embd_kv);
        } else {
            tr->to_float(kr, ks + (size_t)i * n_embd_kv, n_embd_kv);
            tr->to_float(vr, vs + (size_t)i * n_embd_kv, n_embd_kv);
        }
        /* the conversion is the reference one, byte for byte */
        uint8_t want[4096];
        if (c->kv != RL_TYPE_F32) {
            tr->from_float(k + (size_t)i * n_embd_kv, want, n_embd_kv, NULL);
            CHECK(!memcmp(want, kr, kv.k_row_bytes));
        } else {
            CHECK(!memcmp(k + (size_t)i * n_embd_kv, kr, kv.k_row_bytes));
        }
    }
    /* cells[] lists the cells in write order (i.e. stored row i is cells[i]); spans */
    int32_t span[2 * 9];
    for (int t = 0; t < n_tok; t++) {
        int a = (int)(rnd64() % n_cells), b = (int)(rnd64() % n_cells);
        if (a > b) {
            int x = a;
            a = b;
            b = x;
        }
        if (t == 0) b = a; /* empty */
        if (t == 1) {
            a = 0;
            b = n_cells;
        }
        span[2 * t] = a;
        span[2 * t + 1] = b;
    }
    const int nq = c->n_head * c->hd;
    float *q = malloc(sizeof(float) * (size_t)(n_tok * nq));
    float *out = malloc(sizeof(float) * (size_t)(n_tok * nq));
    for (int i = 0; i < n_tok * nq; i++) q[i] = rnd();
    rl_attn_args a = {.n_tok = n_tok, .n_head = c->n_head, .n_head_kv = c->n_head_kv,
                      .head_dim_k = c->hd, .head_dim_v = c->hd, .q = q, .q_ld = nq, .out = out,
                      .out_ld = nq, .cells = order, .span = span,
                      .scale = 1.0f / sqrtf((float)c->hd), .softcap = c->softcap};
    be->ops->attention(be, &kv, &a);

    double max_err = 0;
    const int n_gqa = c->n_head / c->n_head_kv;
    double *p = malloc(sizeof(double) * n_cells);
    for (int t = 0; t < n_tok; t++) {
        for (int h = 0; h < c->n_head; h++) {
            const int g = h / n_gqa;
            const float *qh = q + (size_t)t * nq + (size_t)h * c->hd;
            double mx = -INFINITY, sum = 0;
            for (int j = span[2 * t]; j < span[2 * t + 1]; j++) {
                const float *kr = ks + (size_t)j * n_embd_kv + (size_t)g * c->hd;
                double s = 0;
                for (int d = 0; d < c->hd; d++) s += (double)qh[d] * kr[d];
                s *= a.scale;
                if (c->softcap > 0) s = c->softcap * tanh(s / c->softcap);
                p[j] = s;
                if (s > mx) mx = s;
            }
            for (int j = span[2 * t]; j < span[2 * t + 1]; j++) sum += (p[j] = exp(p[j] - mx));
            for (int d = 0; d < c->hd; d++) {
                double o = 0;
                for (int j = span[2 * t]; j < span[2 * t + 1]; j++)
                    o += p[j] * vs[(size_t)j * n_embd_kv + (size_t)g * c->hd + d];
                if (sum > 0) o /= sum;
                double e = fabs(o - out[(size_t)t * nq + (size_t)h * c->hd + d]);
                if (!(e <= max_err)) max_err = e;
            }
        }
    }
    CHECKF(max_err < 2e-6, "attention %d/%d heads of %d, kv %s, softcap %g: max error %.3g",
           c->n_head, c->n_head_kv, c->hd, rl_type_name(c->kv), c->softcap, max_err);
    free(p);
    free(q);
    free(out);
    free(k);
    free(v);
    free(ks);
    free(vs);
    be->ops->free(be, kv.k);
    be->ops->free(be, kv.v);
}

TEST(attention_vs_reference) {
    static const attn_case cases[] = {
        {8, 2, 64, RL_TYPE_F32, 0},  {8, 2, 64, RL_TYPE_F16, 0},   {8, 2, 64, RL_TYPE_Q8_0, 0},
        {4, 1, 40, RL_TYPE_F32, 0},  {4, 1, 40, RL_TYPE_F16, 30},  {6, 6, 8, RL_TYPE_F32, 0},
        {20, 1, 32, RL_TYPE_Q8_0, 0}, {16, 2, 128, RL_TYPE_F16, 5},
    };
    const rl_cpu_isa best = rl_cpu_isa_active();
    rl_backend *be = backend();
    for (int isa = 0; isa < RL_CPU_ISA_COUNT; isa++) {
        if (rl_cpu_isa_set((rl_cpu_isa)isa) != RL_OK) continue;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) attn_case_run(be, &cases[i]);
    }
    rl_cpu_isa_set(best);
    rl__backend_free(be);
}

/* ---- RoPE ---------------------------------------------------------------------------- */

/* The angle and magnitude of pair i at position pos, in double, from the definitions:
 * theta = pos * base^(-2i/n) / ff_i; YaRN mixes theta * scale and theta with a ramp over
 * the dims whose wavelength turns beta_slow..beta_fast times in the original context. */
static void rope_ref(const rl_rope_params *p, int pos, int i, double *cs, double *sn) {
    double theta = pos * pow(p->freq_base, -2.0 * i / p->n_rot);
    if (p->freq_factors) theta /= p->freq_factors[i];
    double th = theta * p->freq_scale, m = p->attn_factor;
    if (p->ext_factor != 0) {
        double dim_fast = p->n_rot * log(p->n_ctx_orig / (p->beta_fast * 2 * M_PI)) /
                          (2 * log(p->freq_base));
        double dim_slow = p->n_rot * log(p->n_ctx_orig / (p->beta_slow * 2 * M_PI)) /
                          (2 * log(p->freq_base));
        double lo = fmax(0, floor(dim_fast)), hi = fmin(p->n_rot - 1, ceil(dim_slow));
        double y = (i - lo) / fmax(0.001, hi - lo);
        double ramp = (1 - fmin(1, fmax(0, y))) * p->ext_factor;
        th = th * (1 - ramp) + theta * ramp;
        m *= 1 + 0.1 * log(1 / p->freq_scale);
    }
    *cs = cos(th) * m;
    *sn = sin(th) * m;
}

TEST(rope_vs_reference) {
    static float ff[64];
    for (int i = 0; i < 64; i++) ff[i] = 1.0f + (float)i / 8.0f;
    const rl_rope_params cases[] = {
        {.n_rot = 64, .mode = RL_ROPE_NORMAL, .n_ctx_orig = 4096, .freq_base = 10000,
         .freq_scale = 1, .attn_factor = 1, .beta_fast = 32, .beta_slow = 1},
        {.n_rot = 64, .mode = RL_ROPE_NEOX, .n_ctx_orig = 4096, .freq_base = 500000,
         .freq_scale = 0.5f, .attn_factor = 1, .beta_fast = 32, .beta_slow = 1},
        {.n_rot = 32, .mode = RL_ROPE_NORMAL, .n_ctx_orig = 8192, .freq_base = 500000,
         .freq_scale = 1, .attn_factor = 1, .beta_fast = 32, .beta_slow = 1,
         .freq_factors = ff},
        {.n_rot = 64, .mode = RL_ROPE_NEOX, .n_ctx_orig = 32768, .freq_base = 1000000,
         .freq_scale = 0.25f, .ext_factor = 1, .attn_factor = 1, .beta_fast = 32,
         .beta_slow = 1},
        {.n_rot = 48, .mode = RL_ROPE_NEOX, .n_ctx_orig = 256, .freq_base = 10000,
         .freq_scale = 1, .attn_factor = 1.224745f, .beta_fast = 32, .beta_slow = 1,
         .freq_factors = ff},
    };
    rl_backend *be = backend();
    const int n_head = 3, hd = 64, n = 5;
    const int32_t pos[5] = {0, 1, 7, 40, 99};
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const rl_rope_params *p = &cases[ci];
        float x[5 * 3 * 64 + 8], y[5 * 3 * 64 + 8];
        const int ld = n_head * hd + 8; /* a strided view */
        for (int i = 0; i < n * ld && i < (int)(sizeof x / sizeof x[0]); i++) x[i] = rnd();
        memcpy(y, x, sizeof x);
        be->ops->rope(be, y, n - 1, ld, n_head, hd, pos, p);
        /* n - 1 rows of stride ld fit the buffer; the last row of x is untouched */
        double max_err = 0;
        for (int t = 0; t < n - 1; t++)
            for (int h = 0; h < n_head; h++) {
                const float *xr = x + t * ld + h * hd;
                const float *yr = y + t * ld + h * hd;
                for (int i = 0; i < p->n_rot / 2; i++) {
                    double cs, sn;
                    rope_ref(p, pos[t], i, &cs, &sn);
                    int i0 = p->mode == RL_ROPE_NEOX ? i : 2 * i;
                    int i1 = p->mode == RL_ROPE_NEOX ? i + p->n_rot / 2 : 2 * i + 1;
                    double e0 = fabs(xr[i0] * cs - xr[i1] * sn - yr[i0]);
                    double e1 = fabs(xr[i0] * sn + xr[i1] * cs - yr[i1]);
                    max_err = fmax(max_err, fmax(e0, e1));
                }
                for (int i = p->n_rot; i < hd; i++) CHECK(xr[i] == yr[i]);
            }
        CHECKF(max_err < 5e-5, "rope case %zu: max error %.3g", ci, max_err);
        for (int i = 0; i < 8; i++) CHECK(x[(n - 1) * ld + i] == y[(n - 1) * ld + i]);
    }
    rl__backend_free(be);
}

/* ---- RMSNorm, GLU, rows ------------------------------------------------------------------ */

TEST(elementwise_vs_reference) {
    rl_backend *be = backend();
    enum { N = 7, D = 300 };
    static float x[N * D], w[D], y[N * D], g[N * D], u[N * D];
    for (int i = 0; i < N * D; i++) x[i] = rnd() * 3, g[i] = rnd() * 6, u[i] = rnd();
    for (int i = 0; i < D; i++) w[i] = 1 + rnd() * 0.1f;
    be->ops->rmsnorm(be, x, N, D, 1e-5f, w, y);
    double e = 0;
    for (int t = 0; t < N; t++) {
        double ss = 0;
        for (int i = 0; i < D; i++) ss += (double)x[t * D + i] * x[t * D + i];
        double sc = 1 / sqrt(ss / D + 1e-5);
        for (int i = 0; i < D; i++) e = fmax(e, fabs(x[t * D + i] * sc * w[i] - y[t * D + i]));
    }
    CHECKF(e < 1e-5, "rmsnorm %.3g", e);
    be->ops->glu(be, RL_GLU_SILU, g, D, u, D, N, D, y);
    e = 0;
    for (int i = 0; i < N * D; i++) e = fmax(e, fabs(g[i] / (1 + exp(-g[i])) * u[i] - y[i]));
    CHECKF(e < 1e-5, "swiglu %.3g", e);
    be->ops->glu(be, RL_GLU_GELU_TANH, g, D, u, D, N, D, y);
    e = 0;
    for (int i = 0; i < N * D; i++) {
        double a = g[i];
        double ge = 0.5 * a * (1 + tanh(sqrt(2 / M_PI) * (a + 0.044715 * a * a * a)));
        e = fmax(e, fabs(ge * u[i] - y[i]));
    }
    CHECKF(e < 1e-5, "geglu %.3g", e);
    /* in-place row compaction */
    memcpy(y, x, sizeof x);
    int32_t ids[3] = {1, 4, 6};
    be->ops->get_rows_f32(be, y, ids, 3, D, y);
    for (int t = 0; t < 3; t++) CHECK(!memcmp(y + t * D, x + ids[t] * D, sizeof(float) * D));
    memcpy(y, x, sizeof x);
    be->ops->softcap(be, y, N * D, 2.0f);
    e = 0;
    for (int i = 0; i < N * D; i++) e = fmax(e, fabs(2 * tanh(x[i] / 2) - y[i]));
    CHECKF(e < 1e-6, "softcap %.3g", e);
    rl__backend_free(be);
}

/* ---- MoE: fill, and the scaled scatter-add of expert rows (large enough for the pool) ---- */

TEST(moe_ops) {
    rl_backend *be = backend();
    enum { N = 24, D = 2048, C = 20 };
    float *x = be->ops->alloc(be, sizeof(float) * N * D);
    float *y = be->ops->alloc(be, sizeof(float) * C * D);
    float *ref = malloc(sizeof(float) * N * D);
    be->ops->fill(be, x, N * D, 0.5f);
    int bad = 0;
    for (int i = 0; i < N * D; i++) bad += x[i] != 0.5f;
    CHECK_EQ_INT(bad, 0);
    for (int i = 0; i < N * D; i++) x[i] = ref[i] = rnd();
    for (int i = 0; i < C * D; i++) y[i] = rnd() * 4;
    int32_t ids[C];
    float w[C];
    for (int t = 0; t < C; t++) ids[t] = (t * 7 + 3) % N, w[t] = rnd(); /* distinct */
    be->ops->add_rows_scaled(be, x, D, ids, w, C, y);
    for (int t = 0; t < C; t++)
        for (int i = 0; i < D; i++) ref[ids[t] * D + i] += y[t * D + i] * w[t];
    CHECK(!memcmp(x, ref, sizeof(float) * N * D));
    free(ref);
    be->ops->free(be, x);
    be->ops->free(be, y);
    rl__backend_free(be);
}

int main(void) {
    RUN(attention_vs_reference);
    RUN(rope_vs_reference);
    RUN(elementwise_vs_reference);
    RUN(moe_ops);
    return rl_test_finish();
}
