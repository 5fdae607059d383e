/*
 * attention.cu - attention of query tokens over cached K/V cells (backend.h's attention
 * op), the flash-attention way (Dao et al. 2022) in its single-query form (Milakov &
 * Gimelshein 2018): the cells of a token's span are visited in tiles of 32 with a running
 * maximum m, a running sum l of exp(s - m) and an accumulator of exp(s - m) v per query
 * head, rescaled by exp(m_old - m_new) when the maximum grows; no score matrix is
 * materialized. The arithmetic per tile is the CPU's (attention.c).
 *
 * One block of 128 threads serves one (token, KV head, group of up to 8 query heads that
 * share it, split): every K and V row is read once per GQA group. Long spans are cut into
 * n_split pieces handled by separate blocks (flash-decoding, Dao et al. 2023), whose
 * (m, l, acc) partials a second kernel combines; that keeps a single decoded token's
 * attention spread over the whole GPU.
 *
 * Decode (TILED: at most 8 query tokens): each tile's K and V rows are first copied into
 * shared memory (as float) by the whole block with 16-byte loads, all in flight together:
 * one memory latency per tile instead of one per cell on the V side. Prefill reads them
 * in place (more blocks fit an SM without the tiles).
 *
 * Shared memory: the group's queries [HC][head_dim_k], accumulators [HC][head_dim_v],
 * (TILED) the tile's K rows [32][head_dim_k] and V rows [32][head_dim_v], its scores [HC][32],
 * m, l and the rescale factor per head, the tile's cell ids.
 *
 * Dispatch (rl__cu_attention): prefill of F16 caches (many tokens sharing their cells, the
 * host's `dense`) goes to the tensor-core kernel (fattn.cu), and so do more than 8 tokens
 * that do not share cells (batched decode, each token its own sequence: its blocks' unions
 * cut into pieces, then the combine below); without it those take the TILED variant.
 * RUVLLM_CUDA_FATTN=0 turns the tensor-core kernel off, =2 takes it for every call it
 * supports (tests); RUVLLM_CUDA_FATTN_MIN (tokens, default FATTN_MIN_TOK) is its threshold
 * for dense calls, RUVLLM_CUDA_FATTN_SPARSE=0 keeps the others off it;
 * RUVLLM_CUDA_ATTN_TILED_MAX bounds the tokens of the TILED variant for calls that are not
 * dense (default: no bound).
 */
#include "cuda_impl.h"
#include "launch.cuh"
#include "qtypes.cuh"
#include "step.h"

#include <cuda_fp16.h>
#include <math.h>
#include <stdlib.h>

namespace {

constexpr int HC = RL_CU_ATTN_HC;
constexpr int TILE = 32;
constexpr int THREADS = 128;
constexpr int WARPS = THREADS / 32;

template <int KVT> __device__ __forceinline__ float kv_load(const uint8_t *row, int64_t e) {
    if constexpr (KVT == RL_TYPE_F32) {
        return reinterpret_cast<const float *>(row)[e];
    } else if constexpr (KVT == RL_TYPE_F16) {
        return __half2float(reinterpret_cast<const __half *>(row)[e]);
    } else { /* Q8_0 */
        const uint8_t *b = row + (e >> 5) * RL_CU_Q8_0_BYTES;
        const float d =
            __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short *>(b)));
        return (float)reinterpret_cast<const int8_t *>(b + RL_CU_Q8_0_QS)[e & 31] * d;
    }
}

/* 8 values from 16 bytes of a row of type KVT (F32: the first 4 only are used). */
template <int KVT> __device__ __forceinline__ void cvt16(uint4 u, float *o) {
    if constexpr (KVT == RL_TYPE_F16) {
        const __half2 *h = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float2 f = __half22float2(h[i]);
            o[2 * i] = f.x;
            o[2 * i + 1] = f.y;
        }
    } else {
        o[0] = __uint_as_float(u.x);
        o[1] = __uint_as_float(u.y);
        o[2] = __uint_as_float(u.z);
        o[3] = __uint_as_float(u.w);
    }
}

/* dst[i][0..hd) = values col0.. of table row cell_s[i] as float, i < nt: 16-byte loads
 * for F16 and F32 rows that allow them, else one value per load. */
