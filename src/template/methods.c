/*
 * methods.c - the Python methods templates call on values (str.split, str.startswith,
 * dict.get, dict.items, list.index, loop.cycle, ...), with the sandbox's rule that
 * methods which modify a list or dict are unsafe; Python's printf-style `%` formatting
 * and str.format; Unicode case mapping (utf8proc's simple mappings) and whitespace.
 */
#include "template/tpl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <utf8proc.h>

/* ---- case mapping ------------------------------------------------------------- */

static bool is_cased(int32_t cp) {
    utf8proc_category_t k = utf8proc_category(cp);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}

static int32_t up(int32_t cp) {
    if (cp < 128) return cp >= 'a' && cp <= 'z' ? cp - 32 : cp;
    return utf8proc_toupper(cp);
}
static int32_t low(int32_t cp) {
    if (cp < 128) return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp;
    return utf8proc_tolower(cp);
}
static int32_t titlec(int32_t cp) {
    if (cp < 128) return up(cp);
    return utf8proc_totitle(cp);
}

static bool jinja_title_sep(int32_t cp) {
    return cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<' || rl__tpl_isspace(cp);
}

/* The commonest unconditional multi-character mappings of Unicode's SpecialCasing.txt,
 * which utf8proc's simple mappings lack: Python's "ß".upper() is "SS". */
static const struct {
    int32_t cp;
    const char *upper, *title, *lower;
} SPECIAL[] = {
    {0x00DF, "SS", "Ss", NULL},   {0xFB00, "FF", "Ff", NULL},  {0xFB01, "FI", "Fi", NULL},
    {0xFB02, "FL", "Fl", NULL},   {0xFB03, "FFI", "Ffi", NULL}, {0xFB04, "FFL", "Ffl", NULL},
    {0xFB05, "ST", "St", NULL},   {0xFB06, "ST", "St", NULL},  {0x0149, "\xCA\xBCN", NULL, NULL},
    {0x0130, NULL, NULL, "i\xCC\x87"},
};

static const char *special(int32_t cp, int which) {
    if (cp < 0xDF) return NULL;
    for (size_t i = 0; i < RL_ARRAY_LEN(SPECIAL); i++)
        if (SPECIAL[i].cp == cp) return which == 0 ? SPECIAL[i].upper : which == 1 ? SPECIAL[i].title : SPECIAL[i].lower;
    return NULL;
}

int rl__tpl_case(tpl_ctx *c, tpl_sb *b, const char *s, size_t n, int mode) {
    bool prev_cased = false, first = true, cap_next = true;
    for (size_t i = 0; i < n;) {
        int32_t cp = rl__tpl_utf8_next(s, n, &i), o = cp;
        if (cp >= 0xDF) {
            bool was_first = first, was_cap = cap_next, was_prev = prev_cased;
            int which = -1;
            switch (mode) {
            case CASE_UPPER: which = 0; break;
            case CASE_LOWER: which = 2; break;
            case CASE_CAPITALIZE: which = was_first ? 1 : 2; break;
            case CASE_TITLE: which = was_prev ? 2 : 1; break;
            case CASE_JINJA_TITLE: which = was_cap ? 0 : 2; break;
            default: break;
            }
            const char *sp = which >= 0 ? special(cp, which) : NULL;
            if (sp) {
                first = false;
                cap_next = false;
                prev_cased = true;
                if (rl__tpl_sb_add(c, b, sp, strlen(sp))) return -1;
                continue;
            }
        }
        switch (mode) {
        case CASE_UPPER: o = up(cp); break;
        case CASE_LOWER: o = low(cp); break;
        case CASE_SWAP: o = up(cp) != cp ? up(cp) : low(cp); break;
        case CASE_CAPITALIZE: o = first ? titlec(cp) : low(cp); break;
        case CASE_TITLE:
            o = prev_cased ? low(cp) : titlec(cp);
            prev_cased = is_cased(cp);
            break;
        case CASE_JINJA_TITLE:
            if (jinja_title_sep(cp)) {
                cap_next = true;
            } else {
                o = cap_next ? up(cp) : low(cp);
                cap_next = false;
            }
            break;
        }
        first = false;
        if (rl__tpl_sb_addcp(c, b, o)) return -1;
    }
    return 0;
}

/* ---- whitespace and lines ------------------------------------------------------ */

static bool in_chars(const tpl_str *chars, int32_t cp) {
    for (size_t i = 0; i < chars->len;) {
        if (rl__tpl_utf8_next(chars->s, chars->len, &i) == cp) return true;
    }
    return false;
}

void rl__tpl_strip(const tpl_str *s, const tpl_str *chars, int which, size_t *pa, size_t *pb) {
    size_t a = 0, b = s->len;
    if (which & 1) {
        while (a < b) {
            size_t j = a;
            int32_t cp = rl__tpl_utf8_next(s->s, b, &j);
            if (chars ? !in_chars(chars, cp) : !rl__tpl_isspace(cp)) break;
            a = j;
        }
    }
    if (which & 2) {
        while (b > a) {
            size_t j = b - 1;
            while (j > a && ((unsigned char)s->s[j] & 0xC0) == 0x80) j--;
            size_t k = j;
            int32_t cp = rl__tpl_utf8_next(s->s, b, &k);
            if (chars ? !in_chars(chars, cp) : !rl__tpl_isspace(cp)) break;
            b = j;
        }
    }
    *pa = a;
    *pb = b;
}

/* Line boundaries of str.splitlines: \n \r \r\n \v \f \x1c \x1d \x1e \x85 \u2028 \u2029.
 * out[3i] start, out[3i+1] end without the line break, out[3i+2] end with it. */
int rl__tpl_splitlines(tpl_ctx *c, const tpl_str *s, size_t **out, size_t *nout) {
    size_t cap = 16, n = 0;
    size_t *v = rl__tpl_alloc(c, cap * 3 * sizeof(size_t));
    if (!v) return -1;
    size_t start = 0;
    for (size_t i = 0; i < s->len;) {
        size_t j = i;
        int32_t cp = rl__tpl_utf8_next(s->s, s->len, &j);
        bool brk = cp == '\n' || cp == '\r' || cp == 0x0b || cp == 0x0c || cp == 0x1c || cp == 0x1d ||
                   cp == 0x1e || cp == 0x85 || cp == 0x2028 || cp == 0x2029;
        if (brk) {
            if (cp == '\r' && j < s->len && s->s[j] == '\n') j++;
            if (n == cap) {
                size_t *nv = rl__tpl_realloc(c, v, cap * 3 * sizeof(size_t), cap * 6 * sizeof(size_t));
                if (!nv) return rl__tpl_dealloc(c, v, cap * 3 * sizeof(size_t)), -1;
                v = nv;
                cap *= 2;
            }
            v[3 * n] = start, v[3 * n + 1] = i, v[3 * n + 2] = j;
            n++;
            start = j;
        }
        i = j;
    }
    if (start < s->len) {
        if (n == cap) {
            size_t *nv = rl__tpl_realloc(c, v, cap * 3 * sizeof(size_t), cap * 6 * sizeof(size_t));
            if (!nv) return rl__tpl_dealloc(c, v, cap * 3 * sizeof(size_t)), -1;
            v = nv;
            cap *= 2;
        }
        v[3 * n] = start, v[3 * n + 1] = s->len, v[3 * n + 2] = s->len;
        n++;
    }
    /* shrink the accounting to n entries so the caller frees n*3 */
    size_t keep = n ? n : 1;
    size_t *nv = rl__tpl_realloc(c, v, cap * 3 * sizeof(size_t), keep * 3 * sizeof(size_t));
    if (!nv) return rl__tpl_dealloc(c, v, cap * 3 * sizeof(size_t)), -1;
    *out = nv;
    *nout = n;
    return (int)(n > INT32_MAX ? INT32_MAX : n);
}

/* ---- method table ------------------------------------------------------------------ */

enum {
    /* str */
    M_STARTSWITH, M_ENDSWITH, M_SPLIT, M_RSPLIT, M_SPLITLINES, M_STRIP, M_LSTRIP, M_RSTRIP,
    M_UPPER, M_LOWER, M_TITLE, M_CAPITALIZE, M_SWAPCASE, M_CASEFOLD, M_REPLACE, M_FIND,
    M_RFIND, M_INDEX_S, M_RINDEX, M_COUNT_S, M_JOIN, M_FORMAT, M_ZFILL, M_CENTER, M_LJUST,
    M_RJUST, M_PARTITION, M_RPARTITION, M_ISDIGIT, M_ISALPHA, M_ISALNUM, M_ISSPACE, M_ISLOWER,
    M_ISUPPER, M_ISNUMERIC, M_ISDECIMAL, M_ISTITLE, M_REMOVEPREFIX, M_REMOVESUFFIX,
    /* dict */
    M_GET, M_ITEMS, M_KEYS, M_VALUES, M_COPY_D, M_POP_D, M_POPITEM, M_SETDEFAULT, M_UPDATE,
    M_CLEAR_D,
    /* list / tuple */
    M_INDEX_L, M_COUNT_L, M_COPY_L, M_APPEND, M_EXTEND, M_INSERT, M_POP_L, M_REMOVE, M_REVERSE,
    M_SORT, M_CLEAR_L,
    /* loop */
    M_CYCLE, M_CHANGED,
    M_COUNT_ALL
};

