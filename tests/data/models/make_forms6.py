#!/usr/bin/env python3
"""make_forms6.py -- the export forms of the core families (f6_* cases of
tests/data/models), written afresh: BERT, DistilBERT, GPT-2 (also as
transformers < 4.21 wrote it, its causal buffer handed in by the caller),
LLaMA (GQA, rope_theta) and the T5 encoder, each exported by
torch.onnx.export at opsets 11 to 18 (18: exported at 17 and rewritten,
ReduceMean's axes an input), with and without constant folding, with
dynamic batch / sequence axes or fixed shapes, the attention mask an int64,
a bool or a float additive input, and GPT-2 / LLaMA with past key values.

Each case is d 32, 4 heads, FFN 64, 2 layers, vocabulary 64, seeded, kept
with PyTorch's outputs (two data sets when the axes are dynamic):

    f6_<name>/model.onnx
    f6_<name>/test_data_set_<k>/input_<i>.pb, output_<i>.pb

    /usr/bin/python3 make_forms6.py [OUTDIR [PREFIX...]]

Needs torch (1.13) and onnx (1.12); the same bytes for the same versions.
"""
import math
import os
import sys

import onnx
import torch
from torch import nn

from make_models import randomize
from make_zoo import write_sets

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "families"))
from generate import to_opset18  # noqa: E402

D, H, FF, L, VOCAB, MAXPOS = 32, 4, 64, 2, 64, 16
DH = D // H
FMIN = torch.finfo(torch.float32).min


# ---------------------------------------------------------------- pieces ----

def to_heads(x, h):
    """[B, S, h * DH] -> [B, h, S, DH]"""
    b, s, _ = x.shape
    return x.reshape(b, s, h, DH).transpose(1, 2)


def from_heads(x):
    """[B, h, S, DH] -> [B, S, h * DH]"""
    b, h, s, dh = x.shape
    return x.transpose(1, 2).reshape(b, s, h * dh)


class HandLayerNorm(nn.Module):
    """LayerNorm as mean / variance reductions (ReduceMean in the graph at
    every opset, so opset 18 gives it its axes as an input)."""

    def __init__(self, d, eps=1e-12):
        super().__init__()
        self.weight, self.bias, self.eps = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d)), eps

    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        var = (x - mu).pow(2).mean(-1, keepdim=True)
        return self.weight * (x - mu) / torch.sqrt(var + self.eps) + self.bias


class Rms(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def additive_from(mask, kind):
    """The caller's [B, S] mask as the [B, 1, 1, S] term added to the
    scores: int64 and bool keep where true / 1; float is additive already."""
    if kind == "float":
        return mask[:, None, None, :]
    keep = mask.bool() if kind == "bool" else mask[:, None, None, :].to(torch.float32)
    if kind == "bool":
        return torch.zeros(keep.shape, dtype=torch.float32).masked_fill(~keep, FMIN)[:, None, None, :]
    return (1.0 - keep) * FMIN


# ------------------------------------------------------------------ BERT ----

class BertBlock(nn.Module):
    """Post-LN: q / k / v Linears, softmax(q k^T / sqrt(d) + ext) v, erf GELU."""

    def __init__(self, hand_ln):
        super().__init__()
        norm = HandLayerNorm if hand_ln else (lambda d: nn.LayerNorm(d, eps=1e-12))
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        self.ln1, self.ln2 = norm(D), norm(D)
        self.up, self.down = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, ext):
        q, k, v = to_heads(self.q(x), H), to_heads(self.k(x), H), to_heads(self.v(x), H)
        w = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(DH) + ext
        a = self.o(from_heads(torch.matmul(torch.softmax(w, dim=-1), v)))
        x = self.ln1(x + a)
        return self.ln2(x + self.down(nn.functional.gelu(self.up(x))))


class Bert(nn.Module):
    def __init__(self, mask_kind, hand_ln=False):
        super().__init__()
        self.mask_kind = mask_kind
        self.tok, self.pos, self.seg = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D), nn.Embedding(2, D)
        self.ln = HandLayerNorm(D) if hand_ln else nn.LayerNorm(D, eps=1e-12)
        self.blocks = nn.ModuleList(BertBlock(hand_ln) for _ in range(L))
        self.pool = nn.Linear(D, D)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        pos = torch.arange(s).unsqueeze(0)
        x = self.ln(self.tok(input_ids) + self.pos(pos) + self.seg(torch.zeros_like(input_ids)))
        ext = additive_from(attention_mask, self.mask_kind)
        for b in self.blocks:
            x = b(x, ext)
        return x, torch.tanh(self.pool(x[:, 0]))


