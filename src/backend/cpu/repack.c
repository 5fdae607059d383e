/*
 * repack.c - load-time copies of weights in the CPU kernels' own layouts (backend.h:
 * rl__cpu_pack_weights) and the plain-C side of those layouts: Q4_0x16 packing,
 * unpacking, dequantization and its reference dot (q4_0x16.h). Q6_K weights of 32 rows or
 * more get the Q6_Kx16 layout (q6_kx16.h, plain C in q6_kx16.c) unless
 * RUVLLM_CPU_REPACK_Q6K=0.
 *
 * The copies live in one anonymous mapping with transparent huge pages asked for: a
 * matmul streams every weight once per call, and 2 MiB pages spare it a TLB miss and a
 * restart of the hardware prefetchers every 4 KiB. The file pages of a packed tensor are
 * dropped from the process (MADV_DONTNEED on the private read-only mapping: the data stays
 * valid and would simply be read again from the page cache), so resident memory stays at
 * one copy of the weights.
 */
#include "q4_0x16.h"
#include "q6_kx16.h"
#include "../backend.h"
#include "../../util/threadpool.h"

#include <sys/mman.h>
#include <unistd.h>

/* ---- Q4_0x16 ---------------------------------------------------------------------------- */

bool rl__q4_0x16_fits(rl_type t, int64_t n) {
    return t == RL_TYPE_Q4_0 && n > 0 && n % Q4_0X16_GROUP_COLS == 0;
}

const uint8_t *rl__q4_0x16_row(const void *x, int64_t n, int64_t rows, int64_t r,
                               size_t *stride) {
    const size_t rb = (size_t)n / QK4_0 * sizeof(block_q4_0);
    const int64_t tiled = rows / Q4_0X16_ROWS * Q4_0X16_ROWS;
    if (r >= tiled) {
        *stride = Q4_0X16_CHUNK;
        return (const uint8_t *)x + (size_t)r * rb;
    }
    *stride = Q4_0X16_CHUNK * Q4_0X16_ROWS;
    return (const uint8_t *)x + (size_t)(r - r % Q4_0X16_ROWS) * rb +
           (size_t)(r % Q4_0X16_ROWS) * Q4_0X16_CHUNK;
}

/* Block b of a row (rl__q4_0x16_row) as the file's block. */
static block_q4_0 get_block(const uint8_t *row, size_t stride, int64_t b) {
    int i = 0;
    while (Q4_0X16_BLK(i) != b % 16) i++;
    const uint8_t *c = row + (size_t)(b / 16) * stride;
    block_q4_0 blk;
    for (int d = 0; d < 4; d++) memcpy(blk.qs + 4 * d, c + 64 * d + 4 * i, 4);
    memcpy(&blk.d, c + 256 + 2 * i, 2);
    return blk;
}

/* Copy loops in chunk order: chunk g lane i is block 16 g + Q4_0X16_BLK(i). */
void rl__q4_0x16_pack(const void *src, void *dst, int64_t n, int64_t rows) {
    const size_t rb = (size_t)n / QK4_0 * sizeof(block_q4_0);
    for (int64_t r = 0; r < rows; r++) {
        size_t stride;
        uint8_t *row = (uint8_t *)rl__q4_0x16_row(dst, n, rows, r, &stride);
        const block_q4_0 *blk = (const block_q4_0 *)((const uint8_t *)src + (size_t)r * rb);
        for (int64_t g = 0; g < n / Q4_0X16_GROUP_COLS; g++, blk += 16) {
            uint8_t *c = row + (size_t)g * stride;
            for (int i = 0; i < 16; i++) {
                const block_q4_0 *b = &blk[Q4_0X16_BLK(i)];
                for (int d = 0; d < 4; d++) memcpy(c + 64 * d + 4 * i, b->qs + 4 * d, 4);
                memcpy(c + 256 + 2 * i, &b->d, 2);
            }
        }
    }
}

void rl__q4_0x16_unpack(const void *src, void *dst, int64_t n, int64_t rows) {
    const size_t rb = (size_t)n / QK4_0 * sizeof(block_q4_0);
    for (int64_t r = 0; r < rows; r++) {
        size_t stride;
        const uint8_t *row = rl__q4_0x16_row(src, n, rows, r, &stride);
        block_q4_0 *blk = (block_q4_0 *)((uint8_t *)dst + (size_t)r * rb);
        for (int64_t b = 0; b < n / QK4_0; b++) blk[b] = get_block(row, stride, b);
    }
}

