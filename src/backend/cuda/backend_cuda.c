/*
 * backend_cuda.c - the CUDA implementation of the layer ops (backend.h): memory, the
 * host arrays ops take (token ids, positions, cells, spans), pointer translation for the
 * weights, and the calls of the kernel launchers (cuda_impl.h).
 *
 * Weights. The model maps its weights once (map_host): each host range gets a device
 * copy, kept in a store shared by the backend the model holds and the forks its contexts
 * run on. An op handed a pointer into a mapped range (a weight's data, a norm weight, a
 * bias) reads the copy; any other pointer is device memory from alloc.
 *
 * Queue. The ops record their launches (step.h) instead of making them; the records run
 * when a result is needed on the host (to_host, sync, free), as one CUDA graph when the
 * same records ran before (a decode step). A host array an op needs (ids, positions,
 * cells, spans) is copied into the queue's pinned arena when the op is called, and the
 * whole arena goes to the device in one copy before the records run. Arrays that repeat
 * within a pass (the RoPE table of the pass's positions, the KV cells, the attention cell
 * lists and spans: the same for every layer) are remembered by content, so a decode step
 * stages them once, not once per layer.
 *
 * Errors. The void ops report CUDA failures through a sticky status that sync returns
 * (the context calls it after every pass); the first one is also printed, since a device
 * fault has no other place to say what failed.
 */
#include "cuda_impl.h"
#include "step.h"

#include "../backend.h"
#include "../../quant/blocks.h"
#include "../../quant/quant.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* the kernels' block layouts are blocks.h's */
_Static_assert(sizeof(block_q4_0) == RL_CU_Q4_0_BYTES && offsetof(block_q4_0, qs) == RL_CU_Q4_0_QS,
               "q4_0");
_Static_assert(sizeof(block_q4_1) == RL_CU_Q4_1_BYTES && offsetof(block_q4_1, qs) == RL_CU_Q4_1_QS,
               "q4_1");
_Static_assert(sizeof(block_q5_0) == RL_CU_Q5_0_BYTES &&
                   offsetof(block_q5_0, qh) == RL_CU_Q5_0_QH &&
                   offsetof(block_q5_0, qs) == RL_CU_Q5_0_QS,
               "q5_0");
_Static_assert(sizeof(block_q5_1) == RL_CU_Q5_1_BYTES &&
                   offsetof(block_q5_1, qh) == RL_CU_Q5_1_QH &&
                   offsetof(block_q5_1, qs) == RL_CU_Q5_1_QS,
               "q5_1");
_Static_assert(sizeof(block_q8_0) == RL_CU_Q8_0_BYTES && offsetof(block_q8_0, qs) == RL_CU_Q8_0_QS,
               "q8_0");
_Static_assert(sizeof(block_q2_K) == RL_CU_Q2_K_BYTES &&
                   offsetof(block_q2_K, qs) == RL_CU_Q2_K_QS &&
                   offsetof(block_q2_K, d) == RL_CU_Q2_K_D &&
                   offsetof(block_q2_K, dmin) == RL_CU_Q2_K_D + 2,
               "q2_K");
_Static_assert(sizeof(block_q3_K) == RL_CU_Q3_K_BYTES &&
                   offsetof(block_q3_K, qs) == RL_CU_Q3_K_QS &&
                   offsetof(block_q3_K, scales) == RL_CU_Q3_K_SCALES &&
                   offsetof(block_q3_K, d) == RL_CU_Q3_K_D,
               "q3_K");
_Static_assert(sizeof(block_q4_K) == RL_CU_Q4_K_BYTES &&
                   offsetof(block_q4_K, scales) == RL_CU_Q4_K_SCALES &&
                   offsetof(block_q4_K, qs) == RL_CU_Q4_K_QS,
               "q4_K");
_Static_assert(sizeof(block_q5_K) == RL_CU_Q5_K_BYTES &&
                   offsetof(block_q5_K, scales) == RL_CU_Q4_K_SCALES &&
                   offsetof(block_q5_K, qh) == RL_CU_Q5_K_QH &&
                   offsetof(block_q5_K, qs) == RL_CU_Q5_K_QS,
               "q5_K");
_Static_assert(sizeof(block_q6_K) == RL_CU_Q6_K_BYTES &&
                   offsetof(block_q6_K, qh) == RL_CU_Q6_K_QH &&
                   offsetof(block_q6_K, scales) == RL_CU_Q6_K_SCALES &&
                   offsetof(block_q6_K, d) == RL_CU_Q6_K_D,
               "q6_K");
_Static_assert(sizeof(block_iq4_nl) == RL_CU_IQ4_NL_BYTES && offsetof(block_iq4_nl, qs) == 2,
               "iq4_nl");
_Static_assert(sizeof(block_iq4_xs) == RL_CU_IQ4_XS_BYTES &&
                   offsetof(block_iq4_xs, scales_h) == RL_CU_IQ4_XS_SCALES_H &&
                   offsetof(block_iq4_xs, scales_l) == RL_CU_IQ4_XS_SCALES_L &&
                   offsetof(block_iq4_xs, qs) == RL_CU_IQ4_XS_QS,
               "iq4_xs");

#define CU_WS_BYTES ((size_t)16 << 20) /* attention partials */
#define CU_COPY_DIRECT ((size_t)64 << 10) /* from_host above this copies at once */
#define CU_TC_MIN_N 9                     /* products of this many tokens on tensor cores */
/* Most tokens of a product that mmq.cu takes by default (more: decoded BF16 + cuBLAS).
 * On an H100 (Llama 3 8B shapes, bench_cuda --kernels with RUVLLM_KBENCH=mmq) its tiled
 * kernel beat that path 2-4x from 8 to 64 tokens and 1.1-1.4x at 128 (Q6_K 4096x14336 2%
 * behind), lost from 256 and ran at half its speed at 512 (135-195 TFLOP/s against
 * 330-360): batched decoding takes it, prompts of hundreds of tokens take cuBLAS. */
#define CU_MMQ_MAX_N 128
#define CU_TC_W_MAX ((size_t)128 << 20)   /* decoded-weight workspace (16-bit) at most */
#define CU_PIN_MAX ((size_t)8 << 20)      /* to_host's pinned bounce buffer at most */
#define CU_REG_MAX 4                      /* host_register ranges an instance holds */

typedef struct cu_range {
    uintptr_t host;
    size_t bytes;
    uint8_t *dev;
} cu_range;

/* What the model's backend and its forks share: the device and the mapped ranges
 * (written only while the model loads, before any fork exists). */
typedef struct cu_store {
    atomic_int refs;
    int device;
    int n_sm;
    size_t smem_max; /* attention kernel's dynamic shared memory limit */
    cu_range *r;     /* sorted by host address */
    size_t n, cap;
} cu_store;

/* An attention call's cells and spans in the arena (attn_stage): where, and what the launch
 * plan needs of them; key and n_tok: the call's (rl_attn_args). */
typedef struct attn_staged {
    uint64_t key;
    int32_t n_tok, maxlen, dense;
    int64_t umax;
    size_t at;
} attn_staged;

/* The key of a RoPE table: the parameters (freq_factors by address: model memory that
 * does not change) and the positions. */
typedef struct rope_key {
    uint32_t tag;
    int32_t n_rot, mode, n_ctx_orig;
    float freq_base, freq_scale, ext_factor, attn_factor, beta_fast, beta_slow;
    uintptr_t freq_factors;
    int64_t n;
} rope_key;

/* Rows of RoPE tables already made for one set of parameters (key, n 0), by position:
 * slot pos % CU_ROPE_ROWS holds row[slot] of position at[slot] (-1: none). */
#define CU_ROPE_ROWS 2048
#define CU_ROPE_SETS 2
typedef struct rope_rows {
    rope_key key;
    int32_t *at;
    float *row; /* [CU_ROPE_ROWS][key.n_rot] */
    uint64_t last_use;
} rope_rows;

