/*
 * backend.h - the layer ops a compute backend provides to the model code.
 *
 * The model layer (src/model/) builds a forward pass out of these few operations and
 * never touches tensor memory itself: buffers handed to an op come from the backend's
 * own allocator (alloc), so a device backend (CUDA) can keep them in device memory. The
 * CPU backend (src/backend/cpu/backend_cpu.c) is the reference implementation.
 *
 * Shapes: activations are row-major float32 matrices [n][dim] with a row stride ("ld",
 * in floats) where an op can work on a view (q, k and v may be column ranges of a fused
 * qkv buffer). Weights are rl_weight views of the mapped GGUF tensors.
 *
 * KV cache: per layer, K and V are tables of rows indexed by cell (one row per cached
 * token: n_head_kv * head_dim values of the cache type). Attention does not assume the
 * cells of a sequence are contiguous: it reads them through a list of cell indices, and
 * each query token attends to a span of that list. The span encodes the mask (causal,
 * sliding window) as the model layer computed it from the cells' positions, so the same
 * op serves a unified cache, several sequences in one batch, and a paged cache (a block
 * table expands to the cell list: cell = block * block_size + offset).
 *
 * Versioning: ops tables carry RL_BACKEND_OPS_VERSION; a table with another version is
 * refused. New ops are added at the end, bumping the version.
 */
#ifndef RL_BACKEND_H
#define RL_BACKEND_H

#include "../util/util.h"

#include <stdio.h>

#define RL_BACKEND_OPS_VERSION 8

/* A weight matrix: rows of ne[0] elements of type `type`, ne[1] rows per matrix, ne[2]
 * matrices (MoE experts; 1 otherwise). data is NULL for an absent optional tensor. */
typedef struct rl_weight {
    const char *name;      /* tensor name in the file (for messages) */
    rl_type type;
    int64_t ne[4];
    size_t row_bytes;      /* bytes of one row of ne[0] elements */
    const void *data;      /* [ne[2]][ne[1]][row_bytes] */
    const void *packed;    /* NULL, or the same rows in a CPU kernel layout (rl__cpu_pack_weights),
                              which the CPU backend reads instead of data */
} rl_weight;

/* Matrix e (0 <= e < ne[2]) of a 3-D weight as a 2-D weight. */
static inline rl_weight rl__weight_slice(const rl_weight *w, int64_t e) {
    rl_weight s = *w;
    s.ne[2] = 1;
    s.data = (const uint8_t *)w->data + (size_t)e * (size_t)w->ne[1] * w->row_bytes;
    if (w->packed) /* packed layouts keep rows whole, in order */
        s.packed = (const uint8_t *)w->packed + (size_t)e * (size_t)w->ne[1] * w->row_bytes;
    return s;
}

/* RoPE orderings: NORMAL rotates adjacent pairs (x[2i], x[2i+1]) (GPT-J, Llama);
 * NEOX rotates (x[i], x[i + n_rot/2]) (GPT-NeoX, Qwen, Gemma, Phi-3). */
typedef enum rl_rope_mode { RL_ROPE_NORMAL = 0, RL_ROPE_NEOX = 2 } rl_rope_mode;

/* Everything one RoPE application needs, resolved by the model layer from the metadata
 * (src/model/rope.c). The angle of pair i at position p is computed in float as ggml
 * does: theta_i = p * freq_base^(-2i/n_rot) / freq_factors[i], then YaRN's mix of the
 * interpolated (theta * freq_scale) and extrapolated angle over the correction range of
 * beta_fast..beta_slow (ext_factor 0: pure interpolation, i.e. linear scaling), and the
 * result scaled by attn_factor (and YaRN's 1 + 0.1 ln(1/freq_scale)). */
typedef struct rl_rope_params {
    int32_t n_rot;             /* rotated dimensions (even, <= head_dim); the rest pass */
    rl_rope_mode mode;
    int32_t n_ctx_orig;        /* original training context (YaRN correction range) */
    float freq_base, freq_scale, ext_factor, attn_factor, beta_fast, beta_slow;
    const float *freq_factors; /* [n_rot/2] divisors of the base angles, or NULL */
} rl_rope_params;