# ------------------------------------------------------------ DistilBERT ----

class DistilBlock(nn.Module):
    """q / sqrt(d) before q k^T, the mask (m == 0) expanded to the scores'
    shape and filled with finfo.min, post-LN, GELU."""

    def __init__(self):
        super().__init__()
        self.q_lin, self.k_lin, self.v_lin, self.out_lin = (nn.Linear(D, D) for _ in range(4))
        self.sa_layer_norm, self.output_layer_norm = nn.LayerNorm(D, eps=1e-12), nn.LayerNorm(D, eps=1e-12)
        self.lin1, self.lin2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, mask):
        b, s, _ = x.shape
        q = to_heads(self.q_lin(x), H) / math.sqrt(DH)
        k, v = to_heads(self.k_lin(x), H), to_heads(self.v_lin(x), H)
        w = torch.matmul(q, k.transpose(2, 3))
        hide = (mask == 0).view(b, 1, 1, s).expand_as(w)
        w = w.masked_fill(hide, FMIN)
        a = self.out_lin(from_heads(torch.matmul(nn.functional.softmax(w, dim=-1), v)))
        x = self.sa_layer_norm(a + x)
        return self.output_layer_norm(x + self.lin2(nn.functional.gelu(self.lin1(x))))


class Distil(nn.Module):
    def __init__(self):
        super().__init__()
        self.word, self.position = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D)
        self.norm = nn.LayerNorm(D, eps=1e-12)
        self.layer = nn.ModuleList(DistilBlock() for _ in range(L))

    def forward(self, input_ids, attention_mask):
        pos = torch.arange(input_ids.size(1), dtype=torch.long)[None, :]
        x = self.norm(self.word(input_ids) + self.position(pos))
        for blk in self.layer:
            x = blk(x, attention_mask)
        return x


# ----------------------------------------------------------------- GPT-2 ----

def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


class Gpt2Block(nn.Module):
    """Pre-LN, one c_attn Linear split in three, a tril bool buffer sliced
    [k - q:k, :k] through where (finfo.min, or -1e4 as before 4.21), the
    cache concatenated on the key axis."""

    def __init__(self, old):
        super().__init__()
        self.old = old
        self.ln_1, self.ln_2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.c_attn, self.c_proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.c_fc, self.mlp_proj = nn.Linear(D, FF), nn.Linear(FF, D)
        self.register_buffer("bias", torch.tril(torch.ones(MAXPOS, MAXPOS, dtype=torch.bool))[None, None])

    def forward(self, x, ext, past, causal):
        q, k, v = self.c_attn(self.ln_1(x)).split(D, dim=2)
        q, k, v = to_heads(q, H), to_heads(k, H), to_heads(v, H)
        if past is not None:
            k, v = torch.cat([past[0], k], dim=-2), torch.cat([past[1], v], dim=-2)
        w = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(DH)
        ql, kl = q.size(-2), k.size(-2)
        buf = self.bias if causal is None else causal
        fill = torch.tensor(-1e4 if self.old else FMIN)
        w = torch.where(buf[:, :, kl - ql:kl, :kl], w, fill)
        if ext is not None:
            w = w + ext
        x = x + self.c_proj(from_heads(torch.matmul(torch.softmax(w, dim=-1), v)))
        return x + self.mlp_proj(gelu_tanh(self.c_fc(self.ln_2(x)))), (k, v)


