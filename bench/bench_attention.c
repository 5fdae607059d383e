/*
 * bench_attention.c - the CPU backend's attention op (attention.c) on an F16 cache laid
 * out like the paged KV cache of a server step: S sequences, each with C cached tokens in
 * 16-cell blocks scattered over the pool. Decode: one query token per sequence over its C
 * cells; prefill: P query tokens per sequence with causal spans. The default shape is
 * Llama-3.2-1B's (32 heads, 8 KV heads, head dim 64).
 *
 *   bench_attention [-s S] [-c C] [-p P] [--heads H,HKV,D] [-t N] [--reps K] [--layers L]
 *
 * Each JSON line gives the best time of K calls per path: "avx2" (RUVLLM_ATTN_AVX2=1, the
 * AVX2 inner loops) and "avx512" (attn_avx512.c), alternating so that load from other
 * processes falls on both alike. Every call uses the next of L layers' caches (L chosen
 * so the caches exceed 64 MiB, or --layers), as a forward pass does between its weight
 * products, so the cells come from memory rather than cache (--layers 1: from cache).
 */
#include "backend/backend.h"
#include "backend/cpu/backend_cpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    int S = 8, C = 128, P = 0, H = 32, HKV = 8, D = 64, T = 2, reps = 50, L = 0, huge = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-s")) S = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-c")) C = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-p")) P = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-t")) T = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--layers")) L = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--huge")) huge = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--heads")) sscanf(argv[i + 1], "%d,%d,%d", &H, &HKV, &D);
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    const int n_q = P > 0 ? P : 1;         /* query tokens per sequence */
    const int bs = 16, nb_seq = (C + bs - 1) / bs, n_blocks = S * nb_seq;
    const int n_cells = n_blocks * bs, n_embd = HKV * D;
    rl_backend *be = NULL;
    if (rl__backend_cpu_create(T, &be) != RL_OK) return 1;
    size_t rb = 0;
    rl_type_row_bytes(RL_TYPE_F16, n_embd, &rb);
    const size_t layer_bytes = 2 * rb * (size_t)n_cells;
    if (L <= 0) L = (int)RL_MAX(1, (64u << 20) / layer_bytes + 1);
    uint8_t *pool = NULL;
    rl_kv_layer *kv = calloc((size_t)L, sizeof *kv);
    float *k = malloc(sizeof(float) * (size_t)n_cells * n_embd);
    float *v = malloc(sizeof(float) * (size_t)n_cells * n_embd);
    int32_t *all = malloc(sizeof(int32_t) * (size_t)n_cells);
    for (int i = 0; i < n_cells; i++) all[i] = i;
    for (int i = 0; i < n_cells * n_embd; i++) {
        k[i] = (float)((int)(rnd() % 2001) - 1000) / 500.0f;
        v[i] = (float)((int)(rnd() % 2001) - 1000) / 1000.0f;
    }
    for (int l = 0; l < L; l++) {
        kv[l] = (rl_kv_layer){.type = RL_TYPE_F16, .n_embd_k = n_embd, .n_embd_v = n_embd,
                              .k_row_bytes = rb, .v_row_bytes = rb};
        if (huge) {
            if (!l) {
                pool = mmap(NULL, layer_bytes * (size_t)L, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
                if (pool == MAP_FAILED) return 1;
                madvise(pool, layer_bytes * (size_t)L, MADV_HUGEPAGE);
            }
            kv[l].k = pool + layer_bytes * (size_t)l;
            kv[l].v = pool + layer_bytes * (size_t)l + rb * (size_t)n_cells;
        } else {
            kv[l].k = be->ops->alloc(be, rb * (size_t)n_cells);
            kv[l].v = be->ops->alloc(be, rb * (size_t)n_cells);
        }
        be->ops->kv_write(be, &kv[l], k, n_embd, v, n_embd, n_cells, all);
    }
    /* the blocks in a random order; sequence s owns blocks perm[s * nb_seq ...] */
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)n_blocks);
    for (int i = 0; i < n_blocks; i++) perm[i] = i;
    for (int i = n_blocks - 1; i > 0; i--) {
        int j = (int)(rnd() % (uint64_t)(i + 1)), x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
    /* one call over all sequences: cells lists each sequence's C cells in order and the
     * query tokens' spans index into it (the last n_q of a sequence's cells are its own) */
    const int n_tok = S * n_q;
    int32_t *cells = malloc(sizeof(int32_t) * (size_t)S * C);
    int32_t *span = malloc(sizeof(int32_t) * 2 * (size_t)n_tok);
    for (int s = 0; s < S; s++) {
        for (int c = 0; c < C; c++) cells[s * C + c] = perm[s * nb_seq + c / bs] * bs + c % bs;
        for (int t = 0; t < n_q; t++) {
            span[2 * (s * n_q + t)] = s * C;
            span[2 * (s * n_q + t) + 1] = s * C + C - (n_q - 1 - t);
        }
    }
    float *q = malloc(sizeof(float) * (size_t)n_tok * H * D);
    float *out = malloc(sizeof(float) * (size_t)n_tok * H * D);
    for (int i = 0; i < n_tok * H * D; i++) q[i] = (float)((int)(rnd() % 2001) - 1000) / 1000.0f;
    rl_attn_args a = {.n_tok = n_tok, .n_head = H, .n_head_kv = HKV, .head_dim_k = D,
                      .head_dim_v = D, .q = q, .q_ld = (int64_t)H * D, .out = out,
                      .out_ld = (int64_t)H * D, .cells = cells, .span = span,
                      .scale = 1.0f / sqrtf((float)D)};
    double best[2] = {1e30, 1e30};
    int l = 0;
    for (int r = 0; r < reps; r++) {
        for (int path = 0; path < 2; path++) {
            setenv("RUVLLM_ATTN_AVX2", path ? "0" : "1", 1);
            double t0 = now();
            be->ops->attention(be, &kv[l], &a);
            double dt = now() - t0;
            l = (l + 1) % L;
            if (r > 0 && dt < best[path]) best[path] = dt;
        }
    }
    printf("{\"seqs\": %d, \"ctx\": %d, \"q_per_seq\": %d, \"heads\": [%d, %d, %d], "
           "\"threads\": %d, \"layers\": %d, \"avx2_us\": %.1f, \"avx512_us\": %.1f}\n",
           S, C, n_q, H, HKV, D, T, L, best[0] * 1e6, best[1] * 1e6);
    for (int i = 0; i < L && !huge; i++) {
        be->ops->free(be, kv[i].k);
        be->ops->free(be, kv[i].v);
    }
    if (huge) munmap(pool, layer_bytes * (size_t)L);
    rl__backend_free(be);
    free(kv);
    free(k);
    free(v);
    free(all);
    free(perm);
    free(cells);
    free(span);
    free(q);
    free(out);
    return 0;
}
