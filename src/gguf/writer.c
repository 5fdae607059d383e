/*
 * writer.c - the GGUF writer: collects metadata and tensor descriptions, then writes a
 * GGUF v3 file in one pass, laid out as llama.cpp's gguf writer does: header, key/value
 * pairs in the order added, tensor infos in the order added, zero padding to the
 * alignment, then each tensor's data padded to the alignment.
 *
 * Values are deep-copied into one block per key when they are set, so callers may free
 * their buffers at once. Tensor data is either borrowed until the write or produced by
 * a callback in chunks of rows at write time, so that `ruvllm quantize` can stream a
 * model far larger than memory.
 */
#include "gguf_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define OUT_BUF_BYTES ((size_t)1 << 20)
#define CHUNK_BYTES ((size_t)16 << 20)

typedef struct wkv {
    char *key;
    rl_gguf_value val;
    void *mem; /* the deep copy's block (strings, arrays) */
} wkv;

typedef struct wtensor {
    char *name;
    rl_type type;
    uint32_t n_dims;
    int64_t ne[RL_GGUF_MAX_DIMS];
    size_t nbytes;
    size_t row_bytes;
    int64_t n_rows;
    uint64_t offset; /* in the data section, set at write time */
    const void *data;
    rl_gguf_rows_fn fn;
    void *user;
} wtensor;

struct rl_gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    size_t alignment;
    char err[512];
};

__attribute__((format(printf, 3, 4))) static rl_status werr(rl_gguf_writer *w, rl_status st,
                                                          const char *fmt, ...) {
    char msg[480];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rl__fmt(w->err, sizeof w->err, "gguf writer: %s", msg);
    return st;
}

RL_API rl_status rl_gguf_writer_create(rl_gguf_writer **out) {
    if (!out) return RL_ERR_INVALID_ARG;
    *out = rl__calloc(1, sizeof **out);
    if (!*out) return RL_ERR_NOMEM;
    (*out)->alignment = RL__GGUF_DEFAULT_ALIGNMENT;
    return RL_OK;
}

RL_API void rl_gguf_writer_free(rl_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        rl__free(w->kv[i].key);
        rl__free(w->kv[i].mem);
    }
    for (size_t i = 0; i < w->n_t; i++) rl__free(w->t[i].name);
    rl__free(w->kv);
    rl__free(w->t);
    rl__free(w);
}

RL_API const char *rl_gguf_writer_errmsg(const rl_gguf_writer *w) { return w ? w->err : ""; }

/* ---- values ---------------------------------------------------------------------------- */

static size_t align8(size_t n) { return (n + 7) & ~(size_t)7; }

/* Non-NULL data of empty arrays, as the reader hands out. */
static const uint64_t g_empty[1];

/* Checks that v is a well-formed value and adds to *bytes the memory its deep copy
 * needs beyond the top rl_gguf_value. */
static rl_status value_measure(rl_gguf_writer *w, const char *key, const rl_gguf_value *v,
                               int depth, size_t *bytes) {
    if (rl__gguf_is_plain(v->type)) return RL_OK;
    if (v->type == RL_GGUF_TYPE_STRING) {
        if (!v->v.str && v->n) return werr(w, RL_ERR_INVALID_ARG, "'%s': NULL string", key);
        if (v->n > RL__GGUF_MAX_STRING_LEN)
            return werr(w, RL_ERR_INVALID_ARG, "'%s': string of %" PRIu64 " bytes is too long",
                        key, v->n);
        *bytes += align8((size_t)v->n + 1);
        return RL_OK;
    }
    if (v->type != RL_GGUF_TYPE_ARRAY)
        return werr(w, RL_ERR_INVALID_ARG, "'%s': invalid value type %d", key, (int)v->type);
    if (depth >= RL__GGUF_MAX_DEPTH)
        return werr(w, RL_ERR_INVALID_ARG, "'%s': arrays nested deeper than %d", key,
                    RL__GGUF_MAX_DEPTH);
    if ((unsigned)v->elem_type >= RL_GGUF_TYPE_COUNT)
        return werr(w, RL_ERR_INVALID_ARG, "'%s': invalid array element type %d", key,
                    (int)v->elem_type);
    if (v->n > RL__GGUF_MAX_ARRAY_LEN)
        return werr(w, RL_ERR_INVALID_ARG, "'%s': array of %" PRIu64 " elements is too long",
                    key, v->n);
    size_t n = (size_t)v->n, sz;
    if (rl__gguf_is_plain(v->elem_type)) {
        if (n && !v->v.arr) return werr(w, RL_ERR_INVALID_ARG, "'%s': NULL array data", key);
        *bytes += align8(n * rl__gguf_scalar_size(v->elem_type));
        return RL_OK;
    }
    if (n && !v->v.vals) return werr(w, RL_ERR_INVALID_ARG, "'%s': NULL array values", key);
    if (!rl__mul_size(n, sizeof(rl_gguf_value), &sz) || !rl__add_size(*bytes, sz, bytes))
        return werr(w, RL_ERR_INVALID_ARG, "'%s': array too large", key);
    for (size_t j = 0; j < n; j++) {
        if (v->v.vals[j].type != v->elem_type)
            return werr(w, RL_ERR_INVALID_ARG,
                        "'%s': element %zu has type %s in an array of %s", key, j,
                        rl_gguf_type_name(v->v.vals[j].type), rl_gguf_type_name(v->elem_type));
        rl_status s = value_measure(w, key, &v->v.vals[j], depth + 1, bytes);
        if (s != RL_OK) return s;
    }
    return RL_OK;
}

