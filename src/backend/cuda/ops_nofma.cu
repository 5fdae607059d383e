/*
 * ops_nofma.cu - the element-wise layer ops and the embedding lookup on the GPU. Built
 * with --fmad=false and written in the CPU's order of operations (backend_cpu.c, rope.c,
 * attention.c's KV write), so that RMSNorm's scaling, RoPE's rotation, the residual and
 * bias adds, the KV conversions (F16 round-to-nearest-even, Q8_0 with roundf) and the
 * decoded embedding rows match the CPU bit for bit; the transcendental functions (expf,
 * tanhf, sqrtf is exact) differ from glibc's by an ulp or two.
 */
#include "qtypes.cuh"
#include "launch.cuh"
#include "mmq_layout.cuh"
#include "step.h"

using namespace rlcu;

namespace {

constexpr int EW_THREADS = 256;

unsigned ew_blocks(int64_t n) {
    int64_t b = (n + EW_THREADS - 1) / EW_THREADS;
    return (unsigned)(b < 65535 * 16 ? (b > 0 ? b : 1) : 65535 * 16);
}

#define GRID_STRIDE(i, n)                                                                          \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                      \
         i += (int64_t)gridDim.x * blockDim.x)

/* ---- embedding rows ---- */
template <class T>
__global__ void get_rows_kernel(const uint8_t *__restrict__ w, size_t row_bytes, int64_t K,
                                const int32_t *__restrict__ ids, float *__restrict__ y) {
    rlcu::pdl_enter();
    const int64_t t = blockIdx.y;
    const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= K / T::NV) return;
    float v[T::NV];
    T::chunk(w + (size_t)ids[t] * row_bytes, c, v);
    float *o = y + t * K + c * T::NV;
#pragma unroll
    for (int i = 0; i < T::NV; i++) o[i] = v[i];
}

template <class T>
cudaError_t get_rows_launch(cudaStream_t s, const void *w, size_t row_bytes, int64_t K,
                            const int32_t *ids, int64_t n, float *y) {
    const int64_t nch = K / T::NV;
    dim3 grid((unsigned)((nch + EW_THREADS - 1) / EW_THREADS), (unsigned)n);
    (void)rlcu::launch(get_rows_kernel<T>, grid, EW_THREADS, 0, s,
                       static_cast<const uint8_t *>(w), row_bytes, K, ids, y);
    return cudaGetLastError();
}

/* ---- RMSNorm: sum of squares in double, scale in float, then the weight ---- */
/* xq non-NULL (dim % 256 == 0): the rows of y also quantized for the q8 path of the
 * product that reads them next, in rl__cu_matmul_q8's workspace (layout xl). add
 * non-NULL: x += add first (the residual add before a norm, one launch instead of two;
 * each thread reads back only the values it wrote). */
__global__ void rmsnorm_kernel(float *x, const float *add, int64_t dim, float eps, const float *w,
                               float *y, int8_t *xq, int64_t n, int xl) {
    rlcu::pdl_enter();
    __shared__ double part[32];
    float *xr = x + (int64_t)blockIdx.x * dim;
    float *yr = y + (int64_t)blockIdx.x * dim;
    double ss = 0;
    if (add) {
        const float *ar = add + (int64_t)blockIdx.x * dim;
        for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
            const float v = xr[i] + ar[i];
            xr[i] = v;
            ss += (double)v * (double)v;
        }
    } else {
        for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) ss += (double)xr[i] * (double)xr[i];
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    if (lane == 0) part[warp] = ss;
    __syncthreads();
    if (warp == 0) {
        double v = lane < (int)(blockDim.x >> 5) ? part[lane] : 0.0;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) part[0] = v;
    }
    __syncthreads();
    const float mean = (float)(part[0] / (double)dim);
    const float sc = 1.0f / sqrtf(mean + eps);
    if (w)
        for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = (xr[i] * sc) * w[i];
    else
        for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) yr[i] = xr[i] * sc;
    if (!xq) return;
    __syncthreads(); /* the row of y, written by the whole block, is read back below */
    for (int64_t b = warp; b < dim / 256; b += blockDim.x >> 5) {
        const float4 *p = reinterpret_cast<const float4 *>(yr + 256 * b + 8 * lane);
        const float4 a0 = p[0], a1 = p[1];
        const float v[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
        q8ws_warp(xl, v, xq, n * dim, (int64_t)blockIdx.x * dim + 256 * b + 8 * lane);
    }
}

/* Where rmsnorm8_kernel and glu_mmq_kernel write the quantized output (cuda_impl.h). */
enum { XQ_Q8 = RL_CU_XQ_Q8, XQ_MMQ32 = RL_CU_XQ_MMQ32, XQ_MMQ256 = RL_CU_XQ_MMQ256 };

/* Shared memory of the blocks of a cluster (PTX ISA, "mapa", "st.shared::cluster",
 * "barrier.cluster"; sm_90): v stored at the place of *local in the shared memory of the
 * cluster's block rank, and the barrier of all the cluster's threads after which those
 * stores are seen. Callers run them only on sm_90 (never reached before). */
__device__ __forceinline__ void cluster_put_f64(double *local, unsigned rank, double v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const uint32_t a = (uint32_t)__cvta_generic_to_shared(local);
    uint32_t r;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(rank));
    asm volatile("st.shared::cluster.f64 [%0], %1;" ::"r"(r), "d"(v) : "memory");
#else
    (void)local, (void)rank, (void)v;
#endif
}

/* The two halves of a cluster barrier: a block may write another's shared memory only once
 * that block runs (CUDA C++ Programming Guide, "Distributed Shared Memory"), so every thread
 * arrives when it starts and waits before its first remote store. */
__device__ __forceinline__ void cluster_arrive() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
#endif
}

__device__ __forceinline__ void cluster_sync() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.release.aligned;\n\tbarrier.cluster.wait.acquire.aligned;" ::
                     : "memory");
#endif
}

