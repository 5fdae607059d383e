/*
 * Unit tests of the IQ4_NL, IQ4_XS, TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0 and Q2_0 kernels
 * against llama.cpp's quant zoo (golden/quant_zoo.gguf + .json, see golden/README.md):
 * dequantization bit for bit, quantization byte for byte and by RMSE, reference dot
 * products to float rounding; plus edge cases (zero blocks, huge and tiny values) and the
 * importance-matrix path of the IQ4 quantizers.
 */
#include "test.h"
#include "backend/cpu/cpu.h"
#include "quant/quant.h"

#include <jansson.h>
#include <math.h>

typedef struct {
    rl_type type;
    const char *name;
    rl__to_float_fn dequant;
    rl__from_float_fn quant;
    rl__vec_dot_fn dot;
    rl_type vd; /* activation type of the dot */
} small_type;

#define ST(E, s, vd) {RL_TYPE_##E, #E, rl__dequant_##s, rl__quant_##s, rl__vec_dot_##s##_ref, RL_TYPE_##vd}
static const small_type k_types[] = {
    ST(IQ4_NL, iq4_nl, Q8_0), ST(IQ4_XS, iq4_xs, Q8_K), ST(TQ1_0, tq1_0, Q8_K),
    ST(TQ2_0, tq2_0, Q8_K),   ST(MXFP4, mxfp4, Q8_0),   ST(NVFP4, nvfp4, Q8_0),
    ST(Q1_0, q1_0, Q8_0),     ST(Q2_0, q2_0, Q8_0),
};
#undef ST

#define ROWS 8
#define COLS 4096

static rl_gguf *g_zoo;
static json_t *g_json;
static char g_zoo_err[256];

static size_t row_bytes(rl_type t, int64_t n) {
    size_t rb = 0;
    if (rl_type_row_bytes(t, n, &rb) != RL_OK) return 0;
    return rb;
}

/* Tensor `name` of the zoo, checked to be of type t with ROWS x COLS (or 1 row) shape. */
static const void *zoo_tensor(const char *name, rl_type t, int64_t rows) {
    int64_t i = rl_gguf_find_tensor(g_zoo, name);
    CHECKF(i >= 0, "tensor %s missing", name);
    if (i < 0) return NULL;
    rl_gguf_tensor_info ti;
    CHECK(rl_gguf_tensor(g_zoo, i, &ti) == RL_OK);
    CHECKF(ti.type == t, "%s: type %d, expected %d", name, (int)ti.type, (int)t);
    CHECKF(ti.ne[0] == COLS && ti.ne[1] == rows, "%s: shape %lld x %lld", name,
           (long long)ti.ne[0], (long long)ti.ne[1]);
    CHECK(ti.nbytes == row_bytes(t, COLS) * (size_t)rows);
    if (ti.type != t || ti.ne[0] != COLS || ti.ne[1] != rows) return NULL;
    return ti.data;
}

static json_t *zoo_json_type(const char *name) {
    json_t *types = json_object_get(g_json, "types");
    json_t *o = types ? json_object_get(types, name) : NULL;
    CHECKF(o != NULL, "quant_zoo.json has no entry for %s", name);
    return o;
}

