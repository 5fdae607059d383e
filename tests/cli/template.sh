#!/usr/bin/env bash
# CLI test of `ruvllm template`: the conversations of chat-templates/cases.json rendered
# through --chat-template with a vocabulary whose BOS/EOS texts are the case's, byte for byte
# against jinja2's renderings (expected errors fail, raise_exception's text shown);
# strftime_now pinned by RUVLLM_TEMPLATE_DATE (Llama 3.2); the templates GGUF files carry
# (Qwen2, Phi-3, Command-R and its named variants, Gemma 4), against renderings made with
# jinja2 as transformers sets it up; --tools, request bodies, --no-generation-prompt, stdin;
# clean failures: no template, bad JSON, bad dates, template errors with their line.
# $1: the ruvllm binary. RUVLLM_TESTDATA: the shared data folder. Needs node to read JSON.
. "$(dirname "$0")/lib.sh"
VOCAB=$DATA/models/vocab
CT=$DATA/testdata/chat-templates
need_files "$CT/cases.json" "$VOCAB/ggml-vocab-qwen2.gguf" "$DATA/models/stories260K.gguf"
need_command node "to read cases.json"
# expect_exact WANT DESCRIPTION -- COMMAND...: exit 0 and stdout exactly WANT, byte for byte
expect_exact() {
    local want=$1 what=$2
    shift 3
    expect_rc 0 "$what" -- "$@"
    printf '%s' "$want" >"$TMP/want"
    cmp -s "$TMP/out" "$TMP/want" || fail "$what: got '$(cat "$TMP/out")', expected '$want'"
}
# expect_err RC TEXT DESCRIPTION -- COMMAND...: exit RC and TEXT in stderr
expect_err() {
    local want=$1 text=$2 what=$3
    shift 4
    expect_rc "$want" "$what" -- "$@"
    grep -qF -- "$text" "$TMP/err" || fail "$what: stderr lacks '$text': $(head -c 300 "$TMP/err")"
}

# --- cases.json through --chat-template ------------------------------------------------
# The model only gives bos_token/eos_token, so each case runs with a vocabulary whose BOS
# and EOS texts are the case's (Llama 3.2 reads bos_token only). node writes, per case N:
# N.messages, N.tools (when not null), N.expected or N.error, and a line of the list.
node -e '
const fs = require("fs"), [casesPath, dir] = process.argv.slice(1);
const vocabs = {
    "[\"<s>\",\"</s>\"]": "llama-spm",
    "[\"<s>\",\"<|endoftext|>\"]": "phi-3",
    "[\"<BOS_TOKEN>\",\"<|END_OF_TURN_TOKEN|>\"]": "command-r",
    "[\"<bos>\",\"<eos>\"]": "gemma-4",
    "[\"<｜begin▁of▁sentence｜>\",\"<｜end▁of▁sentence｜>\"]": "deepseek-llm",
};
const byTemplate = {"meta-llama-Llama-3.2-3B-Instruct.jinja": "llama-bpe"};
const lines = [];
JSON.parse(fs.readFileSync(casesPath, "utf8")).forEach((c, i) => {
    const v = byTemplate[c.template] || vocabs[JSON.stringify([c.bos_token, c.eos_token])];
    if (!v || c.extra_vars) return;
    fs.writeFileSync(`${dir}/${i}.messages`, JSON.stringify(c.messages));
    if (c.tools !== null) fs.writeFileSync(`${dir}/${i}.tools`, JSON.stringify(c.tools));
    if ("expected" in c) fs.writeFileSync(`${dir}/${i}.expected`, c.expected);
    else fs.writeFileSync(`${dir}/${i}.error`, c.error_type === "TemplateError" ? c.expected_error : "");
    lines.push([i, v, c.template, c.add_generation_prompt ? 1 : 0, c.id].join("\t"));
});
fs.writeFileSync(`${dir}/list`, lines.join("\n") + "\n");
' "$CT/cases.json" "$TMP" || fail "node could not read cases.json"
n_ok=0 n_err=0
while IFS=$'\t' read -r i vocab tpl gen id; do
    args=(template -m "$VOCAB/ggml-vocab-$vocab.gguf" --messages "$TMP/$i.messages"
          --chat-template "$CT/templates/$tpl")
    [[ -f $TMP/$i.tools ]] && args+=(--tools "$TMP/$i.tools")
    [[ $gen == 0 ]] && args+=(--no-generation-prompt)
    RUVLLM_TEMPLATE_DATE=2024-07-26 "$RUVLLM" "${args[@]}" >"$TMP/out" 2>"$TMP/err"
    rc=$?
    if [[ -f $TMP/$i.expected ]]; then
        if [[ $rc != 0 ]]; then
            fail "$id: exit $rc: $(head -c 300 "$TMP/err")"
        elif ! cmp -s "$TMP/out" "$TMP/$i.expected"; then
            fail "$id: rendering differs from jinja2's: $(cmp "$TMP/out" "$TMP/$i.expected" 2>&1)"
        else
            n_ok=$((n_ok + 1))
        fi
    else
        if [[ $rc != 1 ]]; then
            fail "$id: exit $rc, expected the template's error"
        elif [[ -s $TMP/$i.error ]] && ! grep -qF -- "$(cat "$TMP/$i.error")" "$TMP/err"; then
            fail "$id: stderr lacks '$(cat "$TMP/$i.error")': $(head -c 300 "$TMP/err")"
        else
            n_err=$((n_err + 1))
        fi
    fi
