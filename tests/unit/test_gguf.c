/* Unit tests of the GGUF reader and writer: every real model of the test data, a writer
 * round trip of every value type (nested arrays too) and several tensor types, hostile
 * inputs (truncation at every byte, single-field corruptions, limits), and allocation
 * fault injection with leak checks. */
#include "mem_sink.h"
#include "test.h"
#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------------- */

/* A growing byte buffer, to build GGUF images by hand. */
typedef struct bbuf {
    unsigned char *p;
    size_t n, cap;
} bbuf;

static void put(bbuf *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(bbuf *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(bbuf *b, uint64_t v) { put(b, &v, 8); }
static void put_str(bbuf *b, const char *s) {
    put_u64(b, strlen(s));
    put(b, s, strlen(s));
}
static void put_zeros(bbuf *b, size_t n) {
    for (size_t i = 0; i < n; i++) put(b, "", 1);
}
static void patch_u32(unsigned char *p, size_t off, uint32_t v) { memcpy(p + off, &v, 4); }
static void patch_u64(unsigned char *p, size_t off, uint64_t v) { memcpy(p + off, &v, 8); }

/* A temporary path in the build folder (or TMPDIR). */
static const char *tmp_path(const char *name) {
    static char bufs[4][1024];
    static int slot;
    char *b = bufs[slot++ & 3];
    const char *dir = getenv("RUVLLM_BUILD_DIR");
    if (!dir || !*dir) dir = getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    snprintf(b, 1024, "%s/test_gguf_%d_%s", dir, (int)getpid(), name);
    return b;
}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Count directory entries starting with prefix (leftover temporaries). */
static int count_prefix(const char *path_prefix) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path_prefix);
    char *slash = strrchr(dir, '/');
    if (!slash) return -1;
    *slash = 0;
    const char *base = slash + 1;
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (!strncmp(e->d_name, base, strlen(base))) n++;
    closedir(d);
    return n;
}

/* ---- the small valid file and its field offsets ------------------------------------ */

/* Layout: 4 kvs (a string, general.alignment = 32, an array of 3 uint32, an array of 2
 * strings), 2 tensors (t0: Q8_0 [32, 2] = 68 bytes at 0; t1: F32 [8] = 32 bytes at 96).
 * The last tensor ends exactly at the end of the file, so every truncation must fail. */
typedef struct base_off {
    size_t version, n_tensors, n_kv;
    size_t kv0_keylen, kv0_key, kv0_type, kv0_strlen;
    size_t align_type, align_val;
    size_t arr_elem_type, arr_n;
    size_t kv3_key;
    size_t t0_name, t0_n_dims, t0_ne0, t0_ne1, t0_type, t0_offset;
    size_t t1_name, t1_ne0, t1_type, t1_offset;
    size_t data;
} base_off;

static bbuf build_base(base_off *o) {
    bbuf b = {0};
    put(&b, "GGUF", 4);
    o->version = b.n;
    put_u32(&b, 3);
    o->n_tensors = b.n;
    put_u64(&b, 2);
    o->n_kv = b.n;
    put_u64(&b, 4);

    o->kv0_keylen = b.n;
    o->kv0_key = b.n + 8;
    put_str(&b, "general.architecture");
    o->kv0_type = b.n;
    put_u32(&b, RL_GGUF_TYPE_STRING);
    o->kv0_strlen = b.n;
    put_str(&b, "test");

    put_str(&b, "general.alignment");
    o->align_type = b.n;
    put_u32(&b, RL_GGUF_TYPE_UINT32);
    o->align_val = b.n;
    put_u32(&b, 32);

    put_str(&b, "test.arr");
    put_u32(&b, RL_GGUF_TYPE_ARRAY);
    o->arr_elem_type = b.n;
    put_u32(&b, RL_GGUF_TYPE_UINT32);
    o->arr_n = b.n;
    put_u64(&b, 3);
    for (uint32_t i = 1; i <= 3; i++) put_u32(&b, i);

    o->kv3_key = b.n + 8;
    put_str(&b, "test.ars"); /* one byte from "test.arr", for the duplicate-key case */
    put_u32(&b, RL_GGUF_TYPE_ARRAY);
    put_u32(&b, RL_GGUF_TYPE_STRING);
    put_u64(&b, 2);
    put_str(&b, "a");
    put_str(&b, "bc");

    o->t0_name = b.n + 8;
    put_str(&b, "t0");
    o->t0_n_dims = b.n;
    put_u32(&b, 2);
    o->t0_ne0 = b.n;
    put_u64(&b, 32);
    o->t0_ne1 = b.n;
    put_u64(&b, 2);
    o->t0_type = b.n;
    put_u32(&b, RL_TYPE_Q8_0);
    o->t0_offset = b.n;
    put_u64(&b, 0);

    o->t1_name = b.n + 8;
    put_str(&b, "t1");
    put_u32(&b, 1);
    o->t1_ne0 = b.n;
    put_u64(&b, 8);
    o->t1_type = b.n;
    put_u32(&b, RL_TYPE_F32);
    o->t1_offset = b.n;
    put_u64(&b, 96);

    put_zeros(&b, (32 - b.n % 32) % 32);
    o->data = b.n;
    for (int i = 0; i < 68; i++) put(&b, &(unsigned char){(unsigned char)i}, 1);
    put_zeros(&b, 96 - 68);
    for (int i = 0; i < 8; i++) put(&b, &(float){(float)i + 0.5f}, 4);
    return b;
}

TEST(base_file_opens) {
    base_off o;
    bbuf b = build_base(&o);
    rl_gguf *g = NULL;
    char err[512];
    rl_status s = rl_gguf_open_memory(b.p, b.n, &g, err, sizeof err);
    CHECKF(s == RL_OK, "%s", err);
    if (s != RL_OK) return;
    CHECK_EQ_INT(rl_gguf_version(g), 3);
    CHECK_EQ_INT(rl_gguf_n_kv(g), 4);
    CHECK_EQ_INT(rl_gguf_n_tensors(g), 2);
    CHECK_EQ_INT(rl_gguf_alignment(g), 32);
    CHECK_EQ_INT(rl_gguf_data_offset(g), o.data);
    CHECK_EQ_INT(rl_gguf_file_size(g), b.n);
    const char *str;
    size_t len;
    CHECK(rl_gguf_get_str(g, rl_gguf_find_key(g, "general.architecture"), &str, &len) == RL_OK);
    CHECK_STR(str, "test");
    CHECK_EQ_INT(len, 4);
    int64_t ia = rl_gguf_find_key(g, "test.arr");
    rl_gguf_type et;
    uint64_t n;
    const void *data;
    CHECK(rl_gguf_get_arr_info(g, ia, &et, &n) == RL_OK && et == RL_GGUF_TYPE_UINT32 && n == 3);
    CHECK(rl_gguf_get_arr_data(g, ia, &data) == RL_OK && ((const uint32_t *)data)[2] == 3);
    CHECK(((uintptr_t)data & 3) == 0);
    int64_t is = rl_gguf_find_key(g, "test.ars");
    CHECK(rl_gguf_get_arr_str(g, is, 1, &str, &len) == RL_OK && !strcmp(str, "bc") && len == 2);
    CHECK(rl_gguf_get_arr_str(g, is, 2, &str, &len) == RL_ERR_RANGE);
    CHECK(rl_gguf_get_arr_data(g, is, &data) == RL_ERR_INVALID_ARG);
    rl_gguf_tensor_info ti;
    CHECK(rl_gguf_tensor(g, 1, &ti) == RL_OK);
    CHECK_STR(ti.name, "t1");
    CHECK(ti.type == RL_TYPE_F32 && ti.n_dims == 1 && ti.ne[0] == 8 && ti.ne[1] == 1);
    CHECK(ti.offset == 96 && ti.nbytes == 32);
    CHECK(ti.data == b.p + o.data + 96 && ((const float *)ti.data)[7] == 7.5f);
    CHECK(rl_gguf_tensor(g, 0, &ti) == RL_OK && ti.nbytes == 68 && ti.type == RL_TYPE_Q8_0);
    CHECK_EQ_INT(rl_gguf_find_tensor(g, "t0"), 0);
    CHECK_EQ_INT(rl_gguf_find_tensor(g, "t2"), -1);
    CHECK(rl_gguf_tensor(g, 2, &ti) == RL_ERR_NOT_FOUND);
    rl_gguf_free(g);
    free(b.p);
}

