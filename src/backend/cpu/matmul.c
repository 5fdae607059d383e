/*
 * matmul.c - y = W x over quantized weights on the thread pool (rl_matmul).
 *
 * The activations are converted once per call to the weight type's vec_dot type, in
 * pool-owned scratch (for several tokens the conversion is split across the threads).
 * The weight rows are cut into chunks of about RL_MM_CHUNK_BYTES. Each thread owns a
 * contiguous range of chunks and takes them in order (one sequential stream per thread,
 * as the prefetchers like, and its software prefetch runs into its own next chunk); a
 * thread done with its range takes chunks from the others' ranges, so one slowed by
 * other load does less of the work.
 * A chunk is contiguous in memory (the hardware prefetcher streams it) and small
 * enough to stay in L2 while every token is multiplied with it: the weights, which
 * dominate the traffic, are read from memory once per call whatever n_tok is, and each
 * activation row is reused from L1 across the rows of the chunk.
 *
 * Where the weight type has a gemv kernel (cpu.h), the quantized activations are also
 * split (codes contiguous, scales as float) so that the per-row kernel does no fp16 work
 * for them; its results are bit-identical to rl_vec_dot's.
 */
#include "cpu.h"
#include "q4_0x16.h"
#include "../../util/threadpool.h"

#include <stdatomic.h>

#define RL_MM_CHUNK_BYTES (128 * 1024)
#define RL_MM_MIN_CHUNKS_PER_THREAD 4
#define RL_MM_PF_DIST 2048
/* Activations of at most this many elements (n_tok * cols) are converted by the calling
 * thread: for a decode step of a few sequences that takes microseconds, less than waking
 * the pool for it (measured on a loaded 2-core machine: 4-6% less CPU time for the matmuls
 * of 16 layers at 4 and 8 tokens). The same threshold as the element-wise ops'. */
#define RL_MM_QUANT_PAR_MIN_ELEMS (1 << 15)

/* A range of chunks, in a pool slot (its own cache line: the threads claim from it). */
typedef struct mm_range {
    _Atomic int64_t next;
    int64_t end;
    char pad[RL_THREADPOOL_SLOT_BYTES - 2 * sizeof(int64_t)];
} mm_range;
_Static_assert(sizeof(mm_range) == RL_THREADPOOL_SLOT_BYTES, "one slot per range");

typedef struct mm_job {
    rl__vec_dot_fn dot;    /* F16/BF16: rl__fdot_<t>_ref on the F32 activations x */
    rl__fgemm_fn fgemm;    /* F16/BF16 on a SIMD path (cpu.h), instead of dot */
    rl_type wt;
    rl__gemv_fn gemv;      /* NULL: use dot on xq */
    rl__gemv_prep_fn prep; /* NULL: gemv takes no offsets */
    rl__gemm_fn gemm;      /* NULL: one gemv per (row, token) */
    int gemm_rows, gemm_toks;
    bool prefetch;         /* dot does not prefetch: matmul does, per row */
    bool gemm_all;         /* packed weights (q4_0x16.h): one token too goes through gemm,
                              chunks are whole tiles */
    const uint8_t *w;      /* [rows][w_row_bytes] */
    size_t w_row_bytes;
    int64_t rows, cols, n_tok;
    const uint8_t *xq; /* [n_tok][x_row_bytes] in the vec_dot type */
    size_t x_row_bytes;
    uint8_t *xs; /* gemv: [n_tok][xs_stride]: codes [cols], d [cols/32], s [cols/32] */
    size_t xs_stride;
    rl_type vdt;
    float *y; /* [n_tok][rows] */
    int64_t chunk_rows, n_chunks;
    size_t scratch, xs_off; /* pool scratch bytes; where the split rows start in it */
    /* conversion phase */
    rl__act_quant_fn quant;
    const float *x; /* [n_tok][cols] */
    uint8_t *xq_out;
} mm_job;

