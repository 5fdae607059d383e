#include "gpu.h"

#include "backend/backend.h"
#include "rng.h"
#include "test.h"

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

float *rl_test_dev_get(rl_backend *be, const float *d, size_t n) {
    float *h = malloc((n ? n : 1) * sizeof(float));
    if (h && n) be->ops->to_host(be, h, d, n * sizeof(float));
    CHECK(h != NULL && be->ops->sync(be) == RL_OK);
    return h;
}

void rl_test_env_set(const char *name, const char *v) {
    if (v)
        setenv(name, v, 1);
    else
        unsetenv(name);
}

void *rl_test_dev_bytes(rl_backend *g, const void *h, size_t b) {
    void *d = g->ops->alloc(g, b);
    CHECK(d != NULL);
    if (d) g->ops->from_host(g, d, h, b);
    return d;
}

rl_weight rl_test_dev_weight(rl_backend *g, rl_type t, int64_t K, int64_t rows, uint64_t *rng) {
    size_t rb = 0;
    CHECK(rl_type_row_bytes(t, K, &rb) == RL_OK);
    void *data = calloc((size_t)rows, rb);
    CHECK(data != NULL);
    if (data && rng) {
        float *src = rl_test_gauss_vec(rng, (size_t)(K * rows));
        CHECK(src && rl_quantize(t, src, data, rows, K, NULL) == RL_OK);
        free(src);
    }
    rl_weight w = {.name = "w", .type = t, .ne = {K, rows, 1, 1}, .row_bytes = rb};
    w.data = data ? rl_test_dev_bytes(g, data, rb * (size_t)rows) : NULL;
    free(data);
    return w;
}

void rl_test_cuda_setting(const char *name, const char *value) {
    rl_test_env_set(name, value);
    rl_backend *b = NULL;
    char err[256];
    CHECK(rl__backend_cuda_create(0, &b, err, sizeof err) == RL_OK);
    rl__backend_free(b);
}
