#!/usr/bin/env python3
"""make_zoo13.py -- round 13 of the whole-model corpus (tests/data/models):
the families issue 15 names written once more as a judge may write them,
in module styles the earlier rounds do not use (d 32, 4 heads, FFN 64, 2
layers, vocabulary 64; images 16 x 16). Each is exported by torch 1.13 and
holds ONNX Runtime's outputs (ort_oracle.js), checked against PyTorch's.

z13_bert_sdparef_boolfill_op17: BERT whose attention is the reference code
  of PyTorch's scaled_dot_product_attention documentation: heads split by
  `reshape(*x.shape[:-1], H, d).transpose(1, 2)`, an `attn_bias` of zeros [S, S]
  `masked_fill`'ed with finfo.min where the bool mask [B, 1, 1, S] is
  False, `q @ k.transpose(-2, -1) * scale + attn_bias`, merged by
  `transpose(1, 2).flatten(2)`; post-LN, erf GELU, tanh pooler.
z13_bert_headloop_slices_op14: BERT whose attention is a Python loop over
  the heads: each a slice of the q / k / v Linears' columns, [B, S, d]
  scores with `(1.0 - m[:, None, :]) * -10000.0`, a softmax each, the
  contexts concatenated before the output Linear.
z13_gpt2_conv1d_baddbmm_layeridx_op14: make_zoo.py's GPT-2 with
  `reorder_and_upcast_attn` and `scale_attn_by_inverse_layer_idx` as Hugging
  Face writes it: the scores by `torch.baddbmm(torch.empty(..), q.float(),
  k.float(), beta=0, alpha=1 / sqrt(d) / (layer + 1))` over [B * H, S, d],
  the causal buffer sliced `[k - q:k, :k]` through `where` with finfo.min,
  `(1 - m) * finfo.min` added, gelu_new, tied head.
z13_gpt2_torchmha_squaremask_op14: GPT-2 written on nn.MultiheadAttention
  (batch first) with `nn.Transformer.generate_square_subsequent_mask(S)`
  as its float attn_mask, pre-LN, tanh GELU, tied head.
z13_gpt_karpathy_headlist_op14: GPT as the "Let's build GPT" lecture writes
  it: each head a module of its own (key / query / value Linears of the
  head size, no bias, `masked_fill(tril[:T, :T] == 0, -inf)`, a softmax
  each), the heads' outputs concatenated before one projection, ReLU FFN.
z13_vit_convstem_tencpre_op14: a ViT with a convolutional stem (two 3 x 3
  stride-2 Conv + BatchNorm + ReLU, a 1 x 1 Conv to d), a CLS token,
  learned positions, nn.TransformerEncoder of TransformerEncoderLayer
  (norm_first, batch_first, GELU), a final LayerNorm, the head on the CLS
  row; the batch symbolic.
z13_vit_lucidrains_rearrange_op14: vit-pytorch's ViT: the patches by
  reshape + permute (`b c (h p1) (w p2) -> b (h w) (p1 p2 c)`), LayerNorm,
  Linear, LayerNorm, qkv chunked in three without bias, `dots * scale`,
  PreNorm blocks, mean pooling, an MLP head.
z13_minilm_einsum_bshd_meannorm_op13: a MiniLM sentence embedder whose
  heads stay [B, S, H, d]: `einsum('bqhd,bkhd->bhqk')` and
  `einsum('bhqk,bkhd->bqhd')`, the mask `(1.0 - m[:, None, None, :]) *
  -10000.0`, masked mean pooling, `x / x.norm(dim=1, keepdim=True)
  .clamp_min(1e-12)`.
z13_llama_meta_realrope_tilegqa_op17: Meta's reference LLaMA: rotary on
  [B, S, H, d] by pairs (the complex product `x * freqs_cis` written as
  real ops: unbind of [.., d / 2, 2], cos / sin buffers sliced to the
  length, stack and flatten), GQA 4 / 2 as `repeat_interleave(n_rep,
  dim=1)` written by `repeat` (Tile; torch 1.13 exports repeat_interleave
  over these dynamic axes as a graph ONNX Runtime refuses), the causal `full(-inf).triu(1)` added, the softmax in float32,
  SwiGLU, RMSNorm, no biases; no attention mask.
z13_umt5_enc_perlayerbias_op14: UMT5's encoder: each layer has its own
  bucketed relative bias computed in the layer, no 1 / sqrt(d), `(1 - m) *
  finfo.min`, RMS norms, gated GELU FFN.
z13_distilbert_sinpos_int32_op13: DistilBERT with `sinusoidal_pos_embds`
  (the table fixed), an int32 mask, q / sqrt(d), `(mask == 0).view(bs, 1,
  1, k).expand(bs, H, q, k)` filled by `masked_fill(.., tensor(finfo.min))`,
  `unshape` by `transpose(1, 2).contiguous().view(bs, -1, H * d)`, a
  classification head on row 0.

    /usr/bin/python3 make_zoo13.py [OUTDIR [PREFIX...]]

Needs torch (1.13), onnx (1.12), node with onnxruntime-node ($MHA_PEER_HOME).
"""
import math
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import nn

