/*
 * parser.c - tokens to AST, following jinja2's grammar and precedence (jinja2/parser.py):
 * conditional expressions, or, and, not, comparisons (chained, in, not in), + and -,
 * ~ (binds tighter than +), * / // %, **, unary minus/plus, then postfix (attribute,
 * subscript, slice, call), filters and `is` tests. Statements: if/elif/else,
 * for/else with a filter and loop controls, set (also block set and namespace
 * attributes), macro, call, filter, with, raw, print and {% generation %}.
 *
 * Like jinja2, a filter or test name that does not exist fails here, unless it is inside
 * an if statement or a conditional expression: then it fails only if it runs.
 */
#include "template/lex.h"

#include <stdarg.h>
#include <stdio.h>

#define MAX_NEST 200 /* expression and statement nesting */

typedef struct parser {
    tpl_program *p;
    tpl_toks *t;
    size_t i;
    char *err;
    size_t err_size;
    rl_status st;
    int depth;
    int loop_depth;
    bool soft;
    tpl_node *macro;
    /* First unknown filter/test seen outside a soft frame: an error unless the
     * expression turns out to be the first operand of a conditional expression. */
    const tpl_tok *pending;
    const char *pending_kind;
    const tpl_str *pending_name;
} parser;

typedef struct nvec {
    tpl_node **v;
    uint32_t n, cap;
} nvec;

static tpl_tok *cur(parser *P) { return &P->t->v[P->i]; }
static tpl_tok *peek(parser *P, size_t k) {
    size_t j = P->i + k;
    return j < P->t->n ? &P->t->v[j] : &P->t->v[P->t->n - 1];
}
static void advance(parser *P) {
    if (P->i + 1 < P->t->n) P->i++;
}

static void *fail_at(parser *P, const tpl_tok *k, rl_status st, const char *fmt, ...) {
    if (P->st != RL_OK) return NULL;
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    rl__fmt(P->err, P->err_size, "line %u, column %u: %s", k->line, k->col, msg);
    P->st = st;
    return NULL;
}
#define FAIL(...) fail_at(P, cur(P), RL_ERR_BAD_FILE, __VA_ARGS__)

static void *oom(parser *P) {
    if (P->st == RL_OK) {
        P->st = RL_ERR_NOMEM;
        rl__fmt(P->err, P->err_size, "out of memory");
    }
    return NULL;
}

static const char *describe(const tpl_tok *k, char *buf, size_t n) {
    switch (k->type) {
    case TK_EOF: return "end of template";
    case TK_VAR_END: return "end of print statement";
    case TK_BLOCK_END: return "end of statement block";
    case TK_VAR_BEGIN: return "begin of print statement";
    case TK_BLOCK_BEGIN: return "begin of statement block";
    case TK_DATA: return "template data";
    default: break;
    }
    size_t m = k->n < 40 ? k->n : 40;
    snprintf(buf, n, "%.*s", (int)m, k->s);
    return buf;
}

static tpl_node *new_node(parser *P, uint8_t kind, const tpl_tok *at) {
    tpl_node *x = rl__tpl_arena_alloc(&P->p->arena, sizeof(tpl_node));
    if (!x) return oom(P);
    x->kind = kind;
    x->line = at->line;
    x->col = at->col;
    return x;
}

static bool nv_push(parser *P, nvec *v, tpl_node *x) {
    if (v->n == v->cap) {
        uint32_t cap = v->cap ? v->cap * 2 : 4;
        tpl_node **nv = rl__tpl_arena_alloc(&P->p->arena, cap * sizeof(*nv));
        if (!nv) return oom(P), false;
        if (v->n) memcpy(nv, v->v, v->n * sizeof(*nv));
        v->v = nv;
        v->cap = cap;
    }
    v->v[v->n++] = x;
    return true;
}
static tpl_nodes nv_done(nvec *v) {
    tpl_nodes r = {v->v, v->n};
    return r;
}

static bool is_op(parser *P, uint8_t op) { return cur(P)->type == TK_OP && cur(P)->op == op; }
static bool is_name(parser *P, const char *s) {
    tpl_tok *k = cur(P);
    return k->type == TK_NAME && k->n == strlen(s) && memcmp(k->s, s, k->n) == 0;
}
static bool tok_is_name(const tpl_tok *k, const char *s) {
    return k->type == TK_NAME && k->n == strlen(s) && memcmp(k->s, s, k->n) == 0;
}
static bool expect_op(parser *P, uint8_t op, const char *what) {
    if (is_op(P, op)) {
        advance(P);
        return true;
    }
    char b[64];
    FAIL("expected token '%s', got '%s'", what, describe(cur(P), b, sizeof(b)));
    return false;
}
static bool expect_type(parser *P, uint8_t type, const char *what) {
    if (cur(P)->type == type) {
        advance(P);
        return true;
    }
    char b[64];
    FAIL("expected token '%s', got '%s'", what, describe(cur(P), b, sizeof(b)));
    return false;
}

static bool enter(parser *P) {
    if (++P->depth > MAX_NEST) {
        fail_at(P, cur(P), RL_ERR_LIMIT, "expression or statements nested too deeply (limit %d)", MAX_NEST);
        return false;
    }
    return true;
}
#define ENTER()                                                                                    \
    do {                                                                                           \
        if (!enter(P)) return NULL;                                                                \
    } while (0)
#define LEAVE(x) (P->depth--, (x))

static tpl_node *parse_expression(parser *P, bool with_condexpr);
static tpl_node *parse_unary(parser *P, bool with_filter);
static tpl_node *parse_primary(parser *P);
static tpl_node *parse_postfix(parser *P, tpl_node *node);
static tpl_node *parse_filter_expr(parser *P, tpl_node *node);
static tpl_node *parse_tuple(parser *P, bool simplified, bool with_condexpr,
                             const char *extra_end, bool explicit_parens);

