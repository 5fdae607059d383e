/* rl_context_set_argmax_only / rl_get_argmax on the CPU backend (no device pick: the
 * context copies the rows and picks on the host): a prompt with every token flagged and
 * 12 greedy steps give the same ids as the argmax of the logits of a context in the
 * default mode; in argmax-only mode rl_get_logits is NULL; unflagged tokens and rows out
 * of range give -1; switching the mode off brings the logits back. */
#include "ruvllm.h"
#include "model_logits.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <unistd.h>

static int32_t ref_argmax(const float *x, int32_t n) {
    int32_t b = 0;
    float best = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (x[i] > best) {
            best = x[i];
            b = i;
        }
    return b;
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

TEST(argmax_only_matches_logits) {
    const char *path = rl_test_data("models/stories260K.gguf");
    if (access(path, R_OK)) SKIP("no stories260K");
    rl_model *m = rl_test_load_model(path, NULL);
    if (!m) return;
    const int32_t nv = rl_model_n_vocab(m);
    rl_context *a = context(m), *g = context(m);
    if (!a || !g) goto done;
    rl_context_set_argmax_only(g, true);

    static const rl_token prompt[] = {1, 403, 407, 261, 378, 300, 295, 260};
    const int8_t all[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    rl_batch b = {.n_tokens = 8, .token = prompt, .logits = all};
    CHECK(rl_decode(a, &b) == RL_OK);
    CHECK(rl_decode(g, &b) == RL_OK);
    for (int32_t i = 0; i < 8; i++) {
        const float *l = rl_get_logits(a, i);
        CHECK(l != NULL);
        if (!l) break;
        const int32_t want = ref_argmax(l, nv);
        CHECK_EQ_INT(rl_get_argmax(a, i), want);
        CHECK_EQ_INT(rl_get_argmax(g, i), want);
        CHECK(rl_get_logits(g, i) == NULL);
    }
    CHECK_EQ_INT(rl_get_argmax(g, 8), -1);
    CHECK_EQ_INT(rl_get_argmax(g, -9), -1);
    CHECK_EQ_INT(rl_get_argmax(g, -1), rl_get_argmax(a, 7));

    rl_token ta = rl_get_argmax(a, -1), tg = rl_get_argmax(g, -1);
    for (int k = 0; k < 12; k++) {
        CHECK_EQ_INT(tg, ta);
        rl_batch s = rl_batch_get(&ta, 1);
        rl_batch t = rl_batch_get(&tg, 1);
        if (rl_decode(a, &s) != RL_OK || rl_decode(g, &t) != RL_OK) {
            CHECK(0);
            break;
        }
        ta = ref_argmax(rl_get_logits(a, -1), nv);
        tg = rl_get_argmax(g, -1);
    }
    CHECK_EQ_INT(tg, ta);

    /* a prompt whose last token only is flagged: the others give -1 */
    rl_kv_clear(g);
    rl_batch p = rl_batch_get(prompt, 8);
    CHECK(rl_decode(g, &p) == RL_OK);
    CHECK_EQ_INT(rl_get_argmax(g, 0), -1);
    CHECK(rl_get_argmax(g, 7) >= 0 && rl_get_argmax(g, 7) < nv);

    /* off again: logits come back, and rl_get_argmax picks from them */
    rl_context_set_argmax_only(g, false);
    rl_batch s = rl_batch_get(&ta, 1);
    CHECK(rl_decode(g, &s) == RL_OK);
    const float *l = rl_get_logits(g, -1);
    CHECK(l != NULL);
    if (l) CHECK_EQ_INT(rl_get_argmax(g, -1), ref_argmax(l, nv));
done:
    rl_context_free(a);
    rl_context_free(g);
    rl_model_free(m);
}

/* rl_context_set_sampler on the CPU backend: it cannot sample on the device, so the call
 * says false and decoding keeps the logits (rl_get_sampled -1); NULL turns it off. */
TEST(set_sampler_on_cpu) {
    const char *path = rl_test_data("models/stories260K.gguf");
    if (access(path, R_OK)) SKIP("no stories260K");
    rl_model *m = rl_test_load_model(path, NULL);
    if (!m) return;
    char err[256];
    rl_context *ctx = context(m);
    rl_sampler_params sp = rl_sampler_default_params();
    sp.seed = 7;
    sp.temperature = 0.8f;
    sp.top_k = 40;
    rl_sampler *smp = NULL;
    CHECK(rl_sampler_create(&sp, rl_model_n_vocab(m), rl_model_vocab(m), &smp, err, sizeof err) ==
          RL_OK);
    if (ctx && smp) {
        CHECK(!rl_context_set_sampler(ctx, smp));
        CHECK(!rl_context_set_sampler(ctx, NULL));
        static const rl_token prompt[] = {1, 403, 407};
        rl_batch b = rl_batch_get(prompt, 3);
        CHECK(rl_decode(ctx, &b) == RL_OK);
        CHECK(rl_get_logits(ctx, -1) != NULL);
        CHECK_EQ_INT(rl_get_sampled(ctx, -1), -1);
        CHECK(rl_get_argmax(ctx, -1) >= 0);
    }
    CHECK(!rl_context_set_sampler(NULL, smp));
    CHECK_EQ_INT(rl_get_sampled(NULL, 0), -1);
    rl_sampler_free(smp);
    rl_context_free(ctx);
    rl_model_free(m);
}

TEST(null_context) {
    rl_context_set_argmax_only(NULL, true);
    CHECK_EQ_INT(rl_get_argmax(NULL, -1), -1);
}

int main(void) {
    RUN(argmax_only_matches_logits);
    RUN(set_sampler_on_cpu);
    RUN(null_context);
    return rl_test_finish();
}
