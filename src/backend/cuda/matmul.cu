/*
 * matmul.cu - y[n][rows] = x[n][K] W^T with W in any decoded type (qtypes.cuh).
 *
 * Decode (n <= 8): a fused dequantize-and-dot matrix-vector kernel. W warps share a
 * weight row (W = 1, 2 or 4, more for fewer rows, so that small matrices still put
 * thousands of warps in flight); lane i of warp w decodes chunks (32 w + i) + 32 W k of 8
 * values, so a warp sweeps 256 consecutive values (one k-quant super-block, eight legacy
 * blocks) per step and every weight byte comes from DRAM once; the up to 8 activation
 * rows are read from L1/L2. Partial sums meet in warp shuffles, then shared memory.
 *
 * Prefill (n > 8): a tiled product in float (64 tokens x 64 rows x 32 values per tile,
 * 4 x 4 outputs per thread; the weight tile decoded into shared memory as it is loaded)
 * for F32 weights and where cuBLAS is not used; the other types go to tensor cores
 * (gemm.c) through the 16-bit operands the kernels at the end of this file make.
 */
#include "qtypes.cuh"

#include <type_traits>

using namespace rlcu;

namespace {

constexpr int GEMV_WARPS = 4;

template <class T, int NC>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_kernel(const uint8_t *__restrict__ w, size_t row_bytes, int64_t rows, int64_t K,
                const float *__restrict__ x, int n, float *__restrict__ y, int wpr) {
    __shared__ float part[GEMV_WARPS][NC];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int64_t r = (int64_t)blockIdx.x * (GEMV_WARPS / wpr) + warp / wpr;
    const int sub = warp % wpr;
    const bool live = r < rows;
    const uint8_t *wr = w + (size_t)(live ? r : 0) * row_bytes;
    const int64_t nch = live ? K / T::NV : 0;
    float acc[NC];
#pragma unroll
    for (int t = 0; t < NC; t++) acc[t] = 0.0f;
#pragma unroll 4
    for (int64_t c = 32 * sub + lane; c < nch; c += 32 * wpr) {
        float wv[T::NV];
        T::chunk(wr, c, wv);
#pragma unroll
        for (int t = 0; t < NC; t++) {
            if (t < n) {
                const float *xp = x + (size_t)t * K + c * T::NV;
                if constexpr (T::NV == 8) {
                    const float4 a = reinterpret_cast<const float4 *>(xp)[0];
                    const float4 b = reinterpret_cast<const float4 *>(xp)[1];
                    acc[t] += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w + wv[4] * b.x +
                              wv[5] * b.y + wv[6] * b.z + wv[7] * b.w;
                } else {
                    acc[t] += wv[0] * xp[0];
                }
            }
        }
    }
#pragma unroll
    for (int t = 0; t < NC; t++) {
        float v = acc[t];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0) part[warp][t] = v;
    }
    __syncthreads();
    if (!live || sub != 0 || lane >= NC || lane >= n) return;
    float v = 0.0f;
    for (int k = 0; k < wpr; k++) v += part[warp + k][lane];
    y[(size_t)lane * rows + r] = v;
}

/* ---- decode kernels for the k-quants of Q4_K_M files (Q4_K, Q6_K) ----
 * The generic kernel above decodes 8 values per lane from 2-byte loads and reads each
 * activation once per row. These read a super-block (256 values) with 8 lanes, each lane
 * 32 values from 16 or 24 contiguous bytes, and decode nibbles to float with byte
 * permutes (0x4B0000bb is the float 2^23 + bb); a warp keeps R rows in flight and reuses
 * every activation load for all of them. */

