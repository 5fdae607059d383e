/*
 * cmd_bench_serve.c - `ruvllm bench-serve`: drive an OpenAI-compatible server (`ruvllm
 * serve`, or any other) with C concurrent streamed completions and print, as JSON, the
 * output throughput (tokens/s), time to first token, inter-token latency and request
 * latency percentiles; with --prefix, the time to first token of a prompt whose long
 * prefix the server has cached (the previous request shared it) next to an uncached one.
 *
 * One thread drives every stream through libcurl's multi interface: C transfers are kept
 * in flight, a finished one is replaced by the next request until N were sent. Times are
 * taken when bytes arrive: TTFT from the start of the transfer to the first chunk that
 * carries tokens (text, even empty text outside the finish and role chunks: a model's
 * control tokens have none) or a finish reason; the inter-token latency is the time
 * between two chunks that carry tokens (a chunk may carry several when the server coalesces:
 * tokens_per_chunk says how many on average); throughput is the completion tokens the
 * servers' usage reports over the wall time of the run.
 *
 * Prompts are exact token counts when the server has POST /tokenize (ruvllm and
 * llama.cpp's server do): random tokens drawn from the tokenization of an English text,
 * a different sequence per request so that the prefix cache cannot help, sent as token
 * ids to /v1/completions. Otherwise (or with --chat) word salad of about that many words.
 * Requests ask for max_tokens tokens with ignore_eos, so every request generates the same
 * number (a server that ignores ignore_eos may stop earlier; the usage says).
 *
 * -m MODEL starts `ruvllm serve` itself (this binary) on a free port of 127.0.0.1 and
 * stops it at the end.
 */
#include "cli.h"
#include "gen.h"

#include <curl/curl.h>
#include <jansson.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MAX_CONC_LIST 16
#define MAX_CONC 1024

typedef struct opts {
    char url[512];       /* base URL without a trailing slash */
    const char *model_path;
    const char *model_name;
    const char *api_key;
    int conc[MAX_CONC_LIST];
    int n_conc;
    int n_req;           /* per run; 0: 4 x concurrency */
    int prompt_tokens, max_tokens;
    int prefix, prefix_reps;
    bool chat;
    int threads, parallel, ctx; /* of the server -m starts */
    long timeout_s;
    unsigned long long seed;
    double temperature;  /* 0: greedy; else with top_k 40, top_p 0.95, min_p 0.05 */
} opts;

/* ---- small helpers ---------------------------------------------------------------- */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static bool buf_add(buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return true;
}

typedef struct dvec {
    double *v;
    size_t n, cap;
} dvec;

static void dvec_push(dvec *d, double x) {
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 256;
        double *v = realloc(d->v, cap * sizeof *v);
        if (!v) return; /* a lost sample, not a wrong one */
        d->v = v;
        d->cap = cap;
    }
    d->v[d->n++] = x;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* {mean, p50, p90, p99, max} in milliseconds (nearest rank); null without samples. */
