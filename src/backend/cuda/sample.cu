/*
 * sample.cu - sampling on the GPU (issue 7): n rows of logits in, n token ids out, so that a
 * decode step that samples with temperature / top-k / top-p / min-p / penalties sends back
 * one int32 per row instead of n_vocab floats.
 *
 * The definitions are the CPU sampler's (src/sampler/chain.c, itself llama.cpp's semantics),
 * and so is the order in which it walks its candidates, because an inverse-CDF draw at a
 * given u picks a different token when the candidates are laid out differently. What the
 * CPU chain does, for penalties -> top-k -> top-p -> min-p -> temperature:
 *   - the survivors of every filter are a prefix of the "key order" (logit descending, ties
 *     to the lower id), so a row's state is a count n of that prefix plus the order in
 *     which the chain holds it: DENSE (nothing dropped yet: the whole row by id), SORTED
 *     (key order), ID (id order: min-p on the dense row, top-k > 4096 keeping everything)
 *     or MIXED (top-p's histogram path: the tokens of the buckets above the cut in id
 *     order, then the rest in key order);
 *   - sums of e^(l - max) run over 256-entry blocks of the candidate array in 8 float lanes
 *     (lane = position mod 8) whose sums are added in double (src/sampler/vec_kern.h); the
 *     draw walks those block sums and then the block in double.
 * This file does the same float operations (e^x is the sampler's rl__det_expf, spelled with
 * __fmul_rn / __fadd_rn so that nothing is contracted into an FMA), so most draws give the
 * CPU's token bit for bit; where a sum is taken in another order (top-p's mass above the
 * histogram bucket, the atomics that only size the candidate set) results differ by rounding.
 *
 * One kernel, one block per row, no host synchronization before the ids come back:
 *   1. prep: penalties in place; max, finite count and argmax (temperature <= 0 ends here);
 *      an upper bound of every candidate set the chain will look at (top-k: the k most
 *      likely; top-p first: its mass plus the 256 the CPU walks first; min-p first: the
 *      tokens at or above max + ln(min_p)), found on a shared-memory histogram of count
 *      and mass by distance below the max (bins of 1/32); the tokens of the bins up to it
 *      gathered as 64-bit keys (the sampler's: ord(-logit) << 32 | id). Row passes use
 *      float4 loads, several in flight: one block streams a whole row, so latency bounds it.
 *   2. final: the gathered keys sorted (bitonic, Batcher 1968: in shared memory up to 2048
 *      keys, the usual case; in global memory past that, slow but rare: a flat distribution
 *      with a wide filter); the chain replayed on the sorted prefix (counts, the order mode,
 *      top-p's cumulative walk); the candidate array in the chain's order (ID order by a
 *      block-wide compaction of the row); the lane sums and the draw.
 * Scratch grows with the largest n, dim and penalty list seen (the first steps), never inside
 * a step after that.
 */
#include "cuda_impl.h"

#include "../backend.h"

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include <algorithm>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

