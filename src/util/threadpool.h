/*
 * threadpool.h - internal interface of the CPU thread pool (the public handle is
 * rl_threadpool in ruvllm.h). The model code runs its multi-threaded steps through
 * rl__threadpool_run; rl_matmul and the model-file quantizer are built on it. It lives in
 * util, not in the CPU backend, because it knows nothing of tensors or kernels: quant and
 * backend/cpu both use it, and neither depends on the other for it.
 */
#ifndef RL_UTIL_THREADPOOL_H
#define RL_UTIL_THREADPOOL_H

#include "util.h"

/* One job: every thread of the pool calls fn(ctx, ith, nth) once, ith in [0, nth),
 * the calling thread as ith 0. */
typedef void (*rl__task_fn)(void *ctx, int ith, int nth);

/* Run fn on every thread of pool and return when all have returned (a full barrier:
 * what the threads wrote is visible to the caller afterwards). Workers sleep on a
 * futex between jobs; they do not spin. Not reentrant: fn must not call run on the
 * same pool, and one thread at a time may use a pool. */
void rl__threadpool_run(rl_threadpool *pool, rl__task_fn fn, void *ctx);

/* Scratch memory owned by the pool, at least bytes long, 64-byte aligned. It is grown
 * (never shrunk) and reused, so a steady-state caller allocates nothing. Contents are
 * unspecified and the pointer is valid until the next call of this function on the
 * pool (rl_matmul calls it). NULL when out of memory. */
void *rl__threadpool_scratch(rl_threadpool *pool, size_t bytes);

/* n_threads slots of 64 bytes (one cache line each, 64-byte aligned) that the running job
 * may use to coordinate its threads (rl_matmul keeps each thread's work range there).
 * Allocated with the pool, so using them allocates nothing; contents belong to the job. */
#define RL_THREADPOOL_SLOT_BYTES 64
void *rl__threadpool_slots(rl_threadpool *pool);

/* Up to max CPUs of this process's affinity mask into cpus, one per physical core first,
 * then SMT siblings; returns how many were written (cpu_topology.c). The pool pins its
 * threads in this order under RUVLLM_THREAD_PIN=1. */
int rl__cpu_list(int *cpus, int max);

#endif /* RL_UTIL_THREADPOOL_H */
