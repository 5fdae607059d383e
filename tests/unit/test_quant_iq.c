/* Tests of the grid-based i-quants IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M
 * against llama.cpp's quant zoo (../shared/golden/quant_zoo.{gguf,json}):
 *  - dequantizing q.<TYPE> reproduces ref.<TYPE> bit for bit;
 *  - quantizing src (with the zoo's imatrix where the JSON says ggml had one) gives the
 *    very bytes of q.<TYPE>, and so an RMSE within 1% of the JSON figure;
 *  - the reference dot of row 0 with act.Q8_K matches vec_dot_row0 to 1e-5 relative;
 * and on random data: round-trip error bounds, agreement of the dot with the dequantized
 * dot, determinism, first use from several threads at once, all-zero and partly-zero
 * blocks, scale invariance. */
#include "backend/cpu/cpu.h"
#include "quant/quant.h"
#include "test.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>

typedef struct iq_case {
    rl_type type;
    rl__vec_dot_fn dot_ref;
    double rel_rmse_max; /* random-data bound on rmse / rms(x), ~15% above the zoo's figure */
} iq_case;

static const iq_case k_cases[] = {
    {RL_TYPE_IQ2_XXS, rl__vec_dot_iq2_xxs_ref, 0.52},
    {RL_TYPE_IQ2_XS, rl__vec_dot_iq2_xs_ref, 0.43},
    {RL_TYPE_IQ2_S, rl__vec_dot_iq2_s_ref, 0.37},
    {RL_TYPE_IQ3_XXS, rl__vec_dot_iq3_xxs_ref, 0.25},
    {RL_TYPE_IQ3_S, rl__vec_dot_iq3_s_ref, 0.22},
    {RL_TYPE_IQ1_S, rl__vec_dot_iq1_s_ref, 0.71},
    {RL_TYPE_IQ1_M, rl__vec_dot_iq1_m_ref, 0.62},
};
#define N_CASES ((int)RL_ARRAY_LEN(k_cases))

/* ---- random data ----------------------------------------------------------------- */

static uint64_t g_rng = 0x1A2B3C4D5E6F7788ull;
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

static double rmse(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s / (double)n);
}

static size_t row_bytes(rl_type t, int64_t n) {
    size_t rb = 0;
    CHECK_EQ_INT(rl_type_row_bytes(t, n, &rb), RL_OK);
    return rb;
}

/* ---- first use from several threads (runs first, before anything built the tables) --- */

enum { TH_N = 4 * QK_K, TH_THREADS = 4 };
static float g_th_x[TH_N], g_th_imx[TH_N];
static uint8_t g_th_out[TH_THREADS][N_CASES][TH_N / QK_K * 110];

static void *th_main(void *arg) {
    const int t = (int)(intptr_t)arg;
    for (int c = 0; c < N_CASES; c++) {
        const int k = (c + t) % N_CASES; /* every thread starts on another type */
        rl_quantize(k_cases[k].type, g_th_x, g_th_out[t][k], 1, TH_N, g_th_imx);
    }
    return NULL;
}

TEST(first_use_concurrent) {
    for (int i = 0; i < TH_N; i++) {
        g_th_x[i] = gauss();
        g_th_imx[i] = (float)(0.1 + urand());
    }
    pthread_t th[TH_THREADS];
    for (int t = 0; t < TH_THREADS; t++)
        CHECK(pthread_create(&th[t], NULL, th_main, (void *)(intptr_t)t) == 0);
    for (int t = 0; t < TH_THREADS; t++) pthread_join(th[t], NULL);
    for (int c = 0; c < N_CASES; c++) {
        const size_t rb = row_bytes(k_cases[c].type, TH_N);
        uint8_t one[TH_N / QK_K * 110];
        CHECK_EQ_INT(rl_quantize(k_cases[c].type, g_th_x, one, 1, TH_N, g_th_imx), RL_OK);
        for (int t = 0; t < TH_THREADS; t++)
            CHECKF(memcmp(g_th_out[t][c], one, rb) == 0, "%s thread %d",
                   rl_type_name(k_cases[c].type), t);
    }
}

/* ---- the quant zoo ------------------------------------------------------------------ */

