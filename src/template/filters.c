/*
 * filters.c - jinja2's built-in filters and tests that chat templates use, with
 * transformers' tojson (json.dumps with ensure_ascii=False by default, indent,
 * separators, sort_keys). Filters that jinja2 has but this interpreter does not
 * implement are known by name and fail with a clear message when they run.
 *
 * select/reject/map/selectattr/rejectattr/unique/batch/slice/items return single-pass
 * generators, as in jinja2: they are always true, have no length, and tojson refuses
 * them ("Object of type generator is not JSON serializable").
 */
#include "template/tpl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef int (*filter_fn)(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out);

static bool is_intlike(tpl_val v) { return v.t == TV_INT || v.t == TV_BOOL; }
static int64_t as_int(tpl_val v) { return v.t == TV_BOOL ? (int64_t)v.u.b : v.u.i; }

static int want_int(tpl_ctx *c, const char *fname, const char *param, tpl_val v, int64_t *out) {
    if (!is_intlike(v))
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%s(): %s must be an integer, not %s", fname, param,
                            rl__tpl_type_name(v));
    *out = as_int(v);
    return 0;
}

/* soft_str: strings stay as they are (Markup too), anything else goes through str(). */
static int soft_str(tpl_ctx *c, tpl_val v, tpl_val *out) {
    if (v.t == TV_STR) {
        *out = tv_ref(v);
        return 0;
    }
    return rl__tpl_str_of(c, v, out);
}

int rl__tpl_escape(tpl_ctx *c, tpl_sb *b, const char *s, size_t n) {
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        const char *e = NULL;
        switch (s[i]) {
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '\'': e = "&#39;"; break;
        case '"': e = "&#34;"; break;
        default: continue;
        }
        if (rl__tpl_sb_add(c, b, s + run, i - run) || rl__tpl_sb_add(c, b, e, strlen(e))) return -1;
        run = i + 1;
    }
    return rl__tpl_sb_add(c, b, s + run, n - run);
}

static int new_gen(tpl_ctx *c, tpl_list **g) {
    *g = rl__tpl_list_new(c, TV_GEN, 0);
    return *g ? 0 : -1;
}

/* Attribute path "a.b.0" applied with getitem, as jinja2's make_attrgetter does. */
static int get_path(tpl_ctx *c, tpl_val item, const tpl_str *path, tpl_val *out) {
    tpl_val cur = tv_ref(item);
    const char *s = path->s, *end = path->s + path->len;
    while (1) {
        const char *dot = memchr(s, '.', (size_t)(end - s));
        const char *pe = dot ? dot : end;
        tpl_val key;
        bool digits = pe > s;
        for (const char *p = s; p < pe; p++) digits &= *p >= '0' && *p <= '9';
        if (digits && pe - s < 18) {
            key = tv_int(strtoll(s, NULL, 10));
        } else {
            tpl_str *ks = rl__tpl_str_new(c, s, (size_t)(pe - s));
            if (!ks) return rl__tpl_decref(c, cur), -1;
            key = tv_obj(TV_STR, 0, ks);
        }
        tpl_val nx;
        int r = rl__tpl_getitem(c, cur, key, &nx);
        rl__tpl_decref(c, key);
        rl__tpl_decref(c, cur);
        if (r) return -1;
        cur = nx;
        if (!dot) break;
        s = dot + 1;
    }
    *out = cur;
    return 0;
}

/* Python's str.lower() of strings for case-insensitive sort keys. */
static int fold_key(tpl_ctx *c, tpl_val v, bool case_sensitive, tpl_val *out) {
    if (v.t != TV_STR || case_sensitive) {
        *out = tv_ref(v);
        return 0;
    }
    tpl_sb b;
    rl__tpl_sb_init(&b);
    if (rl__tpl_case(c, &b, TV_S(v)->s, TV_S(v)->len, CASE_LOWER)) return rl__tpl_sb_drop(c, &b), -1;
    return rl__tpl_sb_val(c, &b, 0, out);
}

/* Stable merge sort of idx[0..n) by keys (Python's sorted, reverse keeps stability). */
static int sort_idx(tpl_ctx *c, const tpl_val *keys, size_t *idx, size_t n, bool reverse) {
    if (n < 2) return 0;
    size_t *tmp = rl__tpl_alloc(c, n * sizeof(size_t));
    if (!tmp) return -1;
    for (size_t w = 1; w < n; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int r;
                /* take from the right run only when it is strictly smaller */
                if (reverse ? rl__tpl_cmp(c, keys[idx[i]], keys[idx[j]], "<", &r)
                            : rl__tpl_cmp(c, keys[idx[j]], keys[idx[i]], "<", &r)) {
                    rl__tpl_dealloc(c, tmp, n * sizeof(size_t));
                    return -1;
                }
                tmp[k++] = r == -1 ? idx[j++] : idx[i++];
            }
            while (i < mid) tmp[k++] = idx[i++];
            while (j < hi) tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, n * sizeof(size_t));
        if (rl__tpl_charge(c, n / 16)) {
            rl__tpl_dealloc(c, tmp, n * sizeof(size_t));
            return -1;
        }
    }
    rl__tpl_dealloc(c, tmp, n * sizeof(size_t));
    return 0;
}

/* Sort the items of list l by (attribute path, case folding) into a new list; with pos >= 0
 * (attr NULL) by item[pos] of items that are lists (dictsort's pairs). */
static int sorted_list_at(tpl_ctx *c, tpl_list *l, bool reverse, bool case_sensitive,
                          const tpl_str *attr, int pos, tpl_list **out) {
    size_t n = l->n;
    tpl_val *keys = rl__tpl_alloc(c, (n ? n : 1) * sizeof(tpl_val));
    size_t *idx = keys ? rl__tpl_alloc(c, (n ? n : 1) * sizeof(size_t)) : NULL;
    size_t nk = 0;
    int rc = -1;
    if (!idx) goto done;
    for (size_t i = 0; i < n; i++, nk++) {
        tpl_val k = l->v[i], t;
        if (attr) {
            if (get_path(c, l->v[i], attr, &t)) goto done;
        } else {
            t = tv_ref(pos >= 0 ? TV_L(k)->v[pos] : k);
        }
        int r = fold_key(c, t, case_sensitive, &keys[i]);
        rl__tpl_decref(c, t);
        if (r) goto done;
        idx[i] = i;
    }
    if (sort_idx(c, keys, idx, n, reverse)) goto done;
    tpl_list *r = rl__tpl_list_new(c, TV_LIST, n);
    if (!r) goto done;
    for (size_t i = 0; i < n; i++) r->v[r->n++] = tv_ref(l->v[idx[i]]);
    *out = r;
    rc = 0;
done:
    for (size_t i = 0; i < nk; i++) rl__tpl_decref(c, keys[i]);
    if (keys) rl__tpl_dealloc(c, keys, (n ? n : 1) * sizeof(tpl_val));
    if (idx) rl__tpl_dealloc(c, idx, (n ? n : 1) * sizeof(size_t));
    return rc;
}

static int sorted_list(tpl_ctx *c, tpl_list *l, bool reverse, bool case_sensitive, const tpl_str *attr,
                       tpl_list **out) {
    return sorted_list_at(c, l, reverse, case_sensitive, attr, -1, out);
}

/* ---- the filters ---------------------------------------------------------------- */

#define BIND(fname, ...)                                                                           \
    static const char *const P_[] = {__VA_ARGS__};                                                 \
    tpl_val s_[RL_ARRAY_LEN(P_)];                                                                  \
    if (rl__tpl_bind(c, fname, P_, (int)RL_ARRAY_LEN(P_), a, s_, NULL)) return -1
#define BIND0(fname)                                                                               \
    if (a->npos || a->nkw)                                                                         \
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%s() takes no arguments", fname)
#define ARG(i) s_[i]
#define GIVEN(i) tv_given(s_[i])

static int f_abs(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND0("abs");
    if (is_intlike(in)) {
        int64_t x = as_int(in);
        if (x == INT64_MIN) return rl__tpl_fail(c, RL_ERR_UNSUPPORTED, "integer overflow");
        *out = tv_int(x < 0 ? -x : x);
        return 0;
    }
    if (in.t == TV_FLOAT) return *out = tv_float(fabs(in.u.f)), 0;
    if (in.t == TV_UNDEF) return rl__tpl_fail_undef(c, in);
    return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "bad operand type for abs(): '%s'", rl__tpl_type_name(in));
}

