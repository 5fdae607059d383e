/*
 * quantize_file.c - `ruvllm quantize`: a GGUF model in, the same model with the per-tensor
 * types of a quantization mix out, as llama.cpp's llama-quantize writes it (same tensor
 * order, same metadata, the reference quantizers' bytes). The mix policy is mix.c; this
 * file checks what can be done before anything is written, then streams: the GGUF writer
 * asks for each tensor's rows in chunks and a thread pool converts them from the mapped
 * input, so memory use stays a chunk plus a row per thread.
 */
#include "qfile.h"

#include "../util/threadpool.h"
#include "quant.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>

/* ---- the streaming engine ---------------------------------------------------------------- */

typedef struct engine engine;

typedef struct tuser { /* the writer's user pointer of one tensor */
    engine *e;
    size_t i;
} tuser;

struct engine {
    rl__qjob *job;
    rl_threadpool *pool;
    int nth;
    tuser *users;
    size_t n_reported;  /* progress events sent */
    /* the chunk being converted */
    const rl__qtensor *t;
    size_t ti;
    int64_t row0, n_rows;
    size_t src_rb, dst_rb;
    uint8_t *dst;
    float *scratch;     /* nth rows of ne[0] floats */
    rl_status *st;      /* per thread */
    int64_t *bad_row;   /* per thread: the row that failed */
    char msg[512];      /* why a producer failed */
};

static int64_t n_rows_of(const rl__qtensor *t) { return t->ne[1] * t->ne[2] * t->ne[3]; }

static size_t tensor_bytes(rl_type type, const int64_t ne[4]) {
    size_t rb = 0;
    if (rl_type_row_bytes(type, ne[0], &rb) != RL_OK) return 0;
    return rb * (size_t)(ne[1] * ne[2] * ne[3]);
}

/* Progress for tensors [e->n_reported, upto). */
static void report_upto(engine *e, size_t upto) {
    rl__qjob *job = e->job;
    for (; e->n_reported < upto; e->n_reported++) {
        const rl__qtensor *t = &job->t[e->n_reported];
        if (!job->progress) continue;
        rl_quantize_event ev = {
            .index = (int64_t)e->n_reported,
            .count = (int64_t)job->n,
            .name = t->name,
            .n_dims = t->n_dims,
            .ne = t->ne,
            .type_in = t->type_in,
            .type_out = t->type_out,
            .converted = t->type_in != t->type_out || !t->data,
            .fallback = t->fallback,
            .bytes_in = tensor_bytes(t->type_in, t->ne),
            .bytes_out = tensor_bytes(t->type_out, t->ne),
        };
        job->progress(job->progress_user, &ev);
    }
}

/* One thread's share of a chunk: rows are converted one at a time through a row of
 * floats (dequantized, generated, or read in place when the source is F32). */
static void convert_rows(void *ctx, int ith, int nth) {
    engine *e = ctx;
    const rl__qtensor *t = e->t;
    const int64_t ne0 = t->ne[0];
    int64_t r0 = e->row0 + e->n_rows * ith / nth, r1 = e->row0 + e->n_rows * (ith + 1) / nth;
    float *buf = e->scratch + (size_t)ith * (size_t)ne0;
    const uint8_t *src = t->data;
    e->st[ith] = RL_OK;
    for (int64_t r = r0; r < r1; r++) {
        const float *x;
        rl_status s = RL_OK;
        if (!src) {
            s = e->job->gen(e->job->gen_user, e->ti, r, buf);
            x = buf;
        } else if (t->type_in == RL_TYPE_F32) {
            x = (const float *)(src + (size_t)r * e->src_rb);
        } else {
            s = rl_dequantize(t->type_in, src + (size_t)r * e->src_rb, buf, ne0);
            x = buf;
        }
        if (s == RL_OK && src) {
            for (int64_t k = 0; k < ne0; k++) {
                if (!isfinite(x[k])) {
                    s = RL_ERR_INVALID_ARG;
                    break;
                }
            }
        }
        uint8_t *out = e->dst + (size_t)(r - e->row0) * e->dst_rb;
        if (s == RL_OK) {
            if (t->type_out == RL_TYPE_F32) {
                memcpy(out, x, (size_t)ne0 * sizeof(float));
            } else {
                const float *imx = NULL;
                if (t->imatrix) imx = t->imatrix + ((r / t->ne[1]) % t->ne[2]) * ne0;
                s = rl_quantize(t->type_out, x, out, 1, ne0, imx);
            }
        }
        if (s != RL_OK) {
            e->st[ith] = s;
            e->bad_row[ith] = r;
            return;
        }
    }
}