typedef struct cu_backend {
    cu_store *store;
    cudaStream_t stream;
    cu_step q;            /* the queued ops (step.h) */
    bool q_ok;            /* q was set up */
    uint8_t *kbuf, *pbuf; /* host scratch: memo keys, payloads / packed arrays */
    size_t kcap, pcap;
    float *ws;
    unsigned int *attn_cnt; /* RL_CU_ATTN_CNT zeroed counters (the vec attention's merge) */
    bool tc_on;       /* tensor-core products (RUVLLM_CUDA_TC=0: off, for bisecting) */
    void *blas;       /* cuBLAS (gemm.c), made at the first product that uses it */
    bool blas_tried;
    void *tcw, *tcx;  /* workspaces: decoded weight rows, 16-bit activations */
    size_t tcw_cap, tcx_cap;
    bool q8_on;       /* int8-activation decode products (RUVLLM_CUDA_Q8=0: off) */
    void *q8x;        /* their workspace: quantized activations */
    size_t q8x_cap;
    bool mmq_on;      /* int8 tensor-core products of many tokens (mmq.cu; RUVLLM_CUDA_MMQ=0:
                         off), their workspace q8x too */
    int64_t mmq_max;  /* most tokens they take (RUVLLM_CUDA_MMQ_MAX, default CU_MMQ_MAX_N;
                         more: cuBLAS) */
    bool mmq_xq;      /* an RMSNorm or gated activation before such a product writes its
                         quantized activations (RUVLLM_CUDA_MMQ_XQ=0: the product does) */
    bool pin_on;      /* to_host through a pinned buffer (RUVLLM_CUDA_PINNED=0: straight) */
    uint8_t *pin;     /* that buffer (cudaMallocHost), grown to the largest copy, at most */
    size_t pin_cap;   /* CU_PIN_MAX */
    bool reg_on; /* host_register page-locks (RUVLLM_CUDA_HOSTREG=0: it does nothing, A/B) */
    void *reg[CU_REG_MAX]; /* host ranges page-locked by host_register: to_host copies */
    size_t reg_bytes[CU_REG_MAX]; /* into them directly */
    uint8_t *reg_dev[CU_REG_MAX]; /* their device addresses (mapped), or NULL */
    int n_reg;
    bool head_host; /* the output head stores into its mapped logits row (head_to_host;
                       RUVLLM_CUDA_HEAD_HOST=0: copied after it) */
    int64_t n_head_host; /* to_host calls done that way */
    int32_t *am_ids;  /* argmax_to_host's device ids [am_n], then its zeroed workspace
                         (rl__cu_argmax_ws_bytes(am_n), at am_ws_at(am_n)) */
    int64_t am_n;
    size_t am_cap;
    rl__cu_sample_ws *samp; /* sample_to_host's workspace (sample.cu), made at first use */
    bool split_on; /* a forward's queue runs in two parts (cu_add; RUVLLM_CUDA_SPLIT=0: one) */
    int n_add;     /* residual adds queued since the last flush that was not a split */
    /* The staging of the last attention with a cells key (rl_attn_args) in the queued list:
     * the layers after it with that key take it as it is (cu_attention). ak_on:
     * RUVLLM_CUDA_ATTN_KEY=0 stages every layer's (the comparison with the list's memo). */
    bool ak_on, ak_valid;
    attn_staged ak;
    bool rows_on; /* RoPE rows kept by position (cu_rope; RUVLLM_CUDA_ROPE_ROWS=0: no) */
    rope_rows rows[CU_ROPE_SETS];
    uint64_t rows_tick;
    rl_status err;
} cu_backend;

static cu_backend *CU(rl_backend *be) { return be->impl; }

static void fail(cu_backend *c, cudaError_t e, const char *what) {
    if (e == cudaSuccess || c->err != RL_OK) return;
    c->err = e == cudaErrorMemoryAllocation ? RL_ERR_NOMEM : RL_ERR_INTERNAL;
    fprintf(stderr, "ruvllm: cuda: %s: %s\n", what, cudaGetErrorString(e));
}

static void nomem(cu_backend *c) {
    if (c->err == RL_OK) c->err = RL_ERR_NOMEM;
}

/* The device current on this thread as this file last set it: every op makes its
 * backend's device current (a context may move between threads), and skips the call
 * when it already is. */
static _Thread_local int t_device = -1;

static cudaError_t set_device(int d) {
    if (t_device == d) return cudaSuccess;
    cudaError_t e = cudaSetDevice(d);
    t_device = e == cudaSuccess ? d : -1;
    return e;
}

static void use_device(cu_backend *c) { fail(c, set_device(c->store->device), "set device"); }

/* Run the queued ops (they launch nothing until a result is needed: step.h). */
static void flush(cu_backend *c) {
    const char *what;
    use_device(c);
    fail(c, rl__cu_step_flush(&c->q, &what), what);
    c->n_add = 0;
    c->ak_valid = false; /* the arena it points into is gone */
}

/* Wait for the stream; after it the queue's arena starts over (rl__cu_step_idle). */
static void sync_stream(cu_backend *c) {
    const cudaError_t e = cudaStreamSynchronize(c->stream);
    fail(c, e, "synchronize");
    if (e == cudaSuccess) rl__cu_step_idle(&c->q);
}

/* A record of op for the queue, or NULL (out of memory, recorded as the op's error). */
static cu_rec *push(cu_backend *c, cu_op op) {
    cu_rec *r = rl__cu_step_push(&c->q, op);
    if (!r) nomem(c);
    return r;
}

/* ---- host scratch ---- */
static bool grow_host(uint8_t **buf, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t n = RL_MAX(need, *cap * 2);
    uint8_t *p = rl__realloc(*buf, n);
    if (!p) return false;
    *buf = p;
    *cap = n;
    return true;
}

/* bytes of a host array into the queue's arena: its offset there, or false. */
static bool stage(cu_backend *c, const void *host, size_t bytes, size_t *at) {
    if (rl__cu_step_put(&c->q, host, bytes, bytes, at)) return true;
    nomem(c);
    return false;
}

/* The arena offset of the payload remembered under the key in c->kbuf[0..kb) in this
 * queue, else of payload (pb bytes, room for cap) put there now. Arrays that repeat
 * within a pass (the RoPE table of the pass's positions, the KV cells, the attention
 * cell lists and spans: the same for every layer) go to the device once. */
static bool memo_stage(cu_backend *c, size_t kb, const void *payload, size_t pb, size_t cap,
                       size_t *at) {
    if (rl__cu_step_memo_find(&c->q, c->kbuf, kb, at)) return true;
    if (!rl__cu_step_put(&c->q, payload, pb, cap, at)) {
        nomem(c);
        return false;
    }
    rl__cu_step_memo_put(&c->q, c->kbuf, kb, *at);
    return true;
}

/* ---- pointers ---- */

/* The device copy of p when p lies in a mapped range, else p itself. */
static const void *dev_ptr(const cu_store *s, const void *p) {
    const uintptr_t a = (uintptr_t)p;
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->r[mid].host <= a)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo > 0) {
        const cu_range *r = &s->r[lo - 1];
        if (a - r->host < r->bytes) return r->dev + (a - r->host);
    }
    return p;
}

/* A weight's data on the device: its mapped copy, or device memory it already is. */
static rl_status weight_ptr(cu_backend *c, const rl_weight *w, const void **out) {
    const void *p = dev_ptr(c->store, w->data);
    if (p == w->data) {
        struct cudaPointerAttributes at;
        if (cudaPointerGetAttributes(&at, p) != cudaSuccess || at.type != cudaMemoryTypeDevice) {
            cudaGetLastError();
            fprintf(stderr, "ruvllm: cuda: weight %s is neither mapped nor device memory\n",
                    w->name ? w->name : "?");
            return RL_ERR_INVALID_ARG;
        }
    }
    *out = p;
    return RL_OK;
}

/* ---- the ops ---- */

/* Bytes to allocate for a buffer of `bytes`: rounded up to 16 and 16 more. Kernels stream
 * rows in aligned 16-byte chunks (cp.async with a partial source size for a row's last
 * chunk, mmq.cu); the slack keeps every such chunk inside the allocation, which is what
 * compute-sanitizer's memcheck checks (it counts a partial cp.async as 16 bytes read). */
static size_t padded(size_t bytes) {
    return bytes > SIZE_MAX - 32 ? bytes : (bytes + 31) & ~(size_t)15;
}

static void *cu_alloc(rl_backend *be, size_t bytes) {
    use_device(CU(be));
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? padded(bytes) : 256) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

static void cu_free(rl_backend *be, void *p) {
    if (!p) return;
    cu_backend *c = CU(be);
    flush(c);
    sync_stream(c);
    fail(c, cudaFree(p), "free");
}

/* Why a bounce buffer: dst is the caller's memory (the context's logits rows), pageable.
 * A device-to-host copy into pageable memory goes through the driver's own staging in
 * small pieces, each waited for, and on a decode step that copy of one logits row (n_vocab
 * floats: 0.5 MB for a 128k vocabulary) cost several times the output-head product that
 * made it (issue 7). Into page-locked memory the copy engine writes at link speed, and a
 * host memcpy out of it is cheap. The buffer grows to the largest copy asked for (up to
 * CU_PIN_MAX; larger copies go through it in pieces), so after the first decode step no
 * allocation is made. If page-locked memory cannot be had, the copy goes straight. */
static int registered_at(const cu_backend *c, const void *p, size_t bytes) {
    for (int i = 0; i < c->n_reg; i++)
        if ((uintptr_t)p >= (uintptr_t)c->reg[i] &&
            (uintptr_t)p - (uintptr_t)c->reg[i] <= c->reg_bytes[i] &&
            bytes <= c->reg_bytes[i] - ((uintptr_t)p - (uintptr_t)c->reg[i]))
            return i;
    return -1;
}

/* The output head's row straight into the logits (its page-locked host row, mapped): when
 * the last queued record is a one-token product on the streaming kernel that writes all of
 * src, it also stores each line of its rows into dst as it goes (rl__cu_matvec_host), and
 * to_host is the flush and one wait; src is written as before. The head is then one launch
 * inside the step's graph; before, the row waited for the product and then crossed the bus,
 * the head cut in three launches so that the copies overlap (rl__cu_step_flush_head, still
 * the way for products the streaming kernel does not take). H100, 2026-11-28, bench_cuda
 * tg0 alternated three times in one call: 1B Q4_K_M (its head 215 MB of Q6_K) 1,531.8,
 * 1,533.2, 1,526.9 tok/s against 1,512.4, 1,512.4, 1,502.8 with RUVLLM_CUDA_HEAD_HOST=0;
 * 8B Q8_0 300.2, 302.8 against 300.9, 301.5. */
