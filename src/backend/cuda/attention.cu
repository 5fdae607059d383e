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
 * Decode of F16 caches with heads of 64, 128 or 256 (the vec kernel below): a block's
 * warps walk chunks of 32 cells each on their own, the chunk's K and V rows brought to the
 * warp's shared tile with cp.async; the warps' partials are merged at the end, and with one
 * piece the output (and for the fuse pass its q8 quantization) is written by that one launch;
 * with several, the last block of each (token, KV head, head group) to finish merges the
 * pieces (a counter per such block) as the combine kernel would, so that is one launch too.
 *
 * Decode of a single token over a short span (up to 256 cells; F16 caches, heads of 64 or
 * 128, the short kernel below): one block of 256 threads per KV head holds the whole span
 * in shared memory, so the call is a few short phases between barriers instead of a
 * warp's chain of chunks; the fuse pass may give it the RoPE and cache write of the token
 * too (one launch instead of two, the span's older rows copied before the PDL wait).
 *
 * Dispatch (rl__cu_attn_plan decides, at record time, then rl__cu_attention follows):
 * single tokens over spans of up to g_short cells (the power of two above the longest) go
 * to the short kernel (RUVLLM_CUDA_ATTN_SHORT=0: off, =64 / 128 / 256: its longest span;
 * RUVLLM_CUDA_ATTN_ROPE=0: no RoPE joined to it); prefill of F16 caches (many tokens
 * sharing their cells, the host's `dense`) goes to the tensor-core kernel (fattn.cu); up to
 * VEC_MAX_TOK tokens that do not share cells (batched
 * decode, each token its own sequence), few-token calls and single tokens go to the vec
 * kernel where it applies (with RUVLLM_CUDA_ATTN_MERGE=0 single tokens over short spans stay
 * on the TILED kernel and its combine: VEC_1TOK), more
 * tokens to the tensor-core kernel (its blocks' unions cut into pieces, then the combine
 * below); what neither takes goes to attn_kernel (TILED up to 8 tokens).
 * RUVLLM_CUDA_FATTN=0 turns the tensor-core kernel off, =2 takes it for every call it
 * supports (tests); RUVLLM_CUDA_FATTN_MIN (tokens, default FATTN_MIN_TOK) is its threshold
 * for dense calls, RUVLLM_CUDA_FATTN_SPARSE=0 keeps the others off it;
 * RUVLLM_CUDA_ATTN_TILED_MAX bounds the tokens of the TILED variant for calls that are not
 * dense (default: no bound). RUVLLM_CUDA_ATTN_VEC=0 turns the vec kernel off,
 * RUVLLM_CUDA_ATTN_VEC_MAX (tokens), RUVLLM_CUDA_ATTN_VEC_PIECE (cells) and
 * RUVLLM_CUDA_ATTN_VEC_1TOK (cells) set its thresholds (timing, tests);
 * RUVLLM_CUDA_ATTN_MERGE=0 sends its pieces to the combine kernel again;
 * RUVLLM_CUDA_ATTN_VEC_LAT=0 gives back the vec kernel as it was before its latency work
 * (a chunk's K rows waited for before its V rows, RUVLLM_CUDA_ATTN_VEC_KV2; the merge's
 * loads in one round trip; study knobs, default as before: rows prefetched to L2 before the
 * PDL wait, RUVLLM_CUDA_ATTN_VEC_PF chunks a warp, and single tokens in pieces of
 * RUVLLM_CUDA_ATTN_VEC_PIECE1 cells);
 * RUVLLM_CUDA_ATTN_VEC_HPB (default 1; 0: off) lets calls that stay one wave give a vec
 * block fewer query heads (g_vec_hpb). Calls of 2+ tokens with heads of 64 or 128 take the
 * vec kernel's tensor-core variant (mma_dec_kernel; RUVLLM_CUDA_ATTN_MMA=0: the CUDA-core
 * arithmetic as before, RUVLLM_CUDA_ATTN_MMA_MIN and _MMA_W its fewest tokens and warps,
 * _MMA_NST, _MMA_L2 and _MMA_BULK its warps' load rings; _MMA_PIPE=0 the rings as before).
 */
#include "cuda_impl.h"
#include "launch.cuh"
#include "mbar.cuh"
#include "mma.cuh"
#include "mmq_layout.cuh"
#include "qtypes.cuh"
#include "step.h"

#include <cuda_fp16.h>
#include <math.h>
#include <stdlib.h>

#include <algorithm>

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

/* What a block of the decode kernels serves: blockIdx.x = (t * n_head_kv + g) * n_hgroups
 * + hg (token t, KV head g, group hg of its query heads); blockIdx.y is the piece. */
struct BlockAt {
    int hg, g;
    int64_t t;
};
__device__ __forceinline__ BlockAt block_at(const rl__cu_attn &a, int n_hgroups) {
    const int64_t bx = blockIdx.x / n_hgroups;
    return {(int)(blockIdx.x % n_hgroups), (int)(bx % a.n_head_kv), bx / a.n_head_kv};
}

template <int KVT, bool TILED>
__global__ void __launch_bounds__(THREADS) attn_kernel(rl__cu_attn a, int n_hgroups) {
    rlcu::pdl_enter();
    extern __shared__ float sm[];
    const int hdk = a.head_dim_k, hdv = a.head_dim_v;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const BlockAt at = block_at(a, n_hgroups);
    const int hg = at.hg, g = at.g;
    const int64_t t = at.t;
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

/* The attention outputs vals [nq] of query heads head0, head0 + 1, ... of token t (nq a
 * multiple of 256) quantized into xq for the q8 product that reads them next (q8ws_warp over
 * the token's n_head * D values, in the q8 workspace layout a.xq_mode names; with an mmq.cu
 * layout, the rounding of mmq.cu's own quantization kernel, mmq_layout.cuh, lane l holding values
 * 8l..8l+7 of a block of 256 as there, so the same bits; the blocks of token t also write
 * the zero codes and scales of padding token n + t of the last tile, if any): warp w of nw
 * takes the blocks of 256 w, w + nw, ... */
__device__ __forceinline__ void attn_out_q8(const rl__cu_attn &a, int D, int64_t t, int head0,
                                            const float *vals, int nq, int warp, int nw, int lane,
                                            int8_t *xq) {
    const int64_t K = (int64_t)a.n_head * D, n = a.n_tok, eb = (int64_t)head0 * D;
    if (rl__cu_xq_mmq(a.xq_mode)) {
        const int ntl = rlcu::mmq_ntl(n);
        uint32_t *mq = reinterpret_cast<uint32_t *>(xq);
        float2 *msc = reinterpret_cast<float2 *>(xq + rlcu::mmq_codes_bytes(K, ntl));
        const bool pad = t < 8 * (int64_t)ntl - n;
        for (int qb = warp; qb < nq / 256; qb += nw) {
            float v8[8];
#pragma unroll
            for (int j = 0; j < 8; j++) v8[j] = vals[qb * 256 + 8 * lane + j];
            float d, sum;
            const uint2 c = a.xq_mode == RL_CU_XQ_MMQ256 ? rlcu::mmq_quant256(v8, &d, &sum)
                                                         : rlcu::mmq_quant32(v8, &d, &sum);
            const int64_t kb = (eb + (int64_t)qb * 256) / 32 + lane / 4;
            rlcu::mmq_put8(mq, msc, kb, ntl, t, lane & 3, c, d, sum);
            if (pad) rlcu::mmq_put8(mq, msc, kb, ntl, n + t, lane & 3, make_uint2(0, 0), 0.0f, 0.0f);
        }
        return;
    }
    for (int qb = warp; qb < nq / 256; qb += nw) {
        float v8[8];
#pragma unroll
        for (int j = 0; j < 8; j++) v8[j] = vals[qb * 256 + 8 * lane + j];
        rlcu::q8ws_warp(a.xq_mode, v8, xq, n * K, t * K + eb + (int64_t)qb * 256 + 8 * lane);
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
    attn_out_q8(a, hdv, t, gb * (CQ_THREADS / hdv), vals, CQ_THREADS, 0, 1, lane, xq);
}

/* ---- decode: a few query tokens, each over its own span (the "vec" kernel) ----
 * F16 caches, head_dim_k == head_dim_v == D in 64, 128, 256. A block of up to 8 warps
 * serves one (token, KV head, group of up to HC query heads, piece of the span); its warps
 * take chunks of 32 cells in turn, each with its own running (m, l, acc) in registers and
 * no block-wide barrier inside the walk. A warp's chunk: the K and V rows of its cells go
 * to the warp's shared tile with cp.async, all of them in flight at once (16 KB for
 * D = 128: what keeps HBM busy is bytes in flight, not threads); then scores with D / 8
 * lanes per cell (16 bytes of the K row against the queries' matching 8 values, held in
 * registers; the NH heads' sums over those lanes by halving shuffles, NH - 1 + log2(D / 8 /
 * NH) of them), the online softmax with a lane per cell, and acc += p v with D / 32 values
 * per lane (p of four cells in one load). A warp's work per chunk is a serial chain, and
 * with few blocks that chain is the call's time: the heads' steps are free of branches
 * (heads past the block's have zero queries) so their chains overlap. At the end the
 * warps' partials are merged in shared memory (weights exp(m_w - M), in warp order: no
 * atomics, the same bits every run) and the block writes the output; with pieces its (m, l,
 * acc) go to ws, and the last block of the (token, KV head, head group) merges them (or
 * attn_combine_kernel does). Q8: the output is also quantized in q8 blocks of 256 values as
 * attn_combine_q8_kernel does, so a decode step needs one launch for its attention.
 * NH: the heads the registers hold (1, 2, 4 or 8, at least the block's). */
constexpr int VEC_MAXW = 8;
constexpr int CHUNK = 32;

using rlcu::ldsm_x4;
using rlcu::ldsm_x4_t;
using rlcu::mma16816;
using rlcu::smem_u32;

__device__ __forceinline__ void cp16(void *dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(dst)), "l"(src)
                 : "memory");
}
__device__ __forceinline__ void cp_wait_all() {
    asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::: "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
/* every group but the newest one complete */
__device__ __forceinline__ void cp_wait1() { asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }
__device__ __forceinline__ void pf_l2(const void *p) {
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

/* Before the PDL wait: the K and V rows (n bytes each, at kt / vt + cell * row bytes) of
 * this warp's first nc chunks (chunk starts c0, c0 + stride, ...; the first chunk's cell
 * ids in `first`, lane by lane) fetched to L2. Only a hint (prefetch.global.L2 moves
 * nothing into the SM and L2 is where every write lands): a row that the kernel before
 * writes (this step's token) is read again after the wait and its new bytes found there,
 * so this may run while that kernel runs, and the rows of earlier steps (DRAM: the weights
 * stream through L2 between layers) come from L2 once the wait returns. */
template <int NB>
__device__ __forceinline__ void kv_prefetch(const rl__cu_attn &a, const uint8_t *kt,
                                            const uint8_t *vt, int64_t c0, int64_t ce,
                                            int64_t stride, int nc, int first) {
    const int lane = threadIdx.x & 31;
    for (int k = 0; k < nc && c0 < ce; k++, c0 += stride) {
        if (c0 + lane < ce) {
            const size_t cell = k == 0 ? (size_t)first : (size_t)a.cells[c0 + lane];
            const uint8_t *kr = kt + cell * a.k_row_bytes, *vr = vt + cell * a.v_row_bytes;
#pragma unroll
            for (int o = 0; o < NB; o += 128) {
                pf_l2(kr + o);
                pf_l2(vr + o);
            }
            if ((reinterpret_cast<uintptr_t>(kr) | reinterpret_cast<uintptr_t>(vr)) & 127) {
                pf_l2(kr + NB - 1); /* rows that straddle one more line */
                pf_l2(vr + NB - 1);
            }
        }
    }
}

/* The most warps of a vec block for head size D (their tiles within 227 KB). */
constexpr int vec_maxw(int D) { return D > 128 ? 4 : VEC_MAXW; }

/* Shared bytes of a vec block of nw warps: the warps' K and V tiles [CHUNK][D] (f16; after
 * the walk the merge's [nw][heads][D] floats), their scores [HC][CHUNK], m and l [HC]. */
size_t vec_smem(int D, int nw) {
    return (size_t)nw * (2 * CHUNK * D * sizeof(__half) + HC * CHUNK * sizeof(float) +
                         2 * HC * sizeof(float));
}

/* n (2, 4 or 8) halves at p (shared) as float. */
template <int N> __device__ __forceinline__ void hload(const __half *p, float *o) {
    if constexpr (N == 2) {
        const float2 f = __half22float2(*reinterpret_cast<const __half2 *>(p));
        o[0] = f.x;
        o[1] = f.y;
    } else if constexpr (N == 4) {
        const uint2 u = *reinterpret_cast<const uint2 *>(p);
        const float2 f0 = __half22float2(*reinterpret_cast<const __half2 *>(&u.x));
        const float2 f1 = __half22float2(*reinterpret_cast<const __half2 *>(&u.y));
        o[0] = f0.x;
        o[1] = f0.y;
        o[2] = f1.x;
        o[3] = f1.y;
    } else {
        cvt16<RL_TYPE_F16>(*reinterpret_cast<const uint4 *>(p), o);
    }
}

/* The one-launch merge of a vec call's pieces: per (token, KV head, head group) block a
 * counter of the pieces done, in the backend instance's RL_CU_ATTN_CNT counters (a->cnt:
 * zero when allocated, and left zero by every launch). */
constexpr int MERGE_MAX_SPLIT = 64; /* the most pieces merged in the kernel */

/* The pieces' partials of heads head0 .. head0 + nh of token t merged into the output (and,
 * Q8, its q8 blocks): attn_combine_kernel's arithmetic (Q8: attn_combine_q8_kernel's), the
 * same operations in the same order, so the same bits: the weights exp(m_s - M), L summed
 * as VT threads of the combine sum it (thread v the pieces v, v + VT, ..., then each warp's
 * butterfly, then the warps in order), each output the pieces in order. ws is read through
 * L2 (other blocks wrote it). sm: [HC][MERGE_MAX_SPLIT] weights, then [HC] 1 / L.
 * pre: where every thread's outputs are one round of the loop below (at most 8 pieces, at
 * most 4 outputs a thread), their pieces' values are loaded together with the weights'
 * m and l, one L2 round trip before the barrier instead of two (the same sums). */
template <int D, bool Q8>
__device__ __forceinline__ void vec_merge(const rl__cu_attn &a, int64_t t, int head0, int nh,
                                          float *sm, int8_t *xq, bool pre) {
    static_assert(MERGE_MAX_SPLIT == 64 && (Q8 ? D : THREADS) >= 64, "a piece per combine thread");
    const int ns = a.n_split, nw = (int)(blockDim.x >> 5), warp = (int)(threadIdx.x >> 5),
              lane = threadIdx.x & 31;
    const size_t wl = D + 2;
    float *wg = sm, *inv = sm + HC * MERGE_MAX_SPLIT, *vals = inv + HC; /* vals: [nh][D] */
    const int n_out = nh * D, bd = (int)blockDim.x;
    pre = pre && ns <= 8 && n_out <= 4 * bd;
    float xp[4][8];
    if (pre) {
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int i = min((int)threadIdx.x + u * bd, n_out - 1), h = i / D;
            const float *w = a.ws + ((size_t)t * a.n_head + head0 + h) * ns * wl + 2 + i % D;
#pragma unroll
            for (int j = 0; j < 8; j++) xp[u][j] = j < ns ? __ldcg(w + j * wl) : 0.0f;
        }
    }
    /* Weights: with at most 64 pieces and at least 64 combine threads a head, combine
     * thread v holds piece v alone, so its warps 0 and 1 sum pieces 0-31 and 32-63 (lane
     * order, butterfly) and the rest add zeros: L = (0 + r0) + r1 as there. */
    for (int h = warp; h < nh; h += nw) {
        const float *w = a.ws + ((size_t)t * a.n_head + head0 + h) * ns * wl;
        float ms[2], ls[2];
#pragma unroll
        for (int k = 0; k < 2; k++) {
            const int s = 32 * k + lane;
            ms[k] = s < ns ? __ldcg(w + s * wl) : -INFINITY;
            ls[k] = s < ns ? __ldcg(w + s * wl + 1) : 0.0f;
        }
        float m = -INFINITY;
#pragma unroll
        for (int k = 0; k < 2; k++)
            if (ls[k] > 0.0f) m = fmaxf(m, ms[k]);
        const float M = warp_max(m);
        float L = 0.0f;
#pragma unroll
        for (int k = 0; k < 2; k++) {
            float l = 0.0f;
            const int s = 32 * k + lane;
            if (s < ns) {
                const float e = ls[k] > 0.0f ? expf(ms[k] - M) : 0.0f;
                wg[h * MERGE_MAX_SPLIT + s] = e;
                l += ls[k] * e;
            }
            L += warp_sum(l);
        }
        if (lane == 0) inv[h] = L > 0.0f ? 1.0f / L : 0.0f;
    }
    __syncthreads();
    /* Outputs: each the pieces in order (o += x_s w_s where w_s > 0); a thread takes 4
     * outputs at once and loads 8 pieces of each before it adds them, 32 loads in flight. */
    for (int i0 = threadIdx.x; i0 < n_out; i0 += 4 * bd) {
        float o[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        const float *w[4];
        const float *gw[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int i = min(i0 + u * bd, n_out - 1), h = i / D;
            w[u] = a.ws + ((size_t)t * a.n_head + head0 + h) * ns * wl + 2 + i % D;
            gw[u] = wg + h * MERGE_MAX_SPLIT;
        }
        for (int s0 = 0; s0 < ns; s0 += 8) {
            float x[4][8];
#pragma unroll
            for (int u = 0; u < 4; u++)
#pragma unroll
                for (int j = 0; j < 8; j++)
                    x[u][j] = pre ? xp[u][j] : s0 + j < ns ? __ldcg(w[u] + (s0 + j) * wl) : 0.0f;
#pragma unroll
            for (int u = 0; u < 4; u++)
#pragma unroll
                for (int j = 0; j < 8; j++)
                    if (s0 + j < ns && gw[u][s0 + j] > 0.0f) o[u] += x[u][j] * gw[u][s0 + j];
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int i = i0 + u * bd;
            if (i < n_out) {
                const int h = i / D;
                const float v = o[u] * inv[h];
                a.out[t * a.out_ld + (int64_t)(head0 + h) * D + i % D] = v;
                if constexpr (Q8) vals[i] = v;
            }
        }
    }
    if constexpr (Q8) { /* nh * D is a multiple of 256 here */
        __syncthreads();
        attn_out_q8(a, D, t, head0, vals, n_out, warp, nw, lane, xq);
    }
}

/* The end of a vec block (vec_kernel's and mma_dec_kernel's): red holds each warp's
 * accumulators [nw][rs][D] already weighted by exp(m_w - M), lw its weighted sums l and mw
 * its maxima m ([nw][HC]; mscale * m in natural units). Sums the warps in warp order and
 * writes the output (Q8: and its q8 blocks), or with pieces the block's (M, L, acc) to ws,
 * and with cnt the last piece of the (token, KV head, head group) merges them all. */
template <int D, bool Q8>
__device__ __forceinline__ void vec_finish(const rl__cu_attn &a, int64_t t, int split, int head0,
                                           int nh, int rs, float *red, const float *mw,
                                           const float *lw, float mscale, int8_t *xq,
                                           unsigned int *cnt, unsigned char *vsm, bool pre) {
    const int nw = (int)(blockDim.x >> 5), warp = (int)(threadIdx.x >> 5), lane = threadIdx.x & 31;
    for (int i = threadIdx.x; i < nh * D; i += blockDim.x) {
        const int h = i / D, d = i % D;
        float o = 0.0f, L = 0.0f, M = -INFINITY;
        for (int w = 0; w < nw; w++) {
            o += red[((size_t)w * rs + h) * D + d];
            L += lw[w * HC + h];
            M = fmaxf(M, mw[w * HC + h]);
        }
        if (a.n_split == 1) {
            const float v = o * (L > 0.0f ? 1.0f / L : 0.0f);
            a.out[t * a.out_ld + (int64_t)(head0 + h) * D + d] = v;
            if constexpr (Q8) red[i] = v; /* only this thread reads or writes this slot */
        } else {
            float *w =
                a.ws + (((size_t)t * a.n_head + head0 + h) * a.n_split + split) * (size_t)(D + 2);
            if (d == 0) {
                w[0] = M * mscale;
                w[1] = L;
            }
            w[2 + d] = o;
        }
    }
    if (a.n_split == 1) {
        if constexpr (Q8) {
            __syncthreads();
            attn_out_q8(a, D, t, head0, red, nh * D, warp, nw, lane, xq);
        }
        return;
    }
    if (!cnt) return; /* the combine kernel merges the pieces */

    /* The last piece of this (token, KV head, head group) to finish merges them all (the
     * pattern of the CUDA samples' threadFenceReduction): each block's partial is made
     * visible device-wide before its count; the block that counts n_split resets the
     * counter (so the next launch, and a replayed graph, finds 0) and reads the others'. */
    __shared__ int s_last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
        unsigned int *c = cnt + blockIdx.x;
        const unsigned int seen = atomicAdd(c, 1u);
        s_last = seen + 1u == (unsigned int)a.n_split;
        if (s_last) atomicExch(c, 0u);
    }
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    /* the merge's weights and 1 / L in the tiles' room (every read of red is done) */
    vec_merge<D, Q8>(a, t, head0, nh, reinterpret_cast<float *>(vsm), xq, pre);
}


/* vec_kernel's lat: the chunks a warp prefetches to L2 before the PDL wait (low byte),
 * VEC_LAT_MERGE: the merge's values loaded with its weights (vec_merge's pre), VEC_LAT_KV2:
 * a chunk's K rows waited for apart from its V rows. */
constexpr int VEC_LAT_PF = 0xff, VEC_LAT_MERGE = 0x100, VEC_LAT_KV2 = 0x200;

template <int D, int NH, bool Q8>
__global__ void __launch_bounds__(VEC_MAXW * 32)
    vec_kernel(rl__cu_attn a, int n_hgroups, int hpb, int8_t *xq, unsigned int *cnt, int lat) {
    static_assert(D / 8 >= NH, "a cell's lanes hold one head's sum each");
    constexpr int LPC = D / 8;  /* lanes per cell for the scores */
    constexpr int CPP = 32 / LPC; /* cells per pass */
    constexpr int NP = CHUNK / CPP; /* passes per chunk */
    constexpr int DPL = D / 32; /* value dimensions per lane */
    constexpr int CH = D / 8;   /* 16-byte pieces per row */
    constexpr unsigned FULL = 0xffffffffu;
    extern __shared__ __align__(16) unsigned char vsm[];
    const int nw = (int)(blockDim.x >> 5), warp = (int)(threadIdx.x >> 5), lane = threadIdx.x & 31;
    const BlockAt at = block_at(a, n_hgroups);
    const int hg = at.hg, g = at.g;
    const int64_t t = at.t;
    const int split = blockIdx.y;
    /* The span and the first chunk's cell ids before the wait: they are the queue's arena,
     * copied from the host before the step's first kernel and written by none (so no kernel
     * this one may overlap writes them); the queries and the K/V rows (the rows of this
     * step's tokens come from the kernel before) only after it. */
    const int32_t b = a.span[2 * t], e = a.span[2 * t + 1];
    const int64_t cb = (int64_t)b + (int64_t)split * a.split_len;
    const int64_t ce = min((int64_t)e, cb + a.split_len);
    int nextcell = cb + (int64_t)warp * CHUNK + lane < ce ? a.cells[cb + (int64_t)warp * CHUNK + lane] : 0;
    const uint8_t *kt = static_cast<const uint8_t *>(a.k) + (size_t)g * D * 2;
    const uint8_t *vt = static_cast<const uint8_t *>(a.v) + (size_t)g * D * 2;
    /* lat's low bits (RUVLLM_CUDA_ATTN_VEC_PF): this warp's first chunks' rows to L2 meanwhile */
    if (lat & VEC_LAT_PF)
        kv_prefetch<D * 2>(a, kt, vt, cb + (int64_t)warp * CHUNK, ce, (int64_t)nw * CHUNK,
                           lat & VEC_LAT_PF, nextcell);
    rlcu::pdl_enter();
    const int n_gqa = a.n_head / a.n_head_kv, h0 = hg * hpb, nh = min(hpb, n_gqa - h0);
    const int nhm = min(hpb, n_gqa), head0 = g * n_gqa + h0;
    __half *kw = reinterpret_cast<__half *>(vsm) + (size_t)warp * 2 * CHUNK * D; /* [CHUNK][D] */
    __half *vw = kw + CHUNK * D;                                                /* [CHUNK][D] */
    float *red = reinterpret_cast<float *>(vsm); /* after the walk: [nw][nhm][D] */
    float *sc = reinterpret_cast<float *>(vsm + (size_t)nw * 2 * CHUNK * D * sizeof(__half)) +
                warp * HC * CHUNK; /* this warp's [HC][CHUNK]: scores, then p */
    float *mw = reinterpret_cast<float *>(vsm + (size_t)nw * 2 * CHUNK * D * sizeof(__half)) +
                nw * HC * CHUNK; /* [nw][HC] */
    float *lw = mw + nw * HC;    /* [nw][HC] */

    const int sub = lane % LPC; /* this lane's 8 values of a K row */
    float qf[NH][8];
    if ((reinterpret_cast<uintptr_t>(a.q) & 15) == 0 && (a.q_ld & 3) == 0) { /* 16-byte loads */
#pragma unroll
        for (int h = 0; h < NH; h++) {
            const float4 *qp = reinterpret_cast<const float4 *>(a.q + t * a.q_ld +
                                                                (int64_t)(head0 + h) * D + sub * 8);
            const float4 z = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            const float4 x0 = h < nh ? qp[0] : z, x1 = h < nh ? qp[1] : z;
            qf[h][0] = x0.x;
            qf[h][1] = x0.y;
            qf[h][2] = x0.z;
            qf[h][3] = x0.w;
            qf[h][4] = x1.x;
            qf[h][5] = x1.y;
            qf[h][6] = x1.z;
            qf[h][7] = x1.w;
        }
    } else {
#pragma unroll
        for (int h = 0; h < NH; h++)
#pragma unroll
            for (int k = 0; k < 8; k++)
                qf[h][k] = h < nh ? a.q[t * a.q_ld + (int64_t)(head0 + h) * D + sub * 8 + k] : 0.0f;
    }
    float m[NH], lp[NH], acc[NH][DPL];
#pragma unroll
    for (int h = 0; h < NH; h++) {
        m[h] = -INFINITY;
        lp[h] = 0.0f;
#pragma unroll
        for (int k = 0; k < DPL; k++) acc[h][k] = 0.0f;
    }

    for (int64_t c0 = cb + (int64_t)warp * CHUNK; c0 < ce; c0 += (int64_t)nw * CHUNK) {
        const int nv = (int)min((int64_t)CHUNK, ce - c0);
        const int mycell = nextcell;
        /* the chunk's K and V rows into the tiles, every copy in flight at once (rows past
         * nv are left as they are: masked below); kv2 (VEC_LAT_KV2): the K rows first, in a
         * group of their own, so the scores start while the V rows still arrive */
        const bool kv2 = (lat & VEC_LAT_KV2) != 0;
        if (kv2) {
#pragma unroll 4
            for (int i = lane; i < CHUNK * CH; i += 32) {
                const int r = i / CH, p = i % CH;
                const size_t cell = (size_t)__shfl_sync(FULL, mycell, r);
                if (r < nv) cp16(kw + r * D + 8 * p, kt + cell * a.k_row_bytes + 16 * p);
            }
            cp_commit();
#pragma unroll 4
            for (int i = lane; i < CHUNK * CH; i += 32) {
                const int r = i / CH, p = i % CH;
                const size_t cell = (size_t)__shfl_sync(FULL, mycell, r);
                if (r < nv) cp16(vw + r * D + 8 * p, vt + cell * a.v_row_bytes + 16 * p);
            }
            cp_commit();
        } else {
#pragma unroll 4
            for (int i = lane; i < CHUNK * CH; i += 32) {
                const int r = i / CH, p = i % CH;
                const size_t cell = (size_t)__shfl_sync(FULL, mycell, r);
                if (r < nv) {
                    cp16(kw + r * D + 8 * p, kt + cell * a.k_row_bytes + 16 * p);
                    cp16(vw + r * D + 8 * p, vt + cell * a.v_row_bytes + 16 * p);
                }
            }
        }
        {   /* the next chunk's cell ids, while the copies fly */
            const int64_t cn = c0 + (int64_t)nw * CHUNK + lane;
            nextcell = cn < ce ? a.cells[cn] : 0;
        }
        if (kv2)
            cp_wait1(); /* the K rows */
        else
            cp_wait_all();
        __syncwarp();
        /* scores into sc (-inf past nv); every one of the NH heads (those past nh have zero
         * queries: finite scores nobody reads), no branch between the heads' chains */
#pragma unroll 8
        for (int pp = 0; pp < NP; pp++) {
            const int ci = pp * CPP + lane / LPC;
            float kv[8];
            hload<8>(kw + ci * D + sub * 8, kv);
            float sv[NH];
#pragma unroll
            for (int h = 0; h < NH; h++) {
                sv[h] = 0.0f;
#pragma unroll
                for (int k = 0; k < 8; k++) sv[h] += qf[h][k] * kv[k];
            }
            /* the NH sums over the cell's LPC lanes by halving: at each of the first log2(NH)
             * steps a lane keeps half of its heads (the upper half where its lane bit is
             * set) and adds its partner's values of them, NH - 1 shuffles in all instead of
             * NH log2(LPC); then plain butterfly steps. Lane sub ends with the sum of head
             * sub / (LPC / NH). */
            int o = LPC / 2;
#pragma unroll
            for (int c = NH; c > 1; c >>= 1, o >>= 1) {
                const bool up = (lane & o) != 0;
#pragma unroll
                for (int i = 0; i < c / 2; i++) {
                    const float give = up ? sv[i] : sv[i + c / 2];
                    const float keep = up ? sv[i + c / 2] : sv[i];
                    sv[i] = keep + __shfl_xor_sync(FULL, give, o);
                }
            }
#pragma unroll
            for (; o > 0; o >>= 1) sv[0] += __shfl_xor_sync(FULL, sv[0], o);
            float x = sv[0] * a.scale;
            if (a.softcap > 0.0f) x = tanhf(x / a.softcap) * a.softcap;
            if (sub % (LPC / NH) == 0) sc[(sub / (LPC / NH)) * CHUNK + ci] = ci < nv ? x : -INFINITY;
        }
        __syncwarp();
        /* online softmax, a lane per cell: p replaces the score */
#pragma unroll
        for (int h = 0; h < NH; h++) {
            const float x = sc[h * CHUNK + lane];
            const float mn = fmaxf(m[h], warp_max(x));
            const float corr = m[h] == -INFINITY ? 0.0f : expf(m[h] - mn);
            const float p = x == -INFINITY ? 0.0f : expf(x - mn);
            m[h] = mn;
            lp[h] = lp[h] * corr + p;
#pragma unroll
            for (int k = 0; k < DPL; k++) acc[h][k] *= corr;
            sc[h * CHUNK + lane] = p;
        }
        if (kv2) cp_wait_all(); /* the V rows (an empty group committed: no matter) */
        __syncwarp();
        /* acc += p v over the chunk's cells, in cell order: four cells' p of a head in one
         * 16-byte load, then the rest one by one */
        int j = 0;
        for (; j + 4 <= nv; j += 4) {
            float v[4][DPL];
#pragma unroll
            for (int q = 0; q < 4; q++) hload<DPL>(vw + (j + q) * D + lane * DPL, v[q]);
#pragma unroll
            for (int h = 0; h < NH; h++) {
                const float4 p4 = *reinterpret_cast<const float4 *>(sc + h * CHUNK + j);
#pragma unroll
                for (int k = 0; k < DPL; k++) acc[h][k] += p4.x * v[0][k];
#pragma unroll
                for (int k = 0; k < DPL; k++) acc[h][k] += p4.y * v[1][k];
#pragma unroll
                for (int k = 0; k < DPL; k++) acc[h][k] += p4.z * v[2][k];
#pragma unroll
                for (int k = 0; k < DPL; k++) acc[h][k] += p4.w * v[3][k];
            }
        }
        for (; j < nv; j++) {
            float v[DPL];
            hload<DPL>(vw + j * D + lane * DPL, v);
#pragma unroll
            for (int h = 0; h < NH; h++) {
                const float p = sc[h * CHUNK + j];
#pragma unroll
                for (int k = 0; k < DPL; k++) acc[h][k] += p * v[k];
            }
        }
        __syncwarp(); /* the next chunk's copies and scores overwrite the tiles and sc */
    }

    /* merge the warps: M = max m_w, weights exp(m_w - M) (0 for warps that saw nothing) */
#pragma unroll
    for (int h = 0; h < NH; h++)
        if (h < nh) lp[h] = warp_sum(lp[h]);
#pragma unroll
    for (int h = 0; h < NH; h++)
        if (lane == 0 && h < nh) mw[warp * HC + h] = m[h];
    __syncthreads(); /* every warp is past its walk: red may overwrite the tiles */
#pragma unroll
    for (int h = 0; h < NH; h++) {
        if (h < nh) {
            float M = -INFINITY;
            for (int w = 0; w < nw; w++) M = fmaxf(M, mw[w * HC + h]);
            const float f = m[h] == -INFINITY ? 0.0f : expf(m[h] - M);
            float *r = red + ((size_t)warp * nhm + h) * D + lane * DPL;
#pragma unroll
            for (int k = 0; k < DPL; k++) r[k] = acc[h][k] * f;
            if (lane == 0) lw[warp * HC + h] = lp[h] * f;
        }
    }
    __syncthreads();
    vec_finish<D, Q8>(a, t, split, head0, nh, nhm, red, mw, lw, 1.0f, xq, cnt, vsm,
                      (lat & VEC_LAT_MERGE) != 0);
}

/* ---- decode on the tensor cores (the "mma" variant of the vec kernel) ----
 * The vec kernel's blocks and pieces (a block of nw warps per (token, KV head, group of up
 * to 8 query heads, piece); warps walk chunks of 32 cells on their own; the same finish),
 * with each chunk's products on mma.sync m16n8k16 (PTX ISA "Matrix Fragments for
 * mma.m16n8k16") with the cells as the rows: S^T [32 cells][8 heads] = K [32][D] Q^T, then
 * O^T [D][8 heads] += V^T [D][32 cells] P^T. K comes through ldmatrix (the A fragment of
 * its rows), V through ldmatrix.trans (A = V^T), the queries are the B fragments (in
 * registers for the whole walk) and P^T the B fragment of the scores' own accumulators,
 * transposed in registers (movmatrix). A chunk costs 64 tensor-core instructions instead
 * of the CUDA cores' ~2000, so a warp spends its time waiting for bytes, and with each
 * warp's tiles in a ring of stages (the next chunks' copies in flight while this one
 * computes) the walk is one stream of loads.
 * Precision: q and p are each split into two f16 halves (x = hi + lo, lo = f16(x - hi))
 * and both halves multiplied, so products see ~22 bits of them (K and V are f16 already);
 * sums in f32: float attention within ~1e-10 nmse (the softmax in log2 units, exp2f).
 * Pieces are cut from each token's own span (n_split pieces of equal whole chunks), not
 * from split_len. Heads: the block's heads are the n = 8 columns (past the block's: zero
 * queries, never written). D: 64 and 128 (256 stays on the vec kernel: its tiles).
 * Where it stood with two stages (H100, ncu, 8B shape): 32 x 640 cells 36.6 us, 64 x 640
 * 68.4 us, DRAM at 2.27-2.45 TB/s (68-73% of peak) with ~3.7 warps an SM, half of their
 * stalls on memory; each warp's ring is now MMA_NST stages deep (its copies with the
 * L2::256B prefetch size), blocks of 2 warps hold 2 an SM: wall clock of queued calls
 * 32 x 640 46 -> 41 us, 64 x 640 81 -> 77 (see MMA_NST).
 * Measured and dropped (/work/notes/patches/attn7.patch): blocks of a token's 8 KV heads,
 * a warp each over 16-cell chunks, so a block reads whole K/V rows of consecutive cells
 * (8 warps an SM; 32 x 640 46.2 us, 64 x 640 81.2, 8 x 640 32.0 against 19.2 here), and the
 * same with a block barrier after every chunk (46.6 / 77.9): the 256-byte slices of each
 * row read apart in time are not what holds it back. */
constexpr int MMA_MC = 32;   /* cells a chunk */
constexpr int MMA_MAXW = 4;  /* warps a block at most */
constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;

/* Stages of a warp's load ring: MMA_NST by default, at most MMA_MAXST, and nw x stages at
 * most MMA_MAXW x 2 (the shared memory the kernels are set up for). */
constexpr int MMA_MAXST = 4;
template <int D> struct mma_shape {
    static constexpr int LD = D + 8; /* halves a shared row: ldmatrix's 8 rows in 8 bank groups */
    static constexpr size_t STAGE = (size_t)2 * MMA_MC * LD * sizeof(__half); /* K and V tiles */
    static constexpr size_t WARP = 2 * STAGE;                               /* two stages */
};
/* Shared bytes of an mma block of nw warps of nst stages each: the warps' tiles (after the
 * walk the finish's [nw][HC][D] floats and vec_merge's room), m and l [nw][HC], the warps'
 * stage barriers [nw][MMA_MAXST] (bulk copies). */
template <int D> constexpr size_t mma_smem(int nw, int nst = 2) {
    return (size_t)nw * nst * mma_shape<D>::STAGE + 2 * (size_t)nw * HC * sizeof(float) +
           (size_t)nw * MMA_MAXST * sizeof(uint64_t);
}
/* mma_dec_kernel's pipe: the stages (low bits); MMA_PIPE_L2: its copies ask L2 for the
 * whole 256-byte line they fall in (cp.async's L2::256B prefetch size); MMA_PIPE_BULK: a
 * row a bulk copy (cp.async.bulk, the copy engine), a lane a row, each stage completing on
 * its mbarrier, instead of 16-byte cp.async pieces. */
constexpr int MMA_PIPE_ST = 0xf, MMA_PIPE_L2 = 0x10, MMA_PIPE_BULK = 0x20;
static_assert(mma_shape<64>::WARP >= HC * 64 * sizeof(float) &&
                  mma_shape<128>::WARP >= HC * 128 * sizeof(float) &&
                  mma_shape<64>::WARP >= (HC * MERGE_MAX_SPLIT + HC + HC * 64) * sizeof(float),
              "a warp's tiles hold its share of the finish and the merge");

/* 16 bytes global -> shared, zero-filled when bytes == 0 (l2: the L2::256B prefetch size). */
__device__ __forceinline__ void cp16z(void *dst, const void *src, int bytes, bool l2) {
    if (l2)
        asm volatile("cp.async.cg.shared.global.L2::256B [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)),
                     "l"(src), "r"(bytes)
                     : "memory");
    else
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)),
                     "l"(src), "r"(bytes)
                     : "memory");
}
using rlcu::bulk_g2s; /* mbar.cuh */
using rlcu::mbar_expect;
using rlcu::mbar_init;
using rlcu::mbar_wait;
/* every group but the newest n complete (n 1 to 3) */
__device__ __forceinline__ void cp_wait_n(int n) {
    if (n <= 1)
        asm volatile("cp.async.wait_group 1;\n" ::: "memory");
    else if (n == 2)
        asm volatile("cp.async.wait_group 2;\n" ::: "memory");
    else
        asm volatile("cp.async.wait_group 3;\n" ::: "memory");
}
/* The 8x8 b16 matrix whose fragment a is (lane: row lane / 4, columns 2 (lane % 4) + 0, 1),
 * transposed, as a fragment of the same layout. */
