/*
 * dot_avx2.c - AVX2 + FMA + F16C dot products of the float and legacy quantized types
 * (cpu.h names the contract; dot_ref.c defines the results).
 *
 * Quantized blocks: the 32 weights of a block are widened to 32 unsigned bytes and
 * multiplied with the 32 signed activation bytes by vpmaddubsw (u8 x s8 -> pairs summed
 * to i16; with weights <= 31 and |y| <= 127 no pair saturates), then vpmaddwd with ones
 * sums to 8 x i32 and one FMA applies the block's scale. Offsets (q - 8 for Q4_0,
 * q - 16 for Q5_0) are taken off as offset * sum(y), the sum also by vpmaddubsw, while
 * still in i16: |31 * 127 * 2| + |16 * 127 * 2| < 2^15. Q8_0 weights are signed: the sign
 * trick (|x| as u8, y with x's sign) keeps them in vpmaddubsw; |x| = 128 for x = -128
 * is still right as an unsigned byte, and activations from our quantizers are never
 * -128. Results differ from the reference only by float summation order.
 */
#include "cpu.h"
#include "prefetch.h"

#include <immintrin.h>

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

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

float rl__vec_dot_f32_avx2(int64_t n, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        pf_span(x + i, 128);
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8)
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += x[i] * y[i];
    return s;
}

static inline __m256 load_f16x8(const rl_fp16 *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

float rl__vec_dot_f16_avx2(int64_t n, const void *vx, const void *vy) {
    const rl_fp16 *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        pf_span(x + i, 64);
        a0 = _mm256_fmadd_ps(load_f16x8(x + i), load_f16x8(y + i), a0);
        a1 = _mm256_fmadd_ps(load_f16x8(x + i + 8), load_f16x8(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_f16x8(x + i + 16), load_f16x8(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_f16x8(x + i + 24), load_f16x8(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_f16x8(x + i), load_f16x8(y + i), a0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += h2f(x[i]) * h2f(y[i]);
    return s;
}

/* bf16 is the top half of an f32: widen to 32 bits and shift. */
static inline __m256 load_bf16x8(const rl_bf16 *p) {
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}

float rl__vec_dot_bf16_avx2(int64_t n, const void *vx, const void *vy) {
    const rl_bf16 *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        pf_span(x + i, 64);
        a0 = _mm256_fmadd_ps(load_bf16x8(x + i), load_bf16x8(y + i), a0);
        a1 = _mm256_fmadd_ps(load_bf16x8(x + i + 8), load_bf16x8(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_bf16x8(x + i + 16), load_bf16x8(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_bf16x8(x + i + 24), load_bf16x8(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_bf16x8(x + i), load_bf16x8(y + i), a0);
    float s = hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += rl__bf16_to_fp32(x[i]) * rl__bf16_to_fp32(y[i]);
    return s;
}

/* 16 bytes of nibbles -> 32 bytes 0..15: low nibbles (elements 0..15) then high. */
static inline __m256i unpack_nibbles(const uint8_t *qs) {
    __m128i q = _mm_loadu_si128((const __m128i *)qs);
    __m256i t = _mm256_set_m128i(_mm_srli_epi16(q, 4), q);
    return _mm256_and_si256(t, _mm256_set1_epi8(0x0f));
}

/* Byte j = 0xff where bit j of v is set. Each byte picks the byte of v holding its bit
 * (vpshufb within the broadcast), then tests its own bit. */
static inline __m256i bits_to_bytes(uint32_t v) {
    const __m256i pick = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    const __m256i bit = _mm256_set1_epi64x((int64_t)0x8040201008040201);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)v), pick);
    return _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
}

static inline uint32_t load_u32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* 8 x i32 partial sums of q * y (q unsigned bytes) minus off * sum(y). */
static inline __m256i dot32_u8(__m256i q, __m256i y, __m256i off) {
    __m256i p = _mm256_maddubs_epi16(q, y);
    p = _mm256_sub_epi16(p, _mm256_maddubs_epi16(off, y));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

static inline __m256i dot32_u8_nooff(__m256i q, __m256i y) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(q, y), _mm256_set1_epi16(1));
}

/* Products of four fp16 pairs: the fp16 at pa + i*sa times the one at pb + i*sb, packed
 * in general registers and converted at once (cheaper than eight scalar conversions). */
static inline uint64_t pack4_h(const uint8_t *p, size_t stride) {
    uint16_t v0, v1, v2, v3;
    memcpy(&v0, p, 2);
    memcpy(&v1, p + stride, 2);
    memcpy(&v2, p + 2 * stride, 2);
    memcpy(&v3, p + 3 * stride, 2);
    return (uint64_t)v0 | (uint64_t)v1 << 16 | (uint64_t)v2 << 32 | (uint64_t)v3 << 48;
}

/* Four fp16 at p + i*stride as floats, gathered in general registers and converted at
 * once (cheaper than four scalar conversions). */
static inline __m128 h4f(const void *p, size_t stride) {
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)pack4_h(p, stride)));
}

/* Lane i of s in all 8 lanes. */
static inline __m256 lane(__m128 s, int i) {
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(s), _mm256_set1_epi32(i));
}

