#include "gpu.h"

#include "backend/backend.h"

#include <stdio.h>
#include <stdlib.h>

bool rl_test_have_gpu(char *why, size_t n) {
    if (rl__cuda_device_count() > 0) return true;
    rl_backend *be = NULL;
    char err[256] = "";
    rl__backend_cuda_create(0, &be, err, sizeof err);
    rl__backend_free(be);
    snprintf(why, n, "%s", err[0] ? err : "no CUDA device");
    return false;
}

bool rl_test_gpu_pair(rl_backend **gpu, rl_backend **cpu, bool graphs_off, char *why, size_t n) {
    char err[256] = "";
    *gpu = *cpu = NULL;
    if (graphs_off) setenv("RUVLLM_CUDA_GRAPHS", "0", 1); /* read when the backend is made */
    const rl_status st = rl__backend_cuda_create(0, gpu, err, sizeof err);
    if (graphs_off) unsetenv("RUVLLM_CUDA_GRAPHS");
    if (st != RL_OK) {
        *gpu = NULL;
        snprintf(why, n, "no CUDA backend: %.200s", err);
        return false;
    }
    if (rl__backend_cpu_create(2, cpu) != RL_OK) {
        rl__backend_free(*gpu);
        *gpu = *cpu = NULL;
        snprintf(why, n, "cannot create the CPU backend");
        return false;
    }
    return true;
}
