#!/usr/bin/env python3
"""make_qknorm.py -- decoders whose q and k are normalised between their
projections and the rotary, written differently from make_zoo2.py's Qwen3
and make_zoo3.py's Cohere (zq_* cases of tests/data/models), each from its
published architecture:

OLMo-2: q_norm and k_norm are RMSNorms over the whole projection (weight
[heads * d]) before the heads are split; the block normalises after
attention and after the MLP (x + norm(attn(x))), SwiGLU, rotate-half.
Gemma-3: per-head RMSNorm with the weight as (1 + w), GQA 4 / 2, the query
scaled by query_pre_attn_scalar ** -0.5 (not the head size), norms before
and after attention and MLP, GELU-tanh gating, embeddings times sqrt(d).
Qwen3 again, exported static (batch 2, length 7, no mask input: causal
only), its RMSNorm written as x / sqrt(mean(x^2) + eps) with the weight on
the left.
Cohere-like: the per-head LayerNorm written as F.layer_norm over the head's
features (one LayerNormalization node at opset 17) times a weight [heads,
d], rotate-half (the interleaved tables of make_zoo2.rope are a Loop at
opset 17).

Each is small (d 32, 4 heads, FFN 64, 2 layers, vocabulary 64), seeded,
with PyTorch's outputs (make_zoo.export: batch 2 of 7 with the second row
padded, and batch 3 of 5; the static one the first only).

    /usr/bin/python3 make_qknorm.py [OUTDIR [PREFIX...]]

Needs torch (1.13) and onnx (1.12).
"""
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

import make_zoo
from make_models import RmsNorm, rotate_half
from make_zoo import export, ids_mask, repeat_kv
from make_zoo2 import causal_padding, rope

D, H, FF, L, VOCAB = 32, 4, 64, 2, 64
DH = D // H
FMIN = torch.finfo(torch.float32).min


def heads(x, n):
    # [B, S, n * DH] -> [B, n, S, DH]
    b, s, _ = x.shape
    return x.view(b, s, n, DH).transpose(1, 2)


def merged(o):
    b, h, s, dh = o.shape
    return o.transpose(1, 2).reshape(b, s, h * dh)


def attend(q, k, v, mask, scale):
    att = torch.matmul(q, k.transpose(2, 3)) * scale + mask
    return merged(torch.matmul(F.softmax(att, dim=-1, dtype=torch.float32), v))


class SwiGlu(nn.Module):
    def __init__(self, act=F.silu):
        super().__init__()
        self.act = act
        self.gate_proj, self.up_proj = nn.Linear(D, FF, bias=False), nn.Linear(D, FF, bias=False)
        self.down_proj = nn.Linear(FF, D, bias=False)

    def forward(self, x):
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


class Decoder(nn.Module):
    """Token embeddings (times `emb_scale`), rotate-half tables from the
    length, the causal + padding mask (causal alone without a mask input),
    the blocks, a final norm and an untied head."""

    def __init__(self, block, norm, emb_scale=1.0):
        super().__init__()
        self.emb_scale = emb_scale
        self.embed_tokens = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(block() for _ in range(L))
        self.norm = norm
        self.lm_head = nn.Linear(D, VOCAB, bias=False)

    def forward(self, input_ids, attention_mask=None):
        s = input_ids.shape[1]
        x = self.embed_tokens(input_ids) * self.emb_scale
        cos, sin = rope(s, DH, 10000.0)
        if attention_mask is None:
            mask = torch.zeros(s, s).masked_fill(torch.triu(torch.ones(s, s, dtype=torch.bool), 1), FMIN)
        else:
            mask = causal_padding(attention_mask, s)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.norm(x))


# ---------------------------------------------------------------- OLMo-2 ----

class Olmo2Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj, self.k_proj = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.v_proj, self.o_proj = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.q_norm, self.k_norm = RmsNorm(D, 1e-6), RmsNorm(D, 1e-6)
        self.post_attention_layernorm, self.post_feedforward_layernorm = RmsNorm(D, 1e-6), RmsNorm(D, 1e-6)
        self.mlp = SwiGlu()

    def forward(self, x, cos, sin, mask):
        q = heads(self.q_norm(self.q_proj(x)), H)
        k = heads(self.k_norm(self.k_proj(x)), H)
        v = heads(self.v_proj(x), H)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        a = self.o_proj(attend(q, k, v, mask, DH ** -0.5))
        x = x + self.post_attention_layernorm(a)
        return x + self.post_feedforward_layernorm(self.mlp(x))


# --------------------------------------------------------------- Gemma-3 ----

class GemmaNorm(nn.Module):
    # Gemma's RMSNorm: float32, the weight applied as (1 + w)
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.zeros(d)), eps

    def forward(self, x):
        y = x.float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * (1.0 + self.weight.float())).type_as(x)


