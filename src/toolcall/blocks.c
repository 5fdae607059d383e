/*
 * blocks.c - the parsers of one block each: a span of generated text that holds tool calls
 * (or switches between content and reasoning), laid out as a row of families.c says.
 *
 * Every parser follows the same contract, which the streaming parser relies on: TC_MORE
 * whenever the text ends where a continuation could still change the answer (never when
 * `final`), TC_FAIL only when no continuation could make the block valid, TC_OK with the
 * end of the block when the answer is settled. Calls found go to the scanner's temporary
 * list; it commits them only on TC_OK.
 */
#include "toolcall/toolcall.h"

#define T (s->text.p)
#define LEN (s->ready)

tc_res rl__tc_lit(const tc_scan *s, size_t pos, const char *z, bool final, size_t *end) {
    size_t n = strlen(z), avail = pos < LEN ? LEN - pos : 0;
    size_t m = n < avail ? n : avail;
    if (memcmp(T + pos, z, m) != 0) return TC_FAIL;
    if (m < n) return final ? TC_FAIL : TC_MORE;
    *end = pos + n;
    return TC_OK;
}

static size_t ws(const tc_scan *s, size_t i) {
    while (i < LEN && rl__tc_is_ws(T[i])) i++;
    return i;
}

/* At the end of the text: "more" unless final (then the given answer). */
#define AT_END(final_answer) (final ? (final_answer) : TC_MORE)

/* ---- call objects ------------------------------------------------------------------------ */

typedef struct objview {
    const tc_scan *s;
    size_t na, nb, aa, ab, ia, ib; /* spans of name, arguments, id values (0,0: absent) */
    size_t fa, fb;                 /* "function": {...} */
    bool unknown;                  /* a key other than the known ones */
} objview;

static bool obj_member(void *user, const char *key, size_t klen, size_t va, size_t vb) {
    objview *o = user;
    if (rl__tc_json_key_is(key, klen, "name") || rl__tc_json_key_is(key, klen, "tool_name")) {
        o->na = va, o->nb = vb;
    } else if (rl__tc_json_key_is(key, klen, "arguments") ||
               rl__tc_json_key_is(key, klen, "parameters")) {
        o->aa = va, o->ab = vb;
    } else if (rl__tc_json_key_is(key, klen, "id") ||
               rl__tc_json_key_is(key, klen, "tool_call_id")) {
        o->ia = va, o->ib = vb;
    } else if (rl__tc_json_key_is(key, klen, "function")) {
        o->fa = va, o->fb = vb;
    } else if (!rl__tc_json_key_is(key, klen, "type")) {
        o->unknown = true;
    }
    return true;
}

/* Whether s[a..b) (trimmed) is exactly one JSON object. */
static bool is_object_text(const char *p, size_t a, size_t b) {
    while (a < b && rl__tc_is_ws(p[a])) a++;
    while (b > a && rl__tc_is_ws(p[b - 1])) b--;
    size_t e;
    return a < b && p[a] == '{' && rl__tc_json_value(p, b, a, true, &e) == TC_OK && e == b;
}

/* The arguments value s[a..b) as object text into out: an object as written, a JSON string
 * that holds an object unwrapped, null as {}. */
static bool args_text(tc_scan *s, size_t a, size_t b, tc_buf *out) {
    const char *p = T;
    if (p[a] == '{') return rl__tc_put(out, p + a, b - a);
    if (p[a] == 'n') return rl__tc_puts(out, "{}");
    if (p[a] != '"') return false;
    tc_buf u = {0};
    bool ok = rl__tc_json_unquote(p, a, b, &u) && is_object_text(u.p ? u.p : "", 0, u.len);
    if (ok) {
        size_t x = 0, y = u.len;
        while (x < y && rl__tc_is_ws(u.p[x])) x++;
        while (y > x && rl__tc_is_ws(u.p[y - 1])) y--;
        rl__tc_put(out, u.p + x, y - x);
    }
    if (u.oom) s->oom = true;
    rl__tc_buf_free(&u);
    return ok;
}

/* A call object {"name": ..., "arguments": ...} (or "tool_name"/"parameters", an OpenAI
 * shaped {"type": "function", "function": {...}}, an "id"). strict: nothing else, and the
 * arguments must be there (for JSON that is not inside call markers). */
