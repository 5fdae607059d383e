/*
 * fgemm_avx512.c - F16/BF16 (and F32) weights times F32 activations on AVX-512 (cpu.h:
 * rl__fgemm_*).
 *
 * A register tile of R = 4 weight rows times up to T = 6 tokens: 24 accumulators of 16
 * lanes, lane l summing the products of the columns k = l (mod 16) in order. Per step of
 * 16 columns the tile widens 16 weights of each row once (vcvtph2ps, or a shift for BF16)
 * and loads 16 activations of each token once, for 24 FMAs: each weight feeds up to 6
 * tokens and each activation 4 rows, straight from the row-major weights and activations
 * (no packing). Columns are taken in blocks of KC: at the end of a block each accumulator is
 * reduced to a float by reduce4() and added to y, blocks in order. The row blocks of a
 * thread's chunk reuse one block of activations from L1/L2 (cache blocking after Goto and
 * van de Geijn, "Anatomy of high-performance matrix multiplication", ACM TOMS 34(3), 2008).
 *
 * Every (row, token) result is computed by the same operations in the same order whatever
 * rows and tokens share its tile, so a token's result does not depend on the batch: a
 * prompt processed at once equals token by token, bit for bit. Against the double-sum
 * reference (fgemm_ref.c) it differs by F32 rounding only.
 */
#include "cpu.h"

#include <immintrin.h>

#define R RL__FGEMM_AVX512_R
#define T RL__FGEMM_AVX512_T
#define KC RL__FGEMM_AVX512_KC
_Static_assert(R == 4 && T == 6 && KC % 16 == 0, "tile shape");

#define UNROLL _Pragma("GCC unroll 16")

#define PF_AHEAD 1024 /* bytes ahead in each weight row of a tile */
#define PF_FEW 8192   /* bytes ahead in the one weight stream of few() (best of 1..8 KiB here) */

/* Up to 16 weights of one row from column k (m: valid lanes) widened to F32. */
static inline __attribute__((always_inline)) __m512 load_w16(const rl_type WT, const uint8_t *row,
                                                             int64_t k, __mmask16 m, bool full) {
    switch (WT) {
    case RL_TYPE_F16:
        return _mm512_cvtph_ps(full ? _mm256_loadu_si256((const __m256i *)(row + 2 * k))
                                    : _mm256_maskz_loadu_epi16(m, row + 2 * k));
    case RL_TYPE_BF16: {
        __m256i h = full ? _mm256_loadu_si256((const __m256i *)(row + 2 * k))
                         : _mm256_maskz_loadu_epi16(m, row + 2 * k);
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
    default:
        return full ? _mm512_loadu_ps((const float *)row + k)
                    : _mm512_maskz_loadu_ps(m, (const float *)row + k);
    }
}

/* The sums of four vectors' lanes: [sum a, sum b, sum c, sum d]. The additions for one
 * vector form the same tree whatever the other three hold. */
static inline __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
    const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
    const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    /* per 128-bit lane: [a, b, a, b] and [c, d, c, d] partial sums */
    const __m512 abcd = _mm512_add_ps(
        _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))),
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(ab), _mm512_castps_pd(cd))));
    const __m256 h =
        _mm256_add_ps(_mm512_castps512_ps256(abcd),
                      _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(abcd), 1)));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* y[t * ldy + r] (+)= sum over the columns [k0, k0 + kc) of row r times token t, for
 * r < nr (rows past nr read row nr - 1 and are not stored) and t < NT. */
static inline __attribute__((always_inline)) void tile(const int NT, const rl_type WT,
                                                       const rl__fgemm_args *g, int64_t r0, int nr,
                                                       int64_t t0, int64_t k0, int64_t kc) {
    const uint8_t *w[R];
    UNROLL
    for (int r = 0; r < R; r++) w[r] = g->w + (size_t)(r0 + (r < nr ? r : nr - 1)) * g->w_row_bytes;
    const float *x = g->x + (size_t)t0 * (size_t)g->n;
    const size_t esz = WT == RL_TYPE_F32 ? 4 : 2;
    __m512 acc[R][T];
    UNROLL
    for (int r = 0; r < R; r++) UNROLL
    for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_ps();
    int64_t k = k0;
    const int64_t k_end = k0 + kc, k_full = k0 + (kc & ~(int64_t)15);
#define STEP(FULL, M)                                                                              \
    do {                                                                                           \
        __m512 wv[R];                                                                              \
        UNROLL                                                                                     \
        for (int r = 0; r < R; r++) {                                                              \
            _mm_prefetch((const char *)w[r] + (size_t)k * esz + PF_AHEAD, _MM_HINT_T0);            \
            wv[r] = load_w16(WT, w[r], k, M, FULL);                                                \
        }                                                                                          \
        UNROLL                                                                                     \
        for (int t = 0; t < NT; t++) {                                                             \
            const __m512 xv = FULL ? _mm512_loadu_ps(x + (size_t)t * g->n + k)                     \
                                   : _mm512_maskz_loadu_ps(M, x + (size_t)t * g->n + k);           \
            UNROLL                                                                                 \
            for (int r = 0; r < R; r++) acc[r][t] = _mm512_fmadd_ps(wv[r], xv, acc[r][t]);         \
        }                                                                                          \
    } while (0)
    for (; k < k_full; k += 16) STEP(true, 0xffff);
    if (k < k_end) {
        const __mmask16 m = (__mmask16)((1u << (k_end - k)) - 1);
        STEP(false, m);
    }
#undef STEP
    const __mmask8 sm = (__mmask8)((1u << nr) - 1);
    UNROLL
    for (int t = 0; t < NT; t++) {
        float *yt = g->y + (size_t)(t0 + t) * g->ldy + r0;
        __m128 s = reduce4(acc[0][t], acc[1][t], acc[2][t], acc[3][t]);
        if (k0 > 0) s = _mm_add_ps(s, _mm_maskz_loadu_ps(sm, yt));
        _mm_mask_storeu_ps(yt, sm, s);
    }
}