static json_t *summary_ms(dvec *d) {
    if (!d->n) return json_null();
    qsort(d->v, d->n, sizeof *d->v, cmp_double);
    double sum = 0;
    for (size_t i = 0; i < d->n; i++) sum += d->v[i];
    json_t *o = json_object();
    json_object_set_new(o, "mean", json_real(sum / (double)d->n * 1e3));
    static const int ps[] = {50, 90, 99};
    static const char *const names[] = {"p50", "p90", "p99"};
    for (int i = 0; i < 3; i++) {
        size_t k = (size_t)ceil(ps[i] / 100.0 * (double)d->n);
        json_object_set_new(o, names[i], json_real(d->v[k ? k - 1 : 0] * 1e3));
    }
    json_object_set_new(o, "max", json_real(d->v[d->n - 1] * 1e3));
    return o;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* splitmix64: the prompts' random tokens */
static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ---- prompts ------------------------------------------------------------------------ */

static const char k_text[] =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "sunshine with her dog Max. One day, they found a big red ball under an old tree near the "
    "river. Lily wanted to take it home, but her mother said they should ask whose ball it "
    "was. They knocked on every door in the village, and at last an old man smiled and said "
    "the ball had belonged to his son many years ago. He told them stories about the summer "
    "when the river froze and the children skated all the way to the mill. ";

typedef struct vocab_pool {
    json_int_t *ids; /* token ids of k_text, to draw prompts from; NULL: word salad */
    size_t n;
} vocab_pool;

static const char *const k_words[] = {"the", "cat", "sat", "on", "a", "mat", "and", "then",
                                      "dog", "ran", "to", "park", "with", "big", "red", "ball"};

/* The "prompt" value (or messages) of a request: n1 tokens drawn with seed1, then n2
 * drawn with seed2 (a shared prefix and a tail of its own). */
static json_t *make_prompt(const vocab_pool *vp, bool chat, int n1, uint64_t seed1, int n2,
                           uint64_t seed2) {
    uint64_t s = seed1;
    if (vp->ids && !chat) {
        json_t *a = json_array();
        for (int i = 0; i < n1 + n2; i++) {
            if (i == n1) s = seed2;
            json_array_append_new(a, json_integer(vp->ids[rng_next(&s) % vp->n]));
        }
        return a;
    }
    buf b = {0};
    for (int i = 0; i < n1 + n2; i++) {
        if (i == n1) s = seed2;
        const char *w = k_words[rng_next(&s) % (sizeof k_words / sizeof k_words[0])];
        if (i) buf_add(&b, " ", 1);
        buf_add(&b, w, strlen(w));
    }
    json_t *t = json_string(b.p ? b.p : "");
    free(b.p);
    if (!chat) return t;
    json_t *msgs = json_array(), *m = json_object();
    json_object_set_new(m, "role", json_string("user"));
    json_object_set_new(m, "content", t);
    json_array_append_new(msgs, m);
    return msgs;
}

/* A request body: prompt p (stolen), max_tokens, streamed with usage. */
static char *make_body(const opts *o, json_t *p, int max_tokens) {
    json_t *r = json_object();
    json_object_set_new(r, o->chat ? "messages" : "prompt", p);
    if (o->model_name) json_object_set_new(r, "model", json_string(o->model_name));
    json_object_set_new(r, "max_tokens", json_integer(max_tokens));
    json_object_set_new(r, "temperature", json_real(o->temperature));
    if (o->temperature > 0) { /* llama.cpp's default filters */
        json_object_set_new(r, "top_k", json_integer(40));
        json_object_set_new(r, "top_p", json_real(0.95));
        json_object_set_new(r, "min_p", json_real(0.05));
    }
    json_object_set_new(r, "ignore_eos", json_true());
    json_object_set_new(r, "stream", json_true());
    json_t *so = json_object();
    json_object_set_new(so, "include_usage", json_true());
    json_object_set_new(r, "stream_options", so);
    char *s = json_dumps(r, JSON_COMPACT);
    json_decref(r);
    return s;
}

/* ---- one streamed request -------------------------------------------------------------- */

typedef struct xfer {
    CURL *h;
    struct curl_slist *hdrs;
    const opts *o;
    buf in;           /* bytes not yet parsed (or the error body) */
    double t0, t_first, t_last;
    dvec *itl;        /* where inter-chunk gaps go (NULL: nowhere) */
    int chunks;
    long status;
    long prompt, completion, cached; /* usage; -1 when absent */
    bool done, finished, failed;
    char err[256];
} xfer;

static void xfer_fail(xfer *x, const char *fmt, const char *detail) {
    if (x->failed) return;
    x->failed = true;
    snprintf(x->err, sizeof x->err, fmt, detail);
}

/* One SSE event's data. */
static void on_event(xfer *x, const char *data, double t) {
    if (!strcmp(data, "[DONE]")) {
        x->done = true;
        return;
    }
    json_error_t je;
    json_t *j = json_loads(data, 0, &je);
    if (!j) {
        xfer_fail(x, "a chunk is not JSON: %s", je.text);
        return;
    }
    json_t *e = json_object_get(j, "error");
    if (e) xfer_fail(x, "error in the stream: %s", json_string_value(json_object_get(e, "message")));
    json_t *u = json_object_get(j, "usage");
    if (json_is_object(u)) {
        x->prompt = (long)json_integer_value(json_object_get(u, "prompt_tokens"));
        x->completion = (long)json_integer_value(json_object_get(u, "completion_tokens"));
        json_t *d = json_object_get(u, "prompt_tokens_details");
        x->cached = json_is_object(d) ? (long)json_integer_value(json_object_get(d, "cached_tokens")) : 0;
    }
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    if (ch) {
        json_t *delta = json_object_get(ch, "delta");
        json_t *txt = json_object_get(ch, "text");
        if (!txt) txt = json_object_get(delta, "content");
        json_t *fin = json_object_get(ch, "finish_reason");
        /* a chunk of tokens: text, or empty text that is neither the finish chunk nor the
         * chat role chunk (tokens whose text is held back or empty: control tokens) */
        bool has_text = json_is_string(txt) &&
                        (json_string_length(txt) > 0 ||
                         (!json_is_string(fin) && !json_object_get(delta, "role")));
        if (json_is_string(fin)) x->finished = true;
        if (has_text || json_is_string(fin)) {
            if (x->t_first == 0) x->t_first = t;
            else if (has_text && x->itl) dvec_push(x->itl, t - x->t_last);
            if (has_text) {
                x->t_last = t;
                x->chunks++;
            }
        }
    }
    json_decref(j);
}

static size_t on_data(char *p, size_t size, size_t n, void *user) {
    xfer *x = user;
    const size_t len = size * n;
    const double t = now_s();
    if (!x->status) curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &x->status);
    if (!buf_add(&x->in, p, len)) return 0;
    if (x->status != 200) return len; /* the error body, read at the end */
    for (;;) {
        char *end = strstr(x->in.p, "\n\n");
        if (!end) break;
        *end = 0;
        for (char *line = x->in.p; line && *line;) {
            char *nl = strchr(line, '\n');
            if (nl) *nl = 0;
            size_t ll = strlen(line);
            if (ll && line[ll - 1] == '\r') line[ll - 1] = 0;
            if (!strncmp(line, "data:", 5)) on_event(x, line + 5 + (line[5] == ' '), t);
            line = nl ? nl + 1 : NULL;
        }
        size_t used = (size_t)(end + 2 - x->in.p);
        memmove(x->in.p, x->in.p + used, x->in.len - used + 1);
        x->in.len -= used;
    }
    return len;
}

