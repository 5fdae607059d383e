/*
 * sampler.c - the sampler's public face: parameters and their validation, the handle's
 * life cycle (every buffer allocated at create), accepting tokens into the penalty and DRY
 * windows, the lazy-constraint protocol and log-probabilities. The sampling pass itself
 * is in chain.c, DRY in dry.c.
 */
#include "sampler/sampler.h"

#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

RL_API rl_sampler_params rl_sampler_default_params(void) {
    rl_sampler_params p;
    memset(&p, 0, sizeof p);
    p.seed = RL_SAMPLER_SEED_RANDOM;
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.typical_p = 1.0f;
    p.min_keep = 0;
    p.penalty_last_n = 64;
    p.repeat_penalty = 1.0f;
    p.frequency_penalty = 0.0f;
    p.presence_penalty = 0.0f;
    p.dry_multiplier = 0.0f;
    p.dry_base = 1.75f;
    p.dry_allowed_length = 2;
    p.dry_penalty_last_n = 64;
    p.dry_sequence_breakers = NULL;
    p.n_dry_sequence_breakers = 0;
    p.xtc_probability = 0.0f;
    p.xtc_threshold = 0.1f;
    p.mirostat = 0;
    p.mirostat_tau = 5.0f;
    p.mirostat_eta = 0.1f;
    p.logit_bias = NULL;
    p.n_logit_bias = 0;
    p.logprobs = false;
    p.top_logprobs = 0;
    p.logprobs_mode = RL_SAMPLER_LOGPROBS_PROCESSED;
    p.n_order = 0;
    return p;
}

/* The default order of the filters (llama.cpp's common_params_sampling.samplers). */
static const rl_sampler_stage default_order[RL_SAMPLER_STAGE_COUNT] = {
    RL_SAMPLER_STAGE_TOP_K, RL_SAMPLER_STAGE_TYPICAL_P, RL_SAMPLER_STAGE_TOP_P,
    RL_SAMPLER_STAGE_MIN_P, RL_SAMPLER_STAGE_XTC,       RL_SAMPLER_STAGE_TEMPERATURE,
};

/* ---- validation ------------------------------------------------------------------- */

static bool bad_range_f(char *err, size_t n, const char *name, float v, float lo, float hi,
                        bool lo_open) {
    bool ok = isfinite(v) && (lo_open ? v > lo : v >= lo) && v <= hi;
    if (ok) return false;
    rl__fmt(err, n, "%s must be in %c%g, %g], got %g", name, lo_open ? '(' : '[', (double)lo,
            (double)hi, (double)v);
    return true;
}

static bool bad_min_f(char *err, size_t n, const char *name, float v, float lo, bool lo_open) {
    bool ok = isfinite(v) && (lo_open ? v > lo : v >= lo);
    if (ok) return false;
    rl__fmt(err, n, "%s must be a finite number %s %g, got %g", name, lo_open ? ">" : ">=",
            (double)lo, (double)v);
    return true;
}

static bool bad_finite(char *err, size_t n, const char *name, float v) {
    if (isfinite(v)) return false;
    rl__fmt(err, n, "%s must be finite, got %g", name, (double)v);
    return true;
}

static bool bad_range_i(char *err, size_t n, const char *name, int64_t v, int64_t lo,
                        int64_t hi) {
    if (v >= lo && v <= hi) return false;
    rl__fmt(err, n, "%s must be in [%lld, %lld], got %lld", name, (long long)lo, (long long)hi,
            (long long)v);
    return true;
}

