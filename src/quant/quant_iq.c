/*
 * quant_iq.c - dequantization of the grid-based i-quants IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
 * IQ3_S, IQ1_S and IQ1_M (ggml's importance-matrix quants, ggml/src/ggml-quants.c).
 *
 * All of them store a super-block of 256 values as groups of 8 (or 4) that index a fixed
 * codebook of magnitudes (iq_tables.c) plus sign bits, under per-sub-block scales. The
 * arithmetic below reproduces ggml's dequantize_row_* bit for bit: each value is
 * (sub-block scale) * (grid magnitude), negated by its sign bit; the scale expressions keep
 * ggml's order of float operations.
 */
#include "iq_tables.h"
#include "quant.h"

static inline uint32_t load_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint16_t load_le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* 8 values: scale * magnitude, negated where the sign byte has a bit set. */
static inline void put8(float *y, float scale, uint64_t grid, uint8_t signs) {
    for (int j = 0; j < 8; j++) {
        float v = scale * (float)rl__grid_byte64(grid, j);
        y[j] = (signs & rl__kmask_iq2xs[j]) ? -v : v;
    }
}

/* 4 values of an IQ3 grid entry; sign bits taken from signs >> shift. */
static inline void put4(float *y, float scale, uint32_t grid, uint8_t signs, int shift) {
    for (int j = 0; j < 4; j++) {
        float v = scale * (float)rl__grid_byte32(grid, j);
        y[j] = (signs & rl__kmask_iq2xs[j + shift]) ? -v : v;
    }
}

/* IQ2_XXS (2.06 bpw): per 32 values, 4 grid bytes and a 32-bit word holding 4 x 7 sign
 * bits and a 4-bit scale s; x = d * (0.5 + s) / 4 * grid * sign. */
void rl__dequant_iq2_xxs(const void *src, float *y, int64_t n) {
    const block_iq2_xxs *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = rl__fp16_to_fp32(x[i].d);
        const uint8_t *q = (const uint8_t *)x[i].qs;
        for (int ib = 0; ib < QK_K / 32; ib++, q += 8) {
            const uint32_t aux = load_le32(q + 4);
            const float db = d * (0.5f + (float)(aux >> 28)) * 0.25f;
            for (int l = 0; l < 4; l++, y += 8)
                put8(y, db, rl__iq2xxs_grid[q[l]], rl__ksigns_iq2xs[(aux >> 7 * l) & 127]);
        }
    }
}

/* IQ2_XS (2.31 bpw): 16-bit codes of 9 grid bits + 7 sign bits, a 4-bit scale per 16. */
void rl__dequant_iq2_xs(const void *src, float *y, int64_t n) {
    const block_iq2_xs *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = rl__fp16_to_fp32(x[i].d);
        const uint8_t *q = (const uint8_t *)x[i].qs;
        for (int ib = 0; ib < QK_K / 32; ib++) {
            const float db[2] = {d * (0.5f + (float)(x[i].scales[ib] & 0xf)) * 0.25f,
                                 d * (0.5f + (float)(x[i].scales[ib] >> 4)) * 0.25f};
            for (int l = 0; l < 4; l++, y += 8) {
                const uint16_t code = load_le16(q + 2 * (4 * ib + l));
                put8(y, db[l / 2], rl__iq2xs_grid[code & 511], rl__ksigns_iq2xs[code >> 9]);
            }
        }
    }
}

/* IQ2_S (2.56 bpw): 10-bit grid index (8 low bits in qs, 2 high bits in qh), 8 explicit
 * sign bits per 8 values, a 4-bit scale per 16. */
void rl__dequant_iq2_s(const void *src, float *y, int64_t n) {
    const block_iq2_s *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = rl__fp16_to_fp32(x[i].d);
        const uint8_t *qs = x[i].qs;
        const uint8_t *signs = x[i].qs + QK_K / 8;
        for (int ib = 0; ib < QK_K / 32; ib++, qs += 4, signs += 4) {
            const float db[2] = {d * (0.5f + (float)(x[i].scales[ib] & 0xf)) * 0.25f,
                                 d * (0.5f + (float)(x[i].scales[ib] >> 4)) * 0.25f};
            for (int l = 0; l < 4; l++, y += 8) {
                const int idx = qs[l] | ((x[i].qh[ib] << (8 - 2 * l)) & 0x300);
                put8(y, db[l / 2], rl__iq2s_grid[idx], signs[l]);
            }
        }
    }
}

/* IQ3_XXS (3.06 bpw): 8 grid bytes of 4 values per 32, then per 32 a 32-bit word of
 * 4 x 7 sign bits and a 4-bit scale s; x = d * (0.5 + s) / 2 * grid * sign. */
