/*
 * gguf.c - the GGUF reader (v2 and v3, little endian; format in gguf_impl.h).
 *
 * The file is mapped read-only and every field is checked before it is used: a read
 * never goes past the end, every length is compared with the bytes that remain before
 * anything is allocated for it, and every size is computed with overflow checks. The
 * rules follow ggml's gguf.cpp (dims may be 0, ne[0] a multiple of the block size, the
 * element count and byte size representable, general.alignment a uint32 power of two,
 * no duplicate keys or tensor names) plus a few of our own: n_dims is 1..4, keys and
 * names are non-empty and hold no NUL byte, tensor data lies at increasing, aligned,
 * non-overlapping offsets inside the file. Arrays may nest (the format allows it; ggml
 * does not), up to RL__GGUF_MAX_DEPTH levels.
 *
 * Metadata is copied out of the mapping into an arena, because the header promises
 * NUL-terminated strings and aligned arrays; tensor data stays in the mapping.
 */
#include "gguf_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

/* ---- value type table ------------------------------------------------------- */

static const struct {
    const char *name;
    size_t size;
} g_value_types[RL_GGUF_TYPE_COUNT] = {
    [RL_GGUF_TYPE_UINT8] = {"uint8", 1},   [RL_GGUF_TYPE_INT8] = {"int8", 1},
    [RL_GGUF_TYPE_UINT16] = {"uint16", 2}, [RL_GGUF_TYPE_INT16] = {"int16", 2},
    [RL_GGUF_TYPE_UINT32] = {"uint32", 4}, [RL_GGUF_TYPE_INT32] = {"int32", 4},
    [RL_GGUF_TYPE_FLOAT32] = {"float32", 4}, [RL_GGUF_TYPE_BOOL] = {"bool", 1},
    [RL_GGUF_TYPE_STRING] = {"string", 0}, [RL_GGUF_TYPE_ARRAY] = {"array", 0},
    [RL_GGUF_TYPE_UINT64] = {"uint64", 8}, [RL_GGUF_TYPE_INT64] = {"int64", 8},
    [RL_GGUF_TYPE_FLOAT64] = {"float64", 8},
};

size_t rl__gguf_scalar_size(rl_gguf_type t) {
    return ((unsigned)t < RL_GGUF_TYPE_COUNT) ? g_value_types[t].size : 0;
}

RL_API const char *rl_gguf_type_name(rl_gguf_type t) {
    return ((unsigned)t < RL_GGUF_TYPE_COUNT) ? g_value_types[t].name : "?";
}

/* ---- the handle --------------------------------------------------------------- */

/* Metadata memory: a list of chunks, freed at once with the handle. */
typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t cap;
    size_t used;
    size_t pad_; /* keeps data 16-byte aligned */
    unsigned char data[];
} arena_chunk;

typedef struct gguf_kv {
    const char *key;
    size_t key_len;
    size_t key_offset;   /* in the file */
    size_t value_offset; /* of the type field, in the file */
    rl_gguf_value val;
} gguf_kv;

typedef struct gguf_tensor {
    rl_gguf_tensor_info info;
    size_t name_len;
    size_t info_offset; /* of the name, in the file */
} gguf_tensor;

/* Open-addressing hash index from names to entry indices: slot.idx = index + 1, 0 empty. */
typedef struct hslot {
    uint64_t hash;
    int64_t idx;
} hslot;

typedef struct hindex {
    hslot *slots;
    size_t mask;
} hindex;

struct rl_gguf {
    const uint8_t *base;
    size_t size;
    bool mapped;
    uint32_t version;
    size_t alignment;
    size_t data_offset;
    gguf_kv *kv;
    int64_t n_kv;
    gguf_tensor *tensors;
    int64_t n_tensors;
    hindex kv_index;
    hindex tensor_index;
    arena_chunk *arena;
};

/* Non-NULL pointer for empty arrays. */
static const uint64_t g_empty[1];

/* ---- parser state and messages -------------------------------------------------- */

enum section { SECT_HEADER, SECT_KV, SECT_TENSOR, SECT_DATA };

typedef struct parser {
    rl_gguf *g;
    const uint8_t *base;
    size_t size;
    size_t off;
    size_t meta_bytes; /* memory held for metadata, against RL__GGUF_MAX_META_BYTES */
    char *err;
    size_t err_size;
    rl_status status; /* of the first failure */
    /* where we are, for messages */
    enum section sect;
    int64_t index;
    const char *name; /* key or tensor name once read, else NULL */
    int depth;        /* enclosing arrays of the value being read */
    uint64_t path[RL__GGUF_MAX_DEPTH];
} parser;

/* Appends s to buf (at *pos, capacity n) with non-printable bytes shown as '?' and long
 * names cut, so that every message stays one readable line. */
