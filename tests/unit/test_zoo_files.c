/* The zoo files' known defect is detected by the reader and repaired for the tests
 * (see rl_test_zoo_model); every repaired file has the size models_manifest.json gives. */
#include "test.h"

#include "ruvllm.h"

#include <jansson.h>
#include <sys/stat.h>

TEST(zoo_files_open_after_repair) {
    json_error_t jerr;
    json_t *m = json_load_file(rl_test_data("models/zoo/models_manifest.json"), 0, &jerr);
    if (!m) SKIP("no zoo manifest under RUVLLM_TESTDATA");
    json_t *files = json_object_get(m, "files");
    const char *name;
    json_t *v;
    int n = 0;
    json_object_foreach(files, name, v) {
        const char *path = rl_test_zoo_model(name);
        CHECKF(path != NULL, "%s: not usable", name);
        if (!path) continue;
        struct stat st;
        CHECK(stat(path, &st) == 0);
        CHECKF((long long)st.st_size == json_integer_value(json_object_get(v, "bytes")),
               "%s: %lld bytes", name, (long long)st.st_size);
        rl_gguf *g = NULL;
        char err[256];
        CHECK(rl_gguf_open(path, &g, err, sizeof err) == RL_OK);
        CHECK_EQ_INT(rl_gguf_n_tensors(g), json_integer_value(json_object_get(v, "n_tensors")));
        rl_gguf_free(g);
        n++;
    }
    CHECK(n == 27);
    json_decref(m);
}

int main(void) {
    RUN(zoo_files_open_after_repair);
    return rl_test_finish();
}
