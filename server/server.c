/*
 * server.c - the HTTP side of `ruvllm serve`: a libmicrohttpd daemon (internal thread pool,
 * epoll where available) routing the OpenAI endpoints to one rl_engine.
 *
 * Waiting without a thread per client: a generation request is submitted to the engine
 * with a notify callback, and its connection is suspended (MHD_suspend_connection)
 * whenever the engine has nothing new for it; the callback, run by the engine thread,
 * resumes it. A non-streamed answer is built when DONE arrives; a stream is a callback
 * response whose reader turns engine events into SSE chunks. A per-connection mutex
 * makes "nothing new, suspend" and "something new, resume" atomic with respect to each
 * other, so no wake-up is lost.
 *
 * Clients that go away: libmicrohttpd reports a failed or closed connection when it
 * next touches it (request completed with an error: the request is aborted at once), but
 * a suspended connection is not watched by it; a watchdog thread therefore peeks every
 * suspended generation socket four times a second and aborts the request of a closed
 * one, which frees its KV blocks and resumes the connection so that it is cleaned up.
 *
 * The chat page: GET / and the page's files come from the arrays that
 * server/web/embed.cmake compiles server/web/ into (rl_web_assets), with no API key
 * needed (the page sends the key the user gives it with its API calls).
 *
 * Shutdown (SIGINT/SIGTERM): new generations are refused with 503, the engine is given
 * up to 30 s (or until a second signal) to finish what runs, then it is freed, which
 * ends the rest with an error and resumes every connection; the daemon stops; exit 0.
 */
#include "server.h"

#include <microhttpd.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RL_MIN(a, b) ((a) < (b) ? (a) : (b))

rl_server_opts rl_server_default_opts(void) {
    rl_server_opts o;
    memset(&o, 0, sizeof o);
    o.host = "127.0.0.1";
    o.port = 8080;
    o.engine = rl_engine_default_params();
    o.engine.max_waiting = 256;
    o.max_body = 8u << 20;
    o.max_conns = 512;
    o.http_threads = 4;
    o.timeout_s = 120;
    return o;
}

typedef enum route {
    R_NOT_FOUND = 0,
    R_METHOD, /* known path, wrong method */
    R_CHAT,
    R_COMPLETION,
    R_MODELS,
    R_MODEL,
    R_HEALTH,
    R_METRICS,
    R_TOKENIZE,
    R_DETOKENIZE,
    R_WEB, /* the chat page's files */
} route;

typedef struct conn {
    srv *s;
    struct MHD_Connection *mc;
    route route;
    const char *allow; /* for 405 */
    const web_asset *asset; /* R_WEB */
    char model_arg[256];
    sbuf body;
    bool too_big;

    /* generation */
    rl_engine_request *req;
    gen_out out;
    bool stream;
    pthread_mutex_t mu;
    bool suspended;
    sbuf sse;
    size_t sse_off;
    bool got_done, ended, end_error, aborted, client_gone;
    rl_engine_event done;
    char done_msg[256];
    struct conn *wprev, *wnext;
    bool watched;
} conn;

static srv g_srv;
static pthread_mutex_t g_watch_mu = PTHREAD_MUTEX_INITIALIZER;
static conn *g_watch;
static pthread_rwlock_t g_engine_lock = PTHREAD_RWLOCK_INITIALIZER;
static atomic_bool g_watchdog_stop;

/* ---- responses ------------------------------------------------------------------------ */

static void count_status(srv *s, unsigned status) {
    unsigned c = status / 100;
    atomic_fetch_add(&s->http_requests[c >= 1 && c <= 5 ? c : 0], 1);
}

static enum MHD_Result send_text(conn *c, unsigned status, const char *type, char *text,
                                 size_t len, const char *retry_after) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (retry_after) MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
    if (c->allow && status == 405) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, c->allow);
    if (c->s->o.api_key && status == 401)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
    enum MHD_Result ret = MHD_queue_response(c->mc, status, r);
    MHD_destroy_response(r);
    count_status(c->s, status);
    return ret;
}

/* A file of the chat page. It needs no API key (the page asks for one and sends it with
 * its API calls); the headers keep it from being framed, sniffed or made to load
 * anything but its own files. */
