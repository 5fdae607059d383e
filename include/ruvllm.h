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
 * supports is chosen at start, or the one RUVLLM_CPU_ISA=ref|avx2|avx512 names (read once,
 * case-insensitive). An unknown value, or a path this CPU cannot run, prints one
 * "ruvllm: error: ..." line on stderr and the best supported path is used. A type
 * without its own kernel on a path uses the next lower path's kernel. */
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
 * job, so a pool of n threads starts n-1 workers. Threads are not pinned unless
 * RUVLLM_THREAD_PIN=1: then the calling thread is pinned to one CPU and each worker to
 * another, one per physical core first (for machines where other load keeps the
 * scheduler from spreading the threads). */
RL_API rl_status rl_threadpool_create(int n_threads, rl_threadpool **out);
RL_API void rl_threadpool_free(rl_threadpool *pool);
RL_API int rl_threadpool_n_threads(const rl_threadpool *pool);

/* y[t][r] = sum_c w[r][c] * x[t][c] for r < rows, t < n_tok: weights w (rows x cols,
 * row-major, type wt, rows of rl_type_row_bytes(wt, cols) bytes), activations x and
 * results y as float32. x is first converted to rl_type_vec_dot_type(wt); scratch
 * memory is owned by the pool and grown once. Uses every thread of the pool. Each
 * y[t][r] equals, bit for bit, rl_vec_dot of row r with x[t] converted by the reference
 * quantizer (rl_quantize), whatever the thread count. rows == 0 or n_tok == 0 is a no-op.
 * RL_ERR_INVALID_ARG for bad sizes or NULL pointers, RL_ERR_RANGE when sizes overflow,
 * RL_ERR_UNSUPPORTED for weight types without a dot, RL_ERR_NOMEM when the scratch cannot
 * grow. Not thread-safe with respect to other users of the same pool. */
RL_API rl_status rl_matmul(rl_threadpool *pool, rl_type wt, const void *w, int64_t rows,
                           int64_t cols, const float *x, int64_t n_tok, float *y);

/* ===== end section: cpu kernels ===== */

/* ===== section: memory bandwidth (the floor of memory-bound work) ===== */

/* STREAM-like bandwidth (McCalpin): copy (c = a, 2 x N x 4 bytes counted) and triad
 * (a = b + s*c, 3 x N x 4) over three float arrays far larger than the last-level cache,
 * plus a read-only pass (N x 4), each thread of a pool streaming its own slice. A decode
 * step reads every weight once, so bytes per token / bandwidth is its floor. The handle
 * keeps the best rate of each kernel over all runs: interleave runs with the timed work
 * so that both see the same load. One thread at a time per handle. */
typedef struct rl_membw rl_membw;

typedef struct rl_membw_result {
    double copy_gbs, triad_gbs, read_gbs; /* 1e9 bytes per second */
} rl_membw_result;

/* Largest cache of cpu0 in bytes (sysfs); 32 MiB when unknown. */
RL_API size_t rl_cpu_llc_bytes(void);
/* Map the arrays (array_bytes each; 0: the default, max(256 MiB, 8 x rl_cpu_llc_bytes)),
 * asking for transparent huge pages when hugepages. They are first touched by the threads
 * of the first rl_membw_run. RL_ERR_INVALID_ARG for NULL out or a size under 256 bytes,
 * RL_ERR_NOMEM. */
RL_API rl_status rl_membw_create(size_t array_bytes, bool hugepages, rl_membw **out);
RL_API void rl_membw_free(rl_membw *b);
/* Bytes of each array. */
RL_API size_t rl_membw_array_bytes(const rl_membw *b);
/* One copy, triad and read pass on every thread of pool; *pass (may be NULL) gets this
 * pass's rates. Not thread-safe with respect to other users of pool. */
RL_API rl_status rl_membw_run(rl_membw *b, rl_threadpool *pool, rl_membw_result *pass);
/* The best rate of each kernel over all runs (zeros before the first). */
RL_API rl_membw_result rl_membw_best(const rl_membw *b);

/* ===== end section: memory bandwidth ===== */

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
 * offset), RL_ERR_IO (cannot open or map), RL_ERR_LIMIT (well-formed but past a limit
 * that guards against hostile files: a string over 1 GiB, an array over 2^30 elements,
 * arrays nested deeper than 16, over 1 GiB of metadata in memory) or RL_ERR_NOMEM, and
 * err (when err_size > 0) holds a one-line message. Tensor dims may be 0 (as in ggml);
 * n_dims is 1..4; tensor offsets are aligned, in file order and non-overlapping. */
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
/* Element j of an array of strings (RL_ERR_RANGE when j >= n). */
RL_API rl_status rl_gguf_get_arr_str(const rl_gguf *g, int64_t i, uint64_t j, const char **s,
                                     size_t *len);

/* Any metadata value, nested arrays included, as a plain view. A STRING has n bytes at
 * v.str followed by a NUL. An ARRAY has n elements of elem_type: numbers and bools as a
 * native, aligned C array at v.arr (bool as uint8 0/1); strings and arrays as n values at
 * v.vals, each of type elem_type (an inner array has its own elem_type and n). The reader
 * hands out views into the handle; the writer takes views built by the caller. */
typedef struct rl_gguf_value {
    rl_gguf_type type;
    rl_gguf_type elem_type; /* ARRAY only */
    uint64_t n;             /* STRING: bytes without the NUL; ARRAY: element count */
    union {
        uint8_t u8;
        int8_t i8;
        uint16_t u16;
        int16_t i16;
        uint32_t u32;
        int32_t i32;
        uint64_t u64;
        int64_t i64;
        float f32;
        double f64;
        bool b;
        const char *str;
        const void *arr;
        const struct rl_gguf_value *vals;
    } v;
} rl_gguf_value;

/* The value of kv i, valid while the handle lives; NULL for a bad index. */
RL_API const rl_gguf_value *rl_gguf_kv_value(const rl_gguf *g, int64_t i);

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

/* --- writer: builds a GGUF v3 file (the layout llama.cpp writes and loads) ---
 * Metadata is written in the order keys were first set; setting a key again replaces its
 * value in place. Keys, strings and values are copied at once; tensor data is borrowed or
 * produced by a callback at write time. Every tensor's data is padded to the alignment
 * (general.alignment, default 32). A writer is used by one thread at a time. Functions
 * return RL_ERR_INVALID_ARG (bad key, name, type, shape, value) or RL_ERR_NOMEM, and leave
 * a message in rl_gguf_writer_errmsg. */
typedef struct rl_gguf_writer rl_gguf_writer;

RL_API rl_status rl_gguf_writer_create(rl_gguf_writer **out);
RL_API void rl_gguf_writer_free(rl_gguf_writer *w);
/* The last error's message ("" when none); valid until the next call on w. */
RL_API const char *rl_gguf_writer_errmsg(const rl_gguf_writer *w);

/* Scalars. key: non-empty, at most 65535 bytes. */
RL_API rl_status rl_gguf_writer_set_u8(rl_gguf_writer *w, const char *key, uint8_t v);
RL_API rl_status rl_gguf_writer_set_i8(rl_gguf_writer *w, const char *key, int8_t v);
RL_API rl_status rl_gguf_writer_set_u16(rl_gguf_writer *w, const char *key, uint16_t v);
RL_API rl_status rl_gguf_writer_set_i16(rl_gguf_writer *w, const char *key, int16_t v);
RL_API rl_status rl_gguf_writer_set_u32(rl_gguf_writer *w, const char *key, uint32_t v);
RL_API rl_status rl_gguf_writer_set_i32(rl_gguf_writer *w, const char *key, int32_t v);
RL_API rl_status rl_gguf_writer_set_u64(rl_gguf_writer *w, const char *key, uint64_t v);
RL_API rl_status rl_gguf_writer_set_i64(rl_gguf_writer *w, const char *key, int64_t v);
RL_API rl_status rl_gguf_writer_set_f32(rl_gguf_writer *w, const char *key, float v);
RL_API rl_status rl_gguf_writer_set_f64(rl_gguf_writer *w, const char *key, double v);
RL_API rl_status rl_gguf_writer_set_bool(rl_gguf_writer *w, const char *key, bool v);
/* A NUL-terminated string. */
RL_API rl_status rl_gguf_writer_set_str(rl_gguf_writer *w, const char *key, const char *s);
/* n numbers or bools of elem_type (a native C array; bool as one byte each). */
RL_API rl_status rl_gguf_writer_set_arr(rl_gguf_writer *w, const char *key,
                                        rl_gguf_type elem_type, const void *data, uint64_t n);
/* n NUL-terminated strings. */
RL_API rl_status rl_gguf_writer_set_arr_str(rl_gguf_writer *w, const char *key,
                                            const char *const *strs, uint64_t n);
/* Any value, nested arrays included (deep copy; nesting at most 16 deep). */
RL_API rl_status rl_gguf_writer_set_value(rl_gguf_writer *w, const char *key,
                                          const rl_gguf_value *v);
/* Copy kv i of a reader (key and value). */
RL_API rl_status rl_gguf_writer_copy_kv(rl_gguf_writer *w, const rl_gguf *g, int64_t i);
/* Data alignment, a power of two up to 2^20; sets general.alignment (uint32) unless it
 * is the default 32 and the key is unset. Setting general.alignment directly is the same. */
RL_API rl_status rl_gguf_writer_set_alignment(rl_gguf_writer *w, size_t alignment);

/* A tensor: name unique, 1..63 bytes (llama.cpp's limit); n_dims 1..4; ne[d] >= 0 and
 * ne[0] a multiple of the type's block size. data holds the tensor's bytes (as
 * rl_type_row_bytes(type, ne[0]) * ne[1] * ne[2] * ne[3]) and must stay valid until
 * rl_gguf_writer_write* returns or the writer is freed. Tensors are laid out in the
 * order added. */
RL_API rl_status rl_gguf_writer_add_tensor(rl_gguf_writer *w, const char *name, rl_type type,
                                           uint32_t n_dims, const int64_t *ne,
                                           const void *data);

/* Produces rows [row0, row0 + n_rows) of a tensor (a row is ne[0] elements; rows run over
 * ne[1], ne[2], ne[3]) into dst, which holds n_rows * rl_type_row_bytes(type, ne[0])
 * bytes. Rows are asked for in order, in chunks of about 16 MiB (at least one row).
 * Returning anything but RL_OK stops the write with that status. */
typedef rl_status (*rl_gguf_rows_fn)(void *user, int64_t row0, int64_t n_rows, void *dst);

/* A tensor whose data fn produces at write time, so that a writer can stream a model of
 * any size. user is passed back to fn. */
RL_API rl_status rl_gguf_writer_add_tensor_fn(rl_gguf_writer *w, const char *name,
                                              rl_type type, uint32_t n_dims, const int64_t *ne,
                                              rl_gguf_rows_fn fn, void *user);

/* Receives the file's bytes in order; anything but RL_OK stops the write. */
typedef rl_status (*rl_gguf_sink_fn)(void *user, const void *buf, size_t n);

/* Write the file to path atomically: a temporary file in the same folder, fsync, rename.
 * On failure path is untouched and no temporary is left. RL_ERR_IO names the system
 * error; a producer's status is passed through. */
RL_API rl_status rl_gguf_writer_write(rl_gguf_writer *w, const char *path);
/* Write the file's bytes to a sink (a pipe, a memory buffer). */
RL_API rl_status rl_gguf_writer_write_to(rl_gguf_writer *w, rl_gguf_sink_fn sink, void *user);

/* ===== end section: gguf ===== */

/* ===== section: tokenizer (vocabularies, tokenize, detokenize) ===== */

/* A token id, 0..n_tokens-1; RL_TOKEN_NULL means "none". */
typedef int32_t rl_token;
#define RL_TOKEN_NULL ((rl_token)-1)

/* A vocabulary and its tokenizer, built from the tokenizer.ggml.* metadata of a GGUF file
 * the way llama.cpp reads it. Immutable after load: any number of threads may tokenize and
 * detokenize with one vocabulary at the same time. It copies what it keeps: the rl_gguf
 * may be freed after rl_vocab_load. */
typedef struct rl_vocab rl_vocab;

typedef enum rl_vocab_type {
    RL_VOCAB_TYPE_NONE = 0, /* "no_vocab": ids only, nothing to tokenize */
    RL_VOCAB_TYPE_SPM = 1,  /* SentencePiece BPE with byte fallback ("llama") */
    RL_VOCAB_TYPE_BPE = 2,  /* BPE with a regex pre-tokenizer ("gpt2", "gemma4") */
    RL_VOCAB_TYPE_WPM = 3   /* WordPiece ("bert") */
} rl_vocab_type;

/* Token attributes, a bit set (tokenizer.ggml.token_type plus llama.cpp's per-model rules). */
typedef enum rl_token_attr {
    RL_TOKEN_ATTR_UNDEFINED = 0,
    RL_TOKEN_ATTR_UNKNOWN = 1 << 0,
    RL_TOKEN_ATTR_UNUSED = 1 << 1,
    RL_TOKEN_ATTR_NORMAL = 1 << 2,
    RL_TOKEN_ATTR_CONTROL = 1 << 3,      /* BOS, EOS, <|im_end|>: only from parse_special */
    RL_TOKEN_ATTR_USER_DEFINED = 1 << 4, /* added tokens: matched in any text */
    RL_TOKEN_ATTR_BYTE = 1 << 5,         /* <0xXX> byte-fallback tokens */
    RL_TOKEN_ATTR_LSTRIP = 1 << 7,       /* when matched in text, eats whitespace on its left */
    RL_TOKEN_ATTR_RSTRIP = 1 << 8        /* ... and on its right */
} rl_token_attr;

