/*
 * quant_legacy.c - the original ggml block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1.
 * Blocks of 32 values with one fp16 scale d (and a minimum m for the _1 types):
 *   Q4_0 x = d*(q-8),  Q4_1 x = d*q + m,  Q5_0 x = d*(q-16),  Q5_1 x = d*q + m,
 *   Q8_0 x = d*q,      Q8_1 x = d*q (plus s = d*sum(q) for the dot product).
 * Without an importance matrix the quantizers are ggml's reference ones (round from the
 * block's absolute max, or from min/max). With one, Q4_0/Q5_0 fit a symmetric scale and
 * Q4_1/Q5_1 a scale and minimum by weighted least squares, weights imatrix[j] *
 * sqrt(sigma^2 + x_j^2) with sigma^2 the mean square of the row (ggml, PR #4861).
 */
#include "quant_k_search.h"

#include <float.h>
#include <math.h>

#define FP16(h) rl__fp16_to_fp32(h)

/* The 5th bits of 32 values, bit j for element j, stored little-endian. */
static inline uint32_t load_qh(const uint8_t qh[4]) {
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}
static inline void store_qh(uint8_t qh[4], uint32_t v) {
    for (int i = 0; i < 4; i++) qh[i] = (uint8_t)(v >> (8 * i));
}

/* Mean square of a whole row: the sigma^2 of the importance weights. */
static float row_sigma2(const float *x, int64_t n) {
    float s = 0;
    for (int64_t j = 0; j < n; j++) s += x[j] * x[j];
    return s / n;
}

static void imatrix_weights(const float *xb, const float *qw, float sigma2, float *w) {
    for (int j = 0; j < 32; j++) w[j] = qw[j] * sqrtf(sigma2 + xb[j] * xb[j]);
}

/* Element of largest magnitude, with its sign (the first one on ties). */
static float signed_absmax(const float *x, int n) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

/* ---- Q4_0 ------------------------------------------------------------------------ */