namespace {

constexpr int ST = 1024;         /* threads per block */
constexpr int SBLK = 256;        /* the sampler's RL__BLOCK */
constexpr int TOPP_NB = 1024;    /* RL__TOPP_BUCKETS */
constexpr int64_t DIM_MAX = 1 << 24;
constexpr int SORT_SMEM = 2048; /* candidate sets up to this size sort in shared memory */

enum { M_DENSE = 0, M_SORTED = 1, M_ID = 2, M_MIXED = 3 };

/* Per row, written by prep and read by final. */
struct row_state {
    float mx;          /* max after penalties */
    int n_fin;         /* logits above -inf */
    int done;          /* 1: ids already chosen (greedy, or nothing to choose) */
    int id;            /* the choice when done */
    int n_gath;        /* gathered keys */
    int cnt_minp;      /* logits >= mx + ln(min_p) over the row (min-p on) */
    double total;      /* dense e^(l - mx) sum in the sampler's order (top-p first) */
};

/* ---- the sampler's float functions -------------------------------------------------- */

/* rl__det_expf (src/sampler/sampler.h), operation for operation, nothing fused. */
__device__ __forceinline__ float det_exp(float x) {
    const float big = 12582912.0f;
    const float xc = x < -87.33f ? -87.33f : x;
    const float t = __fadd_rn(__fmul_rn(xc, 1.44269504089f), big);
    const float n = __fsub_rn(t, big);
    float r = __fsub_rn(xc, __fmul_rn(n, 0.693145751953125f));
    r = __fsub_rn(r, __fmul_rn(n, 1.42860682030941723212e-6f));
    float p = 1.0f / 5040.0f;
    p = __fadd_rn(__fmul_rn(p, r), 1.0f / 720.0f);
    p = __fadd_rn(__fmul_rn(p, r), 1.0f / 120.0f);
    p = __fadd_rn(__fmul_rn(p, r), 1.0f / 24.0f);
    p = __fadd_rn(__fmul_rn(p, r), 1.0f / 6.0f);
    p = __fadd_rn(__fmul_rn(p, r), 0.5f);
    p = __fadd_rn(__fmul_rn(p, r), 1.0f);
    p = __fadd_rn(__fmul_rn(p, r), 1.0f);
    const int32_t ni = (int32_t)(__float_as_uint(t) - __float_as_uint(big));
    const float scale = __uint_as_float((uint32_t)(ni + 127) << 23);
    const float y = __fmul_rn(p, scale);
    return x < -87.33f ? 0.0f : y;
}

/* rl__ord_f32: floats to unsigned integers in the same order (-0 as +0). */
__device__ __forceinline__ uint32_t ordf(float f) {
    const uint32_t u = __float_as_uint(__fadd_rn(f, 0.0f));
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
/* The key's high half: ascending = more likely. */
__device__ __forceinline__ uint32_t hkey(float v) { return ordf(-v); }
__device__ __forceinline__ uint64_t key_of(float v, int id) {
    return ((uint64_t)hkey(v) << 32) | (uint32_t)id;
}
__device__ __forceinline__ int key_id(uint64_t k) { return (int)(uint32_t)k; }

__device__ __forceinline__ bool finite_logit(float v) { return v > -INFINITY && v < INFINITY; }

/* top_p_buckets' bucket of logit l under max mx. */
__device__ __forceinline__ int topp_bucket(float l, float mx) {
    const float b = __fmul_rn(__fsub_rn(mx, l), (float)TOPP_NB / 40.0f);
    return b < (float)(TOPP_NB - 1) ? (int)b : TOPP_NB - 1;
}

/* ---- block helpers ------------------------------------------------------------------ */

typedef cub::BlockReduce<int, ST> reduce_i;
typedef cub::BlockScan<int, ST> scan_i;
typedef cub::BlockScan<double, ST> scan_d;

constexpr int NBIN = 2048;   /* bound histogram: bins of 1/32 of distance below the max */
constexpr int ES_SMEM = 4096; /* e of the first sorted candidates kept in shared memory */

struct smem {
    union {
        typename reduce_i::TempStorage ri;
        typename scan_i::TempStorage si;
        typename scan_d::TempStorage sd;
    } cub;
    union {
        struct { /* prep: the bound histogram */
            int c[NBIN];
            double m[NBIN];
        } h;
        uint64_t keys[SORT_SMEM]; /* final: a small candidate set sorted here */
        struct {                  /* final: top-p's buckets / the draw's block sums, and the
                                     e of the sorted candidates */
            double hm[TOPP_NB];
            float es[ES_SMEM];
        } w;
    } u;
    float eblk[SBLK];
    float wv[ST / 32];
    int wi[ST / 32];
    int bcast_i[4];
    double bcast_d[2];
};

/* f(i, v) for each entry v = xr[i] this thread owns, in increasing i: float4 loads of four
 * consecutive entries (rows 16-byte aligned with dim % 4 == 0), unrolled so that several
 * loads are in flight (one block streams a whole row: latency, not bandwidth, bounds it). */
template <class F> __device__ __forceinline__ void for_row(const float *xr, int dim, F f) {
    if ((dim & 3) == 0 && ((uintptr_t)xr & 15) == 0) {
        const float4 *x4 = (const float4 *)xr;
        const int n4 = dim >> 2;
#pragma unroll 4
        for (int q = threadIdx.x; q < n4; q += ST) {
            const float4 v = x4[q];
            f(4 * q, v.x);
            f(4 * q + 1, v.y);
            f(4 * q + 2, v.z);
            f(4 * q + 3, v.w);
        }
    } else {
        for (int i = threadIdx.x; i < dim; i += ST) f(i, xr[i]);
    }
}

/* Block sum of an int, in every thread. */
__device__ int block_sum(smem &sm, int v) {
    const int t = reduce_i(sm.cub.ri).Sum(v);
    if (threadIdx.x == 0) sm.bcast_i[2] = t;
    __syncthreads();
    const int r = sm.bcast_i[2];
    __syncthreads();
    return r;
}

/* The candidate array of a row in one order mode: position -> token id. */
struct order_view {
    int mode;
    const uint64_t *srt; /* sorted keys */
    const int32_t *ord;  /* id-ordered part (ID, MIXED) */
    int j0;              /* MIXED: positions < j0 from ord */
    __device__ __forceinline__ int id(int pos) const {
        switch (mode) {
        case M_DENSE: return pos;
        case M_SORTED: return key_id(srt[pos]);
        case M_ID: return ord[pos];
        default: return pos < j0 ? ord[pos] : key_id(srt[pos]);
        }
    }
};

/* Value at a position: the logit, divided by t when t != 1 (as the sampler's temperature
 * stage: l / t in float). */
__device__ __forceinline__ float val_t(const float *xr, int id, float t) {
    const float v = xr[id];
    return t == 1.0f ? v : __fdiv_rn(v, t);
}

/* Distance-below-the-max bin of the bound histogram. */
__device__ __forceinline__ int dbin(float v, float mx) {
    const float d = __fmul_rn(__fsub_rn(mx, v), 32.0f);
    return d < (float)(NBIN - 1) ? (int)d : NBIN - 1;
}

/* e^(v - mx) sums of positions [0, n) of ov in the sampler's lanes: per 256-block eight
 * float lanes added in position order, combined in double as vec_kern.h does, into sb[b];
 * returns their sum in block order (all threads). lanes: scratch [n/256+1][8]. With hist
 * (dense view, t == 1), each entry's count and e also go to the bound histogram. */
__device__ __noinline__ double lane_total(smem &sm, const float *xr, const order_view &ov, int n,
                                          float t, float mxv, float *lanes, double *sb,
                                          bool hist) {
    const int nb = (n + SBLK - 1) / SBLK;
    for (int q = threadIdx.x; q < nb * 8; q += ST) {
        const int b = q >> 3, j = q & 7, b0 = b * SBLK, b1 = min(b0 + SBLK, n);
        float acc = 0.0f;
        if (ov.mode == M_DENSE && b1 - b0 == SBLK) {
            const float *p = xr + b0 + j;
#pragma unroll 8
            for (int k = 0; k < SBLK / 8; k++) {
                const float v = t == 1.0f ? p[8 * k] : __fdiv_rn(p[8 * k], t);
                const float e = det_exp(__fsub_rn(v, mxv));
                acc = __fadd_rn(acc, e);
                if (hist && finite_logit(v)) {
                    const int bin = dbin(v, mxv);
                    atomicAdd(&sm.u.h.c[bin], 1);
                    atomicAdd(&sm.u.h.m[bin], (double)e);
                }
            }
        } else {
            for (int pos = b0 + j; pos < b1; pos += 8) {
                const float v = val_t(xr, ov.id(pos), t);
                const float e = det_exp(__fsub_rn(v, mxv));
                acc = __fadd_rn(acc, e);
                if (hist && finite_logit(v)) {
                    const int bin = dbin(v, mxv);
                    atomicAdd(&sm.u.h.c[bin], 1);
                    atomicAdd(&sm.u.h.m[bin], (double)e);
                }
            }
        }
        lanes[q] = acc;
    }
    __syncthreads();
    for (int b = threadIdx.x; b < nb; b += ST) {
        const float *l = lanes + 8 * b;
        sb[b] = (((double)l[0] + (double)l[1]) + ((double)l[2] + (double)l[3])) +
                (((double)l[4] + (double)l[5]) + ((double)l[6] + (double)l[7]));
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double tot = 0.0;
        for (int b = 0; b < nb; b++) tot += sb[b];
        sm.bcast_d[0] = tot;
    }
    __syncthreads();
    const double tot = sm.bcast_d[0];
    __syncthreads();
    return tot;
}

/* The sampler's draw (chain.c draw): the first position whose running sum exceeds
 * u * total, strictly, among non-zero weights, walking the block sums and then the block;
 * a block without weight is passed; past the end, the last position with weight. Thread 0
 * walks; all threads compute the block's weights into shared memory first. */
__device__ int draw_pos(smem &sm, const float *xr, const order_view &ov, int n, float t,
                        float mxv, const double *sb, double total, double u) {
    const double target = total * u;
    const int nb = (n + SBLK - 1) / SBLK;
    const bool sh = nb <= TOPP_NB;
    if (sh)
        for (int b = threadIdx.x; b < nb; b += ST) sm.u.w.hm[b] = sb[b];
    __syncthreads();
    const double *s = sh ? sm.u.w.hm : sb;
    int b = 0, res = -1;
    double acc = 0.0;
    for (;;) {
        if (threadIdx.x == 0) {
            while (b < nb - 1 && !(acc + s[b] > target)) acc += s[b++];
            sm.bcast_i[0] = b;
            sm.bcast_d[0] = acc;
        }
        __syncthreads();
        b = sm.bcast_i[0];
        acc = sm.bcast_d[0];
        const int b0 = b * SBLK, m = min(SBLK, n - b0);
        if (threadIdx.x < m)
            sm.eblk[threadIdx.x] = det_exp(__fsub_rn(val_t(xr, ov.id(b0 + threadIdx.x), t), mxv));
        __syncthreads();
        if (threadIdx.x == 0) {
            double a = acc;
            int last = -1, r = -1;
            for (int i = 0; i < m; i++) {
                const float e = sm.eblk[i];
                if (e > 0.0f) last = i;
                a += (double)e;
                if (a > target && e > 0.0f) {
                    r = i;
                    break;
                }
            }
            if (r < 0) r = last;
            sm.bcast_i[1] = r >= 0 ? b0 + r : -1;
        }
        __syncthreads();
        res = sm.bcast_i[1];
        __syncthreads();
        if (res >= 0 || b >= nb - 1) break;
        acc += s[b];
        b++;
    }
    if (res < 0) { /* the last position with weight (0 when none) */
        int best = -1;
        for (int i = threadIdx.x; i < n; i += ST)
            if (det_exp(__fsub_rn(val_t(xr, ov.id(i), t), mxv)) > 0.0f) best = i;
        const int r = reduce_i(sm.cub.ri).Reduce(best, [](int a, int b) { return a > b ? a : b; });
        if (threadIdx.x == 0) sm.bcast_i[1] = r;
        __syncthreads();
        res = max(sm.bcast_i[1], 0);
        __syncthreads();
    }
    return res;
}

/* The smallest bin of the bound histogram whose running count (or mass) reaches need;
 * NBIN - 1 when the row does not reach it. All threads. */
__device__ int pick_bin(smem &sm, double need, bool by_mass) {
    const int b0 = 2 * threadIdx.x;
    double a0 = 0.0, a1 = 0.0;
    if (b0 < NBIN) {
        a0 = by_mass ? sm.u.h.m[b0] : (double)sm.u.h.c[b0];
        a1 = by_mass ? sm.u.h.m[b0 + 1] : (double)sm.u.h.c[b0 + 1];
    }
    double ex;
    scan_d(sm.cub.sd).ExclusiveSum(a0 + a1, ex);
    if (threadIdx.x == 0) sm.bcast_i[0] = NBIN - 1;
    __syncthreads();
    if (b0 < NBIN) {
        if (ex < need && ex + a0 >= need)
            sm.bcast_i[0] = b0;
        else if (ex + a0 < need && ex + a0 + a1 >= need)
            sm.bcast_i[0] = b0 + 1;
    }
    __syncthreads();
    const int bin = sm.bcast_i[0];
    __syncthreads();
    return bin;
}

__device__ void hist_clear(smem &sm) {
    for (int b = threadIdx.x; b < NBIN; b += ST) {
        sm.u.h.c[b] = 0;
        sm.u.h.m[b] = 0.0;
    }
    __syncthreads();
}

/* Block max / argmax / finite count of row xr. */
__device__ void row_max(smem &sm, const float *xr, int dim, float &mx, int &arg, int &n_fin) {
    float v = -INFINITY;
    int i = INT_MAX, cnt = 0;
    for_row(xr, dim, [&](int k, float a) {
        if (finite_logit(a)) {
            cnt++;
            if (a > v) {
                v = a;
                i = k;
            }
        }
    });
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, v, o);
        const int oi = __shfl_xor_sync(0xffffffffu, i, o);
        if (ov > v || (ov == v && oi < i)) {
            v = ov;
            i = oi;
        }
    }
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
        sm.wv[warp] = v;
        sm.wi[warp] = i;
    }
    const int total = reduce_i(sm.cub.ri).Sum(cnt);
    __syncthreads();
    if (threadIdx.x == 0) {
        float bv = sm.wv[0];
        int bi = sm.wi[0];
        for (int w = 1; w < ST / 32; w++)
            if (sm.wv[w] > bv || (sm.wv[w] == bv && sm.wi[w] < bi)) {
                bv = sm.wv[w];
                bi = sm.wi[w];
            }
        sm.wv[0] = bv;
        sm.wi[0] = bi;
        sm.bcast_i[1] = total;
    }
    __syncthreads();
    mx = sm.wv[0];
    arg = sm.wi[0];
    n_fin = sm.bcast_i[1];
    __syncthreads();
}

