/* mmq.cu's streaming kernel with shared activations (mmq_srow_kernel: 32 or 64 rows a block,
 * the activations of a step copied once for its row tiles) against the CPU backend and
 * against the kernels it would replace. Q4_K and Q6_K weights (the products that take the
 * integer step) of row counts off the kernel's 64-row blocks, K of 1 to 16 steps (so some
 * warps have no step and K is split over blocks), 5 to 64 tokens (token tiles of 1, 2 and 4
 * a block, ragged last tiles, two token groups a row group). Each setting is chosen through
 * the environment and rl__cu_mmq_config (mmq.cu reads it again there), on a backend with
 * graphs off (a replayed graph would keep the kernels of the setting it was captured in):
 *   ref:  RUVLLM_CUDA_MMQ_SRG=0 (the streaming and tiled kernels)
 *   srow4 / srow2: RUVLLM_CUDA_MMQ_SRG=4 / 2 on every shape up to 64 tokens (_SMAX, _SROWS)
 *   default: the environment unset (the build's routing: these shapes the same bits as ref)
 * Every product: all outputs written (the output starts as NaN), nmse against the CPU's
 * product <= 1e-6 (the CPU rounds the activations as Q8_K, as the kernels do: only the float
 * order differs), nmse against the ref setting's output <= 1e-10, and the same bits when run
 * again. RUVLLM_MMQ8_QUICK=1 runs fewer shapes (for compute-sanitizer). Without a CUDA device
 * the program reports itself skipped. */
#include "backend/backend.h"
#include "gpu.h"
#include "rng.h"
#include "test.h"

/* mmq.cu's settings read again from the environment (each argument < 0); weak so that a
 * build without CUDA links (its backend never starts, so the test skips before the call) */
extern void rl__cu_mmq_config(int tile_min, int staged, int q8k, int kstep, int stream)
    __attribute__((weak));

static rl_backend *cpu, *gpu;
static char g_skip[320];

static uint64_t g_rng = 0x3c6ef372fe94f82bull;
static float gauss(void) {
    float u1 = (float)rl_test_rand_unit(&g_rng) + 1e-12f, u2 = (float)rl_test_rand_unit(&g_rng);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}
static float *rand_vec(size_t n) {
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = gauss();
    return x;
}

static void *gpu_bytes(const void *h, size_t b) {
    void *d = gpu->ops->alloc(gpu, b);
    CHECK(d != NULL);
    if (d) gpu->ops->from_host(gpu, d, h, b);
    return d;
}

enum { NSET = 4 };
static const char *const set_names[NSET] = {"ref", "srow4", "srow2", "default"};

/* The environment of setting si, then mmq.cu reads it. */
static void use_setting(int si) {
    static const char *const vars[] = {"RUVLLM_CUDA_MMQ_SRG", "RUVLLM_CUDA_MMQ_SMAX",
                                       "RUVLLM_CUDA_MMQ_SROWS"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) unsetenv(vars[i]);
    if (si == 0) setenv("RUVLLM_CUDA_MMQ_SRG", "0", 1);
    if (si == 1 || si == 2) {
        setenv("RUVLLM_CUDA_MMQ_SRG", si == 2 ? "2" : "4", 1);
        setenv("RUVLLM_CUDA_MMQ_SMAX", "64", 1);
        setenv("RUVLLM_CUDA_MMQ_SROWS", "0", 1);
    }
    rl__cu_mmq_config(-1, -1, -1, -1, -1);
}

/* y = x W^T on the GPU under the current setting (n x rows, host copy). */
static float *gpu_product(const rl_weight *wd, const float *xd, int64_t n, int64_t rows) {
    const size_t ny = (size_t)(n * rows);
    float *yd = gpu->ops->alloc(gpu, ny * sizeof(float));
    CHECK(yd != NULL);
    float *y = malloc(ny * sizeof(float));
    if (!yd) {
        for (size_t i = 0; i < ny; i++) y[i] = NAN;
        return y;
    }
    gpu->ops->fill(gpu, yd, (int64_t)ny, NAN);
    CHECK(gpu->ops->matmul(gpu, wd, xd, n, yd) == RL_OK);
    gpu->ops->to_host(gpu, y, yd, ny * sizeof(float));
    CHECK(gpu->ops->sync(gpu) == RL_OK);
    gpu->ops->free(gpu, yd);
    return y;
}

