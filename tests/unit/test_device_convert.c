/* What a GPU model does on the CPU side, without a GPU:
 *  - the weight conversion at load (src/model/convert.c): which native type each type
 *    without a CUDA kernel becomes, and that converting llama.cpp's own quantized tensors
 *    (golden/quant_zoo.gguf: q.<TYPE> of the 8 x 4096 `src`) adds little error: the
 *    converted tensor is as close to `src` as the original, within 25% of its error plus
 *    Q4_K's own (measured below); and the threaded conversion gives the same bytes as one
 *    thread;
 *  - the parameters and queries: rl_device_check on names, gpu_mem's range and its refusal
 *    on the CPU, rl_model_device_budget refusing a CPU model. */
#include "model/model.h"
#include "test.h"

#include <math.h>

TEST(targets) {
    static const struct {
        rl_type from;
        int64_t ne0;
        rl_type to;
    } k[] = {
        {RL_TYPE_IQ2_XXS, 4096, RL_TYPE_Q4_K}, {RL_TYPE_IQ2_XS, 256, RL_TYPE_Q4_K},
        {RL_TYPE_IQ2_S, 512, RL_TYPE_Q4_K},    {RL_TYPE_IQ3_XXS, 4096, RL_TYPE_Q4_K},
        {RL_TYPE_IQ3_S, 4096, RL_TYPE_Q4_K},   {RL_TYPE_IQ1_S, 4096, RL_TYPE_Q4_K},
        {RL_TYPE_IQ1_M, 4096, RL_TYPE_Q4_K},   {RL_TYPE_TQ1_0, 4096, RL_TYPE_Q4_K},
        {RL_TYPE_TQ2_0, 4096, RL_TYPE_Q4_K},   {RL_TYPE_Q1_0, 4096, RL_TYPE_Q4_K},
        {RL_TYPE_Q2_0, 4096, RL_TYPE_Q4_K},    {RL_TYPE_MXFP4, 4096, RL_TYPE_Q8_0},
        {RL_TYPE_NVFP4, 4096, RL_TYPE_Q8_0},   {RL_TYPE_Q8_1, 64, RL_TYPE_Q8_0},
        {RL_TYPE_MXFP4, 96, RL_TYPE_Q8_0},     {RL_TYPE_IQ3_S, 4096 + 32, RL_TYPE_F16},
        {RL_TYPE_Q4_K, 4096, RL_TYPE_Q4_K},    {RL_TYPE_F32, 100, RL_TYPE_F32},
        {RL_TYPE_BF16, 100, RL_TYPE_BF16},     {RL_TYPE_IQ4_XS, 256, RL_TYPE_IQ4_XS},
    };
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
        rl_type t = rl__convert_target(k[i].from, k[i].ne0);
        CHECKF(t == k[i].to, "%s ne0 %lld: %s, expected %s", rl_type_name(k[i].from),
               (long long)k[i].ne0, rl_type_name(t), rl_type_name(k[i].to));
    }
}