class Gemma3Block(nn.Module):
    def __init__(self, kv=2, query_pre_attn_scalar=16.0):
        super().__init__()
        self.kv, self.scale = kv, query_pre_attn_scalar ** -0.5
        self.q_proj, self.k_proj = nn.Linear(D, H * DH, bias=False), nn.Linear(D, kv * DH, bias=False)
        self.v_proj, self.o_proj = nn.Linear(D, kv * DH, bias=False), nn.Linear(H * DH, D, bias=False)
        self.q_norm, self.k_norm = GemmaNorm(DH), GemmaNorm(DH)
        self.input_layernorm, self.post_attention_layernorm = GemmaNorm(D), GemmaNorm(D)
        self.pre_feedforward_layernorm, self.post_feedforward_layernorm = GemmaNorm(D), GemmaNorm(D)
        self.mlp = SwiGlu(lambda t: F.gelu(t, approximate="tanh"))

    def forward(self, x, cos, sin, mask):
        h = self.input_layernorm(x)
        q = self.q_norm(heads(self.q_proj(h), H))
        k = self.k_norm(heads(self.k_proj(h), self.kv))
        v = heads(self.v_proj(h), self.kv)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        n = H // self.kv
        a = self.o_proj(attend(q, repeat_kv(k, n), repeat_kv(v, n), mask, self.scale))
        x = x + self.post_attention_layernorm(a)
        h = self.pre_feedforward_layernorm(x)
        return x + self.post_feedforward_layernorm(self.mlp(h))


# ---------------------------------------------------------- Qwen3, static ----

class DivRmsNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x):
        return self.weight * (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class Qwen3StaticBlock(nn.Module):
    def __init__(self, kv=2):
        super().__init__()
        self.kv = kv
        self.q_proj, self.k_proj = nn.Linear(D, H * DH, bias=False), nn.Linear(D, kv * DH, bias=False)
        self.v_proj, self.o_proj = nn.Linear(D, kv * DH, bias=False), nn.Linear(H * DH, D, bias=False)
        self.q_norm, self.k_norm = DivRmsNorm(DH), DivRmsNorm(DH)
        self.input_layernorm, self.post_attention_layernorm = DivRmsNorm(D), DivRmsNorm(D)
        self.mlp = SwiGlu()

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        h = self.input_layernorm(x)
        # heads split with reshape and permute (not view and transpose)
        q = self.q_norm(self.q_proj(h).reshape(b, s, H, DH)).permute(0, 2, 1, 3)
        k = self.k_norm(self.k_proj(h).reshape(b, s, self.kv, DH)).permute(0, 2, 1, 3)
        v = self.v_proj(h).reshape(b, s, self.kv, DH).permute(0, 2, 1, 3)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        n = H // self.kv
        x = x + self.o_proj(attend(q, repeat_kv(k, n), repeat_kv(v, n), mask, 1.0 / math.sqrt(DH)))
        return x + self.mlp(self.post_attention_layernorm(x))


# --------------------------------------------------- Cohere, LayerNorm op ----

class HeadLayerNorm(nn.Module):
    # a LayerNorm of each head's features without affine, then a weight per head
    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n, DH))

    def forward(self, x):  # [B, S, n, DH]
        # (torch 1.13 writes no valid LayerNormalization without a scale)
        return F.layer_norm(x, (DH,), torch.ones(DH), eps=1e-5) * self.weight


class CohereOpBlock(nn.Module):
    def __init__(self, kv=2):
        super().__init__()
        self.kv = kv
        self.input_layernorm = nn.LayerNorm(D)
        self.q_proj, self.k_proj = nn.Linear(D, D, bias=False), nn.Linear(D, kv * DH, bias=False)
        self.v_proj, self.o_proj = nn.Linear(D, kv * DH, bias=False), nn.Linear(D, D, bias=False)
        self.q_norm, self.k_norm = HeadLayerNorm(H), HeadLayerNorm(kv)
        self.mlp = SwiGlu()

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_norm(self.q_proj(h).view(b, s, H, DH)).transpose(1, 2)
        k = self.k_norm(self.k_proj(h).view(b, s, self.kv, DH)).transpose(1, 2)
        v = heads(self.v_proj(h), self.kv)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        n = H // self.kv
        a = self.o_proj(attend(q, repeat_kv(k, n), repeat_kv(v, n), mask, 1.0 / math.sqrt(DH)))
        return x + a + self.mlp(h)


def ids_only(seed):
    return lambda b, s: [make_zoo.data(seed + s, b, s, 0)[0]]


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    make_zoo.PREFIXES.extend(sys.argv[2:])
    torch.manual_seed(0)
    lm = ["input_ids", "attention_mask"]
    olmo2 = Decoder(Olmo2Block, RmsNorm(D, 1e-6))
    gemma3 = Decoder(Gemma3Block, GemmaNorm(D), emb_scale=math.sqrt(D))
    qwen3 = Decoder(Qwen3StaticBlock, DivRmsNorm(D))
    cohere = Decoder(CohereOpBlock, nn.LayerNorm(D))
    export(outdir, "zq_olmo2_wholenorm_postnorm_op14", olmo2, 901, ids_mask(91), lm, ["logits"], 14)
    export(outdir, "zq_gemma3_qknorm_1pw_gqa_op16", gemma3, 902, ids_mask(92), lm, ["logits"], 16)
    export(outdir, "zq_qwen3_static_divnorm_op14", qwen3, 903, ids_only(93), ["input_ids"], ["logits"], 14,
           dynamic=False)
    export(outdir, "zq_cohere_lnop_perhead_op17", cohere, 904, ids_mask(94), lm, ["logits"], 17)


if __name__ == "__main__":
    main()
