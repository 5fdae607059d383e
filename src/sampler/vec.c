/*
 * vec.c - the sampler's whole-vector passes for the baseline x86-64 target (each 8-lane
 * vector is two SSE registers), and the choice between them and the AVX2 build
 * (vec_avx2.c) by the CPU path in use (rl_cpu_isa_active, RUVLLM_CPU_ISA). Both builds
 * give the same bits (vec_kern.h).
 */
#include "sampler/simd.h"

typedef struct {
    v4f lo, hi;
} f8;
typedef struct {
    v4i lo, hi;
} i8;

static inline f8 f8_ld(const float *p) { return (f8){ld(p), ld(p + 4)}; }
static inline void f8_st(float *p, f8 v) {
    st(p, v.lo);
    st(p + 4, v.hi);
}
static inline void i8_st(int32_t *p, i8 v) {
    memcpy(p, &v.lo, sizeof v.lo);
    memcpy(p + 4, &v.hi, sizeof v.hi);
}
static inline f8 f8_splat(float x) { return (f8){splat(x), splat(x)}; }
static inline i8 i8_splat(int32_t x) { return (i8){splati(x), splati(x)}; }
static inline f8 f8_add(f8 a, f8 b) { return (f8){a.lo + b.lo, a.hi + b.hi}; }
static inline f8 f8_sub(f8 a, f8 b) { return (f8){a.lo - b.lo, a.hi - b.hi}; }
static inline f8 f8_mul(f8 a, f8 b) { return (f8){a.lo * b.lo, a.hi * b.hi}; }
static inline f8 f8_div(f8 a, f8 b) { return (f8){a.lo / b.lo, a.hi / b.hi}; }
static inline i8 f8_lt(f8 a, f8 b) { return (i8){a.lo < b.lo, a.hi < b.hi}; }
static inline i8 f8_gt(f8 a, f8 b) { return (i8){a.lo > b.lo, a.hi > b.hi}; }
static inline i8 i8_and(i8 a, i8 b) { return (i8){a.lo & b.lo, a.hi & b.hi}; }
static inline f8 f8_sel(i8 m, f8 a, f8 b) { return (f8){sel(m.lo, a.lo, b.lo), sel(m.hi, a.hi, b.hi)}; }
static inline f8 f8_andnot(i8 m, f8 v) {
    return (f8){(v4f)(~m.lo & (v4i)v.lo), (v4f)(~m.hi & (v4i)v.hi)};
}
static inline i8 f8_bits_sub(f8 a, f8 b) {
    return (i8){(v4i)a.lo - (v4i)b.lo, (v4i)a.hi - (v4i)b.hi};
}
static inline f8 f8_exp2i(i8 n) {
    return (f8){(v4f)((n.lo + splati(127)) << 23), (v4f)((n.hi + splati(127)) << 23)};
}
/* lanes whose bit of byte m is set */
static inline i8 i8_bits(uint8_t m) {
    v4i b = splati(m);
    return (i8){(b & (v4i){1, 2, 4, 8}) != splati(0), (b & (v4i){16, 32, 64, 128}) != splati(0)};
}

#define KSFX sse
#include "sampler/vec_kern.h"

typedef struct kernels {
    float (*vmax)(const float *, int32_t);
    bool (*vcheck)(const float *, int32_t);
    bool (*vcopy)(float *, const float *, const uint8_t *, int32_t);
    void (*vmask)(float *, const uint8_t *, int32_t);
    int32_t (*vargmax)(const float *, const uint8_t *, int32_t, bool *);
    void (*vdiv)(float *, const float *, float, int32_t);
    double (*vexp_sum)(const float *, float *, int32_t, float, double *);
} kernels;

static const kernels k_sse = {rl__samp_vmax_sse,    rl__samp_vcheck_sse, rl__samp_vcopy_sse,
                              rl__samp_vmask_sse,   rl__samp_vargmax_sse, rl__samp_vdiv_sse,
                              rl__samp_vexp_sum_sse};
static const kernels k_avx2 = {rl__samp_vmax_avx2,    rl__samp_vcheck_avx2,
                               rl__samp_vcopy_avx2,   rl__samp_vmask_avx2,
                               rl__samp_vargmax_avx2, rl__samp_vdiv_avx2,
                               rl__samp_vexp_sum_avx2};

/* The kernels of the active CPU path, looked up at each call (a call per whole-vector
 * pass), so that rl_cpu_isa_set takes effect at once. */
static inline const kernels *K(void) {
    return rl_cpu_isa_active() >= RL_CPU_ISA_AVX2 ? &k_avx2 : &k_sse;
}

float rl__vmax(const float *x, int32_t n) { return K()->vmax(x, n); }
bool rl__vcheck(const float *x, int32_t n) { return K()->vcheck(x, n); }
bool rl__vcopy(float *dst, const float *src, const uint8_t *mask, int32_t n) {
    return K()->vcopy(dst, src, mask, n);
}
void rl__vmask(float *x, const uint8_t *mask, int32_t n) { K()->vmask(x, mask, n); }
int32_t rl__vargmax(const float *x, const uint8_t *mask, int32_t n, bool *ok) {
    return K()->vargmax(x, mask, n, ok);
}
void rl__vdiv(float *dst, const float *src, float t, int32_t n) { K()->vdiv(dst, src, t, n); }
double rl__vexp_sum(const float *x, float *e, int32_t n, float mx, double *bs) {
    return K()->vexp_sum(x, e, n, mx, bs);
}
