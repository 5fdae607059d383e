/* rl_matmul against a naive loop of rl_vec_dot, the thread pool, and the SIMD activation
 * quantizers against the reference quantizers (byte for byte).
 *
 * The naive loop quantizes each activation row with the REFERENCE quantizer and calls
 * rl_vec_dot on the active path; rl_matmul uses the SIMD quantizer and the same dot
 * kernel, so the results must be bit-identical, whatever the thread count or tiling. */
#include "test.h"
#include "rng.h"
#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "util/threadpool.h"

#include <sched.h>
#include <stdatomic.h>
#include <time.h>

static uint64_t g_rng = 0x0bad5eed12345678ull;
static uint64_t rnd64(void) { return rl_test_rand64(&g_rng); }
static float rnd_unit(void) { return (float)rl_test_rand_unit(&g_rng); }
static float gauss(void) {
    float u1 = rnd_unit(), u2 = rnd_unit();
    if (u1 < 1e-12f) u1 = 1e-12f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}

static size_t row_bytes(rl_type t, int64_t n) {
    size_t b = 0;
    rl_type_row_bytes(t, n, &b);
    return b;
}

/* F16/BF16 weights meet F32 activations in rl_matmul (cpu.h), not the vec_dot type: the
 * naive loop is rl__fdot_<t>_ref (exact up to one rounding) and the SIMD sums in F32 are
 * held to the F32 rounding bound (n/8 + 32) * 2^-24 * sum |w x| (8 or 16 lanes, K blocks). */
static bool f32_acts(rl_type t) { return t == RL_TYPE_F16 || t == RL_TYPE_BF16; }

/* Naive y[t][r] = rl_vec_dot(w[r], ref_quant(x[t])); F16/BF16: see f32_acts, abs gets
 * sum |w x| per result. */
static void naive(rl_type wt, const uint8_t *w, int64_t rows, int64_t cols, const float *x,
                  int64_t n_tok, float *y, float *abs) {
    rl_type vt = rl_type_vec_dot_type(wt);
    size_t xb = row_bytes(vt, cols), wb = row_bytes(wt, cols);
    if (f32_acts(wt)) {
        const rl__vec_dot_fn ref = rl__fdot_get(wt);
        float *wr = malloc((size_t)cols * 4 + 4);
        for (int64_t r = 0; r < rows; r++) {
            rl__type_traits_get(wt)->to_float(w + r * wb, wr, cols);
            for (int64_t t = 0; t < n_tok; t++) {
                y[t * rows + r] = ref(cols, w + r * wb, x + t * cols);
                double a = 0;
                for (int64_t k = 0; k < cols; k++) a += fabs((double)wr[k] * x[t * cols + k]);
                abs[t * rows + r] = (float)a;
            }
        }
        free(wr);
        return;
    }
    uint8_t *xq = malloc(xb ? xb : 1);
    for (int64_t t = 0; t < n_tok; t++) {
        if (vt == RL_TYPE_F32)
            memcpy(xq, x + t * cols, xb);
        else
            rl__act_quant_get(vt, RL_CPU_ISA_REF)(x + t * cols, xq, cols);
        for (int64_t r = 0; r < rows; r++)
            CHECK(rl_vec_dot(wt, cols, w + r * wb, xq, &y[t * rows + r]) == RL_OK);
    }
    free(xq);
}

static const rl_type k_types[] = {
    RL_TYPE_F32,  RL_TYPE_F16,    RL_TYPE_BF16,   RL_TYPE_Q4_0,  RL_TYPE_Q4_1,  RL_TYPE_Q5_0,
    RL_TYPE_Q5_1, RL_TYPE_Q8_0,   RL_TYPE_Q2_K,   RL_TYPE_Q3_K,  RL_TYPE_Q4_K,  RL_TYPE_Q5_K,
    RL_TYPE_Q6_K, RL_TYPE_IQ4_NL, RL_TYPE_IQ4_XS, RL_TYPE_IQ3_S, RL_TYPE_TQ2_0, RL_TYPE_MXFP4,
};

