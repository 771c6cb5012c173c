#!/usr/bin/env python3
"""make_zoo2.py -- more of the model zoo as whole models (z2_* cases of
tests/data/models), the families make_zoo.py does not write, each from its
published architecture in the idioms its authors use: Phi-2 (partial
rotary, parallel attention + MLP, biased dense), Qwen3 (RMSNorm of each
head's q and k before the rotary), Gemma-2 (attention logit soft-capping,
sliding-window layers between global ones, norms before and after each
sub-block), GPT-BigCode (multi-query attention from one c_attn, the heads
folded into the query rows), CodeGen (one qkv projection split in
model-parallel groups in the order q, v, k, interleaved rotary),
ModernBERT (rotary in an encoder, GeGLU, a local window layer beside the
global one), DINOv2 (LayerScale, register tokens, positions interpolated
to the image), BEiT (a relative position bias table in a ViT), Swin
(windows of patches, a relative bias table, a shifted window with its
mask), DeBERTa-v2 (disentangled attention: content-to-position and
position-to-content), MPNet (a bucketed relative bias shared by the
layers), Perceiver (cross-attention from learned latents), XLM-R (position
ids from the padding index by cumsum).

Each is d 32, 4 heads, FFN 64, 2 layers, vocabulary 64, seeded, with
PyTorch's outputs for two data sets (make_zoo.export: batch 2 of 7 tokens,
the second row padded; batch 3 of 5).

    /usr/bin/python3 make_zoo2.py [OUTDIR [PREFIX...]]

Needs torch (1.13) and onnx (1.12); the same bytes for the same versions.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

import make_zoo
from make_models import RmsNorm, rotate_half
from make_variants import gelu_new
from make_zoo import GemmaNorm, export, ids_mask, rel_bucket, repeat_kv, rotate_every_two

D, H, FF, L, VOCAB, MAXPOS = 32, 4, 64, 2, 64, 16
DH = D // H
FMIN = torch.finfo(torch.float32).min


def rope(s, dim, base=10000.0, interleaved=False):
    """cos, sin [S, dim] of positions 0..S-1 computed in the graph from the
    length, as Hugging Face's rotary modules do (inv_freq a buffer)."""
    inv = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
    f = torch.outer(torch.arange(s).float(), inv)
    e = torch.repeat_interleave(f, 2, dim=-1) if interleaved else torch.cat((f, f), dim=-1)
    return e.cos(), e.sin()


def causal_padding(attention_mask, s):
    # Hugging Face's 4-D mask: causal and padding merged by masked_fill into
    # [B, 1, S, S] of finfo.min
    causal = torch.triu(torch.ones(s, s, dtype=torch.bool), diagonal=1)
    hide = causal[None, None] | (attention_mask[:, None, None, :] == 0)
    return torch.zeros(hide.shape).masked_fill(hide, FMIN)


def padding_ext(attention_mask):
    return (1.0 - attention_mask[:, None, None, :].float()) * FMIN


# ----------------------------------------------------------------- Phi-2 ----

class PhiBlock(nn.Module):
    def __init__(self, rot):
        super().__init__()
        self.rot = rot
        self.input_layernorm = nn.LayerNorm(D)
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.dense = nn.Linear(D, D)
        self.fc1, self.fc2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(b, s, H, DH).transpose(1, 2)
        k = self.k_proj(h).view(b, s, H, DH).transpose(1, 2)
        v = self.v_proj(h).view(b, s, H, DH).transpose(1, 2)
        r = self.rot
        q_rot, q_pass = q[..., :r], q[..., r:]
        k_rot, k_pass = k[..., :r], k[..., r:]
        q = torch.cat((q_rot * cos + rotate_half(q_rot) * sin, q_pass), dim=-1)
        k = torch.cat((k_rot * cos + rotate_half(k_rot) * sin, k_pass), dim=-1)
        att = torch.matmul(q.float(), k.float().transpose(2, 3)) / math.sqrt(DH) + mask
        att = F.softmax(att, dim=-1, dtype=torch.float32).to(v.dtype)
        a = self.dense(torch.matmul(att, v).transpose(1, 2).reshape(b, s, D))
        return x + a + self.fc2(gelu_new(self.fc1(h)))


class RopeLM(nn.Module):
    """A decoder of `block`s sharing rotary tables of `rot` dims at `theta`
    made from the length, the causal + padding mask merged into [B, 1, S,
    S], a final `norm` and an untied head.
    Phi-2: partial rotary (half of each head, rotate-half), q / k / v
    with biases, one LayerNorm before attention and MLP run in parallel,
    gelu_new, final LayerNorm, lm_head with bias.
    Qwen3 / OLMo-2: each head's q and k RMS-normalised (a weight of the
    head size) before the rotary, GQA 4 / 2, no biases."""

    def __init__(self, block, norm, rot, theta, head_bias):
        super().__init__()
        self.rot, self.theta = rot, theta
        self.embed_tokens = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(block() for _ in range(L))
        self.final_norm = norm
        self.lm_head = nn.Linear(D, VOCAB, bias=head_bias)

    def forward(self, input_ids, attention_mask):
        x = self.embed_tokens(input_ids)
        tables = rope(input_ids.shape[1], self.rot, self.theta)
        mask = causal_padding(attention_mask, input_ids.shape[1])
        for layer in self.layers:
            x = layer(x, *tables, mask)
        return self.lm_head(self.final_norm(x))


