#!/bin/sh
# serve_slow_upload.sh -- `mha serve --max-queue-ms` counts the time since
# a request's headers only while the queue has work. A body uploaded slowly
# (0.6 s) to an idle server with --max-queue-ms 50 is the client's own time:
# the request is accepted and answered as `mha run` answers it (before, the
# whole upload counted and it was refused 503 though nothing waited ahead
# of it). The same slow upload while another request waits in the queue is
# still refused at once with 503 (the overload case: time spent behind
# work counts).
# Exit 77 (skipped) when `mha serve` was built without libmicrohttpd, curl
# or python3 is missing.
# Env: MHA, MHA_TEST_TMP, MHA_SOURCE_DIR.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_TMP:?}" "${MHA_SOURCE_DIR:?}"
T="$MHA_TEST_TMP"
# fail, serve_start, SRV, U, C
. "$(dirname "$0")/lib/serve_start.sh"
rm -rf "$T" && mkdir -p "$T"
command -v python3 >/dev/null || { echo "skip: no python3"; exit 77; }

"$MHA" gen -d 64 -H 4 -o "$T/m.onnx" --data "$T/x.npy" --batch 1 --seq 8 >/dev/null
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/ref.npy" >/dev/null 2>&1

# upload.py PORT BODY OUT: POST /run with the headers at once and the body
# in 6 pieces 0.1 s apart; writes the answer's body to OUT, prints the status
cat >"$T/upload.py" <<'PY'
import socket, sys, time
port, body = int(sys.argv[1]), open(sys.argv[2], "rb").read()
s = socket.create_connection(("127.0.0.1", port), timeout=20)
s.sendall(b"POST /run HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
          b"Content-Type: application/x-npy\r\nContent-Length: %d\r\n\r\n" % len(body))
n = 6
for k in range(n):
    time.sleep(0.1)
    s.sendall(body[k * len(body) // n:(k + 1) * len(body) // n])
answer = b""
while True:
    got = s.recv(65536)
    if not got:
        break
    answer += got
head, _, rest = answer.partition(b"\r\n\r\n")
open(sys.argv[3], "wb").write(rest)
print(head.split(b" ")[1].decode())
PY

# an idle server (no hold: a lone request computes at once)
serve_start "$T/m.onnx" --max-queue-ms 50 --max-batch 16
code=$(python3 "$T/upload.py" "$PORT" "$T/x.npy" "$T/y.npy")
[ "$code" = 200 ] || fail "a slow upload to an idle server: $code $(head -c 300 "$T/y.npy")"
cmp -s "$T/y.npy" "$T/ref.npy" || fail "the slow upload's answer differs from mha run's output"
kill -TERM $SRV
serve_wait_exit
echo "ok: a slow upload to an idle server is accepted"

# one dispatcher that holds a lone request 30 s for a second one: request
# A waits in the queue (seen in /metrics) while the slow upload B comes in,
# so all of B's upload counts; C then completes A's batch of 2
serve_start "$T/m.onnx" --max-queue-ms 50 --max-batch 2 --max-delay-ms 30000 --hold-when-idle --max-batch-ms off \
  --dispatchers 1
post() { # post BODYFILE OUTFILE -> prints the status code
  $C -o "$2" -w '%{http_code}' -H "Content-Type: application/x-npy" --data-binary @"$1" "$U/run"
}
post "$T/x.npy" "$T/a.npy" >"$T/a.code" &
A=$!
i=0
until $C "$U/metrics" | grep -qx 'mha_queue_depth 1'; do
  i=$((i + 1)); [ $i -le 200 ] || fail "request A never waited in the queue"
  sleep 0.1
done
code=$(python3 "$T/upload.py" "$PORT" "$T/x.npy" "$T/b.txt")
[ "$code" = 503 ] || fail "a slow upload behind a waiting request: $code $(head -c 200 "$T/b.txt")"
grep -q "while the queue had work" "$T/b.txt" || fail "the 503 does not say why: $(cat "$T/b.txt")"
code=$(post "$T/x.npy" "$T/c.npy")
wait $A
[ "$code" = 200 ] && [ "$(cat "$T/a.code")" = 200 ] || fail "requests A, C: $(cat "$T/a.code"), $code"
cmp -s "$T/a.npy" "$T/ref.npy" && cmp -s "$T/c.npy" "$T/ref.npy" ||
  fail "a batched answer differs from mha run's output"
echo "ok: a slow upload behind waiting work is refused with 503"

kill -TERM $SRV
serve_wait_exit
