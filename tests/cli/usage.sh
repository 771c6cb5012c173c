#!/bin/sh
# usage.sh -- the `mha` command line: every subcommand has --help (exit 0,
# text on stdout), and every malformed command line exits 2 with exactly
# one line on stderr and nothing on stdout.
# Env: MHA (the binary), MHA_TEST_DATA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_DATA:?}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
MODEL="$MHA_TEST_DATA/conformance/mha_self_d32_h2_b2_s8/model.onnx"
INPUT="$MHA_TEST_DATA/conformance/mha_self_d32_h2_b2_s8/test_data_set_0/input_0.pb"

fail() { echo "FAIL: $*" >&2; exit 1; }

# expect STATUS WHAT CMD...: runs CMD, checks its exit status; a failure must
# say one line on stderr and nothing on stdout.
expect() {
  want=$1 what=$2
  shift 2
  set +e
  "$@" >"$T/out" 2>"$T/err"
  got=$?
  set -e
  [ "$got" = "$want" ] || fail "$what: exit $got, wanted $want (stderr: $(cat "$T/err"))"
  if [ "$want" != 0 ]; then
    lines=$(wc -l <"$T/err")
    [ "$lines" -eq 1 ] || fail "$what: $lines lines on stderr, wanted 1: $(cat "$T/err")"
    [ ! -s "$T/out" ] || fail "$what: wrote to stdout: $(cat "$T/out")"
  fi
  echo "ok: $what (exit $got)"
}

echo "== --help of every subcommand"
for cmd in run check info gen backends peak; do
  expect 0 "mha $cmd --help" "$MHA" "$cmd" --help
  grep -q "^Usage: mha $cmd" "$T/out" || fail "mha $cmd --help: no usage line"
  expect 0 "mha help $cmd" "$MHA" help "$cmd"
done
expect 0 "mha --help" "$MHA" --help
grep -q "run" "$T/out" || fail "mha --help does not list run"
expect 0 "mha --version" "$MHA" --version

echo "== usage errors exit 2 with one line"
expect 2 "no command" "$MHA"
expect 2 "unknown command" "$MHA" frobnicate
grep -q "known commands: .*run.*check" "$T/err" || fail "unknown command does not list the known ones"
expect 2 "help for an unknown command" "$MHA" help frobnicate
expect 2 "run without a model" "$MHA" run
expect 2 "run with an unknown option" "$MHA" run "$MODEL" --frobnicate
expect 2 "run -o without a file" "$MHA" run "$MODEL" "$INPUT" -o
expect 2 "run with -o and --out-dir" "$MHA" run "$MODEL" "$INPUT" -o "$T/y.npy" --out-dir "$T/d"
expect 2 "run with an output of unknown type" "$MHA" run "$MODEL" "$INPUT" -o "$T/y.txt"
expect 2 "run with an input of unknown type" "$MHA" run "$MODEL" "$T/x.txt"
expect 2 "run --threads not a number" "$MHA" run "$MODEL" "$INPUT" --threads many
expect 2 "run --threads negative" "$MHA" run "$MODEL" "$INPUT" --threads -1
expect 2 "run --backend without a name" "$MHA" run "$MODEL" "$INPUT" --backend
expect 2 "run with too many inputs" "$MHA" run "$MODEL" "$INPUT" "$INPUT"
expect 2 "run with a missing input" "$MHA" run "$MODEL"
expect 2 "run with too many outputs" "$MHA" run "$MODEL" "$INPUT" -o "$T/a.npy" "$T/b.npy"
expect 2 "run binding one input twice" "$MHA" run "$MODEL" "query=$INPUT" "query=$INPUT"
expect 2 "check without folders" "$MHA" check
expect 2 "check --rtol not a number" "$MHA" check --rtol x "$T"
expect 2 "info without a model" "$MHA" info
expect 2 "info with two models" "$MHA" info "$MODEL" "$MODEL"
expect 2 "backends with an argument" "$MHA" backends extra
expect 2 "gen without -d" "$MHA" gen -H 2 -o "$T/m.onnx"
expect 2 "gen without -o" "$MHA" gen -d 16 -H 2
expect 2 "gen with D not a multiple of H" "$MHA" gen -d 10 -H 3 -o "$T/m.onnx"
expect 2 "gen with kv heads not dividing H" "$MHA" gen -d 16 -H 4 --kv-heads 3 -o "$T/m.onnx"
expect 2 "gen --data without --batch" "$MHA" gen -d 16 -H 2 -o "$T/m.onnx" --data "$T/x.npy" --seq 4
expect 2 "gen --batch without --data" "$MHA" gen -d 16 -H 2 -o "$T/m.onnx" --batch 2
expect 2 "gen --data neither .npy nor .pb" "$MHA" gen -d 16 -H 2 -o "$T/m.onnx" --data "$T/x.txt" --batch 1 --seq 1
expect 2 "gen -d 0" "$MHA" gen -d 0 -H 1 -o "$T/m.onnx"
expect 2 "peak --reps 0" "$MHA" peak --reps 0
expect 2 "peak --threads x" "$MHA" peak --threads 1,x
expect 2 "peak --seconds missing" "$MHA" peak --seconds
expect 2 "peak unknown option" "$MHA" peak --bogus 1
expect 1 "peak --json into a missing folder" "$MHA" peak --threads 1 --reps 1 --seconds 0.02 \
  --json "$T/no/such/dir/p.json"