static enum MHD_Result send_asset(conn *c, const web_asset *a) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, a->type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "Content-Security-Policy",
                            "default-src 'none'; script-src 'self'; style-src 'self'; "
                            "connect-src 'self'; img-src 'self'; base-uri 'none'; "
                            "form-action 'none'; frame-ancestors 'none'");
    enum MHD_Result ret = MHD_queue_response(c->mc, 200, r);
    MHD_destroy_response(r);
    count_status(c->s, 200);
    return ret;
}

static enum MHD_Result send_json(conn *c, unsigned status, json_t *j, const char *retry_after) {
    char *t = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!t) return MHD_NO;
    return send_text(c, status, "application/json", t, strlen(t), retry_after);
}

static enum MHD_Result send_error(conn *c, const api_error *e) {
    const char *retry = (e->status == 429 || e->status == 503) ? "1" : NULL;
    return send_json(c, (unsigned)e->status, api_error_json(e), retry);
}

static enum MHD_Result fail(conn *c, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static enum MHD_Result fail(conn *c, int status, const char *param, const char *fmt, ...) {
    api_error e;
    api_err(&e, status, param, "%s", "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e.message, sizeof e.message, fmt, ap);
    va_end(ap);
    if (status == 401) e.code = "invalid_api_key";
    if (status == 413) e.code = "request_too_large";
    if (status == 404 && !param) e.code = "not_found";
    return send_error(c, &e);
}

/* ---- the watch list of generation connections ------------------------------------------ */

static void watch_add(conn *c) {
    pthread_mutex_lock(&g_watch_mu);
    c->wnext = g_watch;
    c->wprev = NULL;
    if (g_watch) g_watch->wprev = c;
    g_watch = c;
    c->watched = true;
    pthread_mutex_unlock(&g_watch_mu);
}

static void watch_remove(conn *c) {
    pthread_mutex_lock(&g_watch_mu);
    if (c->watched) {
        if (c->wprev) c->wprev->wnext = c->wnext;
        else g_watch = c->wnext;
        if (c->wnext) c->wnext->wprev = c->wprev;
        c->watched = false;
    }
    pthread_mutex_unlock(&g_watch_mu);
}

static int watch_count(void) {
    int n = 0;
    pthread_mutex_lock(&g_watch_mu);
    for (conn *c = g_watch; c; c = c->wnext) n++;
    pthread_mutex_unlock(&g_watch_mu);
    return n;
}

/* Peek suspended generation sockets; abort the requests of closed ones. */
static void *watchdog_main(void *arg) {
    (void)arg;
    while (!atomic_load(&g_watchdog_stop)) {
        struct timespec ts = {0, 250 * 1000000L};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&g_watch_mu);
        for (conn *c = g_watch; c; c = c->wnext) {
            bool gone = false;
            pthread_mutex_lock(&c->mu);
            if (c->suspended && !c->got_done && !c->client_gone) {
                const union MHD_ConnectionInfo *ci =
                    MHD_get_connection_info(c->mc, MHD_CONNECTION_INFO_CONNECTION_FD);
                char ch;
                ssize_t r = ci ? recv(ci->connect_fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT) : 1;
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                    gone = c->client_gone = true;
            }
            pthread_mutex_unlock(&c->mu);
            if (gone) {
                atomic_fetch_add(&c->s->n_disconnects, 1);
                rl_engine_abort(c->req); /* notifies: the connection is resumed and closed */
            }
        }
        pthread_mutex_unlock(&g_watch_mu);
    }
    return NULL;
}

/* ---- generation ------------------------------------------------------------------------ */

/* From the engine thread (or an aborting thread): wake the connection. */
static void conn_notify(void *user) {
    conn *c = user;
    pthread_mutex_lock(&c->mu);
    if (c->suspended) {
        c->suspended = false;
        MHD_resume_connection(c->mc);
    }
    pthread_mutex_unlock(&c->mu);
}

/* Take every available event (c->mu held). */
static void pump(conn *c) {
    while (!c->got_done) {
        rl_engine_event ev;
        rl_engine_next_event(c->req, 0, &ev);
        if (ev.type == RL_ENGINE_EVENT_NONE) break;
        if (ev.type == RL_ENGINE_EVENT_DONE) {
            c->done = ev;
            snprintf(c->done_msg, sizeof c->done_msg, "%s", ev.message ? ev.message : "");
            c->done.message = c->done_msg;
            c->got_done = true;
            break;
        }
        if (ev.finish == RL_ENGINE_FINISH_ABORT) c->aborted = true;
        if (ev.finish == RL_ENGINE_FINISH_ERROR) {
            /* reported with DONE's status */
            rl_engine_event e2 = ev;
            e2.finish = RL_ENGINE_FINISH_NONE;
            gen_out_delta(&c->out, c->s, &e2, &c->sse);
            continue;
        }
        gen_out_delta(&c->out, c->s, &ev, &c->sse);
    }
}

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    conn *c = cls;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        if (c->sse_off < c->sse.len) {
            size_t n = RL_MIN(max, c->sse.len - c->sse_off);
            memcpy(buf, c->sse.p + c->sse_off, n);
            c->sse_off += n;
            pthread_mutex_unlock(&c->mu);
            return (ssize_t)n;
        }
        c->sse.len = c->sse_off = 0;
        if (c->ended) {
            bool err = c->end_error;
            pthread_mutex_unlock(&c->mu);
            return err ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
        }
        pump(c);
        if (c->got_done) {
            c->ended = true;
            if (c->client_gone) {
                c->end_error = true;
            } else if (c->aborted || c->done.status != RL_OK) {
                api_error e;
                if (c->aborted)
                    api_err(&e, 503, NULL, "the request was cancelled: the server is stopping");
                else
                    api_err(&e, 500, NULL, "%s", c->done_msg);
                json_t *ej = api_error_json(&e);
                char *t = json_dumps(ej, JSON_COMPACT);
                json_decref(ej);
                sbuf_addf(&c->sse, "data: %s\n\n", t ? t : "{}");
                free(t);
                sbuf_add(&c->sse, "data: [DONE]\n\n", 14);
            } else {
                gen_out_stream_end(&c->out, c->s, &c->done, &c->sse);
            }
            continue;
        }
        if (c->sse.len) continue;
        c->suspended = true;
        MHD_suspend_connection(c->mc);
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
}

