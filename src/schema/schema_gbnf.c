/*
 * schema_gbnf.c - JSON Schema to GBNF (rl_schema_to_gbnf, rl_schema_gbnf,
 * rl_json_object_gbnf).
 *
 * A schema position is a conjunction of schema objects (a property's schema, what
 * additionalProperties adds, allOf members, $ref targets). Each conjunction becomes one
 * rule, memoized by the set of objects, so recursive $refs become recursive rules. Its body
 * comes from the disjunctive normal form of the conjunction: allOf and $ref are merged in
 * place, anyOf/oneOf (and nothing else) branch, and each branch ("leaf") merges the keywords
 * of all its pieces: types intersect, bounds tighten, properties gather the schemas every
 * piece gives them (properties, patternProperties, additionalProperties, in the way each
 * piece's additionalProperties counts only its own properties), enum values are checked
 * against every piece with the validator. Every keyword is either used exactly, known to
 * be an annotation, or reported as unsupported with its place, so a grammar never accepts
 * a value the schema rejects. Rule shapes follow llama.cpp's json-schema-to-grammar:
 * `space` after punctuation, properties in order with required ones first, the optional
 * ones through "-rest" rules.
 */
#include "schema/schema_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_VISIT_DEPTH 512
#define MAX_LEAVES 1024
#define MAX_PREFIX 256             /* prefixItems (they nest in the rule) */
#define MAX_PIECES 4096            /* schemas merged into one branch */
#define INT_CAP 9999999999999999LL /* 16 digits: what an unbounded integer may have */

enum { T_NULL = 1, T_BOOL = 2, T_INT = 4, T_NUM = 8, T_STR = 16, T_ARR = 32, T_OBJ = 64 };
#define T_ALL 127

/* ---- keywords ---------------------------------------------------------------------------- */

/* Keywords that constrain (or apply subschemas); every other key is an annotation. */
static const char *const CONSTRAINT_KW[] = {"type",
                                            "enum",
                                            "const",
                                            "multipleOf",
                                            "maximum",
                                            "exclusiveMaximum",
                                            "minimum",
                                            "exclusiveMinimum",
                                            "maxLength",
                                            "minLength",
                                            "pattern",
                                            "format",
                                            "maxItems",
                                            "minItems",
                                            "uniqueItems",
                                            "contains",
                                            "maxContains",
                                            "minContains",
                                            "prefixItems",
                                            "items",
                                            "additionalItems",
                                            "unevaluatedItems",
                                            "maxProperties",
                                            "minProperties",
                                            "required",
                                            "properties",
                                            "patternProperties",
                                            "additionalProperties",
                                            "propertyNames",
                                            "dependentRequired",
                                            "dependentSchemas",
                                            "dependencies",
                                            "unevaluatedProperties",
                                            "allOf",
                                            "anyOf",
                                            "oneOf",
                                            "not",
                                            "if",
                                            "then",
                                            "else",
                                            "$ref",
                                            "$dynamicRef",
                                            "$recursiveRef"};

static bool is_constraint_kw(const char *k) {
    for (size_t i = 0; i < RL_ARRAY_LEN(CONSTRAINT_KW); i++)
        if (!strcmp(k, CONSTRAINT_KW[i])) return true;
    return false;
}

/* ---- lists of schema objects -------------------------------------------------------------- */

typedef struct plist {
    const json_t **v;
    uint32_t n, cap;
} plist;

static bool pl_add(plist *l, const json_t *s) {
    for (uint32_t i = 0; i < l->n; i++)
        if (l->v[i] == s) return true;
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 4;
        const json_t **v = rl__realloc(l->v, cap * sizeof *v);
        if (!v) return false;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = s;
    return true;
}

static void pl_free(plist *l) {
    rl__free(l->v);
    memset(l, 0, sizeof *l);
}

typedef struct piece {
    const json_t *s;
    int32_t parent; /* index of the piece that applied it; -1 for the conjunction itself */
} piece;

typedef struct leaf {
    piece *p;
    uint32_t n, cap;
} leaf;

typedef struct leafset {
    leaf *l;
    uint32_t n, cap;
} leafset;

static void leaf_free(leaf *l) {
    rl__free(l->p);
    memset(l, 0, sizeof *l);
}

static void ls_free(leafset *ls) {
    for (uint32_t i = 0; i < ls->n; i++) leaf_free(&ls->l[i]);
    rl__free(ls->l);
    memset(ls, 0, sizeof *ls);
}

/* ---- the converter -------------------------------------------------------------------------- */

enum { MEMO_BUSY = 0, MEMO_USED_BUSY = 1, MEMO_DONE = 2, MEMO_NEVER = 3 };

typedef struct conv {
    rl__gb g;
    const struct rl_schema *sc;
    const rl__sdoc *d;
    uint32_t flags;
    const char *sp; /* " space " or " " */
    rl__smap memo;  /* sorted pointer set -> index into memo_expr */
    char **memo_expr;
    uint8_t *memo_state;
    int32_t *memo_rule;
    uint32_t n_memo, cap_memo;
    rl__smap oneof_checked;
    int depth;
    int quiet; /* >0: summarizing for oneOf checks, report nothing */
} conv;

static bool nomem(conv *c) { return rl__gb_fail(&c->g, RL_ERR_NOMEM, "out of memory"); }

static const char *path_of(conv *c, const json_t *s) { return rl__sdoc_path(c->d, s); }

/* Report keyword kw of schema s as not expressible: an error, or in lenient mode a
 * warning (then the caller drops the constraint). In quiet mode nothing is said and the
 * constraint is dropped (which only widens a branch: safe for the disjointness checks). */
static bool unsupported(conv *c, const json_t *s, const char *kw, const char *why) {
    if (c->quiet) return true;
    return rl__gb_unsupported(&c->g, "%s/%s: %s", path_of(c, s), kw, why);
}

static bool pure_ref(conv *c, const json_t *s) {
    if (!json_is_object(s) || !json_object_get(s, "$ref")) return false;
    if (c->d->draft7) return true;
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)s, k, v) {
        if (strcmp(k, "$ref") && is_constraint_kw(k)) return false;
    }
    return true;
}

/* Follow pure $refs; NULL (with an error) on a cycle. */
static const json_t *deref(conv *c, const json_t *s) {
    rl__smap seen = {0};
    for (int i = 0; pure_ref(c, s); i++) {
        const json_t *t = rl__sdoc_ref(c->d, s);
        if (!t) break;
        if (i >= 16) { /* long chains are rare: only then keep a set */
            if (rl__pmap_get(&seen, s, NULL)) {
                rl__gb_fail(&c->g, RL_ERR_INVALID_ARG,
                            "%s/$ref: the references go round in a circle", path_of(c, s));
                s = NULL;
                break;
            }
            if (i >= 100000 || !rl__pmap_put(&seen, s, 1)) {
                if (i >= 100000)
                    rl__gb_fail(&c->g, RL_ERR_LIMIT, "%s/$ref: a chain of more than 100000 refs",
                                path_of(c, s));
                else
                    nomem(c);
                s = NULL;
                break;
            }
        }
        s = t;
    }
    rl__smap_free(&seen);
    return s;
}

/* ---- expansion into leaves ------------------------------------------------------------------ */

static bool ls_push(conv *c, leafset *ls, leaf *l) {
    if (ls->n >= MAX_LEAVES) {
        leaf_free(l);
        return rl__gb_fail(&c->g, RL_ERR_LIMIT, "anyOf/oneOf combinations exceed %d alternatives",
                           MAX_LEAVES);
    }
    if (ls->n == ls->cap) {
        uint32_t cap = ls->cap ? ls->cap * 2 : 4;
        leaf *v = rl__realloc(ls->l, cap * sizeof *v);
        if (!v) {
            leaf_free(l);
            return nomem(c);
        }
        ls->l = v;
        ls->cap = cap;
    }
    ls->l[ls->n++] = *l;
    memset(l, 0, sizeof *l);
    return true;
}

static bool leaf_copy(const leaf *a, leaf *b) {
    b->n = b->cap = a->n;
    b->p = NULL;
    if (!a->n) return true;
    b->p = rl__malloc(a->n * sizeof *b->p);
    if (!b->p) return false;
    memcpy(b->p, a->p, a->n * sizeof *b->p);
    return true;
}

static bool leaf_has(const leaf *l, const json_t *s) {
    for (uint32_t i = 0; i < l->n; i++)
        if (l->p[i].s == s) return true;
    return false;
}

static bool check_oneof(conv *c, const json_t *s);

/* Add schema s (applied by piece `parent`) to leaf l; the results (none when s is false,
 * several when s branches) go to out. Takes l. */
static bool add_item(conv *c, leaf *l, const json_t *s, int32_t parent, leafset *out, int depth) {
    if (c->g.st != RL_OK) {
        leaf_free(l);
        return false;
    }
    if (depth > MAX_VISIT_DEPTH) {
        leaf_free(l);
        return rl__gb_fail(&c->g, RL_ERR_LIMIT, "%s: allOf/$ref nested deeper than %d",
                           path_of(c, s), MAX_VISIT_DEPTH);
    }
    if (json_is_true(s) || leaf_has(l, s)) return ls_push(c, out, l);
    if (json_is_false(s)) {
        leaf_free(l);
        return true;
    }
    const json_t *ref = rl__sdoc_ref(c->d, s);
    if (ref && c->d->draft7) return add_item(c, l, ref, parent, out, depth + 1);
    if (l->n == l->cap) {
        uint32_t cap = l->cap ? l->cap * 2 : 4;
        piece *p = rl__realloc(l->p, cap * sizeof *p);
        if (!p) {
            leaf_free(l);
            return nomem(c);
        }
        l->p = p;
        l->cap = cap;
    }
    if (l->n >= MAX_PIECES) {
        leaf_free(l);
        return rl__gb_fail(&c->g, RL_ERR_LIMIT, "%s: allOf/$ref combine more than %d schemas",
                           path_of(c, s), MAX_PIECES);
    }
    int32_t me = (int32_t)l->n;
    l->p[l->n++] = (piece){s, parent};
    /* the applicators, one after the other, over every leaf made so far */
    leafset cur = {0};
    if (!ls_push(c, &cur, l)) return false;
    const char *kws[] = {"allOf", "$ref", "anyOf", "oneOf"};
    for (size_t k = 0; k < RL_ARRAY_LEN(kws) && c->g.st == RL_OK; k++) {
        const json_t *subs = NULL;
        const json_t *one = NULL;
        if (k == 1)
            one = ref;
        else
            subs = json_object_get(s, kws[k]);
        if (!one && !json_is_array(subs)) continue;
        if (k == 3 && !check_oneof(c, s)) break;
        leafset next = {0};
        for (uint32_t i = 0; i < cur.n && c->g.st == RL_OK; i++) {
            if (one) {
                add_item(c, &cur.l[i], one, me, &next, depth + 1);
            } else if (k == 0) {
                /* allOf: every member into the same leaf, in turn */
                leafset acc = {0};
                ls_push(c, &acc, &cur.l[i]);
                for (size_t m = 0; m < json_array_size(subs) && c->g.st == RL_OK; m++) {
                    leafset nx = {0};
                    for (uint32_t j = 0; j < acc.n && c->g.st == RL_OK; j++)
                        add_item(c, &acc.l[j], json_array_get(subs, m), me, &nx, depth + 1);
                    ls_free(&acc);
                    acc = nx;
                }
                for (uint32_t j = 0; j < acc.n && c->g.st == RL_OK; j++)
                    ls_push(c, &next, &acc.l[j]);
                ls_free(&acc);
            } else {
                /* anyOf / oneOf: one copy of the leaf per branch */
                for (size_t m = 0; m < json_array_size(subs) && c->g.st == RL_OK; m++) {
                    leaf copy;
                    if (!leaf_copy(&cur.l[i], &copy)) {
                        nomem(c);
                        break;
                    }
                    add_item(c, &copy, json_array_get(subs, m), me, &next, depth + 1);
                }
                leaf_free(&cur.l[i]);
            }
        }
        ls_free(&cur);
        cur = next;
    }
    for (uint32_t i = 0; i < cur.n && c->g.st == RL_OK; i++) ls_push(c, out, &cur.l[i]);
    ls_free(&cur);
    return c->g.st == RL_OK;
}

static bool expand(conv *c, const plist *conj, leafset *out) {
    memset(out, 0, sizeof *out);
    leafset cur = {0};
    leaf empty = {0};
    if (!ls_push(c, &cur, &empty)) return false;
    for (uint32_t k = 0; k < conj->n && c->g.st == RL_OK; k++) {
        leafset next = {0};
        for (uint32_t i = 0; i < cur.n && c->g.st == RL_OK; i++)
            add_item(c, &cur.l[i], conj->v[k], -1, &next, 0);
        ls_free(&cur);
        cur = next;
    }
    if (c->g.st != RL_OK) {
        ls_free(&cur);
        return false;
    }
    *out = cur;
    return true;
}

/* ---- merged keywords of a leaf ------------------------------------------------------------ */

typedef struct bound {
    const json_t *v; /* NULL: none */
    bool excl;
} bound;

