/*
 * bench_decode_mm.c - the matrix-vector products of one decode step of a GGUF model, in
 * model order, and nothing else: how fast the weights stream through rl_matmul at the
 * model's own matrix sizes (a 1B model's are 0.6..10 MB, where the start and end of each
 * product weigh more than in a 256 MiB kernel benchmark).
 *
 * Per pass, for every layer: attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up,
 * ffn_down, then the output head (output.weight, or token_embd.weight when tied). Each
 * product's time is taken on its own; the pass reads every weight once, far more bytes
 * than the last-level cache holds, so each product reads its weights from memory, as in
 * decode. The floor is the memory bandwidth measured in the same run (rl_membw, a run
 * before each pass): "ratio" = weight GB/s of the pass / that bandwidth.
 *
 *   bench_decode_mm MODEL.gguf [-t N] [--passes P] [--anon] [--no-hugepages] [--map-hp]
 *
 * --anon copies the weights into anonymous memory (transparent huge pages unless
 * --no-hugepages) instead of reading the file mapping (4 KiB page-cache pages), to show
 * what huge pages are worth. --map-hp maps the file itself at a 2 MiB-aligned address
 * with MADV_HUGEPAGE: where the page cache holds the file in 2 MiB folios (a file first
 * read through such a mapping), the kernel maps them with huge pages, no copy
 * ("file_pmd_mapped_kib" says how much). Prints one JSON object; "pairs" lists, per pass, the
 * bandwidth of the run just before it and the pass's weight GB/s (the bandwidth of a shared host
 * drifts: the pairs show the pass speed at each level).
 */
#include "ruvllm.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#define N_KINDS 8
static const char *const k_kinds[N_KINDS] = {"attn_q",   "attn_k", "attn_v",   "attn_output",
                                             "ffn_gate", "ffn_up", "ffn_down", "output"};

typedef struct mm {
    int kind;
    rl_type type;
    int64_t rows, cols;
    size_t bytes;
    const void *w;
} mm;