/* Non-streamed: answer when DONE is there, else wait suspended (c->mu not held). */
static enum MHD_Result continue_generation(conn *c) {
    pthread_mutex_lock(&c->mu);
    pump(c);
    if (!c->got_done) {
        c->suspended = true;
        MHD_suspend_connection(c->mc);
        pthread_mutex_unlock(&c->mu);
        return MHD_YES;
    }
    pthread_mutex_unlock(&c->mu);
    if (c->client_gone) return MHD_NO;
    if (c->aborted) return fail(c, 503, NULL, "the request was cancelled: the server is stopping");
    if (c->done.status != RL_OK) return fail(c, 500, NULL, "%s", c->done_msg);
    return send_json(c, 200, gen_out_response(&c->out, c->s, &c->done), NULL);
}

/* The engine's refusal as an OpenAI error. */
static enum MHD_Result submit_error(conn *c, rl_status st, const char *msg, gen_kind kind,
                                    const char *grammar_param) {
    const char *prompt_param = kind == GEN_CHAT ? "messages" : "prompt";
    api_error e;
    if (grammar_param && !strncmp(msg, "grammar: ", 9) && st != RL_ERR_NOMEM) {
        /* the constraint did not compile: the field it came from */
        api_err(&e, 400, grammar_param, "%s: %s", grammar_param, msg + 9);
        return send_error(c, &e);
    }
    switch (st) {
    case RL_ERR_LIMIT:
        api_err(&e, 429, NULL, "%s", msg);
        e.code = "queue_full";
        break;
    case RL_ERR_RANGE:
        api_err(&e, 400, !strncmp(msg, "max_tokens", 10) ? "max_tokens" : prompt_param, "%s", msg);
        e.code = "context_length_exceeded";
        break;
    case RL_ERR_UNSUPPORTED: api_err(&e, 503, NULL, "%s", msg); break;
    case RL_ERR_NOMEM: api_err(&e, 500, NULL, "%s", msg); break;
    default: {
        const char *param = prompt_param;
        if (!strncmp(msg, "stop", 4)) param = "stop";
        else if (!strncmp(msg, "n =", 3)) param = "n";
        else if (!strncmp(msg, "max_tokens", 10)) param = "max_tokens";
        else if (strncmp(msg, "prompt", 6)) param = "";
        api_err(&e, 400, param[0] ? param : NULL, "%s", msg);
    }
    }
    return send_error(c, &e);
}

