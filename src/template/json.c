/*
 * json.c - JSON in and out. In: jansson values (messages, tools, extra variables) to
 * template values, keeping object key order. Out: `tojson` exactly as Python's
 * json.dumps(x, ensure_ascii=..., indent=..., separators=..., sort_keys=...) writes it,
 * which is what transformers' tojson filter calls: ", " and ": " separators by default
 * ("," and ": " with an indent), float repr digits, NaN/Infinity, non-ASCII kept unless
 * ensure_ascii. JSON libraries format differently, so this is written out here.
 */
#include "template/tpl.h"

#include <jansson.h>
#include <stdio.h>

#define MAX_JSON_DEPTH 512

static int from_json(tpl_ctx *c, const json_t *j, tpl_val *out, int depth) {
    if (depth > MAX_JSON_DEPTH) return rl__tpl_fail(c, RL_ERR_LIMIT, "JSON input nested too deeply");
    switch (json_typeof(j)) {
    case JSON_NULL: *out = tv_none(); return 0;
    case JSON_TRUE: *out = tv_bool(true); return 0;
    case JSON_FALSE: *out = tv_bool(false); return 0;
    case JSON_INTEGER: *out = tv_int((int64_t)json_integer_value(j)); return 0;
    case JSON_REAL: *out = tv_float(json_real_value(j)); return 0;
    case JSON_STRING: {
        tpl_str *s = rl__tpl_str_new(c, json_string_value(j), json_string_length(j));
        if (!s) return -1;
        *out = tv_obj(TV_STR, 0, s);
        return 0;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(j);
        tpl_list *l = rl__tpl_list_new(c, TV_LIST, n);
        if (!l) return -1;
        for (size_t i = 0; i < n; i++) {
            if (from_json(c, json_array_get(j, i), &l->v[i], depth + 1)) {
                rl__tpl_obj_decref(c, &l->h);
                return -1;
            }
            l->n++;
        }
        *out = tv_obj(TV_LIST, LS_LIST, l);
        return 0;
    }
    case JSON_OBJECT: {
        tpl_dict *d = rl__tpl_dict_new(c, TV_DICT);
        if (!d) return -1;
        size_t n = json_object_size(j);
        if (n) {
            d->k = rl__tpl_alloc(c, n * sizeof(tpl_val));
            d->v = d->k ? rl__tpl_alloc(c, n * sizeof(tpl_val)) : NULL;
            if (!d->v) {
                rl__tpl_dealloc(c, d->k, n * sizeof(tpl_val));
                d->k = NULL;
                rl__tpl_obj_decref(c, &d->h);
                return -1;
            }
            d->cap = n;
        }
        const char *key;
        json_t *val;
        void *it = json_object_iter((json_t *)j);
        while (it && d->n < n) { /* keys are unique: append without lookups */
            key = json_object_iter_key(it);
            val = json_object_iter_value(it);
            tpl_str *ks = rl__tpl_str_new(c, key, strlen(key));
            if (!ks) goto fail;
            d->k[d->n] = tv_obj(TV_STR, 0, ks);
            if (from_json(c, val, &d->v[d->n], depth + 1)) {
                rl__tpl_obj_decref(c, &ks->h);
                goto fail;
            }
            d->n++;
            it = json_object_iter_next((json_t *)j, it);
        }
        *out = tv_obj(TV_DICT, 0, d);
        return 0;
    fail:
        rl__tpl_obj_decref(c, &d->h);
        return -1;
    }
    }
    return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "unknown JSON value");
}

int rl__tpl_from_json(tpl_ctx *c, const json_t *j, tpl_val *out) { return from_json(c, j, out, 0); }

/* ---- tojson ------------------------------------------------------------------- */

