#!/bin/sh
# serve.sh -- `mha serve` on loopback (127.0.0.1 only, a port the system
# picks), driven by curl: /health, POST /run answered with what `mha run`
# gives, batching of concurrent requests, 503 when the queue is full, clear
# 4xx for bad bodies, JSON bodies, /metrics, and SIGTERM draining an
# accepted request.
# Every step is bounded in time. Exit 77 (skipped) when `mha serve` was
# built without libmicrohttpd or curl is missing.
# Env: MHA, MHA_TEST_TMP, MHA_SOURCE_DIR; serve-load is looked for beside MHA.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_TMP:?}" "${MHA_SOURCE_DIR:?}"
T="$MHA_TEST_TMP"
# fail, serve_start, SRV, U, C
. "$(dirname "$0")/lib/serve_start.sh"
rm -rf "$T" && mkdir -p "$T"

"$MHA" gen -d 64 -H 4 --causal -o "$T/m.onnx" --data "$T/x.npy" --batch 1 --seq 8 >/dev/null
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/ref.npy" >/dev/null 2>&1

# libmicrohttpd (and GnuTLS through it) is opened by `mha serve` only, not
# by every `mha` call: the loader's list of the files it maps (glibc's
# LD_DEBUG=files) names it for serve (opened before the model loads, so a
# missing model is enough) and for no other subcommand
if LD_DEBUG=files "$MHA" --version 2>&1 >/dev/null | grep -q "file=libc\.so"; then
  for args in --version "info $T/m.onnx" "run $T/m.onnx $T/x.npy -o $T/ld.npy"; do
    # shellcheck disable=SC2086 # the arguments split on purpose
    LD_DEBUG=files "$MHA" $args >/dev/null 2>"$T/ld.txt" || fail "mha $args: $(cat "$T/ld.txt")"
    ! grep -q "file=libmicrohttpd" "$T/ld.txt" || fail "mha $args loaded libmicrohttpd"
  done
  LD_DEBUG=files "$MHA" serve "$T/no-such.onnx" --port 0 >/dev/null 2>"$T/ld.txt" &&
    fail "serve of a missing model: exit 0"
  grep -q "file=libmicrohttpd.*dynamically loaded by" "$T/ld.txt" ||
    fail "mha serve did not open libmicrohttpd: $(grep 'file=' "$T/ld.txt" | head -n 20)"
  echo "ok: libmicrohttpd is opened by mha serve only"
else
  echo "skip: the loader has no LD_DEBUG=files (not glibc)"
fi

# serve-cpu (the queue's CPU time per request, batching off and on): two
# requests alike share a run; 8 and 2 tokens (10 of 16 rows real) run apart
CPU="$(dirname "$MHA")/serve-cpu"
"$CPU" "$T/m.onnx" --lengths 8,8 --reps 2 --rounds 1 >"$T/cpu.txt" || fail "serve-cpu: $(cat "$T/cpu.txt")"
grep -q "alone *: [0-9.]* CPU ms per request (1.00 requests a run)" "$T/cpu.txt" &&
  grep -q "one-run *: [0-9.]* CPU ms per request (2.00 requests a run)" "$T/cpu.txt" &&
  grep -q "by-length: [0-9.]* CPU ms per request (2.00 requests a run)" "$T/cpu.txt" &&
  grep -q "mha_run  : [0-9.]* CPU ms per request (2.00 requests a run), [0-9.]* context switches, [0-9.]* page faults" "$T/cpu.txt" ||
  fail "serve-cpu 8,8: $(cat "$T/cpu.txt")"
"$CPU" "$T/m.onnx" --lengths 8,2 --reps 2 --rounds 1 >"$T/cpu.txt" || fail "serve-cpu: $(cat "$T/cpu.txt")"
grep -q "one-run *: [0-9.]* CPU ms per request (2.00 requests a run)" "$T/cpu.txt" &&
  grep -q "by-length: [0-9.]* CPU ms per request (1.00 requests a run)" "$T/cpu.txt" ||
  fail "serve-cpu 8,2: $(cat "$T/cpu.txt")"