/* 8 consecutive floats of 16-byte aligned memory into / out of registers. */
__device__ __forceinline__ void ld8(const float *p, float o[8]) {
    const float4 a = reinterpret_cast<const float4 *>(p)[0], b = reinterpret_cast<const float4 *>(p)[1];
    o[0] = a.x, o[1] = a.y, o[2] = a.z, o[3] = a.w, o[4] = b.x, o[5] = b.y, o[6] = b.z, o[7] = b.w;
}
__device__ __forceinline__ void st8(float *p, const float v[8]) {
    reinterpret_cast<float4 *>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
    reinterpret_cast<float4 *>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

/* rmsnorm_kernel for rows of dim % 256 == 0, dim <= 8192: a thread per 8 consecutive
 * values, kept in registers from the load to the quantization (a warp holds one q8 block
 * of 256: q8k_warp straight from them), the norm weight read before the wait (weights
 * are no kernel's output). Fewer dependent trips to memory than rmsnorm_kernel's re-reads.
 * One barrier: every warp adds the warps' partial sums itself, all in the same order, so
 * every warp gets the same bits. q8 layouts by q8ws_warp. early: the next
 * kernel may launch before this one's wait (launch.cuh: it still waits for this one to
 * finish; a product after it starts streaming its weights sooner). xl (xq non-NULL): the
 * layout of xq; for mmq.cu's the grid has 8 ntl blocks, those past the n rows writing the
 * padding tokens' zero codes and scales, so that the product skips its own quantization.
 * part non-NULL (add NULL): the residual is the output of an mmq.cu product that left its
 * nz partial sums part[z][n][dim]; they are added here in mmq_reduce_kernel's order (z = 0
 * first, then each next one), the sum written to psum (that product's output) and added to
 * x, so that x, y and xq get the bits of the reduce pass + this kernel with add = psum.
 * cl > 1 (sm_90, launched in clusters of cl blocks along x): a row's threads are the cl
 * blocks of one cluster (block r: threads r * blockDim.x ..), for rows too few to fill the
 * multiprocessors (batched decoding: 64 rows, 64 blocks of 512 threads on 132 SMs); each
 * block writes its warps' sums into every block's shared memory at the warps' places in the
 * row, and after one cluster barrier every warp adds the row's sums in the same order as
 * one block would: the same bits. skip (RL_CU_SKIP_*): y, psum not written. */
__global__ void rmsnorm8_kernel(float *x, const float *add, int64_t dim, float eps, const float *w,
                                float *y, int8_t *xq, int64_t n, bool early, int xl, int ntl,
                                const float *__restrict__ part, int nz, float *psum, int cl,
                                unsigned skip) {
    __shared__ double wsum[32];
    const int rank = (int)(blockIdx.x % (unsigned)cl);
    const int gt = rank * (int)blockDim.x + (int)threadIdx.x; /* the thread in its row */
    const int64_t tok = (int64_t)(blockIdx.x / (unsigned)cl);
    const int64_t e = tok * dim + 8 * gt;
    float wv[8];
    if (w) ld8(w + 8 * gt, wv);
    if (early) rlcu::pdl_launch_dependents();
    rlcu::pdl_wait();
    if (!early) rlcu::pdl_launch_dependents();
    uint32_t *mq = reinterpret_cast<uint32_t *>(xq);
    float2 *msc =
        rl__cu_xq_mmq(xl) ? reinterpret_cast<float2 *>(xq + mmq_codes_bytes(dim, ntl)) : nullptr;
    const int64_t kb = gt >> 2; /* the thread's block of 32 */
    if (tok >= n) { /* a padding token of mmq.cu's last tile (its whole cluster returns) */
        mmq_put8(mq, msc, kb, ntl, tok, gt & 3, make_uint2(0, 0), 0.0f, 0.0f);
        return;
    }
    if (cl > 1) cluster_arrive(); /* this block runs: the others may write its wsum */
    float v[8];
    ld8(x + e, v);
    if (add || part) { /* the residual: add, or the sum of the product's partial sums */
        float av[8];
        if (add) {
            ld8(add + e, av);
        } else {
            const size_t total = (size_t)n * (size_t)dim;
            ld8(part + e, av);
#pragma unroll 4
            for (int z = 1; z < nz; z++) {
                float pz[8];
                ld8(part + (size_t)z * total + e, pz);
#pragma unroll
                for (int j = 0; j < 8; j++) av[j] += pz[j];
            }
            if (!(skip & RL_CU_SKIP_SUM)) st8(psum + e, av);
        }
#pragma unroll
        for (int j = 0; j < 8; j++) v[j] = v[j] + av[j];
        st8(x + e, v);
    }
    double ss = 0;
#pragma unroll
    for (int j = 0; j < 8; j++) ss += (double)v[j] * (double)v[j];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int nw = (int)(blockDim.x >> 5);
    if (cl > 1) {
        cluster_wait(); /* every block of the cluster runs */
        if (lane < cl) cluster_put_f64(&wsum[rank * nw + warp], (unsigned)lane, ss);
        cluster_sync();
    } else {
        if (lane == 0) wsum[warp] = ss;
        __syncthreads();
    }
    /* the row's nw cl <= 32 warp sums (dim <= 8192): one a lane, added by the same tree of
       shuffles in every warp, so every warp (and every block of a cluster) gets the same bits
       (a loop over the sums in shared memory, one dependent load and add at a time, sat on the
       path from the product before to the one after). H100,
       2026-11-27, bench_cuda tg0 (tree against loop, one call, alternated twice): 8B Q8_0
       299.9, 299.8 against 297.1, 298.1; 1B Q4_K_M 1,506 against 1,494, 1,475 */
    double tot = lane < nw * cl ? wsum[lane] : 0.0;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) tot += __shfl_xor_sync(0xffffffffu, tot, o);
    const float mean = (float)(tot / (double)dim);
    const float sc = 1.0f / sqrtf(mean + eps);
#pragma unroll
    for (int j = 0; j < 8; j++) v[j] = w ? (v[j] * sc) * wv[j] : v[j] * sc;
    if (!(skip & RL_CU_SKIP_Y)) st8(y + e, v);
    if (!xq) return;
    if (rl__cu_xq_mmq(xl)) {
        float d, sum;
        const uint2 c = xl == XQ_MMQ256 ? mmq_quant256(v, &d, &sum) : mmq_quant32(v, &d, &sum);
        mmq_put8(mq, msc, kb, ntl, tok, gt & 3, c, d, sum);
    } else {
        q8ws_warp(xl, v, xq, n * dim, e);
    }
}

/* ---- RoPE: one thread per rotated pair, angles from the host's table ----
 * Two tensors of the same rows (q and k: n_head heads of x, then n_head2 of x2) in one
 * launch; n_head2 = 0 for one. */
