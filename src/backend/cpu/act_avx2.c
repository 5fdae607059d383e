/*
 * act_avx2.c - AVX2 activation quantizers for the matmul: one f32 row to Q8_0, Q8_1,
 * Q8_K, F16 or BF16, byte-identical to the reference quantizers rl__quant_<t> (which
 * follow ggml's quantize_row_*_ref). The arithmetic is the reference's, lane-wise:
 *   Q8_0/Q8_1: d = amax / 127, id = 1/d (0 when d = 0), q = roundf(x * id), which
 *              rounds halves away from zero: trunc, then +-1 where |frac| >= 0.5
 *              (x - trunc(x) is exact). Q8_1 adds s = fp16(d * sum(q)).
 *   Q8_K:      the element of largest magnitude (first one on ties) sets
 *              iscale = -127 / max; q = min(127, nearest-even(iscale * x)) (vcvtps2dq
 *              under the default rounding mode), d = 1 / iscale, bsums per 16.
 *   F16:       vcvtps2ph, round to nearest even (rl__fp32_to_fp16 rounds the same way);
 *              a NaN becomes 0x7e00 with its sign, as the reference stores it.
 *   BF16:      round to nearest even in integer arithmetic, NaN quieted.
 */
#include "cpu.h"

#include <immintrin.h>

static inline float hmax8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

static inline int hsum8_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* roundf(v) for |v| < 2^23, as i32. */
static inline __m256i round_away(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f));
    __m256 ge = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(ge, step)));
}

/* 4 x 8 i32 (each within int8 range) -> 32 int8 in order. */
static inline __m256i pack_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i ab = _mm256_packs_epi32(a, b); /* a0-3 b0-3 | a4-7 b4-7 */
    __m256i cd = _mm256_packs_epi32(c, d);
    __m256i r = _mm256_packs_epi16(ab, cd); /* a0-3 b0-3 c0-3 d0-3 | a4-7 b4-7 c4-7 d4-7 */
    return _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* One 32-element block of Q8_0/Q8_1: writes qs, returns d and the sum of qs. */
static inline float q8_block(const float *x, int8_t *qs, int *sum) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                             _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    const float amax = hmax8(m);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const __m256 vid = _mm256_set1_ps(id);
    __m256i i0 = round_away(_mm256_mul_ps(v0, vid)), i1 = round_away(_mm256_mul_ps(v1, vid));
    __m256i i2 = round_away(_mm256_mul_ps(v2, vid)), i3 = round_away(_mm256_mul_ps(v3, vid));
    _mm256_storeu_si256((__m256i *)qs, pack_i8(i0, i1, i2, i3));
    if (sum) *sum = hsum8_i32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
    return d;
}

void rl__act_quant_q8_0_avx2(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t b = 0; b < n / QK8_0; b++) {
        float d = q8_block(x + b * QK8_0, y[b].qs, NULL);
        y[b].d = rl__fp32_to_fp16(d);
    }
}

void rl__act_quant_q8_1_avx2(const float *x, void *vy, int64_t n) {
    block_q8_1 *y = vy;
    for (int64_t b = 0; b < n / QK8_1; b++) {
        int sum;
        float d = q8_block(x + b * QK8_1, y[b].qs, &sum);
        y[b].d = rl__fp32_to_fp16(d);
        y[b].s = rl__fp32_to_fp16((float)sum * d);
    }
}

void rl__act_quant_q8_K_avx2(const float *x, void *vy, int64_t n) {
    block_q8_K *y = vy;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int i = 0; i < QK_K; i += 8)
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
        const float amax = hmax8(m);
        if (amax == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        float max = 0;
        const __m256 va = _mm256_set1_ps(amax);
        for (int i = 0; i < QK_K; i += 8) {
            __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i));
            int mask = _mm256_movemask_ps(_mm256_cmp_ps(a, va, _CMP_EQ_OQ));
            if (mask) {
                max = x[i + __builtin_ctz((unsigned)mask)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m256 vs = _mm256_set1_ps(iscale);
        const __m256i lim = _mm256_set1_epi32(127);
        for (int g = 0; g < QK_K; g += 32) {
            __m256i q[4];
            for (int k = 0; k < 4; k++)
                q[k] = _mm256_min_epi32(
                    _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + g + 8 * k), vs)), lim);
            _mm256_storeu_si256((__m256i *)(y[b].qs + g), pack_i8(q[0], q[1], q[2], q[3]));
            y[b].bsums[g / 16] = (int16_t)hsum8_i32(_mm256_add_epi32(q[0], q[1]));
            y[b].bsums[g / 16 + 1] = (int16_t)hsum8_i32(_mm256_add_epi32(q[2], q[3]));
        }
        y[b].d = 1.0f / iscale;
    }
}

/* fp16 of the reference quantizer: every NaN becomes 0x7e00 with the input's sign. */
static inline rl_fp16 f16_ref(float f) {
    uint32_t u = rl__f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (rl_fp16)(((u >> 16) & 0x8000u) | 0x7e00u);
    return rl__fp32_to_fp16(f);
}

void rl__act_quant_f16_avx2(const float *x, void *vy, int64_t n) {
    rl_fp16 *y = vy;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        if (_mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q))) {
            for (int k = 0; k < 8; k++) y[i + k] = f16_ref(x[i + k]);
            continue;
        }
        _mm_storeu_si128((__m128i *)(y + i), h);
    }
    for (; i < n; i++) y[i] = f16_ref(x[i]);
}

void rl__act_quant_bf16_avx2(const float *x, void *vy, int64_t n) {
    rl_bf16 *y = vy;
    int64_t i = 0;
    const __m256i absm = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1);
    for (; i + 16 <= n; i += 16) {
        __m256i r[2];
        for (int k = 0; k < 2; k++) {
            __m256i u = _mm256_castps_si256(_mm256_loadu_ps(x + i + 8 * k));
            __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, absm), inf);
            __m256i rnd = _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(u, 16), one));
            __m256i v = _mm256_srli_epi32(_mm256_add_epi32(u, rnd), 16);
            __m256i q = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(64));
            r[k] = _mm256_blendv_epi8(v, q, nan);
        }
        __m256i p = _mm256_packus_epi32(r[0], r[1]); /* per 128-bit lane: r0 lo, r1 lo | ... */
        _mm256_storeu_si256((__m256i *)(y + i), _mm256_permute4x64_epi64(p, 0xd8));
    }
    for (; i < n; i++) y[i] = rl__fp32_to_bf16(x[i]);
}
