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
 * Host arrays. Everything runs in order on the backend's one stream. A host array an op
 * needs is copied with cudaMemcpyAsync into device scratch right before its kernel: a
 * copy from pageable memory is staged by the driver before the call returns, and stream
 * order keeps the next op's copy from overwriting scratch an earlier kernel still reads.
 * Arrays that repeat within a pass (the RoPE table of the pass's positions, the KV cells,
 * the attention cell lists and spans: the same for every layer) are remembered by content
 * in a few slots, so a decode step copies them once, not once per layer.
 *
 * Errors. The void ops report CUDA failures through a sticky status that sync returns
 * (the context calls it after every pass); the first one is also printed, since a device
 * fault has no other place to say what failed.
 */
#include "cuda_impl.h"

#include "../backend.h"
#include "../cpu/backend_cpu.h"
#include "../../quant/blocks.h"
#include "../../quant/quant.h"

#include <stdatomic.h>
#include <stdio.h>

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

#define CU_MEMO_SLOTS 6
#define CU_WS_BYTES ((size_t)16 << 20) /* attention partials */

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

typedef struct cu_memo {
    uint8_t *key; /* host copy of the key */
    size_t key_bytes, key_cap;
    void *dev; /* the payload on the device */
    size_t dev_cap;
    bool valid;
} cu_memo;

typedef struct cu_backend {
    cu_store *store;
    cudaStream_t stream;
    uint8_t *kbuf, *pbuf; /* host scratch: memo keys, payloads / packed arrays */
    size_t kcap, pcap;
    void *dstage; /* device scratch for per-op host arrays */
    size_t dstage_cap;
    float *ws;
    cu_memo memo[CU_MEMO_SLOTS];
    int memo_next;
    rl_status err;
} cu_backend;

static cu_backend *CU(rl_backend *be) { return be->impl; }

static void fail(cu_backend *c, cudaError_t e, const char *what) {
    if (e == cudaSuccess || c->err != RL_OK) return;
    c->err = e == cudaErrorMemoryAllocation ? RL_ERR_NOMEM : RL_ERR_INTERNAL;
    fprintf(stderr, "ruvllm: cuda: %s: %s\n", what, cudaGetErrorString(e));
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

/* A device buffer of at least need bytes in *p (capacity *cap); the stream is drained
 * before an old buffer is freed, since queued kernels may still read it. */
static bool grow_dev(cu_backend *c, void **p, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t n = RL_MAX(need, RL_MAX(*cap * 2, (size_t)4096));
    if (*p) {
        fail(c, cudaStreamSynchronize(c->stream), "synchronize");
        cudaFree(*p);
        *p = NULL;
        *cap = 0;
    }
    cudaError_t e = cudaMalloc(p, n);
    if (e != cudaSuccess) {
        *p = NULL;
        fail(c, e, "scratch allocation");
        return false;
    }
    *cap = n;
    return true;
}

/* The device copy of bytes of host memory, valid for the kernels of this op. */
static const void *stage(cu_backend *c, const void *host, size_t bytes) {
    if (!grow_dev(c, &c->dstage, &c->dstage_cap, bytes)) return NULL;
    fail(c, cudaMemcpyAsync(c->dstage, host, bytes, cudaMemcpyHostToDevice, c->stream),
         "copy to device");
    return c->dstage;
}

/* The device payload remembered under the key in c->kbuf[0..kb), or NULL. */
static const void *memo_find(cu_backend *c, size_t kb) {
    for (int i = 0; i < CU_MEMO_SLOTS; i++) {
        const cu_memo *m = &c->memo[i];
        if (m->valid && m->key_bytes == kb && !memcmp(m->key, c->kbuf, kb)) return m->dev;
    }
    return NULL;
}

/* Remember payload (host, pb bytes) under the key in c->kbuf[0..kb); its device copy. */
static const void *memo_put(cu_backend *c, size_t kb, const void *payload, size_t pb) {
    cu_memo *m = &c->memo[c->memo_next];
    c->memo_next = (c->memo_next + 1) % CU_MEMO_SLOTS;
    m->valid = false;
    if (!grow_host(&m->key, &m->key_cap, kb) || !grow_dev(c, &m->dev, &m->dev_cap, pb)) {
        if (c->err == RL_OK) c->err = RL_ERR_NOMEM;
        return NULL;
    }
    fail(c, cudaMemcpyAsync(m->dev, payload, pb, cudaMemcpyHostToDevice, c->stream),
         "copy to device");
    memcpy(m->key, c->kbuf, kb);
    m->key_bytes = kb;
    m->valid = true;
    return m->dev;
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

static void *cu_alloc(rl_backend *be, size_t bytes) {
    use_device(CU(be));
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 256) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

static void cu_free(rl_backend *be, void *p) {
    if (!p) return;
    cu_backend *c = CU(be);
    use_device(c);
    fail(c, cudaStreamSynchronize(c->stream), "synchronize");
    fail(c, cudaFree(p), "free");
}

static void cu_to_host(rl_backend *be, void *dst, const void *src, size_t bytes) {
    cu_backend *c = CU(be);
    if (!bytes) return;
    use_device(c);
    fail(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, c->stream), "copy to host");
    fail(c, cudaStreamSynchronize(c->stream), "synchronize");
}

static void cu_from_host(rl_backend *be, void *dst, const void *src, size_t bytes) {
    cu_backend *c = CU(be);
    if (!bytes) return;
    use_device(c);
    fail(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, c->stream), "copy to device");
}

