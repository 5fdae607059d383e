/* The CUDA backend's layer ops against the CPU backend (the reference) on random inputs:
 * matmul for every weight type the GPU decodes at decode (n <= 8, the matrix-vector
 * kernel) and prefill (n > 8, the tiled kernel) sizes, aligned and unaligned float rows;
 * the embedding lookup bit for bit against rl_dequantize; weights read through a mapped
 * host range; RMSNorm, RoPE (normal / NeoX, YaRN, frequency factors, partial rotation,
 * repeated and changed positions), bias and residual adds, scale, soft-cap, fill, the
 * gated activations, row gathers (also in place), the MoE combine, the KV write and copy
 * (byte for byte, F32 / F16 / Q8_0) and attention (GQA groups over 8 heads, different K
 * and V head sizes, soft-cap, empty spans, a long span split over blocks), and decode
 * steps replayed as CUDA graphs (bit for bit what eager launches give).
 *
 * Error measure: normalized mean squared error sum (gpu - ref)^2 / sum ref^2. Bounds:
 * 1e-7 for float element-wise ops and F32 products; 5e-4 for products over quantized,
 * F16 or BF16 operands against the CPU, which rounds the activations to the weight's dot
 * type first; and 1e-9 for every product against a float64 product of the dequantized
 * weights (the GPU keeps activations in float), which checks each type's decoding; products
 * of 9 or more tokens over non-F32 weights run on tensor cores with 16-bit operands
 * (activations and decoded weights rounded to BF16, or F16 for F16 weights) and float
 * accumulation: 5e-5 against float64 there (BF16's rounding alone gives about 3e-6).
 * Q4_0, Q8_0, Q4_K and Q6_K products of 5 to 8 tokens take the int8 tensor-core kernel
 * (mmq.cu; activations as int8 per 32 values): 2e-4 against float64 for each product (a
 * few dot products alone), test cuda_mmq 5e-5 at every size up to 512 tokens.
 * Q4_K and Q6_K products of 1 to 4 tokens take the q8 path (activations as Q8_K codes
 * plus int8 residual codes, dp4a): against float64 1e-8 over all of a type's such products
 * (the residual leaves about 1e-9), 1e-4 for each product alone (a single dot product
 * can cancel to near zero).
 * Without a CUDA device the program reports itself skipped. */
#include "backend/backend.h"
#include "gpu.h"
#include "test.h"
#include "rng.h"

static rl_backend *cpu, *gpu;
static char g_skip[320];

/* ---- random data ---- */
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) { return rl_test_rand64(&g_rng); }
static float unif(void) { return (float)rl_test_rand_unit(&g_rng); }
static float gauss(void) {
    float u1 = unif() + 1e-12f, u2 = unif();
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}
static float *rand_vec(size_t n, float scale) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = gauss() * scale;
    return x;
}

/* ---- device helpers ---- */
static void *gpu_bytes(const void *h, size_t b) {
    void *d = gpu->ops->alloc(gpu, b);
    CHECK(d != NULL);
    gpu->ops->from_host(gpu, d, h, b);
    return d;
}
static float *gpu_vec(const float *h, size_t n) { return gpu_bytes(h, n * sizeof(float)); }
static float *gpu_get(const float *d, size_t n) {
    float *h = malloc(n * sizeof(float));
    gpu->ops->to_host(gpu, h, d, n * sizeof(float));
    return h;
}
static void gpu_sync(void) {
    rl_status st = gpu->ops->sync(gpu);
    CHECKF(st == RL_OK, "sync: %s", rl_status_str(st));
}

static double max_abs(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

/* ---- matmul ---- */
static const rl_type k_types[] = {
    RL_TYPE_F32,  RL_TYPE_F16,  RL_TYPE_BF16, RL_TYPE_Q4_0,   RL_TYPE_Q4_1,
    RL_TYPE_Q5_0, RL_TYPE_Q5_1, RL_TYPE_Q8_0, RL_TYPE_Q2_K,   RL_TYPE_Q3_K,
    RL_TYPE_Q4_K, RL_TYPE_Q5_K, RL_TYPE_Q6_K, RL_TYPE_IQ4_NL, RL_TYPE_IQ4_XS,
};

typedef struct qweight {
    rl_weight w;  /* host data (for the CPU) */
    rl_weight wd; /* device copy */
    float *deq;   /* [rows][K] decoded */
} qweight;

static bool make_weight(rl_type t, int64_t K, int64_t rows, qweight *q) {
    size_t rb;
    if (rl_type_row_bytes(t, K, &rb) != RL_OK) return false;
    float *src = rand_vec((size_t)(K * rows), 1.0f);
    void *data = malloc(rb * (size_t)rows);
    CHECK(rl_quantize(t, src, data, rows, K, NULL) == RL_OK);
    q->deq = malloc((size_t)(K * rows) * sizeof(float));
    CHECK(rl_dequantize(t, data, q->deq, K * rows) == RL_OK);
    free(src);
    q->w =
        (rl_weight){.name = "w", .type = t, .ne = {K, rows, 1, 1}, .row_bytes = rb, .data = data};
    q->wd = q->w;
    q->wd.data = gpu_bytes(data, rb * (size_t)rows);
    return true;
}

static void free_weight(qweight *q) {
    gpu->ops->free(gpu, (void *)q->wd.data);
    free((void *)q->w.data);
    free(q->deq);
}

/* Sums of squares over all products of a type: the error against the CPU is judged on
 * the whole set (one dot product alone can cancel to near zero, and its relative error
 * then says little). */
typedef struct err_acc {
    double num, den;
} err_acc;

static void acc_add(err_acc *a, const float *x, const float *ref, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double d = isfinite(x[i]) ? (double)x[i] - (double)ref[i] : INFINITY;
        a->num += d * d;
        a->den += (double)ref[i] * (double)ref[i];
    }
}

/* y = x W^T through both backends and in float64 on the decoded weights. */
/* An environment switch set to 0. */
static bool getenv_off(const char *name) {
    const char *v = getenv(name);
    return v && v[0] == '0';
}

/* Whether a product takes the q8 path (int8 activations): Q4_K and Q6_K of 1 to 4 tokens,
 * and the streaming decode kernel's Q8_0 and Q4_0 of one token (K a multiple of 1024). */
static bool is_q8_product(rl_type t, int64_t K, int64_t n) {
    if (getenv_off("RUVLLM_CUDA_Q8")) return false;
    if ((t == RL_TYPE_Q4_K || t == RL_TYPE_Q6_K) && n <= 4 && K % 256 == 0) return true;
    return (t == RL_TYPE_Q8_0 || t == RL_TYPE_Q4_0) && n == 1 && K % 1024 == 0 &&
           !getenv_off("RUVLLM_CUDA_MV");
}

/* Whether a product takes the CPU's own arithmetic (matvec.cu): one-token Q4_K and Q6_K
 * products whose K is a whole number of the streaming kernel's chunks (1024, 2048 values)
 * multiply the Q8_K codes alone, as the CPU does (RUVLLM_CUDA_MV_Q8K, on by default); one-token
 * Q8_0 and Q4_0 products on that kernel (K a multiple of 1024) read the CPU's Q8_0
 * activations. They equal the CPU's products up to the order of float sums (1e-6 for each,
 * where a product of one row can cancel) and differ from float64 by the rounding of the
 * activations to int8 (5e-4, the bound for quantized products). */
static bool is_cpu_sum_product(rl_type t, int64_t K, int64_t n) {
    if (getenv_off("RUVLLM_CUDA_Q8") || getenv_off("RUVLLM_CUDA_MV") || n != 1) return false;
    if ((t == RL_TYPE_Q8_0 || t == RL_TYPE_Q4_0) && K % 1024 == 0) return true;
    if (getenv_off("RUVLLM_CUDA_MV_Q8K")) return false;
    return (t == RL_TYPE_Q4_K && K % 1024 == 0) || (t == RL_TYPE_Q6_K && K % 2048 == 0);
}

/* Whether a product takes the int8 tensor-core kernel (mmq.cu): Q4_0, Q8_0, Q4_K and Q6_K
 * of 5 to RUVLLM_CUDA_MMQ_MAX (default 128, backend_cuda.c) tokens, K a multiple of 256
 * (activations as int8 per 32 values, per 256 for Q4_K / Q6_K: about 3e-5 / 1e-4 against
 * float64 over many products, more for a product of a few dot products; test cuda_mmq
 * checks them at every size). */
static bool is_mmq_product(rl_type t, int64_t K, int64_t n) {
    const char *mx = getenv("RUVLLM_CUDA_MMQ_MAX");
    const int64_t max = mx && atoll(mx) > 0 ? atoll(mx) : 128;
    if (getenv_off("RUVLLM_CUDA_MMQ") || n < 5 || n > max || K % 256) return false;
    return t == RL_TYPE_Q4_0 || t == RL_TYPE_Q8_0 || t == RL_TYPE_Q4_K || t == RL_TYPE_Q6_K;
}

static void check_matmul(const qweight *q, int64_t n, err_acc *vs_cpu, double *worst_ref,
                         err_acc *q8, err_acc *q8_cpu, err_acc *q8k_ref) {
    const int64_t K = q->w.ne[0], rows = q->w.ne[1];
    float *x = rand_vec((size_t)(n * K), 1.0f);
    float *yc = malloc((size_t)(n * rows) * sizeof(float));
    float *yr = malloc((size_t)(n * rows) * sizeof(float));
    CHECK(cpu->ops->matmul(cpu, &q->w, x, n, yc) == RL_OK);
    for (int64_t t = 0; t < n; t++)
        for (int64_t r = 0; r < rows; r++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += (double)q->deq[r * K + k] * x[t * K + k];
            yr[t * rows + r] = (float)s;
        }
    float *xd = gpu_vec(x, (size_t)(n * K));
    float *yd = gpu->ops->alloc(gpu, (size_t)(n * rows) * sizeof(float));
    rl_status st = gpu->ops->matmul(gpu, &q->wd, xd, n, yd);
    CHECKF(st == RL_OK, "matmul %s: %s", rl_type_name(q->w.type), rl_status_str(st));
    float *yg = gpu_get(yd, (size_t)(n * rows));
    gpu_sync();
    const double er = rl_test_nmse(yg, yr, (size_t)(n * rows));
    acc_add(vs_cpu, yg, yc, (size_t)(n * rows));
    const bool q8k = is_cpu_sum_product(q->w.type, K, n);
    const bool is_q8 = is_q8_product(q->w.type, K, n) && !q8k;
    if (q8k) {
        const double ec = rl_test_nmse(yg, yc, (size_t)(n * rows));
        CHECKF(ec <= 1e-6 && er <= 5e-3, "matmul %s K=%lld rows=%lld n=1 (q8k): nmse vs cpu %.3g, "
               "vs float64 %.3g", rl_type_name(q->w.type), (long long)K, (long long)rows, ec, er);
        acc_add(q8k_ref, yg, yr, (size_t)(n * rows));
    }
    if (is_q8) {
        acc_add(q8, yg, yr, (size_t)(n * rows));
        acc_add(q8_cpu, yg, yc, (size_t)(n * rows));
    }
    const bool mmq = is_mmq_product(q->w.type, K, n);
    const double bound = is_q8 ? 1e-4 : mmq ? 5e-4 : n >= 9 && q->w.type != RL_TYPE_F32 ? 5e-5 : 1e-9;
    CHECKF(q8k || er <= bound, "matmul %s K=%lld rows=%lld n=%lld: nmse vs float64 %.3g > %.3g",
           rl_type_name(q->w.type), (long long)K, (long long)rows, (long long)n, er, bound);
    if (!is_q8 && !q8k && !mmq && !(er <= *worst_ref)) *worst_ref = er;
    gpu->ops->free(gpu, xd);
    gpu->ops->free(gpu, yd);
    free(x);
    free(yc);
    free(yr);
    free(yg);
}

