/*
 * model.h - internal interface of the model layer: hyperparameters, layer weights, the
 * architecture table, the loader helpers the architectures share, and the forward-pass
 * state with the shared blocks (attention, FFN, norms, output) every architecture is
 * assembled from.
 *
 * Adding an architecture: write src/model/arch/<arch>.c with a load function (read the
 * hyperparameters the generic loader does not, pick the tensors with rl__ld_*) and a
 * forward function (a sequence of rl__blk_* calls), export its rl__arch descriptor, and
 * add it to RL__ARCH_LIST below. llama.c is the example.
 *
 * The model layer never touches activation memory itself: buffers come from the
 * forward arena (backend memory) and are only handed to backend ops. During the dry run
 * that sizes a context (rl__fwd.dry), ops are skipped and buffers are fake: code that
 * would read values on the host (MoE routing) must assume the worst case there.
 */
#ifndef RL_MODEL_H
#define RL_MODEL_H

#include "../backend/backend.h"

/* ------------------------------------------------------------------------------------ */
/* Hyperparameters                                                                       */
/* ------------------------------------------------------------------------------------ */

/* RoPE scaling types as GGUF names them in <arch>.rope.scaling.type. */
typedef enum rl_rope_scaling {
    RL_ROPE_SCALING_NONE = 0,
    RL_ROPE_SCALING_LINEAR,
    RL_ROPE_SCALING_YARN,
    RL_ROPE_SCALING_LONGROPE,
} rl_rope_scaling;

typedef struct rl__hparams {
    int32_t n_vocab;
    int32_t n_ctx_train;   /* <arch>.context_length */
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head, n_head_kv;
    int32_t head_dim_k, head_dim_v; /* key_length / value_length, default n_embd / n_head */
    int32_t n_ff;          /* feed_forward_length (0 for pure-MoE layers) */
    int32_t n_expert, n_expert_used;
    int32_t n_ff_exp;      /* rows of one expert's gate/up (set by the architecture) */
    int32_t n_ff_shexp;    /* rows of the shared expert's gate/up (qwen2moe) */
    float norm_rms_eps;

    /* RoPE as trained; rl__rope_resolve turns these into rl_rope_params per context. */
    int32_t n_rot;                 /* rope.dimension_count, default head_dim_k */
    rl_rope_mode rope_mode;        /* per architecture */
    float rope_freq_base;          /* default 10000 */
    float rope_freq_scale;         /* 1 / rope.scaling.factor (1 when absent or 0) */
    rl_rope_scaling rope_scaling;  /* default LINEAR, as llama.cpp */
    int32_t n_ctx_orig;            /* rope.scaling.original_context_length, default n_ctx_train */
    float rope_attn_factor;        /* rope.scaling.attn_factor, default 1 */
    float yarn_ext_factor;         /* < 0: not set (1 for YaRN, else 0) */
    float yarn_attn_factor;        /* rope.scaling.yarn_attn_factor, default 1 */
    float yarn_beta_fast, yarn_beta_slow; /* default 32, 1 */
    float yarn_log_mul;            /* rope.scaling.yarn_log_multiplier, default 0 */
    float rope_freq_base_swa;      /* sliding-window layers (gemma2: rope.freq_base_swa);
                                      0: as the other layers */
    float rope_freq_scale_swa;     /* 0: as the other layers */

    /* attention */
    float kq_scale;        /* 0: 1 / sqrt(head_dim_k); applied before attn_softcap */
    float attn_softcap;    /* 0: none (gemma2: attn_logit_softcapping) */
    float final_softcap;   /* 0: none (gemma2: final_logit_softcapping) */
    int32_t n_swa;         /* sliding window (tokens) of layers with swa set; 0: none */
} rl__hparams;

/* ------------------------------------------------------------------------------------ */
/* Weights                                                                               */
/* ------------------------------------------------------------------------------------ */

