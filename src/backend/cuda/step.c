/*
 * step.c - the CUDA backend's op queue (step.h): records, the staging arena, and the
 * cache of instantiated graphs that replays a repeated step with one launch.
 */
#include "step.h"

#include "../../util/util.h"

#include <stdlib.h>
#include <string.h>

#include "step_trace.h"

cudaError_t rl__cu_step_init(cu_step *q, cudaStream_t s) {
    memset(q, 0, sizeof *q);
    q->stream = s;
    const char *env = getenv("RUVLLM_CUDA_GRAPHS");
    q->graphs_on = !(env && env[0] == '0');
    env = getenv("RUVLLM_CUDA_FUSE");
    q->fuse_on = !(env && env[0] == '0');
    env = getenv("RUVLLM_CUDA_COPY_NODE");
    q->copy_node = env && env[0] == '1';
    env = getenv("RUVLLM_CUDA_MV_F16JOIN");
    q->f16_join = !(env && env[0] == '0');
    env = getenv("RUVLLM_CUDA_STEP_QUEUED");
    q->queued_on = !(env && env[0] == '0');
    env = getenv("RUVLLM_CUDA_MMQ_JOIN");
    q->mmq_join = !(env && env[0] == '0');
    env = getenv("RUVLLM_CUDA_EARLY_F16");
    q->f16_early = !(env && env[0] == '0');
    env = getenv("RUVLLM_CUDA_EARLY_Q8_0");
    q->q8_early = !(env && env[0] == '0');
    env = getenv("RUVLLM_CUDA_HEAD_PARTS");
    q->head_parts = env ? atoi(env) : CU_HEAD_PARTS;
    if (q->head_parts > CU_HEAD_PARTS_MAX) q->head_parts = CU_HEAD_PARTS_MAX;
    env = getenv("RUVLLM_CUDA_FOLD");
    q->fold_on = !(env && env[0] == '0');
    env = getenv("RUVLLM_CUDA_ATTN_MMQ");
    q->attn_mmq = !(env && env[0] == '0');
    env = getenv("RUVLLM_CUDA_DEAD");
    q->dead_on = !(env && env[0] == '0');
    env = getenv("RUVLLM_CUDA_STEP_ARENA");
    q->step_arena = !(env && env[0] == '0');
    cudaError_t e = cudaEventCreateWithFlags(&q->a_ev, cudaEventDisableTiming);
    if (e == cudaSuccess && q->step_arena)
        e = cudaStreamCreateWithFlags(&q->up_cs, cudaStreamNonBlocking);
    return e;
}

static void graph_drop(cu_graph *g) {
    if (g->exec) cudaGraphExecDestroy(g->exec);
    rl__free(g->rec);
    rl__free(g->queued);
    memset(g, 0, sizeof *g);
}

void rl__cu_step_free(cu_step *q) {
    TR_PRINT(q);
    for (int i = 0; i < CU_STEP_GRAPHS; i++) graph_drop(&q->graph[i]);
    for (int i = 0; i < CU_STEP_MEMO; i++) rl__free(q->memo[i].key);
    if (q->a_ev) cudaEventDestroy(q->a_ev);
    for (int i = 0; i < CU_HEAD_PARTS_MAX; i++)
        if (q->head_ev[i]) cudaEventDestroy(q->head_ev[i]);
    if (q->head_cs) cudaStreamDestroy(q->head_cs);
    if (q->up_cs) cudaStreamDestroy(q->up_cs);
    if (q->ah) cudaFreeHost(q->ah);
    cudaFree(q->ad);
    cudaFree(q->glu_cnt);
    cudaFree(q->glu_xq);
    rl__free(q->rec);
    rl__free(q->queued);
    memset(q, 0, sizeof *q);
}

static void dead_check(cu_step *q);

cu_rec *rl__cu_step_push(cu_step *q, cu_op op) {
    if (q->n_dead) dead_check(q); /* the records so far are complete */
    if (q->n_rec == q->cap_rec) {
        size_t cap = q->cap_rec ? 2 * q->cap_rec : 256;
        cu_rec *r = rl__realloc(q->rec, cap * sizeof *r);
        if (!r) return NULL;
        q->rec = r;
        q->cap_rec = cap;
    }
    if (!q->n_rec) TR_FIRST(q);
    cu_rec *r = &q->rec[q->n_rec++];
    memset(r, 0, sizeof *r);
    r->op = op;
    return r;
}

/* ---- stores nothing reads (rl__cu_step_watch, rl__cu_step_discard) ----
 * A forward releases its scratch tensors as it goes (the model's arena marks); at batched
 * decoding the RMSNorms' outputs, the sums they add into the products before them and the
 * gated activations are written beside the quantization the products after them read, and
 * then released unread: 1-2 MB of stores a norm at 64 tokens of the 8B shape. Only passes
 * of RL_CU_MMQ_MIN_N+ tokens are watched (one token: no cost). RUVLLM_CUDA_DEAD=0: every
 * store made. H100, 2026-11-27, 8B Q4_K_M, ruvllm bench --device cuda --parallel 8,32,64
 * -p 512 -n 128, alternated twice in one call: 2,475, 2,454 / 6,159, 6,133 / 7,915, 7,906
 * tok/s against 2,465, 2,464 / 6,116, 6,112 / 7,790, 7,765 with the switch off. */

/* What record r (as queued: the fuse pass has not joined anything yet) does to the watched
 * bytes [p, p + bytes): 0 nothing, 1 reads them (or may: a word of it points into them;
 * records are zeroed before they are filled, so the words past its member are zero), 2
 * overwrites all of them without reading them (a norm's output, a product's output it
 * writes whole). A product of many tokens on mmq.cu with its quantization ready reads
 * that, not its x (rl__cu_mmq). */
static int rec_use(const cu_rec *r, const uint8_t *p, size_t bytes) {
    const void *unread = NULL, *whole = NULL; /* words of r that do not read the bytes */
    if (r->op == CU_OP_MATMUL) {
        if (r->mm.xq && r->mm.xq_ready && !r->mm.blas && r->mm.n >= RL_CU_MMQ_MIN_N)
            unread = &r->mm.x;
        if ((const uint8_t *)r->mm.y == p && !r->mm.keep_part &&
            (size_t)(r->mm.n * r->mm.rows) * sizeof(float) >= bytes)
            whole = &r->mm.y;
    } else if (r->op == CU_OP_RMSNORM) {
        if ((const uint8_t *)r->ew.x == p && (size_t)(r->ew.n * r->ew.dim) * sizeof(float) >= bytes)
            whole = &r->ew.x;
    }
    const uint8_t *m = (const uint8_t *)&r->mm;
    const size_t n = (sizeof *r - (size_t)(m - (const uint8_t *)r)) / sizeof(uintptr_t);
    for (size_t i = 0; i < n; i++) {
        const uint8_t *a = m + i * sizeof(uintptr_t);
        uintptr_t w;
        memcpy(&w, a, sizeof w);
        if (w - (uintptr_t)p < bytes && a != (const uint8_t *)unread && a != (const uint8_t *)whole)
            return 1;
    }
    return whole ? 2 : 0;
}