/* ( args, kw=value ) */
static bool parse_call_args(parser *P, tpl_node *x) {
    if (!expect_op(P, OP_LPAREN, "(")) return false;
    nvec args = {0}, kwv = {0};
    const tpl_str *kwn[64];
    uint32_t nk = 0;
    bool need_comma = false;
    while (!is_op(P, OP_RPAREN)) {
        if (need_comma) {
            if (!expect_op(P, OP_COMMA, ",")) return false;
            if (is_op(P, OP_RPAREN)) break;
        }
        if (is_op(P, OP_MUL) || is_op(P, OP_POW)) {
            fail_at(P, cur(P), RL_ERR_UNSUPPORTED, "*args and **kwargs in calls are not supported");
            return false;
        }
        if (cur(P)->type == TK_NAME && peek(P, 1)->type == TK_OP && peek(P, 1)->op == OP_ASSIGN) {
            if (nk == RL_ARRAY_LEN(kwn)) {
                fail_at(P, cur(P), RL_ERR_LIMIT, "too many keyword arguments");
                return false;
            }
            kwn[nk++] = cur(P)->str;
            advance(P);
            advance(P);
            tpl_node *v = parse_expression(P, true);
            if (!v || !nv_push(P, &kwv, v)) return false;
        } else {
            if (nk) {
                FAIL("invalid syntax for function call expression");
                return false;
            }
            tpl_node *v = parse_expression(P, true);
            if (!v || !nv_push(P, &args, v)) return false;
        }
        need_comma = true;
    }
    advance(P);
    x->l1 = nv_done(&args);
    x->l2 = nv_done(&kwv);
    if (nk) {
        x->names = rl__tpl_arena_alloc(&P->p->arena, nk * sizeof(*x->names));
        if (!x->names) return oom(P), false;
        memcpy(x->names, kwn, nk * sizeof(*kwn));
    }
    x->nnames = nk;
    return true;
}

/* filter or test name, possibly dotted */
static const tpl_str *parse_dotted_name(parser *P, tpl_tok **at) {
    *at = cur(P);
    if (cur(P)->type != TK_NAME) {
        char b[64];
        return FAIL("expected token 'name', got '%s'", describe(cur(P), b, sizeof(b)));
    }
    const char *s0 = cur(P)->s;
    size_t n = cur(P)->n;
    const tpl_str *name = cur(P)->str;
    advance(P);
    while (is_op(P, OP_DOT) && peek(P, 1)->type == TK_NAME) {
        advance(P);
        n = (size_t)(cur(P)->s + cur(P)->n - s0);
        advance(P);
        name = rl__tpl_intern(P->p, s0, n); /* raw text: names joined by dots */
        if (!name) return oom(P);
    }
    return name;
}

/* Name the filter or test (kind) that n calls, id its index or < 0 when unknown. An unknown
 * one fails when it runs; it is also the parse error P->pending unless it stands in a soft
 * frame (or an earlier one is pending). */
static void set_callee(parser *P, tpl_node *n, const tpl_tok *at, const tpl_str *name, int id,
                       const char *kind) {
    n->name = name;
    if (id >= 0) {
        n->id = (uint16_t)id;
        return;
    }
    if (!P->soft && !P->pending) {
        P->pending = at;
        P->pending_kind = kind;
        P->pending_name = name;
    }
    n->id = 0xffff;
}

/* node|name(args)|name2 ... ; start_inline: the first name follows without a pipe */
static tpl_node *parse_filter(parser *P, tpl_node *node, bool start_inline) {
    while (is_op(P, OP_PIPE) || start_inline) {
        if (!start_inline) advance(P);
        start_inline = false;
        tpl_tok *at;
        const tpl_str *name = parse_dotted_name(P, &at);
        if (!name) return NULL;
        tpl_node *f = new_node(P, N_FILTER, at);
        if (!f) return NULL;
        f->a = node;
        set_callee(P, f, at, name, rl__tpl_filter_id(name->s, name->len), "filter");
        if (is_op(P, OP_LPAREN) && !parse_call_args(P, f)) return NULL;
        node = f;
    }
    return node;
}

static tpl_node *parse_test(parser *P, tpl_node *node) {
    tpl_tok *is_tok = cur(P);
    advance(P); /* is */
    bool negated = false;
    if (is_name(P, "not")) {
        negated = true;
        advance(P);
    }
    tpl_tok *at;
    const tpl_str *name = parse_dotted_name(P, &at);
    if (!name) return NULL;
    tpl_node *t = new_node(P, N_TEST, is_tok);
    if (!t) return NULL;
    t->a = node;
    set_callee(P, t, at, name, rl__tpl_test_id(name->s, name->len), "test");
    tpl_tok *k = cur(P);
    if (is_op(P, OP_LPAREN)) {
        if (!parse_call_args(P, t)) return NULL;
    } else if ((k->type == TK_NAME || k->type == TK_STRING || k->type == TK_INT ||
                k->type == TK_FLOAT || is_op(P, OP_LPAREN) || is_op(P, OP_LBRACKET) ||
                is_op(P, OP_LBRACE)) &&
               !is_name(P, "else") && !is_name(P, "or") && !is_name(P, "and")) {
        if (is_name(P, "is")) return FAIL("You cannot chain multiple tests with is");
        tpl_node *arg = parse_primary(P);
        if (!arg) return NULL;
        arg = parse_postfix(P, arg);
        if (!arg) return NULL;
        nvec args = {0};
        if (!nv_push(P, &args, arg)) return NULL;
        t->l1 = nv_done(&args);
    }
    if (negated) {
        tpl_node *n = new_node(P, N_NOT, is_tok);
        if (!n) return NULL;
        n->a = t;
        return n;
    }
    return t;
}

static tpl_node *parse_subscribed(parser *P) {
    tpl_tok *at = cur(P);
    tpl_node *args[3] = {NULL, NULL, NULL};
    if (is_op(P, OP_COLON)) {
        advance(P);
    } else {
        tpl_node *e = parse_expression(P, true);
        if (!e) return NULL;
        if (!is_op(P, OP_COLON)) return e;
        advance(P);
        args[0] = e;
    }
    if (!is_op(P, OP_COLON) && !is_op(P, OP_RBRACKET) && !is_op(P, OP_COMMA)) {
        args[1] = parse_expression(P, true);
        if (!args[1]) return NULL;
    }
    if (is_op(P, OP_COLON)) {
        advance(P);
        if (!is_op(P, OP_RBRACKET) && !is_op(P, OP_COMMA)) {
            args[2] = parse_expression(P, true);
            if (!args[2]) return NULL;
        }
    }
    tpl_node *s = new_node(P, N_SLICE, at);
    if (!s) return NULL;
    s->b = args[0];
    s->c = args[1];
    s->d = args[2];
    s->op = 1; /* marks a slice (a is set by the caller) */
    return s;
}