/* A layer's tensors. Absent ones have data == NULL (vectors: NULL). The shape comments
 * are ggml's [ne0, ne1(, ne2)]: ne0 is the row length, the input width of a matmul. */
typedef struct rl__layer {
    const float *attn_norm;          /* [n_embd] */
    rl_weight wq;                    /* [n_embd, n_head*head_dim_k] */
    rl_weight wk;                    /* [n_embd, n_head_kv*head_dim_k] */
    rl_weight wv;                    /* [n_embd, n_head_kv*head_dim_v] */
    rl_weight wqkv;                  /* fused [n_embd, q + k + v rows] (phi3), else absent */
    const float *bq, *bk, *bv;       /* biases (qwen2) */
    const float *bqkv;
    const float *q_norm, *k_norm;    /* [head_dim] per-head RMSNorm (qwen3) */
    rl_weight wo;                    /* [n_head*head_dim_v, n_embd] */
    const float *bo;
    const float *post_attn_norm;     /* gemma2 */

    const float *ffn_norm;           /* [n_embd] */
    rl_weight ffn_gate;              /* [n_embd, n_ff] */
    rl_weight ffn_up;                /* [n_embd, n_ff], or [n_embd, 2*n_ff] fused gate;up */
    rl_weight ffn_down;              /* [n_ff, n_embd] */
    const float *ffn_gate_b, *ffn_up_b, *ffn_down_b;
    const float *post_ffn_norm;      /* gemma2 */

    /* mixture of experts */
    rl_weight ffn_gate_inp;          /* router [n_embd, n_expert] */
    rl_weight ffn_gate_exps;         /* [n_embd, n_ff_exp, n_expert] */
    rl_weight ffn_up_exps;
    rl_weight ffn_down_exps;         /* [n_ff_exp, n_embd, n_expert] */
    rl_weight ffn_gate_shexp, ffn_up_shexp, ffn_down_shexp;
    rl_weight ffn_gate_inp_shexp;    /* [n_embd] (qwen2moe shared-expert gate) */

    /* RoPE frequency factors: rope_freqs (llama3) or LongRoPE's long / short sets */
    const float *rope_freqs, *rope_long, *rope_short; /* [n_rot/2] */

    bool swa;                        /* this layer uses the sliding window n_swa */
} rl__layer;

/* ------------------------------------------------------------------------------------ */
/* Model and architectures                                                               */
/* ------------------------------------------------------------------------------------ */

typedef struct rl__fwd rl__fwd;
typedef struct rl__loader rl__loader;

typedef struct rl__arch {
    const char *name;  /* general.architecture */
    rl_rope_mode rope_mode;
    /* Read what the generic hyperparameters (rl__ld_hparams) lack and pick the tensors.
     * Errors through rl__ld_fail. */
    rl_status (*load)(rl_model *m, rl__loader *ld);
    /* One forward pass over f's micro-batch (see rl__fwd). */
    rl_status (*forward)(rl__fwd *f);
} rl__arch;

/* X(name): the architectures, one file each under src/model/arch/. */
#define RL__ARCH_LIST(X) X(llama) X(qwen2) X(qwen3) X(qwen2moe) X(gemma) X(gemma2) X(phi3)

#define RL__DECL_ARCH(a) extern const rl__arch rl__arch_##a;
RL__ARCH_LIST(RL__DECL_ARCH)
#undef RL__DECL_ARCH

/* The architecture named name, or NULL. */
const rl__arch *rl__arch_find(const char *name);

struct rl_model {
    rl_gguf *gguf;
    rl_vocab *vocab;
    const rl__arch *arch;
    char arch_name[64];
    rl__hparams hp;
    int n_threads;

    rl_weight tok_embd;          /* [n_embd, n_vocab] */
    const float *output_norm;    /* [n_embd] */
    rl_weight output;            /* [n_embd, n_vocab]; tok_embd when tied */
    rl__layer *layers;           /* [n_layer] */

