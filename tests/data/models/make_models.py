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


def save_case(outdir, name, model, inputs, in_names, out_names, dyn, opset, fold=True):
    d = os.path.join(outdir, name)
    os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
    model.eval()
    with torch.no_grad():
        outs = model(*inputs)
    if not isinstance(outs, tuple):
        outs = (outs,)
    torch.onnx.export(model, tuple(inputs), os.path.join(d, "model.onnx"), input_names=in_names,
                      output_names=out_names, dynamic_axes=dyn, opset_version=opset,
                      do_constant_folding=fold)
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

    families(outdir)


# ---- more families (issue 15): each small (d 32), its own seeded
# generators so the cases above keep their bytes. ----

FMIN = torch.finfo(torch.float32).min


def heads(x, h):
    # [B, S, h*dh] -> [B, h, S, dh]
    b, s, _ = x.shape
    return x.view(b, s, h, -1).transpose(1, 2)


def merge(x):
    # [B, h, S, dh] -> [B, S, h*dh]
    b, h, s, dh = x.shape
    return x.transpose(1, 2).reshape(b, s, h * dh)


class DistilLayer(nn.Module):
    """DistilBERT: Q divided by sqrt(dh) before Q.K^T, masked_fill of the
    keys where mask == 0 (expand_as the scores), post-LN, erf GELU."""

    def __init__(self, d, h, f):
        super().__init__()
        self.h, self.dh = h, d // h
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-12), nn.LayerNorm(d, eps=1e-12)
        self.w1, self.w2 = nn.Linear(d, f), nn.Linear(f, d)

    def forward(self, x, mask):
        b, s, _ = x.shape
        q = heads(self.q(x), self.h) / math.sqrt(self.dh)
        k, v = heads(self.k(x), self.h), heads(self.v(x), self.h)
        sc = torch.matmul(q, k.transpose(2, 3))
        m = (mask == 0).view(b, 1, 1, s).expand_as(sc)
        sc = sc.masked_fill(m, FMIN)
        x = self.ln1(x + self.o(merge(torch.matmul(torch.softmax(sc, dim=-1), v))))
        return self.ln2(x + self.w2(nn.functional.gelu(self.w1(x))))


class DistilBert(nn.Module):
    """Word + learned position embeddings, LayerNorm, post-LN layers; the
    second output is the sentence-transformers mean pooling over the mask."""

    def __init__(self, d=32, h=4, f=64, n=2):
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, d), nn.Embedding(MAXPOS, d)
        self.ln = nn.LayerNorm(d, eps=1e-12)
        self.layers = nn.ModuleList(DistilLayer(d, h, f) for _ in range(n))

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        pos = torch.arange(s, dtype=torch.long, device=input_ids.device).unsqueeze(0).expand_as(input_ids)
        x = self.ln(self.tok(input_ids) + self.pos(pos))
        for layer in self.layers:
            x = layer(x, attention_mask)
        m = attention_mask.unsqueeze(-1).expand(x.size()).float()
        mean = torch.sum(x * m, 1) / torch.clamp(m.sum(1), min=1e-9)
        return x, mean


class Roberta(nn.Module):
    """RoBERTa: position ids from the padding of input_ids (cumsum of
    ids != pad, offset by the pad index), the extended mask (1-m)*finfo.min,
    BERT's post-LN layers, and the sequence classification head
    (dense + tanh over <s>, then the out projection)."""

    PAD = 1

    def __init__(self, d=32, h=4, f=64, n=2, labels=3):
        super().__init__()
        # BERT's layers read the module's D, HEADS, FFN (set by the caller)
        self.layers = nn.ModuleList(BertLayer() for _ in range(n))
        self.tok, self.pos = nn.Embedding(VOCAB, d), nn.Embedding(MAXPOS + 2, d)
        self.seg = nn.Embedding(1, d)
        self.ln = nn.LayerNorm(d, eps=1e-5)
        self.dense, self.out = nn.Linear(d, d), nn.Linear(d, labels)

    def forward(self, input_ids, attention_mask):
        nz = input_ids.ne(self.PAD).int()
        pos = (torch.cumsum(nz, dim=1).type_as(nz) * nz).long() + self.PAD
        x = self.tok(input_ids) + self.pos(pos) + self.seg(torch.zeros_like(input_ids))
        x = self.ln(x)
        ext = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * FMIN
        for layer in self.layers:
            x = layer(x, ext)
        return self.out(torch.tanh(self.dense(x[:, 0, :])))