RL_API rl_status rl_sampler_params_validate(const rl_sampler_params *p, int32_t n_vocab,
                                            char *err, size_t en) {
    if (en) err[0] = '\0';
    if (!p) {
        rl__fmt(err, en, "params is NULL");
        return RL_ERR_INVALID_ARG;
    }
    if (n_vocab < 1) {
        rl__fmt(err, en, "n_vocab must be >= 1, got %d", (int)n_vocab);
        return RL_ERR_INVALID_ARG;
    }
    const int64_t W = RL_SAMPLER_MAX_WINDOW;
    if (bad_min_f(err, en, "temperature", p->temperature, 0.0f, false) ||
        bad_range_i(err, en, "top_k", p->top_k, 0, INT32_MAX) ||
        bad_range_f(err, en, "top_p", p->top_p, 0.0f, 1.0f, false) ||
        bad_range_f(err, en, "min_p", p->min_p, 0.0f, 1.0f, false) ||
        bad_range_f(err, en, "typical_p", p->typical_p, 0.0f, 1.0f, false) ||
        bad_range_i(err, en, "min_keep", p->min_keep, 0, INT32_MAX) ||
        bad_range_i(err, en, "penalty_last_n", p->penalty_last_n, 0, W) ||
        bad_min_f(err, en, "repeat_penalty", p->repeat_penalty, 0.0f, true) ||
        bad_finite(err, en, "frequency_penalty", p->frequency_penalty) ||
        bad_finite(err, en, "presence_penalty", p->presence_penalty) ||
        bad_min_f(err, en, "dry_multiplier", p->dry_multiplier, 0.0f, false) ||
        bad_min_f(err, en, "dry_base", p->dry_base, 0.0f, false) ||
        bad_range_i(err, en, "dry_allowed_length", p->dry_allowed_length, 0, W) ||
        bad_range_i(err, en, "dry_penalty_last_n", p->dry_penalty_last_n, 0, W) ||
        bad_range_i(err, en, "n_dry_sequence_breakers", p->n_dry_sequence_breakers, 0,
                    RL_SAMPLER_MAX_BREAKERS) ||
        bad_range_f(err, en, "xtc_probability", p->xtc_probability, 0.0f, 1.0f, false) ||
        bad_range_f(err, en, "xtc_threshold", p->xtc_threshold, 0.0f, 1.0f, false) ||
        bad_min_f(err, en, "mirostat_tau", p->mirostat_tau, 0.0f, false) ||
        bad_min_f(err, en, "mirostat_eta", p->mirostat_eta, 0.0f, false) ||
        bad_range_i(err, en, "n_logit_bias", p->n_logit_bias, 0, INT32_MAX) ||
        bad_range_i(err, en, "top_logprobs", p->top_logprobs, 0, RL_SAMPLER_MAX_TOP_LOGPROBS) ||
        bad_range_i(err, en, "n_order", p->n_order, 0, RL_SAMPLER_STAGE_COUNT))
        return RL_ERR_INVALID_ARG;
    if (p->mirostat != 0 && p->mirostat != 2) {
        rl__fmt(err, en, "mirostat must be 0 (off) or 2 (mirostat v2), got %d%s",
                (int)p->mirostat, p->mirostat == 1 ? " (mirostat v1 is not supported)" : "");
        return RL_ERR_INVALID_ARG;
    }
    if (p->n_dry_sequence_breakers > 0 && !p->dry_sequence_breakers) {
        rl__fmt(err, en, "dry_sequence_breakers is NULL but n_dry_sequence_breakers is %d",
                (int)p->n_dry_sequence_breakers);
        return RL_ERR_INVALID_ARG;
    }
    for (int32_t i = 0; i < p->n_dry_sequence_breakers; i++) {
        const char *b = p->dry_sequence_breakers[i];
        if (!b || !*b) {
            rl__fmt(err, en, "dry_sequence_breakers[%d] is %s", (int)i, b ? "empty" : "NULL");
            return RL_ERR_INVALID_ARG;
        }
    }
    if (p->n_logit_bias > 0 && !p->logit_bias) {
        rl__fmt(err, en, "logit_bias is NULL but n_logit_bias is %d", (int)p->n_logit_bias);
        return RL_ERR_INVALID_ARG;
    }
    for (int32_t i = 0; i < p->n_logit_bias; i++) {
        const rl_logit_bias *b = &p->logit_bias[i];
        if (b->token < 0 || b->token >= n_vocab) {
            rl__fmt(err, en, "logit_bias[%d].token must be in [0, %d), got %d", (int)i,
                    (int)n_vocab, (int)b->token);
            return RL_ERR_INVALID_ARG;
        }
        if (!(isfinite(b->bias) || b->bias == -INFINITY)) {
            rl__fmt(err, en, "logit_bias[%d].bias must be finite or -inf, got %g", (int)i,
                    (double)b->bias);
            return RL_ERR_INVALID_ARG;
        }
    }
    if (p->top_logprobs > 0 && !p->logprobs) {
        rl__fmt(err, en, "top_logprobs is %d but logprobs is false", (int)p->top_logprobs);
        return RL_ERR_INVALID_ARG;
    }
    if (p->logprobs_mode != RL_SAMPLER_LOGPROBS_PROCESSED &&
        p->logprobs_mode != RL_SAMPLER_LOGPROBS_RAW) {
        rl__fmt(err, en, "logprobs_mode must be 0 (processed) or 1 (raw), got %d",
                (int)p->logprobs_mode);
        return RL_ERR_INVALID_ARG;
    }
    unsigned seen = 0;
    for (int32_t i = 0; i < p->n_order; i++) {
        int st = (int)p->order[i];
        if (st < 1 || st > RL_SAMPLER_STAGE_COUNT) {
            rl__fmt(err, en, "order[%d] must be an rl_sampler_stage (1..%d), got %d", (int)i,
                    RL_SAMPLER_STAGE_COUNT, st);
            return RL_ERR_INVALID_ARG;
        }
        if (seen & (1u << st)) {
            rl__fmt(err, en, "order[%d] repeats stage %d", (int)i, st);
            return RL_ERR_INVALID_ARG;
        }
        seen |= 1u << st;
    }
    return RL_OK;
}

