/*
 * value.c - the value model of the template interpreter: allocation with a memory
 * limit, reference counting with an iterative free (no deep recursion on long chains),
 * strings, lists, dicts, scopes, and the Python semantics templates rely on: truthiness,
 * equality and ordering across int/float/bool, str() and repr() (repr of lists and
 * dicts is what `{{ some_list }}` prints), float repr with the shortest round-trip digits.
 */
#include "template/tpl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <utf8proc.h>

#define MAX_REPR_DEPTH 512

int rl__tpl_fail(tpl_ctx *c, rl_status st, const char *fmt, ...) {
    if (c->status != RL_OK) return -1;
    c->status = st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
    va_end(ap);
    rl__fmt(c->err, c->err_size, "line %u: %s", c->line, c->msg);
    return -1;
}

int rl__tpl_gen_raise(tpl_ctx *c, const tpl_list *g) {
    if (!g->err) return 0;
    return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%s", g->err->s);
}

int rl__tpl_charge(tpl_ctx *c, uint64_t n) {
    c->steps += n;
    if (c->steps > c->lim.max_steps)
        return rl__tpl_fail(c, RL_ERR_LIMIT, "template ran too long (more than %llu steps)",
                            (unsigned long long)c->lim.max_steps);
    return 0;
}

/* ---- memory ---------------------------------------------------------------- */

/* Each block is counted with ALLOC_OVERHEAD bytes more than asked for: the headers of
 * rl__malloc and malloc, so that max_memory bounds what the process really uses. */
#define ALLOC_OVERHEAD 32

