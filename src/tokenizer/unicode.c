/*
 * unicode.c - UTF-8 coding with llama.cpp's lenient rules, codepoint classes from utf8proc
 * in the shape llama.cpp's unicode tables give them, and GPT-2's byte-level alphabet.
 */
#include "tok_impl.h"

#include <utf8proc.h>

/* Structure-only decoding, as llama.cpp's unicode_cpt_from_utf8: a lead byte and the right
 * number of continuation bytes make a code point whatever its value (overlong forms and
 * surrogates included), so that ids match the reference on odd input. */
uint32_t rl__utf8_decode(const unsigned char *s, size_t n, size_t *i) {
    size_t o = *i;
    unsigned c = s[o];
    if (c < 0x80) {
        *i = o + 1;
        return c;
    }
    size_t k;
    uint32_t cp;
    if (!(c & 0x40)) goto bad;
    if (!(c & 0x20)) {
        k = 1;
        cp = c & 0x1f;
    } else if (!(c & 0x10)) {
        k = 2;
        cp = c & 0x0f;
    } else if (!(c & 0x08)) {
        k = 3;
        cp = c & 0x07;
    } else {
        goto bad;
    }
    if (o + k >= n) goto bad; /* needs bytes o+1..o+k */
    for (size_t j = 1; j <= k; j++) {
        unsigned d = s[o + j];
        if ((d & 0xc0) != 0x80) goto bad;
        cp = (cp << 6) | (d & 0x3f);
    }
    if (cp > 0x10ffff) goto bad;
    *i = o + k + 1;
    return cp;
bad:
    *i = o + 1;
    return RL__CP_REPLACEMENT;
}

size_t rl__utf8_encode(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | ((cp >> 18) & 0x07));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Unicode White_Space (PropList.txt), which is what llama.cpp's whitespace set holds. */
bool rl__cp_is_whitespace(uint32_t cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0d);
    if (cp < 0x85) return false;
    switch (cp) {
    case 0x85:
    case 0xa0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202f:
    case 0x205f:
    case 0x3000:
        return true;
    default:
        return cp >= 0x2000 && cp <= 0x200a;
    }
}

/* General category -> llama.cpp's flag: \p{N}, \p{L}, \p{Z}, \p{M}, \p{P}, \p{S}, \p{C};
 * unassigned code points (Cn) get none, as in llama.cpp's tables. */
unsigned rl__cp_flags(uint32_t cp) {
    unsigned f = rl__cp_is_whitespace(cp) ? RL__CPF_WHITESPACE : 0;
    if (cp > 0x10ffff) return f;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
        return f | RL__CPF_LETTER;
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
        return f | RL__CPF_MARK;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO:
        return f | RL__CPF_NUMBER;
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        return f | RL__CPF_PUNCT;
    case UTF8PROC_CATEGORY_SM:
    case UTF8PROC_CATEGORY_SC:
    case UTF8PROC_CATEGORY_SK:
    case UTF8PROC_CATEGORY_SO:
        return f | RL__CPF_SYMBOL;
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP:
        return f | RL__CPF_SEPARATOR;
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
        return f | RL__CPF_CONTROL;
    default:
        return f;
    }
}

uint32_t rl__cp_tolower(uint32_t cp) {
    if (cp > 0x10ffff) return cp;
    return (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
}

uint32_t rl__cp_nfd_first(uint32_t cp) {
    if (cp < 0xc0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return cp;
    utf8proc_int32_t dst[32];
    int boundclass = 0;
    utf8proc_ssize_t n =
        utf8proc_decompose_char((utf8proc_int32_t)cp, dst, 32, UTF8PROC_DECOMPOSE, &boundclass);
    return (n >= 1 && n <= 32) ? (uint32_t)dst[0] : cp;
}

/* GPT-2 maps the printable bytes 0x21-0x7E, 0xA1-0xAC and 0xAE-0xFF to themselves and the
 * other 68 bytes, in order, to U+0100..U+0143 (openai/gpt-2 encoder.py bytes_to_unicode). */
static uint32_t byte_cp(unsigned b) {
    if (b <= 0x20) return 256 + b;
    if (b >= 0x7f && b <= 0xa0) return 256 + 33 + (b - 0x7f);
    if (b == 0xad) return 256 + 67;
    return b;
}

size_t rl__byte_to_gpt2(unsigned char b, char out[2]) {
    uint32_t cp = byte_cp(b); /* < 0x800: one or two bytes */
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xc0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

int rl__gpt2_to_byte(uint32_t cp) {
    if (cp < 256) return byte_cp(cp) == cp ? (int)cp : -1;
    if (cp <= 256 + 32) return (int)(cp - 256);
    if (cp <= 256 + 66) return (int)(0x7f + (cp - 289));
    if (cp == 256 + 67) return 0xad;
    return -1;
}
