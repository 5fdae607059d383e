#!/usr/bin/env bash
# CLI test of `ruvllm perplexity`: stories260K over testdata/text/gpl-3.txt at -c 128
# agrees with llama.cpp's llama-perplexity (PPL 105.32 +/- 3.53, 173 windows) within
# 0.02; the progress goes to stderr; a text too short for two windows and bad flags fail
# with a message.
# $1: the ruvllm binary. RUVLLM_TESTDATA: the shared data folder.
. "$(dirname "$0")/lib.sh"
M=$DATA/models/stories260K.gguf
TEXT=$DATA/testdata/text/gpl-3.txt
need_files "$M" "$TEXT"
# near X WANT TOL: |X - WANT| <= TOL
near() { awk -v x="$1" -v w="$2" -v t="$3" 'BEGIN { d = x - w; if (d < 0) d = -d; exit !(d <= t) }'; }

expect_rc 0 "-c 128" -- "$RUVLLM" perplexity -m "$M" -f "$TEXT" -c 128 -t 2
line=$(grep '^PPL = ' "$TMP/out")
if [[ $line =~ ^PPL\ =\ ([0-9.]+)\ \+/-\ ([0-9.]+)$ ]]; then
    ppl=${BASH_REMATCH[1]} err=${BASH_REMATCH[2]}
    near "$ppl" 105.32 0.02 || fail "PPL $ppl, llama.cpp 105.32"
    near "$err" 3.53 0.005 || fail "error $err, llama.cpp 3.53"
else
    fail "no 'PPL = X +/- Y' line: $(cat "$TMP/out")"
fi
has "$TMP/out" '^windows 173 of 128 tokens, 10899 tokens scored'
has "$TMP/err" '173/173 windows'

# fewer than 2 x CTX tokens
head -c 300 "$TEXT" >"$TMP/short.txt"
expect_rc 1 "short text" -- "$RUVLLM" perplexity -m "$M" -f "$TMP/short.txt" -c 128
has "$TMP/err" 'need at least 2 \* n_ctx = 256'
expect_rc 2 "-c 2" -- "$RUVLLM" perplexity -m "$M" -f "$TEXT" -c 2
has "$TMP/err" '-c'
expect_rc 2 "-b 0" -- "$RUVLLM" perplexity -m "$M" -f "$TEXT" -b 0
has "$TMP/err" '-b'
expect_rc 2 "no file" -- "$RUVLLM" perplexity -m "$M"
expect_rc 1 "missing file" -- "$RUVLLM" perplexity -m "$M" -f "$TMP/none.txt"
expect_rc 2 "unknown flag" -- "$RUVLLM" perplexity -m "$M" -f "$TEXT" --frobnicate
has "$TMP/err" '--frobnicate'

finish
