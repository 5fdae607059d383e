/* Products of one input joined into one launch of mmq.cu's streaming kernel (step.c's fuse
 * pass, RUVLLM_CUDA_MMQ_JOIN): q, k and v after their RMSNorm, gate and up after theirs, at
 * 5 to 64 tokens (every product that mmq.cu would run on the streaming kernel alone; at 64
 * tokens q goes to the tiled kernel and only k and v join).
 *
 * mmq_join_layers: a layer's products (add + RMSNorm -> q, k, v; add + RMSNorm -> gate, up;
 * SwiGLU -> down) with the weight types of Q4_K_M (Q4_K q, k, gate, up; Q6_K v, down), all
 * Q6_K, all Q4_0 and all Q8_0, K = 1024 (no product splits K alone, so joined and separate
 * launches compute the same sums in the same order), k and v of 264 rows (not a multiple of
 * the kernel's 16-row groups: the segment boundary falls inside a group), at 5, 8, 13, 32,
 * 33 and 64 tokens, on the default backend and on a fork with RUVLLM_CUDA_MMQ_JOIN=0: the
 * same bits in every output, three passes each (eager, captured, replayed graphs), outputs
 * poisoned before each; the products within 5e-4 (nmse) of the CPU on the GPU's own inputs.
 *
 * mmq_join_split: the Llama 3 8B attention shapes (K 4096; q 4096 rows Q4_K, k and v 1024
 * rows Q4_K / Q6_K, weights random blocks; gate and up of 1024 rows) at 8 and 32 tokens,
 * where k, v, gate and up alone split K over two blocks and add the partial sums in a
 * second pass: joined (no split) within 1e-10 (nmse) of the separate launches (down, which
 * reads a quantization of their SwiGLU, within 1e-6), q the same bits, all within 5e-4 of
 * the CPU.
 *
 * mmq_fold: the products of many tokens that split K over blocks, whose partial sums the
 * kernel reading the output adds itself (step.c's fuse pass, RUVLLM_CUDA_FOLD): a layer of
 * the Llama 3 8B attention shapes at 64 tokens (q and o 4096 x 4096 Q4_K and down 4096 rows
 * Q6_K, each split at 64 tokens; k and v joined) -- norm -> q, k, v -> RoPE of q and k + cache
 * write (q's sums added there) -> o of the rotated q -> add + norm (o's sums added there) ->
 * gate, up -> SwiGLU -> down -> add + norm -> a product of that norm (down's sums go through
 * their own pass here: the pass's second add starts a new list, backend_cuda.c's cu_add, and
 * at K 1024 its partial sums lie where the norm quantizes for the product after it;
 * dead_stores folds them) -- on the
 * default backend and on a fork with RUVLLM_CUDA_FOLD=0: the same bits in every tensor and
 * in both cache tables, three passes (eager, captured, replayed), outputs poisoned before
 * each; o, down and the last product within 5e-4 (nmse) of the CPU on the GPU's own inputs.
 *
 * dead_stores: mmq_fold's layer, then its scratch tensors released (the backend's discard,
 * as the model releases a layer's) with nothing reading them in between: the RMSNorms'
 * outputs, the o and down outputs (whose sums the norms after them write) and the gated
 * activation are left unwritten (still poison) on the default backend; with
 * RUVLLM_CUDA_DEAD=0 every tensor is written; a third run that reads two of them before the
 * release gets those two written. Every other tensor and both caches the same bits in all
 * three runs, three passes each (eager, captured, replayed); one list a layer (SPLIT=0).
 *
 * mmq_attn_q8: attention of 5 to 64 tokens (each over its own span of the cache, Llama 3 8B
 * heads: 32 of 128 over 8 KV heads) followed by a product of its output on mmq.cu (o, Q4_K:
 * activations rounded per 256; Q8_0: per 32), where the attention writes that product's
 * quantized activations itself (step.c's fuse pass, RUVLLM_CUDA_ATTN_MMQ): the attention
 * output and the product the same bits as on a fork with RUVLLM_CUDA_ATTN_MMQ=0 (the
 * product's own quantization launch), three passes (eager, captured, replayed), outputs
 * poisoned before each; the fuse pass counted the joins on the default backend and none on
 * the fork; the product within 5e-4 (nmse) of the CPU on the GPU's attention output.
 *
 * Timing (RUVLLM_BFUSE_BENCH=1): Llama 3 8B layer products (norm -> q, k, v; norm -> gate,
 * up -> SwiGLU -> down, Q4_K_M's types) at 8, 32 and 64 tokens, a list of 20 such layer
 * parts replayed as a graph, joined and separate back to back, twice (=2: one layer part
 * each way and no timing, for a profiler). Without a CUDA device the program is skipped. */
#include "backend/backend.h"
#include "gpu.h"
#include "rng.h"
#include "test.h"


static rl_backend *cpu, *gpu;
static char g_skip[320];
static uint64_t g_rng = 0x2545f4914f6cdd1dull;

typedef rl_test_hw tw;

static bool weight_make(rl_type t, int64_t K, int64_t rows, bool raw, tw *q) {
    return rl_test_hw_make(gpu, &g_rng, t, K, rows, raw, q);
}