static enum MHD_Result start_generation(conn *c, json_t *body) {
    srv *s = c->s;
    gen_req g;
    api_error e;
    bool ok = c->route == R_CHAT ? parse_chat(s, body, &g, &e) : parse_completion(s, body, &g, &e);
    if (!ok) {
        gen_req_free(&g);
        return send_error(c, &e);
    }
    g.ep.notify = conn_notify;
    g.ep.notify_user = c;
    char err[512];
    rl_status st = rl_engine_submit(s->engine, &g.ep, &c->req, err, sizeof err);
    if (st != RL_OK) {
        const gen_kind kind = g.kind;
        const char *gp = g.grammar_param; /* a static string */
        gen_req_free(&g);
        return submit_error(c, st, err, kind, gp);
    }
    c->stream = g.stream;
    bool init = gen_out_init(&c->out, &g, s);
    gen_req_free(&g);
    if (!init) return fail(c, 500, NULL, "out of memory");
    watch_add(c);
    if (!c->stream) return continue_generation(c);
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_reader, c, NULL);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    enum MHD_Result ret = MHD_queue_response(c->mc, 200, r);
    MHD_destroy_response(r);
    count_status(s, 200);
    return ret;
}

/* ---- the other endpoints ----------------------------------------------------------------- */

static json_t *model_object(srv *s) {
    json_t *m = json_object();
    json_object_set_new(m, "id", json_string(s->model_id));
    json_object_set_new(m, "object", json_string("model"));
    json_object_set_new(m, "created", json_integer(s->created));
    json_object_set_new(m, "owned_by", json_string("ruvllm"));
    return m;
}

static enum MHD_Result do_tokenize(conn *c, json_t *body) {
    srv *s = c->s;
    json_t *content = json_object_get(body, "content");
    if (!json_is_string(content)) return fail(c, 400, "content", "content: expected a string");
    json_t *as = json_object_get(body, "add_special"), *ps = json_object_get(body, "parse_special"),
           *wp = json_object_get(body, "with_pieces");
    if ((as && !json_is_boolean(as)) || (ps && !json_is_boolean(ps)) || (wp && !json_is_boolean(wp)))
        return fail(c, 400, NULL, "add_special, parse_special, with_pieces: expected booleans");
    uint32_t flags = (json_is_true(as) ? RL_TOKENIZE_ADD_SPECIAL : 0) |
                     (ps && !json_is_true(ps) ? 0 : RL_TOKENIZE_PARSE_SPECIAL);
    size_t n = 0;
    const char *text = json_string_value(content);
    size_t len = json_string_length(content);
    rl_status st = rl_tokenize(s->vocab, text, len, flags, NULL, 0, &n);
    if (st != RL_OK && st != RL_ERR_RANGE)
        return fail(c, 400, "content", "content: %s", rl_status_str(st));
    rl_token *t = malloc((n ? n : 1) * sizeof *t);
    if (!t || rl_tokenize(s->vocab, text, len, flags, t, n, &n) != RL_OK) {
        free(t);
        return fail(c, 500, NULL, "tokenizing failed");
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++) {
        if (json_is_true(wp)) {
            json_t *o = json_object();
            json_object_set_new(o, "id", json_integer(t[i]));
            json_object_set_new(o, "piece", token_json_string(s, t[i], NULL));
            json_array_append_new(arr, o);
        } else {
            json_array_append_new(arr, json_integer(t[i]));
        }
    }
    free(t);
    json_t *r = json_object();
    json_object_set_new(r, "tokens", arr);
    return send_json(c, 200, r, NULL);
}

