/* stories260K (a real trained Llama, F32) and its quantized versions against llama.cpp's
 * goldens: prompt logits, 7 teacher-forced steps, argmax where the margin allows, and for
 * F32 the exact greedy continuation. Tolerances: golden/README.md section 4 (F32 5e-5,
 * F16 2e-2, quantized 0.35: llama.cpp itself moves that much between its CPU paths). */
#include "golden.h"
#include "test.h"

static const rl_golden_case k_cases[] = {
    {"stories260K", 5e-5, true, 0},
    {"stories260K-f16", 2e-2, false, 0},
    {"stories260K-q8_0", 0.35, false, 0},
    {"stories260K-q5_1", 0.35, false, 0},
    {"stories260K-q5_0", 0.35, false, 0},
    {"stories260K-q4_1", 0.35, false, 0},
    {"stories260K-q4_0.norepack", 0.35, false, 0},
};

TEST(stories_goldens) {
    int ran = rl_golden_check_cases(k_cases, sizeof k_cases / sizeof k_cases[0]);
    if (!ran) SKIP("no stories260K goldens");
}

int main(void) {
    RUN(stories_goldens);
    return rl_test_finish();
}