class RmsNorm(nn.Module):
    """LLaMA's RMSNorm and T5's LayerNorm: no mean, no bias."""

    def __init__(self, d, eps):
        super().__init__()
        self.w, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x):
        var = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        return self.w * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    a, b = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-b, a), dim=-1)


def rope_tables(s, dim, base=10000.0):
    # cos/sin [S, dim] computed in the graph from the sequence length
    inv = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
    t = torch.arange(s, dtype=torch.float32)
    fr = torch.outer(t, inv)
    emb = torch.cat((fr, fr), dim=-1)
    return emb.cos(), emb.sin()


class LlamaLayer(nn.Module):
    """Pre-RMSNorm; attention with RoPE (rotate-half) on Q and K, grouped
    K/V heads repeated by expand + reshape, the additive causal mask of
    finfo.min, softmax in float32; SwiGLU FFN down(silu(gate x) * up x);
    no biases."""

    def __init__(self, d, h, kvh, f):
        super().__init__()
        self.h, self.kvh, self.dh = h, kvh, d // h
        self.q = nn.Linear(d, d, bias=False)
        self.k = nn.Linear(d, kvh * self.dh, bias=False)
        self.v = nn.Linear(d, kvh * self.dh, bias=False)
        self.o = nn.Linear(d, d, bias=False)
        self.gate, self.up = nn.Linear(d, f, bias=False), nn.Linear(d, f, bias=False)
        self.down = nn.Linear(f, d, bias=False)
        self.n1, self.n2 = RmsNorm(d, 1e-6), RmsNorm(d, 1e-6)

    def repeat_kv(self, x):
        b, kvh, s, dh = x.shape
        r = self.h // kvh
        return x[:, :, None, :, :].expand(b, kvh, r, s, dh).reshape(b, kvh * r, s, dh)

    def forward(self, x, cos, sin, mask):
        hx = self.n1(x)
        q, k, v = heads(self.q(hx), self.h), heads(self.k(hx), self.kvh), heads(self.v(hx), self.kvh)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k, v = self.repeat_kv(k), self.repeat_kv(v)
        sc = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.dh) + mask
        p = nn.functional.softmax(sc, dim=-1, dtype=torch.float32).to(q.dtype)
        x = x + self.o(merge(torch.matmul(p, v)))
        hx = self.n2(x)
        return x + self.down(nn.functional.silu(self.gate(hx)) * self.up(hx))