__device__ __forceinline__ uint32_t movtrans(uint32_t a) {
    uint32_t d;
    asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;\n" : "=r"(d) : "r"(a));
    return d;
}
/* lo, hi as an f16 pair (lo in the low 16 bits), and the pair of what rounding left. */
__device__ __forceinline__ uint32_t pack_split(float lo, float hi, uint32_t *rest) {
    const __half2 h = __floats2half2_rn(lo, hi);
    const float2 f = __half22float2(h);
    const __half2 r = __floats2half2_rn(lo - f.x, hi - f.y);
    *rest = *reinterpret_cast<const uint32_t *>(&r);
    return *reinterpret_cast<const uint32_t *>(&h);
}

template <int D, bool Q8>
__global__ void __launch_bounds__(MMA_MAXW * 32)
    mma_dec_kernel(rl__cu_attn a, int n_hgroups, int hpb, int8_t *xq, unsigned int *cnt, int pipe) {
    using S = mma_shape<D>;
    constexpr int LD = S::LD, KS = D / 16, CH = D / 8; /* k-steps of q k, 16-byte pieces a row */
    constexpr unsigned FULL = 0xffffffffu;
    extern __shared__ __align__(16) unsigned char vsm[];
    const int nw = (int)(blockDim.x >> 5), warp = (int)(threadIdx.x >> 5), lane = threadIdx.x & 31;
    const int gq = lane >> 2, tq = lane & 3; /* fragment row group, thread in group */
    const BlockAt at = block_at(a, n_hgroups);
    const int hg = at.hg, g = at.g;
    const int64_t t = at.t;
    const int split = blockIdx.y, ns = a.n_split;
    /* this piece of the token's span: n_split pieces of equal whole chunks; the span and the
     * first chunk's cell ids before the wait (vec_kernel's reasons) */
    const int32_t b = a.span[2 * t], e = a.span[2 * t + 1];
    const int64_t len = e > b ? (int64_t)e - b : 0;
    const int64_t plen = ((len + ns - 1) / ns + MMA_MC - 1) / MMA_MC * MMA_MC;
    const int64_t cb = (int64_t)b + (int64_t)split * plen;
    const int64_t ce = min((int64_t)e, cb + plen);
    const int64_t step = (int64_t)nw * MMA_MC;
    int64_t c = cb + (int64_t)warp * MMA_MC;
    int ids = c + lane < ce ? a.cells[c + lane] : 0; /* lane i: the cell of the chunk's row i */
    rlcu::pdl_enter();
    const int n_gqa = a.n_head / a.n_head_kv, h0 = hg * hpb, nh = min(hpb, n_gqa - h0);
    const int head0 = g * n_gqa + h0;
    const int nst = pipe & MMA_PIPE_ST; /* stages of the warp's ring */
    const bool l2 = (pipe & MMA_PIPE_L2) != 0, bulk = (pipe & MMA_PIPE_BULK) != 0;
    __half *tiles =
        reinterpret_cast<__half *>(vsm + (size_t)warp * nst * S::STAGE); /* [nst][K, V][MC][LD] */
    float *mw = reinterpret_cast<float *>(vsm + (size_t)nw * nst * S::STAGE); /* [nw][HC] */
    float *lw = mw + nw * HC;                                           /* [nw][HC] */
    /* bulk: this warp's stage barriers, and the parity each stage waits for next (bit st) */
    const uint32_t bar0 = smem_u32(reinterpret_cast<uint64_t *>(lw + nw * HC) + warp * MMA_MAXST);
    uint32_t ph = 0;
    if (bulk) {
        if (lane < nst) mbar_init(bar0 + 8u * (uint32_t)lane);
        rlcu::fence_mbar_init();
        __syncwarp();
    }

    /* the queries as B fragments (k = d, n = head gq): q scale (and log2 e) folded in, hi
     * and lo f16 pairs */
    const float qscale = a.softcap > 0.0f ? a.scale : a.scale * LOG2E;
    uint32_t qh[KS][2], ql[KS][2];
    {
        const bool hv = gq < nh;
        const float *qr = a.q + t * a.q_ld + (int64_t)(head0 + (hv ? gq : 0)) * D;
#pragma unroll
        for (int kk = 0; kk < KS; kk++)
#pragma unroll
            for (int r = 0; r < 2; r++) {
                const int d = kk * 16 + r * 8 + 2 * tq;
                const float x0 = hv ? qr[d] * qscale : 0.0f, x1 = hv ? qr[d + 1] * qscale : 0.0f;
                qh[kk][r] = pack_split(x0, x1, &ql[kk][r]);
            }
    }
    /* running maxima (log2 units) and sums of this lane's two heads 2 tq, 2 tq + 1 (l: this
     * lane's cells only), O^T accumulators: o[dm][r] is d = 16 dm + gq + 8 (r / 2), head
     * 2 tq + r % 2 */
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
    float o[KS][4];
#pragma unroll
    for (int i = 0; i < KS; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;

    const uint8_t *kt = static_cast<const uint8_t *>(a.k) + (size_t)g * D * sizeof(__half);
    const uint8_t *vt = static_cast<const uint8_t *>(a.v) + (size_t)g * D * sizeof(__half);
    /* the chunk at c (cell ids in cid, lane i row i) into stage st: rows past the piece
     * zero-filled (p = 0 must meet finite values) */
    auto issue = [&](int64_t c0, int cid, int st) {
        const int nv = (int)min((int64_t)MMA_MC, ce - c0);
        __half *kd = tiles + (size_t)st * 2 * MMA_MC * LD, *vd = kd + MMA_MC * LD;
        if (bulk) { /* lane r: row r's K and V rows, or zeros past the piece */
            const uint32_t bar = bar0 + 8u * (uint32_t)st;
            /* the ldmatrix reads of this stage's last chunk before the copy engine's writes */
            rlcu::fence_proxy_async();
            if (lane == 0) mbar_expect(bar, (uint32_t)nv * 2u * D * (uint32_t)sizeof(__half));
            __syncwarp();
            if (lane < nv) {
                bulk_g2s(smem_u32(kd + lane * LD), kt + (size_t)cid * a.k_row_bytes,
                         D * sizeof(__half), bar);
                bulk_g2s(smem_u32(vd + lane * LD), vt + (size_t)cid * a.v_row_bytes,
                         D * sizeof(__half), bar);
            } else {
                const uint4 z = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
                for (int p = 0; p < CH; p++) {
                    *reinterpret_cast<uint4 *>(kd + lane * LD + 8 * p) = z;
                    *reinterpret_cast<uint4 *>(vd + lane * LD + 8 * p) = z;
                }
            }
            return;
        }
#pragma unroll 4
        for (int i = lane; i < MMA_MC * CH; i += 32) {
            const int r = i / CH, p = i % CH;
            const int cell = __shfl_sync(FULL, cid, r);
            const int nb = r < nv ? 16 : 0;
            const size_t row = r < nv ? (size_t)cell : 0;
            cp16z(kd + r * LD + 8 * p, kt + row * a.k_row_bytes + 16 * p, nb, l2);
            cp16z(vd + r * LD + 8 * p, vt + row * a.v_row_bytes + 16 * p, nb, l2);
        }
    };
    /* the ring: the first nst - 1 chunks in flight, then each turn issues the chunk nst - 1
     * ahead (a group each, empty past the piece) and waits for the oldest; cn: the next chunk
     * to issue, ids its cell ids */
    int64_t cn = c;
    for (int j = 0; j < nst - 1; j++, cn += step) {
        if (cn < ce) issue(cn, ids, j);
        cp_commit();
        ids = cn + step + lane < ce ? a.cells[cn + step + lane] : 0;
    }
    int st = 0, sti = nst - 1; /* the stage computed, the stage issued */
    for (; c < ce; c += step, cn += step) {
        if (cn < ce) issue(cn, ids, sti);
        cp_commit();
        {
            const int64_t c2 = cn + step + lane; /* the cell ids of the chunk after */
            ids = c2 < ce ? a.cells[c2] : 0;
        }
        if (bulk) { /* the stage's bytes have landed (every lane sees its phase complete) */
            mbar_wait(bar0 + 8u * (uint32_t)st, (ph >> st) & 1u);
            ph ^= 1u << st;
        } else {
            cp_wait_n(nst - 1); /* this chunk's copies (this lane's) have landed */
        }
        __syncwarp();
        const int nv = (int)min((int64_t)MMA_MC, ce - c);
        const __half *kb = tiles + (size_t)st * 2 * MMA_MC * LD, *vb = kb + MMA_MC * LD;
        /* S^T = K Q^T: two m-tiles of 16 cells, hi and lo queries in separate sums */
        float s[2][4], sl[2][4];
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int r = 0; r < 4; r++) s[mt][r] = sl[mt][r] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < KS; kk++)
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                uint32_t ka[4];
                ldsm_x4(ka, kb + (mt * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
                mma16816(s[mt], ka, qh[kk][0], qh[kk][1]);
                mma16816(sl[mt], ka, ql[kk][0], ql[kk][1]);
            }
        /* scores (cell 16 mt + gq + 8 (r / 2), head 2 tq + r % 2): soft-cap, the mask of
         * rows past the piece, the heads' maxima over the chunk */
        float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
            for (int r = 0; r < 4; r++) {
                float x = s[mt][r] + sl[mt][r];
                if (a.softcap > 0.0f) x = a.softcap * tanhf(x / a.softcap) * LOG2E;
                x = mt * 16 + gq + 8 * (r >> 1) < nv ? x : -INFINITY;
                s[mt][r] = x;
                if (r & 1)
                    mx1 = fmaxf(mx1, x);
                else
                    mx0 = fmaxf(mx0, x);
            }
#pragma unroll
        for (int off = 4; off < 32; off <<= 1) {
            mx0 = fmaxf(mx0, __shfl_xor_sync(FULL, mx0, off));
            mx1 = fmaxf(mx1, __shfl_xor_sync(FULL, mx1, off));
        }
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        const float base0 = mn0 == -INFINITY ? 0.0f : mn0, base1 = mn1 == -INFINITY ? 0.0f : mn1;
        const float c0 = exp2f(m0 - base0), c1 = exp2f(m1 - base1);
        m0 = mn0;
        m1 = mn1;
        l0 *= c0;
        l1 *= c1;
#pragma unroll
        for (int i = 0; i < KS; i++) {
            o[i][0] *= c0;
            o[i][1] *= c1;
            o[i][2] *= c0;
            o[i][3] *= c1;
        }
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
            s[mt][0] = exp2f(s[mt][0] - base0);
            s[mt][1] = exp2f(s[mt][1] - base1);
            s[mt][2] = exp2f(s[mt][2] - base0);
            s[mt][3] = exp2f(s[mt][3] - base1);
            l0 += s[mt][0] + s[mt][2];
            l1 += s[mt][1] + s[mt][3];
        }
        /* O^T += V^T P^T: a k-step per m-tile of cells; P^T's B fragments are the score
         * fragments' 8x8 halves transposed, hi and lo */
#pragma unroll
        for (int mt = 0; mt < 2; mt++) {
            uint32_t r0, r1;
            const uint32_t x0 = pack_split(s[mt][0], s[mt][1], &r0); /* cells gq */
            const uint32_t x1 = pack_split(s[mt][2], s[mt][3], &r1); /* cells gq + 8 */
            const uint32_t bh0 = movtrans(x0), bh1 = movtrans(x1);
            const uint32_t bl0 = movtrans(r0), bl1 = movtrans(r1);
#pragma unroll
            for (int dm = 0; dm < KS; dm++) {
                uint32_t va[4];
                ldsm_x4_t(va, vb + (mt * 16 + ((lane >> 4) & 1) * 8 + (lane & 7)) * LD + dm * 16 +
                                  ((lane >> 3) & 1) * 8);
                mma16816(o[dm], va, bh0, bh1);
                mma16816(o[dm], va, bl0, bl1);
            }
        }
        __syncwarp(); /* every lane is done with this stage before it is loaded again */
        st = st + 1 == nst ? 0 : st + 1;
        sti = sti + 1 == nst ? 0 : sti + 1;
    }
    cp_commit(); /* nothing in flight past here (the last groups are empty) */
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");

    /* the warp's sums of its two heads over all its lanes' cells */