/* Every prefix of the file is refused cleanly (BAD_FILE, no handle, no leak). */
TEST(truncated_at_every_byte) {
    base_off o;
    bbuf b = build_base(&o);
    size_t mem0 = rl_mem_in_use();
    int bad = 0;
    for (size_t n = 0; n < b.n; n++) {
        /* a fresh copy of exactly n bytes, so that ASan sees any read past the end */
        unsigned char *p = malloc(n ? n : 1);
        memcpy(p, b.p, n);
        rl_gguf *g = (rl_gguf *)1;
        char err[512] = "";
        rl_status s = rl_gguf_open_memory(p, n, &g, err, sizeof err);
        if (s != RL_ERR_BAD_FILE || g != NULL || strncmp(err, "gguf: ", 6) != 0) {
            if (bad++ < 5) CHECKF(false, "prefix %zu: status %d, '%s'", n, (int)s, err);
        }
        if (s == RL_OK) rl_gguf_free(g);
        free(p);
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(rl_mem_in_use(), mem0);
    free(b.p);
}

/* One field changed: status BAD_FILE and a message naming the field. */
typedef struct corruption {
    const char *what;
    size_t off; /* base_off member, resolved by the table builder */
    int width;  /* 4 or 8; 1 for a byte */
    uint64_t value;
    const char *expect; /* substring of the message */
    rl_status st;
} corruption;

static void check_corruption(const bbuf *b, const corruption *c) {
    unsigned char *p = malloc(b->n);
    memcpy(p, b->p, b->n);
    if (c->width == 4) patch_u32(p, c->off, (uint32_t)c->value);
    else if (c->width == 8) patch_u64(p, c->off, c->value);
    else p[c->off] = (unsigned char)c->value;
    rl_gguf *g = (rl_gguf *)1;
    char err[512] = "";
    size_t mem0 = rl_mem_in_use();
    rl_status s = rl_gguf_open_memory(p, b->n, &g, err, sizeof err);
    CHECKF(s == c->st, "%s: status %s, message '%s'", c->what, rl_status_str(s), err);
    CHECKF(g == NULL, "%s: handle not NULL", c->what);
    CHECKF(strstr(err, c->expect) != NULL, "%s: message '%s' lacks '%s'", c->what, err,
           c->expect);
    CHECK_EQ_INT(rl_mem_in_use(), mem0);
    if (s == RL_OK) rl_gguf_free(g);
    free(p);
}

TEST(single_field_corruptions) {
    base_off o;
    bbuf b = build_base(&o);
    const rl_status B = RL_ERR_BAD_FILE;
    const corruption cases[] = {
        {"bad magic", 0, 1, 'X', "bad magic", B},
        {"version 1", o.version, 4, 1, "v1 is not supported", B},
        {"version 4", o.version, 4, 4, "version 4 at offset 4", B},
        {"version 0", o.version, 4, 0, "version 0", B},
        {"big-endian version", o.version, 4, 0x03000000u, "big-endian", B},
        {"huge n_kv", o.n_kv, 8, (uint64_t)1 << 40, "n_kv", B},
        {"n_kv = -1", o.n_kv, 8, UINT64_MAX, "n_kv", B},
        {"huge n_tensors", o.n_tensors, 8, (uint64_t)1 << 40, "n_tensors", B},
        {"n_kv too big by one", o.n_kv, 8, 5, "tensor 0: name length", B},
        {"key length past EOF", o.kv0_keylen, 8, (uint64_t)1 << 40, "key length", B},
        {"empty key", o.kv0_keylen, 8, 0, "empty key", B},
        {"NUL in key", o.kv0_key + 3, 1, 0, "NUL byte", B},
        {"string length past EOF", o.kv0_strlen, 8, 100000, "string length 100000 at offset", B},
        {"string length 2^63", o.kv0_strlen, 8, (uint64_t)1 << 63, "past end of file", B},
        {"unknown value type", o.kv0_type, 4, 13, "value type 13", B},
        {"array element type", o.arr_elem_type, 4, 99, "array element type 99", B},
        {"array length overflow", o.arr_n, 8, ((uint64_t)1 << 62) + 1, "array length", B},
        {"array length past EOF", o.arr_n, 8, 1000, "array length 1000", B},
        {"duplicate key", o.kv3_key + 7, 1, 'r', "duplicate key", B},
        {"alignment 0", o.align_val, 4, 0, "alignment 0 at offset", B},
        {"alignment 3", o.align_val, 4, 3, "not a power of two", B},
        {"alignment type int32", o.align_type, 4, RL_GGUF_TYPE_INT32, "must be uint32", B},
        {"alignment 64 (offset 96 misaligned)", o.align_val, 4, 64, "alignment 64", B},
        {"duplicate tensor", o.t1_name + 1, 1, '0', "duplicate tensor name", B},
        {"unknown type id", o.t0_type, 4, 99, "type id 99", B},
        {"retired type id 4", o.t0_type, 4, 4, "type id 4", B},
        {"n_dims 0", o.t0_n_dims, 4, 0, "n_dims 0", B},
        {"n_dims 5", o.t0_n_dims, 4, 5, "n_dims 5", B},
        {"negative dim", o.t0_ne1, 8, UINT64_MAX, "negative", B},
        {"ne[0] not a multiple of the block", o.t0_ne0, 8, 33, "not a multiple of the block size",
         B},
        {"element count overflow", o.t0_ne1, 8, (uint64_t)1 << 60, "element count", B},
        {"byte size overflow", o.t1_ne0, 8, (uint64_t)1 << 62, "byte size", B},
        {"misaligned offset", o.t1_offset, 8, 97, "not a multiple of the alignment", B},
        {"data past EOF", o.t1_offset, 8, 128, "extends past end of file", B},
        {"data offset 2^64-32", o.t1_offset, 8, UINT64_MAX - 31, "extends past end of file", B},
        {"overlapping tensors", o.t1_offset, 8, 64, "overlaps", B},
        {"ne[0] larger: data past EOF", o.t1_ne0, 8, 16, "t1", B},
    };
    for (size_t i = 0; i < RL_ARRAY_LEN(cases); i++) check_corruption(&b, &cases[i]);

    /* The messages name offsets: the version field is at 4, t1's data at its offset. */
    corruption past = {"data past EOF (message)", o.t1_offset, 8, 128, "", B};
    char want[128];
    snprintf(want, sizeof want, "data [offset 128 + %zu, 32 bytes] extends past end of file (size %zu)",
             o.data, b.n);
    past.expect = want;
    check_corruption(&b, &past);
    free(b.p);
}

/* Files that are well-formed but past a guard: RL_ERR_LIMIT. Large ones are sparse. */
static rl_status open_sparse(const bbuf *head, uint64_t total, char *err, size_t n) {
    const char *path = tmp_path("sparse.gguf");
    int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd < 0) return RL_ERR_IO;
    bool ok = write(fd, head->p, head->n) == (ssize_t)head->n && ftruncate(fd, (off_t)total) == 0;
    close(fd);
    rl_gguf *g = NULL;
    rl_status s = ok ? rl_gguf_open(path, &g, err, n) : RL_ERR_IO;
    rl_gguf_free(g);
    unlink(path);
    return s;
}

static void header(bbuf *b, uint64_t n_tensors, uint64_t n_kv) {
    put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, n_tensors);
    put_u64(b, n_kv);
}