class Gpt2(nn.Module):
    """with_mask: the padding (1 - m) * finfo.min over the P + S keys;
    cache: past_key_values per layer in, present out; causal_input: the
    tril buffer [1, 1, MAXPOS, MAXPOS] bool a graph input shared by the
    layers (the caller passes the tril)."""

    def __init__(self, with_mask=False, cache=False, old=False, causal_input=False):
        super().__init__()
        self.with_mask, self.cache, self.causal_input = with_mask, cache, causal_input
        self.wte, self.wpe = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D)
        self.h = nn.ModuleList(Gpt2Block(old) for _ in range(L))
        self.ln_f = nn.LayerNorm(D)
        self.old = old

    def forward(self, input_ids, *rest):
        rest = list(rest)
        mask = rest.pop(0) if self.with_mask else None
        causal = rest.pop(0) if self.causal_input else None
        pasts = [(rest[2 * i], rest[2 * i + 1]) for i in range(L)] if self.cache else [None] * L
        p = pasts[0][0].size(-2) if self.cache else 0
        s = input_ids.size(1)
        x = self.wte(input_ids) + self.wpe(torch.arange(p, p + s)[None, :])
        ext = None
        if mask is not None:
            ext = (1.0 - mask[:, None, None, :].to(torch.float32)) * (-1e4 if self.old else FMIN)
        presents = []
        for blk, past in zip(self.h, pasts):
            x, kv = blk(x, ext, past, causal)
            presents += list(kv)
        logits = nn.functional.linear(self.ln_f(x), self.wte.weight)
        return (logits, *presents) if self.cache else logits


# ----------------------------------------------------------------- LLaMA ----

def rotate_half(x):
    a, b = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-b, a), dim=-1)


class LlamaBlock(nn.Module):
    """RMSNorm, rotate-half RoPE at positions P .. P + S - 1, GQA by expand
    + reshape after the cache, a triu causal term of finfo.min, SwiGLU."""

    def __init__(self, kvh):
        super().__init__()
        self.kvh = kvh
        self.q_proj = nn.Linear(D, D, bias=False)
        self.k_proj, self.v_proj = nn.Linear(D, kvh * DH, bias=False), nn.Linear(D, kvh * DH, bias=False)
        self.o_proj = nn.Linear(D, D, bias=False)
        self.gate, self.up, self.down = nn.Linear(D, FF, bias=False), nn.Linear(D, FF, bias=False), nn.Linear(FF, D, bias=False)
        self.n1, self.n2 = Rms(D), Rms(D)

    def rep(self, x):
        n = H // self.kvh
        if n == 1:
            return x
        b, kv, s, dh = x.shape
        return x[:, :, None].expand(b, kv, n, s, dh).reshape(b, kv * n, s, dh)

    def forward(self, x, cos, sin, bias, past):
        h = self.n1(x)
        q, k, v = to_heads(self.q_proj(h), H), to_heads(self.k_proj(h), self.kvh), to_heads(self.v_proj(h), self.kvh)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        w = torch.matmul(q, self.rep(k).transpose(2, 3)) / math.sqrt(DH) + bias
        a = torch.matmul(nn.functional.softmax(w, dim=-1, dtype=torch.float32), self.rep(v))
        x = x + self.o_proj(from_heads(a))
        h = self.n2(x)
        return x + self.down(nn.functional.silu(self.gate(h)) * self.up(h)), (k, v)


class Llama(nn.Module):
    def __init__(self, kvh=2, theta=10000.0, cache=False, with_mask=False, triu=True):
        super().__init__()
        self.cache, self.with_mask, self.triu = cache, with_mask, triu
        self.embed = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(LlamaBlock(kvh) for _ in range(L))
        self.norm = Rms(D)
        self.head = nn.Linear(D, VOCAB, bias=False)
        self.register_buffer("inv_freq", 1.0 / theta ** (torch.arange(0, DH, 2).float() / DH))

    def forward(self, input_ids, *rest):
        rest = list(rest)
        mask = rest.pop(0) if self.with_mask else None
        pasts = [(rest[2 * i], rest[2 * i + 1]) for i in range(L)] if self.cache else [None] * L
        p = pasts[0][0].size(2) if self.cache else 0
        s = input_ids.size(1)
        t = torch.arange(p, p + s, dtype=torch.float32)
        f = t[:, None] * self.inv_freq[None, :]
        e = torch.cat((f, f), dim=-1)
        cos, sin = e.cos()[None, None], e.sin()[None, None]
        if self.triu:
            bias = torch.triu(torch.full((s, p + s), FMIN), diagonal=p + 1)[None, None]
        else:  # Trilu is opset 14: the key index past the row's position
            future = torch.arange(p + s)[None, :] > torch.arange(p, p + s)[:, None]
            bias = torch.where(future, torch.tensor(FMIN), torch.tensor(0.0))[None, None]
        if mask is not None:
            bias = bias + (1.0 - mask[:, None, None, :].to(torch.float32)) * FMIN
            bias = bias.clamp(min=FMIN)
        x = self.embed(input_ids)
        presents = []
        for blk, past in zip(self.layers, pasts):
            x, kv = blk(x, cos, sin, bias, past)
            presents += list(kv)
        logits = self.head(self.norm(x))
        return (logits, *presents) if self.cache else logits


