#include "test.h"

#include <execinfo.h>
#include <signal.h>
#include <unistd.h>

int rl_test_failures;
int rl_test_checks;
int rl_test_skipped;
int rl_test_unselected;
const char *rl_test_current = "?";


int rl_test_in_list(const char *list, const char *name) {
    if (!list || !*list) return 1;
    const size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        const size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > 0 && len == n && strncmp(p, name, n) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

int rl_test_selected(const char *name) { return rl_test_in_list(getenv("RUVLLM_TEST_ONLY"), name); }

int rl_test_finish(void) {
    if (rl_test_unselected)
        fprintf(stderr, "%d checks, %d failures, %d skipped, %d not selected\n", rl_test_checks,
                rl_test_failures, rl_test_skipped, rl_test_unselected);
    else
        fprintf(stderr, "%d checks, %d failures, %d skipped\n", rl_test_checks,
                rl_test_failures, rl_test_skipped);
    if (rl_test_failures) return 1;
    if ((rl_test_skipped || rl_test_unselected) && rl_test_checks == 0) return 77;
    return 0;
}

double rl_test_nmse(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) return INFINITY;
        const double d = (double)a[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    return den > 0 ? num / den : num;
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

/* With RUVLLM_TEST_BACKTRACE=1 a crash prints the running test's name and the raw return
 * addresses (binary(+offset), for addr2line against the unstripped build) before dying the
 * default way. Off by default: ASan installs its own handler and reports better. Used where
 * no debugger runs, e.g. a GPU machine under compute-sanitizer. */
static void crash_report(int sig) {
    static const char msg[] = "\ncrashed in test ";
    void *frames[64];
    const int n = backtrace(frames, 64);
    if (write(2, msg, sizeof msg - 1) < 0 ||
        write(2, rl_test_current, strlen(rl_test_current)) < 0 || write(2, "\n", 1) < 0)
        _exit(128 + sig);
    backtrace_symbols_fd(frames, n, 2);
    signal(sig, SIG_DFL);
    raise(sig);
}

void rl_test_crash_report_arm(void) {
    static int on = -1;
    if (on < 0) {
        const char *e = getenv("RUVLLM_TEST_BACKTRACE");
        on = e && strcmp(e, "1") == 0;
    }
    if (!on) return;
    signal(SIGSEGV, crash_report);
    signal(SIGBUS, crash_report);
    signal(SIGFPE, crash_report);
    signal(SIGABRT, crash_report);
}

__attribute__((constructor)) static void crash_report_init(void) { rl_test_crash_report_arm(); }
