/*
 * mem_sink.c - the writer sink of mem_sink.h.
 */
#include "mem_sink.h"

#include <stdlib.h>
#include <string.h>

rl_status rl_test_mem_sink(void *user, const void *buf, size_t n) {
    rl_test_membuf *m = user;
    if (m->n + n > m->cap) {
        size_t cap = (m->n + n) * 2;
        unsigned char *p = realloc(m->p, cap);
        if (!p) return RL_ERR_NOMEM;
        m->p = p;
        m->cap = cap;
    }
    memcpy(m->p + m->n, buf, n);
    m->n += n;
    return RL_OK;
}
