/*
 * quant_k.c - the k-quants of ggml (PR #1684): super-blocks of 256 values split into
 * sub-blocks of 16 or 32, each sub-block with a small integer scale (and minimum),
 * the sub-block scales themselves quantized against one fp16 super-block scale.
 *
 *   Q2_K: 16 x 16, x = d*sc*q - dmin*m, q 2-bit, sc/m 4-bit
 *   Q3_K: 16 x 16, x = d*(sc-32)*(q-4), q 3-bit (2 low bits + hmask), sc 6-bit
 *   Q4_K:  8 x 32, x = d*sc*q - dmin*m, q 4-bit, sc/m 6-bit
 *   Q5_K:  8 x 32, as Q4_K with q 5-bit (4 low bits + qh)
 *   Q6_K: 16 x 16, x = d*sc*(q-32), q 6-bit (4 low bits + 2 high), sc int8
 *   Q8_K: 256, x = d*q with float d and int8 q, plus 16-element sums (activations)
 *
 * Without an importance matrix the quantizers are ggml's reference ones
 * (quantize_row_*_ref): scales from per-sub-block searches, the sub-block scales rounded
 * against the largest, then every value re-rounded with the final scales. With one,
 * the searches are weighted by imatrix * sqrt(sigma^2 + x^2) and the sub-block scales
 * are themselves fitted by a weighted search (make_qp_quants), as ggml's
 * quantize_q*_K do (PR #4861). Bit packing follows the layouts in blocks.h.
 */
#include "quant_k_search.h"

#include <math.h>

#define FP16(h) rl__fp16_to_fp32(h)

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* Mean square of one super-block. */
static float sblock_sumsq(const float *x) {
    float s = 0;
    for (int j = 0; j < QK_K; j++) s += x[j] * x[j];
    return s;
}

/* 2-bit levels of 256 values into 64 bytes: byte l of each 32-byte half holds
 * elements l, l+32, l+64, l+96 of that 128-element half in bits 0-1, 2-3, 4-5, 6-7. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int h = 0; h < QK_K; h += 128) {
        for (int l = 0; l < 32; l++) {
            qs[h / 4 + l] = (uint8_t)(L[h + l] | L[h + l + 32] << 2 | L[h + l + 64] << 4 |
                                      L[h + l + 96] << 6);
        }
    }
}

/* 2-bit level of element e (0..255) from a pack_2bit layout. */
static inline int get_2bit(const uint8_t *qs, int e) {
    return (qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

/* ---- Q2_K ------------------------------------------------------------------------ */

void rl__dequant_q2_K(const void *src, float *dst, int64_t n) {
    const block_q2_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = FP16(b[i].d), dmin = FP16(b[i].dmin);
        for (int s = 0; s < QK_K / 16; s++) {
            /* the scale bytes run over sub-blocks in element order */
            const uint8_t sc = b[i].scales[s];
            const float dl = d * (sc & 0xf), ml = dmin * (sc >> 4);
            for (int l = 0; l < 16; l++) {
                const int e = 16 * s + l;
                dst[e] = dl * get_2bit(b[i].qs, e) - ml;
            }
        }
    }
}

/* Re-round every value of a Q2_K super-block with its final (fp16-rounded) scales.
 * Sub-blocks whose scale is zero keep the levels of the search. */
static void q2_K_requantize(const float *x, const block_q2_K *y, uint8_t *L) {
    const float d_all = FP16(y->d), m_all = FP16(y->dmin);
    for (int j = 0; j < QK_K / 16; j++) {
        const float d = d_all * (y->scales[j] & 0xf);
        if (!d) continue;
        const float dm = m_all * (y->scales[j] >> 4);
        for (int l = 0; l < 16; l++) {
            L[16 * j + l] = (uint8_t)clampi(rl__nearest_int((x[16 * j + l] + dm) / d), 0, 3);
        }
    }
}

static void q2_K_ref(const float *x, block_q2_K *y, int64_t nb) {
    uint8_t L[QK_K], Laux[16];
    float w[16], mins[QK_K / 16], scales[QK_K / 16];
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * j + l]);
            scales[j] = rl__make_qkx2_quants(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], Laux,
                                             -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            const float iscale = 15.f / max_scale;
            for (int j = 0; j < QK_K / 16; j++) {
                y[i].scales[j] = (uint8_t)rl__nearest_int(iscale * scales[j]);
            }
            y[i].d = rl__q_fp16(max_scale / 15.f);
        } else {
            memset(y[i].scales, 0, sizeof(y[i].scales));
            y[i].d = rl__q_fp16(0.f);
        }
        if (max_min > 0) {
            const float iscale = 15.f / max_min;
            for (int j = 0; j < QK_K / 16; j++) {
                y[i].scales[j] |= (uint8_t)(rl__nearest_int(iscale * mins[j]) << 4);
            }
            y[i].dmin = rl__q_fp16(max_min / 15.f);
        } else {
            y[i].dmin = rl__q_fp16(0.f);
        }
        q2_K_requantize(x, &y[i], L);
        pack_2bit(L, y[i].qs);
    }
}

