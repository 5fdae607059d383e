/*
 * fgemm_avx2.c - F16/BF16 (and F32) weights times F32 activations on AVX2 + FMA + F16C
 * (cpu.h: rl__fgemm_*).
 *
 * The register tile of fgemm_avx512.c sized for 16 ymm registers: R = 2 weight rows times
 * up to T = 3 tokens, two sums of 8 lanes per (row, token) (12 accumulators; lane l of sum h
 * takes the columns k = 8h + l (mod 16) in order: a single row read alone, as decode does,
 * still has two independent FMA chains per token), two widened weight vectors and one
 * activation vector per step of 8 columns. Columns in blocks of KC; at the end of a block
 * the two sums are added, reduced by hsum8() and added to y, blocks in order.
 * As on AVX-512, a (row, token) result does not depend on the rows and tokens that share
 * its tile, so batches equal token-by-token bit for bit; against the reference
 * (fgemm_ref.c) it differs by F32 rounding only.
 */
#include "cpu.h"

#include <immintrin.h>

#define R RL__FGEMM_AVX2_R
#define T RL__FGEMM_AVX2_T
#define KC RL__FGEMM_AVX2_KC
_Static_assert(R == 2 && T == 3 && KC % 16 == 0, "tile shape");

#define UNROLL _Pragma("GCC unroll 16")

#define PF_AHEAD 1024 /* bytes ahead in each weight row of a tile */
#define PF_FEW 8192   /* bytes ahead in the one weight stream of few() */

/* 8 weights of one row from column k widened to F32; cnt < 8: only that many, zeros after. */
static inline __attribute__((always_inline)) __m256 load_w8(const rl_type WT, const uint8_t *row,
                                                            int64_t k, int cnt) {
    if (cnt < 8) {
        float tmp[8] = {0};
        for (int i = 0; i < cnt; i++)
            tmp[i] = WT == RL_TYPE_F16    ? rl__fp16_to_fp32(((const rl_fp16 *)row)[k + i])
                     : WT == RL_TYPE_BF16 ? rl__bf16_to_fp32(((const rl_bf16 *)row)[k + i])
                                          : ((const float *)row)[k + i];
        return _mm256_loadu_ps(tmp);
    }
    switch (WT) {
    case RL_TYPE_F16:
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * k)));
    case RL_TYPE_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * k))), 16));
    default:
        return _mm256_loadu_ps((const float *)row + k);
    }
}

static inline __m256 load_x8(const float *p, int cnt) {
    if (cnt < 8) {
        float tmp[8] = {0};
        memcpy(tmp, p, (size_t)cnt * sizeof(float));
        return _mm256_loadu_ps(tmp);
    }
    return _mm256_loadu_ps(p);
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* One step of 8 columns at k into sum H of the tile (cnt < 8: the block's last columns). */
#define STEP(H, K, CNT, PF)                                                                        \
    do {                                                                                           \
        __m256 wv[RR];                                                                             \
        UNROLL                                                                                     \
        for (int r = 0; r < RR; r++) {                                                             \
            if (PF) _mm_prefetch((const char *)w[r] + (size_t)(K)*esz + PFD, _MM_HINT_T0);         \
            wv[r] = load_w8(WT, w[r], (K), (CNT));                                                 \
        }                                                                                          \
        UNROLL                                                                                     \
        for (int t = 0; t < NT; t++) {                                                             \
            const __m256 xv = load_x8(x + (size_t)t * g->n + (K), (CNT));                          \
            UNROLL                                                                                 \
            for (int r = 0; r < RR; r++) acc[H][r][t] = _mm256_fmadd_ps(wv[r], xv, acc[H][r][t]);  \
        }                                                                                          \
    } while (0)

/* y[t * ldy + r] (+)= sum over the columns [k0, k0 + kc) of row r times token t, for
 * r < nr (rows past nr read row nr - 1 and are not stored) and t < NT, RR rows read (R in
 * a tile, 1 in few()). Two sums per (row, token): sum 0 takes the 8-column steps at k0,
 * k0 + 16, ..., sum 1 those at k0 + 8, ..., so that one row alone still has two
 * independent FMA chains per token; the sums are added, then reduced by hsum8(). */
static inline __attribute__((always_inline)) void tile(const int RR, const int NT, const rl_type WT,
                                                       const rl__fgemm_args *g, int64_t r0, int nr,
                                                       int64_t t0, int64_t k0, int64_t kc,
                                                       const size_t PFD) {
    const uint8_t *w[R];
    UNROLL
    for (int r = 0; r < RR; r++)
        w[r] = g->w + (size_t)(r0 + (r < nr ? r : nr - 1)) * g->w_row_bytes;
    const float *x = g->x + (size_t)t0 * (size_t)g->n;
    const size_t esz = WT == RL_TYPE_F32 ? 4 : 2;
    __m256 acc[2][R][T];
    UNROLL
    for (int r = 0; r < RR; r++) {
        UNROLL
        for (int t = 0; t < NT; t++) acc[0][r][t] = acc[1][r][t] = _mm256_setzero_ps();
    }
    const int64_t k_end = k0 + kc;
    int64_t k = k0;
    for (; k + 16 <= k_end; k += 16) {
        STEP(0, k, 8, true);
        STEP(1, k + 8, 8, false);
    }
    if (k < k_end) {
        STEP(0, k, (int)RL_MIN((int64_t)8, k_end - k), false);
        if (k + 8 < k_end) STEP(1, k + 8, (int)(k_end - k - 8), false);
    }
    UNROLL
    for (int t = 0; t < NT; t++) {
        float *yt = g->y + (size_t)(t0 + t) * g->ldy + r0;
        UNROLL
        for (int r = 0; r < RR; r++) {
            if (r >= nr) break;
            const float s = hsum8(_mm256_add_ps(acc[0][r][t], acc[1][r][t]));
            yt[r] = k0 > 0 ? yt[r] + s : s;
        }
    }
}
#undef STEP

static inline __attribute__((always_inline)) void
tiles(const int NT, const rl_type WT, const rl__fgemm_args *g, int64_t t0, int64_t k0, int64_t kc) {
    int64_t r = 0;
    for (; r + R <= g->rows; r += R) tile(R, NT, WT, g, r, R, t0, k0, kc, PF_AHEAD);
    if (r < g->rows) tile(R, NT, WT, g, r, (int)(g->rows - r), t0, k0, kc, PF_AHEAD);
}

/* At most T tokens (decode): one row at a time through all its column blocks, one
 * sequential stream of weights (as fgemm_avx512.c's few()); each (row, token) sum takes the
 * operations of tile() in the same order, so the result is the same. */
static inline __attribute__((always_inline)) void few(const int NT, const rl_type WT,
                                                      const rl__fgemm_args *g) {
    for (int64_t r = 0; r < g->rows; r++)
        for (int64_t k0 = 0; k0 < g->n; k0 += KC)
            tile(1, NT, WT, g, r, 1, 0, k0, RL_MIN((int64_t)KC, g->n - k0), PF_FEW);
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
        default:
            break;
        }
    }
}
_Static_assert(T == 3, "run() specialises 1..2 leftover tokens");

void rl__fgemm_avx2(const rl__fgemm_args *g) {
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
