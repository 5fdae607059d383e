/*
 * sutil.c - a byte-string hash map and the JSON helpers of the schema module (parsing with
 * big integers as reals, the canonical text, equality, UTF-8). The growing string is util's
 * (util/strbuf.c).
 */
#include "schema/schema_impl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- hash map ------------------------------------------------------------------------- */

static uint64_t hash_bytes(const void *key, size_t n) {
    /* FNV-1a, then a final mix so that pointer keys (aligned, similar) spread well */
    const unsigned char *p = key;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static rl__smap_ent *smap_find(const rl__smap *m, const void *key, size_t klen, uint64_t h) {
    if (!m->cap) return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        rl__smap_ent *e = &m->ents[i];
        if (!e->key) return e;
        if (e->hash == h && e->klen == klen && !memcmp(e->key, key, klen)) return e;
    }
}

bool rl__smap_get(const rl__smap *m, const void *key, size_t klen, uint64_t *val) {
    rl__smap_ent *e = smap_find(m, key, klen, hash_bytes(key, klen));
    if (!e || !e->key) return false;
    if (val) *val = e->val;
    return true;
}

static bool smap_rehash(rl__smap *m, size_t cap) {
    rl__smap_ent *ents = rl__calloc(cap, sizeof *ents);
    if (!ents) return false;
    rl__smap old = *m;
    m->ents = ents;
    m->cap = cap;
    for (size_t i = 0; i < old.cap; i++) {
        if (!old.ents[i].key) continue;
        rl__smap_ent *e = smap_find(m, old.ents[i].key, old.ents[i].klen, old.ents[i].hash);
        *e = old.ents[i];
    }
    rl__free(old.ents);
    return true;
}

bool rl__smap_put(rl__smap *m, const void *key, size_t klen, uint64_t val) {
    if ((m->n + 1) * 4 > m->cap * 3 && !smap_rehash(m, m->cap ? m->cap * 2 : 16)) return false;
    uint64_t h = hash_bytes(key, klen);
    rl__smap_ent *e = smap_find(m, key, klen, h);
    if (e->key) {
        e->val = val;
        return true;
    }
    char *k = rl__malloc(klen ? klen : 1);
    if (!k) return false;
    if (klen) memcpy(k, key, klen);
    e->key = k;
    e->klen = klen;
    e->hash = h;
    e->val = val;
    m->n++;
    return true;
}

void rl__smap_free(rl__smap *m) {
    for (size_t i = 0; i < m->cap; i++) rl__free(m->ents[i].key);
    rl__free(m->ents);
    memset(m, 0, sizeof *m);
}

/* ---- JSON ----------------------------------------------------------------------------- */

json_t *rl__json_parse(const char *text, size_t len, const char *what, rl_status *st, char *err,
                       size_t err_size) {
    json_error_t je;
    size_t flags = JSON_DECODE_ANY | JSON_ALLOW_NUL;
    json_t *j = json_loadb(text, len, flags, &je);
    if (!j && json_error_code(&je) == json_error_numeric_overflow && strstr(je.text, "integer")) {
        /* an integer beyond 64 bits: read all integers as reals (their value survives
         * as well as a double can hold it) */
        j = json_loadb(text, len, flags | JSON_DECODE_INT_AS_REAL, &je);
    }
    if (!j) {
        *st = RL_ERR_INVALID_ARG;
        rl__fmt(err, err_size, "%s: line %d, column %d: %s", what, je.line, je.column, je.text);
    }
    return j;
}

/* Shortest %.Ng that reads back to d (N = 1..17). */
static void fmt_double(char *buf, size_t size, double d) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, d);
        if (strtod(buf, NULL) == d) return;
    }
}