static enum MHD_Result do_detokenize(conn *c, json_t *body) {
    srv *s = c->s;
    json_t *toks = json_object_get(body, "tokens");
    if (!json_is_array(toks)) return fail(c, 400, "tokens", "tokens: expected an array of ids");
    size_t n = json_array_size(toks);
    rl_token *t = malloc((n ? n : 1) * sizeof *t);
    if (!t) return fail(c, 500, NULL, "out of memory");
    const int32_t nv = rl_model_n_vocab(s->model);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(toks, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= nv) {
            free(t);
            return fail(c, 400, "tokens", "tokens[%zu]: not a token id (0..%d)", i, nv - 1);
        }
        t[i] = (rl_token)json_integer_value(v);
    }
    size_t len = 0;
    rl_detokenize(s->vocab, t, n, 0, NULL, 0, &len);
    char *text = malloc(len + 1);
    if (!text || rl_detokenize(s->vocab, t, n, 0, text, len, &len) != RL_OK) {
        free(t);
        free(text);
        return fail(c, 500, NULL, "detokenizing failed");
    }
    json_t *r = json_object();
    json_t *str = json_stringn(text, len);
    if (!str) { /* a cut UTF-8 sequence */
        for (size_t i = 0; i < len; i++)
            if ((unsigned char)text[i] >= 0x80) text[i] = '?';
        str = json_stringn(text, len);
    }
    json_object_set_new(r, "content", str);
    free(t);
    free(text);
    return send_json(c, 200, r, NULL);
}

/* ---- routing ---------------------------------------------------------------------------- */

static route find_route(conn *c, const char *url, const char *method) {
    /* HEAD is GET without the body (libmicrohttpd drops it) */
    const bool get = !strcmp(method, "GET") || !strcmp(method, "HEAD"),
               post = !strcmp(method, "POST");
    static const struct {
        const char *path;
        route r;
        bool post;
    } table[] = {
        {"/v1/chat/completions", R_CHAT, true}, {"/chat/completions", R_CHAT, true},
        {"/v1/completions", R_COMPLETION, true}, {"/completions", R_COMPLETION, true},
        {"/v1/models", R_MODELS, false},         {"/models", R_MODELS, false},
        {"/health", R_HEALTH, false},            {"/metrics", R_METRICS, false},
        {"/tokenize", R_TOKENIZE, true},         {"/detokenize", R_DETOKENIZE, true},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(url, table[i].path)) {
            if (table[i].post ? post : get) return table[i].r;
            c->allow = table[i].post ? "POST" : "GET";
            return R_METHOD;
        }
    const char *page = !strcmp(url, "/") ? "/index.html" : url;
    for (size_t i = 0; i < rl_web_n_assets; i++)
        if (!strcmp(page, rl_web_assets[i].path)) {
            c->asset = &rl_web_assets[i];
            if (get) return R_WEB;
            c->allow = "GET";
            return R_METHOD;
        }
    const char *pre = !strncmp(url, "/v1/models/", 11) ? url + 11
                      : !strncmp(url, "/models/", 8)  ? url + 8
                                                      : NULL;
    if (pre) {
        if (!get) {
            c->allow = "GET";
            return R_METHOD;
        }
        snprintf(c->model_arg, sizeof c->model_arg, "%s", pre);
        return R_MODEL;
    }
    return R_NOT_FOUND;
}

/* API keys compared in constant time (for keys of equal length; length is not secret). */
static bool auth_ok(srv *s, struct MHD_Connection *mc) {
    if (!s->o.api_key) return true;
    const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7)) return false;
    const char *k = h + 7, *want = s->o.api_key;
    size_t lk = strlen(k), lw = strlen(want);
    unsigned char diff = (unsigned char)(lk != lw);
    for (size_t i = 0; i < lw; i++) diff |= (unsigned char)(want[i] ^ (i < lk ? k[i] : 0));
    return diff == 0;
}

static enum MHD_Result dispatch(conn *c) {
    srv *s = c->s;
    switch (c->route) {
    case R_NOT_FOUND: return fail(c, 404, NULL, "no such endpoint");
    case R_METHOD: return fail(c, 405, NULL, "method not allowed (use %s)", c->allow);
    case R_WEB: return send_asset(c, c->asset);
    case R_HEALTH:
        if (!atomic_load(&s->ready)) return fail(c, 503, NULL, "loading the model");
        if (atomic_load(&s->draining)) return fail(c, 503, NULL, "the server is stopping");
        {
            json_t *o = json_object();
            json_object_set_new(o, "status", json_string("ok"));
            return send_json(c, 200, o, NULL);
        }
    default: break;
    }
    if (!auth_ok(s, c->mc)) return fail(c, 401, NULL, "invalid or missing API key");
    if (c->too_big)
        return fail(c, 413, NULL, "the request body is larger than %zu bytes", s->o.max_body);
    if (!atomic_load(&s->ready)) return fail(c, 503, NULL, "loading the model");