static void weight_free(tw *q) { rl_test_hw_free(gpu, q); }

/* The tensors of one layer part (n tokens, width D, FFN width F) and its weights. */
enum { L_X, L_R1, L_R2, L_H1, L_H2, L_Q, L_K, L_V, L_G, L_U, L_A, L_Y, L_N };
enum { W_Q, W_K, W_V, W_G, W_U, W_D, W_N };

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
    case L_Y:
        return n * w[W_D].w.ne[1];
    default:
        return n * D;
    }
}

/* x += r1; h1 = norm(x) -> q, k, v; x += r2; h2 = norm(x) -> gate, up; a = glu(g, u) -> y.
 * ffn false: the attention part only. Nothing waits between. */
static void layer(rl_backend *be, float *const *p, const tw *w, const float *nw, int64_t n,
                  int64_t D, int64_t F, bool ffn) {
    be->ops->add(be, p[L_X], p[L_R1], n * D);
    be->ops->rmsnorm(be, p[L_X], n, D, 1e-5f, nw, p[L_H1]);
    CHECK(be->ops->matmul(be, &w[W_Q].wd, p[L_H1], n, p[L_Q]) == RL_OK);
    CHECK(be->ops->matmul(be, &w[W_K].wd, p[L_H1], n, p[L_K]) == RL_OK);
    CHECK(be->ops->matmul(be, &w[W_V].wd, p[L_H1], n, p[L_V]) == RL_OK);
    if (!ffn) return;
    be->ops->add(be, p[L_X], p[L_R2], n * D);
    be->ops->rmsnorm(be, p[L_X], n, D, 1e-5f, nw + D, p[L_H2]);
    CHECK(be->ops->matmul(be, &w[W_G].wd, p[L_H2], n, p[L_G]) == RL_OK);
    CHECK(be->ops->matmul(be, &w[W_U].wd, p[L_H2], n, p[L_U]) == RL_OK);
    be->ops->glu(be, RL_GLU_SILU, p[L_G], F, p[L_U], F, n, F, p[L_A]);
    CHECK(be->ops->matmul(be, &w[W_D].wd, p[L_A], n, p[L_Y]) == RL_OK);
}

/* A backend like gpu with the switch name off (name=0: settings are read when a backend is
 * made); NULL, with a failed CHECK, when it cannot be made. */
static rl_backend *fork_off(const char *name) {
    rl_test_env_set(name, "0");
    rl_backend *off = NULL;
    const rl_status st = gpu->ops->fork(gpu, &off);
    rl_test_env_set(name, NULL);
    CHECK(st == RL_OK);
    return st == RL_OK ? off : NULL;
}

typedef struct layer_set {
    int64_t D, F, rows[W_N];
    rl_type types[W_N];
    bool raw;
} layer_set;

static bool set_make(const layer_set *s, tw *w) {
    for (int i = 0; i < W_N; i++)
        if (!weight_make(s->types[i], i == W_D ? s->F : s->D, s->rows[i], s->raw, &w[i])) {
            for (int j = 0; j < i; j++) weight_free(&w[j]);
            return false;
        }
    return true;
}

/* The layer on gpu and on off (separate launches) at n tokens, three passes. exact: every
 * output the same bits; else the inputs and q the same bits, the rest within 1e-10 (down
 * 1e-6). The
 * products of the last pass against the CPU. Returns whether all outputs matched bit for
 * bit. */
