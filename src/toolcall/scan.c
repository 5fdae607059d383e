/*
 * scan.c - the scanner: walks the generated text, hands each place where one of the
 * family's blocks may start to its parser (blocks.c), and keeps everything else as
 * content or reasoning. Also the one-shot entry point rl_toolcall_parse and the message
 * it returns.
 *
 * Whitespace next to a block is dropped: the scanner holds trailing whitespace back
 * until it knows whether text or a block follows, and skips leading whitespace after a
 * block. Text that may still become a block (a marker's prefix at the end, or a block
 * whose parser wants more) is not decided until more text or the end comes.
 */
#include "toolcall/toolcall.h"

/* ---- UTF-8 -------------------------------------------------------------------------------- */

/* Length of the sequence at p[0..n): > 0 valid, 0 invalid, -1 incomplete (n too short). */
static int utf8_len(const unsigned char *p, size_t n) {
    unsigned char c = p[0];
    if (c < 0x80) return 1;
    int len;
    uint32_t min;
    if (c >= 0xC2 && c <= 0xDF)
        len = 2, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4, min = 0x10000;
    else
        return 0;
    uint32_t cp = c & (0x3F >> (len - 1));
    for (int k = 1; k < len; k++) {
        if ((size_t)k >= n) return -1;
        if ((p[k] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (p[k] & 0x3F);
        /* reject early what can only become an overlong form, a surrogate or > U+10FFFF */
        if (k == 1) {
            if (len == 3 && c == 0xE0 && p[1] < 0xA0) return 0;
            if (len == 3 && c == 0xED && p[1] >= 0xA0) return 0;
            if (len == 4 && c == 0xF0 && p[1] < 0x90) return 0;
            if (len == 4 && c == 0xF4 && p[1] >= 0x90) return 0;
        }
    }
    if (cp < min) return 0;
    return len;
}

/* ---- setup -------------------------------------------------------------------------------- */

rl_status rl__tc_scan_init(tc_scan *s, rl_toolcall_family f, const rl_toolcall_params *p, char *err,
                           size_t err_size) {
    memset(s, 0, sizeof *s);
    s->fam = rl__tc_family(f);
    if (!s->fam) {
        rl__fmt(err, err_size, "family: unknown value %d", (int)f);
        return RL_ERR_INVALID_ARG;
    }
    rl_toolcall_params d = rl_toolcall_default_params();
    if (!p) p = &d;
    s->flags = p->flags;
    s->id_seed = p->id_seed;
    if (s->flags & (RL_TOOLCALL_PARSE_REASONING | RL_TOOLCALL_REASONING_OPEN)) {
        s->extra[0] = rl__tc_think_specs[0];
        s->extra[1] = rl__tc_think_specs[1];
        s->n_extra = 2;
    }
    if (s->flags & RL_TOOLCALL_REASONING_OPEN) s->mode = TC_MODE_REASONING;
    s->at_start = true;
    if (p->tools_json) {
        rl_status st = rl__tc_tools_load(p->tools_json, &s->tools, err, err_size);
        if (st != RL_OK) return st;
    }
    return RL_OK;
}

static void free_call(tc_call *c) {
    rl__free(c->id);
    rl__free(c->name);
    rl__free(c->args);
}

static void clear_tmp(tc_scan *s) {
    for (size_t i = 0; i < s->n_tmp; i++) free_call(&s->tmp[i]);
    s->n_tmp = 0;
}

void rl__tc_scan_free(tc_scan *s) {
    clear_tmp(s);
    rl__free(s->tmp);
    for (size_t i = 0; i < s->n_calls; i++) free_call(&s->calls[i]);
    rl__free(s->calls);
    rl__tc_tools_free(s->tools);
    rl__tc_buf_free(&s->text);
    rl__tc_buf_free(&s->pend_ws);
    rl__tc_buf_free(&s->content);
    rl__tc_buf_free(&s->reasoning);
    rl__tc_buf_free(&s->scratch);
    rl__tc_buf_free(&s->ev_text);
    rl__free(s->ev);
    memset(s, 0, sizeof *s);
}

rl_status rl__tc_scan_feed(tc_scan *s, const char *text, size_t len, char *err, size_t err_size) {
    if (len && !rl__tc_put(&s->text, text, len)) return RL_ERR_NOMEM;
    const unsigned char *p = (const unsigned char *)s->text.p;
    while (s->ready < s->text.len) {
        int n = utf8_len(p + s->ready, s->text.len - s->ready);
        if (n < 0) break;
        if (n == 0) {
            rl__fmt(err, err_size, "text: invalid UTF-8 at byte %zu", s->ready);
            return RL_ERR_INVALID_ARG;
        }
        s->ready += (size_t)n;
    }
    return RL_OK;
}

/* ---- events and results ------------------------------------------------------------------- */

static void event(tc_scan *s, int type, uint32_t index, const char *p, size_t n, const char *id) {
    if (!s->record_events || s->oom) return;
    if (s->n_ev == s->cap_ev) {
        size_t cap = s->cap_ev ? s->cap_ev * 2 : 16;
        tc_event *ev = rl__realloc(s->ev, cap * sizeof *ev);
        if (!ev) {
            s->oom = true;
            return;
        }
        s->ev = ev;
        s->cap_ev = cap;
    }
    /* contiguous content events are merged */
    tc_event *last = s->n_ev ? &s->ev[s->n_ev - 1] : NULL;
    if (last && last->type == type && type != RL_TOOLCALL_EV_CALL && last->index == index &&
        last->b == s->ev_text.len) {
        rl__tc_put(&s->ev_text, p, n);
        last->b = s->ev_text.len;
        if (s->ev_text.oom) s->oom = true;
        return;
    }
    tc_event *e = &s->ev[s->n_ev++];
    e->type = type;
    e->index = index;
    e->ia = e->ib = 0;
    if (id) {
        e->ia = s->ev_text.len;
        rl__tc_put(&s->ev_text, id, strlen(id) + 1); /* with its NUL */
        e->ib = s->ev_text.len;
    }
    e->a = s->ev_text.len;
    rl__tc_put(&s->ev_text, p, n);
    e->b = s->ev_text.len;
    if (s->ev_text.oom) s->oom = true;
}

static void out_text(tc_scan *s, int mode, const char *p, size_t n) {
    if (!n) return;
    if (mode == TC_MODE_REASONING) {
        rl__tc_put(&s->reasoning, p, n);
        s->has_reasoning = true;
        if (s->reasoning.oom) s->oom = true;
        event(s, RL_TOOLCALL_EV_REASONING, 0, p, n, NULL);
    } else {
        rl__tc_put(&s->content, p, n);
        s->has_content = true;
        if (s->content.oom) s->oom = true;
        event(s, RL_TOOLCALL_EV_CONTENT, 0, p, n, NULL);
    }
}

/* Text text[a..b) in the current mode: leading whitespace after a block dropped, trailing
 * whitespace held. */
static void emit(tc_scan *s, size_t a, size_t b) {
    const char *t = s->text.p;
    if (a >= b) return;
    if (s->after_block) {
        while (a < b && rl__tc_is_ws(t[a])) a++;
        if (a == b) return;
        s->after_block = false;
    }
    size_t e = b;
    while (e > a && rl__tc_is_ws(t[e - 1])) e--;
    if (e > a) {
        out_text(s, s->pend_mode, s->pend_ws.p, s->pend_ws.len);
        s->pend_ws.len = 0;
        out_text(s, s->mode, t + a, e - a);
    }
    if (e < b) {
        s->pend_mode = s->mode;
        if (!rl__tc_put(&s->pend_ws, t + e, b - e)) s->oom = true;
    }
}

static const char ALNUM[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

static uint64_t mix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* The id of call `index`: a function of the seed and the index only, so that the one-shot
 * and the streaming parser agree. */
static char *make_id(const tc_scan *s, size_t index) {
    char buf[40];
    size_t n = 0, len = s->fam->ids == TC_ID_ALNUM9 ? 9 : 24;
    if (s->fam->ids == TC_ID_OPENAI) memcpy(buf, "call_", 5), n = 5;
    uint64_t st = mix64(s->id_seed ^ mix64((uint64_t)index + 1));
    for (size_t k = 0; k < len; k++) {
        st = mix64(st + k);
        buf[n++] = ALNUM[st % 62];
    }
    buf[n] = 0;
    return rl__strdup(buf);
}

bool rl__tc_add_tmp(tc_scan *s, const char *name, size_t nlen, const char *args, size_t alen,
                    const char *id, size_t idlen) {
    if (nlen == 0) return false;
    for (size_t i = 0; i < nlen; i++)
        if ((unsigned char)name[i] < 0x20) return false;
    char *nm = rl__strndup(name, nlen);
    if (!nm) {
        s->oom = true;
        return false;
    }
    if (s->fam->drop_name && strcmp(nm, s->fam->drop_name) == 0) {
        rl__free(nm);
        return true;
    }
    if ((s->flags & RL_TOOLCALL_KNOWN_NAMES) && !rl__tc_tools_has(s->tools, nm)) {
        rl__free(nm);
        return false;
    }
    if (s->n_tmp == s->cap_tmp) {
        size_t cap = s->cap_tmp ? s->cap_tmp * 2 : 4;
        tc_call *t = rl__realloc(s->tmp, cap * sizeof *t);
        if (!t) {
            rl__free(nm);
            s->oom = true;
            return false;
        }
        s->tmp = t;
        s->cap_tmp = cap;
    }
    tc_call *c = &s->tmp[s->n_tmp];
    c->name = nm;
    c->args = rl__strndup(args, alen);
    c->id = NULL;
    /* a model's id is kept when it is one its template takes back (Mistral: 9 letters and
       digits) */
    bool alnum9 = s->fam->ids == TC_ID_ALNUM9;
    bool id_ok = id && idlen > 0 && idlen <= 64 && (!alnum9 || idlen == 9);
    for (size_t i = 0; id_ok && i < idlen; i++) {
        unsigned char ch = (unsigned char)id[i];
        bool an = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
        if (ch <= 0x20 || ch == '"' || ch == '\\' || (alnum9 && !an)) id_ok = false;
    }
    if (id_ok && s->fam->model_ids) c->id = rl__strndup(id, idlen);
    s->n_tmp++;
    if (!c->args || (id_ok && s->fam->model_ids && !c->id)) {
        s->oom = true;
        return false;
    }
    return true;
}

/* A block parsed: whitespace held before it dropped, its calls committed. */
static void commit(tc_scan *s, size_t end, int mode, const tc_buf *content) {
    s->pend_ws.len = 0;
    if (s->n_calls + s->n_tmp > s->cap_calls) {
        size_t cap = s->cap_calls ? s->cap_calls : 4;
        while (cap < s->n_calls + s->n_tmp) cap *= 2;
        tc_call *c = rl__realloc(s->calls, cap * sizeof *c);
        if (!c) {
            s->oom = true;
            return;
        }
        s->calls = c;
        s->cap_calls = cap;
    }
    for (size_t i = 0; i < s->n_tmp; i++) {
        tc_call c = s->tmp[i];
        if (!c.id && !(c.id = make_id(s, s->n_calls))) {
            free_call(&c);
            s->oom = true;
            continue;
        }
        uint32_t index = (uint32_t)s->n_calls;
        s->calls[s->n_calls++] = c;
        event(s, RL_TOOLCALL_EV_CALL, index, c.name, strlen(c.name), c.id);
        event(s, RL_TOOLCALL_EV_ARGS, index, c.args, strlen(c.args), NULL);
    }
    s->n_tmp = 0;
    if (content && content->len) out_text(s, TC_MODE_CONTENT, content->p, content->len);
    s->mode = mode;
    s->pos = end;
    s->after_block = true;
    s->at_start = false;
}

/* Blocks up to this size are tried again after every delta. */
#define TC_RETRY_ALWAYS 4096

/* ---- the loop ------------------------------------------------------------------------------ */

static size_t n_specs(const tc_scan *s) { return s->fam->n_specs + s->n_extra; }
static const tc_spec *spec(const tc_scan *s, size_t i) {
    return i < s->fam->n_specs ? &s->fam->specs[i] : &s->extra[i - s->fam->n_specs];
}

/* Try spec sp at i: TC_OK (committed), TC_FAIL, TC_MORE. */
static tc_res try_block(tc_scan *s, const tc_spec *sp, size_t i, bool final) {
    size_t end = 0, a;
    int mode = s->mode;
    if (sp->open) {
        tc_res r = rl__tc_lit(s, i, sp->open, final, &a);
        if (r != TC_OK) return r;
    }
    tc_buf content = {0};
    clear_tmp(s);
    tc_res r = rl__tc_block(s, sp, i, final, &end, &mode, &content);
    if (content.oom) s->oom = true;
    if (r == TC_OK && !s->oom) {
        commit(s, end, mode, &content);
    } else {
        clear_tmp(s);
        if (r == TC_OK) r = TC_FAIL; /* out of memory: the scanner reports it */
    }
    rl__tc_buf_free(&content);
    return r;
}

rl_status rl__tc_scan_run(tc_scan *s, bool final, char *err, size_t err_size) {
    if (final && s->ready != s->text.len) {
        rl__fmt(err, err_size, "text: invalid UTF-8 at byte %zu (truncated sequence)", s->ready);
        return RL_ERR_INVALID_ARG;
    }
    const size_t len = s->ready;
    /* A long block still open is tried again only once it has grown by a quarter, so that
     * feeding it token by token costs linear time, not quadratic. Waiting is always safe:
     * every decision depends on the text alone, and the end decides everything. */
    if (!final && s->wait_len) {
        size_t had = s->wait_len - s->pos;
        if (had > TC_RETRY_ALWAYS && len - s->pos < had + had / 4) return RL_OK;
    }
    s->wait_len = 0;
    bool first[256] = {0};
    for (size_t k = 0; k < n_specs(s); k++) {
        const tc_spec *sp = spec(s, k);
        if (sp->open && !sp->anchored) first[(unsigned char)sp->open[0]] = true;
    }
    while (!s->oom) {
        const char *t = s->text.p;
        unsigned mbit = 1u << s->mode;
        if (s->at_start) {
            size_t i = s->pos;
            while (i < len && rl__tc_is_ws(t[i])) i++;
            if (i >= len && !final) break;
            bool more = false, done = false;
            for (size_t k = 0; i < len && k < n_specs(s) && !done && !more; k++) {
                const tc_spec *sp = spec(s, k);
                if (!sp->anchored || !(sp->modes & mbit)) continue;
                tc_res r = try_block(s, sp, i, final);
                if (r == TC_MORE) more = true, s->wait_len = len;
                if (r == TC_OK) done = true;
            }
            if (more) break;
            if (done) continue;
            s->at_start = false;
        }
        size_t i = s->pos, stop = len;
        bool wait = false, found = false;
        for (; i < len && !wait && !found; i++) {
            if (!first[(unsigned char)t[i]]) continue;
            for (size_t k = 0; k < n_specs(s); k++) {
                const tc_spec *sp = spec(s, k);
                if (sp->anchored || !sp->open || !(sp->modes & mbit)) continue;
                size_t e0 = s->pos;
                /* text before the block is decided whatever the block turns out to be */
                size_t a;
                tc_res m = rl__tc_lit(s, i, sp->open, final, &a);
                if (m == TC_FAIL) continue;
                emit(s, e0, i);
                s->pos = i;
                if (m == TC_MORE) {
                    wait = true;
                    break;
                }
                tc_res r = try_block(s, sp, i, final);
                if (r == TC_MORE) {
                    s->wait_len = len;
                    wait = true;
                    break;
                }
                if (r == TC_OK) {
                    found = true;
                    break;
                }
                if (s->oom) break;
            }
        }
        if (wait || s->oom) break;
        if (found) continue;
        emit(s, s->pos, stop);
        s->pos = stop;
        break;
    }
    if (s->oom) {
        rl__fmt(err, err_size, "out of memory");
        return RL_ERR_NOMEM;
    }
    if (final) {
        out_text(s, s->pend_mode, s->pend_ws.p, s->pend_ws.len);
        s->pend_ws.len = 0;
        if (s->oom) return RL_ERR_NOMEM;
    }
    return RL_OK;
}

rl_status rl__tc_scan_result(tc_scan *s, char **out) {
    *out = NULL;
    tc_buf b = {0};
    rl__tc_puts(&b, "{\"role\": \"assistant\", \"content\": ");
    if (s->content.len || !s->n_calls)
        rl__tc_put_json_str(&b, s->content.p ? s->content.p : "", s->content.len);
    else
        rl__tc_puts(&b, "null");
    if (s->reasoning.len) {
        rl__tc_puts(&b, ", \"reasoning_content\": ");
        rl__tc_put_json_str(&b, s->reasoning.p, s->reasoning.len);
    }
    if (s->n_calls) {
        rl__tc_puts(&b, ", \"tool_calls\": [");
        for (size_t i = 0; i < s->n_calls; i++) {
            const tc_call *c = &s->calls[i];
            if (i) rl__tc_puts(&b, ", ");
            rl__tc_puts(&b, "{\"id\": ");
            rl__tc_put_json_str(&b, c->id, strlen(c->id));
            rl__tc_puts(&b, ", \"type\": \"function\", \"function\": {\"name\": ");
            rl__tc_put_json_str(&b, c->name, strlen(c->name));
            rl__tc_puts(&b, ", \"arguments\": ");
            rl__tc_put_json_str(&b, c->args, strlen(c->args));
            rl__tc_puts(&b, "}}");
        }
        rl__tc_putc(&b, ']');
    }
    rl__tc_putc(&b, '}');
    if (b.oom) {
        rl__tc_buf_free(&b);
        return RL_ERR_NOMEM;
    }
    *out = b.p;
    return RL_OK;
}

/* ---- public ---------------------------------------------------------------------------------- */

RL_API rl_toolcall_params rl_toolcall_default_params(void) {
    rl_toolcall_params p = {0};
    return p;
}

RL_API rl_status rl_toolcall_parse(rl_toolcall_family f, const char *text, size_t len,
                                   const rl_toolcall_params *p, char **result_json, char *err,
                                   size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!result_json) return RL_ERR_INVALID_ARG;
    *result_json = NULL;
    if (!text && len) {
        rl__fmt(err, err_size, "text: NULL with length %zu", len);
        return RL_ERR_INVALID_ARG;
    }
    tc_scan s;
    rl_status st = rl__tc_scan_init(&s, f, p, err, err_size);
    if (st == RL_OK) st = rl__tc_scan_feed(&s, text, len, err, err_size);
    if (st == RL_OK) st = rl__tc_scan_run(&s, true, err, err_size);
    if (st == RL_OK) st = rl__tc_scan_result(&s, result_json);
    if (st == RL_ERR_NOMEM) rl__fmt(err, err_size, "out of memory");
    rl__tc_scan_free(&s);
    return st;
}
