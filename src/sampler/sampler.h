/*
 * sampler.h - internals of the sampler: the handle, the candidate encoding, the
 * deterministic float functions and the random generator shared by the sampler's files.
 *
 * Candidates. Until the first stage that drops tokens, the logits stay "dense": a float per
 * token id, -INFINITY for the tokens out of the race. After it they are "compact": an array
 * of 64-bit keys, one per surviving token, key = ord(-logit) << 32 | id, where ord maps
 * floats to unsigned integers in the same order. Ascending keys are descending logits with
 * ties to the lower id, so every sort and selection works on plain integers and gives one
 * answer, and a key holds its token's logit exactly.
 */
#ifndef RL_SAMPLER_H
#define RL_SAMPLER_H

#include "util/util.h"

#include <math.h>

/* ---- deterministic math ----------------------------------------------------------- */
/* exp and log from float arithmetic alone (no libm, whose last bit varies between
 * versions; the build has -ffp-contract=off, so no fused multiply-add either): the same
 * inputs give the same bits on every machine. About 1 ulp. */

/* e^x for x in [-inf, 88]; 0 below -87.33 (no subnormal results). Range reduction
 * x = n ln2 + r with a two-part ln2 (Cody and Waite), |r| <= ln2/2, then the degree-7
 * Taylor polynomial of e^r (truncation error < 5e-9) and the exponent put back in the
 * bits. The rounding of n uses the 1.5 * 2^23 trick, so the code vectorizes. */
static inline float rl__det_expf(float x) {
    const float big = 12582912.0f; /* 1.5 * 2^23 */
    float xc = x < -87.33f ? -87.33f : x;
    float t = xc * 1.44269504089f + big;
    float n = t - big;
    float r = xc - n * 0.693145751953125f; /* ln2 high part (exact in float) */
    r = r - n * 1.42860682030941723212e-6f; /* ln2 low part */
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t ni = (int32_t)(rl__f32_bits(t) - rl__f32_bits(big));
    float scale = rl__bits_f32((uint32_t)(ni + 127) << 23);
    float y = p * scale;
    return x < -87.33f ? 0.0f : y;
}

/* ln x for x >= 0 (0 gives -inf; subnormals handled). x = 2^e m with m in
 * [sqrt(1/2), sqrt(2)); ln m = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.1716, by its series
 * to s^11 (error < 1e-10). */
static inline float rl__det_logf(float x) {
    if (!(x > 0.0f)) return x == 0.0f ? -INFINITY : NAN;
    if (x == INFINITY) return INFINITY;
    int32_t e = 0;
    if (x < 1.17549435e-38f) { /* subnormal */
        x *= 8388608.0f;
        e = -23;
    }
    uint32_t u = rl__f32_bits(x);
    e += (int32_t)(u >> 23) - 127;
    float m = rl__bits_f32((u & 0x007fffffu) | 0x3f800000u); /* [1, 2) */
    if (m > 1.41421356f) {
        m *= 0.5f;
        e++;
    }
    float s = (m - 1.0f) / (m + 1.0f);
    float s2 = s * s;
    float q = 1.0f / 11.0f;
    q = q * s2 + 1.0f / 9.0f;
    q = q * s2 + 1.0f / 7.0f;
    q = q * s2 + 1.0f / 5.0f;
    q = q * s2 + 1.0f / 3.0f;
    q = q * s2 + 1.0f;
    float lm = 2.0f * s * q;
    float fe = (float)e;
    return fe * 0.693145751953125f + (lm + fe * 1.42860682030941723212e-6f);
}

static inline float rl__det_log2f(float x) { return rl__det_logf(x) * 1.44269504089f; }

/* ---- random numbers: xoshiro256** seeded by splitmix64 ----------------------------- */
/* Blackman and Vigna, "Scrambled linear pseudorandom number generators" (2021); the
 * reference algorithms at prng.di.unimi.it. */
