#!/bin/sh
# serve_ceiling.sh -- the highest rate at the p99 bound that any request
# queue could reach at the engine's measured costs (docs/SERVING.md, "The
# float32 ceiling"):
#
#   1. `serve-cpu MODEL --ceiling B`: the CPU ms a request of one mha_run of
#      b = 1..B requests, on 1 thread and on 2 (medians of --rounds, the two
#      alternating): the arithmetic a batch costs, with no queue around it;
#   2. tools/queue_bound.py on those costs (Poisson arrivals, p99 <= the
#      bound): every batch on one core with two of them at once (2
#      servers), and every batch on both cores (1 server), batches capped
#      at 1, 2, 4, 8 and 16; and the fluid bound (every core busy at the
#      cheapest batch that fits the bound, nobody waiting), which no queue
#      passes;
#
# for the d_model 768, 12-head layer at S 32 and S 8 and a MiniLM-shaped
# model (tools/make_minilm.py) at S 16, in float32 and bfloat16; each rate
# as a share of what the two-core FMA (float32) peak allows and of the
# two-core bfloat16 (VDPBF16PS) peak.
#
#   tools/serve_ceiling.sh [--rounds R] [--reps N] [--max-batch B] [--p99-ms X]
#                          [--peak GFLOPS] [--peak16 GFLOPS] [--precision P]
#                          [--rows "layer32 layer8 minilm16"] [--out FILE]
#
# --peak / --peak16: the two-core peaks in GFLOP/s (default: `mha peak`
# now, which a loaded machine lowers: give the quiet figures there).
# --precision float32, bfloat16 or both (default). CPU time is what a shared
# machine inflates least, but it does inflate it (caches, clocks): the
# ceiling of a loaded machine is below a quiet one's.
# Env: MHA (default build/bin/mha), SERVE_CPU (default serve-cpu beside it),
# PY_TORCH (a Python with torch and onnx, for the MiniLM model; default
# /usr/bin/python3). Not part of `make test`; a few minutes on a quiet machine.
set -eu
ROUNDS=3
REPS=40
MAXB=16
P99=10
PEAK=
PEAK16=
PRECS="float32 bfloat16"
ROWS="layer32 layer8 minilm16"
OUT=
while [ $# -gt 0 ]; do
  case "$1" in
  --rounds) ROUNDS=$2; shift 2 ;;
  --reps) REPS=$2; shift 2 ;;
  --max-batch) MAXB=$2; shift 2 ;;
  --p99-ms) P99=$2; shift 2 ;;
  --peak) PEAK=$2; shift 2 ;;
  --peak16) PEAK16=$2; shift 2 ;;
  --precision) [ "$2" = both ] && PRECS="float32 bfloat16" || PRECS=$2; shift 2 ;;
  --rows) ROWS=$2; shift 2 ;;
  --out) OUT=$2; shift 2 ;;
  -h | --help) sed -n '2,33p' "$0"; exit 0 ;;
  *) echo "serve_ceiling.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
