/*
 * device.c - putting a loaded model on a device backend (rl_model_params.device): parse
 * the name, open the backend, convert the weights of types it has no kernel for
 * (convert.c; a warning on stderr says which, so that a model is never silently slow),
 * check that the weights fit the share of device memory gpu_mem grants, and copy them
 * once: the mapped tensor data as a few contiguous ranges (converted tensors left out),
 * the converted tensors, and the float copies the loader made of vectors stored in other
 * types. Contexts then run on forks of m->dev. rl_model_device_budget tells callers how
 * many tokens of KV cache fit beside the weights.
 */
#include "model.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define GIB(x) ((double)(x) / 1073741824.0)

/* bytes for a message: "1.50 GiB", "12.3 MiB", "800 B" */
typedef struct size_str {
    char s[32];
} size_str;
static size_str sz(uint64_t b) {
    size_str r;
    if (b >= ((uint64_t)1 << 30))
        snprintf(r.s, sizeof r.s, "%.2f GiB", GIB(b));
    else if (b >= ((uint64_t)1 << 20))
        snprintf(r.s, sizeof r.s, "%.1f MiB", (double)b / 1048576.0);
    else if (b >= 1024)
        snprintf(r.s, sizeof r.s, "%.1f KiB", (double)b / 1024.0);
    else
        snprintf(r.s, sizeof r.s, "%llu B", (unsigned long long)b);
    return r;
}
/* Room for what a context's queue grows later than its dry run (staged host arrays,
 * remembered tables, captured step graphs): counted into rl_device_budget.workspace. */
#define DEV_CONTEXT_EXTRA ((uint64_t)32 << 20)
/* Mapped tensors closer than this are copied as one range (the gap is GGUF padding). */
#define RANGE_GAP 4096

/* "cuda" -> 0, "cuda:N" -> N; -1 for anything else. */
static int cuda_ordinal(const char *s) {
    if (strncmp(s, "cuda", 4) != 0) return -1;
    if (s[4] == 0) return 0;
    if (s[4] != ':' || !s[5]) return -1;
    int v = 0;
    for (const char *c = s + 5; *c; c++) {
        if (*c < '0' || *c > '9' || v > 9999) return -1;
        v = v * 10 + (*c - '0');
    }
    return v;
}

static rl_status bad_name(const char *device, char *err, size_t es) {
    rl__fmt(err, es, "device \"%.64s\" is not known (cpu, cuda, cuda:N)", device);
    return RL_ERR_INVALID_ARG;
}

/* rl_device_check's messages leave the name out: the caller prints it (as "--device"). */
RL_API rl_status rl_device_check(const char *device, char *err, size_t es) {
    if (es) err[0] = 0;
    if (!device || !strcmp(device, "cpu")) return RL_OK;
    int ord = cuda_ordinal(device);
    if (ord < 0) {
        rl__fmt(err, es, "\"%.64s\" is not a device (cpu, cuda, cuda:N)", device);
        return RL_ERR_INVALID_ARG;
    }
    char name[128];
    size_t total, free_b;
    rl_status st = rl__cuda_device_info(ord, name, sizeof name, &total, &free_b, err, es);
    if (st != RL_OK && es && !err[0]) rl__fmt(err, es, "%s", rl_status_str(st));
    return st;
}

RL_API double rl_device_copy_bandwidth(const char *device) {
    const int ord = device ? cuda_ordinal(device) : -1;
    return ord < 0 ? 0 : rl__cuda_copy_bandwidth(ord);
}

/* ---- conversion ---- */

/* The offsets of every rl_weight field of a layer. A converted tensor's copy replaces the
 * data of each weight that points at the tensor; a 2-D tensor of a converted type that no
 * weight here points at fails the load (a field added to rl__layer and missing here). */
static const size_t k_layer_weights[] = {
    offsetof(rl__layer, wq),
    offsetof(rl__layer, wk),
    offsetof(rl__layer, wv),
    offsetof(rl__layer, wqkv),
    offsetof(rl__layer, wo),
    offsetof(rl__layer, ffn_gate),
    offsetof(rl__layer, ffn_up),
    offsetof(rl__layer, ffn_down),
    offsetof(rl__layer, ffn_gate_inp),
    offsetof(rl__layer, ffn_gate_exps),
    offsetof(rl__layer, ffn_up_exps),
    offsetof(rl__layer, ffn_down_exps),
    offsetof(rl__layer, ffn_gate_shexp),
    offsetof(rl__layer, ffn_up_shexp),
    offsetof(rl__layer, ffn_down_shexp),
    offsetof(rl__layer, ffn_gate_inp_shexp),
};

