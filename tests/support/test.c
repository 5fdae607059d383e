#include "test.h"

int rl_test_failures;
int rl_test_checks;
int rl_test_skipped;
const char *rl_test_current = "?";

int rl_test_finish(void) {
    fprintf(stderr, "%d checks, %d failures, %d skipped\n", rl_test_checks, rl_test_failures,
            rl_test_skipped);
    if (rl_test_failures) return 1;
    if (rl_test_skipped && rl_test_checks == 0) return 77;
    return 0;
}

const char *rl_test_data(const char *rel) {
    static char bufs[8][4096];
    static int slot;
    char *b = bufs[slot++ & 7];
    const char *root = getenv("RUVLLM_TESTDATA");
    if (!root || !*root) root = "../shared";
    snprintf(b, 4096, "%s/%s", root, rel);
    return b;
}

unsigned char *rl_test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf && len) *len = (size_t)n;
    return buf;
}
