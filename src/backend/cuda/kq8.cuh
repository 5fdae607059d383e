/*
 * kq8.cuh - the per-lane pieces of the Q4_K and Q6_K decode products (matmul.cu's
 * row-group kernels and matvec.cu's streaming kernel share them): how a lane of the 8 that
 * cover a super-block loads its weights, its activations (float, or the q8 workspace's
 * int8 codes and residual codes) and forms its part of the dot product.
 */
#ifndef RL_BACKEND_CUDA_KQ8_CUH
#define RL_BACKEND_CUDA_KQ8_CUH

#include "qtypes.cuh"

namespace rlcu {

/* ---- decode kernels for the k-quants of Q4_K_M files (Q4_K, Q6_K) ----
 * matmul.cu's generic kernel decodes 8 values per lane from 2-byte loads and reads each
 * activation once per row. These read a super-block (256 values) with 8 lanes, each lane
 * 32 values from 16 or 24 contiguous bytes, and decode nibbles to float with byte
 * permutes (0x4B0000bb is the float 2^23 + bb); a warp keeps R rows in flight and reuses
 * every activation load for all of them. */

/* 16 bytes of weights that are read once: past L1, which keeps the activations. */
__device__ __forceinline__ uint4 ld16_stream(const uint8_t *p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

/* 2^23 + the byte k of v, as float (exact): subtract the offset to get the byte. */
template <int k> __device__ __forceinline__ float bytef(uint32_t v) {
    return __int_as_float((int)__byte_perm(v, 0x4B000000u, 0x7540 + k));
}

/* sum over the 4 bytes b_i of v of (b_i - bias) * a_i, with off = 2^23 + bias */
__device__ __forceinline__ float dot4(uint32_t v, float4 a, float off, float acc) {
    acc = fmaf(bytef<0>(v) - off, a.x, acc);
    acc = fmaf(bytef<1>(v) - off, a.y, acc);
    acc = fmaf(bytef<2>(v) - off, a.z, acc);
    acc = fmaf(bytef<3>(v) - off, a.w, acc);
    return acc;
}

/* Q4_K (ggml-common.h block_q4_K): lane t of 8 takes qs bytes 16t..16t+15: low nibbles
 * are values 64j + 16h + 0..15 (sub-block 2j), high nibbles 32 further (sub-block 2j+1),
 * j = t/2, h = t%2. y = sum d*sc*q*x - dmin*m*x over both sub-blocks. */
/* Q6_K's 6-bit codes (0..63), a byte each: v[k] holds values l + 32k .. l + 32k + 3 of a
 * 128-value half, from its words at ql[l] (a: low nibbles l.., high nibbles l + 64..),
 * ql[32 + l] (b: l + 32.., l + 96..) and qh[l] (hb: two top bits of l, l + 32, l + 64 and
 * l + 96 in that order from the lowest). */
__device__ __forceinline__ void q6k_codes(uint32_t a, uint32_t b, uint32_t hb, uint32_t v[4]) {
    v[0] = (a & 0x0f0f0f0fu) | (hb << 4 & 0x30303030u);
    v[1] = (b & 0x0f0f0f0fu) | (hb << 2 & 0x30303030u);
    v[2] = (a >> 4 & 0x0f0f0f0fu) | (hb & 0x30303030u);
    v[3] = (b >> 4 & 0x0f0f0f0fu) | (hb >> 2 & 0x30303030u);
}

struct GQ4_K {
    static constexpr int BYTES = RL_CU_Q4_K_BYTES;
    static constexpr bool ALIGN16 = true; /* 16-byte loads of qs */
    struct W {
        uint4 q;
        float dl0, ml0, dl1, ml1;
    };
    __device__ static W load(const uint8_t *b, int t) {
        W w;
        const int j = t >> 1;
        const float d = h2f(b), dmin = h2f(b + 2);
        int sc, m;
        k4_scale_min(b + RL_CU_Q4_K_SCALES, 2 * j, &sc, &m);
        w.dl0 = d * (float)sc;
        w.ml0 = dmin * (float)m;
        k4_scale_min(b + RL_CU_Q4_K_SCALES, 2 * j + 1, &sc, &m);
        w.dl1 = d * (float)sc;
        w.ml1 = dmin * (float)m;
        w.q = ld16_stream(b + RL_CU_Q4_K_QS + 16 * t);
        return w;
    }
    /* xv[0..3]: values e0..e0+15, xv[4..7]: e0+32..e0+47; xs: their two sums */
    __device__ static void xload(const float *xb, int t, float4 *xv, float *xs) {
        const float4 *p = reinterpret_cast<const float4 *>(xb + 64 * (t >> 1) + 16 * (t & 1));
#pragma unroll
        for (int i = 0; i < 4; i++) {
            xv[i] = p[i];
            xv[4 + i] = p[8 + i];
        }
        float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            s0 += (xv[i].x + xv[i].y) + (xv[i].z + xv[i].w);
            s1 += (xv[4 + i].x + xv[4 + i].y) + (xv[4 + i].z + xv[4 + i].w);
        }
        xs[0] = s0;
        xs[1] = s1;
    }
    /* int8 activations (q8 path): the lane's 16 + 16 values (codes h, residual codes l),
     * the block's scale and the sums of the values in code units (for the min term) */
    struct X {
        int4 lo_h, hi_h, lo_l, hi_l;
        float d, s0, s1;
    };
    __device__ static X xload8(const int8_t *xh, const int8_t *xl, float d, int t) {
        X x;
        const int e = 64 * (t >> 1) + 16 * (t & 1);
        x.lo_h = *reinterpret_cast<const int4 *>(xh + e);
        x.hi_h = *reinterpret_cast<const int4 *>(xh + e + 32);
        x.lo_l = *reinterpret_cast<const int4 *>(xl + e);
        x.hi_l = *reinterpret_cast<const int4 *>(xl + e + 32);
        x.d = d;
        x.s0 = (float)sum16(x.lo_h) + (float)sum16(x.lo_l) * (1.0f / Q8_LO);
        x.s1 = (float)sum16(x.hi_h) + (float)sum16(x.hi_l) * (1.0f / Q8_LO);
        return x;
    }
    __device__ static int sum16(int4 v) {
        constexpr int one = 0x01010101;
        return __dp4a(v.x, one, __dp4a(v.y, one, __dp4a(v.z, one, __dp4a(v.w, one, 0))));
    }
    /* sum over 16 values of nibble codes (4 words of q, low or high nibbles) times v */
    template <int SH> __device__ static int dot16(const uint4 &q, int4 v) {
        int s = __dp4a((int)(q.x >> SH) & 0x0f0f0f0f, v.x, 0);
        s = __dp4a((int)(q.y >> SH) & 0x0f0f0f0f, v.y, s);
        s = __dp4a((int)(q.z >> SH) & 0x0f0f0f0f, v.z, s);
        return __dp4a((int)(q.w >> SH) & 0x0f0f0f0f, v.w, s);
    }
    __device__ static float dot8(const W &w, const X &x) {
        const float lo = (float)dot16<0>(w.q, x.lo_h) + (float)dot16<0>(w.q, x.lo_l) * (1.0f / Q8_LO);
        const float hi = (float)dot16<4>(w.q, x.hi_h) + (float)dot16<4>(w.q, x.hi_l) * (1.0f / Q8_LO);
        return x.d * ((w.dl0 * lo - w.ml0 * x.s0) + (w.dl1 * hi - w.ml1 * x.s1));
    }
    __device__ static float dot(const W &w, const float4 *xv, const float *xs) {
        constexpr float off = 8388608.0f;
        const uint32_t q[4] = {w.q.x, w.q.y, w.q.z, w.q.w};
        float lo = 0.0f, hi = 0.0f;
#pragma unroll
        for (int i = 0; i < 4; i++) {
            lo = dot4(q[i] & 0x0f0f0f0fu, xv[i], off, lo);
            hi = dot4((q[i] >> 4) & 0x0f0f0f0fu, xv[4 + i], off, hi);
        }
        return (w.dl0 * lo - w.ml0 * xs[0]) + (w.dl1 * hi - w.ml1 * xs[1]);
    }
};

/* Q6_K (block_q6_K): lane t of 8 takes half h = t/4 of the super-block and l = 8(t%4) ..
 * +7 of it: ql bytes 64h + l (low nibbles: values 128h + l, high: + 64) and 64h + 32 + l
 * (values + 32, + 96), qh bytes 32h + l (two bits for each of the four). */
struct GQ6_K {
    static constexpr int BYTES = RL_CU_Q6_K_BYTES;
    static constexpr bool ALIGN16 = false; /* 210-byte blocks: 2-byte loads */
    struct W {
        uint2 qa, qb, qh;
        float s[4]; /* d * scale of each group of 8 */
    };
    __device__ static W load(const uint8_t *b, int t) {
        W w;
        const int h = t >> 2, l = 8 * (t & 3);
        w.qa = ld8_b2(b + 64 * h + l);
        w.qb = ld8_b2(b + 64 * h + 32 + l);
        w.qh = ld8_b2(b + RL_CU_Q6_K_QH + 32 * h + l);
        const float d = h2f(b + RL_CU_Q6_K_D);
        const int8_t *sc = reinterpret_cast<const int8_t *>(b + RL_CU_Q6_K_SCALES) + 8 * h + (l >> 4);
#pragma unroll
        for (int k = 0; k < 4; k++) w.s[k] = d * (float)sc[2 * k];
        return w;
    }
    /* xv[2k], xv[2k+1]: values 128h + 32k + l .. +7 */
    __device__ static void xload(const float *xb, int t, float4 *xv, float *xs) {
        const float *p = xb + 128 * (t >> 2) + 8 * (t & 3);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            xv[2 * k] = reinterpret_cast<const float4 *>(p + 32 * k)[0];
            xv[2 * k + 1] = reinterpret_cast<const float4 *>(p + 32 * k)[1];
        }
        xs[0] = xs[1] = 0.0f;
    }
    /* int8 activations: values 128h + 32k + l .. +7 (codes h, residual codes l) and the
     * block's scale */
    struct X {
        uint2 vh[4], vl[4];
        float d;
    };
    __device__ static X xload8(const int8_t *xh, const int8_t *xl, float d, int t) {
        X x;
        const int o = 128 * (t >> 2) + 8 * (t & 3);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            x.vh[k] = *reinterpret_cast<const uint2 *>(xh + o + 32 * k);
            x.vl[k] = *reinterpret_cast<const uint2 *>(xl + o + 32 * k);
        }
        x.d = d;
        return x;
    }
    /* codes q - 32 as signed bytes (__vsub4: per-byte, no carries), then dp4a */
    __device__ static float dot8(const W &w, const X &x) {
        const uint32_t a[2] = {w.qa.x, w.qa.y}, b[2] = {w.qb.x, w.qb.y}, hb[2] = {w.qh.x, w.qh.y};
        int gh[4] = {0, 0, 0, 0}, gl[4] = {0, 0, 0, 0};
#pragma unroll
        for (int i = 0; i < 2; i++) {
            uint32_t v[4];
            q6k_codes(a[i], b[i], hb[i], v);
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const int c = (int)__vsub4(v[k], 0x20202020u);
                gh[k] = __dp4a(c, (int)(i ? x.vh[k].y : x.vh[k].x), gh[k]);
                gl[k] = __dp4a(c, (int)(i ? x.vl[k].y : x.vl[k].x), gl[k]);
            }
        }
        float g[4];
