/*
 * fattn.cu - attention of many query tokens on the f16 tensor cores (FlashAttention-2, Dao
 * 2023): the attention op of backend.h for F16 caches whose tokens share most of their
 * cells (prefill), head sizes 64, 80, 96, 112, 128 and 256 (head_dim_k == head_dim_v).
 *
 * Rows: a block of 4 warps takes 64 query rows of one KV head g, a row being a (token,
 * query head of g's GQA group) pair in token-major order, so the group's heads share every
 * K/V tile they load (16 tokens x 4 heads for Llama-3-8B). Each warp owns 16 rows.
 *
 * Per tile of BC cells of the rows' union of spans (of the call's cell list):
 * the tile's K and V rows are gathered by cell id into shared memory with cp.async (two
 * stages: the next tile streams in while this one computes); S = Q K^T with mma.sync
 * m16n8k16 (f16 operands, f32 accumulators; PTX ISA "Matrix Fragments for mma.m16n8k16"),
 * operands through ldmatrix (V with .trans); each cell j is visible to a row of token t iff
 * span[2t] <= j < span[2t+1] (causal masks and sliding windows are only spans); the online
 * softmax (running max m and sum l per row, in log2 units: q is pre-scaled by
 * scale * log2(e), exp2f) rescales the f32 output accumulators; P is rounded to f16 and
 * multiplied by V from the same accumulator registers (the C fragment of two n-tiles is
 * the A fragment of one k-step). Tiles no row of the block sees are skipped, a warp skips
 * the arithmetic of tiles none of its rows sees; rows that see no cell give zeros.
 * Only cells some row sees are read (the block's spans merged into sorted intervals
 * first): list entries between sequences may be anything (context.c leaves them unset);
 * the other rows of a tile are zero-filled, so P = 0 meets V = 0, never a NaN.
 * Soft-cap (gemma2): s = c tanh(s / c) on the scaled score, then the log2 scale.
 *
 * Pieces (flash-decoding, Dao et al. 2023): with few blocks (a short prompt over a long
 * context, or batched decode, where a block's tokens belong to different sequences and its
 * union is their spans side by side) the union is cut into gridDim.z pieces of whole tiles;
 * each block writes its rows' (m, l, acc) to the workspace and attention.cu's combine
 * kernel merges them.
 *
 * Differences from the CUDA-core kernel (attention.cu): q and p rounded to f16 (nmse about
 * 1e-7 against float attention).
 *
 * Shared memory (f16, rows padded by 8 values so ldmatrix's 8 row addresses fall in
 * different banks): Q [64][D+8], K and V [2][BC][D+8], then the rows' spans and the merged
 * intervals.
 */
#include "cuda_impl.h"
#include "launch.cuh"
#include "mma.cuh"

#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

