#!/usr/bin/env python3
"""make_kv.py -- decoding steps with a KV cache as whole models (k_* cases
of tests/data/models), in the styles make_zoo.py's z_*_past_* cases do not
use: the first step of a generation (an empty past, P = 0, the prompt
left-padded) and a later one, a position_ids input beside the mask over
the P + S keys, rotary tables computed in the graph from the positions
(inv_freq @ position_ids, as Hugging Face's LLaMA has done since 4.38), a
present key given back through a Cast (GPT-J's key.to(dtype)), Whisper's
decoder as optimum's decoder_with_past (the cross-attention's keys and
values cached as inputs, the present keys longer than any input).

Each is d 32, 4 heads, FFN 64, 2 layers, vocabulary 64, seeded, with
PyTorch's outputs for two data sets: set 0 the first step (batch 2, no
past, a prompt of 5 tokens, the second row padded 2 on the left), set 1 a
later step (batch 3 after 5 cached positions: 1 new token, or 2 for
LLaMA, the last row padded on the left).

    /usr/bin/python3 make_kv.py [OUTDIR [PREFIX...]]

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
from make_variants import gelu_new, merge_heads, split_heads
from make_zoo import repeat_kv

D, H, FF, L, VOCAB, MAXPOS = 32, 4, 64, 2, 64, 16
DH = D // H
FMIN = torch.finfo(torch.float32).min


def run_layers(layers, x, caches, *args):
    """x through each layer with its (past key, past value) from caches;
    the new hidden states and every layer's present key and value."""
    presents = ()
    for i, layer in enumerate(layers):
        x, k, v = layer(x, *args, caches[2 * i], caches[2 * i + 1])
        presents += (k, v)
    return x, presents


# ----------------------------------------------------------------- GPT-2 ----

class Gpt2Block(make_zoo.Gpt2PastBlock):
    """Hugging Face's GPT2Block with layer_past (make_zoo's): Conv1D
    projections over flat rows, c_attn split, the cache concatenated on the
    key axis, the tril buffer sliced [k-q:k, :k], torch.where with a 0-d
    finfo.min, the extended mask added."""

    def forward(self, x, ext, past_k, past_v):
        return super().forward(x, past_k, past_v, ext)


class Gpt2PastPositions(nn.Module):
    """GPT-2 as generate() calls it with a cache: position_ids an input
    (cumsum of the mask - 1, as generate computes them for left padding),
    the mask over the past and the new tokens, tied head."""

    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D)
        self.h = nn.ModuleList([Gpt2Block() for _ in range(L)])
        self.ln_f = nn.LayerNorm(D)

    def forward(self, input_ids, attention_mask, position_ids, pk0, pv0, pk1, pv1):
        ext = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * FMIN
        x = self.wte(input_ids) + self.wpe(position_ids)
        x, presents = run_layers(self.h, x, (pk0, pv0, pk1, pv1), ext)
        return (torch.matmul(self.ln_f(x), self.wte.weight.t()),) + presents


# ----------------------------------------------------------------- LLaMA ----

class LlamaLayer(nn.Module):
    def __init__(self, kv):
        super().__init__()
        self.kv = kv
        self.input_layernorm, self.post_attention_layernorm = RmsNorm(D, 1e-6), RmsNorm(D, 1e-6)
        self.q_proj = nn.Linear(D, H * DH, bias=False)
        self.k_proj = nn.Linear(D, kv * DH, bias=False)
        self.v_proj = nn.Linear(D, kv * DH, bias=False)
        self.o_proj = nn.Linear(H * DH, D, bias=False)
        self.gate_proj, self.up_proj = nn.Linear(D, FF, bias=False), nn.Linear(D, FF, bias=False)
        self.down_proj = nn.Linear(FF, D, bias=False)

    def forward(self, x, cos, sin, mask, pk, pv):
        b, s, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(b, s, H, DH).transpose(1, 2)
        k = self.k_proj(h).view(b, s, self.kv, DH).transpose(1, 2)
        v = self.v_proj(h).view(b, s, self.kv, DH).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = torch.cat([pk, k], dim=-2), torch.cat([pv, v], dim=-2)
        kr, vr = repeat_kv(k, H // self.kv), repeat_kv(v, H // self.kv)
        w = torch.matmul(q, kr.transpose(2, 3)) / math.sqrt(DH) + mask
        w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        x = x + self.o_proj(torch.matmul(w, vr).transpose(1, 2).reshape(b, s, D))
        hh = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(hh)) * self.up_proj(hh)), k, v