done <"$TMP/list"
echo "cases.json: $n_ok renderings and $n_err expected errors reproduced"
[[ $n_ok -ge 100 && $n_err -ge 5 ]] || fail "too few cases ran ($n_ok renderings, $n_err errors)"

# --- the templates GGUF files carry ----------------------------------------------------
# Expected texts rendered with jinja2 3.1 (ImmutableSandboxedEnvironment, trim_blocks,
# lstrip_blocks, loopcontrols, tojson as json.dumps), bos/eos the vocabularies' token texts.
cat >"$TMP/conv.json" <<'EOF'
[{"role": "system", "content": "You are terse."},
 {"role": "user", "content": "Hi <|im_end|> there ☀️"},
 {"role": "assistant", "content": "Hello."},
 {"role": "user", "content": "Bye"}]
EOF
QWEN_NOGEN=$'<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi <|im_end|> there ☀️<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n'
expect_exact "$QWEN_NOGEN<|im_start|>assistant"$'\n' "qwen2 template" -- \
    "$RUVLLM" template -m "$VOCAB/ggml-vocab-qwen2.gguf" --messages "$TMP/conv.json"
expect_exact "$QWEN_NOGEN" "qwen2 --no-generation-prompt" -- \
    "$RUVLLM" template -m "$VOCAB/ggml-vocab-qwen2.gguf" --messages "$TMP/conv.json" --no-generation-prompt
expect_exact $'<s><|user|>\nHi <|im_end|> there ☀️<|end|>\n<|assistant|>\nHello.<|end|>\n<|user|>\nBye<|end|>\n<|assistant|>\n' \
    "phi-3 template (bos_token <s>)" -- \
    "$RUVLLM" template -m "$VOCAB/ggml-vocab-phi-3.gguf" --messages "$TMP/conv.json"
CR_NOGEN='<BOS_TOKEN><|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>You are terse.<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hi <|im_end|> there ☀️<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>Hello.<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Bye<|END_OF_TURN_TOKEN|>'
expect_exact "$CR_NOGEN<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>" "command-r template" -- \
    "$RUVLLM" template -m "$VOCAB/ggml-vocab-command-r.gguf" --messages "$TMP/conv.json"
expect_exact "$CR_NOGEN" "command-r --no-generation-prompt" -- \
    "$RUVLLM" template -m "$VOCAB/ggml-vocab-command-r.gguf" --messages "$TMP/conv.json" --no-generation-prompt
# the same conversation from stdin, and inside a chat-completion request body
expect_exact "$CR_NOGEN" "--messages -" -- \
    "$RUVLLM" template -m "$VOCAB/ggml-vocab-command-r.gguf" --messages - --no-generation-prompt <"$TMP/conv.json"
{ printf '{"model": "x", "messages": '; cat "$TMP/conv.json"; printf ', "tools": null}'; } >"$TMP/request.json"
expect_exact "$CR_NOGEN" "request body" -- \
    "$RUVLLM" template -m "$VOCAB/ggml-vocab-command-r.gguf" --messages "$TMP/request.json" --no-generation-prompt
