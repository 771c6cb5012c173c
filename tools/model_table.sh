#!/bin/sh
# model_table.sh -- the whole-model table of docs/PERFORMANCE.md, in one run:
# four transformer models at the shapes of the whole-model issue, built with
# random weights by tools/model_table_models.py (PyTorch), timed by `mha
# bench` and by ONNX Runtime (the peer's ort_model_bench.js, graph
# optimisation level all) at 1 and 2 threads, model by model (both engines
# see the same machine state), with the peak RSS of both.
#
#   tools/model_table.sh [--mha PATH] [--peer DIR] [--models a,b,..] [--min-time SEC]
#                        [--passes N] [--precision float32[,bfloat16]] [--dir DIR]
#                        [--out FILE.md]
#
# models: bert_base (B 8, S 128), minilm_l6 (B 32, S 128), gpt2_small (B 4,
# S 256), vit_b16 (B 8, 224x224). --peer: the folder holding
# ort_model_bench.js (default ../shared/peer beside the repository, or
# $MHA_PEER_DIR); ONNX Runtime comes from its setup ($MHA_PEER_HOME).
# The bench gives each configuration 2 hours (its scalar reference run of
# GPT-2 took over the default 600 s on a loaded machine).
# The bench gives each configuration 2 hours (--timeout: the scalar
# reference run of GPT-2 took over the default 600 s on a loaded machine).
# --dir: where the models are written (default $TMPDIR/mha-model-table; kept,
# a model is only built when missing). --passes: times each model N times,
# alternating the engines; the table gives the medians over the passes.
#
# FLOPs are counted here from the architecture (every GEMM 2*M*N*K,
# attention 4*B*S^2*D per layer, halved when causal, the patch Conv as a
# GEMM, GPT-2's logits through the tied embedding); "% of peak" divides
# FLOPs / time by the FMA peak `mha peak` measures (its best FMA ISA; not the bfloat16 dot-product row) right
# before each model. Peak RSS: mha, the bench process of that configuration
# (it reports it); ORT, /usr/bin/time of the node process (node itself is
# some 40-50 MiB of it). Needs /usr/bin/python3 with torch and onnx, node.
# --precision float32,bfloat16 also times mha's bfloat16 mode (`mha bench
# --precision bfloat16 --backend avx512`, right after the float32 bench of
# the same model) and prints a second table: its time against mha's float32
# and ONNX Runtime's float32 (the ratio the precision issue asks for), its %
# of the VDPBF16PS peak (`mha peak`'s avx512bf16 row) and its error against
# the scalar float32 reference (max and mean of |y - ref| / max |ref|).
# Exit: 0 done, 1 a failure, 2 usage error.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
usage() {
    echo "usage: $0 [--mha PATH] [--peer DIR] [--models a,b,..] [--min-time SEC] [--passes N] [--precision float32[,bfloat16]] [--dir DIR] [--out FILE.md]" >&2
    exit 2
}
die() {
    echo "model_table: $*" >&2
    exit 1
}

mha="${MHA:-}" peer="${MHA_PEER_DIR:-$here/../../shared/peer}" models="bert_base,minilm_l6,gpt2_small,vit_b16"
min_time=3 passes=1 dir="${TMPDIR:-/tmp}/mha-model-table" out="" precisions=float32
# every option takes one value
. "$here/model_common.sh"
while [ $# -gt 0 ]; do
    [ "$1" = -h ] || [ "$1" = --help ] && usage
    [ $# -ge 2 ] || usage
    case "$1" in
    --min-time) min_time=$2 ;;
    --passes) passes=$2 ;;
    --precision) precisions=$2 ;;
    *) model_common_option "$1" "$2" || { echo "model_table: unknown argument $1" >&2; usage; } ;;
    esac
    shift 2
done
case ",$precisions," in
,float32,|,float32,bfloat16,|,bfloat16,float32,) ;;
*) echo "model_table: --precision takes float32 or float32,bfloat16" >&2; usage ;;
esac
model_common_setup "$here" "$mha" "$peer" "$dir" "$models"

