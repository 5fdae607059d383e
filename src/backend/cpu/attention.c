/*
 * attention.c - the KV cache write and attention over cached cells on the CPU.
 *
 * Attention is computed the flash-attention way (Dao et al. 2022; the single-query form
 * of Milakov & Gimelshein 2018, "Online normalizer calculation for softmax"): the cells
 * a token sees are visited in tiles; per query head a running maximum m, a running sum
 * l of exp(s - m) and an accumulator of exp(s - m) * v are kept, and rescaled by
 * exp(m_old - m_new) when the maximum grows. Memory is O(head_dim) per head whatever
 * the context length, and no score matrix is materialized.
 *
 * Work items are (token, KV head) pairs taken from a shared counter. The query heads
 * that share a KV head (GQA / MQA) are processed together, so each K and V row is read
 * and converted once for the whole group.
 */
#include "backend_cpu.h"

#include <math.h>
#include <stdatomic.h>

#define ATTN_TILE 64 /* cells per tile */
#define ATTN_HC 8    /* query heads per pass over the cells */

/* The inner loops: plain C, or attn_avx2.c's (bit-identical). */
typedef void (*f16_row_fn)(const rl_fp16 *x, float *y, int64_t n);
typedef void (*axpy_fn)(float *y, float a, const float *x, int64_t n);
void rl__attn_f16_row_avx2(const rl_fp16 *x, float *y, int64_t n);
void rl__attn_axpy_avx2(float *y, float a, const float *x, int64_t n);

static void f16_row_ref(const rl_fp16 *x, float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = rl__fp16_to_fp32(x[i]);
}

