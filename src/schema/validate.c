/*
 * validate.c - a JSON Schema validator (draft 2020-12 keywords, draft-07 spellings) over
 * jansson values, and the public rl_schema_* functions.
 *
 * Evaluation is a plain recursive walk: every $ref was resolved when the schema was
 * compiled (doc.c) and every pattern compiled there, so checking allocates only PCRE2
 * match data and message buffers, and a compiled schema can be shared by threads.
 * Patterns are ECMA-262 regular expressions; PCRE2 runs them after a translation of what
 * differs (\d \w \s and `.` with ECMAScript's sets, \u escapes, [^] and [], $ only at the
 * end).
 */
#include "schema/schema_impl.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <float.h>
#include <math.h>
#include <pcre2.h>
#include <stdio.h>

#define DEFAULT_MAX_DEPTH 1000

struct rl_schema {
    rl__sdoc doc;
    rl__smap re; /* pattern value (json_t *) or patternProperties key (char *) -> code */
    pcre2_code **codes;
    size_t n_codes, cap_codes;
    pcre2_general_context *gctx;
    uint32_t flags, max_depth;
};

static void *pc_malloc(size_t n, void *u) {
    (void)u;
    return rl__malloc(n);
}
static void pc_free(void *p, void *u) {
    (void)u;
    rl__free(p);
}

/* ---- ECMAScript to PCRE2 -------------------------------------------------------------- */

#define ES_SPACE                                                                                   \
    "\\t\\n\\x{b}\\f\\r \\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}"            \
    "\\x{205f}\\x{3000}\\x{feff}"

/* The complement of ES_SPACE, for use inside a class (PCRE2's own \S there is ASCII's). */
#define ES_NOT_SPACE                                                                               \
    "\\x{0}-\\x{8}\\x{e}-\\x{1f}\\x{21}-\\x{9f}\\x{a1}-\\x{167f}\\x{1681}-\\x{1fff}"               \
    "\\x{200b}-\\x{2027}\\x{202a}-\\x{202e}\\x{2030}-\\x{205e}\\x{2060}-\\x{2fff}"                 \
    "\\x{3001}-\\x{d7ff}\\x{e000}-\\x{fefe}\\x{ff00}-\\x{10ffff}"