static tc_res call_object(tc_scan *s, size_t a, size_t b, bool strict) {
    objview o = {.s = s};
    if (!rl__tc_json_members(T, a, b, obj_member, &o)) return TC_FAIL;
    if (!o.nb && o.fb && T[o.fa] == '{') {
        objview f = {.s = s};
        rl__tc_json_members(T, o.fa, o.fb, obj_member, &f);
        o.na = f.na, o.nb = f.nb, o.aa = f.aa, o.ab = f.ab;
        if (!o.ib) o.ia = f.ia, o.ib = f.ib;
        o.unknown |= f.unknown;
    }
    if (!o.nb || T[o.na] != '"') return TC_FAIL;
    if (strict && (o.unknown || !o.ab)) return TC_FAIL;
    tc_buf name = {0}, args = {0}, id = {0};
    tc_res r = TC_FAIL;
    if (!rl__tc_json_unquote(T, o.na, o.nb, &name) || name.len == 0) goto out;
    if (o.ab) {
        if (!args_text(s, o.aa, o.ab, &args)) goto out;
    } else {
        rl__tc_puts(&args, "{}");
    }
    if (o.ib && T[o.ia] == '"') rl__tc_json_unquote(T, o.ia, o.ib, &id);
    if (name.oom || args.oom || id.oom) {
        s->oom = true;
        goto out;
    }
    if (rl__tc_add_tmp(s, name.p, name.len, args.p, args.len, id.p, id.len)) r = TC_OK;
out:
    rl__tc_buf_free(&name);
    rl__tc_buf_free(&args);
    rl__tc_buf_free(&id);
    return r;
}

typedef struct arrview {
    tc_scan *s;
    bool strict;
    tc_res r;
} arrview;

static bool arr_elem(void *user, const char *key, size_t klen, size_t va, size_t vb) {
    (void)key, (void)klen;
    arrview *v = user;
    if (v->s->text.p[va] != '{') {
        v->r = TC_FAIL;
        return false;
    }
    v->r = call_object(v->s, va, vb, v->strict);
    return v->r == TC_OK;
}

/* A call object or an array of them. */
static tc_res calls_value(tc_scan *s, size_t a, size_t b, bool strict) {
    if (T[a] == '{') return call_object(s, a, b, strict);
    if (T[a] != '[') return TC_FAIL;
    arrview v = {.s = s, .strict = strict, .r = TC_OK};
    if (!rl__tc_json_elements(T, a, b, arr_elem, &v)) return TC_FAIL;
    return v.r;
}

/* A JSON value at i (after whitespace); *end past it. */
static tc_res value_at(const tc_scan *s, size_t i, bool final, size_t *end) {
    return rl__tc_json_value(T, LEN, i, final, end);
}

/* Close markers after a block's last value at e: fence "```" then sp->close, each after
 * whitespace. A missing close is accepted at the end of the text when close_opt. */
static tc_res closers(tc_scan *s, const tc_spec *sp, size_t e, bool final, size_t *end) {
    const char *cl[2] = {sp->fence ? "```" : NULL, sp->close};
    size_t k = e;
    for (int c = 0; c < 2; c++) {
        if (!cl[c]) continue;
        size_t j = ws(s, k), after;
        tc_res r = rl__tc_lit(s, j, cl[c], final, &after);
        if (r == TC_MORE) return TC_MORE;
        if (r == TC_FAIL) {
            if (j >= LEN && sp->close_opt) break; /* final: the text ends here */
            return TC_FAIL;
        }
        k = after;
    }
    *end = k;
    return TC_OK;
}

/* The close marker of a section of calls after its last call at i: *end past it, or at i
 * when it is missing where the text ends and close_opt allows that. */
static tc_res section_close(tc_scan *s, const tc_spec *sp, const char *close, size_t i,
                            bool final, size_t *end) {
    size_t j = ws(s, i), after;
    tc_res r = rl__tc_lit(s, j, close, final, &after);
    if (r == TC_MORE) return TC_MORE;
    if (r == TC_OK) {
        *end = after;
        return TC_OK;
    }
    if (j >= LEN && sp->close_opt) {
        *end = i;
        return TC_OK;
    }
    return TC_FAIL;
}

/* ---- TC_K_JSON ---------------------------------------------------------------------------- */

static tc_res block_json(tc_scan *s, const tc_spec *sp, size_t i, bool final, size_t *end) {
    size_t j = ws(s, i), e;
    if (sp->fence) {
        tc_res r = rl__tc_lit(s, j, "```json", final, &e);
        if (r == TC_MORE) return TC_MORE;
        if (r == TC_OK) j = ws(s, e);
    }
    for (;;) {
        if (j >= LEN) return AT_END(TC_FAIL);
        if (T[j] != '{' && T[j] != '[') return TC_FAIL;
        tc_res r = value_at(s, j, final, &e);
        if (r != TC_OK) return r;
        r = calls_value(s, j, e, sp->strict);
        if (r != TC_OK) return r;
        if (!sp->multi) break;
        size_t k = ws(s, e);
        if (k < LEN && (T[k] == ';' || T[k] == ',')) k = ws(s, k + 1);
        if (k >= LEN && !final) return TC_MORE;
        if (k >= LEN || (T[k] != '{' && T[k] != '[')) break;
        j = k;
    }
    return closers(s, sp, e, final, end);
}

/* ---- TC_K_GENERIC ------------------------------------------------------------------------- */

typedef struct genview {
    size_t ta, tb, ca, cb, ra, rb; /* tool_calls, tool_call, response */
} genview;

