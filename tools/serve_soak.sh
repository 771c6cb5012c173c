#!/bin/sh
# serve_soak.sh -- `mha serve` soaked and overloaded over HTTP on loopback,
# with serve-load (tools/serve_load.c: open-loop Poisson arrivals on
# libcurl, every request id checked to be answered exactly once, every
# answer to the same body checked to be the same bytes):
#
#   1. the sustainable rate: serve-load at 25 requests/s, then 1.25 x
#      the last step (STEP s each), until a step's p99 passes the bound or
#      a request is refused twice at one rate (a miss is tried once more:
#      one another process's time slice caused seldom comes again); the
#      last good step (or --rate R)
#   2. the soak: one server, full batches for 2 s (2000 requests/s), then
#      that rate for --duration seconds (default 600),
#      its RSS sampled every 5 s (first after the warm-up, last, max); the
#      p99 per minute; /health after; SIGTERM drains and exits 0
#   3. overload: a fresh server with --max-queue-ms of half the bound (and
#      each batch's run within a fifth of it, --max-batch-ms: an accepted
#      request waits for its own batch's run too), twice
#      the rate for OVERLOAD s: the accepted requests' p99 must stay within
#      twice the bound, the excess be refused with 503 at once, /health
#      answer 200 throughout
#
# The requests: the d_model 768, 12-head layer (`mha gen -d 768 -H 12`), four
# bodies of 32, 24, 16 and 8 tokens in turn (so batches are padded), dynamic
# batching on (--max-batch 16, --max-delay-ms 1).
#
#   tools/serve_soak.sh [--duration SEC] [--rate R] [--p99-ms X] [--quick]
#                       [--out FILE]
#
# --quick: a 60 s soak, 10 s overload, 3 s search steps (about 2 minutes).
# Exit 1 when a check fails (an id unanswered or answered twice, a wrong
# id, differing answers, RSS at the end over 10 % above the warm-up's, the
# overload bounds, /health, the drain). Env: MHA (default build/bin/mha),
# SERVE_LOAD (default beside it), SERVE_CHRT (a command the server runs
# under, such as `chrt -f 10`; default none: a 10-minute soak under
# SCHED_FIFO would take the cores from every other process), LOAD_CHRT
# (serve-load's; default `chrt -f 11` with SERVE_CHRT `chrt -f 10`, a step
# above the server's compute threads as a client on another machine would
# be, else SERVE_CHRT).
# Not part of `make test` (`make serve-soak`).
set -eu
DURATION=600
RATE=
P99=10
QUICK=0
OUT=
while [ $# -gt 0 ]; do
  case "$1" in
  --duration) DURATION=$2; shift 2 ;;
  --rate) RATE=$2; shift 2 ;;
  --p99-ms) P99=$2; shift 2 ;;
  --quick) QUICK=1; shift ;;
  --out) OUT=$2; shift 2 ;;
  -h | --help) sed -n '2,40p' "$0"; exit 0 ;;
  *) echo "serve_soak.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
STEP=5
OVERLOAD=30
if [ $QUICK = 1 ]; then DURATION=60; STEP=3; OVERLOAD=10; fi
HERE=$(cd "$(dirname "$0")" && pwd)
MHA=${MHA:-$HERE/../build/bin/mha}
SERVE_LOAD=${SERVE_LOAD:-$(dirname "$MHA")/serve-load}
[ -x "$MHA" ] || { echo "serve_soak.sh: no mha at $MHA (make build)" >&2; exit 1; }
[ -x "$SERVE_LOAD" ] || {
  echo "serve_soak.sh: no serve-load at $SERVE_LOAD (needs libcurl4-openssl-dev, then make build)" >&2
  exit 1
}
CHRT=${SERVE_CHRT:-}
if [ -z "${LOAD_CHRT+set}" ]; then
  LOAD_CHRT=$CHRT
  [ "$CHRT" = "chrt -f 10" ] && LOAD_CHRT="chrt -f 11"
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/serve_soak.XXXXXX")
SRV=
SAMPLER=
trap '[ -n "$SAMPLER" ] && kill "$SAMPLER" 2>/dev/null; [ -n "$SRV" ] && kill "$SRV" 2>/dev/null; rm -rf "$T"' EXIT INT TERM
FAILED=0
check() { # check CONDITION-TEXT OK(0/1)
  if [ "$2" = 1 ]; then echo "ok: $1"; else echo "FAILED: $1"; FAILED=1; fi
}
load1() { uptime | sed 's/.*load average: *//'; }
json() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

"$MHA" gen -d 768 -H 12 --seed 1 -o "$T/layer.onnx" >/dev/null
BODIES=
for s in 32 24 16 8; do
  "$MHA" gen -d 768 -H 12 --seed "$s" -o "$T/unused.onnx" --data "$T/x$s.npy" --batch 1 --seq "$s" >/dev/null
  BODIES="$BODIES --body $T/x$s.npy"
done