static bool head_to_host(cu_backend *c, int ri, void *dst, const void *src, size_t bytes) {
    cu_rec *h = rl__cu_step_head(&c->q, src, bytes);
    if (!c->head_host || !c->reg_dev[ri] || (uintptr_t)dst % sizeof(float) || !h || !h->mm.vec ||
        !rl__cu_matvec_ok(h->mm.type, h->mm.w, h->mm.row_bytes, h->mm.rows, h->mm.K) ||
        (h->mm.xq ? !rl__cu_matvec_q8_type(h->mm.type) : h->mm.type != RL_TYPE_F16))
        return false;
    h->mm.yh = (float *)(c->reg_dev[ri] + ((const uint8_t *)dst - (const uint8_t *)c->reg[ri]));
    rl__cu_step_mark(&c->q, "head to host");
    flush(c);
    sync_stream(c);
    c->n_head_host++;
    return true;
}

static void cu_to_host(rl_backend *be, void *dst, const void *src, size_t bytes) {
    cu_backend *c = CU(be);
    if (!bytes) return;
    const int ri = registered_at(c, dst, bytes);
    const bool reg = ri >= 0;
    if (reg) { /* the output head's row: stored into it, or its copy joined to it */
        cudaError_t e;
        const char *what;
        use_device(c);
        if (head_to_host(c, ri, dst, src, bytes)) return;
        if (rl__cu_step_flush_head(&c->q, dst, src, bytes, &e, &what)) {
            fail(c, e, what);
            c->n_add = 0;
            c->ak_valid = false;
            return;
        }
    }
    flush(c);
    if (reg) { /* page-locked (host_register): no bounce */
        fail(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream),
             "copy to host");
        sync_stream(c);
        return;
    }
    const size_t want = RL_MIN(bytes, CU_PIN_MAX);
    if (c->pin_on && c->pin_cap < want) {
        if (c->pin) cudaFreeHost(c->pin);
        c->pin = NULL;
        c->pin_cap = 0;
        if (cudaMallocHost((void **)&c->pin, want) == cudaSuccess)
            c->pin_cap = want;
        else {
            cudaGetLastError();
            c->pin = NULL;
        }
    }
    if (!c->pin_on || c->pin_cap < want) {
        fail(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream),
             "copy to host");
        sync_stream(c);
        return;
    }
    for (size_t off = 0; off < bytes && c->err == RL_OK; off += c->pin_cap) {
        const size_t n = RL_MIN(c->pin_cap, bytes - off);
        fail(c, cudaMemcpyAsync(c->pin, (const uint8_t *)src + off, n, cudaMemcpyDeviceToHost,
                                c->stream),
             "copy to host");
        sync_stream(c);
        if (c->err == RL_OK) memcpy((uint8_t *)dst + off, c->pin, n);
    }
}

/* The context's logits rows (the results every decode step copies back): page-locked in
 * place, so to_host needs neither the bounce buffer nor the host copy out of it (a 0.5 MB
 * row of a 128k vocabulary: tens of microseconds a step). */
static rl_status cu_host_register(rl_backend *be, void *p, size_t bytes) {
    cu_backend *c = CU(be);
    if (!p || !bytes) return RL_ERR_INVALID_ARG;
    if (!c->reg_on) return RL_OK; /* to_host goes through the bounce buffer */
    if (c->n_reg == CU_REG_MAX) return RL_ERR_NOMEM;
    use_device(c);
    if (c->err != RL_OK) return c->err;
    /* mapped, so that a kernel may store into it (head_to_host) */
    cudaError_t e = cudaHostRegister(p, bytes, cudaHostRegisterMapped);
    void *d = NULL;
    if (e == cudaSuccess && cudaHostGetDevicePointer(&d, p, 0) != cudaSuccess) d = NULL;
    if (e != cudaSuccess) {
        cudaGetLastError();
        e = cudaHostRegister(p, bytes, cudaHostRegisterDefault);
    }
    if (e != cudaSuccess) {
        cudaGetLastError();
        return e == cudaErrorMemoryAllocation ? RL_ERR_NOMEM : RL_ERR_INTERNAL;
    }
    cudaGetLastError(); /* a failed device address is not sticky: copies as before */
    c->reg[c->n_reg] = p;
    c->reg_bytes[c->n_reg] = bytes;
    c->reg_dev[c->n_reg] = d;
    c->n_reg++;
    return RL_OK;
}

static void cu_host_unregister(rl_backend *be, void *p) {
    cu_backend *c = CU(be);
    for (int i = 0; i < c->n_reg; i++) {
        if (c->reg[i] != p) continue;
        use_device(c);
        cudaStreamSynchronize(c->stream); /* no copy into it is left in flight */
        cudaHostUnregister(p);
        cudaGetLastError();
        c->n_reg--;
        c->reg[i] = c->reg[c->n_reg];
        c->reg_bytes[i] = c->reg_bytes[c->n_reg];
        c->reg_dev[i] = c->reg_dev[c->n_reg];
        return;
    }
}

static bool grow_ws(cu_backend *c, void **p, size_t *cap, size_t need);

/* Where the pick's workspace starts in a buffer of n ids (16-byte aligned). */
static size_t am_ws_at(int64_t n) {
    return ((size_t)n * sizeof(int32_t) + 15) & ~(size_t)15;
}

/* The pick joins the queue (so a decode step's graph holds it too); then only n int32
 * ids come back, through to_host's pinned buffer. The ids buffer (with the pick's
 * workspace after it, zeroed when made) grows only when a pass has more outputs than any
 * before (the first steps), as the graphs that read it go on reading the same pointer. */
static void cu_argmax_to_host(rl_backend *be, const float *x, int64_t n, int64_t dim,
                              int32_t *ids) {
    cu_backend *c = CU(be);
    if (n <= 0) return;
    void *p = c->am_ids;
    size_t cap = c->am_cap;
    const int64_t am_n = RL_MAX(n, 64);
    if (n > c->am_n) {
        const bool ok = grow_ws(c, &p, &cap, am_ws_at(am_n) + rl__cu_argmax_ws_bytes(am_n));
        c->am_ids = p; /* NULL after a failed growth: the old buffer is gone */
        c->am_cap = cap;
        c->am_n = ok ? am_n : 0;
        if (!ok) {
            nomem(c);
            return;
        }
        c->q.idle = false;
        fail(c, cudaMemsetAsync(c->am_ids, 0, cap, c->stream), "argmax workspace");
    }
    cu_rec *r = push(c, CU_OP_ARGMAX);
    if (!r) return;
    r->ew.a = x;
    r->ew.n = n;
    r->ew.dim = dim;
    r->ew.x = (float *)c->am_ids; /* int32 ids: the record's output pointer */
    r->ew.xq = (uint8_t *)c->am_ids + am_ws_at(c->am_n);
    cu_to_host(be, ids, c->am_ids, (size_t)n * sizeof(int32_t));
}

/* Sampling runs after the queued ops (the step's graph), eagerly on the same stream: its
 * parameters and penalty lists change every step (a queued record would make every step a
 * new op list), and its result must come back now anyway. One upload of the rows'
 * parameters, one launch (sample.cu), one copy of the ids back: no allocation once the
 * workspace has grown to the largest batch. */
static rl_status cu_sample_to_host(rl_backend *be, float *x, int64_t n, int64_t dim,
                                   const rl_sample_row *rows, const int32_t *pen, int32_t *ids,
                                   int32_t *n_kept) {
    cu_backend *c = CU(be);
    if (n <= 0) return RL_OK;
    if (dim > (1 << 24)) return RL_ERR_UNSUPPORTED;
    flush(c);
    if (c->err != RL_OK) return c->err;
    c->q.idle = false;
    cudaError_t e = rl__cu_sample(c->stream, &c->samp, x, n, dim, rows, pen, ids, n_kept);
    if (e == cudaErrorInvalidValue) {
        cudaGetLastError();
        return RL_ERR_INVALID_ARG;
    }
    fail(c, e, "sample");
    return c->err;
}

/* Small copies join the queue through the arena; large ones (uploads) go at once. */
static void cu_from_host(rl_backend *be, void *dst, const void *src, size_t bytes) {
    cu_backend *c = CU(be);
    if (!bytes) return;
    if (bytes <= CU_COPY_DIRECT) {
        size_t at;
        if (!stage(c, src, bytes, &at)) return;
        cu_rec *r = push(c, CU_OP_COPY);
        if (!r) return;
        r->copy.dst = dst;
        r->copy.at = at;
        r->copy.bytes = bytes;
        return;
    }
    flush(c);
    c->q.idle = false;
    fail(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream), "copy to device");
}

static bool cu_supports_type(rl_backend *be, rl_type t) {
    (void)be;
    return rl__cu_type_ok((int)t);
}

/* Float rows take the 8-wide path when rows and x are 16-byte aligned and K % 8 == 0;
 * block types always do, and need x 16-byte aligned (buffers from alloc are). */
static bool vec_ok(const rl_weight *w, const void *wd, const float *x) {
    return w->ne[0] % 8 == 0 && w->row_bytes % 16 == 0 && (uintptr_t)wd % 16 == 0 &&
           (uintptr_t)x % 16 == 0;
}

