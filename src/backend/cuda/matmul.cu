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
 * Q4_0, Q8_0, Q4_K and Q6_K products of 5 or more tokens that the backend sends to the q8
 * path go to mmq.cu (int8 tensor cores on the quantized weights) instead.
 */
#include "kq8.cuh"
#include "launch.cuh"
#include "qtypes.cuh"

#include <cstdlib>
#include <type_traits>

using namespace rlcu;

namespace {

constexpr int GEMV_WARPS = 4;

template <class T, int NC>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_kernel(const uint8_t *__restrict__ w, size_t row_bytes, int64_t rows, int64_t K,
                const float *__restrict__ x, int n, float *__restrict__ y, int wpr) {
    rlcu::pdl_enter();
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

/* ---- decode kernels for the k-quants (the lanes' parts in kq8.cuh) ---- */

/* y[t][r] for R rows per warp and up to NC tokens; wpr warps share a row group, each
 * taking every wpr-th step of 4 super-blocks. */
template <class G, int NC, int R>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_k_kernel(const uint8_t *__restrict__ w, size_t row_bytes, int64_t rows, int64_t K,
                  const float *__restrict__ x, int n, float *__restrict__ y, int wpr) {
    rlcu::pdl_enter();
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

/* Tuning knobs of the k-quant decode kernels (RUVLLM_CUDA_GEMV_TW: warps wanted in
 * flight, RUVLLM_CUDA_GEMV_R: most rows per warp), read once at set-up for sweeps. */
static int64_t g_gemv_tw = 4096;
static int g_gemv_rmax = 8;

/* R rows per warp: each activation load serves R rows (at R = 1 the kernel is bound by L1
 * traffic and latency, far from DRAM; on an H200 whole-model decode was fastest with R = 4
 * or 8 for tall matrices, 8 for the 8B shape); then warps per row group so that about
 * g_gemv_tw warps run, but each warp keeps at least two steps of super-blocks. */
struct gemv_shape {
    int R, wpr;
    dim3 grid;
};
static gemv_shape gemv_plan(int NC, int64_t rows, int64_t K) {
    gemv_shape p;
    p.R = NC == 1 && rows >= 8192 ? 8 : rows >= 4096 ? 4 : rows >= 1024 ? 2 : 1;
    while (p.R > g_gemv_rmax) p.R /= 2;
    const int64_t groups = (rows + p.R - 1) / p.R, steps = (K / 256 + 3) / 4;
    p.wpr = 1;
    while (p.wpr < GEMV_WARPS && groups * p.wpr < g_gemv_tw && steps >= 2 * p.wpr) p.wpr *= 2;
    const int64_t gpb = GEMV_WARPS / p.wpr;
    p.grid = dim3((unsigned)((groups + gpb - 1) / gpb));
    return p;
}

template <class G, int NC>
cudaError_t gemv_k(cudaStream_t s, const uint8_t *w, size_t row_bytes, int64_t rows, int64_t K,
                   const float *x, int n, float *y) {
    const gemv_shape p = gemv_plan(NC, rows, K);
    const int R = p.R, wpr = p.wpr;
    const dim3 grid = p.grid;
    if constexpr (NC == 1)
        if (R == 8) {
            (void)rlcu::launch(gemv_k_kernel<G, 1, 8>, grid, GEMV_WARPS * 32, 0, s, w, row_bytes, rows, K, x, n, y, wpr);
            return cudaGetLastError();
        }
    if (R == 4)
        (void)rlcu::launch(gemv_k_kernel<G, NC, 4>, grid, GEMV_WARPS * 32, 0, s, w, row_bytes, rows, K, x, n, y, wpr);
    else if (R == 2)
        (void)rlcu::launch(gemv_k_kernel<G, NC, 2>, grid, GEMV_WARPS * 32, 0, s, w, row_bytes, rows, K, x, n, y, wpr);
    else
        (void)rlcu::launch(gemv_k_kernel<G, NC, 1>, grid, GEMV_WARPS * 32, 0, s, w, row_bytes, rows, K, x, n, y, wpr);
    return cudaGetLastError();
}

/* ---- int8 activations (the q8 path of Q4_K and Q6_K at decode) ----
 * The activation rows are quantized once per product (or once for consecutive products
 * of one input: q, k, v; gate, up) exactly as the CPU's dot products quantize them
 * (rl__quant_q8_K, ggml's block_q8_K: 256 values, the one of largest magnitude mapped to
 * -127, d = 1 / iscale), so the integer sums are the CPU's and only the float order of the
 * scale products differs; the weight codes then meet them in __dp4a (4 int8 products and
 * a sum per instruction) instead of float conversions and FMAs. */

/* The q8 workspace of x [n][K] (K % 256 == 0) in layout xl (cuda_impl.h; n8 = n K / 8):
 * q8ws_warp over each block of 256 values. */
__global__ void quant_q8_kernel(const float *__restrict__ x, int64_t n8, int8_t *__restrict__ xq,
                                int xl) {
    rlcu::pdl_enter();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n8) return; /* n8 % 32 == 0: whole warps leave */
    const float4 a = reinterpret_cast<const float4 *>(x)[2 * i];
    const float4 b = reinterpret_cast<const float4 *>(x)[2 * i + 1];
    const float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
    q8ws_warp(xl, v, xq, 8 * n8, 8 * i);
}

/* gemv_k_kernel with the activations as int8 blocks (codes xq [n][K], residual codes at
 * xq + n K, scales xd [n][K / 256]). */
template <class G, int NC, int R>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_q8_kernel(const uint8_t *__restrict__ w, size_t row_bytes, int64_t rows, int64_t K,
                   const int8_t *__restrict__ xq, const float *__restrict__ xd, int n,
                   float *__restrict__ y, int wpr) {
    __shared__ float part[GEMV_WARPS][R][NC];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int sub = warp % wpr;
    const int64_t r0 = ((int64_t)blockIdx.x * (GEMV_WARPS / wpr) + warp / wpr) * R;
    const int64_t nsb = K >> 8;
    const int t = lane & 7;
    const uint8_t *wr[R];
#pragma unroll
    for (int r = 0; r < R; r++) wr[r] = w + (size_t)(r0 + r < rows ? r0 + r : rows - 1) * row_bytes;
    /* the first step's weights into L2 while the kernel before ends (launch.cuh) */
    if ((lane >> 3) + 4 * sub < nsb)
#pragma unroll
        for (int r = 0; r < R; r++)
            asm volatile("prefetch.global.L2 [%0];" ::"l"(wr[r] + (size_t)((lane >> 3) + 4 * sub) * G::BYTES +
                                                           G::BYTES * t / 8));
    rlcu::pdl_enter();
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
                const size_t o = (size_t)k * K + sb * 256;
                const typename G::X xv = G::xload8(xq + o, xq + (size_t)n * K + o,
                                                   xd[((size_t)k * K >> 8) + sb], t);
#pragma unroll
                for (int r = 0; r < R; r++) acc[r][k] += G::dot8(wv[r], xv);
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
cudaError_t gemv_q8(cudaStream_t s, const uint8_t *w, size_t row_bytes, int64_t rows, int64_t K,
                    const int8_t *xq, const float *xd, int n, float *y) {
    const gemv_shape p = gemv_plan(NC, rows, K);
    const int bt = GEMV_WARPS * 32;
    if constexpr (NC == 1)
        if (p.R == 8) {
            (void)rlcu::launch(gemv_q8_kernel<G, 1, 8>, p.grid, bt, 0, s, w, row_bytes, rows, K, xq, xd, n, y, p.wpr);
            return cudaGetLastError();
        }
    if (p.R >= 4)
        (void)rlcu::launch(gemv_q8_kernel<G, NC, 4>, p.grid, bt, 0, s, w, row_bytes, rows, K, xq, xd, n, y, p.wpr);
    else if (p.R == 2)
        (void)rlcu::launch(gemv_q8_kernel<G, NC, 2>, p.grid, bt, 0, s, w, row_bytes, rows, K, xq, xd, n, y, p.wpr);
    else
        (void)rlcu::launch(gemv_q8_kernel<G, NC, 1>, p.grid, bt, 0, s, w, row_bytes, rows, K, xq, xd, n, y, p.wpr);
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
    rlcu::pdl_enter();
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
            (void)rlcu::launch(gemv_kernel<T, 1>, grid, block, 0, s, wb, row_bytes, rows, K, x, 1, y, wpr);
        else if (n == 2)
            (void)rlcu::launch(gemv_kernel<T, 2>, grid, block, 0, s, wb, row_bytes, rows, K, x, 2, y, wpr);
        else if (n <= 4)
            (void)rlcu::launch(gemv_kernel<T, 4>, grid, block, 0, s, wb, row_bytes, rows, K, x, (int)n, y, wpr);
        else
            (void)rlcu::launch(gemv_kernel<T, 8>, grid, block, 0, s, wb, row_bytes, rows, K, x, (int)n, y, wpr);
    } else {
        dim3 grid((unsigned)((rows + BN - 1) / BN), (unsigned)((n + BM - 1) / BM));
        (void)rlcu::launch(gemm_kernel<T>, grid, GEMM_THREADS, 0, s, wb, row_bytes, rows, K, x, n, y);
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
    rlcu::pdl_enter();
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
    (void)rlcu::launch(dequant16_kernel<T>, grid, 128, 0, s, static_cast<const uint8_t *>(w), row_bytes, rows, K,
                                             half, static_cast<unsigned short *>(out));
    return cudaGetLastError();
}

__global__ void to16_kernel(const float *__restrict__ x, int64_t n, bool half,
                            unsigned short *__restrict__ out) {
    rlcu::pdl_enter();
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
    (void)rlcu::launch(to16_kernel, (unsigned)(b < 4096 ? b : 4096), 256, 0, s, x, n, half,
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
        if (vec && n == 1 && rl__cu_matvec_ok(type, w, row_bytes, rows, K))
            return rl__cu_matvec(s, type, w, row_bytes, rows, K, x, NULL, y);
        return vec ? launch<TF16>(s, w, row_bytes, rows, K, x, n, y)
                   : launch<TF16S>(s, w, row_bytes, rows, K, x, n, y);
    case RL_TYPE_BF16:
        return vec ? launch<TBF16>(s, w, row_bytes, rows, K, x, n, y)
                   : launch<TBF16S>(s, w, row_bytes, rows, K, x, n, y);
    default:
        return cudaErrorInvalidValue;
    }
}

extern "C" size_t rl__cu_q8_bytes(int type, bool vec, const void *w, size_t row_bytes, int64_t K,
                                  int64_t n) {
    if (n == 1 && vec && rl__cu_matvec_q8_type(type) && rl__cu_matvec_ok(type, w, row_bytes, 1, K))
        return (size_t)(2 * K) + (size_t)(K / 256) * sizeof(float);
    if ((type != RL_TYPE_Q4_K && type != RL_TYPE_Q6_K) || !vec || n < 1 || n > 4 || K % 256)
        return 0;
    if (type == RL_TYPE_Q4_K && ((uintptr_t)w % 16 || row_bytes % 16)) return 0;
    return (size_t)(2 * n * K) + (size_t)(n * K / 256) * sizeof(float);
}

extern "C" cudaError_t rl__cu_quant_q8(cudaStream_t s, const float *x, int64_t n, int64_t K,
                                       void *xq, int xq_mode) {
    if (n <= 0) return cudaSuccess;
    if (K % 256 || (xq_mode != RL_CU_XQ_Q8 && xq_mode != RL_CU_XQ_Q8_32))
        return cudaErrorInvalidValue;
    const int64_t n8 = n * K / 8;
    (void)rlcu::launch(quant_q8_kernel, (unsigned)((n8 + 255) / 256), 256, 0, s, x, n8,
                       static_cast<int8_t *>(xq), xq_mode);
    return cudaGetLastError();
}

extern "C" cudaError_t rl__cu_matmul_q8(cudaStream_t s, int type, const void *w, size_t row_bytes,
                                        int64_t rows, int64_t K, const float *x, int64_t n,
                                        float *y, void *xq, bool xq_ready) {
    if (rows <= 0 || n <= 0) return cudaSuccess;
    if (n >= RL_CU_MMQ_MIN_N) return rl__cu_mmq(s, type, w, row_bytes, rows, K, x, n, y, xq, xq_ready, false);
    int8_t *q = static_cast<int8_t *>(xq);
    float *d = reinterpret_cast<float *>(q + 2 * n * K);
    if (!xq_ready) {
        const cudaError_t e = rl__cu_quant_q8(s, x, n, K, xq, rl__cu_q8_layout(type));
        if (e != cudaSuccess) return e;
    }
    if (n == 1 && rl__cu_matvec_ok(type, w, row_bytes, rows, K))
        return rl__cu_matvec(s, type, w, row_bytes, rows, K, x, xq, y);
    if (type != RL_TYPE_Q4_K && type != RL_TYPE_Q6_K) return cudaErrorInvalidValue;
    const uint8_t *wb = static_cast<const uint8_t *>(w);
    const int nn = (int)n;
    if (type == RL_TYPE_Q4_K) {
        if (n == 1) return gemv_q8<GQ4_K, 1>(s, wb, row_bytes, rows, K, q, d, 1, y);
        if (n == 2) return gemv_q8<GQ4_K, 2>(s, wb, row_bytes, rows, K, q, d, 2, y);
        return gemv_q8<GQ4_K, 4>(s, wb, row_bytes, rows, K, q, d, nn, y);
    }
    if (n == 1) return gemv_q8<GQ6_K, 1>(s, wb, row_bytes, rows, K, q, d, 1, y);
    if (n == 2) return gemv_q8<GQ6_K, 2>(s, wb, row_bytes, rows, K, q, d, 2, y);
    return gemv_q8<GQ6_K, 4>(s, wb, row_bytes, rows, K, q, d, nn, y);
}

extern "C" cudaError_t rl__cu_init_matmul(const int8_t iq4_values[16]) {
    const char *tw = getenv("RUVLLM_CUDA_GEMV_TW"), *rm = getenv("RUVLLM_CUDA_GEMV_R");
    if (tw && atoi(tw) > 0) g_gemv_tw = atoi(tw);
    if (rm && atoi(rm) > 0) g_gemv_rmax = atoi(rm);
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