enum { R_STR, R_DICT, R_LIST, R_TUPLE, R_LOOP };

static const struct {
    const char *name;
    uint8_t recv; /* R_LIST entries also apply to tuples unless unsafe */
    bool unsafe;
    int id;
} METHODS[] = {
    {"startswith", R_STR, 0, M_STARTSWITH}, {"endswith", R_STR, 0, M_ENDSWITH},
    {"split", R_STR, 0, M_SPLIT}, {"rsplit", R_STR, 0, M_RSPLIT},
    {"splitlines", R_STR, 0, M_SPLITLINES}, {"strip", R_STR, 0, M_STRIP},
    {"lstrip", R_STR, 0, M_LSTRIP}, {"rstrip", R_STR, 0, M_RSTRIP}, {"upper", R_STR, 0, M_UPPER},
    {"lower", R_STR, 0, M_LOWER}, {"title", R_STR, 0, M_TITLE},
    {"capitalize", R_STR, 0, M_CAPITALIZE}, {"swapcase", R_STR, 0, M_SWAPCASE},
    {"casefold", R_STR, 0, M_CASEFOLD}, {"replace", R_STR, 0, M_REPLACE},
    {"find", R_STR, 0, M_FIND}, {"rfind", R_STR, 0, M_RFIND}, {"index", R_STR, 0, M_INDEX_S},
    {"rindex", R_STR, 0, M_RINDEX}, {"count", R_STR, 0, M_COUNT_S}, {"join", R_STR, 0, M_JOIN},
    {"format", R_STR, 0, M_FORMAT}, {"zfill", R_STR, 0, M_ZFILL}, {"center", R_STR, 0, M_CENTER},
    {"ljust", R_STR, 0, M_LJUST}, {"rjust", R_STR, 0, M_RJUST},
    {"partition", R_STR, 0, M_PARTITION}, {"rpartition", R_STR, 0, M_RPARTITION},
    {"isdigit", R_STR, 0, M_ISDIGIT}, {"isalpha", R_STR, 0, M_ISALPHA},
    {"isalnum", R_STR, 0, M_ISALNUM}, {"isspace", R_STR, 0, M_ISSPACE},
    {"islower", R_STR, 0, M_ISLOWER}, {"isupper", R_STR, 0, M_ISUPPER},
    {"isnumeric", R_STR, 0, M_ISNUMERIC}, {"isdecimal", R_STR, 0, M_ISDECIMAL},
    {"istitle", R_STR, 0, M_ISTITLE}, {"removeprefix", R_STR, 0, M_REMOVEPREFIX},
    {"removesuffix", R_STR, 0, M_REMOVESUFFIX},
    {"get", R_DICT, 0, M_GET}, {"items", R_DICT, 0, M_ITEMS}, {"keys", R_DICT, 0, M_KEYS},
    {"values", R_DICT, 0, M_VALUES}, {"copy", R_DICT, 0, M_COPY_D}, {"pop", R_DICT, 1, M_POP_D},
    {"popitem", R_DICT, 1, M_POPITEM}, {"setdefault", R_DICT, 1, M_SETDEFAULT},
    {"update", R_DICT, 1, M_UPDATE}, {"clear", R_DICT, 1, M_CLEAR_D},
    {"index", R_LIST, 0, M_INDEX_L}, {"count", R_LIST, 0, M_COUNT_L}, {"copy", R_LIST, 0, M_COPY_L},
    {"append", R_LIST, 1, M_APPEND}, {"extend", R_LIST, 1, M_EXTEND},
    {"insert", R_LIST, 1, M_INSERT}, {"pop", R_LIST, 1, M_POP_L}, {"remove", R_LIST, 1, M_REMOVE},
    {"reverse", R_LIST, 1, M_REVERSE}, {"sort", R_LIST, 1, M_SORT}, {"clear", R_LIST, 1, M_CLEAR_L},
    {"cycle", R_LOOP, 0, M_CYCLE}, {"changed", R_LOOP, 0, M_CHANGED},
};

#define UNSAFE(t, m) "access to attribute '" m "' of '" t "' object is unsafe."
static const struct {
    int id;
    const char *msg;
} UNSAFE_MSGS[] = {
    {M_POP_D, UNSAFE("dict", "pop")},         {M_POPITEM, UNSAFE("dict", "popitem")},
    {M_SETDEFAULT, UNSAFE("dict", "setdefault")}, {M_UPDATE, UNSAFE("dict", "update")},
    {M_CLEAR_D, UNSAFE("dict", "clear")},     {M_APPEND, UNSAFE("list", "append")},
    {M_EXTEND, UNSAFE("list", "extend")},     {M_INSERT, UNSAFE("list", "insert")},
    {M_POP_L, UNSAFE("list", "pop")},         {M_REMOVE, UNSAFE("list", "remove")},
    {M_REVERSE, UNSAFE("list", "reverse")},   {M_SORT, UNSAFE("list", "sort")},
    {M_CLEAR_L, UNSAFE("list", "clear")},
};

const char *rl__tpl_method_unsafe_msg(int id) {
    for (size_t i = 0; i < RL_ARRAY_LEN(UNSAFE_MSGS); i++)
        if (UNSAFE_MSGS[i].id == id) return UNSAFE_MSGS[i].msg;
    return "access to this attribute is unsafe.";
}

int rl__tpl_method_id(tpl_val self, const char *name, size_t n, bool *unsafe) {
    int recv;
    switch (self.t) {
    case TV_STR: recv = R_STR; break;
    case TV_DICT: recv = R_DICT; break;
    case TV_LIST:
        if (self.sub == LS_LIST) recv = R_LIST;
        else if (self.sub == LS_TUPLE || self.sub == LS_RANGE) recv = R_TUPLE;
        else return -1;
        break;
    case TV_LOOP: recv = R_LOOP; break;
    default: return -1;
    }
    for (size_t i = 0; i < RL_ARRAY_LEN(METHODS); i++) {
        uint8_t r = METHODS[i].recv;
        bool match = r == recv || (recv == R_TUPLE && r == R_LIST && !METHODS[i].unsafe &&
                                   METHODS[i].id != M_COPY_L);
        if (!match || strlen(METHODS[i].name) != n || memcmp(METHODS[i].name, name, n) != 0) continue;
        *unsafe = METHODS[i].unsafe;
        return METHODS[i].id;
    }
    return -1;
}

/* ---- str methods ----------------------------------------------------------------- */

static int need_str(tpl_ctx *c, const char *m, tpl_val v, int k) {
    if (v.t == TV_STR) return 0;
    return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%s() argument %d must be str, not %s", m, k, rl__tpl_type_name(v));
}

static int opt_int(tpl_ctx *c, const char *m, tpl_val v, int64_t dflt, int64_t *out) {
    if (!tv_given(v) || v.t == TV_NONE) return *out = dflt, 0;
    if (v.t == TV_INT || v.t == TV_BOOL) return *out = v.t == TV_BOOL ? v.u.b : v.u.i, 0;
    return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%s(): '%s' object cannot be interpreted as an integer", m,
                        rl__tpl_type_name(v));
}

/* [start, end) code point window of s as byte offsets, Python slice rules. */
static void window(const tpl_str *s, tpl_val vs, tpl_val ve, size_t *a, size_t *b) {
    int64_t n = (int64_t)s->ncp, st = 0, en = n;
    if (tv_given(vs) && (vs.t == TV_INT || vs.t == TV_BOOL)) st = vs.t == TV_BOOL ? vs.u.b : vs.u.i;
    if (tv_given(ve) && (ve.t == TV_INT || ve.t == TV_BOOL)) en = ve.t == TV_BOOL ? ve.u.b : ve.u.i;
    if (st < 0) st = st + n < 0 ? 0 : st + n;
    if (en < 0) en = en + n < 0 ? 0 : en + n;
    if (st > n) st = n;
    if (en > n) en = n;
    if (en < st) en = st;
    *a = rl__tpl_cp_offset(s, st);
    *b = rl__tpl_cp_offset(s, en);
}

static bool affix(const tpl_str *s, size_t a, size_t b, const tpl_str *x, bool end) {
    if (x->len > b - a) return false;
    return memcmp(s->s + (end ? b - x->len : a), x->s, x->len) == 0;
}