size_t rl__model_weights(rl_model *m, rl_weight **out, size_t cap) {
    rl_weight *top[] = {&m->tok_embd, &m->output};
    const size_t per = RL_ARRAY_LEN(k_layer_weights);
    const size_t n_w = RL_ARRAY_LEN(top) + (size_t)m->hp.n_layer * per;
    for (size_t i = 0; i < n_w && i < cap; i++)
        out[i] = i < RL_ARRAY_LEN(top)
                     ? top[i]
                     : (rl_weight *)((uint8_t *)&m->layers[(i - RL_ARRAY_LEN(top)) / per] +
                                     k_layer_weights[(i - RL_ARRAY_LEN(top)) % per]);
    return n_w;
}

/* Point the weights reading `old` at nw's data and type (nw NULL: only count them). */
static int retarget(rl_model *m, const void *old, const rl_weight *nw) {
    int n = 0;
    rl_weight *top[] = {&m->tok_embd, &m->output};
    const size_t n_w = RL_ARRAY_LEN(top) + (size_t)m->hp.n_layer * RL_ARRAY_LEN(k_layer_weights);
    for (size_t i = 0; i < n_w; i++) {
        rl_weight *w;
        if (i < RL_ARRAY_LEN(top)) {
            w = top[i];
        } else {
            size_t k = i - RL_ARRAY_LEN(top);
            w = (rl_weight *)((uint8_t *)&m->layers[k / RL_ARRAY_LEN(k_layer_weights)] +
                              k_layer_weights[k % RL_ARRAY_LEN(k_layer_weights)]);
        }
        if (!w->data || w->data != old) continue;
        n++;
        if (nw) {
            w->type = nw->type;
            w->row_bytes = nw->row_bytes;
            w->data = nw->data;
        }
    }
    return n;
}

/* What the load converted, per (from, to) pair, for the warning. */
typedef struct conv_note {
    rl_type from, to;
    int n;
    uint64_t bytes_from, bytes_to;
    char first[64];
} conv_note;

/* Keep buffer p (bytes) with the model's owned memory, freed with it. */
static rl_status own(rl_model *m, void *p, size_t bytes) {
    if (m->n_owned == m->cap_owned) {
        size_t cap = m->cap_owned ? m->cap_owned * 2 : 16;
        void **o = rl__realloc(m->owned, cap * sizeof *o);
        if (!o) return RL_ERR_NOMEM;
        m->owned = o;
        size_t *ob = rl__realloc(m->owned_bytes, cap * sizeof *ob);
        if (!ob) return RL_ERR_NOMEM;
        m->owned_bytes = ob;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned] = p;
    m->owned_bytes[m->n_owned++] = bytes;
    return RL_OK;
}

