#!/bin/sh
# cli_round4.sh -- small defects of the `mha` command found by the fourth
# adversarial round, each as the rule for bad input has it: a non-zero
# exit, one stderr line naming the file or option and the problem, nothing
# on stdout and no output file.
# Env: MHA (the binary), MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
rm -rf "$T" && mkdir -p "$T"
# fail, expect, one_line
# shellcheck source=lib/refusal.sh
. "$(dirname "$0")/lib/refusal.sh"

echo "== mha gen --max-pos under the plan's probe lengths"
# 3 and 4 positions wrote a model whose plan tied the sequence to the
# batch: 'mha run' of 2 rows of 3 tokens said "axis 1 ('seq') is 3, but
# the model takes 2 there"; 2 positions did not load at all
for k in decoder encoder; do
  for p in 2 3 4; do
    one_line 2 "max-pos $p: a whole model needs at least 5 positions" \
      "$MHA" gen --model $k -d 16 -H 2 --max-pos $p -o "$T/p$p.onnx"
    [ ! -e "$T/p$p.onnx" ] || fail "gen --max-pos $p wrote a model"
  done
done
# 5 positions: any batch and length up to 5 run
"$MHA" gen --model decoder -d 16 -H 2 --max-pos 5 -o "$T/p5.onnx" --data "$T/x23.npy" \
  --batch 2 --seq 3 >/dev/null
"$MHA" gen --model decoder -d 16 -H 2 --max-pos 5 -o "$T/p5b.onnx" --data "$T/x35.npy" \
  --batch 3 --seq 5 >/dev/null
expect 0 "run 2x3 on 5 positions" "$MHA" run "$T/p5.onnx" "$T/x23.npy" -o "$T/y23.npy"
expect 0 "run 3x5 on 5 positions" "$MHA" run "$T/p5.onnx" "$T/x35.npy" -o "$T/y35.npy"
echo "ok: 5 positions run 2x3 and 3x5"

echo "== mha bench --backend naming no usable backend"
# was an ERROR row inside the table (and the JSON written), exit 1 only
# after timing the other backends
one_line 1 "backend nosuch: no such backend usable here; usable here: scalar" \
  "$MHA" bench "$T/p5.onnx" --shape 1,4 --backend nosuch,scalar --threads 1 --warmup 0 \
  --min-time 0.01 --json "$T/b.json"
[ ! -e "$T/b.json" ] || fail "bench --backend nosuch wrote its JSON"
one_line 1 "backend nosuch: no such backend" \
  "$MHA" bench "$T/p5.onnx" --shape 1,4 --backend nosuch --threads 1 -q

echo "== mha run: the summary of rows of 0 tokens"
# a layer's rows of no token ran to an empty output, but the summary said
# "2 rows (2 tokens)"
# shellcheck source=lib/npy_zeros.sh
. "$(dirname "$0")/lib/npy_zeros.sh"
"$MHA" gen -d 16 -H 2 -o "$T/layer.onnx" >/dev/null
npy_zeros "$T/q0.npy" '<f4' '(2, 0, 16)' 0
expect 0 "a layer on 2 rows of 0 tokens" "$MHA" run "$T/layer.onnx" "$T/q0.npy" -o "$T/y0.npy"
grep -q "2 rows (0 tokens)" "$T/err" || fail "rows of 0 tokens: $(cat "$T/err")"
echo "ok: $(cut -c1-40 "$T/err")"

echo "== mha serve: a port it cannot bind"
if "$MHA" serve --help >/dev/null 2>&1 && command -v python3 >/dev/null; then
  # a listener holding a port the system picked, for as long as it lives
  python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
open(sys.argv[1], "w").write(str(s.getsockname()[1])); time.sleep(60)' "$T/held" &
  HOLDER=$!
  i=0
  while [ ! -s "$T/held" ]; do
    i=$((i + 1)); [ $i -le 200 ] || { kill $HOLDER; fail "no listener after 20 s"; }
    sleep 0.1
  done
  PORT=$(cat "$T/held")
  # was "cannot listen on 127.0.0.1 port N": named now as a client dials it
  expect 1 "serve on a port in use" timeout 60 "$MHA" serve "$T/p5.onnx" --port "$PORT"
  kill $HOLDER
  grep -q "cannot listen on 127.0.0.1:$PORT: Address already in use" "$T/err" ||
    fail "serve on a port in use: $(cat "$T/err")"
  echo "ok: $(cat "$T/err")"
  # a port under 1024 is the system's to allow: root binds it, others are
  # refused in one line (here as nobody, when this test runs as root)
  NOBODY="setpriv --reuid=65534 --regid=65534 --clear-groups"
  chmod 755 "$T" && chmod 644 "$T/p5.onnx"
  if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null &&
    $NOBODY "$MHA" info "$T/p5.onnx" >/dev/null 2>&1; then
    expect 1 "serve on port 1 as nobody" timeout 60 $NOBODY "$MHA" serve "$T/p5.onnx" --port 1
    grep -q "cannot listen on 127.0.0.1:1: Permission denied" "$T/err" ||
      fail "serve on port 1 as nobody: $(cat "$T/err")"
    echo "ok: $(cat "$T/err")"
  fi
fi

echo "cli_round4.sh: ok"
