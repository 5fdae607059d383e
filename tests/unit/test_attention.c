/* The CPU attention op on an F16 cache laid out as the paged KV cache lays it out (16-cell
 * blocks scattered over the pool), on every ISA path, against a double-precision
 * reference over the stored fp16 values: query heads per KV head 1..12 (every
 * instantiation of attn_avx512.c's kernel, and two passes of 8 + 4), head dims 16..256
 * and the fallbacks (40: not a multiple of 16; 272: above the kernel's limit), spans of
 * 0..200 cells (tile edges 63/64/65 included), soft-capping, rows with padding that
 * must stay untouched. Also the AVX-512 vector exp against expf, and RMSNorm and SwiGLU
 * (whose AVX-512 rows use it) and the greedy pick on every path. */
#include "backend/backend.h"
#include "backend/cpu/backend_cpu.h"
#include "test.h"
#include "rng.h"

#include <stdlib.h>

static uint64_t g_rng = 0xa77e5eed5eedull;
static uint64_t rnd64(void) { return rl_test_rand64(&g_rng); }
static float rnd(void) { return (float)rl_test_rand_unit(&g_rng) * 2.0f - 1.0f; }

/* Outputs are convex combinations of V values in [-1, 1]; float scores (dots of up to 256
 * products), a polynomial exp within 2 ulp and float accumulation over up to 200 cells
 * stay well inside this absolute error. */
#define TOL 4e-6

#define BLOCK 16
#define N_BLOCKS 24
#define N_CELLS (BLOCK * N_BLOCKS)
#define PAD 8 /* floats after each q / out row, which attention must not write */

static const int k_lens[] = {0, 1, 15, 16, 17, 63, 64, 65, 129, 200};
#define N_TOK ((int)(sizeof k_lens / sizeof k_lens[0]))

typedef struct attn_case {
    int n_head, n_head_kv, hd;
    float softcap;
} attn_case;