#pragma unroll
    for (int off = 4; off < 32; off <<= 1) {
        l0 += __shfl_xor_sync(FULL, l0, off);
        l1 += __shfl_xor_sync(FULL, l1, off);
    }
    if (gq == 0) {
        mw[warp * HC + 2 * tq] = m0;
        mw[warp * HC + 2 * tq + 1] = m1;
    }
    __syncthreads(); /* every warp is past its walk: red may overwrite the tiles */
    float *red = reinterpret_cast<float *>(vsm); /* [nw][HC][D] */
    {
        float M0 = -INFINITY, M1 = -INFINITY;
        for (int w = 0; w < nw; w++) {
            M0 = fmaxf(M0, mw[w * HC + 2 * tq]);
            M1 = fmaxf(M1, mw[w * HC + 2 * tq + 1]);
        }
        const float f0 = m0 == -INFINITY ? 0.0f : exp2f(m0 - M0);
        const float f1 = m1 == -INFINITY ? 0.0f : exp2f(m1 - M1);
        float *r0 = red + ((size_t)warp * HC + 2 * tq) * D, *r1 = r0 + D;
#pragma unroll
        for (int dm = 0; dm < KS; dm++) {
            r0[dm * 16 + gq] = o[dm][0] * f0;
            r1[dm * 16 + gq] = o[dm][1] * f1;
            r0[dm * 16 + gq + 8] = o[dm][2] * f0;
            r1[dm * 16 + gq + 8] = o[dm][3] * f1;
        }
        if (gq == 0) {
            lw[warp * HC + 2 * tq] = l0 * f0;
            lw[warp * HC + 2 * tq + 1] = l1 * f1;
        }
    }
    __syncthreads();
    vec_finish<D, Q8>(a, t, split, head0, nh, HC, red, mw, lw, LN2, xq, cnt, vsm, false);
}