/* Prepare x for a POST of body to url (the handle and its connection are reused). */
static bool xfer_start(xfer *x, const char *url, const char *body, dvec *itl) {
    x->in.len = 0;
    if (x->in.p) x->in.p[0] = 0;
    x->t0 = now_s();
    x->t_first = x->t_last = 0;
    x->itl = itl;
    x->chunks = 0;
    x->status = 0;
    x->prompt = x->completion = x->cached = -1;
    x->done = x->finished = x->failed = false;
    x->err[0] = 0;
    if (!x->h) {
        x->h = curl_easy_init();
        if (!x->h) return false;
        x->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
        if (x->o->api_key) {
            char auth[600];
            snprintf(auth, sizeof auth, "Authorization: Bearer %s", x->o->api_key);
            x->hdrs = curl_slist_append(x->hdrs, auth);
        }
        curl_easy_setopt(x->h, CURLOPT_HTTPHEADER, x->hdrs);
        curl_easy_setopt(x->h, CURLOPT_WRITEFUNCTION, on_data);
        curl_easy_setopt(x->h, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(x->h, CURLOPT_PRIVATE, x);
        curl_easy_setopt(x->h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(x->h, CURLOPT_TIMEOUT, x->o->timeout_s);
    }
    curl_easy_setopt(x->h, CURLOPT_URL, url);
    curl_easy_setopt(x->h, CURLOPT_COPYPOSTFIELDS, body);
    return true;
}

/* After the transfer: why it failed, if it did. */
static void xfer_end(xfer *x, CURLcode rc) {
    if (rc != CURLE_OK) {
        xfer_fail(x, "%s", curl_easy_strerror(rc));
    } else if (x->status != 200) {
        char m[200];
        snprintf(m, sizeof m, "HTTP %ld: %.160s", x->status, x->in.p ? x->in.p : "");
        xfer_fail(x, "%s", m);
    } else if (!x->done) {
        xfer_fail(x, "%s", "the stream ended without [DONE]");
    } else if (!x->finished) {
        xfer_fail(x, "%s", "no finish_reason");
    }
}

static void xfer_free(xfer *x) {
    if (x->h) curl_easy_cleanup(x->h);
    curl_slist_free_all(x->hdrs);
    free(x->in.p);
}

/* ---- a run: N requests, C at a time -------------------------------------------------------- */

typedef struct run_result {
    int ok, failed;
    long prompt_tokens, output_tokens, chunks, cached_tokens;
    double wall;
    dvec ttft, itl, e2e;
    char first_error[256];
} run_result;

/* Send the bodies (n of them), conc at a time, to url; free nothing of bodies. */
static bool run_batch(const opts *o, const char *url, char **bodies, int n, int conc,
                      run_result *rr) {
    memset(rr, 0, sizeof *rr);
    CURLM *m = curl_multi_init();
    xfer *xs = calloc((size_t)conc, sizeof *xs);
    if (!m || !xs) {
        free(xs);
        if (m) curl_multi_cleanup(m);
        return false;
    }
    curl_multi_setopt(m, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)conc);
    int next = 0, active = 0;
    const double t0 = now_s();
    for (int i = 0; i < conc && next < n; i++) {
        xs[i].o = o;
        if (!xfer_start(&xs[i], url, bodies[next++], &rr->itl)) break;
        curl_multi_add_handle(m, xs[i].h);
        active++;
    }
    bool ok = active > 0;
    while (active > 0) {
        int running = 0;
        if (curl_multi_perform(m, &running) != CURLM_OK) {
            ok = false;
            break;
        }
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(m, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            xfer *x = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&x);
            const double t_end = now_s();
            xfer_end(x, msg->data.result);
            curl_multi_remove_handle(m, x->h);
            active--;
            if (x->failed) {
                rr->failed++;
                if (!rr->first_error[0]) snprintf(rr->first_error, sizeof rr->first_error, "%s", x->err);
            } else {
                rr->ok++;
                rr->output_tokens += x->completion >= 0 ? x->completion : x->chunks;
                rr->prompt_tokens += x->prompt >= 0 ? x->prompt : 0;
                rr->cached_tokens += x->cached >= 0 ? x->cached : 0;
                rr->chunks += x->chunks;
                if (x->t_first > 0) dvec_push(&rr->ttft, x->t_first - x->t0);
                dvec_push(&rr->e2e, t_end - x->t0);
            }
            if (next < n && xfer_start(x, url, bodies[next], &rr->itl)) {
                next++;
                curl_multi_add_handle(m, x->h);
                active++;
            }
        }
        if (active > 0) curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    rr->wall = now_s() - t0;
    for (int i = 0; i < conc; i++) xfer_free(&xs[i]);
    free(xs);
    curl_multi_cleanup(m);
    return ok;
}

static json_t *run_json(int conc, int n, const run_result *rr0) {
    run_result rr = *rr0;
    json_t *o = json_object();
    json_object_set_new(o, "concurrency", json_integer(conc));
    json_object_set_new(o, "requests", json_integer(n));
    json_object_set_new(o, "ok", json_integer(rr.ok));
    json_object_set_new(o, "failed", json_integer(rr.failed));
    if (rr.first_error[0]) json_object_set_new(o, "first_error", json_string(rr.first_error));
    json_object_set_new(o, "prompt_tokens", json_integer(rr.prompt_tokens));
    json_object_set_new(o, "cached_tokens", json_integer(rr.cached_tokens));
    json_object_set_new(o, "output_tokens", json_integer(rr.output_tokens));
    json_object_set_new(o, "wall_s", json_real(rr.wall));
    const double tps = rr.wall > 0 ? (double)rr.output_tokens / rr.wall : 0;
    json_object_set_new(o, "output_tok_s", json_real(tps));
    json_object_set_new(o, "output_tok_s_per_stream", json_real(tps / conc));
    json_object_set_new(o, "requests_s", json_real(rr.wall > 0 ? rr.ok / rr.wall : 0));
    json_object_set_new(o, "tokens_per_chunk",
                        json_real(rr.chunks ? (double)rr.output_tokens / (double)rr.chunks : 0));
    json_object_set_new(o, "ttft_ms", summary_ms(&rr.ttft));
    json_object_set_new(o, "itl_ms", summary_ms(&rr.itl));
    json_object_set_new(o, "e2e_ms", summary_ms(&rr.e2e));
    return o;
}

static void run_free(run_result *rr) {
    free(rr->ttft.v);
    free(rr->itl.v);
    free(rr->e2e.v);
}

/* ---- the server -m starts -------------------------------------------------------------- */

typedef struct child {
    pid_t pid;
    int err_fd;
} child;

/* Start `ruvllm serve` (this binary) on 127.0.0.1, any port; wait until it is ready and
 * put its base URL in o->url. */
static bool start_server(opts *o, child *c) {
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf(stderr, "ruvllm bench-serve: cannot find this program: %s\n", strerror(errno));
        return false;
    }
    self[n] = 0;
    int maxc = 1;
    for (int i = 0; i < o->n_conc; i++) maxc = o->conc[i] > maxc ? o->conc[i] : maxc;
    char par[16], thr[16], ctx[16];
    snprintf(par, sizeof par, "%d", o->parallel ? o->parallel : maxc);
    snprintf(thr, sizeof thr, "%d", o->threads);
    snprintf(ctx, sizeof ctx, "%d", o->ctx);
    char *argv[] = {self, "serve", "-m", (char *)o->model_path, "--host", "127.0.0.1", "--port",
                    "0", "--parallel", par, "--threads", thr, "--ctx", ctx, NULL};
    int fds[2];
    if (pipe(fds) != 0) return false;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    int rc = posix_spawn(&c->pid, self, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        fprintf(stderr, "ruvllm bench-serve: cannot start the server: %s\n", strerror(rc));
        return false;
    }
    c->err_fd = fds[0];
    buf log = {0};
    const double until = now_s() + 120;
    bool ready = false;
    while (!ready && now_s() < until) {
        struct pollfd p = {.fd = c->err_fd, .events = POLLIN};
        if (poll(&p, 1, 200) <= 0) continue;
        char chunk[4096];
        ssize_t r = read(c->err_fd, chunk, sizeof chunk);
        if (r <= 0) break;
        buf_add(&log, chunk, (size_t)r);
        const char *l = strstr(log.p, "listening on ");
        if (l && strstr(log.p, "serve: ready")) {
            if (sscanf(l, "listening on %511s", o->url) == 1) ready = true;
        }
    }
    if (!ready) {
        fprintf(stderr, "ruvllm bench-serve: the server did not start:\n%s\n", log.p ? log.p : "");
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
        close(c->err_fd);
    }
    free(log.p);
    return ready;
}

