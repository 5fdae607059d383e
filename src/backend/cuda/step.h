/*
 * step.h - the CUDA backend's op queue and its graphs of repeated steps.
 *
 * The ops of backend_cuda.c do not launch kernels: each appends a record (the launcher
 * to call and its arguments: device pointers, sizes, and the offsets of its host arrays
 * in a staging arena) and returns. The queue runs when the model needs a result on the
 * host or waits (to_host, sync, free): one copy moves the arena's used bytes to its
 * device twin, then the records run. A decode step is a few hundred small launches with
 * the same records every step (the same buffers, shapes and arena offsets; only the
 * arena's contents -- token ids, positions, cells, spans -- change), so the queue keeps
 * the last few distinct record lists it ran twice as instantiated CUDA graphs: a list seen
 * again is one arena copy and one graph launch, with no per-kernel launch cost and no
 * re-capture (CUDA programming guide, "CUDA Graphs"). Lists seen once run eagerly, so a
 * prefill of a new length never pays for a capture. A list equal to one that a kept graph
 * was made or found for, as it was queued (before the fuse pass), goes straight to that
 * graph after one comparison: the fuse pass and the hash over every record took 12-20 us
 * of host time a 1B decode step and ~34 us an 8B one (H100 machine; RUVLLM_CUDA_STEP_QUEUED=0
 * for the full path), time in which the device has nothing queued; with it 4-7 us.
 *
 * A step flushed in parts (backend_cuda.c's cu_add: the first layer runs while the host
 * queues the rest) keeps one arena until the host next waits for the stream
 * (rl__cu_step_idle): each part's bytes follow the last part's, so a later part's upload
 * overwrites nothing a running part reads and goes up on a stream of its own, which the
 * part's first kernel waits for; in the stream it sat between the two parts (the device
 * idle for the copy) and the host waited for the previous upload before staging the next.
 * H100, 2026-11-28, bench_cuda tg0 alternated three times in one call: 1B Q4_K_M 1,533.8,
 * 1,528.2, 1,532.2 tok/s against 1,526.0, 1,518.7, 1,518.6 with RUVLLM_CUDA_STEP_ARENA=0
 * (each flush starts the arena over); 8B Q8_0 303.8, 303.9 against 303.6, 303.4.
 *
 * Everything here runs on the instance's thread and stream; one instance per context.
 */
#ifndef RL_BACKEND_CUDA_STEP_H
#define RL_BACKEND_CUDA_STEP_H

#include "cuda_impl.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- fused decode launchers (matvec.cu, ops_nofma.cu, attention.cu) that the queue's
 * fuse pass (step.c) calls ---- */

/* Up to RL_CU_MV_SEGS matrices of one type and K read as one: rows end[0] of w[0] first
 * (into y[0]), then end[1] - end[0] of w[1], ...; end[] cumulative, unused ones = the last. */
#define RL_CU_MV_SEGS 3
typedef struct rl__cu_mv_segs {
    const uint8_t *w[RL_CU_MV_SEGS];
    float *y[RL_CU_MV_SEGS];
    int64_t end[RL_CU_MV_SEGS];
    float *yh; /* non-NULL: rows [0, end[last]) also stored here (rl__cu_matvec_host) */
} rl__cu_mv_segs;
/* One streaming product of one token over nseg matrices (their q8 activations xq; F16:
 * the float activations x). */
bool rl__cu_matvec_multi_ok(int type, const rl__cu_mv_segs *sg, int nseg, size_t row_bytes,
                            int64_t K);
cudaError_t rl__cu_matvec_multi(cudaStream_t s, int type, const rl__cu_mv_segs *sg, int nseg,
                                size_t row_bytes, int64_t K, const float *x, const void *xq);

/* The gate and up products of one token (w[0], w[1]: F rows each, into y[0], y[1]) with
 * the gated activation after them (act: rl_glu; out [F] = act(gate) * up, quantized into
 * out_xq for the q8 product that reads it next): one launch instead of two. out_xq must
 * not be xq (blocks of the output are quantized while other warps still read xq). cnt:
 * the instance's RL_CU_GLU_BLOCKS counters, zero (and left zero). F16: float activations
 * x, out_xq NULL (the product after reads out as float; cnt unused). */
#define RL_CU_GLU_BLOCKS 4096
#define RL_CU_GLU_XQ_BYTES ((size_t)RL_CU_GLU_BLOCKS * (2 * 256 + sizeof(float)))
bool rl__cu_matvec_glu_ok(int type, const rl__cu_mv_segs *sg, size_t row_bytes, int64_t F,
                          int64_t K);
