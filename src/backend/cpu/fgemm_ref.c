/*
 * fgemm_ref.c - plain-C reference of F16/BF16 weights times F32 activations (cpu.h:
 * rl__fdot_*).
 *
 * Each weight is widened exactly to F32 and the products are summed in double, so the
 * reference is the exact dot up to one final rounding; the SIMD paths (fgemm_avx2.c,
 * fgemm_avx512.c) sum in F32 and are tested against it within F32 rounding.
 */
#include "cpu.h"

float rl__fdot_f16_ref(int64_t n, const void *vw, const void *vx) {
    const rl_fp16 *w = vw;
    const float *x = vx;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)rl__fp16_to_fp32(w[i]) * (double)x[i];
    return (float)s;
}

float rl__fdot_bf16_ref(int64_t n, const void *vw, const void *vx) {
    const rl_bf16 *w = vw;
    const float *x = vx;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)rl__bf16_to_fp32(w[i]) * (double)x[i];
    return (float)s;
}