__global__ void rope_kernel(float *x, int64_t ld, int n_head, float *x2, int64_t ld2, int n_head2,
                            int64_t n, int head_dim, int n_rot, bool neox, const float *tab) {
    rlcu::pdl_enter();
    const int half = n_rot / 2, nh = n_head + n_head2;
    const int64_t total = n * nh * half;
    GRID_STRIDE(idx, total) {
        const int i = (int)(idx % half);
        const int hh = (int)((idx / half) % nh);
        const int64_t r = idx / ((int64_t)half * nh);
        float *xp = hh < n_head ? x + r * ld + (int64_t)hh * head_dim
                                : x2 + r * ld2 + (int64_t)(hh - n_head) * head_dim;
        const float cs = tab[r * n_rot + 2 * i], sn = tab[r * n_rot + 2 * i + 1];
        const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
        const float x0 = xp[i0], x1 = xp[i1];
        xp[i0] = x0 * cs - x1 * sn;
        xp[i1] = x0 * sn + x1 * cs;
    }
}

/* rope_kernel for q and k, then the K and V cache writes of kv_write_f32/f16_kernel, in one
 * launch: a thread per pair of values of a token's row -- q's rotated pairs, then every
 * pair of k (rotated as rope_kernel does, or the unrotated tail of a head past n_rot), then
 * v's -- so each value of k is rotated and converted by the one thread that writes it. */
template <bool F16>
__device__ __forceinline__ void kv_put2(void *tab, size_t row_bytes, int32_t cell, int64_t e,
                                       float a, float b) {
    uint8_t *row = static_cast<uint8_t *>(tab) + (size_t)cell * row_bytes;
    if constexpr (F16) {
        reinterpret_cast<__half *>(row)[e] = __float2half_rn(a);
        reinterpret_cast<__half *>(row)[e + 1] = __float2half_rn(b);
    } else {
        reinterpret_cast<float *>(row)[e] = a;
        reinterpret_cast<float *>(row)[e + 1] = b;
    }
}

template <bool F16>
__device__ __forceinline__ void kv_put1(void *tab, size_t row_bytes, int32_t cell, int64_t e, float a) {
    uint8_t *row = static_cast<uint8_t *>(tab) + (size_t)cell * row_bytes;
    if constexpr (F16)
        reinterpret_cast<__half *>(row)[e] = __float2half_rn(a);
    else
        reinterpret_cast<float *>(row)[e] = a;
}

/* RoPE of q and k and the cache write of k and v (rl__cu_rope_kv), a thread per rotated pair
 * (q, k), per unrotated pair of k's tail, or per pair of v; 32-bit index arithmetic (n *
 * per < 2^31, rl__cu_rope_kv_ok: 64-bit divisions were most of the instructions), and the
 * thread's cache cell and rotation angles read before the wait: they are in the step's
 * arena, uploaded before the list's first kernel (which launches without the PDL attribute,
 * so every kernel of the list runs after the upload), not written by any kernel. */
template <bool F16>
__global__ void rope_kv_kernel(rl__cu_rope_kv_args a, int per, int total, bool early) {
    const int idx = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (idx >= total) return;
    const int half = a.n_rot / 2, hp = a.head_dim / 2;
    const int pq = a.n_head * half, pk = a.n_head_k * hp;
    const int r = idx / per;
    int j = idx - r * per;
    const int32_t cell = a.cells[r];
    if (j >= pq + pk) { /* v */
        j -= pq + pk;
        if (early) rlcu::pdl_launch_dependents();
        rlcu::pdl_wait();
        if (!early) rlcu::pdl_launch_dependents();
        const float *vp = a.v + (int64_t)r * a.ld_v + 2 * j;
        kv_put2<F16>(a.vtab, a.v_row_bytes, cell, 2 * j, vp[0], vp[1]);
        return;
    }
    const bool is_q = j < pq;
    if (!is_q) j -= pq;
    const int per_head = is_q ? half : hp;
    const int hh = j / per_head, i = j - hh * per_head;
    const bool rot = i < half;
    float cs = 0.0f, sn = 0.0f;
    int i0 = 2 * i, i1 = 2 * i + 1; /* k's tail past n_rot: as it is */
    if (rot) {
        cs = a.tab[r * a.n_rot + 2 * i];
        sn = a.tab[r * a.n_rot + 2 * i + 1];
        i0 = a.neox ? i : 2 * i;
        i1 = a.neox ? i + half : 2 * i + 1;
    }
    float *xp = is_q ? a.q + (int64_t)r * a.ld + (int64_t)hh * a.head_dim
                     : a.k + (int64_t)r * a.ld_k + (int64_t)hh * a.head_dim;
    if (early) rlcu::pdl_launch_dependents();
    rlcu::pdl_wait();
    if (!early) rlcu::pdl_launch_dependents();
    float x0, x1;
    if (is_q && a.q_part) { /* mmq_reduce_kernel's sums: z = 0 first, then each next one */
        const size_t total = (size_t)a.n * (size_t)a.ld;
        const float *pp = a.q_part + (xp - a.q);
        x0 = pp[i0], x1 = pp[i1];
        for (int z = 1; z < a.q_nz; z++) {
            x0 += pp[(size_t)z * total + i0];
            x1 += pp[(size_t)z * total + i1];
        }
    } else {
        x0 = xp[i0], x1 = xp[i1];
    }
    float y0 = x0, y1 = x1;
    if (rot) {
        y0 = x0 * cs - x1 * sn;
        y1 = x0 * sn + x1 * cs;
        xp[i0] = y0;
        xp[i1] = y1;
    }
    if (!is_q) {
        const int64_t e0 = (int64_t)hh * a.head_dim;
        if (i1 == i0 + 1) {
            kv_put2<F16>(a.ktab, a.k_row_bytes, cell, e0 + i0, y0, y1);
        } else {
            kv_put1<F16>(a.ktab, a.k_row_bytes, cell, e0 + i0, y0);
            kv_put1<F16>(a.ktab, a.k_row_bytes, cell, e0 + i1, y1);
        }
    }
}

__global__ void add_row_kernel(float *x, int64_t n, int64_t dim, int64_t ld, const float *b) {
    rlcu::pdl_enter();
    GRID_STRIDE(idx, n * dim) {
        const int64_t t = idx / dim, i = idx % dim;
        x[t * ld + i] += b[i];
    }
}

__global__ void add_kernel(float *x, const float *y, int64_t n) {
    rlcu::pdl_enter();
    GRID_STRIDE(i, n) x[i] += y[i];
}

__global__ void scale_kernel(float *x, int64_t n, float v) {
    rlcu::pdl_enter();
    GRID_STRIDE(i, n) x[i] *= v;
}

__global__ void softcap_kernel(float *x, int64_t n, float c) {
    rlcu::pdl_enter();
    GRID_STRIDE(i, n) x[i] = tanhf(x[i] / c) * c;
}

