/*
 * mmq_layout.cuh - the layout of the quantized activations that mmq.cu's products read
 * (their workspace; mmq.cu's header comment describes it), as device functions for the
 * kernels that write it: the sizes of its two parts, where a token's codes and scales go,
 * and the two quantizations of a lane's 8 consecutive values.
 *
 * Tokens in tiles of 8 (ntl = ceil(n / 8); tokens n .. 8 ntl - 1 have zero codes and
 * scales). For each 32-value block kb and tile j, 256 bytes of codes in the order of the
 * mma's B fragment: lane 4 g + t of the reading warp holds token 8 j + g's values
 * 4t..4t+3 and 16+4t..16+4t+3 (an 8-byte word pair), so word w of the block (values
 * 4w..4w+3) of token tok is 32-bit word (32 (kb ntl + tok / 8) + 4 (tok % 8) + w % 4) 2
 * + w / 4. Then, 256-byte aligned after the codes, a float2 (d, sum) for each (kb, token):
 * index 8 (kb ntl + tok / 8) + tok % 8. sum is d times the sum of the block's codes.
 *
 * The writers give each lane 8 consecutive values of a token (values 8m..8m+7 of a block
 * of 32, m = lane % 4: words 2m and 2m + 1), aligned groups of 4 lanes per block, so that
 * a warp holds 256 values (a Q8_K block). Two roundings (rl__cu_mmq_xmode):
 * - per 32 (mode 0, Q4_0 / Q8_0 weights): d = amax / 127, codes round-to-nearest-even of
 *   v * (127 / amax) (Q8_0's rounding of llama.cpp's CPU activations);
 * - per 256 (mode 1, Q4_K / Q6_K weights): Q8_K's codes and scale (rl__quant_q8_K:
 *   iscale = -127 / the signed value of largest magnitude, codes min(127, rne(iscale v)),
 *   d = 1 / iscale), each block of 32 with the 256's d and the sum of its own codes.
 * mmq.cu's own quantization kernel (mmq_quant_kernel) writes through these functions too.
 */
#ifndef RL_BACKEND_CUDA_MMQ_LAYOUT_CUH
#define RL_BACKEND_CUDA_MMQ_LAYOUT_CUH

#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

#include "qtypes.cuh"

namespace rlcu {

/* Tiles of 8 tokens for n tokens. */
__host__ __device__ constexpr int mmq_ntl(int64_t n) { return (int)((n + 7) / 8); }

/* Bytes of the codes (K values a token, ntl tiles), 256-byte aligned: the scales follow. */
__host__ __device__ constexpr size_t mmq_codes_bytes(int64_t K, int ntl) {
    return ((size_t)ntl * 8 * (size_t)K + 255) / 256 * 256;
}

/* Bytes of the scales, 256-byte aligned (the products' partial sums follow). */
__host__ __device__ constexpr size_t mmq_scales_bytes(int64_t K, int ntl) {
    return ((size_t)(K / 32) * (size_t)ntl * 8 * 8 + 255) / 256 * 256;
}

/* The 32-bit word holding word w (values 4w..4w+3, w < 8) of block kb of token tok. */
__device__ __forceinline__ int64_t mmq_word_at(int64_t kb, int ntl, int64_t tok, int w) {
    const int64_t tile = kb * ntl + tok / 8;
    return (tile * 32 + 4 * (tok & 7) + (w & 3)) * 2 + (w >> 2);
}

/* The float2 (d, sum) of block kb of token tok. */
__device__ __forceinline__ int64_t mmq_scale_at(int64_t kb, int ntl, int64_t tok) {
    return (kb * ntl + tok / 8) * 8 + (tok & 7);
}

/* A lane's part of block kb of token tok: codes c (values 8m..8m+7 of the block), and from
 * the group's first lane (m == 0) the block's d and sum. */
__device__ __forceinline__ void mmq_put8(uint32_t *q, float2 *sc, int64_t kb, int ntl, int64_t tok,
                                         int m, uint2 c, float d, float sum) {
    q[mmq_word_at(kb, ntl, tok, 2 * m)] = c.x;
    q[mmq_word_at(kb, ntl, tok, 2 * m + 1)] = c.y;
    if (m == 0) sc[mmq_scale_at(kb, ntl, tok)] = make_float2(d, sum);
}

/* The sum of the 8 signed codes of c plus those of the other 3 lanes of its group of 4. */
__device__ __forceinline__ int mmq_group_csum(uint2 c) {
    int s = 0;
#pragma unroll
    for (int i = 0; i < 4; i++) s += (int)(int8_t)(c.x >> (8 * i)) + (int)(int8_t)(c.y >> (8 * i));
    s += __shfl_xor_sync(0xffffffffu, s, 1);
    s += __shfl_xor_sync(0xffffffffu, s, 2);
    return s;
}

/* Per-32 rounding (mode 0) of the lane's 8 values v; the whole warp calls it. *d: its
 * block's scale, returned codes, *sum: d times the block's code sum. */
__device__ __forceinline__ uint2 mmq_quant32(const float v[8], float *d, float *sum) {
    float amax = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; j++) amax = fmaxf(amax, fabsf(v[j]));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
    amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
    const float dd = amax / 127.0f, id = amax > 0.0f ? 127.0f / amax : 0.0f;
    uint32_t h[2] = {0, 0};
#pragma unroll
    for (int j = 0; j < 8; j++)
        h[j >> 2] |= (uint32_t)(__float2int_rn(v[j] * id) & 0xff) << (8 * (j & 3));
    const uint2 c = make_uint2(h[0], h[1]);
    *d = dd;
    *sum = dd * (float)mmq_group_csum(c);
    return c;
}

/* Per-256 rounding (mode 1): Q8_K over the warp's 256 values (lane l: values 8l..8l+7),
 * the scale from q8k_vmax (qtypes.cuh: q8k_warp's first part, the same bits). Every lane
 * gets d and its block's sum. */
__device__ __forceinline__ uint2 mmq_quant256(const float v[8], float *d, float *sum) {
    const float vmax = q8k_vmax(v);
    uint32_t h[2] = {0, 0};
    float dd = 0.0f;
    if (vmax != 0.0f) {
        const float iscale = __fdiv_rn(-127.0f, vmax);
#pragma unroll
        for (int j = 0; j < 8; j++) {
            const int c = min(127, __float2int_rn(__fmul_rn(iscale, v[j])));
            h[j >> 2] |= (uint32_t)(c & 0xff) << (8 * (j & 3));
        }
        dd = __fdiv_rn(1.0f, iscale);
    }
    const uint2 c = make_uint2(h[0], h[1]);
    *d = dd;
    *sum = dd * (float)mmq_group_csum(c);
    return c;
}

} // namespace rlcu

#endif /* RL_BACKEND_CUDA_MMQ_LAYOUT_CUH */