/* Deep copy of a measured value into *mem (advanced past what it uses). */
static void value_copy(const rl_gguf_value *src, rl_gguf_value *dst, unsigned char **mem) {
    *dst = *src;
    if (src->type == RL_GGUF_TYPE_BOOL) dst->v.b = src->v.b != 0;
    if (src->type == RL_GGUF_TYPE_STRING) {
        char *s = (char *)*mem;
        if (src->n) memcpy(s, src->v.str, (size_t)src->n);
        s[src->n] = 0;
        dst->v.str = s;
        *mem += align8((size_t)src->n + 1);
        return;
    }
    if (src->type != RL_GGUF_TYPE_ARRAY) return;
    size_t n = (size_t)src->n;
    if (n == 0) { /* nothing to copy; *mem may be NULL when the whole copy is empty */
        dst->v.arr = g_empty;
        return;
    }
    if (rl__gguf_is_plain(src->elem_type)) {
        size_t bytes = n * rl__gguf_scalar_size(src->elem_type);
        unsigned char *d = *mem;
        if (bytes) memcpy(d, src->v.arr, bytes);
        if (src->elem_type == RL_GGUF_TYPE_BOOL)
            for (size_t j = 0; j < bytes; j++) d[j] = d[j] != 0;
        dst->v.arr = d;
        *mem += align8(bytes);
        return;
    }
    rl_gguf_value *vals = (rl_gguf_value *)*mem;
    *mem += n * sizeof(rl_gguf_value);
    for (size_t j = 0; j < n; j++) value_copy(&src->v.vals[j], &vals[j], mem);
    dst->v.vals = vals;
}

static rl_status check_key(rl_gguf_writer *w, const char *key) {
    if (!key || !*key) return werr(w, RL_ERR_INVALID_ARG, "empty or NULL key");
    if (strlen(key) > RL__GGUF_MAX_NAME_LEN)
        return werr(w, RL_ERR_INVALID_ARG, "key '%.64s...' is longer than %u bytes", key,
                    RL__GGUF_MAX_NAME_LEN);
    return RL_OK;
}