class Llama(nn.Module):
    def __init__(self, d=32, h=4, kvh=2, f=64, n=2):
        super().__init__()
        self.dh = d // h
        self.tok = nn.Embedding(VOCAB, d)
        self.layers = nn.ModuleList(LlamaLayer(d, h, kvh, f) for _ in range(n))
        self.norm = RmsNorm(d, 1e-6)
        self.head = nn.Linear(d, VOCAB, bias=False)

    def forward(self, input_ids):
        s = input_ids.shape[1]
        cos, sin = rope_tables(s, self.dh)
        mask = torch.full((s, s), FMIN).triu(1)[None, None]
        x = self.tok(input_ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.head(self.norm(x))


class NeoxLayer(nn.Module):
    """GPT-NeoX / Pythia: one QKV Linear interleaved per head ([h, 3, dh]),
    rotary on the first quarter of each head's dims, the causal tril buffer
    through where, and the parallel residual x + attn(ln1 x) + mlp(ln2 x)."""

    def __init__(self, d, h, f, rot):
        super().__init__()
        self.h, self.dh, self.rot = h, d // h, rot
        self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.w1, self.w2 = nn.Linear(d, f), nn.Linear(f, d)
        self.register_buffer("bias", torch.tril(torch.ones(MAXPOS, MAXPOS, dtype=torch.bool)).view(1, 1, MAXPOS, MAXPOS))

    def forward(self, x, cos, sin):
        b, s, _ = x.shape
        qkv = self.qkv(self.ln1(x)).view(b, s, self.h, 3 * self.dh).permute(0, 2, 1, 3)
        q, k, v = qkv[..., : self.dh], qkv[..., self.dh: 2 * self.dh], qkv[..., 2 * self.dh:]
        r = self.rot
        qr, qp, kr, kp = q[..., :r], q[..., r:], k[..., :r], k[..., r:]
        qr = qr * cos + rotate_half(qr) * sin
        kr = kr * cos + rotate_half(kr) * sin
        q, k = torch.cat((qr, qp), dim=-1), torch.cat((kr, kp), dim=-1)
        sc = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.dh)
        sc = torch.where(self.bias[:, :, :s, :s], sc, torch.tensor(FMIN, dtype=sc.dtype))
        a = self.o(merge(torch.matmul(torch.softmax(sc, dim=-1), v)))
        m = self.w2(nn.functional.gelu(self.w1(self.ln2(x))))
        return x + a + m


class Neox(nn.Module):
    def __init__(self, d=32, h=4, f=128, n=2, pct=0.25):
        super().__init__()
        self.rot = int(d // h * pct)
        self.tok = nn.Embedding(VOCAB, d)
        self.layers = nn.ModuleList(NeoxLayer(d, h, f, self.rot) for _ in range(n))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, VOCAB, bias=False)

    def forward(self, input_ids):
        cos, sin = rope_tables(input_ids.shape[1], self.rot)
        x = self.tok(input_ids)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.head(self.ln(x))


class T5Encoder(nn.Module):
    """T5 encoder: a per-head relative position bias computed in the graph
    from bucketed relative positions (bidirectional, log-spaced beyond half
    the exact buckets) by the first layer and shared by all, the padding
    mask (1-m)*finfo.min added to it, no 1/sqrt(d) scale, RMS-style T5
    LayerNorm, ReLU FFN, no biases."""

    def __init__(self, d=32, h=4, f=64, n=2, buckets=8, maxdist=20):
        super().__init__()
        self.h, self.dh, self.nb, self.maxd = h, d // h, buckets, maxdist
        self.tok = nn.Embedding(VOCAB, d)
        self.rel = nn.Embedding(buckets, h)
        lin = lambda i, o: nn.Linear(i, o, bias=False)
        self.att = nn.ModuleList(nn.ModuleList(lin(d, d) for _ in range(4)) for _ in range(n))
        self.ffn = nn.ModuleList(nn.ModuleList((lin(d, f), lin(f, d))) for _ in range(n))
        self.n1 = nn.ModuleList(RmsNorm(d, 1e-6) for _ in range(n))
        self.n2 = nn.ModuleList(RmsNorm(d, 1e-6) for _ in range(n))
        self.nf = RmsNorm(d, 1e-6)

    def bucket(self, rel):
        nb = self.nb // 2
        ret = (rel > 0).to(torch.long) * nb
        n = torch.abs(rel)
        exact = nb // 2
        small = n < exact
        large = exact + (torch.log(n.float() / exact) / math.log(self.maxd / exact) * (nb - exact)).to(torch.long)
        large = torch.min(large, torch.full_like(large, nb - 1))
        return ret + torch.where(small, n, large)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        ctx = torch.arange(s, dtype=torch.long)[:, None]
        mem = torch.arange(s, dtype=torch.long)[None, :]
        bias = self.rel(self.bucket(mem - ctx)).permute(2, 0, 1).unsqueeze(0)
        bias = bias + (1.0 - attention_mask[:, None, None, :].float()) * FMIN
        x = self.tok(input_ids)
        for (q, k, v, o), (wi, wo), n1, n2 in zip(self.att, self.ffn, self.n1, self.n2):
            hx = n1(x)
            sc = torch.matmul(heads(q(hx), self.h), heads(k(hx), self.h).transpose(3, 2)) + bias
            p = nn.functional.softmax(sc.float(), dim=-1).type_as(sc)
            x = x + o(merge(torch.matmul(p, heads(v(hx), self.h))))
            x = x + wo(nn.functional.relu(wi(n2(x))))
        return self.nf(x)


