/*
 * schema_impl.h - what the files of src/schema share: JSON Schema documents with their
 * references resolved (doc.c), the validator (validate.c), ECMAScript regular expressions
 * (regex.c), and the writers of GBNF text (gbnf.c, regex_gbnf.c, schema_gbnf.c).
 *
 * The converters produce GBNF in llama.cpp's dialect and nothing else: the grammar engine
 * (src/grammar) reads that text, so the two meet only there.
 */
#ifndef RL_SCHEMA_IMPL_H
#define RL_SCHEMA_IMPL_H

#include "../util/strbuf.h"
#include "../util/util.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- growing strings ----------------------------------------------------------------- */
/* The schema module's names for util's growing string (util/strbuf.h: contracts there). */
typedef rl__strbuf rl__sstr;
#define rl__sstr_put rl__strbuf_put
#define rl__sstr_puts rl__strbuf_puts
#define rl__sstr_putc rl__strbuf_putc
#define rl__sstr_printf rl__strbuf_printf
#define rl__sstr_put_cp rl__strbuf_put_cp
#define rl__sstr_free rl__strbuf_free
#define rl__sstr_take rl__strbuf_take

/* ---- hash map from byte strings to 64-bit values -------------------------------------- */
/* Open addressing; keys are copied. Used with pointer keys too (the pointer's bytes). */
typedef struct rl__smap_ent {
    char *key; /* NULL: empty slot */
    size_t klen;
    uint64_t hash;
    uint64_t val;
} rl__smap_ent;

typedef struct rl__smap {
    rl__smap_ent *ents;
    size_t cap, n;
} rl__smap;

bool rl__smap_get(const rl__smap *m, const void *key, size_t klen, uint64_t *val);
/* Insert or replace; false when out of memory. */
bool rl__smap_put(rl__smap *m, const void *key, size_t klen, uint64_t val);
void rl__smap_free(rl__smap *m);

static inline bool rl__pmap_get(const rl__smap *m, const void *p, uint64_t *val) {
    return rl__smap_get(m, &p, sizeof p, val);
}
static inline bool rl__pmap_put(rl__smap *m, const void *p, uint64_t val) {
    return rl__smap_put(m, &p, sizeof p, val);
}

/* ---- JSON helpers --------------------------------------------------------------------- */
/* Parse JSON text (any value at the top, NUL characters allowed in strings). Integers too
 * big for 64 bits are read as reals. NULL on error, with *st (RL_ERR_INVALID_ARG) and
 * "what: line L, column C: message" in err. */
json_t *rl__json_parse(const char *text, size_t len, const char *what, rl_status *st, char *err,
                       size_t err_size);
/* Canonical compact text of v: no whitespace, object keys in stored order, strings with
 * the short escapes \" \\ \b \f \n \r \t and \u00xx for the other code points below 0x20
 * and 0x7F (everything else as UTF-8), reals as the shortest text that reads back to the
 * same double (integral ones within 2^53 without fraction or exponent). Each string has
 * exactly one canonical encoding, which the grammar writers rely on. */
bool rl__json_canon(const json_t *v, rl__sstr *out);
/* The canonical encoding of a JSON string's content (without the quotes). */
static inline bool rl__json_canon_str(const char *s, size_t n, rl__sstr *out) {
    return rl__strbuf_put_json_escaped(out, s, n);
}
/* Equality as JSON Schema defines it: numbers by mathematical value (1 == 1.0), objects
 * regardless of key order, arrays element by element. */
bool rl__json_equal(const json_t *a, const json_t *b);
/* -1, 0, 1: a < b, a == b, a > b for two numbers (exact for integers and doubles). */
int rl__json_num_cmp(const json_t *a, const json_t *b);
/* Number of code points in valid UTF-8 s[0..n). */
size_t rl__sch_utf8_count(const char *s, size_t n);
/* Decode one UTF-8 code point at s[0..n); returns its length (0 when invalid). */
size_t rl__sch_utf8_decode(const char *s, size_t n, uint32_t *cp);

/* ---- schema documents ----------------------------------------------------------------- */
/* Documents of one schema: the root plus remote documents a resolver returned, every
 * schema object walked once, base URIs ($id) and anchors indexed, and every $ref resolved
 * to the value it names, so that evaluation never resolves anything. */
typedef const char *(*rl__sdoc_resolve_fn)(void *user, const char *uri, size_t *len);

typedef struct rl__sdoc {
    json_t **roots; /* [n_docs], owned */
    char **uris;    /* [n_docs] retrieval URIs ("" for the root document without $id) */
    size_t n_docs, cap_docs;
    rl__smap resources; /* absolute URI without fragment -> json_t * */
    rl__smap anchors;   /* "uri#name" -> json_t * */
    rl__smap refs;      /* json_t * (a schema object with $ref) -> json_t * target */
    rl__smap paths;     /* json_t * (a walked schema) -> index into path_list */
    char **path_list;   /* "#/properties/a" (or "uri#/..." in remote documents) */
    size_t n_paths, cap_paths;
    bool draft7; /* the root's $schema is draft-07 or older: $ref ignores its siblings */
    rl__sdoc_resolve_fn resolve;
    void *resolve_user;
} rl__sdoc;