typedef struct info {
    const leaf *l;
    unsigned types;      /* after inference */
    unsigned spec_types; /* from "type" keywords only */
    bool dead;
    bool has_enum;
    json_t *enums; /* array (owned), candidates */
    bound lo, hi;
    uint64_t min_len, max_len;
    const json_t *pattern, *pattern_at;
    const char *format;
    const json_t *format_at;
    uint64_t min_items, max_items, min_props, max_props;
    const json_t *unique_at, *min_props_at, *max_props_at;
} info;

static unsigned type_bit(const char *t) {
    if (!strcmp(t, "null")) return T_NULL;
    if (!strcmp(t, "boolean")) return T_BOOL;
    if (!strcmp(t, "integer")) return T_INT;
    if (!strcmp(t, "number")) return T_NUM | T_INT;
    if (!strcmp(t, "string")) return T_STR;
    if (!strcmp(t, "array")) return T_ARR;
    if (!strcmp(t, "object")) return T_OBJ;
    return 0;
}

static uint64_t count_of(const json_t *v) {
    if (json_is_integer(v)) return json_integer_value(v) < 0 ? 0 : (uint64_t)json_integer_value(v);
    double d = json_real_value(v);
    if (!(d >= 0)) return 0;
    if (d >= 1e18) return RL__RE_INF;
    return (uint64_t)ceil(d);
}

static uint64_t count_floor(const json_t *v) {
    if (json_is_integer(v)) return json_integer_value(v) < 0 ? 0 : (uint64_t)json_integer_value(v);
    double d = json_real_value(v);
    if (!(d >= 0)) return 0;
    if (d >= 1e18) return RL__RE_INF;
    return (uint64_t)floor(d);
}

static void tighten_lo(bound *b, const json_t *v, bool excl) {
    if (!b->v) {
        *b = (bound){v, excl};
        return;
    }
    int k = rl__json_num_cmp(v, b->v);
    if (k > 0 || (k == 0 && excl)) *b = (bound){v, excl};
}

static void tighten_hi(bound *b, const json_t *v, bool excl) {
    if (!b->v) {
        *b = (bound){v, excl};
        return;
    }
    int k = rl__json_num_cmp(v, b->v);
    if (k < 0 || (k == 0 && excl)) *b = (bound){v, excl};
}

static bool enum_intersect(conv *c, info *in, const json_t *vals) {
    if (!in->has_enum) {
        in->has_enum = true;
        in->enums = json_deep_copy(vals);
        if (!in->enums) return nomem(c);
        return true;
    }
    json_t *keep = json_array();
    if (!keep) return nomem(c);
    for (size_t i = 0; i < json_array_size(in->enums); i++) {
        json_t *x = json_array_get(in->enums, i);
        for (size_t j = 0; j < json_array_size(vals); j++) {
            if (rl__json_equal(x, json_array_get(vals, j))) {
                if (json_array_append(keep, x)) {
                    json_decref(keep);
                    return nomem(c);
                }
                break;
            }
        }
    }
    json_decref(in->enums);
    in->enums = keep;
    return true;
}

/* Merge the keywords of every piece of leaf l. */
static bool summarize(conv *c, const leaf *l, info *in) {
    memset(in, 0, sizeof *in);
    in->l = l;
    in->types = in->spec_types = T_ALL;
    in->max_len = in->max_items = in->max_props = RL__RE_INF;
    unsigned suggested = 0, neg_max = 0;
    bool has_type = false;
    for (uint32_t i = 0; i < l->n && c->g.st == RL_OK; i++) {
        const json_t *s = l->p[i].s;
        const json_t *v;
        if ((v = json_object_get(s, "type"))) {
            unsigned m = 0;
            if (json_is_string(v)) m = type_bit(json_string_value(v));
            for (size_t k = 0; json_is_array(v) && k < json_array_size(v); k++)
                if (json_is_string(json_array_get(v, k)))
                    m |= type_bit(json_string_value(json_array_get(v, k)));
            in->spec_types &= m;
            has_type = true;
        }
        if ((v = json_object_get(s, "const"))) {
            json_t *arr = json_pack("[O]", v);
            if (!arr) return nomem(c);
            bool ok = enum_intersect(c, in, arr);
            json_decref(arr);
            if (!ok) return false;
        }
        if ((v = json_object_get(s, "enum")) && json_is_array(v) && !enum_intersect(c, in, v))
            return false;
        /* numbers */
        bool ex_lo_bool = json_is_true(json_object_get(s, "exclusiveMinimum"));
        bool ex_hi_bool = json_is_true(json_object_get(s, "exclusiveMaximum"));
        if ((v = json_object_get(s, "minimum")) && json_is_number(v)) {
            tighten_lo(&in->lo, v, ex_lo_bool);
            suggested |= T_NUM | T_INT;
        }
        if ((v = json_object_get(s, "exclusiveMinimum")) && json_is_number(v)) {
            tighten_lo(&in->lo, v, true);
            suggested |= T_NUM | T_INT;
        }
        if ((v = json_object_get(s, "maximum")) && json_is_number(v)) {
            tighten_hi(&in->hi, v, ex_hi_bool);
            suggested |= T_NUM | T_INT;
        }
        if ((v = json_object_get(s, "exclusiveMaximum")) && json_is_number(v)) {
            tighten_hi(&in->hi, v, true);
            suggested |= T_NUM | T_INT;
        }
        if ((v = json_object_get(s, "multipleOf")) && json_is_number(v)) {
            suggested |= T_NUM | T_INT;
            bool one = json_is_integer(v) ? json_integer_value(v) == 1 : json_real_value(v) == 1.0;
            if (one)
                in->types &= ~T_NUM; /* numbers that are multiples of 1: integers */
            else if (!unsupported(c, s, "multipleOf", "not expressible in a grammar"))
                return false;
        }
        /* strings */
        if ((v = json_object_get(s, "minLength")) && json_is_number(v)) {
            uint64_t n = count_of(v);
            if (n > in->min_len) in->min_len = n;
            suggested |= T_STR;
        }
        if ((v = json_object_get(s, "maxLength")) && json_is_number(v)) {
            if (json_number_value(v) < 0) neg_max |= T_STR; /* no such value has fewer */
            uint64_t n = count_floor(v);
            if (n < in->max_len) in->max_len = n;
            suggested |= T_STR;
        }
        if ((v = json_object_get(s, "pattern")) && json_is_string(v)) {
            suggested |= T_STR;
            if (in->pattern && strcmp(json_string_value(in->pattern), json_string_value(v))) {
                if (!unsupported(c, s, "pattern", "two different patterns for one string"))
                    return false;
            } else {
                in->pattern = v;
                in->pattern_at = s;
            }
        }
        if ((v = json_object_get(s, "format")) && json_is_string(v)) {
            suggested |= T_STR;
            if (in->format && strcmp(in->format, json_string_value(v))) {
                if (!unsupported(c, s, "format", "two different formats for one string"))
                    return false;
            } else {
                in->format = json_string_value(v);
                in->format_at = s;
            }
        }
        /* arrays */
        if ((v = json_object_get(s, "minItems")) && json_is_number(v)) {
            uint64_t n = count_of(v);
            if (n > in->min_items) in->min_items = n;
            suggested |= T_ARR;
        }
        if ((v = json_object_get(s, "maxItems")) && json_is_number(v)) {
            if (json_number_value(v) < 0) neg_max |= T_ARR; /* no such value has fewer */
            uint64_t n = count_floor(v);
            if (n < in->max_items) in->max_items = n;
            suggested |= T_ARR;
        }
        if (json_object_get(s, "items") || json_object_get(s, "prefixItems") ||
            json_object_get(s, "additionalItems"))
            suggested |= T_ARR;
        if (json_is_true(json_object_get(s, "uniqueItems"))) {
            in->unique_at = s;
            suggested |= T_ARR;
        }
        if (json_object_get(s, "contains")) {
            suggested |= T_ARR;
            if (!unsupported(c, s, "contains", "not expressible in a grammar")) return false;
        }
        if (json_object_get(s, "unevaluatedItems")) {
            suggested |= T_ARR;
            if (!unsupported(c, s, "unevaluatedItems", "not supported")) return false;
        }
        /* objects */
        if ((v = json_object_get(s, "minProperties")) && json_is_number(v)) {
            uint64_t n = count_of(v);
            if (n > in->min_props) in->min_props = n, in->min_props_at = s;
            suggested |= T_OBJ;
        }
        if ((v = json_object_get(s, "maxProperties")) && json_is_number(v)) {
            if (json_number_value(v) < 0) neg_max |= T_OBJ; /* no such value has fewer */
            uint64_t n = count_floor(v);
            if (n < in->max_props) in->max_props = n, in->max_props_at = s;
            suggested |= T_OBJ;
        }
        static const char *const obj_kw[] = {"properties", "required", "patternProperties",
                                             "propertyNames", "unevaluatedProperties"};
        for (size_t k = 0; k < RL_ARRAY_LEN(obj_kw); k++)
            if (json_object_get(s, obj_kw[k])) suggested |= T_OBJ;
        v = json_object_get(s, "additionalProperties");
        if (v && !json_is_true(v)) suggested |= T_OBJ;
        static const char *const dep_kw[] = {"dependentRequired", "dependentSchemas",
                                             "dependencies"};
        for (size_t k = 0; k < RL_ARRAY_LEN(dep_kw); k++) {
            v = json_object_get(s, dep_kw[k]);
            if (v && !(json_is_object(v) && json_object_size(v) == 0)) {
                suggested |= T_OBJ;
                if (!unsupported(c, s, dep_kw[k], "not expressible in a grammar")) return false;
            }
        }
        /* the rest */
        if (json_object_get(s, "not") && !unsupported(c, s, "not", "not expressible in a grammar"))
            return false;
        if (json_object_get(s, "if") &&
            (json_object_get(s, "then") || json_object_get(s, "else")) &&
            !unsupported(c, s, "if", "if/then/else is not expressible in a grammar"))
            return false;
        if (json_object_get(s, "$dynamicRef") && !unsupported(c, s, "$dynamicRef", "not supported"))
            return false;
        if (json_object_get(s, "$recursiveRef") &&
            !unsupported(c, s, "$recursiveRef", "not supported"))
            return false;
    }
    in->types &= in->spec_types & ~neg_max;
    /* without "type", the type the keywords suggest (when one of them is possible) */
    if (!has_type && !(c->flags & RL_SCHEMA_NO_TYPE_INFERENCE) && (in->types & suggested) &&
        !in->has_enum)
        in->types &= suggested;
    if (in->has_enum) {
        /* keep the values every piece accepts */
        json_t *keep = json_array();
        if (!keep) return nomem(c);
        for (size_t i = 0; i < json_array_size(in->enums); i++) {
            json_t *x = json_array_get(in->enums, i);
            bool ok = true;
            for (uint32_t k = 0; ok && k < l->n; k++) {
                rl_status st = RL_OK;
                int r = rl__schema_eval_ex(c->sc, l->p[k].s, x, true, &st, NULL, 0);
                if (r < 0) {
                    json_decref(keep);
                    return rl__gb_fail(&c->g, st, "%s: checking an enum value: %s",
                                       path_of(c, l->p[k].s), rl_status_str(st));
                }
                ok = r == 1;
            }
            if (ok && json_array_append(keep, x)) {
                json_decref(keep);
                return nomem(c);
            }
        }
        json_decref(in->enums);
        in->enums = keep;
        if (!json_array_size(keep)) in->dead = true;
    }
    if (!in->types && !in->has_enum) in->dead = true;
    return c->g.st == RL_OK;
}

static void info_free(info *in) {
    json_decref(in->enums);
    in->enums = NULL;
}

/* ---- object properties of a leaf -------------------------------------------------------- */

typedef struct prop {
    const char *name;
    plist conj;
    bool required, forbidden;
} prop;

typedef struct objinfo {
    prop *p;
    uint32_t n, cap;
    bool extras; /* more properties allowed */
    plist extra; /* their schema */
    /* properties whose names match the one pattern of patternProperties (when no declared
     * name matches it and no other additional property is allowed) */
    const char *pat;
    plist pat_conj;
    rl__smap idx; /* name -> index into p */
} objinfo;

static void obj_free(objinfo *o) {
    for (uint32_t i = 0; i < o->n; i++) pl_free(&o->p[i].conj);
    rl__free(o->p);
    pl_free(&o->extra);
    pl_free(&o->pat_conj);
    rl__smap_free(&o->idx);
    memset(o, 0, sizeof *o);
}

static prop *obj_find(objinfo *o, const char *name) {
    uint64_t i;
    return rl__smap_get(&o->idx, name, strlen(name), &i) ? &o->p[i] : NULL;
}

static prop *obj_add(conv *c, objinfo *o, const char *name) {
    prop *p = obj_find(o, name);
    if (p) return p;
    if (!rl__smap_put(&o->idx, name, strlen(name), o->n)) {
        nomem(c);
        return NULL;
    }
    if (o->n == o->cap) {
        uint32_t cap = o->cap ? o->cap * 2 : 8;
        prop *v = rl__realloc(o->p, cap * sizeof *v);
        if (!v) {
            nomem(c);
            return NULL;
        }
        o->p = v;
        o->cap = cap;
    }
    p = &o->p[o->n++];
    memset(p, 0, sizeof *p);
    p->name = name;
    return p;
}