void *rl__tpl_alloc(tpl_ctx *c, size_t n) {
    if (c->status != RL_OK) return NULL;
    if (n > c->lim.max_memory - ALLOC_OVERHEAD || c->mem > c->lim.max_memory - ALLOC_OVERHEAD - n) {
        rl__tpl_fail(c, RL_ERR_LIMIT, "template used more than %zu bytes of memory", c->lim.max_memory);
        return NULL;
    }
    void *p = rl__malloc(n);
    if (!p) {
        rl__tpl_fail(c, RL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    c->mem += n + ALLOC_OVERHEAD;
    return p;
}

void *rl__tpl_realloc(tpl_ctx *c, void *p, size_t old_n, size_t new_n) {
    if (c->status != RL_OK) return NULL;
    if (!p) return rl__tpl_alloc(c, new_n);
    if (new_n > old_n &&
        (new_n - old_n > c->lim.max_memory || c->mem > c->lim.max_memory - (new_n - old_n))) {
        rl__tpl_fail(c, RL_ERR_LIMIT, "template used more than %zu bytes of memory", c->lim.max_memory);
        return NULL;
    }
    void *q = rl__realloc(p, new_n);
    if (!q) {
        rl__tpl_fail(c, RL_ERR_NOMEM, "out of memory");
        return NULL;
    }
    c->mem = c->mem - old_n + new_n;
    return q;
}

void rl__tpl_dealloc(tpl_ctx *c, void *p, size_t n) {
    if (!p) return;
    c->mem -= n + ALLOC_OVERHEAD;
    rl__free(p);
}

static void link_obj(tpl_ctx *c, tpl_obj *o) {
    o->prev = &c->live;
    o->next = c->live.next;
    c->live.next->prev = o;
    c->live.next = o;
}
void rl__tpl_link(tpl_ctx *c, tpl_obj *o) { link_obj(c, o); }

static void unlink_obj(tpl_obj *o) {
    o->prev->next = o->next;
    o->next->prev = o->prev;
}

static void *obj_new(tpl_ctx *c, uint8_t kind, size_t size) {
    tpl_obj *o = rl__tpl_alloc(c, size);
    if (!o) return NULL;
    memset(o, 0, size);
    o->rc = 1;
    o->kind = kind;
    link_obj(c, o);
    return o;
}

/* Memory of o itself (not of what it references). */
static void obj_release_memory(tpl_ctx *c, tpl_obj *o) {
    switch (o->kind) {
    case TV_STR: {
        tpl_str *s = (tpl_str *)o;
        rl__tpl_dealloc(c, s, sizeof(tpl_str) + s->len + 1);
        break;
    }
    case TV_LIST: case TV_GEN: {
        tpl_list *l = (tpl_list *)o;
        rl__tpl_dealloc(c, l->v, l->cap * sizeof(tpl_val));
        rl__tpl_dealloc(c, l, sizeof(*l));
        break;
    }
    case TV_DICT: case TV_NS: {
        tpl_dict *d = (tpl_dict *)o;
        rl__tpl_dealloc(c, d->k, d->cap * sizeof(tpl_val));
        rl__tpl_dealloc(c, d->v, d->cap * sizeof(tpl_val));
        rl__tpl_dealloc(c, d, sizeof(*d));
        break;
    }
    case TV_FUNC: rl__tpl_dealloc(c, o, sizeof(tpl_func)); break;
    case TV_LOOP: rl__tpl_dealloc(c, o, sizeof(tpl_loop)); break;
    case TV_SCOPE: {
        tpl_scope *s = (tpl_scope *)o;
        rl__tpl_dealloc(c, s->names, s->cap * sizeof(*s->names));
        rl__tpl_dealloc(c, s->vals, s->cap * sizeof(tpl_val));
        rl__tpl_dealloc(c, s, sizeof(*s));
        break;
    }
    default: break;
    }
}

static void release_children(tpl_ctx *c, tpl_obj *o) {
    switch (o->kind) {
    case TV_LIST: case TV_GEN: {
        tpl_list *l = (tpl_list *)o;
        for (size_t i = 0; i < l->n; i++) rl__tpl_decref(c, l->v[i]);
        if (l->err) rl__tpl_obj_decref(c, &l->err->h);
        break;
    }
    case TV_DICT: case TV_NS: {
        tpl_dict *d = (tpl_dict *)o;
        for (size_t i = 0; i < d->n; i++) {
            rl__tpl_decref(c, d->k[i]);
            rl__tpl_decref(c, d->v[i]);
        }
        break;
    }
    case TV_FUNC: {
        tpl_func *f = (tpl_func *)o;
        if (f->closure) rl__tpl_obj_decref(c, &f->closure->h);
        rl__tpl_decref(c, f->self);
        break;
    }
    case TV_LOOP: {
        tpl_loop *l = (tpl_loop *)o;
        if (l->items) rl__tpl_obj_decref(c, &l->items->h);
        rl__tpl_decref(c, l->changed_last);
        break;
    }
    case TV_SCOPE: {
        tpl_scope *s = (tpl_scope *)o;
        if (s->parent) rl__tpl_obj_decref(c, &s->parent->h);
        for (size_t i = 0; i < s->n; i++) rl__tpl_decref(c, s->vals[i]);
        break;
    }
    default: break;
    }
}

/* Objects whose count reaches zero go on a stack that is drained in a loop, so freeing
 * a list nested a million deep takes no stack. If the stack cannot grow the object
 * simply stays on the live list until the render ends. */
void rl__tpl_obj_decref(tpl_ctx *c, tpl_obj *o) {
    if (!o || o->rc == TPL_IMMORTAL) return;
    if (--o->rc > 0) return;
    if (c->ndead == c->dead_cap) {
        size_t cap = c->dead_cap ? c->dead_cap * 2 : 64;
        tpl_obj **nv = rl__realloc(c->dead, cap * sizeof(*nv));
        if (!nv) return;
        c->dead = nv;
        c->dead_cap = cap;
    }
    c->dead[c->ndead++] = o;
    if (c->freeing) return;
    c->freeing = true;
    while (c->ndead) {
        tpl_obj *x = c->dead[--c->ndead];
        release_children(c, x);
        unlink_obj(x);
        obj_release_memory(c, x);
    }
    c->freeing = false;
}

void rl__tpl_decref(tpl_ctx *c, tpl_val v) {
    if (tv_isobj(v)) rl__tpl_obj_decref(c, v.u.o);
}

void rl__tpl_free_all(tpl_ctx *c) {
    c->ndead = 0;
    tpl_obj *o = c->live.next;
    while (o && o != &c->live) {
        tpl_obj *n = o->next;
        obj_release_memory(c, o);
        o = n;
    }
    c->live.next = c->live.prev = &c->live;
    rl__free(c->dead);
    c->dead = NULL;
    c->dead_cap = 0;
}

/* ---- UTF-8 ------------------------------------------------------------------ */

/* Decode the code point at s[*i] and advance; -1 (and advance by one) when invalid. */
int32_t rl__tpl_utf8_next(const char *s, size_t n, size_t *i) {
    const unsigned char *u = (const unsigned char *)s;
    size_t k = *i;
    unsigned c = u[k];
    if (c < 0x80) {
        *i = k + 1;
        return (int32_t)c;
    }
    int len;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07, min = 0x10000;
    else {
        *i = k + 1;
        return -1;
    }
    if (k + (size_t)len > n) {
        *i = k + 1;
        return -1;
    }
    for (int j = 1; j < len; j++) {
        unsigned d = u[k + (size_t)j];
        if ((d & 0xC0) != 0x80) {
            *i = k + 1;
            return -1;
        }
        cp = (cp << 6) | (d & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        *i = k + 1;
        return -1;
    }
    *i = k + (size_t)len;
    return (int32_t)cp;
}

size_t rl__tpl_utf8_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

size_t rl__tpl_cp_offset(const tpl_str *s, int64_t idx) {
    if (idx <= 0) return 0;
    if ((size_t)idx >= s->ncp) return s->len;
    if (s->ncp == s->len) return (size_t)idx;
    size_t i = 0;
    int64_t k = 0;
    while (i < s->len) {
        if (((unsigned char)s->s[i] & 0xC0) != 0x80) {
            if (k == idx) return i;
            k++;
        }
        i++;
    }
    return s->len;
}

/* ---- strings and the builder ------------------------------------------------- */

tpl_str *rl__tpl_str_new(tpl_ctx *c, const char *s, size_t n) {
    if (n > c->lim.max_output) {
        rl__tpl_fail(c, RL_ERR_LIMIT, "string longer than %zu bytes", c->lim.max_output);
        return NULL;
    }
    tpl_str *r = obj_new(c, TV_STR, sizeof(tpl_str) + n + 1);
    if (!r) return NULL;
    if (n) memcpy(r->s, s, n);
    r->s[n] = 0;
    r->len = n;
    r->ncp = rl__tpl_utf8_count(r->s, n);
    return r;
}

void rl__tpl_sb_init(tpl_sb *b) {
    b->s = NULL;
    b->cap = 0;
}

int rl__tpl_sb_add(tpl_ctx *c, tpl_sb *b, const char *s, size_t n) {
    size_t len = b->s ? b->s->len : 0;
    if (n > c->lim.max_output || len > c->lim.max_output - n)
        return rl__tpl_fail(c, RL_ERR_LIMIT, "output longer than %zu bytes", c->lim.max_output);
    if (!b->s || len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 56;
        while (cap < len + n) cap *= 2;
        size_t old = b->s ? sizeof(tpl_str) + b->cap + 1 : 0;
        tpl_str *ns = rl__tpl_realloc(c, b->s, old, sizeof(tpl_str) + cap + 1);
        if (!ns) return -1;
        if (!b->s) ns->len = 0;
        b->s = ns;
        b->cap = cap;
    }
    if (n) memcpy(b->s->s + len, s, n);
    b->s->len = len + n;
    if (n >= 4096 && rl__tpl_charge(c, n / 4096)) return -1;
    return 0;
}

int rl__tpl_sb_addc(tpl_ctx *c, tpl_sb *b, char ch) { return rl__tpl_sb_add(c, b, &ch, 1); }

int rl__tpl_sb_addf(tpl_ctx *c, tpl_sb *b, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0) return rl__tpl_fail(c, RL_ERR_INTERNAL, "format error");
    if ((size_t)n >= sizeof(buf)) n = sizeof(buf) - 1;
    return rl__tpl_sb_add(c, b, buf, (size_t)n);
}

int rl__tpl_sb_addcp(tpl_ctx *c, tpl_sb *b, int32_t cp) {
    char o[4];
    size_t m = 0;
    uint32_t u = (uint32_t)cp;
    if (u < 0x80) o[m++] = (char)u;
    else if (u < 0x800) o[m++] = (char)(0xC0 | (u >> 6)), o[m++] = (char)(0x80 | (u & 0x3F));
    else if (u < 0x10000)
        o[m++] = (char)(0xE0 | (u >> 12)), o[m++] = (char)(0x80 | ((u >> 6) & 0x3F)),
        o[m++] = (char)(0x80 | (u & 0x3F));
    else
        o[m++] = (char)(0xF0 | (u >> 18)), o[m++] = (char)(0x80 | ((u >> 12) & 0x3F)),
        o[m++] = (char)(0x80 | ((u >> 6) & 0x3F)), o[m++] = (char)(0x80 | (u & 0x3F));
    return rl__tpl_sb_add(c, b, o, m);
}

tpl_str *rl__tpl_sb_finish(tpl_ctx *c, tpl_sb *b) {
    if (!b->s) return rl__tpl_str_new(c, "", 0);
    tpl_str *s = b->s;
    size_t len = s->len;
    tpl_str *r = rl__tpl_realloc(c, s, sizeof(tpl_str) + b->cap + 1, sizeof(tpl_str) + len + 1);
    if (!r) {
        rl__tpl_dealloc(c, s, sizeof(tpl_str) + b->cap + 1);
        b->s = NULL;
        b->cap = 0;
        return NULL;
    }
    b->s = NULL;
    b->cap = 0;
    r->s[len] = 0;
    r->h.rc = 1;
    r->h.kind = TV_STR;
    r->ncp = rl__tpl_utf8_count(r->s, len);
    link_obj(c, &r->h);
    return r;
}

int rl__tpl_str_val(tpl_ctx *c, const char *s, size_t n, uint8_t sub, tpl_val *out) {
    tpl_str *r = rl__tpl_str_new(c, s, n);
    if (!r) return -1;
    *out = tv_obj(TV_STR, sub, r);
    return 0;
}

int rl__tpl_sb_val(tpl_ctx *c, tpl_sb *b, uint8_t sub, tpl_val *out) {
    tpl_str *r = rl__tpl_sb_finish(c, b);
    if (!r) return -1;
    *out = tv_obj(TV_STR, sub, r);
    return 0;
}

void rl__tpl_sb_drop(tpl_ctx *c, tpl_sb *b) {
    if (b->s) rl__tpl_dealloc(c, b->s, sizeof(tpl_str) + b->cap + 1);
    b->s = NULL;
    b->cap = 0;
}

/* ---- containers ------------------------------------------------------------ */

tpl_list *rl__tpl_list_new(tpl_ctx *c, uint8_t kind, size_t cap) {
    tpl_list *l = obj_new(c, kind, sizeof(tpl_list));
    if (!l) return NULL;
    if (cap) {
        l->v = rl__tpl_alloc(c, cap * sizeof(tpl_val));
        if (!l->v) {
            rl__tpl_obj_decref(c, &l->h);
            return NULL;
        }
        l->cap = cap;
    }
    return l;
}

int rl__tpl_list_push(tpl_ctx *c, tpl_list *l, tpl_val v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        tpl_val *nv = rl__tpl_realloc(c, l->v, l->cap * sizeof(tpl_val), cap * sizeof(tpl_val));
        if (!nv) {
            rl__tpl_decref(c, v);
            return -1;
        }
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
    return 0;
}

tpl_dict *rl__tpl_dict_new(tpl_ctx *c, uint8_t kind) { return obj_new(c, kind, sizeof(tpl_dict)); }

tpl_val *rl__tpl_dict_find_str(const tpl_dict *d, const char *s, size_t n) {
    for (size_t i = 0; i < d->n; i++) {
        tpl_val k = d->k[i];
        if (k.t == TV_STR && TV_S(k)->len == n && memcmp(TV_S(k)->s, s, n) == 0) return &d->v[i];
    }
    return NULL;
}

static bool is_num(tpl_val v) { return v.t == TV_BOOL || v.t == TV_INT || v.t == TV_FLOAT; }

int rl__tpl_dict_find(tpl_ctx *c, const tpl_dict *d, tpl_val key, tpl_val **out) {
    *out = NULL;
    if (key.t == TV_STR) {
        *out = rl__tpl_dict_find_str(d, TV_S(key)->s, TV_S(key)->len);
        return 0;
    }
    for (size_t i = 0; i < d->n; i++) {
        if (d->k[i].t == TV_STR) continue;
        bool eq;
        if (rl__tpl_eq(c, d->k[i], key, &eq)) return -1;
        if (eq) {
            *out = &d->v[i];
            return 0;
        }
    }
    return 0;
}

static bool hashable(tpl_val v) {
    if (v.t == TV_LIST) {
        if (v.sub != LS_TUPLE) return false;
        for (size_t i = 0; i < TV_L(v)->n; i++)
            if (!hashable(TV_L(v)->v[i])) return false;
        return true;
    }
    return v.t != TV_DICT && v.t != TV_NS;
}

int rl__tpl_dict_set(tpl_ctx *c, tpl_dict *d, tpl_val k, tpl_val v) {
    if (!hashable(k)) {
        rl__tpl_fail(c, RL_ERR_INVALID_ARG, "unhashable type: '%s'", rl__tpl_type_name(k));
        goto fail;
    }
    tpl_val *slot;
    if (rl__tpl_dict_find(c, d, k, &slot)) goto fail;
    if (slot) { /* Python keeps the first key and its position */
        rl__tpl_decref(c, *slot);
        *slot = v;
        rl__tpl_decref(c, k);
        return 0;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        tpl_val *nk = rl__tpl_alloc(c, cap * sizeof(tpl_val));
        tpl_val *nv = nk ? rl__tpl_alloc(c, cap * sizeof(tpl_val)) : NULL;
        if (!nv) {
            rl__tpl_dealloc(c, nk, cap * sizeof(tpl_val));
            goto fail;
        }
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof(tpl_val));
            memcpy(nv, d->v, d->n * sizeof(tpl_val));
        }
        rl__tpl_dealloc(c, d->k, d->cap * sizeof(tpl_val));
        rl__tpl_dealloc(c, d->v, d->cap * sizeof(tpl_val));
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = k;
    d->v[d->n] = v;
    d->n++;
    return 0;
fail:
    rl__tpl_decref(c, k);
    rl__tpl_decref(c, v);
    return -1;
}

tpl_func *rl__tpl_func_new(tpl_ctx *c, uint8_t fk, uint16_t id) {
    tpl_func *f = obj_new(c, TV_FUNC, sizeof(tpl_func));
    if (!f) return NULL;
    f->fk = fk;
    f->id = id;
    f->self = tv_none();
    return f;
}

tpl_scope *rl__tpl_scope_new(tpl_ctx *c, tpl_scope *parent) {
    tpl_scope *s = obj_new(c, TV_SCOPE, sizeof(tpl_scope));
    if (!s) return NULL;
    s->parent = parent;
    if (parent) parent->h.rc++;
    return s;
}

tpl_val *rl__tpl_scope_find(tpl_scope *s, const tpl_str *name) {
    for (; s; s = s->parent)
        for (size_t i = 0; i < s->n; i++)
            if (s->names[i] == name) return &s->vals[i];
    return NULL;
}

int rl__tpl_scope_set(tpl_ctx *c, tpl_scope *s, const tpl_str *name, tpl_val v) {
    for (size_t i = 0; i < s->n; i++) {
        if (s->names[i] == name) {
            rl__tpl_decref(c, s->vals[i]);
            s->vals[i] = v;
            return 0;
        }
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        const tpl_str **nn = rl__tpl_alloc(c, cap * sizeof(*nn));
        tpl_val *nv = nn ? rl__tpl_alloc(c, cap * sizeof(tpl_val)) : NULL;
        if (!nv) {
            rl__tpl_dealloc(c, nn, cap * sizeof(*nn));
            goto fail;
        }
        if (s->n) {
            memcpy(nn, s->names, s->n * sizeof(*nn));
            memcpy(nv, s->vals, s->n * sizeof(tpl_val));
        }
        rl__tpl_dealloc(c, s->names, s->cap * sizeof(*nn));
        rl__tpl_dealloc(c, s->vals, s->cap * sizeof(tpl_val));
        s->names = nn;
        s->vals = nv;
        s->cap = cap;
    }
    s->names[s->n] = name;
    s->vals[s->n] = v;
    s->n++;
    return 0;
fail:
    rl__tpl_decref(c, v);
    return -1;
}

/* ---- Python semantics --------------------------------------------------------- */

bool rl__tpl_truthy(tpl_val v) {
    switch (v.t) {
    case TV_UNDEF: case TV_NONE: return false;
    case TV_BOOL: return v.u.b;
    case TV_INT: return v.u.i != 0;
    case TV_FLOAT: return v.u.f != 0.0;
    case TV_STR: return TV_S(v)->len > 0;
    case TV_LIST: return TV_L(v)->n > 0;
    case TV_DICT: return TV_D(v)->n > 0;
    default: return true; /* namespace, callables, generators, loop */
    }
}

const char *rl__tpl_type_name(tpl_val v) {
    switch (v.t) {
    case TV_UNDEF: return "Undefined";
    case TV_NONE: return "NoneType";
    case TV_BOOL: return "bool";
    case TV_INT: return "int";
    case TV_FLOAT: return "float";
    case TV_STR: return (v.sub & STR_SAFE) ? "Markup" : "str";
    case TV_LIST:
        switch (v.sub) {
        case LS_TUPLE: return "tuple";
        case LS_ITEMS: return "dict_items";
        case LS_KEYS: return "dict_keys";
        case LS_VALUES: return "dict_values";
        case LS_RANGE: return "range";
        default: return "list";
        }
    case TV_DICT: return "dict";
    case TV_NS: return "Namespace";
    case TV_FUNC: return TV_F(v)->fk == FN_MACRO || TV_F(v)->fk == FN_CALLER ? "Macro"
                                                                              : "builtin_function_or_method";
    case TV_GEN: return v.sub == GEN_REVERSE ? "list_reverseiterator" : "generator";
    case TV_LOOP: return "LoopContext";
    default: return "object";
    }
}

static const char *const TYPE_CODES[] = {
    "Undefined", "None", "bool", "int", "float", "str", "list", "dict", "Namespace",
    "function", "generator", "LoopContext", "tuple", "dict_items", "dict_keys",
    "dict_values", "Markup", "list_reverseiterator", "Macro", "range"};

uint8_t rl__tpl_type_code(tpl_val v) {
    const char *n = v.t == TV_NONE ? "None" : rl__tpl_type_name(v);
    for (uint8_t i = 0; i < RL_ARRAY_LEN(TYPE_CODES); i++)
        if (strcmp(TYPE_CODES[i], n) == 0) return i;
    return 9;
}

const char *rl__tpl_type_code_name(uint8_t code) {
    return code < RL_ARRAY_LEN(TYPE_CODES) ? TYPE_CODES[code] : "object";
}

void rl__tpl_undef_msg(tpl_val v, char *buf, size_t n) {
    const char *h = v.u.hint;
    const char *tn = rl__tpl_type_code_name(v.aux);
    switch (v.sub) {
    case UH_NAME: snprintf(buf, n, "'%s' is undefined", h); break;
    case UH_ATTR:
        if (v.aux == 1) snprintf(buf, n, "'None' has no attribute '%s'", h ? h : "?");
        else snprintf(buf, n, "'%s object' has no attribute '%s'", tn, h ? h : "?");
        break;
    case UH_ELEM: snprintf(buf, n, "%s%s has no element", tn, v.aux == 1 ? "" : " object"); break;
    case UH_ELEM_INT:
        snprintf(buf, n, "%s%s has no element %lld", tn, v.aux == 1 ? "" : " object", (long long)v.u.i);
        break;
    case UH_MSG: snprintf(buf, n, "%s", h); break;
    default: snprintf(buf, n, "value is undefined"); break;
    }
}

int rl__tpl_fail_undef(tpl_ctx *c, tpl_val v) {
    char msg[300];
    rl__tpl_undef_msg(v, msg, sizeof(msg));
    return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "%s", msg);
}