static int hexv(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* \uHHHH at s[i] (s[i] == '\\', s[i+1] == 'u'): the code unit, or -1. */
static long u4(const char *s, size_t n, size_t i) {
    if (i + 6 > n) return -1;
    long v = 0;
    for (size_t k = i + 2; k < i + 6; k++) {
        int h = hexv((unsigned char)s[k]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* ECMAScript's long General_Category names (ECMA-262 table "Value aliases", from Unicode's
 * PropertyValueAliases.txt), which PCRE2 10.42 knows only by their short names. */
static const char *const GC_NAMES[][2] = {{"Letter", "L"},
                                          {"Cased_Letter", "LC"},
                                          {"Uppercase_Letter", "Lu"},
                                          {"Lowercase_Letter", "Ll"},
                                          {"Titlecase_Letter", "Lt"},
                                          {"Modifier_Letter", "Lm"},
                                          {"Other_Letter", "Lo"},
                                          {"Mark", "M"},
                                          {"Combining_Mark", "M"},
                                          {"Nonspacing_Mark", "Mn"},
                                          {"Spacing_Mark", "Mc"},
                                          {"Enclosing_Mark", "Me"},
                                          {"Number", "N"},
                                          {"Decimal_Number", "Nd"},
                                          {"digit", "Nd"},
                                          {"Letter_Number", "Nl"},
                                          {"Other_Number", "No"},
                                          {"Punctuation", "P"},
                                          {"punct", "P"},
                                          {"Connector_Punctuation", "Pc"},
                                          {"Dash_Punctuation", "Pd"},
                                          {"Open_Punctuation", "Ps"},
                                          {"Close_Punctuation", "Pe"},
                                          {"Initial_Punctuation", "Pi"},
                                          {"Final_Punctuation", "Pf"},
                                          {"Other_Punctuation", "Po"},
                                          {"Symbol", "S"},
                                          {"Math_Symbol", "Sm"},
                                          {"Currency_Symbol", "Sc"},
                                          {"Modifier_Symbol", "Sk"},
                                          {"Other_Symbol", "So"},
                                          {"Separator", "Z"},
                                          {"Space_Separator", "Zs"},
                                          {"Line_Separator", "Zl"},
                                          {"Paragraph_Separator", "Zp"},
                                          {"Other", "C"},
                                          {"Control", "Cc"},
                                          {"cntrl", "Cc"},
                                          {"Format", "Cf"},
                                          {"Surrogate", "Cs"},
                                          {"Private_Use", "Co"},
                                          {"Unassigned", "Cn"}};

/* \p{...} / \P{...} at s[i]: write PCRE2's spelling; returns the bytes consumed (0: none). */
static size_t es_property(const char *s, size_t n, size_t i, rl__sstr *o) {
    if (i + 3 >= n || s[i + 2] != '{') return 0;
    size_t j = i + 3;
    while (j < n && s[j] != '}') j++;
    if (j >= n) return 0;
    const char *name = s + i + 3;
    size_t len = j - (i + 3);
    const char *eq = memchr(name, '=', len);
    const char *prefix = "";
    if (eq) {
        size_t kl = (size_t)(eq - name);
        if ((kl == 16 && !memcmp(name, "General_Category", 16)) ||
            (kl == 2 && !memcmp(name, "gc", 2))) {
        } else if ((kl == 17 && !memcmp(name, "Script_Extensions", 17)) ||
                   (kl == 3 && !memcmp(name, "scx", 3))) {
            prefix = "scx:";
        } else if (!(kl == 6 && !memcmp(name, "Script", 6)) &&
                   !(kl == 2 && !memcmp(name, "sc", 2))) {
            return 0;
        }
        len -= kl + 1;
        name = eq + 1;
    }
    for (size_t k = 0; k < RL_ARRAY_LEN(GC_NAMES); k++) {
        if (strlen(GC_NAMES[k][0]) == len && !memcmp(GC_NAMES[k][0], name, len)) {
            name = GC_NAMES[k][1];
            len = strlen(name);
            break;
        }
    }
    rl__sstr_putc(o, '\\');
    rl__sstr_putc(o, s[i + 1]);
    rl__sstr_putc(o, '{');
    rl__sstr_puts(o, prefix);
    rl__sstr_put(o, name, len);
    rl__sstr_putc(o, '}');
    return j + 1 - i;
}

/* The escape at s[i] ('\\', i + 1 < n) as PCRE2 reads it, in a class or not; returns the
 * bytes it takes. */
static size_t es_escape(const char *s, size_t n, size_t i, bool cls, rl__sstr *o) {
    char e = s[i + 1];
    switch (e) {
    case 'd':
        rl__sstr_puts(o, cls ? "0-9" : "[0-9]");
        break;
    case 'D':
        rl__sstr_puts(o, cls ? "\\D" : "[^0-9]");
        break;
    case 'w':
        rl__sstr_puts(o, cls ? "A-Za-z0-9_" : "[A-Za-z0-9_]");
        break;
    case 'W':
        rl__sstr_puts(o, cls ? "\\W" : "[^A-Za-z0-9_]");
        break;
    case 's':
        rl__sstr_puts(o, cls ? ES_SPACE : "[" ES_SPACE "]");
        break;
    case 'S':
        rl__sstr_puts(o, cls ? ES_NOT_SPACE : "[^" ES_SPACE "]");
        break;
    case 'v': /* PCRE2's \v is a class of vertical spaces */
        rl__sstr_puts(o, "\\x{b}");
        break;
    case 'b':
        if (cls)
            rl__sstr_puts(o, "\\x{8}");
        else
            rl__sstr_puts(o, "\\b");
        break;
    case '0':
        if (i + 2 < n && s[i + 2] >= '0' && s[i + 2] <= '9')
            rl__sstr_puts(o, "\\0");
        else
            rl__sstr_puts(o, "\\x{0}");
        break;
    case 'p':
    case 'P': {
        size_t k = es_property(s, n, i, o);
        if (k) return k;
        rl__sstr_put(o, s + i, 2);
        break;
    }
    case 'u': {
        if (i + 2 < n && s[i + 2] == '{') {
            size_t j = i + 3;
            while (j < n && hexv((unsigned char)s[j]) >= 0) j++;
            if (j < n && s[j] == '}' && j > i + 3) {
                rl__sstr_puts(o, "\\x{");
                rl__sstr_put(o, s + i + 3, j - (i + 3));
                rl__sstr_putc(o, '}');
                return j + 1 - i;
            }
            rl__sstr_putc(o, 'u');
            break;
        }
        long v = u4(s, n, i);
        if (v < 0) {
            rl__sstr_putc(o, 'u');
            break;
        }
        size_t k = 6;
        if (v >= 0xD800 && v <= 0xDBFF && i + 7 < n && s[i + 6] == '\\' && s[i + 7] == 'u') {
            long w = u4(s, n, i + 6);
            if (w >= 0xDC00 && w <= 0xDFFF) {
                v = 0x10000 + ((v - 0xD800) << 10) + (w - 0xDC00);
                k = 12;
            }
        }
        rl__sstr_printf(o, "\\x{%lx}", v);
        return k;
    }
    default:
        if (((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z')) && !strchr("tnrfcxkB", e)) {
            /* an ECMAScript identity escape: the letter itself (PCRE2 gives \e, \a,
             * \z, ... other meanings) */
            rl__sstr_putc(o, e);
        } else {
            rl__sstr_put(o, s + i, 2);
        }
    }
    return 2;
}

/* One atom of a class at s[i] into o; returns where the next one starts. *set: it is a
 * class escape (\\d \\w \\s, negations, \\p{..}). */
static size_t es_class_atom(const char *s, size_t n, size_t i, rl__sstr *o, bool *set) {
    *set = false;
    if (s[i] == '\\' && i + 1 < n) {
        *set = strchr("dDwWsSpP", s[i + 1]) != NULL;
        return i + es_escape(s, n, i, true, o);
    }
    switch (s[i]) {
    case '[':
        rl__sstr_puts(o, "\\[");
        return i + 1;
    case '-':
        rl__sstr_puts(o, "\\-");
        return i + 1;
    case '^':
        rl__sstr_puts(o, "\\^");
        return i + 1;
    default:
        break;
    }
    size_t k = 1;
    unsigned char c = (unsigned char)s[i];
    if (c >= 0xF0)
        k = 4;
    else if (c >= 0xE0)
        k = 3;
    else if (c >= 0xC0)
        k = 2;
    if (i + k > n) k = n - i;
    rl__sstr_put(o, s + i, k);
    return i + k;
}

/* A class body from s[i] (after '[' and '^') to its ']'; returns the index after it. Ranges
 * as ECMAScript parses them: atom '-' atom, where a class escape at either end makes the
 * '-' a literal (Annex B). */
static size_t es_class(const char *s, size_t n, size_t i, rl__sstr *o) {
    while (i < n && s[i] != ']') {
        bool aset, bset;
        rl__sstr a = {0};
        i = es_class_atom(s, n, i, &a, &aset);
        if (i + 1 < n && s[i] == '-' && s[i + 1] != ']') {
            rl__sstr b = {0};
            i = es_class_atom(s, n, i + 1, &b, &bset);
            rl__sstr_put(o, a.p ? a.p : "", a.len);
            rl__sstr_puts(o, aset || bset ? "\\-" : "-");
            rl__sstr_put(o, b.p ? b.p : "", b.len);
            if (b.oom) o->oom = true;
            rl__sstr_free(&b);
        } else {
            rl__sstr_put(o, a.p ? a.p : "", a.len);
        }
        if (a.oom) o->oom = true;
        rl__sstr_free(&a);
    }
    if (i < n) {
        rl__sstr_putc(o, ']');
        i++;
    }
    return i;
}

static void es_to_pcre(const char *s, size_t n, rl__sstr *o) {
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (c == '\\' && i + 1 < n) {
            i += es_escape(s, n, i, false, o);
            continue;
        }
        if (c == '[') {
            if (n - i >= 3 && !memcmp(s + i, "[^]", 3)) {
                rl__sstr_puts(o, "(?s:.)");
                i += 3;
                continue;
            }
            if (n - i >= 2 && s[i + 1] == ']') {
                rl__sstr_puts(o, "(?!)");
                i += 2;
                continue;
            }
            rl__sstr_putc(o, '[');
            i++;
            if (i < n && s[i] == '^') {
                rl__sstr_putc(o, '^');
                i++;
            }
            i = es_class(s, n, i, o);
            continue;
        }
        if (c == '.') {
            rl__sstr_puts(o, "[^\\n\\r\\x{2028}\\x{2029}]");
            i++;
            continue;
        }
        rl__sstr_putc(o, c);
        i++;
    }
}

static rl_status compile_pattern(rl_schema *sc, const void *key, const char *pat, size_t len,
                                 const char *where, char *err, size_t err_size) {
    if (rl__pmap_get(&sc->re, key, NULL)) return RL_OK;
    /* ECMAScript syntax first: PCRE2 gives meanings to what ECMAScript rejects ((?<*..),
     * a++, (*VERB), ...) */
    rl__re re;
    char rerr[256];
    rl_status rst = rl__re_parse(pat, len, &re, rerr, sizeof rerr);
    if (rst == RL_OK) rl__re_free(&re);
    if (rst == RL_ERR_NOMEM) return RL_ERR_NOMEM;
    if (rst == RL_ERR_INVALID_ARG) {
        rl__fmt(err, err_size, "%s: invalid pattern: %s", where, rerr);
        return RL_ERR_INVALID_ARG;
    }
    rl__sstr t = {0};
    es_to_pcre(pat, len, &t);
    if (t.oom) {
        rl__sstr_free(&t);
        return RL_ERR_NOMEM;
    }
    pcre2_compile_context *cc = pcre2_compile_context_create(sc->gctx);
    if (!cc) {
        rl__sstr_free(&t);
        return RL_ERR_NOMEM;
    }
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *code =
        pcre2_compile((PCRE2_SPTR)(t.p ? t.p : ""), t.len,
                      PCRE2_UTF | PCRE2_DOLLAR_ENDONLY | PCRE2_MATCH_UNSET_BACKREF, &ec, &eo, cc);
    pcre2_compile_context_free(cc);
    rl__sstr_free(&t);
    if (!code) {
        if (ec == PCRE2_ERROR_NOMEMORY || ec == PCRE2_ERROR_HEAP_FAILED) return RL_ERR_NOMEM;
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        rl__fmt(err, err_size, "%s: invalid pattern: %s", where, (const char *)msg);
        return RL_ERR_INVALID_ARG;
    }
    if (sc->n_codes == sc->cap_codes) {
        size_t cap = sc->cap_codes ? sc->cap_codes * 2 : 8;
        pcre2_code **p = rl__realloc(sc->codes, cap * sizeof *p);
        if (!p) {
            pcre2_code_free(code);
            return RL_ERR_NOMEM;
        }
        sc->codes = p;
        sc->cap_codes = cap;
    }
    sc->codes[sc->n_codes++] = code;
    if (!rl__pmap_put(&sc->re, key, (uint64_t)(uintptr_t)code)) return RL_ERR_NOMEM;
    return RL_OK;
}

/* ---- evaluation ---------------------------------------------------------------------- */

typedef struct vctx {
    const rl_schema *sc;
    int depth;
    int quiet;
    rl_status st;
    char *err;
    size_t err_size;
    bool said;
    bool skip_top_enum; /* the caller checked enum and const of the outermost schema */
    rl__sstr ipath;
} vctx;

static void say(vctx *c, const json_t *s, const char *kw, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void say(vctx *c, const json_t *s, const char *kw, const char *fmt, ...) {
    if (c->quiet || c->said || !c->err || !c->err_size) return;
    c->said = true;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    rl__vfmt(what, sizeof what, fmt, ap);
    va_end(ap);
    rl__fmt(c->err, c->err_size, "#%s: %s (%s/%s)", c->ipath.p ? c->ipath.p : "", what,
            rl__sdoc_path(&c->sc->doc, s), kw);
}

static int fail_err(vctx *c, rl_status st, const char *msg) {
    if (c->st == RL_OK) {
        c->st = st;
        if (c->err && c->err_size) rl__fmt(c->err, c->err_size, "%s", msg);
        c->said = true;
    }
    return -1;
}

static const char *num_text(const json_t *v, char *buf, size_t n) {
    rl__sstr s = {0};
    rl__json_canon(v, &s);
    rl__fmt(buf, n, "%s", s.p ? s.p : "?");
    rl__sstr_free(&s);
    return buf;
}

static bool is_integral(const json_t *x) {
    if (json_is_integer(x)) return true;
    if (!json_is_real(x)) return false;
    double d = json_real_value(x);
    return isfinite(d) && d == floor(d);
}

static bool type_ok(const char *t, const json_t *x) {
    if (!strcmp(t, "null")) return json_is_null(x);
    if (!strcmp(t, "boolean")) return json_is_boolean(x);
    if (!strcmp(t, "object")) return json_is_object(x);
    if (!strcmp(t, "array")) return json_is_array(x);
    if (!strcmp(t, "number")) return json_is_number(x);
    if (!strcmp(t, "string")) return json_is_string(x);
    if (!strcmp(t, "integer")) return is_integral(x);
    return false;
}

static const char *type_name(const json_t *x) {
    switch (json_typeof(x)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return is_integral(x) ? "integer" : "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    default:
        return "null";
    }
}

/* Evaluate x against s; ann (NULL: not wanted) gets, for an object or array x, the keys or
 * items that s and its in-place applicators evaluated (the annotations unevaluated*
 * needs), one flag per key in iteration order or per item. */
static int ev2(vctx *c, const json_t *s, const json_t *x, bool *ann);

static int ev(vctx *c, const json_t *s, const json_t *x) { return ev2(c, s, x, NULL); }

static size_t ipath_push_key(vctx *c, const char *k) {
    size_t save = c->ipath.len;
    rl__sstr_putc(&c->ipath, '/');
    for (; *k; k++) {
        if (*k == '~')
            rl__sstr_puts(&c->ipath, "~0");
        else if (*k == '/')
            rl__sstr_puts(&c->ipath, "~1");
        else
            rl__sstr_putc(&c->ipath, *k);
    }
    return save;
}

static size_t ipath_push_ix(vctx *c, size_t i) {
    size_t save = c->ipath.len;
    rl__sstr_printf(&c->ipath, "/%zu", i);
    return save;
}

static void ipath_pop(vctx *c, size_t save) {
    c->ipath.len = save;
    if (c->ipath.p) c->ipath.p[save] = 0;
}

/* Evaluate quietly (for anyOf, oneOf, not, if, contains). */
static int ev_quiet(vctx *c, const json_t *s, const json_t *x) {
    c->quiet++;
    int r = ev(c, s, x);
    c->quiet--;
    return r;
}

static int regex_match(vctx *c, const void *key, const char *subj, size_t len) {
    uint64_t v;
    if (!rl__pmap_get(&c->sc->re, key, &v))
        return fail_err(c, RL_ERR_INTERNAL, "pattern not compiled");
    pcre2_code *code = (pcre2_code *)(uintptr_t)v;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(code, c->sc->gctx);
    if (!md) return fail_err(c, RL_ERR_NOMEM, "out of memory");
    int rc = pcre2_match(code, (PCRE2_SPTR)subj, len, 0, 0, md, NULL);
    pcre2_match_data_free(md);
    if (rc >= 0) return 1;
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc == PCRE2_ERROR_NOMEMORY) return fail_err(c, RL_ERR_NOMEM, "out of memory");
    return fail_err(c, RL_ERR_LIMIT, "pattern matching stopped at a PCRE2 limit");
}

/* The numeric keywords. */
static int ev_number(vctx *c, const json_t *s, const json_t *x) {
    char b1[64], b2[64];
    const json_t *v;
    bool ex_max_bool = json_is_true(json_object_get(s, "exclusiveMaximum"));
    bool ex_min_bool = json_is_true(json_object_get(s, "exclusiveMinimum"));
    if ((v = json_object_get(s, "maximum")) && json_is_number(v)) {
        int k = rl__json_num_cmp(x, v);
        if (k > 0 || (ex_max_bool && k == 0)) {
            say(c, s, "maximum", "%s is greater than %sthe maximum %s", num_text(x, b1, 64),
                ex_max_bool ? "or equal to " : "", num_text(v, b2, 64));
            return 0;
        }
    }
    if ((v = json_object_get(s, "exclusiveMaximum")) && json_is_number(v) &&
        rl__json_num_cmp(x, v) >= 0) {
        say(c, s, "exclusiveMaximum", "%s is not less than %s", num_text(x, b1, 64),
            num_text(v, b2, 64));
        return 0;
    }
    if ((v = json_object_get(s, "minimum")) && json_is_number(v)) {
        int k = rl__json_num_cmp(x, v);
        if (k < 0 || (ex_min_bool && k == 0)) {
            say(c, s, "minimum", "%s is less than %sthe minimum %s", num_text(x, b1, 64),
                ex_min_bool ? "or equal to " : "", num_text(v, b2, 64));
            return 0;
        }
    }
    if ((v = json_object_get(s, "exclusiveMinimum")) && json_is_number(v) &&
        rl__json_num_cmp(x, v) <= 0) {
        say(c, s, "exclusiveMinimum", "%s is not greater than %s", num_text(x, b1, 64),
            num_text(v, b2, 64));
        return 0;
    }
    if ((v = json_object_get(s, "multipleOf")) && json_is_number(v)) {
        bool ok;
        if (json_is_integer(x) && json_is_integer(v) && json_integer_value(v) != 0) {
            json_int_t m = json_integer_value(v);
            ok = (m == 1 || m == -1) ? true : json_integer_value(x) % m == 0;
        } else {
            long double a = json_is_integer(x) ? (long double)json_integer_value(x)
                                               : (long double)json_real_value(x);
            long double m = json_is_integer(v) ? (long double)json_integer_value(v)
                                               : (long double)json_real_value(v);
            long double q = a / m;
            /* q is exact up to a few units of its last place: beyond 2^64 every
             * quotient is "integral" */
            long double d = fabsl(q - roundl(q));
            ok = m != 0 && isfinite((double)q) && (d < 1e-9L || d <= fabsl(q) * 8 * LDBL_EPSILON);
        }
        if (!ok) {
            say(c, s, "multipleOf", "%s is not a multiple of %s", num_text(x, b1, 64),
                num_text(v, b2, 64));
            return 0;
        }
    }
    return 1;
}

static int ev_string(vctx *c, const json_t *s, const json_t *x) {
    const json_t *v;
    size_t n = 0;
    bool counted = false;
    const char *str = json_string_value(x);
    size_t len = json_string_length(x);
    if ((v = json_object_get(s, "maxLength")) && json_is_number(v)) {
        n = rl__sch_utf8_count(str, len), counted = true;
        json_t *nv = json_integer((json_int_t)n);
        if (!nv) return fail_err(c, RL_ERR_NOMEM, "out of memory");
        int k = rl__json_num_cmp(nv, v);
        json_decref(nv);
        if (k > 0) {
            say(c, s, "maxLength", "string of %zu characters is longer than %s", n,
                num_text(v, (char[64]){0}, 64));
            return 0;
        }
    }
    if ((v = json_object_get(s, "minLength")) && json_is_number(v)) {
        if (!counted) n = rl__sch_utf8_count(str, len);
        json_t *nv = json_integer((json_int_t)n);
        if (!nv) return fail_err(c, RL_ERR_NOMEM, "out of memory");
        int k = rl__json_num_cmp(nv, v);
        json_decref(nv);
        if (k < 0) {
            say(c, s, "minLength", "string of %zu characters is shorter than %s", n,
                num_text(v, (char[64]){0}, 64));
            return 0;
        }
    }
    if ((v = json_object_get(s, "pattern")) && json_is_string(v)) {
        int r = regex_match(c, v, str, len);
        if (r < 0) return -1;
        if (!r) {
            say(c, s, "pattern", "string does not match the pattern \"%.100s\"",
                json_string_value(v));
            return 0;
        }
    }
    return 1;
}

static int ev_array(vctx *c, const json_t *s, const json_t *x, bool *ann) {
    size_t n = json_array_size(x);
    const json_t *v;
    char b[64];
    if ((v = json_object_get(s, "maxItems")) && json_is_number(v)) {
        json_t *nv = json_integer((json_int_t)n);
        if (!nv) return fail_err(c, RL_ERR_NOMEM, "out of memory");
        int k = rl__json_num_cmp(nv, v);
        json_decref(nv);
        if (k > 0) {
            say(c, s, "maxItems", "array of %zu items has more than %s", n, num_text(v, b, 64));
            return 0;
        }
    }
    if ((v = json_object_get(s, "minItems")) && json_is_number(v)) {
        json_t *nv = json_integer((json_int_t)n);
        if (!nv) return fail_err(c, RL_ERR_NOMEM, "out of memory");
        int k = rl__json_num_cmp(nv, v);
        json_decref(nv);
        if (k < 0) {
            say(c, s, "minItems", "array of %zu items has fewer than %s", n, num_text(v, b, 64));
            return 0;
        }
    }
    if (json_is_true(json_object_get(s, "uniqueItems"))) {
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++)
                if (rl__json_equal(json_array_get(x, i), json_array_get(x, j))) {
                    say(c, s, "uniqueItems", "items %zu and %zu are equal", i, j);
                    return 0;
                }
    }
    /* positional schemas: prefixItems, or draft-07 items as an array */
    const json_t *prefix = json_object_get(s, "prefixItems");
    const json_t *items = json_object_get(s, "items");
    const json_t *rest = items;
    const char *rest_kw = "items";
    const char *prefix_kw = "prefixItems";
    if (json_is_array(items)) {
        prefix = items;
        prefix_kw = "items";
        rest = json_object_get(s, "additionalItems");
        rest_kw = "additionalItems";
    }
    size_t np = json_is_array(prefix) ? json_array_size(prefix) : 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *sub = i < np ? json_array_get(prefix, i) : rest;
        if (!sub) continue;
        if (ann) ann[i] = true;
        size_t save = ipath_push_ix(c, i);
        int r = ev(c, sub, json_array_get(x, i));
        ipath_pop(c, save);
        if (r <= 0) {
            if (r == 0) say(c, s, i < np ? prefix_kw : rest_kw, "item %zu is not allowed", i);
            return r;
        }
    }
    const json_t *contains = json_object_get(s, "contains");
    if (contains) {
        size_t hits = 0;
        for (size_t i = 0; i < n; i++) {
            int r = ev_quiet(c, contains, json_array_get(x, i));
            if (r < 0) return -1;
            hits += (size_t)r;
            if (r && ann) ann[i] = true;
        }
        const json_t *mn = json_object_get(s, "minContains");
        const json_t *mx = json_object_get(s, "maxContains");
        long double lo = json_is_number(mn)
                             ? (json_is_integer(mn) ? json_integer_value(mn) : json_real_value(mn))
                             : 1;
        if ((long double)hits < lo) {
            say(c, s, "contains", "%zu items match \"contains\", fewer than %.0Lf", hits, lo);
            return 0;
        }
        if (json_is_number(mx)) {
            long double hi = json_is_integer(mx) ? json_integer_value(mx) : json_real_value(mx);
            if ((long double)hits > hi) {
                say(c, s, "maxContains", "%zu items match \"contains\", more than %.0Lf", hits, hi);
                return 0;
            }
        }
    }
    return 1;
}

static int ev_object(vctx *c, const json_t *s, const json_t *x, bool *ann) {
    const json_t *v;
    char b[64];
    size_t n = json_object_size(x);
    if ((v = json_object_get(s, "maxProperties")) && json_is_number(v)) {
        json_t *nv = json_integer((json_int_t)n);
        if (!nv) return fail_err(c, RL_ERR_NOMEM, "out of memory");
        int k = rl__json_num_cmp(nv, v);
        json_decref(nv);
        if (k > 0) {
            say(c, s, "maxProperties", "object with %zu properties has more than %s", n,
                num_text(v, b, 64));
            return 0;
        }
    }
    if ((v = json_object_get(s, "minProperties")) && json_is_number(v)) {
        json_t *nv = json_integer((json_int_t)n);
        if (!nv) return fail_err(c, RL_ERR_NOMEM, "out of memory");
        int k = rl__json_num_cmp(nv, v);
        json_decref(nv);
        if (k < 0) {
            say(c, s, "minProperties", "object with %zu properties has fewer than %s", n,
                num_text(v, b, 64));
            return 0;
        }
    }
    if ((v = json_object_get(s, "required")) && json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            const json_t *k = json_array_get(v, i);
            if (json_is_string(k) &&
                !json_object_getn(x, json_string_value(k), json_string_length(k))) {
                say(c, s, "required", "the required property \"%.100s\" is missing",
                    json_string_value(k));
                return 0;
            }
        }
    }
    const json_t *dr = json_object_get(s, "dependentRequired");
    const json_t *ds = json_object_get(s, "dependentSchemas");
    const json_t *deps = json_object_get(s, "dependencies");
    const json_t *dep_maps[3] = {dr, ds, deps};
    for (int m = 0; m < 3; m++) {
        if (!json_is_object(dep_maps[m])) continue;
        const char *k;
        json_t *d;
        json_object_foreach((json_t *)dep_maps[m], k, d) {
            if (!json_object_get(x, k)) continue;
            if (json_is_array(d)) {
                for (size_t i = 0; i < json_array_size(d); i++) {
                    const json_t *r = json_array_get(d, i);
                    if (json_is_string(r) && !json_object_get(x, json_string_value(r))) {
                        say(c, s, m == 0 ? "dependentRequired" : "dependencies",
                            "\"%.60s\" requires the property \"%.60s\"", k, json_string_value(r));
                        return 0;
                    }
                }
            } else if (m > 0) {
                int r = ev2(c, d, x, ann);
                if (r <= 0) {
                    if (r == 0)
                        say(c, s, m == 1 ? "dependentSchemas" : "dependencies",
                            "the schema that \"%.60s\" brings does not match", k);
                    return r;
                }
            }
        }
    }
    const json_t *props = json_object_get(s, "properties");
    const json_t *pprops = json_object_get(s, "patternProperties");
    const json_t *addl = json_object_get(s, "additionalProperties");
    const json_t *pnames = json_object_get(s, "propertyNames");
    const char *k;
    json_t *val;
    size_t idx = 0;
    json_object_foreach((json_t *)x, k, val) {
        size_t me = idx++;
        size_t save = ipath_push_key(c, k);
        bool covered = false;
        int r = 1;
        if (pnames) {
            json_t *kj = json_string(k);
            if (!kj) return fail_err(c, RL_ERR_NOMEM, "out of memory");
            r = ev(c, pnames, kj);
            json_decref(kj);
            if (r == 0) say(c, s, "propertyNames", "the property name is not allowed");
        }
        const json_t *ps = json_is_object(props) ? json_object_get(props, k) : NULL;
        if (r > 0 && ps) {
            covered = true;
            r = ev(c, ps, val);
        }
        if (r > 0 && json_is_object(pprops)) {
            const char *pk;
            json_t *psch;
            json_object_foreach((json_t *)pprops, pk, psch) {
                int m = regex_match(c, pk, k, strlen(k));
                if (m < 0) {
                    r = -1;
                    break;
                }
                if (!m) continue;
                covered = true;
                r = ev(c, psch, val);
                if (r <= 0) break;
            }
        }
        if (r > 0 && !covered && addl) {
            covered = true;
            r = ev(c, addl, val);
            if (r == 0) say(c, s, "additionalProperties", "the property is not allowed");
        }
        if (covered && ann) ann[me] = true;
        ipath_pop(c, save);
        if (r <= 0) return r;
    }
    return 1;
}

/* A zeroed flag per key or item of x, for annotations; NULL when out of memory. */
static bool *ann_new(vctx *c, const json_t *x) {
    size_t n = json_is_object(x) ? json_object_size(x) : json_array_size(x);
    bool *a = rl__calloc(n + 1, sizeof *a);
    if (!a) fail_err(c, RL_ERR_NOMEM, "out of memory");
    return a;
}

static void ann_merge(bool *into, const bool *from, const json_t *x) {
    size_t n = json_is_object(x) ? json_object_size(x) : json_array_size(x);
    for (size_t i = 0; into && i < n; i++) into[i] |= from[i];
}

/* unevaluatedProperties / unevaluatedItems u of s on what seen leaves unmarked. */
static int ev_unevaluated(vctx *c, const json_t *s, const json_t *u, const json_t *x, bool *seen) {
    if (json_is_object(x)) {
        const char *k;
        json_t *val;
        size_t idx = 0;
        json_object_foreach((json_t *)x, k, val) {
            size_t me = idx++;
            if (seen[me]) continue;
            size_t save = ipath_push_key(c, k);
            int r = ev(c, u, val);
            ipath_pop(c, save);
            if (r == 0)
                say(c, s, "unevaluatedProperties", "the property \"%.60s\" is not allowed", k);
            if (r <= 0) return r;
            seen[me] = true;
        }
    } else {
        for (size_t i = 0; i < json_array_size(x); i++) {
            if (seen[i]) continue;
            size_t save = ipath_push_ix(c, i);
            int r = ev(c, u, json_array_get(x, i));
            ipath_pop(c, save);
            if (r == 0) say(c, s, "unevaluatedItems", "item %zu is not allowed", i);
            if (r <= 0) return r;
            seen[i] = true;
        }
    }
    return 1;
}

static int ev2(vctx *c, const json_t *s, const json_t *x, bool *ann) {
    if (json_is_true(s)) return 1;
    if (json_is_false(s)) {
        say(c, s, "", "no value is allowed here");
        return 0;
    }
    if (!json_is_object(s)) return 1;
    if (++c->depth > (int)c->sc->max_depth) {
        c->depth--;
        char m[128];
        rl__fmt(m, sizeof m, "evaluation nested deeper than %u (a $ref loop?)", c->sc->max_depth);
        return fail_err(c, RL_ERR_LIMIT, m);
    }
    int r = 1;
    const json_t *v;
    /* unevaluated*: collect this schema's annotations locally */
    const json_t *unev = NULL;
    bool *local = NULL;
    if (json_is_object(x))
        unev = json_object_get(s, "unevaluatedProperties");
    else if (json_is_array(x))
        unev = json_object_get(s, "unevaluatedItems");
    if (unev && !(local = ann_new(c, x))) {
        r = -1;
        goto done;
    }
    bool *eff = local ? local : ann;
    const json_t *target = rl__sdoc_ref(&c->sc->doc, s);
    if (target) {
        r = ev2(c, target, x, eff);
        if (r <= 0 || c->sc->doc.draft7) goto done;
    }
    if ((v = json_object_get(s, "type"))) {
        bool ok = false;
        if (json_is_string(v)) {
            ok = type_ok(json_string_value(v), x);
        } else if (json_is_array(v)) {
            for (size_t i = 0; !ok && i < json_array_size(v); i++) {
                const json_t *t = json_array_get(v, i);
                ok = json_is_string(t) && type_ok(json_string_value(t), x);
            }
        } else {
            ok = true;
        }
        if (!ok) {
            say(c, s, "type", "%s is not of the allowed type", type_name(x));
            r = 0;
            goto done;
        }
    }
    bool skip = c->skip_top_enum && c->depth == 1;
    if (!skip && (v = json_object_get(s, "const")) && !rl__json_equal(v, x)) {
        say(c, s, "const", "the value is not the constant");
        r = 0;
        goto done;
    }
    if (!skip && (v = json_object_get(s, "enum")) && json_is_array(v)) {
        bool ok = false;
        for (size_t i = 0; !ok && i < json_array_size(v); i++)
            ok = rl__json_equal(json_array_get(v, i), x);
        if (!ok) {
            say(c, s, "enum", "the value is not one of the enumerated values");
            r = 0;
            goto done;
        }
    }
    if (json_is_number(x))
        r = ev_number(c, s, x);
    else if (json_is_string(x))
        r = ev_string(c, s, x);
    else if (json_is_array(x))
        r = ev_array(c, s, x, eff);
    else if (json_is_object(x))
        r = ev_object(c, s, x, eff);
    if (r <= 0) goto done;
    if ((v = json_object_get(s, "allOf")) && json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            r = ev2(c, json_array_get(v, i), x, eff);
            if (r <= 0) goto done;
        }
    }
    if ((v = json_object_get(s, "anyOf")) && json_is_array(v)) {
        bool any = false;
        /* with annotations wanted, every branch counts (those that pass) */
        for (size_t i = 0; (!any || eff) && i < json_array_size(v); i++) {
            bool *t = eff ? ann_new(c, x) : NULL;
            if (eff && !t) {
                r = -1;
                goto done;
            }
            c->quiet++;
            r = ev2(c, json_array_get(v, i), x, t);
            c->quiet--;
            if (r == 1 && t) ann_merge(eff, t, x);
            rl__free(t);
            if (r < 0) goto done;
            any |= r == 1;
        }
        if (!any) {
            say(c, s, "anyOf", "the value matches none of the alternatives");
            r = 0;
            goto done;
        }
        r = 1;
    }
    if ((v = json_object_get(s, "oneOf")) && json_is_array(v)) {
        size_t hits = 0;
        bool *keep = NULL;
        for (size_t i = 0; hits < 2 && i < json_array_size(v); i++) {
            bool *t = eff ? ann_new(c, x) : NULL;
            if (eff && !t) {
                rl__free(keep);
                r = -1;
                goto done;
            }
            c->quiet++;
            r = ev2(c, json_array_get(v, i), x, t);
            c->quiet--;
            if (r == 1 && !keep) {
                keep = t;
                t = NULL;
            }
            rl__free(t);
            if (r < 0) {
                rl__free(keep);
                goto done;
            }
            hits += (size_t)r;
        }
        if (hits == 1 && keep) ann_merge(eff, keep, x);
        rl__free(keep);
        if (hits != 1) {
            say(c, s, "oneOf", "the value matches %s of the alternatives",
                hits ? "more than one" : "none");
            r = 0;
            goto done;
        }
        r = 1;
    }
    if ((v = json_object_get(s, "not"))) {
        r = ev_quiet(c, v, x);
        if (r < 0) goto done;
        if (r) {
            say(c, s, "not", "the value matches the schema of \"not\"");
            r = 0;
            goto done;
        }
        r = 1;
    }
    if ((v = json_object_get(s, "if"))) {
        bool *t = eff ? ann_new(c, x) : NULL;
        if (eff && !t) {
            r = -1;
            goto done;
        }
        c->quiet++;
        int cond = ev2(c, v, x, t);
        c->quiet--;
        if (cond == 1 && t) ann_merge(eff, t, x);
        rl__free(t);
        if (cond < 0) {
            r = -1;
            goto done;
        }
        const json_t *branch = json_object_get(s, cond ? "then" : "else");
        if (branch) {
            r = ev2(c, branch, x, eff);
            if (r == 0) say(c, s, cond ? "then" : "else", "the value does not match");
            if (r <= 0) goto done;
        }
    }
    if (local) {
        r = ev_unevaluated(c, s, unev, x, local);
        if (r == 1 && ann) ann_merge(ann, local, x);
    }
done:
    rl__free(local);
    c->depth--;
    return r;
}