static int f_attr(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND("attr", "name");
    if (ARG(0).t != TV_STR) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "attr(): name must be a string");
    return rl__tpl_getattr_s(c, in, TV_S(ARG(0))->s, TV_S(ARG(0))->len, out);
}

static int f_batch(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND("batch", "linecount", "fill_with");
    int64_t n = 0;
    if (want_int(c, "batch", "linecount", ARG(0), &n)) return -1;
    if (n <= 0) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "batch(): linecount must be positive");
    tpl_list *l, *g, *cur = NULL;
    if (rl__tpl_iterate(c, in, &l)) return -1;
    if (new_gen(c, &g)) return rl__tpl_obj_decref(c, &l->h), -1;
    for (size_t i = 0; i < l->n; i++) {
        if (!cur && !(cur = rl__tpl_list_new(c, TV_LIST, 0))) goto fail;
        if (rl__tpl_list_push(c, cur, tv_ref(l->v[i]))) goto fail;
        if ((int64_t)cur->n == n) {
            tpl_list *done = cur;
            cur = NULL;
            if (rl__tpl_list_push(c, g, tv_obj(TV_LIST, LS_LIST, done))) goto fail;
        }
    }
    if (cur) {
        if (GIVEN(1))
            while ((int64_t)cur->n < n)
                if (rl__tpl_list_push(c, cur, tv_ref(ARG(1)))) goto fail;
        tpl_list *done = cur;
        cur = NULL;
        if (rl__tpl_list_push(c, g, tv_obj(TV_LIST, LS_LIST, done))) goto fail;
    }
    rl__tpl_obj_decref(c, &l->h);
    *out = tv_obj(TV_GEN, GEN_GENERATOR, g);
    return 0;
fail:
    if (cur) rl__tpl_obj_decref(c, &cur->h);
    rl__tpl_obj_decref(c, &l->h);
    rl__tpl_obj_decref(c, &g->h);
    return -1;
}

static int case_filter(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out, int mode, const char *fname) {
    BIND0(fname);
    tpl_val s;
    if (soft_str(c, in, &s)) return -1;
    tpl_sb b;
    rl__tpl_sb_init(&b);
    int r = rl__tpl_case(c, &b, TV_S(s)->s, TV_S(s)->len, mode);
    uint8_t sub = s.sub;
    rl__tpl_decref(c, s);
    if (r) return rl__tpl_sb_drop(c, &b), -1;
    return rl__tpl_sb_val(c, &b, sub, out);
}
static int f_capitalize(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    return case_filter(c, in, a, out, CASE_CAPITALIZE, "capitalize");
}
static int f_upper(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    return case_filter(c, in, a, out, CASE_UPPER, "upper");
}
static int f_lower(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    return case_filter(c, in, a, out, CASE_LOWER, "lower");
}
static int f_title(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    return case_filter(c, in, a, out, CASE_JINJA_TITLE, "title");
}

static int pad_str(tpl_ctx *c, const tpl_str *s, int64_t width, int align, tpl_val *out, uint8_t sub) {
    int64_t len = (int64_t)s->ncp;
    if (width > (int64_t)c->lim.max_output) return rl__tpl_fail(c, RL_ERR_LIMIT, "width too large");
    int64_t pad = width > len ? width - len : 0;
    /* Python's center puts the extra space on the right unless the length is odd */
    int64_t left = align == 0 ? 0 : align == 2 ? pad : (pad / 2 + (pad & width & 1));
    int64_t right = pad - left;
    tpl_sb b;
    rl__tpl_sb_init(&b);
    for (int64_t i = 0; i < left; i++)
        if (rl__tpl_sb_addc(c, &b, ' ')) return rl__tpl_sb_drop(c, &b), -1;
    if (rl__tpl_sb_add(c, &b, s->s, s->len)) return rl__tpl_sb_drop(c, &b), -1;
    for (int64_t i = 0; i < right; i++)
        if (rl__tpl_sb_addc(c, &b, ' ')) return rl__tpl_sb_drop(c, &b), -1;
    return rl__tpl_sb_val(c, &b, sub, out);
}

static int f_center(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND("center", "width");
    int64_t w = 80;
    if (GIVEN(0) && want_int(c, "center", "width", ARG(0), &w)) return -1;
    tpl_val s;
    if (soft_str(c, in, &s)) return -1;
    int r = pad_str(c, TV_S(s), w, 1, out, s.sub);
    rl__tpl_decref(c, s);
    return r;
}

static int f_default(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND("default", "default_value", "boolean");
    bool boolean = GIVEN(1) && rl__tpl_truthy(ARG(1));
    if (in.t == TV_UNDEF || (boolean && !rl__tpl_truthy(in))) {
        if (GIVEN(0)) *out = tv_ref(ARG(0));
        else return rl__tpl_str_val(c, "", 0, 0, out);
        return 0;
    }
    *out = tv_ref(in);
    return 0;
}

static int f_dictsort(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND("dictsort", "case_sensitive", "by", "reverse");
    bool cs = GIVEN(0) && rl__tpl_truthy(ARG(0)), rev = GIVEN(2) && rl__tpl_truthy(ARG(2));
    int pos = 0;
    if (GIVEN(1)) {
        if (ARG(1).t == TV_STR && strcmp(TV_S(ARG(1))->s, "key") == 0) pos = 0;
        else if (ARG(1).t == TV_STR && strcmp(TV_S(ARG(1))->s, "value") == 0) pos = 1;
        else return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "You can only sort by either \"key\" or \"value\"");
    }
    if (in.t != TV_DICT) {
        if (in.t == TV_UNDEF) return rl__tpl_fail_undef(c, in);
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "'%s' object has no attribute 'items'", rl__tpl_type_name(in));
    }
    tpl_dict *d = TV_D(in);
    tpl_list *pairs = rl__tpl_list_new(c, TV_LIST, d->n);
    if (!pairs) return -1;
    for (size_t i = 0; i < d->n; i++) {
        tpl_list *p = rl__tpl_list_new(c, TV_LIST, 2);
        if (!p) return rl__tpl_obj_decref(c, &pairs->h), -1;
        p->v[0] = tv_ref(d->k[i]);
        p->v[1] = tv_ref(d->v[i]);
        p->n = 2;
        pairs->v[pairs->n++] = tv_obj(TV_LIST, LS_TUPLE, p);
    }
    /* sort by key (pos 0) or value (pos 1) of the pairs */
    tpl_list *r;
    int rc = sorted_list_at(c, pairs, rev, cs, NULL, pos, &r);
    if (!rc) *out = tv_obj(TV_LIST, LS_LIST, r);
    rl__tpl_obj_decref(c, &pairs->h);
    return rc;
}

/* str(in) with HTML escapes, marked safe. */
static int escape_str(tpl_ctx *c, tpl_val in, tpl_val *out) {
    tpl_val s;
    if (rl__tpl_str_of(c, in, &s)) return -1;
    tpl_sb b;
    rl__tpl_sb_init(&b);
    int r = rl__tpl_escape(c, &b, TV_S(s)->s, TV_S(s)->len);
    rl__tpl_decref(c, s);
    if (r) return rl__tpl_sb_drop(c, &b), -1;
    return rl__tpl_sb_val(c, &b, STR_SAFE, out);
}

static int f_escape(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND0("escape");
    if (in.t == TV_STR && (in.sub & STR_SAFE)) return *out = tv_ref(in), 0;
    return escape_str(c, in, out);
}

static int f_forceescape(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND0("forceescape");
    return escape_str(c, in, out);
}

static int f_first(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND0("first");
    if (in.t == TV_GEN) {
        tpl_list *g = TV_L(in);
        if (g->pos < g->n) return *out = tv_ref(g->v[g->pos++]), 0;
        if (rl__tpl_gen_raise(c, g)) return -1;
    } else {
        tpl_list *l;
        if (rl__tpl_iterate(c, in, &l)) return -1;
        bool has = l->n > 0;
        if (has) *out = tv_ref(l->v[0]);
        rl__tpl_obj_decref(c, &l->h);
        if (has) return 0;
    }
    *out = tv_undef_msg(UH_MSG, 0, "No first item, sequence was empty.");
    return 0;
}

