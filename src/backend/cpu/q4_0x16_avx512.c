/*
 * q4_0x16_avx512.c - Q4_0 kernels of AVX-512 VNNI over the repacked Q4_0x16 layout
 * (q4_0x16.h): the gemv of one token, its activation prep, and the multi-token tile.
 *
 * A group of 16 blocks is one chunk: four 64-byte loads of codes (register d, lane i:
 * code bytes 4d..4d+3 of block Q4_0X16_BLK(i)), split into low nibbles (elements 4d..4d+3)
 * and high nibbles (elements 16+4d..) as unsigned bytes 0..15, and one 32-byte load of
 * the 16 scales. vpdpbusd multiplies them, as its unsigned operand, with the activations as its
 * signed operand straight from memory (the prep transposed them into the same lanes),
 * starting from -8 * sum(y) per block: the exact integer sum_j (q_j - 8) y_j of each
 * block in its lane. The float work is q4_0_avx512.h's: one conversion, the product
 * h2f(dx) * dy and one FMA per lane and group, the groups in order, then the reduction of
 * the 16 lanes; so every result equals rl__gemv_q4_0_avx512's on the GGUF layout.
 */
#include "q4_0x16.h"

#include <immintrin.h>

#include "q4_0_avx512.h"

#define UNROLL _Pragma("GCC unroll 16")

/* Software prefetch of the weights, in bytes ahead of the chunk being read. A kernel reads
 * its chunks in memory order (a plain row, or a tile's interleaved rows), so the chunks'
 * prefetches cover the stream without holes. */
#define PF_DIST 4096

/* Prep: per group 512 bytes of transposed codes, then 16 x int32 of -8 * sum(y). */
#define GROUP_OFF 576

void rl__gemv_prep_q4_0x16_avx512(const int8_t *yqs, int64_t n, int32_t *yoff) {
    uint8_t *out = (uint8_t *)yoff;
    const __m512i ones = _mm512_set1_epi8(1);
    for (int64_t g = 0; g < n / Q4_0X16_GROUP_COLS; g++) {
        __m512i yt[8];
        q40_tr16((const uint8_t *)yqs + 512 * g, 32, yt);
        q40_tr16((const uint8_t *)yqs + 512 * g + 16, 32, yt + 4);
        __m512i s = _mm512_setzero_si512();
        UNROLL
        for (int d = 0; d < 8; d++) {
            _mm512_storeu_si512(out + GROUP_OFF * g + 64 * d, yt[d]);
            s = _mm512_dpbusd_epi32(s, ones, yt[d]);
        }
        _mm512_storeu_si512(out + GROUP_OFF * g + 512,
                            _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(s, 3)));
    }
}

/* The codes of a chunk as 8 registers of unsigned nibbles, and its scales. */
static inline __attribute__((always_inline)) void w_group(const uint8_t *c, __m512i w[8],
                                                          __m512 *dx) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    UNROLL
    for (int d = 0; d < 4; d++) {
        const __m512i v = _mm512_loadu_si512(c + 64 * d);
        w[d] = _mm512_and_si512(v, m4);
        w[d + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    }
    *dx = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(c + 256)));
}

static inline void pf_chunk(const uint8_t *c) {
    UNROLL
    for (int k = 0; k < 5; k++) _mm_prefetch((const char *)c + PF_DIST + 64 * k, _MM_HINT_T0);
}

/* The exact per-block sums of a group: yg = the prep's group (codes, then -8 * sum(y)). */
static inline __attribute__((always_inline)) __m512i isum(const __m512i c[8], const uint8_t *yg) {
    __m512i s0 = _mm512_loadu_si512(yg + 512), s1 = _mm512_setzero_si512();
    UNROLL
    for (int d = 0; d < 8; d += 2) {
        s0 = _mm512_dpbusd_epi32(s0, c[d], _mm512_loadu_si512(yg + 64 * d));
        s1 = _mm512_dpbusd_epi32(s1, c[d + 1], _mm512_loadu_si512(yg + 64 * d + 64));
    }
    return _mm512_add_epi32(s0, s1);
}

