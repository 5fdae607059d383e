/*
 * gemm_avx2.c - multi-token tiles of Q4_0, Q8_0, Q4_K and Q6_K on AVX2 (cpu.h: rl__gemm_*).
 *
 * A tile is GEMM_R weight rows times up to GEMM_T tokens (small: AVX2 has 16 registers).
 * Each weight block is loaded and decoded once per tile and multiplied with the activations
 * of every token of the tile, so a prompt no longer decodes the weights once per token.
 *
 * Every (row, token) output is bit-identical to rl__vec_dot_<t>_avx2 / rl__gemv_<t>_avx2
 * (dot_avx2.c, DOT4_LOOP): the same i32 lane sums per block (pmaddubsw cannot saturate
 * here: |q| <= 15 or <= 127 against |y| <= 127), the same float scale products dx * dy
 * (a broadcast of each factor multiplied is the broadcast of the product), the same FMA
 * order into the same two accumulators and the same reduction.
 */
#include "cpu.h"
#include "prefetch.h"

#include <immintrin.h>

#define GEMM_R RL__GEMM_AVX2_ROWS
#define GEMM_T RL__GEMM_AVX2_TOKS

/* The tile loops must unroll fully so the accumulator arrays live in registers. */
#define UNROLL _Pragma("GCC unroll 8")

#define PF_DIST 4096
static inline void pf_span(const void *p, size_t span) {
    rl__prefetch_lines((const char *)p + PF_DIST, span);
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256 bcast_h(rl_fp16 h) { return _mm256_set1_ps(_cvtsh_ss(h)); }

static inline __m256i unpack_nibbles(const uint8_t *qs) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m256i t = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    return _mm256_and_si256(t, _mm256_set1_epi8(0x0f));
}

