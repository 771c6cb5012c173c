#!/usr/bin/env python3
"""make_whole.py -- a second held-out rehearsal (w_* cases of tests/data/models).

Whole models written a fourth time from the published architectures, as a
user writes them, with coding choices the other generators do not make:

- BERT with separate q / k / v Linears, `masked_fill(mask[:, None, None, :] == 0,
  -inf)`, the softmax in float32 (`.float()` then back), tanh GELU, no token
  type input (type 0's row added as a vector), int32 ids, the mask and
  pooled mean as a second output, dynamic axes given as lists (unnamed);
- BERT with one packed qkv Linear viewed [B, S, 3, H, d] and indexed, a
  LayerNorm written by hand (`var(unbiased=False)`), erf GELU written by hand,
  `(1 - m) * -10000` on a float mask, pooler;
- DistilBERT with a sinusoid table buffer, `q / sqrt(d)`, the mask
  `(m == 0).view(B, 1, 1, S).expand_as(scores)` filled with -inf;
- GPT-2 with its Conv1D as `torch.addmm`, a uint8 tril buffer sliced
  [:, :, :S, :S] through `torch.where(.., masked_bias)`, right padding
  `(1 - m) * -10000`, tied head by `F.linear`, and a scoring head (log_softmax,
  gather of the next ids, times the mask);
- GPT-2 scoring by `F.cross_entropy(reduction="none")` of the shifted ids,
  the causal mask made in forward (`ones(S, S).tril()`), no mask input;
- ViT with `nn.MultiheadAttention` sequence first (batch_first False), the
  CLS token expanded and concatenated, another image size;
- ViT written by hand without qkv biases, LayerScale, mean pooling, at
  opset 17 (the LayerNormalization op);
- `nn.TransformerEncoder` as a causal LM (the square subsequent mask made in
  forward beside a key padding mask), GELU, post- and pre-norm;
- a LLaMA-style decoder: RMSNorm by rsqrt, Meta's interleaved rotary by
  unbind / stack, GQA by expand + reshape, SwiGLU, a triu(-inf) causal term.

    python3 make_whole.py                 the tiny cases, into this folder
    python3 make_whole.py OUTDIR full     BERT-base, GPT-2 small and ViT-B/16 shapes

Each case is seeded: the same bytes for the same torch (1.13) and onnx.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

from make_models import save_case


def seeded_init(model, seed, std):
    # random LayerNorm gains and biases test more than nn's 1 / 0
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if p.dim() >= 2:
                p.copy_(r * std)
            elif name.endswith("gain") or name.endswith("norm.weight") or name.endswith("ln.weight"):
                p.copy_(1.0 + 0.1 * r)
            else:
                p.copy_(r * 0.1)


def padded_mask(B, S, dtype=torch.int64, left=False):
    # row b keeps S - 2 b tokens (at least 1)
    m = torch.ones(B, S, dtype=dtype)
    for b in range(1, B):
        n = max(1, S - 2 * b)
        if left:
            m[b, :S - n] = 0
        else:
            m[b, n:] = 0
    return m


# ---- BERT, separate q / k / v, -inf masked_fill, float32 softmax, tanh GELU --
class SepSelfAttention(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h, self.dh = h, d // h
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def split(self, t):
        b, s, _ = t.size()
        return t.view(b, s, self.h, self.dh).transpose(1, 2)

    def forward(self, x, mask):
        q, k, v = self.split(self.q_proj(x)), self.split(self.k_proj(x)), self.split(self.v_proj(x))
        scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.dh)
        scores = scores.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
        probs = scores.float().softmax(dim=-1).type_as(v)
        ctx = torch.matmul(probs, v).transpose(1, 2).contiguous()
        return self.out_proj(ctx.view(x.size(0), x.size(1), -1))


class PostNormLayer(nn.Module):
    def __init__(self, d, h, f, act):
        super().__init__()
        self.attn = SepSelfAttention(d, h)
        self.attn_norm = nn.LayerNorm(d, eps=1e-12)
        self.ff = nn.Sequential(nn.Linear(d, f), act, nn.Linear(f, d))
        self.ff_norm = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x, mask):
        x = self.attn_norm(x + self.attn(x, mask))
        return self.ff_norm(x + self.ff(x))


class BertNoTypes(nn.Module):
    def __init__(self, L, d, h, f, vocab, maxpos):
        super().__init__()
        self.word = nn.Embedding(vocab, d)
        self.position = nn.Embedding(maxpos, d)
        self.token_type = nn.Embedding(2, d)
        self.emb_norm = nn.LayerNorm(d, eps=1e-12)
        self.layers = nn.ModuleList([PostNormLayer(d, h, f, nn.GELU(approximate="tanh")) for _ in range(L)])

    def forward(self, input_ids, attention_mask):
        S = input_ids.size(1)
        x = self.word(input_ids) + self.position.weight[:S].unsqueeze(0) + self.token_type.weight[0]
        x = self.emb_norm(x)
        for layer in self.layers:
            x = layer(x, attention_mask)
        m = attention_mask.unsqueeze(-1).to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return x, pooled


# ---- BERT, packed qkv viewed [B, S, 3, H, d], hand LayerNorm and erf GELU ----
class HandLayerNorm(nn.Module):
    def __init__(self, d, eps=1e-12):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(d))
        self.shift = nn.Parameter(torch.zeros(d))
        self.eps = eps

    def forward(self, x):
        mu = x.mean(-1, keepdim=True)
        var = x.var(-1, keepdim=True, unbiased=False)
        return (x - mu) / torch.sqrt(var + self.eps) * self.gain + self.shift


def erf_gelu(x):
    return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


class PackedLayer(nn.Module):
    def __init__(self, d, h, f):
        super().__init__()
        self.h = h
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln1 = HandLayerNorm(d)
        self.up = nn.Linear(d, f)
        self.down = nn.Linear(f, d)
        self.ln2 = HandLayerNorm(d)

    def forward(self, x, bias):
        B, S, D = x.shape
        qkv = self.qkv(x).view(B, S, 3, self.h, D // self.h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        a = torch.softmax(q @ k.transpose(-1, -2) * (D // self.h) ** -0.5 + bias, dim=-1)
        x = self.ln1(x + self.proj((a @ v).permute(0, 2, 1, 3).reshape(B, S, D)))
        return self.ln2(x + self.down(erf_gelu(self.up(x))))


class BertPacked(nn.Module):
    def __init__(self, L, d, h, f, vocab, maxpos):
        super().__init__()
        self.word = nn.Embedding(vocab, d)
        self.position = nn.Embedding(maxpos, d)
        self.segment = nn.Embedding(2, d)
        self.ln = HandLayerNorm(d)
        self.layers = nn.ModuleList([PackedLayer(d, h, f) for _ in range(L)])
        self.pool = nn.Sequential(nn.Linear(d, d), nn.Tanh())

    def forward(self, input_ids, token_type_ids, attention_mask):
        pos = torch.arange(input_ids.shape[1]).expand_as(input_ids)
        x = self.ln(self.word(input_ids) + self.position(pos) + self.segment(token_type_ids))
        bias = (1.0 - attention_mask[:, None, None, :]) * -10000.0
        for layer in self.layers:
            x = layer(x, bias)
        return x, self.pool(x[:, 0, :])


# ---- DistilBERT, sinusoid buffer, q / sqrt(d), expand_as + masked_fill(-inf) --
def sinusoid(n, d):
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    t = torch.zeros(n, d)
    t[:, 0::2] = torch.sin(pos * div)
    t[:, 1::2] = torch.cos(pos * div)
    return t


class DistilAttention(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.n_heads, self.dim = h, d
        self.q_lin, self.k_lin, self.v_lin, self.out_lin = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, mask):
        bs, q_len, dim = x.size()
        dh = dim // self.n_heads

        def shape(t):
            return t.view(bs, -1, self.n_heads, dh).transpose(1, 2)

        q = shape(self.q_lin(x)) / math.sqrt(dh)
        scores = torch.matmul(q, shape(self.k_lin(x)).transpose(2, 3))
        mask = (mask == 0).view(bs, 1, 1, q_len).expand_as(scores)
        scores = scores.masked_fill(mask, -float("inf"))
        w = nn.functional.softmax(scores, dim=-1)
        ctx = torch.matmul(w, shape(self.v_lin(x))).transpose(1, 2).contiguous().view(bs, -1, dim)
        return self.out_lin(ctx)


class DistilBlock(nn.Module):
    def __init__(self, d, h, f):
        super().__init__()
        self.attention = DistilAttention(d, h)
        self.sa_layer_norm = nn.LayerNorm(d, eps=1e-12)
        self.lin1, self.lin2 = nn.Linear(d, f), nn.Linear(f, d)
        self.output_layer_norm = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x, mask):
        x = self.sa_layer_norm(self.attention(x, mask) + x)
        return self.output_layer_norm(self.lin2(F.gelu(self.lin1(x))) + x)


class DistilSinus(nn.Module):
    def __init__(self, L, d, h, f, vocab, maxpos):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, d)
        self.register_buffer("pos_table", sinusoid(maxpos, d))
        self.LayerNorm = nn.LayerNorm(d, eps=1e-12)
        self.layer = nn.ModuleList([DistilBlock(d, h, f) for _ in range(L)])

    def forward(self, input_ids, attention_mask):
        x = self.word_embeddings(input_ids) + self.pos_table[: input_ids.size(1)]
        x = self.LayerNorm(x)
        for blk in self.layer:
            x = blk(x, attention_mask)
        return x


# ---- GPT-2, Conv1D by addmm, where(tril, masked_bias), scoring head ----------
class AddmmLinear(nn.Module):
    """GPT-2's Conv1D: the weight stored [in, out], the rows flattened for addmm"""

    def __init__(self, n_in, n_out):
        super().__init__()
        self.n_in, self.n_out = n_in, n_out
        self.w = nn.Parameter(torch.empty(n_in, n_out))
        self.b = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        lead = x.shape[:-1]
        y = torch.addmm(self.b, x.reshape(-1, self.n_in), self.w)
        return y.reshape(*lead, self.n_out)


