/*
 * cuda_impl.h - what backend_cuda.c (C: the ops table, memory, host arrays) and the
 * kernel files (*.cu, C++) share: the launchers, each a plain function enqueuing its
 * kernels on a stream and returning the launch error, and the byte offsets of the block
 * formats the kernels decode (the .cu files do not include blocks.h; backend_cuda.c checks
 * these offsets against it at compile time).
 *
 * All pointers are device memory unless a comment says otherwise. Shapes follow
 * backend.h.
 */
#ifndef RL_BACKEND_CUDA_IMPL_H
#define RL_BACKEND_CUDA_IMPL_H

#include "ruvllm.h"

#include <cuda_runtime.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- block layouts (bytes per block, offsets of the fields) ---- */
#define RL_CU_Q4_0_BYTES 18 /* d, qs[16] */
#define RL_CU_Q4_0_QS 2
#define RL_CU_Q4_1_BYTES 20 /* d, m, qs[16] */
#define RL_CU_Q4_1_QS 4
#define RL_CU_Q5_0_BYTES 22 /* d, qh[4], qs[16] */
#define RL_CU_Q5_0_QH 2
#define RL_CU_Q5_0_QS 6
#define RL_CU_Q5_1_BYTES 24 /* d, m, qh[4], qs[16] */
#define RL_CU_Q5_1_QH 4
#define RL_CU_Q5_1_QS 8
#define RL_CU_Q8_0_BYTES 34 /* d, qs[32] */
#define RL_CU_Q8_0_QS 2
#define RL_CU_Q2_K_BYTES 84 /* scales[16], qs[64], d, dmin */
#define RL_CU_Q2_K_QS 16
#define RL_CU_Q2_K_D 80
#define RL_CU_Q3_K_BYTES 110 /* hmask[32], qs[64], scales[12], d */
#define RL_CU_Q3_K_QS 32
#define RL_CU_Q3_K_SCALES 96
#define RL_CU_Q3_K_D 108
#define RL_CU_Q4_K_BYTES 144 /* d, dmin, scales[12], qs[128] */
#define RL_CU_Q4_K_SCALES 4
#define RL_CU_Q4_K_QS 16
#define RL_CU_Q5_K_BYTES 176 /* d, dmin, scales[12], qh[32], qs[128] */
#define RL_CU_Q5_K_QH 16
#define RL_CU_Q5_K_QS 48
#define RL_CU_Q6_K_BYTES 210 /* ql[128], qh[64], scales[16], d */
#define RL_CU_Q6_K_QH 128
#define RL_CU_Q6_K_SCALES 192
#define RL_CU_Q6_K_D 208
#define RL_CU_IQ4_NL_BYTES 18  /* d, qs[16] */
#define RL_CU_IQ4_XS_BYTES 136 /* d, scales_h, scales_l[4], qs[128] */
#define RL_CU_IQ4_XS_SCALES_H 2
#define RL_CU_IQ4_XS_SCALES_L 4
#define RL_CU_IQ4_XS_QS 8

/* ---- set-up (once per device) ---- */
/* The IQ4 non-linear grid (16 values) into the device's constant memory, and the
 * attention kernel's shared-memory limit raised to smem_max bytes. */
cudaError_t rl__cu_init(const int8_t iq4_values[16], size_t smem_max);
cudaError_t rl__cu_init_matmul(const int8_t iq4_values[16]); /* matmul.cu's part */
cudaError_t rl__cu_init_attention(size_t smem_max);          /* attention.cu's part */
cudaError_t rl__cu_init_matvec(void);                        /* matvec.cu's part */

/* ---- weights (matmul.cu, ops_nofma.cu) ---- */
/* A type the kernels decode. */
bool rl__cu_type_ok(int type);
/* y[n][rows] = x[n][K] W^T for weights of `type`, rows of row_bytes bytes. vec: rows and
 * x are 16-byte aligned and K % 8 == 0 (always so for block types, whose x must then be
 * 16-byte aligned); float types without it take the scalar path. */
cudaError_t rl__cu_matmul(cudaStream_t s, int type, bool vec, const void *w, size_t row_bytes,
                          int64_t rows, int64_t K, const float *x, int64_t n, float *y);
