/*
 * dot_ref_iq.c - reference dot products of the grid-based i-quants (IQ2_XXS, IQ2_XS, IQ2_S,
 * IQ3_XXS, IQ3_S, IQ1_S, IQ1_M) with Q8_K activations.
 *
 * Computed as ggml's generic vec_dot does: exact integer sums of grid value * activation per
 * sub-block, times the integer sub-block scale, accumulated in int32 per super-block; only
 * then one float multiply by d_weight * d_act. The grid magnitudes of IQ2/IQ3 are 8x / 4x
 * too large (so that they are integers), hence the final 1/8 and 1/4. IQ1's +-1/8 shift is
 * applied through the Q8_K block sums. Results agree with ggml's x64 (generic) build to
 * float rounding.
 */
#include "../../quant/iq_tables.h"
#include "cpu.h"

static inline uint32_t load_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint16_t load_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* sum over 8 of grid magnitude * q8, negated by the sign bits */
static inline int32_t dot8(uint64_t grid, uint8_t signs, const int8_t *q8) {
    int32_t s = 0;
    for (int j = 0; j < 8; j++) {
        const int32_t v = rl__grid_byte64(grid, j) * q8[j];
        s += (signs & rl__kmask_iq2xs[j]) ? -v : v;
    }
    return s;
}

/* the same for two IQ3 entries of 4 (signs of the first in bits 0..3) */
static inline int32_t dot4x2(uint32_t g1, uint32_t g2, uint8_t signs, const int8_t *q8) {
    int32_t s = 0;
    for (int j = 0; j < 4; j++) {
        const int32_t v1 = rl__grid_byte32(g1, j) * q8[j];
        const int32_t v2 = rl__grid_byte32(g2, j) * q8[j + 4];
        s += (signs & rl__kmask_iq2xs[j]) ? -v1 : v1;
        s += (signs & rl__kmask_iq2xs[j + 4]) ? -v2 : v2;
    }
    return s;
}

float rl__vec_dot_iq2_xxs_ref(int64_t n, const void *vx, const void *vy) {
    const block_iq2_xxs *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = rl__fp16_to_fp32(x[i].d) * y[i].d;
        const uint8_t *q2 = (const uint8_t *)x[i].qs;
        const int8_t *q8 = y[i].qs;
        int32_t bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ib++, q2 += 8) {
            const uint32_t aux = load_le32(q2 + 4);
            const int32_t ls = 2 * (int32_t)(aux >> 28) + 1;
            int32_t sumi = 0;
            for (int l = 0; l < 4; l++, q8 += 8)
                sumi += dot8(rl__iq2xxs_grid[q2[l]], rl__ksigns_iq2xs[(aux >> 7 * l) & 127], q8);
            bsum += sumi * ls;
        }
        sumf += d * (float)bsum;
    }
    return 0.125f * sumf;
}

float rl__vec_dot_iq2_xs_ref(int64_t n, const void *vx, const void *vy) {
    const block_iq2_xs *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = rl__fp16_to_fp32(x[i].d) * y[i].d;
        const uint8_t *q2 = (const uint8_t *)x[i].qs;
        const int8_t *q8 = y[i].qs;
        int32_t bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            for (int h = 0; h < 2; h++) {
                const int32_t ls = 2 * ((x[i].scales[ib] >> 4 * h) & 0xf) + 1;
                int32_t sumi = 0;
                for (int l = 0; l < 2; l++, q8 += 8, q2 += 2) {
                    const uint16_t code = load_le16(q2);
                    sumi += dot8(rl__iq2xs_grid[code & 511], rl__ksigns_iq2xs[code >> 9], q8);
                }
                bsum += sumi * ls;
            }
        }
        sumf += d * (float)bsum;
    }
    return 0.125f * sumf;
}

float rl__vec_dot_iq2_s_ref(int64_t n, const void *vx, const void *vy) {
    const block_iq2_s *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = rl__fp16_to_fp32(x[i].d) * y[i].d;
        const uint8_t *qs = x[i].qs;
        const uint8_t *signs = x[i].qs + QK_K / 8;
        const int8_t *q8 = y[i].qs;
        int32_t bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ib++, qs += 4, signs += 4) {
            int32_t sumi[2] = {0, 0};
            for (int l = 0; l < 4; l++, q8 += 8) {
                const int idx = qs[l] | ((x[i].qh[ib] << (8 - 2 * l)) & 0x300);
                sumi[l / 2] += dot8(rl__iq2s_grid[idx], signs[l], q8);
            }
            const int32_t ls1 = 1 + 2 * (x[i].scales[ib] & 0xf);
            const int32_t ls2 = 1 + 2 * (x[i].scales[ib] >> 4);
            bsum += ls1 * sumi[0] + ls2 * sumi[1];
        }
        sumf += d * (float)bsum;
    }
    return 0.125f * sumf;
}

