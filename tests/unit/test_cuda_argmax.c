/* The CUDA backend's device pick (argmax_to_host) and argmax-only decoding on the GPU.
 *
 * Operator: rows of random values (dims 1, 31, 1025, 128256; 5 rows each) against a
 * left-to-right host scan, with a planted maximum, a tie of the maximum at two indices
 * (the lower must win), NaNs (never win) and a row of -inf only (0). The pick must be
 * exact: the same floats, one comparison rule.
 *
 * Model: llama3-Q4_K_M on the GPU, a context in argmax-only mode against one in the
 * default mode, a prompt with every token flagged and 16 greedy steps (the later steps
 * replay the step's CUDA graph, which then holds the pick): the ids must equal the host
 * argmax of the other context's logits, which are the same device floats copied back.
 * Without a CUDA device the program is skipped. */
#include "backend/backend.h"
#include "gpu.h"
#include "model_logits.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>

static int32_t ref_argmax(const float *x, int64_t n) {
    int32_t b = 0;
    float best = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (x[i] > best) {
            best = x[i];
            b = (int32_t)i;
        }
    return b;
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static float frand(void) {
    g_rng = g_rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((g_rng >> 40) * (1.0 / 16777216.0)) * 20.0f - 10.0f;
}

TEST(argmax_op) {
    char why[300];
    if (!rl_test_have_gpu(why, sizeof why)) SKIP("%s", why);
    char err[256];
    rl_backend *be = NULL;
    if (rl__backend_cuda_create(0, &be, err, sizeof err) != RL_OK) {
        CHECKF(0, "backend: %s", err);
        return;
    }
    CHECK(be->ops->argmax_to_host != NULL);
    static const int64_t dims[] = {1, 31, 1025, 128256};
    const int64_t rows = 5;
    for (size_t d = 0; d < sizeof dims / sizeof dims[0] && be->ops->argmax_to_host; d++) {
        const int64_t dim = dims[d];
        float *x = malloc((size_t)(rows * dim) * sizeof(float));
        for (int64_t i = 0; i < rows * dim; i++) x[i] = frand();
        if (dim > 2) {
            x[0 * dim + dim / 3] = 50.0f;       /* row 0: a planted maximum */
            x[1 * dim + dim - 1] = 60.0f;       /* row 1: a tie, the lower index wins */
            x[1 * dim + dim / 2] = 60.0f;
            x[2 * dim + 0] = NAN;               /* row 2: NaNs never win */
            x[2 * dim + dim / 4] = NAN;
            x[2 * dim + dim - 2] = 70.0f;
            for (int64_t i = 0; i < dim; i++) x[3 * dim + i] = -INFINITY; /* row 3: 0 */
        }
        float *dx = be->ops->alloc(be, (size_t)(rows * dim) * sizeof(float));
        CHECK(dx != NULL);
        if (dx) {
            be->ops->from_host(be, dx, x, (size_t)(rows * dim) * sizeof(float));
            int32_t ids[5] = {-7, -7, -7, -7, -7};
            be->ops->argmax_to_host(be, dx, rows, dim, ids);
            CHECK(be->ops->sync(be) == RL_OK);
            for (int64_t r = 0; r < rows; r++)
                CHECKF(ids[r] == ref_argmax(x + r * dim, dim), "dim %lld row %lld: %d, want %d",
                       (long long)dim, (long long)r, ids[r], ref_argmax(x + r * dim, dim));
            if (dim > 2) {
                CHECK_EQ_INT(ids[1], (int32_t)(dim / 2));
                CHECK_EQ_INT(ids[2], (int32_t)(dim - 2));
                CHECK_EQ_INT(ids[3], 0);
            }
            be->ops->free(be, dx);
        }
        free(x);
    }
    rl__backend_free(be);
}

static rl_context *context(rl_model *m) {
    char err[256];
    rl_context_params cp = rl_context_default_params();
    cp.n_ctx = 64;
    cp.n_outputs_max = 8;
    rl_context *ctx = NULL;
    rl_status st = rl_context_create(m, &cp, &ctx, err, sizeof err);
    CHECKF(st == RL_OK, "context: %s", err);
    return ctx;
}

TEST(argmax_only_decode) {
    char why[300];
    if (!rl_test_have_gpu(why, sizeof why)) SKIP("%s", why);
    const char *path = rl_test_zoo_model("llama3-Q4_K_M.gguf");
    if (!path) SKIP("no usable models/zoo/llama3-Q4_K_M.gguf");
    rl_model *m = rl_test_load_model(path, "cuda");
    if (!m) return;
    const int32_t nv = rl_model_n_vocab(m);
    rl_context *a = context(m), *g = context(m);
    if (!a || !g) goto done;
    rl_context_set_argmax_only(g, true);
    rl_token prompt[8];
    for (int i = 0; i < 8; i++) prompt[i] = (rl_token)((17 + 97 * i) % nv);
    const int8_t all[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    rl_batch b = {.n_tokens = 8, .token = prompt, .logits = all};
    CHECK(rl_decode(a, &b) == RL_OK);
    CHECK(rl_decode(g, &b) == RL_OK);
    for (int32_t i = 0; i < 8; i++) {
        const float *l = rl_get_logits(a, i);
        CHECK(l != NULL);
        if (l) CHECK_EQ_INT(rl_get_argmax(g, i), ref_argmax(l, nv));
        CHECK(rl_get_logits(g, i) == NULL);
    }
    rl_token ta = rl_get_argmax(a, -1), tg = rl_get_argmax(g, -1);
    for (int k = 0; k < 16; k++) {
        CHECKF(tg == ta, "step %d: %d vs %d", k, tg, ta);
        rl_batch s = rl_batch_get(&ta, 1), t = rl_batch_get(&tg, 1);
        if (rl_decode(a, &s) != RL_OK || rl_decode(g, &t) != RL_OK) {
            CHECKF(0, "decode: %s %s", rl_context_errmsg(a), rl_context_errmsg(g));
            break;
        }
        ta = ref_argmax(rl_get_logits(a, -1), nv);
        tg = rl_get_argmax(g, -1);
    }
    CHECK_EQ_INT(tg, ta);
done:
    rl_context_free(a);
    rl_context_free(g);
    rl_model_free(m);
}

/* rl_context_set_sampler on the GPU: with the same seed and chain (temperature, top-k,
 * top-p, min-p, repetition penalty), the tokens drawn on the device during rl_decode equal
 * the host sampler's over the copied logits of a second context, step for step; the
 * sampled context gives no logits and no argmax. */
TEST(sampled_decode) {
    char why[300];
    if (!rl_test_have_gpu(why, sizeof why)) SKIP("%s", why);
    const char *path = rl_test_zoo_model("llama3-Q4_K_M.gguf");
    if (!path) SKIP("no usable models/zoo/llama3-Q4_K_M.gguf");
    rl_model *m = rl_test_load_model(path, "cuda");
    if (!m) return;
    const int32_t nv = rl_model_n_vocab(m);
    rl_sampler_params sp = rl_sampler_default_params();
    sp.seed = 1234;
    sp.temperature = 0.8f;
    sp.top_k = 40;
    sp.top_p = 0.95f;
    sp.min_p = 0.05f;
    sp.repeat_penalty = 1.1f;
    sp.penalty_last_n = 64;
    char err[256];
    rl_sampler *sa = NULL, *sg = NULL;
    rl_context *a = context(m), *g = context(m);
    CHECK(rl_sampler_create(&sp, nv, rl_model_vocab(m), &sa, err, sizeof err) == RL_OK);
    CHECK(rl_sampler_create(&sp, nv, rl_model_vocab(m), &sg, err, sizeof err) == RL_OK);
    if (!a || !g || !sa || !sg) goto done;
    CHECK(rl_context_set_sampler(g, sg));
    rl_token prompt[8];
    for (int i = 0; i < 8; i++) prompt[i] = (rl_token)((17 + 97 * i) % nv);
    for (int i = 0; i < 8; i++) {
        rl_sampler_accept(sa, prompt[i]);
        rl_sampler_accept(sg, prompt[i]);
    }
    rl_batch b = rl_batch_get(prompt, 8);
    CHECK(rl_decode(a, &b) == RL_OK);
    CHECK(rl_decode(g, &b) == RL_OK);
    int same = 0;
    for (int k = 0; k < 32; k++) {
        rl_token ta = RL_TOKEN_NULL, tg = rl_get_sampled(g, -1);
        const float *l = rl_get_logits(a, -1);
        CHECK(l != NULL && rl_sampler_sample(sa, l, NULL, &ta) == RL_OK);
        CHECK(rl_get_logits(g, -1) == NULL && rl_get_argmax(g, -1) == -1);
        if (tg != ta) {
            CHECKF(0, "step %d: device %d, host %d", k, tg, ta);
            break;
        }
        same++;
        rl_sampler_accept(sa, ta);
        rl_sampler_accept(sg, tg);
        rl_batch s = rl_batch_get(&ta, 1), t = rl_batch_get(&tg, 1);
        if (rl_decode(a, &s) != RL_OK || rl_decode(g, &t) != RL_OK) {
            CHECKF(0, "decode: %s %s", rl_context_errmsg(a), rl_context_errmsg(g));
            break;
        }
    }
    fprintf(stderr, "  sampled decode: %d of 32 steps equal the host's draw\n", same);
done:
    rl_sampler_free(sa);
    rl_sampler_free(sg);
    rl_context_free(a);
    rl_context_free(g);
    rl_model_free(m);
}

int main(void) {
    RUN(argmax_op);
    RUN(argmax_only_decode);
    RUN(sampled_decode);
    return rl_test_finish();
}
