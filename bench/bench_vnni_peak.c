/*
 * bench_vnni_peak.c - the core's own peak for the instructions of the Q4_0 VNNI kernels
 * (src/backend/cpu/q4_0x16_avx512.c): back-to-back independent vpdpbusd zmm per cycle, the
 * same with the signed operand from L1, 512-bit loads per cycle, and the mixes the Q4_0x16
 * tile issues (nibble unpack, the float work of a group), so a kernel's GMAC/s can be read
 * as a fraction of what the core can do.
 *
 *   bench_vnni_peak [--iters N]
 *
 * No cycle counters under the hypervisor: the clock is measured with a chain of dependent
 * scalar adds (one cycle each on any x86 core) and every loop's time is given in those
 * cycles. Inline assembly, so the compiler neither drops nor reorders the measured
 * instructions (the functions are compiled for AVX-512 so that zmm16.. can be named; run
 * it only on such a core); one thread (run it next to a copy of itself for two cores). Each line is
 * JSON: instructions of interest per cycle and, for vpdpbusd, GMAC/s (64 MACs each).
 *
 * AMD EPYC Zen 5 (family 26), one core, ~4 GHz, best of 11 under load ~3: vpdpbusd zmm 2 a
 * cycle (510-531 GMAC/s), latency 4; 2 64-byte loads a cycle; vfmadd231ps and vmulps issue
 * on the vpdpbusd pipes (8 vpdpbusd + 8 FMA: 1 vpdpbusd a cycle). A 3-row x 4-token group
 * of the Q4_0x16 tile: 1.5 vpdpbusd a cycle with aligned codes (381 GMAC/s), 1.35 with the
 * layout's codes 32 bytes into a line (343), 1.58 with the float accumulators in registers
 * (402); the same steps without the float work of the group: 2.0 (510).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint8_t g_buf[16384] __attribute__((aligned(64)));

#define STR_(x) #x
#define STR(x) STR_(x)
#define REP 64 /* bodies per loop iteration */

/* 12 independent accumulators zmm0..zmm11 (a tile's accumulators), operands zmm12.. */
#define DP12_RR                                                                              \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm0\n vpdpbusd %%zmm12, %%zmm13, %%zmm1\n"                 \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm2\n vpdpbusd %%zmm12, %%zmm13, %%zmm3\n"                 \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm4\n vpdpbusd %%zmm12, %%zmm13, %%zmm5\n"                 \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm6\n vpdpbusd %%zmm12, %%zmm13, %%zmm7\n"                 \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm8\n vpdpbusd %%zmm12, %%zmm13, %%zmm9\n"                 \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm10\n vpdpbusd %%zmm12, %%zmm13, %%zmm11\n"
/* the same with distinct sources (a tile's code and activation registers) */
#define DP12_RR_DIST                                                                         \
    "vpdpbusd %%zmm12, %%zmm16, %%zmm0\n vpdpbusd %%zmm13, %%zmm16, %%zmm1\n"                 \
    "vpdpbusd %%zmm14, %%zmm16, %%zmm2\n vpdpbusd %%zmm15, %%zmm16, %%zmm3\n"                 \
    "vpdpbusd %%zmm12, %%zmm17, %%zmm4\n vpdpbusd %%zmm13, %%zmm17, %%zmm5\n"                 \
    "vpdpbusd %%zmm14, %%zmm17, %%zmm6\n vpdpbusd %%zmm15, %%zmm17, %%zmm7\n"                 \
    "vpdpbusd %%zmm12, %%zmm18, %%zmm8\n vpdpbusd %%zmm13, %%zmm18, %%zmm9\n"                 \
    "vpdpbusd %%zmm14, %%zmm18, %%zmm10\n vpdpbusd %%zmm15, %%zmm18, %%zmm11\n"
/* one step d of a 3-row x 4-token pass: 4 activation loads, 3 code loads + unpack
 * (and), 12 vpdpbusd */
