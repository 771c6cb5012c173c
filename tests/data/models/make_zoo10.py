#!/usr/bin/env python3
"""make_zoo10.py -- round 10 of the whole-model corpus (tests/data/models).

f10_* cases: the four models issue 15 measures (BERT-base, a MiniLM-L6
sentence embedder, ViT-B/16, GPT-2 small) written once more as a judge
writes them from the published architectures -- plain nn.Linear / nn.Conv2d
/ nn.LayerNorm modules, the masks as the papers' code makes them -- with
2 layers, exported with dynamic batch and sequence axes and with static
shapes, at opsets 14 and 17. In the corpus: d 64, 4 heads of 16, FFN 256,
vocabulary 512, images 32 x 32 in 8 x 8 patches. `--issue-widths OUTDIR`
writes the same eight cases at the issue's widths (d 768 / 384, 12 heads,
FFN 3072 / 1536, 224 x 224 images in 16 x 16 patches; 2 layers, a
vocabulary of 1024) outside the repository, to check what `mha info` fuses
and packs at those sizes.

z10_* cases: families the earlier rounds do not write (d 32, 4 heads of 8,
FFN 64, 2 layers, vocabulary 64): LED, Blenderbot, Data2Vec-text,
Transformer-XL with memory, SpeechT5's speech encoder, BigBird block_sparse
at lengths where it is sparse (see zoo10()).

Each case holds PyTorch's outputs for two data sets (a static export: the
first only).

    /usr/bin/python3 make_zoo10.py [--issue-widths] [OUTDIR [PREFIX...]]

Needs torch (1.13) and onnx (1.12); the same bytes for the same versions.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

import make_zoo3
import make_zoo9
from make_models import heads as split, merge as join
from make_variants import gelu_new
from make_zoo9 import export_case, token_data

FMIN = torch.finfo(torch.float32).min


# ------------------------------------------------------------------ f10_* ----

class Cfg:
    def __init__(self, d, heads, ffn, vocab, image, patch):
        self.d, self.heads, self.ffn, self.vocab, self.image, self.patch = d, heads, ffn, vocab, image, patch


SMALL = {m: Cfg(64, 4, 256, 512, 32, 8) for m in ("bert", "minilm", "vit", "gpt2")}
ISSUE = {"bert": Cfg(768, 12, 3072, 1024, 224, 16), "minilm": Cfg(384, 12, 1536, 1024, 224, 16),
         "vit": Cfg(768, 12, 3072, 1024, 224, 16), "gpt2": Cfg(768, 12, 3072, 1024, 224, 16)}


class EncoderBlock(nn.Module):
    """Attention Is All You Need's encoder block as BERT uses it: post-LN,
    erf GELU; `pre` makes it ViT's pre-LN block."""

    def __init__(self, c, pre=False, eps=1e-12):
        super().__init__()
        self.h, self.pre = c.heads, pre
        self.wq, self.wk, self.wv, self.wo = (nn.Linear(c.d, c.d) for _ in range(4))
        self.norm1, self.norm2 = nn.LayerNorm(c.d, eps=eps), nn.LayerNorm(c.d, eps=eps)
        self.up, self.down = nn.Linear(c.d, c.ffn), nn.Linear(c.ffn, c.d)

    def attention(self, x, bias):
        q, k, v = split(self.wq(x), self.h), split(self.wk(x), self.h), split(self.wv(x), self.h)
        att = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        if bias is not None:
            att = att + bias
        return self.wo(join(att.softmax(dim=-1) @ v))

    def forward(self, x, bias=None):
        if self.pre:
            x = x + self.attention(self.norm1(x), bias)
            return x + self.down(F.gelu(self.up(self.norm2(x))))
        x = self.norm1(x + self.attention(x, bias))
        return self.norm2(x + self.down(F.gelu(self.up(x))))


class JudgeBert(nn.Module):
    """BERT-base: word + learned position + segment embeddings, LayerNorm,
    `(1 - m[:, None, None, :]) * -10000`, post-LN blocks, tanh pooler."""

    def __init__(self, c):
        super().__init__()
        self.tok, self.pos, self.seg = nn.Embedding(c.vocab, c.d), nn.Embedding(512, c.d), nn.Embedding(2, c.d)
        self.norm = nn.LayerNorm(c.d, eps=1e-12)
        self.blocks = nn.ModuleList([EncoderBlock(c) for _ in range(2)])
        self.pool = nn.Linear(c.d, c.d)

    def encode(self, input_ids, attention_mask, token_type_ids):
        pos = torch.arange(input_ids.size(1), device=input_ids.device)[None, :]
        x = self.norm(self.tok(input_ids) + self.pos(pos) + self.seg(token_type_ids))
        bias = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
        for blk in self.blocks:
            x = blk(x, bias)
        return x

    def forward(self, input_ids, attention_mask, token_type_ids):
        x = self.encode(input_ids, attention_mask, token_type_ids)
        return x, torch.tanh(self.pool(x[:, 0]))