/* Load text as the root schema and resolve every reference. Errors: RL_ERR_INVALID_ARG
 * (bad JSON, a schema that is not an object or boolean, a malformed $ref or $id, a pointer
 * to nothing), RL_ERR_NOT_FOUND (the resolver does not know a remote URI),
 * RL_ERR_UNSUPPORTED (a remote $ref and no resolver), RL_ERR_LIMIT (nesting deeper than
 * 512, more than 256 documents), RL_ERR_NOMEM. The message names the place. */
rl_status rl__sdoc_load(rl__sdoc *d, const char *text, size_t len, rl__sdoc_resolve_fn resolve,
                        void *user, char *err, size_t err_size);
void rl__sdoc_free(rl__sdoc *d);
/* Target of the $ref of schema object s, or NULL when s has none. */
const json_t *rl__sdoc_ref(const rl__sdoc *d, const json_t *s);
/* "#/json/pointer" of a walked schema ("?" when unknown). */
const char *rl__sdoc_path(const rl__sdoc *d, const json_t *s);

/* ---- the validator (validate.c) ------------------------------------------------------- */
/* Evaluate instance inst against the schema node s (any walked schema of the compiled
 * schema). Returns 1 valid, 0 invalid, or -1 on an error (*st set: RL_ERR_LIMIT for
 * recursion past the limit, RL_ERR_NOMEM). Messages go to err when not NULL. */
struct rl_schema;
int rl__schema_eval(const struct rl_schema *sc, const json_t *s, const json_t *inst, rl_status *st,
                    char *err, size_t err_size);
/* The same; skip_top_enum: do not check enum and const of s itself (the caller knows inst
 * is among them). */
int rl__schema_eval_ex(const struct rl_schema *sc, const json_t *s, const json_t *inst,
                       bool skip_top_enum, rl_status *st, char *err, size_t err_size);
const rl__sdoc *rl__schema_doc(const struct rl_schema *sc);
/* Match s[0..len) against the pattern the schema compiled under key (a "pattern" value or
 * a patternProperties key pointer): 1, 0, or -1 when there is no such pattern or PCRE2
 * fails. */
int rl__schema_pattern_match(const struct rl_schema *sc, const void *key, const char *s,
                             size_t len);

/* ---- ECMAScript regular expressions (regex.c) ------------------------------------------ */
/* The subset of ECMA-262 patterns a grammar can express: literals, escapes, `.`, classes
 * (ranges, negation, \d \w \s and their negations), groups (capturing, non-capturing,
 * named), alternation, greedy and lazy quantifiers, and ^ / $ at the ends of top-level
 * alternatives. Sets are over Unicode scalar values. */
enum { RL__RE_EMPTY, RL__RE_SET, RL__RE_SEQ, RL__RE_ALT, RL__RE_REP, RL__RE_BOL, RL__RE_EOL };

#define RL__RE_INF UINT32_MAX

typedef struct rl__re_node {
    int kind;
    uint32_t n;        /* SET: number of ranges; SEQ/ALT: number of kids */
    uint32_t *ranges;  /* SET: [2n] inclusive lo, hi; sorted, disjoint, no surrogates */
    uint32_t *kids;    /* SEQ/ALT: [n] node indices; REP: [1] */
    uint32_t min, max; /* REP: counts (max RL__RE_INF: unbounded) */
    size_t pos;        /* byte offset in the pattern */
} rl__re_node;

typedef struct rl__re {
    rl__re_node *nodes;
    uint32_t n_nodes, cap_nodes;
    uint32_t root;
} rl__re;

/* Parse pattern[0..len). Errors: RL_ERR_UNSUPPORTED for valid ECMAScript the subset lacks
 * (backreferences, lookaround, \b, \p{..}, anchors inside), RL_ERR_INVALID_ARG for invalid
 * patterns, RL_ERR_LIMIT for nesting deeper than 100 or more than 100000 nodes; the message
 * gives the byte offset. */
rl_status rl__re_parse(const char *pattern, size_t len, rl__re *re, char *err, size_t err_size);
void rl__re_free(rl__re *re);
/* Minimum and maximum number of code points node i matches (max RL__RE_INF: unbounded),
 * anchors counting zero. */
void rl__re_bounds(const rl__re *re, uint32_t i, uint64_t *min, uint64_t *max);

/* ---- GBNF writing (gbnf.c) ------------------------------------------------------------ */
/* A table of named rules being written: names are unique ([a-zA-Z0-9-]+), bodies are GBNF
 * alternatives. Errors are sticky: the first one is kept in st/err and later calls do
 * nothing. */