int main(int argc, char **argv) {
    const char *path = NULL;
    int nth = 0, passes = 5;
    bool anon = false, hp = true, map_hp = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc)
            nth = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--passes") && i + 1 < argc)
            passes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--anon"))
            anon = true;
        else if (!strcmp(argv[i], "--no-hugepages"))
            hp = false;
        else if (!strcmp(argv[i], "--map-hp"))
            map_hp = true;
        else if (argv[i][0] != '-')
            path = argv[i];
        else {
            fprintf(stderr, "usage: bench_decode_mm MODEL.gguf [-t N] [--passes P] [--anon] "
                            "[--no-hugepages] [--map-hp]\n");
            return 2;
        }
    }
    if (!path || passes < 1 || passes > 1000) {
        fprintf(stderr, "bench_decode_mm: need a model path; --passes 1..1000\n");
        return 2;
    }
    char err[256];
    rl_gguf *g = NULL;
    if (rl_gguf_open(path, &g, err, sizeof err) != RL_OK) {
        fprintf(stderr, "bench_decode_mm: %s\n", err);
        return 1;
    }
    /* the products in decode order */
    mm *ms = calloc((size_t)rl_gguf_n_tensors(g) + 1, sizeof *ms);
    int n_mm = 0;
    size_t total = 0;
    for (int layer = 0; ms; layer++) {
        int found = 0;
        for (int k = 0; k < N_KINDS - 1; k++) {
            char name[96];
            snprintf(name, sizeof name, "blk.%d.%s.weight", layer, k_kinds[k]);
            int64_t ti = rl_gguf_find_tensor(g, name);
            rl_gguf_tensor_info info;
            if (ti < 0 || rl_gguf_tensor(g, ti, &info) != RL_OK) continue;
            ms[n_mm++] = (mm){k, info.type, info.ne[1], info.ne[0], info.nbytes, info.data};
            total += info.nbytes;
            found++;
        }
        if (!found) break;
    }
    int64_t ti = rl_gguf_find_tensor(g, "output.weight");
    if (ti < 0) ti = rl_gguf_find_tensor(g, "token_embd.weight");
    rl_gguf_tensor_info info;
    if (!ms || ti < 0 || rl_gguf_tensor(g, ti, &info) != RL_OK) {
        fprintf(stderr, "bench_decode_mm: no layers or output head in %s\n", path);
        return 1;
    }
    ms[n_mm++] = (mm){N_KINDS - 1, info.type, info.ne[1], info.ne[0], info.nbytes, info.data};
    total += info.nbytes;

    uint8_t *copy = NULL, *fmap = NULL;
    size_t fmap_bytes = 0;
    if (map_hp && !anon) {
        /* the file at an address congruent to its offsets modulo 2 MiB */
        const size_t al = (size_t)2 << 20;
        int fd = open(path, O_RDONLY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0) {
            fprintf(stderr, "bench_decode_mm: cannot open %s\n", path);
            return 1;
        }
        fmap_bytes = (size_t)st.st_size;
        uint8_t *r = mmap(NULL, fmap_bytes + al, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        uint8_t *a = r == MAP_FAILED ? NULL : (uint8_t *)(((uintptr_t)r + al - 1) & ~(al - 1));
        fmap = a ? mmap(a, fmap_bytes, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0) : MAP_FAILED;
        close(fd);
        if (fmap == MAP_FAILED) {
            fprintf(stderr, "bench_decode_mm: cannot map %s\n", path);
            return 1;
        }
        madvise(fmap, fmap_bytes, MADV_HUGEPAGE);
        const size_t base = rl_gguf_data_offset(g);
        const uint8_t *g0 = NULL;
        rl_gguf_tensor_info t0;
        if (rl_gguf_tensor(g, 0, &t0) == RL_OK) g0 = (const uint8_t *)t0.data - t0.offset;
        for (int i = 0; i < n_mm; i++)
            ms[i].w = fmap + base + (size_t)((const uint8_t *)ms[i].w - g0);
    }
    if (anon) {
        copy = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (copy == MAP_FAILED) {
            fprintf(stderr, "bench_decode_mm: out of memory for the copy\n");
            return 1;
        }
        if (hp) madvise(copy, total, MADV_HUGEPAGE);
        size_t off = 0;
        for (int i = 0; i < n_mm; i++) {
            memcpy(copy + off, ms[i].w, ms[i].bytes);
            ms[i].w = copy + off;
            off += ms[i].bytes;
        }
    }

    rl_threadpool *pool = NULL;
    rl_membw *bw = NULL;
    if (rl_threadpool_create(nth, &pool) != RL_OK ||
        rl_membw_create((size_t)256 << 20, true, &bw) != RL_OK) {
        fprintf(stderr, "bench_decode_mm: thread pool or bandwidth arrays\n");
        return 1;
    }
    int64_t max_dim = 0;
    for (int i = 0; i < n_mm; i++) {
        if (ms[i].rows > max_dim) max_dim = ms[i].rows;
        if (ms[i].cols > max_dim) max_dim = ms[i].cols;
    }
    float *x = malloc((size_t)max_dim * sizeof *x), *y = malloc((size_t)max_dim * sizeof *y);
    for (int64_t i = 0; i < max_dim; i++) x[i] = (float)sin(0.1 * (double)i);

    double best_pass = INFINITY, best_kind[N_KINDS], sum_kind[N_KINDS] = {0};
    size_t bytes_kind[N_KINDS] = {0};
    int count_kind[N_KINDS] = {0};
    for (int k = 0; k < N_KINDS; k++) best_kind[k] = INFINITY;
    for (int i = 0; i < n_mm; i++) {
        bytes_kind[ms[i].kind] += ms[i].bytes;
        count_kind[ms[i].kind]++;
    }
    double ratio_sum = 0;
    json_t *pairs = json_array();       /* [bandwidth GB/s of the run before, pass GB/s] per pass */
    for (int p = -1; p < passes; p++) { /* pass -1: warm-up (page tables, scratch) */
        rl_membw_result mb = {0};
        rl_membw_run(bw, pool, &mb);
        double kt[N_KINDS] = {0}, t_pass = 0;
        for (int i = 0; i < n_mm; i++) {
            double t0 = now_s();
            rl_status st = rl_matmul(pool, ms[i].type, ms[i].w, ms[i].rows, ms[i].cols, x, 1, y);
            double dt = now_s() - t0;
            if (st != RL_OK) {
                fprintf(stderr, "bench_decode_mm: %s\n", rl_status_str(st));
                return 1;
            }
            kt[ms[i].kind] += dt;
            t_pass += dt;
        }
        if (p < 0) continue;
        best_pass = fmin(best_pass, t_pass);
        ratio_sum += (double)total / t_pass / 1e9 / fmax(mb.copy_gbs, mb.triad_gbs);
        json_array_append_new(pairs, json_pack("[f, f]", fmax(mb.copy_gbs, mb.triad_gbs),
                                               (double)total / t_pass / 1e9));
        for (int k = 0; k < N_KINDS; k++) {
            best_kind[k] = fmin(best_kind[k], kt[k]);
            sum_kind[k] += kt[k];
        }
    }
    long pmd_kib = 0; /* FilePmdMapped of this process */
    FILE *sm = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    while (sm && fgets(line, sizeof line, sm))
        if (!strncmp(line, "FilePmdMapped:", 14)) pmd_kib = atol(line + 14);
    if (sm) fclose(sm);
    const rl_membw_result best = rl_membw_best(bw);
    const double peak = fmax(best.copy_gbs, best.triad_gbs);
    json_t *kinds = json_object();
    for (int k = 0; k < N_KINDS; k++) {
        if (!count_kind[k]) continue;
        json_object_set_new(kinds, k_kinds[k],
                            json_pack("{s:i, s:f, s:f, s:f, s:f}", "count", count_kind[k], "mib",
                                      bytes_kind[k] / 1048576.0, "us_each_best",
                                      best_kind[k] / count_kind[k] * 1e6, "gbps_best",
                                      bytes_kind[k] / best_kind[k] / 1e9, "gbps_mean",
                                      bytes_kind[k] / (sum_kind[k] / passes) / 1e9));
    }
    json_t *root = json_pack(
        "{s:s, s:i, s:b, s:b, s:b, s:I, s:i, s:f, s:i, s:f, s:f, s:f, s:f, s:f, s:o, s:o}", "model",
        path, "threads", rl_threadpool_n_threads(pool), "anon", anon, "hugepages", anon && hp,
        "map_hp", map_hp && !anon, "file_pmd_mapped_kib", (json_int_t)pmd_kib, "products", n_mm,
        "mib", total / 1048576.0, "passes", passes, "bandwidth_gbps", peak, "pass_ms_best",
        best_pass * 1e3, "gbps_best", total / best_pass / 1e9, "ratio_best",
        total / best_pass / 1e9 / peak, "ratio_paired_mean", ratio_sum / passes, "kinds", kinds,
        "pairs", pairs);
    char *s = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(4));
    puts(s);
    free(s);
    json_decref(root);
    free(x);
    free(y);
    rl_membw_free(bw);
    rl_threadpool_free(pool);
    if (copy) munmap(copy, total);
    if (fmap) munmap(fmap, fmap_bytes);
    free(ms);
    rl_gguf_free(g);
    return 0;
}
