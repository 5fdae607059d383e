#include "gpu.h"

#include "backend/backend.h"
#include "rng.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

bool rl_test_hw_make(rl_backend *g, uint64_t *rng, rl_type t, int64_t K, int64_t rows, bool raw,
                     rl_test_hw *q) {
    size_t rb;
    const bool typed = rl_type_row_bytes(t, K, &rb) == RL_OK &&
                       (!raw || t == RL_TYPE_Q4_K || t == RL_TYPE_Q6_K);
    CHECK(typed);
    if (!typed) return false;
    const size_t bytes = rb * (size_t)rows;
    uint8_t *data = malloc(bytes);
    CHECK(data != NULL);
    if (!data) return false;
    if (raw) {
        for (size_t i = 0; i < bytes; i++) data[i] = (uint8_t)(rl_test_rand64(rng) >> 56);
        const size_t bb = t == RL_TYPE_Q4_K ? 144 : 210; /* block bytes */
        const uint16_t h = 0x1400;                       /* 2^-10 as fp16 */
        for (size_t b = 0; b + bb <= bytes; b += bb) {
            if (t == RL_TYPE_Q4_K) { /* d and dmin */
                memcpy(data + b, &h, 2);
                memcpy(data + b + 2, &h, 2);
            } else { /* Q6_K's d, at the end */
                memcpy(data + b + 208, &h, 2);
            }
        }
    } else {
        float *src = rl_test_unif_vec(rng, (size_t)(K * rows));
        CHECK(rl_quantize(t, src, data, rows, K, NULL) == RL_OK);
        free(src);
    }
    q->w =
        (rl_weight){.name = "w", .type = t, .ne = {K, rows, 1, 1}, .row_bytes = rb, .data = data};
    q->wd = q->w;
    void *d = g->ops->alloc(g, bytes);
    CHECK(d != NULL);
    if (!d) {
        free(data);
        return false;
    }
    g->ops->from_host(g, d, data, bytes);
    q->wd.data = d;
    return true;
}

void rl_test_hw_free(rl_backend *g, rl_test_hw *q) {
    g->ops->free(g, (void *)q->wd.data);
    free((void *)q->w.data);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double rl_test_replay_us(rl_backend *be, void (*part)(void *arg), void *arg) {
    enum { PER = 20, RUNS = 10, SKIPPED = 3 };
    double t[RUNS];
    for (int r = 0; r < RUNS; r++) {
        const double t0 = now_s();
        for (int i = 0; i < PER; i++) part(arg);
        CHECK(be->ops->sync(be) == RL_OK);
        t[r] = (now_s() - t0) * 1e6 / PER;
    }
    for (int i = SKIPPED; i < RUNS; i++)
        for (int j = i + 1; j < RUNS; j++)
            if (t[j] < t[i]) {
                const double v = t[i];
                t[i] = t[j];
                t[j] = v;
            }
    return t[SKIPPED + (RUNS - SKIPPED) / 2];
}
