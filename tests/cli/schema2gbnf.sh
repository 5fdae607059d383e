#!/usr/bin/env bash
# CLI test of `ruvllm schema2gbnf` and `ruvllm regex2gbnf`: the grammars they print (a
# few rules exactly), that `ruvllm gbnf-check` takes them and accepts or rejects texts with
# them, errors naming keyword and place (exit 1), --lenient warnings (on stdout as
# comments and on stderr), stdin, and usage errors (exit 2).
# $1: the ruvllm binary. RUVLLM_TESTDATA: the shared data folder.
. "$(dirname "$0")/lib.sh"
BENCH=$DATA/testdata/grammars/bench_schema.json
need_files "$BENCH"

# the bench schema: a grammar gbnf-check takes, accepting an order and rejecting a bad one
expect_rc 0 "bench schema" -- "$RUVLLM" schema2gbnf "$BENCH"
cp "$TMP/out" "$TMP/bench.gbnf"
has_line "$TMP/out" 'status ::= "\"pending\"" | "\"paid\"" | "\"shipped\"" | "\"delivered\"" | "\"cancelled\""' "bench schema"
has_line "$TMP/out" 'items-item-quantity ::= ([1-9] | [1-9] [0-9] | [1-9] [0-9]{2})' "bench schema"
ORDER='{"order_id": "ORD-000042", "status": "paid", "customer": {"name": "Ann", "email": "ann@example.org"}, "items": [{"sku": "ABC-0001", "quantity": 3, "unit_price": 9.99}], "total": 29.97}'
expect_rc 0 "bench order accepted" -- "$RUVLLM" gbnf-check --grammar "$TMP/bench.gbnf" -p "$ORDER"
expect_rc 1 "bench order with quantity 1000 rejected" -- "$RUVLLM" gbnf-check --grammar "$TMP/bench.gbnf" \
    -p "${ORDER/\"quantity\": 3/\"quantity\": 1000}"

# stdin, flags
echo '{"type": "object", "properties": {"a": {"type": "array", "maxItems": 2}}, "required": ["a"]}' >"$TMP/s.json"
expect_rc 0 "compact from stdin" -- "$RUVLLM" schema2gbnf --compact - <"$TMP/s.json"
has_line "$TMP/out" 'root ::= "{" a-kv "}"' "compact"
grep -q space "$TMP/out" && fail "compact: the grammar mentions space"
echo '{"properties": {"a": {}}}' >"$TMP/e.json"
expect_rc 0 "extra properties" -- "$RUVLLM" schema2gbnf --extra-properties "$TMP/e.json"
has_text "$TMP/out" 'additional-k ::= ' "extra properties"

# what a grammar cannot express
echo '{"properties": {"n": {"type": "integer", "multipleOf": 3}}}' >"$TMP/m.json"
expect_rc 1 "multipleOf" -- "$RUVLLM" schema2gbnf "$TMP/m.json"
has_text "$TMP/err" '#/properties/n/multipleOf: not expressible in a grammar' "multipleOf"
expect_rc 0 "multipleOf, lenient" -- "$RUVLLM" schema2gbnf --lenient "$TMP/m.json"
has_line "$TMP/out" '# warning: #/properties/n/multipleOf: not expressible in a grammar' "lenient"
has_text "$TMP/err" 'warning: #/properties/n/multipleOf' "lenient stderr"
echo '{"type": "string", "pattern": "^(a)\\1$"}' >"$TMP/p.json"
expect_rc 1 "pattern with a backreference" -- "$RUVLLM" schema2gbnf "$TMP/p.json"
has_text "$TMP/err" '#/pattern: regex: backreferences are not supported (at offset 4)' "backreference"
echo '{"type": ' >"$TMP/bad.json"
expect_rc 1 "invalid JSON" -- "$RUVLLM" schema2gbnf "$TMP/bad.json"
has_text "$TMP/err" 'schema: line' "invalid JSON"
expect_rc 1 "missing file" -- "$RUVLLM" schema2gbnf "$TMP/none.json"
expect_rc 2 "no file" -- "$RUVLLM" schema2gbnf
expect_rc 2 "unknown option" -- "$RUVLLM" schema2gbnf --frobnicate "$BENCH"
expect_rc 0 "help" -- "$RUVLLM" schema2gbnf --help

# regex2gbnf
expect_rc 0 "regex" -- "$RUVLLM" regex2gbnf '^\d{3}-[A-Z]{2,4}$'
has_line "$TMP/out" 'root ::= [0-9]{3} "-" [A-Z]{2,4}' "regex"
cp "$TMP/out" "$TMP/re.gbnf"
expect_rc 0 "regex accepts" -- "$RUVLLM" gbnf-check --grammar "$TMP/re.gbnf" -p '123-ABC'
expect_rc 1 "regex rejects" -- "$RUVLLM" gbnf-check --grammar "$TMP/re.gbnf" -p '123-A'
expect_rc 0 "regex starting with a dash" -- "$RUVLLM" regex2gbnf -- '-?[0-9]+'
has_line "$TMP/out" 'root ::= "-"? [0-9]+' "dash"
expect_rc 1 "lookahead" -- "$RUVLLM" regex2gbnf 'a(?=b)'
has_text "$TMP/err" 'lookahead is not supported (at offset 1)' "lookahead"
expect_rc 1 "unterminated class" -- "$RUVLLM" regex2gbnf '[ab'
expect_rc 2 "no regex" -- "$RUVLLM" regex2gbnf
expect_rc 2 "two regexes" -- "$RUVLLM" regex2gbnf a b

finish
