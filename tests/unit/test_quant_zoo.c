/* The quant zoo (golden/quant_zoo.gguf + quant_zoo.json, made by llama.cpp; see
 * golden/README.md section 1), for every type the JSON lists:
 *  - rl_dequantize(q.<TYPE>) equals ref.<TYPE> bit for bit;
 *  - quantizing src (8 x 4096) gives the bytes of q.<TYPE> wherever llama.cpp's
 *    reference quantizer made them (matches_from_float_ref, and Q8_K's row reference);
 *  - the RMSE of dequantize(quantize(src)) against src is within 1% of the JSON's,
 *    with the imatrix tensor passed exactly where the JSON's "imatrix" is not null.
 * A type whose kernels are missing fails with a "not implemented" line. */
#include "test.h"
#include "ruvllm.h"

#include <jansson.h>
#include <math.h>

typedef struct {
    rl_gguf *g;
    json_t *json;
    const float *src;     /* [rows][cols] */
    const float *imatrix; /* [cols] */
    int64_t rows, cols;
} zoo;

/* Tensor by name with its info; NULL data when absent. */
static const void *tensor(const zoo *z, const char *name, rl_gguf_tensor_info *info) {
    int64_t i = rl_gguf_find_tensor(z->g, name);
    if (i < 0 || rl_gguf_tensor(z->g, i, info) != RL_OK) return NULL;
    return info->data;
}

static double rmse(const float *a, const float *b, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s / (double)n);
}

/* First index where two float arrays differ bitwise, or -1. */
static int64_t first_bit_diff(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) return i;
    }
    return -1;
}

static void check_type(const zoo *z, const char *tname, json_t *entry) {
    const int64_t n = z->rows * z->cols;
    rl_type t;
    CHECKF(rl_type_from_name(tname, &t) == RL_OK, "%s: unknown type name", tname);
    if (rl_type_from_name(tname, &t) != RL_OK) return;
    json_t *jt = json_object_get(entry, "ggml_type");
    CHECKF(json_is_integer(jt) && json_integer_value(jt) == (json_int_t)t,
           "%s: ggml_type in JSON does not match our id %d", tname, (int)t);
    json_t *jbs = json_object_get(entry, "block_size"), *jsz = json_object_get(entry, "type_size");
    CHECKF(json_integer_value(jbs) == rl_type_block_size(t) &&
               json_integer_value(jsz) == (json_int_t)rl_type_block_bytes(t),
           "%s: block geometry differs from ggml's", tname);

    size_t row_bytes = 0;
    CHECK_EQ_INT(rl_type_row_bytes(t, z->cols, &row_bytes), RL_OK);
    float *deq = malloc(sizeof(float) * (size_t)n);
    uint8_t *mine = malloc(row_bytes * (size_t)z->rows);
    bool deq_ok = false, bytes_ok = true, rmse_ok = false, bytes_checked = false;
    char what[64];

    /* 1. dequantize q.<TYPE> against ref.<TYPE> (F32 has neither: nothing to decode) */
    rl_gguf_tensor_info qi, ri;
    snprintf(what, sizeof(what), "q.%s", tname);
    const void *q = tensor(z, what, &qi);
    snprintf(what, sizeof(what), "ref.%s", tname);
    const float *ref = tensor(z, what, &ri);
    if (t == RL_TYPE_F32) {
        CHECKF(!q, "F32: unexpected q.F32 tensor");
        deq_ok = true;
    } else {
        CHECKF(q && ref, "%s: q./ref. tensors missing from the zoo", tname);
        if (q && ref) {
            CHECKF(qi.type == t && qi.nbytes == row_bytes * (size_t)z->rows,
                   "%s: q tensor has type %d, %zu bytes", tname, (int)qi.type, qi.nbytes);
            rl_status s = rl_dequantize(t, q, deq, n);
            if (s == RL_ERR_UNSUPPORTED) {
                CHECKF(false, "%s: dequantize not implemented", tname);
            } else {
                CHECKF(s == RL_OK, "%s: rl_dequantize: %s", tname, rl_status_str(s));
                int64_t d = s == RL_OK ? first_bit_diff(deq, ref, n) : 0;
                CHECKF(d < 0, "%s: dequant differs from ref at %lld: %.9g vs %.9g", tname,
                       (long long)d, d >= 0 ? deq[d] : 0.0, d >= 0 ? ref[d] : 0.0);
                deq_ok = s == RL_OK && d < 0;
            }
        }
    }

    /* 2. quantize src (with the imatrix where llama.cpp used one) */
    json_t *jim = json_object_get(entry, "imatrix");
    const float *imx = json_is_null(jim) || !jim ? NULL : z->imatrix;
    memset(mine, 0, row_bytes * (size_t)z->rows);
    rl_status s = rl_quantize(t, z->src, mine, z->rows, z->cols, imx);
    if (s == RL_ERR_UNSUPPORTED) {
        CHECKF(false, "%s: quantize not implemented", tname);
        bytes_ok = false;
    } else {
        CHECKF(s == RL_OK, "%s: rl_quantize: %s", tname, rl_status_str(s));
        bytes_ok = s == RL_OK;
        /* bytes: where ggml's reference quantizer made q.<TYPE> */
        json_t *jm = json_object_get(entry, "matches_from_float_ref");
        json_t *jq = json_object_get(entry, "quantizer");
        const char *quantizer = json_is_string(jq) ? json_string_value(jq) : "";
        size_t ql = strlen(quantizer);
        bool want_bytes = json_is_true(jm) || (ql > 4 && !strcmp(quantizer + ql - 4, "_ref"));
        if (s == RL_OK && q && want_bytes) {
            bytes_checked = true;
            size_t k = 0, nb = row_bytes * (size_t)z->rows;
            while (k < nb && mine[k] == ((const uint8_t *)q)[k]) k++;
            CHECKF(k == nb, "%s: quantized bytes differ from q.%s at byte %zu (row %zu, block %zu)",
                   tname, tname, k, k / row_bytes, (k % row_bytes) / rl_type_block_bytes(t));
            bytes_ok = k == nb;
        }
        /* elsewhere equal bytes are not required (an imatrix search, or a quantizer that
         * is not the row reference); say whether they are equal all the same */
        const char *info = "n/a";
        if (s == RL_OK && q && !want_bytes) {
            info = memcmp(mine, q, row_bytes * (size_t)z->rows) == 0 ? "equal (not required)"
                                                                      : "differ (not required)";
        }
        if (s == RL_OK && t == RL_TYPE_F32) {
            bytes_checked = true;
            bytes_ok = memcmp(mine, z->src, sizeof(float) * (size_t)n) == 0;
            CHECKF(bytes_ok, "F32: quantize is not a copy");
        }
        /* 3. RMSE of the round trip */
        if (s == RL_OK) {
            rl_status s2 = rl_dequantize(t, mine, deq, n);
            if (s2 == RL_ERR_UNSUPPORTED) {
                CHECKF(false, "%s: dequantize not implemented (round trip)", tname);
            } else {
                CHECK_EQ_INT(s2, RL_OK);
                double e = rmse(deq, z->src, n);
                double want = json_number_value(json_object_get(entry, "rmse"));
                rmse_ok = fabs(e - want) <= 0.01 * want + 1e-12;
                CHECKF(rmse_ok, "%s: rmse %.9g, llama.cpp %.9g (%+.2f%%)", tname, e, want,
                       want > 0 ? 100 * (e - want) / want : 0.0);
                fprintf(stderr, "  %-8s dequant %s, bytes %s, rmse %.6g vs %.6g%s\n", tname,
                        t == RL_TYPE_F32 ? "n/a " : deq_ok ? "bit-exact" : "DIFFER",
                        !bytes_checked ? info : bytes_ok ? "equal" : "DIFFER",
                        e, want, imx ? " (imatrix)" : "");
            }
        }
    }
    free(deq);
    free(mine);
}

