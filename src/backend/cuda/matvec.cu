/*
 * matvec.cu - decode products of one token, y[rows] = W x, streaming the weights at close to
 * the device's memory bandwidth (Q4_K, Q6_K, Q8_0, Q4_0 and F16 rows).
 *
 * Why a kernel of its own: the blocks of these types are 144, 210, 34 or 18 bytes, so a
 * lane that reads its fields straight from global memory issues many narrow loads at
 * scattered addresses (2-byte pieces of a 210-byte block), and the L1's request rate, not
 * DRAM, bounds the product (matmul.cu's row-group kernels reached about 1.2 TB/s of an
 * H200's 4.2). Here each warp copies whole chunks of a row -- a whole number of blocks
 * whose size is a multiple of 16 bytes: 4 Q4_K super-blocks, 8 Q6_K ones, 32 Q8_0 or Q4_0
 * blocks, 1024 F16 values -- into its own ring of shared-memory stages with 16-byte
 * cp.async copies (cp.async.cg: coalesced, past L1 and the registers), MV_STAGES - 1
 * chunks ahead of the one it decodes, and decodes from shared memory, where narrow and
 * unaligned reads are cheap (PTX ISA, "cp.async"; CUDA C++ Programming Guide,
 * "Asynchronous Data Copies"). A warp owns whole rows, so there is no reduction across
 * warps; the rows are divided evenly over one wave of warps (as many as the device keeps
 * resident), so every weight byte is read once and no warp waits for a second wave.
 *
 * Activations: Q4_K, Q6_K, Q8_0 and Q4_0 read the q8 workspace (cuda_impl.h) with dp4a:
 * Q4_K and Q6_K int8 codes of 256-value blocks (plus residual codes, read or not: MV_Q8K
 * below), Q8_0 and Q4_0 a code a value and a scale per 32; F16 reads float activations.
 * Everything a chunk's lanes read of x comes through L1 (x is small and every warp reads it).
 */
#include "kq8.cuh"
#include "launch.cuh"
#include "mbar.cuh"
#include "qtypes.cuh"
#include "step.h"

#include <cstdlib>

using namespace rlcu;