# ----------------------------------------------------------------- Qwen3 ----

class Qwen3Attn(nn.Module):
    def __init__(self, kv):
        super().__init__()
        self.kv = kv
        self.q_proj, self.k_proj = nn.Linear(D, H * DH, bias=False), nn.Linear(D, kv * DH, bias=False)
        self.v_proj, self.o_proj = nn.Linear(D, kv * DH, bias=False), nn.Linear(H * DH, D, bias=False)
        self.q_norm, self.k_norm = RmsNorm(DH, 1e-6), RmsNorm(DH, 1e-6)

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        q = self.q_norm(self.q_proj(x).view(b, s, H, DH)).transpose(1, 2)
        k = self.k_norm(self.k_proj(x).view(b, s, self.kv, DH)).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.kv, DH).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        n = H // self.kv
        k = k[:, :, None].expand(b, self.kv, n, s, DH).reshape(b, H, s, DH)
        v = v[:, :, None].expand(b, self.kv, n, s, DH).reshape(b, H, s, DH)
        att = torch.matmul(q, k.transpose(2, 3)) * DH ** -0.5 + mask
        att = F.softmax(att, dim=-1, dtype=torch.float32).to(q.dtype)
        return self.o_proj(torch.matmul(att, v).transpose(1, 2).reshape(b, s, D))


class SwiGlu(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate_proj, self.up_proj = nn.Linear(D, FF, bias=False), nn.Linear(D, FF, bias=False)
        self.down_proj = nn.Linear(FF, D, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Qwen3Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_layernorm, self.post_attention_layernorm = RmsNorm(D, 1e-6), RmsNorm(D, 1e-6)
        self.self_attn, self.mlp = Qwen3Attn(2), SwiGlu()

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


# ---------------------------------------------------------------- Gemma-2 ----

def head_view(x, n):
    # [B, S, n * DH] -> [B, n, S, DH]
    return x.view(x.shape[0], x.shape[1], n, DH).transpose(1, 2)


class Gemma2Block(nn.Module):
    def __init__(self, window):
        super().__init__()
        self.window = window
        self.q_proj, self.k_proj = nn.Linear(D, H * DH, bias=False), nn.Linear(D, 2 * DH, bias=False)
        self.v_proj, self.o_proj = nn.Linear(D, 2 * DH, bias=False), nn.Linear(H * DH, D, bias=False)
        self.gate_proj, self.up_proj = nn.Linear(D, FF, bias=False), nn.Linear(D, FF, bias=False)
        self.down_proj = nn.Linear(FF, D, bias=False)
        self.input_layernorm, self.post_attention_layernorm = GemmaNorm(D), GemmaNorm(D)
        self.pre_feedforward_layernorm, self.post_feedforward_layernorm = GemmaNorm(D), GemmaNorm(D)

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        h = self.input_layernorm(x)
        q, k = head_view(self.q_proj(h), H), head_view(self.k_proj(h), 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, 2), repeat_kv(head_view(self.v_proj(h), 2), 2)
        att = torch.matmul(q, k.transpose(2, 3)) * DH ** -0.5
        att = torch.tanh(att / 50.0) * 50.0  # attn_logit_softcapping
        if self.window:
            # sliding-window layer: keys more than `window` back hidden too
            i = torch.arange(s)
            far = (i[None, :] <= i[:, None] - self.window)
            mask = torch.where(far[None, None], torch.tensor(FMIN), mask)
        att = F.softmax(att + mask, dim=-1, dtype=torch.float32).to(q.dtype)
        a = self.o_proj(torch.matmul(att, v).transpose(1, 2).reshape(b, s, D))
        x = x + self.post_attention_layernorm(a)
        m = self.down_proj(F.gelu(self.gate_proj(self.pre_feedforward_layernorm(x)), approximate="tanh")
                           * self.up_proj(self.pre_feedforward_layernorm(x)))
        return x + self.post_feedforward_layernorm(m)


class Gemma2(nn.Module):
    """Gemma-2: embeddings times sqrt(d), GQA 4 / 2, the attention scores
    soft-capped tanh(x / 50) * 50, a sliding window of 3 on even layers
    and global attention on odd ones, RMSNorm (1 + w) before and after
    each sub-block, GeGLU, the final logits soft-capped at 30, tied head."""

    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(Gemma2Block(3 if i % 2 == 0 else 0) for i in range(L))
        self.norm = GemmaNorm(D)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        x = self.embed_tokens(input_ids) * torch.tensor(D ** 0.5)
        cos, sin = rope(s, DH)
        mask = causal_padding(attention_mask, s)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        logits = torch.matmul(self.norm(x), self.embed_tokens.weight.t())
        return torch.tanh(logits / 30.0) * 30.0


# ------------------------------------------------------------ GPT-BigCode ----

class BigCodeBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.c_attn = nn.Linear(D, D + 2 * DH)
        self.c_proj = nn.Linear(D, D)
        self.c_fc, self.mlp_proj = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, keep):
        b, s, _ = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split((D, DH, DH), dim=2)
        # multi-query: the heads folded into the query rows, one key / value
        query = q.reshape(b, s * H, DH)
        att = torch.bmm(query, k.transpose(1, 2)) * DH ** -0.5  # [B, S*H, S]
        att = att.view(b, s, H, s)
        att = torch.where(keep, att, torch.tensor(FMIN))
        att = F.softmax(att, dim=-1).view(b, s * H, s)
        o = torch.bmm(att, v).view(b, s, D)
        x = x + self.c_proj(o)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class BigCode(nn.Module):
    """GPT-BigCode (SantaCoder / StarCoder): one c_attn giving q (d) and a
    single key and value head, the scores of every head as [B, S*H, S]
    rows of one bmm viewed [B, S, H, S], causal and padding one bool
    [B, S, 1, S] through where, learned positions, tied head."""

    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D)
        self.h = nn.ModuleList(BigCodeBlock() for _ in range(L))
        self.ln_f = nn.LayerNorm(D)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        x = self.wte(input_ids) + self.wpe(torch.arange(s)[None])
        causal = torch.tril(torch.ones(s, s, dtype=torch.bool))
        keep = causal[None, :, None, :] & attention_mask.bool()[:, None, None, :]
        for block in self.h:
            x = block(x, keep)
        return torch.matmul(self.ln_f(x), self.wte.weight.t())