# a short measurement: one figure per usable ISA, JSON with the same numbers
expect 0 "peak, short" "$MHA" peak --threads 1 --reps 1 --seconds 0.02 --json "$T/peak.json"
grep -Eq '^(avx512|avx2) +1 +[0-9]+\.[0-9]' "$T/out" || fail "peak: no figure printed: $(cat "$T/out")"
grep -q '"1": [0-9]' "$T/peak.json" || fail "peak: JSON without figures: $(cat "$T/peak.json")"
ls "$T"/peak.json.tmp.* >/dev/null 2>&1 && fail "peak: temporary file left behind"
# --version answers in every command, like `mha --version`
for cmd in run check info bench merge backends peak gen; do
  expect 0 "$cmd --version" "$MHA" $cmd --version
  grep -q "^mha [0-9]" "$T/out" || fail "$cmd --version printed: $(cat "$T/out")"
done
# commands that run no model neither take nor list --backend / --threads
# (peak takes a backend and a precision only for its --gemm timing)
expect 2 "gen --backend" "$MHA" gen --backend scalar -d 16 -H 2 -o "$T/m.onnx"
expect 2 "merge --threads" "$MHA" merge --threads 2 "$T/o.npy" "$T/s.npy"
expect 2 "peak --backend without --gemm" "$MHA" peak --backend scalar --reps 1
expect 2 "peak --precision without --gemm" "$MHA" peak --precision bfloat16 --reps 1
for cmd in gen merge peak; do
  expect 0 "$cmd --help" "$MHA" $cmd --help
  if [ "$cmd" = peak ]; then
    grep -q -- "--backend NAME  *the backend of --gemm" "$T/out" || fail "peak --help: no --backend of --gemm"
  else
    ! grep -q -- "--backend" "$T/out" || fail "$cmd --help lists --backend"
  fi
  [ "$(grep -c "^Exit status" "$T/out")" -eq 1 ] || fail "$cmd --help: not one exit-status line"
done
[ "$(grep -c -- "^  --threads" "$T/out")" -eq 1 ] || fail "peak --help lists --threads twice"
# `mha backends` names each backend once (the built-in scalar is a footnote
# when a scalar plugin file is loaded)
expect 0 "backends" "$MHA" backends
dups=$(awk 'NR > 2 && $4 ~ /usable/ { print $1 }' "$T/out" | sort | uniq -d)
[ -z "$dups" ] || fail "backends lists $dups twice: $(cat "$T/out")"
[ ! -e "$T/m.onnx" ] || fail "a refused gen wrote a model"
[ ! -e "$T/y.npy" ] && [ ! -e "$T/a.npy" ] || fail "a refused run wrote an output"

echo "usage.sh: all passed"
