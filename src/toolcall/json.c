/*
 * json.c - JSON string literals and a JSON scanner for tool calls. The scanner finds where a
 * value ends without building it, and says "more" when the text stops inside a value that
 * may still complete: that is what lets the streaming parser wait without guessing. The
 * arguments of a call are then the model's own bytes, so numbers of any size survive.
 */
#include "toolcall/toolcall.h"

#include <stdio.h>

/* ---- JSON string literals ------------------------------------------------------------ */

bool rl__tc_put_json_str(tc_buf *b, const char *s, size_t n) {
    rl__tc_putc(b, '"');
    rl__strbuf_put_json_escaped(b, s, n);
    return rl__tc_putc(b, '"');
}

/* ---- scanning ------------------------------------------------------------------------- */

static size_t skip_ws(const char *s, size_t len, size_t i) {
    while (i < len && rl__tc_is_ws(s[i])) i++;
    return i;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A string literal at s[i] == '"'. */
static tc_res scan_string(const char *s, size_t len, size_t i, size_t *end) {
    i++;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') {
            *end = i + 1;
            return TC_OK;
        }
        if (c < 0x20) return TC_FAIL;
        if (c != '\\') {
            i++;
            continue;
        }
        if (i + 1 >= len) return TC_MORE;
        char e = s[i + 1];
        if (e == 'u') {
            for (size_t k = 0; k < 4; k++) {
                if (i + 2 + k >= len) return TC_MORE;
                if (hexval(s[i + 2 + k]) < 0) return TC_FAIL;
            }
            i += 6;
        } else if (strchr("\"\\/bfnrt", e) && e) {
            i += 2;
        } else {
            return TC_FAIL;
        }
    }
    return TC_MORE;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* A number at s[i] ('-' or a digit): -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static tc_res scan_number(const char *s, size_t len, size_t i, bool final, size_t *end) {
    if (s[i] == '-') i++;
    if (i >= len) return final ? TC_FAIL : TC_MORE;
    if (s[i] == '0') {
        i++;
    } else if (is_digit(s[i])) {
        while (i < len && is_digit(s[i])) i++;
    } else {
        return TC_FAIL;
    }
    if (i < len && s[i] == '.') {
        i++;
        if (i >= len) return final ? TC_FAIL : TC_MORE;
        if (!is_digit(s[i])) return TC_FAIL;
        while (i < len && is_digit(s[i])) i++;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= len) return final ? TC_FAIL : TC_MORE;
        if (!is_digit(s[i])) return TC_FAIL;
        while (i < len && is_digit(s[i])) i++;
    }
    if (i >= len && !final) return TC_MORE; /* more digits may follow */
    *end = i;
    return TC_OK;
}

static tc_res scan_literal(const char *s, size_t len, size_t i, bool final, size_t *end) {
    static const char *const lits[] = {"true", "false", "null"};
    for (size_t k = 0; k < 3; k++) {
        const char *z = lits[k];
        if (s[i] != z[0]) continue;
        size_t n = strlen(z), m = 0;
        while (m < n && i + m < len && s[i + m] == z[m]) m++;
        if (m == n) {
            *end = i + n;
            return TC_OK;
        }
        if (i + m >= len) return final ? TC_FAIL : TC_MORE;
        return TC_FAIL;
    }
    return TC_FAIL;
}

/* Iterative: a stack of open containers ('{' or '['), and where in one we are. */
tc_res rl__tc_json_value(const char *s, size_t len, size_t pos, bool final, size_t *end) {
    char stack[TC_JSON_MAX_DEPTH];
    size_t depth = 0;
    size_t i = pos;
    /* state: 0 = expecting a value, 1 = after a value */
    for (;;) {
        /* expect a value at i */
        if (i >= len) return final ? TC_FAIL : TC_MORE;
        char c = s[i];
        size_t e = 0;
        tc_res r;
        if (c == '{' || c == '[') {
            if (depth >= TC_JSON_MAX_DEPTH) return TC_FAIL;
            stack[depth++] = c;
            i = skip_ws(s, len, i + 1);
            if (i >= len) return final ? TC_FAIL : TC_MORE;
            if (s[i] == (c == '{' ? '}' : ']')) {
                depth--;
                i++;
                goto after_value;
            }
            if (c == '{') goto expect_key;
            continue;
        }
        if (c == '"')
            r = scan_string(s, len, i, &e);
        else if (c == '-' || is_digit(c))
            r = scan_number(s, len, i, final, &e);
        else
            r = scan_literal(s, len, i, final, &e);
        if (r != TC_OK) return r == TC_MORE && final ? TC_FAIL : r;
        i = e;
    after_value:
        if (depth == 0) {
            *end = i;
            return TC_OK;
        }
        i = skip_ws(s, len, i);
        if (i >= len) return final ? TC_FAIL : TC_MORE;
        if (s[i] == ',') {
            i = skip_ws(s, len, i + 1);
            if (stack[depth - 1] == '[') continue;
            goto expect_key;
        }
        if (s[i] == (stack[depth - 1] == '{' ? '}' : ']')) {
            depth--;
            i++;
            goto after_value;
        }
        return TC_FAIL;
    expect_key:
        if (i >= len) return final ? TC_FAIL : TC_MORE;
        if (s[i] != '"') return TC_FAIL;
        r = scan_string(s, len, i, &e);
        if (r != TC_OK) return r == TC_MORE && final ? TC_FAIL : r;
        i = skip_ws(s, len, e);
        if (i >= len) return final ? TC_FAIL : TC_MORE;
        if (s[i] != ':') return TC_FAIL;
        i = skip_ws(s, len, i + 1);
    }
}