/* A workspace of at least need bytes in *p. Queued records may read the old one: they
 * run and finish before it is freed (the records made after read the new one). */
static bool grow_ws(cu_backend *c, void **p, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    if (*p) {
        flush(c);
        sync_stream(c);
        cudaFree(*p);
        *p = NULL;
        *cap = 0;
    }
    use_device(c);
    if (cudaMalloc(p, need) != cudaSuccess) {
        cudaGetLastError();
        *p = NULL;
        return false;
    }
    *cap = need;
    return true;
}

/* Whether a product of n tokens with w goes to tensor cores (gemm.c), with cuBLAS
 * started and the workspaces grown for it. F32 weights keep the float kernel (their
 * results match the CPU's); so does everything when cuBLAS does not start. */
static bool tc_ready(cu_backend *c, const rl_weight *w, bool vec, int64_t n) {
    if (!c->tc_on || n < CU_TC_MIN_N || w->type == RL_TYPE_F32) return false;
    if (!c->blas) {
        if (c->blas_tried) return false;
        c->blas_tried = true;
        use_device(c);
        c->blas = rl__cu_blas_create(c->stream);
        if (!c->blas) {
            fprintf(stderr, "ruvllm: cuda: cuBLAS did not start; products of many tokens run "
                            "without tensor cores\n");
            return false;
        }
    }
    const int64_t K = w->ne[0], rows = w->ne[1];
    const size_t row16 = (size_t)K * 2;
    size_t wneed = 0;
    if (rl__cu_tc_chunk_rows((int)w->type, vec, 1, K, SIZE_MAX) != 0) /* not in place */
        wneed = RL_MIN((size_t)rows * row16, RL_MAX(CU_TC_W_MAX, 128 * row16));
    if (!grow_ws(c, &c->tcw, &c->tcw_cap, wneed) ||
        !grow_ws(c, &c->tcx, &c->tcx_cap, (size_t)n * row16)) {
        nomem(c);
        return false;
    }
    return true;
}

/* The workspace bytes of the int8 tensor-core product (mmq.cu) of n tokens with w, or 0
 * when it does not take this product. */
static size_t mmq_bytes(const cu_backend *c, const rl_weight *w, const void *wd, int64_t n) {
    if (!c->mmq_on || n < RL_CU_MMQ_MIN_N || n > c->mmq_max || w->ne[2] != 1 || w->ne[1] <= 0 ||
        !rl__cu_mmq_ok((int)w->type, wd, w->row_bytes, w->ne[0]))
        return 0;
    return rl__cu_mmq_bytes(w->ne[1], w->ne[0], n);
}

static rl_status cu_reserve_matmul(rl_backend *be, const rl_weight *w, int64_t n) {
    cu_backend *c = CU(be);
    if (!cu_supports_type(be, w->type)) return RL_ERR_UNSUPPORTED;
    if (c->q8_on && n < CU_TC_MIN_N && w->ne[2] == 1 && w->ne[0] > 0 && w->ne[1] > 0) {
        const void *wd = dev_ptr(c->store, w->data);
        /* the q8 path's workspace for up to 4 tokens of this K (decode of a few sequences) */
        const size_t q8 =
            rl__cu_q8_bytes((int)w->type, true, wd, w->row_bytes, w->ne[0], RL_MIN(n, 4));
        if (q8 && !grow_ws(c, &c->q8x, &c->q8x_cap, RL_MAX(q8, (size_t)64 << 10))) {
            if (c->err == RL_ERR_NOMEM) c->err = RL_OK;
            return RL_ERR_NOMEM;
        }
    }
    if (n >= RL_CU_MMQ_MIN_N && w->ne[2] == 1 && w->ne[0] > 0 && w->ne[1] > 0) {
        const void *wd = dev_ptr(c->store, w->data);
        const size_t mq = mmq_bytes(c, w, wd, n);
        if (mq && !grow_ws(c, &c->q8x, &c->q8x_cap, mq)) nomem(c);
        if (!mq && n >= CU_TC_MIN_N) tc_ready(c, w, rl_type_is_quantized(w->type) || vec_ok(w, wd, NULL), n);
        if (c->err == RL_ERR_NOMEM) {
            c->err = RL_OK;
            return RL_ERR_NOMEM;
        }
    }
    return RL_OK;
}

static rl_status cu_matmul(rl_backend *be, const rl_weight *w, const float *x, int64_t n,
                           float *y) {
    cu_backend *c = CU(be);
    if (!rl__cu_type_ok((int)w->type)) return RL_ERR_UNSUPPORTED;
    if (w->ne[2] != 1 || w->ne[0] <= 0 || w->ne[1] < 0 || n < 0) return RL_ERR_INVALID_ARG;
    if (n == 0 || w->ne[1] == 0) return RL_OK;
    const void *wd;
    rl_status st = weight_ptr(c, w, &wd);
    if (st != RL_OK) return st;
    const bool quant = rl_type_is_quantized(w->type);
    if (quant && (w->ne[0] % 8 || (uintptr_t)x % 16)) return RL_ERR_INVALID_ARG;
    const bool vec = quant || vec_ok(w, wd, x);
    const size_t mq = mmq_bytes(c, w, wd, n);
    const bool tc = !mq && tc_ready(c, w, vec, n);
    /* the q8 path (or mmq.cu's for many tokens); consecutive products of one input (q, k,
     * v; gate, up) share its quantization: the record before is a q8 product of the same x
     * whose type reads the same layout (rl__cu_q8_layout; mmq.cu's: rl__cu_mmq_xmode) */
    size_t q8 = mq                 ? mq
                : tc || !c->q8_on ? 0
                                  : rl__cu_q8_bytes((int)w->type, vec, wd, w->row_bytes, w->ne[0], n);
    if (q8 && !grow_ws(c, &c->q8x, &c->q8x_cap, RL_MAX(q8, (size_t)64 << 10))) {
        nomem(c);
        return RL_ERR_NOMEM;
    }
    bool q8_ready = false;
    if (q8 && c->q.n_rec > 0) {
        cu_rec *p = &c->q.rec[c->q.n_rec - 1];
        if (p->op == CU_OP_MATMUL) {
            q8_ready = p->mm.xq == c->q8x && p->mm.x == x && p->mm.n == n && p->mm.K == w->ne[0] &&
                       (mq ? rl__cu_mmq_xmode(p->mm.type) == rl__cu_mmq_xmode((int)w->type)
                           : rl__cu_q8_layout(p->mm.type) == rl__cu_q8_layout((int)w->type));
        } else if (!mq && (p->op == CU_OP_RMSNORM || p->op == CU_OP_GLU) && p->ew.x == x &&
                   p->ew.n == n && p->ew.dim == w->ne[0]) {
            /* x comes from the op just before: it writes the quantization too (one launch
             * fewer, in this product's layout); rows of dim values, dense (glu's output;
             * rmsnorm's rows) */
            p->ew.xq = c->q8x;
            p->ew.xq_mode = rl__cu_q8_layout((int)w->type);
            q8_ready = true;
        } else if (mq && c->mmq_xq && p->ew.x == x && p->ew.n == n && p->ew.dim == w->ne[0] &&
                   ((p->op == CU_OP_RMSNORM &&
                     rl__cu_rmsnorm_mmq_ok(n, p->ew.dim, p->ew.a, p->ew.x, p->ew.c, p->ew.b)) ||
                    (p->op == CU_OP_GLU && rl__cu_glu_mmq_ok(p->ew.a, p->ew.ld, p->ew.b, p->ew.ld2,
                                                             n, p->ew.dim, p->ew.x)))) {
            /* the same for mmq.cu's layout and rounding (batched decoding: the norms before
             * q/k/v and gate/up, the activation before down) */
            p->ew.xq = c->q8x;
            p->ew.xq_mode = rl__cu_xq_mmq_mode(rl__cu_mmq_xmode((int)w->type));
            q8_ready = true;
        }
    }
    cu_rec *r = push(c, CU_OP_MATMUL);
    if (!r) return RL_ERR_NOMEM;
    if (q8) {
        r->mm.xq = c->q8x;
        r->mm.xq_ready = q8_ready;
    }
    if (tc) {
        r->mm.blas = c->blas;
        r->mm.wsw = c->tcw;
        r->mm.wsw_bytes = c->tcw_cap;
        r->mm.wsx = c->tcx;
    }
    r->mm.type = (int)w->type;
    r->mm.vec = vec;
    r->mm.w = wd;
    r->mm.row_bytes = w->row_bytes;
    r->mm.rows = w->ne[1];
    r->mm.K = w->ne[0];
    r->mm.x = x;
    r->mm.n = n;
    r->mm.y = y;
    return c->err;
}

static void cu_get_rows(rl_backend *be, const rl_weight *w, const int32_t *ids, int64_t n,
                        float *y) {
    cu_backend *c = CU(be);
    if (n <= 0) return;
    const void *wd;
    if (weight_ptr(c, w, &wd) != RL_OK) {
        if (c->err == RL_OK) c->err = RL_ERR_INVALID_ARG;
        return;
    }
    size_t at;
    if (!stage(c, ids, (size_t)n * sizeof(int32_t), &at)) return;
    cu_rec *r = push(c, CU_OP_GET_ROWS);
    if (!r) return;
    r->mm.type = (int)w->type;
    r->mm.vec = rl_type_is_quantized(w->type) ||
                (w->ne[0] % 8 == 0 && w->row_bytes % 16 == 0 && (uintptr_t)wd % 16 == 0);
    r->mm.w = wd;
    r->mm.row_bytes = w->row_bytes;
    r->mm.K = w->ne[0];
    r->mm.n = n;
    r->mm.y = y;
    r->mm.ids_at = at;
}

