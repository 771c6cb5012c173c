#!/bin/sh
# ort_compare.sh -- one model, one shape, two engines: times the model in
# `mha bench` and in ONNX Runtime (onnxruntime-node, pinned) at the same
# input shapes and thread counts, and prints both medians and their ratio.
#
#   tools/ort_compare.sh MODEL --shape B,S[,S_kv] [--threads 1,2] [--min-time SEC]
#                        [--backend NAME] [--mha PATH]
#
# --backend: the mha backend (default auto: what the runtime picks). --mha:
# the mha binary (default $MHA, else build/bin/mha beside this script, else
# mha on PATH). ONNX Runtime is installed from npm on first use into
# ${XDG_CACHE_HOME:-$HOME/.cache}/mha-ort (the CPU build shipped in the
# package; ONNXRUNTIME_NODE_INSTALL=skip keeps its installer from fetching
# anything else). ORT runs with intra-op threads = the thread count, one
# inter-op thread, sequential execution, all graph optimisations.
# Exit: 0 done, 1 a failure, 2 usage error.
set -eu

ORT_VERSION=1.30.0
here=$(cd "$(dirname "$0")" && pwd)

usage() {
    echo "usage: $0 MODEL --shape B,S[,S_kv] [--threads 1,2] [--min-time SEC] [--backend NAME] [--mha PATH]" >&2
    exit 2
}
die() {
    echo "ort_compare: $*" >&2
    exit 1
}

model="" shape="" threads="1,2" min_time="2" backend="auto" mha="${MHA:-}"
while [ $# -gt 0 ]; do
    case "$1" in
    --shape) [ $# -ge 2 ] || usage; shape=$2; shift 2 ;;
    --threads) [ $# -ge 2 ] || usage; threads=$2; shift 2 ;;
    --min-time) [ $# -ge 2 ] || usage; min_time=$2; shift 2 ;;
    --backend) [ $# -ge 2 ] || usage; backend=$2; shift 2 ;;
    --mha) [ $# -ge 2 ] || usage; mha=$2; shift 2 ;;
    -h | --help) usage ;;
    -*) echo "ort_compare: unknown option $1" >&2; usage ;;
    *) [ -z "$model" ] || usage; model=$1; shift ;;
    esac
done
[ -n "$model" ] && [ -n "$shape" ] || usage
[ -f "$model" ] || die "no such model: $model"
case "$threads" in *[!0-9,]* | "" | ,* | *, | *,,*) echo "ort_compare: --threads wants a list like 1,2" >&2; usage ;; esac
if [ -z "$mha" ]; then
    if [ -x "$here/../build/bin/mha" ]; then mha="$here/../build/bin/mha"; else mha=$(command -v mha || true); fi
fi
[ -n "$mha" ] && [ -x "$mha" ] || die "cannot find the mha binary (build it, or pass --mha PATH)"
command -v node >/dev/null 2>&1 || die "node is needed (apt-get install nodejs npm)"

# ---- ONNX Runtime, pinned, installed once ---------------------------------
cache="${XDG_CACHE_HOME:-$HOME/.cache}/mha-ort"
ort_pkg="$cache/node_modules/onnxruntime-node/package.json"
if ! grep -q "\"version\": \"$ORT_VERSION\"" "$ort_pkg" 2>/dev/null; then
    command -v npm >/dev/null 2>&1 || die "npm is needed to install onnxruntime-node"
    echo "ort_compare: installing onnxruntime-node@$ORT_VERSION into $cache" >&2
    mkdir -p "$cache"
    [ -f "$cache/package.json" ] ||
        printf '{\n  "name": "mha-ort",\n  "private": true,\n  "description": "ONNX Runtime for tools/ort_compare.sh"\n}\n' >"$cache/package.json"
    (cd "$cache" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund \
        --save-exact "onnxruntime-node@$ORT_VERSION" >&2) || die "npm install onnxruntime-node@$ORT_VERSION failed"
fi
NODE_PATH="$cache/node_modules"
export NODE_PATH

work=$(mktemp -d "${TMPDIR:-/tmp}/mha-ort-compare.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

# ---- mha: every thread count in one run -----------------------------------
echo "ort_compare: mha bench ($backend) ..." >&2
mha_rc=0
"$mha" bench "$model" --shape "$shape" --threads "$threads" --backend "$backend" \
    --min-time "$min_time" --json "$work/mha.json" --quiet || mha_rc=$?
[ -f "$work/mha.json" ] || die "mha bench failed (exit $mha_rc)"
[ "$mha_rc" -eq 0 ] || echo "ort_compare: warning: mha bench exited $mha_rc (see above): its numbers may not be valid" >&2

# value of KEY in the result block whose "threads" is T (mha bench writes one
# key per line inside each result)
mha_value() { # mha_value T KEY
    awk -v t="$1" -v key="\"$2\":" '
        /"threads":/ { gsub(/[^0-9]/, "", $2); cur = $2 }
        $1 == key && cur == t { v = $2; gsub(/[",]/, "", v); print v; exit }
    ' "$work/mha.json"
}
flops=$(sed -n 's/^  "flops_per_run": \([^,]*\),$/\1/p' "$work/mha.json")

# ---- ONNX Runtime, one thread count at a time ------------------------------
printf '%-8s %-10s %12s %12s %10s %10s %8s  %s\n' threads mha_backend mha_median_ms \
    ort_median_ms mha_GF/s ort_GF/s ort/mha "(ort/mha > 1: mha is faster)"
old_ifs=$IFS
IFS=,
for t in $threads; do
    IFS=$old_ifs
    echo "ort_compare: onnxruntime, $t thread(s) ..." >&2
    line=$(node "$here/ort_bench.js" --model "$model" --spec "$work/mha.json" --threads "$t" \
        --min-time "$min_time") || die "onnxruntime failed on $model"
    ort_ms=$(echo "$line" | sed -n 's/.*median_ms=\([^ ]*\).*/\1/p')
    mha_ms=$(mha_value "$t" median_ms)
    mha_be=$(awk -v t="$t" '/"backend":/ { b = $2; gsub(/[",]/, "", b) }
        /"threads":/ { v = $2; gsub(/[^0-9]/, "", v); if (v == t) { print b; exit } }' "$work/mha.json")
    mha_ok=$(mha_value "$t" accuracy_ok)
    awk -v t="$t" -v be="${mha_be:-?}" -v m="${mha_ms:-nan}" -v o="${ort_ms:-nan}" \
        -v f="${flops:-0}" -v ok="${mha_ok:-false}" 'BEGIN {
        mg = (m > 0 && f > 0) ? f / (m * 1e-3) / 1e9 : 0
        og = (o > 0 && f > 0) ? f / (o * 1e-3) / 1e9 : 0
        r = (m > 0) ? o / m : 0
        printf "%-8s %-10s %12.4f %12.4f %10.2f %10.2f %8.2f%s\n", t, be, m, o, mg, og, r,
            (ok == "true") ? "" : "  (mha FAILED its accuracy check)"
    }'
    IFS=,
done
IFS=$old_ifs
echo "FLOPs per run: ${flops:-?} (mha bench's count, docs/ARCHITECTURE.md section 1)"