static int f_last(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND0("last");
    if (in.t == TV_UNDEF) { /* reversed(Undefined) is empty */
        *out = tv_undef_msg(UH_MSG, 0, "No last item, sequence was empty.");
        return 0;
    }
    if (in.t == TV_GEN || in.t == TV_NS || in.t < TV_STR)
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "'%s' object is not reversible", rl__tpl_type_name(in));
    tpl_list *l;
    if (rl__tpl_iterate(c, in, &l)) return -1;
    bool has = l->n > 0;
    if (has) *out = tv_ref(l->v[l->n - 1]);
    rl__tpl_obj_decref(c, &l->h);
    if (!has) *out = tv_undef_msg(UH_MSG, 0, "No last item, sequence was empty.");
    return 0;
}

/* Python float(str): optional whitespace, sign, digits with single underscores,
 * inf/nan words. */
static bool parse_py_float(const tpl_str *s, double *out) {
    size_t a, b;
    rl__tpl_strip(s, NULL, 3, &a, &b);
    if (a == b || b - a > 400) return false;
    char buf[416];
    size_t m = 0;
    for (size_t i = a; i < b; i++) {
        char ch = s->s[i];
        if (ch == '_') {
            bool ok = i > a && i + 1 < b && s->s[i - 1] >= '0' && s->s[i - 1] <= '9' && s->s[i + 1] >= '0' &&
                      s->s[i + 1] <= '9';
            if (!ok) return false;
            continue;
        }
        if ((unsigned char)ch >= 0x80) return false;
        buf[m++] = ch;
    }
    buf[m] = 0;
    const char *p = buf;
    if (*p == '+' || *p == '-') p++;
    if (strcasecmp(p, "inf") == 0 || strcasecmp(p, "infinity") == 0 || strcasecmp(p, "nan") == 0) {
        *out = strtod(buf, NULL);
        return true;
    }
    for (const char *q = p; *q; q++)
        if (!strchr("0123456789.eE+-", *q)) return false;
    char *end;
    *out = strtod(buf, &end);
    return end != buf && *end == 0;
}

/* Python int(str, base) for base 10 (and 0/2/8/16 prefixes when base is 0). */
static bool parse_py_int(const tpl_str *s, int base, int64_t *out) {
    size_t a, b;
    rl__tpl_strip(s, NULL, 3, &a, &b);
    const char *p = s->s + a, *e = s->s + b;
    bool neg = false;
    if (p < e && (*p == '+' || *p == '-')) neg = *p++ == '-';
    if (p + 1 < e && *p == '0' && (base == 0 || base == 16 || base == 8 || base == 2)) {
        char x = (char)(p[1] | 0x20);
        int pb = x == 'x' ? 16 : x == 'o' ? 8 : x == 'b' ? 2 : 0;
        if (pb && (base == 0 || base == pb)) {
            base = pb;
            p += 2;
            if (p < e && *p == '_') p++;
        }
    }
    if (base == 0) base = 10;
    if (p >= e) return false;
    uint64_t v = 0;
    bool prev_digit = false;
    for (; p < e; p++) {
        if (*p == '_') {
            if (!prev_digit || p + 1 >= e) return false;
            prev_digit = false;
            continue;
        }
        int d = *p >= '0' && *p <= '9' ? *p - '0' : (*p | 0x20) >= 'a' && (*p | 0x20) <= 'z' ? (*p | 0x20) - 'a' + 10 : 99;
        if (d >= base) return false;
        if (v > ((uint64_t)INT64_MAX + 1 - (uint64_t)d) / (uint64_t)base) return false;
        v = v * (uint64_t)base + (uint64_t)d;
        prev_digit = true;
    }
    if (!prev_digit) return false;
    if (!neg && v > (uint64_t)INT64_MAX) return false;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static int f_float(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND("float", "default");
    double d;
    if (in.t == TV_UNDEF) return rl__tpl_fail_undef(c, in); /* float(Undefined) raises */
    if (in.t == TV_FLOAT) return *out = in, 0;
    if (is_intlike(in)) return *out = tv_float((double)as_int(in)), 0;
    if (in.t == TV_STR && parse_py_float(TV_S(in), &d)) return *out = tv_float(d), 0;
    *out = GIVEN(0) ? tv_ref(ARG(0)) : tv_float(0.0);
    return 0;
}

static int f_int(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND("int", "default", "base");
    int64_t base = 10;
    if (GIVEN(1) && want_int(c, "int", "base", ARG(1), &base)) return -1;
    if (in.t == TV_UNDEF) return rl__tpl_fail_undef(c, in); /* int(Undefined) raises */
    if (is_intlike(in)) return *out = tv_int(as_int(in)), 0;
    if (in.t == TV_FLOAT) {
        if (in.u.f != in.u.f || fabs(in.u.f) >= 9.2e18) goto dflt;
        return *out = tv_int((int64_t)in.u.f), 0;
    }
    if (in.t == TV_STR) {
        int64_t v;
        double d;
        if (parse_py_int(TV_S(in), (int)base, &v)) return *out = tv_int(v), 0;
        if (parse_py_float(TV_S(in), &d) && d == d && fabs(d) < 9.2e18) return *out = tv_int((int64_t)d), 0;
    }
dflt:
    *out = GIVEN(0) ? tv_ref(ARG(0)) : tv_int(0);
    return 0;
}

static int f_format(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    if (a->npos && a->nkw)
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "can't handle positional and keyword arguments at the same time");
    tpl_val s;
    if (soft_str(c, in, &s)) return -1;
    tpl_val args;
    int r = 0;
    if (a->nkw) {
        tpl_dict *d = rl__tpl_dict_new(c, TV_DICT);
        r = d ? 0 : -1;
        for (uint32_t i = 0; !r && i < a->nkw; i++)
            r = rl__tpl_dict_set(c, d, tv_obj(TV_STR, 0, (void *)a->kwn[i]), tv_ref(a->kwv[i]));
        args = d ? tv_obj(TV_DICT, 0, d) : tv_none();
    } else {
        tpl_list *l = rl__tpl_list_new(c, TV_LIST, a->npos);
        r = l ? 0 : -1;
        for (uint32_t i = 0; l && i < a->npos; i++) l->v[l->n++] = tv_ref(a->pos[i]);
        args = l ? tv_obj(TV_LIST, LS_TUPLE, l) : tv_none();
    }
    tpl_sb b;
    rl__tpl_sb_init(&b);
    if (!r) r = rl__tpl_percent_format(c, &b, TV_S(s), args);
    rl__tpl_decref(c, args);
    uint8_t sub = s.sub;
    rl__tpl_decref(c, s);
    if (r) return rl__tpl_sb_drop(c, &b), -1;
    return rl__tpl_sb_val(c, &b, sub, out);
}

