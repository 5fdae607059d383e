/*
 * test_quantize_file.c - rl_quantize_file and rl_synth_model end to end:
 *  - every zoo model F32 -> Q4_K_M and Q8_0 gives the per-tensor types of
 *    models_manifest.json, the same tensor bytes as llama.cpp's quantized zoo files, and
 *    in fact the whole file byte for byte (same order, metadata and padding);
 *  - importance matrices in the GGUF and legacy formats (the same weights give the same
 *    bytes; expert tensors use their expert's slice), and the refusals: a type that needs
 *    one without it, wrong sizes, non-finite values, malformed files;
 *  - refusing to overwrite the input (same path, symlink, hard link), bad type names,
 *    requantizing, NaN weights, row-length fallbacks, COPY, progress events, thread-count
 *    independence, allocation failures;
 *  - synthetic models: deterministic for a seed, a loadable vocabulary (built in or
 *    copied), the shape's tensors.
 */
#include "test.h"
#include "util/util.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[512];

static const char *tmp(const char *name) {
    static char bufs[8][1024];
    static int slot;
    char *b = bufs[slot++ & 7];
    snprintf(b, 1024, "%s/%s", g_dir, name);
    return b;
}

static bool write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static bool same_file_bytes(const char *a, const char *b) {
    size_t na, nb;
    unsigned char *pa = rl_test_read_file(a, &na), *pb = rl_test_read_file(b, &nb);
    bool same = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return same;
}

/* ---- the zoo ------------------------------------------------------------------------------ */

static json_t *g_manifest; /* models_manifest.json "files" */

/* A zoo file as llama.cpp wrote it. The copies in ../shared were edited after they were
 * made: "generator /work/scratch/zoo/..." in general.description lost "/work/" but kept
 * its length field, so no GGUF reader can open them (test_gguf.c says the same). Putting
 * the 6 bytes back restores the original file: its size is the manifest's again (and its
 * sha256 too, checked when this test was written). Returns a temporary path (valid for
 * the next 3 calls), or NULL. */
static const char *zoo_file(const char *name) {
    json_t *ent = json_object_get(g_manifest, name);
    if (!ent) return NULL;
    size_t want = (size_t)json_integer_value(json_object_get(ent, "bytes"));
    char rel[256];
    snprintf(rel, sizeof rel, "models/zoo/%s", name);
    size_t n;
    unsigned char *p = rl_test_read_file(rl_test_data(rel), &n);
    if (!p) return NULL;
    static const char cut[] = "generator scratch/zoo/";
    if (n + 6 == want) {
        unsigned char *at = memmem(p, n, cut, sizeof cut - 1);
        unsigned char *q = at ? malloc(want) : NULL;
        if (q) {
            size_t off = (size_t)(at - p) + 10; /* after "generator " */
            memcpy(q, p, off);
            memcpy(q + off, "/work/", 6);
            memcpy(q + off + 6, p + off, n - off);
            free(p);
            p = q;
            n = want;
        }
    }
    static char paths[4][1024]; /* not tmp()'s slots: callers keep these a while */
    static int slot;
    char *out = paths[slot++ & 3];
    snprintf(out, 1024, "%s", tmp(name));
    bool ok = n == want && write_file(out, p, n);
    free(p);
    return ok ? out : NULL;
}

static int64_t kv_int(const rl_gguf *g, const char *key) {
    int64_t v = -1;
    if (rl_gguf_get_i64(g, rl_gguf_find_key(g, key), &v) != RL_OK) return -1;
    return v;
}

static const char *kv_str(const rl_gguf *g, const char *key) {
    const char *s = NULL;
    if (rl_gguf_get_str(g, rl_gguf_find_key(g, key), &s, NULL) != RL_OK) return NULL;
    return s;
}

static rl_status quantize(const char *in, const char *out, const char *type, char *err) {
    rl_quantize_params p = rl_quantize_default_params();
    p.type = type;
    p.n_threads = 2;
    return rl_quantize_file(in, out, &p, err, 512);
}

/* Tensor types against the manifest, tensor data against llama.cpp's file. */
static void check_against_zoo(const char *what, const char *ours, const char *zoo_name) {
    json_t *ent = json_object_get(g_manifest, zoo_name);
    json_t *types = json_object_get(ent, "tensor_type_by_name");
    const char *ref = zoo_file(zoo_name);
    CHECKF(ref, "%s: cannot read %s", what, zoo_name);
    rl_gguf *a = NULL, *b = NULL;
    char err[256];
    CHECKF(rl_gguf_open(ours, &a, err, sizeof err) == RL_OK, "%s: %s", what, err);
    if (ref) CHECKF(rl_gguf_open(ref, &b, err, sizeof err) == RL_OK, "%s: %s", what, err);
    if (!a || !b) goto done;
    CHECK_EQ_INT(rl_gguf_n_tensors(a), json_integer_value(json_object_get(ent, "n_tensors")));
    CHECK_EQ_INT(kv_int(a, "general.file_type"),
                 json_integer_value(json_object_get(ent, "file_type")));
    CHECK_EQ_INT(kv_int(a, "general.quantization_version"), 2);
    int n_listed = 0;
    for (int64_t i = 0; i < rl_gguf_n_tensors(a); i++) {
        rl_gguf_tensor_info ta, tb;
        rl_gguf_tensor(a, i, &ta);
        json_t *tv = json_object_get(types, ta.name);
        const char *want = tv ? json_string_value(tv) : "F32"; /* unlisted: kept F32 */
        n_listed += tv != NULL;
        CHECKF(!strcmp(rl_type_name(ta.type), want), "%s: %s is %s, manifest says %s", what,
               ta.name, rl_type_name(ta.type), want);
        int64_t j = rl_gguf_find_tensor(b, ta.name);
        CHECKF(j == i, "%s: %s at %lld, llama.cpp has it at %lld", what, ta.name, (long long)i,
               (long long)j);
        if (j < 0) continue;
        rl_gguf_tensor(b, j, &tb);
        CHECKF(ta.type == tb.type && ta.nbytes == tb.nbytes &&
                   memcmp(ta.data, tb.data, ta.nbytes) == 0,
               "%s: %s: data differs from llama.cpp's", what, ta.name);
    }
    CHECK_EQ_INT(n_listed, json_object_size(types));
    CHECKF(same_file_bytes(ours, ref), "%s: file differs from llama.cpp's %s", what, zoo_name);
done:
    rl_gguf_free(a);
    rl_gguf_free(b);
}