TEST(cuda_mmq_srow) {
    if (!gpu) SKIP("%s", g_skip);
    if (!rl__cu_mmq_config) SKIP("mmq.cu is not in this build");
    const bool quick = getenv("RUVLLM_MMQ8_QUICK") && getenv("RUVLLM_MMQ8_QUICK")[0] == '1';
    static const rl_type types[] = {RL_TYPE_Q4_K, RL_TYPE_Q6_K};
    /* K x rows: one step (warps without a step), 8 and 16 steps (K split over 2 to 8 blocks
     * on these few row groups), rows off 32 and 64 */
    static const int64_t shapes[][2] = {{256, 67}, {2048, 301}, {4096, 97}, {1024, 1029}};
    static const int64_t ns[] = {5, 8, 9, 16, 17, 24, 32, 33, 48, 64};
    const size_t nshapes = quick ? 2 : sizeof shapes / sizeof shapes[0];
    const size_t nns = sizeof ns / sizeof ns[0];
    double worst_cpu[NSET] = {0}, worst_ref[NSET] = {0};
    int products = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        for (size_t si = 0; si < nshapes; si++) {
            const int64_t K = shapes[si][0], rows = shapes[si][1];
            const rl_type t = types[ti];
            size_t rb = 0;
            CHECK(rl_type_row_bytes(t, K, &rb) == RL_OK);
            float *src = rand_vec((size_t)(K * rows));
            void *data = malloc(rb * (size_t)rows);
            CHECK(rl_quantize(t, src, data, rows, K, NULL) == RL_OK);
            free(src);
            rl_weight w = {.name = "w", .type = t, .ne = {K, rows, 1, 1}, .row_bytes = rb, .data = data};
            void *wdev = gpu_bytes(data, rb * (size_t)rows);
            rl_weight wd = w;
            wd.data = wdev;
            for (size_t ni = 0; ni < nns; ni++) {
                const int64_t n = ns[ni];
                if (quick && n != 5 && n != 17 && n != 33 && n != 64) continue;
                const size_t ny = (size_t)(n * rows);
                float *x = rand_vec((size_t)(n * K));
                float *xd = gpu_bytes(x, (size_t)(n * K) * sizeof(float));
                float *yc = malloc(ny * sizeof(float));
                CHECK(cpu->ops->matmul(cpu, &w, x, n, yc) == RL_OK);
                float *yref = NULL;
                for (int s = 0; s < NSET; s++) {
                    use_setting(s);
                    float *y = gpu_product(&wd, xd, n, rows);
                    float *y2 = gpu_product(&wd, xd, n, rows);
                    int64_t unwritten = 0;
                    for (size_t i = 0; i < ny; i++) unwritten += !isfinite(y[i]);
                    const double ec = rl_test_nmse(y, yc, ny);
                    const double er = yref ? rl_test_nmse(y, yref, ny) : 0.0;
                    worst_cpu[s] = ec > worst_cpu[s] ? ec : worst_cpu[s];
                    worst_ref[s] = er > worst_ref[s] ? er : worst_ref[s];
                    products++;
                    CHECKF(unwritten == 0, "%s %s K=%lld rows=%lld n=%lld: %lld outputs not finite",
                           set_names[s], rl_type_name(t), (long long)K, (long long)rows,
                           (long long)n, (long long)unwritten);
                    CHECKF(ec <= 1e-6, "%s %s K=%lld rows=%lld n=%lld: nmse vs cpu %.3g",
                           set_names[s], rl_type_name(t), (long long)K, (long long)rows,
                           (long long)n, ec);
                    CHECKF(er <= 1e-10, "%s %s K=%lld rows=%lld n=%lld: nmse vs ref %.3g",
                           set_names[s], rl_type_name(t), (long long)K, (long long)rows,
                           (long long)n, er);
                    /* the build's routing on these shapes: ref's kernels, ref's bits */
                    if (s == 3 && yref)
                        CHECKF(!memcmp(y, yref, ny * sizeof(float)),
                               "default %s K=%lld rows=%lld n=%lld: other bits than ref",
                               rl_type_name(t), (long long)K, (long long)rows, (long long)n);
                    CHECKF(!memcmp(y, y2, ny * sizeof(float)),
                           "%s %s K=%lld rows=%lld n=%lld: a second run gave other bits",
                           set_names[s], rl_type_name(t), (long long)K, (long long)rows,
                           (long long)n);
                    free(y2);
                    if (s == 0)
                        yref = y;
                    else
                        free(y);
                }
                free(yref);
                free(yc);
                free(x);
                gpu->ops->free(gpu, xd);
            }
            gpu->ops->free(gpu, wdev);
            free(data);
        }
    }
    unsetenv("RUVLLM_CUDA_MMQ_SRG");
    rl__cu_mmq_config(-1, -1, -1, -1, -1);
    for (int s = 0; s < NSET; s++)
        printf("  %-9s worst nmse vs cpu %.3g, vs ref %.3g\n", set_names[s], worst_cpu[s], worst_ref[s]);
    printf("  %d products\n", products);
}

int main(void) {
    /* graphs off: the test switches kernels between passes of the same list */
    rl_test_gpu_pair(&gpu, &cpu, true, g_skip, sizeof g_skip);
    RUN(cuda_mmq_srow);
    rl__backend_free(gpu);
    rl__backend_free(cpu);
    return rl_test_finish();
}
