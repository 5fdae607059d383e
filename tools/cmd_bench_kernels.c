/*
 * cmd_bench_kernels.c - `ruvllm bench-kernels`: matrix-vector throughput of each weight
 * type next to the memory bandwidth of the machine, measured in the same run.
 *
 * A matrix-vector product over a matrix far larger than the last-level cache reads every
 * weight byte once from memory and does little arithmetic per byte, so its floor is the
 * memory bandwidth: the figure that matters is the ratio of the two. The bandwidth is a
 * STREAM-like copy (c = a, 2 x N x 4 bytes counted) and triad (a = b + s*c, 3 x N x 4),
 * over arrays of at least 256 MiB on all threads; "bandwidth" is the larger of the two
 * and the ratio is matvec GB/s / bandwidth. A read-only pass is shown too (a matvec only
 * reads). Every figure is the best of its runs, and the bandwidth runs are interleaved
 * with the matvec runs (one of each in turn), so that both are taken under the same
 * conditions on a shared machine. ratio_paired is the median over the runs of each matvec
 * run's rate over the bandwidth run just before it: on a machine whose bandwidth drifts
 * with other load, the steadier figure. Weights: a few rows quantized from random data,
 * replicated to fill the matrix (content does not change the speed of these kernels).
 * Only the public API is used: rl_matmul, rl_quantize, rl_threadpool_*, rl_membw_* (the
 * bandwidth measurement `ruvllm bench` shares).
 */
#include "cli.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024.0 * 1024.0)

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Page-aligned anonymous memory, with transparent huge pages asked for when hp. */
static void *big_alloc(size_t bytes, bool hp) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    if (hp) madvise(p, bytes, MADV_HUGEPAGE);
    return p;
}

/* ---- matrix-vector ------------------------------------------------------------------ */

