#!/usr/bin/env python3
"""make_zoo9.py -- round 9 of the whole-model corpus (tests/data/models).

f9_* cases: the five families the judges name -- BERT-base, DistilBERT,
GPT-2, LLaMA, T5 (encoder alone, and encoder-decoder fed decoder_input_ids)
-- written afresh from the published architectures (Hugging Face's
modelling code as it runs them: BertModel, DistilBertModel, GPT2LMHeadModel,
LlamaForCausalLM since 4.38, T5EncoderModel / T5ForConditionalGeneration),
with the real position tables (BERT / DistilBERT 512, GPT-2 1024 and its
[1, 1, 1024, 1024] causal buffer per layer, T5's 32 buckets over 128
positions, LLaMA's rotary from theta 10000) and the real head counts'
shape (d 64, 4 heads of 16; LLaMA 4 query / 2 key-value heads), 2 layers,
exported the ways a judge exports them: opsets 14 and 17, with and without
dynamic axes, with and without attention_mask, with token_type_ids where
the family has them, and with the weights as external data
(`onnx.save(.., save_as_external_data=True)`). The corpus keeps a
vocabulary of 1024 (every file under 3 MB); `--real-vocab` writes the same
cases with the published vocabularies (30522, 50257, 32000, 32128) for a
sweep outside the repository.

z9_* cases: families the earlier rounds do not write (see main()).

Each case has PyTorch's outputs for two data sets (batch 2 of 9 tokens, the
second row's last 3 padded; batch 3 of 6), the first only for a static
export.

    /usr/bin/python3 make_zoo9.py [--real-vocab] [--all-forms] [OUTDIR [PREFIX...]]

`--all-forms` writes the whole sweep of forms (5 families x 2 opsets x
static / dynamic x mask / none x external data / not, ~90 cases); without
it the subset the corpus keeps. Needs torch (1.13) and onnx (1.12); the
same bytes for the same versions.
"""
import math
import os
import sys

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from make_models import randomize
from make_variants import Conv1D, gelu_new, merge_heads as merge, split_heads as heads
from make_zoo import rel_bucket, write_sets

D, H, KV, FF, L = 64, 4, 2, 256, 2
DH = D // H
FMIN = torch.finfo(torch.float32).min
VOCAB = {"bert": 1024, "distilbert": 1024, "gpt2": 1024, "llama": 1024, "t5": 1024}
REAL_VOCAB = {"bert": 30522, "distilbert": 30522, "gpt2": 50257, "llama": 32000, "t5": 32128}
PREFIXES = []


class Inputs(nn.Module):
    """Calls the model with the named inputs a case exports (the others
    None, as a user calling model(input_ids=..) leaves them)."""

    def __init__(self, model, names):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args):
        return self.model(**dict(zip(self.names, args)))


# ------------------------------------------------------------------ BERT ----

class BertLayer(nn.Module):
    # BertSelfAttention + BertSelfOutput + BertIntermediate + BertOutput
    def __init__(self):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.attn_dense, self.attn_ln = nn.Linear(D, D), nn.LayerNorm(D, eps=1e-12)
        self.inter, self.out, self.out_ln = nn.Linear(D, FF), nn.Linear(FF, D), nn.LayerNorm(D, eps=1e-12)

    def forward(self, x, ext):
        q, k, v = heads(self.query(x), H), heads(self.key(x), H), heads(self.value(x), H)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(DH)
        probs = nn.functional.softmax(scores + ext, dim=-1)
        a = self.attn_ln(self.attn_dense(merge(torch.matmul(probs, v))) + x)
        return self.out_ln(self.out(F.gelu(self.inter(a))) + a)


