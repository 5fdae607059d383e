/*
 * dot_avx512.c - AVX-512 (F/BW/DQ/VL + VNNI, BF16 when present) dot products of the
 * float and legacy quantized types (cpu.h names the contract; dot_ref.c defines the
 * results).
 *
 * Quantized types take two 32-element blocks per 512-bit register: bytes 0..31 are
 * block b, bytes 32..63 block b+1, each in element order, so that the 16 i32 lanes of
 * vpdpbusd (u8 x s8, four products per lane, no saturation) split 8/8 between the two
 * blocks and one FMA with [scale_b x8, scale_b+1 x8] finishes both. Weights are made
 * unsigned: Q5_0 subtracts offset * sum(y) (a second vpdpbusd with the offset as u8),
 * Q8_0 uses |x| and y with x's sign (vpabsb, a masked negation), which
 * is exact because activations from our quantizers are never -128. Q4_0 takes one block
 * per lane instead (q4_0_avx512.h, shared with the multi-token tiles).
 */
#include "cpu.h"
#include "prefetch.h"

#include <immintrin.h>

#include "q4_0_avx512.h"

static inline float h2f(rl_fp16 h) { return _cvtsh_ss(h); }

/* Software prefetch of the weights PF_DIST bytes ahead, every 64 bytes of a step's span.
 * A matvec streams the rows one after the other; a core's hardware prefetchers alone keep
 * too few lines in flight to pull the memory bandwidth through one or two cores. Measured
 * on a quiet 16-core Xeon (Q4_0 matvec, 256 MiB): 1 core 7.4 -> 14.3 GB/s, 2 cores 14.4 ->
 * 24.5 GB/s; 2048 and 8192 bytes did worse or no better; prefetchnta did worse. */
#define PF_DIST 4096
static inline void pf_span(const void *p, size_t span) {
    rl__prefetch_lines((const char *)p + PF_DIST, span);
}

float rl__vec_dot_f32_avx512(int64_t n, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        pf_span(x + i, 256);
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(y + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), _mm512_loadu_ps(y + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), _mm512_loadu_ps(y + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16)
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i), a0);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i), a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static inline __m512 load_f16x16(const rl_fp16 *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

float rl__vec_dot_f16_avx512(int64_t n, const void *vx, const void *vy) {
    const rl_fp16 *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        pf_span(x + i, 128);
        a0 = _mm512_fmadd_ps(load_f16x16(x + i), load_f16x16(y + i), a0);
        a1 = _mm512_fmadd_ps(load_f16x16(x + i + 16), load_f16x16(y + i + 16), a1);
        a2 = _mm512_fmadd_ps(load_f16x16(x + i + 32), load_f16x16(y + i + 32), a2);
        a3 = _mm512_fmadd_ps(load_f16x16(x + i + 48), load_f16x16(y + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(load_f16x16(x + i), load_f16x16(y + i), a0);
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 xv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i));
        __m512 yv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, y + i));
        a1 = _mm512_fmadd_ps(xv, yv, a1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

static inline __m512 bf16x16_to_f32(__m256i v) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
}

/* With AVX512-BF16, vdpbf16ps multiplies 32 bf16 pairs into 16 f32 lanes (products of
 * bf16 are exact in f32; it treats bf16 subnormals as zero, which moves a dot of
 * normal data by nothing). Without it, widen by shifting and use FMA. */
