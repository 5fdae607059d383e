/*
 * regex_gbnf.c - a parsed ECMAScript regular expression (regex.c) as GBNF, and
 * rl_regex_to_gbnf.
 *
 * Two output alphabets: raw text (ruvllm run --regex), or the inside of a JSON string
 * (JSON Schema `pattern`), where a set of code points becomes the union of its characters
 * that may stand raw in JSON and the canonical escapes of the others (\" \\ \n ... and
 * \u00xx for other control characters), so that every text the grammar allows decodes to
 * a string the pattern matches.
 *
 * A repetition of something that can match the empty text is rewritten over its non-empty
 * part ((a*)* as (a+)*): the grammar engine, like llama.cpp's, turns x* into a recursive
 * rule and refuses the left recursion a nullable x would make.
 */
#include "schema/schema_impl.h"

#include <stdio.h>

typedef struct emitter {
    const rl__re *re;
    rl__gb *g;
    const char *name;
    bool json;
    unsigned sub; /* sub-rules made so far */
} emitter;

/* An emitted piece: NULL text with dead (matches nothing) or empty (matches only ""). */
typedef struct frag {
    char *s;
    bool dead, empty;
} frag;

static frag f_dead(void) { return (frag){NULL, true, false}; }
static frag f_empty(void) { return (frag){NULL, false, true}; }

static frag f_take(emitter *e, rl__sstr *s) {
    char *t = rl__sstr_take(s);
    if (!t) {
        rl__gb_fail(e->g, RL_ERR_NOMEM, "out of memory");
        return f_dead();
    }
    return (frag){t, false, false};
}

static bool nullable(const emitter *e, uint32_t i) {
    uint64_t mn, mx;
    rl__re_bounds(e->re, i, &mn, &mx);
    return mn == 0;
}

/* ---- sets ------------------------------------------------------------------------------- */

/* Ranges r[0..2n) as a GBNF class, negated when that is shorter. */
static void put_class(rl__sstr *out, const uint32_t *r, uint32_t n) {
    /* the complement, with the surrogate hole counted as inside the set */
    uint32_t comp_n = 0;
    uint32_t next = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t lo = r[2 * i];
        if (lo == 0xE000 && next == 0xD800) lo = 0xD800;
        if (lo > next) comp_n++;
        next = r[2 * i + 1] + 1;
    }
    if (next <= 0x10FFFF) comp_n++;
    if (comp_n == 0) {
        rl__sstr_puts(out, ".");
        return;
    }
    bool neg = comp_n < n;
    rl__sstr_puts(out, neg ? "[^" : "[");
    if (!neg) {
        for (uint32_t i = 0; i < n; i++) {
            rl__gb_class_cp(out, r[2 * i]);
            if (r[2 * i + 1] == r[2 * i]) continue;
            if (r[2 * i + 1] > r[2 * i] + 1) rl__sstr_putc(out, '-');
            rl__gb_class_cp(out, r[2 * i + 1]);
        }
    } else {
        next = 0;
        for (uint32_t i = 0; i <= n; i++) {
            uint32_t lo = i < n ? r[2 * i] : 0x110000;
            if (lo == 0xE000 && next == 0xD800) lo = 0xD800;
            if (lo > next) {
                uint32_t a = next, b = lo - 1;
                rl__gb_class_cp(out, a);
                if (b != a) {
                    if (b > a + 1) rl__sstr_putc(out, '-');
                    rl__gb_class_cp(out, b);
                }
            }
            if (i < n) next = r[2 * i + 1] + 1;
        }
    }
    rl__sstr_putc(out, ']');
}

static bool in_set(const uint32_t *r, uint32_t n, uint32_t c) {
    for (uint32_t i = 0; i < n; i++)
        if (c >= r[2 * i] && c <= r[2 * i + 1]) return true;
    return false;
}

/* A literal for one code point: raw, or its canonical JSON escape. */
static void put_cp_lit(const emitter *e, rl__sstr *out, uint32_t c) {
    rl__sstr u = {0}, j = {0};
    rl__sstr_put_cp(&u, c);
    if (e->json) {
        rl__json_canon_str(u.p, u.len, &j);
        rl__gb_lit(out, j.p ? j.p : "", j.len);
    } else {
        rl__gb_lit(out, u.p ? u.p : "", u.len);
    }
    if (u.oom || j.oom) out->oom = true;
    rl__sstr_free(&u);
    rl__sstr_free(&j);
}