TEST(cuda_matmul) {
    if (!gpu) SKIP("%s", g_skip);
    static const int64_t shapes[][2] = {{256, 1}, {256, 67}, {2048, 300}, {4096, 64}, {512, 4097}, {256, 8195}};
    static const int64_t ns[] = {1, 2, 3, 5, 8, 9, 64, 130};
    for (size_t ti = 0; ti < sizeof k_types / sizeof k_types[0]; ti++) {
        const rl_type t = k_types[ti];
        CHECK(gpu->ops->supports_type(gpu, t));
        const double tol = t == RL_TYPE_F32 ? 1e-7 : 5e-4;
        err_acc ac = {0, 0}, q8 = {0, 0}, q8c = {0, 0}, q8k = {0, 0};
        double wr = 0, wt = 0; /* worst vs float64: n <= 8, n >= 9 */
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            qweight q;
            if (!make_weight(t, shapes[si][0], shapes[si][1], &q)) continue;
            for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
                check_matmul(&q, ns[ni], &ac, ns[ni] >= 9 ? &wt : &wr, &q8, &q8c, &q8k);
            free_weight(&q);
        }
        /* float rows that are not 8-aligned: the scalar path */
        if (!rl_type_is_quantized(t)) {
            qweight q;
            if (make_weight(t, 172, 33, &q)) {
                for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
                    check_matmul(&q, ns[ni], &ac, ns[ni] >= 9 ? &wt : &wr, &q8, &q8c, &q8k);
                free_weight(&q);
            }
        }
        const double ec = ac.den > 0 ? ac.num / ac.den : ac.num;
        CHECKF(ec <= tol, "matmul %s: nmse vs cpu %.3g > %.3g", rl_type_name(t), ec, tol);
        if (q8.den > 0) {
            const double e8 = q8.num / q8.den, e8c = q8c.num / q8c.den;
            CHECKF(e8 <= 1e-8, "matmul %s q8 path: nmse vs float64 %.3g > 1e-8", rl_type_name(t), e8);
            fprintf(stderr, "  matmul %-7s q8 path: nmse vs float64 %.3g, vs cpu %.3g\n",
                    rl_type_name(t), e8, e8c);
        }
        if (q8k.den > 0) {
            const double e = q8k.num / q8k.den;
            CHECKF(e <= 5e-4, "matmul %s q8k path: nmse vs float64 %.3g > 5e-4", rl_type_name(t), e);
            fprintf(stderr, "  matmul %-7s q8k path: nmse vs float64 %.3g\n", rl_type_name(t), e);
        }
        fprintf(stderr, "  matmul %-7s nmse vs cpu %.3g, worst vs float64 %.3g (n <= 8), %.3g (n >= 9)\n",
                rl_type_name(t), ec, wr, wt);
    }
    CHECK(!gpu->ops->supports_type(gpu, RL_TYPE_IQ2_XXS));
    qweight q;
    if (make_weight(RL_TYPE_Q8_0, 256, 4, &q)) {
        q.wd.type = RL_TYPE_IQ2_XXS;
        float *x = gpu->ops->alloc(gpu, 256 * sizeof(float)), *y = gpu->ops->alloc(gpu, 64);
        CHECK(gpu->ops->matmul(gpu, &q.wd, x, 1, y) == RL_ERR_UNSUPPORTED);
        CHECK(gpu->ops->reserve_matmul(gpu, &q.wd, 1) == RL_ERR_UNSUPPORTED);
        gpu->ops->free(gpu, x);
        gpu->ops->free(gpu, y);
        free_weight(&q);
    }
}

/* ---- the streaming decode product (matvec.cu) ----
 * One token through Q4_K, Q6_K, Q8_0, Q4_0 (int8 activations) and F16 (float) rows, K a
 * multiple of each type's chunk, with the kernel's own choice of kernel and rows per item
 * and with 1, 2 and 4 rows per item forced: more rows than one wave of warps holds (so
 * warps take several row groups), rows of several chunks (the ring of stages wraps), row
 * counts that are not a multiple of the group, and a single row. The
 * output is poisoned with NaN first, so an unwritten row fails; against float64 on the
 * dequantized weights (q8 types: 1e-8 over all of a type's products, 1e-4 for each alone,
 * as the q8 path; F16 1e-9) and the CPU backend (5e-4 over all of a type's products: the
 * CPU rounds the activations to its dot type, and a few rows alone can cancel). */
static void matvec_cases(const char *rows_per_item);

/* The kernel's settings are the process's (read when a backend is made): each rows-per-item
 * setting (RUVLLM_CUDA_MV_R) in turn, then the default again. */
static void matvec_setting(const char *r) { rl_test_cuda_setting("RUVLLM_CUDA_MV_R", r); }

TEST(cuda_matvec) {
    if (!gpu) SKIP("%s", g_skip);
    static const char *settings[] = {NULL, "1,1,1,1,1", "2,2,2,2,2", "4,4,4,4,4"};
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        matvec_setting(settings[i]);
        matvec_cases(settings[i] ? settings[i] : "default");
    }
    /* the balanced kernel (matvec.cu's mv2, off by default) for Q4_K, Q6_K and Q4_0 */
    setenv("RUVLLM_CUDA_MV2", "1,1,0,1,0", 1);
    matvec_setting(NULL);
    matvec_cases("mv2");
    unsetenv("RUVLLM_CUDA_MV2");
    matvec_setting(NULL);
}

static void matvec_cases(const char *rows_per_item) {
    static const rl_type types[] = {RL_TYPE_Q4_K, RL_TYPE_Q6_K, RL_TYPE_Q8_0, RL_TYPE_Q4_0,
                                    RL_TYPE_F16};
    static const int64_t shapes[][2] = {{2048, 11000}, {6144, 700}, {14336, 3}, {4096, 1}};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const rl_type t = types[ti];
        err_acc all = {0, 0}, all_cpu = {0, 0};
        for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
            const int64_t K = shapes[si][0], rows = shapes[si][1];
            qweight q;
            if (!make_weight(t, K, rows, &q)) continue;
            float *x = rand_vec((size_t)K, 1.0f);
            float *yc = malloc((size_t)rows * sizeof(float)), *yr = malloc((size_t)rows * sizeof(float));
            CHECK(cpu->ops->matmul(cpu, &q.w, x, 1, yc) == RL_OK);
            for (int64_t r = 0; r < rows; r++) {
                double acc = 0;
                for (int64_t k = 0; k < K; k++) acc += (double)q.deq[r * K + k] * x[k];
                yr[r] = (float)acc;
            }
            float *xd = gpu_vec(x, (size_t)K);
            float *yd = gpu->ops->alloc(gpu, (size_t)rows * sizeof(float));
            gpu->ops->fill(gpu, yd, rows, NAN);
            CHECK(gpu->ops->matmul(gpu, &q.wd, xd, 1, yd) == RL_OK);
            float *yg = gpu_get(yd, (size_t)rows);
            gpu_sync();
            int64_t unwritten = 0;
            for (int64_t r = 0; r < rows; r++) unwritten += !isfinite(yg[r]);
            const double er = rl_test_nmse(yg, yr, (size_t)rows), ec = rl_test_nmse(yg, yc, (size_t)rows);
            /* per product: a few rows can cancel to near zero (as check_matmul's q8 bound) */
            const bool q8k = is_cpu_sum_product(t, K, 1);
            const double bound = t == RL_TYPE_F16 ? 1e-9 : 1e-4;
            acc_add(&all, yg, yr, (size_t)rows);
            acc_add(&all_cpu, yg, yc, (size_t)rows);
            CHECKF(unwritten == 0, "matvec %s %s K=%lld rows=%lld: %lld rows not finite",
                   rows_per_item, rl_type_name(t), (long long)K, (long long)rows,
                   (long long)unwritten);
            CHECKF(q8k ? ec <= 1e-6 : er <= bound,
                   "matvec %s %s K=%lld rows=%lld: nmse vs float64 %.3g (<= %.0e), vs cpu %.3g",
                   rows_per_item, rl_type_name(t), (long long)K, (long long)rows, er, bound, ec);
            fprintf(stderr,
                    "  matvec %-9s %-5s K=%-5lld rows=%-5lld nmse vs float64 %.3g, vs cpu %.3g\n",
                    rows_per_item, rl_type_name(t), (long long)K, (long long)rows, er, ec);
            gpu->ops->free(gpu, xd);
            gpu->ops->free(gpu, yd);
            free(x);
            free(yc);
            free(yr);
            free(yg);
            free_weight(&q);
        }
        const double ea = all.den > 0 ? all.num / all.den : all.num;
        const double eac = all_cpu.den > 0 ? all_cpu.num / all_cpu.den : all_cpu.num;
        CHECKF(ea <= (t == RL_TYPE_F16                               ? 1e-9
                      : is_cpu_sum_product(t, shapes[0][0], 1) ? 5e-4
                                                                : 1e-8),
               "matvec %s %s: nmse vs float64 %.3g over all",
               rows_per_item, rl_type_name(t), ea);
        CHECKF(eac <= 5e-4, "matvec %s %s: nmse vs cpu %.3g over all", rows_per_item,
               rl_type_name(t), eac);
    }
}

/* ---- the q8 path fed by the op before ----
 * RMSNorm and the gated activation write the quantized activations of the Q4_K / Q6_K
 * product that reads their output next (and the product after that reuses them): their
 * outputs against the CPU's (1e-7), each product against float64 on the CPU's
 * activations and the dequantized weights (1e-8, as the q8 path alone). */
static void q8_fused_case(int64_t K, int64_t rows);

TEST(cuda_q8_fused) {
    if (!gpu) SKIP("%s", g_skip);
    q8_fused_case(512, 300);  /* the row-group kernels */
    q8_fused_case(2048, 300); /* one token: the streaming kernel */
}