class BmmAttention(nn.Module):
    """Whisper / BART / CLIP attention: Q scaled after its projection,
    (B*H, S, dh) bmm layout, an optional additive mask [B, 1, S, S]."""

    def __init__(self, d, h, kbias=True):
        super().__init__()
        self.h, self.dh = h, d // h
        self.q, self.v, self.o = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.k = nn.Linear(d, d, bias=kbias)

    def shape(self, x, b, s):
        return x.view(b, s, self.h, self.dh).transpose(1, 2).reshape(b * self.h, s, self.dh)

    def forward(self, x, mask=None):
        b, s, d = x.shape
        q = self.shape(self.q(x) * self.dh ** -0.5, b, s)
        k, v = self.shape(self.k(x), b, s), self.shape(self.v(x), b, s)
        w = torch.bmm(q, k.transpose(1, 2))
        if mask is not None:
            w = (w.view(b, self.h, s, s) + mask).view(b * self.h, s, s)
        y = torch.bmm(torch.softmax(w, dim=-1), v)
        return self.o(y.view(b, self.h, s, self.dh).transpose(1, 2).reshape(b, s, d))


class PreLnBlock(nn.Module):
    def __init__(self, d, h, f, act, kbias=True):
        super().__init__()
        self.attn, self.act = BmmAttention(d, h, kbias), act
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.w1, self.w2 = nn.Linear(d, f), nn.Linear(f, d)

    def forward(self, x, mask=None):
        x = x + self.attn(self.ln1(x), mask)
        return x + self.w2(self.act(self.w1(self.ln2(x))))


