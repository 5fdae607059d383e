/* matvec.cu's decoders (Q4_K and Q6_K of one code per activation: MQ4_K5, MQ6_K2; Q8_0,
 * Q4_0, F16) against the CPU backend.
 *
 * Products: single-token products of K 2048, 4096 and 14336 (the 4-lanes-a-super-block
 * kernel needs K % 2048 == 0) over 1, 5, 1024 and 4097 rows, at the kernel's own rows per
 * item and at 1, 2 and 4: against the CPU backend (which rounds activations the same way
 * and sums the same integer products) within the q8 path's bound, 5e-4, and every row
 * written (the output is filled with NaN first). Run it under the streaming kernel's switches
 * (RUVLLM_CUDA_MV_BULK, RUVLLM_CUDA_MV_DYN) to check those paths at these shapes.
 *
 * Fused FFN: RMSNorm, gate and up, SwiGLU, down (Q4_K gate/up of K 2048: the joined
 * gate/up product with SwiGLU in its epilogue through MQ4_K5; Q6_K down of K 2048 through
 * MQ6_K2) against a fork with RUVLLM_CUDA_FUSE=0: the same bits everywhere (the joined
 * kernel does what the separate products and the gated activation do), products within
 * 5e-4 of the CPU on the GPU's own inputs.
 *
 * Products copied into registered host memory (mv_head_to_host): stored there by the
 * streaming kernel, the same bits as its device output. Without a CUDA device the program
 * is skipped. */
#include "backend/backend.h"
#include "gpu.h"
#include "rng.h"
#include "test.h"

static rl_backend *cpu, *gpu;
static char g_skip[320];
static uint64_t g_rng = 0x2545f4914f6cdd1dull;

static float *rand_vec(size_t n) { return rl_test_unif_vec(&g_rng, n); }

typedef struct mv_weight {
    rl_weight w;  /* host data (the CPU's) */
    rl_weight wd; /* device copy */
} mv_weight;

static bool weight_make(rl_type t, int64_t K, int64_t rows, mv_weight *q) {
    size_t rb;
    if (rl_type_row_bytes(t, K, &rb) != RL_OK) return false;
    float *src = rand_vec((size_t)(K * rows));
    void *data = malloc(rb * (size_t)rows);
    CHECK(rl_quantize(t, src, data, rows, K, NULL) == RL_OK);
    free(src);
    q->w =
        (rl_weight){.name = "w", .type = t, .ne = {K, rows, 1, 1}, .row_bytes = rb, .data = data};
    q->wd = q->w;
    void *d = gpu->ops->alloc(gpu, rb * (size_t)rows);
    CHECK(d != NULL);
    gpu->ops->from_host(gpu, d, data, rb * (size_t)rows);
    q->wd.data = d;
    return true;
}

static void weight_free(mv_weight *q) {
    gpu->ops->free(gpu, (void *)q->wd.data);
    free((void *)q->w.data);
}

static double sq_sum(const float *a, const float *b, size_t n, double *den) {
    double num = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = isfinite(a[i]) ? (double)a[i] - (double)b[i] : INFINITY;
        num += d * d;
        *den += (double)b[i] * (double)b[i];
    }
    return num;
}

TEST(mv_decoders) {
    if (!gpu) SKIP("%s", g_skip);
    static const rl_type types[5] = {RL_TYPE_Q4_K, RL_TYPE_Q6_K, RL_TYPE_Q8_0, RL_TYPE_Q4_0,
                                     RL_TYPE_F16};
    static const int64_t Ks[3] = {2048, 4096, 14336}, rowss[4] = {1, 5, 1024, 4097};
    static const char *const rpi[4] = {NULL, "1,1,1,1,1", "2,2,2,2,2", "4,4,4,4,4"};
    for (int ti = 0; ti < 5; ti++) {
        double num_cpu = 0, den_cpu = 0;
        for (int ki = 0; ki < 3; ki++) {
            for (int ri = 0; ri < 4; ri++) {
                const int64_t K = Ks[ki], rows = rowss[ri];
                mv_weight q;
                if (!weight_make(types[ti], K, rows, &q)) continue;
                float *x = rand_vec((size_t)K), *yc = malloc((size_t)rows * sizeof(float));
                CHECK(cpu->ops->matmul(cpu, &q.w, x, 1, yc) == RL_OK);
                float *xd = gpu->ops->alloc(gpu, (size_t)K * sizeof(float));
                float *yd = gpu->ops->alloc(gpu, (size_t)rows * sizeof(float));
                gpu->ops->from_host(gpu, xd, x, (size_t)K * sizeof(float));
                for (int p = 0; p < 4; p++) {
                    rl_test_cuda_setting("RUVLLM_CUDA_MV_R", rpi[p]);
                    gpu->ops->fill(gpu, yd, rows, NAN);
                    CHECK(gpu->ops->matmul(gpu, &q.wd, xd, 1, yd) == RL_OK);
                    float *y = rl_test_dev_get(gpu, yd, (size_t)rows);
                    num_cpu += sq_sum(y, yc, (size_t)rows, &den_cpu);
                    free(y);
                }
                gpu->ops->free(gpu, xd);
                gpu->ops->free(gpu, yd);
                free(x);
                free(yc);
                weight_free(&q);
            }
        }
        const double e_cpu = den_cpu > 0 ? num_cpu / den_cpu : num_cpu;
        fprintf(stderr, "  %s: nmse vs cpu %.3g\n", rl_type_name(types[ti]), e_cpu);
        CHECKF(e_cpu <= 5e-4, "%s: vs cpu nmse %.3g", rl_type_name(types[ti]), e_cpu);
    }
    rl_test_cuda_setting("RUVLLM_CUDA_MV_R", NULL);
}

