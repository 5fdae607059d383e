/*
 * fgemm_avx2.c - F16/BF16 (and F32) weights times F32 activations on AVX2 + FMA + F16C
 * (cpu.h: rl__fgemm_*).
 *
 * The register tile of fgemm_avx512.c sized for 16 ymm registers: R = 3 weight rows times
 * up to T = 4 tokens, 12 accumulators of 8 lanes (lane l sums the columns k = l (mod 8) in
 * order), three widened weight vectors and one activation vector per step of 8 columns.
 * Columns in blocks of KC, each block's sums reduced by hsum8() and added to y in order.
 * As on AVX-512, a (row, token) result does not depend on the rows and tokens that share
 * its tile, so batches equal token-by-token bit for bit; against the reference
 * (fgemm_ref.c) it differs by F32 rounding only.
 */
#include "cpu.h"

#include <immintrin.h>

#define R RL__FGEMM_AVX2_R
#define T RL__FGEMM_AVX2_T
#define KC RL__FGEMM_AVX2_KC
_Static_assert(R == 3 && T == 4 && KC % 8 == 0, "tile shape");

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
    __m256 acc[R][T];
    UNROLL
    for (int r = 0; r < R; r++) UNROLL
    for (int t = 0; t < NT; t++) acc[r][t] = _mm256_setzero_ps();
    const int64_t k_end = k0 + kc;
    for (int64_t k = k0; k < k_end; k += 8) {
        const int cnt = (int)RL_MIN((int64_t)8, k_end - k);
        __m256 wv[R];
        UNROLL
        for (int r = 0; r < R; r++) {
            _mm_prefetch((const char *)w[r] + (size_t)k * esz + PF_AHEAD, _MM_HINT_T0);
            wv[r] = load_w8(WT, w[r], k, cnt);
        }
        UNROLL
        for (int t = 0; t < NT; t++) {
            const __m256 xv = load_x8(x + (size_t)t * g->n + k, cnt);
            UNROLL
            for (int r = 0; r < R; r++) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
        }
    }
    UNROLL
    for (int t = 0; t < NT; t++) {
        float *yt = g->y + (size_t)(t0 + t) * g->ldy + r0;
        UNROLL
        for (int r = 0; r < R; r++) {
            if (r >= nr) break;
            const float s = hsum8(acc[r][t]);
            yt[r] = k0 > 0 ? yt[r] + s : s;
        }
    }
}

static inline __attribute__((always_inline)) void
tiles(const int NT, const rl_type WT, const rl__fgemm_args *g, int64_t t0, int64_t k0, int64_t kc) {
    int64_t r = 0;
    for (; r + R <= g->rows; r += R) tile(NT, WT, g, r, R, t0, k0, kc);
    if (r < g->rows) tile(NT, WT, g, r, (int)(g->rows - r), t0, k0, kc);
}

/* At most T tokens (decode): one row at a time through all its column blocks, one
 * sequential stream of weights (as fgemm_avx512.c's few()); each (row, token) sum takes the
 * operations of tile() in the same order, so the result is the same. */
static inline __attribute__((always_inline)) void few(const int NT, const rl_type WT,
                                                      const rl__fgemm_args *g) {
    const size_t esz = WT == RL_TYPE_F32 ? 4 : 2;
    for (int64_t r = 0; r < g->rows; r++) {
        const uint8_t *w = g->w + (size_t)r * g->w_row_bytes;
        for (int64_t k0 = 0; k0 < g->n; k0 += KC) {
            const int64_t k_end = RL_MIN(k0 + KC, g->n);
            __m256 acc[T];
            UNROLL
            for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
            for (int64_t k = k0; k < k_end; k += 8) {
                const int cnt = (int)RL_MIN((int64_t)8, k_end - k);
                _mm_prefetch((const char *)w + (size_t)k * esz + PF_FEW, _MM_HINT_T0);
                const __m256 wv = load_w8(WT, w, k, cnt);
                UNROLL
                for (int t = 0; t < NT; t++)
                    acc[t] = _mm256_fmadd_ps(wv, load_x8(g->x + (size_t)t * g->n + k, cnt), acc[t]);
            }
            UNROLL
            for (int t = 0; t < NT; t++) {
                float *yt = g->y + (size_t)t * g->ldy + r;
                const float s = hsum8(acc[t]);
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
        default:
            break;
        }
    }
}
_Static_assert(T == 4, "run() specialises 1..3 leftover tokens");

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
