/*
 * mmq.cu - products of many tokens (prefill, batched decode) on the int8 tensor cores,
 * reading the quantized weights in place: y[n][rows] = x[n][K] W^T for W in Q4_0, Q8_0,
 * Q4_K or Q6_K (K a multiple of 256).
 *
 * The idea is the one llama.cpp's MMQ kernels publish (integer tensor-core products of
 * the weight codes with activations quantized to int8 per 32 values, the block scales
 * applied in float per block); this is our own code. The activations are quantized once
 * per product (or once for consecutive products of one input) by mmq_quant_kernel: per
 * block of 32 values of a token, d = max|v| / 127, codes round(v / d) (Q8_0's rounding,
 * which llama.cpp's CPU uses for Q4_0 / Q8_0 dots), and the sum of the 32 quantized values
 * d * sum(codes) (for the weight types with a per-block minimum, Q4_K); the activations
 * of Q4_K / Q6_K products as Q8_K instead (one scale per 256: mmq_quant_kernel<1>, the
 * rounding of llama.cpp's CPU k-quant dots; RUVLLM_CUDA_MMQ_Q8K=0 rounds them per 32, which
 * moved the Q4_K_M goldens past their tolerance once prompts went through this file). A
 * 32-value block then contributes
 *     d_w * d_x * sum(qw * qx)  [- m_w * d_x * sum(qx)]
 * to an output, the integer sum from mma.sync.m16n8k32 (s8 x s8 -> s32); Q6_K, with a
 * scale per 16 values, takes two m16n8k16 products per block instead.
 *
 * Layout of the quantized activations (the workspace, rl__cu_mmq_bytes): tokens in tiles
 * of 8 (ntl = ceil(n / 8), the last padded with zero codes and scales). For each 32-value
 * block kb and tile j, 256 bytes in the order of the mma's B fragment: lane 4 g + t holds
 * token 8 j + g's values 4t..4t+3 and 16+4t..16+4t+3 (one 8-byte load per lane); then the
 * scales: for each (kb, j) 8 float2 (d, sum), so lane t reads tokens 2t and 2t+1 (the
 * columns of its accumulators) in one 16-byte load.
 *
 * Weights: lane 4 g + t of a warp reads, for rows g and g+8 of each 16-row tile, the
 * bytes that hold values 4t..4t+3 and 16+4t..16+4t+3 of each block and turns them into
 * int8 codes (Q4_0: q - 8; Q4_K: q with the minimum applied in float; Q6_K: q - 32;
 * Q8_0: as stored). Three kernels do this:
 * - mmq_tile_kernel (the default from 33 tokens): a block stages its rows' raw weight bytes and its
 *   tokens' activation tiles in shared memory with cp.async, 2 to 4 steps of 256 values
 *   ahead, and its warps decode from there: 64 or 128 rows x up to 64 tokens with 4 warps
 *   (every weight byte read once for batched decoding), or 128 x 128 with 8 warps for long
 *   inputs.
 * - mmq_stream_kernel (the default up to 32 tokens, RUVLLM_CUDA_MMQ_STREAM; up to 64 for
 *   matrices of at most 1024 rows, up to 16 for the output head; make_plan): 16 rows a
 *   block, its 8 warps each a share of K through its own cp.async ring, so many short
 *   independent warps stream the weights once (8 tokens, H100: Q4_K 4096x14336 22 us against
 *   the tiled kernel's 30; even at 32 tokens, behind it from 64). It is latency-bound, not
 *   bandwidth-bound (ncu, Q4_K 4096x4096, 8 tokens: 16 warps an SM at 125 registers, 0.3
 *   instructions a cycle per scheduler, a third of the stalls on the activation loads from
 *   L2, DRAM 27% busy). Tried (H100, /work/notes/patches/mmq-stream-variants.patch): a row
 *   per lane in the copies with scales through PRMT instead of I2F, 5-15% slower; on top of
 *   that an L1 prefetch of the next step's activations, slower; 3 blocks an SM at 80
 *   registers or 4 warps a block, 5-10% faster on 14336 x 4096 and the output head, slower
 *   on K = 14336.
 * - mmq_kernel (RUVLLM_CUDA_MMQ_TILE=0): each warp decodes its own rows straight from
 *   global memory (mmq_staged_kernel, RUVLLM_CUDA_MMQ_STAGED=1, the same through shared
 *   memory); the kernel benchmark's reference.
 * Weights by bulk copies (RUVLLM_CUDA_MMQ_BULK, default on where the rows are 16-byte
 * aligned; =0: cp.async): the streaming kernel's warps and the 128-row tiles of the integer
 * step fill their stages with one cp.async.bulk per row (the tiles also one per block of
 * activation codes and one for the scales), completing on a byte-counting barrier a stage
 * (mbar.cuh), instead of a cp.async of 16 bytes per thread with its index arithmetic (a
 * fifth of the streaming kernel's instructions a step); the stages' layout and the
 * arithmetic are the same, so are the results.
 * Few blocks (batched decode): the K range is also split over blocks (grid.z), each
 * writing partial sums that mmq_reduce_kernel adds in a fixed order (results do not
 * depend on scheduling).
 *
 * Where it stands (H100, Llama 3 8B shapes, `RUVLLM_KBENCH=mmq bench_cuda --kernels`,
 * the decode of BF16 weights included in the cuBLAS path's time): the tiled kernel reads
 * Q4_K at 1.0-1.1 TB/s for 8 and 16 tokens (4096x14336: 30 us; mmq_kernel 35 / 53 us, BF16 +
 * cuBLAS 121 us), Q8_0 / Q6_K at 1.3-1.6 TB/s, and is 2-3x that cuBLAS path at 32 to 64
 * tokens, 1.1-1.4x at 128 (Q6_K 4096x14336 2% behind); from 256 tokens cuBLAS wins (it
 * reaches 330-360 TFLOP/s at 512, this kernel 135-195): the backend sends it up to 128
 * tokens (RUVLLM_CUDA_MMQ_MAX, backend_cuda.c). The large tiles are bound by the float
 * work on each integer sum (2-5 instructions for each 4 outputs of an mma, the block
 * scales of both operands), not by memory; with Q8_K activations the tiles of up to 8
 * mmas a step keep a step sum per output (step_product_k: 5-8% faster).
 *
 * Batched decoding of k-quants (32 / 64 tokens; RUVLLM_CUDA_MMQ_INT, _WIDE, _WAVES, each =0
 * for the kernels before them): the integer step (step_product_i: the sub-scales applied to
 * the mma sums by IMAD in int32, the Q4_K minimum as an mma of the same activations, two
 * floats per output a step instead of 2-3 per block) in the streaming and tiled kernels;
 * 128-row tiles of 8 warps for it (the activation tiles, more bytes a step than a 64-row
 * block's weights at 64 tokens, shared by twice the rows); K split by whole waves (make_plan).
 * H100, bench_cuda --kernels, before -> after: Q4_K 14336x4096 32 tokens 39.2 -> 34.2 us,
 * 64: 61.5 -> 52.2; Q4_K 4096x14336 37.0 -> 33.5, 55.8 -> 49.6; Q4_K 4096x4096 13.6 -> 12.8,
 * 22.4 -> 18.7; Q6_K 4096x14336 43.6 -> 39.9, 68.2 -> 55.9; the Q6_K head 128256x4096 at 64
 * 537 -> 452.
 *
 * Lean integer step (RUVLLM_CUDA_MMQ_LEAN, _RING, _LEAN_TILE, each =0 for the kernels
 * before them; step_lean_q4k): the streaming kernels of an input of whole token tiles
 * (8 / 16 / 32 tokens) read the activations at fixed offsets, take Q4_K's scales unpacked
 * once a row and its high nibbles unshifted, and, where a warp has at most 2 steps (K 4096),
 * keep a ring of 2 stages in less shared memory (carveout: the rest is L1). H100: the step
 * loop of the joined gate/up kernel at 32 tokens 746 -> 609 SASS instructions; test_cuda_bfuse
 * layer parts (joined) 8 tokens 83.1-84.2 -> 75.7-76.6 us, 32: 123.1-125.5 -> 112.7-114.0,
 * 64 (the 128-row tiles' lean step) 165.6-167.8 -> 163.7-163.8.
 */
#include "cuda_impl.h"
#include "launch.cuh"
#include "mbar.cuh"
#include "mmq_layout.cuh"
#include "qtypes.cuh"
#include "step.h"

#include <cstdlib>
#include <type_traits>

namespace {

using namespace rlcu;

constexpr int MMQ_WARPS = 4;

/* ---- tensor-core products (PTX ISA, "Matrix multiply-accumulate operation using mma
 * instruction", shapes m16n8k32 and m16n8k16 with .s8 operands) ---- */

/* The accumulators start at I2F_BIAS, so each result is the bit pattern of the float
 * 2^23 + 2^22 + (A B) (i2f_small). */
constexpr int I2F_BIAS = 0x4B400000;

/* c = bias + A B for A 16x32 (a0: row g, k 4t..4t+3; a1: row g+8, same k; a2, a3: k + 16)
 * and B 32x8 (b0: k 4t..4t+3 of column g; b1: k + 16); c0, c1: row g, columns 2t, 2t+1;
 * c2, c3: row g+8. */
__device__ __forceinline__ void mma_k32(int c[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                        uint32_t a3, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%10,%10,%10,%10};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(I2F_BIAS));
}