def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GPT2Attention(nn.Module):
    def __init__(self, d, h, maxpos):
        super().__init__()
        self.h, self.d = h, d
        self.register_buffer("bias", torch.tril(torch.ones(maxpos, maxpos, dtype=torch.uint8)).view(1, 1, maxpos, maxpos))
        self.register_buffer("masked_bias", torch.tensor(-1e4))
        self.c_attn = AddmmLinear(d, 3 * d)
        self.c_proj = AddmmLinear(d, d)

    def heads(self, t):
        return t.view(t.size()[:-1] + (self.h, self.d // self.h)).permute(0, 2, 1, 3)

    def forward(self, x, ext):
        q, k, v = self.c_attn(x).split(self.d, dim=2)
        q, k, v = self.heads(q), self.heads(k), self.heads(v)
        w = torch.matmul(q, k.transpose(-1, -2)) / (float(v.size(-1)) ** 0.5)
        S = q.size(-2)
        causal = self.bias[:, :, :S, :S].bool()
        w = torch.where(causal, w, self.masked_bias.to(w.dtype))
        if ext is not None:
            w = w + ext
        w = nn.Softmax(dim=-1)(w)
        a = torch.matmul(w, v).permute(0, 2, 1, 3).contiguous()
        return self.c_proj(a.view(a.size()[:-2] + (self.d,)))


class GPT2Block(nn.Module):
    def __init__(self, d, h, f, maxpos):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = GPT2Attention(d, h, maxpos)
        self.ln_2 = nn.LayerNorm(d)
        self.c_fc, self.mlp_proj = AddmmLinear(d, f), AddmmLinear(f, d)

    def forward(self, x, ext):
        x = x + self.attn(self.ln_1(x), ext)
        return x + self.mlp_proj(gelu_new(self.c_fc(self.ln_2(x))))


class GPT2Scorer(nn.Module):
    """logits [B, S, V] and the log-probability of each next token [B, S-1]
    (zero where the next token is padding)"""

    def __init__(self, L, d, h, f, vocab, maxpos, with_mask):
        super().__init__()
        self.with_mask = with_mask
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(maxpos, d)
        self.h = nn.ModuleList([GPT2Block(d, h, f, maxpos) for _ in range(L)])
        self.ln_f = nn.LayerNorm(d)

    def forward(self, input_ids, attention_mask=None):
        S = input_ids.size(-1)
        position_ids = torch.arange(0, S, dtype=torch.long).unsqueeze(0).view(-1, S)
        x = self.wte(input_ids) + self.wpe(position_ids)
        ext = None
        if attention_mask is not None:
            ext = attention_mask.view(input_ids.size(0), -1)[:, None, None, :].to(x.dtype)
            ext = (1.0 - ext) * -10000.0
        for blk in self.h:
            x = blk(x, ext)
        logits = F.linear(self.ln_f(x), self.wte.weight)
        lp = torch.log_softmax(logits[:, :-1, :], dim=-1)
        tok = torch.gather(lp, 2, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        if attention_mask is not None:
            tok = tok * attention_mask[:, 1:].to(tok.dtype)
        return logits, tok


# ---- GPT-2 scored by cross_entropy, causal mask made in forward -------------
class CeBlock(nn.Module):
    def __init__(self, d, h, f):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, f), nn.GELU(approximate="tanh"), nn.Linear(f, d))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(self.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.h, C // self.h).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        keep = torch.ones(T, T, device=x.device).tril().bool()
        att = F.softmax(att.masked_fill(~keep, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.c_proj(y)
        return x + self.mlp(self.ln2(x))


class GPT2CrossEntropy(nn.Module):
    def __init__(self, L, d, h, f, vocab, maxpos):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(maxpos, d)
        self.blocks = nn.ModuleList([CeBlock(d, h, f) for _ in range(L)])
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx):
        T = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))
        for b in self.blocks:
            x = b(x)
        logits = self.lm_head(self.ln_f(x))
        nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), idx[:, 1:], reduction="none")
        return -nll