static int starts_ends(tpl_ctx *c, const tpl_str *s, const tpl_args *ar, bool end, tpl_val *out) {
    static const char *const P[] = {"prefix", "start", "end"};
    tpl_val sl[3];
    const char *m = end ? "endswith" : "startswith";
    if (rl__tpl_bind(c, m, P, 3, ar, sl, NULL)) return -1;
    size_t a, b;
    window(s, sl[1], sl[2], &a, &b);
    tpl_val x = sl[0];
    if (x.t == TV_STR) return *out = tv_bool(affix(s, a, b, TV_S(x), end)), 0;
    if (x.t == TV_LIST && x.sub == LS_TUPLE) {
        for (size_t i = 0; i < TV_L(x)->n; i++) {
            tpl_val e = TV_L(x)->v[i];
            if (e.t != TV_STR)
                return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "tuple for %s must only contain str, not %s", m,
                                    rl__tpl_type_name(e));
            if (affix(s, a, b, TV_S(e), end)) return *out = tv_bool(true), 0;
        }
        return *out = tv_bool(false), 0;
    }
    return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%s first arg must be str or a tuple of str, not %s", m,
                        rl__tpl_type_name(x));
}

static int push_str(tpl_ctx *c, tpl_list *l, const char *s, size_t n, uint8_t sub) {
    tpl_val v;
    if (rl__tpl_str_val(c, s, n, sub, &v)) return -1;
    return rl__tpl_list_push(c, l, v);
}

static int split(tpl_ctx *c, const tpl_str *s, uint8_t sub, const tpl_args *ar, bool right, tpl_val *out) {
    static const char *const P[] = {"sep", "maxsplit"};
    tpl_val sl[2];
    if (rl__tpl_bind(c, right ? "rsplit" : "split", P, 2, ar, sl, NULL)) return -1;
    int64_t maxsplit;
    if (opt_int(c, "split", sl[1], -1, &maxsplit)) return -1;
    if (maxsplit < 0) maxsplit = INT64_MAX;
    tpl_val sep = sl[0];
    if (tv_given(sep) && sep.t != TV_NONE && sep.t != TV_STR)
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "must be str or None, not %s", rl__tpl_type_name(sep));
    if (sep.t == TV_STR && TV_S(sep)->len == 0) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "empty separator");
    tpl_list *l = rl__tpl_list_new(c, TV_LIST, 0);
    if (!l) return -1;
    int r = 0;
    if (sep.t != TV_STR) { /* runs of whitespace */
        if (!right) {
            size_t i = 0, n = s->len;
            int64_t k = 0;
            while (!r) {
                while (i < n) {
                    size_t j = i;
                    if (!rl__tpl_isspace(rl__tpl_utf8_next(s->s, n, &j))) break;
                    i = j;
                }
                if (i >= n) break;
                if (k == maxsplit) { /* the rest as it is, trailing whitespace included */
                    r = push_str(c, l, s->s + i, n - i, sub);
                    break;
                }
                size_t st = i;
                while (i < n) {
                    size_t j = i;
                    if (rl__tpl_isspace(rl__tpl_utf8_next(s->s, n, &j))) break;
                    i = j;
                }
                r = push_str(c, l, s->s + st, i - st, sub);
                k++;
            }
        } else {
            size_t e = s->len;
            int64_t k = 0;
            tpl_list *rev = l;
            while (!r) {
                while (e > 0) {
                    size_t j = e - 1;
                    while (j > 0 && ((unsigned char)s->s[j] & 0xC0) == 0x80) j--;
                    size_t kk = j;
                    if (!rl__tpl_isspace(rl__tpl_utf8_next(s->s, e, &kk))) break;
                    e = j;
                }
                if (e == 0) break;
                if (k == maxsplit) { /* the rest as it is, leading whitespace included */
                    r = push_str(c, rev, s->s, e, sub);
                    break;
                }
                size_t st = e;
                while (st > 0) {
                    size_t j = st - 1;
                    while (j > 0 && ((unsigned char)s->s[j] & 0xC0) == 0x80) j--;
                    size_t kk = j;
                    if (rl__tpl_isspace(rl__tpl_utf8_next(s->s, st, &kk))) break;
                    st = j;
                }
                r = push_str(c, rev, s->s + st, e - st, sub);
                e = st;
                k++;
            }
            for (size_t i = 0; i < l->n / 2; i++) {
                tpl_val t = l->v[i];
                l->v[i] = l->v[l->n - 1 - i];
                l->v[l->n - 1 - i] = t;
            }
        }
    } else {
        const tpl_str *sp = TV_S(sep);
        if (!right) {
            size_t i = 0;
            int64_t k = 0;
            while (!r) {
                const char *f = k < maxsplit ? memmem(s->s + i, s->len - i, sp->s, sp->len) : NULL;
                if (!f) {
                    r = push_str(c, l, s->s + i, s->len - i, sub);
                    break;
                }
                r = push_str(c, l, s->s + i, (size_t)(f - (s->s + i)), sub);
                i = (size_t)(f - s->s) + sp->len;
                k++;
            }
        } else {
            size_t e = s->len;
            int64_t k = 0;
            while (!r) {
                const char *f = NULL;
                if (k < maxsplit && e >= sp->len)
                    for (size_t p = e - sp->len + 1; p-- > 0;)
                        if (memcmp(s->s + p, sp->s, sp->len) == 0) {
                            f = s->s + p;
                            break;
                        }
                if (!f) {
                    r = push_str(c, l, s->s, e, sub);
                    break;
                }
                size_t p = (size_t)(f - s->s);
                r = push_str(c, l, s->s + p + sp->len, e - p - sp->len, sub);
                e = p;
                k++;
            }
            for (size_t i = 0; i < l->n / 2; i++) {
                tpl_val t = l->v[i];
                l->v[i] = l->v[l->n - 1 - i];
                l->v[l->n - 1 - i] = t;
            }
        }
    }
    if (r) return rl__tpl_obj_decref(c, &l->h), -1;
    *out = tv_obj(TV_LIST, LS_LIST, l);
    return rl__tpl_charge(c, s->len / 4096 + l->n / 16);
}

static int find(tpl_ctx *c, const tpl_str *s, const tpl_args *ar, bool right, bool raise, const char *m,
                tpl_val *out) {
    static const char *const P[] = {"sub", "start", "end"};
    tpl_val sl[3];
    if (rl__tpl_bind(c, m, P, 3, ar, sl, NULL)) return -1;
    if (need_str(c, m, sl[0], 1)) return -1;
    const tpl_str *x = TV_S(sl[0]);
    size_t a, b;
    window(s, sl[1], sl[2], &a, &b);
    const char *f = NULL;
    if (x->len <= b - a) {
        if (!right) f = memmem(s->s + a, b - a, x->s, x->len);
        else
            for (size_t p = b - x->len + 1; p-- > a;)
                if (memcmp(s->s + p, x->s, x->len) == 0) {
                    f = s->s + p;
                    break;
                }
    }
    if (!f) {
        if (raise) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "substring not found");
        return *out = tv_int(-1), 0;
    }
    *out = tv_int((int64_t)rl__tpl_utf8_count(s->s, (size_t)(f - s->s)));
    return 0;
}

static int replace(tpl_ctx *c, const tpl_str *s, uint8_t sub, const tpl_args *ar, tpl_val *out) {
    static const char *const P[] = {"old", "new", "count"};
    tpl_val sl[3];
    if (rl__tpl_bind(c, "replace", P, 3, ar, sl, NULL)) return -1;
    if (need_str(c, "replace", sl[0], 1) || need_str(c, "replace", sl[1], 2)) return -1;
    int64_t count;
    if (opt_int(c, "replace", sl[2], -1, &count)) return -1;
    if (count < 0) count = INT64_MAX;
    const tpl_str *o = TV_S(sl[0]), *n = TV_S(sl[1]);
    tpl_sb b;
    rl__tpl_sb_init(&b);
    int r = 0;
    if (o->len == 0) { /* insert before every code point and at the end */
        int64_t k = 0;
        for (size_t i = 0; !r && i <= s->len;) {
            if (k < count) {
                r = rl__tpl_sb_add(c, &b, n->s, n->len);
                k++;
            }
            if (i == s->len || r) break;
            size_t j = i;
            rl__tpl_utf8_next(s->s, s->len, &j);
            r = rl__tpl_sb_add(c, &b, s->s + i, j - i);
            i = j;
        }
    } else {
        size_t i = 0;
        int64_t k = 0;
        while (!r) {
            const char *f = k < count ? memmem(s->s + i, s->len - i, o->s, o->len) : NULL;
            if (!f) {
                r = rl__tpl_sb_add(c, &b, s->s + i, s->len - i);
                break;
            }
            r = rl__tpl_sb_add(c, &b, s->s + i, (size_t)(f - (s->s + i)));
            if (!r) r = rl__tpl_sb_add(c, &b, n->s, n->len);
            i = (size_t)(f - s->s) + o->len;
            k++;
        }
    }
    if (r) return rl__tpl_sb_drop(c, &b), -1;
    if (rl__tpl_charge(c, s->len / 4096)) return rl__tpl_sb_drop(c, &b), -1;
    return rl__tpl_sb_val(c, &b, sub, out);
}

