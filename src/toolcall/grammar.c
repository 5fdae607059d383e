/*
 * grammar.c - GBNF that holds a model to a tool call in its family's syntax.
 *
 * Each tool's "parameters" schema goes through rl_schema_to_gbnf (section "structured
 * output"); its rules are renamed with a per-tool prefix (p0-root, p0-space, ...) and the
 * family's call syntax is written around them, so any text the grammar accepts parses
 * (rl_toolcall_parse) to calls whose arguments validate. Choices:
 *  - required / named: one call (several with parallel) and nothing else;
 *  - auto: free text, then optionally calls. Free text is text in which the family's call
 *    marker cannot appear: a rule per state of the marker's KMP automaton (Knuth, Morris,
 *    Pratt 1977), or any text when the marker is a control token (a token reference cannot
 *    be spelled by text). Families without a marker (Llama 3's bare JSON, generic JSON)
 *    take text that does not start with '{' instead.
 *
 * With a vocabulary, markers that are control tokens are written as token references
 * <[id]>, which is how the model emits them; literal text could not match a control token
 * (its text is empty to the grammar).
 */
#include "toolcall/toolcall.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct gtool {
    const char *name;
    json_t *params; /* borrowed */
} gtool;

typedef struct gctx {
    tc_buf b;
    const rl_toolcall_grammar_params *p;
    gtool *tools;
    size_t n;
    rl_status st;
    char *err;
    size_t err_size;
} gctx;

static bool gfail(gctx *g, rl_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool gfail(gctx *g, rl_status st, const char *fmt, ...) {
    if (g->st == RL_OK) {
        g->st = st;
        va_list ap;
        va_start(ap, fmt);
        rl__vfmt(g->err, g->err_size, fmt, ap);
        va_end(ap);
    }
    return false;
}

/* ---- writing ------------------------------------------------------------------------------ */

static void raw(gctx *g, const char *s) { rl__tc_puts(&g->b, s); }

/* A GBNF literal for s[0..n): " \"...\"" with llama.cpp's escapes. */
static void lit_n(gctx *g, const char *s, size_t n) {
    if (!n) return;
    rl__tc_puts(&g->b, " \"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            rl__tc_putc(&g->b, '\\');
            rl__tc_putc(&g->b, (char)c);
        } else if (c == '\n') {
            rl__tc_puts(&g->b, "\\n");
        } else if (c == '\r') {
            rl__tc_puts(&g->b, "\\r");
        } else if (c == '\t') {
            rl__tc_puts(&g->b, "\\t");
        } else if (c < 0x20 || c == 0x7F) {
            rl__tc_printf(&g->b, "\\x%02X", c);
        } else {
            rl__tc_putc(&g->b, (char)c);
        }
    }
    rl__tc_putc(&g->b, '"');
}

static void lit(gctx *g, const char *s) { lit_n(g, s, strlen(s)); }

/* The control token whose text is m, or RL_TOKEN_NULL. */
static rl_token control_token(const gctx *g, const char *m) {
    if (!g->p->vocab) return RL_TOKEN_NULL;
    rl_token t = rl_vocab_find(g->p->vocab, m, strlen(m));
    if (t == RL_TOKEN_NULL) return t;
    return rl_vocab_is_control(g->p->vocab, t) ? t : RL_TOKEN_NULL;
}

/* A marker: a token reference when it is a control token of the vocabulary. */
static void mark(gctx *g, const char *m) {
    rl_token t = control_token(g, m);
    if (t != RL_TOKEN_NULL)
        rl__tc_printf(&g->b, " <[%d]>", (int)t);
    else
        lit(g, m);
}

/* ---- rule renaming -------------------------------------------------------------------------- */

static bool word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* Copy GBNF text with every rule name prefixed: names are the words outside literals,
 * classes, token references, repetition counts and comments. */
static void put_renamed(gctx *g, const char *s, const char *prefix) {
    size_t i = 0, n = strlen(s);
    bool line_start = true;
    while (i < n) {
        char c = s[i];
        size_t j = i + 1;
        if (c == '#') {
            while (j < n && s[j] != '\n') j++;
            if (line_start) { /* a whole-line comment (schema warnings): keep it */
                if (j < n) j++;
                rl__tc_put(&g->b, s + i, j - i);
                i = j;
                continue;
            }
        } else if (c == '"' || c == '[') {
            char close = c == '"' ? '"' : ']';
            while (j < n && s[j] != close) j += s[j] == '\\' && j + 1 < n ? 2 : 1;
            if (j < n) j++;
        } else if (c == '<') {
            while (j < n && s[j] != '>') j++;
            if (j < n) j++;
        } else if (c == '{') {
            while (j < n && s[j] != '}') j++;
            if (j < n) j++;
        } else if (word_char(c)) {
            while (j < n && word_char(s[j])) j++;
            rl__tc_puts(&g->b, prefix);
        }
        rl__tc_put(&g->b, s + i, j - i);
        line_start = c == '\n';
        i = j;
    }
    if (n && s[n - 1] != '\n') rl__tc_putc(&g->b, '\n');
}

