#!/bin/sh
# models.sh -- the demo models of models/ are what their generator makes
# (make-models.sh remakes them byte for byte), and each one loads, verifies
# and runs (a layer over float32 sequences, a whole model over token ids).
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
  rm -f "$T/y.npy" "$T/logits.npy"
  if grep -q 'input *input_ids ' "$T/info.txt"; then
    # a whole model: token ids (below its vocabulary of 100), a mask if it takes one
    "$MHA" gen --model encoder -d 32 -H 4 --vocab 100 -o "$T/unused.onnx" --data "$T/ids.npy" \
      --mask "$T/mask.npy" --batch 2 --seq 5 >/dev/null
    set -- "input_ids=$T/ids.npy"
    if grep -q 'input *attention_mask ' "$T/info.txt"; then set -- "$@" "attention_mask=$T/mask.npy"; fi
    outs="$T/y.npy"
    if grep -q 'output *logits ' "$T/info.txt"; then outs="$outs $T/logits.npy"; fi
    # shellcheck disable=SC2086
    "$MHA" run "$f" "$@" -o $outs --quiet || fail "$b: mha run failed"
  else
    "$MHA" gen -d 64 -H 4 -o "$T/unused.onnx" --data "$T/x.npy" --batch 2 --seq 5 >/dev/null
    "$MHA" run "$f" "$T/x.npy" -o "$T/y.npy" --quiet || fail "$b: mha run failed"
  fi
  n=$((n + 1))
done
[ "$n" -ge 4 ] || fail "only $n models in models/"
made=$(find "$T/models" -name '*.onnx' | wc -l)
[ "$made" -eq "$n" ] || fail "make-models.sh makes $made models, models/ has $n"
echo "models.sh: $n models, all passed"
