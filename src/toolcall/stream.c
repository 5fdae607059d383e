/*
 * stream.c - the streaming parser (the scanner run after each delta, without `final`)
 * and the OpenAI "delta" object built from its events.
 */
#include "toolcall/toolcall.h"

struct rl_toolcall_stream {
    tc_scan s;
    rl_toolcall_event *out;
    size_t cap_out;
    bool failed, finished;
    char err[256];
};

RL_API rl_status rl_toolcall_stream_create(rl_toolcall_family f, const rl_toolcall_params *p,
                                           rl_toolcall_stream **out, char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!out) return RL_ERR_INVALID_ARG;
    *out = NULL;
    rl_toolcall_stream *st = rl__calloc(1, sizeof *st);
    if (!st) {
        rl__fmt(err, err_size, "out of memory");
        return RL_ERR_NOMEM;
    }
    rl_status r = rl__tc_scan_init(&st->s, f, p, err, err_size);
    if (r != RL_OK) {
        rl__tc_scan_free(&st->s);
        rl__free(st);
        return r;
    }
    st->s.record_events = true;
    *out = st;
    return RL_OK;
}

/* The scanner's events as public ones, pointing into its arena. */
static rl_status export_events(rl_toolcall_stream *st, const rl_toolcall_event **events,
                               size_t *n_events) {
    tc_scan *s = &st->s;
    if (s->n_ev > st->cap_out) {
        rl_toolcall_event *o = rl__realloc(st->out, s->n_ev * sizeof *o);
        if (!o) return RL_ERR_NOMEM;
        st->out = o;
        st->cap_out = s->n_ev;
    }
    for (size_t i = 0; i < s->n_ev; i++) {
        const tc_event *e = &s->ev[i];
        st->out[i] = (rl_toolcall_event){
            .type = (rl_toolcall_event_type)e->type,
            .index = e->index,
            .text = s->ev_text.p ? s->ev_text.p + e->a : "",
            .len = e->b - e->a,
            .id = e->ib > e->ia ? s->ev_text.p + e->ia : NULL,
        };
    }
    if (events) *events = st->out;
    if (n_events) *n_events = s->n_ev;
    return RL_OK;
}

static rl_status fail(rl_toolcall_stream *st, rl_status r) {
    st->failed = true;
    if (r == RL_ERR_NOMEM && !st->err[0]) rl__fmt(st->err, sizeof st->err, "out of memory");
    return r;
}

RL_API rl_status rl_toolcall_stream_feed(rl_toolcall_stream *st, const char *text, size_t len,
                                         const rl_toolcall_event **events, size_t *n_events) {
    if (events) *events = NULL;
    if (n_events) *n_events = 0;
    if (!st || (!text && len)) return RL_ERR_INVALID_ARG;
    if (st->failed || st->finished) {
        rl__fmt(st->err, sizeof st->err, "%s",
                st->failed ? "the stream failed earlier" : "the stream is finished");
        return RL_ERR_INVALID_ARG;
    }
    tc_scan *s = &st->s;
    s->n_ev = 0;
    s->ev_text.len = 0;
    rl_status r = rl__tc_scan_feed(s, text, len, st->err, sizeof st->err);
    if (r == RL_OK) r = rl__tc_scan_run(s, false, st->err, sizeof st->err);
    if (r == RL_OK) r = export_events(st, events, n_events);
    return r == RL_OK ? RL_OK : fail(st, r);
}

RL_API rl_status rl_toolcall_stream_finish(rl_toolcall_stream *st, const rl_toolcall_event **events,
                                           size_t *n_events, char **result_json) {
    if (events) *events = NULL;
    if (n_events) *n_events = 0;
    if (result_json) *result_json = NULL;
    if (!st) return RL_ERR_INVALID_ARG;
    if (st->failed || st->finished) {
        rl__fmt(st->err, sizeof st->err, "%s",
                st->failed ? "the stream failed earlier" : "the stream is finished");
        return RL_ERR_INVALID_ARG;
    }
    st->finished = true;
    tc_scan *s = &st->s;
    s->n_ev = 0;
    s->ev_text.len = 0;
    rl_status r = rl__tc_scan_run(s, true, st->err, sizeof st->err);
    if (r == RL_OK) r = export_events(st, events, n_events);
    if (r == RL_OK && result_json) r = rl__tc_scan_result(s, result_json);
    return r == RL_OK ? RL_OK : fail(st, r);
}

