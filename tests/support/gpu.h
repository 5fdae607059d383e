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

#endif /* RL_TEST_GPU_H */
