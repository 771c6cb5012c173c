#!/bin/sh
# cli_round10.sh -- defects found by the tenth adversarial round, each as
# the rule for bad input has it: a non-zero exit, one stderr line naming
# the file or option and the problem, nothing on stdout, no output file,
# nothing replaced -- or, for the .npy descrs numpy itself reads, the run
# numpy's reading gives. (The library's own cases are unit tests:
# test_model's output of a rank out of range, test_threads_queue's NaN
# deadline and caller_runs beside hold_when_idle.)
# Env: MHA (the binary), MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
# fail, expect, one_line
# shellcheck source=lib/refusal.sh
. "$(dirname "$0")/lib/refusal.sh"
# one plugin opened (and probed in a child) per command, not every one
MHA_BACKEND=scalar
export MHA_BACKEND

"$MHA" gen -d 16 -H 2 -o "$T/m.onnx" --data "$T/x.npy" --batch 2 --seq 3 >/dev/null
"$MHA" gen --model encoder -L 1 -d 8 -H 2 --vocab 16 --max-pos 8 -o "$T/enc.onnx" \
  --data "$T/ids.npy" --mask "$T/mask.npy" --batch 2 --seq 3 >/dev/null

# with_descr DESCR SHAPE SRC OUT: SRC (an .npy of version 1.0 whose header
# is 118 bytes, as mha gen writes) with its descr replaced
with_descr() {
  text="{'descr': '$1', 'fortran_order': False, 'shape': $2, }"
  { printf '\223NUMPY\001\000v\000%s' "$text"
    head -c $((118 - ${#text} - 1)) /dev/zero | tr '\000' ' '
    printf '\n'
    tail -c +129 "$3"; } >"$4"
}

echo "== .npy descrs numpy reads: '|f4', 'f4', '<f04', '=f4', 'float32', '<f', 'f'; ids '|i8', 'q'"
# refused before, "unsupported dtype '|f4' (float32); .npy files of
# float32, ... are read" -- a float32 the message itself says is read.
# numpy (1.24) reads each as float32 / int64 and writes '<f4' / '<i8'
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/y.npy" -q 2>"$T/err" || fail "run: $(cat "$T/err")"
n=0
for d in '|f4' f4 '<f04' '=f4' float32 '<f' f; do
  n=$((n + 1))
  with_descr "$d" "(2, 3, 16)" "$T/x.npy" "$T/x$n.npy"
  "$MHA" run "$T/m.onnx" "$T/x$n.npy" -o "$T/y$n.npy" -q 2>"$T/err" || fail "descr '$d': $(cat "$T/err")"
  cmp -s "$T/y.npy" "$T/y$n.npy" || fail "descr '$d': other outputs than '<f4'"
done
"$MHA" run "$T/enc.onnx" "$T/ids.npy" "$T/mask.npy" -o "$T/h.npy" -q 2>"$T/err" || fail "run: $(cat "$T/err")"
for d in '|i8' q; do
  n=$((n + 1))
  with_descr "$d" "(2, 3)" "$T/ids.npy" "$T/ids$n.npy"
  "$MHA" run "$T/enc.onnx" "$T/ids$n.npy" "$T/mask.npy" -o "$T/h$n.npy" -q 2>"$T/err" || fail "descr '$d': $(cat "$T/err")"
  cmp -s "$T/h.npy" "$T/h$n.npy" || fail "descr '$d': other outputs than '<i8'"
done
with_descr '>f4' "(2, 3, 16)" "$T/x.npy" "$T/big.npy"
one_line 1 "^mha: $T/big.npy: unsupported dtype '>f4' (big-endian float32); " \
  "$MHA" run "$T/m.onnx" "$T/big.npy" -o "$T/big_out.npy"
[ ! -e "$T/big_out.npy" ] || fail "a refused run wrote its output"
echo "ok: the same bytes as '<f4' / '<i8'; big-endian still refused"

echo "== .npy shapes numpy does not read as written: (02, 3, 16), (0x2, 3, 16)"
# "02" was read as 2 where numpy (Python 3) refuses the header and Python
# 2's numpy read "010" as 8; "0x2" was "shape tuple is not closed"
with_descr '<f4' "(02, 3, 16)" "$T/x.npy" "$T/lead0.npy"
one_line 1 "^mha: $T/lead0.npy: malformed .npy header: a dimension of the shape has a leading zero$" \
  "$MHA" run "$T/m.onnx" "$T/lead0.npy" -o "$T/lead0_out.npy"
with_descr '<f4' "(0x2, 3, 16)" "$T/x.npy" "$T/hex.npy"
one_line 1 "^mha: $T/hex.npy: malformed .npy header: shape holds something other than decimal integers$" \
  "$MHA" run "$T/m.onnx" "$T/hex.npy" -o "$T/hex_out.npy"
[ ! -e "$T/lead0_out.npy" ] && [ ! -e "$T/hex_out.npy" ] || fail "a refused run wrote its output"

echo "== a .pb input whose data is external"
# "the model was loaded from memory without a folder": no model involved
printf '\010\002\010\003\010\020\020\001\102\005query\152\021\012\010location\022\005x.npy\160\001' \
  >"$T/ext.pb"
one_line 1 "^mha: $T/ext.pb: tensor 'query': external data 'x.npy' is not read: a tensor file holds its data itself (save it without external data)$" \
  "$MHA" run "$T/m.onnx" "$T/ext.pb" -o "$T/ext_out.npy"

echo "== mha bench --plugin-path naming a file that is no plugin"
# exit 0: the file left out in silence and the other plugins timed (a
# missing path was refused since round 8)
: >"$T/empty.so"
one_line 1 "^mha bench: $T/m.onnx: --plugin-path $T/empty.so: dlopen failed: " \
  "$MHA" bench "$T/m.onnx" --shape 1,2 --plugin-path "$T/empty.so" --warmup 0 --threads 1 -q

echo "== mha serve: --caller-runs beside --http-threads or --hold-when-idle"
# each was dropped in silence (the server ran without it)
if "$MHA" serve --help >/dev/null 2>&1; then
  one_line 2 "^mha serve: --http-threads does not go with --caller-runs (each connection then has a thread of its own) (see 'mha serve --help')$" \
    timeout 20 "$MHA" serve "$T/m.onnx" --port 0 --caller-runs --http-threads 2
  one_line 2 "^mha serve: --caller-runs does not go with --hold-when-idle " \
    timeout 20 "$MHA" serve "$T/m.onnx" --port 0 --hold-when-idle --caller-runs
else
  echo "skip: mha built without serve"
fi

echo "== mha serve: Content-Encoding gzip; two Content-Types; JSON messages"
# the body was read as if plain (200 for a plain body labelled gzip), and
# of two Content-Types the first taken (a proxy may take the other)
if "$MHA" serve --help >/dev/null 2>&1 && command -v curl >/dev/null; then
  timeout -k 30 60 "$MHA" serve "$T/m.onnx" --threads 1 --port 0 --port-file "$T/port" \
    >"$T/serve.out" 2>"$T/serve.err" &
  SRV=$!
  i=0
  while [ ! -s "$T/port" ]; do
    i=$((i + 1)); [ $i -le 200 ] || { kill $SRV; fail "no port file: $(cat "$T/serve.err")"; }
    sleep 0.1
  done
  U="http://127.0.0.1:$(cat "$T/port")/run"
  # post WANT NAME CURL-ARGS...: the status line and "Connection: close"
  post() {
    want=$1 name=$2
    shift 2
    curl -s -m 20 -i "$@" "$U" >"$T/answer" || { kill $SRV; fail "$name: no answer"; }
    head -n 1 "$T/answer" | grep -q "^HTTP/1.1 $want" || { kill $SRV; fail "$name: $(head -c 300 "$T/answer")"; }
    echo "ok: $name: $(tr -d '\r' <"$T/answer" | tail -n 1)"
  }
  J='-H Content-Type:application/json --data-binary [[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]]'
  # shellcheck disable=SC2086 # J is a list of arguments
  with_descr '<f4' "(1, 3, 16)" "$T/x.npy" "$T/one.npy" # the second row's data after it
  head -c $((128 + 3 * 16 * 4)) "$T/one.npy" >"$T/row.npy"
  post 415 "Content-Encoding gzip (.npy)" -H "Content-Type: application/x-npy" \
    -H "Content-Encoding: gzip" --data-binary "@$T/row.npy"
  grep -qi "^Connection: close" "$T/answer" || { kill $SRV; fail "gzip: the connection is kept"; }
  # shellcheck disable=SC2086
  post 415 "Content-Encoding gzip (JSON)" $J -H "Content-Encoding: gzip"
  # shellcheck disable=SC2086
  post 200 "Content-Encoding identity" $J -H "Content-Encoding: identity"
  post 400 "two Content-Types" -H "Content-Type: application/x-npy" \
    -H "Content-Type: application/json" --data-binary "@$T/row.npy"
  grep -qi "^Connection: close" "$T/answer" || { kill $SRV; fail "two types: the connection is kept"; }
  grep -q "Content-Type given twice with different types" "$T/answer" || { kill $SRV; fail "two types: $(cat "$T/answer")"; }
  # a ',' before ']' was "not a finite number"; a number of 70 characters
  # (JSON allows any length) "',' or ']' expected" in its middle
  post 400 "a trailing comma" -H "Content-Type: application/json" \
    --data-binary "[[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,]]"
  grep -q "byte 34: a number expected" "$T/answer" || { kill $SRV; fail "trailing comma: $(cat "$T/answer")"; }
  long="0.$(printf '%068d' 1)"
  post 400 "a number of 70 characters" -H "Content-Type: application/json" \
    --data-binary "[[$long,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]]"
  grep -q "byte 2: a number of more than 63 characters" "$T/answer" || { kill $SRV; fail "long number: $(cat "$T/answer")"; }
  # shellcheck disable=SC2086
  post 200 "then a good request" $J
  kill $SRV
  wait $SRV || true
else
  echo "skip: mha built without serve, or no curl"
fi

echo "== serve-load: --json over a model, data or a body; a body of /dev/zero; an option twice"
# the report replaced the model or dataset after the run (exit 1: no
# server), /dev/zero was read into memory without end, the last of two
# --rate values was taken; a --json folder missing was found after the run
LOAD="$(dirname "$MHA")/serve-load"
if [ -x "$LOAD" ]; then
  cp "$T/x.npy" "$T/keep.npy"
  cp "$T/m.onnx" "$T/keep.onnx"
  L="--url http://127.0.0.1:1/run --rate 1 --duration 0.1"
  # shellcheck disable=SC2086 # L is a list of options
  one_line 2 "^serve-load: --json writes a report, not '$T/x.npy' (.npy is a model or data)$" \
    "$LOAD" $L --body "$T/x.npy" --json "$T/x.npy"
  # shellcheck disable=SC2086
  one_line 2 "^serve-load: --json writes a report, not '$T/m.onnx' (.onnx is a model or data)$" \
    "$LOAD" $L --body "$T/x.npy" --json "$T/m.onnx"
  cp "$T/x.npy" "$T/body.bin"
  # shellcheck disable=SC2086
  one_line 2 "^serve-load: --json '$T/body.bin' is the body '$T/body.bin'$" \
    "$LOAD" $L --body "$T/body.bin" --json "$T/body.bin"
  cmp -s "$T/x.npy" "$T/keep.npy" && cmp -s "$T/m.onnx" "$T/keep.onnx" && cmp -s "$T/x.npy" "$T/body.bin" ||
    fail "serve-load replaced a model, a dataset or a body"
  # shellcheck disable=SC2086
  one_line 2 "^serve-load: --json $T/no/r.json: the folder '$T/no' does not exist$" \
    "$LOAD" $L --body "$T/x.npy" --json "$T/no/r.json"
  # shellcheck disable=SC2086
  one_line 1 "^serve-load: /dev/zero: not a regular file$" timeout 20 "$LOAD" $L --body /dev/zero
  # shellcheck disable=SC2086
  one_line 2 "^serve-load: --rate is given twice, as '1' and '5': give it once$" \
    "$LOAD" $L --body "$T/x.npy" --rate 5
  # shellcheck disable=SC2086
  one_line 2 "^serve-load: --connections wants a number >= 1, got 0$" \
    "$LOAD" $L --body "$T/x.npy" --connections 0
  # the report itself: written whole (exit 1: nothing answered at port 1)
  # shellcheck disable=SC2086
  "$LOAD" $L --body "$T/x.npy" --json "$T/r.json" >/dev/null 2>&1 && fail "serve-load: exit 0 with no server"
  grep -q '^{"offered_rps": 1.000, "duration_s": 0.100,' "$T/r.json" || fail "no report: $(cat "$T/r.json")"
  [ -z "$(find "$T" -name '.serve-load.json.*')" ] || fail "a temporary report was left"
  echo "ok: refused before any request, nothing replaced"
else
  echo "skip: serve-load not built (no libcurl)"
fi

echo "== OMP_STACKSIZE the OpenMP runtime cannot start a thread with"
# libgomp ended the process at the openmp backend's first run: exit 1
# with "libgomp: Thread creation failed: ..." and no file named -- from
# inside the library, which promises never to exit. 10^9 G is past any
# address space (2^57 bytes with 5-level paging)
if "$MHA" backends --backend auto 2>/dev/null | grep -q "^openmp .* usable "; then
  OMP_STACKSIZE=1000000000G one_line 1 "^mha: --backend openmp: backend 'openmp' cannot run here (.*OMP_STACKSIZE=1000000000G: the OpenMP runtime cannot start a thread with that stack (" \
    "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/omp.npy" --backend openmp
  [ ! -e "$T/omp.npy" ] || fail "OMP_STACKSIZE: an output was written"
  GOMP_STACKSIZE=1000000000G expect 0 "GOMP_STACKSIZE with auto" \
    "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/auto.npy" -q --backend auto
  OMP_STACKSIZE=4M expect 0 "OMP_STACKSIZE=4M" "$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/omp4m.npy" --backend openmp -q
  echo "ok: the backend refused by its probe, auto unaffected"
else
  echo "skip: no usable openmp backend"
fi

echo "cli_round10: all passed"