#define PASS_STEP                                                                            \
    "vmovdqu64 0(%1), %%zmm12\n vmovdqu64 64(%1), %%zmm13\n"                                 \
    "vmovdqu64 128(%1), %%zmm14\n vmovdqu64 192(%1), %%zmm15\n"                              \
    "vpandd 1024(%1), %%zmm22, %%zmm16\n"                                                     \
    "vpdpbusd %%zmm12, %%zmm16, %%zmm0\n vpdpbusd %%zmm13, %%zmm16, %%zmm1\n"                 \
    "vpdpbusd %%zmm14, %%zmm16, %%zmm2\n vpdpbusd %%zmm15, %%zmm16, %%zmm3\n"                 \
    "vpandd 1088(%1), %%zmm22, %%zmm17\n"                                                     \
    "vpdpbusd %%zmm12, %%zmm17, %%zmm4\n vpdpbusd %%zmm13, %%zmm17, %%zmm5\n"                 \
    "vpdpbusd %%zmm14, %%zmm17, %%zmm6\n vpdpbusd %%zmm15, %%zmm17, %%zmm7\n"                 \
    "vpandd 1152(%1), %%zmm22, %%zmm18\n"                                                     \
    "vpdpbusd %%zmm12, %%zmm18, %%zmm8\n vpdpbusd %%zmm13, %%zmm18, %%zmm9\n"                 \
    "vpdpbusd %%zmm14, %%zmm18, %%zmm10\n vpdpbusd %%zmm15, %%zmm18, %%zmm11\n"
/* A whole group of a 3-row x 4-token pass as the tile issues it: 12 offset loads, 8 steps
 * (4 activation loads, 3 code loads + unpack, 12 vpdpbusd), the float work of 12
 * (row, token) pairs with the float accumulators in L1. CODE: the codes' offset from a
 * cache line (the Q4_0x16 chunks are 288 bytes: every other row's codes sit 32 bytes into
 * a line, so each of their loads touches two lines). */
#define G_STEP_LO(d, CODE)                                                                   \
    "vmovdqu64 " #d "*64(%1), %%zmm12\n vmovdqu64 " #d "*64+576(%1), %%zmm13\n"                \
    "vmovdqu64 " #d "*64+1152(%1), %%zmm14\n vmovdqu64 " #d "*64+1728(%1), %%zmm15\n"          \
    "vpandd " #d "*64+4096+" #CODE "(%1), %%zmm22, %%zmm16\n"                                  \
    "vpandd " #d "*64+4096+320+" #CODE "(%1), %%zmm22, %%zmm17\n"                              \
    "vpandd " #d "*64+4096+640+" #CODE "(%1), %%zmm22, %%zmm18\n"                              \
    "vpdpbusd %%zmm12, %%zmm16, %%zmm0\n vpdpbusd %%zmm13, %%zmm16, %%zmm1\n"                 \
    "vpdpbusd %%zmm14, %%zmm16, %%zmm2\n vpdpbusd %%zmm15, %%zmm16, %%zmm3\n"                 \
    "vpdpbusd %%zmm12, %%zmm17, %%zmm4\n vpdpbusd %%zmm13, %%zmm17, %%zmm5\n"                 \
    "vpdpbusd %%zmm14, %%zmm17, %%zmm6\n vpdpbusd %%zmm15, %%zmm17, %%zmm7\n"                 \
    "vpdpbusd %%zmm12, %%zmm18, %%zmm8\n vpdpbusd %%zmm13, %%zmm18, %%zmm9\n"                 \
    "vpdpbusd %%zmm14, %%zmm18, %%zmm10\n vpdpbusd %%zmm15, %%zmm18, %%zmm11\n"
