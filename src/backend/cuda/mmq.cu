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
 * d * sum(codes) (for the weight types with a per-block minimum, Q4_K); with
 * RUVLLM_CUDA_MMQ_Q8K=1 the activations of Q4_K / Q6_K products as Q8_K instead (one scale
 * per 256: mmq_quant8k_kernel). A 32-value block then contributes
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
 * Weights: each warp decodes its own rows straight from global memory into A fragments
 * (no shared memory): lane 4 g + t reads, for rows g and g+8 of each 16-row tile, the
 * bytes that hold values 4t..4t+3 and 16+4t..16+4t+3 of each block and turns them into
 * int8 codes (Q4_0: q - 8; Q4_K: q with the minimum applied in float; Q6_K: q - 32;
 * Q8_0: as stored). A block of 4 warps covers 64 MT rows x 8 NT tokens; the warps share
 * the activation tile through L1. Few tiles (batched decode): the K range is also split
 * over blocks (grid.z), each writing partial sums that mmq_reduce_kernel adds in a fixed
 * order (results do not depend on scheduling).
 *
 * Where it stands (H100, Llama 3 8B shapes, bench_cuda --kernels with RUVLLM_KBENCH=mmq):
 * 8 tokens 2-3x the decode kernels (4096x4096 Q4_K 14.5 vs 30.5 us), 32 tokens 1.1-1.4x
 * the decoded-BF16 + cuBLAS path, but only 40-75 TFLOP/s at 64 to 512 tokens, where
 * cuBLAS (with the decode) reaches 60-390: the backend sends it 5 to 8 tokens by default
 * (RUVLLM_CUDA_MMQ_MAX; up to 32 it is measured faster, see backend_cuda.c for why 8). Converting the integer sums with I2F or with the bias trick
 * below made no difference, so the large products are not bound by the epilogue's
 * arithmetic; the likely limit is latency (each warp loads its weights and the
 * activation fragments straight from L2 / L1 with no staging; 8 warps per SM at 255
 * registers for the 128-row tile). mmq_staged_kernel (RUVLLM_CUDA_MMQ_STAGED=1, off by
 * default) stages both tiles in shared memory with cp.async, two stages; it is built but
 * was not yet run on a GPU: bench_cuda --kernels times it and checks its output bit for
 * bit against mmq_kernel's (same_bits) before it may become the default.
 */
#include "cuda_impl.h"
#include "launch.cuh"
#include "qtypes.cuh"

#include <cstdlib>

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
    __device__ static void frag(const Row &r, int sb, uint32_t &lo, uint32_t &hi, float &d0,
                                float &d1, float &m) {
        const int sh = 4 * (sb & 1);
        lo = (r.q[sb >> 1][0] >> sh) & 0x0f0f0f0fu;
        hi = (r.q[sb >> 1][1] >> sh) & 0x0f0f0f0fu;
        int sc, mn;
        if (sb < 4) {
            sc = sbyte(r, sb) & 63;
            mn = sbyte(r, sb + 4) & 63;
        } else {
            sc = (sbyte(r, sb + 4) & 0xf) | (sbyte(r, sb - 4) >> 6) << 4;
            mn = (sbyte(r, sb + 4) >> 4) | (sbyte(r, sb) >> 6) << 4;
        }
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
    static constexpr bool HALVES = true; /* no minimum */
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
};

/* ---- activations ---- */

/* x [n][K] -> the layout above; a thread per 4 values, 8 threads per block of 32 (aligned
 * groups of 8 lanes), tokens n .. 8 ntl - 1 as zeros. The sum stored is that of the
 * quantized values (d times the sum of the codes): the minimum term then pairs with the
 * same activations as the integer products, so the two parts' large halves cancel as they
 * do in float (with the float sum Q4_K's error was 5x the other types'). */
