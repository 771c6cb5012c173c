#!/usr/bin/env python3
"""make_fusion14.py -- whole models of the forms the recogniser learnt in
session 14 (fa14_* cases of tests/data/models), written apart from the q_*
cases of make_round4.py so that other models of those forms fuse too, not
only the corpus's own:

- the opset-23 `RotaryEmbedding` op on the Q and K paths: on the 4-D head
  view [B, H, S, d] after the projections' Reshape and Transpose, turning
  half of each head (`rotary_embedding_dim`), its positions made in the
  graph (Range of the length) and given as position_ids, before a
  hand-written core (MatMul, Div, a causal Where, Softmax, MatMul); and on
  the 3-D rows [B, S, H * d] (`num_heads`) without position_ids, the cos /
  sin of each token gathered from the model's tables in the graph,
  interleaved pairs, before the opset-23 `Attention` op with biases;
- ONNX Runtime's com.microsoft `FusedMatMul` for Q.K^T and its scale
  (alpha), with K in head layout [B, H, S, d] and `transB` = 1 (the
  optimizer folds a last-axes Transpose into it so), BERT's extended mask
  (1 - m) * -10000 added; and ONNX Runtime's optimizer at level `extended`
  run on this folder's PyTorch RoBERTa (`roberta_cls_l2_d32_h4`);
- the padding subtracted from the scores (Funnel's `score - 1e6 * (1 - m)`),
  exported from PyTorch with its outputs.

Small (d 32, 4 heads, FFN 64, 2 layers, vocabulary 64), seeded; the
expected outputs come from ONNX Runtime 1.30 (the project's oracle,
../shared/peer: `setup.sh` installs onnxruntime-node into $MHA_PEER_HOME),
as PyTorch exports neither op (but for the subtracted mask: PyTorch's).

    /usr/bin/python3 make_fusion14.py [CASE...]     the cases, into this folder
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import make_round4
from make_round4 import ort_run, write_case, case_ort

HERE = os.path.dirname(os.path.abspath(__file__))
D, H, FF, L, V, MAXPOS = 32, 4, 64, 2, 64, 48
DH = D // H


class Graph:
    """Nodes and initializers of one ONNX graph, named in order."""

    def __init__(self, seed):
        self.r = np.random.RandomState(seed)
        self.inits, self.nodes = [], []

    def w(self, *shape, scale=0.2):
        return (self.r.randn(*shape) * scale).astype(np.float32)

    def const(self, name, a):
        self.inits.append(numpy_helper.from_array(np.asarray(a), name))
        return name

    def op(self, op, ins, n_out=1, domain="", **attrs):
        k = len(self.nodes)
        outs = ["%s_%d_%d" % (op.lower(), k, i) for i in range(n_out)]
        self.nodes.append(helper.make_node(op, ins, outs, name="%s_%d" % (op, k), domain=domain,
                                           **attrs))
        return outs[0] if n_out == 1 else outs

    def linear(self, x, name, din, dout, bias=True):
        y = self.op("MatMul", [x, self.const(name + "_w", self.w(din, dout))])
        if bias:
            y = self.op("Add", [y, self.const(name + "_b", self.w(dout, scale=0.1))])
        return y

    def layernorm(self, x, name):
        return self.op("LayerNormalization", [x, self.const(name + "_g", 1 + self.w(D, scale=0.1)),
                                              self.const(name + "_b", self.w(D, scale=0.1))],
                       axis=-1, epsilon=1e-5)

    def ffn(self, x, name):
        h = self.linear(x, name + "_1", D, FF)
        h = self.op("Mul", [h, self.op("Sigmoid", [self.op("Mul", [h, "c_1702"])])])  # quick GELU
        return self.linear(h, name + "_2", FF, D)

    def model(self, ins, outs, opset, ms=False):
        ops = [helper.make_opsetid("", opset)]
        if ms:
            ops.append(helper.make_opsetid("com.microsoft", 1))
        m = helper.make_model(helper.make_graph(self.nodes, "fusion14", ins, outs, self.inits),
                              opset_imports=ops, producer_name="make_fusion14")
        m.ir_version = 10 if opset >= 21 else 8
        return m


def ids_input(name="input_ids"):
    return helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])


def tables(g, half, theta=10000.0):
    inv = 1.0 / (theta ** (np.arange(half) / half))
    ang = np.arange(MAXPOS)[:, None] * inv[None, :]
    return (g.const("cos_table", np.cos(ang).astype(np.float32)),
            g.const("sin_table", np.sin(ang).astype(np.float32)))


def rope_4d_partial():
    """Qwen-like: heads viewed [B, H, S, d], RotaryEmbedding on the first
    half of each head (rotate-half), positions Range(S) expanded to [B, S]
    and given as position_ids; a causal decomposed core."""
    g = Graph(141)
    g.const("c_1702", np.array(1.702, np.float32))
    rd = DH // 2
    cos, sin = tables(g, rd // 2, theta=500.0)
    x = g.op("Gather", [g.const("embed", g.w(V, D)), "input_ids"])
    shape = g.op("Shape", ["input_ids"])
    s = g.op("Gather", [shape, g.const("one", np.array(1, np.int64))])
    pos = g.op("Range", [g.const("zero", np.array(0, np.int64)), s, "one"])
    pos = g.op("Expand", [g.op("Unsqueeze", [pos, g.const("ax0", np.array([0], np.int64))]), shape])
    heads = g.const("heads_shape", np.array([0, 0, H, DH], np.int64))
    flat = g.const("flat_shape", np.array([0, 0, D], np.int64))
    # future keys hidden: where(tril, s, -inf) over the [S, S] corner of a buffer
    tril = g.const("tril", np.tril(np.ones((MAXPOS, MAXPOS), bool)))
    s1 = g.op("Unsqueeze", [s, "ax0"])
    corner = g.op("Slice", [tril, g.const("z1", np.array([0, 0], np.int64)),
                            g.op("Concat", [s1, s1], axis=0)])
    ninf = g.const("ninf", np.array(-np.inf, np.float32))
    for i in range(L):
        h = g.layernorm(x, "ln1_%d" % i)

        def head_view(v):
            return g.op("Transpose", [g.op("Reshape", [v, heads])], perm=[0, 2, 1, 3])
        q = head_view(g.linear(h, "q_%d" % i, D, D))
        k = head_view(g.linear(h, "k_%d" % i, D, D))
        v = head_view(g.linear(h, "v_%d" % i, D, D))
        q = g.op("RotaryEmbedding", [q, cos, sin, pos], rotary_embedding_dim=rd)
        k = g.op("RotaryEmbedding", [k, cos, sin, pos], rotary_embedding_dim=rd)
        sc = g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])])
        sc = g.op("Div", [sc, g.const("sqrt_dh_%d" % i, np.array(np.sqrt(DH), np.float32))])
        sc = g.op("Where", [corner, sc, ninf])
        p = g.op("Softmax", [sc], axis=-1)
        o = g.op("Reshape", [g.op("Transpose", [g.op("MatMul", [p, v])], perm=[0, 2, 1, 3]), flat])
        x = g.op("Add", [x, g.linear(o, "o_%d" % i, D, D)])
        x = g.op("Add", [x, g.ffn(g.layernorm(x, "ln2_%d" % i), "ffn_%d" % i)])
    h = g.layernorm(x, "ln_f")
    g.nodes.append(helper.make_node("MatMul", [h, g.const("head", g.w(D, V))], ["logits"],
                                    name="lm_head"))
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", V])
    return g.model([ids_input()], [out], 23)


def rope_3d_gathered():
    """Rows [B, S, H * d] turned by RotaryEmbedding (num_heads, interleaved
    pairs, the whole head) without position_ids: the cos / sin of each
    token [B, S, d / 2] gathered from the tables by position_ids given as
    an input; the opset-23 Attention op (not causal) with a bool key mask
    expanded to [B, 1, S, S]."""
    g = Graph(142)
    g.const("c_1702", np.array(1.702, np.float32))
    cos, sin = tables(g, DH // 2)
    x = g.op("Gather", [g.const("embed", g.w(V, D)), "input_ids"])
    cos_t = g.op("Gather", [cos, "position_ids"])  # [B, S, d / 2]
    sin_t = g.op("Gather", [sin, "position_ids"])
    keep = g.op("Cast", [g.op("Unsqueeze", ["attention_mask",
                                            g.const("ax12", np.array([1, 2], np.int64))])],
                to=TensorProto.BOOL)  # [B, 1, 1, S], expanded to [B, 1, S, S]
    sh = g.op("Shape", ["input_ids"])
    b = g.op("Slice", [sh, g.const("s0", np.array([0], np.int64)), g.const("s1", np.array([1], np.int64))])
    s = g.op("Slice", [sh, "s1", g.const("s2", np.array([2], np.int64))])
    keep = g.op("Expand", [keep, g.op("Concat", [b, "s1", s, s], axis=0)])
    for i in range(L):
        h = g.layernorm(x, "ln1_%d" % i)
        q = g.linear(h, "q_%d" % i, D, D)
        k = g.linear(h, "k_%d" % i, D, D)
        v = g.linear(h, "v_%d" % i, D, D)
        q = g.op("RotaryEmbedding", [q, cos_t, sin_t], num_heads=H, interleaved=1)
        k = g.op("RotaryEmbedding", [k, cos_t, sin_t], num_heads=H, interleaved=1)
        a = g.op("Attention", [q, k, v, keep], q_num_heads=H, kv_num_heads=H)
        x = g.layernorm(g.op("Add", [x, g.linear(a, "o_%d" % i, D, D)]), "ln2_%d" % i)
        x = g.layernorm(g.op("Add", [x, g.ffn(x, "ffn_%d" % i)]), "ln3_%d" % i)
    g.nodes.append(helper.make_node("ReduceMean", [x, g.const("ax1", np.array([1], np.int64))],
                                    ["pooled"], name="pool", keepdims=0))
    ins = [ids_input(), ids_input("attention_mask"), ids_input("position_ids")]
    out = helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", D])
    return g.model(ins, [out], 23)


def fusedmatmul_transb():
    """BERT as ONNX Runtime's fusions leave it, K kept in head layout:
    FusedMatMul(q, k, transB=1, alpha=1/sqrt(d)) for the scaled scores,
    the extended mask (1 - m) * -10000 added, post-LN."""
    g = Graph(143)
    g.const("c_1702", np.array(1.702, np.float32))
    x = g.op("Add", [g.op("Gather", [g.const("embed", g.w(V, D)), "input_ids"]),
                     g.op("Gather", [g.const("pos_embed", g.w(MAXPOS, D)),
                                     g.op("Range", [g.const("zero", np.array(0, np.int64)),
                                                    g.op("Gather", [g.op("Shape", ["input_ids"]),
                                                                    g.const("one", np.array(1, np.int64))]),
                                                    "one"])])])
    x = g.layernorm(x, "ln_e")
    m = g.op("Cast", [g.op("Unsqueeze", ["attention_mask", g.const("ax12", np.array([1, 2], np.int64))])],
             to=TensorProto.FLOAT)
    ext = g.op("Mul", [g.op("Sub", [g.const("f1", np.array(1.0, np.float32)), m]),
                       g.const("big", np.array(-10000.0, np.float32))])
    heads = g.const("heads_shape", np.array([0, 0, H, DH], np.int64))
    flat = g.const("flat_shape", np.array([0, 0, D], np.int64))
    for i in range(L):
        def head_view(v):
            return g.op("Transpose", [g.op("Reshape", [v, heads])], perm=[0, 2, 1, 3])
        q = head_view(g.linear(x, "q_%d" % i, D, D))
        k = head_view(g.linear(x, "k_%d" % i, D, D))
        v = head_view(g.linear(x, "v_%d" % i, D, D))
        sc = g.op("FusedMatMul", [q, k], domain="com.microsoft", alpha=float(1 / np.sqrt(DH)),
                  transA=0, transB=1, transBatchA=0, transBatchB=0)
        p = g.op("Softmax", [g.op("Add", [sc, ext])], axis=-1)
        o = g.op("Reshape", [g.op("Transpose", [g.op("MatMul", [p, v])], perm=[0, 2, 1, 3]), flat])
        x = g.layernorm(g.op("Add", [x, g.linear(o, "o_%d" % i, D, D)]), "ln1_%d" % i)
        x = g.layernorm(g.op("Add", [x, g.ffn(x, "ffn_%d" % i)]), "ln2_%d" % i)
    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="out"))
    ins = [ids_input(), ids_input("attention_mask")]
    out = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "seq", D])
    return g.model(ins, [out], 17, ms=True)


def inputs_for(m, r, B, S):
    """ids, a 0 / 1 mask (the last row padded by 2 on the right), positions
    (the first row a later chunk, starting at 5)."""
    ins = []
    for i in m.graph.input:
        if i.name == "input_ids":
            ins.append(r.randint(0, V, (B, S)).astype(np.int64))
        elif i.name == "attention_mask":
            a = np.ones((B, S), np.int64)
            a[-1, S - 2:] = 0
            ins.append(a)
        elif i.name == "position_ids":
            p = np.tile(np.arange(S, dtype=np.int64), (B, 1))
            p[0] += 5
            ins.append(p)
    return ins


def case_ops(build, seed):
    def make():
        m = build()
        r = np.random.RandomState(seed)
        sets = []
        for B, S in ((2, 7), (3, 5)):
            ins = inputs_for(m, r, B, S)
            sets.append((ins, ort_run(m, ins)[0]))
        return m, sets
    return make


def case_torch_submask():
    """PyTorch (torch 1.13, its outputs): Funnel's attention without its
    relative terms, the padding subtracted from the scores, `score - 1e6 *
    (1 - m)` (FunnelRelMultiheadAttention's INF), post-LN, GELU; exported by
    make_zoo.export into this folder."""
    import torch
    from torch import nn
    import make_zoo

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v = nn.Linear(D, D, bias=False), nn.Linear(D, D), nn.Linear(D, D)
            self.o, self.ln1, self.ln2 = nn.Linear(D, D), nn.LayerNorm(D), nn.LayerNorm(D)
            self.f1, self.f2 = nn.Linear(D, FF), nn.Linear(FF, D)

        def forward(self, x, m):
            b, s, _ = x.shape
            q = self.q(x).view(b, s, H, DH) * DH ** -0.5
            k = self.k(x).view(b, s, H, DH)
            v = self.v(x).view(b, s, H, DH)
            sc = torch.einsum("bind,bjnd->bnij", q, k)
            sc = sc - 1e6 * (1 - m[:, None, None].float())
            p = torch.softmax(sc, dim=-1)
            o = torch.einsum("bnij,bjnd->bind", p, v).reshape(b, s, D)
            x = self.ln1(x + self.o(o))
            return self.ln2(x + self.f2(nn.functional.gelu(self.f1(x))))

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V, D)
            self.layers = nn.ModuleList([Layer() for _ in range(L)])

        def forward(self, ids, m):
            x = self.emb(ids)
            for layer in self.layers:
                x = layer(x, m)
            return x

    def inputs(b, s):
        g = torch.Generator().manual_seed(b * 100 + s)
        m = torch.ones(b, s, dtype=torch.int64)
        m[-1, s - 2:] = 0
        return torch.randint(0, V, (b, s), generator=g), m

    make_zoo.export(HERE, "fa14_funnel_submask_einsum_op14", Model(), 144, inputs,
                    ["input_ids", "attention_mask"], ["last_hidden_state"], 14)


CASES = {
    "fa14_qwen_ropeop_4d_partial_causal_op23": case_ops(rope_4d_partial, 1),
    "fa14_enc_ropeop_3d_gathered_pairs_op23": case_ops(rope_3d_gathered, 2),
    "fa14_bert_fusedmatmul_transb_extmask_op17": case_ops(fusedmatmul_transb, 3),
    "fa14_roberta_ortext_fusedmatmul_op14": case_ort("roberta_cls_l2_d32_h4", "extended"),
}


def main():
    if not sys.argv[1:] or "fa14_funnel_submask_einsum_op14" in sys.argv[1:]:
        case_torch_submask()
        print("fa14_funnel_submask_einsum_op14", flush=True)
    for name in [n for n in sys.argv[1:] if n in CASES] or (list(CASES) if not sys.argv[1:] else []):
        m, sets = CASES[name]()
        write_case(name, m, sets)
        print(name, os.path.getsize(os.path.join(HERE, name, "model.onnx")), "bytes", flush=True)


if __name__ == "__main__":
    main()
