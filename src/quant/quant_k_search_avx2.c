/*
 * quant_k_search_avx2.c - scale searches eight at a time, one per lane of an AVX register
 * (built with the AVX2 flags). Lane j runs the scalar search of quant_k_search.c on group
 * j: the same float operations in the same order (adds and multiplies stay separate under
 * -ffp-contract=off; division is correctly rounded in both), with every branch turned
 * into a per-lane select. So each lane's levels, scale and minimum are the scalar ones,
 * bit for bit, and the searches of a super-block's sub-blocks run side by side instead of
 * one after another. (Sixteen-lane GCC vectors, two registers each, spill on AVX2.)
 */
#include "quant_k_search.h"

#include <immintrin.h>

typedef float f8 __attribute__((vector_size(32)));
typedef int32_t i8 __attribute__((vector_size(32)));

static inline f8 splat(float v) { return (f8){0} + v; }
static inline i8 splati(int32_t v) { return (i8){0} + v; }
/* m ? a : b per lane, m a comparison result (all ones or all zeros) */
static inline f8 sel(i8 m, f8 a, f8 b) { return (f8)((m & (i8)a) | (~m & (i8)b)); }
static inline f8 vabs(f8 v) { return (f8)((i8)v & splati(0x7fffffff)); }
static inline f8 to_f(i8 v) { return __builtin_convertvector(v, f8); }

/* clampi(rl__nearest_int(v), lo, hi) per lane (the same bit trick, then integer min/max),
 * as a float: the level the searches weigh. */
static inline f8 level(f8 v, int32_t lo, int32_t hi) {
    f8 t = v + splat(12582912.0f);
    i8 l = ((i8)t & splati(0x007fffff)) - splati(0x00400000);
    __m256i c =
        _mm256_min_epi32(_mm256_max_epi32((__m256i)l, (__m256i)splati(lo)), (__m256i)splati(hi));
    return to_f((i8)c);
}

/* Group j's n values (stride n) into lane j of out[0..n) for j < n_groups <= 8; the
 * lanes above hold zeros (a flat group: searched, then ignored). 1 <= n <= 32. */
static void transpose_in(const float *x, int n, int n_groups, f8 *out) {
    if (n < 1 || n > 32) __builtin_unreachable();
    for (int i = 0; i < n; i++) {
        out[i] = splat(0);
        for (int j = 0; j < n_groups; j++) out[i][j] = x[n * j + i];
    }
}

/* The searches keep, per lane, the inverse scale and minimum that gave the best levels
 * so far, not the levels: they are recomputed from those two once at the end, by the same
 * operations, which gives the same levels. */
static void qkx_x8(int n_groups, int n, int nmax, const float *x, const float *weights, uint8_t *L,
                   float *scales, float *the_mins, float rmin, float rdelta, int nstep,
                   bool use_mad, bool v3) {
    f8 xt[32], wt[32], lf[32];
    transpose_in(x, n, n_groups, xt);
    transpose_in(weights, n, n_groups, wt);

    f8 min = xt[0], max = xt[0], sum_w = wt[0], sum_x = sum_w * xt[0];
    for (int i = 1; i < n; i++) {
        min = sel(xt[i] < min, xt[i], min);
        max = sel(xt[i] > max, xt[i], max);
        sum_w += wt[i];
        sum_x += wt[i] * xt[i];
    }
    min = sel(min > splat(0), splat(0), min);
    const i8 flat = v3 ? max <= min : max == min; /* the scalar search's early return */

    f8 iscale = splat((float)nmax) / (max - min);
    f8 scale = splat(1) / iscale;
    f8 best_error = splat(0), best_iscale = iscale, best_lmin = min;
    for (int i = 0; i < n; i++) {
        f8 diff = scale * level(iscale * (xt[i] - min), 0, nmax) + min - xt[i];
        diff = use_mad ? vabs(diff) : diff * diff;
        best_error += wt[i] * diff;
    }
    for (int is = 0; nstep >= 1 && is <= nstep; is++) {
        iscale = splat(rmin + rdelta * is + nmax) / (max - min);
        f8 sum_l = splat(0), sum_l2 = splat(0), sum_xl = splat(0);
        for (int i = 0; i < n; i++) {
            lf[i] = level(iscale * (xt[i] - min), 0, nmax);
            f8 wl = wt[i] * lf[i];
            sum_l += wl;
            sum_l2 += wl * lf[i];
            sum_xl += wl * xt[i];
        }
        f8 D = sum_w * sum_l2 - sum_l * sum_l;
        f8 this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        f8 this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        i8 pos = this_min > splat(0);
        this_min = sel(pos, splat(0), this_min);
        this_scale = sel(pos, sum_xl / sum_l2, this_scale);
        f8 cur_error = splat(0);
        for (int i = 0; i < n; i++) {
            f8 diff = this_scale * lf[i] + this_min - xt[i];
            diff = use_mad ? vabs(diff) : diff * diff;
            cur_error += wt[i] * diff;
        }
        i8 better = (D > splat(0)) & (cur_error < best_error) & ~flat;
        best_iscale = sel(better, iscale, best_iscale);
        best_lmin = sel(better, min, best_lmin);
        best_error = sel(better, cur_error, best_error);
        scale = sel(better, this_scale, scale);
        min = sel(better, this_min, min);
    }
    for (int i = 0; i < n; i++) lf[i] = level(best_iscale * (xt[i] - best_lmin), 0, nmax);
    scale = sel(flat, splat(0), scale);
    f8 neg_min = -min;
    for (int j = 0; j < n_groups; j++) {
        scales[j] = scale[j];
        the_mins[j] = neg_min[j];
        for (int i = 0; i < n; i++) L[n * j + i] = flat[j] ? 0 : (uint8_t)lf[i][j];
    }
}