/* Build the vocabulary of g. Failure: RL_ERR_BAD_FILE (missing or mistyped key, duplicate
 * token: err names the key), RL_ERR_UNSUPPORTED (tokenizer.ggml.model or .pre this library
 * does not implement, e.g. "t5", "rwkv"), RL_ERR_NOMEM; *out is then NULL. */
RL_API rl_status rl_vocab_load(const rl_gguf *g, rl_vocab **out, char *err, size_t err_size);
RL_API void rl_vocab_free(rl_vocab *v);

RL_API rl_vocab_type rl_vocab_get_type(const rl_vocab *v);
/* tokenizer.ggml.model as in the file, and the pre-tokenizer in use ("llama-bpe", "qwen2",
 * "default", ...). Never NULL. */
RL_API const char *rl_vocab_model_name(const rl_vocab *v);
RL_API const char *rl_vocab_pre_name(const rl_vocab *v);
RL_API int32_t rl_vocab_n_tokens(const rl_vocab *v);

/* Special tokens, RL_TOKEN_NULL when the vocabulary has none. eot: end of turn
 * (<|eot_id|>, <|im_end|>, <end_of_turn>, ...); nl: the token of "\n". */
RL_API rl_token rl_vocab_bos(const rl_vocab *v);
RL_API rl_token rl_vocab_eos(const rl_vocab *v);
RL_API rl_token rl_vocab_eot(const rl_vocab *v);
RL_API rl_token rl_vocab_eom(const rl_vocab *v);
RL_API rl_token rl_vocab_unk(const rl_vocab *v);
RL_API rl_token rl_vocab_sep(const rl_vocab *v);
RL_API rl_token rl_vocab_pad(const rl_vocab *v);
RL_API rl_token rl_vocab_nl(const rl_vocab *v);
/* Whether RL_TOKENIZE_ADD_SPECIAL adds BOS / EOS (tokenizer.ggml.add_bos_token, ...). */
RL_API bool rl_vocab_add_bos(const rl_vocab *v);
RL_API bool rl_vocab_add_eos(const rl_vocab *v);

/* Attributes of t (rl_token_attr bits); 0 for ids out of range. */
RL_API uint32_t rl_vocab_token_attr(const rl_vocab *v, rl_token t);
/* True when t ends generation (EOS, EOT, EOM and the end tokens llama.cpp knows by text). */
RL_API bool rl_vocab_is_eog(const rl_vocab *v, rl_token t);
RL_API bool rl_vocab_is_control(const rl_vocab *v, rl_token t);
/* The raw text of t as stored (byte-level BPE: GPT-2's byte alphabet, SentencePiece: U+2581
 * for spaces), NUL-terminated, living as long as v; NULL for ids out of range. len may be
 * NULL. */
RL_API const char *rl_vocab_token_text(const rl_vocab *v, rl_token t, size_t *len);
RL_API float rl_vocab_token_score(const rl_vocab *v, rl_token t);
/* The token whose raw text is exactly s[0..len), or RL_TOKEN_NULL. */
RL_API rl_token rl_vocab_find(const rl_vocab *v, const char *s, size_t len);

/* rl_tokenize flags. */
#define RL_TOKENIZE_ADD_SPECIAL 1u   /* add BOS / EOS (WordPiece: CLS and SEP) per the metadata */
#define RL_TOKENIZE_PARSE_SPECIAL 2u /* control tokens written in the text become those tokens;
                                        without it they are tokenized as plain text */

/* Tokenize text[0..len) (any bytes; invalid UTF-8 is tokenized as U+FFFD or, for
 * SentencePiece, byte tokens) into tokens[0..n_max). *n_out is the number of tokens. When
 * n_max is too small, returns RL_ERR_RANGE with *n_out the number needed (tokens may then
 * be NULL with n_max 0 to ask for the count). Other errors: RL_ERR_INVALID_ARG (NULL text
 * with len > 0, NULL n_out), RL_ERR_UNSUPPORTED (RL_VOCAB_TYPE_NONE), RL_ERR_LIMIT (len over
 * 1 GiB, or a pre-tokenizer regex hit its match limit), RL_ERR_NOMEM. Time and memory are
 * linear in len up to log factors. Thread-safe. */
RL_API rl_status rl_tokenize(const rl_vocab *v, const char *text, size_t len, uint32_t flags,
                             rl_token *tokens, size_t n_max, size_t *n_out);

/* Flags of rl_token_to_piece, rl_detokenize and the streaming detokenizer. */
#define RL_DETOK_SPECIAL 1u        /* show control and unknown tokens' text (else they give "") */
#define RL_DETOK_REMOVE_SPECIAL 2u /* drop a leading BOS / trailing EOS the vocabulary adds */
#define RL_DETOK_NO_CLEANUP 4u     /* keep the spaces clean_up_tokenization_spaces removes
                                      (" ." -> "."): byte-exact inverse of rl_tokenize */
#define RL_DETOK_KEEP_LEADING_SPACE 8u /* SentencePiece: keep the space the tokenizer put in
                                          front of the text (for text that continues a prompt) */

/* The text of one token (SentencePiece U+2581 and GPT-2 bytes decoded, byte tokens as their
 * byte; may be part of a UTF-8 character) into buf[0..size); *n_out bytes, no NUL added.
 * RL_ERR_RANGE when size is too small (*n_out = bytes needed), RL_ERR_INVALID_ARG for an id
 * out of range. Only RL_DETOK_SPECIAL is looked at. Thread-safe. */
RL_API rl_status rl_token_to_piece(const rl_vocab *v, rl_token t, uint32_t flags, char *buf,
                                   size_t size, size_t *n_out);

/* The text of tokens[0..n) into buf[0..size), as llama.cpp's llama_detokenize: one leading
 * space is removed from the first token's text where the vocabulary adds one in front
 * (SentencePiece; not when RL_DETOK_REMOVE_SPECIAL dropped a BOS first, nor after a first
 * token without text, as in llama.cpp; never with RL_DETOK_KEEP_LEADING_SPACE), and the
 * model's clean_up_tokenization_spaces is applied (unless RL_DETOK_NO_CLEANUP). *n_out
 * bytes, no NUL added. RL_ERR_RANGE when size is too small (*n_out = a size that suffices),
 * RL_ERR_INVALID_ARG for an id out of range. Thread-safe. */
RL_API rl_status rl_detokenize(const rl_vocab *v, const rl_token *tokens, size_t n,
                               uint32_t flags, char *buf, size_t size, size_t *n_out);

/* Streaming detokenizer: feed tokens one at a time, get text that is always whole UTF-8
 * characters. Bytes that end in an unfinished character are held until the next token
 * completes it; bytes that cannot become valid UTF-8 come out as U+FFFD. With
 * RL_DETOK_NO_CLEANUP the concatenated output equals rl_detokenize of all tokens pushed
 * (for valid UTF-8); clean-up of spaces, which looks across tokens, is not done. Flags as
 * rl_detokenize (RL_DETOK_REMOVE_SPECIAL drops a first BOS only). One thread at a time per
 * rl_detok; it keeps a pointer to v, which must outlive it. */
typedef struct rl_detok rl_detok;
RL_API rl_status rl_detok_create(const rl_vocab *v, uint32_t flags, rl_detok **out);
/* Add token t. *text / *len: the complete characters now available (possibly none), valid
 * until the next call on d. RL_ERR_INVALID_ARG for an id out of range (d unchanged). */
RL_API rl_status rl_detok_push(rl_detok *d, rl_token t, const char **text, size_t *len);
/* End of stream: held bytes of an unfinished character come out as U+FFFD. */
RL_API rl_status rl_detok_flush(rl_detok *d, const char **text, size_t *len);
/* Start a new text (the next token is first again). */
RL_API void rl_detok_reset(rl_detok *d);
RL_API void rl_detok_free(rl_detok *d);

/* ===== end section: tokenizer ===== */

/* ===== section: chat templates ===== */

/* A chat template (the Jinja text of `tokenizer.chat_template`), compiled by a Jinja
 * subset interpreter that renders the way Hugging Face's apply_chat_template does
 * (jinja2 sandbox, trim_blocks, lstrip_blocks, loop controls, tojson with json.dumps
 * formatting, raise_exception, strftime_now). A compiled template is immutable: any
 * number of threads may render it at once. */
typedef struct rl_chat_template rl_chat_template;

typedef struct rl_chat_template_params {
    bool add_generation_prompt;
    const char *bos_token;  /* NULL: not passed (undefined in the template) */
    const char *eos_token;  /* NULL: not passed */
    const char *extra_json; /* NULL, or a JSON object whose members become variables */
    int64_t now;            /* strftime_now's clock: seconds since the epoch, shown as the
                             * UTC wall-clock time; < 0: the current local time */
    /* Limits against hostile templates (0: the default). Past one, rendering stops with
     * RL_ERR_LIMIT and a message. */
    uint64_t max_steps;     /* nodes run plus bulk work; default 200,000,000 (~1-2 s) */
    size_t max_memory;      /* bytes of values alive at once; default 256 MiB */
    size_t max_output;      /* bytes of any one string, the output included; default 64 MiB */
    int max_depth;          /* nested macro calls; default 100 */
} rl_chat_template_params;

/* add_generation_prompt true, no bos/eos, no extras, now = -1, default limits. */
RL_API rl_chat_template_params rl_chat_template_default_params(void);

/* Compile len bytes of src (UTF-8). On failure *out is NULL and err holds
 * "line L, column C: message": RL_ERR_BAD_FILE for syntax errors (an unknown filter or
 * test outside an if, as jinja2), RL_ERR_UNSUPPORTED for constructs this interpreter
 * does not implement (extends, include, import, recursive loops, ...), RL_ERR_LIMIT for
 * nesting deeper than 200, RL_ERR_NOMEM. */
RL_API rl_status rl_chat_template_compile(const char *src, size_t len, rl_chat_template **out,
                                          char *err, size_t err_size);

/* Render t with messages_json (a JSON array, as text) and tools_json (JSON text, or NULL
 * for tools=None); documents is None. On success *out is a NUL-terminated string the
 * caller frees with rl_free_string, *out_len (when not NULL) its length. On failure *out
 * is NULL and err holds "line L: message": RL_ERR_INVALID_ARG for bad JSON and for errors
 * the template raises (raise_exception's text, or Python's error such as "'NoneType'
 * object is not iterable"), RL_ERR_LIMIT past a limit, RL_ERR_UNSUPPORTED for features
 * not implemented, RL_ERR_NOMEM. p may be NULL (defaults). Reentrant; the thread needs
 * 512 KiB of stack for the worst a template may nest (the limits stop it there). */
RL_API rl_status rl_chat_template_render(const rl_chat_template *t, const char *messages_json,
                                         const char *tools_json,
                                         const rl_chat_template_params *p, char **out,
                                         size_t *out_len, char *err, size_t err_size);

RL_API void rl_chat_template_free(rl_chat_template *t);

/* Free a string the library returned (rl_chat_template_render's output). NULL is a no-op. */
RL_API void rl_free_string(char *s);

/* The Jinja text of g's chat template: tokenizer.chat_template when name is NULL, "" or
 * "default", else tokenizer.chat_template.<name> (the named variants some files carry and
 * list in tokenizer.chat_templates, e.g. "tool_use", "rag"). *src is NUL-terminated, *len
 * (when len is not NULL) its length; both live as long as g. Returns RL_ERR_NOT_FOUND when
 * the key is absent, RL_ERR_BAD_FILE when its value is not a string, RL_ERR_INVALID_ARG for
 * NULL g or src or a name over 200 bytes. Thread-safe. */
RL_API rl_status rl_chat_template_source(const rl_gguf *g, const char *name, const char **src,
                                         size_t *len);

/* The ChatML template ("<|im_start|>ROLE\nCONTENT<|im_end|>\n" per message, then
 * "<|im_start|>assistant\n" as the generation prompt): the fallback for a model whose file
 * carries no chat template. A static string. */
RL_API const char *rl_chat_template_chatml(void);

/* ===== end section: chat templates ===== */

/* ===== section: sampling ===== */

/* A sampler turns a vector of n_vocab logits into one token id, as llama.cpp's sampler
 * chain does (src/llama-sampler.cpp, common/sampling.cpp), in this order:
 *
 *   1. logit bias (added; -INFINITY bans a token)
 *   2. repetition / frequency / presence penalties over the last penalty_last_n accepted
 *      tokens: a token seen c > 0 times has its logit divided by repeat_penalty when
 *      positive, multiplied by it when <= 0, then frequency_penalty * c + presence_penalty
 *      subtracted (llama.cpp's arithmetic)
 *   3. DRY ("don't repeat yourself", llama.cpp / koboldcpp's algorithm): a token that would
 *      extend a repeat of length L >= dry_allowed_length within the last dry_penalty_last_n
 *      tokens loses dry_multiplier * dry_base^(L - dry_allowed_length); repeats do not
 *      reach across a sequence breaker
 *   4. the allowed mask (grammar), if any: banned tokens drop out
 *   5. the filters, by default in llama.cpp's order top-k, typical-p, top-p, min-p, XTC,
 *      temperature (params.order may permute them)
 *   6. the final choice: greedy when temperature <= 0, mirostat v2 when mirostat == 2
 *      (the filters of step 5 are then skipped, as in llama.cpp: temperature, then
 *      mirostat), else a draw from the softmax of what is left.
 *
 * Tokens whose logit is -INFINITY after steps 1-4 are never chosen. Ties between equal
 * logits are broken toward the lower token id everywhere (greedy, top-k, sorting), so a
 * result never depends on the order of an unstable sort.
 *
 * Randomness comes from xoshiro256** (Blackman and Vigna) seeded through splitmix64 from
 * the 64-bit seed; float math uses the library's own exp/log (no libm, no fused
 * multiply-add): the same seed, parameters, logits and accepted tokens give the same
 * tokens on every machine and build.
 *
 * No allocation happens after rl_sampler_create: every buffer is sized to n_vocab there.
 * A sampler is used by one thread at a time; different samplers are independent. */