static int count_sub(tpl_ctx *c, const tpl_str *s, const tpl_args *ar, tpl_val *out) {
    static const char *const P[] = {"sub", "start", "end"};
    tpl_val sl[3];
    if (rl__tpl_bind(c, "count", P, 3, ar, sl, NULL)) return -1;
    if (need_str(c, "count", sl[0], 1)) return -1;
    size_t a, b;
    window(s, sl[1], sl[2], &a, &b);
    const tpl_str *x = TV_S(sl[0]);
    if (x->len == 0) return *out = tv_int((int64_t)rl__tpl_utf8_count(s->s + a, b - a) + 1), 0;
    int64_t k = 0;
    for (size_t i = a; i + x->len <= b;) {
        const char *f = memmem(s->s + i, b - i, x->s, x->len);
        if (!f) break;
        k++;
        i = (size_t)(f - s->s) + x->len;
    }
    *out = tv_int(k);
    return 0;
}

static int join(tpl_ctx *c, const tpl_str *s, uint8_t sub, const tpl_args *ar, tpl_val *out) {
    if (ar->npos != 1 || ar->nkw) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "join() takes exactly one argument");
    tpl_list *l;
    if (rl__tpl_iterate(c, ar->pos[0], &l)) return -1;
    tpl_sb b;
    rl__tpl_sb_init(&b);
    int r = 0;
    for (size_t i = 0; !r && i < l->n; i++) {
        tpl_val v = l->v[i];
        if (v.t != TV_STR) {
            r = rl__tpl_fail(c, RL_ERR_INVALID_ARG, "sequence item %zu: expected str instance, %s found", i,
                             rl__tpl_type_name(v));
            break;
        }
        if (i) r = rl__tpl_sb_add(c, &b, s->s, s->len);
        if (!r) {
            if ((sub & STR_SAFE) && !(v.sub & STR_SAFE)) r = rl__tpl_escape(c, &b, TV_S(v)->s, TV_S(v)->len);
            else r = rl__tpl_sb_add(c, &b, TV_S(v)->s, TV_S(v)->len);
        }
    }
    rl__tpl_obj_decref(c, &l->h);
    if (r) return rl__tpl_sb_drop(c, &b), -1;
    return rl__tpl_sb_val(c, &b, sub, out);
}

static int justify(tpl_ctx *c, const tpl_str *s, uint8_t sub, const tpl_args *ar, int mode, const char *m,
                   tpl_val *out) {
    static const char *const P[] = {"width", "fillchar"};
    tpl_val sl[2];
    if (rl__tpl_bind(c, m, P, mode == 3 ? 1 : 2, ar, sl, NULL)) return -1;
    int64_t w;
    if (!tv_given(sl[0])) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%s() missing the width argument", m);
    if (opt_int(c, m, sl[0], 0, &w)) return -1;
    const char *fill = " ";
    size_t fl = 1;
    if (mode != 3 && tv_given(sl[1])) {
        if (sl[1].t != TV_STR || TV_S(sl[1])->ncp != 1)
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "The fill character must be exactly one character long");
        fill = TV_S(sl[1])->s;
        fl = TV_S(sl[1])->len;
    }
    int64_t len = (int64_t)s->ncp;
    if (w > (int64_t)c->lim.max_output) return rl__tpl_fail(c, RL_ERR_LIMIT, "%s(): width too large", m);
    int64_t pad = w > len ? w - len : 0, left = 0;
    if (mode == 0) left = pad / 2 + (pad & w & 1); /* center */
    else if (mode == 2 || mode == 3) left = pad;   /* rjust, zfill */
    int64_t right = pad - left;
    tpl_sb b;
    rl__tpl_sb_init(&b);
    int r = 0;
    size_t body = 0;
    if (mode == 3) { /* zfill: zeros after the sign */
        fill = "0";
        if (s->len && (s->s[0] == '+' || s->s[0] == '-')) {
            r = rl__tpl_sb_addc(c, &b, s->s[0]);
            body = 1;
        }
    }
    for (int64_t i = 0; !r && i < left; i++) r = rl__tpl_sb_add(c, &b, fill, fl);
    if (!r) r = rl__tpl_sb_add(c, &b, s->s + body, s->len - body);
    for (int64_t i = 0; !r && i < right; i++) r = rl__tpl_sb_add(c, &b, fill, fl);
    if (r) return rl__tpl_sb_drop(c, &b), -1;
    return rl__tpl_sb_val(c, &b, sub, out);
}

static int partition(tpl_ctx *c, const tpl_str *s, uint8_t sub, const tpl_args *ar, bool right, tpl_val *out) {
    if (ar->npos != 1 || ar->pos[0].t != TV_STR)
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "partition() takes one string argument");
    const tpl_str *x = TV_S(ar->pos[0]);
    if (!x->len) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "empty separator");
    const char *f = NULL;
    if (!right) f = memmem(s->s, s->len, x->s, x->len);
    else if (x->len <= s->len)
        for (size_t p = s->len - x->len + 1; p-- > 0;)
            if (memcmp(s->s + p, x->s, x->len) == 0) {
                f = s->s + p;
                break;
            }
    tpl_list *l = rl__tpl_list_new(c, TV_LIST, 3);
    if (!l) return -1;
    int r;
    if (!f) {
        if (!right) r = push_str(c, l, s->s, s->len, sub) || push_str(c, l, "", 0, sub) || push_str(c, l, "", 0, sub);
        else r = push_str(c, l, "", 0, sub) || push_str(c, l, "", 0, sub) || push_str(c, l, s->s, s->len, sub);
    } else {
        size_t p = (size_t)(f - s->s);
        r = push_str(c, l, s->s, p, sub) || push_str(c, l, x->s, x->len, sub) ||
            push_str(c, l, s->s + p + x->len, s->len - p - x->len, sub);
    }
    if (r) return rl__tpl_obj_decref(c, &l->h), -1;
    *out = tv_obj(TV_LIST, LS_TUPLE, l);
    return 0;
}

static int char_class(const tpl_str *s, int id) {
    if (s->len == 0) return 0;
    for (size_t i = 0; i < s->len;) {
        int32_t cp = rl__tpl_utf8_next(s->s, s->len, &i);
        utf8proc_category_t k = utf8proc_category(cp);
        bool letter = k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
        bool dec = k == UTF8PROC_CATEGORY_ND;
        bool num = dec || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
        bool ok;
        switch (id) {
        case M_ISDIGIT: ok = dec || (k == UTF8PROC_CATEGORY_NO && (cp == 0xb2 || cp == 0xb3 || cp == 0xb9 ||
                                                                   (cp >= 0x2070 && cp <= 0x2089)));
            break;
        case M_ISALPHA: ok = letter; break;
        case M_ISALNUM: ok = letter || num; break;
        case M_ISSPACE: ok = rl__tpl_isspace(cp); break;
        case M_ISNUMERIC: ok = num; break;
        case M_ISDECIMAL: ok = dec; break;
        default: ok = false;
        }
        if (!ok) return 0;
    }
    return 1;
}

static int case_pred(const tpl_str *s, int id) {
    bool cased = false, prev_cased = false;
    for (size_t i = 0; i < s->len;) {
        int32_t cp = rl__tpl_utf8_next(s->s, s->len, &i);
        utf8proc_category_t k = utf8proc_category(cp);
        bool u = k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT, l = k == UTF8PROC_CATEGORY_LL;
        if (id == M_ISLOWER) {
            if (u) return 0;
            cased |= l;
        } else if (id == M_ISUPPER) {
            if (l) return 0;
            cased |= u;
        } else { /* istitle */
            if (u) {
                if (prev_cased) return 0;
                prev_cased = cased = true;
            } else if (l) {
                if (!prev_cased) return 0;
                prev_cased = cased = true;
            } else {
                prev_cased = false;
            }
        }
    }
    return cased;
}