/* A residual add just before, into this norm's input (x += res; norm(x): every layer's
 * two norms), joins the norm's launch: the add's record becomes the norm's. */
static void cu_rmsnorm(rl_backend *be, const float *x, int64_t n, int64_t dim, float eps,
                       const float *w, float *y) {
    cu_backend *c = CU(be);
    cu_rec *r = NULL;
    const float *res = NULL;
    if (c->q.n_rec > 0) {
        cu_rec *p = &c->q.rec[c->q.n_rec - 1];
        if (p->op == CU_OP_ADD && p->ew.x == x && p->ew.n == n * dim && p->ew.a != x) {
            res = p->ew.a;
            memset(p, 0, sizeof *p);
            p->op = CU_OP_RMSNORM;
            r = p;
        }
    }
    if (!r) r = push(c, CU_OP_RMSNORM);
    if (!r) return;
    r->ew.c = res;
    r->ew.a = x;
    r->ew.n = n;
    r->ew.dim = dim;
    r->ew.f = eps;
    r->ew.b = w ? dev_ptr(c->store, w) : NULL;
    r->ew.x = y;
    if (n >= RL_CU_MMQ_MIN_N) { /* the stores rl__cu_step_discard may leave out (r is last) */
        const size_t bytes = (size_t)(n * dim) * sizeof(float);
        rl__cu_step_watch(&c->q, y, bytes, CU_DEAD_Y);
        if (res) rl__cu_step_watch(&c->q, res, bytes, CU_DEAD_SUM);
    }
}

/* The rows kept for the parameters of key (n 0), made (or taken over from the set used
 * least lately) at first use; NULL when out of memory (the rows are then made each time). */
static rope_rows *rope_rows_of(cu_backend *c, const rope_key *key) {
    rope_rows *r = &c->rows[0];
    for (int i = 0; i < CU_ROPE_SETS; i++) {
        rope_rows *ri = &c->rows[i];
        if (ri->at && !memcmp(&ri->key, key, sizeof *key)) {
            ri->last_use = ++c->rows_tick;
            return ri;
        }
        if (ri->last_use < r->last_use) r = ri;
    }
    if (!r->at || r->key.n_rot < key->n_rot) {
        rl__free(r->at);
        rl__free(r->row);
        r->at = rl__malloc(CU_ROPE_ROWS * sizeof *r->at);
        r->row = rl__malloc((size_t)CU_ROPE_ROWS * (size_t)key->n_rot * sizeof *r->row);
        if (!r->at || !r->row) {
            rl__free(r->at);
            rl__free(r->row);
            memset(r, 0, sizeof *r);
            return NULL;
        }
    }
    for (int i = 0; i < CU_ROPE_ROWS; i++) r->at[i] = -1;
    r->key = *key;
    r->last_use = ++c->rows_tick;
    return r;
}

/* Why rows are kept: a table row is n_rot / 2 cosines and sines of large angles (~1 us a
 * row for Llama 3's 128 dims on the host), and a batched decode step of 64 sequences
 * needed 64 rows each step before its first launch. Sequences whose positions meet
 * (sequences of one prompt, sequences that reach a position another reached) take the row
 * already made. */
static void rope_table(cu_backend *c, const rope_key *k, const rl_rope_params *p,
                       const int32_t *pos, int64_t n, float *t) {
    rope_key rk = *k;
    rk.n = 0;
    rope_rows *r = c->rows_on ? rope_rows_of(c, &rk) : NULL;
    const size_t rb = (size_t)p->n_rot * sizeof(float);
    for (int64_t i = 0; i < n; i++) {
        float *ti = t + i * p->n_rot;
        if (!r || pos[i] < 0) {
            rl__rope_cache(p, pos[i], ti);
            continue;
        }
        const int32_t slot = pos[i] % CU_ROPE_ROWS;
        float *row = r->row + (size_t)slot * (size_t)p->n_rot;
        if (r->at[slot] != pos[i]) {
            rl__rope_cache(p, pos[i], row);
            r->at[slot] = pos[i];
        }
        memcpy(ti, row, rb);
    }
}

static void cu_rope(rl_backend *be, float *x, int64_t n, int64_t ld, int32_t n_head,
                    int32_t head_dim, const int32_t *pos, const rl_rope_params *p) {
    cu_backend *c = CU(be);
    if (n <= 0) return;
    rope_key k;
    memset(&k, 0, sizeof k);
    k.tag = 0x45504f52u; /* "ROPE" */
    k.n_rot = p->n_rot;
    k.mode = (int32_t)p->mode;
    k.n_ctx_orig = p->n_ctx_orig;
    k.freq_base = p->freq_base;
    k.freq_scale = p->freq_scale;
    k.ext_factor = p->ext_factor;
    k.attn_factor = p->attn_factor;
    k.beta_fast = p->beta_fast;
    k.beta_slow = p->beta_slow;
    k.freq_factors = (uintptr_t)p->freq_factors;
    k.n = n;
    const size_t pb = (size_t)n * sizeof(int32_t), kb = sizeof k + pb;
    const size_t tb = (size_t)n * (size_t)p->n_rot * sizeof(float);
    if (!grow_host(&c->kbuf, &c->kcap, kb) || !grow_host(&c->pbuf, &c->pcap, tb)) {
        nomem(c);
        return;
    }
    memcpy(c->kbuf, &k, sizeof k);
    memcpy(c->kbuf + sizeof k, pos, pb);
    size_t at;
    if (!rl__cu_step_memo_find(&c->q, c->kbuf, kb, &at)) {
        float *t = (float *)c->pbuf;
        rope_table(c, &k, p, pos, n, t);
        if (!memo_stage(c, kb, t, tb, tb, &at)) return;
    }
    /* q then k at the same positions (every attention block): one launch for both */
    if (c->q.n_rec > 0) {
        cu_rec *q = &c->q.rec[c->q.n_rec - 1];
        if (q->op == CU_OP_ROPE && !q->ew.x2 && q->ew.x != x && q->ew.n == n && q->ew.at0 == at &&
            q->ew.i1 == head_dim && q->ew.i2 == p->n_rot && q->ew.flag == (p->mode == RL_ROPE_NEOX)) {
            q->ew.x2 = x;
            q->ew.ld2 = ld;
            q->ew.i3 = n_head;
            return;
        }
    }
    cu_rec *r = push(c, CU_OP_ROPE);
    if (!r) return;
    r->ew.x = x;
    r->ew.n = n;
    r->ew.ld = ld;
    r->ew.i0 = n_head;
    r->ew.i1 = head_dim;
    r->ew.i2 = p->n_rot;
    r->ew.flag = p->mode == RL_ROPE_NEOX;
    r->ew.at0 = at;
}

static void cu_add_row(rl_backend *be, float *x, int64_t n, int64_t dim, int64_t ld,
                       const float *b) {
    cu_backend *c = CU(be);
    cu_rec *r = push(c, CU_OP_ADD_ROW);
    if (!r) return;
    r->ew.x = x;
    r->ew.n = n;
    r->ew.dim = dim;
    r->ew.ld = ld;
    r->ew.a = dev_ptr(c->store, b);
}

/* x op= over n values: add (a), scale, softcap, fill (f). */
static void ew1(rl_backend *be, cu_op op, float *x, const float *a, int64_t n, float f) {
    cu_rec *r = push(CU(be), op);
    if (!r) return;
    r->ew.x = x;
    r->ew.a = a;
    r->ew.n = n;
    r->ew.f = f;
}

/* Why a forward pass is queued in two parts: the device has nothing to run while the host
 * queues a step (a record an op, ~0.1 us each: 22 us a 1B decode step, 40 us an 8B one on
 * an H100 machine's host) and flushes it. So at the second residual add of a list (the end
 * of the first layer) what is queued is flushed (its own graph), and the device runs that
 * layer while the host queues the rest. The cut falls between a product and the residual
 * add after it, two records that no op or fuse rule joins (the add joins the RMSNorm after
 * it, which is queued in the second part too). Measured and left out (H100, 8B Q4_K_M,
 * ruvllm bench --parallel 8,32,64, alternated twice): a pass of 16+ tokens also cut before
 * its first attention, so that its cells are staged while the device runs the first
 * products: 8 / 32 / 64 sequences 2,309, 2,400 / 5,806, 5,970 / 7,641, 7,681 tok/s against
 * 2,379, 2,396 / 5,915, 6,017 / 7,806, 7,710 without. A single-token step's host side
 * (two H100 machines, 2026-11-27, timestamps in the queue, bench_cuda's tg0 steps, 8B
 * Q8_0): 5-9 us from the sync of the step before to the first record, 3-4 us to queue the
 * first layer, 7-20 us to flush it (arena upload ~3 us, graph launch ~3 us), 23-36 us to
 * queue the other 31 layers and 11-15 us to flush them; by these times the device waits
 * some 20-50 us of a ~3,300 us step. Other cuts (tg0, one call, alternated three times):
 * also after the second layer (adds 2 and 4), or one cut after the second or third layer:
 * 8B Q8_0 298.8 to 300.7 tok/s against 301.2, 301.2, 301.3; 1B Q4_K_M 1,485 to 1,526 for
 * every variant including this one (its spread between runs). */