static bool compare_layer(rl_backend *off, const layer_set *s, const tw *w, const float *nwd,
                          int64_t n, bool exact) {
    const int64_t D = s->D, F = s->F;
    float *in[3];
    for (int i = 0; i < 3; i++) in[i] = rl_test_unif_vec(&g_rng, (size_t)(n * D));
    float *p[2][L_N];
    for (int b = 0; b < 2; b++)
        for (int j = 0; j < L_N; j++)
            p[b][j] = gpu->ops->alloc(gpu, (size_t)tensor_len(j, n, D, F, w) * sizeof(float));
    bool same = true;
    for (int pass = 0; pass < 3; pass++) {
        for (int b = 0; b < 2; b++) {
            rl_backend *be = b ? off : gpu;
            for (int j = 0; j < L_N; j++) be->ops->fill(be, p[b][j], tensor_len(j, n, D, F, w), NAN);
            for (int i = 0; i < 3; i++)
                be->ops->from_host(be, p[b][L_X + i], in[i], (size_t)(n * D) * sizeof(float));
            layer(be, p[b], w, nwd, n, D, F, true);
            CHECK(be->ops->sync(be) == RL_OK);
        }
        float *res[2][L_N];
        for (int b = 0; b < 2; b++)
            for (int j = 0; j < L_N; j++)
                res[b][j] = rl_test_dev_get(b ? off : gpu, p[b][j], (size_t)tensor_len(j, n, D, F, w));
        for (int j = 0; j < L_N; j++) {
            const size_t len = (size_t)tensor_len(j, n, D, F, w);
            const bool eq = !memcmp(res[0][j], res[1][j], len * sizeof(float));
            same = same && eq;
            if (exact || j <= L_Q) {
                CHECKF(eq, "%s/%s n %lld pass %d: tensor %d differs from the separate launches",
                       rl_type_name(s->types[W_Q]), rl_type_name(s->types[W_V]), (long long)n,
                       pass, j);
            } else {
                /* down reads a quantization of a, where a last-bit difference may move a
                 * code by one */
                const double e = rl_test_nmse(res[0][j], res[1][j], len);
                CHECKF(e <= (j == L_Y ? 1e-6 : 1e-10), "%s/%s n %lld pass %d: tensor %d nmse %.3g vs separate",
                       rl_type_name(s->types[W_Q]), rl_type_name(s->types[W_V]), (long long)n,
                       pass, j, e);
            }
            if (j >= L_Q) { /* every output written */
                size_t e = 0;
                while (e < len && isfinite(res[0][j][e])) e++;
                CHECKF(e == len, "n %lld: tensor %d [%zu] not finite", (long long)n, j, e);
            }
        }
        if (pass == 2) {
            /* the products against the CPU on the GPU's own inputs */
            const int pin[6] = {L_H1, L_H1, L_H1, L_H2, L_H2, L_A};
            const int pout[6] = {L_Q, L_K, L_V, L_G, L_U, L_Y};
            for (int i = 0; i < 6; i++) {
                const int64_t r = w[i].w.ne[1];
                float *yc = malloc((size_t)(n * r) * sizeof(float));
                CHECK(cpu->ops->matmul(cpu, &w[i].w, res[0][pin[i]], n, yc) == RL_OK);
                const double e = rl_test_nmse(res[0][pout[i]], yc, (size_t)(n * r));
                CHECKF(e <= 5e-4, "%s/%s n %lld: product %d nmse vs cpu %.3g",
                       rl_type_name(s->types[W_Q]), rl_type_name(s->types[W_V]), (long long)n, i, e);
                free(yc);
            }
        }
        for (int b = 0; b < 2; b++)
            for (int j = 0; j < L_N; j++) free(res[b][j]);
    }
    for (int b = 0; b < 2; b++)
        for (int j = 0; j < L_N; j++) gpu->ops->free(gpu, p[b][j]);
    for (int i = 0; i < 3; i++) free(in[i]);
    return same;
}

static float *norm_weights(int64_t D) {
    float *nw = rl_test_unif_vec(&g_rng, (size_t)(2 * D));
    float *nwd = gpu->ops->alloc(gpu, (size_t)(2 * D) * sizeof(float));
    gpu->ops->from_host(gpu, nwd, nw, (size_t)(2 * D) * sizeof(float));
    free(nw);
    return nwd;
}

TEST(mmq_join_layers) {
    if (!gpu) SKIP("%s", g_skip);
    rl_backend *off = fork_off("RUVLLM_CUDA_MMQ_JOIN"); /* products one by one */
    if (!off) return;
    /* q, k, v, gate, up, down */
    static const rl_type sets[4][W_N] = {
        {RL_TYPE_Q4_K, RL_TYPE_Q4_K, RL_TYPE_Q6_K, RL_TYPE_Q4_K, RL_TYPE_Q4_K, RL_TYPE_Q6_K},
        {RL_TYPE_Q6_K, RL_TYPE_Q6_K, RL_TYPE_Q6_K, RL_TYPE_Q6_K, RL_TYPE_Q6_K, RL_TYPE_Q6_K},
        {RL_TYPE_Q4_0, RL_TYPE_Q4_0, RL_TYPE_Q4_0, RL_TYPE_Q4_0, RL_TYPE_Q4_0, RL_TYPE_Q4_0},
        {RL_TYPE_Q8_0, RL_TYPE_Q8_0, RL_TYPE_Q8_0, RL_TYPE_Q8_0, RL_TYPE_Q8_0, RL_TYPE_Q8_0},
    };
    static const int64_t ns[6] = {5, 8, 13, 32, 33, 64};
    /* RUVLLM_BFUSE_SET=i: set i alone (a sanitizer's run, one process a set) */
    const char *only = getenv("RUVLLM_BFUSE_SET");
    for (int si = 0; si < 4; si++) {
        if (only && only[0] && atoi(only) != si) continue;
        layer_set s = {.D = 1024, .F = 1536, .rows = {2048, 264, 264, 1536, 1536, 1024}};
        memcpy(s.types, sets[si], sizeof s.types);
        tw w[W_N];
        const bool ok = set_make(&s, w);
        CHECK(ok);
        if (!ok) break;
        float *nwd = norm_weights(s.D);
        for (int ni = 0; ni < 6; ni++) {
            const bool same = compare_layer(off, &s, w, nwd, ns[ni], true);
            fprintf(stderr, "  %s/%s, %lld tokens: %s\n", rl_type_name(s.types[W_Q]),
                    rl_type_name(s.types[W_V]), (long long)ns[ni], same ? "same bits" : "DIFFERS");
        }
        gpu->ops->free(gpu, nwd);
        for (int i = 0; i < W_N; i++) weight_free(&w[i]);
    }
    rl__backend_free(off);
}

