/* The mixture-of-experts models of the zoo against llama.cpp's goldens: mixtral (arch
 * llama with 4 experts, top-2 renormalized) and qwen2moe (4 experts, top-2 without
 * renormalization, plus a sigmoid-gated shared expert); F32, Q8_0, Q4_K_M. Tolerances:
 * golden/README.md section 4. Files lacking an expert tensor or the shared expert's gate
 * are refused, naming it. */
#include "golden.h"
#include "test.h"

static const rl_golden_case k_cases[] = {
    {"mixtral-F32", 5e-5, true, 0},
    {"mixtral-Q8_0", 0.35, false, 0},
    {"mixtral-Q4_K_M.norepack", 0.35, false, 0},
    {"qwen2moe-F32", 5e-5, true, 0},
    {"qwen2moe-Q8_0", 0.35, false, 0},
    {"qwen2moe-Q4_K_M.norepack", 0.35, false, 0},
};

TEST(zoo_moe_goldens) {
    int ran = rl_golden_check_cases(k_cases, sizeof k_cases / sizeof k_cases[0]);
    if (!ran) SKIP("no zoo goldens");
}

TEST(zoo_moe_missing_tensors) {
    int ran = rl_golden_check_missing_tensor("mixtral-Q8_0.gguf", "blk.1.ffn_down_exps.weight");
    ran += rl_golden_check_missing_tensor("qwen2moe-Q8_0.gguf", "blk.0.ffn_gate_inp_shexp.weight");
    if (!ran) SKIP("no zoo models");
}

int main(void) {
    RUN(zoo_moe_goldens);
    RUN(zoo_moe_missing_tensors);
    return rl_test_finish();
}