static void run_case(rl_threadpool *pool, rl_type wt, int64_t rows, int64_t cols, int64_t n_tok) {
    size_t wb = row_bytes(wt, cols);
    float *wf = malloc((size_t)(rows * cols) * 4 + 4);
    uint8_t *w = malloc(wb * (size_t)rows + 1);
    float *x = malloc((size_t)(n_tok * cols) * 4 + 4);
    float *y = malloc((size_t)(n_tok * rows) * 4 + 4), *yr = malloc((size_t)(n_tok * rows) * 4 + 4);
    for (int64_t i = 0; i < rows * cols; i++) wf[i] = gauss();
    for (int64_t i = 0; i < n_tok * cols; i++) x[i] = gauss();
    rl_status st = rl_quantize(wt, wf, w, rows, cols, NULL);
    CHECKF(st == RL_OK, "%s: quantize %s", rl_type_name(wt), rl_status_str(st));
    for (int64_t i = 0; i < n_tok * rows; i++) y[i] = NAN;
    st = rl_matmul(pool, wt, w, rows, cols, x, n_tok, y);
    CHECKF(st == RL_OK, "%s: rl_matmul %s", rl_type_name(wt), rl_status_str(st));
    float *abs = malloc((size_t)(n_tok * rows) * 4 + 4);
    naive(wt, w, rows, cols, x, n_tok, yr, abs);
    int bad = 0;
    for (int64_t i = 0; i < n_tok * rows; i++)
        bad += f32_acts(wt) ? !(fabsf(y[i] - yr[i]) <= (cols / 8 + 32) * 0x1p-24f * abs[i])
                            : memcmp(&y[i], &yr[i], 4) != 0;
    CHECKF(bad == 0, "%s %lldx%lld n_tok=%lld threads=%d: %d results differ (first: %g vs %g)",
           rl_type_name(wt), (long long)rows, (long long)cols, (long long)n_tok,
           rl_threadpool_n_threads(pool), bad, y[0], yr[0]);
    free(wf);
    free(w);
    free(x);
    free(y);
    free(yr);
    free(abs);
}

TEST(matmul_vs_naive) {
    const int threads[] = {1, 2, 3, 5};
    for (size_t ti = 0; ti < RL_ARRAY_LEN(threads); ti++) {
        rl_threadpool *pool = NULL;
        CHECK(rl_threadpool_create(threads[ti], &pool) == RL_OK);
        CHECK_EQ_INT(rl_threadpool_n_threads(pool), threads[ti]);
        for (size_t k = 0; k < RL_ARRAY_LEN(k_types); k++) {
            rl_type wt = k_types[k];
            int64_t bs =
                RL_MAX(rl_type_block_size(wt), rl_type_block_size(rl_type_vec_dot_type(wt)));
            bs = RL_MAX(bs, 32);
            run_case(pool, wt, 1, bs, 1);
            run_case(pool, wt, 37, 2 * bs, 1);
            run_case(pool, wt, 5, bs, 7);
            if (ti == 1 || ti == 3) {
                run_case(pool, wt, 300, 8 * bs, 1);
                run_case(pool, wt, 130, 4 * bs, 9);
            }
        }
        rl_threadpool_free(pool);
    }
}

/* One larger matrix-vector and matrix-matrix product per core type on the default pool. */
TEST(matmul_larger) {
    rl_threadpool *pool = NULL;
    CHECK(rl_threadpool_create(0, &pool) == RL_OK);
    CHECK_EQ_INT(rl_threadpool_n_threads(pool), rl_cpu_physical_cores());
    const rl_type ts[] = {RL_TYPE_Q4_0, RL_TYPE_Q8_0, RL_TYPE_Q4_K, RL_TYPE_F16};
    for (size_t k = 0; k < RL_ARRAY_LEN(ts); k++) {
        run_case(pool, ts[k], 1024, 2048, 1);
        run_case(pool, ts[k], 256, 1024, 33);
    }
    rl_threadpool_free(pool);
}

/* Prompt-sized products (2..33 tokens: whole and partial token tiles, odd row counts, a
 * block count that leaves a tail) on every path the CPU has, so the multi-token tile
 * kernels of each ISA meet the naive loop bit for bit. */