static inline __attribute__((always_inline)) void
tiles(const int NT, const rl_type WT, const rl__fgemm_args *g, int64_t t0, int64_t k0, int64_t kc) {
    int64_t r = 0;
    for (; r + R <= g->rows; r += R) tile(NT, WT, g, r, R, t0, k0, kc);
    if (r < g->rows) tile(NT, WT, g, r, (int)(g->rows - r), t0, k0, kc);
}

/* At most T tokens (decode): one row at a time, through all its column blocks, so the
 * weights are read as one sequential stream (tiles of rows a multiple of 4 KiB apart read
 * in parallel stream much slower here). Each (row, token) sum takes the operations of
 * tile() in the same order, so the result is the same. Consecutive blocks have
 * independent sums, which the core overlaps. */
static inline __attribute__((always_inline)) void few(const int NT, const rl_type WT,
                                                      const rl__fgemm_args *g) {
    const size_t esz = WT == RL_TYPE_F32 ? 4 : 2;
    const __m512 z = _mm512_setzero_ps();
    for (int64_t r = 0; r < g->rows; r++) {
        const uint8_t *w = g->w + (size_t)r * g->w_row_bytes;
        for (int64_t k0 = 0; k0 < g->n; k0 += KC) {
            const int64_t k_end = RL_MIN(k0 + KC, g->n),
                          k_full = k0 + ((k_end - k0) & ~(int64_t)15);
            __m512 acc[T];
            UNROLL
            for (int t = 0; t < NT; t++) acc[t] = z;
            int64_t k = k0;
#define STEP1(FULL, M)                                                                             \
    do {                                                                                           \
        _mm_prefetch((const char *)w + (size_t)k * esz + PF_FEW, _MM_HINT_T0);                   \
        const __m512 wv = load_w16(WT, w, k, M, FULL);                                             \
        UNROLL                                                                                     \
        for (int t = 0; t < NT; t++) {                                                             \
            const __m512 xv = FULL ? _mm512_loadu_ps(g->x + (size_t)t * g->n + k)                  \
                                   : _mm512_maskz_loadu_ps(M, g->x + (size_t)t * g->n + k);        \
            acc[t] = _mm512_fmadd_ps(wv, xv, acc[t]);                                              \
        }                                                                                          \
    } while (0)
            for (; k < k_full; k += 16) STEP1(true, 0xffff);
            if (k < k_end) {
                const __mmask16 m = (__mmask16)((1u << (k_end - k)) - 1);
                STEP1(false, m);
            }
#undef STEP1
            UNROLL
            for (int t = 0; t < NT; t++) {
                float *yt = g->y + (size_t)t * g->ldy + r;
                const float s = _mm_cvtss_f32(reduce4(acc[t], z, z, z));
                *yt = k0 > 0 ? *yt + s : s;
            }
        }
    }
}

/* More tokens: column blocks outermost, so the block of activations of a token tile is
 * reused from L1 by every row tile and the weight block from L2 by every token tile. */
static inline __attribute__((always_inline)) void run(const rl_type WT, const rl__fgemm_args *g) {
    switch (g->n_tok) {
    case 1:
        few(1, WT, g);
        break;
    case 2:
        few(2, WT, g);
        break;
    case 3:
        few(3, WT, g);
        break;
    case 4:
        few(4, WT, g);
        break;
    case 5:
        few(5, WT, g);
        break;
    case 6:
        few(6, WT, g);
        break;
    default:
        break;
    }
    if (g->n_tok <= T) return;
    for (int64_t k0 = 0; k0 < g->n; k0 += KC) {
        const int64_t kc = RL_MIN((int64_t)KC, g->n - k0);
        int64_t t0 = 0;
        for (; t0 + T <= g->n_tok; t0 += T) tiles(T, WT, g, t0, k0, kc);
        switch (g->n_tok - t0) {
        case 1:
            tiles(1, WT, g, t0, k0, kc);
            break;
        case 2:
            tiles(2, WT, g, t0, k0, kc);
            break;
        case 3:
            tiles(3, WT, g, t0, k0, kc);
            break;
        case 4:
            tiles(4, WT, g, t0, k0, kc);
            break;
        case 5:
            tiles(5, WT, g, t0, k0, kc);
            break;
        default:
            break;
        }
    }
}
_Static_assert(T == 6, "run() specialises 1..5 leftover tokens");

void rl__fgemm_avx512(const rl__fgemm_args *g) {
    switch (g->wt) {
    case RL_TYPE_F16:
        run(RL_TYPE_F16, g);
        break;
    case RL_TYPE_BF16:
        run(RL_TYPE_BF16, g);
        break;
    default:
        run(RL_TYPE_F32, g);
        break;
    }
}
