/*
 * gemm.c - products of many tokens (prefill, large batches) on tensor cores through
 * cuBLAS: the activations rounded to 16-bit floats, the weight decoded to 16-bit floats in
 * a workspace (one kernel, matmul.cu) or read in place when it already is F16/BF16, and
 * cublasGemmEx with float accumulation. Decoding costs one pass over the weight plus a
 * 16-bit write and read, small next to the product once a batch has more than a few
 * tokens.
 *
 * Layout: cuBLAS is column-major. Row-major W [rows][K] is column-major K x rows, so
 * Y^T [rows x n] = (W as K x rows)^T * (X as K x n): op T on A, N on B, ldc = rows.
 */
#include "cuda_impl.h"

#include "../../util/util.h"

#include <cublas_v2.h>

#define BLAS_WS_BYTES ((size_t)32 << 20) /* cuBLAS's own workspace (Hopper: 32 MiB) */

typedef struct blas_ctx {
    cublasHandle_t h;
    void *ws;
} blas_ctx;

void *rl__cu_blas_create(cudaStream_t s) {
    blas_ctx *b = rl__calloc(1, sizeof *b);
    if (!b) return NULL;
    if (cublasCreate(&b->h) != CUBLAS_STATUS_SUCCESS) {
        rl__free(b);
        return NULL;
    }
    /* a workspace of our own: cuBLAS allocates none while a graph is being captured */
    if (cudaMalloc(&b->ws, BLAS_WS_BYTES) != cudaSuccess ||
        cublasSetWorkspace(b->h, b->ws, BLAS_WS_BYTES) != CUBLAS_STATUS_SUCCESS ||
        cublasSetStream(b->h, s) != CUBLAS_STATUS_SUCCESS) {
        cudaGetLastError();
        rl__cu_blas_free(b);
        return NULL;
    }
    return b;
}

void rl__cu_blas_free(void *p) {
    blas_ctx *b = p;
    if (!b) return;
    if (b->h) cublasDestroy(b->h);
    cudaFree(b->ws);
    rl__free(b);
}

static bool in_place(int type, bool vec) {
    return vec && (type == RL_TYPE_F16 || type == RL_TYPE_BF16);
}

int64_t rl__cu_tc_chunk_rows(int type, bool vec, int64_t rows, int64_t K, size_t ws_bytes) {
    if (in_place(type, vec)) return 0;
    int64_t r = (int64_t)(ws_bytes / ((size_t)K * 2));
    if (r >= rows) return rows;
    return r >= 128 ? r / 128 * 128 : r;
}

cudaError_t rl__cu_matmul_tc(cudaStream_t s, void *blas, int type, bool vec, const void *w,
                             size_t row_bytes, int64_t rows, int64_t K, const float *x, int64_t n,
                             float *y, void *wsw, size_t wsw_bytes, void *wsx) {
    blas_ctx *b = blas;
    const bool half = rl__cu_tc_half(type);
    const cudaDataType dt = half ? CUDA_R_16F : CUDA_R_16BF;
    if (rows > INT32_MAX || K > INT32_MAX || n > INT32_MAX) return cudaErrorInvalidValue;
    cudaError_t e = rl__cu_to16(s, half, x, n * K, wsx);
    if (e != cudaSuccess) return e;
    const bool inpl = in_place(type, vec);
    const int64_t cr = inpl ? rows : rl__cu_tc_chunk_rows(type, vec, rows, K, wsw_bytes);
    if (cr <= 0) return cudaErrorInvalidValue;
    const float one = 1.0f, zero = 0.0f;
    for (int64_t r0 = 0; r0 < rows; r0 += cr) {
        const int64_t m = rows - r0 < cr ? rows - r0 : cr;
        const void *a = wsw;
        int64_t lda = K;
        if (inpl) {
            a = (const uint8_t *)w + (size_t)r0 * row_bytes;
            lda = (int64_t)(row_bytes / 2);
        } else {
            e = rl__cu_dequant16(s, type, vec, (const uint8_t *)w + (size_t)r0 * row_bytes,
                                 row_bytes, m, K, wsw);
            if (e != cudaSuccess) return e;
        }
        cublasStatus_t st = cublasGemmEx(
            b->h, CUBLAS_OP_T, CUBLAS_OP_N, (int)m, (int)n, (int)K, &one, a, dt, (int)lda, wsx, dt,
            (int)K, &zero, y + r0, CUDA_R_32F, (int)rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (st != CUBLAS_STATUS_SUCCESS)
            return st == CUBLAS_STATUS_ALLOC_FAILED ? cudaErrorMemoryAllocation : cudaErrorUnknown;
    }
    return cudaSuccess;
}