static bool gen_member(void *user, const char *key, size_t klen, size_t va, size_t vb) {
    genview *g = user;
    if (rl__tc_json_key_is(key, klen, "tool_calls"))
        g->ta = va, g->tb = vb;
    else if (rl__tc_json_key_is(key, klen, "tool_call"))
        g->ca = va, g->cb = vb;
    else if (rl__tc_json_key_is(key, klen, "response"))
        g->ra = va, g->rb = vb;
    return true;
}

static tc_res block_generic(tc_scan *s, size_t i, bool final, size_t *end, tc_buf *content) {
    if (i >= LEN) return AT_END(TC_FAIL);
    if (T[i] != '{' && T[i] != '[') return TC_FAIL;
    size_t e;
    tc_res r = value_at(s, i, final, &e);
    if (r != TC_OK) return r;
    if (ws(s, e) < LEN) return TC_FAIL; /* the whole text or nothing */
    if (!final) return TC_MORE;
    *end = LEN;
    if (T[i] == '[') return calls_value(s, i, e, false);
    genview g = {0};
    rl__tc_json_members(T, i, e, gen_member, &g);
    if (g.tb) return T[g.ta] == '[' ? calls_value(s, g.ta, g.tb, false) : TC_FAIL;
    if (g.cb) return T[g.ca] == '{' ? call_object(s, g.ca, g.cb, false) : TC_FAIL;
    if (g.rb) {
        if (T[g.ra] != '"' || !rl__tc_json_unquote(T, g.ra, g.rb, content)) return TC_FAIL;
        return TC_OK;
    }
    return call_object(s, i, e, true);
}

/* ---- names -------------------------------------------------------------------------------- */

static bool name_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.' || c == ':' || c == '/' || c == '$' || c >= 0x80;
}

#define TC_NAME_MAX 256

/* A name at i ending where `stop` (or `stop2`, may be NULL) begins: *which says which. */
static tc_res name_until(const tc_scan *s, size_t i, const char *stop, const char *stop2,
                         bool final, size_t *ne, size_t *after, int *which) {
    for (size_t k = i; k <= LEN && k - i <= TC_NAME_MAX; k++) {
        const char *stops[2] = {stop, stop2};
        for (int w = 0; w < 2; w++) {
            if (!stops[w]) continue;
            tc_res r = rl__tc_lit(s, k, stops[w], final, after);
            if (r == TC_MORE) return TC_MORE;
            if (r == TC_OK) {
                if (k == i) return TC_FAIL;
                *ne = k;
                *which = w;
                return TC_OK;
            }
        }
        if (k == LEN) return AT_END(TC_FAIL);
        if (!name_char((unsigned char)T[k])) return TC_FAIL;
    }
    return TC_FAIL;
}

static bool add_named(tc_scan *s, const tc_spec *sp, size_t na, size_t nb, const char *args,
                      size_t alen, const char *id, size_t idlen) {
    const char *n = T + na;
    size_t len = nb - na;
    if (sp->name_strip) {
        size_t pl = strlen(sp->name_strip);
        if (len > pl && memcmp(n, sp->name_strip, pl) == 0) n += pl, len -= pl;
    }
    if (sp->name_cut) {
        const char *c = memchr(n, sp->name_cut, len);
        if (c) len = (size_t)(c - n);
    }
    if (len == 0) return false;
    return rl__tc_add_tmp(s, n, len, args, alen, id, idlen);
}

/* ---- TC_K_NAME_ARGS ----------------------------------------------------------------------- */

/* name [id_mark id] name_end {args} [close]: one call at i. */
static tc_res one_named_call(tc_scan *s, const tc_spec *sp, size_t i, bool final, size_t *end) {
    size_t ne, after, e;
    int which;
    tc_res r = name_until(s, i, sp->name_end, sp->id_mark, final, &ne, &after, &which);
    if (r != TC_OK) return r;
    size_t ia = 0, ib = 0;
    if (which == 1) { /* an id, then name_end */
        size_t ie, a2;
        r = name_until(s, after, sp->name_end, NULL, final, &ie, &a2, &which);
        if (r != TC_OK) return r;
        ia = after, ib = ie;
        after = a2;
    }
    size_t j = ws(s, after);
    if (j >= LEN) return AT_END(TC_FAIL);
    if (T[j] != '{') return TC_FAIL;
    r = value_at(s, j, final, &e);
    if (r != TC_OK) return r;
    if (sp->close) {
        size_t k = ws(s, e), a3;
        r = rl__tc_lit(s, k, sp->close, final, &a3);
        if (r == TC_MORE) return TC_MORE;
        if (r == TC_OK) {
            *end = a3;
        } else if (k >= LEN && sp->close_opt && !sp->sect_close) {
            *end = e;
        } else {
            return TC_FAIL;
        }
    } else {
        *end = e;
    }
    if (!add_named(s, sp, i, ne, T + j, e - j, ib ? T + ia : NULL, ib - ia)) return TC_FAIL;
    return TC_OK;
}

