/* Unit tests of the quantization API on small, hand-made inputs: exact values of a few
 * blocks, all-zero and extreme blocks, fp16/bf16 rounding ties and NaNs, argument
 * validation of rl_quantize / rl_dequantize, the importance-matrix requirement, and
 * that an importance matrix lowers the error it weighs. The byte equality with
 * llama.cpp on real data is test_quant_zoo's job. */
#include "quant/quant.h"
#include "quant/quant_k_search.h"
#include "test.h"

#include <math.h>

/* The types whose kernels these tests cover (the F32..Q8_K part of the zoo). */
static const rl_type k_types[] = {
    RL_TYPE_F32,  RL_TYPE_F16,  RL_TYPE_BF16, RL_TYPE_Q4_0, RL_TYPE_Q4_1,
    RL_TYPE_Q5_0, RL_TYPE_Q5_1, RL_TYPE_Q8_0, RL_TYPE_Q8_1, RL_TYPE_Q2_K,
    RL_TYPE_Q3_K, RL_TYPE_Q4_K, RL_TYPE_Q5_K, RL_TYPE_Q6_K, RL_TYPE_Q8_K,
};

static uint64_t g_rng = 0x1234567;
static double urand(void) {
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return ((double)(z >> 11) + 0.5) / 9007199254740992.0;
}
static float gauss(void) {
    return (float)(sqrt(-2 * log(urand())) * cos(6.283185307179586 * urand()));
}

/* quantize n values as one row, dequantize into out; returns the status of the pair */
static rl_status round_trip(rl_type t, const float *x, int64_t n, const float *imx, float *out) {
    size_t rb;
    if (rl_type_row_bytes(t, n, &rb) != RL_OK) return RL_ERR_INVALID_ARG;
    uint8_t *q = malloc(rb);
    rl_status s = rl_quantize(t, x, q, 1, n, imx);
    if (s == RL_OK) s = rl_dequantize(t, q, out, n);
    free(q);
    return s;
}

static double rmse(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s / (double)n);
}

static bool all_finite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(x[i])) return false;
    }
    return true;
}

/* --- exact values ------------------------------------------------------------------ */

/* Q4_0 of x_j = j - 16: the extreme is -16, so d = 2 and q = floor(x/2 + 8.5) clipped to
 * 15; Q8_0 of x_j = j: d = 31/127 in fp16, q = round(j * 127/31). */
TEST(exact_small_blocks) {
    float x[32], y[32];
    block_q4_0 b4;
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    CHECK_EQ_INT(rl_quantize(RL_TYPE_Q4_0, x, &b4, 1, 32, NULL), RL_OK);
    CHECK_EQ_INT(b4.d, 0x4000); /* 2.0 */
    CHECK_EQ_INT(rl_dequantize(RL_TYPE_Q4_0, &b4, y, 32), RL_OK);
    for (int j = 0; j < 32; j++) {
        int q = (int)(x[j] * 0.5f + 8.5f);
        if (q > 15) q = 15;
        CHECKF(y[j] == (float)((q - 8) * 2), "j=%d got %g", j, y[j]);
    }

    block_q8_0 b8;
    for (int j = 0; j < 32; j++) x[j] = (float)j;
    CHECK_EQ_INT(rl_quantize(RL_TYPE_Q8_0, x, &b8, 1, 32, NULL), RL_OK);
    CHECK_EQ_INT(b8.d, rl__fp32_to_fp16(31.0f / 127));
    for (int j = 0; j < 32; j++) CHECK_EQ_INT(b8.qs[j], (int)lroundf(j * (1.0f / (31.0f / 127))));
    CHECK_EQ_INT(b8.qs[31], 127);

    /* Q4_1: values 0..15 and an offset are represented exactly (d = 1, m = 3) */
    block_q4_1 b41;
    for (int j = 0; j < 32; j++) x[j] = (float)(3 + j % 16);
    CHECK_EQ_INT(rl_quantize(RL_TYPE_Q4_1, x, &b41, 1, 32, NULL), RL_OK);
    CHECK_EQ_INT(rl_dequantize(RL_TYPE_Q4_1, &b41, y, 32), RL_OK);
    for (int j = 0; j < 32; j++) CHECK(y[j] == x[j]);

    /* Q5_1: 0..31 exactly */
    block_q5_1 b51;
    for (int j = 0; j < 32; j++) x[j] = (float)((j * 7) % 32);
    CHECK_EQ_INT(rl_quantize(RL_TYPE_Q5_1, x, &b51, 1, 32, NULL), RL_OK);
    CHECK_EQ_INT(rl_dequantize(RL_TYPE_Q5_1, &b51, y, 32), RL_OK);
    for (int j = 0; j < 32; j++) CHECK(y[j] == x[j]);
}

