#!/usr/bin/env python3
"""make_round4.py -- held-out whole models, round 4 (q_* cases of tests/data/models).

Round 4 takes whole models as they come out of the tools people run after
the export, not out of the exporter itself:

- ONNX Runtime's offline optimizer (`optimized_model_filepath`, what
  onnxsim and optimum's ORTOptimizer build on), level `basic`: constants
  folded, MatMul + Add made Gemm, and its transpose optimizer moving a Shape
  before a Transpose (`Gather(Shape(x), perm)` instead of `Shape(x^T)`);
- whole models written with the opset-23 standard ops `Attention`,
  `RMSNormalization` and `RotaryEmbedding` (3-D inputs, q_num_heads /
  kv_num_heads, is_causal, a bool mask, position_ids as an input, pairs
  rotated interleaved or as halves), the way onnxscript / the torch dynamo
  exporter write LLaMA-like models now.

The first kind is made from cases of this folder (their test sets kept:
the optimizer changes no function); the second is written here with
seeded weights (d 32, 4 query heads, 2 key / value heads where said, FFN 64,
2 layers, vocabulary 64) and its outputs come from ONNX Runtime 1.30, the
project's oracle (../shared/peer: `setup.sh` installs onnxruntime-node into
$MHA_PEER_HOME, default ~/.cache/mha-peer).

    /usr/bin/python3 make_round4.py [CASE...]     the cases, into this folder
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.environ.get("MHA_PEER_HOME", os.path.expanduser("~/.cache/mha-peer"))

# node: run a model (req.json) with onnxruntime-node, optionally saving the
# model its optimizer made
ORT_JS = r"""
'use strict';
const fs = require('fs'), path = require('path');
const ort = require(path.join(process.env.PEER, 'node_modules', 'onnxruntime-node'));
const T = {float32: Float32Array, int64: BigInt64Array, int32: Int32Array, bool: Uint8Array};
(async () => {
  const dir = process.argv[2];
  const req = JSON.parse(fs.readFileSync(path.join(dir, 'req.json')));
  const so = {graphOptimizationLevel: req.level, interOpNumThreads: 1, intraOpNumThreads: 1};
  if (req.save) so.optimizedModelFilePath = req.save;
  const s = await ort.InferenceSession.create(req.model, so);
  const feeds = {};
  for (const i of req.inputs) {
    const b = fs.readFileSync(i.file);
    const a = new T[i.dtype](b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    feeds[i.name] = new ort.Tensor(i.dtype, a, i.shape);
  }
  const out = await s.run(feeds);
  const res = s.outputNames.map((n, k) => {
    const d = out[n].data;
    fs.writeFileSync(path.join(dir, 'out_' + k + '.bin'), Buffer.from(d.buffer, d.byteOffset, d.byteLength));
    return {dtype: out[n].type, shape: out[n].dims};
  });
  fs.writeFileSync(path.join(dir, 'res.json'), JSON.stringify(res));
})().catch(e => { console.error(String(e)); process.exit(1); });
"""

NP_NAME = {np.float32: "float32", np.int64: "int64", np.int32: "int32", np.bool_: "bool"}
NAME_NP = {"float32": np.float32, "int64": np.int64, "int32": np.int32, "bool": np.bool_}


def data_inputs(m):
    inits = {t.name for t in m.graph.initializer}
    return [i.name for i in m.graph.input if i.name not in inits]


def ort_run(m, inputs, level="disabled", save=False):
    """ONNX Runtime's outputs of m on inputs (and the model its optimizer
    saved at `level` when save)."""
    with tempfile.TemporaryDirectory() as d:
        onnx.save(m, os.path.join(d, "m.onnx"))
        with open(os.path.join(d, "ort.js"), "w") as f:
            f.write(ORT_JS)
        req = {"model": os.path.join(d, "m.onnx"), "level": level, "inputs": []}
        if save:
            req["save"] = os.path.join(d, "opt.onnx")
        for k, (n, a) in enumerate(zip(data_inputs(m), inputs)):
            p = os.path.join(d, "in_%d.bin" % k)
            np.ascontiguousarray(a).tofile(p)
            req["inputs"].append({"name": n, "dtype": NP_NAME[a.dtype.type], "shape": list(a.shape),
                                  "file": p})
        with open(os.path.join(d, "req.json"), "w") as f:
            json.dump(req, f)
        subprocess.run(["node", os.path.join(d, "ort.js"), d], check=True,
                       env=dict(os.environ, PEER=PEER))
        with open(os.path.join(d, "res.json")) as f:
            res = json.load(f)
        outs = [np.fromfile(os.path.join(d, "out_%d.bin" % k), dtype=NAME_NP[r["dtype"]])
                .reshape(r["shape"]) for k, r in enumerate(res)]
        opt = onnx.load(req["save"]) if save else None
    return outs, opt


def load_sets(case):
    """The test sets of a case of this folder: [(inputs, outputs)]."""
    def arrays(d, what):
        files = sorted(glob.glob(os.path.join(d, what + "_*.pb")),
                       key=lambda p: int(p.rsplit("_", 1)[1][:-3]))
        return [numpy_helper.to_array(onnx.load_tensor(p)) for p in files]
    return [(arrays(d, "input"), arrays(d, "output"))
            for d in sorted(glob.glob(os.path.join(HERE, case, "test_data_set_*")))]


def write_case(name, m, sets):
    d = os.path.join(HERE, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    onnx.save(m, os.path.join(d, "model.onnx"))
    outs = [o.name for o in m.graph.output]
    for k, (ins, want) in enumerate(sets):
        sd = os.path.join(d, "test_data_set_%d" % k)
        os.makedirs(sd)
        for i, (n, a) in enumerate(zip(data_inputs(m), ins)):
            onnx.save_tensor(numpy_helper.from_array(a, n), os.path.join(sd, "input_%d.pb" % i))
        for i, (n, a) in enumerate(zip(outs, want)):
            onnx.save_tensor(numpy_helper.from_array(a, n), os.path.join(sd, "output_%d.pb" % i))


# ---- ONNX Runtime's offline optimizer -------------------------------------
def case_ort_basic(base):
    def make():
        m = onnx.load(os.path.join(HERE, base, "model.onnx"))
        sets = load_sets(base)
        _, opt = ort_run(m, sets[0][0], "basic", save=True)
        return opt, sets
    return make


# ---- opset 23: Attention, RMSNormalization, RotaryEmbedding ---------------
D, FF, L, V, MAXPOS = 32, 64, 2, 64, 64


def onnx23(seed, heads, kv_heads, causal, rotary, interleaved, mask, posids):
    r = np.random.RandomState(seed)
    dh = D // heads
    inits, nodes = [], []

    def W(*shape):
        return (r.randn(*shape) * 0.2).astype(np.float32)

    def const(name, a):
        inits.append(numpy_helper.from_array(np.asarray(a), name))
        return name

    def node(op, ins, out=None, **attrs):
        k = len(nodes)
        out = out or "%s_%d" % (op.lower(), k)
        nodes.append(helper.make_node(op, ins, [out], name="%s_%d" % (op, k), **attrs))
        return out

    x = node("Gather", [const("embed", W(V, D)), "input_ids"])
    shape = node("Shape", ["input_ids"])
    if rotary:
        inv = 1.0 / (10000.0 ** (np.arange(0, dh, 2) / dh))
        ang = np.arange(MAXPOS)[:, None] * inv[None, :]
        cos = const("cos_cache", np.cos(ang).astype(np.float32))
        sin = const("sin_cache", np.sin(ang).astype(np.float32))
        if posids:
            pos = "position_ids"
        else:  # 0 .. S - 1 for every row
            s = node("Gather", [shape, const("one", np.array(1, np.int64))])
            pos = node("Range", [const("zero", np.array(0, np.int64)), s,
                                 const("step", np.array(1, np.int64))])
            pos = node("Expand", [node("Unsqueeze", [pos, const("ax0", np.array([0], np.int64))]),
                                  shape])
    if mask:  # [B, S] 0 / 1 to a bool [B, 1, S, S] (keys kept where 1)
        keep = node("Cast", [node("Unsqueeze", ["attention_mask", const("ax12", np.array([1, 2], np.int64))])],
                    to=TensorProto.BOOL)
        b = node("Slice", [shape, const("s0", np.array([0], np.int64)), const("s1", np.array([1], np.int64))])
        s = node("Slice", [shape, "s1", const("s2", np.array([2], np.int64))])
        keep = node("Expand", [keep, node("Concat", [b, "s1", s, s], axis=0)])
    for i in range(L):
        h = node("RMSNormalization", [x, const("ln1_%d" % i, 1 + W(D))], epsilon=1e-6)
        q = node("MatMul", [h, const("wq_%d" % i, W(D, heads * dh))])
        k = node("MatMul", [h, const("wk_%d" % i, W(D, kv_heads * dh))])
        v = node("MatMul", [h, const("wv_%d" % i, W(D, kv_heads * dh))])
        if rotary:
            q = node("RotaryEmbedding", [q, cos, sin, pos], num_heads=heads, interleaved=interleaved)
            k = node("RotaryEmbedding", [k, cos, sin, pos], num_heads=kv_heads, interleaved=interleaved)
        a = node("Attention", [q, k, v] + ([keep] if mask else []), q_num_heads=heads,
                 kv_num_heads=kv_heads, is_causal=int(causal))
        x = node("Add", [x, node("MatMul", [a, const("wo_%d" % i, W(D, D))])])
        h = node("RMSNormalization", [x, const("ln2_%d" % i, 1 + W(D))], epsilon=1e-6)
        g = node("MatMul", [h, const("wg_%d" % i, W(D, FF))])
        u = node("MatMul", [h, const("wu_%d" % i, W(D, FF))])
        g = node("Mul", [g, node("Sigmoid", [g])])
        x = node("Add", [x, node("MatMul", [node("Mul", [g, u]), const("wd_%d" % i, W(FF, D))])])
    h = node("RMSNormalization", [x, const("ln_f", 1 + W(D))], epsilon=1e-6)
    node("MatMul", [h, const("lm_head", W(D, V))], "logits")
    ins = [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])]
    if mask:
        ins.append(helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]))
    if posids:
        ins.append(helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"]))
    out = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", V])]
    m = helper.make_model(helper.make_graph(nodes, "onnx23", ins, out, inits),
                          opset_imports=[helper.make_opsetid("", 23)], producer_name="make_round4")
    m.ir_version = 10
    return m


def onnx23_inputs(r, B, S, mask, posids):
    ins = [r.randint(0, V, (B, S)).astype(np.int64)]
    if mask:  # the last row padded on the right by 2
        m = np.ones((B, S), np.int64)
        m[-1, S - 2:] = 0
        ins.append(m)
    if posids:  # a later chunk of a longer text for the first row
        p = np.tile(np.arange(S, dtype=np.int64), (B, 1))
        p[0] += 5
        ins.append(p)
    return ins


def case_onnx23(seed, *how):
    def make():
        m = onnx23(seed, *how)
        r = np.random.RandomState(seed + 1)
        sets = []
        for B, S in ((2, 7), (3, 5)):
            ins = onnx23_inputs(r, B, S, how[5], how[6])
            sets.append((ins, ort_run(m, ins)[0]))
        return m, sets
    return make


CASES = {
    # heads, kv heads, causal, rotary, interleaved, mask, position_ids
    "q_vit_ortbasic_shapeperm_op12": case_ort_basic("h_vit_cls_tanhgelu_op12"),
    "q_llama_ops_rope_gqa_causal_op23": case_onnx23(71, 4, 2, 1, 1, 0, 0, 0),
    "q_llama_ops_ropepairs_posids_mask_op23": case_onnx23(72, 4, 2, 1, 1, 1, 1, 1),
    "q_enc_ops_rmsnorm_boolmask_op23": case_onnx23(73, 4, 4, 0, 0, 0, 1, 0),
}


def main():
    for name in sys.argv[1:] or list(CASES):
        m, sets = CASES[name]()
        write_case(name, m, sets)
        print(name, os.path.getsize(os.path.join(HERE, name, "model.onnx")), "bytes", flush=True)


if __name__ == "__main__":
    main()
