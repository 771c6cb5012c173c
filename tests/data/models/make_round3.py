#!/usr/bin/env python3
"""make_round3.py -- held-out whole models, round 3 (r_* cases of tests/data/models).

Written from the published architectures with other choices than the
generators before this one (d 16, 2 heads, FFN 24, 2 layers, vocabulary 40;
batch 3 of 19 tokens, rows padded on the right unless said):

- an encoder whose extra outputs are sized by arithmetic of the length:
  every 8th row (`h[:, ::8]`, ceil(S / 8) rows), the first S // 8 rows and
  the first 4 rows (min(S, 4)) -- sizes the load-time probes (3 and 5
  tokens) cannot tell from fixed ones;
- a T5 decoder alone (relative position buckets computed in the graph,
  RMS norms, einsum attention, tied head scaled by d^-0.5) whose
  encoder_attention_mask names its axis `src_len` and the encoder states
  theirs `enc_len`: one axis the file names twice;
- T5 encoder and decoder in one graph, decoder_input_ids an input.

    /usr/bin/python3 make_round3.py [CASE...]     the cases, into this folder

Each case is seeded: the same bytes for the same torch (1.13) and onnx.
"""
import math
import os
import sys

import numpy as np
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


# ---- T5: relative position buckets in the graph, RMS norms, no 1/sqrt(d) ----
NB, MAXD = 8, 20


def rel_buckets(q_len, k_len, bidirectional):
    # T5's bucketing: half the buckets exact, the rest log-spaced up to MAXD
    rel = torch.arange(k_len)[None, :] - torch.arange(q_len)[:, None]
    n = NB
    if bidirectional:
        n //= 2
        out = (rel > 0).long() * n
        rel = rel.abs()
    else:
        out = torch.zeros_like(rel)
        rel = -torch.clamp(rel, max=0)
    exact = n // 2
    far = exact + (torch.log(rel.float() / exact + 1e-6) / math.log(MAXD / exact)
                   * (n - exact)).long()
    far = torch.clamp(far, max=n - 1)
    return out + torch.where(rel < exact, rel, far)


class T5Norm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


class T5Attn(nn.Module):
    def __init__(self, d, h, rel=None):
        super().__init__()
        self.h, self.dh = h, d // h
        self.q, self.k = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.v, self.o = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.rel = rel

    def split(self, t):
        return t.view(t.size(0), t.size(1), self.h, self.dh).permute(0, 2, 1, 3)

    def forward(self, x, kv, bias):
        w = torch.einsum("bhqd,bhkd->bhqk", self.split(self.q(x)), self.split(self.k(kv))) + bias
        c = torch.einsum("bhqk,bhkd->bhqd", F.softmax(w.float(), dim=-1), self.split(self.v(kv)))
        return self.o(c.permute(0, 2, 1, 3).flatten(2))


class T5Stack(nn.Module):
    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder
        self.rel = nn.Embedding(NB, H)
        self.n_sa = nn.ModuleList(T5Norm(D) for _ in range(L))
        self.sa = nn.ModuleList(T5Attn(D, H) for _ in range(L))
        self.n_ca = nn.ModuleList(T5Norm(D) for _ in range(L if decoder else 0))
        self.ca = nn.ModuleList(T5Attn(D, H) for _ in range(L if decoder else 0))
        self.n_ff = nn.ModuleList(T5Norm(D) for _ in range(L))
        self.wi = nn.ModuleList(nn.Linear(D, FF, bias=False) for _ in range(L))
        self.wo = nn.ModuleList(nn.Linear(FF, D, bias=False) for _ in range(L))
        self.final = T5Norm(D)

    def forward(self, x, self_mask, enc=None, enc_mask=None):
        s = x.size(1)
        pos = self.rel(rel_buckets(s, s, not self.decoder)).permute(2, 0, 1)[None]
        keep = self_mask[:, None, None, :].bool()
        if self.decoder:
            keep = keep & torch.ones(s, s, dtype=torch.bool).tril()[None, None]
        self_bias = pos.masked_fill(~keep, FMIN)
        if enc is not None:
            cross_bias = (1.0 - enc_mask[:, None, None, :].float()) * FMIN
        for i in range(L):
            y = self.n_sa[i](x)
            x = x + self.sa[i](y, y, self_bias)
            if enc is not None:
                x = x + self.ca[i](self.n_ca[i](x), enc, cross_bias)
            x = x + self.wo[i](F.relu(self.wi[i](self.n_ff[i](x))))
        return self.final(x)


FMIN = torch.finfo(torch.float32).min