HERE=$(cd "$(dirname "$0")" && pwd)
MHA=${MHA:-$HERE/../build/bin/mha}
SERVE_CPU=${SERVE_CPU:-$(dirname "$MHA")/serve-cpu}
PY_TORCH=${PY_TORCH:-/usr/bin/python3}
[ -x "$MHA" ] || { echo "serve_ceiling.sh: no mha at $MHA (make build)" >&2; exit 1; }
[ -x "$SERVE_CPU" ] || { echo "serve_ceiling.sh: no serve-cpu at $SERVE_CPU" >&2; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/serve_ceiling.XXXXXX")
trap 'rm -rf "$T"' EXIT INT TERM
. "$HERE/serve_flops.sh"

if [ -z "$PEAK" ] || [ -z "$PEAK16" ]; then
  "$MHA" peak --threads 2 --reps 3 --seconds 0.2 --json "$T/peak.json" >/dev/null
  [ -n "$PEAK" ] || PEAK=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print((d.get('avx512') or d['avx2'])['2'])" "$T/peak.json")
  [ -n "$PEAK16" ] || PEAK16=$(python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print((d.get('avx512bf16') or {}).get('2', 0))" "$T/peak.json")
fi
"$MHA" gen -d 768 -H 12 --seed 1 -o "$T/layer768.onnx" >/dev/null

# bound SERVERS COSTS PEAK-RPS: queue_bound.py's best capped rate and its
# fluid bound, "best fluid"
bound() {
  python3 "$HERE/queue_bound.py" --servers "$1" --costs "$2" --cap 1 2 4 8 16 --p99-ms "$P99" \
    --requests 20000 >"$T/qb.txt"
  best=$(sed -n 's/.*the best batch cap: \([0-9]*\) requests.*/\1/p' "$T/qb.txt")
  fluid=$(sed -n 's/.*fluid bound (batches of \([0-9]*\),.*: \([0-9]*\) requests.*/\2 b\1/p' "$T/qb.txt")
  echo "$best $fluid"
}
pct() { awk -v r="$1" -v f="$2" -v p="$3" 'BEGIN { printf "%.0f", (p > 0 ? 100 * r * f / (p * 1e9) : 0) }'; }

{
  echo "Two-core peaks: FMA (float32) $PEAK GFLOP/s, bfloat16 $PEAK16 GFLOP/s; p99 <= $P99 ms; serve-cpu --ceiling $MAXB --rounds $ROUNDS --reps $REPS"
  echo
  echo "| request | precision | CPU ms a request alone, 1 / 2 threads | cheapest (b: CPU ms a request, 1 thread) | a core each (2 servers): best rate | both cores a batch (1 server): best rate | fluid bound (batch) | best queue, % of the FMA peak's rate | fluid, % of the FMA peak's rate | best queue, % of the bf16 peak's rate |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
} >"$T/table.md"
for row in $ROWS; do
  case $row in
  layer*) S=${row#layer}; model="$T/layer768.onnx"; flops=$(layer_flops "$S" 768) ;;
  minilm*)
    S=${row#minilm}
    [ -s "$T/minilm.onnx" ] || "$PY_TORCH" "$HERE/make_minilm.py" "$T/minilm.onnx" >/dev/null 2>&1 ||
      { echo "serve_ceiling.sh: no MiniLM model ($PY_TORCH lacks torch or onnx)" >&2; continue; }
    model="$T/minilm.onnx"; flops=$(minilm_flops "$S") ;;
  *) echo "serve_ceiling.sh: unknown row $row" >&2; exit 2 ;;
  esac
  for prec in $PRECS; do
    echo "== $row $prec (load $(uptime | sed 's/.*load average: *\([0-9.]*\).*/\1/'))" >&2
    "$SERVE_CPU" "$model" --lengths "$S" --ceiling "$MAXB" --rounds "$ROUNDS" --reps "$REPS" \
      --threads 2 --precision "$prec" >"$T/c.txt"
    cat "$T/c.txt" >&2
    c1=$(sed -n 's/^costs 1 thread .*: //p' "$T/c.txt")
    c2=$(sed -n 's/^costs 2 threads .*: //p' "$T/c.txt")
    alone=$(awk '$1 == "1" && $2 == "|" { printf "%.3f / %.3f", $3, $6 }' "$T/c.txt")
    cheap=$(awk '$2 == "|" && $1 ~ /^[0-9]+$/ && (m == "" || $3 < m) { m = $3; b = $1 } END { printf "%d: %.3f", b, m }' "$T/c.txt")
    # shellcheck disable=SC2046 # three words
    set -- $(bound 2 "$c1")
    r2=$1 f2=$2 fb2=$3
    # shellcheck disable=SC2046
    set -- $(bound 1 "$c2")
    r1=$1 f1=$2 fb1=$3
    best=$r2 fluid=$f2 fb=$fb2
    [ "$r1" -gt "$best" ] && best=$r1
    [ "$f1" -gt "$fluid" ] && fluid=$f1 fb="$fb1 on both cores"
    echo "  a core each: $r2/s (fluid $f2/s, $fb2); both cores a batch: $r1/s (fluid $f1/s, $fb1)" >&2
    printf '| %s S %s | %s | %s | %s | %s/s | %s/s | %s/s (%s) | %s %% | %s %% | %s %% |\n' \
      "${row%%[0-9]*}" "$S" "$prec" "$alone" "$cheap" "$r2" "$r1" "$fluid" "$fb" \
      "$(pct "$best" "$flops" "$PEAK")" "$(pct "$fluid" "$flops" "$PEAK")" \
      "$(pct "$best" "$flops" "$PEAK16")" >>"$T/table.md"
  done
done
cat "$T/table.md"
[ -z "$OUT" ] || cp "$T/table.md" "$OUT"
