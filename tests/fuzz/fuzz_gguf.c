/*
 * fuzz_gguf.c - libFuzzer harness for the GGUF reader (and, through a round trip, the
 * writer). Each input is opened with rl_gguf_open_memory over the fuzzer's own buffer,
 * so AddressSanitizer sees any read past its end. On success every accessor is touched
 * and the file is copied through the writer and read back: the copy must open and hold
 * the same metadata and tensors. On failure the message must be a "gguf: " line and the
 * status one of the documented ones. Any leak through the library's allocator traps.
 */
#include "ruvllm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(c)                                                                        \
    do {                                                                                  \
        if (!(c)) {                                                                       \
            fprintf(stderr, "fuzz_gguf: %s:%d: requirement failed: %s\n", __FILE__, __LINE__, \
                    #c);                                                                  \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

static size_t elem_size(rl_gguf_type t) {
    switch (t) {
    case RL_GGUF_TYPE_UINT8: case RL_GGUF_TYPE_INT8: case RL_GGUF_TYPE_BOOL: return 1;
    case RL_GGUF_TYPE_UINT16: case RL_GGUF_TYPE_INT16: return 2;
    case RL_GGUF_TYPE_UINT32: case RL_GGUF_TYPE_INT32: case RL_GGUF_TYPE_FLOAT32: return 4;
    case RL_GGUF_TYPE_UINT64: case RL_GGUF_TYPE_INT64: case RL_GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

/* Reads every byte a value view points at; returns a checksum so nothing is optimized out. */
static uint64_t walk(const rl_gguf_value *v, int depth) {
    REQUIRE(depth <= 16);
    uint64_t h = (uint64_t)v->type * 31 + v->n;
    if (v->type == RL_GGUF_TYPE_STRING) {
        for (uint64_t i = 0; i < v->n; i++) h = h * 131 + (unsigned char)v->v.str[i];
        REQUIRE(v->v.str[v->n] == 0);
    } else if (v->type == RL_GGUF_TYPE_ARRAY) {
        size_t es = elem_size(v->elem_type);
        REQUIRE(v->v.arr != NULL);
        if (es) {
            REQUIRE(((uintptr_t)v->v.arr & (es - 1)) == 0);
            const unsigned char *p = v->v.arr;
            for (uint64_t i = 0; i < v->n * es; i++) h = h * 131 + p[i];
            if (v->elem_type == RL_GGUF_TYPE_BOOL)
                for (uint64_t i = 0; i < v->n; i++) REQUIRE(p[i] <= 1);
        } else {
            for (uint64_t i = 0; i < v->n; i++) {
                REQUIRE(v->v.vals[i].type == v->elem_type);
                h = h * 131 + walk(&v->v.vals[i], depth + 1);
            }
        }
    } else {
        REQUIRE(v->type < RL_GGUF_TYPE_COUNT);
        h += v->v.u64 & 0xff;
    }
    return h;
}

static bool value_eq(const rl_gguf_value *a, const rl_gguf_value *b) {
    if (a->type != b->type) return false;
    if (a->type == RL_GGUF_TYPE_STRING)
        return a->n == b->n && memcmp(a->v.str, b->v.str, (size_t)a->n) == 0;
    if (a->type == RL_GGUF_TYPE_ARRAY) {
        if (a->elem_type != b->elem_type || a->n != b->n) return false;
        size_t es = elem_size(a->elem_type);
        if (es) return memcmp(a->v.arr, b->v.arr, (size_t)a->n * es) == 0;
        for (uint64_t i = 0; i < a->n; i++)
            if (!value_eq(&a->v.vals[i], &b->v.vals[i])) return false;
        return true;
    }
    if (a->type == RL_GGUF_TYPE_BOOL) return a->v.b == b->v.b;
    return memcmp(&a->v, &b->v, elem_size(a->type)) == 0;
}

static void touch(const rl_gguf *g) {
    volatile uint64_t sink = 0;
    sink += rl_gguf_version(g) + rl_gguf_alignment(g) + rl_gguf_data_offset(g);
    REQUIRE(rl_gguf_version(g) == 2 || rl_gguf_version(g) == 3);
    REQUIRE(rl_gguf_data_offset(g) <= rl_gguf_file_size(g));
    for (int64_t i = 0; i < rl_gguf_n_kv(g); i++) {
        const char *key = rl_gguf_key(g, i);
        REQUIRE(key && *key);
        REQUIRE(rl_gguf_find_key(g, key) == i);
        const rl_gguf_value *v = rl_gguf_kv_value(g, i);
        REQUIRE(v && v->type == rl_gguf_kv_type(g, i));
        sink += walk(v, 0);
        uint64_t u;
        int64_t s;
        double d;
        bool b;
        const char *str;
        size_t len;
        rl_gguf_type et;
        uint64_t n;
        const void *data;
        sink += rl_gguf_get_u64(g, i, &u) + rl_gguf_get_i64(g, i, &s) + rl_gguf_get_f64(g, i, &d) +
                rl_gguf_get_bool(g, i, &b) + rl_gguf_get_str(g, i, &str, &len);
        if (rl_gguf_get_arr_info(g, i, &et, &n) == RL_OK) {
            REQUIRE(v->type == RL_GGUF_TYPE_ARRAY && n == v->n);
            if (rl_gguf_get_arr_data(g, i, &data) == RL_OK) REQUIRE(data == v->v.arr);
            for (uint64_t j = 0; j < n && j < 64; j++)
                if (rl_gguf_get_arr_str(g, i, j, &str, &len) == RL_OK) sink += len;
            REQUIRE(rl_gguf_get_arr_str(g, i, n, &str, &len) != RL_OK);
        }
    }
    REQUIRE(rl_gguf_key(g, rl_gguf_n_kv(g)) == NULL);
    for (int64_t i = 0; i < rl_gguf_n_tensors(g); i++) {
        rl_gguf_tensor_info ti;
        REQUIRE(rl_gguf_tensor(g, i, &ti) == RL_OK);
        REQUIRE(rl_gguf_find_tensor(g, ti.name) == i);
        REQUIRE(rl_type_valid(ti.type) && ti.n_dims >= 1 && ti.n_dims <= 4);
        REQUIRE(ti.offset % rl_gguf_alignment(g) == 0);
        if (ti.nbytes) { /* first and last byte: ASan checks they are inside the input */
            const unsigned char *p = ti.data;
            sink += p[0] + p[ti.nbytes - 1];
        }
    }
    (void)sink;
}

typedef struct membuf {
    unsigned char *p;
    size_t n, cap;
} membuf;

static rl_status mem_sink(void *user, const void *buf, size_t n) {
    membuf *m = user;
    if (m->n + n > m->cap) {
        size_t cap = (m->n + n) * 2;
        unsigned char *p = realloc(m->p, cap);
        if (!p) return RL_ERR_NOMEM;
        m->p = p;
        m->cap = cap;
    }
    memcpy(m->p + m->n, buf, n);
    m->n += n;
    return RL_OK;
}

/* Copy through the writer and read back. The writer may refuse what the reader accepts
 * (tensor names over 63 bytes, alignments over 2^20): then there is nothing to compare. */
static void round_trip(const rl_gguf *g) {
    rl_gguf_writer *w = NULL;
    REQUIRE(rl_gguf_writer_create(&w) == RL_OK);
    bool ok = true;
    for (int64_t i = 0; ok && i < rl_gguf_n_kv(g); i++) ok = rl_gguf_writer_copy_kv(w, g, i) == RL_OK;
    for (int64_t i = 0; ok && i < rl_gguf_n_tensors(g); i++) {
        rl_gguf_tensor_info ti;
        rl_gguf_tensor(g, i, &ti);
        ok = rl_gguf_writer_add_tensor(w, ti.name, ti.type, ti.n_dims, ti.ne, ti.data) == RL_OK;
    }
    membuf mb = {0};
    if (ok) {
        REQUIRE(rl_gguf_writer_write_to(w, mem_sink, &mb) == RL_OK);
        rl_gguf *g2 = NULL;
        char err[256];
        rl_status s = rl_gguf_open_memory(mb.p, mb.n, &g2, err, sizeof err);
        if (s != RL_OK) fprintf(stderr, "fuzz_gguf: round trip does not open: %s\n", err);
        REQUIRE(s == RL_OK);
        REQUIRE(rl_gguf_n_kv(g2) == rl_gguf_n_kv(g) && rl_gguf_n_tensors(g2) == rl_gguf_n_tensors(g));
        REQUIRE(rl_gguf_version(g2) == 3 && rl_gguf_alignment(g2) == rl_gguf_alignment(g));
        for (int64_t i = 0; i < rl_gguf_n_kv(g); i++) {
            REQUIRE(strcmp(rl_gguf_key(g, i), rl_gguf_key(g2, i)) == 0);
            REQUIRE(value_eq(rl_gguf_kv_value(g, i), rl_gguf_kv_value(g2, i)));
        }
        for (int64_t i = 0; i < rl_gguf_n_tensors(g); i++) {
            rl_gguf_tensor_info a, b;
            rl_gguf_tensor(g, i, &a);
            rl_gguf_tensor(g2, i, &b);
            REQUIRE(!strcmp(a.name, b.name) && a.type == b.type && a.n_dims == b.n_dims);
            REQUIRE(!memcmp(a.ne, b.ne, sizeof a.ne) && a.nbytes == b.nbytes);
            REQUIRE(a.nbytes == 0 || !memcmp(a.data, b.data, a.nbytes));
        }
        rl_gguf_free(g2);
    }
    free(mb.p);
    rl_gguf_writer_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t mem0 = rl_mem_in_use();
    rl_gguf *g = (rl_gguf *)&mem0; /* must be reset to NULL on failure */
    char err[512];
    err[0] = 0;
    rl_status s = rl_gguf_open_memory(data, size, &g, err, sizeof err);
    if (s == RL_OK) {
        REQUIRE(g != NULL);
        REQUIRE(rl_gguf_file_size(g) == size);
        touch(g);
        round_trip(g);
        rl_gguf_free(g);
    } else {
        REQUIRE(g == NULL);
        REQUIRE(s == RL_ERR_BAD_FILE || s == RL_ERR_LIMIT || s == RL_ERR_NOMEM);
        REQUIRE(strncmp(err, "gguf: ", 6) == 0 && strchr(err, '\n') == NULL);
    }
    REQUIRE(rl_mem_in_use() == mem0);
    return 0;
}
