/*
 * gpu.h - what the GPU tests share: whether a CUDA device is there to test on.
 */
#ifndef RL_TEST_GPU_H
#define RL_TEST_GPU_H

#include <stdbool.h>
#include <stddef.h>

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

#endif /* RL_TEST_GPU_H */