TEST(limits) {
    char err[512];
    /* a string of 2^30 + 1 bytes */
    bbuf b = {0};
    header(&b, 0, 1);
    put_str(&b, "big");
    put_u32(&b, RL_GGUF_TYPE_STRING);
    put_u64(&b, ((uint64_t)1 << 30) + 1);
    rl_status s = open_sparse(&b, b.n + ((uint64_t)1 << 30) + 1, err, sizeof err);
    CHECKF(s == RL_ERR_LIMIT && strstr(err, "exceeds the limit") && strstr(err, "'big'"),
           "%s: %s", rl_status_str(s), err);
    free(b.p);

    /* an array of 2^30 + 1 bytes */
    b = (bbuf){0};
    header(&b, 0, 1);
    put_str(&b, "arr");
    put_u32(&b, RL_GGUF_TYPE_ARRAY);
    put_u32(&b, RL_GGUF_TYPE_UINT8);
    put_u64(&b, ((uint64_t)1 << 30) + 1);
    s = open_sparse(&b, b.n + ((uint64_t)1 << 30) + 1, err, sizeof err);
    CHECKF(s == RL_ERR_LIMIT && strstr(err, "array length"), "%s: %s", rl_status_str(s), err);
    free(b.p);

    /* arrays nested 16 deep are fine; 17 are refused */
    for (int depth = 16; depth <= 17; depth++) {
        b = (bbuf){0};
        header(&b, 0, 1);
        put_str(&b, "nest");
        put_u32(&b, RL_GGUF_TYPE_ARRAY);
        for (int d = 0; d < depth - 1; d++) {
            put_u32(&b, RL_GGUF_TYPE_ARRAY);
            put_u64(&b, 1);
        }
        put_u32(&b, RL_GGUF_TYPE_INT16);
        put_u64(&b, 1);
        put(&b, "\x01\x02", 2);
        rl_gguf *g = NULL;
        s = rl_gguf_open_memory(b.p, b.n, &g, err, sizeof err);
        if (depth == 16) {
            CHECKF(s == RL_OK, "%s", err);
            const rl_gguf_value *v = rl_gguf_kv_value(g, 0);
            for (int d = 0; v && d < 15; d++) v = (v->type == RL_GGUF_TYPE_ARRAY && v->n == 1) ? &v->v.vals[0] : NULL;
            CHECK(v && v->elem_type == RL_GGUF_TYPE_INT16 && ((const int16_t *)v->v.arr)[0] == 0x0201);
        } else {
            CHECKF(s == RL_ERR_LIMIT && strstr(err, "nests deeper"), "%s", err);
        }
        rl_gguf_free(g);
        free(b.p);
    }
}

/* Things the format allows and llama.cpp accepts: zero dims, no tensors, v2. */
TEST(edge_cases_accepted) {
    char err[512];
    rl_gguf *g = NULL;
    bbuf b = {0};
    header(&b, 1, 0);
    put_str(&b, "empty");
    put_u32(&b, 2);
    put_u64(&b, 32);
    put_u64(&b, 0);
    put_u32(&b, RL_TYPE_Q4_0);
    put_u64(&b, 0);
    put_zeros(&b, (32 - b.n % 32) % 32);
    rl_status s = rl_gguf_open_memory(b.p, b.n, &g, err, sizeof err);
    CHECKF(s == RL_OK, "zero-element tensor: %s", err);
    rl_gguf_tensor_info ti;
    CHECK(s != RL_OK || (rl_gguf_tensor(g, 0, &ti) == RL_OK && ti.nbytes == 0 && ti.ne[1] == 0));
    rl_gguf_free(g);
    free(b.p);

    b = (bbuf){0};
    header(&b, 0, 0);
    patch_u32(b.p, 4, 2); /* version 2 */
    g = NULL;
    s = rl_gguf_open_memory(b.p, b.n, &g, err, sizeof err);
    CHECKF(s == RL_OK && rl_gguf_version(g) == 2 && rl_gguf_data_offset(g) == 24, "v2: %s", err);
    rl_gguf_free(g);
    free(b.p);

    CHECK(rl_gguf_open_memory(NULL, 0, &g, err, sizeof err) == RL_ERR_BAD_FILE);
    CHECK(rl_gguf_open_memory(NULL, 5, &g, err, sizeof err) == RL_ERR_INVALID_ARG);
    CHECK(rl_gguf_open("/nonexistent/x.gguf", &g, err, sizeof err) == RL_ERR_IO && g == NULL);
    CHECK(strstr(err, "/nonexistent/x.gguf") != NULL);
    CHECK(rl_gguf_open("/", &g, err, sizeof err) == RL_ERR_IO);
    rl_gguf_free(NULL);
}

/* ---- real models ------------------------------------------------------------------------ */

/* Checks that hold for every valid file: indices agree with lookups, tensor data lies in
 * the file at aligned offsets, in order. */
static void check_consistent(const char *path, const rl_gguf *g) {
    for (int64_t i = 0; i < rl_gguf_n_kv(g); i++) {
        CHECKF(rl_gguf_find_key(g, rl_gguf_key(g, i)) == i, "%s: key %lld", path, (long long)i);
        CHECK(rl_gguf_kv_value(g, i) != NULL);
    }
    uint64_t prev_end = 0;
    for (int64_t i = 0; i < rl_gguf_n_tensors(g); i++) {
        rl_gguf_tensor_info ti;
        CHECK(rl_gguf_tensor(g, i, &ti) == RL_OK);
        CHECKF(rl_gguf_find_tensor(g, ti.name) == i, "%s: tensor %s", path, ti.name);
        CHECK(ti.offset % rl_gguf_alignment(g) == 0);
        CHECK(ti.offset >= prev_end);
        CHECK(rl_gguf_data_offset(g) + ti.offset + ti.nbytes <= rl_gguf_file_size(g));
        size_t rb = 0;
        CHECK(rl_type_row_bytes(ti.type, ti.ne[0], &rb) == RL_OK);
        CHECK(rb * (size_t)(ti.ne[1] * ti.ne[2] * ti.ne[3]) == ti.nbytes);
        prev_end = ti.offset + ti.nbytes;
    }
}

static int64_t key_u64(const rl_gguf *g, const char *key) {
    uint64_t v = 0;
    if (rl_gguf_get_u64(g, rl_gguf_find_key(g, key), &v) != RL_OK) return -1;
    return (int64_t)v;
}

TEST(stories260K) {
    const char *path = rl_test_data("models/stories260K.gguf");
    if (!file_exists(path)) SKIP("%s missing", path);
    rl_gguf *g = NULL;
    char err[512];
    rl_status s = rl_gguf_open(path, &g, err, sizeof err);
    CHECKF(s == RL_OK, "%s", err);
    if (s != RL_OK) return;
    check_consistent(path, g);
    CHECK_EQ_INT(rl_gguf_version(g), 3);
    CHECK_EQ_INT(rl_gguf_n_tensors(g), 48);
    CHECK_EQ_INT(rl_gguf_n_kv(g), 19);
    CHECK_EQ_INT(rl_gguf_data_offset(g), 14176);
    const char *str;
    CHECK(rl_gguf_get_str(g, rl_gguf_find_key(g, "general.architecture"), &str, NULL) == RL_OK);
    CHECK_STR(str, "llama");
    int64_t it = rl_gguf_find_key(g, "tokenizer.ggml.tokens");
    rl_gguf_type et;
    uint64_t n = 0;
    CHECK(rl_gguf_get_arr_info(g, it, &et, &n) == RL_OK && et == RL_GGUF_TYPE_STRING);
    CHECK_EQ_INT(n, 512);
    size_t len;
    CHECK(rl_gguf_get_arr_str(g, it, 1, &str, &len) == RL_OK);
    CHECK_STR(str, "<s>");
    const void *data;
    CHECK(rl_gguf_get_arr_data(g, rl_gguf_find_key(g, "tokenizer.ggml.scores"), &data) == RL_OK);
    CHECK_EQ_INT(key_u64(g, "llama.embedding_length"), 64);
    CHECK_EQ_INT(key_u64(g, "llama.block_count"), 5);
    CHECK_EQ_INT(key_u64(g, "llama.attention.head_count_kv"), 4);
    double eps;
    CHECK(rl_gguf_get_f64(g, rl_gguf_find_key(g, "llama.attention.layer_norm_rms_epsilon"),
                          &eps) == RL_OK);
    CHECK_NEAR(eps, 1e-5, 1e-12);
    rl_gguf_tensor_info ti;
    CHECK(rl_gguf_tensor(g, rl_gguf_find_tensor(g, "token_embd.weight"), &ti) == RL_OK);
    CHECK(ti.type == RL_TYPE_F32 && ti.n_dims == 2 && ti.ne[0] == 64 && ti.ne[1] == 512);
    CHECK(ti.nbytes == 64 * 512 * 4 && ti.offset == 0);
    CHECK(rl_gguf_tensor(g, rl_gguf_find_tensor(g, "blk.4.ffn_down.weight"), &ti) == RL_OK);
    CHECK(ti.ne[0] == 172 && ti.ne[1] == 64);

    /* typed getters: conversions and refusals */
    int64_t i64;
    uint64_t u64;
    bool bv;
    int64_t isep = rl_gguf_find_key(g, "tokenizer.ggml.seperator_token_id"); /* uint32 max */
    CHECK(rl_gguf_get_i64(g, isep, &i64) == RL_OK && i64 == 4294967295LL);
    CHECK(rl_gguf_get_u64(g, it, &u64) == RL_ERR_INVALID_ARG);
    CHECK(rl_gguf_get_bool(g, isep, &bv) == RL_ERR_INVALID_ARG);
    CHECK(rl_gguf_get_str(g, isep, &str, &len) == RL_ERR_INVALID_ARG);
    CHECK(rl_gguf_get_u64(g, 19, &u64) == RL_ERR_NOT_FOUND);
    CHECK(rl_gguf_get_u64(g, -1, &u64) == RL_ERR_NOT_FOUND);
    CHECK(rl_gguf_kv_type(g, 99) == RL_GGUF_TYPE_COUNT && rl_gguf_key(g, 99) == NULL);
    CHECK(rl_gguf_find_key(g, "nope") == -1);
    rl_gguf_free(g);
}

