/*
 * gbnf.c - writing GBNF text: a table of uniquely named rules, literals and character
 * classes with llama.cpp's escapes, bounded repetitions, the built-in rules of JSON
 * (shaped like llama.cpp's json-schema-to-grammar output: `space` after punctuation only,
 * bounded whitespace, 16-digit numbers), string formats, and digit rules for integer
 * ranges.
 */
#include "schema/schema_impl.h"

#include <stdio.h>
#include <stdlib.h>

#define NAME_FREE UINT64_MAX

void rl__gb_init(rl__gb *g, uint32_t flags) {
    memset(g, 0, sizeof *g);
    g->flags = flags;
    g->max_rules = 20000;
    g->max_bytes = 8u << 20;
    g->rep_budget = 200000;
    g->max_repeat = 2000;
}

void rl__gb_free(rl__gb *g) {
    for (uint32_t i = 0; i < g->n; i++) {
        rl__free(g->names[i]);
        rl__free(g->bodies[i]);
    }
    rl__free(g->names);
    rl__free(g->bodies);
    rl__smap_free(&g->by_name);
    rl__sstr_free(&g->warnings);
    memset(g, 0, sizeof *g);
}

bool rl__gb_fail(rl__gb *g, rl_status st, const char *fmt, ...) {
    if (g->st == RL_OK) {
        g->st = st;
        va_list ap;
        va_start(ap, fmt);
        rl__vfmt(g->err, sizeof g->err, fmt, ap);
        va_end(ap);
    }
    return false;
}

