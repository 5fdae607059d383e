/*
 * quantize.c - the public quantization API: argument checks and the row loop over the
 * per-type kernels of types.c. The kernels themselves know nothing of rows or sizes
 * beyond one row of whole blocks.
 */
#include "quant.h"

RL_API bool rl_type_needs_imatrix(rl_type t) {
    const rl__type_traits *tr = rl__type_traits_get(t);
    return tr && tr->needs_imatrix;
}

RL_API rl_status rl_dequantize(rl_type t, const void *src, float *dst, int64_t n) {
    const rl__type_traits *tr = rl__type_traits_get(t);
    if (!tr) return RL_ERR_INVALID_ARG;
    if (!tr->to_float) return RL_ERR_UNSUPPORTED;
    if (n < 0 || n % tr->block_size != 0) return RL_ERR_INVALID_ARG;
    if (n == 0) return RL_OK;
    if (!src || !dst) return RL_ERR_INVALID_ARG;
    size_t bytes;
    if (!rl__mul_size((size_t)n, sizeof(float), &bytes)) return RL_ERR_RANGE;
    tr->to_float(src, dst, n);
    return RL_OK;
}

/* Rows are quantized one at a time: the importance-weighted quantizers take statistics
 * over a whole row (ggml's quantize_q* do the same), so a row is the unit of work. */
RL_API rl_status rl_quantize(rl_type t, const float *src, void *dst, int64_t nrows,
                             int64_t n_per_row, const float *imatrix) {
    const rl__type_traits *tr = rl__type_traits_get(t);
    if (!tr) return RL_ERR_INVALID_ARG;
    if (!tr->from_float) return RL_ERR_UNSUPPORTED;
    if (nrows < 0 || n_per_row < 0 || n_per_row % tr->block_size != 0) return RL_ERR_INVALID_ARG;
    if (tr->needs_imatrix && !imatrix) return RL_ERR_INVALID_ARG;
    if (nrows == 0 || n_per_row == 0) return RL_OK;
    if (!src || !dst) return RL_ERR_INVALID_ARG;

    size_t row_bytes, total, n_total;
    if (rl_type_row_bytes(t, n_per_row, &row_bytes) != RL_OK) return RL_ERR_RANGE;
    if (!rl__mul_size(row_bytes, (size_t)nrows, &total)) return RL_ERR_RANGE;
    if (!rl__mul_size((size_t)n_per_row, (size_t)nrows, &n_total)) return RL_ERR_RANGE;
    if (!rl__mul_size(n_total, sizeof(float), &n_total)) return RL_ERR_RANGE;

    uint8_t *out = dst;
    for (int64_t r = 0; r < nrows; r++) {
        tr->from_float(src + r * n_per_row, out + (size_t)r * row_bytes, n_per_row, imatrix);
    }
    return RL_OK;
}