static rl_status produce_rows(void *user, int64_t row0, int64_t n_rows, void *dst) {
    tuser *u = user;
    engine *e = u->e;
    const rl__qtensor *t = &e->job->t[u->i];
    if (row0 == 0) report_upto(e, u->i); /* tensors before this one without rows */
    e->src_rb = e->dst_rb = 0;
    if (t->data) rl_type_row_bytes(t->type_in, t->ne[0], &e->src_rb);
    rl_type_row_bytes(t->type_out, t->ne[0], &e->dst_rb);
    if (t->data && t->type_in == t->type_out) {
        memcpy(dst, (const uint8_t *)t->data + (size_t)row0 * e->src_rb,
               (size_t)n_rows * e->src_rb);
    } else {
        e->t = t;
        e->ti = u->i;
        e->row0 = row0;
        e->n_rows = n_rows;
        e->dst = dst;
        size_t need = (size_t)e->nth * (size_t)t->ne[0] * sizeof(float);
        if (!(e->scratch = rl__threadpool_scratch(e->pool, need))) {
            rl__fmt(e->msg, sizeof e->msg, "out of memory (%zu bytes of row buffers)", need);
            return RL_ERR_NOMEM;
        }
        rl__threadpool_run(e->pool, convert_rows, e);
        for (int k = 0; k < e->nth; k++) {
            if (e->st[k] == RL_OK) continue;
            int64_t r = e->bad_row[k];
            if (e->st[k] == RL_ERR_INVALID_ARG && t->data)
                rl__fmt(e->msg, sizeof e->msg, "tensor '%s': row %" PRId64 " holds a NaN or "
                        "infinite weight", t->name, r);
            else
                rl__fmt(e->msg, sizeof e->msg, "tensor '%s': row %" PRId64 ": converting %s "
                        "to %s failed: %s", t->name, r, rl_type_name(t->type_in),
                        rl_type_name(t->type_out), rl_status_str(e->st[k]));
            return e->st[k];
        }
    }
    if (row0 + n_rows == n_rows_of(t)) report_upto(e, u->i + 1);
    return RL_OK;
}

rl_status rl__qjob_write(rl__qjob *job, const char *path, char *err, size_t err_size) {
    engine e = {.job = job};
    rl_status s = rl_threadpool_create(job->n_threads, &e.pool);
    if (s != RL_OK) {
        rl__fmt(err, err_size, "cannot start the thread pool: %s", rl_status_str(s));
        return s;
    }
    e.nth = rl_threadpool_n_threads(e.pool);
    e.users = rl__calloc(RL_MAX(job->n, (size_t)1), sizeof *e.users);
    e.st = rl__calloc((size_t)e.nth, sizeof *e.st);
    e.bad_row = rl__calloc((size_t)e.nth, sizeof *e.bad_row);
    if (!e.users || !e.st || !e.bad_row) {
        rl__fmt(err, err_size, "out of memory");
        s = RL_ERR_NOMEM;
        goto done;
    }
    for (size_t i = 0; i < job->n && s == RL_OK; i++) {
        rl__qtensor *t = &job->t[i];
        e.users[i] = (tuser){&e, i};
        size_t out_rb = 0;
        rl_type_row_bytes(t->type_out, t->ne[0], &out_rb);
        if (out_rb == 0 || n_rows_of(t) == 0) /* nothing to produce: an empty tensor */
            s = rl_gguf_writer_add_tensor(job->w, t->name, t->type_out, t->n_dims, t->ne, "");
        else
            s = rl_gguf_writer_add_tensor_fn(job->w, t->name, t->type_out, t->n_dims, t->ne,
                                             produce_rows, &e.users[i]);
        if (s != RL_OK)
            rl__fmt(err, err_size, "tensor '%s': %s", t->name, rl_gguf_writer_errmsg(job->w));
    }
    if (s != RL_OK) goto done;
    s = rl_gguf_writer_write(job->w, path);
    if (s != RL_OK) {
        rl__fmt(err, err_size, "%s", e.msg[0] ? e.msg : rl_gguf_writer_errmsg(job->w));
    } else {
        report_upto(&e, job->n);
    }
done:
    rl__free(e.users);
    rl__free(e.st);
    rl__free(e.bad_row);
    rl_threadpool_free(e.pool);
    return s;
}

/* ---- rl_quantize_file -------------------------------------------------------------------- */