# ------------------------------------------------------------ T5 encoder ----

class T5Encoder(nn.Module):
    """The relative-position bias made in layer 0 (bucketed, bidirectional)
    and handed to every layer with the padding term, no 1 / sqrt(d), RMS
    norms, ReLU FFN, no biases."""

    def __init__(self, buckets=8, maxdist=20):
        super().__init__()
        self.buckets, self.maxdist = buckets, maxdist
        self.embed = nn.Embedding(VOCAB, D)
        self.rel = nn.Embedding(buckets, H)
        self.qkvo = nn.ModuleList(nn.ModuleList(nn.Linear(D, D, bias=False) for _ in range(4)) for _ in range(L))
        self.ffn = nn.ModuleList(nn.Sequential(nn.Linear(D, FF, bias=False), nn.ReLU(), nn.Linear(FF, D, bias=False))
                                 for _ in range(L))
        self.n1 = nn.ModuleList(Rms(D) for _ in range(L))
        self.n2 = nn.ModuleList(Rms(D) for _ in range(L))
        self.final = Rms(D)

    def bucket(self, rel):
        nb = self.buckets // 2
        ret = (rel > 0).long() * nb
        n = rel.abs()
        exact = nb // 2
        small = n < exact
        large = exact + (torch.log(n.float().clamp(min=1) / exact) / math.log(self.maxdist / exact)
                         * (nb - exact)).long()
        large = torch.min(large, torch.full_like(large, nb - 1))
        return ret + torch.where(small, n, large)

    def forward(self, input_ids, attention_mask):
        s = input_ids.size(1)
        ctx = torch.arange(s)[:, None]
        mem = torch.arange(s)[None, :]
        bias = self.rel(self.bucket(mem - ctx)).permute(2, 0, 1)[None]
        bias = bias + (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * FMIN
        x = self.embed(input_ids)
        for i in range(L):
            q, k, v, o = self.qkvo[i]
            h = self.n1[i](x)
            w = torch.matmul(to_heads(q(h), H), to_heads(k(h), H).transpose(3, 2)) + bias
            x = x + o(from_heads(torch.matmul(torch.softmax(w.float(), dim=-1), to_heads(v(h), H))))
            x = x + self.ffn[i](self.n2[i](x))
        return self.final(x)


# ----------------------------------------------------------------- cases ----

def ids_mask(g, b, s, kind, left=False):
    ids = torch.randint(2, VOCAB, (b, s), generator=g)
    m = torch.ones(b, s, dtype=torch.long)
    if b > 1:
        if left:
            m[b - 1, :2] = 0
        else:
            m[b - 1, s - 2:] = 0
    if kind == "bool":
        return ids, m.bool()
    if kind == "float":
        return ids, (1.0 - m.float()) * FMIN
    return ids, m


def save(outdir, name, model, seed, sets, in_names, out_names, opset, dyn, fold, keep_init=False):
    """sets: the input tuples (the first exports); dyn: the dynamic_axes
    or None for fixed shapes; keep_init: every weight a graph input too
    (keep_initializers_as_inputs, as exports before opset 9 wrote them)."""
    randomize(model, seed)
    model.eval()
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "model.onnx")
    with torch.no_grad():
        torch.onnx.export(model, tuple(sets[0]), path, input_names=in_names, output_names=out_names,
                          dynamic_axes=dyn, opset_version=min(opset, 17), do_constant_folding=fold,
                          keep_initializers_as_inputs=keep_init)
    if opset == 18:
        onnx.save(to_opset18(onnx.load(path)), path)
    else:
        onnx.checker.check_model(onnx.load(path))
    write_sets(d, model, sets if dyn else sets[:1], in_names, out_names)


BS = {0: "batch", 1: "sequence"}