/* Piece q is piece p or applied (directly or not) by p. */
static bool in_scope(const leaf *l, uint32_t p, uint32_t q) {
    for (int32_t x = (int32_t)q; x >= 0; x = l->p[x].parent)
        if ((uint32_t)x == p) return true;
    return false;
}

/* Whether the property name matches the patternProperties key k (compiled by the
 * validator under the key's pointer); -1 on error. */
static int name_matches(conv *c, const char *k, const char *name) {
    int r = rl__schema_pattern_match(c->sc, k, name, strlen(name));
    if (r < 0) rl__gb_fail(&c->g, RL_ERR_INTERNAL, "patternProperties: cannot match \"%s\"", k);
    return r;
}

/* Properties named by the single pattern of the leaf's patternProperties, with the schemas
 * each piece gives them (left out, which only narrows the grammar, when there are several
 * patterns, a declared name matches, or propertyNames is present). */
static bool pattern_props(conv *c, const leaf *l, objinfo *o) {
    const char *pat = NULL, *pat_key = NULL;
    for (uint32_t i = 0; i < l->n; i++) {
        const json_t *pps = json_object_get(l->p[i].s, "patternProperties");
        if (!json_is_object(pps)) continue;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)pps, k, v) {
            if (pat && strcmp(pat, k)) return true;
            if (!pat) pat = pat_key = k;
        }
        if (json_object_get(l->p[i].s, "propertyNames")) return true;
    }
    if (!pat) return true;
    for (uint32_t k = 0; k < o->n; k++) {
        int r = name_matches(c, pat_key, o->p[k].name);
        if (r) return r > 0;
    }
    plist conj = {0};
    bool use = true;
    for (uint32_t i = 0; use && i < l->n; i++) {
        const json_t *s = l->p[i].s;
        const json_t *pps = json_object_get(s, "patternProperties");
        const json_t *ps = json_is_object(pps) ? json_object_get(pps, pat) : NULL;
        const json_t *addl = json_object_get(s, "additionalProperties");
        if (ps) {
            if (!pl_add(&conj, ps)) use = nomem(c);
        } else if (addl && json_is_false(addl)) {
            use = false;
        } else if (addl && !json_is_true(addl) && !pl_add(&conj, addl)) {
            use = nomem(c);
        }
        const json_t *u = json_object_get(s, "unevaluatedProperties");
        if (use && u && !json_is_true(u)) {
            bool evaluated = false;
            for (uint32_t q = 0; q < l->n; q++) {
                if (!in_scope(l, i, q)) continue;
                const json_t *qp = json_object_get(l->p[q].s, "patternProperties");
                if ((json_is_object(qp) && json_object_get(qp, pat)) ||
                    json_object_get(l->p[q].s, "additionalProperties"))
                    evaluated = true;
            }
            if (!evaluated) {
                if (json_is_false(u))
                    use = false;
                else if (!pl_add(&conj, u))
                    use = nomem(c);
            }
        }
    }
    if (use) {
        o->pat = pat;
        o->pat_conj = conj;
    } else {
        pl_free(&conj);
    }
    return c->g.st == RL_OK;
}

/* The properties a leaf's objects may have, with the schemas each piece gives them. */
static bool object_props(conv *c, const info *in, objinfo *o) {
    memset(o, 0, sizeof *o);
    const leaf *l = in->l;
    /* declared names in order of first appearance, then required ones */
    for (uint32_t i = 0; i < l->n; i++) {
        const json_t *props = json_object_get(l->p[i].s, "properties");
        if (!json_is_object(props)) continue;
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)props, k, v) {
            if (!obj_add(c, o, k)) return false;
        }
    }
    for (uint32_t i = 0; i < l->n; i++) {
        const json_t *req = json_object_get(l->p[i].s, "required");
        for (size_t k = 0; json_is_array(req) && k < json_array_size(req); k++) {
            const json_t *r = json_array_get(req, k);
            if (!json_is_string(r)) continue;
            prop *p = obj_add(c, o, json_string_value(r));
            if (!p) return false;
            p->required = true;
        }
    }
    /* each property: what every piece with object keywords says about it */
    bool extras_explicit = false, extras_false = false;
    for (uint32_t i = 0; i < l->n; i++) {
        const json_t *s = l->p[i].s;
        const json_t *props = json_object_get(s, "properties");
        const json_t *pps = json_object_get(s, "patternProperties");
        const json_t *addl = json_object_get(s, "additionalProperties");
        const json_t *names = json_object_get(s, "propertyNames");
        if (addl && json_is_false(addl)) extras_false = true;
        if (addl && !json_is_false(addl)) extras_explicit = true;
        for (uint32_t k = 0; k < o->n; k++) {
            prop *p = &o->p[k];
            bool covered = false;
            const json_t *ps = json_is_object(props) ? json_object_get(props, p->name) : NULL;
            if (ps) {
                covered = true;
                if (!pl_add(&p->conj, ps)) return nomem(c);
            }
            if (json_is_object(pps)) {
                const char *pk;
                json_t *psch;
                json_object_foreach((json_t *)pps, pk, psch) {
                    int r = name_matches(c, pk, p->name);
                    if (r < 0) return false;
                    if (r) {
                        covered = true;
                        if (!pl_add(&p->conj, psch)) return nomem(c);
                    }
                }
            }
            if (!covered && addl) {
                if (json_is_false(addl))
                    p->forbidden = true;
                else if (!json_is_true(addl) && !pl_add(&p->conj, addl))
                    return nomem(c);
            }
            if (names) {
                json_t *nm = json_string(p->name);
                if (!nm) return nomem(c);
                rl_status st = RL_OK;
                int r = rl__schema_eval(c->sc, names, nm, &st, NULL, 0);
                json_decref(nm);
                if (r < 0) return rl__gb_fail(&c->g, st, "propertyNames: %s", rl_status_str(st));
                if (!r) p->forbidden = true;
            }
        }
    }
    /* unevaluatedProperties: a property no piece in its scope evaluates */
    for (uint32_t i = 0; i < l->n; i++) {
        const json_t *u = json_object_get(l->p[i].s, "unevaluatedProperties");
        if (!u || json_is_true(u)) continue;
        for (uint32_t k = 0; k < o->n; k++) {
            prop *p = &o->p[k];
            bool evaluated = false;
            for (uint32_t q = 0; q < l->n && !evaluated; q++) {
                if (!in_scope(l, i, q)) continue;
                const json_t *s = l->p[q].s;
                const json_t *props = json_object_get(s, "properties");
                if ((json_is_object(props) && json_object_get(props, p->name)) ||
                    json_object_get(s, "additionalProperties"))
                    evaluated = true;
                const json_t *pps = json_object_get(s, "patternProperties");
                if (!evaluated && json_is_object(pps)) {
                    const char *pk;
                    json_t *psch;
                    json_object_foreach((json_t *)pps, pk, psch) {
                        int r = name_matches(c, pk, p->name);
                        if (r < 0) return false;
                        if (r) evaluated = true;
                    }
                }
            }
            if (evaluated) continue;
            if (json_is_false(u))
                p->forbidden = true;
            else if (!pl_add(&p->conj, u))
                return nomem(c);
        }
    }
    /* additional properties: where a piece allows them, with the flag, or for an object
     * that declares no property at all ({"type": "object"}: any object) */
    bool declares = o->n > 0;
    for (uint32_t i = 0; i < l->n; i++)
        if (json_object_get(l->p[i].s, "patternProperties") ||
            json_object_get(l->p[i].s, "properties"))
            declares = true; /* {"properties": {}} too: llama.cpp gives "{}" */
    bool extras =
        !extras_false && (extras_explicit || (c->flags & RL_SCHEMA_EXTRA_PROPERTIES) || !declares);
    for (uint32_t i = 0; extras && i < l->n; i++) {
        const json_t *s = l->p[i].s;
        const json_t *addl = json_object_get(s, "additionalProperties");
        if (json_is_object(addl) && !pl_add(&o->extra, addl)) return nomem(c);
        const json_t *u = json_object_get(s, "unevaluatedProperties");
        if (u && !json_is_true(u)) {
            bool evaluated = false;
            for (uint32_t q = 0; q < l->n; q++)
                if (in_scope(l, i, q) && json_object_get(l->p[q].s, "additionalProperties"))
                    evaluated = true;
            if (!evaluated) {
                if (json_is_false(u))
                    extras = false;
                else if (!pl_add(&o->extra, u))
                    return nomem(c);
            }
        }
    }
    for (uint32_t i = 0; extras && i < l->n; i++) {
        const json_t *s = l->p[i].s;
        const json_t *pps = json_object_get(s, "patternProperties");
        if (json_is_object(pps) && json_object_size(pps)) {
            if (!unsupported(c, s, "patternProperties",
                             "additional properties would have to match or avoid the patterns"))
                return false;
        }
        if (json_object_get(s, "propertyNames") &&
            !unsupported(c, s, "propertyNames",
                         "names of additional properties cannot be "
                         "constrained"))
            return false;
    }
    o->extras = extras;
    if (!extras && !pattern_props(c, l, o)) return false;
    return c->g.st == RL_OK;
}

/* ---- visiting a conjunction --------------------------------------------------------------- */

static bool visit(conv *c, plist *conj, const char *hint, char **expr, bool *never);

static int cmp_ptr(const void *a, const void *b) {
    uintptr_t x = (uintptr_t) * (const json_t *const *)a,
              y = (uintptr_t) * (const json_t *const *)b;
    return x < y ? -1 : x > y;
}

/* Visit the conjunction of schemas v[0..n) (copied). */
static bool visit_list(conv *c, const json_t *const *v, uint32_t n, const char *hint, char **expr,
                       bool *never) {
    plist l = {0};
    for (uint32_t i = 0; i < n; i++)
        if (!pl_add(&l, v[i])) {
            pl_free(&l);
            return nomem(c);
        }
    bool ok = visit(c, &l, hint, expr, never);
    pl_free(&l);
    return ok;
}

static bool visit1(conv *c, const json_t *s, const char *hint, char **expr, bool *never) {
    return visit_list(c, &s, 1, hint, expr, never);
}

static char *xstrdup(conv *c, const char *s) {
    char *r = rl__strdup(s);
    if (!r) nomem(c);
    return r;
}

static char *sub_hint(const char *name, const char *suffix) {
    rl__sstr s = {0};
    if (strcmp(name, "root")) {
        rl__sstr_puts(&s, name);
        rl__sstr_putc(&s, '-');
    }
    rl__sstr_puts(&s, suffix);
    return rl__sstr_take(&s);
}

/* ---- strings -------------------------------------------------------------------------------- */

static const struct {
    const char *format, *rule;
    uint64_t min, max; /* length in code points */
} FORMATS[] = {
    {"date", "date", 10, 10},
    {"time", "time", 14, RL__RE_INF},
    {"date-time", "date-time", 25, RL__RE_INF},
    {"uuid", "uuid", 36, 36},
    {"email", "email", 5, RL__RE_INF},
    {"hostname", "hostname", 1, RL__RE_INF},
    {"ipv4", "ipv4", 7, 15},
    {"uri", "uri", 3, RL__RE_INF},
};