/* Rules "p<i>-root" ... for schema (NULL: any object without properties). Arguments are an
 * object whatever the schema allows besides: a schema that does not say "type": "object"
 * is taken together with it (allOf). */
static bool schema_rules(gctx *g, size_t i, json_t *schema, const char *what) {
    json_t *ty = json_object_get(schema, "type");
    json_t *wrap = NULL;
    if (schema && !(json_is_string(ty) && strcmp(json_string_value(ty), "object") == 0)) {
        wrap = json_pack("{s:[O,{s:s}]}", "allOf", schema, "type", "object");
        if (!wrap) return gfail(g, RL_ERR_NOMEM, "out of memory");
        schema = wrap;
    }
    char *text = schema ? json_dumps(schema, JSON_COMPACT) : NULL;
    json_decref(wrap);
    const char *st = text ? text : "{\"type\": \"object\", \"properties\": {}}";
    char *gb = NULL, err[512];
    rl_status r = rl_schema_to_gbnf(st, strlen(st), g->p->schema_flags, &gb, err, sizeof err);
    free(text);
    if (r != RL_OK) return gfail(g, r, "tools[%zu] (%s): %s: %s", i, g->tools[i].name, what, err);
    char prefix[32];
    snprintf(prefix, sizeof prefix, "p%zu-", i);
    put_renamed(g, gb, prefix);
    rl__free(gb);
    return true;
}

/* ---- free text ------------------------------------------------------------------------------ */

static size_t decode_cps(const char *s, uint32_t *cp, size_t max) {
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p && n < max) {
        uint32_t c = *p;
        int len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
        if (len > 1) c &= 0x3F >> (len - 1);
        for (int k = 1; k < len && p[k]; k++) c = c << 6 | (p[k] & 0x3F);
        cp[n++] = c;
        p += len;
    }
    return n;
}

static void put_class_cp(gctx *g, uint32_t c) {
    if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
        rl__tc_putc(&g->b, (char)c);
    else if (c < 0x100)
        rl__tc_printf(&g->b, "\\x%02X", c);
    else if (c < 0x10000)
        rl__tc_printf(&g->b, "\\u%04X", c);
    else
        rl__tc_printf(&g->b, "\\U%08X", c);
}

/* Rules name, name-1, ...: any text (possibly empty) in which marker m does not occur. */
static void rule_text_without(gctx *g, const char *name, const char *m) {
    if (control_token(g, m) != RL_TOKEN_NULL) {
        rl__tc_printf(&g->b, "%s ::= [^\\x00]*\n", name);
        return;
    }
    uint32_t cp[64];
    size_t n = decode_cps(m, cp, 64);
    size_t fail[64] = {0};
    for (size_t i = 1, k = 0; i < n; i++) { /* KMP failure function */
        while (k && cp[i] != cp[k]) k = fail[k - 1];
        if (cp[i] == cp[k]) k++;
        fail[i] = k;
    }
    /* distinct code points of m */
    uint32_t d[64];
    size_t nd = 0;
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (k < nd && d[k] != cp[i]) k++;
        if (k == nd) d[nd++] = cp[i];
    }
    /* per state: the code points that lead to another state than 0 get their own
       alternative; the marker's last step is left out; everything else goes back to 0 */
    for (size_t st = 0; st < n; st++) {
        size_t to[64];
        for (size_t k = 0; k < nd; k++) { /* the KMP transition from st on d[k] */
            size_t q = st;
            while (q && cp[q] != d[k]) q = fail[q - 1];
            if (cp[q] == d[k]) q++;
            to[k] = q;
        }
        if (st)
            rl__tc_printf(&g->b, "%s-%zu ::= [^", name, st);
        else
            rl__tc_printf(&g->b, "%s ::= [^", name);
        for (size_t k = 0; k < nd; k++)
            if (to[k]) put_class_cp(g, d[k]);
        rl__tc_printf(&g->b, "\\x00] %s", name);
        for (size_t k = 0; k < nd; k++) {
            if (!to[k] || to[k] == n) continue;
            raw(g, " | [");
            put_class_cp(g, d[k]);
            rl__tc_printf(&g->b, "] %s-%zu", name, to[k]);
        }
        raw(g, " | \"\"\n");
    }
}

/* ---- calls --------------------------------------------------------------------------------- */

typedef enum jshape { SH_STD, SH_LLAMA, SH_COHERE, SH_COHERE7B, SH_MISTRAL, SH_APRIEL } jshape;

