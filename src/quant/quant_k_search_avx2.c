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

typedef float f8 __attribute__((vector_size(32)));
typedef int32_t i8 __attribute__((vector_size(32)));

static inline f8 splat(float v) { return (f8){0} + v; }
static inline i8 splati(int32_t v) { return (i8){0} + v; }
/* m ? a : b per lane, m a comparison result (all ones or all zeros) */
static inline f8 sel(i8 m, f8 a, f8 b) { return (f8)((m & (i8)a) | (~m & (i8)b)); }
static inline i8 seli(i8 m, i8 a, i8 b) { return (m & a) | (~m & b); }
static inline f8 vabs(f8 v) { return (f8)((i8)v & splati(0x7fffffff)); }
static inline f8 to_f(i8 v) { return __builtin_convertvector(v, f8); }

/* rl__nearest_int per lane. */
static inline i8 nearest(f8 v) {
    f8 t = v + splat(12582912.0f);
    return ((i8)t & splati(0x007fffff)) - splati(0x00400000);
}

static inline i8 clamp(i8 v, int32_t lo, int32_t hi) {
    return seli(v < splati(lo), splati(lo), seli(v > splati(hi), splati(hi), v));
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

static void qkx_x8(int n_groups, int n, int nmax, const float *x, const float *weights,
                   uint8_t *L, float *scales, float *the_mins, float rmin, float rdelta,
                   int nstep, bool use_mad, bool v3) {
    f8 xt[32], wt[32];
    i8 best_l[32];
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
    f8 best_error = splat(0);
    for (int i = 0; i < n; i++) {
        best_l[i] = clamp(nearest(iscale * (xt[i] - min)), 0, nmax);
        f8 diff = scale * to_f(best_l[i]) + min - xt[i];
        diff = use_mad ? vabs(diff) : diff * diff;
        best_error += wt[i] * diff;
    }
    for (int is = 0; nstep >= 1 && is <= nstep; is++) {
        i8 l_aux[32];
        iscale = splat(rmin + rdelta * is + nmax) / (max - min);
        f8 sum_l = splat(0), sum_l2 = splat(0), sum_xl = splat(0);
        for (int i = 0; i < n; i++) {
            l_aux[i] = clamp(nearest(iscale * (xt[i] - min)), 0, nmax);
            f8 wl = wt[i] * to_f(l_aux[i]);
            sum_l += wl;
            sum_l2 += wl * to_f(l_aux[i]);
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
            f8 diff = this_scale * to_f(l_aux[i]) + this_min - xt[i];
            diff = use_mad ? vabs(diff) : diff * diff;
            cur_error += wt[i] * diff;
        }
        i8 better = (D > splat(0)) & (cur_error < best_error) & ~flat;
        for (int i = 0; i < n; i++) best_l[i] = seli(better, l_aux[i], best_l[i]);
        best_error = sel(better, cur_error, best_error);
        scale = sel(better, this_scale, scale);
        min = sel(better, this_min, min);
    }
    scale = sel(flat, splat(0), scale);
    f8 neg_min = -min;
    for (int j = 0; j < n_groups; j++) {
        scales[j] = scale[j];
        the_mins[j] = neg_min[j];
        for (int i = 0; i < n; i++) L[n * j + i] = flat[j] ? 0 : (uint8_t)best_l[i][j];
    }
}

static void qx_x8(int n_groups, int n, int nmax, const float *x, const float *qw, int8_t *L,
                  float *scales) {
    f8 xt[32], wt[32];
    i8 best_l[32];
    transpose_in(x, n, n_groups, xt);
    if (qw) transpose_in(qw, n, n_groups, wt);
    else
        for (int i = 0; i < n; i++) wt[i] = xt[i] * xt[i];

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
        i8 l = clamp(nearest(iscale * xt[i]), -nmax, nmax - 1);
        best_l[i] = l + splati(nmax);
        sumlx += wt[i] * xt[i] * to_f(l);
        suml2 += wt[i] * to_f(l) * to_f(l);
    }
    f8 scale = sel(suml2 != splat(0), sumlx / suml2, splat(0));
    f8 best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        i8 l_aux[32];
        iscale = splat(-(nmax + 0.1f * is)) / max;
        sumlx = suml2 = splat(0);
        for (int i = 0; i < n; i++) {
            i8 l = clamp(nearest(iscale * xt[i]), -nmax, nmax - 1);
            l_aux[i] = l + splati(nmax);
            sumlx += wt[i] * xt[i] * to_f(l);
            suml2 += wt[i] * to_f(l) * to_f(l);
        }
        i8 better = (suml2 > splat(0)) & (sumlx * sumlx > best * suml2);
        for (int i = 0; i < n; i++) best_l[i] = seli(better, l_aux[i], best_l[i]);
        f8 new_scale = sumlx / suml2;
        scale = sel(better, new_scale, scale);
        best = sel(better, new_scale * sumlx, best);
    }
    scale = sel(zero, splat(0), scale);
    for (int j = 0; j < n_groups; j++) {
        scales[j] = scale[j];
        for (int i = 0; i < n; i++) L[n * j + i] = zero[j] ? 0 : (int8_t)best_l[i][j];
    }
}

void rl__make_qkx_quants_lanes_avx2(int n_groups, int n, int nmax, const float *x,
                                    const float *weights, uint8_t *L, float *scales,
                                    float *the_mins, float rmin, float rdelta, int nstep,
                                    bool use_mad, bool v3) {
    for (int j = 0; j < n_groups; j += 8)
        qkx_x8(RL_MIN(8, n_groups - j), n, nmax, x + n * j, weights + n * j, L + n * j,
               scales + j, the_mins + j, rmin, rdelta, nstep, use_mad, v3);
}

void rl__make_qx_quants_lanes_avx2(int n_groups, int n, int nmax, const float *x,
                                   const float *qw, int8_t *L, float *scales) {
    for (int j = 0; j < n_groups; j += 8)
        qx_x8(RL_MIN(8, n_groups - j), n, nmax, x + n * j, qw ? qw + n * j : NULL, L + n * j,
              scales + j);
}
