/*
 * mix.h - quantization mixes: which type each tensor of a model gets when a model file
 * is quantized to "Q4_K_M", "IQ2_XS", ... The choices are those of llama.cpp's
 * llama_tensor_get_type (src/llama-quant.cpp): which tensors are quantized at all, the
 * output / token-embedding rules, more bits for some layers' attn_v and ffn_down, the
 * GQA / expert-count rules, and fallbacks when a row length is not a multiple of the
 * block size. Files quantized here are meant to be the files llama-quantize writes.
 *
 * The policy is pure: names, shapes and a few hyperparameters in, types out. The file
 * driver (quantize_file.c) and the synthetic-model writer (synth/) apply it.
 */
#ifndef RL_QUANT_MIX_H
#define RL_QUANT_MIX_H

#include "../util/util.h"

/* general.file_type values (llama.cpp's llama_ftype): facts of the file format. */
enum {
    RL__FT_ALL_F32 = 0,
    RL__FT_F16 = 1,
    RL__FT_Q4_0 = 2,
    RL__FT_Q4_1 = 3,
    RL__FT_Q8_0 = 7,
    RL__FT_Q5_0 = 8,
    RL__FT_Q5_1 = 9,
    RL__FT_Q2_K = 10,
    RL__FT_Q3_K_S = 11,
    RL__FT_Q3_K_M = 12,
    RL__FT_Q3_K_L = 13,
    RL__FT_Q4_K_S = 14,
    RL__FT_Q4_K_M = 15,
    RL__FT_Q5_K_S = 16,
    RL__FT_Q5_K_M = 17,
    RL__FT_Q6_K = 18,
    RL__FT_IQ2_XXS = 19,
    RL__FT_IQ2_XS = 20,
    RL__FT_Q2_K_S = 21,
    RL__FT_IQ3_XS = 22,
    RL__FT_IQ3_XXS = 23,
    RL__FT_IQ1_S = 24,
    RL__FT_IQ4_NL = 25,
    RL__FT_IQ3_S = 26,
    RL__FT_IQ3_M = 27,
    RL__FT_IQ2_S = 28,
    RL__FT_IQ2_M = 29,
    RL__FT_IQ4_XS = 30,
    RL__FT_IQ1_M = 31,
    RL__FT_BF16 = 32,
    RL__FT_TQ1_0 = 36,
    RL__FT_TQ2_0 = 37,
    RL__FT_MXFP4_MOE = 38,
    RL__FT_NVFP4 = 39,
    RL__FT_Q1_0 = 40,
    RL__FT_Q2_0 = 41,
    RL__FT_GUESSED = 1024, /* or-ed in when the type was guessed from the tensors */
    RL__FT_NONE = -1       /* no general.file_type is written */
};

/* Mix flags. */
#define RL__MIX_IQ_LOW 1u    /* the 1-2 bit i-quant family with its own rules */
#define RL__MIX_MOE8_AO 2u   /* 8-expert models: attn_output gets Q5_K */
#define RL__MIX_COPY 4u      /* "COPY": no tensor is converted */
#define RL__MIX_PURE 8u      /* every quantizable tensor gets the base type */

/* A mix: what `quantize IN OUT NAME` means. The columns hold the simple per-mix choices
 * (RL_TYPE_COUNT: keep the base type); the layer-dependent rules are code in mix.c. */
typedef struct rl__mix {
    const char *name;   /* "Q4_K_M" */
    int32_t ftype;      /* general.file_type written, or RL__FT_NONE */
    rl_type base;       /* the type most tensors get */
    uint32_t flags;
    rl_type embd;       /* token_embd when the output tensor is separate */
    rl_type output;     /* output.weight (and token_embd when tied) */
    rl_type attn_out;   /* attn_output of dense, non-Falcon models */
    rl_type attn_qk;    /* attn_q and attn_k */
} rl__mix;

/* Resolve a name as llama-quantize does (case-insensitive): a mix ("Q4_K_M", "IQ2_M",
 * "COPY", the aliases "Q3_K"/"Q4_K"/"Q5_K" for the _M mixes), else a tensor type, which
 * gives a pure mix of that type (e.g. "NVFP4", "MXFP4"). *out is a copy. Returns
 * RL_ERR_NOT_FOUND for unknown names, RL_ERR_UNSUPPORTED for types that cannot be a
 * weight type (Q8_1, Q8_K, integers). */
rl_status rl__mix_resolve(const char *name, rl__mix *out);
/* Number of mix names and the i-th (aliases included), in llama-quantize's order. */
size_t rl__mix_count(void);
const rl__mix *rl__mix_at(size_t i);

/* The hyperparameters the policy reads (llama.cpp's hparams and model type). */
typedef struct rl__mix_model {
    char arch[64];      /* general.architecture ("llama", "falcon", ...) */
    int64_t n_layer;    /* <arch>.block_count */
    int64_t n_head;     /* <arch>.attention.head_count of layer 0 (0 when absent) */
    int64_t n_head_kv;  /* <arch>.attention.head_count_kv of layer 0 (default n_head) */
    int64_t n_expert;   /* <arch>.expert_count (0 when absent) */
} rl__mix_model;

/* Read rl__mix_model from a GGUF's metadata. need_layers: fail (RL_ERR_BAD_FILE, err
 * names the key) when general.architecture or <arch>.block_count is missing. */
rl_status rl__mix_model_from_gguf(const rl_gguf *g, bool need_layers, rl__mix_model *m,
                                  char *err, size_t err_size);

typedef struct rl__mix_opts {
    bool has_imatrix;       /* an importance matrix was given (changes some choices) */
    bool pure;              /* no mix rules: the base type everywhere (and fallbacks) */
    rl_type output_type;    /* RL_TYPE_COUNT: the mix decides output.weight */
    rl_type token_embd_type;/* RL_TYPE_COUNT: the mix decides token_embd.weight */
} rl__mix_opts;

typedef struct rl__mix_tensor {
    const char *name;
    rl_type type;       /* type in the input */
    int64_t ne[4];      /* unused dims are 1 */
} rl__mix_tensor;

/* llama.cpp's visiting (and output) order: by layer number of a "blk.N." prefix (-1 for
 * none), then by name. order[0..n) receives indexes into t. */
void rl__mix_order(const rl__mix_tensor *t, size_t n, size_t *order);

/* True when a tensor may be converted at all: 2-D or 3-D (trailing 1s do not count),
 * a name ending in "weight", not a norm, router, positional embedding, or one of the
 * small tensors llama.cpp keeps (ssm_conv1d, altup, rel_pos, ...). */
bool rl__mix_allows(const char *name, const int64_t ne[4]);

/* True when llama.cpp insists on an importance matrix for this tensor: the i-quant
 * types that need one, and Q2_K inside a Q2_K_S file; never token_embd / output. */
bool rl__mix_requires_imatrix(const rl__mix *mix, const char *name, rl_type t);

/* Types of all n tensors: types[i] for t[i] (tensors are visited in rl__mix_order,
 * which the layer counters depend on). fallback, when not NULL, gets per tensor whether
 * its row length forced a different type. RL_ERR_INVALID_ARG when a layer number cannot
 * be read where the rules need it, or no fallback exists; err says which tensor. */
rl_status rl__mix_plan(const rl__mix *mix, const rl__mix_model *m, const rl__mix_opts *o,
                       const rl__mix_tensor *t, size_t n, rl_type *types, bool *fallback,
                       char *err, size_t err_size);

#endif /* RL_QUANT_MIX_H */
