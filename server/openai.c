/*
 * openai.c - the OpenAI API surface: request bodies validated into engine parameters
 * (every refusal names the field, with OpenAI's error object), and the response, chunk
 * and usage objects built from engine events, in the shapes of OpenAI's OpenAPI spec
 * (CreateChatCompletionResponse, CreateChatCompletionStreamResponse,
 * CreateCompletionResponse).
 */
#include "server.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RL_MIN(a, b) ((a) < (b) ? (a) : (b))

/* ---- small helpers ---------------------------------------------------------------- */

bool sbuf_add(sbuf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return false;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return true;
}

bool sbuf_addf(sbuf *b, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return false;
    if ((size_t)n < sizeof tmp) return sbuf_add(b, tmp, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big) return false;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    bool ok = sbuf_add(b, big, (size_t)n);
    free(big);
    return ok;
}

void sbuf_free(sbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}

void api_err(api_error *e, int status, const char *param, const char *fmt, ...) {
    e->status = status;
    e->type = status == 401   ? "authentication_error"
              : status == 404 ? "invalid_request_error"
              : status == 429 ? "rate_limit_error"
              : status >= 500 ? "server_error"
                              : "invalid_request_error";
    e->code = NULL;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
}

json_t *api_error_json(const api_error *e) {
    json_t *o = json_object();
    json_object_set_new(o, "message", json_string(e->message));
    json_object_set_new(o, "type", json_string(e->type));
    json_object_set_new(o, "param", e->param[0] ? json_string(e->param) : json_null());
    json_object_set_new(o, "code", e->code ? json_string(e->code) : json_null());
    json_t *root = json_object();
    json_object_set_new(root, "error", o);
    return root;
}

void gen_req_free(gen_req *g) {
    free(g->prompt_text);
    free(g->prompt_tokens);
    for (int i = 0; i < g->n_stop; i++) free(g->stop[i]);
    free(g->bias);
    free(g->cache_salt);
    free(g->grammar);
    free(g->tools_json);
    memset(g, 0, sizeof *g);
}

/* Absent and null are the same: the default. */
static json_t *field(json_t *body, const char *key) {
    json_t *v = json_object_get(body, key);
    return (v && !json_is_null(v)) ? v : NULL;
}

static bool get_number(json_t *body, const char *key, double lo, double hi, double *out,
                       api_error *err) {
    json_t *v = field(body, key);
    if (!v) return true;
    if (!json_is_number(v)) {
        api_err(err, 400, key, "%s: expected a number", key);
        return false;
    }
    double d = json_number_value(v);
    if (!(d >= lo && d <= hi)) {
        api_err(err, 400, key, "%s: %g is out of range [%g, %g]", key, d, lo, hi);
        return false;
    }
    *out = d;
    return true;
}

static bool get_int(json_t *body, const char *key, long long lo, long long hi, long long *out,
                    api_error *err) {
    json_t *v = field(body, key);
    if (!v) return true;
    if (!json_is_integer(v)) {
        api_err(err, 400, key, "%s: expected an integer", key);
        return false;
    }
    long long d = json_integer_value(v);
    if (d < lo || d > hi) {
        api_err(err, 400, key, "%s: %lld is out of range [%lld, %lld]", key, d, lo, hi);
        return false;
    }
    *out = d;
    return true;
}

