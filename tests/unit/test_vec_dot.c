/* Dot products of every weight type on every ISA path this CPU runs, against the plain-C
 * reference; and the reference path against ggml's figures for the quant zoo.
 *
 * Tolerance of SIMD vs reference: the paths compute the same exact integer block sums and
 * differ only in the order and grouping of the float operations (scale products, block
 * accumulation, f32 instead of double for the float types). Such differences are bounded
 * by a few n_blocks * 2^-24 of the sum of the magnitudes of the terms, so the check is
 * the normalized error |simd - ref| / sum_i |x_i * y_i| <= 1e-5 (x, y dequantized):
 * ~40x the largest seen on this data (2.6e-7), far below what a wrong element or block
 * does (> 1e-3 here).
 *
 * Zoo: rl_vec_dot on the reference path with row 0 of q.<TYPE> and act.<VDTYPE> from
 * quant_zoo.gguf must give quant_zoo.json's vec_dot_row0 to 1e-5 relative (the 14 ggml
 * CPU variants spread 2e-6; we are within 2.5e-6); each SIMD path is held to the same
 * figure. A type without a
 * kernel fails. */
#include "test.h"
#include "rng.h"
#include "backend/cpu/cpu.h"

#include <jansson.h>
#include <sched.h>
#include <unistd.h>

/* Every type with a dot: the quant zoo's 28 types minus activation-only Q8_K, plus F32. */
static const rl_type k_dot_types[] = {
    RL_TYPE_F32,     RL_TYPE_F16,   RL_TYPE_BF16,   RL_TYPE_Q4_0,    RL_TYPE_Q4_1,   RL_TYPE_Q5_0,
    RL_TYPE_Q5_1,    RL_TYPE_Q8_0,  RL_TYPE_Q2_K,   RL_TYPE_Q3_K,    RL_TYPE_Q4_K,   RL_TYPE_Q5_K,
    RL_TYPE_Q6_K,    RL_TYPE_IQ1_S, RL_TYPE_IQ1_M,  RL_TYPE_IQ2_XXS, RL_TYPE_IQ2_XS, RL_TYPE_IQ2_S,
    RL_TYPE_IQ3_XXS, RL_TYPE_IQ3_S, RL_TYPE_IQ4_NL, RL_TYPE_IQ4_XS,  RL_TYPE_TQ1_0,  RL_TYPE_TQ2_0,
    RL_TYPE_MXFP4,   RL_TYPE_NVFP4, RL_TYPE_Q1_0,   RL_TYPE_Q2_0,
};

#define TOL_NORM 1e-5
#define TOL_ZOO 1e-5

static uint64_t g_rng = 0x1234567887654321ull;
static uint64_t rnd64(void) { return rl_test_rand64(&g_rng); }
static float rnd_unit(void) { return (float)rl_test_rand_unit(&g_rng); }
static float gauss(void) {
    float u1 = rnd_unit(), u2 = rnd_unit();
    if (u1 < 1e-12f) u1 = 1e-12f;
    return sqrtf(-2.0f * logf(u1)) * cosf(6.2831853f * u2);
}
/* fp16 scale with magnitude in [lo, hi), random sign when sign is set */
static rl_fp16 rnd_scale(float lo, float hi, bool sign) {
    float v = lo + (hi - lo) * rnd_unit();
    if (sign && (rnd64() & 1)) v = -v;
    return rl__fp32_to_fp16(v);
}

static size_t row_bytes(rl_type t, int64_t n) {
    size_t b = 0;
    CHECK(rl_type_row_bytes(t, n, &b) == RL_OK);
    return b;
}

/* sum |x_i y_i| of the dequantized rows; -1 when a dequantizer is missing */
static double magnitude(rl_type t, const void *x, rl_type vt, const void *y, int64_t n) {
    float *xf = malloc((size_t)n * 4), *yf = malloc((size_t)n * 4);
    double m = -1;
    if (rl_dequantize(t, x, xf, n) == RL_OK && rl_dequantize(vt, y, yf, n) == RL_OK) {
        m = 0;
        for (int64_t i = 0; i < n; i++) m += fabs((double)xf[i] * yf[i]);
    }
    free(xf);
    free(yf);
    return m;
}

/* Overwrite a weight row with random bytes, then give every scale field a sane value, so
 * that every code pattern of the format is exercised (a quantizer never makes some). */
