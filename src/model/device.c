/*
 * device.c - putting a loaded model on a device backend (rl_model_params.device): parse
 * the name, open the backend, check that it has a kernel for every weight type (a model
 * the device cannot run fails at load, never later and never silently on the CPU), and
 * copy the weights once: the mapped tensor data as one range, plus the float copies the
 * loader made of vectors stored in other types. Contexts then run on forks of m->dev.
 */
#include "model.h"

#include <stdint.h>

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

rl_status rl__model_device_init(rl_model *m, const char *device, char *err, size_t es) {
    if (!device || !strcmp(device, "cpu")) return RL_OK;
    int ord = cuda_ordinal(device);
    if (ord < 0) {
        rl__fmt(err, es, "device \"%.64s\" is not known (cpu, cuda, cuda:N)", device);
        return RL_ERR_INVALID_ARG;
    }
    char berr[256] = "";
    rl_status st = rl__backend_cuda_create(ord, &m->dev, berr, sizeof berr);
    if (st != RL_OK) {
        rl__fmt(err, es, "device %s: %s", device, berr[0] ? berr : rl_status_str(st));
        return st;
    }

    const rl_gguf *g = m->gguf;
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int64_t i = 0; i < rl_gguf_n_tensors(g); i++) {
        rl_gguf_tensor_info ti;
        rl_gguf_tensor(g, i, &ti);
        /* vectors are read as float (F32 in place, others through the loader's copies) */
        if (ti.n_dims >= 2 && !m->dev->ops->supports_type(m->dev, ti.type)) {
            rl__fmt(err, es,
                    "device %s: tensor %s: type %s has no kernel on this backend (it runs "
                    "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K-Q6_K, IQ4_NL, IQ4_XS)",
                    device, ti.name, rl_type_name(ti.type));
            return RL_ERR_UNSUPPORTED;
        }
        if (!ti.nbytes) continue;
        lo = RL_MIN(lo, (uintptr_t)ti.data);
        hi = RL_MAX(hi, (uintptr_t)ti.data + ti.nbytes);
    }
    if (hi > lo) {
        st = m->dev->ops->map_host(m->dev, (const void *)lo, hi - lo);
        if (st != RL_OK) {
            rl__fmt(err, es, "device %s: cannot copy %.3f GiB of weights to the device: %s", device,
                    (double)(hi - lo) / 1073741824.0, rl_status_str(st));
            return st;
        }
    }
    for (size_t i = 0; i < m->n_owned; i++) {
        st = m->dev->ops->map_host(m->dev, m->owned[i], m->owned_bytes[i]);
        if (st != RL_OK) {
            rl__fmt(err, es, "device %s: cannot copy a vector to the device: %s", device,
                    rl_status_str(st));
            return st;
        }
    }
    return RL_OK;
}
