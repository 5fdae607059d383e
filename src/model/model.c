/*
 * model.c - rl_model: open the GGUF file (mapped read-only: the weights are used in
 * place, never copied), load the vocabulary, let the architecture named by
 * general.architecture pick its hyperparameters and tensors, refuse tensors nobody uses
 * (as llama.cpp does: a file with extra tensors is not the model we think it is), and
 * optionally lock the mapping in RAM.
 */
#include "model.h"

#include <errno.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

const rl__arch *rl__arch_find(const char *name) {
    static const rl__arch *const k_archs[] = {
#define RL__ARCH_PTR(a) &rl__arch_##a,
        RL__ARCH_LIST(RL__ARCH_PTR)
#undef RL__ARCH_PTR
    };
    for (size_t i = 0; i < RL_ARRAY_LEN(k_archs); i++)
        if (!strcmp(k_archs[i]->name, name)) return k_archs[i];
    return NULL;
}

RL_API rl_model_params rl_model_default_params(void) {
    rl_model_params p = {.n_threads = 0, .use_mlock = false};
    return p;
}

/* Lock the pages that hold tensor data. With CPU copies (pack.c): the copies, and the
 * pages of each other tensor alone (one range over all tensors would read the released
 * file pages of the packed ones back in). */
static rl_status lock_weights(rl_model *m, char *err, size_t err_size) {
    const rl_gguf *g = m->gguf;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const bool per_tensor = rl__cpu_packed_bytes(m->cpu_packed) > 0;
    size_t bytes = rl__cpu_packed_bytes(m->cpu_packed);
    int e = 0;
    if (rl__cpu_packed_lock(m->cpu_packed) != RL_OK) e = errno;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int64_t i = 0; i < rl_gguf_n_tensors(g) && !e; i++) {
        rl_gguf_tensor_info ti;
        rl_gguf_tensor(g, i, &ti);
        if (!ti.nbytes || rl__cpu_packed_has(m->cpu_packed, ti.data)) continue;
        if (per_tensor) { /* unlocked by the unmapping */
            const uintptr_t a = (uintptr_t)ti.data & ~(page - 1);
            bytes += (uintptr_t)ti.data + ti.nbytes - a;
            if (mlock((void *)a, (uintptr_t)ti.data + ti.nbytes - a) != 0) e = errno;
            continue;
        }
        lo = RL_MIN(lo, (uintptr_t)ti.data);
        hi = RL_MAX(hi, (uintptr_t)ti.data + ti.nbytes);
    }
    if (!e && hi > lo) {
        lo &= ~(page - 1);
        bytes += hi - lo;
        if (mlock((void *)lo, hi - lo) != 0) {
            e = errno;
        } else {
            m->lock_addr = (void *)lo;
            m->lock_len = hi - lo;
        }
    }
    if (!e) return RL_OK;
    rl__fmt(err, err_size,
            "mlock of %zu bytes of weights failed: %s (the limit is RLIMIT_MEMLOCK, see "
            "ulimit -l)",
            bytes, strerror(e));
    return RL_ERR_IO;
}

RL_API void rl_model_free(rl_model *m) {
    if (!m) return;
    rl__backend_free(m->dev);
    if (m->lock_addr) munlock(m->lock_addr, m->lock_len);
    rl__cpu_packed_free(m->cpu_packed);
    for (size_t i = 0; i < m->n_owned; i++) rl__free(m->owned[i]);
    rl__free(m->owned);
    rl__free(m->owned_bytes);
    rl__free(m->layers);
    rl_vocab_free(m->vocab);
    rl_gguf_free(m->gguf);
    rl__free(m);
}