RL_API rl_status rl_gguf_writer_set_value(rl_gguf_writer *w, const char *key,
                                          const rl_gguf_value *v) {
    if (!w) return RL_ERR_INVALID_ARG;
    w->err[0] = 0;
    rl_status s = check_key(w, key);
    if (s != RL_OK) return s;
    if (!v) return werr(w, RL_ERR_INVALID_ARG, "'%s': NULL value", key);
    bool is_align = strcmp(key, RL__GGUF_KEY_ALIGNMENT) == 0;
    if (is_align) {
        if (v->type != RL_GGUF_TYPE_UINT32)
            return werr(w, RL_ERR_INVALID_ARG, "'%s' must be a uint32, not %s", key,
                        rl_gguf_type_name(v->type));
        if (!rl__is_pow2(v->v.u32) || v->v.u32 > RL__GGUF_WRITER_MAX_ALIGNMENT)
            return werr(w, RL_ERR_INVALID_ARG,
                        "'%s' = %" PRIu32 " is not a power of two up to %zu", key, v->v.u32,
                        RL__GGUF_WRITER_MAX_ALIGNMENT);
    }
    size_t bytes = 0;
    s = value_measure(w, key, v, 0, &bytes);
    if (s != RL_OK) return s;

    void *mem = NULL;
    if (bytes && !(mem = rl__malloc(bytes)))
        return werr(w, RL_ERR_NOMEM, "'%s': out of memory (%zu bytes)", key, bytes);
    size_t i = 0;
    while (i < w->n_kv && strcmp(w->kv[i].key, key) != 0) i++;
    if (i == w->n_kv) { /* a new key: room for it and its name first */
        char *k = rl__strdup(key);
        if (k && w->n_kv == w->cap_kv) {
            size_t ncap = w->cap_kv ? w->cap_kv * 2 : 32;
            wkv *nk = rl__realloc(w->kv, ncap * sizeof *nk);
            if (nk) {
                w->kv = nk;
                w->cap_kv = ncap;
            } else {
                rl__free(k);
                k = NULL;
            }
        }
        if (!k) {
            rl__free(mem);
            return werr(w, RL_ERR_NOMEM, "'%s': out of memory", key);
        }
        memset(&w->kv[i], 0, sizeof w->kv[i]);
        w->kv[i].key = k;
        w->n_kv++;
    }
    wkv *kv = &w->kv[i];
    rl__free(kv->mem);
    kv->mem = mem;
    unsigned char *cur = mem;
    value_copy(v, &kv->val, &cur);
    if (is_align) w->alignment = v->v.u32;
    return RL_OK;
}

#define RL__WRITER_SETTER(sfx, ctype, TYPE, member)                                         \
    RL_API rl_status rl_gguf_writer_set_##sfx(rl_gguf_writer *w, const char *key, ctype x) { \
        rl_gguf_value v;                                                                    \
        memset(&v, 0, sizeof v);                                                            \
        v.type = RL_GGUF_TYPE_##TYPE;                                                       \
        v.v.member = x;                                                                     \
        return rl_gguf_writer_set_value(w, key, &v);                                        \
    }
RL__WRITER_SETTER(u8, uint8_t, UINT8, u8)
RL__WRITER_SETTER(i8, int8_t, INT8, i8)
RL__WRITER_SETTER(u16, uint16_t, UINT16, u16)
RL__WRITER_SETTER(i16, int16_t, INT16, i16)
RL__WRITER_SETTER(u32, uint32_t, UINT32, u32)
RL__WRITER_SETTER(i32, int32_t, INT32, i32)
RL__WRITER_SETTER(u64, uint64_t, UINT64, u64)
RL__WRITER_SETTER(i64, int64_t, INT64, i64)
RL__WRITER_SETTER(f32, float, FLOAT32, f32)
RL__WRITER_SETTER(f64, double, FLOAT64, f64)
RL__WRITER_SETTER(bool, bool, BOOL, b)
#undef RL__WRITER_SETTER

RL_API rl_status rl_gguf_writer_set_str(rl_gguf_writer *w, const char *key, const char *str) {
    if (!w) return RL_ERR_INVALID_ARG;
    if (!str) return werr(w, RL_ERR_INVALID_ARG, "'%s': NULL string", key ? key : "?");
    rl_gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = RL_GGUF_TYPE_STRING;
    v.n = strlen(str);
    v.v.str = str;
    return rl_gguf_writer_set_value(w, key, &v);
}

RL_API rl_status rl_gguf_writer_set_arr(rl_gguf_writer *w, const char *key,
                                        rl_gguf_type elem_type, const void *data, uint64_t n) {
    if (!w) return RL_ERR_INVALID_ARG;
    if (!rl__gguf_is_plain(elem_type))
        return werr(w, RL_ERR_INVALID_ARG, "'%s': set_arr takes numbers or bools, not %s",
                    key ? key : "?", rl_gguf_type_name(elem_type));
    rl_gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = RL_GGUF_TYPE_ARRAY;
    v.elem_type = elem_type;
    v.n = n;
    v.v.arr = data;
    return rl_gguf_writer_set_value(w, key, &v);
}