static tpl_node *parse_subscript(parser *P, tpl_node *node) {
    tpl_tok *tok = cur(P);
    advance(P);
    if (tok->op == OP_DOT) {
        tpl_tok *at = cur(P);
        if (at->type == TK_NAME) {
            advance(P);
            tpl_node *g = new_node(P, N_GETATTR, tok);
            if (!g) return NULL;
            g->a = node;
            g->name = at->str;
            return g;
        }
        if (at->type != TK_INT) return FAIL("expected name or number");
        advance(P);
        tpl_node *k = new_node(P, N_CONST, at);
        if (!k) return NULL;
        k->k = tv_int(at->i);
        tpl_node *g = new_node(P, N_GETITEM, tok);
        if (!g) return NULL;
        g->a = node;
        g->b = k;
        return g;
    }
    /* [ ... ] */
    nvec args = {0};
    while (!is_op(P, OP_RBRACKET)) {
        if (args.n && !expect_op(P, OP_COMMA, ",")) return NULL;
        if (cur(P)->type == TK_EOF) return FAIL("unexpected end of template");
        tpl_node *a = parse_subscribed(P);
        if (!a || !nv_push(P, &args, a)) return NULL;
    }
    advance(P);
    if (args.n == 1 && args.v[0]->kind == N_SLICE && args.v[0]->op == 1) {
        args.v[0]->a = node;
        return args.v[0];
    }
    tpl_node *g = new_node(P, N_GETITEM, tok);
    if (!g) return NULL;
    g->a = node;
    if (args.n == 1) {
        g->b = args.v[0];
    } else {
        for (uint32_t i = 0; i < args.n; i++)
            if (args.v[i]->kind == N_SLICE && args.v[i]->op == 1)
                return fail_at(P, tok, RL_ERR_UNSUPPORTED, "multiple slices in a subscript are not supported");
        tpl_node *tu = new_node(P, N_TUPLE, tok);
        if (!tu) return NULL;
        tu->l1 = nv_done(&args);
        g->b = tu;
    }
    return g;
}

/* node(args): a call of what node gives. */
static tpl_node *parse_call(parser *P, tpl_node *node) {
    tpl_node *c = new_node(P, N_CALL, cur(P));
    if (!c) return NULL;
    c->a = node;
    return parse_call_args(P, c) ? c : NULL;
}

static tpl_node *parse_postfix(parser *P, tpl_node *node) {
    for (;;) {
        if (is_op(P, OP_DOT) || is_op(P, OP_LBRACKET)) {
            node = parse_subscript(P, node);
        } else if (is_op(P, OP_LPAREN)) {
            node = parse_call(P, node);
        } else {
            break;
        }
        if (!node) return NULL;
    }
    return node;
}

static tpl_node *parse_filter_expr(parser *P, tpl_node *node) {
    for (;;) {
        if (is_op(P, OP_PIPE)) {
            node = parse_filter(P, node, false);
        } else if (is_name(P, "is")) {
            node = parse_test(P, node);
        } else if (is_op(P, OP_LPAREN)) {
            node = parse_call(P, node);
        } else {
            break;
        }
        if (!node) return NULL;
    }
    return node;
}

static tpl_node *parse_list(parser *P) {
    tpl_tok *at = cur(P);
    advance(P);
    nvec items = {0};
    while (!is_op(P, OP_RBRACKET)) {
        if (items.n && !expect_op(P, OP_COMMA, ",")) return NULL;
        if (is_op(P, OP_RBRACKET)) break;
        tpl_node *e = parse_expression(P, true);
        if (!e || !nv_push(P, &items, e)) return NULL;
    }
    advance(P);
    tpl_node *l = new_node(P, N_LIST, at);
    if (!l) return NULL;
    l->l1 = nv_done(&items);
    return l;
}

static tpl_node *parse_dict(parser *P) {
    tpl_tok *at = cur(P);
    advance(P);
    nvec keys = {0}, vals = {0};
    while (!is_op(P, OP_RBRACE)) {
        if (keys.n && !expect_op(P, OP_COMMA, ",")) return NULL;
        if (is_op(P, OP_RBRACE)) break;
        tpl_node *k = parse_expression(P, true);
        if (!k || !expect_op(P, OP_COLON, ":")) return NULL;
        tpl_node *v = parse_expression(P, true);
        if (!v || !nv_push(P, &keys, k) || !nv_push(P, &vals, v)) return NULL;
    }
    advance(P);
    tpl_node *d = new_node(P, N_DICT, at);
    if (!d) return NULL;
    d->l1 = nv_done(&keys);
    d->l2 = nv_done(&vals);
    return d;
}

static void note_name(parser *P, const tpl_str *name) {
    if (!P->macro) return;
    if (name->len == 7 && memcmp(name->s, "varargs", 7) == 0) P->macro->op |= MF_VARARGS;
    else if (name->len == 6 && memcmp(name->s, "kwargs", 6) == 0) P->macro->op |= MF_KWARGS;
    else if (name->len == 6 && memcmp(name->s, "caller", 6) == 0) P->macro->op |= MF_CALLER;
}

