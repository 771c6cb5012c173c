#!/usr/bin/env python3
"""make_models.py -- the small whole-model test cases of tests/data/models.

Each model is written here in PyTorch from its published architecture (not
taken from a model zoo), with seeded random weights, exported to ONNX with
dynamic batch and sequence axes, and kept with one input set and PyTorch's
outputs as an ONNX backend-test folder:

    <name>/model.onnx
    <name>/test_data_set_0/input_<i>.pb, output_<i>.pb

Run with a Python that has torch (1.13) and onnx:  python3 make_models.py [outdir]
"""
import math
import os
import sys

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

D, HEADS, FFN, LAYERS, VOCAB, MAXPOS = 64, 4, 128, 2, 100, 32


def gelu_tanh(x):
    # GPT-2's GELU: the tanh approximation
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class BertSelfAttention(nn.Module):
    """BERT: separate Q, K, V Linear layers, heads split by view/permute,
    scores / sqrt(d_head) plus the extended mask, softmax, context."""

    def __init__(self):
        super().__init__()
        self.h, self.dh = HEADS, D // HEADS
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))

    def split(self, x):
        b, s, _ = x.shape
        return x.view(b, s, self.h, self.dh).permute(0, 2, 1, 3)

    def forward(self, x, ext_mask):
        q, k, v = self.split(self.q(x)), self.split(self.k(x)), self.split(self.v(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.dh) + ext_mask
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v)
        b, _, s, _ = ctx.shape
        return self.o(ctx.permute(0, 2, 1, 3).reshape(b, s, D))


class BertLayer(nn.Module):
    """Post-LN: X = LN(X + Attn(X)); X = LN(X + W2 gelu(W1 X)) (erf GELU)."""

    def __init__(self):
        super().__init__()
        self.attn = BertSelfAttention()
        self.ln1, self.ln2 = nn.LayerNorm(D, eps=1e-12), nn.LayerNorm(D, eps=1e-12)
        self.w1, self.w2 = nn.Linear(D, FFN), nn.Linear(FFN, D)

    def forward(self, x, ext_mask):
        x = self.ln1(x + self.attn(x, ext_mask))
        return self.ln2(x + self.w2(nn.functional.gelu(self.w1(x))))


class Bert(nn.Module):
    """Token + position + segment embeddings, LayerNorm, post-LN layers, the
    extended mask (1 - mask) * -10000 built once from attention_mask, and
    the pooler (tanh of a Linear over the CLS token)."""

    def __init__(self):
        super().__init__()
        self.tok, self.pos, self.seg = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D), nn.Embedding(2, D)
        self.ln = nn.LayerNorm(D, eps=1e-12)
        self.layers = nn.ModuleList(BertLayer() for _ in range(LAYERS))
        self.pool = nn.Linear(D, D)
        self.register_buffer("position_ids", torch.arange(MAXPOS).unsqueeze(0))

    def forward(self, input_ids, attention_mask, token_type_ids):
        s = input_ids.shape[1]
        x = self.tok(input_ids) + self.pos(self.position_ids[:, :s]) + self.seg(token_type_ids)
        x = self.ln(x)
        ext = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, ext)
        return x, torch.tanh(self.pool(x[:, 0]))