/* The q8 path (int8 activations, dp4a) of a decode product: the workspace bytes it needs
 * for n tokens (quantized x and block scales), or 0 when it does not take this product. */
size_t rl__cu_q8_bytes(int type, bool vec, const void *w, size_t row_bytes, int64_t K, int64_t n);
/* y = x W^T through the q8 path: x quantized into xq first (in the layout of `type`,
 * rl__cu_q8_layout) unless xq_ready (xq already holds this x, quantized by the op before on
 * the stream). */
cudaError_t rl__cu_matmul_q8(cudaStream_t s, int type, const void *w, size_t row_bytes,
                             int64_t rows, int64_t K, const float *x, int64_t n, float *y, void *xq,
                             bool xq_ready);
/* The q8 workspace (layout xq_mode: RL_CU_XQ_Q8 or RL_CU_XQ_Q8_32, below) of x [n][K],
 * K % 256 == 0. */
cudaError_t rl__cu_quant_q8(cudaStream_t s, const float *x, int64_t n, int64_t K, void *xq,
                            int xq_mode);
/* Products of many tokens on the int8 tensor cores (mmq.cu): whether it takes W (Q4_0,
 * Q8_0, Q4_K, Q6_K; K % 256 == 0; RUVLLM_CUDA_MMQ=0 turns it off), the workspace bytes of
 * a product of n tokens (quantized x, scales, partial sums), and y = x W^T (x quantized
 * into ws first unless xq_ready: ws holds this x from the product before). */
#define RL_CU_MMQ_MIN_N 5 /* fewest tokens it takes (1 to 4: the q8 decode kernels) */
bool rl__cu_mmq_ok(int type, const void *w, size_t row_bytes, int64_t K);
size_t rl__cu_mmq_bytes(int64_t rows, int64_t K, int64_t n);
/* keep_part: where the plan splits K over S > 1 blocks, the partial sums stay in ws
 * (rl__cu_mmq_split) and y is not written: the kernel after the product adds them (in the
 * order of mmq.cu's own pass, z = 0 .. S - 1, so to the same bits). */
cudaError_t rl__cu_mmq(cudaStream_t s, int type, const void *w, size_t row_bytes, int64_t rows,
                       int64_t K, const float *x, int64_t n, float *y, void *ws, bool xq_ready,
                       bool keep_part);
/* The number of partial sums S of rl__cu_mmq's product of n tokens (1: K not split) and,
 * for S > 1, where they lie in its workspace ws: part[z][n][rows], z < S (else NULL). */
int rl__cu_mmq_split(int type, int64_t rows, int64_t K, int64_t n, void *ws, float **part);
/* Bytes at the start of mmq.cu's workspace that the quantized activations of n tokens of K
 * values take (the partial sums of a product of that K follow them). */
size_t rl__cu_mmq_xq_bytes(int64_t K, int64_t n);
/* mmq.cu's variants, for the kernel benchmark (each < 0: as the environment says): the
 * fewest tokens of the tiled kernel (RUVLLM_CUDA_MMQ_TILE, default 5; 0: never, the
 * per-warp kernel instead), that kernel staged (RUVLLM_CUDA_MMQ_STAGED=1), k-quant
 * activations as Q8_K (..._MMQ_Q8K, default 1), the tiled kernel's Q8_K step for those
 * activations (..._MMQ_KSTEP, default 1), the most tokens of the streaming kernel
 * (..._MMQ_STREAM, default 32; 0: never). */
void rl__cu_mmq_config(int tile_min, int staged, int q8k, int kstep, int stream);
/* How mmq.cu quantizes the activations of a product with `type` weights: 0 per 32 values
 * (Q8_0's rounding), 1 per 256 (Q8_K's: Q4_K and Q6_K with RUVLLM_CUDA_MMQ_Q8K=1); the
 * quantization of one product serves the next only when the two agree. */
int rl__cu_mmq_xmode(int type);
/* The streaming decode product of one token (matvec.cu): whether it takes W (type, aligned
 * rows, K a multiple of its chunk; RUVLLM_CUDA_MV=0 turns it off), whether it reads the q8
 * workspace for that type (else float x), and y[rows] = W x (x or xq, as the type reads). */