static void q8_fused_case(int64_t K, int64_t rows) {
    qweight w4, w6;
    CHECK(make_weight(RL_TYPE_Q4_K, K, rows, &w4));
    CHECK(make_weight(RL_TYPE_Q6_K, K, rows, &w6));
    static const int64_t ns[] = {1, 3, 4};
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
        const int64_t n = ns[ni];
        float *x = rand_vec((size_t)(n * K), 1.0f), *nw = rand_vec((size_t)K, 1.0f);
        float *u = rand_vec((size_t)(n * K), 1.0f);
        float *hc = malloc((size_t)(n * K) * sizeof(float));
        float *yc[3], *yg[3];
        for (int i = 0; i < 3; i++) yc[i] = malloc((size_t)(n * rows) * sizeof(float));
        /* CPU: h = rms(x) * nw, a = silu(x) * u; then y0 = h W4, y1 = h W6, y2 = a W6 */
        cpu->ops->rmsnorm(cpu, x, n, K, 1e-5f, nw, hc);
        float *ac = malloc((size_t)(n * K) * sizeof(float));
        cpu->ops->glu(cpu, RL_GLU_SILU, x, K, u, K, n, K, ac);

        float *xd = gpu_vec(x, (size_t)(n * K)), *nwd = gpu_vec(nw, (size_t)K);
        float *ud = gpu_vec(u, (size_t)(n * K));
        float *hd = gpu->ops->alloc(gpu, (size_t)(n * K) * sizeof(float));
        float *ad = gpu->ops->alloc(gpu, (size_t)(n * K) * sizeof(float));
        float *yd[3];
        for (int i = 0; i < 3; i++) yd[i] = gpu->ops->alloc(gpu, (size_t)(n * rows) * sizeof(float));
        gpu->ops->rmsnorm(gpu, xd, n, K, 1e-5f, nwd, hd);
        CHECK(gpu->ops->matmul(gpu, &w4.wd, hd, n, yd[0]) == RL_OK);
        CHECK(gpu->ops->matmul(gpu, &w6.wd, hd, n, yd[1]) == RL_OK);
        gpu->ops->glu(gpu, RL_GLU_SILU, xd, K, ud, K, n, K, ad);
        CHECK(gpu->ops->matmul(gpu, &w6.wd, ad, n, yd[2]) == RL_OK);
        /* float64 references on the CPU's activations */
        const float *src[3] = {hc, hc, ac};
        const qweight *wq[3] = {&w4, &w6, &w6};
        for (int i = 0; i < 3; i++)
            for (int64_t t = 0; t < n; t++)
                for (int64_t r = 0; r < rows; r++) {
                    double acc = 0;
                    for (int64_t k = 0; k < K; k++)
                        acc += (double)wq[i]->deq[r * K + k] * src[i][t * K + k];
                    yc[i][t * rows + r] = (float)acc;
                }
        float *hg = gpu_get(hd, (size_t)(n * K)), *ag = gpu_get(ad, (size_t)(n * K));
        for (int i = 0; i < 3; i++) yg[i] = gpu_get(yd[i], (size_t)(n * rows));
        gpu_sync();
        CHECKF(rl_test_nmse(hg, hc, (size_t)(n * K)) <= 1e-7, "q8 fused n=%lld: rmsnorm output",
               (long long)n);
        CHECKF(rl_test_nmse(ag, ac, (size_t)(n * K)) <= 1e-7, "q8 fused n=%lld: glu output", (long long)n);
        static const char *what[3] = {"rmsnorm -> Q4_K", "rmsnorm -> Q4_K -> Q6_K", "glu -> Q6_K"};
        for (int i = 0; i < 3; i++) {
            const double e = rl_test_nmse(yg[i], yc[i], (size_t)(n * rows));
            const double bnd =
                is_cpu_sum_product(i ? RL_TYPE_Q6_K : RL_TYPE_Q4_K, K, n) ? 5e-4 : 1e-8;
            CHECKF(e <= bnd, "q8 fused n=%lld %s: nmse vs float64 %.3g", (long long)n, what[i], e);
            fprintf(stderr, "  q8 fused K=%lld n=%lld %-24s nmse vs float64 %.3g\n", (long long)K,
                    (long long)n, what[i], e);
            gpu->ops->free(gpu, yd[i]);
            free(yc[i]);
            free(yg[i]);
        }
        gpu->ops->free(gpu, xd);
        gpu->ops->free(gpu, nwd);
        gpu->ops->free(gpu, ud);
        gpu->ops->free(gpu, hd);
        gpu->ops->free(gpu, ad);
        free(x);
        free(nw);
        free(u);
        free(hc);
        free(ac);
        free(hg);
        free(ag);
    }
    free_weight(&w4);
    free_weight(&w6);
}

/* ---- embedding rows: bit for bit ---- */
TEST(cuda_get_rows) {
    if (!gpu) SKIP("%s", g_skip);
    static const int32_t ids[] = {5, 0, 36, 5, 17};
    const int64_t n = 5, rows = 37;
    for (size_t ti = 0; ti < sizeof k_types / sizeof k_types[0]; ti++) {
        const rl_type t = k_types[ti];
        for (int pass = 0; pass < 2; pass++) {
            const int64_t K = pass == 0 ? 512 : 172;
            if (pass == 1 && rl_type_is_quantized(t)) continue;
            qweight q;
            if (!make_weight(t, K, rows, &q)) continue;
            float *yd = gpu->ops->alloc(gpu, (size_t)(n * K) * sizeof(float));
            gpu->ops->get_rows(gpu, &q.wd, ids, n, yd);
            float *yg = gpu_get(yd, (size_t)(n * K));
            float *yc = malloc((size_t)(n * K) * sizeof(float));
            cpu->ops->get_rows(cpu, &q.w, ids, n, yc);
            gpu_sync();
            int bad = 0;
            for (int64_t i = 0; i < n * K; i++) bad += memcmp(&yg[i], &yc[i], 4) != 0;
            CHECKF(bad == 0, "get_rows %s K=%lld: %d of %lld values differ (max %.3g)",
                   rl_type_name(t), (long long)K, bad, (long long)(n * K),
                   max_abs(yg, yc, (size_t)(n * K)));
            gpu->ops->free(gpu, yd);
            free(yg);
            free(yc);
            free_weight(&q);
        }
    }
}

/* ---- weights and vectors read through mapped host ranges ---- */
static uint8_t g_mapped_w[64 * 18 * 8]; /* Q4_0 [64][256] */
static float g_mapped_norm[4096];

TEST(cuda_map_host) {
    if (!gpu) SKIP("%s", g_skip);
    const int64_t K = 256, rows = 64;
    float *src = rand_vec((size_t)(K * rows), 1.0f);
    CHECK(rl_quantize(RL_TYPE_Q4_0, src, g_mapped_w, rows, K, NULL) == RL_OK);
    for (int i = 0; i < 4096; i++) g_mapped_norm[i] = 1.0f + 0.1f * gauss();
    CHECK(gpu->ops->map_host(gpu, g_mapped_w, sizeof g_mapped_w) == RL_OK);
    CHECK(gpu->ops->map_host(gpu, g_mapped_norm, sizeof g_mapped_norm) == RL_OK);
    rl_weight w = {.name = "mapped",
                   .type = RL_TYPE_Q4_0,
                   .ne = {K, rows, 1, 1},
                   .row_bytes = 18 * 8,
                   .data = g_mapped_w};
    /* a row slice inside the mapping, as MoE expert slices are */
    rl_weight ws = w;
    ws.ne[1] = 16;
    ws.data = g_mapped_w + 8 * w.row_bytes;
    float *x = rand_vec(3 * K, 1.0f), *yc = malloc(3 * rows * sizeof(float));
    float *xd = gpu_vec(x, 3 * K), *yd = gpu->ops->alloc(gpu, 3 * rows * sizeof(float));
    for (int pass = 0; pass < 2; pass++) {
        const rl_weight *wp = pass ? &ws : &w;
        CHECK(cpu->ops->matmul(cpu, wp, x, 3, yc) == RL_OK);
        CHECK(gpu->ops->matmul(gpu, wp, xd, 3, yd) == RL_OK);
        float *yg = gpu_get(yd, (size_t)(3 * wp->ne[1]));
        double e = rl_test_nmse(yg, yc, (size_t)(3 * wp->ne[1]));
        CHECKF(e <= 5e-4, "mapped matmul pass %d: nmse %.3g", pass, e);
        free(yg);
    }
    /* a norm weight inside a mapped range (at an offset) */
    float *h = rand_vec(2 * 1000, 1.0f), *hc = malloc(2 * 1000 * sizeof(float));
    float *hd = gpu_vec(h, 2000);
    cpu->ops->rmsnorm(cpu, h, 2, 1000, 1e-5f, g_mapped_norm + 100, hc);
    gpu->ops->rmsnorm(gpu, hd, 2, 1000, 1e-5f, g_mapped_norm + 100, hd);
    float *hg = gpu_get(hd, 2000);
    gpu_sync();
    CHECKF(rl_test_nmse(hg, hc, 2000) <= 1e-7, "rmsnorm with a mapped weight: nmse %.3g",
           rl_test_nmse(hg, hc, 2000));
    gpu->ops->free(gpu, xd);
    gpu->ops->free(gpu, yd);
    gpu->ops->free(gpu, hd);
    free(src);
    free(x);
    free(yc);
    free(h);
    free(hc);
    free(hg);
}

/* ---- element-wise ---- */
static void check_ew(const char *what, const float *g, const float *c, size_t n) {
    double e = rl_test_nmse(g, c, n);
    CHECKF(e <= 1e-7, "%s: nmse %.3g (max abs %.3g)", what, e, max_abs(g, c, n));
    fprintf(stderr, "  %-22s nmse %.3g, max abs %.3g\n", what, e, max_abs(g, c, n));
}

TEST(cuda_rmsnorm) {
    if (!gpu) SKIP("%s", g_skip);
    static const int64_t dims[] = {64, 4096, 5000};
    for (size_t di = 0; di < 3; di++) {
        const int64_t dim = dims[di], n = 7;
        float *x = rand_vec((size_t)(n * dim), 3.0f), *w = rand_vec((size_t)dim, 1.0f);
        float *yc = malloc((size_t)(n * dim) * sizeof(float));
        float *xd = gpu_vec(x, (size_t)(n * dim)), *wd = gpu_vec(w, (size_t)dim);
        float *yd = gpu->ops->alloc(gpu, (size_t)(n * dim) * sizeof(float));
        for (int with_w = 0; with_w < 2; with_w++) {
            cpu->ops->rmsnorm(cpu, x, n, dim, 1e-6f, with_w ? w : NULL, yc);
            gpu->ops->rmsnorm(gpu, xd, n, dim, 1e-6f, with_w ? wd : NULL, yd);
            float *yg = gpu_get(yd, (size_t)(n * dim));
            check_ew(with_w ? "rmsnorm (weight)" : "rmsnorm", yg, yc, (size_t)(n * dim));
            free(yg);
        }
        /* in place */
        gpu->ops->rmsnorm(gpu, xd, n, dim, 1e-6f, wd, xd);
        float *yg = gpu_get(xd, (size_t)(n * dim));
        check_ew("rmsnorm (in place)", yg, yc, (size_t)(n * dim));
        gpu_sync();
        free(yg);
        free(x);
        free(w);
        free(yc);
        gpu->ops->free(gpu, xd);
        gpu->ops->free(gpu, wd);
        gpu->ops->free(gpu, yd);
    }
}

/* A residual add followed by a norm of its sum runs as one launch (backend_cuda.c joins
 * them): the sum and the norm as the CPU's add and rmsnorm give them, bit for bit, also
 * when the norm writes in place and when its output feeds a q8 product (the quantization
 * fused too); at 3 tokens and at 64 (rows of 4096 then split over clusters of blocks). */
TEST(cuda_add_rmsnorm) {
    if (!gpu) SKIP("%s", g_skip);
    static const int64_t dims[] = {64, 4096, 64, 4096};
    for (size_t di = 0; di < 4; di++) {
        const int64_t dim = dims[di], n = di < 2 ? 3 : 64;
        const size_t ne = (size_t)(n * dim);
        float *x = rand_vec(ne, 3.0f), *r = rand_vec(ne, 1.0f), *w = rand_vec((size_t)dim, 1.0f);
        float *yc = malloc(ne * sizeof(float)), *xc = malloc(ne * sizeof(float));
        memcpy(xc, x, ne * sizeof(float));
        cpu->ops->add(cpu, xc, r, (int64_t)ne);
        cpu->ops->rmsnorm(cpu, xc, n, dim, 1e-5f, w, yc);
        for (int in_place = 0; in_place < 2; in_place++) {
            float *xd = gpu_vec(x, ne), *rd = gpu_vec(r, ne), *wd = gpu_vec(w, (size_t)dim);
            float *yd = in_place ? xd : gpu->ops->alloc(gpu, ne * sizeof(float));
            gpu->ops->add(gpu, xd, rd, (int64_t)ne);
            gpu->ops->rmsnorm(gpu, xd, n, dim, 1e-5f, wd, yd);
            float *yg = gpu_get(yd, ne);
            if (!in_place) {
                float *xg = gpu_get(xd, ne);
                check_ew("add + rmsnorm: sum", xg, xc, ne);
                free(xg);
            }
            check_ew(in_place ? "add + rmsnorm (in place)" : "add + rmsnorm", yg, yc, ne);
            CHECKF(max_abs(yg, yc, ne) == 0, "add + rmsnorm dim=%lld n=%lld: not bit-exact",
                   (long long)dim, (long long)n);
            gpu_sync();
            free(yg);
            gpu->ops->free(gpu, xd);
            gpu->ops->free(gpu, rd);
            gpu->ops->free(gpu, wd);
            if (!in_place) gpu->ops->free(gpu, yd);
        }
        free(x);
        free(r);
        free(w);
        free(yc);
        free(xc);
    }
}