__global__ void fill_kernel(float *x, int64_t n, float v) {
    rlcu::pdl_enter();
    GRID_STRIDE(i, n) x[i] = v;
}

/* dst = src, bytes of device memory: 16 bytes a thread where both are 16-byte aligned,
 * the rest (or all, unaligned) a byte a thread. */
__global__ void copy_kernel(uint8_t *dst, const uint8_t *src, size_t bytes, bool vec) {
    rlcu::pdl_enter();
    const size_t n16 = vec ? bytes / 16 : 0;
    GRID_STRIDE(i, (int64_t)n16)
    reinterpret_cast<uint4 *>(dst)[i] = reinterpret_cast<const uint4 *>(src)[i];
    GRID_STRIDE(i, (int64_t)(bytes - 16 * n16)) dst[16 * n16 + i] = src[16 * n16 + i];
}

/* SiLU x / (1 + e^-x); GELU 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) as the CPU
 * writes it (qtypes.cuh, shared with matvec.cu's gate/up product). */
__device__ __forceinline__ float glu1(int act, float x, float up) { return rlcu::glu_value(act, x, up); }

/* Any strides and alignment (glu4_kernel's conditions unmet). */
__global__ void glu_kernel(int act, const float *g, int64_t ld_g, const float *u, int64_t ld_u,
                           int64_t n, int64_t dim, float *out) {
    rlcu::pdl_enter();
    GRID_STRIDE(idx, n * dim) {
        const int64_t t = idx / dim, i = idx % dim;
        out[t * dim + i] = glu1(act, g[t * ld_g + i], u[t * ld_u + i]);
    }
}

/* glu_kernel four values a thread: float4 loads and stores (dim, ld_g, ld_u multiples
 * of 4, the three arrays 16-byte aligned) and 32-bit index arithmetic (n * dim < 2^31):
 * the batched steps' activation, 6.6 us a layer at 32 tokens of the 8B shape (H100, ncu)
 * with a 64-bit division per value. The same glu1 of the same values. */
__global__ void glu4_kernel(int act, const float *g, int ld_g, const float *u, int ld_u, int n4,
                            int dim4, float *out, bool early) {
    const int q = (int)(blockIdx.x * blockDim.x + threadIdx.x);
    if (q >= n4) return;
    const int t = q / dim4, i = 4 * (q - t * dim4);
    if (early) rlcu::pdl_launch_dependents();
    rlcu::pdl_wait();
    if (!early) rlcu::pdl_launch_dependents();
    const float4 a = *reinterpret_cast<const float4 *>(g + (int64_t)t * ld_g + i);
    const float4 b = *reinterpret_cast<const float4 *>(u + (int64_t)t * ld_u + i);
    reinterpret_cast<float4 *>(out)[q] = make_float4(glu1(act, a.x, b.x), glu1(act, a.y, b.y),
                                                     glu1(act, a.z, b.z), glu1(act, a.w, b.w));
}

/* glu_kernel with the output also quantized for the q8 path (dim % 256 == 0; layout xl): a
 * warp per block of 256 outputs, 8 consecutive ones per lane. */
__global__ void glu_q8_kernel(int act, const float *g, int64_t ld_g, const float *u, int64_t ld_u,
                              int64_t n, int64_t dim, float *out, int8_t *xq, int xl) {
    rlcu::pdl_enter();
    const int64_t nb = n * dim / 256;
    const int64_t b = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    if (b >= nb) return; /* whole warps */
    const int lane = threadIdx.x & 31;
    const int64_t e = 256 * b + 8 * lane, t = e / dim, i = e % dim;
    float v[8];
#pragma unroll
    for (int j = 0; j < 8; j++) {
        v[j] = glu1(act, g[t * ld_g + i + j], u[t * ld_u + i + j]);
        out[e + j] = v[j];
    }
    q8ws_warp(xl, v, xq, n * dim, e);
}

/* glu4_kernel's values (glu1 of the same inputs) with the output also quantized into
 * mmq.cu's workspace (n >= RL_CU_MMQ_MIN_N tokens, dim % 256 == 0; MODE: XQ_MMQ32 or
 * XQ_MMQ256), so that the product after it (the FFN's down) skips its quantization: a warp
 * per 256 outputs of a token, 8 consecutive ones a lane (two float4 of gate and of up);
 * warps of tokens n .. 8 ntl - 1 write the padding's zero codes and scales. */
template <int MODE>
__global__ void glu_mmq_kernel(int act, const float *g, int ld_g, const float *u, int ld_u, int n,
                               int dim, float *out, uint32_t *q, float2 *sc, int ntl,
                               bool skip_out) {
    const int wi = (int)((blockIdx.x * blockDim.x + threadIdx.x) >> 5), lane = threadIdx.x & 31;
    const int nb = dim / 256;
    const int tok = wi / nb, b = wi - tok * nb;
    if (tok >= 8 * ntl) return; /* whole warps */
    const int i = 256 * b + 8 * lane, m = lane & 3;
    const int64_t kb = 8 * (int64_t)b + (lane >> 2);
    rlcu::pdl_enter();
    if (tok >= n) {
        mmq_put8(q, sc, kb, ntl, tok, m, make_uint2(0, 0), 0.0f, 0.0f);
        return;
    }
    const float4 *gp = reinterpret_cast<const float4 *>(g + (int64_t)tok * ld_g + i);
    const float4 *up = reinterpret_cast<const float4 *>(u + (int64_t)tok * ld_u + i);
    const float4 g0 = gp[0], g1 = gp[1], u0 = up[0], u1 = up[1];
    float v[8] = {glu1(act, g0.x, u0.x), glu1(act, g0.y, u0.y), glu1(act, g0.z, u0.z),
                  glu1(act, g0.w, u0.w), glu1(act, g1.x, u1.x), glu1(act, g1.y, u1.y),
                  glu1(act, g1.z, u1.z), glu1(act, g1.w, u1.w)};
    if (!skip_out) {
        float4 *op = reinterpret_cast<float4 *>(out + (int64_t)tok * dim + i);
        op[0] = make_float4(v[0], v[1], v[2], v[3]);
        op[1] = make_float4(v[4], v[5], v[6], v[7]);
    }
    float d, sum;
    const uint2 c = MODE == XQ_MMQ256 ? mmq_quant256(v, &d, &sum) : mmq_quant32(v, &d, &sum);
    mmq_put8(q, sc, kb, ntl, tok, m, c, d, sum);
}

