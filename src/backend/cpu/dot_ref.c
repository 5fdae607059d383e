/*
 * dot_ref.c - plain-C reference dot products of the float, legacy and k-quant types
 * with their activation type (cpu.h names the contract). Every other path is tested
 * against these.
 *
 * The arithmetic follows ggml's generic vec_dot (ggml-cpu/quants.c, MIT): per block the
 * integer products are summed exactly, then scaled once by the fp16 scales, and the
 * block results are summed in float. Types with a minimum (Q4_1, Q5_1) add m * s with
 * s the fp16 block sum stored in the Q8_1 activation (d * sum(qs) rounded to fp16), not
 * the exact sum: that is what ggml computes and what quant_zoo.json records. The
 * k-quants with a minimum use the exact integer bsums of Q8_K.
 * Plain float types accumulate in double.
 */
#include "cpu.h"

static inline float h2f(rl_fp16 h) { return rl__fp16_to_fp32(h); }

float rl__vec_dot_f32_ref(int64_t n, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * (double)y[i];
    return (float)s;
}

float rl__vec_dot_f16_ref(int64_t n, const void *vx, const void *vy) {
    const rl_fp16 *x = vx, *y = vy;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)h2f(x[i]) * (double)h2f(y[i]);
    return (float)s;
}

float rl__vec_dot_bf16_ref(int64_t n, const void *vx, const void *vy) {
    const rl_bf16 *x = vx, *y = vy;
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)rl__bf16_to_fp32(x[i]) * (double)rl__bf16_to_fp32(y[i]);
    return (float)s;
}

/* ---- legacy 32-element blocks: element j < 16 is the low nibble of qs[j], element
 * j + 16 its high nibble; a 5th bit, where present, is bit j of qh. ---------------- */

float rl__vec_dot_q4_0_ref(int64_t n, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / QK4_0; b++) {
        int sumi = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            sumi += ((x[b].qs[j] & 0xf) - 8) * y[b].qs[j];
            sumi += ((x[b].qs[j] >> 4) - 8) * y[b].qs[j + QK4_0 / 2];
        }
        sum += (float)sumi * (h2f(x[b].d) * h2f(y[b].d));
    }
    return sum;
}

float rl__vec_dot_q4_1_ref(int64_t n, const void *vx, const void *vy) {
    const block_q4_1 *x = vx;
    const block_q8_1 *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / QK4_1; b++) {
        int sumi = 0;
        for (int j = 0; j < QK4_1 / 2; j++) {
            sumi += (x[b].qs[j] & 0xf) * y[b].qs[j];
            sumi += (x[b].qs[j] >> 4) * y[b].qs[j + QK4_1 / 2];
        }
        sum += (h2f(x[b].d) * h2f(y[b].d)) * (float)sumi + h2f(x[b].m) * h2f(y[b].s);
    }
    return sum;
}

static inline uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

float rl__vec_dot_q5_0_ref(int64_t n, const void *vx, const void *vy) {
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / QK5_0; b++) {
        uint32_t qh = load_u32(x[b].qh);
        int sumi = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            int lo = (x[b].qs[j] & 0xf) | (int)(((qh >> j) & 1) << 4);
            int hi = (x[b].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            sumi += (lo - 16) * y[b].qs[j] + (hi - 16) * y[b].qs[j + QK5_0 / 2];
        }
        sum += (h2f(x[b].d) * h2f(y[b].d)) * (float)sumi;
    }
    return sum;
}

float rl__vec_dot_q5_1_ref(int64_t n, const void *vx, const void *vy) {
    const block_q5_1 *x = vx;
    const block_q8_1 *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / QK5_1; b++) {
        uint32_t qh = load_u32(x[b].qh);
        int sumi = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            int lo = (x[b].qs[j] & 0xf) | (int)(((qh >> j) & 1) << 4);
            int hi = (x[b].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            sumi += lo * y[b].qs[j] + hi * y[b].qs[j + QK5_1 / 2];
        }
        sum += (h2f(x[b].d) * h2f(y[b].d)) * (float)sumi + h2f(x[b].m) * h2f(y[b].s);
    }
    return sum;
}

float rl__vec_dot_q8_0_ref(int64_t n, const void *vx, const void *vy) {
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++) sumi += x[b].qs[j] * y[b].qs[j];
        sum += (float)sumi * (h2f(x[b].d) * h2f(y[b].d));
    }
    return sum;
}

/* ---- k-quants: super-blocks of 256 against Q8_K (float d, 16 bsums) ----------------
 * Each reference unpacks a super-block to 256 small integers q[] and per-group integer
 * scales, then sums sc[g] * sum(q * q8) over the groups exactly in int32 (worst case
 * |127 * 32 * 127 * 256| < 2^31), and scales once by d (and dmin) in float. */

/* Sum of q[i] * q8[i] over 16 elements. */
static inline int dot16(const int8_t *q, const int8_t *q8) {
    int s = 0;
    for (int i = 0; i < 16; i++) s += q[i] * q8[i];
    return s;
}

/* Q2_K: element 128h + 32s + l is bits 2s..2s+1 of qs[32h + l]; scales[g] holds the
 * 4-bit scale (low nibble) and min (high nibble) of 16-element group g. */