TEST(cuda_rope) {
    if (!gpu) SKIP("%s", g_skip);
    static float ff[32];
    for (int i = 0; i < 32; i++) ff[i] = 1.0f + (float)i * 0.37f;
    const int32_t n_head = 4, head_dim = 128, n = 5;
    const int64_t ld = n_head * head_dim + 40;
    static const int32_t pos_a[] = {0, 1, 77, 4000, 131000};
    static const int32_t pos_b[] = {3, 9, 10, 11, 12};
    for (int cfg = 0; cfg < 4; cfg++) {
        rl_rope_params p = {
            .n_rot = cfg == 3 ? 128 : 64,
            .mode = cfg & 1 ? RL_ROPE_NEOX : RL_ROPE_NORMAL,
            .n_ctx_orig = 4096,
            .freq_base = cfg == 2 ? 500000.0f : 10000.0f,
            .freq_scale = cfg >= 2 ? 0.25f : 1.0f,
            .ext_factor = cfg == 2 ? 1.0f : 0.0f,
            .attn_factor = 1.0f,
            .beta_fast = 32.0f,
            .beta_slow = 1.0f,
            .freq_factors = cfg == 1 ? ff : NULL,
        };
        for (int pass = 0; pass < 3; pass++) {
            const int32_t *pos = pass == 1 ? pos_b : pos_a; /* a, b, a again: cache hits */
            float *x = rand_vec((size_t)(n * ld), 1.0f);
            float *xd = gpu_vec(x, (size_t)(n * ld));
            cpu->ops->rope(cpu, x, n, ld, n_head, head_dim, pos, &p);
            gpu->ops->rope(gpu, xd, n, ld, n_head, head_dim, pos, &p);
            float *xg = gpu_get(xd, (size_t)(n * ld));
            char what[64];
            snprintf(what, sizeof what, "rope cfg %d pass %d", cfg, pass);
            check_ew(what, xg, x, (size_t)(n * ld));
            free(x);
            free(xg);
            gpu->ops->free(gpu, xd);
        }
        /* q and k back to back (one launch: backend_cuda.c joins them), k with fewer heads
         * and its own row stride, both against the CPU bit for bit */
        const int64_t ld_k = 2 * head_dim + 8;
        float *q = rand_vec((size_t)(n * ld), 1.0f), *k = rand_vec((size_t)(n * ld_k), 1.0f);
        float *qd = gpu_vec(q, (size_t)(n * ld)), *kd = gpu_vec(k, (size_t)(n * ld_k));
        cpu->ops->rope(cpu, q, n, ld, n_head, head_dim, pos_a, &p);
        cpu->ops->rope(cpu, k, n, ld_k, 2, head_dim, pos_a, &p);
        gpu->ops->rope(gpu, qd, n, ld, n_head, head_dim, pos_a, &p);
        gpu->ops->rope(gpu, kd, n, ld_k, 2, head_dim, pos_a, &p);
        float *qg = gpu_get(qd, (size_t)(n * ld)), *kg = gpu_get(kd, (size_t)(n * ld_k));
        CHECKF(max_abs(qg, q, (size_t)(n * ld)) == 0 && max_abs(kg, k, (size_t)(n * ld_k)) == 0,
               "rope q + k cfg %d: not the CPU's bits (q %.3g, k %.3g)", cfg,
               max_abs(qg, q, (size_t)(n * ld)), max_abs(kg, k, (size_t)(n * ld_k)));
        free(q);
        free(k);
        free(qg);
        free(kg);
        gpu->ops->free(gpu, qd);
        gpu->ops->free(gpu, kd);
    }
    gpu_sync();
}

TEST(cuda_elementwise) {
    if (!gpu) SKIP("%s", g_skip);
    const int64_t N = 10000;
    float *x = rand_vec(N, 4.0f), *y = rand_vec(N, 1.0f);
    float *xd = gpu_vec(x, N), *yd = gpu_vec(y, N), *g;
    cpu->ops->add(cpu, x, y, N);
    gpu->ops->add(gpu, xd, yd, N);
    check_ew("add", g = gpu_get(xd, N), x, N);
    free(g);
    cpu->ops->scale(cpu, x, N, -0.37f);
    gpu->ops->scale(gpu, xd, N, -0.37f);
    check_ew("scale", g = gpu_get(xd, N), x, N);
    free(g);
    cpu->ops->softcap(cpu, x, N, 1.5f);
    gpu->ops->softcap(gpu, xd, N, 1.5f);
    check_ew("softcap", g = gpu_get(xd, N), x, N);
    free(g);
    cpu->ops->fill(cpu, x, N, 0.125f);
    gpu->ops->fill(gpu, xd, N, 0.125f);
    check_ew("fill", g = gpu_get(xd, N), x, N);
    free(g);

    /* bias over rows with a stride */
    const int64_t n = 3, dim = 100, ld = 130;
    float *m = rand_vec((size_t)(n * ld), 1.0f), *b = rand_vec((size_t)dim, 1.0f);
    float *md = gpu_vec(m, (size_t)(n * ld)), *bd = gpu_vec(b, (size_t)dim);
    cpu->ops->add_row(cpu, m, n, dim, ld, b);
    gpu->ops->add_row(gpu, md, n, dim, ld, bd);
    check_ew("add_row", g = gpu_get(md, (size_t)(n * ld)), m, (size_t)(n * ld));
    free(g);

    /* gated activations: separate gate/up and fused gate;up rows */
    const int64_t gn = 4, gdim = 1000;
    float *gu = rand_vec((size_t)(gn * 2 * gdim), 2.0f), *oc = malloc(gn * gdim * 4);
    float *gud = gpu_vec(gu, (size_t)(gn * 2 * gdim)), *od = gpu->ops->alloc(gpu, gn * gdim * 4);
    for (int act = 0; act < 2; act++) {
        rl_glu_act a = act ? RL_GLU_GELU_TANH : RL_GLU_SILU;
        cpu->ops->glu(cpu, a, gu, 2 * gdim, gu + gdim, 2 * gdim, gn, gdim, oc);
        gpu->ops->glu(gpu, a, gud, 2 * gdim, gud + gdim, 2 * gdim, gn, gdim, od);
        check_ew(act ? "geglu" : "swiglu", g = gpu_get(od, (size_t)(gn * gdim)), oc,
                 (size_t)(gn * gdim));
        free(g);
    }

    /* row gathers: into another buffer, and compaction in place */
    const int64_t rdim = 300;
    float *r = rand_vec(10 * rdim, 1.0f), *rc = malloc(10 * rdim * 4);
    float *rd = gpu_vec(r, 10 * rdim), *rod = gpu->ops->alloc(gpu, 10 * rdim * 4);
    static const int32_t gids[] = {3, 1, 1, 0};
    cpu->ops->get_rows_f32(cpu, r, gids, 4, rdim, rc);
    gpu->ops->get_rows_f32(gpu, rd, gids, 4, rdim, rod);
    check_ew("get_rows_f32", g = gpu_get(rod, 4 * rdim), rc, 4 * rdim);
    free(g);
    static const int32_t cids[] = {2, 3, 5, 9};
    memcpy(rc, r, 10 * rdim * 4);
    cpu->ops->get_rows_f32(cpu, rc, cids, 4, rdim, rc);
    gpu->ops->get_rows_f32(gpu, rd, cids, 4, rdim, rd);
    check_ew("get_rows_f32 in place", g = gpu_get(rd, 4 * rdim), rc, 4 * rdim);
    free(g);

    /* MoE combine */
    float *xs = rand_vec(10 * rdim, 1.0f), *ys = rand_vec(3 * rdim, 1.0f);
    float *xsd = gpu_vec(xs, 10 * rdim), *ysd = gpu_vec(ys, 3 * rdim);
    static const int32_t sids[] = {7, 2, 9};
    static const float sw[] = {0.5f, -1.25f, 2.0f};
    cpu->ops->add_rows_scaled(cpu, xs, rdim, sids, sw, 3, ys);
    gpu->ops->add_rows_scaled(gpu, xsd, rdim, sids, sw, 3, ysd);
    check_ew("add_rows_scaled", g = gpu_get(xsd, 10 * rdim), xs, 10 * rdim);
    free(g);
    gpu_sync();

    void *dev[] = {xd, yd, md, bd, gud, od, rd, rod, xsd, ysd};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) gpu->ops->free(gpu, dev[i]);
    free(x);
    free(y);
    free(m);
    free(b);
    free(gu);
    free(oc);
    free(r);
    free(rc);
    free(xs);
    free(ys);
}

/* ---- KV cache: write, copy and attention ---- */
typedef struct kv_pair {
    rl_kv_layer c, g; /* CPU and GPU tables */
} kv_pair;

static void kv_make(kv_pair *kv, rl_type t, int32_t n_head_kv, int32_t hdk, int32_t hdv,
                    int32_t n_cells) {
    rl_kv_layer l = {.type = t, .n_embd_k = n_head_kv * hdk, .n_embd_v = n_head_kv * hdv};
    rl_type_row_bytes(t, l.n_embd_k, &l.k_row_bytes);
    rl_type_row_bytes(t, l.n_embd_v, &l.v_row_bytes);
    kv->c = kv->g = l;
    kv->c.k = calloc((size_t)n_cells, l.k_row_bytes);
    kv->c.v = calloc((size_t)n_cells, l.v_row_bytes);
    kv->g.k = gpu_bytes(kv->c.k, (size_t)n_cells * l.k_row_bytes);
    kv->g.v = gpu_bytes(kv->c.v, (size_t)n_cells * l.v_row_bytes);
}

static void kv_free(kv_pair *kv) {
    free(kv->c.k);
    free(kv->c.v);
    gpu->ops->free(gpu, kv->g.k);
    gpu->ops->free(gpu, kv->g.v);
}

/* Write n rows (random, row strides ld_k / ld_v) into cells on both backends. */
static void kv_fill(kv_pair *kv, const int32_t *cells, int64_t n) {
    const int64_t ld_k = kv->c.n_embd_k + 13, ld_v = kv->c.n_embd_v + 7;
    float *k = rand_vec((size_t)(n * ld_k), 1.0f), *v = rand_vec((size_t)(n * ld_v), 1.0f);
    float *kd = gpu_vec(k, (size_t)(n * ld_k)), *vd = gpu_vec(v, (size_t)(n * ld_v));
    cpu->ops->kv_write(cpu, &kv->c, k, ld_k, v, ld_v, n, cells);
    gpu->ops->kv_write(gpu, &kv->g, kd, ld_k, vd, ld_v, n, cells);
    gpu->ops->free(gpu, kd);
    gpu->ops->free(gpu, vd);
    free(k);
    free(v);
}

static void kv_compare(const kv_pair *kv, int32_t n_cells, const char *what) {
    for (int part = 0; part < 2; part++) {
        const size_t rb = part ? kv->c.v_row_bytes : kv->c.k_row_bytes;
        const size_t b = rb * (size_t)n_cells;
        uint8_t *h = malloc(b);
        gpu->ops->to_host(gpu, h, part ? kv->g.v : kv->g.k, b);
        size_t bad = 0;
        const uint8_t *ref = part ? kv->c.v : kv->c.k;
        for (size_t i = 0; i < b; i++) {
            if (h[i] == ref[i]) continue;
            if (bad++ < 4)
                fprintf(stderr, "  %s %s (%s): byte %zu (row %zu, +%zu): cpu %02x gpu %02x\n", what,
                        part ? "V" : "K", rl_type_name(kv->c.type), i, i / rb, i % rb, ref[i],
                        h[i]);
        }
        CHECKF(bad == 0, "%s %s (%s): %zu of %zu bytes differ", what, part ? "V" : "K",
               rl_type_name(kv->c.type), bad, b);
        free(h);
    }
}

