/*
 * bench_q4_0_mm.c - Q4_0 matmul over the GGUF layout and over the load-time repacked
 * Q4_0x16 layout (src/backend/cpu/q4_0x16.h), side by side, at several token counts: the
 * 1 token of decode, the 8 of a server step with 8 streams, the 128 of a prompt.
 *
 *   bench_q4_0_mm [--rows R] [--cols C] [--tokens 1,8,128] [-t N] [--reps K] [--no-hugepages]
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

int main(int argc, char **argv) {
    int64_t rows = 32768, cols = 2048;
    int nth = 0, reps = 20;
    const char *toks = "1,8,128";
    bool hp = true;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--rows") && a + 1 < argc) rows = atoll(argv[++a]);
        else if (!strcmp(argv[a], "--cols") && a + 1 < argc) cols = atoll(argv[++a]);
        else if (!strcmp(argv[a], "--tokens") && a + 1 < argc) toks = argv[++a];
        else if (!strcmp(argv[a], "-t") && a + 1 < argc) nth = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--reps") && a + 1 < argc) reps = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--no-hugepages")) hp = false;
        else {
            fprintf(stderr, "usage: %s [--rows R] [--cols C] [--tokens LIST] [-t N] [--reps K] "
                            "[--no-hugepages]\n", argv[0]);
            return 2;
        }
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
