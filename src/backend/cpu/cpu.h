/*
 * cpu.h - internal interface of the CPU backend: dot-product kernels per type and ISA,
 * ISA selection (the thread pool is in util/threadpool.h).
 *
 * Dot kernels are named rl__vec_dot_<suffix>_<isa> (suffix as in RL_QUANT_TYPES, isa in
 * ref|avx2|avx512): x is one row of the weight type, y the same length in the weight's
 * vec_dot type (rl_type_vec_dot_type), n a multiple of the block size. The _ref kernels
 * are plain C and define the results every other path is tested against.
 */
#ifndef RL_BACKEND_CPU_H
#define RL_BACKEND_CPU_H

#include "../../quant/quant.h"

typedef float (*rl__vec_dot_fn)(int64_t n, const void *x, const void *y);

#define RL__DECL_DOTS(E, s)                                                                \
    float rl__vec_dot_##s##_ref(int64_t n, const void *x, const void *y);                  \
    float rl__vec_dot_##s##_avx2(int64_t n, const void *x, const void *y);                 \
    float rl__vec_dot_##s##_avx512(int64_t n, const void *x, const void *y);
RL_QUANT_TYPES(RL__DECL_DOTS)
#undef RL__DECL_DOTS

/* ---- matrix-vector fast path ------------------------------------------------------
 * rl__gemv_<t>_<isa> is the vec_dot of t with the activation row given "split": its
 * codes contiguous (yqs[n]) and its scales already float (yd[n/32]; for Q8_1 also the
 * block sums ys[n/32]), each the exact value of the block's fp16 field. In a matvec all
 * weight rows meet the same activations, so matmul converts them once and the kernel
 * does no fp16 work for them. A gemv kernel shares its body with the vec_dot kernel of
 * the same type and path: the results are bit-identical. */
typedef float (*rl__gemv_fn)(int64_t n, const void *x, const int8_t *yqs, const float *yd,
                             const float *ys, const int32_t *yoff);
#define RL__GEMV_TYPES(X) X(Q4_0, q4_0) X(Q4_1, q4_1) X(Q5_0, q5_0) X(Q5_1, q5_1) X(Q8_0, q8_0)
#define RL__DECL_GEMV(E, s)                                                                \
    float rl__gemv_##s##_avx2(int64_t n, const void *x, const int8_t *yqs, const float *yd, \
                              const float *ys, const int32_t *yoff);                       \
    float rl__gemv_##s##_avx512(int64_t n, const void *x, const int8_t *yqs, const float *yd, \
                                const float *ys, const int32_t *yoff);
RL__GEMV_TYPES(RL__DECL_GEMV)
#undef RL__DECL_GEMV
/* Some gemv kernels also take yoff[n/4], an activation-only term computed once per row by
 * their prep function (layout private to the kernel); NULL prep: yoff is unused. */
typedef void (*rl__gemv_prep_fn)(const int8_t *yqs, int64_t n, int32_t *yoff);
void rl__gemv_prep_q4_0_avx512(const int8_t *yqs, int64_t n, int32_t *yoff);
void rl__gemv_prep_q5_0_avx512(const int8_t *yqs, int64_t n, int32_t *yoff);

/* ---- multi-token tiles (gemm_avx512.c, gemm_avx2.c) --------------------------------
 * rl__gemm_<t>_<isa> computes a tile of ROWS weight rows (x, rows xst bytes apart) times nt
 * tokens (1 <= nt <= TOKS): out[t * ost + r] for r < ROWS, t < nt. Token t's activations
 * are matmul's split row at ys + t * yst (codes [n] int8, then d [n/32], s [n/32] as float,
 * then the gemv prep's offsets). Each result is bit-identical to rl__gemv_get(t, isa), so a
 * prompt decodes each weight block once per tile instead of once per token. */
typedef void (*rl__gemm_fn)(int64_t n, int nt, const void *x, size_t xst, const uint8_t *ys,
                            size_t yst, float *out, size_t ost);
#define RL__GEMM_AVX512_ROWS 2
#define RL__GEMM_AVX512_TOKS 4
#define RL__GEMM_AVX512_Q4_0_TOKS 8 /* Q4_0: 2 rows x 8 tokens */
#define RL__GEMM_AVX512_Q6_K_TOKS 8 /* Q6_K: 1 row x 8 tokens */
void rl__gemm_q4_0_avx512(int64_t n, int nt, const void *x, size_t xst, const uint8_t *ys,
                          size_t yst, float *out, size_t ost);
void rl__gemm_q8_0_avx512(int64_t n, int nt, const void *x, size_t xst, const uint8_t *ys,
                          size_t yst, float *out, size_t ost);
/* Q4_K and Q6_K on AVX-512: 1 row x RL__GEMM_AVX512_TOKS (Q6_K: RL__GEMM_AVX512_Q6_K_TOKS)
 * tokens; ys, yst: the Q8_K rows. */
