/* matvec.cu's single-token products at the Llama 3 8B shapes (D = 4096, F = 14336), where
 * the joined gate/up product with the gated activation gives each warp several groups of
 * rows (the 2048-wide FFN of test_cuda_mv2 gives each warp one): the fused FFN (RMSNorm,
 * gate/up + SwiGLU in one kernel, its q8 output read by the down product) against a fork
 * with RUVLLM_CUDA_FUSE=0 bit for bit, for Q4_K gate/up with a Q6_K down and for Q8_0
 * throughout; the same bits with the gated values counted per group of rows
 * (RUVLLM_CUDA_MV_GLUEND=0) and with 2 rows per item for Q4_K (RUVLLM_CUDA_MV_R=2: the
 * gate/up product sums each row over its chunks in the same order whatever the rows per
 * item); the products within 5e-4 of the CPU on the GPU's own inputs.
 *
 * Timing (RUVLLM_DECODE_FFN_BENCH=1, test decode_ffn_time): microseconds per layer part through the
 * backend's queue (so the decode step's fusion, graphs and programmatic launch apply), over
 * enough copies of the weights that they do not fit in L2: "ffn" = RMSNorm, gate/up +
 * SwiGLU, down; "gu" = RMSNorm, gate/up + SwiGLU; "attnp" = RMSNorm, q, k, v (joined), o;
 * at the 8B and 1B shapes for Q4_K_M (Q4_K, Q6_K down), Q8_0 and F16. The settings under
 * test come from the environment of the process. Without a CUDA device the program is
 * skipped. */
#include "backend/backend.h"
#include "gpu.h"
#include "rng.h"
#include "test.h"

#include <time.h>

static rl_backend *cpu, *gpu;
static char g_skip[320];
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static float *rand_vec(size_t n) { return rl_test_unif_vec(&g_rng, n); }

/* A weight quantized on the host and nc device copies of it. */
typedef struct mv_weight {
    rl_weight w;      /* host data */
    rl_weight wd[16]; /* device copies */
    int nc;
} mv_weight;

static bool weight_make(rl_type t, int64_t K, int64_t rows, int nc, mv_weight *q) {
    size_t rb;
    if (rl_type_row_bytes(t, K, &rb) != RL_OK) return false;
    float *src = rand_vec((size_t)(K * rows));
    void *data = malloc(rb * (size_t)rows);
    const bool ok = rl_quantize(t, src, data, rows, K, NULL) == RL_OK;
    CHECK(ok);
    free(src);
    q->w = (rl_weight){.name = "w", .type = t, .ne = {K, rows, 1, 1}, .row_bytes = rb, .data = data};
    q->nc = 0;
    for (int c = 0; ok && c < nc; c++) {
        void *d = gpu->ops->alloc(gpu, rb * (size_t)rows);
        CHECK(d != NULL);
        if (!d) break;
        gpu->ops->from_host(gpu, d, data, rb * (size_t)rows);
        q->wd[c] = q->w;
        q->wd[c].data = d;
        q->nc++;
    }
    return ok && q->nc == nc;
}

/* For timing: random bytes as the weight's data (every 16-bit half finite: exponent field
 * below 15, so the blocks' scales are finite), nc device copies. */
static bool weight_fill(rl_type t, int64_t K, int64_t rows, int nc, mv_weight *q) {
    size_t rb;
    if (rl_type_row_bytes(t, K, &rb) != RL_OK) return false;
    const size_t bytes = rb * (size_t)rows, nw = (bytes + 3) / 4;
    uint32_t *data = malloc(nw * 4);
    uint64_t z = g_rng ^ (uint64_t)bytes;
    for (size_t i = 0; i < nw; i++) {
        z ^= z << 13;
        z ^= z >> 7;
        z ^= z << 17;
        data[i] = (uint32_t)(z >> 16) & 0xbbffbbffu;
    }
    q->w = (rl_weight){.name = "w", .type = t, .ne = {K, rows, 1, 1}, .row_bytes = rb, .data = data};
    q->nc = 0;
    for (int c = 0; c < nc; c++) {
        void *d = gpu->ops->alloc(gpu, bytes);
        CHECK(d != NULL);
        if (!d) break;
        gpu->ops->from_host(gpu, d, data, bytes);
        q->wd[c] = q->w;
        q->wd[c].data = d;
        q->nc++;
    }
    return q->nc == nc;
}

static void weight_free(mv_weight *q) {
    for (int c = 0; c < q->nc; c++) gpu->ops->free(gpu, (void *)q->wd[c].data);
    free((void *)q->w.data);
}

