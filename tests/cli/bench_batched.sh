#!/usr/bin/env bash
# CLI test of `ruvllm bench --parallel` (batched decoding) on stories260K at tiny sizes (a
# smoke test, not a measurement): the JSON is a list of one object per N with
# llama-batched-bench's keys (n_parallel, pp, tg, n_kv, t_pp, speed_pp, t_tg, speed_tg, t,
# speed) and the floor (bytes_per_step, bandwidth_gbs, floor_tg, floor_ratio), every
# figure positive; the table has a row per N; -p 0 starts each sequence from one token;
# bad lists and constraints exit 2 naming the flag.
# $1: the ruvllm binary. RUVLLM_TESTDATA: the shared data folder.
. "$(dirname "$0")/lib.sh"
M=$DATA/models/stories260K.gguf
need_files "$M"
Q=(-m "$M" --stream-mib 8 -r 2 -t 2)

expect_rc 0 "json" -- "$RUVLLM" bench "${Q[@]}" --parallel 1,3,8 -p 12 -n 5 --json
if command -v node >/dev/null; then
    msg=$(node -e '
        const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
        const out = [];
        if (!Array.isArray(r) || r.length !== 3) out.push("not a list of 3");
        const want = [1, 3, 8];
        r.forEach((t, i) => {
            for (const k of ["n_parallel", "pp", "tg", "n_kv", "t_pp", "speed_pp", "t_tg",
                             "speed_tg", "t", "speed", "samples_tg", "bytes_per_step",
                             "weight_bytes_per_step", "kv_bytes_per_step", "bandwidth_gbs",
                             "floor_tg", "floor_ratio", "n_threads", "type_k", "device"])
                if (!(k in t)) out.push(`no key ${k}`);
            if (t.n_parallel !== want[i] || t.pp !== 12 || t.tg !== 5) out.push(`row ${i} N/pp/tg`);
            if (t.n_kv !== want[i] * 17) out.push(`row ${i} n_kv ${t.n_kv}`);
            for (const k of ["t_pp", "speed_pp", "t_tg", "speed_tg", "t", "speed",
                             "bytes_per_step", "weight_bytes_per_step", "kv_bytes_per_step",
                             "bandwidth_gbs", "floor_tg", "floor_ratio"])
                if (!(typeof t[k] === "number" && t[k] > 0)) out.push(`row ${i} ${k} = ${t[k]}`);
            if (t.samples_tg.length !== 2 || !t.samples_tg.every((x) => x > 0))
                out.push(`row ${i} samples_tg`);
            if (Math.abs(t.speed_tg - want[i] * 5 / t.t_tg) > 1e-3 * t.speed_tg)
                out.push(`row ${i} speed_tg is not N * tg / t_tg`);
            if (Math.abs(t.t - t.t_pp - t.t_tg) > 1e-5) out.push(`row ${i} t`);
            if (t.bytes_per_step !== t.weight_bytes_per_step + t.kv_bytes_per_step)
                out.push(`row ${i} bytes_per_step`);
            // tokens per forward pass: the whole prompt batch of N sequences (under -b 512)
            if (t.n_batch !== want[i] * 12) out.push(`row ${i} n_batch ${t.n_batch}`);
            if (t.device !== "cpu" || t.n_threads !== 2 || t.type_k !== "f16")
                out.push(`row ${i} device/threads/type_k`);
        });
        // the KV a step reads grows with N; the weights do not
        if (r.length === 3 && !(r[2].kv_bytes_per_step > r[0].kv_bytes_per_step &&
                                r[2].weight_bytes_per_step === r[0].weight_bytes_per_step))
            out.push("bytes per step across N");
        console.log(out.join("; "));
    ' "$TMP/out" 2>&1)
    [[ -z $msg ]] || fail "json: $msg: $(head -c 900 "$TMP/out")"
else
    has "$TMP/out" '"n_parallel": 8, "pl": 8, "pp": 12, "tg": 5'
    has "$TMP/out" '"speed_tg": [0-9.]+'
    has "$TMP/out" '"floor_tg": [0-9.]+'
fi

expect_rc 0 "table" -- "$RUVLLM" bench "${Q[@]}" --parallel 2,4 -p 8 -n 4
has "$TMP/out" '^memory bandwidth [0-9.]+ GB/s'
has "$TMP/out" '^\| +PP \| +TG \| +B \| +N_KV \|'
has "$TMP/out" '^\| +8 \| +4 \| +2 \| +24 \| +[0-9.]+ \| +[0-9.]+ \| +[0-9.]+ \| +[0-9.]+ ± [0-9.]+ \| +[0-9.]+ \| +[0-9.]+ \| +[0-9.]+ \| +[0-9.]+ \|$'
has "$TMP/out" '^\| +8 \| +4 \| +4 \| +48 \|'

# -p 0: no prompt, speed_pp 0, generation still measured; -b smaller than a step's N
expect_rc 0 "-p 0" -- "$RUVLLM" bench "${Q[@]}" --parallel 4 -p 0 -n 3 -b 2 --json
has "$TMP/out" '"n_parallel": 4, "pl": 4, "pp": 0, "tg": 3, "n_kv": 12, "t_pp": 0.000000000, "speed_pp": 0.000000'
has "$TMP/out" '"speed_tg": [1-9][0-9.]*'
has "$TMP/out" '"n_batch": 4,' # -b 2 raised to N: a generation step is one pass

bad() {
    local flag=$1
    shift
    expect_usage "$flag" "bad $flag $*" -- "$RUVLLM" bench -m "$M" "$@"
}
bad --parallel --parallel 0
bad --parallel --parallel 65
bad --parallel --parallel 1,,2
bad --parallel --parallel 2,x
bad -npl -npl ''
bad --json-object --parallel 2 --json-object
bad -n --parallel 2 -n 0

finish
