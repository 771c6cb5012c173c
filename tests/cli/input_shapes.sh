#!/bin/sh
# input_shapes.sh -- every refusal of an input file's shape by `mha run` is
# one line that names the file, the model's input, the axis (with the
# file's name for it, when the model file has one) and the size the model
# takes against the one given; exit 1, no output written. Whole models
# (a BERT: token ids, a mask, token types; a ViT: images) and a layer (its
# feature width), through the dataset path (.npy outputs) and the
# whole-tensor path (a .pb output).
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
BERT="$MHA_TEST_DATA/models/bert_postln_l2_d64_h4/model.onnx"
VIT="$MHA_TEST_DATA/models/h_vit_torchvision_op13/model.onnx"

fail() { echo "FAIL: $*" >&2; exit 1; }

. "$(dirname "$0")/lib/npy_zeros.sh"

# refused NAME MODEL FILES... -- WANT...: exit 1, one line, each WANT in it,
# no output (OUT_EXT: the output's extension, npy by default)
refused() {
  name=$1 model=$2 ext=${OUT_EXT:-npy}
  shift 2
  files=""
  while [ "$1" != "--" ]; do
    files="$files $1"
    shift
  done
  shift
  set +e
  # shellcheck disable=SC2086 # the file list splits on purpose
  "$MHA" run -q "$model" $files -o "$T/$name.out.$ext" >"$T/$name.txt" 2>&1
  rc=$?
  set -e
  [ "$rc" = 1 ] || fail "$name: exit $rc, wanted 1: $(cat "$T/$name.txt")"
  [ "$(wc -l <"$T/$name.txt")" = 1 ] || fail "$name: not one line: $(cat "$T/$name.txt")"
  for want in "$@"; do
    grep -qF -- "$want" "$T/$name.txt" ||
      fail "$name: the message does not say $want: $(cat "$T/$name.txt")"
  done
  [ ! -e "$T/$name.out.$ext" ] || fail "$name: an output was written"
  echo "ok: $(cat "$T/$name.txt")"
}

echo "== a BERT's token ids, mask and token types"
npy_zeros "$T/ids.npy" '<i8' '(4, 8)' 256
npy_zeros "$T/types.npy" '<i8' '(4, 8)' 256
npy_zeros "$T/mask.npy" '<i8' '(4, 8)' 256
npy_zeros "$T/mask9.npy" '<i8' '(4, 9)' 288
npy_zeros "$T/mask3.npy" '<i8' '(3, 8)' 192
npy_zeros "$T/ids3d.npy" '<i8' '(4, 8, 1)' 256
"$MHA" run -q "$BERT" "$T/ids.npy" "$T/mask.npy" "$T/types.npy" -o "$T/good.npy" ||
  fail "the right shapes are refused"
# the message names the mask's file though it names input_ids too
refused seq "$BERT" "$T/ids.npy" "$T/mask9.npy" "$T/types.npy" -- \
  "mask9.npy: input 'attention_mask'" "axis 1 ('seq') is 9" "8 in input 'input_ids'"
refused rows "$BERT" "$T/ids.npy" "$T/mask3.npy" "$T/types.npy" -- \
  "mask3.npy: input 'attention_mask'" "axis 0" "3 rows" "4 in input 'input_ids'"
refused rank "$BERT" "$T/ids3d.npy" "$T/mask.npy" "$T/types.npy" -- \
  "ids3d.npy: input 'input_ids'" "3 axes" "takes 2"

echo "== a ViT's images: every fixed axis, named the same way"
npy_zeros "$T/wide.npy" '<f4' '(2, 3, 16, 20)' 7680
npy_zeros "$T/tall.npy" '<f4' '(2, 3, 20, 16)' 7680
npy_zeros "$T/rgba.npy" '<f4' '(2, 4, 16, 16)' 8192
refused wide "$VIT" "$T/wide.npy" -- "wide.npy: input 'images'" "axis 3 is 20" "takes 16 only"
refused tall "$VIT" "$T/tall.npy" -- "tall.npy: input 'images'" "axis 2 is 20" "takes 16 only"
refused rgba "$VIT" "$T/rgba.npy" -- "rgba.npy: input 'images'" "axis 1 is 4" "takes 3 only"
OUT_EXT=pb refused wide_pb "$VIT" "$T/wide.npy" -- "wide.npy: input 'images'" "axis 3 is 20" \
  "takes 16 only"
OUT_EXT=pb refused seq_pb "$BERT" "$T/ids.npy" "$T/mask9.npy" "$T/types.npy" -- \
  "mask9.npy: input 'attention_mask'" "axis 1 ('seq') is 9" "8 in input 'input_ids'"

echo "== a layer's feature width, by the command"
"$MHA" gen -d 32 -H 4 --seed 3 -o "$T/layer.onnx" --data "$T/x.npy" --batch 2 --seq 5 >/dev/null
npy_zeros "$T/x24.npy" '<f4' '(2, 5, 24)' 960
refused width "$T/layer.onnx" "$T/x24.npy" -- "x24.npy: input '" "axis 2 is 24" "takes 32 only"
OUT_EXT=pb refused width_pb "$T/layer.onnx" "$T/x24.npy" -- "x24.npy: input '" "axis 2 is 24" \
  "takes 32 only"
echo "PASS"
