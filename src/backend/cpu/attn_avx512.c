/*
 * attn_avx512.c - attention.c's work item (a group of query heads sharing one KV head,
 * over one token's cells) for F16 caches with AVX-512: the same tiled online softmax
 * (Milakov & Gimelshein 2018; Dao et al. 2022) with the loops rearranged for registers.
 *
 * Per tile of cells: every K row is converted once (vcvtph2ps) and multiplied into all
 * the group's query heads at once (one accumulator register per head); the scores of
 * the tile go through a vector exp; then every V row is converted once and added into
 * the heads' output accumulators, which stay in registers across the tile (a chunk of
 * head dims at a time, sized so heads x chunk fits the register file). The cells of a
 * paged cache are scattered, so the rows a few cells ahead are prefetched: decode
 * attention is bound by the latency of those reads, not by arithmetic.
 *
 * Not bit-identical to the plain-C path (fused multiply-adds, another summation order,
 * exp by polynomial): test_model_ops compares every path with a double-precision
 * reference.
 */
#include "cpu.h"

#include <immintrin.h>
#include <math.h>

#define TILE 64   /* cells per tile */
#define MAX_NH 8  /* query heads per call */
#define PF_DIST 16 /* cells ahead to prefetch K (8..32 measured alike) */

void rl__exp_ps_avx512(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, rl__exp512_ps(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, m, rl__exp512_ps(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

static inline __m512 cvt16(const uint8_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

/* The lines of bytes bytes at p into L1. As an asm statement: with _mm_prefetch GCC 12
 * emitted no prefetch at all here (its IPA pure-const pass marks the inline wrapper
 * "looping const", so the calls are dead code; -fdump-tree-all shows it). */
static inline void prefetch_row(const uint8_t *p, int32_t bytes) {
    for (int32_t o = 0; o < bytes; o += 64) __asm__ volatile("prefetcht0 %0" : : "m"(p[o]));
}

typedef struct attn_f16 {
    int nh;
    int32_t dk, dv;
    const uint8_t *k, *v; /* the KV head's values in cell 0's rows */
    size_t k_rb, v_rb;
    const int32_t *cells;
    int32_t n;
    float scale, softcap;
} attn_f16;

/* Lane L of the result = the sum of the 16 lanes of v[L]: a transposing tree (pairs of
 * vectors interleaved and added within 128-bit lanes, then 64-bit halves, then 128-bit
 * lanes across vectors), 45 instructions for 16 sums where 16 separate horizontal sums
 * take about 130. */
static inline __attribute__((always_inline)) __m512 sum16(const __m512 v[16]) {
    __m512 t[8], u[4];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) /* 128-bit lane: a0+a2, b0+b2, a1+a3, b1+b3 */
        t[k] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]),
                             _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]));
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) { /* 128-bit lane c: lane c's sums of v[4k .. 4k + 3] */
        const __m512d x = _mm512_castps_pd(t[2 * k]), y = _mm512_castps_pd(t[2 * k + 1]);
        u[k] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
    }
    /* w0 = [u0 lanes 0+1, u0 lanes 2+3, u1 lanes 0+1, u1 lanes 2+3], w1 the same of u2, u3 */
    const __m512 w0 = _mm512_add_ps(_mm512_shuffle_f32x4(u[0], u[1], 0x88),
                                    _mm512_shuffle_f32x4(u[0], u[1], 0xDD));
    const __m512 w1 = _mm512_add_ps(_mm512_shuffle_f32x4(u[2], u[3], 0x88),
                                    _mm512_shuffle_f32x4(u[2], u[3], 0xDD));
    return _mm512_add_ps(_mm512_shuffle_f32x4(w0, w1, 0x88), _mm512_shuffle_f32x4(w0, w1, 0xDD));
}

/* Scores of the NH heads with the tile's cells cells[i0 .. i0 + nt): groups of CG cells
 * whose CG x NH dot products are summed by one sum16, the rest one cell at a time. */
