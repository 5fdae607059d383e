/*
 * families.c - the table of tool-call families: for each, the blocks its text may hold
 * (markers, layout, what a block means), how its call ids look, and the markers that
 * identify its chat template. The parsers in blocks.c read these rows; adding a family
 * that reuses a layout is a new row.
 *
 * The layouts were learned from the published chat templates (they render a call the way
 * the model was trained to write it) and from llama.cpp's common/chat.cpp (MIT); no code
 * of it is used.
 */
#include "toolcall/toolcall.h"

#include <jansson.h>
#include <strings.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define SW(marker, mode)                                                                           \
    { .kind = TC_K_SWITCH, .modes = TC_IN_ALL, .open = (marker), .to_mode = (mode) }

static const tc_spec generic_specs[] = {
    {.kind = TC_K_GENERIC, .modes = TC_IN_CONTENT, .anchored = true},
};

static const tc_spec hermes_specs[] = {
    {.kind = TC_K_JSON,
     .modes = TC_IN_CONTENT,
     .open = "<tool_call>",
     .close = "</tool_call>",
     .close_opt = true},
};

static const tc_spec llama3_specs[] = {
    {.kind = TC_K_JSON, .modes = TC_IN_CONTENT, .anchored = true, .multi = true, .strict = true},
    {.kind = TC_K_PYTAG, .modes = TC_IN_CONTENT, .open = "<|python_tag|>"},
};

static const tc_spec mistral_specs[] = {
    {.kind = TC_K_NAME_ARGS,
     .modes = TC_IN_CONTENT,
     .open = "[TOOL_CALLS]",
     .alt_json = true,
     .name_end = "[ARGS]",
     .id_mark = "[CALL_ID]"},
};

static const tc_spec deepseek_specs[] = {
    {.kind = TC_K_DEEPSEEK,
     .modes = TC_IN_CONTENT,
     .open = "<｜tool▁calls▁begin｜>",
     .close = "<｜tool▁calls▁end｜>",
     .close_opt = true},
    {.kind = TC_K_DEEPSEEK,
     .modes = TC_IN_CONTENT,
     .open = "<｜tool▁call▁begin｜>",
     .close = "<｜tool▁calls▁end｜>",
     .close_opt = true,
     .bare = true},
};

static const tc_spec functionary31_specs[] = {
    {.kind = TC_K_NAME_ARGS,
     .modes = TC_IN_CONTENT,
     .open = "<function=",
     .name_end = ">",
     .close = "</function>",
     .close_opt = true},
    {.kind = TC_K_PYTAG, .modes = TC_IN_CONTENT, .open = "<|python_tag|>"},
};

static const tc_spec functionary32_specs[] = {
    {.kind = TC_K_FUNC32, .modes = TC_IN_CONTENT, .anchored = true},
    {.kind = TC_K_FUNC32, .modes = TC_IN_CONTENT, .open = ">>>"},
};

static const tc_spec command_r_specs[] = {
    {.kind = TC_K_JSON,
     .modes = TC_IN_CONTENT,
     .open = "Action:",
     .fence = true,
     .close_opt = true},
};

static const tc_spec command_r7b_specs[] = {
    {.kind = TC_K_JSON,
     .modes = TC_IN_CONTENT,
     .open = "<|START_ACTION|>",
     .close = "<|END_ACTION|>",
     .close_opt = true},
    SW("<|START_THINKING|>", TC_MODE_REASONING),
    SW("<|END_THINKING|>", TC_MODE_CONTENT),
    SW("<|START_RESPONSE|>", TC_MODE_CONTENT),
    SW("<|END_RESPONSE|>", TC_MODE_CONTENT),
    SW("<|START_TEXT|>", TC_MODE_CONTENT),
    SW("<|END_TEXT|>", TC_MODE_CONTENT),
};

static const tc_spec granite_specs[] = {
    {.kind = TC_K_JSON, .modes = TC_IN_CONTENT, .open = "<|tool_call|>"},
};

/* GPT-OSS (harmony): the prompt ends with "<|start|>assistant", so the first header starts
 * with "<|channel|>" or " to=". */
static const tc_spec gpt_oss_specs[] = {
    {.kind = TC_K_HARMONY, .modes = TC_IN_ALL, .anchored = true, .open = "to="},
    {.kind = TC_K_HARMONY, .modes = TC_IN_ALL, .open = "<|channel|>"},
    {.kind = TC_K_HARMONY, .modes = TC_IN_ALL, .open = "<|start|>"},
    SW("<|end|>", TC_MODE_CONTENT),
    SW("<|call|>", TC_MODE_CONTENT),
    SW("<|return|>", TC_MODE_CONTENT),
};

