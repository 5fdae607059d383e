/* The phi3 architecture of the zoo against llama.cpp's goldens: phi3 (fused q/k/v and
 * fused gate/up, NeoX RoPE; F32, Q8_0, Q4_K_M) and phi3-longrope (LongRoPE factors and
 * attention factor: the short factors in a 256-cell context, the long ones in a 512-cell
 * context, with a 300-token prompt). Tolerances: golden/README.md sections 4 and 5. A
 * file without its fused FFN matrix is refused, naming it. */
#include "golden.h"
#include "test.h"

typedef struct model_case {
    const char *golden;
    double tol;
    double tol_long;
    bool greedy;
} model_case;

static const model_case k_cases[] = {
    {"phi3-F32", 5e-5, 0, true},
    {"phi3-Q8_0", 0.35, 0, false},
    {"phi3-Q4_K_M.norepack", 0.35, 0, false},
    {"phi3-longrope-F32.ctx256", 5e-5, 0, true},
    {"phi3-longrope-F32.ctx512", 5e-5, 2e-4, true},
};

TEST(zoo_phi3_goldens) {
    int ran = 0;
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) {
        rl_golden_opts o = {.tol = k_cases[i].tol, .tol_long = k_cases[i].tol_long,
                            .greedy = k_cases[i].greedy, .kv_type = RL_TYPE_F32};
        rl_golden_result r;
        ran += rl_golden_check(k_cases[i].golden, &o, &r);
    }
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
