#!/usr/bin/python3
"""Regenerate the model-family attention corpus (run from the project root):

    /usr/bin/python3 tests/data/families/generate.py [CASE_PREFIX...]

Writes one folder per case, <family>_<variant>_op<N>/, with model.onnx and
test_data_set_0/{input_K,output_K}.pb (ONNX TensorProto). With prefixes, only
the cases whose names start with one of them are written.

Each module below is written from the published architecture of its family
(the structure of the paper and of the reference implementation: how it
projects, forms heads, scales, masks and positions), in the idioms that
family's code uses, because those idioms are what the exporter turns into
the graphs an engine has to understand. The modules are exported by
PyTorch's own exporter (torch.onnx.export, constant folding on, dynamic batch
and sequence axes) and the expected outputs are PyTorch's. Two graphs come
from other exporters and are built with the onnx helper in the form those
exporters write (scaled_dot_product_attention decomposed; Keras
MultiHeadAttention through tf2onnx); their expected outputs come from a
float64 numpy computation of the same math.

PyTorch 1.13 exports up to opset 17 and Debian's onnx 1.12 knows no opset 18,
so the opset-18 cases are the opset-17 export rewritten by `to_opset18`
below (the only ops of these graphs that changed at 18 are Split, which
wants `num_outputs` when it has no `split` input, and the Reduce* ops other
than ReduceSum, whose `axes` became an input).

Needs Debian's python3-torch, python3-onnx and python3-numpy.
"""
import math
import os
import shutil
import sys
import warnings

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper, numpy_helper
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
FMIN = torch.finfo(torch.float32).min

# ---------------------------------------------------------------------------
# shared pieces
# ---------------------------------------------------------------------------


def randomize(module, seed):
    """Seeded weights large enough that softmax rows are far from uniform,
    and biases far from zero (so a dropped bias shows)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() >= 2 and "relative_attention_bias" not in name:
                std = 1.3 / math.sqrt(p.shape[-1] if p.shape[-1] < p.shape[0] else p.shape[0])
                p.copy_(torch.randn(p.shape, generator=g) * std)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return module.eval()


def padding_mask(batch, seq, lengths, dtype=torch.int64):
    """[B, S] 1 for a token, 0 for padding on the right (every row keeps a
    token, so no query row has all its keys masked)."""
    m = torch.zeros(batch, seq, dtype=dtype)
    for b, n in enumerate(lengths):
        m[b, :n] = 1
    return m


def rotate_half(x):
    """RoPE as GPT-NeoX / LLaMA write it: the two halves of the rotated dims."""
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def rotate_every_two(x):
    """RoPE as GPT-J writes it: pairs of neighbouring dims (interleaved)."""
    x1 = x[:, :, :, ::2]
    x2 = x[:, :, :, 1::2]
    x = torch.stack((-x2, x1), dim=-1)
    return x.flatten(-2)


def causal_tril(max_positions):
    """The bool [1, 1, max, max] lower triangle GPT-2, GPT-NeoX and GPT-J keep
    as a buffer and slice per call."""
    ones = torch.ones((max_positions, max_positions), dtype=torch.bool)
    return torch.tril(ones).view(1, 1, max_positions, max_positions)


def inverse_frequencies(dim, base=10000.0):
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))


# ---------------------------------------------------------------------------
# BERT / RoBERTa / ELECTRA / DistilBERT
# ---------------------------------------------------------------------------


class BertSelfAttention(nn.Module):
    """Separate Q/K/V Linear, heads by view+permute, scores / sqrt(d), the
    extended mask (1 - m[:, None, None, :]) * (finfo.min or -10000) added.
    The output dense of BertSelfOutput ends the layer."""

    def __init__(self, d_model, heads, mask_fill):
        super().__init__()
        self.heads, self.d_head = heads, d_model // heads
        self.all_head_size = heads * self.d_head
        self.query = nn.Linear(d_model, self.all_head_size)
        self.key = nn.Linear(d_model, self.all_head_size)
        self.value = nn.Linear(d_model, self.all_head_size)
        self.dense = nn.Linear(d_model, d_model)
        self.mask_fill = mask_fill

    def transpose_for_scores(self, x):
        new_shape = x.size()[:-1] + (self.heads, self.d_head)
        return x.view(new_shape).permute(0, 2, 1, 3)

    def forward(self, hidden_states, attention_mask):
        extended = attention_mask[:, None, None, :].to(dtype=hidden_states.dtype)
        extended = (1.0 - extended) * self.mask_fill
        q = self.transpose_for_scores(self.query(hidden_states))
        k = self.transpose_for_scores(self.key(hidden_states))
        v = self.transpose_for_scores(self.value(hidden_states))
        scores = torch.matmul(q, k.transpose(-1, -2))
        scores = scores / math.sqrt(self.d_head)
        scores = scores + extended
        probs = nn.functional.softmax(scores, dim=-1)
        context = torch.matmul(probs, v)
        context = context.permute(0, 2, 1, 3).contiguous()
        context = context.view(context.size()[:-2] + (self.all_head_size,))
        return self.dense(context)


class BertAttentionBlock(BertSelfAttention):
    """BertAttention as a whole: the self-attention, then BertSelfOutput's
    post-LN, LayerNorm(dense(context) + input)."""

    def __init__(self, d_model, heads, mask_fill):
        super().__init__(d_model, heads, mask_fill)
        self.LayerNorm = nn.LayerNorm(d_model, eps=1e-12)

    def forward(self, hidden_states, attention_mask):
        return self.LayerNorm(super().forward(hidden_states, attention_mask) + hidden_states)


class DistilBertAttention(nn.Module):
    """Q divided by sqrt(d) before the product; the padding mask applied with
    masked_fill(mask == 0, finfo.min) after expand_as."""

    def __init__(self, d_model, heads):
        super().__init__()
        self.heads, self.dim = heads, d_model
        self.q_lin = nn.Linear(d_model, d_model)
        self.k_lin = nn.Linear(d_model, d_model)
        self.v_lin = nn.Linear(d_model, d_model)
        self.out_lin = nn.Linear(d_model, d_model)

    def forward(self, x, mask):
        bs, q_length, dim = x.size()
        k_length = x.size(1)
        dim_per_head = self.dim // self.heads
        mask_reshp = (bs, 1, 1, k_length)

        def shape(t):
            return t.view(bs, -1, self.heads, dim_per_head).transpose(1, 2)

        def unshape(t):
            return t.transpose(1, 2).contiguous().view(bs, -1, self.heads * dim_per_head)

        q = shape(self.q_lin(x))
        k = shape(self.k_lin(x))
        v = shape(self.v_lin(x))
        q = q / math.sqrt(dim_per_head)
        scores = torch.matmul(q, k.transpose(2, 3))
        mask = (mask == 0).view(mask_reshp).expand_as(scores)
        scores = scores.masked_fill(mask, torch.tensor(torch.finfo(scores.dtype).min))
        weights = nn.functional.softmax(scores, dim=-1)
        context = unshape(torch.matmul(weights, v))
        return self.out_lin(context)


# ---------------------------------------------------------------------------
# GPT-2
# ---------------------------------------------------------------------------


class Conv1D(nn.Module):
    """GPT-2's projection: weight [in, out], applied with addmm on 2-D rows."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


class GPT2Attention(nn.Module):
    """Fused c_attn (Conv1D) split into Q, K, V; the causal tril buffer sliced
    [k-q:k, :k] and applied by torch.where; scores divided by a 0-d tensor;
    the model's extended padding mask (1 - m) * finfo.min added."""

    def __init__(self, d_model, heads, max_positions=16):
        super().__init__()
        self.heads, self.d_head, self.split_size = heads, d_model // heads, d_model
        self.register_buffer("bias", causal_tril(max_positions), persistent=False)
        self.c_attn = Conv1D(3 * d_model, d_model)
        self.c_proj = Conv1D(d_model, d_model)

    def _split_heads(self, t):
        new_shape = t.size()[:-1] + (self.heads, self.d_head)
        return t.view(new_shape).permute(0, 2, 1, 3)

    def _merge_heads(self, t):
        t = t.permute(0, 2, 1, 3).contiguous()
        return t.view(t.size()[:-2] + (self.heads * self.d_head,))

    def _attn(self, query, key, value, attention_mask):
        w = torch.matmul(query, key.transpose(-1, -2))
        w = w / torch.full([], value.size(-1) ** 0.5, dtype=w.dtype, device=w.device)
        query_length, key_length = query.size(-2), key.size(-2)
        causal_mask = self.bias[:, :, key_length - query_length : key_length, :key_length]
        mask_value = torch.full([], torch.finfo(w.dtype).min, dtype=w.dtype, device=w.device)
        w = torch.where(causal_mask, w.to(w.dtype), mask_value)
        if attention_mask is not None:
            w = w + attention_mask
        w = nn.functional.softmax(w, dim=-1)
        w = w.type(value.dtype)
        return torch.matmul(w, value)

    def forward(self, hidden_states, attention_mask=None):
        if attention_mask is not None:
            attention_mask = attention_mask[:, None, None, :].to(dtype=hidden_states.dtype)
            attention_mask = (1.0 - attention_mask) * torch.finfo(hidden_states.dtype).min
        query, key, value = self.c_attn(hidden_states).split(self.split_size, dim=2)
        query = self._split_heads(query)
        key = self._split_heads(key)
        value = self._split_heads(value)
        out = self._attn(query, key, value, attention_mask)
        return self.c_proj(self._merge_heads(out))


class GPT2CachedAttention(GPT2Attention):
    """A step with layer_past: the past K/V [B, H, P, d] concatenated before
    the new ones, so the causal slice [k-q:k, :k] selects the last q rows;
    the present K/V are outputs too. The padding mask covers past and new
    keys ([B, P + q])."""

    def forward(self, hidden_states, past_key, past_value, attention_mask):
        attention_mask = attention_mask[:, None, None, :].to(dtype=hidden_states.dtype)
        attention_mask = (1.0 - attention_mask) * torch.finfo(hidden_states.dtype).min
        query, key, value = self.c_attn(hidden_states).split(self.split_size, dim=2)
        query = self._split_heads(query)
        key = torch.cat((past_key, self._split_heads(key)), dim=-2)
        value = torch.cat((past_value, self._split_heads(value)), dim=-2)
        out = self._attn(query, key, value, attention_mask)
        return self.c_proj(self._merge_heads(out)), key, value


# ---------------------------------------------------------------------------
# GPT-NeoX / Pythia, GPT-J, Falcon
# ---------------------------------------------------------------------------


class NeoXRotary(nn.Module):
    """cos/sin tables [max_positions, dim] of the rotate-half form."""

    def __init__(self, dim, max_positions=16):
        super().__init__()
        t = torch.arange(max_positions, dtype=torch.float32)
        freqs = torch.einsum("i,j->ij", t, inverse_frequencies(dim))
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_cached", emb.cos(), persistent=False)
        self.register_buffer("sin_cached", emb.sin(), persistent=False)

    def forward(self, seq_len):
        return self.cos_cached[:seq_len], self.sin_cached[:seq_len]


class GPTNeoXAttention(nn.Module):
    """One QKV Linear whose output is interleaved per head ([.., H, 3*d]);
    rotary (rotate-half) on the first rotary_pct of each head's dims; scores
    by baddbmm with alpha = 1/sqrt(d) on (B*H, S, d); causal tril buffer and
    torch.where; the extended padding mask added."""

    def __init__(self, d_model, heads, rotary_pct, max_positions=16):
        super().__init__()
        self.heads, self.d_head = heads, d_model // heads
        self.rotary_ndims = int(self.d_head * rotary_pct)
        self.register_buffer("bias", causal_tril(max_positions), persistent=False)
        self.rotary_emb = NeoXRotary(self.rotary_ndims, max_positions)
        self.norm_factor = math.sqrt(self.d_head)
        self.query_key_value = nn.Linear(d_model, 3 * d_model)
        self.dense = nn.Linear(d_model, d_model)

    def forward(self, hidden_states, attention_mask=None):
        query, key, value = self.heads_of(hidden_states)
        query, key = self.rotate(query, key, lambda n: (
            torch.arange(n, dtype=torch.long).unsqueeze(0), n))
        return self.attend(query, key, value, attention_mask)

    def heads_of(self, hidden_states):
        """Q, K, V [B, H, S, d] from the per-head interleaved QKV."""
        qkv = self.query_key_value(hidden_states)
        new_shape = qkv.size()[:-1] + (self.heads, 3 * self.d_head)
        qkv = qkv.view(*new_shape)
        query = qkv[..., : self.d_head].permute(0, 2, 1, 3)
        key = qkv[..., self.d_head : 2 * self.d_head].permute(0, 2, 1, 3)
        value = qkv[..., 2 * self.d_head :].permute(0, 2, 1, 3)
        return query, key, value

    def rotate(self, query, key, positions_of):
        """Rotate-half on the first rotary_ndims dims at the positions
        position_ids, from the first seq_len rows of the tables:
        (position_ids, seq_len) = positions_of(new keys)."""
        query_rot, query_pass = query[..., : self.rotary_ndims], query[..., self.rotary_ndims :]
        key_rot, key_pass = key[..., : self.rotary_ndims], key[..., self.rotary_ndims :]
        position_ids, seq_len = positions_of(key.shape[-2])
        cos, sin = self.rotary_emb(seq_len)
        cos = cos[position_ids].unsqueeze(1)
        sin = sin[position_ids].unsqueeze(1)
        query = torch.cat((query_rot * cos + rotate_half(query_rot) * sin, query_pass), dim=-1)
        key = torch.cat((key_rot * cos + rotate_half(key_rot) * sin, key_pass), dim=-1)
        return query, key

    def attend(self, query, key, value, attention_mask):
        batch_size, num_heads, query_length, d_head = query.size()
        key_length = key.size(-2)
        causal_mask = self.bias[:, :, key_length - query_length : key_length, :key_length]
        query = query.reshape(batch_size * num_heads, query_length, d_head)
        key = key.reshape(batch_size * num_heads, key_length, d_head)
        scores = torch.zeros(batch_size * num_heads, query_length, key_length,
                             dtype=query.dtype, device=key.device)
        scores = torch.baddbmm(scores, query, key.transpose(1, 2), beta=1.0,
                               alpha=(1.0 / self.norm_factor))
        scores = scores.view(batch_size, num_heads, query_length, key_length)
        mask_value = torch.tensor(torch.finfo(scores.dtype).min, dtype=scores.dtype)
        scores = torch.where(causal_mask, scores, mask_value)
        if attention_mask is not None:
            ext = attention_mask[:, None, None, :].to(dtype=scores.dtype)
            scores = scores + (1.0 - ext) * torch.finfo(scores.dtype).min
        weights = nn.functional.softmax(scores, dim=-1).to(value.dtype)
        out = torch.matmul(weights, value)
        out = out.permute(0, 2, 1, 3).contiguous()
        out = out.view(out.size(0), out.size(1), num_heads * d_head)
        return self.dense(out)