static int str_method(tpl_ctx *c, int id, tpl_val self, const tpl_args *a, tpl_val *out) {
    const tpl_str *s = TV_S(self);
    uint8_t sub = self.sub;
    switch (id) {
    case M_STARTSWITH: return starts_ends(c, s, a, false, out);
    case M_ENDSWITH: return starts_ends(c, s, a, true, out);
    case M_SPLIT: return split(c, s, sub, a, false, out);
    case M_RSPLIT: return split(c, s, sub, a, true, out);
    case M_SPLITLINES: {
        static const char *const P[] = {"keepends"};
        tpl_val sl[1];
        if (rl__tpl_bind(c, "splitlines", P, 1, a, sl, NULL)) return -1;
        bool keep = tv_given(sl[0]) && rl__tpl_truthy(sl[0]);
        size_t *ln, n;
        if (rl__tpl_splitlines(c, s, &ln, &n) < 0) return -1;
        tpl_list *l = rl__tpl_list_new(c, TV_LIST, n);
        int r = l ? 0 : -1;
        for (size_t i = 0; !r && i < n; i++)
            r = push_str(c, l, s->s + ln[3 * i], ln[3 * i + (keep ? 2 : 1)] - ln[3 * i], sub);
        rl__tpl_dealloc(c, ln, (n ? n : 1) * 3 * sizeof(size_t));
        if (r) {
            if (l) rl__tpl_obj_decref(c, &l->h);
            return -1;
        }
        *out = tv_obj(TV_LIST, LS_LIST, l);
        return 0;
    }
    case M_STRIP: case M_LSTRIP: case M_RSTRIP: {
        static const char *const P[] = {"chars"};
        tpl_val sl[1];
        if (rl__tpl_bind(c, "strip", P, 1, a, sl, NULL)) return -1;
        const tpl_str *chars = NULL;
        if (tv_given(sl[0]) && sl[0].t != TV_NONE) {
            if (need_str(c, "strip", sl[0], 1)) return -1;
            chars = TV_S(sl[0]);
        }
        size_t x, y;
        rl__tpl_strip(s, chars, id == M_STRIP ? 3 : id == M_LSTRIP ? 1 : 2, &x, &y);
        if (x == 0 && y == s->len) return *out = tv_ref(self), 0;
        return rl__tpl_str_val(c, s->s + x, y - x, sub, out);
    }
    case M_UPPER: case M_LOWER: case M_TITLE: case M_CAPITALIZE: case M_SWAPCASE: case M_CASEFOLD: {
        if (a->npos || a->nkw) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "method takes no arguments");
        int mode = id == M_UPPER ? CASE_UPPER : id == M_TITLE ? CASE_TITLE : id == M_CAPITALIZE ? CASE_CAPITALIZE
                 : id == M_SWAPCASE ? CASE_SWAP : CASE_LOWER;
        tpl_sb b;
        rl__tpl_sb_init(&b);
        if (rl__tpl_case(c, &b, s->s, s->len, mode)) return rl__tpl_sb_drop(c, &b), -1;
        return rl__tpl_sb_val(c, &b, sub, out);
    }
    case M_REPLACE: return replace(c, s, sub, a, out);
    case M_FIND: return find(c, s, a, false, false, "find", out);
    case M_RFIND: return find(c, s, a, true, false, "rfind", out);
    case M_INDEX_S: return find(c, s, a, false, true, "index", out);
    case M_RINDEX: return find(c, s, a, true, true, "rindex", out);
    case M_COUNT_S: return count_sub(c, s, a, out);
    case M_JOIN: return join(c, s, sub, a, out);
    case M_FORMAT: {
        tpl_sb b;
        rl__tpl_sb_init(&b);
        if (rl__tpl_str_format(c, &b, s, a)) return rl__tpl_sb_drop(c, &b), -1;
        return rl__tpl_sb_val(c, &b, sub, out);
    }
    case M_ZFILL: return justify(c, s, sub, a, 3, "zfill", out);
    case M_CENTER: return justify(c, s, sub, a, 0, "center", out);
    case M_LJUST: return justify(c, s, sub, a, 1, "ljust", out);
    case M_RJUST: return justify(c, s, sub, a, 2, "rjust", out);
    case M_PARTITION: return partition(c, s, sub, a, false, out);
    case M_RPARTITION: return partition(c, s, sub, a, true, out);
    case M_ISDIGIT: case M_ISALPHA: case M_ISALNUM: case M_ISSPACE: case M_ISNUMERIC: case M_ISDECIMAL:
        return *out = tv_bool(char_class(s, id)), 0;
    case M_ISLOWER: case M_ISUPPER: case M_ISTITLE: return *out = tv_bool(case_pred(s, id)), 0;
    case M_REMOVEPREFIX: case M_REMOVESUFFIX: {
        if (a->npos != 1 || a->pos[0].t != TV_STR)
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "removeprefix() takes one string argument");
        const tpl_str *x = TV_S(a->pos[0]);
        bool end = id == M_REMOVESUFFIX;
        if (!x->len || !affix(s, 0, s->len, x, end)) return *out = tv_ref(self), 0;
        return rl__tpl_str_val(c, s->s + (end ? 0 : x->len), s->len - x->len, sub, out);
    }
    default: return rl__tpl_fail(c, RL_ERR_INTERNAL, "bad str method");
    }
}

static int view(tpl_ctx *c, const tpl_dict *d, int kind, tpl_val *out) {
    tpl_list *l = rl__tpl_list_new(c, TV_LIST, d->n);
    if (!l) return -1;
    for (size_t i = 0; i < d->n; i++) {
        if (kind == LS_KEYS) l->v[l->n++] = tv_ref(d->k[i]);
        else if (kind == LS_VALUES) l->v[l->n++] = tv_ref(d->v[i]);
        else {
            tpl_list *p = rl__tpl_list_new(c, TV_LIST, 2);
            if (!p) return rl__tpl_obj_decref(c, &l->h), -1;
            p->v[0] = tv_ref(d->k[i]);
            p->v[1] = tv_ref(d->v[i]);
            p->n = 2;
            l->v[l->n++] = tv_obj(TV_LIST, LS_TUPLE, p);
        }
    }
    *out = tv_obj(TV_LIST, (uint8_t)kind, l);
    return 0;
}

int rl__tpl_call_method(tpl_ctx *c, int id, tpl_val self, const tpl_args *a, tpl_val *out) {
    if (self.t == TV_STR) return str_method(c, id, self, a, out);
    switch (id) {
    case M_GET: {
        if (a->nkw || a->npos < 1 || a->npos > 2)
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "get expected 1 or 2 arguments, got %u", a->npos + a->nkw);
        tpl_val *v;
        if (a->pos[0].t == TV_LIST && a->pos[0].sub != LS_TUPLE)
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "unhashable type: 'list'");
        if (a->pos[0].t == TV_DICT) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "unhashable type: 'dict'");
        if (rl__tpl_dict_find(c, TV_D(self), a->pos[0], &v)) return -1;
        *out = v ? tv_ref(*v) : a->npos == 2 ? tv_ref(a->pos[1]) : tv_none();
        return 0;
    }
    case M_ITEMS: return view(c, TV_D(self), LS_ITEMS, out);
    case M_KEYS: return view(c, TV_D(self), LS_KEYS, out);
    case M_VALUES: return view(c, TV_D(self), LS_VALUES, out);
    case M_COPY_D: {
        tpl_dict *d = TV_D(self), *n = rl__tpl_dict_new(c, TV_DICT);
        if (!n) return -1;
        for (size_t i = 0; i < d->n; i++)
            if (rl__tpl_dict_set(c, n, tv_ref(d->k[i]), tv_ref(d->v[i]))) return rl__tpl_obj_decref(c, &n->h), -1;
        *out = tv_obj(TV_DICT, 0, n);
        return 0;
    }
    case M_INDEX_L: case M_COUNT_L: {
        if (a->npos < 1 || a->nkw)
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%s() takes at least one argument", id == M_INDEX_L ? "index" : "count");
        tpl_list *l = TV_L(self);
        int64_t k = 0;
        for (size_t i = 0; i < l->n; i++) {
            bool eq;
            if (rl__tpl_eq(c, l->v[i], a->pos[0], &eq)) return -1;
            if (eq && id == M_INDEX_L) return *out = tv_int((int64_t)i), 0;
            k += eq;
        }
        if (id == M_INDEX_L) {
            tpl_sb b;
            rl__tpl_sb_init(&b);
            if (rl__tpl_repr(c, &b, a->pos[0], 0) || rl__tpl_sb_addc(c, &b, 0)) return rl__tpl_sb_drop(c, &b), -1;
            rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%s is not in list", b.s->s);
            rl__tpl_sb_drop(c, &b);
            return -1;
        }
        *out = tv_int(k);
        return 0;
    }
    case M_COPY_L: {
        tpl_list *l = TV_L(self), *n = rl__tpl_list_new(c, TV_LIST, l->n);
        if (!n) return -1;
        for (size_t i = 0; i < l->n; i++) n->v[n->n++] = tv_ref(l->v[i]);
        *out = tv_obj(TV_LIST, LS_LIST, n);
        return 0;
    }
    case M_CYCLE: {
        tpl_loop *lp = (tpl_loop *)self.u.o;
        if (a->npos == 0) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "no items for cycling given");
        *out = tv_ref(a->pos[lp->i % a->npos]);
        return 0;
    }
    case M_CHANGED: {
        tpl_loop *lp = (tpl_loop *)self.u.o;
        tpl_list *l = rl__tpl_list_new(c, TV_LIST, a->npos);
        if (!l) return -1;
        for (uint32_t i = 0; i < a->npos; i++) l->v[l->n++] = tv_ref(a->pos[i]);
        tpl_val nv = tv_obj(TV_LIST, LS_LIST, l);
        bool same = false;
        if (lp->has_changed && rl__tpl_eq(c, lp->changed_last, nv, &same)) return rl__tpl_decref(c, nv), -1;
        if (!same) {
            rl__tpl_decref(c, lp->changed_last);
            lp->changed_last = nv;
            lp->has_changed = true;
        } else {
            rl__tpl_decref(c, nv);
        }
        *out = tv_bool(!same);
        return 0;
    }
    default:
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%s", rl__tpl_method_unsafe_msg(id));
    }
}