    void **owned;                /* float copies of vectors stored in other types */
    size_t *owned_bytes;         /* [n_owned] their sizes */
    size_t n_owned, cap_owned;
    uint64_t weight_bytes;
    void *lock_addr;             /* mlocked range, or NULL */
    size_t lock_len;
    /* device backend holding a copy of the weights (model params device "cuda[:N]"; its
     * forks run the contexts), NULL on the CPU. device.c */
    rl_backend *dev;
    int dev_ordinal;             /* GPU ordinal of dev */
    float gpu_mem;               /* rl_model_params.gpu_mem */
    uint64_t dev_bytes;          /* bytes copied to dev (weights after conversion, vectors) */
    /* CPU: copies of the weights in the CPU kernels' layouts (backend.h; the weights' packed
     * fields point into it), NULL when none. pack.c */
    rl__cpu_packed *cpu_packed;
};

/* Every rl_weight field of m (tok_embd, output, then each layer's) into out[0..cap);
 * returns their count. device.c */
size_t rl__model_weights(rl_model *m, rl_weight **out, size_t cap);

/* On the CPU, give the weights that have one a copy in the CPU kernels' layout
 * (rl__cpu_pack_weights, file pages released), unless the environment variable
 * RUVLLM_CPU_REPACK is "0". pack.c */
rl_status rl__model_cpu_pack(rl_model *m, char *err, size_t err_size);

/* Open the device the model params name (device NULL or "cpu": none), convert the weights
 * of types it has no kernel for (convert.c) and copy the weights into it, within
 * p->gpu_mem. device.c */
rl_status rl__model_device_init(rl_model *m, const rl_model_params *p, char *err,
                                size_t err_size);

/* The native type a device without a kernel for t converts t's rows of ne0 values to
 * (Q4_K, Q8_0 or F16), or t itself when t needs no conversion (convert.c). */
rl_type rl__convert_target(rl_type t, int64_t ne0);
/* nrows rows of ne0 values of type src at data, rewritten as type dst into out (nrows *
 * row_bytes(dst, ne0) bytes): dequantized, then quantized by the reference quantizer, on
 * pool's threads (pool may be NULL: the calling thread). RL_ERR_UNSUPPORTED when either
 * type lacks a row kernel, RL_ERR_NOMEM. */
rl_status rl__convert_rows(rl_threadpool *pool, rl_type src, const void *data, int64_t ne0,
                           int64_t nrows, rl_type dst, void *out);

/* ------------------------------------------------------------------------------------ */
/* Loader helpers (loader.c)                                                             */
/* ------------------------------------------------------------------------------------ */

struct rl__loader {
    rl_model *m;
    const rl_gguf *g;
    const char *arch;     /* metadata key prefix */
    uint8_t *used;        /* [n_tensors] */
    char *err;
    size_t err_size;
};

