/*
 * bench_dot.c - compute-side throughput of the k-quant and IQ4 dot kernels
 * (dot_k_avx2.c, dot_k_avx512.c, and the plain-C references for scale), one thread.
 *
 * Each type is quantized into a matrix small enough to stay in L2 (about 512 KiB of
 * weights, rows of --n columns) and one activation row; each kernel runs over all rows.
 * The kernels take turns in short timed passes (--rounds of them) and the fastest pass
 * of each counts, which keeps the figures steady on a machine shared with other work.
 * Reported per type and ISA: ns per call (one row) and GB/s of weight bytes. That is
 * in-cache, compute-bound throughput; the floor it is compared with is the single-thread
 * memory read bandwidth measured in the same run ("mem_read_gbps_1t"): a kernel whose
 * weight_gbps is well above its share of the memory bandwidth leaves matvec bound by
 * memory.
 *
 *   bench_dot [--n COLS] [--rounds R] [--no-mem]      prints one JSON object
 */
#include "backend/cpu/cpu.h"

#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bench_kernel {
    rl_type type;
    const char *name;
    rl__from_float_fn quant_w; /* weight quantizer */
    rl__from_float_fn quant_a; /* activation quantizer (the vec_dot type) */
    rl__vec_dot_fn fn[RL_CPU_ISA_COUNT];
} bench_kernel;

/* Direct references (not rl_quantize): they also pull the quantizers into the link. */
#define K(E, s, a)                                                                         \
    {RL_TYPE_##E, #E, rl__quant_##s, rl__quant_##a,                                        \
     {rl__vec_dot_##s##_ref, rl__vec_dot_##s##_avx2, rl__vec_dot_##s##_avx512}}
static const bench_kernel g_kernels[] = {
    K(Q2_K, q2_K, q8_K), K(Q3_K, q3_K, q8_K), K(Q4_K, q4_K, q8_K),       K(Q5_K, q5_K, q8_K),
    K(Q6_K, q6_K, q8_K), K(IQ4_NL, iq4_nl, q8_0), K(IQ4_XS, iq4_xs, q8_K),
};
#undef K

static const char *const g_isa_names[RL_CPU_ISA_COUNT] = {"ref", "avx2", "avx512"};

static bool isa_supported(rl_cpu_isa isa) {
    __builtin_cpu_init();
    switch (isa) {
    case RL_CPU_ISA_REF: return true;
    case RL_CPU_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
               __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
    case RL_CPU_ISA_AVX512:
        return isa_supported(RL_CPU_ISA_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");
    default: return false;
    }
}

/* Deterministic normals (xorshift + Box-Muller), so runs see the same data. */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static double rnd_unit(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return ((g_rng >> 11) + 0.5) / 9007199254740992.0;
}
static float rnd_normal(void) {
    return (float)(sqrt(-2.0 * log(rnd_unit())) * cos(6.283185307179586 * rnd_unit()));
}

/* Single-thread read bandwidth: sum a buffer far larger than the last-level cache. */
__attribute__((target("avx2"))) static double mem_read_gbps(void) {
    const size_t bytes = (size_t)1 << 30;
    uint8_t *buf = aligned_alloc(64, bytes);
    if (!buf) return 0.0;
    memset(buf, 1, bytes);
    double best = 0.0;
    for (int rep = 0; rep < 3; rep++) {
        __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
        const double t0 = rl__now();
        for (size_t o = 0; o < bytes; o += 128) {
            a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(buf + o)));
            a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(buf + o + 32)));
            a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(buf + o + 64)));
            a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(buf + o + 96)));
        }
        const double dt = rl__now() - t0;
        __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
        volatile long long sink = _mm256_extract_epi64(s, 0);
        (void)sink;
        if (bytes / dt / 1e9 > best) best = bytes / dt / 1e9;
    }
    free(buf);
    return best;
}

/* One (type, ISA) measurement. */
typedef struct bench_case {
    const bench_kernel *k;
    int isa;
    const uint8_t *w, *y;
    int64_t rows;
    size_t row_bytes;
    int rounds;     /* timed passes: the reference kernels are ~30x slower, fewer suffice */
    double best_ns; /* per call */
} bench_case;

