#!/bin/sh
# perf_table.sh -- the performance table of docs/PERFORMANCE.md, in one run:
# mha (every SIMD backend, 1 and 2 threads) against ONNX Runtime (pinned
# onnxruntime-node, each of the three model forms) on the five reference
# workloads, plus the peak RSS of a long sequence (W3 at S = 8192).
#
#   tools/perf_table.sh [--mha PATH] [--min-time SEC] [--threads 1,2]
#                       [--workloads W1,W2,...] [--precision float32,bfloat16]
#                       [--out FILE.md] [--keep DIR]
#
# Per workload it writes the layer with `mha gen --form attention23|ms_mha|
# decomposed` (same seed, same weights), runs `mha bench --json` on the
# attention23 file (every backend x thread count), then ONNX Runtime on each
# form at each thread count right after it (alternating engines workload by
# workload, so both see the same machine state), and prints a markdown table:
# median ms, GFLOP/s, % of the AVX-512 peak, ORT's best form and time, the
# ratio ORT / mha, peak RSS, and how busy the rest of the machine was.
# bfloat16 (`mha bench --precision bfloat16`, the backends that serve it:
# avx512) is timed right after the float32 bench of the same workload; its
# rows stand under the float32 ones with their own peak (VDPBF16PS, also
# measured by `mha peak`), the ratio to ONNX Runtime's best float32 form and
# to mha's own float32 avx512 row, and every row gives its error against the
# scalar float32 reference (max and mean of |y - ref| / max |ref|).
# ONNX Runtime is installed on first use exactly as tools/ort_compare.sh does
# (same pinned version, same cache folder).
#
# Peaks: `mha peak` measures the FMA throughput (AVX-512 and AVX2, per thread
# count) right before each workload; that workload's "% of peak" is against
# it, because a shared machine's boost clock moves (this one measured
# 222 / 441 GFLOP/s on one day, 270 / 535 on another, and a few percent
# between the start and the end of one run). The table also gives the figures of the performance issue
# (222 / 441) for comparison. MHA_PEAK1 / MHA_PEAK2 (GFLOP/s) override the
# measured AVX-512 peaks (AVX2: half); MHA_PEAK_BF16_1 / MHA_PEAK_BF16_2 the
# bfloat16 ones.
# Exit: 0 done, 1 a failure, 2 usage error.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
ORT_VERSION=$(sed -n 's/^ORT_VERSION=\(.*\)$/\1/p' "$here/ort_compare.sh")
[ -n "$ORT_VERSION" ] || ORT_VERSION=1.30.0

usage() {
    echo "usage: $0 [--mha PATH] [--min-time SEC] [--threads 1,2] [--workloads W1,..] [--precision float32,bfloat16] [--out FILE.md] [--keep DIR]" >&2
    exit 2
}
die() {
    echo "perf_table: $*" >&2
    exit 1
}

mha="${MHA:-}" min_time=2 threads="1,2" workloads="W1,W2,W3,W4,W5" precisions="float32,bfloat16" out="" keep=""
while [ $# -gt 0 ]; do
    case "$1" in
    --mha) [ $# -ge 2 ] || usage; mha=$2; shift 2 ;;
    --min-time) [ $# -ge 2 ] || usage; min_time=$2; shift 2 ;;
    --threads) [ $# -ge 2 ] || usage; threads=$2; shift 2 ;;
    --workloads) [ $# -ge 2 ] || usage; workloads=$2; shift 2 ;;
    --precision) [ $# -ge 2 ] || usage; precisions=$2; shift 2 ;;
    --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
    --keep) [ $# -ge 2 ] || usage; keep=$2; shift 2 ;;
    -h | --help) usage ;;
    *) echo "perf_table: unknown argument $1" >&2; usage ;;
    esac
done
if [ -z "$mha" ]; then
    if [ -x "$here/../build/bin/mha" ]; then mha="$here/../build/bin/mha"; else mha=$(command -v mha || true); fi
fi
[ -n "$mha" ] && [ -x "$mha" ] || die "cannot find the mha binary (build it, or pass --mha PATH)"
bf16=0
case ",$precisions," in *,bfloat16,*) bf16=1 ;; esac
case ",$precisions," in *,float32,*) ;; *) die "--precision must include float32 (the rows bfloat16 is compared with)" ;; esac
command -v node >/dev/null 2>&1 || die "node is needed (apt-get install nodejs npm)"