set +e
"$CPU" "$T/m.onnx" --lengths 8,x >/dev/null 2>&1
rc=$?
set -e
[ $rc = 2 ] || fail "serve-cpu with bad lengths: exit $rc, wanted 2"
# --ceiling: batches of 1..3 on 1 and 2 threads, and their times for
# tools/queue_bound.py (b x CPU ms a request, / 2 on two threads)
"$CPU" "$T/m.onnx" --lengths 8 --ceiling 3 --reps 3 --rounds 1 --threads 2 --precision float32 \
  >"$T/cpu.txt" || fail "serve-cpu --ceiling: $(cat "$T/cpu.txt")"
awk '$2 == "|" && $1 ~ /^[0-9]+$/ { n++; c1[$1] = $3; c2[$1] = $6 }
  /^costs 1 thread / { split($NF, a, ","); k1 = length(a); x1 = a[3] }
  /^costs 2 threads / { split($NF, b, ","); k2 = length(b); x2 = b[3] }
  END { exit !(n == 3 && k1 == 3 && k2 == 3 && x1 + 0 > 0 &&
    (x1 - 3 * c1[3]) ^ 2 < 1e-6 && (x2 - 1.5 * c2[3]) ^ 2 < 1e-6) }' "$T/cpu.txt" ||
  fail "serve-cpu --ceiling 3: $(cat "$T/cpu.txt")"
echo "ok: serve-cpu"

# A long batching delay and room for two waiting requests: concurrent
# requests meet in one batch (one dispatcher: two would share them out,
# one each), a third finds the queue full.
serve_start "$T/m.onnx" --capacity 2 --max-batch 16 --max-delay-ms 1500 --hold-when-idle --dispatchers 1 --max-body-bytes 100000 \
  --max-batch-ms 60000 --run-threads 1
# the address line follows the port file: give it up to 10 s under load
i=0
while ! grep -q "http://127.0.0.1:$PORT/" "$T/out" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
grep -q "http://127.0.0.1:$PORT/" "$T/out" || fail "not on 127.0.0.1: $(cat "$T/out")"
grep -q "each batch on 1 thread)" "$T/out" || fail "--run-threads 1 not in effect: $(cat "$T/out")"

[ "$($C "$U/health")" = ok ] || fail "/health"

post() { # post BODYFILE OUTFILE [CONTENT-TYPE] -> prints the status code
  $C -o "$2" -w '%{http_code}' -H "Content-Type: ${3:-application/x-npy}" \
    --data-binary @"$1" "$U/run"
}
code=$(post "$T/x.npy" "$T/y.npy")
[ "$code" = 200 ] || fail "POST /run: $code $(cat "$T/y.npy")"
cmp -s "$T/y.npy" "$T/ref.npy" || fail "the answer differs from mha run's output"
echo "ok: POST /run equals mha run"

# three at once: two wait together for company, the third is refused
for k in 1 2 3; do (post "$T/x.npy" "$T/c$k.npy" >"$T/code$k") & done
wait_codes() {
  i=0
  while [ "$(cat "$T"/code1 "$T"/code2 "$T"/code3 2>/dev/null | wc -c)" -lt 9 ]; do
    i=$((i + 1)); [ $i -le 300 ] || fail "concurrent requests unanswered after 30 s"
    sleep 0.1
  done
}
wait_codes
codes=$(cat "$T/code1" "$T/code2" "$T/code3" | fold -w3 | sort | tr '\n' ' ')
[ "$codes" = "200 200 503 " ] || fail "three at once with capacity 2: $codes"
for k in 1 2 3; do
  [ "$(cat "$T/code$k")" = 200 ] || continue
  cmp -s "$T/c$k.npy" "$T/ref.npy" || fail "a batched answer differs from mha run's output"
