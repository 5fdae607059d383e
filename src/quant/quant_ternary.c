/*
 * quant_ternary.c - TQ1_0 and TQ2_0: ternary weights {-1, 0, +1} times one fp16 scale per
 * super-block of 256 (BitNet b1.58 / TriLM models). The scale is the block's largest
 * magnitude; each value is round(x / d), half away from zero.
 *
 * TQ2_0 stores each trit t+1 in 2 bits: byte m of a 32-byte group g holds, at bits 2l, the
 * element 128g + 32l + m.
 *
 * TQ1_0 packs 5 trits per byte (3^5 = 243 <= 256) as a base-3 fixed-point fraction: the
 * trits t0..t4 (most significant first) form v = sum t_n 3^(4-n), stored as
 * ceil(v * 256 / 243), so that trit n is recovered as ((uint8_t)(byte * 3^n) * 3) >> 8
 * without a division. Layout of the 256 elements:
 *   elements   0..159: qs[0..31],  element 32n + m is trit n of qs[m]
 *   elements 160..239: qs[32..47], element 160 + 16n + m is trit n of qs[32 + m]
 *   elements 240..255: qh[0..3],   element 240 + 4n + j is trit n of qh[j] (4 trits, the
 *                                  fifth position is zero)
 */
#include "quant.h"

#include <math.h>

static const uint8_t k_pow3[6] = {1, 3, 9, 27, 81, 243};

/* Trit n (0 = most significant) of a packed TQ1_0 byte, as -1, 0 or +1. */
static inline int tq1_trit(uint8_t byte, int n) {
    uint8_t q = (uint8_t)(byte * k_pow3[n]);
    return (((uint16_t)q * 3) >> 8) - 1;
}

/* round(x * id) + 1 in {0, 1, 2}; the clamp only matters for NaN/inf input, where it
 * keeps the conversion defined (finite input always lands in range). */
static inline int ternary_code(float x, float id) {
    float r = roundf(x * id); /* half away from zero, as lroundf */
    if (!(r >= -1.0f)) r = r > 1.0f ? 1.0f : -1.0f;
    if (r > 1.0f) r = 1.0f;
    return (int)r + 1;
}

static float block_absmax(const float *x) {
    float amax = 0.0f;
    for (int j = 0; j < QK_K; j++) {
        float a = fabsf(x[j]);
        amax = amax > a ? amax : a; /* a NaN input becomes the max, as in ggml */
    }
    return amax;
}

/* Pack trits of x[0], x[stride], ... (count of them, the rest zero) into one byte. */
static uint8_t tq1_pack(const float *x, int stride, int count, float id) {
    unsigned v = 0;
    for (int n = 0; n < 5; n++) v = v * 3 + (n < count ? (unsigned)ternary_code(x[n * stride], id) : 0);
    return (uint8_t)((v * 256 + 242) / 243);
}

void rl__dequant_tq1_0(const void *src, float *dst, int64_t n) {
    const block_tq1_0 *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = rl__fp16_to_fp32(b[i].d);
        for (int t = 0; t < 5; t++)
            for (int m = 0; m < 32; m++) *dst++ = (float)tq1_trit(b[i].qs[m], t) * d;
        for (int t = 0; t < 5; t++)
            for (int m = 0; m < 16; m++) *dst++ = (float)tq1_trit(b[i].qs[32 + m], t) * d;
        for (int t = 0; t < 4; t++)
            for (int j = 0; j < 4; j++) *dst++ = (float)tq1_trit(b[i].qh[j], t) * d;
    }
}

void rl__quant_tq1_0(const float *src, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix; /* ggml's TQ1_0 quantizer takes no importance weights */
    block_tq1_0 *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        const float d = block_absmax(x);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = rl__fp32_to_fp16(d);
        for (int m = 0; m < 32; m++) b[i].qs[m] = tq1_pack(x + m, 32, 5, id);
        for (int m = 0; m < 16; m++) b[i].qs[32 + m] = tq1_pack(x + 160 + m, 16, 5, id);
        for (int j = 0; j < 4; j++) b[i].qh[j] = tq1_pack(x + 240 + j, 4, 4, id);
    }
}

void rl__dequant_tq2_0(const void *src, float *dst, int64_t n) {
    const block_tq2_0 *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = rl__fp16_to_fp32(b[i].d);
        for (int g = 0; g < 2; g++)
            for (int l = 0; l < 4; l++)
                for (int m = 0; m < 32; m++)
                    *dst++ = (float)(((b[i].qs[32 * g + m] >> (2 * l)) & 3) - 1) * d;
    }
}

void rl__quant_tq2_0(const float *src, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix; /* ggml's TQ2_0 quantizer takes no importance weights */
    block_tq2_0 *b = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        const float d = block_absmax(x);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].d = rl__fp32_to_fp16(d);
        for (int g = 0; g < 2; g++) {
            for (int m = 0; m < 32; m++) {
                unsigned q = 0;
                for (int l = 0; l < 4; l++) q |= (unsigned)ternary_code(x[128 * g + 32 * l + m], id) << (2 * l);
                b[i].qs[32 * g + m] = (uint8_t)q;
            }
        }
    }
}