static const char *const g_archs[] = {"llama3", "mistral", "qwen2", "qwen3",   "gemma",
                                      "gemma2", "phi3",    "mixtral", "qwen2moe"};

TEST(zoo_q4_k_m_and_q8_0) {
    if (!g_manifest) SKIP("models/zoo/models_manifest.json not found");
    int n_done = 0;
#ifdef RL_UNDER_SANITIZER
    /* memory safety under the sanitizers: a dense, a fused-QKV and an MoE model are enough
     * (and keep the run short); the plain build checks all nine */
    const size_t archs[] = {0, 6, 7};
#else
    const size_t archs[] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
#endif
    for (size_t ai = 0; ai < RL_ARRAY_LEN(archs); ai++) {
        size_t a = archs[ai];
        char name[64];
        snprintf(name, sizeof name, "%s-F32.gguf", g_archs[a]);
        const char *in = zoo_file(name);
        CHECKF(in, "%s: unreadable", name);
        if (!in) continue;
        static const char *const mixes[] = {"Q4_K_M", "Q8_0"};
        for (size_t m = 0; m < 2; m++) {
            char out[64], zname[64], err[512];
            snprintf(out, sizeof out, "%s-%s.out.gguf", g_archs[a], mixes[m]);
            snprintf(zname, sizeof zname, "%s-%s.gguf", g_archs[a], mixes[m]);
            rl_status s = quantize(in, tmp(out), mixes[m], err);
            CHECKF(s == RL_OK, "%s %s: %s", name, mixes[m], err);
            if (s == RL_OK) check_against_zoo(zname, tmp(out), zname);
            unlink(tmp(out));
            unlink(tmp(zname));
            n_done++;
        }
        unlink(in);
    }
    CHECK_EQ_INT(n_done, 2 * (int)RL_ARRAY_LEN(archs));
}

/* ---- importance matrices ------------------------------------------------------------------ */

/* A weight for column i of tensor name: positive, varied, exact in float after * 4 and / 4. */
static float imx_val(const char *name, unsigned i) {
    unsigned h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 16777619u;
    h ^= i * 2654435761u;
    h ^= h >> 13;
    h *= 0x5bd1e995u;
    h ^= h >> 15;
    return 0.25f + (float)(h % 1024u) / 1024.0f;
}

/* The same importance matrix for every 2-D or 3-D tensor of model, in both formats: GGUF
 * (sums = w * 4 over counts of 4 per expert) and legacy (w * ncall, ncall = 2). skip: a
 * tensor name to leave out; bad_size: an entry one value short; nan: a NaN value. */
typedef struct imx_opts {
    const char *skip, *bad_size, *nan;
    bool no_meta;
} imx_opts;

static bool make_imatrix(const char *model, const char *gguf_path, const char *dat_path,
                         const imx_opts *o) {
    rl_gguf *g = NULL;
    char err[256];
    if (rl_gguf_open(model, &g, err, sizeof err) != RL_OK) return false;
    rl_gguf_writer *w = NULL;
    rl_gguf_writer_create(&w);
    if (!o->no_meta) {
        const char *ds[] = {"calibration.txt"};
        rl_gguf_writer_set_arr_str(w, "imatrix.datasets", ds, 1);
        rl_gguf_writer_set_u32(w, "imatrix.chunk_count", 10);
        rl_gguf_writer_set_u32(w, "imatrix.chunk_size", 512);
    }
    FILE *dat = dat_path ? fopen(dat_path, "wb") : NULL;
    int32_t n_entries = 0;
    if (dat) fwrite(&n_entries, 4, 1, dat);
    float *keep[1024];
    int nk = 0;
    for (int64_t i = 0; i < rl_gguf_n_tensors(g) && nk < 1020; i++) {
        rl_gguf_tensor_info t;
        rl_gguf_tensor(g, i, &t);
        if (t.n_dims < 2 || (o->skip && !strcmp(t.name, o->skip))) continue;
        int64_t ne0 = t.ne[0], ne2 = t.ne[2], n = ne0 * ne2;
        if (o->bad_size && !strcmp(t.name, o->bad_size)) n--;
        float *s = malloc((size_t)n * 4), *c = malloc((size_t)ne2 * 4), *d = malloc((size_t)n * 4);
        for (int64_t k = 0; k < n; k++) {
            float v = imx_val(t.name, (unsigned)k);
            if (o->nan && !strcmp(t.name, o->nan) && k == 3) v = NAN;
            s[k] = v * 4;
            d[k] = v * 2;
        }
        for (int64_t e = 0; e < ne2; e++) c[e] = 4.0f;
        char nm[160];
        int64_t nes[2] = {n / ne2, ne2}, nec[2] = {1, ne2};
        if (n % ne2) nes[0] = n, nes[1] = 1;
        snprintf(nm, sizeof nm, "%s.in_sum2", t.name);
        rl_gguf_writer_add_tensor(w, nm, RL_TYPE_F32, 2, nes, s);
        snprintf(nm, sizeof nm, "%s.counts", t.name);
        rl_gguf_writer_add_tensor(w, nm, RL_TYPE_F32, 2, nec, c);
        keep[nk++] = s;
        keep[nk++] = c;
        if (dat) {
            int32_t len = (int32_t)strlen(t.name), ncall = 2, nval = (int32_t)n;
            fwrite(&len, 4, 1, dat);
            fwrite(t.name, 1, (size_t)len, dat);
            fwrite(&ncall, 4, 1, dat);
            fwrite(&nval, 4, 1, dat);
            fwrite(d, 4, (size_t)n, dat);
            n_entries++;
        }
        free(d);
    }
    bool ok = rl_gguf_writer_write(w, gguf_path) == RL_OK;
    if (dat) {
        int32_t chunks = 10, dl = 15;
        fwrite(&chunks, 4, 1, dat);
        fwrite(&dl, 4, 1, dat);
        fwrite("calibration.txt", 1, 15, dat);
        fseek(dat, 0, SEEK_SET);
        fwrite(&n_entries, 4, 1, dat);
        ok = fclose(dat) == 0 && ok;
    }
    rl_gguf_writer_free(w);
    for (int i = 0; i < nk; i++) free(keep[i]);
    rl_gguf_free(g);
    return ok;
}

