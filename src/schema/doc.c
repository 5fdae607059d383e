/*
 * doc.c - schema documents: load, walk every subschema once, index base URIs ($id) and
 * anchors ($anchor, $dynamicAnchor, draft-07 "$id": "#name"), and resolve every $ref to the
 * JSON value it names (RFC 3986 reference resolution, JSON pointers per RFC 6901 with
 * percent-decoding, remote documents through the caller's resolver). After loading, a
 * schema object's $ref target is one hash lookup (rl__sdoc_ref).
 */
#include "schema/schema_impl.h"

#include <stdio.h>
#include <stdlib.h>

#define MAX_WALK_DEPTH 512
#define MAX_DOCS 256

typedef struct pending {
    const json_t *node;
    char *uri; /* absolute reference, fragment included */
} pending;

typedef struct loader {
    rl__sdoc *d;
    pending *pend;
    size_t n_pend, cap_pend;
    rl_status st;
    char *err;
    size_t err_size;
} loader;

static bool fail(loader *L, rl_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool fail(loader *L, rl_status st, const char *fmt, ...) {
    if (L->st == RL_OK) {
        L->st = st;
        va_list ap;
        va_start(ap, fmt);
        rl__vfmt(L->err, L->err_size, fmt, ap);
        va_end(ap);
    }
    return false;
}

static bool nomem(loader *L) { return fail(L, RL_ERR_NOMEM, "out of memory"); }

/* ---- URIs (RFC 3986 section 5) -------------------------------------------------------- */

typedef struct uri_parts {
    const char *scheme, *auth, *path, *query, *frag;
    size_t scheme_n, auth_n, path_n, query_n, frag_n;
    bool has_scheme, has_auth, has_query, has_frag;
} uri_parts;

/* The regular expression of RFC 3986 appendix B, by hand. */
static void uri_split(const char *u, uri_parts *p) {
    memset(p, 0, sizeof *p);
    const char *s = u;
    const char *c = s;
    while (*c && *c != ':' && *c != '/' && *c != '?' && *c != '#') c++;
    if (*c == ':' && c > s) {
        p->has_scheme = true;
        p->scheme = s;
        p->scheme_n = (size_t)(c - s);
        s = c + 1;
    }
    if (s[0] == '/' && s[1] == '/') {
        s += 2;
        c = s;
        while (*c && *c != '/' && *c != '?' && *c != '#') c++;
        p->has_auth = true;
        p->auth = s;
        p->auth_n = (size_t)(c - s);
        s = c;
    }
    c = s;
    while (*c && *c != '?' && *c != '#') c++;
    p->path = s;
    p->path_n = (size_t)(c - s);
    s = c;
    if (*s == '?') {
        s++;
        c = s;
        while (*c && *c != '#') c++;
        p->has_query = true;
        p->query = s;
        p->query_n = (size_t)(c - s);
        s = c;
    }
    if (*s == '#') {
        p->has_frag = true;
        p->frag = s + 1;
        p->frag_n = strlen(s + 1);
    }
}

/* RFC 3986 5.2.4 remove_dot_segments, appending the result to out. */
static void remove_dots(const char *in, size_t n, rl__sstr *out) {
    rl__sstr buf = {0};
    rl__sstr_put(&buf, in, n);
    if (buf.oom) {
        out->oom = true;
        return;
    }
    char *a = buf.p ? buf.p : (char *)"";
    size_t base = out->len;
    size_t i = 0, len = buf.len;
    while (i < len) {
        const char *s = a + i;
        size_t rem = len - i;
        if (rem >= 3 && !memcmp(s, "../", 3)) {
            i += 3;
        } else if (rem >= 2 && !memcmp(s, "./", 2)) {
            i += 2;
        } else if (rem >= 3 && !memcmp(s, "/./", 3)) {
            i += 2;
        } else if (rem == 2 && !memcmp(s, "/.", 2)) {
            a[i + 1] = '/';
            i += 1;
        } else if ((rem >= 4 && !memcmp(s, "/../", 4)) || (rem == 3 && !memcmp(s, "/..", 3))) {
            if (rem == 3) {
                a[i + 2] = '/';
                i += 2;
            } else {
                i += 3;
            }
            /* drop the last segment of the output */
            size_t k = out->len;
            while (k > base && out->p[k - 1] != '/') k--;
            if (k > base) k--;
            out->len = k;
            if (out->p) out->p[k] = 0;
        } else if ((rem == 1 && s[0] == '.') || (rem == 2 && !memcmp(s, "..", 2))) {
            i = len;
        } else {
            size_t j = (s[0] == '/') ? 1 : 0;
            while (j < rem && s[j] != '/') j++;
            rl__sstr_put(out, s, j);
            i += j;
        }
    }
    rl__sstr_free(&buf);
}

/* Resolve reference ref against base (both NUL-terminated) into a new string. */
static char *uri_resolve(const char *base, const char *ref) {
    uri_parts B, R;
    uri_split(base, &B);
    uri_split(ref, &R);
    rl__sstr t = {0};
    const uri_parts *S = &B; /* where the scheme comes from */
    const char *auth = NULL;
    size_t auth_n = 0;
    bool has_auth = false;
    rl__sstr path = {0};
    const char *query = NULL;
    size_t query_n = 0;
    bool has_query = false;
    if (R.has_scheme) {
        S = &R;
        has_auth = R.has_auth, auth = R.auth, auth_n = R.auth_n;
        remove_dots(R.path, R.path_n, &path);
        has_query = R.has_query, query = R.query, query_n = R.query_n;
    } else {
        if (R.has_auth) {
            has_auth = true, auth = R.auth, auth_n = R.auth_n;
            remove_dots(R.path, R.path_n, &path);
            has_query = R.has_query, query = R.query, query_n = R.query_n;
        } else {
            if (R.path_n == 0) {
                rl__sstr_put(&path, B.path, B.path_n);
                if (R.has_query) {
                    has_query = true, query = R.query, query_n = R.query_n;
                } else {
                    has_query = B.has_query, query = B.query, query_n = B.query_n;
                }
            } else {
                if (R.path[0] == '/') {
                    remove_dots(R.path, R.path_n, &path);
                } else {
                    rl__sstr merged = {0};
                    if (B.has_auth && B.path_n == 0) {
                        rl__sstr_putc(&merged, '/');
                    } else {
                        size_t k = B.path_n;
                        while (k > 0 && B.path[k - 1] != '/') k--;
                        rl__sstr_put(&merged, B.path, k);
                    }
                    rl__sstr_put(&merged, R.path, R.path_n);
                    if (merged.oom)
                        path.oom = true;
                    else
                        remove_dots(merged.p ? merged.p : "", merged.len, &path);
                    rl__sstr_free(&merged);
                }
                has_query = R.has_query, query = R.query, query_n = R.query_n;
            }
            has_auth = B.has_auth, auth = B.auth, auth_n = B.auth_n;
        }
    }
    if (S->has_scheme) {
        rl__sstr_put(&t, S->scheme, S->scheme_n);
        rl__sstr_putc(&t, ':');
    }
    if (has_auth) {
        rl__sstr_puts(&t, "//");
        rl__sstr_put(&t, auth, auth_n);
    }
    if (path.oom)
        t.oom = true;
    else
        rl__sstr_put(&t, path.p ? path.p : "", path.len);
    rl__sstr_free(&path);
    if (has_query) {
        rl__sstr_putc(&t, '?');
        rl__sstr_put(&t, query, query_n);
    }
    if (R.has_frag) {
        rl__sstr_putc(&t, '#');
        rl__sstr_put(&t, R.frag, R.frag_n);
    }
    return rl__sstr_take(&t);
}

/* ---- documents ------------------------------------------------------------------------ */

static bool add_path(loader *L, const json_t *node, const char *doc_uri, const rl__sstr *ptr) {
    rl__sdoc *d = L->d;
    if (rl__pmap_get(&d->paths, node, NULL)) return true;
    if (d->n_paths == d->cap_paths) {
        size_t cap = d->cap_paths ? d->cap_paths * 2 : 64;
        char **p = rl__realloc(d->path_list, cap * sizeof *p);
        if (!p) return nomem(L);
        d->path_list = p;
        d->cap_paths = cap;
    }
    rl__sstr s = {0};
    rl__sstr_puts(&s, doc_uri);
    rl__sstr_putc(&s, '#');
    rl__sstr_put(&s, ptr->p ? ptr->p : "", ptr->len);
    char *z = rl__sstr_take(&s);
    if (!z) return nomem(L);
    if (!rl__pmap_put(&d->paths, node, d->n_paths)) {
        rl__free(z);
        return nomem(L);
    }
    d->path_list[d->n_paths++] = z;
    return true;
}

static void ptr_push(rl__sstr *ptr, const char *key) {
    rl__sstr_putc(ptr, '/');
    for (const char *c = key; *c; c++) {
        if (*c == '~')
            rl__sstr_puts(ptr, "~0");
        else if (*c == '/')
            rl__sstr_puts(ptr, "~1");
        else
            rl__sstr_putc(ptr, *c);
    }
}

static void ptr_pop(rl__sstr *ptr, size_t len) {
    ptr->len = len;
    if (ptr->p) ptr->p[len] = 0;
}

static bool put_uri(loader *L, rl__smap *m, const char *uri, const json_t *node) {
    uint64_t old;
    if (rl__smap_get(m, uri, strlen(uri), &old)) return true; /* first one wins */
    if (!rl__smap_put(m, uri, strlen(uri), (uint64_t)(uintptr_t)node)) return nomem(L);
    return true;
}

/* Keywords whose value is one schema, an array of schemas, or an object of schemas. */
static const char *const ONE_SCHEMA[] = {"additionalProperties",
                                         "additionalItems",
                                         "contains",
                                         "not",
                                         "if",
                                         "then",
                                         "else",
                                         "propertyNames",
                                         "unevaluatedItems",
                                         "unevaluatedProperties",
                                         "contentSchema"};
static const char *const SCHEMA_ARRAY[] = {"allOf", "anyOf", "oneOf", "prefixItems"};
static const char *const SCHEMA_MAP[] = {"properties", "patternProperties", "$defs", "definitions",
                                         "dependentSchemas"};

static bool walk(loader *L, const json_t *node, const char *base, const char *doc_uri,
                 rl__sstr *ptr, int depth);

static bool walk_child(loader *L, const json_t *child, const char *base, const char *doc_uri,
                       rl__sstr *ptr, int depth, const char *k1, const char *k2) {
    size_t save = ptr->len;
    ptr_push(ptr, k1);
    if (k2) ptr_push(ptr, k2);
    bool ok = walk(L, child, base, doc_uri, ptr, depth + 1);
    ptr_pop(ptr, save);
    return ok;
}

static bool walk(loader *L, const json_t *node, const char *base, const char *doc_uri,
                 rl__sstr *ptr, int depth) {
    rl__sdoc *d = L->d;
    if (depth > MAX_WALK_DEPTH)
        return fail(L, RL_ERR_LIMIT, "schema nested deeper than %d at %s#%s", MAX_WALK_DEPTH,
                    doc_uri, ptr->p ? ptr->p : "");
    if (json_is_boolean(node)) return add_path(L, node, doc_uri, ptr);
    if (!json_is_object(node))
        return fail(L, RL_ERR_INVALID_ARG, "%s#%s: a schema must be an object or a boolean",
                    doc_uri, ptr->p ? ptr->p : "");
    if (rl__pmap_get(&d->paths, node, NULL)) return true;
    if (!add_path(L, node, doc_uri, ptr)) return false;
    char *own_base = NULL;
    const json_t *ref = json_object_get(node, "$ref");
    bool ref_only = d->draft7 && ref; /* draft-07: $ref hides its siblings */
    const json_t *id = ref_only ? NULL : json_object_get(node, "$id");
    if (id) {
        if (!json_is_string(id))
            return fail(L, RL_ERR_INVALID_ARG, "%s#%s/$id: not a string", doc_uri,
                        ptr->p ? ptr->p : "");
        const char *s = json_string_value(id);
        if (s[0] == '#') {
            /* draft-07 plain-name fragment: an anchor */
            if (s[1]) {
                char *a = uri_resolve(base, s);
                if (!a) return nomem(L);
                bool ok = put_uri(L, &d->anchors, a, node);
                rl__free(a);
                if (!ok) return false;
            }
        } else {
            own_base = uri_resolve(base, s);
            if (!own_base) return nomem(L);
            char *h = strchr(own_base, '#');
            if (h) *h = 0; /* an empty fragment ("...#") is allowed; others are ignored */
            if (!put_uri(L, &d->resources, own_base, node)) {
                rl__free(own_base);
                return false;
            }
            base = own_base;
        }
    }
    bool ok = true;
    static const char *const anchor_kw[] = {"$anchor", "$dynamicAnchor"};
    for (size_t i = 0; ok && !ref_only && i < RL_ARRAY_LEN(anchor_kw); i++) {
        const json_t *a = json_object_get(node, anchor_kw[i]);
        if (!a) continue;
        if (!json_is_string(a)) {
            ok = fail(L, RL_ERR_INVALID_ARG, "%s#%s/%s: not a string", doc_uri,
                      ptr->p ? ptr->p : "", anchor_kw[i]);
            break;
        }
        rl__sstr s = {0};
        rl__sstr_puts(&s, base);
        rl__sstr_putc(&s, '#');
        rl__sstr_puts(&s, json_string_value(a));
        char *z = rl__sstr_take(&s);
        ok = z ? put_uri(L, &d->anchors, z, node) : nomem(L);
        rl__free(z);
    }
    if (ok && ref) {
        if (!json_is_string(ref)) {
            ok = fail(L, RL_ERR_INVALID_ARG, "%s#%s/$ref: not a string", doc_uri,
                      ptr->p ? ptr->p : "");
        } else {
            char *abs = uri_resolve(base, json_string_value(ref));
            if (!abs) {
                ok = nomem(L);
            } else {
                if (L->n_pend == L->cap_pend) {
                    size_t cap = L->cap_pend ? L->cap_pend * 2 : 16;
                    pending *p = rl__realloc(L->pend, cap * sizeof *p);
                    if (!p) {
                        rl__free(abs);
                        rl__free(own_base);
                        return nomem(L);
                    }
                    L->pend = p;
                    L->cap_pend = cap;
                }
                L->pend[L->n_pend++] = (pending){node, abs};
            }
        }
    }
    if (ref_only) {
        rl__free(own_base);
        return ok;
    }
    for (size_t i = 0; ok && i < RL_ARRAY_LEN(ONE_SCHEMA); i++) {
        const json_t *c = json_object_get(node, ONE_SCHEMA[i]);
        if (c) ok = walk_child(L, c, base, doc_uri, ptr, depth, ONE_SCHEMA[i], NULL);
    }
    const json_t *items = json_object_get(node, "items");
    if (ok && items) {
        if (json_is_array(items)) {
            for (size_t i = 0; ok && i < json_array_size(items); i++) {
                char ix[24];
                snprintf(ix, sizeof ix, "%zu", i);
                ok =
                    walk_child(L, json_array_get(items, i), base, doc_uri, ptr, depth, "items", ix);
            }
        } else {
            ok = walk_child(L, items, base, doc_uri, ptr, depth, "items", NULL);
        }
    }
    for (size_t i = 0; ok && i < RL_ARRAY_LEN(SCHEMA_ARRAY); i++) {
        const json_t *arr = json_object_get(node, SCHEMA_ARRAY[i]);
        if (!arr) continue;
        if (!json_is_array(arr)) {
            ok = fail(L, RL_ERR_INVALID_ARG, "%s#%s/%s: not an array", doc_uri,
                      ptr->p ? ptr->p : "", SCHEMA_ARRAY[i]);
            break;
        }
        for (size_t j = 0; ok && j < json_array_size(arr); j++) {
            char ix[24];
            snprintf(ix, sizeof ix, "%zu", j);
            ok = walk_child(L, json_array_get(arr, j), base, doc_uri, ptr, depth, SCHEMA_ARRAY[i],
                            ix);
        }
    }
    for (size_t i = 0; ok && i < RL_ARRAY_LEN(SCHEMA_MAP); i++) {
        const json_t *m = json_object_get(node, SCHEMA_MAP[i]);
        if (!m) continue;
        if (!json_is_object(m)) {
            ok = fail(L, RL_ERR_INVALID_ARG, "%s#%s/%s: not an object", doc_uri,
                      ptr->p ? ptr->p : "", SCHEMA_MAP[i]);
            break;
        }
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)m, k, v) {
            if (!ok) break;
            ok = walk_child(L, v, base, doc_uri, ptr, depth, SCHEMA_MAP[i], k);
        }
    }
    /* draft-07 "dependencies": values are schemas or arrays of names */
    const json_t *deps = json_object_get(node, "dependencies");
    if (ok && json_is_object(deps)) {
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)deps, k, v) {
            if (!ok) break;
            if (!json_is_array(v))
                ok = walk_child(L, v, base, doc_uri, ptr, depth, "dependencies", k);
        }
    }
    rl__free(own_base);
    return ok;
}