__global__ void mmq_quant_kernel(const float *__restrict__ x, int64_t n, int64_t K, int ntl,
                                 uint32_t *__restrict__ q, float2 *__restrict__ sc) {
    rlcu::pdl_enter();
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t wpr = K / 4; /* words per token */
    const int64_t tok = i / wpr, wr = i % wpr;
    if (tok >= (int64_t)ntl * 8) return; /* whole groups of 8 leave together */
    const int64_t kb = wr >> 3;
    const int w = (int)(wr & 7);
    float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    if (tok < n) v = reinterpret_cast<const float4 *>(x + tok * K)[wr];
    float amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
#pragma unroll
    for (int o = 4; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o, 8));
    const float d = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
    const int c0 = __float2int_rn(v.x * id), c1 = __float2int_rn(v.y * id);
    const int c2 = __float2int_rn(v.z * id), c3 = __float2int_rn(v.w * id);
    int csum = (c0 + c1) + (c2 + c3);
#pragma unroll
    for (int o = 4; o > 0; o >>= 1) csum += __shfl_xor_sync(0xffffffffu, csum, o, 8);
    const float sum = d * (float)csum;
    const uint32_t word = (uint32_t)(c0 & 0xff) | (uint32_t)(c1 & 0xff) << 8 |
                          (uint32_t)(c2 & 0xff) << 16 | (uint32_t)(c3 & 0xff) << 24;
    const int64_t tile = kb * ntl + tok / 8;
    const int g = (int)(tok & 7);
    /* word w: values 4w..4w+3 -> lane 4g + (w & 3), first (w < 4) or second word */
    q[(tile * 32 + 4 * g + (w & 3)) * 2 + (w >> 2)] = word;
    if (w == 0) sc[tile * 8 + g] = make_float2(d, sum);
}

/* The same layout with the activations of k-quant products rounded as llama.cpp's CPU
 * dot products of Q4_K / Q6_K round them (Q8_K: one scale per 256 values, rl__quant_q8_K;
 * RUVLLM_CUDA_MMQ_Q8K=1, not yet run on a GPU): a warp per 256 values of a token, lane l
 * holding values 8l..8l+7 (q8k_warp's codes, its residual unused); each block of 32 gets
 * the 256's scale and the sum of its own codes. Then the integer sums are the CPU's and
 * only the float order of the scale products differs (as for Q8_0 / Q4_0 with the per-32
 * rounding, which is Q8_0's). */
