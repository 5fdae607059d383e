/* The llama-architecture models of the zoo (llama3 with rope_freqs, mistral with one KV
 * head, llama-linear with linear RoPE scaling; F32, Q8_0, Q4_K_M) against llama.cpp's
 * goldens. Tolerances: golden/README.md sections 4 and 5. */
#include "golden.h"
#include "test.h"

typedef struct model_case {
    const char *golden;
    double tol;
    double tol_long;
    bool greedy;
} model_case;

static const model_case k_cases[] = {
    {"llama3-F32", 5e-5, 0, true},
    {"llama3-Q8_0", 0.35, 0, false},
    {"llama3-Q4_K_M.norepack", 0.35, 0, false},
    {"mistral-F32", 5e-5, 0, true},
    {"mistral-Q8_0", 0.35, 0, false},
    {"mistral-Q4_K_M.norepack", 0.35, 0, false},
    {"llama-linear-F32", 5e-5, 2e-4, true},
};

TEST(zoo_llama_goldens) {
    int ran = 0;
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) {
        rl_golden_opts o = {.tol = k_cases[i].tol, .tol_long = k_cases[i].tol_long,
                            .greedy = k_cases[i].greedy, .kv_type = RL_TYPE_F32};
        rl_golden_result r;
        ran += rl_golden_check(k_cases[i].golden, &o, &r);
    }
    if (!ran) SKIP("no zoo goldens");
}

int main(void) {
    RUN(zoo_llama_goldens);
    return rl_test_finish();
}