import make_zoo
from make_deploy7 import ort_run
from make_models import RmsNorm, randomize
from make_variants import gelu_new
from make_zoo import FMIN, data, rel_bucket

D, H, FF, L, VOCAB, MAXPOS = 32, 4, 64, 2, 64, 16
DH = D // H


# ------------------------------------------------------------------ BERT ----

class SdpaRefBertLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(D, eps=1e-12), nn.LayerNorm(D, eps=1e-12)
        self.fc1, self.fc2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, keep):
        q, k, v = (p(x).reshape(*x.shape[:-1], H, DH).transpose(1, 2) for p in (self.q, self.k, self.v))
        s = x.size(1)
        scale_factor = 1 / math.sqrt(q.size(-1))
        attn_bias = torch.zeros(s, s, dtype=q.dtype)
        attn_bias = attn_bias.masked_fill(~keep, torch.finfo(q.dtype).min)
        w = q @ k.transpose(-2, -1) * scale_factor
        w = w + attn_bias
        w = torch.softmax(w, dim=-1)
        a = (w @ v).transpose(1, 2).flatten(2)
        x = self.ln1(x + self.o(a))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class SdpaRefBert(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok, self.pos, self.typ = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D), nn.Embedding(2, D)
        self.ln = nn.LayerNorm(D, eps=1e-12)
        self.layers = nn.ModuleList(SdpaRefBertLayer() for _ in range(L))
        self.pool = nn.Linear(D, D)

    def forward(self, ids, mask):
        pos = torch.arange(ids.size(1)).unsqueeze(0)
        x = self.ln(self.tok(ids) + self.pos(pos) + self.typ(torch.zeros_like(ids)))
        keep = mask[:, None, None, :].bool()
        for layer in self.layers:
            x = layer(x, keep)
        return x, torch.tanh(self.pool(x[:, 0]))


class HeadLoopBertLayer(SdpaRefBertLayer):
    """the attention as a loop over heads, each a slice of the q / k / v
    projections' columns, the contexts concatenated"""

    def forward(self, x, ext):
        q, k, v = self.q(x), self.k(x), self.v(x)
        heads = []
        for h in range(H):
            cols = slice(h * DH, (h + 1) * DH)
            w = torch.matmul(q[:, :, cols], k[:, :, cols].transpose(1, 2)) / math.sqrt(DH)
            heads.append(torch.matmul(torch.softmax(w + ext, dim=-1), v[:, :, cols]))
        x = self.ln1(x + self.o(torch.cat(heads, dim=-1)))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class HeadLoopBert(SdpaRefBert):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(HeadLoopBertLayer() for _ in range(L))

    def forward(self, ids, mask):
        pos = torch.arange(ids.size(1)).unsqueeze(0)
        x = self.ln(self.tok(ids) + self.pos(pos) + self.typ(torch.zeros_like(ids)))
        ext = (1.0 - mask[:, None, :].float()) * -10000.0
        for layer in self.layers:
            x = layer(x, ext)
        return x, torch.tanh(self.pool(x[:, 0]))


# ----------------------------------------------------------------- GPT-2 ----

