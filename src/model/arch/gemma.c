/*
 * gemma.c - the "gemma" architecture: Gemma 1 (Gemma Team, "Gemma: Open Models Based on
 * Gemini Research and Technology", 2024). Llama's pre-norm decoder with the token
 * embeddings scaled by sqrt(n_embd), GeGLU instead of SwiGLU (GELU in its tanh form,
 * computed exactly: llama.cpp's CPU backend reads it from an fp16 table, which moves the
 * logits by up to about 1e-3), NeoX RoPE, a head size that need not be n_embd / n_head,
 * and the output tied to the token embeddings. The file's norm weights already include
 * Gemma's "1 +" (the converter adds it).
 */
#include "../model.h"

#include <math.h>

static rl_status gemma_load(rl_model *m, rl__loader *ld) {
    const rl__hparams *hp = &m->hp;
    rl_status st = rl__ld_check_heads(ld, true);
    if (st == RL_OK) st = rl__ld_embd_output(ld);
    for (int il = 0; st == RL_OK && il < hp->n_layer; il++) {
        st = rl__ld_attn(ld, il);
        if (st == RL_OK) st = rl__ld_ffn(ld, il, false);
    }
    return st;
}

static rl_status gemma_forward(rl__fwd *f) {
    const rl__decoder_opts o = {.embd_scale = sqrtf((float)f->m->hp.n_embd),
                                .act = RL_GLU_GELU_TANH};
    return rl__blk_decoder(f, &o);
}

const rl__arch rl__arch_gemma = {
    .name = "gemma",
    .rope_mode = RL_ROPE_NEOX,
    .load = gemma_load,
    .forward = gemma_forward,
};