/* ---- decode of one token over a short span (the "short" kernel) ----
 * At the spans of a chat's first few hundred tokens a decode step's attention is a chain of
 * latencies, not of bytes (1B shape at 128 cells: 256 KB of K/V rows in all, 8 blocks of the
 * vec kernel each walking its chunks in a serial chain, then the warps' merge). Here one
 * block of 256 threads serves one (token, KV head) with every query head of its GQA group
 * and the whole span in shared memory: the K and V rows of all its cells arrive together
 * (cp.async), then three short phases, each spread over the whole block, between barriers:
 * the scores S[h][c] = q_h . k_c (four lanes a cell, a quarter of the head each, their sums
 * joined by halving shuffles), the softmax of each head (a warp a head, exp(s - max) and
 * the sum), and O[h] = sum_c p[h][c] v_c / l_h (a thread per pair of value dimensions and
 * slice of the cells, the slices joined by halving shuffles); with Q8 the block's outputs
 * are also quantized in q8 blocks of 256 (attn_combine_q8_kernel's layout) for the product
 * after it. The arithmetic is float throughout; the sums' order is the block's own.
 * ROPE (the fuse pass's rope_kv joined to this launch, rl__cu_attn's rope_*): the block also
 * rotates its query heads and its KV head's k (bit for bit as rope_kv_kernel: each product
 * rounded on its own) and writes k and v to the token's cache row; every other row of the
 * span is then one only this launch writes (a step writes a layer's cache in its rope_kv
 * alone), so those rows are copied before the PDL wait, while the kernel before still runs,
 * and the rows of the token's own cell are filled from the block's fresh values. Without
 * ROPE the kernel before writes the token's row, so every copy waits.
 * Shared memory: K rows [cap][D + 32] and V rows [cap][D + 64 / RS] (f16; the paddings make
 * each phase's reads free of bank conflicts), scores [NH][cap], queries, the output and
 * 1 / l [NH][D], [NH][D], [NH], the rotation [D], cell ids and the token's rows [cap] each.
 * Measured and left out (H100, 2026-11-27, one call): 512 threads a block (the RoPE pass in
 * one round, the scores of up to 128 cells in one pass, half the cells a thread in P V; V rows
 * padded to 16 bytes): bench_cuda tg0 8B Q8_0 298.5, 299.1 against 299.5, 299.1; 8B Q4_K_M
 * 428.5, 428.9 against 424.6, 426.3; 1B 1,485, 1,501 against 1,488, 1,517; the attention part
 * of a layer (test_cuda_decode_attn's timing) 7.3-7.5 against 7.1-7.2 us at 64 cells and 8.1-8.3
 * against 8.5-8.8 at 128 (8B), 6.3 against 6.0-6.1 and 6.6 against 6.7-6.9 (1B). 1024 threads:
 * slower everywhere (295.5, 296.9; 414.7, 415.0; 1,446, 1,455). */
