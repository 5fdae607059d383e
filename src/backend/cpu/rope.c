/*
 * rope.c - rotary position embedding on the CPU: each row's cos/sin table from
 * rope_table.c (src/backend), applied to every head in the NORMAL or NEOX pairing.
 */
#include "backend_cpu.h"

#include <math.h>

typedef struct rope_ctx {
    float *x;
    int64_t ld;
    int32_t n_head, head_dim;
    const int32_t *pos;
    const rl_rope_params *p;
    float theta_scale, corr[2];
} rope_ctx;

static void rope_rows(void *pc, int64_t r0, int64_t r1) {
    rope_ctx *c = pc;
    const rl_rope_params *p = c->p;
    float cache[RL_MAX_HEAD_DIM];
    const int half = p->n_rot / 2;
    for (int64_t r = r0; r < r1; r++) {
        rl__rope_fill(p, c->pos[r], c->theta_scale, c->corr, cache);
        for (int32_t h = 0; h < c->n_head; h++) {
            float *x = c->x + r * c->ld + (int64_t)h * c->head_dim;
            if (p->mode == RL_ROPE_NEOX) {
                for (int i = 0; i < half; i++) {
                    float cs = cache[2 * i], sn = cache[2 * i + 1];
                    float x0 = x[i], x1 = x[i + half];
                    x[i] = x0 * cs - x1 * sn;
                    x[i + half] = x0 * sn + x1 * cs;
                }
            } else {
                for (int i = 0; i < half; i++) {
                    float cs = cache[2 * i], sn = cache[2 * i + 1];
                    float x0 = x[2 * i], x1 = x[2 * i + 1];
                    x[2 * i] = x0 * cs - x1 * sn;
                    x[2 * i + 1] = x0 * sn + x1 * cs;
                }
            }
        }
    }
}

void rl__cpu_rope(rl_backend *be, float *x, int64_t n, int64_t ld, int32_t n_head,
                  int32_t head_dim, const int32_t *pos, const rl_rope_params *p) {
    rope_ctx c = {.x = x, .ld = ld, .n_head = n_head, .head_dim = head_dim, .pos = pos, .p = p};
    c.theta_scale = powf(p->freq_base, -2.0f / (float)p->n_rot);
    rl__rope_corr_dims(p, c.corr);
    rl__cpu_par_rows(be->impl, n, (int64_t)n_head * p->n_rot * 8, rope_rows, &c);
}
