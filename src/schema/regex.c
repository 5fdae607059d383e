/*
 * regex.c - a parser for the ECMAScript (ECMA-262) regular expressions of JSON Schema's
 * `pattern`, into a small tree the grammar writer walks (regex_gbnf.c). It takes the
 * subset a context-free grammar can express and says, with the byte offset, what it does
 * not take: backreferences, lookaround, word boundaries, property escapes, flags, and
 * anchors anywhere but at the ends of top-level alternatives. Annex B leniencies are kept
 * where a schema author would expect them (a `{` or `]` that starts nothing is literal).
 */
#include "schema/schema_impl.h"

#include <stdio.h>

#define MAX_NODES 100000
#define MAX_DEPTH 100
#define MAX_COUNT 100000 /* a larger {m,n} count is refused here already */
#define MAX_CP 0x10FFFF

/* ---- code point sets ------------------------------------------------------------------ */

typedef struct cset {
    uint32_t *r; /* [2n] */
    uint32_t n, cap;
    bool oom;
} cset;

static void cs_add(cset *s, uint32_t lo, uint32_t hi) {
    if (s->oom) return;
    if (s->n == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 8;
        uint32_t *r = rl__realloc(s->r, (size_t)cap * 2 * sizeof *r);
        if (!r) {
            s->oom = true;
            return;
        }
        s->r = r;
        s->cap = cap;
    }
    s->r[2 * s->n] = lo;
    s->r[2 * s->n + 1] = hi;
    s->n++;
}

static int cmp_range(const void *a, const void *b) {
    const uint32_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* Sort, merge overlapping and adjacent ranges, and cut out the surrogates. */
static void cs_normalize(cset *s) {
    if (s->oom || !s->n) return;
    qsort(s->r, s->n, 2 * sizeof *s->r, cmp_range);
    uint32_t m = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        uint32_t lo = s->r[2 * i], hi = s->r[2 * i + 1];
        if (m && lo <= s->r[2 * m - 1] + 1) {
            if (hi > s->r[2 * m - 1]) s->r[2 * m - 1] = hi;
        } else {
            s->r[2 * m] = lo;
            s->r[2 * m + 1] = hi;
            m++;
        }
    }
    s->n = m;
    /* split around D800-DFFF */
    cset t = {0};
    for (uint32_t i = 0; i < s->n; i++) {
        uint32_t lo = s->r[2 * i], hi = s->r[2 * i + 1];
        if (hi < 0xD800 || lo > 0xDFFF) {
            cs_add(&t, lo, hi);
            continue;
        }
        if (lo < 0xD800) cs_add(&t, lo, 0xD7FF);
        if (hi > 0xDFFF) cs_add(&t, 0xE000, hi);
    }
    rl__free(s->r);
    *s = t;
}

static void cs_complement(cset *s) {
    cs_normalize(s);
    cset t = {0};
    uint32_t next = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->r[2 * i] > next) cs_add(&t, next, s->r[2 * i] - 1);
        next = s->r[2 * i + 1] + 1;
    }
    if (next <= MAX_CP) cs_add(&t, next, MAX_CP);
    t.oom |= s->oom;
    rl__free(s->r);
    *s = t;
    cs_normalize(s);
}

/* ECMAScript's \s: WhiteSpace and LineTerminator (ECMA-262 22.2.2.9, tables 35/36). */
static const uint32_t SPACE_RANGES[] = {0x09,   0x0D,   0x20,   0x20,   0xA0,   0xA0,   0x1680,
                                        0x1680, 0x2000, 0x200A, 0x2028, 0x2029, 0x202F, 0x202F,
                                        0x205F, 0x205F, 0x3000, 0x3000, 0xFEFF, 0xFEFF};

