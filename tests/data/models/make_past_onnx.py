#!/usr/bin/env python3
"""make_past_onnx.py -- decoding steps with a KV cache written straight in
ONNX (onnx.helper, numpy weights; no PyTorch), with numpy's float64 outputs:
the kv_* cases of tests/data/models and, at any size, the models timed for
the gather of the past into the present (docs/PERFORMANCE.md).

A GPT-2 / Qwen3-style decoder block, pre-norm: LayerNormalization (or an
RMS norm), one fused QKV MatMul split in three, heads by Reshape [0, 0, H,
d] + Transpose, optionally a norm of each head of Q and K (Qwen3 / OLMo-2 /
Gemma-3: RMS over d with a weight [d], before the cache), the cache by
Concat on axis 2 (present), scores Q.K^T * d^-1/2, the causal frontier of
the new rows (key j <= P + i, from Range over the lengths) and the padding
(1 - m) * finfo.min over P + S keys, Softmax, the heads merged, the output
projection, residual, an FFN (erf GELU), residual; a final norm and tied
logits. Positions P .. P + S - 1 from the past's length. --where-fill X:
the causal frontier as GPT-2 before transformers 4.21 wrote it (a tril buffer
sliced by each layer's K and Q lengths), the future
keys' scores replaced by X (masked_bias, -1e4) through Where.

    make_past_onnx.py OUTDIR NAME [--d D] [--heads H] [--kv-heads G]
        [--layers L] [--ffn F] [--vocab V] [--maxpos N] [--qknorm]
        [--rmsnorm] [--where-fill X] [--set B,P,S ...] [--seed N]

Each --set writes test_data_set_<i> (input ids, a mask of ones but for the
last row's first key when B > 1 and P > 0, the past tensors drawn at
random) with the numpy outputs. With --kv-heads G < H the cache holds G
heads, repeated after the concatenation (GQA).
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FMIN = float(np.finfo(np.float32).min)


def build(a, rng):
    D, H, G, L, F, V = a.d, a.heads, a.kv_heads, a.layers, a.ffn, a.vocab
    dh = D // H
    inits, nodes = [], []
    w = {}

    def init(name, arr):
        arr = np.asarray(arr)
        w[name] = arr
        inits.append(numpy_helper.from_array(arr, name))
        return name

    def const(name, arr):
        return init(name, np.asarray(arr))

    def node(op, ins, outs, **kw):
        nodes.append(helper.make_node(op, ins, outs, name=outs[0] + "_node", **kw))
        return outs[0]

    def randn(*shape, scale):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    init("wte", randn(V, D, scale=0.5))
    init("wpe", randn(a.maxpos, D, scale=0.1))
    const("c_fmin", np.float32(FMIN))
    const("c_one", np.float32(1.0))
    const("c_zero", np.float32(0.0))
    const("c_i1", np.int64(1))
    const("c_ax0", np.array([0], np.int64))
    const("c_ax1", np.array([1], np.int64))
    const("c_ax12", np.array([1, 2], np.int64))
    const("c_ax2", np.array([2], np.int64))
    const("c_shape_h", np.array([0, 0, H, dh], np.int64))
    const("c_shape_g", np.array([0, 0, G, dh], np.int64))
    const("c_shape_d", np.array([0, 0, D], np.int64))
    const("c_split", np.array([D, G * dh, G * dh], np.int64))
    const("c_scale", np.float32(1.0 / np.sqrt(dh)))
    const("c_eps", np.float32(1e-6))
    const("c_two", np.float32(2.0))
    const("c_sqrt2", np.float32(np.sqrt(2.0)))
    const("c_half", np.float32(0.5))
    if a.where_fill is not None:
        const("c_wfill", np.float32(a.where_fill))
        const("tril", np.tril(np.ones((a.maxpos, a.maxpos), bool))[None, None])
        const("c_zero1", np.array([0], np.int64))
        const("c_ax3", np.array([3], np.int64))

    # lengths: P from past_key_0, S from input_ids, T = P + S
    node("Shape", ["past_key_0"], ["past_shape"])
    node("Gather", ["past_shape", "c_i2s"], ["P"], axis=0)
    const("c_i2s", np.int64(2))
    node("Shape", ["input_ids"], ["ids_shape"])
    node("Gather", ["ids_shape", "c_i1"], ["S"], axis=0)
    node("Add", ["P", "S"], ["T"])
    node("Range", ["P", "T", "c_i1"], ["pos"])
    node("Gather", ["wte", "input_ids"], ["tok"])
    node("Gather", ["wpe", "pos"], ["pe"])
    node("Add", ["tok", "pe"], ["x0"])
    # the mask over the T keys: [B, 1, 1, T] of 0 / finfo.min
    node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT)
    node("Sub", ["c_one", "mask_f"], ["mask_inv"])
    node("Unsqueeze", ["mask_inv", "c_ax12"], ["mask_4"])
    node("Mul", ["mask_4", "c_fmin"], ["pad_bias"])
    # causal: key j visible to new row i iff j <= P + i ([S, T])
    const("c_zero_i", np.int64(0))
    node("Range", ["c_zero_i", "T", "c_i1"], ["cols"])
    node("Unsqueeze", ["pos", "c_ax1"], ["rows"])
    node("Greater", ["cols", "rows"], ["future"])
    node("Where", ["future", "c_fmin", "c_zero"], ["causal_bias"])

    def norm(x, prefix, width, rms):
        g = init(prefix + ".weight", (1.0 + randn(width, scale=0.1)).astype(np.float32))
        if not rms:
            b = init(prefix + ".bias", randn(width, scale=0.1))
            return node("LayerNormalization", [x, g, b], [prefix + "_out"], axis=-1, epsilon=1e-5)
        sq = node("Pow", [x, "c_two"], [prefix + "_sq"])
        ms = node("ReduceMean", [sq], [prefix + "_ms"], axes=[-1], keepdims=1)
        ms = node("Add", [ms, "c_eps"], [prefix + "_mse"])
        r = node("Sqrt", [ms], [prefix + "_rms"])
        y = node("Div", [x, r], [prefix + "_n"])
        return node("Mul", [y, g], [prefix + "_out"])

    x = "x0"
    for l in range(L):
        p = "h%d" % l
        h = norm(x, p + ".ln_1", D, a.rmsnorm)
        wqkv = init(p + ".qkv.weight", randn(D, D + 2 * G * dh, scale=D ** -0.5))
        bqkv = init(p + ".qkv.bias", randn(D + 2 * G * dh, scale=0.1))
        qkv = node("MatMul", [h, wqkv], [p + "_qkv0"])
        qkv = node("Add", [qkv, bqkv], [p + "_qkv"])
        node("Split", [qkv, "c_split"], [p + "_q", p + "_k", p + "_v"], axis=2)
        heads = {}
        for t, n_h, sh in (("q", H, "c_shape_h"), ("k", G, "c_shape_g"), ("v", G, "c_shape_g")):
            r = node("Reshape", [p + "_" + t, sh], [p + "_" + t + "r"])
            heads[t] = node("Transpose", [r], [p + "_" + t + "h"], perm=[0, 2, 1, 3])
        if a.qknorm:
            heads["q"] = norm(heads["q"], p + ".q_norm", dh, True)
            heads["k"] = norm(heads["k"], p + ".k_norm", dh, True)
        kc = node("Concat", ["past_key_%d" % l, heads["k"]], ["present_key_%d" % l], axis=2)
        vc = node("Concat", ["past_value_%d" % l, heads["v"]], ["present_value_%d" % l], axis=2)
        if G < H:  # repeat_kv: [B, G, T, d] -> [B, G, H/G, T, d] -> [B, H, T, d]
            for t, c in (("k", kc), ("v", vc)):
                u = node("Unsqueeze", [c, "c_ax2"], [p + "_" + t + "u"])
                rep = const(p + "_rep_" + t, np.array([1, 1, H // G, 1, 1], np.int64))
                e = node("Tile", [u, rep], [p + "_" + t + "e"])
                shp = const(p + "_kvshape_" + t, np.array([0, H, -1, dh], np.int64))
                if t == "k":
                    kc = node("Reshape", [e, shp], [p + "_kx"])
                else:
                    vc = node("Reshape", [e, shp], [p + "_vx"])
        kt = node("Transpose", [kc], [p + "_kt"], perm=[0, 1, 3, 2])
        s = node("MatMul", [heads["q"], kt], [p + "_s0"])
        s = node("Mul", [s, "c_scale"], [p + "_s1"])
        if a.where_fill is None:
            s = node("Add", [s, "causal_bias"], [p + "_s2"])
        else:  # the old GPT-2: the future keys' scores replaced by masked_bias,
            # the tril buffer sliced [k - q:k, :k] by the lengths of this layer's K and Q
            node("Shape", [kc], [p + "_ks"])
            node("Gather", [p + "_ks", "c_i2s"], [p + "_kl"], axis=0)
            node("Shape", [heads["q"]], [p + "_qs"])
            node("Gather", [p + "_qs", "c_i2s"], [p + "_ql"], axis=0)
            node("Sub", [p + "_kl", p + "_ql"], [p + "_k0"])
            node("Unsqueeze", [p + "_k0", "c_ax0"], [p + "_k0u"])
            node("Unsqueeze", [p + "_kl", "c_ax0"], [p + "_klu"])
            node("Slice", ["tril", p + "_k0u", p + "_klu", "c_ax2"], [p + "_tr"])
            node("Slice", [p + "_tr", "c_zero1", p + "_klu", "c_ax3"], [p + "_tc"])
            s = node("Where", [p + "_tc", s, "c_wfill"], [p + "_s2"])
        s = node("Add", [s, "pad_bias"], [p + "_s3"])
        pr = node("Softmax", [s], [p + "_p"], axis=-1)
        o = node("MatMul", [pr, vc], [p + "_o"])
        o = node("Transpose", [o], [p + "_ot"], perm=[0, 2, 1, 3])
        o = node("Reshape", [o, "c_shape_d"], [p + "_om"])
        wo = init(p + ".o.weight", randn(D, D, scale=D ** -0.5))
        bo = init(p + ".o.bias", randn(D, scale=0.1))
        o = node("MatMul", [o, wo], [p + "_o1"])
        o = node("Add", [o, bo], [p + "_o2"])
        x = node("Add", [x, o], [p + "_x1"])
        h = norm(x, p + ".ln_2", D, a.rmsnorm)
        w1 = init(p + ".fc.weight", randn(D, F, scale=D ** -0.5))
        b1 = init(p + ".fc.bias", randn(F, scale=0.1))
        w2 = init(p + ".proj.weight", randn(F, D, scale=F ** -0.5))
        b2 = init(p + ".proj.bias", randn(D, scale=0.1))
        f = node("MatMul", [h, w1], [p + "_f0"])
        f = node("Add", [f, b1], [p + "_f1"])
        e = node("Div", [f, "c_sqrt2"], [p + "_g0"])
        e = node("Erf", [e], [p + "_g1"])
        e = node("Add", [e, "c_one"], [p + "_g2"])
        e = node("Mul", [f, e], [p + "_g3"])
        f = node("Mul", [e, "c_half"], [p + "_g4"])
        f = node("MatMul", [f, w2], [p + "_f2"])
        f = node("Add", [f, b2], [p + "_f3"])
        x = node("Add", [x, f], [p + "_x2"])
    h = norm(x, "ln_f", D, a.rmsnorm)
    node("Transpose", ["wte"], ["wte_t"], perm=[1, 0])
    node("MatMul", [h, "wte_t"], ["logits"])

    f32, i64 = TensorProto.FLOAT, TensorProto.INT64
    ins = [helper.make_tensor_value_info("input_ids", i64, ["batch", "seq"]),
           helper.make_tensor_value_info("attention_mask", i64, ["batch", "total"])]
    outs = [helper.make_tensor_value_info("logits", f32, ["batch", "seq", V])]
    for l in range(L):
        for kind in ("key", "value"):
            ins.append(helper.make_tensor_value_info("past_%s_%d" % (kind, l), f32,
                                                     ["batch", G, "past", dh]))
            outs.append(helper.make_tensor_value_info("present_%s_%d" % (kind, l), f32,
                                                      ["batch", G, "total", dh]))
    graph = helper.make_graph(nodes, a.name, ins, outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="make_past_onnx.py")
    model.ir_version = 8
    return model, w


def reference(a, w, ids, mask, past):
    """The same step in numpy float64: logits and the presents."""
    D, H, G = a.d, a.heads, a.kv_heads
    dh = D // H
    B, S = ids.shape
    P = past[0].shape[2]
    T = P + S
    f = {k: v.astype(np.float64) for k, v in w.items() if v.dtype == np.float32}

    def norm(x, prefix, rms):
        if rms:
            return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-6) * f[prefix + ".weight"]
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-5) * f[prefix + ".weight"] + f[prefix + ".bias"]

    from math import erf
    verf = np.vectorize(erf)
    x = f["wte"][ids] + f["wpe"][np.arange(P, T)][None]
    bias = (1.0 - mask.astype(np.float64))[:, None, None, :] * FMIN
    causal = np.where(np.arange(T)[None, :] > np.arange(P, T)[:, None], FMIN, 0.0)
    presents = []
    for l in range(a.layers):
        p = "h%d" % l
        h = norm(x, p + ".ln_1", a.rmsnorm)
        qkv = h @ f[p + ".qkv.weight"] + f[p + ".qkv.bias"]
        q = qkv[..., :D].reshape(B, S, H, dh).transpose(0, 2, 1, 3)
        k = qkv[..., D:D + G * dh].reshape(B, S, G, dh).transpose(0, 2, 1, 3)
        v = qkv[..., D + G * dh:].reshape(B, S, G, dh).transpose(0, 2, 1, 3)
        if a.qknorm:
            q = norm(q, p + ".q_norm", True)
            k = norm(k, p + ".k_norm", True)
        kc = np.concatenate([past[2 * l].astype(np.float64), k], 2)
        vc = np.concatenate([past[2 * l + 1].astype(np.float64), v], 2)
        presents += [kc, vc]
        kr, vr = np.repeat(kc, H // G, 1), np.repeat(vc, H // G, 1)
        s = q @ kr.transpose(0, 1, 3, 2) / np.sqrt(dh)
        if a.where_fill is None:
            s = s + causal + bias
        else:
            s = np.where(causal < 0, np.float64(np.float32(a.where_fill)), s) + bias
        s = s - s.max(-1, keepdims=True)
        e = np.exp(s)
        pr = e / e.sum(-1, keepdims=True)
        o = (pr @ vr).transpose(0, 2, 1, 3).reshape(B, S, D)
        x = x + o @ f[p + ".o.weight"] + f[p + ".o.bias"]
        h = norm(x, p + ".ln_2", a.rmsnorm)
        u = h @ f[p + ".fc.weight"] + f[p + ".fc.bias"]
        u = 0.5 * u * (1.0 + verf(u / np.sqrt(2.0)))
        x = x + u @ f[p + ".proj.weight"] + f[p + ".proj.bias"]
    logits = norm(x, "ln_f", a.rmsnorm) @ f["wte"].T
    return [logits] + presents


def write_set(a, w, folder, i, B, P, S, rng):
    d = os.path.join(folder, "test_data_set_%d" % i)
    os.makedirs(d, exist_ok=True)
    dh = a.d // a.heads
    ids = rng.integers(1, a.vocab, size=(B, S)).astype(np.int64)
    mask = np.ones((B, P + S), np.int64)
    if B > 1 and P > 0:
        mask[B - 1, 0] = 0  # the last row left-padded by one cached key
    past = [rng.standard_normal((B, a.kv_heads, P, dh)).astype(np.float32)
            for _ in range(2 * a.layers)]
    ins = [ids, mask] + past
    names = ["input_ids", "attention_mask"]
    for l in range(a.layers):
        names += ["past_key_%d" % l, "past_value_%d" % l]
    for j, (n, t) in enumerate(zip(names, ins)):
        with open(os.path.join(d, "input_%d.pb" % j), "wb") as fh:
            fh.write(numpy_helper.from_array(t, n).SerializeToString())
    outs = reference(a, w, ids, mask, past)
    onames = ["logits"]
    for l in range(a.layers):
        onames += ["present_key_%d" % l, "present_value_%d" % l]
    for j, (n, t) in enumerate(zip(onames, outs)):
        with open(os.path.join(d, "output_%d.pb" % j), "wb") as fh:
            fh.write(numpy_helper.from_array(t.astype(np.float32), n).SerializeToString())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("name")
    ap.add_argument("--d", type=int, default=32)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=0)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=64)
    ap.add_argument("--maxpos", type=int, default=16)
    ap.add_argument("--qknorm", action="store_true")
    ap.add_argument("--rmsnorm", action="store_true")
    ap.add_argument("--where-fill", type=float, default=None)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    a.kv_heads = a.kv_heads or a.heads
    rng = np.random.default_rng(a.seed)
    model, w = build(a, rng)
    folder = os.path.join(a.outdir, a.name)
    os.makedirs(folder, exist_ok=True)
    onnx.save(model, os.path.join(folder, "model.onnx"))
    for i, spec in enumerate(a.set):
        B, P, S = (int(v) for v in spec.split(","))
        write_set(a, w, folder, i, B, P, S, rng)


if __name__ == "__main__":
    main()
