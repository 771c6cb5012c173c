#!/bin/sh
# serve_slowloris.sh -- `mha serve --header-timeout-ms` and
# `--min-body-rate`: clients that hold every connection by sending their
# request headers a line at a time, or their body a few bytes at a time
# (each piece well within the 30 s idle timeout), are cut off once the
# headers are overdue or the body falls behind the least rate, so a new
# request is answered within a few seconds instead of waiting as long as
# they keep sending; the cut-offs are counted in /metrics. Without the
# deadlines the held connections stay open for the whole trickle (8 s here)
# and the /health probe below finds none free.
# Exit 77 (skipped) when `mha serve` was built without libmicrohttpd or curl
# is missing.
# Env: MHA, MHA_TEST_TMP, MHA_SOURCE_DIR.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_TMP:?}" "${MHA_SOURCE_DIR:?}"
T="$MHA_TEST_TMP"
# fail, serve_start, SRV, U, C
. "$(dirname "$0")/lib/serve_start.sh"
rm -rf "$T" && mkdir -p "$T"
command -v python3 >/dev/null || { echo "skip: no python3"; exit 77; }

"$MHA" serve --help | grep -q -- "--header-timeout-ms X" || fail "--help does not give --header-timeout-ms"

"$MHA" gen -d 64 -H 4 -o "$T/m.onnx" --data "$T/x.npy" --batch 1 --seq 8 >/dev/null
serve_start "$T/m.onnx" --max-connections 4 --header-timeout-ms 700 --min-body-rate 1000

# 4 clients (every connection the server allows) send a request line, then
# a header line every 200 ms for 8 s, never the blank line that ends the
# headers ("headers"); or all the headers, then 10 bytes of a 100 000-byte
# body every 200 ms ("body": 50 bytes a second, under the 1000 asked). Each
# reports when the server closed its connection.
cat >"$T/loris.py" <<'PY'
import socket, sys, time
port, body, n, span = int(sys.argv[1]), sys.argv[2] == "body", 4, 8.0
head = b"POST /run HTTP/1.1\r\nHost: 127.0.0.1\r\n"
if body:
    head += b"Content-Type: application/x-npy\r\nContent-Length: 100000\r\n\r\n"
piece = b"x" * 10 if body else b"X-Slow: 1\r\n"
t0 = time.monotonic()
socks = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(head)
    socks.append(s)
print("held", flush=True)
closed = {}
while time.monotonic() - t0 < span and len(closed) < n:
    time.sleep(0.2)
    for i, s in enumerate(socks):
        if i in closed:
            continue
        try:
            s.sendall(piece)
            s.setblocking(False)
            try:
                if s.recv(1) == b"":
                    closed[i] = time.monotonic() - t0
            except BlockingIOError:
                pass
            s.setblocking(True)
        except OSError:
            closed[i] = time.monotonic() - t0
for i in range(n):
    print("closed %d %.2f" % (i, closed[i]) if i in closed else "open %d" % i, flush=True)
PY
# trickle MODE: the slow clients of MODE (headers, body) hold every
# connection; a new client is answered once they are cut off (0.7 s and the
# guard's 100 ms look), long before their 8 s of trickling end
trickle() {
  python3 "$T/loris.py" "$PORT" "$1" >"$T/loris.out" 2>&1 &
  LORIS=$!
  i=0
  while ! grep -q held "$T/loris.out"; do
    i=$((i + 1)); [ $i -le 100 ] || fail "$1: the slow clients did not connect: $(cat "$T/loris.out")"
    sleep 0.1
  done
  t0=$(date +%s)
  ok=0
  i=0
  while [ $i -lt 40 ]; do
    if [ "$(curl -s -m 1 "$U/health" 2>/dev/null)" = ok ]; then ok=1; break; fi
    i=$((i + 1))
    sleep 0.1
  done
  waited=$(($(date +%s) - t0))
  [ $ok = 1 ] || fail "$1: no answer to /health while slow clients held the connections: $(cat "$T/loris.out")"
  [ "$waited" -le 5 ] || fail "$1: /health answered only after $waited s"
  wait $LORIS
  grep -c '^closed' "$T/loris.out" | grep -qx 4 || fail "$1: slow clients not all cut off: $(cat "$T/loris.out")"
  # each cut off near the bound: after 0.7 s, well before 8 s
  awk '/^closed/ && ($3 < 0.6 || $3 > 4) { bad = 1 } END { exit bad }' "$T/loris.out" ||
    fail "$1: cut off at the wrong time: $(cat "$T/loris.out")"
  echo "ok: slow $1 cut off"
}
trickle headers
trickle body
n=$($C "$U/metrics" | awk '$1 == "mha_http_read_timeouts_total" { print $2 }')
[ "${n:-0}" -ge 8 ] || fail "mha_http_read_timeouts_total is '${n:-}', wanted >= 8"

# a request that sends its headers at once is answered as before
code=$($C -o "$T/y.npy" -w '%{http_code}' -H "Content-Type: application/x-npy" \
  --data-binary @"$T/x.npy" "$U/run")
[ "$code" = 200 ] || fail "POST /run after the slow clients: $code"
kill -TERM $SRV
serve_wait_exit
echo "ok: slow headers and bodies cut off at --header-timeout-ms, --min-body-rate"
