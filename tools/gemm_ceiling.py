#!/usr/bin/env python3
"""gemm_ceiling.py -- the GEMMs of the four whole models (issue 15), one shape
at a time, in mha and in ONNX Runtime, and the ratio mha could reach over
ONNX Runtime on a whole model if everything but its GEMMs took no time.

    /usr/bin/python3 tools/gemm_ceiling.py [--mha-build DIR] [--peer DIR]
        [--threads 1,2] [--min-time SEC] [--passes N] [--dir DIR] [--only NAME,..]

Per shape C [M, N] = A [M, K] . W [K, N]:
  mha  build/bin/gemm_bench --shape MxKxN (through the executor: the tiles and
       column slabs a model's GEMM step runs, W packed once, plus its bias);
  ORT  a graph of one MatMul (x [B, S, K] . W [K, N], no bias; then its
       maximum, see matmul_graph), written here with the onnx package and
       timed by the peer's ort_run.js bench (graph optimisation level all).
Both time one call at a time with the weights warm in the caches the
previous call left them in (as a whole model's run does not: its weights
come from memory; both engines pay that alike). At 1 thread the figures are
also given over CPU time (mha: median per call; ORT: its process's CPU over
the timed loop, per call), less sensitive to a shared machine's load.
The FMA peak is `mha peak --json`'s avx512 row, measured before each pass.

Per model, the sums over its GEMMs of each engine's time at each shape:
their ratio (ORT / mha) is what mha would show over ONNX Runtime if both
spent no time outside their GEMMs (measured in the same minutes, the
figure a loaded machine moves least). The bound: ORT's whole-model time
from the quiet table (QUIET_ORT_MS below, docs/PERFORMANCE.md) over mha's
GEMM sum, the best ratio mha could show if everything but its GEMMs
(attention, norms, embeddings) took no time; from figures of a loaded
machine it is low by as much as the load slowed mha's GEMMs.
Needs /usr/bin/python3 with onnx and numpy, node with the peer's setup.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# name, M as B x S, K, N, how many per model run (each model's other GEMMs,
# BERT's pooler and ViT's head over 8 rows, are under 0.1 % of the FLOPs)
SHAPES = [
    ("vit qkv", 8, 197, 768, 2304, {"vit_b16": 12}),
    ("vit out", 8, 197, 768, 768, {"vit_b16": 12}),
    ("vit ffn1", 8, 197, 768, 3072, {"vit_b16": 12}),
    ("vit ffn2", 8, 197, 3072, 768, {"vit_b16": 12}),
    ("vit patch", 8, 196, 768, 768, {"vit_b16": 1}),
    ("bert qkv", 8, 128, 768, 2304, {"bert_base": 12, "gpt2_small": 12}),
    ("bert out", 8, 128, 768, 768, {"bert_base": 12, "gpt2_small": 12}),
    ("bert ffn1", 8, 128, 768, 3072, {"bert_base": 12, "gpt2_small": 12}),
    ("bert ffn2", 8, 128, 3072, 768, {"bert_base": 12, "gpt2_small": 12}),
    ("gpt2 logits", 4, 256, 768, 50257, {"gpt2_small": 1}),
    ("minilm qkv", 32, 128, 384, 1152, {"minilm_l6": 6}),
    ("minilm out", 32, 128, 384, 384, {"minilm_l6": 6}),
    ("minilm ffn1", 32, 128, 384, 1536, {"minilm_l6": 6}),
    ("minilm ffn2", 32, 128, 1536, 384, {"minilm_l6": 6}),
]
# ONNX Runtime's whole-model ms (1, 2 threads) in the last quiet table
# (docs/PERFORMANCE.md, "The four models at the end of the fourth session")
QUIET_ORT_MS = {
    "minilm_l6": (1184, 622),
    "bert_base": (1800, 949),
    "gpt2_small": (2782, 1529),
    "vit_b16": (2901, 1469),
}


def matmul_graph(path, S, K, N):
    """x [B, S, K] . W [K, N], reduced to its maximum: the runner copies a
    graph's outputs into JavaScript arrays after each run (a fresh 6-12 MB
    per call at these shapes, some 5-10 % of the product's time), a scalar
    costs nothing; the reduction is one read of the product ORT leaves in
    its arena (1-2 %), counted against ORT."""
    rng = np.random.default_rng(K * 100003 + N)
    w = (rng.standard_normal((K, N), dtype=np.float32) / np.sqrt(K)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", S, K])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [])
    nodes = [helper.make_node("MatMul", ["x", "W"], ["p"]),
             helper.make_node("ReduceMax", ["p"], ["y"], keepdims=0)]
    g = helper.make_graph(nodes, "matmul", [x], [y], [numpy_helper.from_array(w, "W")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def mha_peak(build):
    out = os.path.join(build, "gemm-ceiling-peak.json")
    run([os.path.join(build, "bin", "mha"), "peak", "--threads", "1,2", "--reps", "3", "--json", out])
    return out


def mha_gemm(build, peak_json, M, K, N, threads, min_time):
    """{threads: (GFLOP/s by wall, by CPU or None)} through the executor."""
    out = run([os.path.join(build, "bin", "gemm_bench"), "--backend", "avx512", "--threads",
               ",".join(map(str, threads)), "--min-time", str(min_time), "--peak-json", peak_json,
               "--shape", f"{M}x{K}x{N}"])
    res = {}
    for line in out.splitlines():
        f = re.match(r"^-\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+\(\s*\d+%\)\s+(\S+)\s+\(", line)
        if not f:
            continue
        t = int(f.group(4))
        cpu = re.search(r"\)\s+\S+\s+/\s+(\S+)\s+\(", line[f.end():]) if t == 1 else None
        res[t] = (float(f.group(5)), float(cpu.group(1)) if cpu else None)
    return res


def ort_gemm(peer, model, B, S, K, N, threads, min_time):
    """(GFLOP/s by the median wall time, by CPU time per call or None)."""
    r = json.loads(run(["node", os.path.join(peer, "ort_run.js"), "bench", model, "--shape",
                        f"{B},{S},{K}", "--threads", str(threads), "--min-time", str(min_time),
                        "--json", "--times"]))
    flops = 2.0 * B * S * K * N
    wall = flops / (r["median_ms"] * 1e6)
    cpu = None
    if threads == 1:
        per_call = r["own_cpus"] * sum(r["times_ms"]) / len(r["times_ms"])
        cpu = flops / (per_call * 1e6)
    return wall, cpu


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("--mha-build", default=os.path.join(here, "..", "build"))
    ap.add_argument("--peer", default=os.environ.get("MHA_PEER_DIR", os.path.join(here, "..", "..", "shared", "peer")))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--passes", type=int, default=1)
    ap.add_argument("--dir", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "mha-gemm-ceiling"))
    ap.add_argument("--only", default="", help="shape names, comma-separated (default all)")
    ap.add_argument("--peak", default="", help="GF1,GF2: the FMA peak at 1 and 2 threads, in place "
                    "of `mha peak`'s (a quiet machine's figure when this one is loaded)")
    a = ap.parse_args()
    threads = [int(t) for t in a.threads.split(",")]
    only = set(s.strip() for s in a.only.split(",") if s.strip())
    os.makedirs(a.dir, exist_ok=True)
    shapes = [s for s in SHAPES if not only or s[0] in only]
    # per shape and thread count: lists over passes of (mha wall, mha cpu, ort wall, ort cpu)
    got = {(s[0], t): [] for s in shapes for t in threads}
    peaks = {t: [] for t in threads}
    for p in range(a.passes):
        pj = mha_peak(a.mha_build)
        with open(pj) as f:
            pk = json.load(f)["avx512"]
        for t in threads:
            peaks[t].append(float(pk[str(t)]))
        for name, B, S, K, N, _ in shapes:
            model = os.path.join(a.dir, f"matmul_max_{S}_{K}_{N}.onnx")
            if not os.path.exists(model):
                matmul_graph(model, S, K, N)
            m = mha_gemm(a.mha_build, pj, B * S, K, N, threads, a.min_time)
            for t in threads:
                ow, oc = ort_gemm(a.peer, model, B, S, K, N, t, a.min_time)
                got[(name, t)].append((m[t][0], m[t][1], ow, oc))
                print(f"pass {p + 1} {name} t{t}: mha {m[t][0]:.1f} (cpu {m[t][1] or 0:.1f}) "
                      f"ort {ow:.1f} (cpu {oc or 0:.1f}) GFLOP/s", file=sys.stderr, flush=True)

    def med(xs):
        xs = [x for x in xs if x is not None]
        return statistics.median(xs) if xs else None

    peak = {t: statistics.median(peaks[t]) for t in threads}
    if a.peak:
        given = [float(x) for x in a.peak.split(",")]
        peak = {t: given[min(t, len(given)) - 1] for t in threads}
    print(f"FMA peak used: " + ", ".join(f"{peak[t]:.1f} GFLOP/s at {t} thread(s)" for t in threads) +
          "; `mha peak`'s in the passes (avx512, medians): " +
          ", ".join(f"{statistics.median(peaks[t]):.1f} at {t}" for t in threads) + "\n")
    print("| shape (M x K x N) | threads | mha GFLOP/s (% of peak) | ORT GFLOP/s (% of peak) | mha / ORT |")
    print("|---|---|---|---|---|")
    rate = {}
    for name, B, S, K, N, _ in shapes:
        for t in threads:
            rows = got[(name, t)]
            # at 1 thread the CPU-time figures, else wall time
            mg = med([r[1] if t == 1 else r[0] for r in rows])
            og = med([r[3] if t == 1 else r[2] for r in rows])
            rate[(name, t)] = (mg, og)
            print(f"| {name} {B * S} x {K} x {N} | {t} | {mg:.1f} ({100 * mg / peak[t]:.0f} %) | "
                  f"{og:.1f} ({100 * og / peak[t]:.0f} %) | {mg / og:.2f} |")
    print("\n| model | threads | mha GEMMs ms | ORT GEMMs ms | GEMM ratio (ORT / mha) | "
          "ORT model ms (quiet table) | bound: ORT model / mha GEMMs |")
    print("|---|---|---|---|---|---|---|")
    for model, ort_ms in QUIET_ORT_MS.items():
        for t in threads:
            ms_m = ms_o = 0.0
            n = 0
            for name, B, S, K, N, per in shapes:
                if model not in per:
                    continue
                fl = 2.0 * B * S * K * N * per[model]
                mg, og = rate[(name, t)]
                ms_m += fl / (mg * 1e6)
                ms_o += fl / (og * 1e6)
                n += 1
            if not n or t > 2:
                continue
            om = ort_ms[t - 1]
            print(f"| {model} | {t} | {ms_m:.0f} | {ms_o:.0f} | {ms_o / ms_m:.2f} | {om} | "
                  f"{om / ms_m:.2f} |")

if __name__ == "__main__":
    main()