bool rl__cu_matvec_ok(int type, const void *w, size_t row_bytes, int64_t rows, int64_t K);
bool rl__cu_matvec_q8_type(int type);
cudaError_t rl__cu_matvec(cudaStream_t s, int type, const void *w, size_t row_bytes, int64_t rows,
                          int64_t K, const float *x, const void *xq, float *y);
/* rl__cu_matvec that also stores y into yh (NULL: not), the device address of mapped
 * page-locked host memory: each warp stores whole lines of rows, so the results go over
 * the bus as the product streams and no copy follows it. */
cudaError_t rl__cu_matvec_host(cudaStream_t s, int type, const void *w, size_t row_bytes,
                               int64_t rows, int64_t K, const float *x, const void *xq, float *y,
                               float *yh);
/* The kernel benchmark's variants: the streaming product on or off, and the rows per
 * item it takes for `type` (1, 2, 4; 0: that type to matmul.cu; < 0: the default). */
void rl__cu_matvec_config(bool on, int type, int rows_per_item);
/* y[t] = row ids[t] of w as float, K values per row. */
cudaError_t rl__cu_get_rows(cudaStream_t s, int type, bool vec, const void *w, size_t row_bytes,
                            int64_t K, const int32_t *ids, int64_t n, float *y);

/* ---- tensor-core products (matmul.cu's operands, gemm.c's cuBLAS calls) ---- */
/* The 16-bit operand type of a weight type: F16 for F16 weights, else BF16 (the range of
 * float, for activations and decoded blocks alike). */
bool rl__cu_tc_half(int type);
/* out[rows][K] = the rows of w as 16-bit floats of the type's operand type. */
cudaError_t rl__cu_dequant16(cudaStream_t s, int type, bool vec, const void *w, size_t row_bytes,
                             int64_t rows, int64_t K, void *out);
/* out[i] = x[i] rounded to F16 (half) or BF16, i < n. */
cudaError_t rl__cu_to16(cudaStream_t s, bool half, const float *x, int64_t n, void *out);
/* A cuBLAS handle on stream s with its own workspace, or NULL when cuBLAS does not start. */
void *rl__cu_blas_create(cudaStream_t s);
void rl__cu_blas_free(void *blas);
/* Rows of W (16-bit) a weight workspace of ws_bytes holds at once for K values (0: W is
 * used in place: F16/BF16 rows in their own type, 16-byte aligned). */
int64_t rl__cu_tc_chunk_rows(int type, bool vec, int64_t rows, int64_t K, size_t ws_bytes);
/* y[n][rows] = x[n][K] W^T on tensor cores: x rounded to 16 bits into wsx [n][K], W
 * decoded into wsw chunk by chunk (or read in place), cuBLAS with float accumulation. */
cudaError_t rl__cu_matmul_tc(cudaStream_t s, void *blas, int type, bool vec, const void *w,
                             size_t row_bytes, int64_t rows, int64_t K, const float *x, int64_t n,
                             float *y, void *wsw, size_t wsw_bytes, void *wsx);

/* ---- element-wise (ops_nofma.cu) ---- */
/* Where rl__cu_rmsnorm and rl__cu_glu write their quantized output (xq, xq_mode): the q8
 * decode path's workspace (rl__cu_matmul_q8) in the layout its product's type reads
 * (rl__cu_q8_layout), or mmq.cu's workspace (mmq_layout.cuh) for a product of n >=
 * RL_CU_MMQ_MIN_N tokens, rounded per 32 values (RL_CU_XQ_MMQ32) or per 256
 * (RL_CU_XQ_MMQ256) as that product's rl__cu_mmq_xmode says (rl__cu_xq_mmq_mode); the
 * product then runs with xq_ready (its quantization launch saved). The q8 workspace of n
 * rows of K values (K % 256 == 0), at xq:
 * - RL_CU_XQ_Q8 (Q4_K, Q6_K): codes [n][K], residual codes [n][K], a float scale per 256
 *   [n][K / 256] (qtypes.cuh's q8k_warp);
 * - RL_CU_XQ_Q8_32 (Q8_0, Q4_0): codes [n][K], a float scale per 32 [n][K / 32]: the CPU's
 *   Q8_0 activations (qtypes.cuh's q8_0_codes). */
