/*
 * gemm_avx512.c - multi-token tiles of Q4_0 and Q8_0 on AVX-512 VNNI (cpu.h: rl__gemm_*).
 *
 * A tile is GEMM_R weight rows times up to GEMM_T tokens. Each group of weight blocks
 * is loaded and decoded once into registers and multiplied (vpdpbusd) with the activations
 * of every token of the tile, so a prompt no longer decodes the weights once per token.
 *
 * Every (row, token) output is bit-identical to rl__vec_dot_<t>_avx512 / rl__gemv_<t>_avx512
 * (dot_avx512.c). Q4_0 shares its arithmetic with them through q4_0_avx512.h (one block per
 * lane, groups of 16 blocks). Q8_0: the same two-blocks-per-register layout, the same integer i32 lane sums
 * (computed by an exact integer identity where it saves work), the same float products of
 * the scales and the same FMA order into the same two accumulators, the same odd-block tail
 * and the same final reduction.
 */
#include "cpu.h"
#include "prefetch.h"

#include <immintrin.h>

#include "q4_0_avx512.h"

#define GEMM_R RL__GEMM_AVX512_ROWS
#define GEMM_T RL__GEMM_AVX512_TOKS
#define Q40_T RL__GEMM_AVX512_Q4_0_TOKS

/* The tile loops must unroll fully so the accumulator arrays live in registers (-O2 does
 * not unroll them by itself). */
#define UNROLL _Pragma("GCC unroll 8")

#define PF_DIST 4096
static inline void pf_span(const void *p, size_t span) {
    rl__prefetch_lines((const char *)p + PF_DIST, span);
}

static inline float h2f(rl_fp16 h) { return _cvtsh_ss(h); }

static inline uint64_t pack4_h(const uint8_t *p, size_t stride) {
    uint16_t v0, v1, v2, v3;
    memcpy(&v0, p, 2);
    memcpy(&v1, p + stride, 2);
    memcpy(&v2, p + 2 * stride, 2);
    memcpy(&v3, p + 3 * stride, 2);
    return (uint64_t)v0 | (uint64_t)v1 << 16 | (uint64_t)v2 << 32 | (uint64_t)v3 << 48;
}

static inline __m128 h4f(const void *p, size_t stride) {
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)pack4_h(p, stride)));
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* [s0 x8, s1 x8] and [s2 x8, s3 x8] */
static inline __m512 spread01(__m128 s) {
    return _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                                 _mm512_castps128_ps512(s));
}
static inline __m512 spread23(__m128 s) {
    return _mm512_permutexvar_ps(_mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2),
                                 _mm512_castps128_ps512(s));
}

/* The split activation row of token t (matmul.c's layout, cpu.h). */
#define Y_QS(t) ((const int8_t *)(ys + (size_t)(t) * yst))
#define Y_D(t) ((const float *)(ys + (size_t)(t) * yst + (size_t)n))
#define Y_OFF(t) ((const int32_t *)(Y_D(t) + 2 * (n / 32)))

/* Q4_0 tile of GEMM_R rows x NT tokens in q4_0_avx512.h's arithmetic: each group of 16
 * weight blocks is transposed and unpacked once for all tokens; the activations come
 * transposed per token (rl__gemv_prep_q4_0_avx512, in the offsets area of the split row). */
static inline __attribute__((always_inline)) void
q4_0_tile(const int NT, int64_t n, const void *vx, size_t xst, const uint8_t *ys, size_t yst,
          float *out, size_t ost) {
    const int64_t nb = n / QK4_0, ng = nb / Q40_G;
    const block_q4_0 *x[GEMM_R];
    UNROLL
    for (int r = 0; r < GEMM_R; r++) x[r] = (const block_q4_0 *)((const uint8_t *)vx + r * xst);
    __m512 acc[GEMM_R][Q40_T];
    UNROLL
    for (int r = 0; r < GEMM_R; r++)
        UNROLL
        for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        /* the tokens' scales in lane order, read from memory by the products below */
        float dy[Q40_T][16] __attribute__((aligned(64)));
        UNROLL
        for (int t = 0; t < NT; t++)
            _mm512_store_ps(dy[t], _mm512_permutexvar_ps(q40_blk_idx(),
                                                         _mm512_loadu_ps(Y_D(t) + Q40_G * g)));
        UNROLL
        for (int r = 0; r < GEMM_R; r++) {
            const block_q4_0 *xg = x[r] + Q40_G * g;
            pf_span(xg, Q40_G * sizeof *xg);
            __m512i c[8], negw;
            __m512 dx;
            q40_w_group(xg, c, &negw, &dx);
            UNROLL
            for (int t = 0; t < NT; t++) {
                const __m512i s = q40_isum(c, negw, (const int8_t *)Y_OFF(t) + 512 * g);
                acc[r][t] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dx, _mm512_load_ps(dy[t])), acc[r][t]);
            }
        }
    }
    UNROLL
    for (int r = 0; r < GEMM_R; r++)
        UNROLL
        for (int t = 0; t < NT; t++)
            out[(size_t)t * ost + (size_t)r] =
                _mm512_reduce_add_ps(acc[r][t]) +
                q40_tail(x[r], Q40_G * ng, nb, Y_QS(t), 32, Y_D(t), NULL, 0);
}