static int eq_depth(tpl_ctx *c, tpl_val a, tpl_val b, bool *res, int depth);

static bool num_eq(tpl_val a, tpl_val b) {
    if (a.t != TV_FLOAT && b.t != TV_FLOAT) {
        int64_t x = a.t == TV_BOOL ? a.u.b : a.u.i, y = b.t == TV_BOOL ? b.u.b : b.u.i;
        return x == y;
    }
    double x = a.t == TV_FLOAT ? a.u.f : (double)(a.t == TV_BOOL ? a.u.b : a.u.i);
    double y = b.t == TV_FLOAT ? b.u.f : (double)(b.t == TV_BOOL ? b.u.b : b.u.i);
    if (a.t == TV_INT && b.t == TV_FLOAT && y == floor(y) && fabs(y) < 9.2e18) return a.u.i == (int64_t)y;
    if (b.t == TV_INT && a.t == TV_FLOAT && x == floor(x) && fabs(x) < 9.2e18) return b.u.i == (int64_t)x;
    return x == y;
}

static int eq_depth(tpl_ctx *c, tpl_val a, tpl_val b, bool *res, int depth) {
    if (depth > MAX_REPR_DEPTH)
        return rl__tpl_fail(c, RL_ERR_LIMIT, "values nested too deeply to compare");
    *res = false;
    if (is_num(a) && is_num(b)) {
        *res = num_eq(a, b);
        return 0;
    }
    if (a.t != b.t) return 0;
    switch (a.t) {
    case TV_UNDEF: case TV_NONE: *res = true; return 0;
    case TV_STR:
        *res = TV_S(a)->len == TV_S(b)->len && memcmp(TV_S(a)->s, TV_S(b)->s, TV_S(a)->len) == 0;
        return 0;
    case TV_LIST: {
        if (a.sub != b.sub) return 0;
        tpl_list *x = TV_L(a), *y = TV_L(b);
        if (x->n != y->n) return 0;
        for (size_t i = 0; i < x->n; i++) {
            bool e;
            if (eq_depth(c, x->v[i], y->v[i], &e, depth + 1)) return -1;
            if (!e) return 0;
        }
        *res = true;
        return 0;
    }
    case TV_DICT: {
        tpl_dict *x = TV_D(a), *y = TV_D(b);
        if (x->n != y->n) return 0;
        for (size_t i = 0; i < x->n; i++) {
            tpl_val *o;
            if (rl__tpl_dict_find(c, y, x->k[i], &o)) return -1;
            if (!o) return 0;
            bool e;
            if (eq_depth(c, x->v[i], *o, &e, depth + 1)) return -1;
            if (!e) return 0;
        }
        *res = true;
        return 0;
    }
    default: *res = a.u.o == b.u.o; return 0;
    }
}