/* tc-call-<i> ::= a JSON call object of tool i. */
static void json_call_rule(gctx *g, size_t i, jshape sh) {
    const char *nk = "name", *ak = "arguments";
    if (sh == SH_LLAMA) ak = "parameters";
    if (sh == SH_COHERE || sh == SH_COHERE7B) nk = "tool_name", ak = "parameters";
    rl__tc_printf(&g->b, "tc-call-%zu ::= \"{\" tc-ws", i);
    if (sh == SH_COHERE7B)
        raw(g, " ( \"\\\"tool_call_id\\\"\" tc-ws \":\" tc-ws \"\\\"\" [0-9]{1,4} \"\\\"\" tc-ws "
               "\",\" tc-ws )?");
    rl__tc_printf(&g->b, " \"\\\"%s\\\"\" tc-ws \":\" tc-ws", nk);
    tc_buf q = {0};
    rl__tc_put_json_str(&q, g->tools[i].name, strlen(g->tools[i].name));
    lit_n(g, q.p ? q.p : "", q.len);
    rl__tc_buf_free(&q);
    rl__tc_printf(&g->b, " tc-ws \",\" tc-ws \"\\\"%s\\\"\" tc-ws \":\" tc-ws p%zu-root", ak, i);
    if (sh == SH_MISTRAL)
        raw(g, " ( tc-ws \",\" tc-ws \"\\\"id\\\"\" tc-ws \":\" tc-ws \"\\\"\" [a-zA-Z0-9]{9} "
               "\"\\\"\" )?");
    if (sh == SH_APRIEL)
        raw(g, " ( tc-ws \",\" tc-ws \"\\\"id\\\"\" tc-ws \":\" tc-ws tc-string )?");
    raw(g, " tc-ws \"}\"\n");
}

/* tc-call ::= tc-call-0 | tc-call-1 | ... */
static void call_alt(gctx *g) {
    raw(g, "tc-call ::=");
    for (size_t i = 0; i < g->n; i++) rl__tc_printf(&g->b, "%s tc-call-%zu", i ? " |" : "", i);
    raw(g, "\n");
}

/* "rule ::= X" or "X (SEP X)*" by parallel. sep is GBNF text. */
static void seq(gctx *g, const char *rule, const char *x, const char *sep) {
    if (g->p->parallel)
        rl__tc_printf(&g->b, "%s ::= %s ( %s %s )*\n", rule, x, sep, x);
    else
        rl__tc_printf(&g->b, "%s ::= %s\n", rule, x);
}

/* A JSON array of calls: tc-arr ::= "[" ws call ("," ws call)* ws "]". */
static void call_array(gctx *g) {
    if (g->p->parallel)
        raw(g, "tc-arr ::= \"[\" tc-ws tc-call ( tc-ws \",\" tc-ws tc-call )* tc-ws \"]\"\n");
    else
        raw(g, "tc-arr ::= \"[\" tc-ws tc-call tc-ws \"]\"\n");
}

static void name_lit(gctx *g, size_t i) { lit(g, g->tools[i].name); }

/* ---- XML parameters ------------------------------------------------------------------------ */

static bool only_keys(json_t *o, const char *const *ok) {
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        bool found = false;
        for (size_t i = 0; ok[i] && !found; i++) found = strcmp(k, ok[i]) == 0;
        if (!found) return false;
    }
    return true;
}

/* The value of one parameter as XML element text: a string (plain or enum) as raw text, any
 * other schema as JSON from its own grammar. *is_string says which. */
static bool xml_value_rule(gctx *g, size_t i, size_t k, const char *key, json_t *ps,
                           const char *close, bool *is_string) {
    static const char *const plain[] = {"type",     "description", "title",
                                        "examples", "default",     NULL};
    static const char *const en[] = {"type",    "description", "title", "examples",
                                     "default", "enum",        NULL};
    json_t *ty = json_object_get(ps, "type");
    bool str = json_is_string(ty) && strcmp(json_string_value(ty), "string") == 0;
    char rn[64];
    snprintf(rn, sizeof rn, "tc-v%zu-%zu", i, k);
    *is_string = str;
    if (str && only_keys(ps, plain)) {
        rule_text_without(g, rn, close);
        return true;
    }
    json_t *e = json_object_get(ps, "enum");
    if (str && json_is_array(e) && json_array_size(e) > 0 && only_keys(ps, en)) {
        rl__tc_printf(&g->b, "%s ::=", rn);
        size_t j;
        json_t *v;
        json_array_foreach(e, j, v) {
            if (!json_is_string(v) || strstr(json_string_value(v), close) ||
                strlen(json_string_value(v)) != json_string_length(v))
                return gfail(
                    g, RL_ERR_UNSUPPORTED,
                    "tools[%zu] (%s): parameter %s: an enum value that XML text cannot hold", i,
                    g->tools[i].name, key);
            if (j) raw(g, " |");
            if (json_string_length(v) == 0)
                raw(g, " \"\"");
            else
                lit_n(g, json_string_value(v), json_string_length(v));
        }
        raw(g, "\n");
        return true;
    }
    if (str) {
        if (!(g->p->schema_flags & RL_SCHEMA_LENIENT))
            return gfail(g, RL_ERR_UNSUPPORTED,
                         "tools[%zu] (%s): parameter %s: a string with constraints other than "
                         "enum cannot be held as raw XML text",
                         i, g->tools[i].name, key);
        rule_text_without(g, rn, close);
        return true;
    }
    *is_string = false;
    /* JSON: the parameter's own grammar, under its own prefix */
    char *text = json_dumps(ps, JSON_COMPACT);
    if (!text) return gfail(g, RL_ERR_NOMEM, "out of memory");
    char *gb = NULL, err[512];
    rl_status r = rl_schema_to_gbnf(text, strlen(text), g->p->schema_flags, &gb, err, sizeof err);
    free(text);
    if (r != RL_OK)
        return gfail(g, r, "tools[%zu] (%s): parameter %s: %s", i, g->tools[i].name, key, err);
    char prefix[48];
    snprintf(prefix, sizeof prefix, "q%zu-%zu-", i, k);
    put_renamed(g, gb, prefix);
    rl__free(gb);
    rl__tc_printf(&g->b, "%s ::= %sroot\n", rn, prefix);
    return true;
}

