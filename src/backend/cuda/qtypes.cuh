/*
 * qtypes.cuh - device decoders of the weight types: for each type a traits struct whose
 * chunk(row, c, out) writes the NV values c*NV .. c*NV+NV-1 of a row as float (NV = 8 for
 * every vector path; 1 for the scalar paths of float rows that are not 8-aligned).
 *
 * The arithmetic of each decoder is the CPU's dequantization (src/quant/quant_*.c) in the
 * same order, so that in a file built with --fmad=false (ops_nofma.cu: get_rows) the
 * values are bit-identical to rl_dequantize; matmul.cu lets the compiler fuse them into
 * the dot products. The formats are ggml's (ggml-common.h): legacy blocks of 32 values
 * (Q4_0 .. Q8_0, IQ4_NL) and the k-quant super-blocks of 256 (Q2_K .. Q6_K, IQ4_XS).
 */
#ifndef RL_BACKEND_CUDA_QTYPES_CUH
#define RL_BACKEND_CUDA_QTYPES_CUH

#include "cuda_impl.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

/* The IQ4_NL / IQ4_XS grid. Without relocatable device code every file that decodes has
 * its own copy; rl__cu_init fills each through its file's setter. */
static __constant__ int8_t rl_cu_iq4_values[16];
static inline cudaError_t rl_cu_set_iq4(const int8_t *v) {
    return cudaMemcpyToSymbol(rl_cu_iq4_values, v, 16);
}

namespace rlcu {

__device__ __forceinline__ float h2f(const uint8_t *p) {
    return __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short *>(p)));
}

/* Block fields sit at even offsets of blocks of even size, so the decoders read them in
 * 16-bit units (half the load instructions of bytes; block rows are not 4-aligned). */
__device__ __forceinline__ uint32_t ld_u32_b2(const uint8_t *p) {
    const unsigned short *q = reinterpret_cast<const unsigned short *>(p);
    return (uint32_t)q[0] | (uint32_t)q[1] << 16;
}

/* 8 bytes at an even address, as two little-endian words. */
__device__ __forceinline__ uint2 ld8_b2(const uint8_t *p) {
    const unsigned short *q = reinterpret_cast<const unsigned short *>(p);
    return make_uint2((uint32_t)q[0] | (uint32_t)q[1] << 16, (uint32_t)q[2] | (uint32_t)q[3] << 16);
}

/* Byte i (0..7, a constant after unrolling) of an ld8_b2 result. */
__device__ __forceinline__ int byte8(uint2 v, int i) {
    return (int)(((i < 4 ? v.x : v.y) >> (8 * (i & 3))) & 0xffu);
}

/* ---- int8 activations (the q8 path of the decode products) ----
 * One warp quantizes one block of 256 values, 8 consecutive ones per lane (v), in two
 * int8 parts. The first is what the CPU's rl__quant_q8_K (ggml's block_q8_K) makes:
 * iscale = -127 / the value of largest magnitude (the first on ties), codes qh = min(127,
 * round-to-nearest-even(iscale * v)), d = 1 / iscale; the second codes what that leaves,
 * ql = round(254 * (iscale * v - qh)) (|ql| <= 127), so v = d * (qh + ql / 254) to about
 * 1/500 of a code step: the products see activations nearly as exact as float ones (the
 * model goldens were set for those), at two dp4a per 4 values. An all-zero block gets
 * d = 0 and zero codes. qh, ql: this lane's 8 bytes of each; lane 0 writes *d. All 32
 * lanes must take part. */
constexpr float Q8_LO = 254.0f;

/* The signed value of largest magnitude among the warp's 256 values (lane l holding v[0..7]
 * = values 8l..8l+7), the first of them on ties (rl__quant_q8_K's rule): the lane's own by
 * a scan, the warp's largest magnitude by one redux.sync over the magnitudes' bits
 * (non-negative floats, never NaN here, order as their bits do), the lowest lane holding it
 * by a ballot and its signed value by one shuffle. 0 when all are 0. All lanes get it. */