TEST(cuda_kv_write_copy) {
    if (!gpu) SKIP("%s", g_skip);
    static const rl_type types[] = {RL_TYPE_F32, RL_TYPE_F16, RL_TYPE_Q8_0};
    static const int32_t cells[] = {3, 60, 0, 17, 18};
    static const int32_t src[] = {3, 60}, dst[] = {40, 41};
    for (int i = 0; i < 3; i++) {
        kv_pair kv;
        kv_make(&kv, types[i], 2, 128, 64, 64);
        kv_fill(&kv, cells, 5);
        kv_compare(&kv, 64, "kv_write");
        cpu->ops->kv_copy(cpu, &kv.c, src, dst, 2);
        gpu->ops->kv_copy(gpu, &kv.g, src, dst, 2);
        kv_compare(&kv, 64, "kv_copy");
        gpu_sync();
        kv_free(&kv);
    }
}

typedef struct attn_case {
    const char *name;
    rl_type type;
    int32_t n_head, n_head_kv, hdk, hdv;
    int32_t n_cells, n_tok;
    float softcap;
    bool decode_long; /* one token over every cell, one empty span */
} attn_case;

static void check_attention(const attn_case *ac) {
    kv_pair kv;
    kv_make(&kv, ac->type, ac->n_head_kv, ac->hdk, ac->hdv, ac->n_cells);
    int32_t *all = malloc((size_t)ac->n_cells * sizeof(int32_t));
    for (int32_t i = 0; i < ac->n_cells; i++) all[i] = i;
    kv_fill(&kv, all, ac->n_cells);
    /* both attend over the CPU's bytes (the KV write has its own test) */
    gpu->ops->from_host(gpu, kv.g.k, kv.c.k, (size_t)ac->n_cells * kv.c.k_row_bytes);
    gpu->ops->from_host(gpu, kv.g.v, kv.c.v, (size_t)ac->n_cells * kv.c.v_row_bytes);
    /* the list: a random permutation of the cells (a paged cache's order) */
    for (int32_t i = ac->n_cells - 1; i > 0; i--) {
        int32_t j = (int32_t)(rnd() % (uint64_t)(i + 1)), t = all[i];
        all[i] = all[j];
        all[j] = t;
    }
    const int32_t n_tok = ac->n_tok;
    int32_t *span = malloc(2 * (size_t)n_tok * sizeof(int32_t));
    for (int32_t t = 0; t < n_tok; t++) {
        if (ac->decode_long) {
            span[2 * t] = 0;
            span[2 * t + 1] = t == 1 ? 0 : ac->n_cells; /* token 1: empty */
        } else {
            /* causal-like: token t sees the first n_cells - n_tok + t + 1 cells, token 0
             * a sliding window of the last 16 of them */
            span[2 * t] = t == 0 ? ac->n_cells - n_tok - 15 : 0;
            span[2 * t + 1] = ac->n_cells - n_tok + t + 1;
        }
    }
    const int64_t q_ld = (int64_t)ac->n_head * ac->hdk + 8,
                  out_ld = (int64_t)ac->n_head * ac->hdv + 4;
    float *q = rand_vec((size_t)(n_tok * q_ld), 1.0f);
    float *oc = calloc((size_t)(n_tok * out_ld), sizeof(float));
    float *qd = gpu_vec(q, (size_t)(n_tok * q_ld)), *od = gpu_vec(oc, (size_t)(n_tok * out_ld));
    rl_attn_args a = {
        .n_tok = n_tok,
        .n_head = ac->n_head,
        .n_head_kv = ac->n_head_kv,
        .head_dim_k = ac->hdk,
        .head_dim_v = ac->hdv,
        .q = q,
        .q_ld = q_ld,
        .out = oc,
        .out_ld = out_ld,
        .cells = all,
        .span = span,
        .scale = 1.0f / sqrtf((float)ac->hdk),
        .softcap = ac->softcap,
    };
    cpu->ops->attention(cpu, &kv.c, &a);
    a.q = qd;
    a.out = od;
    for (int rep = 0; rep < 2; rep++) { /* the second call reuses the copied cell list */
        gpu->ops->attention(gpu, &kv.g, &a);
        float *og = gpu_get(od, (size_t)(n_tok * out_ld));
        gpu_sync();
        double e = rl_test_nmse(og, oc, (size_t)(n_tok * out_ld));
        CHECKF(e <= 1e-7, "attention %s: nmse %.3g (max abs %.3g)", ac->name, e,
               max_abs(og, oc, (size_t)(n_tok * out_ld)));
        if (rep == 0)
            fprintf(stderr, "  attention %-22s nmse %.3g, max abs %.3g\n", ac->name, e,
                    max_abs(og, oc, (size_t)(n_tok * out_ld)));
        free(og);
    }
    gpu->ops->free(gpu, qd);
    gpu->ops->free(gpu, od);
    free(q);
    free(oc);
    free(span);
    free(all);
    kv_free(&kv);
}