static tpl_node *parse_primary(parser *P) {
    ENTER();
    tpl_tok *k = cur(P);
    tpl_node *x = NULL;
    if (k->type == TK_NAME) {
        if (tok_is_name(k, "true") || tok_is_name(k, "True") || tok_is_name(k, "false") ||
            tok_is_name(k, "False")) {
            x = new_node(P, N_CONST, k);
            if (x) x->k = tv_bool(k->s[0] == 't' || k->s[0] == 'T');
        } else if (tok_is_name(k, "none") || tok_is_name(k, "None")) {
            x = new_node(P, N_CONST, k);
            if (x) x->k = tv_none();
        } else {
            x = new_node(P, N_NAME, k);
            if (x) x->name = k->str;
            note_name(P, k->str);
        }
        advance(P);
    } else if (k->type == TK_STRING) {
        advance(P);
        if (cur(P)->type != TK_STRING) {
            x = new_node(P, N_CONST, k);
            if (x) x->k = tv_obj(TV_STR, 0, (void *)k->str);
        } else { /* adjacent literals concatenate */
            size_t total = k->str->len;
            for (size_t j = P->i; P->t->v[j].type == TK_STRING; j++) total += P->t->v[j].str->len;
            char *buf = rl__malloc(total + 1);
            if (!buf) return oom(P);
            size_t m = 0;
            memcpy(buf, k->str->s, k->str->len);
            m = k->str->len;
            while (cur(P)->type == TK_STRING) {
                memcpy(buf + m, cur(P)->str->s, cur(P)->str->len);
                m += cur(P)->str->len;
                advance(P);
            }
            const tpl_str *s = rl__tpl_const_str(P->p, buf, m);
            rl__free(buf);
            if (!s) return oom(P);
            x = new_node(P, N_CONST, k);
            if (x) x->k = tv_obj(TV_STR, 0, (void *)s);
        }
    } else if (k->type == TK_INT || k->type == TK_FLOAT) {
        advance(P);
        x = new_node(P, N_CONST, k);
        if (x) x->k = k->type == TK_INT ? tv_int(k->i) : tv_float(k->f);
    } else if (is_op(P, OP_LPAREN)) {
        advance(P);
        x = parse_tuple(P, false, true, NULL, true);
        if (x && !expect_op(P, OP_RPAREN, ")")) x = NULL;
    } else if (is_op(P, OP_LBRACKET)) {
        x = parse_list(P);
    } else if (is_op(P, OP_LBRACE)) {
        x = parse_dict(P);
    } else {
        char b[64];
        x = FAIL("unexpected '%s'", describe(k, b, sizeof(b)));
    }
    return LEAVE(x);
}

static tpl_node *parse_unary(parser *P, bool with_filter) {
    ENTER();
    tpl_tok *k = cur(P);
    tpl_node *node;
    if (is_op(P, OP_SUB) || is_op(P, OP_ADD)) {
        advance(P);
        tpl_node *inner = parse_unary(P, false);
        if (!inner) return LEAVE(NULL);
        node = new_node(P, k->op == OP_SUB ? N_NEG : N_POS, k);
        if (!node) return LEAVE(NULL);
        node->a = inner;
    } else {
        node = parse_primary(P);
    }
    if (node) node = parse_postfix(P, node);
    if (node && with_filter) node = parse_filter_expr(P, node);
    return LEAVE(node);
}

/* One level of left-associative binary operators: operand (op operand)*, each operator
 * making a node of the kind and op that match reports (false: no operator of this level
 * at the cursor). */
typedef bool (*op_match_fn)(parser *P, uint8_t *kind, uint8_t *op);

static tpl_node *parse_chain(parser *P, tpl_node *(*operand)(parser *P), op_match_fn match) {
    tpl_node *left = operand(P);
    uint8_t kind, op;
    while (left && match(P, &kind, &op)) {
        tpl_tok *at = cur(P);
        advance(P);
        tpl_node *right = operand(P);
        if (!right) return NULL;
        tpl_node *n = new_node(P, kind, at);
        if (!n) return NULL;
        n->op = op;
        n->a = left;
        n->b = right;
        left = n;
    }
    return left;
}

static bool match_binop(parser *P, uint8_t *kind, uint8_t *op, bool ok) {
    *kind = N_BINOP;
    *op = cur(P)->op;
    return ok;
}
static bool op_pow(parser *P, uint8_t *kind, uint8_t *op) {
    return match_binop(P, kind, op, is_op(P, OP_POW));
}
static bool op_mul(parser *P, uint8_t *kind, uint8_t *op) {
    return match_binop(P, kind, op,
                       is_op(P, OP_MUL) || is_op(P, OP_DIV) || is_op(P, OP_FLOORDIV) ||
                           is_op(P, OP_MOD));
}
static bool op_add(parser *P, uint8_t *kind, uint8_t *op) {
    return match_binop(P, kind, op, is_op(P, OP_ADD) || is_op(P, OP_SUB));
}
static bool op_and(parser *P, uint8_t *kind, uint8_t *op) {
    *kind = N_AND;
    *op = 0;
    return is_name(P, "and");
}
static bool op_or(parser *P, uint8_t *kind, uint8_t *op) {
    *kind = N_OR;
    *op = 0;
    return is_name(P, "or");
}

static tpl_node *parse_filtered_unary(parser *P) { return parse_unary(P, true); }
static tpl_node *parse_pow(parser *P) { return parse_chain(P, parse_filtered_unary, op_pow); }
static tpl_node *parse_math2(parser *P) { return parse_chain(P, parse_pow, op_mul); }

static tpl_node *parse_concat(parser *P) {
    tpl_tok *at = cur(P);
    tpl_node *first = parse_math2(P);
    if (!first || !is_op(P, OP_TILDE)) return first;
    nvec args = {0};
    if (!nv_push(P, &args, first)) return NULL;
    while (is_op(P, OP_TILDE)) {
        advance(P);
        tpl_node *e = parse_math2(P);
        if (!e || !nv_push(P, &args, e)) return NULL;
    }
    tpl_node *c = new_node(P, N_CONCAT, at);
    if (!c) return NULL;
    c->l1 = nv_done(&args);
    return c;
}

static tpl_node *parse_math1(parser *P) { return parse_chain(P, parse_concat, op_add); }

