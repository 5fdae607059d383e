/*
 * launch.cuh - how the backend's kernels are launched: programmatic dependent launch (PDL;
 * CUDA C++ Programming Guide, "Programmatic Dependent Launch and Synchronization").
 *
 * Why: a decode step is a chain of a few hundred kernels, most of them a few microseconds
 * long, each waiting for the one before. Launched with the programmatic-serialization
 * attribute, a kernel may start while the one before it is still running: its blocks are
 * placed and run up to griddepcontrol.wait, which returns once the grid before has finished
 * and its writes are visible. So the launch latency of each kernel hides behind the one
 * before, and a product can start streaming its weights (which no kernel writes) before its
 * input is ready. The rule that keeps this correct: every kernel launched here calls
 * pdl_wait() before it reads anything an earlier kernel wrote and before it writes
 * anything (pdl_enter() at its start does both; only weights may be read before it). A
 * kernel then lets the next one launch (pdl_launch_dependents) once it is past its wait.
 * Two allowances (ops_nofma.cu, argmax.cu): the step's arena (step.h) may also be read
 * before the wait (it is uploaded before a list's first kernel, which launches without the
 * attribute), and a short kernel may let the next one launch before its own wait: the next
 * one still waits for this one to finish, which finishes only after the one before it.
 * Off before compute capability 9.0, or with RUVLLM_CUDA_PDL=0 (bisecting); on devices
 * without it the instructions are left out and launches are ordinary.
 */
#ifndef RL_BACKEND_CUDA_LAUNCH_CUH
#define RL_BACKEND_CUDA_LAUNCH_CUH

#include <cuda_runtime.h>

#include <cstdlib>
#include <utility>

namespace rlcu {

inline bool g_pdl = false; /* launches carry the attribute (pdl_init) */
/* The device runs sm_90's instructions (pdl_init): the bulk copies and byte-counting barriers
 * of mbar.cuh's users are taken only then (the sm_80 build traps in them). */
inline bool g_sm90 = false;
/* The next launch of this thread goes without the attribute (rl__cu_pdl_plain_next): the
 * first kernel of a queued list has no kernel before it to overlap, and a graph whose
 * first (or only) kernel node carried it crashed compute-sanitizer inside cuGraphLaunch. */
inline thread_local bool g_pdl_plain = false;

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}
/* The start of every kernel: wait for the grid before, then let the next one launch. */
__device__ __forceinline__ void pdl_enter() {
    pdl_wait();
    pdl_launch_dependents();
}

/* PDL for the current device, unless RUVLLM_CUDA_PDL=0; g_sm90. */
inline cudaError_t pdl_init() {
    int dev = 0, major = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    const char *v = getenv("RUVLLM_CUDA_PDL");
    g_sm90 = e == cudaSuccess && major >= 9;
    g_pdl = g_sm90 && !(v && v[0] == '0');
    return e;
}

/* kernel<<<grid, block, smem, s>>>(args...) in clusters of cl blocks along x (sm_90; grid.x a
 * multiple of cl; cl <= 1: no clusters), with the PDL attribute when it is on. */
template <typename... KArgs, typename... Args>
cudaError_t launch_cluster(void (*kernel)(KArgs...), dim3 grid, dim3 block, unsigned cl,
                           size_t smem, cudaStream_t s, Args &&...args) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cudaLaunchAttribute at[2];
    unsigned na = 0;
    if (cl > 1) {
        at[na].id = cudaLaunchAttributeClusterDimension;
        at[na].val.clusterDim.x = cl;
        at[na].val.clusterDim.y = 1;
        at[na].val.clusterDim.z = 1;
        na++;
    }
    if (g_pdl && !g_pdl_plain) {
        at[na].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[na].val.programmaticStreamSerializationAllowed = 1;
        na++;
    }
    cfg.attrs = at;
    cfg.numAttrs = na;
    g_pdl_plain = false;
    return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

/* kernel<<<grid, block, smem, s>>>(args...), with the PDL attribute when it is on. */
template <typename... KArgs, typename... Args>
cudaError_t launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                   Args &&...args) {
    return launch_cluster(kernel, grid, block, 1u, smem, s, std::forward<Args>(args)...);
}

} // namespace rlcu

#endif /* RL_BACKEND_CUDA_LAUNCH_CUH */
