#!/usr/bin/env bash
# CLI test of `ruvllm logits` on stories260K against llama.cpp (golden/stories260K.json,
# made with an F32 cache): for every golden prompt, the prompt ids, the top-20 ids in
# order and their logits (5e-5), and with --all every logit (5e-5); the text form; -f;
# bad flags exit 2 naming the flag.
# $1: the ruvllm binary. RUVLLM_TESTDATA: the shared data folder.
. "$(dirname "$0")/lib.sh"
M=$DATA/models/stories260K.gguf
GOLD=$DATA/golden/stories260K.json
need_files "$M" "$GOLD"
need_command node "for reading JSON"

n_prompts=$(node -e 'console.log(require(process.argv[1]).prompts.length)' "$GOLD")
for ((i = 0; i < n_prompts; i++)); do
    node -e 'process.stdout.write(require(process.argv[1]).prompts[+process.argv[2]].prompt)' \
        "$GOLD" "$i" >"$TMP/prompt.txt"
    expect_rc 0 "prompt $i" -- "$RUVLLM" logits -m "$M" -f "$TMP/prompt.txt" --top 20 --all --json \
        --kv-type f32
    # compare in node: prints nothing when all agree, else what differs
    msg=$(node -e '
        const fs = require("fs");
        const g = require(process.argv[1]).prompts[+process.argv[2]];
        const r = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
        const out = [];
        if (r.n_vocab !== g.last_logits.length) out.push(`n_vocab ${r.n_vocab}`);
        if (JSON.stringify(r.ids) !== JSON.stringify(g.tokens)) out.push(`ids ${r.ids}`);
        const ids = r.top.map((x) => x[0]), gids = g.top20.map((x) => x[0]);
        if (JSON.stringify(ids) !== JSON.stringify(gids)) out.push(`top ids ${ids} vs ${gids}`);
        r.top.forEach((x, k) => {
            if (Math.abs(x[1] - g.top20[k][1]) > 5e-5) out.push(`top[${k}] ${x[1]} vs ${g.top20[k][1]}`);
            if (x[1] !== r.logits[x[0]]) out.push(`top[${k}] is not logits[${x[0]}]`);
        });
        let worst = 0;
        r.logits.forEach((x, k) => { worst = Math.max(worst, Math.abs(x - g.last_logits[k])); });
        if (!(worst <= 5e-5)) out.push(`max |logit diff| ${worst}`);
        for (let k = 1; k < r.top.length; k++)
            if (r.top[k][1] > r.top[k - 1][1]) out.push("top not descending");
        console.log(out.join("; "));
    ' "$GOLD" "$i" "$TMP/out" 2>&1)
    [[ -z $msg ]] || fail "prompt $i: $msg"
done

# %.9g round-trips: the text form shows the same numbers as the JSON
expect_rc 0 "json top 3" -- "$RUVLLM" logits -m "$M" -p Hello --top 3 --json --kv-type f32
json=$(cat "$TMP/out")
[[ $json =~ ^\{\"n_vocab\":\ 512,\ \"ids\":\ \[1,\ 346,\ 306,\ 414\],\ \"top\":\ \[\[286,\ [-0-9.e]+\],\ \[419, ]] ||
    fail "json shape: $json"
[[ $json != *'"logits"'* ]] || fail "logits without --all"
expect_rc 0 "text" -- "$RUVLLM" logits -m "$M" -p Hello --top 3 --kv-type f32
has "$TMP/out" '^n_vocab 512$'
has "$TMP/out" '^ids 1 346 306 414$'
has "$TMP/out" '^1 286 14\.96'
l1=$(awk '$1 == 1 && $2 == 286 {print $3}' "$TMP/out")
[[ $json == *"[286, $l1]"* ]] || fail "text logit $l1 differs from the JSON: $json"
[[ $(awk 'NR > 3' "$TMP/out" | wc -l) == 3 ]] || fail "--top 3: expected 3 rows"
expect_rc 0 "--top 0" -- "$RUVLLM" logits -m "$M" -p Hello --top 0 --json
has "$TMP/out" '"top": \[\]'

bad() {
    local flag=$1
    shift
    expect_usage "$flag" "bad $flag" -- "$RUVLLM" logits -m "$M" "$@"
}
bad --top -p Hello --top -1
bad --top -p Hello --top x
bad --kv-type -p Hello --kv-type q9
bad --frobnicate -p Hello --frobnicate
expect_rc 2 "no prompt" -- "$RUVLLM" logits -m "$M"
expect_rc 2 "both -p and -f" -- "$RUVLLM" logits -m "$M" -p a -f "$TMP/prompt.txt"
expect_rc 1 "missing file" -- "$RUVLLM" logits -m "$M" -f "$TMP/none.txt"

finish