/* ---- the RoPE angle table (rope_table.c), shared by the backends ---- */
/* YaRN's correction range of p (the pair dims where interpolation starts and ends). */
void rl__rope_corr_dims(const rl_rope_params *p, float corr[2]);
/* cache[2i] = cos(theta_i) * mscale, cache[2i+1] = sin(theta_i) * mscale for i < n_rot/2 at
 * position pos; theta_scale = freq_base^(-2/n_rot), corr from rl__rope_corr_dims. */
void rl__rope_fill(const rl_rope_params *p, int32_t pos, float theta_scale, const float corr[2],
                   float *cache);
/* The same for one position, computing theta_scale and corr itself. */
void rl__rope_cache(const rl_rope_params *p, int32_t pos, float *cache);

/* Activation of a gated FFN: out = act(gate) * up. */
typedef enum rl_glu_act {
    RL_GLU_SILU = 0,      /* SwiGLU: x / (1 + e^-x) */
    RL_GLU_GELU_TANH = 1, /* GeGLU with the tanh approximation of GELU (exact formula) */
} rl_glu_act;

/* One layer's KV storage: K and V tables of n_cells rows each. */
typedef struct rl_kv_layer {
    rl_type type;            /* F32, F16 or Q8_0 */
    void *k, *v;             /* backend memory: [n_cells][k_row_bytes], [n_cells][v_row_bytes] */
    int32_t n_embd_k;        /* n_head_kv * head_dim_k: values per K row */
    int32_t n_embd_v;        /* n_head_kv * head_dim_v */
    size_t k_row_bytes, v_row_bytes;
} rl_kv_layer;

/* One attention call: n_tok query tokens over cached cells.
 * Score of head h with a cell: s = scale * (q_h . k_{h / n_gqa}); with softcap c > 0,
 * s = c tanh(s / c) (gemma2: its q is scaled by 1/sqrt(query_pre_attn_scalar) before the
 * cap, which is this order); softmax over the token's span; out_h = sum p v. An empty
 * span gives zeros. */
typedef struct rl_attn_args {
    int32_t n_tok;
    int32_t n_head, n_head_kv;   /* n_head a multiple of n_head_kv (GQA / MQA) */
    int32_t head_dim_k, head_dim_v;
    const float *q;              /* [n_tok][q_ld], head h at q + h * head_dim_k */
    int64_t q_ld;
    float *out;                  /* [n_tok][out_ld], head h at out + h * head_dim_v */
    int64_t out_ld;
    const int32_t *cells;        /* cell indices into the layer's K/V tables */
    const int32_t *span;         /* [n_tok][2]: token t sees cells[span[2t] .. span[2t+1]) */
    float scale;                 /* usually 1/sqrt(head_dim_k) */
    float softcap;               /* 0: none */
    uint64_t cells_key;          /* 0, or a key that promises: every call with it until the
                                    backend's next sync has these n_tok, cells and span
                                    contents (one forward pass's layers), so a backend may
                                    take them from the first such call */
} rl_attn_args;

/* One row's chain for sample_to_host: the CPU sampler's (src/sampler/chain.c) restricted to
 * what the device runs, with its definitions: repetition / frequency / presence penalties
 * on the tokens of the recent window, then top-k, top-p, min-p (each optional, in this
 * order), then temperature; the final draw is the inverse CDF at u over the survivors in the
 * CPU chain's candidate order, so one u gives the CPU's token up to rounding at the
 * boundary. Ties go to the lower id. The caller (src/engine) fills it from the sampler
 * (rl__sampler_device_plan) and decides when the chain can run here. */
typedef struct rl_sample_row {
    float temperature;       /* <= 0: greedy (the argmax after the penalties); 1: none */
    int32_t top_k;           /* <= 0: off */
    float top_p;             /* >= 1: off */
    float min_p;             /* <= 0: off */
    float min_p_ln;          /* rl__det_logf(min_p): the sampler's own log */
    int32_t min_keep;        /* top-p and min-p keep at least this many */
    float repeat_penalty, frequency_penalty, presence_penalty;
    int32_t pen_off, pen_n;  /* the row's pairs: pen[2 * (pen_off + j) + {0: id, 1: count}],
                                j < pen_n; ids distinct, counts > 0 */
    double u;                /* uniform in [0, 1), from the sequence's RNG (unused when greedy) */
} rl_sample_row;

typedef struct rl_backend rl_backend;

