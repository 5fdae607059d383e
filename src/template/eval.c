/*
 * eval.c - runs the AST: statements write to the current output builder, expressions
 * produce values. Scoping follows jinja2: a for loop, macro call, call/filter/set block
 * and `with` get their own scope (reads fall through to the enclosing ones, writes stay
 * local); `if` does not. Names are interned, so a lookup compares pointers.
 *
 * Every node run costs one step and bulk string work costs steps by size, so a hostile
 * template hits max_steps instead of running forever; macro calls are bounded by
 * max_depth, memory by max_memory and any built string by max_output.
 */
#include "template/tpl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { X_OK = 0, X_BREAK = 1, X_CONTINUE = 2 };

enum { B_RANGE, B_NAMESPACE, B_DICT, B_RAISE, B_STRFTIME, B_JOINER, B_CYCLER };

static int ev_node(tpl_ctx *c, tpl_scope *sc, const tpl_node *n, tpl_val *out);
static int ex_node(tpl_ctx *c, tpl_scope *sc, const tpl_node *n);
static int ex_body(tpl_ctx *c, tpl_scope *sc, const tpl_nodes *b);

#define MAX_CALL_ARGS 64

/* Nesting of ev/ex (and filter chains) is bounded: a template like a+a+a+...+a is a
 * left-deep tree as deep as it is long, and recursion on it must not exhaust the C stack. */
static int enter(tpl_ctx *c, const tpl_node *n) {
    c->line = n->line;
    if (c->nest >= TPL_MAX_NEST)
        return rl__tpl_fail(c, RL_ERR_LIMIT, "expressions and statements nested deeper than %d", TPL_MAX_NEST);
    if (rl__tpl_charge(c, 1)) return -1;
    c->nest++;
    return 0;
}

/* Values jinja2's folding may keep (compiler.has_safe_repr). */
static bool safe_repr(tpl_val v, int depth) {
    if (depth > 64) return false;
    switch (v.t) {
    case TV_NONE: case TV_BOOL: case TV_INT: case TV_FLOAT: case TV_STR: return true;
    case TV_LIST:
        if (v.sub != LS_LIST && v.sub != LS_TUPLE && v.sub != LS_RANGE) return false;
        for (size_t i = 0; i < TV_L(v)->n; i++)
            if (!safe_repr(TV_L(v)->v[i], depth + 1)) return false;
        return true;
    case TV_DICT:
        for (size_t i = 0; i < TV_D(v)->n; i++)
            if (!safe_repr(TV_D(v)->k[i], depth + 1) || !safe_repr(TV_D(v)->v[i], depth + 1)) return false;
        return true;
    default: return false;
    }
}

/* A constant expression with a slice inside: jinja2 evaluates it when compiling, where a
 * slice of a non-sequence gives Undefined instead of raising, and keeps the result when
 * it can be embedded (any value for {{ }}, a safe-repr value elsewhere); otherwise the
 * expression runs as usual. */
static int ev_folded(tpl_ctx *c, tpl_scope *sc, const tpl_node *n, tpl_val *out, bool in_output) {
    c->folding = true;
    int r = ev_node(c, sc, n, out);
    c->folding = false;
    if (r == 0) {
        if (in_output || safe_repr(*out, 0)) return 0;
        rl__tpl_decref(c, *out);
    } else if (c->status != RL_OK) { /* RL_OK: it met something not constant */
        if (c->status != RL_ERR_INVALID_ARG && c->status != RL_ERR_BAD_FILE) return -1;
        c->status = RL_OK; /* folding failed: jinja2 leaves it to run time */
        if (c->err && c->err_size) c->err[0] = 0;
    }
    *out = tv_none();
    return ev_node(c, sc, n, out);
}

static int ev(tpl_ctx *c, tpl_scope *sc, const tpl_node *n, tpl_val *out) {
    if (enter(c, n)) return -1;
    int r = (n->cst & CST_SLICE) && !c->folding ? ev_folded(c, sc, n, out, false) : ev_node(c, sc, n, out);
    c->nest--;
    return r;
}

static int ex(tpl_ctx *c, tpl_scope *sc, const tpl_node *n) {
    if (enter(c, n)) return -1;
    int r = ex_node(c, sc, n);
    c->nest--;
    return r;
}

/* ---- arithmetic -------------------------------------------------------------- */

static bool is_intlike(tpl_val v) { return v.t == TV_INT || v.t == TV_BOOL; }
static bool is_num(tpl_val v) { return is_intlike(v) || v.t == TV_FLOAT; }
static int64_t as_int(tpl_val v) { return v.t == TV_BOOL ? (int64_t)v.u.b : v.u.i; }
static double as_f(tpl_val v) { return v.t == TV_FLOAT ? v.u.f : (double)as_int(v); }

static const char *op_sym(int op) {
    switch (op) {
    case OP_ADD: return "+";
    case OP_SUB: return "-";
    case OP_MUL: return "*";
    case OP_DIV: return "/";
    case OP_FLOORDIV: return "//";
    case OP_MOD: return "%";
    case OP_POW: return "** or pow()";
    default: return "?";
    }
}

static int unsupported(tpl_ctx *c, int op, tpl_val a, tpl_val b) {
    return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "unsupported operand type(s) for %s: '%s' and '%s'",
                        op_sym(op), rl__tpl_type_name(a), rl__tpl_type_name(b));
}

static int overflow(tpl_ctx *c) {
    return rl__tpl_fail(c, RL_ERR_UNSUPPORTED, "integer overflow (only 64-bit integers are supported)");
}

/* Python's float divmod: the remainder has the sign of the divisor. */
static void py_fdivmod(double a, double b, double *q, double *r) {
    double mod = fmod(a, b);
    double div = (a - mod) / b;
    if (mod != 0) {
        if ((b < 0) != (mod < 0)) {
            mod += b;
            div -= 1.0;
        }
    } else {
        mod = copysign(0.0, b);
    }
    double fl;
    if (div != 0) {
        fl = floor(div);
        if (div - fl > 0.5) fl += 1.0;
    } else {
        fl = copysign(0.0, a / b);
    }
    *q = fl;
    *r = mod;
}

static int concat_str(tpl_ctx *c, tpl_val a, tpl_val b, tpl_val *out) {
    bool safe = (a.sub | b.sub) & STR_SAFE;
    tpl_sb sb;
    rl__tpl_sb_init(&sb);
    int r = 0;
    /* markupsafe: Markup + str escapes the plain side */
    if (safe && !(a.sub & STR_SAFE)) r = rl__tpl_escape(c, &sb, TV_S(a)->s, TV_S(a)->len);
    else r = rl__tpl_sb_add(c, &sb, TV_S(a)->s, TV_S(a)->len);
    if (!r) {
        if (safe && !(b.sub & STR_SAFE)) r = rl__tpl_escape(c, &sb, TV_S(b)->s, TV_S(b)->len);
        else r = rl__tpl_sb_add(c, &sb, TV_S(b)->s, TV_S(b)->len);
    }
    if (r) return rl__tpl_sb_drop(c, &sb), -1;
    tpl_str *s = rl__tpl_sb_finish(c, &sb);
    if (!s) return -1;
    *out = tv_obj(TV_STR, safe ? STR_SAFE : 0, s);
    return 0;
}

static int repeat(tpl_ctx *c, tpl_val seq, int64_t k, tpl_val *out) {
    if (k < 0) k = 0;
    if (seq.t == TV_STR) {
        tpl_str *s = TV_S(seq);
        if (s->len && (uint64_t)k > c->lim.max_output / s->len)
            return rl__tpl_fail(c, RL_ERR_LIMIT, "string repetition longer than %zu bytes", c->lim.max_output);
        tpl_sb sb;
        rl__tpl_sb_init(&sb);
        for (int64_t i = 0; i < k; i++)
            if (rl__tpl_sb_add(c, &sb, s->s, s->len)) return rl__tpl_sb_drop(c, &sb), -1;
        tpl_str *r = rl__tpl_sb_finish(c, &sb);
        if (!r) return -1;
        *out = tv_obj(TV_STR, seq.sub, r);
        return 0;
    }
    tpl_list *l = TV_L(seq);
    if (l->n && (uint64_t)k > (c->lim.max_memory / sizeof(tpl_val)) / l->n)
        return rl__tpl_fail(c, RL_ERR_LIMIT, "list repetition too large");
    tpl_list *r = rl__tpl_list_new(c, TV_LIST, (size_t)k * l->n);
    if (!r) return -1;
    for (int64_t i = 0; i < k; i++)
        for (size_t j = 0; j < l->n; j++) r->v[r->n++] = tv_ref(l->v[j]);
    *out = tv_obj(TV_LIST, seq.sub, r);
    return rl__tpl_charge(c, r->n / 16);
}