static bool emit_string(conv *c, const info *in, const char *name, rl__sstr *out, bool *never) {
    *never = false;
    uint64_t lo = in->min_len, hi = in->max_len;
    if (hi != RL__RE_INF && lo > hi) {
        *never = true;
        return true;
    }
    const char *format = in->format;
    if (in->pattern) {
        if (format) {
            if (!unsupported(c, in->format_at, "format", "together with a pattern")) return false;
            format = NULL;
        }
        const char *pat = json_string_value(in->pattern);
        rl__re re;
        char err[256];
        rl_status st = rl__re_parse(pat, json_string_length(in->pattern), &re, err, sizeof err);
        if (st == RL_ERR_NOMEM) return nomem(c);
        if (st != RL_OK) {
            if (!unsupported(c, in->pattern_at, "pattern", err)) return false;
        } else {
            uint64_t rmin, rmax;
            rl__re_bounds(&re, re.root, &rmin, &rmax);
            bool anchored_both = false;
            {
                const rl__re_node *root = &re.nodes[re.root];
                if (root->kind == RL__RE_SEQ && root->n >= 2 &&
                    re.nodes[root->kids[0]].kind == RL__RE_BOL &&
                    re.nodes[root->kids[root->n - 1]].kind == RL__RE_EOL)
                    anchored_both = true;
            }
            if (!anchored_both) rmax = RL__RE_INF;
            bool implied = rmin >= lo && (hi == RL__RE_INF || (rmax != RL__RE_INF && rmax <= hi));
            if (!implied) {
                bool nv = false;
                if (anchored_both && rl__re_fit_length(&re, lo, hi, &nv)) {
                    if (nv) {
                        rl__re_free(&re);
                        *never = true;
                        return true;
                    }
                } else {
                    rl__re_free(&re);
                    if (!unsupported(c, in->pattern_at, "pattern",
                                     "together with minLength/maxLength (only a pattern that is "
                                     "one repetition between fixed parts can be narrowed)"))
                        return false;
                    /* lenient: keep the length, drop the pattern */
                    goto lengths;
                }
            }
            rl__sstr body = {0};
            bool nv = false;
            bool ok = rl__re_emit(&re, &c->g, name, true, true, &body, &nv);
            rl__re_free(&re);
            if (!ok) {
                rl__sstr_free(&body);
                return false;
            }
            if (nv) {
                rl__sstr_free(&body);
                *never = true;
                return true;
            }
            rl__sstr_puts(out, "\"\\\"\"");
            if (body.len) {
                bool grp = rl__gb_needs_group(body.p);
                rl__sstr_puts(out, grp ? " (" : " ");
                rl__sstr_put(out, body.p, body.len);
                if (grp) rl__sstr_putc(out, ')');
            }
            rl__sstr_puts(out, " \"\\\"\"");
            rl__sstr_free(&body);
            return true;
        }
    }
    if (format) {
        size_t f = 0;
        while (f < RL_ARRAY_LEN(FORMATS) && strcmp(FORMATS[f].format, format)) f++;
        if (f == RL_ARRAY_LEN(FORMATS)) {
            if (!unsupported(c, in->format_at, "format", "this format is not supported"))
                return false;
        } else {
            uint64_t fmin = FORMATS[f].min, fmax = FORMATS[f].max;
            bool implied = fmin >= lo && (hi == RL__RE_INF || (fmax != RL__RE_INF && fmax <= hi));
            bool disjoint = (hi != RL__RE_INF && fmin > hi) || (fmax != RL__RE_INF && fmax < lo);
            if (disjoint) {
                *never = true;
                return true;
            }
            if (!implied) {
                if (!unsupported(c, in->format_at, "format", "together with minLength/maxLength"))
                    return false;
            } else {
                const char *r = rl__gb_prim(&c->g, FORMATS[f].rule);
                if (!r) return false;
                rl__sstr_printf(out, "\"\\\"\" %s \"\\\"\"", r);
                return true;
            }
        }
    }
lengths:
    if (lo == 0 && hi == RL__RE_INF) {
        const char *r = rl__gb_prim(&c->g, "string");
        if (!r) return false;
        rl__sstr_puts(out, r);
        return true;
    }
    const char *ch = rl__gb_prim(&c->g, "char");
    if (!ch) return false;
    rl__sstr_puts(out, "\"\\\"\" ");
    if (!rl__gb_rep(&c->g, out, ch, lo, hi)) return false;
    if (hi == 0)
        rl__sstr_puts(out, "\"\\\"\"");
    else
        rl__sstr_puts(out, " \"\\\"\"");
    return true;
}

/* ---- numbers -------------------------------------------------------------------------------- */

static long double num_ld(const json_t *v) {
    return json_is_integer(v) ? (long double)json_integer_value(v)
                              : (long double)json_real_value(v);
}

/* Fractions of a number with bounds. The validator compares doubles: a decimal of at most
 * 15 significant digits reads back to a double that orders as the decimal does (DBL_DIG),
 * so a fraction may have at most 15 - (digits of the integer part) digits; then no value
 * the grammar writes can round onto an exclusive bound. */
#define FRAC_ZERO "(\".\" [0]{1,16})?"

static void put_int_part(rl__sstr *out, int64_t a, int64_t b);

static int n_digits(int64_t v) {
    int d = 1;
    while (v >= 10) v /= 10, d++;
    return d;
}

/* kind 0: any fraction (or none), 1: a non-zero fraction, 2: zeros only (or none). */
static void put_frac(rl__sstr *out, int kind, int cap) {
    if (kind == 2) {
        rl__sstr_puts(out, " " FRAC_ZERO);
    } else if (kind == 0) {
        if (cap == 1)
            rl__sstr_puts(out, " (\".\" [0-9])?");
        else if (cap > 1)
            rl__sstr_printf(out, " (\".\" [0-9]{1,%d})?", cap);
    } else {
        /* up to the last non-zero digit within the cap; trailing zeros change nothing */
        if (cap == 1)
            rl__sstr_puts(out, " \".\" [1-9] [0]{0,15}");
        else
            rl__sstr_printf(out, " \".\" [0-9]{0,%d} [1-9] [0]{0,15}", cap - 1);
    }
}

/* Integer parts in [a, b] with a fraction of the kind, split by number of digits. */
static int int_parts(rl__sstr *out, int alts, int64_t a, int64_t b, int kind) {
    for (int64_t lo = a; lo <= b;) {
        int d = n_digits(lo);
        int64_t top = d >= 18 ? INT64_MAX : 1;
        for (int k = 0; k < d && d < 18; k++) top *= 10;
        int64_t hi = d >= 18 ? b : (top - 1 < b ? top - 1 : b);
        int cap = 15 - d;
        if (kind == 1 && cap < 1) break; /* no room for a non-zero fraction */
        if (alts++) rl__sstr_puts(out, " | ");
        put_int_part(out, lo, hi);
        put_frac(out, kind, cap);
        if (hi == INT64_MAX || hi >= b) break;
        lo = hi + 1;
    }
    return alts;
}

static void put_int_part(rl__sstr *out, int64_t a, int64_t b) {
    rl__sstr t = {0};
    rl__gb_int_range(&t, a, b);
    bool grp = t.p && rl__gb_needs_group(t.p);
    if (grp) rl__sstr_putc(out, '(');
    rl__sstr_put(out, t.p ? t.p : "", t.len);
    if (grp) rl__sstr_putc(out, ')');
    if (t.oom) out->oom = true;
    rl__sstr_free(&t);
}

/* Non-negative numbers without exponent whose value v satisfies a <(=) v <(=) b (b < 0:
 * unbounded), a and b integers. Returns the number of alternatives written. */
static int mag_number(rl__sstr *out, int64_t a, bool ax, int64_t b, bool bx) {
    int alts = 0;
    if (b >= 0 && a == b) {
        if (ax || bx) return 0;
        return int_parts(out, alts, a, a, 2);
    }
    if (b >= 0 && a > b) return 0;
    int64_t mid_lo = ax ? a + 1 : a;
    int64_t mid_hi = b >= 0 ? b - 1 : (a + 1 > INT_CAP ? a + 1 : INT_CAP);
    if (ax) alts = int_parts(out, alts, a, a, 1);
    if (mid_lo <= mid_hi) alts = int_parts(out, alts, mid_lo, mid_hi, 0);
    if (b >= 0 && !bx) alts = int_parts(out, alts, b, b, 2);
    return alts;
}

/* A non-negative decimal ip.fd (fd: fraction digits without trailing zeros). */
typedef struct dec {
    int64_t ip;
    char fd[40];
} dec;

/* |v| as a decimal (the shortest text that reads back to v); false when that needs more
 * than 15 significant digits or the integer part exceeds 64 bits. */
static bool to_dec(const json_t *v, dec *d, bool *neg) {
    memset(d, 0, sizeof *d);
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        *neg = x < 0;
        if (x == INT64_MIN) return false;
        d->ip = x < 0 ? -x : x;
        return true;
    }
    double x = json_real_value(v);
    *neg = x < 0;
    x = fabs(x);
    char buf[64];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*e", prec - 1, x);
        if (strtod(buf, NULL) == x) break;
    }
    if (prec > 15) return false;
    /* buf: d[.ddd]e[+-]EE */
    char digits[24];
    int nd = 0;
    const char *q = buf;
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9') digits[nd++] = *q;
    int ex = atoi(q + 1);
    int point = ex + 1; /* digits before the point */
    if (point > 18) return false;
    int64_t ip = 0;
    for (int k = 0; k < point; k++) ip = ip * 10 + (k < nd ? digits[k] - '0' : 0);
    d->ip = ip;
    int f = 0;
    for (int k = point; k < nd; k++) {
        if (f >= (int)sizeof d->fd - 1) return false;
        d->fd[f++] = k < 0 ? '0' : digits[k];
    }
    if (point < 0) {
        /* 0.000ddd */
        f = 0;
        for (int k = 0; k < -point; k++) d->fd[f++] = '0';
        for (int k = 0; k < nd && f < (int)sizeof d->fd - 1; k++) d->fd[f++] = digits[k];
        if (f >= (int)sizeof d->fd - 1) return false;
    }
    d->fd[f] = 0;
    while (f > 0 && d->fd[f - 1] == '0') d->fd[--f] = 0;
    return true;
}

static int dec_cmp(const dec *a, const dec *b) {
    if (a->ip != b->ip) return a->ip < b->ip ? -1 : 1;
    int k = strcmp(a->fd, b->fd); /* no trailing zeros: strcmp orders fractions */
    return k < 0 ? -1 : k > 0;
}

static int dec_cmp_signed(const dec *a, bool an, const dec *b, bool bn) {
    bool az = !a->ip && !a->fd[0], bz = !b->ip && !b->fd[0];
    if (az) an = false;
    if (bz) bn = false;
    if (an != bn) return an ? -1 : 1;
    int k = dec_cmp(a, b);
    return an ? -k : k;
}

/* Fraction digits after `pos` of them, at most rem more, with lo <(=) 0.f <(=) hi: tl/th
 * say f equals lo's / hi's digits so far (NULL hi: no upper bound). Writes the
 * alternatives that continue with a digit into out; returns whether f may end here. */
static bool frac_rec(rl__sstr *out, const char *lo, bool lx, bool tl, const char *hi, bool hx,
                     bool th, size_t pos, int rem) {
    size_t nl = strlen(lo), nh = hi ? strlen(hi) : 0;
    /* past lo's digits f equals lo: whatever follows keeps f >= lo */
    if (tl && pos >= nl && !lx) tl = false;
    bool can_end = (!tl || (pos >= nl && !lx)) && (!th || pos < nh || !hx);
    if (rem <= 0) return can_end;
    if (th && pos >= nh && !tl) {
        /* f equals hi: only zeros may follow */
        if (hx) return false;
        if (rem == 1)
            rl__sstr_puts(out, "[0]");
        else
            rl__sstr_printf(out, "[0]{1,%d}", rem);
        return true;
    }
    if (tl && pos >= nl && !th) {
        /* f equals lo and must exceed it: a non-zero digit must come */
        if (rem == 1)
            rl__sstr_puts(out, "[1-9] [0]{0,15}");
        else
            rl__sstr_printf(out, "[0-9]{0,%d} [1-9] [0]{0,15}", rem - 1);
        return false;
    }
    char lo_d = tl ? (pos < nl ? lo[pos] : '0') : '0';
    char hi_d = th ? (pos < nh ? hi[pos] : '0') : '9';
    if (lo_d > hi_d) return can_end;
    int alts = 0;
    /* one digit and what may follow it */
    for (int part = 0; part < 3; part++) {
        char a, b;
        bool ntl, nth;
        if (part == 0) { /* the digit that keeps f equal to lo (and maybe hi) */
            if (!tl) continue;
            a = b = lo_d, ntl = true, nth = th && lo_d == hi_d;
        } else if (part == 1) { /* digits strictly between: anything may follow */
            a = (char)(lo_d + (tl ? 1 : 0));
            b = (char)(hi_d - (th ? 1 : 0));
            if (a > b) continue;
            ntl = nth = false;
        } else { /* the digit that keeps f equal to hi */
            if (!th || (tl && lo_d == hi_d)) continue;
            a = b = hi_d, ntl = false, nth = true;
        }
        rl__sstr cont = {0};
        bool cend;
        if (!ntl && !nth) {
            cend = true;
            if (rem - 1 == 1)
                rl__sstr_puts(&cont, "[0-9]");
            else if (rem > 2)
                rl__sstr_printf(&cont, "[0-9]{0,%d}", rem - 1);
        } else {
            cend = frac_rec(&cont, lo, lx, ntl, hi, hx, nth, pos + 1, rem - 1);
        }
        if (!cont.len && !cend) {
            rl__sstr_free(&cont);
            continue;
        }
        if (alts++) rl__sstr_puts(out, " | ");
        if (a == b)
            rl__sstr_printf(out, "[%c]", a);
        else
            rl__sstr_printf(out, "[%c-%c]", a, b);
        if (cont.len) {
            bool free_rep = !ntl && !nth && strstr(cont.p, "{");
            bool atom = rl__gb_is_atom(cont.p);
            if (free_rep)
                rl__sstr_printf(out, " %s", cont.p);
            else if (cend)
                rl__sstr_printf(out, atom ? " %s?" : " (%s)?", cont.p);
            else
                rl__sstr_printf(out, atom ? " %s" : " (%s)", cont.p);
        }
        if (cont.oom) out->oom = true;
        rl__sstr_free(&cont);
    }
    return can_end;
}

/* The fraction (with its point) of a number whose integer part has d digits, with the
 * bounds of frac_rec; false when no fraction fits. */