/* Q8_1 carries s = fp16(d * sum q) with d the float scale before its fp16 rounding;
 * Q8_K carries float d and 16-element sums. */
TEST(activation_block_sums) {
    float x[256];
    for (int j = 0; j < 256; j++) x[j] = gauss();
    block_q8_1 b1[8];
    CHECK_EQ_INT(rl_quantize(RL_TYPE_Q8_1, x, b1, 1, 256, NULL), RL_OK);
    for (int i = 0; i < 8; i++) {
        int sum = 0;
        float amax = 0;
        for (int j = 0; j < 32; j++) {
            sum += b1[i].qs[j];
            amax = fmaxf(amax, fabsf(x[32 * i + j]));
        }
        CHECK_EQ_INT(b1[i].d, rl__fp32_to_fp16(amax / 127));
        CHECK_EQ_INT(b1[i].s, rl__fp32_to_fp16(sum * (amax / 127)));
    }
    block_q8_K bk;
    CHECK_EQ_INT(rl_quantize(RL_TYPE_Q8_K, x, &bk, 1, 256, NULL), RL_OK);
    for (int j = 0; j < 16; j++) {
        int sum = 0;
        for (int l = 0; l < 16; l++) sum += bk.qs[16 * j + l];
        CHECK_EQ_INT(bk.bsums[j], sum);
    }
    int extreme = 0;
    for (int j = 0; j < 256; j++) extreme += bk.qs[j] == 127 || bk.qs[j] == -127;
    CHECK(extreme >= 1);
}

/* --- zero and extreme blocks --------------------------------------------------------- */

TEST(all_zero_rows) {
    float x[512] = {0}, y[512];
    for (size_t k = 0; k < RL_ARRAY_LEN(k_types); k++) {
        rl_type t = k_types[k];
        for (int j = 0; j < 512; j++) y[j] = 1;
        CHECKF(round_trip(t, x, 512, NULL, y) == RL_OK, "%s", rl_type_name(t));
        int nonzero = 0;
        for (int j = 0; j < 512; j++) nonzero += y[j] != 0;
        CHECKF(nonzero == 0, "%s: %d non-zero values", rl_type_name(t), nonzero);
        /* and with an importance matrix */
        float imx[512];
        for (int j = 0; j < 512; j++) imx[j] = 1;
        CHECKF(round_trip(t, x, 512, imx, y) == RL_OK, "%s", rl_type_name(t));
        nonzero = 0;
        for (int j = 0; j < 512; j++) nonzero += y[j] != 0;
        CHECKF(nonzero == 0, "%s imatrix: %d non-zero values", rl_type_name(t), nonzero);
    }
}

/* Rows that stress scale fitting: within fp16's range every output is finite and the
 * error stays a fraction of the block's range. */