static bool get_bool(json_t *body, const char *key, bool *out, api_error *err) {
    json_t *v = field(body, key);
    if (!v) return true;
    if (!json_is_boolean(v)) {
        api_err(err, 400, key, "%s: expected a boolean", key);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

static bool get_string(json_t *body, const char *key, const char **out, api_error *err) {
    json_t *v = field(body, key);
    if (!v) return true;
    if (!json_is_string(v)) {
        api_err(err, 400, key, "%s: expected a string", key);
        return false;
    }
    *out = json_string_value(v);
    return true;
}

static bool in_list(const char *key, const char *const *list) {
    for (; *list; list++)
        if (!strcmp(key, *list)) return true;
    return false;
}

/* Every key must be known; some known ones are refused as unsupported. */
static bool check_keys(json_t *body, const char *const *known, const char *const *refused,
                       api_error *err) {
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v) {
        if (refused && in_list(key, refused) && !json_is_null(v)) {
            api_err(err, 400, key, "%s is not supported by this server", key);
            return false;
        }
        if (!in_list(key, known) && !(refused && in_list(key, refused))) {
            api_err(err, 400, key, "Unrecognized request argument supplied: %s", key);
            return false;
        }
    }
    return true;
}

/* ---- the fields both endpoints share ------------------------------------------------ */

static bool parse_common(srv *s, json_t *body, gen_req *g, api_error *err) {
    const char *model = NULL;
    if (!get_string(body, "model", &model, err)) return false;
    if (model && strcmp(model, s->model_id)) {
        api_err(err, 404, "model", "The model '%s' does not exist (this server has '%s')", model,
                s->model_id);
        err->code = "model_not_found";
        return false;
    }
    rl_engine_request_params *ep = &g->ep;
    *ep = rl_engine_request_default_params();
    rl_sampler_params *sp = &ep->sampling;
    rl_engine_params eng = rl_engine_get_params(s->engine);

    double d;
    long long ll;
    d = 1.0;
    if (!get_number(body, "temperature", 0, 2, &d, err)) return false;
    sp->temperature = (float)d;
    d = 1.0;
    if (!get_number(body, "top_p", 0, 1, &d, err)) return false;
    sp->top_p = (float)d;
    d = 0;
    if (!get_number(body, "min_p", 0, 1, &d, err)) return false;
    sp->min_p = (float)d;
    ll = 0;
    if (!get_int(body, "top_k", -1, INT32_MAX, &ll, err)) return false;
    sp->top_k = ll < 0 ? 0 : (int32_t)ll;
    d = 0;
    if (!get_number(body, "presence_penalty", -2, 2, &d, err)) return false;
    sp->presence_penalty = (float)d;
    d = 0;
    if (!get_number(body, "frequency_penalty", -2, 2, &d, err)) return false;
    sp->frequency_penalty = (float)d;
    d = 1;
    if (!get_number(body, "repetition_penalty", 0.01, 100, &d, err)) return false;
    sp->repeat_penalty = (float)d;
    /* OpenAI's penalties count every generated token: a window as long as the context */
    sp->penalty_last_n = RL_MIN(eng.n_ctx, RL_SAMPLER_MAX_WINDOW);
    json_t *seed = field(body, "seed");
    if (seed) {
        if (!json_is_integer(seed)) {
            api_err(err, 400, "seed", "seed: expected an integer");
            return false;
        }
        sp->seed = (uint64_t)json_integer_value(seed);
        if (sp->seed == RL_SAMPLER_SEED_RANDOM) sp->seed = 0;
    } else {
        sp->seed = RL_SAMPLER_SEED_RANDOM;
    }

    ll = 1;
    const long long n_max = RL_MIN(RL_ENGINE_MAX_N, eng.n_parallel);
    if (!get_int(body, "n", 1, n_max, &ll, err)) return false;
    g->n = (int)ll;
    ep->n = g->n;

    bool b = false;
    if (!get_bool(body, "stream", &b, err)) return false;
    g->stream = b;
    json_t *so = field(body, "stream_options");
    if (so) {
        if (!g->stream) {
            api_err(err, 400, "stream_options",
                    "stream_options: only allowed when stream is true");
            return false;
        }
        if (!json_is_object(so)) {
            api_err(err, 400, "stream_options", "stream_options: expected an object");
            return false;
        }
        const char *key;
        json_t *v;
        json_object_foreach(so, key, v) {
            if (strcmp(key, "include_usage") && strcmp(key, "include_obfuscation")) {
                api_err(err, 400, "stream_options", "stream_options.%s: unknown option", key);
                return false;
            }
            if (!json_is_boolean(v) && !json_is_null(v)) {
                api_err(err, 400, "stream_options", "stream_options.%s: expected a boolean", key);
                return false;
            }
        }
        g->include_usage = json_is_true(json_object_get(so, "include_usage"));
    }

    json_t *stop = field(body, "stop");
    if (stop) {
        if (json_is_string(stop)) {
            if (json_string_length(stop) == 0) {
                api_err(err, 400, "stop", "stop: empty string");
                return false;
            }
            g->stop[g->n_stop++] = strdup(json_string_value(stop));
        } else if (json_is_array(stop)) {
            if (json_array_size(stop) > RL_ENGINE_MAX_STOP) {
                api_err(err, 400, "stop", "stop: %zu strings, at most %d", json_array_size(stop),
                        RL_ENGINE_MAX_STOP);
                return false;
            }
            size_t i;
            json_t *v;
            json_array_foreach(stop, i, v) {
                if (!json_is_string(v) || json_string_length(v) == 0 ||
                    json_string_length(v) > RL_ENGINE_MAX_STOP_LEN) {
                    api_err(err, 400, "stop", "stop[%zu]: expected a non-empty string", i);
                    return false;
                }
                g->stop[g->n_stop++] = strdup(json_string_value(v));
            }
        } else {
            api_err(err, 400, "stop", "stop: expected a string or an array of strings");
            return false;
        }
        ep->stop = (const char *const *)g->stop;
        ep->n_stop = g->n_stop;
    }

    json_t *lb = field(body, "logit_bias");
    if (lb) {
        if (!json_is_object(lb)) {
            api_err(err, 400, "logit_bias", "logit_bias: expected an object");
            return false;
        }
        size_t n = json_object_size(lb);
        g->bias = calloc(n ? n : 1, sizeof *g->bias);
        const char *key;
        json_t *v;
        const int32_t nv = rl_model_n_vocab(s->model);
        json_object_foreach(lb, key, v) {
            char *end;
            long t = strtol(key, &end, 10);
            if (!*key || *end || t < 0 || t >= nv) {
                api_err(err, 400, "logit_bias", "logit_bias: '%s' is not a token id (0..%d)", key,
                        nv - 1);
                return false;
            }
            if (!json_is_number(v) || json_number_value(v) < -100 || json_number_value(v) > 100) {
                api_err(err, 400, "logit_bias", "logit_bias[%s]: expected a number in [-100, 100]",
                        key);
                return false;
            }
            g->bias[g->n_bias++] = (rl_logit_bias){(rl_token)t, (float)json_number_value(v)};
        }
        sp->logit_bias = g->bias;
        sp->n_logit_bias = g->n_bias;
    }

    const char *user = NULL, *salt = NULL;
    if (!get_string(body, "user", &user, err)) return false;
    if (!get_string(body, "cache_salt", &salt, err)) return false;
    if (salt) {
        if (!*salt) {
            api_err(err, 400, "cache_salt", "cache_salt: empty string");
            return false;
        }
        g->cache_salt = strdup(salt);
        ep->cache_salt = g->cache_salt;
    }
    ll = 0;
    if (!get_int(body, "priority", INT32_MIN, INT32_MAX, &ll, err)) return false;
    ep->priority = (int32_t)ll;
    b = false;
    if (!get_bool(body, "ignore_eos", &b, err)) return false;
    ep->ignore_eos = b;
    return true;
}

static bool parse_max_tokens(json_t *body, const char *key, int32_t *out, api_error *err) {
    long long ll = -1;
    if (!get_int(body, key, LLONG_MIN, LLONG_MAX, &ll, err)) return false;
    if (!field(body, key)) return true;
    if (ll < 1 || ll > INT32_MAX) {
        api_err(err, 400, key, "%s: %lld, expected an integer >= 1", key, ll);
        return false;
    }
    *out = (int32_t)ll;
    return true;
}

/* ---- chat ---------------------------------------------------------------------------- */

static const char *const k_chat_keys[] = {
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
    "min_p", "presence_penalty", "frequency_penalty", "repetition_penalty", "seed", "stop", "n",
    "logprobs", "top_logprobs", "logit_bias", "stream", "stream_options", "user", "priority",
    "cache_salt", "ignore_eos", "store", "metadata", "service_tier", "parallel_tool_calls",
    "prompt_cache_key", "safety_identifier", "verbosity", "modalities", "tools", "tool_choice",
    "response_format", "grammar", "regex", NULL};
static const char *const k_chat_refused[] = {
    "functions", "function_call", "audio", "prediction", "web_search_options",
    "reasoning_effort", NULL};

/* ---- constrained output ------------------------------------------------------------- */

/* Names of OpenAI's response formats and functions: 1 to 64 of [A-Za-z0-9_-]. */
static bool name_ok(const char *s) {
    size_t n = strlen(s);
    if (n < 1 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return false;
    }
    return true;
}

static bool set_grammar(gen_req *g, const char *which, char *gbnf, api_error *err) {
    if (!gbnf) {
        api_err(err, 500, NULL, "out of memory");
        return false;
    }
    if (g->grammar) {
        api_err(err, 400, which, "%s: cannot be combined with %s (one of response_format, "
                "grammar and regex per request)", which, g->grammar_param);
        free(gbnf);
        return false;
    }
    g->grammar = gbnf;
    g->grammar_param = which;
    g->ep.grammar = gbnf;
    return true;
}

/* A JSON Schema as GBNF; refusals name what the converter cannot express. */
static bool schema_grammar(json_t *schema, gen_req *g, api_error *err) {
    char *sj = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY);
    char *out = NULL, cerr[400] = "";
    rl_status st = sj ? rl_schema_to_gbnf(sj, strlen(sj), 0, &out, cerr, sizeof cerr)
                      : RL_ERR_NOMEM;
    free(sj);
    if (st != RL_OK) {
        api_err(err, st == RL_ERR_NOMEM ? 500 : 400, "response_format",
                "response_format.json_schema.schema: %s%s",
                st == RL_ERR_UNSUPPORTED ? "not supported: " : st == RL_ERR_LIMIT ? "too large: "
                                                                                   : "",
                cerr[0] ? cerr : rl_status_str(st));
        return false;
    }
    char *gbnf = strdup(out);
    rl_free_string(out);
    return set_grammar(g, "response_format", gbnf, err);
}

/* response_format ({"type": "text" | "json_object" | "json_schema"}) and the ruvllm extras
 * grammar (GBNF text) and regex (the text matches it whole): at most one of them, as GBNF
 * for the engine in g->grammar, with the field it came from for later errors. */
