/*
 * strbuf.h - a NUL-terminated byte string that grows, for the modules that write text
 * (JSON Schema to GBNF, tool-call JSON). After a failed allocation `oom` stays set and every
 * later append is a no-op returning false, so a writer may check once at the end.
 */
#ifndef RL_UTIL_STRBUF_H
#define RL_UTIL_STRBUF_H

#include "util.h"

typedef struct rl__strbuf {
    char *p; /* NULL until the first append */
    size_t len, cap;
    bool oom;
} rl__strbuf;

/* Append p[0..n). A NULL p with n > 0 (the text of a string that itself ran out of memory)
 * sets oom. */
bool rl__strbuf_put(rl__strbuf *b, const char *p, size_t n);
/* Append the C string z; NULL sets oom. */
bool rl__strbuf_puts(rl__strbuf *b, const char *z);
bool rl__strbuf_putc(rl__strbuf *b, char c);
/* Append printf output; a formatting error sets oom like a failed allocation. */
bool rl__strbuf_printf(rl__strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The UTF-8 encoding of code point c (< 0x110000). */
bool rl__strbuf_put_cp(rl__strbuf *b, uint32_t c);
/* s[0..n) with the escapes of a JSON string body, no quotes: " \ and the control characters
 * (U+0000..U+001F, U+007F) escaped (\b \f \n \r \t, else \u00XX); other bytes, UTF-8
 * included, kept as they are. */
bool rl__strbuf_put_json_escaped(rl__strbuf *b, const char *s, size_t n);
void rl__strbuf_free(rl__strbuf *b);
/* The string (never NULL unless out of memory: "" is allocated for an empty one); b is
 * left empty and owns nothing. */
char *rl__strbuf_take(rl__strbuf *b);

#endif /* RL_UTIL_STRBUF_H */