/* Q8_0 tile. The single-token kernel sums |x| * (y with x's sign); here the activations
 * are made unsigned instead, y + 128 = y ^ 0x80, and the weights' term 128 * sum(x) is
 * subtracted per row (computed once for all tokens). Both give the exact integer sum of
 * x * y per i32 lane, so the float results are the same. */
static inline __attribute__((always_inline)) void
q8_0_tile(const int NT, int64_t n, const void *vx, size_t xst, const uint8_t *ys, size_t yst,
          float *out, size_t ost) {
    const int64_t nb = n / QK8_0;
    const block_q8_0 *x[GEMM_R];
    UNROLL
    for (int r = 0; r < GEMM_R; r++) x[r] = (const block_q8_0 *)((const uint8_t *)vx + r * xst);
    const __m512i sign = _mm512_set1_epi8((char)0x80);
    __m512 acc0[GEMM_R][GEMM_T], acc1[GEMM_R][GEMM_T];
    UNROLL
    for (int r = 0; r < GEMM_R; r++)
        UNROLL
        for (int t = 0; t < NT; t++) acc0[r][t] = acc1[r][t] = _mm512_setzero_ps();
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        __m512i w0[GEMM_R], w1[GEMM_R], n0[GEMM_R], n1[GEMM_R];
        __m512 xs01[GEMM_R], xs23[GEMM_R];
        UNROLL
        for (int r = 0; r < GEMM_R; r++) {
            pf_span(&x[r][b], 4 * sizeof(block_q8_0));
            w0[r] = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x[r][b].qs)),
                _mm256_loadu_si256((const __m256i *)x[r][b + 1].qs), 1);
            w1[r] = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x[r][b + 2].qs)),
                _mm256_loadu_si256((const __m256i *)x[r][b + 3].qs), 1);
            n0[r] = _mm512_sub_epi32(_mm512_setzero_si512(),
                                     _mm512_dpbusd_epi32(_mm512_setzero_si512(), sign, w0[r]));
            n1[r] = _mm512_sub_epi32(_mm512_setzero_si512(),
                                     _mm512_dpbusd_epi32(_mm512_setzero_si512(), sign, w1[r]));
            __m128 d4 = h4f(&x[r][b].d, sizeof(block_q8_0));
            xs01[r] = spread01(d4);
            xs23[r] = spread23(d4);
        }
        UNROLL
        for (int t = 0; t < NT; t++) {
            const __m512i y0 = _mm512_xor_si512(_mm512_loadu_si512(Y_QS(t) + 32 * b), sign);
            const __m512i y1 = _mm512_xor_si512(_mm512_loadu_si512(Y_QS(t) + 32 * (b + 2)), sign);
            const __m128 d4 = _mm_loadu_ps(Y_D(t) + b);
            const __m512 ys01 = spread01(d4), ys23 = spread23(d4);
            UNROLL
            for (int r = 0; r < GEMM_R; r++) {
                __m512i p0 = _mm512_dpbusd_epi32(n0[r], y0, w0[r]);
                __m512i p1 = _mm512_dpbusd_epi32(n1[r], y1, w1[r]);
                acc0[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), _mm512_mul_ps(xs01[r], ys01),
                                             acc0[r][t]);
                acc1[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), _mm512_mul_ps(xs23[r], ys23),
                                             acc1[r][t]);
            }
        }
    }
    UNROLL
    for (int r = 0; r < GEMM_R; r++)
        UNROLL
        for (int t = 0; t < NT; t++) {
            __m256 acc = _mm256_setzero_ps();
            for (int64_t c = b; c < nb; c++) {
                __m256i xv = _mm256_loadu_si256((const __m256i *)x[r][c].qs);
                __m256i yv = _mm256_loadu_si256((const __m256i *)(Y_QS(t) + 32 * c));
                __m256i sy =
                    _mm256_mask_sub_epi8(yv, _mm256_movepi8_mask(xv), _mm256_setzero_si256(), yv);
                __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(xv), sy);
                acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p),
                                      _mm256_set1_ps(h2f(x[r][c].d) * Y_D(t)[c]), acc);
            }
            out[(size_t)t * ost + (size_t)r] =
                _mm512_reduce_add_ps(_mm512_add_ps(acc0[r][t], acc1[r][t])) + hsum8(acc);
        }
}

