#!/bin/sh
# families.sh -- `mha check` over the model-family attention corpus
# (tests/data/families: the attention layers of BERT, GPT-2, LLaMA, T5,
# Whisper, ViT ... as PyTorch and other exporters write them), with every
# backend this machine can run.
#
# tests/data/families/REFUSED names the cases the engine does not serve yet.
# Every case not listed must pass on every backend; every listed case must be
# refused cleanly at load (`mha check` reports the model file and a node,
# `mha info` exits 1 with one line naming a node, nothing crashes); a listed
# case that passes fails this test, so the list can only shrink. For the
# cases that pass, `mha info` must report the layer's d_model, heads, key/value
# heads and head size as the corpus wrote them (cases.tsv).
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP, MHA_TEST_SANITIZED.
set -eu
export LC_ALL=C # sort and comm agree on the order
: "${MHA:?set MHA to the mha binary}"
F="${MHA_TEST_DATA:?}/families" T="${MHA_TEST_TMP:?}"
fail() { echo "FAIL: $*" >&2; exit 1; }

# The cases on disk, and the refused list without comments and blank lines.
rm -rf "$T" && mkdir -p "$T"
for m in "$F"/*/model.onnx; do
  basename "$(dirname "$m")"
done | sort >"$T/all.txt"
sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' "$F/REFUSED" | sort >"$T/refused.txt"
n_all=$(wc -l <"$T/all.txt")
n_refused=$(wc -l <"$T/refused.txt")
[ "$n_all" -gt 0 ] || fail "no case in $F"
[ -z "$(sort "$T/refused.txt" | uniq -d)" ] || fail "REFUSED names a case twice: $(uniq -d "$T/refused.txt")"
unknown=$(comm -13 "$T/all.txt" "$T/refused.txt")
[ -z "$unknown" ] || fail "REFUSED names cases that do not exist: $unknown"
comm -23 "$T/all.txt" "$T/refused.txt" >"$T/served.txt"
n_served=$(wc -l <"$T/served.txt")
echo "corpus: $n_all cases, $n_refused listed as refused, $n_served to pass"

"$MHA" backends >"$T/backends.txt"
backends_run=0
# every backend; under a sanitizer (MHA_TEST_SANITIZED=1) the reference and
# the fast one only, as model_corpus.sh does (avx2 and openmp run the same
# kernel templates, and every backend runs in the release pass)
backends="scalar avx2 avx512 openmp"
[ "${MHA_TEST_SANITIZED:-0}" = 1 ] && backends="scalar avx512"
for backend in $backends; do
  if ! grep -Eq "^$backend +[^ ]+ +[0-9]+ +usable" "$T/backends.txt"; then
    echo "skip: backend $backend is not usable on this machine"
    continue
  fi
  backends_run=$((backends_run + 1))
  echo "== mha check --backend $backend"
  set +e
  "$MHA" check --list --backend "$backend" "$F" >"$T/check.txt" 2>"$T/check.err"
  rc=$?
  set -e
  [ "$rc" -le 1 ] || fail "$backend: mha check exit $rc (crash?): $(cat "$T/check.err")"
  sed -n 's/^ok   //p' "$T/check.txt" | sort >"$T/passed.txt"
  sed -n 's/^FAIL \([^:]*\):.*/\1/p' "$T/check.txt" | sort >"$T/failed.txt"

  # listed cases that pass now: the list must shrink
  now_pass=$(comm -12 "$T/passed.txt" "$T/refused.txt")
  [ -z "$now_pass" ] ||
    fail "$backend: listed in REFUSED but passing now (remove from the list): $(echo $now_pass)"
  # cases not listed that do not pass
  while read -r name; do
    grep -qx "$name" "$T/passed.txt" && continue
    fail "$backend: $name is not in REFUSED and does not pass: $(grep "^FAIL $name:" "$T/check.txt" || echo 'not reported')"
  done <"$T/served.txt"
  # each listed case failed at load, with a message naming a node
  while read -r name; do
    line=$(grep "^FAIL $name: " "$T/check.txt") || fail "$backend: listed case $name not reported"
    echo "$line" | grep -q "^FAIL $name: [^ ]*/$name/model.onnx: " ||
      fail "$backend: $name fails, but not by a refusal at load: $line"
    echo "$line" | grep -Eq "[A-Za-z]+ node '[^']+'" ||
      fail "$backend: the refusal of $name names no node: $line"
  done <"$T/refused.txt"

  last=$(tail -n 1 "$T/check.txt")
  [ "$last" = "$n_served passed, $n_refused failed" ] ||
    fail "$backend: wanted '$n_served passed, $n_refused failed', got '$last'"
  want_rc=0
  [ "$n_refused" -eq 0 ] || want_rc=1
  [ "$rc" = "$want_rc" ] || fail "$backend: mha check exit $rc, wanted $want_rc"
  echo "ok: $backend: $last"
done
[ "$backends_run" -gt 0 ] || fail "no usable backend"

echo "== mha info on the refused cases: exit 1, one line naming a node"
while read -r name; do
  model="$F/$name/model.onnx"
  set +e
  "$MHA" info "$model" >"$T/info.out" 2>"$T/info.err"
  rc=$?
  set -e
  [ "$rc" = 1 ] || fail "$name: mha info exit $rc, wanted 1 ($(cat "$T/info.err"))"
  [ ! -s "$T/info.out" ] || fail "$name: mha info printed a description of a refused model"
  [ "$(wc -l <"$T/info.err")" -le 1 ] && [ -s "$T/info.err" ] ||
    fail "$name: wanted one line on stderr, got: $(cat "$T/info.err")"
  grep -Eq "$name/model.onnx: .*[A-Za-z]+ node '[^']+'" "$T/info.err" ||
    fail "$name: the message names no node: $(cat "$T/info.err")"
done <"$T/refused.txt"
echo "ok: $n_refused refusals"

echo "== mha info on the served cases: the layer's numbers"
# The numbers are the recogniser's, the same in every build; under a
# sanitizer (MHA_TEST_SANITIZED=1) every fourth case only (the check above
# loaded each there twice; these calls were 3.5 of the script's 8.5 s under
# ASan), the release run describes them all.
step=1
[ "${MHA_TEST_SANITIZED:-0}" = 1 ] && step=4
i=0
while read -r name; do
  i=$((i + 1))
  [ $(((i - 1) % step)) = 0 ] || continue
  facts=$(awk -v c="$name" '$1 == c { print $3, $4, $5, $6 }' "$F/cases.tsv")
  [ -n "$facts" ] || fail "$name: not in cases.tsv"
  "$MHA" info "$F/$name/model.onnx" >"$T/info.out" 2>"$T/info.err" ||
    fail "$name: mha info failed: $(cat "$T/info.err")"
  got=$(awk '/^d_model:/ { d = $2 } /^heads:/ { h = $2; kv = $4 } /^head size:/ { s = $3 }
             END { print d, h, kv, s }' "$T/info.out")
  [ "$got" = "$facts" ] ||
    fail "$name: mha info says d_model, heads, kv heads, head size = $got; the layer has $facts"
done <"$T/served.txt"
echo "ok: $(((n_served + step - 1) / step)) of $n_served layers described"

echo "families.sh: all passed"