#pragma unroll
        for (int k = 0; k < 4; k++) g[k] = (float)gh[k] + (float)gl[k] * (1.0f / Q8_LO);
        return x.d * ((w.s[0] * g[0] + w.s[1] * g[1]) + (w.s[2] * g[2] + w.s[3] * g[3]));
    }
    __device__ static float dot(const W &w, const float4 *xv, const float *xs) {
        constexpr float off = 8388608.0f + 32.0f;
        const uint32_t a[2] = {w.qa.x, w.qa.y}, b[2] = {w.qb.x, w.qb.y}, hb[2] = {w.qh.x, w.qh.y};
        float g[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const uint32_t v0 = (a[i] & 0x0f0f0f0fu) | (hb[i] << 4 & 0x30303030u);
            const uint32_t v1 = (b[i] & 0x0f0f0f0fu) | (hb[i] << 2 & 0x30303030u);
            const uint32_t v2 = (a[i] >> 4 & 0x0f0f0f0fu) | (hb[i] & 0x30303030u);
            const uint32_t v3 = (b[i] >> 4 & 0x0f0f0f0fu) | (hb[i] >> 2 & 0x30303030u);
            g[0] = dot4(v0, xv[0 + i], off, g[0]);
            g[1] = dot4(v1, xv[2 + i], off, g[1]);
            g[2] = dot4(v2, xv[4 + i], off, g[2]);
            g[3] = dot4(v3, xv[6 + i], off, g[3]);
        }
        return (w.s[0] * g[0] + w.s[1] * g[1]) + (w.s[2] * g[2] + w.s[3] * g[3]);
    }
};

} // namespace rlcu

#endif /* RL_BACKEND_CUDA_KQ8_CUH */