__global__ void mmq_quant8k_kernel(const float *__restrict__ x, int64_t n, int64_t K, int ntl,
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
    uint2 codes, resid;
    float d = 0.0f;
    q8k_warp(v, &codes, &resid, &d);
    d = __shfl_sync(0xffffffffu, d, 0);
    int csum = 0;
#pragma unroll
    for (int i = 0; i < 4; i++)
        csum += (int)(int8_t)(codes.x >> (8 * i)) + (int)(int8_t)(codes.y >> (8 * i));
    csum += __shfl_xor_sync(0xffffffffu, csum, 1);
    csum += __shfl_xor_sync(0xffffffffu, csum, 2);
    const int64_t kb = b256 * 8 + (lane >> 2); /* this lane's block of 32 */
    const int64_t tile = kb * ntl + tok / 8;
    const int g = (int)(tok & 7), m = lane & 3;
    /* values 8m..8m+7 of the block: words 2m, 2m+1 -> lane 4g + (w & 3), word w >> 2 */
    q[(tile * 32 + 4 * g + ((2 * m) & 3)) * 2 + (m >> 1)] = codes.x;
    q[(tile * 32 + 4 * g + ((2 * m + 1) & 3)) * 2 + (m >> 1)] = codes.y;
    if (m == 0) sc[tile * 8 + g] = make_float2(d, d * (float)csum);
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

/* ---- the staged variant (RUVLLM_CUDA_MMQ_STAGED=1; not yet measured): the block copies
 * each step's weight bytes and activation tile into shared memory with cp.async (PTX ISA,
 * "cp.async"), the next step's while this one computes (two stages), so no warp waits on
 * L2 for its operands; the arithmetic is mmq_kernel's, in the same order (bit-identical
 * results: bench_cuda --kernels compares the two). Weights 16-byte aligned. ---- */

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

/* ---- plan: tile shape and K split from the sizes alone (the workspace query and the
 * launch agree) ---- */

int g_mmq_sms = 0; /* multiprocessors of the device (read once) */

struct mmq_plan {
    int ntl, NT, MT, S, sps, nsteps;
    dim3 grid;
};

constexpr size_t PART_MAX = (size_t)64 << 20; /* partial sums at most */

mmq_plan make_plan(int64_t rows, int64_t K, int64_t n) {
    if (g_mmq_sms <= 0) {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) == cudaSuccess &&
            cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && v > 0)
            g_mmq_sms = v;
        else
            g_mmq_sms = 132;
        cudaGetLastError();
    }
    mmq_plan p;
    p.ntl = (int)((n + 7) / 8);
    p.NT = n <= 16 ? 2 : n <= 32 ? 4 : 8;
    p.MT = n > 64 ? 2 : 1;
    p.nsteps = (int)(K / 256);
    const int64_t bx = (p.ntl + p.NT - 1) / p.NT, by = (rows + 64 * p.MT - 1) / (64 * p.MT);
    int S = 1;
    while (S < 16 && bx * by * S < 2 * g_mmq_sms && p.nsteps >= 4 * S &&
           (size_t)(2 * S) * (size_t)n * (size_t)rows * sizeof(float) <= PART_MAX)
        S *= 2;
    p.sps = (p.nsteps + S - 1) / S;
    p.S = (p.nsteps + p.sps - 1) / p.sps;
    p.grid = dim3((unsigned)bx, (unsigned)by, (unsigned)p.S);
    return p;
}

/* workspace: codes, scales, partial sums (each 256-byte aligned) */
size_t codes_bytes(int64_t K, int ntl) { return ((size_t)ntl * 8 * (size_t)K + 255) / 256 * 256; }
size_t scales_bytes(int64_t K, int ntl) {
    return ((size_t)(K / 32) * (size_t)ntl * 8 * sizeof(float2) + 255) / 256 * 256;
}

int g_mmq_staged = -1; /* the staged kernel: RUVLLM_CUDA_MMQ_STAGED=1 (read once), or set */

template <class WT, int MT, int NT>
void launch_mmq(cudaStream_t s, const mmq_plan &p, const uint8_t *w, size_t row_bytes,
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
        if (raised) {
            (void)rlcu::launch(mmq_staged_kernel<WT, MT, NT>, p.grid, MMQ_WARPS * 32,
                               (size_t)(2 * L::STAGE), s, w, row_bytes, rows, xq, xs, p.ntl, n, y,
                               p.sps, p.nsteps);
            return;
        }
    }
    (void)rlcu::launch(mmq_kernel<WT, MT, NT>, p.grid, MMQ_WARPS * 32, 0, s, w, row_bytes, rows, xq,
                       xs, p.ntl, n, y, p.sps, p.nsteps);
}


template <class WT>
void launch_type(cudaStream_t s, const mmq_plan &p, const uint8_t *w, size_t row_bytes,
                 int64_t rows, const uint2 *xq, const float4 *xs, int64_t n, float *y) {
    if (p.MT == 2)
        launch_mmq<WT, 2, 8>(s, p, w, row_bytes, rows, xq, xs, n, y);
    else if (p.NT == 2)
        launch_mmq<WT, 1, 2>(s, p, w, row_bytes, rows, xq, xs, n, y);
    else if (p.NT == 4)
        launch_mmq<WT, 1, 4>(s, p, w, row_bytes, rows, xq, xs, n, y);
    else
        launch_mmq<WT, 1, 8>(s, p, w, row_bytes, rows, xq, xs, n, y);
}

} // namespace

int g_mmq_q8k = -1; /* RUVLLM_CUDA_MMQ_Q8K=1: k-quant activations as Q8_K (read once) */

