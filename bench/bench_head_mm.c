/*
 * bench_head_mm.c - Q6_K matmul over the GGUF layout and over the load-time repacked
 * Q6_Kx16 layout (src/backend/cpu/q6_kx16.h), side by side, at several token counts. The
 * default shape is a Llama-3 output head (128,256 rows x 2,048 columns, the Q6_K matrix of
 * a Q4_0 or Q4_K_M model): 1 token is decode, 8 a server step with 8 streams.
 *
 *   bench_head_mm [--rows R] [--cols C] [--tokens 1,2,...] [-t N] [--reps K] [--only L]
 *
 * --only gguf|q6_kx16 times one layout alone (for perf stat's counts; the other's figures
 * are then 0).
 * Each line (JSON) gives the best time of K calls of rl_matmul's path (activation
 * quantization included) per layout and the product rate in GMAC/s (rows * cols * tokens
 * / time). The calls of the two layouts alternate, so load from other processes falls on
 * both alike. Weights: random codes, scales and d; the layouts hold the same blocks
 * (rl__q6_kx16_pack), both in memory that asks for transparent huge pages, as the packed
 * copies of a model do.
 */
#include "backend/cpu/cpu.h"
#include "backend/cpu/q6_kx16.h"

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

static void *huge_alloc(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    madvise(p, bytes, MADV_HUGEPAGE);
    return p;
}

int main(int argc, char **argv) {
    int64_t rows = 128256, cols = 2048;
    int nth = 0, reps = 10;
    const char *toks = "1,2,3,4,5,6,7,8";
    int only = -1;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--rows") && a + 1 < argc) rows = atoll(argv[++a]);
        else if (!strcmp(argv[a], "--cols") && a + 1 < argc) cols = atoll(argv[++a]);
        else if (!strcmp(argv[a], "--tokens") && a + 1 < argc) toks = argv[++a];
        else if (!strcmp(argv[a], "-t") && a + 1 < argc) nth = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--reps") && a + 1 < argc) reps = atoi(argv[++a]);
        else if (!strcmp(argv[a], "--only") && a + 1 < argc)
            only = !strcmp(argv[++a], "gguf") ? 0 : !strcmp(argv[a], "q6_kx16") ? 1 : -2;
        else only = -2;
        if (only == -2) {
            fprintf(stderr,
                    "usage: %s [--rows R] [--cols C] [--tokens LIST] [-t N] [--reps K] "
                    "[--only gguf|q6_kx16]\n",
                    argv[0]);
            return 2;
        }
    }
    if (rows < Q6_KX16_ROWS || cols % QK_K != 0 || cols <= 0 || reps < 1) {
        fprintf(stderr, "bench_head_mm: --cols must be a positive multiple of 256, --rows >= 16\n");
        return 2;
    }
    rl__init_tables();
    const size_t rb = (size_t)cols / QK_K * sizeof(block_q6_K), wbytes = rb * (size_t)rows;
    uint8_t *w = huge_alloc(wbytes), *wp = huge_alloc(wbytes);
    if (!w || !wp) return 1;
    for (int64_t b = 0; b < rows * cols / QK_K; b++) {
        block_q6_K *blk = (block_q6_K *)w + b;
        for (size_t j = 0; j < sizeof blk->ql; j++) blk->ql[j] = (uint8_t)rnd();
        for (size_t j = 0; j < sizeof blk->qh; j++) blk->qh[j] = (uint8_t)rnd();
        for (size_t j = 0; j < sizeof blk->scales; j++) blk->scales[j] = (int8_t)rnd();
        blk->d = rl__fp32_to_fp16((float)(rnd() % 1000) * 1e-6f + 1e-4f);
    }
    rl__q6_kx16_pack(w, wp, cols, rows);
    rl_threadpool *pool;
    if (rl_threadpool_create(nth, &pool) != RL_OK) return 1;
    const int max_tok = 512;
    float *x = malloc((size_t)cols * max_tok * sizeof(float));
    float *y = malloc((size_t)rows * max_tok * sizeof(float));
    if (!x || !y) return 1;
    for (int64_t i = 0; i < cols * max_tok; i++)
        x[i] = (float)((int64_t)(rnd() % 2001) - 1000) * 1e-3f;
    for (const char *p = toks; *p;) {
        int nt = atoi(p);
        if (nt < 1 || nt > max_tok) return 2;
        double best[2] = {1e30, 1e30};
        for (int r = 0; r < reps + 1; r++)
            for (int k = 0; k < 2; k++) {
                if (only >= 0 && k != only) {
                    best[k] = 0;
                    continue;
                }
                const double t0 = rl__now();
                rl__matmul_packed(pool, RL_TYPE_Q6_K, w, k ? wp : NULL, rows, cols, x, nt, y);
                const double dt = rl__now() - t0;
                if (r > 0 && dt < best[k]) best[k] = dt;
            }
        const double macs = (double)rows * (double)cols * nt;
        printf("{\"rows\": %lld, \"cols\": %lld, \"tokens\": %d, \"threads\": %d, "
               "\"gguf_ms\": %.3f, \"q6_kx16_ms\": %.3f, \"gguf_gmacs\": %.1f, "
               "\"q6_kx16_gmacs\": %.1f, \"speedup\": %.3f, \"weight_mib\": %.1f}\n",
               (long long)rows, (long long)cols, nt, rl_threadpool_n_threads(pool),
               best[0] * 1e3, best[1] * 1e3, best[0] > 0 ? macs / best[0] * 1e-9 : 0,
               best[1] > 0 ? macs / best[1] * 1e-9 : 0, best[1] > 0 ? best[0] / best[1] : 0,
               (double)wbytes / 1048576.0);
        fflush(stdout);
        while (*p && *p != ',') p++;
        if (*p == ',') p++;
    }
    rl_threadpool_free(pool);
    return 0;
}