__global__ void get_rows_f32_kernel(const float *src, const int32_t *ids, int64_t dim, float *dst) {
    rlcu::pdl_enter();
    const int64_t t = blockIdx.y;
    const float *s = src + (int64_t)ids[t] * dim;
    float *d = dst + t * dim;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < dim;
         i += (int64_t)gridDim.x * blockDim.x)
        d[i] = s[i];
}

/* In place (ids[t] >= t): rows in order, one block, so that no row is overwritten before
 * the rows that read it. */
__global__ void compact_rows_kernel(float *x, const int32_t *ids, int64_t n, int64_t dim) {
    rlcu::pdl_enter();
    for (int64_t t = 0; t < n; t++) {
        if (ids[t] != t) {
            const float *s = x + (int64_t)ids[t] * dim;
            float *d = x + t * dim;
            for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) d[i] = s[i];
        }
        __syncthreads();
    }
}

__global__ void add_rows_scaled_kernel(float *x, int64_t dim, const int32_t *ids, const float *w,
                                       int64_t n, const float *y) {
    rlcu::pdl_enter();
    GRID_STRIDE(idx, n * dim) {
        const int64_t t = idx / dim, i = idx % dim;
        x[(int64_t)ids[t] * dim + i] += y[idx] * w[t];
    }
}

/* The K and V rows of a pass in one launch: element (or Q8_0 block) e of token t's
 * concatenated row [a's ne | b's ne] goes to side a or b (b.ne = 0: one side). */
__device__ __forceinline__ const rl__cu_kv_side &kv_pick(const rl__cu_kv_side &a,
                                                         const rl__cu_kv_side &b, int64_t *e) {
    if (*e < a.ne) return a;
    *e -= a.ne;
    return b;
}

__global__ void kv_write_f32_kernel(rl__cu_kv_side a, rl__cu_kv_side b, int64_t n,
                                    const int32_t *cells) {
    rlcu::pdl_enter();
    const int64_t ne = a.ne + b.ne;
    GRID_STRIDE(idx, n * ne) {
        const int64_t t = idx / ne;
        int64_t i = idx % ne;
        const rl__cu_kv_side &k = kv_pick(a, b, &i);
        reinterpret_cast<float *>(static_cast<uint8_t *>(k.tab) + (size_t)cells[t] * k.row_bytes)[i] =
            k.src[t * k.ld + i];
    }
}

__global__ void kv_write_f16_kernel(rl__cu_kv_side a, rl__cu_kv_side b, int64_t n,
                                    const int32_t *cells) {
    rlcu::pdl_enter();
    const int64_t ne = a.ne + b.ne;
    GRID_STRIDE(idx, n * ne) {
        const int64_t t = idx / ne;
        int64_t i = idx % ne;
        const rl__cu_kv_side &k = kv_pick(a, b, &i);
        reinterpret_cast<__half *>(static_cast<uint8_t *>(k.tab) + (size_t)cells[t] * k.row_bytes)[i] =
            __float2half_rn(k.src[t * k.ld + i]);
    }
}

/* Q8_0 as the CPU's activation quantizer: d = amax / 127, q = roundf(x / d) (half away
 * from zero), d stored as fp16. One thread per block of 32. */
__global__ void kv_write_q8_0_kernel(rl__cu_kv_side a, rl__cu_kv_side b, int64_t n,
                                     const int32_t *cells) {
    rlcu::pdl_enter();
    const rl__cu_kv_side a32 = {a.tab, a.row_bytes, a.src, a.ld, a.ne / 32};
    const rl__cu_kv_side b32 = {b.tab, b.row_bytes, b.src, b.ld, b.ne / 32};
    const int64_t nb = a32.ne + b32.ne;
    GRID_STRIDE(idx, n * nb) {
        const int64_t t = idx / nb;
        int64_t bi = idx % nb;
        const rl__cu_kv_side &k = kv_pick(a32, b32, &bi);
        const float *x = k.src + t * k.ld + bi * 32;
        uint8_t *blk = static_cast<uint8_t *>(k.tab) + (size_t)cells[t] * k.row_bytes + bi * RL_CU_Q8_0_BYTES;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        /* blocks are 34 bytes in rows of even size: d is 2-aligned */
        *reinterpret_cast<unsigned short *>(blk) = __half_as_ushort(__float2half_rn(d));
        for (int j = 0; j < 32; j++) blk[RL_CU_Q8_0_QS + j] = (uint8_t)(int8_t)roundf(x[j] * id);
    }
}

__global__ void kv_copy_kernel(uint8_t *tab, size_t row_bytes, const int32_t *src,
                               const int32_t *dst, int64_t n) {
    rlcu::pdl_enter();
    GRID_STRIDE(idx, n * (int64_t)row_bytes) {
        const int64_t t = idx / (int64_t)row_bytes, i = idx % (int64_t)row_bytes;
        tab[(size_t)dst[t] * row_bytes + i] = tab[(size_t)src[t] * row_bytes + i];
    }
}

} // namespace

extern "C" cudaError_t rl__cu_get_rows(cudaStream_t s, int type, bool vec, const void *w,
                                       size_t row_bytes, int64_t K, const int32_t *ids, int64_t n,
                                       float *y) {
    if (n <= 0) return cudaSuccess;
    if (n > 65535) return cudaErrorInvalidValue;
    switch (type) {
#define RL_CU_CASE(id, Tr)                                                                         \
    case id:                                                                                       \
        return get_rows_launch<Tr>(s, w, row_bytes, K, ids, n, y);
        RL_CU_BLOCK_TYPES(RL_CU_CASE)
#undef RL_CU_CASE
    case RL_TYPE_F32:
        return vec ? get_rows_launch<TF32>(s, w, row_bytes, K, ids, n, y)
                   : get_rows_launch<TF32S>(s, w, row_bytes, K, ids, n, y);
    case RL_TYPE_F16:
        return vec ? get_rows_launch<TF16>(s, w, row_bytes, K, ids, n, y)
                   : get_rows_launch<TF16S>(s, w, row_bytes, K, ids, n, y);
    case RL_TYPE_BF16:
        return vec ? get_rows_launch<TBF16>(s, w, row_bytes, K, ids, n, y)
                   : get_rows_launch<TBF16S>(s, w, row_bytes, K, ids, n, y);
    default:
        return cudaErrorInvalidValue;
    }
}

static bool g_norm8 = true; /* RUVLLM_CUDA_NORM8=0: rmsnorm_kernel for every row */
/* The most blocks a row of rmsnorm8_kernel (clusters, norm8_cluster): RUVLLM_CUDA_NORM_CL
 * (2 or 4, the default; 0 or 1: a block a row always); the device's SMs */