static int f_indent(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND("indent", "width", "first", "blank");
    tpl_val s, ind;
    if (GIVEN(0) && ARG(0).t == TV_STR) {
        ind = tv_ref(ARG(0));
    } else {
        int64_t w = 4;
        if (GIVEN(0) && want_int(c, "indent", "width", ARG(0), &w)) return -1;
        if (w < 0) w = 0;
        if (w > 4096) return rl__tpl_fail(c, RL_ERR_LIMIT, "indent width too large");
        char sp[4096];
        memset(sp, ' ', (size_t)w);
        if (rl__tpl_str_val(c, sp, (size_t)w, 0, &ind)) return -1;
    }
    bool first = GIVEN(1) && rl__tpl_truthy(ARG(1)), blank = GIVEN(2) && rl__tpl_truthy(ARG(2));
    if (in.t != TV_STR) { /* jinja2 does s += "\n": only strings work */
        rl__tpl_decref(c, ind);
        if (in.t == TV_UNDEF) return rl__tpl_fail_undef(c, in);
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "unsupported operand type(s) for +=: '%s' and 'str'",
                            rl__tpl_type_name(in));
    }
    s = tv_ref(in);
    /* s += "\n"; lines = s.splitlines() -- the added newline makes a trailing one count */
    tpl_sb t;
    rl__tpl_sb_init(&t);
    tpl_str *with_nl = NULL;
    size_t *ln = NULL, nl = 0;
    int r = rl__tpl_sb_add(c, &t, TV_S(s)->s, TV_S(s)->len);
    if (!r) r = rl__tpl_sb_addc(c, &t, '\n');
    if (!r) r = (with_nl = rl__tpl_sb_finish(c, &t)) ? 0 : -1;
    else rl__tpl_sb_drop(c, &t);
    if (!r) r = rl__tpl_splitlines(c, with_nl, &ln, &nl) < 0 ? -1 : 0;
    tpl_sb b;
    rl__tpl_sb_init(&b);
    const tpl_str *is = TV_S(ind);
    if (!r && first) r = rl__tpl_sb_add(c, &b, is->s, is->len);
    for (size_t i = 0; !r && i < nl; i++) {
        size_t x = ln[3 * i], y = ln[3 * i + 1];
        if (i > 0) {
            r = rl__tpl_sb_addc(c, &b, '\n');
            if (!r && (blank || y > x)) r = rl__tpl_sb_add(c, &b, is->s, is->len);
        }
        if (!r) r = rl__tpl_sb_add(c, &b, with_nl->s + x, y - x);
    }
    if (ln) rl__tpl_dealloc(c, ln, (nl ? nl : 1) * 3 * sizeof(size_t));
    if (with_nl) rl__tpl_obj_decref(c, &with_nl->h);
    uint8_t sub = s.sub;
    rl__tpl_decref(c, s);
    rl__tpl_decref(c, ind);
    if (r) return rl__tpl_sb_drop(c, &b), -1;
    return rl__tpl_sb_val(c, &b, sub, out);
}

static int f_items(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND0("items");
    tpl_list *g;
    if (in.t == TV_UNDEF) {
        if (new_gen(c, &g)) return -1;
        *out = tv_obj(TV_GEN, GEN_GENERATOR, g);
        return 0;
    }
    if (in.t != TV_DICT) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "Can only get item pairs from a mapping.");
    tpl_dict *d = TV_D(in);
    g = rl__tpl_list_new(c, TV_GEN, d->n);
    if (!g) return -1;
    for (size_t i = 0; i < d->n; i++) {
        tpl_list *p = rl__tpl_list_new(c, TV_LIST, 2);
        if (!p) return rl__tpl_obj_decref(c, &g->h), -1;
        p->v[0] = tv_ref(d->k[i]);
        p->v[1] = tv_ref(d->v[i]);
        p->n = 2;
        g->v[g->n++] = tv_obj(TV_LIST, LS_TUPLE, p);
    }
    *out = tv_obj(TV_GEN, GEN_GENERATOR, g);
    return 0;
}

static int f_join(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND("join", "d", "attribute");
    tpl_val sep = tv_undef();
    if (GIVEN(0) && rl__tpl_str_of(c, ARG(0), &sep)) return -1;
    if (GIVEN(1) && ARG(1).t != TV_STR && !is_intlike(ARG(1)))
        return rl__tpl_decref(c, sep), rl__tpl_fail(c, RL_ERR_INVALID_ARG, "join(): bad attribute");
    tpl_list *l;
    if (rl__tpl_iterate(c, in, &l)) return rl__tpl_decref(c, sep), -1;
    tpl_sb b;
    rl__tpl_sb_init(&b);
    int r = 0;
    for (size_t i = 0; !r && i < l->n; i++) {
        if (i && sep.t == TV_STR) r = rl__tpl_sb_add(c, &b, TV_S(sep)->s, TV_S(sep)->len);
        if (r) break;
        tpl_val item = l->v[i], got;
        if (GIVEN(1)) {
            if (ARG(1).t == TV_STR) r = get_path(c, item, TV_S(ARG(1)), &got);
            else r = rl__tpl_getitem(c, item, ARG(1), &got);
            if (!r) {
                r = rl__tpl_to_str(c, &b, got);
                rl__tpl_decref(c, got);
            }
        } else {
            r = rl__tpl_to_str(c, &b, item);
        }
    }
    rl__tpl_obj_decref(c, &l->h);
    rl__tpl_decref(c, sep);
    if (r) return rl__tpl_sb_drop(c, &b), -1;
    return rl__tpl_sb_val(c, &b, 0, out);
}

static int length_of(tpl_ctx *c, tpl_val in, int64_t *n) {
    switch (in.t) {
    case TV_UNDEF: *n = 0; return 0;
    case TV_STR: *n = (int64_t)TV_S(in)->ncp; return 0;
    case TV_LIST: *n = (int64_t)TV_L(in)->n; return 0;
    case TV_DICT: *n = (int64_t)TV_D(in)->n; return 0;
    case TV_LOOP: {
        const tpl_loop *l = (const tpl_loop *)in.u.o;
        *n = l->items ? (int64_t)l->items->n : 0;
        return 0;
    }
    default:
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "object of type '%s' has no len()", rl__tpl_type_name(in));
    }
}

static int f_length(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND0("length");
    int64_t n = 0;
    if (length_of(c, in, &n)) return -1;
    *out = tv_int(n);
    return 0;
}

static int f_list(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND0("list");
    tpl_list *l;
    if (rl__tpl_iterate(c, in, &l)) return -1;
    if (in.t == TV_LIST) { /* a copy: list(x) is a new list */
        tpl_list *r = rl__tpl_list_new(c, TV_LIST, l->n);
        if (!r) return rl__tpl_obj_decref(c, &l->h), -1;
        for (size_t i = 0; i < l->n; i++) r->v[r->n++] = tv_ref(l->v[i]);
        rl__tpl_obj_decref(c, &l->h);
        l = r;
    }
    *out = tv_obj(TV_LIST, LS_LIST, l);
    return 0;
}

/* select / reject / selectattr / rejectattr / map share this driver. */
enum { SR_SELECT, SR_REJECT, SR_SELECTATTR, SR_REJECTATTR, SR_MAP };

static int select_like(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out, int kind) {
    static const char *const names[] = {"select", "reject", "selectattr", "rejectattr", "map"};
    tpl_list *g;
    if (new_gen(c, &g)) return -1;
    *out = tv_obj(TV_GEN, GEN_GENERATOR, g);
    uint32_t skip = 0;
    const tpl_str *attr = NULL;
    tpl_val map_default = tv_missing();
    int test_id = -1, filt_id = -1;
    if (kind == SR_MAP) {
        for (uint32_t k = 0; k < a->nkw; k++) {
            if (strcmp(a->kwn[k]->s, "attribute") == 0 && a->kwv[k].t == TV_STR) attr = TV_S(a->kwv[k]);
            else if (strcmp(a->kwn[k]->s, "default") == 0) map_default = a->kwv[k];
        }
        if (!attr) {
            if (a->npos < 1 || a->pos[0].t != TV_STR) {
                rl__tpl_decref(c, *out);
                return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "map requires a filter argument");
            }
            filt_id = rl__tpl_filter_id(TV_S(a->pos[0])->s, TV_S(a->pos[0])->len);
            if (filt_id < 0) {
                rl__tpl_decref(c, *out);
                return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "No filter named '%s'.", TV_S(a->pos[0])->s);
            }
            skip = 1;
        }
    } else {
        if (kind == SR_SELECTATTR || kind == SR_REJECTATTR) {
            if (a->npos < 1 || a->pos[0].t != TV_STR) {
                rl__tpl_decref(c, *out);
                return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%s() missing the attribute argument", names[kind]);
            }
            attr = TV_S(a->pos[0]);
            skip = 1;
        }
        if (a->npos > skip) {
            if (a->pos[skip].t != TV_STR) {
                rl__tpl_decref(c, *out);
                return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%s(): the test name must be a string", names[kind]);
            }
            test_id = rl__tpl_test_id(TV_S(a->pos[skip])->s, TV_S(a->pos[skip])->len);
            if (test_id < 0) {
                rl__tpl_decref(c, *out);
                return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "No test named '%s'.", TV_S(a->pos[skip])->s);
            }
            skip++;
        }
    }
    if (!rl__tpl_truthy(in)) return 0; /* jinja2: `if value:` guards the loop */
    tpl_list *l;
    if (rl__tpl_iterate(c, in, &l)) return rl__tpl_decref(c, *out), -1;
    tpl_args rest = {a->pos + skip, a->npos - skip, a->kwn, a->kwv, kind == SR_MAP && !attr ? a->nkw : 0};
    if (kind != SR_MAP) rest.nkw = 0;
    int r = 0;
    for (size_t i = 0; !r && i < l->n; i++) {
        tpl_val item = l->v[i], v;
        if (attr) {
            r = get_path(c, item, attr, &v);
            if (r) break;
            if (kind == SR_MAP && v.t == TV_UNDEF && tv_given(map_default)) {
                rl__tpl_decref(c, v);
                v = tv_ref(map_default);
            }
        } else {
            v = tv_ref(item);
        }
        if (kind == SR_MAP) {
            if (filt_id >= 0) {
                tpl_val m;
                r = rl__tpl_call_filter(c, filt_id, v, &rest, &m);
                rl__tpl_decref(c, v);
                if (!r) r = rl__tpl_list_push(c, g, m);
            } else {
                r = rl__tpl_list_push(c, g, v);
            }
            continue;
        }
        bool ok;
        if (test_id >= 0) r = rl__tpl_call_test(c, test_id, v, &rest, &ok);
        else ok = rl__tpl_truthy(v);
        rl__tpl_decref(c, v);
        if (r) break;
        bool keep = (kind == SR_SELECT || kind == SR_SELECTATTR) ? ok : !ok;
        if (keep) r = rl__tpl_list_push(c, g, tv_ref(item));
    }
    rl__tpl_obj_decref(c, &l->h);
    if (r) rl__tpl_decref(c, *out);
    return r;
}