/* SIGTERM, then wait; its stderr is drained meanwhile so that it never blocks on it. */
static void stop_server(child *c) {
    kill(c->pid, SIGTERM);
    char chunk[4096];
    while (read(c->err_fd, chunk, sizeof chunk) > 0) {
    }
    close(c->err_fd);
    waitpid(c->pid, NULL, 0);
}

/* ---- token pool ---------------------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *user) {
    return buf_add(user, p, size * n) ? size * n : 0;
}

/* POST /tokenize {content: k_text}: the ids to draw prompts from; false when the server
 * has no such endpoint (then word salad). */
static bool fetch_pool(const opts *o, vocab_pool *vp) {
    char url[600];
    snprintf(url, sizeof url, "%s/tokenize", o->url);
    json_t *r = json_object();
    json_object_set_new(r, "content", json_string(k_text));
    json_object_set_new(r, "add_special", json_false());
    char *body = json_dumps(r, JSON_COMPACT);
    json_decref(r);
    CURL *h = curl_easy_init();
    buf in = {0};
    struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
    char auth[600];
    if (o->api_key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->api_key);
        hd = curl_slist_append(hd, auth);
    }
    long status = 0;
    bool ok = false;
    if (h && body) {
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &in);
        curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        if (curl_easy_perform(h) == CURLE_OK) {
            curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
            json_t *j = status == 200 && in.p ? json_loads(in.p, 0, NULL) : NULL;
            json_t *toks = json_object_get(j, "tokens");
            size_t nt = json_array_size(toks);
            if (nt >= 16) {
                vp->ids = calloc(nt, sizeof *vp->ids);
                for (size_t i = 0; vp->ids && i < nt; i++) {
                    json_t *t = json_array_get(toks, i);
                    if (json_is_object(t)) t = json_object_get(t, "id");
                    vp->ids[i] = json_integer_value(t);
                }
                vp->n = vp->ids ? nt : 0;
                ok = vp->ids != NULL;
            }
            json_decref(j);
        }
    }
    curl_slist_free_all(hd);
    if (h) curl_easy_cleanup(h);
    free(body);
    free(in.p);
    return ok;
}