static void dead_drop(cu_step *q, int i) {
    q->dead[i] = q->dead[--q->n_dead];
}

/* Check the records queued since the last check against the watched stores: a read ends
 * a watch (the store stays), an overwrite leaves the store out. */
static void dead_check(cu_step *q) {
    for (; q->dead_seen < q->n_rec; q->dead_seen++) {
        const cu_rec *r = &q->rec[q->dead_seen];
        for (int i = 0; i < q->n_dead;) {
            const cu_dead *d = &q->dead[i];
            const int u = d->rec < q->dead_seen ? rec_use(r, d->p, d->bytes) : 0;
            if (u == 2) q->rec[d->rec].ew.dead |= d->bit;
            if (u) {
                dead_drop(q, i);
            } else {
                i++;
            }
        }
    }
}

void rl__cu_step_watch(cu_step *q, const void *p, size_t bytes, uint8_t bit) {
    if (!q->dead_on || !q->n_rec || !p || !bytes) return;
    dead_check(q); /* every record so far (the watched one too), against the older watches */
    if (q->n_dead == CU_DEAD_MAX) dead_drop(q, 0);
    q->dead[q->n_dead++] = (cu_dead){.rec = q->n_rec - 1, .p = p, .bytes = bytes, .bit = bit};
}

void rl__cu_step_discard(cu_step *q, const void *p, size_t bytes) {
    if (!q->n_dead) return;
    dead_check(q);
    for (int i = 0; i < q->n_dead;) {
        const cu_dead *d = &q->dead[i];
        const uintptr_t off = (uintptr_t)d->p - (uintptr_t)p; /* wraps when d->p < p */
        if (off <= bytes && d->bytes <= bytes - off) {
            q->rec[d->rec].ew.dead |= d->bit;
            dead_drop(q, i);
        } else {
            i++;
        }
    }
}

bool rl__cu_step_put(cu_step *q, const void *host, size_t bytes, size_t cap, size_t *at) {
    const size_t off = (q->a_used + 15) & ~(size_t)15;
    if (cap < bytes || off + cap < off) return false;
    const bool grow = off + cap > q->a_hcap;
    if (q->a_busy && (grow || off < q->a_sent)) { /* an upload may still read these bytes */
        cudaEventSynchronize(q->a_ev);
        q->a_busy = false;
    }
    if (grow) {
        size_t n = RL_MAX(off + cap, RL_MAX(2 * q->a_hcap, (size_t)64 << 10));
        uint8_t *h = NULL;
        if (cudaMallocHost((void **)&h, n) != cudaSuccess) {
            cudaGetLastError();
            return false;
        }
        if (q->a_used) memcpy(h, q->ah, q->a_used);
        if (q->ah) cudaFreeHost(q->ah);
        q->ah = h;
        q->a_hcap = n;
    }
    if (bytes && host) memcpy(q->ah + off, host, bytes);
    q->a_used = off + cap;
    *at = off;
    return true;
}

uint8_t *rl__cu_step_host(cu_step *q, size_t at) { return q->ah + at; }

bool rl__cu_step_memo_find(cu_step *q, const void *key, size_t kb, size_t *at) {
    for (int i = 0; i < CU_STEP_MEMO; i++) {
        const cu_memo_slot *m = &q->memo[i];
        if (m->valid && m->key_bytes == kb && !memcmp(m->key, key, kb)) {
            *at = m->at;
            return true;
        }
    }
    return false;
}

void rl__cu_step_memo_put(cu_step *q, const void *key, size_t kb, size_t at) {
    cu_memo_slot *m = &q->memo[q->memo_next];
    q->memo_next = (q->memo_next + 1) % CU_STEP_MEMO;
    m->valid = false;
    if (kb > m->key_cap) {
        uint8_t *k = rl__realloc(m->key, kb);
        if (!k) return; /* only a lost reuse */
        m->key = k;
        m->key_cap = kb;
    }
    memcpy(m->key, key, kb);
    m->key_bytes = kb;
    m->at = at;
    m->valid = true;
}

/* ---- running records ---- */

static const char *op_name(cu_op op) {
    switch (op) {
    case CU_OP_MATMUL:
        return "matmul";
    case CU_OP_GET_ROWS:
        return "get_rows";
    case CU_OP_RMSNORM:
        return "rmsnorm";
    case CU_OP_ROPE:
        return "rope";
    case CU_OP_ADD_ROW:
        return "add_row";
    case CU_OP_ADD:
        return "add";
    case CU_OP_SCALE:
        return "scale";
    case CU_OP_SOFTCAP:
        return "softcap";
    case CU_OP_FILL:
        return "fill";
    case CU_OP_GLU:
        return "glu";
    case CU_OP_GET_ROWS_F32:
        return "get_rows_f32";
    case CU_OP_ADD_ROWS_SCALED:
        return "add_rows_scaled";
    case CU_OP_KV_WRITE:
        return "kv_write";
    case CU_OP_KV_COPY:
        return "kv_copy";
    case CU_OP_ATTENTION:
        return "attention";
    case CU_OP_COPY:
        return "copy";
    case CU_OP_ARGMAX:
        return "argmax";
    case CU_OP_MATVEC_MULTI:
        return "matvec_multi";
    case CU_OP_ROPE_KV:
        return "rope_kv";
    case CU_OP_MMQ_JOIN:
        return "mmq_join";
    }
    return "?";
}

/* The stores of an RMSNorm or gated-activation record to leave out (RL_CU_SKIP_*): those
 * rl__cu_step_discard marked, where the record writes mmq.cu's layout (beside it only). */
static unsigned dead_skip(const cu_rec *r) {
    return r->ew.xq && rl__cu_xq_mmq(r->ew.xq_mode) ? r->ew.dead : 0;
}