static void cu_add(rl_backend *be, float *x, const float *y, int64_t n) {
    cu_backend *c = CU(be);
    if (c->split_on && ++c->n_add == 2 && c->q.n_rec > 0 && c->err == RL_OK) {
        const char *what;
        use_device(c);
        fail(c, rl__cu_step_flush(&c->q, &what), what);
        c->ak_valid = false;
    }
    ew1(be, CU_OP_ADD, x, y, n, 0.0f);
}

static void cu_scale(rl_backend *be, float *x, int64_t n, float s) {
    ew1(be, CU_OP_SCALE, x, NULL, n, s);
}

static void cu_softcap(rl_backend *be, float *x, int64_t n, float cap) {
    ew1(be, CU_OP_SOFTCAP, x, NULL, n, cap);
}

static void cu_fill(rl_backend *be, float *x, int64_t n, float v) {
    ew1(be, CU_OP_FILL, x, NULL, n, v);
}

static void cu_glu(rl_backend *be, rl_glu_act act, const float *gate, int64_t ld_g, const float *up,
                   int64_t ld_u, int64_t n, int64_t dim, float *out) {
    cu_rec *r = push(CU(be), CU_OP_GLU);
    if (!r) return;
    r->ew.i0 = act == RL_GLU_SILU ? 0 : 1;
    r->ew.a = gate;
    r->ew.ld = ld_g;
    r->ew.b = up;
    r->ew.ld2 = ld_u;
    r->ew.n = n;
    r->ew.dim = dim;
    r->ew.x = out;
    /* many tokens: the product after reads the quantization (cu_matmul), maybe only that */
    if (n >= RL_CU_MMQ_MIN_N)
        rl__cu_step_watch(&CU(be)->q, out, (size_t)(n * dim) * sizeof(float), CU_DEAD_Y);
}

/* The stores of the queued ops into [p, p + bytes) that nothing reads are left out
 * (rl__cu_step_discard). */
static void cu_discard(rl_backend *be, const void *p, size_t bytes) {
    rl__cu_step_discard(&CU(be)->q, p, bytes);
}

static void cu_get_rows_f32(rl_backend *be, const float *src, const int32_t *ids, int64_t n,
                            int64_t dim, float *dst) {
    cu_backend *c = CU(be);
    if (n <= 0) return;
    size_t at;
    if (!stage(c, ids, (size_t)n * sizeof(int32_t), &at)) return;
    cu_rec *r = push(c, CU_OP_GET_ROWS_F32);
    if (!r) return;
    r->ew.a = src;
    r->ew.at0 = at;
    r->ew.n = n;
    r->ew.dim = dim;
    r->ew.x = dst;
}

static void cu_add_rows_scaled(rl_backend *be, float *x, int64_t dim, const int32_t *ids,
                               const float *w, int64_t n, const float *y) {
    cu_backend *c = CU(be);
    if (n <= 0) return;
    size_t ai, aw;
    if (!stage(c, ids, (size_t)n * sizeof(int32_t), &ai) ||
        !stage(c, w, (size_t)n * sizeof(float), &aw))
        return;
    cu_rec *r = push(c, CU_OP_ADD_ROWS_SCALED);
    if (!r) return;
    r->ew.x = x;
    r->ew.dim = dim;
    r->ew.at0 = ai;
    r->ew.at1 = aw;
    r->ew.n = n;
    r->ew.a = y;
}

/* The arena offset of a cell list (remembered: every layer of a pass writes the same). */
static bool cells_stage(cu_backend *c, const int32_t *cells, int64_t n, size_t *at) {
    const uint32_t tag = 0x4c4c4543u; /* "CELL" */
    const size_t cb = (size_t)n * sizeof(int32_t), kb = sizeof tag + cb;
    if (!grow_host(&c->kbuf, &c->kcap, kb)) {
        nomem(c);
        return false;
    }
    memcpy(c->kbuf, &tag, sizeof tag);
    memcpy(c->kbuf + sizeof tag, cells, cb);
    return memo_stage(c, kb, cells, cb, cb, at);
}

static void kv_rec(cu_backend *c, cu_op op, const rl_kv_layer *kv, bool is_v, const float *src,
                   int64_t ld, int64_t n, size_t at0, size_t at1) {
    cu_rec *r = push(c, op);
    if (!r) return;
    r->kv.type = (int)kv->type;
    r->kv.tab = is_v ? kv->v : kv->k;
    r->kv.row_bytes = is_v ? kv->v_row_bytes : kv->k_row_bytes;
    r->kv.src = src;
    r->kv.ld = ld;
    r->kv.ne = is_v ? kv->n_embd_v : kv->n_embd_k;
    r->kv.n = n;
    r->kv.at0 = at0;
    r->kv.at1 = at1;
}

static void cu_kv_write(rl_backend *be, const rl_kv_layer *kv, const float *k, int64_t ld_k,
                        const float *v, int64_t ld_v, int64_t n, const int32_t *cells) {
    cu_backend *c = CU(be);
    if (n <= 0) return;
    size_t at;
    if (!cells_stage(c, cells, n, &at)) return;
    /* K and V in one launch: the K record carries the V side */
    kv_rec(c, CU_OP_KV_WRITE, kv, false, k, ld_k, n, at, 0);
    if (c->err != RL_OK || c->q.n_rec == 0) return;
    cu_rec *r = &c->q.rec[c->q.n_rec - 1];
    r->kv.v = (rl__cu_kv_side){kv->v, kv->v_row_bytes, v, ld_v, kv->n_embd_v};
}

static void cu_kv_copy(rl_backend *be, const rl_kv_layer *kv, const int32_t *src,
                       const int32_t *dst, int64_t n) {
    cu_backend *c = CU(be);
    if (n <= 0) return;
    const size_t b = (size_t)n * sizeof(int32_t);
    size_t as, ad;
    if (!stage(c, src, b, &as) || !stage(c, dst, b, &ad)) return;
    kv_rec(c, CU_OP_KV_COPY, kv, false, NULL, 0, n, as, ad);
    kv_rec(c, CU_OP_KV_COPY, kv, true, NULL, 0, n, as, ad);
}

/* The smallest power of two >= v and >= lo. */
static int64_t pow2_at_least(int64_t v, int64_t lo) {
    int64_t p = lo;
    while (p < v) p *= 2;
    return p;
}

/* Whether the tokens of a share their cells in blocks of the tensor-core kernel's rows
 * (RL_CU_FATTN_ROWS (token, head) pairs, consecutive tokens): it reads, for each block, the
 * union of its tokens' spans for every row, which pays while that is at most 4 times the
 * cells the rows see (prefill); tokens of different sequences (batched decode) do not. */
static int32_t attn_dense(const rl_attn_args *a, int64_t *umax) {
    const int32_t n_gqa = a->n_head / a->n_head_kv;
    const int32_t tb = RL_MAX(1, RL_CU_FATTN_ROWS / n_gqa); /* tokens per block */
    int64_t seen = 0, read = 0;
    *umax = 0; /* the longest block union */
    for (int32_t t0 = 0; t0 < a->n_tok; t0 += tb) {
        int32_t lo = INT32_MAX, hi = 0, n = RL_MIN(tb, a->n_tok - t0);
        for (int32_t t = t0; t < t0 + n; t++) {
            const int32_t b = a->span[2 * t], e = a->span[2 * t + 1];
            if (e <= b) continue;
            seen += e - b;
            lo = RL_MIN(lo, b);
            hi = RL_MAX(hi, e);
        }
        if (hi > lo) read += (int64_t)n * (hi - lo);
        if (hi > lo) *umax = RL_MAX(*umax, (int64_t)(hi - lo));
    }
    return read <= 4 * seen;
}

static bool attn_stage(cu_backend *c, const rl_attn_args *a, attn_staged *st);

/* The spans relative to the part of the cell list they touch, then that part, go to the
 * arena (attn_stage: once a pass, through its cells key, or found by content in the list's
 * memo); then the kernel, with the spans cut into pieces when there are too few (token,
 * head) blocks to fill the GPU. The arena room for cells and the split are chosen from
 * powers of two of the list's length, so the records of consecutive decode steps are equal
 * and replay as one graph until the context crosses the next power of two. The key saves
 * each later layer a copy and a comparison of the whole cell list (64 sequences of 576
 * cells: 147 KB a layer), host time that a batched step waits for (H100, 8B Q4_K_M, ruvllm
 * bench --parallel 8,32,64 -p 512 -n 128, alternated, RUVLLM_CUDA_ATTN_KEY=0 vs on: 64
 * sequences 7,164 / 7,226 -> 7,298 / 7,257 tok/s; 8 and 32 unchanged within noise). */