static tpl_node *parse_compare(parser *P) {
    tpl_tok *at = cur(P);
    tpl_node *expr = parse_math1(P);
    if (!expr) return NULL;
    nvec ops = {0};
    for (;;) {
        tpl_tok *k = cur(P);
        uint8_t op = 0;
        if (k->type == TK_OP && (k->op == OP_EQ || k->op == OP_NE || k->op == OP_LT ||
                                 k->op == OP_LE || k->op == OP_GT || k->op == OP_GE)) {
            op = k->op;
            advance(P);
        } else if (is_name(P, "in")) {
            op = OP_IN;
            advance(P);
        } else if (is_name(P, "not") && tok_is_name(peek(P, 1), "in")) {
            op = OP_NOTIN;
            advance(P);
            advance(P);
        } else {
            break;
        }
        tpl_node *rhs = parse_math1(P);
        if (!rhs) return NULL;
        tpl_node *o = new_node(P, N_OPERAND, k);
        if (!o) return NULL;
        o->op = op;
        o->a = rhs;
        if (!nv_push(P, &ops, o)) return NULL;
    }
    if (!ops.n) return expr;
    tpl_node *c = new_node(P, N_COMPARE, at);
    if (!c) return NULL;
    c->a = expr;
    c->l1 = nv_done(&ops);
    return c;
}

static tpl_node *parse_not(parser *P) {
    if (is_name(P, "not")) {
        ENTER();
        tpl_tok *at = cur(P);
        advance(P);
        tpl_node *inner = parse_not(P);
        if (!inner) return LEAVE(NULL);
        tpl_node *n = new_node(P, N_NOT, at);
        if (n) n->a = inner;
        return LEAVE(n);
    }
    return parse_compare(P);
}

static tpl_node *parse_and(parser *P) { return parse_chain(P, parse_not, op_and); }
static tpl_node *parse_or(parser *P) { return parse_chain(P, parse_and, op_or); }

static tpl_node *parse_condexpr(parser *P) {
    ENTER();
    tpl_tok *at = cur(P);
    bool was_soft = P->soft;
    const tpl_tok *saved = P->pending;
    const char *saved_kind = P->pending_kind;
    const tpl_str *saved_name = P->pending_name;
    P->pending = NULL;
    tpl_node *expr1 = parse_or(P);
    if (expr1 && is_name(P, "if")) P->pending = NULL; /* the whole expression is soft */
    if (saved) {
        P->pending = saved;
        P->pending_kind = saved_kind;
        P->pending_name = saved_name;
    }
    while (expr1 && is_name(P, "if")) {
        advance(P);
        P->soft = true; /* jinja2: a conditional expression is a soft frame */
        tpl_node *expr2 = parse_or(P);
        if (!expr2) return LEAVE(NULL);
        tpl_node *expr3 = NULL;
        if (is_name(P, "else")) {
            advance(P);
            expr3 = parse_condexpr(P);
            if (!expr3) return LEAVE(NULL);
        }
        tpl_node *c = new_node(P, N_COND, at);
        if (!c) return LEAVE(NULL);
        c->a = expr2;
        c->b = expr1;
        c->c = expr3;
        expr1 = c;
    }
    P->soft = was_soft;
    return LEAVE(expr1);
}

static tpl_node *parse_expression(parser *P, bool with_condexpr) {
    return with_condexpr ? parse_condexpr(P) : parse_or(P);
}

static bool is_tuple_end(parser *P, const char *extra_end) {
    tpl_tok *k = cur(P);
    if (k->type == TK_VAR_END || k->type == TK_BLOCK_END || is_op(P, OP_RPAREN)) return true;
    return extra_end && is_name(P, extra_end);
}

static tpl_node *parse_tuple(parser *P, bool simplified, bool with_condexpr,
                             const char *extra_end, bool explicit_parens) {
    tpl_tok *at = cur(P);
    nvec args = {0};
    bool is_tuple = false;
    for (;;) {
        if (args.n && !expect_op(P, OP_COMMA, ",")) return NULL;
        if (is_tuple_end(P, extra_end)) break;
        tpl_node *e = simplified ? parse_primary(P) : parse_expression(P, with_condexpr);
        if (!e || !nv_push(P, &args, e)) return NULL;
        if (is_op(P, OP_COMMA)) is_tuple = true;
        else break;
    }
    if (!is_tuple) {
        if (args.n) return args.v[0];
        if (!explicit_parens) {
            char b[64];
            return FAIL("Expected an expression, got '%s'", describe(cur(P), b, sizeof(b)));
        }
    }
    tpl_node *t = new_node(P, N_TUPLE, at);
    if (!t) return NULL;
    t->l1 = nv_done(&args);
    return t;
}

/* ---- statements ------------------------------------------------------------ */

static bool can_assign(tpl_node *t) {
    if (t->kind == N_NAME || t->kind == N_NSREF) return true;
    if (t->kind == N_TUPLE) {
        for (uint32_t i = 0; i < t->l1.n; i++)
            if (!can_assign(t->l1.v[i])) return false;
        return true;
    }
    return false;
}

static tpl_node *parse_assign_target(parser *P, bool with_tuple, bool name_only,
                                     const char *extra_end, bool with_namespace) {
    tpl_tok *at = cur(P);
    tpl_node *target;
    if (with_namespace && at->type == TK_NAME && peek(P, 1)->type == TK_OP &&
        peek(P, 1)->op == OP_DOT) {
        advance(P);
        advance(P);
        if (cur(P)->type != TK_NAME) return FAIL("expected a name after '.'");
        target = new_node(P, N_NSREF, at);
        if (!target) return NULL;
        target->name = at->str;
        target->name2 = cur(P)->str;
        advance(P);
        return target;
    }
    if (name_only) {
        if (at->type != TK_NAME) {
            char b[64];
            return FAIL("expected token 'name', got '%s'", describe(at, b, sizeof(b)));
        }
        target = new_node(P, N_NAME, at);
        if (!target) return NULL;
        target->name = at->str;
        advance(P);
    } else if (with_tuple) {
        target = parse_tuple(P, true, true, extra_end, false);
    } else {
        target = parse_primary(P);
    }
    if (!target) return NULL;
    if (!can_assign(target)) {
        const char *what = target->kind == N_CONST ? "const" : "expression";
        return fail_at(P, at, RL_ERR_BAD_FILE, "can't assign to '%s'", what);
    }
    return target;
}