constexpr int SHORT_THREADS = 256;
constexpr int SHORT_MAX = 256; /* the longest span bucket the kernel takes */
constexpr int SHORT_LPC = 4;   /* lanes a cell's scores */

template <int D> struct short_shape {
    static constexpr int RS = SHORT_THREADS / (D / 2); /* cell slices of the p v sums */
    static constexpr int KLD = D + 32;                 /* halves a K row: rows 16 banks apart */
    static constexpr int VLD = D + 64 / RS; /* halves a V row: rows 32 / RS banks apart */
};

/* Shared bytes of a short block: heads NH, room for cap cells. */
size_t short_smem(int D, int cap) {
    const int RS = SHORT_THREADS / (D / 2), KLD = D + 32, VLD = D + 64 / RS, NH = HC;
    return (size_t)cap * (KLD + VLD) * sizeof(__half) +
           sizeof(float) * ((size_t)NH * cap + 2 * (size_t)NH * D + NH + D) +
           sizeof(int) * (2 * (size_t)cap + 4);
}

/* The sums of C values over the N lanes (N a power of two up to 32) that differ in the
 * lane bits below N, by halving: at each step a lane keeps half of its values (the upper
 * half where its lane bit is set) and adds its partner's values of that half, C - 1
 * shuffles where C >= N instead of C log2(N); past one value, plain butterfly steps. After
 * it, with C >= N lane l holds values (l % N) (C / N) + k in v[k], k < C / N; with C < N,
 * value (l % N) / (N / C) in v[0]. */
template <int C, int N> __device__ __forceinline__ void halving_sums(float (&v)[C], int lane) {
    int c = C;
#pragma unroll
    for (int o = N / 2; o > 0; o >>= 1) {
        if (c > 1) {
            const bool up = (lane & o) != 0;
#pragma unroll
            for (int i = 0; i < C / 2; i++) {
                if (i < c / 2) {
                    const float give = up ? v[i] : v[i + c / 2];
                    const float keep = up ? v[i + c / 2] : v[i];
                    v[i] = keep + __shfl_xor_sync(0xffffffffu, give, o);
                }
            }
            c >>= 1;
        } else {
            v[0] += __shfl_xor_sync(0xffffffffu, v[0], o);
        }
    }
}

template <int D, int NH, bool Q8, bool ROPE>
__global__ void __launch_bounds__(SHORT_THREADS) short_kernel(rl__cu_attn a, int8_t *xq) {
    using S = short_shape<D>;
    constexpr int NT = SHORT_THREADS, LPC = SHORT_LPC, KLD = S::KLD, VLD = S::VLD, RS = S::RS;
    constexpr int CH = D / 8;      /* 16-byte pieces a row */
    constexpr int PPL = CH / LPC;  /* of them a score lane's */
    constexpr int RPP = NT / LPC;  /* cells a pass of the scores */
    constexpr int DP = D / 2;      /* pairs of value dimensions */
    extern __shared__ __align__(16) unsigned char ssm[];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = (int)(blockIdx.x % a.n_head_kv);
    const int64_t t = blockIdx.x / a.n_head_kv;
    const int G = a.n_head / a.n_head_kv, head0 = g * G, cap = a.split_len;
    __half *ks = reinterpret_cast<__half *>(ssm);       /* [cap][KLD] */
    __half *vs = ks + (size_t)cap * KLD;                /* [cap][VLD] */
    float *sc = reinterpret_cast<float *>(vs + (size_t)cap * VLD); /* [NH][cap] scores, then p */
    float *qs = sc + (size_t)NH * cap;                  /* [NH][D] */
    float *ob = qs + NH * D;                            /* [NH][D] the output (Q8) */
    float *linv = ob + NH * D;                          /* [NH] 1 / l */
    float *tabs = linv + NH;                            /* [D] ROPE: cos, sin pairs */
    int *cid = reinterpret_cast<int *>(tabs + D);       /* [cap] the span's cells */
    int *nrow = cid + cap;                              /* [cap] ROPE: rows of the token's cell */
    int *nnew = nrow + cap;                             /* their count */

    /* before the wait: the span, its cell ids, the rotation (the step's arena, written by
     * no kernel) and with ROPE the rows of every other cell */
    const int32_t b = a.span[2 * t], e = a.span[2 * t + 1];
    const int L = e > b ? min(e - b, cap) : 0;
    const uint8_t *kt = static_cast<const uint8_t *>(a.k) + (size_t)g * D * sizeof(__half);
    const uint8_t *vt = static_cast<const uint8_t *>(a.v) + (size_t)g * D * sizeof(__half);
    int newcell = -1;
    if constexpr (ROPE) {
        newcell = a.rope_cell[t];
        for (int i = tid; i < a.rope_n_rot; i += NT) tabs[i] = a.rope_tab[t * a.rope_n_rot + i];
        if (tid == 0) *nnew = 0;
    }
    for (int r = tid; r < L; r += NT) cid[r] = a.cells[b + r];
    __syncthreads();
    auto copies = [&](bool skip_new) {
#pragma unroll 4
        for (int i = tid; i < L * CH; i += NT) {
            const int r = i / CH, p = i % CH;
            const int cell = cid[r];
            if (skip_new && cell == newcell) continue;
            cp16(ks + (size_t)r * KLD + 8 * p, kt + (size_t)cell * a.k_row_bytes + 16 * p);
            cp16(vs + (size_t)r * VLD + 8 * p, vt + (size_t)cell * a.v_row_bytes + 16 * p);
        }
        cp_commit();
    };
    if constexpr (ROPE) {
        copies(true);
        for (int r = tid; r < L; r += NT)
            if (cid[r] == newcell) nrow[atomicAdd(nnew, 1)] = r;
    }
    rlcu::pdl_enter();

    const float *qg = a.q + t * a.q_ld + (int64_t)head0 * D;
    if constexpr (ROPE) {
        /* a thread per pair: the G heads' q pairs, then k's, then v's (rope_kv_kernel's) */
        __syncthreads(); /* nrow, nnew */
        const int half = a.rope_n_rot / 2, nq = G * DP, nn = *nnew;
        float *kg = const_cast<float *>(a.rope_k) + t * a.rope_ld_k + (int64_t)g * D;
        const float *vg = a.rope_v + t * a.rope_ld_v + (int64_t)g * D;
        __half *krow = reinterpret_cast<__half *>(const_cast<void *>(a.k)) +
                       ((size_t)newcell * a.k_row_bytes) / sizeof(__half) + (size_t)g * D;
        __half *vrow = reinterpret_cast<__half *>(const_cast<void *>(a.v)) +
                       ((size_t)newcell * a.v_row_bytes) / sizeof(__half) + (size_t)g * D;
        for (int j = tid; j < nq + 2 * DP; j += NT) {
            if (j < nq + DP) {
                const bool isq = j < nq;
                const int jj = isq ? j : j - nq, h = jj / DP, i = jj % DP;
                const bool rot = i < half;
                int i0 = 2 * i, i1 = 2 * i + 1;
                float cs = 0.0f, sn = 0.0f;
                if (rot) {
                    cs = tabs[2 * i];
                    sn = tabs[2 * i + 1];
                    i0 = a.rope_neox ? i : 2 * i;
                    i1 = a.rope_neox ? i + half : 2 * i + 1;
                }
                float *xp = isq ? const_cast<float *>(qg) + (int64_t)h * D : kg;
                const float x0 = xp[i0], x1 = xp[i1];
                float y0 = x0, y1 = x1;
                if (rot) {
                    y0 = __fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn));
                    y1 = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs));
                    xp[i0] = y0;
                    xp[i1] = y1;
                }
                if (isq) {
                    qs[h * D + i0] = y0;
                    qs[h * D + i1] = y1;
                } else {
                    const __half h0 = __float2half_rn(y0), h1 = __float2half_rn(y1);
                    krow[i0] = h0;
                    krow[i1] = h1;
                    for (int n = 0; n < nn; n++) {
                        ks[(size_t)nrow[n] * KLD + i0] = h0;
                        ks[(size_t)nrow[n] * KLD + i1] = h1;
                    }
                }
            } else {
                const int i = j - nq - DP;
                const __half2 hv = __floats2half2_rn(vg[2 * i], vg[2 * i + 1]);
                *reinterpret_cast<__half2 *>(vrow + 2 * i) = hv;
                for (int n = 0; n < nn; n++)
                    *reinterpret_cast<__half2 *>(vs + (size_t)nrow[n] * VLD + 2 * i) = hv;
            }
        }
    } else {
        copies(false);
        for (int i = tid; i < G * D; i += NT) qs[i] = qg[i];
    }
    for (int i = G * D + tid; i < NH * D; i += NT) qs[i] = 0.0f; /* heads past G: zero scores */
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    __syncthreads();

    /* scores: four lanes a cell, lane sub the 16-byte pieces sub, sub + 4, ... of the row
     * (a quarter-warp's reads: two rows' 64 contiguous bytes, 16 banks apart) */
    const int sub = lane % LPC;
    for (int r0 = 0; r0 < L; r0 += RPP) {
        const int r = r0 + tid / LPC;
        const __half *kr = ks + (size_t)min(r, L - 1) * KLD;
        float sv[NH];
#pragma unroll
        for (int h = 0; h < NH; h++) sv[h] = 0.0f;
#pragma unroll
        for (int j = 0; j < PPL; j++) {
            const int p = j * LPC + sub;
            float kv[8];
            hload<8>(kr + 8 * p, kv);
#pragma unroll
            for (int h = 0; h < NH; h++) {
                const float4 x0 = *reinterpret_cast<const float4 *>(qs + h * D + 8 * p);
                const float4 x1 = *reinterpret_cast<const float4 *>(qs + h * D + 8 * p + 4);
                sv[h] += x0.x * kv[0] + x0.y * kv[1] + x0.z * kv[2] + x0.w * kv[3] +
                         x1.x * kv[4] + x1.y * kv[5] + x1.z * kv[6] + x1.w * kv[7];
            }
        }
        halving_sums<NH, LPC>(sv, lane);
        if (r < L) {
            /* KEEP heads a lane, or a head every SPREAD lanes */
            constexpr int KEEP = NH >= LPC ? NH / LPC : 1, SPREAD = NH >= LPC ? 1 : LPC / NH;
#pragma unroll
            for (int k = 0; k < KEEP; k++) {
                const int h = sub / SPREAD * KEEP + k;
                if (sub % SPREAD == 0) {
                    float x = sv[k] * a.scale;
                    if (a.softcap > 0.0f) x = tanhf(x / a.softcap) * a.softcap;
                    sc[(size_t)h * cap + r] = x;
                }
            }
        }
    }
    __syncthreads();

    /* softmax: a warp a head, a lane every 32nd cell; p replaces the score */
    for (int h = warp; h < G; h += NT / 32) {
        float x[SHORT_MAX / 32];
        float m = -INFINITY;
#pragma unroll
        for (int j = 0; j < SHORT_MAX / 32; j++) {
            const int r = lane + 32 * j;
            x[j] = r < L ? sc[(size_t)h * cap + r] : -INFINITY;
            m = fmaxf(m, x[j]);
        }
        m = warp_max(m);
        float l = 0.0f;
#pragma unroll
        for (int j = 0; j < SHORT_MAX / 32; j++) {
            const int r = lane + 32 * j;
            if (r < L) {
                const float p = expf(x[j] - m);
                sc[(size_t)h * cap + r] = p;
                l += p;
            }
        }
        l = warp_sum(l);
        if (lane == 0) linv[h] = l > 0.0f ? 1.0f / l : 0.0f;
    }
    __syncthreads();

    /* O = P V: thread (pair dp, slice rs) sums cells rs, rs + RS, ... of both dimensions for
     * every head, then the RS slices (lane bits below RS) are joined by halving */
    const int rs = tid % RS, dp = tid / RS;
    float o[2 * NH];
#pragma unroll
    for (int i = 0; i < 2 * NH; i++) o[i] = 0.0f;
