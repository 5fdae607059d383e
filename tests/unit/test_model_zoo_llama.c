/* The llama-architecture models of the zoo (llama3 with rope_freqs, mistral with one KV
 * head, llama-linear with linear RoPE scaling; F32, Q8_0, Q4_K_M) against llama.cpp's
 * goldens. Tolerances: golden/README.md sections 4 and 5. */
#include "golden.h"
#include "test.h"

static const rl_golden_case k_cases[] = {
    {"llama3-F32", 5e-5, true, 0},
    {"llama3-Q8_0", 0.35, false, 0},
    {"llama3-Q4_K_M.norepack", 0.35, false, 0},
    {"mistral-F32", 5e-5, true, 0},
    {"mistral-Q8_0", 0.35, false, 0},
    {"mistral-Q4_K_M.norepack", 0.35, false, 0},
    {"llama-linear-F32", 5e-5, true, 2e-4},
};

TEST(zoo_llama_goldens) {
    int ran = rl_golden_check_cases(k_cases, sizeof k_cases / sizeof k_cases[0]);
    if (!ran) SKIP("no zoo goldens");
}

int main(void) {
    RUN(zoo_llama_goldens);
    return rl_test_finish();
}