done
echo "ok: concurrent requests batched, the excess refused with 503"

# clear 4xx answers
printf 'not npy' >"$T/bad"
[ "$(post "$T/bad" "$T/r")" = 400 ] || fail "a bad body: wanted 400"
grep -q "not a .npy" "$T/r" || fail "400 without the reason: $(cat "$T/r")"
[ "$(post "$T/x.npy" "$T/r" text/plain)" = 415 ] || fail "a text body: wanted 415"
head -c 200000 /dev/zero >"$T/big"
# refused from its Content-Length, before the body is sent (the client
# asks first with "Expect: 100-continue" and waits up to 20 s for leave)
sent=$($C -o "$T/r" -w '%{http_code} %{size_upload}' -H "Content-Type: application/x-npy" \
  -H "Expect: 100-continue" --expect100-timeout 20 --data-binary @"$T/big" "$U/run")
[ "$sent" = "413 0" ] || fail "a body over the limit: wanted 413 before the upload, got $sent"
# a chunked body has no length: read to its end, then refused
code=$($C -o "$T/r" -w '%{http_code}' -H "Content-Type: application/x-npy" \
  -H "Transfer-Encoding: chunked" --data-binary @"$T/big" "$U/run")
[ "$code" = 413 ] || fail "a chunked body over the limit: wanted 413, got $code"
"$MHA" gen -d 32 -H 4 -o "$T/other.onnx" --data "$T/x32.npy" --batch 1 --seq 3 >/dev/null
[ "$(post "$T/x32.npy" "$T/r")" = 400 ] || fail "a sequence of the wrong width: wanted 400"
[ "$($C -o /dev/null -w '%{http_code}' "$U/run")" = 405 ] || fail "GET /run: wanted 405"
[ "$($C -o /dev/null -w '%{http_code}' "$U/nowhere")" = 404 ] || fail "unknown path: wanted 404"
echo "ok: 400, 413, 415, 405, 404"

$C "$U/metrics" >"$T/metrics"
for want in 'mha_http_requests_total{code="200"} 3' 'mha_http_requests_total{code="503"} 1' \
  'mha_request_batch_size_bucket{le="1"} 1' 'mha_request_batch_size_bucket{le="2"} 3' \
  'mha_queue_depth 0' 'mha_request_duration_seconds_count 3' \
  'mha_refusal_duration_seconds_count 1'; do
  grep -qxF "$want" "$T/metrics" || fail "metrics: no line '$want'"
done
echo "ok: /metrics"