namespace {

constexpr int MV_WARPS = 4;  /* warps per block */
constexpr int MV_PAD = 16;   /* bytes after each stage of a warp's ring: the word reads of the
                                last block (lds_words) touch a word past the chunk, which
                                must not be the next stage while its copy is in flight */

__device__ __forceinline__ void cp16(uint32_t dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}
/* The same with an L2 cache policy (createpolicy): the streaming kernel reads each weight
 * once, so its lines are marked evict-first, and the activations, outputs, KV cache rows
 * stay in L2 (PTX ISA, "createpolicy"; RUVLLM_CUDA_MV_EF=0:
 * evict-normal). H100, 2026-11-26, 1B synth models, tg128 without logits, same binary:
 * Q4_K_M 1,111-1,129 -> 1,164 tok/s, Q8_0 987 -> 1,036, F16 835 -> 861; alone (bench_cuda
 * --kernels) the small products gain most: Q4_K 1024x4096 2.83 -> 2.55 us, 2048x2048
 * 2.84 -> 2.58 us (2 rows per item), the large ones 0-3%. */
__constant__ int c_mv_ef = 1;
/* GLU mode counts a warp's gated values once, after its last item (1), instead of after
 * every group of rows (0: a fence and an atomic round trip in the middle of the weight
 * stream, 2 to 4 times a warp at the 8B shapes). Same values, same quantization: the same
 * bits. H100, 2026-11-26, RMSNorm + gate/up + SwiGLU + down through the backend's queue
 * (test_cuda_decode_ffn RUVLLM_DECODE_FFN_BENCH=1, us a layer, 0 -> 1, two runs each): 8B
 * Q4_K/Q6_K 54.2, 55.2 -> 50.7, 50.7; 8B Q8_0 76.1, 77.1 -> 78.7, 78.0; 1B Q4_K/Q6_K 23.5,
 * 24.1 -> 22.7, 23.4; F16 (no counting) unchanged. Whole models (bench_cuda --pp 512 --tg 128, tg0 tok/s,
 * same binary, one call): 8B Q4_K_M 371.2, 373.7 -> 389.6 (tg 347.3, 350.5 -> 364.2); 8B
 * Q8_0 265.6 -> 265.2; 1B Q4_K_M 1,312 / 1,315 -> 1,306 and, in another call, 1,317 ->
 * 1,322 (noise). RUVLLM_CUDA_MV_GLUEND=0 gives the per-group counting back. */
__constant__ int c_mv_glu_end = 1;
__device__ __forceinline__ uint64_t mv_policy() {
    uint64_t p;
    if (c_mv_ef)
        asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;" : "=l"(p));
    else
        asm volatile("createpolicy.fractional.L2::evict_normal.b64 %0, 1.0;" : "=l"(p));
    return p;
}
__device__ __forceinline__ void cp16h(uint32_t dst, const void *src, uint64_t pol) {
    asm volatile("cp.async.cg.shared.global.L2::cache_hint [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
                 "l"(pol)
                 : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void cp_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* RUVLLM_CUDA_MV_BULK=a,b,c,d,e (per type as RUVLLM_CUDA_MV_R; bit TI of c_mv_bulk; default
 * 1,1,1,0,1: all but Q4_0): each row piece of an item is one bulk copy (cp.async.bulk, the copy
 * engine), issued by lane 0, and each stage of a warp's ring completes on an mbarrier of its
 * own (PTX ISA, "cp.async.bulk", "mbarrier"), instead of R x CB / 16 16-byte cp.async pieces
 * spread over the lanes: no copy instructions in the load/store unit (Nsight Compute, 8B
 * Q8_0: the warps' MIO-throttle stalls 3.0 -> 0.0 per issue). H100, 2026-11-26, bench_cuda
 * --pp 512 --tg 128, tg0 tok/s, same binary, two calls: 8B Q8_0 266.5, 266.9 -> 275.4 and
 * 265.9, 267.7 -> 273.9 (all types on); the down product 2-4 us a layer faster, the 128k-row
 * head 208 -> 204 us, gate/up unchanged. 1B Q4_K_M 1,342, 1,316 -> 1,320 and 1,334, 1,382
 * -> 1,332 (noise); 8B Q4_K_M and F16 layer parts (test_cuda_decode_ffn timing) within 1%:
 * so only Q8_0 by default then. Later, with activations an item ahead (below) for Q4_K and
 * Q6_K too (one call, alternated, three times): 8B Q4_K_M tg0 395.7, 394.0, 391.0 -> 401.8,
 * 399.3, 400.1 (bulk and XPF for every type against the defaults then): so Q4_K, Q6_K and
 * Q8_0 by default (1,1,1,0,0). F16 too since (2026-11-27, one call, alternated twice: 8B F16
 * tg0 175.1, 176.2 -> 177.7, 177.5; in an earlier call +0.7% and -0.4%): 1,1,1,0,1. A cap on
 * the blocks a multiprocessor takes (room beside them for the next kernel's) made every
 * type slower (8B F16 at one block 166 vs 176, Q8_0 at two 269 vs 285, 1B Q4_K_M at one
 * 1,238 vs 1,387): these products want every warp that fits. */
__constant__ int c_mv_bulk = 0;
constexpr int MV_BARS = 8;                                        /* stages at most */
constexpr size_t MV_BAR_BYTES = (size_t)MV_WARPS * MV_BARS * 8; /* after the rings */

__device__ __forceinline__ uint32_t lds32(const uint8_t *s, int o) {
    return *reinterpret_cast<const uint32_t *>(s + o);
}
__device__ __forceinline__ float lds_h(const uint8_t *s, int o) {
    return __half2float(__ushort_as_half(*reinterpret_cast<const unsigned short *>(s + o)));
}

/* N little-endian words of shared memory from byte offset o (o even, maybe not 4-aligned):
 * the aligned words around them, joined by funnel shifts. */
template <int N> __device__ __forceinline__ void lds_words(const uint8_t *s, int o, uint32_t *out) {
    const int a = o & ~3, sh = (o & 2) * 8;
    uint32_t w[N + 1];
#pragma unroll
    for (int i = 0; i <= N; i++) w[i] = lds32(s, a + 4 * i);
#pragma unroll
    for (int i = 0; i < N; i++) out[i] = __funnelshift_r(w[i], w[i + 1], sh);
}

/* The q8 workspace of one token (cuda_impl.h): codes, residual codes and a scale per 256
 * (RL_CU_XQ_Q8); or codes and a scale per 32 (RL_CU_XQ_Q8_32: l unused). */
struct XQ {
    const int8_t *h, *l;
    const float *d;
};
/* The workspace xq of K values in the layout a product of `type` reads. */
XQ xq_of(int type, const void *xq, int64_t K) {
    const int8_t *q = static_cast<const int8_t *>(xq);
    if (rl__cu_q8_layout(type) == RL_CU_XQ_Q8_32)
        return {q, nullptr, reinterpret_cast<const float *>(q + K)};
    return {q, q + K, reinterpret_cast<const float *>(q + 2 * K)};
}

/* Each type: TI, the index of its type (mv_index: per-type switches); VPC values (CB bytes,
 * a multiple of 16) per chunk of a row; X, this lane's
 * activations for a chunk whose first value is e0 (xload: read once, used for the R rows
 * of an item); dot(st, lane, xv): this lane's part of one row's chunk at st. */

/* Q4_K: 4 super-blocks; lane = 8 s + t takes super-block s as kq8.cuh's lane t, reading
 * the header (d, dmin, 12 bytes of 6-bit scales and mins) and its 16 bytes of nibbles in
 * two 16-byte reads. Scales of sub-blocks 0..3: low 6 bits of bytes 0..3 (mins: 4..7);
 * of 4..7: low nibbles of bytes 8..11 and the top 2 bits of bytes 0..3 (mins: high
 * nibbles of 8..11, top bits of 4..7) -- ggml-common.h's packing, taken 4 at a time. */
struct MQ4_K {
    static constexpr int TI = 0, VPC = 1024, CB = 4 * RL_CU_Q4_K_BYTES;
    using XA = XQ;
    using X = GQ4_K::X;
    __device__ static X xload(int lane, int64_t e0, const XQ &x) {
        const int64_t e = e0 + 256 * (lane >> 3);
        return GQ4_K::xload8(x.h + e, x.l + e, x.d[e >> 8], lane & 7);
    }
    __device__ static float dot(const uint8_t *st, int lane, const X &xv) {
        const int s = lane >> 3, t = lane & 7, j = t >> 1;
        const uint8_t *b = st + RL_CU_Q4_K_BYTES * s;
        const uint4 hd = *reinterpret_cast<const uint4 *>(b);
        GQ4_K::W w;
        w.q = *reinterpret_cast<const uint4 *>(b + RL_CU_Q4_K_QS + 16 * t);
        const uint32_t sc = j < 2 ? hd.y & 0x3f3f3f3fu
                                  : (hd.w & 0x0f0f0f0fu) | ((hd.y >> 6) & 0x03030303u) << 4;
        const uint32_t mn = j < 2 ? hd.z & 0x3f3f3f3fu
                                  : ((hd.w >> 4) & 0x0f0f0f0fu) | ((hd.z >> 6) & 0x03030303u) << 4;
        const int sh = 16 * (j & 1);
        const float d = __half2float(__ushort_as_half((unsigned short)(hd.x & 0xffffu)));
        const float dmin = __half2float(__ushort_as_half((unsigned short)(hd.x >> 16)));
        w.dl0 = d * (float)((sc >> sh) & 0xffu);
        w.dl1 = d * (float)((sc >> (sh + 8)) & 0xffu);
        w.ml0 = dmin * (float)((mn >> sh) & 0xffu);
        w.ml1 = dmin * (float)((mn >> (sh + 8)) & 0xffu);
        return GQ4_K::dot8(w, xv);
    }
};

/* Q6_K: 8 super-blocks of 210 bytes (2-byte aligned in the stage); lane = 4 s + u takes
 * super-block s as kq8.cuh's lanes u and 4 + u (both halves of 128 values). */
struct MQ6_K {
    static constexpr int TI = 1, VPC = 2048, CB = 8 * RL_CU_Q6_K_BYTES;
    using XA = XQ;
    struct X {
        GQ6_K::X h[2];
    };
    __device__ static X xload(int lane, int64_t e0, const XQ &x) {
        const int64_t e = e0 + 256 * (lane >> 2);
        const float xd = x.d[e >> 8];
        X v;
#pragma unroll
        for (int h = 0; h < 2; h++) v.h[h] = GQ6_K::xload8(x.h + e, x.l + e, xd, 4 * h + (lane & 3));
        return v;
    }
    __device__ static float dot(const uint8_t *st, int lane, const X &xv) {
        const int s = lane >> 2, u = lane & 3, l = 8 * u;
        const int o = RL_CU_Q6_K_BYTES * s;
        const float d = lds_h(st, o + RL_CU_Q6_K_D);
        float acc = 0.0f;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            GQ6_K::W w;
            uint32_t v[2];
            lds_words<2>(st, o + 64 * h + l, v);
            w.qa = make_uint2(v[0], v[1]);
            lds_words<2>(st, o + 64 * h + 32 + l, v);
            w.qb = make_uint2(v[0], v[1]);
            lds_words<2>(st, o + RL_CU_Q6_K_QH + 32 * h + l, v);
            w.qh = make_uint2(v[0], v[1]);
            lds_words<2>(st, o + RL_CU_Q6_K_SCALES + 8 * h, v);
            /* scales 8h + u/2 + 2k, k = 0..3: bytes u/2 + 2k of the 8 read */
#pragma unroll
            for (int k = 0; k < 4; k++)
                w.s[k] = d * (float)(int8_t)((k < 2 ? v[0] : v[1]) >> (8 * ((u >> 1) + 2 * (k & 1))));
            acc += GQ6_K::dot8(w, xv.h[h]);
        }
        return acc;
    }
};

/* ---- one code per activation (the CPU's Q8_K) ----
 * The q8 workspace's first codes alone are what the CPU backend (and ggml) multiply Q4_K
 * and Q6_K rows with: block_q8_K, int8 per value and a scale per 256. Reading only them
 * halves the integer work of a chunk (one dp4a per 4 values instead of two) and the
 * activation bytes each item reads, and gives the CPU's sums exactly (integer dot products
 * within a sub-block; only the float sums of the sub-blocks are ordered differently). The
 * streaming kernel is issue bound on these types with both codes (H100: Q4_K 0.53-0.73 of
 * the copy bandwidth where F16 and Q8_0 rows reach 0.9), so this is its default;
 * RUVLLM_CUDA_MV_Q8K=0 keeps the residual codes (products as exact as float ones). */
struct MQ4_K1 {
    static constexpr int TI = 0, VPC = 1024, CB = 4 * RL_CU_Q4_K_BYTES;
    using XA = XQ;
    struct X {
        int4 lo, hi;
        float d, s0, s1;
    };
    __device__ static X xload(int lane, int64_t e0, const XQ &x) {
        const int t = lane & 7;
        const int64_t e = e0 + 256 * (lane >> 3) + 64 * (t >> 1) + 16 * (t & 1);
        X v;
        v.lo = *reinterpret_cast<const int4 *>(x.h + e);
        v.hi = *reinterpret_cast<const int4 *>(x.h + e + 32);
        v.d = x.d[(e0 >> 8) + (lane >> 3)];
        v.s0 = (float)GQ4_K::sum16(v.lo);
        v.s1 = (float)GQ4_K::sum16(v.hi);
        return v;
    }
    __device__ static float dot(const uint8_t *st, int lane, const X &xv) {
        const int s = lane >> 3, t = lane & 7, j = t >> 1;
        const uint8_t *b = st + RL_CU_Q4_K_BYTES * s;
        const uint4 hd = *reinterpret_cast<const uint4 *>(b);
        const uint4 q = *reinterpret_cast<const uint4 *>(b + RL_CU_Q4_K_QS + 16 * t);
        const uint32_t sc = j < 2 ? hd.y & 0x3f3f3f3fu
                                  : (hd.w & 0x0f0f0f0fu) | ((hd.y >> 6) & 0x03030303u) << 4;
        const uint32_t mn = j < 2 ? hd.z & 0x3f3f3f3fu
                                  : ((hd.w >> 4) & 0x0f0f0f0fu) | ((hd.z >> 6) & 0x03030303u) << 4;
        const int sh = 16 * (j & 1);
        const float d = __half2float(__ushort_as_half((unsigned short)(hd.x & 0xffffu)));
        const float dmin = __half2float(__ushort_as_half((unsigned short)(hd.x >> 16)));
        const float lo = (float)GQ4_K::dot16<0>(q, xv.lo), hi = (float)GQ4_K::dot16<4>(q, xv.hi);
        const float a = d * ((float)((sc >> sh) & 0xffu) * lo) - dmin * ((float)((mn >> sh) & 0xffu) * xv.s0);
        const float c = d * ((float)((sc >> (sh + 8)) & 0xffu) * hi) -
                        dmin * ((float)((mn >> (sh + 8)) & 0xffu) * xv.s1);
        return xv.d * (a + c);
    }
};

/* dp4a of unsigned bytes a with signed bytes b (PTX ISA, "dp4a": .u32 .s32 operands) */
__device__ __forceinline__ int dp4a_us(uint32_t a, int b, int c) {
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

/* Q4_K with one code per activation, 4 lanes per super-block: 8 super-blocks a chunk; lane
 * = 4 s + j takes super-block s, sub-blocks 2j and 2j + 1 (qs bytes 32j .. 32j + 31: low
 * nibbles are values 64j .. 64j + 31, high ones the next 32), so one pair of 6-bit scales
 * and mins a lane instead of one per 32 values (MQ4_K1's lanes take 16 bytes each). K a
 * multiple of 2048. The high nibbles are taken in place (q & 0xf0f0f0f0, unsigned bytes
 * 16 q into a dp4a with signed activations: 16 times the sum, shifted back exactly) instead
 * of shifted down first, and the scales and mins multiply integer sums (|sum| < 2^23, so
 * the one conversion to float is exact): two float products a row instead of eight.
 * H100, 2026-11-26 (bench_cuda --kernels, us, against the same lanes with shifted nibbles
 * and float scales, two runs each): 4096x14336 13.73 -> 13.34, 14336x4096 14.35 -> 14.2,
 * 4096x4096 5.15 -> 5.04, 2048x8192 5.28 -> 5.14; the 1024- and 2048-row ones unchanged. */
struct MQ4_K5 {
    static constexpr int TI = 0, VPC = 2048, CB = 8 * RL_CU_Q4_K_BYTES;
    using XA = XQ;
    struct X {
        int4 lo[2], hi[2];
        float d;
        int s0, s1;
    };
    __device__ static X xload(int lane, int64_t e0, const XQ &x) {
        const int64_t e = e0 + 256 * (lane >> 2) + 64 * (lane & 3);
        X v;
#pragma unroll
        for (int k = 0; k < 2; k++) {
            v.lo[k] = *reinterpret_cast<const int4 *>(x.h + e + 16 * k);
            v.hi[k] = *reinterpret_cast<const int4 *>(x.h + e + 32 + 16 * k);
        }
        v.d = x.d[(e0 >> 8) + (lane >> 2)];
        v.s0 = GQ4_K::sum16(v.lo[0]) + GQ4_K::sum16(v.lo[1]);
        v.s1 = GQ4_K::sum16(v.hi[0]) + GQ4_K::sum16(v.hi[1]);
        return v;
    }
    __device__ static int hi16(const uint4 &q, int4 v, int acc) {
        constexpr uint32_t m = 0xf0f0f0f0u;
        acc = dp4a_us(q.x & m, v.x, acc);
        acc = dp4a_us(q.y & m, v.y, acc);
        acc = dp4a_us(q.z & m, v.z, acc);
        return dp4a_us(q.w & m, v.w, acc);
    }
    __device__ static float dot(const uint8_t *st, int lane, const X &xv) {
        const int s = lane >> 2, j = lane & 3;
        const uint8_t *b = st + RL_CU_Q4_K_BYTES * s;
        const uint4 hd = *reinterpret_cast<const uint4 *>(b);
        const uint4 q0 = *reinterpret_cast<const uint4 *>(b + RL_CU_Q4_K_QS + 32 * j);
        const uint4 q1 = *reinterpret_cast<const uint4 *>(b + RL_CU_Q4_K_QS + 32 * j + 16);
        const uint32_t sc = j < 2 ? hd.y & 0x3f3f3f3fu
                                  : (hd.w & 0x0f0f0f0fu) | ((hd.y >> 6) & 0x03030303u) << 4;
        const uint32_t mn = j < 2 ? hd.z & 0x3f3f3f3fu
                                  : ((hd.w >> 4) & 0x0f0f0f0fu) | ((hd.z >> 6) & 0x03030303u) << 4;
        const int sh = 16 * (j & 1);
        const float d = __half2float(__ushort_as_half((unsigned short)(hd.x & 0xffffu)));
        const float dmin = __half2float(__ushort_as_half((unsigned short)(hd.x >> 16)));
        const int lo = GQ4_K::dot16<0>(q0, xv.lo[0]) + GQ4_K::dot16<0>(q1, xv.lo[1]);
        const int hi = hi16(q1, xv.hi[1], hi16(q0, xv.hi[0], 0)) >> 4;
        const int a = (int)((sc >> sh) & 0xffu) * lo + (int)((sc >> (sh + 8)) & 0xffu) * hi;
        const int m = (int)((mn >> sh) & 0xffu) * xv.s0 + (int)((mn >> (sh + 8)) & 0xffu) * xv.s1;
        return xv.d * (d * (float)a - dmin * (float)m);
    }
};

/* Q6_K with one code per activation, MQ6_K's lanes (lane = 4 s + u: super-block s, both
 * halves of 128 values at u): the codes q - 32 are not formed byte by byte (__vsub4,
 * several instructions a word on this hardware) but the dp4a sums of the unsigned codes q
 * (0..63: positive as signed bytes) start from -32 times the sum of the activations they
 * meet (per 8 values, computed once a chunk in xload and used for every row of an item);
 * the 16 groups of a lane are scaled and added as integers (|sum| < 2^26), one float
 * multiply a row. Exact integer sums, so the result is the CPU's to rounding of the last
 * multiply. H100, 2026-11-26 (bench_cuda --kernels, us, against the same lanes with
 * __vsub4 codes and float scales, two runs each): 4096x14336 (R 4) 21.5 -> 19.3, the
 * 128256x4096 head 169.7 -> 165.6, 2048x8192 (R 2) 7.69 -> 7.32, 1024x4096 (R 2) 3.02 ->
 * 3.05, the 1B head 128256x2048 83.6 -> 85.5. */
struct MQ6_K2 {
    static constexpr int TI = 1, VPC = 2048, CB = 8 * RL_CU_Q6_K_BYTES;
    using XA = XQ;
    struct X {
        uint2 v[2][4];
        int c[2][4]; /* -32 * (sum of the 8 codes of v[h][k]) */
        float d;
    };
    __device__ static X xload(int lane, int64_t e0, const XQ &x) {
        const int64_t e = e0 + 256 * (lane >> 2) + 8 * (lane & 3);
        X v;
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
            for (int k = 0; k < 4; k++) {
                v.v[h][k] = *reinterpret_cast<const uint2 *>(x.h + e + 128 * h + 32 * k);
                const int s8 = __dp4a((int)v.v[h][k].x, 0x01010101, 0);
                v.c[h][k] = -32 * __dp4a((int)v.v[h][k].y, 0x01010101, s8);
            }
        v.d = x.d[(e0 >> 8) + (lane >> 2)];
        return v;
    }
    __device__ static float dot(const uint8_t *st, int lane, const X &xv) {
        const int s = lane >> 2, u = lane & 3, l = 8 * u;
        const int o = RL_CU_Q6_K_BYTES * s;
        const float d = lds_h(st, o + RL_CU_Q6_K_D);
        int acc = 0;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            uint32_t a[2], b[2], hb[2], sv[2];
            lds_words<2>(st, o + 64 * h + l, a);
            lds_words<2>(st, o + 64 * h + 32 + l, b);
            lds_words<2>(st, o + RL_CU_Q6_K_QH + 32 * h + l, hb);
            lds_words<2>(st, o + RL_CU_Q6_K_SCALES + 8 * h, sv);
            int g[4] = {xv.c[h][0], xv.c[h][1], xv.c[h][2], xv.c[h][3]};
#pragma unroll
            for (int i = 0; i < 2; i++) {
                uint32_t v[4];
                q6k_codes(a[i], b[i], hb[i], v);
#pragma unroll
                for (int k = 0; k < 4; k++)
                    g[k] = __dp4a((int)v[k], (int)(i ? xv.v[h][k].y : xv.v[h][k].x), g[k]);
            }
            /* scales 8h + u/2 + 2k, k = 0..3: bytes u/2 + 2k of the 8 read (as MQ6_K) */
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const uint32_t w = (k < 2 ? sv[0] : sv[1]) >> (8 * ((u >> 1) + 2 * (k & 1)));
                acc += (int)(int8_t)w * g[k];
            }
        }
        return xv.d * (d * (float)acc);
    }
};

/* The activations of a 32-value block (RL_CU_XQ_Q8_32): codes (as words) and the scale. */
struct X32 {
    int h[8];
    float d;
};
__device__ __forceinline__ X32 xload32(const XQ &x, int64_t e) {
    X32 v;
    const int4 h0 = *reinterpret_cast<const int4 *>(x.h + e), h1 = *reinterpret_cast<const int4 *>(x.h + e + 16);
    v.h[0] = h0.x, v.h[1] = h0.y, v.h[2] = h0.z, v.h[3] = h0.w;
    v.h[4] = h1.x, v.h[5] = h1.y, v.h[6] = h1.z, v.h[7] = h1.w;
    v.d = x.d[e >> 5];
    return v;
}

/* int8 products of a 32-value block's codes c (8 words) with its activations, times the
 * activations' scale: the CPU's Q8_0 x Q8_0 integer sum (one dp4a per 4 values, 32 bytes of
 * codes a lane). Against the two codes per activation and a scale per 256 these products
 * read before (as exact as float activations, two dp4a per 4 values; H100, 2026-11-28,
 * bench_cuda --pp 16 --tg 128, one call alternated three times): 8B Q8_0 tg0 302.5, 303.7,
 * 303.5 against 299.7, 301.0, 299.4, without the output head 324.0, 324.1, 320.3 against
 * 318.0, 318.0, 317.9; test_cuda_ops: nmse against the CPU's products 1e-14 (was 3e-8),
 * against float64 3e-5 (was below 1e-8). */
__device__ __forceinline__ float dot32_q8(const int *c, const X32 &x) {
    int sh = 0;
#pragma unroll
    for (int i = 0; i < 8; i++) sh = __dp4a(c[i], x.h[i], sh);
    return x.d * (float)sh;
}

/* Q8_0: 32 blocks of 34 bytes; lane i takes block i (its d, then 32 signed codes). */
struct MQ8_0 {
    static constexpr int TI = 2, VPC = 1024, CB = 32 * RL_CU_Q8_0_BYTES;
    using XA = XQ;
    using X = X32;
    __device__ static X xload(int lane, int64_t e0, const XQ &x) { return xload32(x, e0 + 32 * lane); }
    __device__ static float dot(const uint8_t *st, int lane, const X &xv) {
        const int o = RL_CU_Q8_0_BYTES * lane;
        int c[8];
        lds_words<8>(st, o + RL_CU_Q8_0_QS, reinterpret_cast<uint32_t *>(c));
        return lds_h(st, o) * dot32_q8(c, xv);
    }
};

/* Q4_0: 32 blocks of 18 bytes; lane i takes block i: byte j holds values j (low nibble)
 * and j + 16 (high), each a code + 8. */
struct MQ4_0 {
    static constexpr int TI = 3, VPC = 1024, CB = 32 * RL_CU_Q4_0_BYTES;
    using XA = XQ;
    using X = X32;
    __device__ static X xload(int lane, int64_t e0, const XQ &x) { return xload32(x, e0 + 32 * lane); }
    __device__ static float dot(const uint8_t *st, int lane, const X &xv) {
        const int o = RL_CU_Q4_0_BYTES * lane;
        uint32_t q[4];
        lds_words<4>(st, o + RL_CU_Q4_0_QS, q);
        int c[8];
#pragma unroll
        for (int i = 0; i < 4; i++) {
            c[i] = (int)__vsub4(q[i] & 0x0f0f0f0fu, 0x08080808u);
            c[4 + i] = (int)__vsub4((q[i] >> 4) & 0x0f0f0f0fu, 0x08080808u);
        }
        return lds_h(st, o) * dot32_q8(c, xv);
    }
};

/* F16: 1024 values; lane i takes the 16-byte pieces i + 32 k (so each read of the warp is
 * 512 contiguous bytes, without bank conflicts), float activations. */
struct MF16 {
    static constexpr int TI = 4, VPC = 1024, CB = 2048;
    using XA = const float *;
    struct X {
        float4 a[8];
    };
    __device__ static X xload(int lane, int64_t e0, const float *x) {
        X v;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const float4 *p = reinterpret_cast<const float4 *>(x + e0 + 8 * (lane + 32 * k));
            v.a[2 * k] = p[0];
            v.a[2 * k + 1] = p[1];
        }
        return v;
    }
    __device__ static float dot(const uint8_t *st, int lane, const X &xv) {
        float acc = 0.0f;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const uint4 u = *reinterpret_cast<const uint4 *>(st + 16 * (lane + 32 * k));
            const float4 a = xv.a[2 * k], b = xv.a[2 * k + 1];
            const float2 f0 = __half22float2(*reinterpret_cast<const __half2 *>(&u.x));
            const float2 f1 = __half22float2(*reinterpret_cast<const __half2 *>(&u.y));
            const float2 f2 = __half22float2(*reinterpret_cast<const __half2 *>(&u.z));
            const float2 f3 = __half22float2(*reinterpret_cast<const __half2 *>(&u.w));
            acc += f0.x * a.x + f0.y * a.y + f1.x * a.z + f1.y * a.w + f2.x * b.x + f2.y * b.y +
                   f3.x * b.z + f3.y * b.w;
        }
        return acc;
    }
};

/* Stages of the ring: about 9 KiB of weights per warp (3 to 8 items: S - 1 in flight), so
 * that warps with small items keep as many bytes coming as warps with large ones. */
template <class G, int R> __host__ __device__ constexpr int mv_stages() {
    return 9216 / (R * G::CB) < 3 ? 3 : 9216 / (R * G::CB) > 8 ? 8 : 9216 / (R * G::CB);
}
template <class G, int R> __host__ __device__ constexpr size_t mv_smem() {
    return (size_t)MV_WARPS * (size_t)mv_stages<G, R>() * (R * G::CB + MV_PAD);
}

/* The gated activation joined to the gate and up products (rl__cu_matvec_glu): out =
 * act(gate) * up, and its q8 workspace for the product after it. */
struct MvGlu {
    float *out;
    int8_t *xq;  /* codes [F], residual codes [F], scales [F / 256] (matmul.cu's layout);
                    NULL: none (F16, whose products read float activations) */
    int *cnt;    /* [F / 256]: values of each block of 256 written so far; 0 between launches */
    int64_t F;   /* rows of gate and of up; F % 256 == 0 */
    int act;     /* rl_glu: 0 SiLU, 1 GELU */
    int xl;      /* xq's layout (RL_CU_XQ_Q8 or RL_CU_XQ_Q8_32: the product after's type) */
};

/* Row `row` of the matrices of sg (numbered one after the other), and its output. */
__device__ __forceinline__ const uint8_t *seg_row(const rl__cu_mv_segs &sg, int64_t row,
                                                  size_t row_bytes) {
    const bool s1 = row >= sg.end[0], s2 = row >= sg.end[1];
    return (s2 ? sg.w[2] : s1 ? sg.w[1] : sg.w[0]) +
           (size_t)(row - (s2 ? sg.end[1] : s1 ? sg.end[0] : 0)) * row_bytes;
}
__device__ __forceinline__ float *seg_out(const rl__cu_mv_segs &sg, int64_t row) {
    const bool s1 = row >= sg.end[0], s2 = row >= sg.end[1];
    return (s2 ? sg.y[2] : s1 ? sg.y[1] : sg.y[0]) + (row - (s2 ? sg.end[1] : s1 ? sg.end[0] : 0));
}

/* A group's R / 2 gated values from its R sums v (gate then up; every lane holds them),
 * written by lanes 0 .. R/2 - 1; returns how many (the last group may be short). */
template <int R>
__device__ __forceinline__ int mv_glu_store(const MvGlu &gl, const rl__cu_mv_segs &sg, int64_t pb,
                                            const float (&v)[R], int lane) {
    float g = v[0], u = v[R / 2];
#pragma unroll
    for (int j = 1; j < R / 2; j++)
        if (lane == j) g = v[j], u = v[R / 2 + j];
    const int nv = (int)(gl.F - pb < R / 2 ? gl.F - pb : R / 2);
    if (lane < nv) {
        sg.y[0][pb + lane] = g;
        sg.y[1][pb + lane] = u;
        gl.out[pb + lane] = rlcu::glu_value(gl.act, g, u);
    }
    return nv;
}

/* The warp's gated values [p0, p1) written: counted per block of 256 (after a fence), and
 * each block this completes quantized by this warp (MvGlu above). */
__device__ __forceinline__ void mv_glu_count(const MvGlu &gl, int64_t p0, int64_t p1, int lane) {
    if (!gl.xq || p1 <= p0) return; /* F16: the product after reads float activations */
    __threadfence();
    __syncwarp();
    for (int64_t b = p0 >> 8; b <= (p1 - 1) >> 8; b++) {
        const int64_t lo = b << 8 > p0 ? b << 8 : p0, hi = (b + 1) << 8 < p1 ? (b + 1) << 8 : p1;
        const int nv = (int)(hi - lo);
        int last = 0;
        if (lane == 0) last = atomicAdd(&gl.cnt[b], nv) + nv == 256;
        if (!__shfl_sync(0xffffffffu, last, 0)) continue;
        __threadfence();
        const int64_t e = (b << 8) + 8 * lane;
        const float4 a0 = __ldcg(reinterpret_cast<const float4 *>(gl.out + e));
        const float4 a1 = __ldcg(reinterpret_cast<const float4 *>(gl.out + e) + 1);
        const float w8[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
        rlcu::q8ws_warp(gl.xl, w8, gl.xq, gl.F, e);
        if (lane == 0) gl.cnt[b] = 0;
    }
}

/* Rows of y = W x in items of R rows x one chunk. The block's warps form MV_WARPS / ks
 * slots of ks warps; slot q takes row groups q gpw .. q gpw + gpw - 1 (R rows each, the last
 * rows repeated past the end and not written), and warp k of a slot their chunks k, k + ks,
 * ... in order, through a ring of S stages: item i + S - 1 is copied in while item i is
 * decoded (cp.async groups, one per item, empty ones at the end so that the wait count stays
 * fixed). The activations of a chunk are read once for its R rows. ks > 1 (few rows, long
 * ones: more warps in flight than row groups) adds the slot's partial sums through shared
 * memory, in a fixed order (gpw <= MV_KS_GROUPS then). The rows may come from up to RL_CU_MV_SEGS
 * matrices of one type and K (q, k and v; gate and up: one launch), numbered one after the
 * other (sg.end); a single product has end[] = rows. */
constexpr int MV_KS_GROUPS = 4;
/* GLU (rl__cu_matvec_glu): the rows are gate and up taken in turn, R / 2 of each per group
 * (the same R / 2 rows of both: virtual row v is gate or up row (v - v % R) / 2 + v % (R / 2)),
 * rows = 2 F, ks = 1. A group's sums give R / 2 values of act(gate) * up (also gate and up
 * themselves, as the separate ops leave them). After its last item a warp counts the values
 * it wrote into each block of 256 they fall in (a counter per block, after a fence: CUDA C++
 * Programming Guide, "Memory Fence Functions"); the warp whose count completes a block
 * quantizes it for the q8 product that reads it next, as the gated-activation kernel does
 * (q8k_warp), and sets the counter back to 0. */
template <class G, int R, bool GLU, bool XP>
__device__ __forceinline__ void mv_body(const rl__cu_mv_segs &sg, size_t row_bytes, int64_t rows,
                                        int gpw, int nch, int ks, const typename G::XA &x,
                                        const MvGlu &gl) {
    constexpr int S = mv_stages<G, R>(), IB = R * G::CB + MV_PAD;
    extern __shared__ __align__(16) uint8_t mv_smem_buf[];
    __shared__ float part[MV_WARPS][MV_KS_GROUPS][R];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, wk = warp % ks;
    uint8_t *ring = mv_smem_buf + warp * (S * IB);
    const uint32_t ring_s = (uint32_t)__cvta_generic_to_shared(ring);
    const bool bulk = (c_mv_bulk >> G::TI) & 1; /* the stage barriers follow the rings */
    const uint32_t bar = (uint32_t)__cvta_generic_to_shared(mv_smem_buf) + MV_WARPS * S * IB +
                         warp * MV_BARS * 8;
    const int64_t r0 = ((int64_t)blockIdx.x * (MV_WARPS / ks) + warp / ks) * gpw * R;
    const int64_t nrw = r0 >= rows ? 0 : rows - r0 < (int64_t)gpw * R ? rows - r0 : (int64_t)gpw * R;
    const int ng = (int)((nrw + R - 1) / R);
    const int npc = nch > wk ? (nch - wk + ks - 1) / ks : 0; /* chunks of a group: this warp's */
    const int n_items = ng * npc;
    if (ks == 1 && n_items == 0) return; /* the whole warp: no block-wide barrier follows */
    if (bulk) {
        if (lane < S) mbar_init(bar + 8 * lane);
        rlcu::fence_mbar_init();
        __syncwarp();
    }
    int ig = 0, ic = 0; /* next item to copy: group, chunk (of this warp's) */
    /* row r of group g (the start of the row) */
    auto row_ptr = [&](int g, int r) -> const uint8_t * {
        if constexpr (GLU) {
            const int64_t p = (r0 + (int64_t)g * R) / 2 + r % (R / 2);
            return (r < R / 2 ? sg.w[0] : sg.w[1]) + (size_t)(p < gl.F ? p : gl.F - 1) * row_bytes;
        } else {
            const int64_t row = r0 + (int64_t)g * R + r;
            return seg_row(sg, row < rows ? row : rows - 1, row_bytes);
        }
    };
    /* this lane's first 16-byte piece of each row of group ig, at chunk 0 of the warp */
    const uint8_t *src[R];
    auto rows_of = [&]() {
#pragma unroll
        for (int r = 0; r < R; r++) src[r] = row_ptr(ig, r) + (size_t)wk * G::CB + 16 * lane;
    };
    rows_of();
    const uint64_t pol = mv_policy();
    auto issue = [&](int stage) {
        if (ig < ng) {
            const uint32_t dst = ring_s + stage * IB + 16 * lane;
            const size_t co = (size_t)ic * ks * G::CB;
            if (bulk) { /* lane 0: dst and src[r] are the pieces' starts */
                if (lane == 0) {
                    mbar_expect(bar + 8 * stage, R * G::CB);
#pragma unroll
                    for (int r = 0; r < R; r++)
                        bulk_g2s(dst + r * G::CB, src[r] + co, G::CB, bar + 8 * stage, pol);
                }
            } else {
#pragma unroll
                for (int r = 0; r < R; r++) {
#pragma unroll
                    for (int k = 0; k < (G::CB / 16 + 31) / 32; k++)
                        if (G::CB % 512 == 0 || lane + 32 * k < G::CB / 16)
                            cp16h(dst + r * G::CB + 512 * k, src[r] + co + 512 * k, pol);
                }
            }
            if (++ic == npc) {
                ic = 0;
                ig++;
                if (ig < ng) rows_of();
            }
        }
        if (!bulk) cp_commit();
    };
    /* Measured and left out (H100, 2026-11-27, bench_cuda tg0, one call, alternated twice):
     * the product after the attention (o) also prefetching its items past the ring into L2
     * here (cp.async.bulk.prefetch.L2, lane 0 of each warp), while the attention runs: 8B
     * Q8_0 301.9, 301.2 against 301.1, 301.8; with the q/k/v product after the RMSNorm as
     * well 299.0, 298.7; 8B Q4_K_M 425.4, 426.0 against 429.6, 427.1; 1B 1,518, 1,516 against
     * 1,527, 1,518. */
#pragma unroll
    for (int s = 0; s < S - 1; s++) issue(s);
    rlcu::pdl_enter(); /* the weights are on their way; x and y belong to other kernels */
    float acc[R];
#pragma unroll
    for (int r = 0; r < R; r++) acc[r] = 0.0f;
    int cg = 0, cc = 0;
    int64_t glu_end = r0 / 2; /* GLU: the end of the values this warp has written */
    float hv = 0.0f; /* sg.yh: lane j holds the warp's row 32 k + j until 32 are in */
    typename G::X xn; /* XP: the next item's activations, loaded an item ahead */
    if (XP && n_items > 0) xn = G::xload(lane, (int64_t)wk * G::VPC, x);
    for (int i = 0; i < n_items; i++) {
        issue((i + S - 1) % S);
        typename G::X xv;
        if constexpr (XP) {
            xv = xn;
            const int cn = cc + 1 == npc ? 0 : cc + 1; /* npc 1: every item the same chunk */
            if (npc > 1 && i + 1 < n_items) xn = G::xload(lane, (int64_t)(wk + cn * ks) * G::VPC, x);
        } else {
            xv = G::xload(lane, (int64_t)(wk + cc * ks) * G::VPC, x);
        }
        if (bulk)
            mbar_wait(bar + 8 * (i % S), (uint32_t)(i / S) & 1u);
        else
            cp_wait<S - 1>();
        __syncwarp();
        const uint8_t *st = ring + (i % S) * IB;
#pragma unroll
        for (int r = 0; r < R; r++) acc[r] += G::dot(st + r * G::CB, lane, xv);
        __syncwarp(); /* the stage is copied into again next iteration */
        if (GLU && ++cc == npc) {
            float v[R];
#pragma unroll
            for (int r = 0; r < R; r++) {
                v[r] = acc[r];
#pragma unroll
                for (int o = 16; o > 0; o >>= 1) v[r] += __shfl_xor_sync(0xffffffffu, v[r], o);
                acc[r] = 0.0f;
            }
            const int64_t pb = (r0 + (int64_t)cg * R) / 2;
            const int nv = mv_glu_store<R>(gl, sg, pb, v, lane);
            if (c_mv_glu_end) {
                glu_end = pb + nv;
            } else {
                mv_glu_count(gl, pb, pb + nv, lane);
            }
            cc = 0;
            cg++;
        } else if (!GLU && ++cc == npc) {
#pragma unroll
            for (int r = 0; r < R; r++) {
                float v = acc[r];
#pragma unroll
                for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
                const int64_t row = r0 + (int64_t)cg * R + r;
                if (ks > 1) {
                    if (lane == 0) part[warp][cg][r] = v;
                } else if (lane == 0 && row < rows) {
                    *seg_out(sg, row) = v;
                }
                if (ks == 1 && sg.yh) { /* whole lines to host memory, not 4-byte stores */
                    const int j = cg * R + r;
                    if (lane == (j & 31)) hv = v;
                    if (j < nrw && ((j & 31) == 31 || j == nrw - 1) && lane <= (j & 31))
                        sg.yh[r0 + (j & ~31) + lane] = hv;
                }
                acc[r] = 0.0f;
            }
            cc = 0;
            cg++;
        }
    }
    if (GLU && c_mv_glu_end) mv_glu_count(gl, r0 / 2, glu_end, lane);
    if (GLU || ks == 1) return;
    __syncthreads();
    const int g = lane / R, r = lane % R;
    if (wk != 0 || lane >= gpw * R || g >= ng) return;
    float v = 0.0f;
    for (int k = 0; k < ks; k++) v += part[warp + k][g][r];
    const int64_t row = r0 + (int64_t)g * R + r;
    if (row < rows) *seg_out(sg, row) = v;
    if (row < rows && sg.yh) sg.yh[row] = v; /* lanes in row order: whole lines */
}

/* The streaming kernel (mv_body); XP: activations loaded an item ahead (g_mv_xpf). */
template <class G, int R, bool GLU = false, bool XP = false>
__global__ void __launch_bounds__(MV_WARPS * 32)
    mv_kernel(rl__cu_mv_segs sg, size_t row_bytes, int64_t rows, int gpw, int nch, int ks,
              typename G::XA x, MvGlu gl) {
    mv_body<G, R, GLU, XP>(sg, row_bytes, rows, gpw, nch, ks, x, gl);
}

/* ---- the balanced kernel (mv2) ----
 * mv_kernel above gives each warp whole row groups; with a few groups per warp the last
 * wave is uneven (an H100 under Nsight Compute, 14336x4096 Q4_K: the SMs were busy 80% of
 * the kernel, 47% of DRAM bandwidth). Here the grid is one block per multiprocessor and the
 * work is cut evenly: block b takes rows [b rows / nb, (b + 1) rows / nb) (the same count
 * within one row), and its items -- R rows x one chunk -- are numbered chunk by chunk and
 * split into equal runs over the block's warps. So a warp's items mostly share a chunk of
 * x (read again only where the chunk changes), and every item's R sums go to shared
 * memory; after one barrier the block adds each row's chunks in order (deterministic).
 * Rows may come from up to MV2_SEGS matrices of the same type and K (q, k and v; gate and
 * up): the rows of a block are numbered over the matrices one after the other. About
 * 110 KiB of shared memory per block, so the next kernel's block fits beside it and starts
 * its own copies (launch.cuh) before this one ends.
 * Off by default (RUVLLM_CUDA_MV2 turns it on per type). H100, 2026-11-26: alone
 * (bench_cuda --kernels) 14336x4096 Q4_K 0.60 (R 2) / 0.73 (R 4) of the copy bandwidth vs
 * 0.66 for mv_kernel, 4096x14336 0.58 / 0.70 vs 0.60, but 4096x4096 0.51 / 0.53 vs 0.57;
 * Nsight Compute (kernels serialized) had a layer's products at 85 us vs 94; yet in the
 * decode step (graph, programmatic launch) 8B Q4_K_M fell from 259 to 214 tok/s and 1B
 * from 809 to 730. Not understood yet (block placement beside the kernel before it, two
 * blocks on one multiprocessor?); it stays for that study. */
template <class G, int R> __host__ __device__ constexpr int mv2_stages() {
    return 6144 / (R * G::CB) + 1 < 3 ? 3 : 6144 / (R * G::CB) + 1 > 8 ? 8 : 6144 / (R * G::CB) + 1;
}
template <class G, int R> __host__ __device__ constexpr size_t mv2_warp_bytes() {
    return (size_t)mv2_stages<G, R>() * (R * G::CB + MV_PAD);
}
constexpr int MV2_WMAX = 16;

/* The sums of R rows over a warp: lane l returns the full sum of row (R == 2: l / 16;
 * R == 4: l / 8), each exchange halving the rows a lane carries. */
template <int R> __device__ __forceinline__ float mv2_reduce(float (&v)[R], int lane) {
    if constexpr (R == 4) {
        const bool hi = lane & 16;
        float a0 = hi ? v[2] : v[0], a1 = hi ? v[3] : v[1];
        const float b0 = hi ? v[0] : v[2], b1 = hi ? v[1] : v[3];
        a0 += __shfl_xor_sync(0xffffffffu, b0, 16);
        a1 += __shfl_xor_sync(0xffffffffu, b1, 16);
        const bool h8 = lane & 8;
        float t = h8 ? a1 : a0;
        t += __shfl_xor_sync(0xffffffffu, h8 ? a0 : a1, 8);
#pragma unroll
        for (int o = 4; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
        return t;
    } else if constexpr (R == 2) {
        const bool hi = lane & 16;
        float t = hi ? v[1] : v[0];
        t += __shfl_xor_sync(0xffffffffu, hi ? v[0] : v[1], 16);
#pragma unroll
        for (int o = 8; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
        return t;
    } else {
        float t = v[0];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
        return t;
    }
}

template <class G, int R>
__global__ void __launch_bounds__(MV2_WMAX * 32, 1)
    mv2_kernel(rl__cu_mv_segs sg, size_t row_bytes, int64_t rows, int nch, typename G::XA x) {
    constexpr int S = mv2_stages<G, R>(), IB = R * G::CB + MV_PAD;
    extern __shared__ __align__(16) uint8_t mv_smem_buf[];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    uint8_t *ring = mv_smem_buf + warp * mv2_warp_bytes<G, R>();
    float *part = reinterpret_cast<float *>(mv_smem_buf + nw * mv2_warp_bytes<G, R>());
    const uint32_t ring_s = (uint32_t)__cvta_generic_to_shared(ring);
    const int64_t rb0 = (int64_t)blockIdx.x * rows / gridDim.x;
    const int nrw = (int)((int64_t)(blockIdx.x + 1) * rows / gridDim.x - rb0);
    const int ng = (nrw + R - 1) / R, items = ng * nch;
    const int i0 = (int)((int64_t)warp * items / nw), i1 = (int)((int64_t)(warp + 1) * items / nw);
    int ic = i0; /* next item to copy */
    auto issue = [&](int stage) {
        if (ic < i1) {
            const uint32_t dst = ring_s + stage * IB;
            const int c = ic / ng, g = ic % ng;
#pragma unroll
            for (int r = 0; r < R; r++) {
                const int lr = g * R + r;
                if (lr < nrw) {
                    const int64_t row = rb0 + lr;
                    const bool s1 = row >= sg.end[0], s2 = row >= sg.end[1];
                    const int64_t rl = row - (s2 ? sg.end[1] : s1 ? sg.end[0] : 0);
                    const uint8_t *src = (s2 ? sg.w[2] : s1 ? sg.w[1] : sg.w[0]) +
                                         (size_t)rl * row_bytes + (size_t)c * G::CB;
#pragma unroll
                    for (int k = 0; k < (G::CB / 16 + 31) / 32; k++) {
                        const int p = lane + 32 * k;
                        if (G::CB % 512 == 0 || p < G::CB / 16)
                            cp16(dst + r * G::CB + 16 * p, src + 16 * p);
                    }
                }
            }
            ic++;
        }
        cp_commit();
    };
#pragma unroll
    for (int s = 0; s < S - 1; s++) issue(s);
    rlcu::pdl_enter(); /* the weights are on their way; x and y belong to other kernels */
    int xc = -1;
    typename G::X xv;
    for (int i = i0; i < i1; i++) {
        issue((i - i0 + S - 1) % S);
        const int c = i / ng, g = i % ng;
        if (c != xc) {
            xv = G::xload(lane, (int64_t)c * G::VPC, x);
            xc = c;
        }
        cp_wait<S - 1>();
        __syncwarp();
        const uint8_t *st = ring + ((i - i0) % S) * IB;
        float v[R];
#pragma unroll
        for (int r = 0; r < R; r++) v[r] = G::dot(st + r * G::CB, lane, xv);
        __syncwarp(); /* the stage is copied into again next iteration */
        const float t = mv2_reduce<R>(v, lane);
        if ((lane & (32 / R - 1)) == 0) part[(c * ng + g) * R + lane / (32 / R)] = t;
    }
    __syncthreads();
    for (int j = threadIdx.x; j < nrw; j += blockDim.x) {
        float acc = 0.0f;
        for (int c = 0; c < nch; c++) acc += part[c * ng * R + j];
        const int64_t row = rb0 + j;
        const bool s1 = row >= sg.end[0], s2 = row >= sg.end[1];
        (s2 ? sg.y[2] : s1 ? sg.y[1] : sg.y[0])[row - (s2 ? sg.end[1] : s1 ? sg.end[0] : 0)] = acc;
        if (sg.yh) sg.yh[row] = acc;
    }
}

/* Per type (Q4_K, Q6_K, Q8_0, Q4_0, F16): rows per item (0: the row-group kernels of
 * matmul.cu take the type), the resident blocks per multiprocessor of each R's kernel,
 * and the multiprocessor count, read at set-up (rl__cu_init_matvec): they size the one
 * wave of warps. */
constexpr int MV_TYPES = 5;
static int g_mv_sms = 0;
static int g_mv_occ[MV_TYPES + 3][3]; /* + the one-code kernels: MQ4_K1, MQ6_K2, MQ4_K5 */
static int g_mv_rows[MV_TYPES] = {-1, -1, -1, -1, -1}; /* -1: mv_rows_for's choice */
static bool g_mv_on = true;
static bool g_mv_q8k = true;   /* Q4_K, Q6_K with one code per activation (MQ4_K1, MQ6_K2) */
static bool g_mv_q4k4 = true;  /* ... Q4_K with 4 lanes a super-block (MQ4_K5), K % 2048 == 0 */
static bool g_mv_multi = true; /* matvec_multi through mv_kernel (RUVLLM_CUDA_MV_MULTI=0: not) */
static bool g_mv_glu = true;   /* gate/up + gated activation (RUVLLM_CUDA_MV_GLU=0: off) */
static int g_mv_glu_occ[5][2]; /* MQ4_K1, MQ4_K, MQ8_0, MF16, MQ4_K5 at R 2, 4 */
static int g_mv_bulk = 0;      /* bulk copies, bit ti (c_mv_bulk; RUVLLM_CUDA_MV_BULK) */
/* RUVLLM_CUDA_MV_XPF=a,b,c,d,e (per type as RUVLLM_CUDA_MV_BULK; default 1,1,1,0,1: all but
 * Q4_0): the streaming kernel loads the next item's activations while it waits for the
 * current item's weights (mv_kernel's XP variant), so their L1 / L2 round trip leaves the
 * item's chain: Nsight Compute had 8B Q8_0's gate/up warps stalled on global loads (long
 * scoreboard) 4.5 cycles an issue, and those loads are the activations' (the weights come by
 * cp.async). H100, 2026-11-26, bench_cuda --pp 512 --tg 128 --reps 2, tg0 tok/s, one call,
 * alternated: 8B Q8_0 278.2, 274.5 -> 282.3, 278.9 (Q8_0 on); 8B F16 169.2, 170.3 -> 175.3,
 * 175.4 (F16 on; bulk copies for F16 instead: 174.0); Q4_K and Q6_K (8B Q4_K_M 385.8, 392.5
 * -> 391.7, 393.4; 1B 1,338, 1,371 -> 1,240, 1,370): no gain alone; with bulk copies
 * (see c_mv_bulk) they gain 1.5%, so on (default 1,1,1,0,1). With Q8_0's one-code
 * activations (2026-11-28, alternated in one call) Q8_0 off: 8B Q8_0 tg0 303.7, 303.0
 * against 304.1, 303.6 (on stays). */
static int g_mv_xpf = 0;

/* Rows per item for a product of type index ti (0: leave it to matmul.cu), from the
 * products alone on an H100 (bench_cuda --kernels, 2026-11-26, with programmatic launch:
 * this kernel copies its first weights before the kernel before it ends, matmul.cu's do
 * not): Q8_0 and Q4_0 1.4-2.2x the row-group kernels at every shape; Q6_K and Q4_K
 * 1.0-1.35x except for the 1024-row K and V products of Q4_K (3.0 vs 3.7 us: too few warps
 * here), F16 up to 1.1x except the 128k-row output head (the row-group kernel reads at the
 * copy bandwidth there). */
int mv_rows_for(int ti, int64_t rows, int64_t K) {
    if (g_mv_rows[ti] >= 0) return g_mv_rows[ti];
    switch (ti) {
    case 0: /* Q4_K; with one code per activation every product here (so that all of them
               take the CPU's arithmetic), 4 rows (the 8B and 1B decode steps: 292 vs 286
               and 890 vs 847 tok/s at 2 rows, H100) */
        if (g_mv_q8k) return 4;
        return rows <= 1024 ? 0 : (rows >= 8192 && K <= 2048) || (rows <= 2048 && K >= 8192) ? 4 : 2;
    case 1: /* Q6_K */
        return rows >= 2048 ? 4 : 2;
    case 2: /* Q8_0: 4 at every shape (H100, 2026-11-27, bench_cuda tg0, one call, alternated
               twice: 8B Q8_0 285.2, 284.1 -> 289.4, 289.2 against 2 rows for the q/k/v and
               output products). With the one-code activations (2026-11-28, bench_cuda --pp
               16 --tg 128, 8B Q8_0 tg0, each alternated in one call): 2 rows at every
               product 288.7, 287.9 and 1 row 279.8, 279.3 against 304.1, 303.6; 8 rows (a
               build with that kernel) 303.5, 303.8, 303.4 against 304.4, 304.4, 304.3 */
        return 4;
    case 3: /* Q4_0 */
        return rows >= 8192 ? 1 : 2;
    default: /* F16 */
        return rows >= 32768 ? 0 : 4;
    }
}

/* A launch's shared memory: the rings, and with bulk copies for G the stage barriers after them
 * (the kernels' limit is raised to include the barriers either way, mv_prep). */
template <class G, int R> size_t mv_launch_smem() {
    return mv_smem<G, R>() + (g_mv_bulk >> G::TI & 1 ? MV_BAR_BYTES : 0);
}

/* The dynamic shared-memory limit of both variants of mv_kernel<G, R, GLU>, and in *occ the
 * resident blocks per multiprocessor of the one launches take (XP's registers differ; set-up
 * runs again when the settings change). */
template <class G, int R, bool GLU = false> cudaError_t mv_prep(int *occ) {
    const int lim = (int)(mv_smem<G, R>() + MV_BAR_BYTES);
    cudaError_t e = cudaFuncSetAttribute(mv_kernel<G, R, GLU, false>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, lim);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(mv_kernel<G, R, GLU, true>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize, lim);
    const bool xp = (g_mv_xpf >> G::TI) & 1;
    if (e == cudaSuccess)
        e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(
            occ, xp ? mv_kernel<G, R, GLU, true> : mv_kernel<G, R, GLU, false>, MV_WARPS * 32,
            mv_launch_smem<G, R>());
    return e;
}

/* A per-type switch list a,b,c,d,e (1: on, anything else off; a shorter list: the rest off)
 * as a mask, bit ti for the type of index ti. */
static int mv_type_mask(const char *v) {
    int m = 0;
    for (int i = 0; i < MV_TYPES; i++) {
        if (*v && *v != ',' && *v != '0') m |= 1 << i;
        while (*v && *v != ',') v++;
        if (*v == ',') v++;
    }
    return m;
}

template <class G> cudaError_t mv_prep_all(int *occ) {
    cudaError_t e = mv_prep<G, 1>(&occ[0]);
    if (e == cudaSuccess) e = mv_prep<G, 2>(&occ[1]);
    if (e == cudaSuccess) e = mv_prep<G, 4>(&occ[2]);
    return e;
}

/* One wave of warps: row groups per slot (gpw) so that every slot is resident at once, and
 * ks warps per slot (1, 2, 4) while there are fewer than 16 warps per multiprocessor and each
 * warp keeps at least one chunk of a group. Tried and not kept (H100, 2026-11-26, Nsight
 * Compute, 8B Q8_0 gate/up: 448 blocks where 528 fit, cycles an SM was active min / avg / max
 * 69.8k / 90.0k / 107.6k): warps taking further row groups from a counter evened the SMs
 * (91.0k / 97.8k / 107.5k) yet the product took 58.0 us against 59.3 and the 8B Q4_K_M FFN
 * layer 58 against 51: placement does not bound it; nor did 2176-byte Q8_0 pieces (tg0 262.8
 * against 266-268) or an even static split of the groups over a whole wave. */
template <class G, int R, bool GLU = false>
cudaError_t mv_launch_r(cudaStream_t s, int occ, const rl__cu_mv_segs &sg, size_t row_bytes,
                        int64_t rows, int64_t K, typename G::XA x, const MvGlu &gl = MvGlu{}) {
    const int64_t groups = (rows + R - 1) / R, nch = K / G::VPC;
    const int64_t target = (int64_t)g_mv_sms * 16;
    const bool xp = (g_mv_xpf >> G::TI) & 1; /* occ is that variant's (mv_prep) */
    int ks = 1;
    while (!GLU && ks < MV_WARPS && groups * ks < target && nch >= 2 * ks) ks *= 2;
    int64_t gpw, slots;
    for (;;) {
        const int64_t wave = (int64_t)g_mv_sms * (occ > 0 ? occ : 1) * (MV_WARPS / ks);
        gpw = (groups + wave - 1) / wave;
        if (ks == 1 || gpw <= MV_KS_GROUPS) break;
        ks = 1;
    }
    slots = (groups + gpw - 1) / gpw;
    const unsigned grid = (unsigned)((slots + MV_WARPS / ks - 1) / (MV_WARPS / ks));
    const size_t smem = mv_launch_smem<G, R>();
    if (xp)
        (void)rlcu::launch(mv_kernel<G, R, GLU, true>, grid, MV_WARPS * 32, smem, s, sg, row_bytes,
                           rows, (int)gpw, (int)nch, ks, x, gl);
    else
        (void)rlcu::launch(mv_kernel<G, R, GLU>, grid, MV_WARPS * 32, smem, s, sg, row_bytes, rows,
                           (int)gpw, (int)nch, ks, x, gl);
    return cudaGetLastError();
}

/* ti: the type's index (rows per item), oi: its kernel's row of g_mv_occ */
template <class G>
cudaError_t mv_launch(cudaStream_t s, int ti, int oi, const rl__cu_mv_segs &sg, size_t row_bytes,
                      int64_t rows, int64_t K, typename G::XA x) {
    const int R = mv_rows_for(ti, rows, K);
    if (R >= 4) return mv_launch_r<G, 4>(s, g_mv_occ[oi][2], sg, row_bytes, rows, K, x);
    if (R == 2) return mv_launch_r<G, 2>(s, g_mv_occ[oi][1], sg, row_bytes, rows, K, x);
    return mv_launch_r<G, 1>(s, g_mv_occ[oi][0], sg, row_bytes, rows, K, x);
}

/* The gate/up product with the gated activation (GLU mode of mv_kernel), R 2 or 4. */
template <class G>
cudaError_t mv_glu_launch(cudaStream_t s, int ti, int gi, const rl__cu_mv_segs &sg,
                          size_t row_bytes, int64_t K, typename G::XA x, const MvGlu &gl) {
    const int R = mv_rows_for(ti, 2 * gl.F, K);
    if (R >= 4) return mv_launch_r<G, 4, true>(s, g_mv_glu_occ[gi][1], sg, row_bytes, 2 * gl.F, K, x, gl);
    return mv_launch_r<G, 2, true>(s, g_mv_glu_occ[gi][0], sg, row_bytes, 2 * gl.F, K, x, gl);
}

/* The streaming kernel of a type over the rows of sg (end[] set past nseg). */
cudaError_t mv_run(cudaStream_t s, int type, const rl__cu_mv_segs &sg, size_t row_bytes,
                   int64_t rows, int64_t K, const float *x, const void *xq) {
    const XQ xa = xq_of(type, xq, K);
    switch (type) {
    case RL_TYPE_Q4_K:
        if (g_mv_q8k && g_mv_q4k4 && K % MQ4_K5::VPC == 0)
            return mv_launch<MQ4_K5>(s, 0, MV_TYPES + 2, sg, row_bytes, rows, K, xa);
        return g_mv_q8k ? mv_launch<MQ4_K1>(s, 0, MV_TYPES, sg, row_bytes, rows, K, xa)
                        : mv_launch<MQ4_K>(s, 0, 0, sg, row_bytes, rows, K, xa);
    case RL_TYPE_Q6_K:
        return g_mv_q8k ? mv_launch<MQ6_K2>(s, 1, MV_TYPES + 1, sg, row_bytes, rows, K, xa)
                        : mv_launch<MQ6_K>(s, 1, 1, sg, row_bytes, rows, K, xa);
    case RL_TYPE_Q8_0:
        return mv_launch<MQ8_0>(s, 2, 2, sg, row_bytes, rows, K, xa);
    case RL_TYPE_Q4_0:
        return mv_launch<MQ4_0>(s, 3, 3, sg, row_bytes, rows, K, xa);
    case RL_TYPE_F16:
        return mv_launch<MF16>(s, 4, 4, sg, row_bytes, rows, K, x);
    default:
        return cudaErrorInvalidValue;
    }
}

/* mv2 (the balanced kernel): on per type (RUVLLM_CUDA_MV2=a,b,c,d,e for Q4_K, Q6_K, Q8_0,
 * Q4_0, F16, 1 = on; default all off, see above), the shared memory of a block
 * (RUVLLM_CUDA_MV2_KB, 32 to 220; from 116 every block takes all of it, so that no
 * multiprocessor holds two blocks of one product: a test of the placement question above),
 * its rows per item (mv2_rows_for). */
static bool g_mv2_on[MV_TYPES] = {false, false, false, false, false};
static size_t g_mv2_budget = (size_t)110 << 10;

int mv2_rows_for(int ti) {
    if (g_mv_rows[ti] > 0) return g_mv_rows[ti];
    return ti == 1 ? 1 : 2; /* Q6_K: 1680-byte chunks */
}

/* Warps of a block and its shared memory for rows over K / VPC chunks; 0 when fewer
 * than 4 warps' rings fit beside the partial sums. */
template <class G, int R> int mv2_shape(int64_t rows, int64_t nch, size_t *smem) {
    if (g_mv_sms <= 0) return 0;
    const size_t part = (((size_t)nch * (size_t)((rows + g_mv_sms - 1) / g_mv_sms + R) *
                          sizeof(float)) + 15) & ~(size_t)15;
    const size_t wb = mv2_warp_bytes<G, R>();
    if (part + 4 * wb > g_mv2_budget) return 0;
    size_t w = (g_mv2_budget - part) / wb;
    if (w > MV2_WMAX) w = MV2_WMAX;
    *smem = w * wb + part;
    return (int)w;
}

template <class G> int mv2_fits(int ti, int64_t rows, int64_t nch) {
    size_t sm;
    switch (mv2_rows_for(ti)) {
    case 1:
        return mv2_shape<G, 1>(rows, nch, &sm);
    case 2:
        return mv2_shape<G, 2>(rows, nch, &sm);
    default:
        return mv2_shape<G, 4>(rows, nch, &sm);
    }
}

template <class G, int R>
cudaError_t mv2_launch_r(cudaStream_t s, const rl__cu_mv_segs *sg, size_t row_bytes, int64_t rows,
                         int64_t K, typename G::XA x) {
    size_t smem = 0;
    const int64_t nch = K / G::VPC;
    const int w = mv2_shape<G, R>(rows, nch, &smem);
    if (w == 0) return cudaErrorInvalidValue;
    if (g_mv2_budget >= ((size_t)116 << 10)) smem = g_mv2_budget; /* one block per SM */
    (void)rlcu::launch(mv2_kernel<G, R>, (unsigned)g_mv_sms, w * 32, smem, s, *sg, row_bytes, rows,
                       (int)nch, x);
    return cudaGetLastError();
}

template <class G>
cudaError_t mv2_launch(cudaStream_t s, int ti, const rl__cu_mv_segs *sg, size_t row_bytes,
                       int64_t rows, int64_t K, typename G::XA x) {
    switch (mv2_rows_for(ti)) {
    case 1:
        return mv2_launch_r<G, 1>(s, sg, row_bytes, rows, K, x);
    case 2:
        return mv2_launch_r<G, 2>(s, sg, row_bytes, rows, K, x);
    default:
        return mv2_launch_r<G, 4>(s, sg, row_bytes, rows, K, x);
    }
}

template <class G, int R> cudaError_t mv2_prep() {
    return cudaFuncSetAttribute(mv2_kernel<G, R>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)g_mv2_budget);
}
template <class G> cudaError_t mv2_prep_all() {
    cudaError_t e = mv2_prep<G, 1>();
    if (e == cudaSuccess) e = mv2_prep<G, 2>();
    if (e == cudaSuccess) e = mv2_prep<G, 4>();
    return e;
}

/* The table index of a type, or -1. */
int mv_index(int type) {
    switch (type) {
    case RL_TYPE_Q4_K:
        return 0;
    case RL_TYPE_Q6_K:
        return 1;
    case RL_TYPE_Q8_0:
        return 2;
    case RL_TYPE_Q4_0:
        return 3;
    case RL_TYPE_F16:
        return 4;
    default:
        return -1;
    }
}

int mv_vpc(int ti) {
    static const int vpc[MV_TYPES] = {MQ4_K::VPC, MQ6_K::VPC, MQ8_0::VPC, MQ4_0::VPC, MF16::VPC};
    return ti < 0 ? 0 : vpc[ti];
}

/* Whether mv2 takes a product of type index ti (K a whole number of chunks). */
bool mv2_ok(int ti, int64_t rows, int64_t K) {
    if (ti < 0 || !g_mv2_on[ti] || g_mv_rows[ti] == 0 || rows <= 0 || K % mv_vpc(ti) ||
        K / mv_vpc(ti) > INT32_MAX / 2)
        return false;
    const int64_t nch = K / mv_vpc(ti);
    switch (ti) {
    case 0:
        return mv2_fits<MQ4_K>(ti, rows, nch) > 0;
    case 1:
        return mv2_fits<MQ6_K>(ti, rows, nch) > 0;
    case 2:
        return mv2_fits<MQ8_0>(ti, rows, nch) > 0;
    case 3:
        return mv2_fits<MQ4_0>(ti, rows, nch) > 0;
    default:
        return mv2_fits<MF16>(ti, rows, nch) > 0;
    }
}

cudaError_t mv2_run(cudaStream_t s, int type, const rl__cu_mv_segs *sg, size_t row_bytes,
                    int64_t rows, int64_t K, const float *x, const void *xq) {
    const XQ xa = xq_of(type, xq, K);
    switch (type) {
    case RL_TYPE_Q4_K:
        return g_mv_q8k ? mv2_launch<MQ4_K1>(s, 0, sg, row_bytes, rows, K, xa)
                        : mv2_launch<MQ4_K>(s, 0, sg, row_bytes, rows, K, xa);
    case RL_TYPE_Q6_K:
        return g_mv_q8k ? mv2_launch<MQ6_K2>(s, 1, sg, row_bytes, rows, K, xa)
                        : mv2_launch<MQ6_K>(s, 1, sg, row_bytes, rows, K, xa);
    case RL_TYPE_Q8_0:
        return mv2_launch<MQ8_0>(s, 2, sg, row_bytes, rows, K, xa);
    case RL_TYPE_Q4_0:
        return mv2_launch<MQ4_0>(s, 3, sg, row_bytes, rows, K, xa);
    case RL_TYPE_F16:
        return mv2_launch<MF16>(s, 4, sg, row_bytes, rows, K, x);
    default:
        return cudaErrorInvalidValue;
    }
}

} // namespace

extern "C" bool rl__cu_matvec_ok(int type, const void *w, size_t row_bytes, int64_t rows,
                                 int64_t K) {
    const int ti = mv_index(type), vpc = mv_vpc(ti);
    if (g_mv_on && g_mv_sms > 0 && (uintptr_t)w % 16 == 0 && row_bytes % 16 == 0 && mv2_ok(ti, rows, K))
        return true;
    return g_mv_on && g_mv_sms > 0 && vpc > 0 && mv_rows_for(ti, rows, K) > 0 && K % vpc == 0 &&
           K / vpc <= INT32_MAX / 2 && rows > 0 && (uintptr_t)w % 16 == 0 && row_bytes % 16 == 0;
}

extern "C" bool rl__cu_matvec_q8_type(int type) {
    return type == RL_TYPE_Q4_K || type == RL_TYPE_Q6_K || type == RL_TYPE_Q8_0 ||
           type == RL_TYPE_Q4_0;
}

/* matvec_multi: mv2 where RUVLLM_CUDA_MV2 turns it on for the type, else the streaming
 * kernel over the matrices one after the other (any rows per item: the joined rows are
 * many, so mv_rows_for's 0 for few rows does not apply). F16 products (float activations)
 * too, and their gate/up with the gated activation (rl__cu_matvec_glu): H100, 2026-11-26,
 * 1B F16 synth, tg128 without logits 727 -> 815 tok/s (RUVLLM_CUDA_MV_F16JOIN=0 vs on, same
 * binary), the same greedy tokens. */
extern "C" bool rl__cu_matvec_multi_ok(int type, const rl__cu_mv_segs *sg, int nseg,
                                       size_t row_bytes, int64_t K) {
    if (!g_mv_on || g_mv_sms <= 0 || nseg < 1 || nseg > RL_CU_MV_SEGS || row_bytes % 16) return false;
    for (int i = 0; i < nseg; i++)
        if ((uintptr_t)sg->w[i] % 16 || (i ? sg->end[i] <= sg->end[i - 1] : sg->end[0] <= 0))
            return false;
    const int ti = mv_index(type), vpc = mv_vpc(ti);
    if (mv2_ok(ti, sg->end[nseg - 1], K)) return true;
    return g_mv_multi && ti >= 0 && (rl__cu_matvec_q8_type(type) || type == RL_TYPE_F16) &&
           g_mv_rows[ti] != 0 &&
           K % vpc == 0 && K / vpc <= INT32_MAX / 2;
}

extern "C" cudaError_t rl__cu_matvec_multi(cudaStream_t s, int type, const rl__cu_mv_segs *sg,
                                           int nseg, size_t row_bytes, int64_t K, const float *x,
                                           const void *xq) {
    rl__cu_mv_segs g = *sg;
    const int64_t rows = g.end[nseg - 1];
    for (int i = nseg; i < RL_CU_MV_SEGS; i++) {
        g.w[i] = g.w[nseg - 1];
        g.y[i] = g.y[nseg - 1];
        g.end[i] = rows;
    }
    if (mv2_ok(mv_index(type), rows, K)) return mv2_run(s, type, &g, row_bytes, rows, K, x, xq);
    return mv_run(s, type, g, row_bytes, rows, K, x, xq);
}

/* The gate/up product with the gated activation and its quantization in the epilogue; the
 * quantized output goes to a buffer of its own (step.c), never the q8 workspace the
 * product's input sits in (other warps may still read that). H100, 2026-11-26: 8B Q4_K_M
 * tg128 289.2 -> 295.4 tok/s, 1B 774 -> 832 (same binary, RUVLLM_CUDA_MV_GLU=0 vs 1);
 * test_cuda_ops and test_cuda_model pass with it. */
extern "C" bool rl__cu_matvec_glu_ok(int type, const rl__cu_mv_segs *sg, size_t row_bytes,
                                     int64_t F, int64_t K) {
    const int ti = mv_index(type), vpc = mv_vpc(ti);
    const bool kind = type == RL_TYPE_Q4_K || type == RL_TYPE_Q8_0 || type == RL_TYPE_F16;
    return g_mv_on && g_mv_glu && g_mv_sms > 0 && kind && !mv2_ok(ti, 2 * F, K) &&
           g_mv_rows[ti] != 0 && F > 0 && F % 256 == 0 && F / 256 <= RL_CU_GLU_BLOCKS &&
           K % vpc == 0 && K / vpc <= INT32_MAX / 2 && row_bytes % 16 == 0 &&
           (uintptr_t)sg->w[0] % 16 == 0 && (uintptr_t)sg->w[1] % 16 == 0;
}

extern "C" cudaError_t rl__cu_matvec_glu(cudaStream_t s, int type, const rl__cu_mv_segs *sg,
                                         size_t row_bytes, int64_t F, int64_t K, const float *x,
                                         const void *xq, int act, float *out, void *out_xq,
                                         int out_xq_mode, int *cnt) {
    const XQ xa = xq_of(type, xq, K);
    const MvGlu gl = {out, static_cast<int8_t *>(out_xq), cnt, F, act, out_xq_mode};
    switch (type) {
    case RL_TYPE_Q4_K:
        if (g_mv_q8k && g_mv_q4k4 && K % MQ4_K5::VPC == 0)
            return mv_glu_launch<MQ4_K5>(s, 0, 4, *sg, row_bytes, K, xa, gl);
        return g_mv_q8k ? mv_glu_launch<MQ4_K1>(s, 0, 0, *sg, row_bytes, K, xa, gl)
                        : mv_glu_launch<MQ4_K>(s, 0, 1, *sg, row_bytes, K, xa, gl);
    case RL_TYPE_Q8_0:
        return mv_glu_launch<MQ8_0>(s, 2, 2, *sg, row_bytes, K, xa, gl);
    case RL_TYPE_F16:
        return mv_glu_launch<MF16>(s, 4, 3, *sg, row_bytes, K, x, gl);
    default:
        return cudaErrorInvalidValue;
    }
}

extern "C" cudaError_t rl__cu_matvec(cudaStream_t s, int type, const void *w, size_t row_bytes,
                                     int64_t rows, int64_t K, const float *x, const void *xq,
                                     float *y) {
    return rl__cu_matvec_host(s, type, w, row_bytes, rows, K, x, xq, y, NULL);
}

extern "C" cudaError_t rl__cu_matvec_host(cudaStream_t s, int type, const void *w,
                                          size_t row_bytes, int64_t rows, int64_t K,
                                          const float *x, const void *xq, float *y, float *yh) {
    const rl__cu_mv_segs sg = {{static_cast<const uint8_t *>(w), static_cast<const uint8_t *>(w),
                                static_cast<const uint8_t *>(w)},
                               {y, y, y},
                               {rows, rows, rows},
                               yh};
    if (mv2_ok(mv_index(type), rows, K)) return mv2_run(s, type, &sg, row_bytes, rows, K, x, xq);
    return mv_run(s, type, sg, row_bytes, rows, K, x, xq);
}

extern "C" void rl__cu_matvec_config(bool on, int type, int rows_per_item) {
    g_mv_on = on;
    const int ti = mv_index(type);
    if (ti >= 0) g_mv_rows[ti] = rows_per_item < 0 ? -1 : rows_per_item;
}

/* RUVLLM_CUDA_MV=0: every product to matmul.cu's kernels; RUVLLM_CUDA_MV_R=a,b,c,d,e: rows
 * per item for Q4_K, Q6_K, Q8_0, Q4_0, F16 at every shape (1, 2 or 4; 0 leaves the type
 * to matmul.cu; anything else: mv_rows_for's choice); RUVLLM_CUDA_MV_Q8K=0: Q4_K and Q6_K
 * read the residual codes too; RUVLLM_CUDA_MV_MULTI=0: no joined products without mv2;
 * RUVLLM_CUDA_MV_GLU=0: no gated activation in the gate/up product;
 * RUVLLM_CUDA_MV_Q4K4=0: Q4_K through MQ4_K1 (8 lanes a super-block) at every K;
 * RUVLLM_CUDA_MV_GLUEND=0: the gate/up product counts its gated values after every group
 * of rows (c_mv_glu_end); RUVLLM_CUDA_MV_BULK=a,b,c,d,e (1: on, per type as
 * RUVLLM_CUDA_MV_R; default 1,1,1,0,1; =0 all off): bulk copies (c_mv_bulk);
 * RUVLLM_CUDA_MV_XPF=a,b,c,d,e (the same; default 1,1,1,0,1): activations an item ahead
 * (g_mv_xpf). */
extern "C" cudaError_t rl__cu_init_matvec(void) {
    const char *e = getenv("RUVLLM_CUDA_MV"), *r = getenv("RUVLLM_CUDA_MV_R");
    const char *q8k = getenv("RUVLLM_CUDA_MV_Q8K"), *mm = getenv("RUVLLM_CUDA_MV_MULTI");
    const char *gu = getenv("RUVLLM_CUDA_MV_GLU"), *k4 = getenv("RUVLLM_CUDA_MV_Q4K4");
    g_mv_glu = !(gu && gu[0] == '0');
    g_mv_q4k4 = !(k4 && k4[0] == '0');
    g_mv_on = !(e && e[0] == '0');
    g_mv_q8k = !(q8k && q8k[0] == '0');
    g_mv_multi = !(mm && mm[0] == '0');
    const char *bk = getenv("RUVLLM_CUDA_MV_BULK"), *xf = getenv("RUVLLM_CUDA_MV_XPF");
    g_mv_bulk = mv_type_mask(bk ? bk : "1,1,1,0,1"); /* c_mv_bulk: all but Q4_0 */
    if (!rlcu::g_sm90) g_mv_bulk = 0;                 /* no bulk copies before sm_90 */
    g_mv_xpf = mv_type_mask(xf ? xf : "1,1,1,0,1"); /* all but Q4_0 */
    for (int i = 0; i < MV_TYPES; i++) g_mv_rows[i] = -1;
    for (int i = 0; r && *r && i < MV_TYPES; i++) {
        char *end;
        const long v = strtol(r, &end, 10);
        if (end == r) break;
        if (v == 0 || v == 1 || v == 2 || v == 4) g_mv_rows[i] = (int)v;
        r = *end == ',' ? end + 1 : end;
    }
    const char *m2 = getenv("RUVLLM_CUDA_MV2"), *kb = getenv("RUVLLM_CUDA_MV2_KB");
    for (int i = 0; i < MV_TYPES; i++) g_mv2_on[i] = false;
    if (m2 && m2[0] == '0' && m2[1] == '\0') {
        for (int i = 0; i < MV_TYPES; i++) g_mv2_on[i] = false;
    } else {
        for (int i = 0; m2 && *m2 && i < MV_TYPES; i++) {
            char *end;
            const long v = strtol(m2, &end, 10);
            if (end == m2) break;
            g_mv2_on[i] = v != 0;
            m2 = *end == ',' ? end + 1 : end;
        }
    }
    g_mv2_budget = (size_t)110 << 10;
    if (kb && atoi(kb) >= 32 && atoi(kb) <= 220) g_mv2_budget = (size_t)atoi(kb) << 10;
    int dev = 0;
    cudaError_t err = cudaGetDevice(&dev);
    if (err == cudaSuccess) err = cudaDeviceGetAttribute(&g_mv_sms, cudaDevAttrMultiProcessorCount, dev);
    /* RUVLLM_CUDA_MV_EF=0: the streaming kernel reads weights with the ordinary L2 policy */
    const char *ef = getenv("RUVLLM_CUDA_MV_EF");
    const int efv = !(ef && ef[0] == '0');
    if (err == cudaSuccess) err = cudaMemcpyToSymbol(c_mv_ef, &efv, sizeof efv);
    const char *ge = getenv("RUVLLM_CUDA_MV_GLUEND");
    const int gev = !(ge && ge[0] == '0');
    if (err == cudaSuccess) err = cudaMemcpyToSymbol(c_mv_glu_end, &gev, sizeof gev);
    if (err == cudaSuccess) err = cudaMemcpyToSymbol(c_mv_bulk, &g_mv_bulk, sizeof g_mv_bulk);
    if (err == cudaSuccess) err = mv_prep_all<MQ4_K>(g_mv_occ[0]);
    if (err == cudaSuccess) err = mv_prep_all<MQ6_K>(g_mv_occ[1]);
    if (err == cudaSuccess) err = mv_prep_all<MQ8_0>(g_mv_occ[2]);
    if (err == cudaSuccess) err = mv_prep_all<MQ4_0>(g_mv_occ[3]);
    if (err == cudaSuccess) err = mv_prep_all<MF16>(g_mv_occ[4]);
    if (err == cudaSuccess) err = mv_prep_all<MQ4_K1>(g_mv_occ[MV_TYPES]);
    if (err == cudaSuccess) err = mv_prep_all<MQ6_K2>(g_mv_occ[MV_TYPES + 1]);
    if (err == cudaSuccess) err = mv_prep_all<MQ4_K5>(g_mv_occ[MV_TYPES + 2]);
    if (err == cudaSuccess) err = mv_prep<MQ4_K5, 2, true>(&g_mv_glu_occ[4][0]);
    if (err == cudaSuccess) err = mv_prep<MQ4_K5, 4, true>(&g_mv_glu_occ[4][1]);
    if (err == cudaSuccess) err = mv2_prep_all<MQ4_K1>();
    if (err == cudaSuccess) err = mv2_prep_all<MQ6_K2>();
    if (err == cudaSuccess) err = mv_prep<MQ4_K1, 2, true>(&g_mv_glu_occ[0][0]);
    if (err == cudaSuccess) err = mv_prep<MQ4_K1, 4, true>(&g_mv_glu_occ[0][1]);
    if (err == cudaSuccess) err = mv_prep<MQ4_K, 2, true>(&g_mv_glu_occ[1][0]);
    if (err == cudaSuccess) err = mv_prep<MQ4_K, 4, true>(&g_mv_glu_occ[1][1]);
    if (err == cudaSuccess) err = mv_prep<MQ8_0, 2, true>(&g_mv_glu_occ[2][0]);
    if (err == cudaSuccess) err = mv_prep<MQ8_0, 4, true>(&g_mv_glu_occ[2][1]);
    if (err == cudaSuccess) err = mv_prep<MF16, 2, true>(&g_mv_glu_occ[3][0]);
    if (err == cudaSuccess) err = mv_prep<MF16, 4, true>(&g_mv_glu_occ[3][1]);
    if (err == cudaSuccess) err = mv2_prep_all<MQ4_K>();
    if (err == cudaSuccess) err = mv2_prep_all<MQ6_K>();
    if (err == cudaSuccess) err = mv2_prep_all<MQ8_0>();
    if (err == cudaSuccess) err = mv2_prep_all<MQ4_0>();
    if (err == cudaSuccess) err = mv2_prep_all<MF16>();
    if (err != cudaSuccess) g_mv_sms = 0; /* the row-group kernels take every product */
    return err;
}
