/*
 * gpu.h - what the GPU tests share: whether a CUDA device is there to test on, the backends
 * they compare, and moving test data to and from device memory.
 */
#ifndef RL_TEST_GPU_H
#define RL_TEST_GPU_H

#include "backend/backend.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when a CUDA device can be used; else false with the reason (the backend's error
 * message, e.g. a build without CUDA or no device) in why, for SKIP. */
bool rl_test_have_gpu(char *why, size_t n);

/* The CUDA backend on device 0 in *gpu and the CPU reference on 2 threads in *cpu (tests
 * that compare the two); false, with both NULL and the reason in why for SKIP, when no CUDA
 * backend can be made. graphs_off: the backend made with RUVLLM_CUDA_GRAPHS=0 (a test that
 * changes kernel settings between passes of one list, which a replayed graph would keep). */
struct rl_backend;
bool rl_test_gpu_pair(struct rl_backend **gpu, struct rl_backend **cpu, bool graphs_off,
                      char *why, size_t n);

/* n floats of device memory d copied back through be (malloc'd); the backend's sync must
 * succeed (a CHECK). */
float *rl_test_dev_get(struct rl_backend *be, const float *d, size_t n);

/* b bytes of host memory h in a new device buffer of g (NULL, and a failed CHECK, when the
 * allocation fails). */
void *rl_test_dev_bytes(struct rl_backend *g, const void *h, size_t b);

/* A rows x K weight of type t in device memory of g (named "w"): quantized from standard
 * normal values of *rng, or all-zero blocks when rng is NULL (timing). */
rl_weight rl_test_dev_weight(struct rl_backend *g, rl_type t, int64_t K, int64_t rows,
                             uint64_t *rng);

/* A weight in host memory (w, what the CPU backend reads) and its copy in device memory
 * (wd): both named "w". */
typedef struct rl_test_hw {
    rl_weight w, wd;
} rl_test_hw;

/* rows x K weights of type t in *q: quantized from uniform random values of *rng, or (raw)
 * random bytes of *rng with every block's scales set to 2^-10 (Q4_K and Q6_K only), for
 * shapes too large to quantize quickly on the host. false, with a failed CHECK and nothing
 * left allocated, when it cannot be made. rl_test_hw_free(g, q) frees both copies. */
bool rl_test_hw_make(struct rl_backend *g, uint64_t *rng, rl_type t, int64_t K, int64_t rows,
                     bool raw, rl_test_hw *q);
void rl_test_hw_free(struct rl_backend *g, rl_test_hw *q);

/* The time of part(arg), which queues work on be, in microseconds: 10 rounds of 20 calls
 * each followed by be's sync, the median of the rounds after the first three (eager,
 * captured, first replay of the list's graph). */
double rl_test_replay_us(struct rl_backend *be, void (*part)(void *arg), void *arg);

/* setenv(name, v), or unsetenv(name) when v is NULL (settings a backend reads when made). */
void rl_test_env_set(const char *name, const char *v);

/* name=value (NULL: unset) for the settings the CUDA code reads once per process when a
 * backend is made: set, then a backend made and freed so the process takes it now. */
void rl_test_cuda_setting(const char *name, const char *value);

#endif /* RL_TEST_GPU_H */
