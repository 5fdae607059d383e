/* rl_model_params.device: "cpu" and NULL run on the CPU; names that are not devices fail
 * with RL_ERR_INVALID_ARG naming them; a GPU that is not there (no CUDA in the build, no
 * driver, or an ordinal past the last device) fails at load with RL_ERR_UNSUPPORTED and a
 * message saying why, never falling back to the CPU silently. */
#include "backend/backend.h"
#include "test.h"

static rl_status try_load(const char *device, char *err, size_t es) {
    rl_model_params mp = rl_model_default_params();
    mp.device = device;
    rl_model *m = NULL;
    rl_status st = rl_model_load(rl_test_data("models/stories260K.gguf"), &mp, &m, err, es);
    CHECK((st == RL_OK) == (m != NULL));
    rl_model_free(m);
    return st;
}

TEST(device_names) {
    FILE *f = fopen(rl_test_data("models/stories260K.gguf"), "rb");
    if (!f) SKIP("no stories260K");
    fclose(f);
    char err[512];
    CHECK(rl_model_default_params().device == NULL);
    CHECK(try_load(NULL, err, sizeof err) == RL_OK);
    CHECK(try_load("cpu", err, sizeof err) == RL_OK);
    static const char *const bad[] = {"gpu", "cuda:", "cuda:x", "cuda:-1", "cuda0", "CPU", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rl_status st = try_load(bad[i], err, sizeof err);
        CHECKF(st == RL_ERR_INVALID_ARG, "\"%s\": %s", bad[i], rl_status_str(st));
        CHECKF(strstr(err, "is not known") != NULL, "\"%s\": %s", bad[i], err);
    }
    rl_status st = try_load("cuda:9999", err, sizeof err);
    CHECKF(st == RL_ERR_UNSUPPORTED, "cuda:9999: %s", rl_status_str(st));
    CHECKF(strstr(err, "cuda:9999") != NULL, "%s", err);
    fprintf(stderr, "  cuda:9999: %s\n", err);
    st = try_load("cuda", err, sizeof err);
    if (rl__cuda_device_count() == 0) {
        CHECKF(st == RL_ERR_UNSUPPORTED && err[0], "cuda without a device: %s (%s)",
               rl_status_str(st), err);
        fprintf(stderr, "  cuda: %s\n", err);
    } else {
        CHECKF(st == RL_OK, "cuda: %s", err);
    }
}

int main(void) {
    RUN(device_names);
    return rl_test_finish();
}