TEST(stories260K_quantized) {
    static const struct {
        const char *file;
        rl_type attn_q;
    } files[] = {
        {"stories260K-f16.gguf", RL_TYPE_F16},   {"stories260K-q4_0.gguf", RL_TYPE_Q4_0},
        {"stories260K-q4_1.gguf", RL_TYPE_Q4_1}, {"stories260K-q5_0.gguf", RL_TYPE_Q5_0},
        {"stories260K-q5_1.gguf", RL_TYPE_Q5_1}, {"stories260K-q8_0.gguf", RL_TYPE_Q8_0},
    };
    for (size_t i = 0; i < RL_ARRAY_LEN(files); i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "models/%s", files[i].file);
        const char *path = rl_test_data(rel);
        if (!file_exists(path)) SKIP("%s missing", path);
        rl_gguf *g = NULL;
        char err[512];
        rl_status s = rl_gguf_open(path, &g, err, sizeof err);
        CHECKF(s == RL_OK, "%s: %s", path, err);
        if (s != RL_OK) continue;
        check_consistent(path, g);
        CHECK_EQ_INT(rl_gguf_n_tensors(g), 48);
        rl_gguf_tensor_info ti;
        CHECK(rl_gguf_tensor(g, rl_gguf_find_tensor(g, "blk.0.attn_q.weight"), &ti) == RL_OK);
        CHECKF(ti.type == files[i].attn_q, "%s: type %s", files[i].file, rl_type_name(ti.type));
        CHECK(rl_gguf_tensor(g, rl_gguf_find_tensor(g, "output_norm.weight"), &ti) == RL_OK);
        CHECK(ti.type == RL_TYPE_F32);
        rl_gguf_free(g);
    }
}

/* Every .gguf of a folder opens (callback decides what else to check). */
static int for_each_gguf(const char *rel, void (*fn)(const char *path, const char *name, void *),
                         void *user) {
    const char *dir = rl_test_data(rel);
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 5, ".gguf") != 0) continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        fn(path, e->d_name, user);
        n++;
    }
    closedir(d);
    return n;
}

static void check_vocab(const char *path, const char *name, void *user) {
    (void)name;
    (void)user;
    rl_gguf *g = NULL;
    char err[512];
    rl_status s = rl_gguf_open(path, &g, err, sizeof err);
    CHECKF(s == RL_OK, "%s: %s", path, err);
    if (s != RL_OK) return;
    check_consistent(path, g);
    CHECK_EQ_INT(rl_gguf_n_tensors(g), 0);
    rl_gguf_type et;
    uint64_t n = 0, n2 = 0;
    CHECKF(rl_gguf_get_arr_info(g, rl_gguf_find_key(g, "tokenizer.ggml.tokens"), &et, &n) ==
                   RL_OK &&
               et == RL_GGUF_TYPE_STRING && n > 100,
           "%s: tokens", path);
    int64_t it = rl_gguf_find_key(g, "tokenizer.ggml.token_type");
    if (it >= 0) CHECK(rl_gguf_get_arr_info(g, it, &et, &n2) == RL_OK && n2 == n);
    const char *model;
    CHECK(rl_gguf_get_str(g, rl_gguf_find_key(g, "tokenizer.ggml.model"), &model, NULL) == RL_OK);
    rl_gguf_free(g);
}

TEST(vocab_files) {
    int n = for_each_gguf("models/vocab", check_vocab, NULL);
    if (n <= 0) SKIP("no models/vocab");
    CHECK(n >= 10);
    /* one known count: the Llama 2 SentencePiece vocabulary */
    rl_gguf *g = NULL;
    char err[512];
    if (rl_gguf_open(rl_test_data("models/vocab/ggml-vocab-llama-spm.gguf"), &g, err, sizeof err) ==
        RL_OK) {
        uint64_t nt = 0;
        CHECK(rl_gguf_get_arr_info(g, rl_gguf_find_key(g, "tokenizer.ggml.tokens"), NULL, &nt) ==
              RL_OK);
        CHECK_EQ_INT(nt, 32000);
        rl_gguf_free(g);
    }
}

/* The zoo: a file whose size matches models_manifest.json opens and has the manifest's
 * tensors and types; a file that differs from its manifest entry is malformed (the
 * shared copies have been seen 6 bytes short with a stale string length) and must be
 * refused cleanly. Files not in the manifest must open. */
typedef struct zoo_ctx {
    json_t *files;
    int opened, refused;
} zoo_ctx;

static void check_zoo(const char *path, const char *name, void *user) {
    zoo_ctx *z = user;
    json_t *ent = z->files ? json_object_get(z->files, name) : NULL;
    struct stat st;
    CHECK(stat(path, &st) == 0);
    bool matches = !ent || (json_integer_value(json_object_get(ent, "bytes")) == st.st_size);
    rl_gguf *g = NULL;
    char err[512];
    rl_status s = rl_gguf_open(path, &g, err, sizeof err);
    if (!matches) {
        CHECKF(s == RL_ERR_BAD_FILE && g == NULL, "%s: corrupt copy not refused", name);
        if (!z->refused)
            fprintf(stderr, "note: %s differs from its manifest entry (%lld vs %lld bytes): %s\n",
                    name, (long long)st.st_size,
                    (long long)json_integer_value(json_object_get(ent, "bytes")), err);
        z->refused++;
        return;
    }
    CHECKF(s == RL_OK, "%s: %s", name, err);
    if (s != RL_OK) return;
    z->opened++;
    check_consistent(path, g);
    const char *arch;
    CHECK(rl_gguf_get_str(g, rl_gguf_find_key(g, "general.architecture"), &arch, NULL) == RL_OK);
    if (ent) {
        CHECK_EQ_INT(rl_gguf_n_tensors(g), json_integer_value(json_object_get(ent, "n_tensors")));
        CHECK_STR(arch, json_string_value(json_object_get(ent, "arch")));
        json_t *types = json_object_get(ent, "tensor_type_by_name");
        const char *tname;
        json_t *tv;
        json_object_foreach(types, tname, tv) {
            rl_gguf_tensor_info ti;
            CHECKF(rl_gguf_tensor(g, rl_gguf_find_tensor(g, tname), &ti) == RL_OK, "%s: %s", name,
                   tname);
            CHECKF(!strcmp(rl_type_name(ti.type), json_string_value(tv)), "%s: %s is %s", name,
                   tname, rl_type_name(ti.type));
        }
    }
    rl_gguf_free(g);
}

