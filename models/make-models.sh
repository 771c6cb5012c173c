#!/bin/sh
# make-models.sh [MHA] -- remakes the demo models of this folder with
# `mha gen` (seeded: the same files every time). MHA defaults to the
# build's binary.
set -eu
here=$(dirname "$0")
mha=${1:-$here/../build/bin/mha}
"$mha" gen -d 64 -H 4 --seed 1 -o "$here/layer_d64_h4.onnx"
"$mha" gen -d 64 -H 4 --causal --seed 2 -o "$here/layer_d64_h4_causal.onnx"
"$mha" gen -d 64 -H 8 --kv-heads 2 --seed 3 -o "$here/layer_d64_h8_gqa2.onnx"
"$mha" gen -d 64 -H 4 --form decomposed --seed 4 -o "$here/layer_d64_h4_decomposed.onnx"
"$mha" gen --model encoder -L 2 -d 32 -H 4 --ffn 64 --vocab 100 --max-pos 64 --seed 5 \
  -o "$here/encoder_l2_d32_h4.onnx"
"$mha" gen --model decoder -L 2 -d 32 -H 4 --kv-heads 2 --ffn 64 --vocab 100 --max-pos 64 \
  --seed 6 -o "$here/decoder_l2_d32_h4_kv2.onnx"