def sinusoids(length, d):
    # Whisper's positions: sin of the first half of the channels, cos of the rest
    inc = math.log(10000) / (d // 2 - 1)
    inv = torch.exp(-inc * torch.arange(d // 2))
    t = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


class WhisperEncoder(nn.Module):
    """Whisper: Conv1d(k3) + GELU, Conv1d(k3, stride 2) + GELU over the mel
    frames, sinusoidal positions (sliced to the length), pre-LN layers with
    the K projection without bias, final LN."""

    def __init__(self, mels=8, d=32, h=4, f=64, n=2):
        super().__init__()
        self.c1 = nn.Conv1d(mels, d, 3, padding=1)
        self.c2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.register_buffer("pos", sinusoids(MAXPOS, d))
        self.layers = nn.ModuleList(PreLnBlock(d, h, f, nn.functional.gelu, kbias=False) for _ in range(n))
        self.ln = nn.LayerNorm(d)

    def forward(self, features):
        x = nn.functional.gelu(self.c1(features))
        x = nn.functional.gelu(self.c2(x)).permute(0, 2, 1)
        x = x + self.pos[: x.shape[1]]
        for layer in self.layers:
            x = layer(x)
        return self.ln(x)


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


class ClipText(nn.Module):
    """CLIP text: token + learned positions, a causal mask plus the padding
    mask, pre-LN with quick_gelu, final LN, the EOS row (argmax of the ids,
    EOS being the largest id) as the pooled output."""

    def __init__(self, d=32, h=4, f=128, n=2):
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, d), nn.Embedding(MAXPOS, d)
        self.layers = nn.ModuleList(PreLnBlock(d, h, f, quick_gelu) for _ in range(n))
        self.ln = nn.LayerNorm(d)

    def forward(self, input_ids, attention_mask):
        b, s = input_ids.shape
        pos = torch.arange(s, dtype=torch.long)[None]
        x = self.tok(input_ids) + self.pos(pos)
        causal = torch.full((s, s), FMIN).triu(1)[None, None]
        pad = (1.0 - attention_mask[:, None, None, :].float()) * FMIN
        mask = causal + pad
        for layer in self.layers:
            x = layer(x, mask)
        x = self.ln(x)
        pooled = x[torch.arange(b), input_ids.to(torch.int).argmax(dim=-1)]
        return x, pooled


class BartEncoder(nn.Module):
    """BART encoder: learned positions offset by 2, layernorm_embedding,
    post-LN layers with bmm attention (Q scaled after projection), GELU,
    the padding mask (1-m)*finfo.min expanded to [B, 1, S, S]."""

    def __init__(self, d=32, h=4, f=64, n=2):
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, d), nn.Embedding(MAXPOS + 2, d)
        self.ln_emb = nn.LayerNorm(d)
        self.attn = nn.ModuleList(BmmAttention(d, h) for _ in range(n))
        self.ln1 = nn.ModuleList(nn.LayerNorm(d) for _ in range(n))
        self.ln2 = nn.ModuleList(nn.LayerNorm(d) for _ in range(n))
        self.w1 = nn.ModuleList(nn.Linear(d, f) for _ in range(n))
        self.w2 = nn.ModuleList(nn.Linear(f, d) for _ in range(n))

    def forward(self, input_ids, attention_mask):
        b, s = input_ids.shape
        pos = torch.arange(s, dtype=torch.long) + 2
        x = self.ln_emb(self.tok(input_ids) + self.pos(pos))
        m = attention_mask[:, None, None, :].expand(b, 1, s, s).float()
        mask = (1.0 - m).masked_fill((1.0 - m).bool(), FMIN)
        for a, l1, l2, w1, w2 in zip(self.attn, self.ln1, self.ln2, self.w1, self.w2):
            x = l1(x + a(x, mask))
            x = l2(x + w2(nn.functional.gelu(w1(x))))
        return x


def families(outdir):
    """The families of issue 15, d 32, 4 heads, 2 layers."""
    bs = {0: "batch", 1: "seq"}

    def ids_mask(seed, b, s, pad_rows=True):
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(2, VOCAB - 1, (b, s), generator=g)
        mask = torch.ones(b, s, dtype=torch.long)
        if pad_rows:
            mask[1, s - 2:] = 0
        return ids, mask

    def text_case(name, model, seed, opset, outs, with_mask=True, b=2, s=7):
        randomize(model, seed)
        ids, mask = ids_mask(seed, b, s)
        ins, names = ([ids, mask], ["input_ids", "attention_mask"]) if with_mask else ([ids], ["input_ids"])
        dyn = {n: bs for n in names}
        dyn.update({o: ({0: "batch"} if o.startswith("pool") or o == "logits_cls" else bs) for o in outs})
        save_case(outdir, name, model, ins, names, outs, dyn, opset)
        return ids, mask

    text_case("distilbert_l2_d32_h4_meanpool", DistilBert(), 21, 14, ["last_hidden_state", "pooled_mean"])

    global D, HEADS, FFN
    D, HEADS, FFN = 32, 4, 64
    rob = Roberta()
    randomize(rob, 22)
    ids, mask = ids_mask(22, 2, 7)
    ids[1, 5:] = Roberta.PAD  # the padded tail holds the pad id
    save_case(outdir, "roberta_cls_l2_d32_h4", rob, [ids, mask], ["input_ids", "attention_mask"],
              ["logits_cls"], {"input_ids": bs, "attention_mask": bs, "logits_cls": {0: "batch"}}, 14)
    D, HEADS, FFN = 64, 4, 128

    text_case("llama_gqa_l2_d32_h4_kv2", Llama(), 23, 14, ["logits"], with_mask=False)
    text_case("neox_parallel_l2_d32_h4_rot25", Neox(), 24, 15, ["logits"], with_mask=False)
    text_case("t5enc_relbias_l2_d32_h4", T5Encoder(), 25, 14, ["last_hidden_state"])

    wh = WhisperEncoder()
    randomize(wh, 26)
    feats = torch.randn(2, 8, 12, generator=torch.Generator().manual_seed(26))
    save_case(outdir, "whisper_enc_l2_d32_h4", wh, [feats], ["input_features"], ["last_hidden_state"],
              {"input_features": {0: "batch", 2: "frames"}, "last_hidden_state": bs}, 16)

    clip = ClipText()
    randomize(clip, 27)
    ids, mask = ids_mask(27, 2, 7)
    ids[0, 6] = VOCAB - 1  # EOS, the largest id, ends each row
    ids[1, 4] = VOCAB - 1
    mask[1, 5:] = 0
    save_case(outdir, "clip_text_l2_d32_h4", clip, [ids, mask], ["input_ids", "attention_mask"],
              ["last_hidden_state", "pooled"],
              {"input_ids": bs, "attention_mask": bs, "last_hidden_state": bs, "pooled": {0: "batch"}}, 17)

    text_case("bart_enc_l2_d32_h4", BartEncoder(), 28, 14, ["last_hidden_state"])
    second_styles(outdir)


# ---- second export styles of CLIP and Whisper: written as the Hugging
# Face code lays them out, generated after the cases above (their bytes
# stay). ----


class ClipAttentionHf(nn.Module):
    """CLIP attention as Hugging Face writes it: Q scaled after its
    projection, (B*H, S, dh) bmm, the causal mask and the padding mask
    added to the scores one after the other, each [B, 1, S, S] (causal None:
    made here from the layer's own length)."""

    def __init__(self, d, h):
        super().__init__()
        self.h, self.dh = h, d // h
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))

    def shape(self, x, b, s):
        return x.view(b, s, self.h, self.dh).transpose(1, 2).contiguous()

    def forward(self, x, causal, mask):
        b, s, d = x.shape
        flat = (b * self.h, s, self.dh)
        q = self.shape(self.q(x) * self.dh ** -0.5, b, s).view(flat)
        k, v = self.shape(self.k(x), b, s).view(flat), self.shape(self.v(x), b, s).view(flat)
        if causal is None:
            causal = torch.empty(b, s, s).fill_(FMIN).triu_(1).unsqueeze(1)
        w = torch.bmm(q, k.transpose(1, 2)).view(b, self.h, s, s) + causal
        w = (w + mask).view(b * self.h, s, s)
        y = torch.bmm(nn.functional.softmax(w, dim=-1), v)
        return self.o(y.view(b, self.h, s, self.dh).transpose(1, 2).reshape(b, s, d))