int rl__tpl_binop(tpl_ctx *c, int op, tpl_val a, tpl_val b, tpl_val *out) {
    if (a.t == TV_UNDEF) return rl__tpl_fail_undef(c, a);
    /* str % x formats whatever x is (Python never asks Undefined.__rmod__) */
    if (b.t == TV_UNDEF && !(op == OP_MOD && a.t == TV_STR)) return rl__tpl_fail_undef(c, b);
    if (is_num(a) && is_num(b)) {
        bool ints = is_intlike(a) && is_intlike(b);
        int64_t x = ints ? as_int(a) : 0, y = ints ? as_int(b) : 0, r;
        double fx = as_f(a), fy = as_f(b);
        switch (op) {
        case OP_ADD:
            if (!ints) return *out = tv_float(fx + fy), 0;
            if (__builtin_add_overflow(x, y, &r)) return overflow(c);
            return *out = tv_int(r), 0;
        case OP_SUB:
            if (!ints) return *out = tv_float(fx - fy), 0;
            if (__builtin_sub_overflow(x, y, &r)) return overflow(c);
            return *out = tv_int(r), 0;
        case OP_MUL:
            if (!ints) return *out = tv_float(fx * fy), 0;
            if (__builtin_mul_overflow(x, y, &r)) return overflow(c);
            return *out = tv_int(r), 0;
        case OP_DIV:
            if (fy == 0) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "division by zero");
            if (ints) return *out = tv_float((double)x / (double)y), 0;
            return *out = tv_float(fx / fy), 0;
        case OP_FLOORDIV: case OP_MOD:
            if (ints) {
                if (y == 0)
                    return rl__tpl_fail(c, RL_ERR_INVALID_ARG, op == OP_MOD ? "integer modulo by zero"
                                                                            : "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1) return overflow(c);
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) q--, m += y;
                return *out = tv_int(op == OP_MOD ? m : q), 0;
            } else {
                if (fy == 0)
                    return rl__tpl_fail(c, RL_ERR_INVALID_ARG, op == OP_MOD ? "float modulo" : "float floor division by zero");
                double q, m;
                py_fdivmod(fx, fy, &q, &m);
                return *out = tv_float(op == OP_MOD ? m : q), 0;
            }
        case OP_POW:
            if (ints && y >= 0) {
                int64_t acc = 1, base = x;
                int64_t e = y;
                while (e > 0) {
                    if (e & 1)
                        if (__builtin_mul_overflow(acc, base, &acc)) return overflow(c);
                    e >>= 1;
                    if (e && __builtin_mul_overflow(base, base, &base)) return overflow(c);
                }
                return *out = tv_int(acc), 0;
            }
            if (fx == 0 && fy < 0)
                return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "0.0 cannot be raised to a negative power");
            if (fx < 0 && fy != floor(fy))
                return rl__tpl_fail(c, RL_ERR_UNSUPPORTED, "complex results are not supported");
            return *out = tv_float(pow(fx, fy)), 0;
        default: break;
        }
        return unsupported(c, op, a, b);
    }
    switch (op) {
    case OP_ADD:
        if (a.t == TV_STR && b.t == TV_STR) return concat_str(c, a, b, out);
        if (a.t == TV_LIST && b.t == TV_LIST && a.sub == b.sub && (a.sub == LS_LIST || a.sub == LS_TUPLE)) {
            tpl_list *x = TV_L(a), *y = TV_L(b);
            tpl_list *r = rl__tpl_list_new(c, TV_LIST, x->n + y->n);
            if (!r) return -1;
            for (size_t i = 0; i < x->n; i++) r->v[r->n++] = tv_ref(x->v[i]);
            for (size_t i = 0; i < y->n; i++) r->v[r->n++] = tv_ref(y->v[i]);
            *out = tv_obj(TV_LIST, a.sub, r);
            return rl__tpl_charge(c, r->n / 16);
        }
        if (a.t == TV_STR && !(a.sub & STR_SAFE))
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "can only concatenate str (not \"%s\") to str",
                                rl__tpl_type_name(b));
        if (a.t == TV_LIST && (a.sub == LS_LIST || a.sub == LS_TUPLE))
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "can only concatenate %s (not \"%s\") to %s",
                                rl__tpl_type_name(a), rl__tpl_type_name(b), rl__tpl_type_name(a));
        return unsupported(c, op, a, b);
    case OP_MUL:
        if ((a.t == TV_STR || (a.t == TV_LIST && (a.sub == LS_LIST || a.sub == LS_TUPLE))) && is_intlike(b))
            return repeat(c, a, as_int(b), out);
        if ((b.t == TV_STR || (b.t == TV_LIST && (b.sub == LS_LIST || b.sub == LS_TUPLE))) && is_intlike(a))
            return repeat(c, b, as_int(a), out);
        if (a.t == TV_STR || b.t == TV_STR)
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "can't multiply sequence by non-int of type '%s'",
                                rl__tpl_type_name(a.t == TV_STR ? b : a));
        return unsupported(c, op, a, b);
    case OP_MOD:
        if (a.t == TV_STR) {
            tpl_sb sb;
            rl__tpl_sb_init(&sb);
            if (rl__tpl_percent_format(c, &sb, TV_S(a), b)) return rl__tpl_sb_drop(c, &sb), -1;
            tpl_str *s = rl__tpl_sb_finish(c, &sb);
            if (!s) return -1;
            *out = tv_obj(TV_STR, a.sub, s);
            return 0;
        }
        return unsupported(c, op, a, b);
    default: return unsupported(c, op, a, b);
    }
}

/* ---- comparisons ------------------------------------------------------------- */

static int contains(tpl_ctx *c, tpl_val item, tpl_val seq, bool *res) {
    *res = false;
    switch (seq.t) {
    case TV_UNDEF: return 0;
    case TV_STR:
        if (item.t != TV_STR)
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "'in <string>' requires string as left operand, not %s",
                                rl__tpl_type_name(item));
        if (TV_S(item)->len == 0) *res = true;
        else *res = memmem(TV_S(seq)->s, TV_S(seq)->len, TV_S(item)->s, TV_S(item)->len) != NULL;
        return rl__tpl_charge(c, TV_S(seq)->len / 4096);
    case TV_LIST: {
        tpl_list *l = TV_L(seq);
        for (size_t i = 0; i < l->n; i++) {
            if (rl__tpl_eq(c, l->v[i], item, res)) return -1;
            if (*res) return 0;
        }
        return rl__tpl_charge(c, l->n / 16);
    }
    case TV_GEN: {
        tpl_list *l = TV_L(seq);
        while (l->pos < l->n) {
            if (rl__tpl_eq(c, l->v[l->pos++], item, res)) return -1;
            if (*res) return 0;
        }
        return rl__tpl_gen_raise(c, l);
    }
    case TV_DICT: {
        tpl_val *slot;
        if (item.t == TV_DICT || item.t == TV_NS || (item.t == TV_LIST && item.sub != LS_TUPLE && item.sub != LS_RANGE))
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "unhashable type: '%s'", rl__tpl_type_name(item));
        if (rl__tpl_dict_find(c, TV_D(seq), item, &slot)) return -1;
        *res = slot != NULL;
        return 0;
    }
    default:
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "argument of type '%s' is not iterable",
                            rl__tpl_type_name(seq));
    }
}

static int compare(tpl_ctx *c, int op, tpl_val a, tpl_val b, bool *res) {
    int r;
    switch (op) {
    case OP_EQ: return rl__tpl_eq(c, a, b, res);
    case OP_NE:
        if (rl__tpl_eq(c, a, b, res)) return -1;
        *res = !*res;
        return 0;
    case OP_IN: return contains(c, a, b, res);
    case OP_NOTIN:
        if (contains(c, a, b, res)) return -1;
        *res = !*res;
        return 0;
    case OP_LT: if (rl__tpl_cmp(c, a, b, "<", &r)) return -1; *res = r == -1; return 0;
    case OP_LE: if (rl__tpl_cmp(c, a, b, "<=", &r)) return -1; *res = r == -1 || r == 0; return 0;
    case OP_GT: if (rl__tpl_cmp(c, a, b, ">", &r)) return -1; *res = r == 1; return 0;
    case OP_GE: if (rl__tpl_cmp(c, a, b, ">=", &r)) return -1; *res = r == 1 || r == 0; return 0;
    default: return rl__tpl_fail(c, RL_ERR_INTERNAL, "bad comparison");
    }
}