RL_API rl_status rl_gguf_writer_set_arr_str(rl_gguf_writer *w, const char *key,
                                            const char *const *strs, uint64_t n) {
    if (!w) return RL_ERR_INVALID_ARG;
    if (n && !strs) return werr(w, RL_ERR_INVALID_ARG, "'%s': NULL strings", key ? key : "?");
    if (n > RL__GGUF_MAX_ARRAY_LEN)
        return werr(w, RL_ERR_INVALID_ARG, "'%s': array of %" PRIu64 " strings is too long",
                    key ? key : "?", n);
    /* A temporary array of views; set_value copies it. */
    rl_gguf_value *vals = n ? rl__malloc((size_t)n * sizeof *vals) : NULL;
    if (n && !vals) return werr(w, RL_ERR_NOMEM, "'%s': out of memory", key ? key : "?");
    for (uint64_t j = 0; j < n; j++) {
        if (!strs[j]) {
            rl__free(vals);
            return werr(w, RL_ERR_INVALID_ARG, "'%s': string %" PRIu64 " is NULL",
                        key ? key : "?", j);
        }
        memset(&vals[j], 0, sizeof vals[j]);
        vals[j].type = RL_GGUF_TYPE_STRING;
        vals[j].n = strlen(strs[j]);
        vals[j].v.str = strs[j];
    }
    rl_gguf_value v;
    memset(&v, 0, sizeof v);
    v.type = RL_GGUF_TYPE_ARRAY;
    v.elem_type = RL_GGUF_TYPE_STRING;
    v.n = n;
    v.v.vals = vals;
    rl_status s = rl_gguf_writer_set_value(w, key, &v);
    rl__free(vals);
    return s;
}

RL_API rl_status rl_gguf_writer_copy_kv(rl_gguf_writer *w, const rl_gguf *g, int64_t i) {
    if (!w) return RL_ERR_INVALID_ARG;
    const rl_gguf_value *v = rl_gguf_kv_value(g, i);
    if (!v) return werr(w, RL_ERR_INVALID_ARG, "copy_kv: no kv %" PRId64 " in the reader", i);
    return rl_gguf_writer_set_value(w, rl_gguf_key(g, i), v);
}

RL_API rl_status rl_gguf_writer_set_alignment(rl_gguf_writer *w, size_t alignment) {
    if (!w) return RL_ERR_INVALID_ARG;
    if (!rl__is_pow2(alignment) || alignment > RL__GGUF_WRITER_MAX_ALIGNMENT)
        return werr(w, RL_ERR_INVALID_ARG, "alignment %zu is not a power of two up to %zu",
                    alignment, RL__GGUF_WRITER_MAX_ALIGNMENT);
    bool key_set = false;
    for (size_t i = 0; i < w->n_kv; i++) key_set |= !strcmp(w->kv[i].key, RL__GGUF_KEY_ALIGNMENT);
    if (alignment == RL__GGUF_DEFAULT_ALIGNMENT && !key_set) {
        w->alignment = alignment;
        return RL_OK;
    }
    return rl_gguf_writer_set_u32(w, RL__GGUF_KEY_ALIGNMENT, (uint32_t)alignment);
}

/* ---- tensors --------------------------------------------------------------------------- */

