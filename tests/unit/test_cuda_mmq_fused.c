/* Products of many tokens (mmq.cu) reading activations that the op before them quantized:
 * the RMSNorm (with its residual add) before q/k/v and gate/up, and the gated activation
 * before down, write mmq.cu's quantized workspace (both roundings: per 256 for Q4_K / Q6_K
 * weights, per 32 for Q4_0 / Q8_0), and the products skip their own quantization.
 *
 * mmq_xq_layers: a layer's small ops and products (add + RMSNorm -> q, k, v; add + RMSNorm
 * -> gate, up; SwiGLU -> down, with the gated activation in place, into its own output and
 * from a joined [gate; up]) at 5 to 128 tokens (padded tiles of 8, every kernel shape
 * mmq.cu picks), on the default backend and on a fork with RUVLLM_CUDA_MMQ_XQ=0 (each
 * product quantizing its own input): the same bits in every output, three passes each (eager,
 * captured, replayed graphs), outputs poisoned before each; the products within 5e-4 of
 * the CPU on the GPU's own inputs.
 *
 * Timing (RUVLLM_MMQ_FUSED_BENCH=1): Llama 3 8B shapes (4096 / 14336; Q4_K q, k, gate, up;
 * Q6_K v and down; no attention or o), 32 and 64 tokens, a list of 20 such layer parts
 * replayed as a graph, both backends back to back, twice. Without a CUDA device the
 * program is skipped. */
#include "backend/backend.h"
#include "gpu.h"
#include "rng.h"
#include "test.h"


static rl_backend *cpu, *gpu;
static char g_skip[320];
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static float *rand_vec(size_t n) { return rl_test_unif_vec(&g_rng, n); }

typedef rl_test_hw tw;

static bool weight_make(rl_type t, int64_t K, int64_t rows, bool raw, tw *q) {
    return rl_test_hw_make(gpu, &g_rng, t, K, rows, raw, q);
}

static void weight_free(tw *q) { rl_test_hw_free(gpu, q); }

/* The tensors of one layer part; sizes in floats for n tokens of width D and FFN width F. */
enum { L_X, L_R1, L_R2, L_H1, L_H2, L_Q, L_K, L_V, L_G, L_U, L_GU, L_A, L_Y, L_Y2, L_Y3, L_N };
enum { W_Q, W_K, W_V, W_G, W_U, W_GU, W_D, W_N };

static int64_t tensor_len(int i, int64_t n, int64_t D, int64_t F, const tw *w) {
    switch (i) {
    case L_Q:
    case L_K:
    case L_V:
        return n * w[W_Q + (i - L_Q)].w.ne[1];
    case L_G:
    case L_U:
    case L_A:
        return n * F;
    case L_GU:
        return n * 2 * F;
    default:
        return n * D;
    }
}

enum { LAYER_OUT = 1, LAYER_JOINED = 2 };

/* x += r1; h1 = norm(x) -> q, k, v; x += r2; h2 = norm(x) -> gate, up; g = glu(g, u) in
 * place -> y. mode LAYER_OUT: first a glu of g, u into its own output a -> y3; LAYER_JOINED:
 * also the joined [gate; up] product of h2, its glu into a -> y2. Nothing waits between. */
static void layer(rl_backend *be, float *const *p, const tw *w, const float *nw, int64_t n,
                  int64_t D, int64_t F, int mode) {
    be->ops->add(be, p[L_X], p[L_R1], n * D);
    be->ops->rmsnorm(be, p[L_X], n, D, 1e-5f, nw, p[L_H1]);
    CHECK(be->ops->matmul(be, &w[W_Q].wd, p[L_H1], n, p[L_Q]) == RL_OK);
    CHECK(be->ops->matmul(be, &w[W_K].wd, p[L_H1], n, p[L_K]) == RL_OK);
    CHECK(be->ops->matmul(be, &w[W_V].wd, p[L_H1], n, p[L_V]) == RL_OK);
    be->ops->add(be, p[L_X], p[L_R2], n * D);
    be->ops->rmsnorm(be, p[L_X], n, D, 1e-5f, nw + D, p[L_H2]);
    CHECK(be->ops->matmul(be, &w[W_G].wd, p[L_H2], n, p[L_G]) == RL_OK);
    CHECK(be->ops->matmul(be, &w[W_U].wd, p[L_H2], n, p[L_U]) == RL_OK);
    if (mode & LAYER_JOINED) CHECK(be->ops->matmul(be, &w[W_GU].wd, p[L_H2], n, p[L_GU]) == RL_OK);
    if (mode & LAYER_OUT) {
        be->ops->glu(be, RL_GLU_SILU, p[L_G], F, p[L_U], F, n, F, p[L_A]);
        CHECK(be->ops->matmul(be, &w[W_D].wd, p[L_A], n, p[L_Y3]) == RL_OK);
    }
    be->ops->glu(be, RL_GLU_SILU, p[L_G], F, p[L_U], F, n, F, p[L_G]);
    CHECK(be->ops->matmul(be, &w[W_D].wd, p[L_G], n, p[L_Y]) == RL_OK);
    if (mode & LAYER_JOINED) {
        be->ops->glu(be, RL_GLU_SILU, p[L_GU], 2 * F, p[L_GU] + F, 2 * F, n, F, p[L_A]);
        CHECK(be->ops->matmul(be, &w[W_D].wd, p[L_A], n, p[L_Y2]) == RL_OK);
    }
}