static int g_norm_cl = 4;
static int g_sms = 132;
/* RUVLLM_CUDA_EARLY=mask lets the next kernel launch before the wait of rmsnorm8 (1),
 * rope_kv (2), glu4 (4): off by default (all three on measured 2-4% slower at one token of
 * the 1B shape, H100), except the norms whose calls ask for it (early: step.c's records of
 * norms before one-token F16 and Q8_0 products). */
static int g_early = 0;
enum { EARLY_NORM = 1, EARLY_ROPE = 2, EARLY_GLU = 4 };

static bool norm8_ok(int64_t dim, const float *x, const float *y, const float *add,
                     const float *w) {
    return dim % 256 == 0 && dim <= 8192 && (uintptr_t)x % 16 == 0 && (uintptr_t)y % 16 == 0 &&
           (!add || (uintptr_t)add % 16 == 0) && (!w || (uintptr_t)w % 16 == 0) && g_norm8;
}

extern "C" bool rl__cu_rmsnorm_mmq_ok(int64_t n, int64_t dim, const float *x, const float *y,
                                      const float *add, const float *w) {
    return n >= RL_CU_MMQ_MIN_N && n < 0x7fffff00 && norm8_ok(dim, x, y, add, w);
}

extern "C" bool rl__cu_rmsnorm_part_ok(int64_t n, int64_t dim, const float *x, const float *y,
                                       const float *add, const float *w, const float *part) {
    return n > 0 && n < 0x7fffff00 && add && part && (uintptr_t)part % 16 == 0 &&
           norm8_ok(dim, x, y, add, w);
}

/* Whether the next kernel may launch before this call's norm waits (asked: the caller's
 * early). */
static bool norm_early(bool asked) { return (g_early & EARLY_NORM) != 0 || asked; }

/* Blocks a row of rmsnorm8_kernel over `rows` rows of dim values: 4 or 2 (a cluster) where
 * a block a row would leave most SMs idle, from NORM_CL_MIN_N tokens (where mmq.cu's tiled
 * products follow), whole warps a block; else 1. H100, 8B Q4_K_M, ruvllm bench --parallel
 * 8,32,64, alternated in one call: 64 sequences 7,728 / 7,762 tok/s -> 7,819 / 7,783 (2: 7,788);
 * at 32 (all tokens on the streaming products) 6,057 / 6,032 -> 6,037 / 5,972, so not there. */
constexpr int64_t NORM_CL_MIN_N = 33;

static int norm8_cluster(int64_t n, int64_t rows, int64_t dim) {
    if (g_norm_cl < 2 || !rlcu::g_sm90 || n < NORM_CL_MIN_N) return 1;
    for (int cl = g_norm_cl >= 4 ? 4 : 2; cl > 1; cl /= 2)
        if (rows * cl <= 2 * (int64_t)g_sms && (dim / 8) % (32 * cl) == 0) return cl;
    return 1;
}

/* rmsnorm8_kernel's launch (norm8_ok). */
static cudaError_t norm8_launch(cudaStream_t s, const float *x, int64_t n, int64_t dim, float eps,
                                const float *w, float *y, void *xq, int xl, const float *add,
                                const float *part, int nz, float *psum, bool early, unsigned skip) {
    const int ntl = rl__cu_xq_mmq(xl) ? mmq_ntl(n) : 0;
    const int64_t rows = rl__cu_xq_mmq(xl) ? 8 * ntl : n;
    const int cl = norm8_cluster(n, rows, dim);
    (void)rlcu::launch_cluster(rmsnorm8_kernel, (unsigned)(rows * cl), (unsigned)(dim / 8 / cl),
                               (unsigned)cl, 0, s, const_cast<float *>(x), add, dim, eps, w, y,
                               static_cast<int8_t *>(xq), n, early, xl, ntl, part, nz, psum, cl,
                               skip);
    return cudaGetLastError();
}

extern "C" cudaError_t rl__cu_rmsnorm_part(cudaStream_t s, const float *x, int64_t n, int64_t dim,
                                           float eps, const float *w, float *y, void *xq,
                                           int xq_mode, float *add, const float *part, int nz,
                                           bool early_asked, unsigned skip) {
    const bool early = norm_early(early_asked);
    if (n <= 0) return cudaSuccess;
    const int xl = xq ? xq_mode : XQ_Q8;
    if (nz < 1 || !rl__cu_rmsnorm_part_ok(n, dim, x, y, add, w, part) || (xq && dim % 256) ||
        !rl__cu_xq_mode_ok(xl) ||
        (rl__cu_xq_mmq(xl) && !rl__cu_rmsnorm_mmq_ok(n, dim, x, y, add, w)) ||
        (skip & ~(unsigned)(RL_CU_SKIP_Y | RL_CU_SKIP_SUM)) || (skip && !rl__cu_xq_mmq(xl)))
        return cudaErrorInvalidValue;
    return norm8_launch(s, x, n, dim, eps, w, y, xq, xl, NULL, part, nz, add, early, skip);
}

extern "C" cudaError_t rl__cu_rmsnorm(cudaStream_t s, const float *x, int64_t n, int64_t dim,
                                      float eps, const float *w, float *y, void *xq,
                                      int xq_mode, const float *add, bool early_asked,
                                      unsigned skip) {
    const bool early = norm_early(early_asked);
    if (n <= 0) return cudaSuccess;
    const int xl = xq ? xq_mode : XQ_Q8;
    if (n > 0x7fffffff || (xq && dim % 256) || !rl__cu_xq_mode_ok(xl)) return cudaErrorInvalidValue;
    if (rl__cu_xq_mmq(xl) && !rl__cu_rmsnorm_mmq_ok(n, dim, x, y, add, w))
        return cudaErrorInvalidValue;
    if (skip && (skip != RL_CU_SKIP_Y || !rl__cu_xq_mmq(xl))) return cudaErrorInvalidValue;
    if (norm8_ok(dim, x, y, add, w))
        return norm8_launch(s, x, n, dim, eps, w, y, xq, xl, add, NULL, 0, NULL, early, skip);
    const int threads = dim >= 1024 ? 1024 : dim >= 256 ? 256 : 64;
    (void)rlcu::launch(rmsnorm_kernel, (unsigned)n, threads, 0, s, const_cast<float *>(x), add,
                       dim, eps, w, y, static_cast<int8_t *>(xq), n, xl);
    return cudaGetLastError();
}

