#!/usr/bin/python3
"""Runs the corpus through ONNX Runtime, an engine independent of this
project, and compares with the expected outputs (run from the project root):

    /usr/bin/python3 tests/data/families/ort_check.py [CASE_DIR...]

Without arguments, every case of tests/data/families. Uses onnxruntime-node
from $MHA_ORT_DIR, else ${XDG_CACHE_HOME:-~/.cache}/mha-ort, where
tools/ort_compare.sh installs it (`npm install onnxruntime-node@1.30.0` in that
folder does too). Graph optimisations are off, so ORT runs the graph as
written. Prints each data set's largest absolute difference per output, then
"N agree, M differ" under the float32 tolerances of `mha check` (rtol 1e-4,
atol 1e-5). Exit 0 when all agree, 1 when one differs, 2 when ORT is missing.
Needs Debian's python3-onnx and python3-numpy, and node.
"""
import base64
import glob
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))

# Reads a list of runs from argv[1], writes {run: {output: {dims, data}} or
# {error}} to argv[2]. Tensors travel as base64 of their raw bytes.
RUNNER = r"""
const ort = require('onnxruntime-node');
const fs = require('fs');
const kinds = {float32: Float32Array, int64: BigInt64Array, bool: Uint8Array};
(async () => {
  const runs = JSON.parse(fs.readFileSync(process.argv[1]));
  const results = {};
  for (const run of runs) {
    try {
      const session = await ort.InferenceSession.create(run.model,
          {graphOptimizationLevel: 'disabled'});
      const feeds = {};
      for (const t of run.inputs) {
        const bytes = Buffer.from(t.data, 'base64');
        const copy = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
        feeds[t.name] = new ort.Tensor(t.dtype, new kinds[t.dtype](copy), t.dims);
      }
      const out = await session.run(feeds);
      results[run.id] = {};
      for (const name of session.outputNames)
        results[run.id][name] = {dims: out[name].dims, data: Array.from(out[name].data, Number)};
    } catch (e) {
      results[run.id] = {error: String(e)};
    }
  }
  fs.writeFileSync(process.argv[2], JSON.stringify(results));
})();
"""

DTYPES = {np.float32: "float32", np.int64: "int64", np.bool_: "bool"}


def load_pb(path):
    return numpy_helper.to_array(onnx.load_tensor(path))


def collect(case_dirs):
    """One run per data set: model path, named inputs, expected outputs."""
    runs = []
    for case in case_dirs:
        model = onnx.load(os.path.join(case, "model.onnx"))
        for dataset in sorted(glob.glob(os.path.join(case, "test_data_set_*"))):
            inputs = []
            for i, graph_input in enumerate(model.graph.input):
                t = load_pb(os.path.join(dataset, f"input_{i}.pb"))
                inputs.append({"name": graph_input.name, "dtype": DTYPES[t.dtype.type],
                               "dims": list(t.shape),
                               "data": base64.b64encode(t.tobytes()).decode()})
            expected = [(o.name, os.path.join(dataset, f"output_{k}.pb"))
                        for k, o in enumerate(model.graph.output)
                        if os.path.exists(os.path.join(dataset, f"output_{k}.pb"))]
            runs.append({"id": f"{os.path.basename(case)}/{os.path.basename(dataset)}",
                         "model": os.path.join(case, "model.onnx"), "inputs": inputs,
                         "expected": expected})
    return runs


def main():
    ort_dir = os.environ.get("MHA_ORT_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mha-ort")
    modules = os.path.join(ort_dir, "node_modules")
    if not os.path.isdir(os.path.join(modules, "onnxruntime-node")):
        print(f"ort_check: no onnxruntime-node in {modules} "
              "(tools/ort_compare.sh installs it)", file=sys.stderr)
        return 2
    cases = sys.argv[1:] or sorted(os.path.dirname(p)
                                   for p in glob.glob(os.path.join(HERE, "*", "model.onnx")))
    runs = collect(cases)
    with tempfile.TemporaryDirectory() as tmp:
        manifest, results = os.path.join(tmp, "runs.json"), os.path.join(tmp, "results.json")
        with open(manifest, "w") as f:
            json.dump([{k: r[k] for k in ("id", "model", "inputs")} for r in runs], f)
        subprocess.run(["node", "-e", RUNNER, manifest, results], check=True,
                       env=dict(os.environ, NODE_PATH=modules), stderr=subprocess.DEVNULL)
        with open(results) as f:
            got = json.load(f)
    agree = differ = 0
    for run in runs:
        result, notes, ok = got.get(run["id"], {"error": "no result"}), [], True
        if "error" in result:
            notes, ok = [result["error"]], False
        for name, path in [] if not ok else run["expected"]:
            want = load_pb(path).astype(np.float64)
            have = np.array(result[name]["data"], np.float64).reshape(result[name]["dims"])
            if have.shape != want.shape:
                notes.append(f"{name}: shape {have.shape}, expected {want.shape}")
                ok = False
                continue
            ok &= bool(np.all(np.abs(have - want) <= 1e-5 + 1e-4 * np.abs(want)))
            notes.append(f"{name}: max |diff| {np.abs(have - want).max():.2e}")
        agree, differ = agree + ok, differ + (not ok)
        print(("ok   " if ok else "DIFF ") + run["id"] + ": " + "; ".join(notes))
    print(f"{agree} agree, {differ} differ")
    return 0 if differ == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