/* A product whose output is copied into registered host memory right after it (the output
 * head and its logits row): the streaming kernel stores its rows there itself
 * (head_to_host). The host row must hold exactly the device output, which must still be
 * written, at row counts that end inside a line of 32 and at K that splits a row's chunks
 * over several warps; the products the streaming kernel takes must go that way. */
TEST(mv_head_to_host) {
    if (!gpu) SKIP("%s", g_skip);
    static const rl_type types[5] = {RL_TYPE_Q4_K, RL_TYPE_Q6_K, RL_TYPE_Q8_0, RL_TYPE_Q4_0,
                                     RL_TYPE_F16};
    static const int64_t Ks[2] = {2048, 14336}, rowss[5] = {5, 33, 1000, 4097, 40001};
    const int64_t before = rl__cuda_head_host_count(gpu);
    CHECK(before >= 0);
    int64_t big = 0;
    for (int ti = 0; ti < 5; ti++) {
        for (int ki = 0; ki < 2; ki++) {
            for (int ri = 0; ri < 5; ri++) {
                const int64_t K = Ks[ki], rows = rowss[ri];
                if (K * rows > ((int64_t)64 << 20)) continue;
                mv_weight q;
                if (!weight_make(types[ti], K, rows, &q)) continue;
                const size_t yb = (size_t)rows * sizeof(float);
                float *x = rand_vec((size_t)K), *yc = malloc(yb), *yh = malloc(yb);
                CHECK(gpu->ops->host_register(gpu, yh, yb) == RL_OK);
                for (int64_t i = 0; i < rows; i++) yh[i] = NAN;
                CHECK(cpu->ops->matmul(cpu, &q.w, x, 1, yc) == RL_OK);
                float *xd = gpu->ops->alloc(gpu, (size_t)K * sizeof(float));
                float *yd = gpu->ops->alloc(gpu, yb);
                gpu->ops->from_host(gpu, xd, x, (size_t)K * sizeof(float));
                gpu->ops->fill(gpu, yd, rows, NAN);
                CHECK(gpu->ops->matmul(gpu, &q.wd, xd, 1, yd) == RL_OK);
                gpu->ops->to_host(gpu, yh, yd, yb);
                CHECK(gpu->ops->sync(gpu) == RL_OK);
                float *y = rl_test_dev_get(gpu, yd, (size_t)rows);
                CHECKF(!memcmp(y, yh, yb), "%s K %lld rows %lld: host row differs from the output",
                       rl_type_name(types[ti]), (long long)K, (long long)rows);
                const double e = rl_test_nmse(yh, yc, (size_t)rows);
                CHECKF(e <= 5e-4, "%s K %lld rows %lld: nmse vs cpu %.3g", rl_type_name(types[ti]),
                       (long long)K, (long long)rows, e);
                if (rows >= 1000) big++;
                free(y);
                gpu->ops->host_unregister(gpu, yh);
                gpu->ops->free(gpu, xd);
                gpu->ops->free(gpu, yd);
                free(x);
                free(yc);
                free(yh);
                weight_free(&q);
            }
        }
    }
    const int64_t got = rl__cuda_head_host_count(gpu) - before;
    fprintf(stderr, "  head to host: %lld products stored into the host row (%lld of 1000+ rows)\n",
            (long long)got, (long long)big);
    CHECKF(got >= big, "only %lld products stored into the host row, %lld expected at least",
           (long long)got, (long long)big);
}