static frag emit_set(emitter *e, const rl__re_node *nd) {
    if (!nd->n) return f_dead();
    rl__sstr s = {0};
    if (nd->n == 1 && nd->ranges[0] == nd->ranges[1]) {
        put_cp_lit(e, &s, nd->ranges[0]);
        return f_take(e, &s);
    }
    if (!e->json) {
        put_class(&s, nd->ranges, nd->n);
        return f_take(e, &s);
    }
    /* JSON: the raw part (without " \ and control characters), short escapes, \u00xx */
    uint32_t *raw = rl__malloc((size_t)(nd->n + 4) * 2 * sizeof *raw);
    if (!raw) {
        rl__gb_fail(e->g, RL_ERR_NOMEM, "out of memory");
        return f_dead();
    }
    uint32_t nr = 0;
    static const uint32_t cut[][2] = {{0, 0x1F}, {0x22, 0x22}, {0x5C, 0x5C}, {0x7F, 0x7F}};
    for (uint32_t i = 0; i < nd->n; i++) {
        uint32_t lo = nd->ranges[2 * i], hi = nd->ranges[2 * i + 1];
        for (size_t k = 0; k < RL_ARRAY_LEN(cut) && lo <= hi; k++) {
            if (hi < cut[k][0] || lo > cut[k][1]) continue;
            if (lo < cut[k][0]) {
                raw[2 * nr] = lo, raw[2 * nr + 1] = cut[k][0] - 1, nr++;
            }
            lo = cut[k][1] + 1;
        }
        if (lo <= hi) raw[2 * nr] = lo, raw[2 * nr + 1] = hi, nr++;
    }
    int alts = 0;
    if (nr == 1 && raw[0] == raw[1]) {
        put_cp_lit(e, &s, raw[0]);
        alts++;
    } else if (nr) {
        put_class(&s, raw, nr);
        alts++;
    }
    rl__free(raw);
    static const struct {
        uint32_t c;
        const char *cls; /* the escape letter inside a GBNF class */
    } shorts[] = {{'"', "\\\""}, {'\\', "\\\\"}, {8, "b"}, {12, "f"},
                  {10, "n"},     {13, "r"},      {9, "t"}};
    rl__sstr letters = {0};
    int n_letters = 0;
    for (size_t k = 0; k < RL_ARRAY_LEN(shorts); k++) {
        if (!in_set(nd->ranges, nd->n, shorts[k].c)) continue;
        rl__sstr_puts(&letters, shorts[k].cls);
        n_letters++;
    }
    if (n_letters) {
        if (alts++) rl__sstr_puts(&s, " | ");
        rl__sstr_puts(&s, "\"\\\\\" [");
        rl__sstr_put(&s, letters.p, letters.len);
        rl__sstr_putc(&s, ']');
    }
    rl__sstr_free(&letters);
    /* other control characters: \u00xx with lower-case hex, grouped by the high digit */
    static const char hex[] = "0123456789abcdef";
    rl__sstr u = {0};
    int groups = 0;
    for (uint32_t hi = 0; hi < 8; hi++) {
        rl__sstr lows = {0};
        for (uint32_t lo = 0; lo < 16; lo++) {
            uint32_t c = hi * 16 + lo;
            bool ctl = c < 0x20 || c == 0x7F;
            if (!ctl || c == 8 || c == 9 || c == 10 || c == 12 || c == 13) continue;
            if (in_set(nd->ranges, nd->n, c)) rl__sstr_putc(&lows, hex[lo]);
        }
        if (lows.len) {
            if (groups++) rl__sstr_puts(&u, " | ");
            rl__sstr_printf(&u, "\"%c\" [%s]", hex[hi], lows.p);
        }
        if (lows.oom) u.oom = true;
        rl__sstr_free(&lows);
    }
    if (groups) {
        if (alts++) rl__sstr_puts(&s, " | ");
        rl__sstr_puts(&s, "\"\\\\u00\" ");
        if (groups > 1) rl__sstr_putc(&s, '(');
        rl__sstr_put(&s, u.p, u.len);
        if (groups > 1) rl__sstr_putc(&s, ')');
    }
    if (u.oom) s.oom = true;
    rl__sstr_free(&u);
    if (!alts) {
        rl__sstr_free(&s);
        return f_dead();
    }
    return f_take(e, &s);
}

/* ---- the tree ---------------------------------------------------------------------------- */

static frag emit(emitter *e, uint32_t i, bool nonnull);

static bool is_literal(const char *s) {
    size_t n = strlen(s);
    return n >= 2 && s[0] == '"' && s[n - 1] == '"' && rl__gb_is_atom(s);
}

