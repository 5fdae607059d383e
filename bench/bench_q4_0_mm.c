/*
 * bench_q4_0_mm.c - Q4_0 matmul over the GGUF layout and over the load-time repacked
 * Q4_0x16 layout (src/backend/cpu/q4_0x16.h), side by side, at several token counts: the
 * 1 token of decode, the 8 of a server step with 8 streams, the 128 of a prompt.
 *
 *   bench_q4_0_mm [--rows R] [--cols C] [--tokens 1,8,128] [-t N] [--reps K] [--no-hugepages]
 *   bench_q4_0_mm --shapes [--tokens 1,8,32,256] [-t N] [--reps K]
 *   bench_q4_0_mm --kernel [--cols C] [--tokens 1,8,32,256] [--reps K]
 *
 * --shapes: a Llama-3.2-1B layer's products one after the other, rows x cols = 2048 x 2048
 * (q, o), 512 x 2048 (k, v), 8192 x 2048 (gate, up), 2048 x 8192 (down): 2-9 MiB each,
 * so they sit in L3 between calls (compute, not DRAM, bounds them from a few tokens on).
 * --kernel: the Q4_0x16 tile kernel alone, one thread, on 8 tiles (48 rows: L2; --rows R:
 * R / 6 tiles) and activations prepared once: "kernel_gmacs" is the tile's own rate, to compare
 * with bench_vnni_peak's vpdpbusd peak (64 MACs each).
 *
 * Each line (JSON) gives the best time of K calls of rl_matmul's path (activation
 * quantization included) and the product rate in GMAC/s (rows * cols * tokens / time),
 * next to the time of reading the weights once at the bandwidth of the run's own 1-token
 * GGUF-layout call ("floor_ms": the weights do not fit the caches at the default size,
 * so a call takes at least that). Weights: random codes and scales; the layouts hold the
 * same blocks (rl__q4_0x16_pack). Both sit in memory that asks for transparent huge pages,
 * as the packed copies of a model do (the GGUF layout of a model is in the file's 4 KiB
 * page-cache pages), unless --no-hugepages.
 */
#include "backend/cpu/cpu.h"
#include "backend/cpu/q4_0x16.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static void *huge_alloc(size_t bytes, bool hp) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    madvise(p, bytes, hp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
    return p;
}

/* The tile kernel alone over 8 tiles of n columns, nt tokens at a time: GMAC/s, best of
 * reps runs of enough calls to take ~2 ms. */
static int bench_kernel(int64_t n, int64_t tiles, const char *toks, int reps) {
    rl__packed_kernels k;
    if (!rl__packed_kernels_get(RL_TYPE_Q4_0, rl_cpu_isa_active(), &k)) {
        fprintf(stderr, "bench_q4_0_mm: no Q4_0x16 kernels on this CPU\n");
        return 1;
    }
    const int64_t rows = tiles * (int64_t)k.gemm_rows, max_tok = 256;
    const size_t rb = (size_t)n / 32 * sizeof(block_q4_0);
    const size_t yst = ((size_t)n * 2 + (size_t)n / 4 + (size_t)n / 8 + 63) & ~(size_t)63;
    uint8_t *w = aligned_alloc(64, rb * (size_t)rows), *wp = aligned_alloc(64, rb * (size_t)rows);
    uint8_t *ys = aligned_alloc(64, yst * (size_t)max_tok);
    float *out = aligned_alloc(64, sizeof(float) * (size_t)(rows * max_tok));
    if (!w || !wp || !ys || !out) return 1;
    for (int64_t b = 0; b < rows * n / 32; b++) {
        block_q4_0 *blk = (block_q4_0 *)w + b;
        blk->d = rl__fp32_to_fp16((float)(rnd() % 1000) * 1e-5f + 1e-3f);
        for (int j = 0; j < 16; j++) blk->qs[j] = (uint8_t)rnd();
    }
    rl__q4_0x16_pack(w, wp, n, rows);
    for (int64_t t = 0; t < max_tok; t++) {
        int8_t *qs = (int8_t *)(ys + (size_t)t * yst);
        float *d = (float *)(ys + (size_t)t * yst + (size_t)n);
        for (int64_t i = 0; i < n; i++) qs[i] = (int8_t)(rnd() % 255 - 127);
        for (int64_t b = 0; b < n / 32; b++) d[b] = d[b + n / 32] = 1e-2f;
        k.prep(qs, n, (int32_t *)(d + 2 * (n / 32)));
    }
    for (const char *p = toks; *p;) {
        const int nt = atoi(p);
        if (nt < 1 || nt > max_tok) return 2;
        int64_t calls = 1;
        double best = 1e30;
        for (int r = 0; r < reps + 1; r++) {
            const double t0 = rl__now();
            for (int64_t c = 0; c < calls; c++)
                for (int t = 0; t < nt; t += k.gemm_toks)
                    for (int64_t row = 0; row < rows; row += k.gemm_rows)
                        k.gemm(n, RL_MIN(k.gemm_toks, nt - t), wp + (size_t)row * rb, rb,
                               ys + (size_t)t * yst, yst, out + (size_t)t * rows + row,
                               (size_t)rows);
            const double dt = (rl__now() - t0) / (double)calls;
            if (r == 0) calls = RL_MAX((int64_t)1, (int64_t)(2e-3 / (dt > 0 ? dt : 1e-9)));
            else if (dt < best) best = dt;
        }
        printf("{\"kernel\": \"q4_0x16\", \"rows\": %lld, \"cols\": %lld, \"tokens\": %d, "
               "\"kernel_us\": %.3f, \"kernel_gmacs\": %.1f}\n",
               (long long)rows, (long long)n, nt, best * 1e6,
               (double)rows * (double)n * nt / best * 1e-9);
        fflush(stdout);
        while (*p && *p != ',') p++;
        if (*p == ',') p++;
    }
    free(w), free(wp), free(ys), free(out);
    return 0;
}