static inline __m256i load32(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* The split activation row of token t (matmul.c's layout, cpu.h). */
#define Y_QS(t) ((const int8_t *)(ys + (size_t)(t) * yst))
#define Y_D(t) ((const float *)(ys + (size_t)(t) * yst + (size_t)n))

/* DOT4_LOOP's order: in four-block steps blocks b, b+2 go to acc[0] and b+1, b+3 to
 * acc[1]; the tail blocks go to acc[0]. STEP(c, A) adds block c to acc[A] (A constant). */
#define TILE_LOOP(XT)                                                                              \
    int64_t b = 0;                                                                                 \
    for (; b + 4 <= nb; b += 4) {                                                                  \
        UNROLL                                                                                     \
        for (int r = 0; r < GEMM_R; r++) pf_span(&x[r][b], 4 * sizeof(XT));                       \
        STEP(b, 0);                                                                                \
        STEP(b + 1, 1);                                                                            \
        STEP(b + 2, 0);                                                                            \
        STEP(b + 3, 1);                                                                            \
    }                                                                                              \
    for (; b < nb; b++) STEP(b, 0);

/* Q4_0: sum (q - 8) y per i32 lane = madd(maddubs(q, y) - maddubs(8, y)); the second
 * term belongs to the token and is shared by the rows. */
static inline __attribute__((always_inline)) void
q4_0_tile(const int NT, int64_t n, const void *vx, size_t xst, const uint8_t *ys, size_t yst,
          float *out, size_t ost) {
    const int64_t nb = n / QK4_0;
    const block_q4_0 *x[GEMM_R];
    UNROLL
    for (int r = 0; r < GEMM_R; r++) x[r] = (const block_q4_0 *)((const uint8_t *)vx + r * xst);
    const __m256i eight = _mm256_set1_epi8(8), ones = _mm256_set1_epi16(1);
    __m256 acc[2][GEMM_R][GEMM_T];
    UNROLL
    for (int r = 0; r < GEMM_R; r++)
        UNROLL
        for (int t = 0; t < NT; t++) acc[0][r][t] = acc[1][r][t] = _mm256_setzero_ps();
#define STEP(c, A)                                                                                 \
    do {                                                                                           \
        __m256i w[GEMM_R];                                                                         \
        __m256 xd[GEMM_R];                                                                         \
        UNROLL                                                                                     \
        for (int r = 0; r < GEMM_R; r++) {                                                         \
            w[r] = unpack_nibbles(x[r][c].qs);                                                     \
            xd[r] = bcast_h(x[r][c].d);                                                            \
        }                                                                                          \
        UNROLL                                                                                     \
        for (int t = 0; t < NT; t++) {                                                             \
            const __m256i y = load32(Y_QS(t) + 32 * (c));                                          \
            const __m256i off = _mm256_maddubs_epi16(eight, y);                                    \
            const __m256 yd = _mm256_set1_ps(Y_D(t)[c]);                                           \
            UNROLL                                                                                 \
            for (int r = 0; r < GEMM_R; r++) {                                                     \
                __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(w[r], y), off);                  \
                p = _mm256_madd_epi16(p, ones);                                                    \
                acc[A][r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(xd[r], yd),    \
                                               acc[A][r][t]);                                      \
            }                                                                                      \
        }                                                                                          \
    } while (0)
    TILE_LOOP(block_q4_0)
#undef STEP
    UNROLL
    for (int r = 0; r < GEMM_R; r++)
        UNROLL
        for (int t = 0; t < NT; t++)
            out[(size_t)t * ost + (size_t)r] = hsum8(_mm256_add_ps(acc[0][r][t], acc[1][r][t]));
}

/* Q8_0: madd(maddubs(|x|, y with x's sign)), |x| once per row. */
static inline __attribute__((always_inline)) void
q8_0_tile(const int NT, int64_t n, const void *vx, size_t xst, const uint8_t *ys, size_t yst,
          float *out, size_t ost) {
    const int64_t nb = n / QK8_0;
    const block_q8_0 *x[GEMM_R];
    UNROLL
    for (int r = 0; r < GEMM_R; r++) x[r] = (const block_q8_0 *)((const uint8_t *)vx + r * xst);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[2][GEMM_R][GEMM_T];
    UNROLL
    for (int r = 0; r < GEMM_R; r++)
        UNROLL
        for (int t = 0; t < NT; t++) acc[0][r][t] = acc[1][r][t] = _mm256_setzero_ps();
#define STEP(c, A)                                                                                 \
    do {                                                                                           \
        __m256i w[GEMM_R], wa[GEMM_R];                                                             \
        __m256 xd[GEMM_R];                                                                         \
        UNROLL                                                                                     \
        for (int r = 0; r < GEMM_R; r++) {                                                         \
            w[r] = load32(x[r][c].qs);                                                             \
            wa[r] = _mm256_sign_epi8(w[r], w[r]);                                                  \
            xd[r] = bcast_h(x[r][c].d);                                                            \
        }                                                                                          \
        UNROLL                                                                                     \
        for (int t = 0; t < NT; t++) {                                                             \
            const __m256i y = load32(Y_QS(t) + 32 * (c));                                          \
            const __m256 yd = _mm256_set1_ps(Y_D(t)[c]);                                           \
            UNROLL                                                                                 \
            for (int r = 0; r < GEMM_R; r++) {                                                     \
                __m256i p = _mm256_maddubs_epi16(wa[r], _mm256_sign_epi8(y, w[r]));                \
                p = _mm256_madd_epi16(p, ones);                                                    \
                acc[A][r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(xd[r], yd),    \
                                               acc[A][r][t]);                                      \
            }                                                                                      \
        }                                                                                          \
    } while (0)
    TILE_LOOP(block_q8_0)
#undef STEP
    UNROLL
    for (int r = 0; r < GEMM_R; r++)
        UNROLL
        for (int t = 0; t < NT; t++)
            out[(size_t)t * ost + (size_t)r] = hsum8(_mm256_add_ps(acc[0][r][t], acc[1][r][t]));
}

/* ---- Q4_K and Q6_K: 1 row x up to GEMM_T tokens ---------------------------------------
 * As rl__vec_dot_q4_K_avx2 / rl__vec_dot_q6_K_avx2 (dot_k_avx2.c, which documents the
 * layouts): each 32-element group of codes is unpacked once and multiplied with every
 * token's Q8_K activations; per token the same exact int32 lane sums, the same FMAs per
 * super-block into one accumulator and the same final reduction, so the results are
 * bit-identical to the dot kernels. The activations ys are matmul's Q8_K rows. */

/* vpshufb control that copies word k of each 128-bit lane to all 8 words of the lane. */
static inline __m256i word_bcast(int k) {
    return _mm256_set1_epi16((short)(((2 * k + 1) << 8) | (2 * k)));
}

/* 8 bytes of v, each duplicated, as 16 int16 (one per bsum of 16 elements). */
static inline __m256i dup8_epu8_epi16(uint64_t v) {
    __m128i b = _mm_cvtsi64_si128((long long)v);
    return _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(b, b));
}

/* Q4_K's 6-bit scales and minimums of the 8 sub-blocks, one byte each. */
static inline void k4_scales(const uint8_t b[12], uint64_t *sc, uint64_t *mn) {
    uint32_t u0, u1, u2;
    memcpy(&u0, b, 4);
    memcpy(&u1, b + 4, 4);
    memcpy(&u2, b + 8, 4);
    const uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
    const uint32_t mn_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
    *sc = (u0 & 0x3f3f3f3fu) | ((uint64_t)sc_hi << 32);
    *mn = (u1 & 0x3f3f3f3fu) | ((uint64_t)mn_hi << 32);
}

#define Y_K(t) ((const block_q8_K *)(ys + (size_t)(t) * yst))

