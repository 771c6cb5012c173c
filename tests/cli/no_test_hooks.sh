#!/bin/sh
# no_test_hooks.sh -- the shipped library and command carry no test hooks:
# libmha and `mha` have no allocation-failure counter (mha_alloc_fail_at,
# a process-wide global), and `mha run` ignores the MHA_TEST_DATASET_*
# variables that make the test build sleep or SIGKILL itself. The test
# build (mha-testhooks) still has both: tests/cli/dataset.sh uses them.
# Env: MHA (the binary), MHA_TESTHOOKS, MHA_BUILD_DIR, MHA_TEST_TMP.
set -eu
: "${MHA:?}" "${MHA_TESTHOOKS:?}" "${MHA_BUILD_DIR:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
die() { echo "FAIL: $*" >&2; exit 1; }

LIB="$MHA_BUILD_DIR/lib/libmha.so"
[ -f "$LIB" ] || die "no $LIB"
for f in "$LIB" "$MHA" "$MHA_TESTHOOKS"; do
  nm "$f" >"$T/syms" 2>/dev/null || die "nm cannot read $f"
  # the symbol table is there: an internal function every build has
  grep -q ' mha_text_escape$' "$T/syms" || die "$f: no symbol table to inspect"
  if grep -q -e ' mha_alloc_fail_at$' -e ' alloc_counter$' "$T/syms"; then
    [ "$f" = "$MHA_TESTHOOKS" ] || die "$f carries the allocation-failure hook"
  else
    [ "$f" != "$MHA_TESTHOOKS" ] || die "the test build lost its allocation-failure hook"
  fi
done
echo "ok: no allocation-failure hook in libmha.so or mha (mha-testhooks has it)"

"$MHA" gen -d 16 -H 2 --seed 6 -o "$T/m.onnx" --data "$T/x.npy" --batch 6 --seq 3
set +e
MHA_TEST_DATASET_CRASH_ROWS=1 MHA_TEST_DATASET_DELAY_MS=3000 timeout 20 \
  "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/y.npy" --batch-size 1 --quiet
rc=$?
set -e
[ "$rc" -eq 0 ] || die "mha run obeyed a test variable (exit $rc)"
[ -s "$T/y.npy" ] || die "mha run wrote no output"
echo "ok: mha run ignores MHA_TEST_DATASET_CRASH_ROWS and _DELAY_MS"