def enc_case(outdir, name, model, seed, opset, kind, dynamic=True, fold=True, left=False, keep_init=False):
    g = torch.Generator().manual_seed(seed)
    outs = ("last_hidden_state", "pooler_output") if isinstance(model, Bert) else ("last_hidden_state",)
    sets = [ids_mask(g, 2, 7, kind, left), ids_mask(g, 3, 5, kind, left)]
    names = ["input_ids", "attention_mask"]
    dyn = None
    if dynamic:
        dyn = {n: BS for n in names + [outs[0]]}
        dyn.update({o: {0: "batch"} for o in outs[1:]})
    save(outdir, name, model, seed, sets, names, list(outs), opset, dyn, fold, keep_init)


def gpt2_case(outdir, name, model, seed, opset, dynamic=True, fold=True):
    """A causal input is the tril in sets 0 and 1; set 2 hands in a band of
    3 keys instead (each row sees itself and the 2 before): what the caller
    passes is what the layers read."""
    g = torch.Generator().manual_seed(seed)
    sets = []
    tril = torch.tril(torch.ones(MAXPOS, MAXPOS, dtype=torch.bool))
    for b, s, buf in ((2, 7, tril), (3, 5, tril), (2, 6, tril & ~torch.tril(tril, diagonal=-3))):
        if buf is not tril and not model.causal_input:
            continue
        ids, m = ids_mask(g, b, s, "int64", left=True)
        one = [ids] + ([m] if model.with_mask else [])
        if model.causal_input:
            one.append(buf[None, None])
        sets.append(one)
    names = ["input_ids"] + (["attention_mask"] if model.with_mask else []) + (["causal"] if model.causal_input else [])
    dyn = None
    if dynamic:
        dyn = {n: BS for n in names + ["logits"] if n != "causal"}
    save(outdir, name, model, seed, sets, names, ["logits"], opset, dyn, fold)


def past_case(outdir, name, model, seed, opset, kvh, fold=True):
    """Two sets: 5 new tokens after 3 cached (batch 2), 1 after 6 (batch 3);
    the mask covers the P + S keys (the second row padded on the left)."""
    g = torch.Generator().manual_seed(seed)
    sets = []
    for b, p, s in ((2, 3, 5), (3, 6, 1)):
        ids = torch.randint(2, VOCAB, (b, s), generator=g)
        m = torch.ones(b, p + s, dtype=torch.long)
        m[1, :2] = 0
        pasts = [torch.randn(b, kvh, p, DH, generator=g) for _ in range(2 * L)]
        sets.append([ids] + ([m] if model.with_mask else []) + pasts)
    pn = sum((["past_key_%d" % i, "past_value_%d" % i] for i in range(L)), [])
    on = sum((["present_key_%d" % i, "present_value_%d" % i] for i in range(L)), [])
    names = ["input_ids"] + (["attention_mask"] if model.with_mask else []) + pn
    dyn = {"input_ids": BS, "logits": BS}
    if model.with_mask:
        dyn["attention_mask"] = {0: "batch", 1: "total"}
    dyn.update({n: {0: "batch", 2: "past"} for n in pn})
    dyn.update({n: {0: "batch", 2: "total"} for n in on})
    save(outdir, name, model, seed, sets, names, ["logits"] + on, opset, dyn, fold)


