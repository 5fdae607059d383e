#!/usr/bin/env bash
# CLI test of `ruvllm chat` on stories260K, which has no chat template (so ChatML, with a
# warning): two turns through stdin, greedy; the second turn decodes only what follows
# the cached prefix (--verbose counts), and its reply equals a fresh `ruvllm run` of the
# whole second-turn prompt, so the reused cache is right; a template given with
# --chat-template that writes bos_token itself (no double BOS); EOF at once; a
# conversation that outgrows the context ends with a note; bad flags exit 2.
# $1: the ruvllm binary. RUVLLM_TESTDATA: the shared data folder.
. "$(dirname "$0")/lib.sh"
M=$DATA/models/stories260K.gguf
need_files "$M"
# expect_rc_in RC DESCRIPTION INPUT -- COMMAND...: expect_rc with the text INPUT (as it
# stands, no newline added) on COMMAND's stdin
expect_rc_in() {
    local want=$1 what=$2 input=$3
    shift 3
    expect_rc "$want" "$what" "$@" < <(printf '%s' "$input")
}

SYS="You are kind."
U1="Hello there"
U2="Tell me a story"
G=(--temp 0 -n 8)
expect_rc_in 0 "two turns" "$U1"$'\n'"$U2"$'\n' -- "$RUVLLM" chat -m "$M" --system "$SYS" "${G[@]}" -v
has "$TMP/err" "no chat template.*using ChatML"
mapfile -t replies <"$TMP/out"
[[ ${#replies[@]} == 2 ]] || fail "expected 2 reply lines, got ${#replies[@]}: $(cat "$TMP/out")"
re='turn ([0-9]+): prompt ([0-9]+) tokens, ([0-9]+) reused from the cache, ([0-9]+) decoded'
mapfile -t turns < <(grep -E "$re" "$TMP/err")
[[ ${#turns[@]} == 2 ]] || fail "expected 2 turn lines on stderr: $(cat "$TMP/err")"
[[ ${turns[0]} =~ $re ]] && p1=${BASH_REMATCH[2]} r1=${BASH_REMATCH[3]} d1=${BASH_REMATCH[4]}
[[ ${turns[1]} =~ $re ]] && p2=${BASH_REMATCH[2]} r2=${BASH_REMATCH[3]} d2=${BASH_REMATCH[4]}
((r1 == 0 && d1 == p1)) || fail "turn 1: ${turns[0]}"
# the whole first prompt (and what of the reply tokenizes alike) comes from the cache
((r2 >= p1 && r2 + d2 == p2 && d2 > 0)) || fail "turn 2 did not reuse the cache: ${turns[1]}"

# the second reply equals a fresh run of the second turn's whole prompt
printf '<|im_start|>%s\n%s<|im_end|>\n' system "$SYS" user "$U1" assistant "${replies[0]}" user "$U2" \
    >"$TMP/prompt2.txt"
printf '<|im_start|>assistant\n' >>"$TMP/prompt2.txt"
"$RUVLLM" run -m "$M" -f "$TMP/prompt2.txt" "${G[@]}" --special -v >"$TMP/run.out" 2>"$TMP/run.err" ||
    fail "run of the second prompt: $(cat "$TMP/run.err")"
[[ $(cat "$TMP/run.out") == "${replies[1]}" ]] ||
    fail "turn 2 reply '${replies[1]}' differs from a fresh run: '$(cat "$TMP/run.out")'"
n_run=$(grep 'prompt ids:' "$TMP/run.err" | wc -w)
((n_run - 4 == p2)) || fail "turn 2 prompt is $p2 tokens, a fresh run tokenizes $((n_run - 4))"

# a template of our own that writes bos_token: the vocabulary adds BOS too, and the chat
# keeps one (the prompt equals `run --no-bos --special` of the rendered text)
cat >"$TMP/tpl.jinja" <<'EOF'
{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}
{% endfor %}{% if add_generation_prompt %}[assistant]{% endif %}
EOF
expect_rc_in 0 "--chat-template" "$U1"$'\n' -- "$RUVLLM" chat -m "$M" --chat-template "$TMP/tpl.jinja" \
    "${G[@]}" -v
grep -q "ChatML" "$TMP/err" && fail "--chat-template: ChatML warning"
[[ $(grep -E "$re" "$TMP/err") =~ $re ]] && pt=${BASH_REMATCH[2]}
reply_t=$(cat "$TMP/out")
printf '<s>[user] %s\n[assistant]' "$U1" >"$TMP/prompt_t.txt"
"$RUVLLM" run -m "$M" -f "$TMP/prompt_t.txt" "${G[@]}" --special --no-bos -v >"$TMP/run.out" \
    2>"$TMP/run.err" || fail "run of the template prompt: $(cat "$TMP/run.err")"
n_run=$(grep 'prompt ids:' "$TMP/run.err" | wc -w)
((n_run - 4 == pt)) || fail "template prompt is $pt tokens, run --no-bos gives $((n_run - 4))"
[[ $(cat "$TMP/run.out") == "$reply_t" ]] || fail "template reply '$reply_t' differs from run"

# EOF at once; blank lines are not messages
expect_rc_in 0 "EOF at once" "" -- "$RUVLLM" chat -m "$M" "${G[@]}"
[[ ! -s $TMP/out ]] || fail "EOF at once printed '$(cat "$TMP/out")'"
expect_rc_in 0 "blank lines" $'\n\n'"$U1"$'\n\n' -- "$RUVLLM" chat -m "$M" "${G[@]}" -v
[[ $(grep -cE "$re" "$TMP/err") == 1 ]] || fail "blank lines became turns: $(cat "$TMP/err")"

# the conversation outgrows a small context: a note, exit 0
expect_rc_in 0 "small context" "$U1"$'\n'"$U2"$'\n'"$U1"$'\n' -- "$RUVLLM" chat -m "$M" -c 48 "${G[@]}"
has "$TMP/err" "the context is full \(48 tokens"
expect_rc_in 0 "prompt over the context" "$U1"$'\n' -- "$RUVLLM" chat -m "$M" -c 16 "${G[@]}"
has "$TMP/err" "no longer fits the context \(16 tokens"

bad() {
    local flag=$1
    shift
    expect_usage "$flag" "bad $flag" -- "$RUVLLM" chat -m "$M" "$@" </dev/null
}
bad --temp --temp -1
bad --top-p --top-p 2
bad -n -n x
bad --frobnicate --frobnicate
expect_rc_in 2 "no model" "" -- "$RUVLLM" chat
expect_rc_in 1 "missing template file" "" -- "$RUVLLM" chat -m "$M" --chat-template "$TMP/none"
printf '{%% if %%}' >"$TMP/bad.jinja"
expect_rc_in 1 "template syntax error" "hi"$'\n' -- "$RUVLLM" chat -m "$M" --chat-template "$TMP/bad.jinja"
has "$TMP/err" "chat template"

finish