class BigCodeHfBlock(BigCodeBlock):
    """The same layer as Hugging Face's GPTBigCodeAttention writes it: q
    and one kv split from c_attn, the kv split again, the scores by
    baddbmm(empty, query, key, beta=0, alpha=scale), viewed [B, S, H, S],
    where(mask, w, mask_value) with a finfo.min tensor, the softmax in
    float32, the probabilities viewed back for the bmm."""

    def forward(self, x, keep):
        b, s, _ = x.shape
        q, kv = self.c_attn(self.ln_1(x)).split((D, 2 * DH), dim=2)
        k, v = kv.split((DH, DH), dim=-1)
        query = q.reshape(b, s * H, DH)
        empty = torch.empty((b, s * H, s), dtype=x.dtype)
        att = torch.baddbmm(empty, query, k.transpose(-1, -2), beta=0, alpha=1.0 / math.sqrt(DH))
        att = att.view(b, s, H, s)
        att = torch.where(keep, att, torch.full([], FMIN, dtype=att.dtype))
        att = F.softmax(att.float(), dim=-1).to(x.dtype).view(b, s * H, s)
        o = torch.bmm(att, v).view(b, s, D)
        x = x + self.c_proj(o)
        return x + self.mlp_proj(gelu_new(self.c_fc(self.ln_2(x))))


class BigCodeHf(BigCode):
    """BigCode with the blocks above, the causal mask a registered bool
    buffer sliced to the length and joined with the padding as
    [B, S, 1, S] (bias[None, :s, :s] & mask[:, None, :], unsqueezed)."""

    def __init__(self):
        super().__init__()
        self.h = nn.ModuleList(BigCodeHfBlock() for _ in range(L))
        self.register_buffer("bias", torch.tril(torch.ones(MAXPOS, MAXPOS, dtype=torch.bool)))

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        pos = attention_mask.long().cumsum(-1) - 1
        x = self.wte(input_ids) + self.wpe(pos.clamp(min=0))
        keep = (self.bias[None, :s, :s] & attention_mask.bool()[:, None, :]).unsqueeze(2)
        for block in self.h:
            x = block(x, keep)
        return torch.matmul(self.ln_f(x), self.wte.weight.t())


# ---------------------------------------------------------------- CodeGen ----