void rl__quant_q2_K(const float *src, void *dst, int64_t n, const float *imatrix) {
    block_q2_K *y = dst;
    const int64_t nb = n / QK_K;
    if (!imatrix) {
        q2_K_ref(src, y, nb);
        return;
    }
    uint8_t L[QK_K], Laux[16], Ls[QK_K / 16], Lm[QK_K / 16];
    float mins[QK_K / 16], scales[QK_K / 16], sw[QK_K / 16], w[16];
    const float *x = src;
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        const float sigma2 = sblock_sumsq(x) / QK_K;
        for (int j = 0; j < QK_K / 16; j++) {
            const float *qw = imatrix + QK_K * i + 16 * j;
            float s = 0;
            for (int l = 0; l < 16; l++) {
                w[l] = qw[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
                s += w[l];
            }
            sw[j] = s;
            scales[j] = rl__make_qkx3_quants(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], Laux,
                                             -0.9f, 0.05f, 36, false);
        }
        const float dm = rl__make_qp_quants(QK_K / 16, 15, scales, Ls, sw);
        const float mm = rl__make_qp_quants(QK_K / 16, 15, mins, Lm, sw);
        y[i].d = rl__q_fp16(dm);
        y[i].dmin = rl__q_fp16(mm);
        for (int j = 0; j < QK_K / 16; j++) y[i].scales[j] = (uint8_t)(Ls[j] | Lm[j] << 4);
        q2_K_requantize(x, &y[i], L);
        pack_2bit(L, y[i].qs);
    }
}

/* ---- Q3_K ------------------------------------------------------------------------ */

/* The 16 six-bit scales (stored +32) of Q3_K: low nibbles in bytes 0..7 (sub-blocks
 * 0..7 low, 8..15 high), the top two bits of sub-block j in byte 8 + j%4 at bit 2*(j/4). */