/* The container s[a..b) is known complete: walk its direct children. */
static bool walk(const char *s, size_t a, size_t b, bool obj, tc_member_fn fn, void *user) {
    size_t i = skip_ws(s, b, a + 1);
    if (i < b && s[i] == (obj ? '}' : ']')) return true;
    while (i < b) {
        const char *key = NULL;
        size_t klen = 0, e;
        if (obj) {
            if (scan_string(s, b, i, &e) != TC_OK) return false;
            key = s + i;
            klen = e - i;
            i = skip_ws(s, b, e);
            i = skip_ws(s, b, i + 1); /* ':' */
        }
        if (rl__tc_json_value(s, b, i, true, &e) != TC_OK) return false;
        if (!fn(user, key, klen, i, e)) return true;
        i = skip_ws(s, b, e);
        if (i >= b || s[i] != ',') break;
        i = skip_ws(s, b, i + 1);
    }
    return true;
}

bool rl__tc_json_members(const char *s, size_t a, size_t b, tc_member_fn fn, void *user) {
    if (a >= b || s[a] != '{') return false;
    return walk(s, a, b, true, fn, user);
}

bool rl__tc_json_elements(const char *s, size_t a, size_t b, tc_member_fn fn, void *user) {
    if (a >= b || s[a] != '[') return false;
    return walk(s, a, b, false, fn, user);
}

bool rl__tc_json_unquote(const char *s, size_t a, size_t b, tc_buf *out) {
    if (b < a + 2 || s[a] != '"' || s[b - 1] != '"') return false;
    size_t i = a + 1, run = i;
    b--;
    while (i < b) {
        if (s[i] != '\\') {
            i++;
            continue;
        }
        rl__tc_put(out, s + run, i - run);
        char e = s[i + 1];
        if (e != 'u') {
            static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
            const char *f = strchr(from, e);
            if (!f || !e) return false;
            rl__tc_putc(out, to[f - from]);
            i += 2;
        } else {
            if (i + 6 > b) return false;
            uint32_t cp = 0;
            for (int k = 0; k < 4; k++) cp = cp << 4 | (uint32_t)hexval(s[i + 2 + k]);
            i += 6;
            if (cp >= 0xD800 && cp < 0xDC00) {
                if (i + 6 > b || s[i] != '\\' || s[i + 1] != 'u') return false;
                uint32_t lo = 0;
                for (int k = 0; k < 4; k++) {
                    int h = hexval(s[i + 2 + k]);
                    if (h < 0) return false;
                    lo = lo << 4 | (uint32_t)h;
                }
                if (lo < 0xDC00 || lo >= 0xE000) return false;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                i += 6;
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                return false;
            }
            rl__tc_put_cp(out, cp);
        }
        run = i;
    }
    rl__tc_put(out, s + run, b - run);
    return !out->oom;
}

bool rl__tc_json_key_is(const char *key, size_t n, const char *z) {
    size_t zl = strlen(z);
    if (n == zl + 2 && key[0] == '"' && memcmp(key + 1, z, zl) == 0) return true;
    if (!memchr(key, '\\', n)) return false;
    tc_buf b = {0};
    bool eq = rl__tc_json_unquote(key, 0, n, &b) && b.len == zl && memcmp(b.p, z, zl) == 0;
    rl__tc_buf_free(&b);
    return eq;
}