static bool parse_constraint(json_t *body, gen_req *g, api_error *err) {
    json_t *rf = field(body, "response_format");
    if (rf) {
        json_t *type = json_object_get(rf, "type");
        if (!json_is_object(rf) || !json_is_string(type)) {
            api_err(err, 400, "response_format",
                    "response_format: expected an object with a \"type\"");
            return false;
        }
        const char *t = json_string_value(type);
        if (!strcmp(t, "json_object")) {
            if (!set_grammar(g, "response_format", strdup(rl_json_object_gbnf()), err))
                return false;
        } else if (!strcmp(t, "json_schema")) {
            json_t *js = json_object_get(rf, "json_schema");
            if (!json_is_object(js)) {
                api_err(err, 400, "response_format",
                        "response_format.json_schema: expected an object");
                return false;
            }
            json_t *name = json_object_get(js, "name"), *strict = json_object_get(js, "strict");
            if (!json_is_string(name) || !name_ok(json_string_value(name))) {
                api_err(err, 400, "response_format", "response_format.json_schema.name: expected "
                        "1 to 64 letters, digits, '_', '-' or '.'");
                return false;
            }
            if (strict && !json_is_boolean(strict) && !json_is_null(strict)) {
                api_err(err, 400, "response_format",
                        "response_format.json_schema.strict: expected a boolean");
                return false;
            }
            json_t *schema = json_object_get(js, "schema");
            if (!schema || json_is_null(schema)) {
                if (!set_grammar(g, "response_format", strdup(rl_json_object_gbnf()), err))
                    return false;
            } else if (!json_is_object(schema) && !json_is_boolean(schema)) {
                api_err(err, 400, "response_format",
                        "response_format.json_schema.schema: expected a JSON Schema (an object)");
                return false;
            } else if (!schema_grammar(schema, g, err)) {
                return false;
            }
        } else if (strcmp(t, "text")) {
            api_err(err, 400, "response_format",
                    "response_format.type: '%s' is not one of text, json_object, json_schema", t);
            return false;
        }
    }
    json_t *gr = field(body, "grammar");
    if (gr) {
        if (!json_is_string(gr) || json_string_length(gr) == 0 ||
            strlen(json_string_value(gr)) != json_string_length(gr)) {
            api_err(err, 400, "grammar", "grammar: expected GBNF text (a non-empty string)");
            return false;
        }
        if (!set_grammar(g, "grammar", strdup(json_string_value(gr)), err)) return false;
    }
    json_t *re = field(body, "regex");
    if (re) {
        if (!json_is_string(re) || json_string_length(re) == 0) {
            api_err(err, 400, "regex", "regex: expected a regular expression (a non-empty string)");
            return false;
        }
        char *out = NULL, rerr[400] = "";
        rl_status st = rl_regex_to_gbnf(json_string_value(re), json_string_length(re), 0, &out,
                                        rerr, sizeof rerr);
        if (st != RL_OK) {
            const char *m = rerr[0] ? rerr : rl_status_str(st);
            if (!strncmp(m, "regex: ", 7)) m += 7;
            api_err(err, st == RL_ERR_NOMEM ? 500 : 400, "regex", "regex: %s%s",
                    st == RL_ERR_UNSUPPORTED ? "not supported: " : "", m);
            return false;
        }
        char *gbnf = strdup(out);
        rl_free_string(out);
        if (!set_grammar(g, "regex", gbnf, err)) return false;
    }
    return true;
}

/* ---- tools ---------------------------------------------------------------------------- */

/* tools, tool_choice, parallel_tool_calls. The tools go to the chat template; unless
 * tool_choice is "none" the output is parsed for calls in the template's syntax (detected
 * at load), with control tokens kept in the text for the parser. "required" and a named
 * function are enforced by the family's grammar, so the arguments validate against the
 * tool's schema; "auto" uses the family's text-or-calls grammar where the schemas allow
 * one, else the output is only parsed. */
static bool parse_tools(srv *s, json_t *body, gen_req *g, api_error *err) {
    json_t *tools = field(body, "tools"), *tc = field(body, "tool_choice"),
           *ptc = field(body, "parallel_tool_calls");
    if (ptc && !json_is_boolean(ptc)) {
        api_err(err, 400, "parallel_tool_calls", "parallel_tool_calls: expected a boolean");
        return false;
    }
    if (!tools) {
        if (tc) {
            api_err(err, 400, "tool_choice", "tool_choice: only allowed when tools are given");
            return false;
        }
        return true;
    }
    if (!json_is_array(tools) || json_array_size(tools) == 0) {
        api_err(err, 400, "tools", "tools: expected a non-empty array");
        return false;
    }
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *type = json_object_get(t, "type"), *fn = json_object_get(t, "function");
        json_t *name = json_object_get(fn, "name"), *params = json_object_get(fn, "parameters");
        if (!json_is_object(t) || !json_is_string(type) ||
            strcmp(json_string_value(type), "function") || !json_is_object(fn)) {
            api_err(err, 400, "tools", "tools[%zu]: expected {\"type\": \"function\", "
                    "\"function\": {\"name\": ..., \"parameters\": ...}}", i);
            return false;
        }
        if (!json_is_string(name) || !name_ok(json_string_value(name))) {
            api_err(err, 400, "tools", "tools[%zu].function.name: expected 1 to 64 letters, "
                    "digits, '_', '-' or '.'", i);
            return false;
        }
        if (params && !json_is_object(params) && !json_is_null(params)) {
            api_err(err, 400, "tools", "tools[%zu].function.parameters: expected a JSON Schema "
                    "object", i);
            return false;
        }
        for (size_t j = 0; j < i; j++)
            if (json_equal(name, json_object_get(json_object_get(json_array_get(tools, j),
                                                                 "function"), "name"))) {
                api_err(err, 400, "tools", "tools[%zu].function.name: '%s' is used twice", i,
                        json_string_value(name));
                return false;
            }
    }
    rl_toolcall_choice choice = RL_TOOLCALL_CHOICE_AUTO;
    const char *fname = NULL;
    if (json_is_string(tc)) {
        const char *v = json_string_value(tc);
        if (!strcmp(v, "none")) choice = RL_TOOLCALL_CHOICE_NONE;
        else if (!strcmp(v, "required")) choice = RL_TOOLCALL_CHOICE_REQUIRED;
        else if (strcmp(v, "auto")) tc = json_null(); /* refused below */
    } else if (tc) {
        json_t *type = json_object_get(tc, "type");
        json_t *name = json_object_get(json_object_get(tc, "function"), "name");
        if (json_is_object(tc) && json_is_string(type) &&
            !strcmp(json_string_value(type), "function") && json_is_string(name)) {
            choice = RL_TOOLCALL_CHOICE_NAMED;
            fname = json_string_value(name);
            bool known = false;
            json_array_foreach(tools, i, t) {
                if (json_equal(name, json_object_get(json_object_get(t, "function"), "name")))
                    known = true;
            }
            if (!known) {
                api_err(err, 400, "tool_choice", "tool_choice: no function named '%s' in tools",
                        fname);
                return false;
            }
        } else {
            tc = json_null();
        }
    }
    if (json_is_null(tc)) {
        api_err(err, 400, "tool_choice", "tool_choice: expected \"auto\", \"none\", \"required\" "
                "or {\"type\": \"function\", \"function\": {\"name\": ...}}");
        return false;
    }
    /* OpenAI's descriptions are optional; templates that print them need one (an
     * annotation: the grammar is the same) */
    json_t *shown = json_deep_copy(tools);
    json_array_foreach(shown, i, t) {
        json_t *fn = json_object_get(t, "function");
        if (!json_is_string(json_object_get(fn, "description")))
            json_object_set_new(fn, "description", json_string(""));
        const char *key;
        json_t *prop;
        json_object_foreach(json_object_get(json_object_get(fn, "parameters"), "properties"), key,
                            prop) {
            if (json_is_object(prop) && !json_object_get(prop, "description"))
                json_object_set_new(prop, "description", json_string(""));
        }
    }
    g->tools_json = shown ? json_dumps(shown, JSON_COMPACT) : NULL;
    json_decref(shown);
    if (!g->tools_json) {
        api_err(err, 500, NULL, "out of memory");
        return false;
    }
    g->tc_family = s->tc_family;
    if (choice == RL_TOOLCALL_CHOICE_NONE) return true; /* shown to the model, not parsed */
    if (g->grammar) {
        api_err(err, 400, g->grammar_param, "%s: cannot be combined with tools unless "
                "tool_choice is \"none\"", g->grammar_param);
        return false;
    }
    g->tools = true;
    g->ep.special_text = true;
    rl_toolcall_grammar_params gp = rl_toolcall_grammar_default_params();
    gp.choice = choice;
    gp.function_name = fname;
    gp.parallel = ptc ? json_is_true(ptc) : true;
    gp.vocab = s->vocab;
    char *gbnf = NULL, terr[400] = "";
    rl_status st = rl_toolcall_grammar(g->tc_family, g->tools_json, &gp, &gbnf, terr, sizeof terr);
    if (st != RL_OK) {
        if (choice == RL_TOOLCALL_CHOICE_AUTO && st == RL_ERR_UNSUPPORTED) return true;
        api_err(err, st == RL_ERR_NOMEM ? 500 : 400, "tools", "tools: %s%s",
                st == RL_ERR_UNSUPPORTED ? "not supported: " : "", terr[0] ? terr : rl_status_str(st));
        return false;
    }
    char *copy = strdup(gbnf);
    rl_free_string(gbnf);
    return set_grammar(g, choice == RL_TOOLCALL_CHOICE_NAMED ? "tool_choice" : "tools", copy, err);
}