/* 16 bytes of weights that are read once: past L1, which keeps the activations. */
__device__ __forceinline__ uint4 ld16_stream(const uint8_t *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

/* 2^23 + the byte k of v, as float (exact): subtract the offset to get the byte. */
template <int k> __device__ __forceinline__ float bytef(uint32_t v) {
    return __int_as_float((int)__byte_perm(v, 0x4B000000u, 0x7540 + k));
}

/* sum over the 4 bytes b_i of v of (b_i - bias) * a_i, with off = 2^23 + bias */
__device__ __forceinline__ float dot4(uint32_t v, float4 a, float off, float acc) {
    acc = fmaf(bytef<0>(v) - off, a.x, acc);
    acc = fmaf(bytef<1>(v) - off, a.y, acc);
    acc = fmaf(bytef<2>(v) - off, a.z, acc);
    acc = fmaf(bytef<3>(v) - off, a.w, acc);
    return acc;
}

/* Q4_K (ggml-common.h block_q4_K): lane t of 8 takes qs bytes 16t..16t+15: low nibbles
 * are values 64j + 16h + 0..15 (sub-block 2j), high nibbles 32 further (sub-block 2j+1),
 * j = t/2, h = t%2. y = sum d*sc*q*x - dmin*m*x over both sub-blocks. */
struct GQ4_K {
    static constexpr int BYTES = RL_CU_Q4_K_BYTES;
    static constexpr bool ALIGN16 = true; /* 16-byte loads of qs */
    struct W {
        uint4 q;
        float dl0, ml0, dl1, ml1;
    };
    __device__ static W load(const uint8_t *b, int t) {
        W w;
        const int j = t >> 1;
        const float d = h2f(b), dmin = h2f(b + 2);
        int sc, m;
        k4_scale_min(b + RL_CU_Q4_K_SCALES, 2 * j, &sc, &m);
        w.dl0 = d * (float)sc;
        w.ml0 = dmin * (float)m;
        k4_scale_min(b + RL_CU_Q4_K_SCALES, 2 * j + 1, &sc, &m);
        w.dl1 = d * (float)sc;
        w.ml1 = dmin * (float)m;
        w.q = ld16_stream(b + RL_CU_Q4_K_QS + 16 * t);
        return w;
    }
    /* xv[0..3]: values e0..e0+15, xv[4..7]: e0+32..e0+47; xs: their two sums */
    __device__ static void xload(const float *xb, int t, float4 *xv, float *xs) {
        const float4 *p = reinterpret_cast<const float4 *>(xb + 64 * (t >> 1) + 16 * (t & 1));
#pragma unroll
        for (int i = 0; i < 4; i++) {
            xv[i] = p[i];
            xv[4 + i] = p[8 + i];
        }
        float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            s0 += (xv[i].x + xv[i].y) + (xv[i].z + xv[i].w);
            s1 += (xv[4 + i].x + xv[4 + i].y) + (xv[4 + i].z + xv[4 + i].w);
        }
        xs[0] = s0;
        xs[1] = s1;
    }
    __device__ static float dot(const W &w, const float4 *xv, const float *xs) {
        constexpr float off = 8388608.0f;
        const uint32_t q[4] = {w.q.x, w.q.y, w.q.z, w.q.w};
        float lo = 0.0f, hi = 0.0f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            lo = dot4(q[i] & 0x0f0f0f0fu, xv[i], off, lo);
            hi = dot4((q[i] >> 4) & 0x0f0f0f0fu, xv[4 + i], off, hi);
        }
        return (w.dl0 * lo - w.ml0 * xs[0]) + (w.dl1 * hi - w.ml1 * xs[1]);
    }
};

/* Q6_K (block_q6_K): lane t of 8 takes half h = t/4 of the super-block and l = 8(t%4) ..
 * +7 of it: ql bytes 64h + l (low nibbles: values 128h + l, high: + 64) and 64h + 32 + l
 * (values + 32, + 96), qh bytes 32h + l (two bits for each of the four). */