static inline int8_t *split_qs(const mm_job *j, int64_t t) {
    return (int8_t *)(j->xs + (size_t)t * j->xs_stride);
}
static inline float *split_d(const mm_job *j, int64_t t) {
    return (float *)(j->xs + (size_t)t * j->xs_stride + (size_t)j->cols);
}
static inline float *split_s(const mm_job *j, int64_t t) { return split_d(j, t) + j->cols / 32; }
static inline int32_t *split_off(const mm_job *j, int64_t t) {
    return (int32_t *)(split_s(j, t) + j->cols / 32);
}

/* Q8_0/Q8_1 row -> codes, d and (Q8_1) s as float. */
static void split_row(const mm_job *j, int64_t t) {
    const uint8_t *row = j->xq_out + (size_t)t * j->x_row_bytes;
    int8_t *qs = split_qs(j, t);
    float *d = split_d(j, t), *s = split_s(j, t);
    for (int64_t b = 0; b < j->cols / 32; b++) {
        if (j->vdt == RL_TYPE_Q8_0) {
            const block_q8_0 *blk = (const block_q8_0 *)row + b;
            memcpy(qs + 32 * b, blk->qs, 32);
            d[b] = rl__fp16_to_fp32(blk->d);
        } else {
            const block_q8_1 *blk = (const block_q8_1 *)row + b;
            memcpy(qs + 32 * b, blk->qs, 32);
            d[b] = rl__fp16_to_fp32(blk->d);
            s[b] = rl__fp16_to_fp32(blk->s);
        }
    }
    if (j->prep) j->prep(qs, j->cols, split_off(j, t));
}

static void quant_task(void *p, int ith, int nth) {
    mm_job *j = p;
    for (int64_t t = ith; t < j->n_tok; t += nth) {
        j->quant(j->x + t * j->cols, j->xq_out + (size_t)t * j->x_row_bytes, j->cols);
        if (j->gemv) split_row(j, t);
    }
}

/* Software prefetch of one row's worth of weights RL_MM_PF_DIST bytes ahead, for dot
 * kernels that do not prefetch themselves (rl__vec_dot_prefetches): on one or two cores
 * the hardware prefetchers alone leave a matvec well below the memory bandwidth. Measured
 * on a quiet 16-core Xeon, 2 cores, 256 MiB: Q4_K 14.8 -> 18.3 GB/s, Q6_K 18.4 -> 23.4,
 * Q3_K 13.0 -> 17.7, IQ4_XS 13.9 -> 17.7 (2048 bytes ahead beat 4096..8192). */
static inline void prefetch_row(const uint8_t *p, size_t bytes) {
    for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o, 0, 3);
}

rl__gemm_fn rl__gemm_get(rl_type t, rl_cpu_isa isa, int *rows, int *toks) {
    rl__gemm_fn fn = NULL;
    if (isa >= RL_CPU_ISA_AVX512 && isa < RL_CPU_ISA_COUNT) {
        if (t == RL_TYPE_Q4_0) fn = rl__gemm_q4_0_avx512;
        if (t == RL_TYPE_Q8_0) fn = rl__gemm_q8_0_avx512;
        *rows = RL__GEMM_AVX512_ROWS;
        *toks = RL__GEMM_AVX512_TOKS;
        if (t == RL_TYPE_Q4_0) *toks = RL__GEMM_AVX512_Q4_0_TOKS;
        if (t == RL_TYPE_Q4_K || t == RL_TYPE_Q6_K) {
            fn = t == RL_TYPE_Q4_K ? rl__gemm_q4_K_avx512 : rl__gemm_q6_K_avx512;
            *rows = 1;
            if (t == RL_TYPE_Q6_K) *toks = RL__GEMM_AVX512_Q6_K_TOKS;
        }
    } else if (isa == RL_CPU_ISA_AVX2) {
        if (t == RL_TYPE_Q4_0) fn = rl__gemm_q4_0_avx2;
        if (t == RL_TYPE_Q8_0) fn = rl__gemm_q8_0_avx2;
        if (t == RL_TYPE_Q4_K) fn = rl__gemm_q4_K_avx2;
        if (t == RL_TYPE_Q6_K) fn = rl__gemm_q6_K_avx2;
        *rows = RL__GEMM_AVX2_ROWS;
        *toks = RL__GEMM_AVX2_TOKS;
    }
    return fn;
}