static rl_gguf *g_zoo;
static json_t *g_json;

/* Data of tensor name; checks its type and element count. NULL (and a failed check) when
 * absent. */
static const void *zoo_tensor(const char *name, rl_type type, int64_t n) {
    int64_t i = rl_gguf_find_tensor(g_zoo, name);
    CHECKF(i >= 0, "tensor %s missing", name);
    if (i < 0) return NULL;
    rl_gguf_tensor_info ti;
    CHECK_EQ_INT(rl_gguf_tensor(g_zoo, i, &ti), RL_OK);
    CHECKF(ti.type == type && ti.ne[0] * ti.ne[1] * ti.ne[2] * ti.ne[3] == n, "tensor %s", name);
    return ti.type == type ? ti.data : NULL;
}

static json_t *zoo_json_type(rl_type t) {
    json_t *j = json_object_get(json_object_get(g_json, "types"), rl_type_name(t));
    CHECKF(j != NULL, "no JSON entry for %s", rl_type_name(t));
    return j;
}

static bool zoo_open(void) {
    if (g_zoo) return true;
    char err[256] = "";
    if (rl_gguf_open(rl_test_data("golden/quant_zoo.gguf"), &g_zoo, err, sizeof err) != RL_OK) {
        fprintf(stderr, "quant_zoo.gguf: %s\n", err);
        return false;
    }
    json_error_t jerr;
    g_json = json_load_file(rl_test_data("golden/quant_zoo.json"), 0, &jerr);
    if (!g_json) {
        fprintf(stderr, "quant_zoo.json: %s\n", jerr.text);
        return false;
    }
    return true;
}

enum { ZOO_ROWS = 8, ZOO_COLS = 4096, ZOO_N = ZOO_ROWS * ZOO_COLS };

TEST(zoo_dequant_bit_exact) {
    if (!zoo_open()) SKIP("quant zoo not readable under RUVLLM_TESTDATA");
    float *out = malloc(sizeof(float) * ZOO_N);
    for (int c = 0; c < N_CASES; c++) {
        const rl_type t = k_cases[c].type;
        char qn[64], rn[64];
        snprintf(qn, sizeof qn, "q.%s", rl_type_name(t));
        snprintf(rn, sizeof rn, "ref.%s", rl_type_name(t));
        const void *q = zoo_tensor(qn, t, ZOO_N);
        const float *ref = zoo_tensor(rn, RL_TYPE_F32, ZOO_N);
        if (!q || !ref) continue;
        CHECK_EQ_INT(rl_dequantize(t, q, out, ZOO_N), RL_OK);
        int64_t bad = 0, first = -1;
        for (int64_t i = 0; i < ZOO_N; i++) {
            if (rl__f32_bits(out[i]) != rl__f32_bits(ref[i])) {
                if (first < 0) first = i;
                bad++;
            }
        }
        CHECKF(bad == 0, "%s: %lld values differ, first at %lld", rl_type_name(t),
               (long long)bad, (long long)first);
    }
    free(out);
}