bool rl__gb_unsupported(rl__gb *g, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    rl__vfmt(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (!(g->flags & RL_SCHEMA_LENIENT)) return rl__gb_fail(g, RL_ERR_UNSUPPORTED, "%s", msg);
    for (char *c = msg; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
    rl__sstr_printf(&g->warnings, "# warning: %s\n", msg);
    if (g->warnings.oom) return rl__gb_fail(g, RL_ERR_NOMEM, "out of memory");
    return true;
}

/* ---- built-in rules --------------------------------------------------------------------- */

typedef struct prim {
    const char *name;
    const char *body;
    const char *deps[6];
} prim;

static const prim PRIMS[] = {
    {"space", "| \" \" | \"\\n\"{1,2} [ \\t]{0,20}", {0}},
    {"char",
     "[^\"\\\\\\x7F\\x00-\\x1F] | [\\\\] ([\"\\\\/bfnrt] | \"u\" ([0-9a-cA-Ce-fE-F] "
     "[0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2} | [dD] [89abAB] [0-9a-fA-F]{2} \"\\\\u\" "
     "[dD] [c-fC-F] [0-9a-fA-F]{2}))",
     {0}},
    {"kchar", "[^\"\\\\\\x7F\\x00-\\x1F] | [\\\\] [\"\\\\bfnrt]", {0}},
    {"string", "\"\\\"\" char* \"\\\"\"", {"char"}},
    {"integral-part", "[0] | [1-9] [0-9]{0,15}", {0}},
    {"decimal-part", "[0-9]{1,16}", {0}},
    {"integer", "\"-\"? integral-part", {"integral-part"}},
    {"number",
     "\"-\"? integral-part (\".\" decimal-part)? ([eE] [-+]? [0-9]{1,2})?",
     {"integral-part", "decimal-part"}},
    {"boolean", "\"true\" | \"false\"", {0}},
    {"null", "\"null\"", {0}},
    {"value",
     "object | array | string | number | boolean | null",
     {"object", "array", "string", "number", "boolean", "null"}},
    {"object",
     "\"{\" space ( string space \":\" space value ( \",\" space string space \":\" space value "
     ")* space )? \"}\"",
     {"space", "string", "value"}},
    {"array", "\"[\" space ( value ( \",\" space value )* space )? \"]\"", {"space", "value"}},
    {"date",
     "[0-9]{4} \"-\" ( \"02-\" ( \"0\" [1-9] | [12] [0-9] ) | ( \"0\" [469] | \"11\" ) \"-\" "
     "( \"0\" [1-9] | [12] [0-9] | \"30\" ) | ( \"0\" [13578] | \"1\" [02] ) \"-\" ( \"0\" "
     "[1-9] | [12] [0-9] | \"3\" [01] ) )",
     {0}},
    {"time",
     "( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] \":\" [0-5] [0-9] ( \".\" [0-9]{1,9} )? "
     "( [Zz] | [+\\-] ( [01] [0-9] | \"2\" [0-3] ) \":\" [0-5] [0-9] )",
     {0}},
    {"date-time", "date [Tt] time", {"date", "time"}},
    {"uuid",
     "[0-9a-fA-F]{8} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" [0-9a-fA-F]{4} \"-\" "
     "[0-9a-fA-F]{12}",
     {0}},
    {"hostname-label", "[A-Za-z0-9]+ ( \"-\"+ [A-Za-z0-9]+ )*", {0}},
    {"hostname", "hostname-label ( \".\" hostname-label )*", {"hostname-label"}},
    {"email-atom", "[A-Za-z0-9!#$%&'*+/=?\\x5E_`{|}~\\-]+", {0}},
    {"email",
     "email-atom ( \".\" email-atom )* \"@\" hostname-label ( \".\" hostname-label )+",
     {"email-atom", "hostname-label"}},
    {"ipv4-octet",
     "\"25\" [0-5] | \"2\" [0-4] [0-9] | \"1\" [0-9] [0-9] | [1-9] [0-9] | [0-9]",
     {0}},
    {"ipv4", "ipv4-octet \".\" ipv4-octet \".\" ipv4-octet \".\" ipv4-octet", {"ipv4-octet"}},
    /* RFC 3986: a scheme, ':', then unreserved, reserved and %-encoded characters */
    {"uri",
     "[A-Za-z] [A-Za-z0-9+.\\-]* \":\" ( [A-Za-z0-9\\-._~:/?#\\[\\]@!$&'()*+,;=] | \"%\" "
     "[0-9A-Fa-f]{2} )+",
     {0}},
};

static const prim *find_prim(const char *name) {
    for (size_t i = 0; i < RL_ARRAY_LEN(PRIMS); i++)
        if (!strcmp(PRIMS[i].name, name)) return &PRIMS[i];
    return NULL;
}

bool rl__gb_is_prim(const char *name) { return find_prim(name) || !strcmp(name, "root"); }

/* ---- the rule table --------------------------------------------------------------------- */

static bool name_taken(const rl__gb *g, const char *name) {
    uint64_t v;
    return rl__smap_get(&g->by_name, name, strlen(name), &v) && v != NAME_FREE;
}

static int32_t add_slot(rl__gb *g, char *name) {
    if (g->n >= g->max_rules) {
        rl__free(name);
        rl__gb_fail(g, RL_ERR_LIMIT, "the grammar would have more than %u rules", g->max_rules);
        return -1;
    }
    if (g->n == g->cap) {
        uint32_t cap = g->cap ? g->cap * 2 : 32;
        char **n = rl__realloc(g->names, cap * sizeof *n);
        if (n) g->names = n;
        char **b = n ? rl__realloc(g->bodies, cap * sizeof *b) : NULL;
        if (b) g->bodies = b;
        if (!n || !b) {
            rl__free(name);
            rl__gb_fail(g, RL_ERR_NOMEM, "out of memory");
            return -1;
        }
        g->cap = cap;
    }
    if (!rl__smap_put(&g->by_name, name, strlen(name), g->n)) {
        rl__free(name);
        rl__gb_fail(g, RL_ERR_NOMEM, "out of memory");
        return -1;
    }
    g->names[g->n] = name;
    g->bodies[g->n] = NULL;
    return (int32_t)g->n++;
}

int32_t rl__gb_reserve(rl__gb *g, const char *hint) {
    if (g->st != RL_OK) return -1;
    rl__sstr s = {0};
    bool dash = false;
    for (const char *c = hint; *c && s.len < 64; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '-';
        if (ok) {
            rl__sstr_putc(&s, *c);
            dash = *c == '-';
        } else if (!dash) {
            rl__sstr_putc(&s, '-');
            dash = true;
        }
    }
    if (!s.len) rl__sstr_putc(&s, 'r');
    if (s.oom) {
        rl__sstr_free(&s);
        rl__gb_fail(g, RL_ERR_NOMEM, "out of memory");
        return -1;
    }
    if (strcmp(hint, "root") && rl__gb_is_prim(s.p)) rl__sstr_putc(&s, '-');
    size_t base_len = s.len;
    for (unsigned k = 1; !s.oom && name_taken(g, s.p); k++) {
        s.len = base_len;
        s.p[base_len] = 0;
        rl__sstr_printf(&s, "%u", k);
    }
    char *name = rl__sstr_take(&s);
    if (!name) {
        rl__gb_fail(g, RL_ERR_NOMEM, "out of memory");
        return -1;
    }
    return add_slot(g, name);
}

bool rl__gb_define(rl__gb *g, int32_t i, const char *body) {
    if (g->st != RL_OK || i < 0) return false;
    size_t n = strlen(body) + strlen(g->names[i]) + 6;
    if (g->bytes + n > g->max_bytes)
        return rl__gb_fail(g, RL_ERR_LIMIT, "the grammar would be larger than %zu bytes",
                           g->max_bytes);
    char *b = rl__strdup(body);
    if (!b) return rl__gb_fail(g, RL_ERR_NOMEM, "out of memory");
    rl__free(g->bodies[i]);
    g->bodies[i] = b;
    g->bytes += n;
    return true;
}

void rl__gb_unreserve(rl__gb *g, int32_t i) {
    if (i < 0 || (uint32_t)i + 1 != g->n || g->bodies[i]) return;
    rl__smap_put(&g->by_name, g->names[i], strlen(g->names[i]), NAME_FREE);
    rl__free(g->names[i]);
    g->n--;
}

const char *rl__gb_add(rl__gb *g, const char *hint, const char *body) {
    int32_t i = rl__gb_reserve(g, hint);
    if (i < 0 || !rl__gb_define(g, i, body)) return NULL;
    return g->names[i];
}

/* A built-in body without its `space` references (compact mode). */
static char *compact_body(const char *body) {
    rl__sstr s = {0};
    for (const char *c = body; *c;) {
        if (!strncmp(c, " space", 6) && (c[6] == ' ' || !c[6])) {
            c += 6;
            continue;
        }
        rl__sstr_putc(&s, *c++);
    }
    return rl__sstr_take(&s);
}

const char *rl__gb_prim(rl__gb *g, const char *name) {
    if (g->st != RL_OK) return NULL;
    const prim *p = find_prim(name);
    if (!p) {
        rl__gb_fail(g, RL_ERR_INTERNAL, "no built-in rule %s", name);
        return NULL;
    }
    uint64_t v;
    if (rl__smap_get(&g->by_name, name, strlen(name), &v) && v != NAME_FREE) return g->names[v];
    bool compact = g->flags & RL_SCHEMA_COMPACT;
    if (compact && !strcmp(name, "space")) {
        rl__gb_fail(g, RL_ERR_INTERNAL, "space in compact mode");
        return NULL;
    }
    char *nm = rl__strdup(name);
    if (!nm) {
        rl__gb_fail(g, RL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    int32_t i = add_slot(g, nm);
    if (i < 0) return NULL;
    char *body = compact ? compact_body(p->body) : rl__strdup(p->body);
    if (!body) {
        rl__gb_fail(g, RL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    bool ok = rl__gb_define(g, i, body);
    rl__free(body);
    if (!ok) return NULL;
    for (int k = 0; k < 6 && p->deps[k]; k++) {
        if (compact && !strcmp(p->deps[k], "space")) continue;
        if (!rl__gb_prim(g, p->deps[k])) return NULL;
    }
    return g->names[i];
}

/* Past the literal ("...") or character class ([...]) that starts at c, escapes included
 * (the end of the text when it is not closed). */
static const char *skip_literal(const char *c) {
    char close = *c == '"' ? '"' : ']';
    c++;
    while (*c && *c != close) c += (*c == '\\' && c[1]) ? 2 : 1;
    return *c ? c + 1 : c;
}

/* Mark the rules body i refers to (names outside literals, classes and counts). */
static bool mark_refs(rl__gb *g, uint32_t i, uint8_t *seen, uint32_t *stack, uint32_t *sp) {
    const char *c = g->bodies[i];
    if (!c) return true;
    while (*c) {
        if (*c == '"' || *c == '[') {
            c = skip_literal(c);
            continue;
        }
        if (*c == '{') {
            while (*c && *c != '}') c++;
            if (*c) c++;
            continue;
        }
        const char *b = c;
        while ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
               *c == '-')
            c++;
        if (c == b) {
            c++;
            continue;
        }
        uint64_t v;
        if (rl__smap_get(&g->by_name, b, (size_t)(c - b), &v) && v != NAME_FREE && !seen[v]) {
            seen[v] = 1;
            stack[(*sp)++] = (uint32_t)v;
        }
    }
    return true;
}

char *rl__gb_text(rl__gb *g) {
    rl__sstr s = {0};
    if (g->warnings.len) rl__sstr_put(&s, g->warnings.p, g->warnings.len);
    uint64_t root = NAME_FREE;
    rl__smap_get(&g->by_name, "root", 4, &root);
    /* only the rules reachable from root (a branch that turned out empty may have left
     * some behind) */
    uint8_t *seen = rl__calloc(g->n + 1, 1);
    uint32_t *stack = rl__malloc((g->n + 1) * sizeof *stack);
    if (!seen || !stack) {
        rl__free(seen);
        rl__free(stack);
        rl__sstr_free(&s);
        return NULL;
    }
    uint32_t sp = 0;
    if (root != NAME_FREE) {
        seen[root] = 1;
        stack[sp++] = (uint32_t)root;
    }
    while (sp) {
        uint32_t i = stack[--sp];
        mark_refs(g, i, seen, stack, &sp);
    }
    for (int pass = 0; pass < 2; pass++) {
        for (uint32_t i = 0; i < g->n; i++) {
            if ((pass == 0) != (i == root) || !g->bodies[i] || !seen[i]) continue;
            rl__sstr_puts(&s, g->names[i]);
            rl__sstr_puts(&s, " ::= ");
            rl__sstr_puts(&s, g->bodies[i]);
            rl__sstr_putc(&s, '\n');
        }
    }
    rl__free(seen);
    rl__free(stack);
    return rl__sstr_take(&s);
}

/* ---- literals and classes ---------------------------------------------------------------- */

static void put_cp_escaped(rl__sstr *out, uint32_t c) {
    if (c < 0x20 || c == 0x7F) {
        switch (c) {
        case '\n':
            rl__sstr_puts(out, "\\n");
            break;
        case '\r':
            rl__sstr_puts(out, "\\r");
            break;
        case '\t':
            rl__sstr_puts(out, "\\t");
            break;
        default:
            rl__sstr_printf(out, "\\x%02X", c);
        }
    } else if ((c >= 0x80 && c < 0xA0) || c == 0x2028 || c == 0x2029 || c == 0xFEFF) {
        rl__sstr_printf(out, "\\u%04X", c);
    } else {
        rl__sstr_put_cp(out, c);
    }
}

bool rl__gb_lit(rl__sstr *out, const char *s, size_t n) {
    rl__sstr_putc(out, '"');
    for (size_t i = 0; i < n;) {
        uint32_t c;
        size_t k = rl__sch_utf8_decode(s + i, n - i, &c);
        if (!k) {
            rl__sstr_printf(out, "\\x%02X", (unsigned char)s[i]);
            i++;
            continue;
        }
        i += k;
        if (c == '"')
            rl__sstr_puts(out, "\\\"");
        else if (c == '\\')
            rl__sstr_puts(out, "\\\\");
        else
            put_cp_escaped(out, c);
    }
    return rl__sstr_putc(out, '"');
}

bool rl__gb_class_cp(rl__sstr *out, uint32_t c) {
    switch (c) {
    case '\\':
        return rl__sstr_puts(out, "\\\\");
    case ']':
        return rl__sstr_puts(out, "\\]");
    case '[':
        return rl__sstr_puts(out, "\\[");
    case '-':
        return rl__sstr_puts(out, "\\-");
    case '^':
        return rl__sstr_puts(out, "\\x5E");
    case '"':
        return rl__sstr_puts(out, "\\\"");
    default:
        put_cp_escaped(out, c);
        return !out->oom;
    }
}

/* Past this many rules in one group a quantified group becomes a rule of its own (the
 * engine's limit is 2000 rules times the count). */
#define GROUP_RULES_MAX 500

uint64_t rl__gb_rules_in(const char *e) {
    uint64_t n = 0;
    for (const char *c = e; *c;) {
        if (*c == '"' || *c == '[') {
            c = skip_literal(c);
            continue;
        }
        if (*c == '(' || *c == '*' || *c == '+' || *c == '?') {
            n++;
        } else if (*c == '{') {
            char *end;
            unsigned long long a = strtoull(c + 1, &end, 10), b = a;
            if (*end == ',') b = end[1] == '}' ? a + 1 : strtoull(end + 1, &end, 10);
            n += b > a ? b - a : 0;
            while (*c && *c != '}') c++;
        }
        if (n > (1ull << 40)) return n;
        c++;
    }
    return n;
}

bool rl__gb_group(rl__gb *g, rl__sstr *out, const char *e, const char *quant, const char *hint) {
    if (g->st != RL_OK) return false;
    if (!e) return rl__gb_fail(g, RL_ERR_NOMEM, "out of memory");
    if (rl__gb_rules_in(e) + 1 >= GROUP_RULES_MAX) {
        const char *r = rl__gb_add(g, hint, e);
        if (!r) return false;
        rl__sstr_puts(out, r);
    } else {
        rl__sstr_putc(out, '(');
        rl__sstr_puts(out, e);
        rl__sstr_putc(out, ')');
    }
    rl__sstr_puts(out, quant);
    if (out->oom) return rl__gb_fail(g, RL_ERR_NOMEM, "out of memory");
    return true;
}

bool rl__gb_rep(rl__gb *g, rl__sstr *out, const char *x, uint64_t min, uint64_t max) {
    if (g->st != RL_OK) return false;
    if (!x) return rl__gb_fail(g, RL_ERR_NOMEM, "out of memory"); /* a failed string */
    if (max == 0) return true;
    uint64_t big = max == RL__RE_INF ? min : max;
    if (x[0] == '(' && (rl__gb_rules_in(x) + 1) * (big ? big : 1) >= GROUP_RULES_MAX) {
        /* the group as a rule of its own: the engine counts a rule name as one */
        size_t n = strlen(x);
        char *inner = rl__strndup(x + 1, n >= 2 ? n - 2 : 0);
        if (!inner) return rl__gb_fail(g, RL_ERR_NOMEM, "out of memory");
        const char *r = rl__gb_add(g, "group", inner);
        rl__free(inner);
        if (!r) return false;
        x = r;
    }
    if (big > g->max_repeat)
        return rl__gb_fail(g, RL_ERR_LIMIT, "a repetition of %llu exceeds the limit of %u",
                           (unsigned long long)big, g->max_repeat);
    if (big > g->rep_budget)
        return rl__gb_fail(g, RL_ERR_LIMIT,
                           "repetitions would expand the grammar past its limit (200000 copies)");
    g->rep_budget -= big;
    rl__sstr_puts(out, x);
    if (min == 0 && max == 1)
        rl__sstr_putc(out, '?');
    else if (min == 0 && max == RL__RE_INF)
        rl__sstr_putc(out, '*');
    else if (min == 1 && max == RL__RE_INF)
        rl__sstr_putc(out, '+');
    else if (min == 1 && max == 1) {
    } else if (min == max)
        rl__sstr_printf(out, "{%llu}", (unsigned long long)min);
    else if (max == RL__RE_INF)
        rl__sstr_printf(out, "{%llu,}", (unsigned long long)min);
    else
        rl__sstr_printf(out, "{%llu,%llu}", (unsigned long long)min, (unsigned long long)max);
    if (out->oom) return rl__gb_fail(g, RL_ERR_NOMEM, "out of memory");
    return true;
}

/* Scan GBNF expression e at the top level: number of elements, whether a '|' occurs,
 * whether the last element carries a quantifier. */
static void scan(const char *e, int *n_elems, bool *has_alt, bool *quantified) {
    int n = 0;
    bool alt = false, q = false;
    const char *c = e;
    while (*c) {
        if (*c == ' ' || *c == '\t' || *c == '\n') {
            c++;
            continue;
        }
        if (*c == '|') {
            alt = true;
            c++;
            continue;
        }
        q = false;
        if (*c == '*' || *c == '+' || *c == '?') {
            q = true;
            c++;
            continue;
        }
        if (*c == '{') {
            while (*c && *c != '}') c++;
            if (*c) c++;
            q = true;
            continue;
        }
        n++;
        if (*c == '"' || *c == '[') {
            c = skip_literal(c);
        } else if (*c == '(') {
            int depth = 0;
            while (*c) {
                if (*c == '"' || *c == '[') {
                    c = skip_literal(c);
                    continue;
                }
                if (*c == '(') depth++;
                if (*c == ')' && --depth == 0) {
                    c++;
                    break;
                }
                c++;
            }
        } else {
            while (*c && *c != ' ' && *c != '|' && *c != '(' && *c != '"' && *c != '[' &&
                   *c != '*' && *c != '+' && *c != '?' && *c != '{')
                c++;
        }
    }
    *n_elems = n;
    *has_alt = alt;
    *quantified = q;
}

bool rl__gb_needs_group(const char *e) {
    int n;
    bool alt, q;
    scan(e, &n, &alt, &q);
    return alt;
}

bool rl__gb_is_atom(const char *e) {
    int n;
    bool alt, q;
    scan(e, &n, &alt, &q);
    return n == 1 && !alt && !q;
}

/* ---- integer ranges --------------------------------------------------------------------- */

static void digit_class(rl__sstr *out, char a, char b) {
    if (a == b)
        rl__sstr_printf(out, "[%c]", a);
    else
        rl__sstr_printf(out, "[%c-%c]", a, b);
}

static void any_digits(rl__sstr *out, size_t n) {
    if (n == 1)
        rl__sstr_puts(out, "[0-9]");
    else
        rl__sstr_printf(out, "[0-9]{%zu}", n);
}

static void same_len(rl__sstr *out, const char *a, const char *b, size_t n);

/* same_len as one element: in parentheses unless it is one already. */
static void put_group(rl__sstr *out, const char *a, const char *b, size_t n) {
    rl__sstr t = {0};
    same_len(&t, a, b, n);
    bool atom = t.p && rl__gb_is_atom(t.p);
    if (!atom) rl__sstr_putc(out, '(');
    rl__sstr_put(out, t.p ? t.p : "", t.len);
    if (!atom) rl__sstr_putc(out, ')');
    if (t.oom) out->oom = true;
    rl__sstr_free(&t);
}

/* Decimal strings of n digits between a and b (same length, a <= b): shared prefix as a
 * literal, then the first differing digit splits into "a's digit with the rest at least
 * a's rest", "the digits strictly between with anything after", and "b's digit with the
 * rest at most b's rest". */
static void same_len(rl__sstr *out, const char *a, const char *b, size_t n) {
    size_t i = 0;
    while (i < n && a[i] == b[i]) i++;
    if (i > 0) {
        rl__sstr_putc(out, '"');
        rl__sstr_put(out, a, i);
        rl__sstr_putc(out, '"');
    }
    if (i == n) return;
    if (i > 0) rl__sstr_putc(out, ' ');
    size_t rest = n - i - 1;
    if (rest == 0) {
        digit_class(out, a[i], b[i]);
        return;
    }
    bool lo_full = true, hi_full = true;
    for (size_t k = i + 1; k < n; k++) {
        lo_full &= a[k] == '0';
        hi_full &= b[k] == '9';
    }
    char start = lo_full ? a[i] : (char)(a[i] + 1);
    char end = hi_full ? b[i] : (char)(b[i] - 1);
    int alts = !lo_full + (start <= end) + !hi_full;
    if (alts > 1) rl__sstr_putc(out, '(');
    bool first = true;
    char nines[24], zeros[24];
    memset(nines, '9', rest);
    memset(zeros, '0', rest);
    if (!lo_full) {
        if (!memcmp(a + i + 1, nines, rest)) {
            rl__sstr_putc(out, '"');
            rl__sstr_put(out, a + i, rest + 1);
            rl__sstr_putc(out, '"');
        } else {
            digit_class(out, a[i], a[i]);
            rl__sstr_putc(out, ' ');
            put_group(out, a + i + 1, nines, rest);
        }
        first = false;
    }
    if (start <= end) {
        if (!first) rl__sstr_puts(out, " | ");
        digit_class(out, start, end);
        rl__sstr_putc(out, ' ');
        any_digits(out, rest);
        first = false;
    }
    if (!hi_full) {
        if (!first) rl__sstr_puts(out, " | ");
        if (!memcmp(b + i + 1, zeros, rest)) {
            rl__sstr_putc(out, '"');
            rl__sstr_put(out, b + i, rest + 1);
            rl__sstr_putc(out, '"');
        } else {
            digit_class(out, b[i], b[i]);
            rl__sstr_putc(out, ' ');
            put_group(out, zeros, b + i + 1, rest);
        }
    }
    if (alts > 1) rl__sstr_putc(out, ')');
}

/* Magnitudes in [lo, hi] (lo <= hi), split by number of digits. */
static void mag_range(rl__sstr *out, uint64_t lo, uint64_t hi) {
    char a[24], b[24];
    int la = snprintf(a, sizeof a, "%llu", (unsigned long long)lo);
    int lb = snprintf(b, sizeof b, "%llu", (unsigned long long)hi);
    bool first = true;
    for (int d = la; d <= lb; d++) {
        char x[24], y[24];
        if (d == la)
            memcpy(x, a, (size_t)d + 1);
        else {
            x[0] = '1';
            memset(x + 1, '0', (size_t)d - 1);
            x[d] = 0;
        }
        if (d == lb)
            memcpy(y, b, (size_t)d + 1);
        else {
            memset(y, '9', (size_t)d);
            y[d] = 0;
        }
        if (!first) rl__sstr_puts(out, " | ");
        first = false;
        same_len(out, x, y, (size_t)d);
    }
}

static uint64_t neg_mag(int64_t v) { return (uint64_t)(-(v + 1)) + 1; }

bool rl__gb_int_range(rl__sstr *out, int64_t lo, int64_t hi) {
    bool any = false;
    if (lo < 0) {
        uint64_t mlo = hi < 0 ? neg_mag(hi) : 1, mhi = neg_mag(lo);
        rl__sstr_puts(out, "\"-\" (");
        mag_range(out, mlo, mhi);
        rl__sstr_putc(out, ')');
        any = true;
    }
    if (hi >= 0) {
        if (any) rl__sstr_puts(out, " | ");
        mag_range(out, lo < 0 ? 0 : (uint64_t)lo, (uint64_t)hi);
    }
    return !out->oom;
}