/* The same for 16 values of k: a0 row g, a1 row g+8 (k 4t..4t+3), b0 k 4t..4t+3. */
__device__ __forceinline__ void mma_k16(int c[4], uint32_t a0, uint32_t a1, uint32_t b0) {
    asm("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
        "{%7,%7,%7,%7};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(b0), "r"(I2F_BIAS));
}

/* The same products with an integer accumulator (the integer step, step_product_i): c = A B
 * (zero start), and c += A B. */
__device__ __forceinline__ void mma_k32_z(int c[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                          uint32_t a3, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%10,%10,%10,%10};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(0));
}
__device__ __forceinline__ void mma_k32_c(int c[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                          uint32_t a3, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void mma_k16_z(int c[4], uint32_t a0, uint32_t a1, uint32_t b0) {
    asm("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5}, {%6}, "
        "{%7,%7,%7,%7};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(b0), "r"(0));
}

/* c = A B with A unsigned (u8: codes up to 255) and B signed, zero start (the lean Q4_K
 * step: the high nibbles as they sit in the byte, 16 times the code). */
__device__ __forceinline__ void mma_k32_uz(int c[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                           uint32_t a3, uint32_t b0, uint32_t b1) {
    asm("mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%10,%10,%10,%10};"
        : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(0));
}

/* Four unsigned codes per word (each < 128) minus 8 / minus 32, as signed bytes: no
 * carry crosses a byte (v + 0x78 <= 0x87), and flipping the top bit then subtracts 128. */
__device__ __forceinline__ uint32_t sub8x4(uint32_t v) { return (v + 0x78787878u) ^ 0x80808080u; }
__device__ __forceinline__ uint32_t sub32x4(uint32_t v) { return (v + 0x60606060u) ^ 0x80808080u; }

__device__ __forceinline__ float half_bits(uint32_t h) {
    return __half2float(__ushort_as_half((unsigned short)(h & 0xffffu)));
}

/* An integer sum c of at most 32 products of int8 codes (|c| < 2^22) as float, exactly,
 * from the mma's result biased by I2F_BIAS: the bits of the float 2^23 + 2^22 + c, less
 * that constant (one float add). I2F runs at a quarter of the rate of float adds, and the
 * epilogue converts 4 sums per mma: with it the kernel was bound by conversions (about
 * 60 TFLOP/s at 512 tokens on an H100). */
__device__ __forceinline__ float i2f_small(int biased) {
    return __int_as_float(biased) - 12582912.0f;
}

/* ---- the weight types: one row's part of a step of 256 values (8 blocks of 32).
 * load: the row's bytes for lane t; frag(sb): block sb's codes (lo: values 4t..4t+3, hi:
 * 16+4t..), its scale per 32 (d0) or per 16 (d0: the first 16, d1: the second) and
 * minimum (m). ---- */

struct MQ4_0 {
    static constexpr int STEP_BYTES = 8 * RL_CU_Q4_0_BYTES;
    static constexpr bool HALVES = false, MIN = false;
    struct Row {
        uint32_t q[8];
        uint32_t d[4]; /* two halves each */
    };
    __device__ static void load(const uint8_t *p, int t, Row &r) {
#pragma unroll
        for (int b = 0; b < 8; b++) r.q[b] = ld_u32_b2(p + b * RL_CU_Q4_0_BYTES + RL_CU_Q4_0_QS + 4 * t);
#pragma unroll
        for (int b = 0; b < 4; b++) {
            const unsigned short *h = reinterpret_cast<const unsigned short *>(p + 2 * b * RL_CU_Q4_0_BYTES);
            r.d[b] = (uint32_t)h[0] | (uint32_t)h[RL_CU_Q4_0_BYTES / 2] << 16;
        }
    }
    __device__ static void frag(const Row &r, int sb, uint32_t &lo, uint32_t &hi, float &d0,
                                float &d1, float &m) {
        lo = sub8x4(r.q[sb] & 0x0f0f0f0fu);
        hi = sub8x4((r.q[sb] >> 4) & 0x0f0f0f0fu);
        d0 = half_bits(r.d[sb >> 1] >> (16 * (sb & 1)));
        d1 = 0.0f;
        m = 0.0f;
    }
};

struct MQ8_0 {
    static constexpr int STEP_BYTES = 8 * RL_CU_Q8_0_BYTES;
    static constexpr bool HALVES = false, MIN = false;
    struct Row {
        uint32_t q[8][2];
        uint32_t d[4];
    };
    __device__ static void load(const uint8_t *p, int t, Row &r) {
#pragma unroll
        for (int b = 0; b < 8; b++) {
            r.q[b][0] = ld_u32_b2(p + b * RL_CU_Q8_0_BYTES + RL_CU_Q8_0_QS + 4 * t);
            r.q[b][1] = ld_u32_b2(p + b * RL_CU_Q8_0_BYTES + RL_CU_Q8_0_QS + 16 + 4 * t);
        }
#pragma unroll
        for (int b = 0; b < 4; b++) {
            const unsigned short *h = reinterpret_cast<const unsigned short *>(p + 2 * b * RL_CU_Q8_0_BYTES);
            r.d[b] = (uint32_t)h[0] | (uint32_t)h[RL_CU_Q8_0_BYTES / 2] << 16;
        }
    }
    __device__ static void frag(const Row &r, int sb, uint32_t &lo, uint32_t &hi, float &d0,
                                float &d1, float &m) {
        lo = r.q[sb][0];
        hi = r.q[sb][1];
        d0 = half_bits(r.d[sb >> 1] >> (16 * (sb & 1)));
        d1 = 0.0f;
        m = 0.0f;
    }
};

/* Q4_K: d, dmin, 12 bytes of 6-bit scales and minimums, 128 bytes of codes (sub-blocks
 * 2i and 2i+1 in the low and high nibbles of bytes 32i..32i+31). Rows 16-byte aligned. */
struct MQ4_K {
    static constexpr int STEP_BYTES = RL_CU_Q4_K_BYTES;
    static constexpr bool HALVES = false, MIN = true;
    struct Row {
        uint4 h; /* d, dmin | scales[0..3] | scales[4..7] | scales[8..11] */
        uint32_t q[4][2];
    };
    __device__ static void load(const uint8_t *p, int t, Row &r) {
        r.h = *reinterpret_cast<const uint4 *>(p);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            r.q[i][0] = *reinterpret_cast<const uint32_t *>(p + RL_CU_Q4_K_QS + 32 * i + 4 * t);
            r.q[i][1] = *reinterpret_cast<const uint32_t *>(p + RL_CU_Q4_K_QS + 32 * i + 16 + 4 * t);
        }
    }
    /* byte j (0..11, constant after unrolling) of the scales */
    __device__ static int sbyte(const Row &r, int j) {
        const uint32_t w = j < 4 ? r.h.y : j < 8 ? r.h.z : r.h.w;
        return (int)((w >> (8 * (j & 3))) & 0xffu);
    }
    /* codes, the 6-bit scale and minimum as integers (s1 unused; the integer step's) */
    __device__ static void fragi(const Row &r, int sb, uint32_t &lo, uint32_t &hi, int &s0,
                                 int &s1, int &m) {
        const int sh = 4 * (sb & 1);
        lo = (r.q[sb >> 1][0] >> sh) & 0x0f0f0f0fu;
        hi = (r.q[sb >> 1][1] >> sh) & 0x0f0f0f0fu;
        if (sb < 4) {
            s0 = sbyte(r, sb) & 63;
            m = sbyte(r, sb + 4) & 63;
        } else {
            s0 = (sbyte(r, sb + 4) & 0xf) | (sbyte(r, sb - 4) >> 6) << 4;
            m = (sbyte(r, sb + 4) >> 4) | (sbyte(r, sb) >> 6) << 4;
        }
        s1 = 0;
    }
    /* the super-block's scales d and dmin */
    __device__ static void dscale(const Row &r, float &d, float &dm) {
        d = half_bits(r.h.x);
        dm = half_bits(r.h.x >> 16);
    }
    __device__ static void frag(const Row &r, int sb, uint32_t &lo, uint32_t &hi, float &d0,
                                float &d1, float &m) {
        int sc, s1, mn;
        fragi(r, sb, lo, hi, sc, s1, mn);
        d0 = half_bits(r.h.x) * (float)sc;
        m = half_bits(r.h.x >> 16) * (float)mn;
        d1 = 0.0f;
    }
};

/* Q6_K: ql[128] (low 4 bits), qh[64] (top 2 bits), 16 int8 scales (one per 16 values), d.
 * Within each half of 128 values: ql byte l holds values l (low nibble) and l+64 (high),
 * byte l+32 values l+32 and l+96; qh byte l the top bits of l, l+32, l+64, l+96. Blocks of
 * 210 bytes are only 2-byte aligned. */
struct MQ6_K {
    static constexpr int STEP_BYTES = RL_CU_Q6_K_BYTES;
    static constexpr bool HALVES = true, MIN = false;
    struct Row {
        uint32_t ql[2][2][2]; /* [half][quarter & 1][values 4t.. / 16+4t..] */
        uint32_t qh[2][2];    /* [half][4t.. / 16+4t..] */
        uint32_t sc[4];
        float d;
    };
    __device__ static void load(const uint8_t *p, int t, Row &r) {
#pragma unroll
        for (int h = 0; h < 2; h++) {
#pragma unroll
            for (int q = 0; q < 2; q++)
#pragma unroll
                for (int e = 0; e < 2; e++) r.ql[h][q][e] = ld_u32_b2(p + 64 * h + 32 * q + 16 * e + 4 * t);
#pragma unroll
            for (int e = 0; e < 2; e++) r.qh[h][e] = ld_u32_b2(p + RL_CU_Q6_K_QH + 32 * h + 16 * e + 4 * t);
        }
#pragma unroll
        for (int i = 0; i < 4; i++) r.sc[i] = ld_u32_b2(p + RL_CU_Q6_K_SCALES + 4 * i);
        r.d = h2f(p + RL_CU_Q6_K_D);
    }
    __device__ static void frag(const Row &r, int sb, uint32_t &lo, uint32_t &hi, float &d0,
                                float &d1, float &m) {
        const int h = sb >> 2, qt = sb & 3, shl = qt >= 2 ? 4 : 0, shh = 2 * qt;
        uint32_t v[2];
#pragma unroll
        for (int e = 0; e < 2; e++)
            v[e] = sub32x4(((r.ql[h][qt & 1][e] >> shl) & 0x0f0f0f0fu) |
                           (((r.qh[h][e] >> shh) & 0x03030303u) << 4));
        lo = v[0];
        hi = v[1];
        const int s0 = 8 * h + 2 * qt, s1 = s0 + 1;
        d0 = r.d * (float)(int8_t)(r.sc[s0 >> 2] >> (8 * (s0 & 3)));
        d1 = r.d * (float)(int8_t)(r.sc[s1 >> 2] >> (8 * (s1 & 3)));
        m = 0.0f;
    }
    /* the integer step's: codes and the int8 scales of the two halves (m unused; frag's
     * decoding, kept apart: frag through this one changed ptxas's allocation of the measured
     * float kernels, e.g. the 128 x 128 Q6_K tile 211 -> 255 registers) */
    __device__ static void fragi(const Row &r, int sb, uint32_t &lo, uint32_t &hi, int &i0,
                                 int &i1, int &m) {
        const int h = sb >> 2, qt = sb & 3, shl = qt >= 2 ? 4 : 0, shh = 2 * qt;
        uint32_t v[2];
#pragma unroll
        for (int e = 0; e < 2; e++)
            v[e] = sub32x4(((r.ql[h][qt & 1][e] >> shl) & 0x0f0f0f0fu) |
                           (((r.qh[h][e] >> shh) & 0x03030303u) << 4));
        lo = v[0];
        hi = v[1];
        const int s0 = 8 * h + 2 * qt, s1 = s0 + 1;
        i0 = (int)(int8_t)(r.sc[s0 >> 2] >> (8 * (s0 & 3)));
        i1 = (int)(int8_t)(r.sc[s1 >> 2] >> (8 * (s1 & 3)));
        m = 0;
    }
    __device__ static void dscale(const Row &r, float &d, float &dm) {
        d = r.d;
        dm = 0.0f;
    }
};

/* ---- activations ---- */

/* x [n][K] -> the layout above (mmq_layout.cuh writes it): a warp per 256 values of a
 * token, lane l holding values 8l..8l+7, tokens n .. 8 ntl - 1 as zeros. MODE 0 rounds
 * per 32 values (Q8_0's rounding, mmq_quant32); the sum stored is that of the
 * quantized values (d times the sum of the codes): the minimum term then pairs with the
 * same activations as the integer products, so the two parts' large halves cancel as they
 * do in float (with the float sum Q4_K's error was 5x the other types'). MODE 1 rounds
 * the activations of k-quant products as llama.cpp's CPU dot products of Q4_K / Q6_K
 * round them (Q8_K: one scale per 256 values, rl__quant_q8_K, mmq_quant256; the default;
 * RUVLLM_CUDA_MMQ_Q8K=0 turns it off); each block of 32 gets the 256's scale and the sum
 * of its own codes. Then the integer sums are the CPU's and only the float order of the
 * scale products differs (as for Q8_0 / Q4_0 with the per-32 rounding, which is Q8_0's).
 * The RMSNorm and gated-activation kernels write the same layout for the products after
 * them (ops_nofma.cu), which then skip these launches. */
template <int MODE>
__global__ void mmq_quant_kernel(const float *__restrict__ x, int64_t n, int64_t K, int ntl,
                                     uint32_t *__restrict__ q, float2 *__restrict__ sc) {
    rlcu::pdl_enter();
    const int64_t wi = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5; /* warp */
    const int lane = threadIdx.x & 31;
    const int64_t nb = K / 256;
    const int64_t tok = wi / nb, b256 = wi % nb;
    if (tok >= (int64_t)ntl * 8) return; /* whole warps */
    float v[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    if (tok < n) {
        const float4 *xp = reinterpret_cast<const float4 *>(x + tok * K + b256 * 256) + 2 * lane;
        const float4 a = xp[0], b = xp[1];
        v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
    }
    float d, sum;
    const uint2 c = MODE == 1 ? rlcu::mmq_quant256(v, &d, &sum) : rlcu::mmq_quant32(v, &d, &sum);
    rlcu::mmq_put8(q, sc, b256 * 8 + (lane >> 2), ntl, tok, lane & 3, c, d, sum);
}

/* ---- the product ---- */

template <class WT, int MT, int NT>
__global__ void __launch_bounds__(MMQ_WARPS * 32)
    mmq_kernel(const uint8_t *__restrict__ w, size_t row_bytes, int64_t rows,
               const uint2 *__restrict__ xq, const float4 *__restrict__ xs, int ntl, int64_t n,
               float *__restrict__ y, int sps, int nsteps) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int64_t rb = (int64_t)blockIdx.y * (16 * MT * MMQ_WARPS) + warp * 16 * MT;
    const int j0 = blockIdx.x * NT;
    const int nj = ntl - j0 < NT ? ntl - j0 : NT;
    const int s0 = blockIdx.z * sps;
    const int s1 = s0 + sps < nsteps ? s0 + sps : nsteps;
    const uint8_t *rp[MT][2];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int64_t r = rb + 16 * i + 8 * h + g;
            rp[i][h] = w + (size_t)(r < rows ? r : rows - 1) * row_bytes;
        }
    rlcu::pdl_enter();
    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;

    for (int st = s0; st < s1; st++) {
        /* the next step's weight bytes into L2 while this one computes: lane t at
         * t/3 of the step's span, so every 128-byte line of it is touched */
        if (st + 1 < s1)
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int h = 0; h < 2; h++)
                    asm volatile("prefetch.global.L2 [%0];" ::"l"(rp[i][h] + (size_t)(st + 1) * WT::STEP_BYTES +
                                                                   t * (WT::STEP_BYTES - 1) / 3));
        typename WT::Row row[MT][2];
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int h = 0; h < 2; h++) WT::load(rp[i][h] + (size_t)st * WT::STEP_BYTES, t, row[i][h]);
#pragma unroll
        for (int sb = 0; sb < 8; sb++) {
            uint32_t lo[MT][2], hi[MT][2];
            float d0[MT][2], d1[MT][2], mn[MT][2];
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int h = 0; h < 2; h++)
                    WT::frag(row[i][h], sb, lo[i][h], hi[i][h], d0[i][h], d1[i][h], mn[i][h]);
            const int64_t tb = ((int64_t)st * 8 + sb) * ntl + j0;
#pragma unroll
            for (int j = 0; j < NT; j++) {
                if (j < nj) {
                    const uint2 b = xq[(tb + j) * 32 + lane];
                    const float4 xv = xs[(tb + j) * 4 + t]; /* d, sum of tokens 2t, 2t+1 */
#pragma unroll
                    for (int i = 0; i < MT; i++) {
                        if constexpr (WT::HALVES) {
                            int c0[4], c1[4];
                            mma_k16(c0, lo[i][0], lo[i][1], b.x);
                            mma_k16(c1, hi[i][0], hi[i][1], b.y);
#pragma unroll
                            for (int e = 0; e < 4; e++) {
                                const int h = e >> 1;
                                const float xd = (e & 1) ? xv.z : xv.x;
                                acc[i][j][e] += xd * (d0[i][h] * i2f_small(c0[e]) + d1[i][h] * i2f_small(c1[e]));
                            }
                        } else {
                            int c[4];
                            mma_k32(c, lo[i][0], lo[i][1], hi[i][0], hi[i][1], b.x, b.y);
#pragma unroll
                            for (int e = 0; e < 4; e++) {
                                const int h = e >> 1;
                                const float xd = (e & 1) ? xv.z : xv.x;
                                acc[i][j][e] = fmaf(d0[i][h] * xd, i2f_small(c[e]), acc[i][j][e]);
                                if constexpr (WT::MIN) {
                                    const float xsum = (e & 1) ? xv.w : xv.y;
                                    acc[i][j][e] = fmaf(-mn[i][h], xsum, acc[i][j][e]);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    float *out = y + (size_t)blockIdx.z * (size_t)n * (size_t)rows;
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++) {
            if (j >= nj) continue;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int64_t r = rb + 16 * i + 8 * (e >> 1) + g;
                const int64_t tok = (int64_t)(j0 + j) * 8 + 2 * t + (e & 1);
                if (r < rows && tok < n) out[(size_t)tok * rows + r] = acc[i][j][e];
            }
        }
}

/* One step (8 blocks of 32 values) of a warp's tile for the staged kernel: the rows'
 * bytes already loaded, the activation fragments of block sb and token tile j at xq / xs
 * [(sb * stride + j)]. The same arithmetic as mmq_kernel's loop in the same order; a copy,
 * so that mmq_kernel's code (the measured one) stays as it is: moved into a shared
 * function, ptxas spilled two of its instances. */
template <class WT, int MT, int NT>
__device__ __forceinline__ void step_product(const typename WT::Row (&row)[MT][2],
                                             const uint2 *__restrict__ xq,
                                             const float4 *__restrict__ xs, int64_t stride,
                                             int lane, int t, int nj, float (&acc)[MT][NT][4]) {
#pragma unroll
    for (int sb = 0; sb < 8; sb++) {
        uint32_t lo[MT][2], hi[MT][2];
        float d0[MT][2], d1[MT][2], mn[MT][2];
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int h = 0; h < 2; h++)
                WT::frag(row[i][h], sb, lo[i][h], hi[i][h], d0[i][h], d1[i][h], mn[i][h]);
#pragma unroll
        for (int j = 0; j < NT; j++) {
            /* no branch on nj: tiles past it read the last one's fragments (in bounds) and
             * their sums are never stored, so the loads of all j can be issued together */
            {
                const int jj = j < nj ? j : nj - 1;
                const uint2 b = xq[((int64_t)sb * stride + jj) * 32 + lane];
                const float4 xv = xs[((int64_t)sb * stride + jj) * 4 + t]; /* d, sum: 2t, 2t+1 */
#pragma unroll
                for (int i = 0; i < MT; i++) {
                    if constexpr (WT::HALVES) {
                        int c0[4], c1[4];
                        mma_k16(c0, lo[i][0], lo[i][1], b.x);
                        mma_k16(c1, hi[i][0], hi[i][1], b.y);
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const int h = e >> 1;
                            const float xd = (e & 1) ? xv.z : xv.x;
                            acc[i][j][e] += xd * (d0[i][h] * i2f_small(c0[e]) + d1[i][h] * i2f_small(c1[e]));
                        }
                    } else {
                        int c[4];
                        mma_k32(c, lo[i][0], lo[i][1], hi[i][0], hi[i][1], b.x, b.y);
#pragma unroll
                        for (int e = 0; e < 4; e++) {
                            const int h = e >> 1;
                            const float xd = (e & 1) ? xv.z : xv.x;
                            acc[i][j][e] = fmaf(d0[i][h] * xd, i2f_small(c[e]), acc[i][j][e]);
                            if constexpr (WT::MIN) {
                                const float xsum = (e & 1) ? xv.w : xv.y;
                                acc[i][j][e] = fmaf(-mn[i][h], xsum, acc[i][j][e]);
                            }
                        }
                    }
                }
            }
        }
    }
}

/* ---- the staged variant (RUVLLM_CUDA_MMQ_STAGED=1; H100: faster than mmq_kernel, slower
 * than the tiled kernel from 32 tokens, off by default): the block copies
 * each step's weight bytes and activation tile into shared memory with cp.async (PTX ISA,
 * "cp.async"), the next step's while this one computes (two stages), so no warp waits on
 * L2 for its operands; the arithmetic is mmq_kernel's, in the same order (bit-identical
 * results). Weights 16-byte aligned. ---- */

__device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes) {
    const uint32_t d = (uint32_t)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(d), "l"(src), "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}

/* Shared memory of one stage: ROWS row slots of WS bytes (a step's bytes at the offset
 * they have modulo 16 in memory, so the decoders' aligned loads stay aligned; WS an odd
 * number of 16-byte units, so the 8 rows a warp reads at once fall in different banks),
 * then the activation codes [8][NT][256] and scales [8][NT][8] float2. */
template <class WT, int MT, int NT> struct staged_layout {
    static constexpr int ROWS = 16 * MT * MMQ_WARPS;
    static constexpr int WS = (((WT::STEP_BYTES + 30) / 16) | 1) * 16;
    static constexpr int CH = (WT::STEP_BYTES + 30) / 16; /* 16-byte chunks a row needs at most */
    static constexpr int W_BYTES = ROWS * WS;
    static constexpr int C_BYTES = 8 * NT * 256;
    static constexpr int S_BYTES = 8 * NT * 64;
    static constexpr int STAGE = W_BYTES + C_BYTES + S_BYTES;
};

template <class WT, int MT, int NT>
__device__ __forceinline__ void stage_load(uint8_t *sm, const uint8_t *__restrict__ w,
                                           size_t row_bytes, int64_t rows, int64_t r0,
                                           const uint8_t *__restrict__ xq,
                                           const uint8_t *__restrict__ xs, int ntl, int j0,
                                           int nj, int st) {
    using L = staged_layout<WT, MT, NT>;
    for (int i = threadIdx.x; i < L::ROWS * L::CH; i += MMQ_WARPS * 32) {
        const int r = i / L::CH, c = i % L::CH;
        const int64_t row = r0 + r < rows ? r0 + r : rows - 1;
        const uint8_t *src = w + (size_t)row * row_bytes + (size_t)st * WT::STEP_BYTES;
        const int off = (int)((uintptr_t)src & 15);
        const int left = off + WT::STEP_BYTES - 16 * c;
        if (left > 0) cp_async16(sm + r * L::WS + 16 * c, src - off + 16 * c, left < 16 ? left : 16);
    }
    uint8_t *cs = sm + L::W_BYTES, *ss = cs + L::C_BYTES;
    for (int i = threadIdx.x; i < 8 * NT * 16; i += MMQ_WARPS * 32) {
        const int sb = i / (NT * 16), j = (i / 16) % NT, c = i % 16;
        if (j < nj)
            cp_async16(cs + (sb * NT + j) * 256 + 16 * c,
                       xq + (((size_t)st * 8 + sb) * ntl + j0 + j) * 256 + 16 * c, 16);
    }
    for (int i = threadIdx.x; i < 8 * NT * 4; i += MMQ_WARPS * 32) {
        const int sb = i / (NT * 4), j = (i / 4) % NT, c = i % 4;
        if (j < nj)
            cp_async16(ss + (sb * NT + j) * 64 + 16 * c,
                       xs + (((size_t)st * 8 + sb) * ntl + j0 + j) * 64 + 16 * c, 16);
    }
}

template <class WT, int MT, int NT>
__global__ void __launch_bounds__(MMQ_WARPS * 32)
    mmq_staged_kernel(const uint8_t *__restrict__ w, size_t row_bytes, int64_t rows,
                      const uint2 *__restrict__ xq, const float4 *__restrict__ xs, int ntl,
                      int64_t n, float *__restrict__ y, int sps, int nsteps) {
    using L = staged_layout<WT, MT, NT>;
    extern __shared__ __align__(16) uint8_t mmq_sm[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int64_t r0 = (int64_t)blockIdx.y * L::ROWS;
    const int64_t rb = r0 + warp * 16 * MT;
    const int j0 = blockIdx.x * NT;
    const int nj = ntl - j0 < NT ? ntl - j0 : NT;
    const int s0 = blockIdx.z * sps;
    const int s1 = s0 + sps < nsteps ? s0 + sps : nsteps;
    const uint8_t *xqb = reinterpret_cast<const uint8_t *>(xq);
    const uint8_t *xsb = reinterpret_cast<const uint8_t *>(xs);
    rlcu::pdl_enter();
    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;
    if (s0 < s1) stage_load<WT, MT, NT>(mmq_sm, w, row_bytes, rows, r0, xqb, xsb, ntl, j0, nj, s0);
    cp_async_commit();
    int buf = 0;
    for (int st = s0; st < s1; st++) {
        if (st + 1 < s1) {
            stage_load<WT, MT, NT>(mmq_sm + (buf ^ 1) * L::STAGE, w, row_bytes, rows, r0, xqb, xsb,
                                   ntl, j0, nj, st + 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const uint8_t *sm = mmq_sm + buf * L::STAGE;
        typename WT::Row row[MT][2];
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int64_t r = rb + 16 * i + 8 * h + g;
                const int rl = (int)(r - r0);
                const uint8_t *src = w + (size_t)(r < rows ? r : rows - 1) * row_bytes +
                                     (size_t)st * WT::STEP_BYTES;
                WT::load(sm + rl * L::WS + ((uintptr_t)src & 15), t, row[i][h]);
            }
        step_product<WT, MT, NT>(row, reinterpret_cast<const uint2 *>(sm + L::W_BYTES),
                                 reinterpret_cast<const float4 *>(sm + L::W_BYTES + L::C_BYTES), NT,
                                 lane, t, nj, acc);
        __syncthreads();
        buf ^= 1;
    }
    float *out = y + (size_t)blockIdx.z * (size_t)n * (size_t)rows;
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++) {
            if (j >= nj) continue;
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int64_t r = rb + 16 * i + 8 * (e >> 1) + g;
                const int64_t tok = (int64_t)(j0 + j) * 8 + 2 * t + (e & 1);
                if (r < rows && tok < n) out[(size_t)tok * rows + r] = acc[i][j][e];
            }
        }
}

/* One step of a warp's tile when the activations are Q8_K (k-quant weights, xmode 1): the
 * activation scale is one for the 256 values, so each block's integer sums take only the
 * weight's scale (d0, d1) into a step sum, the activation scale multiplies that once at
 * the end, and Q4_K's minimum term takes the block's activation sum (which holds the
 * activation scale) straight into acc: 2-3 float instructions per output and block
 * instead of 4-5 (the large products are bound by them). */
template <class WT, int MT, int NT>
__device__ __forceinline__ void step_product_k(const typename WT::Row (&row)[MT][2],
                                               const uint2 *__restrict__ xq,
                                               const float4 *__restrict__ xs, int64_t stride,
                                               int lane, int t, float (&acc)[MT][NT][4]) {
    float part[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) part[i][j][e] = 0.0f;
#pragma unroll
    for (int sb = 0; sb < 8; sb++) {
        uint32_t lo[MT][2], hi[MT][2];
        float d0[MT][2], d1[MT][2], mn[MT][2];
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int h = 0; h < 2; h++)
                WT::frag(row[i][h], sb, lo[i][h], hi[i][h], d0[i][h], d1[i][h], mn[i][h]);
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const uint2 b = xq[((int64_t)sb * stride + j) * 32 + lane];
            float4 xv = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if constexpr (!WT::HALVES && WT::MIN) xv = xs[((int64_t)sb * stride + j) * 4 + t];
#pragma unroll
            for (int i = 0; i < MT; i++) {
                if constexpr (WT::HALVES) {
                    int c0[4], c1[4];
                    mma_k16(c0, lo[i][0], lo[i][1], b.x);
                    mma_k16(c1, hi[i][0], hi[i][1], b.y);
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int h = e >> 1;
                        part[i][j][e] = fmaf(d0[i][h], i2f_small(c0[e]), part[i][j][e]);
                        part[i][j][e] = fmaf(d1[i][h], i2f_small(c1[e]), part[i][j][e]);
                    }
                } else {
                    int c[4];
                    mma_k32(c, lo[i][0], lo[i][1], hi[i][0], hi[i][1], b.x, b.y);
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int h = e >> 1;
                        part[i][j][e] = fmaf(d0[i][h], i2f_small(c[e]), part[i][j][e]);
                        if constexpr (WT::MIN)
                            acc[i][j][e] = fmaf(-mn[i][h], (e & 1) ? xv.w : xv.y, acc[i][j][e]);
                    }
                }
            }
        }
    }
