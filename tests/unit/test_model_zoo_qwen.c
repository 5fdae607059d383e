/* The Qwen architectures of the zoo against llama.cpp's goldens: qwen2 (q/k/v biases,
 * NeoX RoPE, tied output; F32, Q8_0, Q4_K_M), qwen2-yarn (YaRN scaling, with a
 * 300-token prompt) and qwen3 (per-head q/k RMSNorm, head size 64 with 8 heads over
 * n_embd 256). Tolerances: golden/README.md sections 4 and 5. Each architecture refuses
 * a file that lacks one of its own tensors, naming it. */
#include "golden.h"
#include "test.h"

typedef struct model_case {
    const char *golden;
    double tol;
    double tol_long;
    bool greedy;
} model_case;

static const model_case k_cases[] = {
    {"qwen2-F32", 5e-5, 0, true},
    {"qwen2-Q8_0", 0.35, 0, false},
    {"qwen2-Q4_K_M.norepack", 0.35, 0, false},
    {"qwen2-yarn-F32", 5e-5, 2e-4, true},
    {"qwen3-F32", 5e-5, 0, true},
    {"qwen3-Q8_0", 0.35, 0, false},
    {"qwen3-Q4_K_M.norepack", 0.35, 0, false},
};

TEST(zoo_qwen_goldens) {
    int ran = 0;
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) {
        rl_golden_opts o = {.tol = k_cases[i].tol, .tol_long = k_cases[i].tol_long,
                            .greedy = k_cases[i].greedy, .kv_type = RL_TYPE_F32};
        rl_golden_result r;
        ran += rl_golden_check(k_cases[i].golden, &o, &r);
    }
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