static tc_res block_name_args(tc_scan *s, const tc_spec *sp, size_t i, bool final, size_t *end) {
    if (sp->alt_json) {
        size_t j = ws(s, i), e;
        if (j >= LEN) return AT_END(TC_FAIL);
        if (T[j] == '[' || T[j] == '{') {
            tc_res r = value_at(s, j, final, &e);
            if (r != TC_OK) return r;
            r = calls_value(s, j, e, false);
            if (r == TC_OK) *end = e;
            return r;
        }
    }
    if (!sp->sect_close) return one_named_call(s, sp, i, final, end);
    size_t n = 0;
    for (;;) {
        size_t j = ws(s, i), after;
        tc_res r = rl__tc_lit(s, j, sp->call_open, final, &after);
        if (r == TC_MORE) return TC_MORE;
        if (r == TC_FAIL) break;
        r = one_named_call(s, sp, after, final, &i);
        if (r != TC_OK) return r;
        n++;
    }
    if (!n) return TC_FAIL;
    return section_close(s, sp, sp->sect_close, i, final, end);
}

/* ---- TC_K_DEEPSEEK ------------------------------------------------------------------------ */

static const char DS_CALL[] = "<｜tool▁call▁begin｜>", DS_SEP[] = "<｜tool▁sep｜>",
                  DS_END[] = "<｜tool▁call▁end｜>";

/* R1 / V3: function<｜tool▁sep｜>NAME\n```json\n{..}\n```; V3.1: NAME<｜tool▁sep｜>{..}. */
static tc_res deepseek_call(tc_scan *s, size_t i, bool final, size_t *end) {
    size_t he, after, e;
    int which;
    tc_res r = name_until(s, i, DS_SEP, NULL, final, &he, &after, &which);
    if (r != TC_OK) return r;
    size_t na = i, nb = he, j = after;
    if (he - i == 8 && memcmp(T + i, "function", 8) == 0) {
        /* the name runs to the end of the line */
        size_t k = after;
        while (k < LEN && T[k] != '\n' && k - after <= TC_NAME_MAX) {
            if (!name_char((unsigned char)T[k])) return TC_FAIL;
            k++;
        }
        if (k >= LEN) return AT_END(TC_FAIL);
        if (T[k] != '\n' || k == after) return TC_FAIL;
        na = after, nb = k, j = k;
    }
    j = ws(s, j);
    bool fenced = false;
    r = rl__tc_lit(s, j, "```json", final, &after);
    if (r == TC_MORE) return TC_MORE;
    if (r == TC_OK) fenced = true, j = ws(s, after);
    if (j >= LEN) return AT_END(TC_FAIL);
    if (T[j] != '{') return TC_FAIL;
    r = value_at(s, j, final, &e);
    if (r != TC_OK) return r;
    size_t k = e;
    if (fenced) {
        r = rl__tc_lit(s, ws(s, k), "```", final, &k);
        if (r != TC_OK) return r;
    }
    size_t m = ws(s, k);
    r = rl__tc_lit(s, m, DS_END, final, &after);
    if (r == TC_MORE) return TC_MORE;
    if (r == TC_OK) {
        k = after;
    } else if (m < LEN) {
        return TC_FAIL;
    }
    if (!rl__tc_add_tmp(s, T + na, nb - na, T + j, e - j, NULL, 0)) return TC_FAIL;
    *end = k;
    return TC_OK;
}

static tc_res block_deepseek(tc_scan *s, const tc_spec *sp, size_t pos, size_t i, bool final,
                             size_t *end) {
    size_t n = 0;
    if (sp->bare) i = pos;
    for (;;) {
        size_t j = ws(s, i), after;
        tc_res r = rl__tc_lit(s, j, DS_CALL, final, &after);
        if (r == TC_MORE) return TC_MORE;
        if (r == TC_FAIL) break;
        r = deepseek_call(s, after, final, &i);
        if (r != TC_OK) return r;
        n++;
    }
    if (!n) return TC_FAIL;
    size_t j = ws(s, i), after;
    tc_res r = rl__tc_lit(s, j, sp->close, final, &after);
    if (r == TC_MORE) return TC_MORE;
    *end = r == TC_OK ? after : i;
    return TC_OK;
}

/* ---- TC_K_PYTAG --------------------------------------------------------------------------- */

static bool ident_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* A Python literal at p[i..n) as JSON into out: a string ('..' or ".."), a number, True,
 * False, None. */