#pragma unroll
    for (int j = 0; j < NT; j++) {
        const float4 xv = xs[(int64_t)j * 4 + t]; /* block 0's scales: the step's */
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                acc[i][j][e] = fmaf((e & 1) ? xv.z : xv.x, part[i][j][e], acc[i][j][e]);
    }
}

/* One step of a warp's tile in integers (XM_INT: Q4_K / Q6_K weights, Q8_K activations,
 * whose scale is one per step). With the activation scale out of the blocks, a step of a
 * k-quant is d_x (d_w sum_b s_b P_b - dmin_w sum_b m_b S_b), where P_b is block b's integer
 * product (the mma's), s_b and m_b the integer sub-scale and minimum of the block and S_b
 * the sum of its activation codes: so each block's P_b is taken into an int32 step sum by
 * one IMAD per output (|s_b P_b| < 2^22, eight of them < 2^31), and sum_b m_b S_b is an mma
 * too, of the same activation fragment and a fragment holding m_b in each byte, chained
 * through the step in the accumulator (started at I2F_BIAS: < 2^22, so it reads back as a
 * float exactly). The floats come in once per step (two per output), not per block (the
 * float step's I2F add and two FMAs per output and block, and its per-block scale loads).
 * Q6_K (a scale per 16 values): two m16n8k16 products a block, each with its scale
 * (|sum| < 2^31 over the 16 halves). */
template <class WT, int MT, int NT>
__device__ __forceinline__ void step_product_i(const typename WT::Row (&row)[MT][2],
                                               const uint2 *__restrict__ xq,
                                               const float4 *__restrict__ xs, int64_t stride,
                                               int nj, int lane, int t,
                                               float (&acc)[MT][NT][4]) {
    int si[MT][NT][4], mi[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                si[i][j][e] = 0;
                mi[i][j][e] = I2F_BIAS;
            }
#pragma unroll
    for (int sb = 0; sb < 8; sb++) {
        uint32_t lo[MT][2], hi[MT][2], am[MT][2];
        int s0[MT][2], s1[MT][2], mn[MT][2];
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                WT::fragi(row[i][h], sb, lo[i][h], hi[i][h], s0[i][h], s1[i][h], mn[i][h]);
                am[i][h] = (uint32_t)mn[i][h] * 0x01010101u;
            }
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const int jj = j < nj ? j : nj - 1; /* tiles past nj: the last one's, not stored */
            const uint2 b = xq[((int64_t)sb * stride + jj) * 32 + lane];
#pragma unroll
            for (int i = 0; i < MT; i++) {
                if constexpr (WT::HALVES) {
                    int c0[4], c1[4];
                    mma_k16_z(c0, lo[i][0], lo[i][1], b.x);
                    mma_k16_z(c1, hi[i][0], hi[i][1], b.y);
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int h = e >> 1;
                        si[i][j][e] += s0[i][h] * c0[e] + s1[i][h] * c1[e];
                    }
                } else {
                    int c[4];
                    mma_k32_z(c, lo[i][0], lo[i][1], hi[i][0], hi[i][1], b.x, b.y);
#pragma unroll
                    for (int e = 0; e < 4; e++) si[i][j][e] += s0[i][e >> 1] * c[e];
                    if constexpr (WT::MIN)
                        mma_k32_c(mi[i][j], am[i][0], am[i][1], am[i][0], am[i][1], b.x, b.y);
                }
            }
        }
    }
    float dw[MT][2], dm[MT][2];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int h = 0; h < 2; h++) WT::dscale(row[i][h], dw[i][h], dm[i][h]);
#pragma unroll
    for (int j = 0; j < NT; j++) {
        const int jj = j < nj ? j : nj - 1;
        const float4 xv = xs[(int64_t)jj * 4 + t]; /* block 0's scales: the step's */
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int h = e >> 1;
                float v = dw[i][h] * (float)si[i][j][e];
                if constexpr (WT::MIN) v = fmaf(-dm[i][h], i2f_small(mi[i][j][e]), v);
                acc[i][j][e] = fmaf((e & 1) ? xv.z : xv.x, v, acc[i][j][e]);
            }
    }
}

/* The integer step of a Q4_K row pair (row[0]: row g, row[1]: g + 8) in fewer instructions
 * (the lean streaming kernels, RUVLLM_CUDA_MMQ_LEAN, and 128-row tiles, _LEAN_TILE): the
 * same sums as step_product_i, so the same results bit for bit, for a warp that takes all
 * of its block's NT token tiles (the activation tiles of block sb at bq [(sb NT + j) 32 +
 * lane], fixed offsets from one address a step). Per row, the eight 6-bit scales and minimums are
 * unpacked once, a byte each, into four words (get_scale_min_k4's arithmetic on four at
 * a time); a block's minimum replicated into the four bytes of its mma operand is one
 * byte permute (PRMT) instead of a multiply. The odd blocks' codes (the high nibbles) go
 * to the mma unshifted as unsigned bytes, 16 times the code, and the even blocks' scales
 * are taken times 16, so the step sum is 16 times step_product_i's (|16 sum| < 2^29) and
 * the weight scale d / 16 (exact) gives back the same float. */
template <int NT>
__device__ __forceinline__ void step_lean_q4k(const MQ4_K::Row (&row)[2],
                                              const uint2 *__restrict__ bq,
                                              const float4 *__restrict__ bs, int lane, int t,
                                              float (&acc)[NT][4]) {
    uint32_t s16[2][2], sc[2][2], mn[2][2]; /* [row][blocks 0..3 / 4..7] */
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const uint32_t y = row[h].h.y, z = row[h].h.z, w = row[h].h.w;
        sc[h][0] = y & 0x3f3f3f3fu;
        mn[h][0] = z & 0x3f3f3f3fu;
        sc[h][1] = (w & 0x0f0f0f0fu) | ((y >> 2) & 0x30303030u);
        mn[h][1] = ((w >> 4) & 0x0f0f0f0fu) | ((z >> 2) & 0x30303030u);
        /* the even blocks' scales times 16, one per 16-bit half (blocks 0 and 2, 4 and 6) */
        s16[h][0] = (sc[h][0] & 0x00ff00ffu) << 4;
        s16[h][1] = (sc[h][1] & 0x00ff00ffu) << 4;
    }
    int si[NT][4], mi[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            si[j][e] = 0;
            mi[j][e] = I2F_BIAS;
        }