cudaError_t rl__cu_matvec_glu(cudaStream_t s, int type, const rl__cu_mv_segs *sg,
                              size_t row_bytes, int64_t F, int64_t K, const float *x,
                              const void *xq, int act, float *out, void *out_xq, int out_xq_mode,
                              int *cnt);

/* RoPE of q (n_head heads, ld) and k (n_head_k heads, ld_k) at the same positions, then
 * k and v (n_embd_v values, ld_v) written to the F16 or F32 cache rows cells[t]: one launch
 * for rl__cu_rope + rl__cu_kv_write (the k side's n_embd is n_head_k * head_dim). */
typedef struct rl__cu_rope_kv {
    float *q, *k;
    int64_t ld, ld_k;
    int n_head, n_head_k, head_dim, n_rot;
    bool neox;
    int64_t n;
    const float *tab;
    int kv_type;
    void *ktab, *vtab;
    size_t k_row_bytes, v_row_bytes;
    const float *v;
    int64_t ld_v, n_embd_v;
    const int32_t *cells;
    /* non-NULL: q is the output of an mmq.cu product that left its q_nz partial sums
     * q_part[z][n][ld] (rl__cu_mmq's keep_part; ld = n_head * head_dim = n_rot * n_head:
     * every value of q rotated, so written); they are added here in mmq.cu's order */
    const float *q_part;
    int q_nz;
} rl__cu_rope_kv_args;
/* Whether one launch takes a (F16 or F32 cache, even head_dim and n_rot <= head_dim, even
 * n_embd_v, fewer than 2^31 pairs of values; q_part: as its comment says). */
bool rl__cu_rope_kv_ok(const rl__cu_rope_kv_args *a);
cudaError_t rl__cu_rope_kv(cudaStream_t s, const rl__cu_rope_kv_args *a);

/* rl__cu_attention whose output (dense rows of n_head * head_dim_v values) is also
 * quantized into xq for the q8 product that reads it next, in the layout a->xq_mode names
 * (the decode kernels', or mmq.cu's for 5+ tokens; not the tensor-core kernel's calls). */
bool rl__cu_attention_q8_ok(const rl__cu_attn *a);
cudaError_t rl__cu_attention_q8(cudaStream_t s, const rl__cu_attn *a, void *xq);
/* Whether a (its rope_* fields set) may do the rope_kv launch's work itself: a single token
 * on the short kernel (RUVLLM_CUDA_ATTN_ROPE=0: never). rl__cu_attention and
 * rl__cu_attention_q8 then rotate q and k in place and write the token's cache row first. */
bool rl__cu_attention_rope_ok(const rl__cu_attn *a);

/* Products of one input (the same x of n >= RL_CU_MMQ_MIN_N tokens, the same K; q, k, v or
 * gate, up) that mmq.cu would each run on its streaming kernel, as one launch of it over
 * all their rows (mmq.cu; step.c's fuse pass, RUVLLM_CUDA_MMQ_JOIN=0: not): types all
 * Q4_0, all Q8_0, or Q4_K / Q6_K mixed; ws: mmq.cu's workspace, x quantized into it first
 * unless xq_ready. Up to RL_CU_MMQ_JSEGS products, no K split (a product that split K
 * alone sums its partial sums in another order: within rounding, not bit for bit). */
#define RL_CU_MMQ_JSEGS 3
typedef struct rl__cu_mmq_seg {
    int type;
    const void *w;
    size_t row_bytes;
    int64_t rows;
    float *y;
} rl__cu_mmq_seg;
bool rl__cu_mmq_join_ok(const rl__cu_mmq_seg *sg, int nseg, int64_t K, int64_t n);
cudaError_t rl__cu_mmq_join(cudaStream_t s, const rl__cu_mmq_seg *sg, int nseg, int64_t K,
                            const float *x, int64_t n, void *ws, bool xq_ready);

#ifdef __cplusplus
}
#endif

typedef enum cu_op {
    CU_OP_MATMUL = 1,
    CU_OP_GET_ROWS,
    CU_OP_RMSNORM,
    CU_OP_ROPE,
    CU_OP_ADD_ROW,
    CU_OP_ADD,
    CU_OP_SCALE,
    CU_OP_SOFTCAP,
    CU_OP_FILL,
    CU_OP_GLU,
    CU_OP_GET_ROWS_F32,
    CU_OP_ADD_ROWS_SCALED,
    CU_OP_KV_WRITE,
    CU_OP_KV_COPY,
    CU_OP_ATTENTION,
    CU_OP_COPY,
    CU_OP_ARGMAX,
    CU_OP_MATVEC_MULTI, /* made by the fuse pass (step.c) from consecutive ops */
    CU_OP_ROPE_KV,
    CU_OP_MMQ_JOIN, /* fuse pass: products of one input on mmq.cu's streaming kernel */
} cu_op;

