/*
 * mma.cuh - the f16 tensor-core operations the attention kernels share (fattn.cu for
 * prefill, attention.cu's mma_dec_kernel for batched decode): shared-memory addresses,
 * ldmatrix loads of 8x8 b16 fragments (plain and transposed) and mma.sync m16n8k16 with f32
 * accumulators (PTX ISA, "Warp-level matrix instructions": ldmatrix, mma.m16n8k16 fragment
 * layouts). Device code only; include from .cu files.
 */
#ifndef RL_BACKEND_CUDA_MMA_CUH
#define RL_BACKEND_CUDA_MMA_CUH

#include <stdint.h>

namespace rlcu {

/* The shared-memory address of a generic pointer into shared memory. */
__device__ __forceinline__ uint32_t smem_u32(const void *p) {
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* Four 8x8 b16 matrices from shared memory (lane l gives the address of row l % 8 of
 * matrix l / 8), as the fragments of mma's A operand; ldsm_x4_t transposes each. */
__device__ __forceinline__ void ldsm_x4(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], const void *p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

/* c += a (16x16, row) * b (16x8, col), f16 in, f32 accumulate. */
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0,
                                         uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
                 "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

} // namespace rlcu

#endif