/* ---- F16/BF16 weights with F32 activations ------------------------------------------ */

/* Rows per chunk of the tile kernels (a multiple of their R): 96 rows x KC columns of F16
 * is 96 KiB, reused from L2 by every token tile. */
#define RL_MM_FGEMM_CHUNK 96

rl__vec_dot_fn rl__fdot_get(rl_type t) {
    return t == RL_TYPE_F16 ? rl__fdot_f16_ref : t == RL_TYPE_BF16 ? rl__fdot_bf16_ref : NULL;
}

rl__fgemm_fn rl__fgemm_get(rl_type t, rl_cpu_isa isa) {
    if (t != RL_TYPE_F16 && t != RL_TYPE_BF16) return NULL;
    if (isa >= RL_CPU_ISA_AVX512 && isa < RL_CPU_ISA_COUNT) return rl__fgemm_avx512;
    if (isa == RL_CPU_ISA_AVX2) return rl__fgemm_avx2;
    return NULL;
}

/* The rows [r0, r1) times the tokens [t0, t1) through the tile kernel (several tokens): each
 * group of rows is read once for up to gemm_toks tokens. Rows left over: one dot each. The
 * kernel reads split rows where the type has a gemv, else the vec_dot type's rows. */
static void gemm_chunk(const mm_job *j, int64_t r0, int64_t r1, int64_t t0, int64_t t1) {
    const int64_t rr = j->gemm_rows, r_end = r0 + (r1 - r0) / rr * rr;
    const uint8_t *ys = j->gemv ? j->xs : j->xq;
    const size_t yst = j->gemv ? j->xs_stride : j->x_row_bytes;
    for (int64_t t = t0; t < t1; t += j->gemm_toks) {
        int nt = (int)RL_MIN((int64_t)j->gemm_toks, t1 - t);
        const uint8_t *wr = j->w + (size_t)r0 * j->w_row_bytes;
        for (int64_t r = r0; r < r_end; r += rr, wr += (size_t)rr * j->w_row_bytes)
            j->gemm(j->cols, nt, wr, j->w_row_bytes, ys + (size_t)t * yst, yst,
                    j->y + t * j->rows + r, (size_t)j->rows);
    }
    for (int64_t t = t0; t < t1; t++) {
        const uint8_t *wr = j->w + (size_t)r_end * j->w_row_bytes;
        for (int64_t r = r_end; r < r1; r++, wr += j->w_row_bytes)
            j->y[t * j->rows + r] =
                j->gemv ? j->gemv(j->cols, wr, split_qs(j, t), split_d(j, t), split_s(j, t),
                                  split_off(j, t))
                        : j->dot(j->cols, wr, j->xq + (size_t)t * j->x_row_bytes);
    }
}