static cudaError_t run_rec(cu_step *q, const cu_rec *r) {
    cudaStream_t s = q->stream;
    const uint8_t *A = q->ad;
    switch (r->op) {
    case CU_OP_MATMUL:
        if (r->mm.blas)
            return rl__cu_matmul_tc(s, r->mm.blas, r->mm.type, r->mm.vec, r->mm.w, r->mm.row_bytes,
                                    r->mm.rows, r->mm.K, r->mm.x, r->mm.n, r->mm.y, r->mm.wsw,
                                    r->mm.wsw_bytes, r->mm.wsx);
        if (r->mm.yh) {
            if (r->mm.xq && !r->mm.xq_ready) {
                const cudaError_t e = rl__cu_quant_q8(s, r->mm.x, 1, r->mm.K, r->mm.xq,
                                                      rl__cu_q8_layout(r->mm.type));
                if (e != cudaSuccess) return e;
            }
            return rl__cu_matvec_host(s, r->mm.type, r->mm.w, r->mm.row_bytes, r->mm.rows,
                                      r->mm.K, r->mm.x, r->mm.xq, r->mm.y, r->mm.yh);
        }
        if (r->mm.keep_part)
            return rl__cu_mmq(s, r->mm.type, r->mm.w, r->mm.row_bytes, r->mm.rows, r->mm.K,
                              r->mm.x, r->mm.n, r->mm.y, r->mm.xq, r->mm.xq_ready, true);
        if (r->mm.xq)
            return rl__cu_matmul_q8(s, r->mm.type, r->mm.w, r->mm.row_bytes, r->mm.rows, r->mm.K,
                                    r->mm.x, r->mm.n, r->mm.y, r->mm.xq, r->mm.xq_ready);
        return rl__cu_matmul(s, r->mm.type, r->mm.vec, r->mm.w, r->mm.row_bytes, r->mm.rows,
                             r->mm.K, r->mm.x, r->mm.n, r->mm.y);
    case CU_OP_GET_ROWS:
        return rl__cu_get_rows(s, r->mm.type, r->mm.vec, r->mm.w, r->mm.row_bytes, r->mm.K,
                               (const int32_t *)(A + r->mm.ids_at), r->mm.n, r->mm.y);
    case CU_OP_RMSNORM: {
        const unsigned skip = dead_skip(r);
        if (r->ew.part)
            return rl__cu_rmsnorm_part(s, r->ew.a, r->ew.n, r->ew.dim, r->ew.f, r->ew.b, r->ew.x,
                                       r->ew.xq, r->ew.xq_mode, (float *)r->ew.c, r->ew.part,
                                       r->ew.nz, r->ew.flag, skip);
        return rl__cu_rmsnorm(s, r->ew.a, r->ew.n, r->ew.dim, r->ew.f, r->ew.b, r->ew.x, r->ew.xq,
                              r->ew.xq_mode, r->ew.c, r->ew.flag, skip & RL_CU_SKIP_Y);
    }
    case CU_OP_ROPE:
        return rl__cu_rope(s, r->ew.x, r->ew.ld, r->ew.i0, r->ew.x2, r->ew.ld2, r->ew.i3, r->ew.n,
                           r->ew.i1, r->ew.i2, r->ew.flag, (const float *)(A + r->ew.at0));
    case CU_OP_ADD_ROW:
        return rl__cu_add_row(s, r->ew.x, r->ew.n, r->ew.dim, r->ew.ld, r->ew.a);
    case CU_OP_ADD:
        return rl__cu_add(s, r->ew.x, r->ew.a, r->ew.n);
    case CU_OP_SCALE:
        return rl__cu_scale(s, r->ew.x, r->ew.n, r->ew.f);
    case CU_OP_SOFTCAP:
        return rl__cu_softcap(s, r->ew.x, r->ew.n, r->ew.f);
    case CU_OP_FILL:
        return rl__cu_fill(s, r->ew.x, r->ew.n, r->ew.f);
    case CU_OP_GLU:
        return rl__cu_glu(s, r->ew.i0, r->ew.a, r->ew.ld, r->ew.b, r->ew.ld2, r->ew.n, r->ew.dim,
                          r->ew.x, r->ew.xq, r->ew.xq_mode, dead_skip(r) & RL_CU_SKIP_Y);
    case CU_OP_GET_ROWS_F32:
        return rl__cu_get_rows_f32(s, r->ew.a, (const int32_t *)(A + r->ew.at0), r->ew.n, r->ew.dim,
                                   r->ew.x);
    case CU_OP_ADD_ROWS_SCALED:
        return rl__cu_add_rows_scaled(s, r->ew.x, r->ew.dim, (const int32_t *)(A + r->ew.at0),
                                      (const float *)(A + r->ew.at1), r->ew.n, r->ew.a);
    case CU_OP_KV_WRITE:
    {
        const rl__cu_kv_side k = {r->kv.tab, r->kv.row_bytes, r->kv.src, r->kv.ld, r->kv.ne};
        return rl__cu_kv_write(s, r->kv.type, &k, r->kv.v.tab ? &r->kv.v : NULL, r->kv.n,
                               (const int32_t *)(A + r->kv.at0));
    }
    case CU_OP_KV_COPY:
        return rl__cu_kv_copy(s, r->kv.tab, r->kv.row_bytes, (const int32_t *)(A + r->kv.at0),
                              (const int32_t *)(A + r->kv.at1), r->kv.n);
    case CU_OP_ATTENTION: {
        rl__cu_attn a = r->attn.a;
        a.cells = (const int32_t *)(A + r->attn.cells_at);
        a.span = (const int32_t *)(A + r->attn.span_at);
        if (a.rope_k) {
            a.rope_tab = (const float *)(A + r->attn.rope_tab_at);
            a.rope_cell = (const int32_t *)(A + r->attn.rope_cells_at);
        }
        return r->attn.xq ? rl__cu_attention_q8(s, &a, r->attn.xq) : rl__cu_attention(s, &a);
    }
    case CU_OP_MATVEC_MULTI:
        if (r->mv.glu_out)
            return rl__cu_matvec_glu(s, r->mv.type, &r->mv.sg, r->mv.row_bytes, r->mv.sg.end[0],
                                     r->mv.K, r->mv.x, r->mv.xq, r->mv.glu_act, r->mv.glu_out,
                                     r->mv.glu_xq, r->mv.glu_xq_mode, q->glu_cnt);
        return rl__cu_matvec_multi(s, r->mv.type, &r->mv.sg, r->mv.nseg, r->mv.row_bytes, r->mv.K,
                                   r->mv.x, r->mv.xq);
    case CU_OP_ROPE_KV: {
        rl__cu_rope_kv_args a = r->rkv.a;
        a.tab = (const float *)(A + r->rkv.tab_at);
        a.cells = (const int32_t *)(A + r->rkv.cells_at);
        return rl__cu_rope_kv(s, &a);
    }
    case CU_OP_MMQ_JOIN:
        return rl__cu_mmq_join(s, r->mq.sg, r->mq.nseg, r->mq.K, r->mq.x, r->mq.n, r->mq.ws,
                               r->mq.xq_ready);
    case CU_OP_COPY:
        if (q->copy_node)
            return cudaMemcpyAsync(r->copy.dst, A + r->copy.at, r->copy.bytes,
                                   cudaMemcpyDeviceToDevice, s);
        return rl__cu_copy(s, r->copy.dst, A + r->copy.at, r->copy.bytes);
    case CU_OP_ARGMAX:
        return rl__cu_argmax(s, r->ew.a, r->ew.n, r->ew.dim, (int32_t *)r->ew.x, r->ew.xq);
    }
    return cudaErrorInvalidValue;
}

/* Whether r is a product of one token over weights of type t (the fused q/k/v or gate/up
 * one, or a matmul of one row of activations). */
static bool vec1_of(const cu_rec *r, int t) {
    if (r->op == CU_OP_MATVEC_MULTI) return r->mv.type == t;
    return r->op == CU_OP_MATMUL && !r->mm.blas && r->mm.type == t && r->mm.vec && r->mm.n == 1;
}

