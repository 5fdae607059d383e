/*
 * quant.h - per-type traits and the row kernels of every tensor type: dequantize
 * (to_float) and the reference quantizer (from_float). Kernel naming is uniform:
 *
 *   void rl__dequant_<t>(const void *src, float *dst, int64_t n);
 *   void rl__quant_<t>(const float *src, void *dst, int64_t n, const float *imatrix);
 *
 * n is the element count of one row (a multiple of the block size); imatrix is NULL or
 * n per-column importance weights (mean of squared activations). Quantizers whose
 * type needs an importance matrix are only called with one (rl_quantize enforces it).
 * All of these are plain C built with -ffp-contract=off: they are the references the
 * bit-exactness tests hold to.
 */
#ifndef RL_QUANT_H
#define RL_QUANT_H

#include "../util/util.h"
#include "blocks.h"

typedef void (*rl__to_float_fn)(const void *src, float *dst, int64_t n);
typedef void (*rl__from_float_fn)(const float *src, void *dst, int64_t n, const float *imatrix);

typedef struct rl__type_traits {
    const char *name;        /* "Q4_K" */
    int64_t block_size;      /* elements per block */
    size_t block_bytes;      /* bytes per block */
    bool quantized;          /* block-quantized (not F32/F16/BF16/ints) */
    bool needs_imatrix;      /* quantizing without an importance matrix is refused */
    rl_type vec_dot_type;    /* activation type of the dot product */
    rl__to_float_fn to_float;     /* NULL for the integer types */
    rl__from_float_fn from_float; /* NULL for the integer types */
} rl__type_traits;

/* Traits of t, or NULL when t is not a valid type. */
const rl__type_traits *rl__type_traits_get(rl_type t);

/* X(ENUM, suffix): every type with row kernels. */
#define RL_QUANT_TYPES(X)                                                                  \
    X(F32, f32) X(F16, f16) X(BF16, bf16) X(Q4_0, q4_0) X(Q4_1, q4_1) X(Q5_0, q5_0)       \
    X(Q5_1, q5_1) X(Q8_0, q8_0) X(Q8_1, q8_1) X(Q2_K, q2_K) X(Q3_K, q3_K) X(Q4_K, q4_K)   \
    X(Q5_K, q5_K) X(Q6_K, q6_K) X(Q8_K, q8_K) X(IQ2_XXS, iq2_xxs) X(IQ2_XS, iq2_xs)       \
    X(IQ3_XXS, iq3_xxs) X(IQ1_S, iq1_s) X(IQ4_NL, iq4_nl) X(IQ3_S, iq3_s)                 \
    X(IQ2_S, iq2_s) X(IQ4_XS, iq4_xs) X(IQ1_M, iq1_m) X(TQ1_0, tq1_0) X(TQ2_0, tq2_0)     \
    X(MXFP4, mxfp4) X(NVFP4, nvfp4) X(Q1_0, q1_0) X(Q2_0, q2_0)

#define RL__DECL_KERNELS(E, s)                                                             \
    void rl__dequant_##s(const void *src, float *dst, int64_t n);                          \
    void rl__quant_##s(const float *src, void *dst, int64_t n, const float *imatrix);
RL_QUANT_TYPES(RL__DECL_KERNELS)
#undef RL__DECL_KERNELS

#endif /* RL_QUANT_H */