struct GQ6_K {
    static constexpr int BYTES = RL_CU_Q6_K_BYTES;
    static constexpr bool ALIGN16 = false; /* 210-byte blocks: 2-byte loads */
    struct W {
        uint2 qa, qb, qh;
        float s[4]; /* d * scale of each group of 8 */
    };
    __device__ static W load(const uint8_t *b, int t) {
        W w;
        const int h = t >> 2, l = 8 * (t & 3);
        w.qa = ld8_b2(b + 64 * h + l);
        w.qb = ld8_b2(b + 64 * h + 32 + l);
        w.qh = ld8_b2(b + RL_CU_Q6_K_QH + 32 * h + l);
        const float d = h2f(b + RL_CU_Q6_K_D);
        const int8_t *sc = reinterpret_cast<const int8_t *>(b + RL_CU_Q6_K_SCALES) + 8 * h + (l >> 4);
#pragma unroll
        for (int k = 0; k < 4; k++) w.s[k] = d * (float)sc[2 * k];
        return w;
    }
    /* xv[2k], xv[2k+1]: values 128h + 32k + l .. +7 */
    __device__ static void xload(const float *xb, int t, float4 *xv, float *xs) {
        const float *p = xb + 128 * (t >> 2) + 8 * (t & 3);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            xv[2 * k] = reinterpret_cast<const float4 *>(p + 32 * k)[0];
            xv[2 * k + 1] = reinterpret_cast<const float4 *>(p + 32 * k)[1];
        }
        xs[0] = xs[1] = 0.0f;
    }
    __device__ static float dot(const W &w, const float4 *xv, const float *xs) {
        constexpr float off = 8388608.0f + 32.0f;
        const uint32_t a[2] = {w.qa.x, w.qa.y}, b[2] = {w.qb.x, w.qb.y}, hb[2] = {w.qh.x, w.qh.y};
        float g[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const uint32_t v0 = (a[i] & 0x0f0f0f0fu) | (hb[i] << 4 & 0x30303030u);
            const uint32_t v1 = (b[i] & 0x0f0f0f0fu) | (hb[i] << 2 & 0x30303030u);
            const uint32_t v2 = (a[i] >> 4 & 0x0f0f0f0fu) | (hb[i] & 0x30303030u);
            const uint32_t v3 = (b[i] >> 4 & 0x0f0f0f0fu) | (hb[i] >> 2 & 0x30303030u);
            g[0] = dot4(v0, xv[0 + i], off, g[0]);
            g[1] = dot4(v1, xv[2 + i], off, g[1]);
            g[2] = dot4(v2, xv[4 + i], off, g[2]);
            g[3] = dot4(v3, xv[6 + i], off, g[3]);
        }
        return (w.s[0] * g[0] + w.s[1] * g[1]) + (w.s[2] * g[2] + w.s[3] * g[3]);
    }
};

/* y[t][r] for R rows per warp and up to NC tokens; wpr warps share a row group, each
 * taking every wpr-th step of 4 super-blocks. */
template <class G, int NC, int R>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_k_kernel(const uint8_t *__restrict__ w, size_t row_bytes, int64_t rows, int64_t K,
                  const float *__restrict__ x, int n, float *__restrict__ y, int wpr) {
    __shared__ float part[GEMV_WARPS][R][NC];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int sub = warp % wpr;
    const int64_t r0 = ((int64_t)blockIdx.x * (GEMV_WARPS / wpr) + warp / wpr) * R;
    const int64_t nsb = K >> 8;
    const int t = lane & 7;
    const uint8_t *wr[R];
#pragma unroll
    for (int r = 0; r < R; r++) wr[r] = w + (size_t)(r0 + r < rows ? r0 + r : rows - 1) * row_bytes;
    float acc[R][NC];
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int k = 0; k < NC; k++) acc[r][k] = 0.0f;
    for (int64_t sb = (lane >> 3) + 4 * sub; sb < nsb; sb += 4 * wpr) {
        typename G::W wv[R];
#pragma unroll
        for (int r = 0; r < R; r++) wv[r] = G::load(wr[r] + (size_t)sb * G::BYTES, t);
#pragma unroll
        for (int k = 0; k < NC; k++) {
            if (k < n) {
                float4 xv[8];
                float xs[2];
                G::xload(x + (size_t)k * K + sb * 256, t, xv, xs);
#pragma unroll
                for (int r = 0; r < R; r++) acc[r][k] += G::dot(wv[r], xv, xs);
            }
        }
    }
#pragma unroll
    for (int r = 0; r < R; r++)
#pragma unroll
        for (int k = 0; k < NC; k++) {
            float v = acc[r][k];
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == 0) part[warp][r][k] = v;
        }
    __syncthreads();
    if (sub != 0 || lane >= R * NC) return;
    const int r = lane / NC, k = lane % NC;
    if (k >= n || r0 + r >= rows) return;
    float v = 0.0f;
    for (int i = 0; i < wpr; i++) v += part[warp + i][r][k];
    y[(size_t)k * rows + r0 + r] = v;
}

