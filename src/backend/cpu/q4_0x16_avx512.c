/*
 * q4_0x16_avx512.c - Q4_0 kernels of AVX-512 VNNI over the repacked Q4_0x16 layout
 * (q4_0x16.h): the gemv of one token, its activation prep, and the multi-token tile.
 *
 * A group of 16 blocks is one chunk: four 64-byte loads of codes (register d, lane i:
 * code bytes 4d..4d+3 of block Q4_0X16_BLK(i)), split into low nibbles (elements 4d..4d+3)
 * and high nibbles (elements 16+4d..) as unsigned bytes 0..15, and one 32-byte load of
 * the 16 scales. vpdpbusd multiplies them, as its unsigned operand, with the activations as its
 * signed operand (the prep transposed them into the same lanes), starting from -8 * sum(y) per block: the exact integer sum_j (q_j - 8) y_j of each
 * block in its lane. The float work is q4_0_avx512.h's: one conversion, the product
 * h2f(dx) * dy and one FMA per lane and group, the groups in order, then the reduction of
 * the 16 lanes; so every result equals rl__gemv_q4_0_avx512's on the GGUF layout.
 *
 * What bounds the tile (bench/bench_vnni_peak.c on Zen 5): two vpdpbusd zmm a cycle
 * (latency 4), two 64-byte loads a cycle, and the float multiply and FMA of each
 * (row, token, group) issue on the vpdpbusd pipes (8 products + 2 of them: at most 80% of
 * the vpdpbusd peak). A tile that reads each activation register from memory for every
 * row does a load per vpdpbusd and is load bound near 60%; the passes below keep the
 * activations in registers across 3 rows.
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

#define TR Q4_0X16_ROWS
#ifndef TP
#define TP RL__GEMM_Q4_0X16_PASS_TOKS
#endif
#define TK RL__GEMM_Q4_0X16_TOKS
#ifndef SR
#define SR 3 /* rows of a pass (TR / SR passes per tile and token pass) */
#endif
/* Groups of a k-segment: every token's activations of a segment stay in L1 (8 tokens x 4
 * groups x 576 bytes = 18 KiB) while the token passes re-read the segment's weights from L1
 * (6 rows x 4 groups x 288 bytes = 7 KiB). */
#define KSEG 4

/* The split activation row of token t (matmul.c's layout, cpu.h). */
#define Y_D(t) ((const float *)(ys + (size_t)(t) * yst + (size_t)n))
#define Y_OFF(t) ((const uint8_t *)(Y_D(t) + 2 * (n / 32)))

/* One token (a decode step of one sequence): the tile's rows one after the other, each
 * chunk's activations read from memory (L1), prefetching PF_DIST ahead; memory bound. */
static void tile1(int64_t n, const uint8_t *x, const uint8_t *ys, size_t yst, float *out) {
    __m512 acc[TR];
    UNROLL
    for (int r = 0; r < TR; r++) acc[r] = _mm512_setzero_ps();
    for (int64_t g = 0; g < n / Q4_0X16_GROUP_COLS; g++) {
        const __m512 dy = _mm512_permutexvar_ps(q40_blk_idx(), _mm512_loadu_ps(Y_D(0) + 16 * g));
        UNROLL
        for (int r = 0; r < TR; r++) {
            const uint8_t *c = x + Q4_0X16_CHUNK * (TR * g + r);
            pf_chunk(c);
            __m512i w[8];
            __m512 dx;
            w_group(c, w, &dx);
            acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum(w, Y_OFF(0) + GROUP_OFF * g)),
                                     _mm512_mul_ps(dx, dy), acc[r]);
        }
    }
    UNROLL
    for (int r = 0; r < TR; r++) out[r] = _mm512_reduce_add_ps(acc[r]) + 0.0f;
}

/* One pass: SR of the tile's rows (from r0) x T tokens over the groups [g0, g1). The loop
 * runs over the code registers d of a group outermost, so each activation register is
 * loaded once for all SR rows and each code register once for all T tokens (the per-row
 * tile read the activations once per row: more loads than the core's two a cycle can
 * feed). fa: the float accumulators [SR][TP] from the pass over the previous segment
 * (load_f) and for the next one; the groups of a row are summed in order, so a segment
 * boundary changes nothing. */