static void cs_class_escape(cset *s, char e) {
    cset t = {0};
    switch (e | 0x20) {
    case 'd':
        cs_add(&t, '0', '9');
        break;
    case 'w':
        cs_add(&t, '0', '9');
        cs_add(&t, 'A', 'Z');
        cs_add(&t, '_', '_');
        cs_add(&t, 'a', 'z');
        break;
    case 's':
        for (size_t i = 0; i < RL_ARRAY_LEN(SPACE_RANGES); i += 2)
            cs_add(&t, SPACE_RANGES[i], SPACE_RANGES[i + 1]);
        break;
    }
    if (e >= 'A' && e <= 'Z') cs_complement(&t);
    for (uint32_t i = 0; i < t.n; i++) cs_add(s, t.r[2 * i], t.r[2 * i + 1]);
    s->oom |= t.oom;
    rl__free(t.r);
}

/* ---- the parser ------------------------------------------------------------------------ */

typedef struct parser {
    const char *s;
    size_t n, i;
    rl__re *re;
    int depth;
    rl_status st;
    char *err;
    size_t err_size;
} parser;

static bool perr(parser *p, rl_status st, size_t at, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static bool perr(parser *p, rl_status st, size_t at, const char *fmt, ...) {
    if (p->st == RL_OK) {
        p->st = st;
        char m[256];
        va_list ap;
        va_start(ap, fmt);
        rl__vfmt(m, sizeof m, fmt, ap);
        va_end(ap);
        if (st == RL_ERR_NOMEM)
            rl__fmt(p->err, p->err_size, "out of memory");
        else
            rl__fmt(p->err, p->err_size, "regex: %s (at offset %zu)", m, at);
    }
    return false;
}

static int64_t new_node(parser *p, int kind, size_t pos) {
    rl__re *re = p->re;
    if (re->n_nodes >= MAX_NODES) {
        perr(p, RL_ERR_LIMIT, pos, "more than %d nodes", MAX_NODES);
        return -1;
    }
    if (re->n_nodes == re->cap_nodes) {
        uint32_t cap = re->cap_nodes ? re->cap_nodes * 2 : 32;
        rl__re_node *nn = rl__realloc(re->nodes, (size_t)cap * sizeof *nn);
        if (!nn) {
            perr(p, RL_ERR_NOMEM, pos, "out of memory");
            return -1;
        }
        re->nodes = nn;
        re->cap_nodes = cap;
    }
    rl__re_node *nd = &re->nodes[re->n_nodes];
    memset(nd, 0, sizeof *nd);
    nd->kind = kind;
    nd->pos = pos;
    return re->n_nodes++;
}

static int64_t set_node(parser *p, cset *s, size_t pos) {
    cs_normalize(s);
    if (s->oom) {
        rl__free(s->r);
        perr(p, RL_ERR_NOMEM, pos, "out of memory");
        return -1;
    }
    int64_t k = new_node(p, RL__RE_SET, pos);
    if (k < 0) {
        rl__free(s->r);
        return -1;
    }
    p->re->nodes[k].ranges = s->r;
    p->re->nodes[k].n = s->n;
    return k;
}

static int64_t cp_node(parser *p, uint32_t c, size_t pos) {
    cset s = {0};
    cs_add(&s, c, c);
    return set_node(p, &s, pos);
}

/* A node with kids[0..nk) (copied). */
static int64_t list_node(parser *p, int kind, const uint32_t *kids, uint32_t nk, size_t pos) {
    uint32_t *k = rl__malloc((size_t)(nk ? nk : 1) * sizeof *k);
    if (!k) {
        perr(p, RL_ERR_NOMEM, pos, "out of memory");
        return -1;
    }
    memcpy(k, kids, (size_t)nk * sizeof *k);
    int64_t i = new_node(p, kind, pos);
    if (i < 0) {
        rl__free(k);
        return -1;
    }
    p->re->nodes[i].kids = k;
    p->re->nodes[i].n = nk;
    return i;
}

static int hexd(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* n hex digits at p->s[at]; -1 when not there. */
static long hex_at(const parser *p, size_t at, int n) {
    if (at + (size_t)n > p->n) return -1;
    long v = 0;
    for (int k = 0; k < n; k++) {
        int h = hexd((unsigned char)p->s[at + (size_t)k]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    return v;
}

/* The next code point of the pattern (UTF-8). */
static bool next_cp(parser *p, uint32_t *c) {
    size_t k = rl__sch_utf8_decode(p->s + p->i, p->n - p->i, c);
    if (!k) return perr(p, RL_ERR_INVALID_ARG, p->i, "invalid UTF-8");
    p->i += k;
    return true;
}

/* An escape after '\' (p->i at the letter). Writes a code point (*is_set false) or adds a
 * class escape to set (*is_set true). */
static bool parse_escape(parser *p, bool in_class, uint32_t *cp, cset *set, bool *is_set) {
    size_t at = p->i - 1;
    *is_set = false;
    if (p->i >= p->n) return perr(p, RL_ERR_INVALID_ARG, at, "\\ at the end of the pattern");
    char e = p->s[p->i];
    switch (e) {
    case 'd':
    case 'D':
    case 'w':
    case 'W':
    case 's':
    case 'S':
        p->i++;
        cs_class_escape(set, e);
        *is_set = true;
        return true;
    case 'b':
        p->i++;
        if (in_class) {
            *cp = 8;
            return true;
        }
        return perr(p, RL_ERR_UNSUPPORTED, at, "word boundaries (\\b) are not supported");
    case 'B':
        return perr(p, RL_ERR_UNSUPPORTED, at, "word boundaries (\\B) are not supported");
    case 't':
        p->i++;
        *cp = '\t';
        return true;
    case 'n':
        p->i++;
        *cp = '\n';
        return true;
    case 'r':
        p->i++;
        *cp = '\r';
        return true;
    case 'v':
        p->i++;
        *cp = 0x0B;
        return true;
    case 'f':
        p->i++;
        *cp = 0x0C;
        return true;
    case '0':
        if (p->i + 1 < p->n && p->s[p->i + 1] >= '0' && p->s[p->i + 1] <= '9')
            return perr(p, RL_ERR_UNSUPPORTED, at, "octal escapes are not supported");
        p->i++;
        *cp = 0;
        return true;
    case 'c':
        if (p->i + 1 < p->n && ((p->s[p->i + 1] | 0x20) >= 'a' && (p->s[p->i + 1] | 0x20) <= 'z')) {
            *cp = (uint32_t)(p->s[p->i + 1] % 32);
            p->i += 2;
            return true;
        }
        return perr(p, RL_ERR_INVALID_ARG, at, "\\c must be followed by a letter");
    case 'x': {
        long v = hex_at(p, p->i + 1, 2);
        if (v < 0) return perr(p, RL_ERR_INVALID_ARG, at, "\\x needs two hex digits");
        p->i += 3;
        *cp = (uint32_t)v;
        return true;
    }
    case 'u': {
        if (p->i + 1 < p->n && p->s[p->i + 1] == '{') {
            size_t j = p->i + 2;
            unsigned long v = 0;
            while (j < p->n && hexd((unsigned char)p->s[j]) >= 0 && v <= MAX_CP)
                v = v * 16 + (unsigned long)hexd((unsigned char)p->s[j++]);
            if (j == p->i + 2 || j >= p->n || p->s[j] != '}' || v > MAX_CP)
                return perr(p, RL_ERR_INVALID_ARG, at, "invalid \\u{...} escape");
            p->i = j + 1;
            *cp = (uint32_t)v;
        } else {
            long v = hex_at(p, p->i + 1, 4);
            if (v < 0) return perr(p, RL_ERR_INVALID_ARG, at, "\\u needs four hex digits");
            p->i += 5;
            if (v >= 0xD800 && v <= 0xDBFF && p->i + 1 < p->n && p->s[p->i] == '\\' &&
                p->s[p->i + 1] == 'u') {
                long w = hex_at(p, p->i + 2, 4);
                if (w >= 0xDC00 && w <= 0xDFFF) {
                    v = 0x10000 + ((v - 0xD800) << 10) + (w - 0xDC00);
                    p->i += 6;
                }
            }
            *cp = (uint32_t)v;
        }
        if (*cp >= 0xD800 && *cp <= 0xDFFF)
            return perr(p, RL_ERR_UNSUPPORTED, at, "lone surrogates are not supported");
        return true;
    }
    case 'p':
    case 'P':
        return perr(p, RL_ERR_UNSUPPORTED, at, "Unicode property escapes are not supported");
    case 'k':
        if (p->i + 1 < p->n && p->s[p->i + 1] == '<')
            return perr(p, RL_ERR_UNSUPPORTED, at, "backreferences are not supported");
        p->i++;
        *cp = 'k';
        return true;
    default:
        if (e >= '1' && e <= '9') {
            if (in_class) return perr(p, RL_ERR_UNSUPPORTED, at, "octal escapes are not supported");
            return perr(p, RL_ERR_UNSUPPORTED, at, "backreferences are not supported");
        }
        p->i++;
        if ((unsigned char)e >= 0x80) {
            p->i--;
            return next_cp(p, cp);
        }
        *cp = (uint32_t)(unsigned char)e; /* identity escape */
        return true;
    }
}

static int64_t parse_class(parser *p) {
    size_t at = p->i - 1;
    cset s = {0};
    bool neg = false;
    if (p->i < p->n && p->s[p->i] == '^') {
        neg = true;
        p->i++;
    }
    for (;;) {
        if (p->i >= p->n) {
            rl__free(s.r);
            perr(p, RL_ERR_INVALID_ARG, at, "unterminated character class");
            return -1;
        }
        if (p->s[p->i] == ']') {
            p->i++;
            break;
        }
        uint32_t lo, hi;
        bool lo_set = false, hi_set = false;
        if (p->s[p->i] == '\\') {
            p->i++;
            if (!parse_escape(p, true, &lo, &s, &lo_set)) break;
        } else if (!next_cp(p, &lo)) {
            break;
        }
        if (p->i + 1 < p->n && p->s[p->i] == '-' && p->s[p->i + 1] != ']') {
            size_t dash = p->i;
            p->i++;
            if (p->s[p->i] == '\\') {
                p->i++;
                if (!parse_escape(p, true, &hi, &s, &hi_set)) break;
            } else if (!next_cp(p, &hi)) {
                break;
            }
            if (lo_set || hi_set) {
                /* Annex B: a class escape at either end makes '-' literal */
                if (!lo_set) cs_add(&s, lo, lo);
                if (!hi_set) cs_add(&s, hi, hi);
                cs_add(&s, '-', '-');
                continue;
            }
            if (lo > hi) {
                rl__free(s.r);
                perr(p, RL_ERR_INVALID_ARG, dash, "range out of order in character class");
                return -1;
            }
            cs_add(&s, lo, hi);
            continue;
        }
        if (!lo_set) cs_add(&s, lo, lo);
    }
    if (p->st != RL_OK) {
        rl__free(s.r);
        return -1;
    }
    if (neg) cs_complement(&s);
    return set_node(p, &s, at);
}

/* A quantifier at p->i ({m}, {m,}, {m,n}); false when the text there is none (then it is
 * a literal '{'). */
static bool parse_braces(parser *p, uint32_t *mn, uint32_t *mx) {
    size_t j = p->i + 1;
    uint64_t a = 0, b = 0;
    size_t d0 = j;
    while (j < p->n && p->s[j] >= '0' && p->s[j] <= '9') {
        if (a <= MAX_COUNT) a = a * 10 + (uint64_t)(p->s[j] - '0');
        j++;
    }
    if (j == d0 || j >= p->n) return false;
    if (p->s[j] == '}') {
        b = a;
    } else if (p->s[j] == ',') {
        j++;
        size_t d1 = j;
        while (j < p->n && p->s[j] >= '0' && p->s[j] <= '9') {
            if (b <= MAX_COUNT) b = b * 10 + (uint64_t)(p->s[j] - '0');
            j++;
        }
        if (j >= p->n || p->s[j] != '}') return false;
        if (j == d1) b = RL__RE_INF;
    } else {
        return false;
    }
    p->i = j + 1;
    *mn = a > MAX_COUNT ? MAX_COUNT + 1 : (uint32_t)a;
    *mx = b == RL__RE_INF ? RL__RE_INF : b > MAX_COUNT ? MAX_COUNT + 1 : (uint32_t)b;
    return true;
}

static int64_t parse_alt(parser *p);

/* Whether a quantifier starts at p->i (without consuming it). */
static bool at_quantifier(parser *p) {
    if (p->i >= p->n) return false;
    char q = p->s[p->i];
    if (q == '*' || q == '+' || q == '?') return true;
    if (q != '{') return false;
    size_t save = p->i;
    uint32_t a, b;
    bool r = parse_braces(p, &a, &b);
    p->i = save;
    return r;
}

static int64_t parse_atom(parser *p) {
    size_t at = p->i;
    char c = p->s[p->i];
    switch (c) {
    case '(': {
        p->i++;
        if (p->i < p->n && p->s[p->i] == '?') {
            const char *g = p->s + p->i;
            size_t rem = p->n - p->i;
            if (rem >= 2 && g[1] == ':') {
                p->i += 2;
            } else if (rem >= 2 && (g[1] == '=' || g[1] == '!')) {
                perr(p, RL_ERR_UNSUPPORTED, at, "lookahead is not supported");
                return -1;
            } else if (rem >= 3 && g[1] == '<' && (g[2] == '=' || g[2] == '!')) {
                perr(p, RL_ERR_UNSUPPORTED, at, "lookbehind is not supported");
                return -1;
            } else if (rem >= 2 && g[1] == '<') {
                /* a group name: an identifier ($, _, letters, digits after the first) */
                size_t j = p->i + 2;
                for (; j < p->n && p->s[j] != '>'; j++) {
                    unsigned char ch = (unsigned char)p->s[j];
                    bool ok = ch >= 0x80 || ch == '$' || ch == '_' ||
                              ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z') ||
                              (j > p->i + 2 && ch >= '0' && ch <= '9');
                    if (!ok) break;
                }
                if (j >= p->n || j == p->i + 2 || p->s[j] != '>') {
                    perr(p, RL_ERR_INVALID_ARG, at, "invalid group name");
                    return -1;
                }
                p->i = j + 1;
            } else {
                size_t j = p->i + 1;
                while (j < p->n && strchr("imsx-", p->s[j]) && p->s[j]) j++;
                if (j > p->i + 1 && j < p->n && p->s[j] == ':')
                    perr(p, RL_ERR_UNSUPPORTED, at, "pattern modifiers are not supported");
                else
                    perr(p, RL_ERR_INVALID_ARG, at, "invalid group");
                return -1;
            }
        }
        if (++p->depth > MAX_DEPTH) {
            perr(p, RL_ERR_LIMIT, at, "groups nested deeper than %d", MAX_DEPTH);
            return -1;
        }
        int64_t k = parse_alt(p);
        p->depth--;
        if (k < 0) return -1;
        if (p->i >= p->n || p->s[p->i] != ')') {
            perr(p, RL_ERR_INVALID_ARG, at, "unterminated group");
            return -1;
        }
        p->i++;
        return k;
    }
    case '[':
        p->i++;
        return parse_class(p);
    case '.': {
        p->i++;
        cset s = {0};
        cs_add(&s, 0, 0x09);
        cs_add(&s, 0x0B, 0x0C);
        cs_add(&s, 0x0E, 0x2027);
        cs_add(&s, 0x202A, MAX_CP);
        return set_node(p, &s, at);
    }
    case '^':
        p->i++;
        return new_node(p, RL__RE_BOL, at);
    case '$':
        p->i++;
        return new_node(p, RL__RE_EOL, at);
    case '\\': {
        p->i++;
        cset s = {0};
        uint32_t cp;
        bool is_set;
        if (!parse_escape(p, false, &cp, &s, &is_set)) {
            rl__free(s.r);
            return -1;
        }
        if (is_set) return set_node(p, &s, at);
        return cp_node(p, cp, at);
    }
    case '*':
    case '+':
    case '?':
        perr(p, RL_ERR_INVALID_ARG, at, "nothing to repeat");
        return -1;
    case '{': {
        uint32_t a, b;
        size_t save = p->i;
        if (parse_braces(p, &a, &b)) {
            p->i = save;
            perr(p, RL_ERR_INVALID_ARG, at, "nothing to repeat");
            return -1;
        }
        p->i++;
        return cp_node(p, '{', at);
    }
    default: {
        uint32_t cp;
        if (!next_cp(p, &cp)) return -1;
        return cp_node(p, cp, at);
    }
    }
}

static int64_t parse_seq(parser *p) {
    size_t at = p->i;
    uint32_t *items = NULL;
    uint32_t n = 0, cap = 0;
    int64_t result = -1;
    while (p->i < p->n && p->s[p->i] != '|' && p->s[p->i] != ')') {
        int64_t a = parse_atom(p);
        if (a < 0) goto out;
        if (p->i < p->n) {
            char q = p->s[p->i];
            size_t qat = p->i;
            uint32_t mn = 0, mx = 0;
            bool quant = true;
            if (q == '*')
                mn = 0, mx = RL__RE_INF, p->i++;
            else if (q == '+')
                mn = 1, mx = RL__RE_INF, p->i++;
            else if (q == '?')
                mn = 0, mx = 1, p->i++;
            else if (q != '{' || !parse_braces(p, &mn, &mx))
                quant = false;
            if (quant) {
                int k = p->re->nodes[a].kind;
                if (k == RL__RE_BOL || k == RL__RE_EOL) {
                    perr(p, RL_ERR_INVALID_ARG, qat, "nothing to repeat");
                    goto out;
                }
                if (mn > MAX_COUNT || (mx != RL__RE_INF && mx > MAX_COUNT)) {
                    perr(p, RL_ERR_LIMIT, qat, "repetition count above %d", MAX_COUNT);
                    goto out;
                }
                if (mx != RL__RE_INF && mn > mx) {
                    perr(p, RL_ERR_INVALID_ARG, qat, "numbers out of order in {} quantifier");
                    goto out;
                }
                if (p->i < p->n && p->s[p->i] == '?') p->i++; /* lazy: same language */
                uint32_t kid = (uint32_t)a;
                a = list_node(p, RL__RE_REP, &kid, 1, qat);
                if (a < 0) goto out;
                p->re->nodes[a].min = mn;
                p->re->nodes[a].max = mx;
                if (at_quantifier(p)) {
                    perr(p, RL_ERR_INVALID_ARG, p->i, "nothing to repeat");
                    goto out;
                }
            }
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            uint32_t *it = rl__realloc(items, (size_t)cap * sizeof *it);
            if (!it) {
                perr(p, RL_ERR_NOMEM, at, "out of memory");
                goto out;
            }
            items = it;
        }
        items[n++] = (uint32_t)a;
    }
    if (n == 0)
        result = new_node(p, RL__RE_EMPTY, at);
    else if (n == 1)
        result = items[0];
    else
        result = list_node(p, RL__RE_SEQ, items, n, at);
out:
    rl__free(items);
    return result;
}

static int64_t parse_alt(parser *p) {
    size_t at = p->i;
    uint32_t *alts = NULL;
    uint32_t n = 0, cap = 0;
    int64_t result = -1;
    for (;;) {
        int64_t s = parse_seq(p);
        if (s < 0) goto out;
        if (n == cap) {
            cap = cap ? cap * 2 : 4;
            uint32_t *a = rl__realloc(alts, (size_t)cap * sizeof *a);
            if (!a) {
                perr(p, RL_ERR_NOMEM, at, "out of memory");
                goto out;
            }
            alts = a;
        }
        alts[n++] = (uint32_t)s;
        if (p->i < p->n && p->s[p->i] == '|') {
            p->i++;
            continue;
        }
        break;
    }
    result = n == 1 ? alts[0] : list_node(p, RL__RE_ALT, alts, n, at);
out:
    rl__free(alts);
    return result;
}

/* Anchors may only open (^) or close ($) a top-level alternative. */
static bool check_anchors(parser *p, uint32_t i, bool top) {
    const rl__re_node *nd = &p->re->nodes[i];
    switch (nd->kind) {
    case RL__RE_BOL:
    case RL__RE_EOL:
        if (top) return true;
        return perr(p, RL_ERR_UNSUPPORTED, nd->pos, "anchor %c inside the pattern",
                    nd->kind == RL__RE_BOL ? '^' : '$');
    case RL__RE_ALT:
        for (uint32_t k = 0; k < nd->n; k++)
            if (!check_anchors(p, nd->kids[k], top)) return false;
        return true;
    case RL__RE_SEQ:
        for (uint32_t k = 0; k < nd->n; k++) {
            const rl__re_node *kid = &p->re->nodes[nd->kids[k]];
            bool edge = top && ((k == 0 && kid->kind == RL__RE_BOL) ||
                                (k + 1 == nd->n && kid->kind == RL__RE_EOL));
            if (!edge && !check_anchors(p, nd->kids[k], false)) return false;
        }
        return true;
    case RL__RE_REP:
        return check_anchors(p, nd->kids[0], false);
    default:
        return true;
    }
}

rl_status rl__re_parse(const char *pattern, size_t len, rl__re *re, char *err, size_t err_size) {
    memset(re, 0, sizeof *re);
    parser p = {.s = pattern, .n = len, .re = re, .err = err, .err_size = err_size};
    int64_t root = parse_alt(&p);
    if (root >= 0 && p.i < p.n) {
        perr(&p, RL_ERR_INVALID_ARG, p.i, "unmatched )");
        root = -1;
    }
    if (root >= 0) {
        re->root = (uint32_t)root;
        /* the top-level alternatives: the root ALT's kids, or the root itself */
        if (!check_anchors(&p, re->root, true)) root = -1;
    }
    if (root < 0) {
        rl__re_free(re);
        return p.st;
    }
    return RL_OK;
}

void rl__re_free(rl__re *re) {
    for (uint32_t i = 0; i < re->n_nodes; i++) {
        rl__free(re->nodes[i].ranges);
        rl__free(re->nodes[i].kids);
    }
    rl__free(re->nodes);
    memset(re, 0, sizeof *re);
}

static uint64_t sat_add(uint64_t a, uint64_t b) {
    if (a == RL__RE_INF || b == RL__RE_INF) return RL__RE_INF;
    uint64_t s = a + b;
    return s >= RL__RE_INF ? RL__RE_INF : s;
}

static uint64_t sat_mul(uint64_t a, uint64_t b) {
    if (a == 0 || b == 0) return 0;
    if (a == RL__RE_INF || b == RL__RE_INF) return RL__RE_INF;
    uint64_t s = a * b; /* both < 2^32 */
    return s >= RL__RE_INF ? RL__RE_INF : s;
}

void rl__re_bounds(const rl__re *re, uint32_t i, uint64_t *min, uint64_t *max) {
    const rl__re_node *nd = &re->nodes[i];
    uint64_t a, b;
    switch (nd->kind) {
    case RL__RE_SET:
        *min = nd->n ? 1 : RL__RE_INF; /* an empty set matches nothing */
        *max = 1;
        return;
    case RL__RE_SEQ:
        *min = 0, *max = 0;
        for (uint32_t k = 0; k < nd->n; k++) {
            rl__re_bounds(re, nd->kids[k], &a, &b);
            *min = sat_add(*min, a);
            *max = sat_add(*max, b);
        }
        return;
    case RL__RE_ALT:
        *min = RL__RE_INF, *max = 0;
        for (uint32_t k = 0; k < nd->n; k++) {
            rl__re_bounds(re, nd->kids[k], &a, &b);
            if (a < *min) *min = a;
            if (b > *max || b == RL__RE_INF) *max = b;
        }
        return;
    case RL__RE_REP:
        rl__re_bounds(re, nd->kids[0], &a, &b);
        *min = nd->min == 0 ? 0 : sat_mul(a, nd->min);
        *max = nd->max == RL__RE_INF ? (b == 0 ? 0 : RL__RE_INF) : sat_mul(b, nd->max);
        return;
    default:
        *min = 0, *max = 0;
        return;
    }
}
