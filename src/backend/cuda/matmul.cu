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
