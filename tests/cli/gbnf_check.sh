#!/usr/bin/env bash
# CLI test of `ruvllm gbnf-check`: accepted texts (exit 0), rejections with the byte where
# the grammar stops (exit 1), texts that stop early, -f FILE, --root, grammar errors with
# line and column (exit 2), usage errors (exit 2); and a short `ruvllm bench-grammar` run
# that must print JSON with the figures.
# $1: the ruvllm binary. RUVLLM_TESTDATA: the shared data folder.
. "$(dirname "$0")/lib.sh"
G=$DATA/testdata/grammars
need_files "$G/json.gbnf"

J=$G/json.gbnf
expect_out 0 accepted "json object" -- "$RUVLLM" gbnf-check --grammar "$J" -p '{"a": [1, -2.5e3, true, null, {"b": "\u00e9"}]}'
expect_out 0 accepted "json with unicode" -- "$RUVLLM" gbnf-check --grammar "$J" -p '{"名前": "ひらがな"}'
expect_out 1 "rejected at byte 20" "bad literal" -- "$RUVLLM" gbnf-check --grammar "$J" -p '{"a": [1, 2.5e3, tru]}'
expect_out 1 "rejected at byte 0" "not an object" -- "$RUVLLM" gbnf-check --grammar "$J" -p '[1]'
expect_out 1 "rejected at byte 6" "text stops early" -- "$RUVLLM" gbnf-check --grammar "$J" -p '{"a": '
grep -q "ends before" "$TMP/err" || fail "text stops early: no explanation on stderr"
expect_out 1 "rejected at byte 7" "invalid UTF-8" -- "$RUVLLM" gbnf-check --grammar "$J" -p $'{"a": "\xc0\x80"}'
expect_out 1 "rejected at byte 0" "empty text" -- "$RUVLLM" gbnf-check --grammar "$J" -p ''

printf '1. e4 e5\n2. Nf3 Nc6\n' >"$TMP/game.txt"
expect_out 0 accepted "chess from a file" -- "$RUVLLM" gbnf-check --grammar "$G/chess.gbnf" -f "$TMP/game.txt"
expect_out 0 accepted "arithmetic" -- "$RUVLLM" gbnf-check --grammar "$G/arithmetic.gbnf" -p $'(1+2)*3-x/5 = 4\n'

printf 'greeting ::= "hi" name?\nname ::= " " [a-z]+\n' >"$TMP/g.gbnf"
expect_out 0 accepted "--root" -- "$RUVLLM" gbnf-check --grammar "$TMP/g.gbnf" --root greeting -p 'hi bob'
expect_out 2 "" "missing root rule" -- "$RUVLLM" gbnf-check --grammar "$TMP/g.gbnf" -p 'hi'
grep -q "no rule 'root'" "$TMP/err" || fail "missing root: message: $(cat "$TMP/err")"

# bad grammars: exit 2 with line and column
printf 'root ::= "a" |\n  ( "b" \n' >"$TMP/bad.gbnf"
expect_out 2 "" "unclosed group" -- "$RUVLLM" gbnf-check --grammar "$TMP/bad.gbnf" -p 'a'
grep -q "line 2, column 3" "$TMP/err" || fail "unclosed group: message: $(cat "$TMP/err")"
printf 'root ::= x\n' >"$TMP/undef.gbnf"
expect_out 2 "" "undefined rule" -- "$RUVLLM" gbnf-check --grammar "$TMP/undef.gbnf" -p 'a'
grep -q "undefined rule 'x'" "$TMP/err" || fail "undefined rule: message: $(cat "$TMP/err")"
printf 'root ::= "a" | root "a"\n' >"$TMP/left.gbnf"
expect_out 2 "" "left recursion" -- "$RUVLLM" gbnf-check --grammar "$TMP/left.gbnf" -p 'a'
grep -q "left recursion" "$TMP/err" || fail "left recursion: message: $(cat "$TMP/err")"

# usage errors
expect_out 2 "" "no text" -- "$RUVLLM" gbnf-check --grammar "$J"
expect_out 2 "" "both -p and -f" -- "$RUVLLM" gbnf-check --grammar "$J" -p x -f "$TMP/game.txt"
expect_out 2 "" "missing grammar file" -- "$RUVLLM" gbnf-check --grammar "$TMP/nope.gbnf" -p x
expect_rc 0 "--help" -- "$RUVLLM" gbnf-check --help
grep -q "usage: ruvllm gbnf-check" "$TMP/out" || fail "--help: no usage on stdout"

# bench-grammar prints the figures as JSON
V=$DATA/models/vocab/ggml-vocab-llama-bpe.gguf
if [[ -f $V ]]; then
    expect_rc 0 "bench-grammar" -- "$RUVLLM" bench-grammar -m "$V" --grammar "$J" -n 20 --max-len 200
    for key in '"avg_us"' '"p99_us"' '"cold"' '"warm_no_state_cache"' '"target_met"' '"floor_mask_write_us"'; do
        grep -q "$key" "$TMP/out" || fail "bench-grammar: no $key in $(head -c 300 "$TMP/out")"
    done
    grep -q '"docs_skipped": 0' "$TMP/out" || fail "bench-grammar: documents skipped"
fi

finish
