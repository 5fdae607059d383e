/* The phi3 architecture of the zoo against llama.cpp's goldens: phi3 (fused q/k/v and
 * fused gate/up, NeoX RoPE; F32, Q8_0, Q4_K_M) and phi3-longrope (LongRoPE factors and
 * attention factor: the short factors in a 256-cell context, the long ones in a 512-cell
 * context, with a 300-token prompt). Tolerances: golden/README.md sections 4 and 5. A
 * file without its fused FFN matrix is refused, naming it. */
#include "golden.h"
#include "test.h"

static const rl_golden_case k_cases[] = {
    {"phi3-F32", 5e-5, true, 0},
    {"phi3-Q8_0", 0.35, false, 0},
    {"phi3-Q4_K_M.norepack", 0.35, false, 0},
    {"phi3-longrope-F32.ctx256", 5e-5, true, 0},
    {"phi3-longrope-F32.ctx512", 5e-5, true, 2e-4},
};

TEST(zoo_phi3_goldens) {
    int ran = rl_golden_check_cases(k_cases, sizeof k_cases / sizeof k_cases[0]);
    if (!ran) SKIP("no zoo goldens");
}

TEST(zoo_phi3_missing_tensors) {
    if (!rl_golden_check_missing_tensor("phi3-Q8_0.gguf", "blk.1.ffn_up.weight"))
        SKIP("no zoo models");
}

int main(void) {
    RUN(zoo_phi3_goldens);
    RUN(zoo_phi3_missing_tensors);
    return rl_test_finish();
}
