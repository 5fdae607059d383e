/*
 * toolcall.h - what the files of src/toolcall share: a growing byte string, a JSON scanner
 * that tells a complete value from one the text may still complete, the family tables, and
 * the scanner that turns generated text into content, reasoning and tool calls.
 *
 * One engine serves both entry points: rl_toolcall_parse runs it once over the whole text
 * with `final` set; the streaming parser runs it after each delta without `final` and once
 * more at the end with it. Every decision the engine takes without `final` is one that no
 * continuation of the text can change (where the text could still go either way it
 * answers "more" and waits), so the streamed events always add up to the one-shot result.
 */
#ifndef RL_TOOLCALL_H
#define RL_TOOLCALL_H

#include "../util/strbuf.h"
#include "../util/util.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- growing strings ----------------------------------------------------------------- */
/* The tool-call module's names for util's growing string (util/strbuf.h: contracts there). */
typedef rl__strbuf tc_buf;
#define rl__tc_put rl__strbuf_put
#define rl__tc_puts rl__strbuf_puts
#define rl__tc_putc rl__strbuf_putc
#define rl__tc_printf rl__strbuf_printf
#define rl__tc_put_cp rl__strbuf_put_cp
#define rl__tc_buf_free rl__strbuf_free
/* s[0..n) as a JSON string literal (quotes included; UTF-8 kept, controls escaped). */
bool rl__tc_put_json_str(tc_buf *b, const char *s, size_t n);

/* ---- JSON scanning ------------------------------------------------------------------- */
typedef enum tc_res {
    TC_OK = 0, /* recognised; the end is known */
    TC_FAIL,   /* not this construct, whatever follows */
    TC_MORE    /* the text ends where it could still become this construct */
} tc_res;

#define TC_JSON_MAX_DEPTH 256

/* One JSON value (RFC 8259) starting exactly at s[pos] (no leading whitespace): TC_OK with
 * *end just past it, TC_FAIL when the text cannot be one, TC_MORE when it ends inside one
 * (a number or literal that ends at len counts as complete only when final). Nesting
 * deeper than TC_JSON_MAX_DEPTH fails. */
tc_res rl__tc_json_value(const char *s, size_t len, size_t pos, bool final, size_t *end);

/* Members of the object s[a..b) (a complete value from rl__tc_json_value): calls fn for
 * each with the key's raw span (quotes included) and the value's span; stops when fn
 * returns false. Returns false when s[a] is not '{'. */
typedef bool (*tc_member_fn)(void *user, const char *key, size_t klen, size_t va, size_t vb);
bool rl__tc_json_members(const char *s, size_t a, size_t b, tc_member_fn fn, void *user);
/* Elements of the array s[a..b): fn(user, key=NULL, 0, va, vb). False when not '['. */
bool rl__tc_json_elements(const char *s, size_t a, size_t b, tc_member_fn fn, void *user);
/* Decode the JSON string literal s[a..b) (quotes included) into out. False on bad escapes
 * or lone surrogates. */
bool rl__tc_json_unquote(const char *s, size_t a, size_t b, tc_buf *out);
/* Whether the raw key s[0..n) (quotes included) decodes to z. */
bool rl__tc_json_key_is(const char *key, size_t n, const char *z);
/* Whitespace as JSON defines it. */
static inline bool rl__tc_is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* ---- families ------------------------------------------------------------------------- */
/* Modes of the text between tool calls. */
enum { TC_MODE_CONTENT = 0, TC_MODE_REASONING = 1 };
#define TC_IN_CONTENT (1u << TC_MODE_CONTENT)
#define TC_IN_REASONING (1u << TC_MODE_REASONING)
#define TC_IN_ALL (TC_IN_CONTENT | TC_IN_REASONING)