static bool randomize_raw(rl_type t, void *x, int64_t n) {
    size_t nb = row_bytes(t, n);
    uint8_t *p = x;
    for (size_t i = 0; i < nb; i++) p[i] = (uint8_t)rnd64();
    int64_t blocks = n / rl_type_block_size(t);
    for (int64_t b = 0; b < blocks; b++) {
        switch (t) {
        case RL_TYPE_Q4_0:
            ((block_q4_0 *)x)[b].d = rnd_scale(0.01f, 0.1f, true);
            break;
        case RL_TYPE_Q4_1:
            ((block_q4_1 *)x)[b].d = rnd_scale(0.01f, 0.1f, false);
            ((block_q4_1 *)x)[b].m = rnd_scale(0.0f, 0.5f, true);
            break;
        case RL_TYPE_Q5_0:
            ((block_q5_0 *)x)[b].d = rnd_scale(0.01f, 0.1f, true);
            break;
        case RL_TYPE_Q5_1:
            ((block_q5_1 *)x)[b].d = rnd_scale(0.01f, 0.1f, false);
            ((block_q5_1 *)x)[b].m = rnd_scale(0.0f, 0.5f, true);
            break;
        case RL_TYPE_Q8_0:
            ((block_q8_0 *)x)[b].d = rnd_scale(0.001f, 0.01f, true);
            break;
        case RL_TYPE_Q2_K:
            ((block_q2_K *)x)[b].d = rnd_scale(0.001f, 0.01f, false);
            ((block_q2_K *)x)[b].dmin = rnd_scale(0.001f, 0.01f, false);
            break;
        case RL_TYPE_Q3_K:
            ((block_q3_K *)x)[b].d = rnd_scale(0.001f, 0.01f, true);
            break;
        case RL_TYPE_Q4_K:
            ((block_q4_K *)x)[b].d = rnd_scale(0.001f, 0.01f, false);
            ((block_q4_K *)x)[b].dmin = rnd_scale(0.001f, 0.01f, false);
            break;
        case RL_TYPE_Q5_K:
            ((block_q5_K *)x)[b].d = rnd_scale(0.001f, 0.01f, false);
            ((block_q5_K *)x)[b].dmin = rnd_scale(0.001f, 0.01f, false);
            break;
        case RL_TYPE_Q6_K:
            ((block_q6_K *)x)[b].d = rnd_scale(0.0001f, 0.001f, true);
            break;
        case RL_TYPE_IQ4_NL:
            ((block_iq4_nl *)x)[b].d = rnd_scale(0.001f, 0.01f, true);
            break;
        case RL_TYPE_IQ4_XS:
            ((block_iq4_xs *)x)[b].d = rnd_scale(0.001f, 0.01f, true);
            break;
        case RL_TYPE_F16:
        case RL_TYPE_BF16:
            for (int64_t i = 0; i < n; i++) {
                float v = gauss();
                ((uint16_t *)x)[i] = t == RL_TYPE_F16 ? rl__fp32_to_fp16(v) : rl__fp32_to_bf16(v);
            }
            return true;
        default:
            return false;
        }
    }
    return true;
}

/* Activations straight in the block format: codes in [-127, 127] (what our quantizers
 * make), random scales, consistent Q8_K bsums. */
static void randomize_act(rl_type vt, void *y, int64_t n) {
    if (vt == RL_TYPE_Q8_0 || vt == RL_TYPE_Q8_1) {
        for (int64_t b = 0; b < n / 32; b++) {
            int8_t *qs = vt == RL_TYPE_Q8_0 ? ((block_q8_0 *)y)[b].qs : ((block_q8_1 *)y)[b].qs;
            for (int j = 0; j < 32; j++) qs[j] = (int8_t)((int)(rnd64() % 255) - 127);
            if (vt == RL_TYPE_Q8_0) {
                ((block_q8_0 *)y)[b].d = rnd_scale(0.01f, 0.1f, true);
            } else {
                ((block_q8_1 *)y)[b].d = rnd_scale(0.01f, 0.1f, true);
                ((block_q8_1 *)y)[b].s = rnd_scale(0.0f, 4.0f, true);
            }
        }
    } else if (vt == RL_TYPE_Q8_K) {
        for (int64_t b = 0; b < n / QK_K; b++) {
            block_q8_K *k = &((block_q8_K *)y)[b];
            for (int j = 0; j < QK_K; j++) k->qs[j] = (int8_t)((int)(rnd64() % 255) - 127);
            for (int g = 0; g < 16; g++) {
                int s = 0;
                for (int l = 0; l < 16; l++) s += k->qs[16 * g + l];
                k->bsums[g] = (int16_t)s;
            }
            k->d = 0.001f + 0.01f * rnd_unit();
        }
    }
}

