/*
 * membw.c - memory bandwidth measured the way STREAM does (J. McCalpin, "Memory Bandwidth
 * and Machine Balance in Current High Performance Computers", 1995): copy (c = a) and
 * triad (a = b + s*c) over three float arrays far larger than the last-level cache, each
 * thread streaming its own contiguous slice; bytes counted as STREAM counts them (copy
 * 2 x N x 4, triad 3 x N x 4). A read-only pass (XOR of 64-bit words) is measured too,
 * since a matrix-vector product only reads.
 *
 * Why it lives in the library: a decode step reads every weight byte once, so memory
 * bandwidth is its floor, and the benchmarks (bench, bench-kernels) compare against a
 * bandwidth measured in the same run, on the same threads (a thread pool), interleaved
 * with the timed work so that both see the same load on a shared machine.
 *
 * The arrays are anonymous mappings (with transparent huge pages asked for when wanted),
 * first touched by the threads that stream them, on the first run.
 */
#include "../../util/threadpool.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#define MEMBW_MIN_ARRAY ((size_t)256 << 20)

enum { K_INIT, K_COPY, K_TRIAD, K_READ };

struct rl_membw {
    float *a, *b, *c; /* [n] each */
    size_t n;         /* floats per array, a multiple of 64 */
    bool touched;
    rl_membw_result best;
    int kernel;    /* of the job being run */
    uint64_t sink; /* keeps the read pass from being optimized away */
};

RL_API size_t rl_cpu_llc_bytes(void) {
    size_t best = 0;
    for (int i = 0; i < 8; i++) {
        char path[96], buf[64];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(buf, sizeof buf, f)) {
            char *end;
            unsigned long v = strtoul(buf, &end, 10);
            if (*end == 'K')
                v *= 1024;
            else if (*end == 'M')
                v *= 1024 * 1024;
            if (v > best) best = v;
        }
        fclose(f);
    }
    return best ? best : (size_t)32 << 20;
}

static void *map_array(size_t bytes, bool hugepages) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    if (hugepages) madvise(p, bytes, MADV_HUGEPAGE);
    return p;
}

RL_API rl_status rl_membw_create(size_t array_bytes, bool hugepages, rl_membw **out) {
    if (!out) return RL_ERR_INVALID_ARG;
    *out = NULL;
    if (array_bytes == 0) {
        array_bytes = MEMBW_MIN_ARRAY;
        size_t llc8;
        if (rl__mul_size(rl_cpu_llc_bytes(), 8, &llc8) && llc8 > array_bytes) array_bytes = llc8;
    }
    size_t n = array_bytes / sizeof(float);
    n -= n % 64;
    if (n == 0 || n > ((size_t)1 << 40)) return RL_ERR_INVALID_ARG;
    rl_membw *b = rl__calloc(1, sizeof *b);
    if (!b) return RL_ERR_NOMEM;
    b->n = n;
    b->a = map_array(n * sizeof(float), hugepages);
    b->b = map_array(n * sizeof(float), hugepages);
    b->c = map_array(n * sizeof(float), hugepages);
    if (!b->a || !b->b || !b->c) {
        rl_membw_free(b);
        return RL_ERR_NOMEM;
    }
    *out = b;
    return RL_OK;
}

RL_API void rl_membw_free(rl_membw *b) {
    if (!b) return;
    if (b->a) munmap(b->a, b->n * sizeof(float));
    if (b->b) munmap(b->b, b->n * sizeof(float));
    if (b->c) munmap(b->c, b->n * sizeof(float));
    rl__free(b);
}

RL_API size_t rl_membw_array_bytes(const rl_membw *b) { return b ? b->n * sizeof(float) : 0; }

/* Thread ith of nth streams floats [lo, hi) of every array (64-float aligned slices). */
static void membw_task(void *ctx, int ith, int nth) {
    rl_membw *b = ctx;
    const size_t blocks = b->n / 64;
    const size_t lo = blocks * (size_t)ith / (size_t)nth * 64;
    const size_t hi = blocks * (size_t)(ith + 1) / (size_t)nth * 64;
    float *restrict a = b->a, *restrict bb = b->b, *restrict c = b->c;
    switch (b->kernel) {
    case K_INIT:
        for (size_t i = lo; i < hi; i++) {
            a[i] = 1.0f;
            bb[i] = 2.0f;
            c[i] = 0.5f;
        }
        break;
    case K_COPY:
        for (size_t i = lo; i < hi; i++) c[i] = a[i];
        break;
    case K_TRIAD:
        for (size_t i = lo; i < hi; i++) a[i] = bb[i] + 3.0f * c[i];
        break;
    case K_READ: {
        const uint64_t *p = (const uint64_t *)a;
        uint64_t x0 = 0, x1 = 0, x2 = 0, x3 = 0;
        for (size_t i = lo / 2; i + 4 <= hi / 2; i += 4) {
            x0 ^= p[i];
            x1 ^= p[i + 1];
            x2 ^= p[i + 2];
            x3 ^= p[i + 3];
        }
        /* racy by design: only the compiler must believe the value is used */
        __atomic_fetch_xor(&b->sink, x0 ^ x1 ^ x2 ^ x3, __ATOMIC_RELAXED);
        break;
    }
    }
}

static double membw_time(rl_membw *b, rl_threadpool *pool, int kernel) {
    b->kernel = kernel;
    double t0 = rl__now();
    rl__threadpool_run(pool, membw_task, b);
    return rl__now() - t0;
}

RL_API rl_status rl_membw_run(rl_membw *b, rl_threadpool *pool, rl_membw_result *pass) {
    if (!b || !pool) return RL_ERR_INVALID_ARG;
    if (!b->touched) {
        membw_time(b, pool, K_INIT);
        b->touched = true;
    }
    const double bytes = (double)b->n * sizeof(float);
    rl_membw_result r;
    r.copy_gbs = 2.0 * bytes / membw_time(b, pool, K_COPY) / 1e9;
    r.triad_gbs = 3.0 * bytes / membw_time(b, pool, K_TRIAD) / 1e9;
    r.read_gbs = bytes / membw_time(b, pool, K_READ) / 1e9;
    b->best.copy_gbs = fmax(b->best.copy_gbs, r.copy_gbs);
    b->best.triad_gbs = fmax(b->best.triad_gbs, r.triad_gbs);
    b->best.read_gbs = fmax(b->best.read_gbs, r.read_gbs);
    if (pass) *pass = r;
    return RL_OK;
}

RL_API rl_membw_result rl_membw_best(const rl_membw *b) {
    rl_membw_result r = {0, 0, 0};
    return b ? b->best : r;
}