static void qx_x8(int n_groups, int n, int nmax, const float *x, const float *qw, int8_t *L,
                  float *scales) {
    f8 xt[32], wt[32], wx[32];
    transpose_in(x, n, n_groups, xt);
    if (qw) {
        transpose_in(qw, n, n_groups, wt);
    } else {
        for (int i = 0; i < n; i++) wt[i] = xt[i] * xt[i];
    }
    for (int i = 0; i < n; i++) wx[i] = wt[i] * xt[i]; /* the scalar w * x[i] * l */

    f8 max = splat(0), amax = splat(0);
    for (int i = 0; i < n; i++) {
        f8 ax = vabs(xt[i]);
        i8 gt = ax > amax;
        amax = sel(gt, ax, amax);
        max = sel(gt, xt[i], max);
    }
    const i8 zero = amax < splat(RL_GROUP_MAX_EPS);

    f8 iscale = splat((float)-nmax) / max;
    f8 sumlx = splat(0), suml2 = splat(0);
    for (int i = 0; i < n; i++) {
        f8 l = level(iscale * xt[i], -nmax, nmax - 1);
        sumlx += wx[i] * l;
        suml2 += wt[i] * l * l;
    }
    f8 scale = sel(suml2 != splat(0), sumlx / suml2, splat(0));
    f8 best = scale * sumlx, best_iscale = iscale;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = splat(-(nmax + 0.1f * is)) / max;
        sumlx = suml2 = splat(0);
        for (int i = 0; i < n; i++) {
            f8 l = level(iscale * xt[i], -nmax, nmax - 1);
            sumlx += wx[i] * l;
            suml2 += wt[i] * l * l;
        }
        i8 better = (suml2 > splat(0)) & (sumlx * sumlx > best * suml2);
        f8 new_scale = sumlx / suml2;
        best_iscale = sel(better, iscale, best_iscale);
        scale = sel(better, new_scale, scale);
        best = sel(better, new_scale * sumlx, best);
    }
    scale = sel(zero, splat(0), scale);
    for (int i = 0; i < n; i++) wx[i] = level(best_iscale * xt[i], -nmax, nmax - 1);
    for (int j = 0; j < n_groups; j++) {
        scales[j] = scale[j];
        for (int i = 0; i < n; i++) L[n * j + i] = zero[j] ? 0 : (int8_t)(wx[i][j] + nmax);
    }
}

void rl__make_qkx_quants_lanes_avx2(int n_groups, int n, int nmax, const float *x,
                                    const float *weights, uint8_t *L, float *scales,
                                    float *the_mins, float rmin, float rdelta, int nstep,
                                    bool use_mad, bool v3) {
    for (int j = 0; j < n_groups; j += 8)
        qkx_x8(RL_MIN(8, n_groups - j), n, nmax, x + n * j, weights + n * j, L + n * j, scales + j,
               the_mins + j, rmin, rdelta, nstep, use_mad, v3);
}

void rl__make_qx_quants_lanes_avx2(int n_groups, int n, int nmax, const float *x, const float *qw,
                                   int8_t *L, float *scales) {
    for (int j = 0; j < n_groups; j += 8)
        qx_x8(RL_MIN(8, n_groups - j), n, nmax, x + n * j, qw ? qw + n * j : NULL, L + n * j,
              scales + j);
}
