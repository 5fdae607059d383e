/*
 * types.c - the table of tensor types: names, block geometry, activation type of the
 * dot product, and row kernels. Geometry is that of ggml/GGUF (ggml.c type_traits).
 */
#include "quant.h"

#include <strings.h>

/* Kernels not yet linked in resolve to NULL and report RL_ERR_UNSUPPORTED. */
#define RL__WEAK_KERNELS(E, s)                                                             \
    __attribute__((weak)) void rl__dequant_##s(const void *src, float *dst, int64_t n);    \
    __attribute__((weak)) void rl__quant_##s(const float *src, void *dst, int64_t n,       \
                                             const float *imatrix);
RL_QUANT_TYPES(RL__WEAK_KERNELS)
#undef RL__WEAK_KERNELS

#define T(E, s, bs, bb, q, imx, vd)                                                        \
    [RL_TYPE_##E] = {#E, bs, bb, q, imx, RL_TYPE_##vd, rl__dequant_##s, rl__quant_##s},
#define TI(E, bs, bb) [RL_TYPE_##E] = {#E, bs, bb, false, false, RL_TYPE_##E, NULL, NULL},

static const rl__type_traits g_traits[RL_TYPE_COUNT] = {
    T(F32, f32, 1, 4, false, false, F32)
    T(F16, f16, 1, 2, false, false, F16)
    T(BF16, bf16, 1, 2, false, false, BF16)
    T(Q4_0, q4_0, 32, 18, true, false, Q8_0)
    T(Q4_1, q4_1, 32, 20, true, false, Q8_1)
    T(Q5_0, q5_0, 32, 22, true, false, Q8_0)
    T(Q5_1, q5_1, 32, 24, true, false, Q8_1)
    T(Q8_0, q8_0, 32, 34, true, false, Q8_0)
    T(Q8_1, q8_1, 32, 36, true, false, Q8_1)
    T(Q2_K, q2_K, 256, 84, true, false, Q8_K)
    T(Q3_K, q3_K, 256, 110, true, false, Q8_K)
    T(Q4_K, q4_K, 256, 144, true, false, Q8_K)
    T(Q5_K, q5_K, 256, 176, true, false, Q8_K)
    T(Q6_K, q6_K, 256, 210, true, false, Q8_K)
    T(Q8_K, q8_K, 256, 292, true, false, Q8_K)
    T(IQ2_XXS, iq2_xxs, 256, 66, true, true, Q8_K)
    T(IQ2_XS, iq2_xs, 256, 74, true, true, Q8_K)
    T(IQ3_XXS, iq3_xxs, 256, 98, true, true, Q8_K)
    T(IQ1_S, iq1_s, 256, 50, true, true, Q8_K)
    T(IQ4_NL, iq4_nl, 32, 18, true, false, Q8_0)
    T(IQ3_S, iq3_s, 256, 110, true, false, Q8_K)
    T(IQ2_S, iq2_s, 256, 82, true, true, Q8_K)
    T(IQ4_XS, iq4_xs, 256, 136, true, false, Q8_K)
    TI(I8, 1, 1)
    TI(I16, 1, 2)
    TI(I32, 1, 4)
    TI(I64, 1, 8)
    TI(F64, 1, 8)
    T(IQ1_M, iq1_m, 256, 56, true, true, Q8_K)
    T(TQ1_0, tq1_0, 256, 54, true, false, Q8_K)
    T(TQ2_0, tq2_0, 256, 66, true, false, Q8_K)
    T(MXFP4, mxfp4, 32, 17, true, false, Q8_0)
    T(NVFP4, nvfp4, 64, 36, true, false, Q8_0)
    T(Q1_0, q1_0, 128, 18, true, false, Q8_0)
    T(Q2_0, q2_0, 64, 18, true, false, Q8_0)
};
#undef T
#undef TI

const rl__type_traits *rl__type_traits_get(rl_type t) {
    if ((int)t < 0 || (int)t >= RL_TYPE_COUNT || !g_traits[t].name) return NULL;
    return &g_traits[t];
}

RL_API bool rl_type_valid(int t) { return rl__type_traits_get((rl_type)t) != NULL; }

RL_API const char *rl_type_name(rl_type t) {
    const rl__type_traits *tr = rl__type_traits_get(t);
    return tr ? tr->name : "?";
}

RL_API rl_status rl_type_from_name(const char *name, rl_type *out) {
    if (!name || !out) return RL_ERR_INVALID_ARG;
    for (int t = 0; t < RL_TYPE_COUNT; t++) {
        if (g_traits[t].name && strcasecmp(g_traits[t].name, name) == 0) {
            *out = (rl_type)t;
            return RL_OK;
        }
    }
    return RL_ERR_NOT_FOUND;
}

RL_API int64_t rl_type_block_size(rl_type t) {
    const rl__type_traits *tr = rl__type_traits_get(t);
    return tr ? tr->block_size : 0;
}

RL_API size_t rl_type_block_bytes(rl_type t) {
    const rl__type_traits *tr = rl__type_traits_get(t);
    return tr ? tr->block_bytes : 0;
}

RL_API bool rl_type_is_quantized(rl_type t) {
    const rl__type_traits *tr = rl__type_traits_get(t);
    return tr && tr->quantized;
}

RL_API rl_status rl_type_row_bytes(rl_type t, int64_t n, size_t *out) {
    const rl__type_traits *tr = rl__type_traits_get(t);
    if (!tr || !out || n < 0 || n % tr->block_size != 0) return RL_ERR_INVALID_ARG;
    if (!rl__mul_size((size_t)(n / tr->block_size), tr->block_bytes, out)) return RL_ERR_RANGE;
    return RL_OK;
}