typedef struct rl_sampler rl_sampler;

/* Seed value that asks for a fresh random seed from the operating system at create and at
 * every rl_sampler_reset (llama.cpp's LLAMA_DEFAULT_SEED behaviour). */
#define RL_SAMPLER_SEED_RANDOM UINT64_MAX
/* Upper bounds checked by rl_sampler_params_validate. */
#define RL_SAMPLER_MAX_WINDOW 1048576   /* penalty_last_n, dry_penalty_last_n, allowed len */
#define RL_SAMPLER_MAX_TOP_LOGPROBS 256 /* top_logprobs */
#define RL_SAMPLER_MAX_BREAKERS 1024    /* n_dry_sequence_breakers */

/* The filters of step 5, for params.order. */
typedef enum rl_sampler_stage {
    RL_SAMPLER_STAGE_TOP_K = 1,
    RL_SAMPLER_STAGE_TYPICAL_P = 2,
    RL_SAMPLER_STAGE_TOP_P = 3,
    RL_SAMPLER_STAGE_MIN_P = 4,
    RL_SAMPLER_STAGE_XTC = 5,
    RL_SAMPLER_STAGE_TEMPERATURE = 6,
    RL_SAMPLER_STAGE_COUNT = 6
} rl_sampler_stage;

/* Which distribution log-probabilities describe (see rl_sampler_logprobs). */
typedef enum rl_sampler_logprobs_mode {
    /* log-softmax of the logits after bias, penalties and DRY (steps 1-3), before the mask,
     * the filters and temperature: the model's distribution as the user's penalties and
     * bias shape it, independent of how a grammar is checked (the default) */
    RL_SAMPLER_LOGPROBS_PROCESSED = 0,
    /* log-softmax of the logits as given (vLLM's default "raw_logprobs") */
    RL_SAMPLER_LOGPROBS_RAW = 1
} rl_sampler_logprobs_mode;

/* An additive bias for one token (OpenAI's logit_bias). Several entries for one token add. */
typedef struct rl_logit_bias {
    rl_token token; /* 0 <= token < n_vocab */
    float bias;     /* finite, or -INFINITY to ban the token */
} rl_logit_bias;

/* Every knob, with its range; rl_sampler_default_params() gives the value in brackets, which
 * disables the stage or leaves logits unchanged: a default sampler draws from the model's
 * softmax at temperature 1. llama.cpp's command-line defaults are temperature 0.8, top_k
 * 40, top_p 0.95, min_p 0.05. Windows of -1 ("the whole context" in llama.cpp) are the
 * caller's to replace by the context size. */
typedef struct rl_sampler_params {
    uint64_t seed;           /* any; RL_SAMPLER_SEED_RANDOM: from the OS [RANDOM] */
    float temperature;       /* >= 0; 0: greedy (argmax, ties to the lowest id) [1] */
    int32_t top_k;           /* >= 0; keep the k most likely; 0: off [0] */
    float top_p;             /* [0, 1]; keep the smallest most-likely set whose probability
                              * reaches top_p (the token that crosses it is kept); 1: off [1] */
    float min_p;             /* [0, 1]; drop tokens with p < min_p * p_max; 0: off [0] */
    float typical_p;         /* [0, 1]; locally typical sampling (Meister et al. 2022);
                              * 1: off [1] */
    int32_t min_keep;        /* >= 0; top-p, min-p, typical-p and XTC keep at least this
                              * many tokens [0] */
    int32_t penalty_last_n;  /* [0, RL_SAMPLER_MAX_WINDOW]; tokens the penalties look at;
                              * 0: penalties off [64] */
    float repeat_penalty;    /* > 0, finite; 1: off [1] */
    float frequency_penalty; /* finite; subtracted once per occurrence; 0: off [0] */
    float presence_penalty;  /* finite; subtracted once if present; 0: off [0] */
    float dry_multiplier;    /* >= 0, finite; 0: DRY off [0] */
    float dry_base;          /* >= 0, finite; below 1 DRY is off (as llama.cpp) [1.75] */
    int32_t dry_allowed_length;  /* [0, RL_SAMPLER_MAX_WINDOW] [2] */
    int32_t dry_penalty_last_n;  /* [0, RL_SAMPLER_MAX_WINDOW]; 0: DRY off [64] */
    /* Strings that end a repeat for DRY (non-empty; only the first 40 bytes count, as in
     * llama.cpp). NULL: llama.cpp's defaults "\n", ":", "\"", "*" (ignored when the
     * sampler has no vocabulary); non-NULL with n = 0: none. Copied at create. [NULL, 0] */
    const char *const *dry_sequence_breakers;
    int32_t n_dry_sequence_breakers; /* [0, RL_SAMPLER_MAX_BREAKERS] */
    float xtc_probability;   /* [0, 1]; chance that XTC ("exclude top choices") acts on a
                              * step; 0: off [0] */
    float xtc_threshold;     /* [0, 1]; XTC removes every token with p >= threshold but the
                              * least likely of them; above 0.5 XTC is off [0.1] */
    int32_t mirostat;        /* 0: off, 2: mirostat v2 (Basu et al. 2021); 1 (v1) is not
                              * supported [0] */
    float mirostat_tau;      /* >= 0, finite; target surprise in bits [5] */
    float mirostat_eta;      /* >= 0, finite; learning rate [0.1] */
    const rl_logit_bias *logit_bias; /* n_logit_bias entries, copied at create [NULL] */
    int32_t n_logit_bias;    /* >= 0 [0] */
    bool logprobs;           /* compute the chosen token's log-probability [false] */
    int32_t top_logprobs;    /* [0, RL_SAMPLER_MAX_TOP_LOGPROBS]; also the n most likely;
                              * needs logprobs [0] */
    rl_sampler_logprobs_mode logprobs_mode; /* [PROCESSED] */
    /* Order of the filters of step 5: n_order distinct stages; the stages left out do not
     * run. n_order 0: the default order (all six). [0] */
    int32_t n_order;         /* [0, RL_SAMPLER_STAGE_COUNT] */
    rl_sampler_stage order[RL_SAMPLER_STAGE_COUNT];
} rl_sampler_params;

RL_API rl_sampler_params rl_sampler_default_params(void);

/* Check p for a vocabulary of n_vocab tokens (n_vocab >= 1). RL_OK, or RL_ERR_INVALID_ARG
 * with err (when err_size > 0) naming the first offending field and value, e.g.
 * "top_p must be in [0, 1], got 1.5". Thread-safe. */
RL_API rl_status rl_sampler_params_validate(const rl_sampler_params *p, int32_t n_vocab,
                                            char *err, size_t err_size);

/* A sampler for logits of n_vocab entries. vocab (NULL allowed) gives token text for the
 * DRY sequence breakers; it is used only during this call. n_vocab may exceed
 * rl_vocab_n_tokens(vocab) (padded output layers); breakers then see the vocabulary's
 * tokens only. p NULL means the defaults. Errors: RL_ERR_INVALID_ARG (as
 * rl_sampler_params_validate; also explicit breakers without a vocabulary), RL_ERR_NOMEM;
 * *out is then NULL and err holds a message. With DRY on and a vocabulary, create reads
 * the text of every token once (10-20 ms for 128k tokens); rl_sampler_clone copies the
 * result without reading the vocabulary again. */
RL_API rl_status rl_sampler_create(const rl_sampler_params *p, int32_t n_vocab,
                                   const rl_vocab *vocab, rl_sampler **out, char *err,
                                   size_t err_size);
RL_API void rl_sampler_free(rl_sampler *s);

/* A copy of s in its current state (history, RNG, mirostat mu), for forks (n > 1). */
RL_API rl_status rl_sampler_clone(const rl_sampler *s, rl_sampler **out);
/* Restart the random stream of s from seed (RL_SAMPLER_SEED_RANDOM: from the OS). The
 * history is kept. Give each fork its own seed. */
RL_API void rl_sampler_reseed(rl_sampler *s, uint64_t seed);
/* Forget the accepted tokens, set mirostat's mu back to 2 * tau and restart the random
 * stream from the seed of the params (a new random seed if it was RL_SAMPLER_SEED_RANDOM). */
RL_API void rl_sampler_reset(rl_sampler *s);
/* The seed in use (the one drawn from the OS when RL_SAMPLER_SEED_RANDOM was asked for). */
RL_API uint64_t rl_sampler_seed(const rl_sampler *s);

/* Allowed-token masks are bit sets of n_vocab bits: token t is allowed when bit (t & 7) of
 * byte mask[t >> 3] is set ((n_vocab + 7) / 8 bytes). */
static inline bool rl_mask_test(const uint8_t *mask, rl_token t) {
    return (mask[t >> 3] >> (t & 7)) & 1;
}

/* Choose the next token from logits[0..n_vocab) (read only; -INFINITY entries are never
 * chosen; NaN and +INFINITY are refused) into *token_out. allowed is NULL or an allowed
 * mask, applied before the filters (the grammar-first order). The token is not accepted:
 * call rl_sampler_accept (the caller may still reject it). Errors: RL_ERR_INVALID_ARG for
 * NULL arguments, a NaN or +INFINITY logit (the message names its index) and when no token
 * is left to choose (every token masked or -INFINITY); *token_out is then RL_TOKEN_NULL and
 * rl_sampler_errmsg says why. No allocation. */
RL_API rl_status rl_sampler_sample(rl_sampler *s, const float *logits, const uint8_t *allowed,
                                   rl_token *token_out);

/* A constraint checked lazily (a grammar): allows() answers for one token; fill_mask()
 * writes the whole allowed mask ((n_vocab + 7) / 8 bytes, every bit) and returns RL_OK or
 * an error, which rl_sampler_sample_constrained passes on. */
typedef struct rl_sampler_constraint {
    bool (*allows)(void *user, rl_token t);
    rl_status (*fill_mask)(void *user, uint8_t *mask, int32_t n_vocab);
    void *user;
} rl_sampler_constraint;

/* Sample without the constraint first; when c->allows() accepts the token it is the
 * answer, else fill_mask() is called once and the token is drawn again, with the mask
 * applied first and a fresh random number (llama.cpp's grammar rejection sampling: the
 * full mask is computed only on rejection). Log-probabilities, which do not see the mask,
 * are those of the first pass; mirostat's mu follows the token returned. c NULL is
 * rl_sampler_sample without a mask. */
RL_API rl_status rl_sampler_sample_constrained(rl_sampler *s, const float *logits,
                                               const rl_sampler_constraint *c,
                                               rl_token *token_out);

/* Record token t as the newest of the sequence (prompt tokens too, when penalties should
 * see them): it enters the penalty and DRY windows. RL_ERR_INVALID_ARG when t is out of
 * [0, n_vocab). */
RL_API rl_status rl_sampler_accept(rl_sampler *s, rl_token t);

/* Log-probabilities of the last successful sample (params.logprobs set), natural log,
 * under the distribution params.logprobs_mode names (may be -INFINITY for a banned token):
 * *chosen for the token returned, and the min(top_logprobs, n_top_max) most likely tokens
 * in top[] (descending; ties to the lower id), their count in *n_top. chosen, top and
 * n_top may be NULL when not wanted. RL_ERR_INVALID_ARG when logprobs are off or no sample
 * has succeeded since create or reset. */
typedef struct rl_token_logprob {
    rl_token token;
    float logprob;
} rl_token_logprob;
RL_API rl_status rl_sampler_logprobs(const rl_sampler *s, rl_token_logprob *chosen,
                                     rl_token_logprob *top, int32_t n_top_max,
                                     int32_t *n_top);

/* The last error's message ("" when none); valid until the next call on s. */
RL_API const char *rl_sampler_errmsg(const rl_sampler *s);

/* ===== end section: sampling ===== */

/* ===== section: model quantization (mixes, quantize a GGUF model, synthetic models) ===== */

/* One tensor written, as reported to a progress callback (after its data is written;
 * pointers valid during the call only). */
typedef struct rl_quantize_event {
    int64_t index;          /* 0-based position in the output file */
    int64_t count;          /* tensors in the output file */
    const char *name;
    uint32_t n_dims;
    const int64_t *ne;      /* n_dims sizes, ne[0] the row length */
    rl_type type_in;        /* F32 for generated (synthetic) weights */
    rl_type type_out;
    bool converted;         /* false: copied unchanged */
    bool fallback;          /* the row length forced type_out instead of the mix's choice */
    size_t bytes_in;        /* size of the tensor in type_in */
    size_t bytes_out;
} rl_quantize_event;

/* Called on the calling thread of rl_quantize_file / rl_synth_model, once per tensor. */
typedef void (*rl_quantize_progress_fn)(void *user, const rl_quantize_event *ev);