TEST(matmul_tokens_every_isa) {
    const rl_cpu_isa saved = rl_cpu_isa_active();
    const rl_type ts[] = {RL_TYPE_Q4_0, RL_TYPE_Q8_0, RL_TYPE_Q4_K, RL_TYPE_Q6_K};
    rl_threadpool *pool = NULL;
    CHECK(rl_threadpool_create(2, &pool) == RL_OK);
    int paths = 0;
    for (int isa = RL_CPU_ISA_REF; isa < RL_CPU_ISA_COUNT; isa++) {
        if (rl_cpu_isa_set((rl_cpu_isa)isa) != RL_OK) continue;
        paths++;
        for (size_t k = 0; k < RL_ARRAY_LEN(ts); k++) {
            int64_t bs = rl_type_block_size(ts[k]);
            int64_t cols = bs == 32 ? 9 * 32 : 2 * bs;
            for (int64_t n_tok = 2; n_tok <= 33; n_tok++)
                run_case(pool, ts[k], n_tok % 2 ? 13 : 67, cols, n_tok);
            run_case(pool, ts[k], 130, bs == 32 ? 64 * 32 : 8 * bs, 11);
            /* whole 16-block groups plus a tail block (Q4_0 on AVX-512, q4_0_avx512.h) */
            if (bs == 32) run_case(pool, ts[k], 14, 33 * 32, 7);
        }
    }
    CHECK(paths >= 1);
    CHECK(rl_cpu_isa_set(saved) == RL_OK);
    rl_threadpool_free(pool);
}

TEST(matmul_args_and_scratch) {
    rl_threadpool *pool = NULL;
    CHECK(rl_threadpool_create(2, &pool) == RL_OK);
    block_q8_0 w[4] = {0};
    float x[128] = {0}, y[4];
    CHECK_EQ_INT(rl_matmul(NULL, RL_TYPE_Q8_0, w, 1, 32, x, 1, y), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_matmul(pool, RL_TYPE_Q8_0, w, 1, 48, x, 1, y), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_matmul(pool, RL_TYPE_Q8_0, w, -1, 32, x, 1, y), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_matmul(pool, RL_TYPE_Q8_0, NULL, 1, 32, x, 1, y), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_matmul(pool, RL_TYPE_Q8_K, w, 1, 256, x, 1, y), RL_ERR_UNSUPPORTED);
    CHECK_EQ_INT(rl_matmul(pool, RL_TYPE_I8, w, 1, 32, x, 1, y), RL_ERR_UNSUPPORTED);
    CHECK_EQ_INT(rl_matmul(pool, RL_TYPE_Q8_0, w, 0, 32, x, 1, y), RL_OK);
    CHECK_EQ_INT(rl_matmul(pool, RL_TYPE_Q8_0, w, 2, 64, x, 2, y), RL_OK);
    CHECK(y[0] == 0 && y[3] == 0);

    /* after one call of a shape, further calls allocate nothing */
    const int64_t rows = 64, cols = 1024, n_tok = 4;
    float *wf = calloc((size_t)(rows * cols), 4), *xx = calloc((size_t)(64 * cols), 4);
    float *yy = malloc((size_t)(64 * rows) * 4);
    void *wq = malloc(row_bytes(RL_TYPE_Q4_K, cols) * rows);
    CHECK(rl_quantize(RL_TYPE_Q4_K, wf, wq, rows, cols, NULL) == RL_OK);
    CHECK(rl_matmul(pool, RL_TYPE_Q4_K, wq, rows, cols, xx, n_tok, yy) == RL_OK);
    long allocs = rl__alloc_count();
    size_t in_use = rl_mem_in_use();
    for (int i = 0; i < 10; i++)
        CHECK(rl_matmul(pool, RL_TYPE_Q4_K, wq, rows, cols, xx, n_tok, yy) == RL_OK);
    CHECK(rl_matmul(pool, RL_TYPE_Q4_K, wq, rows, cols, xx, 1, yy) == RL_OK);
    CHECK_EQ_INT(rl__alloc_count(), allocs);
    CHECK_EQ_INT(rl_mem_in_use(), in_use);
    /* out of memory growing the scratch is reported, not a crash */
    rl__alloc_fail_after(1);
    CHECK_EQ_INT(rl_matmul(pool, RL_TYPE_Q4_K, wq, rows, cols, xx, 64, yy), RL_ERR_NOMEM);
    rl__alloc_fail_after(0);
    free(wf);
    free(xx);
    free(yy);
    free(wq);
    rl_threadpool_free(pool);
}

