/*
 * mbar.cuh - shared-memory barriers that count bytes (PTX ISA, "mbarrier") and the bulk copies
 * that fill them: a stage of a copy ring that the copy engine fills (bulk_g2s) completes
 * on its barrier once its bytes have landed, and the warps that read it wait on the
 * barrier's phase. Each barrier here has one arriving thread, the one that issues the
 * stage's copies.
 *
 * The transaction counts and the phase wait exist from sm_90 on (PTX ISA); the release build
 * also compiles for sm_80, where the host never takes the paths that use them (rlcu_sm90,
 * launch.cuh) and a kernel that reached one would trap instead.
 */
#ifndef RL_BACKEND_CUDA_MBAR_CUH
#define RL_BACKEND_CUDA_MBAR_CUH

#include <cstdint>

namespace rlcu {

/* bar (a shared-memory address, 8-byte aligned) for one arrival a phase; before its first use
 * by the copy engine the initializing threads also run fence.mbarrier_init */
__device__ __forceinline__ void mbar_init(uint32_t bar) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(bar) : "memory");
}
/* this thread's arrival, and tx more bytes the current phase waits for */
__device__ __forceinline__ void mbar_expect(uint32_t bar, uint32_t tx) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    __trap();
#else
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(tx)
                 : "memory");
#endif
}
/* until the phase of parity ph is complete */
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t ph) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    __trap();
#else
    asm volatile("{\n.reg .pred P1;\nLAB_WAIT:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n"
                 "@P1 bra DONE;\nbra LAB_WAIT;\nDONE:\n}\n" ::"r"(bar),
                 "r"(ph)
                 : "memory");
#endif
}

/* bytes (a multiple of 16) global -> shared at dst (a 16-byte aligned shared address) by the
 * copy engine, counted on bar (PTX ISA, "cp.async.bulk"); with pol, that L2 cache policy
 * (createpolicy) for the lines read. */
__device__ __forceinline__ void bulk_g2s(uint32_t dst, const void *src, uint32_t bytes, uint32_t bar) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    __trap();
#else
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], "
                 "%2, [%3];\n" ::"r"(dst),
                 "l"(src), "r"(bytes), "r"(bar)
                 : "memory");
#endif
}
__device__ __forceinline__ void bulk_g2s(uint32_t dst, const void *src, uint32_t bytes, uint32_t bar,
                                         uint64_t pol) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    __trap();
#else
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.L2::cache_hint "
                 "[%0], [%1], %2, [%3], %4;\n" ::"r"(dst),
                 "l"(src), "r"(bytes), "r"(bar), "l"(pol)
                 : "memory");
#endif
}

/* fence.mbarrier_init (before the copy engine's first use of barriers this thread made),
 * fence.proxy.async (shared memory read by this thread's loads before the copy engine writes
 * it again): sm_90 instructions, as above. */
__device__ __forceinline__ void fence_mbar_init() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    __trap();
#else
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void fence_proxy_async() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    __trap();
#else
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

} // namespace rlcu

#endif /* RL_BACKEND_CUDA_MBAR_CUH */
