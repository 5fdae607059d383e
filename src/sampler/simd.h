/*
 * simd.h - 4-lane float vectors (GCC vector extensions) for the sampler's whole-vector
 * passes: SIMD on the baseline x86-64 target, the same IEEE operations as scalar code.
 */
#ifndef RL_SAMPLER_SIMD_H
#define RL_SAMPLER_SIMD_H

#include "sampler/sampler.h"

typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));

static inline v4f ld(const float *p) {
    v4f v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void st(float *p, v4f v) { memcpy(p, &v, sizeof v); }
static inline v4f splat(float x) { return (v4f){x, x, x, x}; }
static inline v4i splati(int32_t x) { return (v4i){x, x, x, x}; }
/* m ? a : b, m a comparison result (all ones or zeros per lane) */
static inline v4f sel(v4i m, v4f a, v4f b) { return (v4f)((m & (v4i)a) | (~m & (v4i)b)); }
static inline v4f vmax4(v4f a, v4f b) { return sel(a > b, a, b); }
static inline float hmax4(v4f v) {
    float r = v[0];
    for (int j = 1; j < 4; j++) r = v[j] > r ? v[j] : r;
    return r;
}

/* rl__det_expf on 4 lanes: the same operations, in the same order. */
static inline v4f vexp(v4f x) {
    const v4f big = splat(12582912.0f), lo = splat(-87.33f);
    v4i small = x < lo;
    v4f xc = sel(small, lo, x);
    v4f t = xc * splat(1.44269504089f) + big;
    v4f n = t - big;
    v4f r = xc - n * splat(0.693145751953125f);
    r = r - n * splat(1.42860682030941723212e-6f);
    v4f p = splat(1.0f / 5040.0f);
    p = p * r + splat(1.0f / 720.0f);
    p = p * r + splat(1.0f / 120.0f);
    p = p * r + splat(1.0f / 24.0f);
    p = p * r + splat(1.0f / 6.0f);
    p = p * r + splat(0.5f);
    p = p * r + splat(1.0f);
    p = p * r + splat(1.0f);
    v4i ni = (v4i)t - (v4i)big;
    v4f scale = (v4f)((ni + splati(127)) << 23);
    v4f y = p * scale;
    return (v4f)((v4i)y & ~small);
}

/* Maximum of x[0..32). */
static inline float blk_max32(const float *x) {
    v4f a = vmax4(ld(x), ld(x + 4)), b = vmax4(ld(x + 8), ld(x + 12));
    v4f c = vmax4(ld(x + 16), ld(x + 20)), d = vmax4(ld(x + 24), ld(x + 28));
    return hmax4(vmax4(vmax4(a, b), vmax4(c, d)));
}

#endif /* RL_SAMPLER_SIMD_H */
