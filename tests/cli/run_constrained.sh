#!/usr/bin/env bash
# CLI test of `ruvllm run` with an output constraint (--grammar FILE, --json-schema FILE,
# --regex RE, --json-object) on llama-2-tiny-random (random weights: it wants garbage):
# the texts follow the constraint (checked with `ruvllm gbnf-check` against the grammar, and
# `schema2gbnf` for schemas), the finish reason on stderr says stop when the text is
# complete and length at -n (the text then a prefix the grammar accepts), end tokens pushed
# by --logit-bias come only where the text can end, the constraint composes with the
# samplers and --ids; errors: two constraints (exit 2, naming both), --ignore-eos with one,
# bad grammars, schemas and regexes (exit 2 with the parse error), a missing file (exit 1).
# $1: the ruvllm binary. RUVLLM_TESTDATA: the shared data folder.
. "$(dirname "$0")/lib.sh"
M=$DATA/models/llama-2-tiny-random.gguf
G=$DATA/testdata/grammars
need_files "$M" "$G/json.gbnf"
# the generated text: stdout without the newline run adds
text() { head -c -1 "$TMP/out" >"$TMP/text"; }
# check GRAMMAR complete|prefix WHAT: the text is a sentence of GRAMMAR, or the start of one
check() {
    local g=$1 want=$2 what=$3
    "$RUVLLM" gbnf-check --grammar "$g" -f "$TMP/text" >"$TMP/chk" 2>&1
    local rc=$?
    if [[ $want == complete ]]; then
        [[ $rc == 0 ]] || fail "$what: not a sentence of $g ($(cat "$TMP/chk")): '$(head -c 300 "$TMP/text")'"
    else
        local n
        n=$(wc -c <"$TMP/text")
        grep -q "rejected at byte $n\$" "$TMP/chk" ||
            fail "$what: not a proper prefix of $g ($(head -1 "$TMP/chk"), $n bytes): '$(head -c 300 "$TMP/text")'"
    fi
}
R=(run -m "$M" -p "Hello" -t 1)

# a GBNF grammar of two words: every seed gives one of them, finish reason stop
printf 'root ::= "yes" | "no"\n' >"$TMP/yn.gbnf"
for s in 1 2 3 4 5; do
    expect_rc 0 "yes/no seed $s" -- "$RUVLLM" "${R[@]}" --grammar "$TMP/yn.gbnf" --temp 1 -s $s
    [[ $(cat "$TMP/out") == yes || $(cat "$TMP/out") == no ]] || fail "yes/no: got '$(cat "$TMP/out")'"
    has "$TMP/err" "finish reason: stop"
done
# --grammar-file is the same flag
expect_rc 0 "--grammar-file" -- "$RUVLLM" "${R[@]}" --grammar-file "$TMP/yn.gbnf" -s 1
has "$TMP/err" "finish reason: stop"

# JSON Schema, bounded: complete and valid, whatever the sampler
cat >"$TMP/person.json" <<'EOF'
{"type": "object",
 "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 10},
                "age": {"type": "integer", "minimum": 0, "maximum": 120},
                "pets": {"type": "array", "items": {"enum": ["cat", "dog"]}, "maxItems": 2}},
 "required": ["name", "age"], "additionalProperties": false}
EOF
"$RUVLLM" schema2gbnf "$TMP/person.json" >"$TMP/person.gbnf" || fail "schema2gbnf person.json"
samplers=("--temp 1 --top-k 0 --top-p 1 --min-p 0" "--temp 0" "--top-k 5" "--top-p 0.5 --min-p 0"
    "--min-p 0.2" "--mirostat 2" "--typical 0.9 --repeat-penalty 1.3 --xtc-probability 0.5"
    "--temp 1.5 --dry-multiplier 0.8")
for i in "${!samplers[@]}"; do
    # shellcheck disable=SC2086
    expect_rc 0 "schema, sampler ${samplers[$i]}" -- "$RUVLLM" "${R[@]}" --json-schema "$TMP/person.json" \
        -s $((i + 10)) ${samplers[$i]} -v
    has "$TMP/err" "finish reason: stop"
    has "$TMP/err" "the text is complete \(--json-schema\)"
    text
    check "$TMP/person.gbnf" complete "schema, ${samplers[$i]}"