void rl__dequant_q4_0(const void *src, float *dst, int64_t n) {
    const block_q4_0 *b = src;
    for (int64_t i = 0; i < n / QK4_0; i++, dst += QK4_0) {
        const float d = FP16(b[i].d);
        for (int j = 0; j < 16; j++) {
            dst[j] = ((b[i].qs[j] & 0x0f) - 8) * d;
            dst[j + 16] = ((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void q4_0_ref(const float *x, block_q4_0 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK4_0) {
        /* The extreme value maps to -8, the one level without a positive mirror. */
        const float d = signed_absmax(x, QK4_0) / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = rl__q_fp16(d);
        for (int j = 0; j < 16; j++) {
            int q0 = RL_MIN(15, (int)(x[j] * id + 8.5f));
            int q1 = RL_MIN(15, (int)(x[j + 16] * id + 8.5f));
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

void rl__quant_q4_0(const float *src, void *dst, int64_t n, const float *imatrix) {
    block_q4_0 *y = dst;
    if (!imatrix) {
        q4_0_ref(src, y, n / QK4_0);
        return;
    }
    const float sigma2 = row_sigma2(src, n);
    float w[32];
    int8_t L[32];
    for (int64_t ib = 0; ib < n / QK4_0; ib++) {
        const float *xb = src + ib * QK4_0;
        imatrix_weights(xb, imatrix + ib * QK4_0, sigma2, w);
        y[ib].d = rl__q_fp16(rl__make_qx_quants(QK4_0, 8, xb, L, 1, w));
        for (int j = 0; j < 16; j++) y[ib].qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
    }
}

/* ---- Q4_1 ------------------------------------------------------------------------ */

void rl__dequant_q4_1(const void *src, float *dst, int64_t n) {
    const block_q4_1 *b = src;
    for (int64_t i = 0; i < n / QK4_1; i++, dst += QK4_1) {
        const float d = FP16(b[i].d), m = FP16(b[i].m);
        for (int j = 0; j < 16; j++) {
            dst[j] = (b[i].qs[j] & 0x0f) * d + m;
            dst[j + 16] = (b[i].qs[j] >> 4) * d + m;
        }
    }
}

static void q4_1_ref(const float *x, block_q4_1 *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += QK4_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK4_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = rl__q_fp16(d);
        y[i].m = rl__q_fp16(min);
        for (int j = 0; j < 16; j++) {
            int q0 = RL_MIN(15, (int)((x[j] - min) * id + 0.5f));
            int q1 = RL_MIN(15, (int)((x[j + 16] - min) * id + 0.5f));
            y[i].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

void rl__quant_q4_1(const float *src, void *dst, int64_t n, const float *imatrix) {
    block_q4_1 *y = dst;
    if (!imatrix) {
        q4_1_ref(src, y, n / QK4_1);
        return;
    }
    const float sigma2 = row_sigma2(src, n);
    float w[32], min;
    uint8_t L[32], Laux[32];
    for (int64_t ib = 0; ib < n / QK4_1; ib++) {
        const float *xb = src + ib * QK4_1;
        imatrix_weights(xb, imatrix + ib * QK4_1, sigma2, w);
        float d = rl__make_qkx3_quants(QK4_1, 15, xb, w, L, &min, Laux, -0.9f, 0.05f, 36, false);
        y[ib].d = rl__q_fp16(d);
        y[ib].m = rl__q_fp16(-min);
        for (int j = 0; j < 16; j++) y[ib].qs[j] = (uint8_t)(L[j] | L[j + 16] << 4);
    }
}

/* ---- Q5_0 ------------------------------------------------------------------------ */

void rl__dequant_q5_0(const void *src, float *dst, int64_t n) {
    const block_q5_0 *b = src;
    for (int64_t i = 0; i < n / QK5_0; i++, dst += QK5_0) {
        const float d = FP16(b[i].d);
        const uint32_t qh = load_qh(b[i].qh);
        for (int j = 0; j < 16; j++) {
            int q0 = (b[i].qs[j] & 0x0f) | (int)((qh >> j) & 1) << 4;
            int q1 = (b[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = (q0 - 16) * d;
            dst[j + 16] = (q1 - 16) * d;
        }
    }
}

/* Pack 32 five-bit levels: low nibbles into qs, the 5th bits into qh. */
static void pack5(const uint8_t *q, uint8_t qs[16], uint8_t qh_out[4]) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0x0f) | (q[j + 16] & 0x0f) << 4);
        qh |= (uint32_t)(q[j] >> 4 & 1) << j;
        qh |= (uint32_t)(q[j + 16] >> 4 & 1) << (j + 16);
    }
    store_qh(qh_out, qh);
}

static void q5_0_ref(const float *x, block_q5_0 *y, int64_t nb) {
    uint8_t q[32];
    for (int64_t i = 0; i < nb; i++, x += QK5_0) {
        const float d = signed_absmax(x, QK5_0) / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = rl__q_fp16(d);
        for (int j = 0; j < 32; j++) q[j] = (uint8_t)RL_MIN(31, (int)(x[j] * id + 16.5f));
        pack5(q, y[i].qs, y[i].qh);
    }
}

void rl__quant_q5_0(const float *src, void *dst, int64_t n, const float *imatrix) {
    block_q5_0 *y = dst;
    if (!imatrix) {
        q5_0_ref(src, y, n / QK5_0);
        return;
    }
    const float sigma2 = row_sigma2(src, n);
    float w[32];
    int8_t L[32];
    for (int64_t ib = 0; ib < n / QK5_0; ib++) {
        const float *xb = src + ib * QK5_0;
        imatrix_weights(xb, imatrix + ib * QK5_0, sigma2, w);
        y[ib].d = rl__q_fp16(rl__make_qx_quants(QK5_0, 16, xb, L, 1, w));
        pack5((const uint8_t *)L, y[ib].qs, y[ib].qh);
    }
}

/* ---- Q5_1 ------------------------------------------------------------------------ */

void rl__dequant_q5_1(const void *src, float *dst, int64_t n) {
    const block_q5_1 *b = src;
    for (int64_t i = 0; i < n / QK5_1; i++, dst += QK5_1) {
        const float d = FP16(b[i].d), m = FP16(b[i].m);
        const uint32_t qh = load_qh(b[i].qh);
        for (int j = 0; j < 16; j++) {
            int q0 = (b[i].qs[j] & 0x0f) | (int)((qh >> j) & 1) << 4;
            int q1 = (b[i].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            dst[j] = q0 * d + m;
            dst[j + 16] = q1 * d + m;
        }
    }
}

static void q5_1_ref(const float *x, block_q5_1 *y, int64_t nb) {
    uint8_t q[32];
    for (int64_t i = 0; i < nb; i++, x += QK5_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK5_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = rl__q_fp16(d);
        y[i].m = rl__q_fp16(min);
        for (int j = 0; j < 32; j++) q[j] = (uint8_t)(int)((x[j] - min) * id + 0.5f);
        pack5(q, y[i].qs, y[i].qh);
    }
}

void rl__quant_q5_1(const float *src, void *dst, int64_t n, const float *imatrix) {
    block_q5_1 *y = dst;
    if (!imatrix) {
        q5_1_ref(src, y, n / QK5_1);
        return;
    }
    const float sigma2 = row_sigma2(src, n);
    float w[32], min;
    uint8_t L[32], Laux[32];
    for (int64_t ib = 0; ib < n / QK5_1; ib++) {
        const float *xb = src + ib * QK5_1;
        imatrix_weights(xb, imatrix + ib * QK5_1, sigma2, w);
        float d = rl__make_qkx3_quants(QK5_1, 31, xb, w, L, &min, Laux, -0.9f, 0.05f, 36, false);
        y[ib].d = rl__q_fp16(d);
        y[ib].m = rl__q_fp16(-min);
        pack5(L, y[ib].qs, y[ib].qh);
    }
}

/* ---- Q8_0 / Q8_1 ------------------------------------------------------------------ */

void rl__dequant_q8_0(const void *src, float *dst, int64_t n) {
    const block_q8_0 *b = src;
    for (int64_t i = 0; i < n / QK8_0; i++, dst += QK8_0) {
        const float d = FP16(b[i].d);
        for (int j = 0; j < QK8_0; j++) dst[j] = b[i].qs[j] * d;
    }
}

/* Round x * 127/amax half away from zero (roundf): the Q8 activation rounding. */
static float q8_block(const float *x, int8_t *qs) {
    float amax = 0;
    for (int j = 0; j < 32; j++) amax = RL_MAX(amax, fabsf(x[j]));
    const float d = amax / 127;
    const float id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++) qs[j] = (int8_t)roundf(x[j] * id);
    return d;
}

void rl__quant_q8_0(const float *src, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) y[i].d = rl__q_fp16(q8_block(src + i * QK8_0, y[i].qs));
}

/* ggml has no to_float for Q8_1; this is the format's meaning, x = d*q (s is derived). */
void rl__dequant_q8_1(const void *src, float *dst, int64_t n) {
    const block_q8_1 *b = src;
    for (int64_t i = 0; i < n / QK8_1; i++, dst += QK8_1) {
        const float d = FP16(b[i].d);
        for (int j = 0; j < QK8_1; j++) dst[j] = b[i].qs[j] * d;
    }
}

void rl__quant_q8_1(const float *src, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        const float d = q8_block(src + i * QK8_1, y[i].qs);
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) sum += y[i].qs[j];
        y[i].d = rl__q_fp16(d);
        y[i].s = rl__q_fp16(sum * d);
    }
}
