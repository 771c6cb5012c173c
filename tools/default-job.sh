#!/bin/sh
# default-job.sh BUILD_DIR -- the `make run` job: makes a layer like the
# original transformer's (d_model 512, 8 heads) with `mha gen`, a seeded
# sample dataset of 64 sequences x 128 tokens, scores it with `mha run` and
# says what it did. Everything lands in BUILD_DIR/default-job/.
set -eu

build=${1:-build}
mha="$build/bin/mha"
out="$build/default-job"
batch=${MHA_JOB_BATCH:-64}
seq=${MHA_JOB_SEQ:-128}

if [ ! -x "$mha" ]; then
  echo "default-job: $mha not found; build first (make build)" >&2
  exit 1
fi
mkdir -p "$out"

echo "default-job: layer d_model 512, 8 heads (seed 1) -> $out/layer.onnx"
echo "default-job: dataset $batch x $seq x 512 float32 (seed 1) -> $out/input.npy"
"$mha" gen -d 512 -H 8 --seed 1 -o "$out/layer.onnx" \
  --data "$out/input.npy" --batch "$batch" --seq "$seq"

# `mha run` prints its summary (rows, seconds, rows/s, backend, threads) on stderr
"$mha" run "$out/layer.onnx" "$out/input.npy" -o "$out/output.npy" 2>"$out/summary.txt" || {
  cat "$out/summary.txt" >&2
  exit 1
}
sed 's/^mha run: /default-job: /' "$out/summary.txt"
echo "default-job: output $batch x $seq x 512 float32 -> $out/output.npy"