# ---- ViT, nn.MultiheadAttention sequence first, CLS expand + cat -------------
class SeqFirstViTBlock(nn.Module):
    def __init__(self, d, h, f):
        super().__init__()
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.attn = nn.MultiheadAttention(d, h)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(d, f), nn.GELU(), nn.Linear(f, d))

    def forward(self, x):  # [N, B, D]
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViTSeqFirst(nn.Module):
    def __init__(self, L, d, h, f, image, patch, classes):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, d, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, (image // patch) ** 2 + 1, d))
        self.blocks = nn.ModuleList([SeqFirstViTBlock(d, h, f) for _ in range(L)])
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        x = x.transpose(0, 1)
        for b in self.blocks:
            x = b(x)
        x = self.norm(x)
        return self.head(x[0])


# ---- ViT by hand: no qkv bias, LayerScale, mean pooling ----------------------
class LayerScaleBlock(nn.Module):
    def __init__(self, d, h, f):
        super().__init__()
        self.h, self.scale = h, (d // h) ** -0.5
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.wq, self.wk, self.wv = (nn.Linear(d, d, bias=False) for _ in range(3))
        self.proj = nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, f), nn.Linear(f, d)
        self.gamma1 = nn.Parameter(torch.ones(d))
        self.gamma2 = nn.Parameter(torch.ones(d))

    def forward(self, x):
        B, N, C = x.shape
        y = self.norm1(x)
        q, k, v = (w(y).reshape(B, N, self.h, -1).permute(0, 2, 1, 3) for w in (self.wq, self.wk, self.wv))
        a = F.softmax(q @ k.transpose(-2, -1) * self.scale, dim=-1)
        x = x + self.gamma1 * self.proj((a @ v).transpose(1, 2).reshape(B, N, C))
        return x + self.gamma2 * self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ViTLayerScale(nn.Module):
    def __init__(self, L, d, h, f, image, patch, classes):
        super().__init__()
        self.proj = nn.Conv2d(3, d, kernel_size=patch, stride=patch)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, (image // patch) ** 2 + 1, d))
        self.blocks = nn.Sequential(*[LayerScaleBlock(d, h, f) for _ in range(L)])
        self.fc_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, classes)

    def forward(self, pixels):
        x = self.proj(pixels)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        x = torch.cat([self.cls.repeat(x.shape[0], 1, 1), x], 1) + self.pos
        x = self.blocks(x)
        return self.head(self.fc_norm(x[:, 1:].mean(dim=1)))


# ---- nn.TransformerEncoder as a causal LM with a key padding mask ------------
class TorchEncoderLM(nn.Module):
    def __init__(self, L, d, h, f, vocab, maxpos, norm_first):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(maxpos, d))
        layer = nn.TransformerEncoderLayer(d, h, f, dropout=0.1, activation="gelu", batch_first=True,
                                           norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, L, norm=nn.LayerNorm(d) if norm_first else None,
                                             enable_nested_tensor=False)
        self.out = nn.Linear(d, vocab)

    def forward(self, tokens, mask):
        S = tokens.shape[1]
        x = self.emb(tokens) * math.sqrt(self.emb.embedding_dim) + self.pos[:S]
        causal = nn.Transformer.generate_square_subsequent_mask(S)
        x = self.encoder(x, mask=causal, src_key_padding_mask=mask == 0)
        return self.out(x)