static double case_run(rl_backend *be, const attn_case *c) {
    const int n_embd = c->n_head_kv * c->hd, nq = c->n_head * c->hd, ld = nq + PAD;
    rl_kv_layer kv = {.type = RL_TYPE_F16, .n_embd_k = n_embd, .n_embd_v = n_embd};
    CHECK(rl_type_row_bytes(RL_TYPE_F16, n_embd, &kv.k_row_bytes) == RL_OK);
    kv.v_row_bytes = kv.k_row_bytes;
    kv.k = be->ops->alloc(be, kv.k_row_bytes * N_CELLS);
    kv.v = be->ops->alloc(be, kv.v_row_bytes * N_CELLS);
    float *k = malloc(sizeof(float) * (size_t)N_CELLS * n_embd);
    float *v = malloc(sizeof(float) * (size_t)N_CELLS * n_embd);
    for (int i = 0; i < N_CELLS * n_embd; i++) {
        k[i] = rnd();
        v[i] = rnd();
    }
    int32_t all[N_CELLS];
    for (int i = 0; i < N_CELLS; i++) all[i] = i;
    be->ops->kv_write(be, &kv, k, n_embd, v, n_embd, N_CELLS, all);
    /* the stored values (fp16) as the reference sees them */
    const rl_fp16 *ks = kv.k, *vs = kv.v;

    /* the cell list: the blocks in a random order; token t sees k_lens[t] cells of it
     * from a random start */
    int32_t perm[N_BLOCKS], cells[N_CELLS], span[2 * N_TOK];
    for (int i = 0; i < N_BLOCKS; i++) perm[i] = i;
    for (int i = N_BLOCKS - 1; i > 0; i--) {
        int j = (int)(rnd64() % (uint64_t)(i + 1)), x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
    for (int i = 0; i < N_CELLS; i++) cells[i] = perm[i / BLOCK] * BLOCK + i % BLOCK;
    for (int t = 0; t < N_TOK; t++) {
        span[2 * t] = (int32_t)(rnd64() % (uint64_t)(N_CELLS - k_lens[t] + 1));
        span[2 * t + 1] = span[2 * t] + k_lens[t];
    }
    float *q = malloc(sizeof(float) * (size_t)N_TOK * ld);
    float *out = malloc(sizeof(float) * (size_t)N_TOK * ld);
    for (int i = 0; i < N_TOK * ld; i++) {
        q[i] = rnd();
        out[i] = 1234.5f;
    }
    rl_attn_args a = {.n_tok = N_TOK, .n_head = c->n_head, .n_head_kv = c->n_head_kv,
                      .head_dim_k = c->hd, .head_dim_v = c->hd, .q = q, .q_ld = ld,
                      .out = out, .out_ld = ld, .cells = cells, .span = span,
                      .scale = 1.0f / sqrtf((float)c->hd), .softcap = c->softcap};
    be->ops->attention(be, &kv, &a);

    const int n_gqa = c->n_head / c->n_head_kv;
    double max_err = 0, *p = malloc(sizeof(double) * N_CELLS);
    for (int t = 0; t < N_TOK; t++) {
        for (int i = nq; i < ld; i++) CHECK(out[(size_t)t * ld + i] == 1234.5f);
        for (int h = 0; h < c->n_head; h++) {
            const int g = h / n_gqa;
            const float *qh = q + (size_t)t * ld + (size_t)h * c->hd;
            const float *o = out + (size_t)t * ld + (size_t)h * c->hd;
            double mx = -INFINITY, sum = 0;
            for (int j = span[2 * t]; j < span[2 * t + 1]; j++) {
                const rl_fp16 *kr = ks + (size_t)cells[j] * n_embd + (size_t)g * c->hd;
                double s = 0;
                for (int d = 0; d < c->hd; d++) s += (double)qh[d] * rl__fp16_to_fp32(kr[d]);
                s *= a.scale;
                if (c->softcap > 0) s = c->softcap * tanh(s / c->softcap);
                p[j] = s;
                if (s > mx) mx = s;
            }
            for (int j = span[2 * t]; j < span[2 * t + 1]; j++) sum += (p[j] = exp(p[j] - mx));
            for (int d = 0; d < c->hd; d++) {
                double r = 0;
                for (int j = span[2 * t]; j < span[2 * t + 1]; j++)
                    r += p[j] * rl__fp16_to_fp32(vs[(size_t)cells[j] * n_embd +
                                                    (size_t)g * c->hd + d]);
                if (sum > 0) r /= sum;
                else CHECK(o[d] == 0.0f); /* empty span: zeros */
                double e = fabs(r - o[d]);
                if (!(e <= max_err)) max_err = e;
            }
        }
    }
    free(p);
    free(q);
    free(out);
    free(k);
    free(v);
    be->ops->free(be, kv.k);
    be->ops->free(be, kv.v);
    return max_err;
}

TEST(attention_f16_every_path) {
    static const attn_case cases[] = {
        {1, 1, 64, 0},   {2, 1, 48, 0},  {3, 1, 80, 0},   {4, 1, 64, 0},  {5, 1, 16, 0},
        {6, 1, 96, 0},   {7, 1, 32, 0},  {8, 1, 128, 0},  {12, 1, 64, 0}, {32, 8, 64, 0},
        {8, 2, 256, 0},  {4, 1, 64, 30}, {8, 2, 256, 50}, {4, 1, 40, 0},  {4, 2, 272, 0},
        {14, 2, 64, 0},
    };
    unsetenv("RUVLLM_ATTN_AVX2");
    const rl_cpu_isa best = rl_cpu_isa_active();
    rl_backend *be = NULL;
    CHECK(rl__backend_cpu_create(2, &be) == RL_OK);
    int n_paths = 0;
    for (int isa = 0; isa < RL_CPU_ISA_COUNT; isa++) {
        if (rl_cpu_isa_set((rl_cpu_isa)isa) != RL_OK) continue;
        n_paths++;
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            const attn_case *c = &cases[i];
            double e = case_run(be, c);
            CHECKF(e < TOL, "isa %d: %d/%d heads of %d, softcap %g: max error %.3g", isa,
                   c->n_head, c->n_head_kv, c->hd, c->softcap, e);
        }
    }
    CHECK(n_paths >= 1);
    rl_cpu_isa_set(best);
    rl__backend_free(be);
}

/* rl__exp_ps_avx512 within 2 ulp of expf over [-104, 88] (a dense sweep plus the float
 * grid near 0), and 0 far below. */
TEST(exp_ps_avx512) {
    if (!rl__cpu_isa_supported(RL_CPU_ISA_AVX512)) SKIP("no AVX-512 on this CPU");
    enum { N = 200003 };
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    for (int i = 0; i < N - 3; i++) x[i] = -104.0f + 192.0f * (float)i / (float)(N - 4);
    x[N - 3] = -0.0f;
    x[N - 2] = -1e-30f;
    x[N - 1] = -INFINITY;
    rl__exp_ps_avx512(x, y, N);
    double worst = 0;
    for (int i = 0; i < N - 1; i++) {
        const float want = expf(x[i]);
        if (want < 0x1p-126f) { /* subnormal: absolute error */
            CHECKF(fabsf(y[i] - want) <= 0x1p-140f, "exp(%g) = %g, expf %g", x[i], y[i], want);
            continue;
        }
        double ulp = fabs((double)y[i] - want) / (double)(nextafterf(want, INFINITY) - want);
        if (ulp > worst) worst = ulp;
    }
    CHECKF(worst <= 2.0, "exp: worst %.2f ulp", worst);
    CHECK(y[N - 1] == 0.0f);
    CHECK(y[N - 3] == 1.0f && y[N - 2] == 1.0f);
    /* a length that is not a multiple of 16 leaves the rest alone */
    y[20] = 7.0f;
    rl__exp_ps_avx512(x, y, 19);
    CHECK(y[20] == 7.0f);
    free(x);
    free(y);
}

/* The element-wise rows with their own AVX-512 code (act_avx512.c) on every ISA path:
 * RMSNorm (with and without weight) and SwiGLU against double references, rows of 300
 * (not a multiple of 16), gate values out to +-100 (the exp clamps). */
