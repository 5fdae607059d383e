/*
 * quant_float.c - row kernels of the plain float types F32, F16 (IEEE binary16) and
 * BF16 (bfloat16). The conversions are those ggml applies when it writes and reads
 * tensors: round to nearest even both ways; F16 NaNs become the canonical quiet NaN,
 * BF16 NaNs keep their payload with the quiet bit forced. An importance matrix has
 * nothing to weigh here and is ignored.
 */
#include "quant_k_search.h"

void rl__dequant_f32(const void *src, float *dst, int64_t n) {
    memmove(dst, src, (size_t)n * sizeof(float));
}

void rl__quant_f32(const float *src, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    memmove(dst, src, (size_t)n * sizeof(float));
}

/* binary16 -> binary32 is exact; a signaling NaN comes out quiet, as both ggml's
 * software conversion and the F16C instruction give it. */
void rl__dequant_f16(const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    for (int64_t i = 0; i < n; i++) {
        rl_fp16 h;
        memcpy(&h, s + 2 * i, 2);
        float f = rl__fp16_to_fp32(h);
        if ((h & 0x7c00u) == 0x7c00u && (h & 0x03ffu)) f = rl__bits_f32(rl__f32_bits(f) | 0x00400000u);
        dst[i] = f;
    }
}

void rl__quant_f16(const float *src, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    uint8_t *d = dst;
    for (int64_t i = 0; i < n; i++) {
        rl_fp16 h = rl__q_fp16(src[i]);
        memcpy(d + 2 * i, &h, 2);
    }
}

void rl__dequant_bf16(const void *src, float *dst, int64_t n) {
    const uint8_t *s = src;
    for (int64_t i = 0; i < n; i++) {
        rl_bf16 h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = rl__bf16_to_fp32(h);
    }
}

void rl__quant_bf16(const float *src, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    uint8_t *d = dst;
    for (int64_t i = 0; i < n; i++) {
        rl_bf16 h = rl__fp32_to_bf16(src[i]);
        memcpy(d + 2 * i, &h, 2);
    }
}
