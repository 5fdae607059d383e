/*
 * cmd_serve.c - `ruvllm serve`: options into rl_server_opts, then the server (server/).
 */
#include "cli.h"
#include "gen.h"
#include "../server/server.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: ruvllm serve -m MODEL [options]\n\n"
            "An OpenAI-compatible HTTP server: POST /v1/chat/completions, /v1/completions,\n"
            "/tokenize, /detokenize; GET /v1/models, /health, /metrics (Prometheus), and\n"
            "GET / a chat page (open http://HOST:PORT/ in a browser).\n\n"
            "  -m, --model FILE       GGUF model\n"
            "  --host ADDR            address to bind (default 127.0.0.1)\n"
            "  --port N               port (default 8080; 0: any free port, printed)\n"
            "  --api-key KEY          require 'Authorization: Bearer KEY' (also from the\n"
            "                         environment variable RUVLLM_API_KEY)\n"
            "  --alias NAME           model id in the API (default: the file name)\n"
            "  --parallel N           sequences running at once (default 8)\n"
            "  --ctx N                longest sequence, prompt + output (default: the model's,\n"
            "                         at most 4096)\n"
            "  --kv-mem BYTES         KV cache pool (K/M/G suffixes; default ctx x parallel)\n"
            "  --block-size N         tokens per KV block (default 16)\n"
            "  --batch-tokens N       tokens per engine step (default 512)\n"
            "  --kv-type T            F16 (default), F32 or Q8_0\n"
            "  --no-prefix-cache      do not share KV blocks between requests\n"
            "  --chat-template FILE   Jinja chat template (default: the model's, else ChatML)\n"
            "  --max-body BYTES       largest request body (default 8M)\n"
            "  --queue N              requests waiting before 429 (default 256; 0: no limit)\n"
            "  --max-conns N          open connections (default 512)\n"
            "  --http-threads N       HTTP worker threads (default 4)\n"
            "  --timeout S            idle connection timeout in seconds (default 120)\n"
            "  -t, --threads N        threads of the forward pass (default: physical cores)\n");
    gen_usage_options(f, GEN_OPT_DEVICE);
}

static bool parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_bytes(const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-') return false;
    uint64_t mul = 1;
    if (*end == 'k' || *end == 'K') mul = 1ull << 10, end++;
    else if (*end == 'm' || *end == 'M') mul = 1ull << 20, end++;
    else if (*end == 'g' || *end == 'G') mul = 1ull << 30, end++;
    if (*end == 'i' || *end == 'I') end++;
    if (*end == 'b' || *end == 'B') end++;
    if (*end || v > UINT64_MAX / mul) return false;
    *out = v * mul;
    return true;
}

int cmd_serve(int argc, char **argv) {
    rl_server_opts o = rl_server_default_opts();
    o.api_key = getenv("RUVLLM_API_KEY");
    if (o.api_key && !*o.api_key) o.api_key = NULL;
    gen_opts dev; /* --device, --gpu-mem: the parser the other commands share */
    gen_opts_init(&dev, "serve");
    for (int i = 1; i < argc; i++) {
        const int r = gen_parse_option(&dev, GEN_OPT_DEVICE, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        uint64_t b;
#define NEED_VALUE                                                                         \
    do {                                                                                   \
        if (!v) {                                                                          \
            fprintf(stderr, "ruvllm serve: %s needs a value\n", a);                        \
            return 2;                                                                      \
        }                                                                                  \
        i++;                                                                               \
    } while (0)
#define BAD_VALUE                                                                          \
    do {                                                                                   \
        fprintf(stderr, "ruvllm serve: bad value for %s: '%s'\n", a, v);                   \
        return 2;                                                                          \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            NEED_VALUE;
            o.model_path = v;
        } else if (!strcmp(a, "--host")) {
            NEED_VALUE;
            o.host = v;
        } else if (!strcmp(a, "--port")) {
            NEED_VALUE;
            if (!parse_int(v, 0, 65535, &n)) BAD_VALUE;
            o.port = (int)n;
        } else if (!strcmp(a, "--api-key")) {
            NEED_VALUE;
            o.api_key = *v ? v : NULL;
        } else if (!strcmp(a, "--alias")) {
            NEED_VALUE;
            o.alias = v;
        } else if (!strcmp(a, "--parallel") || !strcmp(a, "-np")) {
            NEED_VALUE;
            if (!parse_int(v, 1, 256, &n)) BAD_VALUE;
            o.engine.n_parallel = (int32_t)n;
        } else if (!strcmp(a, "--ctx") || !strcmp(a, "-c")) {
            NEED_VALUE;
            if (!parse_int(v, 0, 1 << 24, &n)) BAD_VALUE;
            o.engine.n_ctx = (int32_t)n;
        } else if (!strcmp(a, "--kv-mem")) {
            NEED_VALUE;
            if (!parse_bytes(v, &b)) BAD_VALUE;
            o.engine.kv_mem = b;
        } else if (!strcmp(a, "--block-size")) {
            NEED_VALUE;
            if (!parse_int(v, 1, 1024, &n)) BAD_VALUE;
            o.engine.block_size = (int32_t)n;
        } else if (!strcmp(a, "--batch-tokens")) {
            NEED_VALUE;
            if (!parse_int(v, 1, 1 << 16, &n)) BAD_VALUE;
            o.engine.batch_tokens = (int32_t)n;
        } else if (!strcmp(a, "--kv-type")) {
            NEED_VALUE;
            rl_type t;
            if (rl_type_from_name(v, &t) != RL_OK) BAD_VALUE;
            o.engine.kv_type = t;
        } else if (!strcmp(a, "--no-prefix-cache")) {
            o.engine.prefix_cache = false;
        } else if (!strcmp(a, "--chat-template")) {
            NEED_VALUE;
            o.chat_template = v;
        } else if (!strcmp(a, "--max-body")) {
            NEED_VALUE;
            if (!parse_bytes(v, &b) || b == 0 || b > (1ull << 32)) BAD_VALUE;
            o.max_body = (size_t)b;
        } else if (!strcmp(a, "--queue")) {
            NEED_VALUE;
            if (!parse_int(v, 0, 1 << 20, &n)) BAD_VALUE;
            o.engine.max_waiting = (int32_t)n;
        } else if (!strcmp(a, "--max-conns")) {
            NEED_VALUE;
            if (!parse_int(v, 1, 1 << 16, &n)) BAD_VALUE;
            o.max_conns = (int)n;
        } else if (!strcmp(a, "--http-threads")) {
            NEED_VALUE;
            if (!parse_int(v, 1, 256, &n)) BAD_VALUE;
            o.http_threads = (int)n;
        } else if (!strcmp(a, "--timeout")) {
            NEED_VALUE;
            if (!parse_int(v, 1, 86400, &n)) BAD_VALUE;
            o.timeout_s = (int)n;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NEED_VALUE;
            if (!parse_int(v, 0, 1024, &n)) BAD_VALUE;
            o.engine.n_threads = (int)n;
        } else {
            fprintf(stderr, "ruvllm serve: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
#undef NEED_VALUE
#undef BAD_VALUE
    }
    if (!o.model_path) {
        fprintf(stderr, "ruvllm serve: -m MODEL is required\n\n");
        usage(stderr);
        return 2;
    }
    if (o.engine.batch_tokens < o.engine.n_parallel) o.engine.batch_tokens = o.engine.n_parallel;
    if (!gen_check_device(&dev)) return 1;
    o.device = dev.device;
    o.gpu_mem = (float)dev.gpu_mem;
    return rl_server_run(&o);
}