RL_API rl_quantize_params rl_quantize_default_params(void) {
    return (rl_quantize_params){
        .type = "Q8_0",
        .output_type = RL_TYPE_COUNT,
        .token_embd_type = RL_TYPE_COUNT,
    };
}

RL_API const char *rl_quantize_mix_name(size_t i) {
    const rl__mix *m = rl__mix_at(i);
    return m ? m->name : NULL;
}

/* Keys the output sets itself; the input's values are not copied (llama.cpp removes and
 * re-appends them, so they end the metadata). */
typedef struct set_keys {
    const char *k[12];
    size_t n;
} set_keys;

static bool is_set_key(const set_keys *s, const char *key) {
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->k[i], key)) return true;
    return false;
}

/* general.file_type of a COPY: the input's, or llama.cpp's guess from the most common
 * tensor type (the first to reach the maximum in visiting order), marked as guessed. */
static int64_t copy_file_type(const rl_gguf *g, const rl__mix_tensor *mt, const size_t *order,
                              size_t n) {
    int64_t i = rl_gguf_find_key(g, "general.file_type"), v;
    if (i >= 0 && rl_gguf_get_i64(g, i, &v) == RL_OK && v >= 0 && v <= UINT32_MAX) return v;
    uint32_t count[RL_TYPE_COUNT] = {0}, best_n = 0;
    rl_type best = RL_TYPE_F32;
    for (size_t k = 0; k < n; k++) {
        rl_type t = mt[order[k]].type;
        if (++count[t] > best_n) {
            best_n = count[t];
            best = t;
        }
    }
    rl__mix pure;
    int32_t ft = rl__mix_resolve(rl_type_name(best), &pure) == RL_OK ? pure.ftype : RL__FT_NONE;
    if (ft == RL__FT_NONE || best == RL_TYPE_MXFP4) ft = RL__FT_ALL_F32;
    return ft | RL__FT_GUESSED;
}

typedef struct qfile {
    const rl_quantize_params *p;
    rl__mix mix;
    rl_gguf *g;
    rl__imatrix *im;
    rl__mix_tensor *mt;
    rl_type *types;
    bool *fallback;
    size_t *order;
    rl__qtensor *qt;
    size_t n;
    rl_gguf_writer *w;
    char *err;
    size_t err_size;
} qfile;

static rl_status nomem(qfile *q) {
    rl__fmt(q->err, q->err_size, "out of memory");
    return RL_ERR_NOMEM;
}

/* Everything that can make the job fail is checked here, before a byte is written. */
static rl_status check_tensor(qfile *q, const rl__mix_tensor *t, rl__qtensor *o) {
    if (o->type_in == o->type_out) return RL_OK;
    const rl__type_traits *tin = rl__type_traits_get(o->type_in);
    if (!tin || !tin->to_float) {
        rl__fmt(q->err, q->err_size, "tensor '%s': cannot convert from %s", t->name,
                rl_type_name(o->type_in));
        return RL_ERR_UNSUPPORTED;
    }
    if (rl_type_is_quantized(o->type_in) && !q->p->allow_requantize) {
        rl__fmt(q->err, q->err_size, "tensor '%s' is %s already: requantizing to %s is "
                "disabled (allow_requantize, --allow-requantize)", t->name,
                rl_type_name(o->type_in), rl_type_name(o->type_out));
        return RL_ERR_INVALID_ARG;
    }
    if (q->im) {
        size_t n = 0;
        const float *w = rl__imatrix_find(q->im, t->name, &n);
        if (w && n == (size_t)(t->ne[0] * t->ne[2])) {
            o->imatrix = w;
        } else if (w && strcmp(t->name, "token_embd.weight") != 0) {
            rl__fmt(q->err, q->err_size, "imatrix entry '%s' has %zu values, the tensor needs "
                    "%" PRId64 " (%" PRId64 " columns x %" PRId64 " experts)", t->name, n,
                    t->ne[0] * t->ne[2], t->ne[0], t->ne[2]);
            return RL_ERR_INVALID_ARG;
        }
    }
    bool needs = rl__mix_requires_imatrix(&q->mix, t->name, o->type_out) ||
                 rl_type_needs_imatrix(o->type_out);
    if (needs && !o->imatrix) {
        if (!q->im)
            rl__fmt(q->err, q->err_size, "%s needs an importance matrix (tensor '%s' gets %s): "
                    "pass one with --imatrix FILE (rl_quantize_params.imatrix_path)",
                    q->mix.name, t->name, rl_type_name(o->type_out));
        else
            rl__fmt(q->err, q->err_size, "the importance matrix has no entry for tensor '%s', "
                    "which gets %s and needs one", t->name, rl_type_name(o->type_out));
        return RL_ERR_INVALID_ARG;
    }
    return RL_OK;
}

