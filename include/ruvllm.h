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

/* True when quantizing to t without an importance matrix is refused (IQ1_S, IQ1_M,
 * IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, as llama.cpp's quantizer requires). */
RL_API bool rl_type_needs_imatrix(rl_type t);

/* Dequantize n elements of type t (n a multiple of the block size) from src into dst.
 * Bit-exact with ggml's to_float. RL_ERR_INVALID_ARG for a bad n or NULL pointers,
 * RL_ERR_UNSUPPORTED for the integer types. Thread-safe. */
RL_API rl_status rl_dequantize(rl_type t, const void *src, float *dst, int64_t n);

/* Quantize nrows rows of n_per_row floats (n_per_row a multiple of the block size) into
 * dst, which holds nrows * row_bytes(t, n_per_row) bytes. imatrix is NULL or n_per_row
 * importance weights (mean squared activation per column). Without imatrix the bytes
 * equal ggml's reference quantizer. RL_ERR_INVALID_ARG names no field: the caller knows
 * them; it is returned for NULL pointers, bad sizes, or a missing imatrix where
 * rl_type_needs_imatrix(t). Thread-safe. */
RL_API rl_status rl_quantize(rl_type t, const float *src, void *dst, int64_t nrows,
                             int64_t n_per_row, const float *imatrix);

/* ===== end section: quantization ===== */

/* ===== section: cpu kernels (vec_dot, ISA dispatch, thread pool, matmul) ===== */

/* Instruction-set paths of the CPU kernels. One binary holds all; the best one the CPU
 * supports is chosen at start, or the one RUVLLM_CPU_ISA=ref|avx2|avx512 names. */
typedef enum rl_cpu_isa {
    RL_CPU_ISA_REF = 0,    /* plain C: the reference every other path is tested against */
    RL_CPU_ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    RL_CPU_ISA_AVX512 = 2, /* AVX-512 F/BW/DQ/VL + VNNI (+ BF16 where the CPU has it) */
    RL_CPU_ISA_COUNT
} rl_cpu_isa;

RL_API const char *rl_cpu_isa_name(rl_cpu_isa isa);
/* Best path this CPU supports. */
RL_API rl_cpu_isa rl_cpu_isa_best(void);
/* Path in use (process-wide). */
RL_API rl_cpu_isa rl_cpu_isa_active(void);
/* Force a path process-wide; RL_ERR_UNSUPPORTED when the CPU lacks it. Not thread-safe
 * with respect to kernels running concurrently. */
RL_API rl_status rl_cpu_isa_set(rl_cpu_isa isa);

/* Activation type that weights of type t are multiplied with (Q8_0, Q8_1, Q8_K, F16,
 * BF16 or F32), as in ggml. */
RL_API rl_type rl_type_vec_dot_type(rl_type t);

/* *out = dot(x, y) over n elements: x of type t, y of rl_type_vec_dot_type(t), both in
 * their block format, on the active ISA path. RL_ERR_UNSUPPORTED for types without a
 * dot (Q8_K, integers). Thread-safe. */
RL_API rl_status rl_vec_dot(rl_type t, int64_t n, const void *x, const void *y, float *out);

/* Number of physical cores (not SMT siblings) available to this process; at least 1. */
RL_API int rl_cpu_physical_cores(void);

/* A pool of worker threads shared by all multi-threaded kernels. Workers park (block)
 * between jobs instead of spinning. A pool runs one job at a time: use it from one
 * thread at a time. */
typedef struct rl_threadpool rl_threadpool;

/* n_threads <= 0 means rl_cpu_physical_cores(). The calling thread takes part in every
 * job, so a pool of n threads starts n-1 workers. */
RL_API rl_status rl_threadpool_create(int n_threads, rl_threadpool **out);
RL_API void rl_threadpool_free(rl_threadpool *pool);
RL_API int rl_threadpool_n_threads(const rl_threadpool *pool);

/* y[t][r] = sum_c w[r][c] * x[t][c] for r < rows, t < n_tok: weights w (rows x cols,
 * row-major, type wt, rows of rl_type_row_bytes(wt, cols) bytes), activations x and
 * results y as float32. x is first converted to rl_type_vec_dot_type(wt); scratch
 * memory is owned by the pool and grown once. Uses every thread of the pool.
 * RL_ERR_INVALID_ARG for bad sizes, RL_ERR_UNSUPPORTED for weight types without a dot. */
RL_API rl_status rl_matmul(rl_threadpool *pool, rl_type wt, const void *w, int64_t rows,
                           int64_t cols, const float *x, int64_t n_tok, float *y);

/* ===== end section: cpu kernels ===== */

/* ===== section: gguf (reader and writer) ===== */

/* A GGUF file (v2 or v3), mapped read-only and validated at open. Strings handed out
 * are NUL-terminated (a length is given as well: GGUF strings may hold NUL bytes) and
 * live as long as the handle. A handle is immutable after open: any number of threads
 * may read it concurrently. */
typedef struct rl_gguf rl_gguf;

