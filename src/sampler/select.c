/*
 * select.c - ordering of candidate keys: introsort, introselect (Musser 1997: quicksort
 * and quickselect that fall back to heapsort past 2 log2 n levels, so no input is
 * quadratic), and the one-pass top-k of a dense logit vector. Keys are distinct (they
 * hold the token id), so partitions never meet equal elements.
 */
#include "sampler/simd.h"

static inline void swap_u64(uint64_t *a, uint64_t *b) {
    uint64_t t = *a;
    *a = *b;
    *b = t;
}

static void insertion_sort(uint64_t *a, size_t n) {
    for (size_t i = 1; i < n; i++) {
        uint64_t x = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1] > x) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = x;
    }
}

/* Max-heap on a[0..n): sift a[i] down. */
static void sift_down(uint64_t *a, size_t n, size_t i) {
    uint64_t x = a[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && a[c + 1] > a[c]) c++;
        if (a[c] <= x) break;
        a[i] = a[c];
        i = c;
    }
    a[i] = x;
}

static void heapify(uint64_t *a, size_t n) {
    for (size_t i = n / 2; i-- > 0;) sift_down(a, n, i);
}

/* Ascending heapsort of a max-heap. */
static void heap_drain(uint64_t *a, size_t n) {
    for (size_t m = n; m > 1; m--) {
        swap_u64(&a[0], &a[m - 1]);
        sift_down(a, m - 1, 0);
    }
}

/* Median of three moved to a[0], then Hoare-style partition of a[1..n) around it; returns
 * the pivot's final index. */
static size_t partition(uint64_t *a, size_t n) {
    size_t mid = n / 2;
    if (a[mid] < a[0]) swap_u64(&a[mid], &a[0]);
    if (a[n - 1] < a[0]) swap_u64(&a[n - 1], &a[0]);
    if (a[n - 1] < a[mid]) swap_u64(&a[n - 1], &a[mid]);
    /* a[0] <= a[mid] <= a[n-1]: use the median as pivot, at index 0 */
    swap_u64(&a[0], &a[mid]);
    uint64_t pv = a[0];
    size_t i = 1, j = n - 1;
    for (;;) {
        while (i <= j && a[i] < pv) i++;
        while (j >= i && a[j] > pv) j--;
        if (i >= j) break;
        swap_u64(&a[i], &a[j]);
        i++;
        j--;
    }
    swap_u64(&a[0], &a[i - 1]);
    return i - 1;
}

static int depth_limit(size_t n) {
    int d = 0;
    while (n > 1) {
        n >>= 1;
        d++;
    }
    return 2 * d + 2;
}

static void introsort(uint64_t *a, size_t n, int depth) {
    while (n > 24) {
        if (depth-- == 0) {
            heapify(a, n);
            heap_drain(a, n);
            return;
        }
        size_t p = partition(a, n);
        /* recurse into the smaller side, loop on the larger */
        if (p < n - p - 1) {
            introsort(a, p, depth);
            a += p + 1;
            n -= p + 1;
        } else {
            introsort(a + p + 1, n - p - 1, depth);
            n = p;
        }
    }
    insertion_sort(a, n);
}

void rl__sort_u64(uint64_t *a, size_t n) {
    if (n > 1) introsort(a, n, depth_limit(n));
}

/* The k smallest by a heap of k (good when k is small against n). */
static void select_heap(uint64_t *a, size_t n, size_t k) {
    heapify(a, k);
    for (size_t i = k; i < n; i++) {
        if (a[i] < a[0]) {
            swap_u64(&a[i], &a[0]);
            sift_down(a, k, 0);
        }
    }
    heap_drain(a, k);
}

void rl__select_u64(uint64_t *a, size_t n, size_t k) {
    if (k == 0 || n <= 1) return;
    if (k >= n) {
        rl__sort_u64(a, n);
        return;
    }
    if (k <= 64 || k * 32 <= n) {
        select_heap(a, n, k);
        return;
    }
    /* quickselect until the k-th element is in place, then sort the prefix */
    uint64_t *b = a;
    size_t m = n, kk = k;
    int depth = depth_limit(n);
    while (m > 24) {
        if (depth-- == 0) {
            select_heap(b, m, kk);
            rl__sort_u64(a, k);
            return;
        }
        size_t p = partition(b, m);
        if (p == kk || p + 1 == kk) break;
        if (p > kk) {
            m = p;
        } else {
            b += p + 1;
            m -= p + 1;
            kk -= p + 1;
        }
    }
    if (m <= 24) insertion_sort(b, m);
    rl__sort_u64(a, k);
}

int32_t rl__dense_top(const float *d, int32_t n, int32_t k, uint64_t *out) {
    int32_t m = 0, i = 0;
    /* fill: the first k finite entries */
    for (; i < n && m < k; i++) {
        if (d[i] > -INFINITY) out[m++] = rl__key(d[i], i);
    }
    if (m < k) {
        rl__sort_u64(out, (size_t)m);
        return m;
    }
    heapify(out, (size_t)k);
    float worst = rl__key_logit(out[0]);
    /* filter: an entry enters when its key is below the root's; blocks of 32 whose
     * maximum is below the root's logit are skipped without a branch per entry */
    for (; i < n;) {
        if (i + 32 <= n && blk_max32(d + i) < worst) {
            i += 32;
            continue;
        }
        int32_t e = i + 32 <= n ? i + 32 : n;
        for (; i < e; i++) {
            if (d[i] >= worst) {
                uint64_t key = rl__key(d[i], i);
                if (key < out[0]) {
                    out[0] = key;
                    sift_down(out, (size_t)k, 0);
                    worst = rl__key_logit(out[0]);
                }
            }
        }
    }
    heap_drain(out, (size_t)k);
    return k;
}
