/*
 * imatrix.c - importance matrices as llama.cpp's llama-imatrix writes them (see qfile.h).
 *
 * GGUF format (as llama.cpp's common/imatrix-loader.cpp reads it): per weight tensor W
 * two F32 tensors, "W.in_sum2" (sums of squared activations, ne0 per expert) and
 * "W.counts" (activations seen, one per expert), plus metadata imatrix.datasets /
 * chunk_count / chunk_size.
 * The weight of column i of expert j is in_sum2[j*ne0 + i] / counts[j], or 1 where no
 * activation was seen.
 *
 * Legacy format (.dat): int32 n_entries; per entry int32 name length, the name, int32
 * ncall, int32 nval, nval float32 (already means, multiplied by ncall); then optionally
 * int32 chunk count, int32 length and a dataset name. Little endian.
 */
#include "qfile.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct entry {
    char *name;
    float *w;
    size_t n;
} entry;

struct rl__imatrix {
    entry *e;
    size_t n;
    char *dataset;
    int64_t chunk_count;
};

void rl__imatrix_free(rl__imatrix *im) {
    if (!im) return;
    for (size_t i = 0; i < im->n; i++) {
        rl__free(im->e[i].name);
        rl__free(im->e[i].w);
    }
    rl__free(im->e);
    rl__free(im->dataset);
    rl__free(im);
}

static int entry_cmp(const void *a, const void *b) {
    return strcmp(((const entry *)a)->name, ((const entry *)b)->name);
}

const float *rl__imatrix_find(const rl__imatrix *im, const char *name, size_t *n) {
    if (!im || !name) return NULL;
    entry key = {.name = (char *)name};
    const entry *e = bsearch(&key, im->e, im->n, sizeof *im->e, entry_cmp);
    if (!e) return NULL;
    if (n) *n = e->n;
    return e->w;
}

size_t rl__imatrix_n_entries(const rl__imatrix *im) { return im ? im->n : 0; }
const char *rl__imatrix_dataset(const rl__imatrix *im) { return im ? im->dataset : NULL; }
int64_t rl__imatrix_chunk_count(const rl__imatrix *im) { return im ? im->chunk_count : 0; }

/* Sort for lookup; refuse duplicates and non-finite weights (they would poison every
 * quantizer that reads them). */
static rl_status finish(rl__imatrix *im, char *err, size_t err_size) {
    qsort(im->e, im->n, sizeof *im->e, entry_cmp);
    for (size_t i = 0; i < im->n; i++) {
        if (i && !strcmp(im->e[i].name, im->e[i - 1].name)) {
            rl__fmt(err, err_size, "imatrix: entry '%s' appears twice", im->e[i].name);
            return RL_ERR_BAD_FILE;
        }
        for (size_t j = 0; j < im->e[i].n; j++) {
            if (!isfinite(im->e[i].w[j])) {
                rl__fmt(err, err_size, "imatrix: entry '%s' value %zu is not finite (%g)",
                        im->e[i].name, j, (double)im->e[i].w[j]);
                return RL_ERR_BAD_FILE;
            }
        }
    }
    return RL_OK;
}

static entry *add_entry(rl__imatrix *im, size_t *cap, const char *name, size_t name_len,
                        size_t n) {
    if (im->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        entry *ne = rl__realloc(im->e, nc * sizeof *ne);
        if (!ne) return NULL;
        im->e = ne;
        *cap = nc;
    }
    entry *e = &im->e[im->n];
    e->name = rl__strndup(name, name_len);
    e->w = rl__malloc(RL_MAX(n, (size_t)1) * sizeof(float));
    e->n = n;
    if (!e->name || !e->w) {
        rl__free(e->name);
        rl__free(e->w);
        return NULL;
    }
    im->n++;
    return e;
}

static bool ends_with(const char *s, size_t len, const char *suffix, size_t *stem) {
    size_t k = strlen(suffix);
    if (len <= k || memcmp(s + len - k, suffix, k) != 0) return false;
    *stem = len - k;
    return true;
}

