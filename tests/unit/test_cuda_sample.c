/* The CUDA backend's sampling op (sample_to_host, src/backend/cuda/sample.cu) against the
 * CPU sampler (src/sampler/chain.c).
 *
 * For vocabularies of 32000 and 128256, 1 to 64 rows, logits of four shapes (flat in
 * [-8, 8]; peaked: a few tokens far above the rest; ties: values on a grid of 0.5; 10% -inf)
 * and chains of every filter alone and together (top_k 1 / 40 / 5000 / vocab / above
 * vocab, top_p 0 / 0.5 / 0.9 / 0.99 / 1, min_p 0 / 0.001 / 0.05 / 1, min_keep, temperature
 * 0 / 0.05 / 0.8 / 1 / 3, repetition / frequency / presence penalties over a window with
 * repeats), each row gets its own sampler, the u its next draw will take (read from a
 * clone), and the same u goes to the device:
 *   - the ids must be equal, except where the draw falls within 1e-5 of a boundary between
 *     two tokens (the device then gives the CPU's token at u - 1e-5 or u + 1e-5); such cases
 *     are counted and must stay under 1% of the draws;
 *   - the penalized logits the device left in place equal the sampler's, bit for bit;
 *   - the device's kept count equals the number of tokens the CPU's final distribution
 *     gives a non-zero probability (temperatures >= 0.5, where none underflows), and those
 *     tokens are the most likely ones (key order);
 *   - a row of -inf only gives -1 where the CPU reports that no token can be chosen.
 * Also the timing of one call at vocab 128256 for 1 / 8 / 32 / 64 rows against copying the
 * logits and sampling them on the host (printed, not checked). RUVLLM_TEST_SAMPLE_PART=i/n
 * runs the i-th of n parts of the cases (one process a part under a sanitizer). Skipped
 * without a device. */
#include "backend/backend.h"
#include "rng.h"
#include "sampler/sampler.h"
#include "gpu.h"
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

static uint64_t g_rng = 0x5a3c9e1d2b4f6071ull;

static float frand(float lo, float hi) {
    return lo + (hi - lo) * (float)rl_test_rand_unit(&g_rng);
}

enum { D_FLAT, D_PEAK, D_TIES, D_NINF, D_COUNT };

static void fill_logits(float *x, int32_t nv, int dist) {
    for (int32_t i = 0; i < nv; i++) x[i] = frand(-8.0f, 8.0f);
    if (dist == D_PEAK) {
        for (int j = 0; j < 12; j++) x[rl_test_rand64(&g_rng) % (uint64_t)nv] = frand(14.0f, 22.0f);
    } else if (dist == D_TIES) {
        for (int32_t i = 0; i < nv; i++) x[i] = floorf(x[i] * 2.0f) * 0.5f;
    } else if (dist == D_NINF) {
        for (int32_t i = 0; i < nv; i++)
            if (rl_test_rand64(&g_rng) % 10 == 0) x[i] = -INFINITY;
    }
}

typedef struct cfg {
    float t;
    int32_t k; /* -1: vocab, -2: vocab + 10 */
    float p, mp;
    int32_t min_keep;
    bool pen;
} cfg;