static bool cu_supports_type(rl_backend *be, rl_type t) {
    (void)be;
    return rl__cu_type_ok((int)t);
}

static rl_status cu_reserve_matmul(rl_backend *be, const rl_weight *w, int64_t n) {
    (void)n;
    return cu_supports_type(be, w->type) ? RL_OK : RL_ERR_UNSUPPORTED;
}

/* Float rows take the 8-wide path when rows and x are 16-byte aligned and K % 8 == 0;
 * block types always do, and need x 16-byte aligned (buffers from alloc are). */
static bool vec_ok(const rl_weight *w, const void *wd, const float *x) {
    return w->ne[0] % 8 == 0 && w->row_bytes % 16 == 0 && (uintptr_t)wd % 16 == 0 &&
           (uintptr_t)x % 16 == 0;
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
    use_device(c);
    cudaError_t e = rl__cu_matmul(c->stream, (int)w->type, quant || vec_ok(w, wd, x), wd,
                                  w->row_bytes, w->ne[1], w->ne[0], x, n, y);
    if (e != cudaSuccess) {
        fail(c, e, "matmul");
        return RL_ERR_INTERNAL;
    }
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
    use_device(c);
    const int32_t *d_ids = stage(c, ids, (size_t)n * sizeof(int32_t));
    if (!d_ids) return;
    const bool vec = rl_type_is_quantized(w->type) ||
                     (w->ne[0] % 8 == 0 && w->row_bytes % 16 == 0 && (uintptr_t)wd % 16 == 0);
    fail(c, rl__cu_get_rows(c->stream, (int)w->type, vec, wd, w->row_bytes, w->ne[0], d_ids, n, y),
         "get_rows");
}

static void cu_rmsnorm(rl_backend *be, const float *x, int64_t n, int64_t dim, float eps,
                       const float *w, float *y) {
    cu_backend *c = CU(be);
    use_device(c);
    fail(c, rl__cu_rmsnorm(c->stream, x, n, dim, eps, w ? dev_ptr(c->store, w) : NULL, y),
         "rmsnorm");
}

/* The key of a RoPE table: the parameters (freq_factors by address: model memory that
 * does not change) and the positions. */
typedef struct rope_key {
    uint32_t tag;
    int32_t n_rot, mode, n_ctx_orig;
    float freq_base, freq_scale, ext_factor, attn_factor, beta_fast, beta_slow;
    uintptr_t freq_factors;
    int64_t n;
} rope_key;

