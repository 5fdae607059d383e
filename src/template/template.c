/*
 * template.c - public API of the chat-template interpreter: compile once, render many
 * times (concurrently: the compiled program is never written after compile) with the
 * variables transformers' apply_chat_template passes: messages, tools, documents (None),
 * add_generation_prompt, bos_token / eos_token (only when given) and extra kwargs.
 */
#include "template/tpl.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

struct rl_chat_template {
    tpl_program prog;
};

int rl__tpl_add_builtins(tpl_ctx *c, tpl_scope *top);
int rl__tpl_run(tpl_ctx *c, tpl_scope *top);

#define DEFAULT_MAX_STEPS 200000000ull
#define DEFAULT_MAX_MEMORY ((size_t)256 << 20)
#define DEFAULT_MAX_OUTPUT ((size_t)64 << 20)
#define DEFAULT_MAX_DEPTH 100

RL_API rl_chat_template_params rl_chat_template_default_params(void) {
    rl_chat_template_params p;
    memset(&p, 0, sizeof(p));
    p.add_generation_prompt = true;
    p.now = -1;
    return p;
}

RL_API rl_status rl_chat_template_compile(const char *src, size_t len, rl_chat_template **out,
                                          char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!out) return RL_ERR_INVALID_ARG;
    *out = NULL;
    if (!src && len) {
        rl__fmt(err, err_size, "src is NULL");
        return RL_ERR_INVALID_ARG;
    }
    rl_chat_template *t = rl__calloc(1, sizeof(*t));
    if (!t) {
        rl__fmt(err, err_size, "out of memory");
        return RL_ERR_NOMEM;
    }
    rl_status st = rl__tpl_compile(&t->prog, src ? src : "", len, err, err_size);
    if (st != RL_OK) {
        rl_chat_template_free(t);
        if (st == RL_ERR_NOMEM) rl__fmt(err, err_size, "out of memory");
        return st;
    }
    *out = t;
    return RL_OK;
}

RL_API void rl_chat_template_free(rl_chat_template *t) {
    if (!t) return;
    rl__tpl_arena_free(&t->prog.arena);
    rl__free(t->prog.names);
    rl__free(t);
}

RL_API void rl_free_string(char *s) { rl__free(s); }

/* Parse one JSON argument; NULL text gives NULL (the caller decides what that means). */
static rl_status parse_json(const char *what, const char *text, json_t **out, char *err, size_t err_size) {
    *out = NULL;
    if (!text) return RL_OK;
    json_error_t je;
    json_t *j = json_loadb(text, strlen(text), JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!j) {
        rl__fmt(err, err_size, "%s: invalid JSON at line %d, column %d: %s", what, je.line, je.column, je.text);
        return RL_ERR_INVALID_ARG;
    }
    *out = j;
    return RL_OK;
}

static int set_var(tpl_ctx *c, const char *name, tpl_val v) {
    const tpl_str *nm = rl__tpl_lookup_name(c->prog, name, strlen(name));
    if (!nm) { /* the template never names it */
        rl__tpl_decref(c, v);
        return 0;
    }
    return rl__tpl_scope_set(c, c->top, nm, v);
}

static int set_json_var(tpl_ctx *c, const char *name, const json_t *j) {
    if (!rl__tpl_lookup_name(c->prog, name, strlen(name))) return 0;
    tpl_val v;
    if (rl__tpl_from_json(c, j, &v)) return -1;
    return set_var(c, name, v);
}

static int set_str_var(tpl_ctx *c, const char *name, const char *s) {
    if (!rl__tpl_lookup_name(c->prog, name, strlen(name))) return 0;
    tpl_str *str = rl__tpl_str_new(c, s, strlen(s));
    if (!str) return -1;
    return set_var(c, name, tv_obj(TV_STR, 0, str));
}