/* Kinds of blocks a family's text may hold. */
typedef enum tc_kind {
    TC_K_JSON,    /* open, JSON call object(s) or array(s) of them, close */
    TC_K_GENERIC, /* the whole text is one JSON object: tool_calls / tool_call / call / response */
    TC_K_NAME_ARGS, /* open, name, [id_mark id], name_end, JSON object, close */
    TC_K_DEEPSEEK, /* <｜tool▁calls▁begin｜> ( <｜tool▁call▁begin｜> ... <｜tool▁call▁end｜> )+ */
    TC_K_PYTAG,   /* <|python_tag|> JSON call(s), name.call(k=v, ...) or code, to the end */
    TC_K_FUNC32,  /* Functionary v3.2: [>>>]recipient\n then JSON, code, or content for all */
    TC_K_HARMONY, /* GPT-OSS message header, then JSON arguments for a function recipient */
    TC_K_XML,     /* open, calls with one XML element per parameter, close */
    TC_K_SWITCH   /* a marker that is dropped and sets the mode */
} tc_kind;

/* XML parameter layouts (TC_K_XML). */
typedef struct tc_xml {
    const char *call_open;   /* "<function=", "<invoke name=\"" ("" : the name follows open) */
    const char *name_end;    /* ">", "\">" (NULL: the name ends at whitespace or '<') */
    const char *call_close;  /* "</function>" (NULL: the block close ends the call) */
    const char *param_open;  /* "<parameter=", "<arg_key>" */
    const char *key_end;     /* ">", "</arg_key>", "\"" */
    const char *attrs_end;   /* DSML: ">" after attributes (string="true|false"); NULL none */
    const char *value_open;  /* "<arg_value>" after whitespace; NULL none */
    const char *param_close; /* "</parameter>", "</arg_value>" */
    bool trim_nl;            /* drop one newline at each end of a value */
    bool multi;              /* several calls in one block */
    bool one_per_block;      /* yet the grammar writes one call per block (as the template) */
} tc_xml;

typedef struct tc_spec {
    tc_kind kind;
    uint8_t modes;     /* TC_IN_*: the modes in which the block is looked for */
    bool anchored;     /* only where the text starts (after whitespace); open may be NULL */
    const char *open;  /* the marker that starts the block */
    const char *close; /* the marker that ends it (NULL: none) */
    bool close_opt;    /* close may be missing where the text ends */
    /* TC_K_JSON */
    bool multi;    /* several values, separated by whitespace, ';' or ',' */
    bool strict;   /* call objects may hold only name/arguments/id/type keys */
    bool fence;    /* a ```json ... ``` fence around the value */
    bool alt_json; /* TC_K_NAME_ARGS: a JSON array/object may follow open instead */
    /* TC_K_NAME_ARGS */
    const char *name_end;  /* "[ARGS]", ">", "<|tool_call_argument_begin|>" */
    const char *id_mark;   /* "[CALL_ID]": an id between name and name_end */
    const char *call_open; /* with sect_close: open starts a section of calls, each
                              call_open name name_end args close (Kimi) */
    const char *sect_close;
    const char *name_strip; /* a prefix dropped from the name ("functions.") */
    char name_cut;          /* the name ends at this byte (':' of "name:0") */
    bool bare;              /* TC_K_DEEPSEEK: open is the first call's marker, no section */
    /* TC_K_XML */
    const tc_xml *xml;
    /* TC_K_SWITCH */
    int to_mode;
} tc_spec;

typedef enum tc_idstyle { TC_ID_OPENAI, TC_ID_ALNUM9 } tc_idstyle;

typedef struct tc_family {
    rl_toolcall_family id;
    const char *name; /* "hermes", "llama3", ... */
    const tc_spec *specs;
    size_t n_specs;
    tc_idstyle ids;
    bool model_ids;        /* ids the model writes are kept */
    const char *drop_name; /* calls of this tool are dropped (Command R's directly-answer) */
} tc_family;

const tc_family *rl__tc_family(rl_toolcall_family f);

/* The <think> ... </think> switches added by RL_TOOLCALL_PARSE_REASONING. */
extern const tc_spec rl__tc_think_specs[2];

