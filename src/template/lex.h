/*
 * lex.h - tokens of the template lexer (lexer.c), read by the parser (parser.c).
 */
#ifndef RL_TEMPLATE_LEX_H
#define RL_TEMPLATE_LEX_H

#include "template/tpl.h"

enum {
    TK_EOF,
    TK_DATA,        /* literal text (whitespace control already applied) */
    TK_VAR_BEGIN,   /* {{ */
    TK_VAR_END,     /* }} */
    TK_BLOCK_BEGIN, /* {% */
    TK_BLOCK_END,   /* %} */
    TK_NAME,
    TK_STRING,
    TK_INT,
    TK_FLOAT,
    TK_OP
};

typedef struct tpl_tok {
    uint8_t type;
    uint8_t op;
    uint32_t line, col;
    const char *s; /* raw text in the normalized source */
    size_t n;
    const tpl_str *str; /* TK_DATA / TK_STRING value, TK_NAME interned name (arena) */
    int64_t i;
    double f;
} tpl_tok;

typedef struct tpl_toks {
    tpl_tok *v;
    size_t n, cap;
} tpl_toks;

/* Normalize newlines, drop one trailing newline (jinja2's keep_trailing_newline=False)
 * and tokenize. Strings and names go to the program's arena. */
rl_status rl__tpl_lex(tpl_program *p, const char *src, size_t len, tpl_toks *out, char *err,
                      size_t err_size);
void rl__tpl_toks_free(tpl_toks *t);

/* Immortal string in the program's arena. */
const tpl_str *rl__tpl_const_str(tpl_program *p, const char *s, size_t n);
/* Interned immortal identifier. */
const tpl_str *rl__tpl_intern(tpl_program *p, const char *s, size_t n);

#endif /* RL_TEMPLATE_LEX_H */