static void fill_floats(float *v, int64_t n) {
    for (int64_t i = 0; i < n; i++) v[i] = gauss();
    /* a few outliers, as real activations have */
    for (int k = 0; k < 3 && n > 8; k++) v[rnd64() % (uint64_t)n] *= 8.0f;
}

/* Compare every SIMD path with the reference on one (x, y) pair. */
static void compare_paths(rl_type t, const char *what, int64_t n, const void *x, const void *y) {
    rl_type vt = rl_type_vec_dot_type(t);
    rl__vec_dot_fn ref = rl__vec_dot_get(t, RL_CPU_ISA_REF);
    CHECKF(ref != NULL, "%s: no reference dot kernel linked", rl_type_name(t));
    if (!ref) return;
    const float r = ref(n, x, y);
    const double m = magnitude(t, x, vt, y, n);
    CHECKF(m >= 0, "%s: dequantize missing", rl_type_name(t));
    CHECKF(isfinite(r), "%s %s n=%lld: reference gave %g", rl_type_name(t), what, (long long)n, r);
    for (int isa = RL_CPU_ISA_AVX2; isa < RL_CPU_ISA_COUNT; isa++) {
        if (!rl__cpu_isa_supported((rl_cpu_isa)isa)) continue;
        rl__vec_dot_fn fn = rl__vec_dot_get(t, (rl_cpu_isa)isa);
        const float v = fn(n, x, y);
        const double err = fabs((double)v - (double)r) / (m > 0 ? m : 1.0);
        CHECKF(err <= TOL_NORM, "%s %s n=%lld %s: %.9g vs ref %.9g (normalized error %.3g)",
               rl_type_name(t), what, (long long)n, rl_cpu_isa_name((rl_cpu_isa)isa), v, r, err);
    }
}

TEST(simd_matches_reference) {
    if (rl_cpu_isa_best() == RL_CPU_ISA_REF) SKIP("CPU has no SIMD path (AVX2)");
    for (size_t k = 0; k < RL_ARRAY_LEN(k_dot_types); k++) {
        const rl_type t = k_dot_types[k];
        const rl_type vt = rl_type_vec_dot_type(t);
        const int64_t bs = RL_MAX(rl_type_block_size(t), rl_type_block_size(vt));
        int64_t lens[16];
        int nl = 0;
        if (bs == 1) {
            const int64_t l[] = {1, 7, 15, 16, 17, 31, 33, 63, 64, 65, 100, 1000, 4109};
            for (size_t i = 0; i < RL_ARRAY_LEN(l); i++) lens[nl++] = l[i];
        } else {
            const int64_t blocks[] = {1, 2, 3, 4, 5, 7, 8, 17};
            for (size_t i = 0; i < RL_ARRAY_LEN(blocks); i++) lens[nl++] = blocks[i] * bs;
            lens[nl++] = bs >= 256 ? 4096 : 4096 + 3 * bs;
        }
        for (int li = 0; li < nl; li++) {
            const int64_t n = lens[li];
            float *src = malloc((size_t)n * 4), *act = malloc((size_t)n * 4),
                  *imx = malloc((size_t)n * 4);
            void *x = malloc(row_bytes(t, n)), *y = malloc(row_bytes(vt, n) + 4 * (size_t)n);
            fill_floats(src, n);
            fill_floats(act, n);
            for (int64_t i = 0; i < n; i++) imx[i] = src[i] * src[i] + 0.01f;
            /* quantizer-made weights and activations */
            rl_status st = rl_quantize(t, src, x, 1, n, rl_type_needs_imatrix(t) ? imx : NULL);
            CHECKF(st == RL_OK, "%s: quantize: %s", rl_type_name(t), rl_status_str(st));
            if (vt == RL_TYPE_F32) {
                memcpy(y, act, (size_t)n * 4);
            } else {
                rl__act_quant_fn q = rl__act_quant_get(vt, RL_CPU_ISA_REF);
                CHECKF(q != NULL, "%s: reference quantizer missing", rl_type_name(vt));
                if (q) q(act, y, n);
            }
            if (st == RL_OK) compare_paths(t, "quantized", n, x, y);
            /* raw random codes (all bit patterns) against raw activations */
            if (randomize_raw(t, x, n)) {
                randomize_act(vt, y, n);
                compare_paths(t, "raw", n, x, y);
            }
            free(src);
            free(act);
            free(imx);
            free(x);
            free(y);
        }
    }
}