/* An RMSNorm right before a one-token F16 or Q8_0 product lets that product launch before
 * the norm's own wait (q->f16_early, q->q8_early; the norm record's flag, set by mark_early
 * before a list is hashed), so its blocks take the multiprocessors that the product before
 * the norm leaves and start copying their weights while it ends.
 * H100, 2026-11-27, bench_cuda --pp 512 --tg 128, alternated in one call
 * (RUVLLM_CUDA_EARLY=1: every norm): 8B F16 tg0 180.1, 180.3 -> 182.4, 183.3 (tg 168.6,
 * 168.4 -> 171.5, 172.3); 8B Q8_0 299.2, 299.3 -> 297.3, 300.1 and 1B Q4_K_M 1,524, 1,525
 * -> 1,451, 1,466: so F16 products only then. Since the norm adds its warps' sums by a tree
 * of shuffles (ops_nofma.cu), 8B Q8_0 (bench_cuda --pp 16 --tg 128, one call, twice):
 * 300.3, 300.4 -> 302.0, 301.5: Q8_0 products too. Before Q4_K products (2026-11-28,
 * bench_cuda --pp 16 --tg 128, tg0, alternated twice in one call; a switch not kept): 1B
 * Q4_K_M before the gate/up product 1,486, 1,465, before q/k/v 1,495, 1,498, both 1,443,
 * 1,465 against 1,526, 1,527; 8B Q4_K_M 427.4 (gate/up), 426.9 (both) against 425.9. */
static void mark_early(cu_step *q) {
    for (size_t i = 0; i + 1 < q->n_rec; i++)
        if (q->rec[i].op == CU_OP_RMSNORM)
            q->rec[i].ew.flag = (q->f16_early && vec1_of(&q->rec[i + 1], RL_TYPE_F16)) ||
                                (q->q8_early && vec1_of(&q->rec[i + 1], RL_TYPE_Q8_0));
}

static cudaError_t run_all(cu_step *q, const char **what) {
    cudaError_t e = cudaSuccess;
    rl__cu_pdl_plain_next(); /* no kernel of this list runs before its first one */
    for (size_t i = 0; i < q->n_rec && e == cudaSuccess; i++) {
        e = run_rec(q, &q->rec[i]);
        if (e != cudaSuccess) *what = op_name(q->rec[i].op);
    }
    return e;
}

/* ---- the fuse pass ----
 * Before a list runs (and before it is hashed, so a replayed graph holds the fused
 * launches), neighbouring records that one kernel can do are joined:
 * - consecutive one-token q8 products of the same activations, type and K (q, k, v;
 *   gate, up) into one streaming product over up to three matrices (matvec.cu: its mv2
 *   kernel where RUVLLM_CUDA_MV2 turns that on, else the streaming kernel; one launch and
 *   one ramp of the memory pipeline instead of two or three; RUVLLM_CUDA_MV_MULTI=0: not);
 *   F16 products of float activations likewise (RUVLLM_CUDA_MV_F16JOIN=0: not);
 * - gate and up so joined, followed by their gated activation of one token (its output
 *   quantized for the down product; F16: left float): one launch (matvec.cu's GLU mode; the activation and
 *   its quantization in the kernel's epilogue; RUVLLM_CUDA_MV_GLU=0 turns it off, matvec.cu);
 * - RoPE of q and k followed by the K/V cache write of that k: one launch (ops_nofma.cu);
 * - split attention of 1 to 4 tokens followed by a q8 product of its output: the combine
 *   kernel quantizes the output, so the product does not (attention.cu); likewise for 5+
 *   tokens and a product on mmq.cu, in its workspace's layout (RUVLLM_CUDA_ATTN_MMQ=0: not);
 * - that RoPE and cache write of one token followed by its attention on the short kernel:
 *   one launch, which rotates and writes the token's row itself and copies the span's other
 *   rows while the kernel before it still runs (attention.cu; RUVLLM_CUDA_ATTN_ROPE=0: not);
 * - consecutive products of one input of 5+ tokens (q, k, v; gate, up) that mmq.cu would
 *   each run on its streaming kernel: one launch over all their rows (rl__cu_mmq_join;
 *   RUVLLM_CUDA_MMQ_JOIN=0: not), and no K split with its partial-sum pass for k and v;
 * - then a product of many tokens that splits K and the RMSNorm or RoPE that reads its
 *   output: that kernel adds the partial sums (fold_parts; RUVLLM_CUDA_FOLD=0: not).
 * Each kernel computes what the records did, in the same arithmetic. RUVLLM_CUDA_FUSE=0
 * turns the pass off (bisecting). */
static bool mv_joinable(const cu_rec *a, const cu_rec *b, bool f16_join_on) {
    /* q8 products reading one quantization, or F16 ones reading float x (vec: aligned) */
    const bool q8 = a->mm.xq && a->mm.xq_ready && b->mm.xq_ready;
    const bool f16 = !a->mm.xq && a->mm.type == RL_TYPE_F16 && a->mm.vec && b->mm.vec &&
                     f16_join_on;
    return a->op == CU_OP_MATMUL && b->op == CU_OP_MATMUL && !a->mm.blas && !b->mm.blas &&
           !a->mm.yh && !b->mm.yh && b->mm.xq == a->mm.xq && (q8 || f16) &&
           a->mm.n == 1 && b->mm.n == 1 && a->mm.x == b->mm.x && a->mm.type == b->mm.type &&
           a->mm.K == b->mm.K && a->mm.row_bytes == b->mm.row_bytes && a->mm.rows > 0 &&
           b->mm.rows > 0;
}

/* Records i.. joined into *out; the number of records taken (0: none). */
static size_t fuse_mv(const cu_rec *r, size_t n, bool f16, cu_rec *out) {
    size_t m = 1;
    while (m < RL_CU_MV_SEGS && m < n && mv_joinable(&r[0], &r[m], f16) &&
           mv_joinable(&r[m - 1], &r[m], f16))
        m++;
    if (m < 2) return 0;
    memset(out, 0, sizeof *out);
    out->op = CU_OP_MATVEC_MULTI;
    out->mv.type = r[0].mm.type;
    out->mv.nseg = (int)m;
    out->mv.row_bytes = r[0].mm.row_bytes;
    out->mv.K = r[0].mm.K;
    out->mv.xq = r[0].mm.xq;
    out->mv.x = r[0].mm.xq ? NULL : r[0].mm.x;
    int64_t end = 0;
    for (size_t i = 0; i < RL_CU_MV_SEGS; i++) {
        const cu_rec *ri = &r[i < m ? i : m - 1];
        if (i < m) end += ri->mm.rows;
        out->mv.sg.w[i] = ri->mm.w;
        out->mv.sg.y[i] = ri->mm.y;
        out->mv.sg.end[i] = end;
    }
    if (!rl__cu_matvec_multi_ok(out->mv.type, &out->mv.sg, (int)m, out->mv.row_bytes, out->mv.K))
        return 0;
    return m;
}

/* Whether b, a product after a, reads a's input as mmq.cu's product of many tokens (the
 * same activations, workspace, tokens and K) from the quantization before it. */
static bool mq_joinable(const cu_rec *a, const cu_rec *b) {
    return a->op == CU_OP_MATMUL && b->op == CU_OP_MATMUL && !a->mm.blas && !b->mm.blas &&
           a->mm.xq && b->mm.xq == a->mm.xq && b->mm.xq_ready && a->mm.n >= RL_CU_MMQ_MIN_N &&
           b->mm.n == a->mm.n && b->mm.x == a->mm.x && b->mm.K == a->mm.K;
}

