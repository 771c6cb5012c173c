#!/bin/sh
# conformance.sh -- `mha check` over every conformance case
# (tests/data/conformance, expected outputs from ONNX Runtime), the PyTorch
# exports (tests/data/torch-export) and the project's own opset-25 and
# com.microsoft cases, with every backend this machine can run: every case
# passes. Then that
# `mha check` does report what it should (a perturbed expected output, a
# broken model, a folder without cases), and that `mha run --out-dir`, the
# command ../shared/conformance/check.py drives, writes what `check` computes.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
C="$MHA_TEST_DATA/conformance"

fail() { echo "FAIL: $*" >&2; exit 1; }

# Every case folder: the conformance cases (all of them: bare Attention with
# KV cache, key lengths, qk_matmul_output, float16; whole layers), the
# PyTorch exports, and the cases made by this project's own generators
# (opset-25 windows, com.microsoft forms) when present. The whole models
# (tests/data/models) are model_corpus.sh's: some of them are refused, as
# its REFUSED list says.
case_dirs="$C $MHA_TEST_DATA/torch-export"
for extra in opset25 msft; do
  [ -d "$MHA_TEST_DATA/$extra" ] && case_dirs="$case_dirs $MHA_TEST_DATA/$extra"
done
want=0
for d in $case_dirs; do
  want=$((want + $(find "$d" -mindepth 2 -maxdepth 2 -name model.onnx | wc -l)))
done

# Each backend this machine can run (unusable ones are named and skipped).
"$MHA" backends >"$T/backends.txt"
for backend in scalar avx2 avx512 openmp; do
  if ! grep -Eq "^$backend +[^ ]+ +[0-9]+ +usable" "$T/backends.txt"; then
    echo "skip: backend $backend is not usable on this machine"
    continue
  fi
  echo "== mha check --backend $backend: every case"
  set +e
  # shellcheck disable=SC2086
  "$MHA" check --backend "$backend" $case_dirs >"$T/check.txt" 2>"$T/check.err"
  rc=$?
  set -e
  grep '^FAIL' "$T/check.txt" || true
  last=$(tail -n 1 "$T/check.txt")
  [ "$last" = "$want passed, 0 failed" ] ||
    fail "$backend: wanted '$want passed, 0 failed', got '$last' ($(cat "$T/check.err"))"
  [ "$rc" = 0 ] || fail "$backend: mha check exit $rc with nothing failed"
  echo "ok: $backend: $last"
done

echo "== mha check reports failures"
# a case whose expected output is off by a little in one element
case_dir="$T/cases/perturbed"
mkdir -p "$case_dir"
cp -r "$C/mha_self_d32_h2_b2_s8/." "$case_dir/"
out="$case_dir/test_data_set_0/output_0.pb"
size=$(wc -c <"$out")
# overwrite the high mantissa byte of the last float (raw_data ends the message)
printf '\377' | dd of="$out" bs=1 seek=$((size - 2)) conv=notrunc 2>/dev/null
# a case whose model is broken
mkdir -p "$T/cases/broken/test_data_set_0"
head -c 200 "$C/mha_self_d32_h2_b2_s8/model.onnx" >"$T/cases/broken/model.onnx"
cp "$C/mha_self_d32_h2_b2_s8/test_data_set_0/"*.pb "$T/cases/broken/test_data_set_0/"
set +e
"$MHA" check "$T/cases" "$C/mha_self_d16_h1_b1_s1" >"$T/check.txt" 2>&1
rc=$?
set -e
cat "$T/check.txt"
[ "$rc" = 1 ] || fail "check with failures: exit $rc, wanted 1"
[ "$(tail -n 1 "$T/check.txt")" = "1 passed, 2 failed" ] || fail "wanted '1 passed, 2 failed'"
grep -q "^FAIL perturbed: test_data_set_0: output_0.pb (output): 1/512 elements off.*worst at (1, 7, 31)" \
  "$T/check.txt" || fail "the perturbed case does not name the worst element"
grep -q "^FAIL broken: .*model.onnx" "$T/check.txt" || fail "the broken model's error is not reported"

mkdir -p "$T/nocases"
set +e
"$MHA" check "$T/nocases" >"$T/check.txt" 2>"$T/check.err"
rc=$?
set -e
# a bad argument, not a failing case: one line on stderr, nothing on stdout
[ "$rc" = 1 ] && [ ! -s "$T/check.txt" ] && [ "$(wc -l <"$T/check.err")" = 1 ] &&
  grep -q "nocases: no model.onnx and no case folders" "$T/check.err" ||
  fail "a folder without cases: exit $rc, $(cat "$T/check.txt" "$T/check.err")"
echo "ok: failures reported"

echo "== mha run --out-dir writes what check computes (the check.py protocol)"
for name in mha_self_d32_h2_b2_s8 mha_cross_padmask_d32_h4_b2_q6_kv9 mha_gqa_causal_d64_h8_kv2_b1_s20; do
  src="$C/$name"
  dst="$T/rerun/$name"
  mkdir -p "$dst/test_data_set_0"
  cp "$src/model.onnx" "$dst/"
  cp "$src/test_data_set_0/"input_*.pb "$dst/test_data_set_0/"
  # shellcheck disable=SC2046
  "$MHA" run "$src/model.onnx" $(ls "$src/test_data_set_0/"input_*.pb | sort) --out-dir "$T/outdir_$name" --quiet
  n_want=$(ls "$src/test_data_set_0/"output_*.pb | wc -l)
  n_got=$(ls "$T/outdir_$name"/output_*.pb | wc -l)
  [ "$n_got" = "$n_want" ] || fail "$name: --out-dir wrote $n_got outputs, wanted $n_want"
  [ -z "$(ls -A "$T/outdir_$name" | grep -v '^output_[0-9]*\.pb$')" ] || fail "$name: stray files in --out-dir"
  cp "$T/outdir_$name"/output_*.pb "$dst/test_data_set_0/"
done
"$MHA" check --rtol 0 --atol 0 "$T/rerun" >"$T/check.txt"
cat "$T/check.txt"
[ "$(tail -n 1 "$T/check.txt")" = "3 passed, 0 failed" ] || fail "run --out-dir outputs differ from check's"
echo "ok: --out-dir outputs are bitwise what check computes"

echo "conformance.sh: all passed"