/* Ids of the finite logits whose key is <= kmax, in id order, into ord; returns their count.
 * Tiles of ST * 8 consecutive ids, a block scan per tile. */
__device__ int compact_ids(smem &sm, const float *xr, int dim, uint64_t kmax, int32_t *ord) {
    int base = 0;
    const bool vec = (dim & 3) == 0 && ((uintptr_t)xr & 15) == 0;
    for (int t0 = 0; t0 < dim; t0 += ST * 8) {
        const int i0 = t0 + threadIdx.x * 8;
        float v[8];
        if (vec && i0 + 8 <= dim) {
            const float4 a = *(const float4 *)(xr + i0), b = *(const float4 *)(xr + i0 + 4);
            v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
            v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
        } else {
            for (int j = 0; j < 8; j++) v[j] = i0 + j < dim ? xr[i0 + j] : -INFINITY;
        }
        uint32_t bits = 0;
        int c = 0;
        for (int j = 0; j < 8; j++) {
            if (finite_logit(v[j]) && key_of(v[j], i0 + j) <= kmax) {
                bits |= 1u << j;
                c++;
            }
        }
        int ex, tot;
        scan_i(sm.cub.si).ExclusiveSum(c, ex, tot);
        for (int j = 0; j < 8; j++)
            if (bits >> j & 1) ord[base + ex++] = i0 + j;
        base += tot;
        __syncthreads();
    }
    return base;
}