/* A call id as the Mistral templates demand it (9 letters and digits): kept when it is one,
 * else derived from it by a hash, so that a call and its result keep matching. */
static json_t *mistral_id(json_t *id) {
    const char *s = json_string_value(id);
    size_t n = s ? strlen(s) : 0;
    bool ok = n == 9;
    for (size_t i = 0; ok && i < n; i++)
        ok = (s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9');
    if (ok || !s) return json_incref(id);
    static const char an[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    char out[10];
    for (int i = 0; i < 9; i++, h /= 62) out[i] = an[h % 62];
    out[9] = 0;
    return json_string(out);
}

static bool mistral_family(const srv *s) {
    return s->tc_family == RL_TOOLCALL_MISTRAL || s->tc_family == RL_TOOLCALL_MISTRAL_ARGS;
}

/* An assistant message's tool_calls for the template: arguments given as JSON text become
 * the object they hold (the published templates write them with tojson), except for a
 * template that writes them as text (s->args_as_text), which gets text either way. */
static json_t *chat_tool_calls(const srv *s, json_t *calls, const char *param, api_error *err) {
    if (!json_is_array(calls)) {
        api_err(err, 400, param, "%s.tool_calls: expected an array", param);
        return NULL;
    }
    json_t *out = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(calls, i, c) {
        json_t *fn = json_object_get(c, "function"), *id = json_object_get(c, "id");
        json_t *name = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments");
        if (!json_is_object(c) || !json_is_object(fn) || !json_is_string(name) ||
            (id && !json_is_string(id)) ||
            (args && !json_is_string(args) && !json_is_object(args))) {
            api_err(err, 400, param, "%s.tool_calls[%zu]: expected {\"id\", \"type\": "
                    "\"function\", \"function\": {\"name\", \"arguments\"}}", param, i);
            json_decref(out);
            return NULL;
        }
        json_t *a = NULL;
        if (s->args_as_text) {
            char *t = json_is_string(args) ? NULL : json_dumps(args ? args : json_object(), JSON_COMPACT);
            a = t ? json_string(t) : json_copy(args);
            free(t);
        } else if (json_is_string(args)) {
            a = json_loadb(json_string_value(args), json_string_length(args), JSON_DECODE_ANY,
                           NULL);
            if (a && !json_is_object(a)) {
                json_decref(a);
                a = NULL;
            }
            if (!a) a = json_copy(args);
        } else {
            a = args ? json_deep_copy(args) : json_object();
        }
        json_t *f = json_object(), *o = json_object();
        json_object_set(f, "name", name);
        json_object_set_new(f, "arguments", a);
        if (id) json_object_set_new(o, "id", mistral_family(s) ? mistral_id(id) : json_incref(id));
        json_object_set_new(o, "type", json_string("function"));
        json_object_set_new(o, "function", f);
        json_array_append_new(out, o);
    }
    return out;
}

/* The name of the tool call `id` in an earlier assistant message of out, or NULL. */
static json_t *call_name(json_t *out, json_t *id) {
    size_t i, j;
    json_t *m, *c;
    json_array_foreach(out, i, m) {
        json_array_foreach(json_object_get(m, "tool_calls"), j, c) {
            if (json_equal(json_object_get(c, "id"), id))
                return json_object_get(json_object_get(c, "function"), "name");
        }
    }
    return NULL;
}

/* The message list for the template: [{role, content: string}] with content parts joined;
 * an assistant's tool_calls and a tool result's tool_call_id (and the function's name,
 * from the call when the client gives none) pass through, as the templates expect them. */
static json_t *chat_messages(const srv *s, json_t *msgs, api_error *err) {
    if (!msgs) {
        api_err(err, 400, "messages", "messages: required");
        return NULL;
    }
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        api_err(err, 400, "messages", "messages: expected a non-empty array");
        return NULL;
    }
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool", NULL};
    json_t *out = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        char param[48];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!json_is_object(m)) {
            api_err(err, 400, param, "%s: expected an object", param);
            goto fail;
        }
        json_t *role = json_object_get(m, "role");
        if (!json_is_string(role) || !in_list(json_string_value(role), roles)) {
            api_err(err, 400, param, "%s.role: expected one of system, developer, user, "
                    "assistant, tool", param);
            goto fail;
        }
        const char *r = json_string_value(role);
        json_t *content = json_object_get(m, "content");
        sbuf text = {0};
        sbuf_add(&text, "", 0);
        if (json_is_string(content)) {
            sbuf_add(&text, json_string_value(content), json_string_length(content));
        } else if (json_is_array(content)) {
            size_t j;
            json_t *part;
            json_array_foreach(content, j, part) {
                json_t *type = json_object_get(part, "type");
                json_t *t = json_object_get(part, "text");
                if (!json_is_object(part) || !json_is_string(type) ||
                    strcmp(json_string_value(type), "text") || !json_is_string(t)) {
                    sbuf_free(&text);
                    api_err(err, 400, param,
                            "%s.content[%zu]: only parts {\"type\": \"text\", \"text\": ...} are "
                            "supported", param, j);
                    goto fail;
                }
                sbuf_add(&text, json_string_value(t), json_string_length(t));
            }
        } else if (!(json_is_null(content) || !content) || strcmp(r, "assistant")) {
            api_err(err, 400, param, "%s.content: expected a string or an array of text parts",
                    param);
            sbuf_free(&text);
            goto fail;
        }
        json_t *o = json_object();
        json_object_set_new(o, "role", json_string(strcmp(r, "developer") ? r : "system"));
        json_object_set_new(o, "content", json_stringn(text.p, text.len));
        sbuf_free(&text);
        json_t *calls = json_object_get(m, "tool_calls");
        if (calls && !json_is_null(calls) && !strcmp(r, "assistant")) {
            json_t *tc = chat_tool_calls(s, calls, param, err);
            if (!tc) {
                json_decref(o);
                goto fail;
            }
            json_object_set_new(o, "tool_calls", tc);
        }
        json_t *name = json_object_get(m, "name");
        if (json_is_string(name)) json_object_set(o, "name", name);
        if (!strcmp(r, "tool")) {
            json_t *id = json_object_get(m, "tool_call_id");
            if (!json_is_string(id)) {
                api_err(err, 400, param, "%s.tool_call_id: expected a string", param);
                json_decref(o);
                goto fail;
            }
            json_object_set_new(o, "tool_call_id", mistral_family(s) ? mistral_id(id) : json_incref(id));
            json_t *cn = json_is_string(name) ? NULL : call_name(out, json_object_get(o, "tool_call_id"));
            if (cn) json_object_set(o, "name", cn);
        }
        json_array_append_new(out, o);
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

/* For a template that does not render tools (ChatML, for one): the tools and the generic
 * JSON call format go into the system message, and earlier calls become that JSON in the
 * assistant's content, so that the model sees what it may call and how. */
static void tools_to_prompt(json_t *msgs, const char *tools_json) {
    sbuf t = {0};
    sbuf_addf(&t, "You can call these tools (their arguments as JSON Schema):\n%s\n"
              "To call tools, answer with only a JSON object {\"tool_calls\": [{\"name\": "
              "\"TOOL\", \"arguments\": {...}}]}; otherwise answer with only "
              "{\"response\": \"YOUR ANSWER\"}.", tools_json);
    json_t *first = json_array_get(msgs, 0);
    const char *r = json_string_value(json_object_get(first, "role"));
    if (r && !strcmp(r, "system")) {
        sbuf c = {0};
        const char *old = json_string_value(json_object_get(first, "content"));
        sbuf_addf(&c, "%s%s%s", old ? old : "", old && *old ? "\n\n" : "", t.p ? t.p : "");
        json_object_set_new(first, "content", json_string(c.p ? c.p : ""));
        sbuf_free(&c);
    } else {
        json_t *sys = json_object();
        json_object_set_new(sys, "role", json_string("system"));
        json_object_set_new(sys, "content", json_string(t.p ? t.p : ""));
        json_array_insert_new(msgs, 0, sys);
    }
    sbuf_free(&t);
    size_t i, j;
    json_t *m, *c;
    json_array_foreach(msgs, i, m) {
        json_t *calls = json_object_get(m, "tool_calls");
        const char *content = json_string_value(json_object_get(m, "content"));
        if (!json_array_size(calls) || (content && *content)) continue;
        json_t *arr = json_array();
        json_array_foreach(calls, j, c) {
            json_t *f = json_object_get(c, "function"), *o = json_object();
            json_object_set(o, "name", json_object_get(f, "name"));
            json_object_set(o, "arguments", json_object_get(f, "arguments"));
            json_array_append_new(arr, o);
        }
        json_t *wrap = json_object();
        json_object_set_new(wrap, "tool_calls", arr);
        char *txt = json_dumps(wrap, JSON_COMPACT);
        json_decref(wrap);
        if (txt) json_object_set_new(m, "content", json_string(txt));
        free(txt);
    }
}

bool parse_chat(srv *s, json_t *body, gen_req *g, api_error *err) {
    memset(g, 0, sizeof *g);
    g->kind = GEN_CHAT;
    if (!check_keys(body, k_chat_keys, k_chat_refused, err)) return false;
    if (!parse_common(s, body, g, err)) return false;
    int32_t max_tokens = 0;
    if (!parse_max_tokens(body, "max_tokens", &max_tokens, err)) return false;
    if (!parse_max_tokens(body, "max_completion_tokens", &max_tokens, err)) return false;
    g->ep.max_tokens = max_tokens;
    bool lp = false;
    if (!get_bool(body, "logprobs", &lp, err)) return false;
    long long top = 0;
    if (!get_int(body, "top_logprobs", 0, 20, &top, err)) return false;
    if (field(body, "top_logprobs") && !lp) {
        api_err(err, 400, "top_logprobs", "top_logprobs: needs logprobs to be true");
        return false;
    }
    g->logprobs = lp;
    g->top_logprobs = (int)top;
    g->ep.sampling.logprobs = lp;
    g->ep.sampling.top_logprobs = (int32_t)top;
    if (!parse_constraint(body, g, err)) return false;
    if (!parse_tools(s, body, g, err)) return false;

    json_t *msgs = chat_messages(s, json_object_get(body, "messages"), err);
    if (!msgs) return false;
    if (g->tools_json && s->tools_in_prompt) tools_to_prompt(msgs, g->tools_json);
    char *mj = json_dumps(msgs, JSON_COMPACT);
    json_decref(msgs);
    if (!mj) {
        api_err(err, 500, NULL, "out of memory");
        return false;
    }
    rl_chat_template_params tp = rl_chat_template_default_params();
    tp.add_generation_prompt = true;
    tp.bos_token = s->bos_text;
    tp.eos_token = s->eos_text;
    char *out = NULL, terr[512];
    size_t len = 0;
    rl_status st = rl_chat_template_render(s->tmpl, mj, g->tools_json, &tp, &out, &len, terr,
                                           sizeof terr);
    free(mj);
    if (st != RL_OK) {
        api_err(err, st == RL_ERR_NOMEM ? 500 : 400, "messages", "messages: the chat template "
                "failed: %s", terr);
        return false;
    }
    g->prompt_text = malloc(len + 1);
    if (g->prompt_text) memcpy(g->prompt_text, out, len + 1);
    rl_free_string(out);
    if (!g->prompt_text) {
        api_err(err, 500, NULL, "out of memory");
        return false;
    }
    /* The template may write BOS itself; add it only when it did not. */
    bool has_bos = s->bos_text && *s->bos_text &&
                   !strncmp(g->prompt_text, s->bos_text, strlen(s->bos_text));
    g->ep.prompt_text = g->prompt_text;
    g->ep.prompt_len = len;
    g->ep.tokenize_flags = RL_TOKENIZE_PARSE_SPECIAL | (has_bos ? 0 : RL_TOKENIZE_ADD_SPECIAL);
    return true;
}

/* ---- completions -------------------------------------------------------------------- */

static const char *const k_cmpl_keys[] = {
    "model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "min_p",
    "presence_penalty", "frequency_penalty", "repetition_penalty", "seed", "stop", "n",
    "logprobs", "logit_bias", "stream", "stream_options", "user", "priority", "cache_salt",
    "ignore_eos", "echo", "best_of", "response_format", "grammar", "regex", NULL};
static const char *const k_cmpl_refused[] = {"suffix", NULL};

bool parse_completion(srv *s, json_t *body, gen_req *g, api_error *err) {
    memset(g, 0, sizeof *g);
    g->kind = GEN_COMPLETION;
    if (!check_keys(body, k_cmpl_keys, k_cmpl_refused, err)) return false;
    if (!parse_common(s, body, g, err)) return false;
    if (!parse_constraint(body, g, err)) return false;
    int32_t max_tokens = 16; /* OpenAI's default for completions */
    if (!parse_max_tokens(body, "max_tokens", &max_tokens, err)) return false;
    g->ep.max_tokens = max_tokens;
    long long bo = g->n;
    if (!get_int(body, "best_of", 1, 64, &bo, err)) return false;
    if (bo != g->n) {
        api_err(err, 400, "best_of", "best_of: only best_of == n is supported");
        return false;
    }
    long long lp = -1;
    if (!get_int(body, "logprobs", 0, 20, &lp, err)) return false;
    if (lp >= 0) {
        g->logprobs = true;
        g->top_logprobs = (int)lp;
        g->ep.sampling.logprobs = true;
        g->ep.sampling.top_logprobs = (int32_t)lp;
    }
    bool echo = false;
    if (!get_bool(body, "echo", &echo, err)) return false;
    g->echo = echo;
    if (echo && g->logprobs) {
        api_err(err, 400, "echo", "echo: not supported together with logprobs");
        return false;
    }

    json_t *p = json_object_get(body, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1 &&
        (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0))))
        p = json_array_get(p, 0);
    const int32_t nv = rl_model_n_vocab(s->model);
    if (json_is_string(p)) {
        g->prompt_text = strdup(json_string_value(p));
        g->ep.prompt_text = g->prompt_text;
        g->ep.prompt_len = json_string_length(p);
        g->ep.tokenize_flags = RL_TOKENIZE_ADD_SPECIAL | RL_TOKENIZE_PARSE_SPECIAL;
    } else if (json_is_array(p) && json_array_size(p) > 0 &&
               json_is_integer(json_array_get(p, 0))) {
        size_t n = json_array_size(p);
        g->prompt_tokens = malloc(n * sizeof *g->prompt_tokens);
        size_t i;
        json_t *v;
        json_array_foreach(p, i, v) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= nv) {
                api_err(err, 400, "prompt", "prompt[%zu]: not a token id (0..%d)", i, nv - 1);
                return false;
            }
            g->prompt_tokens[i] = (rl_token)json_integer_value(v);
        }
        g->n_prompt_tokens = (int32_t)n;
        g->ep.prompt = g->prompt_tokens;
        g->ep.n_prompt = (int32_t)n;
    } else if (!p || json_is_null(p)) {
        api_err(err, 400, "prompt", "prompt: required");
        return false;
    } else if (json_is_array(p) && json_array_size(p) > 1) {
        api_err(err, 400, "prompt", "prompt: one prompt per request is supported");
        return false;
    } else {
        api_err(err, 400, "prompt", "prompt: expected a string or an array of token ids");
        return false;
    }
    return true;
}