void rl__gemm_q4_K_avx512(int64_t n, int nt, const void *x, size_t xst, const uint8_t *ys,
                          size_t yst, float *out, size_t ost);
void rl__gemm_q6_K_avx512(int64_t n, int nt, const void *x, size_t xst, const uint8_t *ys,
                          size_t yst, float *out, size_t ost);
#define RL__GEMM_AVX2_ROWS 1
#define RL__GEMM_AVX2_TOKS 4
void rl__gemm_q4_0_avx2(int64_t n, int nt, const void *x, size_t xst, const uint8_t *ys,
                        size_t yst, float *out, size_t ost);
void rl__gemm_q8_0_avx2(int64_t n, int nt, const void *x, size_t xst, const uint8_t *ys,
                        size_t yst, float *out, size_t ost);
/* Q4_K and Q6_K on AVX2: 1 row x RL__GEMM_AVX2_TOKS tokens; ys, yst: the Q8_K rows. */
void rl__gemm_q4_K_avx2(int64_t n, int nt, const void *x, size_t xst, const uint8_t *ys,
                        size_t yst, float *out, size_t ost);
void rl__gemm_q6_K_avx2(int64_t n, int nt, const void *x, size_t xst, const uint8_t *ys,
                        size_t yst, float *out, size_t ost);
/* rl_matmul of a weight that may also have a copy in a CPU layout (packed: NULL or the
 * rows of w in that layout, backend.h rl__cpu_pack_weights): the copy's kernels run where
 * isa has them, else w's. */
rl_status rl__matmul_packed(rl_threadpool *pool, rl_type wt, const void *w, const void *packed,
                            int64_t rows, int64_t cols, const float *x, int64_t n_tok, float *y);
/* One product of rl__matmul_multi: y [n_tok][rows] = x W^T, W rows x cols of type wt. */
typedef struct rl__mm_weight {
    rl_type wt;
    const void *w, *packed;
    int64_t rows;
    float *y;
} rl__mm_weight;
/* rl__matmul_packed of each of ws[0..n_w) with the same x [n_tok][cols], bit for bit: where
 * the products convert x the same way it is converted once, and all run in one pool
 * dispatch (their chunks are those of separate calls, in one list); otherwise one call
 * each. At most RL__MM_MULTI_MAX weights. */
#define RL__MM_MULTI_MAX 8
rl_status rl__matmul_multi(rl_threadpool *pool, const rl__mm_weight *ws, int n_w, int64_t cols,
                           const float *x, int64_t n_tok);
/* The tile kernel for weight type t on path isa and its tile shape, or NULL (matmul.c). */
rl__gemm_fn rl__gemm_get(rl_type t, rl_cpu_isa isa, int *rows, int *toks);

/* ---- float weights times F32 activations (fgemm_ref.c, fgemm_avx2.c, fgemm_avx512.c) --
 * rl_matmul multiplies F16 and BF16 weights with the activations kept in F32 (not rounded
 * to the weight type as the vec_dot route, and llama.cpp, do): every weight is widened
 * exactly to F32 and the products are summed in F32 (the ref path: in double, one
 * rl__fdot_<t>_ref per row and token).
 * rl__fgemm_<isa>: rows [0, rows) of w times n_tok tokens, y[t * ldy + r] = sum_k w[r][k]
 * x[t][k], in register tiles of R rows x T tokens over column blocks of KC. A (row, token)
 * result does not depend on the rows and tokens that share its tile, so a token's result
 * is the same, bit for bit, whatever the batch (a prompt equals token by token). */
typedef struct rl__fgemm_args {
    rl_type wt;         /* F32, F16 or BF16 */
    int64_t n;          /* columns */
    const uint8_t *w;   /* [rows][w_row_bytes] */
    size_t w_row_bytes;
    int64_t rows;
    const float *x;     /* [n_tok][n] */
    int64_t n_tok;
    float *y;           /* y[t * ldy + r] */
    size_t ldy;
} rl__fgemm_args;
typedef void (*rl__fgemm_fn)(const rl__fgemm_args *g);
#define RL__FGEMM_AVX512_R 4
#define RL__FGEMM_AVX512_T 6
#define RL__FGEMM_AVX512_KC 512
#define RL__FGEMM_AVX2_R 2
#define RL__FGEMM_AVX2_T 3
#define RL__FGEMM_AVX2_KC 512
void rl__fgemm_avx512(const rl__fgemm_args *g);
void rl__fgemm_avx2(const rl__fgemm_args *g);
float rl__fdot_f16_ref(int64_t n, const void *w, const void *x);
float rl__fdot_bf16_ref(int64_t n, const void *w, const void *x);
/* The reference kernel of F16/BF16 (F32 activations, for every isa), NULL for other types. */
rl__vec_dot_fn rl__fdot_get(rl_type t);
/* The tile kernel for t (F16, BF16) on isa, or NULL (the ref path). */
rl__fgemm_fn rl__fgemm_get(rl_type t, rl_cpu_isa isa);