/* Ascending bitonic sort of a[0..m) (m a power of two; Batcher 1968), all threads; a is
 * shared or global memory (__syncthreads orders both within the block). */
__device__ void bitonic(uint64_t *a, int m) {
    for (int k = 2; k <= m; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = threadIdx.x; i < m; i += ST) {
                const int ixj = i ^ j;
                if (ixj > i) {
                    const uint64_t x = a[i], y = a[ixj];
                    if ((x > y) == ((i & k) == 0)) {
                        a[i] = y;
                        a[ixj] = x;
                    }
                }
            }
            __syncthreads();
        }
}

/* The row's gathered keys g[0..ng) sorted ascending in place (g has room for the next power
 * of two): in shared memory when they fit, else in global memory. */
__device__ void sort_keys(smem &sm, uint64_t *g, int ng) {
    int m = 1;
    while (m < ng) m <<= 1;
    if (m <= SORT_SMEM) {
        for (int i = threadIdx.x; i < m; i += ST) sm.u.keys[i] = i < ng ? g[i] : ~0ull;
        __syncthreads();
        bitonic(sm.u.keys, m);
        for (int i = threadIdx.x; i < ng; i += ST) g[i] = sm.u.keys[i];
    } else {
        for (int i = ng + threadIdx.x; i < m; i += ST) g[i] = ~0ull;
        __syncthreads();
        bitonic(g, m);
    }
    __syncthreads();
}