class LlamaPastPositions(nn.Module):
    """LLaMA as Hugging Face has written it since 4.38, a step with a
    cache: position_ids an input, the rotary cos / sin computed once in the
    graph from inv_freq @ position_ids and handed to every layer, GQA 4 / 2
    cached after RoPE (repeat_kv after the concatenation), the 4-D mask of
    the new rows over P + S keys: a full finfo.min triu shifted by the
    cache positions, the padding merged in by masked_fill."""

    def __init__(self, kv=2):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList([LlamaLayer(kv) for _ in range(L)])
        self.norm = RmsNorm(D, 1e-6)
        self.lm_head = nn.Linear(D, VOCAB, bias=False)
        self.register_buffer("inv_freq", 1.0 / (10000.0 ** (torch.arange(0, DH, 2).float() / DH)),
                             persistent=False)

    def forward(self, input_ids, attention_mask, position_ids, pk0, pv0, pk1, pv1):
        b, s = input_ids.shape
        p = pk0.shape[2]
        t = p + s
        freqs = (self.inv_freq[None, :, None].expand(b, -1, 1) @
                 position_ids[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        cache_position = torch.arange(p, t)
        causal = torch.full((s, t), FMIN)
        causal = torch.triu(causal, diagonal=1)
        causal = causal * (torch.arange(t) > cache_position.reshape(-1, 1))
        causal = causal[None, None, :, :].expand(b, 1, -1, -1).clone()
        pad = (causal + attention_mask[:, None, None, :].to(causal.dtype)) == 0
        mask = causal.masked_fill(pad, FMIN)
        x, presents = run_layers(self.layers, self.embed_tokens(input_ids), (pk0, pv0, pk1, pv1),
                                 cos, sin, mask)
        return (self.lm_head(self.norm(x)),) + presents


# ----------------------------------------------------------------- GPT-J ----

class GptjPastBlock(make_zoo.GptjBlock):
    def forward(self, x, sin, cos, ext, pk, pv):
        b, s, _ = x.shape
        h = self.ln_1(x)
        q = self.rotary(self.q_proj(h).view(b, s, H, DH), sin, cos).permute(0, 2, 1, 3)
        k = self.rotary(self.k_proj(h).view(b, s, H, DH), sin, cos).permute(0, 2, 1, 3)
        v = split_heads(self.v_proj(h), H)
        k, v = torch.cat((pk, k), dim=-2), torch.cat((pv, v), dim=-2)
        present = (k.to(x.dtype), v)
        att = torch.matmul(q.float(), k.float().transpose(-1, -2))
        ql, kl = q.size(-2), k.size(-2)
        att = torch.where(self.bias[:, :, kl - ql:kl, :kl], att, torch.tensor(FMIN))
        att = (att / self.scale_attn + ext).softmax(-1)
        attn = self.out_proj(merge_heads(torch.matmul(att, v)))
        return (x + attn + self.fc_out(gelu_new(self.fc_in(h))),) + present


class GptjPast(make_zoo.Gptj):
    """GPT-J as a decoding step: parallel attention + MLP on ln_1,
    interleaved rotary on half of each head from a sincos buffer gathered
    by a position_ids input, the cache appended after the rotation, the
    present key given back as key.to(dtype) (a Cast of the concatenation),
    tril buffer sliced [k-q:k, :k] through where, ÷ a scale buffer, the
    padding (1 - m) * finfo.min over the P + S keys."""

    def __init__(self):
        super().__init__()
        self.h = nn.ModuleList([GptjPastBlock(DH // 2) for _ in range(L)])

    def forward(self, input_ids, attention_mask, position_ids, pk0, pv0, pk1, pv1):
        sincos = self.embed_positions[position_ids]
        sin, cos = torch.split(sincos, sincos.shape[-1] // 2, dim=-1)
        sin = torch.repeat_interleave(sin[:, :, None, :], 2, 3)
        cos = torch.repeat_interleave(cos[:, :, None, :], 2, 3)
        ext = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * FMIN
        x, presents = run_layers(self.h, self.wte(input_ids), (pk0, pv0, pk1, pv1), sin, cos, ext)
        return (self.lm_head(self.ln_f(x)),) + presents


# --------------------------------------------------------------- Whisper ----

class WhisperPastBlock(make_zoo.WhisperDecBlock):
    def heads(self, t):
        # [B, T, D] -> [B, H, T, dh] (Hugging Face's _shape)
        return t.view(t.shape[0], t.shape[1], H, DH).transpose(1, 2)

    def forward(self, x, causal, pk, pv, ek, ev):
        b, s, _ = x.shape
        h = self.self_attn_layer_norm(x)
        q = self.heads(self.p["q"](h) * DH ** -0.5).reshape(b * H, s, DH)
        k = torch.cat([pk, self.heads(self.p["k"](h))], dim=2)
        v = torch.cat([pv, self.heads(self.p["v"](h))], dim=2)
        t = k.shape[2]
        w = torch.bmm(q, k.reshape(b * H, t, DH).transpose(1, 2))
        w = (w.view(b, H, s, t) + causal).view(b * H, s, t)
        ctx = torch.bmm(w.softmax(-1), v.reshape(b * H, t, DH))
        x = x + self.p["o"](ctx.view(b, H, s, DH).transpose(1, 2).reshape(b, s, D))
        # cross-attention on the encoder's keys and values as cached
        h = self.encoder_attn_layer_norm(x)
        q = self.heads(self.p["cq"](h) * DH ** -0.5)
        w = torch.matmul(q, ek.transpose(2, 3)).softmax(-1)
        x = x + self.p["co"](torch.matmul(w, ev).transpose(1, 2).reshape(b, s, D))
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x)))), k, v


class WhisperDecoderWithPast(nn.Module):
    """Whisper's decoder as optimum exports decoder_with_past: the
    self-attention cache of each layer in and present out, the
    cross-attention's keys and values projected from the encoder once and
    given as inputs (no encoder_hidden_states), learned positions sliced
    at P .. P + S - 1, the causal mask of the new rows (-inf triu) with
    zeros for the P cached keys concatenated in front, (B*H, S, d) bmm."""

    def __init__(self):
        super().__init__()
        self.embed_tokens, self.embed_positions = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D)
        self.layers = nn.ModuleList([WhisperPastBlock() for _ in range(L)])
        self.layer_norm = nn.LayerNorm(D)

    def forward(self, input_ids, pk0, pv0, ek0, ev0, pk1, pv1, ek1, ev1):
        b, s = input_ids.shape
        p = pk0.shape[2]
        x = self.embed_tokens(input_ids) + self.embed_positions.weight[p:p + s]
        causal = torch.full((s, s), float("-inf")).triu(1)
        causal = torch.cat([torch.zeros(s, p), causal], dim=-1)
        presents = ()
        for layer, cache in zip(self.layers, ((pk0, pv0, ek0, ev0), (pk1, pv1, ek1, ev1))):
            x, k, v = layer(x, causal, *cache)
            presents += (k, v)
        return (torch.matmul(self.layer_norm(x), self.embed_tokens.weight.t()),) + presents


# ------------------------------------------------------------------ data ----

def step_inputs(seed, kv, later_new=1):
    """make(b, s) of make_zoo.export: (2, 7) is the first step (no past, 5
    prompt tokens, the last row padded 2 on the left), (3, 5) a later one
    (later_new tokens after 5 cached, the last row padded 2 on the left).
    Positions as generate() makes them: cumsum(mask) - 1, padding at 1."""
    def make(b, s):
        p, new = (0, 5) if s == 7 else (5, later_new)
        g = torch.Generator().manual_seed(seed + s)
        ids = torch.randint(2, VOCAB, (b, new), generator=g)
        mask = torch.ones(b, p + new, dtype=torch.long)
        mask[b - 1, :2] = 0
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)[:, p:].contiguous()
        cache = [torch.randn(b, kv, p, DH, generator=g) for _ in range(4)]
        return [ids, mask, pos] + cache
    return make