/* ---- prefix cache ---------------------------------------------------------------------------- */

/* Per repetition: a fresh prefix of o->prefix tokens plus 8 tokens (nothing cached),
 * then the same prefix with 8 other tokens (its whole blocks cached by the first). Each
 * asks for one token, alone on the server. Medians over the repetitions. */
static json_t *prefix_bench(const opts *o, const vocab_pool *vp, const char *url,
                            uint64_t nonce) {
    const int reps = o->prefix_reps;
    double cold[64], warm[64];
    json_t *list = json_array();
    long prompt_tokens = 0, cached_tokens = 0;
    int n_ok = 0;
    for (int r = 0; r < reps; r++) {
        double t[2] = {-1, -1};
        long cached = 0, prompt = 0;
        for (int k = 0; k < 2; k++) {
            json_t *p = make_prompt(vp, o->chat, o->prefix, nonce + 1000003ull * (uint64_t)(r + 1),
                                    8, nonce + 7919ull * (uint64_t)(2 * r + k + 1));
            char *body = make_body(o, p, 1);
            run_result rr;
            if (body && run_batch(o, url, &body, 1, 1, &rr) && rr.ok == 1 && rr.ttft.n == 1) {
                t[k] = rr.ttft.v[0];
                prompt = rr.prompt_tokens;
                cached = rr.cached_tokens;
            } else {
                fprintf(stderr, "ruvllm bench-serve: prefix request failed: %s\n",
                        body ? rr.first_error : "out of memory");
            }
            if (body) run_free(&rr);
            free(body);
        }
        json_t *e = json_object();
        json_object_set_new(e, "ttft_uncached_ms", t[0] >= 0 ? json_real(t[0] * 1e3) : json_null());
        json_object_set_new(e, "ttft_cached_ms", t[1] >= 0 ? json_real(t[1] * 1e3) : json_null());
        json_object_set_new(e, "cached_tokens", json_integer(cached));
        json_array_append_new(list, e);
        if (t[0] >= 0 && t[1] >= 0) {
            cold[n_ok] = t[0];
            warm[n_ok] = t[1];
            n_ok++;
            prompt_tokens = prompt;
            cached_tokens = cached;
        }
    }
    json_t *res = json_object();
    json_object_set_new(res, "prefix_tokens", json_integer(o->prefix));
    json_object_set_new(res, "prompt_tokens", json_integer(prompt_tokens));
    json_object_set_new(res, "cached_tokens", json_integer(cached_tokens));
    json_object_set_new(res, "repetitions", json_integer(reps));
    if (n_ok) {
        const double c = median(cold, n_ok), w = median(warm, n_ok);
        json_object_set_new(res, "ttft_uncached_ms", json_real(c * 1e3));
        json_object_set_new(res, "ttft_cached_ms", json_real(w * 1e3));
        json_object_set_new(res, "ratio", json_real(w > 0 ? c / w : 0));
    }
    json_object_set_new(res, "runs", list);
    return res;
}