/* Gather the keys of the finite logits with keep(v) into g; returns their count. */
template <class K> __device__ int gather(smem &sm, const float *xr, int dim, uint64_t *g, K keep) {
    if (threadIdx.x == 0) sm.bcast_i[3] = 0;
    __syncthreads();
    for_row(xr, dim, [&](int i, float v) {
        if (finite_logit(v) && keep(v)) g[atomicAdd(&sm.bcast_i[3], 1)] = key_of(v, i);
    });
    __syncthreads();
    const int ng = sm.bcast_i[3];
    __syncthreads();
    return ng;
}

/* ---- step 1: penalties, max, bound, gather ------------------------------------------ */

__device__ __forceinline__ row_state prep(smem &sm, float *xr, int dim, const rl_sample_row &P,
                                          const int32_t *pen, uint64_t *g, float *ln,
                                          double *sbr) {

    /* penalties (chain.c apply_penalties) */
    for (int j = threadIdx.x; j < P.pen_n; j += ST) {
        const int id = pen[2 * (P.pen_off + j)], cnt = pen[2 * (P.pen_off + j) + 1];
        if (id < 0 || id >= dim) continue;
        float v = xr[id];
        v = v <= 0.0f ? __fmul_rn(v, P.repeat_penalty) : __fdiv_rn(v, P.repeat_penalty);
        v = __fsub_rn(v, __fadd_rn(__fmul_rn((float)cnt, P.frequency_penalty),
                                   __fmul_rn((float)(cnt > 0), P.presence_penalty)));
        xr[id] = v;
    }
    __syncthreads();

    float mx;
    int arg, n_fin;
    row_max(sm, xr, dim, mx, arg, n_fin);
    const bool tk = P.top_k > 0, tp = P.top_p < 1.0f, mp = P.min_p > 0.0f;
    int done = 0, id = -1;
    if (n_fin == 0) {
        done = 1;
    } else if (P.temperature <= 0.0f) {
        done = 1;
        id = arg;
    }
    double total = 0.0;
    int cnt_minp = 0, ng = 0;
    if (!done && (tk || tp)) {
        /* a bin of distance below the max that bounds the first filter's survivors (and
         * what top-p walks: its first 256 and min_keep) */
        hist_clear(sm);
        int bin;
        if (tk) {
            for_row(xr, dim, [&](int, float v) {
                if (finite_logit(v)) atomicAdd(&sm.u.h.c[dbin(v, mx)], 1);
            });
            __syncthreads();
            bin = pick_bin(sm, (double)min(P.top_k, n_fin), false);
        } else {
            const order_view dense = {M_DENSE, nullptr, nullptr, 0};
            total = lane_total(sm, xr, dense, dim, 1.0f, mx, ln, sbr, true);
            const int bc = pick_bin(sm, (double)min(max(256, P.min_keep), n_fin), false);
            const double need_m = (double)P.top_p * total * (1.0 + 1e-7);
            const int bm = need_m <= 0.0 ? 0 : need_m < total ? pick_bin(sm, need_m, true)
                                                              : NBIN - 1;
            bin = max(bc, bm);
        }
        ng = gather(sm, xr, dim, g, [&](float v) { return dbin(v, mx) <= bin; });
    } else if (!done && mp) {
        const float thr = __fadd_rn(mx, P.min_p_ln);
        ng = gather(sm, xr, dim, g, [&](float v) { return v >= thr; });
        cnt_minp = ng;
        if (ng < P.min_keep) { /* min_keep more than pass: the most likely min_keep */
            hist_clear(sm);
            for_row(xr, dim, [&](int, float v) {
                if (finite_logit(v)) atomicAdd(&sm.u.h.c[dbin(v, mx)], 1);
            });
            __syncthreads();
            const int bin = pick_bin(sm, (double)min(P.min_keep, n_fin), false);
            ng = gather(sm, xr, dim, g, [&](float v) { return dbin(v, mx) <= bin; });
        }
    }
    row_state S;
    S.mx = mx;
    S.n_fin = n_fin;
    S.done = done;
    S.id = id;
    S.n_gath = ng;
    S.cnt_minp = cnt_minp;
    S.total = total;
    return S;
}