static bool canon(const json_t *v, rl__sstr *out, int depth) {
    if (depth > 2048) return false;
    char buf[64];
    switch (json_typeof(v)) {
    case JSON_NULL:
        return rl__sstr_puts(out, "null");
    case JSON_TRUE:
        return rl__sstr_puts(out, "true");
    case JSON_FALSE:
        return rl__sstr_puts(out, "false");
    case JSON_INTEGER:
        return rl__sstr_printf(out, "%lld", (long long)json_integer_value(v));
    case JSON_REAL: {
        double d = json_real_value(v);
        if (d == floor(d) && fabs(d) <= 9007199254740992.0)
            return rl__sstr_printf(out, "%.0f", d == 0 ? 0.0 : d);
        fmt_double(buf, sizeof buf, d);
        return rl__sstr_puts(out, buf);
    }
    case JSON_STRING:
        rl__sstr_putc(out, '"');
        rl__json_canon_str(json_string_value(v), json_string_length(v), out);
        return rl__sstr_putc(out, '"');
    case JSON_ARRAY: {
        rl__sstr_putc(out, '[');
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i) rl__sstr_putc(out, ',');
            if (!canon(json_array_get(v, i), out, depth + 1)) return false;
        }
        return rl__sstr_putc(out, ']');
    }
    case JSON_OBJECT: {
        rl__sstr_putc(out, '{');
        const char *k;
        json_t *x;
        bool first = true;
        json_object_foreach((json_t *)v, k, x) {
            if (!first) rl__sstr_putc(out, ',');
            first = false;
            rl__sstr_putc(out, '"');
            rl__json_canon_str(k, strlen(k), out);
            rl__sstr_puts(out, "\":");
            if (!canon(x, out, depth + 1)) return false;
        }
        return rl__sstr_putc(out, '}');
    }
    }
    return false;
}

bool rl__json_canon(const json_t *v, rl__sstr *out) { return canon(v, out, 0) && !out->oom; }

int rl__json_num_cmp(const json_t *a, const json_t *b) {
    if (json_is_integer(a) && json_is_integer(b)) {
        json_int_t x = json_integer_value(a), y = json_integer_value(b);
        return x < y ? -1 : x > y;
    }
    /* long double holds every int64 and every double exactly on x86 (64-bit mantissa) */
    long double x = json_is_integer(a) ? (long double)json_integer_value(a) : json_real_value(a);
    long double y = json_is_integer(b) ? (long double)json_integer_value(b) : json_real_value(b);
    return x < y ? -1 : x > y;
}

static bool equal(const json_t *a, const json_t *b, int depth) {
    if (depth > 2048) return false;
    if (json_is_number(a) && json_is_number(b)) return rl__json_num_cmp(a, b) == 0;
    if (json_typeof(a) != json_typeof(b)) return false;
    switch (json_typeof(a)) {
    case JSON_STRING:
        return json_string_length(a) == json_string_length(b) &&
               !memcmp(json_string_value(a), json_string_value(b), json_string_length(a));
    case JSON_ARRAY:
        if (json_array_size(a) != json_array_size(b)) return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!equal(json_array_get(a, i), json_array_get(b, i), depth + 1)) return false;
        return true;
    case JSON_OBJECT: {
        if (json_object_size(a) != json_object_size(b)) return false;
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)a, k, x) {
            json_t *y = json_object_get(b, k);
            if (!y || !equal(x, y, depth + 1)) return false;
        }
        return true;
    }
    default:
        return true; /* null, true, false */
    }
}

bool rl__json_equal(const json_t *a, const json_t *b) { return equal(a, b, 0); }

size_t rl__sch_utf8_count(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}

size_t rl__sch_utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *p = (const unsigned char *)s;
    if (!n) return 0;
    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    size_t len;
    uint32_t c, min;
    if ((p[0] & 0xE0) == 0xC0) {
        len = 2, c = p[0] & 0x1F, min = 0x80;
    } else if ((p[0] & 0xF0) == 0xE0) {
        len = 3, c = p[0] & 0x0F, min = 0x800;
    } else if ((p[0] & 0xF8) == 0xF0) {
        len = 4, c = p[0] & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0;
        c = (c << 6) | (p[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    *cp = c;
    return len;
}