static int f_select(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    return select_like(c, in, a, out, SR_SELECT);
}
static int f_reject(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    return select_like(c, in, a, out, SR_REJECT);
}
static int f_selectattr(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    return select_like(c, in, a, out, SR_SELECTATTR);
}
static int f_rejectattr(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    return select_like(c, in, a, out, SR_REJECTATTR);
}
static int f_map(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    return select_like(c, in, a, out, SR_MAP);
}

static int minmax(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out, bool want_max) {
    BIND(want_max ? "max" : "min", "case_sensitive", "attribute");
    bool cs = GIVEN(0) && rl__tpl_truthy(ARG(0));
    const tpl_str *attr = GIVEN(1) && ARG(1).t == TV_STR ? TV_S(ARG(1)) : NULL;
    tpl_list *l, *sorted;
    if (rl__tpl_iterate(c, in, &l)) return -1;
    if (l->n == 0) {
        rl__tpl_obj_decref(c, &l->h);
        *out = tv_undef_msg(UH_MSG, 0, "No aggregated item, sequence was empty.");
        return 0;
    }
    /* the first item of a stable sort (descending for max) is the first minimal (maximal)
     * item, which is what Python's min and max return */
    int r = sorted_list(c, l, want_max, cs, attr, &sorted);
    rl__tpl_obj_decref(c, &l->h);
    if (r) return -1;
    *out = tv_ref(sorted->v[0]);
    rl__tpl_obj_decref(c, &sorted->h);
    return 0;
}
static int f_max(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) { return minmax(c, in, a, out, true); }
static int f_min(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) { return minmax(c, in, a, out, false); }

static int f_replace(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND("replace", "old", "new", "count");
    tpl_val s, o, n;
    if (rl__tpl_str_of(c, in, &s)) return -1;
    if (rl__tpl_str_of(c, ARG(0), &o)) return rl__tpl_decref(c, s), -1;
    if (rl__tpl_str_of(c, ARG(1), &n)) return rl__tpl_decref(c, s), rl__tpl_decref(c, o), -1;
    tpl_args ma = {NULL, 0, NULL, NULL, 0};
    tpl_val pos[3] = {o, n, GIVEN(2) ? ARG(2) : tv_int(-1)};
    ma.pos = pos;
    ma.npos = 3;
    bool unsafe;
    int id = rl__tpl_method_id(s, "replace", 7, &unsafe);
    tpl_val plain = tv_obj(TV_STR, 0, s.u.o); /* not autoescaping: str(s).replace */
    int r = rl__tpl_call_method(c, id, plain, &ma, out);
    rl__tpl_decref(c, s);
    rl__tpl_decref(c, o);
    rl__tpl_decref(c, n);
    return r;
}

static int f_reverse(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND0("reverse");
    if (in.t == TV_STR) {
        tpl_str *s = TV_S(in);
        tpl_sb b;
        rl__tpl_sb_init(&b);
        size_t i = s->len;
        while (i > 0) {
            size_t j = i - 1;
            while (j > 0 && ((unsigned char)s->s[j] & 0xC0) == 0x80) j--;
            if (rl__tpl_sb_add(c, &b, s->s + j, i - j)) return rl__tpl_sb_drop(c, &b), -1;
            i = j;
        }
        return rl__tpl_sb_val(c, &b, in.sub, out);
    }
    tpl_list *l;
    if (rl__tpl_iterate(c, in, &l)) return -1;
    bool as_gen = in.t == TV_LIST || in.t == TV_DICT || in.t == TV_UNDEF; /* reversed(x) */
    tpl_list *r = rl__tpl_list_new(c, as_gen ? TV_GEN : TV_LIST, l->n);
    if (!r) return rl__tpl_obj_decref(c, &l->h), -1;
    for (size_t i = l->n; i > 0; i--) r->v[r->n++] = tv_ref(l->v[i - 1]);
    rl__tpl_obj_decref(c, &l->h);
    *out = as_gen ? tv_obj(TV_GEN, GEN_REVERSE, r) : tv_obj(TV_LIST, LS_LIST, r);
    return 0;
}

/* Python round(x, n): correctly rounded, ties to even on the exact binary value,
 * which is what printf's %.*f gives. */
static int f_round(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND("round", "precision", "method");
    int64_t prec = 0;
    if (GIVEN(0) && want_int(c, "round", "precision", ARG(0), &prec)) return -1;
    const char *method = GIVEN(1) && ARG(1).t == TV_STR ? TV_S(ARG(1))->s : "common";
    if (strcmp(method, "common") && strcmp(method, "ceil") && strcmp(method, "floor"))
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "method must be common, ceil or floor");
    if (in.t == TV_UNDEF) return rl__tpl_fail_undef(c, in);
    if (!is_intlike(in) && in.t != TV_FLOAT)
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "type %s doesn't define __round__ method", rl__tpl_type_name(in));
    if (strcmp(method, "common") == 0) {
        if (is_intlike(in)) return *out = tv_int(as_int(in)), 0; /* round(int, n) stays int */
        double x = in.u.f;
        if (x != x || isinf(x) || prec > 300) return *out = in, 0;
        if (prec < -300) return *out = tv_float(0.0 * x), 0;
        char buf[512];
        if (prec >= 0) {
            snprintf(buf, sizeof(buf), "%.*f", (int)prec, x);
            return *out = tv_float(strtod(buf, NULL)), 0;
        }
        double p = pow(10.0, (double)-prec);
        double y = x / p;
        snprintf(buf, sizeof(buf), "%.0f", y);
        return *out = tv_float(strtod(buf, NULL) * p), 0;
    }
    double x = is_intlike(in) ? (double)as_int(in) : in.u.f, p = pow(10.0, (double)prec);
    double y = strcmp(method, "ceil") == 0 ? ceil(x * p) : floor(x * p);
    *out = tv_float(y / p);
    return 0;
}

static int f_safe(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND0("safe");
    if (rl__tpl_str_of(c, in, out)) return -1;
    out->sub |= STR_SAFE;
    return 0;
}