static void q3_K_set_scales(uint8_t sc[12], const int *l6) {
    memset(sc, 0, 12);
    for (int j = 0; j < 16; j++) {
        const int l = l6[j];
        if (j < 8) {
            sc[j] = (uint8_t)(l & 0xf);
        } else {
            sc[j - 8] |= (uint8_t)((l & 0xf) << 4);
        }
        sc[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
    }
}

static inline int q3_K_get_scale(const uint8_t sc[12], int j) {
    int lo = j < 8 ? sc[j] & 0xf : sc[j - 8] >> 4;
    return (lo | ((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
}

void rl__dequant_q3_K(const void *src, float *dst, int64_t n) {
    const block_q3_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d_all = FP16(b[i].d);
        for (int s = 0; s < QK_K / 16; s++) {
            const float dl = d_all * q3_K_get_scale(b[i].scales, s);
            for (int l = 0; l < 16; l++) {
                const int e = 16 * s + l;
                /* the high bit is set for levels 0..3 of the unsigned 3-bit value */
                const int hi = (b[i].hmask[e % 32] >> (e / 32)) & 1;
                dst[e] = dl * (get_2bit(b[i].qs, e) - (hi ? 0 : 4));
            }
        }
    }
}

/* Re-round with the final scales, then store: levels 0..7, bit 2 into hmask (element e
 * at byte e%32, bit e/32), the low two bits through pack_2bit. */
static void q3_K_finish(const float *x, block_q3_K *y, int8_t *L) {
    const float d_all = FP16(y->d);
    for (int j = 0; j < QK_K / 16; j++) {
        const float d = d_all * q3_K_get_scale(y->scales, j);
        if (!d) continue;
        for (int l = 0; l < 16; l++) {
            L[16 * j + l] = (int8_t)(clampi(rl__nearest_int(x[16 * j + l] / d), -4, 3) + 4);
        }
    }
    uint8_t low[QK_K];
    memset(y->hmask, 0, sizeof(y->hmask));
    for (int e = 0; e < QK_K; e++) {
        int l = L[e];
        if (l > 3) {
            y->hmask[e % 32] |= (uint8_t)(1u << (e / 32));
            l -= 4;
        }
        low[e] = (uint8_t)l;
    }
    pack_2bit(low, y->qs);
}

static void q3_K_ref(const float *x, block_q3_K *y, int64_t nb) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    int l6[QK_K / 16];
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            scales[j] = rl__make_q3_quants(16, 4, x + 16 * j, L + 16 * j, true);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        if (max_scale) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < QK_K / 16; j++) {
                const int8_t l = (int8_t)rl__nearest_int(iscale * scales[j]);
                l6[j] = clampi(l, -32, 31) + 32;
            }
            q3_K_set_scales(y[i].scales, l6);
            y[i].d = rl__q_fp16(1 / iscale);
        } else {
            memset(y[i].scales, 0, sizeof(y[i].scales));
            y[i].d = rl__q_fp16(0.f);
        }
        q3_K_finish(x, &y[i], L);
    }
}