/* ---- the command ------------------------------------------------------------------------------ */

static void usage(FILE *f) {
    fprintf(f,
            "usage: ruvllm bench-serve [--url URL | -m MODEL] [-c 1,8,16] [-n N] [options]\n\n"
            "Drive an OpenAI-compatible server with C concurrent streamed completions (N\n"
            "requests per concurrency level) and print, as JSON: output tokens/s, time to\n"
            "first token, inter-token latency (between streamed chunks) and request latency\n"
            "(mean, p50, p90, p99, max in ms); with --prefix, the TTFT of a prompt whose prefix\n"
            "the server has cached vs the same prompt length uncached.\n\n"
            "  --url URL            the server (default http://127.0.0.1:8080)\n"
            "  -m, --model FILE     start `ruvllm serve` with this model on a free port and stop\n"
            "                       it at the end (with --threads, --parallel, --ctx)\n"
            "  -c, --concurrency L  streams in flight: a number or a list, one run each (1)\n"
            "  -n, --requests N     requests per run (default 4 x concurrency)\n"
            "  -p, --prompt-tokens P  prompt length in tokens (32)\n"
            "  -g, --max-tokens G   tokens generated per request, ignore_eos (64)\n"
            "  --prefix T           also time a T-token cached prefix vs uncached (0: off)\n"
            "  --prefix-reps R      repetitions of the prefix test, median reported (3)\n"
            "  --chat               /v1/chat/completions with text (default /v1/completions\n"
            "                       with token ids when the server has /tokenize)\n"
            "  --model-name NAME    the request's \"model\" field (default: none)\n"
            "  --api-key KEY        Authorization: Bearer KEY (also RUVLLM_API_KEY)\n"
            "  --timeout S          per request, seconds (600)\n"
            "  --temperature T      sample at T with top_k 40, top_p 0.95, min_p 0.05 (0: greedy)\n"
            "  --seed S             seed of the prompts' random tokens (default: from the time)\n"
            "  -t, --threads N      the started server's forward-pass threads (0: physical cores)\n"
            "  --parallel N         the started server's --parallel (default: the largest -c)\n"
            "  --ctx N              the started server's --ctx (default 2048)\n");
}