static bool py_value(const char *p, size_t n, size_t *i, tc_buf *out) {
    size_t k = *i;
    if (k >= n) return false;
    char q = p[k];
    if (q == '"' || q == '\'') {
        tc_buf v = {0};
        k++;
        while (k < n && p[k] != q) {
            char c = p[k];
            if (c == '\\' && k + 1 < n) {
                char e = p[++k];
                c = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e;
            } else if (c == '\n') {
                rl__tc_buf_free(&v);
                return false;
            }
            rl__tc_putc(&v, c);
            k++;
        }
        if (k >= n) {
            rl__tc_buf_free(&v);
            return false;
        }
        rl__tc_put_json_str(out, v.p ? v.p : "", v.len);
        rl__tc_buf_free(&v);
        *i = k + 1;
        return true;
    }
    static const char *const words[3][2] = {{"True", "true"}, {"False", "false"}, {"None", "null"}};
    for (int w = 0; w < 3; w++) {
        size_t l = strlen(words[w][0]);
        if (n - k >= l && memcmp(p + k, words[w][0], l) == 0 &&
            (k + l >= n || !ident_char(p[k + l]))) {
            rl__tc_puts(out, words[w][1]);
            *i = k + l;
            return true;
        }
    }
    size_t e;
    if ((q == '-' || (q >= '0' && q <= '9')) && rl__tc_json_value(p, n, k, true, &e) == TC_OK) {
        /* the JSON number grammar is a subset of Python's: take the longest JSON prefix */
        rl__tc_put(out, p + k, e - k);
        *i = e;
        return true;
    }
    return false;
}

/* tool.call(k=v, ...) (Llama 3.1 built-in tools) at p[0..n): name and JSON arguments. */
static bool py_call(const char *p, size_t n, size_t *name_len, tc_buf *args) {
    size_t k = 0;
    while (k < n && (ident_char(p[k]) || p[k] == '.')) k++;
    if (k < 6 || memcmp(p + k - 5, ".call", 5) != 0 || k >= n || p[k] != '(') return false;
    *name_len = k - 5;
    if (*name_len == 0) return false;
    k++;
    rl__tc_putc(args, '{');
    bool first = true;
    for (;;) {
        while (k < n && rl__tc_is_ws(p[k])) k++;
        if (k < n && p[k] == ')') break;
        size_t ka = k;
        while (k < n && ident_char(p[k])) k++;
        if (k == ka || k >= n) return false;
        size_t kb = k;
        while (k < n && rl__tc_is_ws(p[k])) k++;
        if (k >= n || p[k] != '=') return false;
        k++;
        while (k < n && rl__tc_is_ws(p[k])) k++;
        if (!first) rl__tc_puts(args, ", ");
        first = false;
        rl__tc_put_json_str(args, p + ka, kb - ka);
        rl__tc_puts(args, ": ");
        if (!py_value(p, n, &k, args)) return false;
        while (k < n && rl__tc_is_ws(p[k])) k++;
        if (k < n && p[k] == ',') {
            k++;
            continue;
        }
        if (k < n && p[k] == ')') break;
        return false;
    }
    k++;
    while (k < n && rl__tc_is_ws(p[k])) k++;
    rl__tc_putc(args, '}');
    return k == n;
}

static tc_res block_pytag(tc_scan *s, size_t i, bool final, size_t *end) {
    static const char *const stops[] = {"<|eom_id|>", "<|eot_id|>"};
    size_t b = LEN, after = LEN;
    for (size_t k = i; k < LEN && b == LEN; k++) {
        if (T[k] != '<') continue;
        for (int w = 0; w < 2; w++) {
            size_t a;
            tc_res r = rl__tc_lit(s, k, stops[w], final, &a);
            if (r == TC_MORE) return TC_MORE;
            if (r == TC_OK) {
                b = k, after = a;
                break;
            }
        }
    }
    if (b == LEN && !final) return TC_MORE; /* code runs to the end */
    size_t a = ws(s, i);
    while (b > a && rl__tc_is_ws(T[b - 1])) b--;
    if (a >= b) return TC_FAIL;
    *end = after;
    if (T[a] == '{') { /* JSON call(s) */
        for (;;) {
            size_t e;
            if (rl__tc_json_value(T, b, a, true, &e) != TC_OK) return TC_FAIL;
            tc_res r = call_object(s, a, e, false);
            if (r != TC_OK) return r;
            a = ws(s, e);
            if (a < b && T[a] == ';') a = ws(s, a + 1);
            if (a >= b) return TC_OK;
            if (T[a] != '{') return TC_FAIL;
        }
    }
    tc_buf args = {0};
    size_t nl = 0;
    bool ok;
    if (py_call(T + a, b - a, &nl, &args)) {
        ok = !args.oom && rl__tc_add_tmp(s, T + a, nl, args.p, args.len, NULL, 0);
    } else {
        args.len = 0;
        args.oom = false;
        rl__tc_puts(&args, "{\"code\": ");
        rl__tc_put_json_str(&args, T + a, b - a);
        rl__tc_putc(&args, '}');
        ok = !args.oom && rl__tc_add_tmp(s, "python", 6, args.p, args.len, NULL, 0);
    }
    if (args.oom) s->oom = true;
    rl__tc_buf_free(&args);
    return ok ? TC_OK : TC_FAIL;
}

/* ---- TC_K_FUNC32 -------------------------------------------------------------------------- */

