/*
 * kbench.cu - the decode products alone, in GB/s of weights read, for bench_cuda --kernels:
 * each (type, shape) through matmul.cu's row-group kernels (path rowgroup0) and through the
 * streaming kernel (matvec.cu) at 1, 2 and 4 rows per item (stream1, 2, 4), so every figure
 * reads as a fraction of the device's copy bandwidth and of the other kernels.
 *
 * Also (first; RUVLLM_KBENCH=mmq for these alone, =decode for the others) the products of
 * 8 to 512 tokens through mmq.cu (int8 tensor cores) and the paths before it (bench_mmq).
 *
 * Method: random weight bytes (finite F16 values), enough copies of the matrix that they
 * do not fit in L2 (at least 384 MiB in all), one graph of 32 products cycling over the
 * copies (so launch gaps are those of a replayed decode step), the best of 5 replays.
 */
#include "cuda_impl.h"
#include "launch.cuh"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

__global__ void fill_kernel(uint32_t *p, size_t n, uint32_t seed, bool f16) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        uint32_t z = (uint32_t)i * 0x9e3779b9u + seed;
        z ^= z >> 16;
        z *= 0x7feb352du;
        z ^= z >> 15;
        z *= 0x846ca68bu;
        z ^= z >> 16;
        /* F16: both halves finite, |v| < 1 (exponent field below 15) */
        p[i] = f16 ? z & 0xbbffbbffu : z;
    }
}

__global__ void fill_x_kernel(float *x, int64_t n, uint32_t seed) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        uint32_t z = (uint32_t)i * 0x9e3779b9u + seed;
        z ^= z >> 15;
        z *= 0x2c1b3c6du;
        z ^= z >> 12;
        x[i] = (float)(z & 0xffffu) / 32768.0f - 1.0f;
    }
}

struct shape {
    int type;
    const char *name;
    int64_t rows, K;
    size_t block_bytes;
    int block_vals;
};

#define CK(e)                                                                                      \
    do {                                                                                           \
        cudaError_t e_ = (e);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "kbench: %s: %s\n", #e, cudaGetErrorString(e_));                       \
            ok = false;                                                                            \
            goto done;                                                                             \
        }                                                                                          \
    } while (0)

/* One product of copy c, as the decode step makes it: the q8 path for the types that have
 * one (activations already quantized), else the float-activation kernels. */
cudaError_t product(cudaStream_t s, const shape &sh, const uint8_t *w, size_t row_bytes,
                    const float *x, void *xq, float *y, bool q8) {
    if (q8)
        return rl__cu_matmul_q8(s, sh.type, w, row_bytes, sh.rows, sh.K, x, 1, y, xq, true);
    return rl__cu_matmul(s, sh.type, true, w, row_bytes, sh.rows, sh.K, x, 1, y);
}

/* Seconds per product of the graph of 32 over the copies, best of 5 replays; < 0 on error. */
double time_products(cudaStream_t s, const shape &sh, uint8_t *w, size_t bytes, int copies,
                     size_t row_bytes, const float *x, void *xq, float *y, bool q8) {
    const int NL = 32;
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double best = -1;
    bool ok = true;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < NL; i++) {
        cudaError_t e = product(s, sh, w + (size_t)(i % copies) * bytes, row_bytes, x, xq, y, q8);
        if (e != cudaSuccess) {
            cudaStreamEndCapture(s, &g);
            CK(e);
        }
    }
    CK(cudaStreamEndCapture(s, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaGraphLaunch(ge, s));
    for (int rep = 0; rep < 5; rep++) {
        float ms = 0;
        CK(cudaEventRecord(e0, s));
        CK(cudaGraphLaunch(ge, s));
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        CK(cudaEventElapsedTime(&ms, e0, e1));
        const double t = 1e-3 * (double)ms / NL;
        if (best < 0 || t < best) best = t;
    }
done:
    if (ge) cudaGraphExecDestroy(ge);
    if (g) cudaGraphDestroy(g);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaGetLastError();
    return ok ? best : -1;
}

/* ---- products of many tokens (mmq.cu against the cuBLAS path it replaces) ---- */