static const cfg k_cfgs[] = {
    {1.0f, 0, 1.0f, 0.0f, 0, false},    /* plain draw */
    {0.8f, 0, 1.0f, 0.0f, 0, false},    /* temperature alone */
    {0.0f, 40, 0.9f, 0.05f, 0, false},  /* greedy */
    {0.0f, 0, 1.0f, 0.0f, 0, true},     /* greedy after penalties */
    {1.0f, 1, 1.0f, 0.0f, 0, false},    /* top-k 1 */
    {0.8f, 40, 1.0f, 0.0f, 0, false},   /* top-k alone */
    {1.0f, 5000, 1.0f, 0.0f, 0, false}, /* top-k past the dense selection */
    {1.0f, -1, 1.0f, 0.0f, 0, false},   /* top-k = vocab */
    {1.0f, -2, 1.0f, 0.0f, 0, false},   /* top-k above the vocab: id order */
    {1.0f, 0, 0.0f, 0.0f, 0, false},    /* top-p 0 */
    {1.0f, 0, 0.5f, 0.0f, 0, false},    /* top-p alone */
    {0.8f, 0, 0.9f, 0.0f, 0, false},
    {1.0f, 0, 0.99f, 0.0f, 3, false},
    {1.0f, 0, 1.0f, 1.0f, 0, false},    /* min-p 1: the max and its ties */
    {1.0f, 0, 1.0f, 0.05f, 0, false},   /* min-p alone */
    {0.8f, 0, 1.0f, 0.001f, 0, false},
    {1.0f, 0, 1.0f, 0.9f, 50, false},   /* min_keep above min-p's survivors */
    {0.8f, 40, 0.95f, 0.05f, 0, false}, /* llama.cpp's defaults */
    {0.8f, 40, 0.95f, 0.05f, 0, true},
    {1.0f, 0, 0.9f, 0.05f, 0, false},
    {0.7f, 100, 0.5f, 0.0f, 0, false},
    {1.0f, 0, 0.9f, 0.1f, 5, false},
    {1.0f, 5000, 0.99f, 0.0f, 0, false},
    {1.0f, -2, 0.9f, 0.0f, 0, false},
    {1.0f, -2, 1.0f, 0.01f, 0, false},
    {0.05f, 40, 0.95f, 0.05f, 0, true}, /* cold */
    {3.0f, 0, 0.95f, 0.02f, 0, true},   /* hot */
    {1.0f, 0, 1.0f, 0.0f, 0, true},     /* penalties alone */
};

typedef struct totals {
    long draws, equal, boundary, kept_checked;
} totals;

/* Top-n_kept by key of x (most likely, ties to the lower id) must be exactly the tokens
 * with non-zero probability in dist. */
static bool kept_is_prefix(const float *x, const float *dist, int32_t nv, int32_t n_kept) {
    int32_t nz = 0;
    float lo = INFINITY; /* smallest kept logit */
    int32_t lo_id = -1;
    for (int32_t i = 0; i < nv; i++)
        if (dist[i] > 0.0f) {
            nz++;
            if (x[i] < lo || (x[i] == lo && i > lo_id)) {
                lo = x[i];
                lo_id = i;
            }
        }
    if (nz != n_kept) return false;
    /* nothing outside ranks above the weakest kept token */
    for (int32_t i = 0; i < nv; i++)
        if (dist[i] == 0.0f && (x[i] > lo || (x[i] == lo && i < lo_id))) return false;
    return true;
}