# ---- ONNX Runtime, pinned, installed once (as tools/ort_compare.sh) --------
cache="${XDG_CACHE_HOME:-$HOME/.cache}/mha-ort"
ort_pkg="$cache/node_modules/onnxruntime-node/package.json"
if ! grep -q "\"version\": \"$ORT_VERSION\"" "$ort_pkg" 2>/dev/null; then
    command -v npm >/dev/null 2>&1 || die "npm is needed to install onnxruntime-node"
    echo "perf_table: installing onnxruntime-node@$ORT_VERSION into $cache" >&2
    mkdir -p "$cache"
    [ -f "$cache/package.json" ] ||
        printf '{\n  "name": "mha-ort",\n  "private": true,\n  "description": "ONNX Runtime for tools/ort_compare.sh"\n}\n' >"$cache/package.json"
    (cd "$cache" && ONNXRUNTIME_NODE_INSTALL=skip npm install --no-audit --no-fund \
        --save-exact "onnxruntime-node@$ORT_VERSION" >&2) || die "npm install onnxruntime-node@$ORT_VERSION failed"
fi
NODE_PATH="$cache/node_modules"
export NODE_PATH

if [ -n "$keep" ]; then
    work=$keep
    mkdir -p "$work"
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/mha-perf-table.XXXXXX")
    trap 'rm -rf "$work"' EXIT INT TERM
fi

# name B S D H causal: the reference workloads (self-attention, float32)
workload_spec() {
    case "$1" in
    W1) echo "32 128 768 12 0" ;;
    W2) echo "1 32 768 12 0" ;;
    W3) echo "1 2048 512 8 0" ;;
    W4) echo "8 256 512 8 0" ;;
    W5) echo "1 4096 1024 16 1" ;;
    *) die "unknown workload $1 (W1..W5)" ;;
    esac
}