# raise_exception's text comes through
printf '[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]' >"$TMP/twice.json"
expect_err 1 "Conversation roles must alternate user/assistant/user/assistant/..." "raise_exception" -- \
    "$RUVLLM" template -m "$VOCAB/ggml-vocab-command-r.gguf" --messages "$TMP/twice.json"

# named variants: tokenizer.chat_template.tool_use with Command-R's own tool format (2101
# bytes; sha256 of jinja2's rendering)
cat >"$TMP/crtools.json" <<'EOF'
[{"name": "get_weather", "description": "Current weather of a city.",
  "parameter_definitions": {"city": {"type": "str", "description": "The city.", "required": true},
                            "unit": {"type": "str", "description": "c or f.", "required": false}}}]
EOF
expect_rc 0 "--template-name tool_use" -- "$RUVLLM" template -m "$VOCAB/ggml-vocab-command-r.gguf" \
    --messages "$TMP/conv.json" --tools "$TMP/crtools.json" --template-name tool_use
grep -qF 'def get_weather(city: str, unit: Optional[str] = None) -> List[Dict]:' "$TMP/out" ||
    fail "tool_use: no tool signature in the prompt"
[[ $(sha256sum <"$TMP/out") == "8f1952504a109a1b2dcf9ca643b4f3cf97c8e4a106bd4b4bc5271a95baf47ec6  -" ]] ||
    fail "tool_use: rendering differs from jinja2's ($(wc -c <"$TMP/out") bytes, expected 2101)"
expect_err 1 "tool_use rag" "unknown --template-name lists the names" -- \
    "$RUVLLM" template -m "$VOCAB/ggml-vocab-command-r.gguf" --messages "$TMP/conv.json" --template-name nope
expect_err 1 "'NoneType' object is not iterable" "tool_use without tools" -- \
    "$RUVLLM" template -m "$VOCAB/ggml-vocab-command-r.gguf" --messages "$TMP/conv.json" --template-name tool_use

# Gemma 4's template with the tools and tool calls of scenario s4 (799 bytes)
node -e '
const fs = require("fs"), [casesPath, dir] = process.argv.slice(1);
const c = JSON.parse(fs.readFileSync(casesPath, "utf8")).find(c => c.id === "Apertus-8B-Instruct/s4");
fs.writeFileSync(`${dir}/s4.messages`, JSON.stringify(c.messages));
fs.writeFileSync(`${dir}/s4.tools`, JSON.stringify(c.tools));
fs.writeFileSync(`${dir}/s4.request`, JSON.stringify({messages: c.messages, tools: c.tools}));
' "$CT/cases.json" "$TMP"
G4_SHA="c8451d09ded4929f0be898a5999a38a160b9dc73a5bfc7fd39f01a4e5a276a16  -"
expect_rc 0 "gemma-4 template with tools" -- "$RUVLLM" template -m "$VOCAB/ggml-vocab-gemma-4.gguf" \
    --messages "$TMP/s4.messages" --tools "$TMP/s4.tools"
[[ $(sha256sum <"$TMP/out") == "$G4_SHA" ]] ||
    fail "gemma-4 with tools: rendering differs from jinja2's ($(wc -c <"$TMP/out") bytes, expected 799)"
expect_rc 0 "gemma-4 request body with tools" -- "$RUVLLM" template -m "$VOCAB/ggml-vocab-gemma-4.gguf" \
    --messages "$TMP/s4.request"
[[ $(sha256sum <"$TMP/out") == "$G4_SHA" ]] || fail "gemma-4: the request's tools are not used"

# --- strftime_now: pinned, and today's date otherwise ------------------------------------
LLAMA32=$CT/templates/meta-llama-Llama-3.2-3B-Instruct.jinja
printf '[{"role": "user", "content": "Hi"}]' >"$TMP/hi.json"
expect_rc 0 "RUVLLM_TEMPLATE_DATE" -- env RUVLLM_TEMPLATE_DATE=2024-02-29 "$RUVLLM" template \
    -m "$VOCAB/ggml-vocab-llama-bpe.gguf" --messages "$TMP/hi.json" --chat-template "$LLAMA32"
