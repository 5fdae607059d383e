/*
 * test.h - a minimal table-friendly test harness. A test program defines tests with
 * TEST(name) and lists them in main via RUN(name); failures print file:line and the
 * failing expression, and the program exits non-zero if any check failed.
 * A test that cannot run (data missing, CPU lacks an ISA) calls SKIP(reason): the
 * program then exits with 77, which CTest reports as skipped, never passed.
 */
#ifndef RL_TEST_H
#define RL_TEST_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int rl_test_failures;
extern int rl_test_checks;
extern int rl_test_skipped;
extern int rl_test_unselected;
extern const char *rl_test_current;
/* With RUVLLM_TEST_BACKTRACE=1: (re)install the crash report (test.c) for SIGSEGV, SIGBUS,
 * SIGFPE and SIGABRT. RUN calls it before each test, so the report wins over handlers a
 * library installed since (a CUDA tool's, say); otherwise it does nothing. */
void rl_test_crash_report_arm(void);

#define TEST(name) static void name(void)
/* RUVLLM_TEST_ONLY="a,b" runs only the tests of those names (e.g. one slow test under a
 * sanitizer); the others print "--" and are counted as not selected. */
#define RUN(name)                                                                          \
    do {                                                                                   \
        rl_test_current = #name;                                                           \
        rl_test_crash_report_arm();                                                        \
        if (!rl_test_selected(#name)) {                                                    \
            fprintf(stderr, "--   %s (not selected)\n", #name);                            \
            rl_test_unselected++;                                                          \
            break;                                                                         \
        }                                                                                  \
        int f0_ = rl_test_failures;                                                        \
        name();                                                                            \
        fprintf(stderr, "%s %s\n", rl_test_failures == f0_ ? "ok  " : "FAIL", #name);     \
    } while (0)

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        rl_test_checks++;                                                                  \
        if (!(cond)) {                                                                     \
            rl_test_failures++;                                                            \
            fprintf(stderr, "%s:%d: %s: check failed: %s\n", __FILE__, __LINE__,           \
                    rl_test_current, #cond);                                               \
        }                                                                                  \
    } while (0)

#define CHECKF(cond, ...)                                                                  \
    do {                                                                                   \
        rl_test_checks++;                                                                  \
        if (!(cond)) {                                                                     \
            rl_test_failures++;                                                            \
            fprintf(stderr, "%s:%d: %s: check failed: %s: ", __FILE__, __LINE__,           \
                    rl_test_current, #cond);                                               \
            fprintf(stderr, __VA_ARGS__);                                                  \
            fputc('\n', stderr);                                                           \
        }                                                                                  \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                 \
    CHECKF((long long)(a) == (long long)(b), "%lld != %lld", (long long)(a), (long long)(b))
#define CHECK_STR(a, b) CHECKF(strcmp((a), (b)) == 0, "\"%s\" != \"%s\"", (a), (b))
#define CHECK_NEAR(a, b, tol)                                                              \
    CHECKF(fabs((double)(a) - (double)(b)) <= (tol), "%.9g vs %.9g (tol %g)", (double)(a), \
           (double)(b), (double)(tol))

/* Mark the current program skipped (exit 77 at the end unless something failed). */
#define SKIP(...)                                                                          \
    do {                                                                                   \
        fprintf(stderr, "skip %s: ", rl_test_current);                                     \
        fprintf(stderr, __VA_ARGS__);                                                      \
        fputc('\n', stderr);                                                               \
        rl_test_skipped++;                                                                 \
        return;                                                                            \
    } while (0)

/* Normalized mean squared error of a against ref: sum (a - ref)^2 / sum ref^2 (the plain
 * sum when ref is all zeros); INFINITY when a holds a NaN or an infinity. */
double rl_test_nmse(const float *a, const float *ref, size_t n);

/* Whether `name` is one item of the comma-separated list (whole items; empty items name
 * nothing); always when the list is NULL or empty. */
int rl_test_in_list(const char *list, const char *name);
/* Whether RUN runs the test `name`: rl_test_in_list(getenv("RUVLLM_TEST_ONLY"), name). */
int rl_test_selected(const char *name);

/* Exit code for main: 1 on failure, 77 when skipped (or none selected) and nothing was
 * checked, else 0. */
int rl_test_finish(void);

/* Path under RUVLLM_TESTDATA (default ../shared): returns a static buffer per call slot. */
const char *rl_test_data(const char *rel);
/* Whole file into memory (malloc'd; *len set); NULL if unreadable. */
unsigned char *rl_test_read_file(const char *path, size_t *len);

/* Path of a model under RUVLLM_TESTDATA/models/zoo, usable by the GGUF reader.
 * The zoo files as shipped have one known defect: the generator's path in
 * general.description was shortened by 6 bytes ("/work/") without updating the string's
 * length field, so a strict reader (ours, and llama.cpp's) refuses them. When the file
 * shows exactly that defect, a repaired copy (the 6 bytes restored, which gives back the
 * sha256 recorded in models_manifest.json) is written once under
 * $RUVLLM_BUILD_DIR/testdata-fixed and its path returned; an intact file is returned as
 * is. NULL when the file is missing or has another defect. */
const char *rl_test_zoo_model(const char *file);

#endif /* RL_TEST_H */