/* ---- life cycle ----------------------------------------------------------------------- */

static uint64_t os_seed(void) {
    uint64_t x = 0;
    if (getrandom(&x, sizeof x, GRND_NONBLOCK) != (ssize_t)sizeof x) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&x;
    }
    return x;
}

static void seed_rng(rl_sampler *s, uint64_t seed) {
    s->seed = seed == RL_SAMPLER_SEED_RANDOM ? os_seed() : seed;
    uint64_t sm = s->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = rl__splitmix64(&sm);
}

RL_API void rl_sampler_free(rl_sampler *s) {
    if (!s) return;
    rl__free(s->work);
    rl__free(s->dbuf);
    rl__free(s->fbuf);
    rl__free(s->cand);
    rl__free(s->tmp);
    rl__free(s->bsum);
    rl__free(s->hist);
    rl__free(s->mask);
    rl__free(s->bias);
    rl__free(s->pen_ring);
    rl__free(s->pen_count);
    rl__free(s->pen_pos);
    rl__free(s->pen_list);
    rl__free(s->dry_ring);
    rl__free(s->dry_seq);
    rl__free(s->dry_z);
    rl__free(s->dry_max);
    rl__free(s->dry_list);
    rl__free(s->dry_head_bits);
    rl__free(s->dry_single_bits);
    rl__free(s->brk);
    rl__free(s->brk_tails);
    rl__free(s->lp_top);
    rl__free(s);
}

static bool penalties_enabled(const rl_sampler_params *p) {
    return p->penalty_last_n > 0 &&
           (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f ||
            p->presence_penalty != 0.0f);
}

static bool dry_enabled(const rl_sampler_params *p) {
    return p->dry_multiplier != 0.0f && p->dry_base >= 1.0f && p->dry_penalty_last_n > 0;
}

/* Every buffer of a sampler for params s->p (without the DRY ones). */
static rl_status alloc_buffers(rl_sampler *s) {
    size_t nv = (size_t)s->n_vocab;
    s->work = rl__malloc(nv * sizeof(float));
    s->dbuf = rl__malloc(nv * sizeof(float));
    s->fbuf = rl__malloc(nv * sizeof(float));
    s->cand = rl__malloc(nv * sizeof(uint64_t));
    s->tmp = rl__malloc(nv * sizeof(uint64_t));
    s->bsum = rl__malloc((nv / RL__BLOCK + 1) * sizeof(double));
    s->hist = rl__malloc(4 * RL__TOPP_BUCKETS * sizeof(double));
    s->mask = rl__malloc((nv + 7) / 8);
    if (!s->work || !s->dbuf || !s->fbuf || !s->cand || !s->tmp || !s->bsum || !s->hist ||
        !s->mask)
        return RL_ERR_NOMEM;
    if (s->p.top_logprobs > 0) {
        s->lp_top = rl__malloc((size_t)s->p.top_logprobs * sizeof(uint64_t));
        if (!s->lp_top) return RL_ERR_NOMEM;
    }
    if (penalties_enabled(&s->p)) {
        int32_t cap = s->p.penalty_last_n;
        size_t nl = (size_t)(cap < s->n_vocab ? cap : s->n_vocab);
        s->pen_cap = cap;
        s->pen_ring = rl__malloc((size_t)cap * sizeof(int32_t));
        s->pen_count = rl__calloc(nv, sizeof(int32_t));
        s->pen_pos = rl__malloc(nv * sizeof(int32_t));
        s->pen_list = rl__malloc(nl * sizeof(int32_t));
        if (!s->pen_ring || !s->pen_count || !s->pen_pos || !s->pen_list) return RL_ERR_NOMEM;
        for (size_t i = 0; i < nv; i++) s->pen_pos[i] = -1;
    }
    return RL_OK;
}