static void run_case(rl_backend *be, int32_t nv, int32_t rows, int dist, const cfg *c,
                     totals *tt) {
    rl_sampler_params sp = rl_sampler_default_params();
    sp.temperature = c->t;
    sp.top_k = c->k == -1 ? nv : c->k == -2 ? nv + 10 : c->k;
    sp.top_p = c->p;
    sp.min_p = c->mp;
    sp.min_keep = c->min_keep;
    if (c->pen) {
        sp.repeat_penalty = 1.3f;
        sp.frequency_penalty = 0.5f;
        sp.presence_penalty = 0.2f;
        sp.penalty_last_n = 64;
    }
    const size_t bytes = (size_t)rows * (size_t)nv * sizeof(float);
    float *x = malloc(bytes), *xg = malloc(bytes), *dist_out = malloc((size_t)nv * sizeof(float));
    rl_sample_row *rw = calloc((size_t)rows, sizeof *rw);
    int32_t *pen = malloc((size_t)rows * 64 * 2 * sizeof(int32_t));
    int32_t *ids = malloc((size_t)rows * sizeof(int32_t)), *kept = malloc((size_t)rows * sizeof(int32_t));
    int32_t *cpu = malloc((size_t)rows * sizeof(int32_t));
    rl_status *cst = malloc((size_t)rows * sizeof(rl_status));
    rl_sampler **smp = calloc((size_t)rows, sizeof *smp);
    float *dx = be->ops->alloc(be, bytes);
    if (!x || !xg || !dist_out || !rw || !pen || !ids || !kept || !cpu || !cst || !smp || !dx) {
        CHECKF(0, "out of memory");
        goto done;
    }
    int32_t n_pen = 0;
    for (int32_t r = 0; r < rows; r++) {
        fill_logits(x + (size_t)r * nv, nv, dist);
        sp.seed = rl_test_rand64(&g_rng) >> 1;
        char err[256];
        if (rl_sampler_create(&sp, nv, NULL, &smp[r], err, sizeof err) != RL_OK) {
            CHECKF(0, "sampler: %s", err);
            goto done;
        }
        if (c->pen) /* a window with repeats of a few tokens, some of them likely */
            for (int j = 0; j < 64; j++) {
                int32_t t = (int32_t)(rl_test_rand64(&g_rng) % 24) * (nv / 24);
                rl_sampler_accept(smp[r], t);
            }
        rl__sampler_device d;
        bool ok = rl__sampler_device_plan(smp[r], &d);
        CHECK(ok);
        rl_sampler *cl = NULL;
        double u = 0.0;
        if (d.temperature > 0.0f && rl_sampler_clone(smp[r], &cl) == RL_OK) u = rl__sampler_next_u(cl);
        rl_sampler_free(cl);
        int32_t np = rl__sampler_penalty_pairs(smp[r], pen + 2 * n_pen);
        rw[r] = (rl_sample_row){
            .temperature = d.temperature, .top_k = d.top_k, .top_p = d.top_p, .min_p = d.min_p,
            .min_p_ln = d.min_p_ln, .min_keep = d.min_keep, .repeat_penalty = d.repeat_penalty,
            .frequency_penalty = d.frequency_penalty, .presence_penalty = d.presence_penalty,
            .pen_off = n_pen, .pen_n = np, .u = u};
        n_pen += np;
    }
    /* the distribution of each row (kept set) from a clone, then the real draw */
    be->ops->from_host(be, dx, x, bytes);
    rl_status gst = be->ops->sample_to_host(be, dx, rows, nv, rw, pen, ids, kept);
    CHECK_EQ_INT(gst, RL_OK);
    be->ops->to_host(be, xg, dx, bytes);
    CHECK(be->ops->sync(be) == RL_OK);
    for (int32_t r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * nv;
        const bool check_kept = c->t >= 0.5f;
        if (check_kept) {
            rl_sampler *cl = NULL;
            if (rl_sampler_clone(smp[r], &cl) == RL_OK) {
                rl_token tk;
                float mu;
                if (rl__sample_once(cl, xr, NULL, false, &tk, &mu, dist_out) == RL_OK) {
                    /* the sampler's penalized logits, as the device left them */
                    const float *w = rl__sampler_modifies(cl) ? cl->work : xr;
                    CHECKF(memcmp(w, xg + (size_t)r * nv, (size_t)nv * sizeof(float)) == 0,
                           "row %d: penalized logits differ", r);
                    bool pre = kept_is_prefix(w, dist_out, nv, kept[r]);
                    CHECKF(pre, "vocab %d dist %d t %g k %d p %g minp %g: row %d kept %d", nv,
                           dist, c->t, c->k, c->p, c->mp, r, kept[r]);
                    tt->kept_checked++;
                }
            }
            rl_sampler_free(cl);
        }
        cst[r] = rl_sampler_sample(smp[r], xr, NULL, &cpu[r]);
        CHECK_EQ_INT(cst[r], RL_OK);
    }
    for (int32_t r = 0; r < rows; r++) {
        tt->draws++;
        if (ids[r] == cpu[r]) {
            tt->equal++;
            continue;
        }
        /* a boundary within 1e-5 of u: the device gives the CPU's token just beside it */
        bool near = false;
        for (int sgn = -1; sgn <= 1 && !near; sgn += 2) {
            rl_sample_row one = rw[r];
            one.pen_off = 0;
            one.pen_n = 0; /* the row already has its penalties */
            one.u = rw[r].u + sgn * 1e-5;
            if (one.u < 0.0 || one.u >= 1.0) continue;
            int32_t id2 = -1;
            be->ops->sample_to_host(be, dx + (size_t)r * nv, 1, nv, &one, pen, &id2, NULL);
            near = id2 == cpu[r];
        }
        if (near) {
            tt->boundary++;
            continue;
        }
        CHECKF(0, "vocab %d dist %d t %g k %d p %g minp %g keep %d pen %d: row %d of %d, u %.17g: "
                  "device %d, cpu %d (kept %d)",
               nv, dist, c->t, c->k, c->p, c->mp, c->min_keep, c->pen, r, rows, rw[r].u, ids[r],
               cpu[r], kept[r]);
    }
done:
    if (smp)
        for (int32_t r = 0; r < rows; r++) rl_sampler_free(smp[r]);
    if (dx) be->ops->free(be, dx);
    free(x);
    free(xg);
    free(dist_out);
    free(rw);
    free(pen);
    free(ids);
    free(kept);
    free(cpu);
    free(cst);
    free(smp);
}