/* ---- Python printf-style formatting (str % args) ------------------------------------ */

static int pad_to(tpl_ctx *c, tpl_sb *b, const char *s, size_t n, int64_t width, bool left, char fill) {
    int64_t len = (int64_t)rl__tpl_utf8_count(s, n);
    if (width > (int64_t)c->lim.max_output) return rl__tpl_fail(c, RL_ERR_LIMIT, "format width too large");
    if (!left)
        for (int64_t i = len; i < width; i++)
            if (rl__tpl_sb_addc(c, b, fill)) return -1;
    if (rl__tpl_sb_add(c, b, s, n)) return -1;
    if (left)
        for (int64_t i = len; i < width; i++)
            if (rl__tpl_sb_addc(c, b, ' ')) return -1;
    return 0;
}

int rl__tpl_percent_format(tpl_ctx *c, tpl_sb *b, const tpl_str *fmt, tpl_val args) {
    const tpl_list *tl = args.t == TV_LIST && args.sub == LS_TUPLE ? TV_L(args) : NULL;
    size_t argi = 0, nargs = tl ? tl->n : 1;
    bool used_mapping = false;
    const char *s = fmt->s;
    size_t n = fmt->len, run = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') continue;
        if (rl__tpl_sb_add(c, b, s + run, i - run)) return -1;
        size_t j = i + 1;
        tpl_val v = tv_undef();
        bool have_v = false;
        if (j < n && s[j] == '(') { /* %(name)s */
            size_t k = j + 1;
            int depth = 1;
            while (k < n && depth) {
                if (s[k] == '(') depth++;
                else if (s[k] == ')') depth--;
                k++;
            }
            if (depth) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "incomplete format key");
            if (args.t != TV_DICT) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "format requires a mapping");
            tpl_val *f = rl__tpl_dict_find_str(TV_D(args), s + j + 1, k - j - 2);
            if (!f) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "KeyError: '%.*s'", (int)(k - j - 2), s + j + 1);
            v = *f;
            have_v = true;
            used_mapping = true;
            j = k;
        }
        bool left = false, plus = false, space = false, alt = false, zero = false;
        for (; j < n && strchr("-+ #0", s[j]); j++) {
            if (s[j] == '-') left = true;
            else if (s[j] == '+') plus = true;
            else if (s[j] == ' ') space = true;
            else if (s[j] == '#') alt = true;
            else zero = true;
        }
        int64_t width = -1, prec = -1;
        if (j < n && s[j] == '*') {
            if (argi >= nargs || !tl || (tl->v[argi].t != TV_INT))
                return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "* wants int");
            width = tl->v[argi++].u.i;
            if (width < 0) left = true, width = -width;
            j++;
        } else {
            for (; j < n && s[j] >= '0' && s[j] <= '9'; j++) width = (width < 0 ? 0 : width) * 10 + (s[j] - '0');
        }
        if (j < n && s[j] == '.') {
            j++;
            prec = 0;
            if (j < n && s[j] == '*') {
                if (argi >= nargs || !tl || (tl->v[argi].t != TV_INT))
                    return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "* wants int");
                prec = tl->v[argi++].u.i;
                j++;
            } else {
                for (; j < n && s[j] >= '0' && s[j] <= '9'; j++) prec = prec * 10 + (s[j] - '0');
            }
        }
        if (width > 100000 || prec > 1000) return rl__tpl_fail(c, RL_ERR_LIMIT, "format width too large");
        while (j < n && (s[j] == 'h' || s[j] == 'l' || s[j] == 'L')) j++;
        if (j >= n) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "incomplete format");
        char conv = s[j];
        run = j + 1;
        i = j;
        if (conv == '%') {
            if (rl__tpl_sb_addc(c, b, '%')) return -1;
            continue;
        }
        if (!have_v) {
            if (args.t == TV_DICT && !tl) {
                v = args; /* "%s" % {'a': 1} formats the dict itself */
                argi++;
            } else {
                if (argi >= nargs) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "not enough arguments for format string");
                v = tl ? tl->v[argi] : args;
                argi++;
            }
        }
        char spec[32], tmp[600];
        int sl = 0;
        spec[sl++] = '%';
        if (left) spec[sl++] = '-';
        if (plus) spec[sl++] = '+';
        if (space) spec[sl++] = ' ';
        if (alt) spec[sl++] = '#';
        if (zero && !left) spec[sl++] = '0';
        switch (conv) {
        case 's': case 'r': case 'a': {
            tpl_sb t;
            rl__tpl_sb_init(&t);
            int r = conv == 's' ? rl__tpl_to_str(c, &t, v) : rl__tpl_repr(c, &t, v, 0);
            if (r) return rl__tpl_sb_drop(c, &t), -1;
            const char *p = t.s ? t.s->s : "";
            size_t pl = tpl_sb_len(&t);
            if (prec >= 0 && t.s) {
                size_t cut = 0;
                int64_t k = 0;
                while (cut < pl && k < prec) {
                    rl__tpl_utf8_next(p, pl, &cut);
                    k++;
                }
                pl = cut;
            }
            r = pad_to(c, b, p, pl, width, left, ' ');
            rl__tpl_sb_drop(c, &t);
            if (r) return -1;
            break;
        }
        case 'd': case 'i': case 'u': case 'o': case 'x': case 'X': case 'c': {
            int64_t iv;
            if (v.t == TV_INT || v.t == TV_BOOL) iv = v.t == TV_BOOL ? v.u.b : v.u.i;
            else if (v.t == TV_FLOAT && conv != 'c' && conv != 'o' && conv != 'x' && conv != 'X') {
                if (v.u.f != v.u.f || fabs(v.u.f) >= 9.2e18)
                    return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "cannot convert float to integer");
                iv = (int64_t)v.u.f;
            } else if (conv == 'c' && v.t == TV_STR && TV_S(v)->ncp == 1) {
                if (pad_to(c, b, TV_S(v)->s, TV_S(v)->len, width, left, ' ')) return -1;
                break;
            } else {
                return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%%%c format: a real number is required, not %s", conv,
                                    rl__tpl_type_name(v));
            }
            if (conv == 'c') {
                if (iv < 0 || iv > 0x10FFFF) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%%c arg not in range(0x110000)");
                tpl_sb t;
                rl__tpl_sb_init(&t);
                if (rl__tpl_sb_addcp(c, &t, (int32_t)iv)) return rl__tpl_sb_drop(c, &t), -1;
                int r = pad_to(c, b, t.s->s, t.s->len, width, left, ' ');
                rl__tpl_sb_drop(c, &t);
                if (r) return -1;
                break;
            }
            if (width >= 0) sl += snprintf(spec + sl, sizeof(spec) - (size_t)sl, "%lld", (long long)width);
            if (prec >= 0) sl += snprintf(spec + sl, sizeof(spec) - (size_t)sl, ".%lld", (long long)prec);
            char cv = conv == 'i' || conv == 'u' ? 'd' : conv;
            snprintf(spec + sl, sizeof(spec) - (size_t)sl, "ll%c", cv);
            int m;
            if (cv == 'o' && alt) { /* Python writes 0o17, C writes 017 */
                char t2[64];
                snprintf(t2, sizeof(t2), "%llo", (unsigned long long)(iv < 0 ? -iv : iv));
                m = snprintf(tmp, sizeof(tmp), "%s0o%s", iv < 0 ? "-" : plus ? "+" : space ? " " : "", t2);
                if (rl__tpl_sb_add(c, b, tmp, (size_t)m)) return -1;
                break;
            }
            if ((cv == 'x' || cv == 'X' || cv == 'o') && iv < 0) { /* Python: sign then magnitude */
                char sp2[32];
                snprintf(sp2, sizeof(sp2), "%%%s%s%s%s%s%s%c", left ? "-" : "", "", alt ? "#" : "",
                         zero && !left ? "0" : "", "", "ll", cv);
                char t2[80];
                snprintf(t2, sizeof(t2), sp2, (unsigned long long)(-iv));
                m = snprintf(tmp, sizeof(tmp), "-%s", t2);
            } else {
                m = snprintf(tmp, sizeof(tmp), spec, (long long)iv);
            }
            if (m < 0) return rl__tpl_fail(c, RL_ERR_INTERNAL, "format error");
            if (rl__tpl_sb_add(c, b, tmp, (size_t)m < sizeof(tmp) ? (size_t)m : sizeof(tmp) - 1)) return -1;
            break;
        }
        case 'e': case 'E': case 'f': case 'F': case 'g': case 'G': {
            double d;
            if (v.t == TV_FLOAT) d = v.u.f;
            else if (v.t == TV_INT || v.t == TV_BOOL) d = (double)(v.t == TV_BOOL ? v.u.b : v.u.i);
            else
                return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "must be real number, not %s", rl__tpl_type_name(v));
            if (width >= 0) sl += snprintf(spec + sl, sizeof(spec) - (size_t)sl, "%lld", (long long)width);
            sl += snprintf(spec + sl, sizeof(spec) - (size_t)sl, ".%lld", (long long)(prec >= 0 ? prec : 6));
            snprintf(spec + sl, sizeof(spec) - (size_t)sl, "%c", conv);
            int m = snprintf(tmp, sizeof(tmp), spec, d);
            if (m < 0 || (size_t)m >= sizeof(tmp)) return rl__tpl_fail(c, RL_ERR_LIMIT, "formatted number too long");
            if (rl__tpl_sb_add(c, b, tmp, (size_t)m)) return -1;
            break;
        }
        default: return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "unsupported format character '%c'", conv);
        }
    }
    if (rl__tpl_sb_add(c, b, s + run, n - run)) return -1;
    /* Python skips this check when the argument has __getitem__ (a "mapping") */
    bool mapping_like = args.t == TV_DICT || args.t == TV_UNDEF || (args.t == TV_LIST && args.sub != LS_TUPLE);
    if (!used_mapping && !mapping_like && argi < nargs)
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "not all arguments converted during string formatting");
    return 0;
}