#pragma unroll
    for (int sb = 0; sb < 8; sb++) {
        const int half = sb >> 2, k = sb & 3;
        const uint32_t nib = (sb & 1) ? 0xf0f0f0f0u : 0x0f0f0f0fu;
        uint32_t lo[2], hi[2], am[2];
        int s[2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            lo[h] = row[h].q[sb >> 1][0] & nib;
            hi[h] = row[h].q[sb >> 1][1] & nib;
            if (sb & 1)
                s[h] = (int)__byte_perm(sc[h][half], 0, 0x4440 + k);
            else
                s[h] = (int)((k == 0 ? s16[h][half] & 0xffffu : s16[h][half] >> 16));
            am[h] = __byte_perm(mn[h][half], 0, 0x1111 * k);
        }
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const uint2 b = bq[(sb * NT + j) * 32 + lane];
            int c[4];
            mma_k32_uz(c, lo[0], lo[1], hi[0], hi[1], b.x, b.y);
#pragma unroll
            for (int e = 0; e < 4; e++) si[j][e] += s[e >> 1] * c[e];
            mma_k32_c(mi[j], am[0], am[1], am[0], am[1], b.x, b.y);
        }
    }
    float dw[2], dm[2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        dw[h] = half_bits(row[h].h.x) * 0.0625f;
        dm[h] = half_bits(row[h].h.x >> 16);
    }
#pragma unroll
    for (int j = 0; j < NT; j++) {
        const float4 xv = bs[j * 4 + t]; /* block 0's scales: the step's */
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const int h = e >> 1;
            float v = dw[h] * (float)si[j][e];
            v = fmaf(-dm[h], i2f_small(mi[j][e]), v);
            acc[j][e] = fmaf((e & 1) ? xv.z : xv.x, v, acc[j][e]);
        }
    }
}

/* The tiled kernel's arithmetic a step: per block in float (XM_BLOCK, step_product), with
 * a float step sum (XM_KSTEP, step_product_k) or in integers (XM_INT, step_product_i); the
 * last two need Q8_K activations (k-quant weights). */
enum { XM_BLOCK = 0, XM_KSTEP = 1, XM_INT = 2 };

/* ---- the tiled kernel (the default): a block of 16 MT WM weight rows x
 * 8 NT WN tokens, WM x WN warps each 16 MT rows x 8 NT tokens. Each step of 256 values
 * (8 blocks of 32) the block copies the rows' raw weight bytes and the tokens' int8
 * activation tiles (with their scales) into shared memory with cp.async, STAGES steps
 * ahead (a multi-stage pipeline: CUTLASS's "multistage" mainloop, PTX ISA "cp.async"), so
 * every weight byte comes from global memory once per block and no warp waits on L2 for
 * its operands; each warp then decodes the A fragments of its rows from shared memory
 * (WT::load / WT::frag, the decoders of the kernel above, pointed at the copy) and runs
 * the same arithmetic in the same order as mmq_kernel (step_product). Weight rows past
 * the matrix repeat its last row and token tiles past the input are zero codes and
 * scales; neither is stored. ---- */

constexpr int SMEM_SM = 228 * 1024; /* shared memory of an SM (H100: 228 KiB, 227 a block) */

template <class WT, int MT, int NT, int WM, int WN, int BPS> struct tile_cfg {
    static constexpr int THREADS = 32 * WM * WN;
    static constexpr int ROWS = 16 * MT * WM; /* weight rows of a block */
    static constexpr int TILES = NT * WN;     /* 8-token tiles of a block */
    /* a row's step at the offset it has modulo 16 in memory (aligned loads stay aligned);
     * WS an odd number of 16-byte units, so the 8 rows a warp reads at once fall in
     * different banks */
    static constexpr int CH = (WT::STEP_BYTES + 30) / 16;
    static constexpr int WS = (CH | 1) * 16;
    static constexpr int W_BYTES = ROWS * WS;
    static constexpr int C_BYTES = 8 * TILES * 256; /* codes [8 blocks][TILES][256] */
    static constexpr int S_BYTES = 8 * TILES * 64;  /* scales [8][TILES][8 float2] */
    static constexpr int STAGE = W_BYTES + C_BYTES + S_BYTES;
    /* BPS blocks to an SM (registers: __launch_bounds__; shared memory: split) */
    static constexpr int PER_SM = BPS;
    static constexpr int BUDGET = SMEM_SM / PER_SM - 1024;
    static constexpr int FIT = BUDGET / STAGE;
    static constexpr int STAGES = FIT > 4 ? 4 : FIT < 2 ? 2 : FIT;
    /* the stages, then (bulk copies) a barrier for each */
    static constexpr int SMEM = STAGES * STAGE + 8 * STAGES;
    static_assert(SMEM <= 227 * 1024, "mmq tile: shared memory");
};

/* The weight bytes of step st of the block's rows (rows r0.., the last row repeated). */
template <class WT, class C>
__device__ __forceinline__ void tile_load_w(uint8_t *sm, const uint8_t *__restrict__ w,
                                            size_t row_bytes, int64_t rows, int64_t r0, int st) {
    for (int i = threadIdx.x; i < C::ROWS * C::CH; i += C::THREADS) {
        const int r = i / C::CH, c = i % C::CH;
        const int64_t row = r0 + r < rows ? r0 + r : rows - 1;
        const uint8_t *src = w + (size_t)row * row_bytes + (size_t)st * WT::STEP_BYTES;
        const int off = (int)((uintptr_t)src & 15);
        const int left = off + WT::STEP_BYTES - 16 * c;
        if (left > 0) cp_async16(sm + r * C::WS + 16 * c, src - off + 16 * c, left < 16 ? left : 16);
    }
}

/* The activation codes and scales of step st for token tiles j0.. (zeros past ntl). */
template <class C, bool ALL = true>
__device__ __forceinline__ void tile_load_x(uint8_t *sm, const uint8_t *__restrict__ xq,
                                            const uint8_t *__restrict__ xs, int ntl, int j0,
                                            int st) {
    uint8_t *cs = sm + C::W_BYTES, *ss = cs + C::C_BYTES;
    for (int i = threadIdx.x; i < 8 * C::TILES * 16; i += C::THREADS) {
        const int sb = i / (C::TILES * 16), j = (i / 16) % C::TILES, c = i % 16;
        const bool in = j0 + j < ntl;
        const size_t tile = ((size_t)st * 8 + sb) * (size_t)ntl + (size_t)(in ? j0 + j : 0);
        cp_async16(cs + (sb * C::TILES + j) * 256 + 16 * c, xq + tile * 256 + 16 * c, in ? 16 : 0);
    }
    /* the integer step reads block 0's scales alone (the step's Q8_K scale) */
    for (int i = threadIdx.x; i < (ALL ? 8 : 1) * C::TILES * 4; i += C::THREADS) {
        const int sb = i / (C::TILES * 4), j = (i / 4) % C::TILES, c = i % 4;
        const bool in = j0 + j < ntl;
        const size_t tile = ((size_t)st * 8 + sb) * (size_t)ntl + (size_t)(in ? j0 + j : 0);
        cp_async16(ss + (sb * C::TILES + j) * 64 + 16 * c, xs + tile * 64 + 16 * c, in ? 16 : 0);
    }
}

/* A stage of the tiled kernel by the copy engine (MMQ_BULK; blocks of at least ROWS + 9
 * threads, the integer step's activations: block 0's scales alone), counted on the stage's
 * barrier bar: thread r < ROWS copies row r0 + r's step st (the last row past the matrix) as
 * one bulk copy of the 16-byte units that hold it (16-byte aligned rows: one offset modulo 16
 * for every row, as in stream_copy_bulk), thread ROWS + sb block sb's codes of the nin token
 * tiles j0.. (consecutive in memory), thread ROWS + 8 their scales; thread 0 arrives with the
 * stage's bytes. W: the weights, X: the activations (after pdl_enter). Tiles past nin are
 * not copied: the kernel zeroes them once. */
template <class WT, class C, bool W, bool X>
__device__ __forceinline__ void
tile_issue_bulk(uint32_t dst, uint32_t bar, const uint8_t *__restrict__ w, size_t row_bytes,
                int64_t rows, int64_t r0, const uint8_t *__restrict__ xq,
                const uint8_t *__restrict__ xs, int ntl, int j0, int nin, int st) {
    const uint8_t *src = w + (size_t)st * WT::STEP_BYTES;
    const uint32_t off = (uint32_t)((uintptr_t)src & 15);
    const uint32_t span = (off + WT::STEP_BYTES + 15) & ~15u;
    const int t = threadIdx.x;
    if (W && t == 0) mbar_expect(bar, C::ROWS * span + (uint32_t)nin * (8 * 256 + 64));
    if (W && t < C::ROWS) {
        const int64_t row = r0 + t < rows ? r0 + t : rows - 1;
        bulk_g2s(dst + t * C::WS, src - off + (size_t)row * row_bytes, span, bar);
    }
    if (X && t >= C::ROWS && t < C::ROWS + 8) {
        const int sb = t - C::ROWS;
        const size_t tile = ((size_t)st * 8 + sb) * (size_t)ntl + (size_t)j0;
        bulk_g2s(dst + C::W_BYTES + sb * C::TILES * 256, xq + tile * 256, (uint32_t)nin * 256, bar);
    }
    if (X && t == C::ROWS + 8) {
        const size_t tile = (size_t)st * 8 * (size_t)ntl + (size_t)j0;
        bulk_g2s(dst + C::W_BYTES + C::C_BYTES, xs + tile * 64, (uint32_t)nin * 64, bar);
    }
}

template <class WT, int MT, int NT, int WM, int WN, int BPS, int XM, bool BULK, bool LEAN = false>
__global__ void __launch_bounds__(32 * WM * WN, BPS)
    mmq_tile_kernel(const uint8_t *__restrict__ w, size_t row_bytes, int64_t rows,
                    const uint8_t *__restrict__ xq, const uint8_t *__restrict__ xs, int ntl,
                    int64_t n, float *__restrict__ y, int sps, int nsteps) {
    using C = tile_cfg<WT, MT, NT, WM, WN, BPS>;
    static_assert(!LEAN || (XM == XM_INT && MT == 1 && WN == 1 && WT::MIN), "mmq tile: lean step");
    extern __shared__ __align__(16) uint8_t mmq_sm[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int wm = warp % WM, wn = warp / WM;
    const int g = lane >> 2, t = lane & 3;
    const int64_t r0 = (int64_t)blockIdx.y * C::ROWS;
    const int j0 = blockIdx.x * C::TILES;
    const int s0 = blockIdx.z * sps;
    const int steps = (s0 + sps < nsteps ? s0 + sps : nsteps) - s0;
    /* BULK: the stages' shared address, their barriers, the token tiles in the input */
    const uint32_t sm_s = (uint32_t)__cvta_generic_to_shared(mmq_sm);
    const uint32_t bar = sm_s + C::STAGES * C::STAGE;
    const int nin = ntl - j0 < C::TILES ? ntl - j0 : C::TILES;
    if constexpr (BULK) {
        static_assert(XM == XM_INT && C::THREADS >= C::ROWS + 9, "mmq tile: bulk copies");
        if (threadIdx.x < C::STAGES) mbar_init(bar + 8 * threadIdx.x);
        fence_mbar_init();
        /* the tiles past the input: zero codes and scales in every stage, never copied */
        for (int i = threadIdx.x; i < C::STAGES * 8 * (C::TILES - nin) * 16; i += C::THREADS) {
            const int k = i / (8 * (C::TILES - nin) * 16), r = i % (8 * (C::TILES - nin) * 16);
            const int sb = r / ((C::TILES - nin) * 16), j = nin + (r / 16) % (C::TILES - nin),
                      c = r % 16;
            uint8_t *stg = mmq_sm + k * C::STAGE;
            *reinterpret_cast<uint4 *>(stg + C::W_BYTES + (sb * C::TILES + j) * 256 + 16 * c) =
                make_uint4(0, 0, 0, 0);
            if (sb == 0 && c < 4)
                *reinterpret_cast<uint4 *>(stg + C::W_BYTES + C::C_BYTES + j * 64 + 16 * c) =
                    make_uint4(0, 0, 0, 0);
        }
        __syncthreads();
    }
    (void)sm_s;
    (void)bar;
    (void)nin;
    /* the first stages' weights before the wait for the kernel before (they are not
     * written by it), their activations after; one commit group per stage */
#pragma unroll
    for (int k = 0; k < C::STAGES - 1; k++)
        if (k < steps) {
            if constexpr (BULK)
                tile_issue_bulk<WT, C, true, false>(sm_s + k * C::STAGE, bar + 8 * k, w, row_bytes,
                                                    rows, r0, xq, xs, ntl, j0, nin, s0 + k);
            else
                tile_load_w<WT, C>(mmq_sm + k * C::STAGE, w, row_bytes, rows, r0, s0 + k);
        }
    rlcu::pdl_enter();
#pragma unroll
    for (int k = 0; k < C::STAGES - 1; k++) {
        if constexpr (BULK) {
            if (k < steps)
                tile_issue_bulk<WT, C, false, true>(sm_s + k * C::STAGE, bar + 8 * k, w, row_bytes,
                                                    rows, r0, xq, xs, ntl, j0, nin, s0 + k);
        } else {
            if (k < steps)
                tile_load_x<C, XM != XM_INT>(mmq_sm + k * C::STAGE, xq, xs, ntl, j0, s0 + k);
            cp_async_commit();
        }
    }
    float acc[MT][NT][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[i][j][e] = 0.0f;
    const uint8_t *rp[MT][2]; /* this lane's rows in memory (for their offsets modulo 16) */
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int64_t r = r0 + wm * 16 * MT + 16 * i + 8 * h + g;
            rp[i][h] = w + (size_t)(r < rows ? r : rows - 1) * row_bytes;
        }
    for (int it = 0; it < steps; it++) {
        if constexpr (BULK)
            mbar_wait(bar + 8 * (it % C::STAGES), (uint32_t)(it / C::STAGES) & 1u);
        else
            cp_async_wait<C::STAGES - 2>();
        __syncthreads(); /* step it is in; every warp is done with step it - 1's stage */
        const int nx = it + C::STAGES - 1;
        if constexpr (BULK) {
            if (nx < steps)
                tile_issue_bulk<WT, C, true, true>(sm_s + (nx % C::STAGES) * C::STAGE,
                                                   bar + 8 * (nx % C::STAGES), w, row_bytes, rows,
                                                   r0, xq, xs, ntl, j0, nin, s0 + nx);
        } else {
            if (nx < steps) {
                uint8_t *dst = mmq_sm + (nx % C::STAGES) * C::STAGE;
                tile_load_w<WT, C>(dst, w, row_bytes, rows, r0, s0 + nx);
                tile_load_x<C, XM != XM_INT>(dst, xq, xs, ntl, j0, s0 + nx);
            }
            cp_async_commit();
        }
        const uint8_t *stg = mmq_sm + (it % C::STAGES) * C::STAGE;
        const int st = s0 + it;
        typename WT::Row row[MT][2];
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int rl = wm * 16 * MT + 16 * i + 8 * h + g;
                const int off = (int)((uintptr_t)(rp[i][h] + (size_t)st * WT::STEP_BYTES) & 15);
                WT::load(stg + rl * C::WS + off, t, row[i][h]);
            }
        const uint2 *bq = reinterpret_cast<const uint2 *>(stg + C::W_BYTES + wn * NT * 256);
        const float4 *bs = reinterpret_cast<const float4 *>(stg + C::W_BYTES + C::C_BYTES + wn * NT * 64);
        if constexpr (LEAN)
            step_lean_q4k<NT>(row[0], bq, bs, lane, t, acc[0]); /* C::TILES == NT */
        else if constexpr (XM == XM_INT)
            step_product_i<WT, MT, NT>(row, bq, bs, C::TILES, NT, lane, t, acc);
        else if constexpr (XM == XM_KSTEP)
            step_product_k<WT, MT, NT>(row, bq, bs, C::TILES, lane, t, acc);
        else
            step_product<WT, MT, NT>(row, bq, bs, C::TILES, lane, t, NT, acc);
    }
    if constexpr (!BULK) cp_async_wait<0>(); /* BULK: every copy issued was waited for */
    float *out = y + (size_t)blockIdx.z * (size_t)n * (size_t)rows;
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < NT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int64_t r = r0 + wm * 16 * MT + 16 * i + 8 * (e >> 1) + g;
                const int64_t tok = (int64_t)(j0 + wn * NT + j) * 8 + 2 * t + (e & 1);
                if (r < rows && tok < n) out[(size_t)tok * rows + r] = acc[i][j][e];
            }
}