int rl__tpl_eq(tpl_ctx *c, tpl_val a, tpl_val b, bool *res) { return eq_depth(c, a, b, res, 0); }

static int cmp_depth(tpl_ctx *c, tpl_val a, tpl_val b, const char *op, int *res, int depth) {
    if (depth > MAX_REPR_DEPTH)
        return rl__tpl_fail(c, RL_ERR_LIMIT, "values nested too deeply to compare");
    if (is_num(a) && is_num(b)) {
        if (a.t != TV_FLOAT && b.t != TV_FLOAT) {
            int64_t x = a.t == TV_BOOL ? a.u.b : a.u.i, y = b.t == TV_BOOL ? b.u.b : b.u.i;
            *res = x < y ? -1 : x > y;
            return 0;
        }
        double x = a.t == TV_FLOAT ? a.u.f : (double)(a.t == TV_BOOL ? a.u.b : a.u.i);
        double y = b.t == TV_FLOAT ? b.u.f : (double)(b.t == TV_BOOL ? b.u.b : b.u.i);
        if (x != x || y != y) *res = 2;
        else *res = x < y ? -1 : x > y;
        return 0;
    }
    if (a.t == TV_STR && b.t == TV_STR) {
        size_t la = TV_S(a)->len, lb = TV_S(b)->len;
        int r = memcmp(TV_S(a)->s, TV_S(b)->s, la < lb ? la : lb);
        *res = r < 0 ? -1 : r > 0 ? 1 : la < lb ? -1 : la > lb;
        return 0;
    }
    if (a.t == TV_LIST && b.t == TV_LIST && a.sub == b.sub && (a.sub == LS_LIST || a.sub == LS_TUPLE)) {
        tpl_list *x = TV_L(a), *y = TV_L(b);
        for (size_t i = 0; i < x->n && i < y->n; i++) {
            bool e;
            if (eq_depth(c, x->v[i], y->v[i], &e, depth + 1)) return -1;
            if (!e) return cmp_depth(c, x->v[i], y->v[i], op, res, depth + 1);
        }
        *res = x->n < y->n ? -1 : x->n > y->n;
        return 0;
    }
    if (a.t == TV_UNDEF) return rl__tpl_fail_undef(c, a);
    if (b.t == TV_UNDEF) return rl__tpl_fail_undef(c, b);
    return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "'%s' not supported between instances of '%s' and '%s'",
                        op, rl__tpl_type_name(a), rl__tpl_type_name(b));
}