/* ---- attribute and item access --------------------------------------------------- */

static int loop_attr(tpl_ctx *c, tpl_val lv, const char *name, size_t n, tpl_val *out) {
    tpl_loop *l = (tpl_loop *)lv.u.o;
    size_t len = l->items ? l->items->n : 0, i = l->i;
#define IS(s) (n == sizeof(s) - 1 && memcmp(name, s, n) == 0)
    if (IS("index")) *out = tv_int((int64_t)i + 1);
    else if (IS("index0")) *out = tv_int((int64_t)i);
    else if (IS("revindex")) *out = tv_int((int64_t)(len - i));
    else if (IS("revindex0")) *out = tv_int((int64_t)(len - i - 1));
    else if (IS("first")) *out = tv_bool(i == 0);
    else if (IS("last")) *out = tv_bool(i + 1 == len);
    else if (IS("length")) *out = tv_int((int64_t)len);
    else if (IS("depth")) *out = tv_int(1);
    else if (IS("depth0")) *out = tv_int(0);
    else if (IS("previtem")) {
        *out = i > 0 ? tv_ref(l->items->v[i - 1]) : tv_undef_msg(UH_MSG, 0, "there is no previous item");
    } else if (IS("nextitem")) {
        *out = i + 1 < len ? tv_ref(l->items->v[i + 1]) : tv_undef_msg(UH_MSG, 0, "there is no next item");
    } else {
        bool unsafe;
        int id = rl__tpl_method_id(lv, name, n, &unsafe);
        if (id < 0) {
            *out = tv_undef_msg(UH_ATTR, rl__tpl_type_code(lv), NULL);
            return 0;
        }
        tpl_func *f = rl__tpl_func_new(c, FN_METHOD, (uint16_t)id);
        if (!f) return -1;
        f->self = tv_ref(lv);
        *out = tv_obj(TV_FUNC, 0, f);
    }
#undef IS
    return 0;
}

/* getattr as jinja2's sandbox: a method of the type first, then an item; unsafe
 * methods (list.append, dict.update, ...) give an Undefined that raises when used. */
static int getattr_impl(tpl_ctx *c, tpl_val obj, const char *name, size_t n, const char *hint,
                        tpl_val *out) {
    if (obj.t == TV_UNDEF) return rl__tpl_fail_undef(c, obj);
    if (obj.t == TV_LOOP) return loop_attr(c, obj, name, n, out);
    if (n >= 1 && name[0] == '_') {
        *out = tv_undef_msg(UH_ATTR, rl__tpl_type_code(obj), hint);
        return 0;
    }
    bool unsafe = false;
    int id = rl__tpl_method_id(obj, name, n, &unsafe);
    if (id >= 0) {
        if (unsafe) { /* calling it raises jinja2's SecurityError message */
            *out = tv_undef_msg(UH_MSG, 0, rl__tpl_method_unsafe_msg(id));
            return 0;
        }
        tpl_func *f = rl__tpl_func_new(c, FN_METHOD, (uint16_t)id);
        if (!f) return -1;
        f->self = tv_ref(obj);
        *out = tv_obj(TV_FUNC, 0, f);
        return 0;
    }
    if (obj.t == TV_DICT || obj.t == TV_NS) {
        tpl_val *v = rl__tpl_dict_find_str(TV_D(obj), name, n);
        if (v) {
            *out = tv_ref(*v);
            return 0;
        }
    }
    *out = tv_undef_msg(UH_ATTR, rl__tpl_type_code(obj), hint);
    return 0;
}

int rl__tpl_getattr(tpl_ctx *c, tpl_val obj, const tpl_str *name, tpl_val *out) {
    return getattr_impl(c, obj, name->s, name->len, name->s, out);
}

int rl__tpl_getattr_s(tpl_ctx *c, tpl_val obj, const char *name, size_t n, tpl_val *out) {
    return getattr_impl(c, obj, name, n, NULL, out);
}

static bool norm_index(int64_t *i, size_t n) {
    if (*i < 0) *i += (int64_t)n;
    return *i >= 0 && (uint64_t)*i < n;
}

int rl__tpl_getitem(tpl_ctx *c, tpl_val obj, tpl_val key, tpl_val *out) {
    if (obj.t == TV_UNDEF) return rl__tpl_fail_undef(c, obj);
    const char *hint = key.t == TV_STR && TV_S(key)->h.rc == TPL_IMMORTAL ? TV_S(key)->s : NULL;
    if (obj.t == TV_LIST && (obj.sub == LS_LIST || obj.sub == LS_TUPLE || obj.sub == LS_RANGE) && is_intlike(key)) {
        int64_t i = as_int(key);
        if (norm_index(&i, TV_L(obj)->n)) {
            *out = tv_ref(TV_L(obj)->v[i]);
            return 0;
        }
        *out = tv_undef_index(rl__tpl_type_code(obj), as_int(key));
        return 0;
    }
    if (obj.t == TV_STR && is_intlike(key)) {
        tpl_str *s = TV_S(obj);
        int64_t i = as_int(key);
        if (!norm_index(&i, s->ncp)) {
            *out = tv_undef_index(rl__tpl_type_code(obj), as_int(key));
            return 0;
        }
        size_t a = rl__tpl_cp_offset(s, i), b = a;
        rl__tpl_utf8_next(s->s, s->len, &b);
        tpl_str *r = rl__tpl_str_new(c, s->s + a, b - a);
        if (!r) return -1;
        *out = tv_obj(TV_STR, obj.sub, r);
        return 0;
    }
    if (obj.t == TV_DICT) {
        tpl_val *v;
        if (key.t == TV_LIST && key.sub != LS_TUPLE) {
            v = NULL;
        } else if (key.t == TV_DICT || key.t == TV_NS) {
            v = NULL;
        } else if (rl__tpl_dict_find(c, TV_D(obj), key, &v)) {
            return -1;
        }
        if (v) {
            *out = tv_ref(*v);
            return 0;
        }
    }
    if (key.t == TV_STR) {
        if (obj.t == TV_DICT) { /* only methods remain */
            bool unsafe;
            if (rl__tpl_method_id(obj, TV_S(key)->s, TV_S(key)->len, &unsafe) < 0) {
                *out = tv_undef_msg(UH_ATTR, rl__tpl_type_code(obj), hint);
                return 0;
            }
        }
        return getattr_impl(c, obj, TV_S(key)->s, TV_S(key)->len, hint, out);
    }
    *out = is_intlike(key) ? tv_undef_index(rl__tpl_type_code(obj), as_int(key))
                           : tv_undef_msg(UH_ELEM, rl__tpl_type_code(obj), NULL);
    return 0;
}

/* Python slice index adjustment (PySlice_AdjustIndices). */
static size_t slice_indices(int64_t len, bool has_start, int64_t start, bool has_stop, int64_t stop,
                            int64_t step, int64_t *ostart, int64_t *ostop) {
    int64_t lower = step > 0 ? 0 : -1, upper = step > 0 ? len : len - 1;
    if (!has_start) start = step < 0 ? upper : lower;
    else {
        if (start < 0) start += len;
        if (start < lower) start = lower;
        else if (start > upper) start = upper;
    }
    if (!has_stop) stop = step < 0 ? lower : upper;
    else {
        if (stop < 0) stop += len;
        if (stop < lower) stop = lower;
        else if (stop > upper) stop = upper;
    }
    *ostart = start;
    *ostop = stop;
    if (step > 0) return stop > start ? (size_t)((stop - start - 1) / step + 1) : 0;
    return start > stop ? (size_t)((start - stop - 1) / (-step) + 1) : 0;
}

/* x[a:b:c]: jinja2 compiles slices to plain Python subscription (no sandbox getitem),
 * so errors are Python's; while folding constants it goes through getitem, where a type
 * error gives Undefined. */