static bool add_doc(loader *L, json_t *root, const char *uri) {
    rl__sdoc *d = L->d;
    if (d->n_docs >= MAX_DOCS) {
        json_decref(root);
        return fail(L, RL_ERR_LIMIT, "more than %d schema documents", MAX_DOCS);
    }
    if (d->n_docs == d->cap_docs) {
        size_t cap = d->cap_docs ? d->cap_docs * 2 : 4;
        json_t **r = rl__realloc(d->roots, cap * sizeof *r);
        if (!r) {
            json_decref(root);
            return nomem(L);
        }
        d->roots = r;
        char **u = rl__realloc(d->uris, cap * sizeof *u);
        if (!u) {
            json_decref(root);
            return nomem(L);
        }
        d->uris = u;
        d->cap_docs = cap;
    }
    char *z = rl__strdup(uri);
    if (!z) {
        json_decref(root);
        return nomem(L);
    }
    d->roots[d->n_docs] = root;
    d->uris[d->n_docs] = z;
    d->n_docs++;
    if (!put_uri(L, &d->resources, uri, root)) return false;
    rl__sstr ptr = {0};
    bool ok = walk(L, root, uri, uri, &ptr, 0);
    if (ptr.oom) ok = nomem(L);
    rl__sstr_free(&ptr);
    return ok;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decode s[0..n) into out. */
static void pct_decode(const char *s, size_t n, rl__sstr *out) {
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n) {
            int a = hexval((unsigned char)s[i + 1]);
            int b = hexval((unsigned char)s[i + 2]);
            if (a >= 0 && b >= 0) {
                rl__sstr_putc(out, (char)(a * 16 + b));
                i += 2;
                continue;
            }
        }
        rl__sstr_putc(out, s[i]);
    }
}

