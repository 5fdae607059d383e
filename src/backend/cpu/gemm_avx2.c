/*
 * gemm_avx2.c - multi-token tiles of Q4_0 and Q8_0 on AVX2 (cpu.h: rl__gemm_*).
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

#include <immintrin.h>

#define GEMM_R RL__GEMM_AVX2_ROWS
#define GEMM_T RL__GEMM_AVX2_TOKS

/* The tile loops must unroll fully so the accumulator arrays live in registers. */
#define UNROLL _Pragma("GCC unroll 8")

#define PF_DIST 4096
static inline void pf_span(const void *p, size_t span) {
    for (size_t o = 0; o < span; o += 64) _mm_prefetch((const char *)p + PF_DIST + o, _MM_HINT_T0);
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