typedef struct rl_quantize_params {
    /* What to write, as llama-quantize names it (case-insensitive): a mix ("Q4_K_M",
     * "Q3_K_S", "IQ2_XS", "MXFP4_MOE", "Q8_0", "F16", ...; rl_quantize_mix_name lists
     * them; "Q3_K"/"Q4_K"/"Q5_K" are the _M mixes; "COPY" converts nothing), or any other
     * weight type ("NVFP4", "MXFP4"), which every quantizable tensor then gets. */
    const char *type;
    /* NULL, or an importance matrix from llama-imatrix (GGUF, or the legacy .dat format).
     * Required by the mixes whose tensors are of types that need one
     * (rl_type_needs_imatrix: IQ1_S, IQ1_M, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS; and Q2_K_S). */
    const char *imatrix_path;
    int n_threads;          /* <= 0: rl_cpu_physical_cores() */
    bool allow_requantize;  /* convert tensors that are quantized already (lossy twice) */
    bool pure;              /* no mix rules: every quantizable tensor gets the mix's base type */
    rl_type output_type;    /* RL_TYPE_COUNT: as the mix says; else output.weight's type */
    rl_type token_embd_type;/* RL_TYPE_COUNT: as the mix says; else token_embd.weight's type */
    rl_quantize_progress_fn progress; /* NULL: no reports */
    void *progress_user;
} rl_quantize_params;

/* type "Q8_0", no imatrix, all cores, no requantize, not pure, types from the mix. */
RL_API rl_quantize_params rl_quantize_default_params(void);

/* The i-th name rl_quantize_params.type accepts as a mix (i from 0), in llama-quantize's
 * order; NULL past the end. */
RL_API const char *rl_quantize_mix_name(size_t i);

/* Quantize the GGUF model in_path into out_path with the per-tensor types llama.cpp's
 * llama-quantize chooses for the mix, the same tensor order (by layer, then name) and
 * the same metadata (the input's, with general.file_type and general.quantization_version
 * = 2 set, and quantize.imatrix.* when an imatrix is used). Tensors are read from the
 * mapped input and streamed to the output (written atomically: a temporary file, then a
 * rename), so memory use does not grow with the model. Tensors whose type does not change
 * are copied byte for byte; without an imatrix, the bytes of converted tensors are those
 * of ggml's reference quantizers. p may be NULL (defaults).
 * Errors, with a message in err: RL_ERR_INVALID_ARG (out_path is in_path or the same file;
 * unknown or unusable type; a type that needs an imatrix and none was given (the message
 * says so and names --imatrix), or the imatrix lacks the tensor or has the wrong size;
 * requantizing without allow_requantize; non-finite weights), RL_ERR_UNSUPPORTED (a weight
 * type that cannot be a target, e.g. Q8_K), RL_ERR_BAD_FILE (input or imatrix
 * malformed), RL_ERR_IO, RL_ERR_NOMEM. */
RL_API rl_status rl_quantize_file(const char *in_path, const char *out_path,
                                  const rl_quantize_params *p, char *err, size_t err_size);

/* Synthetic models: random weights at the shape of a real model, for benchmarks without
 * a download. */
typedef struct rl_synth_params {
    const char *shape;      /* rl_synth_shape_name(i): "llama3-8b", "tiny", ... */
    const char *type;       /* as rl_quantize_params.type (a mix or a type); default "F16".
                             * Types that need an importance matrix get a uniform one. */
    const char *vocab_path; /* NULL: a built-in byte-level tokenizer (GPT-2 byte tokens,
                             * BOS, EOS, padded with unused tokens to the shape's vocabulary
                             * size); else a GGUF whose tokenizer.* metadata is copied and
                             * whose token count sets the vocabulary size */
    uint64_t seed;          /* same seed, shape and type: the same file */
    int n_threads;          /* <= 0: rl_cpu_physical_cores() */
    rl_quantize_progress_fn progress;
    void *progress_user;
} rl_synth_params;

/* shape "tiny", type "F16", built-in tokenizer, seed 42, all cores. */
RL_API rl_synth_params rl_synth_default_params(void);

/* The i-th shape name (i from 0), NULL past the end; *desc (may be NULL) a one-line
 * description ("Llama 3.1 8B: 32 layers, n_embd 4096, ..."). */
RL_API const char *rl_synth_shape_name(size_t i, const char **desc);

/* Write a model of the shape with random weights (deterministic for the seed) to
 * out_path: llama.cpp's tensor names and shapes for the architecture and the metadata
 * its loader reads, weights converted while streaming (a row chunk at a time, so any
 * shape fits in memory), tensors in the order rl_quantize_file writes. Errors as
 * rl_quantize_file, plus RL_ERR_NOT_FOUND for an unknown shape. */
RL_API rl_status rl_synth_model(const char *out_path, const rl_synth_params *p, char *err,
                                size_t err_size);

/* ===== end section: model quantization ===== */

/* ===== section: model and inference ===== */

/* A model: the weights of a GGUF file (mapped read-only, never copied), its
 * hyperparameters and its vocabulary. Immutable after load: any number of contexts, on
 * any threads, may run the same model at once.
 *
 * Architectures (general.architecture): "llama" (Llama 1/2/3, Mistral, and Mixtral-style
 * mixture of experts with llama.expert_count), "qwen2", "qwen3", "qwen2moe" (with its
 * shared expert), "gemma", "gemma2" (soft-capping, alternating sliding-window layers,
 * post-norms) and "phi3" (fused projections); RoPE in normal or NeoX order with llama3
 * rope_freqs and linear / YaRN / LongRoPE scaling. Other values are refused
 * (RL_ERR_UNSUPPORTED, the message names the architecture). */
typedef struct rl_model rl_model;

typedef struct rl_model_params {
    int n_threads;  /* default n_threads of contexts on this model; <= 0: physical cores */
    bool use_mlock; /* lock the mapped weights in RAM (mlock), so that the kernel cannot
                       evict pages left idle (and the CPU copies of repacked weights, see
                       rl_model_load); failing to lock is an error (RL_ERR_IO, the
                       message names RLIMIT_MEMLOCK) */
    const char *device; /* where contexts on the model compute: "cpu" (NULL too, the
                           default) or "cuda" / "cuda:N" (GPU N, default 0: the weights are
                           copied to it once at load). RL_ERR_UNSUPPORTED when the library
                           was built without CUDA or there is no such GPU (the message
                           says which); RL_ERR_INVALID_ARG for another string. Only
                           the string's value is kept. Tensor types the device has no kernel for are converted at load to the
                           nearest type it has (IQ1-IQ3, TQ, Q1_0/Q2_0 to Q4_K; MXFP4, NVFP4,
                           Q8_1 to Q8_0; F16 when the row length fits no block), with a
                           warning on stderr naming the types and the tensor count. */
    float gpu_mem;      /* on a GPU: the fraction (0, 1] of its memory the model may take
                           for weights, KV caches and scratch; 0: no cap (default). The
                           weights alone must fit (RL_ERR_NOMEM, the message gives the
                           sizes); rl_model_device_budget sizes KV caches within it.
                           RL_ERR_INVALID_ARG out of range or set with device "cpu". */
} rl_model_params;

/* n_threads 0, no mlock, device "cpu". */
RL_API rl_model_params rl_model_default_params(void);

/* Load the model at path. p may be NULL (defaults). On the CPU, weights whose type and
 * shape have a faster layout for the active ISA's kernels (Q4_0 with a multiple of 512
 * columns on AVX-512 VNNI) are copied into it at load, and their file pages are released,
 * so memory holds one copy; results are the same bit for bit. The environment variable
 * RUVLLM_CPU_REPACK=0, read at each load, keeps every weight in the file's layout.
 * On failure *out is NULL and err holds
 * one line: RL_ERR_BAD_FILE (malformed GGUF; a missing or mistyped metadata key or tensor,
 * a tensor of the wrong shape, or one the architecture does not use: the message names
 * it), RL_ERR_UNSUPPORTED (architecture, tokenizer, tensor type or rope scaling type not
 * implemented), RL_ERR_IO (cannot open, map or lock), RL_ERR_NOMEM. */
RL_API rl_status rl_model_load(const char *path, const rl_model_params *p, rl_model **out,
                               char *err, size_t err_size);
/* Free m. Every context made from m must have been freed first. */
RL_API void rl_model_free(rl_model *m);

/* general.architecture ("llama"). */
RL_API const char *rl_model_arch(const rl_model *m);
RL_API int32_t rl_model_n_vocab(const rl_model *m);   /* rows of the logits */
RL_API int32_t rl_model_n_ctx_train(const rl_model *m);
RL_API int32_t rl_model_n_embd(const rl_model *m);
RL_API int32_t rl_model_n_layer(const rl_model *m);
/* Bytes of all weight tensors (what a decode step reads). */
RL_API uint64_t rl_model_weight_bytes(const rl_model *m);
/* The model's vocabulary (tokenizer section), owned by m. */
RL_API const rl_vocab *rl_model_vocab(const rl_model *m);
/* The underlying file, for metadata (chat template, ...), owned by m. */
RL_API const rl_gguf *rl_model_gguf(const rl_model *m);

/* Checks a device name without loading a model: "cpu" (and NULL) always pass; "cuda" /
 * "cuda:N" pass when this build has the CUDA backend and GPU N exists. RL_ERR_INVALID_ARG
 * (not a device name) or RL_ERR_UNSUPPORTED (no CUDA in this build, no driver or GPU, N
 * past the last GPU), with a message. Thread-safe. */
RL_API rl_status rl_device_check(const char *device, char *err, size_t err_size);

/* How a model on a GPU spends the device memory rl_model_params.gpu_mem grants: what the
 * weights take and how many tokens of KV cache fit beside them and one context's scratch,
 * so that a caller can size contexts (n_ctx) or an engine (kv_mem) before creating them. */
typedef struct rl_device_budget {
    char device[128];        /* "cuda:0 (NVIDIA H100 80GB HBM3)" */
    uint64_t total;          /* bytes of device memory */
    uint64_t free;           /* bytes free on the device now */
    uint64_t budget;         /* gpu_mem * total (total when gpu_mem is 0) */
    uint64_t weights;        /* bytes the model holds on the device (converted weights and
                                float vectors included) */
    uint64_t workspace;      /* scratch of one context passing n_batch tokens at a time */
    uint64_t kv_token_bytes; /* KV cache bytes per token, all layers, K and V */
    int64_t kv_tokens;       /* tokens of KV that fit: (min(budget - weights, free) -
                                workspace) / kv_token_bytes, at least 0 */
} rl_device_budget;

/* Fill *out for contexts of cache type kv_type passing n_batch tokens at a time (0: 512).
 * RL_ERR_INVALID_ARG when m runs on the CPU or kv_type is not a cache type (F16, F32,
 * Q8_0), with a message. Thread-safe with other readers of m. */
RL_API rl_status rl_model_device_budget(const rl_model *m, rl_type kv_type, int32_t n_batch,
                                        rl_device_budget *out, char *err, size_t err_size);

/* Device-to-device copy bandwidth of the GPU named by device ("cuda", "cuda:N") in bytes
 * per second, counting bytes read and written (best of 5 copies of 1 GiB; needs 2 GiB
 * free): the floor a benchmark of a model on that GPU compares with. 0 for "cpu", other
 * names, or a GPU that is not there. Takes about a second. */
RL_API double rl_device_copy_bandwidth(const char *device);

/* An inference context: the KV cache of up to n_seq_max sequences sharing n_ctx cells,
 * the scratch memory of a forward pass and a thread pool. All memory is allocated at
 * creation, sized by a dry run of the largest batch: rl_decode allocates nothing. One
 * thread at a time may use a context. */
typedef struct rl_context rl_context;

typedef struct rl_context_params {
    int32_t n_ctx;         /* KV cells shared by all sequences (tokens held at once);
                              0: the model's n_ctx_train, at most 4096 */
    int32_t n_batch;       /* most tokens per forward pass; rl_decode splits larger
                              batches (default 512) */
    int32_t n_seq_max;     /* sequence ids are 0..n_seq_max-1; 1..64 (default 1) */
    int32_t n_outputs_max; /* most tokens of one rl_decode that ask for logits: the logits
                              buffer is n_outputs_max * n_vocab floats; 0: n_seq_max */
    rl_type kv_type;       /* KV cache type: RL_TYPE_F16 (default), RL_TYPE_F32 or
                              RL_TYPE_Q8_0 (head_dim a multiple of 32) */
    int n_threads;         /* <= 0: the model's n_threads */
} rl_context_params;

RL_API rl_context_params rl_context_default_params(void);

/* Create a context on m (which must outlive it). p may be NULL (defaults). Errors, with a
 * message in err: RL_ERR_INVALID_ARG (a parameter out of range: the message names it),
 * RL_ERR_UNSUPPORTED (kv_type), RL_ERR_NOMEM. */
RL_API rl_status rl_context_create(const rl_model *m, const rl_context_params *p,
                                   rl_context **out, char *err, size_t err_size);
RL_API void rl_context_free(rl_context *ctx);
/* The message of the last failed call on ctx ("" when none); valid until the next call. */
RL_API const char *rl_context_errmsg(const rl_context *ctx);
RL_API int32_t rl_context_n_ctx(const rl_context *ctx);
RL_API const rl_model *rl_context_model(const rl_context *ctx);

/* Tokens for one forward pass: token i of sequence seq_id[i] at position pos[i]. Tokens
 * of one sequence come in increasing position order, after the positions it holds. */