enum { RL_CU_XQ_Q8 = 0, RL_CU_XQ_MMQ32 = 1, RL_CU_XQ_MMQ256 = 2, RL_CU_XQ_Q8_32 = 3 };
static inline int rl__cu_xq_mmq_mode(int xmode) {
    return xmode == 1 ? RL_CU_XQ_MMQ256 : RL_CU_XQ_MMQ32;
}
/* Inline helpers of this header that kernels call too. */
#ifdef __CUDACC__
#define RL_CU_HOST_DEVICE __host__ __device__
#else
#define RL_CU_HOST_DEVICE
#endif
/* Whether xq_mode names one of mmq.cu's layouts (else the q8 workspace's). */
static inline RL_CU_HOST_DEVICE bool rl__cu_xq_mmq(int xq_mode) {
    return xq_mode == RL_CU_XQ_MMQ32 || xq_mode == RL_CU_XQ_MMQ256;
}
/* Whether xq_mode names a layout (above). */
static inline RL_CU_HOST_DEVICE bool rl__cu_xq_mode_ok(int xq_mode) {
    return xq_mode == RL_CU_XQ_Q8 || xq_mode == RL_CU_XQ_Q8_32 || rl__cu_xq_mmq(xq_mode);
}
/* The q8 workspace layout a decode product of `type` reads (above). */
static inline RL_CU_HOST_DEVICE int rl__cu_q8_layout(int type) {
    return type == RL_TYPE_Q8_0 || type == RL_TYPE_Q4_0 ? RL_CU_XQ_Q8_32 : RL_CU_XQ_Q8;
}
/* Stores a caller may leave out (skip) where nothing reads them, only beside mmq.cu's layout
 * (the products after read that): the RMSNorm's (and the gated activation's) float output,
 * and the sum rl__cu_rmsnorm_part writes into add. */
enum { RL_CU_SKIP_Y = 1, RL_CU_SKIP_SUM = 2 };
/* Whether rl__cu_rmsnorm / rl__cu_glu with these arguments can write mmq.cu's layout. */
bool rl__cu_rmsnorm_mmq_ok(int64_t n, int64_t dim, const float *x, const float *y,
                           const float *add, const float *w);
bool rl__cu_glu_mmq_ok(const float *g, int64_t ld_g, const float *u, int64_t ld_u, int64_t n,
                       int64_t dim, const float *out);
/* xq non-NULL (dim % 256 == 0): the output also quantized for the product that reads it
 * next (in the layout xq_mode names, above). add non-NULL: x += add first ([n][dim], x
 * then written). early: the kernel launched after this one may start before this one's
 * wait (the q8 / rows-of-256 kernel; launch.cuh's second allowance), so that a product
 * after it starts copying its weights sooner. */
cudaError_t rl__cu_rmsnorm(cudaStream_t s, const float *x, int64_t n, int64_t dim, float eps,
                           const float *w, float *y, void *xq, int xq_mode, const float *add,
                           bool early, unsigned skip);
/* rl__cu_rmsnorm with add the output of an mmq.cu product run with keep_part: its nz
 * partial sums part[z][n][dim] are added in order z = 0 .. nz - 1 (mmq.cu's pass), written to
 * add (the product's output, as that pass would have) and added to x. Only where
 * rl__cu_rmsnorm_part_ok. */
bool rl__cu_rmsnorm_part_ok(int64_t n, int64_t dim, const float *x, const float *y,
                            const float *add, const float *w, const float *part);
cudaError_t rl__cu_rmsnorm_part(cudaStream_t s, const float *x, int64_t n, int64_t dim, float eps,
                                const float *w, float *y, void *xq, int xq_mode, float *add,
                                const float *part, int nz, bool early, unsigned skip);
/* tab[n][n_rot]: cos, sin pairs of each row's position (the CPU's rl__rope_cache); n rows
 * of n_head heads of x, and (x2 non-NULL) of n_head2 heads of x2 at the same positions. */
cudaError_t rl__cu_rope(cudaStream_t s, float *x, int64_t ld, int n_head, float *x2, int64_t ld2,
                        int n_head2, int64_t n, int head_dim, int n_rot, bool neox,
                        const float *tab);