# mha_rows JSON MODEL PASS "PEAK1 PEAK2" ENGINE: one line of results.jsonl
# per configuration of a `mha bench --json` file
mha_rows() {
    "$py" - "$@" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p1, p2 = (float(x) for x in sys.argv[4].split())
for r in d["results"]:
    print(json.dumps({"model": sys.argv[2], "pass": int(sys.argv[3]), "engine": sys.argv[5],
                      "backend": r["backend"], "threads": r["threads"], "ok": r["ran"] and r["accuracy_ok"],
                      "median_ms": r.get("median_ms"), "rss_mib": r.get("peak_rss_mib"),
                      "max_rel_err": r.get("max_rel_err"), "mean_rel_err": r.get("mean_rel_err"),
                      "peak": p1 if r["threads"] == 1 else p2}))
PY
}

raw="$dir/results.jsonl"
: >"$raw"
pass=1
while [ "$pass" -le "$passes" ]; do
    for m in $(echo "$models" | tr ',' ' '); do
        set -- $(shape_of "$m")
        B=$1 S=$2
        f="$dir/$m/model.onnx"
        peaks=$("$mha" peak 2>/dev/null | awk 'NR > 1 && $1 != "avx512bf16" && $2 == 1 && $3 > p1 { p1 = $3 } NR > 1 && $1 != "avx512bf16" && $2 == 2 && $3 > p2 { p2 = $3 } $1 == "avx512bf16" && $2 == 1 { b1 = $3 } $1 == "avx512bf16" && $2 == 2 { b2 = $3 } END { print p1 + 0, p2 + 0, b1 + 0, b2 + 0 }')
        peak=$(echo "$peaks" | cut -d' ' -f1,2)
        bpeak=$(echo "$peaks" | cut -d' ' -f3,4)
        echo "model_table: $m pass $pass: mha (peak $peak GFLOP/s)" >&2
        "$mha" bench "$f" --shape "$B,$S" --threads 1,2 --backend auto --min-time "$min_time" \
            --warmup 2 --timeout 7200 --quiet --json "$dir/$m.mha.json" >&2 || die "mha bench $m failed"
        mha_rows "$dir/$m.mha.json" "$m" "$pass" "$peak" mha >>"$raw"
        case ",$precisions," in
        *,bfloat16,*)
            echo "model_table: $m pass $pass: mha bfloat16 (peak $bpeak GFLOP/s)" >&2
            "$mha" bench "$f" --shape "$B,$S" --threads 1,2 --backend avx512 --precision bfloat16 \
                --min-time "$min_time" --warmup 2 --timeout 7200 --quiet --json "$dir/$m.bf16.json" >&2 ||
                die "mha bench --precision bfloat16 $m failed"
            mha_rows "$dir/$m.bf16.json" "$m" "$pass" "$bpeak" mha_bf16 >>"$raw"
            ;;
        esac
        for t in 1 2; do
            echo "model_table: $m pass $pass: ONNX Runtime, $t thread(s)" >&2
            res=$(/usr/bin/time -f "rss_kib=%M" node "$peer/ort_model_bench.js" "$f" --batch "$B" \
                --seq "$S" --threads "$t" --min-time "$min_time" 2>"$dir/$m.ort.err") ||
                die "ORT on $m failed: $(tail -3 "$dir/$m.ort.err")"
            rss=$(sed -n 's/^rss_kib=//p' "$dir/$m.ort.err")
            echo "$res" | "$py" -c '
import json, sys
d = json.loads(sys.stdin.readline())
p = [float(x) for x in sys.argv[4].split()]
print(json.dumps({"model": sys.argv[1], "pass": int(sys.argv[2]), "engine": "ort", "threads": d["threads"],
                  "ok": True, "median_ms": d["median_ms"], "rss_mib": int(sys.argv[3]) / 1024.0,
                  "peak": p[0] if d["threads"] == 1 else p[1]}))' "$m" "$pass" "$rss" "$peak" >>"$raw"
        done
    done
    pass=$((pass + 1))
done