/* ---- Q4_K: 1 row x up to GEMM_T tokens (the decoded super-block takes 8 registers) ----
 * As rl__vec_dot_q4_K_avx512 (dot_k_avx512.c, which documents the layout): the codes of a
 * super-block unpacked into four zmm, the scale and min words, then per token the exact
 * int32 sums and the same two FMAs per super-block. */
#define R4(v) v, v, v, v
static const uint16_t k32_pack[2][32] __attribute__((aligned(64))) = {
    {R4(0), R4(2), R4(0), R4(2), R4(1), R4(3), R4(1), R4(3)},
    {R4(4), R4(6), R4(4), R4(6), R4(5), R4(7), R4(5), R4(7)},
};
#undef R4

static inline __m512i k4_nibbles(const uint8_t *qs, int c, __m512i m4) {
    const __m512i b = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * c)));
    return _mm512_and_si512(_mm512_mask_srli_epi16(b, 0xffff0000u, b, 4), m4);
}

static inline __m256i k4_scale_min_words(const uint8_t *b) {
    const __m128i ctl_p = _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11);
    const __m128i ctl_q = _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7);
    const __m128i cnt_p = _mm_setr_epi16(0, 0, 0, 0, 0, 0, 4, 4);
    const __m128i m_p =
        _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15);
    const __m128i v = _mm_loadu_si128((const __m128i *)b);
    const __m128i p = _mm_srlv_epi16(_mm_shuffle_epi8(v, ctl_p), cnt_p);
    const __m128i q = _mm_and_si128(_mm_srli_epi16(_mm_shuffle_epi8(v, ctl_q), 2),
                                    _mm_set1_epi8(0x30));
    return _mm256_cvtepu8_epi16(_mm_ternarylogic_epi32(p, m_p, q, 0xea));
}