#define G_STEP_HI(d, CODE)                                                                   \
    "vmovdqu64 " #d "*64+256(%1), %%zmm12\n vmovdqu64 " #d "*64+832(%1), %%zmm13\n"           \
    "vmovdqu64 " #d "*64+1408(%1), %%zmm14\n vmovdqu64 " #d "*64+1984(%1), %%zmm15\n"         \
    "vpsrlw $4, " #d "*64+4096+" #CODE "(%1), %%zmm16\n vpandd %%zmm22, %%zmm16, %%zmm16\n"  \
    "vpsrlw $4, " #d "*64+4096+320+" #CODE "(%1), %%zmm17\n vpandd %%zmm22, %%zmm17, %%zmm17\n" \
    "vpsrlw $4, " #d "*64+4096+640+" #CODE "(%1), %%zmm18\n vpandd %%zmm22, %%zmm18, %%zmm18\n" \
    "vpdpbusd %%zmm12, %%zmm16, %%zmm0\n vpdpbusd %%zmm13, %%zmm16, %%zmm1\n"                 \
    "vpdpbusd %%zmm14, %%zmm16, %%zmm2\n vpdpbusd %%zmm15, %%zmm16, %%zmm3\n"                 \
    "vpdpbusd %%zmm12, %%zmm17, %%zmm4\n vpdpbusd %%zmm13, %%zmm17, %%zmm5\n"                 \
    "vpdpbusd %%zmm14, %%zmm17, %%zmm6\n vpdpbusd %%zmm15, %%zmm17, %%zmm7\n"                 \
    "vpdpbusd %%zmm12, %%zmm18, %%zmm8\n vpdpbusd %%zmm13, %%zmm18, %%zmm9\n"                 \
    "vpdpbusd %%zmm14, %%zmm18, %%zmm10\n vpdpbusd %%zmm15, %%zmm18, %%zmm11\n"
#define G_FLOAT(i, dxr, dyo)                                                                 \
    "vcvtdq2ps %%zmm" #i ", %%zmm" #i "\n vmulps " #dyo "(%1), %%zmm" dxr ", %%zmm23\n"        \
    "vfmadd213ps 6144+" #i "*64(%1), %%zmm23, %%zmm" #i "\n vmovaps %%zmm" #i ", 6144+" #i "*64(%1)\n"
#define G_INIT(i) "vmovdqu64 " #i "%%4*576+512(%1), %%zmm" #i "\n"
#define PASS_GROUP(CODE)                                                                     \
    G_INIT(0) G_INIT(1) G_INIT(2) G_INIT(3) G_INIT(4) G_INIT(5) G_INIT(6) G_INIT(7)          \
    G_INIT(8) G_INIT(9) G_INIT(10) G_INIT(11)                                                \
    G_STEP_LO(0, CODE) G_STEP_LO(1, CODE) G_STEP_LO(2, CODE) G_STEP_LO(3, CODE)              \
    G_STEP_HI(0, CODE) G_STEP_HI(1, CODE) G_STEP_HI(2, CODE) G_STEP_HI(3, CODE)              \
    "vcvtph2ps 4096+256(%1), %%zmm19\n vcvtph2ps 4096+576(%1), %%zmm20\n"                     \
    "vcvtph2ps 4096+896(%1), %%zmm21\n"                                                       \
    G_FLOAT(0, "19", 7168) G_FLOAT(1, "19", 7232) G_FLOAT(2, "19", 7296) G_FLOAT(3, "19", 7360) \
    G_FLOAT(4, "20", 7168) G_FLOAT(5, "20", 7232) G_FLOAT(6, "20", 7296) G_FLOAT(7, "20", 7360) \
    G_FLOAT(8, "21", 7168) G_FLOAT(9, "21", 7232) G_FLOAT(10, "21", 7296) G_FLOAT(11, "21", 7360)