static tc_res block_func32(tc_scan *s, const tc_spec *sp, size_t i, bool final, size_t *end,
                           int *mode) {
    if (sp->anchored) { /* an optional >>> where the text starts */
        size_t a;
        tc_res r = rl__tc_lit(s, i, ">>>", final, &a);
        if (r == TC_MORE) return TC_MORE;
        if (r == TC_OK) i = a;
    }
    size_t k = i;
    while (k < LEN && (ident_char(T[k]) || T[k] == '-' || T[k] == '.') && k - i <= TC_NAME_MAX) k++;
    if (k >= LEN) return AT_END(TC_FAIL);
    if (T[k] != '\n' || k == i) return TC_FAIL;
    size_t na = i, nb = k, j = k + 1;
    if (nb - na == 3 && memcmp(T + na, "all", 3) == 0) {
        *mode = TC_MODE_CONTENT;
        *end = j;
        return TC_OK;
    }
    size_t js = ws(s, j), e;
    if (js >= LEN) return AT_END(TC_FAIL);
    if (T[js] == '{') {
        tc_res r = value_at(s, js, final, &e);
        if (r != TC_OK) return r;
        if (!rl__tc_add_tmp(s, T + na, nb - na, T + js, e - js, NULL, 0)) return TC_FAIL;
        *end = e;
        return TC_OK;
    }
    if (nb - na != 6 || memcmp(T + na, "python", 6) != 0) return TC_FAIL;
    /* code up to the next >>> */
    size_t b = LEN;
    for (size_t q = j; q < LEN; q++) {
        if (T[q] != '>') continue;
        size_t a;
        tc_res r = rl__tc_lit(s, q, ">>>", final, &a);
        if (r == TC_MORE) return TC_MORE;
        if (r == TC_OK) {
            b = q;
            break;
        }
    }
    if (b == LEN && !final) return TC_MORE;
    size_t cb = b;
    while (cb > j && rl__tc_is_ws(T[cb - 1])) cb--;
    if (cb == j) return TC_FAIL;
    tc_buf args = {0};
    rl__tc_puts(&args, "{\"code\": ");
    rl__tc_put_json_str(&args, T + j, cb - j);
    rl__tc_putc(&args, '}');
    bool ok = !args.oom && rl__tc_add_tmp(s, "python", 6, args.p, args.len, NULL, 0);
    if (args.oom) s->oom = true;
    rl__tc_buf_free(&args);
    *end = b;
    return ok ? TC_OK : TC_FAIL;
}

/* ---- TC_K_HARMONY ------------------------------------------------------------------------- */

#define TC_HEADER_MAX 512

/* A word at k: [A-Za-z0-9_.:/-]+, ends at anything else (TC_MORE when the text ends). */
static tc_res word_at(const tc_scan *s, size_t k, bool final, size_t *e) {
    size_t q = k;
    while (q < LEN && name_char((unsigned char)T[q]) && T[q] != ':' && q - k <= TC_NAME_MAX) q++;
    if (q >= LEN) return AT_END(TC_FAIL);
    if (q == k) return TC_FAIL;
    *e = q;
    return TC_OK;
}

static tc_res block_harmony(tc_scan *s, size_t pos, bool final, size_t *end, int *mode) {
    size_t k = pos, ca = 0, cb = 0, ra = 0, rb = 0, a, e;
    for (;;) {
        if (k - pos > TC_HEADER_MAX) return TC_FAIL;
        if (k >= LEN) return AT_END(TC_FAIL);
        tc_res r;
        if ((r = rl__tc_lit(s, k, "<|message|>", final, &a)) != TC_FAIL) {
            if (r == TC_MORE) return r;
            k = a;
            break;
        }
        if ((r = rl__tc_lit(s, k, "<|start|>", final, &a)) != TC_FAIL) {
            if (r == TC_MORE || k != pos) return r == TC_MORE ? r : TC_FAIL;
            if ((r = word_at(s, a, final, &e)) != TC_OK) return r; /* the role */
            k = e;
            continue;
        }
        if ((r = rl__tc_lit(s, k, "<|channel|>", final, &a)) != TC_FAIL) {
            if (r == TC_MORE) return r;
            if (cb) return TC_FAIL;
            if ((r = word_at(s, a, final, &e)) != TC_OK) return r;
            ca = a, cb = e, k = e;
            continue;
        }
        if ((r = rl__tc_lit(s, k, "<|constrain|>", final, &a)) != TC_FAIL) {
            if (r == TC_MORE) return r;
            if ((r = word_at(s, a, final, &e)) != TC_OK) return r;
            k = e;
            continue;
        }
        if ((r = rl__tc_lit(s, k, "to=", final, &a)) != TC_FAIL) {
            if (r == TC_MORE) return r;
            if (rb) return TC_FAIL;
            size_t q = a;
            while (q < LEN && name_char((unsigned char)T[q]) && q - a <= TC_NAME_MAX) q++;
            if (q >= LEN) return AT_END(TC_FAIL);
            if (q == a) return TC_FAIL;
            ra = a, rb = q, k = q;
            continue;
        }
        if (T[k] == ' ') { /* spaces separate the parts */
            k++;
            continue;
        }
        /* a content type ("json") */
        if ((r = word_at(s, k, final, &e)) != TC_OK) return r;
        k = e;
        continue;
    }
    if (!cb && !rb) return TC_FAIL;
    if (!rb) {
        *mode = cb - ca == 8 && memcmp(T + ca, "analysis", 8) == 0 ? TC_MODE_REASONING
                                                                   : TC_MODE_CONTENT;
        *end = k;
        return TC_OK;
    }
    size_t j = ws(s, k);
    if (j >= LEN) return AT_END(TC_FAIL);
    if (T[j] != '{') return TC_FAIL;
    tc_res r = value_at(s, j, final, &e);
    if (r != TC_OK) return r;
    size_t na = ra;
    if (rb - ra > 10 && memcmp(T + ra, "functions.", 10) == 0) na += 10;
    if (!rl__tc_add_tmp(s, T + na, rb - na, T + j, e - j, NULL, 0)) return TC_FAIL;
    *mode = TC_MODE_CONTENT;
    *end = e;
    return TC_OK;
}