class CodeGenBlock(nn.Module):
    MP = 2

    def __init__(self):
        super().__init__()
        self.ln_1 = nn.LayerNorm(D)
        self.qkv_proj = nn.Linear(D, 3 * D, bias=False)
        self.out_proj = nn.Linear(D, D, bias=False)
        self.fc_in, self.fc_out = nn.Linear(D, FF), nn.Linear(FF, D)
        self.register_buffer("causal_mask", torch.tril(torch.ones(MAXPOS, MAXPOS, dtype=torch.bool)))

    def heads(self, x):
        # [B, S, MP, local] -> [B, H, S, DH] (CodeGen's _split_heads)
        b, s = x.shape[0], x.shape[1]
        return x.reshape(b, s, self.MP, H // self.MP, DH).reshape(b, s, H, DH).transpose(1, 2)

    def forward(self, x, sincos, mask):
        b, s, _ = x.shape
        h = self.ln_1(x)
        qkv = self.qkv_proj(h).reshape(b, s, self.MP, 3 * D // self.MP)
        q, v, k = torch.split(qkv, D // self.MP, dim=-1)  # CodeGen's order
        q, k, v = self.heads(q), self.heads(k), self.heads(v)
        sin, cos = sincos
        r = DH // 2
        q = torch.cat((q[..., :r] * cos + rotate_every_two(q[..., :r]) * sin, q[..., r:]), dim=-1)
        k = torch.cat((k[..., :r] * cos + rotate_every_two(k[..., :r]) * sin, k[..., r:]), dim=-1)
        att = torch.matmul(q.float(), k.float().transpose(-1, -2))
        att = torch.where(self.causal_mask[:s, :s], att, torch.tensor(FMIN))
        att = att / torch.tensor(math.sqrt(DH)) + mask
        att = F.softmax(att, dim=-1)
        a = self.out_proj(torch.matmul(att, v).transpose(1, 2).reshape(b, s, D))
        return x + a + self.fc_out(gelu_new(self.fc_in(h)))


class CodeGen(nn.Module):
    """CodeGen: qkv in one projection, cut in 2 model-parallel groups each
    split q, v, k; GPT-J's interleaved rotary on half of each head from
    sin / cos of the positions, the causal where with finfo.min, then
    divided by sqrt(d) and (1 - m) * finfo.min added (the causal mask a
    registered tril buffer sliced); parallel block."""

    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, D)
        self.h = nn.ModuleList(CodeGenBlock() for _ in range(L))
        self.ln_f = nn.LayerNorm(D)
        self.lm_head = nn.Linear(D, VOCAB)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        x = self.wte(input_ids)
        inv = 1.0 / (10000 ** (torch.arange(0, DH // 2, 2).float() / (DH // 2)))
        f = torch.einsum("i,j->ij", torch.arange(s).float(), inv)
        # CodeGen's duplicate_interleave: each frequency twice, by repeat
        sin = f.sin()[:, :, None].repeat(1, 1, 2).view(s, DH // 2)
        cos = f.cos()[:, :, None].repeat(1, 1, 2).view(s, DH // 2)
        mask = padding_ext(attention_mask)
        for block in self.h:
            x = block(x, (sin, cos), mask)
        return self.lm_head(self.ln_f(x))


# -------------------------------------------------------------- ModernBERT ----

class ModernBlock(nn.Module):
    def __init__(self, first, local):
        super().__init__()
        self.local = local
        self.attn_norm = nn.Identity() if first else nn.LayerNorm(D)
        self.Wqkv, self.Wo = nn.Linear(D, 3 * D, bias=False), nn.Linear(D, D, bias=False)
        self.mlp_norm = nn.LayerNorm(D)
        self.Wi, self.mlp_Wo = nn.Linear(D, 2 * FF, bias=False), nn.Linear(FF, D, bias=False)

    def forward(self, x, glob, local, cos_g, sin_g, cos_l, sin_l):
        b, s, _ = x.shape
        qkv = self.Wqkv(self.attn_norm(x)).view(b, s, 3, H, DH)
        q, k, v = qkv.transpose(3, 1).unbind(dim=2)  # [B, H, S, DH]
        cos, sin = (cos_l, sin_l) if self.local else (cos_g, sin_g)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        att = torch.matmul(q, k.transpose(-1, -2)) * DH ** -0.5 + (local if self.local else glob)
        o = torch.matmul(F.softmax(att, dim=-1), v).transpose(1, 2).reshape(b, s, D)
        x = x + self.Wo(o)
        inp, gate = self.Wi(self.mlp_norm(x)).chunk(2, dim=-1)
        return x + self.mlp_Wo(F.gelu(inp) * gate)


class ModernBert(nn.Module):
    """ModernBERT: no position embeddings, rotary in an encoder (global
    layers at theta 160000, the local one at 10000), a fused Wqkv viewed
    [B, S, 3, H, d], the first layer without its attention norm, GeGLU
    (Wi chunked), global attention with the padding mask and a local layer
    seeing keys within 2 of the query (a bidirectional window) besides."""

    def __init__(self):
        super().__init__()
        self.tok_embeddings = nn.Embedding(VOCAB, D)
        self.norm = nn.LayerNorm(D)
        self.layers = nn.ModuleList(ModernBlock(i == 0, i % 2 == 1) for i in range(L))
        self.final_norm = nn.LayerNorm(D)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        x = self.norm(self.tok_embeddings(input_ids))
        glob = padding_ext(attention_mask)
        i = torch.arange(s)
        far = (i[None, :] - i[:, None]).abs() > 2
        local = glob.masked_fill(far[None, None], FMIN)
        cos_g, sin_g = rope(s, DH, 160000.0)
        cos_l, sin_l = rope(s, DH, 10000.0)
        for layer in self.layers:
            x = layer(x, glob, local, cos_g, sin_g, cos_l, sin_l)
        return self.final_norm(x)


# ----------------------------------------------------------------- DINOv2 ----

class LayerScaleBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(D, eps=1e-6), nn.LayerNorm(D, eps=1e-6)
        self.query, self.key, self.value = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.dense = nn.Linear(D, D)
        self.lambda1, self.lambda2 = nn.Parameter(torch.ones(D)), nn.Parameter(torch.ones(D))
        self.fc1, self.fc2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x):
        b, n, _ = x.shape
        h = self.norm1(x)
        q = self.query(h).view(b, n, H, DH).permute(0, 2, 1, 3)
        k = self.key(h).view(b, n, H, DH).permute(0, 2, 1, 3)
        v = self.value(h).view(b, n, H, DH).permute(0, 2, 1, 3)
        att = F.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(DH), dim=-1)
        o = torch.matmul(att, v).permute(0, 2, 1, 3).reshape(b, n, D)
        x = x + self.dense(o) * self.lambda1  # LayerScale
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x)))) * self.lambda2


class Dinov2(nn.Module):
    """DINOv2 with registers: 4 x 4 patches of 16 x 16 images, a CLS token,
    the position table of a 3 x 3 grid interpolated (bicubic) to the 4 x 4
    one, 2 register tokens after the CLS, LayerScale on both residuals;
    the CLS row and the patch mean concatenated for the head."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, D, 4, 4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.register_tokens = nn.Parameter(torch.zeros(1, 2, D))
        self.position_embeddings = nn.Parameter(torch.zeros(1, 1 + 9, D))
        self.layer = nn.ModuleList(LayerScaleBlock() for _ in range(L))
        self.layernorm = nn.LayerNorm(D, eps=1e-6)
        self.classifier = nn.Linear(2 * D, 10)

    def forward(self, pixel_values):
        b = pixel_values.shape[0]
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        pos = self.position_embeddings
        grid = pos[:, 1:].reshape(1, 3, 3, D).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False)
        pos = torch.cat((pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 16, D)), dim=1)
        x = x + pos
        x = torch.cat((x[:, :1], self.register_tokens.expand(b, -1, -1), x[:, 1:]), dim=1)
        for layer in self.layer:
            x = layer(x)
        x = self.layernorm(x)
        return self.classifier(torch.cat((x[:, 0], x[:, 3:].mean(dim=1)), dim=-1))


# ------------------------------------------------------------------- BEiT ----

def relative_index(wh, ww, extra_cls=True):
    """BEiT / Swin: the index into a relative bias table of every pair of
    patches of a wh x ww grid (BEiT: three more entries for the CLS row,
    column and corner)."""
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    rel[:, :, 0] += wh - 1
    rel[:, :, 1] += ww - 1
    rel[:, :, 0] *= 2 * ww - 1
    n = wh * ww
    if not extra_cls:
        return rel.sum(-1)
    table = (2 * wh - 1) * (2 * ww - 1)
    idx = torch.zeros(n + 1, n + 1, dtype=torch.long)
    idx[1:, 1:] = rel.sum(-1)
    idx[0, 0:] = table
    idx[0:, 0] = table + 1
    idx[0, 0] = table + 2
    return idx


class BeitBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv = nn.Linear(D, 3 * D, bias=False)
        self.q_bias, self.v_bias = nn.Parameter(torch.zeros(D)), nn.Parameter(torch.zeros(D))
        self.proj = nn.Linear(D, D)
        self.table = nn.Parameter(torch.zeros(7 * 7 + 3, H))
        self.register_buffer("index", relative_index(4, 4))
        self.gamma_1, self.gamma_2 = nn.Parameter(torch.ones(D)), nn.Parameter(torch.ones(D))
        self.fc1, self.fc2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x):
        b, n, _ = x.shape
        bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(self.norm1(x), self.qkv.weight, bias).reshape(b, n, 3, H, DH).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * DH ** -0.5, qkv[1], qkv[2]
        att = q @ k.transpose(-2, -1)
        rel = self.table[self.index.view(-1)].view(n, n, H).permute(2, 0, 1).contiguous()
        att = (att + rel.unsqueeze(0)).softmax(dim=-1)
        o = (att @ v).transpose(1, 2).reshape(b, n, D)
        x = x + self.gamma_1 * self.proj(o)
        return x + self.gamma_2 * self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Beit(nn.Module):
    """BEiT: a relative position bias table per layer gathered by a
    [N+1, N+1] index buffer (three entries for the CLS), q and v biases
    with a zero k bias concatenated into one F.linear, LayerScale gammas,
    no absolute positions, mean pooling of the patch rows then LayerNorm."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, D, 4, 4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.blocks = nn.ModuleList(BeitBlock() for _ in range(L))
        self.fc_norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, 10)

    def forward(self, pixel_values):
        b = pixel_values.shape[0]
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.fc_norm(x[:, 1:].mean(1)))