TEST(zoo_quantize_bytes_and_rmse) {
    if (!zoo_open()) SKIP("quant zoo not readable under RUVLLM_TESTDATA");
    const float *src = zoo_tensor("src", RL_TYPE_F32, ZOO_N);
    const float *imx = zoo_tensor("imatrix", RL_TYPE_F32, ZOO_COLS);
    if (!src || !imx) return;
    float *out = malloc(sizeof(float) * ZOO_N);
    for (int c = 0; c < N_CASES; c++) {
        const rl_type t = k_cases[c].type;
        json_t *jt = zoo_json_type(t);
        if (!jt) continue;
        /* the JSON names the imatrix ggml was given ("x2_col_mean") or has null */
        const bool with_imx = json_is_string(json_object_get(jt, "imatrix"));
        CHECK_EQ_INT(with_imx, rl_type_needs_imatrix(t));
        char qn[64];
        snprintf(qn, sizeof qn, "q.%s", rl_type_name(t));
        const uint8_t *q = zoo_tensor(qn, t, ZOO_N);
        const size_t rb = row_bytes(t, ZOO_COLS);
        uint8_t *mine = malloc(rb * ZOO_ROWS);
        memset(mine, 0xA5, rb * ZOO_ROWS);
        CHECK_EQ_INT(rl_quantize(t, src, mine, ZOO_ROWS, ZOO_COLS, with_imx ? imx : NULL), RL_OK);
        size_t diff = 0;
        for (size_t i = 0; q && i < rb * ZOO_ROWS; i++) diff += mine[i] != q[i];
        CHECK_EQ_INT(rl_dequantize(t, mine, out, ZOO_N), RL_OK);
        const double r = rmse(out, src, ZOO_N);
        const double want = json_number_value(json_object_get(jt, "rmse"));
        fprintf(stderr, "  %-8s imatrix=%s rmse %.9g (zoo %.9g, %+.4f%%) bytes %s (%zu differ)\n",
                rl_type_name(t), with_imx ? "yes" : "no ", r, want, 100 * (r / want - 1),
                diff ? "DIFFER" : "equal", diff);
        CHECKF(fabs(r / want - 1) <= 0.01, "%s rmse %g vs %g", rl_type_name(t), r, want);
        /* we follow ggml's algorithm to the last float operation: the same bytes */
        CHECKF(q && diff == 0, "%s: %zu bytes differ from q.%s", rl_type_name(t), diff,
               rl_type_name(t));
        if (json_is_true(json_object_get(jt, "matches_from_float_ref"))) CHECK(!with_imx);
        free(mine);
    }
    free(out);
}

TEST(zoo_vec_dot) {
    if (!zoo_open()) SKIP("quant zoo not readable under RUVLLM_TESTDATA");
    const void *act = zoo_tensor("act.Q8_K", RL_TYPE_Q8_K, ZOO_COLS);
    if (!act) return;
    for (int c = 0; c < N_CASES; c++) {
        const rl_type t = k_cases[c].type;
        json_t *jt = zoo_json_type(t);
        char qn[64];
        snprintf(qn, sizeof qn, "q.%s", rl_type_name(t));
        const void *q = zoo_tensor(qn, t, ZOO_N);
        if (!jt || !q) continue;
        CHECK_EQ_INT(rl_type_vec_dot_type(t), RL_TYPE_Q8_K);
        const double want = json_number_value(json_object_get(jt, "vec_dot_row0"));
        const float got = k_cases[c].dot_ref(ZOO_COLS, q, act);
        fprintf(stderr, "  %-8s vec_dot_ref %.9g (zoo %.9g, rel %.2e)\n", rl_type_name(t), got,
                want, fabs(got - want) / fabs(want));
        CHECKF(fabs(got - want) <= 1e-5 * fabs(want), "%s: %.9g vs %.9g", rl_type_name(t), got,
               want);
        /* the public entry point, on whatever ISA path is active, agrees as well */
        float pub = 0;
        CHECK_EQ_INT(rl_vec_dot(t, ZOO_COLS, q, act, &pub), RL_OK);
        CHECKF(fabs(pub - want) <= 1e-5 * fabs(want), "%s rl_vec_dot: %.9g vs %.9g",
               rl_type_name(t), pub, want);
    }
}

/* ---- random data ------------------------------------------------------------------ */

enum { RT_ROWS = 4, RT_COLS = 2048, RT_N = RT_ROWS * RT_COLS };

/* Quantize with an importance matrix (and without, where the type allows), dequantize,
 * bound the error relative to the signal; quantizing again gives the same bytes. */