__device__ __forceinline__ float q8k_vmax(const float v[8]) {
    float amax = 0.0f, vmax = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; j++)
        if (fabsf(v[j]) > amax) {
            amax = fabsf(v[j]);
            vmax = v[j];
        }
    const unsigned mb = __reduce_max_sync(0xffffffffu, __float_as_uint(amax));
    const int src = __ffs(__ballot_sync(0xffffffffu, __float_as_uint(amax) == mb)) - 1;
    return __shfl_sync(0xffffffffu, vmax, src);
}

__device__ __forceinline__ void q8k_warp(const float v[8], uint2 *qh, uint2 *ql, float *d) {
    const int lane = (int)(threadIdx.x & 31);
    const float vmax = q8k_vmax(v);
    uint32_t h[2] = {0, 0}, l[2] = {0, 0};
    float dd = 0.0f;
    if (vmax != 0.0f) {
        const float iscale = __fdiv_rn(-127.0f, vmax);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const float f = __fmul_rn(iscale, v[j]);
            const int c = min(127, __float2int_rn(f));
            const int r = max(-127, min(127, __float2int_rn(__fmul_rn(__fsub_rn(f, (float)c), Q8_LO))));
            h[j >> 2] |= (uint32_t)(c & 0xff) << (8 * (j & 3));
            l[j >> 2] |= (uint32_t)(r & 0xff) << (8 * (j & 3));
        }
        dd = __fdiv_rn(1.0f, iscale);
    }
    *qh = make_uint2(h[0], h[1]);
    *ql = make_uint2(l[0], l[1]);
    if (lane == 0) *d = dd;
}

/* The CPU's Q8_0 activations (rl__quant_q8_0, ggml's block_q8_0) of the lane's 8 values v
 * (values 8m..8m+7 of a block of 32, m = lane % 4: aligned groups of 4 lanes per block; the
 * whole warp calls it): d = amax / 127, codes round-half-away(v * (1 / d)) (0 where d is 0),
 * and the scale the CPU multiplies with, d stored as fp16 and read back (*d). So a product
 * over them has the CPU's integer sums and scales; only the order of its float sums differs. */
__device__ __forceinline__ uint2 q8_0_codes(const float v[8], float *d) {
    float amax = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; j++) amax = fmaxf(amax, fabsf(v[j]));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
    const float dd = __fdiv_rn(amax, 127.0f), id = dd != 0.0f ? __fdiv_rn(1.0f, dd) : 0.0f;
    uint32_t h[2] = {0, 0};
#pragma unroll
    for (int j = 0; j < 8; j++)
        h[j >> 2] |= (uint32_t)((int)roundf(__fmul_rn(v[j], id)) & 0xff) << (8 * (j & 3));
    *d = __half2float(__float2half_rn(dd));
    return make_uint2(h[0], h[1]);
}

/* One block of 256 values of the q8 workspace (cuda_impl.h) of n rows of K values (nk = n K)
 * in layout xl (RL_CU_XQ_Q8 or RL_CU_XQ_Q8_32): lane l holds v, values el .. el + 7 of the
 * workspace's n K (el = the block's first value + 8 l). All 32 lanes take part. */
__device__ __forceinline__ void q8ws_warp(int xl, const float v[8], int8_t *xq, int64_t nk,
                                          int64_t el) {
    if (xl == RL_CU_XQ_Q8_32) {
        float d;
        *reinterpret_cast<uint2 *>(xq + el) = q8_0_codes(v, &d);
        if ((threadIdx.x & 3) == 0) reinterpret_cast<float *>(xq + nk)[el >> 5] = d;
    } else {
        q8k_warp(v, reinterpret_cast<uint2 *>(xq + el), reinterpret_cast<uint2 *>(xq + nk + el),
                 reinterpret_cast<float *>(xq + 2 * nk) + (el >> 8));
    }
}