/* Records i.. (up to RL_CU_MMQ_JSEGS) joined into *out as one mmq.cu launch; the number of
 * records taken (0: none). */
static size_t fuse_mmq(const cu_rec *r, size_t n, cu_rec *out) {
    size_t m = 1;
    while (m < RL_CU_MMQ_JSEGS && m < n && mq_joinable(&r[0], &r[m])) m++;
    for (; m >= 2; m--) {
        memset(out, 0, sizeof *out);
        out->op = CU_OP_MMQ_JOIN;
        out->mq.nseg = (int)m;
        out->mq.K = r[0].mm.K;
        out->mq.n = r[0].mm.n;
        out->mq.x = r[0].mm.x;
        out->mq.ws = r[0].mm.xq;
        out->mq.xq_ready = r[0].mm.xq_ready;
        for (size_t i = 0; i < m; i++) {
            rl__cu_mmq_seg *g = &out->mq.sg[i];
            g->type = r[i].mm.type;
            g->w = r[i].mm.w;
            g->row_bytes = r[i].mm.row_bytes;
            g->rows = r[i].mm.rows;
            g->y = r[i].mm.y;
        }
        if (rl__cu_mmq_join_ok(out->mq.sg, (int)m, out->mq.K, out->mq.n)) return m;
    }
    return 0;
}

static bool fuse_rope_kv(const cu_rec *a, const cu_rec *b, cu_rec *out) {
    if (a->op != CU_OP_ROPE || b->op != CU_OP_KV_WRITE || !a->ew.x2 || !b->kv.v.tab ||
        b->kv.src != a->ew.x2 || b->kv.n != a->ew.n || b->kv.ld != a->ew.ld2 ||
        b->kv.ne != (int64_t)a->ew.i3 * a->ew.i1)
        return false;
    memset(out, 0, sizeof *out);
    out->op = CU_OP_ROPE_KV;
    rl__cu_rope_kv_args *o = &out->rkv.a;
    o->q = a->ew.x;
    o->ld = a->ew.ld;
    o->n_head = a->ew.i0;
    o->k = a->ew.x2;
    o->ld_k = a->ew.ld2;
    o->n_head_k = a->ew.i3;
    o->head_dim = a->ew.i1;
    o->n_rot = a->ew.i2;
    o->neox = a->ew.flag;
    o->n = a->ew.n;
    o->kv_type = b->kv.type;
    o->ktab = b->kv.tab;
    o->k_row_bytes = b->kv.row_bytes;
    o->vtab = b->kv.v.tab;
    o->v_row_bytes = b->kv.v.row_bytes;
    o->v = b->kv.v.src;
    o->ld_v = b->kv.v.ld;
    o->n_embd_v = b->kv.v.ne;
    out->rkv.tab_at = a->ew.at0;
    out->rkv.cells_at = b->kv.at0;
    return rl__cu_rope_kv_ok(o); /* else the two records run as they are */
}

/* The rope_kv record f (one token) joined into the attention record at after it, when its
 * plan took the short kernel: the same q, heads, cache tables and rows. */
static bool fuse_rope_attn(const cu_rec *f, cu_rec *at) {
    const rl__cu_rope_kv_args *r = &f->rkv.a;
    const rl__cu_attn *a = &at->attn.a;
    if (at->op != CU_OP_ATTENTION || a->rope_k || r->n != 1 || a->n_tok != 1 || r->q != a->q ||
        r->ld != a->q_ld || r->n_head != a->n_head || r->n_head_k != a->n_head_kv ||
        r->head_dim != a->head_dim_k || r->head_dim != a->head_dim_v ||
        r->n_embd_v != (int64_t)a->n_head_kv * a->head_dim_v || r->kv_type != a->type ||
        r->ktab != a->k || r->vtab != a->v || r->k_row_bytes != a->k_row_bytes ||
        r->v_row_bytes != a->v_row_bytes)
        return false;
    rl__cu_attn t = *a;
    t.rope_k = r->k;
    t.rope_v = r->v;
    t.rope_ld_k = r->ld_k;
    t.rope_ld_v = r->ld_v;
    t.rope_n_rot = r->n_rot;
    t.rope_neox = r->neox;
    if (!rl__cu_attention_rope_ok(&t)) return false;
    at->attn.a = t;
    at->attn.rope_tab_at = f->rkv.tab_at;
    at->attn.rope_cells_at = f->rkv.cells_at;
    return true;
}

static void fuse_attn_q8(cu_step *q, cu_rec *a, cu_rec *b) {
    rl__cu_attn *t = &a->attn.a;
    /* 1 to 4 tokens: the q8 decode kernels' activation layout (its type's); more: mmq.cu's
     * (the product of a record with xq and RL_CU_MMQ_MIN_N+ tokens runs there,
     * rl__cu_matmul_q8), in the rounding its type takes */
    if (a->op != CU_OP_ATTENTION || b->op != CU_OP_MATMUL || a->attn.xq || !b->mm.xq ||
        b->mm.xq_ready || b->mm.blas || b->mm.x != t->out || b->mm.n != t->n_tok ||
        b->mm.K != (int64_t)t->n_head * t->head_dim_v || t->out_ld != b->mm.K)
        return;
    const bool mmq = t->n_tok >= RL_CU_MMQ_MIN_N;
    if (mmq && !q->attn_mmq) return;
    rl__cu_attn c = *t;
    c.xq_mode = mmq ? rl__cu_xq_mmq_mode(rl__cu_mmq_xmode(b->mm.type))
                    : rl__cu_q8_layout(b->mm.type);
    if (!rl__cu_attention_q8_ok(&c)) return;
    *t = c;
    a->attn.xq = b->mm.xq;
    b->mm.xq_ready = true;
    if (mmq) q->n_attn_mmq++;
}

/* Whether record d is a one-token q8 product of the gated activation g's output that
 * reads the quantization g wrote. */
static bool reads_glu_q8(const cu_rec *d, const cu_rec *g) {
    return d->op == CU_OP_MATMUL && !d->mm.blas && d->mm.xq == g->ew.xq && d->mm.xq_ready &&
           d->mm.x == g->ew.x && d->mm.n == 1;
}

/* The joined gate/up record f (two matrices) and the gated activation g after it, as one
 * record in f; rest: the n records after g. F16 (float activations, f->mv.x): the output
 * stays float, nothing is quantized. Else the joined kernel quantizes its output while
 * other warps still read the input's quantization (the backend's one q8 workspace), so it
 * writes the instance's own q8 buffer, and the products after it that read g's
 * quantization (at least the next record: else no join) read that buffer instead. The
 * counters and the buffer are allocated (the counters zeroed) the first time. */