TEST(zoo_files) {
    zoo_ctx z = {0};
    json_error_t je;
    json_t *man = json_load_file(rl_test_data("models/zoo/models_manifest.json"), 0, &je);
    z.files = man ? json_object_get(man, "files") : NULL;
    int n = for_each_gguf("models/zoo", check_zoo, &z);
    json_decref(man);
    if (n <= 0) SKIP("no models/zoo");
    CHECK_EQ_INT(z.opened + z.refused, n);
    if (z.refused)
        fprintf(stderr, "note: %d of %d zoo files differ from models_manifest.json and are "
                        "refused as malformed\n",
                z.refused, n);
}

/* ---- writer ------------------------------------------------------------------------------ */

/* Deep equality of two values. */
static bool value_eq(const rl_gguf_value *a, const rl_gguf_value *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case RL_GGUF_TYPE_STRING:
        return a->n == b->n && memcmp(a->v.str, b->v.str, (size_t)a->n) == 0 &&
               b->v.str[b->n] == 0;
    case RL_GGUF_TYPE_ARRAY:
        if (a->elem_type != b->elem_type || a->n != b->n) return false;
        if (a->elem_type == RL_GGUF_TYPE_STRING || a->elem_type == RL_GGUF_TYPE_ARRAY) {
            for (uint64_t j = 0; j < a->n; j++)
                if (!value_eq(&a->v.vals[j], &b->v.vals[j])) return false;
            return true;
        } else {
            size_t sz = a->elem_type == RL_GGUF_TYPE_BOOL ? 1 : 0;
            switch (a->elem_type) {
            case RL_GGUF_TYPE_UINT8: case RL_GGUF_TYPE_INT8: sz = 1; break;
            case RL_GGUF_TYPE_UINT16: case RL_GGUF_TYPE_INT16: sz = 2; break;
            case RL_GGUF_TYPE_UINT32: case RL_GGUF_TYPE_INT32: case RL_GGUF_TYPE_FLOAT32: sz = 4; break;
            case RL_GGUF_TYPE_UINT64: case RL_GGUF_TYPE_INT64: case RL_GGUF_TYPE_FLOAT64: sz = 8; break;
            default: break;
            }
            return a->n == 0 || memcmp(a->v.arr, b->v.arr, (size_t)a->n * sz) == 0;
        }
    case RL_GGUF_TYPE_BOOL: return a->v.b == b->v.b;
    case RL_GGUF_TYPE_UINT8: case RL_GGUF_TYPE_INT8: return a->v.u8 == b->v.u8;
    case RL_GGUF_TYPE_UINT16: case RL_GGUF_TYPE_INT16: return a->v.u16 == b->v.u16;
    case RL_GGUF_TYPE_UINT32: case RL_GGUF_TYPE_INT32: return a->v.u32 == b->v.u32;
    case RL_GGUF_TYPE_FLOAT32: return memcmp(&a->v.f32, &b->v.f32, 4) == 0;
    default: return a->v.u64 == b->v.u64;
    }
}

/* A producer of Q8_0 rows: row r, block b has scale 1.0 and quants (r + b + i) & 0x7f. */
typedef struct rows_ctx {
    int64_t calls, next_row, fail_at;
} rows_ctx;

static rl_status q8_rows(void *user, int64_t row0, int64_t n_rows, void *dst) {
    rows_ctx *c = user;
    c->calls++;
    if (row0 != c->next_row) return RL_ERR_INTERNAL;
    if (c->fail_at >= row0 && c->fail_at < row0 + n_rows) return RL_ERR_IO;
    unsigned char *p = dst;
    for (int64_t r = row0; r < row0 + n_rows; r++)
        for (int b = 0; b < 2; b++) {
            uint16_t one = 0x3c00;
            memcpy(p, &one, 2);
            for (int i = 0; i < 32; i++) p[2 + i] = (unsigned char)((r + b + i) & 0x7f);
            p += 34;
        }
    c->next_row = row0 + n_rows;
    return RL_OK;
}

/* The writer's full feature set in one file. Keys added: see the body. */
static rl_status build_writer(rl_gguf_writer *w, const float *f32, const uint16_t *f16,
                              const unsigned char *q4, rows_ctx *rc) {
    rl_status s = RL_OK;
#define TRY(x)                                                                               \
    do {                                                                                     \
        if ((s = (x)) != RL_OK) return s;                                                    \
    } while (0)
    TRY(rl_gguf_writer_set_str(w, "general.architecture", "llama"));
    TRY(rl_gguf_writer_set_u8(w, "t.u8", 200));
    TRY(rl_gguf_writer_set_i8(w, "t.i8", -100));
    TRY(rl_gguf_writer_set_u16(w, "t.u16", 60000));
    TRY(rl_gguf_writer_set_i16(w, "t.i16", -30000));
    TRY(rl_gguf_writer_set_u32(w, "t.u32", 4000000000u));
    TRY(rl_gguf_writer_set_i32(w, "t.i32", -2000000000));
    TRY(rl_gguf_writer_set_u64(w, "t.u64", UINT64_MAX));
    TRY(rl_gguf_writer_set_i64(w, "t.i64", INT64_MIN));
    TRY(rl_gguf_writer_set_f32(w, "t.f32", 0.1f));
    TRY(rl_gguf_writer_set_f64(w, "t.f64", -2.5e300));
    TRY(rl_gguf_writer_set_bool(w, "t.bool", true));
    TRY(rl_gguf_writer_set_str(w, "t.str", "héllo"));
    rl_gguf_value sv = {.type = RL_GGUF_TYPE_STRING, .n = 5, .v.str = "a\0b\0c"};
    TRY(rl_gguf_writer_set_value(w, "t.str_nul", &sv));
    TRY(rl_gguf_writer_set_str(w, "t.str_empty", ""));
    static const uint8_t au8[] = {1, 2, 255};
    static const int8_t ai8[] = {-1, 0, 1};
    static const uint16_t au16[] = {1, 65535};
    static const int16_t ai16[] = {-32768, 32767};
    static const uint32_t au32[] = {7, 8, 9};
    static const int32_t ai32[] = {-7};
    static const uint64_t au64[] = {UINT64_MAX, 0};
    static const int64_t ai64[] = {INT64_MIN, INT64_MAX};
    static const float af32[] = {1.5f, -0.0f};
    static const double af64[] = {3.25, 1e-300};
    static const uint8_t abool[] = {1, 0, 2}; /* 2 is written as true */
    TRY(rl_gguf_writer_set_arr(w, "a.u8", RL_GGUF_TYPE_UINT8, au8, 3));
    TRY(rl_gguf_writer_set_arr(w, "a.i8", RL_GGUF_TYPE_INT8, ai8, 3));
    TRY(rl_gguf_writer_set_arr(w, "a.u16", RL_GGUF_TYPE_UINT16, au16, 2));
    TRY(rl_gguf_writer_set_arr(w, "a.i16", RL_GGUF_TYPE_INT16, ai16, 2));
    TRY(rl_gguf_writer_set_arr(w, "a.u32", RL_GGUF_TYPE_UINT32, au32, 3));
    TRY(rl_gguf_writer_set_arr(w, "a.i32", RL_GGUF_TYPE_INT32, ai32, 1));
    TRY(rl_gguf_writer_set_arr(w, "a.u64", RL_GGUF_TYPE_UINT64, au64, 2));
    TRY(rl_gguf_writer_set_arr(w, "a.i64", RL_GGUF_TYPE_INT64, ai64, 2));
    TRY(rl_gguf_writer_set_arr(w, "a.f32", RL_GGUF_TYPE_FLOAT32, af32, 2));
    TRY(rl_gguf_writer_set_arr(w, "a.f64", RL_GGUF_TYPE_FLOAT64, af64, 2));
    TRY(rl_gguf_writer_set_arr(w, "a.bool", RL_GGUF_TYPE_BOOL, abool, 3));
    TRY(rl_gguf_writer_set_arr(w, "a.empty", RL_GGUF_TYPE_FLOAT32, NULL, 0));
    static const char *const strs[] = {"x", "", "zz"};
    TRY(rl_gguf_writer_set_arr_str(w, "a.str", strs, 3));
    /* nested: [[7, 8, 9], [], ["x", "", "zz"], [[-7]]] */
    rl_gguf_value inner_str[3], inner_inner = {.type = RL_GGUF_TYPE_ARRAY,
                                               .elem_type = RL_GGUF_TYPE_INT32, .n = 1,
                                               .v.arr = ai32};
    for (int j = 0; j < 3; j++)
        inner_str[j] = (rl_gguf_value){.type = RL_GGUF_TYPE_STRING, .n = strlen(strs[j]),
                                       .v.str = strs[j]};
    rl_gguf_value nested[4] = {
        {.type = RL_GGUF_TYPE_ARRAY, .elem_type = RL_GGUF_TYPE_UINT32, .n = 3, .v.arr = au32},
        {.type = RL_GGUF_TYPE_ARRAY, .elem_type = RL_GGUF_TYPE_BOOL, .n = 0},
        {.type = RL_GGUF_TYPE_ARRAY, .elem_type = RL_GGUF_TYPE_STRING, .n = 3, .v.vals = inner_str},
        {.type = RL_GGUF_TYPE_ARRAY, .elem_type = RL_GGUF_TYPE_ARRAY, .n = 1, .v.vals = &inner_inner},
    };
    rl_gguf_value top = {.type = RL_GGUF_TYPE_ARRAY, .elem_type = RL_GGUF_TYPE_ARRAY, .n = 4,
                         .v.vals = nested};
    TRY(rl_gguf_writer_set_value(w, "a.nested", &top));
    TRY(rl_gguf_writer_set_u32(w, "t.u32", 4000000001u)); /* replaced in place */
    TRY(rl_gguf_writer_set_alignment(w, 64));

    const int64_t ne_f32[] = {8, 3, 2, 1}, ne_f16[] = {16, 2, 1}, ne_q4[] = {64, 2},
                  ne_q8[] = {64, 5}, ne_zero[] = {32, 0};
    TRY(rl_gguf_writer_add_tensor(w, "f32.4d", RL_TYPE_F32, 4, ne_f32, f32));
    TRY(rl_gguf_writer_add_tensor(w, "f16.3d", RL_TYPE_F16, 3, ne_f16, f16));
    TRY(rl_gguf_writer_add_tensor(w, "q4_0", RL_TYPE_Q4_0, 2, ne_q4, q4));
    TRY(rl_gguf_writer_add_tensor_fn(w, "q8_0.streamed", RL_TYPE_Q8_0, 2, ne_q8, q8_rows, rc));
    TRY(rl_gguf_writer_add_tensor(w, "zero", RL_TYPE_Q4_0, 2, ne_zero, NULL));
#undef TRY
    return s;
}