static rl_status add_tensor(rl_gguf_writer *w, const char *name, rl_type type, uint32_t n_dims,
                            const int64_t *ne, const void *data, rl_gguf_rows_fn fn,
                            void *user) {
    if (!w) return RL_ERR_INVALID_ARG;
    w->err[0] = 0;
    size_t len = name ? strlen(name) : 0;
    if (len == 0) return werr(w, RL_ERR_INVALID_ARG, "empty or NULL tensor name");
    if (len > RL__GGUF_WRITER_MAX_TENSOR_NAME)
        return werr(w, RL_ERR_INVALID_ARG, "tensor name '%.80s' is longer than %u bytes", name,
                    RL__GGUF_WRITER_MAX_TENSOR_NAME);
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name))
            return werr(w, RL_ERR_INVALID_ARG, "duplicate tensor name '%s'", name);
    if (!rl_type_valid((int)type))
        return werr(w, RL_ERR_INVALID_ARG, "tensor '%s': invalid type %d", name, (int)type);
    if (n_dims < 1 || n_dims > RL_GGUF_MAX_DIMS || !ne)
        return werr(w, RL_ERR_INVALID_ARG, "tensor '%s': n_dims %" PRIu32 " is not in 1..%d",
                    name, n_dims, RL_GGUF_MAX_DIMS);
    wtensor t;
    memset(&t, 0, sizeof t);
    t.type = type;
    t.n_dims = n_dims;
    int64_t nel = 1;
    for (int d = 0; d < RL_GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < (int)n_dims ? ne[d] : 1;
        if (t.ne[d] < 0)
            return werr(w, RL_ERR_INVALID_ARG, "tensor '%s': ne[%d] = %" PRId64 " is negative",
                        name, d, t.ne[d]);
        if (__builtin_mul_overflow(nel, t.ne[d], &nel))
            return werr(w, RL_ERR_INVALID_ARG, "tensor '%s': element count overflows", name);
    }
    int64_t bs = rl_type_block_size(type);
    if (t.ne[0] % bs != 0)
        return werr(w, RL_ERR_INVALID_ARG,
                    "tensor '%s': ne[0] = %" PRId64 " is not a multiple of the block size %" PRId64
                    " of %s",
                    name, t.ne[0], bs, rl_type_name(type));
    if (rl_type_row_bytes(type, t.ne[0], &t.row_bytes) != RL_OK ||
        !rl__mul_size((size_t)(nel / bs), rl_type_block_bytes(type), &t.nbytes) ||
        t.nbytes > (size_t)INT64_MAX)
        return werr(w, RL_ERR_INVALID_ARG, "tensor '%s': byte size overflows", name);
    t.n_rows = t.ne[0] ? nel / t.ne[0] : 0;
    if (!fn && !data && t.nbytes)
        return werr(w, RL_ERR_INVALID_ARG, "tensor '%s': NULL data", name);
    t.data = data;
    t.fn = fn;
    t.user = user;
    if (w->n_t == w->cap_t) {
        size_t ncap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *nt = rl__realloc(w->t, ncap * sizeof *nt);
        if (!nt) return werr(w, RL_ERR_NOMEM, "tensor '%s': out of memory", name);
        w->t = nt;
        w->cap_t = ncap;
    }
    if (!(t.name = rl__strdup(name)))
        return werr(w, RL_ERR_NOMEM, "tensor '%s': out of memory", name);
    w->t[w->n_t++] = t;
    return RL_OK;
}

RL_API rl_status rl_gguf_writer_add_tensor(rl_gguf_writer *w, const char *name, rl_type type,
                                           uint32_t n_dims, const int64_t *ne,
                                           const void *data) {
    return add_tensor(w, name, type, n_dims, ne, data, NULL, NULL);
}

RL_API rl_status rl_gguf_writer_add_tensor_fn(rl_gguf_writer *w, const char *name,
                                              rl_type type, uint32_t n_dims, const int64_t *ne,
                                              rl_gguf_rows_fn fn, void *user) {
    if (w && !fn) return werr(w, RL_ERR_INVALID_ARG, "tensor '%s': NULL producer", name ? name : "?");
    return add_tensor(w, name, type, n_dims, ne, NULL, fn, user);
}

/* ---- output ----------------------------------------------------------------------------- */

/* Buffered output to the caller's sink. */
typedef struct wout {
    rl_gguf_writer *w;
    rl_gguf_sink_fn sink;
    void *user;
    unsigned char *buf;
    size_t len;
    uint64_t total; /* bytes accepted so far: the file offset */
    rl_status st;
} wout;

static bool out_flush(wout *o) {
    if (o->st != RL_OK) return false;
    if (o->len) {
        rl_status s = o->sink(o->user, o->buf, o->len);
        o->len = 0;
        if (s != RL_OK) {
            o->st = s;
            if (!o->w->err[0]) werr(o->w, s, "output failed: %s", rl_status_str(s));
            return false;
        }
    }
    return true;
}