static bool put_frac_dec(rl__sstr *out, int d, const char *lo, bool lx, const char *hi, bool hx) {
    rl__sstr alts = {0};
    bool can_end = frac_rec(&alts, lo, lx, lo[0] || lx, hi, hx, hi != NULL, 0, 15 - d);
    bool ok = true;
    if (alts.len) {
        bool atom = rl__gb_is_atom(alts.p);
        rl__sstr_printf(out, can_end ? " (\".\" %s%s%s)?" : " \".\" %s%s%s", atom ? "" : "(",
                        alts.p, atom ? "" : ")");
    } else {
        ok = can_end;
    }
    if (alts.oom) out->oom = true;
    rl__sstr_free(&alts);
    return ok;
}

/* Non-negative numbers without exponent whose value v satisfies a <(=) v <(=) b (b NULL:
 * unbounded), a and b decimals. Returns the number of alternatives written. */
static int mag_dec(rl__sstr *out, const dec *a, bool ax, const dec *b, bool bx) {
    if (!a->fd[0] && (!b || !b->fd[0]))
        return mag_number(out, a->ip, ax, b ? b->ip : -1, bx); /* integer bounds */
    if (b) {
        int k = dec_cmp(a, b);
        if (k > 0 || (k == 0 && (ax || bx))) return 0;
    }
    int alts = 0;
    if (b && a->ip == b->ip) {
        rl__sstr x = {0};
        put_int_part(&x, a->ip, a->ip);
        if (put_frac_dec(&x, n_digits(a->ip), a->fd, ax, b->fd, bx)) {
            rl__sstr_put(out, x.p, x.len);
            alts++;
        }
        if (x.oom) out->oom = true;
        rl__sstr_free(&x);
        return alts;
    }
    /* the integer part of a, with a fraction at least a's */
    rl__sstr x = {0};
    put_int_part(&x, a->ip, a->ip);
    if (put_frac_dec(&x, n_digits(a->ip), a->fd, ax, NULL, false)) {
        rl__sstr_put(out, x.p, x.len);
        alts++;
    }
    if (x.oom) out->oom = true;
    rl__sstr_free(&x);
    /* the integer parts between, anything after the point */
    int64_t mid_lo = a->ip + 1;
    int64_t mid_hi = b ? b->ip - 1 : (mid_lo > INT_CAP ? mid_lo : INT_CAP);
    if (mid_lo <= mid_hi) alts = int_parts(out, alts, mid_lo, mid_hi, 0);
    /* the integer part of b, with a fraction at most b's */
    if (b) {
        rl__sstr y = {0};
        put_int_part(&y, b->ip, b->ip);
        if (put_frac_dec(&y, n_digits(b->ip), "", false, b->fd, bx)) {
            if (alts++) rl__sstr_puts(out, " | ");
            rl__sstr_put(out, y.p, y.len);
        }
        if (y.oom) out->oom = true;
        rl__sstr_free(&y);
    }
    return alts;
}

static bool emit_number(conv *c, const info *in, bool int_only, rl__sstr *out, bool *never) {
    *never = false;
    if (!in->lo.v && !in->hi.v) {
        const char *r = rl__gb_prim(&c->g, int_only ? "integer" : "number");
        if (!r) return false;
        rl__sstr_puts(out, r);
        return true;
    }
    const long double LIM = 9223372036854775807.0L;
    bool has_lo = in->lo.v != NULL, has_hi = in->hi.v != NULL;
    long double lo = has_lo ? num_ld(in->lo.v) : 0, hi = has_hi ? num_ld(in->hi.v) : 0;
    if ((has_lo && !(fabsl(lo) <= LIM)) || (has_hi && !(fabsl(hi) <= LIM))) {
        if (has_lo && lo > LIM) {
            *never = true;
            return true;
        }
        if (has_hi && hi < -LIM) {
            *never = true;
            return true;
        }
        if (!unsupported(c, in->l->p[0].s, "minimum", "bounds beyond 9.2e18 are not supported"))
            return false;
        if (has_lo && lo < -LIM) has_lo = false;
        if (has_hi && hi > LIM) has_hi = false;
    }
    if (int_only) {
        int64_t L = 0, H = 0;
        if (has_lo) {
            long double cl = ceill(lo);
            if (in->lo.excl && cl == lo) cl += 1;
            if (cl > LIM) {
                *never = true;
                return true;
            }
            L = (int64_t)cl;
        }
        if (has_hi) {
            long double fl = floorl(hi);
            if (in->hi.excl && fl == hi) fl -= 1;
            if (fl < -LIM) {
                *never = true;
                return true;
            }
            H = (int64_t)fl;
        }
        if (!has_lo) L = has_hi && H < -INT_CAP ? -INT64_MAX : -INT_CAP;
        if (!has_hi) H = L > INT_CAP ? INT64_MAX : INT_CAP;
        if (L < -INT64_MAX) L = -INT64_MAX;
        if (L > H) {
            *never = true;
            return true;
        }
        rl__sstr t = {0};
        rl__gb_int_range(&t, L, H);
        bool grp = t.p && rl__gb_needs_group(t.p);
        if (grp) rl__sstr_putc(out, '(');
        rl__sstr_put(out, t.p ? t.p : "", t.len);
        if (grp) rl__sstr_putc(out, ')');
        rl__sstr_free(&t);
        return true;
    }
    /* numbers: bounds as decimals of at most 15 significant digits, compared digit by digit */
    bool lx = in->lo.excl, hx = in->hi.excl;
    dec L = {0}, H = {0};
    bool lneg = false, hneg = false;
    bool ok_lo = !has_lo || to_dec(in->lo.v, &L, &lneg);
    bool ok_hi = !has_hi || to_dec(in->hi.v, &H, &hneg);
    if (!ok_lo || !ok_hi) {
        const json_t *at = in->l->p[0].s;
        if (!unsupported(c, at, !ok_lo ? "minimum" : "maximum",
                         "a bound with more than 15 significant digits cannot be compared "
                         "exactly"))
            return false;
        /* lenient: widen to the enclosing integers */
        if (!ok_lo) {
            long double f = floorl(lo);
            L = (dec){(int64_t)fabsl(f), ""};
            lneg = f < 0;
            lx = false;
        }
        if (!ok_hi) {
            long double f = ceill(hi);
            H = (dec){(int64_t)fabsl(f), ""};
            hneg = f < 0;
            hx = false;
        }
    }
    if (has_lo && has_hi) {
        int k = dec_cmp_signed(&L, lneg, &H, hneg);
        if (k > 0 || (k == 0 && (lx || hx))) {
            *never = true;
            return true;
        }
    }
    bool l_is_zero = has_lo && !L.ip && !L.fd[0], h_is_zero = has_hi && !H.ip && !H.fd[0];
    if (l_is_zero) lneg = false;
    if (h_is_zero) hneg = false;
    rl__sstr t = {0};
    int alts = 0;
    /* v >= 0 */
    if (!has_hi || (!hneg && !(h_is_zero && hx))) {
        dec a = {0};
        bool ax = false;
        if (has_lo && !lneg) a = L, ax = lx;
        alts += mag_dec(&t, &a, ax, has_hi ? &H : NULL, hx);
    }
    /* v < 0: "-" and the magnitude, which is > 0 */
    if (!has_lo || (lneg && !l_is_zero)) {
        dec a = {0};
        bool ax = true;
        if (has_hi && hneg) a = H, ax = hx;
        rl__sstr m = {0};
        int k = mag_dec(&m, &a, ax, has_lo ? &L : NULL, lx);
        if (k) {
            if (alts) rl__sstr_puts(&t, " | ");
            rl__sstr_puts(&t, k > 1 ? "\"-\" (" : "\"-\" ");
            rl__sstr_put(&t, m.p, m.len);
            if (k > 1) rl__sstr_putc(&t, ')');
            alts++;
        }
        if (m.oom) t.oom = true;
        rl__sstr_free(&m);
    }
    if (!alts) {
        rl__sstr_free(&t);
        *never = true;
        return true;
    }
    rl__sstr_putc(out, '(');
    rl__sstr_put(out, t.p, t.len);
    rl__sstr_putc(out, ')');
    if (t.oom) out->oom = true;
    rl__sstr_free(&t);
    return true;
}

/* ---- objects -------------------------------------------------------------------------------- */

typedef struct tnode {
    uint32_t cp;
    bool end;
    bool block;         /* a name was cut here: no key goes on from this prefix */
    struct tnode *kids; /* array */
    uint32_t n, cap;
} tnode;

static void trie_free(tnode *t) {
    for (uint32_t i = 0; i < t->n; i++) trie_free(&t->kids[i]);
    rl__free(t->kids);
}

/* Names longer than this many code points are cut: keys that share the cut prefix are all
 * left out (sound, and it bounds the nesting of the key rule). */
#define TRIE_DEPTH 200

static bool trie_add(tnode *t, const char *s, size_t n) {
    size_t depth = 0;
    for (size_t i = 0; i < n;) {
        if (depth++ == TRIE_DEPTH) {
            t->block = true;
            return true;
        }
        uint32_t cp;
        size_t k = rl__sch_utf8_decode(s + i, n - i, &cp);
        if (!k) return true; /* not valid UTF-8: cannot be a key the grammar writes */
        i += k;
        uint32_t j = 0;
        while (j < t->n && t->kids[j].cp != cp) j++;
        if (j == t->n) {
            if (t->n == t->cap) {
                uint32_t cap = t->cap ? t->cap * 2 : 4;
                tnode *v = rl__realloc(t->kids, cap * sizeof *v);
                if (!v) return false;
                t->kids = v;
                t->cap = cap;
            }
            memset(&t->kids[t->n], 0, sizeof t->kids[0]);
            t->kids[t->n++].cp = cp;
        }
        t = &t->kids[j];
    }
    t->end = true;
    return true;
}

static int cmp_tnode(const void *a, const void *b) {
    uint32_t x = ((const tnode *)a)->cp, y = ((const tnode *)b)->cp;
    return x < y ? -1 : x > y;
}

/* The escape letter of cp in a canonical key (kchar), 0 when cp is written raw, -1 when
 * kchar cannot write it. */
static int key_escape(uint32_t cp) {
    switch (cp) {
    case '"':
        return '"';
    case '\\':
        return '\\';
    case 8:
        return 'b';
    case 12:
        return 'f';
    case '\n':
        return 'n';
    case '\r':
        return 'r';
    case '\t':
        return 't';
    default:
        return cp < 0x20 || cp == 0x7F ? -1 : 0;
    }
}

/* Keys (in kchar's canonical encoding) that differ from every name of the trie. */
static void trie_emit(tnode *t, const char *kchar, rl__sstr *out) {
    if (t->n) qsort(t->kids, t->n, sizeof *t->kids, cmp_tnode);
    rl__sstr_putc(out, '(');
    int alts = 0;
    rl__sstr raw = {0}, esc = {0};
    for (uint32_t i = 0; i < t->n; i++) {
        tnode *k = &t->kids[i];
        int e = key_escape(k->cp);
        if (e < 0) continue;
        if (e) {
            if (e == '"' || e == '\\') rl__sstr_putc(&esc, '\\');
            rl__sstr_putc(&esc, (char)e);
        } else {
            rl__gb_class_cp(&raw, k->cp);
        }
        if (k->block) continue; /* excluded above, nothing goes on from here */
        if (alts++) rl__sstr_puts(out, " | ");
        if (e) {
            char lit[8];
            snprintf(lit, sizeof lit, "\\%c", e);
            rl__gb_lit(out, lit, 2);
        } else {
            rl__sstr u = {0};
            rl__sstr_put_cp(&u, k->cp);
            rl__gb_lit(out, u.p ? u.p : "", u.len);
            rl__sstr_free(&u);
        }
        rl__sstr_putc(out, ' ');
        trie_emit(k, kchar, out);
    }
    /* a different character here, then anything */
    if (alts++) rl__sstr_puts(out, " | ");
    rl__sstr_printf(out, "[^\"\\\\\\x7F\\x00-\\x1F%s] %s*", raw.p ? raw.p : "", kchar);
    const char *all = "\"\\bfnrt";
    rl__sstr rest = {0};
    for (const char *a = all; *a; a++) {
        bool taken = false;
        for (size_t j = 0; esc.p && j < esc.len; j++) {
            if (esc.p[j] == '\\' && j + 1 < esc.len) {
                if (esc.p[j + 1] == *a) taken = true;
                j++;
            } else if (esc.p[j] == *a) {
                taken = true;
            }
        }
        if (taken) continue;
        if (*a == '"' || *a == '\\') rl__sstr_putc(&rest, '\\');
        rl__sstr_putc(&rest, *a);
    }
    if (rest.len) rl__sstr_printf(out, " | \"\\\\\" [%s] %s*", rest.p, kchar);
    rl__sstr_putc(out, ')');
    if (!t->end) rl__sstr_putc(out, '?');
    if (raw.oom || esc.oom || rest.oom) out->oom = true;
    rl__sstr_free(&raw);
    rl__sstr_free(&esc);
    rl__sstr_free(&rest);
}

