/*
 * cmd_info.c - `ruvllm info FILE [--json]`: a GGUF file's header, metadata and tensor
 * table, as text or as one JSON document. Long arrays are summarized (element type,
 * count, the first few elements) and long strings cut, so that a 150k-token vocabulary
 * prints in a screenful.
 */
#include "cli.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD_ELEMS 8        /* array elements shown */
#define TEXT_STR_MAX 96     /* bytes of a string value shown in text */
#define TEXT_ELEM_STR_MAX 24 /* bytes of a string array element shown in text */
#define JSON_STR_MAX 1024   /* bytes of a string value in JSON */
#define JSON_ELEM_STR_MAX 64
#define NEST_MAX 4          /* nested array levels shown */

static void usage(FILE *f) {
    fprintf(f, "usage: ruvllm info FILE [--json]\n\n"
               "Print a GGUF file's version, alignment, metadata (long arrays summarized,\n"
               "long strings cut) and tensor table (name, type, shape, bytes) with totals.\n"
               "--json prints the same as one JSON document.\n");
}

static size_t elem_size(rl_gguf_type t) {
    switch (t) {
    case RL_GGUF_TYPE_UINT8: case RL_GGUF_TYPE_INT8: case RL_GGUF_TYPE_BOOL: return 1;
    case RL_GGUF_TYPE_UINT16: case RL_GGUF_TYPE_INT16: return 2;
    case RL_GGUF_TYPE_UINT32: case RL_GGUF_TYPE_INT32: case RL_GGUF_TYPE_FLOAT32: return 4;
    case RL_GGUF_TYPE_UINT64: case RL_GGUF_TYPE_INT64: case RL_GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

/* Element j of an array as a value of its own (numbers and bools are stored packed). */
static rl_gguf_value array_elem(const rl_gguf_value *a, uint64_t j) {
    size_t es = elem_size(a->elem_type);
    if (!es) return a->v.vals[j];
    rl_gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = a->elem_type;
    const unsigned char *p = (const unsigned char *)a->v.arr + j * es;
    if (v.type == RL_GGUF_TYPE_BOOL) v.v.b = *p != 0;
    else memcpy(&v.v, p, es);
    return v;
}

/* The shortest %g form that reads back as the same float (single) or double. */
static void shortest_real(double d, bool single, char *buf, size_t n) {
    if (d == floor(d) && fabs(d) < 1e15) { /* whole numbers in full: 10000, not 1e+04 */
        snprintf(buf, n, "%.0f", d);
        return;
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, d);
        double back = strtod(buf, NULL);
        if (single ? (float)back == (float)d : back == d) return;
    }
}

/* A scalar as text (integers as C prints them, reals in their shortest exact form,
 * bools as true/false). */
static void scalar_text(const rl_gguf_value *v, char *buf, size_t n) {
    switch (v->type) {
    case RL_GGUF_TYPE_UINT8: snprintf(buf, n, "%u", v->v.u8); break;
    case RL_GGUF_TYPE_INT8: snprintf(buf, n, "%d", v->v.i8); break;
    case RL_GGUF_TYPE_UINT16: snprintf(buf, n, "%u", v->v.u16); break;
    case RL_GGUF_TYPE_INT16: snprintf(buf, n, "%d", v->v.i16); break;
    case RL_GGUF_TYPE_UINT32: snprintf(buf, n, "%" PRIu32, v->v.u32); break;
    case RL_GGUF_TYPE_INT32: snprintf(buf, n, "%" PRId32, v->v.i32); break;
    case RL_GGUF_TYPE_UINT64: snprintf(buf, n, "%" PRIu64, v->v.u64); break;
    case RL_GGUF_TYPE_INT64: snprintf(buf, n, "%" PRId64, v->v.i64); break;
    case RL_GGUF_TYPE_FLOAT32: shortest_real(v->v.f32, true, buf, n); break;
    case RL_GGUF_TYPE_FLOAT64: shortest_real(v->v.f64, false, buf, n); break;
    case RL_GGUF_TYPE_BOOL: snprintf(buf, n, "%s", v->v.b ? "true" : "false"); break;
    default: snprintf(buf, n, "?"); break;
    }
}

/* ---- text ----------------------------------------------------------------------------- */

/* A string in double quotes with C escapes, cut after max bytes. */
static void print_str(FILE *f, const char *s, uint64_t n, size_t max) {
    uint64_t lim = n < max ? n : max;
    while (lim > 0 && lim < n && ((unsigned char)s[lim] & 0xc0) == 0x80) lim--; /* whole chars */
    fputc('"', f);
    for (uint64_t i = 0; i < lim; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c == '\n') fputs("\\n", f);
        else if (c == '\t') fputs("\\t", f);
        else if (c == '\r') fputs("\\r", f);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
    fputc('"', f);
    if (n > max) fprintf(f, "... (%" PRIu64 " bytes)", n);
}

static void print_value(FILE *f, const rl_gguf_value *v, int depth) {
    char buf[64];
    if (v->type == RL_GGUF_TYPE_STRING) {
        print_str(f, v->v.str, v->n, depth ? TEXT_ELEM_STR_MAX : TEXT_STR_MAX);
        return;
    }
    if (v->type != RL_GGUF_TYPE_ARRAY) {
        scalar_text(v, buf, sizeof buf);
        fputs(buf, f);
        return;
    }
    fprintf(f, "[%s x %" PRIu64 "]", rl_gguf_type_name(v->elem_type), v->n);
    if (depth >= NEST_MAX) {
        if (v->n) fputs(" ...", f);
        return;
    }
    for (uint64_t j = 0; j < v->n && j < HEAD_ELEMS; j++) {
        fputs(j ? ", " : " ", f);
        rl_gguf_value e = array_elem(v, j);
        if (e.type == RL_GGUF_TYPE_ARRAY) fputc('(', f);
        print_value(f, &e, depth + 1);
        if (e.type == RL_GGUF_TYPE_ARRAY) fputc(')', f);
    }
    if (v->n > HEAD_ELEMS) fputs(", ...", f);
}

static void shape_text(const rl_gguf_tensor_info *ti, char *buf, size_t n) {
    size_t pos = (size_t)snprintf(buf, n, "[");
    for (uint32_t d = 0; d < ti->n_dims && pos < n; d++)
        pos += (size_t)snprintf(buf + pos, n - pos, "%s%" PRId64, d ? ", " : "", ti->ne[d]);
    if (pos < n) snprintf(buf + pos, n - pos, "]");
}

static int64_t n_elements(const rl_gguf_tensor_info *ti) {
    return ti->ne[0] * ti->ne[1] * ti->ne[2] * ti->ne[3]; /* validated by the reader */
}

/* Bytes in a short human unit. */
static void human_bytes(uint64_t b, char *buf, size_t n) {
    if (b < 1024) snprintf(buf, n, "%" PRIu64 " B", b);
    else if (b < ((uint64_t)1 << 20)) snprintf(buf, n, "%.1f KiB", (double)b / 1024);
    else if (b < ((uint64_t)1 << 30)) snprintf(buf, n, "%.1f MiB", (double)b / (1 << 20));
    else snprintf(buf, n, "%.2f GiB", (double)b / (1 << 30));
}

typedef struct type_total {
    int64_t tensors;
    int64_t elements;
    uint64_t bytes;
} type_total;

static void print_text(const char *path, const rl_gguf *g) {
    FILE *f = stdout;
    char buf[128];
    fprintf(f, "file:        %s\n", path);
    fprintf(f, "version:     GGUF v%" PRIu32 "\n", rl_gguf_version(g));
    fprintf(f, "alignment:   %zu\n", rl_gguf_alignment(g));
    fprintf(f, "data offset: %zu\n", rl_gguf_data_offset(g));
    human_bytes(rl_gguf_file_size(g), buf, sizeof buf);
    fprintf(f, "file size:   %zu bytes (%s)\n", rl_gguf_file_size(g), buf);

    int64_t n_kv = rl_gguf_n_kv(g);
    int keyw = 10;
    for (int64_t i = 0; i < n_kv; i++) {
        int l = (int)strlen(rl_gguf_key(g, i));
        if (l > keyw) keyw = l < 48 ? l : 48;
    }
    fprintf(f, "\nmetadata: %" PRId64 " keys\n", n_kv);
    for (int64_t i = 0; i < n_kv; i++) {
        const rl_gguf_value *v = rl_gguf_kv_value(g, i);
        fprintf(f, "  %-*s  %-7s  ", keyw, rl_gguf_key(g, i), rl_gguf_type_name(v->type));
        print_value(f, v, 0);
        fputc('\n', f);
    }

    int64_t n_t = rl_gguf_n_tensors(g);
    int namew = 4;
    for (int64_t i = 0; i < n_t; i++) {
        rl_gguf_tensor_info ti;
        rl_gguf_tensor(g, i, &ti);
        int l = (int)strlen(ti.name);
        if (l > namew) namew = l < 64 ? l : 64;
    }
    type_total totals[RL_TYPE_COUNT];
    memset(totals, 0, sizeof totals);
    type_total all = {0, 0, 0};
    fprintf(f, "\ntensors: %" PRId64 "\n", n_t);
    if (n_t) fprintf(f, "  %5s  %-*s  %-7s  %-24s  %12s  %12s\n", "#", namew, "name", "type",
                     "shape", "offset", "bytes");
    for (int64_t i = 0; i < n_t; i++) {
        rl_gguf_tensor_info ti;
        rl_gguf_tensor(g, i, &ti);
        shape_text(&ti, buf, sizeof buf);
        fprintf(f, "  %5" PRId64 "  %-*s  %-7s  %-24s  %12" PRIu64 "  %12zu\n", i, namew, ti.name,
                rl_type_name(ti.type), buf, ti.offset, ti.nbytes);
        type_total *t = &totals[ti.type];
        t->tensors++;
        t->elements += n_elements(&ti);
        t->bytes += ti.nbytes;
        all.tensors++;
        all.elements += n_elements(&ti);
        all.bytes += ti.nbytes;
    }
    human_bytes(all.bytes, buf, sizeof buf);
    fprintf(f, "\ntotal: %" PRId64 " tensors, %" PRId64 " elements, %" PRIu64 " bytes (%s)\n",
            all.tensors, all.elements, all.bytes, buf);
    for (int t = 0; t < RL_TYPE_COUNT; t++) {
        if (!totals[t].tensors) continue;
        human_bytes(totals[t].bytes, buf, sizeof buf);
        fprintf(f, "  %-7s %5" PRId64 " tensors  %12" PRId64 " elements  %12" PRIu64 " bytes (%s)\n",
                rl_type_name((rl_type)t), totals[t].tensors, totals[t].elements, totals[t].bytes,
                buf);
    }
}

/* ---- JSON ----------------------------------------------------------------------------- */

/* Valid UTF-8 for jansson: the first max bytes of s (not cutting a character), invalid
 * bytes replaced by U+FFFD. Returns a malloc'd buffer and its length. */
static char *utf8_clean(const char *s, uint64_t n, size_t max, size_t *out_len) {
    size_t lim = n < max ? (size_t)n : max;
    char *o = malloc(lim * 3 + 1);
    if (!o) return NULL;
    size_t k = 0;
    for (size_t i = 0; i < lim;) {
        const unsigned char *p = (const unsigned char *)s + i;
        unsigned char c = p[0];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t j = 1; ok && j < len; j++) ok = (p[j] & 0xc0) == 0x80;
        if (ok && len > 1) { /* no overlong forms, surrogates or values past U+10FFFF */
            uint32_t cp = len == 2 ? (uint32_t)(c & 0x1f) : len == 3 ? (uint32_t)(c & 0x0f) : (uint32_t)(c & 0x07);
            for (size_t j = 1; j < len; j++) cp = (cp << 6) | (p[j] & 0x3f);
            ok = (len == 2 && cp >= 0x80) || (len == 3 && cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff)) ||
                 (len == 4 && cp >= 0x10000 && cp <= 0x10ffff);
        }
        if (ok && i + len > lim) break; /* a character across the cut: stop before it */
        if (ok) {
            memcpy(o + k, p, len);
            k += len;
            i += len;
        } else {
            memcpy(o + k, "\xef\xbf\xbd", 3);
            k += 3;
            i += 1;
        }
    }
    o[k] = 0;
    *out_len = k;
    return o;
}