static bool parse_body(parser *P, nvec *body, const char *const *ends, int nends,
                       const tpl_tok *opener, const char *opener_name);

/* After the tag's own tokens: `%}`, then the body up to one of ends (left current). */
static bool parse_statements(parser *P, nvec *body, const char *const *ends, int nends,
                             const tpl_tok *opener, const char *opener_name, bool drop_needle) {
    if (is_op(P, OP_COLON)) advance(P);
    if (!expect_type(P, TK_BLOCK_END, "end of statement block")) return false;
    if (!parse_body(P, body, ends, nends, opener, opener_name)) return false;
    if (drop_needle) advance(P);
    return true;
}

static bool parse_signature(parser *P, tpl_node *m) {
    if (!expect_op(P, OP_LPAREN, "(")) return false;
    const tpl_str *params[256];
    uint32_t np = 0;
    nvec defs = {0};
    while (!is_op(P, OP_RPAREN)) {
        if (np && !expect_op(P, OP_COMMA, ",")) return false;
        tpl_node *arg = parse_assign_target(P, false, true, NULL, false);
        if (!arg) return false;
        if (np == RL_ARRAY_LEN(params)) {
            fail_at(P, cur(P), RL_ERR_LIMIT, "too many macro parameters");
            return false;
        }
        params[np++] = arg->name;
        if (is_op(P, OP_ASSIGN)) {
            advance(P);
            tpl_node *d = parse_expression(P, true);
            if (!d || !nv_push(P, &defs, d)) return false;
        } else if (defs.n) {
            FAIL("non-default argument follows default argument");
            return false;
        }
    }
    advance(P);
    m->names = rl__tpl_arena_alloc(&P->p->arena, (np ? np : 1) * sizeof(*m->names));
    if (!m->names) return oom(P), false;
    memcpy(m->names, params, np * sizeof(*params));
    m->nnames = np;
    m->l2 = nv_done(&defs);
    return true;
}

/* The parser state a block tag changes for its body, restored at its end tag. */
typedef struct block_scope {
    tpl_node *macro;
    int loop_depth;
    bool soft;
} block_scope;

/* Enter the body of a block tag: never a soft frame; a macro or call block (macro not NULL)
 * is what `caller` and the macro's names refer to; own_loops: loops outside the tag do not
 * reach into it (break/continue there are errors). */
static block_scope block_enter(parser *P, tpl_node *macro, bool own_loops) {
    block_scope sv = {P->macro, P->loop_depth, P->soft};
    if (macro) P->macro = macro;
    if (own_loops) P->loop_depth = 0;
    P->soft = false;
    return sv;
}

/* The rest of the tag and its body up to the end tag `end`, into n->l1; then the state
 * before block_enter. False on a parse error (the state is then left as it is). */
static bool block_body(parser *P, const block_scope *sv, tpl_node *n, tpl_tok *at,
                       const char *tag, const char *end) {
    const char *const ends[] = {end};
    nvec body = {0};
    if (!parse_statements(P, &body, ends, 1, at, tag, true)) return false;
    P->macro = sv->macro;
    P->loop_depth = sv->loop_depth;
    P->soft = sv->soft;
    n->l1 = nv_done(&body);
    return true;
}

static tpl_node *parse_for(parser *P, tpl_tok *at) {
    tpl_node *f = new_node(P, N_FOR, at);
    if (!f) return NULL;
    f->a = parse_assign_target(P, true, false, "in", false);
    if (!f->a) return NULL;
    if (!is_name(P, "in")) return FAIL("expected 'in' in the for loop");
    advance(P);
    f->b = parse_tuple(P, false, false, "recursive", false);
    if (!f->b) return NULL;
    bool was_soft = P->soft;
    P->soft = false;
    if (is_name(P, "if")) {
        advance(P);
        f->c = parse_expression(P, true);
        if (!f->c) return NULL;
    }
    if (is_name(P, "recursive"))
        return fail_at(P, cur(P), RL_ERR_UNSUPPORTED, "recursive for loops are not supported");
    static const char *const ends1[] = {"endfor", "else"};
    static const char *const ends2[] = {"endfor"};
    nvec body = {0}, els = {0};
    P->loop_depth++;
    if (!parse_statements(P, &body, ends1, 2, at, "for", false)) return NULL;
    P->loop_depth--;
    bool has_else = is_name(P, "else");
    advance(P);
    if (has_else && !parse_statements(P, &els, ends2, 1, at, "for", true)) return NULL;
    P->soft = was_soft;
    f->l1 = nv_done(&body);
    f->l2 = nv_done(&els);
    return f;
}

static tpl_node *parse_if(parser *P, tpl_tok *at) {
    bool was_soft = P->soft;
    P->soft = true;
    tpl_node *result = new_node(P, N_IF, at), *node = result;
    if (!result) return NULL;
    static const char *const ends[] = {"elif", "else", "endif"};
    static const char *const ends2[] = {"endif"};
    for (;;) {
        node->a = parse_tuple(P, false, false, NULL, false);
        if (!node->a) return NULL;
        nvec body = {0};
        if (!parse_statements(P, &body, ends, 3, at, "if", false)) return NULL;
        node->l1 = nv_done(&body);
        tpl_tok *k = cur(P);
        advance(P);
        if (tok_is_name(k, "elif")) {
            tpl_node *e = new_node(P, N_IF, k);
            if (!e) return NULL;
            nvec els = {0};
            if (!nv_push(P, &els, e)) return NULL;
            node->l2 = nv_done(&els);
            node = e;
            continue;
        }
        if (tok_is_name(k, "else")) {
            nvec els = {0};
            if (!parse_statements(P, &els, ends2, 1, at, "if", true)) return NULL;
            node->l2 = nv_done(&els);
        }
        break;
    }
    P->soft = was_soft;
    return result;
}