/* Append piece p to the sequence in out, joining adjacent literals into one. */
static void seq_append(rl__sstr *out, bool *last_lit, const char *p) {
    bool lit = is_literal(p);
    bool group = rl__gb_needs_group(p);
    if (lit && *last_lit && out->len && out->p[out->len - 1] == '"') {
        out->len--;
        rl__sstr_puts(out, p + 1);
    } else {
        if (out->len) rl__sstr_putc(out, ' ');
        if (group) rl__sstr_putc(out, '(');
        rl__sstr_puts(out, p);
        if (group) rl__sstr_putc(out, ')');
    }
    *last_lit = lit;
}

/* Kids [from, to) of a SEQ in order; the first one non-empty when first_nonnull. */
static frag emit_seq_range(emitter *e, const rl__re_node *nd, uint32_t from, bool first_nonnull) {
    rl__sstr s = {0};
    bool last_lit = false;
    for (uint32_t k = from; k < nd->n; k++) {
        frag f = emit(e, nd->kids[k], first_nonnull && k == from);
        if (f.dead) {
            rl__sstr_free(&s);
            return f_dead();
        }
        if (f.empty) continue;
        seq_append(&s, &last_lit, f.s);
        rl__free(f.s);
    }
    if (!s.len && !s.oom) {
        rl__sstr_free(&s);
        return f_empty();
    }
    return f_take(e, &s);
}

static frag emit_alts(emitter *e, frag *fs, uint32_t n) {
    rl__sstr s = {0};
    int live = 0;
    bool opt = false;
    for (uint32_t k = 0; k < n; k++) {
        if (fs[k].dead) continue;
        if (fs[k].empty) {
            opt = true;
            continue;
        }
        if (live++) rl__sstr_puts(&s, " | ");
        rl__sstr_puts(&s, fs[k].s);
    }
    for (uint32_t k = 0; k < n; k++) rl__free(fs[k].s);
    if (!live) {
        rl__sstr_free(&s);
        return opt ? f_empty() : f_dead();
    }
    if (opt) {
        rl__sstr t = {0};
        if (s.oom) {
            rl__sstr_free(&s);
            rl__gb_fail(e->g, RL_ERR_NOMEM, "out of memory");
            return f_dead();
        }
        if (rl__gb_is_atom(s.p)) {
            rl__sstr_put(&t, s.p, s.len);
            rl__sstr_putc(&t, '?');
        } else {
            char hint[128];
            snprintf(hint, sizeof hint, "%s-%u", e->name, ++e->sub);
            if (!rl__gb_group(e->g, &t, s.p, "?", hint)) {
                rl__sstr_free(&s);
                rl__sstr_free(&t);
                return f_dead();
            }
        }
        rl__sstr_free(&s);
        return f_take(e, &t);
    }
    return f_take(e, &s);
}

static frag emit_rep(emitter *e, const rl__re_node *nd, bool nonnull) {
    uint32_t k = nd->kids[0];
    bool kn = nullable(e, k);
    uint64_t lo, hi = nd->max;
    frag kid;
    if (kn) {
        /* x{m,n} with x nullable: the non-empty part of x, 0 (or 1) to n times */
        kid = (hi > 1 || nonnull) ? emit(e, k, true) : emit(e, k, false);
        lo = nonnull ? 1 : 0;
        if (!(hi > 1 || nonnull)) lo = 0;
    } else {
        kid = emit(e, k, false);
        lo = nd->min;
        if (nonnull && lo == 0) lo = 1;
    }
    if (hi == 0 || kid.empty) {
        rl__free(kid.s);
        return nonnull ? f_dead() : f_empty();
    }
    if (kid.dead) return lo == 0 && !nonnull ? f_empty() : f_dead();
    if (lo == 1 && hi == 1) return kid;
    rl__sstr s = {0};
    const char *x = kid.s;
    char *tmp = NULL;
    if (!rl__gb_is_atom(kid.s)) {
        /* a group repeated with a count becomes a rule, so the engine copies a name */
        bool counted = lo > 1 || (hi > 1 && hi != RL__RE_INF);
        if (counted) {
            char hint[128];
            snprintf(hint, sizeof hint, "%s-%u", e->name, ++e->sub);
            const char *nm = rl__gb_add(e->g, hint, kid.s);
            if (!nm) {
                rl__free(kid.s);
                return f_dead();
            }
            x = nm;
        } else {
            rl__sstr t = {0};
            rl__sstr_putc(&t, '(');
            rl__sstr_puts(&t, kid.s);
            rl__sstr_putc(&t, ')');
            tmp = rl__sstr_take(&t);
            if (!tmp) {
                rl__free(kid.s);
                rl__gb_fail(e->g, RL_ERR_NOMEM, "out of memory");
                return f_dead();
            }
            x = tmp;
        }
    }
    bool ok = rl__gb_rep(e->g, &s, x, lo, hi);
    rl__free(tmp);
    rl__free(kid.s);
    if (!ok) {
        rl__sstr_free(&s);
        return f_dead();
    }
    return f_take(e, &s);
}