static inline __attribute__((always_inline)) void
q4_K_tile(const int NT, int64_t n, const void *vx, size_t xst, const uint8_t *ys, size_t yst,
          float *out, size_t ost) {
    (void)xst;
    const block_q4_K *x = vx;
    const int64_t nb = n / QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    const __m512i pa = _mm512_load_si512(k32_pack[0]), pb = _mm512_load_si512(k32_pack[1]);
    const __m256i mdup =
        _mm256_setr_epi16(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    const block_q8_K *y[GEMM_T];
    __m512 acc[GEMM_T];
    __m256 accm[GEMM_T];
    UNROLL
    for (int t = 0; t < NT; t++) {
        y[t] = (const block_q8_K *)(ys + (size_t)t * yst);
        acc[t] = _mm512_setzero_ps();
        accm[t] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < nb; i++) {
        pf_span(&x[i], sizeof(block_q4_K));
        const __m256i sm = k4_scale_min_words(x[i].scales);
        const __m512i scw = _mm512_castsi256_si512(sm);
        const __m512i w0 = k4_nibbles(x[i].qs, 0, m4), w1 = k4_nibbles(x[i].qs, 1, m4);
        const __m512i w2 = k4_nibbles(x[i].qs, 2, m4), w3 = k4_nibbles(x[i].qs, 3, m4);
        const __m512i sa = _mm512_permutexvar_epi16(pa, scw), sb = _mm512_permutexvar_epi16(pb, scw);
        const __m256i mins = _mm256_permutexvar_epi16(mdup, sm);
        uint32_t u;
        memcpy(&u, &x[i].d, 4);
        const __m128 xdm = _mm_cvtph_ps(_mm_cvtsi32_si128((int)u));
        UNROLL
        for (int t = 0; t < NT; t++) {
            const int8_t *q8 = y[t][i].qs;
            const __m512i z = _mm512_setzero_si512();
            const __m512i r0 = _mm512_dpbusd_epi32(z, w0, _mm512_loadu_si512(q8));
            const __m512i r1 = _mm512_dpbusd_epi32(z, w1, _mm512_loadu_si512(q8 + 64));
            const __m512i r2 = _mm512_dpbusd_epi32(z, w2, _mm512_loadu_si512(q8 + 128));
            const __m512i r3 = _mm512_dpbusd_epi32(z, w3, _mm512_loadu_si512(q8 + 192));
            __m512i sum = _mm512_dpwssd_epi32(z, _mm512_packs_epi32(r0, r1), sa);
            sum = _mm512_dpwssd_epi32(sum, _mm512_packs_epi32(r2, r3), sb);
            const __m256i bs = _mm256_loadu_si256((const __m256i *)y[t][i].bsums);
            const __m256i msum = _mm256_madd_epi16(bs, mins);
            const __m128 dm = _mm_mul_ps(xdm, _mm_set1_ps(y[t][i].d));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_broadcastss_ps(dm), acc[t]);
            accm[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum),
                                      _mm256_broadcastss_ps(_mm_movehdup_ps(dm)), accm[t]);
        }
    }
    UNROLL
    for (int t = 0; t < NT; t++) {
        __m256 v = accm[t];
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        out[(size_t)t * ost] = _mm512_reduce_add_ps(acc[t]) - _mm_cvtss_f32(s);
    }
}

/* ---- Q6_K: 1 row x up to Q6K_T tokens, as rl__vec_dot_q6_K_avx512 (dot_k_avx512.c). Eight
 * tokens, not four: decoding a super-block's 6-bit codes costs more than one token's products
 * with them, and a server's decode step of 8 sequences multiplies its Q6_K output head (the
 * largest matrix of a Q4_0/Q4_K_M model) with 8 rows at once. */
#define Q6K_T RL__GEMM_AVX512_Q6_K_TOKS
#define R4(v) v, v, v, v
static const uint16_t k16_pack[2][32] __attribute__((aligned(64))) = {
    {R4(0), R4(4), R4(1), R4(5), R4(2), R4(6), R4(3), R4(7)},
    {R4(8), R4(12), R4(9), R4(13), R4(10), R4(14), R4(11), R4(15)},
};
#undef R4

/* Codes of elements 128h.. (lo) and 128h+64.. (hi) of a Q6_K block (dot_k_avx512.c). */
static inline void q6k_codes(const block_q6_K *b, int h, __m512i m4, __m512i m30, __m512i *lo,
                             __m512i *hi) {
    const __m512i l = _mm512_loadu_si512(b->ql + 64 * h);
    const __m512i q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)));
    const __m512i hz = _mm512_mask_srli_epi16(q, 0xffff0000u, q, 2);
    const __m512i hlo = _mm512_and_si512(_mm512_slli_epi16(hz, 4), m30);
    const __m512i hhi = _mm512_and_si512(hz, m30);
    *lo = _mm512_ternarylogic_epi32(l, hlo, m4, 0xec);
    *hi = _mm512_ternarylogic_epi32(_mm512_srli_epi16(l, 4), hhi, m4, 0xec);
}