static bool emit_object(conv *c, const info *in, const char *name, rl__sstr *out, bool *never) {
    *never = false;
    objinfo o;
    if (!object_props(c, in, &o)) {
        obj_free(&o);
        return false;
    }
    const char *sp = c->sp;
    if (!o.n && o.extras && !o.extra.n && !in->min_props && in->max_props == RL__RE_INF) {
        obj_free(&o);
        const char *r = rl__gb_prim(&c->g, "object");
        return r && rl__sstr_puts(out, r);
    }
    char **kv = rl__calloc(o.n + 1, sizeof *kv);
    bool *use = rl__calloc(o.n + 1, sizeof *use);
    bool ok = kv && use;
    if (!ok) nomem(c);
    uint32_t n_req = 0, n_opt = 0;
    for (uint32_t i = 0; ok && i < o.n; i++) {
        prop *p = &o.p[i];
        if (p->forbidden) {
            if (p->required) *never = true;
            continue;
        }
        char *hint = sub_hint(name, p->name);
        if (!hint) {
            ok = nomem(c);
            break;
        }
        char *vexpr = NULL;
        bool nv = false;
        ok = visit(c, &p->conj, hint, &vexpr, &nv);
        if (ok && nv) {
            if (p->required) *never = true;
            rl__free(hint);
            continue;
        }
        if (!ok) {
            rl__free(hint);
            break;
        }
        rl__sstr body = {0}, key = {0}, kh = {0};
        rl__sstr_putc(&key, '"');
        rl__json_canon_str(p->name, strlen(p->name), &key);
        rl__sstr_putc(&key, '"');
        rl__gb_lit(&body, key.p, key.len);
        rl__sstr_printf(&body, "%s\":\"%s%s", sp, sp, vexpr);
        rl__sstr_printf(&kh, "%s-kv", hint);
        rl__free(vexpr);
        rl__free(hint);
        const char *r = NULL;
        if (body.oom || key.oom || kh.oom)
            ok = nomem(c);
        else
            r = rl__gb_add(&c->g, kh.p, body.p);
        rl__sstr_free(&body);
        rl__sstr_free(&key);
        rl__sstr_free(&kh);
        if (!r) {
            ok = false;
            break;
        }
        kv[i] = xstrdup(c, r);
        if (!kv[i]) {
            ok = false;
            break;
        }
        use[i] = true;
        if (p->required)
            n_req++;
        else
            n_opt++;
    }
    /* additional properties */
    char *extra_kv = NULL;
    if (ok && !*never && o.extras) {
        char *vexpr = NULL;
        bool nv = false;
        char *vh = sub_hint(name, "additional-value");
        ok = vh ? visit(c, &o.extra, vh, &vexpr, &nv) : nomem(c);
        rl__free(vh);
        if (ok && !nv) {
            const char *key = NULL;
            if (o.n == 0) {
                key = rl__gb_prim(&c->g, "string");
            } else {
                tnode t = {0};
                for (uint32_t i = 0; ok && i < o.n; i++)
                    if (!trie_add(&t, o.p[i].name, strlen(o.p[i].name))) ok = nomem(c);
                const char *kchar = ok ? rl__gb_prim(&c->g, "kchar") : NULL;
                if (kchar) {
                    rl__sstr kb = {0};
                    rl__sstr_puts(&kb, "\"\\\"\" ");
                    trie_emit(&t, kchar, &kb);
                    rl__sstr_puts(&kb, " \"\\\"\"");
                    char *kh = sub_hint(name, "additional-k");
                    if (kb.oom || !kh)
                        ok = nomem(c);
                    else
                        key = rl__gb_add(&c->g, kh, kb.p);
                    rl__free(kh);
                    rl__sstr_free(&kb);
                }
                trie_free(&t);
            }
            if (key) {
                rl__sstr body = {0};
                rl__sstr_printf(&body, "%s%s\":\"%s%s", key, sp, sp, vexpr);
                char *kh = sub_hint(name, "additional-kv");
                const char *r = (body.oom || !kh) ? NULL : rl__gb_add(&c->g, kh, body.p);
                if (!r && c->g.st == RL_OK) nomem(c);
                rl__free(kh);
                rl__sstr_free(&body);
                if (r) extra_kv = xstrdup(c, r);
            }
            ok = c->g.st == RL_OK;
        }
        rl__free(vexpr);
    }
    /* properties named by a pattern */
    if (ok && !*never && !extra_kv && o.pat) {
        rl__re re;
        char rerr[256];
        rl_status rst = rl__re_parse(o.pat, strlen(o.pat), &re, rerr, sizeof rerr);
        if (rst == RL_ERR_NOMEM) ok = nomem(c);
        if (rst == RL_OK) {
            char *kh = sub_hint(name, "pattern-k");
            rl__sstr kb = {0}, content = {0};
            bool nv = false;
            if (!kh) ok = nomem(c);
            if (ok) ok = rl__re_emit(&re, &c->g, kh, true, true, &content, &nv);
            rl__re_free(&re);
            char *vexpr = NULL;
            bool vnv = false;
            char *vh = sub_hint(name, "pattern-value");
            if (ok && !nv) ok = vh ? visit(c, &o.pat_conj, vh, &vexpr, &vnv) : nomem(c);
            if (ok && !nv && !vnv) {
                bool grp = content.len && rl__gb_needs_group(content.p);
                rl__sstr_printf(&kb, "\"\\\"\" %s%s%s%s\"\\\"\"", grp ? "(" : "",
                                content.len ? content.p : "", grp ? ")" : "",
                                content.len ? " " : "");
                const char *key = kb.oom ? NULL : rl__gb_add(&c->g, kh, kb.p);
                rl__sstr body = {0};
                if (key) rl__sstr_printf(&body, "%s%s\":\"%s%s", key, sp, sp, vexpr);
                char *kvh = sub_hint(name, "pattern-kv");
                const char *r = (!key || body.oom || !kvh) ? NULL : rl__gb_add(&c->g, kvh, body.p);
                if (!r && c->g.st == RL_OK) nomem(c);
                if (r) extra_kv = xstrdup(c, r);
                rl__free(kvh);
                rl__sstr_free(&body);
                ok = c->g.st == RL_OK;
            }
            rl__free(vexpr);
            rl__free(vh);
            rl__free(kh);
            rl__sstr_free(&kb);
            rl__sstr_free(&content);
        }
    }
    /* minProperties / maxProperties where they are implied */
    if (ok && !*never) {
        uint64_t max_possible = extra_kv ? RL__RE_INF : n_req + n_opt;
        if (in->min_props > n_req &&
            !unsupported(c, in->min_props_at, "minProperties",
                         "more than the required properties cannot be demanded"))
            ok = false;
        if (ok && in->max_props < max_possible) {
            if (in->max_props < n_req)
                *never = true;
            else if (!unsupported(c, in->max_props_at, "maxProperties",
                                  "fewer than the possible properties cannot be demanded"))
                ok = false;
        }
    }
    if (ok && !*never) {
        /* optional ones: kv_i rest_{i+1} | kv_j rest_{j+1} | ...,
         * rest_j ::= ( "," kv_j )? rest_{j+1} (additional ones: ( "," kv )*) */
        uint32_t n_o = 0;
        const char **okv = rl__calloc(n_opt + 2, sizeof *okv);
        const char **oname = rl__calloc(n_opt + 2, sizeof *oname);
        char **rest = rl__calloc(n_opt + 3, sizeof *rest);
        if (!okv || !oname || !rest) ok = nomem(c);
        for (uint32_t i = 0; ok && i < o.n; i++)
            if (use[i] && !o.p[i].required) oname[n_o] = o.p[i].name, okv[n_o++] = kv[i];
        if (ok && extra_kv) oname[n_o] = NULL, okv[n_o++] = extra_kv;
        for (int64_t j = (int64_t)n_o - 1; ok && j >= 1; j--) {
            rl__sstr b = {0}, h = {0};
            bool star = !oname[j];
            rl__sstr_printf(&b, "( \",\"%s%s )%s", sp, okv[j], star ? "*" : "?");
            if (rest[j + 1]) rl__sstr_printf(&b, " %s", rest[j + 1]);
            char *hh =
                sub_hint(name, star ? (o.pat && !o.extras ? "pattern" : "additional") : oname[j]);
            if (hh)
                rl__sstr_printf(&h, "%s-rest", hh);
            else
                h.oom = true;
            rl__free(hh);
            const char *r = (b.oom || h.oom) ? NULL : rl__gb_add(&c->g, h.p, b.p);
            if (!r && c->g.st == RL_OK) nomem(c);
            rl__sstr_free(&b);
            rl__sstr_free(&h);
            if (!r || !(rest[j] = xstrdup(c, r))) ok = false;
        }
        rl__sstr opt = {0};
        for (uint32_t i = 0; ok && i < n_o; i++) {
            if (i) rl__sstr_puts(&opt, " | ");
            rl__sstr_puts(&opt, okv[i]);
            if (!oname[i]) rl__sstr_printf(&opt, " ( \",\"%s%s )*", sp, okv[i]);
            if (rest[i + 1]) rl__sstr_printf(&opt, " %s", rest[i + 1]);
        }
        if (opt.oom) ok = nomem(c);
        if (ok) {
            rl__sstr_printf(out, "\"{\"%s", sp);
            if (n_req) {
                uint32_t k = 0;
                for (uint32_t i = 0; i < o.n; i++) {
                    if (!use[i] || !o.p[i].required) continue;
                    if (k++) rl__sstr_printf(out, " \",\"%s", sp);
                    rl__sstr_puts(out, kv[i]);
                }
                if (n_o) rl__sstr_printf(out, " ( \",\"%s( %s ) )?", sp, opt.p);
                rl__sstr_printf(out, "%s\"}\"", sp);
            } else if (n_o) {
                rl__sstr_printf(out, "( ( %s )%s)? \"}\"", opt.p, sp);
            } else {
                rl__sstr_puts(out, "\"}\"");
            }
        }
        if (opt.oom) ok = nomem(c);
        rl__sstr_free(&opt);
        for (uint32_t j = 0; rest && j <= n_o + 1; j++) rl__free(rest[j]);
        rl__free(rest);
        rl__free(okv);
        rl__free(oname);
    }
    for (uint32_t i = 0; kv && i <= o.n; i++) rl__free(kv[i]);
    rl__free(kv);
    rl__free(use);
    rl__free(extra_kv);
    obj_free(&o);
    return ok && c->g.st == RL_OK;
}

/* ---- arrays --------------------------------------------------------------------------------- */

typedef struct arr_ctx {
    conv *c;
    char **pos; /* [n_prefix] rules of the positional items */
    uint32_t n_prefix;
    const char *tail; /* rule of the other items, NULL: none */
    uint64_t lo, hi;  /* lo >= 1 */
    const char *sp;
    const char *name; /* of the array's rule */
} arr_ctx;

/* The items from position k on (k items before them, so each starts with a comma). */
static bool items_text(arr_ctx *a, uint64_t k, rl__sstr *out) {
    if (a->hi != RL__RE_INF && k >= a->hi) return true;
    if (k < a->n_prefix) {
        rl__sstr s = {0};
        if (k) rl__sstr_printf(&s, "\",\"%s", a->sp);
        rl__sstr_puts(&s, a->pos[k]);
        rl__sstr rest = {0};
        bool ok = items_text(a, k + 1, &rest);
        if (ok && rest.len) rl__sstr_printf(&s, " %s", rest.p);
        if (rest.oom) s.oom = true;
        rl__sstr_free(&rest);
        if (k < a->lo) {
            rl__sstr_put(out, s.p, s.len);
        } else if (s.oom) {
            out->oom = true;
        } else {
            char *h = sub_hint(a->name, "items");
            if (!h || !rl__gb_group(&a->c->g, out, s.p, "?", h)) ok = false;
            rl__free(h);
        }
        if (s.oom) out->oom = true;
        rl__sstr_free(&s);
        return ok;
    }
    if (!a->tail) return true;
    uint64_t tlo = a->lo > k ? a->lo - k : 0;
    uint64_t thi = a->hi == RL__RE_INF ? RL__RE_INF : a->hi - k;
    rl__sstr grp = {0};
    rl__sstr_printf(&grp, "( \",\"%s%s )", a->sp, a->tail);
    bool ok;
    if (k == 0) {
        /* tlo >= 1 here */
        rl__sstr_puts(out, a->tail);
        rl__sstr rep = {0};
        ok = rl__gb_rep(&a->c->g, &rep, grp.p, tlo - 1, thi == RL__RE_INF ? RL__RE_INF : thi - 1);
        if (rep.len) rl__sstr_printf(out, " %s", rep.p);
        if (rep.oom) out->oom = true;
        rl__sstr_free(&rep);
    } else {
        ok = rl__gb_rep(&a->c->g, out, grp.p, tlo, thi);
    }
    if (grp.oom) out->oom = true;
    rl__sstr_free(&grp);
    return ok;
}