int main(int argc, char **argv) {
    int64_t rows = 32768, cols = 2048;
    int nth = 0, reps = 20;
    const char *toks = NULL;
    bool hp = true, shapes = false, kernel = false, rows_set = false;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--rows") && a + 1 < argc) rows = atoll(argv[++a]), rows_set = true;
        else if (!strcmp(argv[a], "--cols") && a + 1 < argc) cols = atoll(argv[++a]);
        else if (!strcmp(argv[a], "--tokens") && a + 1 < argc) toks = argv[++a];
        else if (!strcmp(argv[a], "-t") && a + 1 < argc) nth = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--reps") && a + 1 < argc) reps = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--no-hugepages")) hp = false;
        else if (!strcmp(argv[a], "--shapes")) shapes = true;
        else if (!strcmp(argv[a], "--kernel")) kernel = true;
        else {
            fprintf(stderr, "usage: %s [--rows R] [--cols C] [--tokens LIST] [-t N] [--reps K] "
                            "[--no-hugepages] [--shapes] [--kernel]\n", argv[0]);
            return 2;
        }
    }
    if (!toks) toks = shapes || kernel ? "1,8,32,256" : "1,8,128";
    if (kernel) {
        rl__init_tables();
        if (cols % 512 != 0 || cols <= 0 || reps < 1) return 2;
        return bench_kernel(cols, rows_set ? RL_MAX((int64_t)1, rows / 6) : 8, toks, reps);
    }
    if (shapes) {
        /* each shape in its own run of this program, as given on the command line */
        static const int64_t sh[][2] = {{2048, 2048}, {512, 2048}, {8192, 2048}, {2048, 8192}};
        int rc = 0;
        for (size_t i = 0; i < sizeof sh / sizeof sh[0] && rc == 0; i++) {
            char cmd[512];
            snprintf(cmd, sizeof cmd, "%s --rows %lld --cols %lld --tokens %s --reps %d -t %d",
                     argv[0], (long long)sh[i][0], (long long)sh[i][1], toks, reps, nth);
            fflush(stdout);
            rc = system(cmd);
        }
        return rc == 0 ? 0 : 1;
    }
    if (rows < 2 || cols % 512 != 0 || cols <= 0 || reps < 1) {
        fprintf(stderr, "bench_q4_0_mm: --cols must be a positive multiple of 512\n");
        return 2;
    }
    rl__init_tables();
    const size_t rb = (size_t)cols / 32 * sizeof(block_q4_0), wbytes = rb * (size_t)rows;
    uint8_t *w = huge_alloc(wbytes, hp), *wp = huge_alloc(wbytes, hp);
    if (!w || !wp) return 1;
    for (int64_t b = 0; b < rows * cols / 32; b++) {
        block_q4_0 *blk = (block_q4_0 *)w + b;
        blk->d = rl__fp32_to_fp16((float)(rnd() % 1000) * 1e-5f + 1e-3f);
        for (int j = 0; j < 16; j++) blk->qs[j] = (uint8_t)rnd();
    }
    rl__q4_0x16_pack(w, wp, cols, rows);
    rl_threadpool *pool;
    if (rl_threadpool_create(nth, &pool) != RL_OK) return 1;
    const int max_tok = 512;
    float *x = malloc((size_t)cols * max_tok * sizeof(float));
    float *y = malloc((size_t)rows * max_tok * sizeof(float));
    if (!x || !y) return 1;
    for (int64_t i = 0; i < cols * max_tok; i++) x[i] = (float)((int64_t)(rnd() % 2001) - 1000) * 1e-3f;
    double floor_ms = 0;
    for (const char *p = toks; *p;) {
        int nt = atoi(p);
        if (nt < 1 || nt > max_tok) return 2;
        double best[2] = {1e30, 1e30};
        for (int k = 0; k < 2; k++) {
            for (int r = 0; r < reps + 1; r++) {
                const double t0 = rl__now();
                rl__matmul_packed(pool, RL_TYPE_Q4_0, w, k ? wp : NULL, rows, cols, x, nt, y);
                const double dt = rl__now() - t0;
                if (r > 0 && dt < best[k]) best[k] = dt;
            }
        }
        if (nt == 1 && floor_ms == 0) floor_ms = best[0] * 1e3;
        const double macs = (double)rows * (double)cols * nt;
        printf("{\"rows\": %lld, \"cols\": %lld, \"tokens\": %d, \"threads\": %d, "
               "\"gguf_ms\": %.3f, \"q4_0x16_ms\": %.3f, \"gguf_gmacs\": %.1f, "
               "\"q4_0x16_gmacs\": %.1f, \"speedup\": %.3f, \"weight_mib\": %.1f, "
               "\"floor_ms\": %.3f, \"hugepages\": %s}\n",
               (long long)rows, (long long)cols, nt, rl_threadpool_n_threads(pool),
               best[0] * 1e3, best[1] * 1e3, macs / best[0] * 1e-9, macs / best[1] * 1e-9,
               best[0] / best[1], (double)wbytes / 1048576.0, floor_ms, hp ? "true" : "false");
        fflush(stdout);
        while (*p && *p != ',') p++;
        if (*p == ',') p++;
    }
    rl_threadpool_free(pool);
    return 0;
}
