/*
 * q4_0_avx512.h - the one Q4_0 x Q8_0 arithmetic of the AVX-512 VNNI path, shared by the
 * dot and gemv kernels (dot_avx512.c) and the multi-token tiles (gemm_avx512.c), so that
 * every (row, token) result is bit-identical whichever of them computes it. Include only
 * from files built with the AVX-512 flags.
 *
 * Sixteen blocks make a group, one block per i32 lane: lane i holds block q40_blk(i) of the
 * group. Eight vpdpbusd sum each block's 32 products exactly into its lane (activations as
 * unsigned y ^ 0x80 = y + 128, weight codes as signed q - 8; the weights' term
 * 128 * sum(q - 8) is taken off once per block). Then one conversion, one product of the
 * scales h2f(dx) * dy and one FMA per lane and group, so the float work is per block, not
 * per four elements. The result is reduce_add(lanes) + the blocks after the last whole
 * group, summed one after the other (q40_tail).
 */
#ifndef RL_BACKEND_CPU_Q4_0_AVX512_H
#define RL_BACKEND_CPU_Q4_0_AVX512_H

#include "cpu.h"

#include <immintrin.h>

#define Q40_G 16 /* blocks per group */

/* The loops over registers must unroll so the arrays stay in registers. */
#define Q40_UNROLL _Pragma("GCC unroll 16")

/* Lane i of the transposed registers holds block 4 * (i % 4) + i / 4 (q40_tr16's order). */
static inline __m512i q40_blk_idx(void) {
    return _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
}

/* Sixteen 16-byte rows p + k * stride (k = 0..15) -> out[d]: lane i = dword d of row
 * q40_blk(i). Four 4x4 dword transposes, one per 128-bit lane. */
static inline __attribute__((always_inline)) void q40_tr16(const uint8_t *p, size_t stride,
                                                            __m512i out[4]) {
    __m512i z[4];
    Q40_UNROLL
    for (int j = 0; j < 4; j++) {
        const uint8_t *q = p + (size_t)(4 * j) * stride;
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)q));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(q + stride)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(q + 2 * stride)), 2);
        z[j] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(q + 3 * stride)), 3);
    }
    const __m512i a0 = _mm512_unpacklo_epi32(z[0], z[1]), a1 = _mm512_unpackhi_epi32(z[0], z[1]);
    const __m512i a2 = _mm512_unpacklo_epi32(z[2], z[3]), a3 = _mm512_unpackhi_epi32(z[2], z[3]);
    out[0] = _mm512_unpacklo_epi64(a0, a2);
    out[1] = _mm512_unpackhi_epi64(a0, a2);
    out[2] = _mm512_unpacklo_epi64(a1, a3);
    out[3] = _mm512_unpackhi_epi64(a1, a3);
}

/* The activations of a group of Q8 blocks (codes at qs, stride bytes apart) as eight
 * registers: yt[d] lane i = elements 4d..4d+3 of block q40_blk(i), plus 128. */
static inline __attribute__((always_inline)) void q40_y_group(const int8_t *qs, size_t stride,
                                                               __m512i yt[8]) {
    const __m512i sign = _mm512_set1_epi8((char)0x80);
    q40_tr16((const uint8_t *)qs, stride, yt);
    q40_tr16((const uint8_t *)qs + 16, stride, yt + 4);
    Q40_UNROLL
    for (int d = 0; d < 8; d++) yt[d] = _mm512_xor_si512(yt[d], sign);
}

/* Sixteen fp16 scales at p + k * stride in lane order, as float (one gather of 32-bit
 * words; the upper halves, the next two bytes of each block, are dropped). */
static inline __m512 q40_h16(const void *p, size_t stride) {
    const __m512i off = _mm512_mullo_epi32(q40_blk_idx(), _mm512_set1_epi32((int)stride));
    const __m512i w = _mm512_i32gather_epi32(off, p, 1);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(w));
}

/* A group of Q4_0 weight blocks: the codes q - 8 in the layout of q40_y_group, the
 * negated weight term -128 * sum(q - 8) per block and the scales. */
static inline __attribute__((always_inline)) void q40_w_group(const block_q4_0 *x, __m512i c[8],
                                                               __m512i *negw, __m512 *dx) {
    const __m512i m4 = _mm512_set1_epi8(0x0f), eight = _mm512_set1_epi8(8);
    __m512i t[4];
    q40_tr16(x[0].qs, sizeof(block_q4_0), t);
    Q40_UNROLL
    for (int d = 0; d < 4; d++) {
        c[d] = _mm512_sub_epi8(_mm512_and_si512(t[d], m4), eight);
        c[d + 4] = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(t[d], 4), m4), eight);
    }
    /* bytewise sums of the eight registers' codes q - 8 stay within [-64, 56] */
    const __m512i t01 = _mm512_add_epi8(c[0], c[1]), t23 = _mm512_add_epi8(c[2], c[3]);
    const __m512i t45 = _mm512_add_epi8(c[4], c[5]), t67 = _mm512_add_epi8(c[6], c[7]);
    const __m512i ts = _mm512_add_epi8(_mm512_add_epi8(t01, t23), _mm512_add_epi8(t45, t67));
    *negw = _mm512_sub_epi32(_mm512_setzero_si512(),
                             _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                                 _mm512_set1_epi8((char)0x80), ts));
    *dx = q40_h16(&x[0].d, sizeof(block_q4_0));
}

/* The exact sums of the group's 16 blocks, one per lane; yt: 8 registers' worth of
 * q40_y_group output in memory. */
static inline __attribute__((always_inline)) __m512i q40_isum(const __m512i c[8], __m512i negw,
                                                               const int8_t *yt) {
    __m512i s0 = negw, s1 = _mm512_setzero_si512(); /* two chains of four */
    Q40_UNROLL
    for (int d = 0; d < 8; d += 2) {
        s0 = _mm512_dpbusd_epi32(s0, _mm512_loadu_si512(yt + 64 * d), c[d]);
        s1 = _mm512_dpbusd_epi32(s1, _mm512_loadu_si512(yt + 64 * d + 64), c[d + 1]);
    }
    return _mm512_add_epi32(s0, s1);
}

/* Blocks b0..nb-1 one after the other: tail = fma(sum_b, h2f(dx_b) * dy_b, tail). */
static inline float q40_tail(const block_q4_0 *x, int64_t b0, int64_t nb, const int8_t *yqs,
                             size_t ystride, const float *dy, const rl_fp16 *dyh, size_t dyh_stride) {
    __m128 tail = _mm_setzero_ps();
    for (int64_t b = b0; b < nb; b++) {
        const __m128i q = _mm_loadu_si128((const __m128i *)x[b].qs);
        const __m256i codes = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q),
                                               _mm256_set1_epi8(0x0f));
        const __m256i y = _mm256_loadu_si256((const __m256i *)(yqs + (size_t)b * ystride));
        __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), codes, y);
        p = _mm256_sub_epi32(p, _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(8), y));
        __m128i s = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
        s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
        float yd;
        if (dy) {
            yd = dy[b];
        } else {
            rl_fp16 hd;
            memcpy(&hd, (const uint8_t *)dyh + (size_t)b * dyh_stride, 2);
            yd = _cvtsh_ss(hd);
        }
        const __m128 sc = _mm_mul_ss(_mm_set_ss(_cvtsh_ss(x[b].d)), _mm_set_ss(yd));
        tail = _mm_fmadd_ss(_mm_cvtepi32_ps(s), sc, tail);
    }
    return _mm_cvtss_f32(tail);
}

#endif