static bool out_bytes(wout *o, const void *p, size_t n) {
    if (o->st != RL_OK) return false;
    if (n == 0) return true;
    o->total += n;
    if (o->len + n > OUT_BUF_BYTES && !out_flush(o)) return false;
    if (n >= OUT_BUF_BYTES) { /* large: straight through */
        rl_status s = o->sink(o->user, p, n);
        if (s != RL_OK) {
            o->st = s;
            if (!o->w->err[0]) werr(o->w, s, "output failed: %s", rl_status_str(s));
            return false;
        }
        return true;
    }
    memcpy(o->buf + o->len, p, n);
    o->len += n;
    return true;
}

static bool out_u32(wout *o, uint32_t v) { return out_bytes(o, &v, 4); }
static bool out_u64(wout *o, uint64_t v) { return out_bytes(o, &v, 8); }
static bool out_str(wout *o, const char *s, uint64_t n) {
    return out_u64(o, n) && out_bytes(o, s, (size_t)n);
}

static bool out_zeros(wout *o, size_t n) {
    static const unsigned char zeros[256];
    while (n) {
        size_t k = RL_MIN(n, sizeof zeros);
        if (!out_bytes(o, zeros, k)) return false;
        n -= k;
    }
    return true;
}

static bool out_value(wout *o, const rl_gguf_value *v) {
    if (v->type == RL_GGUF_TYPE_BOOL) {
        uint8_t b = v->v.b ? 1 : 0;
        return out_bytes(o, &b, 1);
    }
    if (rl__gguf_is_plain(v->type)) return out_bytes(o, &v->v, rl__gguf_scalar_size(v->type));
    if (v->type == RL_GGUF_TYPE_STRING) return out_str(o, v->v.str, v->n);
    if (!out_u32(o, (uint32_t)v->elem_type) || !out_u64(o, v->n)) return false;
    if (rl__gguf_is_plain(v->elem_type))
        return out_bytes(o, v->v.arr, (size_t)v->n * rl__gguf_scalar_size(v->elem_type));
    for (uint64_t j = 0; j < v->n; j++)
        if (!out_value(o, &v->v.vals[j])) return false;
    return true;
}

static size_t pad_to(size_t off, size_t a) { return (a - off % a) % a; }

/* The data of tensor t, produced in chunks of rows; *chunk is a buffer reused across
 * tensors (grown as needed). */
static bool out_tensor_rows(wout *o, const wtensor *t, void **chunk, size_t *chunk_cap) {
    rl_gguf_writer *w = o->w;
    int64_t per = (int64_t)RL_MAX((size_t)1, CHUNK_BYTES / t->row_bytes);
    size_t need = (size_t)RL_MIN(per, t->n_rows) * t->row_bytes;
    if (need > *chunk_cap) {
        rl__free(*chunk);
        *chunk_cap = 0;
        if (!(*chunk = rl__malloc(need))) {
            o->st = werr(w, RL_ERR_NOMEM, "tensor '%s': out of memory (%zu bytes)", t->name,
                         need);
            return false;
        }
        *chunk_cap = need;
    }
    for (int64_t r = 0; r < t->n_rows; r += per) {
        int64_t k = RL_MIN(per, t->n_rows - r);
        rl_status s = t->fn(t->user, r, k, *chunk);
        if (s != RL_OK) {
            o->st = werr(w, s, "tensor '%s': producer failed at rows %" PRId64 "..%" PRId64
                               ": %s",
                         t->name, r, r + k - 1, rl_status_str(s));
            return false;
        }
        if (!out_bytes(o, *chunk, (size_t)k * t->row_bytes)) return false;
    }
    return true;
}