typedef struct rl_backend_ops {
    uint32_t version; /* RL_BACKEND_OPS_VERSION */
    const char *name; /* "cpu" */
    void (*destroy)(rl_backend *be); /* frees be itself */

    /* ---- memory: buffers the other ops read and write ---- */
    void *(*alloc)(rl_backend *be, size_t bytes); /* 64-byte aligned, NULL when out of memory */
    void (*free)(rl_backend *be, void *p);
    void (*to_host)(rl_backend *be, void *dst, const void *src, size_t bytes);
    void (*from_host)(rl_backend *be, void *dst, const void *src, size_t bytes);

    /* The next matmuls of w with up to n rows must not allocate: called during the dry
     * run that sizes a context, with each weight at the largest n it will see. */
    rl_status (*reserve_matmul)(rl_backend *be, const rl_weight *w, int64_t n);

    /* ---- the layer ops ---- */
    /* y[n][w.ne[1]] = x[n][w.ne[0]] W^T for a 2-D weight (ne[2] == 1). y and x are dense. */
    rl_status (*matmul)(rl_backend *be, const rl_weight *w, const float *x, int64_t n, float *y);
    /* y[t] = row ids[t] of w as float (embedding lookup); ids are host memory, in range. */
    void (*get_rows)(rl_backend *be, const rl_weight *w, const int32_t *ids, int64_t n, float *y);
    /* y[t] = x[t] / sqrt(mean(x[t]^2) + eps) (* w when w != NULL); y may be x. */
    void (*rmsnorm)(rl_backend *be, const float *x, int64_t n, int64_t dim, float eps,
                    const float *w, float *y);
    /* Rotate n_head heads of head_dim values in each of n rows of x (row stride ld) in
     * place; pos (host memory) gives each row's position. */
    void (*rope)(rl_backend *be, float *x, int64_t n, int64_t ld, int32_t n_head,
                 int32_t head_dim, const int32_t *pos, const rl_rope_params *p);
    /* x[t][i] += b[i] (bias) over n rows of dim (row stride ld). */
    void (*add_row)(rl_backend *be, float *x, int64_t n, int64_t dim, int64_t ld, const float *b);
    /* x[i] += y[i] for i < n (residual). */
    void (*add)(rl_backend *be, float *x, const float *y, int64_t n);
    /* x[i] *= s. */
    void (*scale)(rl_backend *be, float *x, int64_t n, float s);
    /* x[i] = c * tanh(x[i] / c). */
    void (*softcap)(rl_backend *be, float *x, int64_t n, float c);
    /* out[t][i] = act(gate[t][i]) * up[t][i] over n rows of dim (strides ld_g, ld_u; out
     * dense; out may be gate when ld_g == dim). */
    void (*glu)(rl_backend *be, rl_glu_act act, const float *gate, int64_t ld_g, const float *up,
                int64_t ld_u, int64_t n, int64_t dim, float *out);
    /* dst[t] = src[ids[t]] for n rows of dim floats (ids host memory); dst may not overlap
     * src except dst == src with ids[t] >= t for all t (in-place compaction). */
    void (*get_rows_f32)(rl_backend *be, const float *src, const int32_t *ids, int64_t n,
                         int64_t dim, float *dst);
    /* Store n tokens' K and V rows (row strides ld_k, ld_v) into cells[t] (host memory) of
     * one layer, converting to the cache type. */
    void (*kv_write)(rl_backend *be, const rl_kv_layer *kv, const float *k, int64_t ld_k,
                     const float *v, int64_t ld_v, int64_t n, const int32_t *cells);
    /* Attention of a->n_tok tokens over one layer's cache (rl_attn_args; cells and span
     * are host memory). Tiled with an online softmax: memory O(head_dim) per head. */
    void (*attention)(rl_backend *be, const rl_kv_layer *kv, const rl_attn_args *a);
    /* Copy the K and V rows of cells src[i] to cells dst[i] (host arrays) of one layer,
     * i < n (a paged cache's copy-on-write). */
    void (*kv_copy)(rl_backend *be, const rl_kv_layer *kv, const int32_t *src,
                    const int32_t *dst, int64_t n);

    /* ---- version 2: mixture of experts ---- */
    /* x[i] = v for i < n. */
    void (*fill)(rl_backend *be, float *x, int64_t n, float v);
    /* x[ids[t]] += w[t] * y[t] for n rows of dim floats (y dense, x row stride dim): an
     * expert's output rows added into the tokens that chose it, each times its routing
     * weight. ids and w are host memory; the ids of one call are distinct. */
    void (*add_rows_scaled)(rl_backend *be, float *x, int64_t dim, const int32_t *ids,
                            const float *w, int64_t n, const float *y);

    /* ---- version 3: device backends (all NULL in the CPU backend) ---- */
    /* Host memory [host, host + bytes) that stays unchanged while the backend lives (the
     * mapped weights, the model's float vectors): a device backend copies it into its own
     * memory once, and ops handed pointers into the range (weights, norm weights, biases)
     * read the copy. RL_ERR_NOMEM when the device memory does not hold it. */
    rl_status (*map_host)(rl_backend *be, const void *host, size_t bytes);
    /* matmul, get_rows and reserve_matmul take weights of type t. */
    bool (*supports_type)(rl_backend *be, rl_type t);
    /* A new instance on the same device that reads the ranges be mapped (shared, not
     * copied) and has its own queue and scratch: one per context. be outlives it. */
    rl_status (*fork)(rl_backend *be, rl_backend **out);
    /* Wait for the queued work; the first error of a void op since the last call (the
     * ops of a device backend run asynchronously and report failures late). */
    rl_status (*sync)(rl_backend *be);

    /* ---- version 4: greedy picking on the device (NULL: the context copies the rows
     * and picks on the host) ---- */
    /* ids[t] (host memory) = the lowest index of the maximum of row t of x [n][dim] (NaN
     * never wins; 0 when no value is above -inf), after the queued work; only the ids
     * travel to the host. */
    void (*argmax_to_host)(rl_backend *be, const float *x, int64_t n, int64_t dim, int32_t *ids);

    /* ---- version 5: products sharing their input (NULL: the model calls matmul per weight) */
    /* y[i] = x W_i^T for i < n_w (q/k/v, gate/up): the matmul of each weight, bit for bit,
     * with the input converted once and the products in one pool dispatch. The weights are
     * 2-D with the same ne[0]; each y[i] is dense [n][w[i]->ne[1]] and overlaps no x. */
    rl_status (*matmul_multi)(rl_backend *be, const rl_weight *const *w, int n_w, const float *x,
                              int64_t n, float *const *y);

    /* ---- version 6: sampling on the device (NULL: the caller copies the logits rows and
     * samples on the host) ---- */
    /* ids[t] (host memory) = the token the sampler chain of rows[t] (host memory) picks
     * from row t of x [n][dim], after the queued work; only the ids travel to the host
     * (and n_kept[t], when not NULL: how many tokens the final draw chose among). x is
     * changed: the penalties are applied in place. ids[t] = -1 when no token can be
     * chosen (every logit -inf). pen (host) holds the rows' (id, count) pairs.
     * RL_ERR_UNSUPPORTED when dim is beyond the device code's limit. */
    rl_status (*sample_to_host)(rl_backend *be, float *x, int64_t n, int64_t dim,
                                const rl_sample_row *rows, const int32_t *pen,
                                int32_t *ids, int32_t *n_kept);

    /* ---- version 7: host memory that results come back into (NULL: to_host copies into
     * any host memory as it is) ---- */
    /* Prepare [p, p + bytes) of the caller's host memory for to_host copies into it (the
     * CUDA backend page-locks it, so the copy engine writes it directly instead of through
     * a bounce buffer). RL_ERR_NOMEM when that fails. host_unregister(be, p) before the
     * memory is freed or the backend destroyed. */
    rl_status (*host_register)(rl_backend *be, void *p, size_t bytes);
    void (*host_unregister)(rl_backend *be, void *p);

    /* ---- version 8: scratch the model is done with (NULL: nothing to do) ---- */
    /* [p, p + bytes) of backend memory will not be read again before it is written (the
     * model's scratch tensors, released): a backend whose queued ops store into it for no
     * later reader may leave those stores out. */
    void (*discard)(rl_backend *be, const void *p, size_t bytes);
} rl_backend_ops;