static inline float hsum4(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline __m256i load32(const int8_t *qs) { return _mm256_loadu_si256((const __m256i *)qs); }

/* Activation sources, as in dot_avx512.c: YB reads Q8_0/Q8_1 blocks (vec_dot), YS a split
 * row (gemv); the numbers are the same, so the two kernels agree bit for bit. */
#define YB_QS(b) (y[b].qs)
#define YB_D4(b) h4f(&y[b].d, sizeof y[0])
#define YB_D1(b) h2f(y[b].d)
#define YB_S4(b) h4f(&y[b].s, sizeof y[0])
#define YB_S1(b) h2f(y[b].s)
#define YS_QS(b) (yqs + 32 * (b))
#define YS_D4(b) _mm_loadu_ps(yd + (b))
#define YS_D1(b) (yd[b])
#define YS_S4(b) _mm_loadu_ps(ys + (b))
#define YS_S1(b) (ys[b])

/* Four blocks per step: P(b, Y) gives the 8 x i32 partial sums of block b; one FMA per
 * block with its scale dx * dy. */
#define DOT4_LOOP(P, Y)                                                                            \
    for (; b + 4 <= nb; b += 4) {                                                                  \
        pf_span(&x[b], 4 * sizeof x[0]);                                                           \
        __m128 s4 = _mm_mul_ps(h4f(&x[b].d, sizeof x[0]), Y##_D4(b));                              \
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(P(b, Y)), lane(s4, 0), acc0);                    \
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(P(b + 1, Y)), lane(s4, 1), acc1);                \
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(P(b + 2, Y)), lane(s4, 2), acc0);                \
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(P(b + 3, Y)), lane(s4, 3), acc1);                \
    }                                                                                              \
    for (; b < nb; b++)                                                                            \
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(P(b, Y)),                                        \
                               _mm256_set1_ps(h2f(x[b].d) * Y##_D1(b)), acc0);

/* The sum of m * s over the blocks of Q4_1/Q5_1, four at a time. */
#define MIN_SUM(Y)                                                                                 \
    __m128 accm = _mm_setzero_ps();                                                                \
    float summ = 0;                                                                                \
    for (int64_t i = 0; i + 4 <= nb; i += 4)                                                       \
        accm = _mm_add_ps(accm, _mm_mul_ps(h4f(&x[i].m, sizeof x[0]), Y##_S4(i)));                 \
    for (int64_t i = nb - nb % 4; i < nb; i++) summ += h2f(x[i].m) * Y##_S1(i);

#define Q4_0_BODY(Y)                                                                               \
    const int64_t nb = n / QK4_0;                                                                  \
    const __m256i eight = _mm256_set1_epi8(8);                                                     \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;                                                \
    int64_t b = 0;                                                                                 \
    DOT4_LOOP(P4_0, Y)                                                                             \
    return hsum8(_mm256_add_ps(acc0, acc1));
#define P4_0(i, Y) dot32_u8(unpack_nibbles(x[i].qs), load32(Y##_QS(i)), eight)

#define Q4_1_BODY(Y)                                                                               \
    const int64_t nb = n / QK4_1;                                                                  \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;                                                \
    MIN_SUM(Y)                                                                                     \
    int64_t b = 0;                                                                                 \
    DOT4_LOOP(P4_1, Y)                                                                             \
    return hsum8(_mm256_add_ps(acc0, acc1)) + hsum4(accm) + summ;
#define P4_1(i, Y) dot32_u8_nooff(unpack_nibbles(x[i].qs), load32(Y##_QS(i)))

static inline __m256i unpack_q5(const uint8_t *qs, const uint8_t *qh) {
    __m256i hb = _mm256_and_si256(bits_to_bytes(load_u32(qh)), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(unpack_nibbles(qs), hb);
}

#define Q5_0_BODY(Y)                                                                               \
    const int64_t nb = n / QK5_0;                                                                  \
    const __m256i sixteen = _mm256_set1_epi8(16);                                                  \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;                                                \
    int64_t b = 0;                                                                                 \
    DOT4_LOOP(P5_0, Y)                                                                             \
    return hsum8(_mm256_add_ps(acc0, acc1));
#define P5_0(i, Y) dot32_u8(unpack_q5(x[i].qs, x[i].qh), load32(Y##_QS(i)), sixteen)

#define Q5_1_BODY(Y)                                                                               \
    const int64_t nb = n / QK5_1;                                                                  \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;                                                \
    MIN_SUM(Y)                                                                                     \
    int64_t b = 0;                                                                                 \
    DOT4_LOOP(P5_1, Y)                                                                             \
    return hsum8(_mm256_add_ps(acc0, acc1)) + hsum4(accm) + summ;
#define P5_1(i, Y) dot32_u8_nooff(unpack_q5(x[i].qs, x[i].qh), load32(Y##_QS(i)))

static inline __m256i dot32_s8(__m256i x, __m256i y) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

#define Q8_0_BODY(Y)                                                                               \
    const int64_t nb = n / QK8_0;                                                                  \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;                                                \
    int64_t b = 0;                                                                                 \
    DOT4_LOOP(P8_0, Y)                                                                             \
    return hsum8(_mm256_add_ps(acc0, acc1));
#define P8_0(i, Y) dot32_s8(load32(x[i].qs), load32(Y##_QS(i)))

#define DEFINE_KERNELS(s, XT, YT, BODY)                                                            \
    float rl__vec_dot_##s##_avx2(int64_t n, const void *vx, const void *vy) {                      \
        const XT *x = vx;                                                                          \
        const YT *y = vy;                                                                          \
        BODY(YB)                                                                                   \
    }                                                                                              \
    float rl__gemv_##s##_avx2(int64_t n, const void *vx, const int8_t *yqs, const float *yd,       \
                              const float *ys, const int32_t *yoff) {                              \
        const XT *x = vx;                                                                          \
        (void)ys;                                                                                  \
        (void)yoff;                                                                                \
        BODY(YS)                                                                                   \
    }
DEFINE_KERNELS(q4_0, block_q4_0, block_q8_0, Q4_0_BODY)
DEFINE_KERNELS(q4_1, block_q4_1, block_q8_1, Q4_1_BODY)
DEFINE_KERNELS(q5_0, block_q5_0, block_q8_0, Q5_0_BODY)
DEFINE_KERNELS(q5_1, block_q5_1, block_q8_1, Q5_1_BODY)
DEFINE_KERNELS(q8_0, block_q8_0, block_q8_0, Q8_0_BODY)
