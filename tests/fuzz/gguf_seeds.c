/*
 * gguf_seeds.c - writes small GGUF files into the folder given as argv[1], as extra seeds
 * for fuzz_gguf: the test data's models are large (their tensor data dwarfs the header
 * that the reader parses), these are a few KB and reach every value type, nested
 * arrays, every tensor type, other alignments, zero-sized tensors and version 2.
 */
#include "ruvllm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct membuf {
    unsigned char *p;
    size_t n, cap;
} membuf;

static rl_status mem_sink(void *user, const void *buf, size_t n) {
    membuf *m = user;
    if (m->n + n > m->cap) {
        m->cap = (m->n + n) * 2;
        m->p = realloc(m->p, m->cap);
        if (!m->p) return RL_ERR_NOMEM;
    }
    memcpy(m->p + m->n, buf, n);
    m->n += n;
    return RL_OK;
}

static int save(rl_gguf_writer *w, const char *dir, const char *name, uint32_t version) {
    membuf mb = {0};
    if (rl_gguf_writer_write_to(w, mem_sink, &mb) != RL_OK) {
        fprintf(stderr, "gguf_seeds: %s: %s\n", name, rl_gguf_writer_errmsg(w));
        return 1;
    }
    memcpy(mb.p + 4, &version, 4);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    int bad = !f || fwrite(mb.p, 1, mb.n, f) != mb.n;
    if (f) bad |= fclose(f) != 0;
    if (bad) fprintf(stderr, "gguf_seeds: cannot write %s\n", path);
    free(mb.p);
    rl_gguf_writer_free(w);
    return bad;
}

#define TRY(x)                                                                               \
    do {                                                                                     \
        if ((x) != RL_OK) {                                                                  \
            fprintf(stderr, "gguf_seeds: %s: %s\n", #x, rl_gguf_writer_errmsg(w));            \
            return 1;                                                                        \
        }                                                                                    \
    } while (0)

/* Every metadata type, nested arrays, three tensors. */
static int seed_values(const char *dir, uint32_t version, size_t alignment, const char *name) {
    rl_gguf_writer *w;
    if (rl_gguf_writer_create(&w) != RL_OK) return 1;
    TRY(rl_gguf_writer_set_str(w, "general.architecture", "llama"));
    TRY(rl_gguf_writer_set_u8(w, "u8", 1));
    TRY(rl_gguf_writer_set_i8(w, "i8", -1));
    TRY(rl_gguf_writer_set_u16(w, "u16", 2));
    TRY(rl_gguf_writer_set_i16(w, "i16", -2));
    TRY(rl_gguf_writer_set_u32(w, "u32", 3));
    TRY(rl_gguf_writer_set_i32(w, "i32", -3));
    TRY(rl_gguf_writer_set_u64(w, "u64", 4));
    TRY(rl_gguf_writer_set_i64(w, "i64", -4));
    TRY(rl_gguf_writer_set_f32(w, "f32", 0.5f));
    TRY(rl_gguf_writer_set_f64(w, "f64", 0.25));
    TRY(rl_gguf_writer_set_bool(w, "bool", true));
    static const int32_t ai[] = {1, -2, 3};
    static const double ad[] = {1.5, -2.5};
    static const char *const strs[] = {"<s>", "</s>", "a"};
    TRY(rl_gguf_writer_set_arr(w, "arr.i32", RL_GGUF_TYPE_INT32, ai, 3));
    TRY(rl_gguf_writer_set_arr(w, "arr.f64", RL_GGUF_TYPE_FLOAT64, ad, 2));
    TRY(rl_gguf_writer_set_arr_str(w, "arr.str", strs, 3));
    rl_gguf_value s0 = {.type = RL_GGUF_TYPE_STRING, .n = 1, .v.str = "x"};
    rl_gguf_value in[3] = {
        {.type = RL_GGUF_TYPE_ARRAY, .elem_type = RL_GGUF_TYPE_INT32, .n = 3, .v.arr = ai},
        {.type = RL_GGUF_TYPE_ARRAY, .elem_type = RL_GGUF_TYPE_STRING, .n = 1, .v.vals = &s0},
        {.type = RL_GGUF_TYPE_ARRAY, .elem_type = RL_GGUF_TYPE_UINT8, .n = 0},
    };
    rl_gguf_value top = {.type = RL_GGUF_TYPE_ARRAY, .elem_type = RL_GGUF_TYPE_ARRAY, .n = 3,
                         .v.vals = in};
    TRY(rl_gguf_writer_set_value(w, "arr.nested", &top));
    TRY(rl_gguf_writer_set_alignment(w, alignment));
    static float f[64];
    static unsigned char q[2 * 34];
    const int64_t ne1[] = {8}, ne2[] = {32, 2}, ne4[] = {4, 2, 1, 2};
    TRY(rl_gguf_writer_add_tensor(w, "a", RL_TYPE_F32, 1, ne1, f));
    TRY(rl_gguf_writer_add_tensor(w, "b", RL_TYPE_Q8_0, 2, ne2, q));
    TRY(rl_gguf_writer_add_tensor(w, "c", RL_TYPE_F16, 4, ne4, f));
    return save(w, dir, name, version);
}

/* One block of every tensor type, and a zero-sized tensor. */
static int seed_types(const char *dir) {
    rl_gguf_writer *w;
    if (rl_gguf_writer_create(&w) != RL_OK) return 1;
    static unsigned char data[1024];
    for (int t = 0; t < RL_TYPE_COUNT; t++) {
        if (!rl_type_valid(t)) continue;
        int64_t ne[1] = {rl_type_block_size((rl_type)t)};
        char name[32];
        snprintf(name, sizeof name, "t.%s", rl_type_name((rl_type)t));
        TRY(rl_gguf_writer_add_tensor(w, name, (rl_type)t, 1, ne, data));
    }
    const int64_t zero[] = {256, 0};
    TRY(rl_gguf_writer_add_tensor(w, "zero", RL_TYPE_Q4_K, 2, zero, NULL));
    return save(w, dir, "seed-types.gguf", 3);
}

static int seed_empty(const char *dir) {
    rl_gguf_writer *w;
    if (rl_gguf_writer_create(&w) != RL_OK) return 1;
    return save(w, dir, "seed-empty.gguf", 3);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gguf_seeds DIR\n");
        return 2;
    }
    int bad = seed_values(argv[1], 3, 32, "seed-values-v3.gguf");
    bad |= seed_values(argv[1], 2, 64, "seed-values-v2-align64.gguf");
    bad |= seed_values(argv[1], 3, 8, "seed-values-align8.gguf");
    bad |= seed_types(argv[1]);
    bad |= seed_empty(argv[1]);
    return bad;
}
