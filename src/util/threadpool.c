/*
 * threadpool.c - a fixed set of worker threads that run one job at a time.
 *
 * Why futexes: a decode step issues hundreds of short jobs (about 190 for a 16-layer
 * model), so a job must start and finish in microseconds, yet idle workers must cost
 * nothing (the machine is shared, and spinning workers steal the cores the caller's next
 * job needs). Workers sleep in FUTEX_WAIT on a generation counter; starting a job bumps it
 * and wakes the sleepers (no syscall when none sleeps). The caller, which runs part 0
 * itself, waits for the last worker on a second futex word.
 *
 * Both waits first poll for a bounded time (RL_POLL_NS; RUVLLM_POOL_POLL_US overrides it,
 * 0 sleeps at once), calling sched_yield() between short bursts of pause: a worker ends a
 * step's job microseconds before the next one starts, and the caller's wait is usually
 * short. The yield matters on a loaded machine: the scheduler tends to wake a worker on
 * its waker's CPU, and a caller that spins there keeps the worker it waits for off that
 * CPU until the spin ends (measured on the 2-core machine under load ~4: with a plain
 * 137 us spin almost every wait ran the spin out and then slept). Yielding hands the CPU
 * over at once; with nothing else runnable it returns at once. After the bound the thread
 * sleeps, so idle workers between steps (or requests) are parked, not spinning.
 *
 * Threads are not pinned by default. With RUVLLM_THREAD_PIN=1 the creating thread is
 * pinned to the first CPU of rl__cpu_list and worker i to the i-th (one per physical core
 * first): on a machine where other processes keep every core busy, the scheduler tends
 * to wake a worker on its waker's CPU, and the threads of a job then share one core.
 */
#include "threadpool.h"

#include <errno.h>
#include <immintrin.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define RL_THREADPOOL_MAX 512
#define RL_POLL_NS 100000 /* default polling time before a wait sleeps */
#define RL_POLL_BURST 16  /* pause instructions between checks of the clock and yields */

struct rl_threadpool {
    int n_threads;
    pthread_t *threads; /* [n_threads - 1] workers */
    int n_started;

    _Atomic uint32_t gen;  /* job generation: workers sleep while it is unchanged */
    _Atomic int pending;   /* workers that have not finished the current job */
    _Atomic uint32_t done; /* 1 once pending reached 0 (futex word of the caller) */
    _Atomic int n_asleep;  /* workers in (or entering) FUTEX_WAIT on gen */
    _Atomic uint32_t caller_asleep; /* the caller is in (or entering) FUTEX_WAIT on done */
    _Atomic bool stop;
    int64_t poll_ns; /* polling time of both waits */
    rl__task_fn fn;
    void *ctx;

    void *slots;   /* [n_threads][RL_THREADPOOL_SLOT_BYTES] */
    void *scratch; /* [scratch_size] bytes, 64-byte aligned */
    size_t scratch_size;
};

typedef struct worker_arg {
    rl_threadpool *pool;
    int ith;
    int cpu; /* pin to this CPU, or -1 */
} worker_arg;

static void pin_self(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void futex_wait(_Atomic uint32_t *addr, uint32_t val) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr, int n) {
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Poll until *word != val for at most poll_ns (see the file comment); true when it
 * changed. */
static bool poll_change(_Atomic uint32_t *word, uint32_t val, int64_t poll_ns) {
    if (poll_ns <= 0) return atomic_load_explicit(word, memory_order_acquire) != val;
    const int64_t t_end = now_ns() + poll_ns;
    for (;;) {
        for (int i = 0; i < RL_POLL_BURST; i++) {
            if (atomic_load_explicit(word, memory_order_acquire) != val) return true;
            _mm_pause();
        }
        sched_yield();
        if (atomic_load_explicit(word, memory_order_acquire) != val) return true;
        if (now_ns() >= t_end) return false;
    }
}

/* Sleep until *word != val. The sleeper count is raised before FUTEX_WAIT re-checks the
 * word, and the waker changes the word before reading the count (both sequentially
 * consistent), so either the waker sees the sleeper or FUTEX_WAIT sees the new value. */
static void sleep_until_change(_Atomic uint32_t *word, uint32_t val, _Atomic int *asleep) {
    atomic_fetch_add(asleep, 1);
    while (atomic_load(word) == val) futex_wait(word, val);
    atomic_fetch_sub(asleep, 1);
}

static void *worker_main(void *p) {
    worker_arg a = *(worker_arg *)p;
    rl__free(p);
    pin_self(a.cpu);
    rl_threadpool *pool = a.pool;
    uint32_t seen = 0;
    for (;;) {
        if (!poll_change(&pool->gen, seen, pool->poll_ns))
            sleep_until_change(&pool->gen, seen, &pool->n_asleep);
        seen = atomic_load_explicit(&pool->gen, memory_order_acquire);
        if (atomic_load_explicit(&pool->stop, memory_order_acquire)) break;
        pool->fn(pool->ctx, a.ith, pool->n_threads);
        if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) == 1) {
            atomic_store(&pool->done, 1);
            if (atomic_load(&pool->caller_asleep)) futex_wake(&pool->done, 1);
        }
    }
    return NULL;
}