/* ---- TC_K_XML ----------------------------------------------------------------------------- */

/* Text from k to the first `stop`: TC_OK with [k, *te) and *after. */
static tc_res text_until(const tc_scan *s, size_t k, const char *stop, size_t max, bool final,
                         size_t *te, size_t *after) {
    char c0 = stop[0];
    for (size_t q = k; q < LEN; q++) {
        if (q - k > max) return TC_FAIL;
        if (T[q] != c0) continue;
        tc_res r = rl__tc_lit(s, q, stop, final, after);
        if (r == TC_MORE) return TC_MORE;
        if (r == TC_OK) {
            *te = q;
            return TC_OK;
        }
    }
    return AT_END(TC_FAIL);
}

/* A value that is a JSON value followed by `stop` (after whitespace): its end may lie past
 * a `stop` inside one of its strings. TC_FAIL when the text there is not so. */
static tc_res json_then(const tc_scan *s, size_t k, const char *stop, bool final, size_t *te,
                        size_t *after) {
    size_t j = ws(s, k), e;
    if (j >= LEN) return AT_END(TC_FAIL);
    char c = T[j];
    if (c != '{' && c != '[' && c != '"') return TC_FAIL; /* only these can hold a marker */
    tc_res r = value_at(s, j, final, &e);
    if (r != TC_OK) return r;
    size_t m = ws(s, e);
    r = rl__tc_lit(s, m, stop, final, after);
    if (r != TC_OK) return r;
    *te = m;
    return TC_OK;
}

/* One parameter's value text as JSON into args. */
static void xml_value(tc_scan *s, const char *fname, const char *key, const char *v, size_t n,
                      int string_attr, tc_buf *args) {
    bool as_string =
        string_attr == 1 || (string_attr < 0 && rl__tc_tools_param_is_string(s->tools, fname, key));
    size_t a = 0, b = n;
    while (a < b && rl__tc_is_ws(v[a])) a++;
    while (b > a && rl__tc_is_ws(v[b - 1])) b--;
    size_t e;
    if (!as_string && a < b && rl__tc_json_value(v, b, a, true, &e) == TC_OK && e == b) {
        rl__tc_put(args, v + a, b - a);
        return;
    }
    rl__tc_put_json_str(args, v, n);
}