extern "C" cudaError_t rl__cu_rope(cudaStream_t s, float *x, int64_t ld, int n_head, float *x2,
                                   int64_t ld2, int n_head2, int64_t n, int head_dim, int n_rot,
                                   bool neox, const float *tab) {
    const int64_t total = n * (n_head + (x2 ? n_head2 : 0)) * (n_rot / 2);
    if (total <= 0) return cudaSuccess;
    (void)rlcu::launch(rope_kernel, ew_blocks(total), EW_THREADS, 0, s, x, ld, n_head, x2, ld2,
                       x2 ? n_head2 : 0, n, head_dim, n_rot, neox, tab);
    return cudaGetLastError();
}

extern "C" bool rl__cu_rope_kv_ok(const rl__cu_rope_kv_args *a) {
    const int64_t per = (int64_t)a->n_head * (a->n_rot / 2) +
                        (int64_t)a->n_head_k * (a->head_dim / 2) + a->n_embd_v / 2;
    return (a->kv_type == RL_TYPE_F16 || a->kv_type == RL_TYPE_F32) && a->head_dim > 0 &&
           a->head_dim % 2 == 0 && a->n_rot > 0 && a->n_rot % 2 == 0 &&
           a->n_rot <= a->head_dim && a->n_embd_v % 2 == 0 && a->n_head >= 0 &&
           a->n_head_k >= 0 && a->n_embd_v >= 0 && a->n >= 0 && per < 0x7fffff00 &&
           a->n * per < 0x7fffff00 &&
           (!a->q_part || (a->q_nz >= 1 && a->n_rot == a->head_dim &&
                           a->ld == (int64_t)a->n_head * a->head_dim));
}

extern "C" cudaError_t rl__cu_rope_kv(cudaStream_t s, const rl__cu_rope_kv_args *a) {
    if (!rl__cu_rope_kv_ok(a)) return cudaErrorInvalidValue;
    const int per = a->n_head * (a->n_rot / 2) + a->n_head_k * (a->head_dim / 2) +
                    (int)(a->n_embd_v / 2);
    const int total = (int)(a->n * per);
    if (total <= 0) return cudaSuccess;
    const unsigned blocks = (unsigned)((total + EW_THREADS - 1) / EW_THREADS);
    (void)rlcu::launch(a->kv_type == RL_TYPE_F16 ? rope_kv_kernel<true> : rope_kv_kernel<false>,
                       blocks, EW_THREADS, 0, s, *a, per, total, (g_early & EARLY_ROPE) != 0);
    return cudaGetLastError();
}

extern "C" cudaError_t rl__cu_add_row(cudaStream_t s, float *x, int64_t n, int64_t dim, int64_t ld,
                                      const float *b) {
    if (n * dim <= 0) return cudaSuccess;
    (void)rlcu::launch(add_row_kernel, ew_blocks(n * dim), EW_THREADS, 0, s, x, n, dim, ld, b);
    return cudaGetLastError();
}

extern "C" cudaError_t rl__cu_add(cudaStream_t s, float *x, const float *y, int64_t n) {
    if (n <= 0) return cudaSuccess;
    (void)rlcu::launch(add_kernel, ew_blocks(n), EW_THREADS, 0, s, x, y, n);
    return cudaGetLastError();
}

extern "C" cudaError_t rl__cu_scale(cudaStream_t s, float *x, int64_t n, float v) {
    if (n <= 0) return cudaSuccess;
    (void)rlcu::launch(scale_kernel, ew_blocks(n), EW_THREADS, 0, s, x, n, v);
    return cudaGetLastError();
}

extern "C" cudaError_t rl__cu_softcap(cudaStream_t s, float *x, int64_t n, float c) {
    if (n <= 0) return cudaSuccess;
    (void)rlcu::launch(softcap_kernel, ew_blocks(n), EW_THREADS, 0, s, x, n, c);
    return cudaGetLastError();
}

/* A kernel rather than cudaMemcpyAsync: inside a queued list (step.h) the copy joins the
 * chain of programmatic launches (a memcpy node in a captured graph breaks it: the kernel
 * after it cannot start early), and compute-sanitizer 13.0 crashed inside cuGraphLaunch on
 * the graphs of test_cuda_ops whose lists held such memcpy nodes (a SIGSEGV in its own
 * library, under memcheck and racecheck); with this kernel the same tests run to the end
 * under both. RUVLLM_CUDA_COPY_NODE=1 (step.c) brings the memcpy back. */
extern "C" cudaError_t rl__cu_copy(cudaStream_t s, void *dst, const void *src, size_t bytes) {
    if (!bytes) return cudaSuccess;
    const bool vec = (uintptr_t)dst % 16 == 0 && (uintptr_t)src % 16 == 0;
    const int64_t items = vec ? (int64_t)(bytes / 16) : (int64_t)bytes;
    (void)rlcu::launch(copy_kernel, ew_blocks(items > 0 ? items : 1), EW_THREADS, 0, s,
                       static_cast<uint8_t *>(dst), static_cast<const uint8_t *>(src), bytes, vec);
    return cudaGetLastError();
}

extern "C" cudaError_t rl__cu_fill(cudaStream_t s, float *x, int64_t n, float v) {
    if (n <= 0) return cudaSuccess;
    (void)rlcu::launch(fill_kernel, ew_blocks(n), EW_THREADS, 0, s, x, n, v);
    return cudaGetLastError();
}

extern "C" bool rl__cu_glu_mmq_ok(const float *g, int64_t ld_g, const float *u, int64_t ld_u,
                                  int64_t n, int64_t dim, const float *out) {
    return n >= RL_CU_MMQ_MIN_N && dim % 256 == 0 && ld_g % 4 == 0 && ld_u % 4 == 0 &&
           (uintptr_t)g % 16 == 0 && (uintptr_t)u % 16 == 0 && (uintptr_t)out % 16 == 0 &&
           (n + 7) / 8 * 8 * dim < 0x7fffff00 &&
           (n - 1) * (ld_g > ld_u ? ld_g : ld_u) + dim < 0x7fffff00;
}