/* The rows [r0, r1) times every token. */
static void dot_chunk(const mm_job *j, int64_t r0, int64_t r1) {
    if (j->fgemm) {
        const rl__fgemm_args g = {
            .wt = j->wt,
            .n = j->cols,
            .w = j->w + (size_t)r0 * j->w_row_bytes,
            .w_row_bytes = j->w_row_bytes,
            .rows = r1 - r0,
            .x = j->x,
            .n_tok = j->n_tok,
            .y = j->y + r0,
            .ldy = (size_t)j->rows,
        };
        j->fgemm(&g);
        return;
    }
    if (j->gemm && (j->n_tok > 1 || j->gemm_all)) {
        gemm_chunk(j, r0, r1, 0, j->n_tok);
        return;
    }
    for (int64_t t = 0; t < j->n_tok; t++) {
        float *yt = j->y + t * j->rows;
        const uint8_t *wr = j->w + (size_t)r0 * j->w_row_bytes;
        if (j->gemv) {
            const int8_t *qs = split_qs(j, t);
            const float *d = split_d(j, t), *s = split_s(j, t);
            const int32_t *off = split_off(j, t);
            for (int64_t r = r0; r < r1; r++, wr += j->w_row_bytes)
                yt[r] = j->gemv(j->cols, wr, qs, d, s, off);
        } else {
            const uint8_t *xt = j->xq + (size_t)t * j->x_row_bytes;
            for (int64_t r = r0; r < r1; r++, wr += j->w_row_bytes) {
                if (t == 0 && j->prefetch) prefetch_row(wr + RL_MM_PF_DIST, j->w_row_bytes);
                yt[r] = j->dot(j->cols, wr, xt);
            }
        }
    }
}

/* The chunks of several products as one list: job i owns the list's [first[i], first[i+1]). */
typedef struct mm_multi {
    const mm_job *jobs;
    int n;
    int64_t first[RL__MM_MULTI_MAX + 1];
    mm_range *ranges; /* [nth]: thread i's part of the list, claimed by anyone in order */
} mm_multi;

static void dot_task(void *p, int ith, int nth) {
    const mm_multi *m = p;
    for (int k = 0; k < nth; k++) { /* own range first, then help the others */
        mm_range *rg = &m->ranges[(ith + k) % nth];
        int i = 0; /* a range is claimed in ascending order */
        for (;;) {
            int64_t c = atomic_fetch_add_explicit(&rg->next, 1, memory_order_relaxed);
            if (c >= rg->end) break;
            while (c >= m->first[i + 1]) i++;
            const mm_job *j = &m->jobs[i];
            c -= m->first[i];
            dot_chunk(j, c * j->chunk_rows, RL_MIN((c + 1) * j->chunk_rows, j->rows));
        }
    }
}

/* The products of jobs[0..n) (their activations converted) in one pool dispatch. */
static void mm_run(rl_threadpool *pool, const mm_job *jobs, int n) {
    const int nth = rl_threadpool_n_threads(pool);
    mm_multi m = {.jobs = jobs, .n = n, .ranges = rl__threadpool_slots(pool)};
    m.first[0] = 0;
    for (int i = 0; i < n; i++) m.first[i + 1] = m.first[i] + jobs[i].n_chunks;
    const int64_t total = m.first[n];
    for (int i = 0; i < nth; i++) {
        atomic_init(&m.ranges[i].next, total * i / nth);
        m.ranges[i].end = total * (i + 1) / nth;
    }
    rl__threadpool_run(pool, dot_task, &m);
}

RL_API rl_status rl_matmul(rl_threadpool *pool, rl_type wt, const void *w, int64_t rows,
                           int64_t cols, const float *x, int64_t n_tok, float *y) {
    return rl__matmul_packed(pool, wt, w, NULL, rows, cols, x, n_tok, y);
}

/* Everything of one product but its converted activations: kernels, sizes, chunks.
 * *skip: nothing to compute (no rows or no tokens). */