void rl__quant_q3_K(const float *src, void *dst, int64_t n, const float *imatrix) {
    block_q3_K *y = dst;
    const int64_t nb = n / QK_K;
    if (!imatrix) {
        q3_K_ref(src, y, nb);
        return;
    }
    int8_t L[QK_K], Ls[QK_K / 16];
    float scales[QK_K / 16], w[16], sw[QK_K / 16];
    int l6[QK_K / 16];
    const float *x = src;
    for (int64_t i = 0; i < nb; i++, x += QK_K) {
        const float sigma2 = 2 * sblock_sumsq(x) / QK_K;
        for (int j = 0; j < QK_K / 16; j++) {
            const float *qw = imatrix + QK_K * i + 16 * j;
            for (int l = 0; l < 16; l++) w[l] = qw[l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            float s = 0;
            for (int l = 0; l < 16; l++) s += w[l];
            sw[j] = s;
            scales[j] = rl__make_qx_quants(16, 4, x + 16 * j, L + 16 * j, 1, w);
        }
        const float d_block = rl__make_qx_quants(QK_K / 16, 32, scales, Ls, 1, sw);
        for (int j = 0; j < QK_K / 16; j++) l6[j] = Ls[j];
        q3_K_set_scales(y[i].scales, l6);
        y[i].d = rl__q_fp16(d_block);
        q3_K_finish(x, &y[i], L);
    }
}

/* ---- Q4_K / Q5_K shared: 8 six-bit scales and mins in 12 bytes ------------------- */

/* Sub-blocks 0..3: scale in bytes 0..3, min in 4..7 (6 bits each). Sub-blocks 4..7:
 * low nibbles in bytes 8..11 (scale low, min high), top two bits in bits 6-7 of bytes
 * 0..3 (scale) and 4..7 (min). Must be called for j = 0..7 in order. */
static void k4_set_scale_min(uint8_t *q, int j, uint8_t ls, uint8_t lm) {
    if (j < 4) {
        q[j] = ls;
        q[j + 4] = lm;
    } else {
        q[j + 4] = (uint8_t)((ls & 0xf) | (lm & 0xf) << 4);
        q[j - 4] |= (uint8_t)((ls >> 4) << 6);
        q[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

static inline void k4_get_scale_min(const uint8_t *q, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xf) | (q[j - 4] >> 6) << 4;
        *m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

/* Reference (no imatrix) scales of Q4_K/Q5_K: per 32-value sub-block a min/scale search
 * with weights sqrt(mean x^2) + |x|, then the 6-bit rounding against the largest. */
static void k4_ref_scales(const float *x, int nmax, float rmin, int nstep, uint8_t *L,
                          uint8_t scales_out[12], rl_fp16 *d, rl_fp16 *dmin) {
    float w[QK_K], mins[QK_K / 32], scales[QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[32 * j + l] = av_x + fabsf(x[32 * j + l]);
    }
    rl__make_qkx_quants_lanes(8, 32, nmax, x, w, L, scales, mins, rmin, 0.1f, nstep, false, false);
    for (int j = 0; j < QK_K / 32; j++) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t ls = (uint8_t)rl__nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)rl__nearest_int(inv_min * mins[j]);
        k4_set_scale_min(scales_out, j, RL_MIN(63, ls), RL_MIN(63, lm));
    }
    *d = rl__q_fp16(max_scale / 63.f);
    *dmin = rl__q_fp16(max_min / 63.f);
}

/* Importance-weighted scales of Q4_K/Q5_K. clamp63: Q5_K clamps the fitted 6-bit
 * values, Q4_K stores them as they come (they never exceed 63 for sane input). */
static void k4_imatrix_scales(const float *x, const float *qw, int nmax, bool clamp63,
                              uint8_t *L, uint8_t scales_out[12], rl_fp16 *d, rl_fp16 *dmin) {
    uint8_t Ls[QK_K / 32], Lm[QK_K / 32];
    float w[QK_K], sw[QK_K / 32], mins[QK_K / 32], scales[QK_K / 32];
    const float sigma2 = 2 * sblock_sumsq(x) / QK_K;
    for (int j = 0; j < QK_K / 32; j++) {
        float *wj = w + 32 * j;
        for (int l = 0; l < 32; l++) {
            wj[l] = qw[32 * j + l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
        }
        float s = 0;
        for (int l = 0; l < 32; l++) s += wj[l];
        sw[j] = s;
    }
    rl__make_qkx_quants_lanes(8, 32, nmax, x, w, L, scales, mins, -0.9f, 0.05f, 36, false, true);
    const float d_block = rl__make_qp_quants(QK_K / 32, 63, scales, Ls, sw);
    const float m_block = rl__make_qp_quants(QK_K / 32, 63, mins, Lm, sw);
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t ls = Ls[j], lm = Lm[j];
        if (clamp63) {
            ls = RL_MIN(63, ls);
            lm = RL_MIN(63, lm);
        }
        k4_set_scale_min(scales_out, j, ls, lm);
    }
    *d = rl__q_fp16(d_block);
    *dmin = rl__q_fp16(m_block);
}

/* Re-round the 256 values of a Q4_K/Q5_K super-block with the stored scales. */
static void k4_requantize(const float *x, const uint8_t scales[12], rl_fp16 d16, rl_fp16 dmin16,
                          int nmax, uint8_t *L) {
    const float d_all = FP16(d16), m_all = FP16(dmin16);
    for (int j = 0; j < QK_K / 32; j++) {
        int sc, m;
        k4_get_scale_min(scales, j, &sc, &m);
        const float d = d_all * sc;
        if (!d) continue;
        const float dm = m_all * m;
        for (int l = 0; l < 32; l++) {
            L[32 * j + l] = (uint8_t)clampi(rl__nearest_int((x[32 * j + l] + dm) / d), 0, nmax);
        }
    }
}

/* ---- Q4_K ------------------------------------------------------------------------ */

void rl__dequant_q4_K(const void *src, float *dst, int64_t n) {
    const block_q4_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = FP16(b[i].d), dmin = FP16(b[i].dmin);
        for (int s = 0; s < QK_K / 32; s++) {
            int sc, m;
            k4_get_scale_min(b[i].scales, s, &sc, &m);
            const float dl = d * sc, ml = dmin * m;
            /* 64 values per 32 bytes: the even sub-block in low nibbles, odd in high */
            const uint8_t *q = b[i].qs + 32 * (s / 2);
            const int shift = 4 * (s & 1);
            for (int l = 0; l < 32; l++) dst[32 * s + l] = dl * ((q[l] >> shift) & 0xf) - ml;
        }
    }
}

static void q4_K_pack(const uint8_t *L, block_q4_K *y) {
    for (int j = 0; j < QK_K; j += 64) {
        for (int l = 0; l < 32; l++) y->qs[j / 2 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 4);
    }
}

void rl__quant_q4_K(const float *src, void *dst, int64_t n, const float *imatrix) {
    block_q4_K *y = dst;
    uint8_t L[QK_K];
    const float *x = src;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        if (imatrix) {
            k4_imatrix_scales(x, imatrix + QK_K * i, 15, false, L, y[i].scales, &y[i].d,
                              &y[i].dmin);
        } else {
            k4_ref_scales(x, 15, -1.f, 20, L, y[i].scales, &y[i].d, &y[i].dmin);
        }
        k4_requantize(x, y[i].scales, y[i].d, y[i].dmin, 15, L);
        q4_K_pack(L, &y[i]);
    }
}

