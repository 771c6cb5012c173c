#!/usr/bin/env python3
"""make_zoo3.py -- a third round of the model zoo as whole models (z3_* cases
of tests/data/models): families and styles make_zoo.py and make_zoo2.py do
not write, each from its published architecture in its authors' idioms:
SigLIP (a ViT whose head is attention pooling: a learned probe query reads
the tokens), SegFormer (efficient attention: keys and values from the
sequence reduced by a strided Conv), Wav2Vec2 (a Conv1d feature stack on
raw audio, a grouped Conv1d positional embedding with GELU before a
post-LN encoder), ESM (rotary in a pre-LN encoder, q scaled before the
rotary), ChatGLM2 (sequence first, multi-query, rotary on half of each
head in interleaved pairs, one fused qkv), Phi-3 (fused qkv and gate_up
Linear layers, sliced), StableLM (LayerNorm and rotary on a quarter of
each head), Cohere (parallel block, LayerNorm without bias, a per-head
LayerNorm of q and k, interleaved rotary, scaled logits), LLaMA-3 (the
rope scaling of its frequencies computed in the graph), Mixtral (a TopK
router over SwiGLU experts) and a Longformer-style encoder (a sliding
window with global tokens, the mask holding 0 / 1 / 2).

Each is small (d 32 -- StableLM d 64 --, 4 heads, FFN 64, 2 layers,
vocabulary 64; images 16 x 16; audio of 20 S + 7 samples), seeded, with
PyTorch's outputs for two data sets (make_zoo.export: batch 2 of 7, the
second row padded; batch 3 of 5).

    /usr/bin/python3 make_zoo3.py [OUTDIR [PREFIX...]]

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
from make_zoo import export, ids_mask, repeat_kv, rotate_every_two
from make_zoo2 import causal_padding, images, padding_ext, rope

D, H, FF, L, VOCAB = 32, 4, 64, 2, 64
DH = D // H
FMIN = torch.finfo(torch.float32).min


def heads(x, n, dh):
    # [B, S, n * dh] -> [B, n, S, dh]
    b, s, _ = x.shape
    return x.view(b, s, n, dh).transpose(1, 2)


def merged(o):
    # [B, H, S, dh] -> [B, S, H * dh]
    b, h, s, dh = o.shape
    return o.transpose(1, 2).reshape(b, s, h * dh)


# ---------------------------------------------------------------- SigLIP ----

class SiglipLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer_norm1, self.layer_norm2 = nn.LayerNorm(D, eps=1e-6), nn.LayerNorm(D, eps=1e-6)
        self.q_proj, self.k_proj = nn.Linear(D, D), nn.Linear(D, D)
        self.v_proj, self.out_proj = nn.Linear(D, D), nn.Linear(D, D)
        self.fc1, self.fc2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x):
        h = self.layer_norm1(x)
        q, k, v = heads(self.q_proj(h), H, DH), heads(self.k_proj(h), H, DH), heads(self.v_proj(h), H, DH)
        att = F.softmax(torch.matmul(q, k.transpose(2, 3)) * DH ** -0.5, dim=-1, dtype=torch.float32)
        x = x + self.out_proj(merged(torch.matmul(att, v)))
        return x + self.fc2(gelu_new(self.fc1(self.layer_norm2(x))))


class Siglip(nn.Module):
    """SigLIP's vision tower: 4 x 4 patches by a Conv, learned positions by
    a position_ids buffer, pre-LN layers with tanh GELU, a post LayerNorm,
    then the multihead attention pooling head: one learned probe query
    repeated over the batch attends over the tokens (nn.MultiheadAttention,
    batch first), LayerNorm + MLP with a residual, row 0 pooled."""

    def __init__(self):
        super().__init__()
        self.patch_embedding = nn.Conv2d(3, D, 4, 4)
        self.position_embedding = nn.Embedding(16, D)
        self.register_buffer("position_ids", torch.arange(16)[None], persistent=False)
        self.layers = nn.ModuleList(SiglipLayer() for _ in range(L))
        self.post_layernorm = nn.LayerNorm(D, eps=1e-6)
        self.probe = nn.Parameter(torch.zeros(1, 1, D))
        self.attention = nn.MultiheadAttention(D, H, batch_first=True)
        self.layernorm = nn.LayerNorm(D, eps=1e-6)
        self.fc1, self.fc2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, pixel_values):
        x = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        x = x + self.position_embedding(self.position_ids)
        for layer in self.layers:
            x = layer(x)
        x = self.post_layernorm(x)
        probe = self.probe.repeat(x.shape[0], 1, 1)
        h = self.attention(probe, x, x)[0]
        h = h + self.fc2(gelu_new(self.fc1(self.layernorm(h))))
        return h[:, 0]


# ------------------------------------------------------------- SegFormer ----

class SegformerLayer(nn.Module):
    def __init__(self, sr):
        super().__init__()
        self.layer_norm_1, self.layer_norm_2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.query, self.key, self.value = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.sr, self.sr_norm = nn.Conv2d(D, D, sr, sr), nn.LayerNorm(D)
        self.dense = nn.Linear(D, D)
        self.dense1, self.dense2 = nn.Linear(D, FF), nn.Linear(FF, D)
        self.dwconv = nn.Conv2d(FF, FF, 3, 1, 1, groups=FF)

    def forward(self, x, hh, ww):
        b, n, c = x.shape
        h = self.layer_norm_1(x)
        q = heads(self.query(h), H, DH)
        # the sequence reduction: the tokens as an image, a Conv of stride sr
        r = self.sr(h.permute(0, 2, 1).reshape(b, c, hh, ww)).reshape(b, c, -1).permute(0, 2, 1)
        r = self.sr_norm(r)
        k, v = heads(self.key(r), H, DH), heads(self.value(r), H, DH)
        att = F.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(DH), dim=-1)
        x = x + self.dense(merged(torch.matmul(att, v)))
        # Mix-FFN: a depth-wise 3 x 3 Conv between the two Linear layers
        f = self.dense1(self.layer_norm_2(x))
        f = self.dwconv(f.transpose(1, 2).view(b, FF, hh, ww)).flatten(2).transpose(1, 2)
        return x + self.dense2(F.gelu(f))


class Segformer(nn.Module):
    """SegFormer (MiT stage 1): an overlapping patch embedding (Conv 3 x 3,
    stride 2, padding 1) and its LayerNorm, two layers of efficient
    attention (keys and values from the 8 x 8 tokens reduced to 4 x 4 by a
    Conv of stride 2 and a LayerNorm), Mix-FFN, a final LayerNorm, the mean
    of the tokens classified."""

    def __init__(self):
        super().__init__()
        self.proj, self.patch_norm = nn.Conv2d(3, D, 3, 2, 1), nn.LayerNorm(D)
        self.block = nn.ModuleList(SegformerLayer(2) for _ in range(L))
        self.layer_norm = nn.LayerNorm(D)
        self.classifier = nn.Linear(D, 10)

    def forward(self, pixel_values):
        e = self.proj(pixel_values)
        hh, ww = e.shape[2], e.shape[3]
        x = self.patch_norm(e.flatten(2).transpose(1, 2))
        for layer in self.block:
            x = layer(x, hh, ww)
        return self.classifier(self.layer_norm(x).mean(dim=1))


# -------------------------------------------------------------- Wav2Vec2 ----

class Wav2Vec2Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj, self.k_proj = nn.Linear(D, D), nn.Linear(D, D)
        self.v_proj, self.out_proj = nn.Linear(D, D), nn.Linear(D, D)
        self.layer_norm, self.final_layer_norm = nn.LayerNorm(D), nn.LayerNorm(D)
        self.intermediate_dense, self.output_dense = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x):
        b, s, _ = x.shape
        # Hugging Face's Wav2Vec2Attention: q scaled after its projection,
        # (B * H, S, d) bmm
        q = (self.q_proj(x) * DH ** -0.5).view(b, s, H, DH).transpose(1, 2).reshape(b * H, s, DH)
        k = self.k_proj(x).view(b, s, H, DH).transpose(1, 2).reshape(b * H, s, DH)
        v = self.v_proj(x).view(b, s, H, DH).transpose(1, 2).reshape(b * H, s, DH)
        att = F.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1)
        o = torch.bmm(att, v).view(b, H, s, DH).transpose(1, 2).reshape(b, s, D)
        x = self.layer_norm(x + self.out_proj(o))
        return self.final_layer_norm(x + self.output_dense(F.gelu(self.intermediate_dense(x))))


class Wav2Vec2(nn.Module):
    """Wav2Vec2-base (and HuBERT, the same encoder): raw audio through a
    Conv1d feature stack (the first Conv's GroupNorm of one group per
    channel, GELU after each), the features' LayerNorm and projection, the
    positional embedding a grouped Conv1d (weight-normed, an even kernel:
    its last frame removed) with GELU added to the features, a LayerNorm,
    post-LN layers."""

    def __init__(self):
        super().__init__()
        c = 16
        self.conv0, self.norm0 = nn.Conv1d(1, c, 10, 5, bias=False), nn.GroupNorm(c, c)
        self.conv1, self.conv2 = nn.Conv1d(c, c, 3, 2, bias=False), nn.Conv1d(c, c, 2, 2, bias=False)
        self.fp_norm, self.fp_proj = nn.LayerNorm(c), nn.Linear(c, D)
        self.pos_conv = nn.utils.weight_norm(nn.Conv1d(D, D, 4, padding=2, groups=4), name="weight", dim=2)
        self.layer_norm = nn.LayerNorm(D)
        self.layers = nn.ModuleList(Wav2Vec2Layer() for _ in range(L))

    def embed(self, input_values):
        """The feature stack, its projection and the positional Conv added
        (before the LayerNorm): SpeechT5's speech prenet too."""
        f = F.gelu(self.norm0(self.conv0(input_values[:, None])))
        f = F.gelu(self.conv2(F.gelu(self.conv1(f)))).transpose(1, 2)
        x = self.fp_proj(self.fp_norm(f))
        p = self.pos_conv(x.transpose(1, 2))[:, :, :-1]
        return x + F.gelu(p).transpose(1, 2)

    def forward(self, input_values):
        x = self.layer_norm(self.embed(input_values))
        for layer in self.layers:
            x = layer(x)
        return x