/* One queued launch. Arena offsets are named *_at; all other pointers are device memory.
 * Records are zeroed before they are filled so that two lists compare with memcmp. */
typedef struct cu_rec {
    cu_op op;
    union {
        struct { /* matmul, get_rows (ids_at) */
            int type;
            bool vec;
            const void *w;
            size_t row_bytes;
            int64_t rows, K, n;
            const float *x;
            float *y;
            size_t ids_at;
            void *blas; /* non-NULL: on tensor cores (gemm.c) with these workspaces */
            void *wsw, *wsx;
            size_t wsw_bytes;
            void *xq;      /* blas NULL, xq set: the q8 path with this activation workspace */
            bool xq_ready; /* xq already holds x (the product before quantized it) */
            bool keep_part; /* fuse pass: mmq.cu leaves a K split's partial sums in xq's
                               workspace for the kernel that reads the output next, which
                               adds them: the RMSNorm after it, or the RoPE + cache write
                               of q (fold_parts, rl__cu_mmq) */
            float *yh; /* a one-token streaming product whose y is also stored into mapped
                          host memory here (rl__cu_matvec_host; the backend's to_host of
                          the output head); never joined with another */
        } mm;
        struct { /* the element-wise ops; fields as each launcher names them */
            int i0, i1, i2;
            bool flag; /* rope: NeoX pairs; rmsnorm: early (mark_early, step.c) */
            uint8_t dead; /* rmsnorm, glu: stores left out (CU_DEAD_*: rl__cu_step_discard) */
            float f;
            int64_t n, dim, ld, ld2;
            float *x;
            const float *a, *b;
            const float *c; /* rmsnorm: the residual added to a first (the add before it) */
            float *x2;      /* rope: a second tensor (ld2, i3 heads) at the same positions */
            int i3;
            size_t at0, at1;
            void *xq; /* rmsnorm, glu: the output also quantized for the q8 product next;
                         argmax: its zeroed workspace (argmax.cu) */
            int xq_mode; /* rmsnorm, glu: xq's layout (RL_CU_XQ_*, cuda_impl.h) */
            const float *part; /* rmsnorm, fuse pass: c is the output of the product before,
                                  which left its nz partial sums here (rl__cu_rmsnorm_part) */
            int nz;
        } ew;
        struct { /* kv_write (cells_at), kv_copy (src_at, dst_at) */
            int type;
            void *tab;
            size_t row_bytes;
            const float *src;
            int64_t ld, ne, n;
            size_t at0, at1;
            rl__cu_kv_side v; /* kv_write: the V side (v.tab NULL: none) */
        } kv;
        struct {
            rl__cu_attn a; /* cells and span NULL: they are at cells_at, span_at; rope_tab
                              and rope_cell NULL: at rope_tab_at, rope_cells_at */
            size_t cells_at, span_at;
            void *xq; /* fuse pass: the output also quantized here */
            size_t rope_tab_at, rope_cells_at; /* fuse pass: the rope_kv record joined */
        } attn;
        struct { /* matvec_multi; glu_out set: rl__cu_matvec_glu (gate, up; act glu_act) */
            int type, nseg;
            size_t row_bytes;
            int64_t K;
            rl__cu_mv_segs sg;
            void *xq;
            const float *x; /* F16: float activations (xq NULL) */
            float *glu_out;
            void *glu_xq;
            int glu_act;
            int glu_xq_mode; /* glu_xq's layout (RL_CU_XQ_Q8 or _Q8_32) */
        } mv;
        struct { /* mmq_join (rl__cu_mmq_join's arguments) */
            rl__cu_mmq_seg sg[RL_CU_MMQ_JSEGS];
            int nseg;
            int64_t K, n;
            const float *x;
            void *ws;
            bool xq_ready;
        } mq;
        struct { /* rope_kv: tab and cells NULL, at tab_at and cells_at */
            rl__cu_rope_kv_args a;
            size_t tab_at, cells_at;
        } rkv;
        struct {
            void *dst;
            size_t at, bytes;
        } copy;
    };
} cu_rec;

/* Stores of a record that nothing reads (rl__cu_step_discard), left out where the record
 * runs on mmq.cu's layout: an RMSNorm's output y (ew.x) when the products after it read its
 * quantization; the sum it writes into the product output it adds (ew.c, with the partial
 * sums of a fold); a gated activation's output (ew.x) beside its quantization. */