float rl__vec_dot_q2_K_ref(int64_t n, const void *vx, const void *vy) {
    const block_q2_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    int8_t q[QK_K];
    for (int64_t b = 0; b < n / QK_K; b++) {
        for (int h = 0; h < 2; h++)
            for (int s = 0; s < 4; s++)
                for (int l = 0; l < 32; l++)
                    q[128 * h + 32 * s + l] = (int8_t)((x[b].qs[32 * h + l] >> (2 * s)) & 3);
        int isum = 0, msum = 0;
        for (int g = 0; g < 16; g++) {
            isum += (x[b].scales[g] & 0xf) * dot16(q + 16 * g, y[b].qs + 16 * g);
            msum += (x[b].scales[g] >> 4) * y[b].bsums[g];
        }
        float dall = y[b].d * h2f(x[b].d);
        float dmin = y[b].d * h2f(x[b].dmin);
        sum += dall * (float)isum - dmin * (float)msum;
    }
    return sum;
}

/* Q3_K: 2 low bits as in Q2_K; the high bit of element 128h + 32s + l is bit 4h + s of
 * hmask[l], and a clear bit subtracts 4. 16 signed 6-bit scales (offset 32): the low 4
 * bits of scale i are nibble i/8 of scales[i % 8], the high 2 bits are bits
 * 2(i/4)..2(i/4)+1 of scales[8 + i % 4]. */
float rl__vec_dot_q3_K_ref(int64_t n, const void *vx, const void *vy) {
    const block_q3_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    int8_t q[QK_K];
    for (int64_t b = 0; b < n / QK_K; b++) {
        const uint8_t *sc = x[b].scales;
        for (int h = 0; h < 2; h++)
            for (int s = 0; s < 4; s++)
                for (int l = 0; l < 32; l++) {
                    int v = (x[b].qs[32 * h + l] >> (2 * s)) & 3;
                    if (!(x[b].hmask[l] & (1u << (4 * h + s)))) v -= 4;
                    q[128 * h + 32 * s + l] = (int8_t)v;
                }
        int isum = 0;
        for (int g = 0; g < 16; g++) {
            int lo = g < 8 ? sc[g] & 0xf : sc[g - 8] >> 4;
            int hi = (sc[8 + g % 4] >> (2 * (g / 4))) & 3;
            isum += ((lo | (hi << 4)) - 32) * dot16(q + 16 * g, y[b].qs + 16 * g);
        }
        sum += (h2f(x[b].d) * y[b].d) * (float)isum;
    }
    return sum;
}

/* The 8 6-bit scales and mins of Q4_K/Q5_K, packed in 12 bytes. */
static inline void k4_scale_min(const uint8_t *s, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q4_K / Q5_K: 32-element sub-block 2c is the low nibbles of qs[32c..32c+31], 2c+1 the
 * high nibbles; Q5_K's 5th bit of sub-block k is bit k of qh[l]. x = d*sc*q - dmin*m. */
static float dot_q45_K(int64_t n, const block_q4_K *x4, const block_q5_K *x5, const block_q8_K *y) {
    float sum = 0;
    int8_t q[QK_K];
    for (int64_t b = 0; b < n / QK_K; b++) {
        const uint8_t *qs = x4 ? x4[b].qs : x5[b].qs;
        const uint8_t *scales = x4 ? x4[b].scales : x5[b].scales;
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                int lo = qs[32 * c + l] & 0xf, hi = qs[32 * c + l] >> 4;
                if (x5) {
                    lo |= ((x5[b].qh[l] >> (2 * c)) & 1) << 4;
                    hi |= ((x5[b].qh[l] >> (2 * c + 1)) & 1) << 4;
                }
                q[64 * c + l] = (int8_t)lo;
                q[64 * c + 32 + l] = (int8_t)hi;
            }
        int isum = 0, msum = 0;
        for (int k = 0; k < 8; k++) {
            int sc, m;
            k4_scale_min(scales, k, &sc, &m);
            isum += sc * (dot16(q + 32 * k, y[b].qs + 32 * k) +
                          dot16(q + 32 * k + 16, y[b].qs + 32 * k + 16));
            msum += m * (y[b].bsums[2 * k] + y[b].bsums[2 * k + 1]);
        }
        rl_fp16 hd = x4 ? x4[b].d : x5[b].d, hm = x4 ? x4[b].dmin : x5[b].dmin;
        sum += (h2f(hd) * y[b].d) * (float)isum - (h2f(hm) * y[b].d) * (float)msum;
    }
    return sum;
}

float rl__vec_dot_q4_K_ref(int64_t n, const void *vx, const void *vy) {
    return dot_q45_K(n, vx, NULL, vy);
}

float rl__vec_dot_q5_K_ref(int64_t n, const void *vx, const void *vy) {
    return dot_q45_K(n, NULL, vx, vy);
}

/* Q6_K: in each 128-element half h, element 32s + l takes its low 4 bits from
 * ql[64h + l + 32(s & 1)] (low nibble for s < 2, high for s >= 2) and its high 2 bits
 * from bits 2s..2s+1 of qh[32h + l]; value - 32, one int8 scale per 16 elements. */
float rl__vec_dot_q6_K_ref(int64_t n, const void *vx, const void *vy) {
    const block_q6_K *x = vx;
    const block_q8_K *y = vy;
    float sum = 0;
    int8_t q[QK_K];
    for (int64_t b = 0; b < n / QK_K; b++) {
        for (int h = 0; h < 2; h++)
            for (int s = 0; s < 4; s++)
                for (int l = 0; l < 32; l++) {
                    uint8_t lb = x[b].ql[64 * h + l + 32 * (s & 1)];
                    int lo = s < 2 ? lb & 0xf : lb >> 4;
                    int hi = (x[b].qh[32 * h + l] >> (2 * s)) & 3;
                    q[128 * h + 32 * s + l] = (int8_t)((lo | (hi << 4)) - 32);
                }
        int isum = 0;
        for (int g = 0; g < 16; g++) isum += x[b].scales[g] * dot16(q + 16 * g, y[b].qs + 16 * g);
        sum += (h2f(x[b].d) * y[b].d) * (float)isum;
    }
    return sum;
}