static json_t *json_str(const char *s, uint64_t n, size_t max) {
    size_t len;
    char *c = utf8_clean(s, n, max, &len);
    if (!c) return json_null();
    json_t *j = json_stringn(c, len);
    free(c);
    return j ? j : json_null();
}

static json_t *json_real_or_str(double d) {
    if (isfinite(d)) return json_real(d);
    return json_string(isnan(d) ? "nan" : d > 0 ? "inf" : "-inf");
}

static json_t *scalar_json(const rl_gguf_value *v) {
    switch (v->type) {
    case RL_GGUF_TYPE_UINT8: return json_integer(v->v.u8);
    case RL_GGUF_TYPE_INT8: return json_integer(v->v.i8);
    case RL_GGUF_TYPE_UINT16: return json_integer(v->v.u16);
    case RL_GGUF_TYPE_INT16: return json_integer(v->v.i16);
    case RL_GGUF_TYPE_UINT32: return json_integer(v->v.u32);
    case RL_GGUF_TYPE_INT32: return json_integer(v->v.i32);
    case RL_GGUF_TYPE_INT64: return json_integer(v->v.i64);
    case RL_GGUF_TYPE_UINT64:
        if (v->v.u64 <= (uint64_t)INT64_MAX) return json_integer((json_int_t)v->v.u64);
        else {
            char buf[32];
            snprintf(buf, sizeof buf, "%" PRIu64, v->v.u64);
            return json_string(buf); /* beyond JSON integers: as text */
        }
    case RL_GGUF_TYPE_FLOAT32: return json_real_or_str(v->v.f32);
    case RL_GGUF_TYPE_FLOAT64: return json_real_or_str(v->v.f64);
    case RL_GGUF_TYPE_BOOL: return json_boolean(v->v.b);
    default: return json_null();
    }
}