RL_API rl_status rl_sampler_create(const rl_sampler_params *params, int32_t n_vocab,
                                   const rl_vocab *vocab, rl_sampler **out, char *err,
                                   size_t err_size) {
    if (err_size) err[0] = '\0';
    if (!out) {
        rl__fmt(err, err_size, "out is NULL");
        return RL_ERR_INVALID_ARG;
    }
    *out = NULL;
    rl_sampler_params def = rl_sampler_default_params();
    const rl_sampler_params *p = params ? params : &def;
    rl_status st = rl_sampler_params_validate(p, n_vocab, err, err_size);
    if (st != RL_OK) return st;
    if (dry_enabled(p) && p->dry_sequence_breakers && p->n_dry_sequence_breakers > 0 &&
        !vocab) {
        rl__fmt(err, err_size, "dry_sequence_breakers need a vocabulary, but vocab is NULL");
        return RL_ERR_INVALID_ARG;
    }
    rl_sampler *s = rl__calloc(1, sizeof *s);
    if (!s) goto nomem;
    s->p = *p;
    s->p.dry_sequence_breakers = NULL;
    s->p.n_dry_sequence_breakers = 0;
    s->p.logit_bias = NULL;
    s->n_vocab = n_vocab;
    if (p->n_order > 0) {
        s->n_order = p->n_order;
        memcpy(s->order, p->order, (size_t)p->n_order * sizeof *p->order);
    } else {
        s->n_order = RL_SAMPLER_STAGE_COUNT;
        memcpy(s->order, default_order, sizeof default_order);
    }
    if (alloc_buffers(s) != RL_OK) goto nomem;
    if (p->n_logit_bias > 0) {
        s->bias = rl__malloc((size_t)p->n_logit_bias * sizeof *s->bias);
        if (!s->bias) goto nomem;
        memcpy(s->bias, p->logit_bias, (size_t)p->n_logit_bias * sizeof *s->bias);
        s->n_bias = p->n_logit_bias;
    }
    if (dry_enabled(p)) {
        st = rl__dry_init(s, vocab, p->dry_sequence_breakers, p->n_dry_sequence_breakers);
        if (st != RL_OK) goto nomem;
    }
    s->mu = 2.0f * p->mirostat_tau;
    seed_rng(s, p->seed);
    *out = s;
    return RL_OK;
nomem:
    rl_sampler_free(s);
    rl__fmt(err, err_size, "out of memory creating a sampler for %d tokens", (int)n_vocab);
    return RL_ERR_NOMEM;
}

static void *dup_mem(const void *src, size_t n, bool *fail) {
    if (!src) return NULL;
    void *d = rl__malloc(n ? n : 1);
    if (!d) {
        *fail = true;
        return NULL;
    }
    if (n) memcpy(d, src, n);
    return d;
}

