/*
 * parse.c - GBNF text to the IR of grammar_impl.h.
 *
 * The language and its rewriting are llama.cpp's (src/llama-grammar.cpp, MIT; described
 * in its grammars/README.md); the code is our own. What must match llama.cpp exactly, so
 * that a grammar means the same and its IR is the one llama.cpp prints:
 *   - symbol ids in order of first mention; groups and repetitions get generated symbols
 *     "<rule>_<id>" numbered from the symbol count at the time;
 *   - S{m,n} becomes S written m times then a chain of n-m optional rules
 *     (S'(x) ::= S S'(x-1) | , S'(1) ::= S | ), S{m,} becomes S m times then
 *     S' ::= S S' | , with * + ? as {0,} {1,} {0,1};
 *   - the repetition guard: counts above 2000 are refused (a maximum above 2000 means
 *     unbounded), and so is a repetition whose expansion, multiplied through nested
 *     groups, reaches 2000 rules;
 *   - whitespace: newlines are allowed inside parentheses and after `|`; a rule ends at a
 *     newline; `#` comments run to the end of the line; a later definition of a rule
 *     replaces an earlier one.
 * Where llama.cpp would loop or misbehave we refuse: {m,n} with n < m, counts that
 * overflow, invalid UTF-8, NUL bytes, nesting past limits.
 */
#include "grammar/grammar_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_REPETITION 2000

typedef struct evec {
    rl__gelem *v;
    uint32_t n, cap;
} evec;

typedef struct parser {
    const char *src; /* NUL-terminated */
    const rl_vocab *vocab;
    const rl_grammar_limits *lim;

    char **names;
    uint32_t *first_ref; /* byte offset of the first reference, UINT32_MAX none */
    evec *rules;         /* by symbol id; v == NULL: not defined */
    uint32_t n_sym, cap_sym;
    uint32_t *slot; /* name hash: id + 1 */
    uint32_t n_slot;

    uint64_t n_pushed; /* elements ever written, against lim->max_elements */
    uint32_t depth;

    rl_status st;
    const char *err_pos; /* NULL: no position */
    char msg[256];
} parser;