/* Evaluate the JSON pointer p (decoded) from root; NULL when it names nothing. */
static const json_t *pointer_get(const json_t *root, const char *p, bool *oom) {
    const json_t *cur = root;
    while (*p) {
        if (*p != '/') return NULL;
        p++;
        rl__sstr tok = {0};
        while (*p && *p != '/') {
            if (p[0] == '~' && p[1] == '0') {
                rl__sstr_putc(&tok, '~');
                p += 2;
            } else if (p[0] == '~' && p[1] == '1') {
                rl__sstr_putc(&tok, '/');
                p += 2;
            } else {
                rl__sstr_putc(&tok, *p++);
            }
        }
        if (tok.oom) {
            rl__sstr_free(&tok);
            *oom = true;
            return NULL;
        }
        const char *t = tok.p ? tok.p : "";
        if (json_is_object(cur)) {
            cur = json_object_getn(cur, t, tok.len);
        } else if (json_is_array(cur)) {
            char *end;
            if (!*t || (t[0] == '0' && t[1]) || t[0] < '0' || t[0] > '9') {
                cur = NULL;
            } else {
                unsigned long long ix = strtoull(t, &end, 10);
                cur = (*end || ix >= json_array_size(cur)) ? NULL : json_array_get(cur, ix);
            }
        } else {
            cur = NULL;
        }
        rl__sstr_free(&tok);
        if (!cur) return NULL;
    }
    return cur;
}

