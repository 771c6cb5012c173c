#!/bin/sh
# cli_round5.sh -- small defects of the `mha` command found by the fifth
# adversarial round (whole models, new-user paths), each as the rule for bad
# input has it: a non-zero exit, one stderr line naming the file or option
# and the problem, nothing on stdout and no output file.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
# fail, expect, one_line
# shellcheck source=lib/refusal.sh
. "$(dirname "$0")/lib/refusal.sh"

echo "== mha gen -o NAME.npy"
# wrote the ONNX model under a data file's name (exit 0); 'mha run' then
# read it as a dataset ("not an .npy file")
for m in "-d 16 -H 2" "--model encoder -d 16 -H 2"; do
  # shellcheck disable=SC2086
  one_line 2 "mha gen: -o writes the model as ONNX, not '$T/m.npy' (.npy is data: --data writes it)" \
    "$MHA" gen $m -o "$T/m.npy"
  [ ! -e "$T/m.npy" ] || fail "gen -o m.npy wrote a file"
done
expect 0 "gen -o m.onnx" "$MHA" gen -d 16 -H 2 -o "$T/m.onnx"
echo "ok: a model is not written under an .npy name"

echo "== mha run --help says which input files are converted"
# it said only "integer files to bool masks"; int32 / int8 token ids are
# widened (and the serve help said "as for mha run")
"$MHA" run --help >"$T/help"
tr '\n' ' ' <"$T/help" | tr -s ' ' | grep -q "int32, int16, int8, uint32, uint16 and uint8 token ids and masks widened to the model's int64 (or int32" ||
  fail "mha run --help: no word of widened token ids"
echo "ok: mha run --help names the widened integer inputs"

echo "== mha serve of a model it cannot batch"
# a ViT (images) or a model with a KV cache: "queue: input 'images' is not
# [batch, sequence]: a batch cannot be padded", which did not say what
# serve takes or that mha run runs it
if "$MHA" serve --help >/dev/null 2>&1; then
  for m in h_vit_torchvision_op13 z_gpt2_past_op14; do
    one_line 1 "^mha: $MHA_TEST_DATA/models/$m/model.onnx: cannot be served: .* (mha serve takes one attention layer, or a model whose inputs are token ids and masks \[batch, sequence\]; 'mha run' runs it)" \
      "$MHA" serve "$MHA_TEST_DATA/models/$m/model.onnx" --port 0
  done
else
  echo "skipped: mha serve not built"
fi

echo "== mha check of a data set with a file missing from its numbering"
# output_0.pb removed beside output_1.pb: "3 input and 2 output files for a
# model of 3 inputs and 2 outputs" -- the count was the highest number + 1
mkdir -p "$T/case" && cp "$MHA_TEST_DATA/models/bert_postln_l2_d64_h4/model.onnx" "$T/case/"
cp -r "$MHA_TEST_DATA/models/bert_postln_l2_d64_h4/test_data_set_0" "$T/case/"
cp -r "$T/case/test_data_set_0" "$T/case/test_data_set_1"
rm "$T/case/test_data_set_0/output_0.pb"
cp "$T/case/test_data_set_1/input_0.pb" "$T/case/test_data_set_1/input_00.pb"
if "$MHA" check "$T/case" >"$T/out" 2>"$T/err"; then fail "check passed a broken case"; fi
grep -qF "FAIL case: test_data_set_0: output_0.pb is missing (output_1.pb is there) | test_data_set_1: two input files are numbered 0" "$T/out" ||
  fail "mha check: $(cat "$T/out" "$T/err")"
echo "ok: $(head -1 "$T/out")"

echo "cli_round5.sh: all passed"