RL_API rl_status rl_sampler_clone(const rl_sampler *s, rl_sampler **out) {
    if (!s || !out) return RL_ERR_INVALID_ARG;
    *out = NULL;
    rl_sampler *c = rl__malloc(sizeof *c);
    if (!c) return RL_ERR_NOMEM;
    *c = *s;
    size_t nv = (size_t)s->n_vocab, nb = (nv + 7) / 8;
    bool fail = false;
    /* scratch buffers: fresh; state: copied */
    c->work = dup_mem(s->work, nv * sizeof(float), &fail);
    c->dbuf = dup_mem(s->dbuf, nv * sizeof(float), &fail);
    c->fbuf = dup_mem(s->fbuf, nv * sizeof(float), &fail);
    c->cand = dup_mem(s->cand, nv * sizeof(uint64_t), &fail);
    c->tmp = dup_mem(s->tmp, nv * sizeof(uint64_t), &fail);
    c->bsum = dup_mem(s->bsum, (nv / RL__BLOCK + 1) * sizeof(double), &fail);
    c->hist = dup_mem(s->hist, 4 * RL__TOPP_BUCKETS * sizeof(double), &fail);
    c->mask = dup_mem(s->mask, nb, &fail);
    c->bias = dup_mem(s->bias, (size_t)s->n_bias * sizeof *s->bias, &fail);
    c->pen_ring = dup_mem(s->pen_ring, (size_t)s->pen_cap * sizeof(int32_t), &fail);
    c->pen_count = dup_mem(s->pen_count, nv * sizeof(int32_t), &fail);
    c->pen_pos = dup_mem(s->pen_pos, nv * sizeof(int32_t), &fail);
    size_t nl = (size_t)(s->pen_cap < s->n_vocab ? s->pen_cap : s->n_vocab);
    c->pen_list = dup_mem(s->pen_list, nl * sizeof(int32_t), &fail);
    size_t dc = (size_t)s->dry_cap * sizeof(int32_t);
    c->dry_ring = dup_mem(s->dry_ring, dc, &fail);
    c->dry_seq = dup_mem(s->dry_seq, dc, &fail);
    c->dry_z = dup_mem(s->dry_z, dc, &fail);
    c->dry_list = dup_mem(s->dry_list, dc, &fail);
    c->dry_max = dup_mem(s->dry_max, nv * sizeof(int32_t), &fail);
    c->dry_head_bits = dup_mem(s->dry_head_bits, nb, &fail);
    c->dry_single_bits = dup_mem(s->dry_single_bits, nb, &fail);
    c->brk = dup_mem(s->brk, (size_t)s->n_brk * sizeof *s->brk, &fail);
    c->brk_tails = dup_mem(s->brk_tails, (size_t)s->n_brk_tails * sizeof(int32_t), &fail);
    c->lp_top = dup_mem(s->lp_top, (size_t)s->p.top_logprobs * sizeof(uint64_t), &fail);
    if (fail) {
        rl_sampler_free(c);
        return RL_ERR_NOMEM;
    }
    *out = c;
    return RL_OK;
}

RL_API void rl_sampler_reseed(rl_sampler *s, uint64_t seed) {
    if (s) seed_rng(s, seed);
}

RL_API uint64_t rl_sampler_seed(const rl_sampler *s) { return s ? s->seed : 0; }

RL_API void rl_sampler_reset(rl_sampler *s) {
    if (!s) return;
    for (int32_t j = 0; j < s->pen_n; j++) {
        s->pen_count[s->pen_list[j]] = 0;
        s->pen_pos[s->pen_list[j]] = -1;
    }
    s->pen_n = s->pen_head = s->pen_len = 0;
    s->dry_head = s->dry_len = 0;
    s->mu = 2.0f * s->p.mirostat_tau;
    s->lp_valid = false;
    s->err[0] = '\0';
    seed_rng(s, s->p.seed);
}

RL_API const char *rl_sampler_errmsg(const rl_sampler *s) { return s ? s->err : ""; }

/* ---- history ---------------------------------------------------------------------------- */

static void pen_add(rl_sampler *s, int32_t t) {
    if (s->pen_count[t]++ == 0) {
        s->pen_pos[t] = s->pen_n;
        s->pen_list[s->pen_n++] = t;
    }
}

static void pen_remove(rl_sampler *s, int32_t t) {
    if (--s->pen_count[t] == 0) {
        int32_t i = s->pen_pos[t], last = s->pen_list[--s->pen_n];
        s->pen_list[i] = last;
        s->pen_pos[last] = i;
        s->pen_pos[t] = -1;
    }
}

RL_API rl_status rl_sampler_accept(rl_sampler *s, rl_token t) {
    if (!s) return RL_ERR_INVALID_ARG;
    if (t < 0 || t >= s->n_vocab) {
        rl__fmt(s->err, sizeof s->err, "token %d is out of range [0, %d)", (int)t,
                (int)s->n_vocab);
        return RL_ERR_INVALID_ARG;
    }
    if (s->pen_cap > 0) {
        if (s->pen_len == s->pen_cap) {
            pen_remove(s, s->pen_ring[s->pen_head]);
            s->pen_ring[s->pen_head] = t;
            s->pen_head = (s->pen_head + 1) % s->pen_cap;
        } else {
            s->pen_ring[(s->pen_head + s->pen_len) % s->pen_cap] = t;
            s->pen_len++;
        }
        pen_add(s, t);
    }
    if (s->dry_on) rl__dry_accept(s, t);
    return RL_OK;
}