typedef struct rl_batch {
    int32_t n_tokens;
    const rl_token *token;  /* [n_tokens] */
    const int32_t *pos;     /* [n_tokens], or NULL: each token follows the last position
                               of its sequence (in the cache or earlier in the batch) */
    const int32_t *seq_id;  /* [n_tokens], or NULL: all sequence 0 */
    const int8_t *logits;   /* [n_tokens] nonzero: compute this token's logits; or NULL:
                               the last token only */
} rl_batch;

/* A batch of n tokens of sequence 0 continuing it, logits for the last token. */
RL_API rl_batch rl_batch_get(const rl_token *tokens, int32_t n);

/* Run the model over the batch: store the tokens' keys and values in the KV cache and
 * compute the logits of the flagged tokens. Everything is checked before the cache
 * changes; on error the cache is as before and rl_context_errmsg says why:
 * RL_ERR_INVALID_ARG (token id, sequence id or position out of range, positions of a
 * sequence not increasing or not after those it holds), RL_ERR_LIMIT (the context is
 * full: more tokens than free cells; or more flagged tokens than n_outputs_max).
 * Batches larger than n_batch run as several passes. */
RL_API rl_status rl_decode(rl_context *ctx, const rl_batch *batch);

/* The n_vocab logits of token i of the last rl_decode's batch (i < 0: the -i-th flagged
 * token from the end, so -1 is the last), or NULL when that token was not flagged or i is
 * out of range. Valid until the next rl_decode or rl_context_free. */
RL_API const float *rl_get_logits(rl_context *ctx, int32_t i);

/* Argmax-only decoding (default off). When on, rl_decode gives each flagged token only
 * the id of its highest logit (rl_get_argmax) and rl_get_logits returns NULL: on a GPU
 * the pick runs on the device and one id per token comes back instead of n_vocab floats
 * (greedy decoding at the device's speed). Turn it off before a decode whose logits a
 * sampler or grammar reads. Takes effect at the next rl_decode. */
RL_API void rl_context_set_argmax_only(rl_context *ctx, bool on);
/* The id of the highest logit of token i of the last rl_decode's batch (i as
 * rl_get_logits takes it; ties: the lowest id; NaN never wins; 0 when no logit is above
 * -inf), with argmax-only on or off; -1 when that token was not flagged or i is out of
 * range. */
RL_API rl_token rl_get_argmax(rl_context *ctx, int32_t i);

/* Sampling on the device (default off). With a sampler set, rl_decode has the backend draw
 * each flagged token's next token with that sampler's settings, and only the ids come back
 * (rl_get_sampled); rl_get_logits and rl_get_argmax return NULL / -1. Each non-greedy row
 * takes the sampler's next random number at rl_decode, in row order, where a host-side
 * rl_sampler_sample after the decode would take it, so a seed gives the same tokens either
 * way up to rounding at a draw's boundary. The caller still passes each token to
 * rl_sampler_accept before the next rl_decode (penalties read its history). Returns false,
 * and leaves device sampling off, when smp is NULL, the backend cannot sample (the CPU), or
 * the sampler's chain is not one the device runs: logit bias, DRY, typical-p, XTC,
 * mirostat, logprobs, or filters in another order than top-k, top-p, min-p, temperature.
 * smp must outlive the setting; rl_context_set_sampler(ctx, NULL) turns it off. Takes
 * effect at the next rl_decode. */
RL_API bool rl_context_set_sampler(rl_context *ctx, rl_sampler *smp);
/* The token drawn on the device for token i of the last rl_decode's batch (i as
 * rl_get_logits takes it); -1 when sampling on the device was off for that decode, the
 * token was not flagged, or every logit of its row was -inf. */
RL_API rl_token rl_get_sampled(rl_context *ctx, int32_t i);

/* KV cache. Positions are half-open ranges [p0, p1); p0 < 0 means 0, p1 < 0 means no
 * upper bound. */
/* Remove everything. */
RL_API void rl_kv_clear(rl_context *ctx);
/* Remove sequence seq_id's tokens in [p0, p1) (seq_id < 0: of every sequence). Cells no
 * sequence holds any more become free. RL_ERR_INVALID_ARG for a bad seq_id. */
RL_API rl_status rl_kv_seq_remove(rl_context *ctx, int32_t seq_id, int32_t p0, int32_t p1);
/* Make sequence dst hold src's tokens in [p0, p1) as well (sharing the cells: nothing is
 * copied), after removing what dst held in that range. Forks a prompt into several
 * continuations. */
RL_API rl_status rl_kv_seq_copy(rl_context *ctx, int32_t src, int32_t dst, int32_t p0,
                                int32_t p1);
/* Largest position sequence seq_id holds, -1 when it holds none (or seq_id is bad). */
RL_API int32_t rl_kv_seq_pos_max(const rl_context *ctx, int32_t seq_id);
/* Cells in use (by any sequence). */
RL_API int32_t rl_kv_n_used(const rl_context *ctx);

/* Perplexity as llama.cpp's llama-perplexity computes it: tokens (the whole text,
 * tokenized with RL_TOKENIZE_ADD_SPECIAL) are cut into n_tokens / n_ctx non-overlapping
 * windows (the tail dropped); each is evaluated from an empty cache with its first token
 * replaced by BOS when the vocabulary adds BOS, and only its second half is scored (the
 * logits at positions n_ctx/2 .. n_ctx-2 against the next token). PPL = exp(mean NLL),
 * ppl_err = PPL * sqrt(var(NLL) / (count - 1)). */
typedef struct rl_perplexity_result {
    double ppl, ppl_err;
    double nll;        /* mean negative log-likelihood, nats per token */
    int32_t n_windows; /* windows done */
    int64_t n_scored;  /* tokens scored */
} rl_perplexity_result;

/* Called after each window with the figures so far (from the calling thread). */
typedef void (*rl_perplexity_progress_fn)(const rl_perplexity_result *so_far,
                                          int32_t n_windows_total, void *user);

typedef struct rl_perplexity_params {
    int32_t n_ctx;   /* window length, >= 4 [512] */
    int32_t n_batch; /* tokens per forward pass, 1..n_ctx; 0 or more than n_ctx: n_ctx [0] */
    rl_type kv_type; /* [RL_TYPE_F16] */
    int n_threads;   /* <= 0: the model's [0] */
    rl_perplexity_progress_fn progress; /* NULL: none [NULL] */
    void *user;
} rl_perplexity_params;

RL_API rl_perplexity_params rl_perplexity_default_params(void);

/* Perplexity of tokens[0..n_tokens) under m with p (NULL: defaults), in a context of its
 * own (n_ctx cells, logits of min(n_batch, n_ctx/2) tokens at a time). Errors, with err:
 * RL_ERR_INVALID_ARG (n_ctx < 4, fewer than 2 * n_ctx tokens as llama.cpp requires, a
 * token out of range), what rl_context_create and rl_decode return. *out holds the
 * windows done so far even on error. */
RL_API rl_status rl_perplexity(const rl_model *m, const rl_token *tokens, size_t n_tokens,
                               const rl_perplexity_params *p, rl_perplexity_result *out,
                               char *err, size_t err_size);

/* ===== end section: model and inference ===== */

/* ===== section: engine (continuous batching over a paged KV cache) ===== */

/* An engine serves many generation requests at once on one model: one engine thread runs
 * the step loop (the continuous-batching scheduler picks, each step, the decode tokens of
 * every running sequence and chunks of waiting prompts under a token budget; one forward
 * pass computes them over a paged KV cache with a prefix cache shared by all requests),
 * samples each sequence with its own sampler, detokenizes, applies stop strings and
 * end-of-generation tokens, and hands the results to the submitting threads through a
 * queue per request. Any number of threads may submit, read events and abort at once.
 *
 * KV memory is one pool of blocks of block_size tokens; a request takes blocks as it
 * grows, so one long request may use what many short ones would. A full block is cached
 * under the hash chain of the tokens up to it (salted per cache_salt); later requests
 * with the same prefix reuse it. When the pool runs dry the newest running request is
 * preempted (its blocks freed, recomputed later): no request fails for lack of blocks. */
typedef struct rl_engine rl_engine;
typedef struct rl_engine_request rl_engine_request;

typedef struct rl_engine_params {
    int32_t n_ctx;        /* longest sequence, prompt + generated; 0: the model's
                             n_ctx_train, at most 4096 [0] */
    int32_t n_parallel;   /* sequences running at once (and in one step), 1..256 [8] */
    uint64_t kv_mem;      /* bytes of the KV pool; 0: n_ctx * n_parallel tokens' worth [0].
                             Must hold at least one n_ctx sequence (n_ctx is lowered to what
                             the pool holds when it is smaller, never below one block). */
    int32_t block_size;   /* tokens per KV block, 1..1024 [16] */
    int32_t batch_tokens; /* tokens of one step (forward pass), >= n_parallel [512] */
    int32_t max_waiting;  /* requests waiting beyond which submit refuses; 0: no limit [0] */
    bool prefix_cache;    /* share full blocks between requests [true] */
    rl_type kv_type;      /* RL_TYPE_F16 [default], RL_TYPE_F32 or RL_TYPE_Q8_0 */
    int n_threads;        /* threads of the forward pass; <= 0: the model's [0] */
} rl_engine_params;

RL_API rl_engine_params rl_engine_default_params(void);

/* Start an engine on m (borrowed: it must outlive the engine). p NULL: the defaults.
 * Allocates the KV pool, the scheduler and the step buffers here, then starts the engine
 * thread. Errors, with a message in err: RL_ERR_INVALID_ARG naming the parameter,
 * RL_ERR_UNSUPPORTED (kv_type), RL_ERR_NOMEM, RL_ERR_INTERNAL (thread start). */
RL_API rl_status rl_engine_create(const rl_model *m, const rl_engine_params *p,
                                  rl_engine **out, char *err, size_t err_size);
/* Stop the engine: requests still waiting or running end with RL_ENGINE_FINISH_ABORT (their
 * handles stay valid and report it), the thread is joined, memory freed. To drain
 * instead, stop submitting and wait until rl_engine_metrics shows nothing running or
 * waiting. Must not run concurrently with other calls on e. NULL is a no-op. */
RL_API void rl_engine_free(rl_engine *e);
/* The engine's settings after defaults and limits were applied. */
RL_API rl_engine_params rl_engine_get_params(const rl_engine *e);
RL_API const rl_model *rl_engine_model(const rl_engine *e);

/* Why a sequence ended. */
typedef enum rl_engine_finish {
    RL_ENGINE_FINISH_NONE = 0,
    RL_ENGINE_FINISH_STOP = 1,   /* an end-of-generation token or a stop string */
    RL_ENGINE_FINISH_LENGTH = 2, /* max_tokens generated (or the context is full) */
    RL_ENGINE_FINISH_ABORT = 3,  /* rl_engine_abort / rl_engine_request_free / engine freed */
    RL_ENGINE_FINISH_ERROR = 4   /* sampling or the forward pass failed (event message) */
} rl_engine_finish;

/* "stop", "length", "abort", "error", "none". */
RL_API const char *rl_engine_finish_name(rl_engine_finish f);

#define RL_ENGINE_MAX_STOP 16        /* stop strings per request */
#define RL_ENGINE_MAX_STOP_LEN 1024  /* bytes of one stop string */
#define RL_ENGINE_MAX_N 64           /* sequences per request (also <= n_parallel) */

/* Called when a request has new events (from the engine thread, or the thread that aborts
 * it), with no engine lock held. It must return quickly and must not call rl_engine_*
 * functions other than rl_engine_next_event with timeout 0; typical use: wake the reader
 * (signal a condition, resume an HTTP connection). Once rl_engine_request_free has
 * returned, notify is not called again for that request (a call in progress is waited
 * for), so notify_user may be freed then. */
typedef void (*rl_engine_notify_fn)(void *user);

typedef struct rl_engine_request_params {
    /* The prompt: n_prompt >= 1 token ids in [0, n_vocab), or, when prompt is NULL,
     * prompt_text (prompt_len bytes) tokenized with tokenize_flags (RL_TOKENIZE_*). */
    const rl_token *prompt;
    int32_t n_prompt;
    const char *prompt_text;
    size_t prompt_len;
    uint32_t tokenize_flags;
    /* Sampling of each sequence; sequence i > 0 gets seed + i (unless the seed is
     * RL_SAMPLER_SEED_RANDOM). logprobs / top_logprobs fill rl_engine_token. */
    rl_sampler_params sampling;
    int32_t max_tokens;      /* >= 1 tokens to generate per sequence; 0: until the
                                context is full. prompt + max_tokens > n_ctx: RL_ERR_RANGE */
    int32_t n;               /* sequences sampled from the prompt, 1..min(64, n_parallel) [1] */
    int32_t priority;        /* smaller is served first [0] */
    const char *const *stop; /* n_stop stop strings (non-empty, valid UTF-8, copied): the
                                text ends before the first one found; text that may be the
                                start of one is held back until it is decided */
    int32_t n_stop;          /* 0..RL_ENGINE_MAX_STOP */
    bool ignore_eos;         /* end-of-generation tokens do not stop (their text is "") */
    const char *cache_salt;  /* NULL/"": the shared prefix cache; else a namespace of its
                                own (one tenant cannot hit another's prompts) */
    rl_engine_notify_fn notify; /* NULL: none (poll or block in rl_engine_next_event) */
    void *notify_user;
    /* Constrained generation (section "grammar"): grammar NULL: none; else GBNF text
     * (NUL-terminated, copied) with start rule grammar_root (NULL: "root") that the text
     * of every sequence follows. Compiled at submit against the model's vocabulary; the
     * engine keeps the last RL_ENGINE_GRAMMAR_CACHE grammars compiled, shared by the
     * requests that use them, so a text seen before costs a lookup. A grammar that does
     * not compile fails submit (RL_ERR_INVALID_ARG, RL_ERR_LIMIT; the message starts with
     * "grammar: "). Each step checks the sampled token first and computes the full mask
     * only when it is rejected (then draws again from the allowed tokens). End-of-
     * generation tokens are allowed only where the grammar can end (ignore_eos does not
     * apply); a sequence whose text is a sentence nothing can continue ends with
     * RL_ENGINE_FINISH_STOP right after the token that completed it (no end token is
     * drawn), as does one that no allowed token can continue; one cut by max_tokens ends
     * with LENGTH, its text then a prefix the grammar accepts. */
    const char *grammar;
    const char *grammar_root;
    /* The output text shows control tokens (RL_DETOK_SPECIAL): the markers of tool-call
     * syntaxes (<|python_tag|>, [TOOL_CALLS], ...) that rl_toolcall_parse needs. End-of-
     * generation tokens still give no text. [false] */
    bool special_text;
} rl_engine_request_params;