/* The matmul fast path (gemv, activations split into codes and float scales) gives the
 * vec_dot kernel's result bit for bit, on every path and block count. */
TEST(gemv_equals_vec_dot) {
    const rl_type ts[] = {RL_TYPE_Q4_0, RL_TYPE_Q4_1, RL_TYPE_Q5_0, RL_TYPE_Q5_1, RL_TYPE_Q8_0};
    int n_gemv = 0;
    for (size_t k = 0; k < RL_ARRAY_LEN(ts); k++) {
        const rl_type t = ts[k], vt = rl_type_vec_dot_type(t);
        for (int64_t nb = 1; nb <= 19; nb++) {
            const int64_t n = 32 * nb;
            void *x = malloc(row_bytes(t, n)), *y = malloc(row_bytes(vt, n));
            int8_t *qs = malloc((size_t)n);
            float *d = malloc((size_t)nb * 4), *sm = malloc((size_t)nb * 4);
            randomize_raw(t, x, n);
            randomize_act(vt, y, n);
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = (const uint8_t *)y + (size_t)b * rl_type_block_bytes(vt);
                rl_fp16 hd, hs;
                memcpy(&hd, blk, 2);
                memcpy(&hs, blk + 2, 2);
                d[b] = rl__fp16_to_fp32(hd);
                sm[b] = vt == RL_TYPE_Q8_1 ? rl__fp16_to_fp32(hs) : 0.0f;
                memcpy(qs + 32 * b, blk + (vt == RL_TYPE_Q8_1 ? 4 : 2), 32);
            }
            for (int isa = 0; isa < RL_CPU_ISA_COUNT; isa++) {
                if (!rl__cpu_isa_supported((rl_cpu_isa)isa)) continue;
                rl__gemv_fn g = rl__gemv_get(t, (rl_cpu_isa)isa);
                if (!g) continue;
                rl__gemv_prep_fn prep = rl__gemv_prep_get(t, (rl_cpu_isa)isa);
                int32_t *off = calloc((size_t)n / 4, sizeof *off);
                if (prep) prep(qs, n, off);
                n_gemv++;
                float a = rl__vec_dot_get(t, (rl_cpu_isa)isa)(n, x, y), c = g(n, x, qs, d, sm, off);
                free(off);
                CHECKF(memcmp(&a, &c, 4) == 0, "%s %s nb=%lld: gemv %.9g vs vec_dot %.9g",
                       rl_type_name(t), rl_cpu_isa_name((rl_cpu_isa)isa), (long long)nb, c, a);
            }
            free(x);
            free(y);
            free(qs);
            free(d);
            free(sm);
        }
    }
    if (rl_cpu_isa_best() >= RL_CPU_ISA_AVX2) CHECK(n_gemv > 0);
}

/* ---- quant zoo ------------------------------------------------------------------------ */

static const void *zoo_tensor(rl_gguf *g, const char *name, rl_type want, int64_t *ne0) {
    int64_t i = rl_gguf_find_tensor(g, name);
    CHECKF(i >= 0, "zoo: tensor %s missing", name);
    if (i < 0) return NULL;
    rl_gguf_tensor_info ti;
    CHECK(rl_gguf_tensor(g, i, &ti) == RL_OK);
    CHECKF(ti.type == want, "zoo: %s has type %s", name, rl_type_name(ti.type));
    *ne0 = ti.ne[0];
    return ti.data;
}