/* A backend instance. impl is the backend's own state (the CPU thread pool). */
struct rl_backend {
    const rl_backend_ops *ops;
    void *impl;
};

/* Largest head_dim (and rotated dims) the ops accept; the model loader enforces it. */
#define RL_MAX_HEAD_DIM 1024

/* The CPU backend on a pool of n_threads (<= 0: physical cores). */
rl_status rl__backend_cpu_create(int n_threads, rl_backend **out);
static inline void rl__backend_free(rl_backend *be) {
    if (be) be->ops->destroy(be);
}
/* The CPU backend's thread pool (for tests and tools that time kernels). */
rl_threadpool *rl__backend_cpu_pool(rl_backend *be);

/* Whether the CPU backend (every model's reference) can multiply weights of type t: it
 * has a plain-C dot product for it (src/backend/cpu/dispatch.c). */
bool rl__cpu_can_multiply(rl_type t);

/* ---- CPU weight layouts (src/backend/cpu/repack.c) ----
 * Load-time copies of weights in layouts the CPU kernels of the active ISA read faster
 * (on AVX-512 VNNI: Q4_0 rows of a multiple of 512 columns, src/backend/cpu/q4_0x16.h;
 * Q6_K weights of 32+ rows in tiles of 32 rows, src/backend/cpu/q6_kx16.h;
 * RUVLLM_CPU_REPACK=0 turns both off, RUVLLM_CPU_REPACK_Q6K=0 only the second).
 * rl__cpu_pack_weights copies each weight of ws[0..n) that has such a layout (weights
 * sharing data share the copy) into one anonymous read-only mapping (transparent huge
 * pages asked for) on up to n_threads threads (<= 0: physical cores) and sets its packed
 * field; the CPU backend's matmul and get_rows then read the copy (matmul falls back to
 * data if the ISA is later lowered below the layout's). release: drop the file pages of the
 * packed sources from memory (madvise MADV_DONTNEED; data must be a read-only private
 * file mapping, which stays valid). *out owns the copies (free after every user of the
 * weights); it has no copies when none applied. RL_ERR_NOMEM. */