static int do_slice(tpl_ctx *c, tpl_val obj, tpl_val a, tpl_val b, tpl_val s, tpl_val *out) {
    if (obj.t == TV_UNDEF) return rl__tpl_fail_undef(c, obj);
    bool seq = obj.t == TV_STR || (obj.t == TV_LIST && (obj.sub == LS_LIST || obj.sub == LS_TUPLE || obj.sub == LS_RANGE));
    bool idx_ok = (a.t == TV_NONE || is_intlike(a)) && (b.t == TV_NONE || is_intlike(b)) &&
                  (s.t == TV_NONE || is_intlike(s));
    if (c->folding && (!seq || !idx_ok)) {
        *out = tv_undef_msg(UH_ELEM, rl__tpl_type_code(obj), NULL);
        return 0;
    }
    if (obj.t == TV_DICT) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "unhashable type: 'slice'");
    if (!seq)
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "'%s' object is not subscriptable", rl__tpl_type_name(obj));
    bool ok = (a.t == TV_NONE || is_intlike(a)) && (b.t == TV_NONE || is_intlike(b)) &&
              (s.t == TV_NONE || is_intlike(s));
    if (!ok)
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG,
                            "slice indices must be integers or None or have an __index__ method");
    int64_t step = s.t == TV_NONE ? 1 : as_int(s);
    if (step == 0) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "slice step cannot be zero");
    if (step == INT64_MIN) step = -INT64_MAX;
    int64_t len = obj.t == TV_STR ? (int64_t)TV_S(obj)->ncp : (int64_t)TV_L(obj)->n;
    int64_t start, stop;
    size_t cnt = slice_indices(len, a.t != TV_NONE, a.t == TV_NONE ? 0 : as_int(a), b.t != TV_NONE,
                               b.t == TV_NONE ? 0 : as_int(b), step, &start, &stop);
    if (obj.t == TV_STR) {
        tpl_str *str = TV_S(obj);
        if (step == 1) {
            size_t x = rl__tpl_cp_offset(str, start), y = rl__tpl_cp_offset(str, start + (int64_t)cnt);
            tpl_str *r = rl__tpl_str_new(c, str->s + x, y - x);
            if (!r) return -1;
            *out = tv_obj(TV_STR, obj.sub, r);
            return rl__tpl_charge(c, (y - x) / 4096);
        }
        /* general step: collect code point offsets */
        size_t *offs = rl__tpl_alloc(c, (str->ncp + 1) * sizeof(size_t));
        if (!offs) return -1;
        size_t k = 0;
        for (size_t i = 0; i < str->len; i++)
            if (((unsigned char)str->s[i] & 0xC0) != 0x80) offs[k++] = i;
        offs[k] = str->len;
        tpl_sb sb;
        rl__tpl_sb_init(&sb);
        int r = 0;
        for (size_t j = 0; j < cnt && !r; j++) {
            int64_t idx = start + (int64_t)j * step;
            r = rl__tpl_sb_add(c, &sb, str->s + offs[idx], offs[idx + 1] - offs[idx]);
        }
        rl__tpl_dealloc(c, offs, (str->ncp + 1) * sizeof(size_t));
        if (r) return rl__tpl_sb_drop(c, &sb), -1;
        tpl_str *rs = rl__tpl_sb_finish(c, &sb);
        if (!rs) return -1;
        *out = tv_obj(TV_STR, obj.sub, rs);
        return 0;
    }
    tpl_list *l = TV_L(obj);
    tpl_list *r = rl__tpl_list_new(c, TV_LIST, cnt);
    if (!r) return -1;
    for (size_t j = 0; j < cnt; j++) r->v[r->n++] = tv_ref(l->v[start + (int64_t)j * step]);
    if (obj.sub == LS_RANGE) { /* range(a, b, s)[i:j:k] is range(a+i*s, a+j*s, s*k) */
        r->rstart = l->rstart + start * l->rstep;
        r->rstop = l->rstart + stop * l->rstep;
        r->rstep = l->rstep * step;
    }
    *out = tv_obj(TV_LIST, obj.sub, r);
    return rl__tpl_charge(c, cnt / 16);
}

/* ---- calls --------------------------------------------------------------------- */

/* Arguments of one call: a few inline, more on the heap (keeps ev's frames small, which
 * bounds the C stack a deeply nested template can take). */
#define INLINE_ARGS 6
typedef struct argbuf {
    tpl_args a;
    tpl_val pos_in[INLINE_ARGS], kwv_in[INLINE_ARGS];
    const tpl_str *kwn_in[INLINE_ARGS];
    uint32_t cap_pos, cap_kw;
} argbuf;

static void args_drop(tpl_ctx *c, argbuf *ab) {
    for (uint32_t i = 0; i < ab->a.npos; i++) rl__tpl_decref(c, ab->a.pos[i]);
    for (uint32_t i = 0; i < ab->a.nkw; i++) rl__tpl_decref(c, ab->a.kwv[i]);
    if (ab->a.pos != ab->pos_in) rl__tpl_dealloc(c, ab->a.pos, ab->cap_pos * sizeof(tpl_val));
    if (ab->a.kwv != ab->kwv_in) {
        rl__tpl_dealloc(c, ab->a.kwv, ab->cap_kw * sizeof(tpl_val));
        rl__tpl_dealloc(c, (void *)ab->a.kwn, ab->cap_kw * sizeof(tpl_str *));
    }
    ab->a.pos = ab->pos_in;
    ab->a.kwv = ab->kwv_in;
    ab->a.kwn = ab->kwn_in;
    ab->a.npos = ab->a.nkw = 0;
}

/* extra: room for one more keyword argument (a call block's caller). */
static int eval_args(tpl_ctx *c, tpl_scope *sc, const tpl_node *n, argbuf *ab, uint32_t extra) {
    ab->a.pos = ab->pos_in;
    ab->a.kwv = ab->kwv_in;
    ab->a.kwn = ab->kwn_in;
    ab->a.npos = ab->a.nkw = 0;
    ab->cap_pos = n->l1.n;
    ab->cap_kw = n->l2.n + extra;
    if (n->l1.n > MAX_CALL_ARGS || n->l2.n > MAX_CALL_ARGS)
        return rl__tpl_fail(c, RL_ERR_LIMIT, "too many arguments in a call (limit %d)", MAX_CALL_ARGS);
    if (ab->cap_pos > INLINE_ARGS) {
        ab->a.pos = rl__tpl_alloc(c, ab->cap_pos * sizeof(tpl_val));
        if (!ab->a.pos) return ab->a.pos = ab->pos_in, -1;
    }
    if (ab->cap_kw > INLINE_ARGS) {
        tpl_val *kv = rl__tpl_alloc(c, ab->cap_kw * sizeof(tpl_val));
        const tpl_str **kn = kv ? rl__tpl_alloc(c, ab->cap_kw * sizeof(tpl_str *)) : NULL;
        if (!kn) {
            rl__tpl_dealloc(c, kv, ab->cap_kw * sizeof(tpl_val));
            args_drop(c, ab);
            return -1;
        }
        ab->a.kwv = kv;
        ab->a.kwn = kn;
    }
    for (uint32_t i = 0; i < n->l1.n; i++) {
        if (ev(c, sc, n->l1.v[i], &ab->a.pos[ab->a.npos])) {
            args_drop(c, ab);
            return -1;
        }
        ab->a.npos++;
    }
    for (uint32_t i = 0; i < n->l2.n; i++) {
        if (ev(c, sc, n->l2.v[i], &ab->a.kwv[ab->a.nkw])) {
            args_drop(c, ab);
            return -1;
        }
        ab->a.kwn[ab->a.nkw] = n->names[i];
        ab->a.nkw++;
    }
    return 0;
}

int rl__tpl_bind(tpl_ctx *c, const char *fname, const char *const *params, int np,
                 const tpl_args *a, tpl_val *slots, uint32_t *nvar) {
    for (int i = 0; i < np; i++) slots[i] = tv_missing();
    uint32_t npos = a->npos;
    if ((int)npos > np) {
        if (!nvar)
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%s() takes at most %d argument(s) (%u given)", fname,
                                np, npos);
        *nvar = npos - (uint32_t)np;
        npos = (uint32_t)np;
    } else if (nvar) {
        *nvar = 0;
    }
    for (uint32_t i = 0; i < npos; i++) slots[i] = a->pos[i];
    for (uint32_t k = 0; k < a->nkw; k++) {
        int j;
        for (j = 0; j < np; j++)
            if (strcmp(params[j], a->kwn[k]->s) == 0) break;
        if (j == np)
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%s() got an unexpected keyword argument '%s'", fname,
                                a->kwn[k]->s);
        if (tv_given(slots[j]))
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%s() got multiple values for argument '%s'", fname,
                                params[j]);
        slots[j] = a->kwv[k];
    }
    return 0;
}

static int capture(tpl_ctx *c, tpl_scope *sc, const tpl_nodes *body, tpl_val *out) {
    tpl_sb *saved = c->out;
    tpl_sb sb;
    rl__tpl_sb_init(&sb);
    c->out = &sb;
    int r = ex_body(c, sc, body);
    c->out = saved;
    if (r < 0) return rl__tpl_sb_drop(c, &sb), -1;
    tpl_str *s = rl__tpl_sb_finish(c, &sb);
    if (!s) return -1;
    *out = tv_obj(TV_STR, 0, s);
    return 0;
}

