#!/bin/sh
# rotary_inputs.sh -- `mha run` streams a dataset through a layer whose rotary
# positions (position_ids [B, S]) or cos / sin tables ([B, S, d]) are inputs:
# those inputs are split by batch rows like the data, and every --batch-size
# gives the bits of the run in one chunk (issue 14).
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP. Needs Debian's python3
# with numpy and onnx to turn the corpus' .pb inputs into .npy (exit 77
# without them).
set -eu
: "${MHA:?set MHA to the mha binary}"
F="${MHA_TEST_DATA:?}/families" T="${MHA_TEST_TMP:?}"
PY=/usr/bin/python3
fail() { echo "FAIL: $*" >&2; exit 1; }
rm -rf "$T" && mkdir -p "$T"
"$PY" -c 'import numpy, onnx' 2>/dev/null || { echo "skip: $PY lacks numpy / onnx"; exit 77; }

for c in llama_posids_op17 llama_cossin_op16 gptneox_rot50_posids_op15 qwen2_posids_op18; do
  d="$F/$c/test_data_set_1"
  mkdir -p "$T/$c"
  "$PY" - "$d" "$T/$c" <<'PY'
import glob, os, sys
import numpy as np
from onnx import TensorProto, numpy_helper
src, dst = sys.argv[1], sys.argv[2]
for path in sorted(glob.glob(os.path.join(src, "input_*.pb"))):
    t = TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    name = os.path.basename(path)[:-3]
    np.save(os.path.join(dst, name + ".npy"), numpy_helper.to_array(t))
PY
  set -- "$T/$c"/input_*.npy
  [ $# -ge 3 ] || fail "$c: expected 3 or more inputs, got $#"
  "$MHA" run "$F/$c/model.onnx" "$@" -o "$T/$c/ref.npy" --batch-size 1000 --quiet ||
    fail "$c: run in one chunk"
  for bs in 1 2; do
    "$MHA" run "$F/$c/model.onnx" "$@" -o "$T/$c/y$bs.npy" --batch-size $bs --quiet 2>"$T/$c/err" ||
      fail "$c: --batch-size $bs: $(cat "$T/$c/err")"
    cmp -s "$T/$c/ref.npy" "$T/$c/y$bs.npy" || fail "$c: --batch-size $bs differs from one chunk"
  done
  echo "ok: $c, batch sizes 1 and 2 agree with one chunk"
done
