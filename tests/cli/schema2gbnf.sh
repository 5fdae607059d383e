#!/usr/bin/env bash
# CLI test of `ruvllm schema2gbnf` and `ruvllm regex2gbnf`: the grammars they print (a
# few rules exactly), that `ruvllm gbnf-check` takes them and accepts or rejects texts with
# them, errors naming keyword and place (exit 1), --lenient warnings (on stdout as
# comments and on stderr), stdin, and usage errors (exit 2).
# $1: the ruvllm binary. RUVLLM_TESTDATA: the shared data folder.
set -u
RUVLLM=${1:?usage: schema2gbnf.sh path/to/ruvllm}
DATA=${RUVLLM_TESTDATA:-../shared}
BENCH=$DATA/testdata/grammars/bench_schema.json
if [[ ! -f $BENCH ]]; then
    echo "skip: $BENCH missing"
    exit 77
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/ruvllm-cli-schema.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# run RC DESCRIPTION -- COMMAND...: exit status RC (stdout in $TMP/out, stderr in $TMP/err)
run() {
    local want_rc=$1 what=$2
    shift 3
    "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    [[ $rc == "$want_rc" ]] || fail "$what: exit $rc, expected $want_rc; stderr: $(head -c 300 "$TMP/err")"
}
has() { grep -qxF -- "$2" "$TMP/$1" || fail "$3: no line '$2' in $1: $(head -c 400 "$TMP/$1")"; }
contains() { grep -qF -- "$2" "$TMP/$1" || fail "$3: no '$2' in $1: $(head -c 400 "$TMP/$1")"; }

# the bench schema: a grammar gbnf-check takes, accepting an order and rejecting a bad one
run 0 "bench schema" -- "$RUVLLM" schema2gbnf "$BENCH"
cp "$TMP/out" "$TMP/bench.gbnf"
has out 'status ::= "\"pending\"" | "\"paid\"" | "\"shipped\"" | "\"delivered\"" | "\"cancelled\""' "bench schema"
has out 'items-item-quantity ::= ([1-9] | [1-9] [0-9] | [1-9] [0-9]{2})' "bench schema"
ORDER='{"order_id": "ORD-000042", "status": "paid", "customer": {"name": "Ann", "email": "ann@example.org"}, "items": [{"sku": "ABC-0001", "quantity": 3, "unit_price": 9.99}], "total": 29.97}'
run 0 "bench order accepted" -- "$RUVLLM" gbnf-check --grammar "$TMP/bench.gbnf" -p "$ORDER"
run 1 "bench order with quantity 1000 rejected" -- "$RUVLLM" gbnf-check --grammar "$TMP/bench.gbnf" \
    -p "${ORDER/\"quantity\": 3/\"quantity\": 1000}"

# stdin, flags
echo '{"type": "object", "properties": {"a": {"type": "array", "maxItems": 2}}, "required": ["a"]}' >"$TMP/s.json"
run 0 "compact from stdin" -- "$RUVLLM" schema2gbnf --compact - <"$TMP/s.json"
has out 'root ::= "{" a-kv "}"' "compact"
grep -q space "$TMP/out" && fail "compact: the grammar mentions space"
echo '{"properties": {"a": {}}}' >"$TMP/e.json"
run 0 "extra properties" -- "$RUVLLM" schema2gbnf --extra-properties "$TMP/e.json"
contains out 'additional-k ::= ' "extra properties"

# what a grammar cannot express
echo '{"properties": {"n": {"type": "integer", "multipleOf": 3}}}' >"$TMP/m.json"
run 1 "multipleOf" -- "$RUVLLM" schema2gbnf "$TMP/m.json"
contains err '#/properties/n/multipleOf: not expressible in a grammar' "multipleOf"
run 0 "multipleOf, lenient" -- "$RUVLLM" schema2gbnf --lenient "$TMP/m.json"
has out '# warning: #/properties/n/multipleOf: not expressible in a grammar' "lenient"
contains err 'warning: #/properties/n/multipleOf' "lenient stderr"
echo '{"type": "string", "pattern": "^(a)\\1$"}' >"$TMP/p.json"
run 1 "pattern with a backreference" -- "$RUVLLM" schema2gbnf "$TMP/p.json"
contains err '#/pattern: regex: backreferences are not supported (at offset 4)' "backreference"
echo '{"type": ' >"$TMP/bad.json"
run 1 "invalid JSON" -- "$RUVLLM" schema2gbnf "$TMP/bad.json"
contains err 'schema: line' "invalid JSON"
run 1 "missing file" -- "$RUVLLM" schema2gbnf "$TMP/none.json"
run 2 "no file" -- "$RUVLLM" schema2gbnf
run 2 "unknown option" -- "$RUVLLM" schema2gbnf --frobnicate "$BENCH"
run 0 "help" -- "$RUVLLM" schema2gbnf --help

# regex2gbnf
run 0 "regex" -- "$RUVLLM" regex2gbnf '^\d{3}-[A-Z]{2,4}$'
has out 'root ::= [0-9]{3} "-" [A-Z]{2,4}' "regex"
cp "$TMP/out" "$TMP/re.gbnf"
run 0 "regex accepts" -- "$RUVLLM" gbnf-check --grammar "$TMP/re.gbnf" -p '123-ABC'
run 1 "regex rejects" -- "$RUVLLM" gbnf-check --grammar "$TMP/re.gbnf" -p '123-A'
run 0 "regex starting with a dash" -- "$RUVLLM" regex2gbnf -- '-?[0-9]+'
has out 'root ::= "-"? [0-9]+' "dash"
run 1 "lookahead" -- "$RUVLLM" regex2gbnf 'a(?=b)'
contains err 'lookahead is not supported (at offset 1)' "lookahead"
run 1 "unterminated class" -- "$RUVLLM" regex2gbnf '[ab'
run 2 "no regex" -- "$RUVLLM" regex2gbnf
run 2 "two regexes" -- "$RUVLLM" regex2gbnf a b

if ((fails)); then
    echo "$fails failure(s)"
    exit 1
fi
echo "ok"
