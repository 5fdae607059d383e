#!/usr/bin/env bash
# CLI test of `ruvllm run` on stories260K: the greedy continuation (--temp 0 --ids
# --ignore-eos) equals llama.cpp's (golden/stories260K.json, prompt 0); the text streams
# as the golden text; generation stops at EOS without --ignore-eos and goes on with it;
# --seed makes sampling reproducible; -f FILE; a full context is a note, not a failure;
# bad flags exit 2 with a message naming the flag.
# $1: the ruvllm binary. RUVLLM_TESTDATA: the shared data folder.
. "$(dirname "$0")/lib.sh"
M=$DATA/models/stories260K.gguf
GOLD=$DATA/golden/stories260K.json
need_files "$M" "$GOLD"
need_command node "for reading the golden JSON"

gold() { node -e "const g = require(process.argv[1]); console.log($1)" "$GOLD"; }
prompt0=$(gold 'g.prompts[0].prompt')
greedy0=$(gold 'g.prompts[0].greedy.join(" ")')
n0=$(gold 'g.prompts[0].greedy.length')
text0=$(gold 'g.prompts[0].greedy_text')

# greedy ids equal llama.cpp's
expect_rc 0 "greedy --ids" -- "$RUVLLM" run -m "$M" -p "$prompt0" -n "$n0" --temp 0 --ids --ignore-eos
[[ $(cat "$TMP/out") == "$greedy0" ]] || fail "greedy ids: got '$(cat "$TMP/out")', expected '$greedy0'"
has "$TMP/err" "prompt 4 tokens in [0-9.]+ ms \([0-9.]+ tok/s\), generation $n0 tokens in [0-9.]+ ms \([0-9.]+ tok/s\)"

# the streamed text: the golden text (llama.cpp's detokenizer drops the first token's
# leading space; the stream keeps it, since it continues the prompt)
expect_rc 0 "greedy text" -- "$RUVLLM" run -m "$M" -p "$prompt0" -n "$n0" --temp 0
[[ $(cat "$TMP/out") == " $text0" ]] || fail "greedy text: got '$(cat "$TMP/out")', expected ' $text0'"

# the prompt from a file (no trailing newline) gives the same
printf '%s' "$prompt0" >"$TMP/prompt.txt"
expect_rc 0 "-f FILE" -- "$RUVLLM" run -m "$M" -f "$TMP/prompt.txt" -n "$n0" --temp 0 --ids
[[ $(cat "$TMP/out") == "$greedy0" ]] || fail "-f FILE: got '$(cat "$TMP/out")'"

# EOS: stories260K rarely ends a story within a few tokens, so raise EOS (id 2) by a bias
# that makes it win after 11 tokens of the unbiased greedy continuation
P="Once upon a time"
expect_rc 0 "greedy, no bias" -- "$RUVLLM" run -m "$M" -p "$P" -n 20 --temp 0 --ids
plain=$(cat "$TMP/out")
want11=$(echo "$plain" | cut -d' ' -f1-11)
expect_rc 0 "stop at EOS" -- "$RUVLLM" run -m "$M" -p "$P" -n 40 --temp 0 --ids -l 2+22 -v
[[ $(cat "$TMP/out") == "$want11" ]] || fail "EOS stop: got '$(cat "$TMP/out")', expected '$want11'"
has "$TMP/err" "stopped at end-of-generation token 2"
expect_rc 0 "--ignore-eos" -- "$RUVLLM" run -m "$M" -p "$P" -n 14 --temp 0 --ids -l 2+22 --ignore-eos
got=$(cat "$TMP/out")
[[ $(echo "$got" | wc -w) == 14 ]] || fail "--ignore-eos: expected 14 ids, got '$got'"
[[ $(echo "$got" | cut -d' ' -f1-12) == "$want11 2" ]] || fail "--ignore-eos: got '$got'"
# EOS first: nothing generated, only the newline
expect_rc 0 "EOS at once" -- "$RUVLLM" run -m "$M" -p "$P" --temp 0 -l 2+100
[[ $(cat "$TMP/out") == "" ]] || fail "EOS at once: got '$(cat "$TMP/out")'"