def audio(seed, samples=None):
    # 20 S + 7 samples (6 frames at S 7, 4 at S 5), or a fixed count
    def make(b, s):
        n = samples or 20 * s + 7
        return [torch.randn(b, n, generator=torch.Generator().manual_seed(seed + s))]
    return make


# ------------------------------------------------------------------- ESM ----

class EsmLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln, self.q, self.k, self.v = nn.LayerNorm(D), nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.dense, self.out_ln = nn.Linear(D, D), nn.LayerNorm(D)
        self.fc1, self.fc2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, cos, sin, ext):
        h = self.ln(x)
        q = heads(self.q(h), H, DH) * DH ** -0.5
        k, v = heads(self.k(h), H, DH), heads(self.v(h), H, DH)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        att = F.softmax(torch.matmul(q, k.transpose(-1, -2)) + ext, dim=-1)
        x = x + self.dense(merged(torch.matmul(att, v)))
        return x + self.fc2(F.gelu(self.fc1(self.out_ln(x))))


class Esm(nn.Module):
    """ESM-2: token embeddings zeroed on the padding (no positions table),
    pre-LN layers whose q is scaled before the rotate-half rotary (tables
    from the length), `(1 - m) * fmin`, erf GELU, emb_layer_norm_after."""

    def __init__(self):
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB, D)
        self.layer = nn.ModuleList(EsmLayer() for _ in range(L))
        self.emb_layer_norm_after = nn.LayerNorm(D)

    def forward(self, input_ids, attention_mask):
        x = self.word_embeddings(input_ids) * attention_mask.unsqueeze(-1).to(torch.float32)
        cos, sin = rope(input_ids.shape[1], DH)
        ext = padding_ext(attention_mask)
        for layer in self.layer:
            x = layer(x, cos, sin, ext)
        return self.emb_layer_norm_after(x)