TEST(writer_round_trip) {
    float f32[48];
    uint16_t f16[32];
    unsigned char q4[2 * 2 * 18];
    for (int i = 0; i < 48; i++) f32[i] = (float)i * 0.25f - 3;
    for (int i = 0; i < 32; i++) f16[i] = (uint16_t)(0x3c00 + i);
    for (size_t i = 0; i < sizeof q4; i++) q4[i] = (unsigned char)(i * 7);
    size_t mem0 = rl_mem_in_use();

    rl_gguf_writer *w = NULL;
    CHECK(rl_gguf_writer_create(&w) == RL_OK);
    rows_ctx rc = {.fail_at = -1};
    rl_status s = build_writer(w, f32, f16, q4, &rc);
    CHECKF(s == RL_OK, "%s", rl_gguf_writer_errmsg(w));
    const char *path = tmp_path("rt.gguf");
    s = rl_gguf_writer_write(w, path);
    CHECKF(s == RL_OK, "%s", rl_gguf_writer_errmsg(w));
    CHECK_EQ_INT(rc.calls, 1);
    rl_test_membuf mb = {0};
    rc = (rows_ctx){.fail_at = -1};
    CHECK(rl_gguf_writer_write_to(w, rl_test_mem_sink, &mb) == RL_OK); /* twice: same bytes */
    size_t flen = 0;
    unsigned char *fbytes = rl_test_read_file(path, &flen);
    CHECK(fbytes && flen == mb.n && memcmp(fbytes, mb.p, flen) == 0);
    free(fbytes);

    rl_gguf *g = NULL;
    char err[512];
    s = rl_gguf_open(path, &g, err, sizeof err);
    CHECKF(s == RL_OK, "%s", err);
    if (s == RL_OK) {
        check_consistent(path, g);
        CHECK_EQ_INT(rl_gguf_version(g), 3);
        CHECK_EQ_INT(rl_gguf_alignment(g), 64);
        CHECK_EQ_INT(rl_gguf_data_offset(g) % 64, 0);
        CHECK_EQ_INT(rl_gguf_n_kv(g), 30);
        /* order as added, the replaced key in its first place, alignment last */
        CHECK_STR(rl_gguf_key(g, 0), "general.architecture");
        CHECK_STR(rl_gguf_key(g, 5), "t.u32");
        CHECK_STR(rl_gguf_key(g, 29), "general.alignment");
        uint64_t u;
        int64_t i;
        double d;
        bool bv;
        const char *str;
        size_t len;
        CHECK(rl_gguf_get_u64(g, 5, &u) == RL_OK && u == 4000000001u);
        CHECK(rl_gguf_get_u64(g, rl_gguf_find_key(g, "t.u64"), &u) == RL_OK && u == UINT64_MAX);
        CHECK(rl_gguf_get_i64(g, rl_gguf_find_key(g, "t.u64"), &i) == RL_ERR_RANGE);
        CHECK(rl_gguf_get_i64(g, rl_gguf_find_key(g, "t.i64"), &i) == RL_OK && i == INT64_MIN);
        CHECK(rl_gguf_get_u64(g, rl_gguf_find_key(g, "t.i8"), &u) == RL_ERR_RANGE);
        CHECK(rl_gguf_get_i64(g, rl_gguf_find_key(g, "t.i8"), &i) == RL_OK && i == -100);
        CHECK(rl_gguf_get_i64(g, rl_gguf_find_key(g, "t.i16"), &i) == RL_OK && i == -30000);
        CHECK(rl_gguf_get_i64(g, rl_gguf_find_key(g, "t.i32"), &i) == RL_OK && i == -2000000000);
        CHECK(rl_gguf_get_u64(g, rl_gguf_find_key(g, "t.u8"), &u) == RL_OK && u == 200);
        CHECK(rl_gguf_get_u64(g, rl_gguf_find_key(g, "t.u16"), &u) == RL_OK && u == 60000);
        CHECK(rl_gguf_get_f64(g, rl_gguf_find_key(g, "t.f32"), &d) == RL_OK && d == (double)0.1f);
        CHECK(rl_gguf_get_f64(g, rl_gguf_find_key(g, "t.f64"), &d) == RL_OK && d == -2.5e300);
        CHECK(rl_gguf_get_f64(g, rl_gguf_find_key(g, "t.i8"), &d) == RL_OK && d == -100);
        CHECK(rl_gguf_get_u64(g, rl_gguf_find_key(g, "t.f32"), &u) == RL_ERR_INVALID_ARG);
        CHECK(rl_gguf_get_f64(g, rl_gguf_find_key(g, "t.bool"), &d) == RL_ERR_INVALID_ARG);
        CHECK(rl_gguf_get_bool(g, rl_gguf_find_key(g, "t.bool"), &bv) == RL_OK && bv);
        CHECK(rl_gguf_get_str(g, rl_gguf_find_key(g, "t.str"), &str, &len) == RL_OK);
        CHECK(!strcmp(str, "héllo") && len == 6);
        CHECK(rl_gguf_get_str(g, rl_gguf_find_key(g, "t.str_nul"), &str, &len) == RL_OK);
        CHECK(len == 5 && !memcmp(str, "a\0b\0c", 6));
        CHECK(rl_gguf_get_str(g, rl_gguf_find_key(g, "t.str_empty"), &str, &len) == RL_OK);
        CHECK(len == 0 && str[0] == 0);
        const void *data;
        CHECK(rl_gguf_get_arr_data(g, rl_gguf_find_key(g, "a.bool"), &data) == RL_OK);
        CHECK(!memcmp(data, "\1\0\1", 3));
        CHECK(rl_gguf_get_arr_data(g, rl_gguf_find_key(g, "a.i64"), &data) == RL_OK);
        CHECK(((const int64_t *)data)[0] == INT64_MIN && ((uintptr_t)data & 7) == 0);
        CHECK(rl_gguf_get_arr_data(g, rl_gguf_find_key(g, "a.f64"), &data) == RL_OK);
        CHECK(((const double *)data)[1] == 1e-300);
        rl_gguf_type et;
        uint64_t n;
        CHECK(rl_gguf_get_arr_info(g, rl_gguf_find_key(g, "a.empty"), &et, &n) == RL_OK);
        CHECK(et == RL_GGUF_TYPE_FLOAT32 && n == 0);
        CHECK(rl_gguf_get_arr_str(g, rl_gguf_find_key(g, "a.str"), 2, &str, &len) == RL_OK);
        CHECK(!strcmp(str, "zz"));
        CHECK(rl_gguf_get_arr_data(g, rl_gguf_find_key(g, "a.nested"), &data) ==
              RL_ERR_INVALID_ARG);

        /* every value equals what a fresh build of the writer holds: compare through a
         * second writer fed by copy_kv, whose bytes must equal the first file's */
        rl_gguf_writer *w2 = NULL;
        CHECK(rl_gguf_writer_create(&w2) == RL_OK);
        for (int64_t k = 0; k < rl_gguf_n_kv(g); k++) CHECK(rl_gguf_writer_copy_kv(w2, g, k) == RL_OK);
        for (int64_t t = 0; t < rl_gguf_n_tensors(g); t++) {
            rl_gguf_tensor_info ti;
            CHECK(rl_gguf_tensor(g, t, &ti) == RL_OK);
            CHECK(rl_gguf_writer_add_tensor(w2, ti.name, ti.type, ti.n_dims, ti.ne, ti.data) == RL_OK);
        }
        rl_test_membuf mb2 = {0};
        CHECK(rl_gguf_writer_write_to(w2, rl_test_mem_sink, &mb2) == RL_OK);
        CHECK(mb2.n == mb.n && memcmp(mb2.p, mb.p, mb.n) == 0);
        free(mb2.p);
        rl_gguf_writer_free(w2);

        /* nested array, element by element */
        const rl_gguf_value *nv = rl_gguf_kv_value(g, rl_gguf_find_key(g, "a.nested"));
        CHECK(nv && nv->type == RL_GGUF_TYPE_ARRAY && nv->elem_type == RL_GGUF_TYPE_ARRAY && nv->n == 4);
        if (nv && nv->n == 4) {
            static const uint32_t au32[] = {7, 8, 9};
            static const char *const strs[] = {"x", "", "zz"};
            CHECK(nv->v.vals[0].elem_type == RL_GGUF_TYPE_UINT32 && nv->v.vals[0].n == 3);
            CHECK(!memcmp(nv->v.vals[0].v.arr, au32, 12));
            CHECK(nv->v.vals[1].elem_type == RL_GGUF_TYPE_BOOL && nv->v.vals[1].n == 0);
            CHECK(nv->v.vals[2].elem_type == RL_GGUF_TYPE_STRING && nv->v.vals[2].n == 3);
            for (int j = 0; j < 3; j++) CHECK(!strcmp(nv->v.vals[2].v.vals[j].v.str, strs[j]));
            const rl_gguf_value *in = &nv->v.vals[3];
            CHECK(in->elem_type == RL_GGUF_TYPE_ARRAY && in->n == 1);
            CHECK(in->v.vals[0].elem_type == RL_GGUF_TYPE_INT32 &&
                  ((const int32_t *)in->v.vals[0].v.arr)[0] == -7);
            /* value_eq over a reparsed copy of itself */
            CHECK(value_eq(nv, nv));
        }

        /* tensors: shapes, offsets aligned to 64, data */
        CHECK_EQ_INT(rl_gguf_n_tensors(g), 5);
        rl_gguf_tensor_info ti;
        CHECK(rl_gguf_tensor(g, rl_gguf_find_tensor(g, "f32.4d"), &ti) == RL_OK);
        CHECK(ti.n_dims == 4 && ti.ne[0] == 8 && ti.ne[1] == 3 && ti.ne[2] == 2 && ti.ne[3] == 1);
        CHECK(ti.nbytes == sizeof f32 && !memcmp(ti.data, f32, sizeof f32));
        CHECK(rl_gguf_tensor(g, rl_gguf_find_tensor(g, "f16.3d"), &ti) == RL_OK);
        CHECK(ti.n_dims == 3 && ti.offset == 192 && !memcmp(ti.data, f16, sizeof f16));
        CHECK(rl_gguf_tensor(g, rl_gguf_find_tensor(g, "q4_0"), &ti) == RL_OK);
        CHECK(ti.type == RL_TYPE_Q4_0 && ti.offset == 256 && !memcmp(ti.data, q4, sizeof q4));
        CHECK(rl_gguf_tensor(g, rl_gguf_find_tensor(g, "q8_0.streamed"), &ti) == RL_OK);
        CHECK(ti.type == RL_TYPE_Q8_0 && ti.nbytes == 5 * 68 && ti.offset == 384);
        unsigned char want[5 * 68];
        rows_ctx rc2 = {.fail_at = -1};
        q8_rows(&rc2, 0, 5, want);
        CHECK(!memcmp(ti.data, want, sizeof want));
        CHECK(rl_gguf_tensor(g, rl_gguf_find_tensor(g, "zero"), &ti) == RL_OK);
        CHECK(ti.nbytes == 0 && ti.ne[1] == 0 && ti.offset == 768);
        CHECK_EQ_INT(rl_gguf_file_size(g), rl_gguf_data_offset(g) + 768);
        rl_gguf_free(g);
    }
    unlink(path);
    free(mb.p);
    rl_gguf_writer_free(w);
    CHECK_EQ_INT(rl_mem_in_use(), mem0);
}

