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
 * Two kernels, one block per row, no host synchronization before the ids come back:
 *   1. prep: penalties in place; max, finite count and argmax (temperature <= 0 ends here);
 *      an upper bound of every candidate set the chain will look at (top-k: the k most
 *      likely; top-p first: its mass plus the 256 the CPU walks first; min-p first: the
 *      tokens at or above max + ln(min_p)), found as a threshold on the ordered logit
 *      bits by a three-pass radix select over histograms in shared memory; the tokens at or
 *      above it gathered as 64-bit keys (the sampler's: ord(-logit) << 32 | id).
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

struct smem {
    union {
        typename reduce_i::TempStorage ri;
        typename scan_i::TempStorage si;
        typename scan_d::TempStorage sd;
    } cub;
    union {
        struct {
            int hist_c[2048];
            double hist_m[2048];
        } h;
        uint64_t keys[SORT_SMEM]; /* final: a small candidate set sorted here */
    } u;
    float wv[ST / 32];
    int wi[ST / 32];
    int bcast_i[4];
    double bcast_d[2];
};

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

/* e^(v - mx) sums of positions [0, n) of ov in the sampler's lanes: per 256-block eight
 * float lanes added in position order, combined in double as vec_kern.h does, into sb[b];
 * returns their sum in block order (all threads). lanes: scratch [n/256+1][8]. */
__device__ __noinline__ double lane_total(smem &sm, const float *xr, const order_view &ov, int n, float t,
                             float mxv, float *lanes, double *sb) {
    const int nb = (n + SBLK - 1) / SBLK;
    for (int q = threadIdx.x; q < nb * 8; q += ST) {
        const int b = q >> 3, j = q & 7, b1 = min(b * SBLK + SBLK, n);
        float acc = 0.0f;
        for (int pos = b * SBLK + j; pos < b1; pos += 8)
            acc = __fadd_rn(acc, det_exp(__fsub_rn(val_t(xr, ov.id(pos), t), mxv)));
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

/* The sampler's draw (chain.c): the first position whose running sum exceeds u * total,
 * strictly, among non-zero weights. Thread 0 only. */
__device__ int draw_pos(const float *xr, const order_view &ov, int n, float t, float mxv,
                        const double *sb, double total, double u) {
    const double target = total * u;
    double acc = 0.0;
    const int nb = (n + SBLK - 1) / SBLK;
    for (int b = 0; b < nb; b++) {
        if (acc + sb[b] > target || b == nb - 1) {
            const int b0 = b * SBLK, b1 = min(b0 + SBLK, n);
            int last = -1;
            for (int i = b0; i < b1; i++) {
                const float e = det_exp(__fsub_rn(val_t(xr, ov.id(i), t), mxv));
                if (e > 0.0f) last = i;
                acc += (double)e;
                if (acc > target && e > 0.0f) return i;
            }
            if (last >= 0) return last;
        }
        acc += sb[b];
    }
    for (int i = n; i-- > 0;)
        if (det_exp(__fsub_rn(val_t(xr, ov.id(i), t), mxv)) > 0.0f) return i;
    return 0;
}

/* Radix select over the key's high half h = ord(-v) of the finite logits: the smallest h*
 * with count(h <= h*) >= need (by_mass false) or sum of e^(v - mx) over h <= h* >= need
 * (by_mass); 0xffffffff when the row does not reach it. Three passes of 11, 11 and 10 bits
 * over shared-memory histograms. All threads. */
__device__ __noinline__ uint32_t select_h(smem &sm, const float *xr, int dim, double need, bool by_mass,
                             float mx) {
    uint32_t prefix = 0, mask = 0;
    for (int pass = 0; pass < 3; pass++) {
        const int sh = pass == 0 ? 21 : pass == 1 ? 10 : 0, nbin = pass == 2 ? 1024 : 2048;
        for (int b = threadIdx.x; b < nbin; b += ST) {
            sm.u.h.hist_c[b] = 0;
            sm.u.h.hist_m[b] = 0.0;
        }
        __syncthreads();
        for (int i = threadIdx.x; i < dim; i += ST) {
            const float v = xr[i];
            if (!finite_logit(v)) continue;
            const uint32_t h = hkey(v);
            if ((h & mask) != prefix) continue;
            const int b = (int)((h >> sh) & (uint32_t)(nbin - 1));
            if (by_mass)
                atomicAdd(&sm.u.h.hist_m[b], (double)det_exp(__fsub_rn(v, mx)));
            else
                atomicAdd(&sm.u.h.hist_c[b], 1);
        }
        __syncthreads();
        /* inclusive scan over the bins, two per thread */
        const int b0 = 2 * threadIdx.x;
        double a0 = 0.0, a1 = 0.0;
        if (b0 < nbin) {
            a0 = by_mass ? sm.u.h.hist_m[b0] : (double)sm.u.h.hist_c[b0];
            a1 = by_mass ? sm.u.h.hist_m[b0 + 1] : (double)sm.u.h.hist_c[b0 + 1];
        }
        double ex;
        scan_d(sm.cub.sd).ExclusiveSum(a0 + a1, ex);
        if (threadIdx.x == 0) sm.bcast_i[0] = -1;
        __syncthreads();
        if (b0 < nbin) {
            if (ex < need && ex + a0 >= need) {
                sm.bcast_i[0] = b0;
                sm.bcast_d[1] = ex;
            } else if (ex + a0 < need && ex + a0 + a1 >= need) {
                sm.bcast_i[0] = b0 + 1;
                sm.bcast_d[1] = ex + a0;
            }
        }
        __syncthreads();
        const int bin = sm.bcast_i[0];
        const double below = sm.bcast_d[1];
        __syncthreads();
        if (bin < 0) {
            /* not reached: the whole row (first pass), or, after rounding of the mass in a
             * later pass, all of the current prefix */
            if (pass == 0) return 0xffffffffu;
            return prefix | ~mask;
        }
        prefix |= (uint32_t)bin << sh;
        mask |= (uint32_t)(nbin - 1) << sh;
        need -= below;
    }
    return prefix;
}

/* Block max / argmax / finite count of row xr. */
__device__ void row_max(smem &sm, const float *xr, int dim, float &mx, int &arg, int &n_fin) {
    float v = -INFINITY;
    int i = INT_MAX, cnt = 0;
    for (int k = threadIdx.x; k < dim; k += ST) {
        const float a = xr[k];
        if (finite_logit(a)) {
            cnt++;
            if (a > v) {
                v = a;
                i = k;
            }
        }
    }
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

/* Count of logits >= thr. */
__device__ int count_ge(smem &sm, const float *xr, int dim, float thr) {
    int c = 0;
    for (int k = threadIdx.x; k < dim; k += ST) c += (finite_logit(xr[k]) && xr[k] >= thr);
    const int t = reduce_i(sm.cub.ri).Sum(c);
    if (threadIdx.x == 0) sm.bcast_i[2] = t;
    __syncthreads();
    const int r = sm.bcast_i[2];
    __syncthreads();
    return r;
}

/* Ids of the finite logits whose key is <= kmax, in id order, into ord; returns their count.
 * Tiles of ST * 8 consecutive ids, a block scan per tile. */
__device__ int compact_ids(smem &sm, const float *xr, int dim, uint64_t kmax, int32_t *ord) {
    int base = 0;
    for (int t0 = 0; t0 < dim; t0 += ST * 8) {
        const int i0 = t0 + threadIdx.x * 8;
        uint32_t bits = 0;
        int c = 0;
        for (int j = 0; j < 8; j++) {
            const int i = i0 + j;
            if (i < dim && finite_logit(xr[i]) && key_of(xr[i], i) <= kmax) {
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

/* ---- step 1: penalties, max, bound, gather ------------------------------------------ */

__global__ void __launch_bounds__(ST) prep_kernel(float *x, int dim, const rl_sample_row *rows,
                                                  const int32_t *pen, row_state *st,
                                                  uint64_t *gath, int64_t gs, float *lanes,
                                                  double *sb) {
    __shared__ smem sm;
    const int r = blockIdx.x;
    float *xr = x + (int64_t)r * dim;
    const rl_sample_row P = rows[r];
    row_state *S = st + r;
    const int nbl = dim / SBLK + 1;
    float *ln = lanes + (int64_t)r * nbl * 8;
    double *sbr = sb + (int64_t)r * nbl;

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
    int cnt_minp = 0;
    uint32_t hmax = 0; /* gather h <= hmax */
    bool gather = false;
    if (!done && (tk || tp || mp)) {
        gather = true;
        if (mp) cnt_minp = count_ge(sm, xr, dim, __fadd_rn(mx, P.min_p_ln));
        if (tk) {
            hmax = select_h(sm, xr, dim, (double)min(P.top_k, n_fin), false, mx);
        } else if (tp) {
            const order_view dense = {M_DENSE, nullptr, nullptr, 0};
            total = lane_total(sm, xr, dense, dim, 1.0f, mx, ln, sbr);
            const int need_c = min(max(256, P.min_keep), n_fin);
            const uint32_t hc = select_h(sm, xr, dim, (double)need_c, false, mx);
            const double need_m = (double)P.top_p * total * (1.0 + 1e-7);
            const uint32_t hm = need_m <= 0.0 ? 0u
                                : need_m < total ? select_h(sm, xr, dim, need_m, true, mx)
                                                 : 0xffffffffu;
            hmax = max(hc, hm);
        } else {
            if (cnt_minp >= P.min_keep)
                hmax = hkey(__fadd_rn(mx, P.min_p_ln));
            else
                hmax = select_h(sm, xr, dim, (double)min(P.min_keep, n_fin), false, mx);
        }
    }
    if (threadIdx.x == 0) sm.bcast_i[3] = 0;
    __syncthreads();
    if (gather) {
        uint64_t *g = gath + (int64_t)r * gs;
        for (int i = threadIdx.x; i < dim; i += ST) {
            const float v = xr[i];
            if (finite_logit(v) && hkey(v) <= hmax) g[atomicAdd(&sm.bcast_i[3], 1)] = key_of(v, i);
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        const int ng = sm.bcast_i[3];
        S->mx = mx;
        S->n_fin = n_fin;
        S->done = done;
        S->id = id;
        S->n_gath = ng;
        S->cnt_minp = cnt_minp;
        S->total = total;
    }
}

/* ---- step 3: the chain on the sorted candidates, the draw --------------------------- */

__global__ void __launch_bounds__(ST) final_kernel(const float *x, int dim,
                                                   const rl_sample_row *rows,
                                                   const row_state *st, uint64_t *gath,
                                                   int64_t gs, int32_t *ordbuf, float *lanes,
                                                   double *sb, int32_t *out) {
    __shared__ smem sm;
    const int r = blockIdx.x, n_rows = gridDim.x;
    const float *xr = x + (int64_t)r * dim;
    const rl_sample_row P = rows[r];
    const row_state S = st[r];
    uint64_t *srt = gath + (int64_t)r * gs;
    int32_t *ord = ordbuf + (int64_t)r * dim;
    const int nbl = dim / SBLK + 1;
    float *ln = lanes + (int64_t)r * nbl * 8;
    double *sbr = sb + (int64_t)r * nbl;
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
                    cum += (double)det_exp(__fsub_rn(xr[key_id(srt[i])], mx));
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
                for (int b = threadIdx.x; b < TOPP_NB; b += ST) sm.u.h.hist_m[b] = 0.0;
                __syncthreads();
                for (int i = threadIdx.x; i < dim; i += ST) {
                    const float v = xr[i];
                    if (finite_logit(v))
                        atomicAdd(&sm.u.h.hist_m[topp_bucket(v, mx)], (double)det_exp(__fsub_rn(v, mx)));
                }
                __syncthreads();
                if (threadIdx.x == 0) {
                    const double slack = target * (1.0 - 1e-6);
                    double acc = 0.0;
                    int b = 0;
                    for (; b < TOPP_NB - 1; b++) {
                        if (acc + sm.u.h.hist_m[b] >= slack) break;
                        acc += sm.u.h.hist_m[b];
                    }
                    /* the sorted tokens of the buckets above b are kept as they are */
                    int j = 0;
                    double cum = 0.0;
                    while (j < ng && topp_bucket(xr[key_id(srt[j])], mx) < b) {
                        cum += (double)det_exp(__fsub_rn(xr[key_id(srt[j])], mx));
                        j++;
                    }
                    int c = -1;
                    for (int i = j; i < ng; i++) {
                        cum += (double)det_exp(__fsub_rn(xr[key_id(srt[i])], mx));
                        if (cum >= target && i + 1 >= min_keep) {
                            c = i + 1;
                            break;
                        }
                    }
                    sm.bcast_i[0] = c > 0 ? c : ng;
                    sm.bcast_i[1] = j;
                }
                __syncthreads();
                n = sm.bcast_i[0];
                j0 = sm.bcast_i[1];
                __syncthreads();
                mode = j0 > 0 ? M_MIXED : M_SORTED;
            }
        } else if (n > 0) {
            /* compact: the target from the sum in the current order, the walk sorted */
            if (mode == M_ID) compact_ids(sm, xr, dim, srt[n - 1], ord);
            const order_view ov = {mode, srt, ord, j0};
            const double target = (double)P.top_p * lane_total(sm, xr, ov, n, 1.0f, mx, ln, sbr);
            if (threadIdx.x == 0) {
                double cum = 0.0;
                int cut = -1;
                for (int i = 0; i < n; i++) {
                    cum += (double)det_exp(__fsub_rn(xr[key_id(srt[i])], mx));
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
            const int kept = min(n, S.cnt_minp);
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
    const double total = lane_total(sm, xr, ov, n, t, mxv, ln, sbr);
    if (threadIdx.x == 0) {
        const int pos = draw_pos(xr, ov, n, t, mxv, sbr, total, P.u);
        out[r] = ov.id(pos);
        out[n_rows + r] = mode == M_DENSE ? n_fin : n;
    }
}

} // namespace

/* ---- the workspace ------------------------------------------------------------------- */

struct rl__cu_sample_ws {
    int64_t n_cap, dim_cap, pen_cap;
    int64_t gs; /* keys per row of d_gath: dim_cap rounded up to a power of two */
    rl_sample_row *d_rows;
    int32_t *d_pen;
    row_state *d_st;
    uint64_t *d_gath;
    int32_t *d_ord;
    float *d_lanes;
    double *d_sb;
    int32_t *d_out; /* [2][n]: ids, kept counts */
    uint8_t *h_pin; /* rows + pairs up, ids + counts down */
    size_t pin_bytes;
};

static void ws_release(rl__cu_sample_ws *w) {
    cudaFree(w->d_rows);
    cudaFree(w->d_pen);
    cudaFree(w->d_st);
    cudaFree(w->d_gath);
    cudaFree(w->d_ord);
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
    RL_CU_ALLOC(w->d_rows, (size_t)nc * sizeof(rl_sample_row));
    RL_CU_ALLOC(w->d_pen, (size_t)pc * 2 * sizeof(int32_t));
    RL_CU_ALLOC(w->d_st, (size_t)nc * sizeof(row_state));
    RL_CU_ALLOC(w->d_gath, (size_t)nc * (size_t)gs * sizeof(uint64_t));
    RL_CU_ALLOC(w->d_ord, (size_t)nc * (size_t)dc * sizeof(int32_t));
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
    if ((e = cudaMemcpyAsync(w->d_rows, up, rb, cudaMemcpyHostToDevice, s)) != cudaSuccess) return e;
    if (pb && (e = cudaMemcpyAsync(w->d_pen, up + rb, pb, cudaMemcpyHostToDevice, s)) != cudaSuccess)
        return e;
    const int d = (int)dim, nr = (int)n;
    prep_kernel<<<nr, ST, 0, s>>>(x, d, w->d_rows, w->d_pen, w->d_st, w->d_gath, w->gs,
                                  w->d_lanes, w->d_sb);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    final_kernel<<<nr, ST, 0, s>>>(x, d, w->d_rows, w->d_st, w->d_gath, w->gs, w->d_ord,
                                   w->d_lanes, w->d_sb, w->d_out);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    if ((e = cudaMemcpyAsync(down, w->d_out, (size_t)n * 2 * sizeof(int32_t),
                             cudaMemcpyDeviceToHost, s)) != cudaSuccess)
        return e;
    if ((e = cudaStreamSynchronize(s)) != cudaSuccess) return e;
    memcpy(ids, down, (size_t)n * sizeof(int32_t));
    if (n_kept) memcpy(n_kept, down + n, (size_t)n * sizeof(int32_t));
    return cudaSuccess;
}