/* Convert every tensor of a type the device lacks; conv[i] set for the converted ones. */
static rl_status convert_all(rl_model *m, const char *device, uint8_t *conv, char *err, size_t es) {
    const rl_gguf *g = m->gguf;
    conv_note notes[32];
    int n_notes = 0;
    rl_threadpool *pool = NULL;
    rl_status st = RL_OK;
    for (int64_t i = 0; i < rl_gguf_n_tensors(g) && st == RL_OK; i++) {
        rl_gguf_tensor_info ti;
        rl_gguf_tensor(g, i, &ti);
        if (!ti.nbytes || m->dev->ops->supports_type(m->dev, ti.type)) continue;
        const int refs = retarget(m, ti.data, NULL);
        if (refs == 0 && ti.n_dims < 2) continue; /* a vector, read through a float copy */
        const int64_t ne0 = ti.ne[0];
        int64_t nrows = 1;
        for (uint32_t d = 1; d < ti.n_dims; d++) nrows *= ti.ne[d];
        const rl_type to = rl__convert_target(ti.type, ne0);
        if (refs == 0 || to == ti.type || !m->dev->ops->supports_type(m->dev, to)) {
            rl__fmt(err, es, "device %s: tensor %s: type %s has no kernel on this backend%s",
                    device, ti.name, rl_type_name(ti.type),
                    refs == 0 ? " and is not a weight the loader converts" : "");
            return RL_ERR_UNSUPPORTED;
        }
        size_t row_bytes = 0;
        rl_weight nw = {.type = to};
        if (rl_type_row_bytes(to, ne0, &row_bytes) != RL_OK ||
            (uint64_t)nrows > SIZE_MAX / row_bytes) {
            rl__fmt(err, es, "device %s: tensor %s: too large to convert", device, ti.name);
            return RL_ERR_RANGE;
        }
        nw.row_bytes = row_bytes;
        void *buf = rl__malloc(RL_MAX((size_t)nrows * row_bytes, (size_t)64));
        if (!buf || own(m, buf, (size_t)nrows * row_bytes) != RL_OK) {
            rl__free(buf);
            st = RL_ERR_NOMEM;
            break;
        }
        if (!pool && rl_threadpool_create(m->n_threads, &pool) != RL_OK) pool = NULL;
        st = rl__convert_rows(pool, ti.type, ti.data, ne0, nrows, to, buf);
        if (st != RL_OK) {
            rl__fmt(err, es, "device %s: tensor %s: converting %s to %s failed: %s", device,
                    ti.name, rl_type_name(ti.type), rl_type_name(to), rl_status_str(st));
            break;
        }
        nw.data = buf;
        retarget(m, ti.data, &nw);
        conv[i] = 1;
        int k = 0;
        while (k < n_notes && !(notes[k].from == ti.type && notes[k].to == to)) k++;
        if (k == n_notes && n_notes < (int)RL_ARRAY_LEN(notes)) {
            notes[n_notes] = (conv_note){.from = ti.type, .to = to};
            rl__fmt(notes[k].first, sizeof notes[k].first, "%s", ti.name);
            n_notes++;
        }
        if (k < n_notes) {
            notes[k].n++;
            notes[k].bytes_from += ti.nbytes;
            notes[k].bytes_to += (uint64_t)nrows * row_bytes;
        }
    }
    rl_threadpool_free(pool);
    if (st == RL_ERR_NOMEM) rl__fmt(err, es, "device %s: out of memory converting weights", device);
    for (int k = 0; k < n_notes && st == RL_OK; k++)
        fprintf(stderr,
                "ruvllm: warning: device %s has no kernel for %s weights: %d tensor%s (%s%s) "
                "converted at load to %s, %.1f MiB -> %.1f MiB\n",
                device, rl_type_name(notes[k].from), notes[k].n, notes[k].n == 1 ? "" : "s",
                notes[k].first, notes[k].n > 1 ? ", ..." : "", rl_type_name(notes[k].to),
                (double)notes[k].bytes_from / 1048576.0, (double)notes[k].bytes_to / 1048576.0);
    return st;
}

/* ---- upload ---- */

typedef struct host_range {
    uintptr_t lo, hi;
} host_range;

static int cmp_range(const void *a, const void *b) {
    const host_range *x = a, *y = b;
    return (x->lo > y->lo) - (x->lo < y->lo);
}

/* The mapped tensors not converted, as contiguous ranges (sorted, merged across padding)
 * into *out (*n of them, malloc'd), and their bytes. */
static rl_status mapped_ranges(const rl_model *m, const uint8_t *conv, host_range **out, size_t *n,
                               uint64_t *bytes) {
    const rl_gguf *g = m->gguf;
    const int64_t nt = rl_gguf_n_tensors(g);
    host_range *r = rl__malloc((size_t)(nt ? nt : 1) * sizeof *r);
    if (!r) return RL_ERR_NOMEM;
    size_t k = 0;
    for (int64_t i = 0; i < nt; i++) {
        rl_gguf_tensor_info ti;
        rl_gguf_tensor(g, i, &ti);
        if (!ti.nbytes || conv[i]) continue;
        r[k++] = (host_range){(uintptr_t)ti.data, (uintptr_t)ti.data + ti.nbytes};
    }
    qsort(r, k, sizeof *r, cmp_range);
    size_t w = 0;
    for (size_t i = 0; i < k; i++) {
        if (w > 0 && r[i].lo <= r[w - 1].hi + RANGE_GAP)
            r[w - 1].hi = RL_MAX(r[w - 1].hi, r[i].hi);
        else
            r[w++] = r[i];
    }
    *bytes = 0;
    for (size_t i = 0; i < w; i++) *bytes += r[i].hi - r[i].lo;
    *out = r;
    *n = w;
    return RL_OK;
}

