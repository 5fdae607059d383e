/*
 * step_trace.h - where a step's time goes, for a diagnostic build (-DRL_CU_TRACE; step.c
 * only, one instance a process): at fixed points of each step -- the list between two
 * host synchronizations (rl__cu_step_idle) -- the host's clock and a timing event on the
 * stream. At free, each point's average over the last run of steps of the same shape:
 * microseconds after the previous step ended, on the host (its sync returned) and on the
 * device (the previous step's last event). So the device's idle time between steps, the
 * upload and launch costs and each part's length read off one table. A step ends at a
 * synchronization after device work; points with no event (rl__cu_step_mark from the
 * backend) before that carry over to the next step. After 300 steps of one shape the last
 * two graphs (a decode step's two parts) run again 200 times back to back, which gives the
 * device's own time of a step (once a process). Events serialize nothing but add a little
 * time; compare traced runs with traced runs. Build: cmake -DCMAKE_C_FLAGS=-DRL_CU_TRACE.
 */
#ifndef RL_BACKEND_CUDA_STEP_TRACE_H
#define RL_BACKEND_CUDA_STEP_TRACE_H
#ifdef RL_CU_TRACE
#include <stdio.h>
#include <time.h>
#define TR_MAX 24
static struct { /* the points of this step and the last; the sums */
    cudaEvent_t ev[2][TR_MAX];
    bool has_ev[2][TR_MAX];
    double host[TR_MAX];
    const char *name[TR_MAX];
    int n, cur, last_ev_k;
    bool ready, have_prev;
    double t_end;
    double sum_h[TR_MAX], sum_d[TR_MAX];
    long cnt[TR_MAX], cnt_d[TR_MAX];
    int n_prev;
    long steps;
    bool first; /* the step's first record is marked */
    bool replayed;
} tr;
static double tr_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec * 1e-3;
}
/* Point `name` of the step: the host's time, and an event on the stream when ev. */
static void tr_mark(cu_step *q, const char *name, bool ev) {
    if (!tr.ready) {
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < TR_MAX; i++) cudaEventCreate(&tr.ev[b][i]);
        tr.ready = true;
    }
    if (tr.n >= TR_MAX) return;
    const int k = tr.n++;
    tr.name[k] = name;
    tr.has_ev[tr.cur][k] = ev;
    if (ev) cudaEventRecord(tr.ev[tr.cur][k], q->stream);
    tr.host[k] = tr_now();
}
/* The device alone: the two graphs launched last (a step's two parts), launched again one
 * after the other 200 times with no host wait between them; the time a pair. */
static void tr_replay(cu_step *q) {
    cu_graph *g[2] = {NULL, NULL};
    for (int i = 0; i < CU_STEP_GRAPHS; i++) {
        cu_graph *c = &q->graph[i];
        if (!c->exec) continue;
        if (!g[1] || c->last_use > g[1]->last_use) {
            g[0] = g[1];
            g[1] = c;
        } else if (!g[0] || c->last_use > g[0]->last_use) {
            g[0] = c;
        }
    }
    cudaEvent_t e0 = NULL, e1 = NULL;
    if (!g[0] || !g[1] || cudaEventCreate(&e0) != cudaSuccess ||
        cudaEventCreate(&e1) != cudaSuccess)
        return;
    cudaStreamSynchronize(q->stream);
    for (int i = 0; i < 10; i++) {
        cudaGraphLaunch(g[0]->exec, q->stream);
        cudaGraphLaunch(g[1]->exec, q->stream);
    }
    cudaEventRecord(e0, q->stream);
    for (int i = 0; i < 200; i++) {
        cudaGraphLaunch(g[0]->exec, q->stream);
        cudaGraphLaunch(g[1]->exec, q->stream);
    }
    cudaEventRecord(e1, q->stream);
    float ms = 0;
    cudaEventSynchronize(e1);
    if (cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess)
        fprintf(stderr, "trace replay: the last two graphs back to back %.2f us a pair\n",
                ms * 1e3 / 200);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaGetLastError();
    tr.have_prev = false; /* the next step's times would hold the replay */
}
/* The step ended (its work all done): add its points to the sums. */
static void tr_end(cu_step *q) {
    (void)q;
    bool dev = false; /* a step is work on the device: host marks alone carry over */
    for (int k = 0; k < tr.n; k++) dev = dev || tr.has_ev[tr.cur][k];
    if (!tr.ready || !dev) return;
    const double t = tr_now();
    if (tr.n != tr.n_prev) { /* a step of another shape: its sums start here */
        memset(tr.sum_h, 0, sizeof tr.sum_h);
        memset(tr.sum_d, 0, sizeof tr.sum_d);
        memset(tr.cnt, 0, sizeof tr.cnt);
        memset(tr.cnt_d, 0, sizeof tr.cnt_d);
        tr.steps = 0;
        tr.have_prev = false;
    }
    int last = -1;
    for (int k = 0; k < tr.n; k++) {
        if (tr.have_prev) {
            tr.sum_h[k] += tr.host[k] - tr.t_end;
            tr.cnt[k]++;
            float ms = 0;
            if (tr.has_ev[tr.cur][k] && cudaEventElapsedTime(&ms, tr.ev[1 - tr.cur][tr.last_ev_k],
                                                             tr.ev[tr.cur][k]) == cudaSuccess) {
                tr.sum_d[k] += ms * 1e3;
                tr.cnt_d[k]++;
            }
            cudaGetLastError();
        }
        if (tr.has_ev[tr.cur][k]) last = k;
    }
    if (tr.have_prev) {
        tr.sum_h[TR_MAX - 1] += t - tr.t_end;
        tr.cnt[TR_MAX - 1]++;
        tr.steps++;
    }
    tr.n_prev = tr.n;
    tr.last_ev_k = last;
    tr.have_prev = last >= 0;
    tr.t_end = t;
    tr.cur = 1 - tr.cur;
    tr.n = 0;
    tr.first = false;
    if (tr.steps == 300 && !tr.replayed) { /* the context alive: its graphs may run again */
        tr.replayed = true;
        tr_replay(q);
    }
}
/* The averages of the last run of steps of one shape, to stderr. */
static void tr_print(void) {
    if (!tr.ready || !tr.steps) return;
    fprintf(stderr,
            "trace: %ld steps of %d marks (us after the previous step's end: host / device)\n",
            tr.steps, tr.n_prev);
    for (int k = 0; k < tr.n_prev; k++)
        fprintf(stderr, "trace %2d %-18s host %8.2f  dev %8.2f\n", k, tr.name[k] ? tr.name[k] : "?",
                tr.cnt[k] ? tr.sum_h[k] / tr.cnt[k] : -1,
                tr.cnt_d[k] ? tr.sum_d[k] / tr.cnt_d[k] : -1);
    fprintf(stderr, "trace    step end           host %8.2f\n",
            tr.cnt[TR_MAX - 1] ? tr.sum_h[TR_MAX - 1] / tr.cnt[TR_MAX - 1] : -1);
}
#define TR_MARK(q, name, ev) tr_mark(q, name, ev)
#define TR_FIRST(q) (tr.first ? (void)0 : (tr.first = true, tr_mark(q, "first record", false)))
#define TR_END(q) tr_end(q)
#define TR_PRINT(q) tr_print()
#else
#define TR_MARK(q, name, ev) ((void)0)
#define TR_FIRST(q) ((void)0)
#define TR_END(q) ((void)0)
#define TR_PRINT(q) ((void)0)
#endif

#endif