static rl_status mm_setup(rl_threadpool *pool, rl_type wt, const void *w, const void *packed,
                          int64_t rows, int64_t cols, const float *x, int64_t n_tok, float *y,
                          mm_job *jp, bool *skip) {
    *skip = false;
    const rl__type_traits *tr = rl__type_traits_get(wt);
    if (!pool || !tr || rows < 0 || cols < 0 || n_tok < 0) return RL_ERR_INVALID_ARG;
    rl_cpu_isa isa = rl_cpu_isa_active();
    rl__vec_dot_fn dot = rl__vec_dot_get(wt, isa);
    if (!dot) return RL_ERR_UNSUPPORTED;
    rl_type vdt = tr->vec_dot_type;
    rl__vec_dot_fn fdot = rl__fdot_get(wt);
    if (fdot) { /* F16/BF16 weights keep the activations in F32 (cpu.h) */
        dot = fdot;
        vdt = RL_TYPE_F32;
    }
    size_t w_row_bytes, x_row_bytes, w_bytes, x_bytes;
    if (rl_type_row_bytes(wt, cols, &w_row_bytes) != RL_OK) return RL_ERR_INVALID_ARG;
    if (rl_type_row_bytes(vdt, cols, &x_row_bytes) != RL_OK) return RL_ERR_INVALID_ARG;
    if (!rl__mul_size(w_row_bytes, (size_t)rows, &w_bytes) ||
        !rl__mul_size(x_row_bytes, (size_t)n_tok, &x_bytes) ||
        !rl__mul_size((size_t)rows, (size_t)n_tok, &(size_t){0}))
        return RL_ERR_RANGE;
    if (rows == 0 || n_tok == 0) {
        *skip = true;
        return RL_OK;
    }
    if (!w || !x || !y) return RL_ERR_INVALID_ARG;

    mm_job j = {
        .prefetch = !rl__vec_dot_prefetches(wt, isa),
        .dot = dot,
        .w = w,
        .w_row_bytes = w_row_bytes,
        .rows = rows,
        .cols = cols,
        .n_tok = n_tok,
        .x_row_bytes = x_row_bytes,
        .y = y,
        .x = x,
        .vdt = vdt,
        .wt = wt,
    };
    /* scratch (unless F32): the converted activations, then their split rows */
    const int nth = rl_threadpool_n_threads(pool);
    if (vdt == RL_TYPE_F32) {
        j.xq = (const uint8_t *)x;
        j.fgemm = rl__fgemm_get(wt, isa);
    } else {
        j.quant = rl__act_quant_get(vdt, isa);
        if (!j.quant) return RL_ERR_UNSUPPORTED;
        j.gemv = rl__gemv_get(wt, isa);
        j.prep = rl__gemv_prep_get(wt, isa);
        j.gemm = rl__gemm_get(wt, isa, &j.gemm_rows, &j.gemm_toks);
        rl__packed_kernels pk;
        if (packed && rl__packed_kernels_get(wt, isa, &pk)) { /* q4_0x16.h, q6_kx16.h */
            j.w = packed;
            j.gemv = pk.gemv;
            j.prep = pk.prep;
            j.gemm = pk.gemm;
            j.gemm_rows = pk.gemm_rows;
            j.gemm_toks = pk.gemm_toks; /* long rows: the Q4_0x16 tile splits k itself */
            if (pk.gemm_many && n_tok > pk.gemm_toks) { /* a prompt (q4_0x16.h) */
                j.gemm = pk.gemm_many;
                j.gemm_toks = pk.gemm_many_toks;
            }
            j.gemm_all = true;
        }
        size_t scratch = x_bytes, x_bytes_al = (x_bytes + 63) & ~(size_t)63;
        if (j.gemv) {
            /* codes, d and s, offsets: cols + 2 * (cols / 32) * 4 + cols * 9 / 8 bytes (the
             * largest prep's, RL__Q4_0X16_OFF_BYTES), 64-aligned */
            j.xs_stride = ((size_t)cols * 2 + (size_t)cols / 4 + (size_t)cols / 8 + 63) & ~(size_t)63;
            if (!rl__mul_size(j.xs_stride, (size_t)n_tok, &scratch) ||
                !rl__add_size(scratch, x_bytes_al, &scratch))
                return RL_ERR_RANGE;
        }
        j.scratch = scratch;
        j.xs_off = x_bytes_al;
    }

    int64_t chunk = (int64_t)(RL_MM_CHUNK_BYTES / (w_row_bytes ? w_row_bytes : 1));
    int64_t max_chunk = (rows + (int64_t)nth * RL_MM_MIN_CHUNKS_PER_THREAD - 1) /
                        ((int64_t)nth * RL_MM_MIN_CHUNKS_PER_THREAD);
    chunk = RL_MAX(1, RL_MIN(chunk, max_chunk));
    if (j.fgemm) /* whole tiles; a block of rows times KC columns stays in L2 */
        chunk = RL_MIN((int64_t)RL_MM_FGEMM_CHUNK, (max_chunk + 11) / 12 * 12);
    if (j.gemm_all) chunk = (chunk + j.gemm_rows - 1) / j.gemm_rows * j.gemm_rows;
    j.chunk_rows = chunk;
    j.n_chunks = (rows + chunk - 1) / chunk;
    *jp = j;
    return RL_OK;
}