template <class G, int NC>
cudaError_t gemv_k(cudaStream_t s, const uint8_t *w, size_t row_bytes, int64_t rows, int64_t K,
                   const float *x, int n, float *y) {
    /* R rows per warp: each activation load serves R rows (at R = 1 the kernel is bound by
     * L1 traffic and latency, far from DRAM; on an H200 whole-model decode was fastest
     * with R = 4 or 8 for tall matrices, 8 for the 8B shape); then warps per row group so
     * that about 4096 warps run, but each warp keeps at least two steps of super-blocks */
    const int R = NC == 1 && rows >= 8192 ? 8 : rows >= 4096 ? 4 : rows >= 1024 ? 2 : 1;
    const int64_t tw = 4096; /* warps wanted in flight */
    const int64_t groups = (rows + R - 1) / R, steps = (K / 256 + 3) / 4;
    int wpr = 1;
    while (wpr < GEMV_WARPS && groups * wpr < tw && steps >= 2 * wpr) wpr *= 2;
    const int64_t gpb = GEMV_WARPS / wpr;
    dim3 grid((unsigned)((groups + gpb - 1) / gpb));
    if constexpr (NC == 1)
        if (R == 8) {
            gemv_k_kernel<G, 1, 8><<<grid, GEMV_WARPS * 32, 0, s>>>(w, row_bytes, rows, K, x, n, y, wpr);
            return cudaGetLastError();
        }
    if (R == 4)
        gemv_k_kernel<G, NC, 4><<<grid, GEMV_WARPS * 32, 0, s>>>(w, row_bytes, rows, K, x, n, y, wpr);
    else if (R == 2)
        gemv_k_kernel<G, NC, 2><<<grid, GEMV_WARPS * 32, 0, s>>>(w, row_bytes, rows, K, x, n, y, wpr);
    else
        gemv_k_kernel<G, NC, 1><<<grid, GEMV_WARPS * 32, 0, s>>>(w, row_bytes, rows, K, x, n, y, wpr);
    return cudaGetLastError();
}

/* The k-quant kernels for T, or false when T has none or the rows are not aligned. */
template <class T>
bool launch_k(cudaStream_t s, const uint8_t *w, size_t row_bytes, int64_t rows, int64_t K,
              const float *x, int64_t n, float *y, cudaError_t *e) {
    if constexpr (std::is_same_v<T, TQ4_K> || std::is_same_v<T, TQ6_K>) {
        using G = std::conditional_t<std::is_same_v<T, TQ4_K>, GQ4_K, GQ6_K>;
        if (K % 256 || (G::ALIGN16 && ((uintptr_t)w % 16 || row_bytes % 16)) || (uintptr_t)x % 16)
            return false;
        if (n == 1)
            *e = gemv_k<G, 1>(s, w, row_bytes, rows, K, x, 1, y);
        else if (n == 2)
            *e = gemv_k<G, 2>(s, w, row_bytes, rows, K, x, 2, y);
        else if (n <= 4)
            *e = gemv_k<G, 4>(s, w, row_bytes, rows, K, x, (int)n, y);
        else
            *e = gemv_k<G, 8>(s, w, row_bytes, rows, K, x, (int)n, y);
        return true;
    } else {
        (void)s, (void)w, (void)row_bytes, (void)rows, (void)K, (void)x, (void)n, (void)y, (void)e;
        return false;
    }
}

constexpr int BM = 64, BN = 64, BK = 32, GEMM_THREADS = 256;