static rl_status build_metadata(qfile *q) {
    const rl_gguf *g = q->g;
    char ifile[128] = "";
    uint32_t n_entries = 0;
    int64_t chunks = 0;
    const char *dataset = NULL;
    set_keys sk = {{"general.quantization_version", "general.file_type", "split.no",
                    "split.count", "split.tensors.count"}, 5};
    if (q->im) {
        snprintf(ifile, sizeof ifile, "%s", q->p->imatrix_path); /* llama.cpp keeps 127 */
        n_entries = (uint32_t)rl__imatrix_n_entries(q->im);
        chunks = rl__imatrix_chunk_count(q->im);
        dataset = rl__imatrix_dataset(q->im);
        sk.k[sk.n++] = "quantize.imatrix.file";
        if (dataset) sk.k[sk.n++] = "quantize.imatrix.dataset";
        sk.k[sk.n++] = "quantize.imatrix.entries_count";
        if (chunks > 0) sk.k[sk.n++] = "quantize.imatrix.chunks_count";
    }
    rl_status s = RL_OK;
    for (int64_t i = 0; i < rl_gguf_n_kv(g) && s == RL_OK; i++)
        if (!is_set_key(&sk, rl_gguf_key(g, i))) s = rl_gguf_writer_copy_kv(q->w, g, i);
    int64_t ft = q->mix.ftype;
    if (q->mix.flags & RL__MIX_COPY) ft = copy_file_type(g, q->mt, q->order, q->n);
    if (s == RL_OK) s = rl_gguf_writer_set_u32(q->w, "general.quantization_version", 2);
    if (s == RL_OK && ft != RL__FT_NONE)
        s = rl_gguf_writer_set_u32(q->w, "general.file_type", (uint32_t)ft);
    if (q->im) {
        char ds[128];
        if (s == RL_OK) s = rl_gguf_writer_set_str(q->w, "quantize.imatrix.file", ifile);
        if (s == RL_OK && dataset) {
            snprintf(ds, sizeof ds, "%s", dataset);
            s = rl_gguf_writer_set_str(q->w, "quantize.imatrix.dataset", ds);
        }
        if (s == RL_OK)
            s = rl_gguf_writer_set_u32(q->w, "quantize.imatrix.entries_count", n_entries);
        if (s == RL_OK && chunks > 0)
            s = rl_gguf_writer_set_u32(q->w, "quantize.imatrix.chunks_count",
                                       (uint32_t)RL_MIN(chunks, (int64_t)UINT32_MAX));
    }
    if (s != RL_OK)
        rl__fmt(q->err, q->err_size, "metadata: %s", rl_gguf_writer_errmsg(q->w));
    return s;
}

/* The output must not be the input: same path, or another name of the same file. */
static rl_status check_paths(const char *in, const char *out, char *err, size_t err_size) {
    struct stat si, so;
    if (stat(in, &si) != 0) {
        rl__fmt(err, err_size, "cannot open '%s': %s", in, strerror(errno));
        return RL_ERR_IO;
    }
    if (!strcmp(in, out) || (stat(out, &so) == 0 && si.st_dev == so.st_dev &&
                             si.st_ino == so.st_ino)) {
        rl__fmt(err, err_size, "output '%s' is the input file: refusing to overwrite it", out);
        return RL_ERR_INVALID_ARG;
    }
    return RL_OK;
}