int rl__schema_eval(const rl_schema *sc, const json_t *s, const json_t *inst, rl_status *st,
                    char *err, size_t err_size) {
    return rl__schema_eval_ex(sc, s, inst, false, st, err, err_size);
}

int rl__schema_eval_ex(const rl_schema *sc, const json_t *s, const json_t *inst, bool skip_top_enum,
                       rl_status *st, char *err, size_t err_size) {
    vctx c = {.sc = sc, .err = err, .err_size = err_size, .skip_top_enum = skip_top_enum};
    if (err && err_size) err[0] = 0;
    int r = ev(&c, s, inst);
    rl__sstr_free(&c.ipath);
    if (r < 0 && st) *st = c.st;
    return r;
}

const rl__sdoc *rl__schema_doc(const rl_schema *sc) { return &sc->doc; }

int rl__schema_pattern_match(const rl_schema *sc, const void *key, const char *s, size_t len) {
    vctx c = {.sc = sc};
    int r = regex_match(&c, key, s, len);
    rl__sstr_free(&c.ipath);
    return r;
}

/* ---- public API ----------------------------------------------------------------------- */

rl_schema_params rl_schema_default_params(void) {
    rl_schema_params p = {0};
    p.max_depth = DEFAULT_MAX_DEPTH;
    return p;
}