static bool fuse_glu(cu_step *q, cu_rec *f, const cu_rec *g, cu_rec *rest, size_t n) {
    const int64_t F = f->mv.sg.end[0];
    const bool fl = f->mv.x != NULL;
    if (g->op != CU_OP_GLU || f->mv.nseg != 2 || f->mv.sg.end[1] != 2 * F || g->ew.n != 1 ||
        rl__cu_xq_mmq(g->ew.xq_mode) ||
        g->ew.dim != F || g->ew.a != f->mv.sg.y[0] || g->ew.b != f->mv.sg.y[1] ||
        (fl ? g->ew.xq != NULL : !g->ew.xq || n < 1 || !reads_glu_q8(&rest[0], g)) ||
        (g->ew.i0 != 0 && g->ew.i0 != 1) || (size_t)F > (size_t)RL_CU_GLU_BLOCKS * 256 ||
        !rl__cu_matvec_glu_ok(f->mv.type, &f->mv.sg, f->mv.row_bytes, F, f->mv.K))
        return false;
    if (fl) {
        f->mv.glu_out = g->ew.x;
        f->mv.glu_act = g->ew.i0;
        return true;
    }
    if (!q->glu_xq) {
        if (cudaMalloc(&q->glu_xq, RL_CU_GLU_XQ_BYTES) != cudaSuccess) {
            q->glu_xq = NULL;
            cudaGetLastError();
            return false;
        }
    }
    if (!q->glu_cnt) {
        if (cudaMalloc((void **)&q->glu_cnt, RL_CU_GLU_BLOCKS * sizeof(int)) != cudaSuccess) {
            q->glu_cnt = NULL;
            cudaGetLastError();
            return false;
        }
        if (cudaMemsetAsync(q->glu_cnt, 0, RL_CU_GLU_BLOCKS * sizeof(int), q->stream) != cudaSuccess) {
            cudaFree(q->glu_cnt);
            q->glu_cnt = NULL;
            cudaGetLastError();
            return false;
        }
    }
    f->mv.glu_out = g->ew.x;
    f->mv.glu_xq = q->glu_xq;
    f->mv.glu_xq_mode = g->ew.xq_mode;
    f->mv.glu_act = g->ew.i0;
    for (size_t j = 0; j < n && reads_glu_q8(&rest[j], g); j++) rest[j].mm.xq = q->glu_xq;
    return true;
}

static void fuse(cu_step *q) {
    size_t o = 0;
    for (size_t i = 0; i < q->n_rec;) {
        cu_rec *r = &q->rec[i], f;
        size_t used = 0;
        if (i + 1 < q->n_rec) {
            fuse_attn_q8(q, r, r + 1);
            if (r->op == CU_OP_MATMUL) {
                used = fuse_mv(r, q->n_rec - i, q->f16_join, &f);
                if (used == 2 && i + 2 < q->n_rec && fuse_glu(q, &f, r + 2, r + 3, q->n_rec - i - 3))
                    used = 3;
                if (!used && q->mmq_join) used = fuse_mmq(r, q->n_rec - i, &f);
            } else if (fuse_rope_kv(r, r + 1, &f)) {
                used = 2;
                if (i + 2 < q->n_rec) { /* and the attention after it */
                    if (i + 3 < q->n_rec) fuse_attn_q8(q, r + 2, r + 3);
                    if (fuse_rope_attn(&f, r + 2)) {
                        f = r[2];
                        used = 3;
                    }
                }
            }
        }
        if (used) {
            q->rec[o++] = f;
            i += used;
        } else {
            if (o != i) q->rec[o] = *r;
            o++;
            i++;
        }
    }
    q->n_rec = o;
}

/* Whether bytes [a, a + ab) lie clear of [p, p + pb). */
static bool clear_of(const void *a, size_t ab, const void *p, size_t pb) {
    const uint8_t *x = a, *y = p;
    return x + ab <= y || y + pb <= x;
}

/* Whether the RMSNorm record nr can add the nz partial sums at part of the product m
 * before it (its residual input is m's output). */
static bool fold_norm_ok(const cu_rec *m, const cu_rec *nr, const float *part, size_t pb) {
    if (nr->op != CU_OP_RMSNORM || nr->ew.c != m->mm.y || nr->ew.part || nr->ew.n != m->mm.n ||
        nr->ew.dim != m->mm.rows || nr->ew.a == m->mm.y || nr->ew.x == m->mm.y ||
        !rl__cu_rmsnorm_part_ok(nr->ew.n, nr->ew.dim, nr->ew.a, nr->ew.x, nr->ew.c, nr->ew.b, part))
        return false;
    if (!nr->ew.xq) return true;
    /* the norm's quantized rows must lie clear of the partial sums */
    const size_t qb = rl__cu_xq_mmq(nr->ew.xq_mode)
                          ? rl__cu_mmq_xq_bytes(nr->ew.dim, nr->ew.n)
                          : (size_t)(2 * nr->ew.n * nr->ew.dim) +
                                (size_t)(nr->ew.n * nr->ew.dim / 256) * sizeof(float);
    return clear_of(nr->ew.xq, qb, part, pb);
}

/* Whether the rope_kv record f can add the partial sums of the product m (q) itself. */
static bool fold_rope_ok(const cu_rec *m, const cu_rec *f, const float *part, int nz) {
    if (f->op != CU_OP_ROPE_KV || f->rkv.a.q != m->mm.y || f->rkv.a.q_part) return false;
    rl__cu_rope_kv_args a = f->rkv.a;
    a.q_part = part;
    a.q_nz = nz;
    return a.n == m->mm.n && a.ld == m->mm.rows && a.k != m->mm.y && a.v != m->mm.y &&
           a.q != m->mm.x && rl__cu_rope_kv_ok(&a);
}

/* Whether the joined products j, between m and the record that reads m's output, leave m's
 * output and partial sums alone (they split no K: rl__cu_mmq_join). */
static bool fold_across_ok(const cu_rec *m, const cu_rec *j, const float *part, size_t pb) {
    if (j->op != CU_OP_MMQ_JOIN || j->mq.x == m->mm.y) return false;
    for (int i = 0; i < j->mq.nseg; i++)
        if (j->mq.sg[i].y == m->mm.y) return false;
    return j->mq.xq_ready || clear_of(j->mq.ws, rl__cu_mmq_xq_bytes(j->mq.K, j->mq.n), part, pb);
}

/* A product of many tokens on mmq.cu that splits K, and the kernel that reads its output
 * next: the residual add + RMSNorm right after it (every layer's o and down products at
 * batched decoding), or RoPE + cache write of q (the q product; k and v joined between, on
 * the streaming kernel). That kernel adds the partial sums itself, in mmq.cu's order (the
 * same bits; the norm also writes the product's output), so the product's partial-sum
 * pass, a launch that reads them all once and writes the output for the next to read
 * again, is left out. Not where a write between or the norm's own quantized output would
 * overwrite them. RUVLLM_CUDA_FOLD=0: not. */