float rl__vec_dot_bf16_avx512(int64_t n, const void *vx, const void *vy) {
    const rl_bf16 *x = vx, *y = vy;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int64_t i = 0;
    if (rl__cpu_has_avx512bf16()) {
        for (; i + 64 <= n; i += 64) {
            pf_span(x + i, 128);
            a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_loadu_si512(x + i),
                                  (__m512bh)_mm512_loadu_si512(y + i));
            a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_loadu_si512(x + i + 32),
                                  (__m512bh)_mm512_loadu_si512(y + i + 32));
        }
        for (; i < n; i += 32) {
            __mmask32 m = n - i >= 32 ? 0xffffffffu : (__mmask32)((1u << (n - i)) - 1);
            a0 = _mm512_dpbf16_ps(a0, (__m512bh)_mm512_maskz_loadu_epi16(m, x + i),
                                  (__m512bh)_mm512_maskz_loadu_epi16(m, y + i));
        }
    } else {
        for (; i + 16 <= n; i += 16) {
            __m512 xv = bf16x16_to_f32(_mm256_loadu_si256((const __m256i *)(x + i)));
            __m512 yv = bf16x16_to_f32(_mm256_loadu_si256((const __m256i *)(y + i)));
            a0 = _mm512_fmadd_ps(xv, yv, a0);
        }
        if (i < n) {
            __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
            __m512 xv = bf16x16_to_f32(_mm256_maskz_loadu_epi16(m, x + i));
            __m512 yv = bf16x16_to_f32(_mm256_maskz_loadu_epi16(m, y + i));
            a1 = _mm512_fmadd_ps(xv, yv, a1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* ---- quantized: two blocks per register ------------------------------------------ */

/* Two 16-byte nibble arrays -> 64 bytes 0..15 in element order: [lo(a), hi(a), lo(b),
 * hi(b)]. The 128-bit lanes are [a, a, b, b]; the odd lanes are shifted right by 4. */
static inline __m512i unpack_nibbles2(const uint8_t *qa, const uint8_t *qb) {
    __m256i t =
        _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)qa)),
                                _mm_loadu_si128((const __m128i *)qb), 1);
    __m512i z = _mm512_permutexvar_epi64(_mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0),
                                         _mm512_castsi256_si512(t));
    z = _mm512_mask_srli_epi16(z, (__mmask32)0xff00ff00u, z, 4);
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0f));
}

static inline __m512i load2x32(const int8_t *a, const int8_t *b) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                              _mm256_loadu_si256((const __m256i *)b), 1);
}

static inline uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* One block on 256 bits for odd block counts: 8 x i32 of q * y - off * sum(y). */
static inline __m256i dot1_u8(__m256i q, __m256i y, __m256i off) {
    __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, y);
    return _mm256_sub_epi32(p, _mm256_dpbusd_epi32(_mm256_setzero_si256(), off, y));
}

static inline __m256i unpack_nibbles1(const uint8_t *qs) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0f));
}

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Four fp16 at p + i*stride, packed into 64 bits. */
static inline uint64_t pack4_h(const uint8_t *p, size_t stride) {
    uint16_t v0, v1, v2, v3;
    memcpy(&v0, p, 2);
    memcpy(&v1, p + stride, 2);
    memcpy(&v2, p + 2 * stride, 2);
    memcpy(&v3, p + 3 * stride, 2);
    return (uint64_t)v0 | (uint64_t)v1 << 16 | (uint64_t)v2 << 32 | (uint64_t)v3 << 48;
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

/* Bytes lo in 128-bit lanes 0 and 2, hi in lanes 1 and 3. */
static inline __m512i lanes_lo_hi(uint8_t lo, uint8_t hi) {
    const long long l = (long long)(0x0101010101010101ull * lo),
                    h = (long long)(0x0101010101010101ull * hi);
    return _mm512_setr_epi64(l, l, h, h, l, l, h, h);
}

/* Q4_0/Q4_1 weights of two blocks without unpacking the nibbles: 128-bit lanes
 * [qa & 0x0f, qa & 0xf0, qb & 0x0f, qb & 0xf0], which line up with the activations
 * [ya[0..15], ya[16..31], yb[0..15], yb[16..31]]. The high-nibble lanes hold 16 q, so
 * their dot products are 16x; the scales of those lanes carry the 1/16 (exact: a power
 * of two), which saves the shift and the lane permutation of an unpack. */
static inline __m512i nibbles2_x16(const uint8_t *qa, const uint8_t *qb) {
    __m256i a = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qa));
    __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qb));
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
    return _mm512_and_si512(z, lanes_lo_hi(0x0f, 0xf0));
}

