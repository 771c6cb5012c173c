#!/bin/sh
# serve_priority.sh -- `mha serve` runs the threads that compute (the
# runtime's workers and the queue's dispatchers) below its HTTP threads, so
# that a request is read, admitted or refused and answered while batches
# compute. With --compute-nice 5 the three compute threads of a 2-thread
# runtime (one worker, two dispatchers) run at nice 5 and the HTTP thread
# at the server's nice; under SCHED_FIFO (`chrt -f 10`, where the
# dispatchers had kept both cores from the HTTP thread) the HTTP thread
# runs one real-time priority above the compute threads: 11 over 10 where
# the server may raise it (root), else 10 over 9. A request is still
# answered with what `mha run` gives; --compute-nice out of range is a
# usage error. The real-time part is skipped where chrt is refused
# (no CAP_SYS_NICE for SCHED_FIFO).
# Exit 77 (skipped) when `mha serve` was built without libmicrohttpd or
# curl is missing. Env: MHA, MHA_TEST_TMP, MHA_SOURCE_DIR.
set -eu
: "${MHA:?set MHA to the mha binary}" "${MHA_TEST_TMP:?}" "${MHA_SOURCE_DIR:?}"
T="$MHA_TEST_TMP"
# fail, serve_start, SRV, U, C
. "$(dirname "$0")/lib/serve_start.sh"
rm -rf "$T" && mkdir -p "$T"
[ -d /proc/self/task ] || { echo "skip: no /proc"; exit 77; }

"$MHA" gen -d 64 -H 4 -o "$T/m.onnx" --data "$T/x.npy" --batch 1 --seq 8 >/dev/null
"$MHA" run "$T/m.onnx" "$T/x.npy" -o "$T/ref.npy" >/dev/null 2>&1

# threads PID: one line a thread: its name, nice value and real-time
# priority (/proc/PID/task/TID/stat fields 19 and 40, after the name)
threads() {
  for t in /proc/"$1"/task/*; do
    sed 's/^[0-9]* (\(.*\)) /\1 /' "$t/stat" 2>/dev/null | awk '{ print $1, $18, $39 }'
  done
}
# server_pid: the server under timeout (and chrt, which execs it)
server_pid() { awk '{ print $1 }' "/proc/$SRV/task/$SRV/children"; }

set +e
"$MHA" serve "$T/m.onnx" --compute-nice 20 >"$T/out" 2>"$T/usage"
rc=$?
set -e
[ $rc = 2 ] && [ "$(wc -l <"$T/usage")" = 1 ] || fail "--compute-nice 20: exit $rc: $(cat "$T/usage")"

serve_start "$T/m.onnx" --threads 2 --compute-nice 5
threads "$(server_pid)" >"$T/threads"
$C -o "$T/y.npy" -H "Content-Type: application/x-npy" --data-binary @"$T/x.npy" "$U/run" ||
  fail "POST /run failed"
cmp -s "$T/y.npy" "$T/ref.npy" || fail "the answer differs from mha run's output"
kill -TERM $SRV
serve_wait_exit
base=$(awk 'NR == 1 { print $2 }' "$T/threads")
[ "$(awk -v n=$((base + 5)) '$2 == n' "$T/threads" | wc -l)" = 3 ] ||
  fail "--compute-nice 5: not 3 threads at nice $((base + 5)): $(cat "$T/threads")"
awk -v n="$base" '/^MHD/ { found = 1; if ($2 != n) bad = 1 } END { exit !(found && !bad) }' \
  "$T/threads" || fail "the HTTP thread is not at the server's nice $base: $(cat "$T/threads")"
echo "ok: --compute-nice 5: the compute threads at nice $((base + 5)), the HTTP thread at $base"

if chrt -f 10 true 2>/dev/null; then
  rm -f "$T/port"
  timeout -k 30 120 chrt -f 10 "$MHA" serve "$T/m.onnx" --threads 2 --port 0 --port-file "$T/port" \
    >"$T/out" 2>"$T/err" &
  SRV=$!
  i=0
  while [ ! -s "$T/port" ]; do
    i=$((i + 1)); [ $i -le 200 ] || fail "no port file after 20 s: $(cat "$T/err")"
    sleep 0.1
  done
  threads "$(server_pid)" >"$T/threads"
  kill -TERM $SRV
  serve_wait_exit
  # the compute threads: the three at the lowest priority of the process
  low=$(awk 'NR == 1 || $3 < m { m = $3 } END { print m }' "$T/threads")
  [ "$low" = 9 ] || [ "$low" = 10 ] || fail "under chrt -f 10: lowest priority $low: $(cat "$T/threads")"
  [ "$(awk -v p="$low" '$3 == p' "$T/threads" | wc -l)" = 3 ] ||
    fail "under chrt -f 10: not 3 threads at real-time priority $low: $(cat "$T/threads")"
  awk -v p=$((low + 1)) '/^MHD/ { found = 1; if ($3 != p) bad = 1 } END { exit !(found && !bad) }' \
    "$T/threads" || fail "under chrt -f 10: the HTTP thread is not at priority $((low + 1)): $(cat "$T/threads")"
  echo "ok: under chrt -f 10 the compute threads at real-time priority $low, the HTTP thread at $((low + 1))"
else
  echo "skip: chrt -f 10 refused here: the real-time part is not checked"
fi