/* The language of node i (without the empty text when nonnull). */
static frag emit(emitter *e, uint32_t i, bool nonnull) {
    if (e->g->st != RL_OK) return f_dead();
    const rl__re_node *nd = &e->re->nodes[i];
    switch (nd->kind) {
    case RL__RE_SET:
        return emit_set(e, nd);
    case RL__RE_EMPTY:
    case RL__RE_BOL:
    case RL__RE_EOL:
        return nonnull ? f_dead() : f_empty();
    case RL__RE_SEQ: {
        if (!nonnull || !nullable(e, i)) return emit_seq_range(e, nd, 0, false);
        /* every kid is nullable: the first non-empty kid, then the rest as they are */
        frag *fs = rl__calloc(nd->n, sizeof *fs);
        if (!fs) {
            rl__gb_fail(e->g, RL_ERR_NOMEM, "out of memory");
            return f_dead();
        }
        for (uint32_t k = 0; k < nd->n; k++) {
            fs[k] = emit_seq_range(e, nd, k, true);
            if (fs[k].empty) fs[k] = f_dead(); /* cannot happen: the first kid is non-empty */
        }
        frag r = emit_alts(e, fs, nd->n);
        rl__free(fs);
        return r;
    }
    case RL__RE_ALT: {
        frag *fs = rl__calloc(nd->n, sizeof *fs);
        if (!fs) {
            rl__gb_fail(e->g, RL_ERR_NOMEM, "out of memory");
            return f_dead();
        }
        for (uint32_t k = 0; k < nd->n; k++) fs[k] = emit(e, nd->kids[k], nonnull);
        frag r = emit_alts(e, fs, nd->n);
        rl__free(fs);
        return r;
    }
    case RL__RE_REP:
        return emit_rep(e, nd, nonnull);
    }
    return f_dead();
}

static bool anchored(const rl__re *re, uint32_t i, int kind) {
    const rl__re_node *nd = &re->nodes[i];
    if (nd->kind == kind) return true;
    if (nd->kind != RL__RE_SEQ || !nd->n) return false;
    uint32_t k = kind == RL__RE_BOL ? nd->kids[0] : nd->kids[nd->n - 1];
    return re->nodes[k].kind == kind;
}

bool rl__re_emit(const rl__re *re, rl__gb *g, const char *name, bool json, bool search,
                 rl__sstr *out, bool *never) {
    emitter e = {re, g, name, json, 0};
    *never = false;
    const rl__re_node *root = &re->nodes[re->root];
    uint32_t n_top = root->kind == RL__RE_ALT ? root->n : 1;
    frag *fs = rl__calloc(n_top, sizeof *fs);
    if (!fs) return rl__gb_fail(g, RL_ERR_NOMEM, "out of memory");
    const char *any = NULL;
    if (search && json) any = rl__gb_prim(g, "char");
    for (uint32_t k = 0; k < n_top && g->st == RL_OK; k++) {
        uint32_t t = root->kind == RL__RE_ALT ? root->kids[k] : re->root;
        frag f = emit(&e, t, false);
        if (f.dead || !search) {
            fs[k] = f;
            continue;
        }
        bool open_start = !anchored(re, t, RL__RE_BOL), open_end = !anchored(re, t, RL__RE_EOL);
        if (!open_start && !open_end) {
            fs[k] = f;
            continue;
        }
        rl__sstr s = {0};
        char star[64];
        snprintf(star, sizeof star, "%s*", json ? any : ".");
        if (open_start) rl__sstr_puts(&s, star);
        if (!f.empty) {
            bool grp = rl__gb_needs_group(f.s);
            if (s.len) rl__sstr_putc(&s, ' ');
            if (grp) rl__sstr_putc(&s, '(');
            rl__sstr_puts(&s, f.s);
            if (grp) rl__sstr_putc(&s, ')');
        }
        if (open_end && !(f.empty && open_start)) {
            if (s.len) rl__sstr_putc(&s, ' ');
            rl__sstr_puts(&s, star);
        }
        rl__free(f.s);
        fs[k] = f_take(&e, &s);
    }
    if (g->st != RL_OK) {
        for (uint32_t k = 0; k < n_top; k++) rl__free(fs[k].s);
        rl__free(fs);
        return false;
    }
    frag r = emit_alts(&e, fs, n_top);
    rl__free(fs);
    if (g->st != RL_OK) {
        rl__free(r.s);
        return false;
    }
    if (r.dead) {
        *never = true;
        return true;
    }
    if (!r.empty) rl__sstr_puts(out, r.s);
    rl__free(r.s);
    if (out->oom) return rl__gb_fail(g, RL_ERR_NOMEM, "out of memory");
    return true;
}