/* Scales for nibbles2_x16 products: [s0 x4, s0/16 x4, s1 x4, s1/16 x4] and the same for
 * s2, s3. */
static inline void spread_x16(__m128 s, __m512 *s01, __m512 *s23) {
    __m256 t =
        _mm256_permutexvar_ps(_mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3), _mm256_castps128_ps256(s));
    t = _mm256_mul_ps(t, _mm256_setr_ps(1, 0.0625f, 1, 0.0625f, 1, 0.0625f, 1, 0.0625f));
    __m512 z = _mm512_castps256_ps512(t);
    *s01 =
        _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3), z);
    *s23 =
        _mm512_permutexvar_ps(_mm512_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7), z);
}

/* ---- kernel bodies, shared by vec_dot and gemv ----------------------------------------
 * An activation source Y supplies: Y_LOAD2(b) the codes of blocks b, b+1 (64 bytes),
 * Y_QS(b) a pointer to block b's 32 codes, Y_D4(b) the float scales of blocks b..b+3,
 * Y_D1(b) that of block b, and for Q8_1 Y_S4/Y_S1 its fp16 sums as floats. YB reads
 * Q8_0/Q8_1 blocks (vec_dot); YS reads a split row (gemv, cpu.h): the same numbers, so
 * both give bit-identical results. */
#define YB_LOAD2(b) load2x32(y[b].qs, y[(b) + 1].qs)
#define YB_QS(b) (y[b].qs)
#define YB_D4(b) h4f(&y[b].d, sizeof y[0])
#define YB_D1(b) h2f(y[b].d)
#define YB_S4(b) h4f(&y[b].s, sizeof y[0])
#define YB_S1(b) h2f(y[b].s)
#define YS_LOAD2(b) _mm512_loadu_si512(yqs + 32 * (b))
#define YS_QS(b) (yqs + 32 * (b))
#define YS_D4(b) _mm_loadu_ps(yd + (b))
#define YS_D1(b) (yd[b])
#define YS_S4(b) _mm_loadu_ps(ys + (b))
#define YS_S1(b) (ys[b])

/* The offset term of Q4_0 and Q5_0 (offset bytes times codes, per i32 lane) depends on
 * the activations alone. NOFF2 is its negation for blocks b, b+1, the accumulator the
 * weights' vpdpbusd starts from: YB computes it, YS reads it precomputed once per matmul
 * by rl__gemv_prep_* (saving a vpdpbusd and a subtraction per pair of blocks). Exact
 * integers either way, so the results stay identical. */
#define YB_NOFF2(b, y2, offc)                                                                      \
    _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), offc, y2))
#define YS_NOFF2(b, y2, offc) ((void)(offc), _mm512_loadu_si512(yoff + 8 * (b)))

/* Four fp16 at p + i*stride as floats: gathered in general registers (idle in these
 * loops) and converted at once. */
static inline __m128 h4f(const void *p, size_t stride) {
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)pack4_h(p, stride)));
}

