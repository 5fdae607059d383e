/*
 * dispatch.c - the table [type][isa] of dot kernels and activation quantizers, and the
 * public rl_vec_dot / rl_type_vec_dot_type.
 *
 * Not every type has a SIMD kernel on every path: a missing entry falls back to the
 * next lower path (avx512 -> avx2 -> ref), so adding a kernel is one table entry.
 */
#include "cpu.h"
#include "../backend.h"

/* Kernels written in other files of this folder that may not be linked in yet
 * (dot_ref_iq.c, dot_ref_small.c, dot_k_avx2.c, dot_k_avx512.c) and the reference
 * activation quantizers of src/quant/. Weak and hidden, so a missing one is NULL and
 * its type reports RL_ERR_UNSUPPORTED (the tests fail on it) while the build still
 * links. These are resolved once all kernels land. */
#define WEAK_DOT(s, isa)                                                                   \
    __attribute__((weak, visibility("hidden"))) float rl__vec_dot_##s##_##isa(             \
        int64_t n, const void *x, const void *y);
#define WEAK_REF(E, s) WEAK_DOT(s, ref)
#define WEAK_SIMD(E, s) WEAK_DOT(s, avx2) WEAK_DOT(s, avx512)
#define OTHER_REF(X)                                                                       \
    X(IQ2_XXS, iq2_xxs) X(IQ2_XS, iq2_xs) X(IQ3_XXS, iq3_xxs) X(IQ1_S, iq1_s)             \
    X(IQ3_S, iq3_s) X(IQ2_S, iq2_s) X(IQ1_M, iq1_m) X(IQ4_NL, iq4_nl) X(IQ4_XS, iq4_xs)   \
    X(TQ1_0, tq1_0) X(TQ2_0, tq2_0) X(MXFP4, mxfp4) X(NVFP4, nvfp4) X(Q1_0, q1_0)         \
    X(Q2_0, q2_0)
#define OTHER_SIMD(X)                                                                      \
    X(Q2_K, q2_K) X(Q3_K, q3_K) X(Q4_K, q4_K) X(Q5_K, q5_K) X(Q6_K, q6_K)                 \
    X(IQ4_NL, iq4_nl) X(IQ4_XS, iq4_xs)
OTHER_REF(WEAK_REF)
OTHER_SIMD(WEAK_SIMD)
#define WEAK_QUANT(E, s)                                                                   \
    __attribute__((weak, visibility("hidden"))) void rl__quant_##s(                        \
        const float *src, void *dst, int64_t n, const float *imatrix);
RL__ACT_TYPES(WEAK_QUANT)

/* Row: ref, avx2, avx512 kernel of one weight type. */
#define ALL3(s) {rl__vec_dot_##s##_ref, rl__vec_dot_##s##_avx2, rl__vec_dot_##s##_avx512}
#define REF_ONLY(s) {rl__vec_dot_##s##_ref, NULL, NULL}

static const rl__vec_dot_fn g_dots[RL_TYPE_COUNT][RL_CPU_ISA_COUNT] = {
    [RL_TYPE_F32] = ALL3(f32),
    [RL_TYPE_F16] = ALL3(f16),
    [RL_TYPE_BF16] = ALL3(bf16),
    [RL_TYPE_Q4_0] = ALL3(q4_0),
    [RL_TYPE_Q4_1] = ALL3(q4_1),
    [RL_TYPE_Q5_0] = ALL3(q5_0),
    [RL_TYPE_Q5_1] = ALL3(q5_1),
    [RL_TYPE_Q8_0] = ALL3(q8_0),
    [RL_TYPE_Q2_K] = ALL3(q2_K),
    [RL_TYPE_Q3_K] = ALL3(q3_K),
    [RL_TYPE_Q4_K] = ALL3(q4_K),
    [RL_TYPE_Q5_K] = ALL3(q5_K),
    [RL_TYPE_Q6_K] = ALL3(q6_K),
    [RL_TYPE_IQ4_NL] = ALL3(iq4_nl),
    [RL_TYPE_IQ4_XS] = ALL3(iq4_xs),
    [RL_TYPE_IQ2_XXS] = REF_ONLY(iq2_xxs),
    [RL_TYPE_IQ2_XS] = REF_ONLY(iq2_xs),
    [RL_TYPE_IQ3_XXS] = REF_ONLY(iq3_xxs),
    [RL_TYPE_IQ1_S] = REF_ONLY(iq1_s),
    [RL_TYPE_IQ3_S] = REF_ONLY(iq3_s),
    [RL_TYPE_IQ2_S] = REF_ONLY(iq2_s),
    [RL_TYPE_IQ1_M] = REF_ONLY(iq1_m),
    [RL_TYPE_TQ1_0] = REF_ONLY(tq1_0),
    [RL_TYPE_TQ2_0] = REF_ONLY(tq2_0),
    [RL_TYPE_MXFP4] = REF_ONLY(mxfp4),
    [RL_TYPE_NVFP4] = REF_ONLY(nvfp4),
    [RL_TYPE_Q1_0] = REF_ONLY(q1_0),
    [RL_TYPE_Q2_0] = REF_ONLY(q2_0),
};

#define GEMV_ROW(E, s) [RL_TYPE_##E] = {NULL, rl__gemv_##s##_avx2, rl__gemv_##s##_avx512},
static const rl__gemv_fn g_gemv[RL_TYPE_COUNT][RL_CPU_ISA_COUNT] = {RL__GEMV_TYPES(GEMV_ROW)};
#undef GEMV_ROW

