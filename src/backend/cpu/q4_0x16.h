/*
 * q4_0x16.h - Q4_0 weights repacked at load for the AVX-512 VNNI kernels ("Q4_0x16").
 *
 * The GGUF layout stores a Q4_0 row as blocks of 18 bytes (fp16 scale d, 16 code bytes).
 * The AVX-512 kernels (q4_0_avx512.h) work on groups of 16 blocks, one block per i32 lane,
 * and had to transpose each group's code bytes (16 128-bit inserts and 8 unpacks) and
 * gather its 16 scales every time a row met a token tile. Q4_0x16 stores each group as one
 * 288-byte chunk already in register order, four plain 64-byte loads and a 32-byte one:
 *
 *   chunk of group g of a row (n % 512 == 0 columns: n / 512 groups):
 *     codes  [4][64]  register d: bytes 4i..4i+3 = code bytes 4d..4d+3 of block
 *                     16g + Q4_0X16_BLK(i) (lane i of q40_tr16's output)
 *     scales [16]     fp16 d of block 16g + Q4_0X16_BLK(i)
 *
 * A matrix of R rows keeps its R * n/32 * 18 bytes: its rows go in tiles of
 * Q4_0X16_ROWS (6), whose chunks are interleaved (tile k at byte 6k * row_bytes: group 0
 * of its six rows, group 1 of its six rows, ...), so a kernel working on a tile reads
 * memory in order, which the hardware prefetchers follow (a 2-row tile reading separate
 * rows streamed from DRAM at half the rate of a 3-row interleaved one). The
 * R % Q4_0X16_ROWS rows after the last whole tile are plain: row r at r * row_bytes, its
 * chunks in order.
 *
 * The codes are the file's bytes (low nibble: element j, high nibble: element j + 16), so
 * the layout permutes the matrix's bytes and rl__q4_0x16_unpack restores the file's
 * blocks exactly. A matrix whose rows are not whole groups keeps the GGUF layout.
 *
 * The kernels over it (q4_0x16_avx512.c) give results bit-identical to the AVX-512 kernels
 * over the GGUF layout (rl__gemv_q4_0_avx512 and the Q4_0 tiles): each block's integer sum
 * is exact whichever way it is computed, and the float work (conversion, the product of
 * the scales, the FMA per lane and group, the final reduction) is the same, lane for lane.
 */
#ifndef RL_BACKEND_CPU_Q4_0X16_H
#define RL_BACKEND_CPU_Q4_0X16_H

#include "cpu.h"

#define Q4_0X16_GROUP_COLS 512 /* 16 blocks of 32 */
#define Q4_0X16_CHUNK 288      /* bytes of a group: 256 of codes, 32 of scales */
#define Q4_0X16_ROWS 6         /* rows per interleaved tile (the tile kernel's rows) */
/* Block of group lane i (the order of q40_tr16, q4_0_avx512.h). */
#define Q4_0X16_BLK(i) (4 * ((i) % 4) + (i) / 4)

/* True when rows of n columns of type t have the Q4_0x16 layout (t Q4_0, n % 512 == 0). */
bool rl__q4_0x16_fits(rl_type t, int64_t n);
/* A matrix of rows x n: GGUF Q4_0 at src -> Q4_0x16 at dst, and back (plain C; the
 * buffers do not overlap; n must fit). */
void rl__q4_0x16_pack(const void *src, void *dst, int64_t n, int64_t rows);
void rl__q4_0x16_unpack(const void *src, void *dst, int64_t n, int64_t rows);
/* Where row r of a Q4_0x16 matrix of rows x n at x starts, and the bytes from one of its
 * chunks to the next (*stride). */
const uint8_t *rl__q4_0x16_row(const void *x, int64_t n, int64_t rows, int64_t r,
                               size_t *stride);
