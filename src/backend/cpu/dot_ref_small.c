/*
 * dot_ref_small.c - plain-C reference dot products of IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, MXFP4,
 * NVFP4, Q1_0 and Q2_0 weights with their activation type (Q8_0 or Q8_K).
 *
 * Each sums integer products of codes per activation block and only then applies the
 * float scales, in the same order as ggml's generic vec_dot kernels, so results agree
 * with ggml to float rounding. Weight values are those of quant_*.c (tables repeated here
 * as the format constants they are; see NOTICE).
 */
#include "cpu.h"

static const int8_t k_iq4_values[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};
static const int8_t k_fp4_values[16] = {
    0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12,
};

/* sum over 16 bytes of y_lo[j]*kv[lo nibble] + y_hi[j]*kv[hi nibble] */
static int nibble_dot16(const uint8_t *qs, const int8_t *ylo, const int8_t *yhi,
                        const int8_t *kv) {
    int lo = 0, hi = 0;
    for (int j = 0; j < 16; j++) {
        lo += ylo[j] * kv[qs[j] & 0xf];
        hi += yhi[j] * kv[qs[j] >> 4];
    }
    return lo + hi;
}

float rl__vec_dot_iq4_nl_ref(int64_t n, const void *vx, const void *vy) {
    const block_iq4_nl *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK4_NL; i++) {
        const float d = rl__fp16_to_fp32(y[i].d) * rl__fp16_to_fp32(x[i].d);
        sum += d * nibble_dot16(x[i].qs, y[i].qs, y[i].qs + 16, k_iq4_values);
    }
    return sum;
}

float rl__vec_dot_iq4_xs_ref(int64_t n, const void *vx, const void *vy) {
    const block_iq4_xs *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = rl__fp16_to_fp32(x[i].d) * y[i].d;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const int ls = ((x[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) |
                           (((x[i].scales_h >> 2 * ib) & 3) << 4);
            const int8_t *q8 = y[i].qs + 32 * ib;
            sum += d * (ls - 32) * nibble_dot16(x[i].qs + 16 * ib, q8, q8 + 16, k_iq4_values);
        }
    }
    return sum;
}

/* Trit n (0 = most significant) of a TQ1_0 byte as -1, 0, +1 (see quant_ternary.c). */
static inline int tq1_trit(uint8_t byte, uint8_t pow3n) {
    uint8_t q = (uint8_t)(byte * pow3n);
    return (((uint16_t)q * 3) >> 8) - 1;
}

float rl__vec_dot_tq1_0_ref(int64_t n, const void *vx, const void *vy) {
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const block_tq1_0 *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const int8_t *q8 = y[i].qs;
        int s = 0;
        for (int t = 0; t < 5; t++)
            for (int m = 0; m < 32; m++) s += tq1_trit(x[i].qs[m], pow3[t]) * *q8++;
        for (int t = 0; t < 5; t++)
            for (int m = 0; m < 16; m++) s += tq1_trit(x[i].qs[32 + m], pow3[t]) * *q8++;
        for (int t = 0; t < 4; t++)
            for (int j = 0; j < 4; j++) s += tq1_trit(x[i].qh[j], pow3[t]) * *q8++;
        sum += (float)s * (rl__fp16_to_fp32(x[i].d) * y[i].d);
    }
    return sum;
}

float rl__vec_dot_tq2_0_ref(int64_t n, const void *vx, const void *vy) {
    const block_tq2_0 *x = vx;
    const block_q8_K *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const int8_t *q8 = y[i].qs;
        int s = 0;
        for (int g = 0; g < 2; g++)
            for (int l = 0; l < 4; l++)
                for (int m = 0; m < 32; m++)
                    s += *q8++ * (((x[i].qs[32 * g + m] >> (2 * l)) & 3) - 1);
        sum += (float)s * (y[i].d * rl__fp16_to_fp32(x[i].d));
    }
    return sum;
}

/* E8M0 scale 2^(e-127), halved (the FP4 table is doubled); see quant_fp4.c. */
static float e8m0_half(uint8_t e) {
    return rl__bits_f32(e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23);
}

/* Unsigned E4M3 scale, halved; see quant_fp4.c. Every step is exact in float. */
static float ue4m3_half(uint8_t u) {
    if (u == 0 || u == 0x7f) return 0.0f;
    const int e = (u >> 3) & 0xf, m = u & 7;
    /* e == 0: m * 2^-9; else (8 + m) * 2^(e-10); both exact in float */
    const float v = e == 0 ? (float)m * 0x1p-9f : (float)(8 + m) * rl__bits_f32((uint32_t)(e + 117) << 23);
    return v * 0.5f;
}

float rl__vec_dot_mxfp4_ref(int64_t n, const void *vx, const void *vy) {
    const block_mxfp4 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_MXFP4; i++) {
        const float d = rl__fp16_to_fp32(y[i].d) * e8m0_half(x[i].e);
        sum += d * nibble_dot16(x[i].qs, y[i].qs, y[i].qs + 16, k_fp4_values);
    }
    return sum;
}

/* One NVFP4 block of 64 spans two Q8_0 blocks; each 16-element sub-block has its own
 * scale, so the products are summed per sub-block. */
float rl__vec_dot_nvfp4_ref(int64_t n, const void *vx, const void *vy) {
    const block_nvfp4 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK_NVFP4; i++) {
        for (int s = 0; s < 4; s++) {
            const block_q8_0 *yb = &y[2 * i + s / 2];
            const int8_t *q8 = yb->qs + (s % 2) * 16;
            const uint8_t *qs = x[i].qs + 8 * s;
            int lo = 0, hi = 0;
            for (int j = 0; j < 8; j++) {
                lo += q8[j] * k_fp4_values[qs[j] & 0xf];
                hi += q8[j + 8] * k_fp4_values[qs[j] >> 4];
            }
            sum += rl__fp16_to_fp32(yb->d) * ue4m3_half(x[i].d[s]) * (lo + hi);
        }
    }
    return sum;
}

/* One Q1_0 block of 128 spans four Q8_0 blocks: +y or -y by the sign bit. */
float rl__vec_dot_q1_0_ref(int64_t n, const void *vx, const void *vy) {
    const block_q1_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK1_0; i++) {
        float si = 0.0f;
        for (int k = 0; k < 4; k++) {
            const block_q8_0 *yb = &y[4 * i + k];
            int s = 0;
            for (int j = 0; j < 32; j++) {
                const int bit = (x[i].qs[4 * k + j / 8] >> (j % 8)) & 1;
                s += bit ? yb->qs[j] : -yb->qs[j];
            }
            si += rl__fp16_to_fp32(yb->d) * s;
        }
        sum += rl__fp16_to_fp32(x[i].d) * si;
    }
    return sum;
}

/* One Q2_0 block of 64 spans two Q8_0 blocks. */
float rl__vec_dot_q2_0_ref(int64_t n, const void *vx, const void *vy) {
    const block_q2_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / QK2_0; i++) {
        float si = 0.0f;
        for (int k = 0; k < 2; k++) {
            const block_q8_0 *yb = &y[2 * i + k];
            int s = 0;
            for (int j = 0; j < 32; j++) {
                s += (((x[i].qs[8 * k + j / 4] >> (2 * (j % 4))) & 3) - 1) * yb->qs[j];
            }
            si += rl__fp16_to_fp32(yb->d) * s;
        }
        sum += rl__fp16_to_fp32(x[i].d) * si;
    }
    return sum;
}