/* x -> RMSNorm -> gate, up -> SwiGLU -> down on backend be; outputs h, gate, up, a, down */
enum { FF_X, FF_H, FF_G, FF_U, FF_A, FF_Y, FF_N };

static void ffn(rl_backend *be, float *const *p, const mv_weight *w, const float *nw,
                const float *xh, int64_t D, int64_t F) {
    be->ops->from_host(be, p[FF_X], xh, (size_t)D * sizeof(float));
    be->ops->rmsnorm(be, p[FF_X], 1, D, 1e-5f, nw, p[FF_H]);
    CHECK(be->ops->matmul(be, &w[0].wd, p[FF_H], 1, p[FF_G]) == RL_OK);
    CHECK(be->ops->matmul(be, &w[1].wd, p[FF_H], 1, p[FF_U]) == RL_OK);
    be->ops->glu(be, RL_GLU_SILU, p[FF_G], F, p[FF_U], F, 1, F, p[FF_A]);
    CHECK(be->ops->matmul(be, &w[2].wd, p[FF_A], 1, p[FF_Y]) == RL_OK);
    CHECK(be->ops->sync(be) == RL_OK);
}

TEST(mv_fused_ffn) {
    if (!gpu) SKIP("%s", g_skip);
    const int64_t D = 2048, F = 2048;
    setenv("RUVLLM_CUDA_FUSE", "0", 1);
    rl_backend *off = NULL;
    const rl_status st = gpu->ops->fork(gpu, &off);
    unsetenv("RUVLLM_CUDA_FUSE");
    CHECK(st == RL_OK);
    if (st != RL_OK) return;
    mv_weight w[3];
    const bool ok = weight_make(RL_TYPE_Q4_K, D, F, &w[0]) &&
                    weight_make(RL_TYPE_Q4_K, D, F, &w[1]) &&
                    weight_make(RL_TYPE_Q6_K, F, D, &w[2]);
    CHECK(ok);
    if (!ok) {
        rl__backend_free(off);
        return;
    }
    static const char *const names[FF_N] = {"x", "h", "gate", "up", "glu", "down"};
    const int64_t n[FF_N] = {D, D, F, F, F, D};
    float *x = rand_vec((size_t)D), *nw = rand_vec((size_t)D);
    float *nwd = gpu->ops->alloc(gpu, (size_t)D * sizeof(float));
    gpu->ops->from_host(gpu, nwd, nw, (size_t)D * sizeof(float));
    float *p[2][FF_N], *res[2][FF_N];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < FF_N; j++) p[i][j] = gpu->ops->alloc(gpu, (size_t)n[j] * sizeof(float));
    ffn(gpu, p[0], w, nwd, x, D, F);
    ffn(off, p[1], w, nwd, x, D, F);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < FF_N; j++) res[i][j] = rl_test_dev_get(i ? off : gpu, p[i][j], (size_t)n[j]);
    for (int j = 0; j < FF_N; j++)
        CHECKF(!memcmp(res[0][j], res[1][j], (size_t)n[j] * sizeof(float)),
               "fused ffn: %s differs from the unfused ops", names[j]);
    /* the products against the CPU on the GPU's own inputs: gate, up from h; down from a */
    const int pin[3] = {FF_H, FF_H, FF_A}, pout[3] = {FF_G, FF_U, FF_Y};
    for (int i = 0; i < 3; i++) {
        const int64_t rows = n[pout[i]];
        float *yc = malloc((size_t)rows * sizeof(float));
        CHECK(cpu->ops->matmul(cpu, &w[i].w, res[0][pin[i]], 1, yc) == RL_OK);
        const double e = rl_test_nmse(res[0][pout[i]], yc, (size_t)rows);
        fprintf(stderr, "  fused ffn: %s nmse vs cpu %.3g\n", names[pout[i]], e);
        CHECKF(e <= 5e-4, "fused ffn: %s nmse vs cpu %.3g", names[pout[i]], e);
        free(yc);
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < FF_N; j++) {
            free(res[i][j]);
            gpu->ops->free(gpu, p[i][j]);
        }
    gpu->ops->free(gpu, nwd);
    free(x);
    free(nw);
    for (int i = 0; i < 3; i++) weight_free(&w[i]);
    rl__backend_free(off);
}

int main(void) {
    rl_test_gpu_pair(&gpu, &cpu, false, g_skip, sizeof g_skip);
    RUN(mv_decoders);
    RUN(mv_fused_ffn);
    RUN(mv_head_to_host);
    if (gpu) rl__backend_free(gpu);
    if (cpu) rl__backend_free(cpu);
    return rl_test_finish();
}
