/* The Gemma architectures of the zoo against llama.cpp's goldens: gemma (embeddings
 * times sqrt(n_embd), GeGLU, head size 128, tied output) and gemma2 (attention and final
 * soft-capping, sliding window on even layers, post-attention and post-FFN norms); F32,
 * Q8_0, Q4_K_M. F32 tolerance 5e-3: llama.cpp computes GELU through an fp16 table, we use
 * the function (golden/README.md section 3). Each architecture refuses a file that lacks
 * one of its own tensors, naming it. */
#include "golden.h"
#include "test.h"

typedef struct model_case {
    const char *golden;
    double tol;
    bool greedy;
} model_case;

static const model_case k_cases[] = {
    {"gemma-F32", 5e-3, true},
    {"gemma-Q8_0", 0.35, false},
    {"gemma-Q4_K_M.norepack", 0.35, false},
    {"gemma2-F32", 5e-3, true},
    {"gemma2-Q8_0", 0.35, false},
    {"gemma2-Q4_K_M.norepack", 0.35, false},
};

TEST(zoo_gemma_goldens) {
    int ran = 0;
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) {
        rl_golden_opts o = {.tol = k_cases[i].tol, .greedy = k_cases[i].greedy,
                            .kv_type = RL_TYPE_F32};
        rl_golden_result r;
        ran += rl_golden_check(k_cases[i].golden, &o, &r);
    }
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