static inline uint64_t rl__splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rl__rotl64(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rl__xoshiro_next(uint64_t s[4]) {
    uint64_t r = rl__rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rl__rotl64(s[3], 45);
    return r;
}

/* Uniform in [0, 1) with 53 (double) or 24 (float) random bits. */
static inline double rl__rng_double(uint64_t s[4]) {
    return (double)(rl__xoshiro_next(s) >> 11) * 0x1.0p-53;
}
static inline float rl__rng_float(uint64_t s[4]) {
    return (float)(rl__xoshiro_next(s) >> 40) * 0x1.0p-24f;
}

/* ---- candidate keys ----------------------------------------------------------------- */
static inline uint32_t rl__ord_f32(float f) {
    uint32_t u = rl__f32_bits(f + 0.0f); /* -0 -> +0 */
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
static inline float rl__unord_f32(uint32_t o) {
    return rl__bits_f32((o & 0x80000000u) ? (o & 0x7fffffffu) : ~o);
}
static inline uint64_t rl__key(float logit, int32_t id) {
    return ((uint64_t)rl__ord_f32(-logit) << 32) | (uint32_t)id;
}
static inline float rl__key_logit(uint64_t k) { return -rl__unord_f32((uint32_t)(k >> 32)); }
static inline int32_t rl__key_id(uint64_t k) { return (int32_t)(uint32_t)k; }

/* ---- ordering helpers (select.c) ------------------------------------------------------ */
/* Sort a[0..n) ascending (introsort). */
void rl__sort_u64(uint64_t *a, size_t n);
/* Reorder a[0..n) so that a[0..k) are the k smallest, ascending; 0 <= k <= n. */
void rl__select_u64(uint64_t *a, size_t n, size_t k);
/* The k largest finite entries of d[0..n) (k >= 1) as keys, ascending (most likely first),
 * into out[0..k'); returns k' = min(k, number of finite entries). One pass, skipping
 * blocks whose maximum cannot enter. */
int32_t rl__dense_top(const float *d, int32_t n, int32_t k, uint64_t *out);

/* ---- whole-vector passes (vec.c), bit-identical to the scalar definitions ---------- */
/* max of x[0..n) (-inf when empty) */
float rl__vmax(const float *x, int32_t n);
/* true when no entry is NaN or +inf */
bool rl__vcheck(const float *x, int32_t n);
/* dst = src, entries not in mask (when not NULL) -inf; false when src holds NaN or +inf */
bool rl__vcopy(float *dst, const float *src, const uint8_t *mask, int32_t n);
/* x[i] = -inf where mask bit i is clear */
void rl__vmask(float *x, const uint8_t *mask, int32_t n);
/* first index of the maximum among the entries in mask (NULL: all); -1 when all are -inf;
 * *ok (when not NULL) false when x holds NaN or +inf */
int32_t rl__vargmax(const float *x, const uint8_t *mask, int32_t n, bool *ok);
/* dst = src / t */
void rl__vdiv(float *dst, const float *src, float t, int32_t n);
/* e[i] = rl__det_expf(x[i] - mx); per block of RL__BLOCK entries the sum of 8 float lanes
 * (lane = index mod 8) added in double, into bs[block] when bs is not NULL; returns the
 * sum of the block sums, in block order. */
double rl__vexp_sum(const float *x, float *e, int32_t n, float mx, double *bs);

/* The builds behind them (tests compare the two). */
#define RL__SAMP_KERNELS(S)                                                                \
    float rl__samp_vmax_##S(const float *x, int32_t n);                                    \
    bool rl__samp_vcheck_##S(const float *x, int32_t n);                                   \
    bool rl__samp_vcopy_##S(float *dst, const float *src, const uint8_t *mask, int32_t n); \
    void rl__samp_vmask_##S(float *x, const uint8_t *mask, int32_t n);                     \
    int32_t rl__samp_vargmax_##S(const float *x, const uint8_t *mask, int32_t n, bool *ok); \
    void rl__samp_vdiv_##S(float *dst, const float *src, float t, int32_t n);              \
    double rl__samp_vexp_sum_##S(const float *x, float *e, int32_t n, float mx, double *bs);
RL__SAMP_KERNELS(sse)
RL__SAMP_KERNELS(avx2)

/* ---- the handle --------------------------------------------------------------------- */
typedef struct rl__dry_breaker {
    int32_t head; /* first token */
    int32_t off;  /* tail tokens at tails[off .. off+len) */
    int32_t len;
} rl__dry_breaker;

struct rl_sampler {
    rl_sampler_params p; /* pointers cleared; bias and breakers live below */
    int32_t n_vocab;
    int32_t n_order;
    rl_sampler_stage order[RL_SAMPLER_STAGE_COUNT];
    char err[256];

    uint64_t seed;   /* in use */
    uint64_t rng[4];
    float mu;        /* mirostat v2 */

    /* buffers sized at create */
    float *work;       /* [n_vocab] logits after steps 1-4, by id */
    float *dbuf;       /* [n_vocab] dense logits after temperature */
    float *fbuf;       /* [n_vocab] scratch: exps, probabilities */
    uint64_t *cand;    /* [n_vocab] compact candidates */
    uint64_t *tmp;     /* [n_vocab] scratch keys */
    double *bsum;      /* [n_vocab / RL__BLOCK + 1] block sums of the final draw */
    double *hist;      /* [4 * RL__TOPP_BUCKETS] top-p mass by logit bucket */
    uint8_t *mask;     /* [(n_vocab + 7) / 8] for the lazy constraint */
    rl_logit_bias *bias;
    int32_t n_bias;

    /* penalties: a ring of the last penalty_last_n tokens and a count per token; the
     * tokens with a non-zero count are listed in pen_list (pen_pos: index there, or -1) */
    int32_t pen_cap, pen_head, pen_len;
    int32_t *pen_ring;
    int32_t *pen_count; /* [n_vocab] */
    int32_t *pen_pos;   /* [n_vocab] */
    int32_t *pen_list;  /* [min(pen_cap, n_vocab)] */
    int32_t pen_n;

    /* DRY */
    bool dry_on;
    int32_t dry_cap, dry_head, dry_len;
    int32_t *dry_ring;
    int32_t *dry_seq;   /* [dry_cap] the window, newest first */
    int32_t *dry_z;     /* [dry_cap] Z-function of dry_seq */
    int32_t *dry_max;   /* [n_vocab] longest repeat each token would extend (0: none) */
    int32_t *dry_list;  /* [dry_cap] tokens with dry_max > 0 */
    uint8_t *dry_head_bits;   /* [(n_vocab + 7) / 8] heads of breakers */
    uint8_t *dry_single_bits; /* [(n_vocab + 7) / 8] one-token breakers */
    rl__dry_breaker *brk;     /* sorted by head */
    int32_t n_brk;
    int32_t *brk_tails;
    int32_t n_brk_tails;

    /* log-probabilities of the last sample */
    bool lp_valid;
    float lp_lse;       /* log-sum-exp of the distribution */
    float lp_chosen;    /* chosen token's log-probability */
    rl_token lp_token;
    int32_t lp_n;
    uint64_t *lp_top;   /* [top_logprobs] keys, most likely first */
};

#define RL__BLOCK 256
#define RL__TOPP_BUCKETS 1024

/* One sampling pass (chain.c): no accept, mu not committed (*mu_next), logprob state set
 * when do_lp. With dist_out (tests), nothing is drawn: the distribution the final choice
 * would draw from is written by id into dist_out[0..n_vocab) (one-hot when greedy). */
rl_status rl__sample_once(rl_sampler *s, const float *logits, const uint8_t *mask, bool do_lp,
                          rl_token *out, float *mu_next, float *dist_out);
/* Whether bias, penalties or DRY change any logit on the next pass. */
bool rl__sampler_modifies(const rl_sampler *s);

/* The next pass of s as a device can run it (chain.c; src/backend/backend.h rl_sample_row
 * has the same fields): false when the pass needs what only this file does (logit bias,
 * DRY, typical-p, XTC, mirostat, logprobs, or filters in an order other than top-k, top-p,
 * min-p with temperature after them). Filters left out of params.order are off in *d; a
 * temperature left out is 1 unless it is <= 0 (greedy). */
typedef struct rl__sampler_device {
    float temperature;
    int32_t top_k;
    float top_p, min_p, min_p_ln; /* min_p_ln = rl__det_logf(min_p) */
    int32_t min_keep;
    float repeat_penalty, frequency_penalty, presence_penalty;
} rl__sampler_device;
bool rl__sampler_device_plan(const rl_sampler *s, rl__sampler_device *d);
/* The penalized tokens of the next pass as (id, count) pairs into pairs[0..2 n) (pairs NULL:
 * only count them); returns n, 0 when penalties are off. */
int32_t rl__sampler_penalty_pairs(const rl_sampler *s, int32_t *pairs);
/* The uniform number the next pass's final draw takes from s's stream (rl__rng_double), for
 * a device drawing in its place; call only when the pass is not greedy (temperature > 0). */
double rl__sampler_next_u(rl_sampler *s);

/* DRY (dry.c). */
rl_status rl__dry_init(rl_sampler *s, const rl_vocab *vocab, const char *const *breakers,
                       int32_t n_breakers);
void rl__dry_accept(rl_sampler *s, rl_token t);
void rl__dry_apply(rl_sampler *s, float *logits);
/* Tests: replace the breakers by token sequences (seqs[i] of lens[i] >= 1 tokens). */
rl_status rl__sampler_set_dry_breakers(rl_sampler *s, const rl_token *const *seqs,
                                       const int32_t *lens, int32_t n);

#endif /* RL_SAMPLER_H */