namespace {

constexpr int FA_WARPS = 4;
constexpr int FA_THREADS = 32 * FA_WARPS;
constexpr int FA_ROWS = RL_CU_FATTN_ROWS;
static_assert(FA_ROWS == 16 * FA_WARPS, "a warp takes 16 rows");
constexpr float LOG2E = 1.4426950408889634f;
constexpr float LN2 = 0.6931471805599453f;

template <int D> struct fa_shape {
    static constexpr int BC = D <= 128 ? 64 : 32; /* cells per tile */
    static constexpr int LD = D + 8;              /* halves per shared row */
    static constexpr int CH = D / 8;              /* 16-byte chunks per row */
    static constexpr size_t SMEM =
        sizeof(__half) * (size_t)LD * (FA_ROWS + 4 * BC) + sizeof(int) * 4 * FA_ROWS;
};

using rlcu::ldsm_x4;
using rlcu::ldsm_x4_t;
using rlcu::mma16816;
using rlcu::smem_u32;

/* 16 bytes global -> shared, zero-filled when bytes == 0. */
__device__ __forceinline__ void cp16(void *dst, const void *src, int bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp_wait1() { asm volatile("cp.async.wait_group 1;\n" ::: "memory"); }

__device__ __forceinline__ uint32_t pack_h2(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi); /* lo in the low 16 bits */
    return *reinterpret_cast<const uint32_t *>(&h);
}

/* Does any of the block's rows see a cell of [j, j + n)? (all threads agree) */
__device__ __forceinline__ bool tile_seen(const int *sb, const int *se, int j, int n, int lane) {
    const bool p = (sb[lane] < j + n && se[lane] > j) ||
                   (sb[lane + 32] < j + n && se[lane + 32] > j);
    return __any_sync(0xffffffffu, p);
}

template <int D>
__global__ void __launch_bounds__(FA_THREADS) fattn_kernel(rl__cu_attn a) {
    using S = fa_shape<D>;
    constexpr int BC = S::BC, LD = S::LD, CH = S::CH, NT = BC / 8, ND = D / 8;
    rlcu::pdl_enter();
    extern __shared__ __align__(16) unsigned char fa_sm[];
    __half *qs = reinterpret_cast<__half *>(fa_sm); /* [FA_ROWS][LD] */
    __half *ks = qs + FA_ROWS * LD;                 /* [2][BC][LD] */
    __half *vs = ks + 2 * BC * LD;                  /* [2][BC][LD] */
    int *sb = reinterpret_cast<int *>(vs + 2 * BC * LD); /* [FA_ROWS] first visible cell */
    int *se = sb + FA_ROWS;                              /* [FA_ROWS] end of the span */
    int *ivb = se + FA_ROWS, *ive = ivb + FA_ROWS; /* [n_iv] the union of spans, sorted */

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int G = a.n_head / a.n_head_kv;
    const int64_t nrows = (int64_t)a.n_tok * G;
    const int nrb = (int)((nrows + FA_ROWS - 1) / FA_ROWS);
    const int rb = nrb - 1 - (int)blockIdx.x; /* later tokens (longer causal spans) first */
    const int g = blockIdx.y;
    const int64_t row0 = (int64_t)rb * FA_ROWS;

    /* the rows' spans; empty ones never match */
    if (tid < FA_ROWS) {
        int b = 0x7fffffff, e = 0;
        const int64_t f = row0 + tid;
        if (f < nrows) {
            const int64_t t = f / G;
            const int sb0 = a.span[2 * t], se0 = a.span[2 * t + 1];
            if (se0 > sb0) {
                b = sb0;
                e = se0;
            }
        }
        sb[tid] = b;
        se[tid] = e;
    }
    /* q pre-scaled, as f16: a warp per row, lanes along it */
    const float qscale = a.softcap > 0.0f ? a.scale : a.scale * LOG2E;
    for (int r = warp; r < FA_ROWS; r += FA_WARPS) {
        const int64_t f = row0 + r;
        const float *q = NULL;
        if (f < nrows) q = a.q + (f / G) * a.q_ld + (int64_t)(g * G + (int)(f % G)) * D;
        for (int d = 2 * lane; d < D; d += 64) {
            const float x = q ? q[d] * qscale : 0.0f, y = q ? q[d + 1] * qscale : 0.0f;
            *reinterpret_cast<__half2 *>(qs + r * LD + d) = __floats2half2_rn(x, y);
        }
    }
    __syncthreads();
    /* the union of the rows' spans as sorted disjoint intervals, a thread per row: a span
     * begins an interval unless another span covers its first cell (or touches it; equal
     * spans: the first row's), it ends one unless another covers its end; the k-th
     * beginning pairs with the k-th end */
    bool ib = false, ie = false;
    if (tid < FA_ROWS) {
        const int b = sb[tid], e = se[tid];
        ib = ie = e > b;
        for (int r = 0; r < FA_ROWS; r++) {
            const int br = sb[r], er = se[r];
            if ((br < b && b <= er) || (br == b && r < tid)) ib = false;
            if ((br <= e && e < er) || (er == e && r < tid)) ie = false;
        }
        ivb[tid] = ib; /* flags first */
        ive[tid] = ie;
    }
    const int n_iv = __syncthreads_count(ib);
    int rank_b = 0, rank_e = 0;
    if (tid < FA_ROWS) {
        for (int r = 0; r < FA_ROWS; r++) {
            rank_b += ivb[r] && sb[r] < sb[tid];
            rank_e += ive[r] && se[r] < se[tid];
        }
    }
    __syncthreads();
    if (ib) ivb[rank_b] = sb[tid];
    if (ie) ive[rank_e] = se[tid];
    __syncthreads();
    const int ulo = n_iv ? ivb[0] : 0, uhi = n_iv ? ive[n_iv - 1] : 0;
    /* this block's piece of the union: pieces of whole tiles */
    const int n_split = gridDim.z, split = blockIdx.z;
    const int plen = ((uhi - ulo + n_split - 1) / n_split + BC - 1) / BC * BC;
    const int lo = min(uhi, ulo + split * plen), hi = min(uhi, lo + plen);
    /* does a row of the block see cell x of the list? */
    auto seen = [&](int x) {
        for (int k = 0; k < n_iv && ivb[k] <= x; k++)
            if (x < ive[k]) return true;
        return false;
    };
    /* this lane's two rows (C fragment rows lane / 4 and lane / 4 + 8 of its warp) */
    const int r0 = warp * 16 + (lane >> 2), r1 = r0 + 8;
    const int b0 = sb[r0], e0 = se[r0], b1 = sb[r1], e1 = se[r1];

    const uint8_t *kt = static_cast<const uint8_t *>(a.k) + (size_t)g * D * sizeof(__half);
    const uint8_t *vt = static_cast<const uint8_t *>(a.v) + (size_t)g * D * sizeof(__half);
    auto load_tile = [&](int j, int buf) {
        __half *kd = ks + buf * BC * LD, *vd = vs + buf * BC * LD;
        for (int c = tid; c < BC * CH; c += FA_THREADS) {
            const int i = c / CH, p = c % CH;
            const bool in = j + i < hi && seen(j + i);
            const size_t cell = in ? (size_t)a.cells[j + i] : 0;
            cp16(kd + i * LD + 8 * p, kt + cell * a.k_row_bytes + 16 * p, in ? 16 : 0);
            cp16(vd + i * LD + 8 * p, vt + cell * a.v_row_bytes + 16 * p, in ? 16 : 0);
        }
    };

    float o[ND][4];
#pragma unroll
    for (int n = 0; n < ND; n++) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
    float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

    int j = lo;
    while (j < hi && !tile_seen(sb, se, j, BC, lane)) j += BC;
    if (j < hi) load_tile(j, 0);
    cp_commit();
    int buf = 0;
    while (j < hi) {
        int jn = j + BC;
        while (jn < hi && !tile_seen(sb, se, jn, BC, lane)) jn += BC;
        if (jn < hi) load_tile(jn, buf ^ 1);
        cp_commit();
        cp_wait1(); /* tile j has landed (this thread's part) */
        __syncthreads();

        const bool mine = __any_sync(0xffffffffu, (b0 < j + BC && e0 > j) || (b1 < j + BC && e1 > j));
        if (mine) {
            const __half *kb = ks + buf * BC * LD, *vb = vs + buf * BC * LD;
            float s[NT][4];
#pragma unroll
            for (int n = 0; n < NT; n++) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
            /* S = Q K^T */
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                uint32_t qa[4];
                ldsm_x4(qa, qs + (warp * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
#pragma unroll
                for (int np = 0; np < NT / 2; np++) {
                    uint32_t kb4[4];
                    ldsm_x4(kb4, kb + (np * 16 + (lane & 7) + (lane >> 4) * 8) * LD + kk * 16 +
                                     ((lane >> 3) & 1) * 8);
                    mma16816(s[2 * np], qa, kb4[0], kb4[1]);
                    mma16816(s[2 * np + 1], qa, kb4[2], kb4[3]);
                }
            }
            /* soft-cap, mask, row maxima */
            float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
            for (int n = 0; n < NT; n++) {
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int jc = j + n * 8 + 2 * (lane & 3) + (e & 1);
                    float x = s[n][e];
                    if (a.softcap > 0.0f) x = a.softcap * tanhf(x / a.softcap) * LOG2E;
                    const bool vis = e < 2 ? (jc >= b0 && jc < e0) : (jc >= b1 && jc < e1);
                    x = vis ? x : -INFINITY;
                    s[n][e] = x;
                    if (e < 2)
                        mx0 = fmaxf(mx0, x);
                    else
                        mx1 = fmaxf(mx1, x);
                }
            }
#pragma unroll
            for (int off = 1; off < 4; off <<= 1) {
                mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, off));
                mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, off));
            }
            const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
            const float base0 = mn0 == -INFINITY ? 0.0f : mn0;
            const float base1 = mn1 == -INFINITY ? 0.0f : mn1;
            const float c0 = exp2f(m0 - base0), c1 = exp2f(m1 - base1);
            m0 = mn0;
            m1 = mn1;
            l0 *= c0;
            l1 *= c1;