TEST(mmq_join_split) {
    if (!gpu) SKIP("%s", g_skip);
    rl_backend *off = fork_off("RUVLLM_CUDA_MMQ_JOIN"); /* products one by one */
    if (!off) return;
    const layer_set s = {.D = 4096,
                         .F = 1024,
                         .rows = {4096, 1024, 1024, 1024, 1024, 256},
                         .types = {RL_TYPE_Q4_K, RL_TYPE_Q4_K, RL_TYPE_Q6_K, RL_TYPE_Q4_K,
                                   RL_TYPE_Q4_K, RL_TYPE_Q6_K},
                         .raw = true};
    tw w[W_N];
    const bool ok = set_make(&s, w);
    CHECK(ok);
    if (ok) {
        float *nwd = norm_weights(s.D);
        static const int64_t ns[2] = {8, 32};
        for (int ni = 0; ni < 2; ni++) {
            const bool same = compare_layer(off, &s, w, nwd, ns[ni], false);
            fprintf(stderr, "  8B attention shapes, %lld tokens: %s\n", (long long)ns[ni],
                    same ? "same bits" : "k/v within rounding");
        }
        gpu->ops->free(gpu, nwd);
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
    layer(a->be, a->p, a->w, a->nw, a->n, a->D, a->F, true);
}

/* Microseconds a layer part (20 in one list, the list's graph replayed, median of 7). */
static double time_layers(rl_backend *be, float *const *p, const tw *w, const float *nw, int64_t n,
                          int64_t D, int64_t F) {
    layer_args a = {be, p, w, nw, n, D, F};
    return rl_test_replay_us(be, layer_part, &a);
}

TEST(mmq_join_timing) {
    if (!gpu) SKIP("%s", g_skip);
    const char *bench = getenv("RUVLLM_BFUSE_BENCH");
    if (!bench || (bench[0] != '1' && bench[0] != '2')) SKIP("timing: RUVLLM_BFUSE_BENCH=1");
    rl_backend *off = fork_off("RUVLLM_CUDA_MMQ_JOIN"); /* products one by one */
    if (!off) return;
    const layer_set s = {.D = 4096,
                         .F = 14336,
                         .rows = {4096, 1024, 1024, 14336, 14336, 4096},
                         .types = {RL_TYPE_Q4_K, RL_TYPE_Q4_K, RL_TYPE_Q6_K, RL_TYPE_Q4_K,
                                   RL_TYPE_Q4_K, RL_TYPE_Q6_K},
                         .raw = true};
    tw w[W_N];
    const bool ok = set_make(&s, w);
    CHECK(ok);
    if (!ok) {
        rl__backend_free(off);
        return;
    }
    float *nwd = norm_weights(s.D);
    static const int64_t ns[3] = {8, 32, 64};
    for (int ni = 0; ni < 3; ni++) {
        const int64_t n = ns[ni];
        float *p[L_N];
        for (int j = 0; j < L_N; j++) {
            const int64_t len = tensor_len(j, n, s.D, s.F, w);
            p[j] = gpu->ops->alloc(gpu, (size_t)len * sizeof(float));
            float *h = rl_test_unif_vec(&g_rng, (size_t)len);
            for (int64_t e = 0; e < len; e++) h[e] *= 0.01f; /* the residual stays small */
            gpu->ops->from_host(gpu, p[j], h, (size_t)len * sizeof(float));
            free(h);
        }
        if (bench[0] == '2') { /* one layer part each way (a profiler's run) */
            for (int b = 0; b < 2; b++) {
                rl_backend *be = b ? off : gpu;
                layer(be, p, w, nwd, n, s.D, s.F, true);
                CHECK(be->ops->sync(be) == RL_OK);
            }
            for (int j = 0; j < L_N; j++) gpu->ops->free(gpu, p[j]);
            continue;
        }
        double t[2][2];
        for (int rep = 0; rep < 2; rep++)
            for (int b = 0; b < 2; b++)
                t[rep][b] = time_layers(b ? off : gpu, p, w, nwd, n, s.D, s.F);
        fprintf(stderr,
                "  timing %lld tokens (8B layer products): us a layer part, joined %.1f, %.1f; "
                "separate %.1f, %.1f\n",
                (long long)n, t[0][0], t[1][0], t[0][1], t[1][1]);
        CHECK(t[0][0] > 0 && t[0][1] > 0);
        for (int j = 0; j < L_N; j++) gpu->ops->free(gpu, p[j]);
    }
    gpu->ops->free(gpu, nwd);
    for (int i = 0; i < W_N; i++) weight_free(&w[i]);
    rl__backend_free(off);
}

/* mmq_fold's layer: its tensors ([n][width]) and weights */
enum { FD_X, FD_H, FD_Q, FD_K, FD_V, FD_O, FD_H2, FD_G, FD_U, FD_A, FD_Z, FD_H3, FD_Y, FD_N };
enum { FW_Q, FW_K, FW_V, FW_O, FW_G, FW_U, FW_D, FW_N };

static void fold_layer(rl_backend *be, float *const *p, const tw *w, const float *nw,
                       const rl_kv_layer *kv, const int32_t *pos, const int32_t *cells,
                       const rl_rope_params *rp, int64_t n, int64_t D, int64_t F) {
    const rl_backend_ops *o = be->ops;
    o->rmsnorm(be, p[FD_X], n, D, 1e-5f, nw, p[FD_H]);
    CHECK(o->matmul(be, &w[FW_Q].wd, p[FD_H], n, p[FD_Q]) == RL_OK);
    CHECK(o->matmul(be, &w[FW_K].wd, p[FD_H], n, p[FD_K]) == RL_OK);
    CHECK(o->matmul(be, &w[FW_V].wd, p[FD_H], n, p[FD_V]) == RL_OK);
    o->rope(be, p[FD_Q], n, D, 32, 128, pos, rp);
    o->rope(be, p[FD_K], n, 1024, 8, 128, pos, rp);
    o->kv_write(be, kv, p[FD_K], 1024, p[FD_V], 1024, n, cells);
    CHECK(o->matmul(be, &w[FW_O].wd, p[FD_Q], n, p[FD_O]) == RL_OK);
    o->add(be, p[FD_X], p[FD_O], n * D);
    o->rmsnorm(be, p[FD_X], n, D, 1e-5f, nw + D, p[FD_H2]);
    CHECK(o->matmul(be, &w[FW_G].wd, p[FD_H2], n, p[FD_G]) == RL_OK);
    CHECK(o->matmul(be, &w[FW_U].wd, p[FD_H2], n, p[FD_U]) == RL_OK);
    o->glu(be, RL_GLU_SILU, p[FD_G], F, p[FD_U], F, n, F, p[FD_A]);
    CHECK(o->matmul(be, &w[FW_D].wd, p[FD_A], n, p[FD_Z]) == RL_OK);
    o->add(be, p[FD_X], p[FD_Z], n * D);
    o->rmsnorm(be, p[FD_X], n, D, 1e-5f, nw, p[FD_H3]);
    CHECK(o->matmul(be, &w[FW_Q].wd, p[FD_H3], n, p[FD_Y]) == RL_OK);
}

/* mmq_fold's bed: the weights, inputs, caches and tensors of nb runs of fold_layer at 64
 * tokens of the Llama 3 8B attention shapes, FFN width F. */
typedef struct fold_bed {
    int64_t n, D, F, width[FD_N];
    tw w[FW_N];
    int made;
    rl_rope_params rp;
    int32_t pos[64], cells[64];
    rl_kv_layer kv[3];
    float *p[3][FD_N];
    float *xin, *nwd;
    int nb;
} fold_bed;

static bool fold_bed_make(fold_bed *t, int nb, int64_t F) {
    memset(t, 0, sizeof *t);
    t->n = 64, t->D = 4096, t->F = F, t->nb = nb;
    const int64_t D = t->D, n = t->n;
    /* q, k, v, o, gate, up (K = D), down (K = F) */
    const int64_t rows[FW_N] = {4096, 1024, 1024, 4096, F, F, 4096};
    static const rl_type types[FW_N] = {RL_TYPE_Q4_K, RL_TYPE_Q4_K, RL_TYPE_Q6_K, RL_TYPE_Q4_K,
                                        RL_TYPE_Q4_K, RL_TYPE_Q4_K, RL_TYPE_Q6_K};
    while (t->made < FW_N && weight_make(types[t->made], t->made == FW_D ? F : D,
                                         rows[t->made], true, &t->w[t->made]))
        t->made++;
    CHECK(t->made == FW_N);
    const int64_t width[FD_N] = {D, D, D, 1024, 1024, D, D, F, F, F, D, D, D};
    memcpy(t->width, width, sizeof width);
    t->rp = (rl_rope_params){.n_rot = 128, .mode = RL_ROPE_NORMAL, .n_ctx_orig = 8192,
                             .freq_base = 500000.0f, .freq_scale = 1.0f, .attn_factor = 1.0f,
                             .beta_fast = 32.0f, .beta_slow = 1.0f};
    for (int i = 0; i < 64; i++) t->pos[i] = 300 + 7 * i, t->cells[i] = (i * 37) % 64;
    if (t->made != FW_N) return false;
    t->xin = rl_test_unif_vec(&g_rng, (size_t)(n * D));
    t->nwd = norm_weights(D);
    for (int b = 0; b < nb; b++) {
        t->kv[b] = (rl_kv_layer){.type = RL_TYPE_F16, .n_embd_k = 1024, .n_embd_v = 1024,
                                 .k_row_bytes = 2048, .v_row_bytes = 2048};
        t->kv[b].k = gpu->ops->alloc(gpu, 64 * 2048);
        t->kv[b].v = gpu->ops->alloc(gpu, 64 * 2048);
        for (int j = 0; j < FD_N; j++)
            t->p[b][j] = gpu->ops->alloc(gpu, (size_t)(n * t->width[j]) * sizeof(float));
    }
    return true;
}

static void fold_bed_free(fold_bed *t) {
    for (int b = 0; b < t->nb && t->made == FW_N; b++) {
        for (int j = 0; j < FD_N; j++) gpu->ops->free(gpu, t->p[b][j]);
        gpu->ops->free(gpu, t->kv[b].k);
        gpu->ops->free(gpu, t->kv[b].v);
    }
    if (t->nwd) gpu->ops->free(gpu, t->nwd);
    free(t->xin);
    for (int i = 0; i < t->made; i++) weight_free(&t->w[i]);
}

/* Run b of the bed on be: every tensor and both caches poisoned (NaN), x uploaded, the
 * layer queued; the caller adds ops and syncs. */
static void fold_bed_queue(fold_bed *t, int b, rl_backend *be) {
    const int64_t n = t->n;
    for (int j = 0; j < FD_N; j++) be->ops->fill(be, t->p[b][j], n * t->width[j], NAN);
    be->ops->fill(be, t->kv[b].k, 64 * 2048 / 4, NAN);
    be->ops->fill(be, t->kv[b].v, 64 * 2048 / 4, NAN);
    be->ops->from_host(be, t->p[b][FD_X], t->xin, (size_t)(n * t->D) * sizeof(float));
    fold_layer(be, t->p[b], t->w, t->nwd, &t->kv[b], t->pos, t->cells, &t->rp, n, t->D, t->F);
}

/* Tensor j of run b, or cache side (FD_N: K, FD_N + 1: V), to the host (count in *len). */
static float *fold_bed_get(const fold_bed *t, int b, rl_backend *be, int j, size_t *len) {
    if (j >= FD_N) {
        *len = 64 * 2048 / 4;
        return rl_test_dev_get(be, j == FD_N ? t->kv[b].k : t->kv[b].v, *len);
    }
    *len = (size_t)(t->n * t->width[j]);
    return rl_test_dev_get(be, t->p[b][j], *len);
}

TEST(mmq_fold) {
    if (!gpu) SKIP("%s", g_skip);
    rl_backend *off = fork_off("RUVLLM_CUDA_FOLD");
    if (!off) return;
    fold_bed t;
    const bool ok = fold_bed_make(&t, 2, 1024);
    const int64_t n = t.n;
    for (int pass = 0; pass < 3 && ok; pass++) {
        for (int b = 0; b < 2; b++) {
            rl_backend *be = b ? off : gpu;
            fold_bed_queue(&t, b, be);
            CHECK(be->ops->sync(be) == RL_OK);
        }
        float *res[2][FD_N + 2];
        size_t len[FD_N + 2];
        for (int b = 0; b < 2; b++)
            for (int j = 0; j < FD_N + 2; j++) res[b][j] = fold_bed_get(&t, b, b ? off : gpu, j, &len[j]);
        for (int j = 0; j < FD_N + 2; j++) {
            CHECKF(!memcmp(res[0][j], res[1][j], len[j] * sizeof(float)),
                   "fold pass %d: tensor %d (caches %d, %d) differs from the partial-sum pass",
                   pass, j, FD_N, FD_N + 1);
            if (j >= FD_N) continue;
            size_t e = 0;
            while (e < len[j] && isfinite(res[0][j][e])) e++;
            CHECKF(e == len[j], "fold pass %d: tensor %d [%zu] not finite", pass, j, e);
        }
        if (pass == 2) { /* o, down and the last product against the CPU */
            const int pin[3] = {FD_Q, FD_A, FD_H3}, pout[3] = {FD_O, FD_Z, FD_Y};
            const int wi[3] = {FW_O, FW_D, FW_Q};
            for (int i = 0; i < 3; i++) {
                const int64_t r = t.w[wi[i]].w.ne[1];
                float *yc = malloc((size_t)(n * r) * sizeof(float));
                CHECK(cpu->ops->matmul(cpu, &t.w[wi[i]].w, res[0][pin[i]], n, yc) == RL_OK);
                const double e = rl_test_nmse(res[0][pout[i]], yc, (size_t)(n * r));
                CHECKF(e <= 5e-4, "fold: product %d nmse vs cpu %.3g", i, e);
                fprintf(stderr, "  fold, 64 tokens: product %d nmse vs cpu %.3g\n", i, e);
                free(yc);
            }
        }
        for (int b = 0; b < 2; b++)
            for (int j = 0; j < FD_N + 2; j++) free(res[b][j]);
    }
    fold_bed_free(&t);
    rl__backend_free(off);
}

/* dead_stores' releases: the layer's scratch, as the model releases it after a layer */
static void fold_discard(rl_backend *be, float *const *p, const int64_t *width, int64_t n) {
    static const int scratch[] = {FD_H, FD_Q, FD_K, FD_V, FD_O, FD_H2, FD_G, FD_U, FD_A, FD_Z, FD_H3};
    for (size_t i = 0; i < sizeof scratch / sizeof scratch[0]; i++)
        be->ops->discard(be, p[scratch[i]], (size_t)(n * width[scratch[i]]) * sizeof(float));
}

TEST(dead_stores) {
    if (!gpu) SKIP("%s", g_skip);
    if (!gpu->ops->discard) {
        CHECK(gpu->ops->discard != NULL);
        return;
    }
    /* one list for the whole layer on both (the second add of a pass otherwise cuts it,
       and a cut ends every watch: step.c) */
    rl_test_env_set("RUVLLM_CUDA_SPLIT", "0");
    rl_backend *on = NULL;
    CHECK(gpu->ops->fork(gpu, &on) == RL_OK);
    rl_backend *off = fork_off("RUVLLM_CUDA_DEAD");
    rl_test_env_set("RUVLLM_CUDA_SPLIT", NULL);
    if (!on || !off) {
        if (on) rl__backend_free(on);
        if (off) rl__backend_free(off);
        return;
    }
    /* F = 4096: down's partial sums lie past the quantization the norm after it writes
       for the last product (K 4096), so the norm adds them (step.c's fold_norm_ok) */
    fold_bed t;
    const bool ok = fold_bed_make(&t, 3, 4096);
    const int64_t n = t.n;
    /* left out on the default backend: the norms' outputs (read by their products as the
       quantization), the o and down outputs (their sums written by the norms after them:
       both split K at 64 tokens), the gated activation (read by down as the quantization) */
    bool dead[FD_N] = {false};
    dead[FD_H] = dead[FD_O] = dead[FD_H2] = dead[FD_A] = dead[FD_Z] = dead[FD_H3] = true;
    for (int pass = 0; pass < 3 && ok; pass++) {
        for (int b = 0; b < 3; b++) {
            rl_backend *be = b == 1 ? off : on;
            fold_bed_queue(&t, b, be);
            if (b == 2) { /* run 2 reads two of them before the release: they are stored */
                be->ops->scale(be, t.p[b][FD_H2], n * t.D, 1.0f);
                be->ops->scale(be, t.p[b][FD_Z], n * t.D, 1.0f);
            }
            fold_discard(be, t.p[b], t.width, n);
            CHECK(be->ops->sync(be) == RL_OK);
        }
        float *res[3][FD_N + 2];
        size_t len[FD_N + 2];
        for (int b = 0; b < 3; b++)
            for (int j = 0; j < FD_N + 2; j++)
                res[b][j] = fold_bed_get(&t, b, b == 1 ? off : on, j, &len[j]);
        for (int j = 0; j < FD_N + 2; j++) {
            for (int b = 0; b < 3; b += 2) {
                const bool left = j < FD_N && dead[j] && !(b == 2 && (j == FD_H2 || j == FD_Z));
                size_t fin = 0;
                for (size_t e = 0; e < len[j]; e++) fin += isfinite(res[b][j][e]) != 0;
                if (left) {
                    CHECKF(fin == 0, "dead pass %d run %d: tensor %d stored (%zu finite)", pass,
                           b, j, fin);
                } else {
                    CHECKF(!memcmp(res[b][j], res[1][j], len[j] * sizeof(float)),
                           "dead pass %d run %d: tensor %d differs from every store made", pass,
                           b, j);
                }
            }
            size_t e = 0;
            while (j < FD_N && e < len[j] && isfinite(res[1][j][e])) e++;
            CHECKF(j >= FD_N || e == len[j], "dead pass %d: tensor %d [%zu] not stored with the "
                   "switch off", pass, j, e);
        }
        for (int b = 0; b < 3; b++)
            for (int j = 0; j < FD_N + 2; j++) free(res[b][j]);
    }
    fold_bed_free(&t);
    rl__backend_free(on);
    rl__backend_free(off);
}

/* mmq_attn_q8's part: attention of n tokens, then the product w of its output into y. */
static void attn_o(rl_backend *be, const rl_kv_layer *kv, const rl_attn_args *a, const tw *w,
                   float *y) {
    be->ops->attention(be, kv, a);
    CHECK(be->ops->matmul(be, &w->wd, a->out, a->n_tok, y) == RL_OK);
}

TEST(mmq_attn_q8) {
    if (!gpu) SKIP("%s", g_skip);
    rl_backend *off = fork_off("RUVLLM_CUDA_ATTN_MMQ");
    if (!off) return;
    enum { NH = 32, NKV = 8, HD = 128, D = NH * HD, E = NKV * HD, CELLS = 4096 };
    /* the cache: every cell's K and V rows from random values, on both backends */
    rl_kv_layer kv[2];
    float *kvf = rl_test_gauss_vec(&g_rng, (size_t)CELLS * E);
    int32_t *all = malloc(CELLS * sizeof(int32_t));
    for (int i = 0; i < CELLS; i++) all[i] = i;
    for (int b = 0; b < 2; b++) {
        rl_backend *be = b ? off : gpu;
        kv[b] = (rl_kv_layer){.type = RL_TYPE_F16, .n_embd_k = E, .n_embd_v = E,
                              .k_row_bytes = 2 * E, .v_row_bytes = 2 * E};
        kv[b].k = be->ops->alloc(be, (size_t)CELLS * 2 * E);
        kv[b].v = be->ops->alloc(be, (size_t)CELLS * 2 * E);
        float *kd = be->ops->alloc(be, (size_t)CELLS * E * sizeof(float));
        be->ops->from_host(be, kd, kvf, (size_t)CELLS * E * sizeof(float));
        be->ops->kv_write(be, &kv[b], kd, E, kd, E, CELLS, all);
        CHECK(be->ops->sync(be) == RL_OK);
        be->ops->free(be, kd);
    }
    static const int ns[] = {5, 13, 40, 64};
    static const rl_type ot[] = {RL_TYPE_Q4_K, RL_TYPE_Q8_0};
    for (size_t ti = 0; ti < sizeof ot / sizeof ot[0]; ti++) {
        tw w;
        if (!weight_make(ot[ti], D, D, ot[ti] == RL_TYPE_Q4_K, &w)) continue;
        for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++) {
            const int n = ns[ni];
            /* token t: its own sequence, cells [b_t, b_t + len_t) of a list of all spans */
            int32_t *cells = malloc(CELLS * sizeof(int32_t)), span[128];
            int nc = 0;
            for (int t = 0; t < n; t++) {
                const int len = 24 + (t * 97) % 380;
                span[2 * t] = nc;
                for (int i = 0; i < len && nc < CELLS; i++) cells[nc++] = (t * 613 + 5 * i) % CELLS;
                span[2 * t + 1] = nc;
            }
            float *q = rl_test_gauss_vec(&g_rng, (size_t)n * D);
            float *pd[2][3]; /* q, out, y */
            const int64_t ni0 = rl__cuda_attn_mmq_count(gpu);
            float *res[3][2][2];
            for (int pass = 0; pass < 3; pass++) {
                for (int b = 0; b < 2; b++) {
                    rl_backend *be = b ? off : gpu;
                    if (pass == 0) {
                        for (int j = 0; j < 3; j++)
                            pd[b][j] = be->ops->alloc(be, (size_t)n * D * sizeof(float));
                        be->ops->from_host(be, pd[b][0], q, (size_t)n * D * sizeof(float));
                    }
                    be->ops->fill(be, pd[b][1], (int64_t)n * D, NAN);
                    be->ops->fill(be, pd[b][2], (int64_t)n * D, NAN);
                    const rl_attn_args a = {.n_tok = n, .n_head = NH, .n_head_kv = NKV,
                                            .head_dim_k = HD, .head_dim_v = HD, .q = pd[b][0],
                                            .q_ld = D, .out = pd[b][1], .out_ld = D,
                                            .cells = cells, .span = span,
                                            .scale = 0.08838834764831845f};
                    attn_o(be, &kv[b], &a, &w, pd[b][2]);
                    CHECK(be->ops->sync(be) == RL_OK);
                    for (int j = 0; j < 2; j++)
                        res[pass][b][j] = rl_test_dev_get(be, pd[b][1 + j], (size_t)n * D);
                }
                for (int j = 0; j < 2; j++) {
                    CHECKF(!memcmp(res[pass][0][j], res[pass][1][j], (size_t)n * D * sizeof(float)),
                           "%s o, %d tokens, pass %d: %s differs from the product's own "
                           "quantization", rl_type_name(ot[ti]), n, pass, j ? "o" : "attention");
                    size_t e = 0;
                    while (e < (size_t)n * D && isfinite(res[pass][0][j][e])) e++;
                    CHECKF(e == (size_t)n * D, "%d tokens: [%zu] not finite", n, e);
                }
            }
            const int64_t joined = rl__cuda_attn_mmq_count(gpu) - ni0;
            CHECKF(joined >= 2, "%s o, %d tokens: %lld attention calls wrote mmq's q8",
                   rl_type_name(ot[ti]), n, (long long)joined);
            CHECK(rl__cuda_attn_mmq_count(off) == 0);
            float *yc = malloc((size_t)n * D * sizeof(float));
            CHECK(cpu->ops->matmul(cpu, &w.w, res[2][0][0], n, yc) == RL_OK);
            const double e = rl_test_nmse(res[2][0][1], yc, (size_t)n * D);
            fprintf(stderr, "  attention -> %s o, %d tokens: nmse vs cpu %.3g (%lld joined)\n",
                    rl_type_name(ot[ti]), n, e, (long long)joined);
            CHECKF(e <= 5e-4, "%s o, %d tokens: nmse vs cpu %.3g", rl_type_name(ot[ti]), n, e);
            free(yc);
            for (int pass = 0; pass < 3; pass++)
                for (int b = 0; b < 2; b++)
                    for (int j = 0; j < 2; j++) free(res[pass][b][j]);
            for (int b = 0; b < 2; b++)
                for (int j = 0; j < 3; j++) (b ? off : gpu)->ops->free(b ? off : gpu, pd[b][j]);
            free(q);
            free(cells);
        }
        weight_free(&w);
    }
    for (int b = 0; b < 2; b++) {
        rl_backend *be = b ? off : gpu;
        be->ops->free(be, kv[b].k);
        be->ops->free(be, kv[b].v);
    }
    free(kvf);
    free(all);
    rl__backend_free(off);
}

int main(void) {
    rl_test_gpu_pair(&gpu, &cpu, false, g_skip, sizeof g_skip);
    RUN(mmq_join_layers);
    RUN(mmq_join_split);
    RUN(mmq_fold);
    RUN(dead_stores);
    RUN(mmq_attn_q8);
    RUN(mmq_join_timing);
    if (gpu) rl__backend_free(gpu);
    if (cpu) rl__backend_free(cpu);
    return rl_test_finish();
}