static bool resolve_one(loader *L, const pending *pd) {
    rl__sdoc *d = L->d;
    const char *abs = pd->uri;
    const char *hash = strchr(abs, '#');
    size_t doc_n = hash ? (size_t)(hash - abs) : strlen(abs);
    char *doc_uri = rl__strndup(abs, doc_n);
    if (!doc_uri) return nomem(L);
    const char *where = rl__sdoc_path(d, pd->node);
    uint64_t v;
    bool ok = true;
    if (!rl__smap_get(&d->resources, doc_uri, doc_n, &v)) {
        if (!d->resolve) {
            ok = fail(L, RL_ERR_UNSUPPORTED,
                      "%s/$ref: remote reference '%s' and no resolver was given", where, abs);
        } else {
            size_t len = 0;
            const char *text = d->resolve(d->resolve_user, doc_uri, &len);
            if (!text) {
                ok = fail(L, RL_ERR_NOT_FOUND, "%s/$ref: the resolver does not know '%s'", where,
                          doc_uri);
            } else {
                rl_status st = RL_OK;
                char msg[256];
                json_t *root = rl__json_parse(text, len, doc_uri, &st, msg, sizeof msg);
                if (!root)
                    ok = fail(L, st, "%s", msg);
                else
                    ok = add_doc(L, root, doc_uri);
            }
        }
        if (ok && !rl__smap_get(&d->resources, doc_uri, doc_n, &v))
            ok = fail(L, RL_ERR_INTERNAL, "document '%s' not indexed", doc_uri);
    }
    const json_t *target = NULL;
    if (ok) {
        const json_t *root = (const json_t *)(uintptr_t)v;
        rl__sstr frag = {0};
        if (hash) pct_decode(hash + 1, strlen(hash + 1), &frag);
        if (frag.oom) {
            ok = nomem(L);
        } else if (!frag.len) {
            target = root;
        } else if (frag.p[0] == '/') {
            bool oom = false;
            target = pointer_get(root, frag.p, &oom);
            if (oom) ok = nomem(L);
        } else {
            rl__sstr a = {0};
            rl__sstr_puts(&a, doc_uri);
            rl__sstr_putc(&a, '#');
            rl__sstr_put(&a, frag.p, frag.len);
            if (a.oom)
                ok = nomem(L);
            else if (rl__smap_get(&d->anchors, a.p, a.len, &v))
                target = (const json_t *)(uintptr_t)v;
            rl__sstr_free(&a);
        }
        rl__sstr_free(&frag);
        if (ok && !target)
            ok = fail(L, RL_ERR_INVALID_ARG, "%s/$ref: '%s' names nothing", where, abs);
    }
    if (ok && !rl__pmap_get(&d->paths, target, NULL)) {
        /* a pointer into a place the walk did not visit: walk it now, from its document */
        rl__sstr ptr = {0};
        rl__sstr_puts(&ptr, hash ? hash + 1 : "");
        ok = walk(L, target, doc_uri, doc_uri, &ptr, 0);
        rl__sstr_free(&ptr);
    }
    if (ok && !rl__pmap_put(&d->refs, pd->node, (uint64_t)(uintptr_t)target)) ok = nomem(L);
    rl__free(doc_uri);
    return ok;
}