rl_status rl__model_device_init(rl_model *m, const rl_model_params *p, char *err, size_t es) {
    const char *device = p->device;
    const bool on_cpu = !device || !strcmp(device, "cpu");
    if (!(p->gpu_mem >= 0 && p->gpu_mem <= 1)) {
        rl__fmt(err, es, "gpu_mem = %g is out of range: a fraction in (0, 1], or 0 for no cap",
                (double)p->gpu_mem);
        return RL_ERR_INVALID_ARG;
    }
    if (on_cpu && p->gpu_mem > 0) {
        rl__fmt(err, es, "gpu_mem = %g applies to a GPU device, and device is \"cpu\"",
                (double)p->gpu_mem);
        return RL_ERR_INVALID_ARG;
    }
    if (on_cpu) return RL_OK;
    int ord = cuda_ordinal(device);
    if (ord < 0) return bad_name(device, err, es);
    char berr[256] = "";
    rl_status st = rl__backend_cuda_create(ord, &m->dev, berr, sizeof berr);
    if (st != RL_OK) {
        rl__fmt(err, es, "device %s: %s", device, berr[0] ? berr : rl_status_str(st));
        return st;
    }
    m->dev_ordinal = ord;
    m->gpu_mem = p->gpu_mem;

    const int64_t nt = rl_gguf_n_tensors(m->gguf);
    uint8_t *conv = rl__calloc((size_t)(nt ? nt : 1), 1);
    if (!conv) return RL_ERR_NOMEM;
    st = convert_all(m, device, conv, err, es);
    host_range *r = NULL;
    size_t n_r = 0;
    uint64_t need = 0;
    if (st == RL_OK) st = mapped_ranges(m, conv, &r, &n_r, &need);
    rl__free(conv);
    if (st != RL_OK) {
        if (st == RL_ERR_NOMEM && !err[0]) rl__fmt(err, es, "out of memory");
        return st;
    }
    for (size_t i = 0; i < m->n_owned; i++) need += m->owned_bytes[i];

    /* the weights must fit the budget and the free memory */
    char name[128];
    size_t total = 0, free_b = 0;
    st = rl__cuda_device_info(ord, name, sizeof name, &total, &free_b, berr, sizeof berr);
    if (st != RL_OK) {
        rl__free(r);
        rl__fmt(err, es, "device %s: %s", device, berr);
        return st;
    }
    const uint64_t budget = p->gpu_mem > 0 ? (uint64_t)((double)p->gpu_mem * (double)total) : total;
    if (need > budget || need > free_b) {
        rl__free(r);
        if (need > budget && p->gpu_mem > 0)
            rl__fmt(err, es,
                    "device %s (%s): the weights take %s, more than gpu_mem %g of %s allows "
                    "(%s)",
                    device, name, sz(need).s, (double)p->gpu_mem, sz(total).s, sz(budget).s);
        else
            rl__fmt(err, es, "device %s (%s): the weights take %s and only %s of %s are free",
                    device, name, sz(need).s, sz(free_b).s, sz(total).s);
        return RL_ERR_NOMEM;
    }

    for (size_t i = 0; i < n_r && st == RL_OK; i++)
        st = m->dev->ops->map_host(m->dev, (const void *)r[i].lo, r[i].hi - r[i].lo);
    rl__free(r);
    for (size_t i = 0; i < m->n_owned && st == RL_OK; i++)
        st = m->dev->ops->map_host(m->dev, m->owned[i], m->owned_bytes[i]);
    if (st != RL_OK) {
        rl__fmt(err, es, "device %s: cannot copy %s of weights to the device: %s", device,
                sz(need).s, rl_status_str(st));
        return st;
    }
    m->dev_bytes = need;
    return RL_OK;
}

/* ---- budget ---- */

/* A context's device memory besides its KV cache, for passes of n_batch tokens: the
 * forward arena the architecture's dry run measures (as a context sizes itself: ops
 * skipped, buffers fake), plus what a fresh queue of the backend allocates for itself
 * and for that dry run (attention partials, matmul workspaces, library handles),
 * measured as the drop of free device memory while a fork does it. */