static inline __attribute__((always_inline)) void
q6_K_tile(const int NT, int64_t n, const void *vx, size_t xst, const uint8_t *ys, size_t yst,
          float *out, size_t ost) {
    (void)xst;
    const block_q6_K *x = vx;
    const int64_t nb = n / QK_K;
    const __m512i m4 = _mm512_set1_epi8(0x0f), m30 = _mm512_set1_epi8(0x30);
    const __m512i pa = _mm512_load_si512(k16_pack[0]), pb = _mm512_load_si512(k16_pack[1]);
    const block_q8_K *y[Q6K_T];
    __m512 acc[Q6K_T];
    UNROLL
    for (int t = 0; t < NT; t++) {
        y[t] = (const block_q8_K *)(ys + (size_t)t * yst);
        acc[t] = _mm512_setzero_ps();
    }
    for (int64_t i = 0; i < nb; i++) {
        pf_span(&x[i], sizeof(block_q6_K));
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)x[i].scales));
        const __m512i scw = _mm512_castsi256_si512(sc16);
        __m512i w0, w1, w2, w3;
        q6k_codes(&x[i], 0, m4, m30, &w0, &w1);
        q6k_codes(&x[i], 1, m4, m30, &w2, &w3);
        const __m512i sa = _mm512_permutexvar_epi16(pa, scw), sb = _mm512_permutexvar_epi16(pb, scw);
        const __m512 xd = _mm512_cvtph_ps(_mm256_set1_epi16((short)x[i].d));
        UNROLL
        for (int t = 0; t < NT; t++) {
            const int8_t *q8 = y[t][i].qs;
            const __m512i z = _mm512_setzero_si512();
            const __m512i r0 = _mm512_dpbusd_epi32(z, w0, _mm512_loadu_si512(q8));
            const __m512i r1 = _mm512_dpbusd_epi32(z, w1, _mm512_loadu_si512(q8 + 64));
            const __m512i r2 = _mm512_dpbusd_epi32(z, w2, _mm512_loadu_si512(q8 + 128));
            const __m512i r3 = _mm512_dpbusd_epi32(z, w3, _mm512_loadu_si512(q8 + 192));
            __m512i sum = _mm512_dpwssd_epi32(z, _mm512_packs_epi32(r0, r1), sa);
            sum = _mm512_dpwssd_epi32(sum, _mm512_packs_epi32(r2, r3), sb);
            const __m256i bs = _mm256_loadu_si256((const __m256i *)y[t][i].bsums);
            const __m256i off = _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5);
            sum = _mm512_sub_epi32(sum, _mm512_zextsi256_si512(off));
            acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum),
                                     _mm512_mul_ps(xd, _mm512_set1_ps(y[t][i].d)), acc[t]);
        }
    }
    UNROLL
    for (int t = 0; t < NT; t++) out[(size_t)t * ost] = _mm512_reduce_add_ps(acc[t]);
}

/* One entry point per type; nt (1..GEMM_T) picks a tile specialised at compile time. */
#define DEFINE_GEMM(s)                                                                             \
    void rl__gemm_##s##_avx512(int64_t n, int nt, const void *x, size_t xst, const uint8_t *ys,   \
                               size_t yst, float *out, size_t ost) {                               \
        switch (nt) {                                                                              \
        case 1: s##_tile(1, n, x, xst, ys, yst, out, ost); break;                                  \
        case 2: s##_tile(2, n, x, xst, ys, yst, out, ost); break;                                  \
        case 3: s##_tile(3, n, x, xst, ys, yst, out, ost); break;                                  \
        default: s##_tile(GEMM_T, n, x, xst, ys, yst, out, ost); break;                            \
        }                                                                                          \
    }
_Static_assert(GEMM_T == 4, "DEFINE_GEMM specialises 1..4 tokens");
DEFINE_GEMM(q8_0)
DEFINE_GEMM(q4_K)

/* The same for the tiles of up to 8 tokens (T: the widest). */
#define DEFINE_GEMM8(s, T)                                                                         \
    void rl__gemm_##s##_avx512(int64_t n, int nt, const void *x, size_t xst, const uint8_t *ys,   \
                               size_t yst, float *out, size_t ost) {                               \
        switch (nt) {                                                                              \
        case 1: s##_tile(1, n, x, xst, ys, yst, out, ost); break;                                  \
        case 2: s##_tile(2, n, x, xst, ys, yst, out, ost); break;                                  \
        case 3: s##_tile(3, n, x, xst, ys, yst, out, ost); break;                                  \
        case 4: s##_tile(4, n, x, xst, ys, yst, out, ost); break;                                  \
        case 5: s##_tile(5, n, x, xst, ys, yst, out, ost); break;                                  \
        case 6: s##_tile(6, n, x, xst, ys, yst, out, ost); break;                                  \
        case 7: s##_tile(7, n, x, xst, ys, yst, out, ost); break;                                  \
        default: s##_tile(T, n, x, xst, ys, yst, out, ost); break;                                 \
        }                                                                                          \
    }
_Static_assert(Q6K_T == 8 && Q40_T == 8, "DEFINE_GEMM8 specialises 1..8 tokens");
DEFINE_GEMM8(q6_K, Q6K_T)
DEFINE_GEMM8(q4_0, Q40_T)
