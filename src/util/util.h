/*
 * util.h - the bottom layer: allocation with accounting and fault injection, checked
 * arithmetic, half-precision conversions, error messages. Depends on nothing but libc.
 */
#ifndef RL_UTIL_H
#define RL_UTIL_H

#include "ruvllm.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- allocation ---------------------------------------------------------- */
/* Every allocation of the library goes through these. They keep a byte count
 * (rl_mem_in_use) and can be told to fail the k-th call, so that out-of-memory paths
 * are testable. rl__free(NULL) is a no-op. rl__aligned_alloc memory is freed with
 * rl__aligned_free; alignment is a power of two >= sizeof(void *). */
void *rl__malloc(size_t n);
void *rl__calloc(size_t count, size_t size);
void *rl__realloc(void *p, size_t n);
void rl__free(void *p);
void *rl__aligned_alloc(size_t alignment, size_t n);
void rl__aligned_free(void *p);
char *rl__strdup(const char *s);
char *rl__strndup(const char *s, size_t n);

/* Fault injection (tests only): the k-th allocation from now (1-based) and every one
 * after it fail while k > 0; 0 turns injection off. Not thread-safe with respect to
 * concurrent allocations; use from single-threaded tests. */
void rl__alloc_fail_after(long k);
/* Number of allocation calls made since start (for tests that sweep k). */
long rl__alloc_count(void);

/* ---- checked arithmetic --------------------------------------------------- */
/* Return false (and leave *out unspecified) on overflow. */
static inline bool rl__mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool rl__add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

/* ---- half precision ------------------------------------------------------- */
/* IEEE binary16 and bfloat16 conversions, exact and portable (no F16C needed).
 * fp32->fp16 rounds to nearest even, as F16C's _cvtss_sh(x, 0) does; NaN stays NaN.
 * fp32->bf16 rounds to nearest even; NaN is quieted, as ggml does. */
typedef uint16_t rl_fp16;
typedef uint16_t rl_bf16;

static inline uint32_t rl__f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float rl__bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}
float rl__fp16_to_fp32_slow(rl_fp16 h);
rl_fp16 rl__fp32_to_fp16(float f);
/* Table-driven fp16->fp32 (65536 entries, filled on first use by rl__init_tables). */
extern float rl__fp16_table[65536];
void rl__init_tables(void);
static inline float rl__fp16_to_fp32(rl_fp16 h) { return rl__fp16_table[h]; }
static inline float rl__bf16_to_fp32(rl_bf16 h) { return rl__bits_f32((uint32_t)h << 16); }
static inline rl_bf16 rl__fp32_to_bf16(float f) {
    uint32_t u = rl__f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (rl_bf16)((u >> 16) | 64); /* quiet NaN */
    return (rl_bf16)((u + (0x7fffu + ((u >> 16) & 1))) >> 16);
}

/* ---- messages -------------------------------------------------------------- */
/* snprintf into a fixed buffer, never overflowing; buf may be NULL when size is 0. */
void rl__fmt(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void rl__vfmt(char *buf, size_t size, const char *fmt, va_list ap);

/* ---- misc ----------------------------------------------------------------- */
#define RL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define RL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define RL_MAX(a, b) ((a) > (b) ? (a) : (b))

/* Monotonic time in seconds. */
double rl__now(void);

/* Environment variable as string, or NULL when unset or empty. */
const char *rl__getenv(const char *name);

#endif /* RL_UTIL_H */