class ClipLayerHf(nn.Module):
    def __init__(self, d, h, f):
        super().__init__()
        self.attn = ClipAttentionHf(d, h)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.w1, self.w2 = nn.Linear(d, f), nn.Linear(f, d)

    def forward(self, x, causal, mask):
        x = x + self.attn(self.ln1(x), causal, mask)
        return x + self.w2(quick_gelu(self.w1(self.ln2(x))))


class ClipTextHf(nn.Module):
    """CLIP text, right padding: positions from a position_ids buffer, the
    causal mask filled with finfo.min above the diagonal, the padding mask
    expanded to [B, 1, S, S] by masked_fill, the EOS row picked by index
    (the last unpadded token) as the pooled output. inner_causal: each
    attention makes the causal mask itself."""

    def __init__(self, d=32, h=4, f=64, n=2, inner_causal=False):
        super().__init__()
        self.inner_causal = inner_causal
        self.tok, self.pos = nn.Embedding(VOCAB, d), nn.Embedding(MAXPOS, d)
        self.register_buffer("position_ids", torch.arange(MAXPOS).expand((1, -1)))
        self.layers = nn.ModuleList(ClipLayerHf(d, h, f) for _ in range(n))
        self.ln = nn.LayerNorm(d)

    def forward(self, input_ids, attention_mask):
        b, s = input_ids.shape
        x = self.tok(input_ids) + self.pos(self.position_ids[:, :s])
        causal = None if self.inner_causal else torch.empty(b, s, s).fill_(FMIN).triu_(1).unsqueeze(1)
        inverted = 1.0 - attention_mask[:, None, None, :].expand(b, 1, s, s).float()
        mask = inverted.masked_fill(inverted.bool(), FMIN)
        for layer in self.layers:
            x = layer(x, causal, mask)
        x = self.ln(x)
        eos = attention_mask.sum(-1) - 1
        return x, x[torch.arange(b), eos]


