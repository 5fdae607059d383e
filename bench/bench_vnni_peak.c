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

static uint8_t g_buf[8192] __attribute__((aligned(64)));

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
        "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "r8", "memory", "cc"

/* One loop: iters iterations of REP copies of body. */
#define LOOP(name, body)                                                                     \
    __attribute__((target("avx512f"))) static double name(uint64_t iters) {                                                      \
        uint64_t n = iters;                                                                   \
        const uint8_t *p = g_buf;                                                             \
        const double t0 = now();                                                              \
        __asm__ volatile("1:\n .rept " STR(REP) "\n" body ".endr\n dec %0\n jnz 1b\n"        \
                         : "+r"(n)                                                            \
                         : "r"(p)                                                             \
                         : CLOBBER);                                                          \
        return now() - t0;                                                                    \
    }

LOOP(t_add, ADDLAT)
LOOP(t_dp_lat, DPLAT)
LOOP(t_dp_rr, DP12_RR)
LOOP(t_dp_rr_dist, DP12_RR_DIST)
LOOP(t_pass_step, PASS_STEP)
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
    memset(g_buf, 1, sizeof g_buf);
    /* the clock: 4 dependent adds a body, one cycle each */
    const double ta = best_of(t_add, iters, 11);
    const double hz = (double)iters * REP * 4 / ta;
    printf("{\"loop\": \"add_chain\", \"ghz\": %.3f}\n", hz * 1e-9);
    const loop_def defs[] = {
        {"dp_latency", "one vpdpbusd chain: cycles per instruction", t_dp_lat, 1, 1},
        {"dp_reg", "12 independent vpdpbusd, register operands", t_dp_rr, 12, 12},
        {"dp_reg_distinct", "12 independent vpdpbusd, 3 x 4 distinct source registers", t_dp_rr_dist, 12, 12},
        {"pass_step", "a 3-row x 4-token step: 4 + 3 loads, 3 and, 12 vpdpbusd", t_pass_step, 12, 12},
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