    if (c->route == R_MODELS || c->route == R_MODEL) {
        if (c->route == R_MODEL) {
            if (strcmp(c->model_arg, s->model_id))
                return fail(c, 404, "model", "The model '%s' does not exist", c->model_arg);
            return send_json(c, 200, model_object(s), NULL);
        }
        json_t *r = json_object(), *data = json_array();
        json_object_set_new(r, "object", json_string("list"));
        json_array_append_new(data, model_object(s));
        json_object_set_new(r, "data", data);
        return send_json(c, 200, r, NULL);
    }
    if (c->route == R_METRICS) {
        pthread_rwlock_rdlock(&g_engine_lock);
        if (!s->engine) {
            pthread_rwlock_unlock(&g_engine_lock);
            return fail(c, 503, NULL, "the server is stopping");
        }
        size_t len = 0;
        char *t = metrics_text(s, &len);
        pthread_rwlock_unlock(&g_engine_lock);
        if (!t) return fail(c, 500, NULL, "out of memory");
        return send_text(c, 200, "text/plain; version=0.0.4; charset=utf-8", t, len, NULL);
    }

    /* JSON bodies */
    json_error_t je;
    json_t *body = json_loadb(c->body.p ? c->body.p : "", c->body.len, JSON_REJECT_DUPLICATES, &je);
    if (!body)
        return fail(c, 400, NULL, "invalid JSON body: %s (line %d, column %d)", je.text, je.line,
                    je.column);
    if (!json_is_object(body)) {
        json_decref(body);
        return fail(c, 400, NULL, "the body must be a JSON object");
    }
    enum MHD_Result ret;
    if (c->route == R_TOKENIZE) {
        ret = do_tokenize(c, body);
    } else if (c->route == R_DETOKENIZE) {
        ret = do_detokenize(c, body);
    } else {
        pthread_rwlock_rdlock(&g_engine_lock);
        if (atomic_load(&s->draining) || !s->engine)
            ret = fail(c, 503, NULL, "the server is stopping");
        else
            ret = start_generation(c, body);
        pthread_rwlock_unlock(&g_engine_lock);
    }
    json_decref(body);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    srv *s = cls;
    conn *c = *con_cls;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c) return MHD_NO;
        c->s = s;
        c->mc = mc;
        pthread_mutex_init(&c->mu, NULL);
        c->route = find_route(c, url, method);
        *con_cls = c;
        const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > s->o.max_body) {
            c->too_big = true;
            if (auth_ok(s, mc) || c->route == R_HEALTH)
                return fail(c, 413, NULL, "the request body is larger than %zu bytes",
                            s->o.max_body);
        }
        return MHD_YES;
    }
    if (*upload_size) {
        if (!c->too_big && c->body.len + *upload_size <= s->o.max_body) {
            if (!sbuf_add(&c->body, upload_data, *upload_size)) c->too_big = true;
        } else {
            c->too_big = true;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    if (c->req) return continue_generation(c);
    return dispatch(c);
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)mc;
    conn *c = *con_cls;
    if (!c) return;
    *con_cls = NULL;
    if (c->req && !c->got_done && toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !c->client_gone)
        atomic_fetch_add(&c->s->n_disconnects, 1);
    watch_remove(c);
    rl_engine_request_free(c->req); /* aborts a running request; no notify after this */
    if (c->req) gen_out_free(&c->out);
    sbuf_free(&c->sse);
    sbuf_free(&c->body);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* ---- start, load, serve, stop ------------------------------------------------------------ */

static void model_id_from_path(const char *path, char *out, size_t size) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 5 && !strcmp(b + n - 5, ".gguf")) n -= 5;
    snprintf(out, size, "%.*s", (int)n, b);
}

static const char *token_text(const rl_vocab *v, rl_token t) {
    if (t == RL_TOKEN_NULL) return NULL;
    return rl_vocab_token_text(v, t, NULL);
}

/* Probes of what the template does with tools (as llama.cpp learns a template's
 * capabilities): a probe tool, and a conversation that calls it and gets its result. */