#pragma unroll
            for (int n = 0; n < ND; n++) {
                o[n][0] *= c0;
                o[n][1] *= c0;
                o[n][2] *= c1;
                o[n][3] *= c1;
            }
#pragma unroll
            for (int n = 0; n < NT; n++) {
                s[n][0] = exp2f(s[n][0] - base0);
                s[n][1] = exp2f(s[n][1] - base0);
                s[n][2] = exp2f(s[n][2] - base1);
                s[n][3] = exp2f(s[n][3] - base1);
                l0 += s[n][0] + s[n][1];
                l1 += s[n][2] + s[n][3];
            }
            /* O += P V: k-steps of 16 cells, n-tiles of 8 value dimensions */
#pragma unroll
            for (int kc = 0; kc < BC / 16; kc++) {
                uint32_t pa[4];
                pa[0] = pack_h2(s[2 * kc][0], s[2 * kc][1]);
                pa[1] = pack_h2(s[2 * kc][2], s[2 * kc][3]);
                pa[2] = pack_h2(s[2 * kc + 1][0], s[2 * kc + 1][1]);
                pa[3] = pack_h2(s[2 * kc + 1][2], s[2 * kc + 1][3]);
#pragma unroll
                for (int dp = 0; dp < D / 16; dp++) {
                    uint32_t vb4[4];
                    ldsm_x4_t(vb4, vb + (kc * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD +
                                       dp * 16 + (lane >> 4) * 8);
                    mma16816(o[2 * dp], pa, vb4[0], vb4[1]);
                    mma16816(o[2 * dp + 1], pa, vb4[2], vb4[3]);
                }
            }
        }
        __syncthreads(); /* everyone is done with buf before it is loaded again */
        j = jn;
        buf ^= 1;
    }