/* ---- step 2: the chain on the sorted candidates, the draw --------------------------- */


/* One block per row: step 1 then step 2. */
__global__ void __launch_bounds__(ST) sample_kernel(float *x, int dim, const rl_sample_row *rows,
                                                    const int32_t *pen, uint64_t *gath,
                                                    int64_t gs, int32_t *ordbuf, float *ebuf,
                                                    float *lanes, double *sb, int32_t *out) {
    __shared__ smem sm;
    const int r = blockIdx.x, n_rows = gridDim.x;
    float *xr = x + (int64_t)r * dim;
    const rl_sample_row P = rows[r];
    uint64_t *srt = gath + (int64_t)r * gs;
    int32_t *ord = ordbuf + (int64_t)r * dim;
    float *eg = ebuf + (int64_t)r * dim;
    const int nbl = dim / SBLK + 1;
    float *ln = lanes + (int64_t)r * nbl * 8;
    double *sbr = sb + (int64_t)r * nbl;
    const row_state S = prep(sm, xr, dim, P, pen, srt, ln, sbr);
    __syncthreads();
    if (S.done) {
        if (threadIdx.x == 0) {
            out[r] = S.id;
            out[n_rows + r] = S.id >= 0 ? 1 : 0;
        }
        return;
    }
    const float mx = S.mx;
    const int n_fin = S.n_fin, ng = S.n_gath, min_keep = P.min_keep;
    sort_keys(sm, srt, ng);
    /* e^(l - mx) of the sorted candidates, for the walks: the first ES_SMEM in shared
     * memory, the rest in eg */
    for (int i = threadIdx.x; i < ng; i += ST) {
        const float e = det_exp(__fsub_rn(xr[key_id(srt[i])], mx));
        if (i < ES_SMEM)
            sm.u.w.es[i] = e;
        else
            eg[i] = e;
    }
    __syncthreads();
    auto e_at = [&](int i) { return i < ES_SMEM ? sm.u.w.es[i] : eg[i]; };
    int mode = M_DENSE, n = n_fin, j0 = 0;

    /* top-k (chain.c stage_top_k) */
    if (P.top_k > 0) {
        const int k = P.top_k;
        if (k <= 4096 || k < n_fin) {
            n = min(k, n_fin);
            mode = M_SORTED;
        } else {
            mode = M_ID;
        }
    }
    /* top-p (stage_top_p, top_p_buckets) */
    if (P.top_p < 1.0f) {
        if (mode == M_DENSE) {
            const double target = (double)P.top_p * S.total;
            const int m = min(256, n_fin);
            int cut = -1;
            if (threadIdx.x == 0) {
                double cum = 0.0;
                for (int i = 0; i < m && i < ng; i++) {
                    cum += (double)e_at(i);
                    if (cum >= target && i + 1 >= min_keep) {
                        cut = i + 1;
                        break;
                    }
                }
                sm.bcast_i[0] = cut;
            }
            __syncthreads();
            cut = sm.bcast_i[0];
            __syncthreads();
            if (cut > 0 || m < 256) {
                n = cut > 0 ? cut : m;
                mode = M_SORTED;
            } else {
                /* the mass by bucket of distance from the max; the first bucket where the
                 * running mass reaches the target less a little slack */
                for (int b = threadIdx.x; b < TOPP_NB; b += ST) sm.u.w.hm[b] = 0.0;
                __syncthreads();
                for_row(xr, dim, [&](int, float v) {
                    if (finite_logit(v))
                        atomicAdd(&sm.u.w.hm[topp_bucket(v, mx)], (double)det_exp(__fsub_rn(v, mx)));
                });
                __syncthreads();
                if (threadIdx.x == 0) {
                    const double slack = target * (1.0 - 1e-6);
                    double acc = 0.0;
                    int b = 0;
                    for (; b < TOPP_NB - 1; b++) {
                        if (acc + sm.u.w.hm[b] >= slack) break;
                        acc += sm.u.w.hm[b];
                    }
                    sm.bcast_i[0] = b;
                }
                __syncthreads();
                const int bk = sm.bcast_i[0];
                __syncthreads();
                /* the sorted tokens of the buckets above bk are kept as they are (a prefix) */
                int c = 0;
                for (int i = threadIdx.x; i < ng; i += ST)
                    c += topp_bucket(xr[key_id(srt[i])], mx) < bk;
                const int j = block_sum(sm, c);
                if (threadIdx.x == 0) {
                    double cum = 0.0;
                    for (int i = 0; i < j; i++) cum += (double)e_at(i);
                    int cc = -1;
                    for (int i = j; i < ng; i++) {
                        cum += (double)e_at(i);
                        if (cum >= target && i + 1 >= min_keep) {
                            cc = i + 1;
                            break;
                        }
                    }
                    sm.bcast_i[0] = cc > 0 ? cc : ng;
                }
                __syncthreads();
                n = sm.bcast_i[0];
                j0 = j;
                __syncthreads();
                mode = j0 > 0 ? M_MIXED : M_SORTED;
            }
        } else if (n > 0) {
            /* compact: the target from the sum in the current order, the walk sorted */
            if (mode == M_ID) compact_ids(sm, xr, dim, srt[n - 1], ord);
            const order_view ov = {mode, srt, ord, j0};
            const double target =
                (double)P.top_p * lane_total(sm, xr, ov, n, 1.0f, mx, ln, sbr, false);
            if (threadIdx.x == 0) {
                double cum = 0.0;
                int cut = -1;
                for (int i = 0; i < n; i++) {
                    cum += (double)e_at(i);
                    if (cum >= target && i + 1 >= min_keep) {
                        cut = i + 1;
                        break;
                    }
                }
                sm.bcast_i[0] = cut;
            }
            __syncthreads();
            if (sm.bcast_i[0] > 0) n = sm.bcast_i[0];
            __syncthreads();
            mode = M_SORTED;
        }
    }
    /* min-p (stage_min_p): every set is a prefix of the key order and holds the max, so
     * the survivors are the first min(n, count(l >= max + ln min_p)) */
    if (P.min_p > 0.0f) {
        if (mode == M_DENSE) {
            if (S.cnt_minp >= min_keep) {
                n = S.cnt_minp;
                mode = M_ID;
            } else {
                n = min(min_keep, n_fin);
                mode = M_SORTED;
            }
        } else if (n > 0) {
            const float thr = __fadd_rn(mx, P.min_p_ln);
            int c = 0;
            for (int i = threadIdx.x; i < n && i < ng; i += ST) c += xr[key_id(srt[i])] >= thr;
            const int kept = block_sum(sm, c);
            if (kept >= min_keep) {
                n = kept;
                j0 = min(j0, n);
            } else {
                n = min(min_keep, n);
                mode = M_SORTED;
            }
        }
    }
    if (mode == M_MIXED && j0 == 0) mode = M_SORTED;

    /* the final draw at temperature t over the candidates in the chain's order */
    const float t = P.temperature;
    if (mode == M_DENSE) {
        n = dim;
    } else if (mode == M_ID) {
        compact_ids(sm, xr, dim, srt[min(n, ng) - 1], ord);
    } else if (mode == M_MIXED) {
        compact_ids(sm, xr, dim, srt[j0 - 1], ord);
    }
    const order_view ov = {mode, srt, ord, j0};
    const float mxv = t == 1.0f ? mx : __fdiv_rn(mx, t);
    const double total = lane_total(sm, xr, ov, n, t, mxv, ln, sbr, false);
    const int pos = draw_pos(sm, xr, ov, n, t, mxv, sbr, total, P.u);
    if (threadIdx.x == 0) {
        out[r] = ov.id(pos);
        out[n_rows + r] = mode == M_DENSE ? n_fin : n;
    }
}

} // namespace