int rl__tpl_cmp(tpl_ctx *c, tpl_val a, tpl_val b, const char *op, int *res) {
    return cmp_depth(c, a, b, op, res, 0);
}

/* ---- float repr ---------------------------------------------------------------- */

/* Python's repr(float): the shortest digit string that reads back to the same double,
 * in fixed notation when the decimal exponent is in [-4, 16), else d.ddde+XX. */
size_t rl__tpl_fmt_float(double d, char *buf) {
    if (d != d) return (size_t)sprintf(buf, "nan");
    if (isinf(d)) return (size_t)sprintf(buf, d < 0 ? "-inf" : "inf");
    if (d == 0) return (size_t)sprintf(buf, signbit(d) ? "-0.0" : "0.0");
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d) break;
    }
    /* tmp: [-]D[.DDD]e[+-]XX */
    char digits[24];
    int nd = 0;
    const char *p = tmp;
    bool neg = false;
    if (*p == '-') neg = true, p++;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    int exp10 = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    int decpt = exp10 + 1; /* digits are 0.DDD x 10^decpt */
    char *o = buf;
    if (neg) *o++ = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -decpt; i++) *o++ = '0';
            for (int i = 0; i < nd; i++) *o++ = digits[i];
        } else {
            for (int i = 0; i < decpt; i++) *o++ = i < nd ? digits[i] : '0';
            *o++ = '.';
            if (nd > decpt)
                for (int i = decpt; i < nd; i++) *o++ = digits[i];
            else
                *o++ = '0';
        }
    } else {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            for (int i = 1; i < nd; i++) *o++ = digits[i];
        }
        o += sprintf(o, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
    *o = 0;
    return (size_t)(o - buf);
}