#pragma unroll
    for (int off = 1; off < 4; off <<= 1) {
        l0 += __shfl_xor_sync(0xffffffffu, l0, off);
        l1 += __shfl_xor_sync(0xffffffffu, l1, off);
    }
    const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
#pragma unroll
    for (int half = 0; half < 2; half++) {
        const int64_t f = row0 + (half ? r1 : r0);
        if (f >= nrows) continue;
        const int64_t t = f / G;
        const int h = g * G + (int)(f % G);
        if (n_split == 1) {
            float *out = a.out + t * a.out_ld + (int64_t)h * D + 2 * (lane & 3);
            const float inv = half ? inv1 : inv0;
#pragma unroll
            for (int n = 0; n < ND; n++) {
                out[8 * n] = o[n][2 * half] * inv;
                out[8 * n + 1] = o[n][2 * half + 1] * inv;
            }
        } else { /* the piece's (m, l, acc) for attention.cu's combine; m in natural units */
            float *w = a.ws + (((size_t)t * a.n_head + h) * n_split + split) * (size_t)(D + 2);
            if ((lane & 3) == 0) {
                w[0] = (half ? m1 : m0) * LN2;
                w[1] = half ? l1 : l0;
            }
            w += 2 + 2 * (lane & 3);
#pragma unroll
            for (int n = 0; n < ND; n++) {
                w[8 * n] = o[n][2 * half];
                w[8 * n + 1] = o[n][2 * half + 1];
            }
        }
    }
}

