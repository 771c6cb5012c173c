#!/bin/sh
# rss_table.sh -- the memory table of docs/PERFORMANCE.md: for the four
# whole models of tools/model_table.sh, at their shapes, the float weight
# bytes and the activation arena the engine reports, their sum (what the
# RSS target is measured against), the peak RSS of `mha info` (load and
# verification) and of `mha run` (load, packing, one run), and the peak RSS
# of ONNX Runtime (the peer's ort_model_bench.js) on the same model.
#
#   tools/rss_table.sh [--mha PATH] [--peer DIR] [--models a,b,..] [--threads N]
#                      [--dir DIR] [--out FILE.md]
#
# --dir: where the models are (built there by tools/model_table_models.py
# when missing; default $TMPDIR/mha-model-table, as model_table.sh).
# Peak RSS: /usr/bin/time's maximum resident set size of the process (node
# itself is some 40-50 MiB of ORT's). Weight bytes: `mha info` ("weights");
# arena and scratch: the summary line of `mha run` ("arena N bytes, scratch
# M bytes": the outputs of the fused steps, and the buffers the runtime
# keeps between runs; interpreted steps' values come on top). Outputs: the
# bytes of the model's outputs at the shape (from `mha info`'s output
# lines, the first ? the batch, the second the sequence), which the caller
# holds and the last fused step writes into directly.
# Needs /usr/bin/python3 with numpy (and torch, onnx to build models), node.
# Exit: 0 done, 1 a failure, 2 usage error.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
usage() {
    echo "usage: $0 [--mha PATH] [--peer DIR] [--models a,b,..] [--threads N] [--dir DIR] [--out FILE.md]" >&2
    exit 2
}
die() {
    echo "rss_table: $*" >&2
    exit 1
}

mha="${MHA:-}" peer="${MHA_PEER_DIR:-$here/../../shared/peer}"
models="bert_base,minilm_l6,gpt2_small,vit_b16" threads=1
dir="${TMPDIR:-/tmp}/mha-model-table" out=""
. "$here/model_common.sh"
while [ $# -gt 0 ]; do
    [ "$1" = -h ] || [ "$1" = --help ] && usage
    [ $# -ge 2 ] || usage
    case "$1" in
    --threads) threads=$2 ;;
    *) model_common_option "$1" "$2" || { echo "rss_table: unknown argument $1" >&2; usage; } ;;
    esac
    shift 2
done
model_common_setup "$here" "$mha" "$peer" "$dir" "$models"

work=$(mktemp -d "${TMPDIR:-/tmp}/rss_table.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
rows="$work/rows"
: >"$rows"
for m in $(echo "$models" | tr ',' ' '); do
    set -- $(shape_of "$m")
    B=$1 S=$2
    f="$dir/$m/model.onnx"
    # the inputs ort_model_bench.js makes too: token ids, all-ones masks, images
    "$py" - "$work" "$m" "$B" "$S" <<'PY' || die "making the inputs of $m failed"
import sys, numpy as np
d, m, B, S = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
r = np.random.default_rng(7)
if m == "vit_b16":
    np.save(f"{d}/{m}.0.npy", r.standard_normal((B, 3, 224, 224)).astype(np.float32))
else:
    np.save(f"{d}/{m}.0.npy", r.integers(0, 8192, (B, S)).astype(np.int64))
    if m != "gpt2_small":
        np.save(f"{d}/{m}.1.npy", np.ones((B, S), np.int64))
PY
    ins="$work/$m.0.npy"
    [ -f "$work/$m.1.npy" ] && ins="$ins $work/$m.1.npy"
    echo "rss_table: $m: mha info" >&2
    /usr/bin/time -f "rss_kib=%M" "$mha" info "$f" >"$work/info" 2>"$work/info.err" ||
        die "mha info $m failed: $(tail -2 "$work/info.err")"
    weights=$(sed -n 's/^weights: *\([0-9]*\) bytes.*/\1/p' "$work/info")
    outputs=$(awk -v B="$B" -v S="$S" '$1 == "output" {
        d = $0; sub(/.*\[/, "", d); sub(/\].*/, "", d); n = split(d, a, ", ");
        size = ($4 == "float64" || $4 == "int64") ? 8 : 4; q = 0;
        for (i = 1; i <= n; i++) { if (a[i] == "?") { q++; a[i] = q == 1 ? B : S } size *= a[i] }
        total += size } END { printf "%d", total }' "$work/info")
    load_kib=$(sed -n 's/^rss_kib=//p' "$work/info.err")
    echo "rss_table: $m: mha run, $threads thread(s)" >&2
    # shellcheck disable=SC2086 # $ins: one or two files
    /usr/bin/time -f "rss_kib=%M" "$mha" run "$f" $ins -o /dev/null --threads "$threads" \
        2>"$work/run.err" || die "mha run $m failed: $(tail -2 "$work/run.err")"
    run_kib=$(sed -n 's/^rss_kib=//p' "$work/run.err")
    arena=$(sed -n 's/.*; arena \([0-9]*\) bytes.*/\1/p' "$work/run.err")
    scratch=$(sed -n 's/.*; arena [0-9]* bytes, scratch \([0-9]*\) bytes.*/\1/p' "$work/run.err")
    echo "rss_table: $m: ONNX Runtime, $threads thread(s)" >&2
    /usr/bin/time -f "rss_kib=%M" node "$peer/ort_model_bench.js" "$f" --batch "$B" --seq "$S" \
        --threads "$threads" --min-time 1 --warmup 1 >/dev/null 2>"$work/ort.err" ||
        die "ORT on $m failed: $(tail -3 "$work/ort.err")"
    ort_kib=$(sed -n 's/^rss_kib=//p' "$work/ort.err")
    echo "$m $B $S ${weights:-0} ${arena:-0} ${scratch:-0} $load_kib $run_kib $ort_kib ${outputs:-0}" >>"$rows"
done

table() {
    echo "| model (B, S) | weights MiB | arena + scratch + outputs MiB | expected MiB | mha load peak MiB | mha run peak MiB | run / expected | ONNX Runtime peak MiB |"
    echo "|---|---|---|---|---|---|---|---|"
    awk '{ w = $4 / 1048576; a = $5 / 1048576; s = $6 / 1048576; o = $10 / 1048576; e = w + a + s + o;
           printf "| %s (%s, %s) | %.0f | %.0f + %.0f + %.0f | %.0f | %.0f | %.0f | %.2f | %.0f |\n",
                  $1, $2, $3, w, a, s, o, e, $7 / 1024, $8 / 1024, ($8 / 1024) / e, $9 / 1024 }' "$rows"
    echo
    echo "mha $("$mha" --version 2>/dev/null | head -1), $threads thread(s), backend auto; $(uptime | sed 's/.*load/load/')"
}

if [ -n "$out" ]; then table >"$out"; else table; fi
