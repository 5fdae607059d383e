/*
 * alloc.c - the library's one allocator. Each block carries a small header with its
 * size so that rl_mem_in_use is exact; the fault-injection counter lets tests fail
 * the k-th allocation (Redis zmalloc, libuv uv_replace_allocator).
 */
#include "util.h"

#include <stdatomic.h>
#include <stdlib.h>

/* Header in front of every block; 16 bytes keeps malloc's 16-byte alignment. */
typedef struct {
    size_t size;
    size_t pad; /* offset from the raw pointer to the user pointer (aligned blocks) */
} rl_alloc_hdr;

static atomic_size_t g_in_use;
static atomic_long g_count;
static long g_fail_after; /* 0: off; k: the k-th allocation from arming fails */
static long g_fail_base;

static bool should_fail(void) {
    long c = atomic_fetch_add(&g_count, 1) + 1;
    return g_fail_after > 0 && c - g_fail_base >= g_fail_after;
}

void rl__alloc_fail_after(long k) {
    g_fail_base = atomic_load(&g_count);
    g_fail_after = k;
}

long rl__alloc_count(void) { return atomic_load(&g_count); }

RL_API size_t rl_mem_in_use(void) { return atomic_load(&g_in_use); }

void *rl__malloc(size_t n) {
    if (should_fail()) return NULL;
    size_t total;
    if (!rl__add_size(n, sizeof(rl_alloc_hdr), &total)) return NULL;
    rl_alloc_hdr *h = malloc(total);
    if (!h) return NULL;
    h->size = n;
    h->pad = 0;
    atomic_fetch_add(&g_in_use, n);
    return h + 1;
}

void *rl__calloc(size_t count, size_t size) {
    size_t n;
    if (!rl__mul_size(count, size, &n)) return NULL;
    void *p = rl__malloc(n);
    if (p) memset(p, 0, n);
    return p;
}

void rl__free(void *p) {
    if (!p) return;
    rl_alloc_hdr *h = (rl_alloc_hdr *)p - 1;
    atomic_fetch_sub(&g_in_use, h->size);
    free(h);
}

void *rl__realloc(void *p, size_t n) {
    if (!p) return rl__malloc(n);
    if (should_fail()) return NULL;
    size_t total;
    if (!rl__add_size(n, sizeof(rl_alloc_hdr), &total)) return NULL;
    rl_alloc_hdr *h = (rl_alloc_hdr *)p - 1;
    size_t old = h->size;
    rl_alloc_hdr *nh = realloc(h, total);
    if (!nh) return NULL;
    nh->size = n;
    atomic_fetch_sub(&g_in_use, old);
    atomic_fetch_add(&g_in_use, n);
    return nh + 1;
}

void *rl__aligned_alloc(size_t alignment, size_t n) {
    if (alignment < sizeof(rl_alloc_hdr) || (alignment & (alignment - 1))) return NULL;
    if (should_fail()) return NULL;
    size_t total;
    if (!rl__add_size(n, alignment + sizeof(rl_alloc_hdr), &total)) return NULL;
    unsigned char *raw = malloc(total);
    if (!raw) return NULL;
    uintptr_t user = ((uintptr_t)raw + sizeof(rl_alloc_hdr) + alignment - 1) & ~(uintptr_t)(alignment - 1);
    rl_alloc_hdr *h = (rl_alloc_hdr *)user - 1;
    h->size = n;
    h->pad = user - (uintptr_t)raw;
    atomic_fetch_add(&g_in_use, n);
    return (void *)user;
}

void rl__aligned_free(void *p) {
    if (!p) return;
    rl_alloc_hdr *h = (rl_alloc_hdr *)p - 1;
    atomic_fetch_sub(&g_in_use, h->size);
    free((unsigned char *)p - h->pad);
}

char *rl__strndup(const char *s, size_t n) {
    char *d = rl__malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *rl__strdup(const char *s) { return rl__strndup(s, strlen(s)); }