static void stop_workers(rl_threadpool *pool) {
    atomic_store_explicit(&pool->stop, true, memory_order_release);
    atomic_fetch_add_explicit(&pool->gen, 1, memory_order_acq_rel);
    futex_wake(&pool->gen, INT_MAX);
    for (int i = 0; i < pool->n_started; i++) pthread_join(pool->threads[i], NULL);
    pool->n_started = 0;
}

RL_API rl_status rl_threadpool_create(int n_threads, rl_threadpool **out) {
    if (!out) return RL_ERR_INVALID_ARG;
    *out = NULL;
    if (n_threads <= 0) n_threads = rl_cpu_physical_cores();
    if (n_threads > RL_THREADPOOL_MAX) return RL_ERR_INVALID_ARG;

    rl_threadpool *pool = rl__calloc(1, sizeof *pool);
    if (!pool) goto fail_pool;
    pool->n_threads = n_threads;
    pool->poll_ns = RL_POLL_NS;
    const char *poll = rl__getenv("RUVLLM_POOL_POLL_US");
    if (poll && *poll) {
        char *end;
        long us = strtol(poll, &end, 10);
        if (!*end && us >= 0 && us <= 1000000) pool->poll_ns = (int64_t)us * 1000;
    }
    pool->slots = rl__aligned_alloc(64, (size_t)n_threads * RL_THREADPOOL_SLOT_BYTES);
    if (!pool->slots) goto fail_slots;
    memset(pool->slots, 0, (size_t)n_threads * RL_THREADPOOL_SLOT_BYTES);
    if (n_threads > 1) {
        pool->threads = rl__calloc((size_t)n_threads - 1, sizeof *pool->threads);
        if (!pool->threads) goto fail_threads;
    }
    int cpus[CPU_SETSIZE], n_cpus = 0;
    const char *pin = rl__getenv("RUVLLM_THREAD_PIN");
    if (pin && !strcmp(pin, "1")) n_cpus = rl__cpu_list(cpus, CPU_SETSIZE);
    for (int i = 1; i < n_threads; i++) {
        worker_arg *a = rl__malloc(sizeof *a);
        if (!a) goto fail_start;
        a->pool = pool;
        a->ith = i;
        a->cpu = n_cpus > 0 ? cpus[i % n_cpus] : -1;
        if (pthread_create(&pool->threads[i - 1], NULL, worker_main, a) != 0) {
            rl__free(a);
            goto fail_start;
        }
        pool->n_started++;
    }
    if (n_cpus > 0) pin_self(cpus[0]);
    *out = pool;
    return RL_OK;

fail_start:
    stop_workers(pool);
    rl__free(pool->threads);
fail_threads:
    rl__aligned_free(pool->slots);
fail_slots:
    rl__free(pool);
fail_pool:
    return RL_ERR_NOMEM;
}

RL_API void rl_threadpool_free(rl_threadpool *pool) {
    if (!pool) return;
    stop_workers(pool);
    rl__free(pool->threads);
    rl__aligned_free(pool->slots);
    rl__aligned_free(pool->scratch);
    rl__free(pool);
}

void *rl__threadpool_slots(rl_threadpool *pool) { return pool->slots; }

RL_API int rl_threadpool_n_threads(const rl_threadpool *pool) { return pool ? pool->n_threads : 0; }

void rl__threadpool_run(rl_threadpool *pool, rl__task_fn fn, void *ctx) {
    if (pool->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store_explicit(&pool->pending, pool->n_threads - 1, memory_order_relaxed);
    atomic_store_explicit(&pool->done, 0, memory_order_relaxed);
    atomic_fetch_add(&pool->gen, 1); /* publishes fn, ctx */
    if (atomic_load(&pool->n_asleep)) futex_wake(&pool->gen, INT_MAX);

    fn(ctx, 0, pool->n_threads);

    if (!poll_change(&pool->done, 0, pool->poll_ns)) {
        /* as sleep_until_change; the caller is the only sleeper on done */
        atomic_store(&pool->caller_asleep, 1);
        while (!atomic_load(&pool->done)) futex_wait(&pool->done, 0);
        atomic_store(&pool->caller_asleep, 0);
    }
}

void *rl__threadpool_scratch(rl_threadpool *pool, size_t bytes) {
    if (bytes <= pool->scratch_size && pool->scratch) return pool->scratch;
    size_t want = bytes < 4096 ? 4096 : bytes;
    void *p = rl__aligned_alloc(64, want);
    if (!p) return NULL;
    rl__aligned_free(pool->scratch);
    pool->scratch = p;
    pool->scratch_size = want;
    return p;
}
