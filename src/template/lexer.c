/*
 * lexer.c - template source to tokens, with jinja2's whitespace rules as Hugging Face
 * configures them: trim_blocks (the first newline after a block or comment tag is
 * removed), lstrip_blocks (spaces and tabs before a block or comment tag that starts a
 * line are removed), `-` (strip all whitespace on that side) and `+` (keep it) markers,
 * newlines normalized to "\n" and one trailing newline dropped. Also the compile arena
 * and the identifier table.
 */
#include "template/lex.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- arena ---------------------------------------------------------------- */

struct tpl_chunk {
    tpl_chunk *next;
    size_t size;
    _Alignas(16) unsigned char data[];
};

void *rl__tpl_arena_alloc(tpl_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->cap - a->used < n) {
        size_t sz = n > 32768 ? n : 32768;
        tpl_chunk *ch = rl__malloc(sizeof(tpl_chunk) + sz);
        if (!ch) return NULL;
        ch->next = a->head;
        ch->size = sz;
        a->head = ch;
        a->used = 0;
        a->cap = sz;
        a->total += sz;
    }
    void *p = a->head->data + a->used;
    a->used += n;
    memset(p, 0, n);
    return p;
}

void rl__tpl_arena_free(tpl_arena *a) {
    tpl_chunk *c = a->head;
    while (c) {
        tpl_chunk *n = c->next;
        rl__free(c);
        c = n;
    }
    memset(a, 0, sizeof(*a));
}

const tpl_str *rl__tpl_const_str(tpl_program *p, const char *s, size_t n) {
    tpl_str *r = rl__tpl_arena_alloc(&p->arena, sizeof(tpl_str) + n + 1);
    if (!r) return NULL;
    r->h.rc = TPL_IMMORTAL;
    r->h.kind = TV_STR;
    r->len = n;
    if (n) memcpy(r->s, s, n);
    r->s[n] = 0;
    r->ncp = rl__tpl_utf8_count(r->s, n);
    return r;
}

/* ---- identifiers: open addressing over interned strings -------------------- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

const tpl_str *rl__tpl_lookup_name(const tpl_program *p, const char *s, size_t n) {
    if (!p->names_cap) return NULL;
    size_t mask = p->names_cap - 1;
    for (size_t i = hash_bytes(s, n) & mask;; i = (i + 1) & mask) {
        const tpl_str *e = p->names[i];
        if (!e) return NULL;
        if (e->len == n && memcmp(e->s, s, n) == 0) return e;
    }
}

const tpl_str *rl__tpl_intern(tpl_program *p, const char *s, size_t n) {
    const tpl_str *e = rl__tpl_lookup_name(p, s, n);
    if (e) return e;
    if ((p->nnames + 1) * 2 > p->names_cap) {
        size_t cap = p->names_cap ? p->names_cap * 2 : 64;
        const tpl_str **nv = rl__calloc(cap, sizeof(*nv));
        if (!nv) return NULL;
        for (size_t i = 0; i < p->names_cap; i++) {
            const tpl_str *x = p->names[i];
            if (!x) continue;
            size_t j = hash_bytes(x->s, x->len) & (cap - 1);
            while (nv[j]) j = (j + 1) & (cap - 1);
            nv[j] = x;
        }
        rl__free(p->names);
        p->names = nv;
        p->names_cap = cap;
    }
    const tpl_str *r = rl__tpl_const_str(p, s, n);
    if (!r) return NULL;
    size_t j = hash_bytes(s, n) & (p->names_cap - 1);
    while (p->names[j]) j = (j + 1) & (p->names_cap - 1);
    p->names[j] = r;
    p->nnames++;
    return r;
}

/* ---- lexer ---------------------------------------------------------------- */

typedef struct lexer {
    tpl_program *p;
    const char *s; /* normalized source */
    size_t n;
    size_t *lines; /* byte offset of each line start */
    size_t nlines;
    tpl_toks *out;
    char *err;
    size_t err_size;
    rl_status st;
    /* position cursor: tokens come in increasing offsets, so columns are counted
     * incrementally (a template on one long line must not cost quadratic time) */
    size_t cur_off;
    uint32_t cur_line, cur_col;
} lexer;