TEST(quant_zoo_vec_dot) {
    char err[256];
    rl_gguf *g = NULL;
    if (rl_gguf_open(rl_test_data("golden/quant_zoo.gguf"), &g, err, sizeof err) != RL_OK)
        SKIP("quant_zoo.gguf not readable: %s", err);
    json_error_t jerr;
    json_t *root = json_load_file(rl_test_data("golden/quant_zoo.json"), 0, &jerr);
    CHECKF(root != NULL, "quant_zoo.json: %s", jerr.text);
    json_t *types = json_object_get(root, "types");
    rl_cpu_isa saved = rl_cpu_isa_active();
    int n_checked = 0;
    const char *name;
    json_t *jt;
    json_object_foreach(types, name, jt) {
        json_t *jvd = json_object_get(jt, "vec_dot_type");
        rl_type t;
        CHECKF(rl_type_from_name(name, &t) == RL_OK, "zoo: unknown type %s", name);
        if (json_is_null(jvd)) {
            float out;
            CHECKF(rl_vec_dot(t, 256, NULL, NULL, &out) == RL_ERR_UNSUPPORTED, "%s has a dot",
                   name);
            continue;
        }
        rl_type vt;
        CHECK(rl_type_from_name(json_string_value(jvd), &vt) == RL_OK);
        CHECKF(rl_type_vec_dot_type(t) == vt, "%s: vec_dot_type %s, zoo says %s", name,
               rl_type_name(rl_type_vec_dot_type(t)), rl_type_name(vt));
        char wname[64], aname[64];
        snprintf(wname, sizeof wname, t == RL_TYPE_F32 ? "src" : "q.%s", name);
        snprintf(aname, sizeof aname, vt == RL_TYPE_F32 ? "act" : "act.%s", rl_type_name(vt));
        int64_t nw = 0, na = 0;
        const void *w = zoo_tensor(g, wname, t, &nw);
        const void *a = zoo_tensor(g, aname, vt, &na);
        if (!w || !a) continue;
        CHECK(nw == na);
        const double want = json_number_value(json_object_get(jt, "vec_dot_row0"));
        for (int isa = 0; isa < RL_CPU_ISA_COUNT; isa++) {
            if (rl_cpu_isa_set((rl_cpu_isa)isa) != RL_OK) continue;
            float got = NAN;
            rl_status st = rl_vec_dot(t, nw, w, a, &got);
            CHECKF(st == RL_OK, "%s on %s: rl_vec_dot: %s (no kernel linked?)", name,
                   rl_cpu_isa_name((rl_cpu_isa)isa), rl_status_str(st));
            if (st != RL_OK) continue;
            CHECKF(fabs(got - want) <= TOL_ZOO * fabs(want), "%s on %s: %.9g, ggml %.9g (rel %.3g)",
                   name, rl_cpu_isa_name((rl_cpu_isa)isa), got, want,
                   fabs(got - want) / fabs(want));
            if (isa == RL_CPU_ISA_REF) n_checked++;
        }
    }
    rl_cpu_isa_set(saved);
    CHECKF(n_checked == (int)RL_ARRAY_LEN(k_dot_types), "zoo: %d of %d types reproduced", n_checked,
           (int)RL_ARRAY_LEN(k_dot_types));
    json_decref(root);
    rl_gguf_free(g);
}

/* ---- API --------------------------------------------------------------------------- */