static const rl__gemv_prep_fn g_gemv_prep[RL_TYPE_COUNT][RL_CPU_ISA_COUNT] = {
    [RL_TYPE_Q4_0] = {NULL, NULL, rl__gemv_prep_q4_0_avx512},
    [RL_TYPE_Q5_0] = {NULL, NULL, rl__gemv_prep_q5_0_avx512},
};

/* The path whose dot kernel vec_dot uses for t on isa, or -1. */
static int dot_level(rl_type t, rl_cpu_isa isa) {
    if ((int)t < 0 || t >= RL_TYPE_COUNT || (int)isa < 0 || isa >= RL_CPU_ISA_COUNT) return -1;
    for (int i = (int)isa; i >= 0; i--)
        if (g_dots[t][i]) return i;
    return -1;
}

bool rl__vec_dot_prefetches(rl_type t, rl_cpu_isa isa) {
    if (dot_level(t, isa) < RL_CPU_ISA_AVX2) return false;
    switch (t) {
    case RL_TYPE_F32:
    case RL_TYPE_F16:
    case RL_TYPE_BF16:
    case RL_TYPE_Q4_0:
    case RL_TYPE_Q4_1:
    case RL_TYPE_Q5_0:
    case RL_TYPE_Q5_1:
    case RL_TYPE_Q8_0: return true;
    case RL_TYPE_Q2_K: /* the k-quant kernels of dot_k_avx2.c and dot_k_avx512.c */
    case RL_TYPE_Q3_K:
    case RL_TYPE_Q4_K:
    case RL_TYPE_Q5_K:
    case RL_TYPE_Q6_K:
    case RL_TYPE_IQ4_XS: return true;
    default: return false;
    }
}

rl__gemv_fn rl__gemv_get(rl_type t, rl_cpu_isa isa) {
    int l = dot_level(t, isa);
    return l >= 0 ? g_gemv[t][l] : NULL;
}

rl__gemv_prep_fn rl__gemv_prep_get(rl_type t, rl_cpu_isa isa) {
    int l = dot_level(t, isa);
    return l >= 0 ? g_gemv_prep[t][l] : NULL;
}

rl__vec_dot_fn rl__vec_dot_get(rl_type t, rl_cpu_isa isa) {
    if ((int)t < 0 || t >= RL_TYPE_COUNT || (int)isa < 0 || isa >= RL_CPU_ISA_COUNT)
        return NULL;
    for (int i = (int)isa; i >= 0; i--)
        if (g_dots[t][i]) return g_dots[t][i];
    return NULL;
}

/* The reference quantizers take an imatrix; activations never have one. */
#define REF_ACT(E, s)                                                                      \
    static void act_ref_##s(const float *x, void *y, int64_t n) { rl__quant_##s(x, y, n, NULL); }
RL__ACT_TYPES(REF_ACT)

typedef struct act_row {
    rl__act_quant_fn fn[RL_CPU_ISA_COUNT];
    bool have_ref; /* the reference rl__quant_<t> is linked in */
} act_row;

static act_row act_table(rl_type vdt) {
    act_row r = {{NULL, NULL, NULL}, false};
    switch (vdt) {
#define ACT_CASE(E, s)                                                                     \
    case RL_TYPE_##E:                                                                      \
        r.fn[0] = act_ref_##s;                                                             \
        r.fn[1] = rl__act_quant_##s##_avx2;                                                \
        r.fn[2] = rl__act_quant_##s##_avx512;                                              \
        r.have_ref = rl__quant_##s != NULL;                                                \
        break;
        RL__ACT_TYPES(ACT_CASE)
#undef ACT_CASE
    default: break;
    }
    return r;
}

rl__act_quant_fn rl__act_quant_get(rl_type vdt, rl_cpu_isa isa) {
    if ((int)isa < 0 || isa >= RL_CPU_ISA_COUNT) return NULL;
    act_row r = act_table(vdt);
    if (isa == RL_CPU_ISA_REF && !r.have_ref) return NULL;
    for (int i = (int)isa; i >= 0; i--)
        if (r.fn[i]) return r.fn[i];
    return NULL;
}

bool rl__cpu_can_multiply(rl_type t) { return rl__vec_dot_get(t, RL_CPU_ISA_REF) != NULL; }

RL_API rl_type rl_type_vec_dot_type(rl_type t) {
    const rl__type_traits *tr = rl__type_traits_get(t);
    return tr ? tr->vec_dot_type : RL_TYPE_F32;
}

RL_API rl_status rl_vec_dot(rl_type t, int64_t n, const void *x, const void *y, float *out) {
    const rl__type_traits *tr = rl__type_traits_get(t);
    if (!tr || !out || n < 0) return RL_ERR_INVALID_ARG;
    rl__vec_dot_fn fn = rl__vec_dot_get(t, rl_cpu_isa_active());
    if (!fn) return RL_ERR_UNSUPPORTED;
    int64_t bs_vd = rl_type_block_size(tr->vec_dot_type);
    if (n % tr->block_size != 0 || n % bs_vd != 0) return RL_ERR_INVALID_ARG;
    if (n > 0 && (!x || !y)) return RL_ERR_INVALID_ARG;
    *out = n > 0 ? fn(n, x, y) : 0.0f;
    return RL_OK;
}