enum mm_path { MM_MMQ, MM_STAGED, MM_CUBLAS, MM_GEMV };

struct mm_ctx {
    void *blas, *ws, *wsw, *wsx;
    size_t wsw_bytes;
};

cudaError_t mm_product(cudaStream_t s, const shape &sh, const uint8_t *w, size_t row_bytes,
                       const float *x, int64_t n, float *y, mm_path path, const mm_ctx &c) {
    if (path == MM_MMQ || path == MM_STAGED)
        return rl__cu_mmq(s, sh.type, w, row_bytes, sh.rows, sh.K, x, n, y, c.ws, false);
    if (path == MM_CUBLAS)
        return rl__cu_matmul_tc(s, c.blas, sh.type, true, w, row_bytes, sh.rows, sh.K, x, n, y,
                                c.wsw, c.wsw_bytes, c.wsx);
    return rl__cu_matmul(s, sh.type, true, w, row_bytes, sh.rows, sh.K, x, n, y);
}

/* Seconds per product: a graph of NL products over the copies, best of 5 replays. */
double time_mm(cudaStream_t s, const shape &sh, uint8_t *w, size_t bytes, int copies,
               size_t row_bytes, const float *x, int64_t n, float *y, mm_path path,
               const mm_ctx &c) {
    const int NL = n >= 512 && sh.rows > 16384 ? 8 : 32;
    cudaGraph_t g = NULL;
    cudaGraphExec_t ge = NULL;
    cudaEvent_t e0 = NULL, e1 = NULL;
    double best = -1;
    bool ok = true;
    CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < NL; i++) {
        cudaError_t e = mm_product(s, sh, w + (size_t)(i % copies) * bytes, row_bytes, x, n, y, path, c);
        if (e != cudaSuccess) {
            cudaStreamEndCapture(s, &g);
            CK(e);
        }
    }
    CK(cudaStreamEndCapture(s, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    CK(cudaGraphLaunch(ge, s));
    for (int rep = 0; rep < 5; rep++) {
        float ms = 0;
        CK(cudaEventRecord(e0, s));
        CK(cudaGraphLaunch(ge, s));
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        CK(cudaEventElapsedTime(&ms, e0, e1));
        const double t = 1e-3 * (double)ms / NL;
        if (best < 0 || t < best) best = t;
    }
done:
    if (ge) cudaGraphExecDestroy(ge);
    if (g) cudaGraphDestroy(g);
    if (e0) cudaEventDestroy(e0);
    if (e1) cudaEventDestroy(e1);
    cudaGetLastError();
    return ok ? best : -1;
}

/* The Llama 3 8B products of 8 to 512 tokens through mmq.cu (its kernel and the staged
 * variant, whose output must be bit for bit the kernel's: same_bits), and for Q4_K and
 * Q6_K also through the path it replaces (weights decoded to BF16 + cuBLAS; at 8 tokens
 * the decode kernels), one JSON line each: TFLOP/s (2 n rows K) and GB/s of weights. */
int bench_mmq(cudaStream_t s, FILE *out) {
    static const shape shapes[] = {
        {RL_TYPE_Q4_K, "Q4_K", 4096, 4096, RL_CU_Q4_K_BYTES, 256},
        {RL_TYPE_Q4_K, "Q4_K", 14336, 4096, RL_CU_Q4_K_BYTES, 256},
        {RL_TYPE_Q4_K, "Q4_K", 4096, 14336, RL_CU_Q4_K_BYTES, 256},
        {RL_TYPE_Q4_K, "Q4_K", 128256, 4096, RL_CU_Q4_K_BYTES, 256},
        {RL_TYPE_Q6_K, "Q6_K", 4096, 4096, RL_CU_Q6_K_BYTES, 256},
        {RL_TYPE_Q6_K, "Q6_K", 14336, 4096, RL_CU_Q6_K_BYTES, 256},
        {RL_TYPE_Q6_K, "Q6_K", 4096, 14336, RL_CU_Q6_K_BYTES, 256},
        {RL_TYPE_Q6_K, "Q6_K", 128256, 4096, RL_CU_Q6_K_BYTES, 256},
        {RL_TYPE_Q8_0, "Q8_0", 4096, 4096, RL_CU_Q8_0_BYTES, 32},
        {RL_TYPE_Q8_0, "Q8_0", 14336, 4096, RL_CU_Q8_0_BYTES, 32},
        {RL_TYPE_Q4_0, "Q4_0", 4096, 4096, RL_CU_Q4_0_BYTES, 32},
        {RL_TYPE_Q4_0, "Q4_0", 14336, 4096, RL_CU_Q4_0_BYTES, 32},
    };
    static const int64_t ns[] = {8, 32, 64, 128, 512};
    const int64_t NMAX = 512;
    int rc = 0;
    /* host copies of the output (mmq, staged) for the bit comparison */
    float *ref = (float *)malloc((size_t)NMAX * 128256 * sizeof(float));
    float *got = (float *)malloc((size_t)NMAX * 128256 * sizeof(float));
    bool ref_ok = false;
    mm_ctx c = {};
    c.blas = rl__cu_blas_create(s);
    c.wsw_bytes = (size_t)128 << 20;
    if (!c.blas || cudaMalloc(&c.wsw, c.wsw_bytes) != cudaSuccess ||
        cudaMalloc(&c.wsx, (size_t)NMAX * 14336 * 2) != cudaSuccess) {
        fprintf(stderr, "kbench: cuBLAS or its workspaces did not start\n");
        rl__cu_blas_free(c.blas);
        cudaFree(c.wsw);
        cudaGetLastError();
        free(ref);
        free(got);
        return 1;
    }
    for (const shape &sh : shapes) {
        const size_t row_bytes = (size_t)(sh.K / sh.block_vals) * sh.block_bytes;
        const size_t bytes = row_bytes * (size_t)sh.rows;
        const size_t want = (size_t)384 << 20;
        int copies = (int)((want + bytes - 1) / bytes);
        copies = copies < 2 ? 2 : copies > 64 ? 64 : copies;
        uint8_t *w = NULL;
        float *x = NULL, *y = NULL;
        bool ok = true;
        CK(cudaMalloc((void **)&w, bytes * (size_t)copies));
        CK(cudaMalloc((void **)&x, (size_t)(NMAX * sh.K) * sizeof(float)));
        CK(cudaMalloc((void **)&y, (size_t)(NMAX * sh.rows) * sizeof(float)));
        CK(cudaMalloc(&c.ws, rl__cu_mmq_bytes(sh.rows, sh.K, NMAX) + ((size_t)64 << 20)));
        fill_kernel<<<1024, 256, 0, s>>>(reinterpret_cast<uint32_t *>(w), bytes * copies / 4,
                                         0x4321u + (uint32_t)sh.rows, false);
        fill_x_kernel<<<1024, 256, 0, s>>>(x, NMAX * sh.K, 0x99u);
        CK(cudaGetLastError());
        CK(cudaStreamSynchronize(s));
        for (int64_t n : ns) {
            const size_t ny = (size_t)n * (size_t)sh.rows;
            ref_ok = false;
            for (int pi = 0; pi < 3; pi++) {
                mm_path path = pi == 0 ? MM_MMQ : MM_STAGED;
                if (pi == 2) {
                    if (sh.type != RL_TYPE_Q4_K && sh.type != RL_TYPE_Q6_K) continue;
                    path = n <= 8 ? MM_GEMV : MM_CUBLAS;
                }
                rl__cu_mmq_set_staged(path == MM_STAGED ? 1 : 0);
                const double t = time_mm(s, sh, w, bytes, copies, row_bytes, x, n, y, path, c);
                rl__cu_mmq_set_staged(-1);
                if (t <= 0) {
                    rc = 1;
                    continue;
                }
                /* the last product of both graphs reads the same copy: the same bits */
                int same = -1;
                if (path == MM_MMQ && ref)
                    ref_ok = cudaMemcpy(ref, y, ny * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess;
                if (path == MM_STAGED && ref_ok && got &&
                    cudaMemcpy(got, y, ny * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess)
                    same = memcmp(ref, got, ny * sizeof(float)) == 0;
                fprintf(out,
                        "{\"kernel\": \"many_token_product\", \"type\": \"%s\", \"rows\": %lld, "
                        "\"K\": %lld, \"n\": %lld, \"path\": \"%s\", \"us\": %.2f, \"TFLOPs\": %.1f, "
                        "\"GBs\": %.0f%s}\n",
                        sh.name, (long long)sh.rows, (long long)sh.K, (long long)n,
                        path == MM_MMQ      ? "mmq"
                        : path == MM_STAGED ? "mmq_staged"
                        : path == MM_CUBLAS ? "bf16_cublas"
                                            : "decode_gemv",
                        1e6 * t, 2.0 * (double)n * (double)sh.rows * (double)sh.K / t / 1e12,
                        (double)bytes / t / 1e9,
                        same < 0 ? "" : same ? ", \"same_bits\": true" : ", \"same_bits\": false");
                if (same == 0) rc = 1;
                fflush(out);
            }
        }
    done:
        if (!ok) rc = 1;
        cudaFree(w);
        cudaFree(x);
        cudaFree(y);
        cudaFree(c.ws);
        c.ws = NULL;
        cudaGetLastError();
    }
    rl__cu_blas_free(c.blas);
    cudaFree(c.wsw);
    cudaFree(c.wsx);
    cudaGetLastError();
    free(ref);
    free(got);
    return rc;
}

} // namespace

/* RUVLLM_KBENCH=mmq: only the products of many tokens; =decode: only the decode ones. */
extern "C" int rl__cuda_bench_matvec(int device, double copy_bw, FILE *out) {
    static const shape shapes[] = {
        {RL_TYPE_Q4_K, "Q4_K", 4096, 4096, RL_CU_Q4_K_BYTES, 256},
        {RL_TYPE_Q4_K, "Q4_K", 1024, 4096, RL_CU_Q4_K_BYTES, 256},
        {RL_TYPE_Q4_K, "Q4_K", 14336, 4096, RL_CU_Q4_K_BYTES, 256},
        {RL_TYPE_Q4_K, "Q4_K", 4096, 14336, RL_CU_Q4_K_BYTES, 256},
        {RL_TYPE_Q4_K, "Q4_K", 2048, 2048, RL_CU_Q4_K_BYTES, 256},
        {RL_TYPE_Q4_K, "Q4_K", 8192, 2048, RL_CU_Q4_K_BYTES, 256},
        {RL_TYPE_Q4_K, "Q4_K", 2048, 8192, RL_CU_Q4_K_BYTES, 256},
        {RL_TYPE_Q6_K, "Q6_K", 2048, 8192, RL_CU_Q6_K_BYTES, 256},
        {RL_TYPE_Q6_K, "Q6_K", 4096, 14336, RL_CU_Q6_K_BYTES, 256},
        {RL_TYPE_Q6_K, "Q6_K", 1024, 4096, RL_CU_Q6_K_BYTES, 256},
        {RL_TYPE_Q6_K, "Q6_K", 128256, 4096, RL_CU_Q6_K_BYTES, 256},
        {RL_TYPE_Q6_K, "Q6_K", 128256, 2048, RL_CU_Q6_K_BYTES, 256},
        {RL_TYPE_Q8_0, "Q8_0", 4096, 4096, RL_CU_Q8_0_BYTES, 32},
        {RL_TYPE_Q8_0, "Q8_0", 14336, 4096, RL_CU_Q8_0_BYTES, 32},
        {RL_TYPE_Q8_0, "Q8_0", 4096, 14336, RL_CU_Q8_0_BYTES, 32},
        {RL_TYPE_Q8_0, "Q8_0", 128256, 4096, RL_CU_Q8_0_BYTES, 32},
        {RL_TYPE_Q4_0, "Q4_0", 4096, 4096, RL_CU_Q4_0_BYTES, 32},
        {RL_TYPE_Q4_0, "Q4_0", 14336, 4096, RL_CU_Q4_0_BYTES, 32},
        {RL_TYPE_F16, "F16", 4096, 4096, 2, 1},
        {RL_TYPE_F16, "F16", 14336, 4096, 2, 1},
        {RL_TYPE_F16, "F16", 4096, 14336, 2, 1},
        {RL_TYPE_F16, "F16", 128256, 4096, 2, 1},
    };
    if (cudaSetDevice(device) != cudaSuccess || rlcu::pdl_init() != cudaSuccess ||
        rl__cu_init_matvec() != cudaSuccess)
        return 1;
    cudaStream_t s = NULL;
    if (cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess) return 1;
    int rc = 0;
    const char *which = getenv("RUVLLM_KBENCH");
    const bool decode = !which || strcmp(which, "mmq") != 0;
    if (!which || strcmp(which, "decode") != 0) rc = bench_mmq(s, out);
    for (const shape &sh : shapes) {
        if (!decode) break;
        const size_t row_bytes = (size_t)(sh.K / sh.block_vals) * sh.block_bytes;
        const size_t bytes = row_bytes * (size_t)sh.rows;
        const size_t want = (size_t)384 << 20;
        int copies = (int)((want + bytes - 1) / bytes);
        copies = copies < 2 ? 2 : copies > 64 ? 64 : copies;
        uint8_t *w = NULL;
        float *x = NULL, *y = NULL;
        void *xq = NULL;
        bool ok = true;
        const size_t xq_bytes = (size_t)(2 * sh.K) + (size_t)(sh.K / 256) * sizeof(float);
        CK(cudaMalloc((void **)&w, bytes * (size_t)copies));
        CK(cudaMalloc((void **)&x, (size_t)sh.K * sizeof(float)));
        CK(cudaMalloc((void **)&y, (size_t)sh.rows * sizeof(float)));
        CK(cudaMalloc(&xq, xq_bytes + 256));
        fill_kernel<<<1024, 256, 0, s>>>(reinterpret_cast<uint32_t *>(w), bytes * copies / 4,
                                         0x1234u + (uint32_t)sh.rows, sh.type == RL_TYPE_F16);
        fill_x_kernel<<<64, 256, 0, s>>>(x, sh.K, 0x77u);
        CK(cudaGetLastError());
        /* the q8 workspace of x, as the op before a q8 product leaves it */
        CK(rl__cu_matmul_q8(s, RL_TYPE_Q4_K, w, row_bytes, 1, sh.K, x, 1, y, xq, false));
        CK(cudaStreamSynchronize(s));
        static const int variants[] = {0, 1, 2, 4}; /* rows per item; 0: matmul.cu's */
        for (int v = 0; v < 4; v++) {
            const bool mv = variants[v] > 0;
            rl__cu_matvec_config(mv, sh.type, variants[v]);
            const bool took = rl__cu_matvec_ok(sh.type, w, row_bytes, sh.rows, sh.K);
            /* the q8 path: the streaming kernel's integer types; before it, Q4_K and Q6_K */
            const bool q8 = mv ? took && rl__cu_matvec_q8_type(sh.type)
                               : sh.type == RL_TYPE_Q4_K || sh.type == RL_TYPE_Q6_K;
            const double t = time_products(s, sh, w, bytes, copies, row_bytes, x, xq, y, q8);
            if (t <= 0) {
                rc = 1;
                continue;
            }
            const double gbs = (double)bytes / t / 1e9;
            fprintf(out,
                    "{\"kernel\": \"decode_product\", \"type\": \"%s\", \"rows\": %lld, \"K\": "
                    "%lld, \"bytes\": %zu, \"path\": \"%s%d\", \"activations\": \"%s\", \"us\": "
                    "%.2f, \"GBs\": %.0f, \"copy_bandwidth_GBs\": %.0f, \"fraction_of_copy\": "
                    "%.3f}\n",
                    sh.name, (long long)sh.rows, (long long)sh.K, bytes,
                    mv && took ? "stream" : "rowgroup", mv && took ? variants[v] : 0,
                    q8 ? "q8" : "f32", 1e6 * t, gbs,
                    copy_bw / 1e9, copy_bw > 0 ? gbs * 1e9 / copy_bw : 0.0);
            fflush(out);
        }
    done:
        if (!ok) rc = 1;
        cudaFree(w);
        cudaFree(x);
        cudaFree(y);
        cudaFree(xq);
        cudaGetLastError();
    }
    rl__cu_init_matvec(); /* the settings of the environment again */
    cudaStreamDestroy(s);
    return rc;
}