cpu_busy() { # "user+nice+system+irq+softirq+steal total" jiffies of all CPUs
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

old_ifs=$IFS
IFS=,
for w in $workloads; do
    IFS=$old_ifs
    set -- $(workload_spec "$w")
    B=$1 S=$2 D=$3 H=$4 causal=$5
    copt=""
    [ "$causal" = 1 ] && copt="--causal"
    for form in attention23 ms_mha decomposed; do
        "$mha" gen -d "$D" -H "$H" $copt --seed 0 --form "$form" -o "$work/$w.$form.onnx" ||
            die "mha gen --form $form failed for $w"
    done
    # scalar is timed on the small workload only (it is the reference of
    # every accuracy check anyway; on the big ones it would take minutes)
    backends="avx512,avx2,openmp"
    [ "$w" = W2 ] && backends="avx512,avx2,openmp,scalar"
    echo "perf_table: $w: mha peak ..." >&2
    "$mha" peak --threads "$threads" --reps 3 --seconds 0.2 --json "$work/$w.peak.json" >/dev/null ||
        die "mha peak failed"
    echo "perf_table: $w (B $B, S $S, D $D, H $H$([ "$causal" = 1 ] && echo ", causal")): mha bench ..." >&2
    rc=0
    "$mha" bench "$work/$w.attention23.onnx" --shape "$B,$S" --backend "$backends" \
        --threads "$threads" --min-time "$min_time" --json "$work/$w.mha.json" --quiet || rc=$?
    [ -f "$work/$w.mha.json" ] || die "mha bench failed on $w (exit $rc)"
    [ "$rc" -eq 0 ] || echo "perf_table: warning: mha bench exited $rc on $w" >&2
    if [ "$bf16" = 1 ]; then
        echo "perf_table: $w: mha bench --precision bfloat16 ..." >&2
        rc=0
        "$mha" bench "$work/$w.attention23.onnx" --shape "$B,$S" --backend avx512 --precision bfloat16 \
            --threads "$threads" --min-time "$min_time" --json "$work/$w.mha_bf16.json" --quiet || rc=$?
        [ -f "$work/$w.mha_bf16.json" ] || die "mha bench --precision bfloat16 failed on $w (exit $rc)"
        [ "$rc" -eq 0 ] || echo "perf_table: warning: mha bench --precision bfloat16 exited $rc on $w" >&2
    fi
    IFS=,
    for t in $threads; do
        IFS=$old_ifs
        for form in attention23 ms_mha decomposed; do
            echo "perf_table: $w: onnxruntime $form, $t thread(s) ..." >&2
            b0=$(cpu_busy)
            line=$(node "$here/ort_bench.js" --model "$work/$w.$form.onnx" --spec "$work/$w.mha.json" \
                --threads "$t" --min-time "$min_time") || line="failed"
            b1=$(cpu_busy)
            echo "$w $t $form $line busy0=${b0% *} total0=${b0#* } busy1=${b1% *} total1=${b1#* }" >>"$work/ort.txt"
        done
        IFS=,
    done
    IFS=,
done
IFS=$old_ifs

# ---- memory: W3's layer at S = 8192 (linear in S: no S x S buffer) --------
echo "perf_table: peak RSS of W3 at S=8192 ..." >&2
"$mha" gen -d 512 -H 8 --seed 0 -o "$work/rss.onnx" || die "mha gen failed"
"$mha" bench "$work/rss.onnx" --shape 1,8192 --backend avx512 --threads 1,2 --warmup 0 \
    --min-time 0 --json "$work/rss.json" --quiet || echo "perf_table: warning: the RSS bench exited nonzero" >&2
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- the table ------------------------------------------------------------
table=$(MHA_PT_WORK="$work" MHA_PT_WORKLOADS="$workloads" MHA_PT_START="$start" \
    MHA_PT_LOAD="$load_before -> $load_after" MHA_PT_ORT="$ORT_VERSION" node -e '
const fs = require("fs");
const work = process.env.MHA_PT_WORK;
const nominal = { 1: 222, 2: 441 }; /* the figures of the performance issue */
const pk = {};
for (const w of process.env.MHA_PT_WORKLOADS.split(","))
  pk[w] = JSON.parse(fs.readFileSync(`${work}/${w}.peak.json`, "utf8"));
const peakOf = (w, isa, t) => {
  const env = process.env[(isa === "avx512bf16" ? "MHA_PEAK_BF16_" : "MHA_PEAK") + t];
  if (env) return (isa === "avx2" ? 0.5 : 1) * Number(env);
  return pk[w][isa] && pk[w][isa][t] ? pk[w][isa][t] : NaN;
};
const readJson = (f) => { try { return JSON.parse(fs.readFileSync(f, "utf8")); } catch (e) { return null; } };
const ort = {};
for (const l of fs.readFileSync(work + "/ort.txt", "utf8").split("\n")) {
  const f = l.split(" ");
  if (f.length < 4) continue;
  const kv = {};
  for (const x of f.slice(3)) { const i = x.indexOf("="); if (i > 0) kv[x.slice(0, i)] = x.slice(i + 1); }
  const key = f[0] + "/" + f[1];
  (ort[key] = ort[key] || []).push({ form: f[2], ms: Number(kv.median_ms) || NaN });
}
const fx = (v, d) => (Number.isFinite(v) ? v.toFixed(d) : "-");
const rows = [];
rows.push("| workload | threads | backend | precision | median ms | GFLOP/s | % of peak (measured) | % of 222 / 441 | ORT best (form) ms | ORT / mha | mha float32 / this | max rel err | mean rel err | peak RSS MiB | other_cpus |");
rows.push("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
const names = { W1: "W1 B32 S128 D768 H12", W2: "W2 B1 S32 D768 H12", W3: "W3 B1 S2048 D512 H8",
  W4: "W4 B8 S256 D512 H8", W5: "W5 B1 S4096 D1024 H16 causal" };
for (const w of process.env.MHA_PT_WORKLOADS.split(",")) {
  const j = JSON.parse(fs.readFileSync(`${work}/${w}.mha.json`, "utf8"));
  const byT = {};
  for (const r of j.results) (byT[r.threads] = byT[r.threads] || []).push(r);
  const jb = readJson(`${work}/${w}.mha_bf16.json`);
  if (jb) for (const r of jb.results) (byT[r.threads] = byT[r.threads] || []).push({ ...r, bf16: true });
  for (const t of Object.keys(byT).sort()) {
    const o = (ort[w + "/" + t] || []).filter((x) => Number.isFinite(x.ms));
    o.sort((a, b) => a.ms - b.ms);
    const best = o[0];
    const ortAll = (ort[w + "/" + t] || []).map((x) => `${x.form} ${fx(x.ms, 2)}`).join(", ");
    const f32 = byT[t].find((r) => !r.bf16 && r.backend === "avx512" && r.ran);
    for (const r of byT[t]) {
      const prec = r.bf16 ? "bfloat16" : "float32";
      if (!r.ran) { rows.push(`| ${names[w]} | ${t} | ${r.backend} | ${prec} | ERROR: ${r.error} | | | | | | | | | | |`); continue; }
      /* avx2 against the AVX2 peak; avx512 and openmp (its AVX-512 kernels
       * on this machine) against the AVX-512 one; bfloat16 against the
       * VDPBF16PS one; scalar: none. The 222 / 441 of the issue are FMA figures:
       * float32 only. */
      const isa = r.bf16 ? "avx512bf16" : r.backend === "avx2" ? "avx2" : r.backend === "scalar" ? "" : "avx512";
      const of2 = isa === "avx2" ? " (of AVX2)" : isa === "avx512bf16" ? " (of BF16)" : "";
      const pct = isa ? fx(100 * r.gflops / peakOf(w, isa, t), 0) + of2 : "-";
      const pctN = isa && !r.bf16 ? fx(100 * r.gflops / ((isa === "avx2" ? 0.5 : 1) * nominal[t]), 0) + of2 : "-";
      const ok = r.accuracy_ok ? "" : " FAIL";
      const vsF32 = r.bf16 && f32 ? fx(f32.median_ms / r.median_ms, 2) + "x" : "-";
      const e = (v) => (Number.isFinite(v) ? v.toExponential(1) : "-");
      rows.push(`| ${names[w]} | ${t} | ${r.backend}${ok} | ${prec} | ${fx(r.median_ms, 2)} | ${fx(r.gflops, 1)} | ${pct} | ${pctN} | ` +
        (best ? `${fx(best.ms, 2)} (${best.form})` : "-") + ` | ${best ? fx(best.ms / r.median_ms, 2) + "x" : "-"} | ` +
        `${vsF32} | ${e(r.max_rel_err)} | ${e(r.mean_rel_err)} | ${fx(r.peak_rss_mib, 1)} | ${fx(r.other_cpus, 2)} |`);
    }
    rows.push(`| | ${t} | ORT, every form | float32 | ${ortAll} | | | | | | | | | | |`);
  }
}
let rss = "";
try {
  const j = JSON.parse(fs.readFileSync(`${work}/rss.json`, "utf8"));
  rss = "\n\nMemory, W3 layer at S = 8192 (B 1, D 512, 8 heads; the scores alone would be 8 x 8192^2 floats = 2 GiB):\n\n" +
    "| backend | threads | median ms | GFLOP/s | peak RSS MiB |\n|---|---|---|---|---|\n" +
    j.results.map((r) => `| ${r.backend} | ${r.threads} | ${fx(r.median_ms, 1)} | ${fx(r.gflops, 1)} | ${fx(r.peak_rss_mib, 1)} |`).join("\n");
} catch (e) { rss = "\n\n(RSS run failed: its bench wrote no result)"; }
console.log(`Run ${process.env.MHA_PT_START}, ONNX Runtime ${process.env.MHA_PT_ORT} (onnxruntime-node, best of attention23 / ms_mha / decomposed), ` +
  `load average (1/5/15 min) before -> after: ${process.env.MHA_PT_LOAD}.\n\n` +
  "Peaks measured by `mha peak` right before each workload (GFLOP/s, AVX-512 FMA 1 / 2 threads; AVX2 1 / 2; VDPBF16PS 1 / 2): " +
  process.env.MHA_PT_WORKLOADS.split(",").map((w) => `${w} ` +
    `${fx(pk[w].avx512 && pk[w].avx512[1], 1)} / ${fx(pk[w].avx512 && pk[w].avx512[2], 1)}; ` +
    `${fx(pk[w].avx2 && pk[w].avx2[1], 1)} / ${fx(pk[w].avx2 && pk[w].avx2[2], 1)}; ` +
    `${fx(pk[w].avx512bf16 && pk[w].avx512bf16[1], 1)} / ${fx(pk[w].avx512bf16 && pk[w].avx512bf16[2], 1)}`).join(", ") +
  `. "% of peak (measured)" is against the peak measured before that workload; "% of 222 / 441" against the figures of the performance issue.` +
  (process.env.MHA_PEAK1 || process.env.MHA_PEAK2 ? ` (Overridden: MHA_PEAK1=${process.env.MHA_PEAK1 || "-"}, MHA_PEAK2=${process.env.MHA_PEAK2 || "-"}.)` : "") +
  (process.env.MHA_PEAK_BF16_1 || process.env.MHA_PEAK_BF16_2 ? ` (Overridden: MHA_PEAK_BF16_1=${process.env.MHA_PEAK_BF16_1 || "-"}, MHA_PEAK_BF16_2=${process.env.MHA_PEAK_BF16_2 || "-"}.)` : "") +
  " bfloat16 rows: `mha bench --precision bfloat16` right after the float32 bench; \"mha float32 / this\" is the avx512 float32 median over the median of this row; errors are against the scalar float32 reference.\n");
console.log(rows.join("\n") + rss);
') || die "could not build the table"
if [ -n "$out" ]; then
    printf '%s\n' "$table" >"$out"
    echo "perf_table: wrote $out" >&2
fi
printf '%s\n' "$table"