#define G_STEP_HI2(d, CODE)                                                                  \
    "vmovdqu64 " #d "*64+256(%1), %%zmm12\n vmovdqu64 " #d "*64+832(%1), %%zmm13\n"           \
    "vmovdqu64 " #d "*64+1408(%1), %%zmm14\n vmovdqu64 " #d "*64+1984(%1), %%zmm15\n"         \
    "vmovdqu64 " #d "*64+4096+" #CODE "(%1), %%zmm16\n vpsrlw $4, %%zmm16, %%zmm16\n"          \
    "vpandd %%zmm22, %%zmm16, %%zmm16\n"                                                      \
    "vmovdqu64 " #d "*64+4096+320+" #CODE "(%1), %%zmm17\n vpsrlw $4, %%zmm17, %%zmm17\n"      \
    "vpandd %%zmm22, %%zmm17, %%zmm17\n"                                                      \
    "vmovdqu64 " #d "*64+4096+640+" #CODE "(%1), %%zmm18\n vpsrlw $4, %%zmm18, %%zmm18\n"      \
    "vpandd %%zmm22, %%zmm18, %%zmm18\n"                                                      \
    "vpdpbusd %%zmm12, %%zmm16, %%zmm0\n vpdpbusd %%zmm13, %%zmm16, %%zmm1\n"                 \
    "vpdpbusd %%zmm14, %%zmm16, %%zmm2\n vpdpbusd %%zmm15, %%zmm16, %%zmm3\n"                 \
    "vpdpbusd %%zmm12, %%zmm17, %%zmm4\n vpdpbusd %%zmm13, %%zmm17, %%zmm5\n"                 \
    "vpdpbusd %%zmm14, %%zmm17, %%zmm6\n vpdpbusd %%zmm15, %%zmm17, %%zmm7\n"                 \
    "vpdpbusd %%zmm12, %%zmm18, %%zmm8\n vpdpbusd %%zmm13, %%zmm18, %%zmm9\n"                 \
    "vpdpbusd %%zmm14, %%zmm18, %%zmm10\n vpdpbusd %%zmm15, %%zmm18, %%zmm11\n"
#define PASS_LO8                                                                             \
    G_STEP_LO(0, 0) G_STEP_LO(1, 0) G_STEP_LO(2, 0) G_STEP_LO(3, 0)                          \
    G_STEP_LO(4, 0) G_STEP_LO(5, 0) G_STEP_LO(6, 0) G_STEP_LO(7, 0)
#define PASS_HI2                                                                             \
    G_STEP_LO(0, 0) G_STEP_LO(1, 0) G_STEP_LO(2, 0) G_STEP_LO(3, 0)                          \
    G_STEP_HI2(0, 0) G_STEP_HI2(1, 0) G_STEP_HI2(2, 0) G_STEP_HI2(3, 0)
/* the group with its float accumulators in registers (zmm18..29): one w register, dx in
 * zmm30, the scale product in zmm31 */
#define R_STEP(d, hi)                                                                        \
    "vmovdqu64 " #d "*64+" #hi "*256(%1), %%zmm12\n vmovdqu64 " #d "*64+" #hi "*256+576(%1), %%zmm13\n" \
    "vmovdqu64 " #d "*64+" #hi "*256+1152(%1), %%zmm14\n vmovdqu64 " #d "*64+" #hi "*256+1728(%1), %%zmm15\n" \
    R_W(d, hi, 0) "vpdpbusd %%zmm12, %%zmm16, %%zmm0\n vpdpbusd %%zmm13, %%zmm16, %%zmm1\n"    \
    "vpdpbusd %%zmm14, %%zmm16, %%zmm2\n vpdpbusd %%zmm15, %%zmm16, %%zmm3\n"                 \
    R_W(d, hi, 320) "vpdpbusd %%zmm12, %%zmm16, %%zmm4\n vpdpbusd %%zmm13, %%zmm16, %%zmm5\n"  \
    "vpdpbusd %%zmm14, %%zmm16, %%zmm6\n vpdpbusd %%zmm15, %%zmm16, %%zmm7\n"                 \
    R_W(d, hi, 640) "vpdpbusd %%zmm12, %%zmm16, %%zmm8\n vpdpbusd %%zmm13, %%zmm16, %%zmm9\n"  \
    "vpdpbusd %%zmm14, %%zmm16, %%zmm10\n vpdpbusd %%zmm15, %%zmm16, %%zmm11\n"
#define R_W(d, hi, ro)                                                                       \
    "vpsrlw $(4*" #hi "), " #d "*64+4096+" #ro "(%1), %%zmm16\n vpandd %%zmm17, %%zmm16, %%zmm16\n"
#define R_FLOAT(i, f, dyo)                                                                   \
    "vcvtdq2ps %%zmm" #i ", %%zmm" #i "\n vmulps " #dyo "(%1), %%zmm30, %%zmm31\n"             \
    "vfmadd231ps %%zmm31, %%zmm" #i ", %%zmm" #f "\n"