# ---- LLaMA-style: RMSNorm by rsqrt, Meta's interleaved rotary, GQA, SwiGLU --
class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_pairs(x, cos, sin):
    # x [B, H, S, d]: pairs (2i, 2i+1) turned by angle i (Meta's complex product, in reals)
    x0, x1 = x.reshape(*x.shape[:-1], -1, 2).unbind(-1)
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


class LlamaAttention(nn.Module):
    def __init__(self, d, h, kv):
        super().__init__()
        self.h, self.kv, self.dh = h, kv, d // h
        self.wq = nn.Linear(d, h * self.dh, bias=False)
        self.wk = nn.Linear(d, kv * self.dh, bias=False)
        self.wv = nn.Linear(d, kv * self.dh, bias=False)
        self.wo = nn.Linear(h * self.dh, d, bias=False)

    def forward(self, x, cos, sin, causal):
        B, S, _ = x.shape
        q = self.wq(x).view(B, S, self.h, self.dh).transpose(1, 2)
        k = self.wk(x).view(B, S, self.kv, self.dh).transpose(1, 2)
        v = self.wv(x).view(B, S, self.kv, self.dh).transpose(1, 2)
        q, k = rotate_pairs(q, cos, sin), rotate_pairs(k, cos, sin)
        rep = self.h // self.kv
        k = k[:, :, None].expand(B, self.kv, rep, S, self.dh).reshape(B, self.h, S, self.dh)
        v = v[:, :, None].expand(B, self.kv, rep, S, self.dh).reshape(B, self.h, S, self.dh)
        s = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.dh) + causal
        p = F.softmax(s.float(), dim=-1).type_as(q)
        return self.wo(torch.matmul(p, v).transpose(1, 2).reshape(B, S, -1))


