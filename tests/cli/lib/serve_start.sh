# serve_start.sh -- sourced by the `mha serve` shell tests: skip when the
# command or curl is missing, fail(), and serve_start MODEL [OPTIONS...],
# which starts the server on a port the system picks (bounded by timeout)
# and sets SRV (timeout's pid: SIGTERM reaches the server through it, a
# SIGKILL would leave the server running; timeout -k kills it 30 s later if
# needed), U (its base URL) and C (curl with a time limit). Output in $T.
# The 30 s cover the server's own drain bound (up to 10 s for the answers
# in flight, then its connection threads joined and its exit, LeakSanitizer
# included): with 5 s, shorter than that bound, a server draining as it
# should could be killed (exit 137; seen once under ASan, where SIGTERM to
# exit takes 0.2-0.6 s at a load of 20 on 2 cores).
fail() { echo "FAIL: $*" >&2; [ -n "${SRV:-}" ] && kill "$SRV" 2>/dev/null; exit 1; }
if ! "$MHA" serve --help >/dev/null 2>&1; then echo "skip: mha serve not built"; exit 77; fi
if ! command -v curl >/dev/null; then echo "skip: curl not installed"; exit 77; fi

serve_start() {
  rm -f "$T/port" # a server started before left its port there
  timeout -k 30 120 "$MHA" serve "$@" --port 0 --port-file "$T/port" >"$T/out" 2>"$T/err" &
  SRV=$!
  i=0
  while [ ! -s "$T/port" ]; do
    i=$((i + 1)); [ $i -le 200 ] || fail "no port file after 20 s: $(cat "$T/err")"
    kill -0 $SRV 2>/dev/null || fail "the server died: $(cat "$T/err")"
    sleep 0.1
  done
  PORT=$(cat "$T/port")
  U="http://127.0.0.1:$PORT"
  C="curl -s -m 20"
}

# serve_wait_exit: waits for the server (after a SIGTERM) and fails unless
# it exited 0.
serve_wait_exit() {
  set +e
  wait $SRV
  rc=$?
  set -e
  SRV=
  [ $rc != 137 ] || fail "the server did not exit within 30 s of SIGTERM: $(cat "$T/err")"
  [ $rc = 0 ] || fail "the server exited $rc after SIGTERM: $(cat "$T/err")"
}
