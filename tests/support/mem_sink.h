/*
 * mem_sink.h - a growing byte buffer that rl_gguf_writer_write_to can write into, for tests
 * that read back what the writer produced without a file.
 */
#ifndef RL_TEST_MEM_SINK_H
#define RL_TEST_MEM_SINK_H

#include "ruvllm.h"

#include <stddef.h>

typedef struct rl_test_membuf {
    unsigned char *p; /* malloc'd; free() it */
    size_t n, cap;
} rl_test_membuf;

/* Append buf[0..n) to the rl_test_membuf user; RL_ERR_NOMEM when it cannot grow. */
rl_status rl_test_mem_sink(void *user, const void *buf, size_t n);

#endif /* RL_TEST_MEM_SINK_H */