float rl__gemv_q4_0x16_avx512(int64_t n, const void *vx, const int8_t *yqs, const float *yd,
                              const float *ys, const int32_t *yoff) {
    (void)yqs;
    (void)ys;
    const uint8_t *row = vx, *yt = (const uint8_t *)yoff;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t g = 0; g < n / Q4_0X16_GROUP_COLS; g++) {
        const uint8_t *c = row + Q4_0X16_CHUNK * g;
        pf_chunk(c);
        __m512i w[8];
        __m512 dx;
        w_group(c, w, &dx);
        const __m512 dy = _mm512_permutexvar_ps(q40_blk_idx(), _mm512_loadu_ps(yd + 16 * g));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum(w, yt + GROUP_OFF * g)),
                              _mm512_mul_ps(dx, dy), acc);
    }
    /* + 0.0f: the GGUF-layout kernel adds its (empty) tail the same way, which turns a
     * -0.0 sum into +0.0 */
    return _mm512_reduce_add_ps(acc) + 0.0f;
}

#ifndef TT
#define TT RL__GEMM_Q4_0X16_TOKS
#endif
#define TR Q4_0X16_ROWS

/* The split activation row of token t (matmul.c's layout, cpu.h). */
#define Y_D(t) ((const float *)(ys + (size_t)(t) * yst + (size_t)n))
#define Y_OFF(t) ((const uint8_t *)(Y_D(t) + 2 * (n / 32)))

/* The TR interleaved rows of a tile x NT tokens: each chunk is loaded and split once for
 * all tokens. */
static inline __attribute__((always_inline)) void tile(const int NT, int64_t n, const void *vx,
                                                       const uint8_t *ys, size_t yst, float *out,
                                                       size_t ost) {
    const uint8_t *x = vx;
    __m512 acc[TR][TT];
    UNROLL
    for (int r = 0; r < TR; r++)
        UNROLL
        for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t g = 0; g < n / Q4_0X16_GROUP_COLS; g++) {
        /* the tokens' scales in lane order, read from memory by the products below */
        float dy[TT][16] __attribute__((aligned(64)));
        UNROLL
        for (int t = 0; t < NT; t++)
            _mm512_store_ps(dy[t], _mm512_permutexvar_ps(q40_blk_idx(),
                                                         _mm512_loadu_ps(Y_D(t) + 16 * g)));
        UNROLL
        for (int r = 0; r < TR; r++) {
            const uint8_t *c = x + Q4_0X16_CHUNK * (TR * g + r);
            pf_chunk(c);
            __m512i w[8];
            __m512 dx;
            w_group(c, w, &dx);
            UNROLL
            for (int t = 0; t < NT; t++) {
                const __m512i s = isum(w, Y_OFF(t) + GROUP_OFF * g);
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s),
                                            _mm512_mul_ps(dx, _mm512_load_ps(dy[t])), acc[r][t]);
            }
        }
    }
    UNROLL
    for (int r = 0; r < TR; r++)
        UNROLL
        for (int t = 0; t < NT; t++)
            out[(size_t)t * ost + (size_t)r] = _mm512_reduce_add_ps(acc[r][t]) + 0.0f;
}

void rl__gemm_q4_0x16_avx512(int64_t n, int nt, const void *x, size_t xst, const uint8_t *ys,
                             size_t yst, float *out, size_t ost) {
    (void)xst; /* a tile's rows are interleaved (q4_0x16.h) */
    /* nt specialised at compile time (the accumulators must be registers) */
#define CASE(k)                                                                                \
    case k: tile((k) <= TT ? (k) : TT, n, x, ys, yst, out, ost); break;
    switch (nt) {
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
        CASE(9) CASE(10) CASE(11) CASE(12) CASE(13) CASE(14) CASE(15)
    default: tile(TT, n, x, ys, yst, out, ost); break;
    }
#undef CASE
}
_Static_assert(TT <= 16, "rl__gemm_q4_0x16_avx512 specialises 1..16 tokens");