/* ---- Q5_K ------------------------------------------------------------------------ */

void rl__dequant_q5_K(const void *src, float *dst, int64_t n) {
    const block_q5_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = FP16(b[i].d), dmin = FP16(b[i].dmin);
        for (int s = 0; s < QK_K / 32; s++) {
            int sc, m;
            k4_get_scale_min(b[i].scales, s, &sc, &m);
            const float dl = d * sc, ml = dmin * m;
            const uint8_t *q = b[i].qs + 32 * (s / 2);
            const int shift = 4 * (s & 1);
            for (int l = 0; l < 32; l++) {
                const int hi = (b[i].qh[l] >> s) & 1;
                dst[32 * s + l] = dl * (((q[l] >> shift) & 0xf) + (hi ? 16 : 0)) - ml;
            }
        }
    }
}

/* Low nibbles as Q4_K; bit 4 of the value of sub-block s, position l into qh[l] bit s. */
static void q5_K_pack(const uint8_t *L, block_q5_K *y) {
    memset(y->qh, 0, sizeof(y->qh));
    for (int s = 0; s < QK_K / 32; s++) {
        for (int l = 0; l < 32; l++) {
            const int v = L[32 * s + l];
            if (v > 15) y->qh[l] |= (uint8_t)(1u << s);
        }
    }
    for (int j = 0; j < QK_K; j += 64) {
        for (int l = 0; l < 32; l++) {
            y->qs[j / 2 + l] = (uint8_t)((L[j + l] & 0xf) | (L[j + l + 32] & 0xf) << 4);
        }
    }
}

void rl__quant_q5_K(const float *src, void *dst, int64_t n, const float *imatrix) {
    block_q5_K *y = dst;
    uint8_t L[QK_K];
    const float *x = src;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        if (imatrix) {
            k4_imatrix_scales(x, imatrix + QK_K * i, 31, true, L, y[i].scales, &y[i].d,
                              &y[i].dmin);
        } else {
            k4_ref_scales(x, 31, -0.5f, 15, L, y[i].scales, &y[i].d, &y[i].dmin);
        }
        k4_requantize(x, y[i].scales, y[i].d, y[i].dmin, 31, L);
        q5_K_pack(L, &y[i]);
    }
}

/* ---- Q6_K ------------------------------------------------------------------------ */

/* 6-bit level of element e: low nibble in ql, top two bits in qh. Within each
 * 128-element half, ql byte l holds elements l (low) and l+64 (high), byte l+32 holds
 * l+32 and l+96; qh byte l holds the top bits of l, l+32, l+64, l+96. */
