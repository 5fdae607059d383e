/*
 * backend_cpu.h - what the files of the CPU backend's layer ops share (backend_cpu.c,
 * rope.c, attention.c). The public face is the rl_backend_ops table of backend.h.
 */
#ifndef RL_BACKEND_CPU_BACKEND_H
#define RL_BACKEND_CPU_BACKEND_H

#include "../backend.h"
#include "cpu.h"
#include "../../util/threadpool.h"

typedef struct rl__cpu_backend {
    rl_threadpool *pool;
} rl__cpu_backend;

/* fn(ctx, r0, r1) over [0, n) split into one range per thread, or on the calling thread
 * alone when n * elems_per_row is small. */
void rl__cpu_par_rows(rl__cpu_backend *c, int64_t n, int64_t elems_per_row,
                      void (*fn)(void *ctx, int64_t r0, int64_t r1), void *ctx);

/* rope.c */
void rl__cpu_rope(rl_backend *be, float *x, int64_t n, int64_t ld, int32_t n_head,
                  int32_t head_dim, const int32_t *pos, const rl_rope_params *p);

/* attention.c */
void rl__cpu_kv_write(rl_backend *be, const rl_kv_layer *kv, const float *k, int64_t ld_k,
                      const float *v, int64_t ld_v, int64_t n, const int32_t *cells);
void rl__cpu_attention(rl_backend *be, const rl_kv_layer *kv, const rl_attn_args *a);

#endif /* RL_BACKEND_CPU_BACKEND_H */
