/*
 * q6_kx16_avx512.c - the Q6_K tile of AVX-512 VNNI over the repacked Q6_Kx16 layout
 * (q6_kx16.h): 32 rows (two groups of 16, one row per i32 lane) x up to 8 tokens.
 *
 * Per sub-block k of 16 elements and group: the three 64-byte code registers of the chunk
 * give four registers of codes 0..63 (e < 3: the byte & 63; e = 3: the top two bits of the
 * three, gathered), each holding four consecutive elements of each of the 16 rows. Per
 * token, vpdpbusd multiplies them with the token's four activations of those elements
 * broadcast to every lane (one broadcast for both groups: broadcasts, not products, bound
 * a 16-row tile, 32 rows measured +15% at 8 tokens, +33% at 4 in L2), starting from
 * -32 * bsum_k: the exact sum_j (c_j - 32) y_j of each row's sub-block. vpmulld by the
 * rows' scales and vpaddd accumulate the super-block's exact int32 sum (|sum| <= 16 *
 * 128 * 16 * 32 * 128 < 2^31). Once per super-block, token and 16 rows: (d_x * d_y) *
 * (float)isum added to the token's sums, as the plain-C reference does (no FMA: the
 * library builds with -ffp-contract=off), so each result equals rl__vec_dot_q6_K_ref's bit
 * for bit.
 */
#include "q6_kx16.h"

#include <immintrin.h>

#define UNROLL _Pragma("GCC unroll 16")
#define TT Q6_KX16_TOKS

/* Software prefetch distance of the weights in bytes: a tile reads its chunks in memory
 * order. One to three tokens: 8 KiB ahead, as dot_k_avx512.c's k-quant kernels (4, 12, 24
 * KiB no better on the 128,256 x 2,048 head under load; none: a third of the rate). Four or
 * more tokens take longer per chunk, and 16 KiB kept the lines coming: 8 tokens 1.7-1.85x
 * -> 2.0-2.4x the GGUF tile's rate (32 KiB: the same). Each line is asked for twice, at the
 * distance and at half of it (a prefetch the core drops while its miss buffers are full
 * gets a second chance): 1 to 4 tokens ~4% faster, alternating A/B under load ~3. */
#define PF_DIST(nt) ((nt) >= 4 ? 16384 : 8192)

/* (a & c) | (b & ~c) and (a & c) | b, as vpternlogd immediates (a, b, c = bits 2, 1, 0 of
 * the truth table's index). */
#define TL_SELECT 0xe4
#define TL_AC_OR_B 0xec

static inline __attribute__((always_inline)) __m512i bcast32(const int8_t *p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm512_set1_epi32(v);
}

/* The four code registers of one group of sub-block k (ck: its 192 bytes). */
static inline __attribute__((always_inline)) void codes(const uint8_t *ck, __m512i w[4]) {
    const __m512i m3f = _mm512_set1_epi8(0x3f), m03 = _mm512_set1_epi8(0x03);
    const __m512i m30 = _mm512_set1_epi8(0x30), m0f = _mm512_set1_epi8(0x0f);
    const __m512i a = _mm512_loadu_si512(ck), b = _mm512_loadu_si512(ck + 64);
    const __m512i e = _mm512_loadu_si512(ck + 128);
    w[0] = _mm512_and_si512(a, m3f);
    w[1] = _mm512_and_si512(b, m3f);
    w[2] = _mm512_and_si512(e, m3f);
    /* bits 0-1 from a's bits 6-7, 2-3 from b's, 4-5 from e's (16-bit shifts: the bits a
     * byte takes from its neighbour are masked off) */
    const __m512i ab = _mm512_ternarylogic_epi32(_mm512_srli_epi16(a, 6), _mm512_srli_epi16(b, 4),
                                                 m03, TL_SELECT);
    w[3] = _mm512_ternarylogic_epi32(ab, _mm512_and_si512(_mm512_srli_epi16(e, 2), m30), m0f,
                                     TL_AC_OR_B);
}