class UpcastGpt2Block(make_zoo.Gpt2IdxBlock):
    """make_zoo.py's block as Hugging Face writes it: torch.empty, the
    operands upcast, the causal buffer sliced [k - q:k, :k]"""

    def split(self, t):
        return t.view(t.size()[:-1] + (H, DH)).permute(0, 2, 1, 3)

    def attn(self, q, k, v, ext):
        bsz, nh, q_len, dk = q.size()
        k_len = k.size(-2)
        w = torch.empty(bsz * nh, q_len, k_len, dtype=torch.float32)
        scale = 1.0 / float(v.size(-1)) ** 0.5 / float(self.idx + 1)
        qr, kr = q.reshape(-1, q_len, dk), k.transpose(-1, -2).reshape(-1, dk, k_len)
        w = torch.baddbmm(w, qr.float(), kr.float(), beta=0, alpha=scale)
        w = w.reshape(bsz, nh, q_len, k_len)
        causal = self.bias[:, :, k_len - q_len:k_len, :k_len]
        w = torch.where(causal, w, torch.tensor(FMIN, dtype=w.dtype))
        w = w + ext
        w = torch.softmax(w, dim=-1).type(v.dtype)
        return torch.matmul(w, v)

    def forward(self, x, ext):
        q, k, v = self.c_attn(self.ln_1(x)).split(D, dim=2)
        a = self.attn(self.split(q), self.split(k), self.split(v), ext)
        a = a.permute(0, 2, 1, 3).contiguous()
        x = x + self.c_proj(a.view(a.size()[:-2] + (D,)))
        return x + self.mlp_proj(gelu_new(self.c_fc(self.ln_2(x))))


class UpcastGpt2(make_zoo.Gpt2Idx):
    def __init__(self):
        super().__init__()
        self.h = nn.ModuleList(UpcastGpt2Block(i) for i in range(L))


class TorchMhaGpt2Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.attn = nn.MultiheadAttention(D, H, batch_first=True)
        self.fc, self.proj = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, causal):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, attn_mask=causal, need_weights=False)[0]
        return x + self.proj(F.gelu(self.fc(self.ln_2(x)), approximate="tanh"))


class TorchMhaGpt2(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D)
        self.blocks = nn.ModuleList(TorchMhaGpt2Block() for _ in range(L))
        self.ln_f = nn.LayerNorm(D)

    def forward(self, ids):
        s = ids.size(1)
        x = self.wte(ids) + self.wpe(torch.arange(s))
        causal = nn.Transformer.generate_square_subsequent_mask(s)
        for block in self.blocks:
            x = block(x, causal)
        return self.ln_f(x) @ self.wte.weight.t()


class KarpathyHead(nn.Module):
    """one head of self-attention (the "Let's build GPT" lecture's gpt.py)"""

    def __init__(self):
        super().__init__()
        self.key, self.query = nn.Linear(D, DH, bias=False), nn.Linear(D, DH, bias=False)
        self.value = nn.Linear(D, DH, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(MAXPOS, MAXPOS)))

    def forward(self, x):
        B, T, C = x.shape
        k, q = self.key(x), self.query(x)
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        wei = F.softmax(wei, dim=-1)
        return wei @ self.value(x)


class KarpathyBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.heads = nn.ModuleList(KarpathyHead() for _ in range(H))
        self.proj = nn.Linear(D, D)
        self.ffwd = nn.Sequential(nn.Linear(D, 4 * D), nn.ReLU(), nn.Linear(4 * D, D))
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)

    def forward(self, x):
        h = self.ln1(x)
        x = x + self.proj(torch.cat([head(h) for head in self.heads], dim=-1))
        return x + self.ffwd(self.ln2(x))


class KarpathyGpt(nn.Module):
    def __init__(self):
        super().__init__()
        self.token_embedding_table = nn.Embedding(VOCAB, D)
        self.position_embedding_table = nn.Embedding(MAXPOS, D)
        self.blocks = nn.Sequential(*[KarpathyBlock() for _ in range(L)])
        self.ln_f = nn.LayerNorm(D)
        self.lm_head = nn.Linear(D, VOCAB)

    def forward(self, idx):
        T = idx.shape[1]
        x = self.token_embedding_table(idx) + self.position_embedding_table(torch.arange(T))
        return self.lm_head(self.ln_f(self.blocks(x)))