static bool emit_array(conv *c, const info *in, const char *name, rl__sstr *out, bool *never) {
    *never = false;
    const leaf *l = in->l;
    /* positional schemas per piece: prefixItems (or draft-07 items arrays) and the rest */
    uint32_t n_prefix = 0;
    for (uint32_t i = 0; i < l->n; i++) {
        const json_t *s = l->p[i].s;
        const json_t *pre = json_object_get(s, "prefixItems");
        const json_t *items = json_object_get(s, "items");
        if (json_is_array(items)) pre = items;
        if (json_is_array(pre) && json_array_size(pre) > n_prefix)
            n_prefix = (uint32_t)json_array_size(pre);
    }
    uint64_t lo = in->min_items, hi = in->max_items;
    if (hi != RL__RE_INF && n_prefix > hi) n_prefix = (uint32_t)hi;
    if (n_prefix > MAX_PREFIX)
        return rl__gb_fail(&c->g, RL_ERR_LIMIT, "%s: more than %d positional items",
                           path_of(c, l->p[0].s), MAX_PREFIX);
    bool plain = !n_prefix && !lo && hi == RL__RE_INF && !in->unique_at;
    for (uint32_t i = 0; plain && i < l->n; i++) {
        const json_t *s = l->p[i].s;
        if (json_object_get(s, "items") || json_object_get(s, "additionalItems")) plain = false;
    }
    if (plain) {
        const char *r = rl__gb_prim(&c->g, "array");
        return r && rl__sstr_puts(out, r);
    }
    char **pos = rl__calloc(n_prefix + 1, sizeof *pos);
    if (!pos) return nomem(c);
    bool ok = true;
    /* the tail */
    plist tail = {0};
    bool tail_never = false;
    for (uint32_t i = 0; i < l->n; i++) {
        const json_t *s = l->p[i].s;
        const json_t *items = json_object_get(s, "items");
        const json_t *rest = json_is_array(items) ? json_object_get(s, "additionalItems") : items;
        if (!rest) continue;
        if (json_is_false(rest))
            tail_never = true;
        else if (!json_is_true(rest) && !pl_add(&tail, rest))
            ok = nomem(c);
    }
    /* prefix positions */
    for (uint32_t k = 0; ok && k < n_prefix; k++) {
        plist conj = {0};
        for (uint32_t i = 0; ok && i < l->n; i++) {
            const json_t *s = l->p[i].s;
            const json_t *pre = json_object_get(s, "prefixItems");
            const json_t *items = json_object_get(s, "items");
            const json_t *rest = items;
            if (json_is_array(items)) {
                pre = items;
                rest = json_object_get(s, "additionalItems");
            }
            const json_t *x = NULL;
            if (json_is_array(pre) && k < json_array_size(pre))
                x = json_array_get(pre, k);
            else
                x = rest;
            if (x && !pl_add(&conj, x)) ok = nomem(c);
        }
        char h[32];
        snprintf(h, sizeof h, "tuple-%u", k);
        char *hint = ok ? sub_hint(name, h) : NULL;
        bool nv = false;
        if (ok && !hint) ok = nomem(c);
        if (ok) ok = visit(c, &conj, hint, &pos[k], &nv);
        rl__free(hint);
        pl_free(&conj);
        if (ok && nv) {
            /* nothing fits here: the array ends before k */
            if (hi == RL__RE_INF || hi > k) hi = k;
            n_prefix = k;
            break;
        }
    }
    char *tail_expr = NULL;
    if (ok && !tail_never && (hi == RL__RE_INF || hi > n_prefix)) {
        char *hint = sub_hint(name, "item");
        bool nv = false;
        ok = hint ? visit(c, &tail, hint, &tail_expr, &nv) : nomem(c);
        rl__free(hint);
        if (ok && nv) tail_never = true;
    }
    if (ok && tail_never && (hi == RL__RE_INF || hi > n_prefix)) hi = n_prefix;
    pl_free(&tail);
    if (ok && hi != RL__RE_INF && lo > hi) *never = true;
    if (ok && !*never && in->unique_at && (hi == RL__RE_INF || hi > 1) &&
        !unsupported(c, in->unique_at, "uniqueItems", "not expressible in a grammar"))
        ok = false;
    if (ok && !*never) {
        const char *sp = c->sp;
        if (hi == 0) {
            rl__sstr_printf(out, "\"[\"%s\"]\"", sp);
        } else {
            arr_ctx a = {c, pos, n_prefix, tail_expr, lo ? lo : 1, hi, sp, name};
            rl__sstr items = {0};
            ok = items_text(&a, 0, &items);
            if (items.oom) ok = nomem(c);
            if (ok && lo == 0) {
                /* "[" space ( items space )? "]" */
                rl__sstr body = {0};
                rl__sstr_printf(&body, " %s%s", items.p, sp);
                char *h = sub_hint(name, "items");
                rl__sstr_printf(out, "\"[\"%s", sp);
                ok = !body.oom && h && rl__gb_group(&c->g, out, body.p, "? ", h);
                if (!ok && c->g.st == RL_OK) nomem(c);
                rl__sstr_puts(out, "\"]\"");
                rl__free(h);
                rl__sstr_free(&body);
            } else if (ok) {
                rl__sstr_printf(out, "\"[\"%s%s%s\"]\"", sp, items.p, sp);
            }
            rl__sstr_free(&items);
        }
    }
    for (uint32_t k = 0; k <= n_prefix; k++) rl__free(pos[k]);
    rl__free(pos);
    rl__free(tail_expr);
    return ok && c->g.st == RL_OK;
}

/* ---- leaves and rules ----------------------------------------------------------------------- */

typedef struct alts {
    char **v;
    uint32_t n, cap;
    rl__smap seen;
} alts;

static bool alts_add(conv *c, alts *a, const char *s) {
    if (rl__smap_get(&a->seen, s, strlen(s), NULL)) return true;
    if (!rl__smap_put(&a->seen, s, strlen(s), a->n)) return nomem(c);
    if (a->n == a->cap) {
        uint32_t cap = a->cap ? a->cap * 2 : 8;
        char **v = rl__realloc(a->v, cap * sizeof *v);
        if (!v) return nomem(c);
        a->v = v;
        a->cap = cap;
    }
    if (!(a->v[a->n] = xstrdup(c, s))) return false;
    a->n++;
    return true;
}

static void alts_free(alts *a) {
    for (uint32_t i = 0; i < a->n; i++) rl__free(a->v[i]);
    rl__free(a->v);
    rl__smap_free(&a->seen);
    memset(a, 0, sizeof *a);
}

static bool emit_leaf(conv *c, const info *in, const char *name, alts *out) {
    if (in->dead) return true;
    if (in->has_enum) {
        for (size_t i = 0; i < json_array_size(in->enums); i++) {
            rl__sstr t = {0}, lit = {0};
            rl__json_canon(json_array_get(in->enums, i), &t);
            rl__gb_lit(&lit, t.p ? t.p : "", t.len);
            bool ok = !t.oom && !lit.oom ? alts_add(c, out, lit.p) : nomem(c);
            rl__sstr_free(&t);
            rl__sstr_free(&lit);
            if (!ok) return false;
        }
        return true;
    }
    if (in->types == T_ALL) {
        bool any = false;
        for (uint32_t i = 0; !any && i < in->l->n; i++) {
            const char *k;
            json_t *v;
            json_object_foreach((json_t *)in->l->p[i].s, k, v) {
                if (is_constraint_kw(k)) any = true;
            }
        }
        if (!any) {
            /* annotations only: any value */
            const char *r = rl__gb_prim(&c->g, "value");
            return r && alts_add(c, out, r);
        }
    }
    static const unsigned order[] = {T_STR, T_NUM, T_INT, T_BOOL, T_OBJ, T_ARR, T_NULL};
    for (size_t k = 0; k < RL_ARRAY_LEN(order); k++) {
        unsigned t = order[k];
        if (!(in->types & t)) continue;
        if (t == T_INT && (in->types & T_NUM)) continue;
        rl__sstr e = {0};
        bool nv = false, ok = true;
        switch (t) {
        case T_STR:
            ok = emit_string(c, in, name, &e, &nv);
            break;
        case T_NUM:
            ok = emit_number(c, in, false, &e, &nv);
            break;
        case T_INT:
            ok = emit_number(c, in, true, &e, &nv);
            break;
        case T_BOOL:
            ok = rl__sstr_puts(&e, "boolean") && rl__gb_prim(&c->g, "boolean");
            break;
        case T_NULL:
            ok = rl__sstr_puts(&e, "null") && rl__gb_prim(&c->g, "null");
            break;
        case T_OBJ:
            ok = emit_object(c, in, name, &e, &nv);
            break;
        case T_ARR:
            ok = emit_array(c, in, name, &e, &nv);
            break;
        }
        if (ok && e.oom) ok = nomem(c);
        if (ok && !nv && e.len) ok = alts_add(c, out, e.p);
        rl__sstr_free(&e);
        if (!ok) return false;
    }
    return true;
}

static bool build_body(conv *c, const plist *conj, const char *name, rl__sstr *body, bool *never) {
    *never = false;
    leafset ls;
    if (!expand(c, conj, &ls)) return false;
    alts a = {0};
    bool ok = true;
    for (uint32_t i = 0; ok && i < ls.n; i++) {
        info in;
        ok = summarize(c, &ls.l[i], &in) && emit_leaf(c, &in, name, &a);
        info_free(&in);
    }
    ls_free(&ls);
    if (ok && !a.n) *never = true;
    for (uint32_t i = 0; ok && i < a.n; i++) {
        if (i) rl__sstr_puts(body, " | ");
        rl__sstr_puts(body, a.v[i]);
    }
    alts_free(&a);
    if (ok && body->oom) ok = nomem(c);
    return ok;
}

static bool is_name(const char *s) {
    if (!*s) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-'))
            return false;
    return true;
}

/* "#/$defs/NAME" or "#/definitions/NAME": NAME, decoded; else NULL. */
static char *defs_name(const char *path) {
    const char *p = strstr(path, "#/$defs/");
    size_t skip = 8;
    if (!p) {
        p = strstr(path, "#/definitions/");
        skip = 14;
    }
    if (!p || strchr(p + skip, '/')) return NULL;
    rl__sstr s = {0};
    for (const char *x = p + skip; *x; x++) {
        if (x[0] == '~' && x[1] == '1')
            rl__sstr_putc(&s, '/'), x++;
        else if (x[0] == '~' && x[1] == '0')
            rl__sstr_putc(&s, '~'), x++;
        else
            rl__sstr_putc(&s, *x);
    }
    return rl__sstr_take(&s);
}

static bool memo_new(conv *c, const json_t **key, uint32_t n, const char *expr, int32_t rule,
                     uint32_t *idx) {
    if (c->n_memo == c->cap_memo) {
        uint32_t cap = c->cap_memo ? c->cap_memo * 2 : 32;
        char **e = rl__realloc(c->memo_expr, cap * sizeof *e);
        if (e) c->memo_expr = e;
        uint8_t *s = e ? rl__realloc(c->memo_state, cap) : NULL;
        if (s) c->memo_state = s;
        int32_t *r = s ? rl__realloc(c->memo_rule, cap * sizeof *r) : NULL;
        if (r) c->memo_rule = r;
        if (!r) return nomem(c);
        c->cap_memo = cap;
    }
    char *x = xstrdup(c, expr);
    if (!x) return false;
    if (!rl__smap_put(&c->memo, key, n * sizeof *key, c->n_memo)) {
        rl__free(x);
        return nomem(c);
    }
    c->memo_expr[c->n_memo] = x;
    c->memo_state[c->n_memo] = MEMO_BUSY;
    c->memo_rule[c->n_memo] = rule;
    *idx = c->n_memo++;
    return true;
}

static bool visit(conv *c, plist *conj, const char *hint, char **expr, bool *never) {
    *expr = NULL;
    *never = false;
    if (c->g.st != RL_OK) return false;
    plist k = {0};
    for (uint32_t i = 0; i < conj->n; i++) {
        const json_t *d = deref(c, conj->v[i]);
        if (!d) {
            pl_free(&k);
            return false;
        }
        if (json_is_true(d)) continue;
        if (json_is_false(d)) {
            pl_free(&k);
            *never = true;
            return true;
        }
        if (!pl_add(&k, d)) {
            pl_free(&k);
            return nomem(c);
        }
    }
    if (!k.n) {
        pl_free(&k);
        const char *v = rl__gb_prim(&c->g, "value");
        return v && (*expr = xstrdup(c, v));
    }
    qsort(k.v, k.n, sizeof *k.v, cmp_ptr);
    uint64_t idx;
    if (rl__smap_get(&c->memo, k.v, k.n * sizeof *k.v, &idx)) {
        pl_free(&k);
        if (c->memo_state[idx] == MEMO_NEVER) {
            *never = true;
            return true;
        }
        if (c->memo_state[idx] == MEMO_BUSY) c->memo_state[idx] = MEMO_USED_BUSY;
        return (*expr = xstrdup(c, c->memo_expr[idx])) != NULL;
    }
    if (c->depth >= MAX_VISIT_DEPTH) {
        pl_free(&k);
        return rl__gb_fail(&c->g, RL_ERR_LIMIT, "%s: schema nested deeper than %d",
                           path_of(c, k.v[0]), MAX_VISIT_DEPTH);
    }
    bool is_root = !c->n_memo;
    char *dn = (!is_root && k.n == 1) ? defs_name(path_of(c, k.v[0])) : NULL;
    int32_t r = rl__gb_reserve(&c->g, is_root ? "root" : dn ? dn : hint);
    rl__free(dn);
    uint32_t mi = 0;
    if (r < 0 || !memo_new(c, k.v, k.n, c->g.names[r], r, &mi)) {
        pl_free(&k);
        return false;
    }
    const char *rname = c->g.names[r];
    char *name = xstrdup(c, rname);
    rl__sstr body = {0};
    bool nv = false;
    c->depth++;
    bool ok = name && build_body(c, &k, name, &body, &nv);
    c->depth--;
    pl_free(&k);
    if (ok && nv) {
        c->memo_state[mi] = MEMO_NEVER;
        rl__gb_unreserve(&c->g, r);
        *never = true;
    } else if (ok) {
        if (!is_root && c->memo_state[mi] == MEMO_BUSY && is_name(body.p)) {
            /* an alias: refer to the target directly */
            char *x = xstrdup(c, body.p);
            if (!x)
                ok = false;
            else {
                rl__free(c->memo_expr[mi]);
                c->memo_expr[mi] = x;
                rl__gb_unreserve(&c->g, r);
            }
        } else {
            ok = rl__gb_define(&c->g, r, body.p);
        }
        if (ok) c->memo_state[mi] = MEMO_DONE;
        if (ok) ok = (*expr = xstrdup(c, c->memo_expr[mi])) != NULL;
    }
    rl__free(name);
    rl__sstr_free(&body);
    return ok && c->g.st == RL_OK;
}

