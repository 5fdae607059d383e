#!/usr/bin/env bash
# CLI test of `ruvllm bench` on stories260K at tiny sizes (a smoke test, not a
# measurement): the table has a pp and a tg row with the decode floor on the tg row; the
# JSON is a list of one object per test with llama-bench's keys plus floor_ts; -p 0 / -n 0
# skip a test; bad flags exit 2 naming the flag.
# $1: the ruvllm binary. RUVLLM_TESTDATA: the shared data folder.
. "$(dirname "$0")/lib.sh"
M=$DATA/models/stories260K.gguf
need_files "$M"
Q=(-m "$M" --stream-mib 8 -r 2 -t 2)

expect_rc 0 "table" -- "$RUVLLM" bench "${Q[@]}" -p 32 -n 8
has "$TMP/out" '^memory bandwidth [0-9.]+ GB/s \(copy [0-9.]+, triad [0-9.]+'
has "$TMP/out" '^\| model +\| +size \| threads \| +test \| +t/s \| floor t/s \| +ratio \|$'
has "$TMP/out" '^\| stories260K.gguf +\| +1.12 MiB \| +2 \| +pp32 \| +[0-9.]+ ± [0-9.]+ \| +- \| +- \|$'
has "$TMP/out" '^\| stories260K.gguf +\| +1.12 MiB \| +2 \| +tg8 \| +[0-9.]+ ± [0-9.]+ \| +[0-9.]+ \| +[0-9.]+ \|$'

expect_rc 0 "json" -- "$RUVLLM" bench "${Q[@]}" -p 16 -n 4 --json
if command -v node >/dev/null; then
    msg=$(node -e '
        const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
        const out = [];
        if (!Array.isArray(r) || r.length !== 2) out.push("not a list of 2");
        for (const t of r) {
            for (const k of ["n_prompt", "n_gen", "n_threads", "avg_ts", "stddev_ts", "floor_ts",
                             "samples_ts", "avg_ns", "model_filename", "type_k"])
                if (!(k in t)) out.push(`no key ${k}`);
            if (!(t.avg_ts > 0) || !(t.stddev_ts >= 0)) out.push(`avg_ts ${t.avg_ts}`);
            if (t.n_threads !== 2 || t.samples_ts.length !== 2) out.push("threads or samples");
        }
        if (r[0].n_prompt !== 16 || r[0].n_gen !== 0 || r[0].floor_ts !== null) out.push("pp row");
        if (r[1].n_prompt !== 0 || r[1].n_gen !== 4 || !(r[1].floor_ts > 0)) out.push("tg row");
        console.log(out.join("; "));
    ' "$TMP/out" 2>&1)
    [[ -z $msg ]] || fail "json: $msg: $(head -c 600 "$TMP/out")"
else
    has "$TMP/out" '"n_prompt": 16, "n_gen": 0'
    has "$TMP/out" '"floor_ts": [0-9.]+'
fi

expect_rc 0 "-p 0" -- "$RUVLLM" bench "${Q[@]}" -p 0 -n 4
[[ $(grep -c '| *tg4 |' "$TMP/out") == 1 && $(grep -c '| *pp' "$TMP/out") == 0 ]] ||
    fail "-p 0: $(cat "$TMP/out")"
expect_rc 0 "-n 0" -- "$RUVLLM" bench "${Q[@]}" -p 8 -n 0
[[ $(grep -c '| *pp8 |' "$TMP/out") == 1 && $(grep -c '| *tg' "$TMP/out") == 0 ]] ||
    fail "-n 0: $(cat "$TMP/out")"
grep -q '^memory bandwidth' "$TMP/out" && fail "-n 0 measured the bandwidth"

bad() {
    local flag=$1
    shift
    expect_usage "$flag" "bad $flag" -- "$RUVLLM" bench -m "$M" "$@"
}
bad -r -r 0
bad -p -p -1
bad -n -n x
bad -t -t 0
bad --stream-mib --stream-mib 0
bad --frobnicate --frobnicate
expect_rc 2 "nothing to do" -- "$RUVLLM" bench -m "$M" -p 0 -n 0
expect_rc 2 "no model" -- "$RUVLLM" bench

finish