class LlamaBlock(nn.Module):
    def __init__(self, d, h, kv, f):
        super().__init__()
        self.attention_norm, self.ffn_norm = RMSNorm(d), RMSNorm(d)
        self.attention = LlamaAttention(d, h, kv)
        self.w1, self.w3 = nn.Linear(d, f, bias=False), nn.Linear(d, f, bias=False)
        self.w2 = nn.Linear(f, d, bias=False)

    def forward(self, x, cos, sin, causal):
        h = x + self.attention(self.attention_norm(x), cos, sin, causal)
        y = self.ffn_norm(h)
        return h + self.w2(F.silu(self.w1(y)) * self.w3(y))


class LlamaMeta(nn.Module):
    def __init__(self, L, d, h, kv, f, vocab):
        super().__init__()
        self.dh = d // h
        self.tok_embeddings = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList([LlamaBlock(d, h, kv, f) for _ in range(L)])
        self.norm = RMSNorm(d)
        self.output = nn.Linear(d, vocab, bias=False)

    def forward(self, tokens):
        S = tokens.shape[1]
        freqs = 1.0 / (10000.0 ** (torch.arange(0, self.dh, 2).float() / self.dh))
        ang = torch.outer(torch.arange(S).float(), freqs)
        cos, sin = ang.cos(), ang.sin()
        causal = torch.full((S, S), float("-inf")).triu(1)
        x = self.tok_embeddings(tokens)
        for layer in self.layers:
            x = layer(x, cos, sin, causal)
        return self.output(self.norm(x)).float()