class JudgeMiniLM(JudgeBert):
    """A MiniLM-L6 sentence embedder as sentence-transformers runs it: the
    BERT encoder, mean pooling over the mask, then L2 normalisation."""

    def forward(self, input_ids, attention_mask, token_type_ids):
        x = self.encode(input_ids, attention_mask, token_type_ids)
        m = attention_mask.unsqueeze(-1).to(x.dtype)
        mean = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(mean, p=2, dim=1)


class JudgeVit(nn.Module):
    """ViT-B/16: a Conv2d of patch-sized stride, the CLS token prepended,
    learned positions, pre-LN blocks, a final LayerNorm, a Linear head on
    the CLS row (10 classes)."""

    def __init__(self, c):
        super().__init__()
        n = (c.image // c.patch) ** 2
        self.patches = nn.Conv2d(3, c.d, c.patch, c.patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, c.d))
        self.pos = nn.Parameter(torch.zeros(1, n + 1, c.d))
        self.blocks = nn.ModuleList([EncoderBlock(c, pre=True, eps=1e-6) for _ in range(2)])
        self.norm, self.head = nn.LayerNorm(c.d, eps=1e-6), nn.Linear(c.d, 10)

    def forward(self, pixel_values):
        x = self.patches(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.size(0), -1, -1), x], dim=1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.norm(x)[:, 0])


class Gpt2Block(nn.Module):
    """GPT-2's block: pre-LN, one qkv Linear split, the causal mask made
    from the length (`ones(S, S).tril()`) and filled with -inf, tanh GELU."""

    def __init__(self, c):
        super().__init__()
        self.h = c.heads
        self.ln1, self.ln2 = nn.LayerNorm(c.d), nn.LayerNorm(c.d)
        self.qkv, self.proj = nn.Linear(c.d, 3 * c.d), nn.Linear(c.d, c.d)
        self.fc, self.out = nn.Linear(c.d, c.ffn), nn.Linear(c.ffn, c.d)

    def forward(self, x):
        s = x.size(1)
        q, k, v = self.qkv(self.ln1(x)).split(x.size(2), dim=2)
        q, k, v = split(q, self.h), split(k, self.h), split(v, self.h)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(torch.ones(s, s).tril() == 0, float("-inf"))
        x = x + self.proj(join(F.softmax(att, dim=-1) @ v))
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class JudgeGpt2(nn.Module):
    """GPT-2 small: token + learned positions, the blocks, a final LayerNorm,
    logits by the token table (tied)."""

    def __init__(self, c):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(c.vocab, c.d), nn.Embedding(1024, c.d)
        self.blocks = nn.ModuleList([Gpt2Block(c) for _ in range(2)])
        self.ln_f = nn.LayerNorm(c.d)

    def forward(self, input_ids):
        pos = torch.arange(0, input_ids.size(1), dtype=torch.long).unsqueeze(0)
        x = self.wte(input_ids) + self.wpe(pos)
        for blk in self.blocks:
            x = blk(x)
        return F.linear(self.ln_f(x), self.wte.weight)


