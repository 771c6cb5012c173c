#!/usr/bin/env python3
"""make_swin.py -- Swin's shifted windows written otherwise than
make_zoo2.py's z2_swin_window_op14 (zs_* cases of tests/data/models), from
the published architecture as Hugging Face's SwinModel lays it out:

the attention module takes the shifted block's mask [nW, N, N] as an
argument and adds it to the scores viewed [B, nW, H, N, N] after the
relative position bias (scores scaled after Q.K^T, not q before), q / k /
v three Linear layers; 24 x 24 images in 2 x 2 patches (a 12 x 12 grid),
windows of 4 x 4 patches (nW = 9 per image), the second block shifted by
2; the mask made once by the model from the grid and passed to the
blocks; exported with a static batch of 2 at opset 17.

d 32, 4 heads, FFN 64; seeded, PyTorch's outputs for the one data set.

    /usr/bin/python3 make_swin.py [OUTDIR [PREFIX...]]

Needs torch (1.13) and onnx (1.12).
"""
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

import make_zoo
from make_zoo import export
from make_zoo2 import images, relative_index

D, H, FF = 32, 4, 64
DH = D // H
WS, GRID, SHIFT = 4, 12, 2


def partition(x):
    # [B, G, G, C] -> [B * nW, WS * WS, C]
    b, h, w, c = x.shape
    x = x.view(b, h // WS, WS, w // WS, WS, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, WS * WS, c)


def merge(win, b):
    # [B * nW, WS * WS, C] -> [B, G, G, C]
    c = win.shape[-1]
    x = win.view(b, GRID // WS, GRID // WS, WS, WS, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, GRID, GRID, c)


def shift_mask():
    # the regions of the rolled grid numbered, -100 between different ones
    img = torch.zeros(1, GRID, GRID, 1)
    cnt = 0
    for hs in (slice(0, -WS), slice(-WS, -SHIFT), slice(-SHIFT, None)):
        for ws in (slice(0, -WS), slice(-WS, -SHIFT), slice(-SHIFT, None)):
            img[:, hs, ws, :] = cnt
            cnt += 1
    mw = partition(img).squeeze(-1)
    diff = mw.unsqueeze(1) - mw.unsqueeze(2)
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


class SwinSelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.output = nn.Linear(D, D)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * WS - 1) ** 2, H))
        self.register_buffer("relative_position_index", relative_index(WS, WS, extra_cls=False))

    def forward(self, x, attention_mask=None):
        bw, n, _ = x.shape
        q, k, v = (t(x).view(bw, n, H, DH).permute(0, 2, 1, 3) for t in (self.query, self.key, self.value))
        scores = torch.matmul(q, k.transpose(-1, -2)) / DH ** 0.5
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        scores = scores + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if attention_mask is not None:
            nw = attention_mask.shape[0]
            scores = scores.view(bw // nw, nw, H, n, n) + attention_mask.unsqueeze(1).unsqueeze(0)
            scores = scores.view(-1, H, n, n)
        ctx = torch.matmul(F.softmax(scores, dim=-1), v).permute(0, 2, 1, 3).reshape(bw, n, D)
        return self.output(ctx)


class SwinLayer(nn.Module):
    def __init__(self, shift):
        super().__init__()
        self.shift = shift
        self.layernorm_before, self.layernorm_after = nn.LayerNorm(D), nn.LayerNorm(D)
        self.attention = SwinSelfAttention()
        self.intermediate, self.out = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, mask):
        b = x.shape[0]
        h = self.layernorm_before(x).view(b, GRID, GRID, D)
        if self.shift:
            h = torch.roll(h, shifts=(-self.shift, -self.shift), dims=(1, 2))
        a = merge(self.attention(partition(h), mask if self.shift else None), b)
        if self.shift:
            a = torch.roll(a, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + a.reshape(b, GRID * GRID, D)
        return x + self.out(F.gelu(self.intermediate(self.layernorm_after(x))))


class SwinHF(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, D, 2, 2)
        self.norm0 = nn.LayerNorm(D)
        self.layers = nn.ModuleList([SwinLayer(0), SwinLayer(SHIFT)])
        self.norm = nn.LayerNorm(D)
        self.classifier = nn.Linear(D, 10)
        # (made here, not in forward: the exporter writes slice assignment as
        # ScatterND, which the reference interpreter lacks)
        self.register_buffer("mask", shift_mask())

    def forward(self, pixel_values):
        x = self.norm0(self.patch(pixel_values).flatten(2).transpose(1, 2))
        for layer in self.layers:
            x = layer(x, self.mask)
        return self.classifier(self.norm(x).mean(1))


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    make_zoo.PREFIXES.extend(sys.argv[2:])
    torch.manual_seed(0)
    export(outdir, "zs_swin_hf_maskarg_nw9_static_op17", SwinHF(), 951, images(95, 24), ["pixel_values"],
           ["logits"], 17, dynamic=False)


if __name__ == "__main__":
    main()