static rl_status quantize_imx(const char *in, const char *out, const char *type, const char *imx,
                              char *err) {
    rl_quantize_params p = rl_quantize_default_params();
    p.type = type;
    p.imatrix_path = imx;
    p.n_threads = 2;
    return rl_quantize_file(in, out, &p, err, 512);
}

static rl_type tensor_type(const rl_gguf *g, const char *name) {
    rl_gguf_tensor_info t;
    if (rl_gguf_tensor(g, rl_gguf_find_tensor(g, name), &t) != RL_OK) return RL_TYPE_COUNT;
    return t.type;
}

TEST(needs_imatrix) {
    const char *in = g_manifest ? zoo_file("llama3-F32.gguf") : NULL;
    if (!in) SKIP("zoo llama3-F32.gguf not available");
    static const char *const need[] = {"IQ2_XS", "IQ2_XXS", "IQ1_S", "IQ1_M", "IQ2_S",
                                       "IQ2_M", "IQ3_XXS", "IQ3_XS", "Q2_K_S"};
    for (size_t i = 0; i < RL_ARRAY_LEN(need); i++) {
        char err[512] = "";
        rl_status s = quantize(in, tmp("noimx.gguf"), need[i], err);
        CHECKF(s == RL_ERR_INVALID_ARG, "%s: %s", need[i], rl_status_str(s));
        CHECKF(strstr(err, "--imatrix") && strstr(err, "importance matrix") &&
                   strstr(err, need[i]),
               "%s: message: %s", need[i], err);
        CHECK(access(tmp("noimx.gguf"), F_OK) != 0);
    }
}

/* A one-layer llama-like model with 256-wide rows (so that the i-quants apply), small
 * enough for the slow i-quant searches under the sanitizers. */
static bool imx_model(const char *path) {
    rl_gguf_writer *w = NULL;
    rl_gguf_writer_create(&w);
    rl_gguf_writer_set_str(w, "general.architecture", "llama");
    rl_gguf_writer_set_u32(w, "llama.block_count", 1);
    rl_gguf_writer_set_u32(w, "llama.attention.head_count", 4);
    rl_gguf_writer_set_u32(w, "llama.attention.head_count_kv", 2);
    static float data[5][256 * 32];
    for (int t = 0; t < 5; t++)
        for (int i = 0; i < 256 * 32; i++) data[t][i] = sinf((float)i * 0.37f * (float)(t + 1));
    int64_t ne[2] = {256, 32}, ne1[1] = {256};
    rl_gguf_writer_add_tensor(w, "token_embd.weight", RL_TYPE_F32, 2, ne, data[0]);
    rl_gguf_writer_add_tensor(w, "blk.0.attn_norm.weight", RL_TYPE_F32, 1, ne1, data[0]);
    rl_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", RL_TYPE_F32, 2, ne, data[1]);
    rl_gguf_writer_add_tensor(w, "blk.0.attn_v.weight", RL_TYPE_F32, 2, ne, data[2]);
    rl_gguf_writer_add_tensor(w, "blk.0.ffn_down.weight", RL_TYPE_F32, 2, ne, data[3]);
    rl_gguf_writer_add_tensor(w, "output.weight", RL_TYPE_F32, 2, ne, data[4]);
    bool ok = rl_gguf_writer_write(w, path) == RL_OK;
    rl_gguf_writer_free(w);
    return ok;
}