static tpl_node *parse_set(parser *P, tpl_tok *at) {
    tpl_node *target = parse_assign_target(P, true, false, NULL, true);
    if (!target) return NULL;
    if (is_op(P, OP_ASSIGN)) {
        advance(P);
        tpl_node *s = new_node(P, N_SET, at);
        if (!s) return NULL;
        s->a = target;
        s->b = parse_tuple(P, false, true, NULL, false);
        return s->b ? s : NULL;
    }
    tpl_node *s = new_node(P, N_SETBLOCK, at);
    if (!s) return NULL;
    s->a = target;
    block_scope sv = block_enter(P, NULL, false);
    if (is_op(P, OP_PIPE)) {
        s->b = parse_filter(P, NULL, false);
        if (!s->b) return NULL;
    }
    return block_body(P, &sv, s, at, "set", "endset") ? s : NULL;
}

static tpl_node *parse_macro(parser *P, tpl_tok *at) {
    tpl_node *m = new_node(P, N_MACRO, at);
    if (!m) return NULL;
    tpl_node *name = parse_assign_target(P, false, true, NULL, false);
    if (!name) return NULL;
    m->name = name->name;
    if (!parse_signature(P, m)) return NULL;
    block_scope sv = block_enter(P, m, true);
    return block_body(P, &sv, m, at, "macro", "endmacro") ? m : NULL;
}

static tpl_node *parse_call_block(parser *P, tpl_tok *at) {
    tpl_node *cb = new_node(P, N_CALLBLOCK, at);
    if (!cb) return NULL;
    if (is_op(P, OP_LPAREN)) {
        if (!parse_signature(P, cb)) return NULL;
    }
    tpl_node *call = parse_expression(P, true);
    if (!call) return NULL;
    if (call->kind != N_CALL) return fail_at(P, at, RL_ERR_BAD_FILE, "expected call");
    cb->a = call;
    block_scope sv = block_enter(P, cb, true);
    return block_body(P, &sv, cb, at, "call", "endcall") ? cb : NULL;
}

static tpl_node *parse_filter_block(parser *P, tpl_tok *at) {
    tpl_node *fb = new_node(P, N_FILTERBLOCK, at);
    if (!fb) return NULL;
    block_scope sv = block_enter(P, NULL, false);
    fb->a = parse_filter(P, NULL, true);
    if (!fb->a) return NULL;
    return block_body(P, &sv, fb, at, "filter", "endfilter") ? fb : NULL;
}

static tpl_node *parse_with(parser *P, tpl_tok *at) {
    tpl_node *w = new_node(P, N_WITH, at);
    if (!w) return NULL;
    nvec sets = {0};
    while (cur(P)->type != TK_BLOCK_END) {
        if (sets.n && !expect_op(P, OP_COMMA, ",")) return NULL;
        tpl_tok *k = cur(P);
        tpl_node *target = parse_assign_target(P, true, false, NULL, false);
        if (!target || !expect_op(P, OP_ASSIGN, "=")) return NULL;
        tpl_node *s = new_node(P, N_SET, k);
        if (!s) return NULL;
        s->a = target;
        s->b = parse_expression(P, true);
        if (!s->b || !nv_push(P, &sets, s)) return NULL;
    }
    w->l2 = nv_done(&sets);
    block_scope sv = block_enter(P, NULL, false);
    return block_body(P, &sv, w, at, "with", "endwith") ? w : NULL;
}

/* {% generation %}: transformers' AssistantTracker tag, a call block whose body is
 * rendered unchanged when no assistant mask is asked for. */
static tpl_node *parse_generation(parser *P, tpl_tok *at) {
    tpl_node *g = new_node(P, N_SCOPE_BODY, at);
    if (!g) return NULL;
    block_scope sv = block_enter(P, NULL, true);
    return block_body(P, &sv, g, at, "generation", "endgeneration") ? g : NULL;
}

static tpl_node *parse_statement(parser *P) {
    tpl_tok *at = cur(P);
    if (at->type != TK_NAME) return FAIL("tag name expected");
    ENTER();
    tpl_node *r = NULL;
    advance(P);
    if (tok_is_name(at, "for")) r = parse_for(P, at);
    else if (tok_is_name(at, "if")) r = parse_if(P, at);
    else if (tok_is_name(at, "set")) r = parse_set(P, at);
    else if (tok_is_name(at, "macro")) r = parse_macro(P, at);
    else if (tok_is_name(at, "call")) r = parse_call_block(P, at);
    else if (tok_is_name(at, "filter")) r = parse_filter_block(P, at);
    else if (tok_is_name(at, "with")) r = parse_with(P, at);
    else if (tok_is_name(at, "generation")) r = parse_generation(P, at);
    else if (tok_is_name(at, "print")) {
        r = new_node(P, N_OUTPUT, at);
        if (r) r->a = parse_tuple(P, false, true, NULL, false);
        if (r && !r->a) r = NULL;
    } else if (tok_is_name(at, "break") || tok_is_name(at, "continue")) {
        if (P->loop_depth == 0)
            r = fail_at(P, at, RL_ERR_BAD_FILE, "'%s' outside of a loop", at->str->s);
        else
            r = new_node(P, at->s[0] == 'b' ? N_BREAK : N_CONTINUE, at);
    } else if (tok_is_name(at, "block") || tok_is_name(at, "extends") ||
               tok_is_name(at, "include") || tok_is_name(at, "import") ||
               tok_is_name(at, "from") || tok_is_name(at, "autoescape") ||
               tok_is_name(at, "trans") || tok_is_name(at, "do")) {
        r = fail_at(P, at, RL_ERR_UNSUPPORTED, "the '%s' tag is not supported", at->str->s);
    } else {
        r = fail_at(P, at, RL_ERR_BAD_FILE, "Encountered unknown tag '%s'.", at->str->s);
    }
    return LEAVE(r);
}

/* Statements and text up to a {% name %} with name in ends (current is then that name),
 * or to the end of the template when nends is 0. */