/* Whether the parameters schema is one the XML layout can hold exactly: an object with
 * declared properties only (keys that cannot break the markup), every required one among
 * them, no combinators. Else RL_ERR_UNSUPPORTED, unless lenient. */
static bool xml_params_ok(gctx *g, size_t i, json_t *params) {
    static const char *const top[] = {
        "type",        "properties", "required", "additionalProperties",
        "description", "title",      "$schema",  "$id",
        "strict",      "examples",   NULL};
    if (!params || (g->p->schema_flags & RL_SCHEMA_LENIENT)) return true;
    const char *why = NULL;
    json_t *ty = json_object_get(params, "type");
    json_t *props = json_object_get(params, "properties");
    if (!only_keys(params, top))
        why = "keywords other than properties and required";
    else if (ty && !(json_is_string(ty) && strcmp(json_string_value(ty), "object") == 0))
        why = "a type other than object";
    else if (props && !json_is_object(props))
        why = "properties is not an object";
    const char *k;
    json_t *v;
    json_object_foreach(props, k, v) {
        if (!k[0] || strpbrk(k, "<>\"&\n\r")) why = "a property name with markup characters";
    }
    json_t *req = json_object_get(params, "required");
    size_t j;
    json_array_foreach(req, j, v) {
        if (!json_is_string(v) || !json_object_get(props, json_string_value(v)))
            why = "a required property that is not declared";
    }
    if (!why) return true;
    return gfail(g, RL_ERR_UNSUPPORTED,
                 "tools[%zu] (%s): parameters: %s cannot be written as "
                 "XML parameters",
                 i, g->tools[i].name, why);
}

/* tc-call-<i> for an XML family. */
static bool xml_call_rules(gctx *g, size_t i, const tc_xml *x) {
    json_t *params = g->tools[i].params;
    if (!xml_params_ok(g, i, params)) return false;
    json_t *props = json_object_get(params, "properties");
    json_t *req = json_object_get(params, "required");
    size_t np = json_is_object(props) ? json_object_size(props) : 0;
    /* properties: required first, then optional, each in the schema's order */
    const char **keys = rl__calloc(np + 1, sizeof *keys);
    bool *isreq = rl__calloc(np + 1, sizeof *isreq);
    if (!keys || !isreq) {
        rl__free(keys);
        rl__free(isreq);
        return gfail(g, RL_ERR_NOMEM, "out of memory");
    }
    size_t nk = 0;
    for (int pass = 0; pass < 2; pass++) {
        const char *k;
        json_t *v;
        json_object_foreach(props, k, v) {
            bool r = false;
            size_t j;
            json_t *rv;
            json_array_foreach(req, j, rv) r =
                r || (json_is_string(rv) && strcmp(json_string_value(rv), k) == 0);
            if (r == (pass == 0)) {
                isreq[nk] = r;
                keys[nk++] = k;
            }
        }
    }
    bool ok = true;
    bool *is_str = rl__calloc(nk + 1, sizeof *is_str);
    if (!is_str) ok = gfail(g, RL_ERR_NOMEM, "out of memory");
    for (size_t k = 0; ok && k < nk; k++)
        ok = xml_value_rule(g, i, k, keys[k], json_object_get(props, keys[k]), x->param_close,
                            &is_str[k]);
    if (ok) {
        rl__tc_printf(&g->b, "tc-call-%zu ::=", i);
        if (x->call_open[0]) mark(g, x->call_open);
        name_lit(g, i);
        if (x->name_end) mark(g, x->name_end);
        for (size_t k = 0; k < nk; k++) {
            raw(g, isreq[k] ? " tc-ws" : " ( tc-ws");
            mark(g, x->param_open);
            lit(g, keys[k]);
            mark(g, x->key_end);
            if (x->attrs_end) {
                lit(g, is_str[k] ? " string=\"true\"" : " string=\"false\"");
                mark(g, x->attrs_end);
            }
            if (x->value_open) {
                raw(g, " tc-ws");
                mark(g, x->value_open);
            }
            /* the parser drops one newline at each end: written or not */
            if (x->trim_nl) raw(g, " \"\\n\"?");
            rl__tc_printf(&g->b, " tc-v%zu-%zu", i, k);
            if (x->trim_nl) raw(g, " \"\\n\"?");
            mark(g, x->param_close);
            if (!isreq[k]) raw(g, " )?");
        }
        if (x->call_close) {
            raw(g, " tc-ws");
            mark(g, x->call_close);
        }
        raw(g, "\n");
    }
    rl__free(keys);
    rl__free(isreq);
    rl__free(is_str);
    return ok;
}