template <int KVT>
__device__ __forceinline__ void tile_load(float *dst, const uint8_t *tab, size_t row_bytes,
                                          const int *cell_s, int nt, int64_t col0, int hd) {
    constexpr int es = KVT == RL_TYPE_F32 ? 4 : 2, per = 16 / es; /* values per 16 bytes */
    if constexpr (KVT == RL_TYPE_F16 || KVT == RL_TYPE_F32) {
        if (hd % per == 0 && row_bytes % 16 == 0 && (col0 * es) % 16 == 0 &&
            (uintptr_t)tab % 16 == 0) {
            const int cpr = hd / per;
#pragma unroll 2
            for (int c = threadIdx.x; c < nt * cpr; c += THREADS) {
                const int i = c / cpr, j = c % cpr;
                const uint4 u = *reinterpret_cast<const uint4 *>(
                    tab + (size_t)cell_s[i] * row_bytes + (size_t)(col0 + (int64_t)per * j) * es);
                float v[8];
                cvt16<KVT>(u, v);
                float *o = dst + i * hd + per * j;
#pragma unroll
                for (int k = 0; k < per; k++) o[k] = v[k];
            }
            return;
        }
    }
#pragma unroll 4
    for (int c = threadIdx.x; c < nt * hd; c += THREADS) {
        const int i = c / hd, d = c % hd;
        dst[c] = kv_load<KVT>(tab + (size_t)cell_s[i] * row_bytes, col0 + d);
    }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

template <int KVT, bool TILED>
__global__ void __launch_bounds__(THREADS) attn_kernel(rl__cu_attn a, int n_hgroups) {
    rlcu::pdl_enter();
    extern __shared__ float sm[];
    const int hdk = a.head_dim_k, hdv = a.head_dim_v;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    int64_t bx = blockIdx.x;
    const int hg = (int)(bx % n_hgroups);
    bx /= n_hgroups;
    const int g = (int)(bx % a.n_head_kv);
    const int64_t t = bx / a.n_head_kv;
    const int split = blockIdx.y;
    const int n_gqa = a.n_head / a.n_head_kv;
    const int h0 = hg * HC;
    const int nh = min(HC, n_gqa - h0);

    float *qs = sm;                                   /* [HC][hdk] */
    float *acc = qs + HC * hdk;                       /* [HC][hdv] */
    float *ks = acc + HC * hdv;                       /* TILED: [TILE][hdk] */
    float *vs = ks + (TILED ? TILE * hdk : 0);        /* TILED: [TILE][hdv] */
    float *sc = vs + (TILED ? TILE * hdv : 0);        /* [HC][TILE] */
    float *mrow = sc + HC * TILE;                     /* [HC] */
    float *lrow = mrow + HC;                          /* [HC] */
    float *crow = lrow + HC;                          /* [HC] */
    int *cell_s = reinterpret_cast<int *>(crow + HC); /* [TILE] */

    const int head0 = g * n_gqa + h0; /* first query head of this block */
    for (int i = tid; i < nh * hdk; i += THREADS) {
        const int h = i / hdk, d = i % hdk;
        qs[h * hdk + d] = a.q[t * a.q_ld + (int64_t)(head0 + h) * hdk + d];
    }
    for (int i = tid; i < nh * hdv; i += THREADS) acc[i] = 0.0f;
    if (tid < HC) {
        mrow[tid] = -INFINITY;
        lrow[tid] = 0.0f;
    }
    __syncthreads();

    const int32_t b = a.span[2 * t], e = a.span[2 * t + 1];
    const int64_t cb = (int64_t)b + (int64_t)split * a.split_len;
    const int64_t ce = min((int64_t)e, cb + a.split_len);
    const uint8_t *kt = static_cast<const uint8_t *>(a.k);
    const uint8_t *vt = static_cast<const uint8_t *>(a.v);

    for (int64_t c0 = cb; c0 < ce; c0 += TILE) {
        const int nt = (int)min((int64_t)TILE, ce - c0);
        if (tid < nt) cell_s[tid] = a.cells[c0 + tid];
        __syncthreads();
        if constexpr (TILED) {
            tile_load<KVT>(ks, kt, a.k_row_bytes, cell_s, nt, (int64_t)g * hdk, hdk);
            tile_load<KVT>(vs, vt, a.v_row_bytes, cell_s, nt, (int64_t)g * hdv, hdv);
            __syncthreads();
        }

        /* scores: a warp per cell, lanes across the head */
        for (int i = warp; i < nt; i += WARPS) {
            const float *krow = ks + i * hdk;
            const uint8_t *kraw = kt + (size_t)cell_s[i] * a.k_row_bytes;
            float p[HC];
#pragma unroll
            for (int h = 0; h < HC; h++) p[h] = 0.0f;
            for (int d = lane; d < hdk; d += 32) {
                const float kv = TILED ? krow[d] : kv_load<KVT>(kraw, (int64_t)g * hdk + d);
#pragma unroll
                for (int h = 0; h < HC; h++)
                    if (h < nh) p[h] += qs[h * hdk + d] * kv;
            }
#pragma unroll
            for (int h = 0; h < HC; h++) p[h] = warp_sum(p[h]);
            if (lane == 0) {
#pragma unroll
                for (int h = 0; h < HC; h++) {
                    if (h >= nh) break;
                    float x = p[h] * a.scale;
                    if (a.softcap > 0.0f) x = tanhf(x / a.softcap) * a.softcap;
                    sc[h * TILE + i] = x;
                }
            }
        }
        __syncthreads();

        /* online softmax: a warp per head, a lane per cell of the tile */
        for (int h = warp; h < nh; h += WARPS) {
            const float x = lane < nt ? sc[h * TILE + lane] : -INFINITY;
            const float mt = warp_max(x);
            const float mold = mrow[h];
            const float mn = fmaxf(mold, mt);
            const float corr = mold == -INFINITY ? 0.0f : expf(mold - mn);
            const float pv = lane < nt ? expf(x - mn) : 0.0f;
            const float sum = warp_sum(pv);
            __syncwarp(); /* every lane's reads of sc, mrow and lrow come before the writes */
            sc[h * TILE + lane] = pv;
            if (lane == 0) {
                lrow[h] = lrow[h] * corr + sum;
                mrow[h] = mn;
                crow[h] = corr;
            }
        }
        __syncthreads();

        /* acc = acc * corr + sum_i p_i v_i: a thread per value dimension */
        for (int d = tid; d < hdv; d += THREADS) {
            float ac[HC];
#pragma unroll
            for (int h = 0; h < HC; h++) ac[h] = h < nh ? acc[h * hdv + d] * crow[h] : 0.0f;
            for (int i = 0; i < nt; i++) {
                const float vv = TILED ? vs[i * hdv + d]
                                       : kv_load<KVT>(vt + (size_t)cell_s[i] * a.v_row_bytes,
                                                      (int64_t)g * hdv + d);
#pragma unroll
                for (int h = 0; h < HC; h++) ac[h] += sc[h * TILE + i] * vv;
            }
#pragma unroll
            for (int h = 0; h < HC; h++)
                if (h < nh) acc[h * hdv + d] = ac[h];
        }
        __syncthreads();
    }

    if (a.n_split == 1) {
        for (int i = tid; i < nh * hdv; i += THREADS) {
            const int h = i / hdv, d = i % hdv;
            const float l = lrow[h];
            const float inv = l > 0.0f ? 1.0f / l : 0.0f;
            a.out[t * a.out_ld + (int64_t)(head0 + h) * hdv + d] = acc[i] * inv;
        }
    } else {
        for (int h = 0; h < nh; h++) {
            float *w =
                a.ws + (((size_t)t * a.n_head + head0 + h) * a.n_split + split) * (size_t)(hdv + 2);
            if (tid == 0) {
                w[0] = mrow[h];
                w[1] = lrow[h];
            }
            for (int d = tid; d < hdv; d += THREADS) w[2 + d] = acc[h * hdv + d];
        }
    }
}

/* Combine the n_split partials of each (token, head): weights exp(m_s - M) with M the
 * largest m of the non-empty pieces. The weights are made once per piece (in parallel,
 * into shared memory), so the sum over pieces for each value dimension is a chain of
 * independent loads rather than a load, an exp and a compare per piece and dimension. */
__global__ void __launch_bounds__(THREADS) attn_combine_kernel(rl__cu_attn a) {
    rlcu::pdl_enter();
    __shared__ float wgt[RL_CU_ATTN_MAX_SPLIT];
    __shared__ float red[WARPS];
    const int64_t t = blockIdx.x / a.n_head;
    const int head = (int)(blockIdx.x % a.n_head);
    const int hdv = a.head_dim_v, ns = a.n_split, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const float *w = a.ws + ((size_t)t * a.n_head + head) * ns * (size_t)(hdv + 2);
    float m = -INFINITY;
    for (int s = threadIdx.x; s < ns; s += THREADS)
        if (w[s * (hdv + 2) + 1] > 0.0f) m = fmaxf(m, w[s * (hdv + 2)]);
    m = warp_max(m);
    if (lane == 0) red[warp] = m;
    __syncthreads();
    float M = red[0];
#pragma unroll
    for (int k = 1; k < WARPS; k++) M = fmaxf(M, red[k]);
    __syncthreads(); /* red is reused below */
    float l = 0.0f;
    for (int s = threadIdx.x; s < ns; s += THREADS) {
        const float ls = w[s * (hdv + 2) + 1];
        const float e = ls > 0.0f ? expf(w[s * (hdv + 2)] - M) : 0.0f;
        wgt[s] = e;
        l += ls * e;
    }
    l = warp_sum(l);
    if (lane == 0) red[warp] = l;
    __syncthreads();
    float L = 0.0f;
#pragma unroll
    for (int k = 0; k < WARPS; k++) L += red[k];
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;
    for (int d = threadIdx.x; d < hdv; d += THREADS) {
        float o = 0.0f;
#pragma unroll 4
        for (int s = 0; s < ns; s++)
            if (wgt[s] > 0.0f) o += w[s * (hdv + 2) + 2 + d] * wgt[s];
        a.out[t * a.out_ld + (int64_t)head * hdv + d] = o * inv;
    }
}

/* attn_combine_kernel for 256 / head_dim_v heads at once (a block per token and 256
 * output values, head_dim_v threads per head: for 128 the same order of sums as
 * attn_combine_kernel), then the 256 outputs quantized as one q8 block (qtypes.cuh's
 * q8k_warp, the layout of matmul.cu's quantizer) for the product that reads them next. */
constexpr int CQ_THREADS = 256;
__global__ void __launch_bounds__(CQ_THREADS) attn_combine_q8_kernel(rl__cu_attn a, int8_t *xq) {
    rlcu::pdl_enter();
    constexpr int MAXHP = CQ_THREADS / 64;
    __shared__ float wgt[MAXHP][RL_CU_ATTN_MAX_SPLIT];
    __shared__ float red[CQ_THREADS / 32];
    __shared__ float vals[CQ_THREADS];
    const int hdv = a.head_dim_v, ns = a.n_split, wph = hdv / 32;
    const int64_t K = (int64_t)a.n_head * hdv, nb = K / CQ_THREADS;
    const int64_t t = blockIdx.x / nb;
    const int gb = (int)(blockIdx.x % nb);
    const int hh = threadIdx.x / hdv, d = threadIdx.x % hdv, warp = threadIdx.x >> 5,
              lane = threadIdx.x & 31;
    const int head = gb * (CQ_THREADS / hdv) + hh;
    const float *w = a.ws + ((size_t)t * a.n_head + head) * ns * (size_t)(hdv + 2);
    float m = -INFINITY;
    for (int s = d; s < ns; s += hdv)
        if (w[s * (hdv + 2) + 1] > 0.0f) m = fmaxf(m, w[s * (hdv + 2)]);
    m = warp_max(m);
    if (lane == 0) red[warp] = m;
    __syncthreads();
    float M = red[hh * wph];
    for (int k = 1; k < wph; k++) M = fmaxf(M, red[hh * wph + k]);
    __syncthreads(); /* red is reused below */
    float l = 0.0f;
    for (int s = d; s < ns; s += hdv) {
        const float ls = w[s * (hdv + 2) + 1];
        const float e = ls > 0.0f ? expf(w[s * (hdv + 2)] - M) : 0.0f;
        wgt[hh][s] = e;
        l += ls * e;
    }
    l = warp_sum(l);
    if (lane == 0) red[warp] = l;
    __syncthreads();
    float L = 0.0f;
    for (int k = 0; k < wph; k++) L += red[hh * wph + k];
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;
    float o = 0.0f;
#pragma unroll 4
    for (int s = 0; s < ns; s++)
        if (wgt[hh][s] > 0.0f) o += w[s * (hdv + 2) + 2 + d] * wgt[hh][s];
    const float v = o * inv;
    a.out[t * a.out_ld + (int64_t)head * hdv + d] = v;
    vals[threadIdx.x] = v;
    __syncthreads();
    if (warp != 0) return;
    float v8[8];
#pragma unroll
    for (int j = 0; j < 8; j++) v8[j] = vals[8 * lane + j];
    const int64_t n = a.n_tok, e = t * K + (int64_t)gb * CQ_THREADS + 8 * lane;
    rlcu::q8k_warp(v8, reinterpret_cast<uint2 *>(xq + e), reinterpret_cast<uint2 *>(xq + n * K + e),
             reinterpret_cast<float *>(xq + 2 * n * K) + t * nb + gb);
}

/* Dynamic shared memory of the attention kernel (tiled or not). */
size_t attn_smem(int head_dim_k, int head_dim_v, bool tiled) {
    const size_t rows = HC + (tiled ? TILE : 0);
    return sizeof(float) * (rows * head_dim_k + rows * head_dim_v + HC * TILE + 3 * HC) +
           sizeof(int) * TILE;
}

/* Query tokens up to which the tiled kernel runs (decode of a few sequences) whatever the
 * spans; calls whose tokens do not share cells take it up to g_tiled_sparse tokens. */
constexpr int TILED_MAX_TOK = 8;
/* Tokens from which a dense call of a supported cache goes to the tensor-core kernel
 * (H100, 8B shape, 16 tokens after 512 cells: 63 us there, 111 us on the CUDA cores). */
constexpr int FATTN_MIN_TOK = 16;

int g_fattn = 1; /* 0 off, 1 dense calls of FATTN_MIN_TOK+ tokens, 2 every supported call */
int g_fattn_min = FATTN_MIN_TOK;
int g_fattn_sparse = 1; /* calls of more than TILED_MAX_TOK tokens that are not dense too */
int g_tiled_sparse = 0x7fffffff;

bool use_fattn(const rl__cu_attn *a) {
    if (g_fattn == 0 || !rl__cu_fattn_ok(a)) return false;
    if (g_fattn == 2) return true;
    return a->dense ? a->n_tok >= g_fattn_min : g_fattn_sparse && a->n_tok > TILED_MAX_TOK;
}

template <int KVT>
void attn_launch(dim3 grid, cudaStream_t s, const rl__cu_attn *a, int n_hgroups) {
    const bool tiled = a->n_tok <= TILED_MAX_TOK || (!a->dense && a->n_tok <= g_tiled_sparse);
    const size_t smem = attn_smem(a->head_dim_k, a->head_dim_v, tiled);
    if (tiled)
        (void)rlcu::launch(attn_kernel<KVT, true>, grid, THREADS, smem, s, *a, n_hgroups);
    else
        (void)rlcu::launch(attn_kernel<KVT, false>, grid, THREADS, smem, s, *a, n_hgroups);
}

} // namespace

