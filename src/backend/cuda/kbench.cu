/*
 * kbench.cu - the decode products alone, in GB/s of weights read, for bench_cuda --kernels:
 * each (type, shape) through matmul.cu's row-group kernels (path rowgroup0) and through the
 * streaming kernel (matvec.cu) at 1, 2 and 4 rows per item (stream1, 2, 4), so every figure
 * reads as a fraction of the device's copy bandwidth and of the other kernels.
 *
 * Also (first; RUVLLM_KBENCH=mmq for these alone, =decode for the others) the products of
 * 8 to 2048 tokens through mmq.cu's kernels (int8 tensor cores) and the decoded-BF16 +
 * cuBLAS path (bench_mmq; RUVLLM_KBENCH_PATHS to time only some).
 *
 * Method: random weight bytes (finite F16 values), enough copies of the matrix that they
 * do not fit in L2 (at least 384 MiB in all; RUVLLM_KBENCH_COPIES=N: N copies, 1: a small
 * matrix stays in L2, which tells the kernel's own rate from the memory's), one graph of 32
 * products cycling over the copies (so launch gaps are those of a replayed decode step), the
 * best of 5 replays.
 */
#include "cuda_impl.h"
#include "launch.cuh"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

int g_copies = 0; /* RUVLLM_KBENCH_COPIES (rl__cuda_bench_matvec reads it), 0: copies_of decides */

/* Copies of a matrix of `bytes` to cycle over: at least 384 MiB in all (2 to 64 copies), or
 * g_copies. */
int copies_of(size_t bytes) {
    if (g_copies > 0) return g_copies;
    const size_t want = (size_t)384 << 20;
    const int c = (int)((want + bytes - 1) / bytes);
    return c < 2 ? 2 : c > 64 ? 64 : c;
}

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

enum mm_path {
    MM_TILE,
    MM_WARP,
    MM_STAGED,
    MM_Q32,
    MM_BLOCKSTEP,
    MM_STREAM,
    MM_I32,     /* the tiled kernel's integer step (k-quants), its old shapes and K split */
    MM_WAVES,   /* the tiled kernel (float step) with the K split by whole waves */
    MM_NEW,     /* the tiled kernel with all three: integer step, 128-row tiles, waves */
    MM_STREAM_I, /* the streaming kernel with the integer step, every token count */
    MM_DEFAULT, /* the routing of the build (RUVLLM_CUDA_MMQ_* unset) */
    MM_CUBLAS,
    MM_N
};
const char *const mm_names[MM_N] = {"mmq_tile",     "mmq_warp",           "mmq_staged",
                                    "mmq_tile_q32", "mmq_tile_blockstep", "mmq_stream",
                                    "mmq_i32",      "mmq_waves",          "mmq_new",
                                    "mmq_stream_i", "mmq_default",        "bf16_cublas"};

struct mm_ctx {
    void *blas, *ws, *wsw, *wsx;
    size_t wsw_bytes;
};

/* mmq.cu's settings for a path (k-quant activations as Q8_K but for MM_Q32; MM_N: the
 * environment's again). The integer step, wide tiles and wave split are environment
 * switches that rl__cu_mmq_config reads again: set here for the path, then restored. */