enum { CU_DEAD_Y = RL_CU_SKIP_Y, CU_DEAD_SUM = RL_CU_SKIP_SUM };
#define CU_DEAD_MAX 8 /* stores watched at once */
typedef struct cu_dead {
    size_t rec;      /* the record's index in the queue */
    const uint8_t *p; /* the bytes it stores */
    size_t bytes;
    uint8_t bit;     /* CU_DEAD_* */
} cu_dead;

#define CU_STEP_GRAPHS 16 /* instantiated graphs kept per instance (a forward: 2, cu_add) */
#define CU_STEP_SEEN 16  /* hashes of recent lists that ran eagerly */
#define CU_STEP_MEMO 8   /* host arrays remembered by content within one list */
#define CU_HEAD_PARTS_MAX 8 /* launches an output head with its copy is cut into at most */
#define CU_HEAD_PARTS 3     /* and by default (RUVLLM_CUDA_HEAD_PARTS; 0 or 1: one, copied after) */

typedef struct cu_graph {
    uint64_t hash, last_use;
    cu_rec *rec;
    size_t n;
    cu_rec *queued; /* the list it stands for as queued (before the fuse pass), or NULL */
    size_t n_queued, cap_queued;
    const uint8_t *arena; /* the device arena the graph's kernels read */
    cudaGraphExec_t exec;
} cu_graph;

typedef struct cu_memo_slot {
    uint8_t *key;
    size_t key_bytes, key_cap, at;
    bool valid;
} cu_memo_slot;

typedef struct cu_step {
    cudaStream_t stream;
    cu_rec *rec;
    size_t n_rec, cap_rec;
    uint8_t *ah, *ad; /* arena: pinned host, device twin */
    bool idle;    /* nothing was queued on the stream since rl__cu_step_idle (the backend
                     clears it when it queues work of its own) */
    size_t a_used, a_hcap, a_dcap;
    size_t a_base; /* step_arena: where this part's bytes begin (those before: earlier
                      parts of the step, uploaded; reset by rl__cu_step_idle) */
    size_t a_sent; /* bytes below which an upload may still be reading ah (a_busy) */
    cudaEvent_t a_ev; /* after the last arena upload, which reads ah */
    bool a_busy;
    bool step_arena;     /* RUVLLM_CUDA_STEP_ARENA=0: every flush starts the arena over */
    cudaStream_t up_cs;  /* step_arena: uploads of a step's later parts */
    cu_memo_slot memo[CU_STEP_MEMO];
    int memo_next;
    cu_graph graph[CU_STEP_GRAPHS];
    uint64_t seen[CU_STEP_SEEN];
    int seen_next;
    uint64_t tick;
    bool graphs_on;                          /* RUVLLM_CUDA_GRAPHS=0 turns graphs off (bisecting) */
    bool fuse_on;                            /* RUVLLM_CUDA_FUSE=0: no fuse pass (step.c) */
    bool f16_join;                           /* RUVLLM_CUDA_MV_F16JOIN=0: F16 not joined */
    bool mmq_join; /* RUVLLM_CUDA_MMQ_JOIN=0: products of many tokens not joined (step.c) */
    bool copy_node; /* RUVLLM_CUDA_COPY_NODE=1: copies as cudaMemcpyAsync, not rl__cu_copy */
    bool f16_early; /* RUVLLM_CUDA_EARLY_F16=0: no early launch after norms (run_all, step.c) */
    bool q8_early;  /* RUVLLM_CUDA_EARLY_Q8_0=0: nor before Q8_0 products */
    /* The output head joined to its copy to the host (rl__cu_step_flush_head): its parts
     * (RUVLLM_CUDA_HEAD_PARTS, 0 or 1: off), the copy stream and an event a part, made at
     * the first use (head_ready). */
    int head_parts;
    bool head_ready;
    cudaStream_t head_cs;
    cudaEvent_t head_ev[CU_HEAD_PARTS_MAX];
    bool fold_on;   /* RUVLLM_CUDA_FOLD=0: K-split partial sums not added by the norm after */
    bool attn_mmq;  /* RUVLLM_CUDA_ATTN_MMQ=0: attention of 5+ tokens leaves the quantization
                       of its output to the mmq.cu product after it (fuse_attn_q8) */
    int *glu_cnt;                            /* RL_CU_GLU_BLOCKS zeroed counters (fuse pass) */
    void *glu_xq;                            /* RL_CU_GLU_XQ_BYTES: the joined gated
                                                activation's q8 output (fuse pass) */
    int64_t n_eager, n_captured, n_replayed; /* lists run each way */
    int64_t n_attn_mmq; /* attention calls given mmq.cu's q8 output by the fuse pass */
    cu_rec *queued; /* the list being flushed as it was queued (before the fuse pass) */
    size_t n_queued, cap_queued;
    bool queued_on; /* RUVLLM_CUDA_STEP_QUEUED=0: every list through the fuse pass and hash */
    /* stores of the queued records that no record after them has touched yet
       (rl__cu_step_watch); the records before dead_seen were checked against them */
    cu_dead dead[CU_DEAD_MAX];
    int n_dead;
    size_t dead_seen;
    bool dead_on; /* RUVLLM_CUDA_DEAD=0: every store made */
} cu_step;