static inline __attribute__((always_inline)) void tile_scores(const int NH, const attn_f16 *a,
                                                              const float *q, int32_t i0,
                                                              int nt, float s[][TILE]) {
    /* cells per group: the group's CG x NH accumulators fill at most 16 registers */
    const int CG = NH == 1 ? 16 : NH == 2 ? 8 : NH <= 4 ? 4 : 2;
    const int32_t dk = a->dk;
    int i = 0;
    for (; i + CG <= nt; i += CG) {
        const uint8_t *kr[16];
#pragma GCC unroll 16
        for (int j = 0; j < CG; j++) {
            /* K a few cells ahead; V of this cell, read by tile_values after the softmax */
            const int32_t ic = i0 + i + j;
            if (ic + PF_DIST < a->n)
                prefetch_row(a->k + (size_t)a->cells[ic + PF_DIST] * a->k_rb, dk * 2);
            prefetch_row(a->v + (size_t)a->cells[ic] * a->v_rb, a->dv * 2);
            kr[j] = a->k + (size_t)a->cells[ic] * a->k_rb;
        }
        __m512 acc[16];
#pragma GCC unroll 16
        for (int u = 0; u < 16; u++) acc[u] = _mm512_setzero_ps();
        for (int32_t c = 0; c < dk; c += 16) {
#pragma GCC unroll 16
            for (int j = 0; j < CG; j++) {
                const __m512 kv = cvt16(kr[j] + 2 * c);
#pragma GCC unroll 8
                for (int h = 0; h < NH; h++)
                    acc[h * CG + j] =
                        _mm512_fmadd_ps(_mm512_loadu_ps(q + h * dk + c), kv, acc[h * CG + j]);
            }
        }
        _Alignas(64) float r[16];
        _mm512_store_ps(r, sum16(acc));
#pragma GCC unroll 8
        for (int h = 0; h < NH; h++) memcpy(&s[h][i], r + h * CG, sizeof(float) * (size_t)CG);
    }
    for (; i < nt; i++) {
        const int32_t ic = i0 + i;
        if (ic + PF_DIST < a->n)
            prefetch_row(a->k + (size_t)a->cells[ic + PF_DIST] * a->k_rb, dk * 2);
        prefetch_row(a->v + (size_t)a->cells[ic] * a->v_rb, a->dv * 2);
        const uint8_t *kr = a->k + (size_t)a->cells[ic] * a->k_rb;
        __m512 acc[MAX_NH];
#pragma GCC unroll 8
        for (int h = 0; h < NH; h++) acc[h] = _mm512_setzero_ps();
        for (int32_t c = 0; c < dk; c += 16) {
            const __m512 kv = cvt16(kr + 2 * c);
#pragma GCC unroll 8
            for (int h = 0; h < NH; h++)
                acc[h] = _mm512_fmadd_ps(_mm512_loadu_ps(q + h * dk + c), kv, acc[h]);
        }
#pragma GCC unroll 8
        for (int h = 0; h < NH; h++) s[h][i] = _mm512_reduce_add_ps(acc[h]);
    }
}

/* acc[h][c0 .. c0 + 16 CW) = corr[h] * acc + sum over the tile's cells of p[h][i] v_i. */
static inline __attribute__((always_inline)) void tile_values(const int NH, const int CW,
                                                              const attn_f16 *a, int32_t c0,
                                                              int32_t i0, int nt,
                                                              float p[][TILE],
                                                              const float *corr, float *acc) {
    __m512 r[MAX_NH][8];
#pragma GCC unroll 8
    for (int h = 0; h < NH; h++) {
        const __m512 ch = _mm512_set1_ps(corr[h]);
#pragma GCC unroll 8
        for (int w = 0; w < CW; w++)
            r[h][w] = _mm512_mul_ps(ch, _mm512_loadu_ps(acc + h * a->dv + c0 + 16 * w));
    }
    for (int i = 0; i < nt; i++) {
        const uint8_t *vr = a->v + (size_t)a->cells[i0 + i] * a->v_rb + 2 * c0;
        __m512 vv[8];
#pragma GCC unroll 8
        for (int w = 0; w < CW; w++) vv[w] = cvt16(vr + 32 * w);
#pragma GCC unroll 8
        for (int h = 0; h < NH; h++) {
            const __m512 ph = _mm512_set1_ps(p[h][i]);
#pragma GCC unroll 8
            for (int w = 0; w < CW; w++) r[h][w] = _mm512_fmadd_ps(ph, vv[w], r[h][w]);
        }
    }
#pragma GCC unroll 8
    for (int h = 0; h < NH; h++)
#pragma GCC unroll 8
        for (int w = 0; w < CW; w++) _mm512_storeu_ps(acc + h * a->dv + c0 + 16 * w, r[h][w]);
}