void rl__dequant_iq3_xxs(const void *src, float *y, int64_t n) {
    const block_iq3_xxs *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = rl__fp16_to_fp32(x[i].d);
        const uint8_t *qs = x[i].qs;
        const uint8_t *sas = x[i].qs + QK_K / 4;
        for (int ib = 0; ib < QK_K / 32; ib++, qs += 8) {
            const uint32_t aux = load_le32(sas + 4 * ib);
            const float db = d * (0.5f + (float)(aux >> 28)) * 0.5f;
            for (int l = 0; l < 4; l++, y += 8) {
                const uint8_t signs = rl__ksigns_iq2xs[(aux >> 7 * l) & 127];
                put4(y, db, rl__iq3xxs_grid[qs[2 * l]], signs, 0);
                put4(y + 4, db, rl__iq3xxs_grid[qs[2 * l + 1]], signs, 4);
            }
        }
    }
}

/* IQ3_S (3.44 bpw): 9-bit grid index (high bit in qh), explicit sign bits, odd 4-bit
 * scales 1 + 2s per 32 values. */
void rl__dequant_iq3_s(const void *src, float *y, int64_t n) {
    const block_iq3_s *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = rl__fp16_to_fp32(x[i].d);
        const uint8_t *qs = x[i].qs;
        const uint8_t *signs = x[i].signs;
        for (int ib = 0; ib < QK_K / 32; ib++, qs += 8, signs += 4) {
            const uint8_t sc = x[i].scales[ib / 2];
            const float db = d * (float)(1 + 2 * ((ib % 2) ? (sc >> 4) : (sc & 0xf)));
            const uint8_t qh = x[i].qh[ib];
            for (int l = 0; l < 4; l++, y += 8) {
                const int i1 = qs[2 * l] | ((qh << (8 - 2 * l)) & 256);
                const int i2 = qs[2 * l + 1] | ((qh << (7 - 2 * l)) & 256);
                put4(y, db, rl__iq3s_grid[i1], signs[l], 0);
                put4(y + 4, db, rl__iq3s_grid[i2], signs[l], 4);
            }
        }
    }
}

/* IQ1_S (1.56 bpw): 11-bit index into a ternary grid per 8 values; per 32 a 16-bit word
 * of 4 x 3 high index bits, a 3-bit scale and the sign of the shift delta:
 * x = d * (2s + 1) * (grid + delta). */
void rl__dequant_iq1_s(const void *src, float *y, int64_t n) {
    const block_iq1_s *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = rl__fp16_to_fp32(x[i].d);
        const uint8_t *qs = x[i].qs;
        for (int ib = 0; ib < QK_K / 32; ib++, qs += 4) {
            const uint16_t qh = load_le16((const uint8_t *)x[i].qh + 2 * ib);
            const float dl = d * (float)(2 * ((qh >> 12) & 7) + 1);
            const float delta = (qh & 0x8000) ? -RL_IQ1S_DELTA : RL_IQ1S_DELTA;
            for (int l = 0; l < 4; l++, y += 8) {
                const uint64_t g = rl__iq1s_grid[qs[l] | (((qh >> 3 * l) & 7) << 8)];
                for (int j = 0; j < 8; j++) y[j] = dl * ((float)(int8_t)rl__grid_byte64(g, j) + delta);
            }
        }
    }
}

/* The fp16 super-block scale of IQ1_M, spread over the top nibbles of its four 16-bit
 * scale words. */
static inline float iq1m_scale(const uint8_t *scales, uint16_t sc[4]) {
    for (int k = 0; k < 4; k++) sc[k] = load_le16(scales + 2 * k);
    const uint16_t h = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) |
                                  ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
    return rl__fp16_to_fp32(h);
}

/* IQ1_M (1.75 bpw): like IQ1_S with a 3-bit scale per 16 values and a delta sign per 8. */
void rl__dequant_iq1_m(const void *src, float *y, int64_t n) {
    const block_iq1_m *x = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint16_t sc[4];
        const float d = iq1m_scale(x[i].scales, sc);
        const uint8_t *qs = x[i].qs;
        const uint8_t *qh = x[i].qh;
        for (int ib = 0; ib < QK_K / 32; ib++, qs += 4, qh += 2) {
            const float dl[2] = {d * (float)(2 * ((sc[ib / 2] >> (6 * (ib % 2) + 0)) & 7) + 1),
                                 d * (float)(2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 7) + 1)};
            for (int l = 0; l < 4; l++, y += 8) {
                const uint8_t h = qh[l / 2];
                const int idx = qs[l] | (((l % 2) ? (h << 4) : (h << 8)) & 0x700);
                const float delta = (h & ((l % 2) ? 0x80 : 0x08)) ? -RL_IQ1M_DELTA : RL_IQ1M_DELTA;
                const uint64_t g = rl__iq1s_grid[idx];
                for (int j = 0; j < 8; j++)
                    y[j] = dl[l / 2] * ((float)(int8_t)rl__grid_byte64(g, j) + delta);
            }
        }
    }
}