float rl__vec_dot_iq3_xxs_ref(int64_t n, const void *vx, const void *vy) {
    const block_iq3_xxs *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = rl__fp16_to_fp32(x[i].d) * y[i].d;
        const uint8_t *q3 = x[i].qs;
        const uint8_t *sas = x[i].qs + QK_K / 4;
        const int8_t *q8 = y[i].qs;
        int32_t bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ib++, q3 += 8) {
            const uint32_t aux = load_le32(sas + 4 * ib);
            const int32_t ls = 2 * (int32_t)(aux >> 28) + 1;
            int32_t sumi = 0;
            for (int l = 0; l < 4; l++, q8 += 8)
                sumi += dot4x2(rl__iq3xxs_grid[q3[2 * l]], rl__iq3xxs_grid[q3[2 * l + 1]],
                               rl__ksigns_iq2xs[(aux >> 7 * l) & 127], q8);
            bsum += sumi * ls;
        }
        sumf += d * (float)bsum;
    }
    return 0.25f * sumf;
}

float rl__vec_dot_iq3_s_ref(int64_t n, const void *vx, const void *vy) {
    const block_iq3_s *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = rl__fp16_to_fp32(x[i].d) * y[i].d;
        const uint8_t *qs = x[i].qs;
        const uint8_t *signs = x[i].signs;
        const int8_t *q8 = y[i].qs;
        int32_t bsum = 0;
        for (int ib = 0; ib < QK_K / 32; ib++, qs += 8, signs += 4) {
            const uint8_t qh = x[i].qh[ib];
            const int32_t ls = 2 * ((x[i].scales[ib / 2] >> 4 * (ib % 2)) & 0xf) + 1;
            int32_t sumi = 0;
            for (int l = 0; l < 4; l++, q8 += 8) {
                const int i1 = qs[2 * l] | ((qh << (8 - 2 * l)) & 256);
                const int i2 = qs[2 * l + 1] | ((qh << (7 - 2 * l)) & 256);
                sumi += dot4x2(rl__iq3s_grid[i1], rl__iq3s_grid[i2], signs[l], q8);
            }
            bsum += sumi * ls;
        }
        sumf += d * (float)bsum;
    }
    return sumf;
}

/* sum over 8 of ternary grid value * q8 */
static inline int32_t dot8_ternary(uint64_t grid, const int8_t *q8) {
    int32_t s = 0;
    for (int j = 0; j < 8; j++) s += (int8_t)rl__grid_byte64(grid, j) * q8[j];
    return s;
}

float rl__vec_dot_iq1_s_ref(int64_t n, const void *vx, const void *vy) {
    const block_iq1_s *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *qs = x[i].qs;
        const int8_t *q8 = y[i].qs;
        int32_t sumi = 0, sumi1 = 0;
        for (int ib = 0; ib < QK_K / 32; ib++, qs += 4) {
            const uint16_t qh = load_le16((const uint8_t *)x[i].qh + 2 * ib);
            const int32_t ls = 2 * ((qh >> 12) & 7) + 1;
            const int32_t delta = (qh & 0x8000) ? -1 : 1;
            int32_t lsum = 0;
            for (int l = 0; l < 4; l++, q8 += 8)
                lsum += dot8_ternary(rl__iq1s_grid[qs[l] | (((qh >> 3 * l) & 7) << 8)], q8);
            sumi += ls * lsum;
            sumi1 += ls * delta * (y[i].bsums[2 * ib] + y[i].bsums[2 * ib + 1]);
        }
        sumf += rl__fp16_to_fp32(x[i].d) * y[i].d * ((float)sumi + RL_IQ1S_DELTA * (float)sumi1);
    }
    return sumf;
}

float rl__vec_dot_iq1_m_ref(int64_t n, const void *vx, const void *vy) {
    const block_iq1_m *x = vx;
    const block_q8_K *y = vy;
    float sumf = 0.f;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const uint8_t *qs = x[i].qs;
        const uint8_t *qh = x[i].qh;
        const int8_t *q8 = y[i].qs;
        uint16_t sc[4];
        for (int k = 0; k < 4; k++) sc[k] = load_le16(x[i].scales + 2 * k);
        const uint16_t dh = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) |
                                       ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
        int32_t sumi1 = 0, sumi2 = 0;
        for (int ib = 0; ib < QK_K / 32; ib++, qs += 4, qh += 2) {
            int32_t sum1[2] = {0, 0}, sum2[2] = {0, 0};
            for (int l = 0; l < 4; l++, q8 += 8) {
                const uint8_t h = qh[l / 2];
                const int idx = qs[l] | (((l % 2) ? (h << 4) : (h << 8)) & 0x700);
                const int32_t delta = (h & ((l % 2) ? 0x80 : 0x08)) ? -1 : 1;
                int32_t qsum = 0;
                for (int j = 0; j < 8; j++) qsum += q8[j];
                sum1[l / 2] += dot8_ternary(rl__iq1s_grid[idx], q8);
                sum2[l / 2] += qsum * delta;
            }
            const int32_t ls1 = 2 * ((sc[ib / 2] >> (6 * (ib % 2) + 0)) & 7) + 1;
            const int32_t ls2 = 2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 7) + 1;
            sumi1 += sum1[0] * ls1 + sum1[1] * ls2;
            sumi2 += sum2[0] * ls1 + sum2[1] * ls2;
        }
        sumf += rl__fp16_to_fp32(dh) * y[i].d * ((float)sumi1 + RL_IQ1M_DELTA * (float)sumi2);
    }
    return sumf;
}