static int call_macro(tpl_ctx *c, tpl_func *f, const tpl_args *a, tpl_val *out) {
    const tpl_node *m = f->node;
    const char *mname = m->kind == N_MACRO ? m->name->s : "caller";
    if (c->depth >= c->lim.max_depth)
        return rl__tpl_fail(c, RL_ERR_LIMIT, "macro calls nested deeper than %d", c->lim.max_depth);
    tpl_scope *s = rl__tpl_scope_new(c, f->closure);
    if (!s) return -1;
    int rc = -1;
    uint32_t np = m->nnames, nd = m->l2.n;
    tpl_list *varargs = NULL;
    tpl_dict *kwargs = NULL;
    bool *set = rl__tpl_alloc(c, np + 1);
    if (!set) goto done;
    memset(set, 0, np + 1);
    for (uint32_t i = 0; i < a->npos; i++) {
        if (i < np) {
            if (rl__tpl_scope_set(c, s, m->names[i], tv_ref(a->pos[i]))) goto done;
            set[i] = true;
        } else if (m->op & MF_VARARGS) {
            if (!varargs && !(varargs = rl__tpl_list_new(c, TV_LIST, 0))) goto done;
            if (rl__tpl_list_push(c, varargs, tv_ref(a->pos[i]))) goto done;
        } else {
            rl__tpl_fail(c, RL_ERR_INVALID_ARG, "macro '%s' takes not more than %u argument(s)", mname, np);
            goto done;
        }
    }
    for (uint32_t k = 0; k < a->nkw; k++) {
        uint32_t j;
        for (j = 0; j < np; j++)
            if (m->names[j] == a->kwn[k] || strcmp(m->names[j]->s, a->kwn[k]->s) == 0) break;
        if (j < np) {
            if (set[j]) {
                rl__tpl_fail(c, RL_ERR_INVALID_ARG, "macro '%s' got multiple values for argument '%s'", mname,
                             m->names[j]->s);
                goto done;
            }
            if (rl__tpl_scope_set(c, s, m->names[j], tv_ref(a->kwv[k]))) goto done;
            set[j] = true;
        } else if (strcmp(a->kwn[k]->s, "caller") == 0 && (m->op & MF_CALLER)) {
            if (rl__tpl_scope_set(c, s, a->kwn[k], tv_ref(a->kwv[k]))) goto done;
        } else if (m->op & MF_KWARGS) {
            if (!kwargs && !(kwargs = rl__tpl_dict_new(c, TV_DICT))) goto done;
            if (rl__tpl_dict_set(c, kwargs, tv_obj(TV_STR, 0, (void *)a->kwn[k]), tv_ref(a->kwv[k]))) goto done;
        } else {
            rl__tpl_fail(c, RL_ERR_INVALID_ARG, "macro '%s' takes no keyword argument '%s'", mname, a->kwn[k]->s);
            goto done;
        }
    }
    for (uint32_t i = 0; i < np; i++) {
        if (set[i]) continue;
        tpl_val v;
        if (i + nd >= np) {
            if (ev(c, s, m->l2.v[i + nd - np], &v)) goto done;
        } else {
            v = tv_undef_msg(UH_NAME, 0, m->names[i]->s);
        }
        if (rl__tpl_scope_set(c, s, m->names[i], v)) goto done;
    }
    if ((m->op & MF_VARARGS) && c->n_varargs) {
        if (!varargs && !(varargs = rl__tpl_list_new(c, TV_LIST, 0))) goto done;
        tpl_list *vl = varargs;
        varargs = NULL;
        if (rl__tpl_scope_set(c, s, c->n_varargs, tv_obj(TV_LIST, LS_TUPLE, vl))) goto done;
    }
    if ((m->op & MF_KWARGS) && c->n_kwargs) {
        if (!kwargs && !(kwargs = rl__tpl_dict_new(c, TV_DICT))) goto done;
        tpl_dict *kd = kwargs;
        kwargs = NULL;
        if (rl__tpl_scope_set(c, s, c->n_kwargs, tv_obj(TV_DICT, 0, kd))) goto done;
    }
    if ((m->op & MF_CALLER) && c->n_caller && !rl__tpl_scope_find(s, c->n_caller)) {
        /* not given: jinja2 leaves an Undefined named caller */
        bool local = false;
        for (size_t i = 0; i < s->n; i++) local |= s->names[i] == c->n_caller;
        if (!local && rl__tpl_scope_set(c, s, c->n_caller, tv_undef_msg(UH_MSG, 0, "No caller defined")))
            goto done;
    }
    c->depth++;
    rc = capture(c, s, &m->l1, out);
    c->depth--;
done:
    if (set) rl__tpl_dealloc(c, set, np + 1);
    if (varargs) rl__tpl_obj_decref(c, &varargs->h);
    if (kwargs) rl__tpl_obj_decref(c, &kwargs->h);
    rl__tpl_obj_decref(c, &s->h);
    return rc;
}

static int int_arg(tpl_ctx *c, tpl_val v, int64_t *out) {
    if (!is_intlike(v))
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "'%s' object cannot be interpreted as an integer",
                            rl__tpl_type_name(v));
    *out = as_int(v);
    return 0;
}

static int dict_from_args(tpl_ctx *c, const tpl_args *a, uint8_t kind, const char *fname, tpl_val *out) {
    tpl_dict *d = rl__tpl_dict_new(c, kind);
    if (!d) return -1;
    if (a->npos > 1) {
        rl__tpl_obj_decref(c, &d->h);
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%s expected at most 1 argument, got %u", fname, a->npos);
    }
    if (a->npos == 1) {
        tpl_val src = a->pos[0];
        if (src.t == TV_DICT || src.t == TV_NS) {
            for (size_t i = 0; i < TV_D(src)->n; i++)
                if (rl__tpl_dict_set(c, d, tv_ref(TV_D(src)->k[i]), tv_ref(TV_D(src)->v[i])))
                    goto fail;
        } else {
            tpl_list *l;
            if (rl__tpl_iterate(c, src, &l)) goto fail;
            for (size_t i = 0; i < l->n; i++) {
                tpl_val p = l->v[i];
                if (p.t != TV_LIST || TV_L(p)->n != 2) {
                    rl__tpl_obj_decref(c, &l->h);
                    rl__tpl_fail(c, RL_ERR_INVALID_ARG,
                                 "dictionary update sequence element #%zu has the wrong length", i);
                    goto fail;
                }
                if (rl__tpl_dict_set(c, d, tv_ref(TV_L(p)->v[0]), tv_ref(TV_L(p)->v[1]))) {
                    rl__tpl_obj_decref(c, &l->h);
                    goto fail;
                }
            }
            rl__tpl_obj_decref(c, &l->h);
        }
    }
    for (uint32_t k = 0; k < a->nkw; k++)
        if (rl__tpl_dict_set(c, d, tv_obj(TV_STR, 0, (void *)a->kwn[k]), tv_ref(a->kwv[k]))) goto fail;
    *out = tv_obj(kind, 0, d);
    return 0;
fail:
    rl__tpl_obj_decref(c, &d->h);
    return -1;
}