static int json_str(tpl_ctx *c, tpl_sb *b, const char *s, size_t n, bool ascii) {
    if (rl__tpl_sb_addc(c, b, '"')) return -1;
    size_t run = 0;
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        char tmp[16];
        size_t tl = 0;
        size_t j = i + 1;
        if (ch == '"') tl = 2, tmp[0] = '\\', tmp[1] = '"';
        else if (ch == '\\') tl = 2, tmp[0] = '\\', tmp[1] = '\\';
        else if (ch == '\n') tl = 2, tmp[0] = '\\', tmp[1] = 'n';
        else if (ch == '\r') tl = 2, tmp[0] = '\\', tmp[1] = 'r';
        else if (ch == '\t') tl = 2, tmp[0] = '\\', tmp[1] = 't';
        else if (ch == '\b') tl = 2, tmp[0] = '\\', tmp[1] = 'b';
        else if (ch == '\f') tl = 2, tmp[0] = '\\', tmp[1] = 'f';
        else if (ch < 0x20 || (ascii && ch == 0x7f)) {
            tl = (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", ch);
        } else if (ascii && ch >= 0x80) {
            j = i;
            int32_t cp = rl__tpl_utf8_next(s, n, &j);
            if (cp >= 0x10000) {
                uint32_t v = (uint32_t)cp - 0x10000;
                unsigned hi = 0xD800 | (v >> 10), lo = 0xDC00 | (v & 0x3FF);
                tl = (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x\\u%04x", hi, lo);
            } else {
                tl = (size_t)snprintf(tmp, sizeof(tmp), "\\u%04x", (unsigned)cp);
            }
        }
        if (tl) {
            if (rl__tpl_sb_add(c, b, s + run, i - run) || rl__tpl_sb_add(c, b, tmp, tl)) return -1;
            run = j;
        }
        i = j;
    }
    if (rl__tpl_sb_add(c, b, s + run, n - run)) return -1;
    return rl__tpl_sb_addc(c, b, '"');
}

static int newline_indent(tpl_ctx *c, tpl_sb *b, const tpl_json_opts *o, int level) {
    if (rl__tpl_sb_addc(c, b, '\n')) return -1;
    for (int i = 0; i < level; i++)
        if (rl__tpl_sb_add(c, b, o->indent, o->indent_len)) return -1;
    return 0;
}

static int json_float(tpl_ctx *c, tpl_sb *b, double d) {
    char tmp[40];
    if (d != d) return rl__tpl_sb_add(c, b, "NaN", 3);
    if (d > 1.7976931348623157e308) return rl__tpl_sb_add(c, b, "Infinity", 8);
    if (d < -1.7976931348623157e308) return rl__tpl_sb_add(c, b, "-Infinity", 9);
    return rl__tpl_sb_add(c, b, tmp, rl__tpl_fmt_float(d, tmp));
}

/* A dict key as json.dumps converts it (str, int, float, bool, None). */
static int json_key(tpl_ctx *c, tpl_sb *b, tpl_val k, const tpl_json_opts *o) {
    char tmp[40];
    switch (k.t) {
    case TV_STR: return json_str(c, b, TV_S(k)->s, TV_S(k)->len, o->ensure_ascii);
    case TV_BOOL: return json_str(c, b, k.u.b ? "true" : "false", k.u.b ? 4 : 5, false);
    case TV_NONE: return json_str(c, b, "null", 4, false);
    case TV_INT: return json_str(c, b, tmp, (size_t)snprintf(tmp, sizeof(tmp), "%lld", (long long)k.u.i), false);
    case TV_FLOAT: {
        tpl_sb t;
        rl__tpl_sb_init(&t);
        if (json_float(c, &t, k.u.f)) return rl__tpl_sb_drop(c, &t), -1;
        int r = json_str(c, b, t.s->s, t.s->len, false);
        rl__tpl_sb_drop(c, &t);
        return r;
    }
    default:
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "keys must be str, int, float, bool or None, not %s",
                            rl__tpl_type_name(k));
    }
}

static int tojson(tpl_ctx *c, tpl_sb *b, tpl_val v, const tpl_json_opts *o, int level);

