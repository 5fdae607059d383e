/*
 * ruvllm.h - the public API of ruvllm, an LLM inference engine for GGUF models.
 *
 * This header is the contract: what is not declared here is not API.
 *
 * Conventions
 *  - Every function that can fail returns an rl_status; RL_OK is 0.
 *  - Handles are opaque. Every rl_*_free(NULL) is a no-op.
 *  - Sizes are size_t or fixed-width integers; element counts of tensors are int64_t.
 *  - Unless a function says otherwise, a handle may be used by one thread at a time,
 *    and distinct handles may be used from different threads concurrently.
 *  - The library never calls exit() or abort() on bad input; it returns an error and,
 *    where a handle or error buffer is at hand, a message naming the offending field.
 */
#ifndef RUVLLM_H
#define RUVLLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RL_BUILDING_LIBRARY)
#define RL_API __attribute__((visibility("default")))
#else
#define RL_API
#endif

#define RL_VERSION_MAJOR 0
#define RL_VERSION_MINOR 1
#define RL_VERSION_PATCH 0

/* "MAJOR.MINOR.PATCH" of the linked library. */
RL_API const char *rl_version(void);

/* ------------------------------------------------------------------------- */
/* Status codes                                                               */
/* ------------------------------------------------------------------------- */

/* X(name, text): one table generates the enum and rl_status_str. */
#define RL_STATUS_MAP(X)                                                       \
    X(OK, "success")                                                           \
    X(ERR_NOMEM, "out of memory")                                              \
    X(ERR_INVALID_ARG, "invalid argument")                                     \
    X(ERR_BAD_FILE, "malformed or unsupported file")                           \
    X(ERR_IO, "input/output error")                                            \
    X(ERR_UNSUPPORTED, "unsupported operation or type")                        \
    X(ERR_NOT_FOUND, "not found")                                              \
    X(ERR_RANGE, "value out of range")                                         \
    X(ERR_LIMIT, "resource limit exceeded")                                    \
    X(ERR_INTERNAL, "internal error")

typedef enum rl_status {
#define RL__STATUS_ENUM(name, text) RL_##name,
    RL_STATUS_MAP(RL__STATUS_ENUM)
#undef RL__STATUS_ENUM
        RL_STATUS_COUNT
} rl_status;

/* Short English text for a status; never NULL (unknown values give "unknown status"). */
RL_API const char *rl_status_str(rl_status s);

/* ------------------------------------------------------------------------- */
/* Memory accounting                                                          */
/* ------------------------------------------------------------------------- */

/* Bytes currently allocated by the library through its allocator (all threads). */
RL_API size_t rl_mem_in_use(void);

/* ------------------------------------------------------------------------- */
/* Tensor types                                                               */
/* ------------------------------------------------------------------------- */

/* Tensor element types. The numeric values are those of GGUF / ggml and appear in
 * files; ids that ggml has retired are absent. */
typedef enum rl_type {
    RL_TYPE_F32 = 0,
    RL_TYPE_F16 = 1,
    RL_TYPE_Q4_0 = 2,
    RL_TYPE_Q4_1 = 3,
    RL_TYPE_Q5_0 = 6,
    RL_TYPE_Q5_1 = 7,
    RL_TYPE_Q8_0 = 8,
    RL_TYPE_Q8_1 = 9,
    RL_TYPE_Q2_K = 10,
    RL_TYPE_Q3_K = 11,
    RL_TYPE_Q4_K = 12,
    RL_TYPE_Q5_K = 13,
    RL_TYPE_Q6_K = 14,
    RL_TYPE_Q8_K = 15,
    RL_TYPE_IQ2_XXS = 16,
    RL_TYPE_IQ2_XS = 17,
    RL_TYPE_IQ3_XXS = 18,
    RL_TYPE_IQ1_S = 19,
    RL_TYPE_IQ4_NL = 20,
    RL_TYPE_IQ3_S = 21,
    RL_TYPE_IQ2_S = 22,
    RL_TYPE_IQ4_XS = 23,
    RL_TYPE_I8 = 24,
    RL_TYPE_I16 = 25,
    RL_TYPE_I32 = 26,
    RL_TYPE_I64 = 27,
    RL_TYPE_F64 = 28,
    RL_TYPE_IQ1_M = 29,
    RL_TYPE_BF16 = 30,
    RL_TYPE_TQ1_0 = 34,
    RL_TYPE_TQ2_0 = 35,
    RL_TYPE_MXFP4 = 39,
    RL_TYPE_NVFP4 = 40,
    RL_TYPE_Q1_0 = 41,
    RL_TYPE_Q2_0 = 42,
    RL_TYPE_COUNT = 43 /* one past the largest id; not every id below is valid */
} rl_type;

/* True when t names a type this library knows (layout, size). */
RL_API bool rl_type_valid(int t);
/* Upper-case name as ggml spells it ("Q4_K", "IQ2_XXS", "F32"); "?" when invalid. */
RL_API const char *rl_type_name(rl_type t);
/* Parse a type name, case-insensitive. Returns RL_ERR_NOT_FOUND for unknown names. */
RL_API rl_status rl_type_from_name(const char *name, rl_type *out);
/* Elements per block (1 for plain types); 0 when invalid. */
RL_API int64_t rl_type_block_size(rl_type t);
/* Bytes per block; 0 when invalid. */
RL_API size_t rl_type_block_bytes(rl_type t);
/* Bytes of a row of n elements. Returns RL_ERR_INVALID_ARG when n is negative or not a
 * multiple of the block size, RL_ERR_RANGE on overflow. */
RL_API rl_status rl_type_row_bytes(rl_type t, int64_t n, size_t *out);
/* True for block-quantized types (everything but F32/F16/BF16/F64 and integers). */
RL_API bool rl_type_is_quantized(rl_type t);

/* ===== section: quantization (dequantize / quantize rows) ===== */
/* ===== end section: quantization ===== */

/* ===== section: cpu kernels (vec_dot, ISA dispatch, thread pool, matmul) ===== */
/* ===== end section: cpu kernels ===== */

/* ===== section: gguf (reader and writer) ===== */
/* ===== end section: gguf ===== */

#ifdef __cplusplus
}
#endif

#endif /* RUVLLM_H */