TEST(cuda_attention) {
    if (!gpu) SKIP("%s", g_skip);
    static const attn_case cases[] = {
        {"gqa4 f16 hd64", RL_TYPE_F16, 8, 2, 64, 64, 200, 6, 0.0f, false},
        {"gqa12 f32 hd128 cap", RL_TYPE_F32, 12, 1, 128, 128, 100, 5, 30.0f, false},
        {"mha q8_0 hd128/64", RL_TYPE_Q8_0, 4, 4, 128, 64, 150, 7, 0.0f, false},
        {"gqa4 f16 decode 3000", RL_TYPE_F16, 32, 8, 128, 128, 3000, 2, 0.0f, true},
        {"gqa2 f16 hd256", RL_TYPE_F16, 4, 2, 256, 256, 90, 40, 0.0f, false},
        {"gqa2 f32 hd80 long", RL_TYPE_F32, 8, 4, 80, 80, 1000, 1, 0.0f, true},
        /* single tokens over short spans (the short kernel up to 256 cells, F16 heads of 64
         * and 128; past it, and Q8_0, the other kernels) */
        {"1tok gqa4 f16 hd64 x1", RL_TYPE_F16, 32, 8, 64, 64, 1, 1, 0.0f, true},
        {"1tok gqa4 f16 hd64 x64", RL_TYPE_F16, 32, 8, 64, 64, 64, 1, 0.0f, true},
        {"1tok gqa4 f16 hd64 x100", RL_TYPE_F16, 32, 8, 64, 64, 100, 1, 0.0f, true},
        {"1tok gqa4 f16 hd128 x129", RL_TYPE_F16, 32, 8, 128, 128, 129, 1, 0.0f, true},
        {"1tok gqa8 f16 hd128 x256", RL_TYPE_F16, 16, 2, 128, 128, 256, 1, 0.0f, true},
        {"1tok gqa8 f16 hd64 x200 cap", RL_TYPE_F16, 16, 2, 64, 64, 200, 1, 30.0f, true},
        {"1tok gqa3 f16 hd64 x77", RL_TYPE_F16, 12, 4, 64, 64, 77, 1, 0.0f, true},
        {"1tok gqa2 f16 hd64 x40", RL_TYPE_F16, 4, 2, 64, 64, 40, 1, 0.0f, true},
        {"1tok mha f16 hd128 x33", RL_TYPE_F16, 8, 8, 128, 128, 33, 1, 0.0f, true},
        {"1tok gqa4 f16 hd128 x300", RL_TYPE_F16, 32, 8, 128, 128, 300, 1, 0.0f, true},
        {"1tok gqa4 q8_0 hd64 x100", RL_TYPE_Q8_0, 32, 8, 64, 64, 100, 1, 0.0f, true},
        {"1tok gqa8 q8_0 hd128 x250", RL_TYPE_Q8_0, 16, 2, 128, 128, 250, 1, 0.0f, true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_attention(&cases[i]);
}

/* ---- decode steps replayed as CUDA graphs ---- */

/* One decode-like step of a 256-wide token on be: x from the host, RoPE at position
 * 10 + step, its K and V rows written to cell `step`, attention over cells 0..step (a
 * list that grows every step), a Q4_K product, the result back to the host. */
static void graph_step(rl_backend *be, const rl_kv_layer *kv, const qweight *w, float *xd,
                       float *od, float *yd, int32_t step, const float *xh, float *yh) {
    static const rl_rope_params rp = {.n_rot = 64, .mode = RL_ROPE_NORMAL, .n_ctx_orig = 4096,
                                      .freq_base = 10000.0f, .freq_scale = 1.0f,
                                      .attn_factor = 1.0f, .beta_fast = 32.0f, .beta_slow = 1.0f};
    int32_t cells[16], span[2] = {0, step + 1}, pos = 10 + step;
    for (int32_t i = 0; i <= step; i++) cells[i] = i;
    be->ops->from_host(be, xd, xh, 256 * sizeof(float));
    be->ops->rope(be, xd, 1, 256, 4, 64, &pos, &rp);
    be->ops->kv_write(be, kv, xd, 256, xd + 128, 256, 1, &cells[step]);
    const rl_attn_args a = {.n_tok = 1, .n_head = 4, .n_head_kv = 2, .head_dim_k = 64,
                            .head_dim_v = 64, .q = xd, .q_ld = 256, .out = od, .out_ld = 256,
                            .cells = cells, .span = span, .scale = 0.125f};
    be->ops->attention(be, kv, &a);
    CHECK(be->ops->matmul(be, &w->wd, od, 1, yd) == RL_OK);
    be->ops->to_host(be, yh, yd, 512 * sizeof(float));
    CHECK(be->ops->sync(be) == RL_OK);
}

TEST(cuda_graph_replay) {
    if (!gpu) SKIP("%s", g_skip);
    /* the same steps on a second instance with graphs off give the same bits */
    setenv("RUVLLM_CUDA_GRAPHS", "0", 1);
    rl_backend *eager = NULL;
    rl_status st = gpu->ops->fork(gpu, &eager);
    unsetenv("RUVLLM_CUDA_GRAPHS");
    CHECK(st == RL_OK);
    if (st != RL_OK) return;
    qweight w;
    CHECK(make_weight(RL_TYPE_Q4_K, 256, 512, &w));
    kv_pair kv[2];
    kv_make(&kv[0], RL_TYPE_F16, 2, 64, 64, 16);
    kv_make(&kv[1], RL_TYPE_F16, 2, 64, 64, 16);
    float *xd[2], *od[2], *yd[2];
    for (int b = 0; b < 2; b++) {
        xd[b] = gpu->ops->alloc(gpu, 256 * sizeof(float));
        od[b] = gpu->ops->alloc(gpu, 256 * sizeof(float));
        yd[b] = gpu->ops->alloc(gpu, 512 * sizeof(float));
    }
    int64_t e0, c0, r0, e1, c1, r1;
    CHECK(rl__cuda_graph_stats(gpu, &e0, &c0, &r0));
    int bad = 0;
    for (int32_t step = 0; step < 8; step++) {
        float *xh = rand_vec(256, 1.0f), yg[512], ye[512];
        graph_step(gpu, &kv[0].g, &w, xd[0], od[0], yd[0], step, xh, yg);
        graph_step(eager, &kv[1].g, &w, xd[1], od[1], yd[1], step, xh, ye);
        bad += memcmp(yg, ye, sizeof yg) != 0;
        free(xh);
    }
    CHECKF(bad == 0, "graph replay: %d of 8 steps differ from eager launches", bad);
    CHECK(rl__cuda_graph_stats(gpu, &e1, &c1, &r1));
    /* a step is one list (to_host runs it; sync finds the queue empty): the first runs
     * eagerly, the second is captured, the rest replay */
    CHECKF(c1 - c0 >= 1 && r1 - r0 >= 5, "graphs: %lld captured, %lld replayed in 8 steps",
           (long long)(c1 - c0), (long long)(r1 - r0));
    CHECK(rl__cuda_graph_stats(eager, &e1, &c1, &r1) && c1 == 0 && r1 == 0 && e1 >= 8);
    CHECK(!rl__cuda_graph_stats(cpu, &e1, &c1, &r1));
    for (int b = 0; b < 2; b++) {
        gpu->ops->free(gpu, xd[b]);
        gpu->ops->free(gpu, od[b]);
        gpu->ops->free(gpu, yd[b]);
        kv_free(&kv[b]);
    }
    free_weight(&w);
    rl__backend_free(eager);
}

/* ---- products of many tokens on the int8 tensor cores (mmq.cu) ----
 * Q4_K, Q6_K, Q8_0 and Q4_0 weights of odd row counts, products of 5 to 1500 tokens (each
 * of the tiled kernel's shapes and their edges; RUVLLM_CUDA_MMQ_TILE=0 for the per-warp
 * kernel) on a fork that sends every size to mmq.cu (RUVLLM_CUDA_MMQ_MAX), the four types one after another on the same input (the later ones reuse
 * the first one's quantized activations; across types, with split and unsplit K). Each
 * product against the CPU backend over all of a type's products: 1e-6 for Q8_0 and Q4_0
 * (the CPU rounds their activations as Q8_0, the kernel's rounding: only float order
 * differs; measured 5e-8), for Q4_K and Q6_K 1e-6 too (the CPU rounds as Q8_K, per 256,
 * as the kernel does by default) or 5e-4 with RUVLLM_CUDA_MMQ_Q8K=0 (per 32); and float64
 * on the decoded weights (5e-5 over all, 1e-4 for each product: activations as int8 per 32
 * values lose about 3e-5; twice that for the per-256 rounding of Q8_K); the output is poisoned with NaN
 * first, so an unwritten element fails; and a fork with the kernel off (RUVLLM_CUDA_MMQ=0:
 * decoded weights + cuBLAS) gives other bits, so the products above did take it. */
TEST(cuda_mmq) {
    if (!gpu) SKIP("%s", g_skip);
    setenv("RUVLLM_CUDA_MMQ", "0", 1);
    rl_backend *off = NULL, *on = NULL;
    rl_status st = gpu->ops->fork(gpu, &off);
    unsetenv("RUVLLM_CUDA_MMQ");
    CHECK(st == RL_OK);
    if (st != RL_OK) return;
    setenv("RUVLLM_CUDA_MMQ_MAX", "1000000", 1);
    st = gpu->ops->fork(gpu, &on);
    unsetenv("RUVLLM_CUDA_MMQ_MAX");
    CHECK(st == RL_OK);
    if (st != RL_OK) {
        rl__backend_free(off);
        return;
    }
    static const rl_type types[] = {RL_TYPE_Q4_K, RL_TYPE_Q6_K, RL_TYPE_Q8_0, RL_TYPE_Q4_0};
    enum { NT = sizeof types / sizeof types[0] };
    /* rows not multiples of the kernels' 64 / 128; 256 x 1029 at 1500 tokens takes the
     * 128 x 128 tiles (enough of them for an H100), the others the 64-row ones; 2048 x 1029
     * at 33 to 64 tokens the 128-row tiles with K split over 4 blocks, and 256 x 66000 at 20
     * tokens the 128 x 32 tiles of tall matrices (the output head's), both with the weights
     * by bulk copies (RUVLLM_CUDA_MMQ_BULK; Q6_K's rows are 16-byte aligned only at K 2048,
     * the others take cp.async); 14336 x 67 at up to 32 tokens the streaming kernel with K
     * split in 2 (4 steps a warp: the lean kernels' ring of 4 stages, RUVLLM_CUDA_MMQ_LEAN) */
    static const int64_t shapes[][2] = {{256, 67},   {2048, 301},  {512, 1029},
                                        {256, 1029}, {2048, 1029}, {256, 66000},
                                        {14336, 67}};
    /* 5 to 32 (33 and 64 too on the 67 and 301 rows): the streaming kernel (8, 16 or 32
     * tokens a block; 20, 27 and 33 ragged) */
    static const int64_t ns[] = {5, 8, 9, 12, 16, 20, 27, 32, 33, 64, 100, 130, 512, 600, 1500};
    err_acc vs_cpu[NT] = {{0, 0}}, vs_ref[NT] = {{0, 0}};
    const char *q8k_env = getenv("RUVLLM_CUDA_MMQ_Q8K"); /* on unless "0" */
    const bool q8k = !(q8k_env && q8k_env[0] == '0');
    double ref_bound[NT], cpu_bound[NT];
    for (int ti = 0; ti < NT; ti++) {
        const bool kq = types[ti] == RL_TYPE_Q4_K || types[ti] == RL_TYPE_Q6_K;
        ref_bound[ti] = kq && q8k ? 1e-4 : 5e-5;
        cpu_bound[ti] = kq && !q8k ? 5e-4 : 1e-6;
    }
    int same_as_off = 0, products = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int64_t K = shapes[si][0], rows = shapes[si][1];
        qweight q[NT];
        for (int ti = 0; ti < NT; ti++) CHECK(make_weight(types[ti], K, rows, &q[ti]));
        /* the weights went up through `gpu`, whose small copies wait in its queue and whose
         * stream is not the forks': finish them before the forks read the weights */
        gpu_sync();
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            const int64_t n = ns[ni];
            if (K * rows * n > 400000000) continue; /* the float64 reference's cost */
            const size_t ny = (size_t)(n * rows);
            float *x = rand_vec((size_t)(n * K), 1.0f);
            float *xd = on->ops->alloc(on, (size_t)(n * K) * sizeof(float));
            on->ops->from_host(on, xd, x, (size_t)(n * K) * sizeof(float));
            float *xo = off->ops->alloc(off, (size_t)(n * K) * sizeof(float));
            off->ops->from_host(off, xo, x, (size_t)(n * K) * sizeof(float));
            float *yd[NT], *yo[NT];
            for (int ti = 0; ti < NT; ti++) {
                yd[ti] = on->ops->alloc(on, ny * sizeof(float));
                yo[ti] = off->ops->alloc(off, ny * sizeof(float));
                on->ops->fill(on, yd[ti], (int64_t)ny, NAN);
            }
            for (int ti = 0; ti < NT; ti++) {
                CHECK(on->ops->matmul(on, &q[ti].wd, xd, n, yd[ti]) == RL_OK);
                CHECK(off->ops->matmul(off, &q[ti].wd, xo, n, yo[ti]) == RL_OK);
            }
            for (int ti = 0; ti < NT; ti++) {
                float *yg = malloc(ny * sizeof(float)), *yf = malloc(ny * sizeof(float));
                on->ops->to_host(on, yg, yd[ti], ny * sizeof(float));
                off->ops->to_host(off, yf, yo[ti], ny * sizeof(float));
                CHECK(on->ops->sync(on) == RL_OK);
                CHECK(off->ops->sync(off) == RL_OK);
                float *yc = malloc(ny * sizeof(float)), *yr = malloc(ny * sizeof(float));
                CHECK(cpu->ops->matmul(cpu, &q[ti].w, x, n, yc) == RL_OK);
                for (int64_t t = 0; t < n; t++)
                    for (int64_t r = 0; r < rows; r++) {
                        double a = 0;
                        for (int64_t k = 0; k < K; k++) a += (double)q[ti].deq[r * K + k] * x[t * K + k];
                        yr[t * rows + r] = (float)a;
                    }
                int64_t unwritten = 0;
                for (size_t i = 0; i < ny; i++) unwritten += !isfinite(yg[i]);
                const double er = rl_test_nmse(yg, yr, ny), ec = rl_test_nmse(yg, yc, ny), eo = rl_test_nmse(yf, yr, ny);
                acc_add(&vs_cpu[ti], yg, yc, ny);
                acc_add(&vs_ref[ti], yg, yr, ny);
                same_as_off += memcmp(yg, yf, ny * sizeof(float)) == 0;
                products++;
                CHECKF(unwritten == 0, "mmq %s K=%lld rows=%lld n=%lld: %lld outputs not finite",
                       rl_type_name(types[ti]), (long long)K, (long long)rows, (long long)n,
                       (long long)unwritten);
                CHECKF(er <= 2 * ref_bound[ti],
                       "mmq %s K=%lld rows=%lld n=%lld: nmse vs float64 %.3g > %.0e (vs cpu %.3g)",
                       rl_type_name(types[ti]), (long long)K, (long long)rows, (long long)n, er,
                       2 * ref_bound[ti], ec);
                fprintf(stderr,
                        "  mmq %-5s K=%-4lld rows=%-4lld n=%-3lld nmse vs float64 %.3g, vs cpu %.3g "
                        "(cuBLAS path vs float64 %.3g)\n",
                        rl_type_name(types[ti]), (long long)K, (long long)rows, (long long)n, er,
                        ec, eo);
                free(yg);
                free(yf);
                free(yc);
                free(yr);
                on->ops->free(on, yd[ti]);
                off->ops->free(off, yo[ti]);
            }
            on->ops->free(on, xd);
            off->ops->free(off, xo);
            free(x);
        }
        for (int ti = 0; ti < NT; ti++) free_weight(&q[ti]);
    }
    for (int ti = 0; ti < NT; ti++) {
        const double ec = vs_cpu[ti].num / vs_cpu[ti].den, er = vs_ref[ti].num / vs_ref[ti].den;
        CHECKF(ec <= cpu_bound[ti], "mmq %s: nmse vs cpu %.3g over all > %.0e",
               rl_type_name(types[ti]), ec, cpu_bound[ti]);
        CHECKF(er <= ref_bound[ti], "mmq %s: nmse vs float64 %.3g over all > %.0e",
               rl_type_name(types[ti]), er, ref_bound[ti]);
        fprintf(stderr, "  mmq %-5s over all: nmse vs cpu %.3g, vs float64 %.3g\n",
                rl_type_name(types[ti]), ec, er);
    }
    CHECKF(same_as_off == 0, "mmq: %d of %d products bit-identical with the kernel off", same_as_off,
           products);
    rl__backend_free(off);
    rl__backend_free(on);
}

/* ---- the fuse pass (step.c) on one decode-like layer ----
 * RMSNorm, then q, k, v products of its output (joined into one streaming product over
 * three matrices), RoPE of q and k with the K/V cache write (one launch), split attention
 * over 100 cached cells plus the new one (its combine kernel quantizes the output for the
 * o product), the residual add, RMSNorm, gate and up (joined), SwiGLU, down. The same
 * steps on a fork with RUVLLM_CUDA_FUSE=0 must give the same bits everywhere (outputs and
 * cache bytes: each fused kernel does what the ops it replaces do); against the CPU the
 * cache write of the rotated k is exact when both start from the same k, and the products
 * stay within the q8 path's bound. Cases: RoPE normal over the whole head into an F16
 * cache; NeoX over half of it into F32. */
enum { FL_X, FL_H, FL_Q, FL_K, FL_V, FL_O, FL_Y, FL_H2, FL_G, FL_U, FL_A, FL_Z, FL_N };
typedef struct fl_bufs {
    float *p[FL_N];
} fl_bufs;