TEST(imatrix_formats) {
    char in[1024]; /* not a tmp() slot: those are reused */
    snprintf(in, sizeof in, "%s", tmp("imx-model.gguf"));
    CHECK(imx_model(in));
    CHECK(make_imatrix(in, tmp("imx.gguf"), tmp("imx.dat"), &(imx_opts){0}));
    char err[512];
    rl_status s = quantize_imx(in, tmp("iq-g.gguf"), "IQ2_XS", tmp("imx.gguf"), err);
    CHECKF(s == RL_OK, "%s", err);
    s = quantize_imx(in, tmp("iq-d.gguf"), "IQ2_XS", tmp("imx.dat"), err);
    CHECKF(s == RL_OK, "%s", err);
    rl_gguf *g = NULL, *d = NULL;
    CHECK(rl_gguf_open(tmp("iq-g.gguf"), &g, err, sizeof err) == RL_OK);
    CHECK(rl_gguf_open(tmp("iq-d.gguf"), &d, err, sizeof err) == RL_OK);
    if (g && d) {
        /* GQA 2, no experts: IQ2_XS but for attn_v (Q2_K), token_embd (Q2_K) and output
         * (Q5_K) */
        CHECK(tensor_type(g, "output.weight") == RL_TYPE_Q5_K);
        CHECK(tensor_type(g, "token_embd.weight") == RL_TYPE_Q2_K);
        CHECK(tensor_type(g, "blk.0.attn_v.weight") == RL_TYPE_Q2_K);
        CHECK(tensor_type(g, "blk.0.ffn_down.weight") == RL_TYPE_IQ2_XS);
        CHECK(tensor_type(g, "blk.0.attn_q.weight") == RL_TYPE_IQ2_XS);
        CHECK(tensor_type(g, "blk.0.attn_norm.weight") == RL_TYPE_F32);
        CHECK_EQ_INT(kv_int(g, "general.file_type"), 20);
        CHECK_STR(kv_str(g, "quantize.imatrix.file") ? kv_str(g, "quantize.imatrix.file") : "",
                  tmp("imx.gguf"));
        CHECK_STR(kv_str(g, "quantize.imatrix.dataset") ? kv_str(g, "quantize.imatrix.dataset")
                                                         : "", "calibration.txt");
        CHECK_EQ_INT(kv_int(g, "quantize.imatrix.entries_count"), 5);
        CHECK_EQ_INT(kv_int(g, "quantize.imatrix.chunks_count"), 10);
        CHECK_EQ_INT(kv_int(d, "quantize.imatrix.entries_count"), 5);
        /* the same weights in either format: the same bytes */
        for (int64_t i = 0; i < rl_gguf_n_tensors(g); i++) {
            rl_gguf_tensor_info a, b;
            rl_gguf_tensor(g, i, &a);
            rl_gguf_tensor(d, i, &b);
            CHECKF(a.nbytes == b.nbytes && !memcmp(a.data, b.data, a.nbytes), "%s", a.name);
        }
    }
    rl_gguf_free(g);
    rl_gguf_free(d);

    /* the weights reach the quantizer: Q4_0 with and without them differ */
    s = quantize_imx(in, tmp("q40-imx.gguf"), "Q4_0", tmp("imx.gguf"), err);
    CHECKF(s == RL_OK, "%s", err);
    s = quantize(in, tmp("q40.gguf"), "Q4_0", err);
    CHECKF(s == RL_OK, "%s", err);
    CHECK(!same_file_bytes(tmp("q40-imx.gguf"), tmp("q40.gguf")));
    unlink(tmp("iq-g.gguf"));
    unlink(tmp("iq-d.gguf"));
    unlink(tmp("q40-imx.gguf"));
    unlink(tmp("q40.gguf"));

    /* refusals */
    imx_opts bad[] = {{.skip = "blk.0.attn_q.weight"}, {.bad_size = "blk.0.ffn_down.weight"},
                      {.nan = "blk.0.attn_v.weight"}, {.no_meta = true}};
    const char *want[] = {"no entry for tensor 'blk.0.attn_q.weight'",
                          "imatrix entry 'blk.0.ffn_down.weight' has 255 values",
                          "not finite", "metadata 'imatrix.datasets' missing"};
    rl_status want_s[] = {RL_ERR_INVALID_ARG, RL_ERR_INVALID_ARG, RL_ERR_BAD_FILE,
                          RL_ERR_BAD_FILE};
    for (size_t i = 0; i < RL_ARRAY_LEN(bad); i++) {
        CHECK(make_imatrix(in, tmp("bad.gguf"), NULL, &bad[i]));
        char e2[512] = "";
        s = quantize_imx(in, tmp("bad-out.gguf"), "IQ2_XS", tmp("bad.gguf"), e2);
        CHECKF(s == want_s[i] && strstr(e2, want[i]), "case %zu: %s: %s", i, rl_status_str(s),
               e2);
        CHECK(access(tmp("bad-out.gguf"), F_OK) != 0);
    }
    /* a legacy file cut short, and a file that does not exist */
    size_t n;
    unsigned char *p = rl_test_read_file(tmp("imx.dat"), &n);
    CHECK(p && write_file(tmp("cut.dat"), p, n / 2));
    free(p);
    char e3[512] = "";
    s = quantize_imx(in, tmp("bad-out.gguf"), "IQ2_XS", tmp("cut.dat"), e3);
    CHECKF(s == RL_ERR_BAD_FILE && strstr(e3, "cut.dat"), "%s: %s", rl_status_str(s), e3);
    s = quantize_imx(in, tmp("bad-out.gguf"), "IQ2_XS", tmp("none.dat"), e3);
    CHECKF(s == RL_ERR_IO && strstr(e3, "cannot open"), "%s: %s", rl_status_str(s), e3);
    unlink(tmp("bad.gguf"));
    unlink(tmp("cut.dat"));
    unlink(tmp("imx.gguf"));
    unlink(tmp("imx.dat"));
    unlink(in);
}

/* Expert tensors take their expert's slice of the imatrix: each expert's rows are what
 * rl_quantize makes of them with that slice. */
TEST(imatrix_experts) {
    const char *in = g_manifest ? zoo_file("mixtral-F32.gguf") : NULL;
    if (!in) SKIP("zoo mixtral-F32.gguf not available");
    CHECK(make_imatrix(in, tmp("mx-imx.gguf"), NULL, &(imx_opts){0}));
    char err[512];
    rl_status s = quantize_imx(in, tmp("mx-q.gguf"), "Q4_K_M", tmp("mx-imx.gguf"), err);
    CHECKF(s == RL_OK, "%s", err);
    rl_gguf *src = NULL, *out = NULL;
    CHECK(rl_gguf_open(in, &src, err, sizeof err) == RL_OK);
    CHECK(rl_gguf_open(tmp("mx-q.gguf"), &out, err, sizeof err) == RL_OK);
    if (src && out) {
        const char *name = "blk.0.ffn_up_exps.weight";
        rl_gguf_tensor_info ts, to;
        rl_gguf_tensor(src, rl_gguf_find_tensor(src, name), &ts);
        rl_gguf_tensor(out, rl_gguf_find_tensor(out, name), &to);
        CHECK(to.type == RL_TYPE_Q4_K && ts.ne[2] == 4);
        int64_t ne0 = ts.ne[0], ne1 = ts.ne[1];
        size_t rb = 0;
        rl_type_row_bytes(RL_TYPE_Q4_K, ne0, &rb);
        unsigned char *want = malloc(rb * (size_t)ne1);
        float *w = malloc((size_t)ne0 * sizeof(float));
        for (int64_t e = 0; e < ts.ne[2]; e++) {
            for (int64_t k = 0; k < ne0; k++) w[k] = imx_val(name, (unsigned)(e * ne0 + k));
            CHECK(rl_quantize(RL_TYPE_Q4_K, (const float *)ts.data + e * ne0 * ne1, want, ne1,
                              ne0, w) == RL_OK);
            CHECKF(!memcmp(want, (const unsigned char *)to.data + (size_t)e * rb * (size_t)ne1,
                           rb * (size_t)ne1), "expert %lld", (long long)e);
        }
        free(want);
        free(w);
    }
    rl_gguf_free(src);
    rl_gguf_free(out);
    unlink(tmp("mx-imx.gguf"));
    unlink(tmp("mx-q.gguf"));
    unlink(in);
}