static double json_num(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    CHECKF(json_is_number(v), "json field %s missing", key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

#define NEED_ZOO()                                                                         \
    do {                                                                                   \
        if (!g_zoo || !g_json) SKIP("quant zoo not available: %s", g_zoo_err);             \
    } while (0)

TEST(type_table) {
    for (size_t k = 0; k < RL_ARRAY_LEN(k_types); k++) {
        const small_type *st = &k_types[k];
        CHECK_STR(rl_type_name(st->type), st->name);
        CHECK(rl_type_is_quantized(st->type));
        const rl__type_traits *tr = rl__type_traits_get(st->type);
        CHECK(tr && tr->vec_dot_type == st->vd);
        CHECK(tr && tr->to_float == st->dequant && tr->from_float == st->quant);
    }
    CHECK_EQ_INT(rl_type_block_size(RL_TYPE_NVFP4), QK_NVFP4);
    CHECK_EQ_INT(rl_type_block_bytes(RL_TYPE_NVFP4), sizeof(block_nvfp4));
    CHECK_EQ_INT(rl_type_block_size(RL_TYPE_Q1_0), QK1_0);
    CHECK_EQ_INT(rl_type_block_bytes(RL_TYPE_Q1_0), sizeof(block_q1_0));
    CHECK_EQ_INT(rl_type_block_size(RL_TYPE_Q2_0), QK2_0);
    CHECK_EQ_INT(rl_type_block_bytes(RL_TYPE_Q2_0), sizeof(block_q2_0));
}

/* ref.<T> is ggml's to_float of q.<T>: ours must give the same bits. */
TEST(zoo_dequant_exact) {
    NEED_ZOO();
    float *out = malloc(sizeof(float) * ROWS * COLS);
    for (size_t k = 0; k < RL_ARRAY_LEN(k_types); k++) {
        const small_type *st = &k_types[k];
        char qn[64], rn[64];
        snprintf(qn, sizeof qn, "q.%s", st->name);
        snprintf(rn, sizeof rn, "ref.%s", st->name);
        const uint8_t *q = zoo_tensor(qn, st->type, ROWS);
        const float *ref = zoo_tensor(rn, RL_TYPE_F32, ROWS);
        if (!q || !ref) continue;
        const size_t rb = row_bytes(st->type, COLS);
        for (int r = 0; r < ROWS; r++) st->dequant(q + r * rb, out + r * COLS, COLS);
        int mismatch = 0;
        for (int i = 0; i < ROWS * COLS; i++) mismatch += memcmp(&out[i], &ref[i], 4) != 0;
        CHECKF(mismatch == 0, "%s: %d of %d values differ from ggml", st->name, mismatch,
               ROWS * COLS);
    }
    free(out);
}

/* Quantizing src gives q.<T> byte for byte and the JSON's RMSE. For IQ4_NL the zoo used
 * ggml_quantize_chunk's searching quantizer (not the from_float_ref one), which is the one
 * rl__quant_iq4_nl implements, so its bytes must match too. */
TEST(zoo_quantize) {
    NEED_ZOO();
    const float *src = zoo_tensor("src", RL_TYPE_F32, ROWS);
    if (!src) return;
    float *deq = malloc(sizeof(float) * ROWS * COLS);
    uint8_t *q = malloc(row_bytes(RL_TYPE_F32, COLS) * ROWS);
    for (size_t k = 0; k < RL_ARRAY_LEN(k_types); k++) {
        const small_type *st = &k_types[k];
        json_t *jt = zoo_json_type(st->name);
        if (!jt) continue;
        char qn[64];
        snprintf(qn, sizeof qn, "q.%s", st->name);
        const uint8_t *gold = zoo_tensor(qn, st->type, ROWS);
        if (!gold) continue;
        const size_t rb = row_bytes(st->type, COLS);
        for (int r = 0; r < ROWS; r++) st->quant(src + r * COLS, q + r * rb, COLS, NULL);

        size_t diff = 0;
        for (size_t i = 0; i < rb * ROWS; i++) diff += q[i] != gold[i];
        const bool ref_match = json_is_true(json_object_get(jt, "matches_from_float_ref"));
        CHECKF(ref_match || st->type == RL_TYPE_IQ4_NL, "%s: json says no reference match",
               st->name);
        CHECKF(diff == 0, "%s: %zu of %zu bytes differ from q.%s", st->name, diff, rb * ROWS,
               st->name);

        for (int r = 0; r < ROWS; r++) st->dequant(q + r * rb, deq + r * COLS, COLS);
        double se = 0;
        for (int i = 0; i < ROWS * COLS; i++) se += ((double)deq[i] - src[i]) * (deq[i] - src[i]);
        const double rmse = sqrt(se / (ROWS * COLS)), want = json_num(jt, "rmse");
        CHECKF(fabs(rmse - want) <= 0.01 * want, "%s: rmse %.9g, ggml %.9g", st->name, rmse,
               want);
        fprintf(stderr, "  %-6s bytes %s, rmse %.9g (ggml %.9g)\n", st->name,
                diff ? "DIFFER" : "equal", rmse, want);
    }
    free(q);
    free(deq);
}

/* Reference dot of row 0 with act.<VDTYPE> against ggml's vec_dot (zen4 build), and of
 * every row against a float64 dot of the dequantized values. */
TEST(zoo_vec_dot) {
    NEED_ZOO();
    float *w = malloc(sizeof(float) * COLS);
    for (size_t k = 0; k < RL_ARRAY_LEN(k_types); k++) {
        const small_type *st = &k_types[k];
        json_t *jt = zoo_json_type(st->name);
        if (!jt) continue;
        const char *vdn = json_string_value(json_object_get(jt, "vec_dot_type"));
        CHECKF(vdn && strcmp(vdn, rl_type_name(st->vd)) == 0, "%s: vec_dot_type %s",
               st->name, vdn ? vdn : "(none)");
        char qn[64], an[64];
        snprintf(qn, sizeof qn, "q.%s", st->name);
        snprintf(an, sizeof an, "act.%s", rl_type_name(st->vd));
        const uint8_t *q = zoo_tensor(qn, st->type, ROWS);
        const void *act = zoo_tensor(an, st->vd, 1);
        if (!q || !act) continue;

        const double want = json_num(jt, "vec_dot_row0");
        const float got = st->dot(COLS, q, act);
        CHECKF(fabs(got - want) <= 1e-5 * fabs(want), "%s: vec_dot %.9g, ggml %.9g", st->name,
               got, want);
        fprintf(stderr, "  %-6s vec_dot %.9g (ggml %.9g, rel %.2g)\n", st->name, got, want,
                fabs(got - want) / fabs(want));

        /* float64 dot of the dequantized operands, per row */
        const size_t rb = row_bytes(st->type, COLS);
        for (int r = 0; r < ROWS; r++) {
            st->dequant(q + r * rb, w, COLS);
            double exact = 0, mag = 0;
            for (int c = 0; c < COLS; c++) {
                double a;
                if (st->vd == RL_TYPE_Q8_0) {
                    const block_q8_0 *b = (const block_q8_0 *)act + c / QK8_0;
                    a = (double)rl__fp16_to_fp32(b->d) * b->qs[c % QK8_0];
                } else {
                    const block_q8_K *b = (const block_q8_K *)act + c / QK_K;
                    a = (double)b->d * b->qs[c % QK_K];
                }
                exact += w[c] * a;
                mag += fabs(w[c] * a);
            }
            const float d = st->dot(COLS, q + r * rb, act);
            CHECKF(fabs(d - exact) <= 1e-6 * mag, "%s row %d: %.9g vs exact %.9g", st->name, r,
                   d, exact);
        }
    }
    free(w);
}

/* Quantize n values, dequantize, return the max |error| and whether all are finite. */
static bool roundtrip(const small_type *st, const float *x, int n, float *y, double *max_err) {
    uint8_t *q = malloc(row_bytes(st->type, n));
    st->quant(x, q, n, NULL);
    st->dequant(q, y, n);
    free(q);
    bool finite = true;
    *max_err = 0;
    for (int i = 0; i < n; i++) {
        finite &= isfinite(y[i]) != 0;
        *max_err = fmax(*max_err, fabs((double)y[i] - x[i]));
    }
    return finite;
}

TEST(edge_zero_blocks) {
    enum { N = 512 };
    float x[N], y[N];
    for (size_t k = 0; k < RL_ARRAY_LEN(k_types); k++) {
        const small_type *st = &k_types[k];
        memset(x, 0, sizeof x);
        double err;
        CHECKF(roundtrip(st, x, N, y, &err), "%s: non-finite output for zeros", st->name);
        CHECKF(err == 0, "%s: zeros come back as %g", st->name, err);
        /* a zero block next to a normal one stays zero */
        for (int i = 0; i < N / 2; i++) x[i] = (float)sin(i * 0.37) * 2.0f;
        CHECKF(roundtrip(st, x, N, y, &err), "%s: non-finite output", st->name);
        double upper = 0;
        for (int i = N / 2; i < N; i++) upper = fmax(upper, fabs(y[i]));
        CHECKF(upper == 0, "%s: zero half comes back as %g", st->name, upper);
    }
}

/* Error bound relative to the block maximum, by type: what the format can represent. */
static double rel_bound(rl_type t) {
    switch (t) {
    case RL_TYPE_IQ4_NL:
    case RL_TYPE_IQ4_XS: return 0.15;
    case RL_TYPE_MXFP4:
    case RL_TYPE_NVFP4: return 0.26;
    case RL_TYPE_TQ1_0:
    case RL_TYPE_TQ2_0:
    case RL_TYPE_Q2_0: return 0.51;
    default: return 2.0; /* Q1_0: only the sign survives; |x - sign*mean| <= 2 max */
    }
}

/* Large and tiny magnitudes: outputs stay finite (no NaN, no inf) and within what the
 * format can represent. Large means up to 3e4: the fp16 scales of most of these types
 * cannot hold more (ggml's quantizers overflow to inf there too). MXFP4's E8M0 scale
 * reaches the float range. */
TEST(edge_magnitudes) {
    enum { N = 1024 };
    float x[N], y[N];
    const double scales[] = {3e4, 1e3, 1.0, 1e-3, 1e-6};
    for (size_t k = 0; k < RL_ARRAY_LEN(k_types); k++) {
        const small_type *st = &k_types[k];
        for (size_t s = 0; s < RL_ARRAY_LEN(scales); s++) {
            if (st->type == RL_TYPE_NVFP4 && scales[s] > 6 * 448) continue; /* saturates: below */
            double amax = 0;
            for (int i = 0; i < N; i++) {
                x[i] = (float)(scales[s] * sin(i * 1.618 + 0.3) * (i % 7 == 0 ? 1.0 : 0.3));
                amax = fmax(amax, fabs(x[i]));
            }
            double err;
            const bool ok = roundtrip(st, x, N, y, &err);
            CHECKF(ok, "%s scale %g: non-finite output", st->name, scales[s]);
            /* Tiny blocks may flush to zero when the fp16 or E4M3 scale underflows (as in
             * ggml): then the error is the value itself, but never more. */
            const double rel = rel_bound(st->type);
            const double bound = (scales[s] >= 1.0 ? rel : fmax(rel, 1.0)) * amax;
            CHECKF(err <= bound, "%s scale %g: max err %g > %g", st->name, scales[s], err, bound);
        }
    }
    /* MXFP4 spans the float exponent range down to blocks of about 2^-125; below, ggml's
     * exponent wraps around (on x86) and the block comes back as zeros, never as garbage. */
    const small_type *mx = &k_types[4];
    CHECK(mx->type == RL_TYPE_MXFP4);
    const double mx_scales[] = {1e38, 1e20, 1e-20, 1e-38};
    for (size_t s = 0; s < RL_ARRAY_LEN(mx_scales); s++) {
        double amax = 0;
        for (int i = 0; i < N; i++) {
            x[i] = (float)(mx_scales[s] * sin(i * 0.77));
            amax = fmax(amax, fabs(x[i]));
        }
        double err;
        CHECKF(roundtrip(mx, x, N, y, &err), "MXFP4 scale %g: non-finite", mx_scales[s]);
        const double bound = (mx_scales[s] > 1e-37 ? 0.26 : 1.0) * amax;
        CHECKF(err <= bound, "MXFP4 scale %g: err %g", mx_scales[s], err);
    }
    /* NVFP4's E4M3 scale saturates at 448: values beyond 6*448 are clamped, not NaN */
    const small_type *nv = &k_types[5];
    CHECK(nv->type == RL_TYPE_NVFP4);
    for (int i = 0; i < N; i++) x[i] = (float)(1e6 * sin(i * 0.77));
    double err;
    CHECK(roundtrip(nv, x, N, y, &err));
    for (int i = 0; i < N; i++) CHECK(fabsf(y[i]) <= 6.0f * 448.0f);
}

/* Inputs with NaN or inf must not crash or trip the sanitizers; the damage stays inside
 * the blocks that hold them (outputs there are unspecified). Elements 0..255 form one
 * block or several for every type; 256..511 must come out as for clean input. */
TEST(edge_nonfinite_input) {
    enum { N = 512 };
    float x[N], y[N], y_clean[N];
    for (size_t k = 0; k < RL_ARRAY_LEN(k_types); k++) {
        const small_type *st = &k_types[k];
        for (int i = 0; i < N; i++) x[i] = (float)cos(i);
        double err;
        CHECK(roundtrip(st, x, N, y_clean, &err));
        x[3] = NAN;
        x[100] = INFINITY;
        x[101] = -INFINITY;
        (void)roundtrip(st, x, N, y, &err);
        CHECKF(memcmp(y + 256, y_clean + 256, 256 * sizeof(float)) == 0,
               "%s: non-finite input leaked into a clean block", st->name);
    }
}

/* Dequantizing arbitrary bytes: values are scale times table entries; spot-check the
 * layouts against hand-built blocks. */
TEST(hand_built_blocks) {
    float y[256];
    /* Q1_0: d = 0.5, alternating sign bits 0b01010101 -> +d at even elements */
    block_q1_0 b1 = {.d = rl__fp32_to_fp16(0.5f)};
    memset(b1.qs, 0x55, sizeof b1.qs);
    rl__dequant_q1_0(&b1, y, QK1_0);
    CHECK(y[0] == 0.5f && y[1] == -0.5f && y[126] == 0.5f && y[127] == -0.5f);
    /* Q2_0: codes 0,1,2,3 in one byte -> -d, 0, d, 2d */
    block_q2_0 b2 = {.d = rl__fp32_to_fp16(2.0f)};
    memset(b2.qs, 0, sizeof b2.qs);
    b2.qs[1] = 0xE4; /* 3<<6 | 2<<4 | 1<<2 | 0 */
    rl__dequant_q2_0(&b2, y, QK2_0);
    CHECK(y[0] == -2.0f && y[4] == -2.0f && y[5] == 0.0f && y[6] == 2.0f && y[7] == 4.0f);
    /* MXFP4: e = 127 (scale 1, halved table): code 7 = 6.0, code 0xF = -6.0, 1 = 0.5 */
    block_mxfp4 bm = {.e = 127};
    memset(bm.qs, 0, sizeof bm.qs);
    bm.qs[0] = 0xF7;
    bm.qs[1] = 0x01;
    rl__dequant_mxfp4(&bm, y, QK_MXFP4);
    CHECK(y[0] == 6.0f && y[16] == -6.0f && y[1] == 0.5f && y[17] == 0.0f);
    /* NVFP4: E4M3 0x38 = 1.0 (exp 7, man 0); 0x7e = 448; 0x7f reads as 0; 0x01 = 2^-9 */
    block_nvfp4 bn;
    bn.d[0] = 0x38;
    bn.d[1] = 0x7e;
    bn.d[2] = 0x7f;
    bn.d[3] = 0x01;
    memset(bn.qs, 0x77, sizeof bn.qs); /* every element code 7 = 6.0 */
    rl__dequant_nvfp4(&bn, y, QK_NVFP4);
    CHECK(y[0] == 6.0f && y[15] == 6.0f && y[16] == 6.0f * 448 && y[32] == 0.0f);
    CHECK(y[48] == 6.0f * 0x1p-9f);
    /* TQ2_0: byte m of group 0 holds elements m, 32+m, 64+m, 96+m */
    block_tq2_0 bt2 = {.d = rl__fp32_to_fp16(1.0f)};
    memset(bt2.qs, 0x55, sizeof bt2.qs); /* all codes 1 -> 0 */
    bt2.qs[3] = 0x02 | 0x00 << 2 | 0x01 << 4 | 0x02 << 6;
    rl__dequant_tq2_0(&bt2, y, QK_K);
    CHECK(y[3] == 1.0f && y[35] == -1.0f && y[67] == 0.0f && y[99] == 1.0f && y[4] == 0.0f);
    /* TQ1_0: trits (2,0,1,2,1) most significant first: v = 2*81+0+9+2*3+1 = 178,
     * byte = ceil(178*256/243) = 188 */
    block_tq1_0 bt1 = {.d = rl__fp32_to_fp16(1.0f)};
    memset(bt1.qs, 0, sizeof bt1.qs);
    memset(bt1.qh, 0, sizeof bt1.qh);
    bt1.qs[0] = 188;
    rl__dequant_tq1_0(&bt1, y, QK_K);
    CHECK(y[0] == 1.0f && y[32] == -1.0f && y[64] == 0.0f && y[96] == 1.0f && y[128] == 0.0f);
    CHECK(y[1] == -1.0f); /* byte 0 decodes as trits (0,0,0,0,0) -> -1 */
    /* IQ4_XS: ls = 32 + 1 for sub-block 0 (low nibble 1, high bits 2): scale = d */
    block_iq4_xs bx = {.d = rl__fp32_to_fp16(0.25f), .scales_h = 2};
    memset(bx.scales_l, 0, sizeof bx.scales_l);
    bx.scales_l[0] = 0x01;
    memset(bx.qs, 0xF0, sizeof bx.qs); /* low nibble 0 = -127, high 15 = 113 */
    rl__dequant_iq4_xs(&bx, y, QK_K);
    CHECK(y[0] == 0.25f * -127 && y[16] == 0.25f * 113);
    CHECK(y[32] == 0.25f * -32 * -127); /* sub-block 1: ls = 0 -> -32 */
}

/* With an importance matrix the IQ4 quantizers weight the error by it: the
 * imatrix-weighted error should not be worse than without, and the plain RMSE stays
 * close to the unweighted quantizer's. */
TEST(iq4_imatrix) {
    NEED_ZOO();
    const float *src = zoo_tensor("src", RL_TYPE_F32, ROWS);
    const float *imx = zoo_tensor("imatrix", RL_TYPE_F32, 1);
    if (!src || !imx) return;
    float *y = malloc(sizeof(float) * COLS);
    for (size_t k = 0; k < 2; k++) {
        const small_type *st = &k_types[k];
        uint8_t *q0 = malloc(row_bytes(st->type, COLS)), *q1 = malloc(row_bytes(st->type, COLS));
        double werr[2] = {0, 0}, err[2] = {0, 0};
        size_t changed = 0;
        for (int r = 0; r < ROWS; r++) {
            const float *x = src + r * COLS;
            st->quant(x, q0, COLS, NULL);
            st->quant(x, q1, COLS, imx);
            for (size_t i = 0; i < row_bytes(st->type, COLS); i++) changed += q0[i] != q1[i];
            for (int v = 0; v < 2; v++) {
                st->dequant(v ? q1 : q0, y, COLS);
                for (int c = 0; c < COLS; c++) {
                    const double e = (double)y[c] - x[c];
                    werr[v] += imx[c] * e * e;
                    err[v] += e * e;
                }
            }
        }
        CHECKF(changed > 0, "%s: imatrix ignored", st->name);
        CHECKF(werr[1] <= werr[0], "%s: weighted err with imatrix %g > without %g", st->name,
               werr[1], werr[0]);
        CHECKF(err[1] <= 1.1 * err[0], "%s: plain err with imatrix %g vs %g", st->name, err[1],
               err[0]);
        fprintf(stderr, "  %-6s imatrix: weighted err %.4g -> %.4g, bytes changed %zu\n",
                st->name, werr[0], werr[1], changed);
        free(q0);
        free(q1);
    }
    free(y);
}

int main(void) {
    json_error_t jerr;
    const char *zoo_path = rl_test_data("golden/quant_zoo.gguf");
    if (rl_gguf_open(zoo_path, &g_zoo, g_zoo_err, sizeof g_zoo_err) != RL_OK) g_zoo = NULL;
    g_json = json_load_file(rl_test_data("golden/quant_zoo.json"), 0, &jerr);
    if (!g_json) snprintf(g_zoo_err, sizeof g_zoo_err, "quant_zoo.json: %s", jerr.text);

    RUN(type_table);
    RUN(zoo_dequant_exact);
    RUN(zoo_quantize);
    RUN(zoo_vec_dot);
    RUN(edge_zero_blocks);
    RUN(edge_magnitudes);
    RUN(edge_nonfinite_input);
    RUN(hand_built_blocks);
    RUN(iq4_imatrix);

    rl_gguf_free(g_zoo);
    json_decref(g_json);
    return rl_test_finish();
}
