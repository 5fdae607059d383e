/*
 * model_logits.c - see model_logits.h.
 */
#include "model_logits.h"

#include "test.h"

#include <stdlib.h>
#include <string.h>

float *rl_test_prompt_logits(const char *path, int *n_vocab, rl_model **keep) {
    char err[512];
    rl_model *m = NULL;
    rl_model_params mp = rl_model_default_params();
    mp.n_threads = 2;
    if (rl_model_load(path, &mp, &m, err, sizeof err) != RL_OK) {
        CHECKF(0, "%s", err);
        return NULL;
    }
    rl_context *ctx = NULL;
    rl_context_params cp = rl_context_default_params();
    cp.n_ctx = 64;
    CHECK(rl_context_create(m, &cp, &ctx, err, sizeof err) == RL_OK);
    const int nv = rl_model_n_vocab(m);
    float *out = malloc((size_t)nv * 2 * sizeof(float));
    const rl_token prompt[] = {1, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100};
    rl_batch b = rl_batch_get(prompt, (int32_t)(sizeof prompt / sizeof prompt[0]));
    CHECK(rl_decode(ctx, &b) == RL_OK);
    memcpy(out, rl_get_logits(ctx, -1), (size_t)nv * sizeof(float));
    const rl_token next = 33;
    b = rl_batch_get(&next, 1);
    CHECK(rl_decode(ctx, &b) == RL_OK);
    memcpy(out + nv, rl_get_logits(ctx, -1), (size_t)nv * sizeof(float));
    rl_context_free(ctx);
    *n_vocab = nv;
    *keep = m;
    return out;
}

rl_model *rl_test_load_model(const char *path, const char *device) {
    char err[512];
    rl_model_params mp = rl_model_default_params();
    mp.device = device;
    rl_model *m = NULL;
    const rl_status st = rl_model_load(path, &mp, &m, err, sizeof err);
    CHECKF(st == RL_OK, "%s on %s: %s", path, device ? device : "cpu", err);
    return st == RL_OK ? m : NULL;
}