/* ---- refusals and special cases ----------------------------------------------------------- */

TEST(refuses_to_overwrite_input) {
    const char *in = g_manifest ? zoo_file("qwen2-F32.gguf") : NULL;
    if (!in) SKIP("zoo qwen2-F32.gguf not available");
    size_t n0;
    unsigned char *before = rl_test_read_file(in, &n0);
    char err[512];
    CHECK(symlink(in, tmp("link.gguf")) == 0);
    CHECK(link(in, tmp("hard.gguf")) == 0);
    const char *outs[] = {in, tmp("link.gguf"), tmp("hard.gguf")};
    for (size_t i = 0; i < RL_ARRAY_LEN(outs); i++) {
        err[0] = 0;
        rl_status s = quantize(in, outs[i], "Q4_0", err);
        CHECKF(s == RL_ERR_INVALID_ARG && strstr(err, "is the input file"), "%s: %s",
               outs[i], err);
    }
    size_t n1;
    unsigned char *after = rl_test_read_file(in, &n1);
    CHECK(before && after && n0 == n1 && !memcmp(before, after, n0));
    free(before);
    free(after);
    unlink(tmp("link.gguf"));
    unlink(tmp("hard.gguf"));

    /* the input must exist and be a GGUF */
    rl_status s = quantize(tmp("missing.gguf"), tmp("o.gguf"), "Q4_0", err);
    CHECKF(s == RL_ERR_IO && strstr(err, "cannot open"), "%s", err);
    CHECK(write_file(tmp("junk.gguf"), "not a gguf file at all", 22));
    s = quantize(tmp("junk.gguf"), tmp("o.gguf"), "Q4_0", err);
    CHECKF(s == RL_ERR_BAD_FILE, "%s", err);
    unlink(tmp("junk.gguf"));
    CHECK(rl_quantize_file(in, "", NULL, err, sizeof err) == RL_ERR_INVALID_ARG);
    CHECK(rl_quantize_file(NULL, tmp("o.gguf"), NULL, err, sizeof err) == RL_ERR_INVALID_ARG);
    unlink(in);
}

TEST(bad_type_names) {
    const char *in = g_manifest ? zoo_file("qwen2-F32.gguf") : NULL;
    if (!in) SKIP("zoo qwen2-F32.gguf not available");
    char err[512];
    rl_status s = quantize(in, tmp("o.gguf"), "Q4_K_X", err);
    CHECKF(s == RL_ERR_INVALID_ARG && strstr(err, "unknown type 'Q4_K_X'"), "%s", err);
    s = quantize(in, tmp("o.gguf"), "", err);
    CHECKF(s == RL_ERR_INVALID_ARG && strstr(err, "unknown type"), "%s", err);
    s = quantize(in, tmp("o.gguf"), NULL, err);
    CHECKF(s == RL_ERR_INVALID_ARG, "%s", err);
    s = quantize(in, tmp("o.gguf"), "Q8_K", err);
    CHECKF(s == RL_ERR_UNSUPPORTED && strstr(err, "not a weight type"), "%s", err);
    s = quantize(in, tmp("o.gguf"), "I32", err);
    CHECK(s == RL_ERR_UNSUPPORTED);
    rl_quantize_params p = rl_quantize_default_params();
    p.output_type = (rl_type)4; /* a retired id */
    s = rl_quantize_file(in, tmp("o.gguf"), &p, err, sizeof err);
    CHECKF(s == RL_ERR_INVALID_ARG && strstr(err, "output_type"), "%s", err);
    CHECK(access(tmp("o.gguf"), F_OK) != 0);
    /* lower case works, as in llama-quantize */
    s = quantize(in, tmp("o.gguf"), "q4_k_m", err);
    CHECKF(s == RL_OK, "%s", err);
    unlink(tmp("o.gguf"));
    unlink(in);
}

TEST(requantize_and_copy) {
    const char *in = g_manifest ? zoo_file("llama3-Q8_0.gguf") : NULL;
    if (!in) SKIP("zoo llama3-Q8_0.gguf not available");
    char err[512];
    rl_status s = quantize(in, tmp("rq.gguf"), "Q4_K_M", err);
    CHECKF(s == RL_ERR_INVALID_ARG && strstr(err, "requantizing") && strstr(err, "Q8_0"), "%s",
           err);
    rl_quantize_params p = rl_quantize_default_params();
    p.type = "Q4_K_M";
    p.allow_requantize = true;
    s = rl_quantize_file(in, tmp("rq.gguf"), &p, err, sizeof err);
    CHECKF(s == RL_OK, "%s", err);
    rl_gguf *g = NULL;
    if (s == RL_OK && rl_gguf_open(tmp("rq.gguf"), &g, err, sizeof err) == RL_OK) {
        CHECK(tensor_type(g, "output.weight") == RL_TYPE_Q6_K);
        CHECK(tensor_type(g, "blk.1.attn_v.weight") == RL_TYPE_Q6_K);
        CHECK(tensor_type(g, "blk.0.attn_v.weight") == RL_TYPE_Q4_K);
        CHECK_EQ_INT(kv_int(g, "general.file_type"), 15);
        rl_gguf_free(g);
    }
    /* COPY: nothing converted, every tensor byte kept, the file type too */
    p.type = "COPY";
    p.allow_requantize = false;
    s = rl_quantize_file(in, tmp("copy.gguf"), &p, err, sizeof err);
    CHECKF(s == RL_OK, "%s", err);
    rl_gguf *a = NULL, *b = NULL;
    if (rl_gguf_open(in, &a, err, sizeof err) == RL_OK &&
        rl_gguf_open(tmp("copy.gguf"), &b, err, sizeof err) == RL_OK) {
        CHECK_EQ_INT(kv_int(b, "general.file_type"), 7);
        CHECK_EQ_INT(rl_gguf_n_tensors(a), rl_gguf_n_tensors(b));
        for (int64_t i = 0; i < rl_gguf_n_tensors(a); i++) {
            rl_gguf_tensor_info ta, tb;
            rl_gguf_tensor(a, i, &ta);
            rl_gguf_tensor(b, i, &tb);
            CHECK(ta.type == tb.type && ta.nbytes == tb.nbytes &&
                  !memcmp(ta.data, tb.data, ta.nbytes));
        }
    }
    rl_gguf_free(a);
    rl_gguf_free(b);
    unlink(tmp("rq.gguf"));
    unlink(tmp("copy.gguf"));
    unlink(in);
}