static int call_builtin(tpl_ctx *c, int id, const tpl_args *a, tpl_val *out) {
    switch (id) {
    case B_RANGE: {
        if (a->nkw) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "range() takes no keyword arguments");
        if (a->npos < 1 || a->npos > 3)
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "range expected 1 to 3 arguments, got %u", a->npos);
        int64_t start = 0, stop = 0, step = 1;
        if (a->npos == 1) {
            if (int_arg(c, a->pos[0], &stop)) return -1;
        } else {
            if (int_arg(c, a->pos[0], &start) || int_arg(c, a->pos[1], &stop)) return -1;
            if (a->npos == 3 && int_arg(c, a->pos[2], &step)) return -1;
        }
        if (step == 0) return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "range() arg 3 must not be zero");
        double len = step > 0 ? (stop > start ? ceil(((double)stop - (double)start) / (double)step) : 0)
                              : (start > stop ? ceil(((double)start - (double)stop) / (double)-step) : 0);
        if (len > 100000)
            return rl__tpl_fail(c, RL_ERR_LIMIT,
                                "Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
        tpl_list *l = rl__tpl_list_new(c, TV_LIST, (size_t)len);
        if (!l) return -1;
        for (size_t i = 0; i < (size_t)len; i++) l->v[l->n++] = tv_int(start + (int64_t)i * step);
        l->rstart = start;
        l->rstop = stop;
        l->rstep = step;
        *out = tv_obj(TV_LIST, LS_RANGE, l);
        return rl__tpl_charge(c, l->n / 16);
    }
    case B_NAMESPACE: return dict_from_args(c, a, TV_NS, "namespace", out);
    case B_DICT: return dict_from_args(c, a, TV_DICT, "dict", out);
    case B_RAISE: {
        tpl_sb sb;
        rl__tpl_sb_init(&sb);
        if (a->npos >= 1 && rl__tpl_to_str(c, &sb, a->pos[0])) return rl__tpl_sb_drop(c, &sb), -1;
        if (rl__tpl_sb_addc(c, &sb, 0)) return rl__tpl_sb_drop(c, &sb), -1;
        rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%s", sb.s->s);
        rl__tpl_sb_drop(c, &sb);
        return -1;
    }
    case B_STRFTIME: {
        if (a->npos != 1 || a->pos[0].t != TV_STR)
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "strftime_now() takes one format string");
        tpl_str *fmt = TV_S(a->pos[0]);
        if (fmt->len > 1024 || memchr(fmt->s, 0, fmt->len))
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "strftime_now(): bad format string");
        size_t cap = 256 + fmt->len * 64;
        char *buf = rl__tpl_alloc(c, cap);
        if (!buf) return -1;
        size_t n = fmt->len ? strftime(buf, cap, fmt->s, &c->now) : 0;
        tpl_str *s = rl__tpl_str_new(c, buf, n);
        rl__tpl_dealloc(c, buf, cap);
        if (!s) return -1;
        *out = tv_obj(TV_STR, 0, s);
        return 0;
    }
    default: return rl__tpl_fail(c, RL_ERR_UNSUPPORTED, "unsupported global function");
    }
}

int rl__tpl_call_value(tpl_ctx *c, tpl_val f, const tpl_args *a, tpl_val *out) {
    if (f.t == TV_UNDEF) return rl__tpl_fail_undef(c, f);
    if (f.t != TV_FUNC)
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "'%s' object is not callable", rl__tpl_type_name(f));
    tpl_func *fn = TV_F(f);
    switch (fn->fk) {
    case FN_MACRO: case FN_CALLER: return call_macro(c, fn, a, out);
    case FN_BUILTIN: return call_builtin(c, fn->id, a, out);
    case FN_METHOD:
        return rl__tpl_call_method(c, fn->id, fn->self, a, out);
    default: return rl__tpl_fail(c, RL_ERR_INTERNAL, "bad callable");
    }
}

static int ev_call(tpl_ctx *c, tpl_scope *sc, const tpl_node *n, tpl_val *out, tpl_val extra_caller) {
    argbuf ab;
    const tpl_node *callee = n->a;
    tpl_val fv;
    if (callee->kind == N_GETATTR) {
        tpl_val obj;
        if (ev(c, sc, callee->a, &obj)) return -1;
        c->line = n->line;
        bool unsafe = false;
        int id = obj.t == TV_UNDEF || obj.t == TV_LOOP ? -1
                                                      : rl__tpl_method_id(obj, callee->name->s, callee->name->len, &unsafe);
        if (id >= 0 && !unsafe && extra_caller.t == TV_UNDEF && callee->name->s[0] != '_') {
            if (eval_args(c, sc, n, &ab, 0)) {
                rl__tpl_decref(c, obj);
                return -1;
            }
            c->line = n->line;
            int r = rl__tpl_call_method(c, id, obj, &ab.a, out);
            args_drop(c, &ab);
            rl__tpl_decref(c, obj);
            return r;
        }
        int r = rl__tpl_getattr(c, obj, callee->name, &fv);
        rl__tpl_decref(c, obj);
        if (r) return -1;
    } else {
        if (ev(c, sc, callee, &fv)) return -1;
    }
    if (eval_args(c, sc, n, &ab, extra_caller.t == TV_FUNC)) {
        rl__tpl_decref(c, fv);
        return -1;
    }
    if (extra_caller.t == TV_FUNC) {
        if (!c->n_caller) {
            args_drop(c, &ab);
            rl__tpl_decref(c, fv);
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "cannot pass caller");
        }
        ab.a.kwn[ab.a.nkw] = c->n_caller;
        ab.a.kwv[ab.a.nkw++] = tv_ref(extra_caller);
    }
    c->line = n->line;
    int r = rl__tpl_call_value(c, fv, &ab.a, out);
    args_drop(c, &ab);
    rl__tpl_decref(c, fv);
    return r;
}

static int run_filter(tpl_ctx *c, tpl_scope *sc, const tpl_node *f, tpl_val in, tpl_val *out) {
    if (f->id == 0xffff) return rl__tpl_fail(c, RL_ERR_BAD_FILE, "No filter named '%s' found.", f->name->s);
    argbuf ab;
    if (eval_args(c, sc, f, &ab, 0)) return -1;
    c->line = f->line;
    int r = rl__tpl_call_filter(c, f->id, in, &ab.a, out);
    args_drop(c, &ab);
    return r;
}

/* Filter chain of a filter block or block set: the innermost filter has no input node. */
static int apply_chain(tpl_ctx *c, tpl_scope *sc, const tpl_node *f, tpl_val in, tpl_val *out) {
    tpl_val inner;
    if (f->a) {
        if (enter(c, f)) return -1;
        int r = apply_chain(c, sc, f->a, in, &inner);
        c->nest--;
        if (r) return -1;
    } else {
        inner = tv_ref(in);
    }
    int r = run_filter(c, sc, f, inner, out);
    rl__tpl_decref(c, inner);
    return r;
}

/* ---- expressions ----------------------------------------------------------------- */

static __attribute__((noinline)) int ev_test(tpl_ctx *c, tpl_scope *sc, const tpl_node *n, tpl_val *out) {
    if (n->id == 0xffff) return rl__tpl_fail(c, RL_ERR_BAD_FILE, "No test named '%s' found.", n->name->s);
    tpl_val in;
    if (ev(c, sc, n->a, &in)) return -1;
    argbuf ab;
    if (eval_args(c, sc, n, &ab, 0)) {
        rl__tpl_decref(c, in);
        return -1;
    }
    bool res;
    c->line = n->line;
    int r = rl__tpl_call_test(c, n->id, in, &ab.a, &res);
    args_drop(c, &ab);
    rl__tpl_decref(c, in);
    if (!r) *out = tv_bool(res);
    return r;
}

static int ev_list(tpl_ctx *c, tpl_scope *sc, const tpl_nodes *items, uint8_t sub, tpl_val *out) {
    tpl_list *l = rl__tpl_list_new(c, TV_LIST, items->n);
    if (!l) return -1;
    for (uint32_t i = 0; i < items->n; i++) {
        if (ev(c, sc, items->v[i], &l->v[i])) {
            rl__tpl_obj_decref(c, &l->h);
            return -1;
        }
        l->n++;
    }
    *out = tv_obj(TV_LIST, sub, l);
    return 0;
}