/* ---- output objects ------------------------------------------------------------------ */

/* s[0..n) with invalid UTF-8 replaced by U+FFFD, as a JSON string. */
static json_t *json_text(const char *s, size_t n) {
    json_t *j = json_stringn(s, n);
    if (j) return j;
    sbuf b = {0};
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 0 : (c >= 0xC2 && c <= 0xDF) ? 1 : (c >= 0xE0 && c <= 0xEF) ? 2
                              : (c >= 0xF0 && c <= 0xF4) ? 3 : 99;
        bool ok = k != 99 && i + k < n;
        for (size_t q = 1; ok && q <= k; q++) ok = ((unsigned char)s[i + q] & 0xC0) == 0x80;
        if (ok && k) {
            json_t *t = json_stringn(s + i, k + 1);
            ok = t != NULL;
            json_decref(t);
        }
        if (ok) {
            sbuf_add(&b, s + i, k + 1);
            i += k + 1;
        } else {
            sbuf_add(&b, "\xEF\xBF\xBD", 3);
            i++;
        }
    }
    j = json_stringn(b.p ? b.p : "", b.len);
    sbuf_free(&b);
    return j;
}

json_t *token_json_string(const srv *s, rl_token t, json_t **bytes) {
    char buf[256];
    size_t n = 0;
    char *p = buf;
    rl_status st = rl_token_to_piece(s->vocab, t, 0, buf, sizeof buf, &n);
    if (st == RL_ERR_RANGE) {
        p = malloc(n);
        if (!p || rl_token_to_piece(s->vocab, t, 0, p, n, &n) != RL_OK) n = 0;
    } else if (st != RL_OK) {
        n = 0;
    }
    if (bytes) {
        *bytes = json_array();
        for (size_t i = 0; i < n; i++)
            json_array_append_new(*bytes, json_integer((unsigned char)p[i]));
    }
    json_t *j = json_text(p ? p : "", n);
    if (p != buf) free(p);
    return j;
}