static rl_status dry_workspace(const rl_model *m, rl_type kv_type, int32_t n_batch, uint64_t *out) {
    *out = 0;
    const rl__hparams *hp = &m->hp;
    rl_kv_layer *kv = rl__calloc((size_t)hp->n_layer, sizeof *kv);
    rl_rope_params *rope = rl__calloc((size_t)hp->n_layer, sizeof *rope);
    if (!kv || !rope) {
        rl__free(kv);
        rl__free(rope);
        return RL_ERR_NOMEM;
    }
    for (int32_t il = 0; il < hp->n_layer; il++) {
        kv[il].type = kv_type;
        kv[il].n_embd_k = hp->n_head_kv * hp->head_dim_k;
        kv[il].n_embd_v = hp->n_head_kv * hp->head_dim_v;
        rl_type_row_bytes(kv_type, kv[il].n_embd_k, &kv[il].k_row_bytes);
        rl_type_row_bytes(kv_type, kv[il].n_embd_v, &kv[il].v_row_bytes);
    }
    rl__rope_resolve(m, RL_MIN(hp->n_ctx_train, 4096), rope);
    char name[8], e[8];
    size_t total, free0 = 0, free1 = 0;
    rl__cuda_device_info(m->dev_ordinal, name, sizeof name, &total, &free0, e, sizeof e);
    rl_backend *be = NULL;
    rl_status st = m->dev->ops->fork(m->dev, &be);
    if (st != RL_OK) {
        rl__free(kv);
        rl__free(rope);
        return st;
    }
    rl__arena arena = {0}, host = {0};
    rl__fwd f = {
        .m = m,
        .be = be,
        .arena = &arena,
        .dry = true,
        .n_tok = n_batch,
        .n_out = RL_MIN(n_batch, 64),
        .kv = kv,
        .rope = rope,
        .host = &host,
    };
    f.logits = rl__fwd_alloc(&f, (int64_t)f.n_out * hp->n_vocab);
    st = m->arch->forward(&f);
    if (st == RL_OK) st = be->ops->sync(be);
    rl__cuda_device_info(m->dev_ordinal, name, sizeof name, &total, &free1, e, sizeof e);
    rl__backend_free(be);
    *out = (uint64_t)arena.peak + (free0 > free1 ? free0 - free1 : 0) + DEV_CONTEXT_EXTRA;
    rl__free(kv);
    rl__free(rope);
    return st;
}

RL_API rl_status rl_model_device_budget(const rl_model *m, rl_type kv_type, int32_t n_batch,
                                        rl_device_budget *out, char *err, size_t es) {
    if (es) err[0] = 0;
    if (!m || !out) {
        rl__fmt(err, es, "%s is NULL", !m ? "m" : "out");
        return RL_ERR_INVALID_ARG;
    }
    memset(out, 0, sizeof *out);
    if (!m->dev) {
        rl__fmt(err, es, "the model runs on the CPU: it has no device budget");
        return RL_ERR_INVALID_ARG;
    }
    if (kv_type != RL_TYPE_F16 && kv_type != RL_TYPE_F32 && kv_type != RL_TYPE_Q8_0) {
        rl__fmt(err, es, "kv_type %s is not a cache type (F16, F32, Q8_0)",
                rl_type_valid((int)kv_type) ? rl_type_name(kv_type) : "?");
        return RL_ERR_INVALID_ARG;
    }
    if (n_batch <= 0) n_batch = 512;
    char name[96], berr[256] = "";
    size_t total = 0, free_b = 0;
    rl_status st =
        rl__cuda_device_info(m->dev_ordinal, name, sizeof name, &total, &free_b, berr, sizeof berr);
    if (st != RL_OK) {
        rl__fmt(err, es, "cuda:%d: %s", m->dev_ordinal, berr);
        return st;
    }
    rl__fmt(out->device, sizeof out->device, "cuda:%d (%s)", m->dev_ordinal, name);
    out->total = total;
    out->free = free_b;
    out->budget = m->gpu_mem > 0 ? (uint64_t)((double)m->gpu_mem * (double)total) : total;
    out->weights = m->dev_bytes;
    const rl__hparams *hp = &m->hp;
    size_t kb = 0, vb = 0;
    rl_type_row_bytes(kv_type, (int64_t)hp->n_head_kv * hp->head_dim_k, &kb);
    rl_type_row_bytes(kv_type, (int64_t)hp->n_head_kv * hp->head_dim_v, &vb);
    out->kv_token_bytes = (uint64_t)hp->n_layer * (kb + vb);
    st = dry_workspace(m, kv_type, n_batch, &out->workspace);
    if (st != RL_OK) {
        rl__fmt(err, es, "sizing the forward pass failed: %s", rl_status_str(st));
        return st;
    }
    uint64_t avail = out->budget > out->weights ? out->budget - out->weights : 0;
    avail = RL_MIN(avail, out->free);
    avail = avail > out->workspace ? avail - out->workspace : 0;
    out->kv_tokens = out->kv_token_bytes ? (int64_t)(avail / out->kv_token_bytes) : 0;
    return RL_OK;
}