/* ---- the streaming kernel (few tokens; RUVLLM_CUDA_MMQ_STREAM) ----
 * Products of up to 8 NT tokens that read each weight byte once, as the decode kernels of
 * one token do (matvec.cu), with the integer products still on the tensor cores: a block
 * of SW_WARPS warps owns 16 rows (one mma tile) and the warps divide K among them, warp k
 * taking steps (of 256 values) k, k + SW_WARPS, ... Each warp copies its 16 rows' bytes of
 * a step into its own ring of shared-memory stages with cp.async, a few steps ahead (no
 * barrier between warps), and decodes them with the tiled kernel's WT::load / WT::frag;
 * the activation fragments come from global memory (all blocks read the same few KB: L1
 * and L2 hits). At the end the warps' sums are added in warp order through shared memory.
 * Many small blocks of short, independent warps keep many copies in flight, which the
 * tiled kernel (a few rows' blocks, wide tiles, 8 warps an SM) does not at 8 tokens. */

constexpr int SW_WARPS = 8;

template <class WT, int NT, int CAP = 4> struct stream_cfg {
    static constexpr int CH = (WT::STEP_BYTES + 30) / 16; /* 16-byte chunks a row needs */
    static constexpr int WS = (CH | 1) * 16;               /* odd units: rows in other banks */
    static constexpr int STAGE = 16 * WS;                  /* a warp's 16 rows of one step */
    /* two blocks an SM (128 registers a thread), as many stages (up to 4, and up to CAP:
     * the lean kernels of few steps a warp) as fit */
    static constexpr int FIT = (SMEM_SM / 2 - 1024) / (SW_WARPS * STAGE);
    static constexpr int FIT4 = FIT > 4 ? 4 : FIT < 2 ? 2 : FIT;
    static constexpr int STAGES = FIT4 < CAP ? FIT4 : CAP;
    static constexpr int RED = SW_WARPS * NT * 4 * 32 * 4; /* the warps' sums */
    static constexpr int RING = SW_WARPS * STAGES * STAGE;
    /* the bulk copies' stage barriers (8 bytes each, a warp's STAGES in a row) after the
     * rings; the sums, written over the rings at the end, stay clear of them */
    static constexpr int BAR = RING;
    static constexpr int RING_BARS = RING + SW_WARPS * STAGES * 8;
    static constexpr int SMEM = RING_BARS > RED ? RING_BARS : RED;
    static_assert(RED <= RING, "mmq stream: the sums overlap the barriers");
    static_assert(2 * SMEM <= SMEM_SM - 2048, "mmq stream: shared memory");
};

/* The 16 rows' bytes of step st into a warp's stage (rows past the matrix: its last). */
template <class WT, class C>
__device__ __forceinline__ void stream_copy(uint8_t *dst, const uint8_t *__restrict__ w,
                                            size_t row_bytes, int64_t rows, int64_t r0, int st,
                                            int lane) {
    for (int i = lane; i < 16 * C::CH; i += 32) {
        const int r = i / C::CH, c = i % C::CH;
        const int64_t row = r0 + r < rows ? r0 + r : rows - 1;
        const uint8_t *src = w + (size_t)row * row_bytes + (size_t)st * WT::STEP_BYTES;
        const int off = (int)((uintptr_t)src & 15);
        const int left = off + WT::STEP_BYTES - 16 * c;
        if (left > 0) cp_async16(dst + r * C::WS + 16 * c, src - off + 16 * c, left < 16 ? left : 16);
    }
}

/* The same by the copy engine (MMQ_BULK): lane r < 16 copies row r0 + r's step st (rows past
 * the matrix: its last) as one bulk copy of the 16-byte units that hold it, to the place
 * stream_copy gives it, counted on the stage's barrier bar; lane 0 also arrives on bar with
 * the stage's bytes. Needs 16-byte aligned rows (w and row_bytes), so that every row's step
 * has the same offset modulo 16 and the units read end within the row (rl__cu_mmq). A copy
 * that completes before lane 0's arrival leaves the barrier's byte count below zero for a
 * while, which the barrier allows (PTX ISA, "mbarrier": tx-count's range); the phase
 * completes only once lane 0 has arrived. */
template <class WT, class C>
__device__ __forceinline__ void stream_copy_bulk(uint32_t dst, const uint8_t *__restrict__ w,
                                                 size_t row_bytes, int64_t rows, int64_t r0, int st,
                                                 int lane, uint32_t bar) {
    const uint8_t *src = w + (size_t)st * WT::STEP_BYTES; /* row 0's step: every row's offset */
    const uint32_t off = (uint32_t)((uintptr_t)src & 15);
    const uint32_t span = (off + WT::STEP_BYTES + 15) & ~15u;
    if (lane == 0) mbar_expect(bar, 16 * span);
    if (lane < 16) {
        const int64_t row = r0 + lane < rows ? r0 + lane : rows - 1;
        bulk_g2s(dst + lane * C::WS, src - off + (size_t)row * row_bytes, span, bar);
    }
}

/* One step of a warp: the rows g, g + 8 decoded (row[0], row[1]), the activation tiles
 * j < nj of its 8 blocks at bq / bs [(sb * stride + j)] (tiles past nj read the last one's
 * and are never stored). KQ8: the activations are Q8_K (one scale per step), so each
 * block's integer sums take only the weight scales into a step sum (step_product_k's
 * arithmetic); else the per-block float arithmetic of step_product. */
template <class WT, int NT, bool KQ8>
__device__ __forceinline__ void stream_step(const typename WT::Row (&row)[2],
                                            const uint2 *__restrict__ bq,
                                            const float4 *__restrict__ bs, int64_t stride, int nj,
                                            int lane, int t, float (&acc)[NT][4]) {
    float part[NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) part[j][e] = 0.0f;
#pragma unroll
    for (int sb = 0; sb < 8; sb++) {
        uint32_t lo[2], hi[2];
        float d0[2], d1[2], mn[2];
#pragma unroll
        for (int h = 0; h < 2; h++) WT::frag(row[h], sb, lo[h], hi[h], d0[h], d1[h], mn[h]);
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const int jj = j < nj ? j : nj - 1;
            const uint2 b = bq[((int64_t)sb * stride + jj) * 32 + lane];
            float4 xv = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            if (!KQ8 || (!WT::HALVES && WT::MIN)) xv = bs[((int64_t)sb * stride + jj) * 4 + t];
            if constexpr (WT::HALVES) {
                int c0[4], c1[4];
                mma_k16(c0, lo[0], lo[1], b.x);
                mma_k16(c1, hi[0], hi[1], b.y);
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int h = e >> 1;
                    if constexpr (KQ8) {
                        part[j][e] = fmaf(d0[h], i2f_small(c0[e]), part[j][e]);
                        part[j][e] = fmaf(d1[h], i2f_small(c1[e]), part[j][e]);
                    } else {
                        const float xd = (e & 1) ? xv.z : xv.x;
                        acc[j][e] += xd * (d0[h] * i2f_small(c0[e]) + d1[h] * i2f_small(c1[e]));
                    }
                }
            } else {
                int c[4];
                mma_k32(c, lo[0], lo[1], hi[0], hi[1], b.x, b.y);
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int h = e >> 1;
                    if constexpr (KQ8) {
                        part[j][e] = fmaf(d0[h], i2f_small(c[e]), part[j][e]);
                    } else {
                        const float xd = (e & 1) ? xv.z : xv.x;
                        acc[j][e] = fmaf(d0[h] * xd, i2f_small(c[e]), acc[j][e]);
                    }
                    if constexpr (WT::MIN)
                        acc[j][e] = fmaf(-mn[h], (e & 1) ? xv.w : xv.y, acc[j][e]);
                }
            }
        }
    }
    if constexpr (KQ8) {
#pragma unroll
        for (int j = 0; j < NT; j++) {
            const int jj = j < nj ? j : nj - 1;
            const float4 xv = bs[(int64_t)jj * 4 + t]; /* block 0's scales: the step's */
#pragma unroll
            for (int e = 0; e < 4; e++) acc[j][e] = fmaf((e & 1) ? xv.z : xv.x, part[j][e], acc[j][e]);
        }
    }
}

/* A block of the streaming kernel: row group bx (rows 16 bx ..) of w, token tiles
 * blockIdx.y, K split blockIdx.z; mmq_sm: its dynamic shared memory. LEAN (the integer
 * step by bulk copies, for an input of exactly NT token tiles: ntl == NT, one block of
 * tokens): the activations at fixed offsets, the Q4_K step of step_lean_q4k, and every
 * stage of the ring filled before the first wait (a warp's first STAGES steps in flight,
 * not STAGES - 1: with CAP 2, both steps of a warp of K 4096); CAP: at most that many
 * stages (less shared memory, so more of the SM's memory is L1, where the activations
 * that all blocks read stay). */
template <class WT, int NT, int XM, bool BULK, bool LEAN = false, int CAP = 4>
__device__ __forceinline__ void
stream_block(uint8_t *mmq_sm, const uint8_t *__restrict__ w, size_t row_bytes, int64_t rows,
             const uint2 *__restrict__ xq, const float4 *__restrict__ xs, int ntl, int64_t n,
             float *__restrict__ y, int sps, int nsteps, int64_t bx) {
    using C = stream_cfg<WT, NT, CAP>;
    static_assert(!LEAN || (XM == XM_INT && BULK), "mmq stream: lean kernels");
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int g = lane >> 2, t = lane & 3;
    const int64_t r0 = bx * 16;
    const int j0 = blockIdx.y * NT;
    const int nj = ntl - j0 < NT ? ntl - j0 : NT;
    const int s0 = blockIdx.z * sps;
    const int s1 = s0 + sps < nsteps ? s0 + sps : nsteps;
    /* this warp's steps: s0 + warp + SW_WARPS k, k < m */
    const int m = s1 - s0 > warp ? (s1 - s0 - warp + SW_WARPS - 1) / SW_WARPS : 0;
    uint8_t *ring = mmq_sm + warp * C::STAGES * C::STAGE;
    /* BULK: the ring's shared address and its stage barriers */
    const uint32_t ring_s = (uint32_t)__cvta_generic_to_shared(ring);
    const uint32_t bar = (uint32_t)__cvta_generic_to_shared(mmq_sm) + C::BAR + warp * C::STAGES * 8;
    if constexpr (BULK) {
        if (lane < C::STAGES) mbar_init(bar + 8 * lane);
        fence_mbar_init();
        __syncwarp();
    }
    (void)ring_s;
    (void)bar;
#pragma unroll
    for (int k = 0; k < C::STAGES - (LEAN ? 0 : 1); k++) {
        if constexpr (BULK) {
            if (k < m)
                stream_copy_bulk<WT, C>(ring_s + k * C::STAGE, w, row_bytes, rows, r0,
                                        s0 + warp + SW_WARPS * k, lane, bar + 8 * k);
        } else {
            if (k < m)
                stream_copy<WT, C>(ring + k * C::STAGE, w, row_bytes, rows, r0,
                                   s0 + warp + SW_WARPS * k, lane);
            cp_async_commit();
        }
    }
    rlcu::pdl_enter();
    const uint8_t *rp[2];
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int64_t r = r0 + 8 * h + g;
        rp[h] = w + (size_t)(r < rows ? r : rows - 1) * row_bytes;
    }
    float acc[1][NT][4];
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) acc[0][j][e] = 0.0f;
    for (int k = 0; k < m; k++) {
        if constexpr (BULK)
            mbar_wait(bar + 8 * (k % C::STAGES), (uint32_t)(k / C::STAGES) & 1u);
        else
            cp_async_wait<C::STAGES - 2>();
        __syncwarp(); /* step k is in for every lane; all are done with step k - 1's stage */
        const int nx = k + C::STAGES - 1;
        if constexpr (BULK) {
            /* LEAN: steps up to STAGES - 1 went in before the loop */
            if (nx < m && (!LEAN || k > 0))
                stream_copy_bulk<WT, C>(ring_s + (nx % C::STAGES) * C::STAGE, w, row_bytes, rows,
                                        r0, s0 + warp + SW_WARPS * nx, lane,
                                        bar + 8 * (nx % C::STAGES));
        } else {
            if (nx < m)
                stream_copy<WT, C>(ring + (nx % C::STAGES) * C::STAGE, w, row_bytes, rows, r0,
                                   s0 + warp + SW_WARPS * nx, lane);
            cp_async_commit();
        }
        const int st = s0 + warp + SW_WARPS * k;
        const uint8_t *stg = ring + (k % C::STAGES) * C::STAGE;
        typename WT::Row row[1][2];
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int off = (int)((uintptr_t)(rp[h] + (size_t)st * WT::STEP_BYTES) & 15);
            WT::load(stg + (8 * h + g) * C::WS + off, t, row[0][h]);
        }
        if constexpr (LEAN) {
            /* ntl == NT, j0 == 0: the step's tiles at fixed offsets */
            const size_t tl = (size_t)st * 8 * NT;
            if constexpr (WT::MIN)
                step_lean_q4k<NT>(row[0], xq + tl * 32, xs + tl * 4, lane, t, acc[0]);
            else
                step_product_i<WT, 1, NT>(row, xq + tl * 32, xs + tl * 4, NT, NT, lane, t, acc);
        } else {
            const size_t tb = (size_t)st * 8 * (size_t)ntl + (size_t)j0;
            if constexpr (XM == XM_INT)
                step_product_i<WT, 1, NT>(row, xq + tb * 32, xs + tb * 4, ntl, nj, lane, t, acc);
            else
                stream_step<WT, NT, XM == XM_KSTEP>(row[0], xq + tb * 32, xs + tb * 4, ntl, nj,
                                                    lane, t, acc[0]);
        }
    }
    if constexpr (!BULK) cp_async_wait<0>(); /* BULK: every copy issued was waited for */
    __syncthreads(); /* every warp done with its ring: the space holds the sums now */
    float *red = reinterpret_cast<float *>(mmq_sm);
