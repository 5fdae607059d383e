/*
 * vec_avx2.c - the sampler's whole-vector passes on one AVX register per 8 lanes (built
 * with the AVX2 flags; the same bits as the baseline build, see vec_kern.h).
 */
#include "sampler/sampler.h"

typedef float f8 __attribute__((vector_size(32)));
typedef int32_t i8 __attribute__((vector_size(32)));

static inline f8 f8_ld(const float *p) {
    f8 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline void f8_st(float *p, f8 v) { memcpy(p, &v, sizeof v); }
static inline void i8_st(int32_t *p, i8 v) { memcpy(p, &v, sizeof v); }
static inline f8 f8_splat(float x) { return (f8){x, x, x, x, x, x, x, x}; }
static inline i8 i8_splat(int32_t x) { return (i8){x, x, x, x, x, x, x, x}; }
static inline f8 f8_add(f8 a, f8 b) { return a + b; }
static inline f8 f8_sub(f8 a, f8 b) { return a - b; }
static inline f8 f8_mul(f8 a, f8 b) { return a * b; }
static inline f8 f8_div(f8 a, f8 b) { return a / b; }
static inline i8 f8_lt(f8 a, f8 b) { return a < b; }
static inline i8 f8_gt(f8 a, f8 b) { return a > b; }
static inline i8 i8_and(i8 a, i8 b) { return a & b; }
static inline f8 f8_sel(i8 m, f8 a, f8 b) { return (f8)((m & (i8)a) | (~m & (i8)b)); }
static inline f8 f8_andnot(i8 m, f8 v) { return (f8)(~m & (i8)v); }
static inline i8 f8_bits_sub(f8 a, f8 b) { return (i8)a - (i8)b; }
static inline f8 f8_exp2i(i8 n) { return (f8)((n + i8_splat(127)) << 23); }
static inline i8 i8_bits(uint8_t m) {
    return (i8_splat(m) & (i8){1, 2, 4, 8, 16, 32, 64, 128}) != i8_splat(0);
}

#define KSFX avx2
#include "sampler/vec_kern.h"