# serve_start [OPTIONS...]: the server on a free port; sets SRV and URL
serve_start() {
  rm -f "$T/port"
  # shellcheck disable=SC2086 # CHRT is a command and its options, or nothing
  $CHRT "$MHA" serve "$T/layer.onnx" --port 0 --port-file "$T/port" --max-batch 16 --max-delay-ms 1 \
    --capacity 1024 "$@" >"$T/serve.out" 2>"$T/serve.err" &
  SRV=$!
  i=0
  while [ ! -s "$T/port" ]; do
    i=$((i + 1))
    [ $i -le 600 ] && kill -0 $SRV 2>/dev/null || { echo "serve_soak.sh: no server: $(cat "$T/serve.err")" >&2; exit 1; }
    sleep 0.1
  done
  URL="http://127.0.0.1:$(cat "$T/port")"
}
# serve_stop: SIGTERM, the exit status and the drain report checked
serve_stop() {
  kill -TERM $SRV
  set +e
  wait $SRV
  rc=$?
  set -e
  SRV=
  check "SIGTERM: exit $rc, $(tail -1 "$T/serve.err")" "$([ $rc = 0 ] && grep -q drained "$T/serve.err" && echo 1 || echo 0)"
}
health() { curl -s -m 5 -o /dev/null -w '%{http_code}' "$URL/health" || true; }
# load RATE SECONDS JSON [EXTRA...]: serve-load against the server
load() {
  r=$1 d=$2 j=$3
  shift 3
  # shellcheck disable=SC2086 # BODIES is a list of options
  $LOAD_CHRT "$SERVE_LOAD" --url "$URL/run" $BODIES --rate "$r" --duration "$d" --connections 64 \
    --json "$j" "$@" >"$T/load.txt" 2>&1 || true
  cat "$T/load.txt"
}

echo "== serve_soak.sh $(date -u '+%Y-%m-%d %H:%M UTC'), load $(load1)"
serve_start
if [ -z "$RATE" ]; then
  echo "== the sustainable rate (p99 <= $P99 ms, nothing refused; $STEP s a step)"
  r=25
  RATE=0
  tries=0
  while [ "$r" -le 20000 ]; do
    printf '  %5d/s: ' "$r"
    load "$r" "$STEP" "$T/step.json"
    good=$(json "$T/step.json" "int(d['p99_ms'] is not None and d['p99_ms'] <= $P99 and d['codes'].get('200', 0) == d['requests'])")
    if [ "$good" = 1 ]; then
      RATE=$r
      r=$(awk -v r="$r" 'BEGIN { printf "%.0f", r * 1.25 }')
      tries=0
    else
      tries=$((tries + 1))
      [ $tries -lt 2 ] || break
    fi
  done
  if [ "$RATE" = 0 ]; then
    echo "serve_soak.sh: no rate met p99 <= $P99 ms at this load ($(load1)); soaking at 25/s" >&2
    RATE=25
  fi
fi
# Full batches once before the soak (64 requests in flight at most, so
# none refused): the buffers sized for the largest batch (the queue's and
# the engine's, kept for the next ones) are then in the RSS after the
# warm-up, and a backlog in the soak (other processes taking the cores)
# grows nothing that stays.
echo "== full batches: 2000 requests/s for 2 s, load $(load1)"
load 2000 2 "$T/burst.json"
echo "== soak: $RATE requests/s for $DURATION s, load $(load1)"
PID=$SRV
(while kill -0 "$PID" 2>/dev/null; do
  printf '%s %s\n' "$(date +%s)" "$(awk '/^VmRSS/ { print $2 }' /proc/"$PID"/status 2>/dev/null)"
  sleep 5
done) >"$T/rss.txt" &
SAMPLER=$!
load "$RATE" "$DURATION" "$T/soak.json" --interval 60
kill $SAMPLER 2>/dev/null || true
SAMPLER=
# the end: every request answered, none in flight (the drained backlog's
# heap given back, serve_trim), a second later
sleep 1
END_RSS=$(awk '/^VmRSS/ { print $2 }' /proc/"$PID"/status 2>/dev/null || echo 0)
check "soak /health answers 200 after" "$([ "$(health)" = 200 ] && echo 1 || echo 0)"
serve_stop
# RSS (kB): the first sample after the warm-up (a tenth of the run, at
# least 10 s), the last and the largest after the warm-up, and once the
# load ended (every request answered). The bound is on that end: the
# samples during the soak include the requests in flight in a backlog
# (bodies, copies, answers: up to 64 here; seconds of them when other
# processes hold the cores), given back once it drains.
WARM=$((DURATION / 10 > 10 ? DURATION / 10 : 10))
rss=$(awk -v w="$WARM" 'NR == 1 { t0 = $1 } $2 != "" && $1 - t0 >= w {
  if (!n++) first = $2; last = $2; if ($2 > max) max = $2 } END { print first + 0, last + 0, max + 0, n + 0 }' "$T/rss.txt")