static const char *const UNSUPPORTED_KW[] = {"$dynamicRef", "$recursiveRef"};

rl_status rl_schema_compile(const char *schema_json, size_t len, const rl_schema_params *p,
                            rl_schema **out, char *err, size_t err_size) {
    if (out) *out = NULL;
    if (err && err_size) err[0] = 0;
    if (!out || (!schema_json && len)) {
        rl__fmt(err, err_size, "rl_schema_compile: NULL argument");
        return RL_ERR_INVALID_ARG;
    }
    rl_schema_params dp = rl_schema_default_params();
    if (!p) p = &dp;
    rl_schema *sc = rl__calloc(1, sizeof *sc);
    if (!sc) return RL_ERR_NOMEM;
    sc->flags = p->flags;
    sc->max_depth = p->max_depth ? p->max_depth : DEFAULT_MAX_DEPTH;
    sc->gctx = pcre2_general_context_create(pc_malloc, pc_free, NULL);
    if (!sc->gctx) {
        rl__free(sc);
        return RL_ERR_NOMEM;
    }
    rl_status st = rl__sdoc_load(&sc->doc, schema_json ? schema_json : "", len, p->resolve,
                                 p->resolve_user, err, err_size);
    if (st != RL_OK) {
        pcre2_general_context_free(sc->gctx);
        rl__free(sc);
        return st;
    }
    /* every walked schema: refuse what is not implemented, compile the patterns */
    for (size_t i = 0; st == RL_OK && i < sc->doc.paths.cap; i++) {
        const rl__smap_ent *e = &sc->doc.paths.ents[i];
        if (!e->key) continue;
        const json_t *s;
        memcpy(&s, e->key, sizeof s);
        if (!json_is_object(s)) continue;
        const char *where = sc->doc.path_list[e->val];
        if (!(sc->flags & RL_SCHEMA_LENIENT)) {
            for (size_t k = 0; k < RL_ARRAY_LEN(UNSUPPORTED_KW); k++) {
                if (json_object_get(s, UNSUPPORTED_KW[k])) {
                    rl__fmt(err, err_size, "%s/%s: keyword not supported by the validator", where,
                            UNSUPPORTED_KW[k]);
                    st = RL_ERR_UNSUPPORTED;
                    break;
                }
            }
        }
        const json_t *pat = json_object_get(s, "pattern");
        if (st == RL_OK && json_is_string(pat)) {
            char w[300];
            rl__fmt(w, sizeof w, "%s/pattern", where);
            st = compile_pattern(sc, pat, json_string_value(pat), json_string_length(pat), w, err,
                                 err_size);
        }
        const json_t *pp = json_object_get(s, "patternProperties");
        if (st == RL_OK && json_is_object(pp)) {
            const char *k;
            json_t *v;
            json_object_foreach((json_t *)pp, k, v) {
                char w[300];
                rl__fmt(w, sizeof w, "%s/patternProperties", where);
                st = compile_pattern(sc, k, k, strlen(k), w, err, err_size);
                if (st != RL_OK) break;
            }
        }
    }
    if (st != RL_OK) {
        if (st == RL_ERR_NOMEM) rl__fmt(err, err_size, "out of memory");
        rl_schema_free(sc);
        return st;
    }
    *out = sc;
    return RL_OK;
}