/* ---- sampling ---------------------------------------------------------------------------- */

/* After a successful pass: the chosen token's log-probability. */
static void lp_finish(rl_sampler *s, const float *logits, rl_token tok) {
    if (!s->p.logprobs) return;
    float x;
    if (s->p.logprobs_mode == RL_SAMPLER_LOGPROBS_RAW || !rl__sampler_modifies(s))
        x = logits[tok];
    else
        x = s->work[tok]; /* the chosen token is allowed: unaffected by the mask */
    s->lp_token = tok;
    s->lp_chosen = x - s->lp_lse;
    s->lp_valid = true;
}

RL_API rl_status rl_sampler_sample(rl_sampler *s, const float *logits, const uint8_t *allowed,
                                   rl_token *token_out) {
    if (token_out) *token_out = RL_TOKEN_NULL;
    if (!s || !logits || !token_out) {
        if (s) rl__fmt(s->err, sizeof s->err, "NULL %s", !logits ? "logits" : "token_out");
        return RL_ERR_INVALID_ARG;
    }
    s->err[0] = '\0';
    s->lp_valid = false;
    float mu;
    rl_token tok;
    rl_status st = rl__sample_once(s, logits, allowed, s->p.logprobs, &tok, &mu, NULL);
    if (st != RL_OK) return st;
    s->mu = mu;
    lp_finish(s, logits, tok);
    *token_out = tok;
    return RL_OK;
}

RL_API rl_status rl_sampler_sample_constrained(rl_sampler *s, const float *logits,
                                               const rl_sampler_constraint *c,
                                               rl_token *token_out) {
    if (!c) return rl_sampler_sample(s, logits, NULL, token_out);
    if (token_out) *token_out = RL_TOKEN_NULL;
    if (!s || !logits || !token_out || !c->allows || !c->fill_mask) {
        if (s) rl__fmt(s->err, sizeof s->err, "NULL logits, token_out or constraint callback");
        return RL_ERR_INVALID_ARG;
    }
    s->err[0] = '\0';
    s->lp_valid = false;
    float mu;
    rl_token tok;
    rl_status st = rl__sample_once(s, logits, NULL, s->p.logprobs, &tok, &mu, NULL);
    if (st != RL_OK) return st; /* a mask only removes tokens: no better luck with it */
    if (c->allows(c->user, tok)) {
        s->mu = mu;
        lp_finish(s, logits, tok);
        *token_out = tok;
        return RL_OK;
    }
    /* rejected: compute the mask, draw again (the logprob state of the first pass stays:
     * it does not see the mask) */
    st = c->fill_mask(c->user, s->mask, s->n_vocab);
    if (st != RL_OK) {
        rl__fmt(s->err, sizeof s->err, "the constraint's fill_mask failed: %s",
                rl_status_str(st));
        return st;
    }
    st = rl__sample_once(s, logits, s->mask, false, &tok, &mu, NULL);
    if (st != RL_OK) return st;
    s->mu = mu;
    lp_finish(s, logits, tok);
    *token_out = tok;
    return RL_OK;
}

RL_API rl_status rl_sampler_logprobs(const rl_sampler *s, rl_token_logprob *chosen,
                                     rl_token_logprob *top, int32_t n_top_max,
                                     int32_t *n_top) {
    if (n_top) *n_top = 0;
    if (!s || !s->p.logprobs || !s->lp_valid || (!top && n_top_max > 0)) return RL_ERR_INVALID_ARG;
    if (chosen) {
        chosen->token = s->lp_token;
        chosen->logprob = s->lp_chosen;
    }
    int32_t n = s->lp_n < n_top_max ? s->lp_n : n_top_max;
    if (n < 0) n = 0;
    for (int32_t i = 0; i < n; i++) {
        uint64_t k = s->lp_top[i];
        top[i].token = rl__key_id(k);
        top[i].logprob = rl__key_logit(k) - s->lp_lse;
    }
    if (n_top) *n_top = n;
    return RL_OK;
}