TEST(api_contract) {
    float out = 1;
    block_q8_0 b[2] = {0};
    CHECK_EQ_INT(rl_vec_dot(RL_TYPE_Q8_K, 256, b, b, &out), RL_ERR_UNSUPPORTED);
    CHECK_EQ_INT(rl_vec_dot(RL_TYPE_Q8_1, 32, b, b, &out), RL_ERR_UNSUPPORTED);
    CHECK_EQ_INT(rl_vec_dot(RL_TYPE_I32, 4, b, b, &out), RL_ERR_UNSUPPORTED);
    CHECK_EQ_INT(rl_vec_dot(RL_TYPE_Q8_0, 48, b, b, &out), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_vec_dot(RL_TYPE_Q8_0, -32, b, b, &out), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_vec_dot(RL_TYPE_Q8_0, 32, NULL, b, &out), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_vec_dot(RL_TYPE_Q8_0, 32, b, b, NULL), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_vec_dot((rl_type)5, 32, b, b, &out), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_vec_dot(RL_TYPE_Q8_0, 0, NULL, NULL, &out), RL_OK);
    CHECK(out == 0.0f);
    CHECK_EQ_INT(rl_vec_dot(RL_TYPE_Q8_0, 64, b, b, &out), RL_OK);
    CHECK(out == 0.0f);

    CHECK_EQ_INT(rl_type_vec_dot_type(RL_TYPE_Q4_0), RL_TYPE_Q8_0);
    CHECK_EQ_INT(rl_type_vec_dot_type(RL_TYPE_Q5_1), RL_TYPE_Q8_1);
    CHECK_EQ_INT(rl_type_vec_dot_type(RL_TYPE_Q4_K), RL_TYPE_Q8_K);
    CHECK_EQ_INT(rl_type_vec_dot_type(RL_TYPE_IQ4_NL), RL_TYPE_Q8_0);
    CHECK_EQ_INT(rl_type_vec_dot_type(RL_TYPE_BF16), RL_TYPE_BF16);
    CHECK_EQ_INT(rl_type_vec_dot_type(RL_TYPE_F32), RL_TYPE_F32);

    CHECK_STR(rl_cpu_isa_name(RL_CPU_ISA_REF), "ref");
    CHECK_STR(rl_cpu_isa_name(RL_CPU_ISA_AVX512), "avx512");
    CHECK_STR(rl_cpu_isa_name((rl_cpu_isa)7), "?");
    CHECK_EQ_INT(rl_cpu_isa_set((rl_cpu_isa)3), RL_ERR_INVALID_ARG);
    rl_cpu_isa best = rl_cpu_isa_best();
    for (int i = 0; i < RL_CPU_ISA_COUNT; i++)
        CHECK_EQ_INT(rl_cpu_isa_set((rl_cpu_isa)i), i <= (int)best ? RL_OK : RL_ERR_UNSUPPORTED);
    CHECK_EQ_INT(rl_cpu_isa_set(best), RL_OK);
    CHECK_EQ_INT(rl_cpu_isa_active(), best);
    /* this machine (Zen 4 class) has AVX-512; cpuid must see it */
    fprintf(stderr, "  best ISA: %s, avx512-bf16: %d, physical cores: %d\n", rl_cpu_isa_name(best),
            rl__cpu_has_avx512bf16(), rl_cpu_physical_cores());

    cpu_set_t set;
    CPU_ZERO(&set);
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
    int pc = rl_cpu_physical_cores();
    CHECK(pc >= 1 && pc <= CPU_COUNT(&set));
    /* restricted to one CPU, the process has one core */
    int first = -1;
    for (int c = 0; c < CPU_SETSIZE && first < 0; c++)
        if (CPU_ISSET(c, &set)) first = c;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    if (sched_setaffinity(0, sizeof one, &one) == 0) {
        CHECK_EQ_INT(rl_cpu_physical_cores(), 1);
        CHECK(sched_setaffinity(0, sizeof set, &set) == 0);
    }
}

/* RUVLLM_CPU_ISA is read once per process: run this program again with it set. */
static char *child_isa(const char *value) {
    static char buf[512];
    char cmd[4200];
    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) return NULL;
    self[len] = 0;
    snprintf(cmd, sizeof cmd, "RUVLLM_CPU_ISA='%s' '%s' --print-isa 2>&1", value, self);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    pclose(p);
    return buf;
}

TEST(env_forcing) {
    char *s = child_isa("ref");
    if (!s) SKIP("cannot re-run self");
    CHECKF(strcmp(s, "ref\n") == 0, "got '%s'", s);
    s = child_isa("bogus");
    CHECKF(strstr(s, "error: RUVLLM_CPU_ISA=bogus") != NULL, "got '%s'", s);
    CHECKF(strstr(s, rl_cpu_isa_name(rl_cpu_isa_best())) != NULL, "got '%s'", s);
    if (rl_cpu_isa_best() >= RL_CPU_ISA_AVX2) {
        s = child_isa("AVX2");
        CHECKF(strcmp(s, "avx2\n") == 0, "got '%s'", s);
    }
    if (rl_cpu_isa_best() < RL_CPU_ISA_AVX512) {
        s = child_isa("avx512");
        CHECKF(strstr(s, "not supported by this CPU") != NULL, "got '%s'", s);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--print-isa")) {
        printf("%s\n", rl_cpu_isa_name(rl_cpu_isa_active()));
        return 0;
    }
    RUN(api_contract);
    RUN(env_forcing);
    RUN(simd_matches_reference);
    RUN(gemv_equals_vec_dot);
    RUN(quant_zoo_vec_dot);
    return rl_test_finish();
}