static int ev_node(tpl_ctx *c, tpl_scope *sc, const tpl_node *n, tpl_val *out) {
    /* while folding, anything not constant means "cannot fold": -1 with no error set */
    if (c->folding && !(n->cst & CST_CONST)) return -1;
    switch (n->kind) {
    case N_CONST:
        *out = n->k;
        return 0;
    case N_NAME: {
        tpl_val *v = rl__tpl_scope_find(sc, n->name);
        *out = v ? tv_ref(*v) : tv_undef_msg(UH_NAME, 0, n->name->s);
        return 0;
    }
    case N_LIST: return ev_list(c, sc, &n->l1, LS_LIST, out);
    case N_TUPLE: return ev_list(c, sc, &n->l1, LS_TUPLE, out);
    case N_DICT: {
        tpl_dict *d = rl__tpl_dict_new(c, TV_DICT);
        if (!d) return -1;
        for (uint32_t i = 0; i < n->l1.n; i++) {
            tpl_val k, v;
            if (ev(c, sc, n->l1.v[i], &k)) goto dfail;
            if (ev(c, sc, n->l2.v[i], &v)) {
                rl__tpl_decref(c, k);
                goto dfail;
            }
            if (rl__tpl_dict_set(c, d, k, v)) goto dfail;
        }
        *out = tv_obj(TV_DICT, 0, d);
        return 0;
    dfail:
        rl__tpl_obj_decref(c, &d->h);
        return -1;
    }
    case N_GETATTR: {
        tpl_val obj;
        if (ev(c, sc, n->a, &obj)) return -1;
        c->line = n->line;
        int r = rl__tpl_getattr(c, obj, n->name, out);
        rl__tpl_decref(c, obj);
        return r;
    }
    case N_GETITEM: {
        tpl_val obj, key;
        if (ev(c, sc, n->a, &obj)) return -1;
        if (ev(c, sc, n->b, &key)) {
            rl__tpl_decref(c, obj);
            return -1;
        }
        c->line = n->line;
        int r = rl__tpl_getitem(c, obj, key, out);
        rl__tpl_decref(c, obj);
        rl__tpl_decref(c, key);
        return r;
    }
    case N_SLICE: {
        tpl_val obj, v[3] = {tv_none(), tv_none(), tv_none()};
        const tpl_node *parts[3] = {n->b, n->c, n->d};
        if (ev(c, sc, n->a, &obj)) return -1;
        int r = 0;
        for (int i = 0; i < 3 && !r; i++)
            if (parts[i]) r = ev(c, sc, parts[i], &v[i]);
        if (!r) {
            c->line = n->line;
            r = do_slice(c, obj, v[0], v[1], v[2], out);
        }
        rl__tpl_decref(c, obj);
        for (int i = 0; i < 3; i++) rl__tpl_decref(c, v[i]);
        return r;
    }
    case N_CALL: return ev_call(c, sc, n, out, tv_undef());
    case N_FILTER: {
        tpl_val in;
        if (!n->a) return rl__tpl_fail(c, RL_ERR_INTERNAL, "filter without input");
        if (ev(c, sc, n->a, &in)) return -1;
        int r = run_filter(c, sc, n, in, out);
        rl__tpl_decref(c, in);
        return r;
    }
    case N_TEST: return ev_test(c, sc, n, out);
    case N_NEG: case N_POS: {
        tpl_val v;
        if (ev(c, sc, n->a, &v)) return -1;
        c->line = n->line;
        if (v.t == TV_UNDEF) return rl__tpl_fail_undef(c, v);
        if (is_intlike(v)) {
            int64_t x = as_int(v);
            if (n->kind == N_NEG && x == INT64_MIN) return overflow(c);
            *out = tv_int(n->kind == N_NEG ? -x : x);
            return 0;
        }
        if (v.t == TV_FLOAT) {
            *out = tv_float(n->kind == N_NEG ? -v.u.f : v.u.f);
            return 0;
        }
        int r = rl__tpl_fail(c, RL_ERR_INVALID_ARG, "bad operand type for unary %c: '%s'",
                             n->kind == N_NEG ? '-' : '+', rl__tpl_type_name(v));
        rl__tpl_decref(c, v);
        return r;
    }
    case N_BINOP: {
        tpl_val a, b;
        if (ev(c, sc, n->a, &a)) return -1;
        if (ev(c, sc, n->b, &b)) {
            rl__tpl_decref(c, a);
            return -1;
        }
        c->line = n->line;
        int r = rl__tpl_binop(c, n->op, a, b, out);
        rl__tpl_decref(c, a);
        rl__tpl_decref(c, b);
        return r;
    }
    case N_CONCAT: {
        tpl_sb sb;
        rl__tpl_sb_init(&sb);
        for (uint32_t i = 0; i < n->l1.n; i++) {
            tpl_val v;
            if (ev(c, sc, n->l1.v[i], &v)) return rl__tpl_sb_drop(c, &sb), -1;
            int r = rl__tpl_to_str(c, &sb, v);
            rl__tpl_decref(c, v);
            if (r) return rl__tpl_sb_drop(c, &sb), -1;
        }
        tpl_str *s = rl__tpl_sb_finish(c, &sb);
        if (!s) return -1;
        *out = tv_obj(TV_STR, 0, s);
        return 0;
    }
    case N_AND: case N_OR: {
        tpl_val a;
        if (ev(c, sc, n->a, &a)) return -1;
        bool t = rl__tpl_truthy(a);
        if ((n->kind == N_AND) != t) {
            *out = a;
            return 0;
        }
        rl__tpl_decref(c, a);
        return ev(c, sc, n->b, out);
    }
    case N_NOT: {
        tpl_val a;
        if (ev(c, sc, n->a, &a)) return -1;
        *out = tv_bool(!rl__tpl_truthy(a));
        rl__tpl_decref(c, a);
        return 0;
    }
    case N_COMPARE: {
        tpl_val left;
        if (ev(c, sc, n->a, &left)) return -1;
        bool res = true;
        for (uint32_t i = 0; i < n->l1.n && res; i++) {
            const tpl_node *o = n->l1.v[i];
            tpl_val right;
            if (ev(c, sc, o->a, &right)) {
                rl__tpl_decref(c, left);
                return -1;
            }
            c->line = o->line;
            int r = compare(c, o->op, left, right, &res);
            rl__tpl_decref(c, left);
            left = right;
            if (r) {
                rl__tpl_decref(c, left);
                return -1;
            }
        }
        rl__tpl_decref(c, left);
        *out = tv_bool(res);
        return 0;
    }
    case N_COND: {
        tpl_val t;
        if (ev(c, sc, n->a, &t)) return -1;
        bool yes = rl__tpl_truthy(t);
        rl__tpl_decref(c, t);
        if (yes) return ev(c, sc, n->b, out);
        if (n->c) return ev(c, sc, n->c, out);
        *out = tv_undef_msg(UH_MSG, 0, "the inline if-expression evaluated to false and no else section was defined.");
        return 0;
    }
    default: return rl__tpl_fail(c, RL_ERR_INTERNAL, "unexpected node %d in an expression", n->kind);
    }
}

/* ---- statements ------------------------------------------------------------------ */

static int assign(tpl_ctx *c, tpl_scope *sc, const tpl_node *t, tpl_val v) {
    switch (t->kind) {
    case N_NAME: return rl__tpl_scope_set(c, sc, t->name, v);
    case N_NSREF: {
        tpl_val *ns = rl__tpl_scope_find(sc, t->name);
        if (!ns || ns->t != TV_NS) {
            rl__tpl_decref(c, v);
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "cannot assign attribute on non-namespace object");
        }
        return rl__tpl_dict_set(c, TV_D(*ns), tv_obj(TV_STR, 0, (void *)t->name2), v);
    }
    case N_TUPLE: {
        tpl_list *items;
        int r = rl__tpl_iterate(c, v, &items);
        rl__tpl_decref(c, v);
        if (r) return -1;
        uint32_t want = t->l1.n;
        if (items->n != want) {
            size_t got = items->n;
            rl__tpl_obj_decref(c, &items->h);
            if (got < want)
                return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "not enough values to unpack (expected %u, got %zu)",
                                    want, got);
            return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "too many values to unpack (expected %u)", want);
        }
        for (uint32_t i = 0; i < want && !r; i++) r = assign(c, sc, t->l1.v[i], tv_ref(items->v[i]));
        rl__tpl_obj_decref(c, &items->h);
        return r;
    }
    default:
        rl__tpl_decref(c, v);
        return rl__tpl_fail(c, RL_ERR_INTERNAL, "bad assignment target");
    }
}

static tpl_loop *loop_new(tpl_ctx *c, tpl_list *items) {
    tpl_loop *l = rl__tpl_alloc(c, sizeof(tpl_loop));
    if (!l) return NULL;
    memset(l, 0, sizeof(*l));
    l->h.kind = TV_LOOP;
    l->h.rc = 1;
    l->items = items;
    items->h.rc++;
    l->changed_last = tv_none();
    rl__tpl_link(c, &l->h);
    return l;
}

