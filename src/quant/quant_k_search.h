/*
 * quant_k_search.h - scale searches shared by the k-quant quantizers and by the
 * importance-weighted paths of the legacy 4/5-bit types.
 *
 * Each search fits a scale (and, for the asymmetric ones, a minimum) to a small group of
 * values so that the weighted squared (or absolute) error of the rounded levels is small.
 * They follow the arithmetic of ggml's k-quant helpers step for step: the quantized bytes
 * are a function of every float rounding on the way, and the tests demand equal bytes.
 * All of it is float (not double) arithmetic built with -ffp-contract=off.
 */
#ifndef RL_QUANT_K_SEARCH_H
#define RL_QUANT_K_SEARCH_H

#include "quant.h"

/* Round to the nearest integer, ties to even, for |x| < 2^22: adding 1.5 * 2^23 moves the
 * integer part into the low mantissa bits (the FPU rounds it), which are then read back.
 * This is the rounding the k-quant formats are defined with; roundf (ties away) differs. */
static inline int rl__nearest_int(float x) {
    float v = x + 12582912.0f;
    int32_t i;
    memcpy(&i, &v, sizeof(i));
    return (i & 0x007fffff) - 0x00400000;
}

/* fp32 -> fp16 as ggml's quantizers store scales: round to nearest even, overflow to inf,
 * and every NaN becomes the canonical quiet NaN 0x7e00 with the input's sign. */
static inline rl_fp16 rl__q_fp16(float f) {
    uint32_t u = rl__f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (rl_fp16)(((u >> 16) & 0x8000u) | 0x7e00u);
    return rl__fp32_to_fp16(f);
}

/* Below this a group max counts as zero: the whole group quantizes to level 0. */
#define RL_GROUP_MAX_EPS 1e-15f

/* Symmetric levels L[i] + nmax, L in [-nmax, nmax-1], for n values of x. rmse_type 0 is
 * plain rounding from the max; 1..4 weigh errors by x^2, 1, |x|, sqrt|x| (or qw when it
 * is not NULL) and try 18 nearby scales; a negative type returns early after one fit.
 * Returns the scale (can be negative: the max element maps to -nmax). */
float rl__make_qx_quants(int n, int nmax, const float *x, int8_t *L, int rmse_type,
                         const float *qw);

/* Symmetric 3-bit style levels with an iterative per-element refinement (weights x^2).
 * L[i] + nmax in [0, 2*nmax-1]. */
float rl__make_q3_quants(int n, int nmax, const float *x, int8_t *L, bool do_rmse);

/* Asymmetric levels L in [0, nmax] with x ~ scale * L - the_min. Tries nstep+1 scales
 * (nmax + rmin + rdelta*k) / (max - min) and refits scale and min by weighted least
 * squares; error is weighted absolute (use_mad) or squared. Laux is scratch of n bytes. */
float rl__make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                           float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                           bool use_mad);

/* As rl__make_qkx2_quants, with weights x^2 when weights is NULL and an all-equal group
 * tested as max <= min (the importance-matrix variant). */
float rl__make_qkx3_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                           float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                           bool use_mad);

/* Non-negative levels L in [0, nmax] for non-negative x (the sub-block scales of a
 * super-block), weighted by quant_weights: a scale sweep, then element-wise refinement. */
float rl__make_qp_quants(int n, int nmax, const float *x, uint8_t *L, const float *quant_weights);

/* Up to RL_SEARCH_LANES searches side by side, group j < n_groups being x[n*j .. n*j+n)
 * (weights likewise), n <= 32: the same levels (L[n*j ..]), scales and minimums, bit for
 * bit, as n_groups calls of the scalar search, on the CPU path in use (rl_cpu_isa_active:
 * AVX2 runs them in vector lanes, quant_k_search_avx2.c). The sub-blocks of one or two
 * super-blocks are such groups. rl__make_qkx_quants_lanes is rl__make_qkx3_quants when
 * v3, else rl__make_qkx2_quants (weights not NULL); rl__make_qx_quants_lanes is
 * rl__make_qx_quants with rmse_type 1. */
#define RL_SEARCH_LANES 16
void rl__make_qkx_quants_lanes(int n_groups, int n, int nmax, const float *x,
                               const float *weights, uint8_t *L, float *scales, float *the_mins,
                               float rmin, float rdelta, int nstep, bool use_mad, bool v3);
void rl__make_qx_quants_lanes(int n_groups, int n, int nmax, const float *x, const float *qw,
                              int8_t *L, float *scales);

/* The AVX2 bodies of the two (callers go through the dispatching functions above). */
void rl__make_qkx_quants_lanes_avx2(int n_groups, int n, int nmax, const float *x,
                                    const float *weights, uint8_t *L, float *scales,
                                    float *the_mins, float rmin, float rdelta, int nstep,
                                    bool use_mad, bool v3);
void rl__make_qx_quants_lanes_avx2(int n_groups, int n, int nmax, const float *x,
                                   const float *qw, int8_t *L, float *scales);

#endif /* RL_QUANT_K_SEARCH_H */