TEST(quant_zoo) {
    const char *gpath = rl_test_data("golden/quant_zoo.gguf");
    const char *jpath = rl_test_data("golden/quant_zoo.json");
    zoo z = {0};
    char err[256];
    rl_status s = rl_gguf_open(gpath, &z.g, err, sizeof(err));
    if (s == RL_ERR_IO) SKIP("%s: %s", gpath, err);
    CHECKF(s == RL_OK, "open %s: %s", gpath, err);
    if (s != RL_OK) return;
    json_error_t jerr;
    z.json = json_load_file(jpath, 0, &jerr);
    CHECKF(z.json != NULL, "%s: %s", jpath, jerr.text);
    if (!z.json) goto done;

    z.rows = json_integer_value(json_object_get(z.json, "rows"));
    z.cols = json_integer_value(json_object_get(z.json, "cols"));
    rl_gguf_tensor_info si, ii;
    z.src = tensor(&z, "src", &si);
    z.imatrix = tensor(&z, "imatrix", &ii);
    CHECK(z.src && si.type == RL_TYPE_F32 && si.ne[0] == z.cols && si.ne[1] == z.rows);
    CHECK(z.imatrix && ii.type == RL_TYPE_F32 && ii.ne[0] == z.cols);
    if (!z.src || !z.imatrix || z.rows != 8 || z.cols != 4096) goto done;

    json_t *types = json_object_get(z.json, "types");
    CHECK(json_is_object(types));
    /* 28 quantized types plus F32 */
    CHECK_EQ_INT(json_object_size(types), 29);
    const char *tname;
    json_t *entry;
    json_object_foreach(types, tname, entry) {
        int f0 = rl_test_failures;
        check_type(&z, tname, entry);
        if (rl_test_failures != f0) fprintf(stderr, "  %-8s FAILED\n", tname);
    }
done:
    json_decref(z.json);
    rl_gguf_free(z.g);
}

int main(void) {
    RUN(quant_zoo);
    return rl_test_finish();
}