/* The gated activation of one value as the CPU writes it: SiLU x / (1 + e^-x) times up
 * (act 0), GELU 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) times up (act 1), each
 * operation rounded on its own (explicit intrinsics: the same bits in a file compiled with
 * contraction, matvec.cu, as in ops_nofma.cu, compiled without). */
__device__ __forceinline__ float glu_value(int act, float x, float up) {
    if (act == 0) return __fmul_rn(__fdiv_rn(x, __fadd_rn(1.0f, expf(-x))), up);
    const float k0 = 0.7978845608028654f, k1 = 0.044715f;
    const float in = __fmul_rn(__fmul_rn(k0, x), __fadd_rn(1.0f, __fmul_rn(__fmul_rn(k1, x), x)));
    return __fmul_rn(__fmul_rn(__fmul_rn(0.5f, x), __fadd_rn(1.0f, tanhf(in))), up);
}

/* ---- float rows ---- */
struct TF32 {
    static constexpr int NV = 8;
    __device__ static void chunk(const uint8_t *row, int64_t c, float *o) {
        const float4 *p = reinterpret_cast<const float4 *>(row) + 2 * c;
        float4 a = p[0], b = p[1];
        o[0] = a.x;
        o[1] = a.y;
        o[2] = a.z;
        o[3] = a.w;
        o[4] = b.x;
        o[5] = b.y;
        o[6] = b.z;
        o[7] = b.w;
    }
};
struct TF32S {
    static constexpr int NV = 1;
    __device__ static void chunk(const uint8_t *row, int64_t c, float *o) {
        o[0] = reinterpret_cast<const float *>(row)[c];
    }
};
struct TF16 {
    static constexpr int NV = 8;
    __device__ static void chunk(const uint8_t *row, int64_t c, float *o) {
        uint4 u = reinterpret_cast<const uint4 *>(row)[c];
        const __half2 *h = reinterpret_cast<const __half2 *>(&u);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float2 f = __half22float2(h[i]);
            o[2 * i] = f.x;
            o[2 * i + 1] = f.y;
        }
    }
};
struct TF16S {
    static constexpr int NV = 1;
    __device__ static void chunk(const uint8_t *row, int64_t c, float *o) {
        o[0] = h2f(row + 2 * c);
    }
};
struct TBF16 {
    static constexpr int NV = 8;
    __device__ static void chunk(const uint8_t *row, int64_t c, float *o) {
        uint4 u = reinterpret_cast<const uint4 *>(row)[c];
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            o[2 * i] = __uint_as_float(w[i] << 16);
            o[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
        }
    }
};
struct TBF16S {
    static constexpr int NV = 1;
    __device__ static void chunk(const uint8_t *row, int64_t c, float *o) {
        const unsigned short b = reinterpret_cast<const unsigned short *>(row)[c];
        o[0] = __uint_as_float((uint32_t)b << 16);
    }
};

/* ---- legacy blocks of 32: chunk g (0..3) of a block. Element j < 16 sits in the low
 * nibble of qs[j], element j >= 16 in the high nibble of qs[j - 16]. ---- */
