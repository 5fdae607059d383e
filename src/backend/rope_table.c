/*
 * rope_table.c - the cos/sin table of rotary position embedding (RoFormer, Su et al. 2021)
 * with the context-extension corrections of YaRN (Peng et al. 2023), shared by the CPU
 * backend (rope.c) and the CUDA backend (which uploads the table of each step's positions).
 * The angle arithmetic follows ggml's CPU rope (ggml-cpu/ops.cpp, MIT) step by step in
 * float, because at F32 the logits are compared with llama.cpp's to 5e-5 and at positions in
 * the thousands a different rounding of the angle shows. In particular the base angle of
 * pair i is built by repeated multiplication, theta_{i+1} = theta_i * base^(-2/n_rot),
 * starting from theta_0 = pos.
 */
#include "backend.h"

#include <math.h>

/* YaRN's ramp between the correction dims: 1 below low (extrapolate: keep the trained
 * angle), 0 above high (interpolate), linear in between. i0 is the element index of the
 * pair (2i). */
static float yarn_ramp(float low, float high, int i0) {
    float y = (float)(i0 / 2) - low;
    y /= RL_MAX(0.001f, high - low);
    return 1.0f - RL_MIN(1.0f, RL_MAX(0.0f, y));
}

/* The dimension at which a wavelength makes n_rot_beta turns over n_ctx_orig positions:
 * solving n_ctx_orig = 2 pi n_rot_beta base^(2d/n_dims) for d. */
static float yarn_corr_dim(int n_dims, int n_ctx_orig, float n_rot_beta, float base) {
    return (float)n_dims * logf((float)n_ctx_orig / (n_rot_beta * 2.0f * (float)M_PI)) /
           (2.0f * logf(base));
}

void rl__rope_corr_dims(const rl_rope_params *p, float dims[2]) {
    float start = floorf(yarn_corr_dim(p->n_rot, p->n_ctx_orig, p->beta_fast, p->freq_base));
    float end = ceilf(yarn_corr_dim(p->n_rot, p->n_ctx_orig, p->beta_slow, p->freq_base));
    dims[0] = RL_MAX(0.0f, start);
    dims[1] = RL_MIN((float)(p->n_rot - 1), end);
}

void rl__rope_fill(const rl_rope_params *p, int32_t pos, float theta_scale, const float corr[2],
                   float *cache) {
    float theta = (float)pos;
    for (int i0 = 0; i0 < p->n_rot; i0 += 2) {
        float ff = p->freq_factors ? p->freq_factors[i0 / 2] : 1.0f;
        float theta_extrap = theta / ff;
        float theta_interp = p->freq_scale * theta_extrap;
        float th = theta_interp, mscale = p->attn_factor;
        if (p->ext_factor != 0.0f) {
            float mix = yarn_ramp(corr[0], corr[1], i0) * p->ext_factor;
            th = theta_interp * (1.0f - mix) + theta_extrap * mix;
            mscale *= 1.0f + 0.1f * logf(1.0f / p->freq_scale);
        }
        cache[i0] = cosf(th) * mscale;
        cache[i0 + 1] = sinf(th) * mscale;
        theta *= theta_scale;
    }
}

void rl__rope_cache(const rl_rope_params *p, int32_t pos, float *cache) {
    float corr[2];
    rl__rope_corr_dims(p, corr);
    rl__rope_fill(p, pos, powf(p->freq_base, -2.0f / (float)p->n_rot), corr, cache);
}