static rl_status load_gguf(const char *path, rl__imatrix *im, char *err, size_t err_size) {
    rl_gguf *g = NULL;
    char gerr[256];
    rl_status s = rl_gguf_open(path, &g, gerr, sizeof gerr);
    if (s != RL_OK) {
        rl__fmt(err, err_size, "imatrix '%s': %s", path, gerr);
        return s;
    }
    static const char *const meta[] = {"imatrix.datasets", "imatrix.chunk_count",
                                       "imatrix.chunk_size"};
    for (size_t i = 0; i < RL_ARRAY_LEN(meta); i++) {
        if (rl_gguf_find_key(g, meta[i]) < 0) {
            rl__fmt(err, err_size, "imatrix '%s': metadata '%s' missing (not an imatrix file?)",
                    path, meta[i]);
            rl_gguf_free(g);
            return RL_ERR_BAD_FILE;
        }
    }
    int64_t kd = rl_gguf_find_key(g, "imatrix.datasets");
    rl_gguf_type et;
    uint64_t nd;
    const char *ds;
    if (rl_gguf_get_arr_info(g, kd, &et, &nd) == RL_OK && et == RL_GGUF_TYPE_STRING && nd > 0 &&
        rl_gguf_get_arr_str(g, kd, 0, &ds, NULL) == RL_OK && !(im->dataset = rl__strdup(ds))) {
        rl_gguf_free(g);
        return RL_ERR_NOMEM;
    }
    int64_t cc = 0;
    if (rl_gguf_get_i64(g, rl_gguf_find_key(g, "imatrix.chunk_count"), &cc) == RL_OK)
        im->chunk_count = cc;

    size_t cap = 0;
    s = RL_OK;
    int64_t nt = rl_gguf_n_tensors(g);
    for (int64_t i = 0; i < nt && s == RL_OK; i++) {
        rl_gguf_tensor_info ts, tc;
        rl_gguf_tensor(g, i, &ts);
        size_t len = strlen(ts.name), stem;
        if (!ends_with(ts.name, len, ".in_sum2", &stem)) continue;
        char cname[128];
        snprintf(cname, sizeof cname, "%.*s.counts", (int)stem, ts.name);
        int64_t ic = rl_gguf_find_tensor(g, cname);
        if (ic < 0) {
            rl__fmt(err, err_size, "imatrix '%s': '%s' has no '%s'", path, ts.name, cname);
            s = RL_ERR_BAD_FILE;
            break;
        }
        rl_gguf_tensor(g, ic, &tc);
        int64_t nval = ts.ne[0] * ts.ne[1] * ts.ne[2] * ts.ne[3];
        int64_t ncnt = tc.ne[0] * tc.ne[1] * tc.ne[2] * tc.ne[3];
        if (ts.type != RL_TYPE_F32 || tc.type != RL_TYPE_F32 || ncnt < 1 || nval < 1 ||
            nval % ncnt != 0) {
            rl__fmt(err, err_size, "imatrix '%s': '%.*s': sums and counts must be F32, with "
                    "a whole number of sums per count", path, (int)stem, ts.name);
            s = RL_ERR_BAD_FILE;
            break;
        }
        entry *e = add_entry(im, &cap, ts.name, stem, (size_t)nval);
        if (!e) {
            s = RL_ERR_NOMEM;
            break;
        }
        const float *sums = ts.data, *counts = tc.data;
        int64_t ne0 = nval / ncnt;
        for (int64_t j = 0; j < ncnt; j++) {
            float c = (float)lroundf(counts[j]);
            for (int64_t k = 0; k < ne0; k++)
                e->w[j * ne0 + k] = c > 0.0f ? sums[j * ne0 + k] / c : 1.0f;
        }
    }
    /* .counts without .in_sum2 is as malformed as the reverse */
    for (int64_t i = 0; i < nt && s == RL_OK; i++) {
        rl_gguf_tensor_info tc;
        rl_gguf_tensor(g, i, &tc);
        size_t len = strlen(tc.name), stem;
        if (!ends_with(tc.name, len, ".counts", &stem)) continue;
        char sname[128];
        snprintf(sname, sizeof sname, "%.*s.in_sum2", (int)stem, tc.name);
        if (rl_gguf_find_tensor(g, sname) < 0) {
            rl__fmt(err, err_size, "imatrix '%s': '%s' has no '%s'", path, tc.name, sname);
            s = RL_ERR_BAD_FILE;
        }
    }
    if (s == RL_OK && im->n == 0) {
        rl__fmt(err, err_size, "imatrix '%s': no entries", path);
        s = RL_ERR_BAD_FILE;
    }
    rl_gguf_free(g);
    return s;
}

typedef struct rd {
    const unsigned char *p;
    size_t n, off;
} rd;

static bool rd_i32(rd *r, int32_t *v) {
    if (r->n - r->off < 4) return false;
    memcpy(v, r->p + r->off, 4);
    r->off += 4;
    return true;
}