class T5Decoder(nn.Module):
    # a decoder alone: the encoder's states and its padding mask as inputs
    def __init__(self):
        super().__init__()
        self.shared = nn.Embedding(V, D)
        self.dec = T5Stack(True)

    def forward(self, decoder_input_ids, encoder_hidden_states, encoder_attention_mask):
        x = self.shared(decoder_input_ids)
        h = self.dec(x, torch.ones_like(decoder_input_ids), encoder_hidden_states,
                     encoder_attention_mask)
        return (h * D ** -0.5) @ self.shared.weight.t()


class T5Full(nn.Module):
    # encoder and decoder in one graph, the embedding shared and tied to
    # the head (scaled by d^-0.5 first, as T5 v1.0)
    def __init__(self):
        super().__init__()
        self.shared = nn.Embedding(V, D)
        self.enc, self.dec = T5Stack(False), T5Stack(True)

    def forward(self, input_ids, attention_mask, decoder_input_ids):
        e = self.enc(self.shared(input_ids), attention_mask)
        h = self.dec(self.shared(decoder_input_ids), torch.ones_like(decoder_input_ids), e,
                     attention_mask)
        return (h * D ** -0.5) @ self.shared.weight.t()


def case_t5_dec_apart(g, B, S):
    dec = torch.randint(0, V, (B, S // 2 + 1), generator=g)
    enc = torch.randn(B, S, D, generator=g)
    mask = padded_mask(B, S)
    dyn = {"decoder_input_ids": {0: "batch", 1: "tgt_len"},
           "encoder_hidden_states": {0: "batch", 1: "enc_len"},
           "encoder_attention_mask": {0: "batch", 1: "src_len"},
           "logits": {0: "batch", 1: "tgt_len"}}
    ins = ["decoder_input_ids", "encoder_hidden_states", "encoder_attention_mask"]
    return T5Decoder(), [dec, enc, mask], ins, ["logits"], dyn, 14


def case_t5_full(g, B, S):
    ids = torch.randint(0, V, (B, S), generator=g)
    dec = torch.randint(0, V, (B, S // 2 + 1), generator=g)
    bs, bt = {0: "batch", 1: "src_len"}, {0: "batch", 1: "tgt_len"}
    dyn = {"input_ids": bs, "attention_mask": bs, "decoder_input_ids": bt, "logits": bt}
    return (T5Full(), [ids, padded_mask(B, S), dec], ["input_ids", "attention_mask", "decoder_input_ids"],
            ["logits"], dyn, 14)


CASES = {
    "r_enc_rows_stride8_div8_head4_op14": (case_rows, 61),
    "r_t5dec_cross_mask_axis_apart_op14": (case_t5_dec_apart, 62),
    "r_t5_encdec_onegraph_tied_op14": (case_t5_full, 63),
}


# more test sets of a case, at these lengths (batch 2)
MORE_LENGTHS = {"r_enc_rows_stride8_div8_head4_op14": (3, 33)}


# a dataset of .npy inputs for `mha run` (rows, source length, decoder
# length): ids, a 0 / 1 mask, the same as lengths, decoder ids
DATASETS = {"r_t5_encdec_onegraph_tied_op14": (7, 13, 5)}


def write_dataset(d, g, n, s, t):
    os.makedirs(d, exist_ok=True)
    lengths = torch.randint(1, s + 1, (n,), generator=g)
    lengths[0] = s
    mask = (torch.arange(s)[None, :] < lengths[:, None]).long()
    np.save(os.path.join(d, "input_ids.npy"), torch.randint(0, V, (n, s), generator=g).numpy())
    np.save(os.path.join(d, "attention_mask.npy"), mask.numpy())
    np.save(os.path.join(d, "lengths.npy"), lengths.numpy())
    np.save(os.path.join(d, "decoder_input_ids.npy"), torch.randint(0, V, (n, t), generator=g).numpy())


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
    if name.startswith("r_t5dec_cross_mask"):
        # the mask without its last 3 keys: narrower than the encoder states
        d = os.path.join(outdir, name, "dataset")
        os.makedirs(d, exist_ok=True)
        for i, (n, t) in enumerate(zip(ins, inputs)):
            np.save(os.path.join(d, n + ".npy"), t.numpy())
        np.save(os.path.join(d, "mask_narrow.npy"), inputs[2][:, :-3].numpy())
    if name in DATASETS:
        write_dataset(os.path.join(outdir, name, "dataset"), g, *DATASETS[name])
    return os.path.getsize(os.path.join(outdir, name, "model.onnx"))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    for name in sys.argv[1:] or list(CASES):
        print(name, make_case(here, name), "bytes", flush=True)


if __name__ == "__main__":
    main()
