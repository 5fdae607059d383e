/* The thread pool (util/threadpool.c): every thread runs each job exactly once with its
 * own index, the caller as 0; run is a full barrier (what the parts wrote is visible
 * after it); many short jobs back to back and jobs after the workers went to sleep both
 * complete, with polling on (the default) and off (RUVLLM_POOL_POLL_US=0), for more
 * threads than CPUs too; scratch and slots keep their contract. */
#include "test.h"

#include "ruvllm.h"
#include "util/threadpool.h"

#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

typedef struct job {
    _Atomic int calls[16]; /* [ith] */
    _Atomic int bad_nth;
    int nth;
    int64_t *out; /* [nth]: part ith writes out[ith] */
    int64_t value;
} job;

static void job_fn(void *p, int ith, int nth) {
    job *j = p;
    if (nth != j->nth || ith < 0 || ith >= nth) {
        atomic_fetch_add(&j->bad_nth, 1);
        return;
    }
    atomic_fetch_add(&j->calls[ith], 1);
    j->out[ith] = j->value + ith; /* plain store: the barrier must publish it */
}

/* n jobs on pool, each checked right after run returns; sleep_us between jobs. */
static void run_jobs(rl_threadpool *pool, int n, int sleep_us) {
    const int nth = rl_threadpool_n_threads(pool);
    int64_t out[16];
    int bad_calls = 0, bad_out = 0;
    job j;
    memset(&j, 0, sizeof j);
    j.nth = nth;
    j.out = out;
    for (int k = 0; k < n; k++) {
        for (int i = 0; i < nth; i++) {
            atomic_store(&j.calls[i], 0);
            out[i] = -1;
        }
        j.value = 1000 * (int64_t)k;
        rl__threadpool_run(pool, job_fn, &j);
        for (int i = 0; i < nth; i++) {
            bad_calls += atomic_load(&j.calls[i]) != 1;
            bad_out += out[i] != 1000 * (int64_t)k + i;
        }
        if (sleep_us) usleep((useconds_t)sleep_us);
    }
    CHECKF(bad_calls == 0, "%d (job, thread) pairs did not run exactly once (nth %d)", bad_calls,
           nth);
    CHECKF(bad_out == 0, "%d parts' results not visible after run (nth %d)", bad_out, nth);
    CHECK_EQ_INT(atomic_load(&j.bad_nth), 0);
}

static void each_thread_count(int n_jobs, int sleep_us) {
    static const int counts[] = {1, 2, 3, 8};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        rl_threadpool *pool = NULL;
        CHECK(rl_threadpool_create(counts[c], &pool) == RL_OK);
        if (!pool) continue;
        CHECK_EQ_INT(rl_threadpool_n_threads(pool), counts[c]);
        run_jobs(pool, n_jobs, sleep_us);
        rl_threadpool_free(pool);
    }
}

TEST(many_short_jobs) { each_thread_count(2000, 0); }

/* Gaps longer than the polling time: workers and caller park and must be woken. */
TEST(jobs_after_sleep) { each_thread_count(20, 5000); }

TEST(no_polling) {
    setenv("RUVLLM_POOL_POLL_US", "0", 1);
    each_thread_count(500, 0);
    each_thread_count(3, 2000);
    setenv("RUVLLM_POOL_POLL_US", "not a number", 1); /* ignored: the default */
    each_thread_count(200, 0);
    unsetenv("RUVLLM_POOL_POLL_US");
}

/* A pool with idle workers costs next to no CPU (they park, not spin). */
TEST(idle_workers_park) {
    rl_threadpool *pool = NULL;
    CHECK(rl_threadpool_create(4, &pool) == RL_OK);
    if (!pool) return;
    run_jobs(pool, 10, 0);
    struct timespec c0, c1, w0, w1;
    usleep(20000); /* past the polling time */
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    clock_gettime(CLOCK_MONOTONIC, &w0);
    usleep(200000);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    clock_gettime(CLOCK_MONOTONIC, &w1);
    const double cpu = (double)(c1.tv_sec - c0.tv_sec) + (c1.tv_nsec - c0.tv_nsec) * 1e-9;
    const double wall = (double)(w1.tv_sec - w0.tv_sec) + (w1.tv_nsec - w0.tv_nsec) * 1e-9;
    CHECKF(cpu < 0.05 * wall, "3 idle workers used %.1f ms of CPU in %.1f ms", cpu * 1e3,
           wall * 1e3);
    rl_threadpool_free(pool);
}

TEST(scratch_and_slots) {
    rl_threadpool *pool = NULL;
    CHECK(rl_threadpool_create(3, &pool) == RL_OK);
    if (!pool) return;
    unsigned char *a = rl__threadpool_scratch(pool, 100);
    CHECK(a && ((uintptr_t)a & 63) == 0);
    CHECK(rl__threadpool_scratch(pool, 4096) == (void *)a); /* fits: reused */
    unsigned char *b = rl__threadpool_scratch(pool, 1 << 20);
    CHECK(b && ((uintptr_t)b & 63) == 0);
    if (b) memset(b, 1, 1 << 20);
    unsigned char *s = rl__threadpool_slots(pool);
    CHECK(s && ((uintptr_t)s & 63) == 0);
    if (s) memset(s, 0, 3 * RL_THREADPOOL_SLOT_BYTES);
    rl_threadpool_free(pool);
    rl_threadpool_free(NULL);
    CHECK(rl_threadpool_n_threads(NULL) == 0);
    CHECK(rl_threadpool_create(1, NULL) == RL_ERR_INVALID_ARG);
}

int main(void) {
    RUN(many_short_jobs);
    RUN(jobs_after_sleep);
    RUN(no_polling);
    RUN(idle_workers_park);
    RUN(scratch_and_slots);
    return rl_test_finish();
}