/* ---- str.format ------------------------------------------------------------------ */

typedef struct fspec {
    char fill[5];
    size_t fill_len;
    char align; /* 0, '<', '>', '^', '=' */
    char sign;  /* 0, '+', '-', ' ' */
    bool alt, zero;
    int64_t width, prec;
    char group; /* 0, ',', '_' */
    char type;
} fspec;

static int parse_spec(tpl_ctx *c, const char *s, size_t n, fspec *f) {
    memset(f, 0, sizeof(*f));
    f->width = -1;
    f->prec = -1;
    size_t i = 0;
    if (n) {
        size_t j = 0;
        rl__tpl_utf8_next(s, n, &j);
        if (j < n && strchr("<>^=", s[j])) {
            memcpy(f->fill, s, j);
            f->fill_len = j;
            f->align = s[j];
            i = j + 1;
        } else if (strchr("<>^=", s[0])) {
            f->align = s[0];
            i = 1;
        }
    }
    if (i < n && strchr("+- ", s[i])) f->sign = s[i++];
    if (i < n && s[i] == '#') f->alt = true, i++;
    if (i < n && s[i] == '0') f->zero = true, i++;
    for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
        f->width = (f->width < 0 ? 0 : f->width) * 10 + (s[i] - '0');
        if (f->width > 100000) return rl__tpl_fail(c, RL_ERR_LIMIT, "format width too large");
    }
    if (i < n && (s[i] == ',' || s[i] == '_')) f->group = s[i++];
    if (i < n && s[i] == '.') {
        i++;
        f->prec = 0;
        for (; i < n && s[i] >= '0' && s[i] <= '9'; i++) {
            f->prec = f->prec * 10 + (s[i] - '0');
            if (f->prec > 1000) return rl__tpl_fail(c, RL_ERR_LIMIT, "format precision too large");
        }
    }
    if (i < n) f->type = s[i++];
    if (i != n) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "Invalid format specifier");
    return 0;
}

/* Write body (already signed) padded per the spec; numeric '=' pads after the sign. */
static int emit_aligned(tpl_ctx *c, tpl_sb *b, const fspec *f, const char *body, size_t n, char dflt_align,
                        bool numeric) {
    char align = f->align ? f->align : dflt_align;
    const char *fill = f->fill_len ? f->fill : " ";
    size_t fl = f->fill_len ? f->fill_len : 1;
    if (f->zero && !f->align && numeric) {
        align = '=';
        fill = "0";
        fl = 1;
    }
    int64_t len = (int64_t)rl__tpl_utf8_count(body, n), pad = f->width > len ? f->width - len : 0;
    int64_t left = align == '>' ? pad : align == '^' ? pad / 2 : 0;
    int64_t right = align == '<' ? pad : align == '^' ? pad - pad / 2 : 0;
    size_t signlen = 0;
    if (align == '=') {
        left = pad;
        if (n && (body[0] == '-' || body[0] == '+' || body[0] == ' ')) signlen = 1;
        if (rl__tpl_sb_add(c, b, body, signlen)) return -1;
    }
    for (int64_t i = 0; i < left; i++)
        if (rl__tpl_sb_add(c, b, fill, fl)) return -1;
    if (rl__tpl_sb_add(c, b, body + signlen, n - signlen)) return -1;
    for (int64_t i = 0; i < right; i++)
        if (rl__tpl_sb_add(c, b, fill, fl)) return -1;
    return 0;
}

static int group_digits(char *buf, size_t cap, const char *digits, char sep) {
    size_t n = strlen(digits), o = 0;
    for (size_t i = 0; i < n && o + 2 < cap; i++) {
        buf[o++] = digits[i];
        size_t rest = n - i - 1;
        if (sep && rest && rest % 3 == 0) buf[o++] = sep;
    }
    buf[o] = 0;
    return (int)o;
}

static int format_value(tpl_ctx *c, tpl_sb *b, tpl_val v, const char *spec, size_t sn) {
    fspec f;
    if (parse_spec(c, spec, sn, &f)) return -1;
    char tmp[1200], num[700];
    if (v.t == TV_STR || ((v.t != TV_INT && v.t != TV_FLOAT && v.t != TV_BOOL) && sn == 0) ||
        (v.t == TV_BOOL && sn == 0)) {
        if (v.t != TV_STR && sn) goto bad;
        if (f.type && f.type != 's') goto bad;
        tpl_sb t;
        rl__tpl_sb_init(&t);
        if (rl__tpl_to_str(c, &t, v)) return rl__tpl_sb_drop(c, &t), -1;
        const char *p = t.s ? t.s->s : "";
        size_t pl = tpl_sb_len(&t);
        if (f.prec >= 0) {
            size_t cut = 0;
            for (int64_t k = 0; cut < pl && k < f.prec; k++) rl__tpl_utf8_next(p, pl, &cut);
            pl = cut;
        }
        int r = emit_aligned(c, b, &f, p, pl, '<', false);
        rl__tpl_sb_drop(c, &t);
        return r;
    }
    if (v.t != TV_INT && v.t != TV_FLOAT && v.t != TV_BOOL) goto bad;
    char type = f.type;
    bool is_int = v.t != TV_FLOAT;
    if (is_int && (type == 0 || strchr("dboxXcn", type))) {
        if (f.prec >= 0) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "Precision not allowed in integer format specifier");
        int64_t iv = v.t == TV_BOOL ? v.u.b : v.u.i;
        uint64_t mag = iv < 0 ? (uint64_t)0 - (uint64_t)iv : (uint64_t)iv;
        if (type == 'c') {
            tpl_sb t;
            rl__tpl_sb_init(&t);
            if (iv < 0 || iv > 0x10FFFF || rl__tpl_sb_addcp(c, &t, (int32_t)iv)) {
                rl__tpl_sb_drop(c, &t);
                return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%%c arg not in range(0x110000)");
            }
            int r = emit_aligned(c, b, &f, t.s->s, t.s->len, '<', false);
            rl__tpl_sb_drop(c, &t);
            return r;
        }
        const char *prefix = "";
        if (type == 'b') {
            char bits[70];
            int k = 0;
            do bits[k++] = (char)('0' + (mag & 1)), mag >>= 1;
            while (mag);
            for (int i = 0; i < k; i++) num[i] = bits[k - 1 - i];
            num[k] = 0;
            prefix = f.alt ? "0b" : "";
        } else if (type == 'o') {
            snprintf(num, sizeof(num), "%llo", (unsigned long long)mag);
            prefix = f.alt ? "0o" : "";
        } else if (type == 'x' || type == 'X') {
            snprintf(num, sizeof(num), type == 'x' ? "%llx" : "%llX", (unsigned long long)mag);
            prefix = f.alt ? (type == 'x' ? "0x" : "0X") : "";
        } else {
            char d[32];
            snprintf(d, sizeof(d), "%llu", (unsigned long long)mag);
            group_digits(num, sizeof(num), d, f.group);
        }
        const char *sg = iv < 0 ? "-" : f.sign == '+' ? "+" : f.sign == ' ' ? " " : "";
        int m = snprintf(tmp, sizeof(tmp), "%s%s%s", sg, prefix, num);
        return emit_aligned(c, b, &f, tmp, (size_t)m, '>', true);
    }
    if (type && !strchr("eEfFgGn%", type)) goto bad;
    double d = v.t == TV_FLOAT ? v.u.f : (double)(v.t == TV_BOOL ? v.u.b : v.u.i);
    double mag = fabs(d);
    bool neg = signbit(d) && d == d;
    if (type == 0 && f.prec < 0) {
        rl__tpl_fmt_float(mag, num);
    } else if (type == 0) { /* like 'g' but keeps at least one digit after the point */
        snprintf(num, sizeof(num), "%.*g", (int)(f.prec ? f.prec : 1), mag);
        if (!strpbrk(num, ".eninf")) strcat(num, ".0");
    } else if (type == '%') {
        snprintf(num, sizeof(num), "%.*f%%", (int)(f.prec >= 0 ? f.prec : 6), mag * 100);
    } else {
        char fm[16];
        snprintf(fm, sizeof(fm), "%%%s.*%c", f.alt ? "#" : "", type == 'n' ? 'g' : type);
        snprintf(num, sizeof(num), fm, (int)(f.prec >= 0 ? f.prec : 6), mag);
    }
    if (f.group) { /* group the integer part */
        char ip[700], rest[700];
        size_t k = strspn(num, "0123456789");
        memcpy(ip, num, k);
        ip[k] = 0;
        snprintf(rest, sizeof(rest), "%s", num + k);
        char g[700];
        int gl = group_digits(g, sizeof(g), ip, f.group);
        size_t rl = strlen(rest);
        if ((size_t)gl + rl + 1 > sizeof(num)) return rl__tpl_fail(c, RL_ERR_LIMIT, "formatted number too long");
        memcpy(num, g, (size_t)gl);
        memcpy(num + gl, rest, rl + 1);
    }
    const char *sg = neg ? "-" : f.sign == '+' ? "+" : f.sign == ' ' ? " " : "";
    int m = snprintf(tmp, sizeof(tmp), "%s%s", sg, num);
    return emit_aligned(c, b, &f, tmp, (size_t)m, '>', true);