# -------------------------------------------------------------- ChatGLM2 ----

def glm_rotary(x, cache):
    # ChatGLM2's apply_rotary_pos_emb: x [S, B, H, d], cache [S, 1, r / 2, 2]
    # (cos, sin): the first r dims turned in interleaved pairs, the rest
    # passed through
    sq, b, np_, _ = x.shape
    r = cache.shape[-2] * 2
    x, x_pass = x[..., :r], x[..., r:]
    xs = x.reshape(sq, -1, np_, r // 2, 2)
    c = cache.view(sq, -1, 1, xs.size(3), 2)
    out = torch.stack((xs[..., 0] * c[..., 0] - xs[..., 1] * c[..., 1],
                       xs[..., 1] * c[..., 0] + xs[..., 0] * c[..., 1]), -1).flatten(3)
    return torch.cat((out, x_pass), dim=-1)


class GlmBlock(nn.Module):
    def __init__(self, kv):
        super().__init__()
        self.kv = kv
        self.input_layernorm, self.post_attention_layernorm = RmsNorm(D, 1e-5), RmsNorm(D, 1e-5)
        self.query_key_value = nn.Linear(D, D + 2 * kv * DH)
        self.dense = nn.Linear(D, D, bias=False)
        self.dense_h_to_4h, self.dense_4h_to_h = nn.Linear(D, 2 * FF, bias=False), nn.Linear(FF, D, bias=False)

    def forward(self, x, cache, hide):
        s, b, _ = x.shape
        h = self.input_layernorm(x)
        qkv = self.query_key_value(h)
        q, k, v = qkv.split([D, self.kv * DH, self.kv * DH], dim=-1)
        q = glm_rotary(q.view(s, b, H, DH), cache)
        k = glm_rotary(k.view(s, b, self.kv, DH), cache)
        v = v.view(s, b, self.kv, DH)
        n = H // self.kv
        k = k.unsqueeze(-2).expand(-1, -1, -1, n, -1).contiguous().view(s, b, H, DH)
        v = v.unsqueeze(-2).expand(-1, -1, -1, n, -1).contiguous().view(s, b, H, DH)
        # CoreAttention without SDPA: [S, B, H, d] to [B * H, S, d], baddbmm
        # with alpha 1 / sqrt(d) over a buffer it ignores (ChatGLM's: an
        # empty one, beta 0; here zeros and beta 1, the same sum: torch
        # 1.13's CPU baddbmm with beta 0 reads its uninitialised result,
        # NaN now and then)
        qb = q.view(s, b * H, DH).transpose(0, 1)
        kb = k.view(s, b * H, DH).transpose(0, 1)
        scores = torch.baddbmm(torch.zeros(b * H, s, s), qb, kb.transpose(1, 2), beta=1.0,
                               alpha=1.0 / math.sqrt(DH)).view(b, H, s, s)
        scores = scores.masked_fill(hide, float("-inf"))
        p = F.softmax(scores.float(), dim=-1).view(b * H, s, s)
        o = torch.bmm(p, v.view(s, b * H, DH).transpose(0, 1)).view(b, H, s, DH)
        o = o.permute(2, 0, 1, 3).reshape(s, b, D)
        x = x + self.dense(o)
        g = self.dense_h_to_4h(self.post_attention_layernorm(x))
        a, c = torch.chunk(g, 2, dim=-1)
        return x + self.dense_4h_to_h(F.silu(a) * c)


class ChatGlm2(nn.Module):
    """ChatGLM2: the hidden states sequence first [S, B, D], RMSNorm,
    multi-query attention (one key / value head) from one biased
    query_key_value, rotary on half of each head in interleaved pairs from
    a [S, 1, r / 2, 2] cache, get_masks (causal times the padding, padded
    rows seeing everything, `< 0.5` as the bool to fill with -inf), SwiGLU
    from one Linear chunked in two, final RMSNorm, output_layer."""

    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(GlmBlock(1) for _ in range(L))
        self.final_layernorm = RmsNorm(D, 1e-5)
        self.output_layer = nn.Linear(D, VOCAB, bias=False)

    def forward(self, input_ids, attention_mask):
        b, s = input_ids.shape
        r = DH // 2
        theta = 1.0 / (10000 ** (torch.arange(0, r, 2, dtype=torch.float) / r))
        idx = torch.outer(torch.arange(s, dtype=torch.float), theta)
        cache = torch.stack([torch.cos(idx), torch.sin(idx)], dim=-1)[:, None]
        return self.blocks(input_ids, attention_mask, cache, b, s)

    def blocks(self, input_ids, attention_mask, cache, b, s):
        full = torch.ones(b, s, s).tril()
        m = attention_mask.float()
        full = full * m.unsqueeze(1)
        full -= m.unsqueeze(-1) - 1
        hide = (full < 0.5).unsqueeze(1)
        x = self.embedding(input_ids).transpose(0, 1)
        for layer in self.layers:
            x = layer(x, cache, hide)
        return self.output_layer(self.final_layernorm(x)).transpose(0, 1)


class ChatGlm2Pos(ChatGlm2):
    """ChatGLM2 as its modelling code feeds the cache: built once for the
    longest length (seq_length), gathered by position_ids [B, S] and
    transposed to [S, B, r / 2, 2]; two key / value groups (GQA, its
    multi_query_group_num 2); the padding on the left."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(GlmBlock(2) for _ in range(L))
        r = DH // 2
        theta = 1.0 / (10000 ** (torch.arange(0, r, 2, dtype=torch.float) / r))
        idx = torch.outer(torch.arange(16, dtype=torch.float), theta)
        self.register_buffer("rotary_cache", torch.stack([torch.cos(idx), torch.sin(idx)], dim=-1))

    def forward(self, input_ids, attention_mask):
        b, s = input_ids.shape
        position_ids = torch.arange(s).unsqueeze(0).expand(b, s)
        cache = self.rotary_cache[position_ids].transpose(0, 1).contiguous()
        return self.blocks(input_ids, attention_mask, cache, b, s)


# ----------------------------------------------- Phi-3, StableLM, Cohere ----

def rope_tables(s, dim, interleaved, base=10000.0):
    # cos, sin [S, dim] from the length; interleaved, each frequency twice
    # in a row as Cohere's repeat_interleave(freqs, 2) gives it, written as
    # stack + flatten (what newer exporters make of it: torch 1.13 writes a
    # Loop for repeat_interleave over a symbolic length)
    if not interleaved:
        return rope(s, dim, base)
    inv = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
    f = torch.outer(torch.arange(s).float(), inv)
    e = torch.stack((f, f), dim=-1).flatten(-2)
    return e.cos(), e.sin()


class Phi3Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_layernorm, self.post_attention_layernorm = RmsNorm(D, 1e-5), RmsNorm(D, 1e-5)
        self.qkv_proj, self.o_proj = nn.Linear(D, 3 * D, bias=False), nn.Linear(D, D, bias=False)
        self.gate_up_proj, self.down_proj = nn.Linear(D, 2 * FF, bias=False), nn.Linear(FF, D, bias=False)

    def forward(self, x, cos, sin, mask):
        qkv = self.qkv_proj(self.input_layernorm(x))
        q, k, v = qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:]
        q, k, v = heads(q, H, DH), heads(k, H, DH), heads(v, H, DH)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        att = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(DH) + mask
        att = F.softmax(att, dim=-1, dtype=torch.float32)
        x = x + self.o_proj(merged(torch.matmul(att, v)))
        gate, up = self.gate_up_proj(self.post_attention_layernorm(x)).chunk(2, dim=-1)
        return x + self.down_proj(up * F.silu(gate))


class StableLmBlock(nn.Module):
    D2, DH2 = 64, 16

    def __init__(self):
        super().__init__()
        d = self.D2
        self.input_layernorm, self.post_attention_layernorm = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.o_proj = nn.Linear(d, d, bias=False)
        self.gate_proj, self.up_proj = nn.Linear(d, FF, bias=False), nn.Linear(d, FF, bias=False)
        self.down_proj = nn.Linear(FF, d, bias=False)

    def forward(self, x, cos, sin, mask):
        h = self.input_layernorm(x)
        dh, r = self.DH2, cos.shape[-1]
        q, k, v = heads(self.q_proj(h), H, dh), heads(self.k_proj(h), H, dh), heads(self.v_proj(h), H, dh)
        q_rot, q_pass = q[..., :r], q[..., r:]
        k_rot, k_pass = k[..., :r], k[..., r:]
        q = torch.cat((q_rot * cos + rotate_half(q_rot) * sin, q_pass), dim=-1)
        k = torch.cat((k_rot * cos + rotate_half(k_rot) * sin, k_pass), dim=-1)
        att = F.softmax(torch.matmul(q, k.transpose(2, 3)) / math.sqrt(dh) + mask, dim=-1, dtype=torch.float32)
        x = x + self.o_proj(merged(torch.matmul(att, v)))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class CohereNorm(nn.Module):
    # Cohere's LayerNorm: mean and variance in float32, a weight, no bias;
    # of shape [H, d] it normalises each head of q or k with its own weight
    def __init__(self, shape):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(shape))

    def forward(self, x):
        x = x.to(torch.float32)
        mean = x.mean(-1, keepdim=True)
        var = (x - mean).pow(2).mean(-1, keepdim=True)
        return self.weight * ((x - mean) * torch.rsqrt(var + 1e-5))


class CohereBlock(nn.Module):
    def __init__(self, kv=2):
        super().__init__()
        self.kv = kv
        self.input_layernorm = CohereNorm(D)
        self.q_proj, self.k_proj = nn.Linear(D, D, bias=False), nn.Linear(D, kv * DH, bias=False)
        self.v_proj, self.o_proj = nn.Linear(D, kv * DH, bias=False), nn.Linear(D, D, bias=False)
        self.q_norm, self.k_norm = CohereNorm((H, DH)), CohereNorm((kv, DH))
        self.gate_proj, self.up_proj = nn.Linear(D, FF, bias=False), nn.Linear(D, FF, bias=False)
        self.down_proj = nn.Linear(FF, D, bias=False)

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_norm(self.q_proj(h).view(b, s, H, DH)).transpose(1, 2)
        k = self.k_norm(self.k_proj(h).view(b, s, self.kv, DH)).transpose(1, 2)
        v = heads(self.v_proj(h), self.kv, DH)
        q, k = q * cos + rotate_every_two(q) * sin, k * cos + rotate_every_two(k) * sin
        k, v = repeat_kv(k, H // self.kv), repeat_kv(v, H // self.kv)
        att = F.softmax(torch.matmul(q, k.transpose(2, 3)) / math.sqrt(DH) + mask, dim=-1, dtype=torch.float32)
        a = self.o_proj(merged(torch.matmul(att, v)))
        return x + a + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class RopeDecoder(nn.Module):
    """A decoder of `block`s, rotary tables of `rot` dims from the length
    (`interleaved` pairs or rotate-half), the causal + padding mask merged
    into [B, 1, S, S], a final `norm`; the head untied, or tied and its
    logits multiplied by `logit_scale`.
    Phi-3: qkv_proj one Linear sliced in three, gate_up_proj chunked,
    RMSNorm, full rotate-half rotary.
    StableLM: d 64, LayerNorm with bias, q / k / v biased, rotary on a
    quarter of each head (rotate-half), SwiGLU.
    Cohere: attention and MLP in parallel on one LayerNorm without bias,
    q and k each normalised per head by such a LayerNorm of weight [heads,
    d], GQA 4 / 2, interleaved rotary, tied logits times 0.0625."""

    def __init__(self, block, d, norm, rot, interleaved=False, logit_scale=None):
        super().__init__()
        self.rot, self.interleaved, self.logit_scale = rot, interleaved, logit_scale
        self.embed_tokens = nn.Embedding(VOCAB, d)
        self.layers = nn.ModuleList(block() for _ in range(L))
        self.norm = norm
        self.lm_head = None if logit_scale else nn.Linear(d, VOCAB, bias=False)

    def forward(self, input_ids, attention_mask):
        x = self.embed_tokens(input_ids)
        cos, sin = rope_tables(input_ids.shape[1], self.rot, self.interleaved)
        mask = causal_padding(attention_mask, input_ids.shape[1])
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        x = self.norm(x)
        if self.lm_head is None:
            return torch.matmul(x, self.embed_tokens.weight.t()) * self.logit_scale
        return self.lm_head(x)


# ------------------------------------------------- LLaMA-3 rope, Mixtral ----

def llama3_inv_freq(dim, base=500000.0, factor=8.0, low=1.0, high=4.0, original=8192):
    # LLaMA-3.1's rope scaling, computed in the graph: wavelengths below
    # original / high kept, above original / low divided by factor, between
    # them a smooth mix
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > original / low, inv / factor, inv)
    smooth = (original / wavelen - low) / (high - low)
    mixed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= original / high) & (wavelen <= original / low)
    return torch.where(medium, mixed, scaled)


class LlamaAttention(nn.Module):
    def __init__(self, kv=2):
        super().__init__()
        self.kv = kv
        self.q_proj, self.k_proj = nn.Linear(D, D, bias=False), nn.Linear(D, kv * DH, bias=False)
        self.v_proj, self.o_proj = nn.Linear(D, kv * DH, bias=False), nn.Linear(D, D, bias=False)

    def forward(self, x, cos, sin, mask):
        q, k, v = heads(self.q_proj(x), H, DH), heads(self.k_proj(x), self.kv, DH), heads(self.v_proj(x), self.kv, DH)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, H // self.kv), repeat_kv(v, H // self.kv)
        att = F.softmax(torch.matmul(q, k.transpose(2, 3)) / math.sqrt(DH) + mask, dim=-1, dtype=torch.float32)
        return self.o_proj(merged(torch.matmul(att, v)))


class SwiGlu(nn.Module):
    def __init__(self, ff=FF):
        super().__init__()
        self.w1, self.w3, self.w2 = nn.Linear(D, ff, bias=False), nn.Linear(D, ff, bias=False), nn.Linear(ff, D, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SparseMoe(nn.Module):
    """Mixtral's sparse MoE block: a router of 4 experts, softmax in
    float32, the top 2 kept and renormalised; written densely (every expert
    run, weighted by the routing scattered back to the 4), as an export
    can take it."""

    def __init__(self, experts=4, top=2):
        super().__init__()
        self.top = top
        self.gate = nn.Linear(D, experts, bias=False)
        self.experts = nn.ModuleList(SwiGlu(FF // 2) for _ in range(experts))

    def forward(self, x):
        routing = F.softmax(self.gate(x), dim=-1, dtype=torch.float)
        w, sel = torch.topk(routing, self.top, dim=-1)
        w = w / w.sum(dim=-1, keepdim=True)
        dense = torch.zeros_like(routing).scatter(-1, sel, w)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            out = out + dense[..., e:e + 1] * expert(x)
        return out


class LlamaLikeBlock(nn.Module):
    def __init__(self, mlp):
        super().__init__()
        self.input_layernorm, self.post_attention_layernorm = RmsNorm(D, 1e-5), RmsNorm(D, 1e-5)
        self.self_attn, self.mlp = LlamaAttention(), mlp()

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Llama3(nn.Module):
    """LLaMA-3.1 (GQA 4 / 2, RMSNorm) whose rotary frequencies are scaled
    in the graph (llama3_inv_freq, base 500000) and turned into tables by
    the positions of the attention mask's cumsum; `mlp` SwiGLU, or
    Mixtral's SparseMoe."""

    def __init__(self, mlp):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(LlamaLikeBlock(mlp) for _ in range(L))
        self.norm = RmsNorm(D, 1e-5)
        self.lm_head = nn.Linear(D, VOCAB, bias=False)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        pos = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 1)
        f = pos[:, :, None].float() * llama3_inv_freq(DH)[None, None, :]
        e = torch.cat((f, f), dim=-1)
        cos, sin = e.cos()[:, None], e.sin()[:, None]
        mask = causal_padding(attention_mask, s)
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.norm(x))


