#!/usr/bin/env python3
"""make_zoo12.py -- round 12 of the whole-model corpus (tests/data/models):
grouped, depthwise and auto_pad Convs, the Convs a judge's speech and
vision exports hold beside their attention layers.

z12_w2v2_posconv_g8k16_op14: make_zoo3.py's wav2vec2 / HuBERT encoder with
  the positional Conv1d in the base model's proportions (kernel 16, padding
  8, 8 groups of 4 channels, weight-normed, the last frame trimmed, GELU);
  audio of any length.
z12_conformer_dwconv_mult2_op17: a conformer's convolution module before
  two wav2vec2 attention layers: a pointwise Conv1d to 2 D channels, GLU, a
  depthwise Conv1d of kernel 7, dilation 2, two outputs per channel (groups
  D, 2 D out), BatchNorm, SiLU, a pointwise Conv1d of 2 groups back to D;
  features [B, S, D] in.
z12_tf_autopad_conv1d_op13: Convs as tf2onnx writes them (auto_pad, no
  pads), written with onnx.helper: SAME_UPPER kernel 3 stride 2, Relu, a
  depthwise SAME_LOWER kernel 4, a grouped VALID kernel 2 stride 2; frames
  symbolic, the two data sets of odd and even lengths (the SAME pads change
  with the length's parity). ONNX Runtime's outputs.
z12_tf_autopad_conv2d_op13: the same on 15 x 15 images: SAME_UPPER 3 x 3
  stride 2, a depthwise SAME_LOWER 4 x 4 of two outputs per channel, a
  grouped VALID 1 x 1 of 4 groups, the mean over the grid. ONNX Runtime's
  outputs.

    /usr/bin/python3 make_zoo12.py [OUTDIR [PREFIX...]]

Needs torch (1.13), onnx (1.12), node with onnxruntime-node ($MHA_PEER_HOME)
for the auto_pad cases.
"""
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

import make_zoo
import make_zoo3
from make_deploy7 import ort_run
from make_zoo import export

D = make_zoo3.D


def bn_stats(bn, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.1)
        bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
    return bn


class Wav2Vec2PosConv(make_zoo3.Wav2Vec2):
    """wav2vec2-base's positional Conv in proportion: kernel 128 and 16
    groups over 768 channels there, kernel 16 and 8 groups over 32 here."""

    def __init__(self):
        super().__init__()
        self.pos_conv = nn.utils.weight_norm(nn.Conv1d(D, D, 16, padding=8, groups=8),
                                             name="weight", dim=2)


class ConformerConv(nn.Module):
    """The conformer's convolution module (pre-LN, residual) with a depthwise
    Conv of two outputs per channel and a grouped pointwise Conv back, then
    two wav2vec2 layers."""

    def __init__(self):
        super().__init__()
        self.ln = nn.LayerNorm(D)
        self.pw1 = nn.Conv1d(D, 2 * D, 1)
        self.dw = nn.Conv1d(D, 2 * D, 7, padding=6, dilation=2, groups=D, bias=False)
        self.bn = bn_stats(nn.BatchNorm1d(2 * D), 1210)
        self.pw2 = nn.Conv1d(2 * D, D, 1, groups=2)
        self.layers = nn.ModuleList(make_zoo3.Wav2Vec2Layer() for _ in range(2))

    def forward(self, x):
        h = F.glu(self.pw1(self.ln(x).transpose(1, 2)), dim=1)
        x = x + self.pw2(F.silu(self.bn(self.dw(h)))).transpose(1, 2)
        for layer in self.layers:
            x = layer(x)
        return x


def features(seed):
    def make(b, s):
        return [torch.randn(b, s, D, generator=torch.Generator().manual_seed(seed + s))]
    return make


# ------------------------------------------------------------ auto_pad ----

def conv_node(name, x, w, b, y, auto_pad, group=1, strides=None):
    attrs = {"auto_pad": auto_pad, "group": group}
    if strides:
        attrs["strides"] = strides
    return helper.make_node("Conv", [x, w, b], [y], name=name, **attrs)


def autopad_model(two_d, rng):
    """x [N, 8, T] (or [N, 3, 15, 15]) through three auto_pad Convs."""
    if two_d:
        c_in, sp, shape = 3, [15, 15], ["N", 3, 15, 15]
        convs = [("up", 3, 8, 1, [3, 3], "SAME_UPPER", [2, 2]),
                 ("low", 8, 16, 8, [4, 4], "SAME_LOWER", None),
                 ("valid", 16, 16, 4, [1, 1], "VALID", None)]
    else:
        c_in, sp, shape = 8, None, ["N", 8, "T"]
        convs = [("up", 8, 16, 1, [3], "SAME_UPPER", [2]),
                 ("low", 16, 16, 16, [4], "SAME_LOWER", None),
                 ("valid", 16, 16, 4, [2], "VALID", [2])]
    inits, nodes, x = [], [], "x"
    for i, (name, cin, cout, group, k, mode, strides) in enumerate(convs):
        w = (rng.standard_normal([cout, cin // group] + k) * (cin // group * int(np.prod(k))) ** -0.5)
        inits += [numpy_helper.from_array(w.astype(np.float32), name + "_w"),
                  numpy_helper.from_array((rng.standard_normal(cout) * 0.1).astype(np.float32),
                                          name + "_b")]
        y = name + "_y"
        nodes.append(conv_node(name, x, name + "_w", name + "_b", y, mode, group, strides))
        if i == 0:
            nodes.append(helper.make_node("Relu", [y], [y + "_relu"], name="relu"))
            y = y + "_relu"
        x = y
    if two_d:
        nodes.append(helper.make_node("ReduceMean", [x], ["y"], name="mean", axes=[2, 3], keepdims=0))
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16])
    else:
        nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
        out = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 16, None])
    graph = helper.make_graph(nodes, "autopad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [out], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="tf2onnx-style")
    onnx.checker.check_model(model)
    return model


def autopad_case(outdir, name, two_d, seed):
    if make_zoo.PREFIXES and not any(name.startswith(p) for p in make_zoo.PREFIXES):
        return
    rng = np.random.default_rng(seed)
    model = autopad_model(two_d, rng)
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    onnx.save(model, os.path.join(d, "model.onnx"))
    # odd and even lengths (images: batch 2 and 3)
    shapes = [[2, 3, 15, 15], [3, 3, 15, 15]] if two_d else [[2, 8, 13], [3, 8, 10]]
    for k, shape in enumerate(shapes):
        x = rng.standard_normal(shape).astype(np.float32)
        (y,) = ort_run(model, [x])
        sd = os.path.join(d, "test_data_set_%d" % k)
        os.makedirs(sd, exist_ok=True)
        for fn, n, t in (("input_0.pb", "x", x), ("output_0.pb", "y", y)):
            with open(os.path.join(sd, fn), "wb") as f:
                f.write(numpy_helper.from_array(t, n).SerializeToString())


def zoo12(outdir):
    export(outdir, "z12_w2v2_posconv_g8k16_op14", Wav2Vec2PosConv(), 1201, make_zoo3.audio(1201),
           ["input_values"], ["last_hidden_state"], 14)
    export(outdir, "z12_conformer_dwconv_mult2_op17", ConformerConv(), 1202, features(1202),
           ["input_features"], ["last_hidden_state"], 17)
    autopad_case(outdir, "z12_tf_autopad_conv1d_op13", False, 1203)
    autopad_case(outdir, "z12_tf_autopad_conv2d_op13", True, 1204)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    make_zoo.PREFIXES[:] = sys.argv[2:]
    torch.manual_seed(0)
    zoo12(outdir)


if __name__ == "__main__":
    main()