/* ---- str() and repr() ----------------------------------------------------------- */

static bool py_printable(int32_t cp) {
    if (cp < 0x80) return cp >= 0x20 && cp < 0x7f;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO: case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
        return false;
    default: return true;
    }
}

static int repr_str(tpl_ctx *c, tpl_sb *b, const tpl_str *s) {
    bool has_sq = memchr(s->s, '\'', s->len) != NULL, has_dq = memchr(s->s, '"', s->len) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    if (rl__tpl_sb_addc(c, b, q)) return -1;
    size_t run = 0; /* start of a run of bytes copied as they are */
    for (size_t i = 0; i < s->len;) {
        size_t j = i;
        int32_t cp = rl__tpl_utf8_next(s->s, s->len, &j);
        const char *esc = NULL;
        char tmp[16];
        if (cp == q || cp == '\\') {
            tmp[0] = '\\', tmp[1] = (char)cp, tmp[2] = 0;
            esc = tmp;
        } else if (cp == '\t') esc = "\\t";
        else if (cp == '\n') esc = "\\n";
        else if (cp == '\r') esc = "\\r";
        else if (!py_printable(cp)) {
            snprintf(tmp, sizeof(tmp), cp < 0x100 ? "\\x%02x" : cp < 0x10000 ? "\\u%04x" : "\\U%08x",
                     (unsigned)cp);
            esc = tmp;
        }
        if (esc) {
            if (rl__tpl_sb_add(c, b, s->s + run, i - run) || rl__tpl_sb_add(c, b, esc, strlen(esc)))
                return -1;
            run = j;
        }
        i = j;
    }
    if (rl__tpl_sb_add(c, b, s->s + run, s->len - run)) return -1;
    return rl__tpl_sb_addc(c, b, q);
}