/* Converts j's activations into the pool's scratch (nothing for F32 activations). */
static rl_status mm_convert(rl_threadpool *pool, mm_job *j) {
    if (j->vdt == RL_TYPE_F32) return RL_OK;
    j->xq_out = rl__threadpool_scratch(pool, j->scratch);
    if (!j->xq_out) return RL_ERR_NOMEM;
    j->xs = j->xq_out + j->xs_off;
    if (j->n_tok == 1 || rl_threadpool_n_threads(pool) == 1 ||
        j->n_tok * j->cols <= RL_MM_QUANT_PAR_MIN_ELEMS)
        quant_task(j, 0, 1);
    else
        rl__threadpool_run(pool, quant_task, j);
    j->xq = j->xq_out;
    return RL_OK;
}

rl_status rl__matmul_packed(rl_threadpool *pool, rl_type wt, const void *w, const void *packed,
                            int64_t rows, int64_t cols, const float *x, int64_t n_tok, float *y) {
    mm_job j;
    bool skip;
    rl_status st = mm_setup(pool, wt, w, packed, rows, cols, x, n_tok, y, &j, &skip);
    if (st != RL_OK || skip) return st;
    if ((st = mm_convert(pool, &j)) != RL_OK) return st;
    mm_run(pool, &j, 1);
    return RL_OK;
}

/* Whether b reads the activations in a's converted form: the same vec_dot type, converter
 * and split rows (the gemv kernels' offsets come from prep). */
static bool mm_same_input(const mm_job *a, const mm_job *b) {
    return a->vdt == b->vdt && a->quant == b->quant && (a->gemv != NULL) == (b->gemv != NULL) &&
           a->prep == b->prep && a->scratch == b->scratch && a->xs_off == b->xs_off;
}

rl_status rl__matmul_multi(rl_threadpool *pool, const rl__mm_weight *ws, int n_w, int64_t cols,
                           const float *x, int64_t n_tok) {
    if (!ws || n_w < 0 || n_w > RL__MM_MULTI_MAX) return RL_ERR_INVALID_ARG;
    mm_job jobs[RL__MM_MULTI_MAX];
    int n = 0;
    bool shared = true;
    for (int i = 0; i < n_w; i++) {
        bool skip;
        rl_status st = mm_setup(pool, ws[i].wt, ws[i].w, ws[i].packed, ws[i].rows, cols, x, n_tok,
                                ws[i].y, &jobs[n], &skip);
        if (st != RL_OK) return st;
        if (skip) continue;
        if (n > 0 && !mm_same_input(&jobs[0], &jobs[n])) shared = false;
        n++;
    }
    if (n == 0) return RL_OK;
    if (!shared) { /* different conversions: one product at a time */
        for (int i = 0; i < n; i++) {
            rl_status st = mm_convert(pool, &jobs[i]);
            if (st != RL_OK) return st;
            mm_run(pool, &jobs[i], 1);
        }
        return RL_OK;
    }
    rl_status st = mm_convert(pool, &jobs[0]);
    if (st != RL_OK) return st;
    for (int i = 1; i < n; i++) {
        jobs[i].xq_out = jobs[0].xq_out;
        jobs[i].xs = jobs[0].xs;
        jobs[i].xq = jobs[0].xq;
    }
    mm_run(pool, jobs, n);
    return RL_OK;
}