static void cu_attention(rl_backend *be, const rl_kv_layer *kv, const rl_attn_args *a) {
    cu_backend *c = CU(be);
    if (a->n_tok <= 0) return;
    if (rl__cu_attn_smem(a->head_dim_k, a->head_dim_v) > c->store->smem_max ||
        (kv->type == RL_TYPE_Q8_0 && (a->head_dim_k % 32 || a->head_dim_v % 32))) {
        if (c->err == RL_OK) {
            c->err = RL_ERR_UNSUPPORTED;
            fprintf(stderr, "ruvllm: cuda: attention: head sizes %d/%d are not supported\n",
                    a->head_dim_k, a->head_dim_v);
        }
        return;
    }
    attn_staged st;
    if (c->ak_on && a->cells_key && c->ak_valid && c->ak.key == a->cells_key &&
        c->ak.n_tok == a->n_tok) { /* an earlier layer of this pass staged them */
        st = c->ak;
    } else if (!attn_stage(c, a, &st)) {
        return;
    }

    cu_rec *r = push(c, CU_OP_ATTENTION);
    if (!r) return;
    rl__cu_attn *ca = &r->attn.a; /* zeroed by push; cells and span stay NULL */
    ca->type = (int)kv->type;
    ca->k = kv->k;
    ca->v = kv->v;
    ca->k_row_bytes = kv->k_row_bytes;
    ca->v_row_bytes = kv->v_row_bytes;
    ca->n_tok = a->n_tok;
    ca->n_head = a->n_head;
    ca->n_head_kv = a->n_head_kv;
    ca->head_dim_k = a->head_dim_k;
    ca->head_dim_v = a->head_dim_v;
    ca->q = a->q;
    ca->q_ld = a->q_ld;
    ca->out = a->out;
    ca->out_ld = a->out_ld;
    ca->scale = a->scale;
    ca->softcap = a->softcap;
    ca->ws = c->ws;
    ca->cnt = c->attn_cnt;
    ca->dense = st.dense;
    rl__cu_attn_plan(ca, st.maxlen, st.umax, c->store->n_sm, CU_WS_BYTES); /* the pieces */
    r->attn.span_at = st.at;
    r->attn.cells_at = st.at + 2 * (size_t)a->n_tok * sizeof(int32_t);
}

/* The spans of a (relative to the part of the cell list they touch), then that part, into
 * the arena at st->at (or where the list's memo has them); the longest span, whether the
 * tokens share their cells (attn_dense) and its longest block union. With a cells key the
 * result is kept for the pass's later layers (ak). false when out of memory. */
static bool attn_stage(cu_backend *c, const rl_attn_args *a, attn_staged *st) {
    int32_t lo = INT32_MAX, hi = 0, maxlen = 0;
    for (int32_t t = 0; t < a->n_tok; t++) {
        const int32_t b = a->span[2 * t], e = a->span[2 * t + 1];
        if (e <= b) continue;
        lo = RL_MIN(lo, b);
        hi = RL_MAX(hi, e);
        maxlen = RL_MAX(maxlen, e - b);
    }
    if (hi == 0) lo = 0;
    int64_t umax;
    const int32_t dense = attn_dense(a, &umax);
    const uint32_t tag = 0x4e545441u; /* "ATTN" */
    const size_t nc = (size_t)(hi - lo), ns = 2 * (size_t)a->n_tok, hb = sizeof tag + sizeof(int32_t);
    const size_t pb = (ns + nc) * sizeof(int32_t), kb = hb + pb;
    const size_t cap = (ns + (size_t)pow2_at_least((int64_t)nc, 64)) * sizeof(int32_t);
    /* spans, then cells: with a cells key (staged once a pass) written into the arena
     * itself, without the memo's copies of the list (64 sequences of 576 cells: 147 KB);
     * else built in kbuf behind the memo's key header */
    const bool direct = a->cells_key && c->ak_on;
    int32_t *pl;
    size_t at = 0;
    if (direct) {
        if (!rl__cu_step_put(&c->q, NULL, pb, cap, &at)) {
            nomem(c);
            return false;
        }
        pl = (int32_t *)rl__cu_step_host(&c->q, at);
    } else {
        if (!grow_host(&c->kbuf, &c->kcap, kb)) {
            nomem(c);
            return false;
        }
        int32_t n_cells = (int32_t)nc;
        memcpy(c->kbuf, &tag, sizeof tag);
        memcpy(c->kbuf + sizeof tag, &n_cells, sizeof n_cells);
        pl = (int32_t *)(c->kbuf + hb);
    }
    for (int32_t t = 0; t < a->n_tok; t++) {
        const int32_t b = a->span[2 * t], e = a->span[2 * t + 1];
        pl[2 * (size_t)t] = e > b ? b - lo : 0;
        pl[2 * (size_t)t + 1] = e > b ? e - lo : 0;
    }
    if (nc) memcpy(pl + ns, a->cells + lo, nc * sizeof(int32_t));
    if (!direct && !memo_stage(c, kb, pl, pb, cap, &at)) return false;
    *st = (attn_staged){.key = a->cells_key, .n_tok = a->n_tok, .maxlen = maxlen, .dense = dense,
                        .umax = umax, .at = at};
    c->ak = *st;
    c->ak_valid = a->cells_key != 0;
    return true;
}

static rl_status cu_sync(rl_backend *be) {
    cu_backend *c = CU(be);
    rl__cu_step_mark(&c->q, "sync in");
    /* after to_host's wait (a decode step) nothing is left to wait for: the wait on an idle
     * stream took 2.6 us of the host's time between two 1B decode steps (step_trace.h, H100,
     * 2026-11-28), 0.1 us without it */
    flush(c); /* records queued: the stream is no longer idle */
    if (!c->q.idle) sync_stream(c);
    rl__cu_step_mark(&c->q, "sync out");
    rl_status st = c->err;
    c->err = RL_OK;
    return st;
}

/* ---- mapping, instances ---- */

static rl_status cu_map_host(rl_backend *be, const void *host, size_t bytes) {
    cu_backend *c = CU(be);
    cu_store *s = c->store;
    if (!bytes) return RL_OK;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        cu_range *r = rl__realloc(s->r, cap * sizeof *r);
        if (!r) return RL_ERR_NOMEM;
        s->r = r;
        s->cap = cap;
    }
    use_device(c);
    void *dev = NULL;
    cudaError_t e = cudaMalloc(&dev, padded(bytes));
    if (e != cudaSuccess) {
        cudaGetLastError();
        return RL_ERR_NOMEM;
    }
    e = cudaMemcpy(dev, host, bytes, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) {
        fail(c, e, "weight upload");
        cudaFree(dev);
        return RL_ERR_INTERNAL;
    }
    size_t i = s->n;
    while (i > 0 && s->r[i - 1].host > (uintptr_t)host) {
        s->r[i] = s->r[i - 1];
        i--;
    }
    s->r[i] = (cu_range){(uintptr_t)host, bytes, dev};
    s->n++;
    return RL_OK;
}

static void store_unref(cu_store *s) {
    if (atomic_fetch_sub(&s->refs, 1) != 1) return;
    set_device(s->device);
    for (size_t i = 0; i < s->n; i++) cudaFree(s->r[i].dev);
    rl__free(s->r);
    rl__free(s);
}

static void cu_destroy(rl_backend *be) {
    if (!be) return;
    cu_backend *c = CU(be);
    set_device(c->store->device);
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (c->q_ok) rl__cu_step_free(&c->q);
    rl__cu_blas_free(c->blas);
    cudaFree(c->tcw);
    cudaFree(c->tcx);
    cudaFree(c->q8x);
    cudaFree(c->ws);
    cudaFree(c->attn_cnt);
    cudaFree(c->am_ids);
    rl__cu_sample_free(c->samp);
    if (c->pin) cudaFreeHost(c->pin);
    for (int i = 0; i < c->n_reg; i++) cudaHostUnregister(c->reg[i]); /* left registered */
    if (c->stream) cudaStreamDestroy(c->stream);
    rl__free(c->kbuf);
    rl__free(c->pbuf);
    for (int i = 0; i < CU_ROPE_SETS; i++) {
        rl__free(c->rows[i].at);
        rl__free(c->rows[i].row);
    }
    store_unref(c->store);
    rl__free(c);
    rl__free(be);
}

static rl_status cu_fork(rl_backend *be, rl_backend **out);

static const rl_backend_ops k_cuda_ops = {
    .version = RL_BACKEND_OPS_VERSION,
    .name = "cuda",
    .destroy = cu_destroy,
    .alloc = cu_alloc,
    .free = cu_free,
    .to_host = cu_to_host,
    .from_host = cu_from_host,
    .reserve_matmul = cu_reserve_matmul,
    .matmul = cu_matmul,
    .get_rows = cu_get_rows,
    .rmsnorm = cu_rmsnorm,
    .rope = cu_rope,
    .add_row = cu_add_row,
    .add = cu_add,
    .scale = cu_scale,
    .softcap = cu_softcap,
    .glu = cu_glu,
    .get_rows_f32 = cu_get_rows_f32,
    .kv_write = cu_kv_write,
    .attention = cu_attention,
    .kv_copy = cu_kv_copy,
    .fill = cu_fill,
    .add_rows_scaled = cu_add_rows_scaled,
    .map_host = cu_map_host,
    .supports_type = cu_supports_type,
    .fork = cu_fork,
    .sync = cu_sync,
    .argmax_to_host = cu_argmax_to_host,
    .sample_to_host = cu_sample_to_host,
    .host_register = cu_host_register,
    .host_unregister = cu_host_unregister,
    .discard = cu_discard,
};