done
# --ids: token ids instead of text, still constrained and stopped
expect_rc 0 "schema --ids" -- "$RUVLLM" "${R[@]}" --json-schema "$TMP/person.json" --ids -s 3
[[ $(cat "$TMP/out") =~ ^[0-9]+( [0-9]+)*$ ]] || fail "--ids: got '$(cat "$TMP/out")'"
has "$TMP/err" "finish reason: stop"
# -n cuts it: finish reason length, the text a proper prefix
expect_rc 0 "schema -n 3" -- "$RUVLLM" "${R[@]}" --json-schema "$TMP/person.json" -n 3 -s 4
has "$TMP/err" "finish reason: length"
text
check "$TMP/person.gbnf" prefix "schema -n 3"

# a regex: the whole text matches; EOS (id 2) pushed by a bias comes only at the end
for s in 1 2 3; do
    expect_rc 0 "regex seed $s" -- "$RUVLLM" "${R[@]}" --regex '[0-9]{3}-[a-z]{2,4}' -s $s -l 2+30
    grep -qxE '[0-9]{3}-[a-z]{2,4}' "$TMP/out" || fail "regex: got '$(cat "$TMP/out")'"
    has "$TMP/err" "finish reason: stop"
done
# an unbounded regex cut by -n: length, and a prefix
expect_rc 0 "open regex" -- "$RUVLLM" "${R[@]}" --regex '[a-z]+' -n 12 -s 1 -l 2-inf
has "$TMP/err" "finish reason: length"
grep -qxE '[a-z]+' "$TMP/out" || fail "open regex: got '$(cat "$TMP/out")'"
# a complete text whose end token is banned: stop, not an error
expect_rc 0 "EOS banned" -- "$RUVLLM" "${R[@]}" --regex '(ab|cd)' -s 1 -l 2-inf
grep -qxE '(ab|cd)' "$TMP/out" || fail "EOS banned: got '$(cat "$TMP/out")'"
has "$TMP/err" "finish reason: stop"

# --json-object: an object (complete at stop, a prefix at length)
cat >"$TMP/obj.json" <<'EOF'
{"type": "object"}
EOF
"$RUVLLM" schema2gbnf "$TMP/obj.json" >"$TMP/obj.gbnf" || fail "schema2gbnf obj.json"
for s in 1 2; do
    expect_rc 0 "--json-object seed $s" -- "$RUVLLM" "${R[@]}" --json-object -n 300 -s $s
    [[ $(head -c 1 "$TMP/out") == "{" ]] || fail "--json-object: got '$(head -c 100 "$TMP/out")'"
    text
    if grep -q "finish reason: stop" "$TMP/err"; then
        check "$TMP/obj.gbnf" complete "--json-object seed $s"
    else
        has "$TMP/err" "finish reason: length"
        check "$TMP/obj.gbnf" prefix "--json-object seed $s"
    fi
done

# a grammar from testdata: json.gbnf, complete or a prefix
for s in 1 2; do
    expect_rc 0 "json.gbnf seed $s" -- "$RUVLLM" "${R[@]}" --grammar "$G/json.gbnf" -n 200 -s $s
    text
    if grep -q "finish reason: stop" "$TMP/err"; then
        check "$G/json.gbnf" complete "json.gbnf seed $s"
    else
        check "$G/json.gbnf" prefix "json.gbnf seed $s"
    fi
done

# chat: every reply held to the constraint, the finish reason per turn with -v
printf 'hi\nagain\n' | "$RUVLLM" chat -m "$M" -t 1 -s 2 --regex '(yes|no)' -v >"$TMP/out" 2>"$TMP/err" ||
    fail "chat --regex: exit $?: $(head -c 300 "$TMP/err")"
[[ $(grep -cxE '(yes|no)' "$TMP/out") == 2 ]] || fail "chat --regex: got '$(cat "$TMP/out")'"
[[ $(grep -c "finish reason stop" "$TMP/err") == 2 ]] || fail "chat --regex: $(cat "$TMP/err")"