static inline __attribute__((always_inline)) void
q4_K_tile(const int NT, int64_t n, const void *vx, size_t xst, const uint8_t *ys, size_t yst,
          float *out, size_t ost) {
    (void)xst;
    const block_q4_K *x = vx;
    const int64_t nb = n / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc[GEMM_T];
    UNROLL
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        pf_span(&x[i], sizeof(block_q4_K));
        uint64_t sc, mn;
        k4_scales(x[i].scales, &sc, &mn);
        const __m256i scw =
            _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
        const __m256i mnw = dup8_epu8_epi16(mn);
        __m256i sum[GEMM_T];
        UNROLL
        for (int t = 0; t < NT; t++) sum[t] = _mm256_setzero_si256();
        UNROLL
        for (int c = 0; c < 4; c++) {
            const __m256i b = load32(x[i].qs + 32 * c);
            const __m256i lo = _mm256_and_si256(b, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(b, 4), m4);
            const __m256i slo = _mm256_shuffle_epi8(scw, word_bcast(2 * c));
            const __m256i shi = _mm256_shuffle_epi8(scw, word_bcast(2 * c + 1));
            UNROLL
            for (int t = 0; t < NT; t++) {
                const int8_t *q8 = Y_K(t)[i].qs + 64 * c;
                __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, load32(q8)), slo);
                __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, load32(q8 + 32)), shi);
                sum[t] = _mm256_add_epi32(sum[t], _mm256_add_epi32(plo, phi));
            }
        }
        const float xd = _cvtsh_ss(x[i].d), xm = _cvtsh_ss(x[i].dmin);
        UNROLL
        for (int t = 0; t < NT; t++) {
            const block_q8_K *y = &Y_K(t)[i];
            const __m256i msum =
                _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), mnw);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum[t]), _mm256_set1_ps(xd * y->d), acc[t]);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(-(xm * y->d)), acc[t]);
        }
    }
    UNROLL
    for (int t = 0; t < NT; t++) out[(size_t)t * ost] = hsum8(acc[t]);
}

/* Q6_K: the 16 int8 scales as [scale 2k in lane 0 | 2k+1 in lane 1] words. */
static inline __m256i even_odd_epi16(__m128i s8) {
    const __m128i eo = _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s8, eo));
}

static inline __attribute__((always_inline)) void
q6_K_tile(const int NT, int64_t n, const void *vx, size_t xst, const uint8_t *ys, size_t yst,
          float *out, size_t ost) {
    (void)xst;
    const block_q6_K *x = vx;
    const int64_t nb = n / QK_K;
    const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
    __m256 acc[GEMM_T];
    UNROLL
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < nb; i++) {
        pf_span(&x[i], sizeof(block_q6_K));
        const __m128i s8 = _mm_loadu_si128((const __m128i *)x[i].scales);
        const __m256i sc_eo = even_odd_epi16(s8), s16 = _mm256_cvtepi8_epi16(s8);
        __m256i sum[GEMM_T];
        UNROLL
        for (int t = 0; t < NT; t++) sum[t] = _mm256_setzero_si256();
        UNROLL
        for (int h = 0; h < 2; h++) {
            const __m256i l0 = load32(x[i].ql + 64 * h), l1 = load32(x[i].ql + 64 * h + 32);
            const __m256i hb = load32(x[i].qh + 32 * h);
            __m256i w[4], sc[4];
            w[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(hb, 4), m30));
            w[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                   _mm256_and_si256(_mm256_slli_epi16(hb, 2), m30));
            w[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                   _mm256_and_si256(hb, m30));
            w[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(hb, 2), m30));
            UNROLL
            for (int j = 0; j < 4; j++) sc[j] = _mm256_shuffle_epi8(sc_eo, word_bcast(4 * h + j));
            UNROLL
            for (int t = 0; t < NT; t++) {
                const int8_t *q8 = Y_K(t)[i].qs + 128 * h;
                UNROLL
                for (int j = 0; j < 4; j++)
                    sum[t] = _mm256_add_epi32(
                        sum[t], _mm256_madd_epi16(_mm256_maddubs_epi16(w[j], load32(q8 + 32 * j)),
                                                  sc[j]));
            }
        }
        const float xd = _cvtsh_ss(x[i].d);
        UNROLL
        for (int t = 0; t < NT; t++) {
            const block_q8_K *y = &Y_K(t)[i];
            const __m256i off = _mm256_slli_epi32(
                _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), s16), 5);
            const __m256i st = _mm256_sub_epi32(sum[t], off);
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(st), _mm256_set1_ps(xd * y->d), acc[t]);
        }
    }
    UNROLL
    for (int t = 0; t < NT; t++) out[(size_t)t * ost] = hsum8(acc[t]);
}

/* One entry point per type; nt (1..GEMM_T) picks a tile specialised at compile time. */
#define DEFINE_GEMM(s)                                                                             \
    void rl__gemm_##s##_avx2(int64_t n, int nt, const void *x, size_t xst, const uint8_t *ys,     \
                             size_t yst, float *out, size_t ost) {                                 \
        switch (nt) {                                                                              \
        case 1: s##_tile(1, n, x, xst, ys, yst, out, ost); break;                                  \
        case 2: s##_tile(2, n, x, xst, ys, yst, out, ost); break;                                  \
        case 3: s##_tile(3, n, x, xst, ys, yst, out, ost); break;                                  \
        default: s##_tile(GEMM_T, n, x, xst, ys, yst, out, ost); break;                            \
        }                                                                                          \
    }
_Static_assert(GEMM_T == 4, "DEFINE_GEMM specialises 1..4 tokens");
DEFINE_GEMM(q4_0)
DEFINE_GEMM(q8_0)
DEFINE_GEMM(q4_K)
DEFINE_GEMM(q6_K)