# ------------------------------------------------------------------- Swin ----

WS = 4  # window size (patches)


def window_partition(x, ws):
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws * ws, c)


def window_reverse(win, ws, h, w):
    x = win.view(-1, h // ws, w // ws, ws, ws, win.shape[-1])
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, h, w, win.shape[-1])


class SwinBlock(nn.Module):
    def __init__(self, shift, res):
        super().__init__()
        self.shift, self.res = shift, res
        self.norm1, self.norm2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.table = nn.Parameter(torch.zeros((2 * WS - 1) ** 2, H))
        self.register_buffer("index", relative_index(WS, WS, extra_cls=False))
        self.fc1, self.fc2 = nn.Linear(D, FF), nn.Linear(FF, D)
        if shift:
            img = torch.zeros(1, res, res, 1)
            cnt = 0
            for hs in (slice(0, -WS), slice(-WS, -shift), slice(-shift, None)):
                for ws in (slice(0, -WS), slice(-WS, -shift), slice(-shift, None)):
                    img[:, hs, ws, :] = cnt
                    cnt += 1
            mw = window_partition(img, WS).squeeze(-1)
            am = mw.unsqueeze(1) - mw.unsqueeze(2)
            self.register_buffer("attn_mask", am.masked_fill(am != 0, -100.0).masked_fill(am == 0, 0.0))
        else:
            self.attn_mask = None

    def forward(self, x):
        b, l, c = x.shape
        r = self.res
        h = self.norm1(x).view(b, r, r, c)
        if self.shift:
            h = torch.roll(h, shifts=(-self.shift, -self.shift), dims=(1, 2))
        win = window_partition(h, WS)  # [B * nW, N, C]
        bw, n, _ = win.shape
        qkv = self.qkv(win).reshape(bw, n, 3, H, DH).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * DH ** -0.5, qkv[1], qkv[2]
        att = q @ k.transpose(-2, -1)
        rel = self.table[self.index.view(-1)].view(n, n, -1).permute(2, 0, 1).contiguous()
        att = att + rel.unsqueeze(0)
        if self.attn_mask is not None:
            nw = self.attn_mask.shape[0]
            att = att.view(bw // nw, nw, H, n, n) + self.attn_mask.unsqueeze(1).unsqueeze(0)
            att = att.view(-1, H, n, n)
        o = (att.softmax(dim=-1) @ v).transpose(1, 2).reshape(bw, n, c)
        o = window_reverse(self.proj(o), WS, r, r)
        if self.shift:
            o = torch.roll(o, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + o.view(b, r * r, c)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class Swin(nn.Module):
    """Swin: 2 x 2 patches of 16 x 16 images (an 8 x 8 grid), windows of
    4 x 4 patches, a relative bias table gathered by an index buffer, the
    second block's windows shifted by 2 with torch.roll and the -100 mask
    of its [nW, N, N] regions; mean pooling, head."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, D, 2, 2)
        self.patch_norm = nn.LayerNorm(D)
        self.blocks = nn.ModuleList([SwinBlock(0, 8), SwinBlock(2, 8)])
        self.norm = nn.LayerNorm(D)
        self.head = nn.Linear(D, 10)

    def forward(self, pixel_values):
        x = self.patch_norm(self.patch(pixel_values).flatten(2).transpose(1, 2))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x).mean(1))


# ------------------------------------------------------------- DeBERTa-v2 ----

SPAN = 4  # relative positions -SPAN .. SPAN - 1 (no log buckets at this length)


class DebertaLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.query_proj, self.key_proj = nn.Linear(D, D), nn.Linear(D, D)
        self.value_proj, self.dense = nn.Linear(D, D), nn.Linear(D, D)
        self.ln1, self.ln2 = nn.LayerNorm(D, eps=1e-7), nn.LayerNorm(D, eps=1e-7)
        self.fc1, self.fc2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def heads(self, x):
        b, s, _ = x.shape
        return x.view(b, s, H, DH).permute(0, 2, 1, 3).reshape(b * H, s, DH)

    def forward(self, x, mask, rel_emb, rel_pos):
        b, s, _ = x.shape
        q, k, v = self.heads(self.query_proj(x)), self.heads(self.key_proj(x)), self.heads(self.value_proj(x))
        scale = math.sqrt(DH * 3)
        att = torch.bmm(q, k.transpose(-1, -2) / scale)
        # share_att_key: the relative embeddings through the same projections
        pos_k = self.heads(self.key_proj(rel_emb).expand(b, -1, -1))  # [B*H, 2 SPAN, d]
        pos_q = self.heads(self.query_proj(rel_emb).expand(b, -1, -1))
        c2p = torch.bmm(q, pos_k.transpose(-1, -2) / scale)
        c2p_idx = torch.clamp(rel_pos + SPAN, 0, 2 * SPAN - 1)
        c2p = torch.gather(c2p, -1, c2p_idx.expand(b * H, s, s))
        p2c = torch.bmm(k, pos_q.transpose(-1, -2) / scale)
        p2c_idx = torch.clamp(-rel_pos + SPAN, 0, 2 * SPAN - 1)
        p2c = torch.gather(p2c, -1, p2c_idx.expand(b * H, s, s)).transpose(-1, -2)
        att = (att + c2p + p2c).view(b, H, s, s)
        # XSoftmax: fill the hidden keys, softmax, zero them again
        rmask = ~mask.bool()
        att = F.softmax(att.masked_fill(rmask, FMIN), dim=-1).masked_fill(rmask, 0.0)
        o = torch.bmm(att.view(b * H, s, s), v).view(b, H, s, DH).permute(0, 2, 1, 3).reshape(b, s, D)
        x = self.ln1(x + self.dense(o))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class DebertaV2(nn.Module):
    """DeBERTa-v2: absolute positions off (position_biased_input False),
    disentangled attention with content-to-position and
    position-to-content terms gathered from the relative embeddings
    (LayerNorm'ed, through the same q / k projections), scale 1/sqrt(3 d),
    XSoftmax over the mask m_i * m_j [B, 1, S, S], post-LN."""

    def __init__(self):
        super().__init__()
        self.word = nn.Embedding(VOCAB, D)
        self.emb_ln = nn.LayerNorm(D, eps=1e-7)
        self.rel_embeddings = nn.Embedding(2 * SPAN, D)
        self.rel_ln = nn.LayerNorm(D, eps=1e-7)
        self.layer = nn.ModuleList(DebertaLayer() for _ in range(L))

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        m = attention_mask.float()
        x = self.emb_ln(self.word(input_ids)) * m.unsqueeze(-1)
        ext = m[:, None, :, None] * m[:, None, None, :]  # [B, 1, S, S]
        i = torch.arange(s)
        rel_pos = (i[:, None] - i[None, :])[None]  # [1, S, S]
        rel_emb = self.rel_ln(self.rel_embeddings.weight)[None]
        for layer in self.layer:
            x = layer(x, ext, rel_emb, rel_pos)
        return x


# ------------------------------------------------------------------ MPNet ----

class MpnetLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.ln1, self.ln2 = nn.LayerNorm(D, eps=1e-12), nn.LayerNorm(D, eps=1e-12)
        self.fc1, self.fc2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, mask, bias):
        b, s, _ = x.shape
        q = self.q(x).view(b, s, H, DH).permute(0, 2, 1, 3)
        k = self.k(x).view(b, s, H, DH).permute(0, 2, 1, 3)
        v = self.v(x).view(b, s, H, DH).permute(0, 2, 1, 3)
        att = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(DH) + bias + mask
        o = torch.matmul(F.softmax(att, dim=-1), v).permute(0, 2, 1, 3).reshape(b, s, D)
        x = self.ln1(x + self.o(o))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class Mpnet(nn.Module):
    """MPNet: RoBERTa-style positions from the padding index (1) by cumsum
    of the ids, a bucketed relative bias (32 buckets, bidirectional)
    computed once in the encoder and added by every layer beside the
    (1 - m) * finfo.min mask, post-LN."""

    def __init__(self):
        super().__init__()
        self.word, self.position = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS + 2, D)
        self.ln = nn.LayerNorm(D, eps=1e-12)
        self.relative_attention_bias = nn.Embedding(32, H)
        self.layer = nn.ModuleList(MpnetLayer() for _ in range(L))

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        keep = input_ids.ne(1).int()
        pos = (torch.cumsum(keep, dim=1).type_as(keep) * keep).long() + 1
        x = self.ln(self.word(input_ids) + self.position(pos))
        i = torch.arange(s)
        rel = i[None, :] - i[:, None]
        bucket = rel_bucket(rel, True, buckets=32, max_distance=128)
        bias = self.relative_attention_bias(bucket).permute(2, 0, 1).unsqueeze(0)
        mask = padding_ext(attention_mask)
        for layer in self.layer:
            x = layer(x, mask, bias)
        return x


# --------------------------------------------------------------- Perceiver ----

class PerceiverAttn(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_q, self.ln_kv = nn.LayerNorm(D), nn.LayerNorm(D)
        self.q, self.k, self.v, self.o = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.ln_mlp = nn.LayerNorm(D)
        self.fc1, self.fc2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, lat, inputs, mask):
        b, n, _ = lat.shape
        s = inputs.shape[1]
        q = self.q(self.ln_q(lat)).view(b, n, H, DH).transpose(1, 2)
        kv = self.ln_kv(inputs)
        k = self.k(kv).view(b, s, H, DH).transpose(1, 2)
        v = self.v(kv).view(b, s, H, DH).transpose(1, 2)
        att = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(DH)
        if mask is not None:
            att = att + mask
        o = torch.matmul(F.softmax(att, dim=-1), v).transpose(1, 2).reshape(b, n, D)
        lat = lat + self.o(o)
        return lat + self.fc2(F.gelu(self.fc1(self.ln_mlp(lat))))


class Perceiver(nn.Module):
    """Perceiver: 6 learned latents (expanded over the batch) read the
    token embeddings by cross-attention with their padding mask, then 2
    self-attention layers over the latents; the latents' mean to logits."""

    def __init__(self):
        super().__init__()
        self.embed, self.pos = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D)
        self.latents = nn.Parameter(torch.zeros(6, D))
        self.cross = PerceiverAttn()
        self.selfs = nn.ModuleList(PerceiverAttn() for _ in range(L))
        self.head = nn.Linear(D, 10)

    def forward(self, input_ids, attention_mask):
        b, s = input_ids.shape
        inputs = self.embed(input_ids) + self.pos(torch.arange(s))[None]
        lat = self.latents.expand(b, -1, -1)
        lat = self.cross(lat, inputs, padding_ext(attention_mask))
        for layer in self.selfs:
            lat = layer(lat, lat, None)
        return self.head(lat.mean(1))


# ------------------------------------------------------------------ XLM-R ----

class XlmrLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.dense = nn.Linear(D, D)
        self.ln1, self.ln2 = nn.LayerNorm(D, eps=1e-5), nn.LayerNorm(D, eps=1e-5)
        self.fc1, self.fc2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, ext):
        b, s, _ = x.shape
        q = self.query(x).view(b, s, H, DH).permute(0, 2, 1, 3)
        k = self.key(x).view(b, s, H, DH).permute(0, 2, 1, 3)
        v = self.value(x).view(b, s, H, DH).permute(0, 2, 1, 3)
        att = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(DH) + ext
        o = torch.matmul(F.softmax(att, dim=-1), v).permute(0, 2, 1, 3).reshape(b, s, D)
        x = self.ln1(x + self.dense(o))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class Xlmr(nn.Module):
    """XLM-R: token ids padded with the padding index 1, positions
    cumsum(ids != 1) * (ids != 1) + 1 (create_position_ids_from_input_ids),
    the attention mask given beside, post-LN, CLS pooler."""

    def __init__(self):
        super().__init__()
        self.word = nn.Embedding(VOCAB, D, padding_idx=1)
        self.position = nn.Embedding(MAXPOS + 2, D, padding_idx=1)
        self.token_type = nn.Embedding(1, D)
        self.ln = nn.LayerNorm(D, eps=1e-5)
        self.layer = nn.ModuleList(XlmrLayer() for _ in range(L))
        self.pooler = nn.Linear(D, D)

    def forward(self, input_ids, attention_mask):
        keep = input_ids.ne(1).int()
        pos = (torch.cumsum(keep, dim=1).type_as(keep) * keep).long() + 1
        x = self.word(input_ids) + self.position(pos) + self.token_type(torch.zeros_like(input_ids))
        x = self.ln(x)
        ext = (1.0 - attention_mask[:, None, None, :].float()) * FMIN
        for layer in self.layer:
            x = layer(x, ext)
        return x, torch.tanh(self.pooler(x[:, 0]))


# ---------------------------------------------------------------- export ----

def ids_mask_padidx(seed):
    # the padded tokens are the padding index 1, as a tokenizer writes them
    def make(b, s):
        ids, mask = ids_mask(seed)(b, s)
        return [ids.masked_fill(mask == 0, 1), mask]
    return make


def images(seed, size=16):
    return lambda b, s: [torch.randn(b, 3, size, size, generator=torch.Generator().manual_seed(seed + b))]


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    make_zoo.PREFIXES.extend(sys.argv[2:])
    torch.manual_seed(0)
    lm = ["input_ids", "attention_mask"]
    img = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}
    phi2 = RopeLM(lambda: PhiBlock(DH // 2), nn.LayerNorm(D), DH // 2, 10000.0, True)
    qwen3 = RopeLM(Qwen3Block, RmsNorm(D, 1e-6), DH, 1000000.0, False)
    export(outdir, "z2_phi2_partialrot_parallel_op14", phi2, 401, ids_mask(41), lm, ["logits"], 14)
    export(outdir, "z2_qwen3_qknorm_gqa_op17", qwen3, 402, ids_mask(42), lm, ["logits"], 17)
    export(outdir, "z2_gemma2_softcap_window_op17", Gemma2(), 403, ids_mask(43), lm, ["logits"], 17)
    export(outdir, "z2_bigcode_mqa_op14", BigCode(), 404, ids_mask(44), lm, ["logits"], 14)
    export(outdir, "z2_bigcode_hf_baddbmm_leftpad_op17", BigCodeHf(), 414, make_zoo.ids_mask_left(54), lm,
           ["logits"], 17)
    export(outdir, "z2_codegen_mpsplit_op13", CodeGen(), 405, ids_mask(45), lm, ["logits"], 13)
    export(outdir, "z2_modernbert_local_op17", ModernBert(), 406, ids_mask(46), lm,
           ["last_hidden_state"], 17)
    export(outdir, "z2_dinov2_registers_op16", Dinov2(), 407, images(47), ["pixel_values"], ["logits"], 16,
           dynamic=img)
    export(outdir, "z2_beit_relpos_op14", Beit(), 408, images(48), ["pixel_values"], ["logits"], 14,
           dynamic=img)
    export(outdir, "z2_swin_window_op14", Swin(), 409, images(49), ["pixel_values"], ["logits"], 14,
           dynamic=img)
    export(outdir, "z2_deberta_v2_c2p_op14", DebertaV2(), 410, ids_mask(50), lm, ["last_hidden_state"], 14)
    export(outdir, "z2_mpnet_relbias_op14", Mpnet(), 411, ids_mask_padidx(51), lm, ["last_hidden_state"], 14)
    export(outdir, "z2_perceiver_latents_op14", Perceiver(), 412, ids_mask(52), lm, ["logits"], 14,
           dynamic={"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                    "logits": {0: "batch"}})
    export(outdir, "z2_xlmr_padidx_op14", Xlmr(), 413, ids_mask_padidx(53), lm,
           ["last_hidden_state", "pooler_output"], 14)


if __name__ == "__main__":
    main()