static void cu_rope(rl_backend *be, float *x, int64_t n, int64_t ld, int32_t n_head,
                    int32_t head_dim, const int32_t *pos, const rl_rope_params *p) {
    cu_backend *c = CU(be);
    if (n <= 0) return;
    use_device(c);
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
        if (c->err == RL_OK) c->err = RL_ERR_NOMEM;
        return;
    }
    memcpy(c->kbuf, &k, sizeof k);
    memcpy(c->kbuf + sizeof k, pos, pb);
    const void *tab = memo_find(c, kb);
    if (!tab) {
        float *t = (float *)c->pbuf;
        for (int64_t r = 0; r < n; r++) rl__rope_cache(p, pos[r], t + r * p->n_rot);
        tab = memo_put(c, kb, t, tb);
        if (!tab) return;
    }
    fail(c,
         rl__cu_rope(c->stream, x, n, ld, n_head, head_dim, p->n_rot, p->mode == RL_ROPE_NEOX, tab),
         "rope");
}

static void cu_add_row(rl_backend *be, float *x, int64_t n, int64_t dim, int64_t ld,
                       const float *b) {
    cu_backend *c = CU(be);
    use_device(c);
    fail(c, rl__cu_add_row(c->stream, x, n, dim, ld, dev_ptr(c->store, b)), "add_row");
}

static void cu_add(rl_backend *be, float *x, const float *y, int64_t n) {
    cu_backend *c = CU(be);
    use_device(c);
    fail(c, rl__cu_add(c->stream, x, y, n), "add");
}

static void cu_scale(rl_backend *be, float *x, int64_t n, float s) {
    cu_backend *c = CU(be);
    use_device(c);
    fail(c, rl__cu_scale(c->stream, x, n, s), "scale");
}

static void cu_softcap(rl_backend *be, float *x, int64_t n, float cap) {
    cu_backend *c = CU(be);
    use_device(c);
    fail(c, rl__cu_softcap(c->stream, x, n, cap), "softcap");
}

static void cu_fill(rl_backend *be, float *x, int64_t n, float v) {
    cu_backend *c = CU(be);
    use_device(c);
    fail(c, rl__cu_fill(c->stream, x, n, v), "fill");
}

static void cu_glu(rl_backend *be, rl_glu_act act, const float *gate, int64_t ld_g, const float *up,
                   int64_t ld_u, int64_t n, int64_t dim, float *out) {
    cu_backend *c = CU(be);
    use_device(c);
    fail(c, rl__cu_glu(c->stream, act == RL_GLU_SILU ? 0 : 1, gate, ld_g, up, ld_u, n, dim, out),
         "glu");
}

static void cu_get_rows_f32(rl_backend *be, const float *src, const int32_t *ids, int64_t n,
                            int64_t dim, float *dst) {
    cu_backend *c = CU(be);
    if (n <= 0) return;
    use_device(c);
    const int32_t *d_ids = stage(c, ids, (size_t)n * sizeof(int32_t));
    if (!d_ids) return;
    fail(c, rl__cu_get_rows_f32(c->stream, src, d_ids, n, dim, dst), "get_rows_f32");
}

static void cu_add_rows_scaled(rl_backend *be, float *x, int64_t dim, const int32_t *ids,
                               const float *w, int64_t n, const float *y) {
    cu_backend *c = CU(be);
    if (n <= 0) return;
    use_device(c);
    const size_t ib = (size_t)n * sizeof(int32_t), wb = (size_t)n * sizeof(float);
    if (!grow_host(&c->pbuf, &c->pcap, ib + wb)) {
        if (c->err == RL_OK) c->err = RL_ERR_NOMEM;
        return;
    }
    memcpy(c->pbuf, ids, ib);
    memcpy(c->pbuf + ib, w, wb);
    const uint8_t *d = stage(c, c->pbuf, ib + wb);
    if (!d) return;
    fail(c,
         rl__cu_add_rows_scaled(c->stream, x, dim, (const int32_t *)d, (const float *)(d + ib), n,
                                y),
         "add_rows_scaled");
}

/* The device copy of a cell list (remembered: every layer of a pass writes the same). */
static const int32_t *cells_dev(cu_backend *c, const int32_t *cells, int64_t n) {
    const uint32_t tag = 0x4c4c4543u; /* "CELL" */
    const size_t cb = (size_t)n * sizeof(int32_t), kb = sizeof tag + cb;
    if (!grow_host(&c->kbuf, &c->kcap, kb)) {
        if (c->err == RL_OK) c->err = RL_ERR_NOMEM;
        return NULL;
    }
    memcpy(c->kbuf, &tag, sizeof tag);
    memcpy(c->kbuf + sizeof tag, cells, cb);
    const void *d = memo_find(c, kb);
    if (!d) d = memo_put(c, kb, cells, cb);
    return d;
}