#pragma unroll
    for (int j = 0; j < NT; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) red[((warp * NT + j) * 4 + e) * 32 + lane] = acc[0][j][e];
    __syncthreads();
    float *out = y + (size_t)blockIdx.z * (size_t)n * (size_t)rows;
    for (int i = threadIdx.x; i < NT * 4 * 32; i += SW_WARPS * 32) {
        float v = red[i];
#pragma unroll
        for (int wi = 1; wi < SW_WARPS; wi++) v += red[wi * NT * 4 * 32 + i];
        const int ln = i & 31, je = i >> 5, j = je >> 2, e = je & 3;
        const int64_t r = r0 + 8 * (e >> 1) + (ln >> 2);
        const int64_t tok = (int64_t)(j0 + j) * 8 + 2 * (ln & 3) + (e & 1);
        if (j < nj && r < rows && tok < n) out[(size_t)tok * rows + r] = v;
    }
}

/* grid (rows / 16, token tiles / NT, K splits); SW_WARPS warps a block. XM: the tiled
 * kernel's step kinds (XM_BLOCK, XM_KSTEP: stream_step; XM_INT: step_product_i). */
template <class WT, int NT, int XM, bool BULK, bool LEAN = false, int CAP = 4>
__global__ void __launch_bounds__(SW_WARPS * 32, 2)
    mmq_stream_kernel(const uint8_t *__restrict__ w, size_t row_bytes, int64_t rows,
                      const uint2 *__restrict__ xq, const float4 *__restrict__ xs, int ntl,
                      int64_t n, float *__restrict__ y, int sps, int nsteps) {
    extern __shared__ __align__(16) uint8_t mmq_sm[];
    stream_block<WT, NT, XM, BULK, LEAN, CAP>(mmq_sm, w, row_bytes, rows, xq, xs, ntl, n, y, sps,
                                              nsteps, blockIdx.x);
}

/* Products of one input joined (RUVLLM_CUDA_MMQ_JOIN, step.c's fuse pass): up to
 * MMQ_JSEGS matrices, each its own row groups of the grid's x (segment i: blocks bend[i-1]
 * .. bend[i] - 1), no K split; a segment with wt1 set decodes WT1, the others WT0 (q and
 * k in Q4_K with v in Q6_K, as Q4_K_M has them). Each block computes what it would in
 * the matrix's own launch (bit for bit where that launch did not split K either). */
constexpr int MMQ_JSEGS = RL_CU_MMQ_JSEGS;
struct mmq_jsegs {
    const uint8_t *w[MMQ_JSEGS];
    float *y[MMQ_JSEGS];
    int64_t rows[MMQ_JSEGS];
    size_t row_bytes[MMQ_JSEGS];
    int bend[MMQ_JSEGS];
    int wt1[MMQ_JSEGS];
};

template <class WT0, class WT1, int NT, int CAP = 4> struct jcfg {
    static constexpr int S0 = stream_cfg<WT0, NT, CAP>::SMEM, S1 = stream_cfg<WT1, NT, CAP>::SMEM;
    static constexpr int SMEM = S0 > S1 ? S0 : S1;
};

template <class WT0, class WT1, int NT, int XM, bool BULK, bool LEAN = false, int CAP = 4>
__global__ void __launch_bounds__(SW_WARPS * 32, 2)
    mmq_stream_join_kernel(mmq_jsegs sg, const uint2 *__restrict__ xq,
                           const float4 *__restrict__ xs, int ntl, int64_t n, int nsteps) {
    extern __shared__ __align__(16) uint8_t mmq_sm[];
    const int b = blockIdx.x;
    const int i = b < sg.bend[0] ? 0 : b < sg.bend[1] ? 1 : 2;
    const int b0 = i == 0 ? 0 : i == 1 ? sg.bend[0] : sg.bend[1];
    const uint8_t *w = i == 0 ? sg.w[0] : i == 1 ? sg.w[1] : sg.w[2];
    float *y = i == 0 ? sg.y[0] : i == 1 ? sg.y[1] : sg.y[2];
    const int64_t rows = i == 0 ? sg.rows[0] : i == 1 ? sg.rows[1] : sg.rows[2];
    const size_t rb = i == 0 ? sg.row_bytes[0] : i == 1 ? sg.row_bytes[1] : sg.row_bytes[2];
    const int t1 = i == 0 ? sg.wt1[0] : i == 1 ? sg.wt1[1] : sg.wt1[2];
    if constexpr (!std::is_same<WT0, WT1>::value) {
        if (t1) {
            stream_block<WT1, NT, XM, BULK, LEAN, CAP>(mmq_sm, w, rb, rows, xq, xs, ntl, n, y,
                                                       nsteps, nsteps, b - b0);
            return;
        }
    }
    (void)t1;
    stream_block<WT0, NT, XM, BULK, LEAN, CAP>(mmq_sm, w, rb, rows, xq, xs, ntl, n, y, nsteps,
                                               nsteps, b - b0);
}

/* y[i] = the sum over z of part[z][i], z in order. */
__global__ void mmq_reduce_kernel(const float *__restrict__ part, int64_t total, int S,
                                  float *__restrict__ y) {
    rlcu::pdl_enter();
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v = part[i];
        for (int z = 1; z < S; z++) v += part[(size_t)z * total + i];
        y[i] = v;
    }
}

/* ---- plan: kernel, tile shape and K split from the sizes alone (the workspace query and
 * the launch agree) ---- */

int g_mmq_sms = 0;     /* multiprocessors of the device (read once; RUVLLM_CUDA_MMQ_SMS, tests) */
int g_mmq_tile = -1;   /* fewest tokens of the tiled kernel (RUVLLM_CUDA_MMQ_TILE; 0: never) */
int g_mmq_staged = -1; /* the staged kernel: RUVLLM_CUDA_MMQ_STAGED=1 (read once), or set */
int g_mmq_q8k = -1;    /* k-quant activations as Q8_K (RUVLLM_CUDA_MMQ_Q8K=0: per 32; read once) */
int g_mmq_kstep = -1;  /* the tiled kernel's Q8_K step (RUVLLM_CUDA_MMQ_KSTEP=0: off) */
int g_mmq_stream = -1; /* most tokens of the streaming kernel (RUVLLM_CUDA_MMQ_STREAM; 0: off) */
int g_mmq_int = -1;    /* the integer step for k-quants (RUVLLM_CUDA_MMQ_INT=0: off) */
int g_mmq_wide = -1;   /* 128-row tiles with it (RUVLLM_CUDA_MMQ_WIDE=0: off) */
int g_mmq_waves = -1;  /* K split by whole waves (RUVLLM_CUDA_MMQ_WAVES=0: while blocks < SMs) */
int g_mmq_bulk = -1;   /* bulk copies of the weights (RUVLLM_CUDA_MMQ_BULK=0: cp.async) */
int g_mmq_lean = -1;   /* the lean streaming kernels (RUVLLM_CUDA_MMQ_LEAN=0: off) */
int g_mmq_ring = -1;   /* their 2-stage rings (2 steps a warp; RUVLLM_CUDA_MMQ_RING=0: 4) */
int g_mmq_leant = -1;  /* the lean step in the 128-row tiles (RUVLLM_CUDA_MMQ_LEAN_TILE=0: off) */

/* The streaming kernel up to this many tokens by default; from 17 tokens not for matrices
 * of this many rows (H100, the output head 128256 x 4096 Q6_K at 32 tokens: tiled 324 us,
 * streaming 345; at 16: 272 and 259) unless RUVLLM_CUDA_MMQ_STREAM is set above 32. */
constexpr int STREAM_MAX_N = 32;
constexpr int64_t STREAM_TALL = 65536;
/* Matrices of at most this many rows take it up to 64 tokens (two blocks of 32 tokens a row
 * group; H100, 1024 x 4096 at 64 tokens: Q4_K 9.3 us against 11.4 tiled, Q6_K 9.8 / 12.9). */
constexpr int64_t STREAM_SHORT = 1024;

/* The tiled kernel from this many tokens by default: all that mmq.cu takes (on an H100 it
 * beat mmq_kernel at 8 tokens by 1.1-1.6x; RUVLLM_CUDA_MMQ_TILE=0 keeps mmq_kernel). */
constexpr int TILE_MIN_N = RL_CU_MMQ_MIN_N;

/* The tiled kernel's shapes: <MT, NT, WM, WN, blocks an SM> (rows 16 MT WM, tokens
 * 8 NT WN a block) */
enum mmq_kind {
    KIND_WARP,  /* mmq_kernel */
    KIND_T1_2,  /* <1, 2, 4, 1, 2>: 64 x 16, 4 warps (few tokens: as many blocks as can be) */
    KIND_T2_4,  /* <2, 4, 4, 1, 2>: 128 x 32, 4 warps */
    KIND_T1_8,  /* <1, 8, 4, 1, 2>: 64 x 64, 4 warps */
    KIND_T2_8W, /* <2, 8, 4, 2, 1>: 128 x 128, 8 warps (long inputs) */
    /* 128-row tiles of 8 warps (integer step only; RUVLLM_CUDA_MMQ_WIDE=0: off). Measured on
     * an H100 and left out: at 32 tokens one block an SM (255 registers) instead of two (128
     * registers; ptxas spills ~70-140 bytes), 2-36% slower on 14336 x 4096, 4096 x 14336 and
     * the head; at 64 tokens 16 warps an SM (two token halves) instead of 8, 2-13% slower;
     * 112-row tiles of 7 warps (128 blocks for 14336 rows instead of 112), 53.4 us / 52.2. */
    KIND_W1_4,  /* <1, 4, 8, 1, 2>: 128 x 32, two blocks an SM */
    KIND_W1_8,  /* <1, 8, 8, 1, 1>: 128 x 64, a block an SM */
    KIND_STREAM, /* mmq_stream_kernel: 16 rows x 8 NT tokens a block, K over its warps */
};

struct mmq_plan {
    int kind, ntl, NT, MT, S, sps, nsteps;
    bool kq8; /* the tiled kernel's Q8_K step (set by rl__cu_mmq from the activations) */
    bool ik;  /* its integer step (k-quant weights, Q8_K activations, RUVLLM_CUDA_MMQ_INT) */
    bool bulk; /* the weights by bulk copies (set by rl__cu_mmq / _join: mmq_bulk_ok) */
    bool lean; /* the lean streaming kernels (set by rl__cu_mmq / _join: lean_plan) */
    int cap;   /* their stages at most (2 or 4) */
    bool leant; /* the lean step in the 128-row tiles (rl__cu_mmq: lean_plan) */
    dim3 grid;
};

constexpr size_t PART_MAX = (size_t)64 << 20; /* partial sums at most */

int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && v[0] >= '0' && v[0] <= '9' ? atoi(v) : dflt;
}

/* Which kernel: the tiled one with one block of tokens up to 64 (every weight byte read
 * once: up to 16 and 33-64 tokens 64 rows a block, 17-32 tokens 128 rows, each warp 32 rows
 * so that an activation fragment serves two mmas: the fastest of the shapes timed on an
 * H100), and 128 x 128 blocks above where they still make most of a wave; mmq_kernel
 * (each warp its rows from global memory) with RUVLLM_CUDA_MMQ_TILE=0 or below its value.
 * K is split over blocks (grid.z, partial sums added by mmq_reduce_kernel in order) while
 * the blocks would not fill the SMs (twice over for 4-warp blocks). */
mmq_plan make_plan(int64_t rows, int64_t K, int64_t n, bool ik) {
    if (g_mmq_sms <= 0 && env_int("RUVLLM_CUDA_MMQ_SMS", 0) > 0) /* plan as for this many SMs */
        g_mmq_sms = env_int("RUVLLM_CUDA_MMQ_SMS", 0);
    if (g_mmq_sms <= 0) {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && v > 0)
            g_mmq_sms = v;
        else
            g_mmq_sms = 132;
        cudaGetLastError();
    }
    if (g_mmq_tile < 0) g_mmq_tile = env_int("RUVLLM_CUDA_MMQ_TILE", TILE_MIN_N);
    if (g_mmq_stream < 0) g_mmq_stream = env_int("RUVLLM_CUDA_MMQ_STREAM", STREAM_MAX_N);
    if (g_mmq_wide < 0) g_mmq_wide = env_int("RUVLLM_CUDA_MMQ_WIDE", 1) != 0;
    if (g_mmq_waves < 0) g_mmq_waves = env_int("RUVLLM_CUDA_MMQ_WAVES", 1) != 0;
    mmq_plan p;
    p.ik = ik;
    p.ntl = (int)((n + 7) / 8);
    p.nsteps = (int)(K / 256);
    p.kq8 = false;
    p.bulk = false;
    p.lean = false;
    p.cap = 4;
    p.leant = false;
    int64_t bx, by, fill;
    const bool stream =
        (n <= g_mmq_stream && (n <= 16 || rows < STREAM_TALL || g_mmq_stream > STREAM_MAX_N)) ||
        (g_mmq_stream == STREAM_MAX_N && n <= 64 && rows <= STREAM_SHORT);
    if (stream) {
        /* grid (row groups of 16, token groups of 8 NT): each block streams its rows once
         * for up to 32 tokens (more: the rows again per group, mostly from L2) */
        p.kind = KIND_STREAM;
        p.MT = 1;
        p.NT = p.ntl <= 1 ? 1 : p.ntl <= 2 ? 2 : 4;
        bx = (rows + 15) / 16, by = (p.ntl + p.NT - 1) / p.NT;
        fill = g_mmq_sms;
    } else if (g_mmq_tile > 0 && n >= g_mmq_tile) {
        const int64_t ly = (rows + 127) / 128;
        int wm = 4, wn = 1;
        if (p.ntl > 8 && (p.ntl + 15) / 16 * ly >= (int64_t)g_mmq_sms * 3 / 4) {
            p.kind = KIND_T2_8W, p.MT = 2, p.NT = 8, wn = 2;
        } else if (p.ntl <= 2) {
            p.kind = KIND_T1_2, p.MT = 1, p.NT = 2;
        } else if (p.ntl <= 4) {
            p.kind = KIND_T2_4, p.MT = 2, p.NT = 4;
            if (ik && g_mmq_wide) p.kind = KIND_W1_4, p.MT = 1, wm = 8;
        } else {
            p.kind = KIND_T1_8, p.MT = 1, p.NT = 8;
            if (ik && g_mmq_wide) p.kind = KIND_W1_8, wm = 8;
        }
        const int64_t brows = 16 * p.MT * wm, btok = 8 * p.NT * wn;
        bx = (n + btok - 1) / btok, by = (rows + brows - 1) / brows;
        /* blocks to fill: SMs x blocks an SM, less for the long-input tiles */
        fill = p.kind == KIND_T2_8W ? g_mmq_sms / 2
               : p.kind == KIND_W1_8 ? g_mmq_sms
                                     : 2 * g_mmq_sms;
    } else {
        p.kind = KIND_WARP;
        p.NT = n <= 16 ? 2 : n <= 32 ? 4 : 8;
        p.MT = n > 64 ? 2 : 1;
        bx = (p.ntl + p.NT - 1) / p.NT, by = (rows + 64 * p.MT - 1) / (64 * p.MT);
        fill = 2 * g_mmq_sms;
    }
    int S = 1;
    const int min_sps = p.kind == KIND_STREAM ? 2 * SW_WARPS : 4; /* steps a split keeps */
    if (g_mmq_waves && p.kind != KIND_STREAM && p.kind != KIND_WARP) {
        /* the split of fewest (waves x (steps a block + 2)), the smaller on ties: a split
         * that only turns one part-filled wave into two (14336 rows of 64-row tiles at 64
         * tokens: 224 blocks for 264 places) costs the partial sums and their pass for
         * nothing. The 2: a block's fixed cost (pipeline fill, epilogue, its share of the
         * partial sums) in steps; without it the rule took 8 waves of 2 steps over one of
         * 16 (H100: 14336 x 4096 at 64 tokens 66 us against 52, at 128 131 against 105).
         * Places: the blocks an SM holds (the 128 x 128 tiles' one, not the rule above's
         * half); splits down to the rule above's least steps a block. */
        const int64_t places = p.kind == KIND_T2_8W ? g_mmq_sms : fill;
        int64_t best = -1;
        for (int s = 1; s <= 16 && p.nsteps >= min_sps * (s / 2) &&
                        (size_t)s * (size_t)n * (size_t)rows * sizeof(float) <= PART_MAX;
             s *= 2) {
            const int64_t waves = (bx * by * s + places - 1) / places;
            const int64_t cost = waves * ((p.nsteps + s - 1) / s + 2);
            if (best < 0 || cost < best) best = cost, S = s;
        }
    } else {
        while (S < 16 && bx * by * S < fill && p.nsteps >= min_sps * S &&
               (size_t)(2 * S) * (size_t)n * (size_t)rows * sizeof(float) <= PART_MAX)
            S *= 2;
    }
    p.sps = (p.nsteps + S - 1) / S;
    p.S = (p.nsteps + p.sps - 1) / p.sps;
    p.grid = dim3((unsigned)bx, (unsigned)by, (unsigned)p.S);
    return p;
}