static int f_slice(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND("slice", "slices", "fill_with");
    int64_t slices = 0;
    if (want_int(c, "slice", "slices", ARG(0), &slices)) return -1;
    if (slices <= 0 || slices > 100000) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "slice(): bad number of slices");
    tpl_list *l, *g;
    if (rl__tpl_iterate(c, in, &l)) return -1;
    if (new_gen(c, &g)) return rl__tpl_obj_decref(c, &l->h), -1;
    size_t n = l->n, per = n / (size_t)slices, extra = n % (size_t)slices, off = 0;
    int r = 0;
    for (size_t s = 0; !r && s < (size_t)slices; s++) {
        size_t start = off + (s < extra ? s : extra);
        size_t end = start + per + (s < extra ? 1 : 0);
        off += per;
        tpl_list *part = rl__tpl_list_new(c, TV_LIST, end - start + 1);
        if (!part) {
            r = -1;
            break;
        }
        for (size_t i = start; i < end; i++) part->v[part->n++] = tv_ref(l->v[i]);
        if (GIVEN(1) && s >= extra && extra) part->v[part->n++] = tv_ref(ARG(1));
        r = rl__tpl_list_push(c, g, tv_obj(TV_LIST, LS_LIST, part));
    }
    rl__tpl_obj_decref(c, &l->h);
    if (r) return rl__tpl_obj_decref(c, &g->h), -1;
    *out = tv_obj(TV_GEN, GEN_GENERATOR, g);
    return 0;
}

static int f_sort(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND("sort", "reverse", "case_sensitive", "attribute");
    bool rev = GIVEN(0) && rl__tpl_truthy(ARG(0)), cs = GIVEN(1) && rl__tpl_truthy(ARG(1));
    const tpl_str *attr = GIVEN(2) && ARG(2).t == TV_STR ? TV_S(ARG(2)) : NULL;
    tpl_list *l, *s;
    if (rl__tpl_iterate(c, in, &l)) return -1;
    int r = sorted_list(c, l, rev, cs, attr, &s);
    rl__tpl_obj_decref(c, &l->h);
    if (r) return -1;
    *out = tv_obj(TV_LIST, LS_LIST, s);
    return 0;
}

static int f_string(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND0("string");
    return soft_str(c, in, out);
}

static int f_sum(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND("sum", "attribute", "start");
    tpl_val acc = GIVEN(1) ? tv_ref(ARG(1)) : tv_int(0);
    tpl_list *l;
    if (rl__tpl_iterate(c, in, &l)) return rl__tpl_decref(c, acc), -1;
    int r = 0;
    for (size_t i = 0; !r && i < l->n; i++) {
        tpl_val v, nx;
        if (GIVEN(0) && ARG(0).t == TV_STR) r = get_path(c, l->v[i], TV_S(ARG(0)), &v);
        else v = tv_ref(l->v[i]);
        if (r) break;
        r = rl__tpl_binop(c, OP_ADD, acc, v, &nx);
        rl__tpl_decref(c, v);
        if (!r) {
            rl__tpl_decref(c, acc);
            acc = nx;
        }
    }
    rl__tpl_obj_decref(c, &l->h);
    if (r) return rl__tpl_decref(c, acc), -1;
    *out = acc;
    return 0;
}

static int f_tojson(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND("tojson", "ensure_ascii", "indent", "separators", "sort_keys");
    tpl_json_opts o = {0};
    o.ensure_ascii = GIVEN(0) && rl__tpl_truthy(ARG(0));
    o.sort_keys = GIVEN(3) && rl__tpl_truthy(ARG(3));
    char spaces[256];
    if (GIVEN(1) && ARG(1).t != TV_NONE) {
        if (ARG(1).t == TV_STR) {
            o.indent = TV_S(ARG(1))->s;
            o.indent_len = TV_S(ARG(1))->len;
        } else if (is_intlike(ARG(1))) {
            int64_t w = as_int(ARG(1));
            if (w > 255) return rl__tpl_fail(c, RL_ERR_LIMIT, "tojson(): indent too large");
            if (w < 0) w = 0;
            memset(spaces, ' ', (size_t)w);
            o.indent = spaces;
            o.indent_len = (size_t)w;
        } else {
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "tojson(): indent must be an integer or a string");
        }
    }
    o.item_sep = o.indent ? "," : ", ";
    o.key_sep = ": ";
    if (GIVEN(2) && ARG(2).t != TV_NONE) {
        tpl_val sp = ARG(2);
        if (sp.t != TV_LIST || TV_L(sp)->n != 2 || TV_L(sp)->v[0].t != TV_STR || TV_L(sp)->v[1].t != TV_STR)
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "tojson(): separators must be a pair of strings");
        o.item_sep = TV_S(TV_L(sp)->v[0])->s;
        o.item_sep_len = TV_S(TV_L(sp)->v[0])->len;
        o.key_sep = TV_S(TV_L(sp)->v[1])->s;
        o.key_sep_len = TV_S(TV_L(sp)->v[1])->len;
    } else {
        o.item_sep_len = strlen(o.item_sep);
        o.key_sep_len = 2;
    }
    tpl_sb b;
    rl__tpl_sb_init(&b);
    if (rl__tpl_tojson(c, &b, in, &o)) return rl__tpl_sb_drop(c, &b), -1;
    return rl__tpl_sb_val(c, &b, 0, out);
}

static int f_trim(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND("trim", "chars");
    tpl_val s;
    if (soft_str(c, in, &s)) return -1;
    const tpl_str *chars = GIVEN(0) && ARG(0).t == TV_STR ? TV_S(ARG(0)) : NULL;
    size_t x, y;
    rl__tpl_strip(TV_S(s), chars, 3, &x, &y);
    int r;
    if (x == 0 && y == TV_S(s)->len) {
        *out = s;
        return 0;
    }
    r = rl__tpl_str_val(c, TV_S(s)->s + x, y - x, s.sub, out);
    rl__tpl_decref(c, s);
    return r;
}

static int f_truncate(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND("truncate", "length", "killwords", "end", "leeway");
    int64_t length = 255, leeway = 5;
    if (GIVEN(0) && want_int(c, "truncate", "length", ARG(0), &length)) return -1;
    if (GIVEN(3) && ARG(3).t != TV_NONE && want_int(c, "truncate", "leeway", ARG(3), &leeway)) return -1;
    bool kill = GIVEN(1) && rl__tpl_truthy(ARG(1));
    tpl_val s, end;
    if (GIVEN(2)) {
        if (rl__tpl_str_of(c, ARG(2), &end)) return -1;
    } else if (rl__tpl_str_val(c, "...", 3, 0, &end)) {
        return -1;
    }
    int64_t el = (int64_t)TV_S(end)->ncp;
    if (length < el || leeway < 0) {
        rl__tpl_decref(c, end);
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "truncate(): expected length >= %lld and leeway >= 0", (long long)el);
    }
    if (in.t != TV_STR) { /* jinja2 takes len(s) and slices: only strings really work */
        rl__tpl_decref(c, end);
        int64_t len;
        if (in.t == TV_UNDEF) len = 0;
        else if (in.t == TV_LIST) len = (int64_t)TV_L(in)->n;
        else if (in.t == TV_DICT) len = (int64_t)TV_D(in)->n;
        else
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "object of type '%s' has no len()", rl__tpl_type_name(in));
        if (len <= length + leeway) return *out = tv_ref(in), 0;
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "'%s' object has no attribute 'rsplit'", rl__tpl_type_name(in));
    }
    s = tv_ref(in);
    tpl_str *str = TV_S(s);
    if ((int64_t)str->ncp <= length + leeway) {
        rl__tpl_decref(c, end);
        *out = s;
        return 0;
    }
    size_t cut = rl__tpl_cp_offset(str, length - el);
    if (!kill) { /* s[:n].rsplit(" ", 1)[0] */
        for (size_t i = cut; i > 0; i--)
            if (str->s[i - 1] == ' ') {
                cut = i - 1;
                break;
            }
    }
    tpl_sb b;
    rl__tpl_sb_init(&b);
    int r = rl__tpl_sb_add(c, &b, str->s, cut);
    if (!r) r = rl__tpl_sb_add(c, &b, TV_S(end)->s, TV_S(end)->len);
    rl__tpl_decref(c, end);
    uint8_t sub = s.sub;
    rl__tpl_decref(c, s);
    if (r) return rl__tpl_sb_drop(c, &b), -1;
    return rl__tpl_sb_val(c, &b, sub, out);
}