template <class T>
__global__ void __launch_bounds__(GEMM_THREADS)
    gemm_kernel(const uint8_t *__restrict__ w, size_t row_bytes, int64_t rows, int64_t K,
                const float *__restrict__ x, int64_t n, float *__restrict__ y) {
    __shared__ float xs[BK][BM + 4];
    __shared__ float ws[BK][BN + 4];
    const int tid = threadIdx.x;
    const int64_t row0 = (int64_t)blockIdx.x * BN, tok0 = (int64_t)blockIdx.y * BM;
    const int lr = tid >> 2, part = tid & 3; /* loader: row/token lr, values 8*part.. */
    const int ty = tid >> 4, tx = tid & 15;  /* compute: tokens 4*ty.., rows 4*tx.. */
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;

    const bool wrow_ok = row0 + lr < rows;
    const uint8_t *wr = w + (size_t)(wrow_ok ? row0 + lr : 0) * row_bytes;
    const bool xrow_ok = tok0 + lr < n;
    const float *xr = x + (size_t)(xrow_ok ? tok0 + lr : 0) * K;

    for (int64_t k0 = 0; k0 < K; k0 += BK) {
        const int64_t e0 = k0 + 8 * part;
        float wv[8];
        if constexpr (T::NV == 8) {
            if (wrow_ok && e0 < K)
                T::chunk(wr, e0 / 8, wv);
            else
#pragma unroll
                for (int i = 0; i < 8; i++) wv[i] = 0.0f;
        } else {
#pragma unroll
            for (int i = 0; i < 8; i++) {
                if (wrow_ok && e0 + i < K)
                    T::chunk(wr, e0 + i, wv + i);
                else
                    wv[i] = 0.0f;
            }
        }
#pragma unroll
        for (int i = 0; i < 8; i++) {
            ws[8 * part + i][lr] = wv[i];
            xs[8 * part + i][lr] = xrow_ok && e0 + i < K ? xr[e0 + i] : 0.0f;
        }
        __syncthreads();
#pragma unroll 8
        for (int k = 0; k < BK; k++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) a[i] = xs[k][4 * ty + i];
#pragma unroll
            for (int j = 0; j < 4; j++) b[j] = ws[k][4 * tx + j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int64_t t = tok0 + 4 * ty + i;
        if (t >= n) continue;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int64_t r = row0 + 4 * tx + j;
            if (r < rows) y[(size_t)t * rows + r] = acc[i][j];
        }
    }
}

template <class T>
cudaError_t launch(cudaStream_t s, const void *w, size_t row_bytes, int64_t rows, int64_t K,
                   const float *x, int64_t n, float *y) {
    const uint8_t *wb = static_cast<const uint8_t *>(w);
    cudaError_t ek;
    if (n <= 8 && launch_k<T>(s, wb, row_bytes, rows, K, x, n, y, &ek)) return ek;
    if (n <= 8) {
        /* warps per row: enough rows in flight to cover the GPU's latency */
        const int wpr = rows >= 4096 ? 1 : rows >= 2048 ? 2 : 4;
        const int64_t rpb = GEMV_WARPS / wpr;
        dim3 grid((unsigned)((rows + rpb - 1) / rpb));
        dim3 block(GEMV_WARPS * 32);
        if (n == 1)
            gemv_kernel<T, 1><<<grid, block, 0, s>>>(wb, row_bytes, rows, K, x, 1, y, wpr);
        else if (n == 2)
            gemv_kernel<T, 2><<<grid, block, 0, s>>>(wb, row_bytes, rows, K, x, 2, y, wpr);
        else if (n <= 4)
            gemv_kernel<T, 4><<<grid, block, 0, s>>>(wb, row_bytes, rows, K, x, (int)n, y, wpr);
        else
            gemv_kernel<T, 8><<<grid, block, 0, s>>>(wb, row_bytes, rows, K, x, (int)n, y, wpr);
    } else {
        dim3 grid((unsigned)((rows + BN - 1) / BN), (unsigned)((n + BM - 1) / BM));
        gemm_kernel<T><<<grid, GEMM_THREADS, 0, s>>>(wb, row_bytes, rows, K, x, n, y);
    }
    return cudaGetLastError();
}

/* ---- tensor-core operands (gemm.c): weights and activations as 16-bit floats ---- */

__device__ __forceinline__ unsigned short to16(float v, bool half) {
    return half ? __half_as_ushort(__float2half_rn(v)) : __bfloat16_as_ushort(__float2bfloat16_rn(v));
}

/* out[r][K] = row r of w decoded, rounded to F16 (half) or BF16: a thread per chunk. */
template <class T>
__global__ void dequant16_kernel(const uint8_t *__restrict__ w, size_t row_bytes, int64_t rows,
                                 int64_t K, bool half, unsigned short *__restrict__ out) {
    const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= K / T::NV) return;
    for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
        float v[T::NV];
        T::chunk(w + (size_t)r * row_bytes, c, v);
        unsigned short *o = out + (size_t)r * K + c * T::NV;
        if constexpr (T::NV == 8) {
            uint4 p;
            p.x = to16(v[0], half) | (uint32_t)to16(v[1], half) << 16;
            p.y = to16(v[2], half) | (uint32_t)to16(v[3], half) << 16;
            p.z = to16(v[4], half) | (uint32_t)to16(v[5], half) << 16;
            p.w = to16(v[6], half) | (uint32_t)to16(v[7], half) << 16;
            *reinterpret_cast<uint4 *>(o) = p;
        } else {
            o[0] = to16(v[0], half);
        }
    }
}