cudaError_t rl__cu_add_row(cudaStream_t s, float *x, int64_t n, int64_t dim, int64_t ld,
                           const float *b);
cudaError_t rl__cu_add(cudaStream_t s, float *x, const float *y, int64_t n);
cudaError_t rl__cu_scale(cudaStream_t s, float *x, int64_t n, float v);
cudaError_t rl__cu_softcap(cudaStream_t s, float *x, int64_t n, float c);
cudaError_t rl__cu_fill(cudaStream_t s, float *x, int64_t n, float v);
/* dst = src (device memory, bytes), as a kernel in the launch chain (ops_nofma.cu). */
cudaError_t rl__cu_copy(cudaStream_t s, void *dst, const void *src, size_t bytes);
/* act: 0 SiLU, 1 GELU (tanh); xq, xq_mode, skip (RL_CU_SKIP_Y) as rl__cu_rmsnorm's */
cudaError_t rl__cu_glu(cudaStream_t s, int act, const float *g, int64_t ld_g, const float *u,
                       int64_t ld_u, int64_t n, int64_t dim, float *out, void *xq, int xq_mode,
                       unsigned skip);
cudaError_t rl__cu_get_rows_f32(cudaStream_t s, const float *src, const int32_t *ids, int64_t n,
                                int64_t dim, float *dst);
cudaError_t rl__cu_add_rows_scaled(cudaStream_t s, float *x, int64_t dim, const int32_t *ids,
                                   const float *w, int64_t n, const float *y);
/* Rows src[t] of side a (and b, when non-NULL: the K and V of a pass in one launch) into
 * table rows cells[t] of type F32, F16 or Q8_0. */
typedef struct rl__cu_kv_side {
    void *tab; /* table rows of row_bytes */
    size_t row_bytes;
    const float *src; /* rows of ne values, ld floats apart */
    int64_t ld, ne;
} rl__cu_kv_side;
cudaError_t rl__cu_kv_write(cudaStream_t s, int type, const rl__cu_kv_side *a,
                            const rl__cu_kv_side *b, int64_t n, const int32_t *cells);
/* Table rows src[i] to rows dst[i]. */
cudaError_t rl__cu_kv_copy(cudaStream_t s, void *tab, size_t row_bytes, const int32_t *src,
                           const int32_t *dst, int64_t n);

/* ---- greedy picking (argmax.cu) ---- */
/* The calling thread's next kernel launch goes without the PDL attribute (launch.cuh). */
void rl__cu_pdl_plain_next(void);
/* ids[t] (device) = the lowest index of the maximum of row t of x [n][dim] (NaN never
 * wins; 0 when no value is above -inf). ws: NULL, or rl__cu_argmax_ws_bytes(n) bytes of
 * device memory, zeroed before the first use and left zeroed by every launch: long rows
 * longer than 4096 values are then split over many blocks. */
size_t rl__cu_argmax_ws_bytes(int64_t n);
cudaError_t rl__cu_argmax(cudaStream_t s, const float *x, int64_t n, int64_t dim, int32_t *ids,
                          void *ws);

/* ---- sampling (sample.cu) ---- */
/* The op sample_to_host (backend.h) on stream s, after what is queued there: rows and pen
 * are host memory, copied up through the workspace's pinned buffer; x (device) gets the
 * penalties in place; ids and n_kept (host; n_kept may be NULL) are filled when it returns
 * (it waits for the stream). *ws is made at the first call and grows with the largest n,
 * dim and penalty list seen; free it with rl__cu_sample_free. */
typedef struct rl_sample_row rl_sample_row;
typedef struct rl__cu_sample_ws rl__cu_sample_ws;
cudaError_t rl__cu_sample(cudaStream_t s, rl__cu_sample_ws **ws, float *x, int64_t n, int64_t dim,
                          const rl_sample_row *rows, const int32_t *pen, int32_t *ids,
                          int32_t *n_kept);
void rl__cu_sample_free(rl__cu_sample_ws *ws);