RL_API rl_status rl_gguf_writer_write_to(rl_gguf_writer *w, rl_gguf_sink_fn sink, void *user) {
    if (!w) return RL_ERR_INVALID_ARG;
    w->err[0] = 0;
    if (!sink) return werr(w, RL_ERR_INVALID_ARG, "NULL sink");

    /* Data layout: each tensor at an aligned offset, in the order added. */
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        t->offset = off;
        if (__builtin_add_overflow(off, (uint64_t)t->nbytes, &off) ||
            __builtin_add_overflow(off, (uint64_t)pad_to((size_t)off, w->alignment), &off))
            return werr(w, RL_ERR_INVALID_ARG, "data section size overflows");
    }

    wout o = {.w = w, .sink = sink, .user = user, .st = RL_OK};
    void *chunk = NULL;
    size_t chunk_cap = 0;
    if (!(o.buf = rl__malloc(OUT_BUF_BYTES)))
        return werr(w, RL_ERR_NOMEM, "out of memory (output buffer)");

    bool ok = out_bytes(&o, RL__GGUF_MAGIC, 4) && out_u32(&o, 3) && out_u64(&o, w->n_t) &&
              out_u64(&o, w->n_kv);
    for (size_t i = 0; ok && i < w->n_kv; i++) {
        const wkv *kv = &w->kv[i];
        ok = out_str(&o, kv->key, strlen(kv->key)) && out_u32(&o, (uint32_t)kv->val.type) &&
             out_value(&o, &kv->val);
    }
    for (size_t i = 0; ok && i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        ok = out_str(&o, t->name, strlen(t->name)) && out_u32(&o, t->n_dims);
        for (uint32_t d = 0; ok && d < t->n_dims; d++) ok = out_u64(&o, (uint64_t)t->ne[d]);
        ok = ok && out_u32(&o, (uint32_t)t->type) && out_u64(&o, t->offset);
    }
    if (ok && w->n_t) ok = out_zeros(&o, pad_to((size_t)o.total, w->alignment));
    for (size_t i = 0; ok && i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        if (t->fn) ok = out_tensor_rows(&o, t, &chunk, &chunk_cap);
        else ok = out_bytes(&o, t->data, t->nbytes);
        ok = ok && out_zeros(&o, pad_to(t->nbytes, w->alignment));
    }
    ok = ok && out_flush(&o);
    rl__free(chunk);
    rl__free(o.buf);
    return ok ? RL_OK : o.st;
}

/* Sink over a file descriptor; keeps errno of a failed write. */
typedef struct fd_out {
    int fd;
    int err;
} fd_out;

static rl_status fd_sink(void *user, const void *buf, size_t n) {
    fd_out *f = user;
    const unsigned char *p = buf;
    while (n) {
        ssize_t k = write(f->fd, p, RL_MIN(n, (size_t)1 << 30));
        if (k < 0) {
            if (errno == EINTR) continue;
            f->err = errno;
            return RL_ERR_IO;
        }
        p += k;
        n -= (size_t)k;
    }
    return RL_OK;
}

RL_API rl_status rl_gguf_writer_write(rl_gguf_writer *w, const char *path) {
    if (!w) return RL_ERR_INVALID_ARG;
    w->err[0] = 0;
    if (!path || !*path) return werr(w, RL_ERR_INVALID_ARG, "empty or NULL path");
    size_t n = strlen(path) + 8;
    char *tmp = rl__malloc(n);
    if (!tmp) return werr(w, RL_ERR_NOMEM, "out of memory");
    snprintf(tmp, n, "%s.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        rl_status s = werr(w, RL_ERR_IO, "cannot create a temporary file '%s': %s", tmp,
                           strerror(errno));
        rl__free(tmp);
        return s;
    }
    rl_status s = RL_OK;
    if (fchmod(fd, 0644) != 0) {
        s = werr(w, RL_ERR_IO, "cannot set the mode of '%s': %s", tmp, strerror(errno));
        goto fail;
    }
    fd_out fo = {fd, 0};
    s = rl_gguf_writer_write_to(w, fd_sink, &fo);
    if (s != RL_OK) {
        if (fo.err) werr(w, s, "cannot write '%s': %s", tmp, strerror(fo.err));
        goto fail;
    }
    if (fsync(fd) != 0) {
        s = werr(w, RL_ERR_IO, "cannot sync '%s': %s", tmp, strerror(errno));
        goto fail;
    }
    int cfd = fd;
    fd = -1;
    if (close(cfd) != 0) {
        s = werr(w, RL_ERR_IO, "cannot close '%s': %s", tmp, strerror(errno));
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        s = werr(w, RL_ERR_IO, "cannot rename '%s' to '%s': %s", tmp, path, strerror(errno));
        goto fail;
    }
    rl__free(tmp);
    return RL_OK;

fail:
    if (fd >= 0) close(fd);
    unlink(tmp);
    rl__free(tmp);
    return s;
}