static inline __attribute__((always_inline)) void attend(const int NH, const attn_f16 *a,
                                                         const float *q, float *acc,
                                                         float *l_out) {
    /* the widest chunk of head dims whose NH x CW accumulators fit with the V row */
    const int CW = NH <= 2 ? 8 : NH <= 4 ? 4 : 2;
    float s[MAX_NH][TILE];
    float m[MAX_NH], l[MAX_NH], corr[MAX_NH];
    for (int h = 0; h < NH; h++) {
        m[h] = -INFINITY;
        l[h] = 0.0f;
    }
    memset(acc, 0, sizeof(float) * (size_t)NH * (size_t)a->dv);
    for (int32_t i0 = 0; i0 < a->n; i0 += TILE) {
        const int nt = (int)RL_MIN(TILE, a->n - i0);
        tile_scores(NH, a, q, i0, nt, s);
        for (int h = 0; h < NH; h++) {
            float *sh = s[h];
            __m512 vmax = _mm512_set1_ps(-INFINITY);
            const __m512 vsc = _mm512_set1_ps(a->scale);
            for (int i = 0; i < nt; i += 16) {
                const __mmask16 mk =
                    nt - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nt - i)) - 1);
                __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(mk, sh + i), vsc);
                if (a->softcap > 0.0f) {
                    _mm512_mask_storeu_ps(sh + i, mk, x);
                    for (int u = i; u < RL_MIN(i + 16, nt); u++)
                        sh[u] = tanhf(sh[u] / a->softcap) * a->softcap;
                    x = _mm512_maskz_loadu_ps(mk, sh + i);
                }
                _mm512_mask_storeu_ps(sh + i, mk, x);
                vmax = _mm512_mask_max_ps(vmax, mk, vmax, x);
            }
            const float mn = RL_MAX(m[h], _mm512_reduce_max_ps(vmax));
            corr[h] = m[h] == -INFINITY ? 0.0f : expf(m[h] - mn);
            const __m512 vmn = _mm512_set1_ps(mn);
            __m512 vsum = _mm512_setzero_ps();
            for (int i = 0; i < nt; i += 16) {
                const __mmask16 mk =
                    nt - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (nt - i)) - 1);
                __m512 pv = rl__exp512_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, sh + i), vmn));
                pv = _mm512_maskz_mov_ps(mk, pv);
                _mm512_storeu_ps(sh + i, pv); /* the tail lanes: 0, never read */
                vsum = _mm512_add_ps(vsum, pv);
            }
            l[h] = l[h] * corr[h] + _mm512_reduce_add_ps(vsum);
            m[h] = mn;
        }
        int32_t c0 = 0;
        for (; c0 + 16 * CW <= a->dv; c0 += 16 * CW)
            tile_values(NH, CW, a, c0, i0, nt, s, corr, acc);
        for (; c0 < a->dv; c0 += 16) tile_values(NH, 1, a, c0, i0, nt, s, corr, acc);
    }
    for (int h = 0; h < NH; h++) l_out[h] = l[h];
}

#define ATTEND_NH(NH)                                                                      \
    static void attend_##NH(const attn_f16 *a, const float *q, float *acc, float *l) {     \
        attend(NH, a, q, acc, l);                                                          \
    }
ATTEND_NH(1)
ATTEND_NH(2)
ATTEND_NH(3)
ATTEND_NH(4)
ATTEND_NH(5)
ATTEND_NH(6)
ATTEND_NH(7)
ATTEND_NH(8)

/* attention.c's contract for one pass: nh (1..8) query heads qh[h] of dk values over the
 * n cells cells[0..n), whose K values for this KV head start at k + cells[i] * k_rb
 * (dk fp16 values) and V values at v + cells[i] * v_rb (dv values); out[h] gets the
 * normalized dv outputs (zeros for n == 0). dk and dv: multiples of 16, at most
 * RL_ATTN_AVX512_MAX_DIM. */
void rl__attn_f16_avx512(int nh, int32_t dk, int32_t dv, const float *const *qh,
                         const void *k, size_t k_rb, const void *v, size_t v_rb,
                         const int32_t *cells, int32_t n, float scale, float softcap,
                         float *const *out) {
    _Alignas(64) float q[MAX_NH * RL_ATTN_AVX512_MAX_DIM];
    _Alignas(64) float acc[MAX_NH * RL_ATTN_AVX512_MAX_DIM];
    float l[MAX_NH];
    for (int h = 0; h < nh; h++) memcpy(q + h * dk, qh[h], sizeof(float) * (size_t)dk);
    const attn_f16 a = {nh, dk, dv, k, v, k_rb, v_rb, cells, n, scale, softcap};
    switch (nh) {
    case 1: attend_1(&a, q, acc, l); break;
    case 2: attend_2(&a, q, acc, l); break;
    case 3: attend_3(&a, q, acc, l); break;
    case 4: attend_4(&a, q, acc, l); break;
    case 5: attend_5(&a, q, acc, l); break;
    case 6: attend_6(&a, q, acc, l); break;
    case 7: attend_7(&a, q, acc, l); break;
    default: attend_8(&a, q, acc, l); break;
    }
    for (int h = 0; h < nh; h++) {
        const __m512 inv = _mm512_set1_ps(l[h] > 0.0f ? 1.0f / l[h] : 0.0f);
        for (int32_t d = 0; d < dv; d += 16)
            _mm512_storeu_ps(out[h] + d, _mm512_mul_ps(_mm512_loadu_ps(acc + h * dv + d), inv));
    }
}