rl_status rl_schema_check(const rl_schema *s, const char *instance_json, size_t len, bool *valid,
                          char *err, size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (valid) *valid = false;
    if (!s || !valid || (!instance_json && len)) {
        rl__fmt(err, err_size, "rl_schema_check: NULL argument");
        return RL_ERR_INVALID_ARG;
    }
    rl_status st = RL_OK;
    json_t *x =
        rl__json_parse(instance_json ? instance_json : "", len, "instance", &st, err, err_size);
    if (!x) return st;
    int r = rl__schema_eval(s, s->doc.roots[0], x, &st, err, err_size);
    json_decref(x);
    if (r < 0) return st;
    *valid = r == 1;
    if (*valid && err && err_size) err[0] = 0;
    return RL_OK;
}

void rl_schema_free(rl_schema *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n_codes; i++) pcre2_code_free(s->codes[i]);
    rl__free(s->codes);
    rl__smap_free(&s->re);
    rl__sdoc_free(&s->doc);
    pcre2_general_context_free(s->gctx);
    rl__free(s);
}

rl_status rl_schema_validate(const char *schema_json, const char *instance_json, bool *valid,
                             char *err, size_t err_size) {
    if (!schema_json || !instance_json) {
        rl__fmt(err, err_size, "rl_schema_validate: NULL argument");
        return RL_ERR_INVALID_ARG;
    }
    rl_schema *s;
    rl_status st = rl_schema_compile(schema_json, strlen(schema_json), NULL, &s, err, err_size);
    if (st != RL_OK) return st;
    st = rl_schema_check(s, instance_json, strlen(instance_json), valid, err, err_size);
    rl_schema_free(s);
    return st;
}