TEST(round_trip_random) {
    float *x = malloc(sizeof(float) * RT_N), *y = malloc(sizeof(float) * RT_N);
    float *imx = malloc(sizeof(float) * RT_COLS);
    for (int i = 0; i < RT_N; i++) x[i] = 0.02f * gauss();
    for (int c = 0; c < RT_COLS; c++) {
        double s = 0;
        for (int r = 0; r < RT_ROWS; r++) s += (double)x[r * RT_COLS + c] * x[r * RT_COLS + c];
        imx[c] = (float)(s / RT_ROWS);
    }
    double rms = 0;
    for (int i = 0; i < RT_N; i++) rms += (double)x[i] * x[i];
    rms = sqrt(rms / RT_N);
    for (int c = 0; c < N_CASES; c++) {
        const rl_type t = k_cases[c].type;
        const size_t rb = row_bytes(t, RT_COLS);
        uint8_t *q1 = malloc(rb * RT_ROWS), *q2 = malloc(rb * RT_ROWS);
        for (int pass = 0; pass < 2; pass++) {
            const float *w = pass == 0 ? imx : NULL;
            if (!w && rl_type_needs_imatrix(t)) {
                CHECK_EQ_INT(rl_quantize(t, x, q1, RT_ROWS, RT_COLS, NULL), RL_ERR_INVALID_ARG);
                continue;
            }
            memset(q1, 0x5A, rb * RT_ROWS);
            memset(q2, 0xC3, rb * RT_ROWS);
            CHECK_EQ_INT(rl_quantize(t, x, q1, RT_ROWS, RT_COLS, w), RL_OK);
            CHECK_EQ_INT(rl_quantize(t, x, q2, RT_ROWS, RT_COLS, w), RL_OK);
            CHECKF(memcmp(q1, q2, rb * RT_ROWS) == 0, "%s not deterministic", rl_type_name(t));
            CHECK_EQ_INT(rl_dequantize(t, q1, y, RT_N), RL_OK);
            const double rel = rmse(x, y, RT_N) / rms;
            CHECKF(rel <= k_cases[c].rel_rmse_max, "%s imatrix=%d: rmse/rms %.4f > %.2f",
                   rl_type_name(t), w != NULL, rel, k_cases[c].rel_rmse_max);
            CHECKF(rel >= 0.02, "%s: implausibly exact (%.4f)", rl_type_name(t), rel);
        }
        free(q1);
        free(q2);
    }
    free(x);
    free(y);
    free(imx);
}

/* The importance matrix steers the error: with weights concentrated on a quarter of the
 * columns, those columns come out more accurately than without the emphasis. */
TEST(imatrix_steers_error) {
    enum { N = 4 * QK_K };
    float x[N], y[N], flat[N], focus[N];
    for (int i = 0; i < N; i++) {
        x[i] = gauss();
        flat[i] = 1.0f;
        focus[i] = (i % 4 == 0) ? 100.0f : 0.01f;
    }
    for (int c = 0; c < N_CASES; c++) {
        const rl_type t = k_cases[c].type;
        uint8_t q[N / QK_K * 110];
        double err[2];
        for (int k = 0; k < 2; k++) {
            CHECK_EQ_INT(rl_quantize(t, x, q, 1, N, k ? focus : flat), RL_OK);
            CHECK_EQ_INT(rl_dequantize(t, q, y, N), RL_OK);
            double s = 0;
            for (int i = 0; i < N; i += 4) s += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
            err[k] = s;
        }
        CHECKF(err[1] < err[0], "%s: focused %g vs flat %g", rl_type_name(t), err[1], err[0]);
    }
}

/* The reference dot equals the float dot of the dequantized weights with the dequantized
 * Q8_K activations up to float rounding (the integer sums are exact). */
TEST(vec_dot_matches_dequantized) {
    enum { N = 8 * QK_K };
    float w[N], a[N], wd[N], ad[N], imx[N];
    block_q8_K qa[N / QK_K];
    for (int i = 0; i < N; i++) {
        w[i] = gauss();
        a[i] = gauss();
        imx[i] = (float)(0.5 + urand());
    }
    CHECK_EQ_INT(rl_quantize(RL_TYPE_Q8_K, a, qa, 1, N, NULL), RL_OK);
    CHECK_EQ_INT(rl_dequantize(RL_TYPE_Q8_K, qa, ad, N), RL_OK);
    for (int c = 0; c < N_CASES; c++) {
        const rl_type t = k_cases[c].type;
        uint8_t q[N / QK_K * 110];
        CHECK_EQ_INT(rl_quantize(t, w, q, 1, N, imx), RL_OK);
        CHECK_EQ_INT(rl_dequantize(t, q, wd, N), RL_OK);
        double exact = 0, mag = 0;
        for (int i = 0; i < N; i++) {
            exact += (double)wd[i] * ad[i];
            mag += fabs((double)wd[i] * ad[i]);
        }
        const float got = k_cases[c].dot_ref(N, q, qa);
        CHECKF(fabs(got - exact) <= 1e-5 * mag, "%s: %.9g vs %.9g", rl_type_name(t), got, exact);
    }
}