/* The process's matvec settings (read when a backend is made) from the environment. */
static void mv_env(const char *glu_end, const char *rows) {
    static const char *names[2] = {"RUVLLM_CUDA_MV_GLUEND", "RUVLLM_CUDA_MV_R"};
    const char *v[2] = {glu_end, rows};
    for (int i = 0; i < 2; i++) {
        if (v[i])
            setenv(names[i], v[i], 1);
        else
            unsetenv(names[i]);
    }
    rl_backend *b = NULL;
    char err[256];
    CHECK(rl__backend_cuda_create(0, &b, err, sizeof err) == RL_OK);
    if (b) rl__backend_free(b);
}

enum { FF_X, FF_H, FF_G, FF_U, FF_A, FF_Y, FF_N };

/* RMSNorm, gate, up, SwiGLU, down on copy c of the weights (w: gate, up, down); the input
 * stays in p[FF_X] */
static void ffn_ops(rl_backend *be, float *const *p, const mv_weight *w, int c, const float *nw,
                    int64_t D, int64_t F, bool down) {
    be->ops->rmsnorm(be, p[FF_X], 1, D, 1e-5f, nw, p[FF_H]);
    CHECK(be->ops->matmul(be, &w[0].wd[c], p[FF_H], 1, p[FF_G]) == RL_OK);
    CHECK(be->ops->matmul(be, &w[1].wd[c], p[FF_H], 1, p[FF_U]) == RL_OK);
    be->ops->glu(be, RL_GLU_SILU, p[FF_G], F, p[FF_U], F, 1, F, p[FF_A]);
    if (down) CHECK(be->ops->matmul(be, &w[2].wd[c], p[FF_A], 1, p[FF_Y]) == RL_OK);
}

static const char *const ff_names[FF_N] = {"x", "h", "gate", "up", "glu", "down"};

/* The fused FFN of one configuration against the unfused fork, the switches' variants and
 * the CPU. */
static void ffn_check(rl_backend *off, rl_type tgu, rl_type tdown, int64_t D, int64_t F) {
    mv_weight w[3];
    const bool ok = weight_make(tgu, D, F, 1, &w[0]) && weight_make(tgu, D, F, 1, &w[1]) &&
                    weight_make(tdown, F, D, 1, &w[2]);
    CHECK(ok);
    if (!ok) return;
    const int64_t n[FF_N] = {D, D, F, F, F, D};
    float *x = rand_vec((size_t)D), *nw = rand_vec((size_t)D);
    float *nwd = gpu->ops->alloc(gpu, (size_t)D * sizeof(float));
    gpu->ops->from_host(gpu, nwd, nw, (size_t)D * sizeof(float));
    enum { NV = 4 }; /* default, unfused, GLUEND=0, Q4_K at 2 rows per item */
    static const char *const vname[NV] = {"default", "unfused", "GLUEND=0", "MV_R=2"};
    float *p[NV][FF_N], *res[NV][FF_N];
    for (int v = 0; v < NV; v++) {
        rl_backend *be = v == 1 ? off : gpu;
        for (int j = 0; j < FF_N; j++) {
            p[v][j] = be->ops->alloc(be, (size_t)n[j] * sizeof(float));
            be->ops->fill(be, p[v][j], n[j], NAN);
        }
        if (v == 2) mv_env("0", NULL);
        if (v == 3) mv_env(NULL, "2,-1,-1,-1,-1");
        be->ops->from_host(be, p[v][FF_X], x, (size_t)D * sizeof(float));
        /* twice: the second pass replays the first's graph */
        for (int pass = 0; pass < 2; pass++) {
            ffn_ops(be, p[v], w, 0, nwd, D, F, true);
            CHECK(be->ops->sync(be) == RL_OK);
        }
        for (int j = 0; j < FF_N; j++) res[v][j] = rl_test_dev_get(be, p[v][j], (size_t)n[j]);
        if (v >= 2) mv_env(NULL, NULL);
    }
    for (int v = 1; v < NV; v++)
        for (int j = 0; j < FF_N; j++)
            CHECKF(!memcmp(res[0][j], res[v][j], (size_t)n[j] * sizeof(float)),
                   "%s/%s ffn %lldx%lld: %s of the default differs from %s", rl_type_name(tgu),
                   rl_type_name(tdown), (long long)D, (long long)F, ff_names[j], vname[v]);
    const int pin[3] = {FF_H, FF_H, FF_A}, pout[3] = {FF_G, FF_U, FF_Y};
    for (int i = 0; i < 3; i++) {
        const int64_t rows = n[pout[i]];
        float *yc = malloc((size_t)rows * sizeof(float));
        CHECK(cpu->ops->matmul(cpu, &w[i].w, res[0][pin[i]], 1, yc) == RL_OK);
        const double e = rl_test_nmse(res[0][pout[i]], yc, (size_t)rows);
        fprintf(stderr, "  %s/%s ffn %lldx%lld: %s nmse vs cpu %.3g\n", rl_type_name(tgu),
                rl_type_name(tdown), (long long)D, (long long)F, ff_names[pout[i]], e);
        CHECKF(e <= 5e-4, "%s nmse vs cpu %.3g", ff_names[pout[i]], e);
        free(yc);
    }
    for (int v = 0; v < NV; v++)
        for (int j = 0; j < FF_N; j++) {
            free(res[v][j]);
            (v == 1 ? off : gpu)->ops->free(v == 1 ? off : gpu, p[v][j]);
        }
    gpu->ops->free(gpu, nwd);
    free(x);
    free(nw);
    for (int i = 0; i < 3; i++) weight_free(&w[i]);
}