extern "C" int rl__cu_mmq_xmode(int type) {
    if (g_mmq_q8k < 0) {
        const char *v = getenv("RUVLLM_CUDA_MMQ_Q8K");
        g_mmq_q8k = v && v[0] == '1';
    }
    return g_mmq_q8k && (type == RL_TYPE_Q4_K || type == RL_TYPE_Q6_K) ? 1 : 0;
}

extern "C" void rl__cu_mmq_set_staged(int on) {
    if (on < 0) {
        const char *v = getenv("RUVLLM_CUDA_MMQ_STAGED");
        on = v && v[0] == '1';
    }
    g_mmq_staged = on ? 1 : 0;
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
    const mmq_plan p = make_plan(rows, K, n);
    size_t b = codes_bytes(K, p.ntl) + scales_bytes(K, p.ntl);
    if (p.S > 1) b += (size_t)p.S * (size_t)n * (size_t)rows * sizeof(float);
    return b;
}

extern "C" cudaError_t rl__cu_mmq(cudaStream_t s, int type, const void *w, size_t row_bytes,
                                  int64_t rows, int64_t K, const float *x, int64_t n, float *y,
                                  void *ws, bool xq_ready) {
    if (rows <= 0 || n <= 0) return cudaSuccess;
    if (K % 256 || (uintptr_t)x % 16) return cudaErrorInvalidValue;
    const mmq_plan p = make_plan(rows, K, n);
    if (p.grid.y > 65535) return cudaErrorInvalidValue;
    if (g_mmq_staged < 0) rl__cu_mmq_set_staged(-1);
    uint8_t *base = static_cast<uint8_t *>(ws);
    uint32_t *q = reinterpret_cast<uint32_t *>(base);
    float2 *sc = reinterpret_cast<float2 *>(base + codes_bytes(K, p.ntl));
    float *part = reinterpret_cast<float *>(base + codes_bytes(K, p.ntl) + scales_bytes(K, p.ntl));
    if (!xq_ready && rl__cu_mmq_xmode(type) == 1) {
        const int64_t threads = (int64_t)p.ntl * 8 * (K / 256) * 32;
        (void)rlcu::launch(mmq_quant8k_kernel, (unsigned)((threads + 255) / 256), 256, 0, s, x, n,
                           K, p.ntl, q, sc);
    } else if (!xq_ready) {
        const int64_t threads = (int64_t)p.ntl * 8 * (K / 4);
        (void)rlcu::launch(mmq_quant_kernel, (unsigned)((threads + 255) / 256), 256, 0, s, x, n, K,
                           p.ntl, q, sc);
    }
    const uint2 *xq = reinterpret_cast<const uint2 *>(q);
    const float4 *xs = reinterpret_cast<const float4 *>(sc);
    float *dst = p.S > 1 ? part : y;
    const uint8_t *wb = static_cast<const uint8_t *>(w);
    switch (type) {
    case RL_TYPE_Q4_0:
        launch_type<MQ4_0>(s, p, wb, row_bytes, rows, xq, xs, n, dst);
        break;
    case RL_TYPE_Q8_0:
        launch_type<MQ8_0>(s, p, wb, row_bytes, rows, xq, xs, n, dst);
        break;
    case RL_TYPE_Q4_K:
        launch_type<MQ4_K>(s, p, wb, row_bytes, rows, xq, xs, n, dst);
        break;
    case RL_TYPE_Q6_K:
        launch_type<MQ6_K>(s, p, wb, row_bytes, rows, xq, xs, n, dst);
        break;
    default:
        return cudaErrorInvalidValue;
    }
    if (p.S > 1) {
        const int64_t total = n * rows;
        const int64_t b = (total + 255) / 256;
        (void)rlcu::launch(mmq_reduce_kernel, (unsigned)(b < 4096 ? b : 4096), 256, 0, s, part, total,
                           p.S, y);
    }
    return cudaGetLastError();
}