typedef struct rl__cpu_packed rl__cpu_packed;
rl_status rl__cpu_pack_weights(rl_weight *const *ws, size_t n, int n_threads, bool release,
                               rl__cpu_packed **out);
/* True when data is the source of one of p's copies (p may be NULL). */
bool rl__cpu_packed_has(const rl__cpu_packed *p, const void *data);
/* Bytes of the copies' mapping. */
size_t rl__cpu_packed_bytes(const rl__cpu_packed *p);
/* mlock the copies: RL_ERR_IO with errno set when the kernel refuses. */
rl_status rl__cpu_packed_lock(rl__cpu_packed *p);
void rl__cpu_packed_free(rl__cpu_packed *p);

/* The CUDA backend on device ordinal `device` (src/backend/cuda/). RL_ERR_UNSUPPORTED with
 * a message when the library was built without CUDA or there is no such device. */
rl_status rl__backend_cuda_create(int device, rl_backend **out, char *err, size_t err_size);
/* CUDA devices this process sees (0 when built without CUDA or without a driver). */
int rl__cuda_device_count(void);
/* GPU `device`'s name and memory (bytes total and free now). RL_ERR_UNSUPPORTED with a
 * message when the library was built without CUDA or there is no such device. */
rl_status rl__cuda_device_info(int device, char *name, size_t name_size, size_t *total,
                               size_t *free_bytes, char *err, size_t err_size);
/* Device-to-device copy bandwidth of GPU `device` in bytes/s, counting bytes read and
 * written (best of 5 copies of 1 GiB): the floor benchmarks compare with. 0 without one. */
double rl__cuda_copy_bandwidth(int device);
/* The decode products alone on GPU `device` (src/backend/cuda/kbench.cu): one JSON line per
 * weight type, shape and kernel to out, in GB/s and as a fraction of copy_bw (bytes/s).
 * Nonzero when a measurement failed or there is no CUDA backend. */
int rl__cuda_bench_matvec(int device, double copy_bw, FILE *out);
/* How the op lists of a CUDA backend instance ran so far (src/backend/cuda/step.h):
 * eagerly, captured into a graph, replayed as one. false for any other backend. */
bool rl__cuda_graph_stats(rl_backend *be, int64_t *eager, int64_t *captured, int64_t *replayed);
/* How many attention calls of 5+ tokens the CUDA instance's fuse pass has had write their
 * output's quantization for the mmq.cu product after them so far (src/backend/cuda/step.c,
 * fuse_attn_q8); -1 for any other backend. */
int64_t rl__cuda_attn_mmq_count(rl_backend *be);
/* How many to_host calls of the CUDA instance had the product that made src store straight
 * into the registered host row (src/backend/cuda/backend_cuda.c, head_to_host); -1 for any
 * other backend. */
int64_t rl__cuda_head_host_count(rl_backend *be);

#endif /* RL_BACKEND_H */