/* Set up q on stream s (no device memory yet). */
cudaError_t rl__cu_step_init(cu_step *q, cudaStream_t s);
/* Free everything; queued records are dropped. The stream must be idle. */
void rl__cu_step_free(cu_step *q);
/* The stream (and the instance's other streams) ran everything queued before: the next
 * list's arena starts over. Call after each host synchronization. */
void rl__cu_step_idle(cu_step *q);
/* A point of the step for step_trace.h's timeline (nothing outside a -DRL_CU_TRACE build). */
void rl__cu_step_mark(cu_step *q, const char *name);
/* A zeroed record of op appended to the queue; NULL when out of memory. */
cu_rec *rl__cu_step_push(cu_step *q, cu_op op);
/* Watch the store of the record queued last into [p, p + bytes) for rl__cu_step_discard
 * (bit: CU_DEAD_*); oldest watch dropped when CU_DEAD_MAX are held. */
void rl__cu_step_watch(cu_step *q, const void *p, size_t bytes, uint8_t bit);
/* [p, p + bytes) is not read again before it is written (rl_backend_ops.discard): each
 * watched store inside it that no record queued after it reads is marked left out in its
 * record (ew.dead). A record after the store "reads" it when any of its words points into
 * the stored bytes, except a product of many tokens that reads the quantization of that
 * input (mmq.cu, xq ready) and a norm or product that overwrites all of them without
 * reading them (the store is then dead at once). Conservative: a pointer that only covers
 * the bytes from below is not seen, so stores are only watched where every op takes the
 * buffer by its start (the forward's own allocations). */
void rl__cu_step_discard(cu_step *q, const void *p, size_t bytes);
/* bytes of host memory copied into the arena (room for cap >= bytes reserved, 16-byte
 * aligned); its offset in *at. host NULL: the room only, which the caller fills through
 * rl__cu_step_host before the next put (a put may move the arena). false when out of
 * memory. */
bool rl__cu_step_put(cu_step *q, const void *host, size_t bytes, size_t cap, size_t *at);
/* The arena's host bytes at offset at (rl__cu_step_put). */
uint8_t *rl__cu_step_host(cu_step *q, size_t at);
/* The arena offset of the payload remembered under key in this list, or false. */
bool rl__cu_step_memo_find(cu_step *q, const void *key, size_t key_bytes, size_t *at);
void rl__cu_step_memo_put(cu_step *q, const void *key, size_t key_bytes, size_t at);
/* Run the queued records (upload, then replay, capture or eager launches) and empty the
 * queue; does not wait. *what names the step that failed. */
cudaError_t rl__cu_step_flush(cu_step *q, const char **what);
/* Flush the queue and copy src (bytes of device memory) to dst (page-locked host memory), with
 * the copy joined to the list's last record when that record wrote src: a product of one
 * token (the output head, whose row of logits the model copies back every step). Then the
 * rest of the list runs first (flush), the product in q->head_parts launches over parts of its
 * rows, and each part's copy goes on its own stream while the parts after it compute: only
 * the last part's copy (the smallest, an eighth of the rows) is left after the product. Waits
 * for the copy. Returns false, doing nothing, when it does not apply (parts off, another last
 * record, another range); then the caller flushes and copies. */
bool rl__cu_step_flush_head(cu_step *q, void *dst, const void *src, size_t bytes, cudaError_t *err,
                            const char **what);
/* The last queued record when it is a one-token product off the tensor cores whose output
 * is all of src (bytes: its rows of floats), the output head a to_host copies; else NULL. */
cu_rec *rl__cu_step_head(cu_step *q, const void *src, size_t bytes);

#endif /* RL_BACKEND_CUDA_STEP_H */