/* sort_keys: a stable merge sort of item indices by key, as sorted(d.items()) orders. */
static int sort_keys(tpl_ctx *c, const tpl_dict *d, size_t *idx) {
    size_t n = d->n;
    size_t *tmp = rl__tpl_alloc(c, n * sizeof(size_t) + 1);
    if (!tmp) return -1;
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int r;
                if (rl__tpl_cmp(c, d->k[idx[j]], d->k[idx[i]], "<", &r)) {
                    rl__tpl_dealloc(c, tmp, n * sizeof(size_t) + 1);
                    return -1;
                }
                tmp[k++] = r == -1 ? idx[j++] : idx[i++];
            }
            while (i < mid) tmp[k++] = idx[i++];
            while (j < hi) tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, n * sizeof(size_t));
    }
    rl__tpl_dealloc(c, tmp, n * sizeof(size_t) + 1);
    return 0;
}

static int tojson(tpl_ctx *c, tpl_sb *b, tpl_val v, const tpl_json_opts *o, int level) {
    if (level > MAX_JSON_DEPTH) return rl__tpl_fail(c, RL_ERR_LIMIT, "value nested too deeply for tojson");
    char tmp[40];
    switch (v.t) {
    case TV_NONE: return rl__tpl_sb_add(c, b, "null", 4);
    case TV_BOOL: return v.u.b ? rl__tpl_sb_add(c, b, "true", 4) : rl__tpl_sb_add(c, b, "false", 5);
    case TV_INT: return rl__tpl_sb_add(c, b, tmp, (size_t)snprintf(tmp, sizeof(tmp), "%lld", (long long)v.u.i));
    case TV_FLOAT: return json_float(c, b, v.u.f);
    case TV_STR: return json_str(c, b, TV_S(v)->s, TV_S(v)->len, o->ensure_ascii);
    case TV_LIST:
        if (v.sub == LS_LIST || v.sub == LS_TUPLE) {
            const tpl_list *l = TV_L(v);
            if (l->n == 0) return rl__tpl_sb_add(c, b, "[]", 2);
            if (rl__tpl_sb_addc(c, b, '[')) return -1;
            for (size_t i = 0; i < l->n; i++) {
                if (i && rl__tpl_sb_add(c, b, o->item_sep, o->item_sep_len)) return -1;
                if (o->indent && newline_indent(c, b, o, level + 1)) return -1;
                if (tojson(c, b, l->v[i], o, level + 1)) return -1;
            }
            if (o->indent && newline_indent(c, b, o, level)) return -1;
            return rl__tpl_sb_addc(c, b, ']');
        }
        break;
    case TV_DICT: {
        const tpl_dict *d = TV_D(v);
        if (d->n == 0) return rl__tpl_sb_add(c, b, "{}", 2);
        size_t *idx = NULL;
        if (o->sort_keys) {
            idx = rl__tpl_alloc(c, d->n * sizeof(size_t));
            if (!idx) return -1;
            for (size_t i = 0; i < d->n; i++) idx[i] = i;
            if (sort_keys(c, d, idx)) {
                rl__tpl_dealloc(c, idx, d->n * sizeof(size_t));
                return -1;
            }
        }
        int r = rl__tpl_sb_addc(c, b, '{');
        for (size_t i = 0; !r && i < d->n; i++) {
            size_t k = idx ? idx[i] : i;
            if (i) r = rl__tpl_sb_add(c, b, o->item_sep, o->item_sep_len);
            if (!r && o->indent) r = newline_indent(c, b, o, level + 1);
            if (!r) r = json_key(c, b, d->k[k], o);
            if (!r) r = rl__tpl_sb_add(c, b, o->key_sep, o->key_sep_len);
            if (!r) r = tojson(c, b, d->v[k], o, level + 1);
        }
        if (idx) rl__tpl_dealloc(c, idx, d->n * sizeof(size_t));
        if (!r && o->indent) r = newline_indent(c, b, o, level);
        if (!r) r = rl__tpl_sb_addc(c, b, '}');
        return r;
    }
    default: break;
    }
    return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "Object of type %s is not JSON serializable",
                        rl__tpl_type_name(v));
}

int rl__tpl_tojson(tpl_ctx *c, tpl_sb *b, tpl_val v, const tpl_json_opts *o) {
    return tojson(c, b, v, o, 0);
}
