/* The Gemma architectures of the zoo against llama.cpp's goldens: gemma (embeddings
 * times sqrt(n_embd), GeGLU, head size 128, tied output) and gemma2 (attention and final
 * soft-capping, sliding window on even layers, post-attention and post-FFN norms); F32,
 * Q8_0, Q4_K_M. F32 tolerance 5e-3: llama.cpp computes GELU through an fp16 table, we use
 * the function (golden/README.md section 3). Each architecture refuses a file that lacks
 * one of its own tensors, naming it. */
#include "golden.h"
#include "test.h"

static const rl_golden_case k_cases[] = {
    {"gemma-F32", 5e-3, true, 0},
    {"gemma-Q8_0", 0.35, false, 0},
    {"gemma-Q4_K_M.norepack", 0.35, false, 0},
    {"gemma2-F32", 5e-3, true, 0},
    {"gemma2-Q8_0", 0.35, false, 0},
    {"gemma2-Q4_K_M.norepack", 0.35, false, 0},
};

TEST(zoo_gemma_goldens) {
    int ran = rl_golden_check_cases(k_cases, sizeof k_cases / sizeof k_cases[0]);
    if (!ran) SKIP("no zoo goldens");
}

TEST(zoo_gemma_missing_tensors) {
    int ran = rl_golden_check_missing_tensor("gemma-Q8_0.gguf", "blk.1.ffn_gate.weight");
    ran += rl_golden_check_missing_tensor("gemma2-Q8_0.gguf", "blk.0.post_ffw_norm.weight");
    if (!ran) SKIP("no zoo models");
}

int main(void) {
    RUN(zoo_gemma_goldens);
    RUN(zoo_gemma_missing_tensors);
    return rl_test_finish();
}