class Bert(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.word, self.pos, self.types = nn.Embedding(vocab, D), nn.Embedding(512, D), nn.Embedding(2, D)
        self.register_buffer("position_ids", torch.arange(512).expand((1, -1)))
        self.register_buffer("token_type_buf", torch.zeros(1, 512, dtype=torch.long))
        self.ln = nn.LayerNorm(D, eps=1e-12)
        self.layers = nn.ModuleList([BertLayer() for _ in range(L)])
        self.pooler = nn.Linear(D, D)

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        b, s = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones((b, s))
        if token_type_ids is None:
            token_type_ids = self.token_type_buf[:, :s].expand(b, s)
        x = self.word(input_ids) + self.types(token_type_ids) + self.pos(self.position_ids[:, :s])
        x = self.ln(x)
        ext = attention_mask[:, None, None, :].to(torch.float32)
        ext = (1.0 - ext) * FMIN
        for layer in self.layers:
            x = layer(x, ext)
        return x, torch.tanh(self.pooler(x[:, 0]))


# ------------------------------------------------------------ DistilBERT ----

class DistilLayer(nn.Module):
    # MultiHeadSelfAttention + FFN, post-LN (sa_layer_norm, output_layer_norm)
    def __init__(self):
        super().__init__()
        self.q_lin, self.k_lin, self.v_lin, self.out_lin = (nn.Linear(D, D) for _ in range(4))
        self.sa_layer_norm = nn.LayerNorm(D, eps=1e-12)
        self.lin1, self.lin2 = nn.Linear(D, FF), nn.Linear(FF, D)
        self.output_layer_norm = nn.LayerNorm(D, eps=1e-12)

    def forward(self, x, mask):
        bs, k_len, _ = x.shape
        q = heads(self.q_lin(x), H) / math.sqrt(DH)
        k, v = heads(self.k_lin(x), H), heads(self.v_lin(x), H)
        scores = torch.matmul(q, k.transpose(2, 3))
        mask = (mask == 0).view(bs, 1, 1, k_len).expand_as(scores)
        scores = scores.masked_fill(mask, torch.tensor(torch.finfo(scores.dtype).min))
        ctx = merge(torch.matmul(nn.functional.softmax(scores, dim=-1), v))
        sa = self.sa_layer_norm(self.out_lin(ctx) + x)
        return self.output_layer_norm(self.lin2(F.gelu(self.lin1(sa))) + sa)


class DistilBert(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.word, self.pos = nn.Embedding(vocab, D), nn.Embedding(512, D)
        self.register_buffer("position_ids", torch.arange(512).expand((1, -1)), persistent=False)
        self.ln = nn.LayerNorm(D, eps=1e-12)
        self.layers = nn.ModuleList([DistilLayer() for _ in range(L)])

    def forward(self, input_ids, attention_mask=None):
        s = input_ids.size(1)
        if attention_mask is None:
            attention_mask = torch.ones(input_ids.shape)
        x = self.ln(self.word(input_ids) + self.pos(self.position_ids[:, :s]))
        for layer in self.layers:
            x = layer(x, attention_mask)
        return x


# ----------------------------------------------------------------- GPT-2 ----

class Gpt2Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(D, eps=1e-5), nn.LayerNorm(D, eps=1e-5)
        self.c_attn, self.c_proj = Conv1D(3 * D, D), Conv1D(D, D)
        self.c_fc, self.mlp_proj = Conv1D(FF, D), Conv1D(D, FF)
        self.register_buffer("bias", torch.tril(torch.ones((1024, 1024), dtype=torch.bool)).view(1, 1, 1024, 1024),
                             persistent=False)

    def attn(self, x, ext):
        q, k, v = self.c_attn(x).split(D, dim=2)
        q, k, v = heads(q, H), heads(k, H), heads(v, H)
        w = torch.matmul(q, k.transpose(-1, -2))
        w = w / torch.full([], v.size(-1) ** 0.5, dtype=w.dtype)
        q_len, k_len = q.size(-2), k.size(-2)
        causal = self.bias[:, :, k_len - q_len:k_len, :k_len]
        mask_value = torch.full([], torch.finfo(w.dtype).min, dtype=w.dtype)
        w = torch.where(causal, w.to(w.dtype), mask_value)
        if ext is not None:
            w = w + ext
        w = nn.functional.softmax(w, dim=-1)
        return self.c_proj(merge(torch.matmul(w, v)))

    def forward(self, x, ext):
        x = x + self.attn(self.ln_1(x), ext)
        return x + self.mlp_proj(gelu_new(self.c_fc(self.ln_2(x))))


class Gpt2(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, D), nn.Embedding(1024, D)
        self.h = nn.ModuleList([Gpt2Block() for _ in range(L)])
        self.ln_f = nn.LayerNorm(D, eps=1e-5)

    def forward(self, input_ids, attention_mask=None):
        s = input_ids.size(-1)
        position_ids = torch.arange(0, s, dtype=torch.long).unsqueeze(0)
        ext = None
        if attention_mask is not None:
            ext = attention_mask.view(input_ids.size(0), -1)[:, None, None, :].to(torch.float32)
            ext = (1.0 - ext) * torch.finfo(torch.float32).min
        x = self.wte(input_ids) + self.wpe(position_ids)
        for block in self.h:
            x = block(x, ext)
        return nn.functional.linear(self.ln_f(x), self.wte.weight)  # lm_head tied


# ----------------------------------------------------------------- LLaMA ----

class RMSNorm(nn.Module):
    def __init__(self, eps=1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(D)), eps

    def forward(self, x):
        var = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class LlamaLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(), RMSNorm()
        self.q_proj, self.o_proj = nn.Linear(D, H * DH, bias=False), nn.Linear(H * DH, D, bias=False)
        self.k_proj, self.v_proj = nn.Linear(D, KV * DH, bias=False), nn.Linear(D, KV * DH, bias=False)
        self.gate_proj, self.up_proj = nn.Linear(D, 172, bias=False), nn.Linear(D, 172, bias=False)
        self.down_proj = nn.Linear(172, D, bias=False)

    def forward(self, x, cos, sin, mask):
        h = self.input_layernorm(x)
        b, s, _ = h.shape
        q = self.q_proj(h).view(b, s, H, DH).transpose(1, 2)
        k = self.k_proj(h).view(b, s, KV, DH).transpose(1, 2)
        v = self.v_proj(h).view(b, s, KV, DH).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k = k[:, :, None, :, :].expand(b, KV, H // KV, s, DH).reshape(b, H, s, DH)  # repeat_kv
        v = v[:, :, None, :, :].expand(b, KV, H // KV, s, DH).reshape(b, H, s, DH)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(DH)
        w = w + mask[:, :, :, : k.shape[-2]]
        w = nn.functional.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        x = x + self.o_proj(torch.matmul(w, v).transpose(1, 2).contiguous().reshape(b, s, -1))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab, D)
        self.register_buffer("inv_freq", 1.0 / (10000.0 ** (torch.arange(0, DH, 2).float() / DH)),
                             persistent=False)
        self.layers = nn.ModuleList([LlamaLayer() for _ in range(L)])
        self.norm = RMSNorm()
        self.lm_head = nn.Linear(D, vocab, bias=False)

    def forward(self, input_ids, attention_mask=None):
        b, s = input_ids.shape
        x = self.embed_tokens(input_ids)
        cache_position = torch.arange(0, s)
        position_ids = cache_position.unsqueeze(0)
        # LlamaRotaryEmbedding.forward
        inv = self.inv_freq[None, :, None].float().expand(position_ids.shape[0], -1, 1)
        freqs = (inv @ position_ids[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        # _update_causal_mask
        causal = torch.full((s, s), fill_value=FMIN, dtype=torch.float32)
        causal = torch.triu(causal, diagonal=1)
        causal = causal * (torch.arange(s) > cache_position.reshape(-1, 1))
        causal = causal[None, None, :, :].expand(b, 1, -1, -1)
        if attention_mask is not None:
            causal = causal.clone()
            padding = causal[:, :, :, :s] + attention_mask[:, None, None, :]
            padding = padding == 0
            causal[:, :, :, :s] = causal[:, :, :, :s].masked_fill(padding, FMIN)
        for layer in self.layers:
            x = layer(x, cos, sin, causal)
        return self.lm_head(self.norm(x))


# -------------------------------------------------------------------- T5 ----

def t5_position_bias(table, q_len, k_len, bidirectional):
    """T5's relative attention bias [1, H, q, k]: 32 buckets over 128 positions."""
    rel = torch.arange(k_len)[None, :] - torch.arange(q_len)[:, None]
    return table(rel_bucket(rel, bidirectional, buckets=32, max_distance=128)).permute(2, 0, 1).unsqueeze(0)


class T5Attention(nn.Module):
    def __init__(self, has_bias, bidirectional):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(D, D, bias=False) for _ in range(4))
        self.bidirectional = bidirectional
        self.relative_attention_bias = nn.Embedding(32, H) if has_bias else None

    def forward(self, x, mask, kv=None, position_bias=None):
        src = x if kv is None else kv
        q, k, v = heads(self.q(x), H), heads(self.k(src), H), heads(self.v(src), H)
        scores = torch.matmul(q, k.transpose(3, 2))
        if position_bias is None:
            if self.relative_attention_bias is None:
                position_bias = torch.zeros((1, H, x.shape[1], src.shape[1]), dtype=scores.dtype)
            else:
                position_bias = t5_position_bias(self.relative_attention_bias, x.shape[1], src.shape[1],
                                                 self.bidirectional)
            position_bias = position_bias + mask
        scores += position_bias
        w = nn.functional.softmax(scores.float(), dim=-1).type_as(scores)
        return self.o(merge(torch.matmul(w, v))), position_bias


class T5Block(nn.Module):
    def __init__(self, first, decoder):
        super().__init__()
        self.sa_norm, self.sa = RMSNorm(), T5Attention(first, not decoder)
        self.cross_norm = RMSNorm() if decoder else None
        self.cross = T5Attention(False, True) if decoder else None
        self.ff_norm, self.wi, self.wo = RMSNorm(), nn.Linear(D, FF, bias=False), nn.Linear(FF, D, bias=False)

    def forward(self, x, mask, bias, enc=None, enc_mask=None, enc_bias=None):
        a, bias = self.sa(self.sa_norm(x), mask, position_bias=bias)
        x = x + a
        if self.cross is not None:
            a, enc_bias = self.cross(self.cross_norm(x), enc_mask, kv=enc, position_bias=enc_bias)
            x = x + a
        return x + self.wo(F.relu(self.wi(self.ff_norm(x)))), bias, enc_bias


class T5Stack(nn.Module):
    def __init__(self, decoder):
        super().__init__()
        self.block = nn.ModuleList([T5Block(i == 0, decoder) for i in range(L)])
        self.final_layer_norm = RMSNorm()
        self.decoder = decoder

    def forward(self, x, attention_mask, enc=None, enc_mask=None):
        b, s = x.shape[:2]
        if attention_mask is None:
            attention_mask = torch.ones(b, s)
        if self.decoder:  # get_extended_attention_mask of a decoder
            seq_ids = torch.arange(s)
            causal = seq_ids[None, None, :].repeat(b, s, 1) <= seq_ids[None, :, None]
            ext = causal.to(attention_mask.dtype)[:, None, :, :] * attention_mask[:, None, None, :]
        else:
            ext = attention_mask[:, None, None, :]
        ext = (1.0 - ext.to(torch.float32)) * FMIN
        enc_ext = None
        if enc is not None:
            enc_ext = (1.0 - enc_mask[:, None, None, :].to(torch.float32)) * FMIN
        bias = enc_bias = None
        for blk in self.block:
            x, bias, enc_bias = blk(x, ext, bias, enc, enc_ext, enc_bias)
        return self.final_layer_norm(x)


class T5Enc(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.shared, self.encoder = nn.Embedding(vocab, D), T5Stack(False)

    def forward(self, input_ids, attention_mask=None):
        return self.encoder(self.shared(input_ids), attention_mask)


class T5EncDec(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.shared, self.encoder, self.decoder = nn.Embedding(vocab, D), T5Stack(False), T5Stack(True)

    def forward(self, input_ids, attention_mask=None, decoder_input_ids=None):
        if attention_mask is None:
            attention_mask = torch.ones(input_ids.shape)
        enc = self.encoder(self.shared(input_ids), attention_mask)
        dec = self.decoder(self.shared(decoder_input_ids), None, enc, attention_mask)
        return nn.functional.linear(dec * D ** -0.5, self.shared.weight)  # tied lm_head


# ---------------------------------------------------------------- export ----

def token_data(vocab, seed, b, s, pad=3):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (b, s), generator=g)
    mask = torch.ones(b, s, dtype=torch.long)
    if pad:
        mask[b - 1, s - min(pad, s // 2):] = 0
    return ids, mask


def family_inputs(fam, vocab, names, seed):
    def make(b, s):
        ids, mask = token_data(vocab, seed + s, b, s)
        t = {"input_ids": ids, "attention_mask": mask,
             "token_type_ids": (torch.arange(s) >= (s + 1) // 2).long().expand(b, s).contiguous(),
             "decoder_input_ids": token_data(vocab, seed + 40 + s, b, s - 3, 0)[0]}
        return [t[n] for n in names]
    return make


def export_case(outdir, name, model, seed, make_inputs, in_names, out_names, opset, dynamic=True,
                external=False, sizes=((2, 9), (3, 6))):
    if PREFIXES and not any(name.startswith(p) for p in PREFIXES):
        return
    randomize(model, seed)
    model.eval()
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    sets = [make_inputs(*sizes[0])] + ([make_inputs(*sizes[1])] if dynamic else [])
    dyn = None
    if dynamic is True:
        dyn = {n: {0: "batch_size", 1: "sequence_length"} for n in in_names + out_names}
        if "decoder_input_ids" in in_names:
            dyn.update({n: {0: "batch_size", 1: "decoder_sequence_length"}
                        for n in ["decoder_input_ids"] + out_names})
        dyn.update({n: {0: "batch_size"} for n in out_names if n.startswith("pooler")})
    elif isinstance(dynamic, dict):
        dyn = dynamic
    path = os.path.join(d, "model.onnx")
    torch.onnx.export(model, tuple(sets[0]), path, input_names=in_names, output_names=out_names,
                      dynamic_axes=dyn, opset_version=opset, do_constant_folding=True)
    m = onnx.load(path)
    onnx.checker.check_model(m)
    if external:  # the weights beside the graph, as large models are saved
        for f in os.listdir(d):
            if f != "model.onnx" and os.path.isfile(os.path.join(d, f)):
                os.remove(os.path.join(d, f))
        onnx.save(m, path, save_as_external_data=True, all_tensors_to_one_file=True,
                  location="model.onnx.data", size_threshold=1024)
    write_sets(d, model, sets, in_names, out_names)


# family: (module, input name lists (the first the fullest), output names)
FAMILIES = {
    "bert": (Bert, [["input_ids", "attention_mask", "token_type_ids"], ["input_ids", "attention_mask"],
                    ["input_ids"]], ["last_hidden_state", "pooler_output"]),
    "distilbert": (DistilBert, [["input_ids", "attention_mask"], ["input_ids"]], ["last_hidden_state"]),
    "gpt2": (Gpt2, [["input_ids", "attention_mask"], ["input_ids"]], ["logits"]),
    "llama": (Llama, [["input_ids", "attention_mask"], ["input_ids"]], ["logits"]),
    "t5enc": (T5Enc, [["input_ids", "attention_mask"], ["input_ids"]], ["last_hidden_state"]),
    "t5": (T5EncDec, [["input_ids", "attention_mask", "decoder_input_ids"], ["input_ids", "decoder_input_ids"]],
           ["logits"]),
}


def form_name(fam, names, opset, dynamic, external):
    tag = {"input_ids": "ids", "attention_mask": "mask", "token_type_ids": "types", "decoder_input_ids": "dec"}
    parts = ["f9", fam, "".join(tag[n] if i == 0 else "_" + tag[n] for i, n in enumerate(names))]
    parts += ["dyn" if dynamic else "static"] + (["extdata"] if external else []) + ["op%d" % opset]
    return "_".join(parts)


# the forms the corpus keeps: each family at both opsets, static and
# dynamic, with and without its mask, once with external data
KEEP = {
    "bert": [(0, 14, True, False), (1, 17, False, False), (2, 17, True, True)],
    "distilbert": [(0, 17, True, False), (1, 14, False, True)],
    "gpt2": [(0, 14, True, True), (1, 17, True, False), (0, 17, False, False)],
    "llama": [(0, 17, True, False), (1, 14, True, True), (0, 14, False, False)],
    "t5enc": [(0, 14, True, True), (1, 17, False, False)],
    "t5": [(0, 17, True, False), (1, 14, True, True)],
}


def families(outdir, real_vocab, all_forms):
    for seed, (fam, (cls, name_lists, outs)) in enumerate(FAMILIES.items()):
        base = fam.replace("t5enc", "t5")
        vocab = (REAL_VOCAB if real_vocab else VOCAB)[base]
        forms = [(i, op, dyn, ext) for i in range(len(name_lists)) for op in (14, 17)
                 for dyn in (True, False) for ext in (False, True)] if all_forms else KEEP[fam]
        for i, opset, dyn, ext in forms:
            names = name_lists[i]
            torch.manual_seed(0)
            model = Inputs(cls(vocab), names)
            export_case(outdir, form_name(fam, names, opset, dyn, ext), model, 900 + seed,
                        family_inputs(base, vocab, names, 90 + seed), names, outs, opset, dynamic=dyn, external=ext)


# ------------------------------------------------------------------ z9_* ----
# d 32, 4 heads of 8, FFN 64, 2 layers, vocabulary 64, seeded

ZD, ZH, ZFF, ZV = 32, 4, 64, 64
ZDH = ZD // ZH


def zheads(x):
    return heads(x, ZH)


zmerge = merge


class ZBertLayer(nn.Module):
    """A post-LN BERT layer; `scores_hook(q, k, scores)` and `ctx_hook(probs, ctx)` add
    a family's terms."""

    def __init__(self, act=F.gelu, d=ZD):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-12), nn.LayerNorm(d, eps=1e-12)
        self.fc1, self.fc2, self.act = nn.Linear(d, ZFF), nn.Linear(ZFF, d), act

    def forward(self, x, ext, scores_hook=None, ctx_hook=None):
        q, k, v = zheads(self.q(x)), zheads(self.k(x)), zheads(self.v(x))
        scores = torch.matmul(q, k.transpose(-1, -2))
        if scores_hook is not None:
            scores = scores + scores_hook(q)
        probs = torch.softmax(scores / math.sqrt(q.shape[-1]) + ext, dim=-1)
        ctx = torch.matmul(probs, v)
        if ctx_hook is not None:
            ctx = ctx + ctx_hook(probs)
        a = self.ln1(self.o(zmerge(ctx)) + x)
        return self.ln2(self.fc2(self.act(self.fc1(a))) + a)


class Xlm(nn.Module):
    """XLM (XLMModel): learned positions, language embeddings from a `langs`
    input, layer_norm_emb, the padding's rows zeroed after the embeddings and
    after every layer (`tensor *= mask.unsqueeze(-1)`), q / sqrt(d) then
    `masked_fill(mask == 0, finfo.min)`, post-LN, GELU."""

    def __init__(self):
        super().__init__()
        self.position_embeddings, self.lang_embeddings = nn.Embedding(64, ZD), nn.Embedding(3, ZD)
        self.embeddings, self.layer_norm_emb = nn.Embedding(ZV, ZD), nn.LayerNorm(ZD, eps=1e-12)
        self.q, self.k, self.v, self.o = (nn.ModuleList([nn.Linear(ZD, ZD) for _ in range(L)]) for _ in range(4))
        self.ln1 = nn.ModuleList([nn.LayerNorm(ZD, eps=1e-12) for _ in range(L)])
        self.ffn1 = nn.ModuleList([nn.Linear(ZD, ZFF) for _ in range(L)])
        self.ffn2 = nn.ModuleList([nn.Linear(ZFF, ZD) for _ in range(L)])
        self.ln2 = nn.ModuleList([nn.LayerNorm(ZD, eps=1e-12) for _ in range(L)])

    def forward(self, input_ids, attention_mask, langs):
        bs, slen = input_ids.shape
        mask = attention_mask.to(torch.float32)
        positions = torch.arange(slen, dtype=torch.long).unsqueeze(0).expand((bs, slen))
        t = self.embeddings(input_ids) + self.position_embeddings(positions).expand_as(self.embeddings(input_ids))
        t = self.layer_norm_emb(t + self.lang_embeddings(langs))
        t *= mask.unsqueeze(-1).to(t.dtype)
        for i in range(L):
            q = zheads(self.q[i](t)) / math.sqrt(ZDH)
            k, v = zheads(self.k[i](t)), zheads(self.v[i](t))
            scores = torch.matmul(q, k.transpose(2, 3))
            m = (mask == 0).view(bs, 1, 1, slen).expand_as(scores)
            scores = scores.masked_fill(m, torch.finfo(scores.dtype).min)
            ctx = zmerge(torch.matmul(F.softmax(scores.float(), dim=-1).type_as(scores), v))
            t = self.ln1[i](t + self.o[i](ctx))
            t = self.ln2[i](t + self.ffn2[i](F.gelu(self.ffn1[i](t))))
            t *= mask.unsqueeze(-1).to(t.dtype)
        return t


def sinusoid_table(n, d):
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    t = torch.zeros(n, d)
    t[:, 0::2], t[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return t


class Nezha(nn.Module):
    """NEZHA: no absolute positions; functional relative positions -- a fixed
    sinusoid table of the clipped distances (max 8) gathered to [S, S, d]
    -- added to the scores through q (`einsum`) and to the context through
    the probabilities, token types, `(1 - m) * -10000`, post-LN."""

    def __init__(self):
        super().__init__()
        self.word, self.types = nn.Embedding(ZV, ZD), nn.Embedding(2, ZD)
        self.ln = nn.LayerNorm(ZD, eps=1e-12)
        self.layers = nn.ModuleList([ZBertLayer() for _ in range(L)])
        self.register_buffer("rel_table", sinusoid_table(2 * 8 + 1, ZDH))
        self.pooler = nn.Linear(ZD, ZD)

    def forward(self, input_ids, attention_mask, token_type_ids):
        s = input_ids.shape[1]
        x = self.ln(self.word(input_ids) + self.types(token_type_ids))
        r = torch.arange(s)
        dist = torch.clamp(r[None, :] - r[:, None], -8, 8) + 8
        rel = self.rel_table[dist]  # [S, S, dh]
        ext = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
        key_term = lambda q: torch.einsum("bhld,lrd->bhlr", q, rel)  # noqa: E731
        val_term = lambda p: torch.einsum("bhlr,lrd->bhld", p, rel)  # noqa: E731
        for layer in self.layers:
            x = layer(x, ext, key_term, val_term)
        return x, torch.tanh(self.pooler(x[:, 0]))


class RemBert(nn.Module):
    """RemBERT: input embeddings of 16 (word, position, type) LayerNorm'ed,
    then `embeddings_project` to d; BERT layers; `(1 - m) * finfo.min`."""

    def __init__(self):
        super().__init__()
        self.word, self.pos, self.types = nn.Embedding(ZV, 16), nn.Embedding(64, 16), nn.Embedding(2, 16)
        self.ln = nn.LayerNorm(16, eps=1e-12)
        self.project = nn.Linear(16, ZD)
        self.layers = nn.ModuleList([ZBertLayer() for _ in range(L)])

    def forward(self, input_ids, attention_mask, token_type_ids):
        s = input_ids.shape[1]
        pos = torch.arange(s).unsqueeze(0)
        x = self.project(self.ln(self.word(input_ids) + self.pos(pos) + self.types(token_type_ids)))
        ext = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * FMIN
        for layer in self.layers:
            x = layer(x, ext)
        return x


class BigBirdFull(nn.Module):
    """BigBird with attention_type original_full (what BigBirdModel runs, and
    what block_sparse falls back to below (5 + 2 r) * block tokens):
    positions from a buffer, rescale_embeddings off, gelu_new, post-LN, the
    extended mask `(1 - m) * finfo.min`, a pooler."""

    def __init__(self):
        super().__init__()
        self.word, self.pos, self.types = nn.Embedding(ZV, ZD), nn.Embedding(64, ZD), nn.Embedding(2, ZD)
        self.register_buffer("position_ids", torch.arange(64).expand((1, -1)))
        self.ln = nn.LayerNorm(ZD, eps=1e-12)
        self.layers = nn.ModuleList([ZBertLayer(act=gelu_new) for _ in range(L)])
        self.pooler = nn.Linear(ZD, ZD)

    def forward(self, input_ids, attention_mask, token_type_ids):
        s = input_ids.shape[1]
        x = self.word(input_ids) + self.types(token_type_ids) + self.pos(self.position_ids[:, :s])
        x = self.ln(x)
        ext = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * FMIN
        for layer in self.layers:
            x = layer(x, ext)
        return x, torch.tanh(self.pooler(x[:, 0]))


class ZT5Gated(nn.Module):
    """mT5 / ByT5 (T5 v1.1): gated-GELU FFN `wo(gelu_new(wi_0 x) * wi_1 x)`,
    the relative bias of the first layer shared, RMS norms, encoder and
    decoder in one graph, the lm_head untied (no d^-0.5), byte-level ids."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Embedding(ZV, ZD)
        self.enc_rel, self.dec_rel = nn.Embedding(32, ZH), nn.Embedding(32, ZH)
        mk = lambda: nn.ModuleList([nn.Linear(ZD, ZD, bias=False) for _ in range(L)])  # noqa: E731
        self.eq, self.ek, self.ev, self.eo = mk(), mk(), mk(), mk()
        self.dq, self.dk, self.dv, self.do = mk(), mk(), mk(), mk()
        self.cq, self.ck, self.cv, self.co = mk(), mk(), mk(), mk()
        mw = lambda n, a, b: nn.ModuleList([nn.Linear(a, b, bias=False) for _ in range(n)])  # noqa: E731
        self.ewi0, self.ewi1, self.ewo = mw(L, ZD, ZFF), mw(L, ZD, ZFF), mw(L, ZFF, ZD)
        self.dwi0, self.dwi1, self.dwo = mw(L, ZD, ZFF), mw(L, ZD, ZFF), mw(L, ZFF, ZD)
        self.norms = nn.Parameter(torch.ones(2 + 5 * L, ZD))
        self.lm_head = nn.Linear(ZD, ZV, bias=False)

    def rms(self, x, i):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.norms[i] * (x * torch.rsqrt(var + 1e-6))

    def attend(self, x, kv, q, k, v, o, bias):
        s = torch.matmul(zheads(q(x)), zheads(k(kv)).transpose(3, 2)) + bias
        return o(zmerge(torch.matmul(F.softmax(s.float(), dim=-1).type_as(s), zheads(v(kv)))))

    def forward(self, input_ids, attention_mask, decoder_input_ids):
        s, t = input_ids.shape[1], decoder_input_ids.shape[1]
        ext = (1.0 - attention_mask[:, None, None, :].float()) * FMIN
        x = self.shared(input_ids)
        eb = t5_position_bias(self.enc_rel, s, s, True) + ext
        for i in range(L):
            x = x + self.attend(self.rms(x, 5 * i), self.rms(x, 5 * i), self.eq[i], self.ek[i], self.ev[i],
                                self.eo[i], eb)
            h = self.rms(x, 5 * i + 1)
            x = x + self.ewo[i](gelu_new(self.ewi0[i](h)) * self.ewi1[i](h))
        enc = self.rms(x, 5 * L)
        causal = (torch.arange(t)[None, :] <= torch.arange(t)[:, None]).float()
        db = t5_position_bias(self.dec_rel, t, t, False) + (1.0 - causal) * FMIN
        y = self.shared(decoder_input_ids)
        for i in range(L):
            h = self.rms(y, 5 * i + 2)
            y = y + self.attend(h, h, self.dq[i], self.dk[i], self.dv[i], self.do[i], db)
            y = y + self.attend(self.rms(y, 5 * i + 3), enc, self.cq[i], self.ck[i], self.cv[i], self.co[i], ext)
            h = self.rms(y, 5 * i + 4)
            y = y + self.dwo[i](gelu_new(self.dwi0[i](h)) * self.dwi1[i](h))
        return self.lm_head(self.rms(y, 5 * L + 1))


class Speech2Text(nn.Module):
    """Speech2Text's encoder: input_features [B, T, 16] through the Conv1d
    subsampler (two convs of kernel 5, stride 2, padding 2, each followed by
    GLU over the channels), embeddings times sqrt(d), the fairseq sinusoid
    table gathered at positions from the subsampled mask (padding index 1),
    pre-LN layers with q scaled after its projection, (B·H, S, d) bmm, the
    padding `(1 - m) * finfo.min`, ReLU, a final LayerNorm."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv1d(16, 2 * 24, 5, 2, 2), nn.Conv1d(24, 2 * ZD, 5, 2, 2)
        half = ZD // 2
        emb = math.log(10000) / (half - 1)
        emb = torch.exp(torch.arange(half, dtype=torch.float) * -emb)
        emb = torch.arange(40, dtype=torch.float).unsqueeze(1) * emb.unsqueeze(0)
        emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=1)
        emb[1, :] = 0
        self.register_buffer("sinus", emb)
        self.layers = nn.ModuleList([nn.ModuleList([nn.LayerNorm(ZD), nn.Linear(ZD, ZD), nn.Linear(ZD, ZD),
                                                    nn.Linear(ZD, ZD), nn.Linear(ZD, ZD), nn.LayerNorm(ZD),
                                                    nn.Linear(ZD, ZFF), nn.Linear(ZFF, ZD)]) for _ in range(L)])
        self.layer_norm = nn.LayerNorm(ZD)

    def forward(self, input_features, attention_mask):
        x = input_features.transpose(1, 2)
        x = F.glu(self.conv1(x), dim=1)
        x = F.glu(self.conv2(x), dim=1).transpose(1, 2) * math.sqrt(ZD)
        # _get_feature_vector_attention_mask: the lengths through the convs
        lengths = attention_mask.sum(-1)
        for _ in range(2):
            lengths = torch.div(lengths - 1, 2, rounding_mode="floor") + 1
        b, s = x.shape[:2]
        mask = (torch.arange(s)[None, :] < lengths[:, None]).long()
        positions = (torch.cumsum(mask, dim=1) * mask) + 1
        x = x + self.sinus.index_select(0, positions.view(-1)).view(b, s, -1)
        ext = (1.0 - mask[:, None, None, :].float()) * FMIN
        for ln1, q, k, v, o, ln2, fc1, fc2 in self.layers:
            h = ln1(x)
            qh = (q(h) * ZDH ** -0.5).view(b, s, ZH, ZDH).transpose(1, 2).reshape(b * ZH, s, ZDH)
            kh = k(h).view(b, s, ZH, ZDH).transpose(1, 2).reshape(b * ZH, s, ZDH)
            vh = v(h).view(b, s, ZH, ZDH).transpose(1, 2).reshape(b * ZH, s, ZDH)
            w = torch.bmm(qh, kh.transpose(1, 2)).view(b, ZH, s, s) + ext
            w = F.softmax(w.view(b * ZH, s, s), dim=-1)
            a = torch.bmm(w, vh).view(b, ZH, s, ZDH).transpose(1, 2).reshape(b, s, ZD)
            x = x + o(a)
            x = x + fc2(F.relu(fc1(ln2(x))))
        return self.layer_norm(x)


class Vilt(nn.Module):
    """ViLT: BERT text embeddings (token types) and ViT patch embeddings
    (Conv 4 x 4 on 16 x 16, a CLS token, positions), each plus its modality
    type embedding, concatenated; the text mask and the image's ones joined
    into `(1 - m) * finfo.min`; pre-LN ViT layers (GELU), a final LayerNorm,
    a pooler on row 0."""

    def __init__(self):
        super().__init__()
        self.word, self.tpos, self.types = nn.Embedding(ZV, ZD), nn.Embedding(40, ZD), nn.Embedding(2, ZD)
        self.tln = nn.LayerNorm(ZD, eps=1e-12)
        self.patch = nn.Conv2d(3, ZD, 4, 4)
        self.cls = nn.Parameter(torch.zeros(1, 1, ZD))
        self.ipos = nn.Parameter(torch.zeros(1, 17, ZD))
        self.modality = nn.Embedding(2, ZD)
        self.blocks = nn.ModuleList([nn.ModuleList([nn.LayerNorm(ZD, eps=1e-12), nn.Linear(ZD, 3 * ZD),
                                                    nn.Linear(ZD, ZD), nn.LayerNorm(ZD, eps=1e-12),
                                                    nn.Linear(ZD, ZFF), nn.Linear(ZFF, ZD)]) for _ in range(L)])
        self.norm, self.pooler = nn.LayerNorm(ZD, eps=1e-12), nn.Linear(ZD, ZD)

    def forward(self, input_ids, attention_mask, token_type_ids, pixel_values):
        b, s = input_ids.shape
        t = self.word(input_ids) + self.types(token_type_ids) + self.tpos(torch.arange(s).unsqueeze(0))
        t = self.tln(t) + self.modality(torch.zeros_like(input_ids))
        p = self.patch(pixel_values).flatten(2).transpose(1, 2)
        p = torch.cat([self.cls.expand(b, -1, -1), p], dim=1) + self.ipos
        p = p + self.modality(torch.ones(p.shape[:2], dtype=torch.long))
        x = torch.cat([t, p], dim=1)
        m = torch.cat([attention_mask, torch.ones(p.shape[:2], dtype=attention_mask.dtype)], dim=1)
        ext = (1.0 - m[:, None, None, :].float()) * FMIN
        n = x.shape[1]
        for ln1, qkv, o, ln2, fc1, fc2 in self.blocks:
            q, k, v = qkv(ln1(x)).reshape(b, n, 3, ZH, ZDH).permute(2, 0, 3, 1, 4).unbind(0)
            w = F.softmax(q @ k.transpose(-2, -1) / math.sqrt(ZDH) + ext, dim=-1)
            x = x + o((w @ v).transpose(1, 2).reshape(b, n, ZD))
            x = x + fc2(F.gelu(fc1(ln2(x))))
        x = self.norm(x)
        return x, torch.tanh(self.pooler(x[:, 0]))


class TrOcr(nn.Module):
    """TrOCR / Donut-style: a ViT encoder over 16 x 16 images (Conv 4 x 4,
    CLS, positions, pre-LN) and TrOCR's text decoder: embeddings times
    sqrt(d), learned positions at arange + 2, layernorm_embedding, post-LN
    layers with causal self-attention (triu of finfo.min) and
    cross-attention to the image tokens without a mask, q scaled after its
    projection, bmm, ReLU, an output projection."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, ZD, 4, 4)
        self.cls, self.ipos = nn.Parameter(torch.zeros(1, 1, ZD)), nn.Parameter(torch.zeros(1, 17, ZD))
        self.enc = nn.ModuleList([nn.ModuleList([nn.LayerNorm(ZD), nn.Linear(ZD, ZD), nn.Linear(ZD, ZD),
                                                 nn.Linear(ZD, ZD), nn.Linear(ZD, ZD), nn.LayerNorm(ZD),
                                                 nn.Linear(ZD, ZFF), nn.Linear(ZFF, ZD)]) for _ in range(L)])
        self.enc_norm = nn.LayerNorm(ZD)
        self.embed_tokens, self.embed_positions = nn.Embedding(ZV, ZD), nn.Embedding(42, ZD)
        self.layernorm_embedding = nn.LayerNorm(ZD)
        lin = lambda: nn.Linear(ZD, ZD)  # noqa: E731
        self.dec = nn.ModuleList([nn.ModuleList([lin(), lin(), lin(), lin(), nn.LayerNorm(ZD),
                                                 lin(), lin(), lin(), lin(), nn.LayerNorm(ZD),
                                                 nn.Linear(ZD, ZFF), nn.Linear(ZFF, ZD), nn.LayerNorm(ZD)])
                                  for _ in range(L)])
        self.output_projection = nn.Linear(ZD, ZV, bias=False)

    @staticmethod
    def bmm_attn(x, kv, q, k, v, o, mask):
        b, t, _ = x.shape
        s = kv.shape[1]
        qh = (q(x) * ZDH ** -0.5).view(b, t, ZH, ZDH).transpose(1, 2).reshape(b * ZH, t, ZDH)
        kh = k(kv).view(b, s, ZH, ZDH).transpose(1, 2).reshape(b * ZH, s, ZDH)
        vh = v(kv).view(b, s, ZH, ZDH).transpose(1, 2).reshape(b * ZH, s, ZDH)
        w = torch.bmm(qh, kh.transpose(1, 2))
        if mask is not None:
            w = (w.view(b, ZH, t, s) + mask).view(b * ZH, t, s)
        w = F.softmax(w, dim=-1)
        return o(torch.bmm(w, vh).view(b, ZH, t, ZDH).transpose(1, 2).reshape(b, t, ZD))

    def forward(self, pixel_values, decoder_input_ids):
        b = pixel_values.shape[0]
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(b, -1, -1), x], dim=1) + self.ipos
        for ln1, q, k, v, o, ln2, fc1, fc2 in self.enc:
            h = ln1(x)
            x = x + self.bmm_attn(h, h, q, k, v, o, None)
            x = x + fc2(F.gelu(fc1(ln2(x))))
        enc = self.enc_norm(x)
        t = decoder_input_ids.shape[1]
        y = self.embed_tokens(decoder_input_ids) * math.sqrt(ZD)
        y = self.layernorm_embedding(y + self.embed_positions(torch.arange(t).unsqueeze(0) + 2))
        causal = torch.triu(torch.full((t, t), FMIN), 1)[None, None]
        for q, k, v, o, ln1, cq, ck, cv, co, ln2, fc1, fc2, ln3 in self.dec:
            y = ln1(y + self.bmm_attn(y, y, q, k, v, o, causal))
            y = ln2(y + self.bmm_attn(y, enc, cq, ck, cv, co, None))
            y = ln3(y + fc2(F.relu(fc1(y))))
        return self.output_projection(y)


def z9_text(seed, types=False, langs=False):
    def make(b, s):
        ids, mask = token_data(ZV, seed + s, b, s)
        out = [ids, mask]
        if types:
            out.append((torch.arange(s) >= (s + 1) // 2).long().expand(b, s).contiguous())
        if langs:  # a language per item
            out.append((torch.arange(b) % 3)[:, None].expand(b, s).contiguous())
        return out
    return make


def z9_encdec(seed):
    def make(b, s):
        ids, mask = token_data(ZV, seed + s, b, s)
        return [ids, mask, token_data(ZV, seed + 40 + s, b, s - 3, 0)[0]]
    return make


def z9_speech(seed):
    def make(b, s):  # 4 s frames of 16 features; the last item's last quarter padded
        g = torch.Generator().manual_seed(seed + s)
        mask = torch.ones(b, 4 * s, dtype=torch.long)
        mask[b - 1, 3 * s:] = 0
        return [torch.randn(b, 4 * s, 16, generator=g), mask]
    return make


def z9_vilt(seed):
    def make(b, s):
        g = torch.Generator().manual_seed(seed + s)
        return z9_text(seed, types=True)(b, s) + [torch.randn(b, 3, 16, 16, generator=g)]
    return make


def z9_trocr(seed):
    def make(b, s):
        g = torch.Generator().manual_seed(seed + s)
        return [torch.randn(b, 3, 16, 16, generator=g), token_data(ZV, seed + s, b, s, 0)[0]]
    return make


def zoo9(outdir):
    lm = ["input_ids", "attention_mask"]
    cases = [
        ("z9_xlm_langs_zeropad_op14", Xlm(), 1101, z9_text(501, langs=True), lm + ["langs"],
         ["last_hidden_state"], 14),
        ("z9_nezha_funcrel_keyvalue_op14", Nezha(), 1102, z9_text(502, types=True), lm + ["token_type_ids"],
         ["last_hidden_state", "pooler_output"], 14),
        ("z9_rembert_projemb_op17", RemBert(), 1103, z9_text(503, types=True), lm + ["token_type_ids"],
         ["last_hidden_state"], 17),
        ("z9_bigbird_full_gelunew_op14", BigBirdFull(), 1104, z9_text(504, types=True),
         lm + ["token_type_ids"], ["last_hidden_state", "pooler_output"], 14),
        ("z9_mt5_gated_untied_encdec_op17", ZT5Gated(), 1105, z9_encdec(505), lm + ["decoder_input_ids"],
         ["logits"], 17),
        ("z9_speech2text_convglu_op14", Speech2Text(), 1106, z9_speech(506), ["input_features", "attention_mask"],
         ["last_hidden_state"], 14),
        ("z9_vilt_textimage_op14", Vilt(), 1107, z9_vilt(507), lm + ["token_type_ids", "pixel_values"],
         ["last_hidden_state", "pooler_output"], 14),
        ("z9_trocr_vitenc_textdec_op14", TrOcr(), 1108, z9_trocr(508), ["pixel_values", "decoder_input_ids"],
         ["logits"], 14),
    ]
    for name, model, seed, make, ins, outs, opset in cases:
        dyn = True
        if name.startswith("z9_speech"):
            dyn = {"input_features": {0: "batch", 1: "frames"}, "attention_mask": {0: "batch", 1: "frames"},
                   "last_hidden_state": {0: "batch", 1: "seq"}}
        elif name.startswith("z9_vilt"):
            dyn = {n: {0: "batch", 1: "seq"} for n in lm + ["token_type_ids"]}
            dyn.update({"pixel_values": {0: "batch"}, "last_hidden_state": {0: "batch", 1: "rows"},
                        "pooler_output": {0: "batch"}})
        elif name.startswith("z9_trocr"):
            dyn = {"pixel_values": {0: "batch"}, "decoder_input_ids": {0: "batch", 1: "seq"},
                   "logits": {0: "batch", 1: "seq"}}
        torch.manual_seed(0)
        export_case(outdir, name, model, seed, make, ins, outs, opset, dynamic=dyn)


def main():
    args = sys.argv[1:]
    real_vocab, all_forms = "--real-vocab" in args, "--all-forms" in args
    args = [a for a in args if not a.startswith("--")]
    outdir = args[0] if args else os.path.dirname(os.path.abspath(__file__))
    PREFIXES.extend(args[1:])
    families(outdir, real_vocab, all_forms)
    if not real_vocab and not all_forms:
        zoo9(outdir)


if __name__ == "__main__":
    main()