static rl_status quantize_file(qfile *q, const char *in, const char *out) {
    const rl_quantize_params *p = q->p;
    char *err = q->err;
    size_t es = q->err_size;
    rl_status s = rl__mix_resolve(p->type, &q->mix);
    if (s == RL_ERR_NOT_FOUND || s == RL_ERR_INVALID_ARG) {
        rl__fmt(err, es, "unknown type '%s': give a mix (Q4_K_M, Q8_0, IQ2_XS, ...) or a "
                "tensor type", p->type ? p->type : "(null)");
        return RL_ERR_INVALID_ARG;
    }
    if (s != RL_OK) {
        rl__fmt(err, es, "'%s' is an activation or integer type, not a weight type", p->type);
        return s;
    }
    if (p->output_type != RL_TYPE_COUNT && !rl_type_valid(p->output_type)) {
        rl__fmt(err, es, "output_type: %d is not a type", (int)p->output_type);
        return RL_ERR_INVALID_ARG;
    }
    if (p->token_embd_type != RL_TYPE_COUNT && !rl_type_valid(p->token_embd_type)) {
        rl__fmt(err, es, "token_embd_type: %d is not a type", (int)p->token_embd_type);
        return RL_ERR_INVALID_ARG;
    }
    if ((s = check_paths(in, out, err, es)) != RL_OK) return s;
    char gerr[384];
    if ((s = rl_gguf_open(in, &q->g, gerr, sizeof gerr)) != RL_OK) {
        rl__fmt(err, es, "%s", gerr);
        return s;
    }
    if (p->imatrix_path && (s = rl__imatrix_load(p->imatrix_path, &q->im, err, es)) != RL_OK)
        return s;

    const bool rules = rl_type_is_quantized(q->mix.base) && !p->pure &&
                       !(q->mix.flags & (RL__MIX_PURE | RL__MIX_COPY));
    rl__mix_model model;
    if ((s = rl__mix_model_from_gguf(q->g, rules, &model, err, es)) != RL_OK) return s;

    q->n = (size_t)rl_gguf_n_tensors(q->g);
    size_t n1 = RL_MAX(q->n, (size_t)1);
    q->mt = rl__calloc(n1, sizeof *q->mt);
    q->types = rl__calloc(n1, sizeof *q->types);
    q->fallback = rl__calloc(n1, sizeof *q->fallback);
    q->order = rl__calloc(n1, sizeof *q->order);
    q->qt = rl__calloc(n1, sizeof *q->qt);
    if (!q->mt || !q->types || !q->fallback || !q->order || !q->qt) return nomem(q);
    for (size_t i = 0; i < q->n; i++) {
        rl_gguf_tensor_info ti;
        rl_gguf_tensor(q->g, (int64_t)i, &ti);
        q->mt[i].name = ti.name;
        q->mt[i].type = ti.type;
        memcpy(q->mt[i].ne, ti.ne, sizeof ti.ne);
    }
    rl__mix_opts opts = {.has_imatrix = q->im != NULL, .pure = p->pure,
                         .output_type = p->output_type, .token_embd_type = p->token_embd_type};
    if ((s = rl__mix_plan(&q->mix, &model, &opts, q->mt, q->n, q->types, q->fallback, err,
                          es)) != RL_OK)
        return s == RL_ERR_NOMEM ? nomem(q) : s;
    rl__mix_order(q->mt, q->n, q->order);
    for (size_t k = 0; k < q->n; k++) {
        size_t i = q->order[k];
        rl_gguf_tensor_info ti;
        rl_gguf_tensor(q->g, (int64_t)i, &ti);
        rl__qtensor *o = &q->qt[k];
        *o = (rl__qtensor){.name = ti.name, .n_dims = ti.n_dims, .type_in = ti.type,
                           .data = ti.data, .type_out = q->types[i],
                           .fallback = q->fallback[i]};
        memcpy(o->ne, ti.ne, sizeof ti.ne);
        if ((s = check_tensor(q, &q->mt[i], o)) != RL_OK) return s;
    }
    if ((s = rl_gguf_writer_create(&q->w)) != RL_OK) return nomem(q);
    if ((s = build_metadata(q)) != RL_OK) return s;
    rl__qjob job = {.w = q->w, .t = q->qt, .n = q->n, .n_threads = p->n_threads,
                    .progress = p->progress, .progress_user = p->progress_user};
    return rl__qjob_write(&job, out, err, es);
}

RL_API rl_status rl_quantize_file(const char *in_path, const char *out_path,
                                  const rl_quantize_params *p, char *err, size_t err_size) {
    rl_quantize_params def = rl_quantize_default_params();
    if (!p) p = &def;
    if (!in_path || !*in_path || !out_path || !*out_path) {
        rl__fmt(err, err_size, "%s path is empty", !in_path || !*in_path ? "input" : "output");
        return RL_ERR_INVALID_ARG;
    }
    qfile q = {.p = p, .err = err, .err_size = err_size};
    rl_status s = quantize_file(&q, in_path, out_path);
    rl_gguf_writer_free(q.w);
    rl__free(q.mt);
    rl__free(q.types);
    rl__free(q.fallback);
    rl__free(q.order);
    rl__free(q.qt);
    rl__imatrix_free(q.im);
    rl_gguf_free(q.g);
    return s;
}
