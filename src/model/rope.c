/*
 * rope.c - from the RoPE hyperparameters a model was trained with to the parameters each
 * layer's rope op runs with in a given context, as llama.cpp's context setup derives
 * them (llama-context.cpp, cparams):
 *
 *  - linear (position interpolation, Chen et al. 2023): angles times freq_scale =
 *    1 / rope.scaling.factor; "none" forces freq_scale 1.
 *  - YaRN (Peng et al. 2023): ext_factor 1 unless the file sets it; the attention factor
 *    is mscale(factor) = 1 + 0.1 ln(factor) (or the ratio of two when
 *    yarn_log_multiplier is set), divided by the 1 + 0.1 ln(factor) the rope op applies
 *    itself, so that q and k end up scaled by mscale once.
 *  - llama3: the per-pair divisors of rope_freqs.weight (computed by the converter).
 *  - LongRoPE / SuRoPE (Phi-3): per-pair divisors rope_factors_long when the context is
 *    longer than the original one, else rope_factors_short, chosen once per context;
 *    rope.scaling.attn_factor scales q and k.
 */
#include "model.h"

#include <math.h>

static float yarn_mscale(float scale, float mscale) {
    return scale <= 1.0f ? 1.0f : 0.1f * mscale * logf(scale) + 1.0f;
}

void rl__rope_resolve(const rl_model *m, int32_t n_ctx, rl_rope_params *out) {
    const rl__hparams *hp = &m->hp;
    float freq_scale = hp->rope_scaling == RL_ROPE_SCALING_NONE ? 1.0f : hp->rope_freq_scale;
    float ext = hp->yarn_ext_factor;
    if (ext < 0.0f) ext = hp->rope_scaling == RL_ROPE_SCALING_YARN ? 1.0f : 0.0f;
    float attn = hp->yarn_attn_factor;
    if (ext != 0.0f) {
        const float factor = 1.0f / freq_scale;
        if (hp->yarn_log_mul != 0.0f)
            attn = yarn_mscale(factor, 1.0f) / yarn_mscale(factor, hp->yarn_log_mul);
        else
            attn = yarn_mscale(factor, 1.0f);
        attn *= 1.0f / (1.0f + 0.1f * logf(factor));
    }
    attn *= hp->rope_attn_factor;

    for (int32_t il = 0; il < hp->n_layer; il++) {
        const rl__layer *L = &m->layers[il];
        rl_rope_params *p = &out[il];
        p->n_rot = hp->n_rot;
        p->mode = hp->rope_mode;
        p->n_ctx_orig = hp->n_ctx_orig;
        p->freq_base = hp->rope_freq_base;
        p->freq_scale = freq_scale;
        if (L->swa && hp->rope_freq_base_swa > 0.0f) p->freq_base = hp->rope_freq_base_swa;
        if (L->swa && hp->rope_freq_scale_swa > 0.0f) p->freq_scale = hp->rope_freq_scale_swa;
        p->ext_factor = ext;
        p->attn_factor = attn;
        p->beta_fast = hp->yarn_beta_fast;
        p->beta_slow = hp->yarn_beta_slow;
        if (L->rope_freqs) p->freq_factors = L->rope_freqs;
        else if (n_ctx > hp->n_ctx_orig) p->freq_factors = L->rope_long;
        else p->freq_factors = L->rope_short;
    }
}