/* ---- small models built here -------------------------------------------------------------- */

/* A llama-like model whose rows are not multiples of 256 (96) or 32 (40), with a NaN
 * planted at (nan_row, 5) of blk.0.attn_q when nan_row >= 0. */
static bool small_model(const char *path, int nan_row) {
    rl_gguf_writer *w = NULL;
    rl_gguf_writer_create(&w);
    rl_gguf_writer_set_str(w, "general.architecture", "llama");
    rl_gguf_writer_set_u32(w, "llama.block_count", 1);
    rl_gguf_writer_set_u32(w, "llama.attention.head_count", 4);
    rl_gguf_writer_set_u32(w, "llama.attention.head_count_kv", 4);
    rl_gguf_writer_set_u32(w, "general.file_type", 0);
    static float data[4][96 * 64];
    for (int t = 0; t < 4; t++)
        for (int i = 0; i < 96 * 64; i++) data[t][i] = sinf((float)(i * (t + 3))) * 0.1f;
    if (nan_row >= 0) data[1][nan_row * 96 + 5] = NAN;
    int64_t ne_q[2] = {96, 64}, ne_o[2] = {40, 64}, ne_n[1] = {96};
    rl_gguf_writer_add_tensor(w, "token_embd.weight", RL_TYPE_F32, 2, ne_q, data[0]);
    rl_gguf_writer_add_tensor(w, "blk.0.attn_q.weight", RL_TYPE_F32, 2, ne_q, data[1]);
    rl_gguf_writer_add_tensor(w, "blk.0.attn_norm.weight", RL_TYPE_F32, 1, ne_n, data[2]);
    rl_gguf_writer_add_tensor(w, "output.weight", RL_TYPE_F32, 2, ne_o, data[3]);
    bool ok = rl_gguf_writer_write(w, path) == RL_OK;
    rl_gguf_writer_free(w);
    return ok;
}

typedef struct events {
    int n;
    int64_t last_index;
    bool in_order;
    int n_fallback, n_converted;
    char names[8][64];
    rl_type out[8];
} events;

static void on_event(void *user, const rl_quantize_event *ev) {
    events *e = user;
    e->in_order &= ev->index == e->last_index + 1 && ev->count == 4;
    e->last_index = ev->index;
    e->n_fallback += ev->fallback;
    e->n_converted += ev->converted;
    if (e->n < 8) {
        snprintf(e->names[e->n], 64, "%s", ev->name);
        e->out[e->n] = ev->type_out;
    }
    e->n++;
}

TEST(fallback_progress_nan) {
    CHECK(small_model(tmp("small.gguf"), -1));
    events ev = {.last_index = -1, .in_order = true};
    rl_quantize_params p = rl_quantize_default_params();
    p.type = "Q4_K_M";
    p.progress = on_event;
    p.progress_user = &ev;
    char err[512];
    rl_status s = rl_quantize_file(tmp("small.gguf"), tmp("small-q.gguf"), &p, err, sizeof err);
    CHECKF(s == RL_OK, "%s", err);
    CHECK_EQ_INT(ev.n, 4);
    CHECK(ev.in_order);
    /* llama.cpp's order: output, token_embd, then layer 0 by name */
    CHECK_STR(ev.names[0], "output.weight");
    CHECK_STR(ev.names[1], "token_embd.weight");
    CHECK_STR(ev.names[2], "blk.0.attn_norm.weight");
    CHECK_STR(ev.names[3], "blk.0.attn_q.weight");
    CHECK(ev.out[0] == RL_TYPE_F16);  /* 40 columns: no block type fits */
    CHECK(ev.out[1] == RL_TYPE_Q5_0); /* Q4_K does not fit 96 columns */
    CHECK(ev.out[2] == RL_TYPE_F32);
    CHECK(ev.out[3] == RL_TYPE_Q5_0);
    CHECK_EQ_INT(ev.n_fallback, 3);
    CHECK_EQ_INT(ev.n_converted, 3);
    /* the bytes are rl_quantize's */
    rl_gguf *g = NULL, *src = NULL;
    if (rl_gguf_open(tmp("small-q.gguf"), &g, err, sizeof err) == RL_OK &&
        rl_gguf_open(tmp("small.gguf"), &src, err, sizeof err) == RL_OK) {
        rl_gguf_tensor_info a, b;
        rl_gguf_tensor(g, rl_gguf_find_tensor(g, "blk.0.attn_q.weight"), &a);
        rl_gguf_tensor(src, rl_gguf_find_tensor(src, "blk.0.attn_q.weight"), &b);
        unsigned char want[64 * 66];
        CHECK(rl_quantize(RL_TYPE_Q5_0, b.data, want, 64, 96, NULL) == RL_OK);
        CHECK(a.nbytes == 64 * 66 && !memcmp(a.data, want, a.nbytes));
    }
    rl_gguf_free(g);
    rl_gguf_free(src);

    /* a NaN weight stops the job with a message naming tensor and row */
    CHECK(small_model(tmp("small-nan.gguf"), 17));
    p.progress = NULL;
    s = rl_quantize_file(tmp("small-nan.gguf"), tmp("small-nan-q.gguf"), &p, err, sizeof err);
    CHECKF(s == RL_ERR_INVALID_ARG && strstr(err, "blk.0.attn_q.weight") &&
               strstr(err, "row 17") && strstr(err, "NaN"),
           "%s", err);
    CHECK(access(tmp("small-nan-q.gguf"), F_OK) != 0);
    unlink(tmp("small-nan.gguf"));
    unlink(tmp("small-q.gguf"));
}