static void fused_layer(rl_backend *be, fl_bufs *b, rl_kv_layer *kv, const qweight *w,
                        const float *nw, const float *xh, const rl_rope_params *rp, int32_t pos,
                        const int32_t *cells, int32_t n_cells, int64_t D, int64_t F) {
    be->ops->from_host(be, b->p[FL_X], xh, (size_t)D * sizeof(float));
    be->ops->rmsnorm(be, b->p[FL_X], 1, D, 1e-5f, nw, b->p[FL_H]);
    CHECK(be->ops->matmul(be, &w[0].wd, b->p[FL_H], 1, b->p[FL_Q]) == RL_OK);
    CHECK(be->ops->matmul(be, &w[1].wd, b->p[FL_H], 1, b->p[FL_K]) == RL_OK);
    CHECK(be->ops->matmul(be, &w[2].wd, b->p[FL_H], 1, b->p[FL_V]) == RL_OK);
    be->ops->rope(be, b->p[FL_Q], 1, D, 8, 128, &pos, rp);
    be->ops->rope(be, b->p[FL_K], 1, 256, 2, 128, &pos, rp);
    be->ops->kv_write(be, kv, b->p[FL_K], 256, b->p[FL_V], 256, 1, &cells[n_cells - 1]);
    const int32_t span[2] = {0, n_cells};
    const rl_attn_args a = {.n_tok = 1, .n_head = 8, .n_head_kv = 2, .head_dim_k = 128,
                            .head_dim_v = 128, .q = b->p[FL_Q], .q_ld = D, .out = b->p[FL_O], .out_ld = D,
                            .cells = cells, .span = span, .scale = 0.08838834764f};
    be->ops->attention(be, kv, &a);
    CHECK(be->ops->matmul(be, &w[3].wd, b->p[FL_O], 1, b->p[FL_Y]) == RL_OK);
    be->ops->add(be, b->p[FL_X], b->p[FL_Y], D);
    be->ops->rmsnorm(be, b->p[FL_X], 1, D, 1e-5f, nw, b->p[FL_H2]);
    CHECK(be->ops->matmul(be, &w[4].wd, b->p[FL_H2], 1, b->p[FL_G]) == RL_OK);
    CHECK(be->ops->matmul(be, &w[5].wd, b->p[FL_H2], 1, b->p[FL_U]) == RL_OK);
    be->ops->glu(be, RL_GLU_SILU, b->p[FL_G], F, b->p[FL_U], F, 1, F, b->p[FL_A]);
    CHECK(be->ops->matmul(be, &w[6].wd, b->p[FL_A], 1, b->p[FL_Z]) == RL_OK);
    CHECK(be->ops->sync(be) == RL_OK);
}

static float *fl_get(rl_backend *be, const float *d, size_t n) {
    float *h = malloc(n * sizeof(float));
    be->ops->to_host(be, h, d, n * sizeof(float));
    CHECK(be->ops->sync(be) == RL_OK);
    return h;
}

static void decode_fused_case(const char *mv2, const char *mv_r);

TEST(cuda_decode_fused) {
    if (!gpu) SKIP("%s", g_skip);
    /* the joined products through matvec.cu's mv2 kernel (off by default: on for Q4_K, Q6_K,
     * Q4_0 while this runs; the setting is the process's, read when a backend is made), then
     * through the streaming kernel (the default) with 2 rows per item for every product, so
     * that the separate products of the unfused fork take the same kernel and sums */
    decode_fused_case("1,1,0,1,0", NULL);
    decode_fused_case(NULL, "2,2,2,2,2");
}

static void decode_fused_case(const char *mv2, const char *mv_r) {
    if (mv2) setenv("RUVLLM_CUDA_MV2", mv2, 1);
    matvec_setting(mv_r);
    fprintf(stderr, "  decode fused: joined products through %s\n", mv2 ? "mv2" : "mv_kernel");
    setenv("RUVLLM_CUDA_FUSE", "0", 1);
    rl_backend *off = NULL;
    rl_status st = gpu->ops->fork(gpu, &off);
    unsetenv("RUVLLM_CUDA_FUSE");
    CHECK(st == RL_OK);
    if (st != RL_OK) {
        unsetenv("RUVLLM_CUDA_MV2");
        matvec_setting(NULL);
        return;
    }
    const int64_t D = 1024, F = 768;
    const int32_t n_cells = 101;
    /* wq, wk, wv, wo, wgate, wup, wdown */
    static const int64_t shp[7][2] = {{1024, 1024}, {1024, 256}, {1024, 256}, {1024, 1024},
                                      {1024, 768},  {1024, 768}, {768, 1024}};
    qweight w[7];
    for (int i = 0; i < 7; i++)
        CHECK(make_weight(i == 6 ? RL_TYPE_Q6_K : RL_TYPE_Q4_K, shp[i][0], shp[i][1], &w[i]));
    const int64_t outn[12] = {D, D, D, 256, 256, D, D, D, F, F, F, D};
    for (int cfg = 0; cfg < 2; cfg++) {
        const rl_rope_params rp = {.n_rot = cfg ? 64 : 128,
                                   .mode = cfg ? RL_ROPE_NEOX : RL_ROPE_NORMAL,
                                   .n_ctx_orig = 4096, .freq_base = 500000.0f, .freq_scale = 1.0f,
                                   .attn_factor = 1.0f, .beta_fast = 32.0f, .beta_slow = 1.0f};
        const rl_type kt = cfg ? RL_TYPE_F32 : RL_TYPE_F16;
        kv_pair kv[2];
        int32_t cells[101];
        for (int32_t i = 0; i < n_cells; i++) cells[i] = (i * 37) % 128; /* a permutation */
        kv_make(&kv[0], kt, 2, 128, 128, 128);
        kv_make(&kv[1], kt, 2, 128, 128, 128);
        kv_fill(&kv[0], cells, n_cells - 1);
        memcpy(kv[1].c.k, kv[0].c.k, 128 * kv[0].c.k_row_bytes);
        memcpy(kv[1].c.v, kv[0].c.v, 128 * kv[0].c.v_row_bytes);
        for (int i = 0; i < 2; i++) {
            gpu->ops->from_host(gpu, kv[i].g.k, kv[0].c.k, 128 * kv[0].c.k_row_bytes);
            gpu->ops->from_host(gpu, kv[i].g.v, kv[0].c.v, 128 * kv[0].c.v_row_bytes);
        }
        float *x = rand_vec((size_t)D, 1.0f), *nw = rand_vec((size_t)D, 1.0f);
        float *nwd = gpu_vec(nw, (size_t)D);
        fl_bufs b[2];
        for (int i = 0; i < 2; i++) {
            for (int j = 0; j < FL_N; j++)
                b[i].p[j] = gpu->ops->alloc(gpu, (size_t)outn[j] * sizeof(float));
        }
        fused_layer(gpu, &b[0], &kv[0].g, w, nwd, x, &rp, 500, cells, n_cells, D, F);
        fused_layer(off, &b[1], &kv[1].g, w, nwd, x, &rp, 500, cells, n_cells, D, F);
        static const char *names[12] = {"x", "h", "q", "k", "v", "attn", "o", "h2",
                                        "gate", "up", "glu", "down"};
        float *res[2][12];
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 12; j++)
                res[i][j] = fl_get(i ? off : gpu, b[i].p[j], (size_t)outn[j]);
        for (int j = 0; j < 12; j++)
            CHECKF(!memcmp(res[0][j], res[1][j], (size_t)outn[j] * sizeof(float)),
                   "fused layer cfg %d: %s differs from the unfused ops (max abs %.3g)", cfg,
                   names[j], max_abs(res[0][j], res[1][j], (size_t)outn[j]));
        for (int part = 0; part < 2; part++) {
            const size_t rb = part ? kv[0].c.v_row_bytes : kv[0].c.k_row_bytes;
            uint8_t *h0 = malloc(128 * rb), *h1 = malloc(128 * rb);
            gpu->ops->to_host(gpu, h0, part ? kv[0].g.v : kv[0].g.k, 128 * rb);
            off->ops->to_host(off, h1, part ? kv[1].g.v : kv[1].g.k, 128 * rb);
            CHECK(gpu->ops->sync(gpu) == RL_OK && off->ops->sync(off) == RL_OK);
            CHECKF(!memcmp(h0, h1, 128 * rb), "fused layer cfg %d: %s cache differs", cfg,
                   part ? "V" : "K");
            free(h0);
            free(h1);
        }
        /* products against the CPU on the GPU's own inputs */
        const int pin[7] = {1, 1, 1, 5, 7, 7, 10}, pout[7] = {2, 3, 4, 6, 8, 9, 11};
        for (int i = 0; i < 7; i++) {
            if (i <= 1) continue; /* q, k are rotated in place after the product */
            const int64_t rows = shp[i][1];
            float *yc = malloc((size_t)rows * sizeof(float));
            CHECK(cpu->ops->matmul(cpu, &w[i].w, res[0][pin[i]], 1, yc) == RL_OK);
            const double e = rl_test_nmse(res[0][pout[i]], yc, (size_t)rows);
            CHECKF(e <= 5e-4, "fused layer cfg %d: product %d nmse vs cpu %.3g", cfg, i, e);
            fprintf(stderr, "  fused layer cfg %d product %d (%s) nmse vs cpu %.3g\n", cfg, i,
                    names[pout[i]], e);
            free(yc);
        }
        /* the cache row of the new token against the CPU's rope + kv_write of the GPU's
         * own unrotated k and v (recomputed unfused on the GPU: the fork's k before rope
         * is not kept, so run its three products again) */
        {
            float *kd = off->ops->alloc(off, 256 * sizeof(float));
            CHECK(off->ops->matmul(off, &w[1].wd, b[1].p[FL_H], 1, kd) == RL_OK);
            float *k = fl_get(off, kd, 256);
            kv_pair ck;
            kv_make(&ck, kt, 2, 128, 128, 128);
            memcpy(ck.c.k, kv[0].c.k, 128 * kv[0].c.k_row_bytes);
            memcpy(ck.c.v, kv[0].c.v, 128 * kv[0].c.v_row_bytes);
            int32_t pos = 500;
            cpu->ops->rope(cpu, k, 1, 256, 2, 128, &pos, &rp);
            cpu->ops->kv_write(cpu, &ck.c, k, 256, res[0][4], 256, 1, &cells[n_cells - 1]);
            const size_t rbk = kv[0].c.k_row_bytes, rbv = kv[0].c.v_row_bytes;
            uint8_t *hk = malloc(128 * rbk), *hv = malloc(128 * rbv);
            gpu->ops->to_host(gpu, hk, kv[0].g.k, 128 * rbk);
            gpu->ops->to_host(gpu, hv, kv[0].g.v, 128 * rbv);
            CHECK(gpu->ops->sync(gpu) == RL_OK);
            CHECKF(!memcmp(hk, ck.c.k, 128 * rbk) && !memcmp(hv, ck.c.v, 128 * rbv),
                   "fused layer cfg %d: cache not the CPU's rope + kv_write bits", cfg);
            CHECKF(!memcmp(res[0][3], k, 256 * sizeof(float)),
                   "fused layer cfg %d: rotated k not the CPU's bits", cfg);
            free(hk);
            free(hv);
            free(k);
            kv_free(&ck);
            off->ops->free(off, kd);
        }
        for (int i = 0; i < 2; i++) {
            for (int j = 0; j < 12; j++) {
                free(res[i][j]);
                gpu->ops->free(gpu, b[i].p[j]);
            }
            kv_free(&kv[i]);
        }
        gpu->ops->free(gpu, nwd);
        free(x);
        free(nw);
    }
    for (int i = 0; i < 7; i++) free_weight(&w[i]);
    rl__backend_free(off);
    unsetenv("RUVLLM_CUDA_MV2");
    matvec_setting(NULL);
}

/* The small kernels (a residual add + RMSNorm feeding a Q4_K product of one token, its q8
 * codes from the norm; RMSNorms feeding an F16 and a Q8_0 product of one token, which the
 * step lets launch before the norm's wait by default; RoPE of q and k joined with the F16
 * cache write; a gated activation of 8 rows; the argmax of 3 rows of 128256, split over
 * blocks, with a planted tie: the lower index, and a NaN that never wins) by default, with
 * the next kernel launched before their wait (RUVLLM_CUDA_EARLY=7, read when a backend is
 * made) and without the F16 and Q8_0 products' early launch (RUVLLM_CUDA_EARLY_F16=0,
 * RUVLLM_CUDA_EARLY_Q8_0=0): the same bits.
 * Three passes each, so the last two replay a captured graph (the split argmax resets its
 * counters for the replay). */
enum { SP_X, SP_H, SP_Y, SP_Q, SP_K, SP_V, SP_GU, SP_O, SP_L, SP_H2, SP_F, SP_H3, SP_E, SP_N };
static const size_t sp_len[SP_N] = {2048, 2048,       512,        1024, 256, 256,  8 * 2048,
                                    8 * 1024, 3 * 128256, 2048, 512, 2048, 512};

