/*
 * perplexity.c - rl_perplexity: perplexity of a token sequence the way llama.cpp's
 * llama-perplexity computes it (tools/perplexity), so that the figures compare:
 *
 *  - the text is tokenized once (with BOS where the vocabulary adds one) and cut into
 *    n_tokens / n_ctx non-overlapping windows of n_ctx tokens; the tail is dropped;
 *  - each window is evaluated from an empty cache, its first token replaced by BOS when
 *    the vocabulary adds BOS (so every window starts as a document does);
 *  - only the second half is scored: the logits at positions n_ctx/2 .. n_ctx-2 predict
 *    the tokens after them, so every scored token sees at least n_ctx/2 tokens of context;
 *  - each score is the log-softmax of the next token, log p = l[t] - max - log(sum exp(l -
 *    max)) with the sum in double; PPL = exp(mean NLL), and its error is the standard
 *    error of the mean NLL carried through exp: PPL * sqrt(var(NLL) / (count - 1)).
 *
 * A window runs as several forward passes of at most n_batch tokens; logits are asked
 * only for the scored positions and consumed after each pass, so memory stays at
 * n_batch x n_vocab floats whatever the window.
 */
#include "../util/util.h"

#include <math.h>

RL_API rl_perplexity_params rl_perplexity_default_params(void) {
    rl_perplexity_params p = {
        .n_ctx = 512,
        .n_batch = 0,
        .kv_type = RL_TYPE_F16,
        .n_threads = 0,
        .progress = NULL,
        .user = NULL,
    };
    return p;
}

/* -log p(next) under the softmax of lg[0..nv). */
static double nll_of(const float *lg, int32_t nv, rl_token next) {
    float mx = lg[0];
    for (int32_t k = 1; k < nv; k++) mx = lg[k] > mx ? lg[k] : mx;
    double sum = 0;
    for (int32_t k = 0; k < nv; k++) sum += expf(lg[k] - mx);
    return -((double)(lg[next] - mx) - log(sum));
}

static void finish(rl_perplexity_result *r, double nll, double nll2) {
    const double n = (double)r->n_scored;
    if (n <= 0) return;
    r->nll = nll / n;
    r->ppl = exp(r->nll);
    const double var = nll2 / n - r->nll * r->nll;
    r->ppl_err = var > 0 && n > 1 ? r->ppl * sqrt(var / (n - 1)) : 0;
}

RL_API rl_status rl_perplexity(const rl_model *m, const rl_token *tokens, size_t n_tokens,
                               const rl_perplexity_params *pp, rl_perplexity_result *out,
                               char *err, size_t err_size) {
    rl__fmt(err, err_size, "%s", "");
    if (!m || !out || (!tokens && n_tokens)) {
        rl__fmt(err, err_size, "NULL model, tokens or result");
        return RL_ERR_INVALID_ARG;
    }
    memset(out, 0, sizeof *out);
    rl_perplexity_params p = pp ? *pp : rl_perplexity_default_params();
    if (p.n_ctx < 4) {
        rl__fmt(err, err_size, "n_ctx must be at least 4, got %d", (int)p.n_ctx);
        return RL_ERR_INVALID_ARG;
    }
    if (p.n_batch <= 0 || p.n_batch > p.n_ctx) p.n_batch = p.n_ctx;
    if (n_tokens < 2 * (size_t)p.n_ctx) {
        rl__fmt(err, err_size,
                "%zu tokens; need at least 2 * n_ctx = %lld to score a window (use a smaller "
                "n_ctx or a longer text)",
                n_tokens, 2LL * p.n_ctx);
        return RL_ERR_INVALID_ARG;
    }
    const rl_vocab *v = rl_model_vocab(m);
    const int32_t nv = rl_model_n_vocab(m);
    for (size_t i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= nv) {
            rl__fmt(err, err_size, "tokens[%zu] = %d is out of range [0, %d)", i, (int)tokens[i],
                    (int)nv);
            return RL_ERR_INVALID_ARG;
        }
    const int32_t n_ctx = p.n_ctx, first = n_ctx / 2;
    const int32_t n_windows = (int32_t)RL_MIN(n_tokens / (size_t)n_ctx, (size_t)INT32_MAX);

    rl_context_params cp = rl_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = p.n_batch;
    cp.n_outputs_max = RL_MIN(p.n_batch, n_ctx - 1 - first);
    cp.kv_type = p.kv_type;
    cp.n_threads = p.n_threads;
    rl_context *ctx = NULL;
    rl_status st = rl_context_create(m, &cp, &ctx, err, err_size);
    if (st != RL_OK) return st;
    rl_token *w = rl__malloc(sizeof(rl_token) * (size_t)n_ctx);
    int8_t *flags = rl__malloc((size_t)n_ctx);
    if (!w || !flags) {
        st = RL_ERR_NOMEM;
        rl__fmt(err, err_size, "out of memory");
        goto done;
    }
    /* positions first .. n_ctx-2 predict a token of the window; n_ctx-1 is not scored */
    for (int32_t i = 0; i < n_ctx; i++) flags[i] = i >= first && i < n_ctx - 1;
    const bool bos = rl_vocab_add_bos(v) && rl_vocab_bos(v) != RL_TOKEN_NULL;
    double nll = 0, nll2 = 0;
    for (int32_t c = 0; c < n_windows; c++) {
        const rl_token *src = tokens + (size_t)c * (size_t)n_ctx;
        memcpy(w, src, sizeof(rl_token) * (size_t)n_ctx);
        if (bos) w[0] = rl_vocab_bos(v);
        rl_kv_clear(ctx);
        for (int32_t j = 0; j < n_ctx; j += p.n_batch) {
            const int32_t n = RL_MIN(p.n_batch, n_ctx - j);
            rl_batch b = {.n_tokens = n, .token = w + j, .logits = flags + j};
            st = rl_decode(ctx, &b);
            if (st != RL_OK) {
                rl__fmt(err, err_size, "window %d: %s", (int)c, rl_context_errmsg(ctx));
                goto done;
            }
            for (int32_t i = RL_MAX(j, first); i < j + n && i < n_ctx - 1; i++) {
                const float *lg = rl_get_logits(ctx, i - j);
                if (!lg) {
                    st = RL_ERR_INTERNAL;
                    rl__fmt(err, err_size, "window %d: no logits at position %d", (int)c, (int)i);
                    goto done;
                }
                const double x = nll_of(lg, nv, src[i + 1]);
                nll += x;
                nll2 += x * x;
                out->n_scored++;
            }
        }
        out->n_windows++;
        finish(out, nll, nll2);
        if (p.progress) p.progress(out, n_windows, p.user);
    }
done:
    rl__free(w);
    rl__free(flags);
    rl_context_free(ctx);
    return st;
}