static void fold_parts(cu_step *q) {
    for (size_t i = 0; i + 1 < q->n_rec; i++) {
        cu_rec *m = &q->rec[i];
        if (m->op != CU_OP_MATMUL || m->mm.blas || !m->mm.xq || m->mm.n < RL_CU_MMQ_MIN_N ||
            m->mm.x == m->mm.y || m->mm.keep_part)
            continue;
        float *part = NULL;
        const int nz = rl__cu_mmq_split(m->mm.type, m->mm.rows, m->mm.K, m->mm.n, m->mm.xq, &part);
        if (nz < 2 || !part) continue;
        const size_t pb = (size_t)nz * (size_t)(m->mm.n * m->mm.rows) * sizeof(float);
        cu_rec *nr = &q->rec[i + 1];
        if (fold_norm_ok(m, nr, part, pb)) {
            m->mm.keep_part = true;
            nr->ew.part = part;
            nr->ew.nz = nz;
            continue;
        }
        cu_rec *f = nr;
        if (i + 2 < q->n_rec && fold_across_ok(m, nr, part, pb)) f = &q->rec[i + 2];
        if (fold_rope_ok(m, f, part, nz)) {
            m->mm.keep_part = true;
            f->rkv.a.q_part = part;
            f->rkv.a.q_nz = nz;
        }
    }
}

/* FNV-1a over the records' 64-bit words (records are zero-padded, sizes multiples of 8). */
static uint64_t rec_hash(const cu_rec *r, size_t n, const void *arena) {
    _Static_assert(sizeof(cu_rec) % 8 == 0, "cu_rec is a whole number of words");
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)(uintptr_t)arena;
    const uint8_t *p = (const uint8_t *)r;
    for (size_t i = 0; i < n * sizeof *r; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
    }
    return h ^ n;
}

static cu_graph *graph_find(cu_step *q, uint64_t h) {
    for (int i = 0; i < CU_STEP_GRAPHS; i++) {
        cu_graph *g = &q->graph[i];
        if (g->exec && g->hash == h && g->n == q->n_rec && g->arena == q->ad &&
            !memcmp(g->rec, q->rec, q->n_rec * sizeof *q->rec))
            return g;
    }
    return NULL;
}

/* Capture the queued records into a graph, keep it (evicting the least recently used;
 * *made: its slot) and launch it. Any failure leaves nothing behind and returns the error;
 * the caller then runs the records eagerly, which reports a real launch error where it
 * happens. */
static cudaError_t capture(cu_step *q, uint64_t h, cu_graph **made) {
    cudaGraph_t gr = NULL;
    cudaGraphExec_t ex = NULL;
    const char *what;
    cudaError_t e = cudaStreamBeginCapture(q->stream, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) return e;
    cudaError_t el = run_all(q, &what);
    e = cudaStreamEndCapture(q->stream, &gr);
    if (el != cudaSuccess) e = el;
    if (e == cudaSuccess) e = cudaGraphInstantiate(&ex, gr, 0);
    if (gr) cudaGraphDestroy(gr);
    cu_rec *copy = NULL;
    if (e == cudaSuccess) {
        copy = rl__malloc(q->n_rec * sizeof *copy);
        if (!copy) e = cudaErrorMemoryAllocation;
    }
    if (e != cudaSuccess) {
        if (ex) cudaGraphExecDestroy(ex);
        return e;
    }
    memcpy(copy, q->rec, q->n_rec * sizeof *copy);
    cu_graph *g = &q->graph[0];
    for (int i = 0; i < CU_STEP_GRAPHS; i++) {
        if (!q->graph[i].exec) {
            g = &q->graph[i];
            break;
        }
        if (q->graph[i].last_use < g->last_use) g = &q->graph[i];
    }
    graph_drop(g);
    *g = (cu_graph){
        .hash = h, .last_use = ++q->tick, .rec = copy, .n = q->n_rec, .arena = q->ad, .exec = ex};
    *made = g;
    return cudaGraphLaunch(ex, q->stream);
}

static bool seen_before(cu_step *q, uint64_t h) {
    for (int i = 0; i < CU_STEP_SEEN; i++)
        if (q->seen[i] == h) return true;
    return false;
}

/* The list as queued (before the fuse pass) into q->queued; n_queued 0 when it could not
 * be kept (no memory: then no graph remembers it). */
static void keep_queued(cu_step *q) {
    q->n_queued = 0;
    if (!q->queued_on || !q->graphs_on) return;
    if (q->cap_queued < q->n_rec) {
        cu_rec *r = rl__realloc(q->queued, q->n_rec * sizeof *r);
        if (!r) return;
        q->queued = r;
        q->cap_queued = q->n_rec;
    }
    memcpy(q->queued, q->rec, q->n_rec * sizeof *q->rec);
    q->n_queued = q->n_rec;
}

/* g now also stands for the list kept by keep_queued (the buffers trade places). */
static void remember_queued(cu_step *q, cu_graph *g) {
    if (!q->n_queued) return;
    cu_rec *r = g->queued;
    const size_t cap = g->cap_queued;
    g->queued = q->queued;
    g->cap_queued = q->cap_queued;
    g->n_queued = q->n_queued;
    q->queued = r;
    q->cap_queued = cap;
    q->n_queued = 0;
}

/* The kept graph made or found for a list equal to the one queued now, compared as
 * queued (before the fuse pass): one comparison instead of the fuse pass, the hash over
 * every record and the comparison with the graph's records. NULL when there is none. */
static cu_graph *graph_of_queued(cu_step *q) {
    if (!q->queued_on || !q->graphs_on) return NULL;
    for (int i = 0; i < CU_STEP_GRAPHS; i++) {
        cu_graph *g = &q->graph[i];
        if (g->exec && g->arena == q->ad && g->n_queued == q->n_rec &&
            !memcmp(g->queued, q->rec, q->n_rec * sizeof *q->rec))
            return g;
    }
    return NULL;
}