static double clamp_lp(float lp) { return isfinite(lp) ? lp : -9999.0; }

/* A chat logprob entry {token, logprob, bytes, top_logprobs}. */
static json_t *chat_lp_entry(const srv *s, const rl_engine_token *t) {
    json_t *bytes;
    json_t *o = json_object();
    json_object_set_new(o, "token", token_json_string(s, t->token, &bytes));
    json_object_set_new(o, "logprob", json_real(clamp_lp(t->logprob)));
    json_object_set_new(o, "bytes", bytes);
    json_t *top = json_array();
    for (int32_t i = 0; i < t->n_top; i++) {
        json_t *tb;
        json_t *e = json_object();
        json_object_set_new(e, "token", token_json_string(s, t->top[i].token, &tb));
        json_object_set_new(e, "logprob", json_real(clamp_lp(t->top[i].logprob)));
        json_object_set_new(e, "bytes", tb);
        json_array_append_new(top, e);
    }
    json_object_set_new(o, "top_logprobs", top);
    return o;
}

static const char *finish_str(rl_engine_finish f) {
    return f == RL_ENGINE_FINISH_LENGTH ? "length" : "stop";
}

/* How choice k's text is parsed for tool calls: names must be the request's tools; ids
 * derived from the response's seed and k. */
static rl_toolcall_params tool_params(const gen_out *o, int k) {
    rl_toolcall_params tp = rl_toolcall_default_params();
    tp.flags = RL_TOOLCALL_KNOWN_NAMES;
    tp.id_seed = o->id_seed + (uint64_t)k * 0x9E3779B97F4A7C15ull;
    tp.tools_json = o->tools_json;
    return tp;
}

bool gen_out_init(gen_out *o, const gen_req *g, const srv *s) {
    memset(o, 0, sizeof *o);
    o->kind = g->kind;
    o->n = g->n;
    o->logprobs = g->logprobs;
    o->top_logprobs = g->top_logprobs;
    o->stream = g->stream;
    o->include_usage = g->include_usage;
    o->created = (long)time(NULL);
    static const char hex[] = "0123456789abcdef";
    char rnd[25];
    for (int i = 0; i < 24; i++) rnd[i] = hex[random() & 15];
    rnd[24] = 0;
    snprintf(o->id, sizeof o->id, "%s%s", g->kind == GEN_CHAT ? "chatcmpl-" : "cmpl-", rnd);
    o->text = calloc((size_t)o->n, sizeof *o->text);
    o->lp = calloc((size_t)o->n, sizeof *o->lp);
    o->lp_tokens = calloc((size_t)o->n, sizeof *o->lp_tokens);
    o->lp_token_lp = calloc((size_t)o->n, sizeof *o->lp_token_lp);
    o->lp_top = calloc((size_t)o->n, sizeof *o->lp_top);
    o->lp_offset = calloc((size_t)o->n, sizeof *o->lp_offset);
    o->offset = calloc((size_t)o->n, sizeof *o->offset);
    o->finish = calloc((size_t)o->n, sizeof *o->finish);
    o->started = calloc((size_t)o->n, sizeof *o->started);
    if (!o->text || !o->lp || !o->lp_tokens || !o->lp_token_lp || !o->lp_top || !o->lp_offset ||
        !o->offset || !o->finish || !o->started)
        return false;
    if (g->tools) {
        o->tools = true;
        o->tc_family = g->tc_family;
        o->tools_json = strdup(g->tools_json);
        o->id_seed = ((uint64_t)random() << 32) ^ (uint64_t)random();
        o->called = calloc((size_t)o->n, sizeof *o->called);
        o->tcs = calloc((size_t)o->n, sizeof *o->tcs);
        if (!o->tools_json || !o->called || !o->tcs) return false;
        for (int k = 0; o->stream && k < o->n; k++) {
            rl_toolcall_params tp = tool_params(o, k);
            char terr[256];
            if (rl_toolcall_stream_create(o->tc_family, &tp, &o->tcs[k], terr, sizeof terr) !=
                RL_OK)
                return false;
        }
    }
    for (int k = 0; k < o->n; k++) {
        o->lp[k] = json_array();
        o->lp_tokens[k] = json_array();
        o->lp_token_lp[k] = json_array();
        o->lp_top[k] = json_array();
        o->lp_offset[k] = json_array();
    }
    if (g->echo) {
        if (g->prompt_text) {
            o->echo = strdup(g->prompt_text);
            o->echo_len = strlen(g->prompt_text);
        } else {
            size_t n = 0;
            rl_detokenize(s->vocab, g->prompt_tokens, (size_t)g->n_prompt_tokens, 0, NULL, 0, &n);
            o->echo = malloc(n + 1);
            if (o->echo &&
                rl_detokenize(s->vocab, g->prompt_tokens, (size_t)g->n_prompt_tokens, 0, o->echo,
                              n, &n) == RL_OK)
                o->echo_len = n;
        }
    }
    return true;
}

void gen_out_free(gen_out *o) {
    for (int k = 0; k < o->n; k++) {
        if (o->text) sbuf_free(&o->text[k]);
        if (o->lp) json_decref(o->lp[k]);
        if (o->lp_tokens) json_decref(o->lp_tokens[k]);
        if (o->lp_token_lp) json_decref(o->lp_token_lp[k]);
        if (o->lp_top) json_decref(o->lp_top[k]);
        if (o->lp_offset) json_decref(o->lp_offset[k]);
    }
    free(o->text);
    free(o->lp);
    free(o->lp_tokens);
    free(o->lp_token_lp);
    free(o->lp_top);
    free(o->lp_offset);
    free(o->offset);
    free(o->finish);
    free(o->started);
    free(o->echo);
    for (int k = 0; o->tcs && k < o->n; k++) rl_toolcall_stream_free(o->tcs[k]);
    free(o->tcs);
    free(o->called);
    free(o->tools_json);
    memset(o, 0, sizeof *o);
}