/* workspace: codes, scales, partial sums (each 256-byte aligned) */
size_t codes_bytes(int64_t K, int ntl) { return rlcu::mmq_codes_bytes(K, ntl); }
size_t scales_bytes(int64_t K, int ntl) { return rlcu::mmq_scales_bytes(K, ntl); }

template <class WT, int MT, int NT>
cudaError_t launch_mmq(cudaStream_t s, const mmq_plan &p, const uint8_t *w, size_t row_bytes,
                       int64_t rows, const uint2 *xq, const float4 *xs, int64_t n, float *y) {
    if (g_mmq_staged == 1 && (uintptr_t)w % 16 == 0) {
        using L = staged_layout<WT, MT, NT>;
        static bool raised = false; /* the dynamic shared-memory limit, once per kernel */
        if (!raised) {
            raised = cudaFuncSetAttribute(mmq_staged_kernel<WT, MT, NT>,
                                          cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          2 * L::STAGE) == cudaSuccess;
            cudaGetLastError();
        }
        if (raised)
            return rlcu::launch(mmq_staged_kernel<WT, MT, NT>, p.grid, MMQ_WARPS * 32,
                                (size_t)(2 * L::STAGE), s, w, row_bytes, rows, xq, xs, p.ntl, n, y,
                                p.sps, p.nsteps);
    }
    return rlcu::launch(mmq_kernel<WT, MT, NT>, p.grid, MMQ_WARPS * 32, 0, s, w, row_bytes, rows,
                        xq, xs, p.ntl, n, y, p.sps, p.nsteps);
}

template <class WT, int MT, int NT, int WM, int WN, int BPS, int XM, bool BULK, bool LEAN = false>
cudaError_t launch_tile_bk(cudaStream_t s, const mmq_plan &p, const uint8_t *w, size_t row_bytes,
                           int64_t rows, const uint2 *xq, const float4 *xs, int64_t n, float *y) {
    using C = tile_cfg<WT, MT, NT, WM, WN, BPS>;
    static bool raised = false; /* the dynamic shared-memory limit, once per kernel */
    if (!raised) {
        const cudaError_t e =
            cudaFuncSetAttribute(mmq_tile_kernel<WT, MT, NT, WM, WN, BPS, XM, BULK, LEAN>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM);
        if (e != cudaSuccess) return e;
        raised = true;
    }
    return rlcu::launch(mmq_tile_kernel<WT, MT, NT, WM, WN, BPS, XM, BULK, LEAN>, p.grid,
                        C::THREADS, (size_t)C::SMEM, s, w, row_bytes, rows,
                        reinterpret_cast<const uint8_t *>(xq),
                        reinterpret_cast<const uint8_t *>(xs), p.ntl, n, y, p.sps, p.nsteps);
}

/* Bulk copies (p.bulk) for the 128-row tiles of the integer step (the batched-decode shapes). */
template <class WT, int MT, int NT, int WM, int WN, int BPS, int XM>
cudaError_t launch_tile_as(cudaStream_t s, const mmq_plan &p, const uint8_t *w, size_t row_bytes,
                           int64_t rows, const uint2 *xq, const float4 *xs, int64_t n, float *y) {
    if constexpr (XM == XM_INT && WM == 8)
        if (p.bulk) {
            if constexpr (MT == 1 && WN == 1 && WT::MIN)
                if (p.leant)
                    return launch_tile_bk<WT, MT, NT, WM, WN, BPS, XM, true, true>(
                        s, p, w, row_bytes, rows, xq, xs, n, y);
            return launch_tile_bk<WT, MT, NT, WM, WN, BPS, XM, true>(s, p, w, row_bytes, rows, xq,
                                                                     xs, n, y);
        }
    return launch_tile_bk<WT, MT, NT, WM, WN, BPS, XM, false>(s, p, w, row_bytes, rows, xq, xs, n,
                                                              y);
}

/* The Q8_K step (step_product_k) where the activations are Q8_K and its extra sums fit
 * the registers (not in the 128 x 128 tile: there ptxas spills; its sums stay per block). */
template <class WT, int MT, int NT, int WM, int WN, int BPS>
cudaError_t launch_tile(cudaStream_t s, const mmq_plan &p, const uint8_t *w, size_t row_bytes,
                        int64_t rows, const uint2 *xq, const float4 *xs, int64_t n, float *y) {
    if constexpr ((WT::HALVES || WT::MIN) && MT * NT <= 8) {
        if constexpr (NT == 4 || NT == 8) {
            if (p.ik)
                return launch_tile_as<WT, MT, NT, WM, WN, BPS, XM_INT>(s, p, w, row_bytes, rows, xq, xs, n, y);
        }
        if constexpr (WM == 4) {
            if (p.kq8)
                return launch_tile_as<WT, MT, NT, WM, WN, BPS, XM_KSTEP>(s, p, w, row_bytes, rows, xq, xs, n, y);
        }
    }
    if constexpr (WM != 4)
        return cudaErrorInvalidValue; /* the wide tiles: integer step only (the plan's choice) */
    else
        return launch_tile_as<WT, MT, NT, WM, WN, BPS, XM_BLOCK>(s, p, w, row_bytes, rows, xq, xs, n, y);
}

/* The shared-memory carveout (percent of the SM's) of a streaming kernel of smem bytes a
 * block: all of it for the kernels of up to 4 stages (two or three blocks an SM), and for
 * the lean ones of at most 2 (CAP) the least that holds two blocks (the driver takes the
 * next size it has), the rest of the SM's memory staying L1 for the activations. */
int stream_carveout(int smem, int cap) {
    if (cap >= 4) return 100;
    const int pc = (100 * 2 * (smem + 1024) + SMEM_SM - 1) / SMEM_SM;
    return pc > 100 ? 100 : pc;
}

template <class WT, int NT, int XM, bool BULK, bool LEAN = false, int CAP = 4>
cudaError_t launch_stream_bk(cudaStream_t s, const mmq_plan &p, const uint8_t *w, size_t row_bytes,
                             int64_t rows, const uint2 *xq, const float4 *xs, int64_t n, float *y) {
    using C = stream_cfg<WT, NT, CAP>;
    static bool raised = false; /* the dynamic shared-memory limit, once per kernel */
    if (!raised) {
        cudaError_t e = cudaFuncSetAttribute(mmq_stream_kernel<WT, NT, XM, BULK, LEAN, CAP>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM);
        if (e != cudaSuccess) return e;
        /* as much shared memory as the SM has: two or three blocks an SM */
        e = cudaFuncSetAttribute(mmq_stream_kernel<WT, NT, XM, BULK, LEAN, CAP>,
                                 cudaFuncAttributePreferredSharedMemoryCarveout,
                                 stream_carveout(C::SMEM, CAP));
        if (e != cudaSuccess) return e;
        raised = true;
    }
    return rlcu::launch(mmq_stream_kernel<WT, NT, XM, BULK, LEAN, CAP>, p.grid, SW_WARPS * 32,
                        (size_t)C::SMEM, s, w, row_bytes, rows, xq, xs, p.ntl, n, y, p.sps,
                        p.nsteps);
}

template <class WT, int NT, int XM>
cudaError_t launch_stream_as(cudaStream_t s, const mmq_plan &p, const uint8_t *w, size_t row_bytes,
                             int64_t rows, const uint2 *xq, const float4 *xs, int64_t n, float *y) {
    if constexpr (XM == XM_INT) {
        if (p.bulk && p.lean) {
            if (p.cap == 2)
                return launch_stream_bk<WT, NT, XM, true, true, 2>(s, p, w, row_bytes, rows, xq, xs,
                                                                   n, y);
            return launch_stream_bk<WT, NT, XM, true, true, 4>(s, p, w, row_bytes, rows, xq, xs,
                                                               n, y);
        }
    }
    if (p.bulk) return launch_stream_bk<WT, NT, XM, true>(s, p, w, row_bytes, rows, xq, xs, n, y);
    return launch_stream_bk<WT, NT, XM, false>(s, p, w, row_bytes, rows, xq, xs, n, y);
}

template <class WT, int NT>
cudaError_t launch_stream(cudaStream_t s, const mmq_plan &p, const uint8_t *w, size_t row_bytes,
                          int64_t rows, const uint2 *xq, const float4 *xs, int64_t n, float *y) {
    if constexpr (WT::HALVES || WT::MIN) {
        if (p.ik) return launch_stream_as<WT, NT, XM_INT>(s, p, w, row_bytes, rows, xq, xs, n, y);
        if (p.kq8) return launch_stream_as<WT, NT, XM_KSTEP>(s, p, w, row_bytes, rows, xq, xs, n, y);
    }
    return launch_stream_as<WT, NT, XM_BLOCK>(s, p, w, row_bytes, rows, xq, xs, n, y);
}

template <class WT>
cudaError_t launch_type(cudaStream_t s, const mmq_plan &p, const uint8_t *w, size_t row_bytes,
                        int64_t rows, const uint2 *xq, const float4 *xs, int64_t n, float *y) {
    switch (p.kind) {
    case KIND_T1_2: return launch_tile<WT, 1, 2, 4, 1, 2>(s, p, w, row_bytes, rows, xq, xs, n, y);
    case KIND_T2_4: return launch_tile<WT, 2, 4, 4, 1, 2>(s, p, w, row_bytes, rows, xq, xs, n, y);
    case KIND_T1_8: return launch_tile<WT, 1, 8, 4, 1, 2>(s, p, w, row_bytes, rows, xq, xs, n, y);
    case KIND_T2_8W: return launch_tile<WT, 2, 8, 4, 2, 1>(s, p, w, row_bytes, rows, xq, xs, n, y);
    case KIND_W1_4: return launch_tile<WT, 1, 4, 8, 1, 2>(s, p, w, row_bytes, rows, xq, xs, n, y);
    case KIND_W1_8: return launch_tile<WT, 1, 8, 8, 1, 1>(s, p, w, row_bytes, rows, xq, xs, n, y);
    case KIND_STREAM:
        if (p.NT == 1) return launch_stream<WT, 1>(s, p, w, row_bytes, rows, xq, xs, n, y);
        if (p.NT == 2) return launch_stream<WT, 2>(s, p, w, row_bytes, rows, xq, xs, n, y);
        return launch_stream<WT, 4>(s, p, w, row_bytes, rows, xq, xs, n, y);
    default: break;
    }
    if (p.MT == 2) return launch_mmq<WT, 2, 8>(s, p, w, row_bytes, rows, xq, xs, n, y);
    if (p.NT == 2) return launch_mmq<WT, 1, 2>(s, p, w, row_bytes, rows, xq, xs, n, y);
    if (p.NT == 4) return launch_mmq<WT, 1, 4>(s, p, w, row_bytes, rows, xq, xs, n, y);
    return launch_mmq<WT, 1, 8>(s, p, w, row_bytes, rows, xq, xs, n, y);
}

template <class WT0, class WT1, int NT, int XM, bool BULK, bool LEAN = false, int CAP = 4>
cudaError_t launch_join_as(cudaStream_t s, const mmq_plan &p, const mmq_jsegs &sg, const uint2 *xq,
                           const float4 *xs, int64_t n) {
    using J = jcfg<WT0, WT1, NT, CAP>;
    static bool raised = false; /* the dynamic shared-memory limit, once per kernel */
    if (!raised) {
        cudaError_t e =
            cudaFuncSetAttribute(mmq_stream_join_kernel<WT0, WT1, NT, XM, BULK, LEAN, CAP>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, J::SMEM);
        if (e != cudaSuccess) return e;
        e = cudaFuncSetAttribute(mmq_stream_join_kernel<WT0, WT1, NT, XM, BULK, LEAN, CAP>,
                                 cudaFuncAttributePreferredSharedMemoryCarveout,
                                 stream_carveout(J::SMEM, CAP));
        if (e != cudaSuccess) return e;
        raised = true;
    }
    return rlcu::launch(mmq_stream_join_kernel<WT0, WT1, NT, XM, BULK, LEAN, CAP>, p.grid,
                        SW_WARPS * 32, (size_t)J::SMEM, s, sg, xq, xs, p.ntl, n, p.nsteps);
}

template <class WT0, class WT1, int XM, bool BULK, bool LEAN = false, int CAP = 4>
cudaError_t launch_join_bk(cudaStream_t s, const mmq_plan &p, const mmq_jsegs &sg, const uint2 *xq,
                           const float4 *xs, int64_t n) {
    if (p.NT == 1) return launch_join_as<WT0, WT1, 1, XM, BULK, LEAN, CAP>(s, p, sg, xq, xs, n);
    if (p.NT == 2) return launch_join_as<WT0, WT1, 2, XM, BULK, LEAN, CAP>(s, p, sg, xq, xs, n);
    return launch_join_as<WT0, WT1, 4, XM, BULK, LEAN, CAP>(s, p, sg, xq, xs, n);
}