RL_API rl_status rl_chat_template_render(const rl_chat_template *t, const char *messages_json,
                                         const char *tools_json, const rl_chat_template_params *p,
                                         char **out, size_t *out_len, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (out) *out = NULL;
    if (out_len) *out_len = 0;
    if (!t || !messages_json || !out) {
        rl__fmt(err, err_size, "%s is NULL", !t ? "template" : !messages_json ? "messages_json" : "out");
        return RL_ERR_INVALID_ARG;
    }
    rl_chat_template_params dp = rl_chat_template_default_params();
    if (!p) p = &dp;
    json_t *jm = NULL, *jt = NULL, *jx = NULL;
    rl_status st = parse_json("messages", messages_json, &jm, err, err_size);
    if (st == RL_OK) st = parse_json("tools", tools_json, &jt, err, err_size);
    if (st == RL_OK) st = parse_json("extra variables", p->extra_json, &jx, err, err_size);
    if (st == RL_OK && !json_is_array(jm)) {
        rl__fmt(err, err_size, "messages: expected a JSON array");
        st = RL_ERR_INVALID_ARG;
    }
    if (st == RL_OK && jx && !json_is_object(jx)) {
        rl__fmt(err, err_size, "extra variables: expected a JSON object");
        st = RL_ERR_INVALID_ARG;
    }
    if (st != RL_OK) {
        json_decref(jm);
        json_decref(jt);
        json_decref(jx);
        return st;
    }

    tpl_ctx c;
    memset(&c, 0, sizeof(c));
    c.prog = &t->prog;
    c.status = RL_OK;
    c.err = err;
    c.err_size = err_size;
    c.live.next = c.live.prev = &c.live;
    c.lim.max_steps = p->max_steps ? p->max_steps : DEFAULT_MAX_STEPS;
    c.lim.max_memory = p->max_memory ? p->max_memory : DEFAULT_MAX_MEMORY;
    c.lim.max_output = p->max_output ? p->max_output : DEFAULT_MAX_OUTPUT;
    c.lim.max_depth = p->max_depth > 0 ? p->max_depth : DEFAULT_MAX_DEPTH;
    if (p->now >= 0) {
        time_t tt = (time_t)p->now;
        gmtime_r(&tt, &c.now);
    } else {
        time_t tt = time(NULL);
        localtime_r(&tt, &c.now);
    }
    c.n_loop = rl__tpl_lookup_name(c.prog, "loop", 4);
    c.n_caller = rl__tpl_lookup_name(c.prog, "caller", 6);
    c.n_varargs = rl__tpl_lookup_name(c.prog, "varargs", 7);
    c.n_kwargs = rl__tpl_lookup_name(c.prog, "kwargs", 6);

    tpl_sb sb;
    rl__tpl_sb_init(&sb);
    c.out = &sb;
    int r = (c.top = rl__tpl_scope_new(&c, NULL)) ? 0 : -1;
    if (!r) r = rl__tpl_add_builtins(&c, c.top);
    if (!r) r = set_json_var(&c, "messages", jm);
    if (!r) r = jt ? set_json_var(&c, "tools", jt) : set_var(&c, "tools", tv_none());
    if (!r) r = set_var(&c, "documents", tv_none());
    if (!r) r = set_var(&c, "add_generation_prompt", tv_bool(p->add_generation_prompt));
    if (!r && p->bos_token) r = set_str_var(&c, "bos_token", p->bos_token);
    if (!r && p->eos_token) r = set_str_var(&c, "eos_token", p->eos_token);
    if (!r && jx) {
        const char *key;
        json_t *val;
        json_object_foreach(jx, key, val) {
            if ((r = set_json_var(&c, key, val))) break;
        }
    }
    json_decref(jm);
    json_decref(jt);
    json_decref(jx);
    if (!r) r = rl__tpl_run(&c, c.top);
    if (!r) {
        size_t n = tpl_sb_len(&sb);
        char *o = rl__malloc(n + 1);
        if (!o) {
            rl__fmt(err, err_size, "out of memory");
            c.status = RL_ERR_NOMEM;
        } else {
            if (n) memcpy(o, sb.s->s, n);
            o[n] = 0;
            *out = o;
            if (out_len) *out_len = n;
        }
    } else if (c.status == RL_OK) {
        c.status = RL_ERR_INTERNAL;
        rl__fmt(err, err_size, "render failed without a message");
    }
    rl__tpl_sb_drop(&c, &sb);
    rl__tpl_free_all(&c);
    return c.status;
}