TEST(quant_zoo_conversions) {
    const char *path = rl_test_data("golden/quant_zoo.gguf");
    rl_gguf *g = NULL;
    char err[256];
    if (rl_gguf_open(path, &g, err, sizeof err) != RL_OK) SKIP("%s: %s", path, err);
    rl_gguf_tensor_info src;
    int64_t si = rl_gguf_find_tensor(g, "src");
    CHECK(si >= 0);
    if (si < 0) {
        rl_gguf_free(g);
        return;
    }
    rl_gguf_tensor(g, si, &src);
    const int64_t ne0 = src.ne[0], nrows = src.ne[1], n = ne0 * nrows;
    CHECK(src.type == RL_TYPE_F32 && ne0 == 4096 && nrows == 8);
    /* Q4_K's own error on src: what a conversion to Q4_K may add at most */
    float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n);
    uint8_t *q4 = malloc((size_t)nrows * 144 * 16);
    CHECK(rl_quantize(RL_TYPE_Q4_K, src.data, q4, nrows, ne0, NULL) == RL_OK);
    CHECK(rl_dequantize(RL_TYPE_Q4_K, q4, a, n) == RL_OK);
    const double e_q4k = rl_test_nmse(a, src.data, n);
    fprintf(stderr, "  Q4_K on src: nmse %.3g\n", e_q4k);
    free(q4);

    rl_threadpool *pool = NULL;
    CHECK(rl_threadpool_create(3, &pool) == RL_OK);
    static const rl_type k_types[] = {
        RL_TYPE_IQ1_S,   RL_TYPE_IQ1_M, RL_TYPE_IQ2_XXS, RL_TYPE_IQ2_XS, RL_TYPE_IQ2_S,
        RL_TYPE_IQ3_XXS, RL_TYPE_IQ3_S, RL_TYPE_TQ1_0,   RL_TYPE_TQ2_0,  RL_TYPE_MXFP4,
        RL_TYPE_NVFP4,   RL_TYPE_Q1_0,  RL_TYPE_Q2_0};
    int n_done = 0;
    for (size_t k = 0; k < sizeof k_types / sizeof k_types[0]; k++) {
        const rl_type t = k_types[k];
        char name[32];
        snprintf(name, sizeof name, "q.%s", rl_type_name(t));
        int64_t qi = rl_gguf_find_tensor(g, name);
        if (qi < 0) {
            fprintf(stderr, "  %s: not in the zoo\n", name);
            continue;
        }
        rl_gguf_tensor_info q;
        rl_gguf_tensor(g, qi, &q);
        CHECKF(q.type == t && q.ne[0] == ne0 && q.ne[1] == nrows, "%s", name);
        const rl_type to = rl__convert_target(t, ne0);
        size_t rb = 0;
        CHECK(rl_type_row_bytes(to, ne0, &rb) == RL_OK);
        uint8_t *c1 = malloc(rb * (size_t)nrows), *c3 = malloc(rb * (size_t)nrows);
        CHECK(rl__convert_rows(NULL, t, q.data, ne0, nrows, to, c1) == RL_OK);
        CHECK(rl__convert_rows(pool, t, q.data, ne0, nrows, to, c3) == RL_OK);
        CHECKF(!memcmp(c1, c3, rb * (size_t)nrows), "%s: threaded conversion differs", name);
        CHECK(rl_dequantize(t, q.data, a, n) == RL_OK);
        CHECK(rl_dequantize(to, c1, b, n) == RL_OK);
        const double e_orig = rl_test_nmse(a, src.data, n), e_conv = rl_test_nmse(b, src.data, n);
        const double e_step = rl_test_nmse(b, a, n);
        const double own = to == RL_TYPE_Q4_K ? e_q4k : 1e-4;
        fprintf(stderr, "  %-8s -> %-5s nmse vs src %.4g -> %.4g (conversion alone %.3g)\n",
                rl_type_name(t), rl_type_name(to), e_orig, e_conv, e_step);
        CHECKF(e_conv <= 1.25 * e_orig + own, "%s -> %s: nmse %.4g, was %.4g", name,
               rl_type_name(to), e_conv, e_orig);
        CHECKF(e_step <= 2 * own, "%s -> %s: the conversion moved it by nmse %.4g", name,
               rl_type_name(to), e_step);
        free(c1);
        free(c3);
        n_done++;
    }
    CHECKF(n_done >= 10, "only %d types converted", n_done);
    rl_threadpool_free(pool);
    free(a);
    free(b);
    rl_gguf_free(g);
}

TEST(params) {
    char err[256];
    CHECK(rl_device_check(NULL, err, sizeof err) == RL_OK);
    CHECK(rl_device_check("cpu", err, sizeof err) == RL_OK);
    static const char *const bad[] = {"gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECKF(rl_device_check(bad[i], err, sizeof err) == RL_ERR_INVALID_ARG, "%s", bad[i]);
        CHECKF(strstr(err, "not a device") != NULL, "%s: %s", bad[i], err);
    }
    rl_status st = rl_device_check("cuda:9999", err, sizeof err);
    CHECKF(st == RL_ERR_UNSUPPORTED && err[0], "cuda:9999: %s", rl_status_str(st));
    fprintf(stderr, "  cuda:9999: %s\n", err);

    const char *path = rl_test_data("models/stories260K.gguf");
    FILE *f = fopen(path, "rb");
    if (!f) SKIP("no %s", path);
    fclose(f);
    rl_model_params mp = rl_model_default_params();
    CHECK(mp.gpu_mem == 0);
    rl_model *m = NULL;
    static const struct {
        const char *device;
        float gpu_mem;
        const char *msg;
    } k_bad[] = {
        {"cpu", 0.5f, "applies to a GPU"}, {NULL, 0.5f, "applies to a GPU"},
        {"cuda", 1.5f, "out of range"},    {"cuda", -0.1f, "out of range"},
        {"cuda", NAN, "out of range"},
    };
    for (size_t i = 0; i < sizeof k_bad / sizeof k_bad[0]; i++) {
        mp.device = k_bad[i].device;
        mp.gpu_mem = k_bad[i].gpu_mem;
        st = rl_model_load(path, &mp, &m, err, sizeof err);
        CHECKF(st == RL_ERR_INVALID_ARG && !m, "case %zu: %s", i, rl_status_str(st));
        CHECKF(strstr(err, "gpu_mem") && strstr(err, k_bad[i].msg), "case %zu: %s", i, err);
        rl_model_free(m);
        m = NULL;
    }
    mp.device = "cpu";
    mp.gpu_mem = 0;
    CHECK(rl_model_load(path, &mp, &m, err, sizeof err) == RL_OK);
    rl_device_budget b;
    st = rl_model_device_budget(m, RL_TYPE_F16, 0, &b, err, sizeof err);
    CHECKF(st == RL_ERR_INVALID_ARG && strstr(err, "CPU"), "%s: %s", rl_status_str(st), err);
    rl_model_free(m);
}

int main(void) {
    RUN(targets);
    RUN(quant_zoo_conversions);
    RUN(params);
    return rl_test_finish();
}