#pragma unroll 4
    for (int r = rs; r < L; r += RS) {
        const float2 v =
            __half22float2(*reinterpret_cast<const __half2 *>(vs + (size_t)r * VLD + 2 * dp));
#pragma unroll
        for (int h = 0; h < NH; h++) {
            const float p = sc[(size_t)h * cap + r];
            o[2 * h] += p * v.x;
            o[2 * h + 1] += p * v.y;
        }
    }
    halving_sums<2 * NH, RS>(o, lane);
    {
        constexpr int KEEP = 2 * NH >= RS ? 2 * NH / RS : 1,
                      SPREAD = 2 * NH >= RS ? 1 : RS / (2 * NH);
#pragma unroll
        for (int k = 0; k < KEEP; k++) {
            const int idx = rs / SPREAD * KEEP + k;
            const int h = idx / 2, d = 2 * dp + idx % 2;
            if (rs % SPREAD == 0 && h < G) {
                const float val = o[k] * linv[h];
                a.out[t * a.out_ld + (int64_t)(head0 + h) * D + d] = val;
                if constexpr (Q8) ob[h * D + d] = val;
            }
        }
    }
    if constexpr (Q8) { /* G * D is a multiple of 256 here */
        __syncthreads();
        attn_out_q8(a, D, t, head0, ob, G * D, warp, NT / 32, lane, xq);
    }
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
/* The vec kernel: the most tokens it takes (H100, 8B shape, one layer, a token per
 * sequence: 32 x 640 cells 76 us there, 93 on the tensor cores; 64 x 640 157 / 228; 64 x
 * 2048 470 / 660; 32 x 2048 244 / 233), the shortest piece a span is cut into (pieces of
 * 128 cells: 8 x 640 32 us, 256: 36, 512: 34; a single token of the 1B over 256 cells 12.0
 * / 10.2 / 10.2, of the 8B over 4096 cells 23.8 / 22.1 / 33.3). */
constexpr int VEC_MAX_TOK = 64;
constexpr int VEC_PIECE = 256;
/* Without the merge in the kernel (RUVLLM_CUDA_ATTN_MERGE=0), a single token goes to the
 * vec kernel over spans of at least this many cells (rounded up to a power of two); with it,
 * every single token does (H100, one layer of the 8B shape, us, one launch vs the tiled
 * kernel and its combine: 16 cells 8.3 / 9.8, 256 cells 10.3 / 14.2, 1024 cells 14.0 / 19.4,
 * 4096 cells 18.7 / 18.0 on the vec kernel and the combine; the 1B shape: 16 cells 6.0 /
 * 8.9, 256 cells 7.2 / 12.2, 1024 cells 10.8 / 16.5). RUVLLM_CUDA_ATTN_VEC_1TOK sets both. */
constexpr int VEC_1TOK = 2048, VEC_1TOK_64 = 256;
int g_vec = 1, g_vec_max = VEC_MAX_TOK, g_vec_piece = VEC_PIECE, g_vec_1tok = VEC_1TOK,
    g_vec_1tok_64 = VEC_1TOK_64;
/* The latency of single tokens (RUVLLM_CUDA_ATTN_VEC_LAT=0: none of this, the path as it
 * was): a chunk's K rows waited for before its V rows (RUVLLM_CUDA_ATTN_VEC_KV2=0: together),
 * the in-kernel merge's values loaded with its weights, the warps' chunks' K/V rows fetched
 * to L2 before the PDL wait (up to g_vec_pf chunks a warp, RUVLLM_CUDA_ATTN_VEC_PF; default
 * 0: none), and a single token's span cut into pieces of g_vec_piece1 cells
 * (RUVLLM_CUDA_ATTN_VEC_PIECE1; other calls: g_vec_piece; 0: as many pieces as one wave of
 * the GPU holds, plan_one). H100, one layer, wall clock of 20 queued calls (us, VEC_LAT=0 ->
 * default): 8B shape, one token over 16 / 80 / 256 / 512 / 640 / 1024 / 4096 cells 6.4 /
 * 6.7 / 8.2 / 12.3 / 12.9 / 13.2 / 20.3 -> 6.5 / 6.8 / 7.8 / 11.7 / 12.0 / 12.2 / 18.8; 1B
 * shape 5.7 / 5.9 / 7.0 / 11.2 / 11.4 / 16.4 (16 / 80 / 256 / 640 / 1024 / 4096 cells) ->
 * 5.9 / 5.9 / 6.7 / 10.8 / 11.2 / 15.0; with KV2=0 the old figures (the gain is KV2's);
 * batched calls of the CUDA-core kernel (MMA=0) 8 x 640 26.8 -> 24.8, 32 x 640 56.8 -> 53.1.
 * Measured and left off: the L2 prefetch (no change in that timing, whose rows sit in L2, nor
 * in the 1B model's tg: 1,117 / 1,092 tok/s with 2 chunks, 1,127 / 1,100 without, noise);
 * pieces of 32 cells or plan_one (1B 1 x 16 5.9 -> 13.4, 1B tg0 1,300 -> 1,113: the merge
 * of pieces costs ~3-7 us, more than short spans gain from more SMs); pieces of 128 (8B
 * 1 x 512 11.7 -> 10.9, 1 x 640 / 1024 12.0 / 12.2 -> 12.0 / 12.0, but 1 x 256 7.8 -> 10.5,
 * 1 x 4096 18.8 -> 26.5). */
constexpr int VEC_PF = 0, VEC_PIECE1 = VEC_PIECE;
int g_vec_lat = 1, g_vec_pf = VEC_PF, g_vec_piece1 = VEC_PIECE1;
int g_vec_kv2 = 1; /* RUVLLM_CUDA_ATTN_VEC_KV2=0: a chunk's K and V rows waited for together */
int g_n_sm = 132; /* the device's SMs (rl__cu_init_attention) */

/* Whether the vec kernel can take a (F16, equal head sizes 64, 128 or 256, aligned rows). */
bool vec_ok(const rl__cu_attn *a) {
    const int d = a->head_dim_k;
    return g_vec && a->type == RL_TYPE_F16 && a->head_dim_v == d && (d == 64 || d == 128 || d == 256) &&
           a->n_head_kv > 0 && a->n_head % a->n_head_kv == 0 && a->k_row_bytes % 16 == 0 &&
           a->v_row_bytes % 16 == 0 && (uintptr_t)a->k % 16 == 0 && (uintptr_t)a->v % 16 == 0;
}

bool use_fattn(const rl__cu_attn *a) {
    if (g_fattn == 0 || !rl__cu_fattn_ok(a)) return false;
    if (g_fattn == 2) return true;
    const int sparse_min = vec_ok(a) ? g_vec_max : TILED_MAX_TOK;
    return a->dense ? a->n_tok >= g_fattn_min : g_fattn_sparse && a->n_tok > sparse_min;
}

/* Whether the plan gives a to the vec kernel: up to g_vec_max tokens the tensor-core kernel
 * does not take; a single token only over spans of g_vec_1tok cells or more (rounded up to
 * a power of two). */
bool plan_vec(const rl__cu_attn *a, int64_t maxlen_b) {
    return vec_ok(a) && a->n_tok <= g_vec_max && !use_fattn(a) &&
           (a->n_tok > 1 || maxlen_b >= (a->head_dim_k <= 64 ? g_vec_1tok_64 : g_vec_1tok));
}

bool use_vec(const rl__cu_attn *a) { return a->vec && vec_ok(a); }

/* The short kernel (short_kernel): single tokens over spans of up to g_short cells (the
 * plan's power of two; RUVLLM_CUDA_ATTN_SHORT=0: off, =64, 128 or 256: its longest span),
 * F16 caches with heads of 64 or 128, GQA groups of up to HC heads; g_short_rope: the fuse
 * pass may join the rope_kv launch before it (RUVLLM_CUDA_ATTN_ROPE=0: not). H100, us a
 * layer of RoPE, K/V write, attention and a 256-row Q4_K product of its output (graph
 * replays, test_cuda_decode_attn's timing), short kernel / without its RoPE join / off:
 * 1B shape, one token over 16, 64, 128, 256 cells 6.0 / 7.0 / 10.4, 6.1 / 7.2 / 10.7, 6.8 /
 * 8.1 / 10.8, 8.2 / 9.5 / 11.5; 8B shape 6.6 / 6.7 / 10.2, 6.5 / 7.8 / 10.6, 7.8 / 8.8 /
 * 10.6, 11.0 / 12.2 / 11.8; 640 and 4096 cells unchanged (other kernels). */
int g_short = SHORT_MAX, g_short_rope = 1;
size_t g_smem_max = 0; /* the opt-in shared memory a block may have (rl__cu_init_attention) */

bool short_ok(const rl__cu_attn *a) {
    const int d = a->head_dim_k;
    return g_short > 0 && a->type == RL_TYPE_F16 && a->head_dim_v == d && (d == 64 || d == 128) &&
           a->n_head_kv > 0 && a->n_head % a->n_head_kv == 0 && a->n_head / a->n_head_kv <= HC &&
           a->k_row_bytes % 16 == 0 && a->v_row_bytes % 16 == 0 && (uintptr_t)a->k % 16 == 0 &&
           (uintptr_t)a->v % 16 == 0;
}

bool use_short(const rl__cu_attn *a) {
    return a->shortk && short_ok(a) && a->n_split == 1 && a->split_len >= 64 &&
           a->split_len <= SHORT_MAX && a->split_len % 64 == 0;
}

/* Whether the short kernel's blocks write the q8 quantization: a block's G heads are whole
 * q8 blocks of 256 values. */
bool short_q8(const rl__cu_attn *a) {
    return (a->n_head / a->n_head_kv * a->head_dim_v) % 256 == 0;
}

/* The short kernel; xq: its output also quantized there (short_q8), or NULL. */
cudaError_t short_main(cudaStream_t s, const rl__cu_attn *a, int8_t *xq) {
    const int64_t nblk = (int64_t)a->n_tok * a->n_head_kv;
    if (nblk > 0x7fffffff || !use_short(a) || (xq && !short_q8(a))) return cudaErrorInvalidValue;
    const bool rope = a->rope_k != NULL;
    if (rope && (a->n_tok != 1 || a->rope_n_rot <= 0 || a->rope_n_rot % 2 ||
                 a->rope_n_rot > a->head_dim_k || !a->rope_v || !a->rope_tab || !a->rope_cell))
        return cudaErrorInvalidValue;
    const int G = a->n_head / a->n_head_kv, D = a->head_dim_k;
    const size_t smem = short_smem(D, a->split_len);
    const unsigned grid = (unsigned)nblk;
#define RL_SHORT_GO(d, nh)                                                                         \
    return xq ? (rope ? rlcu::launch(short_kernel<d, nh, true, true>, grid, SHORT_THREADS, smem,   \
                                     s, *a, xq)                                                    \
                      : rlcu::launch(short_kernel<d, nh, true, false>, grid, SHORT_THREADS, smem,  \
                                     s, *a, xq))                                                   \
              : (rope ? rlcu::launch(short_kernel<d, nh, false, true>, grid, SHORT_THREADS, smem,  \
                                     s, *a, xq)                                                    \
                      : rlcu::launch(short_kernel<d, nh, false, false>, grid, SHORT_THREADS, smem, \
                                     s, *a, xq))
#define RL_SHORT_NH(d)                                                                             \
    if (G <= 1) RL_SHORT_GO(d, 1);                                                                 \
    if (G <= 2) RL_SHORT_GO(d, 2);                                                                 \
    if (G <= 4) RL_SHORT_GO(d, 4);                                                                 \
    RL_SHORT_GO(d, 8)
    if (D == 64) {
        RL_SHORT_NH(64);
    }
    RL_SHORT_NH(128);
#undef RL_SHORT_NH
#undef RL_SHORT_GO
}

/* The tensor-core variant (mma_dec_kernel): RUVLLM_CUDA_ATTN_MMA=0 keeps every call on the
 * CUDA-core vec kernel; RUVLLM_CUDA_ATTN_MMA_MIN: the fewest tokens it takes;
 * RUVLLM_CUDA_ATTN_MMA_W: its warps a block (1, 2 or 4; default MMA_W). The plan records
 * it as a->vec = VEC_MMA + heads a block. */
constexpr int VEC_MMA = 16;
/* Defaults (H100, one layer of the 8B shape, us, blocks of 2 warps / 1 warp / the CUDA-core
 * kernel): 32 x 640 cells 43.7 / 44.4 / 55.1, 64 x 640 76.0 / 80.1 / 100.5, 8 x 640 17.2 /
 * 14.0 / 26.1, 32 x 64 8.0 / 22.2 / 10.9; single tokens lost on it (1 x 256 10.2 / 9.2 /
 * 8.1, 1 x 4096 29.9 / 14.2 / 18.4), so they stay on the CUDA cores (MMA_MIN). */
constexpr int MMA_W = 2, MMA_MIN = 2;
/* The warps' load rings (RUVLLM_CUDA_ATTN_MMA_NST stages, 2 to MMA_MAXST, at most MMA_MAXW x
 * 2 stages a block) and the L2::256B prefetch size of their copies (RUVLLM_CUDA_ATTN_MMA_L2);
 * RUVLLM_CUDA_ATTN_MMA_PIPE=0: two stages, MMA_W warps, no hint (the kernel as it was). */
