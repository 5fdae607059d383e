/*
 * quant_iq4.c - IQ4_NL and IQ4_XS: 4-bit codes that index a fixed non-linear table of 16
 * values (denser near zero, like a normal distribution's quantiles) times a block scale.
 *
 *   IQ4_NL: blocks of 32, one fp16 scale:            x = d * kv[q]
 *   IQ4_XS: super-blocks of 256 = 8 sub-blocks of 32, one fp16 super-scale d and a 6-bit
 *           signed scale ls per sub-block (low 4 bits in scales_l, high 2 in scales_h):
 *                                                    x = d * (ls - 32) * kv[q]
 *
 * Within each 32 values, byte j holds element j in its low nibble and element j+16 in its
 * high nibble. The quantizer is the weighted scale search of ggml's quantize_iq4_nl /
 * quantize_iq4_xs (the path ggml_quantize_chunk takes): per sub-block, a least-squares
 * scale refined over 15 trial scales around -max/kv[0], with weights x^2 or, given an
 * importance matrix, imatrix * sqrt(2*mean(x^2) + x^2). Evaluation order follows ggml so
 * that the bytes are identical.
 */
#include "quant.h"

#include <math.h>

/* The 16 IQ4 values, ascending. Format constant from ggml/src/ggml-common.h
 * (kvalues_iq4nl; llama.cpp, MIT licence; see NOTICE). */
static const int8_t k_iq4_values[16] = {
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
};

/* Blocks whose largest magnitude is below this are stored as all-zero scale. */
#define IQ4_GROUP_EPS 1e-15f
/* Trial scales -NTRY..NTRY around the first guess. */
#define IQ4_NTRY 7

/* Index of the table value nearest to x (ties go to the upper of two neighbours only when
 * strictly closer, as ggml's best_index_int8 decides). Table is ascending. */
static int nearest_value_index(const int8_t *val, float x) {
    if (x <= val[0]) return 0;
    if (x >= val[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (x < val[mid]) hi = mid;
        else lo = mid;
    }
    return x - val[hi - 1] < val[hi] - x ? hi - 1 : hi;
}

/* Round to nearest, ties to even (the default rounding mode), for |x| < 2^22. */
static int round_even(float x) { return (int)lrintf(x); }

/* Best scale for one sub-block of 32: the least-squares d for the codes that d implies,
 * keeping the trial with the largest (sum w q x)^2 / (sum w q^2). Codes go to L. */
static float iq4_block_scale(const float *xb, const float *w, uint8_t *L) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++) {
        float ax = fabsf(xb[j]);
        if (ax > amax) {
            amax = ax;
            max = xb[j];
        }
    }
    if (amax < IQ4_GROUP_EPS) return 0.0f;

    float d = -max / k_iq4_values[0];
    float id = 1.0f / d;
    float sumqx = 0.0f, sumq2 = 0.0f;
    for (int j = 0; j < 32; j++) {
        int l = nearest_value_index(k_iq4_values, id * xb[j]);
        L[j] = (uint8_t)l;
        float q = k_iq4_values[l];
        sumqx += w[j] * q * xb[j];
        sumq2 += w[j] * q * q;
    }
    d = sumq2 > 0.0f ? sumqx / sumq2 : 0.0f;
    float best = d * sumqx;
    for (int itry = -IQ4_NTRY; itry <= IQ4_NTRY; itry++) {
        id = (float)(itry + k_iq4_values[0]) / max;
        sumqx = sumq2 = 0.0f;
        for (int j = 0; j < 32; j++) {
            float q = k_iq4_values[nearest_value_index(k_iq4_values, id * xb[j])];
            sumqx += w[j] * q * xb[j];
            sumq2 += w[j] * q * q;
        }
        if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

/* Weights of the 32 values of xb: imatrix-based when qw is given, else x^2. */
static void iq4_weights(const float *xb, const float *qw, float sigma2, float *w) {
    for (int j = 0; j < 32; j++) {
        w[j] = qw ? qw[j] * sqrtf(sigma2 + xb[j] * xb[j]) : xb[j] * xb[j];
    }
}

static float mean_sq2(const float *x, int n) {
    float s = 0.0f;
    for (int j = 0; j < n; j++) s += x[j] * x[j];
    return s * (2.0f / n);
}

/* Pack 32 codes into 16 bytes: element j low nibble, element j+16 high nibble. */
static void pack_nibbles(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(L[j] | (L[16 + j] << 4));
}

void rl__dequant_iq4_nl(const void *src, float *dst, int64_t n) {
    const block_iq4_nl *b = src;
    for (int64_t i = 0; i < n / QK4_NL; i++, dst += QK4_NL) {
        const float d = rl__fp16_to_fp32(b[i].d);
        for (int j = 0; j < 16; j++) {
            dst[j] = d * k_iq4_values[b[i].qs[j] & 0xf];
            dst[j + 16] = d * k_iq4_values[b[i].qs[j] >> 4];
        }
    }
}

void rl__quant_iq4_nl(const float *src, void *dst, int64_t n, const float *imatrix) {
    block_iq4_nl *b = dst;
    float w[32];
    uint8_t L[32];
    for (int64_t i = 0; i < n / QK4_NL; i++) {
        const float *x = src + i * QK4_NL;
        const float *qw = imatrix ? imatrix + i * QK4_NL : NULL;
        iq4_weights(x, qw, qw ? mean_sq2(x, 32) : 0.0f, w);
        const float d = iq4_block_scale(x, w, L);
        b[i].d = rl__fp32_to_fp16(d);
        /* With one sub-block the codes are chosen again for the final (unrounded) scale. */
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 32; j++) L[j] = (uint8_t)nearest_value_index(k_iq4_values, id * x[j]);
        pack_nibbles(L, b[i].qs);
    }
}

