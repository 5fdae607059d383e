/*
 * qfile.h - internals of model-file quantization shared by quantize_file.c (GGUF in,
 * GGUF out) and synth/ (generated weights out): importance matrices and the streaming
 * engine that turns source rows into rows of the target type while the GGUF writer
 * writes them.
 */
#ifndef RL_QUANT_QFILE_H
#define RL_QUANT_QFILE_H

#include "../util/util.h"
#include "mix.h"

/* ---- importance matrices (imatrix.c) ----------------------------------------------------- */

/* llama.cpp's importance matrix: per weight tensor, the mean squared activation of each
 * input column (per expert for 3-D expert tensors). Read from the GGUF format of
 * llama-imatrix ("<name>.in_sum2" sums and "<name>.counts" per expert, normalized here as
 * llama-quantize does) or the legacy binary .dat format. Immutable after load. */
typedef struct rl__imatrix rl__imatrix;

/* RL_ERR_IO (cannot read), RL_ERR_BAD_FILE (malformed: err names what), RL_ERR_NOMEM. */
rl_status rl__imatrix_load(const char *path, rl__imatrix **out, char *err, size_t err_size);
void rl__imatrix_free(rl__imatrix *im);
/* The weights of tensor name (*n values), or NULL when the matrix has none. */
const float *rl__imatrix_find(const rl__imatrix *im, const char *name, size_t *n);
size_t rl__imatrix_n_entries(const rl__imatrix *im);
/* imatrix.datasets[0] (GGUF) or the trailing dataset name (legacy); NULL when absent. */
const char *rl__imatrix_dataset(const rl__imatrix *im);
/* imatrix.chunk_count or the legacy trailing call count; 0 when absent. */
int64_t rl__imatrix_chunk_count(const rl__imatrix *im);

/* ---- the streaming engine (quantize_file.c) ---------------------------------------------- */

/* Generated source rows (synthetic models): the float values of row `row` (a row runs
 * over ne[1], ne[2], ne[3]) of tensor `tensor`, ne[0] of them. Called from several
 * threads at once; must be deterministic. */
typedef rl_status (*rl__qgen_fn)(void *user, size_t tensor, int64_t row, float *out);

typedef struct rl__qtensor {
    const char *name;
    uint32_t n_dims;
    int64_t ne[4];
    rl_type type_in;        /* type of the source rows (F32 for generated ones) */
    const void *data;       /* source bytes (e.g. a mapped input file), or NULL: gen */
    rl_type type_out;
    const float *imatrix;   /* NULL, or ne[0] * ne[2] weights (one set per expert) */
    bool fallback;          /* type_out was forced by the row length (reported only) */
} rl__qtensor;

typedef struct rl__qjob {
    rl_gguf_writer *w;      /* metadata already set; the tensors are added by the engine */
    rl__qtensor *t;         /* in output order */
    size_t n;
    rl__qgen_fn gen;
    void *gen_user;
    int n_threads;          /* <= 0: physical cores */
    rl_quantize_progress_fn progress;
    void *progress_user;
} rl__qjob;

/* Add job->t to the writer, each as rows produced at write time, and write the file to
 * path. Rows are converted by every thread of a pool; memory use is the writer's chunk
 * plus a row of floats per thread, whatever the model's size. Converted source rows must
 * be finite (RL_ERR_INVALID_ARG otherwise, err names tensor and row). */
rl_status rl__qjob_write(rl__qjob *job, const char *path, char *err, size_t err_size);

#endif /* RL_QUANT_QFILE_H */
