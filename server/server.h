/*
 * server.h - `ruvllm serve`: an OpenAI-compatible HTTP server (libmicrohttpd + jansson)
 * in front of an rl_engine. A client of the public header only.
 *
 * Files: server.c (daemon, routing, connections, suspend/resume, shutdown), openai.c
 * (request validation into engine parameters, response and chunk objects, errors),
 * metrics.c (Prometheus text); web/ (the chat page served at GET /, compiled into the
 * binary).
 */
#ifndef RL_SERVER_H
#define RL_SERVER_H

#include "ruvllm.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

typedef struct rl_server_opts {
    const char *model_path;
    const char *host;          /* "127.0.0.1" */
    int port;                  /* 8080; 0: any free port (printed) */
    const char *api_key;       /* NULL: no authentication */
    const char *chat_template; /* NULL: the model's (ChatML when it has none) */
    const char *alias;         /* model id; NULL: the file name without .gguf */
    const char *device;        /* rl_model_params.device (NULL: the CPU) */
    float gpu_mem;             /* rl_model_params.gpu_mem (0: no cap) */
    rl_engine_params engine;
    size_t max_body;           /* bytes of a request body */
    int max_conns;             /* open connections */
    int http_threads;          /* libmicrohttpd worker threads */
    int timeout_s;             /* idle connection timeout */
    bool verbose;
} rl_server_opts;

rl_server_opts rl_server_default_opts(void);

/* On a GPU: print where its memory goes (weights, scratch, tokens of KV that fit, how many
 * sequences of n_ctx that makes) and, when o->engine.kv_mem is 0, cap the KV pool to what
 * fits gpu_mem. Returns false, with a message, when not even one sequence of n_ctx tokens
 * fits or an explicit kv_mem is more than fits (gpu.c). */
bool rl__srv_device_plan(rl_server_opts *o, const rl_model *m);

/* Start, serve until SIGINT/SIGTERM, shut down cleanly. Returns a process exit status. */
int rl_server_run(const rl_server_opts *o);

/* ---- internals shared by the server files ---- */

typedef struct srv srv;

/* A growable string. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
} sbuf;
bool sbuf_add(sbuf *b, const char *s, size_t n);
bool sbuf_addf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sbuf_free(sbuf *b);

/* An error to return: HTTP status, OpenAI error type/param/code, message. */
typedef struct api_error {
    int status;
    const char *type;  /* "invalid_request_error", ... */
    char param[64];    /* "" when none */
    const char *code;  /* NULL when none */
    char message[512];
} api_error;

void api_err(api_error *e, int status, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
json_t *api_error_json(const api_error *e);

typedef enum gen_kind { GEN_CHAT = 0, GEN_COMPLETION = 1 } gen_kind;

/* A generation request after validation: what the engine gets and how to answer. */
typedef struct gen_req {
    gen_kind kind;
    bool stream, include_usage, echo;
    bool logprobs;
    int top_logprobs;
    int n;
    char *prompt_text;         /* rendered chat or completion text (owned) */
    rl_token *prompt_tokens;   /* completions given as ids (owned), or NULL */
    int32_t n_prompt_tokens;
    char *stop[RL_ENGINE_MAX_STOP];
    int n_stop;
    rl_logit_bias *bias;
    int n_bias;
    char *cache_salt;
    /* constrained output: response_format, grammar, regex, or the tools' grammar */
    char *grammar;             /* GBNF for the engine (owned), or NULL */
    const char *grammar_param; /* the request field it comes from, for errors */
    /* tool calls (chat): the output is parsed in the template's syntax */
    bool tools;
    rl_toolcall_family tc_family;
    char *tools_json;          /* the request's "tools" (owned) */
    rl_engine_request_params ep;
} gen_req;

void gen_req_free(gen_req *g);

/* The model and what every request needs of it. */
struct srv {
    rl_server_opts o;
    char model_id[256];
    long created;
    atomic_bool ready, draining;
    rl_model *model;
    const rl_vocab *vocab;
    rl_engine *engine;
    rl_chat_template *tmpl;
    rl_toolcall_family tc_family; /* the tool-call syntax of the template */
    bool tools_in_prompt;         /* the template ignores tools: they are described in a
                                     system message, calls asked for as generic JSON */
    bool args_as_text;            /* the template writes a call's arguments as they are
                                     (a string), not through tojson (an object) */
    const char *bos_text, *eos_text;
    char fingerprint[64];
    atomic_ullong http_requests[6]; /* by status class: 1xx..5xx, [0] other */
    atomic_ullong n_disconnects;
};

/* openai.c: validate a body into g (and fill the engine params). false with *err set. */
bool parse_chat(srv *s, json_t *body, gen_req *g, api_error *err);
bool parse_completion(srv *s, json_t *body, gen_req *g, api_error *err);

/* The answer being built from engine events (non-streaming accumulates, streaming emits
 * SSE chunks). */
typedef struct gen_out {
    gen_kind kind;
    char id[48];
    long created;
    int n;
    bool logprobs, stream, include_usage;
    int top_logprobs;
    sbuf *text;                /* [n] accumulated text (non-streaming) */
    json_t **lp;               /* [n] logprobs arrays (chat: content entries) */
    json_t **lp_tokens, **lp_token_lp, **lp_top, **lp_offset; /* completions, [n] */
    size_t *offset;            /* [n] completions text offset */
    const char **finish;       /* [n] */
    bool *started;             /* [n] streaming: role chunk sent */
    char *echo;                /* completions: prompt text to put in front */
    size_t echo_len;
    /* tool calls: choice k's text is parsed (non-streaming) or fed to tcs[k] (streaming) */
    bool tools;
    rl_toolcall_family tc_family;
    char *tools_json;          /* owned */
    uint64_t id_seed;          /* call ids of choice k come from id_seed + k */
    rl_toolcall_stream **tcs;  /* [n] streaming parsers */
    bool *called;              /* [n] a tool call was streamed */
} gen_out;

bool gen_out_init(gen_out *o, const gen_req *g, const srv *s);
void gen_out_free(gen_out *o);
/* Apply one DELTA event: accumulate, or append SSE chunks to sse. */
bool gen_out_delta(gen_out *o, const srv *s, const rl_engine_event *ev, sbuf *sse);
/* The final answer (non-streaming) as JSON. */
json_t *gen_out_response(gen_out *o, const srv *s, const rl_engine_event *done);
/* Streaming end: usage chunk when asked, then [DONE]. */
bool gen_out_stream_end(gen_out *o, const srv *s, const rl_engine_event *done, sbuf *sse);

/* The text of token t as a JSON string (invalid UTF-8 replaced) and its bytes. */
json_t *token_json_string(const srv *s, rl_token t, json_t **bytes);

/* metrics.c */
char *metrics_text(srv *s, size_t *len);

/* The chat page (GET /): server/web/'s files, compiled in by server/web/embed.cmake. */
typedef struct web_asset {
    const char *path; /* "/index.html" */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t len;
} web_asset;
extern const web_asset rl_web_assets[];
extern const size_t rl_web_n_assets;

#endif /* RL_SERVER_H */