template <int D> const void *fattn_fn() { return (const void *)fattn_kernel<D>; }

} // namespace

extern "C" bool rl__cu_fattn_ok(const rl__cu_attn *a) {
    const int d = a->head_dim_k;
    if (a->type != RL_TYPE_F16 || a->head_dim_v != d || a->n_tok <= 0 || a->n_head_kv <= 0 ||
        a->n_head % a->n_head_kv)
        return false;
    if (d != 64 && d != 80 && d != 96 && d != 112 && d != 128 && d != 256) return false;
    const int64_t nrb = ((int64_t)a->n_tok * (a->n_head / a->n_head_kv) + FA_ROWS - 1) / FA_ROWS;
    return nrb <= 0x7fffffff && a->n_head_kv <= 65535 && a->k_row_bytes % 16 == 0 &&
           a->v_row_bytes % 16 == 0 && (uintptr_t)a->k % 16 == 0 && (uintptr_t)a->v % 16 == 0;
}

extern "C" cudaError_t rl__cu_fattn_init(void) {
    cudaError_t e = cudaFuncSetAttribute(fattn_fn<64>(), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)fa_shape<64>::SMEM);
#define RL_FA_ATTR(d)                                                                              \
    if (e == cudaSuccess)                                                                          \
    e = cudaFuncSetAttribute(fattn_fn<d>(), cudaFuncAttributeMaxDynamicSharedMemorySize,           \
                             (int)fa_shape<d>::SMEM)
    RL_FA_ATTR(80);
    RL_FA_ATTR(96);
    RL_FA_ATTR(112);
    RL_FA_ATTR(128);
    RL_FA_ATTR(256);
#undef RL_FA_ATTR
    return e;
}

extern "C" cudaError_t rl__cu_fattn(cudaStream_t s, const rl__cu_attn *a) {
    if (a->n_tok <= 0) return cudaSuccess;
    if (!rl__cu_fattn_ok(a)) return cudaErrorInvalidValue;
    const int64_t nrb = ((int64_t)a->n_tok * (a->n_head / a->n_head_kv) + FA_ROWS - 1) / FA_ROWS;
    const int ns = a->fa_split > 1 ? a->fa_split : 1;
    const dim3 grid((unsigned)nrb, (unsigned)a->n_head_kv, (unsigned)ns);
    switch (a->head_dim_k) {
    case 64:
        return rlcu::launch(fattn_kernel<64>, grid, FA_THREADS, fa_shape<64>::SMEM, s, *a);
    case 80:
        return rlcu::launch(fattn_kernel<80>, grid, FA_THREADS, fa_shape<80>::SMEM, s, *a);
    case 96:
        return rlcu::launch(fattn_kernel<96>, grid, FA_THREADS, fa_shape<96>::SMEM, s, *a);
    case 112:
        return rlcu::launch(fattn_kernel<112>, grid, FA_THREADS, fa_shape<112>::SMEM, s, *a);
    case 128:
        return rlcu::launch(fattn_kernel<128>, grid, FA_THREADS, fa_shape<128>::SMEM, s, *a);
    default:
        return rlcu::launch(fattn_kernel<256>, grid, FA_THREADS, fa_shape<256>::SMEM, s, *a);
    }
}