/* ---- families ------------------------------------------------------------------------------ */

/* Rules of the calls (tc-block: what the required form repeats) and the trigger that
 * starts them (for auto; NULL: the family has none, root is written here). */
static bool family_rules(gctx *g, rl_toolcall_family f, const char **trigger) {
    bool par = g->p->parallel, json_calls = true;
    jshape sh = SH_STD;
    *trigger = NULL;
    switch (f) {
    case RL_TOOLCALL_LLAMA3:
        sh = SH_LLAMA;
        break;
    case RL_TOOLCALL_COMMAND_R:
        sh = SH_COHERE;
        break;
    case RL_TOOLCALL_COMMAND_R7B:
        sh = SH_COHERE7B;
        break;
    case RL_TOOLCALL_MISTRAL:
        sh = SH_MISTRAL;
        break;
    case RL_TOOLCALL_APRIEL:
        sh = SH_APRIEL;
        break;
    case RL_TOOLCALL_MISTRAL_ARGS:
    case RL_TOOLCALL_DEEPSEEK_R1:
    case RL_TOOLCALL_DEEPSEEK_V3_1:
    case RL_TOOLCALL_FUNCTIONARY_V3_1:
    case RL_TOOLCALL_FUNCTIONARY_V3_2:
    case RL_TOOLCALL_GPT_OSS:
    case RL_TOOLCALL_KIMI_K2:
    case RL_TOOLCALL_QWEN3_CODER:
    case RL_TOOLCALL_SEED_OSS:
    case RL_TOOLCALL_GLM:
    case RL_TOOLCALL_MINIMAX_M2:
    case RL_TOOLCALL_DEEPSEEK_DSML:
        json_calls = false;
        break;
    default:
        break;
    }
    if (json_calls)
        for (size_t i = 0; i < g->n; i++) json_call_rule(g, i, sh);
    switch (f) {
    case RL_TOOLCALL_GENERIC:
        call_alt(g);
        call_array(g);
        if (par)
            raw(g, "tc-block ::= \"{\" tc-ws \"\\\"tool_calls\\\"\" tc-ws \":\" tc-ws tc-arr tc-ws "
                   "\"}\"\n");
        else
            raw(g, "tc-block ::= tc-call\n");
        raw(g, "tc-calls ::= tc-block\n");
        return true;
    case RL_TOOLCALL_HERMES:
        call_alt(g);
        raw(g, "tc-block ::=");
        mark(g, "<tool_call>");
        raw(g, " tc-ws tc-call tc-ws");
        mark(g, "</tool_call>");
        raw(g, "\n");
        seq(g, "tc-calls", "tc-block", "tc-ws");
        *trigger = "<tool_call>";
        return true;
    case RL_TOOLCALL_LLAMA3:
        call_alt(g);
        seq(g, "tc-json", "tc-call", "tc-ws \";\" tc-ws");
        raw(g, "tc-block ::=");
        mark(g, "<|python_tag|>");
        raw(g, " tc-json\n");
        raw(g, "tc-calls ::= tc-json | tc-block\n");
        return true;
    case RL_TOOLCALL_MISTRAL:
        call_alt(g);
        call_array(g);
        raw(g, "tc-calls ::=");
        mark(g, "[TOOL_CALLS]");
        raw(g, " tc-arr\n");
        *trigger = "[TOOL_CALLS]";
        return true;
    case RL_TOOLCALL_MISTRAL_ARGS:
        for (size_t i = 0; i < g->n; i++) {
            rl__tc_printf(&g->b, "tc-call-%zu ::=", i);
            mark(g, "[TOOL_CALLS]");
            name_lit(g, i);
            raw(g, " (");
            mark(g, "[CALL_ID]");
            raw(g, " [a-zA-Z0-9]{9} )?");
            mark(g, "[ARGS]");
            rl__tc_printf(&g->b, " p%zu-root\n", i);
        }
        call_alt(g);
        seq(g, "tc-calls", "tc-call", "");
        *trigger = "[TOOL_CALLS]";
        return true;
    case RL_TOOLCALL_DEEPSEEK_R1:
    case RL_TOOLCALL_DEEPSEEK_V3_1:
        for (size_t i = 0; i < g->n; i++) {
            rl__tc_printf(&g->b, "tc-call-%zu ::=", i);
            mark(g, "<｜tool▁call▁begin｜>");
            if (f == RL_TOOLCALL_DEEPSEEK_R1) {
                lit(g, "function");
                mark(g, "<｜tool▁sep｜>");
                name_lit(g, i);
                lit(g, "\n```json\n");
                rl__tc_printf(&g->b, " p%zu-root", i);
                lit(g, "\n```");
            } else {
                name_lit(g, i);
                mark(g, "<｜tool▁sep｜>");
                rl__tc_printf(&g->b, " p%zu-root", i);
            }
            mark(g, "<｜tool▁call▁end｜>");
            raw(g, "\n");
        }
        call_alt(g);
        seq(g, "tc-seq", "tc-call", "tc-ws");
        raw(g, "tc-calls ::=");
        mark(g, "<｜tool▁calls▁begin｜>");
        raw(g, " tc-seq (");
        mark(g, "<｜tool▁calls▁end｜>");
        raw(g, f == RL_TOOLCALL_DEEPSEEK_R1 ? " )?\n" : " )\n");
        *trigger = "<｜tool▁calls▁begin｜>";
        return true;
    case RL_TOOLCALL_FUNCTIONARY_V3_1:
        for (size_t i = 0; i < g->n; i++) {
            rl__tc_printf(&g->b, "tc-call-%zu ::=", i);
            mark(g, "<function=");
            name_lit(g, i);
            lit(g, ">");
            rl__tc_printf(&g->b, " p%zu-root", i);
            mark(g, "</function>");
            raw(g, "\n");
        }
        call_alt(g);
        seq(g, "tc-calls", "tc-call", "");
        *trigger = "<function=";
        return true;
    case RL_TOOLCALL_FUNCTIONARY_V3_2:
        for (size_t i = 0; i < g->n; i++) {
            rl__tc_printf(&g->b, "tc-call-%zu ::=", i);
            name_lit(g, i);
            lit(g, "\n");
            rl__tc_printf(&g->b, " p%zu-root\n", i);
        }
        call_alt(g);
        seq(g, "tc-seq", "tc-call", "\">>>\"");
        raw(g, "tc-calls ::= \">>>\"? tc-seq\n");
        return true;
    case RL_TOOLCALL_COMMAND_R:
        call_alt(g);
        call_array(g);
        raw(g, "tc-calls ::= \"Action:\" tc-ws \"```json\" tc-ws tc-arr tc-ws \"```\"\n");
        *trigger = "Action:";
        return true;
    case RL_TOOLCALL_COMMAND_R7B:
        call_alt(g);
        call_array(g);
        /* the model thinks first (an empty thought at least, as its template renders) */
        rule_text_without(g, "tc-thought", "<|END_THINKING|>");
        raw(g, "tc-think ::=");
        mark(g, "<|START_THINKING|>");
        raw(g, " tc-thought");
        mark(g, "<|END_THINKING|>");
        raw(g, "\n");
        raw(g, "tc-calls ::= tc-think?");
        mark(g, "<|START_ACTION|>");
        raw(g, " tc-arr tc-ws");
        mark(g, "<|END_ACTION|>");
        raw(g, "\n");
        *trigger = "<|START_ACTION|>";
        return true;
    case RL_TOOLCALL_GRANITE:
        call_alt(g);
        call_array(g);
        raw(g, "tc-calls ::=");
        mark(g, "<|tool_call|>");
        raw(g, " tc-arr\n");
        *trigger = "<|tool_call|>";
        return true;
    case RL_TOOLCALL_FIREFUNCTION:
        call_alt(g);
        call_array(g);
        raw(g, "tc-calls ::= \" \"? \"functools\" tc-arr\n");
        *trigger = "functools";
        return true;
    case RL_TOOLCALL_NEMOTRON:
        call_alt(g);
        call_array(g);
        raw(g, "tc-calls ::=");
        mark(g, "<TOOLCALL>");
        raw(g, " tc-arr");
        mark(g, "</TOOLCALL>");
        raw(g, "\n");
        *trigger = "<TOOLCALL>";
        return true;
    case RL_TOOLCALL_APRIEL:
        call_alt(g);
        call_array(g);
        seq(g, "tc-objs", "tc-call", "tc-ws");
        raw(g, "tc-calls ::=");
        mark(g, "<tool_calls>");
        raw(g, " tc-ws ( tc-arr | tc-objs ) tc-ws");
        mark(g, "</tool_calls>");
        raw(g, "\n");
        *trigger = "<tool_calls>";
        return true;
    case RL_TOOLCALL_KIMI_K2:
        for (size_t i = 0; i < g->n; i++) {
            rl__tc_printf(&g->b, "tc-call-%zu ::=", i);
            mark(g, "<|tool_call_begin|>");
            lit(g, "functions.");
            name_lit(g, i);
            raw(g, " \":\" [0-9]{1,4}");
            mark(g, "<|tool_call_argument_begin|>");
            rl__tc_printf(&g->b, " p%zu-root", i);
            mark(g, "<|tool_call_end|>");
            raw(g, "\n");
        }
        call_alt(g);
        seq(g, "tc-seq", "tc-call", "tc-ws");
        raw(g, "tc-calls ::=");
        mark(g, "<|tool_calls_section_begin|>");
        raw(g, " tc-seq");
        mark(g, "<|tool_calls_section_end|>");
        raw(g, "\n");
        *trigger = "<|tool_calls_section_begin|>";
        return true;
    case RL_TOOLCALL_GPT_OSS:
        for (size_t i = 0; i < g->n; i++) {
            /* "<|channel|>commentary to=functions.N" or " to=functions.N<|channel|>commentary" */
            rl__tc_printf(&g->b, "tc-call-%zu ::= (", i);
            mark(g, "<|channel|>");
            lit(g, "commentary to=functions.");
            name_lit(g, i);
            raw(g, " |");
            lit(g, " to=functions.");
            name_lit(g, i);
            mark(g, "<|channel|>");
            lit(g, "commentary");
            raw(g, " ) ( \" json\" | \" \"");
            mark(g, "<|constrain|>");
            lit(g, "json");
            raw(g, " )?");
            mark(g, "<|message|>");
            rl__tc_printf(&g->b, " p%zu-root\n", i);
        }
        call_alt(g);
        /* an optional analysis message first */
        rule_text_without(g, "tc-analysis-text", "<|end|>");
        raw(g, "tc-analysis ::=");
        mark(g, "<|channel|>");
        lit(g, "analysis");
        mark(g, "<|message|>");
        raw(g, " tc-analysis-text");
        mark(g, "<|end|>");
        mark(g, "<|start|>");
        lit(g, "assistant");
        raw(g, "\n");
        raw(g, "tc-calls ::= tc-analysis? tc-call\n");
        return true;
    case RL_TOOLCALL_QWEN3_CODER:
    case RL_TOOLCALL_SEED_OSS:
    case RL_TOOLCALL_GLM:
    case RL_TOOLCALL_MINIMAX_M2:
    case RL_TOOLCALL_DEEPSEEK_DSML: {
        const tc_family *fam = rl__tc_family(f);
        const tc_spec *sp = &fam->specs[0];
        for (size_t i = 0; i < g->n; i++)
            if (!xml_call_rules(g, i, sp->xml)) return false;
        call_alt(g);
        /* the block: one call, or several with multi (parallel); any of the family's
           wrappers (DeepSeek V3.2's function_calls, V4's tool_calls) */
        bool multi = sp->xml->multi && !sp->xml->one_per_block;
        if (multi) seq(g, "tc-seq", "tc-call", "tc-ws");
        raw(g, "tc-block ::=");
        for (size_t k = 0; k < fam->n_specs; k++) {
            if (k) raw(g, " |");
            mark(g, fam->specs[k].open);
            raw(g, multi ? " tc-ws tc-seq tc-ws" : " tc-ws tc-call tc-ws");
            mark(g, fam->specs[k].close);
        }
        raw(g, "\n");
        if (multi)
            raw(g, "tc-calls ::= tc-block\n");
        else
            seq(g, "tc-calls", "tc-block", "tc-ws");
        *trigger = f == RL_TOOLCALL_DEEPSEEK_DSML ? "<｜DSML｜" : sp->open;
        return true;
    }
    default:
        return gfail(g, RL_ERR_UNSUPPORTED, "family %s has no grammar", rl_toolcall_family_name(f));
    }
}