/* ---- thread pool ------------------------------------------------------------------- */

typedef struct count_ctx {
    _Atomic int calls[8];
    _Atomic long total;
    int nth_seen;
} count_ctx;

static void count_task(void *p, int ith, int nth) {
    count_ctx *c = p;
    atomic_fetch_add(&c->calls[ith], 1);
    atomic_fetch_add(&c->total, ith + 1);
    c->nth_seen = nth;
}

TEST(threadpool_runs) {
    for (int n = 1; n <= 8; n++) {
        rl_threadpool *pool = NULL;
        CHECK(rl_threadpool_create(n, &pool) == RL_OK);
        count_ctx c;
        memset(&c, 0, sizeof c);
        const int runs = 2000;
        for (int r = 0; r < runs; r++) rl__threadpool_run(pool, count_task, &c);
        for (int i = 0; i < n; i++) CHECK_EQ_INT(atomic_load(&c.calls[i]), runs);
        CHECK_EQ_INT(atomic_load(&c.total), (long)runs * n * (n + 1) / 2);
        CHECK_EQ_INT(c.nth_seen, n);
        rl_threadpool_free(pool);
    }
    rl_threadpool_free(NULL);
    CHECK_EQ_INT(rl_threadpool_n_threads(NULL), 0);
    rl_threadpool *pool = (rl_threadpool *)1;
    CHECK_EQ_INT(rl_threadpool_create(100000, &pool), RL_ERR_INVALID_ARG);
    CHECK(pool == NULL);
    CHECK_EQ_INT(rl_threadpool_create(2, NULL), RL_ERR_INVALID_ARG);
    /* every allocation of create failing in turn unwinds cleanly */
    size_t base = rl_mem_in_use();
    for (long k = 1; k <= 4; k++) {
        rl__alloc_fail_after(k);
        rl_status st = rl_threadpool_create(3, &pool);
        rl__alloc_fail_after(0);
        if (st == RL_OK)
            rl_threadpool_free(pool);
        else
            CHECK_EQ_INT(st, RL_ERR_NOMEM);
        CHECK_EQ_INT(rl_mem_in_use(), base);
    }
}

/* Idle workers sleep: a pool left alone uses (almost) no CPU time. */
TEST(threadpool_idle_workers_sleep) {
    rl_threadpool *pool = NULL;
    CHECK(rl_threadpool_create(4, &pool) == RL_OK);
    count_ctx c;
    memset(&c, 0, sizeof c);
    rl__threadpool_run(pool, count_task, &c);
    struct timespec t0, t1, s = {0, 200 * 1000 * 1000};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    nanosleep(&s, NULL);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    double cpu = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    CHECKF(cpu < 0.02, "idle pool used %.3f s of CPU in 0.2 s", cpu);
    rl_threadpool_free(pool);
}

/* RUVLLM_THREAD_PIN=1: each thread of a job runs on its own CPU (when there are two). */
typedef struct cpu_ctx {
    int cpu[4];
} cpu_ctx;

static void cpu_task(void *p, int ith, int nth) {
    (void)nth;
    ((cpu_ctx *)p)->cpu[ith] = sched_getcpu();
}

