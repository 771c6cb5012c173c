#!/usr/bin/env python3
"""make_round3.py -- held-out whole models, round 3 (r_* cases of tests/data/models).

Written from the published architectures with other choices than the
generators before this one (d 16, 2 heads, FFN 24, 2 layers, vocabulary 40;
batch 3 of 19 tokens, rows padded on the right unless said):

- an encoder whose extra outputs are sized by arithmetic of the length:
  every 8th row (`h[:, ::8]`, ceil(S / 8) rows), the first S // 8 rows and
  the first 4 rows (min(S, 4)) -- sizes the load-time probes (3 and 5
  tokens) cannot tell from fixed ones.

    /usr/bin/python3 make_round3.py [CASE...]     the cases, into this folder

Each case is seeded: the same bytes for the same torch (1.13) and onnx.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

from onnx import numpy_helper

from make_models import save_case
from make_whole import padded_mask, seeded_init

D, H, FF, L, V, MAXPOS = 16, 2, 24, 2, 40, 80


class FusedQKVAttention(nn.Module):
    # one qkv projection viewed [B, S, 3, H, dh] and permuted; the key mask
    # added as (m - 1) * 1e9 over [B, 1, 1, S]
    def __init__(self, d, h):
        super().__init__()
        self.h, self.dh = h, d // h
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)

    def forward(self, x, bias):
        b, s, d = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.h, self.dh).permute(2, 0, 3, 1, 4)
        a = (q * self.dh ** -0.5) @ k.transpose(-2, -1) + bias
        return self.proj((a.softmax(-1) @ v).transpose(1, 2).reshape(b, s, d))


class PreLNBlock(nn.Module):
    def __init__(self, d, h, f):
        super().__init__()
        self.n1, self.att = nn.LayerNorm(d), FusedQKVAttention(d, h)
        self.n2, self.up, self.down = nn.LayerNorm(d), nn.Linear(d, f), nn.Linear(f, d)

    def forward(self, x, bias):
        x = x + self.att(self.n1(x), bias)
        return x + self.down(F.gelu(self.up(self.n2(x))))


class RowsEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.pos = nn.Embedding(V, D), nn.Parameter(torch.zeros(MAXPOS, D))
        self.blocks = nn.ModuleList(PreLNBlock(D, H, FF) for _ in range(L))
        self.norm = nn.LayerNorm(D)

    def forward(self, input_ids, attention_mask):
        s = input_ids.size(1)
        x = self.emb(input_ids) + self.pos[:s]
        bias = (attention_mask[:, None, None, :].to(x.dtype) - 1.0) * 1e9
        for blk in self.blocks:
            x = blk(x, bias)
        h = self.norm(x)
        return h, h[:, ::8], h[:, : s // 8], h[:, :4]


def case_rows(g, B, S):
    ids = torch.randint(0, V, (B, S), generator=g)
    mask = padded_mask(B, S)
    bs = {0: "batch", 1: "sequence"}
    outs = ["hidden", "every8", "blocks", "head4"]
    dyn = {"input_ids": bs, "attention_mask": bs}
    dyn.update({o: bs for o in outs})
    return RowsEncoder(), [ids, mask], ["input_ids", "attention_mask"], outs, dyn, 14


CASES = {
    "r_enc_rows_stride8_div8_head4_op14": (case_rows, 61),
}


# more test sets of a case, at these lengths (batch 2)
MORE_LENGTHS = {"r_enc_rows_stride8_div8_head4_op14": (3, 33)}


def save_set(d, model, inputs, in_names, out_names):
    os.makedirs(d, exist_ok=True)
    with torch.no_grad():
        outs = model(*inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    for prefix, names, ts in (("input", in_names, inputs), ("output", out_names, outs)):
        for i, (n, t) in enumerate(zip(names, ts)):
            with open(os.path.join(d, "%s_%d.pb" % (prefix, i)), "wb") as f:
                f.write(numpy_helper.from_array(t.numpy(), n).SerializeToString())


def make_case(outdir, name):
    make, seed = CASES[name]
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model, inputs, ins, outs, dyn, opset = make(g, 3, 19)
    seeded_init(model, seed, 0.2)
    save_case(outdir, name, model.eval(), inputs, ins, outs, dyn, opset)
    for k, s in enumerate(MORE_LENGTHS.get(name, ()), 1):
        more = make(g, 2, s)[1]
        save_set(os.path.join(outdir, name, "test_data_set_%d" % k), model, more, ins, outs)
    return os.path.getsize(os.path.join(outdir, name, "model.onnx"))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    for name in sys.argv[1:] or list(CASES):
        print(name, make_case(here, name), "bytes", flush=True)


if __name__ == "__main__":
    main()