static const tc_spec firefunction_specs[] = {
    {.kind = TC_K_JSON, .modes = TC_IN_CONTENT, .open = "functools"},
};

static const tc_spec nemotron_specs[] = {
    {.kind = TC_K_JSON,
     .modes = TC_IN_CONTENT,
     .open = "<TOOLCALL>",
     .close = "</TOOLCALL>",
     .close_opt = true},
};

static const tc_spec apriel_specs[] = {
    {.kind = TC_K_JSON,
     .modes = TC_IN_CONTENT,
     .open = "<tool_calls>",
     .close = "</tool_calls>",
     .close_opt = true,
     .multi = true},
};

static const tc_spec kimi_specs[] = {
    {.kind = TC_K_NAME_ARGS,
     .modes = TC_IN_CONTENT,
     .open = "<|tool_calls_section_begin|>",
     .call_open = "<|tool_call_begin|>",
     .name_end = "<|tool_call_argument_begin|>",
     .close = "<|tool_call_end|>",
     .sect_close = "<|tool_calls_section_end|>",
     .close_opt = true,
     .name_strip = "functions.",
     .name_cut = ':'},
};

static const tc_xml qwen3_coder_xml = {.call_open = "<function=",
                                       .name_end = ">",
                                       .call_close = "</function>",
                                       .param_open = "<parameter=",
                                       .key_end = ">",
                                       .param_close = "</parameter>",
                                       .trim_nl = true,
                                       .multi = true,
                                       .one_per_block = true};

static const tc_spec qwen3_coder_specs[] = {
    {.kind = TC_K_XML,
     .modes = TC_IN_CONTENT,
     .open = "<tool_call>",
     .close = "</tool_call>",
     .close_opt = true,
     .xml = &qwen3_coder_xml},
};

static const tc_spec seed_oss_specs[] = {
    {.kind = TC_K_XML,
     .modes = TC_IN_CONTENT,
     .open = "<seed:tool_call>",
     .close = "</seed:tool_call>",
     .close_opt = true,
     .xml = &qwen3_coder_xml},
};

static const tc_xml glm_xml = {.call_open = "",
                               .name_end = NULL,
                               .call_close = NULL,
                               .param_open = "<arg_key>",
                               .key_end = "</arg_key>",
                               .value_open = "<arg_value>",
                               .param_close = "</arg_value>"};

static const tc_spec glm_specs[] = {
    {.kind = TC_K_XML,
     .modes = TC_IN_CONTENT,
     .open = "<tool_call>",
     .close = "</tool_call>",
     .close_opt = true,
     .xml = &glm_xml},
};

static const tc_xml minimax_xml = {.call_open = "<invoke name=\"",
                                   .name_end = "\">",
                                   .call_close = "</invoke>",
                                   .param_open = "<parameter name=\"",
                                   .key_end = "\">",
                                   .param_close = "</parameter>",
                                   .multi = true};

static const tc_spec minimax_specs[] = {
    {.kind = TC_K_XML,
     .modes = TC_IN_CONTENT,
     .open = "<minimax:tool_call>",
     .close = "</minimax:tool_call>",
     .close_opt = true,
     .xml = &minimax_xml},
};

static const tc_xml dsml_xml = {.call_open = "<｜DSML｜invoke name=\"",
                                .name_end = "\">",
                                .call_close = "</｜DSML｜invoke>",
                                .param_open = "<｜DSML｜parameter name=\"",
                                .key_end = "\"",
                                .attrs_end = ">",
                                .param_close = "</｜DSML｜parameter>",
                                .multi = true};

static const tc_spec dsml_specs[] = {
    {.kind = TC_K_XML,
     .modes = TC_IN_CONTENT,
     .open = "<｜DSML｜function_calls>",
     .close = "</｜DSML｜function_calls>",
     .close_opt = true,
     .xml = &dsml_xml},
    {.kind = TC_K_XML,
     .modes = TC_IN_CONTENT,
     .open = "<｜DSML｜tool_calls>",
     .close = "</｜DSML｜tool_calls>",
     .close_opt = true,
     .xml = &dsml_xml},
};

const tc_spec rl__tc_think_specs[2] = {
    SW("<think>", TC_MODE_REASONING),
    SW("</think>", TC_MODE_CONTENT),
};

#define FAM(e, nm, sp, ...) [e] = {.id = e, .name = nm, .specs = sp, .n_specs = N(sp), __VA_ARGS__}

