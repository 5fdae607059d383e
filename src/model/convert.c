/*
 * convert.c - weights of a type a device has no kernel for, rewritten at load into a type
 * it has (device.c calls this for rl_model_params.device). Each row is dequantized by the
 * type's reference to_float and quantized again by our reference quantizer (src/quant),
 * into memory the model owns; the file itself is never changed.
 *
 * The target is the smallest native type whose own error stays well under the source's,
 * so that the conversion costs memory and bandwidth, not quality: the 1- to 3.5-bit types
 * (IQ1-IQ3, the ternary TQ types, Q1_0, Q2_0) become Q4_K (4.5 bits per weight); the
 * 4-bit float and 8-bit types whose grids Q4_K would not follow (MXFP4, NVFP4, Q8_1, Q8_K)
 * become Q8_0. A row length that is not a multiple of the target's block falls back to
 * F16, which takes any length.
 */
#include "model.h"

#include "../quant/quant.h"
#include "../util/threadpool.h"

rl_type rl__convert_target(rl_type t, int64_t ne0) {
    rl_type to;
    switch (t) {
    case RL_TYPE_IQ1_S:
    case RL_TYPE_IQ1_M:
    case RL_TYPE_IQ2_XXS:
    case RL_TYPE_IQ2_XS:
    case RL_TYPE_IQ2_S:
    case RL_TYPE_IQ3_XXS:
    case RL_TYPE_IQ3_S:
    case RL_TYPE_TQ1_0:
    case RL_TYPE_TQ2_0:
    case RL_TYPE_Q1_0:
    case RL_TYPE_Q2_0:
        to = RL_TYPE_Q4_K;
        break;
    case RL_TYPE_MXFP4:
    case RL_TYPE_NVFP4:
    case RL_TYPE_Q8_1:
    case RL_TYPE_Q8_K:
        to = RL_TYPE_Q8_0;
        break;
    default:
        return t;
    }
    if (ne0 % rl_type_block_size(to) != 0) to = RL_TYPE_F16;
    return to;
}

typedef struct convert_job {
    const rl__type_traits *from, *to;
    const uint8_t *src;
    uint8_t *dst;
    size_t src_row, dst_row;
    int64_t ne0, nrows;
    float *buf; /* [nth][ne0] */
} convert_job;

/* Thread ith of nth converts rows ith, ith + nth, ... (rows cost the same). */
static void convert_task(void *arg, int ith, int nth) {
    const convert_job *j = arg;
    float *f = j->buf + (size_t)ith * (size_t)j->ne0;
    for (int64_t r = ith; r < j->nrows; r += nth) {
        j->from->to_float(j->src + (size_t)r * j->src_row, f, j->ne0);
        j->to->from_float(f, j->dst + (size_t)r * j->dst_row, j->ne0, NULL);
    }
}

rl_status rl__convert_rows(rl_threadpool *pool, rl_type src, const void *data, int64_t ne0,
                           int64_t nrows, rl_type dst, void *out) {
    const rl__type_traits *from = rl__type_traits_get(src), *to = rl__type_traits_get(dst);
    if (!from || !to || !from->to_float || !to->from_float || to->needs_imatrix)
        return RL_ERR_UNSUPPORTED;
    convert_job j = {.from = from, .to = to, .src = data, .dst = out, .ne0 = ne0, .nrows = nrows};
    if (ne0 <= 0 || nrows < 0 || rl_type_row_bytes(src, ne0, &j.src_row) != RL_OK ||
        rl_type_row_bytes(dst, ne0, &j.dst_row) != RL_OK)
        return RL_ERR_INVALID_ARG;
    const int nth = pool ? rl_threadpool_n_threads(pool) : 1;
    j.buf = rl__malloc((size_t)nth * (size_t)ne0 * sizeof(float));
    if (!j.buf) return RL_ERR_NOMEM;
    if (pool)
        rl__threadpool_run(pool, convert_task, &j);
    else
        convert_task(&j, 0, 1);
    rl__free(j.buf);
    return RL_OK;
}