bad:
    return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "Unknown format code '%c' for object of type '%s'",
                        f.type ? f.type : 's', rl__tpl_type_name(v));
}

int rl__tpl_str_format(tpl_ctx *c, tpl_sb *b, const tpl_str *fmt, const tpl_args *a) {
    const char *s = fmt->s;
    size_t n = fmt->len;
    size_t auto_idx = 0;
    int numbering = 0; /* 1 auto, 2 manual */
    for (size_t i = 0; i < n;) {
        char ch = s[i];
        if (ch == '}') {
            if (i + 1 < n && s[i + 1] == '}') {
                if (rl__tpl_sb_addc(c, b, '}')) return -1;
                i += 2;
                continue;
            }
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "Single '}' encountered in format string");
        }
        if (ch != '{') {
            size_t j = i;
            while (j < n && s[j] != '{' && s[j] != '}') j++;
            if (rl__tpl_sb_add(c, b, s + i, j - i)) return -1;
            i = j;
            continue;
        }
        if (i + 1 < n && s[i + 1] == '{') {
            if (rl__tpl_sb_addc(c, b, '{')) return -1;
            i += 2;
            continue;
        }
        if (i + 1 >= n) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "Single '{' encountered in format string");
        size_t j = i + 1;
        int depth = 1;
        while (j < n && depth) {
            if (s[j] == '{') depth++;
            else if (s[j] == '}') depth--;
            if (depth) j++;
        }
        if (j >= n) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "expected '}' before end of string");
        const char *f = s + i + 1;
        size_t fl = j - i - 1;
        i = j + 1;
        /* field_name[!conv][:spec] */
        size_t k = 0;
        while (k < fl && f[k] != '!' && f[k] != ':' && f[k] != '.' && f[k] != '[') k++;
        tpl_val v;
        if (k == 0) {
            if (numbering == 2)
                return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "cannot switch from manual field specification to automatic field numbering");
            numbering = 1;
            if (auto_idx >= a->npos)
                return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "Replacement index %zu out of range for positional args tuple", auto_idx);
            v = tv_ref(a->pos[auto_idx++]);
        } else if (f[0] >= '0' && f[0] <= '9') {
            if (numbering == 1)
                return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "cannot switch from automatic field numbering to manual field specification");
            numbering = 2;
            size_t idx = 0;
            for (size_t q = 0; q < k; q++) {
                if (f[q] < '0' || f[q] > '9' || idx > 100000) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "bad field name");
                idx = idx * 10 + (size_t)(f[q] - '0');
            }
            if (idx >= a->npos)
                return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "Replacement index %zu out of range for positional args tuple", idx);
            v = tv_ref(a->pos[idx]);
        } else {
            uint32_t q;
            for (q = 0; q < a->nkw; q++)
                if (a->kwn[q]->len == k && memcmp(a->kwn[q]->s, f, k) == 0) break;
            if (q == a->nkw) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "KeyError: '%.*s'", (int)k, f);
            v = tv_ref(a->kwv[q]);
        }
        /* .attr and [key] chains */
        while (k < fl && (f[k] == '.' || f[k] == '[')) {
            tpl_val nx;
            int r;
            if (f[k] == '.') {
                size_t e = k + 1;
                while (e < fl && f[e] != '.' && f[e] != '[' && f[e] != '!' && f[e] != ':') e++;
                if (e - k - 1 && f[k + 1] == '_') {
                    rl__tpl_decref(c, v);
                    return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "access to a private attribute is unsafe");
                }
                r = rl__tpl_getattr_s(c, v, f + k + 1, e - k - 1, &nx);
                k = e;
            } else {
                size_t e = k + 1;
                while (e < fl && f[e] != ']') e++;
                if (e >= fl) {
                    rl__tpl_decref(c, v);
                    return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "Missing ']' in format string");
                }
                bool digits = e > k + 1;
                for (size_t q = k + 1; q < e; q++) digits &= f[q] >= '0' && f[q] <= '9';
                tpl_val key;
                if (digits && e - k - 1 < 18) {
                    key = tv_int(strtoll(f + k + 1, NULL, 10));
                } else {
                    tpl_str *ks = rl__tpl_str_new(c, f + k + 1, e - k - 1);
                    if (!ks) return rl__tpl_decref(c, v), -1;
                    key = tv_obj(TV_STR, 0, ks);
                }
                r = rl__tpl_getitem(c, v, key, &nx);
                rl__tpl_decref(c, key);
                k = e + 1;
            }
            rl__tpl_decref(c, v);
            if (r) return -1;
            v = nx;
        }
        char conv = 0;
        if (k < fl && f[k] == '!') {
            if (k + 1 >= fl) return rl__tpl_decref(c, v), rl__tpl_fail(c, RL_ERR_INVALID_ARG, "end of string while looking for conversion specifier");
            conv = f[k + 1];
            k += 2;
        }
        const char *spec = "";
        size_t sn = 0;
        if (k < fl && f[k] == ':') {
            spec = f + k + 1;
            sn = fl - k - 1;
            if (memchr(spec, '{', sn)) {
                rl__tpl_decref(c, v);
                return rl__tpl_fail(c, RL_ERR_UNSUPPORTED, "nested replacement fields in format specs are not supported");
            }
        } else if (k < fl) {
            rl__tpl_decref(c, v);
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "expected ':' after conversion specifier");
        }
        int r;
        if (conv == 'r' || conv == 'a' || conv == 's') {
            tpl_sb t;
            rl__tpl_sb_init(&t);
            r = conv == 's' ? rl__tpl_to_str(c, &t, v) : rl__tpl_repr(c, &t, v, 0);
            tpl_str *ts = r ? NULL : rl__tpl_sb_finish(c, &t);
            if (r) rl__tpl_sb_drop(c, &t);
            r = ts ? format_value(c, b, tv_obj(TV_STR, 0, ts), spec, sn) : -1;
            if (ts) rl__tpl_obj_decref(c, &ts->h);
        } else if (conv) {
            r = rl__tpl_fail(c, RL_ERR_INVALID_ARG, "Unknown conversion specifier %c", conv);
        } else {
            r = format_value(c, b, v, spec, sn);
        }
        rl__tpl_decref(c, v);
        if (r) return -1;
    }
    return 0;
}