static const tc_family families[RL_TOOLCALL_FAMILY_COUNT] = {
    [RL_TOOLCALL_NONE] = {.id = RL_TOOLCALL_NONE, .name = "none"},
    FAM(RL_TOOLCALL_GENERIC, "generic", generic_specs),
    FAM(RL_TOOLCALL_HERMES, "hermes", hermes_specs),
    FAM(RL_TOOLCALL_LLAMA3, "llama3", llama3_specs),
    FAM(RL_TOOLCALL_MISTRAL, "mistral", mistral_specs, .ids = TC_ID_ALNUM9, .model_ids = true),
    FAM(RL_TOOLCALL_MISTRAL_ARGS, "mistral-args", mistral_specs, .ids = TC_ID_ALNUM9,
        .model_ids = true),
    FAM(RL_TOOLCALL_DEEPSEEK_R1, "deepseek-r1", deepseek_specs),
    FAM(RL_TOOLCALL_DEEPSEEK_V3_1, "deepseek-v3.1", deepseek_specs),
    FAM(RL_TOOLCALL_FUNCTIONARY_V3_1, "functionary-v3.1", functionary31_specs),
    FAM(RL_TOOLCALL_FUNCTIONARY_V3_2, "functionary-v3.2", functionary32_specs),
    FAM(RL_TOOLCALL_COMMAND_R, "command-r", command_r_specs, .drop_name = "directly-answer"),
    FAM(RL_TOOLCALL_COMMAND_R7B, "command-r7b", command_r7b_specs),
    FAM(RL_TOOLCALL_GRANITE, "granite", granite_specs),
    FAM(RL_TOOLCALL_GPT_OSS, "gpt-oss", gpt_oss_specs),
    FAM(RL_TOOLCALL_FIREFUNCTION, "firefunction", firefunction_specs),
    FAM(RL_TOOLCALL_NEMOTRON, "nemotron", nemotron_specs),
    FAM(RL_TOOLCALL_APRIEL, "apriel", apriel_specs),
    FAM(RL_TOOLCALL_KIMI_K2, "kimi-k2", kimi_specs),
    FAM(RL_TOOLCALL_QWEN3_CODER, "qwen3-coder", qwen3_coder_specs),
    FAM(RL_TOOLCALL_SEED_OSS, "seed-oss", seed_oss_specs),
    FAM(RL_TOOLCALL_GLM, "glm", glm_specs),
    FAM(RL_TOOLCALL_MINIMAX_M2, "minimax-m2", minimax_specs),
    FAM(RL_TOOLCALL_DEEPSEEK_DSML, "deepseek-dsml", dsml_specs),
};

const tc_family *rl__tc_family(rl_toolcall_family f) {
    if ((unsigned)f >= RL_TOOLCALL_FAMILY_COUNT) return NULL;
    return &families[f];
}

RL_API const char *rl_toolcall_family_name(rl_toolcall_family f) {
    const tc_family *fam = rl__tc_family(f);
    return fam ? fam->name : "?";
}

RL_API rl_status rl_toolcall_family_from_name(const char *name, rl_toolcall_family *out) {
    if (!name || !out) return RL_ERR_INVALID_ARG;
    for (int i = 0; i < RL_TOOLCALL_FAMILY_COUNT; i++) {
        if (strcasecmp(name, families[i].name) == 0) {
            *out = (rl_toolcall_family)i;
            return RL_OK;
        }
    }
    return RL_ERR_NOT_FOUND;
}

/* ---- detection -------------------------------------------------------------------------- */

static bool has(const char *s, size_t n, const char *z) {
    size_t zl = strlen(z);
    if (zl > n) return false;
    return memmem(s, n, z, zl) != NULL;
}

/* Ordered: where templates share a marker, the more specific test comes first
 * (Qwen3-Coder's <function=...<parameter= and GLM's <arg_key> before plain <tool_call>,
 * harmony's <|channel|> before everything). */