/* ---- oneOf ------------------------------------------------------------------------------- */

/* Leaf infos of schema s alone (quietly: constraints a grammar cannot express are left
 * out, which only widens each branch). */
static bool branch_infos(conv *c, const json_t *s, leafset *ls, info **infos) {
    plist l = {0};
    *infos = NULL;
    if (!pl_add(&l, s)) return nomem(c);
    c->quiet++;
    bool ok = expand(c, &l, ls);
    pl_free(&l);
    if (ok) {
        *infos = rl__calloc(ls->n + 1, sizeof **infos);
        if (!*infos) ok = nomem(c);
        for (uint32_t i = 0; ok && i < ls->n; i++) ok = summarize(c, &ls->l[i], &(*infos)[i]);
    }
    c->quiet--;
    return ok;
}

/* Values of a property conjunction when it is a finite set (every leaf an enum). */
static json_t *finite_values(conv *c, const plist *conj) {
    if (!conj->n) return NULL;
    leafset ls;
    c->quiet++;
    bool ok = expand(c, conj, &ls);
    json_t *vals = ok ? json_array() : NULL;
    for (uint32_t i = 0; vals && i < ls.n; i++) {
        info in;
        if (!summarize(c, &ls.l[i], &in) || !in.has_enum) {
            info_free(&in);
            json_decref(vals);
            vals = NULL;
            break;
        }
        json_array_extend(vals, in.enums);
        info_free(&in);
    }
    if (ok) ls_free(&ls);
    c->quiet--;
    return vals;
}

/* 1 when some value of vals is valid against every schema of conj, 0 when none is. */
static int any_valid(conv *c, const json_t *vals, const json_t *const *conj, uint32_t n) {
    for (size_t i = 0; i < json_array_size(vals); i++) {
        bool all = true;
        for (uint32_t k = 0; all && k < n; k++) {
            rl_status st = RL_OK;
            int r = rl__schema_eval(c->sc, conj[k], json_array_get(vals, i), &st, NULL, 0);
            if (r < 0) return -1;
            all = r == 1;
        }
        if (all) return 1;
    }
    return 0;
}

/* Whether no value the grammar makes for leaf a can be valid against leaf b. */
static int disjoint_dir(conv *c, const info *a, const info *b) {
    if (a->dead) return 1;
    const json_t **bp = rl__malloc((b->l->n + 1) * sizeof *bp);
    if (!bp) return -1;
    for (uint32_t i = 0; i < b->l->n; i++) bp[i] = b->l->p[i].s;
    int result = 0;
    if (a->has_enum) {
        int r = any_valid(c, a->enums, bp, b->l->n);
        result = r < 0 ? -1 : !r;
        goto done;
    }
    unsigned common = a->types & b->spec_types;
    if (!common) {
        result = 1;
        goto done;
    }
    if (!(common & ~(unsigned)(T_INT | T_NUM))) {
        /* numbers: separate intervals */
        if (a->hi.v && b->lo.v) {
            int k = rl__json_num_cmp(a->hi.v, b->lo.v);
            if (k < 0 || (k == 0 && (a->hi.excl || b->lo.excl))) result = 1;
        }
        if (a->lo.v && b->hi.v) {
            int k = rl__json_num_cmp(a->lo.v, b->hi.v);
            if (k > 0 || (k == 0 && (a->lo.excl || b->hi.excl))) result = 1;
        }
        goto done;
    }
    if (common == T_OBJ) {
        /* a required property whose values in a are all invalid in b, or forbidden in b */
        objinfo oa, ob;
        c->quiet++;
        bool ok = object_props(c, a, &oa);
        ok = object_props(c, b, &ob) && ok;
        c->quiet--;
        for (uint32_t i = 0; ok && !result && i < oa.n; i++) {
            prop *pa = &oa.p[i];
            if (!pa->required || pa->forbidden) continue;
            prop *pb = obj_find(&ob, pa->name);
            if (!pb) continue;
            if (pb->forbidden) {
                result = 1;
                break;
            }
            json_t *vals = finite_values(c, &pa->conj);
            if (!vals) continue;
            int r = any_valid(c, vals, pb->conj.v, pb->conj.n);
            json_decref(vals);
            if (r < 0)
                result = -1;
            else if (!r)
                result = 1;
        }
        obj_free(&oa);
        obj_free(&ob);
        if (!ok) result = -1;
    }
done:
    rl__free(bp);
    return result;
}

static bool check_oneof(conv *c, const json_t *s) {
    if (c->quiet) return true;
    if (rl__pmap_get(&c->oneof_checked, s, NULL)) return true;
    if (!rl__pmap_put(&c->oneof_checked, s, 1)) return nomem(c);
    const json_t *arr = json_object_get(s, "oneOf");
    size_t n = json_array_size(arr);
    leafset *ls = rl__calloc(n + 1, sizeof *ls);
    info **infos = rl__calloc(n + 1, sizeof *infos);
    bool ok = ls && infos;
    if (!ok) nomem(c);
    for (size_t i = 0; ok && i < n; i++)
        ok = branch_infos(c, json_array_get(arr, i), &ls[i], &infos[i]);
    for (size_t i = 0; ok && i < n; i++) {
        for (size_t j = i + 1; ok && j < n; j++) {
            bool dis = true;
            for (uint32_t x = 0; dis && x < ls[i].n; x++) {
                for (uint32_t y = 0; dis && y < ls[j].n; y++) {
                    int d1 = disjoint_dir(c, &infos[i][x], &infos[j][y]);
                    int d2 = d1 == 1 ? disjoint_dir(c, &infos[j][y], &infos[i][x]) : d1;
                    if (d1 < 0 || d2 < 0) {
                        ok = c->g.st == RL_OK ? nomem(c) : false;
                        dis = false;
                    } else {
                        dis = d1 == 1 && d2 == 1;
                    }
                }
            }
            if (ok && !dis) {
                char why[160];
                rl__fmt(why, sizeof why,
                        "alternatives %zu and %zu may both match a value (a grammar cannot "
                        "exclude the other alternatives; anyOf would be exact)",
                        i, j);
                ok = unsupported(c, s, "oneOf", why);
                goto out;
            }
        }
    }
out:
    for (size_t i = 0; ls && i < n; i++) {
        for (uint32_t x = 0; infos && infos[i] && x < ls[i].n; x++) info_free(&infos[i][x]);
        if (infos) rl__free(infos[i]);
        ls_free(&ls[i]);
    }
    rl__free(ls);
    rl__free(infos);
    return ok && c->g.st == RL_OK;
}

/* ---- public API ------------------------------------------------------------------------ */

static void conv_free(conv *c) {
    for (uint32_t i = 0; i < c->n_memo; i++) rl__free(c->memo_expr[i]);
    rl__free(c->memo_expr);
    rl__free(c->memo_state);
    rl__free(c->memo_rule);
    rl__smap_free(&c->memo);
    rl__smap_free(&c->oneof_checked);
    rl__gb_free(&c->g);
}

rl_status rl_schema_gbnf(const rl_schema *s, uint32_t flags, char **gbnf_out, char *err,
                         size_t err_size) {
    if (gbnf_out) *gbnf_out = NULL;
    if (err && err_size) err[0] = 0;
    if (!s || !gbnf_out) {
        rl__fmt(err, err_size, "rl_schema_gbnf: NULL argument");
        return RL_ERR_INVALID_ARG;
    }
    const uint32_t known = RL_SCHEMA_LENIENT | RL_SCHEMA_EXTRA_PROPERTIES |
                           RL_SCHEMA_NO_TYPE_INFERENCE | RL_SCHEMA_COMPACT;
    if (flags & ~known) {
        rl__fmt(err, err_size, "rl_schema_gbnf: unknown flags 0x%x", flags & ~known);
        return RL_ERR_INVALID_ARG;
    }
    conv c;
    memset(&c, 0, sizeof c);
    rl__gb_init(&c.g, flags);
    c.sc = s;
    c.d = rl__schema_doc(s);
    c.flags = flags;
    bool compact = flags & RL_SCHEMA_COMPACT;
    c.sp = compact ? " " : " space ";
    if (compact || rl__gb_prim(&c.g, "space")) {
        char *expr = NULL;
        bool never = false;
        if (visit1(&c, c.d->roots[0], "root", &expr, &never) && never)
            rl__gb_fail(&c.g, RL_ERR_INVALID_ARG, "no value satisfies the schema");
        /* a schema that is `true` (or refers to it) made no rule of its own */
        uint64_t v;
        if (c.g.st == RL_OK && expr &&
            !(rl__smap_get(&c.g.by_name, "root", 4, &v) && v != UINT64_MAX && c.g.bodies[v]))
            rl__gb_add(&c.g, "root", expr);
        rl__free(expr);
    }
    if (c.g.st == RL_OK) {
        *gbnf_out = rl__gb_text(&c.g);
        if (!*gbnf_out) rl__gb_fail(&c.g, RL_ERR_NOMEM, "out of memory");
    }
    rl_status st = c.g.st;
    if (st != RL_OK) rl__fmt(err, err_size, "%s", c.g.err);
    conv_free(&c);
    return st;
}

rl_status rl_schema_to_gbnf(const char *schema_json, size_t len, uint32_t flags, char **gbnf_out,
                            char *err, size_t err_size) {
    if (gbnf_out) *gbnf_out = NULL;
    if (!gbnf_out || (!schema_json && len)) {
        rl__fmt(err, err_size, "rl_schema_to_gbnf: NULL argument");
        return RL_ERR_INVALID_ARG;
    }
    rl_schema_params p = rl_schema_default_params();
    p.flags = RL_SCHEMA_LENIENT; /* the converter says itself what it cannot do */
    rl_schema *s = NULL;
    rl_status st = rl_schema_compile(schema_json, len, &p, &s, err, err_size);
    if (st != RL_OK) return st;
    st = rl_schema_gbnf(s, flags, gbnf_out, err, err_size);
    rl_schema_free(s);
    return st;
}

/* The grammar of rl_schema_to_gbnf for {"type": "object"} (test_schema_gbnf checks that
 * they are the same). */
static const char JSON_OBJECT_GBNF[] =
    "root ::= object\n"
    "space ::= | \" \" | \"\\n\"{1,2} [ \\t]{0,20}\n"
    "object ::= \"{\" space ( string space \":\" space value ( \",\" space string space \":\" "
    "space value )* space )? \"}\"\n"
    "string ::= \"\\\"\" char* \"\\\"\"\n"
    "char ::= [^\"\\\\\\x7F\\x00-\\x1F] | [\\\\] ([\"\\\\/bfnrt] | \"u\" ([0-9a-cA-Ce-fE-F] "
    "[0-9a-fA-F]{3} | [dD] [0-7] [0-9a-fA-F]{2} | [dD] [89abAB] [0-9a-fA-F]{2} \"\\\\u\" [dD] "
    "[c-fC-F] [0-9a-fA-F]{2}))\n"
    "value ::= object | array | string | number | boolean | null\n"
    "array ::= \"[\" space ( value ( \",\" space value )* space )? \"]\"\n"
    "number ::= \"-\"? integral-part (\".\" decimal-part)? ([eE] [-+]? [0-9]{1,2})?\n"
    "integral-part ::= [0] | [1-9] [0-9]{0,15}\n"
    "decimal-part ::= [0-9]{1,16}\n"
    "boolean ::= \"true\" | \"false\"\n"
    "null ::= \"null\"\n";

const char *rl_json_object_gbnf(void) { return JSON_OBJECT_GBNF; }