/* One row (rl__q4_0x16_row) as float (get_rows of a packed weight). */
void rl__q4_0x16_to_float(const uint8_t *row, size_t stride, float *y, int64_t n);
/* The reference dot of one row (rl__q4_0x16_row) with a Q8_0 row: equal, bit for bit, to
 * rl__vec_dot_q4_0_ref of the GGUF row (the same sums in the same block order). */
float rl__vec_dot_q4_0x16_ref(int64_t n, const uint8_t *row, size_t stride, const void *y);

/* ---- AVX-512 VNNI kernels (q4_0x16_avx512.c) --------------------------------------------
 * The activations come as matmul's split row (cpu.h) whose offsets area the prep fills
 * with RL__Q4_0X16_OFF_BYTES(n) bytes: per group, the 512 code bytes transposed as the
 * weights' lanes (q40_tr16) and the 16 lanes' -8 * sum(y) as int32. The weights meet the
 * activations unsigned (codes 0..15 as vpdpbusd's u8 operand, the activations as its s8
 * operand, read from memory), so the offset 8 of Q4_0 is the activation term alone.
 * The gemv takes a plain row (the rows after the last tile); the tile kernel (cpu.h's
 * rl__gemm_fn contract) takes x at a tile's start (xst unused): Q4_0X16_ROWS rows x nt <=
 * RL__GEMM_Q4_0X16_TOKS tokens, also for one token. */
#define RL__Q4_0X16_OFF_BYTES(n) ((size_t)(n) / 512 * 576)
void rl__gemv_prep_q4_0x16_avx512(const int8_t *yqs, int64_t n, int32_t *yoff);
float rl__gemv_q4_0x16_avx512(int64_t n, const void *x, const int8_t *yqs, const float *yd,
                              const float *ys, const int32_t *yoff);
/* The tile takes up to 8 tokens a call: k-segments of 4 groups (every token's activations
 * of a segment stay in L1), each multiplied in passes of 3 rows x 4 tokens (12 integer and
 * 12 float accumulators) that load each activation register once for 3 rows and each code
 * register once for 4 tokens, while the next tile's bytes are prefetched evenly over the
 * passes. One token: the rows one after the other (memory bound). Zen 5, one thread,
 * 72 MiB streamed, 8 tokens: 6 x 3 tile 212-219 -> 247-251 GMAC/s; 2 threads 441-447 ->
 * 478-520 (2,048 columns), 385 -> 454-461 (8,192 columns), load ~6. */
#define RL__GEMM_Q4_0X16_TOKS 8
#define RL__GEMM_Q4_0X16_PASS_TOKS 4
void rl__gemm_q4_0x16_avx512(int64_t n, int nt, const void *x, size_t xst, const uint8_t *ys,
                             size_t yst, float *out, size_t ost);
/* The tile for prompts (more than RL__GEMM_Q4_0X16_TOKS tokens a product): 6 rows x 3
 * tokens, the activations read from L1 by each product (compute bound there; see the
 * .c). Bit-identical to the above. */
#define RL__GEMM_Q4_0X16_MANY_TOKS 3
void rl__gemm_q4_0x16_6x3_avx512(int64_t n, int nt, const void *x, size_t xst,
                                 const uint8_t *ys, size_t yst, float *out, size_t ost);

/* The kernels matmul uses for a Q4_0x16 weight of type t on path isa; false when the path
 * has none (the caller reads the GGUF copy instead). Every token count goes through the
 * tile kernel (gemm_rows rows at a time: rl_matmul's chunks are whole tiles), the gemv
 * takes the plain rows after the last tile. */
typedef struct rl__packed_kernels {
    rl__gemv_fn gemv;
    rl__gemv_prep_fn prep;
    rl__gemm_fn gemm;
    int gemm_rows, gemm_toks;
    rl__gemm_fn gemm_many; /* NULL, or the tile for products of more than gemm_toks tokens */
    int gemm_many_toks;
} rl__packed_kernels;
bool rl__packed_kernels_get(rl_type t, rl_cpu_isa isa, rl__packed_kernels *k);

#endif /* RL_BACKEND_CPU_Q4_0X16_H */
