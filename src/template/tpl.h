/*
 * tpl.h - internals of the chat-template interpreter: a Jinja subset written for the
 * templates models ship in `tokenizer.chat_template`, rendered the way Hugging Face's
 * apply_chat_template renders them (jinja2's ImmutableSandboxedEnvironment with
 * trim_blocks, lstrip_blocks and loop controls, plus tojson/raise_exception/strftime_now).
 *
 * Pipeline: lexer.c (source -> tokens, whitespace control) -> parser.c (tokens -> AST,
 * errors with line and column) -> eval.c (AST -> text over the value model of value.c,
 * with filters.c, methods.c and json.c). template.c is the public API.
 *
 * Values are Python's: none, bool, int (64-bit here), float, str (UTF-8, indexed by code
 * point), list/tuple, dict (insertion order), plus jinja2's Undefined, Namespace, macros,
 * single-pass generators and the loop object. Heap values are reference-counted; every
 * object of a render is also on the render's list of live objects, so cycles (a namespace
 * holding itself, a macro closing over its own scope) are freed when the render ends.
 * Compile-time constants are immortal (never counted, never written): a compiled template
 * is immutable and may be rendered from many threads at once.
 */
#ifndef RL_TEMPLATE_TPL_H
#define RL_TEMPLATE_TPL_H

#include "util/util.h"

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* ---- values --------------------------------------------------------------- */

enum {
    TV_UNDEF,  /* jinja2 Undefined: falsy, prints as "", fails on arithmetic */
    TV_NONE,
    TV_BOOL,
    TV_INT,
    TV_FLOAT,
    TV_STR,    /* u.o is a tpl_str; sub & STR_SAFE marks markupsafe.Markup */
    TV_LIST,   /* u.o is a tpl_list; sub is LS_* */
    TV_DICT,   /* u.o is a tpl_dict */
    TV_NS,     /* jinja2 Namespace: a tpl_dict whose items are attributes */
    TV_FUNC,   /* u.o is a tpl_func: macro, builtin, bound method */
    TV_GEN,    /* single-pass generator (select, map, ...): a tpl_list with a cursor */
    TV_LOOP,   /* the `loop` variable of a for loop */
    TV_SCOPE   /* internal: a variable scope (never a template value) */
};

/* sub of TV_LIST: Python types that behave as sequences */
/* LS_RANGE: a range() object, kept as its items (indexable, not JSON, prints range(a, b)) */
enum { LS_LIST, LS_TUPLE, LS_ITEMS, LS_KEYS, LS_VALUES, LS_RANGE };
/* sub of TV_GEN */
enum { GEN_GENERATOR, GEN_REVERSE };
/* sub of TV_STR */
#define STR_SAFE 1
/* sub of TV_UNDEF: what the message of an error raised by using it says.
 * UH_NAME: "'hint' is undefined"; UH_ATTR: "'<aux type> object' has no attribute 'hint'";
 * UH_ELEM: "<aux type> object has no element"; UH_MSG: hint is the whole message, and
 * using the value raises a SecurityError-like error; UH_MISSING: an argument not given. */
enum { UH_NONE, UH_NAME, UH_ATTR, UH_ELEM, UH_MSG, UH_MISSING, UH_ELEM_INT /* u.i: the index */ };

typedef struct tpl_obj tpl_obj;
struct tpl_obj {
    uint32_t rc; /* TPL_IMMORTAL for compile-time constants */
    uint8_t kind;
    tpl_obj *prev, *next; /* the render's list of live objects */
};
#define TPL_IMMORTAL UINT32_MAX

typedef struct tpl_val {
    uint8_t t;
    uint8_t sub;
    uint8_t aux;
    union {
        bool b;
        int64_t i;
        double f;
        tpl_obj *o;
        const char *hint; /* TV_UNDEF: static or immortal text */
    } u;
} tpl_val;

typedef struct tpl_str {
    tpl_obj h;
    size_t len; /* bytes, without the terminating NUL */
    size_t ncp; /* code points (== len when ASCII) */
    char s[];
} tpl_str;

typedef struct tpl_list {
    tpl_obj h;
    size_t n, cap;
    size_t pos;         /* generators: items before pos are consumed */
    tpl_val *v;
    struct tpl_str *err; /* generators: error raised once the items run out (owned) */
    int64_t rstart, rstop, rstep; /* LS_RANGE: the arguments range() was given */
} tpl_list;

typedef struct tpl_dict {
    tpl_obj h;
    size_t n, cap;
    tpl_val *k, *v;
} tpl_dict;

