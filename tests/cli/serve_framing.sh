#!/bin/sh
# serve_framing.sh -- `mha serve` and requests whose body length is
# ambiguous or missing, sent as raw bytes (curl would fix them): two
# Content-Length values, a Content-Length beside chunked, a coding other
# than chunked, a body-less POST, a length of 2^63. Each gets a clear 4xx
# (the ambiguous ones with the connection closed: a proxy in front may
# have framed another body, request smuggling), and the server keeps
# answering.
# Env: MHA, MHA_TEST_TMP.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_TMP:?}"
T="$MHA_TEST_TMP"
# fail, serve_start, SRV, U, C
. "$(dirname "$0")/lib/serve_start.sh"
rm -rf "$T" && mkdir -p "$T"

"$MHA" gen -d 16 -H 2 -o "$T/m.onnx" --data "$T/x.npy" --batch 1 --seq 4 >/dev/null
serve_start "$T/m.onnx" --threads 1

# raw NAME WANT HEAD: sends HEAD (\r\n between lines, LEN the body's
# length), a blank line and x.npy as the body (none when HEAD ends in
# " NOBODY"); wants the status line WANT and, for an ambiguous length,
# "Connection: close"
raw() {
  name=$1 want=$2 head=$3
  python3 - "$PORT" "$T/x.npy" "$head" >"$T/answer" <<'PY' || fail "$name: no answer"
import socket, sys
port, body = int(sys.argv[1]), open(sys.argv[2], "rb").read()
head = sys.argv[3].replace("LEN", str(len(body))).replace("\\r\\n", "\r\n")
if head.endswith(" NOBODY"):  # the headers alone
    head, body = head[: -len(" NOBODY")], b""
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(head.encode() + b"\r\n\r\n" + body)
got = b""
try:
    while b"\r\n\r\n" not in got:
        c = s.recv(4096)
        if not c:
            break
        got += c
except socket.timeout:
    got += b"<timeout>"
sys.stdout.write(got.decode("latin-1"))
PY
  head -n 1 "$T/answer" | grep -q "^HTTP/1.1 $want" || fail "$name: $(head -c 300 "$T/answer")"
  echo "ok: $name: $(head -n 1 "$T/answer" | tr -d '\r')"
}
P='POST /run HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-npy'
raw "a good request" 200 "$P\r\nContent-Length: LEN\r\nConnection: close"
raw "Content-Length twice, equal" 200 "$P\r\nContent-Length: LEN\r\nContent-Length: LEN\r\nConnection: close"
raw "Content-Length twice, different" 400 "$P\r\nContent-Length: LEN\r\nContent-Length: 5"
grep -qi "^Connection: close" "$T/answer" || fail "two lengths: the connection is kept"
raw "Content-Length and chunked" 400 "$P\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"
grep -qi "^Connection: close" "$T/answer" || fail "length and chunked: the connection is kept"
# was no answer at all until the connection timeout
raw "Transfer-Encoding gzip, chunked" 400 "$P\r\nTransfer-Encoding: gzip, chunked"
# was "npy header: NULL argument"
raw "a POST without a body" 400 "$P\r\nContent-Length: 0\r\nConnection: close NOBODY"
grep -q "the body is empty" "$T/answer" || fail "empty body: $(cat "$T/answer")"
raw "Content-Length 2^63" 413 "$P\r\nContent-Length: 9223372036854775808 NOBODY"
raw "still answering" 200 "$P\r\nContent-Length: LEN\r\nConnection: close"
kill "$SRV"
serve_wait_exit
echo "serve_framing.sh: ok"