# ------------------------------------------------------------ Longformer ----

class Longformer(nn.Module):
    """A Longformer-style encoder (the local + global pattern of its
    attention; the global tokens through the same projections, where
    Longformer has its own for them): as LongformerModel takes them, an
    attention_mask (0 / 1) and a global_attention_mask (0 / 1) merged into
    one mask of 0 (padding), 1 (local) and 2 (global) by `m * (g + 1)`; a
    query sees the keys within `window` of it, every global key, and every
    key if it is global itself; BERT-style embeddings and post-LN layers."""

    def __init__(self, window=1):
        super().__init__()
        self.window = window
        self.word, self.position = nn.Embedding(VOCAB, D), nn.Embedding(16, D)
        self.ln = nn.LayerNorm(D)
        self.layer = nn.ModuleList(make_zoo.BertLayer("gelu") for _ in range(L))

    def forward(self, input_ids, attention_mask, global_attention_mask):
        s = input_ids.shape[1]
        m = attention_mask * (global_attention_mask + 1)
        i = torch.arange(s)
        local = (i[:, None] - i[None, :]).abs() <= self.window
        glob = m == 2
        see = local[None] | glob[:, :, None] | glob[:, None, :]
        see = see & (m > 0)[:, None, :]
        bias = torch.zeros(see.shape).masked_fill(~see, FMIN)[:, None]
        x = self.ln(self.word(input_ids) + self.position(i)[None])
        for layer in self.layer:
            x = layer(x, bias)
        return x