/* Completions logprobs of the event's tokens appended to choice k's arrays. */
static void cmpl_lp_add(gen_out *o, const srv *s, int k, const rl_engine_event *ev) {
    for (int32_t i = 0; i < ev->n_tokens; i++) {
        const rl_engine_token *t = &ev->tokens[i];
        json_t *bytes;
        json_t *str = token_json_string(s, t->token, &bytes);
        json_array_append_new(o->lp_offset[k], json_integer((json_int_t)o->offset[k]));
        o->offset[k] += json_array_size(bytes);
        json_decref(bytes);
        json_array_append_new(o->lp_tokens[k], str);
        json_array_append_new(o->lp_token_lp[k], json_real(clamp_lp(t->logprob)));
        json_t *top = json_object();
        for (int32_t j = 0; j < t->n_top; j++) {
            json_t *ts = token_json_string(s, t->top[j].token, NULL);
            json_object_set_new(top, json_string_value(ts), json_real(clamp_lp(t->top[j].logprob)));
            json_decref(ts);
        }
        json_array_append_new(o->lp_top[k], top);
    }
}

static json_t *cmpl_lp_object(gen_out *o, int k) {
    json_t *lp = json_object();
    json_object_set(lp, "tokens", o->lp_tokens[k]);
    json_object_set(lp, "token_logprobs", o->lp_token_lp[k]);
    json_object_set(lp, "top_logprobs", o->lp_top[k]);
    json_object_set(lp, "text_offset", o->lp_offset[k]);
    return lp;
}

static void cmpl_lp_reset(gen_out *o, int k) {
    json_array_clear(o->lp_tokens[k]);
    json_array_clear(o->lp_token_lp[k]);
    json_array_clear(o->lp_top[k]);
    json_array_clear(o->lp_offset[k]);
}

static json_t *chunk_base(gen_out *o, const srv *s) {
    json_t *c = json_object();
    json_object_set_new(c, "id", json_string(o->id));
    json_object_set_new(c, "object",
                        json_string(o->kind == GEN_CHAT ? "chat.completion.chunk" : "text_completion"));
    json_object_set_new(c, "created", json_integer(o->created));
    json_object_set_new(c, "model", json_string(s->model_id));
    json_object_set_new(c, "system_fingerprint", json_string(s->fingerprint));
    if (o->include_usage) json_object_set_new(c, "usage", json_null());
    return c;
}

static bool emit(sbuf *sse, json_t *chunk) {
    char *t = json_dumps(chunk, JSON_COMPACT);
    json_decref(chunk);
    if (!t) return false;
    bool ok = sbuf_add(sse, "data: ", 6) && sbuf_add(sse, t, strlen(t)) && sbuf_add(sse, "\n\n", 2);
    free(t);
    return ok;
}

/* A chunk with one choice. */
static bool emit_choice(gen_out *o, const srv *s, sbuf *sse, json_t *choice) {
    json_t *c = chunk_base(o, s);
    json_t *arr = json_array();
    json_array_append_new(arr, choice);
    json_object_set_new(c, "choices", arr);
    return emit(sse, c);
}

/* A chunk of choice k whose delta is made of tool-call parser events tev[0..n) (merged
 * by rl_toolcall_delta_json), with logprobs of ev's tokens when lp; none when both are
 * empty. */
static bool emit_tool_chunk(gen_out *o, const srv *s, const rl_engine_event *ev,
                            const rl_toolcall_event *tev, size_t n, bool lp, sbuf *sse) {
    json_t *d = NULL;
    if (n) {
        char *dj = NULL;
        if (rl_toolcall_delta_json(tev, n, &dj) != RL_OK || !dj) return false;
        d = json_loads(dj, 0, NULL);
        rl_free_string(dj);
        if (!d) return false;
    }
    if (!d && !lp) return true;
    json_t *ch = json_object();
    json_object_set_new(ch, "index", json_integer(ev->seq_index));
    json_object_set_new(ch, "delta", d ? d : json_object());
    if (lp) {
        json_t *l = json_object(), *arr = json_array();
        for (int32_t i = 0; i < ev->n_tokens; i++)
            json_array_append_new(arr, chat_lp_entry(s, &ev->tokens[i]));
        json_object_set_new(l, "content", arr);
        json_object_set_new(l, "refusal", json_null());
        json_object_set_new(ch, "logprobs", l);
    } else {
        json_object_set_new(ch, "logprobs", json_null());
    }
    json_object_set_new(ch, "finish_reason", json_null());
    return emit_choice(o, s, sse, ch);
}

/* The chunks of parser events: a call's start (index, id, type, name) in a chunk of its
 * own, the text and argument fragments around it merged; the event's logprobs go with
 * the first chunk (or alone when there are no events). */
static bool emit_tool_events(gen_out *o, const srv *s, const rl_engine_event *ev,
                             const rl_toolcall_event *tev, size_t n, sbuf *sse) {
    bool lp = o->logprobs && ev->n_tokens, ok = true;
    size_t i0 = 0;
    for (size_t i = 0; i <= n; i++) {
        const bool call = i < n && tev[i].type == RL_TOOLCALL_EV_CALL;
        if (i < n && !call) continue;
        if (i > i0 || (i == n && lp)) { /* the run before the call (or the rest) */
            ok = ok && emit_tool_chunk(o, s, ev, tev + i0, i - i0, lp, sse);
            lp = false;
        }
        if (call) {
            o->called[ev->seq_index] = true;
            ok = ok && emit_tool_chunk(o, s, ev, tev + i, 1, lp, sse);
            lp = false;
        }
        i0 = i + 1;
    }
    return ok;
}

/* Streaming with tools: the text goes through choice k's tool-call parser, and only what
 * it has decided is sent: content, then for each call its index, id and name, then its
 * arguments in fragments (OpenAI's tool_calls deltas). The family's markers never reach
 * content; a block that turns out malformed comes out as content. */
static bool tools_delta(gen_out *o, const srv *s, const rl_engine_event *ev, sbuf *sse) {
    const int k = ev->seq_index;
    const rl_toolcall_event *tev = NULL;
    size_t n = 0;
    bool ok = true;
    if (rl_toolcall_stream_feed(o->tcs[k], ev->text, ev->text_len, &tev, &n) != RL_OK)
        return false; /* the engine's text is valid UTF-8: out of memory */
    ok = emit_tool_events(o, s, ev, tev, n, sse);
    if (!ev->finish) return ok;
    rl_engine_event end = *ev;
    end.n_tokens = 0;
    if (rl_toolcall_stream_finish(o->tcs[k], &tev, &n, NULL) != RL_OK) return false;
    ok = ok && emit_tool_events(o, s, &end, tev, n, sse);
    json_t *ch = json_object();
    json_object_set_new(ch, "index", json_integer(k));
    json_object_set_new(ch, "delta", json_object());
    json_object_set_new(ch, "logprobs", json_null());
    json_object_set_new(ch, "finish_reason",
                        json_string(o->called[k] && ev->finish == RL_ENGINE_FINISH_STOP
                                        ? "tool_calls"
                                        : finish_str(ev->finish)));
    return ok && emit_choice(o, s, sse, ch);
}

