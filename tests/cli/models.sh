#!/bin/sh
# models.sh -- the demo models of models/ are what their generator makes
# (make-models.sh remakes them byte for byte), and each one loads, verifies
# and runs.
# Env: MHA (the binary), MHA_SOURCE_DIR, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_SOURCE_DIR:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T/models"
fail() { echo "FAIL: $*" >&2; exit 1; }

cp "$MHA_SOURCE_DIR/models/make-models.sh" "$T/models/"
sh "$T/models/make-models.sh" "$MHA" >/dev/null
n=0
for f in "$MHA_SOURCE_DIR"/models/*.onnx; do
  b=$(basename "$f")
  cmp -s "$f" "$T/models/$b" || fail "$b differs from what make-models.sh makes"
  "$MHA" info "$f" >"$T/info.txt" || fail "$b: mha info failed"
  "$MHA" gen -d 64 -H 4 -o "$T/unused.onnx" --data "$T/x.npy" --batch 2 --seq 5 >/dev/null
  "$MHA" run "$f" "$T/x.npy" -o "$T/y.npy" --quiet || fail "$b: mha run failed"
  n=$((n + 1))
done
[ "$n" -ge 4 ] || fail "only $n models in models/"
made=$(find "$T/models" -name '*.onnx' | wc -l)
[ "$made" -eq "$n" ] || fail "make-models.sh makes $made models, models/ has $n"
echo "models.sh: $n models, all passed"