#define PASS_GROUP_REG                                                                       \
    G_INIT(0) G_INIT(1) G_INIT(2) G_INIT(3) G_INIT(4) G_INIT(5) G_INIT(6) G_INIT(7)          \
    G_INIT(8) G_INIT(9) G_INIT(10) G_INIT(11)                                                \
    R_STEP(0, 0) R_STEP(1, 0) R_STEP(2, 0) R_STEP(3, 0)                                      \
    R_STEP(0, 1) R_STEP(1, 1) R_STEP(2, 1) R_STEP(3, 1)                                      \
    "vcvtph2ps 4096+256(%1), %%zmm30\n"                                                      \
    R_FLOAT(0, 18, 7168) R_FLOAT(1, 19, 7232) R_FLOAT(2, 20, 7296) R_FLOAT(3, 21, 7360)      \
    "vcvtph2ps 4096+576(%1), %%zmm30\n"                                                      \
    R_FLOAT(4, 22, 7168) R_FLOAT(5, 23, 7232) R_FLOAT(6, 24, 7296) R_FLOAT(7, 25, 7360)      \
    "vcvtph2ps 4096+896(%1), %%zmm30\n"                                                      \
    R_FLOAT(8, 26, 7168) R_FLOAT(9, 27, 7232) R_FLOAT(10, 28, 7296) R_FLOAT(11, 29, 7360)
#define PASS_DP_ONLY                                                                         \
    G_INIT(0) G_INIT(1) G_INIT(2) G_INIT(3) G_INIT(4) G_INIT(5) G_INIT(6) G_INIT(7)          \
    G_INIT(8) G_INIT(9) G_INIT(10) G_INIT(11)                                                \
    G_STEP_LO(0, 0) G_STEP_LO(1, 0) G_STEP_LO(2, 0) G_STEP_LO(3, 0)                          \
    G_STEP_HI(0, 0) G_STEP_HI(1, 0) G_STEP_HI(2, 0) G_STEP_HI(3, 0)
#define PASS_STEPS_ONLY                                                                      \
    G_STEP_LO(0, 0) G_STEP_LO(1, 0) G_STEP_LO(2, 0) G_STEP_LO(3, 0)                          \
    G_STEP_HI(0, 0) G_STEP_HI(1, 0) G_STEP_HI(2, 0) G_STEP_HI(3, 0)
#define DP12_RM                                                                              \
    "vpdpbusd 0(%1), %%zmm13, %%zmm0\n vpdpbusd 64(%1), %%zmm13, %%zmm1\n"                    \
    "vpdpbusd 128(%1), %%zmm13, %%zmm2\n vpdpbusd 192(%1), %%zmm13, %%zmm3\n"                 \
    "vpdpbusd 256(%1), %%zmm13, %%zmm4\n vpdpbusd 320(%1), %%zmm13, %%zmm5\n"                 \
    "vpdpbusd 384(%1), %%zmm13, %%zmm6\n vpdpbusd 448(%1), %%zmm13, %%zmm7\n"                 \
    "vpdpbusd 512(%1), %%zmm13, %%zmm8\n vpdpbusd 576(%1), %%zmm13, %%zmm9\n"                 \
    "vpdpbusd 640(%1), %%zmm13, %%zmm10\n vpdpbusd 704(%1), %%zmm13, %%zmm11\n"
#define LD12                                                                                 \
    "vmovdqu64 0(%1), %%zmm0\n vmovdqu64 64(%1), %%zmm1\n vmovdqu64 128(%1), %%zmm2\n"        \
    "vmovdqu64 192(%1), %%zmm3\n vmovdqu64 256(%1), %%zmm4\n vmovdqu64 320(%1), %%zmm5\n"     \
    "vmovdqu64 384(%1), %%zmm6\n vmovdqu64 448(%1), %%zmm7\n vmovdqu64 512(%1), %%zmm8\n"     \
    "vmovdqu64 576(%1), %%zmm9\n vmovdqu64 640(%1), %%zmm10\n vmovdqu64 704(%1), %%zmm11\n"