static void cu_kv_write(rl_backend *be, const rl_kv_layer *kv, const float *k, int64_t ld_k,
                        const float *v, int64_t ld_v, int64_t n, const int32_t *cells) {
    cu_backend *c = CU(be);
    if (n <= 0) return;
    use_device(c);
    const int32_t *d = cells_dev(c, cells, n);
    if (!d) return;
    fail(c,
         rl__cu_kv_write(c->stream, (int)kv->type, kv->k, kv->k_row_bytes, k, ld_k, kv->n_embd_k, n,
                         d),
         "kv_write K");
    fail(c,
         rl__cu_kv_write(c->stream, (int)kv->type, kv->v, kv->v_row_bytes, v, ld_v, kv->n_embd_v, n,
                         d),
         "kv_write V");
}

static void cu_kv_copy(rl_backend *be, const rl_kv_layer *kv, const int32_t *src,
                       const int32_t *dst, int64_t n) {
    cu_backend *c = CU(be);
    if (n <= 0) return;
    use_device(c);
    const size_t b = (size_t)n * sizeof(int32_t);
    if (!grow_host(&c->pbuf, &c->pcap, 2 * b)) {
        if (c->err == RL_OK) c->err = RL_ERR_NOMEM;
        return;
    }
    memcpy(c->pbuf, src, b);
    memcpy(c->pbuf + b, dst, b);
    const uint8_t *d = stage(c, c->pbuf, 2 * b);
    if (!d) return;
    const int32_t *ds = (const int32_t *)d, *dd = (const int32_t *)(d + b);
    fail(c, rl__cu_kv_copy(c->stream, kv->k, kv->k_row_bytes, ds, dd, n), "kv_copy K");
    fail(c, rl__cu_kv_copy(c->stream, kv->v, kv->v_row_bytes, ds, dd, n), "kv_copy V");
}

/* The part of the cell list the spans touch and the spans relative to it go to the
 * device (remembered: the same for every layer of a pass); then the kernel, with the
 * spans cut into pieces when there are too few (token, head) blocks to fill the GPU. */
