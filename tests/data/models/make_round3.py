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
- T5 encoder and decoder in one graph, decoder_input_ids an input; the
  same with dynamic_axes as index lists (every axis unnamed);
- DistilBERT for sequence classification with its own mask expansion
  (`(mask == 0).view(..).expand_as(scores)`, -inf or finfo.min);
- BERT with token_type_ids and a pooler; LLaMA-2 with a tied LM head at
  opset 18; GPT-2 with `labels` an input and a loss output.

    /usr/bin/python3 make_round3.py [CASE...]     the cases, into this folder

Each case is seeded: the same bytes for the same torch (1.13) and onnx.
"""
import math
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from onnx import numpy_helper

from make_models import save_case
from make_zoo import to_opset18
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


def case_t5_full_listaxes(g, B, S):
    # the same graph with dynamic_axes given as index lists: torch names
    # every axis apart ("input_ids_dynamic_axes_1", ...), six unnamed ones
    model, inputs, ins, outs, _, opset = case_t5_full(g, B, S)
    dyn = {n: [0, 1] for n in ins + outs}
    return model, inputs, ins, outs, dyn, opset


# ---- DistilBERT for sequence classification, its own mask expansion ---------
class DistilAttn(nn.Module):
    def __init__(self, d, h, fill):
        super().__init__()
        self.h, self.dh, self.fill = h, d // h, fill
        self.q_lin, self.k_lin = nn.Linear(d, d), nn.Linear(d, d)
        self.v_lin, self.out_lin = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, mask):
        bs, k_len, dim = x.size()
        shape = lambda t: t.view(bs, -1, self.h, self.dh).transpose(1, 2)
        q = shape(self.q_lin(x)) / math.sqrt(self.dh)
        scores = torch.matmul(q, shape(self.k_lin(x)).transpose(2, 3))
        m = (mask == 0).view(bs, 1, 1, k_len).expand_as(scores)
        scores = scores.masked_fill(m, self.fill)
        ctx = torch.matmul(nn.functional.softmax(scores, dim=-1), shape(self.v_lin(x)))
        return self.out_lin(ctx.transpose(1, 2).contiguous().view(bs, -1, self.h * self.dh))


class DistilBlock(nn.Module):
    def __init__(self, fill):
        super().__init__()
        self.attention, self.sa_layer_norm = DistilAttn(D, H, fill), nn.LayerNorm(D, eps=1e-12)
        self.lin1, self.lin2 = nn.Linear(D, FF), nn.Linear(FF, D)
        self.output_layer_norm = nn.LayerNorm(D, eps=1e-12)

    def forward(self, x, mask):
        x = self.sa_layer_norm(self.attention(x, mask) + x)
        return self.output_layer_norm(self.lin2(F.gelu(self.lin1(x))) + x)


class DistilBertCls(nn.Module):
    def __init__(self, fill):
        super().__init__()
        self.word, self.position = nn.Embedding(V, D), nn.Embedding(MAXPOS, D)
        self.ln = nn.LayerNorm(D, eps=1e-12)
        self.layer = nn.ModuleList(DistilBlock(fill) for _ in range(L))
        self.pre_classifier, self.classifier = nn.Linear(D, D), nn.Linear(D, 3)

    def forward(self, input_ids, attention_mask):
        pos = torch.arange(input_ids.size(1), dtype=torch.long).unsqueeze(0).expand_as(input_ids)
        x = self.ln(self.word(input_ids) + self.position(pos))
        for blk in self.layer:
            x = blk(x, attention_mask)
        return self.classifier(F.relu(self.pre_classifier(x[:, 0])))


def ids_mask_case(model, g, B, S, outs, opset, out_axes):
    ids = torch.randint(0, V, (B, S), generator=g)
    bs = {0: "batch_size", 1: "sequence_length"}
    dyn = {"input_ids": bs, "attention_mask": bs}
    dyn.update({o: a for o, a in zip(outs, out_axes)})
    return model, [ids, padded_mask(B, S)], ["input_ids", "attention_mask"], outs, dyn, opset


def case_distil_inf(g, B, S):
    return ids_mask_case(DistilBertCls(-float("inf")), g, B, S, ["logits"], 14, [{0: "batch_size"}])


def case_distil_fmin(g, B, S):
    return ids_mask_case(DistilBertCls(FMIN), g, B, S, ["logits"], 16, [{0: "batch_size"}])


# ---- BERT with token types and a pooler, post-LN, tanh pooler on [CLS] -----
class BertTT(nn.Module):
    def __init__(self):
        super().__init__()
        self.word, self.pos, self.tt = nn.Embedding(V, D), nn.Embedding(MAXPOS, D), nn.Embedding(2, D)
        self.ln = nn.LayerNorm(D, eps=1e-12)
        self.layer = nn.ModuleList(DistilBlock(FMIN) for _ in range(L))
        self.pooler = nn.Linear(D, D)

    def forward(self, input_ids, token_type_ids, attention_mask):
        s = input_ids.shape[1]
        x = self.ln(self.word(input_ids) + self.pos.weight[:s].unsqueeze(0) + self.tt(token_type_ids))
        for blk in self.layer:
            x = blk(x, attention_mask)
        return x, torch.tanh(self.pooler(x[:, 0]))


def case_bert_tt(g, B, S):
    ids = torch.randint(0, V, (B, S), generator=g)
    tt = (torch.arange(S)[None, :] >= S // 2).long().expand(B, S).contiguous()
    bs = {0: "batch", 1: "seq"}
    dyn = {"input_ids": bs, "token_type_ids": bs, "attention_mask": bs,
           "last_hidden_state": bs, "pooler_output": {0: "batch"}}
    return (BertTT(), [ids, tt, padded_mask(B, S)], ["input_ids", "token_type_ids", "attention_mask"],
            ["last_hidden_state", "pooler_output"], dyn, 14)


# ---- LLaMA-2 tiny: RMSNorm, rotary (rotate-half), SwiGLU, tied LM head -------
class Llama2Attn(nn.Module):
    def __init__(self):
        super().__init__()
        self.h, self.dh = H, D // H
        self.q_proj, self.k_proj = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.v_proj, self.o_proj = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        sp = lambda t: t.view(b, s, self.h, self.dh).transpose(1, 2)
        q, k, v = sp(self.q_proj(x)), sp(self.k_proj(x)), sp(self.v_proj(x))
        rot = lambda t: torch.cat((-t[..., self.dh // 2:], t[..., : self.dh // 2]), dim=-1)
        q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.dh) + mask
        w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        return self.o_proj(torch.matmul(w, v).transpose(1, 2).reshape(b, s, -1))


class RMS(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(D))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))


class Llama2Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_layernorm, self.self_attn = RMS(), Llama2Attn()
        self.post_attention_layernorm = RMS()
        self.gate_proj, self.up_proj = nn.Linear(D, FF, bias=False), nn.Linear(D, FF, bias=False)
        self.down_proj = nn.Linear(FF, D, bias=False)

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask)
        y = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(y)) * self.up_proj(y))


class Llama2Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(V, D)
        self.layers = nn.ModuleList(Llama2Block() for _ in range(L))
        self.norm = RMS()
        self.lm_head = nn.Linear(D, V, bias=False)
        self.lm_head.weight = self.embed_tokens.weight
        inv = 1.0 / (10000 ** (torch.arange(0, D // H, 2).float() / (D // H)))
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, input_ids, attention_mask):
        b, s = input_ids.shape
        t = torch.arange(s, dtype=torch.float32)
        emb = torch.cat((torch.outer(t, self.inv_freq),) * 2, dim=-1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        causal = torch.full((s, s), FMIN).triu(1)[None, None]
        pad = (1.0 - attention_mask[:, None, None, :].float()) * FMIN
        mask = torch.clamp(causal + pad, min=FMIN)
        x = self.embed_tokens(input_ids)
        for blk in self.layers:
            x = blk(x, cos, sin, mask)
        return self.lm_head(self.norm(x))


def case_llama2(g, B, S):
    bs = {0: "batch", 1: "seq"}
    return ids_mask_case(Llama2Tied(), g, B, S, ["logits"], 18, [bs])


# ---- GPT-2 with a loss output (labels an input) -----------------------------
class GPT2Loss(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, D), nn.Embedding(MAXPOS, D)
        self.blocks = nn.ModuleList(GPTBlock() for _ in range(L))
        self.ln_f = nn.LayerNorm(D)

    def forward(self, input_ids, labels):
        s = input_ids.size(1)
        x = self.wte(input_ids) + self.wpe(torch.arange(0, s, dtype=torch.long)[None])
        for blk in self.blocks:
            x = blk(x)
        logits = F.linear(self.ln_f(x), self.wte.weight)
        shift_logits, shift_labels = logits[..., :-1, :].contiguous(), labels[..., 1:].contiguous()
        loss = F.cross_entropy(shift_logits.view(-1, V), shift_labels.view(-1), ignore_index=-100)
        return loss, logits


class GPTBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.c_attn, self.c_proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.c_fc, self.mlp_proj = nn.Linear(D, 4 * D), nn.Linear(4 * D, D)
        self.register_buffer("bias", torch.tril(torch.ones(MAXPOS, MAXPOS)).view(1, 1, MAXPOS, MAXPOS))

    def forward(self, x):
        b, s, d = x.size()
        q, k, v = self.c_attn(self.ln_1(x)).split(D, dim=2)
        sp = lambda t: t.view(b, s, H, d // H).transpose(1, 2)
        q, k, v = sp(q), sp(k), sp(v)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :s, :s] == 0, float("-inf"))
        y = (F.softmax(att, dim=-1) @ v).transpose(1, 2).contiguous().view(b, s, d)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


def case_gpt2_loss(g, B, S):
    ids = torch.randint(0, V, (B, S), generator=g)
    labels = ids.clone()
    labels[1:, S - 4:] = -100  # padding not scored
    bs = {0: "batch", 1: "seq"}
    dyn = {"input_ids": bs, "labels": bs, "logits": bs}
    return GPT2Loss(), [ids, labels], ["input_ids", "labels"], ["loss", "logits"], dyn, 14


CASES = {
    "r_enc_rows_stride8_div8_head4_op14": (case_rows, 61),
    "r_t5dec_cross_mask_axis_apart_op14": (case_t5_dec_apart, 62),
    "r_t5_encdec_onegraph_tied_op14": (case_t5_full, 63),
    "r_t5_encdec_listaxes_op14": (case_t5_full_listaxes, 69),
    "r_distilbert_cls_expandinf_op14": (case_distil_inf, 64),
    "r_distilbert_cls_expandfmin_op16": (case_distil_fmin, 65),
    "r_bert_tokentypes_pooler_op14": (case_bert_tt, 66),
    "r_llama2_tied_lmhead_op18": (case_llama2, 67),
    "r_gpt2_labels_loss_op14": (case_gpt2_loss, 68),
}


# more test sets of a case, at these lengths (batch 2)
MORE_LENGTHS = {"r_enc_rows_stride8_div8_head4_op14": (3, 33), "r_t5_encdec_listaxes_op14": (7,)}


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
    save_case(outdir, name, model.eval(), inputs, ins, outs, dyn, min(opset, 17))
    if opset == 18:  # torch 1.13 exports up to 17: the graph rewritten as make_zoo.py does
        path = os.path.join(outdir, name, "model.onnx")
        onnx.save(to_opset18(onnx.load(path)), path)
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