/* 8 vpdpbusd + the unpack of 4 code vectors (and, shift, and): zmm14..zmm21 */
#define DP8_UNPACK4                                                                          \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm0\n vpandd %%zmm22, %%zmm23, %%zmm14\n"                  \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm1\n vpsrlw $4, %%zmm23, %%zmm15\n"                       \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm2\n vpandd %%zmm22, %%zmm15, %%zmm15\n"                  \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm3\n vpandd %%zmm22, %%zmm24, %%zmm16\n"                  \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm4\n vpsrlw $4, %%zmm24, %%zmm17\n"                       \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm5\n vpandd %%zmm22, %%zmm17, %%zmm17\n"                  \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm6\n vpandd %%zmm22, %%zmm25, %%zmm18\n"                  \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm7\n vpsrlw $4, %%zmm25, %%zmm19\n"                       \
    "vpandd %%zmm22, %%zmm19, %%zmm19\n vpandd %%zmm22, %%zmm26, %%zmm20\n"                   \
    "vpsrlw $4, %%zmm26, %%zmm21\n vpandd %%zmm22, %%zmm21, %%zmm21\n"
/* 8 vpdpbusd + a group's float work for one (row, token): cvt, mul, fma (+ the add of
 * the two integer halves) */
#define DP8_FLOAT                                                                            \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm0\n vpdpbusd %%zmm12, %%zmm13, %%zmm1\n"                 \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm2\n vpdpbusd %%zmm12, %%zmm13, %%zmm3\n"                 \
    "vpaddd %%zmm12, %%zmm13, %%zmm14\n vcvtdq2ps %%zmm14, %%zmm15\n"                         \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm4\n vpdpbusd %%zmm12, %%zmm13, %%zmm5\n"                 \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm6\n vpdpbusd %%zmm12, %%zmm13, %%zmm7\n"                 \
    "vmulps %%zmm16, %%zmm17, %%zmm18\n vfmadd231ps %%zmm15, %%zmm18, %%zmm8\n"
/* 8 vpdpbusd with the signed operand from L1 + 8 float/int ops on the other registers */
#define DP8_FMA8                                                                             \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm0\n vfmadd231ps %%zmm16, %%zmm17, %%zmm14\n"             \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm1\n vfmadd231ps %%zmm16, %%zmm17, %%zmm15\n"             \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm2\n vfmadd231ps %%zmm16, %%zmm17, %%zmm18\n"             \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm3\n vfmadd231ps %%zmm16, %%zmm17, %%zmm19\n"             \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm4\n vfmadd231ps %%zmm16, %%zmm17, %%zmm20\n"             \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm5\n vfmadd231ps %%zmm16, %%zmm17, %%zmm21\n"             \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm6\n vfmadd231ps %%zmm16, %%zmm17, %%zmm22\n"             \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm7\n vfmadd231ps %%zmm16, %%zmm17, %%zmm23\n"
#define DP8_ALU8                                                                             \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm0\n vpandd %%zmm16, %%zmm17, %%zmm14\n"                  \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm1\n vpandd %%zmm16, %%zmm17, %%zmm15\n"                  \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm2\n vpandd %%zmm16, %%zmm17, %%zmm18\n"                  \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm3\n vpandd %%zmm16, %%zmm17, %%zmm19\n"                  \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm4\n vpandd %%zmm16, %%zmm17, %%zmm20\n"                  \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm5\n vpandd %%zmm16, %%zmm17, %%zmm21\n"                  \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm6\n vpandd %%zmm16, %%zmm17, %%zmm22\n"                  \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm7\n vpandd %%zmm16, %%zmm17, %%zmm23\n"
#define DP8_SHIFT8                                                                           \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm0\n vpsrlw $4, %%zmm17, %%zmm14\n"                       \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm1\n vpsrlw $4, %%zmm17, %%zmm15\n"                       \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm2\n vpsrlw $4, %%zmm17, %%zmm18\n"                       \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm3\n vpsrlw $4, %%zmm17, %%zmm19\n"                       \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm4\n vpsrlw $4, %%zmm17, %%zmm20\n"                       \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm5\n vpsrlw $4, %%zmm17, %%zmm21\n"                       \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm6\n vpsrlw $4, %%zmm17, %%zmm22\n"                       \
    "vpdpbusd %%zmm12, %%zmm13, %%zmm7\n vpsrlw $4, %%zmm17, %%zmm23\n"