static void pos_of(const lexer *L, size_t off, uint32_t *line, uint32_t *col);

/* Line and column of off, from the cursor when off is at or after it. */
static void pos_fwd(lexer *L, size_t off, uint32_t *line, uint32_t *col) {
    if (off < L->cur_off || L->cur_line == 0) {
        pos_of(L, off, line, col);
    } else {
        uint32_t ln = L->cur_line, cl = L->cur_col;
        for (size_t i = L->cur_off; i < off; i++) {
            unsigned char ch = (unsigned char)L->s[i];
            if (ch == '\n') ln++, cl = 1;
            else if ((ch & 0xC0) != 0x80) cl++;
        }
        *line = ln;
        *col = cl;
    }
    L->cur_off = off;
    L->cur_line = *line;
    L->cur_col = *col;
}

static void pos_of(const lexer *L, size_t off, uint32_t *line, uint32_t *col) {
    size_t lo = 0, hi = L->nlines; /* last line start <= off */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (L->lines[mid] <= off) lo = mid;
        else hi = mid;
    }
    *line = (uint32_t)(lo + 1);
    *col = (uint32_t)(rl__tpl_utf8_count(L->s + L->lines[lo], off - L->lines[lo]) + 1);
}

static rl_status lex_fail(lexer *L, size_t off, rl_status st, const char *fmt, ...) {
    uint32_t line, col;
    pos_of(L, off, &line, &col);
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    rl__fmt(L->err, L->err_size, "line %u, column %u: %s", line, col, msg);
    L->st = st;
    return st;
}

static tpl_tok *push_tok(lexer *L, uint8_t type, size_t off, size_t len) {
    tpl_toks *t = L->out;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 256;
        tpl_tok *nv = rl__realloc(t->v, cap * sizeof(*nv));
        if (!nv) {
            L->st = RL_ERR_NOMEM;
            rl__fmt(L->err, L->err_size, "out of memory");
            return NULL;
        }
        t->v = nv;
        t->cap = cap;
    }
    tpl_tok *k = &t->v[t->n++];
    memset(k, 0, sizeof(*k));
    k->type = type;
    k->s = L->s + off;
    k->n = len;
    pos_fwd(L, off, &k->line, &k->col);
    return k;
}

/* Python's str.isspace / re's \s for str patterns. */
bool rl__tpl_isspace(int32_t c) {
    if (c < 128) return c == ' ' || (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x1f);
    return c == 0x85 || c == 0xa0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200a) ||
           c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Length of the whitespace character at s[i], 0 when none. */
static size_t ws_at(const char *s, size_t n, size_t i) {
    if (i >= n) return 0;
    size_t j = i;
    int32_t c = rl__tpl_utf8_next(s, n, &j);
    return rl__tpl_isspace(c) ? j - i : 0;
}

static size_t skip_ws(const char *s, size_t n, size_t i) {
    size_t k;
    while ((k = ws_at(s, n, i)) > 0) i += k;
    return i;
}