/* root for the choice. */
static void root_rule(gctx *g, rl_toolcall_family f, const char *trigger) {
    if (g->p->choice != RL_TOOLCALL_CHOICE_AUTO) {
        raw(g, "root ::= tc-calls tc-tail\n");
        return;
    }
    switch (f) {
    case RL_TOOLCALL_GENERIC:
        raw(g, "root ::= tc-calls tc-tail | \"{\" tc-ws \"\\\"response\\\"\" tc-ws \":\" tc-ws "
               "tc-string tc-ws \"}\"\n");
        return;
    case RL_TOOLCALL_LLAMA3:
        /* bare JSON only where the text starts; <|python_tag|> anywhere */
        rule_text_without(g, "tc-free", "<|python_tag|>");
        raw(g, "tc-plain ::= [ \\t\\n]{0,20} ( [^{ \\t\\n\\x00] tc-free )?\n");
        raw(g, "root ::= tc-json tc-tail | tc-plain ( tc-block tc-tail )?\n");
        return;
    case RL_TOOLCALL_FUNCTIONARY_V3_2:
        rule_text_without(g, "tc-free", ">>>");
        raw(g, "root ::= tc-calls tc-tail | \">>>\"? \"all\\n\" tc-free ( \">>>\" tc-seq tc-tail "
               ")?\n");
        return;
    case RL_TOOLCALL_GPT_OSS:
        rule_text_without(g, "tc-final-text", "<|end|>");
        raw(g, "root ::= tc-calls tc-tail | tc-analysis?");
        mark(g, "<|channel|>");
        lit(g, "final");
        mark(g, "<|message|>");
        raw(g, " tc-final-text\n");
        return;
    default:
        rule_text_without(g, "tc-free", trigger);
        raw(g, "root ::= tc-free ( tc-calls tc-tail )?\n");
        return;
    }
}