#define DPLAT "vpdpbusd %%zmm12, %%zmm13, %%zmm0\n"
#define ADDLAT "add $1, %%r8\n add $1, %%r8\n add $1, %%r8\n add $1, %%r8\n"
/* broadcast form: signed operand as a 32-bit broadcast from L1 */
#define DP12_BC                                                                              \
    "vpdpbusd 0(%1)%{1to16%}, %%zmm13, %%zmm0\n vpdpbusd 4(%1)%{1to16%}, %%zmm13, %%zmm1\n"   \
    "vpdpbusd 8(%1)%{1to16%}, %%zmm13, %%zmm2\n vpdpbusd 12(%1)%{1to16%}, %%zmm13, %%zmm3\n"  \
    "vpdpbusd 16(%1)%{1to16%}, %%zmm13, %%zmm4\n vpdpbusd 20(%1)%{1to16%}, %%zmm13, %%zmm5\n" \
    "vpdpbusd 24(%1)%{1to16%}, %%zmm13, %%zmm6\n vpdpbusd 28(%1)%{1to16%}, %%zmm13, %%zmm7\n" \
    "vpdpbusd 32(%1)%{1to16%}, %%zmm13, %%zmm8\n vpdpbusd 36(%1)%{1to16%}, %%zmm13, %%zmm9\n" \
    "vpdpbusd 40(%1)%{1to16%}, %%zmm13, %%zmm10\n vpdpbusd 44(%1)%{1to16%}, %%zmm13, %%zmm11\n"

#define CLOBBER                                                                              \
    "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",  \
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19",      \
        "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28",      \
        "xmm29", "xmm30", "xmm31", "r8", "memory", "cc"

/* One loop: iters iterations of REP copies of body (LOOPN: of r copies, r * its size
 * within the op cache: the group loops below are 150-250 instructions each, and 64 of them
 * would run from the decoders instead). */
#define LOOPN(name, body, r)                                                                 \
    __attribute__((target("avx512f"))) static double name(uint64_t iters) {                  \
        uint64_t n = iters * (REP / (r));                                                     \
        const uint8_t *p = g_buf;                                                             \
        const double t0 = now();                                                              \
        __asm__ volatile("1:\n .rept " STR(r) "\n" body ".endr\n dec %0\n jnz 1b\n"          \
                         : "+r"(n)                                                            \
                         : "r"(p)                                                             \
                         : CLOBBER);                                                          \
        return now() - t0;                                                                    \
    }
#define LOOP(name, body) LOOPN(name, body, REP)

LOOP(t_add, ADDLAT)
LOOP(t_dp_lat, DPLAT)
LOOP(t_dp_rr, DP12_RR)
LOOP(t_dp_rr_dist, DP12_RR_DIST)
LOOP(t_pass_step, PASS_STEP)
LOOPN(t_group_al, PASS_GROUP(0), 2)
LOOPN(t_group_mis, PASS_GROUP(32), 2)
LOOPN(t_group_dp, PASS_DP_ONLY, 2)
LOOPN(t_group_steps, PASS_STEPS_ONLY, 2)
LOOPN(t_group_lo8, PASS_LO8, 2)
LOOPN(t_group_hi2, PASS_HI2, 2)
LOOPN(t_group_reg, PASS_GROUP_REG, 2)
LOOP(t_dp_rm, DP12_RM)
LOOP(t_dp_bc, DP12_BC)
LOOP(t_ld, LD12)
LOOP(t_dp_unpack, DP8_UNPACK4)
LOOP(t_dp_float, DP8_FLOAT)
LOOP(t_dp_fma, DP8_FMA8)
LOOP(t_dp_alu, DP8_ALU8)
LOOP(t_dp_shift, DP8_SHIFT8)