/* Start of the trailing whitespace of s[a, b). */
static size_t rstrip_pos(const char *s, size_t a, size_t b) {
    while (b > a) {
        size_t j = b - 1;
        while (j > a && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
        size_t k = j;
        int32_t c = rl__tpl_utf8_next(s, b, &k);
        if (!rl__tpl_isspace(c)) break;
        b = j;
    }
    return b;
}

static int emit_data(lexer *L, size_t a, size_t b) {
    if (b <= a) return 0;
    tpl_tok *k = push_tok(L, TK_DATA, a, b - a);
    if (!k) return -1;
    k->str = rl__tpl_const_str(L->p, L->s + a, b - a);
    if (!k->str) {
        L->st = RL_ERR_NOMEM;
        rl__fmt(L->err, L->err_size, "out of memory");
        return -1;
    }
    return 0;
}

/* Text s[a, b) before a tag whose whitespace sign is sign; applies `-` and lstrip_blocks
 * (not for {{ }}), as jinja2's OptionalLStrip does, and emits it. */
static int emit_text(lexer *L, size_t a, size_t b, char sign, bool is_var, bool line_starting) {
    if (sign == '-') {
        b = rstrip_pos(L->s, a, b);
    } else if (sign != '+' && !is_var) {
        size_t lpos = b;
        while (lpos > a && L->s[lpos - 1] != '\n') lpos--;
        if ((lpos > a || line_starting) && lpos < b) {
            bool all_ws = true;
            for (size_t i = lpos; i < b;) {
                size_t k = ws_at(L->s, b, i);
                if (!k) {
                    all_ws = false;
                    break;
                }
                i += k;
            }
            if (all_ws) b = lpos;
        }
    }
    return emit_data(L, a, b);
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_name0(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_name1(char c) { return is_name0(c) || is_digit(c); }
static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Digits with single underscores between them ((\d+_)*\d+): end offset, or i if none. */
static size_t scan_digits(const char *s, size_t n, size_t i) {
    if (i >= n || !is_digit(s[i])) return i;
    while (i < n && is_digit(s[i])) {
        i++;
        if (i + 1 < n && s[i] == '_' && is_digit(s[i + 1])) i++;
    }
    return i;
}

static size_t scan_float(const char *s, size_t n, size_t i) {
    if (i > 0 && s[i - 1] == '.') return i;
    size_t j = scan_digits(s, n, i);
    if (j == i) return i;
    size_t k = j;
    bool frac = false;
    if (k < n && s[k] == '.') {
        size_t m = scan_digits(s, n, k + 1);
        if (m > k + 1) {
            k = m;
            frac = true;
        }
    }
    if (k < n && (s[k] == 'e' || s[k] == 'E')) {
        size_t e = k + 1;
        if (e < n && (s[e] == '+' || s[e] == '-')) e++;
        size_t m = scan_digits(s, n, e);
        if (m > e) return m;
    }
    return frac ? k : i;
}

static int lex_number(lexer *L, size_t *pos) {
    const char *s = L->s;
    size_t i = *pos, n = L->n;
    size_t e = scan_float(s, n, i);
    if (e > i) {
        char buf[128];
        size_t m = 0;
        for (size_t k = i; k < e && m < sizeof(buf) - 1; k++)
            if (s[k] != '_') buf[m++] = s[k];
        buf[m] = 0;
        tpl_tok *t = push_tok(L, TK_FLOAT, i, e - i);
        if (!t) return -1;
        t->f = strtod(buf, NULL);
        *pos = e;
        return 0;
    }
    int base = 10;
    size_t j = i;
    if (s[i] == '0' && i + 1 < n && strchr("bBoOxX", s[i + 1]) && s[i + 1]) {
        char b = (char)(s[i + 1] | 0x20);
        base = b == 'b' ? 2 : b == 'o' ? 8 : 16;
        j = i + 2;
        size_t k = j;
        while (k < n) {
            size_t q = k;
            if (s[q] == '_') q++;
            int v = q < n ? hexval(s[q]) : -1;
            if (v < 0 || v >= base) break;
            k = q + 1;
        }
        if (k == j) { /* "0x" without digits: the integer is "0" */
            base = 10;
            j = i + 1;
        } else {
            j = k;
        }
    } else if (s[i] == '0') {
        j = i + 1;
        while (j < n) {
            size_t q = j;
            if (s[q] == '_') q++;
            if (q < n && s[q] == '0') j = q + 1;
            else break;
        }
    } else {
        j = scan_digits(s, n, i);
    }
    uint64_t v = 0;
    size_t k0 = base == 10 ? i : i + 2;
    for (size_t k = k0; k < j; k++) {
        if (s[k] == '_') continue;
        int d = hexval(s[k]);
        if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base || v * base + d > (uint64_t)INT64_MAX)
            return lex_fail(L, i, RL_ERR_UNSUPPORTED, "integer literal too large"), -1;
        v = v * base + (uint64_t)d;
    }
    tpl_tok *t = push_tok(L, TK_INT, i, j - i);
    if (!t) return -1;
    t->i = (int64_t)v;
    *pos = j;
    return 0;
}

static void put_utf8(char *o, size_t *m, uint32_t cp) {
    if (cp < 0x80) {
        o[(*m)++] = (char)cp;
    } else if (cp < 0x800) {
        o[(*m)++] = (char)(0xC0 | (cp >> 6));
        o[(*m)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        o[(*m)++] = (char)(0xE0 | (cp >> 12));
        o[(*m)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[(*m)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        o[(*m)++] = (char)(0xF0 | (cp >> 18));
        o[(*m)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        o[(*m)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[(*m)++] = (char)(0x80 | (cp & 0x3F));
    }
}

/* A string literal: Python's unicode-escape decoding of the text between the quotes
 * (jinja2 decodes it that way after backslash-escaping non-ASCII characters). */
static int lex_string(lexer *L, size_t *pos) {
    const char *s = L->s;
    size_t n = L->n, i = *pos;
    char q = s[i];
    size_t j = i + 1;
    while (j < n && s[j] != q) {
        if (s[j] == '\\') {
            if (j + 1 >= n) break;
            j++;
        }
        j++;
    }
    if (j >= n) return lex_fail(L, i, RL_ERR_BAD_FILE, "unterminated string literal"), -1;
    /* decoded text is never longer than 10 bytes per source byte (\xNN of a lone
     * non-ASCII byte after a backslash expands to at most "\U0010ffff") */
    size_t cap = (j - i) * 10 + 16;
    char *o = rl__malloc(cap);
    if (!o) return L->st = RL_ERR_NOMEM, -1;
    size_t m = 0;
    for (size_t k = i + 1; k < j;) {
        if (s[k] != '\\') {
            o[m++] = s[k++];
            continue;
        }
        size_t at = k;
        char e = s[k + 1];
        k += 2;
        switch (e) {
        case '\n': break;
        case '\\': o[m++] = '\\'; break;
        case '\'': o[m++] = '\''; break;
        case '"': o[m++] = '"'; break;
        case 'a': o[m++] = 7; break;
        case 'b': o[m++] = 8; break;
        case 'f': o[m++] = 12; break;
        case 'n': o[m++] = '\n'; break;
        case 'r': o[m++] = '\r'; break;
        case 't': o[m++] = '\t'; break;
        case 'v': o[m++] = 11; break;
        case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': {
            uint32_t v = (uint32_t)(e - '0');
            for (int d = 0; d < 2 && k < j && s[k] >= '0' && s[k] <= '7'; d++, k++)
                v = v * 8 + (uint32_t)(s[k] - '0');
            put_utf8(o, &m, v);
            break;
        }
        case 'x': case 'u': case 'U': {
            int nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t v = 0;
            for (int d = 0; d < nd; d++, k++) {
                int h = k < j ? hexval(s[k]) : -1;
                if (h < 0) {
                    rl__free(o);
                    return lex_fail(L, at, RL_ERR_BAD_FILE, "truncated \\%c escape in string", e), -1;
                }
                v = v * 16 + (uint32_t)h;
            }
            if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
                rl__free(o);
                return lex_fail(L, at, RL_ERR_UNSUPPORTED,
                                "string escape \\%c gives a surrogate or invalid code point", e), -1;
            }
            put_utf8(o, &m, v);
            break;
        }
        case 'N':
            rl__free(o);
            return lex_fail(L, at, RL_ERR_UNSUPPORTED, "\\N{...} escapes are not supported"), -1;
        default:
            if ((unsigned char)e >= 0x80) {
                /* jinja2 backslash-escapes the non-ASCII character first, so the
                 * pair decodes to a backslash plus that escape, as text */
                size_t kk = k - 1;
                uint32_t cp = (uint32_t)rl__tpl_utf8_next(s, j, &kk);
                k = kk;
                m += (size_t)snprintf(o + m, cap - m,
                                      cp < 0x100 ? "\\x%02x" : cp < 0x10000 ? "\\u%04x" : "\\U%08x", cp);
            } else { /* unknown escape: kept as written */
                o[m++] = '\\';
                o[m++] = e;
            }
        }
    }
    tpl_tok *t = push_tok(L, TK_STRING, i, j + 1 - i);
    if (t) t->str = rl__tpl_const_str(L->p, o, m);
    rl__free(o);
    if (!t || !t->str) return L->st = RL_ERR_NOMEM, -1;
    *pos = j + 1;
    return 0;
}

static const struct {
    const char *s;
    uint8_t op;
} OPS[] = {
    {"//", OP_FLOORDIV}, {"**", OP_POW}, {"==", OP_EQ}, {"!=", OP_NE}, {">=", OP_GE},
    {"<=", OP_LE},       {"+", OP_ADD},  {"-", OP_SUB}, {"/", OP_DIV}, {"*", OP_MUL},
    {"%", OP_MOD},       {"~", OP_TILDE}, {"[", OP_LBRACKET}, {"]", OP_RBRACKET},
    {"(", OP_LPAREN},    {")", OP_RPAREN}, {"{", OP_LBRACE}, {"}", OP_RBRACE},
    {">", OP_GT},        {"<", OP_LT},   {"=", OP_ASSIGN}, {".", OP_DOT}, {":", OP_COLON},
    {"|", OP_PIPE},      {",", OP_COMMA}, {";", OP_SEMI},
};

#define MAX_BRACKETS 256

/* Tokens of one {{ }} or {% %} tag starting at *pos (after the opening delimiter and
 * its sign). Returns the offset after the closing delimiter (and the whitespace it
 * strips), sets *line_starting. */
static int lex_tag(lexer *L, size_t *pos, bool is_block, size_t tag_start, bool *line_starting) {
    const char *s = L->s;
    size_t n = L->n, i = *pos;
    char stack[MAX_BRACKETS];
    int depth = 0;
    for (;;) {
        if (i >= n)
            return lex_fail(L, tag_start, RL_ERR_BAD_FILE, "unexpected end of template: the %s is not closed",
                            is_block ? "'{%' tag" : "'{{' expression"), -1;
        if (depth == 0) {
            const char *end = is_block ? "%}" : "}}";
            size_t m = 0;
            bool strip = false;
            if (s[i] == '-' && i + 2 < n + 0 && memcmp(s + i + 1, end, 2) == 0) m = 3, strip = true;
            else if (is_block && s[i] == '+' && i + 2 < n && memcmp(s + i + 1, end, 2) == 0) m = 3;
            else if (i + 1 < n && memcmp(s + i, end, 2) == 0) m = 2;
            if (m) {
                if (!push_tok(L, is_block ? TK_BLOCK_END : TK_VAR_END, i, m)) return -1;
                size_t e = i + m;
                if (strip) e = skip_ws(s, n, e);
                else if (is_block && m == 2 && e < n && s[e] == '\n') e++; /* trim_blocks */
                *line_starting = e > 0 && s[e - 1] == '\n';
                *pos = e;
                return 0;
            }
        }
        size_t w = skip_ws(s, n, i);
        if (w > i) {
            i = w;
            continue;
        }
        char ch = s[i];
        if (is_digit(ch)) {
            if (lex_number(L, &i)) return -1;
            continue;
        }
        if (is_name0(ch)) {
            size_t j = i + 1;
            while (j < n && is_name1(s[j])) j++;
            tpl_tok *t = push_tok(L, TK_NAME, i, j - i);
            if (!t) return -1;
            t->str = rl__tpl_intern(L->p, s + i, j - i);
            if (!t->str) return L->st = RL_ERR_NOMEM, -1;
            i = j;
            continue;
        }
        if (ch == '\'' || ch == '"') {
            if (lex_string(L, &i)) return -1;
            continue;
        }
        size_t k;
        for (k = 0; k < RL_ARRAY_LEN(OPS); k++) {
            size_t l = strlen(OPS[k].s);
            if (i + l <= n && memcmp(s + i, OPS[k].s, l) == 0) break;
        }
        if (k == RL_ARRAY_LEN(OPS)) {
            size_t j = i;
            int32_t cp = rl__tpl_utf8_next(s, n, &j);
            return lex_fail(L, i, RL_ERR_BAD_FILE, "unexpected character U+%04X in a tag", (unsigned)cp), -1;
        }
        uint8_t op = OPS[k].op;
        if (op == OP_LPAREN || op == OP_LBRACKET || op == OP_LBRACE) {
            if (depth == MAX_BRACKETS)
                return lex_fail(L, i, RL_ERR_LIMIT, "brackets nested too deeply"), -1;
            stack[depth++] = op == OP_LPAREN ? ')' : op == OP_LBRACKET ? ']' : '}';
        } else if (op == OP_RPAREN || op == OP_RBRACKET || op == OP_RBRACE) {
            if (depth == 0) return lex_fail(L, i, RL_ERR_BAD_FILE, "unexpected '%c'", ch), -1;
            if (stack[depth - 1] != ch)
                return lex_fail(L, i, RL_ERR_BAD_FILE, "unexpected '%c', expected '%c'", ch,
                                stack[depth - 1]), -1;
            depth--;
        }
        tpl_tok *t = push_tok(L, TK_OP, i, strlen(OPS[k].s));
        if (!t) return -1;
        t->op = op;
        i += strlen(OPS[k].s);
    }
}

/* Does {% [-+]? \s* word \s* (-%} | %} | +%}) start at i? On success *after is the end
 * of the match (with the whitespace a `-` strips and, when trim is set, one newline). */
static bool match_word_tag(const lexer *L, size_t i, const char *word, bool trim, char *sign,
                           size_t *after) {
    const char *s = L->s;
    size_t n = L->n;
    if (i + 2 > n || s[i] != '{' || s[i + 1] != '%') return false;
    size_t j = i + 2;
    *sign = 0;
    if (j < n && (s[j] == '-' || s[j] == '+')) *sign = s[j++];
    j = skip_ws(s, n, j);
    size_t wl = strlen(word);
    if (j + wl > n || memcmp(s + j, word, wl) != 0) return false;
    j = skip_ws(s, n, j + wl);
    if (j + 3 <= n && s[j] == '-' && s[j + 1] == '%' && s[j + 2] == '}') {
        *after = skip_ws(s, n, j + 3);
        return true;
    }
    if (trim && j + 3 <= n && s[j] == '+' && s[j + 1] == '%' && s[j + 2] == '}') {
        *after = j + 3;
        return true;
    }
    if (j + 2 <= n && s[j] == '%' && s[j + 1] == '}') {
        j += 2;
        if (trim && j < n && s[j] == '\n') j++;
        *after = j;
        return true;
    }
    return false;
}

static int lex_all(lexer *L) {
    const char *s = L->s;
    size_t n = L->n, pos = 0;
    bool line_starting = true;
    while (pos < n) {
        /* next tag start */
        size_t t = pos;
        int kind = 0; /* 1 var, 2 block, 3 comment, 4 raw */
        char sign = 0;
        size_t raw_after = 0;
        for (; t + 1 < n; t++) {
            if (s[t] != '{') continue;
            char c = s[t + 1];
            if (c == '%') {
                char sg;
                if (match_word_tag(L, t, "raw", false, &sg, &raw_after)) {
                    kind = 4;
                    sign = sg;
                } else {
                    kind = 2;
                }
                break;
            }
            if (c == '{') {
                kind = 1;
                break;
            }
            if (c == '#') {
                kind = 3;
                break;
            }
        }
        if (!kind) {
            if (emit_data(L, pos, n)) return -1;
            break;
        }
        size_t after = t + 2;
        if (kind != 4 && after < n && (s[after] == '-' || s[after] == '+')) sign = s[after++];
        if (emit_text(L, pos, t, sign, kind == 1, line_starting)) return -1;
        if (kind == 3) { /* comment */
            size_t j = after;
            for (; j + 1 < n; j++)
                if (s[j] == '#' && s[j + 1] == '}') break;
            if (j + 1 >= n) return lex_fail(L, t, RL_ERR_BAD_FILE, "missing end of comment tag"), -1;
            char es = j > after && (s[j - 1] == '-' || s[j - 1] == '+') ? s[j - 1] : 0;
            size_t e = j + 2;
            if (es == '-') e = skip_ws(s, n, e);
            else if (!es && e < n && s[e] == '\n') e++;
            line_starting = e > 0 && s[e - 1] == '\n';
            pos = e;
            continue;
        }
        if (kind == 4) { /* raw: text up to {% endraw %} */
            size_t j = raw_after, e = 0;
            char es = 0;
            for (; j < n; j++)
                if (s[j] == '{' && match_word_tag(L, j, "endraw", true, &es, &e)) break;
            if (j >= n) return lex_fail(L, t, RL_ERR_BAD_FILE, "missing end of raw directive"), -1;
            bool ls = raw_after > 0 && s[raw_after - 1] == '\n';
            if (emit_text(L, raw_after, j, es, false, ls)) return -1;
            line_starting = e > 0 && s[e - 1] == '\n';
            pos = e;
            continue;
        }
        if (!push_tok(L, kind == 1 ? TK_VAR_BEGIN : TK_BLOCK_BEGIN, t, after - t)) return -1;
        pos = after;
        if (lex_tag(L, &pos, kind == 2, t, &line_starting)) return -1;
    }
    return push_tok(L, TK_EOF, n, 0) ? 0 : -1;
}

void rl__tpl_toks_free(tpl_toks *t) {
    rl__free(t->v);
    memset(t, 0, sizeof(*t));
}

rl_status rl__tpl_lex(tpl_program *p, const char *src, size_t len, tpl_toks *out, char *err,
                      size_t err_size) {
    /* validate UTF-8 first: every later step relies on it */
    size_t line = 1, col = 1;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        int32_t cp = rl__tpl_utf8_next(src, len, &j);
        if (cp < 0) {
            rl__fmt(err, err_size, "line %zu, column %zu: invalid UTF-8 in the template", line, col);
            return RL_ERR_BAD_FILE;
        }
        if (cp == '\n') line++, col = 1;
        else col++;
        i = j;
    }
    char *s = rl__malloc(len + 1);
    if (!s) return RL_ERR_NOMEM;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n > 0 && s[n - 1] == '\n') n--;
    s[n] = 0;
    lexer L = {.p = p, .s = s, .n = n, .out = out, .err = err, .err_size = err_size, .st = RL_OK};
    size_t nl = 1;
    for (size_t i = 0; i < n; i++) nl += s[i] == '\n';
    L.lines = rl__malloc(nl * sizeof(size_t));
    if (!L.lines) {
        rl__free(s);
        return RL_ERR_NOMEM;
    }
    L.lines[0] = 0;
    L.nlines = 1;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\n') L.lines[L.nlines++] = i + 1;
    memset(out, 0, sizeof(*out));
    int rc = lex_all(&L);
    rl__free(L.lines);
    if (rc) {
        if (L.st == RL_OK) L.st = RL_ERR_NOMEM;
        if (L.st == RL_ERR_NOMEM) rl__fmt(err, err_size, "out of memory");
        rl__tpl_toks_free(out);
        rl__free(s);
        return L.st;
    }
    /* tokens point into s: hand it to the caller through the arena's lifetime */
    char *keep = rl__tpl_arena_alloc(&p->arena, n + 1);
    if (!keep) {
        rl__tpl_toks_free(out);
        rl__free(s);
        return RL_ERR_NOMEM;
    }
    memcpy(keep, s, n + 1);
    for (size_t i = 0; i < out->n; i++) out->v[i].s = keep + (out->v[i].s - s);
    rl__free(s);
    return RL_OK;
}
