/* rl_membw: the STREAM-like bandwidth measurement the benchmarks share. Checks the
 * contract, not the speed: sizes, rates that are positive and finite, the best rates as
 * the maximum of the passes, any thread count, and the refusals. Arrays of 1 MiB (cache
 * sized: fast, and enough to exercise the slicing). */
#include "test.h"

#include "ruvllm.h"

TEST(sizes_and_refusals) {
    rl_membw *b = (rl_membw *)1;
    CHECK(rl_membw_create(0, false, NULL) == RL_ERR_INVALID_ARG);
    CHECK(rl_membw_create(100, false, &b) == RL_ERR_INVALID_ARG);
    CHECK(b == NULL);
    CHECK(rl_membw_create(1000, false, &b) == RL_OK);
    CHECK_EQ_INT((int)rl_membw_array_bytes(b), 768); /* whole 64-float blocks */
    rl_membw_free(b);
    rl_membw_free(NULL);
    CHECK(rl_membw_array_bytes(NULL) == 0);
    CHECK(rl_membw_run(NULL, NULL, NULL) == RL_ERR_INVALID_ARG);
    rl_membw_result z = rl_membw_best(NULL);
    CHECK(z.copy_gbs == 0 && z.triad_gbs == 0 && z.read_gbs == 0);
    CHECK(rl_cpu_llc_bytes() >= 4096);
}

TEST(rates) {
    for (int nth = 1; nth <= 3; nth++) {
        rl_threadpool *pool = NULL;
        CHECK(rl_threadpool_create(nth, &pool) == RL_OK);
        rl_membw *b = NULL;
        CHECK(rl_membw_create((size_t)1 << 20, nth == 2, &b) == RL_OK);
        CHECK_EQ_INT((int)rl_membw_array_bytes(b), 1 << 20);
        rl_membw_result best0 = rl_membw_best(b);
        CHECK(best0.copy_gbs == 0 && best0.triad_gbs == 0);
        CHECK(rl_membw_run(b, NULL, NULL) == RL_ERR_INVALID_ARG);
        rl_membw_result p[3];
        double mc = 0, mt = 0, mr = 0;
        for (int r = 0; r < 3; r++) {
            CHECK(rl_membw_run(b, pool, &p[r]) == RL_OK);
            CHECK(p[r].copy_gbs > 0 && isfinite(p[r].copy_gbs));
            CHECK(p[r].triad_gbs > 0 && isfinite(p[r].triad_gbs));
            CHECK(p[r].read_gbs > 0 && isfinite(p[r].read_gbs));
            mc = fmax(mc, p[r].copy_gbs);
            mt = fmax(mt, p[r].triad_gbs);
            mr = fmax(mr, p[r].read_gbs);
        }
        CHECK(rl_membw_run(b, pool, NULL) == RL_OK);
        rl_membw_result best = rl_membw_best(b);
        CHECK(best.copy_gbs >= mc && best.triad_gbs >= mt && best.read_gbs >= mr);
        rl_membw_free(b);
        rl_threadpool_free(pool);
    }
}

int main(void) {
    RUN(sizes_and_refusals);
    RUN(rates);
    return rl_test_finish();
}