static int repr_items(tpl_ctx *c, tpl_sb *b, const tpl_list *l, int depth) {
    for (size_t i = 0; i < l->n; i++) {
        if (i && rl__tpl_sb_add(c, b, ", ", 2)) return -1;
        if (rl__tpl_repr(c, b, l->v[i], depth + 1)) return -1;
    }
    return 0;
}

static int repr_dict(tpl_ctx *c, tpl_sb *b, const tpl_dict *d, int depth) {
    if (rl__tpl_sb_addc(c, b, '{')) return -1;
    for (size_t i = 0; i < d->n; i++) {
        if (i && rl__tpl_sb_add(c, b, ", ", 2)) return -1;
        if (rl__tpl_repr(c, b, d->k[i], depth + 1) || rl__tpl_sb_add(c, b, ": ", 2) ||
            rl__tpl_repr(c, b, d->v[i], depth + 1))
            return -1;
    }
    return rl__tpl_sb_addc(c, b, '}');
}

int rl__tpl_repr(tpl_ctx *c, tpl_sb *b, tpl_val v, int depth) {
    if (depth > MAX_REPR_DEPTH) return rl__tpl_fail(c, RL_ERR_LIMIT, "value nested too deeply to print");
    switch (v.t) {
    case TV_UNDEF: return rl__tpl_sb_add(c, b, "Undefined", 9);
    case TV_STR:
        if (v.sub & STR_SAFE) {
            if (rl__tpl_sb_add(c, b, "Markup(", 7) || repr_str(c, b, TV_S(v))) return -1;
            return rl__tpl_sb_addc(c, b, ')');
        }
        return repr_str(c, b, TV_S(v));
    case TV_LIST: {
        const tpl_list *l = TV_L(v);
        switch (v.sub) {
        case LS_TUPLE:
            if (rl__tpl_sb_addc(c, b, '(') || repr_items(c, b, l, depth)) return -1;
            if (l->n == 1 && rl__tpl_sb_addc(c, b, ',')) return -1;
            return rl__tpl_sb_addc(c, b, ')');
        case LS_RANGE:
            if (l->rstep == 1) return rl__tpl_sb_addf(c, b, "range(%lld, %lld)", (long long)l->rstart, (long long)l->rstop);
            return rl__tpl_sb_addf(c, b, "range(%lld, %lld, %lld)", (long long)l->rstart, (long long)l->rstop,
                                   (long long)l->rstep);
        case LS_ITEMS: case LS_KEYS: case LS_VALUES: {
            const char *pre = v.sub == LS_ITEMS ? "dict_items([" : v.sub == LS_KEYS ? "dict_keys([" : "dict_values([";
            if (rl__tpl_sb_add(c, b, pre, strlen(pre)) || repr_items(c, b, l, depth)) return -1;
            return rl__tpl_sb_add(c, b, "])", 2);
        }
        default:
            if (rl__tpl_sb_addc(c, b, '[') || repr_items(c, b, l, depth)) return -1;
            return rl__tpl_sb_addc(c, b, ']');
        }
    }
    case TV_DICT: return repr_dict(c, b, TV_D(v), depth);
    case TV_NS:
        if (rl__tpl_sb_add(c, b, "<Namespace ", 11) || repr_dict(c, b, TV_D(v), depth)) return -1;
        return rl__tpl_sb_addc(c, b, '>');
    case TV_FUNC: {
        const tpl_func *f = TV_F(v);
        if (f->fk == FN_MACRO && f->node && f->node->name)
            return rl__tpl_sb_addf(c, b, "<Macro '%s'>", f->node->name->s);
        if (f->fk == FN_CALLER) return rl__tpl_sb_add(c, b, "<Macro 'caller'>", 16);
        return rl__tpl_sb_add(c, b, "<built-in function>", 19);
    }
    case TV_GEN:
        return v.sub == GEN_REVERSE ? rl__tpl_sb_add(c, b, "<list_reverseiterator object>", 29)
                                    : rl__tpl_sb_add(c, b, "<generator object>", 18);
    case TV_LOOP: {
        const tpl_loop *l = (const tpl_loop *)v.u.o;
        return rl__tpl_sb_addf(c, b, "<LoopContext %zu/%zu>", l->i + 1, l->items ? l->items->n : 0);
    }
    default: break;
    }
    return rl__tpl_to_str(c, b, v);
}