static rl_backend *gpu(void) {
    char err[256];
    rl_backend *be = NULL;
    if (rl__backend_cuda_create(0, &be, err, sizeof err) != RL_OK) {
        CHECKF(0, "backend: %s", err);
        return NULL;
    }
    CHECK(be->ops->sample_to_host != NULL);
    if (!be->ops->sample_to_host) {
        rl__backend_free(be);
        return NULL;
    }
    return be;
}

TEST(sample_vs_cpu) {
    char why[300];
    if (!rl_test_have_gpu(why, sizeof why)) SKIP("%s", why);
    rl_backend *be = gpu();
    if (!be) return;
    static const int32_t vocabs[] = {32000, 128256};
    static const int32_t row_counts[] = {1, 5, 64, 3};
    /* RUVLLM_TEST_SAMPLE_PART=i/n: only the cases ci with (ci / 4) % n == i, so that every
     * part has cases of each row count (a slow sanitizer run takes the cases in n processes);
     * each case draws from its own seed, so a case gets the same inputs in a part as in the
     * whole run */
    int part = 0, parts = 1;
    const char *pe = getenv("RUVLLM_TEST_SAMPLE_PART");
    if (pe && (sscanf(pe, "%d/%d", &part, &parts) != 2 || parts < 1 || part < 0 || part >= parts)) {
        CHECKF(false, "RUVLLM_TEST_SAMPLE_PART=%s: want i/n with 0 <= i < n", pe);
        return;
    }
    totals tt = {0};
    int ci = 0;
    for (size_t v = 0; v < 2; v++)
        for (int dist = 0; dist < D_COUNT; dist++)
            for (size_t c = 0; c < sizeof k_cfgs / sizeof k_cfgs[0]; c++, ci++) {
                if ((ci / 4) % parts != part) continue;
                int32_t rows = row_counts[ci % 4];
                if (vocabs[v] > 100000 && rows == 64 && dist == D_FLAT) rows = 16;
                g_rng = 0x5a3c9e1d2b4f6071ull ^ (0x9e3779b97f4a7c15ull * (uint64_t)(ci + 1));
                run_case(be, vocabs[v], rows, dist, &k_cfgs[c], &tt);
            }
    fprintf(stderr,
            "  %ld draws: %ld equal, %ld within 1e-5 of a boundary; %ld kept sets checked\n",
            tt.draws, tt.equal, tt.boundary, tt.kept_checked);
    CHECK(tt.draws > 1000 / parts);
    CHECKF(tt.boundary * 100 <= tt.draws, "%ld boundary cases in %ld", tt.boundary, tt.draws);
    rl__backend_free(be);
}

TEST(sample_no_token) {
    char why[300];
    if (!rl_test_have_gpu(why, sizeof why)) SKIP("%s", why);
    rl_backend *be = gpu();
    if (!be) return;
    const int32_t nv = 1000;
    float x[1000];
    for (int i = 0; i < nv; i++) x[i] = -INFINITY;
    float *dx = be->ops->alloc(be, sizeof x);
    be->ops->from_host(be, dx, x, sizeof x);
    static const float temps[] = {0.0f, 1.0f, 0.8f};
    for (int i = 0; i < 3; i++) {
        rl_sample_row r = {.temperature = temps[i], .top_k = i == 2 ? 40 : 0, .top_p = 1.0f,
                           .repeat_penalty = 1.0f, .u = 0.5};
        int32_t id = 7, kept = 7;
        CHECK_EQ_INT(be->ops->sample_to_host(be, dx, 1, nv, &r, NULL, &id, &kept), RL_OK);
        CHECK_EQ_INT(id, -1);
        rl_sampler_params sp = rl_sampler_default_params();
        sp.temperature = temps[i];
        rl_sampler *s = NULL;
        char err[200];
        rl_token t;
        if (rl_sampler_create(&sp, nv, NULL, &s, err, sizeof err) == RL_OK)
            CHECK(rl_sampler_sample(s, x, NULL, &t) == RL_ERR_INVALID_ARG);
        rl_sampler_free(s);
    }
    be->ops->free(be, dx);
    rl__backend_free(be);
}

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

