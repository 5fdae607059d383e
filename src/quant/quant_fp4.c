/*
 * quant_fp4.c - the 4-bit float formats MXFP4 and NVFP4. Each element is an FP4 E2M1 code
 * (sign, 2 exponent bits, 1 mantissa bit: magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6), scaled
 * per block:
 *
 *   MXFP4 (OCP Microscaling spec v1.0): blocks of 32 with one E8M0 scale (a bare power of
 *          two 2^(e-127)); byte j holds element j (low nibble) and j+16 (high nibble).
 *   NVFP4: blocks of 64 = 4 sub-blocks of 16, each with an unsigned E4M3 scale (bias 7,
 *          3 mantissa bits, max 448); byte j of a sub-block's 8 holds elements j and j+8.
 *
 * As in ggml, the E2M1 table holds doubled values (integers -12..12) and the scales are
 * halved to match, so that dot products can run on integers. The quantizers are ggml's
 * reference ones: the scale comes from the block maximum (MXFP4: 2^(floor(log2 amax) - 2);
 * NVFP4: amax/6 rounded to E4M3) and each value takes the nearest table entry.
 */
#include "quant.h"

#include <math.h>

/* E2M1 values times two, by 4-bit code (bit 3 is the sign). Format constant from ggml's
 * ggml/src/ggml-common.h (kvalues_fp4; llama.cpp, MIT licence; see NOTICE). */
static const int8_t k_fp4_values[16] = {
    0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12,
};

/* 2^(e-127) / 2, exact, with the two smallest as subnormals (2^-128, 2^-127). */
static float e8m0_half(uint8_t e) {
    return rl__bits_f32(e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23);
}

/* Unsigned E4M3 (bias 7, subnormals man * 2^-9) divided by two. 0x7f (NaN in E4M3)
 * reads as 0, as in ggml; the top bit is not part of the code and is ignored. */
static float ue4m3_half(uint8_t u) {
    if (u == 0 || u == 0x7f) return 0.0f;
    const int e = (u >> 3) & 0xf, m = u & 7;
    const float v = e == 0 ? ldexpf((float)m, -9) : ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return v * 0.5f;
}

/* fp32 -> unsigned E4M3 as ggml_fp32_to_ue4m3 does it: non-positive and NaN give 0;
 * normal results round half up on the first dropped mantissa bit; anything from 2^8
 * upward (the top binade) saturates to 0x7e = 448; subnormals round man = x*2^9 + 0.5. */
static uint8_t fp32_to_ue4m3(float x) {
    if (!(x > 0.0f)) return 0;
    if (x > 448.0f) x = 448.0f;
    const uint32_t bits = rl__f32_bits(x);
    int e = (int)((bits >> 23) & 0xff) - 127 + 7;
    if (e <= 0) {
        int m = (int)(x * 512.0f + 0.5f);
        if (m > 7) m = 7;
        return m < 1 ? 0 : (uint8_t)m;
    }
    if (e >= 15) return 0x7e;
    int m = (int)((bits >> 20) & 7) + (int)((bits >> 19) & 1);
    if (m > 7) {
        m = 0;
        if (++e >= 15) return 0x7e;
    }
    return (uint8_t)((e << 3) | m);
}

/* Code whose (doubled) value times d is nearest to x; the lowest code wins ties, so +0
 * is preferred over -0. */
static uint8_t fp4_nearest(float x, float d) {
    int best = 0;
    float best_err = fabsf(k_fp4_values[0] * d - x);
    for (int i = 1; i < 16; i++) {
        float err = fabsf(k_fp4_values[i] * d - x);
        if (err < best_err) {
            best = i;
            best_err = err;
        }
    }
    return (uint8_t)best;
}

static float absmax(const float *x, int n) {
    float amax = 0.0f;
    for (int j = 0; j < n; j++)
        if (amax < fabsf(x[j])) amax = fabsf(x[j]);
    return amax;
}

void rl__dequant_mxfp4(const void *src, float *dst, int64_t n) {
    const block_mxfp4 *b = src;
    for (int64_t i = 0; i < n / QK_MXFP4; i++, dst += QK_MXFP4) {
        const float d = e8m0_half(b[i].e);
        for (int j = 0; j < QK_MXFP4 / 2; j++) {
            dst[j] = k_fp4_values[b[i].qs[j] & 0xf] * d;
            dst[j + QK_MXFP4 / 2] = k_fp4_values[b[i].qs[j] >> 4] * d;
        }
    }
}

void rl__quant_mxfp4(const float *src, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix; /* ggml's MXFP4 quantizer takes no importance weights */
    block_mxfp4 *b = dst;
    for (int64_t i = 0; i < n / QK_MXFP4; i++) {
        const float *x = src + i * QK_MXFP4;
        const float amax = absmax(x, QK_MXFP4);
        /* Shared exponent: the largest value lands in [4, 8) units of 2^(e-127)/2, i.e. near
         * the top of E2M1's range (6). ggml converts this float straight to uint8_t; going
         * through int keeps tiny blocks (negative exponent) defined and equal on x86. An
         * infinite maximum is clamped to the largest exponent a finite float can produce. */
        uint8_t e = 0;
        if (amax > 0.0f) {
            float t = floorf(log2f(amax)) - 2 + 127;
            e = (uint8_t)(int)(t < 252.0f ? t : 252.0f);
        }
        b[i].e = e;
        const float d = e8m0_half(e);
        for (int j = 0; j < QK_MXFP4 / 2; j++) {
            b[i].qs[j] = (uint8_t)(fp4_nearest(x[j], d) | fp4_nearest(x[j + QK_MXFP4 / 2], d) << 4);
        }
    }
}

void rl__dequant_nvfp4(const void *src, float *dst, int64_t n) {
    const block_nvfp4 *b = src;
    for (int64_t i = 0; i < n / QK_NVFP4; i++) {
        for (int s = 0; s < QK_NVFP4 / QK_NVFP4_SUB; s++, dst += QK_NVFP4_SUB) {
            const float d = ue4m3_half(b[i].d[s]);
            const uint8_t *qs = b[i].qs + s * (QK_NVFP4_SUB / 2);
            for (int j = 0; j < QK_NVFP4_SUB / 2; j++) {
                dst[j] = k_fp4_values[qs[j] & 0xf] * d;
                dst[j + QK_NVFP4_SUB / 2] = k_fp4_values[qs[j] >> 4] * d;
            }
        }
    }
}

void rl__quant_nvfp4(const float *src, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix; /* ggml's NVFP4 quantizer takes no importance weights */
    block_nvfp4 *b = dst;
    for (int64_t i = 0; i < n / QK_NVFP4; i++) {
        for (int s = 0; s < QK_NVFP4 / QK_NVFP4_SUB; s++) {
            const float *x = src + i * QK_NVFP4 + s * QK_NVFP4_SUB;
            /* amax/6 maps the block maximum onto E2M1's largest magnitude, 6. */
            const uint8_t u = fp32_to_ue4m3(absmax(x, QK_NVFP4_SUB) / 6.0f);
            b[i].d[s] = u;
            const float d = ue4m3_half(u);
            uint8_t *qs = b[i].qs + s * (QK_NVFP4_SUB / 2);
            for (int j = 0; j < QK_NVFP4_SUB / 2; j++) {
                qs[j] = (uint8_t)(fp4_nearest(x[j], d) |
                                  fp4_nearest(x[j + QK_NVFP4_SUB / 2], d) << 4);
            }
        }
    }
}
