#!/bin/sh
# cli_round5.sh -- small defects of the `mha` command found by the fifth
# adversarial round (whole models, new-user paths), each as the rule for bad
# input has it: a non-zero exit, one stderr line naming the file or option
# and the problem, nothing on stdout and no output file.
# Env: MHA (the binary), MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_TMP:?}"
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

echo "cli_round5.sh: all passed"
