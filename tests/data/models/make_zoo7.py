#!/usr/bin/env python3
"""make_zoo7.py -- whole models of a seventh round (z7_* cases of
tests/data/models): the speech encoders with their samples symbolic, the
frames sized by the feature encoder's strided Convs as the published
configurations have them:
HuBERT-large / wav2vec2-large-lv60 (feat_extract_norm "layer": a LayerNorm
over the channels after each of the seven Convs, kernels 10, 3, 3, 3, 3, 2,
2 and strides 5, 2, 2, 2, 2, 2, 2 -- 320 samples a frame, 400 for the
first; the stable-layer-norm encoder: pre-LN layers, the LayerNorm after
them), the positional Conv of an even kernel (16, padding 8, 4 groups, its
last frame removed); and the same stack with a dilated, padded Conv added
on the frames (kernel 3, dilation 2, padding 2: the frames kept), which no
published model has, to hold the composed rule to pads and dilations.

Each is small (8 channels, d 32, 4 heads, FFN 64, 2 layers), seeded, with
PyTorch's outputs for two data sets (make_zoo.export: batch 2 of 7 frames,
batch 3 of 5; 320 frames + 87 samples each).

    /usr/bin/python3 make_zoo7.py [OUTDIR [PREFIX...]]

Needs torch (1.13) and onnx (1.12); the same bytes for the same versions.
"""
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

import make_zoo
from make_zoo import export
from make_zoo3 import Wav2Vec2Layer, D

KERNELS = (10, 3, 3, 3, 3, 2, 2)
STRIDES = (5, 2, 2, 2, 2, 2, 2)


class StableLayer(nn.Module):
    """Wav2Vec2EncoderLayerStableLayerNorm: pre-LN attention and FFN."""

    def __init__(self):
        super().__init__()
        self.inner = Wav2Vec2Layer()

    def forward(self, x):
        a = self.inner
        b, s, _ = x.shape
        h, dh = 4, D // 4
        y = a.layer_norm(x)
        q = (a.q_proj(y) * dh ** -0.5).view(b, s, h, dh).transpose(1, 2).reshape(b * h, s, dh)
        k = a.k_proj(y).view(b, s, h, dh).transpose(1, 2).reshape(b * h, s, dh)
        v = a.v_proj(y).view(b, s, h, dh).transpose(1, 2).reshape(b * h, s, dh)
        att = F.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1)
        o = torch.bmm(att, v).view(b, h, s, dh).transpose(1, 2).reshape(b, s, D)
        x = x + a.out_proj(o)
        return x + a.output_dense(F.gelu(a.intermediate_dense(a.final_layer_norm(x))))


class HubertLarge(nn.Module):
    def __init__(self, dilated=False):
        super().__init__()
        c = 8
        self.convs = nn.ModuleList(
            nn.Conv1d(1 if i == 0 else c, c, k, s, bias=True) for i, (k, s) in enumerate(zip(KERNELS, STRIDES)))
        self.norms = nn.ModuleList(nn.LayerNorm(c) for _ in KERNELS)
        self.dilated = nn.Conv1d(c, c, 3, 1, padding=2, dilation=2) if dilated else None
        self.fp_norm, self.fp_proj = nn.LayerNorm(c), nn.Linear(c, D)
        self.pos_conv = nn.Conv1d(D, D, 16, padding=8, groups=4)
        self.layers = nn.ModuleList(StableLayer() for _ in range(2))
        self.layer_norm = nn.LayerNorm(D)

    def forward(self, input_values):
        f = input_values[:, None]
        for conv, norm in zip(self.convs, self.norms):
            f = F.gelu(norm(conv(f).transpose(1, 2)).transpose(1, 2))
        if self.dilated is not None:
            f = F.gelu(self.dilated(f))
        x = self.fp_proj(self.fp_norm(f.transpose(1, 2)))
        p = self.pos_conv(x.transpose(1, 2))[:, :, :-1]
        x = x + F.gelu(p).transpose(1, 2)
        for layer in self.layers:
            x = layer(x)
        return self.layer_norm(x)


def audio(seed):
    # 320 S + 87 samples: S frames
    def make(b, s):
        return [torch.randn(b, 320 * s + 87, generator=torch.Generator().manual_seed(seed + s))]
    return make


def cases():
    frames = {"input_values": {0: "batch", 1: "samples"},
              "last_hidden_state": {0: "batch", 1: "frames"}}
    audio_io = ["input_values"], ["last_hidden_state"]
    return [
        ("z7_hubert_large_layernormconv_op14", HubertLarge(), 901, audio(301), *audio_io, 14,
         {"dynamic": frames}),
        ("z7_hubert_dilatedconv_op17", HubertLarge(dilated=True), 902, audio(302), *audio_io, 17,
         {"dynamic": frames}),
    ]


if __name__ == "__main__":
    make_zoo.PREFIXES.extend(sys.argv[2:])
    torch.manual_seed(0)
    for name, model, seed, make_inputs, ins, outs, opset, kw in cases():
        export(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)),
               name, model, seed, make_inputs, ins, outs, opset, **kw)
