/*
 * argmax.cu - greedy picking on the GPU: the index of the largest value of each logits
 * row, so that a decode step that only needs the next token sends back one int32 per
 * row instead of n_vocab floats (issue 7).
 *
 * One block per row. Each thread walks its strided share of the row in increasing index
 * order, keeping the first maximum (strict >); the block then reduces (value, index)
 * pairs through warp shuffles and shared memory, preferring the larger value and, on a
 * tie, the lower index. So the result is the lowest index of the row's maximum, the same
 * as a left-to-right scan with strict > starting from -inf (the context's host path); NaN
 * never wins, and a row with no value above -inf gives 0.
 */
#include "cuda_impl.h"
#include "launch.cuh"

#include <limits.h>
#include <math.h>

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

} // namespace

extern "C" cudaError_t rl__cu_argmax(cudaStream_t s, const float *x, int64_t n, int64_t dim,
                                     int32_t *ids) {
    if (n <= 0) return cudaSuccess;
    if (dim <= 0 || dim > INT_MAX || n > INT_MAX) return cudaErrorInvalidValue;
    (void)rlcu::launch(argmax_kernel, (unsigned)n, AM_THREADS, 0, s, x, dim, ids);
    return cudaGetLastError();
}