void rl__dequant_iq4_xs(const void *src, float *dst, int64_t n) {
    const block_iq4_xs *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = rl__fp16_to_fp32(b[i].d);
        const uint8_t *qs = b[i].qs;
        for (int ib = 0; ib < QK_K / 32; ib++, dst += 32, qs += 16) {
            const int ls = ((b[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) |
                           (((b[i].scales_h >> 2 * ib) & 3) << 4);
            const float dl = d * (ls - 32);
            for (int j = 0; j < 16; j++) {
                dst[j] = dl * k_iq4_values[qs[j] & 0xf];
                dst[j + 16] = dl * k_iq4_values[qs[j] >> 4];
            }
        }
    }
}

/* One super-block: a float scale per sub-block, then a super-scale d = -max_scale/32 so
 * that the largest sub-scale maps to ls = 0 (i.e. -32), each sub-scale rounded to a 6-bit
 * multiple of d, and the codes chosen again for the rounded sub-scale. */
void rl__quant_iq4_xs(const float *src, void *dst, int64_t n, const float *imatrix) {
    block_iq4_xs *b = dst;
    float w[32], scales[QK_K / 32];
    uint8_t L[QK_K];
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float *x = src + i * QK_K;
        const float *qw = imatrix ? imatrix + i * QK_K : NULL;
        const float sigma2 = mean_sq2(x, QK_K);
        float max_scale = 0.0f, amax_scale = 0.0f;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            iq4_weights(x + 32 * ib, qw ? qw + 32 * ib : NULL, sigma2, w);
            scales[ib] = iq4_block_scale(x + 32 * ib, w, L + 32 * ib);
            if (fabsf(scales[ib]) > amax_scale) {
                amax_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        const float d = -max_scale / 32; /* -0.0 for an all-zero block, as in ggml */
        b[i].d = rl__fp32_to_fp16(d);
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        b[i].scales_h = 0;
        memset(b[i].scales_l, 0, sizeof b[i].scales_l);
        for (int ib = 0; ib < QK_K / 32; ib++) {
            int l = round_even(id * scales[ib]);
            l = RL_MAX(-32, RL_MIN(31, l));
            const float dl = d * l;
            const float idl = dl != 0.0f ? 1.0f / dl : 0.0f;
            for (int j = 0; j < 32; j++) {
                L[32 * ib + j] = (uint8_t)nearest_value_index(k_iq4_values, idl * x[32 * ib + j]);
            }
            l += 32;
            b[i].scales_l[ib / 2] |= (uint8_t)((l & 0xf) << 4 * (ib % 2));
            b[i].scales_h |= (uint16_t)((l >> 4) << 2 * ib);
        }
        for (int ib = 0; ib < QK_K / 32; ib++) pack_nibbles(L + 32 * ib, b[i].qs + 16 * ib);
    }
}