#define RL_PROBE_TOOLS                                                                     \
    "[{\"type\": \"function\", \"function\": {\"name\": \"rl_probe_tool\", \"description\": "      \
    "\"probe\", \"parameters\": {\"type\": \"object\", \"properties\": {\"rl_probe_arg\": "          \
    "{\"type\": \"integer\", \"description\": \"probe\"}}, \"required\": [\"rl_probe_arg\"]}}}]"

/* Whether rendering messages_json (with the probe tools) works and shows `want`. */
static bool probe_shows(srv *s, const char *messages_json, const char *want) {
    char *out = NULL, err[256];
    rl_chat_template_params tp = rl_chat_template_default_params();
    tp.bos_token = s->bos_text;
    tp.eos_token = s->eos_text;
    bool shown = rl_chat_template_render(s->tmpl, messages_json, RL_PROBE_TOOLS, &tp, &out, NULL,
                                         err, sizeof err) == RL_OK &&
                 strstr(out, want) != NULL;
    rl_free_string(out);
    return shown;
}

/* Whether the template shows the tools it is given. */
static bool template_renders_tools(srv *s) {
    return probe_shows(s, "[{\"role\": \"user\", \"content\": \"hi\"}]", "rl_probe_tool");
}

/* Whether the template wants a call's arguments as text: it fails on, or does not show,
 * arguments given as an object, and shows them given as a string (Functionary v3.2). */
static bool template_wants_text_args(srv *s) {
#define RL_PROBE_CALL(ARGS)                                                                \
    "[{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"\", "   \
    "\"tool_calls\": [{\"id\": \"rlprobe01\", \"type\": \"function\", \"function\": {\"name\": "      \
    "\"rl_probe_tool\", \"arguments\": " ARGS "}}]}, {\"role\": \"tool\", \"tool_call_id\": "        \
    "\"rlprobe01\", \"name\": \"rl_probe_tool\", \"content\": \"ok\"}]"
    return !probe_shows(s, RL_PROBE_CALL("{\"rl_probe_arg\": 1}"), "rl_probe_arg") &&
           probe_shows(s, RL_PROBE_CALL("\"{\\\"rl_probe_arg\\\": 1}\""), "rl_probe_arg");
#undef RL_PROBE_CALL
}

static int load(srv *s) {
    char err[512];
    rl_model_params mp = rl_model_default_params();
    mp.n_threads = s->o.engine.n_threads;
    mp.device = s->o.device;
    mp.gpu_mem = s->o.gpu_mem;
    rl_status st = rl_model_load(s->o.model_path, &mp, &s->model, err, sizeof err);
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm serve: error: cannot load %s: %s\n", s->o.model_path, err);
        return 1;
    }
    s->vocab = rl_model_vocab(s->model);
    s->bos_text = token_text(s->vocab, rl_vocab_bos(s->vocab));
    s->eos_text = token_text(s->vocab, rl_vocab_eos(s->vocab));

    const char *src = NULL;
    size_t len = 0;
    char *file_src = NULL;
    if (s->o.chat_template) {
        FILE *f = fopen(s->o.chat_template, "rb");
        if (!f) {
            fprintf(stderr, "ruvllm serve: error: cannot open --chat-template %s: %s\n",
                    s->o.chat_template, strerror(errno));
            return 1;
        }
        sbuf b = {0};
        char chunk[65536];
        size_t n;
        while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) sbuf_add(&b, chunk, n);
        fclose(f);
        file_src = b.p ? b.p : strdup("");
        src = file_src;
        len = b.len;
    } else if (rl_chat_template_source(rl_model_gguf(s->model), NULL, &src, &len) != RL_OK) {
        fprintf(stderr, "ruvllm serve: warning: %s has no chat template; using ChatML\n",
                s->o.model_path);
        src = rl_chat_template_chatml();
        len = strlen(src);
    }
    st = rl_chat_template_compile(src, len, &s->tmpl, err, sizeof err);
    s->tc_family = rl_toolcall_detect(src, len);
    free(file_src);
    if (st == RL_OK && !template_renders_tools(s)) {
        s->tools_in_prompt = true;
        s->tc_family = RL_TOOLCALL_GENERIC;
    }
    if (st == RL_OK && !s->tools_in_prompt) s->args_as_text = template_wants_text_args(s);
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm serve: error: chat template: %s\n", err);
        return 1;
    }
    if (!rl__srv_device_plan(&s->o, s->model)) return 1;
    st = rl_engine_create(s->model, &s->o.engine, &s->engine, err, sizeof err);
    if (st != RL_OK) {
        fprintf(stderr, "ruvllm serve: error: engine: %s\n", err);
        return 1;
    }
    rl_engine_params ep = rl_engine_get_params(s->engine);
    fprintf(stderr,
            "ruvllm serve: model %s (%s), n_ctx %d, parallel %d, KV pool %llu MiB in blocks of %d, "
            "batch %d tokens, tool calls: %s%s\n",
            s->model_id, rl_model_arch(s->model), ep.n_ctx, ep.n_parallel,
            (unsigned long long)(ep.kv_mem >> 20), ep.block_size, ep.batch_tokens,
            rl_toolcall_family_name(s->tc_family),
            s->tools_in_prompt ? " (the template shows no tools: described in the system prompt)"
                               : "");
    return 0;
}