RL_API rl_status rl_model_load(const char *path, const rl_model_params *p, rl_model **out,
                               char *err, size_t err_size) {
    if (err_size) err[0] = 0;
    if (!out) return RL_ERR_INVALID_ARG;
    *out = NULL;
    if (!path) {
        rl__fmt(err, err_size, "path is NULL");
        return RL_ERR_INVALID_ARG;
    }
    rl_model_params def = rl_model_default_params();
    if (!p) p = &def;

    rl_status st;
    rl_model *m = rl__calloc(1, sizeof *m);
    if (!m) {
        rl__fmt(err, err_size, "out of memory");
        return RL_ERR_NOMEM;
    }
    m->n_threads = p->n_threads;
    st = rl_gguf_open(path, &m->gguf, err, err_size);
    if (st != RL_OK) goto fail;

    int64_t ka = rl_gguf_find_key(m->gguf, "general.architecture");
    const char *arch = NULL;
    size_t arch_len = 0;
    if (ka < 0 || rl_gguf_get_str(m->gguf, ka, &arch, &arch_len) != RL_OK) {
        rl__fmt(err, err_size, "%s: missing or non-string metadata key general.architecture",
                path);
        st = RL_ERR_BAD_FILE;
        goto fail;
    }
    m->arch = rl__arch_find(arch);
    if (!m->arch || arch_len >= sizeof m->arch_name) {
        rl__fmt(err, err_size, "%s: architecture \"%.64s\" is not supported", path, arch);
        st = RL_ERR_UNSUPPORTED;
        goto fail;
    }
    memcpy(m->arch_name, arch, arch_len + 1);

    char verr[256];
    st = rl_vocab_load(m->gguf, &m->vocab, verr, sizeof verr);
    if (st != RL_OK) {
        rl__fmt(err, err_size, "%s: vocabulary: %s", path, verr);
        goto fail;
    }

    rl__loader ld = {.m = m, .g = m->gguf, .arch = m->arch_name, .err = verr,
                     .err_size = sizeof verr};
    int64_t n_tensors = rl_gguf_n_tensors(m->gguf);
    ld.used = rl__calloc((size_t)(n_tensors ? n_tensors : 1), 1);
    if (!ld.used) {
        rl__fmt(err, err_size, "out of memory");
        st = RL_ERR_NOMEM;
        goto fail;
    }
    m->hp.rope_mode = m->arch->rope_mode;
    st = rl__ld_hparams(&ld);
    if (st == RL_OK) st = m->arch->load(m, &ld);
    for (int64_t i = 0; st == RL_OK && i < n_tensors; i++) {
        rl_gguf_tensor_info ti;
        rl_gguf_tensor(m->gguf, i, &ti);
        if (!ld.used[i])
            st = rl__ld_fail(&ld, RL_ERR_BAD_FILE, "tensor %s is not used by architecture %s",
                             ti.name, m->arch_name);
        else m->weight_bytes += ti.nbytes;
    }
    rl__free(ld.used);
    if (st != RL_OK) {
        rl__fmt(err, err_size, "%s: %s", path, verr);
        goto fail;
    }
    st = rl__model_device_init(m, p, err, err_size);
    if (st != RL_OK) goto fail;
    st = rl__model_cpu_pack(m, err, err_size);
    if (st != RL_OK) goto fail;
    if (p->use_mlock) {
        st = lock_weights(m, err, err_size);
        if (st != RL_OK) goto fail;
    }
    *out = m;
    return RL_OK;

fail:
    rl_model_free(m);
    return st;
}

RL_API const char *rl_model_arch(const rl_model *m) { return m ? m->arch_name : ""; }
RL_API int32_t rl_model_n_vocab(const rl_model *m) { return m ? m->hp.n_vocab : 0; }
RL_API int32_t rl_model_n_ctx_train(const rl_model *m) { return m ? m->hp.n_ctx_train : 0; }
RL_API int32_t rl_model_n_embd(const rl_model *m) { return m ? m->hp.n_embd : 0; }
RL_API int32_t rl_model_n_layer(const rl_model *m) { return m ? m->hp.n_layer : 0; }
RL_API uint64_t rl_model_weight_bytes(const rl_model *m) { return m ? m->weight_bytes : 0; }
RL_API const rl_vocab *rl_model_vocab(const rl_model *m) { return m ? m->vocab : NULL; }
RL_API const rl_gguf *rl_model_gguf(const rl_model *m) { return m ? m->gguf : NULL; }