TEST(decode_ffn) {
    if (!gpu) SKIP("%s", g_skip);
    setenv("RUVLLM_CUDA_FUSE", "0", 1);
    rl_backend *off = NULL;
    const rl_status st = gpu->ops->fork(gpu, &off);
    unsetenv("RUVLLM_CUDA_FUSE");
    CHECK(st == RL_OK);
    if (st != RL_OK) return;
    /* RUVLLM_DECODE_FFN_FFN=small: the 1B shape alone (for the slower sanitizer tools) */
    const char *only = getenv("RUVLLM_DECODE_FFN_FFN");
    if (!only || strcmp(only, "small") != 0) {
        ffn_check(off, RL_TYPE_Q4_K, RL_TYPE_Q6_K, 4096, 14336);
        ffn_check(off, RL_TYPE_Q8_0, RL_TYPE_Q8_0, 4096, 14336);
    }
    ffn_check(off, RL_TYPE_Q4_K, RL_TYPE_Q6_K, 2048, 8192);
    rl__backend_free(off);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Seconds per part (one copy's ops), best of 5 lists of reps x nc parts. */
enum { PART_FFN, PART_GU, PART_ATTN };
static double time_part(int part, float *const *p, const mv_weight *w, const float *nwd, int64_t D,
                        int64_t F) {
    const int nc = w[0].nc, reps = 4;
    double best = 1e30;
    for (int round = 0; round < 7; round++) {
        const double t0 = now();
        for (int r = 0; r < reps; r++)
            for (int c = 0; c < nc; c++) {
                if (part != PART_ATTN) {
                    ffn_ops(gpu, p, w, c, nwd, D, F, part == PART_FFN);
                } else {
                    gpu->ops->rmsnorm(gpu, p[FF_X], 1, D, 1e-5f, nwd, p[FF_H]);
                    const rl_weight *qkv[3] = {&w[0].wd[c], &w[1].wd[c], &w[2].wd[c]};
                    float *const y[3] = {p[FF_G], p[FF_U], p[FF_A]};
                    if (gpu->ops->matmul_multi) {
                        CHECK(gpu->ops->matmul_multi(gpu, qkv, 3, p[FF_H], 1, y) == RL_OK);
                    } else {
                        for (int i = 0; i < 3; i++)
                            CHECK(gpu->ops->matmul(gpu, qkv[i], p[FF_H], 1, y[i]) == RL_OK);
                    }
                    CHECK(gpu->ops->matmul(gpu, &w[3].wd[c], p[FF_G], 1, p[FF_Y]) == RL_OK);
                }
            }
        CHECK(gpu->ops->sync(gpu) == RL_OK);
        const double t = (now() - t0) / (reps * nc);
        if (round >= 2 && t < best) best = t; /* the first two: capture and warm-up */
    }
    return best;
}

/* One model shape and type set: the three parts' times. */
static void time_shape(const char *name, rl_type tgu, rl_type tdown, rl_type tattn, int64_t D,
                       int64_t F, int64_t KV) {
    size_t rb_gu, rb_d, rb_a;
    if (rl_type_row_bytes(tgu, D, &rb_gu) != RL_OK || rl_type_row_bytes(tdown, F, &rb_d) != RL_OK ||
        rl_type_row_bytes(tattn, D, &rb_a) != RL_OK)
        return;
    const size_t ffn_bytes = 2 * rb_gu * (size_t)F + rb_d * (size_t)D;
    const size_t attn_bytes = rb_a * (size_t)(2 * D + 2 * KV);
    int nc = (int)(((size_t)256 << 20) / ffn_bytes) + 1, na = (int)(((size_t)256 << 20) / attn_bytes) + 1;
    nc = nc < 2 ? 2 : nc > 16 ? 16 : nc;
    na = na < 2 ? 2 : na > 16 ? 16 : na;
    mv_weight w[3], a[4];
    memset(w, 0, sizeof w);
    memset(a, 0, sizeof a);
    bool ok = weight_fill(tgu, D, F, nc, &w[0]) && weight_fill(tgu, D, F, nc, &w[1]) &&
              weight_fill(tdown, F, D, nc, &w[2]);
    ok = ok && weight_fill(tattn, D, D, na, &a[0]) && weight_fill(tattn, D, KV, na, &a[1]) &&
         weight_fill(tattn, D, KV, na, &a[2]) && weight_fill(tattn, D, D, na, &a[3]);
    CHECK(ok);
    if (ok) {
        const int64_t n[FF_N] = {D, D, F, F, F, D};
        float *p[FF_N];
        for (int j = 0; j < FF_N; j++) {
            p[j] = gpu->ops->alloc(gpu, (size_t)n[j] * sizeof(float));
            gpu->ops->fill(gpu, p[j], n[j], 0.0f);
        }
        float *x = rand_vec((size_t)D), *nw = rand_vec((size_t)D);
        float *nwd = gpu->ops->alloc(gpu, (size_t)D * sizeof(float));
        gpu->ops->from_host(gpu, nwd, nw, (size_t)D * sizeof(float));
        gpu->ops->from_host(gpu, p[FF_X], x, (size_t)D * sizeof(float));
        const double tf = time_part(PART_FFN, p, w, nwd, D, F);
        const double tg = time_part(PART_GU, p, w, nwd, D, F);
        const double ta = time_part(PART_ATTN, p, a, nwd, D, F);
        printf("decode_ffn_time %-10s ffn %7.2f us (%4.0f GB/s)  gu %7.2f us (%4.0f "
               "GB/s)  attnp %6.2f us (%4.0f GB/s)  copies %d/%d\n",
               name, 1e6 * tf, (double)ffn_bytes / tf / 1e9,
               1e6 * tg, (double)(2 * rb_gu * (size_t)F) / tg / 1e9, 1e6 * ta,
               (double)attn_bytes / ta / 1e9, nc, na);
        fflush(stdout);
        for (int j = 0; j < FF_N; j++) gpu->ops->free(gpu, p[j]);
        gpu->ops->free(gpu, nwd);
        free(x);
        free(nw);
    }
    for (int i = 0; i < 3; i++) weight_free(&w[i]);
    for (int i = 0; i < 4; i++) weight_free(&a[i]);
}

TEST(decode_ffn_time) {
    if (!gpu) SKIP("%s", g_skip);
    const char *b = getenv("RUVLLM_DECODE_FFN_BENCH");
    if (!b || b[0] != '1') SKIP("RUVLLM_DECODE_FFN_BENCH=1 times the layer parts");
    const char *only = getenv("RUVLLM_DECODE_FFN_SHAPES"); /* e.g. "8b-q4km,1b-q4km" */
    struct {
        const char *name;
        rl_type gu, down, attn;
        int64_t D, F, KV;
    } sh[] = {
        {"8b-q4km", RL_TYPE_Q4_K, RL_TYPE_Q6_K, RL_TYPE_Q4_K, 4096, 14336, 1024},
        {"8b-q8_0", RL_TYPE_Q8_0, RL_TYPE_Q8_0, RL_TYPE_Q8_0, 4096, 14336, 1024},
        {"8b-f16", RL_TYPE_F16, RL_TYPE_F16, RL_TYPE_F16, 4096, 14336, 1024},
        {"1b-q4km", RL_TYPE_Q4_K, RL_TYPE_Q6_K, RL_TYPE_Q4_K, 2048, 8192, 512},
    };
    for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
        if (only && !strstr(only, sh[i].name)) continue;
        time_shape(sh[i].name, sh[i].gu, sh[i].down, sh[i].attn, sh[i].D, sh[i].F, sh[i].KV);
    }
}

int main(void) {
    rl_test_gpu_pair(&gpu, &cpu, false, g_skip, sizeof g_skip);
    RUN(decode_ffn);
    RUN(decode_ffn_time);
    if (gpu) rl__backend_free(gpu);
    if (cpu) rl__backend_free(cpu);
    return rl_test_finish();
}
