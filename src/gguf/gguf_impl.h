/*
 * gguf_impl.h - what the GGUF reader and writer share: the limits that guard against
 * hostile files, and the sizes of the value types.
 *
 * Format (GGUF v2/v3, little endian; ggml docs/gguf.md):
 *   "GGUF" u32 version, i64 n_tensors, i64 n_kv,
 *   n_kv x { string key, u32 type, value },
 *   n_tensors x { string name, u32 n_dims, i64 ne[n_dims], u32 type, u64 offset },
 *   padding to the alignment, tensor data (each tensor at an aligned offset).
 *   string = u64 length + bytes; array value = u32 elem type, u64 n, n values.
 */
#ifndef RL_GGUF_IMPL_H
#define RL_GGUF_IMPL_H

#include "../util/util.h"

#define RL__GGUF_MAGIC "GGUF"
#define RL__GGUF_DEFAULT_ALIGNMENT 32
#define RL__GGUF_KEY_ALIGNMENT "general.alignment"

/* Keys and tensor names: the format says at most 65535 bytes. */
#define RL__GGUF_MAX_NAME_LEN 65535u
/* llama.cpp refuses tensor names of 64 bytes or more (GGML_MAX_NAME); the writer does too. */
#define RL__GGUF_WRITER_MAX_TENSOR_NAME 63u
/* Limits against hostile files (RL_ERR_LIMIT). */
#define RL__GGUF_MAX_STRING_LEN ((uint64_t)1 << 30)
#define RL__GGUF_MAX_ARRAY_LEN ((uint64_t)1 << 30)
#define RL__GGUF_MAX_DEPTH 16
#define RL__GGUF_MAX_META_BYTES ((size_t)1 << 30)
/* The writer's largest alignment: padding is written as bytes. */
#define RL__GGUF_WRITER_MAX_ALIGNMENT ((size_t)1 << 20)

/* Bytes of a scalar of type t in the file and in memory (bool: 1); 0 for STRING, ARRAY
 * and invalid types. */
size_t rl__gguf_scalar_size(rl_gguf_type t);

/* True for the numeric and bool types: the ones stored as a plain array. */
static inline bool rl__gguf_is_plain(rl_gguf_type t) { return rl__gguf_scalar_size(t) != 0; }

static inline bool rl__is_pow2(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

#endif /* RL_GGUF_IMPL_H */