static tc_res xml_call(tc_scan *s, const tc_xml *x, size_t i, bool final, size_t *end,
                       tc_buf *args) {
    size_t na = i, nb, k, e, a;
    tc_res r;
    if (x->name_end) {
        r = text_until(s, i, x->name_end, TC_NAME_MAX, final, &nb, &k);
        if (r != TC_OK) return r;
        for (size_t q = na; q < nb; q++)
            if (!name_char((unsigned char)T[q])) return TC_FAIL;
    } else {
        nb = i;
        while (nb < LEN && name_char((unsigned char)T[nb]) && nb - i <= TC_NAME_MAX) nb++;
        if (nb >= LEN) return AT_END(TC_FAIL);
        k = nb;
    }
    if (nb == na) return TC_FAIL;
    char *fname = rl__strndup(T + na, nb - na);
    if (!fname) {
        s->oom = true;
        return TC_FAIL;
    }
    args->len = 0;
    rl__tc_putc(args, '{');
    bool first = true;
    for (;;) {
        size_t j = ws(s, k);
        r = rl__tc_lit(s, j, x->param_open, final, &a);
        if (r == TC_MORE) goto done;
        if (r == TC_FAIL) break;
        size_t ka = a, kb;
        r = text_until(s, ka, x->key_end, TC_NAME_MAX, final, &kb, &k);
        if (r != TC_OK) goto done;
        if (kb == ka || memchr(T + ka, '<', kb - ka) || memchr(T + ka, '\n', kb - ka)) {
            r = TC_FAIL;
            goto done;
        }
        int string_attr = -1;
        if (x->attrs_end) {
            size_t ae;
            r = text_until(s, k, x->attrs_end, TC_HEADER_MAX, final, &ae, &a);
            if (r != TC_OK) goto done;
            if (memmem(T + k, ae - k, "string=\"true\"", 13))
                string_attr = 1;
            else if (memmem(T + k, ae - k, "string=\"false\"", 14))
                string_attr = 0;
            k = a;
        }
        if (x->value_open) {
            r = rl__tc_lit(s, ws(s, k), x->value_open, final, &k);
            if (r != TC_OK) goto done;
        }
        size_t ve;
        r = json_then(s, k, x->param_close, final, &ve, &a);
        if (r == TC_FAIL) r = text_until(s, k, x->param_close, SIZE_MAX, final, &ve, &a);
        if (r != TC_OK) goto done;
        size_t va = k;
        if (x->trim_nl) {
            if (va < ve && T[va] == '\n') va++;
            if (ve > va && T[ve - 1] == '\n') ve--;
        }
        char *key = rl__strndup(T + ka, kb - ka);
        if (!key) {
            s->oom = true;
            r = TC_FAIL;
            goto done;
        }
        if (!first) rl__tc_puts(args, ", ");
        first = false;
        rl__tc_put_json_str(args, T + ka, kb - ka);
        rl__tc_puts(args, ": ");
        if (string_attr == 0) { /* DSML string="false": the value is JSON */
            size_t x0 = va, x1 = ve;
            while (x0 < x1 && rl__tc_is_ws(T[x0])) x0++;
            while (x1 > x0 && rl__tc_is_ws(T[x1 - 1])) x1--;
            if (x0 >= x1 || rl__tc_json_value(T, x1, x0, true, &e) != TC_OK || e != x1) {
                rl__free(key);
                r = TC_FAIL;
                goto done;
            }
            rl__tc_put(args, T + x0, x1 - x0);
        } else {
            xml_value(s, fname, key, T + va, ve - va, string_attr, args);
        }
        rl__free(key);
        k = a;
    }
    rl__tc_putc(args, '}');
    if (x->call_close) {
        r = rl__tc_lit(s, ws(s, k), x->call_close, final, &a);
        if (r != TC_OK) goto done;
        k = a;
    }
    r = args->oom || !rl__tc_add_tmp(s, fname, strlen(fname), args->p, args->len, NULL, 0) ? TC_FAIL
                                                                                           : TC_OK;
    *end = k;
done:
    if (args->oom) s->oom = true;
    rl__free(fname);
    return r;
}

static tc_res block_xml(tc_scan *s, const tc_spec *sp, size_t i, bool final, size_t *end) {
    const tc_xml *x = sp->xml;
    size_t n = 0, a;
    tc_res r;
    for (;;) {
        size_t j = ws(s, i);
        if (x->call_open[0]) {
            r = rl__tc_lit(s, j, x->call_open, final, &a);
            if (r == TC_MORE) return TC_MORE;
            if (r == TC_FAIL) break;
        } else {
            if (n) break;
            a = j;
        }
        s->scratch.len = 0;
        r = xml_call(s, x, a, final, &i, &s->scratch);
        if (r != TC_OK) return r;
        n++;
        if (!x->multi) break;
    }
    if (!n) return TC_FAIL;
    return section_close(s, sp, sp->close, i, final, end);
}

/* ---- dispatch ----------------------------------------------------------------------------- */

tc_res rl__tc_block(tc_scan *s, const tc_spec *sp, size_t pos, bool final, size_t *end, int *mode,
                    tc_buf *content_out) {
    size_t i = pos;
    if (sp->open && sp->kind != TC_K_HARMONY) { /* harmony reads its markers as a header */
        tc_res r = rl__tc_lit(s, pos, sp->open, final, &i);
        if (r != TC_OK) return r;
    }
    switch (sp->kind) {
    case TC_K_JSON:
        return block_json(s, sp, i, final, end);
    case TC_K_GENERIC:
        return block_generic(s, i, final, end, content_out);
    case TC_K_NAME_ARGS:
        return block_name_args(s, sp, i, final, end);
    case TC_K_DEEPSEEK:
        return block_deepseek(s, sp, pos, i, final, end);
    case TC_K_PYTAG:
        return block_pytag(s, i, final, end);
    case TC_K_FUNC32:
        return block_func32(s, sp, i, final, end, mode);
    case TC_K_HARMONY:
        return block_harmony(s, pos, final, end, mode);
    case TC_K_XML:
        return block_xml(s, sp, i, final, end);
    case TC_K_SWITCH:
        *mode = sp->to_mode;
        *end = i;
        return TC_OK;
    }
    return TC_FAIL;
}