struct TQ4_0 {
    static constexpr int NV = 8;
    __device__ static void chunk(const uint8_t *row, int64_t c, float *o) {
        const uint8_t *b = row + (c >> 2) * RL_CU_Q4_0_BYTES;
        const int g = (int)(c & 3);
        const float d = h2f(b);
        const uint2 q = ld8_b2(b + RL_CU_Q4_0_QS + (g & 1) * 8);
        const int sh = (g >> 1) * 4;
#pragma unroll
        for (int i = 0; i < 8; i++) o[i] = (float)(((byte8(q, i) >> sh) & 0xf) - 8) * d;
    }
};
struct TQ4_1 {
    static constexpr int NV = 8;
    __device__ static void chunk(const uint8_t *row, int64_t c, float *o) {
        const uint8_t *b = row + (c >> 2) * RL_CU_Q4_1_BYTES;
        const int g = (int)(c & 3);
        const float d = h2f(b), m = h2f(b + 2);
        const uint2 q = ld8_b2(b + RL_CU_Q4_1_QS + (g & 1) * 8);
        const int sh = (g >> 1) * 4;
#pragma unroll
        for (int i = 0; i < 8; i++) o[i] = (float)((byte8(q, i) >> sh) & 0xf) * d + m;
    }
};
struct TQ5_0 {
    static constexpr int NV = 8;
    __device__ static void chunk(const uint8_t *row, int64_t c, float *o) {
        const uint8_t *b = row + (c >> 2) * RL_CU_Q5_0_BYTES;
        const int g = (int)(c & 3);
        const float d = h2f(b);
        const uint32_t qh = ld_u32_b2(b + RL_CU_Q5_0_QH);
        const uint2 q = ld8_b2(b + RL_CU_Q5_0_QS + (g & 1) * 8);
        const int sh = (g >> 1) * 4;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int e = 8 * g + i;
            const int v = ((byte8(q, i) >> sh) & 0xf) | (int)((qh >> e) & 1) << 4;
            o[i] = (float)(v - 16) * d;
        }
    }
};
struct TQ5_1 {
    static constexpr int NV = 8;
    __device__ static void chunk(const uint8_t *row, int64_t c, float *o) {
        const uint8_t *b = row + (c >> 2) * RL_CU_Q5_1_BYTES;
        const int g = (int)(c & 3);
        const float d = h2f(b), m = h2f(b + 2);
        const uint32_t qh = ld_u32_b2(b + RL_CU_Q5_1_QH);
        const uint2 q = ld8_b2(b + RL_CU_Q5_1_QS + (g & 1) * 8);
        const int sh = (g >> 1) * 4;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int e = 8 * g + i;
            const int v = ((byte8(q, i) >> sh) & 0xf) | (int)((qh >> e) & 1) << 4;
            o[i] = (float)v * d + m;
        }
    }
};
struct TQ8_0 {
    static constexpr int NV = 8;
    __device__ static void chunk(const uint8_t *row, int64_t c, float *o) {
        const uint8_t *b = row + (c >> 2) * RL_CU_Q8_0_BYTES;
        const float d = h2f(b);
        const uint2 q = ld8_b2(b + RL_CU_Q8_0_QS + (c & 3) * 8);
#pragma unroll
        for (int i = 0; i < 8; i++) o[i] = (float)(int8_t)byte8(q, i) * d;
    }
};
struct TIQ4_NL {
    static constexpr int NV = 8;
    __device__ static void chunk(const uint8_t *row, int64_t c, float *o) {
        const uint8_t *b = row + (c >> 2) * RL_CU_IQ4_NL_BYTES;
        const int g = (int)(c & 3);
        const float d = h2f(b);
        const uint2 q = ld8_b2(b + 2 + (g & 1) * 8);
        const int sh = (g >> 1) * 4;
#pragma unroll
        for (int i = 0; i < 8; i++) o[i] = d * (float)rl_cu_iq4_values[(byte8(q, i) >> sh) & 0xf];
    }
};

/* ---- k-quants: super-blocks of 256, chunk g (0..31) holds elements 8g .. 8g+7 ---- */

/* The 2-bit fields of elements e0 .. e0+7 (e0 a multiple of 8) in the Q2_K / Q3_K packing:
 * element e sits in byte (e/128)*32 + e%32 at bits 2*((e%128)/32), so the 8 come from 8
 * consecutive bytes at one shift. */
__device__ __forceinline__ uint2 k_2bit_bytes(const uint8_t *qs, int e0) {
    return ld8_b2(qs + (e0 >> 7) * 32 + (e0 & 31));
}
__device__ __forceinline__ int k_2bit_shift(int e0) { return 2 * ((e0 & 127) >> 5); }