static rl_backend *fork_unfused(void) {
    setenv("RUVLLM_CUDA_MMQ_XQ", "0", 1);
    rl_backend *off = NULL;
    const rl_status st = gpu->ops->fork(gpu, &off);
    unsetenv("RUVLLM_CUDA_MMQ_XQ");
    CHECK(st == RL_OK);
    return st == RL_OK ? off : NULL;
}

TEST(mmq_xq_layers) {
    if (!gpu) SKIP("%s", g_skip);
    rl_backend *off = fork_unfused();
    if (!off) return;
    static const rl_type wt[2][3] = {{RL_TYPE_Q4_K, RL_TYPE_Q6_K, RL_TYPE_Q4_K},
                                     {RL_TYPE_Q4_0, RL_TYPE_Q8_0, RL_TYPE_Q8_0}};
    static const int64_t ns[7] = {5, 8, 13, 32, 33, 64, 128};
    const int64_t D = 512, F = 768;
    for (int set = 0; set < 2; set++) {
        /* q, k: the first type; v, down: the second; gate, up, joined: the third */
        tw w[W_N];
        const int64_t rows[W_N] = {D, 256, 256, F, F, 2 * F, D};
        const rl_type types[W_N] = {wt[set][0], wt[set][0], wt[set][1], wt[set][2],
                                    wt[set][2], wt[set][2], wt[set][1]};
        bool ok = true;
        for (int i = 0; i < W_N && ok; i++)
            ok = weight_make(types[i], i == W_D ? F : D, rows[i], false, &w[i]);
        CHECK(ok);
        if (!ok) break;
        float *nw = rand_vec((size_t)(2 * D));
        float *nwd = gpu->ops->alloc(gpu, (size_t)(2 * D) * sizeof(float));
        gpu->ops->from_host(gpu, nwd, nw, (size_t)(2 * D) * sizeof(float));
        for (int ni = 0; ni < 7; ni++) {
            const int64_t n = ns[ni];
            float *in[3];
            for (int i = 0; i < 3; i++) in[i] = rand_vec((size_t)(n * D));
            float *p[2][L_N];
            for (int b = 0; b < 2; b++)
                for (int j = 0; j < L_N; j++)
                    p[b][j] =
                        gpu->ops->alloc(gpu, (size_t)tensor_len(j, n, D, F, w) * sizeof(float));
            int bad = 0;
            for (int pass = 0; pass < 3; pass++) {
                for (int b = 0; b < 2; b++) {
                    rl_backend *be = b ? off : gpu;
                    for (int j = 0; j < L_N; j++)
                        be->ops->fill(be, p[b][j], tensor_len(j, n, D, F, w), NAN);
                    for (int i = 0; i < 3; i++)
                        be->ops->from_host(be, p[b][L_X + i], in[i],
                                           (size_t)(n * D) * sizeof(float));
                    layer(be, p[b], w, nwd, n, D, F, LAYER_JOINED | LAYER_OUT);
                    CHECK(be->ops->sync(be) == RL_OK);
                }
                float *res[2][L_N];
                for (int b = 0; b < 2; b++)
                    for (int j = 0; j < L_N; j++)
                        res[b][j] =
                            rl_test_dev_get(b ? off : gpu, p[b][j], (size_t)tensor_len(j, n, D, F, w));
                for (int j = 0; j < L_N; j++) {
                    const size_t len = (size_t)tensor_len(j, n, D, F, w);
                    if (memcmp(res[0][j], res[1][j], len * sizeof(float))) bad++;
                    CHECKF(!memcmp(res[0][j], res[1][j], len * sizeof(float)),
                           "set %d n %lld pass %d: tensor %d differs from the unfused ops", set,
                           (long long)n, pass, j);
                    if (j >= L_Q) /* every output written */
                        for (size_t e = 0; e < len; e++)
                            if (!isfinite(res[0][j][e])) {
                                CHECKF(false, "set %d n %lld: tensor %d [%zu] not finite", set,
                                       (long long)n, j, e);
                                break;
                            }
                }
                if (pass == 2) {
                    /* the products against the CPU on the GPU's own inputs */
                    const int pin[6] = {L_H1, L_H1, L_H1, L_H2, L_H2, L_G};
                    const int pout[6] = {L_Q, L_K, L_V, L_G, L_U, L_Y};
                    const int wi[6] = {W_Q, W_K, W_V, W_G, W_U, W_D};
                    for (int i = 0; i < 6; i++) {
                        if (pout[i] == L_G) continue; /* overwritten by the glu in place */
                        const int64_t r = w[wi[i]].w.ne[1];
                        float *yc = malloc((size_t)(n * r) * sizeof(float));
                        CHECK(cpu->ops->matmul(cpu, &w[wi[i]].w, res[0][pin[i]], n, yc) == RL_OK);
                        const double e = rl_test_nmse(res[0][pout[i]], yc, (size_t)(n * r));
                        CHECKF(e <= 5e-4, "set %d n %lld: product %d nmse vs cpu %.3g", set,
                               (long long)n, i, e);
                        free(yc);
                    }
                }
                for (int b = 0; b < 2; b++)
                    for (int j = 0; j < L_N; j++) free(res[b][j]);
            }
            fprintf(stderr, "  %s/%s, %lld tokens: %s\n", rl_type_name(wt[set][0]),
                    rl_type_name(wt[set][1]), (long long)n, bad ? "DIFFERS" : "same bits");
            for (int b = 0; b < 2; b++)
                for (int j = 0; j < L_N; j++) gpu->ops->free(gpu, p[b][j]);
            for (int i = 0; i < 3; i++) free(in[i]);
        }
        gpu->ops->free(gpu, nwd);
        free(nw);
        for (int i = 0; i < W_N; i++) weight_free(&w[i]);
    }
    rl__backend_free(off);
}

