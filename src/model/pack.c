/*
 * pack.c - the CPU weight copies of a model (rl__model_cpu_pack): every weight is offered
 * to the CPU backend's packer (backend.h rl__cpu_pack_weights), which copies those its
 * kernels have a faster layout for and releases their file pages. RUVLLM_CPU_REPACK=0
 * turns it off (A/B measurements, tests comparing both paths).
 */
#include "model.h"

#include <stdio.h>

rl_status rl__model_cpu_pack(rl_model *m, char *err, size_t err_size) {
    const char *env = rl__getenv("RUVLLM_CPU_REPACK");
    if (m->dev || (env && !strcmp(env, "0"))) return RL_OK;
    const size_t n = rl__model_weights(m, NULL, 0);
    rl_weight **ws = rl__malloc((n ? n : 1) * sizeof *ws);
    if (!ws) {
        rl__fmt(err, err_size, "out of memory");
        return RL_ERR_NOMEM;
    }
    rl__model_weights(m, ws, n);
    rl_status st = rl__cpu_pack_weights(ws, n, m->n_threads, true, &m->cpu_packed);
    rl__free(ws);
    if (st != RL_OK)
        rl__fmt(err, err_size, "repacking the weights for the CPU kernels: %s", rl_status_str(st));
    return st;
}