/* ---- the workspace ------------------------------------------------------------------- */

struct rl__cu_sample_ws {
    int64_t n_cap, dim_cap, pen_cap;
    int64_t gs; /* keys per row of d_gath: dim_cap rounded up to a power of two */
    uint8_t *d_up; /* [n_cap] rows, then [pen_cap] (id, count) pairs */
    uint64_t *d_gath;
    int32_t *d_ord;
    float *d_e; /* e of sorted candidates past the shared-memory ones */
    float *d_lanes;
    double *d_sb;
    int32_t *d_out; /* [2][n]: ids, kept counts */
    uint8_t *h_pin; /* rows + pairs up, ids + counts down */
    size_t pin_bytes;
};

static void ws_release(rl__cu_sample_ws *w) {
    cudaFree(w->d_up);
    cudaFree(w->d_gath);
    cudaFree(w->d_ord);
    cudaFree(w->d_e);
    cudaFree(w->d_lanes);
    cudaFree(w->d_sb);
    cudaFree(w->d_out);
    if (w->h_pin) cudaFreeHost(w->h_pin);
    memset(w, 0, sizeof *w);
}

extern "C" void rl__cu_sample_free(rl__cu_sample_ws *w) {
    if (!w) return;
    ws_release(w);
    free(w);
}

/* Room for n rows of dim logits and n_pen (id, count) pairs; grows (reallocating all of it)
 * only past the largest seen. */