struct tpl_node;
struct tpl_scope;

enum { FN_MACRO, FN_BUILTIN, FN_METHOD, FN_CALLER };
typedef struct tpl_func {
    tpl_obj h;
    uint8_t fk;
    uint16_t id;                  /* builtin or method id */
    const struct tpl_node *node;  /* macro or call block */
    struct tpl_scope *closure;    /* scope the macro was defined in (owned) */
    tpl_val self;                 /* receiver of a bound method (owned) */
} tpl_func;

typedef struct tpl_loop {
    tpl_obj h;
    tpl_list *items; /* owned */
    size_t i;
    tpl_val changed_last;
    bool has_changed;
} tpl_loop;

typedef struct tpl_scope {
    tpl_obj h;
    struct tpl_scope *parent; /* owned */
    size_t n, cap;
    const tpl_str **names; /* interned: compared by pointer */
    tpl_val *vals;
} tpl_scope;

static inline bool tv_isobj(tpl_val v) { return v.t >= TV_STR; }
static inline tpl_val tv_none(void) { tpl_val v = {TV_NONE, 0, 0, {.i = 0}}; return v; }
static inline tpl_val tv_undef(void) { tpl_val v = {TV_UNDEF, UH_NONE, 0, {.i = 0}}; return v; }
static inline tpl_val tv_missing(void) { tpl_val v = {TV_UNDEF, UH_MISSING, 0, {.i = 0}}; return v; }
static inline bool tv_given(tpl_val v) { return !(v.t == TV_UNDEF && v.sub == UH_MISSING); }
static inline tpl_val tv_bool(bool b) { tpl_val v = {TV_BOOL, 0, 0, {.b = b}}; return v; }
static inline tpl_val tv_int(int64_t i) { tpl_val v = {TV_INT, 0, 0, {.i = i}}; return v; }
static inline tpl_val tv_float(double f) { tpl_val v = {TV_FLOAT, 0, 0, {.f = f}}; return v; }
static inline tpl_val tv_obj(uint8_t t, uint8_t sub, void *o) {
    tpl_val v = {t, sub, 0, {.o = (tpl_obj *)o}};
    return v;
}
static inline tpl_val tv_undef_index(uint8_t aux, int64_t i) {
    tpl_val v = {TV_UNDEF, UH_ELEM_INT, aux, {.i = i}};
    return v;
}
static inline tpl_val tv_undef_msg(uint8_t sub, uint8_t aux, const char *hint) {
    tpl_val v = {TV_UNDEF, sub, aux, {.hint = hint}};
    return v;
}
#define TV_S(v) ((tpl_str *)(v).u.o)
#define TV_L(v) ((tpl_list *)(v).u.o)
#define TV_D(v) ((tpl_dict *)(v).u.o)
#define TV_F(v) ((tpl_func *)(v).u.o)

static inline void tv_incref(tpl_val v) {
    if (tv_isobj(v) && v.u.o->rc != TPL_IMMORTAL) v.u.o->rc++;
}
static inline tpl_val tv_ref(tpl_val v) {
    tv_incref(v);
    return v;
}

/* ---- AST ------------------------------------------------------------------ */

enum {
    /* expressions */
    N_CONST, N_NAME, N_LIST, N_TUPLE, N_DICT, N_GETATTR, N_GETITEM, N_SLICE, N_CALL,
    N_FILTER, N_TEST, N_NEG, N_POS, N_BINOP, N_CONCAT, N_AND, N_OR, N_NOT, N_COMPARE,
    N_OPERAND, N_COND, N_NSREF,
    /* statements */
    N_TEXT, N_OUTPUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_CALLBLOCK, N_FILTERBLOCK,
    N_WITH, N_BREAK, N_CONTINUE, N_SCOPE_BODY
};

/* operators (tokens and N_BINOP / N_OPERAND op) */
enum {
    OP_NONE, OP_ADD, OP_SUB, OP_DIV, OP_FLOORDIV, OP_MUL, OP_MOD, OP_POW, OP_TILDE,
    OP_LBRACKET, OP_RBRACKET, OP_LPAREN, OP_RPAREN, OP_LBRACE, OP_RBRACE, OP_EQ, OP_NE,
    OP_GT, OP_GE, OP_LT, OP_LE, OP_ASSIGN, OP_DOT, OP_COLON, OP_PIPE, OP_COMMA, OP_SEMI,
    OP_IN, OP_NOTIN
};

