/*
 * quant_lowbit.c - Q1_0 and Q2_0, ggml's plain 1- and 2-bit block formats.
 *
 *   Q1_0: blocks of 128, fp16 d = mean |x|; one sign bit per element (bit j%8 of byte j/8,
 *         set for x >= 0): x = bit ? d : -d.
 *   Q2_0: blocks of 64, fp16 d = max |x|; a 2-bit code q per element (bits 2(j%4) of byte
 *         j/4) with q = clamp(round(x/d) + 1, 0, 3): x = (q - 1) * d, values {-d, 0, d, 2d}
 *         (the quantizer never produces 2d itself).
 */
#include "quant.h"

#include <math.h>

void rl__dequant_q1_0(const void *src, float *dst, int64_t n) {
    const block_q1_0 *b = src;
    for (int64_t i = 0; i < n / QK1_0; i++, dst += QK1_0) {
        const float d = rl__fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK1_0; j++) dst[j] = (b[i].qs[j / 8] >> (j % 8)) & 1 ? d : -d;
    }
}

void rl__quant_q1_0(const float *src, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix; /* ggml's Q1_0 quantizer ignores importance weights */
    block_q1_0 *b = dst;
    for (int64_t i = 0; i < n / QK1_0; i++) {
        const float *x = src + i * QK1_0;
        float sum = 0.0f;
        for (int j = 0; j < QK1_0; j++) sum += fabsf(x[j]);
        b[i].d = rl__fp32_to_fp16(sum / QK1_0);
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int j = 0; j < QK1_0; j++)
            if (x[j] >= 0.0f) b[i].qs[j / 8] |= (uint8_t)(1u << (j % 8));
    }
}

void rl__dequant_q2_0(const void *src, float *dst, int64_t n) {
    const block_q2_0 *b = src;
    for (int64_t i = 0; i < n / QK2_0; i++, dst += QK2_0) {
        const float d = rl__fp16_to_fp32(b[i].d);
        for (int j = 0; j < QK2_0; j++) dst[j] = (((b[i].qs[j / 4] >> (2 * (j % 4))) & 3) - 1) * d;
    }
}

void rl__quant_q2_0(const float *src, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix; /* ggml's Q2_0 quantizer ignores importance weights */
    block_q2_0 *b = dst;
    for (int64_t i = 0; i < n / QK2_0; i++) {
        const float *x = src + i * QK2_0;
        float amax = 0.0f;
        for (int j = 0; j < QK2_0; j++)
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]);
        const float id = amax > 0.0f ? 1.0f / amax : 0.0f;
        b[i].d = rl__fp32_to_fp16(amax);
        memset(b[i].qs, 0, sizeof b[i].qs);
        for (int j = 0; j < QK2_0; j++) {
            /* Clamping in float first keeps NaN/inf input defined; finite input is unchanged. */
            float r = roundf(x[j] * id) + 1.0f;
            int q = r >= 3.0f ? 3 : r >= 0.0f ? (int)r : 0;
            b[i].qs[j / 4] |= (uint8_t)(q << (2 * (j % 4)));
        }
    }
}
