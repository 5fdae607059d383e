/*
 * stub.c - the CUDA backend's entry points in a build without CUDA (RUVLLM_CUDA=OFF, no
 * nvcc, or the sanitizer build of the library): a model asking for a GPU fails at load
 * with a message saying why.
 */
#include "../backend.h"

rl_status rl__backend_cuda_create(int device, rl_backend **out, char *err, size_t err_size) {
    (void)device;
    *out = NULL;
    rl__fmt(err, err_size,
            "this build of ruvllm has no CUDA backend (it needs the CUDA toolkit at build "
            "time and RUVLLM_CUDA=ON)");
    return RL_ERR_UNSUPPORTED;
}

int rl__cuda_device_count(void) { return 0; }

rl_status rl__cuda_device_info(int device, char *name, size_t name_size, size_t *total,
                               size_t *free_bytes, char *err, size_t err_size) {
    rl_backend *be;
    if (name_size) name[0] = 0;
    *total = *free_bytes = 0;
    return rl__backend_cuda_create(device, &be, err, err_size);
}

bool rl__cuda_graph_stats(rl_backend *be, int64_t *eager, int64_t *captured, int64_t *replayed) {
    (void)be;
    *eager = *captured = *replayed = 0;
    return false;
}

int64_t rl__cuda_attn_mmq_count(rl_backend *be) {
    (void)be;
    return -1;
}

int64_t rl__cuda_head_host_count(rl_backend *be) {
    (void)be;
    return -1;
}

double rl__cuda_copy_bandwidth(int device) {
    (void)device;
    return 0;
}

int rl__cuda_bench_matvec(int device, double copy_bw, FILE *out) {
    (void)device, (void)copy_bw, (void)out;
    return 1;
}