class GptBlock(nn.Module):
    """Pre-LN: X = X + Attn(LN(X)); X = X + W2 gelu_tanh(W1 LN(X)); fused QKV
    projection (c_attn), causal mask from a tril buffer."""

    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.c_attn, self.c_proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.fc, self.proj = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)
        self.register_buffer("bias", torch.tril(torch.ones(MAXPOS, MAXPOS)).view(1, 1, MAXPOS, MAXPOS))

    def attn(self, x):
        b, s, _ = x.shape
        q, k, v = self.c_attn(x).split(D, dim=2)
        q, k, v = (t.view(b, s, HEADS, D // HEADS).transpose(1, 2) for t in (q, k, v))
        w = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(D // HEADS)
        causal = self.bias[:, :, :s, :s]
        # as Hugging Face's GPT-2 does: the most negative float hides a key
        w = torch.where(causal.bool(), w, torch.tensor(torch.finfo(w.dtype).min, dtype=w.dtype))
        y = torch.matmul(torch.softmax(w, dim=-1), v)
        return self.c_proj(y.transpose(1, 2).reshape(b, s, D))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.proj(gelu_tanh(self.fc(self.ln2(x))))


class Gpt2(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D)
        self.blocks = nn.ModuleList(GptBlock() for _ in range(LAYERS))
        self.ln_f = nn.LayerNorm(D)

    def forward(self, input_ids):
        s = input_ids.shape[1]
        pos = torch.arange(s, dtype=torch.long).unsqueeze(0)
        x = self.wte(input_ids) + self.wpe(pos)
        for b in self.blocks:
            x = b(x)
        # logits through the tied embedding
        return torch.matmul(self.ln_f(x), self.wte.weight.t())


class VitBlock(nn.Module):
    """Pre-LN with nn.MultiheadAttention (batch_first) and an erf-GELU MLP."""

    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D, eps=1e-6), nn.LayerNorm(D, eps=1e-6)
        self.attn = nn.MultiheadAttention(D, HEADS, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(D, FFN), nn.GELU(), nn.Linear(FFN, D))

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class Vit(nn.Module):
    """Patch embedding as a Conv with stride = kernel = patch, a CLS token,
    learned positions, pre-LN blocks, final LN, the CLS row as output."""

    def __init__(self, image=16, patch=4, chans=3):
        super().__init__()
        n = (image // patch) ** 2
        self.patch = nn.Conv2d(chans, D, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, D) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, n + 1, D) * 0.02)
        self.blocks = nn.ModuleList(VitBlock() for _ in range(LAYERS))
        self.ln = nn.LayerNorm(D, eps=1e-6)

    def forward(self, pixels):
        x = self.patch(pixels).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for b in self.blocks:
            x = b(x)
        return self.ln(x)[:, 0]


def save_case(outdir, name, model, inputs, in_names, out_names, dyn, opset):
    d = os.path.join(outdir, name)
    os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
    model.eval()
    with torch.no_grad():
        outs = model(*inputs)
    if not isinstance(outs, tuple):
        outs = (outs,)
    torch.onnx.export(model, tuple(inputs), os.path.join(d, "model.onnx"), input_names=in_names,
                      output_names=out_names, dynamic_axes=dyn, opset_version=opset,
                      do_constant_folding=True)
    for i, (n, t) in enumerate(zip(in_names, inputs)):
        p = os.path.join(d, "test_data_set_0", "input_%d.pb" % i)
        with open(p, "wb") as f:
            f.write(numpy_helper.from_array(t.numpy(), n).SerializeToString())
    for i, (n, t) in enumerate(zip(out_names, outs)):
        p = os.path.join(d, "test_data_set_0", "output_%d.pb" % i)
        with open(p, "wb") as f:
            f.write(numpy_helper.from_array(t.numpy(), n).SerializeToString())
    onnx.checker.check_model(onnx.load(os.path.join(d, "model.onnx")))


def randomize(model, seed):
    # nn defaults give LayerNorm weight 1 / bias 0: random ones test more
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.dim() < 2 else 0.15))


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)

    bert = Bert()
    randomize(bert, 11)
    ids = torch.randint(0, VOCAB, (2, 7), generator=g)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    seg = torch.zeros(2, 7, dtype=torch.long)
    seg[:, 4:] = 1
    bs = {0: "batch", 1: "seq"}
    save_case(outdir, "bert_postln_l2_d64_h4", bert, [ids, mask, seg],
              ["input_ids", "attention_mask", "token_type_ids"], ["last_hidden_state", "pooler_output"],
              {"input_ids": bs, "attention_mask": bs, "token_type_ids": bs,
               "last_hidden_state": bs, "pooler_output": {0: "batch"}}, 14)

    # a small dataset of token ids for `mha run` (5 rows, padded ones too)
    ds = os.path.join(outdir, "bert_postln_l2_d64_h4", "dataset")
    os.makedirs(ds, exist_ok=True)
    ids = torch.randint(0, VOCAB, (5, 6), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(5, 6, dtype=torch.long)
    mask[1, 4:] = 0
    mask[3, 2:] = 0
    np.save(os.path.join(ds, "input_ids.npy"), ids.numpy())
    np.save(os.path.join(ds, "attention_mask.npy"), mask.numpy())
    np.save(os.path.join(ds, "token_type_ids.npy"), (torch.arange(6) >= 3).long().expand(5, 6).numpy())

    gpt = Gpt2()
    randomize(gpt, 12)
    ids = torch.randint(0, VOCAB, (2, 9), generator=g)
    save_case(outdir, "gpt2_preln_causal_l2_d64_h4", gpt, [ids], ["input_ids"], ["logits"],
              {"input_ids": bs, "logits": bs}, 15)

    # MiniLM: BERT's architecture, narrower and deeper for its width
    # (3 layers here, d 48, 6 heads of 8, FFN 192), opset 17: the
    # LayerNormalization op
    global D, HEADS, FFN, LAYERS
    D, HEADS, FFN, LAYERS = 48, 6, 192, 3
    mini = Bert()
    randomize(mini, 14)
    ids = torch.randint(0, VOCAB, (3, 5), generator=g)
    mask = torch.ones(3, 5, dtype=torch.long)
    mask[0, 3:] = 0
    mask[2, 1:] = 0
    seg = torch.zeros(3, 5, dtype=torch.long)
    save_case(outdir, "minilm_postln_l3_d48_h6", mini, [ids, mask, seg],
              ["input_ids", "attention_mask", "token_type_ids"], ["last_hidden_state", "pooler_output"],
              {"input_ids": bs, "attention_mask": bs, "token_type_ids": bs,
               "last_hidden_state": bs, "pooler_output": {0: "batch"}}, 17)
    D, HEADS, FFN, LAYERS = 64, 4, 128, 2

    vit = Vit()
    randomize(vit, 13)
    px = torch.randn(2, 3, 16, 16, generator=g)
    save_case(outdir, "vit_preln_l2_d64_h4_p4", vit, [px], ["pixel_values"], ["cls"],
              {"pixel_values": {0: "batch"}, "cls": {0: "batch"}}, 14)


if __name__ == "__main__":
    main()