static inline float hsum4(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Q4_1: sum (d q + m) dy y = d dy sum q y + m s (s: the Q8_1 block's fp16 sum). */
#define Q4_1_BODY(Y)                                                                               \
    const int64_t nb = n / QK4_1;                                                                  \
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;                                                \
    __m128 accm = _mm_setzero_ps();                                                                \
    int64_t b = 0;                                                                                 \
    for (; b + 4 <= nb; b += 4) {                                                                  \
        pf_span(&x[b], 4 * sizeof x[0]);                                                           \
        __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(),                                   \
                                         nibbles2_x16(x[b].qs, x[b + 1].qs), Y##_LOAD2(b));        \
        __m512i p1 = _mm512_dpbusd_epi32(                                                          \
            _mm512_setzero_si512(), nibbles2_x16(x[b + 2].qs, x[b + 3].qs), Y##_LOAD2(b + 2));     \
        __m512 s01, s23;                                                                           \
        spread_x16(_mm_mul_ps(h4f(&x[b].d, sizeof x[0]), Y##_D4(b)), &s01, &s23);                  \
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), s01, acc0);                                 \
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), s23, acc1);                                 \
        accm = _mm_add_ps(accm, _mm_mul_ps(h4f(&x[b].m, sizeof x[0]), Y##_S4(b)));                 \
    }                                                                                              \
    __m256 acc = _mm256_setzero_ps();                                                              \
    float summ = 0;                                                                                \
    for (; b < nb; b++) {                                                                          \
        __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), unpack_nibbles1(x[b].qs),          \
                                        _mm256_loadu_si256((const __m256i *)Y##_QS(b)));           \
        acc =                                                                                      \
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(h2f(x[b].d) * Y##_D1(b)), acc);  \
        summ += h2f(x[b].m) * Y##_S1(b);                                                           \
    }                                                                                              \
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + hsum8(acc) + summ + hsum4(accm);

/* Q5: the 5th bits of two blocks form one 64-bit mask in element order; add 16 there. */
static inline __m512i unpack_q5_2(const uint8_t *qsa, const uint8_t *qha, const uint8_t *qsb,
                                  const uint8_t *qhb) {
    __mmask64 k = (__mmask64)load_u32(qha) | ((__mmask64)load_u32(qhb) << 32);
    __m512i z = unpack_nibbles2(qsa, qsb);
    return _mm512_mask_add_epi8(z, k, z, _mm512_set1_epi8(16));
}

static inline __m256i unpack_q5_1(const uint8_t *qs, const uint8_t *qh) {
    __m256i z = unpack_nibbles1(qs);
    return _mm256_mask_add_epi8(z, (__mmask32)load_u32(qh), z, _mm256_set1_epi8(16));
}

#define Q5_0_BODY(Y)                                                                               \
    const int64_t nb = n / QK5_0;                                                                  \
    const __m512i sixteen = _mm512_set1_epi8(16);                                                  \
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;                                                \
    int64_t b = 0;                                                                                 \
    for (; b + 4 <= nb; b += 4) {                                                                  \
        pf_span(&x[b], 4 * sizeof x[0]);                                                           \
        __m512i y0 = Y##_LOAD2(b), y1 = Y##_LOAD2(b + 2);                                          \
        __m512i p0 =                                                                               \
            _mm512_dpbusd_epi32(Y##_NOFF2(b, y0, sixteen),                                         \
                                unpack_q5_2(x[b].qs, x[b].qh, x[b + 1].qs, x[b + 1].qh), y0);      \
        __m512i p1 = _mm512_dpbusd_epi32(                                                          \
            Y##_NOFF2(b + 2, y1, sixteen),                                                         \
            unpack_q5_2(x[b + 2].qs, x[b + 2].qh, x[b + 3].qs, x[b + 3].qh), y1);                  \
        __m128 s = _mm_mul_ps(h4f(&x[b].d, sizeof x[0]), Y##_D4(b));                               \
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), spread01(s), acc0);                         \
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), spread23(s), acc1);                         \
    }                                                                                              \
    __m256 acc = _mm256_setzero_ps();                                                              \
    for (; b < nb; b++) {                                                                          \
        __m256i p = dot1_u8(unpack_q5_1(x[b].qs, x[b].qh),                                         \
                            _mm256_loadu_si256((const __m256i *)Y##_QS(b)), _mm256_set1_epi8(16)); \
        acc =                                                                                      \
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(h2f(x[b].d) * Y##_D1(b)), acc);  \
    }                                                                                              \
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + hsum8(acc);

#define Q5_1_BODY(Y)                                                                               \
    const int64_t nb = n / QK5_1;                                                                  \
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;                                                \
    __m128 accm = _mm_setzero_ps();                                                                \
    int64_t b = 0;                                                                                 \
    for (; b + 4 <= nb; b += 4) {                                                                  \
        pf_span(&x[b], 4 * sizeof x[0]);                                                           \
        __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(),                                   \
                                         unpack_q5_2(x[b].qs, x[b].qh, x[b + 1].qs, x[b + 1].qh),  \
                                         Y##_LOAD2(b));                                            \
        __m512i p1 = _mm512_dpbusd_epi32(                                                          \
            _mm512_setzero_si512(),                                                                \
            unpack_q5_2(x[b + 2].qs, x[b + 2].qh, x[b + 3].qs, x[b + 3].qh), Y##_LOAD2(b + 2));    \
        __m128 s = _mm_mul_ps(h4f(&x[b].d, sizeof x[0]), Y##_D4(b));                               \
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), spread01(s), acc0);                         \
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), spread23(s), acc1);                         \
        accm = _mm_add_ps(accm, _mm_mul_ps(h4f(&x[b].m, sizeof x[0]), Y##_S4(b)));                 \
    }                                                                                              \
    __m256 acc = _mm256_setzero_ps();                                                              \
    float summ = 0;                                                                                \
    for (; b < nb; b++) {                                                                          \
        __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), unpack_q5_1(x[b].qs, x[b].qh),     \
                                        _mm256_loadu_si256((const __m256i *)Y##_QS(b)));           \
        acc =                                                                                      \
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(h2f(x[b].d) * Y##_D1(b)), acc);  \
        summ += h2f(x[b].m) * Y##_S1(b);                                                           \
    }                                                                                              \
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + hsum8(acc) + summ + hsum4(accm);

/* sum x * y for signed x, y: |x| as u8 against y negated where x < 0. */
static inline __m512i dot_s8_2(__m512i x, __m512i y) {
    __m512i sy = _mm512_mask_sub_epi8(y, _mm512_movepi8_mask(x), _mm512_setzero_si512(), y);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(x), sy);
}

#define Q8_0_BODY(Y)                                                                               \
    const int64_t nb = n / QK8_0;                                                                  \
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;                                                \
    int64_t b = 0;                                                                                 \
    for (; b + 4 <= nb; b += 4) {                                                                  \
        pf_span(&x[b], 4 * sizeof x[0]);                                                           \
        __m512i p0 = dot_s8_2(load2x32(x[b].qs, x[b + 1].qs), Y##_LOAD2(b));                       \
        __m512i p1 = dot_s8_2(load2x32(x[b + 2].qs, x[b + 3].qs), Y##_LOAD2(b + 2));               \
        __m128 s = _mm_mul_ps(h4f(&x[b].d, sizeof x[0]), Y##_D4(b));                               \
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0), spread01(s), acc0);                         \
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1), spread23(s), acc1);                         \
    }                                                                                              \
    __m256 acc = _mm256_setzero_ps();                                                              \
    for (; b < nb; b++) {                                                                          \
        __m256i xv = _mm256_loadu_si256((const __m256i *)x[b].qs);                                 \
        __m256i yv = _mm256_loadu_si256((const __m256i *)Y##_QS(b));                               \
        __m256i sy =                                                                               \
            _mm256_mask_sub_epi8(yv, _mm256_movepi8_mask(xv), _mm256_setzero_si256(), yv);         \
        __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(xv), sy);          \
        acc =                                                                                      \
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(h2f(x[b].d) * Y##_D1(b)), acc);  \
    }                                                                                              \
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + hsum8(acc);

/* ---- the kernels ---------------------------------------------------------------------- */
#define DEFINE_KERNELS(s, XT, YT, BODY)                                                            \
    float rl__vec_dot_##s##_avx512(int64_t n, const void *vx, const void *vy) {                    \
        const XT *x = vx;                                                                          \
        const YT *y = vy;                                                                          \
        BODY(YB)                                                                                   \
    }                                                                                              \
    float rl__gemv_##s##_avx512(int64_t n, const void *vx, const int8_t *yqs, const float *yd,     \
                                const float *ys, const int32_t *yoff) {                            \
        const XT *x = vx;                                                                          \
        (void)ys;                                                                                  \
        (void)yoff;                                                                                \
        BODY(YS)                                                                                   \
    }
DEFINE_KERNELS(q4_1, block_q4_1, block_q8_1, Q4_1_BODY)
DEFINE_KERNELS(q5_0, block_q5_0, block_q8_0, Q5_0_BODY)
DEFINE_KERNELS(q5_1, block_q5_1, block_q8_1, Q5_1_BODY)
DEFINE_KERNELS(q8_0, block_q8_0, block_q8_0, Q8_0_BODY)

/* Offsets for the gemv of Q5_0: NOFF2 of every pair of blocks (16 x i32 each). */
#define DEFINE_PREP(s, OFF)                                                                        \
    void rl__gemv_prep_##s##_avx512(const int8_t *yqs, int64_t n, int32_t *yoff) {                 \
        const __m512i offc = OFF;                                                                  \
        for (int64_t b = 0; b + 2 <= n / 32; b += 2)                                               \
            _mm512_storeu_si512(yoff + 8 * b,                                                      \
                                YB_NOFF2(b, _mm512_loadu_si512(yqs + 32 * b), offc));              \
    }
DEFINE_PREP(q5_0, _mm512_set1_epi8(16))

/* ---- Q4_0: one block per i32 lane, sixteen blocks a step (q4_0_avx512.h) ------------- */
float rl__vec_dot_q4_0_avx512(int64_t n, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK4_0, ng = nb / Q40_G;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        const block_q4_0 *xg = x + Q40_G * g;
        const block_q8_0 *yg = y + Q40_G * g;
        pf_span(xg, Q40_G * sizeof *xg);
        __m512i c[8], negw, yr[8];
        __m512 dx;
        q40_w_group(xg, c, &negw, &dx);
        q40_y_group(yg[0].qs, sizeof *yg, yr);
        int8_t yt[8 * 64] __attribute__((aligned(64)));
        for (int d = 0; d < 8; d++) _mm512_store_si512(yt + 64 * d, yr[d]);
        const __m512 dy = q40_h16(&yg[0].d, sizeof *yg);
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q40_isum(c, negw, yt)), _mm512_mul_ps(dx, dy),
                              acc);
    }
    return _mm512_reduce_add_ps(acc) +
           q40_tail(x, Q40_G * ng, nb, y[0].qs, sizeof y[0], NULL, &y[0].d, sizeof y[0]);
}