TEST(norm_swiglu_every_path) {
    enum { N = 5, D = 300 };
    static float x[N * D], w[D], y[N * D], g[N * D], u[N * D];
    for (int i = 0; i < N * D; i++) x[i] = rnd() * 3, g[i] = rnd() * 12, u[i] = rnd();
    for (int i = 0; i < D; i++) w[i] = 1 + rnd() * 0.1f;
    g[7] = 100.0f;
    g[8] = -100.0f;
    g[9] = 0.0f;
    const rl_cpu_isa best = rl_cpu_isa_active();
    rl_backend *be = NULL;
    CHECK(rl__backend_cpu_create(2, &be) == RL_OK);
    for (int isa = 0; isa < RL_CPU_ISA_COUNT; isa++) {
        if (rl_cpu_isa_set((rl_cpu_isa)isa) != RL_OK) continue;
        for (int wi = 0; wi < 2; wi++) {
            for (int i = 0; i < N * D; i++) y[i] = -7.0f;
            be->ops->rmsnorm(be, x, N, D, 1e-5f, wi ? w : NULL, y);
            double e = 0;
            for (int t = 0; t < N; t++) {
                double ss = 0;
                for (int i = 0; i < D; i++) ss += (double)x[t * D + i] * x[t * D + i];
                const double sc = 1 / sqrt(ss / D + 1e-5);
                for (int i = 0; i < D; i++)
                    e = fmax(e, fabs(x[t * D + i] * sc * (wi ? w[i] : 1.0) - y[t * D + i]));
            }
            CHECKF(e < 2e-6, "isa %d: rmsnorm (weight %d) max error %.3g", isa, wi, e);
        }
        be->ops->glu(be, RL_GLU_SILU, g, D, u, D, N, D, y);
        double e = 0;
        for (int i = 0; i < N * D; i++) {
            const double want = g[i] / (1 + exp(-(double)g[i])) * u[i];
            e = fmax(e, fabs(want - y[i]) / fmax(1.0, fabs(want)));
        }
        CHECKF(e < 1e-6, "isa %d: swiglu max error %.3g", isa, e);
        CHECK(y[8] == 0.0f || fabsf(y[8]) < 1e-30f);
    }
    rl_cpu_isa_set(best);
    rl__backend_free(be);
}

/* The greedy pick (argmax_to_host) on every ISA path against the scalar definition:
 * lowest index of the maximum, NaN never wins, 0 when nothing is above -inf; ties, NaNs,
 * -inf rows and maxima in the tail of rows that are not multiples of 16. */
static int32_t argmax_ref(const float *x, int64_t n) {
    int32_t b = 0;
    float best = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (x[i] > best) best = x[i], b = (int32_t)i;
    return b;
}

TEST(argmax_every_path) {
    static const int64_t dims[] = {1, 15, 16, 17, 1000, 128256};
    enum { ROWS = 7 };
    const rl_cpu_isa best = rl_cpu_isa_active();
    rl_backend *be = NULL;
    CHECK(rl__backend_cpu_create(2, &be) == RL_OK);
    CHECK(be->ops->argmax_to_host != NULL);
    float *x = malloc(sizeof(float) * ROWS * 128256);
    for (size_t d = 0; d < sizeof dims / sizeof dims[0]; d++) {
        const int64_t n = dims[d];
        for (int r = 0; r < ROWS; r++) {
            float *row = x + r * n;
            for (int64_t i = 0; i < n; i++) row[i] = rnd() * 10;
            if (r == 1) row[n - 1] = 50; /* maximum in the last lane */
            if (r == 2) row[n / 2] = row[n - 1] = 60; /* tie: the lower index */
            if (r == 3) row[0] = NAN, row[n - 1] = NAN;
            if (r == 4)
                for (int64_t i = 0; i < n; i++) row[i] = i % 3 ? -INFINITY : NAN;
            if (r == 5)
                for (int64_t i = 0; i < n; i++) row[i] = (float)(i % 5); /* ties everywhere */
            if (r == 6) row[n - 1] = INFINITY;
        }
        for (int isa = 0; isa < RL_CPU_ISA_COUNT; isa++) {
            if (rl_cpu_isa_set((rl_cpu_isa)isa) != RL_OK) continue;
            int32_t ids[ROWS];
            be->ops->argmax_to_host(be, x, ROWS, n, ids);
            for (int r = 0; r < ROWS; r++)
                CHECKF(ids[r] == argmax_ref(x + r * n, n), "isa %d dim %lld row %d: %d vs %d",
                       isa, (long long)n, r, ids[r], argmax_ref(x + r * n, n));
        }
    }
    free(x);
    rl_cpu_isa_set(best);
    rl__backend_free(be);
}

int main(void) {
    RUN(attention_f16_every_path);
    RUN(exp_ps_avx512);
    RUN(norm_swiglu_every_path);
    RUN(argmax_every_path);
    return rl_test_finish();
}
