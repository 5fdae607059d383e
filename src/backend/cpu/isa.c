/*
 * isa.c - which instruction-set path the CPU kernels take (the core count is in
 * util/cpu_topology.c).
 *
 * The paths are nested: avx512 implies avx2 implies ref. A path is usable when cpuid
 * reports every extension it was compiled for AND the OS saves the register state
 * (xgetbv), since a kernel VM can hide AVX-512 state even where cpuid lists it.
 *   avx2:   AVX2, FMA, F16C, BMI2 (the _avx2.c files are built with -mbmi2 too)
 *   avx512: avx2 + AVX-512 F/BW/DQ/VL + VNNI. BF16 is optional, tested at run time.
 *
 * RUVLLM_CPU_ISA=ref|avx2|avx512 forces a path for tests and bisecting. A value the
 * CPU cannot run, or an unknown value, prints one error line on stderr and the best
 * supported path is used: a forced path is never silently replaced.
 */
#include "cpu.h"

#include <cpuid.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <strings.h>

typedef struct cpu_features {
    bool avx2;      /* AVX2 + FMA + F16C + BMI2, OS-enabled YMM state */
    bool avx512;    /* F/BW/DQ/VL + VNNI, OS-enabled ZMM and opmask state */
    bool avx512bf16;
} cpu_features;

static cpu_features g_feat;
static _Atomic int g_active = -1;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static uint64_t read_xcr0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void detect(cpu_features *f) {
    unsigned a, b, c, d;
    memset(f, 0, sizeof *f);
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28);
    bool f16c = c & (1u << 29);
    if (!osxsave || !avx) return;
    uint64_t xcr0 = read_xcr0();
    bool os_ymm = (xcr0 & 0x6) == 0x6;          /* SSE + AVX state */
    bool os_zmm = (xcr0 & 0xe6) == 0xe6;        /* + opmask, ZMM_Hi256, Hi16_ZMM */
    if (__get_cpuid_max(0, NULL) < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    bool avx2 = b & (1u << 5), bmi2 = b & (1u << 8);
    bool f512 = b & (1u << 16), dq = b & (1u << 17), bw = b & (1u << 30), vl = b & (1u << 31);
    bool vnni = c & (1u << 11);
    unsigned max_sub = a;
    bool bf16 = false;
    if (max_sub >= 1) {
        __cpuid_count(7, 1, a, b, c, d);
        bf16 = a & (1u << 5);
    }
    f->avx2 = os_ymm && avx2 && fma && f16c && bmi2;
    f->avx512 = f->avx2 && os_zmm && f512 && dq && bw && vl && vnni;
    f->avx512bf16 = f->avx512 && bf16;
}

static rl_cpu_isa best_of(const cpu_features *f) {
    if (f->avx512) return RL_CPU_ISA_AVX512;
    if (f->avx2) return RL_CPU_ISA_AVX2;
    return RL_CPU_ISA_REF;
}

static void init_once(void) {
    detect(&g_feat);
    rl_cpu_isa isa = best_of(&g_feat);
    const char *env = rl__getenv("RUVLLM_CPU_ISA");
    if (env) {
        int want = -1;
        for (int i = 0; i < RL_CPU_ISA_COUNT; i++)
            if (!strcasecmp(env, rl_cpu_isa_name((rl_cpu_isa)i))) want = i;
        if (want < 0) {
            fprintf(stderr, "ruvllm: error: RUVLLM_CPU_ISA=%s is not one of ref, avx2, avx512; "
                            "using %s\n", env, rl_cpu_isa_name(isa));
        } else if (want > (int)isa) {
            fprintf(stderr, "ruvllm: error: RUVLLM_CPU_ISA=%s is not supported by this CPU; "
                            "using %s\n", env, rl_cpu_isa_name(isa));
        } else {
            isa = (rl_cpu_isa)want;
        }
    }
    atomic_store(&g_active, (int)isa);
}

static void ensure_init(void) { pthread_once(&g_once, init_once); }

RL_API const char *rl_cpu_isa_name(rl_cpu_isa isa) {
    switch (isa) {
    case RL_CPU_ISA_REF: return "ref";
    case RL_CPU_ISA_AVX2: return "avx2";
    case RL_CPU_ISA_AVX512: return "avx512";
    default: return "?";
    }
}

bool rl__cpu_isa_supported(rl_cpu_isa isa) {
    ensure_init();
    switch (isa) {
    case RL_CPU_ISA_REF: return true;
    case RL_CPU_ISA_AVX2: return g_feat.avx2;
    case RL_CPU_ISA_AVX512: return g_feat.avx512;
    default: return false;
    }
}

bool rl__cpu_has_avx512bf16(void) {
    ensure_init();
    return g_feat.avx512bf16;
}

RL_API rl_cpu_isa rl_cpu_isa_best(void) {
    ensure_init();
    return best_of(&g_feat);
}

RL_API rl_cpu_isa rl_cpu_isa_active(void) {
    ensure_init();
    return (rl_cpu_isa)atomic_load_explicit(&g_active, memory_order_relaxed);
}

RL_API rl_status rl_cpu_isa_set(rl_cpu_isa isa) {
    if ((int)isa < 0 || isa >= RL_CPU_ISA_COUNT) return RL_ERR_INVALID_ARG;
    if (!rl__cpu_isa_supported(isa)) return RL_ERR_UNSUPPORTED;
    atomic_store(&g_active, (int)isa);
    return RL_OK;
}