static rl_status load_legacy(const char *path, const unsigned char *buf, size_t size,
                             rl__imatrix *im, char *err, size_t err_size) {
    rd r = {buf, size, 0};
    int32_t n_entries;
    if (!rd_i32(&r, &n_entries) || n_entries < 1) {
        rl__fmt(err, err_size, "imatrix '%s': neither GGUF nor a legacy imatrix (entry count "
                "%s)", path, size < 4 ? "missing" : "< 1");
        return RL_ERR_BAD_FILE;
    }
    size_t cap = 0;
    for (int32_t i = 0; i < n_entries; i++) {
        int32_t len, ncall, nval;
        if (!rd_i32(&r, &len) || len < 1 || (size_t)len > r.n - r.off) {
            rl__fmt(err, err_size, "imatrix '%s': entry %d: bad name length at offset %zu",
                    path, (int)i, r.off);
            return RL_ERR_BAD_FILE;
        }
        const char *name = (const char *)r.p + r.off;
        r.off += (size_t)len;
        if (memchr(name, 0, (size_t)len)) {
            rl__fmt(err, err_size, "imatrix '%s': entry %d: NUL in name", path, (int)i);
            return RL_ERR_BAD_FILE;
        }
        if (!rd_i32(&r, &ncall) || !rd_i32(&r, &nval) || nval < 1 ||
            (size_t)nval > (r.n - r.off) / 4) {
            rl__fmt(err, err_size, "imatrix '%s': entry %d '%.*s': bad value count at "
                    "offset %zu", path, (int)i, (int)RL_MIN(len, 64), name, r.off);
            return RL_ERR_BAD_FILE;
        }
        entry *e = add_entry(im, &cap, name, (size_t)len, (size_t)nval);
        if (!e) return RL_ERR_NOMEM;
        memcpy(e->w, r.p + r.off, (size_t)nval * 4);
        r.off += (size_t)nval * 4;
        if (ncall > 0)
            for (int32_t j = 0; j < nval; j++) e->w[j] /= (float)ncall;
    }
    int32_t chunks, dlen;
    if (rd_i32(&r, &chunks)) {
        im->chunk_count = chunks;
        if (rd_i32(&r, &dlen) && dlen > 0 && (size_t)dlen <= r.n - r.off &&
            !(im->dataset = rl__strndup((const char *)r.p + r.off, (size_t)dlen)))
            return RL_ERR_NOMEM;
    }
    return RL_OK;
}

static unsigned char *read_all(const char *path, size_t *size, int *eno) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        *eno = errno;
        return NULL;
    }
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 1 << 16;
            unsigned char *nb = rl__realloc(buf, nc);
            if (!nb) {
                rl__free(buf);
                fclose(f);
                *eno = ENOMEM;
                return NULL;
            }
            buf = nb;
            cap = nc;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    *eno = ferror(f) ? EIO : 0;
    fclose(f);
    if (*eno) {
        rl__free(buf);
        return NULL;
    }
    *size = n;
    return buf;
}

rl_status rl__imatrix_load(const char *path, rl__imatrix **out, char *err, size_t err_size) {
    if (!out) return RL_ERR_INVALID_ARG;
    *out = NULL;
    if (!path || !*path) return RL_ERR_INVALID_ARG;
    rl__imatrix *im = rl__calloc(1, sizeof *im);
    if (!im) return RL_ERR_NOMEM;
    unsigned char magic[4] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) {
        rl__fmt(err, err_size, "imatrix '%s': cannot open: %s", path, strerror(errno));
        rl__free(im);
        return RL_ERR_IO;
    }
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    rl_status s;
    if (got == 4 && !memcmp(magic, "GGUF", 4)) {
        s = load_gguf(path, im, err, err_size);
    } else {
        size_t size = 0;
        int eno = 0;
        unsigned char *buf = read_all(path, &size, &eno);
        if (!buf) {
            rl__fmt(err, err_size, "imatrix '%s': cannot read: %s", path, strerror(eno));
            s = eno == ENOMEM ? RL_ERR_NOMEM : RL_ERR_IO;
        } else {
            s = load_legacy(path, buf, size, im, err, err_size);
            rl__free(buf);
        }
    }
    if (s == RL_OK) s = finish(im, err, err_size);
    if (s != RL_OK) {
        if (s == RL_ERR_NOMEM) rl__fmt(err, err_size, "imatrix '%s': out of memory", path);
        rl__imatrix_free(im);
        return s;
    }
    *out = im;
    return RL_OK;
}