static bool parse_body(parser *P, nvec *body, const char *const *ends, int nends,
                       const tpl_tok *opener, const char *opener_name) {
    for (;;) {
        tpl_tok *k = cur(P);
        switch (k->type) {
        case TK_EOF:
            if (nends) {
                char want[96] = "";
                for (int i = 0; i < nends; i++) {
                    size_t l = strlen(want);
                    snprintf(want + l, sizeof(want) - l, "%s'%s'", i ? " or " : "", ends[i]);
                }
                fail_at(P, k, RL_ERR_BAD_FILE,
                        "unexpected end of template: expected %s to close the '%s' at line %u",
                        want, opener_name, opener->line);
                return false;
            }
            return true;
        case TK_DATA: {
            tpl_node *t = new_node(P, N_TEXT, k);
            if (!t) return false;
            t->k = tv_obj(TV_STR, 0, (void *)k->str);
            if (!nv_push(P, body, t)) return false;
            advance(P);
            break;
        }
        case TK_VAR_BEGIN: {
            advance(P);
            tpl_node *o = new_node(P, N_OUTPUT, k);
            if (!o) return false;
            o->a = parse_tuple(P, false, true, NULL, false);
            if (!o->a || !expect_type(P, TK_VAR_END, "end of print statement")) return false;
            if (!nv_push(P, body, o)) return false;
            break;
        }
        case TK_BLOCK_BEGIN: {
            advance(P);
            for (int i = 0; i < nends; i++)
                if (is_name(P, ends[i])) return true;
            tpl_node *s = parse_statement(P);
            if (!s) return false;
            if (!expect_type(P, TK_BLOCK_END, "end of statement block")) return false;
            if (!nv_push(P, body, s)) return false;
            break;
        }
        default: {
            char b[64];
            FAIL("unexpected '%s'", describe(k, b, sizeof(b)));
            return false;
        }
        }
    }
}

/* jinja2's filters that take the context (never folded at compile time). */
static bool context_filter(const tpl_node *f) {
    static const char *const names[] = {"map", "select", "reject", "selectattr", "rejectattr", "random"};
    if (f->id == 0xffff) return true;
    const char *n = rl__tpl_filter_name(f->id);
    for (size_t i = 0; i < RL_ARRAY_LEN(names); i++)
        if (strcmp(n, names[i]) == 0) return true;
    return false;
}

static bool all_const(const tpl_nodes *l, uint8_t *slice) {
    bool ok = true;
    for (uint32_t i = 0; i < l->n; i++) {
        ok &= (l->v[i]->cst & CST_CONST) != 0;
        *slice |= l->v[i]->cst & CST_SLICE;
    }
    return ok;
}

static uint8_t kid(const tpl_node *x, uint8_t *slice) {
    if (!x) return CST_CONST;
    *slice |= x->cst & CST_SLICE;
    return x->cst & CST_CONST;
}

/* Which expressions jinja2 may evaluate at compile time (the nodes' as_const): literals
 * and operators over them, attribute/item access, filters and tests. As in jinja2 a
 * conditional needs only its test to be constant, and `and`/`or` only their left side:
 * the rest is found out while folding (ev_folded gives up at a name or call). Bottom-up;
 * nodes deeper than the parser's nesting bound stay unmarked (not folded). */
static void mark_const(tpl_node *n, int depth) {
    if (!n || depth > 4 * MAX_NEST) return;
    tpl_node *kids[4] = {n->a, n->b, n->c, n->d};
    for (int i = 0; i < 4; i++) mark_const(kids[i], depth + 1);
    for (uint32_t i = 0; i < n->l1.n; i++) mark_const(n->l1.v[i], depth + 1);
    for (uint32_t i = 0; i < n->l2.n; i++) mark_const(n->l2.v[i], depth + 1);
    uint8_t sl = 0;
    bool c = false;
    switch (n->kind) {
    case N_CONST: c = true; break;
    case N_LIST: case N_TUPLE: case N_CONCAT: c = all_const(&n->l1, &sl); break;
    case N_DICT: c = (int)all_const(&n->l1, &sl) & (int)all_const(&n->l2, &sl); break;
    case N_GETATTR: case N_NEG: case N_POS: case N_NOT: case N_OPERAND: c = kid(n->a, &sl); break;
    case N_GETITEM: case N_BINOP: c = (int)kid(n->a, &sl) & (int)kid(n->b, &sl); break;
    case N_SLICE:
        c = (int)kid(n->a, &sl) & (int)kid(n->b, &sl) & (int)kid(n->c, &sl) & (int)kid(n->d, &sl);
        sl |= CST_SLICE;
        break;
    case N_AND: case N_OR:
        c = kid(n->a, &sl);
        (void)kid(n->b, &sl);
        break;
    case N_COND:
        c = kid(n->a, &sl);
        (void)kid(n->b, &sl);
        (void)kid(n->c, &sl);
        break;
    case N_COMPARE: c = kid(n->a, &sl) & all_const(&n->l1, &sl); break;
    case N_FILTER:
        c = n->a && !context_filter(n) && kid(n->a, &sl) && all_const(&n->l1, &sl) && all_const(&n->l2, &sl);
        break;
    case N_TEST:
        c = n->id != 0xffff && kid(n->a, &sl) && all_const(&n->l1, &sl) && all_const(&n->l2, &sl);
        break;
    default: break;
    }
    n->cst = c ? (uint8_t)(CST_CONST | sl) : 0;
}

static void mark_body(tpl_nodes *b) {
    for (uint32_t i = 0; i < b->n; i++) mark_const(b->v[i], 0);
}

rl_status rl__tpl_compile(tpl_program *p, const char *src, size_t len, char *err,
                          size_t err_size) {
    tpl_toks toks;
    rl_status st = rl__tpl_lex(p, src, len, &toks, err, err_size);
    if (st != RL_OK) return st;
    parser P = {.p = p, .t = &toks, .err = err, .err_size = err_size, .st = RL_OK};
    nvec body = {0};
    bool ok = parse_body(&P, &body, NULL, 0, toks.v, "template");
    if (ok && P.pending) {
        fail_at(&P, P.pending, RL_ERR_BAD_FILE, "No %s named '%s'.", P.pending_kind, P.pending_name->s);
        ok = false;
    }
    rl__tpl_toks_free(&toks);
    if (!ok) return P.st != RL_OK ? P.st : RL_ERR_BAD_FILE;
    p->body = nv_done(&body);
    mark_body(&p->body);
    return RL_OK;
}
