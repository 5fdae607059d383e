/*
 * bench_fgemm.c - many-token F16/BF16 matmul (rl_matmul's packed GEMM, cpu.h rl__fgemm)
 * against the FP32 FMA peak of the cores it runs on, measured in the same run.
 *
 * Shapes: one Llama-3.2-1B layer (q, k, v, o, gate, up, down; 2048 wide, FFN 8192) for
 * n_tok tokens. The peak is a loop of independent zmm (or ymm) FMAs, one per thread of
 * the pool at once. Every figure is given per wall second and per CPU second of this
 * process (the CPU figure stays meaningful while other jobs share the cores); fraction =
 * matmul FLOP/s over peak FLOP/s, both per CPU second.
 *   bench_fgemm [n_tok=128] [threads=2] [reps=5] [f16|bf16]
 * Prints one JSON object.
 */
#include "../include/ruvllm.h"

#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define PEAK_ITERS 50000000L

/* 16 independent FMA chains: enough to cover the latency on any core we know. */
__attribute__((target("avx512f"))) static void *peak_avx512(void *arg) {
    __m512 a[16];
    for (int i = 0; i < 16; i++) a[i] = _mm512_set1_ps(1.0f + (float)i * 1e-7f);
    const __m512 m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
    for (long i = 0; i < PEAK_ITERS; i++) {
        _Pragma("GCC unroll 16") for (int j = 0; j < 16; j++) a[j] = _mm512_fmadd_ps(a[j], m, c);
    }
    float s = 0;
    for (int i = 0; i < 16; i++) s += _mm512_reduce_add_ps(a[i]);
    *(float *)arg = s;
    return NULL;
}

__attribute__((target("avx2,fma"))) static void *peak_avx2(void *arg) {
    __m256 a[12];
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps(1.0f + (float)i * 1e-7f);
    const __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < PEAK_ITERS; i++) {
        _Pragma("GCC unroll 12") for (int j = 0; j < 12; j++) a[j] = _mm256_fmadd_ps(a[j], m, c);
    }
    float s = 0, t[8];
    for (int i = 0; i < 12; i++) {
        _mm256_storeu_ps(t, a[i]);
        s += t[0];
    }
    *(float *)arg = s;
    return NULL;
}

/* Peak FLOP/s of nth cores at once: per wall second and per CPU second. */
static void peak(int nth, bool avx512, double *wall_fs, double *cpu_fs) {
    pthread_t th[64];
    float out[64];
    if (nth > 64) nth = 64;
    double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
    for (int i = 0; i < nth; i++)
        pthread_create(&th[i], NULL, avx512 ? peak_avx512 : peak_avx2, &out[i]);
    for (int i = 0; i < nth; i++) pthread_join(th[i], NULL);
    double w = now(CLOCK_MONOTONIC) - w0, c = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
    double flop = (double)PEAK_ITERS * (avx512 ? 16 * 16 : 12 * 8) * 2.0 * nth;
    *wall_fs = flop / w;
    *cpu_fs = flop / c * nth; /* FLOP per CPU second, times the cores */
}

int main(int argc, char **argv) {
    const int64_t n_tok = argc > 1 ? atoll(argv[1]) : 128;
    const int nth = argc > 2 ? atoi(argv[2]) : 2;
    const int reps = argc > 3 ? atoi(argv[3]) : 5;
    const rl_type wt = argc > 4 && strcmp(argv[4], "bf16") == 0 ? RL_TYPE_BF16 : RL_TYPE_F16;
    static const int64_t shapes[][2] = {{2048, 2048}, {512, 2048},  {512, 2048}, {2048, 2048},
                                        {8192, 2048}, {8192, 2048}, {2048, 8192}};
    const int n_shapes = (int)(sizeof shapes / sizeof shapes[0]);
    rl_threadpool *pool = NULL;
    if (n_tok < 1 || reps < 1 || rl_threadpool_create(nth, &pool) != RL_OK) return 1;
    void *w[7];
    float *x = malloc((size_t)n_tok * 8192 * 4), *y = malloc((size_t)n_tok * 8192 * 4);
    double flop = 0;
    for (int s = 0; s < n_shapes; s++) {
        const int64_t rows = shapes[s][0], cols = shapes[s][1];
        float *wf = malloc((size_t)(rows * cols) * 4);
        for (int64_t i = 0; i < rows * cols; i++)
            wf[i] = (float)((i * 7919) % 2003) / 2003.0f - 0.5f;
        w[s] = malloc((size_t)(rows * cols) * 2);
        rl_quantize(wt, wf, w[s], rows, cols, NULL);
        free(wf);
        flop += 2.0 * (double)rows * (double)cols * (double)n_tok;
    }
    for (int64_t i = 0; i < n_tok * 8192; i++) x[i] = (float)(i % 101) / 101.0f - 0.5f;
    double best_w = 1e30, best_c = 1e30;
    for (int r = 0; r <= reps; r++) {
        double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
        for (int s = 0; s < n_shapes; s++)
            if (rl_matmul(pool, wt, w[s], shapes[s][0], shapes[s][1], x, n_tok, y) != RL_OK)
                return 1;
        double wt_ = now(CLOCK_MONOTONIC) - w0, ct = now(CLOCK_PROCESS_CPUTIME_ID) - c0;
        if (r == 0) continue; /* warm-up */
        if (wt_ < best_w) best_w = wt_;
        if (ct < best_c) best_c = ct;
    }
    const bool avx512 = rl_cpu_isa_active() == RL_CPU_ISA_AVX512;
    double pk_w, pk_c;
    peak(nth, avx512, &pk_w, &pk_c);
    const double layer_fs_w = flop / best_w, layer_fs_c = flop / best_c * nth;
    /* Llama-3.2-1B: 16 such layers per token (the lm_head runs for the last token only) */
    printf("{\"type\": \"%s\", \"n_tok\": %lld, \"threads\": %d, \"isa\": \"%s\",\n"
           " \"layer_ms_wall\": %.3f, \"layer_ms_cpu_per_thread\": %.3f,\n"
           " \"gflops_wall\": %.1f, \"gflops_cpu\": %.1f,\n"
           " \"peak_gflops_wall\": %.1f, \"peak_gflops_cpu\": %.1f, \"fraction_cpu\": %.3f,\n"
           " \"l1b_matmul_tok_s_wall\": %.1f, \"l1b_matmul_tok_s_cpu\": %.1f}\n",
           rl_type_name(wt), (long long)n_tok, nth, avx512 ? "avx512" : "avx2", best_w * 1e3,
           best_c / nth * 1e3, layer_fs_w * 1e-9, layer_fs_c * 1e-9, pk_w * 1e-9, pk_c * 1e-9,
           layer_fs_c / pk_c, (double)n_tok / (16 * best_w), (double)n_tok / (16 * best_c / nth));
    for (int s = 0; s < n_shapes; s++) free(w[s]);
    free(x);
    free(y);
    rl_threadpool_free(pool);
    return 0;
}