/* A value as JSON: {"type", "value"} for scalars and strings (+ "length" and "truncated"
 * when cut), {"type": "array", "elem_type", "count", "head": [...]} for arrays. */
static json_t *value_json(const rl_gguf_value *v, int depth) {
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string(rl_gguf_type_name(v->type)));
    if (v->type == RL_GGUF_TYPE_STRING) {
        size_t max = depth ? JSON_ELEM_STR_MAX : JSON_STR_MAX;
        json_object_set_new(o, "value", json_str(v->v.str, v->n, max));
        if (v->n > max) {
            json_object_set_new(o, "length", json_integer((json_int_t)v->n));
            json_object_set_new(o, "truncated", json_true());
        }
    } else if (v->type == RL_GGUF_TYPE_ARRAY) {
        json_object_set_new(o, "elem_type", json_string(rl_gguf_type_name(v->elem_type)));
        json_object_set_new(o, "count", json_integer((json_int_t)v->n));
        json_t *head = json_array();
        for (uint64_t j = 0; j < v->n && j < HEAD_ELEMS && depth < NEST_MAX; j++) {
            rl_gguf_value e = array_elem(v, j);
            if (e.type == RL_GGUF_TYPE_ARRAY) json_array_append_new(head, value_json(&e, depth + 1));
            else if (e.type == RL_GGUF_TYPE_STRING)
                json_array_append_new(head, json_str(e.v.str, e.n, JSON_ELEM_STR_MAX));
            else json_array_append_new(head, scalar_json(&e));
        }
        json_object_set_new(o, "head", head);
    } else {
        json_object_set_new(o, "value", scalar_json(v));
    }
    return o;
}