static void axpy_ref(float *y, float a, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

typedef struct attn_job {
    const rl_kv_layer *kv;
    const rl_attn_args *a;
    rl__vec_dot_fn dot;
    f16_row_fn f16_row;
    axpy_fn axpy;
    bool f16_avx512; /* the whole item in attn_avx512.c */
    int32_t n_gqa;
    int64_t n_items;
    _Atomic int64_t next;
} attn_job;

/* n values of a cache row starting at element off, as float (a pointer into the row for
 * F32, else converted into buf). off and n are multiples of 32 for Q8_0. */
static const float *load_row(const attn_job *j, const uint8_t *row, int64_t off, int64_t n,
                             float *buf) {
    switch (j->kv->type) {
    case RL_TYPE_F32:
        return (const float *)row + off;
    case RL_TYPE_F16:
        j->f16_row((const rl_fp16 *)row + off, buf, n);
        return buf;
    default: /* Q8_0 */
        rl__dequant_q8_0((const block_q8_0 *)row + off / 32, buf, n);
        return buf;
    }
}


static void attend(const attn_job *j, int64_t t, int32_t g) {
    const rl_kv_layer *kv = j->kv;
    const rl_attn_args *a = j->a;
    const int32_t hdk = a->head_dim_k, hdv = a->head_dim_v;
    const int32_t b = a->span[2 * t], e = a->span[2 * t + 1];
    const uint8_t *kbase = kv->k, *vbase = kv->v;

    float s[ATTN_HC][ATTN_TILE];
    float acc[ATTN_HC][RL_MAX_HEAD_DIM];
    float kbuf[RL_MAX_HEAD_DIM], vbuf[RL_MAX_HEAD_DIM];
    float m[ATTN_HC], l[ATTN_HC];
    const float *qh[ATTN_HC];

    for (int32_t h0 = 0; h0 < j->n_gqa; h0 += ATTN_HC) {
        const int nh = (int)RL_MIN(ATTN_HC, j->n_gqa - h0);
        if (j->f16_avx512) {
            float *o[ATTN_HC];
            for (int h = 0; h < nh; h++) {
                qh[h] = a->q + t * a->q_ld + (int64_t)(g * j->n_gqa + h0 + h) * hdk;
                o[h] = a->out + t * a->out_ld + (int64_t)(g * j->n_gqa + h0 + h) * hdv;
            }
            rl__attn_f16_avx512(nh, hdk, hdv, qh, kbase + (size_t)g * hdk * 2, kv->k_row_bytes,
                                vbase + (size_t)g * hdv * 2, kv->v_row_bytes, a->cells + b,
                                e - b, a->scale, a->softcap, o);
            continue;
        }
        for (int h = 0; h < nh; h++) {
            qh[h] = a->q + t * a->q_ld + (int64_t)(g * j->n_gqa + h0 + h) * hdk;
            m[h] = -INFINITY;
            l[h] = 0.0f;
            memset(acc[h], 0, (size_t)hdv * sizeof(float));
        }
        for (int32_t c0 = b; c0 < e; c0 += ATTN_TILE) {
            const int nt = (int)RL_MIN(ATTN_TILE, e - c0);
            for (int i = 0; i < nt; i++) {
                const uint8_t *row = kbase + (size_t)a->cells[c0 + i] * kv->k_row_bytes;
                const float *k = load_row(j, row, (int64_t)g * hdk, hdk, kbuf);
                for (int h = 0; h < nh; h++) s[h][i] = j->dot(hdk, qh[h], k);
            }
            for (int h = 0; h < nh; h++) {
                float mt = -INFINITY;
                for (int i = 0; i < nt; i++) {
                    float x = s[h][i] * a->scale;
                    if (a->softcap > 0.0f) x = tanhf(x / a->softcap) * a->softcap;
                    s[h][i] = x;
                    mt = RL_MAX(mt, x);
                }
                float mn = RL_MAX(m[h], mt);
                float corr = m[h] == -INFINITY ? 0.0f : expf(m[h] - mn);
                float sum = 0.0f;
                for (int i = 0; i < nt; i++) {
                    float p = expf(s[h][i] - mn);
                    s[h][i] = p;
                    sum += p;
                }
                l[h] = l[h] * corr + sum;
                if (corr != 1.0f)
                    for (int32_t d = 0; d < hdv; d++) acc[h][d] *= corr;
                m[h] = mn;
            }
            for (int i = 0; i < nt; i++) {
                const uint8_t *row = vbase + (size_t)a->cells[c0 + i] * kv->v_row_bytes;
                const float *v = load_row(j, row, (int64_t)g * hdv, hdv, vbuf);
                for (int h = 0; h < nh; h++) j->axpy(acc[h], s[h][i], v, hdv);
            }
        }
        for (int h = 0; h < nh; h++) {
            float *o = a->out + t * a->out_ld + (int64_t)(g * j->n_gqa + h0 + h) * hdv;
            const float inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
            for (int32_t d = 0; d < hdv; d++) o[d] = acc[h][d] * inv;
        }
    }
}

static void attn_task(void *p, int ith, int nth) {
    attn_job *j = p;
    (void)ith;
    (void)nth;
    for (;;) {
        int64_t it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (it >= j->n_items) break;
        attend(j, it / j->a->n_head_kv, (int32_t)(it % j->a->n_head_kv));
    }
}

void rl__cpu_attention(rl_backend *be, const rl_kv_layer *kv, const rl_attn_args *a) {
    rl__cpu_backend *c = be->impl;
    attn_job j = {
        .kv = kv,
        .a = a,
        .dot = rl__vec_dot_get(RL_TYPE_F32, rl_cpu_isa_active()),
        .f16_row = rl_cpu_isa_active() >= RL_CPU_ISA_AVX2 ? rl__attn_f16_row_avx2 : f16_row_ref,
        .axpy = rl_cpu_isa_active() >= RL_CPU_ISA_AVX2 ? rl__attn_axpy_avx2 : axpy_ref,
        .n_gqa = a->n_head / a->n_head_kv,
        .n_items = (int64_t)a->n_tok * a->n_head_kv,
    };
    /* RUVLLM_ATTN_AVX2=1 keeps the AVX2 inner loops on AVX-512 machines (A/B runs) */
    const char *ev = rl__getenv("RUVLLM_ATTN_AVX2");
    j.f16_avx512 = kv->type == RL_TYPE_F16 && rl_cpu_isa_active() >= RL_CPU_ISA_AVX512 &&
                   a->head_dim_k % 16 == 0 && a->head_dim_v % 16 == 0 &&
                   a->head_dim_k <= RL_ATTN_AVX512_MAX_DIM &&
                   a->head_dim_v <= RL_ATTN_AVX512_MAX_DIM && !(ev && ev[0] == '1');
    atomic_init(&j.next, 0);
    if (j.n_items == 1 || rl_threadpool_n_threads(c->pool) == 1) attn_task(&j, 0, 1);
    else rl__threadpool_run(c->pool, attn_task, &j);
}

void rl__cpu_kv_write(rl_backend *be, const rl_kv_layer *kv, const float *k, int64_t ld_k,
                      const float *v, int64_t ld_v, int64_t n, const int32_t *cells) {
    (void)be;
    /* F16 and Q8_0 rows through the activation converters: byte-identical to the
     * reference conversions on every path */
    rl__act_quant_fn conv = NULL;
    if (kv->type != RL_TYPE_F32) conv = rl__act_quant_get(kv->type, rl_cpu_isa_active());
    for (int64_t t = 0; t < n; t++) {
        for (int part = 0; part < 2; part++) {
            const float *src = part ? v + t * ld_v : k + t * ld_k;
            int64_t ne = part ? kv->n_embd_v : kv->n_embd_k;
            size_t rb = part ? kv->v_row_bytes : kv->k_row_bytes;
            uint8_t *dst = (uint8_t *)(part ? kv->v : kv->k) + (size_t)cells[t] * rb;
            if (conv) conv(src, dst, ne);
            else memcpy(dst, src, (size_t)ne * sizeof(float));
        }
    }
}