void rl__q4_0x16_to_float(const uint8_t *row, size_t stride, float *y, int64_t n) {
    for (int64_t b = 0; b < n / QK4_0; b++) {
        const block_q4_0 blk = get_block(row, stride, b);
        const float d = rl__fp16_to_fp32(blk.d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[32 * b + j] = (float)((blk.qs[j] & 0xf) - 8) * d;
            y[32 * b + j + 16] = (float)((blk.qs[j] >> 4) - 8) * d;
        }
    }
}

float rl__vec_dot_q4_0x16_ref(int64_t n, const uint8_t *row, size_t stride, const void *vy) {
    const block_q8_0 *y = vy;
    float sum = 0;
    for (int64_t b = 0; b < n / QK4_0; b++) {
        const block_q4_0 blk = get_block(row, stride, b);
        int sumi = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            sumi += ((blk.qs[j] & 0xf) - 8) * y[b].qs[j];
            sumi += ((blk.qs[j] >> 4) - 8) * y[b].qs[j + QK4_0 / 2];
        }
        sum += (float)sumi * (rl__fp16_to_fp32(blk.d) * rl__fp16_to_fp32(y[b].d));
    }
    return sum;
}

bool rl__packed_kernels_get(rl_type t, rl_cpu_isa isa, rl__packed_kernels *k) {
    if (isa < RL_CPU_ISA_AVX512 || isa >= RL_CPU_ISA_COUNT) return false;
    if (t == RL_TYPE_Q6_K) { /* q6_kx16.h: the tile only; plain rows keep the GGUF dot */
        *k = (rl__packed_kernels){
            .gemm = rl__gemm_q6_kx16_avx512,
            .gemm_rows = Q6_KX16_ROWS,
            .gemm_toks = Q6_KX16_TOKS,
        };
        return true;
    }
    if (t != RL_TYPE_Q4_0) return false;
    *k = (rl__packed_kernels){
        .gemv = rl__gemv_q4_0x16_avx512,
        .prep = rl__gemv_prep_q4_0x16_avx512,
        .gemm = rl__gemm_q4_0x16_avx512,
        .gemm_rows = Q4_0X16_ROWS,
        .gemm_toks = RL__GEMM_Q4_0X16_TOKS,
        .gemm_many = rl__gemm_q4_0x16_6x3_avx512,
        .gemm_many_toks = RL__GEMM_Q4_0X16_MANY_TOKS,
    };
    return true;
}

/* ---- the model's packed weights ----------------------------------------------------------- */

typedef struct packed_src {
    const void *data; /* the weight's file data */
    size_t bytes;
    void *copy;       /* in the mapping */
    int64_t n, rows, n_mat; /* n_mat matrices of rows x n */
    rl_type type;           /* Q4_0 (q4_0x16.h) or Q6_K (q6_kx16.h) */
} packed_src;

struct rl__cpu_packed {
    void *map;          /* anonymous mapping holding every copy */
    size_t map_bytes;
    packed_src *src;    /* [n_src] */
    size_t n_src;
    bool locked;
};

typedef struct pack_job {
    const packed_src *src;
    size_t n_src;
    bool release;
} pack_job;

/* Threads take every nth tensor: a 1B model has over a hundred, of similar sizes. */
/* Drop the pages wholly inside [p, p + bytes) of a read-only file mapping. The range is
 * first marked no-huge-page: the file mapping asks for huge pages (gguf.c), and a small
 * tensor next to a released one (a norm vector) would otherwise map back the whole 2 MiB
 * page around it when read (measured: +66 MiB of RSS on a 1B Q4_0 model). */
static void release_pages(const void *p, size_t bytes) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t lo = ((uintptr_t)p + page - 1) & ~(page - 1);
    const uintptr_t hi = ((uintptr_t)p + bytes) & ~(page - 1);
    if (hi <= lo) return;
    madvise((void *)lo, hi - lo, MADV_NOHUGEPAGE);
    madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* Each tensor's file pages go as soon as it is copied: the peak stays near one copy. */