int rl__tpl_to_str(tpl_ctx *c, tpl_sb *b, tpl_val v) {
    char tmp[64];
    switch (v.t) {
    case TV_UNDEF: return 0;
    case TV_NONE: return rl__tpl_sb_add(c, b, "None", 4);
    case TV_BOOL: return v.u.b ? rl__tpl_sb_add(c, b, "True", 4) : rl__tpl_sb_add(c, b, "False", 5);
    case TV_INT: return rl__tpl_sb_add(c, b, tmp, (size_t)snprintf(tmp, sizeof(tmp), "%lld", (long long)v.u.i));
    case TV_FLOAT: return rl__tpl_sb_add(c, b, tmp, rl__tpl_fmt_float(v.u.f, tmp));
    case TV_STR: return rl__tpl_sb_add(c, b, TV_S(v)->s, TV_S(v)->len);
    default: return rl__tpl_repr(c, b, v, 0);
    }
}

int rl__tpl_str_of(tpl_ctx *c, tpl_val v, tpl_val *out) {
    if (v.t == TV_STR) {
        *out = tv_obj(TV_STR, 0, v.u.o);
        tv_incref(*out);
        return 0;
    }
    tpl_sb b;
    rl__tpl_sb_init(&b);
    if (rl__tpl_to_str(c, &b, v)) {
        rl__tpl_sb_drop(c, &b);
        return -1;
    }
    tpl_str *s = rl__tpl_sb_finish(c, &b);
    if (!s) return -1;
    *out = tv_obj(TV_STR, 0, s);
    return 0;
}

/* ---- iteration ----------------------------------------------------------------- */

int rl__tpl_iterate(tpl_ctx *c, tpl_val v, tpl_list **out) {
    switch (v.t) {
    case TV_UNDEF:
        *out = rl__tpl_list_new(c, TV_LIST, 0);
        return *out ? 0 : -1;
    case TV_LIST:
        *out = TV_L(v);
        tv_incref(v);
        return 0;
    case TV_DICT: {
        tpl_dict *d = TV_D(v);
        tpl_list *l = rl__tpl_list_new(c, TV_LIST, d->n);
        if (!l) return -1;
        for (size_t i = 0; i < d->n; i++) l->v[l->n++] = tv_ref(d->k[i]);
        *out = l;
        return 0;
    }
    case TV_STR: {
        tpl_str *s = TV_S(v);
        tpl_list *l = rl__tpl_list_new(c, TV_LIST, s->ncp);
        if (!l) return -1;
        for (size_t i = 0; i < s->len;) {
            size_t j = i;
            rl__tpl_utf8_next(s->s, s->len, &j);
            tpl_str *ch = rl__tpl_str_new(c, s->s + i, j - i);
            if (!ch) {
                rl__tpl_obj_decref(c, &l->h);
                return -1;
            }
            l->v[l->n++] = tv_obj(TV_STR, v.sub, ch);
            i = j;
        }
        *out = l;
        return rl__tpl_charge(c, s->ncp / 16);
    }
    case TV_GEN: {
        tpl_list *g = TV_L(v);
        tpl_list *l = rl__tpl_list_new(c, TV_LIST, g->n - g->pos);
        if (!l) return -1;
        for (size_t i = g->pos; i < g->n; i++) l->v[l->n++] = tv_ref(g->v[i]);
        g->pos = g->n;
        if (rl__tpl_gen_raise(c, g)) {
            rl__tpl_obj_decref(c, &l->h);
            return -1;
        }
        *out = l;
        return 0;
    }
    default:
        return rl__tpl_fail(c, RL_ERR_INVALID_ARG, "'%s' object is not iterable", rl__tpl_type_name(v));
    }
}