TEST(extreme_rows_finite) {
    enum { N = 512 };
    float x[N], y[N], imx[N];
    for (int kind = 0; kind < 8; kind++) {
        for (int j = 0; j < N; j++) {
            float g = gauss();
            switch (kind) {
            case 0: x[j] = g * 3000.0f; break;                   /* large */
            case 1: x[j] = g * 1e-4f; break;                     /* small */
            case 2: x[j] = (j % 97 == 0) ? 2000.0f : g * 1e-3f; break; /* lone outliers */
            case 3: x[j] = 1.0f; break;                          /* constant */
            case 4: x[j] = -fabsf(g); break;                     /* all negative */
            case 5: x[j] = (j & 1) ? 1e-30f : -1e-30f; break;    /* below fp16 */
            case 6: x[j] = (j % 32 == 5) ? -7.0f : 0.0f; break;  /* one value per block */
            default: x[j] = (float)(j % 5) - 2; break;           /* few levels */
            }
            imx[j] = (float)urand();
        }
        float amax = 0;
        for (int j = 0; j < N; j++) amax = fmaxf(amax, fabsf(x[j]));
        for (size_t k = 0; k < RL_ARRAY_LEN(k_types); k++) {
            rl_type t = k_types[k];
            for (int use = 0; use < 2; use++) {
                rl_status s = round_trip(t, x, N, use ? imx : NULL, y);
                CHECKF(s == RL_OK, "%s kind %d", rl_type_name(t), kind);
                CHECKF(all_finite(y, N), "%s kind %d imatrix %d: non-finite output",
                       rl_type_name(t), kind, use);
                double e = rmse(x, y, N);
                /* values below fp16's range may all quantize to zero (error = max) */
                CHECKF(e <= (kind == 5 ? 1.0 : 0.6) * amax,
                       "%s kind %d imatrix %d: rmse %g of max %g",
                       rl_type_name(t), kind, use, e, amax);
            }
        }
    }
}

/* --- fp16 / bf16 rounding -------------------------------------------------------------- */

static uint16_t to_f16(float f) {
    uint16_t h;
    CHECK_EQ_INT(rl_quantize(RL_TYPE_F16, &f, &h, 1, 1, NULL), RL_OK);
    return h;
}
static uint16_t to_bf16(float f) {
    uint16_t h;
    CHECK_EQ_INT(rl_quantize(RL_TYPE_BF16, &f, &h, 1, 1, NULL), RL_OK);
    return h;
}

TEST(half_rounding_ties) {
    static const struct { float f; uint16_t f16, bf16; } cases[] = {
        {1.0f, 0x3c00, 0x3f80},
        {1.0f + 0x1p-11f, 0x3c00, 0x3f80},        /* f16 tie -> even (down) */
        {1.0f + 3 * 0x1p-11f, 0x3c02, 0x3f80},    /* f16 tie -> even (up) */
        {1.0f + 0x1p-8f, 0x3c04, 0x3f80},         /* bf16 tie -> even (down) */
        {1.0f + 3 * 0x1p-8f, 0x3c0c, 0x3f82},     /* bf16 tie -> even (up) */
        {-1.0f - 3 * 0x1p-8f, 0xbc0c, 0xbf82},
        {65504.0f, 0x7bff, 0x4780},
        {65519.0f, 0x7bff, 0x4780},               /* just below the f16 overflow tie */
        {65520.0f, 0x7c00, 0x4780},               /* tie at the top rounds to inf */
        {0x1p-24f, 0x0001, 0x3380},               /* smallest f16 subnormal */
        {0x1p-25f, 0x0000, 0x3300},               /* half of it: tie to even (zero) */
        {3 * 0x1p-25f, 0x0002, 0x33c0},           /* 1.5 ulp: tie to even (2) */
        {-0.0f, 0x8000, 0x8000},
        {INFINITY, 0x7c00, 0x7f80},
        {-INFINITY, 0xfc00, 0xff80},
        {1e10f, 0x7c00, 0x5015},
    };
    for (size_t i = 0; i < RL_ARRAY_LEN(cases); i++) {
        CHECKF(to_f16(cases[i].f) == cases[i].f16, "f16(%a) = 0x%04x, want 0x%04x", cases[i].f,
               to_f16(cases[i].f), cases[i].f16);
        CHECKF(to_bf16(cases[i].f) == cases[i].bf16, "bf16(%a) = 0x%04x, want 0x%04x",
               cases[i].f, to_bf16(cases[i].f), cases[i].bf16);
    }
    /* NaN: f16 gives the canonical quiet NaN with the sign (as ggml's quantizer);
     * bf16 keeps the top payload bits and forces the quiet bit */
    float qnan = rl__bits_f32(0x7fc12345u), snan = rl__bits_f32(0xff812345u);
    CHECK_EQ_INT(to_f16(qnan), 0x7e00);
    CHECK_EQ_INT(to_f16(snan), 0xfe00);
    CHECK_EQ_INT(to_bf16(qnan), 0x7fc1);
    CHECK_EQ_INT(to_bf16(snan), 0xffc1);
    /* decoding: every half is exact; a signaling f16 NaN decodes quiet */
    uint16_t h[3] = {0x7c01, 0x3555, 0x8001};
    float f[3];
    CHECK_EQ_INT(rl_dequantize(RL_TYPE_F16, h, f, 3), RL_OK);
    CHECK_EQ_INT(rl__f32_bits(f[0]), 0x7fc02000u);
    CHECK(f[1] == 0x1.554p-2f);
    CHECK(f[2] == -0x1p-24f);
    uint16_t b[2] = {0x7f81, 0xc049};
    CHECK_EQ_INT(rl_dequantize(RL_TYPE_BF16, b, f, 2), RL_OK);
    CHECK_EQ_INT(rl__f32_bits(f[0]), 0x7f810000u);
    CHECK(f[1] == -3.140625f);
}

