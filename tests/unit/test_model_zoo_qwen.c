/* The Qwen architectures of the zoo against llama.cpp's goldens: qwen2 (q/k/v biases,
 * NeoX RoPE, tied output; F32, Q8_0, Q4_K_M), qwen2-yarn (YaRN scaling, with a
 * 300-token prompt) and qwen3 (per-head q/k RMSNorm, head size 64 with 8 heads over
 * n_embd 256). Tolerances: golden/README.md sections 4 and 5. Each architecture refuses
 * a file that lacks one of its own tensors, naming it. */
#include "golden.h"
#include "test.h"

static const rl_golden_case k_cases[] = {
    {"qwen2-F32", 5e-5, true, 0},
    {"qwen2-Q8_0", 0.35, false, 0},
    {"qwen2-Q4_K_M.norepack", 0.35, false, 0},
    {"qwen2-yarn-F32", 5e-5, true, 2e-4},
    {"qwen3-F32", 5e-5, true, 0},
    {"qwen3-Q8_0", 0.35, false, 0},
    {"qwen3-Q4_K_M.norepack", 0.35, false, 0},
};

TEST(zoo_qwen_goldens) {
    int ran = rl_golden_check_cases(k_cases, sizeof k_cases / sizeof k_cases[0]);
    if (!ran) SKIP("no zoo goldens");
}

TEST(zoo_qwen_missing_tensors) {
    int ran = rl_golden_check_missing_tensor("qwen2-Q8_0.gguf", "blk.1.attn_k.bias");
    ran += rl_golden_check_missing_tensor("qwen3-Q8_0.gguf", "blk.0.attn_k_norm.weight");
    if (!ran) SKIP("no zoo models");
}

int main(void) {
    RUN(zoo_qwen_goldens);
    RUN(zoo_qwen_missing_tensors);
    return rl_test_finish();
}