/* Defaults: 3 stages with the hint (H100, one layer, wall clock of 20 queued calls, us, as
 * before (PIPE=0) -> 3 stages -> 3 stages + L2::256B; the 8B shape): 8 x 640 17.7 -> 16.5 ->
 * 16.7, 8 x 2048 41.3 -> 38.7 -> 38.2, 32 x 64 8.4 -> 7.5 -> 7.4, 32 x 640 46.3 -> 41.9 ->
 * 40.8, 32 x 2048 127.4 -> 116.7 -> 112.7, 64 x 640 82.8 -> 78.8 -> 77.4, 64 x 2048 241.8 ->
 * 228.4 -> 220.0; the 1B shape 8 x 640 13.8 -> 12.7, 32 x 640 27.0 -> 27.0, 32 x 2048 74.5
 * -> 70.7, 64 x 640 49.4 -> 45.9, 64 x 2048 141.6 -> 128.9 (PIPE=0 again at the end: 45.0 /
 * 81.1 at 8B 32 / 64 x 640). Measured and left off: 4 stages (2 warps: one block an SM;
 * 32 x 640 51.9), blocks of 1 warp (2 / 3 / 4 stages: 52.2 / 52.1 / 48.1 at 32 x 640, 86.5 /
 * 77.6 / 94.1 at 64 x 640), bulk copies (MMA_PIPE_BULK, RUVLLM_CUDA_ATTN_MMA_BULK=1: 2 warps
 * 2 / 3 stages 44.3 / 44.0 at 32 x 640, 92.5 / 82.7 at 64 x 640; 1 warp worse). Blocks of 4
 * warps (2 stages) won at 8 tokens (8 x 640 13.5, 8 x 2048 35.9) and lost at 64 x 640
 * (80.1): a per-call choice of the warps would need the plan to record them. */
constexpr int MMA_NST = 3, MMA_L2 = 1, MMA_BULK = 0;
int g_mma = 1, g_mma_min = MMA_MIN, g_mma_w = MMA_W, g_mma_nst = MMA_NST, g_mma_l2 = MMA_L2;
/* blocks an SM holds: D 64, 128 x 1, 2, 4 warps x 2, 3, 4 stages */
int g_mma_bps[2][3][MMA_MAXST - 1];

/* The stages of a block of nw warps: g_mma_nst, within the shared memory set up. */
int mma_nst(int nw) { return std::max(2, std::min(g_mma_nst, 2 * MMA_MAXW / nw)); }
int g_mma_bulk = 0; /* RUVLLM_CUDA_ATTN_MMA_BULK=1: rows by bulk copies (MMA_PIPE_BULK) */
int mma_pipe(int nw) {
    return mma_nst(nw) | (g_mma_l2 ? MMA_PIPE_L2 : 0) | (g_mma_bulk ? MMA_PIPE_BULK : 0);
}

bool plan_mma(const rl__cu_attn *a) {
    const int d = a->head_dim_k;
    return g_mma && (d == 64 || d == 128) && a->n_tok >= g_mma_min;
}
bool use_mma(const rl__cu_attn *a) { return a->vec > VEC_MMA && use_vec(a); }

/* The query heads of an mma block: the largest divisor of the GQA group up to HC (whole
 * groups split evenly, so every block's heads are one size). */
int mma_hpb(int n_gqa) {
    int h = std::min(n_gqa, HC);
    while (n_gqa % h) h--;
    return h;
}
int mma_bps(int d, int nw) {
    const int b = g_mma_bps[d > 64][nw >= 4 ? 2 : nw - 1][mma_nst(nw) - 2];
    return b > 0 ? b : 1;
}

/* RUVLLM_CUDA_ATTN_VEC_HPB: the fewest query heads a vec block may take (0: always up to
 * HC); the plan takes it where the call's blocks, pieces included, still fit the GPU in one
 * wave (H100, one layer of the 8B shape, us, HC heads a block vs 2: 1 token over 16 cells
 * 8.3 / 6.6, 256 cells 10.3 / 8.7, 1024 cells 14.0 / 12.7, 8 tokens over 64 cells 9.2 / 7.9;
 * over two waves it lost: 1 x 4096 cells 18.7 / 27.5, 4 x 640 16.4 / 22.2, 8 x 640 26.2 /
 * 32.4). */
int g_vec_hpb = 1;

/* The query heads of a vec block under RUVLLM_CUDA_ATTN_VEC_HPB: at least 256 values a block
 * (so a block still writes whole q8 blocks), groups of one size. */
int finer_hpb(const rl__cu_attn *a) {
    const int n_gqa = a->n_head / a->n_head_kv;
    int h = std::max(g_vec_hpb, 256 / a->head_dim_v);
    while (h < HC && n_gqa % h) h *= 2;
    return std::min(h, HC);
}

/* The query heads of a vec block: the plan's choice (a->vec), up to HC of a KV head's group;
 * fewer (finer_hpb) gives a warp less work and the call more SMs. */
int vec_hpb(const rl__cu_attn *a) {
    const int v = a->vec > VEC_MMA ? a->vec - VEC_MMA : a->vec;
    return v > 0 && v <= HC ? v : HC;
}

int vec_hgroups(const rl__cu_attn *a) {
    const int n_gqa = a->n_head / a->n_head_kv, h = vec_hpb(a);
    return (n_gqa + h - 1) / h;
}

/* Whether the vec kernel's blocks can write the q8 quantization themselves: a block's heads
 * (one group of a KV head's) are whole q8 blocks of 256 values. */
bool vec_q8_heads(const rl__cu_attn *a) {
    const int n_gqa = a->n_head / a->n_head_kv, h = std::min(vec_hpb(a), n_gqa);
    return n_gqa % h == 0 && (h * a->head_dim_v) % 256 == 0;
}

int g_merge = 1; /* RUVLLM_CUDA_ATTN_MERGE=0: the pieces of a vec call go through the combine */

/* The counters for merging a's pieces in the vec kernel itself, or NULL (the combine's
 * work): pieces, at most MERGE_MAX_SPLIT of them, at most RL_CU_ATTN_CNT blocks of (token,
 * KV head, head group). */
unsigned int *merge_cnt(const rl__cu_attn *a) {
    const int64_t nblk = (int64_t)a->n_tok * a->n_head_kv * vec_hgroups(a);
    if (!g_merge || !use_vec(a) || a->n_split < 2 || a->n_split > MERGE_MAX_SPLIT ||
        nblk > RL_CU_ATTN_CNT)
        return NULL;
    return a->cnt;
}

/* The vec kernel (the combine, if any, is the caller's); xq: the q8 output (one piece, or
 * merged in the kernel); cnt: the counters of the merge, NULL for none. */
cudaError_t vec_main(cudaStream_t s, const rl__cu_attn *a, int8_t *xq, unsigned int *cnt) {
    const int n_gqa = a->n_head / a->n_head_kv, hpb = vec_hpb(a);
    const int n_hgroups = (n_gqa + hpb - 1) / hpb;
    const int64_t nblk = (int64_t)a->n_tok * a->n_head_kv * n_hgroups;
    if (nblk > 0x7fffffff || a->n_split < 1 || a->n_split > RL_CU_ATTN_MAX_SPLIT)
        return cudaErrorInvalidValue;
    if (use_mma(a)) {
        const dim3 grid((unsigned)nblk, (unsigned)a->n_split);
        const int nw = g_mma_w, pipe = mma_pipe(nw), nst = pipe & MMA_PIPE_ST;
        const unsigned th = 32u * (unsigned)nw;
        if (a->head_dim_k == 64)
            return xq ? rlcu::launch(mma_dec_kernel<64, true>, grid, th, mma_smem<64>(nw, nst), s,
                                     *a, n_hgroups, hpb, xq, cnt, pipe)
                      : rlcu::launch(mma_dec_kernel<64, false>, grid, th, mma_smem<64>(nw, nst), s,
                                     *a, n_hgroups, hpb, xq, cnt, pipe);
        return xq ? rlcu::launch(mma_dec_kernel<128, true>, grid, th, mma_smem<128>(nw, nst), s, *a,
                                 n_hgroups, hpb, xq, cnt, pipe)
                  : rlcu::launch(mma_dec_kernel<128, false>, grid, th, mma_smem<128>(nw, nst), s,
                                 *a, n_hgroups, hpb, xq, cnt, pipe);
    }
    /* a warp per 32 cells of a piece, at most 8; 4 when the grid fills the GPU twice over
     * (a block of 8 warps holding their registers would leave an SM half of its warps) */
    const int D = a->head_dim_k;
    int64_t nw = std::min<int64_t>(vec_maxw(D), std::max<int64_t>(1, (a->split_len + 31) / 32));
    if (nblk * a->n_split >= 2 * (int64_t)g_n_sm) nw = std::min<int64_t>(nw, 4);
    const size_t smem = vec_smem(D, (int)nw);
    const dim3 grid((unsigned)nblk, (unsigned)a->n_split);
    const unsigned th = 32u * (unsigned)nw;
    const int hm = std::min(hpb, n_gqa); /* the registers' heads: hm rounded up to 1, 2, 4, 8 */
    const int lat =
        g_vec_lat ? std::min(g_vec_pf, VEC_LAT_PF) | VEC_LAT_MERGE | (g_vec_kv2 ? VEC_LAT_KV2 : 0)
                  : 0;
#define RL_VEC_GO(d, nh)                                                                           \
    return xq ? rlcu::launch(vec_kernel<d, nh, true>, grid, th, smem, s, *a, n_hgroups, hpb, xq,  \
                             cnt, lat)                                                          \
              : rlcu::launch(vec_kernel<d, nh, false>, grid, th, smem, s, *a, n_hgroups, hpb, xq,  \
                             cnt, lat)
#define RL_VEC_NH(d)                                                                               \
    if (hm <= 1) RL_VEC_GO(d, 1);                                                                  \
    if (hm <= 2) RL_VEC_GO(d, 2);                                                                  \
    if (hm <= 4) RL_VEC_GO(d, 4);                                                                  \
    RL_VEC_GO(d, 8)
    switch (D) {
    case 64:
        RL_VEC_NH(64);
    case 128:
        RL_VEC_NH(128);
    default:
        RL_VEC_NH(256);
    }
#undef RL_VEC_NH
#undef RL_VEC_GO
}

int64_t pow2_at_least(int64_t v, int64_t lo) {
    int64_t p = lo;
    while (p < v) p *= 2;
    return p;
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
    const char *vo = getenv("RUVLLM_CUDA_ATTN_VEC"), *vm = getenv("RUVLLM_CUDA_ATTN_VEC_MAX"),
               *vp = getenv("RUVLLM_CUDA_ATTN_VEC_PIECE");
    g_vec = !(vo && vo[0] == '0');
    const char *hp = getenv("RUVLLM_CUDA_ATTN_VEC_HPB");
    g_vec_hpb = hp ? atoi(hp) : 1;
    const char *mg = getenv("RUVLLM_CUDA_ATTN_MERGE");
    g_merge = !(mg && mg[0] == '0');
    g_vec_max = vm && atoi(vm) > 0 ? atoi(vm) : VEC_MAX_TOK;
    g_vec_piece = vp && atoi(vp) >= 32 ? atoi(vp) / 32 * 32 : VEC_PIECE;
    const char *vl = getenv("RUVLLM_CUDA_ATTN_VEC_LAT"), *vf = getenv("RUVLLM_CUDA_ATTN_VEC_PF"),
               *v1p = getenv("RUVLLM_CUDA_ATTN_VEC_PIECE1");
    g_vec_lat = !(vl && vl[0] == '0');
    const char *k2 = getenv("RUVLLM_CUDA_ATTN_VEC_KV2");
    g_vec_kv2 = !(k2 && k2[0] == '0');
    g_vec_pf = vf && atoi(vf) >= 0 ? atoi(vf) : VEC_PF;
    g_vec_piece1 = !g_vec_lat                    ? g_vec_piece
                   : v1p && v1p[0] == '0'        ? 0
                   : v1p && atoi(v1p) >= 32      ? atoi(v1p) / 32 * 32
                   : vp                          ? g_vec_piece
                                                 : VEC_PIECE1;
    const char *mo = getenv("RUVLLM_CUDA_ATTN_MMA"), *mn = getenv("RUVLLM_CUDA_ATTN_MMA_MIN"),
               *mw = getenv("RUVLLM_CUDA_ATTN_MMA_W");
    g_mma = !(mo && mo[0] == '0');
    g_mma_min = mn && atoi(mn) > 0 ? atoi(mn) : MMA_MIN;
    g_mma_w = mw && (atoi(mw) == 1 || atoi(mw) == 2 || atoi(mw) == 4) ? atoi(mw) : MMA_W;
    const char *ms = getenv("RUVLLM_CUDA_ATTN_MMA_NST"), *ml = getenv("RUVLLM_CUDA_ATTN_MMA_L2"),
               *mp = getenv("RUVLLM_CUDA_ATTN_MMA_PIPE");
    g_mma_nst = ms && atoi(ms) >= 2 && atoi(ms) <= MMA_MAXST ? atoi(ms) : MMA_NST;
    g_mma_l2 = ml ? ml[0] != '0' : MMA_L2;
    const char *mb = getenv("RUVLLM_CUDA_ATTN_MMA_BULK");
    g_mma_bulk = (mb ? mb[0] != '0' : MMA_BULK) && rlcu::g_sm90; /* bulk copies: sm_90 on */
    if (mp && mp[0] == '0') { /* the kernel and its plan as they were */
        g_mma_nst = 2;
        g_mma_l2 = 0;
        g_mma_bulk = 0;
        if (!mw) g_mma_w = 2;
    }
    const char *v1 = getenv("RUVLLM_CUDA_ATTN_VEC_1TOK");
    /* with the merge in the kernel, one launch for every single token */
    g_vec_1tok = v1 && atoi(v1) >= 0 ? atoi(v1) : g_merge ? 0 : VEC_1TOK;
    g_vec_1tok_64 = v1 && atoi(v1) >= 0 ? atoi(v1) : g_merge ? 0 : VEC_1TOK_64;
    int dev = 0, n_sm = 0;
    if (cudaGetDevice(&dev) == cudaSuccess &&
        cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && n_sm > 0)
        g_n_sm = n_sm;
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
#define RL_VEC_K(d, nh)                                                                            \
    {(const void *)vec_kernel<d, nh, false>, d}, { (const void *)vec_kernel<d, nh, true>, d }
#define RL_VEC_KD(d) RL_VEC_K(d, 1), RL_VEC_K(d, 2), RL_VEC_K(d, 4), RL_VEC_K(d, 8)
    const struct {
        const void *f;
        int d;
    } vk[] = {RL_VEC_KD(64), RL_VEC_KD(128), RL_VEC_KD(256)};
#undef RL_VEC_KD
#undef RL_VEC_K
    if (vec_smem(64, vec_maxw(64)) > smem_max || vec_smem(128, vec_maxw(128)) > smem_max ||
        vec_smem(256, vec_maxw(256)) > smem_max)
        g_vec = 0; /* tiles that do not fit: the other kernels only */
    for (size_t i = 0; i < sizeof vk / sizeof vk[0] && e == cudaSuccess && g_vec; i++)
        e = cudaFuncSetAttribute(vk[i].f, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)vec_smem(vk[i].d, vec_maxw(vk[i].d)));
    /* the mma variant: its tiles' limit, and the blocks an SM holds (the plan's waves) */
    const struct {
        const void *f;
        size_t smem;
        int d;
    } mk[] = {{(const void *)mma_dec_kernel<64, false>, mma_smem<64>(MMA_MAXW), 64},
              {(const void *)mma_dec_kernel<64, true>, mma_smem<64>(MMA_MAXW), 64},
              {(const void *)mma_dec_kernel<128, false>, mma_smem<128>(MMA_MAXW), 128},
              {(const void *)mma_dec_kernel<128, true>, mma_smem<128>(MMA_MAXW), 128}};
    if (mk[2].smem > smem_max) g_mma = 0;
    for (size_t i = 0; i < sizeof mk / sizeof mk[0] && e == cudaSuccess && g_vec && g_mma; i++)
        e = cudaFuncSetAttribute(mk[i].f, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)mk[i].smem);
    for (int di = 0; di < 2 && e == cudaSuccess && g_vec && g_mma; di++)
        for (int wi = 0; wi < 3 && e == cudaSuccess; wi++)
            for (int nst = 2; nst <= MMA_MAXST && e == cudaSuccess; nst++) {
                const int nw = 1 << wi, d = di ? 128 : 64;
                int n = 0;
                if (nw * nst <= 2 * MMA_MAXW)
                    e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(
                        &n, mk[2 * di].f, 32 * nw,
                        d == 64 ? mma_smem<64>(nw, nst) : mma_smem<128>(nw, nst));
                g_mma_bps[di][wi][nst - 2] = n > 0 ? n : 1;
            }
    const char *so = getenv("RUVLLM_CUDA_ATTN_SHORT"), *sr = getenv("RUVLLM_CUDA_ATTN_ROPE");
    g_short = !so ? SHORT_MAX : so[0] == '0' ? 0 : (int)pow2_at_least(atoi(so), 64);
    if (g_short > SHORT_MAX) g_short = SHORT_MAX;
    g_short_rope = !(sr && sr[0] == '0');
    g_smem_max = smem_max;
    if (short_smem(128, SHORT_MAX) > smem_max) g_short = 0; /* the other kernels only */