extern "C" cudaError_t rl__cu_glu(cudaStream_t s, int act, const float *g, int64_t ld_g,
                                  const float *u, int64_t ld_u, int64_t n, int64_t dim, float *out,
                                  void *xq, int xq_mode, unsigned skip) {
    if (n * dim <= 0) return cudaSuccess;
    const int xl = xq ? xq_mode : XQ_Q8;
    if (!rl__cu_xq_mode_ok(xl) || (skip && (skip != RL_CU_SKIP_Y || !rl__cu_xq_mmq(xl))))
        return cudaErrorInvalidValue;
    if (rl__cu_xq_mmq(xl)) {
        if (!rl__cu_glu_mmq_ok(g, ld_g, u, ld_u, n, dim, out)) return cudaErrorInvalidValue;
        const int ntl = mmq_ntl(n);
        const int64_t threads = (int64_t)8 * ntl * dim / 8; /* a warp per 256 outputs */
        const unsigned blocks = (unsigned)((threads + EW_THREADS - 1) / EW_THREADS);
        uint32_t *q = static_cast<uint32_t *>(xq);
        float2 *sc =
            reinterpret_cast<float2 *>(static_cast<uint8_t *>(xq) + mmq_codes_bytes(dim, ntl));
        (void)rlcu::launch(xl == XQ_MMQ256 ? glu_mmq_kernel<XQ_MMQ256> : glu_mmq_kernel<XQ_MMQ32>,
                           blocks, EW_THREADS, 0, s, act, g, (int)ld_g, u, (int)ld_u, (int)n,
                           (int)dim, out, q, sc, ntl, skip != 0);
        return cudaGetLastError();
    }
    if (xq) {
        if (dim % 256) return cudaErrorInvalidValue;
        const int64_t threads = n * dim / 8; /* a warp per 256 outputs */
        (void)rlcu::launch(glu_q8_kernel, (unsigned)((threads + EW_THREADS - 1) / EW_THREADS), EW_THREADS, 0, s, 
            act, g, ld_g, u, ld_u, n, dim, out, static_cast<int8_t *>(xq), xl);
        return cudaGetLastError();
    }
    if (dim % 4 == 0 && ld_g % 4 == 0 && ld_u % 4 == 0 && (uintptr_t)g % 16 == 0 &&
        (uintptr_t)u % 16 == 0 && (uintptr_t)out % 16 == 0 && n * dim < 0x7fffff00 &&
        (n - 1) * (ld_g > ld_u ? ld_g : ld_u) + dim < 0x7fffff00) {
        const int n4 = (int)(n * dim / 4);
        (void)rlcu::launch(glu4_kernel, (unsigned)((n4 + EW_THREADS - 1) / EW_THREADS), EW_THREADS, 0,
                           s, act, g, (int)ld_g, u, (int)ld_u, n4, (int)(dim / 4), out,
                           (g_early & EARLY_GLU) != 0);
        return cudaGetLastError();
    }
    (void)rlcu::launch(glu_kernel, ew_blocks(n * dim), EW_THREADS, 0, s, act, g, ld_g, u, ld_u, n, dim, out);
    return cudaGetLastError();
}

extern "C" cudaError_t rl__cu_get_rows_f32(cudaStream_t s, const float *src, const int32_t *ids,
                                           int64_t n, int64_t dim, float *dst) {
    if (n <= 0 || dim <= 0) return cudaSuccess;
    if (src == dst) {
        (void)rlcu::launch(compact_rows_kernel, 1, 1024, 0, s, dst, ids, n, dim);
    } else {
        if (n > 65535) return cudaErrorInvalidValue;
        dim3 grid((unsigned)((dim + EW_THREADS - 1) / EW_THREADS), (unsigned)n);
        (void)rlcu::launch(get_rows_f32_kernel, grid, EW_THREADS, 0, s, src, ids, dim, dst);
    }
    return cudaGetLastError();
}

extern "C" cudaError_t rl__cu_add_rows_scaled(cudaStream_t s, float *x, int64_t dim,
                                              const int32_t *ids, const float *w, int64_t n,
                                              const float *y) {
    if (n * dim <= 0) return cudaSuccess;
    (void)rlcu::launch(add_rows_scaled_kernel, ew_blocks(n * dim), EW_THREADS, 0, s, x, dim, ids, w, n, y);
    return cudaGetLastError();
}

extern "C" cudaError_t rl__cu_kv_write(cudaStream_t s, int type, const rl__cu_kv_side *a,
                                       const rl__cu_kv_side *b, int64_t n, const int32_t *cells) {
    const rl__cu_kv_side none = {NULL, 0, NULL, 0, 0};
    const rl__cu_kv_side bb = b ? *b : none;
    const int64_t ne = a->ne + bb.ne;
    if (n * ne <= 0) return cudaSuccess;
    switch (type) {
    case RL_TYPE_F32:
        (void)rlcu::launch(kv_write_f32_kernel, ew_blocks(n * ne), EW_THREADS, 0, s, *a, bb, n, cells);
        break;
    case RL_TYPE_F16:
        (void)rlcu::launch(kv_write_f16_kernel, ew_blocks(n * ne), EW_THREADS, 0, s, *a, bb, n, cells);
        break;
    case RL_TYPE_Q8_0:
        if (a->ne % 32 || bb.ne % 32) return cudaErrorInvalidValue;
        (void)rlcu::launch(kv_write_q8_0_kernel, ew_blocks(n * ne / 32), EW_THREADS, 0, s, *a, bb, n,
                           cells);
        break;
    default:
        return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

extern "C" cudaError_t rl__cu_kv_copy(cudaStream_t s, void *tab, size_t row_bytes,
                                      const int32_t *src, const int32_t *dst, int64_t n) {
    if (n <= 0) return cudaSuccess;
    (void)rlcu::launch(kv_copy_kernel, ew_blocks(n * (int64_t)row_bytes), EW_THREADS, 0, s, 
        static_cast<uint8_t *>(tab), row_bytes, src, dst, n);
    return cudaGetLastError();
}

extern "C" cudaError_t rl__cu_init(const int8_t iq4_values[16], size_t smem_max) {
    const char *nv = getenv("RUVLLM_CUDA_NORM8");
    g_norm8 = !(nv && nv[0] == '0');
    const char *cv = getenv("RUVLLM_CUDA_NORM_CL");
    g_norm_cl = cv && cv[0] >= '0' && cv[0] <= '9' ? atoi(cv) : 4;
    {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && v > 0)
            g_sms = v;
        cudaGetLastError();
    }
    const char *ev = getenv("RUVLLM_CUDA_EARLY");
    g_early = ev ? (int)strtol(ev, NULL, 10) & 7 : 0;
    cudaError_t e = rl_cu_set_iq4(iq4_values);
    if (e == cudaSuccess) e = rlcu::pdl_init();
    if (e == cudaSuccess) e = rl__cu_init_matmul(iq4_values);
    if (e == cudaSuccess) e = rl__cu_init_attention(smem_max);
    if (e == cudaSuccess) e = rl__cu_init_matvec();
    return e;
}