struct TQ2_K {
    static constexpr int NV = 8;
    __device__ static void chunk(const uint8_t *row, int64_t c, float *o) {
        const uint8_t *b = row + (c >> 5) * RL_CU_Q2_K_BYTES;
        const int e0 = (int)(c & 31) * 8;
        const float d = h2f(b + RL_CU_Q2_K_D), dmin = h2f(b + RL_CU_Q2_K_D + 2);
        const uint8_t sc = b[e0 >> 4];
        const float dl = d * (float)(sc & 0xf), ml = dmin * (float)(sc >> 4);
        const uint2 q = k_2bit_bytes(b + RL_CU_Q2_K_QS, e0);
        const int sh = k_2bit_shift(e0);
#pragma unroll
        for (int i = 0; i < 8; i++) o[i] = dl * (float)((byte8(q, i) >> sh) & 3) - ml;
    }
};
struct TQ3_K {
    static constexpr int NV = 8;
    __device__ static void chunk(const uint8_t *row, int64_t c, float *o) {
        const uint8_t *b = row + (c >> 5) * RL_CU_Q3_K_BYTES;
        const int e0 = (int)(c & 31) * 8;
        const float d = h2f(b + RL_CU_Q3_K_D);
        /* 16 six-bit scales: low 4 bits in nibbles of bytes 0..7, top 2 in bytes 8..11 */
        const uint8_t *sc = b + RL_CU_Q3_K_SCALES;
        const int j = e0 >> 4;
        const int lo = j < 8 ? sc[j] & 0xf : sc[j - 8] >> 4;
        const int s = (lo | ((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
        const float dl = d * (float)s;
        const uint2 q = k_2bit_bytes(b + RL_CU_Q3_K_QS, e0);
        const int sh = k_2bit_shift(e0);
        const uint2 hm = ld8_b2(b + (e0 & 31)); /* hmask: element e at byte e%32, bit e/32 */
        const int hsh = e0 >> 5;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int hi = (byte8(hm, i) >> hsh) & 1;
            o[i] = dl * (float)(((byte8(q, i) >> sh) & 3) - (hi ? 0 : 4));
        }
    }
};

/* 6-bit scale and min of sub-block j (0..7) of Q4_K / Q5_K. */
__device__ __forceinline__ void k4_scale_min(const uint8_t *q, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xf) | (q[j - 4] >> 6) << 4;
        *m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

struct TQ4_K {
    static constexpr int NV = 8;
    __device__ static void chunk(const uint8_t *row, int64_t c, float *o) {
        const uint8_t *b = row + (c >> 5) * RL_CU_Q4_K_BYTES;
        const int e0 = (int)(c & 31) * 8, s = e0 >> 5, l0 = e0 & 31;
        const float d = h2f(b), dmin = h2f(b + 2);
        int sc, m;
        k4_scale_min(b + RL_CU_Q4_K_SCALES, s, &sc, &m);
        const float dl = d * (float)sc, ml = dmin * (float)m;
        /* 64 values per 32 bytes: even sub-block in the low nibbles, odd in the high */
        const uint2 q = ld8_b2(b + RL_CU_Q4_K_QS + 32 * (s >> 1) + l0);
        const int sh = 4 * (s & 1);
#pragma unroll
        for (int i = 0; i < 8; i++) o[i] = dl * (float)((byte8(q, i) >> sh) & 0xf) - ml;
    }
};
struct TQ5_K {
    static constexpr int NV = 8;
    __device__ static void chunk(const uint8_t *row, int64_t c, float *o) {
        const uint8_t *b = row + (c >> 5) * RL_CU_Q5_K_BYTES;
        const int e0 = (int)(c & 31) * 8, s = e0 >> 5, l0 = e0 & 31;
        const float d = h2f(b), dmin = h2f(b + 2);
        int sc, m;
        k4_scale_min(b + RL_CU_Q4_K_SCALES, s, &sc, &m);
        const float dl = d * (float)sc, ml = dmin * (float)m;
        const uint2 q = ld8_b2(b + RL_CU_Q5_K_QS + 32 * (s >> 1) + l0);
        const uint2 qh = ld8_b2(b + RL_CU_Q5_K_QH + l0);
        const int sh = 4 * (s & 1);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int v = ((byte8(q, i) >> sh) & 0xf) + (((byte8(qh, i) >> s) & 1) ? 16 : 0);
            o[i] = dl * (float)v - ml;
        }
    }
};
struct TQ6_K {
    static constexpr int NV = 8;
    __device__ static void chunk(const uint8_t *row, int64_t c, float *o) {
        const uint8_t *b = row + (c >> 5) * RL_CU_Q6_K_BYTES;
        const int e0 = (int)(c & 31) * 8;
        const float d = h2f(b + RL_CU_Q6_K_D);
        const int8_t scl = reinterpret_cast<const int8_t *>(b + RL_CU_Q6_K_SCALES)[e0 >> 4];
        /* within each half of 128: ql byte l holds elements l (low nibble) and l+64 (high),
         * byte l+32 holds l+32 and l+96; qh byte l the top two bits of l, l+32, l+64, l+96 */
        const int h = e0 >> 7, r = e0 & 127, quarter = r >> 5, l0 = r & 31;
        const uint2 ql = ld8_b2(b + 64 * h + l0 + 32 * (quarter & 1));
        const uint2 qh = ld8_b2(b + RL_CU_Q6_K_QH + 32 * h + l0);
        const int shl = quarter < 2 ? 0 : 4, shh = 2 * quarter;
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int v = ((byte8(ql, i) >> shl) & 0xf) | ((byte8(qh, i) >> shh) & 3) << 4;
            o[i] = d * (float)scl * (float)(v - 32);
        }
    }
};
struct TIQ4_XS {
    static constexpr int NV = 8;
    __device__ static void chunk(const uint8_t *row, int64_t c, float *o) {
        const uint8_t *b = row + (c >> 5) * RL_CU_IQ4_XS_BYTES;
        const int e0 = (int)(c & 31) * 8, ib = e0 >> 5, j0 = e0 & 31;
        const float d = h2f(b);
        const int sh_ = *reinterpret_cast<const unsigned short *>(b + RL_CU_IQ4_XS_SCALES_H);
        const int ls = ((b[RL_CU_IQ4_XS_SCALES_L + ib / 2] >> 4 * (ib % 2)) & 0xf) |
                       (((sh_ >> 2 * ib) & 3) << 4);
        const float dl = d * (float)(ls - 32);
        const uint2 q = ld8_b2(b + RL_CU_IQ4_XS_QS + 16 * ib + (j0 & 15));
        const int sh = j0 >= 16 ? 4 : 0;
#pragma unroll
        for (int i = 0; i < 8; i++) o[i] = dl * (float)rl_cu_iq4_values[(byte8(q, i) >> sh) & 0xf];
    }
};

} // namespace rlcu

/* X(type id, traits): every decoded type; float types also have a scalar traits (S). */
#define RL_CU_BLOCK_TYPES(X)                                                                       \
    X(RL_TYPE_Q4_0, TQ4_0)                                                                         \
    X(RL_TYPE_Q4_1, TQ4_1) X(RL_TYPE_Q5_0, TQ5_0) X(RL_TYPE_Q5_1, TQ5_1) X(RL_TYPE_Q8_0, TQ8_0)    \
        X(RL_TYPE_Q2_K, TQ2_K) X(RL_TYPE_Q3_K, TQ3_K) X(RL_TYPE_Q4_K, TQ4_K)                       \
            X(RL_TYPE_Q5_K, TQ5_K) X(RL_TYPE_Q6_K, TQ6_K) X(RL_TYPE_IQ4_NL, TIQ4_NL)               \
                X(RL_TYPE_IQ4_XS, TIQ4_XS)
#define RL_CU_FLOAT_TYPES(X) X(RL_TYPE_F32, TF32) X(RL_TYPE_F16, TF16) X(RL_TYPE_BF16, TBF16)

#endif /* RL_BACKEND_CUDA_QTYPES_CUH */