# the stream writes only whole UTF-8: three lone 0xE6 byte tokens (id 233, forced by a
# bias) come out as three U+FFFD, never as raw bytes
expect_rc 0 "lone bytes" -- "$RUVLLM" run -m "$M" -p "$P" -n 3 --temp 0 -l 233+100
[[ $(cat "$TMP/out") == $'\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd' ]] ||
    fail "lone bytes: got '$(od -An -tx1 "$TMP/out")'"

# --seed: the same seed gives the same tokens, another seed other tokens
S=(-m "$M" -p "$P" -n 40 --ids --temp 1.2 --top-k 0 --top-p 1 --min-p 0)
expect_rc 0 "seed 7" -- "$RUVLLM" run "${S[@]}" --seed 7
a=$(cat "$TMP/out")
expect_rc 0 "seed 7 again" -- "$RUVLLM" run "${S[@]}" --seed 7
[[ $(cat "$TMP/out") == "$a" ]] || fail "--seed 7 not reproducible"
expect_rc 0 "seed 8" -- "$RUVLLM" run "${S[@]}" --seed 8
[[ $(cat "$TMP/out") != "$a" ]] || fail "--seed 8 gave the same tokens as --seed 7"
[[ $(echo "$a" | wc -w) == 40 ]] || fail "seed run: expected 40 ids, got '$a'"
# the whole chain accepts its flags
expect_rc 0 "all samplers" -- "$RUVLLM" run -m "$M" -p "$P" -n 16 --seed 1 --temp 0.9 --top-k 30 \
    --top-p 0.9 --min-p 0.02 --typical 0.95 --repeat-penalty 1.1 --repeat-last-n 32 \
    --presence-penalty 0.1 --frequency-penalty 0.1 --dry-multiplier 0.8 --dry-base 1.75 \
    --dry-allowed-length 2 --dry-penalty-last-n -1 --dry-sequence-breaker none \
    --xtc-probability 0.5 --xtc-threshold 0.1 --kv-type f32 -t 1
expect_rc 0 "mirostat" -- "$RUVLLM" run -m "$M" -p "$P" -n 16 --seed 1 --mirostat 2 \
    --mirostat-lr 0.1 --mirostat-ent 5 --ids
[[ $(cat "$TMP/out" | wc -w) == 16 ]] || fail "mirostat: expected 16 ids"

# a full context: a note and exit 0 (prompt 5 tokens + 11 generated = 16 cells)
expect_rc 0 "full context" -- "$RUVLLM" run -m "$M" -p "$P" -c 16 --temp 0 --ids --ignore-eos
[[ $(cat "$TMP/out" | wc -w) == 12 ]] || fail "full context: expected 12 ids, got '$(cat "$TMP/out")'"
has "$TMP/err" "context is full \(16 tokens\)"
expect_rc 1 "prompt longer than the context" -- "$RUVLLM" run -m "$M" -p "$P" -c 4
has "$TMP/err" "raise -c"

# bad flags: exit 2 and a message naming the flag
bad() {
    local flag=$1
    shift
    expect_usage "$flag" "bad $flag" -- "$RUVLLM" run -m "$M" -p "$P" "$@"
}
bad --temp --temp -1
bad --temp --temp abc
bad --top-k --top-k -5
bad --top-p --top-p 1.5
bad --min-p --min-p nan
bad --typical --typical 2
bad --repeat-penalty --repeat-penalty 0
bad --repeat-last-n --repeat-last-n -2
bad --seed --seed x12
bad --mirostat --mirostat 1
bad --mirostat --mirostat 3
bad --xtc-probability --xtc-probability 1.1
bad --dry-base --dry-base -1
bad -n -n -2
bad -c -c -1
bad -t -t 0
bad --kv-type --kv-type q4_0
bad --logit-bias --logit-bias 5
bad --temp --temp
bad --frobnicate --frobnicate
expect_rc 2 "no prompt" -- "$RUVLLM" run -m "$M"
has "$TMP/err" "-p TEXT"
expect_rc 2 "no model" -- "$RUVLLM" run -p hi
has "$TMP/err" "-m MODEL"
expect_rc 1 "missing model file" -- "$RUVLLM" run -m "$TMP/nope.gguf" -p hi
expect_rc 1 "logit bias outside the vocabulary" -- "$RUVLLM" run -m "$M" -p hi -l 9999+1
has "$TMP/err" "--logit-bias"
expect_rc 0 "--help" -- "$RUVLLM" run --help
has "$TMP/out" "usage: ruvllm run"

finish