extern "C" size_t rl__cu_attn_smem(int head_dim_k, int head_dim_v) {
    return attn_smem(head_dim_k, head_dim_v, true);
}

extern "C" cudaError_t rl__cu_init_attention(size_t smem_max) {
    const char *fa = getenv("RUVLLM_CUDA_FATTN"), *fm = getenv("RUVLLM_CUDA_FATTN_MIN"),
               *tm = getenv("RUVLLM_CUDA_ATTN_TILED_MAX"), *fs = getenv("RUVLLM_CUDA_FATTN_SPARSE");
    g_fattn = fa && (fa[0] == '0' || fa[0] == '2') ? fa[0] - '0' : 1;
    g_fattn_sparse = !(fs && fs[0] == '0');
    g_fattn_min = fm && atoi(fm) > 0 ? atoi(fm) : FATTN_MIN_TOK;
    g_tiled_sparse = tm && atoi(tm) > 0 ? atoi(tm) : 0x7fffffff;
    const int v = (int)smem_max;
    const void *k[] = {(const void *)attn_kernel<RL_TYPE_F32, true>,
                       (const void *)attn_kernel<RL_TYPE_F16, true>,
                       (const void *)attn_kernel<RL_TYPE_Q8_0, true>,
                       (const void *)attn_kernel<RL_TYPE_F32, false>,
                       (const void *)attn_kernel<RL_TYPE_F16, false>,
                       (const void *)attn_kernel<RL_TYPE_Q8_0, false>};
    cudaError_t e = cudaSuccess;
    for (size_t i = 0; i < sizeof k / sizeof k[0] && e == cudaSuccess; i++)
        e = cudaFuncSetAttribute(k[i], cudaFuncAttributeMaxDynamicSharedMemorySize, v);
    if (e == cudaSuccess) e = rl__cu_fattn_init();
    return e;
}