def gelu_torch_tanh(x):
    # PyTorch's own tanh GELU (approximate="tanh"), as the exporter writes it
    return nn.functional.gelu(x, approximate="tanh")


class WhisperEncoderHf(nn.Module):
    """Whisper encoder: two Conv1d (k3; the second stride 2) with tanh GELU,
    learned positions sliced from the embedding's weight, pre-LN layers (K
    without bias), final LN."""

    def __init__(self, mels=6, d=32, h=4, f=64, n=2):
        super().__init__()
        self.c1 = nn.Conv1d(mels, d, 3, padding=1)
        self.c2 = nn.Conv1d(d, d, 3, stride=2, padding=1)
        self.pos = nn.Embedding(MAXPOS, d)
        self.layers = nn.ModuleList(PreLnBlock(d, h, f, gelu_torch_tanh, kbias=False) for _ in range(n))
        self.ln = nn.LayerNorm(d)

    def forward(self, features):
        x = gelu_torch_tanh(self.c1(features))
        x = gelu_torch_tanh(self.c2(x)).permute(0, 2, 1)
        x = x + self.pos.weight[: x.shape[1]]
        for layer in self.layers:
            x = layer(x)
        return self.ln(x)


def second_styles(outdir):
    bs = {0: "batch", 1: "seq"}
    g = torch.Generator().manual_seed(29)
    clip = ClipTextHf()
    randomize(clip, 29)
    ids = torch.randint(2, VOCAB - 1, (3, 7), generator=g)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[1, 5:] = 0
    mask[2, 3:] = 0
    save_case(outdir, "clip_text_hf_l2_d32_h4", clip, [ids, mask], ["input_ids", "attention_mask"],
              ["last_hidden_state", "pooled"],
              {"input_ids": bs, "attention_mask": bs, "last_hidden_state": bs, "pooled": {0: "batch"}}, 14)

    wh = WhisperEncoderHf()
    randomize(wh, 30)
    feats = torch.randn(2, 6, 11, generator=g)  # odd frames: the output has ceil(11 / 2) rows
    save_case(outdir, "whisper_enc_hf_l2_d32_h4", wh, [feats], ["input_features"], ["last_hidden_state"],
              {"input_features": {0: "batch", 2: "frames"}, "last_hidden_state": bs}, 17)

    clip = ClipTextHf(inner_causal=True)
    randomize(clip, 31)
    ids = torch.randint(2, VOCAB - 1, (2, 6), generator=g)
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, :2] = 0  # left padding: rows 0, 1 of item 1 see only finfo.min terms
    save_case(outdir, "clip_text_hf_inner_causal_l2_d32_h4", clip, [ids, mask], ["input_ids", "attention_mask"],
              ["last_hidden_state", "pooled"],
              {"input_ids": bs, "attention_mask": bs, "last_hidden_state": bs, "pooled": {0: "batch"}}, 14)


if __name__ == "__main__":
    main()