/* Value types of GGUF metadata (numeric values as in the file format). */
typedef enum rl_gguf_type {
    RL_GGUF_TYPE_UINT8 = 0,
    RL_GGUF_TYPE_INT8 = 1,
    RL_GGUF_TYPE_UINT16 = 2,
    RL_GGUF_TYPE_INT16 = 3,
    RL_GGUF_TYPE_UINT32 = 4,
    RL_GGUF_TYPE_INT32 = 5,
    RL_GGUF_TYPE_FLOAT32 = 6,
    RL_GGUF_TYPE_BOOL = 7,
    RL_GGUF_TYPE_STRING = 8,
    RL_GGUF_TYPE_ARRAY = 9,
    RL_GGUF_TYPE_UINT64 = 10,
    RL_GGUF_TYPE_INT64 = 11,
    RL_GGUF_TYPE_FLOAT64 = 12,
    RL_GGUF_TYPE_COUNT
} rl_gguf_type;

/* "uint32", "string", "array", ...; "?" when invalid. */
RL_API const char *rl_gguf_type_name(rl_gguf_type t);

/* Map and validate the file at path. On success *out is the handle. On failure *out is
 * NULL, the status is RL_ERR_BAD_FILE (malformed: err names the field and its byte
 * offset), RL_ERR_IO (cannot open or map) or RL_ERR_NOMEM, and err (when err_size > 0)
 * holds a one-line message. */
RL_API rl_status rl_gguf_open(const char *path, rl_gguf **out, char *err, size_t err_size);
/* The same over a caller's buffer, which is not copied and must outlive the handle. */
RL_API rl_status rl_gguf_open_memory(const void *data, size_t size, rl_gguf **out, char *err,
                                     size_t err_size);
RL_API void rl_gguf_free(rl_gguf *g);

RL_API uint32_t rl_gguf_version(const rl_gguf *g);
/* general.alignment, or 32 when absent. */
RL_API size_t rl_gguf_alignment(const rl_gguf *g);
/* Byte offset of the tensor data section in the file. */
RL_API size_t rl_gguf_data_offset(const rl_gguf *g);
/* Total file size in bytes. */
RL_API size_t rl_gguf_file_size(const rl_gguf *g);

/* --- metadata: key/value pairs, indexed 0..n_kv-1 in file order --- */
RL_API int64_t rl_gguf_n_kv(const rl_gguf *g);
/* Index of key, or -1 when absent. */
RL_API int64_t rl_gguf_find_key(const rl_gguf *g, const char *key);
RL_API const char *rl_gguf_key(const rl_gguf *g, int64_t i);
RL_API rl_gguf_type rl_gguf_kv_type(const rl_gguf *g, int64_t i);

/* Typed getters of kv i. Integers convert between widths and signedness when the value
 * fits (else RL_ERR_RANGE); get_f64 accepts any numeric type. A value of another type
 * gives RL_ERR_INVALID_ARG; a bad index RL_ERR_NOT_FOUND. */
RL_API rl_status rl_gguf_get_u64(const rl_gguf *g, int64_t i, uint64_t *out);
RL_API rl_status rl_gguf_get_i64(const rl_gguf *g, int64_t i, int64_t *out);
RL_API rl_status rl_gguf_get_f64(const rl_gguf *g, int64_t i, double *out);
RL_API rl_status rl_gguf_get_bool(const rl_gguf *g, int64_t i, bool *out);
RL_API rl_status rl_gguf_get_str(const rl_gguf *g, int64_t i, const char **s, size_t *len);

/* Arrays: element type and count of kv i (RL_ERR_INVALID_ARG when not an array). */
RL_API rl_status rl_gguf_get_arr_info(const rl_gguf *g, int64_t i, rl_gguf_type *elem_type,
                                      uint64_t *n);
/* Numeric or bool elements as a native, aligned array of n values of elem_type (bool as
 * uint8 0/1). RL_ERR_INVALID_ARG for arrays of strings or arrays. */
RL_API rl_status rl_gguf_get_arr_data(const rl_gguf *g, int64_t i, const void **data);
/* Element j of an array of strings. */
RL_API rl_status rl_gguf_get_arr_str(const rl_gguf *g, int64_t i, uint64_t j, const char **s,
                                     size_t *len);

/* --- tensors, indexed 0..n_tensors-1 in file order --- */
#define RL_GGUF_MAX_DIMS 4
typedef struct rl_gguf_tensor_info {
    const char *name;
    rl_type type;
    uint32_t n_dims;
    int64_t ne[RL_GGUF_MAX_DIMS]; /* ne[0] is the row length (innermost); unused dims are 1 */
    uint64_t offset;              /* from the start of the data section */
    size_t nbytes;
    const void *data;             /* inside the mapping; valid while the handle lives */
} rl_gguf_tensor_info;

RL_API int64_t rl_gguf_n_tensors(const rl_gguf *g);
/* Index of the tensor named name, or -1. */
RL_API int64_t rl_gguf_find_tensor(const rl_gguf *g, const char *name);
RL_API rl_status rl_gguf_tensor(const rl_gguf *g, int64_t i, rl_gguf_tensor_info *out);

/* ===== end section: gguf ===== */

#ifdef __cplusplus
}
#endif

#endif /* RUVLLM_H */