static inline int q6_K_get(const block_q6_K *b, int e) {
    const int h = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
    const uint8_t lo = b->ql[64 * h + l + 32 * (quarter & 1)];
    const int low = quarter < 2 ? lo & 0xf : lo >> 4;
    const int high = (b->qh[32 * h + l] >> (2 * quarter)) & 3;
    return low | high << 4;
}

void rl__dequant_q6_K(const void *src, float *dst, int64_t n) {
    const block_q6_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        const float d = FP16(b[i].d);
        for (int e = 0; e < QK_K; e++) dst[e] = d * b[i].scales[e / 16] * (q6_K_get(&b[i], e) - 32);
    }
}

/* qw: NULL (reference) or the 256 importance weights of this super-block, used raw. */
static void q6_K_block(const float *x, block_q6_K *y, const float *qw) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    float max_scale = 0, max_abs_scale = 0;
    rl__make_qx_quants_lanes(QK_K / 16, 16, 32, x, qw, L, scales);
    for (int ib = 0; ib < QK_K / 16; ib++) {
        const float scale = scales[ib];
        if (fabsf(scale) > max_abs_scale) {
            max_abs_scale = fabsf(scale);
            max_scale = scale;
        }
    }
    if (max_abs_scale < RL_GROUP_MAX_EPS) {
        memset(y, 0, sizeof(*y));
        return;
    }
    const float iscale = -128.f / max_scale;
    y->d = rl__q_fp16(1 / iscale);
    for (int ib = 0; ib < QK_K / 16; ib++) {
        y->scales[ib] = (int8_t)RL_MIN(127, rl__nearest_int(iscale * scales[ib]));
    }
    const float d_all = FP16(y->d);
    for (int j = 0; j < QK_K / 16; j++) {
        const float d = d_all * y->scales[j];
        if (!d) continue;
        for (int l = 0; l < 16; l++) {
            L[16 * j + l] = (int8_t)(clampi(rl__nearest_int(x[16 * j + l] / d), -32, 31) + 32);
        }
    }
    for (int h = 0; h < QK_K; h += 128) {
        uint8_t *ql = y->ql + h / 2, *qh = y->qh + h / 4;
        for (int l = 0; l < 32; l++) {
            const int q1 = L[h + l], q2 = L[h + l + 32], q3 = L[h + l + 64], q4 = L[h + l + 96];
            ql[l] = (uint8_t)((q1 & 0xf) | (q3 & 0xf) << 4);
            ql[l + 32] = (uint8_t)((q2 & 0xf) | (q4 & 0xf) << 4);
            qh[l] = (uint8_t)(q1 >> 4 | (q2 >> 4) << 2 | (q3 >> 4) << 4 | (q4 >> 4) << 6);
        }
    }
}

void rl__quant_q6_K(const float *src, void *dst, int64_t n, const float *imatrix) {
    block_q6_K *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++) {
        q6_K_block(src + QK_K * i, &y[i], imatrix ? imatrix + QK_K * i : NULL);
    }
}

/* ---- Q8_K ------------------------------------------------------------------------ */

void rl__dequant_q8_K(const void *src, float *dst, int64_t n) {
    const block_q8_K *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        for (int j = 0; j < QK_K; j++) dst[j] = b[i].d * b[i].qs[j];
    }
}

/* The extreme value maps to -127 (not -128: keeps q symmetric for the i-quant dots);
 * bsums are the 16-element sums the k-quant dot products use for the min terms.
 * An all-zero block gets d = 0, zero levels and zero sums. */
void rl__quant_q8_K(const float *src, void *dst, int64_t n, const float *imatrix) {
    (void)imatrix;
    block_q8_K *y = dst;
    const float *x = src;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < QK_K; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        if (!amax) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) {
            y[i].qs[j] = (int8_t)RL_MIN(127, rl__nearest_int(iscale * x[j]));
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[i].qs[16 * j + l];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}