# ---- the cases ---------------------------------------------------------------
# layers, d, heads, FFN, vocabulary, positions
TINY = (2, 24, 4, 32, 32, 16)
FULL = {"bert": (12, 768, 12, 3072, 30522, 512), "gpt2": (12, 768, 12, 3072, 50257, 1024)}


def ids(g, B, S, vocab, dtype=torch.int64):
    return torch.randint(0, vocab, (B, S), generator=g).to(dtype)


def case_bert_sep(size, g, B, S):
    z = TINY if size == "tiny" else FULL["bert"]
    m = BertNoTypes(*z)
    x, mask = ids(g, B, S, z[4], torch.int32), padded_mask(B, S, torch.int32)
    # dynamic axes as lists: the exporter names them itself
    dyn = {"input_ids": [0, 1], "attention_mask": [0, 1], "last_hidden_state": [0, 1], "mean_pooled": [0]}
    return m, [x, mask], ["input_ids", "attention_mask"], ["last_hidden_state", "mean_pooled"], dyn, 15


def case_bert_packed(size, g, B, S):
    z = TINY if size == "tiny" else FULL["bert"]
    m = BertPacked(*z)
    x, tt = ids(g, B, S, z[4]), torch.zeros(B, S, dtype=torch.int64)
    tt[:, S // 2:] = 1
    mask = padded_mask(B, S, torch.float32)
    ax = {0: "n", 1: "len"}
    names = ["input_ids", "token_type_ids", "attention_mask"]
    dyn = {n: ax for n in names}
    dyn.update({"hidden": ax, "pooled": {0: "n"}})
    return m, [x, tt, mask], names, ["hidden", "pooled"], dyn, 13


def case_bert_packed_lists(size, g, B, S):
    # three inputs of two unnamed axes each: six symbols apart
    m, inputs, names, outs, dyn, _ = case_bert_packed(size, g, B, S)
    dyn = {n: [0, 1] for n in names}
    dyn.update({"hidden": [0, 1], "pooled": [0]})
    return m, inputs, names, outs, dyn, 14


def case_distil(size, g, B, S):
    z = TINY if size == "tiny" else FULL["bert"]
    m = DistilSinus(*z)
    x, mask = ids(g, B, S, z[4]), padded_mask(B, S)
    ax = {0: "batch", 1: "seq"}
    return (m, [x, mask], ["input_ids", "attention_mask"], ["last_hidden_state"],
            {"input_ids": ax, "attention_mask": ax, "last_hidden_state": ax}, 14)


def case_gpt2_score(with_mask, opset):
    def make(size, g, B, S):
        z = TINY if size == "tiny" else FULL["gpt2"]
        m = GPT2Scorer(*z, with_mask)
        x = ids(g, B, S, z[4])
        ax = {0: "batch", 1: "seq"}
        dyn = {"input_ids": ax, "logits": ax, "token_logprobs": {0: "batch", 1: "seq_minus_1"}}
        if not with_mask:
            return m, [x], ["input_ids"], ["logits", "token_logprobs"], dyn, opset
        dyn["attention_mask"] = ax
        return (m, [x, padded_mask(B, S)], ["input_ids", "attention_mask"], ["logits", "token_logprobs"],
                dyn, opset)
    return make


def case_gpt2_ce(size, g, B, S):
    z = TINY if size == "tiny" else FULL["gpt2"]
    m = GPT2CrossEntropy(*z)
    return (m, [ids(g, B, S, z[4])], ["idx"], ["token_logprobs"],
            {"idx": {0: "b", 1: "t"}, "token_logprobs": {0: "b", 1: "t1"}}, 16)


def case_vit(cls, image, patch, opset):
    def make(size, g, B, S):
        L, d, h, f = TINY[:4] if size == "tiny" else (12, 768, 12, 3072)
        if size != "tiny":
            image_, patch_ = 224, 16
        else:
            image_, patch_ = image, patch
        m = cls(L, d, h, f, image_, patch_, 10 if size == "tiny" else 1000)
        px = torch.randn(B, 3, image_, image_, generator=g)
        return m, [px], ["pixel_values"], ["logits"], {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}, opset
    return make


def case_tenc(norm_first, opset):
    def make(size, g, B, S):
        z = TINY if size == "tiny" else FULL["bert"]
        m = TorchEncoderLM(*z, norm_first)
        ax = {0: "batch", 1: "seq"}
        return (m, [ids(g, B, S, z[4]), padded_mask(B, S)], ["tokens", "mask"], ["logits"],
                {"tokens": ax, "mask": ax, "logits": ax}, opset)
    return make


def case_llama(size, g, B, S):
    L, d, h, f, vocab, _ = TINY if size == "tiny" else FULL["gpt2"]
    m = LlamaMeta(L, d, h, h // 2, f, vocab)
    ax = {0: "batch", 1: "seq"}
    return m, [ids(g, B, S, vocab)], ["tokens"], ["logits"], {"tokens": ax, "logits": ax}, 17


# name: (maker, seed)
CASES = {
    "w_bert_sep_inf_f32softmax_i32_op15": (case_bert_sep, 21),
    "w_bert_packed_handln_ext1e4_op13": (case_bert_packed, 22),
    "w_bert_packed_lists_op14": (case_bert_packed_lists, 32),
    "w_distilbert_sinus_expandinf_op14": (case_distil, 23),
    "w_gpt2_addmm_score_mask_op14": (case_gpt2_score(True, 14), 24),
    "w_gpt2_addmm_score_op17": (case_gpt2_score(False, 17), 25),
    "w_gpt2_crossentropy_op16": (case_gpt2_ce, 26),
    "w_vit_mha_seqfirst_op14": (case_vit(ViTSeqFirst, 40, 8, 14), 27),
    "w_vit_layerscale_meanpool_op17": (case_vit(ViTLayerScale, 24, 6, 17), 28),
    "w_tenc_causal_kpm_postln_op14": (case_tenc(False, 14), 29),
    "w_tenc_causal_kpm_preln_op17": (case_tenc(True, 17), 30),
    "w_llama_meta_pairs_gqa_op17": (case_llama, 31),
}


def build(name, size, B, S):
    make, seed = CASES[name]
    torch.manual_seed(seed)
    m, *rest = make(size, torch.Generator().manual_seed(seed), B, S)
    seeded_init(m, seed, 0.15 if size == "tiny" else 0.02)
    return (m.eval(), *rest)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else here
    size = sys.argv[2] if len(sys.argv) > 2 else "tiny"
    for name in sys.argv[3:] or list(CASES):
        m, inputs, ins, outs, dyn, opset = build(name, size, 2 if size == "tiny" else 1, 7 if size == "tiny" else 16)
        save_case(outdir, name, m, inputs, ins, outs, dyn, opset)
        print(name, os.path.getsize(os.path.join(outdir, name, "model.onnx")), "bytes", flush=True)


if __name__ == "__main__":
    main()