#define RL_SHORT_K(d, nh)                                                                          \
    (const void *)short_kernel<d, nh, false, false>,                                               \
        (const void *)short_kernel<d, nh, true, false>,                                            \
        (const void *)short_kernel<d, nh, false, true>, (const void *)short_kernel<d, nh, true, true>
    const void *sk64[] = {RL_SHORT_K(64, 1), RL_SHORT_K(64, 2), RL_SHORT_K(64, 4),
                          RL_SHORT_K(64, 8)};
    const void *sk128[] = {RL_SHORT_K(128, 1), RL_SHORT_K(128, 2), RL_SHORT_K(128, 4),
                           RL_SHORT_K(128, 8)};
#undef RL_SHORT_K
    for (size_t i = 0; i < sizeof sk64 / sizeof sk64[0] && e == cudaSuccess && g_short; i++) {
        e = cudaFuncSetAttribute(sk64[i], cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)short_smem(64, SHORT_MAX));
        if (e == cudaSuccess)
            e = cudaFuncSetAttribute(sk128[i], cudaFuncAttributeMaxDynamicSharedMemorySize,
                                     (int)short_smem(128, SHORT_MAX));
    }
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
    if (a->rope_k || use_short(a)) return short_main(s, a, NULL);
    if (use_fattn(a)) {
        cudaError_t e = rl__cu_fattn(s, a);
        if (e != cudaSuccess || a->fa_split <= 1) return e;
        rl__cu_attn c = *a;
        c.n_split = a->fa_split;
        (void)rlcu::launch(attn_combine_kernel, (unsigned)((int64_t)a->n_tok * a->n_head), THREADS,
                           0, s, c);
        return cudaGetLastError();
    }
    unsigned int *cnt = merge_cnt(a);
    cudaError_t e = use_vec(a) ? vec_main(s, a, NULL, cnt) : attn_main(s, a);
    if (e != cudaSuccess || a->n_split == 1 || cnt) return e;
    (void)rlcu::launch(attn_combine_kernel, (unsigned)((int64_t)a->n_tok * a->n_head), THREADS, 0, s, *a);
    return cudaGetLastError();
}

extern "C" bool rl__cu_attention_rope_ok(const rl__cu_attn *a) {
    return g_short_rope && use_short(a) && a->n_tok == 1 && a->rope_k && a->rope_v &&
           a->rope_n_rot > 0 && a->rope_n_rot % 2 == 0 && a->rope_n_rot <= a->head_dim_k;
}

extern "C" bool rl__cu_attention_q8_ok(const rl__cu_attn *a) {
    const int hdv = a->head_dim_v;
    if (a->n_tok <= 0 || !(hdv == 64 || hdv == 128 || hdv == 256) ||
        !rl__cu_xq_mode_ok(a->xq_mode) ||
        (rl__cu_xq_mmq(a->xq_mode) && a->n_tok < RL_CU_MMQ_MIN_N) || use_fattn(a) ||
        ((int64_t)a->n_head * hdv) % CQ_THREADS != 0 ||
        (int64_t)a->n_tok * a->n_head * hdv / CQ_THREADS > 0x7fffffff)
        return false;
    if (use_short(a)) return short_q8(a);
    return a->n_split > 1 || (use_vec(a) && vec_q8_heads(a));
}

extern "C" cudaError_t rl__cu_attention_q8(cudaStream_t s, const rl__cu_attn *a, void *xq) {
    if (a->n_tok <= 0) return cudaSuccess;
    if (!rl__cu_attention_q8_ok(a)) return cudaErrorInvalidValue;
    if (a->rope_k || use_short(a)) return short_main(s, a, static_cast<int8_t *>(xq));
    const bool vec = use_vec(a);
    if (vec && vec_q8_heads(a)) { /* one launch: one piece, or the pieces merged in it */
        unsigned int *cnt = a->n_split == 1 ? NULL : merge_cnt(a);
        if (a->n_split == 1 || cnt) return vec_main(s, a, static_cast<int8_t *>(xq), cnt);
    }
    cudaError_t e = vec ? vec_main(s, a, NULL, NULL) : attn_main(s, a);
    if (e != cudaSuccess) return e;
    const int64_t blocks = (int64_t)a->n_tok * a->n_head * a->head_dim_v / CQ_THREADS;
    (void)rlcu::launch(attn_combine_q8_kernel, (unsigned)blocks, CQ_THREADS, 0, s, *a,
                       static_cast<int8_t *>(xq));
    return cudaGetLastError();
}

/* Pieces: the CUDA-core kernels cut each token's span into n_split pieces when there are
 * fewer (token, head group) blocks than twice the SMs (pieces of at least 32 cells, the
 * vec kernel's of g_vec_piece); the tensor-core kernel's blocks ((token, head) rows x KV
 * heads) times pieces of at least 64 cells of the longest union fill the GPU twice; both
 * within ws. Lengths are taken from powers of two of the longest span, so the records of
 * consecutive decode steps are equal and replay as one graph until the context crosses
 * the next power of two. */
extern "C" void rl__cu_attn_plan(rl__cu_attn *a, int32_t maxlen, int64_t umax, int n_sm,
                                 size_t ws_bytes) {
    const int64_t maxlen_b = pow2_at_least(maxlen, 64);
    const int n_gqa = a->n_head / a->n_head_kv;
    a->shortk = 0;
    if (a->n_tok == 1 && short_ok(a) && maxlen_b <= g_short && !use_fattn(a) &&
        short_smem(a->head_dim_k, (int)maxlen_b) <= g_smem_max) {
        /* one block per KV head, the span whole (short_kernel) */
        a->shortk = 1;
        a->vec = 0;
        a->n_split = 1;
        a->split_len = (int32_t)maxlen_b;
        a->fa_split = 1;
        return;
    }
    a->vec = plan_vec(a, maxlen_b) ? HC : 0; /* the vec kernel's query heads a block */
    const int64_t target = 2 * (int64_t)n_sm;
    const size_t per_split =
        (size_t)a->n_tok * (size_t)a->n_head * (size_t)(a->head_dim_v + 2) * sizeof(float);
    const int64_t ws_max =
        std::min<int64_t>((int64_t)(ws_bytes / per_split), RL_CU_ATTN_MAX_SPLIT);
    const int64_t piece = !use_vec(a) ? 32 : a->n_tok == 1 ? g_vec_piece1 : g_vec_piece;
    const int64_t fa_blocks =
        ((int64_t)a->n_tok * n_gqa + RL_CU_FATTN_ROWS - 1) / RL_CU_FATTN_ROWS * a->n_head_kv;
    int64_t fa_split = 1;
    if (fa_blocks < target && umax > 64)
        fa_split = std::min((target + fa_blocks - 1) / fa_blocks, (umax + 63) / 64);
    fa_split = std::min(fa_split, ws_max);
    a->fa_split = (int32_t)std::max<int64_t>(fa_split, 1);
    if (use_vec(a) && plan_mma(a)) {
        /* the mma variant: pieces (cut from each token's own span in the kernel) so that the
         * call's blocks fill the GPU once at most, a chunk a warp at least; one piece when the
         * blocks alone fill it (no merge) */
        const int h = mma_hpb(n_gqa), nw = g_mma_w;
        const int64_t nblk = (int64_t)a->n_tok * a->n_head_kv * (n_gqa / h);
        const int64_t slots = (int64_t)n_sm * mma_bps(a->head_dim_k, nw);
        const int64_t chunks = (maxlen_b + MMA_MC - 1) / MMA_MC;
        int64_t n = 1;
        if (nblk < slots) n = std::min(slots / nblk, std::max<int64_t>(1, chunks / nw));
        n = std::max<int64_t>(1, std::min<int64_t>(n, std::min<int64_t>(ws_max, MERGE_MAX_SPLIT)));
        a->vec = VEC_MMA + h;
        a->n_split = (int32_t)n;
        a->split_len = (int32_t)(((maxlen_b + n - 1) / n + MMA_MC - 1) / MMA_MC * MMA_MC);
        return;
    }
    if (use_vec(a) && a->n_tok == 1 && g_vec_piece1 == 0) {
        /* plan_one: a single token's blocks (the fewer heads a block, as below) times pieces
         * of a power of two fill one wave at most, pieces of a chunk at least: the KV rows a
         * block brings to its SM (its time, at L2's bandwidth to one SM) as few as the GPU
         * allows, every chunk in flight at once */
        const int64_t nmax = std::min<int64_t>(ws_max, MERGE_MAX_SPLIT);
        auto pieces = [&](int h) {
            const int64_t b = (int64_t)a->n_head_kv * ((n_gqa + h - 1) / h);
            int64_t n = 1;
            while (2 * n * b <= n_sm && 2 * n * CHUNK <= maxlen_b && 2 * n <= nmax) n *= 2;
            return n;
        };
        /* the fewer heads, unless their pieces leave a warp more than one chunk where a
         * block of HC heads does not */
        int h = g_vec_hpb > 0 ? finer_hpb(a) : HC;
        int64_t n = pieces(h);
        if (maxlen_b / n > (int64_t)CHUNK * VEC_MAXW && h < HC && pieces(HC) > n) {
            h = HC;
            n = pieces(HC);
        }
        a->vec = h;
        a->n_split = (int32_t)n;
        a->split_len = (int32_t)(maxlen_b / n);
        return;
    }
    /* the pieces for `blocks` blocks, and their length */
    auto splits = [&](int64_t blocks, int64_t *len) {
        int64_t n = 1;
        if (blocks < target && maxlen_b > piece)
            n = std::min((target + blocks - 1) / blocks, (maxlen_b + piece - 1) / piece);
        n = std::max<int64_t>(1, std::min(n, ws_max));
        *len = std::max<int64_t>(maxlen_b, 1);
        if (n > 1) {
            *len = ((maxlen_b + n - 1) / n + 31) / 32 * 32;
            n = (maxlen_b + *len - 1) / *len;
        }
        return n;
    };
    const int64_t per_hg = (int64_t)a->n_tok * a->n_head_kv;
    int64_t split_len = 0, n_split = splits(per_hg * ((n_gqa + HC - 1) / HC), &split_len);
    if (use_vec(a) && g_vec_hpb > 0) { /* fewer heads a block where that stays one wave */
        const int h = finer_hpb(a);
        int64_t len2 = 0;
        const int64_t b2 = per_hg * ((n_gqa + h - 1) / h), n2 = splits(b2, &len2);
        if (h < std::min(HC, n_gqa) && b2 * n2 <= n_sm) {
            a->vec = h;
            n_split = n2;
            split_len = len2;
        }
    }
    a->n_split = (int32_t)n_split;
    a->split_len = (int32_t)split_len;
}