rl_status rl__sdoc_load(rl__sdoc *d, const char *text, size_t len, rl__sdoc_resolve_fn resolve,
                        void *user, char *err, size_t err_size) {
    memset(d, 0, sizeof *d);
    d->resolve = resolve;
    d->resolve_user = user;
    loader L = {.d = d, .err = err, .err_size = err_size};
    if (err && err_size) err[0] = 0;
    rl_status st = RL_OK;
    json_t *root = rl__json_parse(text, len, "schema", &st, err, err_size);
    if (!root) return st;
    const json_t *sv = json_is_object(root) ? json_object_get(root, "$schema") : NULL;
    if (json_is_string(sv)) {
        const char *s = json_string_value(sv);
        d->draft7 = strstr(s, "draft-07") || strstr(s, "draft-06") || strstr(s, "draft-04") ||
                    strstr(s, "draft-03");
    }
    bool ok = add_doc(&L, root, "");
    for (size_t i = 0; ok && i < L.n_pend; i++) ok = resolve_one(&L, &L.pend[i]);
    for (size_t i = 0; i < L.n_pend; i++) rl__free(L.pend[i].uri);
    rl__free(L.pend);
    if (!ok) {
        rl__sdoc_free(d);
        return L.st;
    }
    return RL_OK;
}

void rl__sdoc_free(rl__sdoc *d) {
    for (size_t i = 0; i < d->n_docs; i++) {
        json_decref(d->roots[i]);
        rl__free(d->uris[i]);
    }
    rl__free(d->roots);
    rl__free(d->uris);
    for (size_t i = 0; i < d->n_paths; i++) rl__free(d->path_list[i]);
    rl__free(d->path_list);
    rl__smap_free(&d->resources);
    rl__smap_free(&d->anchors);
    rl__smap_free(&d->refs);
    rl__smap_free(&d->paths);
    memset(d, 0, sizeof *d);
}

const json_t *rl__sdoc_ref(const rl__sdoc *d, const json_t *s) {
    uint64_t v;
    if (!json_is_object(s) || !rl__pmap_get(&d->refs, s, &v)) return NULL;
    return (const json_t *)(uintptr_t)v;
}

const char *rl__sdoc_path(const rl__sdoc *d, const json_t *s) {
    uint64_t v;
    if (!rl__pmap_get(&d->paths, s, &v)) return "?";
    return d->path_list[v];
}
