/*
 * q4_0x16.h - Q4_0 weights repacked at load for the AVX-512 VNNI kernels ("Q4_0x16").
 *
 * The GGUF layout stores a Q4_0 row as blocks of 18 bytes (fp16 scale d, 16 code bytes).
 * The AVX-512 kernels (q4_0_avx512.h) work on groups of 16 blocks, one block per i32 lane,
 * and had to transpose each group's code bytes (16 128-bit inserts and 8 unpacks) and
 * gather its 16 scales every time a row met a token tile. Q4_0x16 stores a row already in
 * that register order, so a group is four plain 64-byte loads and one 32-byte load:
 *
 *   row of n columns (n % 512 == 0), G = n / 512 groups, the same n/32 * 18 bytes:
 *     codes  [G][4][64]  register d of group g: bytes 4i..4i+3 = code bytes 4d..4d+3 of
 *                        block 16g + Q4_0X16_BLK(i) (lane i of q40_tr16's output)
 *     scales [G][16]     fp16 d of block 16g + Q4_0X16_BLK(i)
 *
 * The codes are the file's bytes (low nibble: element j, high nibble: element j + 16), so
 * the layout is a permutation of the row's bytes and rl__q4_0x16_unpack_rows restores the
 * file's blocks exactly. A row that is not a whole number of groups keeps the GGUF layout.
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
/* Block of group lane i (the order of q40_tr16, q4_0_avx512.h). */
#define Q4_0X16_BLK(i) (4 * ((i) % 4) + (i) / 4)

/* True when rows of n columns of type t have the Q4_0x16 layout (t Q4_0, n % 512 == 0). */
bool rl__q4_0x16_fits(rl_type t, int64_t n);
/* rows rows of n columns: GGUF Q4_0 at src -> Q4_0x16 at dst, and back (plain C; the
 * buffers do not overlap; n must fit). */
void rl__q4_0x16_pack_rows(const void *src, void *dst, int64_t n, int64_t rows);
void rl__q4_0x16_unpack_rows(const void *src, void *dst, int64_t n, int64_t rows);
/* One Q4_0x16 row of n columns as float (get_rows of a packed weight). */
void rl__q4_0x16_to_float(const void *x, float *y, int64_t n);
/* The reference dot of a Q4_0x16 row with a Q8_0 row: equal, bit for bit, to
 * rl__vec_dot_q4_0_ref of the unpacked row (the same sums in the same block order). */
float rl__vec_dot_q4_0x16_ref(int64_t n, const void *x, const void *y);

/* ---- AVX-512 VNNI kernels (q4_0x16_avx512.c) --------------------------------------------
 * The activations come as matmul's split row (cpu.h) whose offsets area the prep fills
 * with RL__Q4_0X16_OFF_BYTES(n) bytes: per group, the 512 code bytes transposed as the
 * weights' lanes (q40_tr16) and the 16 lanes' -8 * sum(y) as int32. The weights meet the
 * activations unsigned (codes 0..15 as vpdpbusd's u8 operand, the activations as its s8
 * operand, read from memory), so the offset 8 of Q4_0 is the activation term alone. */
#define RL__Q4_0X16_OFF_BYTES(n) ((size_t)(n) / 512 * 576)
void rl__gemv_prep_q4_0x16_avx512(const int8_t *yqs, int64_t n, int32_t *yoff);
float rl__gemv_q4_0x16_avx512(int64_t n, const void *x, const int8_t *yqs, const float *yd,
                              const float *ys, const int32_t *yoff);
/* Tile of RL__GEMM_Q4_0X16_ROWS rows x nt <= RL__GEMM_Q4_0X16_TOKS tokens (cpu.h's
 * rl__gemm_fn contract, x in Q4_0x16). */
#define RL__GEMM_Q4_0X16_ROWS 2
#define RL__GEMM_Q4_0X16_TOKS 8
void rl__gemm_q4_0x16_avx512(int64_t n, int nt, const void *x, size_t xst, const uint8_t *ys,
                             size_t yst, float *out, size_t ost);

/* The kernels matmul uses for a Q4_0x16 weight of type t on path isa; false when the path
 * has none (the caller reads the GGUF copy instead). */
typedef struct rl__packed_kernels {
    rl__gemv_fn gemv;
    rl__gemv_prep_fn prep;
    rl__gemm_fn gemm;
    int gemm_rows, gemm_toks;
} rl__packed_kernels;
bool rl__packed_kernels_get(rl_type t, rl_cpu_isa isa, rl__packed_kernels *k);

#endif /* RL_BACKEND_CPU_Q4_0X16_H */
