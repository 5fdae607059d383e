/* F16/BF16 weights times F32 activations (cpu.h: rl__fdot, rl__fgemm) on every ISA path the
 * CPU has, through rl_matmul, against the plain-C reference rl__fdot_<t>_ref.
 *
 * The reference sums in double (exact up to one rounding); the SIMD paths sum in F32, so a
 * result may differ by the F32 summation bound (n/8 + 32) * 2^-24 * sum |w x|. The shapes
 * are odd on purpose: rows not a multiple of the tile (3/4 rows), columns not a multiple of
 * 8/16 and crossing the column blocks (512), token counts that leave partial token tiles
 * (4/6). The vec_dot route, which rounds the activations to the weight type, must agree
 * within that rounding. */
#include "test.h"
#include "rng.h"
#include "backend/cpu/cpu.h"

static uint64_t g_rng = 0x5eedf16f16f16ull;
static float rnd_sym(void) { return (float)rl_test_rand_unit(&g_rng) * 2.0f - 1.0f; }

typedef struct gcase {
    int64_t rows, cols, n_tok;
} gcase;

static const gcase k_cases[] = {
    {1, 1, 1},     {1, 7, 5},    {3, 16, 4},    {15, 31, 13},  {17, 33, 12},  {31, 100, 25},
    {33, 64, 6},   {64, 513, 7}, {40, 515, 24}, {130, 48, 37}, {96, 1030, 9}, {257, 260, 14},
    {32, 512, 12}, {48, 17, 2},  {5, 2048, 3},  {70, 129, 30},
};

/* Worst |y - ref| / bound over the case, bound = the F32 sum bound; 0 when all within. */
static void run(rl_threadpool *pool, rl_type wt, const gcase *c, const char *path) {
    const int64_t rows = c->rows, cols = c->cols, n_tok = c->n_tok;
    size_t wb = 0, xb = 0;
    CHECK(rl_type_row_bytes(wt, cols, &wb) == RL_OK);
    CHECK(rl_type_row_bytes(wt, cols, &xb) == RL_OK);
    float *wf = malloc((size_t)(rows * cols) * 4), *x = malloc((size_t)(n_tok * cols) * 4);
    uint8_t *w = malloc(wb * (size_t)rows), *xq = malloc(xb);
    float *y = malloc((size_t)(n_tok * rows) * 4);
    for (int64_t i = 0; i < rows * cols; i++) wf[i] = rnd_sym();
    for (int64_t i = 0; i < n_tok * cols; i++) x[i] = rnd_sym() * 3.0f;
    CHECK(rl_quantize(wt, wf, w, rows, cols, NULL) == RL_OK);
    rl__type_traits_get(wt)->to_float(w, wf, rows * cols); /* the weights as stored */
    for (int64_t i = 0; i < n_tok * rows; i++) y[i] = NAN;
    CHECK_EQ_INT(rl_matmul(pool, wt, w, rows, cols, x, n_tok, y), RL_OK);

    const rl__vec_dot_fn ref = rl__fdot_get(wt);
    const double act_eps = wt == RL_TYPE_F16 ? 0x1p-11 : 0x1p-8; /* rounding x to wt */
    int bad = 0, bad_vd = 0;
    double worst = 0;
    for (int64_t t = 0; t < n_tok; t++) {
        rl__type_traits_get(wt)->from_float(x + t * cols, xq, cols, NULL);
        for (int64_t r = 0; r < rows; r++) {
            const float *wr = wf + r * cols, *xt = x + t * cols;
            double abs = 0;
            for (int64_t k = 0; k < cols; k++) abs += fabs((double)wr[k] * xt[k]);
            const float yr = ref(cols, w + (size_t)r * wb, xt), yv = y[t * rows + r];
            const double bound = (double)(cols / 8 + 32) * 0x1p-24 * abs + 1e-30;
            const double err = fabs((double)yv - yr);
            if (!(err <= bound)) bad++;
            if (err / bound > worst) worst = err / bound;
            float vd = NAN;
            CHECK(rl_vec_dot(wt, cols, w + (size_t)r * wb, xq, &vd) == RL_OK);
            if (!(fabs((double)vd - yv) <= abs * (act_eps + 0x1p-20) + 1e-30)) bad_vd++;
        }
    }
    CHECKF(bad == 0, "%s %s %lldx%lld x %lld tokens: %d of %lld beyond the F32 bound (worst %.2f)",
           path, rl_type_name(wt), (long long)rows, (long long)cols, (long long)n_tok, bad,
           (long long)(rows * n_tok), worst);
    CHECKF(bad_vd == 0, "%s %s %lldx%lld x %lld tokens: %d differ from vec_dot beyond rounding",
           path, rl_type_name(wt), (long long)rows, (long long)cols, (long long)n_tok, bad_vd);
    free(wf);
    free(x);
    free(w);
    free(xq);
    free(y);
}