/* yoff: the transposed activations of every whole group (rl__gemv_prep_q4_0_avx512). */
float rl__gemv_q4_0_avx512(int64_t n, const void *vx, const int8_t *yqs, const float *yd,
                           const float *ys, const int32_t *yoff) {
    const block_q4_0 *x = vx;
    const int8_t *yt = (const int8_t *)yoff;
    const int64_t nb = n / QK4_0, ng = nb / Q40_G;
    (void)ys;
    __m512 acc = _mm512_setzero_ps();
    for (int64_t g = 0; g < ng; g++) {
        const block_q4_0 *xg = x + Q40_G * g;
        pf_span(xg, Q40_G * sizeof *xg);
        __m512i c[8], negw;
        __m512 dx;
        q40_w_group(xg, c, &negw, &dx);
        const __m512 dy = _mm512_permutexvar_ps(q40_blk_idx(), _mm512_loadu_ps(yd + Q40_G * g));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(q40_isum(c, negw, yt + 512 * g)),
                              _mm512_mul_ps(dx, dy), acc);
    }
    return _mm512_reduce_add_ps(acc) + q40_tail(x, Q40_G * ng, nb, yqs, 32, yd, NULL, 0);
}

/* The activation row's whole groups transposed into the offsets area (n bytes: 512 bytes
 * per group of 16 blocks), read by the gemv and the tiles. */
void rl__gemv_prep_q4_0_avx512(const int8_t *yqs, int64_t n, int32_t *yoff) {
    int8_t *yt = (int8_t *)yoff;
    for (int64_t g = 0; g < n / QK4_0 / Q40_G; g++) {
        __m512i yr[8];
        q40_y_group(yqs + 512 * g, 32, yr);
        for (int d = 0; d < 8; d++) _mm512_storeu_si512(yt + 512 * g + 64 * d, yr[d]);
    }
}