static int ex_for(tpl_ctx *c, tpl_scope *sc, const tpl_node *n) {
    tpl_val it;
    if (ev(c, sc, n->b, &it)) return -1;
    c->line = n->line;
    tpl_list *items;
    int r = rl__tpl_iterate(c, it, &items);
    rl__tpl_decref(c, it);
    if (r) return -1;
    tpl_scope *ls = rl__tpl_scope_new(c, sc);
    if (!ls) goto fail;
    if (n->c) { /* for x in y if cond: filter first, loop.* counts what is left */
        tpl_list *kept = rl__tpl_list_new(c, TV_LIST, 0);
        if (!kept) goto fail;
        for (size_t i = 0; i < items->n; i++) {
            if (rl__tpl_charge(c, 1) || assign(c, ls, n->a, tv_ref(items->v[i]))) {
                rl__tpl_obj_decref(c, &kept->h);
                goto fail;
            }
            tpl_val cond;
            if (ev(c, ls, n->c, &cond)) {
                rl__tpl_obj_decref(c, &kept->h);
                goto fail;
            }
            bool keep = rl__tpl_truthy(cond);
            rl__tpl_decref(c, cond);
            if (keep && rl__tpl_list_push(c, kept, tv_ref(items->v[i]))) {
                rl__tpl_obj_decref(c, &kept->h);
                goto fail;
            }
        }
        rl__tpl_obj_decref(c, &items->h);
        items = kept;
    }
    {
        tpl_val lv = tv_undef();
        if (c->n_loop) {
            tpl_loop *lo = loop_new(c, items);
            if (!lo) goto fail;
            lv = tv_obj(TV_LOOP, 0, lo);
            if (rl__tpl_scope_set(c, ls, c->n_loop, lv)) goto fail;
        }
        /* jinja2 runs the else block unless some iteration finished its body: a
         * break or continue before the end leaves the "not iterated" flag set */
        bool completed = false;
        for (size_t i = 0; i < items->n; i++) {
            c->line = n->line;
            if (rl__tpl_charge(c, 1)) goto fail;
            if (lv.t == TV_LOOP) ((tpl_loop *)lv.u.o)->i = i;
            if (assign(c, ls, n->a, tv_ref(items->v[i]))) goto fail;
            int x = ex_body(c, ls, &n->l1);
            if (x < 0) goto fail;
            if (x == X_BREAK) break;
            if (x == X_OK) completed = true;
        }
        if (!completed && n->l2.n) {
            int x = ex_body(c, ls, &n->l2);
            if (x < 0) goto fail;
        }
    }
    rl__tpl_obj_decref(c, &items->h);
    rl__tpl_obj_decref(c, &ls->h);
    return X_OK;
fail:
    rl__tpl_obj_decref(c, &items->h);
    if (ls) rl__tpl_obj_decref(c, &ls->h);
    return -1;
}

/* {% with a = x, b = y %}: values from the enclosing scope, bound in a new one. */
static __attribute__((noinline)) int ex_with(tpl_ctx *c, tpl_scope *sc, const tpl_node *n) {
    if (n->l2.n > MAX_CALL_ARGS) return rl__tpl_fail(c, RL_ERR_LIMIT, "too many with targets");
    tpl_scope *ws = rl__tpl_scope_new(c, sc);
    if (!ws) return -1;
    int r = 0;
    tpl_val vals[MAX_CALL_ARGS];
    uint32_t nv = 0;
    for (uint32_t i = 0; i < n->l2.n && !r; i++) {
        r = ev(c, sc, n->l2.v[i]->b, &vals[i]);
        if (!r) nv++;
    }
    for (uint32_t i = 0; i < nv; i++) {
        if (!r) r = assign(c, ws, n->l2.v[i]->a, vals[i]);
        else rl__tpl_decref(c, vals[i]);
    }
    if (!r) r = ex_body(c, ws, &n->l1);
    rl__tpl_obj_decref(c, &ws->h);
    return r;
}

static int output(tpl_ctx *c, tpl_val v) {
    if (v.t == TV_STR) return rl__tpl_sb_add(c, c->out, TV_S(v)->s, TV_S(v)->len);
    return rl__tpl_to_str(c, c->out, v);
}

static int ex_node(tpl_ctx *c, tpl_scope *sc, const tpl_node *n) {
    switch (n->kind) {
    case N_TEXT: return rl__tpl_sb_add(c, c->out, TV_S(n->k)->s, TV_S(n->k)->len);
    case N_OUTPUT: {
        tpl_val v;
        int r;
        if ((n->a->cst & CST_SLICE) && !c->folding) {
            if (enter(c, n->a)) return -1;
            r = ev_folded(c, sc, n->a, &v, true);
            c->nest--;
        } else {
            r = ev(c, sc, n->a, &v);
        }
        if (r) return -1;
        r = output(c, v);
        rl__tpl_decref(c, v);
        return r;
    }
    case N_IF: {
        tpl_val t;
        if (ev(c, sc, n->a, &t)) return -1;
        bool yes = rl__tpl_truthy(t);
        rl__tpl_decref(c, t);
        return ex_body(c, sc, yes ? &n->l1 : &n->l2);
    }
    case N_FOR: return ex_for(c, sc, n);
    case N_SET: {
        tpl_val v;
        if (ev(c, sc, n->b, &v)) return -1;
        c->line = n->line;
        return assign(c, sc, n->a, v);
    }
    case N_SETBLOCK: {
        tpl_scope *bs = rl__tpl_scope_new(c, sc);
        if (!bs) return -1;
        tpl_val v;
        int r = capture(c, bs, &n->l1, &v);
        rl__tpl_obj_decref(c, &bs->h);
        if (r) return -1;
        if (n->b) {
            tpl_val f;
            r = apply_chain(c, sc, n->b, v, &f);
            rl__tpl_decref(c, v);
            if (r) return -1;
            v = f;
        }
        c->line = n->line;
        return assign(c, sc, n->a, v);
    }
    case N_MACRO: {
        tpl_func *f = rl__tpl_func_new(c, FN_MACRO, 0);
        if (!f) return -1;
        f->node = n;
        f->closure = sc;
        sc->h.rc++;
        return rl__tpl_scope_set(c, sc, n->name, tv_obj(TV_FUNC, 0, f));
    }
    case N_CALLBLOCK: {
        tpl_func *f = rl__tpl_func_new(c, FN_CALLER, 0);
        if (!f) return -1;
        f->node = n;
        f->closure = sc;
        sc->h.rc++;
        tpl_val fv = tv_obj(TV_FUNC, 0, f), res;
        int r = ev_call(c, sc, n->a, &res, fv);
        rl__tpl_decref(c, fv);
        if (r) return -1;
        r = output(c, res);
        rl__tpl_decref(c, res);
        return r;
    }
    case N_FILTERBLOCK: {
        tpl_scope *bs = rl__tpl_scope_new(c, sc);
        if (!bs) return -1;
        tpl_val v, f;
        int r = capture(c, bs, &n->l1, &v);
        rl__tpl_obj_decref(c, &bs->h);
        if (r) return -1;
        r = apply_chain(c, sc, n->a, v, &f);
        rl__tpl_decref(c, v);
        if (r) return -1;
        r = output(c, f);
        rl__tpl_decref(c, f);
        return r;
    }
    case N_WITH: return ex_with(c, sc, n);
    case N_SCOPE_BODY: {
        tpl_scope *bs = rl__tpl_scope_new(c, sc);
        if (!bs) return -1;
        int r = ex_body(c, bs, &n->l1);
        rl__tpl_obj_decref(c, &bs->h);
        return r < 0 ? -1 : X_OK;
    }
    case N_BREAK: return X_BREAK;
    case N_CONTINUE: return X_CONTINUE;
    default: return rl__tpl_fail(c, RL_ERR_INTERNAL, "unexpected node %d in a statement", n->kind);
    }
}

static int ex_body(tpl_ctx *c, tpl_scope *sc, const tpl_nodes *b) {
    for (uint32_t i = 0; i < b->n; i++) {
        int r = ex(c, sc, b->v[i]);
        if (r != X_OK) return r;
    }
    return X_OK;
}

/* ---- entry -------------------------------------------------------------------------- */

int rl__tpl_add_builtins(tpl_ctx *c, tpl_scope *top);
int rl__tpl_add_builtins(tpl_ctx *c, tpl_scope *top) {
    static const struct {
        const char *name;
        int id;
    } B[] = {{"range", B_RANGE},       {"namespace", B_NAMESPACE},      {"dict", B_DICT},
             {"raise_exception", B_RAISE}, {"strftime_now", B_STRFTIME}};
    for (size_t i = 0; i < RL_ARRAY_LEN(B); i++) {
        const tpl_str *nm = rl__tpl_lookup_name(c->prog, B[i].name, strlen(B[i].name));
        if (!nm) continue;
        tpl_func *f = rl__tpl_func_new(c, FN_BUILTIN, (uint16_t)B[i].id);
        if (!f) return -1;
        if (rl__tpl_scope_set(c, top, nm, tv_obj(TV_FUNC, 0, f))) return -1;
    }
    return 0;
}

int rl__tpl_run(tpl_ctx *c, tpl_scope *top);
int rl__tpl_run(tpl_ctx *c, tpl_scope *top) {
    int r = ex_body(c, top, &c->prog->body);
    return r < 0 ? -1 : 0;
}