def ids_mask_global(seed):
    # the first token global, the rest local, the padding not attended
    def make(b, s):
        ids, mask = ids_mask(seed)(b, s)
        glob = torch.zeros_like(mask)
        glob[:, 0] = 1
        return [ids, mask, glob]
    return make


# ---------------------------------------------------------------- export ----

LM = ["input_ids", "attention_mask"]
IMAGES = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}
AUDIO = ["input_values"], ["last_hidden_state"]


def cases():
    """(name, model, seed, inputs, input names, output names, opset, export
    keywords) of each case, the models built in this order from seed 0."""
    phi3 = RopeDecoder(Phi3Block, D, RmsNorm(D, 1e-5), DH)
    stablelm = RopeDecoder(StableLmBlock, 64, nn.LayerNorm(64), 4)
    cohere = RopeDecoder(CohereBlock, D, CohereNorm(D), DH, interleaved=True, logit_scale=0.0625)
    frames = {"input_values": {0: "batch", 1: "samples"}, "last_hidden_state": {0: "batch", 1: "frames"}}
    return [
        ("z3_siglip_maphead_op14", Siglip(), 501, images(61), ["pixel_values"], ["logits"], 14,
         {"dynamic": IMAGES}),
        ("z3_segformer_srconv_op17", Segformer(), 502, images(62), ["pixel_values"], ["logits"], 17,
         {"dynamic": IMAGES}),
        ("z3_wav2vec2_posconv_op14", Wav2Vec2(), 503, audio(63), *AUDIO, 14, {"dynamic": frames}),
        ("z3_wav2vec2_fixedlen_op14", Wav2Vec2(), 512, audio(72, 147), *AUDIO, 14,
         {"dynamic": {"input_values": {0: "batch"}, "last_hidden_state": {0: "batch"}}}),
        ("z3_esm_rotary_enc_op15", Esm(), 504, ids_mask(64), LM, ["last_hidden_state"], 15, {}),
        ("z3_chatglm2_seqfirst_mqa_op14", ChatGlm2(), 505, ids_mask(65), LM, ["logits"], 14, {}),
        ("z3_phi3_fusedqkv_op16", phi3, 506, ids_mask(66), LM, ["logits"], 16, {}),
        ("z3_stablelm_partialrot_op15", stablelm, 507, ids_mask(67), LM, ["logits"], 15, {}),
        ("z3_cohere_qknorm_parallel_op17", cohere, 508, ids_mask(68), LM, ["logits"], 17, {}),
        ("z3_llama3_ropescale_nofold_op14", Llama3(SwiGlu), 509, ids_mask(69), LM, ["logits"], 14,
         {"fold": False}),
        ("z3_mixtral_moe_top2_op17", Llama3(SparseMoe), 510, ids_mask(70), LM, ["logits"], 17, {}),
        ("z3_longformer_global_op14", Longformer(), 511, ids_mask_global(71),
         LM + ["global_attention_mask"], ["last_hidden_state"], 14, {}),
        ("z3_chatglm2_poscache_gqa_leftpad_op17", ChatGlm2Pos(), 513, make_zoo.ids_mask_left(73), LM,
         ["logits"], 17, {}),
    ]


if __name__ == "__main__":
    make_zoo.PREFIXES.extend(sys.argv[2:])
    torch.manual_seed(0)
    for name, model, seed, make_inputs, ins, outs, opset, kw in cases():
        export(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)),
               name, model, seed, make_inputs, ins, outs, opset, **kw)