static int print_json(const char *path, const rl_gguf *g) {
    json_t *doc = json_object();
    json_object_set_new(doc, "file", json_str(path, strlen(path), 4096));
    json_object_set_new(doc, "version", json_integer(rl_gguf_version(g)));
    json_object_set_new(doc, "alignment", json_integer((json_int_t)rl_gguf_alignment(g)));
    json_object_set_new(doc, "data_offset", json_integer((json_int_t)rl_gguf_data_offset(g)));
    json_object_set_new(doc, "file_size", json_integer((json_int_t)rl_gguf_file_size(g)));
    json_t *meta = json_array();
    for (int64_t i = 0; i < rl_gguf_n_kv(g); i++) {
        const char *key = rl_gguf_key(g, i);
        json_t *kv = json_object(), *val = value_json(rl_gguf_kv_value(g, i), 0);
        json_object_set_new(kv, "key", json_str(key, strlen(key), 65536));
        json_object_update(kv, val);
        json_decref(val);
        json_array_append_new(meta, kv);
    }
    json_object_set_new(doc, "metadata", meta);

    type_total totals[RL_TYPE_COUNT];
    memset(totals, 0, sizeof totals);
    type_total all = {0, 0, 0};
    json_t *tensors = json_array();
    for (int64_t i = 0; i < rl_gguf_n_tensors(g); i++) {
        rl_gguf_tensor_info ti;
        rl_gguf_tensor(g, i, &ti);
        json_t *t = json_object();
        json_object_set_new(t, "name", json_str(ti.name, strlen(ti.name), 65536));
        json_object_set_new(t, "type", json_string(rl_type_name(ti.type)));
        json_t *shape = json_array();
        for (uint32_t d = 0; d < ti.n_dims; d++) json_array_append_new(shape, json_integer(ti.ne[d]));
        json_object_set_new(t, "shape", shape);
        json_object_set_new(t, "offset", json_integer((json_int_t)ti.offset));
        json_object_set_new(t, "bytes", json_integer((json_int_t)ti.nbytes));
        json_array_append_new(tensors, t);
        type_total *tt = &totals[ti.type];
        tt->tensors++;
        tt->elements += n_elements(&ti);
        tt->bytes += ti.nbytes;
        all.tensors++;
        all.elements += n_elements(&ti);
        all.bytes += ti.nbytes;
    }
    json_object_set_new(doc, "tensors", tensors);
    json_t *tot = json_object();
    json_object_set_new(tot, "tensors", json_integer(all.tensors));
    json_object_set_new(tot, "elements", json_integer(all.elements));
    json_object_set_new(tot, "bytes", json_integer((json_int_t)all.bytes));
    json_t *by_type = json_object();
    for (int t = 0; t < RL_TYPE_COUNT; t++) {
        if (!totals[t].tensors) continue;
        json_t *e = json_object();
        json_object_set_new(e, "tensors", json_integer(totals[t].tensors));
        json_object_set_new(e, "elements", json_integer(totals[t].elements));
        json_object_set_new(e, "bytes", json_integer((json_int_t)totals[t].bytes));
        json_object_set_new(by_type, rl_type_name((rl_type)t), e);
    }
    json_object_set_new(tot, "by_type", by_type);
    json_object_set_new(doc, "totals", tot);

    int rc = json_dumpf(doc, stdout, JSON_INDENT(1) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(doc);
    if (rc != 0) return 1;
    fputc('\n', stdout);
    return 0;
}

int cmd_info(int argc, char **argv) {
    const char *path = NULL;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) json = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "ruvllm info: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (!path) path = argv[i];
        else {
            fprintf(stderr, "ruvllm info: one FILE only ('%s' is extra)\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!path) {
        usage(stderr);
        return 2;
    }
    rl_gguf *g = NULL;
    char err[512];
    rl_status s = rl_gguf_open(path, &g, err, sizeof err);
    if (s != RL_OK) {
        fprintf(stderr, "ruvllm info: %s: %s\n", path, err[0] ? err : rl_status_str(s));
        return 1;
    }
    int rc = 0;
    if (json) rc = print_json(path, g);
    else print_text(path, g);
    rl_gguf_free(g);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "ruvllm info: cannot write the output\n");
        rc = 1;
    }
    return rc;
}