/* N_MACRO flags: names the body reads (jinja2 adds these parameters only then) */
#define MF_VARARGS 1
#define MF_KWARGS 2
#define MF_CALLER 4
/* N_FOR flag */
#define FF_RECURSIVE 1
/* tpl_node.cst: the expression is constant (jinja2 folds it when compiling); with a
 * slice inside, folding and running differ (folding slices softly, through getitem) */
#define CST_CONST 1
#define CST_SLICE 2

typedef struct tpl_node tpl_node;
typedef struct tpl_nodes {
    tpl_node **v;
    uint32_t n;
} tpl_nodes;

struct tpl_node {
    uint8_t kind;
    uint8_t op;    /* operator, or flags */
    uint16_t id;   /* filter / test id; 0xffff: unknown (fails when run) */
    uint8_t cst;   /* CST_*: what jinja2's compile-time constant folding would do */
    uint32_t line, col;
    const tpl_str *name;  /* variable, attribute, filter, test, macro name */
    const tpl_str *name2; /* N_NSREF attribute */
    tpl_val k;            /* N_CONST / N_TEXT value (immortal) */
    tpl_node *a, *b, *c, *d;
    tpl_nodes l1, l2;     /* items / args / body; values / kwarg values / else body */
    const tpl_str **names; /* kwarg names, macro parameters */
    uint32_t nnames;
};

/* ---- compiled template ---------------------------------------------------- */

typedef struct tpl_chunk tpl_chunk;

typedef struct tpl_arena {
    tpl_chunk *head;
    size_t used, cap; /* of head */
    size_t total;
} tpl_arena;

void *rl__tpl_arena_alloc(tpl_arena *a, size_t n);
void rl__tpl_arena_free(tpl_arena *a);

typedef struct tpl_program {
    tpl_arena arena;
    tpl_nodes body;
    const tpl_str **names; /* interned identifiers, open-addressed hash (cap a power of 2) */
    size_t nnames, names_cap;
} tpl_program;

/* Interned identifier or NULL when the template never names it. */
const tpl_str *rl__tpl_lookup_name(const tpl_program *p, const char *s, size_t n);

/* Tokenize and parse src into p (zeroed by the caller). On failure returns a status
 * and writes "line L, column C: message" to err. */
rl_status rl__tpl_compile(tpl_program *p, const char *src, size_t len, char *err,
                          size_t err_size);

/* ---- render context ------------------------------------------------------- */

typedef struct tpl_sb { /* string builder: the bytes of a future tpl_str */
    tpl_str *s;
    size_t cap;
} tpl_sb;

/* Bound on nested evaluation (C recursion): a few hundred bytes of stack per level. */
#define TPL_MAX_NEST 1000

typedef struct tpl_limits {
    uint64_t max_steps;
    size_t max_memory;
    size_t max_output;
    int max_depth;
} tpl_limits;

typedef struct tpl_ctx {
    const tpl_program *prog;
    rl_status status;
    char *err;
    size_t err_size;
    char msg[512];     /* the first error's message without the line prefix */
    uint32_t line;     /* of the node being run, for messages */
    tpl_sb *out;       /* where output goes now */
    uint64_t steps;
    size_t mem;
    bool folding;      /* evaluating as jinja2's constant folding would */
    int depth;         /* macro calls */
    int nest;          /* ev/ex recursion */
    tpl_limits lim;
    tpl_obj live;      /* sentinel of the list of live objects */
    tpl_obj **dead;    /* objects to free (iterative, no deep recursion) */
    size_t ndead, dead_cap;
    bool freeing;
    struct tm now;
    tpl_scope *top;
    /* interned names the evaluator needs (NULL when the template never uses them) */
    const tpl_str *n_loop, *n_caller, *n_varargs, *n_kwargs;
} tpl_ctx;

