#!/bin/sh
# model_corpus.sh -- the whole models of tests/data/models (one per family,
# written in PyTorch by make_models.py, PyTorch's outputs) with every usable
# backend: each case passes `mha check` unless tests/data/models/REFUSED
# lists it (and a listed case that passes fails the test, so the list
# shrinks as the engine grows); each passing case's plan has the number of
# attention layers and of fused attention steps tests/data/models/FUSED
# gives it.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP, MHA_TEST_SANITIZED.
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }
# a list file without its comments and blank lines
strip() { sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$1"; }
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
M="$MHA_TEST_DATA/models" T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"

find "$M" -mindepth 2 -maxdepth 2 -name model.onnx | sed 's|/model.onnx$||; s|.*/||' | sort >"$T/cases.txt"
[ "$(wc -l <"$T/cases.txt")" -ge 10 ] || fail "expected at least 10 whole models in $M"
strip "$M/REFUSED" | sort >"$T/refused.txt"
strip "$M/FUSED" | sort >"$T/fused.txt"
unknown=$(cut -d' ' -f1 "$T/refused.txt" "$T/fused.txt" | sort | comm -23 - "$T/cases.txt")
[ -z "$unknown" ] || fail "REFUSED / FUSED name cases that do not exist: $unknown"
# every case is in exactly one of the two lists
both=$(cut -d' ' -f1 "$T/fused.txt" | sort | comm -12 - "$T/refused.txt")
[ -z "$both" ] || fail "cases both in REFUSED and FUSED: $both"
missing=$(cut -d' ' -f1 "$T/fused.txt" | cat - "$T/refused.txt" | sort | comm -13 - "$T/cases.txt")
[ -z "$missing" ] || fail "cases in neither REFUSED nor FUSED: $missing"

"$MHA" backends >"$T/backends.txt"
# under a sanitizer (MHA_TEST_SANITIZED=1) the reference and the fast
# backend only: the four take 150 s there, and avx2 / openmp run under ASan in
# the conformance, families and precision scripts
backends="scalar avx2 avx512 openmp"
[ "${MHA_TEST_SANITIZED:-0}" = 1 ] && backends="scalar avx512"
for backend in $backends; do
  if ! grep -Eq "^$backend +[^ ]+ +[0-9]+ +usable" "$T/backends.txt"; then
    echo "skip: backend $backend is not usable on this machine"
    continue
  fi
  # under a sanitizer the fast backend checks every second case: its
  # kernels at half the shapes, after the scalar pass ran every case there
  # through the interpreter and plan code they share (8 of the two passes'
  # 16 s under ASan, quiet); the release run checks every case on each
  dir="$M"
  cp "$T/cases.txt" "$T/these.txt"
  if [ "${MHA_TEST_SANITIZED:-0}" = 1 ] && [ "$backend" != scalar ]; then
    dir="$T/half"
    rm -rf "$dir" && mkdir "$dir"
    awk 'NR % 2 == 0' "$T/cases.txt" >"$T/these.txt"
    while read -r name; do ln -s "$M/$name" "$dir/$name"; done <"$T/these.txt"
  fi
  set +e
  "$MHA" check --backend "$backend" "$dir" >"$T/check.txt" 2>&1
  set -e
  while read -r name; do
    passed=1
    grep -q "^FAIL $name:" "$T/check.txt" && passed=0
    if grep -qx "$name" "$T/refused.txt"; then
      [ "$passed" = 0 ] || fail "$backend: $name is listed in REFUSED but passes now (remove it)"
    else
      [ "$passed" = 1 ] || fail "$backend: $name fails: $(grep "^FAIL $name:" "$T/check.txt")"
    fi
  done <"$T/these.txt"
  n=$(wc -l <"$T/these.txt")
  r=$(comm -12 "$T/refused.txt" "$T/these.txt" | wc -l)
  grep -qx "$((n - r)) passed, $r failed" "$T/check.txt" ||
    fail "$backend: wanted $((n - r)) passed, $r failed: $(tail -n 1 "$T/check.txt")"
  echo "ok: $backend: $((n - r)) whole models pass, $r refused as listed"
done

echo "== fused attention steps per model"
# The counts are the plan's, the same in every build; under a sanitizer
# (MHA_TEST_SANITIZED=1) every eighth case only (each `mha info` there costs
# 0.1 s of ASan start-up and the whole list 48 s of CPU), the release run
# checks them all.
step=1
[ "${MHA_TEST_SANITIZED:-0}" = 1 ] && step=8
i=0
while read -r name layers fused; do
  i=$((i + 1))
  [ $(((i - 1) % step)) = 0 ] || continue
  "$MHA" info "$M/$name/model.onnx" >"$T/info_$name.txt" 2>&1 || fail "info $name: $(cat "$T/info_$name.txt")"
  got_l=$(sed -n 's/^attention layers: *\([0-9]*\).*/\1/p' "$T/info_$name.txt")
  got_f=$(grep -c '^  layer [0-9].* fused, ' "$T/info_$name.txt" || true)
  [ "$got_l" = "$layers" ] || fail "$name: $got_l attention layers, FUSED says $layers"
  [ "$got_f" = "$fused" ] || fail "$name: $got_f fused attention steps, FUSED says $fused"
  grep -q "^plan: .* $fused attention," "$T/info_$name.txt" || fail "$name: plan line: $(grep '^plan' "$T/info_$name.txt")"
  echo "ok: $name: $got_f of $got_l attention layers fused"
done <"$T/fused.txt"