static bool bind_addr(const char *host, int port, struct sockaddr_storage *ss, bool *v6) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE}, *res = NULL;
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    if (getaddrinfo(host, ps, &hints, &res) != 0 || !res) return false;
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    freeaddrinfo(res);
    return true;
}

int rl_server_run(const rl_server_opts *o) {
    srv *s = &g_srv;
    memset(s, 0, sizeof *s);
    s->o = *o;
    s->created = (long)time(NULL);
    snprintf(s->fingerprint, sizeof s->fingerprint, "ruvllm-%s", rl_version());
    if (o->alias) snprintf(s->model_id, sizeof s->model_id, "%s", o->alias);
    else model_id_from_path(o->model_path, s->model_id, sizeof s->model_id);
    srandom((unsigned)time(NULL) ^ (unsigned)getpid());

    /* Signals are taken by sigwait below; every thread started from here blocks them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sockaddr_storage addr;
    bool v6 = false;
    if (!bind_addr(o->host, o->port, &addr, &v6)) {
        fprintf(stderr, "ruvllm serve: error: cannot resolve --host %s\n", o->host);
        return 1;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)o->port, NULL, NULL, on_request, s, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)o->http_threads, MHD_OPTION_CONNECTION_LIMIT, (unsigned)o->max_conns,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o->timeout_s, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)64 * 1024, MHD_OPTION_THREAD_STACK_SIZE, (size_t)4 << 20, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "ruvllm serve: error: cannot listen on %s:%d: %s\n", o->host, o->port,
                strerror(errno));
        return 1;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int port = di ? di->port : o->port;
    fprintf(stderr, "ruvllm serve: listening on http://%s%s%s:%d\n", v6 ? "[" : "", o->host,
            v6 ? "]" : "", port);

    pthread_t wd;
    atomic_store(&g_watchdog_stop, false);
    pthread_create(&wd, NULL, watchdog_main, NULL);

    int rc = load(s);
    if (rc == 0) {
        atomic_store(&s->ready, true);
        fprintf(stderr, "ruvllm serve: ready\n");
        int sig = 0;
        sigwait(&sigs, &sig);
        fprintf(stderr, "ruvllm serve: %s: finishing running requests\n",
                sig == SIGINT ? "SIGINT" : "SIGTERM");
        atomic_store(&s->draining, true);
        MHD_quiesce_daemon(d);
        /* finish what runs: up to 30 s, or until a second signal */
        struct timespec step = {0, 100 * 1000000L};
        for (int i = 0; i < 300; i++) {
            rl_engine_metrics m;
            rl_engine_metrics_get(s->engine, &m);
            if (m.n_running + m.n_waiting == 0) break;
            if (sigtimedwait(&sigs, NULL, &step) > 0) break;
        }
    }
    pthread_rwlock_wrlock(&g_engine_lock);
    rl_engine *e = s->engine;
    s->engine = NULL;
    pthread_rwlock_unlock(&g_engine_lock);
    rl_engine_free(e); /* what still runs ends (the connections are resumed) */
    for (int i = 0; i < 100 && watch_count() > 0; i++) {
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
    atomic_store(&g_watchdog_stop, true);
    pthread_join(wd, NULL);
    MHD_stop_daemon(d);
    rl_chat_template_free(s->tmpl);
    rl_model_free(s->model);
    if (rc == 0) fprintf(stderr, "ruvllm serve: stopped\n");
    return rc;
}