int main(int argc, char **argv) {
    int64_t n = 4096;
    int rounds = 200;
    bool mem = true;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--n") && a + 1 < argc) n = atoll(argv[++a]);
        else if (!strcmp(argv[a], "--rounds") && a + 1 < argc) rounds = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--no-mem")) mem = false;
        else {
            fprintf(stderr, "usage: %s [--n COLS] [--rounds R] [--no-mem]\n", argv[0]);
            return 2;
        }
    }
    if (n <= 0 || n % QK_K != 0 || n > (1 << 20) || rounds < 1) {
        fprintf(stderr, "bench_dot: --n must be a positive multiple of %d (at most 2^20), "
                        "--rounds positive\n", QK_K);
        return 2;
    }
    rl__init_tables();
    const size_t weight_budget = (size_t)512 << 10;
    const int64_t max_rows = 256;
    float *act = malloc((size_t)n * sizeof(float));
    float *src = malloc((size_t)n * max_rows * sizeof(float));
    if (!act || !src) return 1;
    for (int64_t i = 0; i < n; i++) act[i] = rnd_normal();
    for (int64_t i = 0; i < n * max_rows; i++) src[i] = rnd_normal();

    enum { MAX_CASES = RL_ARRAY_LEN(g_kernels) * RL_CPU_ISA_COUNT };
    bench_case cases[MAX_CASES];
    uint8_t *bufs[2 * RL_ARRAY_LEN(g_kernels)];
    int n_cases = 0, n_bufs = 0;
    for (size_t k = 0; k < RL_ARRAY_LEN(g_kernels); k++) {
        const bench_kernel *bk = &g_kernels[k];
        size_t row_bytes = 0, act_bytes = 0;
        if (rl_type_row_bytes(bk->type, n, &row_bytes) != RL_OK ||
            rl_type_row_bytes(rl_type_vec_dot_type(bk->type), n, &act_bytes) != RL_OK)
            return 1;
        int64_t rows = (int64_t)(weight_budget / row_bytes);
        rows = rows < 1 ? 1 : rows > max_rows ? max_rows : rows;
        uint8_t *w = aligned_alloc(64, ((size_t)rows * row_bytes + 63) / 64 * 64);
        uint8_t *y = aligned_alloc(64, (act_bytes + 63) / 64 * 64);
        if (!w || !y) return 1;
        bufs[n_bufs++] = w;
        bufs[n_bufs++] = y;
        for (int64_t r = 0; r < rows; r++) bk->quant_w(src + r * n, w + r * row_bytes, n, NULL);
        bk->quant_a(act, y, n, NULL);
        for (int isa = 0; isa < RL_CPU_ISA_COUNT; isa++) {
            if (!bk->fn[isa] || !isa_supported((rl_cpu_isa)isa)) continue;
            const int nr = isa == RL_CPU_ISA_REF && rounds > 10 ? 10 : rounds;
            cases[n_cases++] = (bench_case){bk, isa, w, y, rows, row_bytes, nr, INFINITY};
        }
    }

    /* Rounds: every case makes one pass over its rows (two for the fast paths, so a pass
     * lasts long enough to time); the fastest pass per case counts. */
    volatile float sink = 0.0f;
    for (int r = 0; r < rounds; r++) {
        for (int c = 0; c < n_cases; c++) {
            bench_case *bc = &cases[c];
            if (r >= bc->rounds) continue;
            const rl__vec_dot_fn f = bc->k->fn[bc->isa];
            const int passes = bc->isa == RL_CPU_ISA_REF ? 1 : 2;
            float s = 0.0f;
            const double t0 = rl__now();
            for (int p = 0; p < passes; p++)
                for (int64_t row = 0; row < bc->rows; row++)
                    s += f(n, bc->w + row * bc->row_bytes, bc->y);
            const double ns = (rl__now() - t0) * 1e9 / (double)(passes * bc->rows);
            sink += s;
            if (ns < bc->best_ns) bc->best_ns = ns;
        }
    }

    printf("{\n  \"bench\": \"dot\",\n  \"n\": %lld,\n  \"threads\": 1,\n  \"rounds\": %d,\n",
           (long long)n, rounds);
    printf("  \"weight_bytes_target\": %zu,\n", weight_budget);
    if (mem) printf("  \"mem_read_gbps_1t\": %.2f,\n", mem_read_gbps());
    printf("  \"results\": [");
    for (int c = 0; c < n_cases; c++) {
        const bench_case *bc = &cases[c];
        printf("%s\n    {\"type\": \"%s\", \"isa\": \"%s\", \"rows\": %lld, "
               "\"weight_bytes_per_call\": %zu, \"ns_per_call\": %.1f, \"weight_gbps\": %.2f}",
               c ? "," : "", bc->k->name, g_isa_names[bc->isa], (long long)bc->rows, bc->row_bytes,
               bc->best_ns, (double)bc->row_bytes / bc->best_ns);
    }
    printf("\n  ]\n}\n");
    for (int b = 0; b < n_bufs; b++) free(bufs[b]);
    free(act);
    free(src);
    return 0;
}