def step_axes(past, present):
    dyn = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "total"},
           "position_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}}
    dyn.update({n: {0: "batch", 2: "past"} for n in past})
    dyn.update({n: {0: "batch", 2: "total"} for n in present[1:]})
    return dyn


def whisper_inputs(seed):
    """make(b, s): (2, 7) the first step with the decoder cache empty (3
    tokens, the start of the transcript), (3, 5) one token after 4; the
    encoder's keys and values of s + 4 frames in both."""
    def make(b, s):
        p, new = (0, 3) if s == 7 else (4, 1)
        g = torch.Generator().manual_seed(seed + s)
        ids = torch.randint(2, VOCAB, (b, new), generator=g)
        caches = []
        for _ in range(L):
            caches += [torch.randn(b, H, p, DH, generator=g) for _ in range(2)]
            caches += [torch.randn(b, H, s + 4, DH, generator=g) for _ in range(2)]
        return [ids] + caches
    return make


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    make_zoo.PREFIXES.extend(sys.argv[2:])
    torch.manual_seed(0)
    ins = ["input_ids", "attention_mask", "position_ids"]
    past = ["past_key_0", "past_value_0", "past_key_1", "past_value_1"]
    present = ["logits", "present_key_0", "present_value_0", "present_key_1", "present_value_1"]
    dyn = step_axes(past, present)
    make_zoo.export(outdir, "k_gpt2_hf_posids_firststep_op14", Gpt2PastPositions(), 401,
                    step_inputs(41, H), ins + past, present, 14, dynamic=dyn)
    make_zoo.export(outdir, "k_llama_rope_posids_firststep_op17", LlamaPastPositions(kv=2), 402,
                    step_inputs(42, 2, later_new=2), ins + past, present, 17, dynamic=dyn)
    make_zoo.export(outdir, "k_gptj_castkey_posids_op14", GptjPast(), 403, step_inputs(43, H),
                    ins + past, present, 14, dynamic=dyn)
    cache = []
    for i in range(L):
        cache += ["past_key_values.%d.decoder.%s" % (i, n) for n in ("key", "value")]
        cache += ["past_key_values.%d.encoder.%s" % (i, n) for n in ("key", "value")]
    pres = ["logits"] + ["present.%d.decoder.%s" % (i, n) for i in range(L) for n in ("key", "value")]
    wdyn = {"input_ids": {0: "batch_size", 1: "decoder_sequence_length"},
            "logits": {0: "batch_size", 1: "decoder_sequence_length"}}
    wdyn.update({n: {0: "batch_size", 2: "past_decoder_sequence_length" if ".decoder." in n
                     else "encoder_sequence_length_out"} for n in cache})
    wdyn.update({n: {0: "batch_size", 2: "past_decoder_sequence_length + 1"} for n in pres[1:]})
    make_zoo.export(outdir, "k_whisper_dec_withpast_crosscache_op15", WhisperDecoderWithPast(), 404,
                    whisper_inputs(44), ["input_ids"] + cache, pres, 15, dynamic=wdyn)


if __name__ == "__main__":
    main()
