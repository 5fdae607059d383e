/*
 * argmax.cu - greedy picking on the GPU: the index of the largest value of each logits
 * row, so that a decode step that only needs the next token sends back one int32 per
 * row instead of n_vocab floats (issue 7).
 *
 * Rows of up to 4096 values (or without the split's workspace): one block per row;
 * longer rows in chunks over many blocks (argmax_split_kernel). Each thread walks its
 * strided share of the row in increasing index order, keeping the first maximum (strict
 * >); the block then reduces (value, index) pairs through warp shuffles and shared memory,
 * preferring the larger value and, on a tie, the lower index. So the result is the lowest
 * index of the row's maximum, the same as a left-to-right scan with strict > starting from
 * -inf (the context's host path); NaN never wins, and a row with no value above -inf
 * gives 0.
 */
#include "cuda_impl.h"
#include "launch.cuh"

#include <limits.h>
#include <math.h>
#include <stdint.h>

namespace {

constexpr int AM_THREADS = 1024;

__device__ __forceinline__ void am_take(float &v, int &i, float ov, int oi) {
    if (ov > v || (ov == v && oi < i)) {
        v = ov;
        i = oi;
    }
}

__global__ void argmax_kernel(const float *__restrict__ x, int64_t dim, int32_t *__restrict__ ids) {
    rlcu::pdl_enter();
    const float *row = x + (int64_t)blockIdx.x * dim;
    float v = -INFINITY;
    int i = INT_MAX;
    for (int64_t k = threadIdx.x; k < dim; k += blockDim.x) {
        const float a = row[k];
        if (a > v) {
            v = a;
            i = (int)k;
        }
    }
    for (int o = 16; o > 0; o >>= 1)
        am_take(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
    __shared__ float sv[AM_THREADS / 32];
    __shared__ int si[AM_THREADS / 32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warp = blockDim.x / 32;
    if (lane == 0) {
        sv[warp] = v;
        si[warp] = i;
    }
    __syncthreads();
    if (warp == 0) {
        v = lane < n_warp ? sv[lane] : -INFINITY;
        i = lane < n_warp ? si[lane] : INT_MAX;
        for (int o = 16; o > 0; o >>= 1)
            am_take(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
        if (lane == 0) ids[blockIdx.x] = i == INT_MAX ? 0 : i;
    }
}

/* The split pick: a row in chunks of AMS_CHUNK values, one block of AMS_THREADS each, every
 * thread AMS_CHUNK / AMS_THREADS values loaded at once (float4 where the row is aligned), so
 * a 128K vocabulary is one round trip of loads over 32 SMs instead of one block streaming
 * the row (53 us on the H100 for 128256 values). Each block's (value, index) becomes a
 * 64-bit key, ordered value bits above the complement of the index (the larger value wins,
 * on a tie the lower index: the same pick as argmax_kernel), folded into best[row] with
 * atomicMax; the last block of the row to finish (cnt[row], as a counter of arrivals)
 * writes the id and zeroes best[row] and cnt[row] again for the next launch (a graph
 * replays it). NaN and -inf never enter a key; no key (0) gives id 0. */
constexpr int AMS_THREADS = 256;
constexpr int AMS_PER = 16; /* values per thread: 4 float4 */
constexpr int AMS_CHUNK = AMS_THREADS * AMS_PER;

__device__ __forceinline__ unsigned long long am_key(float v, int i) {
    const uint32_t u = __float_as_uint(v + 0.0f); /* -0 as +0 */
    const uint32_t o = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    return ((unsigned long long)o << 32) | (uint32_t)~(uint32_t)i;
}

__global__ void argmax_split_kernel(const float *__restrict__ x, int dim, bool vec,
                                    int32_t *__restrict__ ids, unsigned long long *best,
                                    unsigned *cnt) {
    rlcu::pdl_enter();
    const int c0 = blockIdx.x * AMS_CHUNK, c1 = min(c0 + AMS_CHUNK, dim);
    const float *row = x + (int64_t)blockIdx.y * dim;
    float v = -INFINITY;
    int i = INT_MAX;
    if (vec && c1 - c0 == AMS_CHUNK) {
        float4 a[AMS_PER / 4];
#pragma unroll
        for (int j = 0; j < AMS_PER / 4; j++)
            a[j] = reinterpret_cast<const float4 *>(row + c0)[threadIdx.x + j * AMS_THREADS];
#pragma unroll
        for (int j = 0; j < AMS_PER / 4; j++) { /* increasing index: the first maximum stays */
            const int k = c0 + 4 * (threadIdx.x + j * AMS_THREADS);
            if (a[j].x > v) v = a[j].x, i = k;
            if (a[j].y > v) v = a[j].y, i = k + 1;
            if (a[j].z > v) v = a[j].z, i = k + 2;
            if (a[j].w > v) v = a[j].w, i = k + 3;
        }
    } else {
        for (int k = c0 + threadIdx.x; k < c1; k += AMS_THREADS)
            if (row[k] > v) v = row[k], i = k;
    }
    for (int o = 16; o > 0; o >>= 1)
        am_take(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
    __shared__ float sv[AMS_THREADS / 32];
    __shared__ int si[AMS_THREADS / 32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    if (lane == 0) {
        sv[warp] = v;
        si[warp] = i;
    }
    __syncthreads();
    if (warp != 0) return;
    v = lane < AMS_THREADS / 32 ? sv[lane] : -INFINITY;
    i = lane < AMS_THREADS / 32 ? si[lane] : INT_MAX;
    for (int o = 16; o > 0; o >>= 1)
        am_take(v, i, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, i, o));
    if (lane != 0) return;
    const int r = blockIdx.y;
    if (i != INT_MAX) atomicMax(&best[r], am_key(v, i));
    __threadfence();
    if (atomicAdd(&cnt[r], 1u) != gridDim.x - 1) return;
    __threadfence();
    const unsigned long long k = atomicExch(&best[r], 0ull);
    ids[r] = k ? (int32_t)~(uint32_t)k : 0;
    cnt[r] = 0;
}

} // namespace

extern "C" size_t rl__cu_argmax_ws_bytes(int64_t n) {
    return (size_t)(n > 0 ? n : 0) * (sizeof(unsigned long long) + sizeof(unsigned));
}

extern "C" cudaError_t rl__cu_argmax(cudaStream_t s, const float *x, int64_t n, int64_t dim,
                                     int32_t *ids, void *ws) {
    if (n <= 0) return cudaSuccess;
    if (dim <= 0 || dim > INT_MAX || n > INT_MAX) return cudaErrorInvalidValue;
    if (ws && dim > AMS_CHUNK && dim <= (1 << 30) && n <= 65535) {
        unsigned long long *best = static_cast<unsigned long long *>(ws);
        unsigned *cnt = reinterpret_cast<unsigned *>(best + n);
        const bool vec = dim % 4 == 0 && (uintptr_t)x % 16 == 0;
        const dim3 grid((unsigned)((dim + AMS_CHUNK - 1) / AMS_CHUNK), (unsigned)n);
        (void)rlcu::launch(argmax_split_kernel, grid, AMS_THREADS, 0, s, x, (int)dim, vec, ids,
                           best, cnt);
        return cudaGetLastError();
    }
    (void)rlcu::launch(argmax_kernel, (unsigned)n, AM_THREADS, 0, s, x, dim, ids);
    return cudaGetLastError();
}