/* One pass on be over its buffers d (SP_N of them, then the residual), the cache kv. */
static void small_pass(rl_backend *be, const qweight *w, const qweight *wf, const qweight *w8,
                       float *const *hin,
                       const float *nwd, float **d, rl_kv_layer *kvp, float **out, uint8_t *kvh,
                       int32_t *ids) {
    rl_kv_layer kv = *kvp;
    float *r = d[SP_N];
    for (int i = 0; i < SP_N; i++) be->ops->from_host(be, d[i], hin[i], sp_len[i] * sizeof(float));
    be->ops->from_host(be, r, hin[SP_H], 2048 * sizeof(float));
    be->ops->from_host(be, kv.k, kvh, 8 * 512);
    be->ops->from_host(be, kv.v, kvh, 8 * 512);
    const rl_rope_params rp = {.n_rot = 128, .mode = RL_ROPE_NORMAL, .n_ctx_orig = 4096,
                               .freq_base = 500000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f,
                               .beta_fast = 32.0f, .beta_slow = 1.0f};
    const int32_t pos = 77, cell = 5;
    be->ops->add(be, d[SP_X], r, 2048);
    be->ops->rmsnorm(be, d[SP_X], 1, 2048, 1e-5f, nwd, d[SP_H]);
    CHECK(be->ops->matmul(be, &w->wd, d[SP_H], 1, d[SP_Y]) == RL_OK);
    be->ops->rmsnorm(be, d[SP_X], 1, 2048, 1e-5f, nwd, d[SP_H2]);
    CHECK(be->ops->matmul(be, &wf->wd, d[SP_H2], 1, d[SP_F]) == RL_OK);
    be->ops->rmsnorm(be, d[SP_X], 1, 2048, 1e-5f, nwd, d[SP_H3]);
    CHECK(be->ops->matmul(be, &w8->wd, d[SP_H3], 1, d[SP_E]) == RL_OK);
    be->ops->rope(be, d[SP_Q], 1, 1024, 8, 128, &pos, &rp);
    be->ops->rope(be, d[SP_K], 1, 256, 2, 128, &pos, &rp);
    be->ops->kv_write(be, &kv, d[SP_K], 256, d[SP_V], 256, 1, &cell);
    be->ops->glu(be, RL_GLU_SILU, d[SP_GU], 2048, d[SP_GU] + 1024, 2048, 8, 1024, d[SP_O]);
    be->ops->argmax_to_host(be, d[SP_L], 3, 128256, ids);
    CHECK(be->ops->sync(be) == RL_OK);
    for (int i = 0; i < SP_N; i++) be->ops->to_host(be, out[i], d[i], sp_len[i] * sizeof(float));
    be->ops->to_host(be, kvh + 8 * 512, kv.k, 8 * 512);
    be->ops->to_host(be, kvh + 16 * 512, kv.v, 8 * 512);
}

TEST(cuda_small_paths) {
    if (!gpu) SKIP("%s", g_skip);
    qweight w, wf, w8;
    if (!make_weight(RL_TYPE_Q4_K, 2048, 512, &w)) return;
    if (!make_weight(RL_TYPE_F16, 2048, 512, &wf)) {
        free_weight(&w);
        return;
    }
    if (!make_weight(RL_TYPE_Q8_0, 2048, 512, &w8)) {
        free_weight(&w);
        free_weight(&wf);
        return;
    }
    float *hin[SP_N], *res[3][SP_N] = {{NULL}};
    for (int i = 0; i < SP_N; i++) hin[i] = rand_vec(sp_len[i], i == SP_L ? 4.0f : 1.0f);
    hin[SP_L][1000] = hin[SP_L][2000] = 99.0f;             /* row 0: the lower index */
    hin[SP_L][128256 + 128255] = 99.0f;                    /* row 1: the last value */
    hin[SP_L][2 * 128256 + 4096] = NAN;                    /* row 2: NaN never wins */
    hin[SP_L][2 * 128256 + 4097] = 98.0f;
    float *nw = rand_vec(2048, 1.0f), *nwd = gpu_vec(nw, 2048);
    uint8_t *kvh[3] = {NULL};
    int32_t ids[3][3];
    int made = 0;
    static const char *what[3] = {"default", "early", "no early F16 or Q8_0 product"};
    for (int v = 0; v < 3; v++) {
        if (v == 1) setenv("RUVLLM_CUDA_EARLY", "7", 1);
        if (v == 2) setenv("RUVLLM_CUDA_EARLY_F16", "0", 1);
        if (v == 2) setenv("RUVLLM_CUDA_EARLY_Q8_0", "0", 1);
        rl_backend *be = NULL;
        char err[256];
        CHECK(rl__backend_cuda_create(0, &be, err, sizeof err) == RL_OK);
        if (!be) break;
        made++;
        for (int i = 0; i < SP_N; i++) res[v][i] = malloc(sp_len[i] * sizeof(float));
        kvh[v] = calloc(24, 512);
        float *d[SP_N + 1];
        for (int i = 0; i <= SP_N; i++)
            d[i] = be->ops->alloc(be, (i < SP_N ? sp_len[i] : 2048) * sizeof(float));
        rl_kv_layer kv = {.type = RL_TYPE_F16, .n_embd_k = 256, .n_embd_v = 256,
                          .k_row_bytes = 512, .v_row_bytes = 512};
        kv.k = be->ops->alloc(be, 8 * 512);
        kv.v = be->ops->alloc(be, 8 * 512);
        for (int pass = 0; pass < 3; pass++) {
            ids[v][0] = ids[v][1] = ids[v][2] = -1;
            memset(kvh[v] + 8 * 512, 0, 16 * 512);
            small_pass(be, &w, &wf, &w8, hin, nwd, d, &kv, res[v], kvh[v], ids[v]);
            CHECKF(ids[v][0] == 1000 && ids[v][1] == 128255 && ids[v][2] == 4097,
                   "small paths %s pass %d: argmax %d %d %d", what[v], pass, ids[v][0],
                   ids[v][1], ids[v][2]);
        }
        for (int i = 0; i <= SP_N; i++) be->ops->free(be, d[i]);
        be->ops->free(be, kv.k);
        be->ops->free(be, kv.v);
        rl__backend_free(be);
        if (v == 1) unsetenv("RUVLLM_CUDA_EARLY");
        if (v == 2) unsetenv("RUVLLM_CUDA_EARLY_F16");
        if (v == 2) unsetenv("RUVLLM_CUDA_EARLY_Q8_0");
    }
    static const char *names[SP_N] = {"residual sum", "rmsnorm", "q8 product", "rope q",
                                      "rope k",       "v",       "gate/up",    "glu",
                                      "logits",       "rmsnorm 2", "f16 product",
                                      "rmsnorm 3",    "q8_0 product"};
    for (int v = 1; v < made; v++) {
        for (int i = 0; i < SP_N; i++)
            CHECKF(memcmp(res[0][i], res[v][i], sp_len[i] * sizeof(float)) == 0,
                   "small paths (%s): %s differs from the default (max abs %.3g)", what[v],
                   names[i], max_abs(res[0][i], res[v][i], sp_len[i]));
        CHECKF(memcmp(kvh[0] + 8 * 512, kvh[v] + 8 * 512, 16 * 512) == 0,
               "small paths (%s): the F16 cache rows differ from the default", what[v]);
    }
    for (int v = 0; v < made; v++) {
        for (int i = 0; i < SP_N; i++) free(res[v][i]);
        free(kvh[v]);
    }
    for (int i = 0; i < SP_N; i++) free(hin[i]);
    free(nw);
    gpu->ops->free(gpu, nwd);
    free_weight(&w);
    free_weight(&wf);
    free_weight(&w8);
}

/* The output head's row of logits copied into page-locked host memory (to_host right after
 * a one-token product of 16384+ rows): in parts with their copies joined (the default) and
 * in one launch copied after it (RUVLLM_CUDA_HEAD_PARTS=0), each against the CPU's product
 * over three passes (the list before the head a graph from the second), and the two within
 * rounding of each other (a part may split its rows over the warps otherwise). */
TEST(cuda_head_copy) {
    if (!gpu) SKIP("%s", g_skip);
    static const rl_type ht[] = {RL_TYPE_Q6_K, RL_TYPE_Q8_0, RL_TYPE_F16};
    const int64_t K = 2048, rows = 20000; /* not a whole number of the parts' row groups */
    for (size_t t = 0; t < sizeof ht / sizeof *ht; t++) {
        qweight w;
        if (!make_weight(ht[t], K, rows, &w)) return;
        float *x = rand_vec((size_t)K, 1.0f), *ref = malloc((size_t)rows * sizeof(float));
        for (int64_t r = 0; r < rows; r++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += (double)w.deq[r * K + k] * (double)x[k];
            ref[r] = (float)s;
        }
        float *out[2] = {NULL, NULL};
        for (int v = 0; v < 2; v++) {
            if (v == 1) setenv("RUVLLM_CUDA_HEAD_PARTS", "0", 1);
            rl_backend *be = NULL;
            char err[256];
            CHECK(rl__backend_cuda_create(0, &be, err, sizeof err) == RL_OK);
            out[v] = malloc((size_t)rows * sizeof(float));
            if (be && out[v]) {
                CHECK(be->ops->host_register(be, out[v], (size_t)rows * sizeof(float)) == RL_OK);
                float *xd = be->ops->alloc(be, (size_t)K * sizeof(float));
                float *yd = be->ops->alloc(be, (size_t)rows * sizeof(float));
                for (int pass = 0; pass < 3; pass++) {
                    memset(out[v], 0xff, (size_t)rows * sizeof(float)); /* NaN */
                    be->ops->from_host(be, xd, x, (size_t)K * sizeof(float));
                    CHECK(be->ops->matmul(be, &w.wd, xd, 1, yd) == RL_OK);
                    be->ops->to_host(be, out[v], yd, (size_t)rows * sizeof(float));
                    CHECK(be->ops->sync(be) == RL_OK);
                    const double e = rl_test_nmse(out[v], ref, (size_t)rows);
                    CHECKF(e <= 5e-4, "head copy %s (%s) pass %d: nmse %.3g against the CPU",
                           rl_type_name(ht[t]), v ? "one launch" : "parts", pass, e);
                }
                be->ops->host_unregister(be, out[v]);
                be->ops->free(be, xd);
                be->ops->free(be, yd);
            }
            rl__backend_free(be);
            if (v == 1) unsetenv("RUVLLM_CUDA_HEAD_PARTS");
        }
        if (out[0] && out[1]) {
            const double e = rl_test_nmse(out[0], out[1], (size_t)rows);
            CHECKF(e <= 1e-10, "head copy %s: parts against one launch nmse %.3g",
                   rl_type_name(ht[t]), e);
        }
        free(out[0]);
        free(out[1]);
        free(x);
        free(ref);
        free_weight(&w);
    }
}

int main(void) {
    char err[256] = "";
    rl_status st = rl__backend_cuda_create(0, &gpu, err, sizeof err);
    if (st != RL_OK) {
        gpu = NULL;
        snprintf(g_skip, sizeof g_skip, "no CUDA backend: %.200s", err);
    } else {
        CHECK(rl__backend_cpu_create(2, &cpu) == RL_OK);
    }
    RUN(cuda_matmul);
    RUN(cuda_matvec);
    RUN(cuda_q8_fused);
    RUN(cuda_get_rows);
    RUN(cuda_map_host);
    RUN(cuda_rmsnorm);
    RUN(cuda_add_rmsnorm);
    RUN(cuda_rope);
    RUN(cuda_elementwise);
    RUN(cuda_kv_write_copy);
    RUN(cuda_attention);
    RUN(cuda_graph_replay);
    RUN(cuda_decode_fused);
    RUN(cuda_mmq);
    RUN(cuda_small_paths);
    RUN(cuda_head_copy);
    rl__backend_free(gpu);
    rl__backend_free(cpu);
    return rl_test_finish();
}