# bench: tg sampled and tg sampled under the constraint, as JSON
expect_rc 0 "bench --grammar" -- "$RUVLLM" bench -m "$M" -t 1 -p 0 -n 8 -r 2 --json --grammar "$G/json.gbnf"
has "$TMP/out" '"n_gen": 8, .*"sampling": "sampled", "sample_us_per_token": [0-9.]+, "constraint": null'
has "$TMP/out" '"sampling": "constrained", "sample_us_per_token": [0-9.]+, "constraint": "--grammar [^"]*json.gbnf", "slowdown_vs_sampled": -?[0-9.]+, "full_masks_per_token": [0-9.]+, "constraint_us_per_token": [0-9.]+, "constraint_share": [0-9.]+, "slowdown_choosing": -?[0-9.]+'
expect_rc 0 "bench --regex (table)" -- "$RUVLLM" bench -m "$M" -t 1 -p 0 -n 8 -r 1 --regex '[a-z]+'
has "$TMP/out" "tg8\+con"
has "$TMP/out" "under --regex \[a-z\]\+: [-+][0-9.]+% time per token"

# errors: exit 2 with a message naming what is wrong
expect_rc 2 "two constraints" -- "$RUVLLM" "${R[@]}" --grammar "$TMP/yn.gbnf" --regex 'a'
has "$TMP/err" "--grammar and --regex cannot be combined"
expect_rc 2 "json-object and schema" -- "$RUVLLM" "${R[@]}" --json-object --json-schema "$TMP/obj.json"
has "$TMP/err" "--json-object and --json-schema cannot be combined"
expect_rc 2 "twice" -- "$RUVLLM" "${R[@]}" --regex a --regex b
has "$TMP/err" "--regex is given twice"
expect_rc 2 "--ignore-eos" -- "$RUVLLM" "${R[@]}" --ignore-eos --json-object
has "$TMP/err" "--ignore-eos and --json-object cannot be combined"
expect_rc 2 "no value" -- "$RUVLLM" "${R[@]}" --grammar
has "$TMP/err" "--grammar needs a value"
printf 'root ::= "a" |\n  ( "b"\n' >"$TMP/bad.gbnf"
expect_rc 2 "grammar syntax" -- "$RUVLLM" "${R[@]}" --grammar "$TMP/bad.gbnf"
has "$TMP/err" "--grammar .*bad.gbnf: line [0-9]+, column [0-9]+"
printf 'root ::= item\n' >"$TMP/undef.gbnf"
expect_rc 2 "undefined rule" -- "$RUVLLM" "${R[@]}" --grammar "$TMP/undef.gbnf"
has "$TMP/err" "item"
expect_rc 2 "bench, undefined rule" -- "$RUVLLM" bench -m "$M" -p 0 -n 8 --grammar "$TMP/undef.gbnf"
has "$TMP/err" "ruvllm bench: --grammar .*undef.gbnf: .*item"
printf '{"type": "object", "properties": {' >"$TMP/badjson.json"
expect_rc 2 "schema not JSON" -- "$RUVLLM" "${R[@]}" --json-schema "$TMP/badjson.json"
has "$TMP/err" "--json-schema .*badjson.json: "
printf '{"type": "integer", "multipleOf": 3}' >"$TMP/unsup.json"
expect_rc 2 "schema unsupported" -- "$RUVLLM" "${R[@]}" --json-schema "$TMP/unsup.json"
has "$TMP/err" "multipleOf"
expect_rc 2 "regex syntax" -- "$RUVLLM" "${R[@]}" --regex '(ab'
has "$TMP/err" "--regex \(ab: "
expect_rc 2 "regex unsupported" -- "$RUVLLM" "${R[@]}" --regex '(a)\1'
has "$TMP/err" "--regex "
expect_rc 1 "missing grammar file" -- "$RUVLLM" "${R[@]}" --grammar "$TMP/nope.gbnf"
has "$TMP/err" "--grammar .*nope.gbnf: No such file"
expect_rc 0 "--help" -- "$RUVLLM" run --help
has "$TMP/out" "--json-schema FILE"
has "$TMP/out" "--json-object"

finish
