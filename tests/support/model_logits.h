/*
 * model_logits.h - the logits a model file gives for a fixed 13-token prompt and one decode
 * token after it, for tests that compare two ways of loading the same file (weight layouts
 * on or off): the prompt's rows take the multi-token kernels, the decode token the
 * one-token ones. And the plain model load the tests share.
 */
#ifndef RL_TEST_MODEL_LOGITS_H
#define RL_TEST_MODEL_LOGITS_H

#include "ruvllm.h"

/* Loads path (2 threads, 64 cells of context) and returns the malloc'd logits
 * [2][*n_vocab]: the prompt's last row, then the decode token's. *keep receives the model
 * (the caller frees it after comparing, so that two loads can be alive at once). NULL with
 * a failed check when the model does not load. */
float *rl_test_prompt_logits(const char *path, int *n_vocab, rl_model **keep);

/* The model at path on device (NULL: the CPU; "cuda"), default parameters otherwise; NULL
 * with a failed check naming the file, the device and the loader's message. */
rl_model *rl_test_load_model(const char *path, const char *device);

#endif