typedef struct {
    const char *name, *what;
    double (*fn)(uint64_t);
    int per_body; /* instructions of interest per body */
    int dp;       /* vpdpbusd per body */
} loop_def;

static double best_of(double (*fn)(uint64_t), uint64_t iters, int k) {
    double b = 1e30;
    for (int i = 0; i < k; i++) {
        const double t = fn(iters);
        if (t < b) b = t;
    }
    return b;
}

int main(int argc, char **argv) {
    uint64_t iters = 200000;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--iters") && a + 1 < argc) iters = strtoull(argv[++a], NULL, 10);
        else {
            fprintf(stderr, "usage: %s [--iters N]\n", argv[0]);
            return 2;
        }
    }
    /* 0x3c bytes: as fp32 0.0115, as fp16 1.06; products stay normal (a denormal result
     * takes a microcode assist and would time that instead) */
    memset(g_buf, 0x3c, sizeof g_buf);
    /* the clock: 4 dependent adds a body, one cycle each */
    const double ta = best_of(t_add, iters, 11);
    const double hz = (double)iters * REP * 4 / ta;
    printf("{\"loop\": \"add_chain\", \"ghz\": %.3f}\n", hz * 1e-9);
    const loop_def defs[] = {
        {"dp_latency", "one vpdpbusd chain: cycles per instruction", t_dp_lat, 1, 1},
        {"dp_reg", "12 independent vpdpbusd, register operands", t_dp_rr, 12, 12},
        {"dp_reg_distinct", "12 independent vpdpbusd, 3 x 4 distinct source registers", t_dp_rr_dist, 12, 12},
        {"pass_step", "a 3-row x 4-token step: 4 + 3 loads, 3 and, 12 vpdpbusd", t_pass_step, 12, 12},
        {"group_aligned", "a 3 x 4 pass's group (96 vpdpbusd), codes 64-byte aligned", t_group_al, 96, 96},
        {"group_split", "the same, codes 32 bytes into a line (two lines a load)", t_group_mis, 96, 96},
        {"group_no_float", "the group without its float work", t_group_dp, 96, 96},
        {"group_steps", "the group's 8 steps alone (no offsets, no float work)", t_group_steps, 96, 96},
        {"group_steps_lo", "8 steps of and-only unpack", t_group_lo8, 96, 96},
        {"group_steps_srl_reg", "8 steps, the shifts on registers (load, shift, and)", t_group_hi2, 96, 96},
        {"group_f_in_regs", "the group, float accumulators in registers", t_group_reg, 96, 96},
        {"dp_mem", "12 independent vpdpbusd, signed operand 64 B from L1", t_dp_rm, 12, 12},
        {"dp_bcast", "12 independent vpdpbusd, signed operand {1to16} from L1", t_dp_bc, 12, 12},
        {"load512", "12 independent 64-byte loads from L1", t_ld, 12, 0},
        {"dp8_unpack4", "8 vpdpbusd + unpack of 4 code vectors (8 and, 4 shift)", t_dp_unpack, 20, 8},
        {"dp8_float", "8 vpdpbusd + a group's float work (add, cvt, mul, fma)", t_dp_float, 12, 8},
        {"dp8_fma8", "8 vpdpbusd + 8 independent vfmadd231ps", t_dp_fma, 16, 8},
        {"dp8_and8", "8 vpdpbusd + 8 independent vpandd", t_dp_alu, 16, 8},
        {"dp8_srl8", "8 vpdpbusd + 8 independent vpsrlw", t_dp_shift, 16, 8},
    };
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        const double t = best_of(defs[i].fn, iters, 11);
        const double cycles = t * hz, bodies = (double)iters * REP;
        const double ipc = bodies * defs[i].per_body / cycles;
        printf("{\"loop\": \"%s\", \"what\": \"%s\", \"per_cycle\": %.3f, \"cycles_per\": %.3f, "
               "\"dp_per_cycle\": %.3f, \"gmacs_1core\": %.1f}\n",
               defs[i].name, defs[i].what, ipc, 1.0 / ipc, bodies * defs[i].dp / cycles,
               bodies * defs[i].dp * 64 / t * 1e-9);
    }
    return 0;
}
