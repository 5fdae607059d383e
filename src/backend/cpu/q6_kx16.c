/*
 * q6_kx16.c - the plain-C side of the Q6_Kx16 layout (q6_kx16.h): packing, unpacking and
 * the dequantization of one row.
 *
 * Q6_K (blocks.h): in each 128-element half h of a super-block, element 128h + 32s + l
 * (s < 4, l < 32) takes its low 4 bits from ql[64h + l + 32(s & 1)] (the low nibble for
 * s < 2, the high one for s >= 2) and its top 2 bits from bits 2s..2s+1 of qh[32h + l].
 */
#include "q6_kx16.h"

bool rl__q6_kx16_fits(rl_type t, int64_t n) {
    return t == RL_TYPE_Q6_K && n > 0 && n % QK_K == 0;
}

static void block_codes(const block_q6_K *b, uint8_t c[QK_K]) {
    for (int h = 0; h < 2; h++)
        for (int s = 0; s < 4; s++)
            for (int l = 0; l < 32; l++) {
                const uint8_t lb = b->ql[64 * h + l + 32 * (s & 1)];
                const int lo = s < 2 ? lb & 0xf : lb >> 4;
                const int hi = (b->qh[32 * h + l] >> (2 * s)) & 3;
                c[128 * h + 32 * s + l] = (uint8_t)(lo | hi << 4);
            }
}

static void block_set_codes(block_q6_K *b, const uint8_t c[QK_K]) {
    memset(b->ql, 0, sizeof b->ql);
    memset(b->qh, 0, sizeof b->qh);
    for (int h = 0; h < 2; h++)
        for (int s = 0; s < 4; s++)
            for (int l = 0; l < 32; l++) {
                const uint8_t v = c[128 * h + 32 * s + l];
                b->ql[64 * h + l + 32 * (s & 1)] |= (uint8_t)((v & 0xf) << (s < 2 ? 0 : 4));
                b->qh[32 * h + l] |= (uint8_t)((v >> 4) << (2 * s));
            }
}

/* The chunk of super-block g of the tile holding row r (r in a whole tile). */
static size_t chunk_offset(int64_t n, int64_t r, int64_t g) {
    const size_t rb = (size_t)n / QK_K * sizeof(block_q6_K);
    return (size_t)(r - r % Q6_KX16_ROWS) * rb + (size_t)g * Q6_KX16_CHUNK;
}

/* Row r (0..31) of the tile of chunk c as the file's block: group r / 16, lane r % 16. */
static void chunk_block(const uint8_t *c, int r, block_q6_K *b) {
    uint8_t codes[QK_K];
    for (int k = 0; k < 16; k++) {
        const uint8_t *ck = c + 384 * k + 192 * (r / 16) + 4 * (r % 16);
        for (int j = 0; j < 4; j++) {
            int top = 0;
            for (int e = 0; e < 3; e++) {
                codes[16 * k + 4 * e + j] = ck[64 * e + j] & 63;
                top |= (ck[64 * e + j] >> 6) << (2 * e);
            }
            codes[16 * k + 12 + j] = (uint8_t)top;
        }
        b->scales[k] = (int8_t)c[Q6_KX16_SCALES + 32 * k + r];
    }
    block_set_codes(b, codes);
    memcpy(&b->d, c + Q6_KX16_D + 2 * r, 2);
}

void rl__q6_kx16_pack(const void *src, void *dst, int64_t n, int64_t rows) {
    const int64_t nb = n / QK_K;
    const size_t rb = (size_t)nb * sizeof(block_q6_K);
    const int64_t tiled = rows / Q6_KX16_ROWS * Q6_KX16_ROWS;
    const block_q6_K *x = src;
    uint8_t codes[Q6_KX16_ROWS][QK_K];
    for (int64_t t = 0; t < tiled; t += Q6_KX16_ROWS)
        for (int64_t g = 0; g < nb; g++) {
            uint8_t *c = (uint8_t *)dst + chunk_offset(n, t, g);
            for (int r = 0; r < Q6_KX16_ROWS; r++) {
                const block_q6_K *b = &x[(t + r) * nb + g];
                block_codes(b, codes[r]);
                for (int k = 0; k < 16; k++) c[Q6_KX16_SCALES + 32 * k + r] = (uint8_t)b->scales[k];
                memcpy(c + Q6_KX16_D + 2 * r, &b->d, 2);
            }
            for (int k = 0; k < 16; k++)
                for (int r = 0; r < Q6_KX16_ROWS; r++)
                    for (int e = 0; e < 3; e++)
                        for (int j = 0; j < 4; j++) {
                            const uint8_t *cr = codes[r] + 16 * k;
                            c[384 * k + 192 * (r / 16) + 64 * e + 4 * (r % 16) + j] =
                                (uint8_t)(cr[4 * e + j] | ((cr[12 + j] >> (2 * e)) & 3) << 6);
                        }
        }
    if (rows > tiled)
        memcpy((uint8_t *)dst + (size_t)tiled * rb, (const uint8_t *)src + (size_t)tiled * rb,
               (size_t)(rows - tiled) * rb);
}

void rl__q6_kx16_unpack(const void *src, void *dst, int64_t n, int64_t rows) {
    const int64_t nb = n / QK_K;
    const size_t rb = (size_t)nb * sizeof(block_q6_K);
    const int64_t tiled = rows / Q6_KX16_ROWS * Q6_KX16_ROWS;
    block_q6_K *x = dst;
    for (int64_t r = 0; r < tiled; r++)
        for (int64_t g = 0; g < nb; g++)
            chunk_block((const uint8_t *)src + chunk_offset(n, r, g), (int)(r % Q6_KX16_ROWS),
                        &x[r * nb + g]);
    if (rows > tiled)
        memcpy((uint8_t *)dst + (size_t)tiled * rb, (const uint8_t *)src + (size_t)tiled * rb,
               (size_t)(rows - tiled) * rb);
}

void rl__q6_kx16_to_float(const void *x, int64_t n, int64_t rows, int64_t r, float *y) {
    const int64_t nb = n / QK_K;
    const rl__type_traits *tr = rl__type_traits_get(RL_TYPE_Q6_K);
    if (r >= rows / Q6_KX16_ROWS * Q6_KX16_ROWS) {
        tr->to_float((const uint8_t *)x + (size_t)r * (size_t)nb * sizeof(block_q6_K), y, n);
        return;
    }
    for (int64_t g = 0; g < nb; g++) {
        block_q6_K b;
        chunk_block((const uint8_t *)x + chunk_offset(n, r, g), (int)(r % Q6_KX16_ROWS), &b);
        tr->to_float(&b, y + QK_K * g, QK_K);
    }
}