# float64 rows, as mha run takes them: converted to float32, the same answer
python3 - "$T/x.npy" "$T/x64.npy" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
hl = struct.unpack("<H", b[8:10])[0]
head = b[10:10 + hl].decode().replace("<f4", "<f8")
v = struct.unpack("<%df" % ((len(b) - 10 - hl) // 4), b[10 + hl:])
with open(sys.argv[2], "wb") as f:
    f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head.encode())
    f.write(struct.pack("<%dd" % len(v), *v))
PY
code=$(post "$T/x64.npy" "$T/y64.npy")
[ "$code" = 200 ] || fail "float64 rows: $code $(cat "$T/y64.npy")"
cmp -s "$T/y64.npy" "$T/ref.npy" || fail "float64 rows: the answer differs from mha run's output"
echo "ok: float64 rows converted"

# JSON in and out (small requests): the same numbers as .npy, bitwise
python3 - "$T/x.npy" >"$T/x.json" <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
hl = struct.unpack("<H", b[8:10])[0]
v = struct.unpack("<512f", b[10 + hl:])
print("[" + ",".join("[" + ",".join(repr(v[i * 64 + j]) for j in range(64)) + "]"
                     for i in range(8)) + "]")
PY
code=$(post "$T/x.json" "$T/y.json" application/json)
[ "$code" = 200 ] || fail "JSON POST /run: $code $(cat "$T/y.json")"
python3 - "$T/y.json" "$T/ref.npy" <<'PY' || fail "the JSON answer differs from mha run's output"
import json, struct, sys
y = json.load(open(sys.argv[1]))
b = open(sys.argv[2], "rb").read()
hl = struct.unpack("<H", b[8:10])[0]
ref = struct.unpack("<512f", b[10 + hl:])
got = [struct.unpack("<f", struct.pack("<f", x))[0] for row in y for x in row]
sys.exit(0 if len(y) == 8 and got == list(ref) else 1)
PY
printf '[[1,2],[3]]' >"$T/ragged.json"
[ "$(post "$T/ragged.json" "$T/r" application/json)" = 400 ] || fail "ragged JSON: wanted 400"
grep -q "rows of different lengths" "$T/r" || fail "ragged JSON without the reason: $(cat "$T/r")"
echo "ok: JSON bodies"

# the request id comes back with the answer (a client matches answers to
# requests by it), on a refusal too
$C -D "$T/h" -o /dev/null -H "X-Request-Id: req-42" -H "Content-Type: application/x-npy" \
  --data-binary @"$T/x.npy" "$U/run"
tr -d '\r' <"$T/h" | grep -qix "X-Request-Id: req-42" || fail "no X-Request-Id back: $(cat "$T/h")"
$C -D "$T/h" -o /dev/null -H "X-Request-Id: 7" -H "Content-Type: text/plain" --data x "$U/run"
tr -d '\r' <"$T/h" | grep -qix "X-Request-Id: 7" || fail "no X-Request-Id on a 415: $(cat "$T/h")"
echo "ok: X-Request-Id echoed"

# the open-loop load generator, briefly: every request id answered exactly
# once (most are refused here: room for 2 and a 1.5 s batching delay)
LOADGEN="$(dirname "$MHA")/serve-load"
if [ -x "$LOADGEN" ]; then
  "$LOADGEN" --url "$U/run" --body "$T/x.npy" --rate 40 --duration 1 --connections 8 \
    --json "$T/load.json" >"$T/load.txt" || fail "serve-load: $(cat "$T/load.txt")"
  grep -q "unanswered 0, twice 0, wrong id 0, differing answers 0" "$T/load.txt" ||
    fail "load: $(cat "$T/load.txt")"
  grep -q "503: " "$T/load.txt" || fail "load: no 503 under overload: $(cat "$T/load.txt")"
  grep -q "; 503 p50 [0-9.]* ms, p99 [0-9.]* ms" "$T/load.txt" || fail "load: no 503 latencies: $(cat "$T/load.txt")"
  echo "ok: serve-load: $(cat "$T/load.txt")"
  # no request answered 200 (every body is refused): a failed run, exit 1
  set +e
  "$LOADGEN" --url "$U/run" --body "$T/bad" --rate 20 --duration 0.5 >"$T/load.txt"
  rc=$?
  set -e
  [ $rc = 1 ] || fail "serve-load with no 200 answer: exit $rc, $(cat "$T/load.txt")"
  grep -q "400: " "$T/load.txt" || fail "serve-load: the 400 answers: $(cat "$T/load.txt")"
  echo "ok: serve-load fails when nothing is answered 200"
else
  echo "note: serve-load not built (no libcurl4-openssl-dev): its part is left out"
fi

# SIGTERM while a request waits in the queue: it is answered, then exit 0
(post "$T/x.npy" "$T/last.npy" >"$T/code_last") &
POSTER=$!
i=0
until $C "$U/metrics" | grep -q '^mha_queue_depth 1$'; do
  i=$((i + 1)); [ $i -le 100 ] || fail "the last request never reached the queue"
  sleep 0.05
done
kill -TERM $SRV
wait $POSTER || true
[ "$(cat "$T/code_last")" = 200 ] || fail "a request accepted before SIGTERM: $(cat "$T/code_last")"
cmp -s "$T/last.npy" "$T/ref.npy" || fail "the drained answer differs"
serve_wait_exit
grep -q "drained 1 waiting" "$T/err" || fail "no drain report: $(cat "$T/err")"
echo "ok: SIGTERM drains"

# A refusal for the request's own deadline (the work ahead would pass it)
# is not a full queue: with room for 256 and no --max-queue-ms, every 503
# under a burst is a deadline refusal, and the SIGTERM summary (and
# /metrics) count them apart from the queue-full ones. The layer is one of
# ~1 ms a request (d 512, S 64: 0.14 GFLOP), so a burst of 800/s keeps a
# run going most of the time and the work ahead of a new request passes
# its 0.2 ms deadline on any machine; with m.onnx (~0.02 ms of compute) a
# quiet machine kept up and refused none.
if [ -x "$(dirname "$MHA")/serve-load" ]; then
  "$MHA" gen -d 512 -H 8 -o "$T/slow.onnx" --data "$T/xslow.npy" --batch 1 --seq 64 >/dev/null
  serve_start "$T/slow.onnx" --deadline-ms 0.2 --max-delay-ms 0 --dispatchers 1 --max-batch 1 --run-threads 1
  n503=0
  for try in 1 2 3 4 5; do
    "$(dirname "$MHA")/serve-load" --url "$U/run" --body "$T/xslow.npy" --rate 800 --duration 0.5 \
      --connections 16 >"$T/load.txt" || true
    k=$(sed -n 's/.*[{ ]503: \([0-9]*\).*/\1/p' "$T/load.txt")
    n503=$((n503 + ${k:-0}))
    [ $n503 = 0 ] || break
  done
  [ $n503 -gt 0 ] || fail "no deadline refusal in 5 bursts: $(cat "$T/load.txt")"
  $C "$U/metrics" | grep -qx "mha_queue_refused_deadline_total $n503" ||
    fail "/metrics: not $n503 deadline refusals: $($C "$U/metrics" | grep refused)"
  kill -TERM $SRV
  serve_wait_exit
  grep -q " 0 refused (queue full), $n503 refused (the work ahead past their deadline)," "$T/err" ||
    fail "the SIGTERM summary, $n503 deadline refusals: $(cat "$T/err")"
  echo "ok: deadline refusals counted apart from a full queue ($n503)"
fi

# A drained backlog gives its free heap memory back (the soak's RSS grew
# 37 -> 76 MiB after backlogs on a loaded machine): 10 requests at once
# (held for company), then none in flight: one trim; 3 at once are no
# backlog.
serve_start "$T/m.onnx" --max-batch 16 --max-delay-ms 2000 --hold-when-idle --max-batch-ms off --capacity 64
burst() { # burst N: N requests at once, each answered 200
  PIDS=
  for k in $(seq "$1"); do
    (post "$T/x.npy" "$T/b$k.npy" >"$T/code_b$k") &
    PIDS="$PIDS $!"
  done
  for p in $PIDS; do wait "$p" || true; done
  for k in $(seq "$1"); do [ "$(cat "$T/code_b$k")" = 200 ] || fail "burst of $1: $(cat "$T/code_b$k")"; done
}
trims() { $C "$U/metrics" | sed -n 's/^mha_memory_trims_total //p'; }
burst 3
[ "$(trims)" = 0 ] || fail "a trim after 3 requests at once: $(trims)"
burst 10
i=0
until [ "$(trims)" = 1 ]; do # the last request's end may follow its answer
  i=$((i + 1)); [ $i -le 40 ] || fail "no trim after 10 requests at once: '$(trims)'"
  sleep 0.05
done
kill -TERM $SRV
serve_wait_exit
echo "ok: a drained backlog trims the heap"

# A fixed set of threads whatever the connections: 12 requests waiting at
# once (held for company) start no thread (a thread per connection: 12
# more, each with its stack, one wake-up and switch more a request)
serve_start "$T/m.onnx" --max-batch 16 --max-delay-ms 3000 --hold-when-idle --max-batch-ms off --capacity 64
pid=$(awk '{ print $1 }' "/proc/$SRV/task/$SRV/children")
threads() { awk '/^Threads:/ { print $2 }' "/proc/$pid/status"; }
depth() { $C "$U/metrics" | sed -n 's/^mha_queue_depth //p'; }
[ "$($C "$U/health")" = ok ] || fail "/health"
t0=$(threads)
PIDS=
for k in $(seq 12); do
  (post "$T/x.npy" "$T/t$k.npy" >"$T/code_t$k") &
  PIDS="$PIDS $!"
done
i=0
until [ "$(depth)" = 12 ]; do
  i=$((i + 1)); [ $i -le 100 ] || fail "12 requests at once: queue depth $(depth)"
  sleep 0.02
done
t1=$(threads)
for p in $PIDS; do wait "$p" || true; done
for k in $(seq 12); do
  [ "$(cat "$T/code_t$k")" = 200 ] || fail "12 at once: request $k answered $(cat "$T/code_t$k")"
  cmp -s "$T/t$k.npy" "$T/ref.npy" || fail "12 at once: answer $k differs from mha run's"
done
[ "$t1" -le $((t0 + 2)) ] || fail "12 requests waiting took $((t1 - t0)) more threads ($t0 -> $t1)"
kill -TERM $SRV
serve_wait_exit
echo "ok: 12 requests waiting at once take no thread each ($t0 -> $t1 threads)"

# --caller-runs: the connections' threads compute the batches (8 requests
# at once), each answer still what mha run gives
serve_start "$T/m.onnx" --caller-runs
PIDS=
for k in 1 2 3 4 5 6 7 8; do
  (post "$T/x.npy" "$T/c$k.npy" >"$T/code_c$k") &
  PIDS="$PIDS $!"
done
for p in $PIDS; do wait "$p" || true; done
for k in 1 2 3 4 5 6 7 8; do
  [ "$(cat "$T/code_c$k")" = 200 ] || fail "--caller-runs: request $k answered $(cat "$T/code_c$k")"
  cmp -s "$T/c$k.npy" "$T/ref.npy" || fail "--caller-runs: answer $k differs from mha run's"
done
kill -TERM $SRV
serve_wait_exit
echo "ok: --caller-runs"

# serve-load's pool: at most --connections opened, each kept alive for the
# next request (60 requests on 2 connections; the server closes none idle
# for 5 s), and a connection the server closed while idle
# (--header-timeout-ms) opened again: every request answered once
if [ -x "$LOADGEN" ]; then
  serve_start "$T/m.onnx"
  "$LOADGEN" --url "$U/run" --body "$T/x.npy" --rate 60 --duration 1 --connections 2 \
    --json "$T/ka.json" >"$T/ka.txt" || fail "serve-load on 2 connections: $(cat "$T/ka.txt")"
  opened=$(sed -n 's/.*"connections_opened": \([0-9]*\).*/\1/p' "$T/ka.json")
  [ -n "$opened" ] && [ "$opened" -ge 1 ] && [ "$opened" -le 2 ] ||
    fail "serve-load opened '$opened' connections, 1 or 2 wanted: $(cat "$T/ka.txt")"
  grep -q '"cpu_ms_per_request": [0-9.]*,' "$T/ka.json" || fail "no serve-load CPU: $(cat "$T/ka.json")"
  kill -TERM $SRV
  serve_wait_exit
  serve_start "$T/m.onnx" --header-timeout-ms 300
  "$LOADGEN" --url "$U/run" --body "$T/x.npy" --rate 3 --duration 3 --connections 1 \
    --json "$T/ka.json" >"$T/ka.txt" || fail "serve-load, idle connections closed: $(cat "$T/ka.txt")"
  kill -TERM $SRV
  serve_wait_exit
  echo "ok: serve-load keeps $opened connections alive, opens closed ones again: $(cat "$T/ka.txt")"
fi

# --precision bfloat16: every batch in bfloat16, each answer bitwise what
# `mha run --precision bfloat16` gives for the request alone (which is not
# the float32 answer): four requests of 8 and 5 tokens held into one batch
"$MHA" gen -d 64 -H 4 --causal -o "$T/m5.onnx" --data "$T/x5.npy" --batch 1 --seq 5 >/dev/null
cmp -s "$T/m.onnx" "$T/m5.onnx" || fail "mha gen gave two models for one seed"
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/ref16.npy" --precision bfloat16 >/dev/null 2>&1
"$MHA" run "$T/m.onnx" "$T/x5.npy" -o "$T/ref16_5.npy" --precision bfloat16 >/dev/null 2>&1
! cmp -s "$T/ref16.npy" "$T/ref.npy" || fail "bfloat16 and float32 answers alike: the test shows nothing"
serve_start "$T/m.onnx" --precision bfloat16 --max-batch 16 --max-delay-ms 1500 --hold-when-idle \
  --dispatchers 1 --max-padding 1 --max-batch-ms 60000
i=0
while ! grep -q "in bfloat16" "$T/out" && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
grep -q "(backend [a-z0-9]* in bfloat16," "$T/out" || fail "--precision bfloat16 not in effect: $(cat "$T/out")"
PIDS=
for k in 1 2 3 4; do
  if [ $((k % 2)) = 1 ]; then body="$T/x.npy"; else body="$T/x5.npy"; fi
  (post "$body" "$T/b$k.npy" >"$T/code_b$k") &
  PIDS="$PIDS $!"
done
for p in $PIDS; do wait "$p" || true; done
for k in 1 2 3 4; do
  [ "$(cat "$T/code_b$k")" = 200 ] || fail "bfloat16: request $k answered $(cat "$T/code_b$k")"
  if [ $((k % 2)) = 1 ]; then ref="$T/ref16.npy"; else ref="$T/ref16_5.npy"; fi
  cmp -s "$T/b$k.npy" "$ref" || fail "bfloat16: answer $k differs from mha run --precision bfloat16"
done
batches=$($C "$U/metrics" | sed -n 's/^mha_batches_total //p')
kill -TERM $SRV
serve_wait_exit
[ "${batches:-0}" -lt 4 ] || fail "bfloat16: 4 requests held together ran as $batches batches"
echo "ok: --precision bfloat16 (4 requests in $batches batch(es), each what mha run gives alone)"
set +e
"$MHA" serve "$T/m.onnx" --backend avx2 --precision bfloat16 >"$T/out" 2>"$T/err"
rc=$?
set -e
[ $rc = 1 ] && [ "$(wc -l <"$T/err")" = 1 ] && grep -q "'avx2' does not serve precision bfloat16" "$T/err" ||
  fail "serve bfloat16 on avx2: rc $rc, $(cat "$T/err")"
echo "ok: --precision bfloat16 on a backend without it refused"

set +e
"$MHA" serve "$T/m.onnx" --host not-an-address >/dev/null 2>&1
[ $? = 2 ] || fail "a bad --host: wanted exit 2"
"$MHA" serve >/dev/null 2>&1
[ $? = 2 ] || fail "no model: wanted exit 2"
for bad in -1 x; do
  for opt in --max-batch-ms --run-threads; do
    "$MHA" serve "$T/m.onnx" $opt "$bad" >"$T/out" 2>&1
    [ $? = 2 ] || fail "$opt $bad: wanted exit 2"
    grep -q -- "${opt#--}" "$T/out" || fail "$opt $bad without the option named: $(cat "$T/out")"
  done
done
echo "ok: usage errors"
