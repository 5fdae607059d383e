/* The test harness's own selection (RUVLLM_TEST_ONLY): whole names from a comma-separated
 * list, no prefixes, everything when the variable is unset or empty. */
#include "test.h"

TEST(selection) {
    setenv("RUVLLM_TEST_ONLY", "alpha,gamma_2,delta", 1);
    CHECK(rl_test_selected("alpha"));
    CHECK(rl_test_selected("gamma_2"));
    CHECK(rl_test_selected("delta"));
    CHECK(!rl_test_selected("beta"));
    CHECK(!rl_test_selected("alph"));    /* a prefix of a listed name */
    CHECK(!rl_test_selected("alphabet")); /* a listed name as a prefix */
    CHECK(!rl_test_selected("gamma"));
    setenv("RUVLLM_TEST_ONLY", ",alpha,", 1); /* empty items name nothing */
    CHECK(rl_test_selected("alpha"));
    CHECK(!rl_test_selected(""));
    setenv("RUVLLM_TEST_ONLY", "", 1);
    CHECK(rl_test_selected("beta"));
    unsetenv("RUVLLM_TEST_ONLY");
    CHECK(rl_test_selected("beta"));
    /* the list matcher itself (tests' own selections, e.g. RUVLLM_TEST_GOLDENS) */
    CHECK(rl_test_in_list(NULL, "x") && rl_test_in_list("", "x"));
    CHECK(rl_test_in_list("llama3-F32,gemma2-F32", "gemma2-F32"));
    CHECK(!rl_test_in_list("llama3-F32,gemma2-F32", "llama3"));
    CHECK(!rl_test_in_list("llama3-F32,", "llama3-F32x"));
}

static int ran_b;
TEST(only_a) {
    CHECK(1);
}
TEST(only_b) {
    ran_b = 1;
}

int main(void) {
    RUN(selection);
    setenv("RUVLLM_TEST_ONLY", "only_a,selection", 1);
    RUN(only_a);
    RUN(only_b);
    unsetenv("RUVLLM_TEST_ONLY");
    CHECK(!ran_b); /* RUN skipped the test the list leaves out */
    return rl_test_finish();
}