/* ---- the scanner ------------------------------------------------------------------------ */
typedef struct tc_call {
    char *id, *name, *args; /* NUL-terminated; args: a JSON object's text */
} tc_call;

/* Typed view of the tools (for XML parameters and RL_TOOLCALL_PARSE_KNOWN_NAMES). */
typedef struct tc_tools tc_tools;
rl_status rl__tc_tools_load(const char *tools_json, tc_tools **out, char *err, size_t err_size);
void rl__tc_tools_free(tc_tools *t);
bool rl__tc_tools_has(const tc_tools *t, const char *name);
/* Whether parameter key of tool name is declared with "type": "string" only (its XML value
 * is then a string even when it reads as JSON). */
bool rl__tc_tools_param_is_string(const tc_tools *t, const char *name, const char *key);

typedef struct tc_event {
    int type; /* rl_toolcall_event_type */
    uint32_t index;
    size_t a, b;   /* the text: bytes of the scanner's event arena */
    size_t ia, ib; /* EV_CALL: the id, NUL included (else 0, 0) */
} tc_event;

typedef struct tc_scan {
    const tc_family *fam;
    tc_spec extra[2]; /* think specs when asked for */
    size_t n_extra;
    uint32_t flags;
    uint64_t id_seed;
    tc_tools *tools; /* owned; NULL without tools */

    /* the text so far; the engine looks at text[0..ready) (whole UTF-8 characters) */
    tc_buf text;
    size_t ready;
    size_t pos; /* text before it is decided */
    int mode;
    bool at_start;    /* nothing but whitespace decided yet */
    bool after_block; /* whitespace right after a block is dropped */
    tc_buf pend_ws;   /* whitespace held: dropped if a block follows */
    size_t wait_len;  /* ready when a block at pos last answered "more" (0: none) */
    int pend_mode;

    /* results */
    tc_buf content, reasoning;
    bool has_content, has_reasoning;
    tc_call *calls;
    size_t n_calls, cap_calls;

    /* calls of the block being parsed (committed on TC_OK) */
    tc_call *tmp;
    size_t n_tmp, cap_tmp;
    tc_buf scratch;
    bool oom;

    /* events since the last call of the streaming API (when record_events) */
    bool record_events;
    tc_event *ev;
    size_t n_ev, cap_ev;
    tc_buf ev_text;
} tc_scan;

rl_status rl__tc_scan_init(tc_scan *s, rl_toolcall_family f, const rl_toolcall_params *p, char *err,
                           size_t err_size);
void rl__tc_scan_free(tc_scan *s);
/* Append text; checks UTF-8 (RL_ERR_INVALID_ARG naming the byte). */
rl_status rl__tc_scan_feed(tc_scan *s, const char *text, size_t len, char *err, size_t err_size);
/* Decide what can be decided (all of it when final). RL_ERR_NOMEM on allocation failure. */
rl_status rl__tc_scan_run(tc_scan *s, bool final, char *err, size_t err_size);
/* The assistant message as JSON text (caller frees with rl__free). */
rl_status rl__tc_scan_result(tc_scan *s, char **out);

/* Block parsers (blocks.c): parse the block of spec sp whose open marker (or anchor)
 * starts at pos; on TC_OK set *end, append calls with rl__tc_add_tmp and set *mode. */
tc_res rl__tc_block(tc_scan *s, const tc_spec *sp, size_t pos, bool final, size_t *end, int *mode,
                    tc_buf *content_out);
bool rl__tc_add_tmp(tc_scan *s, const char *name, size_t nlen, const char *args, size_t alen,
                    const char *id, size_t idlen);

/* Match literal z at s->text[pos..ready): TC_OK (*end past it), TC_MORE (the text ends
 * inside a prefix of z and !final), TC_FAIL. */
tc_res rl__tc_lit(const tc_scan *s, size_t pos, const char *z, bool final, size_t *end);

#endif /* RL_TOOLCALL_H */