/* GCC 12 loses track of f through the unrolled loops (every element is set first) */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
static inline __attribute__((always_inline)) void pass(const int T, int64_t g0, int64_t g1,
                                                       const uint8_t *x, const uint8_t *const *yo,
                                                       const float *const *yd, __m512 *fa,
                                                       bool load_f, const char **pf,
                                                       int pf_lines) {
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    __m512 f[SR][TP];
    UNROLL
    for (int r = 0; r < SR; r++)
        UNROLL
        for (int t = 0; t < TP; t++)
            f[r][t] = load_f && t < T ? _mm512_load_ps(fa + TP * r + t) : _mm512_setzero_ps();
    for (int64_t g = g0; g < g1; g++) {
        const uint8_t *c = x + (size_t)Q4_0X16_CHUNK * TR * (size_t)g;
        for (int k = 0; k < pf_lines; k++, *pf += 64) _mm_prefetch(*pf, _MM_HINT_T0);
        /* the tokens' scales in lane order, read from memory by the products below */
        float dy[TP][16] __attribute__((aligned(64)));
        UNROLL
        for (int t = 0; t < T; t++)
            _mm512_store_ps(dy[t], _mm512_permutexvar_ps(q40_blk_idx(),
                                                         _mm512_loadu_ps(yd[t] + 16 * g)));
        __m512i s[SR][TP];
        UNROLL
        for (int r = 0; r < SR; r++)
            UNROLL
            for (int t = 0; t < T; t++)
                s[r][t] = _mm512_loadu_si512(yo[t] + GROUP_OFF * g + 512);
        UNROLL
        for (int d = 0; d < 8; d++) {
            __m512i y[TP];
            UNROLL
            for (int t = 0; t < T; t++) {
                y[t] = _mm512_loadu_si512(yo[t] + GROUP_OFF * g + 64 * d);
                /* a register, loaded once for SR rows: the compiler would fold the load into
                 * each vpdpbusd (a load per product; loads, two a cycle, then bound it) */
                __asm__("" : "+v"(y[t]));
            }
            UNROLL
            for (int r = 0; r < SR; r++) {
                const __m512i v = _mm512_loadu_si512(c + Q4_0X16_CHUNK * r + 64 * (d & 3));
                const __m512i w = d < 4 ? _mm512_and_si512(v, m4)
                                        : _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                UNROLL
                for (int t = 0; t < T; t++) s[r][t] = _mm512_dpbusd_epi32(s[r][t], w, y[t]);
            }
        }
        UNROLL
        for (int r = 0; r < SR; r++) {
            const __m512 dx = _mm512_cvtph_ps(
                _mm256_loadu_si256((const __m256i *)(c + Q4_0X16_CHUNK * r + 256)));
            UNROLL
            for (int t = 0; t < T; t++)
                f[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[r][t]),
                                          _mm512_mul_ps(dx, _mm512_load_ps(dy[t])), f[r][t]);
        }
    }
    UNROLL
    for (int r = 0; r < SR; r++)
        UNROLL
        for (int t = 0; t < T; t++) _mm512_store_ps(fa + TP * r + t, f[r][t]);
}

/* The TR interleaved rows of a tile x NT <= TK tokens: k-segments of KSEG groups, each
 * multiplied with every token in passes of SR rows x TP tokens (the first pass over each
 * row range prefetches). */