bool gen_out_delta(gen_out *o, const srv *s, const rl_engine_event *ev, sbuf *sse) {
    const int k = ev->seq_index;
    if (k < 0 || k >= o->n) return false;
    if (!o->stream) {
        if (o->kind == GEN_COMPLETION && !o->started[k]) {
            o->started[k] = true;
            if (o->echo_len) sbuf_add(&o->text[k], o->echo, o->echo_len);
            o->offset[k] = o->echo_len;
        }
        if (!sbuf_add(&o->text[k], ev->text, ev->text_len)) return false;
        if (o->logprobs) {
            if (o->kind == GEN_CHAT)
                for (int32_t i = 0; i < ev->n_tokens; i++)
                    json_array_append_new(o->lp[k], chat_lp_entry(s, &ev->tokens[i]));
            else
                cmpl_lp_add(o, s, k, ev);
        }
        if (ev->finish) o->finish[k] = finish_str(ev->finish);
        return true;
    }
    bool ok = true;
    if (o->kind == GEN_CHAT) {
        if (!o->started[k]) {
            o->started[k] = true;
            json_t *ch = json_object();
            json_object_set_new(ch, "index", json_integer(k));
            json_t *d = json_object();
            json_object_set_new(d, "role", json_string("assistant"));
            json_object_set_new(d, "content", json_string(""));
            json_object_set_new(ch, "delta", d);
            json_object_set_new(ch, "logprobs", json_null());
            json_object_set_new(ch, "finish_reason", json_null());
            ok = ok && emit_choice(o, s, sse, ch);
        }
        /* A chunk per step that produced tokens, even when their text is held back (part
         * of a UTF-8 character, a possible stop string) or empty (a control token): the
         * client sees each token when it is produced, as from OpenAI and llama.cpp. */
        if (o->tools) return ok && tools_delta(o, s, ev, sse);
        if (ev->text_len || ev->n_tokens) {
            json_t *ch = json_object();
            json_object_set_new(ch, "index", json_integer(k));
            json_t *d = json_object();
            json_object_set_new(d, "content", json_text(ev->text, ev->text_len));
            json_object_set_new(ch, "delta", d);
            if (o->logprobs) {
                json_t *lp = json_object(), *arr = json_array();
                for (int32_t i = 0; i < ev->n_tokens; i++)
                    json_array_append_new(arr, chat_lp_entry(s, &ev->tokens[i]));
                json_object_set_new(lp, "content", arr);
                json_object_set_new(lp, "refusal", json_null());
                json_object_set_new(ch, "logprobs", lp);
            } else {
                json_object_set_new(ch, "logprobs", json_null());
            }
            json_object_set_new(ch, "finish_reason", json_null());
            ok = ok && emit_choice(o, s, sse, ch);
        }
        if (ev->finish) {
            json_t *ch = json_object();
            json_object_set_new(ch, "index", json_integer(k));
            json_object_set_new(ch, "delta", json_object());
            json_object_set_new(ch, "logprobs", json_null());
            json_object_set_new(ch, "finish_reason", json_string(finish_str(ev->finish)));
            ok = ok && emit_choice(o, s, sse, ch);
        }
        return ok;
    }
    /* completions: same object as the non-streamed one, text deltas */
    sbuf text = {0};
    sbuf_add(&text, "", 0);
    if (!o->started[k]) {
        o->started[k] = true;
        if (o->echo_len) sbuf_add(&text, o->echo, o->echo_len);
        o->offset[k] = o->echo_len;
    }
    sbuf_add(&text, ev->text, ev->text_len);
    if (text.len || ev->n_tokens) { /* a chunk per step with tokens, as for chat */
        json_t *ch = json_object();
        json_object_set_new(ch, "text", json_text(text.p, text.len));
        json_object_set_new(ch, "index", json_integer(k));
        if (o->logprobs) {
            cmpl_lp_add(o, s, k, ev);
            json_object_set_new(ch, "logprobs", cmpl_lp_object(o, k));
            cmpl_lp_reset(o, k);
        } else {
            json_object_set_new(ch, "logprobs", json_null());
        }
        json_object_set_new(ch, "finish_reason", json_null());
        ok = ok && emit_choice(o, s, sse, ch);
    }
    sbuf_free(&text);
    if (ev->finish) {
        json_t *ch = json_object();
        json_object_set_new(ch, "text", json_string(""));
        json_object_set_new(ch, "index", json_integer(k));
        json_object_set_new(ch, "logprobs", json_null());
        json_object_set_new(ch, "finish_reason", json_string(finish_str(ev->finish)));
        ok = ok && emit_choice(o, s, sse, ch);
    }
    return ok;
}

static json_t *usage_json(const rl_engine_event *done) {
    json_t *u = json_object();
    json_object_set_new(u, "prompt_tokens", json_integer(done->n_prompt_tokens));
    json_object_set_new(u, "completion_tokens", json_integer(done->n_completion_tokens));
    json_object_set_new(u, "total_tokens",
                        json_integer(done->n_prompt_tokens + done->n_completion_tokens));
    json_t *d = json_object();
    json_object_set_new(d, "cached_tokens", json_integer(done->n_cached_tokens));
    json_object_set_new(u, "prompt_tokens_details", d);
    return u;
}

/* Choice k's whole text parsed into an assistant message (content, tool_calls); NULL when
 * the parser fails (the text is then content). */
static json_t *tools_message(gen_out *o, int k) {
    rl_toolcall_params tp = tool_params(o, k);
    char *msg = NULL, terr[256];
    if (rl_toolcall_parse(o->tc_family, o->text[k].p ? o->text[k].p : "", o->text[k].len, &tp,
                          &msg, terr, sizeof terr) != RL_OK)
        return NULL;
    json_t *m = json_loads(msg, 0, NULL);
    rl_free_string(msg);
    return m;
}

json_t *gen_out_response(gen_out *o, const srv *s, const rl_engine_event *done) {
    json_t *r = json_object();
    json_object_set_new(r, "id", json_string(o->id));
    json_object_set_new(r, "object",
                        json_string(o->kind == GEN_CHAT ? "chat.completion" : "text_completion"));
    json_object_set_new(r, "created", json_integer(o->created));
    json_object_set_new(r, "model", json_string(s->model_id));
    json_object_set_new(r, "system_fingerprint", json_string(s->fingerprint));
    json_t *choices = json_array();
    for (int k = 0; k < o->n; k++) {
        json_t *ch = json_object();
        json_object_set_new(ch, "index", json_integer(k));
        if (o->kind == GEN_CHAT) {
            json_t *m = o->tools ? tools_message(o, k) : NULL;
            if (!m) {
                m = json_object();
                json_object_set_new(m, "role", json_string("assistant"));
                json_object_set_new(m, "content", json_text(o->text[k].p ? o->text[k].p : "",
                                                            o->text[k].len));
            }
            json_object_set_new(m, "refusal", json_null());
            json_t *calls = json_object_get(m, "tool_calls");
            if (json_array_size(calls) > 0 && (!o->finish[k] || !strcmp(o->finish[k], "stop")))
                o->finish[k] = "tool_calls";
            json_object_set_new(ch, "message", m);
            if (o->logprobs) {
                json_t *lp = json_object();
                json_object_set(lp, "content", o->lp[k]);
                json_object_set_new(lp, "refusal", json_null());
                json_object_set_new(ch, "logprobs", lp);
            } else {
                json_object_set_new(ch, "logprobs", json_null());
            }
        } else {
            if (!o->started[k] && o->echo_len) sbuf_add(&o->text[k], o->echo, o->echo_len);
            json_object_set_new(ch, "text", json_text(o->text[k].p ? o->text[k].p : "",
                                                      o->text[k].len));
            json_object_set_new(ch, "logprobs", o->logprobs ? cmpl_lp_object(o, k) : json_null());
        }
        json_object_set_new(ch, "finish_reason",
                            json_string(o->finish[k] ? o->finish[k] : "stop"));
        json_array_append_new(choices, ch);
    }
    json_object_set_new(r, "choices", choices);
    json_object_set_new(r, "usage", usage_json(done));
    return r;
}

bool gen_out_stream_end(gen_out *o, const srv *s, const rl_engine_event *done, sbuf *sse) {
    bool ok = true;
    if (o->include_usage) {
        json_t *c = chunk_base(o, s);
        json_object_set_new(c, "choices", json_array());
        json_object_set_new(c, "usage", usage_json(done));
        ok = emit(sse, c);
    }
    return ok && sbuf_add(sse, "data: [DONE]\n\n", 14);
}