/* An instance on s (taking a reference): its stream and attention workspace. */
static rl_status instance_new(cu_store *s, rl_backend **out) {
    *out = NULL;
    rl_backend *be = rl__calloc(1, sizeof *be);
    cu_backend *c = rl__calloc(1, sizeof *c);
    if (!be || !c) {
        rl__free(be);
        rl__free(c);
        return RL_ERR_NOMEM;
    }
    c->store = s;
    atomic_fetch_add(&s->refs, 1);
    be->ops = &k_cuda_ops;
    be->impl = c;
    if (set_device(s->device) != cudaSuccess ||
        cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking) != cudaSuccess) {
        cudaGetLastError();
        c->stream = NULL;
        cu_destroy(be);
        return RL_ERR_INTERNAL;
    }
    if (rl__cu_step_init(&c->q, c->stream) != cudaSuccess) {
        cudaGetLastError();
        cu_destroy(be);
        return RL_ERR_INTERNAL;
    }
    c->q_ok = true;
    const char *tc = getenv("RUVLLM_CUDA_TC");
    c->tc_on = !(tc && tc[0] == '0');
    const char *hh = getenv("RUVLLM_CUDA_HEAD_HOST");
    c->head_host = !(hh && hh[0] == '0');
    const char *q8 = getenv("RUVLLM_CUDA_Q8");
    c->q8_on = !(q8 && q8[0] == '0');
    const char *mmq = getenv("RUVLLM_CUDA_MMQ");
    c->mmq_on = !(mmq && mmq[0] == '0');
    const char *mmq_max = getenv("RUVLLM_CUDA_MMQ_MAX");
    c->mmq_max = mmq_max && atoll(mmq_max) > 0 ? atoll(mmq_max) : CU_MMQ_MAX_N;
    const char *mmq_xq = getenv("RUVLLM_CUDA_MMQ_XQ");
    c->mmq_xq = !(mmq_xq && mmq_xq[0] == '0');
    const char *pin = getenv("RUVLLM_CUDA_PINNED");
    c->pin_on = !(pin && pin[0] == '0');
    const char *reg = getenv("RUVLLM_CUDA_HOSTREG");
    c->reg_on = !(reg && reg[0] == '0');
    const char *split = getenv("RUVLLM_CUDA_SPLIT");
    c->split_on = !(split && split[0] == '0');
    const char *ak = getenv("RUVLLM_CUDA_ATTN_KEY");
    c->ak_on = !(ak && ak[0] == '0');
    const char *rows = getenv("RUVLLM_CUDA_ROPE_ROWS");
    c->rows_on = !(rows && rows[0] == '0');
    const size_t cnt_bytes = RL_CU_ATTN_CNT * sizeof(unsigned int);
    if (cudaMalloc((void **)&c->ws, CU_WS_BYTES) != cudaSuccess) c->ws = NULL;
    if (cudaMalloc((void **)&c->attn_cnt, cnt_bytes) != cudaSuccess) c->attn_cnt = NULL;
    if (!c->ws || !c->attn_cnt || cudaMemset(c->attn_cnt, 0, cnt_bytes) != cudaSuccess) {
        cudaGetLastError();
        cu_destroy(be);
        return RL_ERR_NOMEM;
    }
    *out = be;
    return RL_OK;
}

static rl_status cu_fork(rl_backend *be, rl_backend **out) {
    return instance_new(CU(be)->store, out);
}

bool rl__cuda_graph_stats(rl_backend *be, int64_t *eager, int64_t *captured, int64_t *replayed) {
    *eager = *captured = *replayed = 0;
    if (!be || be->ops != &k_cuda_ops) return false;
    const cu_step *q = &CU(be)->q;
    *eager = q->n_eager;
    *captured = q->n_captured;
    *replayed = q->n_replayed;
    return true;
}

int64_t rl__cuda_attn_mmq_count(rl_backend *be) {
    if (!be || be->ops != &k_cuda_ops) return -1;
    return CU(be)->q.n_attn_mmq;
}

int64_t rl__cuda_head_host_count(rl_backend *be) {
    if (!be || be->ops != &k_cuda_ops) return -1;
    return CU(be)->n_head_host;
}

int rl__cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

/* Makes `device` current and reads its properties; errors name the device (no device at all,
 * an index past the count, a driver error). */
static rl_status open_device(int device, struct cudaDeviceProp *prop, char *err, size_t es) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        rl__fmt(err, es, "no CUDA device: %s",
                e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        cudaGetLastError();
        return RL_ERR_UNSUPPORTED;
    }
    if (device < 0 || device >= n) {
        rl__fmt(err, es, "CUDA device %d does not exist (%d found)", device, n);
        return RL_ERR_UNSUPPORTED;
    }
    e = set_device(device);
    if (e == cudaSuccess) e = cudaGetDeviceProperties(prop, device);
    if (e != cudaSuccess) {
        rl__fmt(err, es, "CUDA device %d: %s", device, cudaGetErrorString(e));
        cudaGetLastError();
        return RL_ERR_UNSUPPORTED;
    }
    return RL_OK;
}

rl_status rl__cuda_device_info(int device, char *name, size_t name_size, size_t *total,
                               size_t *free_bytes, char *err, size_t es) {
    if (name_size) name[0] = 0;
    *total = *free_bytes = 0;
    struct cudaDeviceProp prop;
    rl_status st = open_device(device, &prop, err, es);
    if (st != RL_OK) return st;
    cudaError_t e = cudaMemGetInfo(free_bytes, total);
    if (e != cudaSuccess) {
        rl__fmt(err, es, "CUDA device %d: %s", device, cudaGetErrorString(e));
        cudaGetLastError();
        return RL_ERR_UNSUPPORTED;
    }
    rl__fmt(name, name_size, "%s", prop.name);
    return RL_OK;
}

double rl__cuda_copy_bandwidth(int device) {
    const size_t bytes = (size_t)1 << 30;
    if (device < 0 || device >= rl__cuda_device_count() || set_device(device) != cudaSuccess)
        return 0;
    void *a = NULL, *b = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double best = 0;
    if (cudaMalloc(&a, bytes) == cudaSuccess && cudaMalloc(&b, bytes) == cudaSuccess &&
        cudaEventCreate(&e0) == cudaSuccess && cudaEventCreate(&e1) == cudaSuccess &&
        cudaMemset(a, 1, bytes) == cudaSuccess) {
        for (int rep = 0; rep < 6; rep++) {
            float ms = 0;
            cudaEventRecord(e0, 0);
            cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0);
            cudaEventRecord(e1, 0);
            if (cudaEventSynchronize(e1) != cudaSuccess ||
                cudaEventElapsedTime(&ms, e0, e1) != cudaSuccess || ms <= 0)
                break;
            if (rep > 0) best = RL_MAX(best, 2.0 * (double)bytes / (ms * 1e-3));
        }
    }
    cudaGetLastError();
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaFree(a);
    cudaFree(b);
    return best;
}

/* The IQ4 grid as the CPU decodes it: a block of scale 1 whose codes are 0..15. */
static void iq4_grid(int8_t out[16]) {
    block_iq4_nl b;
    memset(&b, 0, sizeof b);
    b.d = 0x3c00; /* 1.0 */
    for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)j;
    float v[32];
    rl__type_traits_get(RL_TYPE_IQ4_NL)->to_float(&b, v, 32);
    for (int j = 0; j < 16; j++) out[j] = (int8_t)v[j];
}

rl_status rl__backend_cuda_create(int device, rl_backend **out, char *err, size_t es) {
    *out = NULL;
    struct cudaDeviceProp prop;
    rl_status st = open_device(device, &prop, err, es);
    if (st != RL_OK) return st;
    cudaError_t e = cudaSuccess;
    if (prop.major < 8) {
        rl__fmt(err, es, "CUDA device %d (%s) has compute capability %d.%d; 8.0 or later needed",
                device, prop.name, prop.major, prop.minor);
        return RL_ERR_UNSUPPORTED;
    }
    size_t smem_max = 0;
    if (e == cudaSuccess) {
        smem_max = RL_MIN((size_t)prop.sharedMemPerBlockOptin,
                          rl__cu_attn_smem(RL_MAX_HEAD_DIM, RL_MAX_HEAD_DIM));
        int8_t grid[16];
        iq4_grid(grid);
        e = rl__cu_init(grid, smem_max);
    }
    if (e != cudaSuccess) {
        rl__fmt(err, es, "CUDA device %d: %s", device, cudaGetErrorString(e));
        cudaGetLastError();
        return RL_ERR_UNSUPPORTED;
    }
    cu_store *s = rl__calloc(1, sizeof *s);
    if (!s) return RL_ERR_NOMEM;
    atomic_init(&s->refs, 1); /* this function's own reference while it builds */
    s->device = device;
    s->n_sm = prop.multiProcessorCount;
    s->smem_max = smem_max;
    st = instance_new(s, out);
    store_unref(s);
    if (st != RL_OK)
        rl__fmt(err, es, "CUDA device %d: cannot create a stream or workspace: %s", device,
                rl_status_str(st));
    return st;
}