static inline __attribute__((always_inline)) void tile(const int NT, int64_t n, const uint8_t *x,
                                                       const uint8_t *ys, size_t yst, float *out,
                                                       size_t ost) {
    const int64_t nb = n / QK_K;
    __m512 acc[2][TT];
    UNROLL
    for (int t = 0; t < NT; t++) acc[0][t] = acc[1][t] = _mm512_setzero_ps();
    for (int64_t g = 0; g < nb; g++) {
        const uint8_t *c = x + (size_t)g * Q6_KX16_CHUNK;
        const block_q8_K *y[TT];
        /* per token the 16 sub-blocks' -32 * bsum, read back broadcast below */
        int32_t off[TT][16] __attribute__((aligned(64)));
        __m512i isum[2][TT];
        UNROLL
        for (int t = 0; t < NT; t++) {
            y[t] = (const block_q8_K *)(ys + (size_t)t * yst) + g;
            const __m512i bs =
                _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)y[t]->bsums));
            _mm512_store_si512(off[t], _mm512_sub_epi32(_mm512_setzero_si512(),
                                                        _mm512_slli_epi32(bs, 5)));
            isum[0][t] = isum[1][t] = _mm512_setzero_si512();
        }
        for (int k = 0; k < 16; k++) {
            const uint8_t *ck = c + 384 * k;
            UNROLL
            for (int l = 0; l < 6; l++) {
                _mm_prefetch((const char *)ck + PF_DIST(NT) + 64 * l, _MM_HINT_T0);
                _mm_prefetch((const char *)ck + PF_DIST(NT) / 2 + 64 * l, _MM_HINT_T0);
            }
            __m512i w[2][4];
            codes(ck, w[0]);
            codes(ck + 192, w[1]);
            const __m512i sc0 = _mm512_cvtepi8_epi32(
                _mm_loadu_si128((const __m128i *)(c + Q6_KX16_SCALES + 32 * k)));
            const __m512i sc1 = _mm512_cvtepi8_epi32(
                _mm_loadu_si128((const __m128i *)(c + Q6_KX16_SCALES + 32 * k + 16)));
            UNROLL
            for (int t = 0; t < NT; t++) {
                const int8_t *q = y[t]->qs + 16 * k;
                __m512i s0 = _mm512_set1_epi32(off[t][k]), s1 = s0;
                UNROLL
                for (int e = 0; e < 4; e++) {
                    const __m512i yb = bcast32(q + 4 * e);
                    s0 = _mm512_dpbusd_epi32(s0, w[0][e], yb);
                    s1 = _mm512_dpbusd_epi32(s1, w[1][e], yb);
                }
                isum[0][t] = _mm512_add_epi32(isum[0][t], _mm512_mullo_epi32(s0, sc0));
                isum[1][t] = _mm512_add_epi32(isum[1][t], _mm512_mullo_epi32(s1, sc1));
            }
        }
        UNROLL
        for (int l = 0; l < 9; l++)
        {
            const char *p = (const char *)c + Q6_KX16_SCALES + 64 * l;
            _mm_prefetch(p + PF_DIST(NT), _MM_HINT_T0);
            _mm_prefetch(p + PF_DIST(NT) / 2, _MM_HINT_T0);
        }
        UNROLL
        for (int h = 0; h < 2; h++) {
            const __m512 dx =
                _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(c + Q6_KX16_D + 32 * h)));
            UNROLL
            for (int t = 0; t < NT; t++)
                acc[h][t] = _mm512_add_ps(
                    acc[h][t], _mm512_mul_ps(_mm512_mul_ps(dx, _mm512_set1_ps(y[t]->d)),
                                             _mm512_cvtepi32_ps(isum[h][t])));
        }
    }
    UNROLL
    for (int t = 0; t < NT; t++) {
        _mm512_storeu_ps(out + (size_t)t * ost, acc[0][t]);
        _mm512_storeu_ps(out + (size_t)t * ost + 16, acc[1][t]);
    }
}

void rl__gemm_q6_kx16_avx512(int64_t n, int nt, const void *x, size_t xst, const uint8_t *ys,
                             size_t yst, float *out, size_t ost) {
    (void)xst; /* a tile's rows are interleaved (q6_kx16.h) */
    /* nt specialised at compile time (the accumulators must be registers) */
#define CASE(k)                                                                                \
    case k: tile(k, n, x, ys, yst, out, ost); break;
    switch (nt) {
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7)
    default: tile(TT, n, x, ys, yst, out, ost); break;
    }
#undef CASE
}
_Static_assert(TT == 8, "rl__gemm_q6_kx16_avx512 specialises 1..8 tokens");
