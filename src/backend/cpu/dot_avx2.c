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

#include <immintrin.h>

static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float h2f(rl_fp16 h) { return _cvtsh_ss(h); }

float rl__vec_dot_f32_avx2(int64_t n, const void *vx, const void *vy) {
    const float *x = vx, *y = vy;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
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

static inline __m128 scales4(const void *pa, size_t sa, const void *pb, size_t sb) {
    return _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi64_si128((long long)pack4_h(pa, sa))),
                      _mm_cvtph_ps(_mm_cvtsi64_si128((long long)pack4_h(pb, sb))));
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

/* Four blocks per step: P(b) gives the 8 x i32 partial sums of block b. */
#define DOT4_LOOP(P)                                                                       \
    for (; b + 4 <= nb; b += 4) {                                                          \
        __m128 s4 = scales4(&x[b].d, sizeof x[0], &y[b].d, sizeof y[0]);                   \
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(P(b)), lane(s4, 0), acc0);               \
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(P(b + 1)), lane(s4, 1), acc1);           \
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(P(b + 2)), lane(s4, 2), acc0);           \
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(P(b + 3)), lane(s4, 3), acc1);           \
    }                                                                                      \
    for (; b < nb; b++)                                                                    \
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(P(b)), _mm256_set1_ps(h2f(x[b].d) * h2f(y[b].d)), acc0);

static inline __m256i load_y(const int8_t *qs) { return _mm256_loadu_si256((const __m256i *)qs); }

float rl__vec_dot_q4_0_avx2(int64_t n, const void *vx, const void *vy) {
    const block_q4_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK4_0;
    const __m256i eight = _mm256_set1_epi8(8);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    int64_t b = 0;
#define P(i) dot32_u8(unpack_nibbles(x[i].qs), load_y(y[i].qs), eight)
    DOT4_LOOP(P)
#undef P
    return hsum8(_mm256_add_ps(acc0, acc1));
}

float rl__vec_dot_q4_1_avx2(int64_t n, const void *vx, const void *vy) {
    const block_q4_1 *x = vx;
    const block_q8_1 *y = vy;
    const int64_t nb = n / QK4_1;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    __m128 accm = _mm_setzero_ps();
    float summ = 0;
    for (int64_t i = 0; i + 4 <= nb; i += 4) accm = _mm_add_ps(accm, scales4(&x[i].m, sizeof x[0], &y[i].s, sizeof y[0]));
    for (int64_t i = nb - nb % 4; i < nb; i++) summ += h2f(x[i].m) * h2f(y[i].s);
    int64_t b = 0;
#define P(i) dot32_u8_nooff(unpack_nibbles(x[i].qs), load_y(y[i].qs))
    DOT4_LOOP(P)
#undef P
    return hsum8(_mm256_add_ps(acc0, acc1)) + hsum4(accm) + summ;
}

static inline __m256i unpack_q5(const uint8_t *qs, const uint8_t *qh) {
    __m256i hb = _mm256_and_si256(bits_to_bytes(load_u32(qh)), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(unpack_nibbles(qs), hb);
}

float rl__vec_dot_q5_0_avx2(int64_t n, const void *vx, const void *vy) {
    const block_q5_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK5_0;
    const __m256i sixteen = _mm256_set1_epi8(16);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    int64_t b = 0;
#define P(i) dot32_u8(unpack_q5(x[i].qs, x[i].qh), load_y(y[i].qs), sixteen)
    DOT4_LOOP(P)
#undef P
    return hsum8(_mm256_add_ps(acc0, acc1));
}

float rl__vec_dot_q5_1_avx2(int64_t n, const void *vx, const void *vy) {
    const block_q5_1 *x = vx;
    const block_q8_1 *y = vy;
    const int64_t nb = n / QK5_1;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    __m128 accm = _mm_setzero_ps();
    float summ = 0;
    for (int64_t i = 0; i + 4 <= nb; i += 4) accm = _mm_add_ps(accm, scales4(&x[i].m, sizeof x[0], &y[i].s, sizeof y[0]));
    for (int64_t i = nb - nb % 4; i < nb; i++) summ += h2f(x[i].m) * h2f(y[i].s);
    int64_t b = 0;
#define P(i) dot32_u8_nooff(unpack_q5(x[i].qs, x[i].qh), load_y(y[i].qs))
    DOT4_LOOP(P)
#undef P
    return hsum8(_mm256_add_ps(acc0, acc1)) + hsum4(accm) + summ;
}

static inline __m256i dot32_s8(__m256i x, __m256i y) {
    __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

float rl__vec_dot_q8_0_avx2(int64_t n, const void *vx, const void *vy) {
    const block_q8_0 *x = vx;
    const block_q8_0 *y = vy;
    const int64_t nb = n / QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    int64_t b = 0;
#define P(i) dot32_s8(load_y(x[i].qs), load_y(y[i].qs))
    DOT4_LOOP(P)
#undef P
    return hsum8(_mm256_add_ps(acc0, acc1));
}