cudaError_t rl__cu_step_flush(cu_step *q, const char **what) {
    cudaError_t e = cudaSuccess;
    *what = "queue";
    if (!q->n_rec) goto done;
    q->idle = false;
    if (q->a_used > q->a_dcap) {
        /* a larger device arena: graphs that read the old one go with it */
        *what = "arena";
        e = cudaStreamSynchronize(q->stream);
        if (e != cudaSuccess) goto done;
        for (int i = 0; i < CU_STEP_GRAPHS; i++)
            if (q->graph[i].arena == q->ad) graph_drop(&q->graph[i]);
        cudaFree(q->ad);
        q->ad = NULL;
        q->a_dcap = 0;
        e = cudaMalloc((void **)&q->ad, q->a_hcap);
        if (e != cudaSuccess) {
            q->ad = NULL;
            goto done;
        }
        q->a_dcap = q->a_hcap;
    }
    TR_MARK(q, "flush", true);
    if (q->a_used > q->a_base) {
        *what = "arena upload";
        const size_t b0 = q->a_base;
        /* a later part of a step: its bytes go up beside the parts before, off the stream */
        const bool side = b0 > 0 && q->up_cs;
        cudaStream_t us = side ? q->up_cs : q->stream;
        e = cudaMemcpyAsync(q->ad + b0, q->ah + b0, q->a_used - b0, cudaMemcpyHostToDevice, us);
        if (e == cudaSuccess) e = cudaEventRecord(q->a_ev, us);
        if (e == cudaSuccess && side) e = cudaStreamWaitEvent(q->stream, q->a_ev, 0);
        q->a_busy = true;
        q->a_sent = q->a_used;
        if (e != cudaSuccess) goto done;
    }
    TR_MARK(q, "uploaded", true);
    cu_graph *g = graph_of_queued(q);
    uint64_t h = g ? g->hash : 0;
    if (!g) {
        keep_queued(q);
        if (q->fuse_on) fuse(q);
        if (q->fuse_on && q->fold_on) fold_parts(q);
        mark_early(q);
        h = rec_hash(q->rec, q->n_rec, q->ad);
        g = q->graphs_on ? graph_find(q, h) : NULL;
        if (g) remember_queued(q, g);
    }
    if (g) {
        *what = "graph launch";
        g->last_use = ++q->tick;
        e = cudaGraphLaunch(g->exec, q->stream);
        TR_MARK(q, "graph end", true);
        q->n_replayed++;
        goto done;
    }
    if (q->graphs_on && seen_before(q, h)) {
        cu_graph *made = NULL;
        if (capture(q, h, &made) == cudaSuccess) {
            q->n_captured++;
            remember_queued(q, made);
            goto done;
        }
        cudaGetLastError(); /* a failed capture is not sticky: run the list eagerly */
    }
    q->seen[q->seen_next] = h;
    q->seen_next = (q->seen_next + 1) % CU_STEP_SEEN;
    e = run_all(q, what);
    q->n_eager++;
done:
    q->n_rec = 0;
    q->n_dead = 0;
    q->dead_seen = 0;
    if (q->step_arena && e == cudaSuccess)
        q->a_base = q->a_used; /* kept until rl__cu_step_idle */
    else
        q->a_used = q->a_base = 0;
    for (int i = 0; i < CU_STEP_MEMO; i++) q->memo[i].valid = false;
    return e;
}

void rl__cu_step_mark(cu_step *q, const char *name) {
    (void)q, (void)name;
    TR_MARK(q, name, false);
}

void rl__cu_step_idle(cu_step *q) {
    if (q->n_rec) return; /* records queued still read the arena */
    TR_END(q);
    q->a_used = q->a_base = q->a_sent = 0;
    q->a_busy = false;
    q->idle = true;
}

/* ---- the output head joined to its copy (rl__cu_step_flush_head) ----
 * (Where the streaming kernel takes the head and the logits row is mapped, the backend's
 * to_host has the head store the row itself instead: backend_cuda.c, head_to_host.)
 * A decode step ends with the output head (128k rows for Llama 3) and the copy of its row
 * of logits to the host (0.5 MB), which waited for the whole product: on an H100 15-20 us
 * of a 1B model's ~660 us step in which the device had nothing to do. H100, 2026-11-27, one
 * call alternated (bench_cuda --pp 512 --tg 128, parts 0 / 3 / 2 / 4, twice): 1B Q4_K_M tg0
 * 1,518.5, 1,520.4 / 1,520.4, 1,531.9 / 1,520.8, 1,528.6 / 1,526.6, 1,530.4; tg (greedy pick on
 * the host) 1,128.5, 1,134.3 / 1,158.4, 1,154.9 / 1,103.5, 1,108.7 / 1,156.9, 1,127.2; 8B Q8_0
 * tg0 299.1, 299.1 / 298.8, 299.7 (0 / 3): the copy was less of the gap than its size said. */

cu_rec *rl__cu_step_head(cu_step *q, const void *src, size_t bytes) {
    cu_rec *h = q->n_rec ? &q->rec[q->n_rec - 1] : NULL;
    return h && h->op == CU_OP_MATMUL && !h->mm.blas && !h->mm.keep_part && h->mm.n == 1 &&
                   h->mm.y == src && (size_t)h->mm.rows * sizeof(float) == bytes
               ? h
               : NULL;
}

/* Rows of the output head at least (a smaller last product is copied after it). */
#define HEAD_MIN_ROWS 16384

static cudaError_t head_setup(cu_step *q) {
    if (q->head_ready) return cudaSuccess;
    cudaError_t e = q->head_cs ? cudaSuccess
                               : cudaStreamCreateWithFlags(&q->head_cs, cudaStreamNonBlocking);
    for (int i = 0; i < CU_HEAD_PARTS_MAX && e == cudaSuccess; i++)
        if (!q->head_ev[i]) e = cudaEventCreateWithFlags(&q->head_ev[i], cudaEventDisableTiming);
    q->head_ready = e == cudaSuccess;
    return e;
}

/* Rows of part k of np over rows: the last an eighth (whole 64-row groups), the others
 * the rest in equal whole groups, the one before the last taking what is left. */
static int64_t head_part_rows(int64_t rows, int np, int k, int64_t done) {
    const int64_t last = RL_MAX((rows / 8) & ~(int64_t)63, 64);
    if (k == np - 1) return rows - done;
    if (k == np - 2) return rows - last - done;
    return ((rows - last) / (np - 1)) & ~(int64_t)63;
}

bool rl__cu_step_flush_head(cu_step *q, void *dst, const void *src, size_t bytes, cudaError_t *err,
                            const char **what) {
    *err = cudaSuccess;
    const cu_rec *h = rl__cu_step_head(q, src, bytes);
    if (q->head_parts < 2 || !h || h->mm.rows < HEAD_MIN_ROWS) return false;
    if (head_setup(q) != cudaSuccess) {
        cudaGetLastError(); /* not sticky: the caller copies as before */
        return false;
    }
    const cu_rec head = *h;
    q->n_rec--;
    cudaError_t e = rl__cu_step_flush(q, what);
    const int np = q->head_parts;
    q->idle = false;
    TR_MARK(q, "head", true);
    int64_t r0 = 0;
    for (int k = 0; k < np && e == cudaSuccess; k++) {
        const int64_t nr = head_part_rows(head.mm.rows, np, k, r0);
        cu_rec r = head;
        r.mm.w = (const uint8_t *)head.mm.w + (size_t)r0 * head.mm.row_bytes;
        r.mm.rows = nr;
        r.mm.y = head.mm.y + r0;
        if (k > 0 && r.mm.xq) r.mm.xq_ready = true; /* the first part quantized x */
        if (k == 0) rl__cu_pdl_plain_next();       /* after a graph, not a kernel */
        *what = "output head";
        e = run_rec(q, &r);
        if (e == cudaSuccess) e = cudaEventRecord(q->head_ev[k], q->stream);
        if (e == cudaSuccess) e = cudaStreamWaitEvent(q->head_cs, q->head_ev[k], 0);
        *what = "copy to host";
        if (e == cudaSuccess)
            e = cudaMemcpyAsync((float *)dst + r0, r.mm.y, (size_t)nr * sizeof(float),
                                cudaMemcpyDeviceToHost, q->head_cs);
        r0 += nr;
    }
    TR_MARK(q, "head end", true);
    *what = "synchronize";
    if (e == cudaSuccess) e = cudaStreamSynchronize(q->head_cs);
    if (e == cudaSuccess) rl__cu_step_idle(q); /* the stream's last work was the head's */
    *err = e;
    return true;
}