grep -q "^Today Date: 29 Feb 2024$" "$TMP/out" || fail "pinned date: $(head -c 300 "$TMP/out")"
today=$(LC_ALL=C date +"%d %b %Y")
expect_rc 0 "today" -- env -u RUVLLM_TEMPLATE_DATE "$RUVLLM" template \
    -m "$VOCAB/ggml-vocab-llama-bpe.gguf" --messages "$TMP/hi.json" --chat-template "$LLAMA32"
today2=$(LC_ALL=C date +"%d %b %Y")
grep -qE "^Today Date: ($today|$today2)$" "$TMP/out" || fail "today's date: $(head -c 300 "$TMP/out")"
for bad in 2024-13-01 2023-02-29 2024-04-31 1969-12-31 2024-7-26 yesterday "2024-07-26 "; do
    expect_err 2 "RUVLLM_TEMPLATE_DATE" "RUVLLM_TEMPLATE_DATE='$bad'" -- env RUVLLM_TEMPLATE_DATE="$bad" \
        "$RUVLLM" template -m "$VOCAB/ggml-vocab-llama-bpe.gguf" --messages "$TMP/hi.json" --chat-template "$LLAMA32"
done

# --- failures -----------------------------------------------------------------------------
STORIES=$DATA/models/stories260K.gguf
expect_err 1 "has no chat template" "model without a template" -- \
    "$RUVLLM" template -m "$STORIES" --messages "$TMP/hi.json"
grep -qF -- "--chat-template" "$TMP/err" || fail "no template: the message does not name --chat-template"
printf '{%% for m in messages %%}[{{ bos_token }}{{ m.content }}{{ eos_token }}]{%% endfor %%}' >"$TMP/mine.jinja"
expect_exact "[<s>Hi</s>]" "--chat-template on a model without one" -- \
    "$RUVLLM" template -m "$STORIES" --messages "$TMP/hi.json" --chat-template "$TMP/mine.jinja"
printf '[{"role": "user", "content": "Hi"}' >"$TMP/cut.json"
expect_err 1 "cut.json: invalid JSON at line 1" "truncated messages" -- \
    "$RUVLLM" template -m "$STORIES" --messages "$TMP/cut.json" --chat-template "$TMP/mine.jinja"
printf '{"role": "user", "content": "Hi"}' >"$TMP/obj.json"
expect_err 1 "expected a JSON array of messages" "messages not an array" -- \
    "$RUVLLM" template -m "$STORIES" --messages "$TMP/obj.json" --chat-template "$TMP/mine.jinja"
expect_err 1 "expected a JSON array of tools" "tools not an array" -- \
    "$RUVLLM" template -m "$STORIES" --messages "$TMP/hi.json" --tools "$TMP/obj.json" --chat-template "$TMP/mine.jinja"
expect_err 1 "nope.json" "missing messages file" -- \
    "$RUVLLM" template -m "$STORIES" --messages "$TMP/nope.json" --chat-template "$TMP/mine.jinja"
printf 'Hello\n{%% if messages %%}\n{{ messages[0].content }\n{%% endif %%}' >"$TMP/broken.jinja"
expect_err 1 "broken.jinja: line 3" "template syntax error names the line" -- \
    "$RUVLLM" template -m "$STORIES" --messages "$TMP/hi.json" --chat-template "$TMP/broken.jinja"
expect_err 2 "exclude each other" "--chat-template with --template-name" -- \
    "$RUVLLM" template -m "$STORIES" --messages "$TMP/hi.json" --chat-template "$TMP/mine.jinja" --template-name x
expect_err 2 "--messages" "no messages" -- "$RUVLLM" template -m "$STORIES"
expect_rc 2 "unknown option" -- "$RUVLLM" template -m "$STORIES" --messages "$TMP/hi.json" --frobnicate
expect_rc 1 "missing model" -- "$RUVLLM" template -m "$TMP/nope.gguf" --messages "$TMP/hi.json"
expect_rc 0 "--help" -- "$RUVLLM" template --help

finish