RL_API const char *rl_toolcall_stream_errmsg(const rl_toolcall_stream *st) {
    return st ? st->err : "";
}

RL_API void rl_toolcall_stream_free(rl_toolcall_stream *st) {
    if (!st) return;
    rl__tc_scan_free(&st->s);
    rl__free(st->out);
    rl__free(st);
}

RL_API rl_status rl_toolcall_delta_json(const rl_toolcall_event *ev, size_t n, char **out) {
    if (!out || (!ev && n)) return RL_ERR_INVALID_ARG;
    *out = NULL;
    if (!n) return RL_OK;
    tc_buf b = {0};
    bool comma = false;
    rl__tc_putc(&b, '{');
    static const char *const keys[2] = {"reasoning_content", "content"};
    static const int types[2] = {RL_TOOLCALL_EV_REASONING, RL_TOOLCALL_EV_CONTENT};
    for (int k = 0; k < 2; k++) {
        tc_buf t = {0};
        bool any = false;
        for (size_t i = 0; i < n; i++) {
            if ((int)ev[i].type != types[k]) continue;
            rl__tc_put(&t, ev[i].text, ev[i].len);
            any = true;
        }
        if (any) {
            rl__tc_printf(&b, "%s\"%s\": ", comma ? ", " : "", keys[k]);
            rl__tc_put_json_str(&b, t.p ? t.p : "", t.len);
            comma = true;
        }
        if (t.oom) b.oom = true;
        rl__tc_buf_free(&t);
    }
    /* tool_calls: one entry per run of events of one call */
    bool open = false, any = false;
    long cur = -1;
    for (size_t i = 0; i < n; i++) {
        const rl_toolcall_event *e = &ev[i];
        if (e->type != RL_TOOLCALL_EV_CALL && e->type != RL_TOOLCALL_EV_ARGS) continue;
        bool same = open && (long)e->index == cur && e->type == RL_TOOLCALL_EV_ARGS;
        if (!same) {
            if (open) rl__tc_puts(&b, "\"}}");
            rl__tc_printf(&b, "%s",
                          any ? ", " : (comma ? ", \"tool_calls\": [" : "\"tool_calls\": ["));
            any = true;
            rl__tc_printf(&b, "{\"index\": %u, ", e->index);
            if (e->type == RL_TOOLCALL_EV_CALL) {
                rl__tc_puts(&b, "\"id\": ");
                rl__tc_put_json_str(&b, e->id ? e->id : "", e->id ? strlen(e->id) : 0);
                rl__tc_puts(&b, ", \"type\": \"function\", \"function\": {\"name\": ");
                rl__tc_put_json_str(&b, e->text, e->len);
                rl__tc_puts(&b, ", \"arguments\": \"");
            } else {
                rl__tc_puts(&b, "\"function\": {\"arguments\": \"");
            }
            open = true;
            cur = e->index;
            if (e->type == RL_TOOLCALL_EV_CALL) continue;
        }
        /* the fragment, escaped, without its quotes */
        tc_buf q = {0};
        rl__tc_put_json_str(&q, e->text, e->len);
        if (q.len >= 2) rl__tc_put(&b, q.p + 1, q.len - 2);
        if (q.oom) b.oom = true;
        rl__tc_buf_free(&q);
    }
    if (open) rl__tc_puts(&b, "\"}}]");
    rl__tc_putc(&b, '}');
    if (b.oom) {
        rl__tc_buf_free(&b);
        return RL_ERR_NOMEM;
    }
    *out = b.p;
    return RL_OK;
}