typedef struct rl__gb {
    char **names;
    char **bodies; /* NULL while reserved */
    uint32_t n, cap;
    rl__smap by_name; /* name -> index */
    uint32_t max_rules;
    size_t max_bytes, bytes;
    uint64_t rep_budget; /* repetition copies left (sum of counts in {m,n}) */
    uint32_t max_repeat; /* largest count in one {m,n} */
    uint32_t flags;      /* RL_SCHEMA_* of the public header */
    rl_status st;
    char err[512];
    rl__sstr warnings; /* "# ..." lines, lenient mode */
} rl__gb;

void rl__gb_init(rl__gb *g, uint32_t flags);
void rl__gb_free(rl__gb *g);
/* Set the error (when none is set yet); returns false for `return rl__gb_fail(...)`. */
bool rl__gb_fail(rl__gb *g, rl_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Lenient mode: record a warning and return true; else fail with RL_ERR_UNSUPPORTED. */
bool rl__gb_unsupported(rl__gb *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reserve a unique rule name derived from hint (characters outside [a-zA-Z0-9-] become
 * '-', a number is appended when taken). Returns the index, or -1 on error. */
int32_t rl__gb_reserve(rl__gb *g, const char *hint);
/* Give reserved rule i its body (copied). */
bool rl__gb_define(rl__gb *g, int32_t i, const char *body);
/* Drop reserved rule i (its name becomes free again); only for the last reserved rule. */
void rl__gb_unreserve(rl__gb *g, int32_t i);
/* Reserve and define in one step; returns the name (owned by g) or NULL. */
const char *rl__gb_add(rl__gb *g, const char *hint, const char *body);
/* Add the built-in rule `name` (space, char, string, number, ...) and what it uses, once;
 * returns name or NULL. */
const char *rl__gb_prim(rl__gb *g, const char *name);
/* Whether name is one of the built-in rule names. */
bool rl__gb_is_prim(const char *name);
/* The grammar text: warnings (as comments), then root, then the other rules in the order
 * they were made. Caller frees with rl__free. */
char *rl__gb_text(rl__gb *g);

/* GBNF literal "..." for the UTF-8 bytes s[0..n). */
bool rl__gb_lit(rl__sstr *out, const char *s, size_t n);
/* A code point as it may appear inside [...] of GBNF. */
bool rl__gb_class_cp(rl__sstr *out, uint32_t c);
/* x{min,max} as GBNF (max RL__RE_INF: unbounded); x must be one element (a name, class,
 * literal or parenthesized group). Counts the copies against the budget. Writes nothing
 * for max == 0. */
bool rl__gb_rep(rl__gb *g, rl__sstr *out, const char *x, uint64_t min, uint64_t max);
/* Whether expression e needs parentheses to be used as one element of a sequence. */
bool rl__gb_needs_group(const char *e);
/* Whether e is one element (so a quantifier may follow it). */
bool rl__gb_is_atom(const char *e);
/* How many rules the grammar engine makes inside expression e when it rewrites its groups
 * and repetitions (as llama.cpp's parser does; saturating). The engine refuses a quantifier
 * on a group when that number times the quantifier's count reaches 2000. */
uint64_t rl__gb_rules_in(const char *e);
/* (e) followed by quant ("?", "*", "+" or ""), or, when the engine would refuse that, a new
 * rule named after hint holding e, followed by quant. */
bool rl__gb_group(rl__gb *g, rl__sstr *out, const char *e, const char *quant, const char *hint);

/* Integers in [lo, hi] as GBNF digit rules (decimal, no leading zeros, "-" for
 * negatives); lo <= hi. */
bool rl__gb_int_range(rl__sstr *out, int64_t lo, int64_t hi);

/* ---- regex to GBNF (regex_gbnf.c) ------------------------------------------------------ */
/* Write the pattern re as a GBNF expression (a sequence of alternatives; "" when it
 * matches only the empty text) into out. json: code points are written as the content of
 * a JSON string (canonical escapes, so the grammar's texts decode to what the pattern
 * matched), else as raw text. Sub-rules (for repeated groups) are added to g named after
 * `name`. search: the pattern may match anywhere (JSON Schema's `pattern`: JSON string
 * characters around it), else it must match the whole text; in both modes ^ and $ may
 * stand at the ends of top-level alternatives. Returns false with g's error set; *never is
 * set (and nothing written) when no text matches. */
bool rl__re_emit(const rl__re *re, rl__gb *g, const char *name, bool json, bool search,
                 rl__sstr *out, bool *never);
/* Narrow re (anchored at both ends) to texts of lo..hi code points (hi RL__RE_INF:
 * unbounded) when that is a change of one repetition count: the pattern is a sequence of
 * fixed-length pieces and at most one repetition of a fixed-length piece. False when the
 * pattern has another shape; *never when no length fits. */
bool rl__re_fit_length(rl__re *re, uint64_t lo, uint64_t hi, bool *never);

#endif /* RL_SCHEMA_IMPL_H */
