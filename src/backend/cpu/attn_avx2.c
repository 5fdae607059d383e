/*
 * attn_avx2.c - the inner loops of attention.c with AVX2 + F16C: fp16 cache rows to
 * float (vcvtph2ps, exact) and acc += p * v. The arithmetic is the plain-C loops' (a
 * multiply, then an add: no fused multiply-add), so every path gives the same bits.
 */
#include "cpu.h"

#include <immintrin.h>

void rl__attn_f16_row_avx2(const rl_fp16 *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) y[i] = rl__fp16_to_fp32(x[i]);
}

void rl__attn_axpy_avx2(float *y, float a, const float *x, int64_t n) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i),
                                              _mm256_mul_ps(va, _mm256_loadu_ps(x + i))));
    for (; i < n; i++) y[i] += a * x[i];
}