/* --- argument validation --------------------------------------------------------------- */

TEST(argument_validation) {
    float x[256] = {0}, y[256];
    uint8_t q[1024];
    /* bad types */
    CHECK_EQ_INT(rl_quantize((rl_type)4, x, q, 1, 32, NULL), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_quantize((rl_type)-1, x, q, 1, 32, NULL), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_quantize(RL_TYPE_COUNT, x, q, 1, 32, NULL), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_dequantize((rl_type)31, q, y, 32), RL_ERR_INVALID_ARG);
    /* integer types have no kernels */
    CHECK_EQ_INT(rl_quantize(RL_TYPE_I8, x, q, 1, 32, NULL), RL_ERR_UNSUPPORTED);
    CHECK_EQ_INT(rl_dequantize(RL_TYPE_I32, q, y, 32), RL_ERR_UNSUPPORTED);
    /* sizes */
    CHECK_EQ_INT(rl_quantize(RL_TYPE_Q4_0, x, q, 1, 31, NULL), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_quantize(RL_TYPE_Q4_K, x, q, 1, 128, NULL), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_quantize(RL_TYPE_Q8_0, x, q, -1, 32, NULL), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_quantize(RL_TYPE_Q8_0, x, q, 1, -32, NULL), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_dequantize(RL_TYPE_Q6_K, q, y, 100), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_dequantize(RL_TYPE_Q8_0, q, y, -32), RL_ERR_INVALID_ARG);
    /* overflowing sizes are refused before any write */
    CHECK_EQ_INT(rl_quantize(RL_TYPE_F32, x, q, INT64_MAX / 2, 64, NULL), RL_ERR_RANGE);
    CHECK_EQ_INT(rl_quantize(RL_TYPE_Q8_0, x, q, INT64_MAX / 64, 64, NULL), RL_ERR_RANGE);
    /* NULL pointers */
    CHECK_EQ_INT(rl_quantize(RL_TYPE_Q8_0, NULL, q, 1, 32, NULL), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_quantize(RL_TYPE_Q8_0, x, NULL, 1, 32, NULL), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_dequantize(RL_TYPE_Q8_0, NULL, y, 32), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(rl_dequantize(RL_TYPE_Q8_0, q, NULL, 32), RL_ERR_INVALID_ARG);
    /* empty work is fine, and touches nothing */
    CHECK_EQ_INT(rl_quantize(RL_TYPE_Q8_0, NULL, NULL, 0, 32, NULL), RL_OK);
    CHECK_EQ_INT(rl_dequantize(RL_TYPE_Q8_0, NULL, NULL, 0), RL_OK);
    /* a valid call still works after all of that */
    CHECK_EQ_INT(rl_quantize(RL_TYPE_Q4_K, x, q, 1, 256, NULL), RL_OK);
    CHECK_EQ_INT(rl_dequantize(RL_TYPE_Q4_K, q, y, 256), RL_OK);
}

/* rows are independent: quantizing 3 rows at once equals 3 single-row calls; and every
 * byte of a row is written (zeroed and 0xff-filled outputs end up equal) */
TEST(rows_independent) {
    enum { N = 512 };
    float x[3 * N], imx[N];
    for (int j = 0; j < 3 * N; j++) x[j] = gauss() * (1 + j / N);
    for (int j = 0; j < N; j++) imx[j] = (float)urand();
    for (size_t k = 0; k < RL_ARRAY_LEN(k_types); k++) {
        rl_type t = k_types[k];
        size_t rb;
        CHECK_EQ_INT(rl_type_row_bytes(t, N, &rb), RL_OK);
        uint8_t *all = calloc(3, rb), *one = calloc(1, rb);
        CHECK_EQ_INT(rl_quantize(t, x, all, 3, N, imx), RL_OK);
        for (int r = 0; r < 3; r++) {
            memset(one, 0xff, rb);
            CHECK_EQ_INT(rl_quantize(t, x + r * N, one, 1, N, imx), RL_OK);
            CHECKF(memcmp(one, all + r * rb, rb) == 0, "%s row %d", rl_type_name(t), r);
        }
        free(all);
        free(one);
    }
}

/* --- importance matrix --------------------------------------------------------------- */

TEST(imatrix_requirement) {
    static const rl_type need[] = {RL_TYPE_IQ2_XXS, RL_TYPE_IQ2_XS, RL_TYPE_IQ2_S,
                                   RL_TYPE_IQ3_XXS, RL_TYPE_IQ1_S,  RL_TYPE_IQ1_M};
    for (size_t i = 0; i < RL_ARRAY_LEN(need); i++) CHECK(rl_type_needs_imatrix(need[i]));
    for (size_t i = 0; i < RL_ARRAY_LEN(k_types); i++) CHECK(!rl_type_needs_imatrix(k_types[i]));
    CHECK(!rl_type_needs_imatrix(RL_TYPE_IQ4_NL));
    CHECK(!rl_type_needs_imatrix(RL_TYPE_IQ3_S));
    CHECK(!rl_type_needs_imatrix((rl_type)4));
    float x[256];
    uint8_t q[sizeof(block_iq2_xxs)];
    for (int j = 0; j < 256; j++) x[j] = gauss();
    memset(q, 0x5a, sizeof(q));
    CHECK_EQ_INT(rl_quantize(RL_TYPE_IQ2_XXS, x, q, 1, 256, NULL), RL_ERR_INVALID_ARG);
    CHECK_EQ_INT(q[0], 0x5a); /* refused before writing */
    CHECK_EQ_INT(rl_quantize(RL_TYPE_IQ1_S, x, q, 1, 256, NULL), RL_ERR_INVALID_ARG);
}

/* With an importance matrix that singles out some columns, the error on those columns
 * (the weighted error the imatrix asks to minimize) must drop compared to quantizing
 * without one. Summed over many rows: a single row may go either way. */
TEST(imatrix_lowers_weighted_error) {
    static const rl_type types[] = {RL_TYPE_Q4_0, RL_TYPE_Q4_1, RL_TYPE_Q5_0, RL_TYPE_Q5_1,
                                    RL_TYPE_Q2_K, RL_TYPE_Q3_K, RL_TYPE_Q4_K, RL_TYPE_Q5_K,
                                    RL_TYPE_Q6_K};
    enum { N = 1024, ROWS = 16 };
    float *x = malloc(sizeof(float) * N * ROWS), *imx = malloc(sizeof(float) * N);
    float *y = malloc(sizeof(float) * N);
    for (int j = 0; j < N * ROWS; j++) x[j] = gauss();
    for (int j = 0; j < N; j++) imx[j] = (j % 8 == 0) ? 50.0f : 0.05f;
    for (size_t k = 0; k < RL_ARRAY_LEN(types); k++) {
        double werr[2] = {0, 0};
        for (int use = 0; use < 2; use++) {
            for (int r = 0; r < ROWS; r++) {
                CHECK_EQ_INT(round_trip(types[k], x + r * N, N, use ? imx : NULL, y), RL_OK);
                for (int j = 0; j < N; j++) {
                    double d = (double)y[j] - x[r * N + j];
                    werr[use] += imx[j] * d * d;
                }
            }
        }
        CHECKF(werr[1] < 0.9 * werr[0], "%s: weighted error %g with imatrix, %g without",
               rl_type_name(types[k]), werr[1], werr[0]);
    }
    free(x);
    free(imx);
    free(y);
}

/* Plain round-trip quality on Gaussian data: bounds a little above what each format
 * achieves (see quant_zoo.json), so a broken search or packing shows up. */
TEST(gaussian_rmse_bounds) {
    static const struct { rl_type t; double max_rmse; } cases[] = {
        {RL_TYPE_F32, 0},       {RL_TYPE_F16, 0.0003},  {RL_TYPE_BF16, 0.0025},
        {RL_TYPE_Q4_0, 0.11},   {RL_TYPE_Q4_1, 0.09},   {RL_TYPE_Q5_0, 0.055},
        {RL_TYPE_Q5_1, 0.045},  {RL_TYPE_Q8_0, 0.0075}, {RL_TYPE_Q8_1, 0.0075},
        {RL_TYPE_Q2_K, 0.33},   {RL_TYPE_Q3_K, 0.18},   {RL_TYPE_Q4_K, 0.085},
        {RL_TYPE_Q5_K, 0.043},  {RL_TYPE_Q6_K, 0.023},  {RL_TYPE_Q8_K, 0.015},
    };
    enum { N = 4096 };
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    for (int j = 0; j < N; j++) x[j] = gauss();
    for (size_t i = 0; i < RL_ARRAY_LEN(cases); i++) {
        CHECK_EQ_INT(round_trip(cases[i].t, x, N, NULL, y), RL_OK);
        double e = rmse(x, y, N);
        CHECKF(e <= cases[i].max_rmse, "%s: rmse %g > %g", rl_type_name(cases[i].t), e,
               cases[i].max_rmse);
        if (cases[i].t != RL_TYPE_F32) CHECKF(e > 0, "%s: lossless?", rl_type_name(cases[i].t));
    }
    free(x);
    free(y);
}

/* Group g of a test case: Gaussian values, scaled by a factor that spans tiny to large,
 * with some groups all zero, all one value, all negative, or a single spike. */
static void search_group(float *x, int n, int g) {
    const float scale = powf(10.0f, (float)(g % 7) - 3.0f);
    for (int i = 0; i < n; i++) x[i] = scale * gauss();
    switch (g % 9) {
    case 1: for (int i = 0; i < n; i++) x[i] = 0; break;
    case 2: for (int i = 0; i < n; i++) x[i] = -0.5f; break;
    case 3: for (int i = 0; i < n; i++) x[i] = -fabsf(x[i]); break;
    case 4: for (int i = 0; i < n; i++) x[i] = i == n / 3 ? 2.0f : 0; break;
    case 5: for (int i = 0; i < n; i++) x[i] = fabsf(x[i]); break;
    }
}

/* The side-by-side searches (rl__make_*_lanes) give the scalar searches' bits on every
 * CPU path, for each group count up to RL_SEARCH_LANES and the parameters the k-quants
 * and legacy types call them with. */
TEST(search_lanes_match_scalar) {
    enum { NG = RL_SEARCH_LANES, NMAX_N = 32 };
    static const struct { int n, nmax, nstep; float rmin, rdelta; bool mad, v3, weighted; }
        qkx[] = {
            {32, 15, 20, -1.0f, 0.1f, false, false, true},  /* Q4_K */
            {32, 31, 15, -0.5f, 0.1f, false, false, true},  /* Q5_K */
            {32, 15, 36, -0.9f, 0.05f, false, true, true},  /* Q4_K imatrix */
            {16, 3, 15, -0.5f, 0.1f, true, false, true},    /* Q2_K */
            {16, 3, 0, -0.5f, 0.1f, true, true, false},     /* no steps, x^2 weights */
        };
    float x[NG * NMAX_N], w[NG * NMAX_N], sc[NG], mn[NG], sc_ref[NG], mn_ref[NG];
    uint8_t L[NG * NMAX_N], L_ref[NG * NMAX_N], Laux[NMAX_N];
    int8_t Ls[NG * NMAX_N], Ls_ref[NG * NMAX_N];
    const rl_cpu_isa isa0 = rl_cpu_isa_active();
    for (int isa = 0; isa < RL_CPU_ISA_COUNT; isa++) {
        if (rl_cpu_isa_set((rl_cpu_isa)isa) != RL_OK) continue;
        for (int rep = 0; rep < 40; rep++) {
            for (size_t c = 0; c < RL_ARRAY_LEN(qkx); c++) {
                const int n = qkx[c].n, ng = 1 + (rep * 5 + (int)c) % NG;
                for (int g = 0; g < ng; g++) search_group(x + n * g, n, rep + g);
                for (int i = 0; i < n * ng; i++) w[i] = 0.25f + fabsf(gauss());
                const float *wp = qkx[c].weighted ? w : NULL;
                rl__make_qkx_quants_lanes(ng, n, qkx[c].nmax, x, wp ? wp : w, L, sc, mn,
                                          qkx[c].rmin, qkx[c].rdelta, qkx[c].nstep,
                                          qkx[c].mad, qkx[c].v3);
                for (int g = 0; g < ng; g++) {
                    float (*f)(int, int, const float *, const float *, uint8_t *, float *,
                               uint8_t *, float, float, int, bool) =
                        qkx[c].v3 ? rl__make_qkx3_quants : rl__make_qkx2_quants;
                    sc_ref[g] = f(n, qkx[c].nmax, x + n * g, (wp ? wp : w) + n * g,
                                  L_ref + n * g, &mn_ref[g], Laux, qkx[c].rmin, qkx[c].rdelta,
                                  qkx[c].nstep, qkx[c].mad);
                }
                CHECKF(!memcmp(sc, sc_ref, sizeof(float) * (size_t)ng) &&
                       !memcmp(mn, mn_ref, sizeof(float) * (size_t)ng) &&
                       !memcmp(L, L_ref, (size_t)(n * ng)),
                       "%s: qkx case %zu, %d groups, rep %d differs", rl_cpu_isa_name(isa), c,
                       ng, rep);
            }
            for (int qwk = 0; qwk < 2; qwk++) {
                const int n = 16, ng = 1 + (rep * 3 + qwk) % NG;
                for (int g = 0; g < ng; g++) search_group(x + n * g, n, rep + 2 * g);
                for (int i = 0; i < n * ng; i++) w[i] = 0.25f + fabsf(gauss());
                const float *qw = qwk ? w : NULL;
                rl__make_qx_quants_lanes(ng, n, 32, x, qw, Ls, sc);
                for (int g = 0; g < ng; g++)
                    sc_ref[g] = rl__make_qx_quants(n, 32, x + n * g, Ls_ref + n * g, 1,
                                                   qw ? qw + n * g : NULL);
                CHECKF(!memcmp(sc, sc_ref, sizeof(float) * (size_t)ng) &&
                       !memcmp(Ls, Ls_ref, (size_t)(n * ng)),
                       "%s: qx (imatrix %d), %d groups, rep %d differs", rl_cpu_isa_name(isa),
                       qwk, ng, rep);
            }
        }
    }
    rl_cpu_isa_set(isa0);
}

int main(void) {
    RUN(exact_small_blocks);
    RUN(activation_block_sums);
    RUN(all_zero_rows);
    RUN(extreme_rows_finite);
    RUN(half_rounding_ties);
    RUN(argument_validation);
    RUN(rows_independent);
    RUN(imatrix_requirement);
    RUN(imatrix_lowers_weighted_error);
    RUN(gaussian_rmse_bounds);
    RUN(search_lanes_match_scalar);
    return rl_test_finish();
}