/* Collect the pieces of a sequence: their fixed total length, and at most one repetition
 * of a fixed-length piece. */
static bool fit_collect(rl__re *re, uint32_t i, uint64_t *fixed, int64_t *rep) {
    rl__re_node *nd = &re->nodes[i];
    if (nd->kind == RL__RE_SEQ) {
        for (uint32_t k = 0; k < nd->n; k++)
            if (!fit_collect(re, nd->kids[k], fixed, rep)) return false;
        return true;
    }
    uint64_t mn, mx;
    rl__re_bounds(re, i, &mn, &mx);
    if (mn == mx && mx != RL__RE_INF) {
        *fixed += mn;
        return true;
    }
    if (nd->kind != RL__RE_REP || *rep >= 0) return false;
    rl__re_bounds(re, nd->kids[0], &mn, &mx);
    if (mn != mx || mx == RL__RE_INF || mn == 0) return false;
    *rep = i;
    return true;
}

bool rl__re_fit_length(rl__re *re, uint64_t lo, uint64_t hi, bool *never) {
    *never = false;
    const rl__re_node *root = &re->nodes[re->root];
    if (!anchored(re, re->root, RL__RE_BOL) || !anchored(re, re->root, RL__RE_EOL) ||
        root->kind != RL__RE_SEQ)
        return false;
    uint64_t fixed = 0;
    int64_t rep = -1;
    if (!fit_collect(re, re->root, &fixed, &rep)) return false;
    if (rep < 0) {
        *never = fixed < lo || (hi != RL__RE_INF && fixed > hi);
        return true;
    }
    rl__re_node *r = &re->nodes[rep];
    uint64_t k, kk;
    rl__re_bounds(re, r->kids[0], &k, &kk);
    uint64_t cmin = r->min, cmax = r->max;
    if (lo > fixed) {
        uint64_t need = (lo - fixed + k - 1) / k;
        if (need > cmin) cmin = need;
    }
    if (hi != RL__RE_INF) {
        if (hi < fixed) {
            *never = true;
            return true;
        }
        uint64_t room = (hi - fixed) / k;
        if (cmax == RL__RE_INF || room < cmax) cmax = room;
    }
    if (cmax != RL__RE_INF && cmin > cmax) {
        *never = true;
        return true;
    }
    r->min = (uint32_t)(cmin > UINT32_MAX - 1 ? UINT32_MAX - 1 : cmin);
    r->max = (uint32_t)cmax;
    return true;
}

rl_status rl_regex_to_gbnf(const char *pattern, size_t len, uint32_t flags, char **gbnf_out,
                           char *err, size_t err_size) {
    if (gbnf_out) *gbnf_out = NULL;
    if (err && err_size) err[0] = 0;
    if (!gbnf_out || (!pattern && len)) {
        rl__fmt(err, err_size, "rl_regex_to_gbnf: NULL argument");
        return RL_ERR_INVALID_ARG;
    }
    if (flags) {
        rl__fmt(err, err_size, "rl_regex_to_gbnf: flags must be 0");
        return RL_ERR_INVALID_ARG;
    }
    rl__re re;
    rl_status st = rl__re_parse(pattern ? pattern : "", len, &re, err, err_size);
    if (st != RL_OK) return st;
    rl__gb g;
    rl__gb_init(&g, 0);
    int32_t root = rl__gb_reserve(&g, "root");
    rl__sstr body = {0};
    bool never = false;
    if (root >= 0 && rl__re_emit(&re, &g, "root", false, false, &body, &never)) {
        if (never)
            rl__gb_fail(&g, RL_ERR_INVALID_ARG, "regex: no text matches the pattern");
        else if (body.oom)
            rl__gb_fail(&g, RL_ERR_NOMEM, "out of memory");
        else
            rl__gb_define(&g, root, body.len ? body.p : "\"\"");
    }
    rl__sstr_free(&body);
    rl__re_free(&re);
    if (g.st == RL_OK) {
        *gbnf_out = rl__gb_text(&g);
        if (!*gbnf_out) rl__gb_fail(&g, RL_ERR_NOMEM, "out of memory");
    }
    st = g.st;
    if (st != RL_OK) rl__fmt(err, err_size, "%s", g.err);
    rl__gb_free(&g);
    return st;
}