TEST(threadpool_pinning) {
    cpu_set_t saved;
    CHECK(sched_getaffinity(0, sizeof saved, &saved) == 0);
    if (CPU_COUNT(&saved) < 2) SKIP("needs two CPUs");
    setenv("RUVLLM_THREAD_PIN", "1", 1);
    rl_threadpool *pool = NULL;
    CHECK(rl_threadpool_create(2, &pool) == RL_OK);
    unsetenv("RUVLLM_THREAD_PIN");
    for (int r = 0; r < 20; r++) {
        cpu_ctx c = {{-1, -1, -1, -1}};
        rl__threadpool_run(pool, cpu_task, &c);
        CHECKF(c.cpu[0] >= 0 && c.cpu[1] >= 0 && c.cpu[0] != c.cpu[1], "threads on CPUs %d and %d",
               c.cpu[0], c.cpu[1]);
    }
    rl_threadpool_free(pool);
    CHECK(sched_setaffinity(0, sizeof saved, &saved) == 0); /* the creator was pinned */
}

/* ---- activation quantizers ----------------------------------------------------------- */

static void fill_special(float *x, int64_t n, int kind) {
    for (int64_t i = 0; i < n; i++) x[i] = gauss() * (kind == 1 ? 1e-3f : 1.0f);
    if (kind == 2) { /* exact ties: amax 127 makes d = 1, id = 1, so x = k + 0.5 rounds */
        for (int64_t b = 0; b < n / 32; b++) {
            x[32 * b] = 127.0f;
            for (int j = 1; j < 32; j++) x[32 * b + j] = (float)((int)(rnd64() % 253) - 126) + 0.5f;
        }
    }
    if (kind == 3) { /* equal +- extremes: Q8_K takes the first */
        for (int64_t b = 0; b < n / 256; b++) {
            x[256 * b + 3 + b] = -(b & 1 ? 9.0f : 5.0f);
            x[256 * b + 200] = b & 1 ? 9.0f : 5.0f;
        }
    }
    if (kind == 4) { /* zero blocks, and a zero super-block */
        for (int64_t i = 0; i < RL_MIN(n, 256); i++) x[i] = 0.0f;
        for (int64_t i = 256; i + 32 <= n && i < 320; i++) x[i] = 0.0f;
    }
    if (kind == 5) { /* subnormals, near-overflow, mixed magnitudes */
        for (int64_t i = 0; i < n; i += 3) x[i] = 1e-39f * (float)(i % 7);
        for (int64_t i = 1; i < n; i += 17) x[i] = 6.0e4f * (i & 2 ? -1.0f : 1.0f);
    }
}

TEST(act_quant_simd_equals_ref) {
    const rl_type vts[] = {RL_TYPE_Q8_0, RL_TYPE_Q8_1, RL_TYPE_Q8_K, RL_TYPE_F16, RL_TYPE_BF16};
    const int64_t lens[] = {256, 512, 4096, 11008};
    for (size_t v = 0; v < RL_ARRAY_LEN(vts); v++) {
        rl_type vt = vts[v];
        rl__act_quant_fn ref = rl__act_quant_get(vt, RL_CPU_ISA_REF);
        CHECKF(ref != NULL, "%s: no reference quantizer", rl_type_name(vt));
        if (!ref) continue;
        for (int isa = RL_CPU_ISA_AVX2; isa < RL_CPU_ISA_COUNT; isa++) {
            if (!rl__cpu_isa_supported((rl_cpu_isa)isa)) continue;
            rl__act_quant_fn fn = rl__act_quant_get(vt, (rl_cpu_isa)isa);
            CHECK(fn != NULL && fn != ref);
            for (size_t li = 0; li < RL_ARRAY_LEN(lens); li++) {
                int64_t n = lens[li];
                if (n % rl_type_block_size(vt)) continue;
                float *x = malloc((size_t)n * 4);
                size_t nb = row_bytes(vt, n);
                uint8_t *a = malloc(nb), *b = malloc(nb);
                for (int kind = 0; kind < 6; kind++) {
                    fill_special(x, n, kind);
                    memset(a, 0xaa, nb);
                    memset(b, 0x55, nb);
                    ref(x, a, n);
                    fn(x, b, n);
                    size_t first = 0;
                    while (first < nb && a[first] == b[first]) first++;
                    CHECKF(first == nb, "%s %s n=%lld kind %d: bytes differ from %zu",
                           rl_type_name(vt), rl_cpu_isa_name((rl_cpu_isa)isa), (long long)n, kind,
                           first);
                }
                if (vt == RL_TYPE_F16 || vt == RL_TYPE_BF16) { /* NaN, inf, odd lengths */
                    for (int64_t i = 0; i < n; i++) x[i] = gauss();
                    x[5] = NAN;
                    x[6] = -NAN;
                    x[7] = INFINITY;
                    x[20] = -INFINITY;
                    uint32_t sn = 0x7f800123u, qn = 0xffc00001u;
                    memcpy(&x[21], &sn, 4);
                    memcpy(&x[40], &qn, 4);
                    x[41] = 65519.0f;
                    x[42] = 65520.0f;
                    for (int64_t m = n - 5; m <= n; m++) {
                        ref(x, a, m);
                        fn(x, b, m);
                        CHECKF(memcmp(a, b, (size_t)m * 2) == 0, "%s %s specials n=%lld",
                               rl_type_name(vt), rl_cpu_isa_name((rl_cpu_isa)isa), (long long)m);
                    }
                }
                free(x);
                free(a);
                free(b);
            }
        }
    }
}