static void pack_task(void *p, int ith, int nth) {
    const pack_job *j = p;
    for (size_t i = (size_t)ith; i < j->n_src; i += (size_t)nth) {
        const packed_src *ps = &j->src[i];
        const size_t mb = ps->bytes / (size_t)ps->n_mat;
        for (int64_t e = 0; e < ps->n_mat; e++) /* each matrix (expert) tiled on its own */
            (ps->type == RL_TYPE_Q6_K ? rl__q6_kx16_pack : rl__q4_0x16_pack)(
                (const uint8_t *)ps->data + e * mb, (uint8_t *)ps->copy + e * mb, ps->n,
                ps->rows);
        if (j->release) release_pages(ps->data, ps->bytes);
    }
}

rl_status rl__cpu_pack_weights(rl_weight *const *ws, size_t n, int n_threads, bool release,
                               rl__cpu_packed **out) {
    *out = NULL;
    const rl_cpu_isa isa = rl_cpu_isa_active();
    rl__packed_kernels k;
    rl__cpu_packed *p = rl__calloc(1, sizeof *p);
    if (!p) return RL_ERR_NOMEM;
    p->src = rl__calloc(n ? n : 1, sizeof *p->src);
    if (!p->src) goto fail;
    /* distinct sources (a tied output shares the embedding's data) and their offsets.
     * RUVLLM_CPU_REPACK_Q6K=0 leaves Q6_K weights in the GGUF layout (A/B measurements). */
    const char *q6k_env = rl__getenv("RUVLLM_CPU_REPACK_Q6K");
    const bool q6k = !(q6k_env && !strcmp(q6k_env, "0"));
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        const rl_weight *w = ws[i];
        const bool fits = rl__q4_0x16_fits(w->type, w->ne[0]) ||
                          (q6k && rl__q6_kx16_fits(w->type, w->ne[0]) && w->ne[1] >= Q6_KX16_ROWS);
        if (!w->data || !fits || !rl__packed_kernels_get(w->type, isa, &k)) continue;
        bool seen = false;
        for (size_t s = 0; s < p->n_src && !seen; s++) seen = p->src[s].data == w->data;
        if (seen) continue;
        packed_src *s = &p->src[p->n_src++];
        s->data = w->data;
        s->type = w->type;
        s->n = w->ne[0];
        s->rows = w->ne[1];
        s->n_mat = RL_MAX(w->ne[2], (int64_t)1);
        s->bytes = (size_t)(s->rows * s->n_mat) * w->row_bytes;
        s->copy = (void *)(uintptr_t)total; /* offset until the mapping exists */
        total += (s->bytes + 4095) & ~(size_t)4095;
    }
    if (p->n_src == 0) {
        *out = p;
        return RL_OK;
    }
    p->map_bytes = total;
    p->map = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p->map == MAP_FAILED) {
        p->map = NULL;
        goto fail;
    }
    madvise(p->map, total, MADV_HUGEPAGE);
    for (size_t s = 0; s < p->n_src; s++)
        p->src[s].copy = (uint8_t *)p->map + (uintptr_t)p->src[s].copy;

    rl_threadpool *pool = NULL;
    pack_job job = {p->src, p->n_src, release};
    if (n_threads != 1 && rl_threadpool_create(n_threads, &pool) == RL_OK) {
        rl__threadpool_run(pool, pack_task, &job);
        rl_threadpool_free(pool);
    } else {
        pack_task(&job, 0, 1);
    }
    mprotect(p->map, total, PROT_READ);
    for (size_t i = 0; i < n; i++)
        for (size_t s = 0; s < p->n_src; s++)
            if (ws[i]->data && ws[i]->data == p->src[s].data) ws[i]->packed = p->src[s].copy;
    *out = p;
    return RL_OK;

fail:
    rl__cpu_packed_free(p);
    return RL_ERR_NOMEM;
}

bool rl__cpu_packed_has(const rl__cpu_packed *p, const void *data) {
    for (size_t s = 0; p && s < p->n_src; s++)
        if (p->src[s].data == data) return true;
    return false;
}

size_t rl__cpu_packed_bytes(const rl__cpu_packed *p) { return p ? p->map_bytes : 0; }

rl_status rl__cpu_packed_lock(rl__cpu_packed *p) {
    if (!p || !p->map || p->locked) return RL_OK;
    if (mlock(p->map, p->map_bytes) != 0) return RL_ERR_IO;
    p->locked = true;
    return RL_OK;
}

void rl__cpu_packed_free(rl__cpu_packed *p) {
    if (!p) return;
    if (p->map) munmap(p->map, p->map_bytes);
    rl__free(p->src);
    rl__free(p);
}