/* Record a message (printf format) and return st. */
rl_status rl__ld_fail(rl__loader *ld, rl_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Metadata "<arch>.<suffix>". Required keys that are missing fail with RL_ERR_BAD_FILE
 * naming the key; optional ones leave *out unchanged. Integer keys may be arrays with one
 * value per layer when all values are equal. */
rl_status rl__ld_i32(rl__loader *ld, const char *suffix, int32_t *out, bool required);
rl_status rl__ld_f32(rl__loader *ld, const char *suffix, float *out, bool required);
rl_status rl__ld_str(rl__loader *ld, const char *suffix, const char **out, bool required);
/* Key found? (full key, no prefix) */
bool rl__ld_has(rl__loader *ld, const char *key);

/* The generic hyperparameters every transformer has, as llama.cpp reads them (counts,
 * head dims, norms, RoPE and its scaling). */
rl_status rl__ld_hparams(rl__loader *ld);

/* The head shapes the llama family's graphs assume: key and value heads of one size
 * and, with full_rope, RoPE over the whole head (rope.dimension_count = key_length). */
rl_status rl__ld_check_heads(rl__loader *ld, bool full_rope);

#define RL_LD_OPTIONAL 1u  /* absent: w->data = NULL, no error */
#define RL_LD_SHARED 2u    /* may be used by several layers (rope_freqs) */

/* The tensor named by fmt (printf, with the layer index) into w, checked to be n_dims
 * dims of exactly ne[0..n_dims) and of a type with a matmul kernel. */
rl_status rl__ld_weight(rl__loader *ld, rl_weight *w, unsigned flags, int n_dims,
                        const int64_t *ne, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* A 1-D tensor of n values as float (converted once into memory the model owns when it is
 * stored in another type). */
rl_status rl__ld_vec(rl__loader *ld, const float **out, unsigned flags, int64_t n,
                     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* The tensors of a standard attention block and output head, as the llama family names
 * them: token_embd, output_norm, output (tied to token_embd when absent); per layer
 * attn_norm, attn_q/k/v (+ optional biases), attn_output (+ bias), ffn_norm and the
 * dense SwiGLU FFN (+ optional biases) or the MoE tensors when n_expert > 0, and
 * rope_freqs. Architectures call the pieces they share and add their own tensors. */
rl_status rl__ld_embd_output(rl__loader *ld);
rl_status rl__ld_attn(rl__loader *ld, int il);
/* After rl__ld_attn: fail naming the first of attn_q/k/v.bias the layer lacks (qwen2). */
rl_status rl__ld_require_qkv_bias(rl__loader *ld, int il);
/* ffn_norm and a dense gated FFN: ffn_gate, ffn_up, ffn_down; with fused_gate_up, no
 * ffn_gate and an ffn_up of 2 * n_ff rows, gate first (phi3). */
rl_status rl__ld_ffn(rl__loader *ld, int il, bool fused_gate_up);
rl_status rl__ld_rope_factors(rl__loader *ld, int il);
/* ffn_norm and a mixture-of-experts FFN: the router ffn_gate_inp [n_embd, n_expert] and
 * the 3-D ffn_{gate,up,down}_exps of hp.n_ff_exp rows per expert; with shared_expert,
 * also the shared expert ffn_{gate,up,down}_shexp of hp.n_ff_shexp rows and its gate
 * ffn_gate_inp_shexp [n_embd] (qwen2moe). */
rl_status rl__ld_moe(rl__loader *ld, int il, bool shared_expert);

/* ------------------------------------------------------------------------------------ */
/* The forward pass (context.c creates rl__fwd; blocks.c has the shared blocks)          */
/* ------------------------------------------------------------------------------------ */

/* Scratch memory of a pass: a bump allocator over one backend buffer. In a dry run it
 * only measures (base NULL). */
typedef struct rl__arena {
    uint8_t *base;
    size_t size, used, peak;
} rl__arena;

/* One forward pass over a micro-batch of n_tok tokens. */
struct rl__fwd {
    const rl_model *m;
    rl_backend *be;
    rl__arena *arena;
    bool dry;                    /* sizing run: ops skipped, buffers fake */
    int32_t n_tok;
    const int32_t *tokens;       /* [n_tok] host */
    const int32_t *pos;          /* [n_tok] host */
    const int32_t *kv_cells;     /* [n_tok] host: the cell each token's K/V go to */
    const rl_kv_layer *kv;       /* [n_layer] */
    const int32_t *attn_cells;   /* host: cell lists the spans index */
    const int32_t *span_full;    /* [n_tok][2] host: spans of full-attention layers */
    const int32_t *span_swa;     /* [n_tok][2] host: spans of sliding-window layers */
    int32_t n_out;               /* tokens that want logits */
    const int32_t *out_ids;      /* [n_out] host: their indices in the micro-batch, ascending */
    float *logits;               /* [n_out][n_vocab] backend memory: the result */
    const rl_rope_params *rope;  /* [n_layer]: each layer's resolved RoPE */
    rl__arena *host;             /* host scratch (MoE routing), sized by the same dry run */
    uint64_t pass_key;           /* unique to this pass: its attention calls' cells keys */
    rl_status status;            /* first error of an op */
};

/* A float buffer of n values from the arena (64-byte aligned). Never NULL: a pass is
 * sized so that it fits (a dry run returns a placeholder). */
float *rl__fwd_alloc(rl__fwd *f, int64_t n);
static inline size_t rl__fwd_mark(const rl__fwd *f) { return f->arena->used; }
/* Release the buffers allocated since mark: their contents are not read again (the
 * backend's discard). */
void rl__fwd_release(rl__fwd *f, size_t mark);
/* bytes of host memory from f->host (64-byte aligned), released with the host arena's
 * own mark (f->host->used). In a dry run: a placeholder that must not be touched. */
void *rl__fwd_host_alloc(rl__fwd *f, size_t bytes);

/* ---- ops through the backend (no-ops in a dry run) ---- */
/* y[n][w.ne[1]] = x[n][w.ne[0]] W^T (+ bias) into a new buffer. */
float *rl__op_linear(rl__fwd *f, const rl_weight *w, const float *bias, const float *x,
                     int64_t n);
/* RMSNorm with weight w (NULL: none) into a new buffer (y == NULL) or y. */
float *rl__op_rmsnorm(rl__fwd *f, const float *x, int64_t n, int64_t dim, const float *w,
                      float *y);
void rl__op_add(rl__fwd *f, float *x, const float *y, int64_t n);
void rl__op_scale(rl__fwd *f, float *x, int64_t n, float s);
void rl__op_softcap(rl__fwd *f, float *x, int64_t n, float cap);

/* ---- shared blocks (blocks.c) ---- */
/* Token embeddings [n_tok][n_embd] (times scale when scale != 0). */
float *rl__blk_embed(rl__fwd *f, float scale);
/* Self-attention of layer il on the normed input h [n_tok][n_embd]: q/k/v projections
 * (separate or fused, with biases), optional per-head q/k RMSNorm, RoPE (f->rope[il]),
 * the KV write, attention over the cache (full or sliding window per layer.swa; kq_scale
 * and softcap from the hyperparameters) and the output projection: a new [n_tok][n_embd]. */
float *rl__blk_attn(rl__fwd *f, int il, const float *h);
/* The gated FFN of layer il on h [n][n_embd] (SwiGLU or GeGLU per act; separate gate or
 * fused gate;up in ffn_up): a new [n][n_embd]. */
float *rl__blk_ffn(rl__fwd *f, int il, const float *h, int64_t n, rl_glu_act act);
/* A mixture-of-experts FFN of layer il on h [n][n_embd] (rl__ld_moe's tensors), as
 * Mixtral / Qwen-MoE: router logits, softmax over all experts, the top n_expert_used
 * per token (weights renormalized to sum 1 when norm_w), each chosen expert's gated FFN
 * on the rows that chose it, its output times the weight added into the token's row;
 * plus, when the layer has one, the shared expert times sigmoid(ffn_gate_inp_shexp . h).
 * Routing is read back to the host; a dry run assumes every token picks every expert.
 * A new [n][n_embd]. */
float *rl__blk_moe(rl__fwd *f, int il, const float *h, int64_t n, rl_glu_act act,
                   bool norm_w);
/* Keep only the rows of x [n_tok][dim] that want logits (in place): returns f->n_out. Used
 * in the last layer after attention, so the rest of it runs on those rows only. */
int64_t rl__blk_select_out(rl__fwd *f, float *x, int64_t dim);
/* Output head on x [n_out][n_embd]: output_norm, the output matmul into f->logits, and
 * the final softcap. */
void rl__blk_output(rl__fwd *f, const float *x);

/* The pre-norm decoder stack most architectures are, layer by layer:
 *   h = x + post_attn_norm(attn(attn_norm(x)))        (post-norm only where the layer
 *   x = h + post_ffn_norm(ffn(ffn_norm(h)))            has the tensor: gemma2)
 * with ffn the dense gated FFN or, where the layer has a router, the MoE block; then the
 * output head. The architectures' parameters: */
typedef struct rl__decoder_opts {
    float embd_scale;     /* token embeddings times this (gemma: sqrt(n_embd)); 0: none */
    rl_glu_act act;       /* FFN activation */
    bool moe_norm_w;      /* MoE: renormalize the chosen experts' weights (Mixtral) */
} rl__decoder_opts;
rl_status rl__blk_decoder(rl__fwd *f, const rl__decoder_opts *o);

/* ---- one pass with the cache placement given (context.c) ----
 * rl_decode places tokens in the context's own cell table and calls this per micro-batch.
 * An engine that keeps a paged cache (src/kv: cell = block * block_size + offset, the
 * context created with n_ctx = n_blocks * block_size) calls it directly with the cells
 * its block tables give. All arrays are host memory. */
typedef struct rl__pass {
    int32_t n_tok;               /* 1 .. n_batch */
    const int32_t *tokens;       /* [n_tok] */
    const int32_t *pos;          /* [n_tok] */
    const int32_t *kv_cells;     /* [n_tok]: where each token's K/V are written */
    const int32_t *attn_cells;   /* cell lists, each sequence's in position order */
    const int32_t *span_full;    /* [n_tok][2]: token t attends to attn_cells[b .. e) */
    const int32_t *span_swa;     /* [n_tok][2] for sliding-window layers; NULL: span_full */
    int32_t n_out;               /* 0 .. min(n_tok, n_outputs_max) */
    const int32_t *out_ids;      /* [n_out] ascending indices of tokens that want logits */
    int32_t *out_argmax;         /* NULL, or [n_out]: receives each output's argmax id
                                    instead of logits (picked on the device when the
                                    backend can; else logits are filled and picked here) */
    const rl_sample_row *out_sample; /* NULL, or [n_out]: out_argmax receives each output's
                                    token sampled on the device with this chain instead
                                    (rl__context_can_sample must be true) */
    const int32_t *sample_pen;   /* the rows' (id, count) penalty pairs */
} rl__pass;

/* Run one pass; logits ([n_out][n_vocab] host memory) receives the results. Allocates
 * nothing. RL_ERR_INVALID_ARG for sizes out of range. */
rl_status rl__context_forward(rl_context *ctx, const rl__pass *pass, float *logits);
/* Whether the context's backend samples on the device (rl__pass.out_sample). */
bool rl__context_can_sample(const rl_context *ctx);
/* One row of a device draw with smp's chain (rl__sampler_device_plan, which the caller has
 * checked) and its penalty pairs pen[pen_off .. pen_off + pen_n); a non-greedy row takes the
 * next uniform number of smp's stream, where the host's sampling would. smp NULL: a greedy
 * row without penalties (a row whose token nobody reads). */
rl_sample_row rl__sample_row(rl_sampler *smp, int32_t pen_off, int32_t pen_n);
/* Copy the K/V rows of cells src[i] to dst[i] in every layer (copy-on-write of blocks). */
void rl__context_kv_copy(rl_context *ctx, const int32_t *src, const int32_t *dst, int64_t n);

/* ---- RoPE (rope.c) ---- */
/* Each layer's RoPE parameters for a context of n_ctx cells, as llama.cpp's context
 * derives them (cparams): freq scale by scaling type, YaRN ext/attn factors, LongRoPE's
 * long factors when n_ctx exceeds the original context. out has n_layer entries. */
void rl__rope_resolve(const rl_model *m, int32_t n_ctx, rl_rope_params *out);

#endif /* RL_MODEL_H */