static cudaError_t ws_reserve(rl__cu_sample_ws *w, int64_t n, int64_t dim, int64_t n_pen,
                              cudaStream_t s) {
    if (n <= w->n_cap && dim <= w->dim_cap && n_pen <= w->pen_cap) return cudaSuccess;
    const int64_t nc = n > w->n_cap ? (n > 8 ? n : 8) : w->n_cap;
    const int64_t dc = dim > w->dim_cap ? dim : w->dim_cap;
    const int64_t pc = n_pen > w->pen_cap ? (n_pen * 2 > 256 ? n_pen * 2 : 256) : w->pen_cap;
    cudaError_t e = cudaStreamSynchronize(s);
    if (e != cudaSuccess) return e;
    ws_release(w);
    int64_t gs = 1;
    while (gs < dc) gs <<= 1;
    const int64_t nbl = dc / SBLK + 1;
#define RL_CU_ALLOC(p, bytes)                                                      \
    do {                                                                           \
        if ((e = cudaMalloc((void **)&(p), (bytes))) != cudaSuccess) goto fail;    \
    } while (0)
    RL_CU_ALLOC(w->d_up, (size_t)nc * sizeof(rl_sample_row) + (size_t)pc * 2 * sizeof(int32_t));
    RL_CU_ALLOC(w->d_gath, (size_t)nc * (size_t)gs * sizeof(uint64_t));
    RL_CU_ALLOC(w->d_ord, (size_t)nc * (size_t)dc * sizeof(int32_t));
    RL_CU_ALLOC(w->d_e, (size_t)nc * (size_t)dc * sizeof(float));
    RL_CU_ALLOC(w->d_lanes, (size_t)nc * (size_t)nbl * 8 * sizeof(float));
    RL_CU_ALLOC(w->d_sb, (size_t)nc * (size_t)nbl * sizeof(double));
    RL_CU_ALLOC(w->d_out, (size_t)nc * 2 * sizeof(int32_t));
#undef RL_CU_ALLOC
    w->pin_bytes = (size_t)nc * sizeof(rl_sample_row) + (size_t)pc * 2 * sizeof(int32_t) +
                   (size_t)nc * 2 * sizeof(int32_t);
    if ((e = cudaMallocHost((void **)&w->h_pin, w->pin_bytes)) != cudaSuccess) goto fail;
    w->n_cap = nc;
    w->dim_cap = dc;
    w->pen_cap = pc;
    w->gs = gs;
    return cudaSuccess;
fail:
    ws_release(w);
    return e;
}

extern "C" cudaError_t rl__cu_sample(cudaStream_t s, rl__cu_sample_ws **wsp, float *x, int64_t n,
                                     int64_t dim, const rl_sample_row *rows, const int32_t *pen,
                                     int32_t *ids, int32_t *n_kept) {
    if (n <= 0) return cudaSuccess;
    if (dim <= 0 || dim > DIM_MAX || n > INT_MAX / dim) return cudaErrorInvalidValue;
    int64_t n_pen = 0;
    for (int64_t r = 0; r < n; r++) {
        if (rows[r].pen_n < 0 || rows[r].pen_off < 0) return cudaErrorInvalidValue;
        n_pen = std::max(n_pen, (int64_t)rows[r].pen_off + rows[r].pen_n);
    }
    if (!*wsp) {
        *wsp = (rl__cu_sample_ws *)calloc(1, sizeof **wsp);
        if (!*wsp) return cudaErrorMemoryAllocation;
    }
    rl__cu_sample_ws *w = *wsp;
    cudaError_t e = ws_reserve(w, n, dim, n_pen, s);
    if (e != cudaSuccess) return e;
    /* the previous call waited for its copies through h_pin: reuse it */
    uint8_t *up = w->h_pin;
    const size_t rb = (size_t)n * sizeof(rl_sample_row), pb = (size_t)n_pen * 2 * sizeof(int32_t);
    memcpy(up, rows, rb);
    if (pb) memcpy(up + rb, pen, pb);
    int32_t *down = (int32_t *)(up + (size_t)w->n_cap * sizeof(rl_sample_row) +
                                (size_t)w->pen_cap * 2 * sizeof(int32_t));
    /* rows and pairs in one copy: the pairs follow the n rows (8-byte multiples) */
    if ((e = cudaMemcpyAsync(w->d_up, up, rb + pb, cudaMemcpyHostToDevice, s)) != cudaSuccess)
        return e;
    const int d = (int)dim, nr = (int)n;
    sample_kernel<<<nr, ST, 0, s>>>(x, d, (const rl_sample_row *)w->d_up,
                                    (const int32_t *)(w->d_up + rb), w->d_gath, w->gs, w->d_ord,
                                    w->d_e, w->d_lanes, w->d_sb, w->d_out);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    if ((e = cudaMemcpyAsync(down, w->d_out, (size_t)n * 2 * sizeof(int32_t),
                             cudaMemcpyDeviceToHost, s)) != cudaSuccess)
        return e;
    if ((e = cudaStreamSynchronize(s)) != cudaSuccess) return e;
    memcpy(ids, down, (size_t)n * sizeof(int32_t));
    if (n_kept) memcpy(n_kept, down + n, (size_t)n * sizeof(int32_t));
    return cudaSuccess;
}