template <class T>
cudaError_t dequant16(cudaStream_t s, const void *w, size_t row_bytes, int64_t rows, int64_t K,
                      bool half, void *out) {
    const int64_t nch = K / T::NV;
    dim3 grid((unsigned)((nch + 127) / 128), (unsigned)(rows < 65535 ? rows : 65535));
    dequant16_kernel<T><<<grid, 128, 0, s>>>(static_cast<const uint8_t *>(w), row_bytes, rows, K,
                                             half, static_cast<unsigned short *>(out));
    return cudaGetLastError();
}

__global__ void to16_kernel(const float *__restrict__ x, int64_t n, bool half,
                            unsigned short *__restrict__ out) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        out[i] = to16(x[i], half);
}

} // namespace

extern "C" bool rl__cu_tc_half(int type) { return type == RL_TYPE_F16; }

extern "C" cudaError_t rl__cu_dequant16(cudaStream_t s, int type, bool vec, const void *w,
                                        size_t row_bytes, int64_t rows, int64_t K, void *out) {
    if (rows <= 0) return cudaSuccess;
    const bool half = rl__cu_tc_half(type);
    switch (type) {
#define RL_CU_CASE(id, Tr)                                                                         \
    case id:                                                                                       \
        return dequant16<Tr>(s, w, row_bytes, rows, K, half, out);
        RL_CU_BLOCK_TYPES(RL_CU_CASE)
#undef RL_CU_CASE
    case RL_TYPE_F16:
        return vec ? dequant16<TF16>(s, w, row_bytes, rows, K, half, out)
                   : dequant16<TF16S>(s, w, row_bytes, rows, K, half, out);
    case RL_TYPE_BF16:
        return vec ? dequant16<TBF16>(s, w, row_bytes, rows, K, half, out)
                   : dequant16<TBF16S>(s, w, row_bytes, rows, K, half, out);
    default:
        return cudaErrorInvalidValue;
    }
}

extern "C" cudaError_t rl__cu_to16(cudaStream_t s, bool half, const float *x, int64_t n,
                                   void *out) {
    if (n <= 0) return cudaSuccess;
    const int64_t b = (n + 255) / 256;
    to16_kernel<<<(unsigned)(b < 4096 ? b : 4096), 256, 0, s>>>(x, n, half,
                                                              static_cast<unsigned short *>(out));
    return cudaGetLastError();
}

extern "C" cudaError_t rl__cu_matmul(cudaStream_t s, int type, bool vec, const void *w,
                                     size_t row_bytes, int64_t rows, int64_t K, const float *x,
                                     int64_t n, float *y) {
    if (rows <= 0 || n <= 0) return cudaSuccess;
    if ((n + BM - 1) / BM > 65535) return cudaErrorInvalidValue;
    switch (type) {
#define RL_CU_CASE(id, Tr)                                                                         \
    case id:                                                                                       \
        return launch<Tr>(s, w, row_bytes, rows, K, x, n, y);
        RL_CU_BLOCK_TYPES(RL_CU_CASE)
#undef RL_CU_CASE
    case RL_TYPE_F32:
        return vec ? launch<TF32>(s, w, row_bytes, rows, K, x, n, y)
                   : launch<TF32S>(s, w, row_bytes, rows, K, x, n, y);
    case RL_TYPE_F16:
        return vec ? launch<TF16>(s, w, row_bytes, rows, K, x, n, y)
                   : launch<TF16S>(s, w, row_bytes, rows, K, x, n, y);
    case RL_TYPE_BF16:
        return vec ? launch<TBF16>(s, w, row_bytes, rows, K, x, n, y)
                   : launch<TBF16S>(s, w, row_bytes, rows, K, x, n, y);
    default:
        return cudaErrorInvalidValue;
    }
}

extern "C" cudaError_t rl__cu_init_matmul(const int8_t iq4_values[16]) {
    return rl_cu_set_iq4(iq4_values);
}

extern "C" bool rl__cu_type_ok(int type) {
    switch (type) {
#define RL_CU_CASE(id, Tr) case id:
        RL_CU_BLOCK_TYPES(RL_CU_CASE)
        RL_CU_FLOAT_TYPES(RL_CU_CASE)
#undef RL_CU_CASE
        return true;
    default:
        return false;
    }
}