static int f_unique(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND("unique", "case_sensitive", "attribute");
    bool cs = GIVEN(0) && rl__tpl_truthy(ARG(0));
    const tpl_str *attr = GIVEN(1) && ARG(1).t == TV_STR ? TV_S(ARG(1)) : NULL;
    tpl_list *l, *g, *seen;
    if (rl__tpl_iterate(c, in, &l)) return -1;
    if (new_gen(c, &g)) return rl__tpl_obj_decref(c, &l->h), -1;
    seen = rl__tpl_list_new(c, TV_LIST, 0);
    int r = seen ? 0 : -1;
    for (size_t i = 0; !r && i < l->n; i++) {
        tpl_val k, f;
        if (attr) r = get_path(c, l->v[i], attr, &k);
        else k = tv_ref(l->v[i]);
        if (r) break;
        r = fold_key(c, k, cs, &f);
        rl__tpl_decref(c, k);
        if (r) break;
        bool dup = false;
        for (size_t j = 0; !r && j < seen->n && !dup; j++) r = rl__tpl_eq(c, seen->v[j], f, &dup);
        if (!r) r = rl__tpl_charge(c, seen->n / 16);
        if (r || dup) {
            rl__tpl_decref(c, f);
            continue;
        }
        r = rl__tpl_list_push(c, seen, f);
        if (!r) r = rl__tpl_list_push(c, g, tv_ref(l->v[i]));
    }
    rl__tpl_obj_decref(c, &l->h);
    if (seen) rl__tpl_obj_decref(c, &seen->h);
    if (r) return rl__tpl_obj_decref(c, &g->h), -1;
    *out = tv_obj(TV_GEN, GEN_GENERATOR, g);
    return 0;
}

static int f_wordcount(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    BIND0("wordcount");
    tpl_val s;
    if (rl__tpl_str_of(c, in, &s)) return -1;
    tpl_str *str = TV_S(s);
    int64_t n = 0;
    bool inword = false;
    for (size_t i = 0; i < str->len;) {
        int32_t cp = rl__tpl_utf8_next(str->s, str->len, &i);
        bool w = cp == '_' || (cp < 128 ? ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') || (cp >= '0' && cp <= '9')
                                        : !rl__tpl_isspace(cp));
        if (w && !inword) n++;
        inword = w;
    }
    rl__tpl_decref(c, s);
    *out = tv_int(n);
    return 0;
}

static int f_unsupported(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out);

/* ---- filter table --------------------------------------------------------------- */

static const struct {
    const char *name;
    filter_fn fn;
} FILTERS[] = {
    {"abs", f_abs},           {"attr", f_attr},
    {"batch", f_batch},       {"capitalize", f_capitalize},
    {"center", f_center},     {"count", f_length},
    {"d", f_default},         {"default", f_default},
    {"dictsort", f_dictsort}, {"e", f_escape},
    {"escape", f_escape},     {"first", f_first},
    {"float", f_float},       {"forceescape", f_forceescape},
    {"format", f_format},     {"indent", f_indent},
    {"int", f_int},           {"items", f_items},
    {"join", f_join},         {"last", f_last},
    {"length", f_length},     {"list", f_list},
    {"lower", f_lower},       {"map", f_map},
    {"max", f_max},           {"min", f_min},
    {"reject", f_reject},     {"rejectattr", f_rejectattr},
    {"replace", f_replace},   {"reverse", f_reverse},
    {"round", f_round},       {"safe", f_safe},
    {"select", f_select},     {"selectattr", f_selectattr},
    {"slice", f_slice},       {"sort", f_sort},
    {"string", f_string},     {"sum", f_sum},
    {"title", f_title},       {"tojson", f_tojson},
    {"trim", f_trim},         {"truncate", f_truncate},
    {"unique", f_unique},     {"upper", f_upper},
    {"wordcount", f_wordcount},
    /* jinja2 built-ins not implemented here: known names, fail when run */
    {"filesizeformat", f_unsupported}, {"groupby", f_unsupported},
    {"pprint", f_unsupported},         {"random", f_unsupported},
    {"striptags", f_unsupported},      {"urlencode", f_unsupported},
    {"urlize", f_unsupported},         {"wordwrap", f_unsupported},
    {"xmlattr", f_unsupported},
};

/* Never called: rl__tpl_call_filter reports these by name. */
static int f_unsupported(tpl_ctx *c, tpl_val in, const tpl_args *a, tpl_val *out) {
    (void)in, (void)a, (void)out;
    return rl__tpl_fail(c, RL_ERR_UNSUPPORTED, "filter not supported");
}

int rl__tpl_filter_id(const char *name, size_t n) {
    for (size_t i = 0; i < RL_ARRAY_LEN(FILTERS); i++)
        if (strlen(FILTERS[i].name) == n && memcmp(FILTERS[i].name, name, n) == 0) return (int)i;
    return -1;
}

const char *rl__tpl_filter_name(int id) {
    return id >= 0 && (size_t)id < RL_ARRAY_LEN(FILTERS) ? FILTERS[id].name : "?";
}

int rl__tpl_call_filter(tpl_ctx *c, int id, tpl_val in, const tpl_args *a, tpl_val *out) {
    if (id < 0 || (size_t)id >= RL_ARRAY_LEN(FILTERS)) return rl__tpl_fail(c, RL_ERR_INTERNAL, "bad filter");
    if (FILTERS[id].fn == f_unsupported)
        return rl__tpl_fail(c, RL_ERR_UNSUPPORTED, "the '%s' filter is not supported", FILTERS[id].name);
    *out = tv_none();
    int r = FILTERS[id].fn(c, in, a, out);
    if (r) {
        *out = tv_none();
        /* jinja2's select, map, unique, items, batch and slice are generator functions:
         * nothing runs until the result is read, so a type error must wait until then */
        filter_fn fn = FILTERS[id].fn;
        bool lazy = fn == f_select || fn == f_reject || fn == f_selectattr || fn == f_rejectattr ||
                    fn == f_map || fn == f_unique || fn == f_items || fn == f_batch || fn == f_slice;
        if (lazy && (c->status == RL_ERR_INVALID_ARG || c->status == RL_ERR_BAD_FILE)) {
            c->status = RL_OK; /* the error now belongs to the generator */
            if (c->err && c->err_size) c->err[0] = 0;
            tpl_list *g = rl__tpl_list_new(c, TV_GEN, 0);
            tpl_str *m = g ? rl__tpl_str_new(c, c->msg, strlen(c->msg)) : NULL;
            if (!m) {
                if (g) rl__tpl_obj_decref(c, &g->h);
                return -1;
            }
            g->err = m;
            *out = tv_obj(TV_GEN, GEN_GENERATOR, g);
            return 0;
        }
    }
    return r;
}

/* ---- tests ------------------------------------------------------------------------ */

enum {
    T_BOOLEAN, T_CALLABLE, T_DEFINED, T_DIVISIBLEBY, T_EQ, T_ESCAPED, T_EVEN, T_FALSE, T_FILTER,
    T_FLOAT, T_GE, T_GT, T_IN, T_INTEGER, T_ITERABLE, T_LE, T_LOWER, T_LT, T_MAPPING, T_NE,
    T_NONE, T_NUMBER, T_ODD, T_SAMEAS, T_SEQUENCE, T_STRING, T_TEST, T_TRUE, T_UNDEFINED, T_UPPER
};

static const struct {
    const char *name;
    int id;
} TESTS[] = {
    {"boolean", T_BOOLEAN}, {"callable", T_CALLABLE}, {"defined", T_DEFINED},
    {"divisibleby", T_DIVISIBLEBY}, {"eq", T_EQ}, {"equalto", T_EQ}, {"==", T_EQ},
    {"escaped", T_ESCAPED}, {"even", T_EVEN}, {"false", T_FALSE}, {"filter", T_FILTER},
    {"float", T_FLOAT}, {"ge", T_GE}, {">=", T_GE}, {"gt", T_GT}, {"greaterthan", T_GT},
    {">", T_GT}, {"in", T_IN}, {"integer", T_INTEGER}, {"iterable", T_ITERABLE},
    {"le", T_LE}, {"<=", T_LE}, {"lower", T_LOWER}, {"lt", T_LT}, {"lessthan", T_LT},
    {"<", T_LT}, {"mapping", T_MAPPING}, {"ne", T_NE}, {"!=", T_NE}, {"none", T_NONE},
    {"number", T_NUMBER}, {"odd", T_ODD}, {"sameas", T_SAMEAS}, {"sequence", T_SEQUENCE},
    {"string", T_STRING}, {"test", T_TEST}, {"true", T_TRUE}, {"undefined", T_UNDEFINED},
    {"upper", T_UPPER},
};