static bool parse_list(const char *s, opts *o) {
    o->n_conc = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 1 || v > MAX_CONC || o->n_conc == MAX_CONC_LIST) return false;
        o->conc[o->n_conc++] = (int)v;
        if (*end == ',') end++;
        else if (*end) return false;
        p = end;
    }
    return o->n_conc > 0;
}

int cmd_bench_serve(int argc, char **argv) {
    static const char cmd[] = "bench-serve";
    opts o;
    memset(&o, 0, sizeof o);
    snprintf(o.url, sizeof o.url, "http://127.0.0.1:8080");
    o.conc[0] = 1;
    o.n_conc = 1;
    o.prompt_tokens = 32;
    o.max_tokens = 64;
    o.prefix_reps = 3;
    o.timeout_s = 600;
    o.ctx = 2048;
    o.seed = (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 20);
    o.api_key = getenv("RUVLLM_API_KEY");
    if (o.api_key && !*o.api_key) o.api_key = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--chat")) {
            o.chat = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "ruvllm bench-serve: %s: unknown option or missing value\n\n", a);
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--url")) {
            size_t len = strlen(v);
            while (len && v[len - 1] == '/') len--;
            if (!len || len >= sizeof o.url) {
                fprintf(stderr, "ruvllm bench-serve: --url: bad value '%s'\n", v);
                return 2;
            }
            snprintf(o.url, sizeof o.url, "%.*s", (int)len, v);
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            o.model_path = v;
        } else if (!strcmp(a, "-c") || !strcmp(a, "--concurrency")) {
            if (!parse_list(v, &o)) {
                fprintf(stderr, "ruvllm bench-serve: %s: expected numbers 1..%d separated by "
                        "commas (at most %d), got '%s'\n", a, MAX_CONC, MAX_CONC_LIST, v);
                return 2;
            }
        } else if (!strcmp(a, "-n") || !strcmp(a, "--requests")) {
            if (!gen_parse_int(cmd, a, v, 1, 1000000, &n)) return 2;
            o.n_req = (int)n;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt-tokens")) {
            if (!gen_parse_int(cmd, a, v, 1, 1 << 20, &n)) return 2;
            o.prompt_tokens = (int)n;
        } else if (!strcmp(a, "-g") || !strcmp(a, "--max-tokens")) {
            if (!gen_parse_int(cmd, a, v, 1, 1 << 20, &n)) return 2;
            o.max_tokens = (int)n;
        } else if (!strcmp(a, "--prefix")) {
            if (!gen_parse_int(cmd, a, v, 0, 1 << 20, &n)) return 2;
            o.prefix = (int)n;
        } else if (!strcmp(a, "--prefix-reps")) {
            if (!gen_parse_int(cmd, a, v, 1, 64, &n)) return 2;
            o.prefix_reps = (int)n;
        } else if (!strcmp(a, "--model-name")) {
            o.model_name = v;
        } else if (!strcmp(a, "--api-key")) {
            o.api_key = *v ? v : NULL;
        } else if (!strcmp(a, "--timeout")) {
            if (!gen_parse_int(cmd, a, v, 1, 86400, &n)) return 2;
            o.timeout_s = (long)n;
        } else if (!strcmp(a, "--temperature")) {
            char *end = NULL;
            o.temperature = strtod(v, &end);
            if (!*v || *end || !(o.temperature >= 0 && o.temperature <= 100)) {
                fprintf(stderr, "%s: --temperature must be a number in [0, 100], got '%s'\n",
                        cmd, v);
                return 2;
            }
        } else if (!strcmp(a, "--seed")) {
            if (!gen_parse_int(cmd, a, v, 0, INT64_MAX, &n)) return 2;
            o.seed = (unsigned long long)n;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            if (!gen_parse_int(cmd, a, v, 0, 1024, &n)) return 2;
            o.threads = (int)n;
        } else if (!strcmp(a, "--parallel")) {
            if (!gen_parse_int(cmd, a, v, 1, 256, &n)) return 2;
            o.parallel = (int)n;
        } else if (!strcmp(a, "--ctx")) {
            if (!gen_parse_int(cmd, a, v, 16, 1 << 24, &n)) return 2;
            o.ctx = (int)n;
        } else {
            fprintf(stderr, "ruvllm bench-serve: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "ruvllm bench-serve: libcurl did not initialize\n");
        return 1;
    }
    child srv = {0};
    if (o.model_path && !start_server(&o, &srv)) {
        curl_global_cleanup();
        return 1;
    }
    char url[600];
    snprintf(url, sizeof url, "%s%s", o.url, o.chat ? "/v1/chat/completions" : "/v1/completions");
    vocab_pool vp = {0};
    const bool ids = !o.chat && fetch_pool(&o, &vp);
    int rc = 0;

    /* warm-up: one short request (first-touch of the weights, connections) */
    json_t *root = json_object();
    {
        char *body = make_body(&o, make_prompt(&vp, o.chat, 8, o.seed ^ 0x5eedull, 0, 0), 4);
        run_result rr;
        bool ok = body && run_batch(&o, url, &body, 1, 1, &rr) && rr.ok == 1;
        if (!ok) {
            fprintf(stderr, "ruvllm bench-serve: %s does not answer: %s\n", url,
                    body ? rr.first_error : "out of memory");
            rc = 1;
        }
        if (body) run_free(&rr);
        free(body);
    }
    json_t *runs = json_array();
    double first_tps = 0, last_tps = 0;
    for (int ci = 0; ci < o.n_conc && rc == 0; ci++) {
        const int c = o.conc[ci], n = o.n_req ? o.n_req : 4 * c;
        char **bodies = calloc((size_t)n, sizeof *bodies);
        bool ok = bodies != NULL;
        for (int i = 0; ok && i < n; i++) {
            uint64_t seed = o.seed + 0x100000ull * (uint64_t)(ci + 1) + (uint64_t)i;
            bodies[i] = make_body(&o, make_prompt(&vp, o.chat, o.prompt_tokens, seed, 0, 0),
                                  o.max_tokens);
            ok = bodies[i] != NULL;
        }
        run_result rr;
        if (ok) ok = run_batch(&o, url, bodies, n, c, &rr);
        if (!ok) {
            fprintf(stderr, "ruvllm bench-serve: out of memory\n");
            rc = 1;
        } else {
            json_t *j = run_json(c, n, &rr);
            const double tps = json_real_value(json_object_get(j, "output_tok_s"));
            if (ci == 0) first_tps = tps;
            last_tps = tps;
            fprintf(stderr,
                    "ruvllm bench-serve: -c %d: %d/%d ok, %.1f output tok/s, TTFT p50 %.1f ms, "
                    "ITL p50 %.1f ms\n",
                    c, rr.ok, n, tps,
                    json_real_value(json_object_get(json_object_get(j, "ttft_ms"), "p50")),
                    json_real_value(json_object_get(json_object_get(j, "itl_ms"), "p50")));
            json_array_append_new(runs, j);
            if (rr.failed) rc = 1;
            run_free(&rr);
        }
        for (int i = 0; bodies && i < n; i++) free(bodies[i]);
        free(bodies);
    }
    json_object_set_new(root, "url", json_string(url));
    json_object_set_new(root, "prompts", json_string(ids ? "token ids" : "text"));
    json_object_set_new(root, "prompt_tokens", json_integer(o.prompt_tokens));
    json_object_set_new(root, "max_tokens", json_integer(o.max_tokens));
    json_object_set_new(root, "runs", runs);
    if (o.n_conc > 1 && first_tps > 0)
        json_object_set_new(root, "speedup_last_vs_first", json_real(last_tps / first_tps));
    if (rc == 0 && o.prefix > 0) json_object_set_new(root, "prefix", prefix_bench(&o, &vp, url, o.seed * 31 + 7));
    char *out = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    if (out) printf("%s\n", out);
    free(out);
    json_decref(root);
    free(vp.ids);
    if (o.model_path) stop_server(&srv);
    curl_global_cleanup();
    return rc;
}