TEST(fgemm_every_isa) {
    const rl_cpu_isa saved = rl_cpu_isa_active();
    static const char *names[RL_CPU_ISA_COUNT] = {"ref", "avx2", "avx512"};
    const int threads[] = {1, 2, 3};
    int paths = 0;
    for (int isa = RL_CPU_ISA_REF; isa < RL_CPU_ISA_COUNT; isa++) {
        if (rl_cpu_isa_set((rl_cpu_isa)isa) != RL_OK) continue;
        paths++;
        CHECK((rl__fgemm_get(RL_TYPE_F16, (rl_cpu_isa)isa) != NULL) == (isa != RL_CPU_ISA_REF));
        for (size_t ti = 0; ti < RL_ARRAY_LEN(threads); ti++) {
            rl_threadpool *pool = NULL;
            CHECK(rl_threadpool_create(threads[ti], &pool) == RL_OK);
            for (size_t k = 0; k < RL_ARRAY_LEN(k_cases); k++) {
                run(pool, RL_TYPE_F16, &k_cases[k], names[isa]);
                run(pool, RL_TYPE_BF16, &k_cases[k], names[isa]);
            }
            rl_threadpool_free(pool);
        }
    }
    CHECK(paths >= 1);
    CHECK(rl_cpu_isa_set(saved) == RL_OK);
}

/* Every token count 1..40 on one shape with partial tiles, on the active path. */
TEST(fgemm_token_counts) {
    rl_threadpool *pool = NULL;
    CHECK(rl_threadpool_create(2, &pool) == RL_OK);
    for (int64_t n_tok = 1; n_tok <= 40; n_tok++) {
        const gcase c = {45, 77, n_tok};
        run(pool, RL_TYPE_F16, &c, "active");
    }
    rl_threadpool_free(pool);
}

/* Batch invariance on every path: a token's results are bit-identical whether it is
 * multiplied alone or in a batch of any size, at any position of the batch and any thread
 * count. */
TEST(fgemm_batch_equals_single) {
    const rl_cpu_isa saved = rl_cpu_isa_active();
    const int64_t rows = 75, cols = 1100, max_tok = 15;
    const rl_type types[] = {RL_TYPE_F16, RL_TYPE_BF16};
    for (int isa = RL_CPU_ISA_REF; isa < RL_CPU_ISA_COUNT; isa++) {
        if (rl_cpu_isa_set((rl_cpu_isa)isa) != RL_OK) continue;
        for (size_t ti = 0; ti < RL_ARRAY_LEN(types); ti++) {
            const rl_type wt = types[ti];
            float *wf = malloc((size_t)(rows * cols) * 4),
                  *x = malloc((size_t)(max_tok * cols) * 4);
            rl_fp16 *w = malloc((size_t)(rows * cols) * 2);
            float *y1 = malloc((size_t)(max_tok * rows) * 4),
                  *yb = malloc((size_t)(max_tok * rows) * 4);
            for (int64_t i = 0; i < rows * cols; i++) wf[i] = rnd_sym();
            for (int64_t i = 0; i < max_tok * cols; i++) x[i] = rnd_sym();
            CHECK(rl_quantize(wt, wf, w, rows, cols, NULL) == RL_OK);
            rl_threadpool *p1 = NULL, *p3 = NULL;
            CHECK(rl_threadpool_create(1, &p1) == RL_OK && rl_threadpool_create(3, &p3) == RL_OK);
            for (int64_t t = 0; t < max_tok; t++)
                CHECK(rl_matmul(p1, wt, w, rows, cols, x + t * cols, 1, y1 + t * rows) == RL_OK);
            int bad = 0;
            for (int64_t nt = 2; nt <= max_tok; nt++) {
                CHECK(rl_matmul(nt % 2 ? p3 : p1, wt, w, rows, cols, x, nt, yb) == RL_OK);
                bad += memcmp(yb, y1, (size_t)(nt * rows) * 4) != 0;
            }
            CHECKF(bad == 0, "isa %d %s: %d batch sizes differ from token by token", isa,
                   rl_type_name(wt), bad);
            rl_threadpool_free(p1);
            rl_threadpool_free(p3);
            free(wf);
            free(x);
            free(w);
            free(y1);
            free(yb);
        }
    }
    CHECK(rl_cpu_isa_set(saved) == RL_OK);
}

/* F16/BF16 products take no scratch: after one call, further calls allocate nothing. */
TEST(fgemm_no_allocation) {
    rl_threadpool *pool = NULL;
    CHECK(rl_threadpool_create(2, &pool) == RL_OK);
    const int64_t rows = 100, cols = 600, n_tok = 29;
    rl_fp16 *w = calloc((size_t)(rows * cols), 2);
    float *x = calloc((size_t)(n_tok * cols), 4), *y = malloc((size_t)(n_tok * rows) * 4);
    CHECK(rl_matmul(pool, RL_TYPE_F16, w, rows, cols, x, 1, y) == RL_OK);
    long allocs = rl__alloc_count();
    CHECK(rl_matmul(pool, RL_TYPE_F16, w, rows, cols, x, n_tok, y) == RL_OK);
    CHECK(rl_matmul(pool, RL_TYPE_BF16, w, rows, cols, x, n_tok, y) == RL_OK);
    CHECK_EQ_INT(rl__alloc_count(), allocs);
    CHECK(y[0] == 0.0f && y[n_tok * rows - 1] == 0.0f);
    free(w);
    free(x);
    free(y);
    rl_threadpool_free(pool);
}

int main(void) {
    RUN(fgemm_every_isa);
    RUN(fgemm_token_counts);
    RUN(fgemm_batch_equals_single);
    RUN(fgemm_no_allocation);
    return rl_test_finish();
}