#define RL_ENGINE_GRAMMAR_CACHE 8 /* compiled grammars an engine keeps for reuse */

/* n 1, max_tokens 0, priority 0, no stop strings, default sampling (greedy is
 * sampling.temperature = 0), no notify. */
RL_API rl_engine_request_params rl_engine_request_default_params(void);

/* Queue a request; on success *out is its handle, which the caller owns and frees with
 * rl_engine_request_free. Everything p points to is copied. Checked here, before anything
 * is queued (err names the field): RL_ERR_INVALID_ARG (no prompt, a token id out of
 * range, n, sampling, stop strings), RL_ERR_RANGE (prompt + max_tokens beyond n_ctx, or
 * more than the KV pool can ever hold for this request), RL_ERR_LIMIT (max_waiting
 * requests are waiting already: try later), RL_ERR_UNSUPPORTED (engine stopping),
 * RL_ERR_NOMEM, and tokenizer errors. Thread-safe. */
RL_API rl_status rl_engine_submit(rl_engine *e, const rl_engine_request_params *p,
                                  rl_engine_request **out, char *err, size_t err_size);

/* One generated token: its id and, when logprobs were asked for, its log-probability
 * (natural log, of the distribution rl_sampler_logprobs describes) and the top_logprobs
 * most likely tokens. */
typedef struct rl_engine_token {
    rl_token token;
    float logprob;
    int32_t n_top;
    const rl_token_logprob *top; /* [n_top], most likely first */
} rl_engine_token;

typedef enum rl_engine_event_type {
    RL_ENGINE_EVENT_NONE = 0,  /* timed out: nothing new */
    RL_ENGINE_EVENT_DELTA = 1, /* new output of one sequence */
    RL_ENGINE_EVENT_DONE = 2   /* every sequence has ended: usage; the last event */
} rl_engine_event_type;

/* Pointers are valid until the next rl_engine_next_event or rl_engine_request_free on the
 * same request. */
typedef struct rl_engine_event {
    rl_engine_event_type type;
    /* DELTA: what sequence seq_index produced since its previous event. text is whole
     * UTF-8 characters (not NUL-terminated), stop strings and what follows removed; tokens
     * are the ids generated, including a final end-of-generation token, whose text
     * (if any) may come in a later event. finish != NONE on the sequence's last DELTA. */
    int32_t seq_index;
    const char *text;
    size_t text_len;
    const rl_engine_token *tokens;
    int32_t n_tokens;
    rl_engine_finish finish;
    /* DONE: usage over the whole request. */
    int32_t n_prompt_tokens;     /* tokens of the prompt */
    int32_t n_cached_tokens;     /* of which the prefix cache supplied (first admission) */
    int32_t n_completion_tokens; /* generated, summed over the sequences */
    /* DONE: RL_OK, or the error that ended a sequence with RL_ENGINE_FINISH_ERROR. */
    rl_status status;
    const char *message;         /* "" when status is RL_OK */
} rl_engine_event;

/* The next event of r into *ev, waiting up to timeout_ms (0: do not wait; < 0: no limit).
 * Events of one sequence come in order; after the DONE event every call returns DONE
 * again. RL_ERR_INVALID_ARG for NULL arguments. Thread-safe with the engine; one reader
 * at a time per request. */
RL_API rl_status rl_engine_next_event(rl_engine_request *r, int timeout_ms,
                                      rl_engine_event *ev);

/* Cancel r: its blocks are freed at once (or right after the step in flight); unfinished
 * sequences end with RL_ENGINE_FINISH_ABORT and DONE follows. No-op when r is done.
 * Thread-safe; safe at any moment of the request's life. */
RL_API void rl_engine_abort(rl_engine_request *r);
/* Abort r if it still runs and release the caller's handle. NULL is a no-op. */
RL_API void rl_engine_request_free(rl_engine_request *r);

/* A latency histogram: count[i] observations <= le[i] (cumulative, as Prometheus
 * buckets; le[n_buckets - 1] is +INFINITY, so count[n_buckets - 1] == total). */
#define RL_ENGINE_HIST_MAX 20
typedef struct rl_engine_histogram {
    int32_t n_buckets;
    double le[RL_ENGINE_HIST_MAX];
    uint64_t count[RL_ENGINE_HIST_MAX];
    uint64_t total;
    double sum;
} rl_engine_histogram;

typedef struct rl_engine_metrics {
    int32_t n_running, n_waiting;  /* requests now */
    int32_t n_running_seqs;        /* sequences now */
    uint64_t n_submitted;          /* requests accepted by rl_engine_submit */
    uint64_t n_rejected;           /* refused by rl_engine_submit (bad input, queue full) */
    uint64_t n_finished;           /* ended: stop, length or error */
    uint64_t n_aborted;
    uint64_t tokens_prompt;        /* prompt tokens of accepted requests */
    uint64_t tokens_prefill;       /* prompt (and recomputed) tokens run through the model */
    uint64_t tokens_generated;     /* tokens sampled */
    uint64_t n_steps;              /* forward passes */
    int32_t last_step_seqs, max_step_seqs; /* sequences in one step */
    int32_t max_step_tokens;
    uint64_t n_preemptions;
    int32_t kv_block_size;
    int32_t kv_blocks_total, kv_blocks_used, kv_blocks_free;
    int32_t kv_blocks_cached;      /* full blocks findable in the prefix cache */
    uint64_t prefix_lookup_tokens, prefix_hit_tokens; /* misses: lookup - hit */
    uint64_t prefix_lookup_blocks, prefix_hit_blocks;
    rl_engine_histogram ttft;      /* seconds from submit to a request's first token */
    rl_engine_histogram itl;       /* seconds between a sequence's consecutive tokens */
    rl_engine_histogram step_seqs; /* sequences per step */
} rl_engine_metrics;

/* A consistent snapshot of the counters. Thread-safe. */
RL_API void rl_engine_metrics_get(rl_engine *e, rl_engine_metrics *out);

/* ===== end section: engine ===== */

/* ===== section: grammar ===== */

/* Constrained generation with GBNF grammars, the language of llama.cpp (grammars/README.md
 * there): rules `name ::= alternatives`, `|`, grouping, `*` `+` `?` `{m}` `{m,}` `{m,n}`,
 * literals with escapes (\x.. \u.... \U........ \t \n \r \\ \" \[ \] \-), character classes
 * with ranges and `^`, `.`, comments, token references <[id]>, <text> (a single token of the
 * vocabulary) and their negations !<[id]>. Repetitions are rewritten exactly as llama.cpp
 * does, with its limits (counts above 2000 are refused).
 *
 * Semantics as llama.cpp's: terminals match Unicode code points; a token matches when its
 * text can be consumed from some parse stack; a token may end inside a UTF-8 sequence when
 * the rest can still match. Stricter than llama.cpp where it is lenient: text must be valid
 * UTF-8 (no overlong forms, no surrogates), nullable left recursion is refused too, and
 * states past the limits fail with RL_ERR_LIMIT instead of running out of memory.
 * Token texts are what rl_token_to_piece gives without RL_DETOK_SPECIAL, so control
 * tokens (empty text) match only token references; end-of-generation tokens (EOS, EOT, ...)
 * are allowed where the grammar may end (and where a token reference names one).
 * Masks cost a few microseconds for 128k-token vocabularies once a grammar has seen a
 * state's top frames; the first time costs up to tens of milliseconds (tables shared by
 * all matchers of the grammar). Environment, for tests and benchmarks only:
 * RUVLLM_GRAMMAR_STATE_CACHE=0 turns off a matcher's cache of masks by state,
 * RUVLLM_GRAMMAR_NO_REPEAT=1 keeps counted repetitions as llama.cpp's rule chains. */

typedef struct rl_grammar_vocab rl_grammar_vocab;     /* a vocabulary indexed for masks */
typedef struct rl_grammar rl_grammar;                 /* a compiled grammar */
typedef struct rl_grammar_matcher rl_grammar_matcher; /* the state of one generation */

/* Bounds against hostile grammars; rl_grammar_default_limits() gives the values in
 * brackets. Exceeding one fails with RL_ERR_LIMIT and a message naming it. */
typedef struct rl_grammar_limits {
    uint32_t max_text;     /* bytes of GBNF text [16 MiB] */
    uint32_t max_elements; /* IR elements after repetitions are rewritten [1 Mi] */
    uint32_t max_nesting;  /* nested parentheses [512] */
    uint32_t max_stacks;   /* parse stacks alive in one state [4096] */
    uint32_t max_depth;    /* frames in one stack (nesting of the text) [16384] */
    uint32_t max_expand;   /* expansion steps for one code point [1 Mi] */
    uint32_t max_nodes;    /* interned frames of one matcher [4 Mi] */
    uint64_t max_cache_bytes; /* memory of a grammar's precomputed mask tables [512 MiB];
                                 past it masks are still right, only slower */
} rl_grammar_limits;

RL_API rl_grammar_limits rl_grammar_default_limits(void);

/* Index the texts of v's tokens for fast masks (~50 ms for 128k tokens). v must outlive
 * the index. Immutable: any number of grammars and threads may share it. */
RL_API rl_status rl_grammar_vocab_create(const rl_vocab *v, rl_grammar_vocab **out);
RL_API void rl_grammar_vocab_free(rl_grammar_vocab *gv);

/* Compile GBNF text[0..len) with start rule root (NULL: "root"). gv (NULL allowed: then
 * matchers take bytes and token references only) gives the tokens to mask, and resolves
 * <text> token references; it must outlive the grammar. lim NULL: the defaults. Errors:
 * RL_ERR_INVALID_ARG for a bad grammar, with err "line L, column C: what" for syntax
 * errors, or naming the undefined rule, the left-recursive rule, the missing root;
 * RL_ERR_LIMIT past a limit; RL_ERR_NOMEM. *out is NULL then. A compiled grammar is
 * immutable to its users and thread-safe: matchers in different threads may share it (it
 * fills its mask tables lazily under a lock). */
RL_API rl_status rl_grammar_compile(const char *text, size_t len, const char *root,
                                    const rl_grammar_vocab *gv, const rl_grammar_limits *lim,
                                    rl_grammar **out, char *err, size_t err_size);
/* Frees g; its matchers must be freed first. */
RL_API void rl_grammar_free(rl_grammar *g);

/* A random text the grammar accepts (a random walk of its rules that turns toward the
 * shortest completion once max_len bytes are near), into buf[0..size) with a NUL; *n_out
 * bytes. Mostly printable ASCII where classes allow it. RL_ERR_RANGE when size is too
 * small (*n_out then says how much is needed), RL_ERR_LIMIT when no text fits in about
 * 4 * max_len + 1 KiB, RL_ERR_UNSUPPORTED when the walk meets a token reference (it has no
 * text). Thread-safe. For tests and benchmarks. */
RL_API rl_status rl_grammar_sample_text(const rl_grammar *g, uint64_t seed, size_t max_len,
                                        char *buf, size_t size, size_t *n_out);

/* A matcher at the start of g that can undo up to max_rollback accepted tokens (0: none).
 * One thread at a time; it keeps a pointer to g. */
RL_API rl_status rl_grammar_matcher_create(const rl_grammar *g, uint32_t max_rollback,
                                           rl_grammar_matcher **out);
RL_API void rl_grammar_matcher_free(rl_grammar_matcher *m);
/* An independent copy of m in its state (for n > 1 and forks), history included. */
RL_API rl_status rl_grammar_matcher_clone(const rl_grammar_matcher *m,
                                          rl_grammar_matcher **out);
/* Back to the start, history cleared. */
RL_API void rl_grammar_matcher_reset(rl_grammar_matcher *m);

/* Accept token t: RL_OK, or RL_ERR_INVALID_ARG when the grammar does not allow t here (or t
 * is out of range; m unchanged, rl_grammar_matcher_errmsg says why), RL_ERR_LIMIT past a
 * limit (m unchanged). An end-of-generation token is accepted where the grammar may end
 * and finishes the matcher (nothing but more end tokens is allowed after it). Needs a
 * grammar compiled with a vocabulary, except for tokens that token references match. */
RL_API rl_status rl_grammar_matcher_accept_token(rl_grammar_matcher *m, rl_token t);
/* Accept the bytes s[0..len) (one step of history). *n_ok (may be NULL) gets the number of
 * bytes the grammar accepts from the start; RL_ERR_INVALID_ARG when that is less than len
 * (m unchanged). */