def f10_text(vocab, seed, types):
    def make(b, s):
        ids, mask = token_data(vocab, seed + s, b, s)
        out = [ids, mask]
        if types:
            out.append((torch.arange(s) >= (s + 1) // 2).long().expand(b, s).contiguous())
        return out
    return make


def f10_image(c, seed):
    def make(b, s):
        return [torch.randn(b, 3, c.image, c.image, generator=torch.Generator().manual_seed(seed + b))]
    return make


def f10_ids(vocab, seed):
    def make(b, s):
        return [token_data(vocab, seed + s, b, s, 0)[0]]
    return make


def issue_models(outdir, cfg):
    """The four models, each dynamic at opset 14 and static at 17 (the other
    two combinations too with --issue-widths)."""
    forms = [(True, 14), (False, 17)] + ([(True, 17), (False, 14)] if cfg is ISSUE else [])
    text = ["input_ids", "attention_mask", "token_type_ids"]
    for dyn, opset in forms:
        tag = "%s_op%d" % ("dyn" if dyn else "static", opset)
        cases = [
            ("f10_bert_ids_mask_types_" + tag, JudgeBert(cfg["bert"]), 1001, f10_text(cfg["bert"].vocab, 601, True),
             text, ["last_hidden_state", "pooler_output"]),
            ("f10_minilm_meannorm_" + tag, JudgeMiniLM(cfg["minilm"]), 1002,
             f10_text(cfg["minilm"].vocab, 602, True), text, ["sentence_embedding"]),
            ("f10_vit_cls_" + tag, JudgeVit(cfg["vit"]), 1003, f10_image(cfg["vit"], 603), ["pixel_values"],
             ["logits"]),
            ("f10_gpt2_tied_" + tag, JudgeGpt2(cfg["gpt2"]), 1004, f10_ids(cfg["gpt2"].vocab, 604), ["input_ids"],
             ["logits"]),
        ]
        for name, model, seed, make, ins, outs in cases:
            dynamic = False
            if dyn:
                seq = {0: "batch", 1: "sequence"}
                dynamic = {n: seq for n in ins}
                dynamic.update({n: {0: "batch"} for n in outs})
                if "vit" in name:
                    dynamic = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}
                elif "bert" in name or "gpt2" in name:
                    dynamic[outs[0]] = seq
            torch.manual_seed(0)
            export_case(outdir, name, model, seed, make, ins, outs, opset, dynamic=dynamic)


# ------------------------------------------------------------------ z10_* ----
# d 32, 4 heads of 8, FFN 64, 2 layers, vocabulary 64, seeded

ZD, ZH, ZFF, ZV = 32, 4, 64, 64
ZDH = ZD // ZH


def bmm_attention(x, mem, q, k, v, o, bias, scale=ZDH ** -0.5):
    """BART's attention: q scaled after its projection, the heads folded
    into the batch ([B * H, S, d]) for bmm, `bias` [B, 1 or H, S, T]."""
    b, s, _ = x.shape
    t = mem.size(1)
    qh = (q(x) * scale).view(b, s, ZH, ZDH).transpose(1, 2).reshape(b * ZH, s, ZDH)
    kh = k(mem).view(b, t, ZH, ZDH).transpose(1, 2).reshape(b * ZH, t, ZDH)
    vh = v(mem).view(b, t, ZH, ZDH).transpose(1, 2).reshape(b * ZH, t, ZDH)
    w = torch.bmm(qh, kh.transpose(1, 2))
    if bias is not None:
        w = (w.view(b, ZH, s, t) + bias).view(b * ZH, s, t)
    a = torch.bmm(F.softmax(w, dim=-1), vh)
    return o(a.view(b, ZH, s, ZDH).transpose(1, 2).reshape(b, s, ZD))


def expand_mask(mask, t):
    # _expand_mask / _prepare_4d_attention_mask: [B, S] -> [B, 1, T, S], finfo.min where hidden
    inv = 1.0 - mask[:, None, None, :].expand(mask.size(0), 1, t, mask.size(1)).float()
    return inv.masked_fill(inv.bool(), FMIN)


def causal_mask(t):
    # _make_causal_mask: finfo.min above the diagonal, [1, 1, T, T]
    m = torch.full((t, t), FMIN)
    cond = torch.arange(t)
    m = m.masked_fill(cond < (cond + 1).view(t, 1), 0.0)
    return m[None, None]


def attn_set():
    return nn.ModuleList([nn.Linear(ZD, ZD) for _ in range(4)])


class Led(nn.Module):
    """LED (Longformer-Encoder-Decoder): learned positions without offset,
    layernorm_embedding, post-LN. The encoder's attention is Longformer's:
    every row sees the keys within `W` either side and the global keys
    (`global_attention_mask`), the padding finfo.min, -inf outside the band,
    the padded rows' probabilities zeroed; the global rows are computed again
    with their own projections (query_global, key_global, value_global) over
    every unpadded key and replace the local ones. The decoder is BART's
    (causal, cross-attention under the encoder's padding); tied logits plus
    final_logits_bias."""

    W = 1

    def __init__(self):
        super().__init__()
        self.shared = nn.Embedding(ZV, ZD)
        self.epos, self.dpos = nn.Embedding(64, ZD), nn.Embedding(64, ZD)
        self.eln, self.dln = nn.LayerNorm(ZD), nn.LayerNorm(ZD)
        self.enc = nn.ModuleList([nn.ModuleDict({
            "local": attn_set(), "glob": nn.ModuleList([nn.Linear(ZD, ZD) for _ in range(3)]),
            "ln1": nn.LayerNorm(ZD), "fc1": nn.Linear(ZD, ZFF), "fc2": nn.Linear(ZFF, ZD), "ln2": nn.LayerNorm(ZD)})
            for _ in range(2)])
        self.dec = nn.ModuleList([nn.ModuleDict({
            "self": attn_set(), "ln1": nn.LayerNorm(ZD), "cross": attn_set(), "ln2": nn.LayerNorm(ZD),
            "fc1": nn.Linear(ZD, ZFF), "fc2": nn.Linear(ZFF, ZD), "ln3": nn.LayerNorm(ZD)}) for _ in range(2)])
        self.final_logits_bias = nn.Parameter(torch.zeros(1, ZV))

    def longformer(self, x, lyr, valid, is_global):
        b, s, _ = x.shape
        q, k, v, o = lyr["local"]
        qg, kg, vg = lyr["glob"]
        i = torch.arange(s)
        band = (i[:, None] - i[None, :]).abs() <= self.W
        seen = (band[None, None] | is_global[:, None, None, :])
        key_pad = (~valid)[:, None, None, :].float() * FMIN
        ql = split(q(x), ZH) / math.sqrt(ZDH)
        scores = (ql @ split(k(x), ZH).transpose(-1, -2)).masked_fill(~seen, float("-inf")) + key_pad
        probs = F.softmax(scores, dim=-1).masked_fill(~valid[:, None, :, None], 0.0)
        local = probs @ split(v(x), ZH)
        gq = split(qg(x), ZH) / math.sqrt(ZDH)
        gscores = (gq @ split(kg(x), ZH).transpose(-1, -2)).masked_fill(~valid[:, None, None, :], FMIN)
        glob = F.softmax(gscores, dim=-1) @ split(vg(x), ZH)
        return o(join(torch.where(is_global[:, None, :, None], glob, local)))

    def forward(self, input_ids, attention_mask, global_attention_mask, decoder_input_ids):
        s, t = input_ids.size(1), decoder_input_ids.size(1)
        valid, is_global = attention_mask.bool(), global_attention_mask.bool()
        x = self.eln(self.shared(input_ids) + self.epos(torch.arange(s)))
        for lyr in self.enc:
            x = lyr["ln1"](x + self.longformer(x, lyr, valid, is_global))
            x = lyr["ln2"](x + lyr["fc2"](F.gelu(lyr["fc1"](x))))
        y = self.dln(self.shared(decoder_input_ids) + self.dpos(torch.arange(t)))
        causal, cross = causal_mask(t), expand_mask(attention_mask, t)
        for lyr in self.dec:
            y = lyr["ln1"](y + bmm_attention(y, y, *lyr["self"], causal))
            y = lyr["ln2"](y + bmm_attention(y, x, *lyr["cross"], cross))
            y = lyr["ln3"](y + lyr["fc2"](F.gelu(lyr["fc1"](y))))
        return F.linear(y, self.shared.weight) + self.final_logits_bias


class Blenderbot(nn.Module):
    """Blenderbot: the shared table times sqrt(d), learned positions without
    offset, no layernorm_embedding, pre-LN layers (GELU), the encoder's and
    decoder's final LayerNorms, `_expand_mask` and `_make_causal_mask`
    (finfo.min), tied logits plus final_logits_bias."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Embedding(ZV, ZD)
        self.epos, self.dpos = nn.Embedding(64, ZD), nn.Embedding(64, ZD)
        self.enc = nn.ModuleList([nn.ModuleDict({
            "ln1": nn.LayerNorm(ZD), "self": attn_set(), "ln2": nn.LayerNorm(ZD),
            "fc1": nn.Linear(ZD, ZFF), "fc2": nn.Linear(ZFF, ZD)}) for _ in range(2)])
        self.dec = nn.ModuleList([nn.ModuleDict({
            "ln1": nn.LayerNorm(ZD), "self": attn_set(), "ln2": nn.LayerNorm(ZD), "cross": attn_set(),
            "ln3": nn.LayerNorm(ZD), "fc1": nn.Linear(ZD, ZFF), "fc2": nn.Linear(ZFF, ZD)}) for _ in range(2)])
        self.enc_norm, self.dec_norm = nn.LayerNorm(ZD), nn.LayerNorm(ZD)
        self.final_logits_bias = nn.Parameter(torch.zeros(1, ZV))

    def forward(self, input_ids, attention_mask, decoder_input_ids):
        s, t = input_ids.size(1), decoder_input_ids.size(1)
        scale = math.sqrt(ZD)
        x = self.shared(input_ids) * scale + self.epos(torch.arange(s))
        bias = expand_mask(attention_mask, s)
        for lyr in self.enc:
            h = lyr["ln1"](x)
            x = x + bmm_attention(h, h, *lyr["self"], bias)
            x = x + lyr["fc2"](F.gelu(lyr["fc1"](lyr["ln2"](x))))
        x = self.enc_norm(x)
        y = self.shared(decoder_input_ids) * scale + self.dpos(torch.arange(t))
        causal, cross = causal_mask(t), expand_mask(attention_mask, t)
        for lyr in self.dec:
            h = lyr["ln1"](y)
            y = y + bmm_attention(h, h, *lyr["self"], causal)
            y = y + bmm_attention(lyr["ln2"](y), x, *lyr["cross"], cross)
            y = y + lyr["fc2"](F.gelu(lyr["fc1"](lyr["ln3"](y))))
        return F.linear(self.dec_norm(y), self.shared.weight) + self.final_logits_bias


class Data2VecText(nn.Module):
    """Data2VecTextForMaskedLM: RoBERTa's embeddings (positions counted from
    the padding index 1 by cumsum of `ids != 1`, one token type), BERT
    layers under `(1 - m) * finfo.min`, and the masked-LM head: dense, GELU,
    LayerNorm, the decoder tied to the word table plus a bias."""

    def __init__(self):
        super().__init__()
        self.word, self.pos, self.types = nn.Embedding(ZV, ZD), nn.Embedding(40, ZD), nn.Embedding(1, ZD)
        self.ln = nn.LayerNorm(ZD, eps=1e-5)
        cfg = Cfg(ZD, ZH, ZFF, ZV, 0, 0)
        self.blocks = nn.ModuleList([EncoderBlock(cfg, eps=1e-5) for _ in range(2)])
        self.dense, self.head_ln = nn.Linear(ZD, ZD), nn.LayerNorm(ZD, eps=1e-5)
        self.bias = nn.Parameter(torch.zeros(ZV))

    def forward(self, input_ids, attention_mask):
        keep = input_ids.ne(1).int()
        positions = (torch.cumsum(keep, dim=1).type_as(keep) * keep).long() + 1
        x = self.word(input_ids) + self.types(torch.zeros_like(input_ids)) + self.pos(positions)
        x = self.ln(x)
        ext = (1.0 - attention_mask[:, None, None, :].float()) * FMIN
        for blk in self.blocks:
            x = blk(x, ext)
        h = self.head_ln(F.gelu(self.dense(x)))
        return F.linear(h, self.word.weight) + self.bias


class TransfoXl(nn.Module):
    """Transformer-XL: sequence first ([S, B] inside), an adaptive embedding
    of one cluster (width 24 projected to d, times sqrt(d)), a memory of
    earlier hidden states per layer ([M, B, D] inputs) concatenated before
    the keys, relative positions: sinusoids of the distances klen - 1 .. 0
    through r_net, the content term `(q + r_w_bias) . k` and the position
    term `(q + r_r_bias) . r` shifted by the zero-pad-and-view rel_shift,
    the causal mask `triu(ones(S, klen), 1 + M)` filled with -1e30, post-LN,
    ReLU FFN. Outputs the last hidden states [B, S, D] and each layer's new
    memory: its input concatenated after the old one, the last 4 rows."""

    MEM = 4

    def __init__(self):
        super().__init__()
        self.emb, self.emb_proj = nn.Embedding(ZV, 24), nn.Parameter(torch.zeros(ZD, 24))
        self.register_buffer("inv_freq", 1 / (10000 ** (torch.arange(0.0, ZD, 2.0) / ZD)))
        self.layers = nn.ModuleList([nn.ModuleDict({
            "qkv": nn.Linear(ZD, 3 * ZD, bias=False), "r": nn.Linear(ZD, ZD, bias=False),
            "o": nn.Linear(ZD, ZD, bias=False), "ln1": nn.LayerNorm(ZD), "ff1": nn.Linear(ZD, ZFF),
            "ff2": nn.Linear(ZFF, ZD), "ln2": nn.LayerNorm(ZD)}) for _ in range(2)])
        self.r_w_bias = nn.Parameter(torch.zeros(2, ZH, ZDH))
        self.r_r_bias = nn.Parameter(torch.zeros(2, ZH, ZDH))

    @staticmethod
    def rel_shift(x):
        # [S, K, B, H]: a zero column before the keys, viewed [K + 1, S], the first row dropped
        pad = torch.zeros((x.size(0), 1) + x.size()[2:], dtype=x.dtype)
        xp = torch.cat([pad, x], dim=1).view((x.size(1) + 1, x.size(0)) + x.size()[2:])
        return xp[1:].view_as(x)

    def attend(self, w, r, mask, mem, n):
        lyr = self.layers[n]
        qlen, b = w.size(0), w.size(1)
        cat = torch.cat([mem, w], 0)
        klen = cat.size(0)
        q, k, v = lyr["qkv"](cat).chunk(3, dim=-1)
        q = q[-qlen:].view(qlen, b, ZH, ZDH)
        k, v = k.view(klen, b, ZH, ZDH), v.view(klen, b, ZH, ZDH)
        rk = lyr["r"](r).view(klen, ZH, ZDH)
        ac = torch.einsum("ibnd,jbnd->ijbn", q + self.r_w_bias[n], k)
        bd = self.rel_shift(torch.einsum("ibnd,jnd->ijbn", q + self.r_r_bias[n], rk))
        score = (ac + bd) * (1 / ZDH ** 0.5)
        score = score.float().masked_fill(mask[:, :, None, None], -1e30)
        prob = F.softmax(score, dim=1)
        vec = torch.einsum("ijbn,jbnd->ibnd", prob, v).reshape(qlen, b, ZD)
        return lyr["ln1"](w + lyr["o"](vec))

    def forward(self, input_ids, mems_0, mems_1):
        ids = input_ids.transpose(0, 1).contiguous()
        qlen, mlen = ids.size(0), mems_0.size(0)
        klen = mlen + qlen
        w = F.linear(self.emb(ids), self.emb_proj) * ZD ** 0.5
        mask = torch.triu(torch.ones(qlen, klen, dtype=torch.bool), diagonal=1 + mlen)
        pos = torch.arange(klen - 1, -1, -1.0)
        inp = torch.outer(pos, self.inv_freq)
        r = torch.cat([inp.sin(), inp.cos()], dim=-1)[:, None, :]
        hids, new = [w], []
        for n, mem in enumerate((mems_0, mems_1)):
            w = self.attend(w, r, mask, mem, n)
            lyr = self.layers[n]
            w = lyr["ln2"](w + lyr["ff2"](F.relu(lyr["ff1"](w))))
            hids.append(w)
        for h, mem in zip(hids, (mems_0, mems_1)):
            new.append(torch.cat([mem, h], dim=0)[-self.MEM:])
        return (w.transpose(0, 1),) + tuple(new)


class SpeechT5Enc(make_zoo3.Wav2Vec2):
    """SpeechT5's speech encoder (SpeechT5ForSpeechToText's encoder): the
    speech prenet is wav2vec2's (make_zoo3.Wav2Vec2.embed: the Conv feature
    stack, the feature projection, the weight-normed positional Conv added),
    then the scaled sinusoids (alpha * pe), a LayerNorm, post-LN layers whose
    scores add the relative position term: q (scaled) times an embedding of
    the distances clipped at +-4 (pe_k, [S, S, d]) over (S, B * H, d)
    matmuls."""

    def __init__(self):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1))
        self.register_buffer("pe", make_zoo9.sinusoid_table(64, ZD)[None])
        self.pe_k = nn.Embedding(8, ZDH)
        self.layers = nn.ModuleList([nn.ModuleDict({
            "attn": attn_set(), "ln1": nn.LayerNorm(ZD), "fc1": nn.Linear(ZD, ZFF), "fc2": nn.Linear(ZFF, ZD),
            "ln2": nn.LayerNorm(ZD)}) for _ in range(2)])

    def forward(self, input_values):
        x = self.embed(input_values)
        b, s, _ = x.shape
        x = self.layer_norm(x + self.alpha * self.pe[:, :s])
        i = torch.arange(s)
        dist = (i[:, None] - i[None, :]).clamp(-4, 3) + 4
        pos_k = self.pe_k(dist)  # [S, S, dh]
        for lyr in self.layers:
            q, k, v, o = lyr["attn"]
            qh = (q(x) * ZDH ** -0.5).view(b, s, ZH, ZDH).transpose(1, 2).reshape(b * ZH, s, ZDH)
            kh = k(x).view(b, s, ZH, ZDH).transpose(1, 2).reshape(b * ZH, s, ZDH)
            vh = v(x).view(b, s, ZH, ZDH).transpose(1, 2).reshape(b * ZH, s, ZDH)
            w = torch.bmm(qh, kh.transpose(1, 2))
            rel = torch.matmul(qh.transpose(0, 1), pos_k.transpose(-2, -1)).transpose(0, 1)
            w = F.softmax(w + rel, dim=-1)
            a = torch.bmm(w, vh).view(b, ZH, s, ZDH).transpose(1, 2).reshape(b, s, ZD)
            x = lyr["ln1"](x + o(a))
            x = lyr["ln2"](x + lyr["fc2"](F.gelu(lyr["fc1"](x))))
        return x


class BigBirdSparse(nn.Module):
    """BigBird's block_sparse attention as BigBirdModel runs it in eval
    (blocks of 2, 1 random block, which eval draws as block 0): the first
    and last query blocks see every key; the second sees key blocks 0, 1, 2,
    the last and the random one, the second-to-last 0, nb - 3 .. nb - 1 and
    the random one; each middle block its 3 neighbours, the first, the
    random and the last; the padding `(1 - m) * -10000` per gathered key;
    padded rows' context zeroed. BERT embeddings, post-LN, gelu_new, pooler.
    Lengths of 16 and 20 tokens: more than the (5 + 2 r) blocks under which
    BigBird falls back to full attention."""

    BS = 2

    def __init__(self):
        super().__init__()
        self.word, self.pos, self.types = nn.Embedding(ZV, ZD), nn.Embedding(64, ZD), nn.Embedding(2, ZD)
        self.register_buffer("position_ids", torch.arange(64).expand((1, -1)))
        self.ln = nn.LayerNorm(ZD, eps=1e-12)
        self.layers = nn.ModuleList([nn.ModuleDict({
            "attn": attn_set(), "ln1": nn.LayerNorm(ZD, eps=1e-12), "fc1": nn.Linear(ZD, ZFF),
            "fc2": nn.Linear(ZFF, ZD), "ln2": nn.LayerNorm(ZD, eps=1e-12)}) for _ in range(2)])
        self.pooler = nn.Linear(ZD, ZD)

    def sparse(self, x, lyr, m):
        b, s, _ = x.shape
        q, k, v, o = lyr["attn"]
        bs, nb = self.BS, s // self.BS
        qh, kh, vh = split(q(x), ZH), split(k(x), ZH), split(v(x), ZH)
        qb, kb, vb = (t.reshape(b, ZH, nb, bs, ZDH) for t in (qh, kh, vh))
        mb = m.reshape(b, 1, nb, bs)

        def attend(qq, kk, vv, mm):
            w = qq @ kk.transpose(-1, -2) / math.sqrt(ZDH) + (1.0 - mm.unsqueeze(-2)) * -10000.0
            return F.softmax(w, dim=-1) @ vv

        every = m[:, None, :]
        first = attend(qb[:, :, 0], kh, vh, every)
        last = attend(qb[:, :, -1], kh, vh, every)

        def picks(idx):
            return (torch.cat([kb[:, :, j] for j in idx], dim=2), torch.cat([vb[:, :, j] for j in idx], dim=2),
                    torch.cat([mb[:, :, j] for j in idx], dim=2))

        second = attend(qb[:, :, 1], *picks([0, 1, 2, -1, 0]))
        second_last = attend(qb[:, :, -2], *picks([0, -3, -2, -1, 0]))
        mid = nb - 4

        def band(t):
            # [B, H | 1, nb, bs, ..] -> the middle blocks' keys: first, 3 neighbours, random, last
            edge = [t[:, :, :1].expand(t.shape[:2] + (mid,) + t.shape[3:]),
                    t[:, :, 1:-3], t[:, :, 2:-2], t[:, :, 3:-1],
                    t[:, :, :1].expand(t.shape[:2] + (mid,) + t.shape[3:]),
                    t[:, :, -1:].expand(t.shape[:2] + (mid,) + t.shape[3:])]
            return torch.cat(edge, dim=3)

        middle = attend(qb[:, :, 2:-2], band(kb), band(vb), band(mb))
        ctx = torch.cat([first[:, :, None], second[:, :, None], middle, second_last[:, :, None],
                         last[:, :, None]], dim=2).reshape(b, ZH, s, ZDH)
        return o(join(ctx * m[:, None, :, None]))

    def forward(self, input_ids, attention_mask, token_type_ids):
        s = input_ids.size(1)
        x = self.word(input_ids) + self.types(token_type_ids) + self.pos(self.position_ids[:, :s])
        x = self.ln(x)
        m = attention_mask.float()
        for lyr in self.layers:
            x = lyr["ln1"](x + self.sparse(x, lyr, m))
            x = lyr["ln2"](x + lyr["fc2"](gelu_new(lyr["fc1"](x))))
        return x, torch.tanh(self.pooler(x[:, 0]))


def z10_text(seed, types=False, pad_id=None, glob=False, dec=False):
    def make(b, s):
        ids, mask = token_data(ZV, seed + s, b, s)
        if pad_id is not None:
            ids = ids.masked_fill(mask == 0, pad_id)
        out = [ids, mask]
        if types:
            out.append((torch.arange(s) >= (s + 1) // 2).long().expand(b, s).contiguous())
        if glob:  # the first token global, and a second one in the first item
            g = torch.zeros(b, s, dtype=torch.long)
            g[:, 0] = 1
            g[0, s // 2] = 1
            out.append(g)
        if dec:
            out.append(token_data(ZV, seed + 40 + s, b, s - 3, 0)[0])
        return out
    return make


def z10_xl(seed):
    def make(b, s):
        g = torch.Generator().manual_seed(seed + s)
        m = s - 2  # a memory of 4 rows, then of 3
        return [token_data(ZV, seed + s, b, s, 0)[0], torch.randn(m, b, ZD, generator=g),
                torch.randn(m, b, ZD, generator=g)]
    return make


def z10_audio(seed):
    def make(b, s):  # 150 samples give 7 frames, 110 give 5
        return [torch.randn(b, 20 * s + 10, generator=torch.Generator().manual_seed(seed + s))]
    return make


def zoo10(outdir):
    lm = ["input_ids", "attention_mask"]
    encdec = {n: {0: "batch", 1: "seq"} for n in lm}
    encdec.update({"decoder_input_ids": {0: "batch", 1: "dec_seq"}, "logits": {0: "batch", 1: "dec_seq"}})
    led = dict(encdec, global_attention_mask={0: "batch", 1: "seq"})
    xl = {"input_ids": {0: "batch", 1: "seq"}, "last_hidden_state": {0: "batch", 1: "seq"}}
    xl.update({n: {0: "mem", 1: "batch"} for n in ("mems_0", "mems_1")})
    xl.update({n: {1: "batch"} for n in ("new_mems_0", "new_mems_1")})
    cases = [
        ("z10_led_localglobal_encdec_op14", Led(), 1201, z10_text(701, glob=True, dec=True),
         lm + ["global_attention_mask", "decoder_input_ids"], ["logits"], 14, led, ((2, 9), (3, 6))),
        ("z10_blenderbot_preln_encdec_op17", Blenderbot(), 1202, z10_text(702, dec=True),
         lm + ["decoder_input_ids"], ["logits"], 17, encdec, ((2, 9), (3, 6))),
        ("z10_data2vec_text_mlm_op14", Data2VecText(), 1203, z10_text(703, pad_id=1), lm, ["logits"], 14, True,
         ((2, 9), (3, 6))),
        ("z10_transfoxl_relmem_op14", TransfoXl(), 1204, z10_xl(704), ["input_ids", "mems_0", "mems_1"],
         ["last_hidden_state", "new_mems_0", "new_mems_1"], 14, xl, ((2, 6), (3, 5))),
        ("z10_speecht5_relpos_op14", SpeechT5Enc(), 1205, z10_audio(705), ["input_values"],
         ["last_hidden_state"], 14, {"input_values": {0: "batch", 1: "samples"},
                                     "last_hidden_state": {0: "batch", 1: "frames"}}, ((2, 7), (3, 5))),
        ("z10_bigbird_blocksparse_op14", BigBirdSparse(), 1206, z10_text(706, types=True),
         lm + ["token_type_ids"], ["last_hidden_state", "pooler_output"], 14, True, ((2, 16), (3, 20))),
    ]
    for name, model, seed, make, ins, outs, opset, dyn, sizes in cases:
        if dyn is True:
            dyn = {n: {0: "batch", 1: "seq"} for n in ins + outs}
            dyn.update({n: {0: "batch"} for n in outs if n.startswith("pooler")})
        torch.manual_seed(0)
        export_case(outdir, name, model, seed, make, ins, outs, opset, dynamic=dyn, sizes=sizes)


def main():
    args = sys.argv[1:]
    widths = "--issue-widths" in args
    args = [a for a in args if not a.startswith("--")]
    outdir = args[0] if args else os.path.dirname(os.path.abspath(__file__))
    make_zoo9.PREFIXES.extend(args[1:])
    issue_models(outdir, ISSUE if widths else SMALL)
    if not widths:
        zoo10(outdir)


if __name__ == "__main__":
    main()