/* Zero input gives zero output; a zero super-block or zero sub-block inside non-zero data
 * does not disturb its neighbours. Values far from 1 in magnitude keep their relative error. */
TEST(zero_blocks_and_scale) {
    enum { N = 4 * QK_K };
    float x[N], y[N], imx[N];
    for (int i = 0; i < N; i++) imx[i] = 1.0f;
    for (int c = 0; c < N_CASES; c++) {
        const rl_type t = k_cases[c].type;
        uint8_t q[N / QK_K * 110];
        memset(x, 0, sizeof x);
        CHECK_EQ_INT(rl_quantize(t, x, q, 1, N, imx), RL_OK);
        CHECK_EQ_INT(rl_dequantize(t, q, y, N), RL_OK);
        bool zero = true;
        for (int i = 0; i < N; i++) zero = zero && y[i] == 0.0f;
        CHECKF(zero, "%s: zero row does not decode to zeros", rl_type_name(t));

        /* super-block 1 all zero; in super-block 2 the sub-block 64..95 is zero */
        for (int i = 0; i < N; i++) x[i] = gauss();
        for (int i = QK_K; i < 2 * QK_K; i++) x[i] = 0;
        for (int i = 2 * QK_K + 64; i < 2 * QK_K + 96; i++) x[i] = 0;
        CHECK_EQ_INT(rl_quantize(t, x, q, 1, N, imx), RL_OK);
        CHECK_EQ_INT(rl_dequantize(t, q, y, N), RL_OK);
        for (int i = QK_K; i < 2 * QK_K; i++) CHECK(y[i] == 0.0f);
        double e_rest = 0, e_zero = 0, s_rest = 0;
        for (int i = 2 * QK_K; i < 3 * QK_K; i++) {
            const double d = (double)x[i] - y[i];
            if (i >= 2 * QK_K + 64 && i < 2 * QK_K + 96) {
                e_zero += d * d;
            } else {
                e_rest += d * d;
                s_rest += (double)x[i] * x[i];
            }
        }
        CHECKF(sqrt(e_rest / s_rest) <= k_cases[c].rel_rmse_max * 1.2,
               "%s: sub-blocks next to a zero one: rel err %.3f", rl_type_name(t),
               sqrt(e_rest / s_rest));
        /* the zero sub-block decodes to small values (its 4-bit scale code cannot be 0) */
        CHECKF(sqrt(e_zero / 32) <= 0.5 * sqrt(s_rest / (QK_K - 32)), "%s: zero sub-block %.3f",
               rl_type_name(t), sqrt(e_zero / 32));

        /* scaling the input by a power of two scales the output exactly (no overflow or
         * fp16 underflow in this range) */
        for (int i = 0; i < N; i++) x[i] = gauss();
        float y2[N];
        uint8_t q2[N / QK_K * 110];
        CHECK_EQ_INT(rl_quantize(t, x, q, 1, N, imx), RL_OK);
        CHECK_EQ_INT(rl_dequantize(t, q, y, N), RL_OK);
        for (int i = 0; i < N; i++) x[i] *= 1024.0f;
        CHECK_EQ_INT(rl_quantize(t, x, q2, 1, N, imx), RL_OK);
        CHECK_EQ_INT(rl_dequantize(t, q2, y2, N), RL_OK);
        bool scaled = true;
        for (int i = 0; i < N; i++) scaled = scaled && y2[i] == 1024.0f * y[i];
        CHECKF(scaled, "%s: x*1024 does not quantize to 1024*q(x)", rl_type_name(t));
    }
}

int main(void) {
    RUN(first_use_concurrent);
    RUN(zoo_dequant_bit_exact);
    RUN(zoo_quantize_bytes_and_rmse);
    RUN(zoo_vec_dot);
    RUN(round_trip_random);
    RUN(imatrix_steers_error);
    RUN(vec_dot_matches_dequantized);
    RUN(zero_blocks_and_scale);
    rl_gguf_free(g_zoo);
    json_decref(g_json);
    return rl_test_finish();
}