RL_API rl_status rl_grammar_matcher_accept_bytes(rl_grammar_matcher *m, const char *s,
                                                 size_t len, size_t *n_ok);
/* Whether t would be accepted now (the sampled-token check: cost about the token's length,
 * no mask). False on errors too (rl_grammar_matcher_errmsg). */
RL_API bool rl_grammar_matcher_allows(rl_grammar_matcher *m, rl_token t);
/* The allowed tokens as a bit set: bit (t & 31) of mask[t >> 5] for token t, every word of
 * mask[0..n_words) written (bits past the vocabulary zero). End-of-generation tokens are
 * set where the grammar may end. n_words >= (n_tokens + 31) / 32, else
 * RL_ERR_INVALID_ARG. On little-endian machines the same memory read as bytes is the
 * layout of rl_mask_test. */
RL_API rl_status rl_grammar_matcher_fill_mask(rl_grammar_matcher *m, uint32_t *mask,
                                              size_t n_words);
/* Whether the text so far is a complete sentence of the grammar. */
RL_API bool rl_grammar_matcher_can_end(const rl_grammar_matcher *m);
/* Undo the last n accepted tokens (or accept_bytes calls). RL_ERR_RANGE when fewer than n
 * are kept (m unchanged). */
RL_API rl_status rl_grammar_matcher_rollback(rl_grammar_matcher *m, uint32_t n);
/* Number of steps rl_grammar_matcher_rollback can undo now. */
RL_API uint32_t rl_grammar_matcher_n_history(const rl_grammar_matcher *m);
/* The last error's message ("" when none); valid until the next call on m. */
RL_API const char *rl_grammar_matcher_errmsg(const rl_grammar_matcher *m);

/* Sampling held to a grammar: the constraint of rl_sampler_sample_constrained (section
 * "sampling") for matcher m, with the sampled token checked first (rl_grammar_matcher_allows)
 * and the full mask (rl_grammar_matcher_fill_mask, in the sampler's byte layout) computed only
 * when that token is rejected. It composes with every sampler setting: the mask comes before
 * the filters. n_vocab is the logits' length (rl_model_n_vocab); tokens past the vocabulary
 * (padding rows) are never allowed. The constraint reads m and never moves it: accept the
 * chosen token in m (rl_grammar_matcher_accept_token) and in the sampler. m needs a grammar
 * compiled with a vocabulary and must outlive the constraint; one thread at a time, as m.
 * Errors: RL_ERR_INVALID_ARG (NULL, a grammar without a vocabulary, n_vocab below the
 * vocabulary's words; rl_grammar_matcher_errmsg says which), RL_ERR_NOMEM. */
typedef struct rl_grammar_constraint rl_grammar_constraint;
RL_API rl_status rl_grammar_constraint_create(rl_grammar_matcher *m, int32_t n_vocab,
                                              rl_grammar_constraint **out);
RL_API void rl_grammar_constraint_free(rl_grammar_constraint *gc);
/* The callbacks to pass to rl_sampler_sample_constrained; valid while gc lives. */
RL_API const rl_sampler_constraint *rl_grammar_constraint_get(const rl_grammar_constraint *gc);
/* Whether the text so far is a sentence of the grammar that nothing can continue (no parse
 * stack is left but the empty one): the next step could only choose an end-of-generation
 * token, so a generation may stop here without another decode. No mask, no allocation. */
RL_API bool rl_grammar_constraint_done(const rl_grammar_constraint *gc);

/* ===== end section: grammar ===== */

/* ===== section: structured output ===== */

/* JSON Schema (draft 2020-12, and draft-07 spellings), ECMAScript regular expressions and
 * "any JSON object" as GBNF text for rl_grammar_compile, and a JSON Schema validator.
 *
 * Grammars from schemas are sound: every text they accept is valid against the schema,
 * also as a JSON parser with doubles reads it (numbers within 16 digits before the point,
 * two-digit exponents, and under bounds at most 15 significant digits, so that nothing
 * rounds onto a bound; no lone surrogate escapes). They are not complete: properties come
 * in the schema's order (required first, then optional, then additional ones), whitespace
 * is bounded (at most 2 newlines and 20 blanks between tokens: the rule `space`), and by
 * default an object that declares properties but no "additionalProperties" gets no others,
 * as in llama.cpp ({"type": "object"} alone is any object). A schema without "type" takes
 * its type from its keywords ("properties" -> object, "pattern" -> string, ...).
 * Supported: type (unions), enum, const, properties, required, additionalProperties,
 * patternProperties (one pattern that no declared name matches), propertyNames (checked
 * on the declared names), unevaluatedProperties, items, prefixItems, additionalItems,
 * minItems, maxItems, minLength, maxLength, pattern, format, minimum / maximum and the
 * exclusive ones (on numbers: decimals of up to 15 significant digits, compared digit by
 * digit, and no exponents written), allOf (merged), anyOf, oneOf (where the
 * alternatives are provably disjoint: different types, constants, a required property with
 * different constants, separate ranges), $ref / $defs / definitions (recursion becomes
 * recursive rules). What a grammar cannot express (multipleOf, uniqueItems, not,
 * if/then/else, contains, dependent*, overlapping oneOf, number bounds of 16 or more
 * significant digits, a pattern with minLength/maxLength beyond one repetition between
 * fixed parts, unknown formats, ...) fails with RL_ERR_UNSUPPORTED and a message naming
 * the keyword and its place ("#/properties/a/multipleOf: ..."), unless RL_SCHEMA_LENIENT is
 * given. Formats: date, time, date-time, uuid, email, ipv4, hostname, uri. */

/* Drop what cannot be expressed instead of failing; each dropped constraint is listed as a
 * "# warning: ..." comment at the top of the grammar. */
#define RL_SCHEMA_LENIENT (1u << 0)
/* An absent "additionalProperties" allows any additional property (the specification's
 * default) instead of none. */
#define RL_SCHEMA_EXTRA_PROPERTIES (1u << 1)
/* A schema without "type" allows every type its keywords do not exclude (the
 * specification), instead of the type its keywords suggest. */
#define RL_SCHEMA_NO_TYPE_INFERENCE (1u << 2)
/* No whitespace between JSON tokens. */
#define RL_SCHEMA_COMPACT (1u << 3)

/* Limits against hostile schemas and patterns (exceeding one: RL_ERR_LIMIT and a message):
 * schema nesting 512, 20000 rules, 8 MiB of grammar text, 1024 alternatives from one
 * combination of anyOf/oneOf/allOf, 4096 schemas merged into one of them, 256 prefixItems,
 * counts of 2000 in one repetition ({m,n}, minLength, maxItems, ...) and 200000 in the
 * whole grammar, regex nesting 100. */

/* GBNF for the JSON Schema text schema_json[0..len) (start rule "root"); flags: RL_SCHEMA_*.
 * On success *gbnf_out is a NUL-terminated string the caller frees with rl_free_string.
 * Errors (*gbnf_out NULL, err holds the message): RL_ERR_INVALID_ARG for invalid JSON or an
 * invalid schema (including one that no value satisfies), RL_ERR_UNSUPPORTED (above; also
 * a remote $ref: use rl_schema_compile with a resolver and rl_schema_gbnf), RL_ERR_LIMIT,
 * RL_ERR_NOMEM. Thread-safe. */
RL_API rl_status rl_schema_to_gbnf(const char *schema_json, size_t len, uint32_t flags,
                                   char **gbnf_out, char *err, size_t err_size);

/* GBNF for texts that the regular expression pattern[0..len) matches entirely (as if it
 * were written ^(?:pattern)$; ^ and $ at the ends are accepted). The subset: literals,
 * escapes (\t \n \r \v \f \0 \cX \xHH \uHHHH \u{H..} and escaped punctuation), `.` (any
 * code point but line terminators), classes with ranges and negation, \d \w \s \D \W \S,
 * groups ((..), (?:..), (?<name>..)), alternation, quantifiers * + ? {m} {m,} {m,n} (lazy
 * forms are the same). RL_ERR_UNSUPPORTED for backreferences, lookaround, \b \B, \p{..} and
 * anchors elsewhere, RL_ERR_INVALID_ARG for invalid patterns; messages give the byte
 * offset. flags must be 0. Output freed with rl_free_string. Thread-safe. */
RL_API rl_status rl_regex_to_gbnf(const char *pattern, size_t len, uint32_t flags,
                                  char **gbnf_out, char *err, size_t err_size);

/* GBNF for any JSON object (JSON mode: the root is an object; bounded whitespace as
 * above). A static string: do not free. */
RL_API const char *rl_json_object_gbnf(void);

/* A compiled JSON Schema for validation: keywords type, enum, const, properties, required,
 * additionalProperties, patternProperties, propertyNames, minProperties, maxProperties,
 * dependentRequired, dependentSchemas (and draft-07 dependencies), items, prefixItems (and
 * draft-07 items arrays with additionalItems), contains, minContains, maxContains, minItems,
 * maxItems, uniqueItems, unevaluatedItems, unevaluatedProperties, minLength, maxLength (in
 * code points), pattern (ECMAScript, run by PCRE2), minimum, maximum, exclusiveMinimum,
 * exclusiveMaximum, multipleOf, allOf, anyOf, oneOf, not, if/then/else, $ref with
 * $defs/definitions, $id and $anchor. "format" is an annotation, as the 2020-12 default
 * says. Not implemented (RL_ERR_UNSUPPORTED at compile time unless RL_SCHEMA_LENIENT, which
 * ignores them): $dynamicRef, $recursiveRef. An $schema naming draft-07 or older makes $ref
 * ignore its sibling keywords, as those drafts say. */
typedef struct rl_schema rl_schema;

/* Text of the schema document at uri (absolute, without fragment), or NULL when unknown;
 * *len its length. The text must stay valid until the call that asked returns. */
typedef const char *(*rl_schema_resolver)(void *user, const char *uri, size_t *len);

typedef struct rl_schema_params {
    uint32_t flags;             /* RL_SCHEMA_LENIENT is the one that applies */
    rl_schema_resolver resolve; /* NULL: a remote $ref is RL_ERR_UNSUPPORTED */
    void *resolve_user;
    uint32_t max_depth;         /* nested evaluations (instance depth x $ref chains); 0: 1000 */
} rl_schema_params;

RL_API rl_schema_params rl_schema_default_params(void);

/* Compile schema_json[0..len); p may be NULL (defaults). Every $ref is resolved here (remote
 * ones through p->resolve) and every pattern compiled. Errors: RL_ERR_INVALID_ARG (bad JSON,
 * invalid schema or pattern, a $ref to nothing), RL_ERR_NOT_FOUND (the resolver does not know
 * a URI), RL_ERR_UNSUPPORTED, RL_ERR_LIMIT, RL_ERR_NOMEM; err names the place. A compiled
 * schema is immutable: any number of threads may check with it at once. */
RL_API rl_status rl_schema_compile(const char *schema_json, size_t len,
                                   const rl_schema_params *p, rl_schema **out, char *err,
                                   size_t err_size);
/* Validate the JSON text instance_json[0..len). RL_OK with *valid set; when invalid, err gets
 * the first reason ("#/items/0: 5 is greater than the maximum 3 (#/items/maximum)").
 * RL_ERR_INVALID_ARG for invalid JSON, RL_ERR_LIMIT past max_depth, RL_ERR_NOMEM. */
RL_API rl_status rl_schema_check(const rl_schema *s, const char *instance_json, size_t len,
                                 bool *valid, char *err, size_t err_size);
RL_API void rl_schema_free(rl_schema *s);

/* GBNF for a compiled schema (its remote references resolved), as rl_schema_to_gbnf. */
RL_API rl_status rl_schema_gbnf(const rl_schema *s, uint32_t flags, char **gbnf_out, char *err,
                                size_t err_size);

/* One-shot: compile schema_json (NUL-terminated, default params) and check instance_json. */
RL_API rl_status rl_schema_validate(const char *schema_json, const char *instance_json,
                                    bool *valid, char *err, size_t err_size);

/* ===== end section: structured output ===== */

/* ===== section: tool calls ===== */

/* Tool calling: the text a model generates in its own tool-call syntax, turned into an
 * OpenAI assistant message {"role": "assistant", "content": ..., "tool_calls": [{"id",
 * "type": "function", "function": {"name", "arguments": "<JSON object text>"}}]}, in one
 * go or while streaming (OpenAI's delta events), and grammars that make a model write a
 * valid call of its family.
 *
 * The parsers need the family's markers in the text: for tool-enabled requests the engine
 * must detokenize WITH special tokens shown (RL_DETOK_SPECIAL), because markers such as
 * <|python_tag|>, [TOOL_CALLS], <|START_ACTION|>, <｜tool▁calls▁begin｜> or <|channel|> are
 * control tokens that otherwise come out as "". The text must be valid UTF-8.
 *
 * Rules shared by all families: a block that does not parse (malformed JSON, a missing
 * marker, a name that is not a string) stays content, verbatim; whitespace next to a
 * block or a reasoning marker is dropped; "arguments" is the JSON object the model wrote,
 * byte for byte ("{}" when it gave none; a JSON string holding an object is unwrapped);
 * content is null when there are tool calls and no text, and "" when there is neither. */