/* ---- public ---------------------------------------------------------------------------------- */

RL_API rl_toolcall_grammar_params rl_toolcall_grammar_default_params(void) {
    rl_toolcall_grammar_params p = {0};
    p.choice = RL_TOOLCALL_CHOICE_REQUIRED;
    p.parallel = true;
    return p;
}

static const char COMMON_RULES[] =
    "tc-ws ::= [ \\t\\n]{0,24}\n"
    "tc-tail ::= [ \\t\\n]{0,4}\n"
    "tc-string ::= \"\\\"\" ( [^\"\\\\\\x7F\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" "
    "[0-9a-fA-F]{4} ) )* \"\\\"\"\n";

RL_API rl_status rl_toolcall_grammar(rl_toolcall_family f, const char *tools_json,
                                     const rl_toolcall_grammar_params *p, char **gbnf, char *err,
                                     size_t err_size) {
    if (err && err_size) err[0] = 0;
    if (!gbnf) return RL_ERR_INVALID_ARG;
    *gbnf = NULL;
    rl_toolcall_grammar_params d = rl_toolcall_grammar_default_params();
    if (!p) p = &d;
    if (p->choice == RL_TOOLCALL_CHOICE_NONE) return RL_OK;
    gctx g = {.p = p, .err = err, .err_size = err_size};
    if (!rl__tc_family(f) || f == RL_TOOLCALL_NONE) {
        rl__fmt(err, err_size, "family: %s has no grammar", rl_toolcall_family_name(f));
        return f == RL_TOOLCALL_NONE ? RL_ERR_UNSUPPORTED : RL_ERR_INVALID_ARG;
    }
    if (!tools_json) {
        rl__fmt(err, err_size, "tools: missing");
        return RL_ERR_INVALID_ARG;
    }
    json_error_t je;
    json_t *tools = json_loads(tools_json, JSON_DECODE_ANY, &je);
    if (!tools || !json_is_array(tools) || json_array_size(tools) == 0) {
        if (!tools)
            rl__fmt(err, err_size, "tools: invalid JSON at line %d, column %d: %s", je.line,
                    je.column, je.text);
        else
            rl__fmt(err, err_size, "tools: not a non-empty array");
        json_decref(tools);
        return RL_ERR_INVALID_ARG;
    }
    size_t nt = json_array_size(tools);
    g.tools = rl__calloc(nt, sizeof *g.tools);
    if (!g.tools) {
        json_decref(tools);
        rl__fmt(err, err_size, "out of memory");
        return RL_ERR_NOMEM;
    }
    for (size_t i = 0; i < nt && g.st == RL_OK; i++) {
        json_t *t = json_array_get(tools, i);
        json_t *fn = json_object_get(t, "function");
        if (!json_is_object(fn)) fn = t;
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (!json_is_object(t) || !name || !name[0]) {
            gfail(&g, RL_ERR_INVALID_ARG, "tools[%zu].function.name: missing or not a string", i);
            break;
        }
        /* the names every family's parser reads back (OpenAI's rule, with '.') */
        size_t nl = strlen(name);
        bool good = nl <= 64;
        for (const char *c = name; *c && good; c++)
            good = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                   (*c >= '0' && *c <= '9') || *c == '_' || *c == '-' || *c == '.';
        if (!good)
            gfail(&g, RL_ERR_INVALID_ARG,
                  "tools[%zu].function.name: 1 to 64 letters, digits, '_', '-' or '.'", i);
        for (size_t k = 0; k < i; k++) {
            json_t *o = json_object_get(json_array_get(tools, k), "function");
            if (!json_is_object(o)) o = json_array_get(tools, k);
            const char *on = json_string_value(json_object_get(o, "name"));
            if (on && strcmp(on, name) == 0)
                gfail(&g, RL_ERR_INVALID_ARG, "tools[%zu].function.name: %s again", i, name);
        }
        json_t *params = json_object_get(fn, "parameters");
        if (params && !json_is_object(params) && !json_is_null(params))
            gfail(&g, RL_ERR_INVALID_ARG, "tools[%zu].function.parameters: not an object", i);
        if (p->choice == RL_TOOLCALL_CHOICE_NAMED &&
            (!p->function_name || strcmp(p->function_name, name) != 0))
            continue;
        g.tools[g.n].name = name;
        g.tools[g.n].params = json_is_object(params) ? params : NULL;
        g.n++;
    }
    if (g.st == RL_OK && g.n == 0)
        gfail(&g, RL_ERR_INVALID_ARG, "tool_choice: function %s is not among the tools",
              p->function_name ? p->function_name : "(none given)");
    if (g.st == RL_OK) {
        raw(&g, COMMON_RULES);
        bool xml = f == RL_TOOLCALL_QWEN3_CODER || f == RL_TOOLCALL_SEED_OSS ||
                   f == RL_TOOLCALL_GLM || f == RL_TOOLCALL_MINIMAX_M2 ||
                   f == RL_TOOLCALL_DEEPSEEK_DSML;
        for (size_t i = 0; i < g.n && g.st == RL_OK && !xml; i++)
            schema_rules(&g, i, g.tools[i].params, "parameters");
        const char *trigger = NULL;
        if (g.st == RL_OK && family_rules(&g, f, &trigger)) root_rule(&g, f, trigger);
    }
    if (g.st == RL_OK && g.b.oom) gfail(&g, RL_ERR_NOMEM, "out of memory");
    json_decref(tools);
    rl__free(g.tools);
    if (g.st != RL_OK) {
        rl__tc_buf_free(&g.b);
        return g.st;
    }
    *gbnf = g.b.p;
    return RL_OK;
}