/* Thread count does not change a byte. */
TEST(threads_agree) {
    const char *in = g_manifest ? zoo_file("qwen2moe-F32.gguf") : NULL;
    if (!in) SKIP("zoo qwen2moe-F32.gguf not available");
    rl_quantize_params p = rl_quantize_default_params();
    p.type = "Q3_K_M";
    char err[512];
    p.n_threads = 1;
    CHECK(rl_quantize_file(in, tmp("t1.gguf"), &p, err, sizeof err) == RL_OK);
    p.n_threads = 3;
    CHECK(rl_quantize_file(in, tmp("t3.gguf"), &p, err, sizeof err) == RL_OK);
    CHECK(same_file_bytes(tmp("t1.gguf"), tmp("t3.gguf")));
    unlink(tmp("t1.gguf"));
    unlink(tmp("t3.gguf"));
    unlink(in);
}

/* Every allocation failure is reported (never a crash or a leak: the sanitizer build
 * checks), and the job succeeds once allocations do. */
TEST(allocation_failures) {
    CHECK(small_model(tmp("small.gguf"), -1));
    rl_quantize_params p = rl_quantize_default_params();
    p.type = "Q8_0";
    p.n_threads = 1;
    char err[512];
    int k, failures = 0;
    size_t in_use = rl_mem_in_use();
    for (k = 1; k < 400; k++) {
        rl__alloc_fail_after(k);
        rl_status s = rl_quantize_file(tmp("small.gguf"), tmp("small-a.gguf"), &p, err,
                                       sizeof err);
        rl__alloc_fail_after(0);
        if (s == RL_OK) break;
        failures++;
        CHECKF(s == RL_ERR_NOMEM || s == RL_ERR_IO, "k=%d: %s: %s", k, rl_status_str(s), err);
    }
    CHECKF(k < 400 && failures > 5, "k=%d failures=%d", k, failures);
    CHECK_EQ_INT(rl_mem_in_use(), in_use);
    unlink(tmp("small.gguf"));
    unlink(tmp("small-a.gguf"));
}

/* ---- synthetic models --------------------------------------------------------------------- */

TEST(synth_tiny) {
    rl_synth_params p = rl_synth_default_params();
    p.type = "Q4_K_M";
    p.n_threads = 2;
    char err[512];
    rl_status s = rl_synth_model(tmp("tiny-a.gguf"), &p, err, sizeof err);
    CHECKF(s == RL_OK, "%s", err);
    p.n_threads = 1;
    CHECK(rl_synth_model(tmp("tiny-b.gguf"), &p, err, sizeof err) == RL_OK);
    CHECK(same_file_bytes(tmp("tiny-a.gguf"), tmp("tiny-b.gguf"))); /* deterministic */
    p.seed = 43;
    CHECK(rl_synth_model(tmp("tiny-c.gguf"), &p, err, sizeof err) == RL_OK);
    CHECK(!same_file_bytes(tmp("tiny-a.gguf"), tmp("tiny-c.gguf")));

    rl_gguf *g = NULL;
    CHECK(rl_gguf_open(tmp("tiny-a.gguf"), &g, err, sizeof err) == RL_OK);
    if (g) {
        CHECK_STR(kv_str(g, "general.architecture"), "llama");
        CHECK_EQ_INT(kv_int(g, "llama.block_count"), 2);
        CHECK_EQ_INT(kv_int(g, "llama.embedding_length"), 256);
        CHECK_EQ_INT(kv_int(g, "general.file_type"), 15);
        CHECK_EQ_INT(rl_gguf_n_tensors(g), 3 + 2 * 9);
        CHECK(tensor_type(g, "output.weight") == RL_TYPE_Q6_K);
        CHECK(tensor_type(g, "blk.1.attn_v.weight") == RL_TYPE_Q6_K);
        CHECK(tensor_type(g, "blk.0.attn_v.weight") == RL_TYPE_Q4_K);
        CHECK(tensor_type(g, "blk.0.ffn_norm.weight") == RL_TYPE_F32);
        rl_gguf_tensor_info t;
        CHECK(rl_gguf_tensor(g, rl_gguf_find_tensor(g, "token_embd.weight"), &t) == RL_OK);
        CHECK(t.ne[0] == 256 && t.ne[1] == 512);
        /* weights look like N(0, s^2): token_embd s = 2/16 */
        float *x = malloc(256 * 512 * sizeof(float));
        CHECK(rl_dequantize(t.type, t.data, x, 256 * 512) == RL_OK);
        double m = 0, var = 0;
        for (int i = 0; i < 256 * 512; i++) m += x[i];
        m /= 256 * 512;
        for (int i = 0; i < 256 * 512; i++) var += (x[i] - m) * (x[i] - m);
        var /= 256 * 512;
        CHECKF(fabs(m) < 0.002 && fabs(sqrt(var) - 0.125) < 0.01, "mean %g std %g", m,
               sqrt(var));
        free(x);
        /* the norms are 1 + 0.1 N(0,1) */
        CHECK(rl_gguf_tensor(g, rl_gguf_find_tensor(g, "output_norm.weight"), &t) == RL_OK);
        double nm = 0;
        for (int i = 0; i < 256; i++) nm += ((const float *)t.data)[i];
        CHECKF(fabs(nm / 256 - 1.0) < 0.03, "norm mean %g", nm / 256);
        /* the built-in tokenizer: byte tokens, BOS/EOS, round trip of any text */
        rl_vocab *v = NULL;
        CHECKF(rl_vocab_load(g, &v, err, sizeof err) == RL_OK, "%s", err);
        if (v) {
            CHECK_EQ_INT(rl_vocab_n_tokens(v), 512);
            CHECK_EQ_INT(rl_vocab_bos(v), 256);
            CHECK_EQ_INT(rl_vocab_eos(v), 257);
            const char *text = "Hello, w\xc3\xb6rld \xe2\x9c\x93\n";
            rl_token tok[64];
            size_t nt = 0;
            CHECK(rl_tokenize(v, text, strlen(text), RL_TOKENIZE_ADD_SPECIAL, tok, 64, &nt) ==
                  RL_OK);
            CHECK_EQ_INT(nt, strlen(text) + 1);
            CHECK_EQ_INT(tok[0], 256);
            CHECK_EQ_INT(tok[1], 'H');
            char back[64];
            size_t nb = 0;
            CHECK(rl_detokenize(v, tok, nt, RL_DETOK_REMOVE_SPECIAL | RL_DETOK_NO_CLEANUP, back,
                                sizeof back, &nb) == RL_OK);
            CHECK(nb == strlen(text) && !memcmp(back, text, nb));
            rl_vocab_free(v);
        }
        rl_gguf_free(g);
    }
    unlink(tmp("tiny-a.gguf"));
    unlink(tmp("tiny-b.gguf"));
    unlink(tmp("tiny-c.gguf"));
}