/* ---- ISA detection (isa.c) ------------------------------------------------------ */
/* True when the CPU and OS support every instruction the path needs (cpuid + xgetbv). */
bool rl__cpu_isa_supported(rl_cpu_isa isa);
/* AVX512-BF16 (vdpbf16ps) usable: the avx512 BF16 dot uses it when true. */
bool rl__cpu_has_avx512bf16(void);

/* ---- dispatch (dispatch.c) ------------------------------------------------------ */
/* Dot kernel of weight type t on path isa. A path without its own kernel for t falls
 * back to the next lower one (avx512 -> avx2 -> ref). NULL when t has no dot at all
 * (Q8_1, Q8_K, integers) or its kernels are not linked in. */
rl__vec_dot_fn rl__vec_dot_get(rl_type t, rl_cpu_isa isa);
/* True when that kernel prefetches the weights it will read (the AVX2/AVX-512 kernels
 * of dot_avx2.c/dot_avx512.c, the k-quant kernels of dot_k_avx2.c/dot_k_avx512.c);
 * rl_matmul prefetches rows for the others. */
bool rl__vec_dot_prefetches(rl_type t, rl_cpu_isa isa);

/* Activation quantizers: one f32 row of n elements (a multiple of the block size) to
 * the vec_dot type, byte-identical to the reference rl__quant_<t> (tested). */
typedef void (*rl__act_quant_fn)(const float *x, void *y, int64_t n);
#define RL__ACT_TYPES(X) X(Q8_0, q8_0) X(Q8_1, q8_1) X(Q8_K, q8_K) X(F16, f16) X(BF16, bf16)
#define RL__DECL_ACT(E, s)                                                                 \
    void rl__act_quant_##s##_avx2(const float *x, void *y, int64_t n);                     \
    void rl__act_quant_##s##_avx512(const float *x, void *y, int64_t n);
RL__ACT_TYPES(RL__DECL_ACT)
#undef RL__DECL_ACT
/* Quantizer of activation type vdt on path isa (with the same fallback as the dots);
 * NULL for F32 (used as is) and for types that are not an activation type. */
rl__act_quant_fn rl__act_quant_get(rl_type vdt, rl_cpu_isa isa);
/* The gemv kernel matching rl__vec_dot_get(t, isa) bit for bit, or NULL (use vec_dot),
 * and its prep function (or NULL). */
rl__gemv_fn rl__gemv_get(rl_type t, rl_cpu_isa isa);
rl__gemv_prep_fn rl__gemv_prep_get(rl_type t, rl_cpu_isa isa);

/* ---- element-wise kernels (attn_avx512.c, act_avx512.c) --------------------------- */
/* attention.c's work item for F16 caches on AVX-512 (the contract is at its definition);
 * head dims up to this many values, multiples of 16. */
#define RL_ATTN_AVX512_MAX_DIM 256
void rl__attn_f16_avx512(int nh, int32_t dk, int32_t dv, const float *const *qh,
                         const void *k, size_t k_rb, const void *v, size_t v_rb,
                         const int32_t *cells, int32_t n, float scale, float softcap,
                         float *const *out);
/* y[i] = e^x[i] by polynomial (within 2 ulp of expf; x may alias y). */
void rl__exp_ps_avx512(const float *x, float *y, int64_t n);
/* out[i] = g[i] / (1 + e^-g[i]) * u[i] (SwiGLU, ggml_silu's formula) with that exp. */
void rl__silu_mul_avx512(const float *g, const float *u, float *out, int64_t n);
/* y = x / sqrt(mean(x^2) + eps) (* w when w != NULL), as backend_cpu.c's RMSNorm: the
 * sum of squares in double (another order of additions), scale and weight in float. */
void rl__rmsnorm_row_avx512(const float *x, const float *w, float *y, int64_t n, float eps);
/* The lowest index of the maximum of x[0..n), n < 2^31 (NaN never wins; 0 when nothing
 * is above -inf). */
int32_t rl__argmax_avx512(const float *x, int64_t n);
#if defined(__AVX512F__)
#include <immintrin.h>
/* e^x with x clamped to [-104, 88] (0 and e^88 beyond): x = n ln2 + r, |r| <= ln2/2, e^r by
 * its Taylor polynomial to degree 7 (truncation error below 5e-9 relative), then
 * scaled by 2^n (vscalefps, which flushes to 0 below the float range). */
static inline __m512 rl__exp512_ps(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-104.0f)), _mm512_set1_ps(88.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}
#endif

#endif /* RL_BACKEND_CPU_H */