typedef enum rl_toolcall_family {
    RL_TOOLCALL_NONE = 0,         /* no tool calls: all text is content */
    RL_TOOLCALL_GENERIC,          /* the whole text one JSON object: {"tool_calls": [calls]},
                                     {"tool_call": call}, a call {"name", "arguments"}, or
                                     {"response": "text"} (content) */
    RL_TOOLCALL_HERMES,           /* <tool_call>{"name": N, "arguments": {..}}</tool_call>...
                                     (Hermes 2 Pro/3, Qwen 2.5/3, QwQ, Granite 4, MiMo) */
    RL_TOOLCALL_LLAMA3,           /* Llama 3.1-3.3: {"name": N, "parameters": {..}} at the
                                     start (several separated by ';'), or <|python_tag|>
                                     followed by such JSON, tool.call(k=v, ...) (built-in
                                     tools) or code (a call of "python" {"code": ...}) */
    RL_TOOLCALL_MISTRAL,          /* [TOOL_CALLS][{"name", "arguments", "id"}, ...] (Nemo) */
    RL_TOOLCALL_MISTRAL_ARGS,     /* [TOOL_CALLS]N[ARGS]{..} and [TOOL_CALLS]N[CALL_ID]ID[ARGS]
                                     {..} (Ministral 3, Devstral, Small 3.2, Magistral); both
                                     Mistral families parse both forms */
    RL_TOOLCALL_DEEPSEEK_R1,      /* V3 / R1: <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function
                                     <｜tool▁sep｜>N\n```json\n{..}\n```<｜tool▁call▁end｜>...
                                     <｜tool▁calls▁end｜> */
    RL_TOOLCALL_DEEPSEEK_V3_1,    /* <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>N<｜tool▁sep｜>{..}
                                     <｜tool▁call▁end｜>...; both DeepSeek families parse both */
    RL_TOOLCALL_FUNCTIONARY_V3_1, /* <function=N>{..}</function>, <|python_tag|>code */
    RL_TOOLCALL_FUNCTIONARY_V3_2, /* N\n{..} then >>>N\n{..} ... (the prompt ends with >>>);
                                     all\ntext is content, python\ncode a call with "code" */
    RL_TOOLCALL_COMMAND_R,        /* Command R/R+: Action: ```json [{"tool_name": N,
                                     "parameters": {..}}] ``` (directly-answer is dropped) */
    RL_TOOLCALL_COMMAND_R7B,      /* <|START_ACTION|>[{"tool_call_id", "tool_name",
                                     "parameters"}]<|END_ACTION|>, <|START_THINKING|> ...
                                     <|END_THINKING|> as reasoning, <|START_RESPONSE|> dropped */
    RL_TOOLCALL_GRANITE,          /* Granite 3.x: <|tool_call|>[{"name", "arguments"}] */
    RL_TOOLCALL_GPT_OSS,          /* harmony: <|channel|>commentary to=functions.N
                                     <|constrain|>json<|message|>{..}<|call|>; the analysis
                                     channel is reasoning, final and commentary are content */
    RL_TOOLCALL_FIREFUNCTION,     /* firefunction v2:  functools[{"name", "arguments"}] */
    RL_TOOLCALL_NEMOTRON,         /* Nemotron Nano v2: <TOOLCALL>[{..}]</TOOLCALL> */
    RL_TOOLCALL_APRIEL,           /* Apriel, MiniMax-M1: <tool_calls>[{..}]</tool_calls> */
    RL_TOOLCALL_KIMI_K2,          /* <|tool_calls_section_begin|><|tool_call_begin|>
                                     functions.N:0<|tool_call_argument_begin|>{..}
                                     <|tool_call_end|>...<|tool_calls_section_end|> */
    RL_TOOLCALL_QWEN3_CODER,      /* <tool_call>\n<function=N>\n<parameter=K>\nV\n</parameter>
                                     ...</function>\n</tool_call> (Qwen3-Coder, Qwen3.5,
                                     Nemotron 3, Step 3.5) */
    RL_TOOLCALL_SEED_OSS,         /* as QWEN3_CODER inside <seed:tool_call> */
    RL_TOOLCALL_GLM,              /* GLM 4.5-4.7: <tool_call>N\n<arg_key>K</arg_key>
                                     \n<arg_value>V</arg_value>...</tool_call> */
    RL_TOOLCALL_MINIMAX_M2,       /* <minimax:tool_call>\n<invoke name="N">\n<parameter
                                     name="K">V</parameter>...</invoke>\n</minimax:tool_call> */
    RL_TOOLCALL_DEEPSEEK_DSML,    /* V3.2 / V4: <｜DSML｜function_calls> (or tool_calls)
                                     <｜DSML｜invoke name="N"><｜DSML｜parameter name="K"
                                     string="true">V</｜DSML｜parameter>... */
    RL_TOOLCALL_FAMILY_COUNT
} rl_toolcall_family;
/* In the XML families (QWEN3_CODER to DEEPSEEK_DSML) a parameter's value is text: it
 * becomes a JSON string when the tool declares the parameter "type": "string" (tools given
 * to the parser), DSML says string="true", or the text is not JSON; else the JSON value. */

/* Lower-case name ("hermes", "llama3", "mistral", "mistral-args", "deepseek-r1",
 * "deepseek-v3.1", "functionary-v3.1", "functionary-v3.2", "command-r", "command-r7b",
 * "granite", "gpt-oss", "firefunction", "nemotron", "apriel", "kimi-k2", "qwen3-coder",
 * "seed-oss", "glm", "minimax-m2", "deepseek-dsml", "generic", "none"); "?" when unknown. */
RL_API const char *rl_toolcall_family_name(rl_toolcall_family f);
/* The family of a name above (case-insensitive); RL_ERR_NOT_FOUND otherwise. */
RL_API rl_status rl_toolcall_family_from_name(const char *name, rl_toolcall_family *out);
/* The family whose markers the chat template src[0..len) contains (first match in a fixed
 * order, e.g. <|channel|> before <tool_call>); RL_TOOLCALL_GENERIC when none (a template
 * that knows no tool syntax: the model is then asked for the generic JSON through the
 * system prompt or a grammar). Thread-safe. */
RL_API rl_toolcall_family rl_toolcall_detect(const char *src, size_t len);

/* Flags of rl_toolcall_params. */
#define RL_TOOLCALL_PARSE_REASONING (1u << 0) /* <think>...</think> becomes reasoning_content
                                                 (GPT-OSS's analysis channel and Command
                                                 R7B's thinking are reasoning always) */
#define RL_TOOLCALL_REASONING_OPEN (1u << 1)  /* the text starts inside reasoning (the prompt
                                                 ended with <think>); implies the flag above */
#define RL_TOOLCALL_KNOWN_NAMES (1u << 2)     /* a block that calls a tool not in tools_json
                                                 stays content */

typedef struct rl_toolcall_params {
    uint32_t flags;         /* RL_TOOLCALL_* above */
    uint64_t id_seed;       /* call ids are derived from it and the call's index: "call_" and
                               24 letters and digits (Mistral: 9 letters and digits, as its
                               templates demand); ids the Mistral models write are kept */
    const char *tools_json; /* NULL, or the request's "tools" array (JSON text) */
} rl_toolcall_params;

/* flags 0, id_seed 0, no tools. */
RL_API rl_toolcall_params rl_toolcall_default_params(void);

/* Parse text[0..len), the model's whole output, as family f. On success *result_json is the
 * assistant message (NUL-terminated JSON: "role", "content", "reasoning_content" when there
 * is any, "tool_calls" when there are any), freed with rl_free_string. Errors: RL_ERR_INVALID_ARG
 * (invalid UTF-8, naming the byte; bad tools_json; an unknown family), RL_ERR_NOMEM; *result_json
 * is NULL then. p may be NULL (defaults). Malformed calls are content, never errors. Thread-safe. */
RL_API rl_status rl_toolcall_parse(rl_toolcall_family f, const char *text, size_t len,
                                   const rl_toolcall_params *p, char **result_json, char *err,
                                   size_t err_size);

/* Streaming: feed the text as it is generated; the events say what is certain. Content
 * comes out as soon as it cannot be the start of a tool call (text that may be the start of
 * a marker, and whitespace that may precede one, are held back); a tool call comes out when
 * it is complete and its arguments are checked: one RL_TOOLCALL_EV_CALL (index, id, name)
 * then RL_TOOLCALL_EV_ARGS fragments of its arguments. A block that turns out malformed is
 * released as content. The events of all calls, concatenated per type and index, give
 * exactly rl_toolcall_parse's message for the whole text, wherever the text was split. */
typedef enum rl_toolcall_event_type {
    RL_TOOLCALL_EV_CONTENT = 0, /* text: content */
    RL_TOOLCALL_EV_REASONING,   /* text: reasoning_content */
    RL_TOOLCALL_EV_CALL,        /* a new call: index, id, text = the function's name */
    RL_TOOLCALL_EV_ARGS         /* text: the next fragment of call index's arguments */
} rl_toolcall_event_type;

typedef struct rl_toolcall_event {
    rl_toolcall_event_type type;
    uint32_t index;   /* CALL, ARGS: the call's index in tool_calls (0, 1, ...) */
    const char *text; /* not NUL-terminated; whole UTF-8 characters */
    size_t len;
    const char *id;   /* CALL: the call's id (NUL-terminated); NULL otherwise */
} rl_toolcall_event;

typedef struct rl_toolcall_stream rl_toolcall_stream;

/* A streaming parser for family f; p may be NULL. Errors as rl_toolcall_parse's. */
RL_API rl_status rl_toolcall_stream_create(rl_toolcall_family f, const rl_toolcall_params *p,
                                           rl_toolcall_stream **out, char *err, size_t err_size);
/* Add text[0..len) (any split, even inside a UTF-8 character). *events / *n_events: what is
 * now certain, valid until the next call on st. RL_ERR_INVALID_ARG for invalid UTF-8 (st is
 * then unusable: rl_toolcall_stream_errmsg says where), RL_ERR_NOMEM. */
RL_API rl_status rl_toolcall_stream_feed(rl_toolcall_stream *st, const char *text, size_t len,
                                         const rl_toolcall_event **events, size_t *n_events);
/* End of the text: the remaining events, and (result_json not NULL) the whole message, as
 * rl_toolcall_parse gives it, freed with rl_free_string. Nothing may be fed afterwards. */
RL_API rl_status rl_toolcall_stream_finish(rl_toolcall_stream *st,
                                           const rl_toolcall_event **events, size_t *n_events,
                                           char **result_json);
/* The last error's message ("" when none). */
RL_API const char *rl_toolcall_stream_errmsg(const rl_toolcall_stream *st);
RL_API void rl_toolcall_stream_free(rl_toolcall_stream *st);

/* events[0..n) as one OpenAI chat.completion.chunk "delta" object: "content",
 * "reasoning_content", "tool_calls": [{"index", "id", "type": "function", "function":
 * {"name", "arguments"}}] (id, type and name on a call's first entry only; consecutive
 * events of one call merged). *out is freed with rl_free_string; NULL when n is 0. */
RL_API rl_status rl_toolcall_delta_json(const rl_toolcall_event *events, size_t n, char **out);

/* Grammars: GBNF (section "grammar") that holds generation to a tool call in family f's
 * syntax, the arguments built from each tool's "parameters" schema (section "structured
 * output"), so that they always validate. */
typedef enum rl_toolcall_choice {
    RL_TOOLCALL_CHOICE_AUTO = 0, /* free text or tool calls: text in which the family's
                                    call marker cannot appear, then optionally calls */
    RL_TOOLCALL_CHOICE_REQUIRED, /* one call (more with parallel) of any of the tools */
    RL_TOOLCALL_CHOICE_NAMED,    /* one call (more with parallel) of function_name */
    RL_TOOLCALL_CHOICE_NONE      /* no grammar: *gbnf is NULL */
} rl_toolcall_choice;

typedef struct rl_toolcall_grammar_params {
    rl_toolcall_choice choice;
    const char *function_name; /* RL_TOOLCALL_CHOICE_NAMED */
    bool parallel;             /* several calls allowed (parallel_tool_calls) */
    uint32_t schema_flags;     /* RL_SCHEMA_* for the parameter schemas */
    const rl_vocab *vocab;     /* NULL: markers are literal text. Else markers that are
                                  control tokens of vocab (whose text detokenizes to "") are
                                  written as token references <[id]>: compile the grammar
                                  with an rl_grammar_vocab of that same vocabulary. */
} rl_toolcall_grammar_params;

/* REQUIRED, no function name, parallel, schema flags 0, no vocabulary. */
RL_API rl_toolcall_grammar_params rl_toolcall_grammar_default_params(void);

/* GBNF (start rule "root") for tools_json (the request's "tools": [{"type": "function",
 * "function": {"name", "parameters"}}]) in family f. *gbnf is freed with rl_free_string.
 * Errors: RL_ERR_INVALID_ARG (bad tools JSON, naming the field; no tools; a name that is not
 * 1 to 64 of [A-Za-z0-9_.-] or used twice; NAMED without or with an unknown function_name), RL_ERR_UNSUPPORTED (a parameter schema the grammar cannot
 * express, naming the tool; RL_SCHEMA_LENIENT drops such parts instead; a family with no
 * grammar: RL_TOOLCALL_NONE), RL_ERR_LIMIT, RL_ERR_NOMEM. p may be NULL. Thread-safe. */
RL_API rl_status rl_toolcall_grammar(rl_toolcall_family f, const char *tools_json,
                                     const rl_toolcall_grammar_params *p, char **gbnf,
                                     char *err, size_t err_size);

/* ===== end section: tool calls ===== */

#ifdef __cplusplus
}
#endif

#endif /* RUVLLM_H */