static void cu_attention(rl_backend *be, const rl_kv_layer *kv, const rl_attn_args *a) {
    cu_backend *c = CU(be);
    if (a->n_tok <= 0) return;
    use_device(c);
    if (rl__cu_attn_smem(a->head_dim_k, a->head_dim_v) > c->store->smem_max ||
        (kv->type == RL_TYPE_Q8_0 && (a->head_dim_k % 32 || a->head_dim_v % 32))) {
        if (c->err == RL_OK) {
            c->err = RL_ERR_UNSUPPORTED;
            fprintf(stderr, "ruvllm: cuda: attention: head sizes %d/%d are not supported\n",
                    a->head_dim_k, a->head_dim_v);
        }
        return;
    }
    int32_t lo = INT32_MAX, hi = 0, maxlen = 0;
    for (int32_t t = 0; t < a->n_tok; t++) {
        const int32_t b = a->span[2 * t], e = a->span[2 * t + 1];
        if (e <= b) continue;
        lo = RL_MIN(lo, b);
        hi = RL_MAX(hi, e);
        maxlen = RL_MAX(maxlen, e - b);
    }
    if (hi == 0) lo = 0;
    const uint32_t tag = 0x4e545441u; /* "ATTN" */
    const size_t nc = (size_t)(hi - lo), hb = sizeof tag + sizeof(int32_t);
    const size_t pb = (nc + 2 * (size_t)a->n_tok) * sizeof(int32_t), kb = hb + pb;
    if (!grow_host(&c->kbuf, &c->kcap, kb)) {
        if (c->err == RL_OK) c->err = RL_ERR_NOMEM;
        return;
    }
    int32_t n_cells = (int32_t)nc;
    memcpy(c->kbuf, &tag, sizeof tag);
    memcpy(c->kbuf + sizeof tag, &n_cells, sizeof n_cells);
    int32_t *pl = (int32_t *)(c->kbuf + hb);
    if (nc) memcpy(pl, a->cells + lo, nc * sizeof(int32_t));
    for (int32_t t = 0; t < a->n_tok; t++) {
        const int32_t b = a->span[2 * t], e = a->span[2 * t + 1];
        pl[nc + 2 * (size_t)t] = e > b ? b - lo : 0;
        pl[nc + 2 * (size_t)t + 1] = e > b ? e - lo : 0;
    }
    const uint8_t *d = memo_find(c, kb);
    if (!d) d = memo_put(c, kb, pl, pb);
    if (!d) return;

    const int32_t n_gqa = a->n_head / a->n_head_kv;
    const int64_t blocks =
        (int64_t)a->n_tok * a->n_head_kv * ((n_gqa + RL_CU_ATTN_HC - 1) / RL_CU_ATTN_HC);
    const int64_t target = 2 * (int64_t)c->store->n_sm;
    int64_t n_split = 1;
    if (blocks < target && maxlen > 64) /* pieces of at least 64 cells */
        n_split = RL_MIN((target + blocks - 1) / blocks, ((int64_t)maxlen + 63) / 64);
    const size_t per_split =
        (size_t)a->n_tok * (size_t)a->n_head * (size_t)(a->head_dim_v + 2) * sizeof(float);
    n_split = RL_MIN(n_split, (int64_t)(CU_WS_BYTES / per_split));
    if (n_split < 1) n_split = 1;
    int32_t split_len = RL_MAX(maxlen, 1);
    if (n_split > 1) {
        split_len = (int32_t)((((int64_t)maxlen + n_split - 1) / n_split + 31) / 32 * 32);
        n_split = ((int64_t)maxlen + split_len - 1) / split_len;
    }
    rl__cu_attn ca = {
        .type = (int)kv->type,
        .k = kv->k,
        .v = kv->v,
        .k_row_bytes = kv->k_row_bytes,
        .v_row_bytes = kv->v_row_bytes,
        .n_tok = a->n_tok,
        .n_head = a->n_head,
        .n_head_kv = a->n_head_kv,
        .head_dim_k = a->head_dim_k,
        .head_dim_v = a->head_dim_v,
        .q = a->q,
        .q_ld = a->q_ld,
        .out = a->out,
        .out_ld = a->out_ld,
        .cells = (const int32_t *)d,
        .span = (const int32_t *)d + nc,
        .scale = a->scale,
        .softcap = a->softcap,
        .n_split = (int32_t)n_split,
        .split_len = split_len,
        .ws = c->ws,
    };
    fail(c, rl__cu_attention(c->stream, &ca), "attention");
}

static rl_status cu_sync(rl_backend *be) {
    cu_backend *c = CU(be);
    use_device(c);
    fail(c, cudaStreamSynchronize(c->stream), "synchronize");
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
    cudaError_t e = cudaMalloc(&dev, bytes);
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
    for (int i = 0; i < CU_MEMO_SLOTS; i++) {
        cudaFree(c->memo[i].dev);
        rl__free(c->memo[i].key);
    }
    cudaFree(c->dstage);
    cudaFree(c->ws);
    if (c->stream) cudaStreamDestroy(c->stream);
    rl__free(c->kbuf);
    rl__free(c->pbuf);
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
    if (cudaMalloc((void **)&c->ws, CU_WS_BYTES) != cudaSuccess) {
        cudaGetLastError();
        c->ws = NULL;
        cu_destroy(be);
        return RL_ERR_NOMEM;
    }
    *out = be;
    return RL_OK;
}

static rl_status cu_fork(rl_backend *be, rl_backend **out) {
    return instance_new(CU(be)->store, out);
}

int rl__cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
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
    struct cudaDeviceProp prop;
    e = set_device(device);
    if (e == cudaSuccess) e = cudaGetDeviceProperties(&prop, device);
    if (e == cudaSuccess && prop.major < 8) {
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
    rl_status st = instance_new(s, out);
    store_unref(s);
    if (st != RL_OK)
        rl__fmt(err, es, "CUDA device %d: cannot create a stream or workspace: %s", device,
                rl_status_str(st));
    return st;
}
