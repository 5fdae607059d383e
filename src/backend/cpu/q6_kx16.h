/*
 * q6_kx16.h - Q6_K weights repacked at load for an AVX-512 VNNI tile with one weight row
 * per i32 lane ("Q6_Kx16").
 *
 * The GGUF kernels of Q6_K (dot_k_avx512.c, gemm_avx512.c) unpack 64 codes of one row per
 * zmm in element order and, per token, sum them with vpdpbusd, pack the sums to words and
 * apply the 16 sub-block scales with vpdpwssd, fold in the -32 offset through the bsums and
 * finish with one float product per super-block: about 14 instructions per token and 256
 * weights. Q6_Kx16 puts 16 rows side by side instead, one row per i32 lane, so a token's
 * four activations broadcast to all lanes meet four elements of 16 rows at once (and a
 * tile's two groups of 16 rows share the broadcast): per token and sub-block of 16
 * elements x 16 rows, four
 * vpdpbusd started from -32 * bsum (the offset, exact), one vpmulld by the rows' int8
 * scales and one vpaddd; the float work is once per super-block and 16 rows.
 *
 * A matrix of R rows x n columns (n % 256 == 0, nb = n / 256 super-blocks) keeps its
 * R * nb * 210 bytes. Its rows go in tiles of Q6_KX16_ROWS (32: two groups h of 16 lanes,
 * so each broadcast activation serves two registers of weights); tile t starts at byte
 * 32 t * row_bytes and holds one chunk of Q6_KX16_CHUNK (6,720 = 32 * 210) bytes per
 * super-block g, in order:
 *   codes  [16 k][2 h][3 e][16 r][4 j]  byte (384 k + 192 h + 64 e + 4 r + j) =
 *                                       c(16h + r, 16k + 4e + j)
 *                                       | ((c(16h + r, 16k + 12 + j) >> 2e) & 3) << 6
 *   scales [16 k][2 h][16 r]            int8 scale of sub-block k of row 16h + r
 *   d      [2 h][16 r]                  fp16 d of row 16h + r
 * where c(i, x) is the 6-bit code (0..63) of element x of super-block g of row 32 t + i.
 * Register e < 3 of sub-block k and group h is its 64 bytes & 63; register 3 (elements
 * 16k + 12..15) gathers the top two bits of the three. Every 64-byte load is aligned when
 * the tile is (32 * 210 * nb is a multiple of 64). The R % 32 rows after the last whole
 * tile keep the GGUF layout at their own offsets (row r at r * row_bytes), so matmul
 * multiplies them with the GGUF kernels.
 *
 * Results: each (row, token) int32 super-block sum is exact, and the float work is the
 * plain-C reference's (rl__vec_dot_q6_K_ref): acc += (d_x * d_y) * (float)isum per
 * super-block in order, no fused multiply-add; so the tile equals the reference bit for
 * bit (the GGUF AVX-512 kernels differ from the reference in the order of their float
 * additions: they keep 16 partial sums per row).
 */
#ifndef RL_BACKEND_CPU_Q6_KX16_H
#define RL_BACKEND_CPU_Q6_KX16_H

#include "cpu.h"

#define Q6_KX16_LANES 16    /* rows per register, one per i32 lane */
#define Q6_KX16_ROWS 32     /* rows per tile: two registers' worth */
#define Q6_KX16_CHUNK 6720  /* bytes of one super-block of a tile's 32 rows */
#define Q6_KX16_SCALES 6144 /* offset of a chunk's scales */
#define Q6_KX16_D 6656      /* offset of a chunk's d */
#define Q6_KX16_TOKS 8      /* tokens per tile pass */

/* True when rows of n columns of type t have the Q6_Kx16 layout (t Q6_K, n % 256 == 0;
 * rl__cpu_pack_weights also wants one whole tile, Q6_KX16_ROWS rows). */
bool rl__q6_kx16_fits(rl_type t, int64_t n);
/* A matrix of rows x n: GGUF Q6_K at src -> Q6_Kx16 at dst, and back (plain C; the
 * buffers do not overlap; n must fit). */
void rl__q6_kx16_pack(const void *src, void *dst, int64_t n, int64_t rows);
void rl__q6_kx16_unpack(const void *src, void *dst, int64_t n, int64_t rows);
/* Row r of a Q6_Kx16 matrix of rows x n at x, as float (get_rows of a packed weight). */
void rl__q6_kx16_to_float(const void *x, int64_t n, int64_t rows, int64_t r, float *y);

/* The AVX-512 VNNI tile (q6_kx16_avx512.c, cpu.h's rl__gemm_fn contract): x at a tile's
 * start (xst unused), Q6_KX16_ROWS rows x nt <= Q6_KX16_TOKS tokens of Q8_K rows ys, yst
 * bytes apart; out[t * ost + r]. Also for one token. */
void rl__gemm_q6_kx16_avx512(int64_t n, int nt, const void *x, size_t xst, const uint8_t *ys,
                             size_t yst, float *out, size_t ost);

#endif /* RL_BACKEND_CPU_Q6_KX16_H */