/* The attention kernel alone (the combine, if any, is the caller's). */
static cudaError_t attn_main(cudaStream_t s, const rl__cu_attn *a) {
    const int n_gqa = a->n_head / a->n_head_kv;
    const int n_hgroups = (n_gqa + HC - 1) / HC;
    const int64_t nblk = (int64_t)a->n_tok * a->n_head_kv * n_hgroups;
    if (nblk > 0x7fffffff || a->n_split < 1 || a->n_split > RL_CU_ATTN_MAX_SPLIT)
        return cudaErrorInvalidValue;
    dim3 grid((unsigned)nblk, (unsigned)a->n_split);
    switch (a->type) {
    case RL_TYPE_F32:
        attn_launch<RL_TYPE_F32>(grid, s, a, n_hgroups);
        break;
    case RL_TYPE_F16:
        attn_launch<RL_TYPE_F16>(grid, s, a, n_hgroups);
        break;
    case RL_TYPE_Q8_0:
        attn_launch<RL_TYPE_Q8_0>(grid, s, a, n_hgroups);
        break;
    default:
        return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t rl__cu_attention(cudaStream_t s, const rl__cu_attn *a) {
    if (a->n_tok <= 0) return cudaSuccess;
    if (use_fattn(a)) {
        cudaError_t e = rl__cu_fattn(s, a);
        if (e != cudaSuccess || a->fa_split <= 1) return e;
        rl__cu_attn c = *a;
        c.n_split = a->fa_split;
        (void)rlcu::launch(attn_combine_kernel, (unsigned)((int64_t)a->n_tok * a->n_head), THREADS,
                           0, s, c);
        return cudaGetLastError();
    }
    cudaError_t e = attn_main(s, a);
    if (e != cudaSuccess || a->n_split == 1) return e;
    (void)rlcu::launch(attn_combine_kernel, (unsigned)((int64_t)a->n_tok * a->n_head), THREADS, 0, s, *a);
    return cudaGetLastError();
}

extern "C" bool rl__cu_attention_q8_ok(const rl__cu_attn *a) {
    const int hdv = a->head_dim_v;
    return a->n_split > 1 && a->n_tok > 0 && (hdv == 64 || hdv == 128 || hdv == 256) &&
           ((int64_t)a->n_head * hdv) % CQ_THREADS == 0 &&
           (int64_t)a->n_tok * a->n_head * hdv / CQ_THREADS <= 0x7fffffff;
}

extern "C" cudaError_t rl__cu_attention_q8(cudaStream_t s, const rl__cu_attn *a, void *xq) {
    if (a->n_tok <= 0) return cudaSuccess;
    if (!rl__cu_attention_q8_ok(a)) return cudaErrorInvalidValue;
    cudaError_t e = attn_main(s, a);
    if (e != cudaSuccess) return e;
    const int64_t blocks = (int64_t)a->n_tok * a->n_head * a->head_dim_v / CQ_THREADS;
    (void)rlcu::launch(attn_combine_q8_kernel, (unsigned)blocks, CQ_THREADS, 0, s, *a,
                       static_cast<int8_t *>(xq));
    return cudaGetLastError();
}