/* One call's time at vocab 128256 (peaked rows, llama.cpp's default chain with penalties;
 * and a plain temperature draw), against copying the rows and sampling them on the host. */
TEST(sample_timing) {
    char why[300];
    if (!rl_test_have_gpu(why, sizeof why)) SKIP("%s", why);
    rl_backend *be = gpu();
    if (!be) return;
    const int32_t nv = 128256, rmax = 64;
    const size_t bytes = (size_t)rmax * nv * sizeof(float);
    float *x = malloc(bytes), *h = malloc(bytes);
    float *dx0 = be->ops->alloc(be, bytes);
    int32_t ids[64], pen[64 * 2 * 20];
    rl_sample_row rw[64];
    if (!x || !h || !dx0) {
        CHECKF(0, "out of memory");
        goto done;
    }
    for (int32_t r = 0; r < rmax; r++) fill_logits(x + (size_t)r * nv, nv, D_PEAK);
    be->ops->from_host(be, dx0, x, bytes);
    for (int chain = 0; chain < 2; chain++) {
        rl_sampler_params sp = rl_sampler_default_params();
        sp.seed = 7;
        if (chain == 0) {
            sp.temperature = 0.8f;
            sp.top_k = 40;
            sp.top_p = 0.95f;
            sp.min_p = 0.05f;
            sp.repeat_penalty = 1.1f;
        } else {
            sp.temperature = 0.8f;
        }
        rl_sampler *s = NULL;
        char err[200];
        if (rl_sampler_create(&sp, nv, NULL, &s, err, sizeof err) != RL_OK) {
            CHECKF(0, "%s", err);
            goto done;
        }
        for (int j = 0; j < 20; j++) rl_sampler_accept(s, j * 1000);
        rl__sampler_device d;
        CHECK(rl__sampler_device_plan(s, &d));
        for (int32_t r = 0; r < rmax; r++) {
            int32_t np = rl__sampler_penalty_pairs(s, pen + 2 * 20 * r);
            rw[r] = (rl_sample_row){.temperature = d.temperature, .top_k = d.top_k,
                                    .top_p = d.top_p, .min_p = d.min_p, .min_p_ln = d.min_p_ln,
                                    .min_keep = d.min_keep, .repeat_penalty = d.repeat_penalty,
                                    .frequency_penalty = d.frequency_penalty,
                                    .presence_penalty = d.presence_penalty, .pen_off = 20 * r,
                                    .pen_n = np, .u = 0.37 + 0.005 * r};
        }
        static const int32_t ns[] = {1, 8, 32, 64};
        for (int i = 0; i < 4; i++) {
            const int32_t n = ns[i];
            const int reps = 50;
            double best_gpu = 1e30, best_cpu = 1e30;
            for (int k = 0; k < reps; k++) {
                /* the op applies the penalties in place: the rows drift a little from call
                 * to call, which does not change the work */
                be->ops->sync(be);
                double t0 = now_us();
                CHECK_EQ_INT(be->ops->sample_to_host(be, dx0, n, nv, rw, pen, ids, NULL), RL_OK);
                double t1 = now_us();
                best_gpu = t1 - t0 < best_gpu ? t1 - t0 : best_gpu;
                double t2 = now_us();
                be->ops->to_host(be, h, dx0, (size_t)n * nv * sizeof(float));
                for (int32_t r = 0; r < n; r++) {
                    rl_token tk;
                    rl_sampler_sample(s, h + (size_t)r * nv, NULL, &tk);
                }
                double t3 = now_us();
                best_cpu = t3 - t2 < best_cpu ? t3 - t2 : best_cpu;
            }
            printf("{\"bench\": \"cuda_sample\", \"chain\": \"%s\", \"vocab\": %d, \"rows\": %d, "
                   "\"device_us\": %.1f, \"copy_and_cpu_us\": %.1f}\n",
                   chain == 0 ? "k40_p0.95_minp0.05_t0.8_pen" : "t0.8", nv, n, best_gpu,
                   best_cpu);
        }
        rl_sampler_free(s);
    }
done:
    if (dx0) be->ops->free(be, dx0);
    free(x);
    free(h);
    rl__backend_free(be);
}

int main(void) {
    RUN(sample_vs_cpu);
    RUN(sample_no_token);
    RUN(sample_timing);
    return rl_test_finish();
}