/* ---- attention (attention.cu) ---- */
typedef struct rl__cu_attn {
    int type;          /* KV type: F32, F16, Q8_0 */
    const void *k, *v; /* tables */
    size_t k_row_bytes, v_row_bytes;
    int32_t n_tok, n_head, n_head_kv, head_dim_k, head_dim_v;
    const float *q;
    int64_t q_ld;
    float *out;
    int64_t out_ld;
    const int32_t *cells; /* device */
    const int32_t *span;  /* device, [n_tok][2] indexes of cells */
    float scale, softcap;
    int32_t n_split, split_len; /* each token's span cut into n_split pieces of split_len
                                   cells (a multiple of 32) */
    float *ws;                  /* n_split > 1: [n_tok][n_head][n_split][head_dim_v + 2] */
    int32_t dense; /* the host's estimate: blocks of RL_CU_FATTN_ROWS (token, head) rows
                      share their cells (prefill), so the tensor-core kernel pays */
    int32_t fa_split; /* the tensor-core kernel: pieces each block's union of spans is cut
                         into (> 1: partials in ws as above, then the combine) */
    int32_t vec;      /* the plan's choice: attention.cu's decode (vec) kernel takes it, with
                         this many query heads a block (0: another kernel) */
    unsigned int *cnt; /* RL_CU_ATTN_CNT counters, zero (and left zero): the vec kernel's
                          merge of its pieces in one launch; NULL: the combine kernel's */
    int32_t shortk;    /* the plan's choice: attention.cu's short-span kernel takes it (one
                          token, spans of at most split_len cells) */
    /* The short kernel's own RoPE of q and k and cache write of the token's k and v, in place
     * of a rope_kv launch before it (step.c's fuse pass; rope_k NULL: none): k and v of the
     * token at rope_k, rope_v (strides rope_ld_k, rope_ld_v; n_head_kv heads of head_dim_k),
     * q at q, rotated by the rope_n_rot (cos, sin) values at rope_tab (rope_neox: the NeoX
     * pairing) and written to cache row rope_cell[0]. */
    const float *rope_k, *rope_v;
    int64_t rope_ld_k, rope_ld_v;
    const float *rope_tab;     /* device, [n_tok][rope_n_rot] */
    const int32_t *rope_cell;  /* device, [n_tok] */
    int32_t rope_n_rot, rope_neox;
    /* The layout of the q8 output rl__cu_attention_q8 writes (RL_CU_XQ_*): the decode
     * products' (1 to 4 tokens), or mmq.cu's for the product of n_tok >= RL_CU_MMQ_MIN_N
     * tokens that reads it (with the padding tokens of its last tile zero). */
    int32_t xq_mode;
} rl__cu_attn;
/* Counters of the vec kernel's one-launch merge, one per (token, KV head, head group). */
#define RL_CU_ATTN_CNT 1024

/* Query heads one attention block handles (the GQA group is cut into pieces of this). */
#define RL_CU_ATTN_HC 8
/* Pieces a span may be cut into (n_split). */
#define RL_CU_ATTN_MAX_SPLIT 1024
/* Dynamic shared memory of the attention kernel for these head sizes. */
size_t rl__cu_attn_smem(int head_dim_k, int head_dim_v);
/* n_split, split_len and fa_split of a (every other field set) for spans of at most maxlen
 * cells whose longest tensor-core block union is umax cells, n_sm SMs, ws of ws_bytes. */
void rl__cu_attn_plan(rl__cu_attn *a, int32_t maxlen, int64_t umax, int n_sm, size_t ws_bytes);
cudaError_t rl__cu_attention(cudaStream_t s, const rl__cu_attn *a);

/* ---- attention on the f16 tensor cores (fattn.cu) ---- */
/* Query rows ((token, head of a GQA group) pairs) one block of the kernel takes. */
#define RL_CU_FATTN_ROWS 64
/* Whether the kernel takes a: F16 cache, head_dim_k == head_dim_v in 64, 80, 96, 112,
 * 128, 256, 16-byte aligned rows. */
bool rl__cu_fattn_ok(const rl__cu_attn *a);
/* The union of each block's spans in a->fa_split pieces (a->n_split unused): the output,
 * or with fa_split > 1 the pieces' partials in a->ws (attention.cu's combine reads them). */
cudaError_t rl__cu_fattn(cudaStream_t s, const rl__cu_attn *a);
cudaError_t rl__cu_fattn_init(void);

#ifdef __cplusplus
}
#endif

#endif /* RL_BACKEND_CUDA_IMPL_H */
