/*
 * strbuf.c - the growing string of strbuf.h. Capacity doubles from 64 bytes, so n appends
 * cost O(total length); the size arithmetic is overflow-checked.
 */
#include "strbuf.h"

#include <stdio.h>

static bool grow(rl__strbuf *b, size_t extra) {
    if (b->oom) return false;
    size_t need;
    if (!rl__add_size(b->len, extra, &need) || !rl__add_size(need, 1, &need)) {
        b->oom = true;
        return false;
    }
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = rl__realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}

bool rl__strbuf_put(rl__strbuf *b, const char *p, size_t n) {
    if (!p && n) {
        b->oom = true;
        return false;
    }
    if (!grow(b, n)) return false;
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
    return true;
}

bool rl__strbuf_puts(rl__strbuf *b, const char *z) {
    if (!z) {
        b->oom = true;
        return false;
    }
    return rl__strbuf_put(b, z, strlen(z));
}

bool rl__strbuf_putc(rl__strbuf *b, char c) { return rl__strbuf_put(b, &c, 1); }

bool rl__strbuf_printf(rl__strbuf *b, const char *fmt, ...) {
    if (b->oom) return false;
    va_list ap;
    va_start(ap, fmt);
    char small[256]; /* most appends are short: format once, copy */
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->oom = true;
        return false;
    }
    if ((size_t)n < sizeof small) return rl__strbuf_put(b, small, (size_t)n);
    if (!grow(b, (size_t)n)) return false;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return true;
}

bool rl__strbuf_put_cp(rl__strbuf *b, uint32_t c) {
    char u[4];
    size_t n;
    if (c < 0x80) {
        u[0] = (char)c;
        n = 1;
    } else if (c < 0x800) {
        u[0] = (char)(0xC0 | (c >> 6));
        u[1] = (char)(0x80 | (c & 0x3F));
        n = 2;
    } else if (c < 0x10000) {
        u[0] = (char)(0xE0 | (c >> 12));
        u[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        u[2] = (char)(0x80 | (c & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (c >> 18));
        u[1] = (char)(0x80 | ((c >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((c >> 6) & 0x3F));
        u[3] = (char)(0x80 | (c & 0x3F));
        n = 4;
    }
    return rl__strbuf_put(b, u, n);
}

bool rl__strbuf_put_json_escaped(rl__strbuf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t run = 0; /* start of the bytes not yet written */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[7];
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            if (c < 0x20 || c == 0x7F) {
                memcpy(u, "\\u00", 4);
                u[4] = hex[c >> 4];
                u[5] = hex[c & 15];
                u[6] = 0;
                esc = u;
            }
        }
        if (!esc) continue;
        rl__strbuf_put(b, s + run, i - run);
        rl__strbuf_puts(b, esc);
        run = i + 1;
    }
    return rl__strbuf_put(b, s + run, n - run);
}

void rl__strbuf_free(rl__strbuf *b) {
    rl__free(b->p);
    memset(b, 0, sizeof *b);
}

char *rl__strbuf_take(rl__strbuf *b) {
    if (b->oom) {
        rl__strbuf_free(b);
        return NULL;
    }
    if (!b->p) {
        if (!grow(b, 0)) return NULL;
        b->p[0] = 0;
    }
    char *p = b->p;
    memset(b, 0, sizeof *b);
    return p;
}