void mm_config(mm_path path) {
    enum { NK = 3 };
    static bool saved = false;
    static char env[NK][16];
    static const char *const names[NK] = {"RUVLLM_CUDA_MMQ_INT", "RUVLLM_CUDA_MMQ_WIDE",
                                          "RUVLLM_CUDA_MMQ_WAVES"};
    if (!saved) {
        for (int i = 0; i < NK; i++) {
            const char *v = getenv(names[i]);
            snprintf(env[i], sizeof env[i], "%s", v ? v : "");
        }
        saved = true;
    }
    /* INT, WIDE, WAVES for the path (-1: the environment's); the old tiled and streaming
     * kernels with all off */
    int knob[NK] = {-1, -1, -1};
    if (path == MM_TILE || path == MM_STREAM || path == MM_WARP || path == MM_STAGED ||
        path == MM_Q32 || path == MM_BLOCKSTEP)
        knob[0] = knob[1] = knob[2] = 0;
    else if (path == MM_I32)
        knob[0] = 1, knob[1] = 0, knob[2] = 0;
    else if (path == MM_WAVES)
        knob[0] = 0, knob[1] = 0, knob[2] = 1;
    else if (path == MM_NEW || path == MM_STREAM_I)
        knob[0] = knob[1] = knob[2] = 1;
    for (int i = 0; i < NK; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", knob[i]);
        if (knob[i] >= 0) setenv(names[i], v, 1);
        else if (env[i][0]) setenv(names[i], env[i], 1);
        else unsetenv(names[i]);
    }
    if (path == MM_TILE || path == MM_I32 || path == MM_WAVES || path == MM_NEW)
        rl__cu_mmq_config(1, 0, 1, 1, 0);
    else if (path == MM_WARP) rl__cu_mmq_config(0, 0, 1, 1, 0);
    else if (path == MM_STAGED) rl__cu_mmq_config(0, 1, 1, 1, 0);
    else if (path == MM_Q32) rl__cu_mmq_config(1, 0, 0, 1, 0);
    else if (path == MM_BLOCKSTEP) rl__cu_mmq_config(1, 0, 1, 0, 0);
    else if (path == MM_STREAM || path == MM_STREAM_I)
        rl__cu_mmq_config(1, 0, 1, 1, 1 << 20);
    else rl__cu_mmq_config(-1, -1, -1, -1, -1);
}

cudaError_t mm_product(cudaStream_t s, const shape &sh, const uint8_t *w, size_t row_bytes,
                       const float *x, int64_t n, float *y, mm_path path, const mm_ctx &c) {
    if (path != MM_CUBLAS)
        return rl__cu_mmq(s, sh.type, w, row_bytes, sh.rows, sh.K, x, n, y, c.ws, false, false);
    return rl__cu_matmul_tc(s, c.blas, sh.type, true, w, row_bytes, sh.rows, sh.K, x, n, y, c.wsw,
                            c.wsw_bytes, c.wsx);
}