/* Copying a real model through the writer gives the same bytes llama.cpp wrote. */
TEST(writer_reproduces_llama_cpp_files) {
    const char *files[] = {"models/stories260K.gguf", "models/stories260K-q4_0.gguf",
                           "models/llama-2-tiny-random.gguf", "golden/quant_zoo.gguf"};
    int done = 0;
    for (size_t f = 0; f < RL_ARRAY_LEN(files); f++) {
        const char *path = rl_test_data(files[f]);
        size_t n = 0;
        unsigned char *orig = rl_test_read_file(path, &n);
        if (!orig) continue;
        rl_gguf *g = NULL;
        char err[512];
        CHECKF(rl_gguf_open_memory(orig, n, &g, err, sizeof err) == RL_OK, "%s", err);
        rl_gguf_writer *w = NULL;
        CHECK(rl_gguf_writer_create(&w) == RL_OK);
        for (int64_t k = 0; g && k < rl_gguf_n_kv(g); k++) CHECK(rl_gguf_writer_copy_kv(w, g, k) == RL_OK);
        for (int64_t t = 0; g && t < rl_gguf_n_tensors(g); t++) {
            rl_gguf_tensor_info ti;
            rl_gguf_tensor(g, t, &ti);
            CHECK(rl_gguf_writer_add_tensor(w, ti.name, ti.type, ti.n_dims, ti.ne, ti.data) == RL_OK);
        }
        rl_test_membuf mb = {0};
        CHECK(rl_gguf_writer_write_to(w, rl_test_mem_sink, &mb) == RL_OK);
        CHECKF(mb.n == n && memcmp(mb.p, orig, n) == 0, "%s: %zu vs %zu bytes", files[f], mb.n, n);
        free(mb.p);
        rl_gguf_writer_free(w);
        rl_gguf_free(g);
        free(orig);
        done++;
    }
    if (!done) SKIP("no model files");
}