/* ---- products sharing their input (backend.h matmul_multi) -------------------------- */

/* A random weight of rows x cols of type t (data malloc'ed, packed unset). */
static rl_weight multi_weight(rl_type t, int64_t rows, int64_t cols) {
    float *wf = malloc((size_t)(rows * cols) * 4 + 4);
    for (int64_t i = 0; i < rows * cols; i++) wf[i] = gauss();
    rl_weight w = {.type = t, .ne = {cols, rows, 1, 1}, .row_bytes = row_bytes(t, cols)};
    void *d = malloc(w.row_bytes * (size_t)rows + 1);
    CHECK(rl_quantize(t, wf, d, rows, cols, NULL) == RL_OK);
    w.data = d;
    free(wf);
    return w;
}

/* matmul_multi of ws[0..n_w) == one matmul per weight, bit for bit; returns checks made. */
static long multi_case(rl_backend *be, rl_weight *const *ws, int n_w, int64_t n_tok) {
    const int64_t cols = ws[0]->ne[0];
    float *x = malloc((size_t)(n_tok * cols) * 4 + 4);
    for (int64_t i = 0; i < n_tok * cols; i++) x[i] = gauss();
    float *y[8], *yr[8];
    long checks = 0;
    for (int i = 0; i < n_w; i++) {
        size_t nb = (size_t)(n_tok * ws[i]->ne[1]) * 4 + 4;
        y[i] = malloc(nb);
        yr[i] = malloc(nb);
        memset(y[i], 0xff, nb);
        CHECK(be->ops->matmul(be, ws[i], x, n_tok, yr[i]) == RL_OK);
    }
    rl_status st = be->ops->matmul_multi(be, (const rl_weight *const *)ws, n_w, x, n_tok, y);
    CHECKF(st == RL_OK, "matmul_multi: %s", rl_status_str(st));
    for (int i = 0; i < n_w; i++) {
        int bad = 0;
        for (int64_t k = 0; k < n_tok * ws[i]->ne[1]; k++, checks++)
            bad += memcmp(&y[i][k], &yr[i][k], 4) != 0;
        CHECKF(bad == 0, "weight %d of %d (%s %lldx%lld%s) n_tok %lld: %d results differ", i, n_w,
               rl_type_name(ws[i]->type), (long long)ws[i]->ne[1], (long long)cols,
               ws[i]->packed ? " packed" : "", (long long)n_tok, bad);
        free(y[i]);
        free(yr[i]);
    }
    free(x);
    return checks;
}

/* The CPU backend's matmul_multi against separate matmuls, bit for bit: q/k/v and gate/up
 * shapes over packed Q4_0 (the Q4_0x16 tile, prompts through gemm_many), Q6_K (packed at 32+
 * rows), K-quants, F16 (F32 activations), weights converting the input differently (one
 * conversion each) and an empty weight, on pools of 1, 2 and 3 threads. */