set -- $rss
echo "  RSS after the warm-up ($WARM s): first $(($1 / 1024)) MiB, last $(($2 / 1024)) MiB, max $(($3 / 1024)) MiB ($4 samples); at the end, none in flight, $((END_RSS / 1024)) MiB"
check "RSS does not grow after the warm-up (the end's <= first + 10 %)" "$(awk -v f="$1" -v e="$END_RSS" 'BEGIN { print (f > 0 && e > 0 && e <= f * 1.10) ? 1 : 0 }')"
json "$T/soak.json" "'\n'.join('  minute %d: %d requests, p50 %s ms, p99 %s ms, max %s ms' % (i, m['requests'], m['p50_ms'], m['p99_ms'], m['max_ms']) for i, m in enumerate(d['intervals']))"
check "soak: every id answered exactly once, with its own id and the same answer per body" \
  "$(json "$T/soak.json" "int(d['unanswered'] == 0 and d['answered_twice'] == 0 and d['wrong_id'] == 0 and d['differing_answers'] == 0)")"
SOAK_P99=$(json "$T/soak.json" "d['p99_ms']")

OVR=$((RATE * 2))
HALF=$(awk -v p="$P99" 'BEGIN { print p / 2 }')
FIFTH=$(awk -v p="$P99" 'BEGIN { print p / 5 }')
echo "== overload: $OVR requests/s (2x) for $OVERLOAD s, --max-queue-ms $HALF --max-batch-ms $FIFTH, load $(load1)"
serve_start --max-queue-ms "$HALF" --max-batch-ms "$FIFTH"
(sleep $((OVERLOAD / 2)); health >"$T/health_mid") &
MID=$!
load "$OVR" "$OVERLOAD" "$T/over.json"
wait $MID
check "overload: /health answered 200 in the middle of it" "$([ "$(cat "$T/health_mid")" = 200 ] && echo 1 || echo 0)"
check "overload: /health answers 200 after" "$([ "$(health)" = 200 ] && echo 1 || echo 0)"
# the server's own time per refusal (arrival to 503), beside the client's:
# a refusal the server gives at once but the client sees late waited for
# the machine (other processes' time slices), not for the queue
curl -s -m 5 "$URL/metrics" | awk '/^mha_refusal_duration_seconds_bucket\{le="0.001"\}/ { a = $2 }
  /^mha_refusal_duration_seconds_bucket\{le="0.01"\}/ { b = $2 } /^mha_refusal_duration_seconds_count/ { n = $2 }
  END { printf "  the server answered %d of %d refusals within 1 ms, %d within 10 ms\n", a, n, b }'
serve_stop
check "overload: every id answered exactly once, with its own id" \
  "$(json "$T/over.json" "int(d['unanswered'] == 0 and d['answered_twice'] == 0 and d['wrong_id'] == 0 and d['differing_answers'] == 0)")"
OVER_P99=$(json "$T/over.json" "d['p99_ms']")
REF_P99=$(json "$T/over.json" "d['refused_p99_ms']")
REFUSED=$(json "$T/over.json" "d['codes'].get('503', 0)")
check "overload: the accepted requests' p99 $OVER_P99 ms <= 2 x $P99 ms" \
  "$(json "$T/over.json" "int(d['p99_ms'] is not None and d['p99_ms'] <= 2 * $P99)")"
check "overload: $REFUSED refused (503), their p99 $REF_P99 ms <= $P99 ms (at once)" \
  "$(json "$T/over.json" "int(d['codes'].get('503', 0) > 0 and (d['refused_p99_ms'] or 1e9) <= $P99)")"

{
  echo "| run | offered/s | s | answered 200 | refused 503 | p50 ms | p99 ms | p99.9 ms | max ms | unanswered, twice, wrong id, differing |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for f in soak over; do
    json "$T/$f.json" "'| $f | %.0f | %.0f | %d | %d | %.2f | %.2f | %.2f | %.2f | %d, %d, %d, %d |' % (d['offered_rps'], d['duration_s'], d['codes'].get('200', 0), d['codes'].get('503', 0), d['p50_ms'] or 0, d['p99_ms'] or 0, d['p99.9_ms'] or 0, d['max_ms'] or 0, d['unanswered'], d['answered_twice'], d['wrong_id'], d['differing_answers'])"
  done
  set -- $rss
  echo
  echo "RSS after a $WARM s warm-up: first $(($1 / 1024)) MiB, last $(($2 / 1024)) MiB, max $(($3 / 1024)) MiB, at the end $((END_RSS / 1024)) MiB; soak p99 $SOAK_P99 ms; load at the end $(load1)"
} >"$T/table.md"
cat "$T/table.md"
[ -z "$OUT" ] || cp "$T/table.md" "$OUT"
[ $FAILED = 0 ] && echo "serve_soak.sh: every check passed" || echo "serve_soak.sh: a check FAILED"
exit $FAILED