template <class WT0, class WT1, int XM>
cudaError_t launch_join(cudaStream_t s, const mmq_plan &p, const mmq_jsegs &sg, const uint2 *xq,
                        const float4 *xs, int64_t n) {
    if constexpr (XM == XM_INT) {
        if (p.bulk && p.lean) {
            if (p.cap == 2) return launch_join_bk<WT0, WT1, XM, true, true, 2>(s, p, sg, xq, xs, n);
            return launch_join_bk<WT0, WT1, XM, true, true, 4>(s, p, sg, xq, xs, n);
        }
    }
    if (p.bulk) return launch_join_bk<WT0, WT1, XM, true>(s, p, sg, xq, xs, n);
    return launch_join_bk<WT0, WT1, XM, false>(s, p, sg, xq, xs, n);
}

} // namespace

extern "C" int rl__cu_mmq_xmode(int type) {
    if (g_mmq_q8k < 0) g_mmq_q8k = env_int("RUVLLM_CUDA_MMQ_Q8K", 1) != 0;
    return g_mmq_q8k && (type == RL_TYPE_Q4_K || type == RL_TYPE_Q6_K) ? 1 : 0;
}

/* Whether a product of this type takes the integer step (Q8_K activations, the step on). */
static bool int_step(int type) {
    if (g_mmq_int < 0) g_mmq_int = env_int("RUVLLM_CUDA_MMQ_INT", 1) != 0;
    if (g_mmq_kstep < 0) g_mmq_kstep = env_int("RUVLLM_CUDA_MMQ_KSTEP", 1) != 0;
    return g_mmq_int && g_mmq_kstep && rl__cu_mmq_xmode(type) == 1;
}

/* Whether the weights w (rows of row_bytes) can come by bulk copies: 16-byte aligned rows
 * (every step of every row then starts at one offset modulo 16 and the 16-byte units that
 * hold it lie within the row), a device with the copy engine, RUVLLM_CUDA_MMQ_BULK not 0. */
static bool mmq_bulk_ok(const void *w, size_t row_bytes) {
    if (g_mmq_bulk < 0) g_mmq_bulk = env_int("RUVLLM_CUDA_MMQ_BULK", 1) != 0;
    return g_mmq_bulk && rlcu::g_sm90 && (uintptr_t)w % 16 == 0 && row_bytes % 16 == 0;
}

/* Whether a streaming plan p (bulk copies, the integer step) takes the lean kernels: the
 * input one block of tokens (ntl == NT), RUVLLM_CUDA_MMQ_LEAN not 0; then their ring of 2
 * stages where no warp has more than 2 steps, RUVLLM_CUDA_MMQ_RING not 0. The 128-row
 * tiles by bulk copies (Q4_K: launch_tile_as) take the lean step unless
 * RUVLLM_CUDA_MMQ_LEAN_TILE=0. */
static void lean_plan(mmq_plan &p) {
    if (g_mmq_lean < 0) g_mmq_lean = env_int("RUVLLM_CUDA_MMQ_LEAN", 1) != 0;
    if (g_mmq_ring < 0) g_mmq_ring = env_int("RUVLLM_CUDA_MMQ_RING", 1) != 0;
    if (g_mmq_leant < 0) g_mmq_leant = env_int("RUVLLM_CUDA_MMQ_LEAN_TILE", 1) != 0;
    p.leant = g_mmq_leant && p.ik && p.bulk && (p.kind == KIND_W1_4 || p.kind == KIND_W1_8);
    p.lean = g_mmq_lean && p.kind == KIND_STREAM && p.ik && p.bulk && p.ntl == p.NT &&
             p.grid.y == 1;
    p.cap = p.lean && g_mmq_ring && (p.sps + SW_WARPS - 1) / SW_WARPS <= 2 ? 2 : 4;
}

/* (RUVLLM_CUDA_MMQ_INT, _WIDE, _WAVES, _BULK, _LEAN, _RING and _LEAN_TILE are read again at
 * each call: kbench sets them.) */
extern "C" void rl__cu_mmq_config(int tile_min, int staged, int q8k, int kstep, int stream) {
    g_mmq_int = env_int("RUVLLM_CUDA_MMQ_INT", 1) != 0;
    g_mmq_wide = env_int("RUVLLM_CUDA_MMQ_WIDE", 1) != 0;
    g_mmq_waves = env_int("RUVLLM_CUDA_MMQ_WAVES", 1) != 0;
    g_mmq_bulk = env_int("RUVLLM_CUDA_MMQ_BULK", 1) != 0;
    g_mmq_lean = env_int("RUVLLM_CUDA_MMQ_LEAN", 1) != 0;
    g_mmq_ring = env_int("RUVLLM_CUDA_MMQ_RING", 1) != 0;
    g_mmq_leant = env_int("RUVLLM_CUDA_MMQ_LEAN_TILE", 1) != 0;
    g_mmq_stream = stream >= 0 ? stream : env_int("RUVLLM_CUDA_MMQ_STREAM", STREAM_MAX_N);
    g_mmq_kstep = kstep >= 0 ? kstep == 1 : env_int("RUVLLM_CUDA_MMQ_KSTEP", 1) != 0;
    g_mmq_tile = tile_min >= 0 ? tile_min : env_int("RUVLLM_CUDA_MMQ_TILE", TILE_MIN_N);
    g_mmq_staged = staged >= 0 ? staged == 1 : env_int("RUVLLM_CUDA_MMQ_STAGED", 0) == 1;
    g_mmq_q8k = q8k >= 0 ? q8k == 1 : env_int("RUVLLM_CUDA_MMQ_Q8K", 1) != 0;
}

extern "C" bool rl__cu_mmq_ok(int type, const void *w, size_t row_bytes, int64_t K) {
    if (K <= 0 || K % 256) return false;
    switch (type) {
    case RL_TYPE_Q4_K:
        return (uintptr_t)w % 16 == 0 && row_bytes % 16 == 0;
    case RL_TYPE_Q4_0:
    case RL_TYPE_Q8_0:
    case RL_TYPE_Q6_K:
        return (uintptr_t)w % 2 == 0 && row_bytes % 2 == 0;
    default:
        return false;
    }
}

extern "C" size_t rl__cu_mmq_bytes(int64_t rows, int64_t K, int64_t n) {
    if (rows <= 0 || K <= 0 || n <= 0) return 0;
    /* the type is not known here: room for the partial sums of either plan */
    size_t b = 0;
    for (int ik = 0; ik < 2; ik++) {
        const mmq_plan p = make_plan(rows, K, n, ik == 1);
        size_t bi = codes_bytes(K, p.ntl) + scales_bytes(K, p.ntl);
        if (p.S > 1) bi += (size_t)p.S * (size_t)n * (size_t)rows * sizeof(float);
        b = bi > b ? bi : b;
    }
    return b;
}

extern "C" int rl__cu_mmq_split(int type, int64_t rows, int64_t K, int64_t n, void *ws,
                                float **part) {
    *part = nullptr;
    if (rows <= 0 || n <= 0 || K <= 0 || K % 256) return 1;
    const mmq_plan p = make_plan(rows, K, n, int_step(type));
    if (p.S > 1)
        *part = reinterpret_cast<float *>(static_cast<uint8_t *>(ws) + codes_bytes(K, p.ntl) +
                                          scales_bytes(K, p.ntl));
    return p.S;
}

extern "C" size_t rl__cu_mmq_xq_bytes(int64_t K, int64_t n) {
    const int ntl = (int)((n + 7) / 8);
    return codes_bytes(K, ntl) + scales_bytes(K, ntl);
}

extern "C" cudaError_t rl__cu_mmq(cudaStream_t s, int type, const void *w, size_t row_bytes,
                                  int64_t rows, int64_t K, const float *x, int64_t n, float *y,
                                  void *ws, bool xq_ready, bool keep_part) {
    if (rows <= 0 || n <= 0) return cudaSuccess;
    if (K % 256 || (uintptr_t)x % 16) return cudaErrorInvalidValue;
    mmq_plan p = make_plan(rows, K, n, int_step(type));
    if (p.grid.y > 65535) return cudaErrorInvalidValue;
    if (g_mmq_staged < 0) g_mmq_staged = env_int("RUVLLM_CUDA_MMQ_STAGED", 0) == 1;
    if (g_mmq_kstep < 0) g_mmq_kstep = env_int("RUVLLM_CUDA_MMQ_KSTEP", 1) != 0;
    p.kq8 = g_mmq_kstep && rl__cu_mmq_xmode(type) == 1;
    p.bulk = mmq_bulk_ok(w, row_bytes);
    lean_plan(p);
    uint8_t *base = static_cast<uint8_t *>(ws);
    uint32_t *q = reinterpret_cast<uint32_t *>(base);
    float2 *sc = reinterpret_cast<float2 *>(base + codes_bytes(K, p.ntl));
    float *part = reinterpret_cast<float *>(base + codes_bytes(K, p.ntl) + scales_bytes(K, p.ntl));
    if (!xq_ready) {
        const int64_t threads = (int64_t)p.ntl * 8 * (K / 256) * 32;
        (void)rlcu::launch(rl__cu_mmq_xmode(type) == 1 ? mmq_quant_kernel<1>
                                                       : mmq_quant_kernel<0>,
                           (unsigned)((threads + 255) / 256), 256, 0, s, x, n, K, p.ntl, q, sc);
    }
    const uint2 *xq = reinterpret_cast<const uint2 *>(q);
    const float4 *xs = reinterpret_cast<const float4 *>(sc);
    float *dst = p.S > 1 ? part : y;
    const uint8_t *wb = static_cast<const uint8_t *>(w);
    cudaError_t e;
    switch (type) {
    case RL_TYPE_Q4_0:
        e = launch_type<MQ4_0>(s, p, wb, row_bytes, rows, xq, xs, n, dst);
        break;
    case RL_TYPE_Q8_0:
        e = launch_type<MQ8_0>(s, p, wb, row_bytes, rows, xq, xs, n, dst);
        break;
    case RL_TYPE_Q4_K:
        e = launch_type<MQ4_K>(s, p, wb, row_bytes, rows, xq, xs, n, dst);
        break;
    case RL_TYPE_Q6_K:
        e = launch_type<MQ6_K>(s, p, wb, row_bytes, rows, xq, xs, n, dst);
        break;
    default:
        return cudaErrorInvalidValue;
    }
    if (e != cudaSuccess) return e;
    if (p.S > 1 && !keep_part) {
        const int64_t total = n * rows;
        const int64_t b = (total + 255) / 256;
        (void)rlcu::launch(mmq_reduce_kernel, (unsigned)(b < 4096 ? b : 4096), 256, 0, s, part, total,
                           p.S, y);
    }
    return cudaGetLastError();
}

/* The joined launch's kernel family: 0 Q4_K only, 1 Q4_K / Q6_K mixed (or Q6_K only), 2
 * Q4_0, 3 Q8_0 (both types of a product pair: the integer step; the others: per block);
 * -1: not joined. */
static int join_family(const rl__cu_mmq_seg *sg, int nseg) {
    bool k4 = true, kq = true, q40 = true, q80 = true;
    for (int i = 0; i < nseg; i++) {
        k4 = k4 && sg[i].type == RL_TYPE_Q4_K;
        kq = kq && (sg[i].type == RL_TYPE_Q4_K || sg[i].type == RL_TYPE_Q6_K);
        q40 = q40 && sg[i].type == RL_TYPE_Q4_0;
        q80 = q80 && sg[i].type == RL_TYPE_Q8_0;
    }
    if (kq && !int_step(RL_TYPE_Q4_K)) return -1;
    return k4 ? 0 : kq ? 1 : q40 ? 2 : q80 ? 3 : -1;
}

extern "C" bool rl__cu_mmq_join_ok(const rl__cu_mmq_seg *sg, int nseg, int64_t K, int64_t n) {
    if (nseg < 2 || nseg > MMQ_JSEGS || K <= 0 || K % 256 || n < RL_CU_MMQ_MIN_N) return false;
    const int fam = join_family(sg, nseg);
    if (fam < 0) return false;
    int64_t blocks = 0;
    for (int i = 0; i < nseg; i++) {
        if (sg[i].rows <= 0 || !rl__cu_mmq_ok(sg[i].type, sg[i].w, sg[i].row_bytes, K))
            return false;
        /* each would take the streaming kernel alone */
        const mmq_plan p = make_plan(sg[i].rows, K, n, fam <= 1);
        if (p.kind != KIND_STREAM) return false;
        blocks += p.grid.x;
    }
    return blocks < (1 << 30);
}

extern "C" cudaError_t rl__cu_mmq_join(cudaStream_t s, const rl__cu_mmq_seg *sg, int nseg,
                                       int64_t K, const float *x, int64_t n, void *ws,
                                       bool xq_ready) {
    if (!rl__cu_mmq_join_ok(sg, nseg, K, n) || (uintptr_t)x % 16) return cudaErrorInvalidValue;
    const int fam = join_family(sg, nseg);
    mmq_plan p = make_plan(sg[0].rows, K, n, fam <= 1);
    mmq_jsegs j = {};
    int64_t bx = 0;
    p.bulk = true;
    for (int i = 0; i < MMQ_JSEGS; i++) {
        const rl__cu_mmq_seg &g = sg[i < nseg ? i : nseg - 1];
        if (i < nseg) bx += (g.rows + 15) / 16;
        p.bulk = p.bulk && mmq_bulk_ok(g.w, g.row_bytes);
        j.w[i] = static_cast<const uint8_t *>(g.w);
        j.y[i] = g.y;
        j.rows[i] = g.rows;
        j.row_bytes[i] = g.row_bytes;
        j.bend[i] = (int)bx;
        j.wt1[i] = g.type == RL_TYPE_Q6_K;
    }
    p.S = 1;
    p.sps = p.nsteps;
    p.grid.x = (unsigned)bx;
    p.grid.z = 1;
    if (p.grid.y > 65535) return cudaErrorInvalidValue;
    lean_plan(p);
    uint8_t *base = static_cast<uint8_t *>(ws);
    uint32_t *q = reinterpret_cast<uint32_t *>(base);
    float2 *sc = reinterpret_cast<float2 *>(base + codes_bytes(K, p.ntl));
    const int xmode = rl__cu_mmq_xmode(sg[0].type);
    if (!xq_ready) {
        const int64_t threads = (int64_t)p.ntl * 8 * (K / 256) * 32;
        (void)rlcu::launch(xmode == 1 ? mmq_quant_kernel<1> : mmq_quant_kernel<0>,
                           (unsigned)((threads + 255) / 256), 256, 0, s, x, n, K, p.ntl, q, sc);
    }
    const uint2 *xq = reinterpret_cast<const uint2 *>(q);
    const float4 *xs = reinterpret_cast<const float4 *>(sc);
    cudaError_t e;
    switch (fam) {
    case 0: e = launch_join<MQ4_K, MQ4_K, XM_INT>(s, p, j, xq, xs, n); break;
    case 1: e = launch_join<MQ4_K, MQ6_K, XM_INT>(s, p, j, xq, xs, n); break;
    case 2: e = launch_join<MQ4_0, MQ4_0, XM_BLOCK>(s, p, j, xq, xs, n); break;
    default: e = launch_join<MQ8_0, MQ8_0, XM_BLOCK>(s, p, j, xq, xs, n); break;
    }
    if (e != cudaSuccess) return e;
    return cudaGetLastError();
}
