#!/bin/sh
# default-job.sh BUILD_DIR -- the `make run` job: makes a whole sentence
# encoder of MiniLM-L6's shape (6 layers, d_model 384, 12 heads, FFN 1536,
# vocabulary 30522) with `mha gen`, a seeded sample dataset of 16 token-id
# sequences x 128 tokens with an attention mask (row 0 full, the others
# padded to random lengths), scores it with `mha run` and says what it did.
# Everything lands in BUILD_DIR/default-job/.
set -eu

build=${1:-build}
mha="$build/bin/mha"
out="$build/default-job"
batch=${MHA_JOB_BATCH:-16}
seq=${MHA_JOB_SEQ:-128}

if [ ! -x "$mha" ]; then
  echo "default-job: $mha not found; build first (make build)" >&2
  exit 1
fi
mkdir -p "$out"

echo "default-job: encoder of MiniLM-L6's shape: 6 layers, d_model 384, 12 heads, FFN 1536 (seed 1) -> $out/model.onnx"
echo "default-job: dataset $batch x $seq token ids + attention mask (seed 1) -> $out/input_ids.npy, $out/attention_mask.npy"
"$mha" gen --preset minilm-l6 --seed 1 -o "$out/model.onnx" \
  --data "$out/input_ids.npy" --mask "$out/attention_mask.npy" --batch "$batch" --seq "$seq"

# `mha info` says how the model loads: every attention layer a fused step
"$mha" info "$out/model.onnx" >"$out/info.txt"
sed -n 's/^\(attention layers\|plan\|FLOPs\): */default-job: \1: /p' "$out/info.txt"

# `mha run` prints its summary (rows, seconds, rows/s, backend, threads) on stderr
"$mha" run "$out/model.onnx" "$out/input_ids.npy" "$out/attention_mask.npy" \
  -o "$out/last_hidden_state.npy" 2>"$out/summary.txt" || {
  cat "$out/summary.txt" >&2
  exit 1
}
sed 's/^mha run: /default-job: /' "$out/summary.txt"
echo "default-job: output $batch x $seq x 384 float32 -> $out/last_hidden_state.npy"