typedef struct mv_result {
    rl_type type;
    int64_t rows, cols;
    size_t bytes;
    double best_s, mean_s;
    double ratio_paired; /* median over runs of matvec GB/s / the bandwidth run just before */
    rl_status status;
} mv_result;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t g_rng = 0x5eedbe4c4b1e7ull;
static float rnd_gauss(void) {
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    double u1 = ((z >> 11) + 0.5) * 0x1.0p-53, u2 = ((z & 0x7ff) + 0.5) / 2048.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static void bench_matvec(rl_threadpool *pool, rl_membw *bw, rl_type t, int64_t cols,
                         size_t target_bytes, int reps, bool hp, mv_result *res) {
    memset(res, 0, sizeof *res);
    res->type = t;
    res->cols = cols;
    size_t rb;
    if (rl_type_row_bytes(t, cols, &rb) != RL_OK) {
        res->status = RL_ERR_INVALID_ARG;
        return;
    }
    const int64_t seed_rows = 64;
    int64_t rows = (int64_t)(target_bytes / rb);
    rows -= rows % seed_rows;
    if (rows < seed_rows) rows = seed_rows;
    res->rows = rows;
    res->bytes = rb * (size_t)rows;

    float *src = malloc((size_t)(seed_rows * cols) * sizeof(float));
    float *imx = malloc((size_t)cols * sizeof(float));
    float *x = malloc((size_t)cols * sizeof(float));
    float *y = malloc((size_t)rows * sizeof(float));
    uint8_t *w = big_alloc(res->bytes, hp);
    if (!src || !imx || !x || !y || !w) {
        res->status = RL_ERR_NOMEM;
        goto done;
    }
    for (int64_t i = 0; i < seed_rows * cols; i++) src[i] = rnd_gauss();
    for (int64_t i = 0; i < cols; i++) {
        x[i] = rnd_gauss();
        imx[i] = 1.0f;
    }
    res->status = rl_quantize(t, src, w, seed_rows, cols, rl_type_needs_imatrix(t) ? imx : NULL);
    if (res->status != RL_OK) goto done;
    for (int64_t r = seed_rows; r < rows; r += seed_rows)
        memcpy(w + (size_t)r * rb, w, rb * (size_t)seed_rows);

    res->status = rl_matmul(pool, t, w, rows, cols, x, 1, y); /* warm-up */
    if (res->status != RL_OK) goto done;
    res->best_s = INFINITY;
    double total = 0;
    double paired[1000];
    for (int r = 0; r < reps; r++) {
        rl_membw_result pass = {0};
        rl_membw_run(bw, pool, &pass);
        double t0 = now_s();
        rl_matmul(pool, t, w, rows, cols, x, 1, y);
        double dt = now_s() - t0;
        total += dt;
        res->best_s = fmin(res->best_s, dt);
        paired[r] = (double)res->bytes / dt / 1e9 / fmax(pass.copy_gbs, pass.triad_gbs);
    }
    res->mean_s = total / reps;
    qsort(paired, (size_t)reps, sizeof *paired, cmp_double);
    res->ratio_paired =
        reps % 2 ? paired[reps / 2] : 0.5 * (paired[reps / 2 - 1] + paired[reps / 2]);
done:
    free(src);
    free(imx);
    free(x);
    free(y);
    if (w) munmap(w, res->bytes);
}

/* ---- command ------------------------------------------------------------------------ */

static void usage(FILE *f) {
    fprintf(f,
            "usage: ruvllm bench-kernels [--json] [-t N] [--types LIST] [--isa ref|avx2|avx512]\n"
            "                            [--mib M] [--reps R] [--stream-mib S] [--no-hugepages]\n"
            "                            [--pin]\n"
            "  Matrix-vector GB/s of weight bytes for each weight type (LIST: comma-separated\n"
            "  names; default every type with a dot product) over a matrix of M MiB (default\n"
            "  256), next to the memory bandwidth measured in the same run (STREAM-like copy\n"
            "  and triad on all threads, a run before each matvec run; best runs, R = 10).\n"
            "  ratio = matvec GB/s / max(copy, triad). -t: threads (default: physical cores).\n"
            "  --stream-mib: size of each bandwidth array (default 256 MiB or 8x the LLC;\n"
            "  smaller arrays measure caches, not memory: for quick checks only).\n"
            "  Buffers ask for transparent huge pages unless --no-hugepages. --pin: one thread\n"
            "  per CPU for both measurements (RUVLLM_THREAD_PIN=1 for the pool), for machines\n"
            "  where other load makes the scheduler stack the threads on one CPU.\n");
}

static bool has_dot(rl_type t) {
    float out;
    return rl_type_valid((int)t) && rl_vec_dot(t, 0, NULL, NULL, &out) == RL_OK;
}

int cmd_bench_kernels(int argc, char **argv) {
    bool json = false, hp = true, pin = false;
    int nth = 0, reps = 10;
    double mib = 256, stream_mib = 0;
    const char *types_arg = NULL, *isa_arg = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool more = i + 1 < argc;
        if (!strcmp(a, "--json"))
            json = true;
        else if (!strcmp(a, "--no-hugepages"))
            hp = false;
        else if (!strcmp(a, "--pin"))
            pin = true;
        else if (!strcmp(a, "-t") && more)
            nth = atoi(argv[++i]);
        else if (!strcmp(a, "--types") && more)
            types_arg = argv[++i];
        else if (!strcmp(a, "--isa") && more)
            isa_arg = argv[++i];
        else if (!strcmp(a, "--mib") && more)
            mib = atof(argv[++i]);
        else if (!strcmp(a, "--stream-mib") && more)
            stream_mib = atof(argv[++i]);
        else if (!strcmp(a, "--reps") && more)
            reps = atoi(argv[++i]);
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "bench-kernels: unknown or incomplete argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (nth < 0 || nth > 512 || reps < 1 || reps > 1000 || !(mib >= 1 && mib <= 65536) ||
        !(stream_mib == 0 || (stream_mib >= 1 && stream_mib <= 65536))) {
        fprintf(stderr, "bench-kernels: -t must be 0..512, --reps 1..1000, --mib and "
                        "--stream-mib 1..65536\n");
        return 2;
    }
    if (isa_arg) {
        int want = -1;
        for (int i = 0; i < RL_CPU_ISA_COUNT; i++)
            if (!strcasecmp(isa_arg, rl_cpu_isa_name((rl_cpu_isa)i))) want = i;
        if (want < 0) {
            fprintf(stderr, "bench-kernels: --isa must be ref, avx2 or avx512\n");
            return 2;
        }
        if (rl_cpu_isa_set((rl_cpu_isa)want) != RL_OK) {
            fprintf(stderr, "bench-kernels: this CPU cannot run the %s path\n", isa_arg);
            return 1;
        }
    }
    rl_type types[RL_TYPE_COUNT];
    int n_types = 0;
    if (types_arg) {
        char *list = strdup(types_arg), *save = NULL;
        for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            rl_type t;
            if (rl_type_from_name(tok, &t) != RL_OK || !has_dot(t)) {
                fprintf(stderr, "bench-kernels: '%s' is not a weight type with a dot product\n",
                        tok);
                free(list);
                return 2;
            }
            if (n_types < RL_TYPE_COUNT) types[n_types++] = t;
        }
        free(list);
    } else {
        for (int t = 0; t < RL_TYPE_COUNT; t++)
            if (has_dot((rl_type)t)) types[n_types++] = (rl_type)t;
    }

    if (pin) setenv("RUVLLM_THREAD_PIN", "1", 1); /* the pool pins the caller to the first CPU */
    rl_threadpool *pool = NULL;
    rl_status st = rl_threadpool_create(nth, &pool);
    if (st != RL_OK) {
        fprintf(stderr, "bench-kernels: thread pool: %s\n", rl_status_str(st));
        return 1;
    }
    nth = rl_threadpool_n_threads(pool);
    const size_t llc = rl_cpu_llc_bytes();
    size_t target = (size_t)(mib * MIB);
    size_t array_bytes = (size_t)256 << 20;
    if (array_bytes < 8 * llc) array_bytes = 8 * llc;
    if (stream_mib > 0) array_bytes = (size_t)(stream_mib * MIB);

    if (!json) {
        printf("ruvllm bench-kernels: %d threads, isa %s, last-level cache %.0f MiB\n", nth,
               rl_cpu_isa_name(rl_cpu_isa_active()), llc / MIB);
        fflush(stdout);
    }
    rl_membw *bw = NULL;
    if (rl_membw_create(array_bytes, hp, &bw) != RL_OK) {
        fprintf(stderr, "bench-kernels: out of memory for the bandwidth arrays\n");
        rl_threadpool_free(pool);
        return 1;
    }
    for (int r = 0; r < reps; r++) rl_membw_run(bw, pool, NULL);
    mv_result *res = calloc((size_t)n_types, sizeof *res);
    int rc = 0;
    for (int k = 0; k < n_types && res; k++) {
        /* 4096 columns: a row length every type (block 32..256) divides */
        bench_matvec(pool, bw, types[k], 4096, target, reps, hp, &res[k]);
        if (res[k].status != RL_OK) {
            fprintf(stderr, "bench-kernels: %s: %s\n", rl_type_name(types[k]),
                    rl_status_str(res[k].status));
            rc = 1;
        } else if (!json) {
            fprintf(stderr, "  %s: %.1f GB/s\n", rl_type_name(types[k]),
                    (double)res[k].bytes / res[k].best_s / 1e9);
        }
    }
    /* the ratios use the best bandwidth of the whole run */
    const rl_membw_result best = rl_membw_best(bw);
    const double peak = fmax(best.copy_gbs, best.triad_gbs);
    if (!json) {
        printf("memory bandwidth (3 arrays of %.0f MiB, best of %d runs interleaved with the "
               "matvec runs):\n  copy %.1f GB/s, triad %.1f GB/s -> bandwidth %.1f GB/s "
               "(read-only pass %.1f GB/s)\n\n",
               rl_membw_array_bytes(bw) / MIB, reps * (n_types + 1), best.copy_gbs, best.triad_gbs,
               peak, best.read_gbs);
        printf("matrix-vector, 1 token, best of %d:\n", reps);
        printf("%-8s %8s %6s %8s %9s %8s %7s %10s %12s\n", "type", "rows", "cols", "MiB", "ms",
               "GB/s", "ratio", "ratio_read", "ratio_paired");
    }
    json_t *jres = json_array();
    for (int k = 0; k < n_types && res; k++) {
        const mv_result *r = &res[k];
        if (r->status != RL_OK) continue;
        double gbps = (double)r->bytes / r->best_s / 1e9;
        if (!json)
            printf("%-8s %8lld %6lld %8.1f %9.3f %8.1f %7.2f %10.2f %12.2f\n",
                   rl_type_name(r->type), (long long)r->rows, (long long)r->cols, r->bytes / MIB,
                   r->best_s * 1e3, gbps, gbps / peak, gbps / best.read_gbs, r->ratio_paired);
        json_array_append_new(
            jres, json_pack("{s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f}", "type",
                            rl_type_name(r->type), "rows", (json_int_t)r->rows, "cols",
                            (json_int_t)r->cols, "bytes", (json_int_t)r->bytes, "best_s", r->best_s,
                            "mean_s", r->mean_s, "gbps", gbps, "ratio", gbps / peak, "ratio_read",
                            gbps / best.read_gbs, "ratio_paired", r->ratio_paired));
    }
    free(res);
    if (json) {
        json_t *root = json_pack(
            "{s:i, s:s, s:I, s:i, s:b, s:{s:I, s:f, s:f, s:f, s:f}, s:o}", "threads", nth, "isa",
            rl_cpu_isa_name(rl_cpu_isa_active()), "llc_bytes", (json_int_t)llc, "reps", reps,
            "hugepages", hp, "bandwidth", "array_bytes", (json_int_t)rl_membw_array_bytes(bw),
            "copy_gbps", best.copy_gbs, "triad_gbps", best.triad_gbs, "read_gbps", best.read_gbs,
            "bandwidth_gbps", peak, "matvec", jres);
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
        puts(s);
        free(s);
        json_decref(root);
    } else {
        json_decref(jres);
    }
    rl_membw_free(bw);
    rl_threadpool_free(pool);
    return rc;
}