/* Seconds per product: a graph of NL products over the copies, best of 5 replays. */
double time_mm(cudaStream_t s, const shape &sh, uint8_t *w, size_t bytes, int copies,
               size_t row_bytes, const float *x, int64_t n, float *y, mm_path path,
               const mm_ctx &c) {
    const int NL = 2.0 * (double)n * (double)sh.rows * (double)sh.K > 5e10 ? 8 : 32;
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

/* Whether the comma-separated list names `name` (whole items: mmq_stream is not mmq_stream_i). */
bool listed(const char *list, const char *name) {
    const size_t len = strlen(name);
    for (const char *p = strstr(list, name); p; p = strstr(p + 1, name))
        if ((p == list || p[-1] == ',') && (p[len] == ',' || p[len] == 0)) return true;
    return false;
}

/* sum (a - b)^2 / sum b^2 */
double nmse_of(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? num / den : num;
}

/* The Llama 3 8B (and 1B) products of 8 to 512 tokens through each of mmq.cu's kernels (the
 * tiled one, the streaming one, the per-warp one and its staged variant, the tiled one with
 * k-quant activations per 32 values; mmq_tile and mmq_stream with the integer step, the
 * 128-row tiles and the wave split off, mmq_i32 / mmq_waves with one of them, mmq_new
 * with all, mmq_stream_i the streaming kernel with the integer step at every size,
 * mmq_default as the build and the environment route; RUVLLM_KBENCH_PATHS picks some,
 * RUVLLM_KBENCH_NS the token counts) and the path they replace (weights decoded to BF16 + cuBLAS, the decode
 * included), one JSON line each: microseconds, TFLOP/s (2 n rows K), GB/s of weights (and
 * as a fraction of the copy bandwidth), and the nmse of the output against the per-warp
 * kernel's (the reference of the others; the tiled kernel does its arithmetic in the same
 * order, so 0 where both split K alike). */
int bench_mmq(cudaStream_t s, double copy_bw, FILE *out) {
    static const shape shapes[] = {
        {RL_TYPE_Q4_K, "Q4_K", 4096, 4096, RL_CU_Q4_K_BYTES, 256},
        {RL_TYPE_Q4_K, "Q4_K", 14336, 4096, RL_CU_Q4_K_BYTES, 256},
        {RL_TYPE_Q4_K, "Q4_K", 4096, 14336, RL_CU_Q4_K_BYTES, 256},
        {RL_TYPE_Q4_K, "Q4_K", 1024, 4096, RL_CU_Q4_K_BYTES, 256},
        {RL_TYPE_Q6_K, "Q6_K", 4096, 14336, RL_CU_Q6_K_BYTES, 256},
        {RL_TYPE_Q6_K, "Q6_K", 1024, 4096, RL_CU_Q6_K_BYTES, 256},
        {RL_TYPE_Q6_K, "Q6_K", 128256, 4096, RL_CU_Q6_K_BYTES, 256},
        {RL_TYPE_Q4_K, "Q4_K", 8192, 2048, RL_CU_Q4_K_BYTES, 256},
        {RL_TYPE_Q4_K, "Q4_K", 2048, 8192, RL_CU_Q4_K_BYTES, 256},
        {RL_TYPE_Q6_K, "Q6_K", 2048, 8192, RL_CU_Q6_K_BYTES, 256},
        {RL_TYPE_Q6_K, "Q6_K", 128256, 2048, RL_CU_Q6_K_BYTES, 256},
        {RL_TYPE_Q8_0, "Q8_0", 4096, 4096, RL_CU_Q8_0_BYTES, 32},
        {RL_TYPE_Q8_0, "Q8_0", 14336, 4096, RL_CU_Q8_0_BYTES, 32},
        {RL_TYPE_Q4_0, "Q4_0", 4096, 4096, RL_CU_Q4_0_BYTES, 32},
        {RL_TYPE_Q4_0, "Q4_0", 14336, 4096, RL_CU_Q4_0_BYTES, 32},
    };
    int64_t ns[16] = {8, 16, 32, 48, 64, 96, 128, 192, 256, 512};
    int n_ns = 10;
    if (const char *v = getenv("RUVLLM_KBENCH_NS")) { /* e.g. "16,32,2048" */
        n_ns = 0;
        for (const char *p = v; *p && n_ns < 16; p++) {
            const long long k = atoll(p);
            if (k > 0 && k <= 4096) ns[n_ns++] = k;
            while (p[1] && p[1] != ',') p++;
            if (p[1] == ',') p++;
        }
    }
    int64_t NMAX = 1;
    for (int i = 0; i < n_ns; i++) NMAX = ns[i] > NMAX ? ns[i] : NMAX;
    const int64_t RMAX = 128256;
    int rc = 0;
    const char *only = getenv("RUVLLM_KBENCH_PATHS"); /* e.g. "mmq_tile,bf16_cublas" */
    /* host copies of the outputs: the reference path's and the one just timed */
    float *ref = (float *)malloc((size_t)NMAX * RMAX * sizeof(float));
    float *got = (float *)malloc((size_t)NMAX * RMAX * sizeof(float));
    mm_ctx c = {};
    c.blas = rl__cu_blas_create(s);
    c.wsw_bytes = (size_t)128 << 20;
    if (!ref || !got || !c.blas || cudaMalloc(&c.wsw, c.wsw_bytes) != cudaSuccess ||
        cudaMalloc(&c.wsx, (size_t)NMAX * RMAX * 2) != cudaSuccess) {
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
        const int copies = copies_of(bytes);
        uint8_t *w = NULL;
        float *x = NULL, *y = NULL;
        bool ok = true;
        size_t wsb = 0;
        for (int pi = 0; pi < MM_CUBLAS; pi++) {
            mm_config((mm_path)pi);
            for (int i = 0; i < n_ns; i++) {
                const size_t b = rl__cu_mmq_bytes(sh.rows, sh.K, ns[i]);
                wsb = b > wsb ? b : wsb;
            }
        }
        mm_config(MM_N);
        CK(cudaMalloc((void **)&w, bytes * (size_t)copies));
        CK(cudaMalloc((void **)&x, (size_t)(NMAX * sh.K) * sizeof(float)));
        CK(cudaMalloc((void **)&y, (size_t)(NMAX * sh.rows) * sizeof(float)));
        CK(cudaMalloc(&c.ws, wsb));
        /* every 16-bit field finite (the scales), so the outputs can be compared */
        fill_kernel<<<1024, 256, 0, s>>>(reinterpret_cast<uint32_t *>(w), bytes * copies / 4,
                                         0x4321u + (uint32_t)sh.rows, true);
        fill_x_kernel<<<1024, 256, 0, s>>>(x, NMAX * sh.K, 0x99u);
        CK(cudaGetLastError());
        CK(cudaStreamSynchronize(s));
        for (int ni = 0; ni < n_ns; ni++) {
            const int64_t n = ns[ni];
            const size_t ny = (size_t)n * (size_t)sh.rows;
            bool ref_ok = false;
            /* the reference (per-warp kernel) first */
            static const mm_path order[] = {MM_WARP,  MM_TILE,     MM_STREAM,  MM_I32,
                                            MM_WAVES, MM_NEW,      MM_STREAM_I, MM_DEFAULT,
                                            MM_BLOCKSTEP, MM_Q32,  MM_STAGED,  MM_CUBLAS};
            for (mm_path path : order) {
                if (only && !listed(only, mm_names[path]) && path != MM_WARP) continue;
                if ((path == MM_Q32 || path == MM_BLOCKSTEP || path == MM_I32 ||
                     path == MM_STREAM_I) &&
                    sh.type != RL_TYPE_Q4_K && sh.type != RL_TYPE_Q6_K)
                    continue;
                if (path == MM_STAGED && n > 32) continue;               /* measured slower */
                mm_config(path);
                const double t = time_mm(s, sh, w, bytes, copies, row_bytes, x, n, y, path, c);
                mm_config(MM_N);
                if (t <= 0) {
                    rc = 1;
                    continue;
                }
                /* the last product of every graph reads the same copy */
                double e = -1;
                if (path == MM_WARP)
                    ref_ok = cudaMemcpy(ref, y, ny * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess;
                else if (ref_ok && cudaMemcpy(got, y, ny * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess)
                    e = nmse_of(got, ref, ny);
                fprintf(out,
                        "{\"kernel\": \"many_token_product\", \"type\": \"%s\", \"rows\": %lld, "
                        "\"K\": %lld, \"n\": %lld, \"path\": \"%s\", \"us\": %.2f, \"TFLOPs\": %.1f, "
                        "\"GBs\": %.0f, \"fraction_of_copy\": %.3f, "
                        "\"nmse_vs_warp\": %.3g}\n",
                        sh.name, (long long)sh.rows, (long long)sh.K, (long long)n, mm_names[path],
                        1e6 * t, 2.0 * (double)n * (double)sh.rows * (double)sh.K / t / 1e12,
                        (double)bytes / t / 1e9,
                        copy_bw > 0 ? (double)bytes / t / copy_bw : 0.0, e);
                /* a product of the same kernel arithmetic that differs this much is wrong */
                if (path != MM_CUBLAS && path != MM_Q32 && e > 1e-5) rc = 1;
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
    const char *cp = getenv("RUVLLM_KBENCH_COPIES");
    g_copies = cp ? atoi(cp) : 0;
    if (g_copies < 0 || g_copies > 64) g_copies = 0;
    const bool decode = !which || strcmp(which, "mmq") != 0;
    if (!which || strcmp(which, "decode") != 0) rc = bench_mmq(s, copy_bw, out);
    for (const shape &sh : shapes) {
        if (!decode) break;
        const size_t row_bytes = (size_t)(sh.K / sh.block_vals) * sh.block_bytes;
        const size_t bytes = row_bytes * (size_t)sh.rows;
        const int copies = copies_of(bytes);
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
        /* the q8 workspace of x in the layout of the shape's type, as the op before a q8
           product leaves it */
        CK(rl__cu_quant_q8(s, x, 1, sh.K, xq, rl__cu_q8_layout(sh.type)));
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
