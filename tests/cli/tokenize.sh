#!/usr/bin/env bash
# CLI test of `ruvllm tokenize` and `ruvllm detokenize`: ids llama.cpp gives (stories260K,
# the Llama 3 vocabulary), --no-bos, --special, --json, --pieces, -f FILE, the way back,
# and clean failures on bad input.
# $1: the ruvllm binary. RUVLLM_TESTDATA: the shared data folder.
. "$(dirname "$0")/lib.sh"
STORIES=$DATA/models/stories260K.gguf
LLAMA3=$DATA/models/vocab/ggml-vocab-llama-bpe.gguf
need_files "$STORIES" "$LLAMA3"

# ids as llama.cpp gives them (golden/stories260K.json, prompt 1)
expect_out 0 "1 346 306 414" "stories260K Hello" -- "$RUVLLM" tokenize -m "$STORIES" -p "Hello"
expect_out 0 "346 306 414" "--no-bos" -- "$RUVLLM" tokenize -m "$STORIES" -p "Hello" --no-bos
expect_out 0 "128000 9906 1917" "llama3 Hello world" -- "$RUVLLM" tokenize -m "$LLAMA3" -p "Hello world"

# WordPiece adds [CLS] and [SEP] (BOS and EOS) per the metadata; --no-bos adds neither
BERT=$DATA/models/vocab/ggml-vocab-bert-bge.gguf
if [[ -f $BERT ]]; then
    expect_out 0 "101 7592 2088 102" "bert Hello world" -- "$RUVLLM" tokenize -m "$BERT" -p "Hello world"
    expect_out 0 "7592 2088" "bert --no-bos" -- "$RUVLLM" tokenize -m "$BERT" -p "Hello world" --no-bos
fi

# control tokens: only with --special
expect_out 0 "9906 128009" "--special" -- "$RUVLLM" tokenize -m "$LLAMA3" -p "Hello<|eot_id|>" --no-bos --special
expect_rc 0 "plain markup" -- "$RUVLLM" tokenize -m "$LLAMA3" -p "Hello<|eot_id|>" --no-bos
grep -q 128009 "$TMP/out" && fail "control token from plain text: $(cat "$TMP/out")"

# --json and --pieces
expect_out 0 '{"ids": [128000, 9906, 1917], "pieces": ["<|begin_of_text|>", "Hello", " world"]}' "--json" -- \
    "$RUVLLM" tokenize -m "$LLAMA3" -p "Hello world" --json
expect_out 0 '{"ids": [9906, 128009], "pieces": ["Hello", "<|eot_id|>"]}' "--json --special --no-bos" -- \
    "$RUVLLM" tokenize -m "$LLAMA3" -p "Hello<|eot_id|>" --json --special --no-bos
expect_out 0 $'9906\t\'Hello\'\n1917\t\' world\'' "--pieces" -- \
    "$RUVLLM" tokenize -m "$LLAMA3" -p "Hello world" --pieces --no-bos

# -f FILE gives what -p gives, bytes as they are (a newline included)
printf 'Once upon a time,\nthere was a fox.\n' >"$TMP/text"
expect_rc 0 "-f FILE" -- "$RUVLLM" tokenize -m "$LLAMA3" -f "$TMP/text"
cp "$TMP/out" "$TMP/from_file"
expect_rc 0 "-p same text" -- "$RUVLLM" tokenize -m "$LLAMA3" -p "$(cat "$TMP/text")"$'\n'
cmp -s "$TMP/out" "$TMP/from_file" || fail "-f and -p differ: $(cat "$TMP/from_file") / $(cat "$TMP/out")"

# the way back
ids=$(cat "$TMP/from_file")
expect_out 0 "$(printf 'Once upon a time,\nthere was a fox.\n')" "detokenize" -- \
    "$RUVLLM" detokenize -m "$LLAMA3" --ids "${ids// /,}"
expect_out 0 "<|begin_of_text|>Hello world" "detokenize --special" -- \
    "$RUVLLM" detokenize -m "$LLAMA3" --ids "128000 9906 1917" --special
expect_out 0 "Hello" "detokenize SentencePiece" -- "$RUVLLM" detokenize -m "$STORIES" --ids 346,306,414

# failures
expect_rc 2 "no model" -- "$RUVLLM" tokenize -p "x"
expect_rc 2 "both -p and -f" -- "$RUVLLM" tokenize -m "$LLAMA3" -p x -f "$TMP/text"
expect_rc 2 "unknown option" -- "$RUVLLM" tokenize -m "$LLAMA3" -p x --frobnicate
expect_rc 1 "missing model file" -- "$RUVLLM" tokenize -m "$TMP/nope.gguf" -p x
expect_rc 1 "missing text file" -- "$RUVLLM" tokenize -m "$LLAMA3" -f "$TMP/nope.txt"
printf 'not a gguf' >"$TMP/bad.gguf"
expect_rc 1 "not a GGUF" -- "$RUVLLM" tokenize -m "$TMP/bad.gguf" -p x
expect_rc 1 "id past the vocabulary" -- "$RUVLLM" detokenize -m "$STORIES" --ids 1,99999
expect_rc 2 "bad id list" -- "$RUVLLM" detokenize -m "$STORIES" --ids 1,x
expect_rc 0 "--help" -- "$RUVLLM" tokenize --help

finish