TEST(matmul_multi_equals_separate) {
    const int64_t toks[] = {1, 3, 8, 17, 33};
    const int threads[] = {1, 2, 3};
    rl_weight q = multi_weight(RL_TYPE_Q4_0, 512, 1024), k = multi_weight(RL_TYPE_Q4_0, 128, 1024),
              v = multi_weight(RL_TYPE_Q4_0, 130, 1024), h = multi_weight(RL_TYPE_Q6_K, 64, 1024),
              k4 = multi_weight(RL_TYPE_Q4_K, 96, 1024), k4b = multi_weight(RL_TYPE_Q4_K, 40, 1024),
              f1 = multi_weight(RL_TYPE_F16, 48, 1024), f2 = multi_weight(RL_TYPE_F16, 20, 1024),
              q8 = multi_weight(RL_TYPE_Q8_0, 70, 1024), e = multi_weight(RL_TYPE_Q4_0, 0, 1024),
              s = multi_weight(RL_TYPE_Q4_0, 64, 512);
    rl_weight qp = q, kp = k, vp = v, hp = h;
    rl_weight *pw[] = {&qp, &kp, &vp, &hp};
    rl__cpu_packed *pk = NULL;
    CHECK(rl__cpu_pack_weights(pw, RL_ARRAY_LEN(pw), 2, false, &pk) == RL_OK);
    if (rl__cpu_isa_supported(RL_CPU_ISA_AVX512) && rl_cpu_isa_active() >= RL_CPU_ISA_AVX512)
        CHECK(qp.packed && kp.packed && vp.packed && hp.packed);
    rl_weight *sets[][4] = {
        {&qp, &kp, &vp, NULL}, {&q, &k, &v, NULL},   {&qp, &k, &vp, NULL}, {&k4, &k4b, NULL},
        {&f1, &f2, NULL},      {&qp, &hp, &q8, &k4}, {&h, &hp, NULL},      {&q, &e, &k, NULL},
        {&qp, NULL},
    };
    long checks = 0;
    for (size_t ti = 0; ti < RL_ARRAY_LEN(threads); ti++) {
        rl_backend *be = NULL;
        CHECK(rl__backend_cpu_create(threads[ti], &be) == RL_OK);
        CHECK(be->ops->matmul_multi != NULL);
        for (size_t si = 0; si < RL_ARRAY_LEN(sets); si++) {
            int n_w = 0;
            while (n_w < 4 && sets[si][n_w]) n_w++;
            for (size_t t = 0; t < RL_ARRAY_LEN(toks); t++)
                checks += multi_case(be, sets[si], n_w, toks[t]);
        }
        /* no weights: nothing to do; columns that differ, too many weights: refused */
        float x[1024] = {0}, *yy[9] = {x, x, x, x, x, x, x, x, x};
        CHECK_EQ_INT(be->ops->matmul_multi(be, NULL, 0, x, 1, NULL), RL_OK);
        const rl_weight *bad[2] = {&q, &s}, *many[9] = {&q, &q, &q, &q, &q, &q, &q, &q, &q};
        CHECK_EQ_INT(be->ops->matmul_multi(be, bad, 2, x, 1, yy), RL_ERR_INVALID_ARG);
        CHECK_EQ_INT(be->ops->matmul_multi(be, many, 9, x, 1, yy), RL_ERR_INVALID_ARG);
        rl__backend_free(be);
    }
    CHECK(checks > 100000);
    printf("  matmul_multi: %ld results compared\n", checks);
    rl__cpu_packed_free(pk);
    rl_weight *all[] = {&q, &k, &v, &h, &k4, &k4b, &f1, &f2, &q8, &e, &s};
    for (size_t i = 0; i < RL_ARRAY_LEN(all); i++) free((void *)all[i]->data);
}

int main(void) {
    RUN(threadpool_runs);
    RUN(threadpool_idle_workers_sleep);
    RUN(threadpool_pinning);
    RUN(act_quant_simd_equals_ref);
    RUN(matmul_args_and_scratch);
    RUN(matmul_vs_naive);
    RUN(matmul_larger);
    RUN(matmul_tokens_every_isa);
    RUN(matmul_multi_equals_separate);
    return rl_test_finish();
}