static void put_name(char *buf, size_t n, size_t *pos, const char *s) {
    const size_t max = 96;
    size_t len = strlen(s);
    for (size_t i = 0; i < len && i < max && *pos + 1 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[(*pos)++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    if (len > max) {
        for (int i = 0; i < 3 && *pos + 1 < n; i++) buf[(*pos)++] = '.';
    }
    buf[*pos] = 0;
}

static void describe(const parser *P, char *buf, size_t n) {
    size_t pos = 0;
    buf[0] = 0;
    switch (P->sect) {
    case SECT_HEADER:
        pos = (size_t)snprintf(buf, n, "header");
        break;
    case SECT_KV:
    case SECT_TENSOR:
        pos = (size_t)snprintf(buf, n, "%s %" PRId64, P->sect == SECT_KV ? "kv" : "tensor",
                               P->index);
        if (pos >= n) pos = n - 1;
        if (P->name) {
            if (pos + 2 < n) {
                buf[pos++] = ' ';
                buf[pos++] = '\'';
                buf[pos] = 0;
            }
            put_name(buf, n, &pos, P->name);
            if (pos + 1 < n) {
                buf[pos++] = '\'';
                buf[pos] = 0;
            }
        }
        for (int d = 0; d < P->depth && pos < n; d++)
            pos += (size_t)snprintf(buf + pos, n - pos, "[%" PRIu64 "]", P->path[d]);
        break;
    case SECT_DATA:
        pos = (size_t)snprintf(buf, n, "data section");
        break;
    }
    (void)pos;
}

/* Records a failure: "gguf: <where>: <message>". Returns false for use in conditions. */
__attribute__((format(printf, 3, 4))) static bool fail(parser *P, rl_status st,
                                                       const char *fmt, ...) {
    P->status = st;
    if (P->err && P->err_size > 0) {
        char where[256], msg[512];
        describe(P, where, sizeof where);
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        rl__fmt(P->err, P->err_size, "gguf: %s: %s", where, msg);
    }
    return false;
}


/* ---- reading primitives ------------------------------------------------------------- */

static inline size_t remain(const parser *P) { return P->size - P->off; }

static bool rd(parser *P, void *dst, size_t n, const char *what) {
    if (remain(P) < n)
        return fail(P, RL_ERR_BAD_FILE,
                    "%s at offset %zu needs %zu bytes but the file ends at %zu", what, P->off,
                    n, P->size);
    memcpy(dst, P->base + P->off, n);
    P->off += n;
    return true;
}

static bool rd_u32(parser *P, uint32_t *v, const char *what) { return rd(P, v, 4, what); }
static bool rd_u64(parser *P, uint64_t *v, const char *what) { return rd(P, v, 8, what); }

/* Metadata memory from the arena, aligned to 8, counted against the metadata limit. */
static void *arena_alloc(parser *P, size_t n) {
    rl_gguf *g = P->g;
    n = (n + 7) & ~(size_t)7;
    if (n == 0) return (void *)g_empty;
    arena_chunk *c = g->arena;
    if (c && c->cap - c->used >= n) {
        void *p = c->data + c->used;
        c->used += n;
        return p;
    }
    size_t cap = RL_MAX(n, (size_t)64 << 10);
    if (cap > RL__GGUF_MAX_META_BYTES || P->meta_bytes > RL__GGUF_MAX_META_BYTES - cap) {
        fail(P, RL_ERR_LIMIT, "metadata needs more than the limit of %zu MiB of memory",
             RL__GGUF_MAX_META_BYTES >> 20);
        return NULL;
    }
    c = rl__malloc(sizeof *c + cap);
    if (!c) {
        fail(P, RL_ERR_NOMEM, "out of memory (%zu bytes for metadata)", sizeof *c + cap);
        return NULL;
    }
    P->meta_bytes += cap;
    c->cap = cap;
    c->used = n;
    c->next = g->arena;
    g->arena = c;
    return c->data;
}

/* Grows a table of entries (kv or tensors) to hold need entries, doubling. */
static bool grow(parser *P, void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t ncap = *cap ? *cap * 2 : 16;
    if (ncap < need) ncap = need;
    size_t bytes, old = *cap * elem;
    if (!rl__mul_size(ncap, elem, &bytes) || bytes > RL__GGUF_MAX_META_BYTES ||
        P->meta_bytes - old > RL__GGUF_MAX_META_BYTES - bytes)
        return fail(P, RL_ERR_LIMIT, "metadata needs more than the limit of %zu MiB of memory",
                    RL__GGUF_MAX_META_BYTES >> 20);
    void *p = rl__realloc(*arr, bytes);
    if (!p) return fail(P, RL_ERR_NOMEM, "out of memory (%zu bytes for entries)", bytes);
    P->meta_bytes = P->meta_bytes - old + bytes;
    *arr = p;
    *cap = ncap;
    return true;
}

/* A GGUF string (u64 length, bytes) copied into the arena with a NUL after it. Lengths
 * past the end of the file are malformed; lengths over max_len are refused with over_st
 * (RL_ERR_BAD_FILE for a format rule, RL_ERR_LIMIT for a guard). */
static bool rd_string(parser *P, const char *what, uint64_t max_len, rl_status over_st,
                      const char **out, uint64_t *len_out) {
    size_t at = P->off;
    uint64_t len;
    char lw[64];
    snprintf(lw, sizeof lw, "%s length", what);
    if (!rd_u64(P, &len, lw)) return false;
    if (len > remain(P))
        return fail(P, RL_ERR_BAD_FILE,
                    "%s length %" PRIu64 " at offset %zu extends past end of file (size %zu)",
                    what, len, at, P->size);
    if (len > max_len)
        return fail(P, over_st, "%s length %" PRIu64 " at offset %zu exceeds the limit of %" PRIu64
                                " bytes",
                    what, len, at, max_len);
    char *s = arena_alloc(P, (size_t)len + 1);
    if (!s) return false;
    memcpy(s, P->base + P->off, (size_t)len);
    s[len] = 0;
    P->off += (size_t)len;
    *out = s;
    *len_out = len;
    return true;
}

static bool parse_value(parser *P, rl_gguf_type t, rl_gguf_value *v);

/* Smallest encoding of one array element of type t, to bound counts by the file size. */
static size_t min_elem_bytes(rl_gguf_type t) {
    if (t == RL_GGUF_TYPE_STRING) return 8;
    if (t == RL_GGUF_TYPE_ARRAY) return 12;
    return rl__gguf_scalar_size(t);
}

static bool parse_array(parser *P, rl_gguf_value *v) {
    size_t at = P->off;
    uint32_t et;
    uint64_t n;
    if (P->depth >= RL__GGUF_MAX_DEPTH)
        return fail(P, RL_ERR_LIMIT, "array at offset %zu nests deeper than the limit of %d",
                    at, RL__GGUF_MAX_DEPTH);
    if (!rd_u32(P, &et, "array element type")) return false;
    if (et >= RL_GGUF_TYPE_COUNT)
        return fail(P, RL_ERR_BAD_FILE,
                    "array element type %" PRIu32 " at offset %zu is not a GGUF value type", et,
                    at);
    if (!rd_u64(P, &n, "array length")) return false;
    size_t min = min_elem_bytes((rl_gguf_type)et);
    if (n > remain(P) / min)
        return fail(P, RL_ERR_BAD_FILE,
                    "array length %" PRIu64 " at offset %zu: %" PRIu64 " %s elements of at least "
                    "%zu bytes each extend past end of file (size %zu)",
                    n, at + 4, n, rl_gguf_type_name((rl_gguf_type)et), min, P->size);
    if (n > RL__GGUF_MAX_ARRAY_LEN)
        return fail(P, RL_ERR_LIMIT,
                    "array length %" PRIu64 " at offset %zu exceeds the limit of %" PRIu64, n,
                    at + 4, RL__GGUF_MAX_ARRAY_LEN);
    v->type = RL_GGUF_TYPE_ARRAY;
    v->elem_type = (rl_gguf_type)et;
    v->n = n;
    if (rl__gguf_is_plain((rl_gguf_type)et)) {
        size_t bytes = (size_t)n * min; /* <= remain: no overflow */
        unsigned char *d = arena_alloc(P, bytes);
        if (!d) return false;
        memcpy(d, P->base + P->off, bytes);
        if (et == RL_GGUF_TYPE_BOOL)
            for (size_t j = 0; j < bytes; j++) d[j] = d[j] != 0;
        P->off += bytes;
        v->v.arr = d;
        return true;
    }
    size_t bytes;
    if (!rl__mul_size((size_t)n, sizeof(rl_gguf_value), &bytes))
        return fail(P, RL_ERR_LIMIT, "array length %" PRIu64 " at offset %zu is too large", n,
                    at + 4);
    rl_gguf_value *vals = arena_alloc(P, bytes);
    if (!vals) return false;
    v->v.vals = vals;
    P->depth++;
    for (uint64_t j = 0; j < n; j++) {
        P->path[P->depth - 1] = j;
        if (!parse_value(P, (rl_gguf_type)et, &vals[j])) return false;
    }
    P->depth--;
    return true;
}

static bool parse_value(parser *P, rl_gguf_type t, rl_gguf_value *v) {
    memset(v, 0, sizeof *v);
    v->type = t;
    switch (t) {
    case RL_GGUF_TYPE_STRING:
        return rd_string(P, "string", RL__GGUF_MAX_STRING_LEN, RL_ERR_LIMIT, &v->v.str, &v->n);
    case RL_GGUF_TYPE_ARRAY:
        return parse_array(P, v);
    case RL_GGUF_TYPE_BOOL: {
        uint8_t b;
        if (!rd(P, &b, 1, "bool value")) return false;
        v->v.b = b != 0;
        return true;
    }
    default: {
        char what[32];
        snprintf(what, sizeof what, "%s value", rl_gguf_type_name(t));
        return rd(P, &v->v, rl__gguf_scalar_size(t), what); /* little endian: low bytes first */
    }
    }
}

/* ---- name index ------------------------------------------------------------------------ */

/* FNV-1a, 64 bit. */
static uint64_t hash_name(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static bool hindex_init(parser *P, hindex *h, int64_t n) {
    size_t cap = 8;
    while (cap < (size_t)n * 2) cap *= 2;
    h->slots = rl__calloc(cap, sizeof(hslot));
    if (!h->slots)
        return fail(P, RL_ERR_NOMEM, "out of memory (%zu bytes for a name index)",
                    cap * sizeof(hslot));
    h->mask = cap - 1;
    return true;
}

typedef const char *(*name_at_fn)(const rl_gguf *g, int64_t i, size_t *len);

static const char *kv_name_at(const rl_gguf *g, int64_t i, size_t *len) {
    *len = g->kv[i].key_len;
    return g->kv[i].key;
}

static const char *tensor_name_at(const rl_gguf *g, int64_t i, size_t *len) {
    *len = g->tensors[i].name_len;
    return g->tensors[i].info.name;
}

/* Index of name, or -1. */
static int64_t hindex_find(const rl_gguf *g, const hindex *h, name_at_fn at, const char *s,
                           size_t n, uint64_t hash) {
    if (!h->slots) return -1;
    for (size_t k = hash & h->mask;; k = (k + 1) & h->mask) {
        const hslot *sl = &h->slots[k];
        if (sl->idx == 0) return -1;
        if (sl->hash == hash) {
            size_t len;
            const char *name = at(g, sl->idx - 1, &len);
            if (len == n && memcmp(name, s, n) == 0) return sl->idx - 1;
        }
    }
}

/* Inserts entry i; returns the index of an earlier entry of the same name, or -1. */
static int64_t hindex_insert(rl_gguf *g, hindex *h, name_at_fn at, int64_t i) {
    size_t n;
    const char *s = at(g, i, &n);
    uint64_t hash = hash_name(s, n);
    int64_t dup = hindex_find(g, h, at, s, n, hash);
    if (dup >= 0) return dup;
    size_t k = hash & h->mask;
    while (h->slots[k].idx != 0) k = (k + 1) & h->mask;
    h->slots[k].hash = hash;
    h->slots[k].idx = i + 1;
    return -1;
}

/* ---- the parts of a file ------------------------------------------------------------- */

/* Smallest encodings, to bound the counts of the header by the file size. */
#define MIN_KV_BYTES 14     /* key length 8, key 1, type 4, a uint8 or bool 1 */
#define MIN_TENSOR_BYTES 33 /* name length 8, name 1, n_dims 4, ne[0] 8, type 4, offset 8 */

static bool parse_header(parser *P, uint64_t *n_tensors, uint64_t *n_kv) {
    rl_gguf *g = P->g;
    if (P->size < 4)
        return fail(P, RL_ERR_BAD_FILE,
                    "file of %zu bytes is too small for the magic \"GGUF\" at offset 0", P->size);
    if (memcmp(P->base, RL__GGUF_MAGIC, 4) != 0) {
        const uint8_t *m = P->base;
        return fail(P, RL_ERR_BAD_FILE,
                    "bad magic %02x %02x %02x %02x at offset 0 (expected \"GGUF\", 47 47 55 46)",
                    m[0], m[1], m[2], m[3]);
    }
    P->off = 4;
    if (!rd_u32(P, &g->version, "version")) return false;
    if (g->version == 1)
        return fail(P, RL_ERR_BAD_FILE,
                    "version 1 at offset 4: GGUF v1 is not supported (only v2 and v3 are)");
    if (g->version != 2 && g->version != 3) {
        bool swapped = (g->version & 0xffffu) == 0 && g->version != 0;
        return fail(P, RL_ERR_BAD_FILE,
                    "version %" PRIu32 " at offset 4 is not supported (only v2 and v3 are)%s",
                    g->version, swapped ? "; a big-endian file?" : "");
    }
    if (!rd_u64(P, n_tensors, "n_tensors") || !rd_u64(P, n_kv, "n_kv")) return false;
    if (*n_tensors > remain(P) / MIN_TENSOR_BYTES)
        return fail(P, RL_ERR_BAD_FILE,
                    "n_tensors %" PRIu64 " at offset 8 is more than a file of %zu bytes can hold",
                    *n_tensors, P->size);
    if (*n_kv > remain(P) / MIN_KV_BYTES)
        return fail(P, RL_ERR_BAD_FILE,
                    "n_kv %" PRIu64 " at offset 16 is more than a file of %zu bytes can hold",
                    *n_kv, P->size);
    if (*n_kv * MIN_KV_BYTES + *n_tensors * MIN_TENSOR_BYTES > remain(P))
        return fail(P, RL_ERR_BAD_FILE,
                    "n_kv %" PRIu64 " and n_tensors %" PRIu64
                    " (offsets 16, 8) are more than a file of %zu bytes can hold",
                    *n_kv, *n_tensors, P->size);
    return true;
}

static bool parse_kvs(parser *P, uint64_t n_kv) {
    rl_gguf *g = P->g;
    size_t cap = 0;
    P->sect = SECT_KV;
    for (uint64_t i = 0; i < n_kv; i++) {
        P->index = (int64_t)i;
        P->name = NULL;
        if (!grow(P, (void **)&g->kv, &cap, (size_t)i + 1, sizeof(gguf_kv))) return false;
        gguf_kv *kv = &g->kv[i];
        memset(kv, 0, sizeof *kv);
        kv->key_offset = P->off;
        uint64_t len;
        if (!rd_string(P, "key", RL__GGUF_MAX_NAME_LEN, RL_ERR_BAD_FILE, &kv->key, &len))
            return false;
        kv->key_len = (size_t)len;
        g->n_kv = (int64_t)i + 1;
        if (len == 0) return fail(P, RL_ERR_BAD_FILE, "empty key at offset %zu", kv->key_offset);
        if (memchr(kv->key, 0, len))
            return fail(P, RL_ERR_BAD_FILE, "key at offset %zu contains a NUL byte",
                        kv->key_offset);
        P->name = kv->key;
        kv->value_offset = P->off;
        uint32_t t;
        if (!rd_u32(P, &t, "value type")) return false;
        if (t >= RL_GGUF_TYPE_COUNT)
            return fail(P, RL_ERR_BAD_FILE,
                        "value type %" PRIu32 " at offset %zu is not a GGUF value type", t,
                        kv->value_offset);
        if (!parse_value(P, (rl_gguf_type)t, &kv->val)) return false;
    }
    return true;
}

/* Builds the key index (refusing duplicates) and reads general.alignment. */
static bool index_kvs(parser *P) {
    rl_gguf *g = P->g;
    if (!hindex_init(P, &g->kv_index, g->n_kv)) return false;
    for (int64_t i = 0; i < g->n_kv; i++) {
        int64_t dup = hindex_insert(g, &g->kv_index, kv_name_at, i);
        if (dup >= 0) {
            P->index = i;
            P->name = g->kv[i].key;
            return fail(P, RL_ERR_BAD_FILE,
                        "duplicate key at offset %zu (the same key is kv %" PRId64
                        " at offset %zu)",
                        g->kv[i].key_offset, dup, g->kv[dup].key_offset);
        }
    }
    g->alignment = RL__GGUF_DEFAULT_ALIGNMENT;
    int64_t a = rl_gguf_find_key(g, RL__GGUF_KEY_ALIGNMENT);
    if (a >= 0) {
        const gguf_kv *kv = &g->kv[a];
        P->index = a;
        P->name = kv->key;
        if (kv->val.type != RL_GGUF_TYPE_UINT32)
            return fail(P, RL_ERR_BAD_FILE, "value at offset %zu has type %s; must be uint32",
                        kv->value_offset, rl_gguf_type_name(kv->val.type));
        if (!rl__is_pow2(kv->val.v.u32))
            return fail(P, RL_ERR_BAD_FILE,
                        "alignment %" PRIu32 " at offset %zu is not a power of two",
                        kv->val.v.u32, kv->value_offset + 4);
        g->alignment = kv->val.v.u32;
    }
    return true;
}

static bool parse_tensor_info(parser *P, gguf_tensor *t) {
    rl_gguf_tensor_info *ti = &t->info;
    t->info_offset = P->off;
    uint64_t len;
    if (!rd_string(P, "name", RL__GGUF_MAX_NAME_LEN, RL_ERR_BAD_FILE, &ti->name, &len))
        return false;
    t->name_len = (size_t)len;
    if (len == 0) return fail(P, RL_ERR_BAD_FILE, "empty name at offset %zu", t->info_offset);
    if (memchr(ti->name, 0, len))
        return fail(P, RL_ERR_BAD_FILE, "name at offset %zu contains a NUL byte",
                    t->info_offset);
    P->name = ti->name;

    size_t at = P->off;
    if (!rd_u32(P, &ti->n_dims, "n_dims")) return false;
    if (ti->n_dims < 1 || ti->n_dims > RL_GGUF_MAX_DIMS)
        return fail(P, RL_ERR_BAD_FILE, "n_dims %" PRIu32 " at offset %zu is not in 1..%d",
                    ti->n_dims, at, RL_GGUF_MAX_DIMS);
    for (int d = 0; d < RL_GGUF_MAX_DIMS; d++) ti->ne[d] = 1;
    for (uint32_t d = 0; d < ti->n_dims; d++) {
        at = P->off;
        char what[16];
        snprintf(what, sizeof what, "ne[%" PRIu32 "]", d);
        if (!rd(P, &ti->ne[d], 8, what)) return false;
        if (ti->ne[d] < 0)
            return fail(P, RL_ERR_BAD_FILE, "ne[%" PRIu32 "] = %" PRId64 " at offset %zu is negative",
                        d, ti->ne[d], at);
    }
    const int64_t *ne = ti->ne;
    int64_t nel = 1;
    for (int d = 0; d < RL_GGUF_MAX_DIMS; d++) {
        if (__builtin_mul_overflow(nel, ne[d], &nel))
            return fail(P, RL_ERR_BAD_FILE,
                        "element count of shape [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64
                        "] (offset %zu) overflows int64",
                        ne[0], ne[1], ne[2], ne[3], t->info_offset + 8 + t->name_len + 4);
    }

    at = P->off;
    uint32_t type;
    if (!rd_u32(P, &type, "type")) return false;
    if (!rl_type_valid((int)type))
        return fail(P, RL_ERR_BAD_FILE, "type id %" PRIu32 " at offset %zu is not a known tensor type",
                    type, at);
    ti->type = (rl_type)type;
    int64_t bs = rl_type_block_size(ti->type);
    if (ne[0] % bs != 0)
        return fail(P, RL_ERR_BAD_FILE,
                    "ne[0] = %" PRId64 " is not a multiple of the block size %" PRId64
                    " of type %s (offset %zu)",
                    ne[0], bs, rl_type_name(ti->type), at);
    size_t nbytes;
    if (!rl__mul_size((size_t)(nel / bs), rl_type_block_bytes(ti->type), &nbytes) ||
        nbytes > (size_t)INT64_MAX)
        return fail(P, RL_ERR_BAD_FILE,
                    "byte size of shape [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64
                    "] of type %s (offset %zu) overflows",
                    ne[0], ne[1], ne[2], ne[3], rl_type_name(ti->type), at);
    ti->nbytes = nbytes;

    at = P->off;
    if (!rd_u64(P, &ti->offset, "data offset")) return false;
    if (ti->offset % P->g->alignment != 0)
        return fail(P, RL_ERR_BAD_FILE,
                    "data offset %" PRIu64 " at offset %zu is not a multiple of the alignment %zu",
                    ti->offset, at, P->g->alignment);
    return true;
}

static bool parse_tensors(parser *P, uint64_t n_tensors) {
    rl_gguf *g = P->g;
    size_t cap = 0;
    P->sect = SECT_TENSOR;
    P->depth = 0;
    for (uint64_t i = 0; i < n_tensors; i++) {
        P->index = (int64_t)i;
        P->name = NULL;
        if (!grow(P, (void **)&g->tensors, &cap, (size_t)i + 1, sizeof(gguf_tensor)))
            return false;
        gguf_tensor *t = &g->tensors[i];
        memset(t, 0, sizeof *t);
        g->n_tensors = (int64_t)i + 1;
        if (!parse_tensor_info(P, t)) return false;
    }
    if (!hindex_init(P, &g->tensor_index, g->n_tensors)) return false;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        int64_t dup = hindex_insert(g, &g->tensor_index, tensor_name_at, i);
        if (dup >= 0) {
            P->index = i;
            P->name = g->tensors[i].info.name;
            return fail(P, RL_ERR_BAD_FILE,
                        "duplicate tensor name at offset %zu (the same name is tensor %" PRId64
                        " at offset %zu)",
                        g->tensors[i].info_offset, dup, g->tensors[dup].info_offset);
        }
    }
    return true;
}

/* Places the data section after the padding and checks that every tensor's bytes lie in
 * the file, in file order, without overlap. */
static bool place_data(parser *P) {
    rl_gguf *g = P->g;
    g->data_offset = P->off;
    if (g->n_tensors == 0) return true;
    size_t pad = (g->alignment - P->off % g->alignment) % g->alignment;
    P->sect = SECT_DATA;
    P->name = NULL;
    if (pad > remain(P))
        return fail(P, RL_ERR_BAD_FILE,
                    "starts at offset %zu after padding to the alignment %zu, past end of file "
                    "(size %zu)",
                    P->off + pad, g->alignment, P->size);
    g->data_offset = P->off + pad;
    P->sect = SECT_TENSOR;
    uint64_t prev_end = 0;
    for (int64_t i = 0; i < g->n_tensors; i++) {
        rl_gguf_tensor_info *ti = &g->tensors[i].info;
        P->index = i;
        P->name = ti->name;
        if (i > 0 && ti->offset < prev_end) {
            const rl_gguf_tensor_info *pt = &g->tensors[i - 1].info;
            char prev[128];
            size_t pos = 0;
            prev[0] = 0;
            put_name(prev, sizeof prev, &pos, pt->name);
            return fail(P, RL_ERR_BAD_FILE,
                        "data offset %" PRIu64 " overlaps or precedes tensor %" PRId64
                        " '%s' [offset %" PRIu64 ", %zu bytes]; data must follow file order",
                        ti->offset, i - 1, prev, pt->offset, pt->nbytes);
        }
        uint64_t abs_off, end;
        if (__builtin_add_overflow((uint64_t)g->data_offset, ti->offset, &abs_off) ||
            __builtin_add_overflow(abs_off, (uint64_t)ti->nbytes, &end) || end > P->size)
            return fail(P, RL_ERR_BAD_FILE,
                        "data [offset %" PRIu64 " + %zu, %zu bytes] extends past end of file "
                        "(size %zu)",
                        ti->offset, g->data_offset, ti->nbytes, P->size);
        ti->data = P->base + abs_off;
        prev_end = ti->offset + ti->nbytes; /* <= size: no overflow */
    }
    return true;
}

/* ---- open / free ------------------------------------------------------------------------ */

RL_API void rl_gguf_free(rl_gguf *g) {
    if (!g) return;
    for (arena_chunk *c = g->arena, *next; c; c = next) {
        next = c->next;
        rl__free(c);
    }
    rl__free(g->kv);
    rl__free(g->tensors);
    rl__free(g->kv_index.slots);
    rl__free(g->tensor_index.slots);
    if (g->mapped) munmap((void *)g->base, g->size);
    rl__free(g);
}

/* Parses a whole file image. The handle does not own the image (the caller sets mapped). */
static rl_status parse(const void *data, size_t size, rl_gguf **out, char *err,
                       size_t err_size) {
    parser px;
    memset(&px, 0, sizeof px);
    parser *P = &px;
    P->base = data;
    P->size = size;
    P->err = err;
    P->err_size = err_size;
    P->sect = SECT_HEADER;
    if (err && err_size) err[0] = 0;

    rl_gguf *g = rl__calloc(1, sizeof *g);
    if (!g) {
        rl__fmt(err, err_size, "gguf: out of memory");
        return RL_ERR_NOMEM;
    }
    g->base = data;
    g->size = size;
    P->g = g;

    uint64_t n_tensors, n_kv;
    if (!parse_header(P, &n_tensors, &n_kv) || !parse_kvs(P, n_kv) || !index_kvs(P) ||
        !parse_tensors(P, n_tensors) || !place_data(P))
        goto fail;
    *out = g;
    return RL_OK;

fail:
    rl_gguf_free(g);
    return px.status != RL_OK ? px.status : RL_ERR_INTERNAL;
}

RL_API rl_status rl_gguf_open_memory(const void *data, size_t size, rl_gguf **out, char *err,
                                     size_t err_size) {
    if (out) *out = NULL;
    if (!out || (!data && size > 0)) {
        rl__fmt(err, err_size, "gguf: invalid argument (NULL buffer or out)");
        return RL_ERR_INVALID_ARG;
    }
    if (!data) data = g_empty;
    return parse(data, size, out, err, err_size);
}

RL_API rl_status rl_gguf_open(const char *path, rl_gguf **out, char *err, size_t err_size) {
    if (out) *out = NULL;
    if (!path || !out) {
        rl__fmt(err, err_size, "gguf: invalid argument (NULL path or out)");
        return RL_ERR_INVALID_ARG;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block */
    if (fd < 0) {
        rl__fmt(err, err_size, "gguf: cannot open '%s': %s", path, strerror(errno));
        return RL_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        rl__fmt(err, err_size, "gguf: cannot stat '%s': %s", path, strerror(errno));
        close(fd);
        return RL_ERR_IO;
    }
    if (!S_ISREG(st.st_mode)) {
        rl__fmt(err, err_size, "gguf: '%s' is not a regular file", path);
        close(fd);
        return RL_ERR_IO;
    }
    size_t size = (size_t)st.st_size;
    if (size == 0) {
        close(fd);
        return parse(g_empty, 0, out, err, err_size);
    }
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (m == MAP_FAILED) {
        rl__fmt(err, err_size, "gguf: cannot map '%s': %s", path, strerror(map_errno));
        return RL_ERR_IO;
    }
    /* A hint, so its failure changes nothing: a file read into the page cache through a
     * huge-page-advised mapping comes in as 2 MiB folios, and decode, which streams the
     * weights, runs faster on them (fewer TLB misses: measured on a 2-core Zen 5, the
     * same Q4_K_M bytes in 4 KiB pages 64 GB/s, in 2 MiB pages 76 GB/s). */
    (void)madvise(m, size, MADV_HUGEPAGE);
    rl_status s = parse(m, size, out, err, err_size);
    if (s != RL_OK) {
        munmap(m, size);
        return s;
    }
    (*out)->mapped = true;
    return RL_OK;
}

/* ---- accessors ------------------------------------------------------------------------ */

RL_API uint32_t rl_gguf_version(const rl_gguf *g) { return g ? g->version : 0; }
RL_API size_t rl_gguf_alignment(const rl_gguf *g) { return g ? g->alignment : 0; }
RL_API size_t rl_gguf_data_offset(const rl_gguf *g) { return g ? g->data_offset : 0; }
RL_API size_t rl_gguf_file_size(const rl_gguf *g) { return g ? g->size : 0; }
RL_API int64_t rl_gguf_n_kv(const rl_gguf *g) { return g ? g->n_kv : 0; }
RL_API int64_t rl_gguf_n_tensors(const rl_gguf *g) { return g ? g->n_tensors : 0; }

RL_API int64_t rl_gguf_find_key(const rl_gguf *g, const char *key) {
    if (!g || !key) return -1;
    size_t n = strlen(key);
    return hindex_find(g, &g->kv_index, kv_name_at, key, n, hash_name(key, n));
}

RL_API int64_t rl_gguf_find_tensor(const rl_gguf *g, const char *name) {
    if (!g || !name) return -1;
    size_t n = strlen(name);
    return hindex_find(g, &g->tensor_index, tensor_name_at, name, n, hash_name(name, n));
}

static const rl_gguf_value *kv_at(const rl_gguf *g, int64_t i) {
    return (g && i >= 0 && i < g->n_kv) ? &g->kv[i].val : NULL;
}

RL_API const char *rl_gguf_key(const rl_gguf *g, int64_t i) {
    return (g && i >= 0 && i < g->n_kv) ? g->kv[i].key : NULL;
}

RL_API rl_gguf_type rl_gguf_kv_type(const rl_gguf *g, int64_t i) {
    const rl_gguf_value *v = kv_at(g, i);
    return v ? v->type : RL_GGUF_TYPE_COUNT;
}

RL_API const rl_gguf_value *rl_gguf_kv_value(const rl_gguf *g, int64_t i) { return kv_at(g, i); }

/* Common checks of the typed getters: the kv exists and out is usable. */
static rl_status get_checked(const rl_gguf *g, int64_t i, const void *out,
                             const rl_gguf_value **v) {
    if (!g || !out) return RL_ERR_INVALID_ARG;
    *v = kv_at(g, i);
    return *v ? RL_OK : RL_ERR_NOT_FOUND;
}

/* An integer value as sign + magnitude; false when v is not an integer. */
static bool int_value(const rl_gguf_value *v, bool *neg, uint64_t *mag) {
    int64_t s;
    switch (v->type) {
    case RL_GGUF_TYPE_UINT8: *neg = false; *mag = v->v.u8; return true;
    case RL_GGUF_TYPE_UINT16: *neg = false; *mag = v->v.u16; return true;
    case RL_GGUF_TYPE_UINT32: *neg = false; *mag = v->v.u32; return true;
    case RL_GGUF_TYPE_UINT64: *neg = false; *mag = v->v.u64; return true;
    case RL_GGUF_TYPE_INT8: s = v->v.i8; break;
    case RL_GGUF_TYPE_INT16: s = v->v.i16; break;
    case RL_GGUF_TYPE_INT32: s = v->v.i32; break;
    case RL_GGUF_TYPE_INT64: s = v->v.i64; break;
    default: return false;
    }
    *neg = s < 0;
    *mag = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    return true;
}

RL_API rl_status rl_gguf_get_u64(const rl_gguf *g, int64_t i, uint64_t *out) {
    const rl_gguf_value *v;
    rl_status s = get_checked(g, i, out, &v);
    if (s != RL_OK) return s;
    bool neg;
    uint64_t mag;
    if (!int_value(v, &neg, &mag)) return RL_ERR_INVALID_ARG;
    if (neg) return RL_ERR_RANGE;
    *out = mag;
    return RL_OK;
}

RL_API rl_status rl_gguf_get_i64(const rl_gguf *g, int64_t i, int64_t *out) {
    const rl_gguf_value *v;
    rl_status s = get_checked(g, i, out, &v);
    if (s != RL_OK) return s;
    bool neg;
    uint64_t mag;
    if (!int_value(v, &neg, &mag)) return RL_ERR_INVALID_ARG;
    if (!neg && mag > (uint64_t)INT64_MAX) return RL_ERR_RANGE;
    *out = neg ? (int64_t)(0 - mag) : (int64_t)mag; /* mag <= 2^63: wraps to INT64_MIN */
    return RL_OK;
}

RL_API rl_status rl_gguf_get_f64(const rl_gguf *g, int64_t i, double *out) {
    const rl_gguf_value *v;
    rl_status s = get_checked(g, i, out, &v);
    if (s != RL_OK) return s;
    bool neg;
    uint64_t mag;
    if (v->type == RL_GGUF_TYPE_FLOAT32) *out = v->v.f32;
    else if (v->type == RL_GGUF_TYPE_FLOAT64) *out = v->v.f64;
    else if (int_value(v, &neg, &mag)) *out = neg ? -(double)mag : (double)mag;
    else return RL_ERR_INVALID_ARG;
    return RL_OK;
}

RL_API rl_status rl_gguf_get_bool(const rl_gguf *g, int64_t i, bool *out) {
    const rl_gguf_value *v;
    rl_status s = get_checked(g, i, out, &v);
    if (s != RL_OK) return s;
    if (v->type != RL_GGUF_TYPE_BOOL) return RL_ERR_INVALID_ARG;
    *out = v->v.b;
    return RL_OK;
}

RL_API rl_status rl_gguf_get_str(const rl_gguf *g, int64_t i, const char **str, size_t *len) {
    const rl_gguf_value *v;
    rl_status s = get_checked(g, i, str, &v);
    if (s != RL_OK) return s;
    if (v->type != RL_GGUF_TYPE_STRING) return RL_ERR_INVALID_ARG;
    *str = v->v.str;
    if (len) *len = (size_t)v->n;
    return RL_OK;
}

RL_API rl_status rl_gguf_get_arr_info(const rl_gguf *g, int64_t i, rl_gguf_type *elem_type,
                                      uint64_t *n) {
    const rl_gguf_value *v;
    rl_status s = get_checked(g, i, n, &v);
    if (s != RL_OK) return s;
    if (v->type != RL_GGUF_TYPE_ARRAY) return RL_ERR_INVALID_ARG;
    if (elem_type) *elem_type = v->elem_type;
    *n = v->n;
    return RL_OK;
}

RL_API rl_status rl_gguf_get_arr_data(const rl_gguf *g, int64_t i, const void **data) {
    const rl_gguf_value *v;
    rl_status s = get_checked(g, i, data, &v);
    if (s != RL_OK) return s;
    if (v->type != RL_GGUF_TYPE_ARRAY || !rl__gguf_is_plain(v->elem_type))
        return RL_ERR_INVALID_ARG;
    *data = v->v.arr;
    return RL_OK;
}

RL_API rl_status rl_gguf_get_arr_str(const rl_gguf *g, int64_t i, uint64_t j, const char **str,
                                     size_t *len) {
    const rl_gguf_value *v;
    rl_status s = get_checked(g, i, str, &v);
    if (s != RL_OK) return s;
    if (v->type != RL_GGUF_TYPE_ARRAY || v->elem_type != RL_GGUF_TYPE_STRING)
        return RL_ERR_INVALID_ARG;
    if (j >= v->n) return RL_ERR_RANGE;
    *str = v->v.vals[j].v.str;
    if (len) *len = (size_t)v->v.vals[j].n;
    return RL_OK;
}

RL_API rl_status rl_gguf_tensor(const rl_gguf *g, int64_t i, rl_gguf_tensor_info *out) {
    if (!g || !out) return RL_ERR_INVALID_ARG;
    if (i < 0 || i >= g->n_tensors) return RL_ERR_NOT_FOUND;
    *out = g->tensors[i].info;
    return RL_OK;
}