static void fail(parser *p, const char *pos, rl_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(parser *p, const char *pos, rl_status st, const char *fmt, ...) {
    if (p->st != RL_OK) return;
    p->st = st;
    p->err_pos = pos;
    va_list ap;
    va_start(ap, fmt);
    rl__vfmt(p->msg, sizeof p->msg, fmt, ap);
    va_end(ap);
}

static bool epush(parser *p, evec *e, uint32_t type, uint32_t value) {
    if (++p->n_pushed > p->lim->max_elements) {
        fail(p, NULL, RL_ERR_LIMIT, "the grammar expands to more than max_elements (%u) elements",
             p->lim->max_elements);
        return false;
    }
    if (e->n == e->cap) {
        uint32_t nc = e->cap ? e->cap * 2 : 16;
        rl__gelem *nv = rl__realloc(e->v, (size_t)nc * sizeof *nv);
        if (!nv) {
            fail(p, NULL, RL_ERR_NOMEM, "out of memory");
            return false;
        }
        e->v = nv;
        e->cap = nc;
    }
    e->v[e->n].type = type;
    e->v[e->n].value = value;
    e->n++;
    return true;
}

static bool eappend(parser *p, evec *e, const rl__gelem *src, uint32_t n) {
    for (uint32_t i = 0; i < n; i++)
        if (!epush(p, e, src[i].type, src[i].value)) return false;
    return true;
}

/* ---- symbols ------------------------------------------------------------------------ */

static uint64_t name_hash(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

static int64_t sym_find(const parser *p, const char *s, size_t n);

/* Rebuild the name hash with n_slot slots; of equal names the oldest symbol wins. */
static bool sym_rehash(parser *p, uint32_t n_slot) {
    uint32_t *slot = rl__calloc(n_slot, sizeof *slot);
    if (!slot) return false;
    rl__free(p->slot);
    p->slot = slot;
    p->n_slot = n_slot;
    for (uint32_t id = 0; id < p->n_sym; id++) {
        size_t len = strlen(p->names[id]);
        if (sym_find(p, p->names[id], len) >= 0) continue;
        uint32_t i = (uint32_t)name_hash(p->names[id], len) & (n_slot - 1);
        while (slot[i]) i = (i + 1) & (n_slot - 1);
        slot[i] = id + 1;
    }
    return true;
}

static int64_t sym_find(const parser *p, const char *s, size_t n) {
    if (!p->n_slot) return -1;
    uint32_t i = (uint32_t)name_hash(s, n) & (p->n_slot - 1);
    while (p->slot[i]) {
        const char *nm = p->names[p->slot[i] - 1];
        if (strlen(nm) == n && !memcmp(nm, s, n)) return p->slot[i] - 1;
        i = (i + 1) & (p->n_slot - 1);
    }
    return -1;
}

/* A new symbol; its name is entered into the hash unless the name is taken (a generated
 * name equal to a user's rule name keeps pointing at the user's rule). */
static int64_t sym_add(parser *p, const char *s, size_t n) {
    if (p->n_sym == p->cap_sym) {
        uint32_t nc = p->cap_sym ? p->cap_sym * 2 : 64;
        char **nn = rl__realloc(p->names, (size_t)nc * sizeof *nn);
        if (nn) p->names = nn;
        uint32_t *nf = rl__realloc(p->first_ref, (size_t)nc * sizeof *nf);
        if (nf) p->first_ref = nf;
        evec *nr = rl__realloc(p->rules, (size_t)nc * sizeof *nr);
        if (nr) p->rules = nr;
        if (!nn || !nf || !nr) {
            fail(p, NULL, RL_ERR_NOMEM, "out of memory");
            return -1;
        }
        p->cap_sym = nc;
    }
    if ((p->n_sym + 1) * 2 > p->n_slot && !sym_rehash(p, p->n_slot ? p->n_slot * 2 : 128)) {
        fail(p, NULL, RL_ERR_NOMEM, "out of memory");
        return -1;
    }
    char *nm = rl__strndup(s, n);
    if (!nm) {
        fail(p, NULL, RL_ERR_NOMEM, "out of memory");
        return -1;
    }
    bool taken = sym_find(p, s, n) >= 0;
    uint32_t id = p->n_sym++;
    p->names[id] = nm;
    p->first_ref[id] = UINT32_MAX;
    memset(&p->rules[id], 0, sizeof p->rules[id]);
    if (!taken) {
        uint32_t i = (uint32_t)name_hash(s, n) & (p->n_slot - 1);
        while (p->slot[i]) i = (i + 1) & (p->n_slot - 1);
        p->slot[i] = id + 1;
    }
    return id;
}

static int64_t get_symbol_id(parser *p, const char *s, size_t n) {
    int64_t id = sym_find(p, s, n);
    return id >= 0 ? id : sym_add(p, s, n);
}

static int64_t generate_symbol_id(parser *p, const char *base) {
    char buf[300];
    rl__fmt(buf, sizeof buf, "%.*s_%u", 200, base, p->n_sym);
    return sym_add(p, buf, strlen(buf));
}

/* Rule id := copy of e (a later definition replaces an earlier one, as in llama.cpp). */
static bool add_rule(parser *p, uint32_t id, const evec *e) {
    p->n_pushed += e->n;
    if (p->n_pushed > p->lim->max_elements) {
        fail(p, NULL, RL_ERR_LIMIT, "the grammar expands to more than max_elements (%u) elements",
             p->lim->max_elements);
        return false;
    }
    evec *r = &p->rules[id];
    r->n = 0;
    if (r->cap < e->n) {
        rl__gelem *nv = rl__realloc(r->v, (size_t)e->n * sizeof *nv);
        if (!nv) {
            fail(p, NULL, RL_ERR_NOMEM, "out of memory");
            return false;
        }
        r->v = nv;
        r->cap = e->n;
    }
    memcpy(r->v, e->v, (size_t)e->n * sizeof *e->v);
    r->n = e->n;
    return true;
}

/* ---- lexical pieces --------------------------------------------------------------------- */

static bool is_digit_char(char c) { return c >= '0' && c <= '9'; }
static bool is_word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' || is_digit_char(c);
}

static const char *parse_space(const char *pos, bool newline_ok) {
    while (*pos == ' ' || *pos == '\t' || *pos == '#' ||
           (newline_ok && (*pos == '\r' || *pos == '\n'))) {
        if (*pos == '#') {
            while (*pos && *pos != '\r' && *pos != '\n') pos++;
        } else {
            pos++;
        }
    }
    return pos;
}

static const char *parse_name(parser *p, const char *pos) {
    const char *s = pos;
    while (is_word_char(*pos)) pos++;
    if (pos == s) {
        fail(p, s, RL_ERR_INVALID_ARG, "expecting a rule name");
        return NULL;
    }
    return pos;
}

/* Decimal integer at pos into *out (overflow is an error). */
static const char *parse_uint(parser *p, const char *pos, uint64_t *out) {
    const char *s = pos;
    uint64_t v = 0;
    while (is_digit_char(*pos)) {
        if (v > (UINT64_MAX - 9) / 10) {
            fail(p, s, RL_ERR_INVALID_ARG, "number too large");
            return NULL;
        }
        v = v * 10 + (uint64_t)(*pos - '0');
        pos++;
    }
    if (pos == s) {
        fail(p, s, RL_ERR_INVALID_ARG, "expecting an integer");
        return NULL;
    }
    *out = v;
    return pos;
}

static const char *parse_hex(parser *p, const char *pos, int size, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < size; i++) {
        char c = pos[i];
        uint32_t d;
        if (c >= '0' && c <= '9')
            d = (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (uint32_t)(c - 'A' + 10);
        else {
            fail(p, pos, RL_ERR_INVALID_ARG, "expecting %d hex digits", size);
            return NULL;
        }
        v = (v << 4) | d;
    }
    *out = v;
    return pos + size;
}

/* One character of a literal or class: an escape or a UTF-8 sequence. */
static const char *parse_char(parser *p, const char *pos, uint32_t *cp) {
    if (*pos == '\\') {
        switch (pos[1]) {
        case 'x':
            return parse_hex(p, pos + 2, 2, cp);
        case 'u':
            return parse_hex(p, pos + 2, 4, cp);
        case 'U':
            return parse_hex(p, pos + 2, 8, cp);
        case 't':
            *cp = '\t';
            return pos + 2;
        case 'r':
            *cp = '\r';
            return pos + 2;
        case 'n':
            *cp = '\n';
            return pos + 2;
        case '\\':
        case '"':
        case '[':
        case ']':
        case '-':
            *cp = (unsigned char)pos[1];
            return pos + 2;
        default:
            fail(p, pos, RL_ERR_INVALID_ARG, "unknown escape");
            return NULL;
        }
    }
    if (!*pos) {
        fail(p, pos, RL_ERR_INVALID_ARG, "unexpected end of input");
        return NULL;
    }
    rl__utf8p st = {0};
    const unsigned char *s = (const unsigned char *)pos;
    for (int i = 0; i < 4; i++) {
        int r = rl__utf8_step(&st, s[i], cp);
        if (r == 1) return pos + i + 1;
        if (r < 0) break;
    }
    fail(p, pos, RL_ERR_INVALID_ARG, "invalid UTF-8");
    return NULL;
}

/* <[id]> or <text> (one token of the vocabulary); pos at '<'. */
static const char *parse_token(parser *p, const char *pos, uint32_t *id) {
    const char *s = pos;
    if (*pos != '<') {
        fail(p, pos, RL_ERR_INVALID_ARG, "expecting '<'");
        return NULL;
    }
    pos++;
    if (*pos == '[') {
        uint64_t v;
        pos = parse_uint(p, pos + 1, &v);
        if (!pos) return NULL;
        if (v > INT32_MAX) {
            fail(p, s, RL_ERR_INVALID_ARG, "token id too large");
            return NULL;
        }
        if (*pos != ']') {
            fail(p, pos, RL_ERR_INVALID_ARG, "expecting ']'");
            return NULL;
        }
        if (pos[1] != '>') {
            fail(p, pos + 1, RL_ERR_INVALID_ARG, "expecting '>'");
            return NULL;
        }
        *id = (uint32_t)v;
        return pos + 2;
    }
    if (!p->vocab) {
        fail(p, s, RL_ERR_INVALID_ARG, "a token given by its text needs a vocabulary");
        return NULL;
    }
    while (*pos && *pos != '>') pos++;
    if (*pos != '>') {
        fail(p, pos, RL_ERR_INVALID_ARG, "expecting '>'");
        return NULL;
    }
    pos++;
    rl_token toks[2];
    size_t n = 0;
    rl_status st =
        rl_tokenize(p->vocab, s, (size_t)(pos - s), RL_TOKENIZE_PARSE_SPECIAL, toks, 2, &n);
    if ((st != RL_OK && st != RL_ERR_RANGE) || n != 1) {
        fail(p, s, RL_ERR_INVALID_ARG, "'%.*s' is not a single token of the vocabulary",
             (int)RL_MIN(pos - s, 100), s);
        return NULL;
    }
    *id = (uint32_t)toks[0];
    return pos;
}

/* ---- rules ------------------------------------------------------------------------------- */

static const char *parse_alternates(parser *p, const char *pos, const char *rule_name,
                                    uint32_t rule_id, bool is_nested);

typedef struct seqstate {
    evec *rule;
    uint32_t last_sym_start;
    uint64_t n_prev_rules;
    const char *rule_name;
} seqstate;

/* S{min,max} on the last symbol of the sequence (max UINT64_MAX: unbounded), rewritten as
 * in the header comment. */
static bool handle_repetitions(parser *p, seqstate *q, const char *pos, uint64_t min,
                               uint64_t max) {
    bool no_max = max == UINT64_MAX;
    evec *rule = q->rule;
    if (q->last_sym_start == rule->n) {
        fail(p, pos, RL_ERR_INVALID_ARG, "expecting an item before */+/?/{");
        return false;
    }
    if (!no_max && max < min) {
        fail(p, pos, RL_ERR_INVALID_ARG, "repetition maximum %llu is below the minimum %llu",
             (unsigned long long)max, (unsigned long long)min);
        return false;
    }
    uint64_t total = 1;
    if (!no_max && max > 0)
        total = max;
    else if (min > 0)
        total = min;
    if (q->n_prev_rules * total >= MAX_REPETITION) {
        fail(p, pos, RL_ERR_INVALID_ARG,
             "repetitions of repetitions give %llu rules or more (limit %d)",
             (unsigned long long)(q->n_prev_rules * total), MAX_REPETITION);
        return false;
    }
    evec prev = {0};
    uint32_t np = rule->n - q->last_sym_start;
    if (!eappend(p, &prev, rule->v + q->last_sym_start, np)) goto fail;
    if (min == 0) {
        rule->n = q->last_sym_start;
    } else {
        for (uint64_t i = 1; i < min; i++)
            if (!eappend(p, rule, prev.v, np)) goto fail;
    }
    uint64_t n_opt = no_max ? 1 : max - min;
    uint32_t last_rec = 0;
    for (uint64_t i = 0; i < n_opt; i++) {
        prev.n = np;
        int64_t rec_id = generate_symbol_id(p, q->rule_name);
        if (rec_id < 0) goto fail;
        if (i > 0 || no_max)
            if (!epush(p, &prev, RL__GE_RULE_REF, no_max ? (uint32_t)rec_id : last_rec)) goto fail;
        if (!epush(p, &prev, RL__GE_ALT, 0) || !epush(p, &prev, RL__GE_END, 0)) goto fail;
        if (!add_rule(p, (uint32_t)rec_id, &prev)) goto fail;
        last_rec = (uint32_t)rec_id;
    }
    if (n_opt > 0 && !epush(p, rule, RL__GE_RULE_REF, last_rec)) goto fail;
    q->n_prev_rules *= total;
    rl__free(prev.v);
    return true;
fail:
    rl__free(prev.v);
    return false;
}

static const char *parse_sequence(parser *p, const char *pos, const char *rule_name, evec *rule,
                                  bool is_nested) {
    seqstate q = {rule, rule->n, 1, rule_name};
    while (*pos) {
        if (*pos == '"') { /* literal */
            pos++;
            q.last_sym_start = rule->n;
            q.n_prev_rules = 1;
            while (*pos != '"') {
                uint32_t cp;
                if (!*pos) {
                    fail(p, pos, RL_ERR_INVALID_ARG, "unexpected end of input in a string");
                    return NULL;
                }
                if (!(pos = parse_char(p, pos, &cp))) return NULL;
                if (!epush(p, rule, RL__GE_CHAR, cp)) return NULL;
            }
            pos = parse_space(pos + 1, is_nested);
        } else if (*pos == '[') { /* class */
            pos++;
            uint32_t start_type = RL__GE_CHAR;
            if (*pos == '^') {
                pos++;
                start_type = RL__GE_CHAR_NOT;
            }
            q.last_sym_start = rule->n;
            q.n_prev_rules = 1;
            while (*pos != ']') {
                uint32_t cp;
                if (!*pos) {
                    fail(p, pos, RL_ERR_INVALID_ARG, "unexpected end of input in a class");
                    return NULL;
                }
                if (!(pos = parse_char(p, pos, &cp))) return NULL;
                uint32_t type = q.last_sym_start < rule->n ? RL__GE_CHAR_ALT : start_type;
                if (!epush(p, rule, type, cp)) return NULL;
                if (pos[0] == '-' && pos[1] != ']') {
                    if (!pos[1]) {
                        fail(p, pos + 1, RL_ERR_INVALID_ARG, "unexpected end of input in a class");
                        return NULL;
                    }
                    if (!(pos = parse_char(p, pos + 1, &cp))) return NULL;
                    if (!epush(p, rule, RL__GE_CHAR_RNG_UPPER, cp)) return NULL;
                }
            }
            pos = parse_space(pos + 1, is_nested);
        } else if (*pos == '<' || *pos == '!') { /* token */
            uint32_t type = RL__GE_TOKEN;
            if (*pos == '!') {
                type = RL__GE_TOKEN_NOT;
                pos++;
            }
            uint32_t id;
            if (!(pos = parse_token(p, pos, &id))) return NULL;
            q.last_sym_start = rule->n;
            q.n_prev_rules = 1;
            if (!epush(p, rule, type, id)) return NULL;
            pos = parse_space(pos, is_nested);
        } else if (is_word_char(*pos)) { /* rule reference */
            const char *end = parse_name(p, pos);
            if (!end) return NULL;
            int64_t id = get_symbol_id(p, pos, (size_t)(end - pos));
            if (id < 0) return NULL;
            if (p->first_ref[id] == UINT32_MAX) p->first_ref[id] = (uint32_t)(pos - p->src);
            pos = parse_space(end, is_nested);
            q.last_sym_start = rule->n;
            q.n_prev_rules = 1;
            if (!epush(p, rule, RL__GE_RULE_REF, (uint32_t)id)) return NULL;
        } else if (*pos == '(') { /* group */
            if (++p->depth > p->lim->max_nesting) {
                fail(p, pos, RL_ERR_LIMIT, "parentheses nested deeper than max_nesting (%u)",
                     p->lim->max_nesting);
                return NULL;
            }
            const char *open = pos;
            pos = parse_space(pos + 1, true);
            uint32_t n_before = p->n_sym;
            int64_t sub = generate_symbol_id(p, rule_name);
            if (sub < 0) return NULL;
            if (!(pos = parse_alternates(p, pos, rule_name, (uint32_t)sub, true))) return NULL;
            p->depth--;
            q.n_prev_rules = RL_MAX(1u, p->n_sym - n_before);
            q.last_sym_start = rule->n;
            if (!epush(p, rule, RL__GE_RULE_REF, (uint32_t)sub)) return NULL;
            if (*pos != ')') {
                fail(p, *pos ? pos : open, RL_ERR_INVALID_ARG,
                     *pos ? "expecting ')'" : "unclosed '('");
                return NULL;
            }
            pos = parse_space(pos + 1, is_nested);
        } else if (*pos == '.') { /* any character */
            q.last_sym_start = rule->n;
            q.n_prev_rules = 1;
            if (!epush(p, rule, RL__GE_CHAR_ANY, 0)) return NULL;
            pos = parse_space(pos + 1, is_nested);
        } else if (*pos == '*' || *pos == '+' || *pos == '?') {
            const char *at = pos;
            uint64_t min = *pos == '+' ? 1 : 0, max = *pos == '?' ? 1 : UINT64_MAX;
            pos = parse_space(pos + 1, is_nested);
            if (!handle_repetitions(p, &q, at, min, max)) return NULL;
        } else if (*pos == '{') {
            const char *at = pos;
            pos = parse_space(pos + 1, is_nested);
            if (!is_digit_char(*pos)) {
                fail(p, pos, RL_ERR_INVALID_ARG, "expecting an integer");
                return NULL;
            }
            uint64_t min, max = UINT64_MAX;
            if (!(pos = parse_uint(p, pos, &min))) return NULL;
            pos = parse_space(pos, is_nested);
            if (*pos == '}') {
                max = min;
                pos = parse_space(pos + 1, is_nested);
            } else if (*pos == ',') {
                pos = parse_space(pos + 1, is_nested);
                if (is_digit_char(*pos)) {
                    if (!(pos = parse_uint(p, pos, &max))) return NULL;
                    pos = parse_space(pos, is_nested);
                }
                if (*pos != '}') {
                    fail(p, pos, RL_ERR_INVALID_ARG, "expecting '}'");
                    return NULL;
                }
                pos = parse_space(pos + 1, is_nested);
            } else {
                fail(p, pos, RL_ERR_INVALID_ARG, "expecting ',' or '}'");
                return NULL;
            }
            if (min > MAX_REPETITION) {
                fail(p, at, RL_ERR_INVALID_ARG, "repetition count %llu above %d",
                     (unsigned long long)min, MAX_REPETITION);
                return NULL;
            }
            if (max != UINT64_MAX && max > MAX_REPETITION) max = UINT64_MAX;
            if (!handle_repetitions(p, &q, at, min, max)) return NULL;
        } else {
            break;
        }
    }
    return pos;
}

static const char *parse_alternates(parser *p, const char *pos, const char *rule_name,
                                    uint32_t rule_id, bool is_nested) {
    evec rule = {0};
    pos = parse_sequence(p, pos, rule_name, &rule, is_nested);
    while (pos && *pos == '|') {
        if (!epush(p, &rule, RL__GE_ALT, 0)) {
            pos = NULL;
            break;
        }
        pos = parse_space(pos + 1, true);
        pos = parse_sequence(p, pos, rule_name, &rule, is_nested);
    }
    if (pos && (!epush(p, &rule, RL__GE_END, 0) || !add_rule(p, rule_id, &rule))) pos = NULL;
    rl__free(rule.v);
    return pos;
}

static const char *parse_rule(parser *p, const char *src) {
    const char *name_end = parse_name(p, src);
    if (!name_end) return NULL;
    const char *pos = parse_space(name_end, false);
    int64_t id = get_symbol_id(p, src, (size_t)(name_end - src));
    if (id < 0) return NULL;
    if (!(pos[0] == ':' && pos[1] == ':' && pos[2] == '=')) {
        fail(p, pos, RL_ERR_INVALID_ARG, "expecting ::=");
        return NULL;
    }
    pos = parse_space(pos + 3, true);
    char *name = rl__strndup(src, (size_t)(name_end - src));
    if (!name) {
        fail(p, NULL, RL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    pos = parse_alternates(p, pos, name, (uint32_t)id, false);
    rl__free(name);
    if (!pos) return NULL;
    if (*pos == '\r') {
        pos += pos[1] == '\n' ? 2 : 1;
    } else if (*pos == '\n') {
        pos++;
    } else if (*pos) {
        fail(p, pos, RL_ERR_INVALID_ARG, "expecting newline or end");
        return NULL;
    }
    return parse_space(pos, true);
}

/* 1-based line and column (in characters) of byte offset off. */
static void line_col(const char *src, size_t off, unsigned *line, unsigned *col) {
    unsigned l = 1, c = 1;
    for (size_t i = 0; i < off && src[i]; i++) {
        unsigned char b = (unsigned char)src[i];
        if (b == '\n') {
            l++;
            c = 1;
        } else if ((b & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static void parser_free(parser *p) {
    for (uint32_t i = 0; i < p->n_sym; i++) {
        rl__free(p->names[i]);
        rl__free(p->rules[i].v);
    }
    rl__free(p->names);
    rl__free(p->first_ref);
    rl__free(p->rules);
    rl__free(p->slot);
}

rl_status rl__gbnf_parse(const char *text, size_t len, const rl_vocab *vocab,
                         const rl_grammar_limits *lim, rl__gir *ir, char *err, size_t err_size) {
    memset(ir, 0, sizeof *ir);
    rl__fmt(err, err_size, "%s", "");
    if (!text && len) return RL_ERR_INVALID_ARG;
    if (len > lim->max_text) {
        rl__fmt(err, err_size, "grammar text of %zu bytes is over max_text (%u)", len,
                lim->max_text);
        return RL_ERR_LIMIT;
    }
    const char *nul = len ? memchr(text, '\0', len) : NULL;
    char *src = rl__malloc(len + 1);
    if (!src) return RL_ERR_NOMEM;
    if (len) memcpy(src, text, len);
    src[len] = '\0';

    parser p;
    memset(&p, 0, sizeof p);
    p.src = src;
    p.vocab = vocab;
    p.lim = lim;
    if (nul) {
        fail(&p, src + (nul - text), RL_ERR_INVALID_ARG, "NUL byte in the grammar");
    } else {
        const char *pos = parse_space(src, true);
        while (*pos && (pos = parse_rule(&p, pos))) {
        }
    }
    /* every referenced rule must be defined */
    for (uint32_t id = 0; p.st == RL_OK && id < p.n_sym; id++) {
        if (!p.rules[id].v) {
            fail(&p, p.first_ref[id] == UINT32_MAX ? NULL : src + p.first_ref[id],
                 RL_ERR_INVALID_ARG, "undefined rule '%s'", p.names[id]);
        }
    }
    if (p.st == RL_OK && p.n_sym == 0)
        fail(&p, NULL, RL_ERR_INVALID_ARG, "the grammar has no rules");

    rl_status st = p.st;
    if (st != RL_OK) {
        if (p.err_pos) {
            unsigned line, col;
            line_col(src, (size_t)(p.err_pos - src), &line, &col);
            rl__fmt(err, err_size, "line %u, column %u: %s", line, col, p.msg);
        } else {
            rl__fmt(err, err_size, "%s", p.msg);
        }
        parser_free(&p);
        rl__free(src);
        return st;
    }

    /* flatten */
    uint64_t total = 0;
    for (uint32_t id = 0; id < p.n_sym; id++) total += p.rules[id].n;
    ir->elems = rl__malloc((size_t)(total ? total : 1) * sizeof *ir->elems);
    ir->off = rl__malloc(((size_t)p.n_sym + 1) * sizeof *ir->off);
    if (!ir->elems || !ir->off) {
        rl__free(ir->elems);
        rl__free(ir->off);
        memset(ir, 0, sizeof *ir);
        parser_free(&p);
        rl__free(src);
        return RL_ERR_NOMEM;
    }
    uint32_t o = 0;
    for (uint32_t id = 0; id < p.n_sym; id++) {
        ir->off[id] = o;
        memcpy(ir->elems + o, p.rules[id].v, (size_t)p.rules[id].n * sizeof *ir->elems);
        o += p.rules[id].n;
        rl__free(p.rules[id].v);
    }
    ir->off[p.n_sym] = o;
    ir->names = p.names;
    ir->n_rules = p.n_sym;
    p.names = NULL;
    rl__free(p.first_ref);
    rl__free(p.rules);
    rl__free(p.slot);
    rl__free(src);
    return RL_OK;
}

void rl__gir_free(rl__gir *ir) {
    if (!ir) return;
    for (uint32_t i = 0; ir->names && i < ir->n_rules; i++) rl__free(ir->names[i]);
    rl__free(ir->names);
    rl__free(ir->elems);
    rl__free(ir->off);
    memset(ir, 0, sizeof *ir);
}

int32_t rl__gir_find(const rl__gir *ir, const char *name) {
    for (uint32_t i = 0; i < ir->n_rules; i++)
        if (!strcmp(ir->names[i], name)) return (int32_t)i;
    return -1;
}

/* ---- printing -------------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = RL_MAX(b->cap * 2, b->n + n + 64);
        char *np = rl__realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_char(sbuf *b, uint32_t c) {
    char t[16];
    if (c >= 0x20 && c < 0x7f && c != '\\' && c != ']' && c != '-' && c != '^' && c != '"')
        rl__fmt(t, sizeof t, "%c", (char)c);
    else if (c <= 0xff)
        rl__fmt(t, sizeof t, "\\x%02X", c);
    else if (c <= 0xffff)
        rl__fmt(t, sizeof t, "\\u%04X", c);
    else
        rl__fmt(t, sizeof t, "\\U%08X", c);
    sb_str(b, t);
}

static bool is_char_elem(uint32_t t) {
    return t == RL__GE_CHAR || t == RL__GE_CHAR_NOT || t == RL__GE_CHAR_ALT ||
           t == RL__GE_CHAR_RNG_UPPER || t == RL__GE_CHAR_ANY;
}

char *rl__gir_rule_text(const rl__gir *ir, uint32_t rule) {
    sbuf b = {0};
    sb_str(&b, ir->names[rule]);
    sb_str(&b, " ::=");
    const rl__gelem *e = ir->elems + ir->off[rule];
    uint32_t n = ir->off[rule + 1] - ir->off[rule];
    for (uint32_t i = 0; i + 1 < n; i++) {
        char t[32];
        switch (e[i].type) {
        case RL__GE_ALT:
            sb_str(&b, " |");
            break;
        case RL__GE_RULE_REF:
            sb_str(&b, " ");
            sb_str(&b, e[i].value < ir->n_rules ? ir->names[e[i].value] : "?");
            break;
        case RL__GE_CHAR:
            sb_str(&b, " [");
            sb_char(&b, e[i].value);
            break;
        case RL__GE_CHAR_NOT:
            sb_str(&b, " [^");
            sb_char(&b, e[i].value);
            break;
        case RL__GE_CHAR_RNG_UPPER:
            sb_str(&b, "-");
            sb_char(&b, e[i].value);
            break;
        case RL__GE_CHAR_ALT:
            sb_char(&b, e[i].value);
            break;
        case RL__GE_CHAR_ANY:
            sb_str(&b, " .");
            break;
        case RL__GE_TOKEN:
            rl__fmt(t, sizeof t, " <[%u]>", e[i].value);
            sb_str(&b, t);
            break;
        case RL__GE_TOKEN_NOT:
            rl__fmt(t, sizeof t, " !<[%u]>", e[i].value);
            sb_str(&b, t);
            break;
        default:
            break;
        }
        if (is_char_elem(e[i].type) && e[i].type != RL__GE_CHAR_ANY &&
            e[i + 1].type != RL__GE_CHAR_ALT && e[i + 1].type != RL__GE_CHAR_RNG_UPPER)
            sb_str(&b, "]");
    }
    if (b.oom) {
        rl__free(b.p);
        return NULL;
    }
    return b.p;
}