TEST(writer_errors) {
    rl_gguf_writer *w = NULL;
    CHECK(rl_gguf_writer_create(&w) == RL_OK);
    const int64_t ne[] = {32, 2};
    float data[64] = {0};
    char name64[65];
    memset(name64, 'n', 64);
    name64[64] = 0;
    struct {
        rl_status s;
        const char *expect;
    } r[16];
    int k = 0;
#define EXPECT(call, text)                                                                    \
    do {                                                                                      \
        r[k].s = (call);                                                                      \
        CHECKF(r[k].s == RL_ERR_INVALID_ARG && strstr(rl_gguf_writer_errmsg(w), text),        \
               "%s -> %s '%s'", #call, rl_status_str(r[k].s), rl_gguf_writer_errmsg(w));      \
        k++;                                                                                  \
    } while (0)
    EXPECT(rl_gguf_writer_set_u32(w, "", 1), "empty");
    EXPECT(rl_gguf_writer_set_str(w, "general.alignment", "32"), "must be a uint32");
    EXPECT(rl_gguf_writer_set_u32(w, "general.alignment", 48), "power of two");
    EXPECT(rl_gguf_writer_set_alignment(w, 0), "power of two");
    EXPECT(rl_gguf_writer_set_arr(w, "k", RL_GGUF_TYPE_STRING, data, 1), "numbers or bools");
    EXPECT(rl_gguf_writer_add_tensor(w, name64, RL_TYPE_F32, 2, ne, data), "longer than 63");
    EXPECT(rl_gguf_writer_add_tensor(w, "t", RL_TYPE_F32, 0, ne, data), "n_dims 0");
    EXPECT(rl_gguf_writer_add_tensor(w, "t", RL_TYPE_F32, 5, ne, data), "n_dims 5");
    EXPECT(rl_gguf_writer_add_tensor(w, "t", (rl_type)4, 2, ne, data), "invalid type");
    const int64_t ne33[] = {33, 1}, neneg[] = {32, -1};
    EXPECT(rl_gguf_writer_add_tensor(w, "t", RL_TYPE_Q8_0, 2, ne33, data), "block size");
    EXPECT(rl_gguf_writer_add_tensor(w, "t", RL_TYPE_F32, 2, neneg, data), "negative");
    EXPECT(rl_gguf_writer_add_tensor(w, "t", RL_TYPE_F32, 2, ne, NULL), "NULL data");
    CHECK(rl_gguf_writer_add_tensor(w, "t", RL_TYPE_F32, 2, ne, data) == RL_OK);
    EXPECT(rl_gguf_writer_add_tensor(w, "t", RL_TYPE_F32, 2, ne, data), "duplicate");
    /* 17 levels of nesting are refused */
    rl_gguf_value lv[17];
    lv[16] = (rl_gguf_value){.type = RL_GGUF_TYPE_ARRAY, .elem_type = RL_GGUF_TYPE_UINT8, .n = 0};
    for (int d = 15; d >= 0; d--)
        lv[d] = (rl_gguf_value){.type = RL_GGUF_TYPE_ARRAY, .elem_type = RL_GGUF_TYPE_ARRAY,
                                .n = 1, .v.vals = &lv[d + 1]};
    EXPECT(rl_gguf_writer_set_value(w, "deep", &lv[0]), "nested deeper");
    CHECK(rl_gguf_writer_set_value(w, "deep16", &lv[1]) == RL_OK);
    rl_gguf_value mixed[2] = {{.type = RL_GGUF_TYPE_STRING, .n = 1, .v.str = "a"},
                              {.type = RL_GGUF_TYPE_UINT8}};
    rl_gguf_value arr = {.type = RL_GGUF_TYPE_ARRAY, .elem_type = RL_GGUF_TYPE_STRING, .n = 2,
                         .v.vals = mixed};
    EXPECT(rl_gguf_writer_set_value(w, "mixed", &arr), "element 1 has type uint8");
#undef EXPECT
    rl_gguf_writer_free(w);

    /* A failing producer: the status comes back, the target is untouched, no temporary
     * is left beside it. */
    CHECK(rl_gguf_writer_create(&w) == RL_OK);
    const int64_t neq[] = {64, 1000};
    rows_ctx rc = {.fail_at = 700};
    CHECK(rl_gguf_writer_add_tensor_fn(w, "q", RL_TYPE_Q8_0, 2, neq, q8_rows, &rc) == RL_OK);
    const char *path = tmp_path("fail.gguf");
    unlink(path);
    rl_status s = rl_gguf_writer_write(w, path);
    CHECKF(s == RL_ERR_IO && strstr(rl_gguf_writer_errmsg(w), "producer failed"), "%s",
           rl_gguf_writer_errmsg(w));
    CHECK(!file_exists(path));
    CHECK_EQ_INT(count_prefix(path), 0);
    s = rl_gguf_writer_write(w, "/nonexistent-dir/x.gguf");
    CHECKF(s == RL_ERR_IO && strstr(rl_gguf_writer_errmsg(w), "nonexistent-dir"), "%s",
           rl_gguf_writer_errmsg(w));
    rl_gguf_writer_free(w);
    rl_gguf_writer_free(NULL);
}

/* ---- fault injection ------------------------------------------------------------------- */

/* Fail the k-th allocation for k = 1, 2, ... until open succeeds: each failure is
 * RL_ERR_NOMEM with no leak. */
TEST(open_fault_injection) {
    const char *path = rl_test_data("models/llama-2-tiny-random.gguf");
    if (!file_exists(path)) SKIP("%s missing", path);
    size_t mem0 = rl_mem_in_use();
    int failures = 0;
    for (long k = 1; k < 10000; k++) {
        rl_gguf *g = NULL;
        char err[512] = "";
        rl__alloc_fail_after(k);
        rl_status s = rl_gguf_open(path, &g, err, sizeof err);
        rl__alloc_fail_after(0);
        if (s == RL_OK) {
            rl_gguf_free(g);
            break;
        }
        failures++;
        CHECKF(s == RL_ERR_NOMEM && g == NULL, "k=%ld: %s '%s'", k, rl_status_str(s), err);
        CHECKF(rl_mem_in_use() == mem0, "k=%ld: %zu bytes leaked", k, rl_mem_in_use() - mem0);
    }
    CHECK(failures >= 5); /* handle, tables, arena chunks, indices */
    CHECK_EQ_INT(rl_mem_in_use(), mem0);
}

TEST(writer_fault_injection) {
    float f32[48] = {0};
    uint16_t f16[32] = {0};
    unsigned char q4[72] = {0};
    size_t mem0 = rl_mem_in_use();
    int failures = 0;
    for (long k = 1; k < 10000; k++) {
        rl_gguf_writer *w = NULL;
        rl_test_membuf mb = {0};
        rows_ctx rc = {.fail_at = -1};
        rl__alloc_fail_after(k);
        rl_status s = rl_gguf_writer_create(&w);
        if (s == RL_OK) s = build_writer(w, f32, f16, q4, &rc);
        if (s == RL_OK) s = rl_gguf_writer_write_to(w, rl_test_mem_sink, &mb);
        rl__alloc_fail_after(0);
        rl_gguf_writer_free(w);
        free(mb.p);
        CHECKF(rl_mem_in_use() == mem0, "k=%ld: %zu bytes leaked", k, rl_mem_in_use() - mem0);
        if (s == RL_OK) break;
        failures++;
        CHECKF(s == RL_ERR_NOMEM, "k=%ld: %s", k, rl_status_str(s));
    }
    CHECK(failures >= 10);
}

int main(void) {
    RUN(base_file_opens);
    RUN(truncated_at_every_byte);
    RUN(single_field_corruptions);
    RUN(limits);
    RUN(edge_cases_accepted);
    RUN(stories260K);
    RUN(stories260K_quantized);
    RUN(vocab_files);
    RUN(zoo_files);
    RUN(writer_round_trip);
    RUN(writer_reproduces_llama_cpp_files);
    RUN(writer_errors);
    RUN(open_fault_injection);
    RUN(writer_fault_injection);
    return rl_test_finish();
}