static inline __attribute__((always_inline)) void tile(const int NT, int64_t n, const void *vx,
                                                       const uint8_t *ys, size_t yst, float *out,
                                                       size_t ost) {
    const uint8_t *x = vx;
    const uint8_t *yo[TK];
    const float *yd[TK];
    UNROLL
    for (int t = 0; t < NT; t++) {
        yo[t] = Y_OFF(t);
        yd[t] = Y_D(t);
    }
    enum { NP = (TK + TP - 1) / TP };
    __m512 fa[TR / SR][NP][SR * TP] __attribute__((aligned(64)));
    const int64_t ng = n / Q4_0X16_GROUP_COLS;
    /* The next tile's bytes (the next in memory: matmul's threads read their chunks in
     * order) are prefetched evenly over this call's group passes, so the weights stream
     * from DRAM while every pass computes, not in bursts in the first pass of each
     * segment. One thread, 8 tokens, 72 MiB: T0 beat T1 by 4-5% (2,048 and 8,192
     * columns), two tiles ahead did no better than one. */
    const size_t tile_bytes = (size_t)Q4_0X16_CHUNK * TR * (size_t)ng;
    const char *pf = (const char *)x + tile_bytes;
    const int pf_lines = (int)((tile_bytes / 64 + (size_t)(ng * (TR / SR) * ((NT + TP - 1) / TP)) - 1) /
                               (size_t)(ng * (TR / SR) * ((NT + TP - 1) / TP)));
    for (int64_t g0 = 0; g0 < ng; g0 += KSEG) {
        const int64_t g1 = RL_MIN(g0 + KSEG, ng);
        UNROLL
        for (int h = 0; h < TR / SR; h++)
            UNROLL
            for (int p = 0; p < (NT + TP - 1) / TP; p++)
                pass(RL_MIN(TP, NT - TP * p), g0, g1, x + Q4_0X16_CHUNK * SR * h, yo + TP * p,
                     yd + TP * p, fa[h][p], g0 > 0, &pf, pf_lines);
    }
    UNROLL
    for (int r = 0; r < TR; r++)
        UNROLL
        for (int t = 0; t < NT; t++)
            out[(size_t)t * ost + (size_t)r] =
                _mm512_reduce_add_ps(fa[r / SR][t / TP][TP * (r % SR) + t % TP]) + 0.0f;
}
#pragma GCC diagnostic pop

/* The tile for prompts: 6 rows x 3 tokens a call, 18 float accumulators; each chunk is
 * loaded and split once for the 3 tokens, whose activations are read from memory (L1) by
 * the products. Compute bound there (the chunk comes from L2 for every token block after
 * the first), where it beat the passes above by 5-9% (bench_q4_0_mm --kernel, one thread,
 * 256 tokens: 308-320 vs 290-295 GMAC/s); the passes win where the weights stream. */
static inline __attribute__((always_inline)) void tile6x3(const int NT, int64_t n,
                                                          const uint8_t *x, const uint8_t *ys,
                                                          size_t yst, float *out, size_t ost) {
    __m512 acc[TR][3];
    UNROLL
    for (int r = 0; r < TR; r++)
        UNROLL
        for (int t = 0; t < NT; t++) acc[r][t] = _mm512_setzero_ps();
    for (int64_t g = 0; g < n / Q4_0X16_GROUP_COLS; g++) {
        float dy[3][16] __attribute__((aligned(64)));
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

void rl__gemm_q4_0x16_6x3_avx512(int64_t n, int nt, const void *x, size_t xst,
                                 const uint8_t *ys, size_t yst, float *out, size_t ost) {
    (void)xst;
    switch (nt) {
    case 1: tile6x3(1, n, x, ys, yst, out, ost); break;
    case 2: tile6x3(2, n, x, ys, yst, out, ost); break;
    default: tile6x3(3, n, x, ys, yst, out, ost); break;
    }
}

void rl__gemm_q4_0x16_avx512(int64_t n, int nt, const void *x, size_t xst, const uint8_t *ys,
                             size_t yst, float *out, size_t ost) {
    (void)xst; /* a tile's rows are interleaved (q4_0x16.h) */
    /* nt specialised at compile time (the accumulators must be registers) */
#define CASE(k)                                                                                \
    case k: tile((k) <= TK ? (k) : TK, n, x, ys, yst, out, ost); break;
    switch (nt) {
    case 1: tile1(n, x, ys, yst, out); break;
        CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
    default: tile(TK, n, x, ys, yst, out, ost); break;
    }
#undef CASE
}
_Static_assert(TK <= 8, "rl__gemm_q4_0x16_avx512 specialises 1..8 tokens");