/* One layer part queued on be (rl_test_replay_us's part). */
typedef struct layer_args {
    rl_backend *be;
    float *const *p;
    const tw *w;
    const float *nw;
    int64_t n, D, F;
} layer_args;

static void layer_part(void *arg) {
    const layer_args *a = arg;
    layer(a->be, a->p, a->w, a->nw, a->n, a->D, a->F, 0);
}

/* Microseconds a layer part (20 in one list, the list's graph replayed, median of 7). */
static double time_layers(rl_backend *be, float *const *p, const tw *w, const float *nw, int64_t n,
                          int64_t D, int64_t F) {
    layer_args a = {be, p, w, nw, n, D, F};
    return rl_test_replay_us(be, layer_part, &a);
}

TEST(mmq_xq_timing) {
    if (!gpu) SKIP("%s", g_skip);
    const char *bench = getenv("RUVLLM_MMQ_FUSED_BENCH");
    if (!bench || bench[0] != '1') SKIP("timing: RUVLLM_MMQ_FUSED_BENCH=1");
    rl_backend *off = fork_unfused();
    if (!off) return;
    const int64_t D = 4096, F = 14336;
    tw w[W_N];
    const int64_t rows[W_N] = {D, 1024, 1024, F, F, 16, D}; /* the joined one: unused */
    const rl_type types[W_N] = {RL_TYPE_Q4_K, RL_TYPE_Q4_K, RL_TYPE_Q6_K, RL_TYPE_Q4_K,
                                RL_TYPE_Q4_K, RL_TYPE_Q4_K, RL_TYPE_Q6_K};
    bool ok = true;
    for (int i = 0; i < W_N && ok; i++)
        ok = weight_make(types[i], i == W_D ? F : D, rows[i], true, &w[i]);
    CHECK(ok);
    if (!ok) return;
    float *nw = rand_vec((size_t)(2 * D));
    float *nwd = gpu->ops->alloc(gpu, (size_t)(2 * D) * sizeof(float));
    gpu->ops->from_host(gpu, nwd, nw, (size_t)(2 * D) * sizeof(float));
    static const int64_t ns[2] = {32, 64};
    for (int ni = 0; ni < 2; ni++) {
        const int64_t n = ns[ni];
        float *p[L_N];
        for (int j = 0; j < L_N; j++) {
            const int64_t len = tensor_len(j, n, D, F, w);
            p[j] = gpu->ops->alloc(gpu, (size_t)len * sizeof(float));
            float *h = rand_vec((size_t)len);
            for (int64_t e = 0; e < len; e++) h[e] *= 0.01f; /* the residual stays small */
            gpu->ops->from_host(gpu, p[j], h, (size_t)len * sizeof(float));
            free(h);
        }
        double t[2][2];
        for (int rep = 0; rep < 2; rep++)
            for (int b = 0; b < 2; b++) t[rep][b] = time_layers(b ? off : gpu, p, w, nwd, n, D, F);
        fprintf(stderr,
                "  timing %lld tokens (D %lld, F %lld): layer part us, quantizing in the norm / "
                "glu %.1f, %.1f; in the products %.1f, %.1f\n",
                (long long)n, (long long)D, (long long)F, t[0][0], t[1][0], t[0][1], t[1][1]);
        CHECK(t[0][0] > 0 && t[0][1] > 0);
        for (int j = 0; j < L_N; j++) gpu->ops->free(gpu, p[j]);
    }
    gpu->ops->free(gpu, nwd);
    free(nw);
    for (int i = 0; i < W_N; i++) weight_free(&w[i]);
    rl__backend_free(off);
}

int main(void) {
    rl_test_gpu_pair(&gpu, &cpu, false, g_skip, sizeof g_skip);
    RUN(mmq_xq_layers);
    RUN(mmq_xq_timing);
    if (gpu) rl__backend_free(gpu);
    if (cpu) rl__backend_free(cpu);
    return rl_test_finish();
}