TEST(synth_vocab_and_errors) {
    const char *vocab = rl_test_data("models/vocab/ggml-vocab-llama-spm.gguf");
    if (access(vocab, R_OK) != 0) SKIP("models/vocab/ggml-vocab-llama-spm.gguf not found");
    rl_synth_params p = rl_synth_default_params();
    p.type = "Q8_0";
    p.vocab_path = vocab;
    char err[512];
    rl_status s = rl_synth_model(tmp("tiny-v.gguf"), &p, err, sizeof err);
    CHECKF(s == RL_OK, "%s", err);
    rl_gguf *g = NULL, *vg = NULL;
    if (s == RL_OK && rl_gguf_open(tmp("tiny-v.gguf"), &g, err, sizeof err) == RL_OK &&
        rl_gguf_open(vocab, &vg, err, sizeof err) == RL_OK) {
        /* every tokenizer.* key copied, the vocabulary size from the token count */
        int n_tok_keys = 0;
        for (int64_t i = 0; i < rl_gguf_n_kv(vg); i++) {
            const char *k = rl_gguf_key(vg, i);
            if (strncmp(k, "tokenizer.", 10)) continue;
            n_tok_keys++;
            CHECKF(rl_gguf_find_key(g, k) >= 0, "%s not copied", k);
        }
        CHECK(n_tok_keys >= 4);
        uint64_t nv = 0;
        rl_gguf_type et;
        rl_gguf_get_arr_info(vg, rl_gguf_find_key(vg, "tokenizer.ggml.tokens"), &et, &nv);
        rl_gguf_tensor_info t;
        CHECK(rl_gguf_tensor(g, rl_gguf_find_tensor(g, "token_embd.weight"), &t) == RL_OK);
        CHECK_EQ_INT(t.ne[1], (int64_t)nv);
        CHECK_EQ_INT(kv_int(g, "llama.vocab_size"), (int64_t)nv);
        rl_vocab *v = NULL;
        CHECKF(rl_vocab_load(g, &v, err, sizeof err) == RL_OK, "%s", err);
        if (v)
            CHECK(rl_vocab_get_type(v) == RL_VOCAB_TYPE_SPM &&
                  rl_vocab_n_tokens(v) == (int32_t)nv);
        rl_vocab_free(v);
    }
    rl_gguf_free(g);
    rl_gguf_free(vg);
    unlink(tmp("tiny-v.gguf"));

    p = rl_synth_default_params();
    p.shape = "llama3-9000b";
    s = rl_synth_model(tmp("x.gguf"), &p, err, sizeof err);
    CHECKF(s == RL_ERR_NOT_FOUND && strstr(err, "llama3-9000b"), "%s", err);
    p = rl_synth_default_params();
    p.type = "Q4_K_Y";
    s = rl_synth_model(tmp("x.gguf"), &p, err, sizeof err);
    CHECKF(s == RL_ERR_INVALID_ARG && strstr(err, "unknown type"), "%s", err);
    p = rl_synth_default_params();
    p.vocab_path = tmp("no-such-vocab.gguf");
    s = rl_synth_model(tmp("x.gguf"), &p, err, sizeof err);
    CHECKF(s == RL_ERR_IO, "%s", err);
    CHECK(access(tmp("x.gguf"), F_OK) != 0);
    /* a type that needs an importance matrix gets a uniform one */
    p = rl_synth_default_params();
    p.type = "IQ2_XXS";
    s = rl_synth_model(tmp("x.gguf"), &p, err, sizeof err);
    CHECKF(s == RL_OK, "%s", err);
    unlink(tmp("x.gguf"));
    /* the shapes */
    const char *desc = NULL;
    int n_shapes = 0;
    for (size_t i = 0; rl_synth_shape_name(i, &desc); i++, n_shapes++)
        CHECK(desc && strlen(desc) > 10);
    CHECK_EQ_INT(n_shapes, 9);
    CHECK(rl_synth_shape_name(9, NULL) == NULL);
}

int main(void) {
    const char *root = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/rl-quantize-XXXXXX", root && *root ? root : "/tmp");
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        return 1;
    }
    json_error_t je;
    json_t *man = json_load_file(rl_test_data("models/zoo/models_manifest.json"), 0, &je);
    g_manifest = man ? json_object_get(man, "files") : NULL;
    RUN(zoo_q4_k_m_and_q8_0);
    RUN(needs_imatrix);
    RUN(imatrix_formats);
    RUN(imatrix_experts);
    RUN(refuses_to_overwrite_input);
    RUN(bad_type_names);
    RUN(requantize_and_copy);
    RUN(fallback_progress_nan);
    RUN(threads_agree);
    RUN(allocation_failures);
    RUN(synth_tiny);
    RUN(synth_vocab_and_errors);
    json_decref(man);
    rmdir(g_dir);
    return rl_test_finish();
}