# the table: medians over passes, FLOPs from the architecture
"$py" - "$raw" "$dir" <<'PY' >"${out:-/dev/stdout}"
import json, os, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
# name: (layers, d, FFN, B, S, causal, extra GEMM FLOPs)
def flops(m):
    L, D, F, B, S, causal, extra = {
        "bert_base": (12, 768, 3072, 8, 128, 0, 2 * 8 * 768 * 768),
        "minilm_l6": (6, 384, 1536, 32, 128, 0, 2 * 32 * 384 * 384),
        "gpt2_small": (12, 768, 3072, 4, 256, 1, 2 * 4 * 256 * 768 * 50257),
        "vit_b16": (12, 768, 3072, 8, 197, 0, 2 * 8 * 196 * 3 * 16 * 16 * 768),
    }[m]
    T = B * S
    attn = 4 * B * S * S * D * (0.5 if causal else 1.0)
    return L * (2 * T * (4 * D * D + 2 * D * F) + attn) + extra
def med(m, eng, t, key):
    v = [r[key] for r in rows if r["model"] == m and r["engine"] == eng and r["threads"] == t and r.get(key)]
    return statistics.median(v) if v else float("nan")
shape = {"bert_base": "B 8, S 128", "minilm_l6": "B 32, S 128", "gpt2_small": "B 4, S 256",
         "vit_b16": "B 8, 224x224"}
print("| model | shape | GFLOP | weights MiB | threads | mha ms | ORT ms | ORT / mha | mha % of peak | ORT % of peak | peak RSS mha / ORT MiB |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for m in dict.fromkeys(r["model"] for r in rows):
    fl = flops(m)
    wmib = os.path.getsize(os.path.join(sys.argv[2], m, "model.onnx")) / 2**20
    for t in (1, 2):
        a, o = med(m, "mha", t, "median_ms"), med(m, "ort", t, "median_ms")
        pk = med(m, "mha", t, "peak")
        pct = lambda ms: 100.0 * fl / (ms * 1e-3) / (pk * 1e9) if pk and ms == ms else float("nan")
        ok = all(r["ok"] for r in rows if r["model"] == m and r["engine"] == "mha" and r["threads"] == t)
        print("| %s | %s | %.1f | %.0f | %d | %.0f%s | %.0f | %.2f | %.0f %% | %.0f %% | %.0f / %.0f |" % (
            m, shape[m], fl / 1e9, wmib, t, a, "" if ok else " (check failed)", o, o / a,
            pct(a), pct(o), med(m, "mha", t, "rss_mib"), med(m, "ort", t, "rss_mib")))
if any(r["engine"] == "mha_bf16" for r in rows):
    print()
    print("bfloat16 mode (`mha bench --precision bfloat16 --backend avx512`), against mha's float32 and ONNX Runtime's float32 above; % of the VDPBF16PS peak; errors against the scalar float32 reference:")
    print()
    print("| model | threads | mha bfloat16 ms | mha float32 / bfloat16 | ORT float32 / mha bfloat16 | % of bf16 peak | max rel err | mean rel err | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m in dict.fromkeys(r["model"] for r in rows if r["engine"] == "mha_bf16"):
        fl = flops(m)
        for t in (1, 2):
            b, a, o = med(m, "mha_bf16", t, "median_ms"), med(m, "mha", t, "median_ms"), med(m, "ort", t, "median_ms")
            pk = med(m, "mha_bf16", t, "peak")
            ok = all(r["ok"] for r in rows if r["model"] == m and r["engine"] == "mha_bf16" and r["threads"] == t)
            print("| %s | %d | %.0f%s | %.2f | %.2f | %.0f %% | %.1e | %.1e | %.0f |" % (
                m, t, b, "" if ok else " (check failed)", a / b, o / b,
                100.0 * fl / (b * 1e-3) / (pk * 1e9) if pk else float("nan"),
                med(m, "mha_bf16", t, "max_rel_err"), med(m, "mha_bf16", t, "mean_rel_err"),
                med(m, "mha_bf16", t, "rss_mib")))
PY