# ------------------------------------------------------------------- ViT ----

class ConvStemVit(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, D, 1))
        self.cls = nn.Parameter(torch.zeros(1, 1, D))
        self.pos = nn.Parameter(torch.zeros(1, 17, D))
        layer = nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, L, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(D, eps=1e-6)
        self.head = nn.Linear(D, 10)

    def forward(self, px):
        x = self.stem(px).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = self.norm(self.encoder(x))
        return self.head(x[:, 0]), x


class LucidAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(D)
        self.to_qkv = nn.Linear(D, 3 * D, bias=False)
        self.to_out = nn.Linear(D, D)
        self.scale = DH ** -0.5

    def forward(self, x):
        b, n, _ = x.shape
        qkv = self.to_qkv(self.norm(x)).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, H, DH).permute(0, 2, 1, 3) for t in qkv)
        dots = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        attn = dots.softmax(dim=-1)
        out = torch.matmul(attn, v).permute(0, 2, 1, 3).reshape(b, n, H * DH)
        return self.to_out(out)


class LucidVit(nn.Module):
    P = 4

    def __init__(self):
        super().__init__()
        pd = 3 * self.P * self.P
        self.patch = nn.Sequential(nn.LayerNorm(pd), nn.Linear(pd, D), nn.LayerNorm(D))
        self.cls = nn.Parameter(torch.zeros(1, 1, D))
        self.pos = nn.Parameter(torch.zeros(1, 17, D))
        self.attn = nn.ModuleList(LucidAttention() for _ in range(L))
        self.ff = nn.ModuleList(nn.Sequential(nn.LayerNorm(D), nn.Linear(D, FF), nn.GELU(),
                                              nn.Linear(FF, D)) for _ in range(L))
        self.norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, 10)

    def forward(self, img):
        b, c, hh, ww = img.shape
        p = self.P
        x = img.reshape(b, c, hh // p, p, ww // p, p).permute(0, 2, 4, 3, 5, 1)
        x = self.patch(x.reshape(b, (hh // p) * (ww // p), p * p * c))
        x = torch.cat([self.cls.expand(b, -1, -1), x], dim=1) + self.pos
        for attn, ff in zip(self.attn, self.ff):
            x = x + attn(x)
            x = x + ff(x)
        return self.head(self.norm(x).mean(dim=1))


# ---------------------------------------------------------------- MiniLM ----

class EinsumBshdLayer(SdpaRefBertLayer):
    def forward(self, x, ext):
        b, s, _ = x.shape
        q, k, v = (p(x).view(b, s, H, DH) for p in (self.q, self.k, self.v))
        w = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(DH) + ext
        a = torch.einsum("bhqk,bkhd->bqhd", w.softmax(-1), v).reshape(b, s, D)
        x = self.ln1(x + self.o(a))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class EinsumMiniLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok, self.pos, self.typ = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D), nn.Embedding(2, D)
        self.ln = nn.LayerNorm(D, eps=1e-12)
        self.layers = nn.ModuleList(EinsumBshdLayer() for _ in range(L))

    def forward(self, ids, mask):
        pos = torch.arange(ids.size(1)).expand_as(ids)
        x = self.ln(self.tok(ids) + self.pos(pos) + self.typ.weight[0])
        ext = (1.0 - mask[:, None, None, :].float()) * -10000.0
        for layer in self.layers:
            x = layer(x, ext)
        m = mask.unsqueeze(-1).float()
        e = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return e / e.norm(p=2, dim=1, keepdim=True).clamp_min(1e-12)


# ----------------------------------------------------------------- LLaMA ----

KV = 2


class MetaAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.wq, self.wo = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.wk, self.wv = nn.Linear(D, KV * DH, bias=False), nn.Linear(D, KV * DH, bias=False)

    @staticmethod
    def rope(x, cos, sin):
        xr, xi = x.float().reshape(*x.shape[:-1], -1, 2).unbind(-1)
        out = torch.stack([xr * cos - xi * sin, xr * sin + xi * cos], dim=-1)
        return out.flatten(3).type_as(x)

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        xq = self.wq(x).view(b, s, H, DH)
        xk = self.wk(x).view(b, s, KV, DH)
        xv = self.wv(x).view(b, s, KV, DH)
        xq, xk = self.rope(xq, cos, sin), self.rope(xk, cos, sin)
        xq, keys, values = xq.transpose(1, 2), xk.transpose(1, 2), xv.transpose(1, 2)
        # repeat_interleave(n_rep, dim=1) as Tile: torch 1.13 exports the
        # former over these dynamic axes as a graph ONNX Runtime refuses
        keys = keys[:, :, None].repeat(1, 1, H // KV, 1, 1).reshape(b, H, s, DH)
        values = values[:, :, None].repeat(1, 1, H // KV, 1, 1).reshape(b, H, s, DH)
        scores = torch.matmul(xq, keys.transpose(2, 3)) / math.sqrt(DH)
        scores = scores + mask
        scores = F.softmax(scores.float(), dim=-1).type_as(xq)
        out = torch.matmul(scores, values).transpose(1, 2).contiguous().view(b, s, -1)
        return self.wo(out)


class MetaBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = MetaAttention()
        self.attention_norm, self.ffn_norm = RmsNorm(D, 1e-5), RmsNorm(D, 1e-5)
        self.w1, self.w3 = nn.Linear(D, FF, bias=False), nn.Linear(D, FF, bias=False)
        self.w2 = nn.Linear(FF, D, bias=False)

    def forward(self, x, cos, sin, mask):
        h = x + self.attention(self.attention_norm(x), cos, sin, mask)
        f = self.ffn_norm(h)
        return h + self.w2(F.silu(self.w1(f)) * self.w3(f))


class MetaLlama(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(MetaBlock() for _ in range(L))
        self.norm = RmsNorm(D, 1e-5)
        self.output = nn.Linear(D, VOCAB, bias=False)
        freqs = 1.0 / (10000.0 ** (torch.arange(0, DH, 2)[: DH // 2].float() / DH))
        ang = torch.outer(torch.arange(2 * MAXPOS).float(), freqs)
        self.register_buffer("fcos", torch.cos(ang), persistent=False)
        self.register_buffer("fsin", torch.sin(ang), persistent=False)

    def forward(self, ids):
        s = ids.size(1)
        h = self.tok(ids)
        cos, sin = self.fcos[:s].view(1, s, 1, DH // 2), self.fsin[:s].view(1, s, 1, DH // 2)
        mask = torch.full((s, s), float("-inf")).triu(1).type_as(h)
        for layer in self.layers:
            h = layer(h, cos, sin, mask)
        return self.output(self.norm(h)).float()


# ------------------------------------------------------------------ UMT5 ----

class Umt5Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(D, D, bias=False) for _ in range(4))
        self.rel = nn.Embedding(8, H)
        self.ln1, self.ln2 = RmsNorm(D, 1e-6), RmsNorm(D, 1e-6)
        self.wi_0, self.wi_1 = nn.Linear(D, FF, bias=False), nn.Linear(D, FF, bias=False)
        self.wo = nn.Linear(FF, D, bias=False)

    def bias(self, s):
        ctx = torch.arange(s, dtype=torch.long)[:, None]
        mem = torch.arange(s, dtype=torch.long)[None, :]
        buckets = rel_bucket(mem - ctx, True)
        return self.rel(buckets).permute(2, 0, 1).unsqueeze(0)

    def forward(self, x, ext):
        b, s, _ = x.shape
        h = self.ln1(x)
        q, k, v = (p(h).view(b, -1, H, DH).transpose(1, 2) for p in (self.q, self.k, self.v))
        w = torch.matmul(q, k.transpose(3, 2)) + (self.bias(s) + ext)
        w = F.softmax(w.float(), dim=-1).type_as(w)
        a = torch.matmul(w, v).transpose(1, 2).contiguous().view(b, -1, D)
        x = x + self.o(a)
        h = self.ln2(x)
        return x + self.wo(gelu_new(self.wi_0(h)) * self.wi_1(h))


class Umt5Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(Umt5Layer() for _ in range(L))
        self.final = RmsNorm(D, 1e-6)

    def forward(self, ids, mask):
        x = self.embed(ids)
        ext = (1.0 - mask[:, None, None, :].to(x.dtype)) * FMIN
        for layer in self.layers:
            x = layer(x, ext)
        return self.final(x)


# ------------------------------------------------------------ DistilBERT ----

def sinusoid_table(n, dim):
    pos = np.array([[p / np.power(10000, 2 * (j // 2) / dim) for j in range(dim)] for p in range(n)])
    out = torch.zeros(n, dim)
    out[:, 0::2] = torch.FloatTensor(np.sin(pos[:, 0::2]))
    out[:, 1::2] = torch.FloatTensor(np.cos(pos[:, 1::2]))
    return out


class SinDistilLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_lin, self.k_lin, self.v_lin, self.out_lin = (nn.Linear(D, D) for _ in range(4))
        self.sa_layer_norm, self.output_layer_norm = nn.LayerNorm(D, eps=1e-12), nn.LayerNorm(D, eps=1e-12)
        self.lin1, self.lin2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, mask):
        bs, q_length, dim = x.size()
        k_length = x.size(1)

        def shape(t):
            return t.view(bs, -1, H, DH).transpose(1, 2)

        def unshape(t):
            return t.transpose(1, 2).contiguous().view(bs, -1, H * DH)

        q = shape(self.q_lin(x)) / math.sqrt(DH)
        k, v = shape(self.k_lin(x)), shape(self.v_lin(x))
        scores = torch.matmul(q, k.transpose(2, 3))
        m = (mask == 0).view(bs, 1, 1, k_length).expand(bs, H, q_length, k_length)
        scores = scores.masked_fill(m, torch.tensor(torch.finfo(scores.dtype).min))
        w = nn.functional.softmax(scores, dim=-1)
        x = self.sa_layer_norm(self.out_lin(unshape(torch.matmul(w, v))) + x)
        return self.output_layer_norm(self.lin2(F.gelu(self.lin1(x))) + x)


class SinDistilBert(nn.Module):
    def __init__(self):
        super().__init__()
        self.word = nn.Embedding(VOCAB, D)
        self.register_buffer("pos", sinusoid_table(MAXPOS, D), persistent=False)
        self.ln = nn.LayerNorm(D, eps=1e-12)
        self.layer = nn.ModuleList(SinDistilLayer() for _ in range(L))
        self.pre_classifier, self.classifier = nn.Linear(D, D), nn.Linear(D, 3)

    def forward(self, ids, mask):
        pos = torch.arange(ids.size(1), dtype=torch.long).unsqueeze(0).expand_as(ids)
        x = self.ln(self.word(ids) + F.embedding(pos, self.pos))
        for layer in self.layer:
            x = layer(x, mask)
        return x, self.classifier(F.relu(self.pre_classifier(x[:, 0])))


# ---------------------------------------------------------------- export ----

def ids_only(seed):
    return lambda b, s: [data(seed + s, b, s)[0]]


def ids_mask(seed, dtype=torch.long):
    def make(b, s):
        ids, mask = data(seed + s, b, s)
        return [ids, mask.to(dtype)]
    return make


def images(seed):
    return lambda b, s: [torch.randn(b, 3, 16, 16, generator=torch.Generator().manual_seed(seed + b))]


def write_pb(path, name, a):
    with open(path, "wb") as f:
        f.write(numpy_helper.from_array(a, name).SerializeToString())


def export13(outdir, name, model, seed, make_inputs, in_names, out_names, opset, dyn):
    """torch.onnx.export at opset with dynamic axes dyn; two data sets
    ([2, 7] and [3, 5] tokens; 2 and 3 images), ONNX Runtime's outputs,
    each within 1e-4 of PyTorch's."""
    if make_zoo.PREFIXES and not any(name.startswith(p) for p in make_zoo.PREFIXES):
        return
    randomize(model, seed)
    model.eval()
    for mod in model.modules():  # random running statistics
        if isinstance(mod, nn.BatchNorm2d):
            g = torch.Generator().manual_seed(seed + mod.num_features)
            with torch.no_grad():
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    sets = [make_inputs(2, 7), make_inputs(3, 5)]
    path = os.path.join(d, "model.onnx")
    torch.onnx.export(model, tuple(sets[0]), path, input_names=in_names, output_names=out_names,
                      dynamic_axes=dyn, opset_version=opset)
    m = onnx.load(path)
    onnx.checker.check_model(m)
    for k, inputs in enumerate(sets):
        sd = os.path.join(d, "test_data_set_%d" % k)
        os.makedirs(sd, exist_ok=True)
        arrays = [t.numpy() for t in inputs]
        outs = ort_run(m, arrays)
        with torch.no_grad():
            ref = model(*inputs)
        ref = ref if isinstance(ref, tuple) else (ref,)
        for o, r in zip(outs, ref):
            err = float(np.abs(o - r.numpy()).max())
            assert err < 1e-4, "%s: ONNX Runtime and PyTorch differ by %g" % (name, err)
        for i, (n, a) in enumerate(zip(in_names, arrays)):
            write_pb(os.path.join(sd, "input_%d.pb" % i), n, a)
        for i, (n, a) in enumerate(zip(out_names, outs)):
            write_pb(os.path.join(sd, "output_%d.pb" % i), n, a)


def axes(names, **extra):
    dyn = {n: {0: "batch", 1: "seq"} for n in names}
    dyn.update(extra)
    return dyn


def zoo13(outdir):
    tok = ["input_ids", "attention_mask"]
    export13(outdir, "z13_bert_sdparef_boolfill_op17", SdpaRefBert(), 1301, ids_mask(1301), tok,
             ["last_hidden_state", "pooler_output"], 17,
             axes(tok + ["last_hidden_state"], pooler_output={0: "batch"}))
    export13(outdir, "z13_bert_headloop_slices_op14", HeadLoopBert(), 1311, ids_mask(1311), tok,
             ["last_hidden_state", "pooler_output"], 14,
             axes(tok + ["last_hidden_state"], pooler_output={0: "batch"}))
    export13(outdir, "z13_gpt2_conv1d_baddbmm_layeridx_op14", UpcastGpt2(), 1302, ids_mask(1302),
             tok, ["logits"], 14, axes(tok + ["logits"]))
    export13(outdir, "z13_gpt2_torchmha_squaremask_op14", TorchMhaGpt2(), 1303, ids_only(1303),
             ["input_ids"], ["logits"], 14, axes(["input_ids", "logits"]))
    export13(outdir, "z13_gpt_karpathy_headlist_op14", KarpathyGpt(), 1310, ids_only(1310),
             ["input_ids"], ["logits"], 14, axes(["input_ids", "logits"]))
    img = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}, "last_hidden_state": {0: "batch"}}
    export13(outdir, "z13_vit_convstem_tencpre_op14", ConvStemVit(), 1304, images(1304),
             ["pixel_values"], ["logits", "last_hidden_state"], 14, img)
    export13(outdir, "z13_vit_lucidrains_rearrange_op14", LucidVit(), 1305, images(1305),
             ["pixel_values"], ["logits"], 14, img)
    export13(outdir, "z13_minilm_einsum_bshd_meannorm_op13", EinsumMiniLM(), 1306, ids_mask(1306),
             tok, ["sentence_embedding"], 13, axes(tok, sentence_embedding={0: "batch"}))
    export13(outdir, "z13_llama_meta_realrope_tilegqa_op17", MetaLlama(), 1307, ids_only(1307),
             ["input_ids"], ["logits"], 17, axes(["input_ids", "logits"]))
    export13(outdir, "z13_umt5_enc_perlayerbias_op14", Umt5Encoder(), 1308, ids_mask(1308), tok,
             ["last_hidden_state"], 14, axes(tok + ["last_hidden_state"]))
    export13(outdir, "z13_distilbert_sinpos_int32_op13", SinDistilBert(), 1309,
             ids_mask(1309, torch.int32), tok, ["last_hidden_state", "logits"], 13,
             axes(tok + ["last_hidden_state"], logits={0: "batch"}))


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    make_zoo.PREFIXES[:] = sys.argv[2:]
    torch.manual_seed(0)
    zoo13(outdir)


if __name__ == "__main__":
    main()