CASES = [
    # BERT: the mask's type, opsets, folding, fixed shapes
    ("f6_bert_int64_op11", lambda o, n: enc_case(o, n, Bert("int64"), 601, 11, "int64")),
    ("f6_bert_bool_op13_nofold", lambda o, n: enc_case(o, n, Bert("bool"), 602, 13, "bool", fold=False)),
    ("f6_bert_float_op14_static", lambda o, n: enc_case(o, n, Bert("float"), 603, 14, "float", dynamic=False)),
    ("f6_bert_int64_op17_nofold", lambda o, n: enc_case(o, n, Bert("int64"), 604, 17, "int64", fold=False)),
    ("f6_bert_handln_float_op18", lambda o, n: enc_case(o, n, Bert("float", hand_ln=True), 605, 18, "float")),
    ("f6_bert_int64_op14_keepinit",
     lambda o, n: enc_case(o, n, Bert("int64"), 606, 14, "int64", keep_init=True)),
    # DistilBERT
    ("f6_distilbert_int64_op11", lambda o, n: enc_case(o, n, Distil(), 611, 11, "int64")),
    ("f6_distilbert_bool_op14_static", lambda o, n: enc_case(o, n, Distil(), 612, 14, "bool", dynamic=False)),
    ("f6_distilbert_int64_op18_nofold", lambda o, n: enc_case(o, n, Distil(), 613, 18, "int64", fold=False)),
    # GPT-2
    ("f6_gpt2_op11", lambda o, n: gpt2_case(o, n, Gpt2(), 621, 11)),
    ("f6_gpt2_mask_op13_nofold", lambda o, n: gpt2_case(o, n, Gpt2(with_mask=True), 622, 13, fold=False)),
    ("f6_gpt2_mask_op17_static", lambda o, n: gpt2_case(o, n, Gpt2(with_mask=True), 623, 17, dynamic=False)),
    ("f6_gpt2_past_mask_op14", lambda o, n: past_case(o, n, Gpt2(with_mask=True, cache=True), 624, 14, H)),
    ("f6_gpt2_past_op18", lambda o, n: past_case(o, n, Gpt2(cache=True), 625, 18, H)),
    # GPT-2 before 4.21, its causal buffer a graph input shared by the layers
    ("f6_gpt2_old_causalinput_op13", lambda o, n: gpt2_case(o, n, Gpt2(old=True, causal_input=True), 626, 13)),
    ("f6_gpt2_old_causalinput_mask_op14_nofold",
     lambda o, n: gpt2_case(o, n, Gpt2(old=True, with_mask=True, causal_input=True), 627, 14, fold=False)),
    ("f6_gpt2_past_op11_nofold", lambda o, n: past_case(o, n, Gpt2(cache=True), 628, 11, H, fold=False)),
    # LLaMA: GQA, rope_theta, cache
    ("f6_llama_gqa_op11", lambda o, n: gen_llama(o, n, Llama(kvh=2, triu=False), 631, 11)),
    ("f6_llama_mqa_theta5e5_op13_nofold", lambda o, n: gen_llama(o, n, Llama(kvh=1, theta=500000.0, triu=False), 632, 13, fold=False)),
    ("f6_llama_gqa_mask_op17_static", lambda o, n: gen_llama(o, n, Llama(kvh=2, with_mask=True), 633, 17, dynamic=False)),
    ("f6_llama_gqa_theta1e6_op18", lambda o, n: gen_llama(o, n, Llama(kvh=2, theta=1e6), 634, 18)),
    ("f6_llama_past_gqa_mask_op14", lambda o, n: past_case(o, n, Llama(kvh=2, cache=True, with_mask=True), 635, 14, 2)),
    ("f6_llama_past_mha_op17_nofold", lambda o, n: past_case(o, n, Llama(kvh=4, cache=True), 636, 17, 4, fold=False)),
    ("f6_llama_past_gqa_op13", lambda o, n: past_case(o, n, Llama(kvh=2, cache=True, triu=False), 637, 13, 2)),
    # T5 encoder: the bias of layer 0 shared
    ("f6_t5enc_op11", lambda o, n: enc_case(o, n, T5Encoder(), 641, 11, "int64")),
    ("f6_t5enc_op14_nofold", lambda o, n: enc_case(o, n, T5Encoder(), 642, 14, "int64", fold=False)),
    ("f6_t5enc_op17_static", lambda o, n: enc_case(o, n, T5Encoder(), 643, 17, "int64", dynamic=False)),
    ("f6_t5enc_op13_keepinit_nofold", lambda o, n: enc_case(o, n, T5Encoder(), 645, 13, "int64", fold=False, keep_init=True)),
    ("f6_t5enc_op18", lambda o, n: enc_case(o, n, T5Encoder(), 644, 18, "int64")),
]


def gen_llama(outdir, name, model, seed, opset, dynamic=True, fold=True):
    g = torch.Generator().manual_seed(seed)
    sets = []
    for b, s in ((2, 7), (3, 5)):
        ids, m = ids_mask(g, b, s, "int64", left=True)
        sets.append([ids] + ([m] if model.with_mask else []))
    names = ["input_ids"] + (["attention_mask"] if model.with_mask else [])
    dyn = {n: BS for n in names + ["logits"]} if dynamic else None
    save(outdir, name, model, seed, sets, names, ["logits"], opset, dyn, fold)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    prefixes = sys.argv[2:]
    torch.manual_seed(0)
    for name, make in CASES:
        if prefixes and not any(name.startswith(p) for p in prefixes):
            continue
        make(outdir, name)
        print(name)


if __name__ == "__main__":
    main()