/* Record an error (the first one wins) and return -1. */
int rl__tpl_fail(tpl_ctx *c, rl_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Charge n units of work against max_steps; -1 past the limit. */
int rl__tpl_charge(tpl_ctx *c, uint64_t n);

/* memory */
void *rl__tpl_alloc(tpl_ctx *c, size_t n);
void *rl__tpl_realloc(tpl_ctx *c, void *p, size_t old_n, size_t new_n);
void rl__tpl_dealloc(tpl_ctx *c, void *p, size_t n);
void rl__tpl_decref(tpl_ctx *c, tpl_val v);
void rl__tpl_obj_decref(tpl_ctx *c, tpl_obj *o);
void rl__tpl_free_all(tpl_ctx *c);
/* Put an object made outside obj_new (rc 1) on the live list. */
void rl__tpl_link(tpl_ctx *c, tpl_obj *o);

/* strings */
tpl_str *rl__tpl_str_new(tpl_ctx *c, const char *s, size_t n);
size_t rl__tpl_utf8_count(const char *s, size_t n);
void rl__tpl_sb_init(tpl_sb *b);
int rl__tpl_sb_add(tpl_ctx *c, tpl_sb *b, const char *s, size_t n);
int rl__tpl_sb_addc(tpl_ctx *c, tpl_sb *b, char ch);
int rl__tpl_sb_addf(tpl_ctx *c, tpl_sb *b, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int rl__tpl_sb_addcp(tpl_ctx *c, tpl_sb *b, int32_t cp);
tpl_str *rl__tpl_sb_finish(tpl_ctx *c, tpl_sb *b); /* the builder is empty afterwards */
/* s[0..n), or the builder's string (the builder is then empty), as a string value of
 * subtype sub in *out; -1 when out of memory. */
int rl__tpl_str_val(tpl_ctx *c, const char *s, size_t n, uint8_t sub, tpl_val *out);
int rl__tpl_sb_val(tpl_ctx *c, tpl_sb *b, uint8_t sub, tpl_val *out);
void rl__tpl_sb_drop(tpl_ctx *c, tpl_sb *b);
static inline size_t tpl_sb_len(const tpl_sb *b) { return b->s ? b->s->len : 0; }

/* containers */
tpl_list *rl__tpl_list_new(tpl_ctx *c, uint8_t kind, size_t cap);
int rl__tpl_list_push(tpl_ctx *c, tpl_list *l, tpl_val v_take);
tpl_dict *rl__tpl_dict_new(tpl_ctx *c, uint8_t kind);
int rl__tpl_dict_set(tpl_ctx *c, tpl_dict *d, tpl_val k_take, tpl_val v_take);
tpl_val *rl__tpl_dict_find_str(const tpl_dict *d, const char *s, size_t n);
/* Key lookup with Python equality (1 == 1.0 == True); *out NULL when absent. */
int rl__tpl_dict_find(tpl_ctx *c, const tpl_dict *d, tpl_val key, tpl_val **out);
tpl_func *rl__tpl_func_new(tpl_ctx *c, uint8_t fk, uint16_t id);
tpl_scope *rl__tpl_scope_new(tpl_ctx *c, tpl_scope *parent);
int rl__tpl_scope_set(tpl_ctx *c, tpl_scope *s, const tpl_str *name, tpl_val v_take);
tpl_val *rl__tpl_scope_find(tpl_scope *s, const tpl_str *name);

/* Python semantics */
bool rl__tpl_truthy(tpl_val v);
const char *rl__tpl_type_name(tpl_val v); /* "str", "NoneType", "dict", ... */
uint8_t rl__tpl_type_code(tpl_val v);     /* for UH_ATTR messages */
const char *rl__tpl_type_code_name(uint8_t code);
int rl__tpl_eq(tpl_ctx *c, tpl_val a, tpl_val b, bool *res);
/* Python ordering of a and b: *res -1, 0 or 1, or 2 when unordered (NaN). Pairs Python
 * cannot order raise TypeError naming op ("<", ">=", ...). */
int rl__tpl_cmp(tpl_ctx *c, tpl_val a, tpl_val b, const char *op, int *res);
/* Append str(v) or repr(v) as Python prints them. */
int rl__tpl_to_str(tpl_ctx *c, tpl_sb *b, tpl_val v);
int rl__tpl_repr(tpl_ctx *c, tpl_sb *b, tpl_val v, int depth);
/* str(v) as a new reference (the same object when v is a plain str). */
int rl__tpl_str_of(tpl_ctx *c, tpl_val v, tpl_val *out);
/* Python repr(float): shortest round-trip digits; buf holds >= 32 bytes. */
size_t rl__tpl_fmt_float(double d, char *buf);
/* Message of an Undefined, for errors raised by using it. */
void rl__tpl_undef_msg(tpl_val v, char *buf, size_t n);
int rl__tpl_fail_undef(tpl_ctx *c, tpl_val v);
/* Items of an iterable as a list (new reference): lists as they are, dict keys, the
 * characters of a string, what is left of a generator; Undefined gives []. */
int rl__tpl_iterate(tpl_ctx *c, tpl_val v, tpl_list **out);
/* A generator whose producer failed raises that error when read past its items. */
int rl__tpl_gen_raise(tpl_ctx *c, const tpl_list *g);

/* unicode helpers (Python's str semantics) */
int32_t rl__tpl_utf8_next(const char *s, size_t n, size_t *i);
bool rl__tpl_isspace(int32_t cp);
size_t rl__tpl_cp_offset(const tpl_str *s, int64_t cp_index); /* byte offset */

/* JSON */
struct json_t;
int rl__tpl_from_json(tpl_ctx *c, const struct json_t *j, tpl_val *out);
typedef struct tpl_json_opts {
    bool ensure_ascii, sort_keys;
    const char *indent; /* NULL: none */
    size_t indent_len;
    const char *item_sep, *key_sep;
    size_t item_sep_len, key_sep_len;
} tpl_json_opts;
int rl__tpl_tojson(tpl_ctx *c, tpl_sb *b, tpl_val v, const tpl_json_opts *o);

/* ---- calls: arguments, filters, tests, methods ------------------------------ */

typedef struct tpl_args {
    tpl_val *pos;
    uint32_t npos;
    const tpl_str **kwn;
    tpl_val *kwv;
    uint32_t nkw;
} tpl_args;

/* Bind args to the parameter names of fname: slots[i] borrowed, tv_missing() when not
 * given. Extra positional arguments are refused unless nvar is non-NULL (then the
 * number of leftovers after the named ones is stored and they stay in a->pos). */
int rl__tpl_bind(tpl_ctx *c, const char *fname, const char *const *params, int np,
                 const tpl_args *a, tpl_val *slots, uint32_t *nvar);

int rl__tpl_filter_id(const char *name, size_t n); /* -1 unknown */
int rl__tpl_test_id(const char *name, size_t n);   /* -1 unknown */
const char *rl__tpl_filter_name(int id);
const char *rl__tpl_test_name(int id);
int rl__tpl_call_filter(tpl_ctx *c, int id, tpl_val in, const tpl_args *a, tpl_val *out);
int rl__tpl_call_test(tpl_ctx *c, int id, tpl_val in, const tpl_args *a, bool *out);

/* Attribute / item access as jinja2's sandbox does it. */
int rl__tpl_getattr(tpl_ctx *c, tpl_val obj, const tpl_str *name, tpl_val *out);
int rl__tpl_getattr_s(tpl_ctx *c, tpl_val obj, const char *name, size_t n, tpl_val *out);
int rl__tpl_getitem(tpl_ctx *c, tpl_val obj, tpl_val key, tpl_val *out);

/* Methods of str / dict / list / loop: id for a receiver, or -1. */
int rl__tpl_method_id(tpl_val self, const char *name, size_t n, bool *unsafe);
/* "access to attribute 'append' of 'list' object is unsafe." for an unsafe id. */
const char *rl__tpl_method_unsafe_msg(int id);
int rl__tpl_call_method(tpl_ctx *c, int id, tpl_val self, const tpl_args *a, tpl_val *out);

/* Call any callable value (macro, builtin, method). */
int rl__tpl_call_value(tpl_ctx *c, tpl_val f, const tpl_args *a, tpl_val *out);

/* Python formatting */
int rl__tpl_percent_format(tpl_ctx *c, tpl_sb *b, const tpl_str *fmt, tpl_val args);
int rl__tpl_str_format(tpl_ctx *c, tpl_sb *b, const tpl_str *fmt, const tpl_args *a);

/* Python string helpers (methods.c) */
enum { CASE_UPPER, CASE_LOWER, CASE_TITLE, CASE_CAPITALIZE, CASE_SWAP, CASE_JINJA_TITLE };
int rl__tpl_case(tpl_ctx *c, tpl_sb *b, const char *s, size_t n, int mode);
/* Byte range [*a, *b) of s without leading (which & 1) and trailing (which & 2) code
 * points that are whitespace (chars NULL) or in chars. */
void rl__tpl_strip(const tpl_str *s, const tpl_str *chars, int which, size_t *a, size_t *b);
/* Python str.splitlines(): byte ranges of the lines (without line ends); returns count
 * or -1. *out allocated with rl__tpl_alloc (2 entries per line). */
int rl__tpl_splitlines(tpl_ctx *c, const tpl_str *s, size_t **out, size_t *n);

/* Markup escaping (markupsafe.escape) */
int rl__tpl_escape(tpl_ctx *c, tpl_sb *b, const char *s, size_t n);

/* Arithmetic used by filters and the evaluator */
int rl__tpl_binop(tpl_ctx *c, int op, tpl_val a, tpl_val b, tpl_val *out);

#endif /* RL_TEMPLATE_TPL_H */