int rl__tpl_test_id(const char *name, size_t n) {
    for (size_t i = 0; i < RL_ARRAY_LEN(TESTS); i++)
        if (strlen(TESTS[i].name) == n && memcmp(TESTS[i].name, name, n) == 0) return (int)i;
    return -1;
}

const char *rl__tpl_test_name(int id) {
    return id >= 0 && (size_t)id < RL_ARRAY_LEN(TESTS) ? TESTS[id].name : "?";
}

static int one_arg(tpl_ctx *c, const char *name, const tpl_args *a, tpl_val *v) {
    if (a->npos + a->nkw != 1)
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "test '%s' takes exactly one argument", name);
    *v = a->npos ? a->pos[0] : a->kwv[0];
    return 0;
}

static int case_test(tpl_ctx *c, tpl_val in, bool upper, bool *out) {
    tpl_val s;
    if (rl__tpl_str_of(c, in, &s)) return -1;
    tpl_sb b;
    rl__tpl_sb_init(&b);
    /* islower: has a cased character and lower() leaves it unchanged (and likewise upper) */
    int r = rl__tpl_case(c, &b, TV_S(s)->s, TV_S(s)->len, upper ? CASE_UPPER : CASE_LOWER);
    tpl_sb o;
    rl__tpl_sb_init(&o);
    if (!r) r = rl__tpl_case(c, &o, TV_S(s)->s, TV_S(s)->len, upper ? CASE_LOWER : CASE_UPPER);
    if (!r) {
        size_t ln = tpl_sb_len(&b), lo = tpl_sb_len(&o), ls = TV_S(s)->len;
        bool same = ln == ls && (ls == 0 || memcmp(b.s->s, TV_S(s)->s, ls) == 0);
        bool cased = !(lo == ls && (ls == 0 || memcmp(o.s->s, TV_S(s)->s, ls) == 0));
        *out = same && (cased || ln != ls);
    }
    rl__tpl_sb_drop(c, &b);
    rl__tpl_sb_drop(c, &o);
    rl__tpl_decref(c, s);
    return r;
}

int rl__tpl_call_test(tpl_ctx *c, int idx, tpl_val in, const tpl_args *a, bool *out) {
    if (idx < 0 || (size_t)idx >= RL_ARRAY_LEN(TESTS)) return rl__tpl_fail(c, RL_ERR_INTERNAL, "bad test");
    const char *name = TESTS[idx].name;
    int id = TESTS[idx].id;
    tpl_val arg = tv_none();
    bool needs_arg = id == T_DIVISIBLEBY || id == T_EQ || id == T_GE || id == T_GT || id == T_IN ||
                     id == T_LE || id == T_LT || id == T_NE || id == T_SAMEAS;
    if (needs_arg) {
        if (one_arg(c, name, a, &arg)) return -1;
    } else if ((id != T_FILTER && id != T_TEST) && (a->npos || a->nkw)) {
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "test '%s' takes no arguments", name);
    }
    int r;
    switch (id) {
    case T_BOOLEAN: *out = in.t == TV_BOOL; return 0;
    case T_CALLABLE: *out = in.t == TV_FUNC; return 0;
    case T_DEFINED: *out = in.t != TV_UNDEF; return 0;
    case T_UNDEFINED: *out = in.t == TV_UNDEF; return 0;
    case T_ESCAPED: *out = in.t == TV_STR && (in.sub & STR_SAFE); return 0;
    case T_FALSE: *out = in.t == TV_BOOL && !in.u.b; return 0;
    case T_TRUE: *out = in.t == TV_BOOL && in.u.b; return 0;
    case T_FLOAT: *out = in.t == TV_FLOAT; return 0;
    case T_INTEGER: *out = in.t == TV_INT; return 0;
    case T_NUMBER: *out = in.t == TV_INT || in.t == TV_FLOAT || in.t == TV_BOOL; return 0;
    case T_MAPPING: *out = in.t == TV_DICT; return 0;
    case T_NONE: *out = in.t == TV_NONE; return 0;
    case T_STRING: *out = in.t == TV_STR; return 0;
    case T_ITERABLE:
        *out = in.t == TV_STR || in.t == TV_LIST || in.t == TV_DICT || in.t == TV_GEN || in.t == TV_UNDEF ||
               in.t == TV_LOOP;
        return 0;
    case T_SEQUENCE:
        *out = in.t == TV_STR || in.t == TV_DICT || in.t == TV_UNDEF ||
               (in.t == TV_LIST && (in.sub == LS_LIST || in.sub == LS_TUPLE || in.sub == LS_RANGE));
        return 0;
    case T_EVEN: case T_ODD: case T_DIVISIBLEBY: { /* value % n == 0 (odd: == 1) */
        tpl_val m;
        if (id != T_DIVISIBLEBY) arg = tv_int(2);
        if (rl__tpl_binop(c, OP_MOD, in, arg, &m)) return -1;
        r = rl__tpl_eq(c, m, tv_int(id == T_ODD ? 1 : 0), out);
        rl__tpl_decref(c, m);
        return r;
    }
    case T_EQ: return rl__tpl_eq(c, in, arg, out);
    case T_NE:
        if (rl__tpl_eq(c, in, arg, out)) return -1;
        *out = !*out;
        return 0;
    case T_LT: case T_LE: case T_GT: case T_GE: {
        int cr;
        const char *op = id == T_LT ? "<" : id == T_LE ? "<=" : id == T_GT ? ">" : ">=";
        if (rl__tpl_cmp(c, in, arg, op, &cr)) return -1;
        *out = id == T_LT ? cr == -1 : id == T_LE ? (cr == -1 || cr == 0) : id == T_GT ? cr == 1
                                                                                        : (cr == 1 || cr == 0);
        return 0;
    }
    case T_IN: {
        /* value in seq, with Python's rules (same as the `in` operator) */
        if (arg.t == TV_STR) {
            if (in.t != TV_STR)
                return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "'in <string>' requires string as left operand, not %s",
                                    rl__tpl_type_name(in));
            *out = TV_S(in)->len == 0 ||
                   memmem(TV_S(arg)->s, TV_S(arg)->len, TV_S(in)->s, TV_S(in)->len) != NULL;
            return 0;
        }
        if (arg.t == TV_UNDEF) return *out = false, 0;
        if (arg.t == TV_DICT) {
            tpl_val *slot;
            if (rl__tpl_dict_find(c, TV_D(arg), in, &slot)) return -1;
            *out = slot != NULL;
            return 0;
        }
        if (arg.t != TV_LIST && arg.t != TV_GEN)
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "argument of type '%s' is not iterable", rl__tpl_type_name(arg));
        tpl_list *l = TV_L(arg);
        size_t i = arg.t == TV_GEN ? l->pos : 0;
        *out = false;
        for (; i < l->n && !*out; i++)
            if (rl__tpl_eq(c, l->v[i], in, out)) return -1;
        if (arg.t == TV_GEN) {
            l->pos = i;
            if (!*out && rl__tpl_gen_raise(c, l)) return -1;
        }
        return 0;
    }
    case T_SAMEAS:
        if (in.t != arg.t) *out = false;
        else if (in.t == TV_NONE || in.t == TV_UNDEF) *out = in.t == TV_NONE;
        else if (in.t == TV_BOOL) *out = in.u.b == arg.u.b;
        else if (in.t == TV_INT) *out = in.u.i == arg.u.i && in.u.i >= -5 && in.u.i <= 256;
        else if (in.t == TV_FLOAT) *out = false;
        else *out = in.u.o == arg.u.o;
        return 0;
    case T_LOWER: return case_test(c, in, false, out);
    case T_UPPER: return case_test(c, in, true, out);
    case T_FILTER: case T_TEST: {
        tpl_val nm = tv_none();
        if (one_arg(c, name, a, &nm)) return -1;
        if (nm.t != TV_STR) return *out = false, 0;
        int found = id == T_FILTER ? rl__tpl_filter_id(TV_S(nm)->s, TV_S(nm)->len)
                                   : rl__tpl_test_id(TV_S(nm)->s, TV_S(nm)->len);
        *out = found >= 0;
        return 0;
    }
    default: r = rl__tpl_fail(c, RL_ERR_INTERNAL, "bad test");
    }
    return r;
}