RL_API rl_toolcall_family rl_toolcall_detect(const char *s, size_t n) {
    if (!s) return RL_TOOLCALL_GENERIC;
    if (has(s, n, "<|channel|>") && has(s, n, "<|message|>")) return RL_TOOLCALL_GPT_OSS;
    if (has(s, n, "[TOOL_CALLS]"))
        return has(s, n, "[ARGS]") ? RL_TOOLCALL_MISTRAL_ARGS : RL_TOOLCALL_MISTRAL;
    if (has(s, n, "<|tool_calls_section_begin|>")) return RL_TOOLCALL_KIMI_K2;
    if (has(s, n, "DSML") && (has(s, n, "function_calls") || has(s, n, "tool_calls")))
        return RL_TOOLCALL_DEEPSEEK_DSML;
    if (has(s, n, "tool▁calls▁begin") || has(s, n, "tool▁call▁begin"))
        return has(s, n, "```json") ? RL_TOOLCALL_DEEPSEEK_R1 : RL_TOOLCALL_DEEPSEEK_V3_1;
    if (has(s, n, ">>>all")) return RL_TOOLCALL_FUNCTIONARY_V3_2;
    if (has(s, n, "<|START_ACTION|>")) return RL_TOOLCALL_COMMAND_R7B;
    if (has(s, n, "Action:") && has(s, n, "```json")) return RL_TOOLCALL_COMMAND_R;
    if (has(s, n, "<seed:tool_call>")) return RL_TOOLCALL_SEED_OSS;
    if (has(s, n, "<function=") && has(s, n, "<parameter=")) return RL_TOOLCALL_QWEN3_CODER;
    if (has(s, n, "<function=")) return RL_TOOLCALL_FUNCTIONARY_V3_1;
    if (has(s, n, "<minimax:tool_call>")) return RL_TOOLCALL_MINIMAX_M2;
    if (has(s, n, "<arg_key>") && has(s, n, "<tool_call>")) return RL_TOOLCALL_GLM;
    if (has(s, n, "<|tool_call|>")) return RL_TOOLCALL_GRANITE;
    if (has(s, n, "functools[")) return RL_TOOLCALL_FIREFUNCTION;
    if (has(s, n, "<TOOLCALL>")) return RL_TOOLCALL_NEMOTRON;
    if (has(s, n, "<tool_calls>")) return RL_TOOLCALL_APRIEL;
    if (has(s, n, "<tool_call>")) return RL_TOOLCALL_HERMES;
    if (has(s, n, "<|python_tag|>") || (has(s, n, "<|start_header_id|>") && has(s, n, "ipython")))
        return RL_TOOLCALL_LLAMA3;
    return RL_TOOLCALL_GENERIC;
}

/* ---- tools -------------------------------------------------------------------------------- */

struct tc_tools {
    json_t *root;
};

/* The function object of tools[i]: {"type": "function", "function": {...}} or a bare one. */
static json_t *tool_fn(json_t *t) {
    json_t *f = json_object_get(t, "function");
    return json_is_object(f) ? f : t;
}

rl_status rl__tc_tools_load(const char *tools_json, tc_tools **out, char *err, size_t err_size) {
    *out = NULL;
    json_error_t je;
    json_t *j = json_loads(tools_json, JSON_DECODE_ANY, &je);
    if (!j) {
        rl__fmt(err, err_size, "tools: invalid JSON at line %d, column %d: %s", je.line, je.column,
                je.text);
        return RL_ERR_INVALID_ARG;
    }
    if (!json_is_array(j)) {
        json_decref(j);
        rl__fmt(err, err_size, "tools: not an array");
        return RL_ERR_INVALID_ARG;
    }
    size_t i;
    json_t *t;
    json_array_foreach(j, i, t) {
        if (!json_is_object(t) || !json_is_string(json_object_get(tool_fn(t), "name"))) {
            json_decref(j);
            rl__fmt(err, err_size, "tools[%zu].function.name: missing or not a string", i);
            return RL_ERR_INVALID_ARG;
        }
    }
    tc_tools *tt = rl__calloc(1, sizeof *tt);
    if (!tt) {
        json_decref(j);
        return RL_ERR_NOMEM;
    }
    tt->root = j;
    *out = tt;
    return RL_OK;
}

void rl__tc_tools_free(tc_tools *t) {
    if (!t) return;
    json_decref(t->root);
    rl__free(t);
}

static json_t *find_tool(const tc_tools *t, const char *name) {
    if (!t) return NULL;
    size_t i;
    json_t *v;
    json_array_foreach(t->root, i, v) {
        json_t *f = tool_fn(v);
        const char *n = json_string_value(json_object_get(f, "name"));
        if (n && strcmp(n, name) == 0) return f;
    }
    return NULL;
}

bool rl__tc_tools_has(const tc_tools *t, const char *name) { return find_tool(t, name) != NULL; }

bool rl__tc_tools_param_is_string(const tc_tools *t, const char *name, const char *key) {
    json_t *f = find_tool(t, name);
    if (!f) return false;
    json_t *prop =
        json_object_get(json_object_get(json_object_get(f, "parameters"), "properties"), key);
    json_t *ty = json_object_get(prop, "type");
    if (json_is_string(ty)) return strcmp(json_string_value(ty), "string") == 0;
    if (json_is_array(ty) && json_array_size(ty) == 1)
        return json_is_string(json_array_get(ty, 0)) &&
               strcmp(json_string_value(json_array_get(ty, 0)), "string") == 0;
    return false;
}