class GPTNeoXCachedAttention(GPTNeoXAttention):
    """A GPT-NeoX step with layer_past: rotary on the new K at positions
    P .. P + q - 1, gathered from the first P + q rows of cos_cached (so
    the table rows start at the past length), K / V appended to the past
    [B, H, P, d] after the rotation; the tril slice [k-q:k, :k]."""

    def forward(self, hidden_states, past_key, past_value, attention_mask):
        query, key, value = self.heads_of(hidden_states)
        past_len = past_key.shape[-2]
        query, key = self.rotate(query, key, lambda n: (
            torch.arange(past_len, n + past_len, dtype=torch.long).unsqueeze(0), n + past_len))
        key = torch.cat((past_key, key), dim=-2)
        value = torch.cat((past_value, value), dim=-2)
        return self.attend(query, key, value, attention_mask), key, value


class GPTJAttention(nn.Module):
    """Separate Q/K/V without bias; interleaved rotary (rotate_every_two) on
    the first rotary_dim dims, sin/cos gathered from a sincos table by
    position and repeat_interleave'd; scores in float32 (casts), causal tril
    buffer and torch.where, divided by a scale buffer; out_proj without bias."""

    def __init__(self, d_model, heads, rotary_dim, max_positions=16):
        super().__init__()
        self.heads, self.d_head, self.rotary_dim = heads, d_model // heads, rotary_dim
        self.register_buffer("bias", causal_tril(max_positions), persistent=False)
        self.register_buffer("scale_attn",
                             torch.sqrt(torch.tensor(self.d_head, dtype=torch.float32)),
                             persistent=False)
        sinusoid = torch.einsum("i,j->ij", torch.arange(max_positions, dtype=torch.float32),
                                inverse_frequencies(rotary_dim))
        self.register_buffer("embed_positions",
                             torch.cat((torch.sin(sinusoid), torch.cos(sinusoid)), dim=1),
                             persistent=False)
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def _split_heads(self, t, rotary):
        t = t.view(t.size()[:-1] + (self.heads, self.d_head))
        return t if rotary else t.permute(0, 2, 1, 3)

    @staticmethod
    def _apply_rotary(t, sin, cos):
        sin = torch.repeat_interleave(sin[:, :, None, :], 2, 3)
        cos = torch.repeat_interleave(cos[:, :, None, :], 2, 3)
        return (t * cos) + (rotate_every_two(t) * sin)

    def forward(self, hidden_states, attention_mask):
        query, key, value = self.rotated(hidden_states, lambda n: torch.arange(
            n, dtype=torch.long).unsqueeze(0))
        return self.attend(query, key, value, attention_mask)

    def rotated(self, hidden_states, positions_of):
        """Q, K [B, H, S, d] rotated at positions_of(S) [1, S], V."""
        query = self._split_heads(self.q_proj(hidden_states), True)
        key = self._split_heads(self.k_proj(hidden_states), True)
        value = self._split_heads(self.v_proj(hidden_states), False)
        position_ids = positions_of(hidden_states.size(1))
        sincos = self.embed_positions[position_ids]
        sin, cos = torch.split(sincos, sincos.shape[-1] // 2, dim=-1)
        k_rot, k_pass = key[:, :, :, : self.rotary_dim], key[:, :, :, self.rotary_dim :]
        q_rot, q_pass = query[:, :, :, : self.rotary_dim], query[:, :, :, self.rotary_dim :]
        key = torch.cat([self._apply_rotary(k_rot, sin, cos), k_pass], dim=-1)
        query = torch.cat([self._apply_rotary(q_rot, sin, cos), q_pass], dim=-1)
        key = key.permute(0, 2, 1, 3)
        query = query.permute(0, 2, 1, 3)
        return query, key, value

    def attend(self, query, key, value, attention_mask):
        query_length, key_length = query.size(-2), key.size(-2)
        causal_mask = self.bias[:, :, key_length - query_length : key_length, :key_length]
        query = query.to(torch.float32)
        key = key.to(torch.float32)
        w = torch.matmul(query, key.transpose(-1, -2))
        mask_value = torch.tensor(torch.finfo(w.dtype).min, dtype=w.dtype).to(w.device)
        w = torch.where(causal_mask, w, mask_value)
        w = w / self.scale_attn
        ext = attention_mask[:, None, None, :].to(dtype=w.dtype)
        w = w + (1.0 - ext) * torch.finfo(w.dtype).min
        w = nn.functional.softmax(w, dim=-1).to(value.dtype)
        out = torch.matmul(w, value)
        out = out.permute(0, 2, 1, 3).contiguous()
        out = out.view(out.size()[:-2] + (self.heads * self.d_head,))
        return self.out_proj(out)


class GPTJCachedAttention(GPTJAttention):
    """A GPT-J step with layer_past: the interleaved rotary at positions
    P .. P + q - 1 (rows of the sincos table from the past length on), K /
    V appended to the past [B, H, P, d] after it; K cast to float32 after
    the concatenation (the exporter names that Cast present_key)."""

    def forward(self, hidden_states, past_key, past_value, attention_mask):
        past_len = past_key.shape[-2]
        query, key, value = self.rotated(hidden_states, lambda n: (torch.arange(
            n, dtype=torch.long) + past_len).unsqueeze(0))
        key = torch.cat((past_key, key), dim=-2)
        value = torch.cat((past_value, value), dim=-2)
        return self.attend(query, key, value, attention_mask), key, value


class FalconAttention(nn.Module):
    """Falcon-7B's multi-query form: one fused projection to H query heads,
    one K head and one V head ([.., H+2, d]); rotate-half rotary on
    (B*H, S, d); the single K/V head broadcast over the query heads; a bool
    causal mask (True = masked) applied with masked_fill."""

    def __init__(self, d_model, heads, max_positions=16):
        super().__init__()
        self.heads, self.d_head = heads, d_model // heads
        self.query_key_value = nn.Linear(d_model, d_model + 2 * self.d_head, bias=False)
        self.dense = nn.Linear(d_model, d_model, bias=False)
        self.rotary = NeoXRotary(self.d_head, max_positions)

    def forward(self, hidden_states):
        fused = self.query_key_value(hidden_states)
        batch_size, seq_length, _ = fused.shape
        fused = fused.view(batch_size, seq_length, self.heads + 2, self.d_head)
        query = fused[..., :-2, :]
        key = fused[..., [-2], :]
        value = fused[..., [-1], :]
        query = query.transpose(1, 2).reshape(batch_size * self.heads, seq_length, self.d_head)
        key = key.transpose(1, 2).reshape(batch_size, seq_length, self.d_head)
        value = value.transpose(1, 2).reshape(batch_size, seq_length, self.d_head)
        cos, sin = self.rotary(seq_length)
        query = query * cos + rotate_half(query) * sin
        key = key * cos + rotate_half(key) * sin
        query = query.view(batch_size, self.heads, seq_length, self.d_head)
        key = key.view(batch_size, 1, seq_length, self.d_head)
        value = value.view(batch_size, 1, seq_length, self.d_head)
        scores = query @ key.transpose(-1, -2)
        scores = scores / math.sqrt(self.d_head)
        causal = torch.ones((seq_length, seq_length), dtype=torch.bool).triu(diagonal=1)
        scores = scores.masked_fill(causal[None, None], torch.finfo(scores.dtype).min)
        probs = F.softmax(scores, dim=-1, dtype=hidden_states.dtype)
        out = (probs @ value).view(batch_size, self.heads, seq_length, self.d_head)
        out = out.permute(0, 2, 1, 3).reshape(batch_size, seq_length, self.heads * self.d_head)
        return self.dense(out)


# ---------------------------------------------------------------------------
# LLaMA / Mistral / Qwen2
# ---------------------------------------------------------------------------


def repeat_kv(hidden, n_rep):
    """[B, KV, S, d] -> [B, KV*n_rep, S, d] by expand + reshape."""
    batch, kv_heads, slen, d_head = hidden.shape
    if n_rep == 1:
        return hidden
    hidden = hidden[:, :, None, :, :].expand(batch, kv_heads, n_rep, slen, d_head)
    return hidden.reshape(batch, kv_heads * n_rep, slen, d_head)


class LlamaAttention(nn.Module):
    """Q/K/V/O Linear (bias on Q/K/V for Qwen2), grouped-query K/V; RoPE
    (rotate-half) with cos/sin from inv_freq x position_ids; repeat_kv; the
    model's 4-D additive mask: triu of finfo.min, padding folded in with
    masked_fill, optionally Mistral's sliding window; softmax in float32 then
    cast back."""

    def __init__(self, d_model, heads, kv_heads, qkv_bias=False, sliding_window=None):
        super().__init__()
        self.heads, self.kv_heads, self.d_head = heads, kv_heads, d_model // heads
        self.sliding_window = sliding_window
        self.q_proj = nn.Linear(d_model, heads * self.d_head, bias=qkv_bias)
        self.k_proj = nn.Linear(d_model, kv_heads * self.d_head, bias=qkv_bias)
        self.v_proj = nn.Linear(d_model, kv_heads * self.d_head, bias=qkv_bias)
        self.o_proj = nn.Linear(heads * self.d_head, d_model, bias=False)
        self.register_buffer("inv_freq", inverse_frequencies(self.d_head), persistent=False)

    def rotary(self, x, position_ids):
        inv_freq = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        freqs = (inv_freq @ position_ids[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    def causal_mask(self, attention_mask, dtype, q_len):
        min_dtype = torch.finfo(dtype).min
        mask = torch.full((q_len, q_len), fill_value=min_dtype, dtype=dtype)
        mask = torch.triu(mask, diagonal=1)
        if self.sliding_window is not None:
            outside = torch.tril(torch.ones_like(mask, dtype=torch.int64),
                                 diagonal=-self.sliding_window)
            mask = mask.masked_fill(outside.bool(), min_dtype)
        mask = mask[None, None, :, :].expand(attention_mask.shape[0], 1, -1, -1)
        padding = mask + attention_mask[:, None, None, :].to(dtype)
        return mask.masked_fill(padding == 0, min_dtype)

    def forward(self, hidden_states, attention_mask):
        bsz, q_len, _ = hidden_states.size()
        q = self.q_proj(hidden_states).view(bsz, q_len, self.heads, self.d_head).transpose(1, 2)
        k = self.k_proj(hidden_states).view(bsz, q_len, self.kv_heads, self.d_head).transpose(1, 2)
        v = self.v_proj(hidden_states).view(bsz, q_len, self.kv_heads, self.d_head).transpose(1, 2)
        position_ids = torch.arange(q_len, dtype=torch.long).unsqueeze(0).expand(bsz, -1)
        cos, sin = self.rotary(v, position_ids)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        return self.rotated_attention(q, k, v, cos, sin, attention_mask, hidden_states.dtype,
                                      bsz, q_len)

    def rotated_attention(self, q, k, v, cos, sin, attention_mask, dtype, bsz, q_len):
        """From the heads [B, H or KV, S, d] and the cos / sin [B, 1, S, d]
        on: RoPE, repeat_kv, the masked float32 softmax, o_proj."""
        q = (q * cos) + (rotate_half(q) * sin)
        k = (k * cos) + (rotate_half(k) * sin)
        k = repeat_kv(k, self.heads // self.kv_heads)
        v = repeat_kv(v, self.heads // self.kv_heads)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.d_head)
        w = w + self.causal_mask(attention_mask, dtype, q_len)
        w = nn.functional.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(w, v)
        out = out.transpose(1, 2).contiguous().reshape(bsz, q_len, -1)
        return self.o_proj(out)


class LlamaCachedAttention(LlamaAttention):
    """A step with a KV cache: positions (and so RoPE) start at the past
    length P; the cache holds K after RoPE and before repeat_kv ([B, KV, P,
    d]); the causal mask is finfo.min where key index > cache position, the
    padding mask covers past and new keys; the present K/V are outputs."""

    def rotated_heads(self, hidden_states, positions_of, position_ids=None):
        """Q, K, V heads [B, H or KV, q, d] with Q and K rotated at the
        positions positions_of(q_len) [q] (computed after the projections),
        or at the caller's position_ids [B, q] when given."""
        bsz, q_len, _ = hidden_states.size()
        q = self.q_proj(hidden_states).view(bsz, q_len, self.heads, self.d_head).transpose(1, 2)
        k = self.k_proj(hidden_states).view(bsz, q_len, self.kv_heads, self.d_head).transpose(1, 2)
        v = self.v_proj(hidden_states).view(bsz, q_len, self.kv_heads, self.d_head).transpose(1, 2)
        positions = positions_of(q_len)
        if position_ids is None:
            position_ids = positions.unsqueeze(0).expand(bsz, -1)
        cos, sin = self.rotary(v, position_ids)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q = (q * cos) + (rotate_half(q) * sin)
        k = (k * cos) + (rotate_half(k) * sin)
        return q, k, v, positions

    def forward(self, hidden_states, past_key, past_value, attention_mask, position_ids=None):
        bsz, q_len, _ = hidden_states.size()
        past_len = past_key.shape[2]
        q, k, v, cache_position = self.rotated_heads(
            hidden_states, lambda n: torch.arange(past_len, past_len + n, dtype=torch.long),
            position_ids)
        k = torch.cat([past_key, k], dim=-2)
        v = torch.cat([past_value, v], dim=-2)
        present_key, present_value = k, v
        k = repeat_kv(k, self.heads // self.kv_heads)
        v = repeat_kv(v, self.heads // self.kv_heads)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.d_head)

        target_length = attention_mask.shape[-1]
        min_dtype = torch.finfo(w.dtype).min
        mask = torch.full((q_len, target_length), fill_value=min_dtype, dtype=w.dtype)
        mask = mask * (torch.arange(target_length) > cache_position.reshape(-1, 1))
        mask = mask[None, None, :, :].expand(bsz, 1, -1, -1)
        padding = mask + attention_mask[:, None, None, :].to(w.dtype)
        mask = mask.masked_fill(padding == 0, min_dtype)
        w = w + mask
        w = nn.functional.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(w, v).transpose(1, 2).contiguous().reshape(bsz, q_len, -1)
        return self.o_proj(out), present_key, present_value


# ---------------------------------------------------------------------------
# T5
# ---------------------------------------------------------------------------


class T5Attention(nn.Module):
    """No 1/sqrt(d) scale; Q/K/V/O without bias; a per-head relative position
    bias looked up from bucketed relative positions (bidirectional buckets
    for the encoder, causal ones for the decoder), plus the extended padding
    mask (and the causal mask for the decoder) folded into the bias; softmax
    in float32 (type_as)."""

    def __init__(self, d_model, heads, d_head, is_decoder, num_buckets=8, max_distance=16):
        super().__init__()
        self.heads, self.d_head, self.is_decoder = heads, d_head, is_decoder
        self.num_buckets, self.max_distance = num_buckets, max_distance
        inner = heads * d_head
        self.q = nn.Linear(d_model, inner, bias=False)
        self.k = nn.Linear(d_model, inner, bias=False)
        self.v = nn.Linear(d_model, inner, bias=False)
        self.o = nn.Linear(inner, d_model, bias=False)
        self.relative_attention_bias = nn.Embedding(num_buckets, heads)

    @staticmethod
    def relative_position_bucket(relative_position, bidirectional, num_buckets, max_distance):
        relative_buckets = 0
        if bidirectional:
            num_buckets //= 2
            relative_buckets += (relative_position > 0).to(torch.long) * num_buckets
            relative_position = torch.abs(relative_position)
        else:
            relative_position = -torch.min(relative_position, torch.zeros_like(relative_position))
        max_exact = num_buckets // 2
        is_small = relative_position < max_exact
        if_large = max_exact + (
            torch.log(relative_position.float() / max_exact)
            / math.log(max_distance / max_exact) * (num_buckets - max_exact)).to(torch.long)
        if_large = torch.min(if_large, torch.full_like(if_large, num_buckets - 1))
        relative_buckets += torch.where(is_small, relative_position, if_large)
        return relative_buckets

    def compute_bias(self, query_length, key_length):
        context_position = torch.arange(query_length, dtype=torch.long)[:, None]
        memory_position = torch.arange(key_length, dtype=torch.long)[None, :]
        relative_position = memory_position - context_position
        buckets = self.relative_position_bucket(relative_position, not self.is_decoder,
                                                self.num_buckets, self.max_distance)
        values = self.relative_attention_bias(buckets)
        return values.permute([2, 0, 1]).unsqueeze(0)

    def forward(self, hidden_states, mask=None):
        batch_size, seq_length = hidden_states.shape[:2]

        def shape(t):
            return t.view(batch_size, -1, self.heads, self.d_head).transpose(1, 2)

        def unshape(t):
            return t.transpose(1, 2).contiguous().view(batch_size, -1, self.heads * self.d_head)

        q = shape(self.q(hidden_states))
        k = shape(self.k(hidden_states))
        v = shape(self.v(hidden_states))
        scores = torch.matmul(q, k.transpose(3, 2))
        if hasattr(self, "folded_bias"):
            position_bias = self.folded_bias
        else:
            position_bias = self.compute_bias(seq_length, seq_length)
        if mask is None:
            mask = torch.ones(batch_size, seq_length, dtype=torch.int64)
        ext = mask[:, None, None, :].to(dtype=scores.dtype)
        if self.is_decoder:
            seq_ids = torch.arange(seq_length)
            causal = (seq_ids[None, None, :].repeat(batch_size, seq_length, 1)
                      <= seq_ids[None, :, None])
            ext = causal.to(scores.dtype)[:, None, :, :] * ext
        position_bias = position_bias + (1.0 - ext) * torch.finfo(scores.dtype).min
        scores += position_bias
        weights = nn.functional.softmax(scores.float(), dim=-1).type_as(scores)
        out = unshape(torch.matmul(weights, v))
        return self.o(out)


# ---------------------------------------------------------------------------
# BLOOM / MPT (ALiBi)
# ---------------------------------------------------------------------------


class BloomAttention(nn.Module):
    """Fused QKV interleaved per head ([.., H, 3, d]); ALiBi built from the
    padding mask (slope x (cumsum(m) - 1) * m, one row per (B*H)) and added
    by alibi.baddbmm(q, k^T, alpha = 1/sqrt(d)); the bool causal|padding mask
    applied with masked_fill(finfo.min); softmax in float32; bmm for P.V."""

    def __init__(self, d_model, heads):
        super().__init__()
        self.heads, self.d_head = heads, d_model // heads
        self.inv_norm_factor = 1.0 / math.sqrt(self.d_head)
        self.query_key_value = nn.Linear(d_model, 3 * d_model)
        self.dense = nn.Linear(d_model, d_model)

    def apply_mask(self, scores, masked):
        return torch.masked_fill(scores, masked, torch.finfo(scores.dtype).min)

    def build_alibi(self, attention_mask, dtype):
        batch_size, seq_length = attention_mask.shape
        closest_power_of_2 = 2 ** math.floor(math.log2(self.heads))
        base = torch.tensor(2 ** (-(2 ** -(math.log2(closest_power_of_2) - 3))),
                            dtype=torch.float32)
        powers = torch.arange(1, 1 + closest_power_of_2, dtype=torch.int32)
        slopes = torch.pow(base, powers)
        if closest_power_of_2 != self.heads:  # the ALiBi recipe for other head counts
            extra_base = torch.tensor(2 ** (-(2 ** -(math.log2(2 * closest_power_of_2) - 3))),
                                      dtype=torch.float32)
            remaining = min(closest_power_of_2, self.heads - closest_power_of_2)
            extra_powers = torch.arange(1, 1 + 2 * remaining, 2, dtype=torch.int32)
            slopes = torch.cat([slopes, torch.pow(extra_base, extra_powers)], dim=0)
        arange_tensor = ((attention_mask.cumsum(dim=-1) - 1) * attention_mask)[:, None, :]
        alibi = slopes[..., None] * arange_tensor
        return alibi.reshape(batch_size * self.heads, 1, seq_length).to(dtype)

    def forward(self, hidden_states, attention_mask):
        def masked(q_length):
            causal = torch.ones((q_length, q_length), dtype=torch.bool).triu(diagonal=1)
            return causal[None, None, :, :] | ~attention_mask.bool()[:, None, None, :]

        return self.attend(hidden_states,
                           lambda: self.build_alibi(attention_mask, hidden_states.dtype), masked)

    def attend(self, hidden_states, alibi_of, masked_of):
        """The layer from the heads on; alibi_of() gives the ALiBi tensor
        [B*H, 1, S], masked_of(S) the bool mask (True = hidden)."""
        batch_size, q_length, _ = hidden_states.shape
        fused = self.query_key_value(hidden_states)
        fused = fused.view(batch_size, q_length, self.heads, 3, self.d_head)
        query, key, value = fused[..., 0, :], fused[..., 1, :], fused[..., 2, :]
        query = query.transpose(1, 2).reshape(batch_size * self.heads, q_length, self.d_head)
        key = key.permute(0, 2, 3, 1).reshape(batch_size * self.heads, self.d_head, q_length)
        value = value.transpose(1, 2).reshape(batch_size * self.heads, q_length, self.d_head)
        alibi = alibi_of()
        scores = alibi.baddbmm(batch1=query, batch2=key, beta=1.0, alpha=self.inv_norm_factor)
        scores = scores.view(batch_size, self.heads, q_length, q_length)
        scores = self.apply_mask(scores, masked_of(q_length))
        probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
        probs = probs.view(batch_size * self.heads, q_length, q_length)
        context = torch.bmm(probs, value)
        context = context.view(batch_size, self.heads, q_length, self.d_head)
        context = context.permute(0, 2, 1, 3)
        context = context.reshape(batch_size, q_length, self.heads * self.d_head)
        return self.dense(context)


class MPTAttention(nn.Module):
    """Wqkv chunked in three (not per head); K formed as [B, H, d, S]; scores
    times softmax_scale; ALiBi from a [1, H, 1, max] buffer of slope x
    (j - max + 1), sliced to the last S keys; padding and causal masks by
    masked_fill(finfo.min)."""

    def __init__(self, d_model, heads, max_seq_len=16, alibi_bias_max=8):
        super().__init__()
        self.heads, self.d_head = heads, d_model // heads
        self.softmax_scale = 1.0 / math.sqrt(self.d_head)
        self.Wqkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)
        n = 2 ** math.ceil(math.log2(heads))
        m = torch.arange(1, n + 1, dtype=torch.float32) * (alibi_bias_max / n)
        slopes = 1.0 / torch.pow(2, m)
        if n != heads:  # gen_slopes for other head counts: odd ones first, cut to H
            slopes = torch.cat([slopes[1::2], slopes[::2]])[:heads]
        distance = torch.arange(1 - max_seq_len, 1, dtype=torch.float32).view(1, 1, 1, max_seq_len)
        self.register_buffer("attn_bias", distance * slopes.view(1, heads, 1, 1),
                             persistent=False)

    def forward(self, x, attention_mask):
        b, s, _ = x.shape
        qkv = self.Wqkv(x)
        query, key, value = qkv.chunk(3, dim=2)
        q = query.view(b, s, self.heads, self.d_head).permute(0, 2, 1, 3)
        k = key.view(b, s, self.heads, self.d_head).permute(0, 2, 3, 1)
        v = value.view(b, s, self.heads, self.d_head).permute(0, 2, 1, 3)
        w = q.matmul(k) * self.softmax_scale
        s_k = k.size(-1)
        w = w + self.attn_bias[:, :, :, -s_k:]
        min_val = torch.finfo(w.dtype).min
        key_padding_mask = attention_mask.bool()
        w = w.masked_fill(~key_padding_mask.view((b, 1, 1, s_k)), min_val)
        mask = w.new_ones(s, s_k, dtype=torch.float16).tril()
        w = w.masked_fill(~mask.to(torch.bool).view(1, 1, s, s_k), min_val)
        w = torch.softmax(w, dim=-1)
        out = w.matmul(v).permute(0, 2, 1, 3).reshape(b, s, self.heads * self.d_head)
        return self.out_proj(out)


# ---------------------------------------------------------------------------
# Whisper / BART / Marian, CLIP text
# ---------------------------------------------------------------------------


class BartStyleAttention(nn.Module):
    """Q scaled right after its projection; heads by view+transpose, then the
    (B*H, S, d) bmm layout; masks added as [B, 1, Sq, Sk] after a view to
    [B, H, Sq, Sk]; cross-attention takes K/V from the encoder states.
    Whisper's k_proj has no bias; BART's, Marian's and CLIP's do."""

    def __init__(self, d_model, heads, k_bias):
        super().__init__()
        self.heads, self.d_head, self.embed_dim = heads, d_model // heads, d_model
        self.scaling = self.d_head ** -0.5
        self.k_proj = nn.Linear(d_model, d_model, bias=k_bias)
        self.v_proj = nn.Linear(d_model, d_model)
        self.q_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def _shape(self, t, seq_len, bsz):
        return t.view(bsz, seq_len, self.heads, self.d_head).transpose(1, 2).contiguous()

    def attend(self, hidden_states, key_value_states, masks):
        bsz, tgt_len, _ = hidden_states.size()
        query_states = self.q_proj(hidden_states) * self.scaling
        source = hidden_states if key_value_states is None else key_value_states
        key_states = self._shape(self.k_proj(source), -1, bsz)
        value_states = self._shape(self.v_proj(source), -1, bsz)
        return self.attend_heads(query_states, key_states, value_states, masks, bsz, tgt_len)

    def attend_heads(self, query_states, key_states, value_states, masks, bsz, tgt_len):
        """From the scaled queries [B, S, D] and the K / V heads [B, H, S, d]
        on: the (B*H, S, d) bmm layout, the masks, out_proj."""
        proj_shape = (bsz * self.heads, -1, self.d_head)
        query_states = self._shape(query_states, tgt_len, bsz).view(*proj_shape)
        key_states = key_states.reshape(*proj_shape)
        value_states = value_states.reshape(*proj_shape)
        src_len = key_states.size(1)
        attn_weights = torch.bmm(query_states, key_states.transpose(1, 2))
        for mask in masks:
            attn_weights = attn_weights.view(bsz, self.heads, tgt_len, src_len) + mask
            attn_weights = attn_weights.view(bsz * self.heads, tgt_len, src_len)
        attn_weights = nn.functional.softmax(attn_weights, dim=-1)
        attn_output = torch.bmm(attn_weights, value_states)
        attn_output = attn_output.view(bsz, self.heads, tgt_len, self.d_head)
        attn_output = attn_output.transpose(1, 2)
        attn_output = attn_output.reshape(bsz, tgt_len, self.embed_dim)
        return self.out_proj(attn_output)


def make_causal_mask(bsz, tgt_len, dtype):
    """BART / Whisper decoders: [B, 1, T, T] of 0 on and below the diagonal,
    finfo.min above, built with masked_fill_ on a full tensor."""
    mask = torch.full((tgt_len, tgt_len), torch.finfo(dtype).min)
    mask_cond = torch.arange(mask.size(-1))
    mask.masked_fill_(mask_cond < (mask_cond + 1).view(mask.size(-1), 1), 0)
    return mask.to(dtype)[None, None, :, :].expand(bsz, 1, tgt_len, tgt_len)


def expand_mask(mask, dtype, tgt_len):
    """BART / CLIP: [B, S] 1/0 -> [B, 1, T, S] of 0 / finfo.min."""
    bsz, src_len = mask.size()
    expanded = mask[:, None, None, :].expand(bsz, 1, tgt_len, src_len).to(dtype)
    inverted = 1.0 - expanded
    return inverted.masked_fill(inverted.to(torch.bool), torch.finfo(dtype).min)


class DecoderSelfAttention(BartStyleAttention):
    """Whisper / BART decoder self-attention: causal, plus padding when a mask is given."""

    def forward(self, hidden_states, attention_mask=None):
        bsz, tgt_len, _ = hidden_states.size()
        mask = make_causal_mask(bsz, tgt_len, hidden_states.dtype)
        if attention_mask is not None:
            mask = mask + expand_mask(attention_mask, hidden_states.dtype, tgt_len)
        return self.attend(hidden_states, None, [mask])


class BartCachedSelfAttention(BartStyleAttention):
    """A BART / OPT decoder step with a KV cache and no rotary: K and V
    [B, H, S, d] from _shape appended to past_key / past_value [B, H, P, d]
    before the (B*H, S, d) bmm layout; the causal mask of the new rows is
    the decoders' masked_fill_ form, with zeros for the P cached keys
    concatenated in front (left), plus the expanded padding mask over the
    P + S keys; the present K/V are outputs."""

    def forward(self, hidden_states, past_key, past_value, attention_mask):
        bsz, tgt_len, _ = hidden_states.size()
        past_len = past_key.size(2)
        query_states = self.q_proj(hidden_states) * self.scaling
        key_states = torch.cat([past_key, self._shape(self.k_proj(hidden_states), -1, bsz)], dim=2)
        value_states = torch.cat([past_value, self._shape(self.v_proj(hidden_states), -1, bsz)],
                                 dim=2)
        causal = make_causal_mask(bsz, tgt_len, hidden_states.dtype)[0, 0]
        causal = torch.cat([torch.zeros(tgt_len, past_len, dtype=causal.dtype), causal], dim=-1)
        mask = causal[None, None, :, :].expand(bsz, 1, tgt_len, past_len + tgt_len)
        mask = mask + expand_mask(attention_mask, hidden_states.dtype, tgt_len)
        out = self.attend_heads(query_states, key_states, value_states, [mask], bsz, tgt_len)
        return out, key_states, value_states


class EncoderSelfAttention(BartStyleAttention):
    """Whisper's encoder and CLIP's vision tower: no mask at all."""

    def forward(self, hidden_states):
        return self.attend(hidden_states, None, [])


class CrossAttention(BartStyleAttention):
    """Decoder states attend to encoder states (another length); the
    encoder's padding mask when given."""

    def forward(self, hidden_states, encoder_hidden_states, encoder_attention_mask=None):
        masks = []
        if encoder_attention_mask is not None:
            masks.append(expand_mask(encoder_attention_mask, hidden_states.dtype,
                                     hidden_states.size(1)))
        return self.attend(hidden_states, encoder_hidden_states, masks)


class CLIPTextAttention(BartStyleAttention):
    """CLIP's text tower: the causal mask (empty().fill_(min).triu_(1)) and
    the padding mask are two separate additions."""

    def forward(self, hidden_states, attention_mask):
        bsz, seq_len, _ = hidden_states.size()
        causal = torch.empty(bsz, seq_len, seq_len, dtype=hidden_states.dtype)
        causal.fill_(torch.finfo(hidden_states.dtype).min)
        causal.triu_(1)
        causal = causal.unsqueeze(1)
        padding = expand_mask(attention_mask, hidden_states.dtype, seq_len)
        return self.attend(hidden_states, None, [causal, padding])


# ---------------------------------------------------------------------------
# ViT / DeiT, nn.MultiheadAttention
# ---------------------------------------------------------------------------


class ViTAttention(nn.Module):
    """One QKV Linear, reshape(B, N, 3, H, d).permute(2, 0, 3, 1, 4), unbind;
    scores times d**-0.5; no mask."""

    def __init__(self, dim, heads, qkv_bias):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class TorchMHAWeights(nn.Module):
    """nn.MultiheadAttention with need_weights=True: the layer output and the
    attention weights (averaged over heads, or per head) as a second output.
    Masks are bool, True = masked."""

    def __init__(self, d_model, heads, average):
        super().__init__()
        self.mha = nn.MultiheadAttention(d_model, heads, batch_first=True)
        self.average = average

    def forward(self, x, mask):
        if mask.dim() == 2 and self.average:  # attn_mask [S, S]
            return self.mha(x, x, x, attn_mask=mask, need_weights=True)
        return self.mha(x, x, x, key_padding_mask=mask, need_weights=True,
                        average_attn_weights=self.average)


# ---------------------------------------------------------------------------
# export and files
# ---------------------------------------------------------------------------


def to_opset18(model):
    """Rewrites an opset-17 graph for opset 18 (see the module comment)."""
    reduce_ops = {"ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                  "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"}
    for i, node in enumerate(model.graph.node):
        if node.op_type in reduce_ops:
            axes = [a for a in node.attribute if a.name == "axes"]
            if axes:
                name = f"opset18_axes_{i}"
                model.graph.initializer.append(
                    numpy_helper.from_array(np.array(axes[0].ints, dtype=np.int64), name))
                node.input.append(name)
                node.attribute.remove(axes[0])
        if node.op_type == "Split" and len(node.input) < 2:
            node.attribute.append(helper.make_attribute("num_outputs", len(node.output)))
        if node.op_type in ("Pad", "Resize", "ScatterND", "ScatterElements", "LpPool",
                            "GroupNormalization", "Col2Im", "CenterCropPad"):
            raise RuntimeError(f"to_opset18: {node.op_type} would need a rewrite")
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = 18
    return model


PREFIXES = []  # case-name prefixes from the command line (empty: every case)
FACTS = {}  # case -> (opset, d_model, heads, kv_heads, d_head), for cases.tsv


def write_case(name, model, datasets, facts):
    """datasets: one (inputs, outputs) per test_data_set_K, each a list of
    (graph name, numpy array) in graph order; facts: (d_model, heads,
    kv_heads, d_head) of the layer as written."""
    opset = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")][0]
    FACTS[name] = (opset,) + tuple(facts)
    if PREFIXES and not any(name.startswith(p) for p in PREFIXES):
        return
    out = os.path.join(HERE, name)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    onnx.save(model, os.path.join(out, "model.onnx"))
    for k, (inputs, outputs) in enumerate(datasets):
        folder = os.path.join(out, f"test_data_set_{k}")
        os.makedirs(folder)
        for kind, items in (("input", inputs), ("output", outputs)):
            for i, (tname, arr) in enumerate(items):
                tensor = numpy_helper.from_array(np.ascontiguousarray(arr), tname)
                with open(os.path.join(folder, f"{kind}_{i}.pb"), "wb") as f:
                    f.write(tensor.SerializeToString())
    print("wrote", name)


def module_facts(module, d_model):
    """(d_model, heads, kv_heads, d_head) from the module's own attributes."""
    if isinstance(module, TorchMHAWeights):
        return d_model, module.mha.num_heads, module.mha.num_heads, module.mha.head_dim
    if isinstance(module, FalconAttention):
        return d_model, module.heads, 1, module.d_head
    d_head = getattr(module, "d_head", d_model // module.heads)
    return d_model, module.heads, getattr(module, "kv_heads", module.heads), d_head


def export_torch(name, module, datasets, input_names, output_names, dynamic_axes, opset):
    """Exports `module` at `opset` (18: exported at 17 then rewritten) with
    the first argument tuple of `datasets`, and writes the case with
    PyTorch's outputs for each of them."""
    path = os.path.join(HERE, ".export.onnx")
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        expected = [module(*args) for args in datasets]
        torch.onnx.export(module, datasets[0], path, input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes,
                          opset_version=min(opset, 17), do_constant_folding=True)
    model = onnx.load(path)
    os.remove(path)
    if opset == 18:
        model = to_opset18(model)
    else:
        onnx.checker.check_model(model, full_check=True)
    sets = []
    for args, outs in zip(datasets, expected):
        outs = outs if isinstance(outs, tuple) else (outs,)
        sets.append(([(n, a.numpy()) for n, a in zip(input_names, args)],
                     [(n, o.detach().numpy()) for n, o in zip(output_names, outs)]))
    write_case(name, model, sets, module_facts(module, datasets[0][0].shape[-1]))


def x_input(seed, batch, seq, d_model):
    return torch.randn(batch, seq, d_model, generator=torch.Generator().manual_seed(seed))


def second_lengths(seq):
    """Padding of the second data set (batch 3): full, half, two tokens."""
    return [seq, max(1, seq // 2), 2]


SELF = {"hidden_states": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
        "output": {0: "batch", 1: "seq"}}


def self_case(name, module, seed, d_model, seq, lengths, mask_dtype, opsets, lengths1=None):
    """A self-attention layer with inputs hidden_states [B, S, D] and (when
    lengths is not None) attention_mask [B, S] of mask_dtype. Data set 0 is
    batch 2 of `seq` tokens with `lengths`; data set 1 batch 3 of seq + 3
    (with lengths1, or second_lengths)."""
    randomize(module, seed)
    names = ["hidden_states"] + (["attention_mask"] if lengths is not None else [])
    datasets = []
    shapes = ((2, seq, lengths), (3, seq + 3, lengths1 or second_lengths(seq + 3)))
    for k, (batch, n, lens) in enumerate(shapes):
        args = (x_input(seed + 1 + k, batch, n, d_model),)
        if lengths is not None:
            args += (padding_mask(batch, n, lens, mask_dtype),)
        datasets.append(args)
    for opset in opsets:
        export_torch(f"{name}_op{opset}", module, datasets, names, ["output"],
                     {k: v for k, v in SELF.items() if k in names}, opset)


CACHED_AXES = {"hidden_states": {0: "batch", 1: "seq"}, "past_key": {0: "batch", 2: "past"},
               "past_value": {0: "batch", 2: "past"}, "attention_mask": {0: "batch", 1: "total"},
               "output": {0: "batch", 1: "seq"}, "present_key": {0: "batch", 2: "total"},
               "present_value": {0: "batch", 2: "total"}}


def cached_case(name, module, seed, d_model, opsets, shapes):
    """One KV-cache step module exported at `opsets`: inputs hidden_states
    [B, q, D], past_key and past_value [B, KV, P, d], attention_mask
    [B, P + q] (left padding, as batched generation pads); outputs the
    layer's output and the present K/V [B, KV, P + q, d]. shapes: one
    (batch, P, q, pads) per data set."""
    names = ["hidden_states", "past_key", "past_value", "attention_mask"]
    randomize(module, seed)
    kv_heads = getattr(module, "kv_heads", module.heads)
    g = torch.Generator().manual_seed(seed + 1)
    datasets = []
    for batch, past, q_len, pads in shapes:
        mask = torch.ones(batch, past + q_len, dtype=torch.int64)
        for b, pad in enumerate(pads):
            mask[b, :pad] = 0
        datasets.append((
            torch.randn(batch, q_len, d_model, generator=g),
            torch.randn(batch, kv_heads, past, module.d_head, generator=g) * 1.5,
            torch.randn(batch, kv_heads, past, module.d_head, generator=g),
            mask))
    for opset in opsets:
        export_torch(f"{name}_op{opset}", module, datasets, names,
                     ["output", "present_key", "present_value"], CACHED_AXES, opset)


def cached_cases():
    """Steps with a KV cache. Data set 0: batch 2, P 5, q 3 (a prompt
    chunk); data set 1: batch 3, P 7, q 1 (one decoded token)."""
    shapes = ((2, 5, 3, [0, 2]), (3, 7, 1, [0, 3, 6]))
    cached_case("gpt2_kvcache", GPT2CachedAttention(32, 4), 22, 32, (14, 17), shapes)
    cached_case("llama_kvcache", LlamaCachedAttention(64, 8, 2), 43, 64, (15, 18), shapes)


class MistralCachedAttention(LlamaCachedAttention):
    """A Mistral step with a KV cache: multi-query K/V (one head, repeat_kv
    after the concatenation), RoPE at positions P .. P + q - 1, and the
    sliding window moving with them: key j is hidden when j > P + i or
    j <= P + i - window; padding folded in by masked_fill as LLaMA does."""

    def forward(self, hidden_states, past_key, past_value, attention_mask):
        bsz, q_len, _ = hidden_states.size()
        past_len = past_key.shape[2]
        q, k, v, positions = self.rotated_heads(
            hidden_states, lambda n: torch.arange(n, dtype=torch.long) + past_len)
        present_key = torch.cat([past_key, k], dim=-2)
        present_value = torch.cat([past_value, v], dim=-2)
        k = repeat_kv(present_key, self.heads // self.kv_heads)
        v = repeat_kv(present_value, self.heads // self.kv_heads)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.d_head)
        total = attention_mask.shape[-1]
        key_pos = torch.arange(total)[None, :]
        hidden = (key_pos > positions[:, None]) | (key_pos <= positions[:, None] - self.sliding_window)
        min_dtype = torch.finfo(w.dtype).min
        mask = torch.zeros(q_len, total, dtype=w.dtype).masked_fill(hidden, min_dtype)
        mask = mask[None, None, :, :].expand(bsz, 1, -1, -1)
        padding = mask + attention_mask[:, None, None, :].to(w.dtype)
        w = w + mask.masked_fill(padding == 0, min_dtype)
        w = nn.functional.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        out = torch.matmul(w, v).transpose(1, 2).contiguous().reshape(bsz, q_len, -1)
        return self.o_proj(out), present_key, present_value


def more_cached_cases():
    """The cache without rotary in BART's (B*H, S, d) layout, Mistral's
    multi-query cache with a sliding window, GPT-NeoX's partial rotary from
    a table read at the past length, GPT-J's interleaved one (opset 18);
    the second data set of each is
    the first step of batched generation: an empty past (P = 0, a
    zero-sized tensor) and a prompt of 5 tokens, left-padded by 2 in batch
    item 1 (whose first query rows then see only padding)."""
    shapes = ((2, 6, 3, [0, 2]), (2, 0, 5, [0, 2]))
    cached_case("bart_kvcache", BartCachedSelfAttention(48, 6, True), 61, 48, (16,), shapes)
    mistral = LlamaAttention(32, 4, 1, sliding_window=4)
    mistral.__class__ = MistralCachedAttention  # LLaMA's constructor, Mistral's step
    cached_case("mistral_kvcache", mistral, 62, 32, (17,), shapes)
    cached_case("gptneox_kvcache", GPTNeoXCachedAttention(32, 4, 0.5, max_positions=32), 63, 32,
                (15,), shapes)
    cached_case("gptj_kvcache", GPTJCachedAttention(64, 4, 8, max_positions=32), 64, 64, (18,),
                shapes)


def torch_cases():
    self_case("bert_extmask", BertSelfAttention(32, 4, FMIN), 10, 32, 7, [7, 4],
              torch.int64, (14, 17))
    self_case("roberta_m10000", BertSelfAttention(48, 6, -10000.0), 11, 48, 6, [3, 6],
              torch.float32, (15, 18))
    self_case("electra_boolmask", BertSelfAttention(32, 2, FMIN), 12, 32, 8, [8, 5],
              torch.bool, (16, 17))
    self_case("bert_attnblock", BertAttentionBlock(32, 4, FMIN), 14, 32, 6, [6, 4],
              torch.int64, (15, 18))
    self_case("distilbert_maskedfill", DistilBertAttention(32, 4), 13, 32, 7, [5, 7],
              torch.int64, (14, 16))
    self_case("gpt2_causal", GPT2Attention(32, 4), 20, 32, 8, None, None, (14, 18))
    self_case("gpt2_causalpad", GPT2Attention(48, 4), 21, 48, 7, [7, 5], torch.int64, (15, 17))
    self_case("gptneox_rot25", GPTNeoXAttention(64, 4, 0.25), 30, 64, 9, [9, 6], torch.int64,
              (14, 17))
    self_case("pythia_rotfull", GPTNeoXAttention(32, 4, 1.0), 31, 32, 6, None, None, (16, 18))
    self_case("gptj_interleaved", GPTJAttention(64, 4, 8), 32, 64, 7, [7, 4], torch.int64,
              (14, 17))
    self_case("falcon_mqa", FalconAttention(64, 8), 33, 64, 8, None, None, (15, 18))
    self_case("llama_gqa", LlamaAttention(64, 8, 2), 40, 64, 8, [8, 6], torch.int64, (14, 17))
    # a window of 3 shows a query row past 2 pad tokens only padding: pad at
    # most 2, so every query keeps a key (see README)
    self_case("mistral_window", LlamaAttention(32, 4, 2, sliding_window=3), 41, 32, 9, [9, 7],
              torch.int64, (15, 18), lengths1=[12, 11, 10])
    self_case("qwen2_qkvbias", LlamaAttention(48, 6, 2, qkv_bias=True), 42, 48, 7, [7, 5],
              torch.int64, (16, 17))
    self_case("t5_encoder_relbias", T5Attention(32, 4, 8, False), 50, 32, 9, [9, 6],
              torch.int64, (14, 17))
    self_case("t5_decoder_relbias", T5Attention(32, 4, 8, True), 51, 32, 8, [8, 6],
              torch.int64, (15, 18))
    # the sequence length fixed, and the bias computed for it ahead of time:
    # what constant folding of the bucket arithmetic leaves, a constant
    # [1, H, S, S] added to the scores; no padding mask (the bias alone);
    # only the batch varies
    module = randomize(T5Attention(48, 6, 8, False), 52)
    with torch.no_grad():
        module.register_buffer("folded_bias", module.compute_bias(7, 7), persistent=False)
    datasets = [(x_input(53, 2, 7, 48),), (x_input(54, 3, 7, 48),)]
    for opset in (14, 16):
        export_torch(f"t5_constbias_op{opset}", module, datasets, ["hidden_states"], ["output"],
                     {"hidden_states": {0: "batch"}, "output": {0: "batch"}}, opset)
    self_case("bloom_alibi", BloomAttention(32, 4), 60, 32, 8, [8, 5], torch.int64, (14, 17))
    self_case("bloom_alibi_h6", BloomAttention(48, 6), 62, 48, 7, [7, 4], torch.int64, (16, 18))
    self_case("mpt_alibi", MPTAttention(64, 8), 61, 64, 7, [7, 6], torch.int64, (15, 18))
    self_case("whisper_decself", DecoderSelfAttention(32, 4, k_bias=False), 70, 32, 6, None,
              None, (14, 17))
    self_case("bart_decself", DecoderSelfAttention(48, 4, k_bias=True), 71, 48, 7, [7, 4],
              torch.int64, (16, 18))
    self_case("clip_text", CLIPTextAttention(32, 4, k_bias=True), 72, 32, 7, [7, 5],
              torch.int64, (14, 17))
    self_case("whisper_encself", EncoderSelfAttention(32, 4, k_bias=False), 76, 32, 9, None,
              None, (16, 17))
    self_case("clip_vision", EncoderSelfAttention(48, 6, k_bias=True), 77, 48, 5, None, None,
              (15, 18))
    self_case("vit_qkv", ViTAttention(48, 4, qkv_bias=True), 80, 48, 9, None, None, (14, 17))
    self_case("deit_h3noqkvbias", ViTAttention(48, 3, qkv_bias=False), 81, 48, 5, None, None,
              (15, 18))

    cached_cases()

    # cross-attention: decoder states [B, T, D] on encoder states [B, S, D];
    # data set 1 has batch 3, T + 2 queries and S - 2 keys
    cross_axes = {"hidden_states": {0: "batch", 1: "tgt"},
                  "encoder_hidden_states": {0: "batch", 1: "src"},
                  "encoder_attention_mask": {0: "batch", 1: "src"},
                  "output": {0: "batch", 1: "tgt"}}
    for name, module, seed, d, t, s, lengths, opsets in (
            ("whisper_cross", CrossAttention(32, 4, k_bias=False), 73, 32, 5, 9, None, (15, 18)),
            ("bart_crosspad", CrossAttention(48, 6, k_bias=True), 74, 48, 6, 9, [9, 6], (14, 17)),
            ("marian_crosspad", CrossAttention(32, 2, k_bias=True), 75, 32, 7, 5, [4, 5], (16,))):
        randomize(module, seed)
        names = ["hidden_states", "encoder_hidden_states"]
        names += ["encoder_attention_mask"] if lengths is not None else []
        datasets = []
        for k, (batch, tq, sk, lens) in enumerate(((2, t, s, lengths),
                                                   (3, t + 2, s - 2, second_lengths(s - 2)))):
            args = (x_input(seed + 1 + 2 * k, batch, tq, d),
                    x_input(seed + 2 + 2 * k, batch, sk, d))
            if lengths is not None:
                args += (padding_mask(batch, sk, lens),)
            datasets.append(args)
        for opset in opsets:
            export_torch(f"{name}_op{opset}", module, datasets, names, ["output"],
                         {k: v for k, v in cross_axes.items() if k in names}, opset)

    # nn.MultiheadAttention with need_weights=True: two outputs
    module = randomize(TorchMHAWeights(32, 4, average=True), 90)
    g = torch.Generator().manual_seed(92)
    datasets = []
    for k, (batch, seq) in enumerate(((2, 6), (3, 9))):
        attn_mask = torch.rand(seq, seq, generator=g) < 0.4
        attn_mask.fill_diagonal_(False)  # every query keeps a key
        datasets.append((x_input(91 + k, batch, seq, 32), attn_mask))
    for opset in (14, 17):
        export_torch(f"torchmha_boolmask_weights_op{opset}", module, datasets,
                     ["x", "attn_mask"], ["output", "weights"],
                     {"x": {0: "batch", 1: "seq"}, "attn_mask": {0: "seq", 1: "seq"},
                      "output": {0: "batch", 1: "seq"},
                      "weights": {0: "batch", 1: "seq", 2: "seq"}}, opset)
    # an odd head count keeps nn.MultiheadAttention off its fused fast path,
    # which the exporter cannot write
    module = randomize(TorchMHAWeights(48, 3, average=False), 93)
    datasets = [(x_input(94 + k, batch, seq, 48), padding_mask(batch, seq, lens) == 0)
                for k, (batch, seq, lens) in enumerate(((2, 7, [7, 4]), (3, 10, [10, 6, 2])))]
    for opset in (15, 18):
        export_torch(f"torchmha_keypad_headweights_op{opset}", module, datasets,
                     ["x", "key_padding_mask"], ["output", "weights"],
                     {"x": {0: "batch", 1: "seq"}, "key_padding_mask": {0: "batch", 1: "seq"},
                      "output": {0: "batch", 1: "seq"},
                      "weights": {0: "batch", 2: "seq", 3: "seq"}}, opset)


# ---------------------------------------------------------------------------
# round two: more of the forms the families' own code writes
# ---------------------------------------------------------------------------


class LlamaCosSin(LlamaAttention):
    """Newer LLaMA layers take the rotary tables (cos, sin) [B, S, d] from
    the model as inputs (position_embeddings)."""

    def forward(self, hidden_states, attention_mask, cos, sin):
        return self.attend(hidden_states, attention_mask, cos, sin)

    def attend(self, hidden_states, attention_mask, cos, sin):
        bsz, q_len, _ = hidden_states.size()
        q = self.q_proj(hidden_states).view(bsz, q_len, self.heads, self.d_head).transpose(1, 2)
        k = self.k_proj(hidden_states).view(bsz, q_len, self.kv_heads, self.d_head).transpose(1, 2)
        v = self.v_proj(hidden_states).view(bsz, q_len, self.kv_heads, self.d_head).transpose(1, 2)
        return self.rotated_attention(q, k, v, cos.unsqueeze(1), sin.unsqueeze(1),
                                      attention_mask, hidden_states.dtype, bsz, q_len)


class LlamaPositionIds(LlamaCosSin):
    """LLaMA as a Hugging Face layer export writes it: position_ids [B, S]
    is a graph input (the caller's positions; arange in both data sets)."""

    def forward(self, hidden_states, attention_mask, position_ids):
        cos, sin = self.rotary(hidden_states, position_ids)
        return self.attend(hidden_states, attention_mask, cos, sin)


class ViTClassToken(ViTAttention):
    """ViT's first block as a module: the learned class token prepended to
    the patch embeddings (cat of cls.expand(B, -1, -1)), then attention over
    N + 1 tokens."""

    def __init__(self, dim, heads):
        super().__init__(dim, heads, qkv_bias=True)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x):
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        return super().forward(x)


class WhisperCrossCached(BartStyleAttention):
    """Whisper's decoder cross-attention on a step with a cache: the encoder
    K/V were projected on the first step and come in as past_key/past_value
    [B, H, S, d]; only Q is projected."""

    def forward(self, hidden_states, past_key, past_value):
        bsz, tgt_len, _ = hidden_states.size()
        q = self._shape(self.q_proj(hidden_states) * self.scaling, tgt_len, bsz)
        proj_shape = (bsz * self.heads, -1, self.d_head)
        q = q.view(*proj_shape)
        k = past_key.reshape(*proj_shape)
        v = past_value.reshape(*proj_shape)
        w = nn.functional.softmax(torch.bmm(q, k.transpose(1, 2)), dim=-1)
        out = torch.bmm(w, v).view(bsz, self.heads, tgt_len, self.d_head).transpose(1, 2)
        return self.out_proj(out.reshape(bsz, tgt_len, self.embed_dim))


class MPTBidirectional(MPTAttention):
    """MPT with alibi_bias built for a non-causal model: slope x -|j - i|
    over [1, H, S, S] (the prefix-LM / encoder form), padding by
    masked_fill, no causal mask."""

    def __init__(self, d_model, heads, max_seq_len=16, alibi_bias_max=8):
        super().__init__(d_model, heads, max_seq_len, alibi_bias_max)
        n = 2 ** math.ceil(math.log2(heads))
        m = torch.arange(1, n + 1, dtype=torch.float32) * (alibi_bias_max / n)
        slopes = (1.0 / torch.pow(2, m)).view(1, heads, 1, 1)
        j = torch.arange(1 - max_seq_len, 1, dtype=torch.float32).view(1, 1, 1, max_seq_len)
        i = torch.arange(1 - max_seq_len, 1, dtype=torch.float32).view(1, 1, max_seq_len, 1)
        self.register_buffer("attn_bias", -torch.abs(j - i) * slopes, persistent=False)

    def forward(self, x, attention_mask):
        b, s, _ = x.shape
        query, key, value = self.Wqkv(x).chunk(3, dim=2)
        q = query.view(b, s, self.heads, self.d_head).permute(0, 2, 1, 3)
        k = key.view(b, s, self.heads, self.d_head).permute(0, 2, 3, 1)
        v = value.view(b, s, self.heads, self.d_head).permute(0, 2, 1, 3)
        w = q.matmul(k) * self.softmax_scale
        w = w + self.attn_bias[:, :, -s:, -s:]
        w = w.masked_fill(~attention_mask.bool().view((b, 1, 1, s)), torch.finfo(w.dtype).min)
        out = torch.softmax(w, dim=-1).matmul(v).permute(0, 2, 1, 3).reshape(b, s, -1)
        return self.out_proj(out)


class BloomFloatMask(BloomAttention):
    """BLOOM with the mask applied as an additive float (0 / finfo.min) of
    causal | padding instead of masked_fill."""

    def apply_mask(self, scores, masked):
        return scores + masked.to(scores.dtype) * torch.finfo(scores.dtype).min


def crosscache_case(name, d_model, heads, seed, shapes, opset):
    """WhisperCrossCached with data sets of (batch, queries, encoder length)
    from `shapes`: hidden_states, then K and V [B, H, S, d] as the first step
    projected them."""
    module = randomize(WhisperCrossCached(d_model, heads, k_bias=False), seed)
    g = torch.Generator().manual_seed(seed + 1)
    d_head = d_model // heads
    datasets = [(torch.randn(batch, t, d_model, generator=g),
                 torch.randn(batch, heads, s, d_head, generator=g) * 1.5,
                 torch.randn(batch, heads, s, d_head, generator=g)) for batch, t, s in shapes]
    seq_axes = {0: "batch", 1: "seq"}
    export_torch(name, module, datasets, ["hidden_states", "past_key", "past_value"], ["output"],
                 {"hidden_states": seq_axes, "past_key": {0: "batch", 2: "src"},
                  "past_value": {0: "batch", 2: "src"}, "output": seq_axes}, opset)


def round_two_cases():
    """Variants of the families above in other forms their code takes; the
    inputs beyond hidden_states and attention_mask are named per case."""
    seq_axes = {0: "batch", 1: "seq"}
    # position_ids: arange per row, as a plain forward passes it
    module = randomize(LlamaPositionIds(64, 8, 2), 44)
    datasets = []
    for k, (batch, seq, lens) in enumerate(((2, 8, [8, 6]), (3, 11, [11, 5, 2]))):
        datasets.append((x_input(45 + k, batch, seq, 64), padding_mask(batch, seq, lens),
                         torch.arange(seq, dtype=torch.long).unsqueeze(0).expand(batch, -1)))
    export_torch("llama_posids_op17", module, datasets,
                 ["hidden_states", "attention_mask", "position_ids"], ["output"],
                 {"hidden_states": seq_axes, "attention_mask": seq_axes,
                  "position_ids": seq_axes, "output": seq_axes}, 17)
    # cos/sin tables from the model
    module = randomize(LlamaCosSin(32, 4, 2), 46)
    datasets = []
    for k, (batch, seq, lens) in enumerate(((2, 7, [7, 5]), (3, 10, [10, 5, 2]))):
        pos = torch.arange(seq, dtype=torch.long).unsqueeze(0).expand(batch, -1)
        cos, sin = module.rotary(torch.zeros(1), pos)
        datasets.append((x_input(47 + k, batch, seq, 32), padding_mask(batch, seq, lens),
                         cos, sin))
    export_torch("llama_cossin_op16", module, datasets,
                 ["hidden_states", "attention_mask", "cos", "sin"], ["output"],
                 {"hidden_states": seq_axes, "attention_mask": seq_axes, "cos": seq_axes,
                  "sin": seq_axes, "output": seq_axes}, 16)
    # ViT with the class token prepended in the graph
    module = randomize(ViTClassToken(48, 4), 82)
    datasets = [(x_input(83, 2, 8, 48),), (x_input(84, 3, 4, 48),)]
    export_torch("vit_clstoken_op17", module, datasets, ["patches"], ["output"],
                 {"patches": {0: "batch", 1: "patches"}, "output": {0: "batch", 1: "tokens"}},
                 17)
    # Whisper cross-attention with the encoder K/V cached
    crosscache_case("whisper_crosscache_op15", 32, 4, 78, ((2, 1, 9), (3, 2, 6)), 15)
    self_case("mpt_bidir_alibi", MPTBidirectional(32, 4), 63, 32, 7, [7, 5], torch.int64, (16,))
    self_case("bloom_floatmask", BloomFloatMask(32, 4), 64, 32, 8, [8, 6], torch.int64, (15,))

    # left padding (batched generation pads on the left): the first query
    # rows see only padding keys, hidden by finite finfo.min, and PyTorch's
    # softmax averages every key it did not push to -inf
    for name, module, seed, d_model, opset in (
            ("gpt2_leftpad", GPT2Attention(32, 4), 23, 32, 15),
            ("llama_leftpad", LlamaAttention(32, 4, 2), 48, 32, 17),
            ("gptj_leftpad", GPTJAttention(32, 4, 4), 34, 32, 16),
            ("bloom_leftpad", BloomAttention(32, 4), 65, 32, 17),
            ("mpt_leftpad", MPTAttention(32, 4), 66, 32, 14),
            ("mistral_leftpad", LlamaAttention(32, 4, 2, sliding_window=3), 49, 32, 18)):
        randomize(module, seed)
        datasets = []
        for k, (batch, seq, pads) in enumerate(((2, 7, [0, 3]), (3, 9, [0, 2, 6]))):
            mask = torch.ones(batch, seq, dtype=torch.int64)
            for b, pad in enumerate(pads):
                mask[b, :pad] = 0
            datasets.append((x_input(seed + 1 + k, batch, seq, d_model), mask))
        export_torch(f"{name}_op{opset}", module, datasets, ["hidden_states", "attention_mask"],
                     ["output"], SELF, opset)


# ---------------------------------------------------------------------------
# round three: the same families as other code around them writes them
# ---------------------------------------------------------------------------


class BertExtendedInput(BertSelfAttention):
    """A BERT layer as BertModel calls it: the extended mask is made once by
    the model (get_extended_attention_mask) and comes in as a float input
    [B, 1, 1, S] of 0 / finfo.min; a Dropout (identity in eval) on the
    probabilities."""

    def __init__(self, d_model, heads):
        super().__init__(d_model, heads, FMIN)
        self.dropout = nn.Dropout(0.1)

    def forward(self, hidden_states, extended_attention_mask):
        q = self.transpose_for_scores(self.query(hidden_states))
        k = self.transpose_for_scores(self.key(hidden_states))
        v = self.transpose_for_scores(self.value(hidden_states))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.d_head)
        scores = scores + extended_attention_mask
        probs = self.dropout(nn.functional.softmax(scores, dim=-1))
        context = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous()
        return self.dense(context.view(context.size()[:-2] + (self.all_head_size,)))


class GPTNeoXPositionIds(GPTNeoXAttention):
    """GPT-NeoX as a Hugging Face layer: position_ids [B, S] is an input and
    indexes the cos / sin caches (rotary on half of each head's dims)."""

    def forward(self, hidden_states, attention_mask, position_ids):
        return self.attend(hidden_states, attention_mask,
                           lambda: (self.rotary_emb.cos_cached[position_ids].unsqueeze(1),
                                    self.rotary_emb.sin_cached[position_ids].unsqueeze(1)))

    def attend(self, hidden_states, attention_mask, tables):
        """From the projection on; tables() gives cos, sin [B, 1, S, r]."""
        qkv = self.query_key_value(hidden_states)
        qkv = qkv.view(qkv.size()[:-1] + (self.heads, 3 * self.d_head))
        query = qkv[..., : self.d_head].permute(0, 2, 1, 3)
        key = qkv[..., self.d_head : 2 * self.d_head].permute(0, 2, 1, 3)
        value = qkv[..., 2 * self.d_head :].permute(0, 2, 1, 3)
        r = self.rotary_ndims
        cos, sin = tables()
        query = torch.cat((query[..., :r] * cos + rotate_half(query[..., :r]) * sin,
                           query[..., r:]), dim=-1)
        key = torch.cat((key[..., :r] * cos + rotate_half(key[..., :r]) * sin, key[..., r:]),
                        dim=-1)
        q_len = query.size(-2)
        causal_mask = self.bias[:, :, :q_len, :q_len]
        scores = torch.matmul(query, key.transpose(-1, -2)) / self.norm_factor
        scores = torch.where(causal_mask, scores, torch.tensor(FMIN, dtype=scores.dtype))
        ext = attention_mask[:, None, None, :].to(dtype=scores.dtype)
        scores = scores + (1.0 - ext) * FMIN
        out = torch.matmul(nn.functional.softmax(scores, dim=-1), value)
        out = out.permute(0, 2, 1, 3).reshape(out.size(0), q_len, self.heads * self.d_head)
        return self.dense(out)


class FalconGroupedAttention(nn.Module):
    """Falcon-40B's new decoder architecture: the fused projection grouped
    per key/value head ([.., KV, H/KV + 2, d]: the group's query heads, then
    its K and V), K and V expanded over the group, rotate-half rotary from
    the caches, a bool causal mask applied with masked_fill."""

    def __init__(self, d_model, heads, kv_heads, max_positions=16):
        super().__init__()
        self.heads, self.kv_heads, self.d_head = heads, kv_heads, d_model // heads
        self.query_key_value = nn.Linear(d_model, (heads + 2 * kv_heads) * self.d_head,
                                         bias=False)
        self.dense = nn.Linear(d_model, d_model, bias=False)
        self.rotary = NeoXRotary(self.d_head, max_positions)

    def forward(self, hidden_states):
        fused = self.query_key_value(hidden_states)
        b, s, _ = fused.shape
        group = self.heads // self.kv_heads
        fused = fused.view(b, s, self.kv_heads, group + 2, self.d_head)
        query = fused[:, :, :, :-2].reshape(b, s, self.heads, self.d_head).transpose(1, 2)
        key = fused[:, :, :, [-2]].expand(b, s, self.kv_heads, group, self.d_head)
        value = fused[:, :, :, [-1]].expand(b, s, self.kv_heads, group, self.d_head)
        key = key.reshape(b, s, self.heads, self.d_head).transpose(1, 2)
        value = value.reshape(b, s, self.heads, self.d_head).transpose(1, 2)
        cos, sin = self.rotary(s)
        query = query * cos + rotate_half(query) * sin
        key = key * cos + rotate_half(key) * sin
        scores = query @ key.transpose(-1, -2) / math.sqrt(self.d_head)
        causal = torch.ones(s, s, dtype=torch.bool).triu(1)
        scores = scores.masked_fill(causal, FMIN)
        out = (F.softmax(scores, dim=-1) @ value).transpose(1, 2).reshape(b, s, -1)
        return self.dense(out)


class CLIPTextOneMask(BartStyleAttention):
    """CLIP's text tower as newer code writes it: the causal and padding
    masks combined into one [B, 1, S, S] before the layer adds it."""

    def forward(self, hidden_states, attention_mask):
        bsz, seq_len, _ = hidden_states.size()
        causal = torch.full((seq_len, seq_len), FMIN).triu(1)[None, None]
        return self.attend(hidden_states, None,
                           [causal + expand_mask(attention_mask, hidden_states.dtype, seq_len)])


class EncoderSelfPadded(BartStyleAttention):
    """BART's encoder self-attention: the expanded padding mask, no causal."""

    def forward(self, hidden_states, attention_mask):
        return self.attend(hidden_states, None,
                           [expand_mask(attention_mask, hidden_states.dtype,
                                        hidden_states.size(1))])


class LlamaGatheredCache(LlamaAttention):
    """LLaMA as older Hugging Face code writes it: cos / sin caches [1, 1,
    max, d] sliced to the sequence, squeezed, gathered by the position_ids
    input; the caller's positions need not start at 0."""

    def __init__(self, d_model, heads, kv_heads, max_positions=24):
        super().__init__(d_model, heads, kv_heads)
        t = torch.arange(max_positions, dtype=torch.float32)
        freqs = torch.einsum("i,j->ij", t, inverse_frequencies(self.d_head))
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos_cached", emb.cos()[None, None], persistent=False)
        self.register_buffer("sin_cached", emb.sin()[None, None], persistent=False)

    def forward(self, hidden_states, attention_mask, position_ids):
        bsz, q_len, _ = hidden_states.size()
        q = self.q_proj(hidden_states).view(bsz, q_len, self.heads, self.d_head).transpose(1, 2)
        k = self.k_proj(hidden_states).view(bsz, q_len, self.kv_heads, self.d_head).transpose(1, 2)
        v = self.v_proj(hidden_states).view(bsz, q_len, self.kv_heads, self.d_head).transpose(1, 2)
        cos = self.cos_cached.squeeze(1).squeeze(0)[position_ids].unsqueeze(1)
        sin = self.sin_cached.squeeze(1).squeeze(0)[position_ids].unsqueeze(1)
        return self.rotated_attention(q, k, v, cos, sin, attention_mask, hidden_states.dtype,
                                      bsz, q_len)


class DeiTTokens(ViTAttention):
    """DeiT's first block as a module: the class and distillation tokens
    prepended to the patches, then the learned position embeddings sliced to
    the N + 2 tokens and added, then attention."""

    def __init__(self, dim, heads, max_tokens=20):
        super().__init__(dim, heads, qkv_bias=True)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, max_tokens, dim))

    def forward(self, x):
        batch = x.shape[0]
        x = torch.cat((self.cls_token.expand(batch, -1, -1),
                       self.dist_token.expand(batch, -1, -1), x), dim=1)
        return super().forward(x + self.pos_embed[:, : x.shape[1]])


class GPTNeoXCosSinInputs(GPTNeoXPositionIds):
    """GPT-NeoX given its cos / sin [B, 1, S, rotary_dim] by the caller
    (already unsqueezed for the heads), rotary on half of each head."""

    def forward(self, hidden_states, attention_mask, cos, sin):
        return self.attend(hidden_states, attention_mask, lambda: (cos, sin))


class GPTJPositionIds(GPTJAttention):
    """GPT-J as a Hugging Face layer: the sincos table gathered by the
    position_ids input."""

    def forward(self, hidden_states, attention_mask, position_ids):
        query = self._split_heads(self.q_proj(hidden_states), True)
        key = self._split_heads(self.k_proj(hidden_states), True)
        value = self._split_heads(self.v_proj(hidden_states), False)
        sincos = self.embed_positions[position_ids]
        sin, cos = torch.split(sincos, sincos.shape[-1] // 2, dim=-1)
        r = self.rotary_dim
        key = torch.cat([self._apply_rotary(key[..., :r], sin, cos), key[..., r:]], dim=-1)
        query = torch.cat([self._apply_rotary(query[..., :r], sin, cos), query[..., r:]], dim=-1)
        key, query = key.permute(0, 2, 1, 3), query.permute(0, 2, 1, 3)
        q_len = query.size(-2)
        w = torch.matmul(query, key.transpose(-1, -2))
        w = torch.where(self.bias[:, :, :q_len, :q_len], w, torch.tensor(FMIN))
        w = w / self.scale_attn
        w = w + (1.0 - attention_mask[:, None, None, :].to(dtype=w.dtype)) * FMIN
        out = torch.matmul(nn.functional.softmax(w, dim=-1), value).permute(0, 2, 1, 3)
        return self.out_proj(out.reshape(out.size(0), q_len, self.heads * self.d_head))


class LlamaCosSinUnsqueeze2(LlamaAttention):
    """The cos / sin inputs [B, S, d] applied with unsqueeze_dim=2, on Q and
    K still [B, S, H, d] (transposed to heads after the rotation)."""

    def forward(self, hidden_states, attention_mask, cos, sin):
        bsz, q_len, _ = hidden_states.size()
        q = self.q_proj(hidden_states).view(bsz, q_len, self.heads, self.d_head)
        k = self.k_proj(hidden_states).view(bsz, q_len, self.kv_heads, self.d_head)
        v = self.v_proj(hidden_states).view(bsz, q_len, self.kv_heads, self.d_head).transpose(1, 2)
        c, s = cos.unsqueeze(2), sin.unsqueeze(2)
        q = (q * c + rotate_half(q) * s).transpose(1, 2)
        k = repeat_kv((k * c + rotate_half(k) * s).transpose(1, 2), self.heads // self.kv_heads)
        v = repeat_kv(v, self.heads // self.kv_heads)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.d_head)
        w = w + self.causal_mask(attention_mask, hidden_states.dtype, q_len)
        w = nn.functional.softmax(w, dim=-1, dtype=torch.float32)
        return self.o_proj(torch.matmul(w, v).transpose(1, 2).reshape(bsz, q_len, -1))


class BertMask4D(BertSelfAttention):
    """A BERT-style layer given a 4-D additive mask [B, 1, S, S] (a decoder's
    causal extended mask made by the model)."""

    def __init__(self, d_model, heads):
        super().__init__(d_model, heads, FMIN)

    def forward(self, hidden_states, mask):
        q = self.transpose_for_scores(self.query(hidden_states))
        k = self.transpose_for_scores(self.key(hidden_states))
        v = self.transpose_for_scores(self.value(hidden_states))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.d_head) + mask
        context = torch.matmul(nn.functional.softmax(scores, dim=-1), v).permute(0, 2, 1, 3)
        return self.dense(context.reshape(context.size(0), context.size(1), -1))


class T5PositionBiasInput(T5Attention):
    """A T5 layer after the first: the position bias [1, H, S, S] computed by
    the first layer comes in as an input."""

    def forward(self, hidden_states, position_bias):
        b = hidden_states.shape[0]

        def shape(t):
            return t.view(b, -1, self.heads, self.d_head).transpose(1, 2)

        q, k, v = (shape(p(hidden_states)) for p in (self.q, self.k, self.v))
        scores = torch.matmul(q, k.transpose(3, 2)) + position_bias
        w = nn.functional.softmax(scores.float(), dim=-1).type_as(scores)
        out = torch.matmul(w, v).transpose(1, 2).contiguous()
        return self.o(out.view(b, -1, self.heads * self.d_head))


class TorchMHASeqFirst(nn.Module):
    """nn.MultiheadAttention with its default batch_first=False: inputs and
    output [S, B, D]; a bool key_padding_mask [B, S] (True = padding) when
    given; cross-attention on a memory [S_kv, B, D] when given."""

    def __init__(self, d_model, heads):
        super().__init__()
        self.heads = heads
        self.mha = nn.MultiheadAttention(d_model, heads)

    def forward(self, x, other):
        if other.dtype == torch.bool:
            return self.mha(x, x, x, key_padding_mask=other, need_weights=False)[0]
        return self.mha(x, other, other, need_weights=False)[0]


class BloomAlibiInput(BloomAttention):
    """BloomAttention as BloomModel calls it: the ALiBi tensor [B*H, 1, S]
    and the bool causal | padding mask [B, 1, S, S] (True = hidden) are made
    once by the model and come in as inputs."""

    def forward(self, hidden_states, alibi, causal_mask):
        return self.attend(hidden_states, lambda: alibi, lambda q_length: causal_mask)


class T5CrossAttention(T5Attention):
    """T5's EncDecAttention: no relative bias (a zero position_bias), the
    encoder's extended padding mask added to it, no 1/sqrt(d)."""

    def forward(self, hidden_states, key_value_states, mask):
        b, q_len = hidden_states.shape[:2]

        def shape(t):
            return t.view(b, -1, self.heads, self.d_head).transpose(1, 2)

        q = shape(self.q(hidden_states))
        k, v = shape(self.k(key_value_states)), shape(self.v(key_value_states))
        scores = torch.matmul(q, k.transpose(3, 2))
        position_bias = torch.zeros((1, self.heads, q_len, k.shape[2]), dtype=scores.dtype)
        ext = mask[:, None, None, :].to(dtype=scores.dtype)
        scores += position_bias + (1.0 - ext) * torch.finfo(scores.dtype).min
        w = nn.functional.softmax(scores.float(), dim=-1).type_as(scores)
        out = torch.matmul(w, v).transpose(1, 2).contiguous()
        return self.o(out.view(b, -1, self.heads * self.d_head))


class GPT2CrossAttention(GPT2Attention):
    """GPT-2 with add_cross_attention: q_attn on the decoder states, c_attn
    [D, 2D] split into K and V on the encoder states, the encoder's extended
    padding mask; no causal mask."""

    def __init__(self, d_model, heads):
        super().__init__(d_model, heads)
        self.c_attn = Conv1D(2 * d_model, d_model)
        self.q_attn = Conv1D(d_model, d_model)

    def forward(self, hidden_states, encoder_hidden_states, encoder_attention_mask):
        query = self._split_heads(self.q_attn(hidden_states))
        key, value = self.c_attn(encoder_hidden_states).split(self.split_size, dim=2)
        key, value = self._split_heads(key), self._split_heads(value)
        m = encoder_attention_mask[:, None, None, :].to(hidden_states.dtype)
        m = (1.0 - m) * torch.finfo(hidden_states.dtype).min
        w = torch.matmul(query, key.transpose(-1, -2)) / torch.full([], value.size(-1) ** 0.5)
        w = nn.functional.softmax(w + m, dim=-1)
        return self.c_proj(self._merge_heads(torch.matmul(w, value)))


class TorchMHASeparateKV(nn.Module):
    """nn.MultiheadAttention given different key and value tensors (DETR's
    decoder: keys are the memory plus positions, values the memory)."""

    def __init__(self, d_model, heads):
        super().__init__()
        self.heads = heads
        self.mha = nn.MultiheadAttention(d_model, heads, batch_first=True)

    def forward(self, query, key, value):
        return self.mha(query, key, value, need_weights=False)[0]


def offset_positions(batch, seq, starts):
    """position_ids [B, S]: row b counts from starts[b]."""
    return torch.stack([torch.arange(seq, dtype=torch.long) + st for st in starts[:batch]])


def round_three_cases():
    """More of the same families in the forms the code around them writes:
    inputs the model makes once (extended masks, positions), other opsets,
    other head counts."""
    seq_axes = {0: "batch", 1: "seq"}
    # the extended mask as the model hands it to each layer
    module = randomize(BertExtendedInput(64, 8), 120)
    datasets = []
    for k, (batch, seq, lens) in enumerate(((2, 7, [7, 4]), (3, 10, [10, 5, 2]))):
        m = padding_mask(batch, seq, lens, torch.float32)[:, None, None, :]
        datasets.append((x_input(121 + k, batch, seq, 64), (1.0 - m) * FMIN))
    export_torch("bert_extinput_op16", module, datasets,
                 ["hidden_states", "extended_attention_mask"], ["output"],
                 {"hidden_states": seq_axes, "extended_attention_mask": {0: "batch", 3: "seq"},
                  "output": seq_axes}, 16)
    # positions given, not starting at 0 for every row (Mistral: at most 2
    # pad tokens, so that its window of 3 keeps a real key for every query)
    for name, module, seed, d_model, opset, lens1 in (
            ("gptneox_rot50_posids", GPTNeoXPositionIds(64, 4, 0.5, max_positions=24), 122, 64,
             15, [8, 5, 3]),
            ("llama_cachegather", LlamaGatheredCache(32, 4, 2), 125, 32, 16, [8, 5, 3]),
            ("qwen2_posids", LlamaPositionIds(64, 8, 2, qkv_bias=True), 128, 64, 18, [8, 5, 3]),
            ("gptj_posids", GPTJPositionIds(64, 4, 8, max_positions=24), 200, 64, 16, [8, 7, 6]),
            ("mistral_posids", LlamaPositionIds(32, 4, 2, sliding_window=3), 203, 32, 17,
             [8, 7, 6])):
        randomize(module, seed)
        datasets = []
        for k, (batch, seq, lens, starts) in enumerate(((2, 6, [6, 4], [0, 5]),
                                                        (3, 8, lens1, [2, 0, 9]))):
            datasets.append((x_input(seed + 1 + k, batch, seq, d_model),
                             padding_mask(batch, seq, lens), offset_positions(batch, seq, starts)))
        export_torch(f"{name}_op{opset}", module, datasets,
                     ["hidden_states", "attention_mask", "position_ids"], ["output"],
                     {"hidden_states": seq_axes, "attention_mask": seq_axes,
                      "position_ids": seq_axes, "output": seq_axes}, opset)
    self_case("falcon_gqa", FalconGroupedAttention(64, 8, 2), 131, 64, 7, None, None, (16,))
    self_case("t5_decoder_b32", T5Attention(64, 8, 8, True, num_buckets=32, max_distance=128),
              133, 64, 9, [9, 7], torch.int64, (16,))
    self_case("bart_encself", EncoderSelfPadded(48, 6, k_bias=True), 135, 48, 8, [8, 5],
              torch.int64, (18,))
    self_case("clip_text_onemask", CLIPTextOneMask(32, 4, k_bias=True), 137, 32, 7, [7, 4],
              torch.int64, (15,))
    self_case("distilbert_maskedfill", DistilBertAttention(48, 6), 139, 48, 8, [8, 3],
              torch.int64, (18,))
    self_case("mpt_alibi_h6", MPTAttention(48, 6), 141, 48, 7, [7, 5], torch.int64, (16,))
    # the cached cross-attention at another opset
    crosscache_case("whisper_crosscache_op17", 48, 6, 143, ((2, 3, 7), (3, 1, 10)), 17)
    module = randomize(GPTNeoXCosSinInputs(64, 4, 0.5, max_positions=24), 1000)
    datasets = []
    for k, (batch, seq, lens, starts) in enumerate(((2, 6, [6, 4], [0, 5]),
                                                    (3, 8, [8, 5, 3], [2, 0, 9]))):
        pos = offset_positions(batch, seq, starts)
        datasets.append((x_input(1001 + k, batch, seq, 64), padding_mask(batch, seq, lens),
                         module.rotary_emb.cos_cached[pos].unsqueeze(1),
                         module.rotary_emb.sin_cached[pos].unsqueeze(1)))
    heads_axes = {0: "batch", 2: "seq"}
    export_torch("gptneox_cossin4d_op16", module, datasets,
                 ["hidden_states", "attention_mask", "cos", "sin"], ["output"],
                 {"hidden_states": seq_axes, "attention_mask": seq_axes, "cos": heads_axes,
                  "sin": heads_axes, "output": seq_axes}, 16)
    # position_ids [1, S], one row for the whole batch, from 3 on
    module = randomize(LlamaPositionIds(32, 4, 2), 206)
    datasets = [(x_input(207 + k, batch, seq, 32), padding_mask(batch, seq, lens),
                 torch.arange(seq, dtype=torch.long)[None] + 3)
                for k, (batch, seq, lens) in enumerate(((2, 6, [6, 4]), (3, 8, [8, 5, 3])))]
    export_torch("llama_posids_bcast_op15", module, datasets,
                 ["hidden_states", "attention_mask", "position_ids"], ["output"],
                 {"hidden_states": seq_axes, "attention_mask": seq_axes,
                  "position_ids": {1: "seq"}, "output": seq_axes}, 15)
    module = randomize(LlamaCosSinUnsqueeze2(32, 4, 2), 209)
    datasets = []
    for k, (batch, seq, lens) in enumerate(((2, 7, [7, 5]), (3, 10, [10, 5, 2]))):
        cos, sin = module.rotary(torch.zeros(1), offset_positions(batch, seq, [1, 4, 0]))
        datasets.append((x_input(210 + k, batch, seq, 32), padding_mask(batch, seq, lens), cos,
                         sin))
    export_torch("llama_cossin_unsq2_op17", module, datasets,
                 ["hidden_states", "attention_mask", "cos", "sin"], ["output"],
                 {"hidden_states": seq_axes, "attention_mask": seq_axes, "cos": seq_axes,
                  "sin": seq_axes, "output": seq_axes}, 17)
    module = randomize(BertMask4D(32, 4), 215)
    datasets = []
    for k, (batch, seq) in enumerate(((2, 6), (3, 9))):
        keep = torch.tril(torch.ones(seq, seq))[None, None].expand(batch, 1, seq, seq)
        datasets.append((x_input(216 + k, batch, seq, 32), (1.0 - keep) * FMIN))
    export_torch("bert_mask4d_op14", module, datasets, ["hidden_states", "mask"], ["output"],
                 {"hidden_states": seq_axes, "mask": {0: "batch", 2: "seq", 3: "seq"},
                  "output": seq_axes}, 14)
    module = randomize(T5PositionBiasInput(32, 4, 8, False), 218)
    with torch.no_grad():
        datasets = [(x_input(219 + k, batch, seq, 32), module.compute_bias(seq, seq))
                    for k, (batch, seq) in enumerate(((2, 6), (3, 9)))]
    export_torch("t5_biasinput_op17", module, datasets, ["hidden_states", "position_bias"],
                 ["output"], {"hidden_states": seq_axes, "position_bias": {2: "seq", 3: "seq"},
                              "output": seq_axes}, 17)
    module = randomize(DeiTTokens(48, 4), 400)
    datasets = [(x_input(401, 2, 8, 48),), (x_input(402, 3, 5, 48),)]
    export_torch("deit_tokens_op16", module, datasets, ["patches"], ["output"],
                 {"patches": {0: "batch", 1: "patches"}, "output": {0: "batch", 1: "tokens"}},
                 16)
    # a decoding step with a KV cache whose RoPE positions are an input:
    # left padding shifts them per row (cumsum of the mask - 1)
    module = randomize(LlamaCachedAttention(64, 8, 2), 700)
    g = torch.Generator().manual_seed(701)
    datasets = []
    for batch, past, q_len, pads in ((2, 5, 3, [0, 2]), (3, 7, 1, [0, 3, 6])):
        mask = torch.ones(batch, past + q_len, dtype=torch.int64)
        for b, pad in enumerate(pads):
            mask[b, :pad] = 0
        datasets.append((torch.randn(batch, q_len, 64, generator=g),
                         torch.randn(batch, 2, past, 8, generator=g) * 1.5,
                         torch.randn(batch, 2, past, 8, generator=g), mask,
                         (mask.cumsum(-1) - 1).clamp(min=0)[:, past:]))
    export_torch("llama_kvcache_posids_op17", module, datasets,
                 ["hidden_states", "past_key", "past_value", "attention_mask", "position_ids"],
                 ["output", "present_key", "present_value"],
                 dict(CACHED_AXES, position_ids=seq_axes), 17)
    # cross-attention of T5 and GPT-2 on encoder states with their padding
    cross = {"hidden_states": {0: "batch", 1: "tgt"},
             "encoder_hidden_states": {0: "batch", 1: "src"},
             "encoder_attention_mask": {0: "batch", 1: "src"}, "output": {0: "batch", 1: "tgt"}}
    for name, module, seed, opset in (("t5_cross", T5CrossAttention(32, 4, 8, True), 800, 16),
                                      ("gpt2_cross", GPT2CrossAttention(32, 4), 900, 15)):
        randomize(module, seed)
        datasets = [(x_input(seed + 1 + k, batch, t, 32), x_input(seed + 3 + k, batch, s, 32),
                     padding_mask(batch, s, lens))
                    for k, (batch, t, s, lens) in enumerate(((2, 4, 7, [7, 5]),
                                                             (3, 3, 9, [9, 6, 2])))]
        export_torch(f"{name}_op{opset}", module, datasets, list(cross)[:3], ["output"], cross,
                     opset)
    # refused today (REFUSED says why): ALiBi and the mask as inputs, and
    # separate key and value inputs
    module = randomize(BloomAlibiInput(32, 4), 600)
    datasets = []
    for k, (batch, seq, lens) in enumerate(((2, 7, [7, 5]), (3, 9, [9, 6, 3]))):
        m = padding_mask(batch, seq, lens)
        causal = torch.ones((seq, seq), dtype=torch.bool).triu(1)
        datasets.append((x_input(601 + k, batch, seq, 32), module.build_alibi(m, torch.float32),
                         causal[None, None] | ~m.bool()[:, None, None, :]))
    export_torch("bloom_alibiinput_op17", module, datasets,
                 ["hidden_states", "alibi", "causal_mask"], ["output"],
                 {"hidden_states": seq_axes, "alibi": {0: "batch_heads", 2: "seq"},
                  "causal_mask": {0: "batch", 2: "seq", 3: "seq"}, "output": seq_axes}, 17)
    module = randomize(TorchMHASeparateKV(32, 4), 605)
    datasets = [(x_input(606 + k, batch, t, 32), x_input(608 + k, batch, s, 32),
                 x_input(610 + k, batch, s, 32))
                for k, (batch, t, s) in enumerate(((2, 4, 7), (3, 6, 5)))]
    cross_axes = {0: "batch", 1: "src"}
    export_torch("torchmha_sepkv_op17", module, datasets, ["query", "key", "value"], ["output"],
                 {"query": seq_axes, "key": cross_axes, "value": cross_axes, "output": seq_axes},
                 17)
    # nn.MultiheadAttention sequence-first: self with key padding, cross
    module = randomize(TorchMHASeqFirst(32, 4), 221)
    datasets = [(x_input(222 + k, seq, batch, 32), padding_mask(batch, seq, lens) == 0)
                for k, (batch, seq, lens) in enumerate(((2, 6, [6, 3]), (3, 8, [8, 4, 2])))]
    export_torch("torchmha_seqfirst_keypad_op18", module, datasets, ["x", "key_padding_mask"],
                 ["output"], {"x": {0: "seq", 1: "batch"},
                              "key_padding_mask": {0: "batch", 1: "seq"},
                              "output": {0: "seq", 1: "batch"}}, 18)
    module = randomize(TorchMHASeqFirst(48, 6), 224)
    datasets = [(x_input(225 + k, t, batch, 48), x_input(227 + k, s, batch, 48))
                for k, (batch, t, s) in enumerate(((2, 4, 7), (3, 6, 5)))]
    export_torch("torchmha_seqfirst_cross_op15", module, datasets, ["query", "memory"],
                 ["output"], {"query": {0: "tgt", 1: "batch"}, "memory": {0: "src", 1: "batch"},
                              "output": {0: "tgt", 1: "batch"}}, 15)


# ---------------------------------------------------------------------------
# graphs of other exporters, built with the onnx helper
# ---------------------------------------------------------------------------


def name_nodes(nodes, scope):
    """Exporters name every node; so do we (scope/OpType_i)."""
    for i, node in enumerate(nodes):
        node.name = f"{scope}/{node.op_type}_{i}"
    return nodes


def split_heads(t, heads):
    """[B, S, H*d] -> [B, H, S, d]"""
    batch, n, width = t.shape
    return t.reshape(batch, n, heads, width // heads).transpose(0, 2, 1, 3)


def softmax64(s):
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=-1, keepdims=True)


def sdpa_case(name, opset, seed, d_model, heads, seq, mask_kind):
    """A layer whose core is `scaled_dot_product_attention` as the newer
    PyTorch exporter decomposes it: scale = 1 / sqrt(Shape(q)[-1]) computed
    in the graph, Q and K^T each multiplied by sqrt(scale); causal: a Trilu
    of ones turned into 0 / -inf by Where(Equal(., 0)); bool mask: Where(m,
    0, -inf) added. Projections MatMul + Add, heads Reshape + Transpose."""
    rng = np.random.default_rng(seed)
    d_head = d_model // heads
    w = {n: (rng.standard_normal((d_model, d_model)) * 1.3 / math.sqrt(d_model)).astype(np.float32)
         for n in ("wq", "wk", "wv", "wo")}
    b = {n: (rng.standard_normal(d_model) * 0.5).astype(np.float32)
         for n in ("bq", "bk", "bv", "bo")}
    inits = [numpy_helper.from_array(a, n) for n, a in list(w.items()) + list(b.items())]
    inits += [numpy_helper.from_array(np.array([0, 0, heads, d_head], np.int64), "heads_shape"),
              numpy_helper.from_array(np.array([0, 0, d_model], np.int64), "merged_shape")]
    nodes = []
    for p in "qkv":
        nodes += [helper.make_node("MatMul", ["x", f"w{p}"], [f"{p}_mm"]),
                  helper.make_node("Add", [f"{p}_mm", f"b{p}"], [f"{p}_proj"]),
                  helper.make_node("Reshape", [f"{p}_proj", "heads_shape"], [f"{p}_bshd"]),
                  helper.make_node("Transpose", [f"{p}_bshd"], [p], perm=[0, 2, 1, 3])]

    def const(name, value, dtype=np.float32):
        return helper.make_node("Constant", [], [name],
                                value=numpy_helper.from_array(np.array(value, dtype=dtype), name))

    nodes += [
        helper.make_node("Shape", ["q"], ["q_shape"]),
        const("minus_one", [-1], np.int64), const("int_max", [2**63 - 1], np.int64),
        helper.make_node("Slice", ["q_shape", "minus_one", "int_max"], ["d_last"]),
        helper.make_node("Cast", ["d_last"], ["d_float"], to=TensorProto.FLOAT),
        helper.make_node("Sqrt", ["d_float"], ["sqrt_d"]),
        const("one", 1.0),
        helper.make_node("Div", ["one", "sqrt_d"], ["scale"]),
        helper.make_node("Sqrt", ["scale"], ["sqrt_scale"]),
        helper.make_node("Transpose", ["k"], ["k_t"], perm=[0, 1, 3, 2]),
        helper.make_node("Mul", ["q", "sqrt_scale"], ["q_scaled"]),
        helper.make_node("Mul", ["k_t", "sqrt_scale"], ["k_t_scaled"]),
        helper.make_node("MatMul", ["q_scaled", "k_t_scaled"], ["qk"]),
        const("zero", 0.0), const("minus_inf", -np.inf)]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", d_model])]
    if mask_kind == "causal":
        nodes += [
            helper.make_node("Shape", ["k"], ["k_shape"]),
            const("minus_two", [-2], np.int64),
            helper.make_node("Slice", ["q_shape", "minus_two", "minus_one"], ["len_q"]),
            helper.make_node("Slice", ["k_shape", "minus_two", "minus_one"], ["len_k"]),
            helper.make_node("Concat", ["len_q", "len_k"], ["mask_shape"], axis=0),
            helper.make_node("Expand", ["one", "mask_shape"], ["ones"]),
            helper.make_node("Trilu", ["ones"], ["lower"], upper=0),
            helper.make_node("Equal", ["lower", "zero"], ["above"]),
            helper.make_node("Where", ["above", "minus_inf", "zero"], ["mask_add"])]
    else:  # a bool attn_mask input [B, 1, S, S], True = attend
        nodes += [helper.make_node("Where", ["attn_mask", "zero", "minus_inf"], ["mask_add"])]
        inputs.append(helper.make_tensor_value_info("attn_mask", TensorProto.BOOL,
                                                    ["batch", 1, "seq", "seq"]))
    nodes += [
        helper.make_node("Add", ["qk", "mask_add"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["probs"], axis=-1),
        helper.make_node("MatMul", ["probs", "v"], ["ctx"]),
        helper.make_node("Transpose", ["ctx"], ["ctx_bshd"], perm=[0, 2, 1, 3]),
        helper.make_node("Reshape", ["ctx_bshd", "merged_shape"], ["ctx_merged"]),
        helper.make_node("MatMul", ["ctx_merged", "wo"], ["out_mm"]),
        helper.make_node("Add", ["out_mm", "bo"], ["output"])]
    graph = helper.make_graph(name_nodes(nodes, ""), name, inputs, [
        helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", "seq", d_model])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="pytorch", producer_version="2.1.0")
    model.ir_version = 8

    # data sets of batch 2 x seq and batch 3 x (seq + 3); float64 reference
    f = {k: v.astype(np.float64) for k, v in {**w, **b}.items()}
    datasets = []
    for batch, n in ((2, seq), (3, seq + 3)):
        x = rng.standard_normal((batch, n, d_model)).astype(np.float32)
        feeds = [("x", x)]
        if mask_kind == "causal":
            keep = np.tril(np.ones((n, n), bool))
        else:
            keep = rng.random((batch, 1, n, n)) < 0.6
            keep |= np.eye(n, dtype=bool)[None, None]
            feeds.append(("attn_mask", keep))
        q, k, v = (split_heads(x.astype(np.float64) @ f[f"w{p}"] + f[f"b{p}"], heads)
                   for p in "qkv")
        scores = np.where(keep, q @ k.transpose(0, 1, 3, 2) / math.sqrt(d_head), -np.inf)
        ctx = (softmax64(scores) @ v).transpose(0, 2, 1, 3).reshape(batch, n, d_model)
        y = ctx @ f["wo"] + f["bo"]
        datasets.append((feeds, [("output", y.astype(np.float32))]))
    write_case(name, model, datasets, (d_model, heads, heads, d_head))


def keras_case(name, opset, seed, d_model, heads, key_dim, t, s, cross):
    """Keras MultiHeadAttention(query, value) as tf2onnx writes it: EinsumDense
    projections 'abc,cde->abde' with kernels [D, H, d] and biases [H, d];
    the query multiplied by 1/sqrt(key_dim); scores 'aecd,abcd->acbe'
    (key, query); the mask [B, T, S] given a head axis and turned into an
    adder (1 - m) * -1e9 by the masked softmax; 'acbe,aecd->abcd' for P.V;
    the output EinsumDense 'abcd,cde->abe' with kernel [H, d, D]. Cross:
    inputs query [B, T, D], value [B, S, D] and the mask; else one input
    `query` for all three (self-attention, no mask)."""
    rng = np.random.default_rng(seed)
    ker = {p: (rng.standard_normal((d_model, heads, key_dim)) * 1.3 / math.sqrt(d_model))
           .astype(np.float32) for p in "qkv"}
    bias = {p: (rng.standard_normal((heads, key_dim)) * 0.5).astype(np.float32) for p in "qkv"}
    ko = (rng.standard_normal((heads, key_dim, d_model)) * 1.3 / math.sqrt(heads * key_dim))
    ko = ko.astype(np.float32)
    bo = (rng.standard_normal(d_model) * 0.5).astype(np.float32)
    inits = [numpy_helper.from_array(ker[p], f"mha/{p}/kernel") for p in "qkv"]
    inits += [numpy_helper.from_array(bias[p], f"mha/{p}/bias") for p in "qkv"]
    inits += [numpy_helper.from_array(ko, "mha/out/kernel"),
              numpy_helper.from_array(bo, "mha/out/bias"),
              numpy_helper.from_array(np.array(1.0 / math.sqrt(key_dim), np.float32), "mha/scale"),
              numpy_helper.from_array(np.array(1.0, np.float32), "mha/one"),
              numpy_helper.from_array(np.array(-1e9, np.float32), "mha/large_negative"),
              numpy_helper.from_array(np.array([1], np.int64), "mha/head_axis")]
    nodes = []
    source = "value" if cross else "query"
    for p, src in (("q", "query"), ("k", source), ("v", source)):
        nodes += [helper.make_node("Einsum", [src, f"mha/{p}/kernel"], [f"{p}_e"],
                                   equation="abc,cde->abde"),
                  helper.make_node("Add", [f"{p}_e", f"mha/{p}/bias"], [p])]
    nodes += [helper.make_node("Mul", ["q", "mha/scale"], ["q_scaled"]),
              helper.make_node("Einsum", ["k", "q_scaled"], ["scores"],
                               equation="aecd,abcd->acbe")]
    inputs = [helper.make_tensor_value_info("query", TensorProto.FLOAT, ["batch", "tgt", d_model])]
    probs_in = "scores"
    if cross:
        inputs += [helper.make_tensor_value_info("value", TensorProto.FLOAT,
                                                 ["batch", "src", d_model]),
                   helper.make_tensor_value_info("attention_mask", TensorProto.BOOL,
                                                 ["batch", "tgt", "src"])]
        nodes += [helper.make_node("Unsqueeze", ["attention_mask", "mha/head_axis"], ["mask4"]),
                  helper.make_node("Cast", ["mask4"], ["mask_f"], to=TensorProto.FLOAT),
                  helper.make_node("Sub", ["mha/one", "mask_f"], ["inv"]),
                  helper.make_node("Mul", ["inv", "mha/large_negative"], ["adder"]),
                  helper.make_node("Add", ["scores", "adder"], ["scores_masked"])]
        probs_in = "scores_masked"
    nodes += [helper.make_node("Softmax", [probs_in], ["probs"], axis=-1),
              helper.make_node("Einsum", ["probs", "v"], ["ctx"], equation="acbe,aecd->abcd"),
              helper.make_node("Einsum", ["ctx", "mha/out/kernel"], ["out_e"],
                               equation="abcd,cde->abe"),
              helper.make_node("Add", ["out_e", "mha/out/bias"], ["output"])]
    used = {i for n in nodes for i in n.input}
    inits = [t for t in inits if t.name in used]
    graph = helper.make_graph(name_nodes(nodes, "model/multi_head_attention"), name, inputs, [
        helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", "tgt", d_model])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="tf2onnx", producer_version="1.16.1")
    model.ir_version = 8

    # data sets of batch 2 (T, S) and batch 3 (T + 3, S + 1); float64 reference
    f = {k: v.astype(np.float64) for k, v in
         list(ker.items()) + [("b" + p, bias[p]) for p in "qkv"] + [("ko", ko), ("bo", bo)]}
    datasets = []
    for batch, tq, sk in ((2, t, s), (3, t + 3, s + 1)):
        sk = sk if cross else tq
        query = rng.standard_normal((batch, tq, d_model)).astype(np.float32)
        value = rng.standard_normal((batch, sk, d_model)).astype(np.float32) if cross else query
        keep = np.ones((batch, tq, sk), bool)
        feeds = [("query", query)]
        if cross:
            keep = rng.random((batch, tq, sk)) < 0.7
            keep[:, :, 0] = True
            feeds += [("value", value), ("attention_mask", keep)]
        q = np.einsum("abc,cde->abde", query.astype(np.float64), f["q"]) + f["bq"]
        k = np.einsum("abc,cde->abde", value.astype(np.float64), f["k"]) + f["bk"]
        v = np.einsum("abc,cde->abde", value.astype(np.float64), f["v"]) + f["bv"]
        scores = np.einsum("aecd,abcd->acbe", k, q / math.sqrt(key_dim))
        scores = scores + (1.0 - keep[:, None].astype(np.float64)) * -1e9
        ctx = np.einsum("acbe,aecd->abcd", softmax64(scores), v)
        y = np.einsum("abcd,cde->abe", ctx, f["ko"]) + f["bo"]
        datasets.append((feeds, [("output", y.astype(np.float32))]))
    write_case(name, model, datasets, (d_model, heads, heads, key_dim))


def helper_cases():
    sdpa_case("sdpa_causal_op14", 14, 100, 32, 4, 7, "causal")
    sdpa_case("sdpa_causal_op18", 18, 101, 64, 8, 6, "causal")
    sdpa_case("sdpa_boolmask_op17", 17, 102, 32, 2, 8, "bool")
    keras_case("keras_einsum_self_op14", 14, 110, 32, 4, 8, 6, 6, False)
    keras_case("keras_einsum_crossmask_op17", 17, 111, 48, 3, 16, 5, 8, True)
    keras_case("keras_einsum_crossmask_op18", 18, 112, 32, 4, 8, 6, 9, True)


def main():
    torch.manual_seed(0)
    PREFIXES.extend(sys.argv[1:])
    torch_cases()
    more_cached_cases()
    round_two_cases()
    round_three_cases()
    helper_cases()
    with open(os.path.join(HERE, "cases.tsv"), "w") as f:
        f.write("# case\topset\td_model\theads\tkv_heads\td_head  (written by generate.py)\n")
        for name in sorted(FACTS):
            f.write("\t".join(str(v) for v in (name,) + FACTS[name]) + "\n")


if __name__ == "__main__":
    main()
