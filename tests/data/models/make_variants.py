#!/usr/bin/env python3
"""make_variants.py -- the same architectures as make_models.py, written the
way other authors write them (v_* cases of tests/data/models).

make_models.py has one export style per architecture. Models met in the
field are written independently from the same published architectures:
Hugging Face's own modules (token_type_ids, extended masks, GPT-2's Conv1D
with addmm, its causal buffer sliced [k-q:k]), nn.TransformerEncoder,
sentence-transformers pooling, scores by bmm or einsum, the scale on q, on
k or on both, other opsets, no constant folding, static shapes. Each case
is small (d 32, 2 layers, vocab 100), seeded, and kept with PyTorch's
outputs in the same folder format:

    v_<name>/model.onnx
    v_<name>/test_data_set_0/input_<i>.pb, output_<i>.pb

Run with a Python that has torch (1.13) and onnx:  python3 make_variants.py [outdir]
"""
import math
import os
import sys

import torch
from torch import nn

from make_models import RmsNorm, randomize, rope_tables, rotate_half, save_case

D, H, F, L, VOCAB, MAXPOS = 32, 4, 64, 2, 64, 16
FMIN = torch.finfo(torch.float32).min
BS = {0: "batch", 1: "seq"}


def split_heads(x, h):
    # [B, S, h*dh] -> [B, h, S, dh] by view + permute (Hugging Face's BERT)
    b, s, _ = x.shape
    return x.view(b, s, h, -1).permute(0, 2, 1, 3)


def merge_heads(x):
    # [B, h, S, dh] -> [B, S, h*dh]
    b, h, s, dh = x.shape
    return x.permute(0, 2, 1, 3).contiguous().view(b, s, h * dh)


def gelu_new(x):
    # Hugging Face's NewGELUActivation (GPT-2): the tanh form, pow 3
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


# ---- scores: the ways authors write softmax(q k^T / sqrt(dh) + mask) v ----

def scores(q, k, style, dh):
    """q, k [B, h, S, dh] -> [B, h, S, S]; style names where the scale goes
    and which op contracts."""
    if style == "matmul_div":
        return torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh)
    if style == "matmul_mul":
        return torch.matmul(q, k.transpose(-1, -2)) * (dh ** -0.5)
    if style == "q_scaled":
        return torch.matmul(q * (dh ** -0.5), k.transpose(-1, -2))
    if style == "k_scaled":
        return torch.matmul(q, k.transpose(-1, -2) / math.sqrt(dh))
    if style == "both_quarter":
        # OpenAI's Whisper and some CLIP ports: dh^-1/4 on q and on k
        s = dh ** -0.25
        return torch.matmul(q * s, k.transpose(-1, -2) * s)
    if style == "einsum":
        return torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(dh)
    if style == "bmm":
        b, h, s, _ = q.shape
        w = torch.bmm(q.reshape(b * h, s, dh), k.reshape(b * h, -1, dh).transpose(1, 2))
        return w.view(b, h, s, -1) / math.sqrt(dh)
    raise ValueError(style)


def context(p, v, style):
    if style == "einsum":
        return torch.einsum("bhqk,bhkd->bhqd", p, v)
    if style == "bmm":
        b, h, s, t = p.shape
        return torch.bmm(p.reshape(b * h, s, t), v.reshape(b * h, t, -1)).view(b, h, s, -1)
    return torch.matmul(p, v)


# ---- BERT as Hugging Face writes it ----

class HfBertSelf(nn.Module):
    def __init__(self, style):
        super().__init__()
        self.style = style
        self.query, self.key, self.value = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.dense = nn.Linear(D, D)
        self.ln = nn.LayerNorm(D, eps=1e-12)

    def forward(self, x, ext):
        q = split_heads(self.query(x), H)
        k = split_heads(self.key(x), H)
        v = split_heads(self.value(x), H)
        sc = scores(q, k, self.style, D // H) + ext
        p = nn.functional.softmax(sc, dim=-1)
        return self.ln(self.dense(merge_heads(context(p, v, self.style))) + x)


class HfBertLayer(nn.Module):
    def __init__(self, style):
        super().__init__()
        self.attention = HfBertSelf(style)
        self.intermediate, self.output = nn.Linear(D, F), nn.Linear(F, D)
        self.ln = nn.LayerNorm(D, eps=1e-12)

    def forward(self, x, ext):
        x = self.attention(x, ext)
        return self.ln(self.output(nn.functional.gelu(self.intermediate(x))) + x)


class HfBert(nn.Module):
    """BertModel: word + position (a registered position_ids buffer sliced)
    + token type embeddings, post-LN layers, the pooler. mask_kind says how
    the attention mask comes in and becomes the additive term:
    "int64_1e4" (1 - m) * -10000, "int64_fmin" (1 - m) * finfo.min,
    "bool" masked_fill of ~m, "int32" and "float" cast then (1 - m) * fmin."""

    def __init__(self, style="matmul_div", mask_kind="int64_1e4", pooler=True, pool="none"):
        super().__init__()
        self.word, self.position, self.token_type = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D), nn.Embedding(2, D)
        self.ln = nn.LayerNorm(D, eps=1e-12)
        self.layer = nn.ModuleList(HfBertLayer(style) for _ in range(L))
        self.pooler = nn.Linear(D, D) if pooler else None
        self.mask_kind, self.pool = mask_kind, pool
        self.register_buffer("position_ids", torch.arange(MAXPOS).expand((1, -1)))

    def extended(self, m, dtype):
        if self.mask_kind == "int64_1e4":
            return (1.0 - m[:, None, None, :].to(dtype)) * -10000.0
        if self.mask_kind == "bool":
            z = torch.zeros(m.shape[0], 1, 1, m.shape[1], dtype=dtype)
            return z.masked_fill(~m[:, None, None, :], FMIN)
        return (1.0 - m[:, None, None, :].to(dtype)) * torch.finfo(dtype).min

    def forward(self, input_ids, attention_mask, token_type_ids):
        s = input_ids.size(1)
        x = self.word(input_ids) + self.token_type(token_type_ids) + self.position(self.position_ids[:, 0:s])
        x = self.ln(x)
        ext = self.extended(attention_mask, x.dtype)
        for layer in self.layer:
            x = layer(x, ext)
        if self.pool == "mean_norm":
            # sentence-transformers: mean over the unmasked tokens, then L2
            m = attention_mask.unsqueeze(-1).expand(x.size()).float()
            e = torch.sum(x * m, 1) / torch.clamp(m.sum(1), min=1e-9)
            return x, nn.functional.normalize(e, p=2, dim=1)
        return x, torch.tanh(self.pooler(x[:, 0]))


# ---- nn.TransformerEncoder (BERT, MiniLM and ViT as many people write them) ----

class TorchEncoder(nn.Module):
    def __init__(self, batch_first, norm_first, activation, with_mask, final_norm):
        super().__init__()
        self.batch_first, self.with_mask = batch_first, with_mask
        self.emb, self.pos = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D)
        layer = nn.TransformerEncoderLayer(D, H, F, dropout=0.0, activation=activation,
                                           batch_first=batch_first, norm_first=norm_first)
        self.enc = nn.TransformerEncoder(layer, L, norm=nn.LayerNorm(D) if final_norm else None,
                                         enable_nested_tensor=False)

    def forward(self, input_ids, attention_mask=None):
        s = input_ids.shape[1]
        x = self.emb(input_ids) + self.pos(torch.arange(s).unsqueeze(0))
        pad = (attention_mask == 0) if self.with_mask else None
        if not self.batch_first:
            x = x.transpose(0, 1)
        y = self.enc(x, src_key_padding_mask=pad)
        if not self.batch_first:
            y = y.transpose(0, 1)
        return y


# ---- GPT-2 as Hugging Face writes it ----

class Conv1D(nn.Module):
    """GPT-2's Conv1D: a Linear whose weight is stored [in, out], run as
    addmm over the rows flattened to 2-D, then viewed back."""

    def __init__(self, nf, nx):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.empty(nx, nf)), nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        rows = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)
        return rows.view(*x.shape[:-1], self.weight.shape[1])


class HfGpt2Block(nn.Module):
    def __init__(self, old=False):
        super().__init__()
        self.old = old
        self.ln_1, self.ln_2 = nn.LayerNorm(D, eps=1e-5), nn.LayerNorm(D, eps=1e-5)
        self.c_attn, self.c_proj = Conv1D(3 * D, D), Conv1D(D, D)
        self.c_fc, self.mlp_proj = Conv1D(F, D), Conv1D(D, F)
        self.register_buffer("bias", torch.tril(torch.ones((MAXPOS, MAXPOS), dtype=torch.bool)).view(1, 1, MAXPOS, MAXPOS))
        self.register_buffer("masked_bias", torch.tensor(-1e4))

    def attn(self, x, ext):
        q, k, v = self.c_attn(x).split(D, dim=2)
        q, k, v = split_heads(q, H), split_heads(k, H), split_heads(v, H)
        w = torch.matmul(q, k.transpose(-1, -2))
        w = w / torch.full([], v.size(-1) ** 0.5, dtype=w.dtype)
        ql, kl = q.size(-2), k.size(-2)
        causal = self.bias[:, :, kl - ql: kl, :kl]
        fill = self.masked_bias if self.old else torch.full([], torch.finfo(w.dtype).min, dtype=w.dtype)
        w = torch.where(causal, w.to(w.dtype), fill)
        if ext is not None:
            w = w + ext
        p = nn.functional.softmax(w, dim=-1)
        return self.c_proj(merge_heads(torch.matmul(p, v)))

    def forward(self, x, ext):
        x = x + self.attn(self.ln_1(x), ext)
        return x + self.mlp_proj(gelu_new(self.c_fc(self.ln_2(x))))


class HfGpt2(nn.Module):
    """GPT2LMHeadModel: wte + wpe (position ids from a Range), pre-LN blocks,
    ln_f, lm_head tied to wte (a Linear without bias). With a mask, the
    padding term (1 - m) * finfo.min is added after the causal where.
    last_only returns the last position's logits (scoring, generation).
    old: as releases before 4.21 wrote it, the where fills masked_bias
    (-1e4) and the padding term is (1 - m) * -10000."""

    def __init__(self, with_mask, last_only, old=False):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D)
        self.h = nn.ModuleList(HfGpt2Block(old) for _ in range(L))
        self.old = old
        self.ln_f = nn.LayerNorm(D, eps=1e-5)
        self.lm_head = nn.Linear(D, VOCAB, bias=False)
        self.with_mask, self.last_only = with_mask, last_only

    def forward(self, input_ids, attention_mask=None):
        self.lm_head.weight = self.wte.weight
        s = input_ids.size(-1)
        pos = torch.arange(0, s, dtype=torch.long).unsqueeze(0)
        x = self.wte(input_ids) + self.wpe(pos)
        ext = None
        if self.with_mask:
            low = -10000.0 if self.old else torch.finfo(x.dtype).min
            ext = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * low
        for b in self.h:
            x = b(x, ext)
        x = self.ln_f(x)
        if self.last_only:
            x = x[:, -1, :]
        return self.lm_head(x)


# ---- ViT as Hugging Face writes it ----

class HfVitLayer(nn.Module):
    def __init__(self, style):
        super().__init__()
        self.style = style
        self.query, self.key, self.value, self.out = (nn.Linear(D, D) for _ in range(4))
        self.layernorm_before, self.layernorm_after = nn.LayerNorm(D, eps=1e-12), nn.LayerNorm(D, eps=1e-12)
        self.intermediate, self.output = nn.Linear(D, F), nn.Linear(F, D)

    def forward(self, x):
        h = self.layernorm_before(x)
        q, k, v = split_heads(self.query(h), H), split_heads(self.key(h), H), split_heads(self.value(h), H)
        p = nn.functional.softmax(scores(q, k, self.style, D // H), dim=-1)
        x = self.out(merge_heads(context(p, v, self.style))) + x
        return self.output(nn.functional.gelu(self.intermediate(self.layernorm_after(x)))) + x


class HfVit(nn.Module):
    """ViTForImageClassification: Conv2d patch embedding, flatten(2) +
    transpose, cls token concatenated, position embeddings added, pre-LN
    layers, final LN, the classifier over the cls row (pool "cls") or over
    the mean of the patch rows (pool "mean")."""

    def __init__(self, pool, style="matmul_div", image=16, patch=4, labels=5, layers=L):
        super().__init__()
        h, w = image if isinstance(image, tuple) else (image, image)
        n = (h // patch) * (w // patch)
        self.projection = nn.Conv2d(3, D, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, D))
        self.position_embeddings = nn.Parameter(torch.randn(1, n + 1, D))
        self.layer = nn.ModuleList(HfVitLayer(style) for _ in range(layers))
        self.layernorm = nn.LayerNorm(D, eps=1e-12)
        self.classifier = nn.Linear(D, labels)
        self.pool = pool

    def forward(self, pixel_values):
        b = pixel_values.shape[0]
        x = self.projection(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(b, -1, -1), x), dim=1)
        x = x + self.position_embeddings
        for layer in self.layer:
            x = layer(x)
        x = self.layernorm(x)
        r = x[:, 0, :] if self.pool == "cls" else x[:, 1:, :].mean(dim=1)
        return self.classifier(r)


class AnySizeVit(nn.Module):
    """Patches of a Conv2d, one HF ViT layer, the mean of the patch rows:
    no position table, so any image of 4 x 4 pixels or more runs."""

    def __init__(self):
        super().__init__()
        self.projection = nn.Conv2d(3, D, kernel_size=4, stride=4)
        self.layer = HfVitLayer("matmul_div")
        self.classifier = nn.Linear(D, 5)

    def forward(self, pixel_values):
        x = self.projection(pixel_values).flatten(2).transpose(1, 2)
        return self.classifier(self.layer(x).mean(dim=1))


# ---- GPT-2 as nanoGPT / minGPT write it ----

class NanoBlock(nn.Module):
    """c_attn Linear split in 3, view + transpose, (q @ k^T) * 1/sqrt(dh),
    masked_fill(bias == 0, -inf) with a tril buffer, GELU (tanh
    approximation through nn.GELU), pre-LN."""

    def __init__(self):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.c_attn, self.c_proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.c_fc, self.mlp_proj = nn.Linear(D, F), nn.Linear(F, D)
        self.gelu = nn.GELU(approximate="tanh")
        self.register_buffer("bias", torch.tril(torch.ones(MAXPOS, MAXPOS)).view(1, 1, MAXPOS, MAXPOS))

    def attn(self, x):
        b, t, c = x.size()
        q, k, v = self.c_attn(x).split(D, dim=2)
        k = k.view(b, t, H, c // H).transpose(1, 2)
        q = q.view(b, t, H, c // H).transpose(1, 2)
        v = v.view(b, t, H, c // H).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.bias[:, :, :t, :t] == 0, float("-inf"))
        y = nn.functional.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, c))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp_proj(self.gelu(self.c_fc(self.ln_2(x))))


class NanoGpt(nn.Module):
    """nanoGPT: wte + wpe, blocks, ln_f, lm_head tied to wte; with last_only
    the logits of the last position kept as [B, 1, V] (logits[:, [-1], :])."""

    def __init__(self, last_only):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D)
        self.h = nn.ModuleList(NanoBlock() for _ in range(L))
        self.ln_f = nn.LayerNorm(D)
        self.lm_head = nn.Linear(D, VOCAB, bias=False)
        self.last_only = last_only

    def forward(self, idx):
        self.lm_head.weight = self.wte.weight
        t = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(0, t, dtype=torch.long))
        for b in self.h:
            x = b(x)
        x = self.ln_f(x)
        return self.lm_head(x[:, [-1], :] if self.last_only else x)


class NanoScorer(NanoGpt):
    """Scoring text: the log-probability of each next token, log_softmax
    then torch.gather of the ids shifted by one ([B, S - 1])."""

    def forward(self, idx):
        logp = torch.log_softmax(super().forward(idx)[:, :-1], dim=-1)
        return torch.gather(logp, 2, idx[:, 1:, None]).squeeze(-1)


# ---- ViT as timm writes it ----

class TimmBlock(nn.Module):
    """One qkv Linear reshaped to [B, N, 3, H, dh] and permuted to
    [3, B, H, N, dh], unbind(0), q * scale before q @ k^T, pre-LN, erf GELU."""

    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(D, eps=1e-6), nn.LayerNorm(D, eps=1e-6)
        self.qkv, self.proj = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.fc1, self.fc2 = nn.Linear(D, F), nn.Linear(F, D)
        self.scale = (D // H) ** -0.5

    def attn(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, H, c // H).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        a = (q * self.scale) @ k.transpose(-2, -1)
        x = (a.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(x)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.norm2(x))))


class TimmVit(nn.Module):
    """timm's VisionTransformer: Conv2d patches, flatten(2).transpose(1, 2),
    cls token, pos_embed, blocks, norm, head on the cls row."""

    def __init__(self, image=16, patch=4, labels=5):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, D, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, (image // patch) ** 2 + 1, D))
        self.blocks = nn.Sequential(*[TimmBlock() for _ in range(L)])
        self.norm = nn.LayerNorm(D, eps=1e-6)
        self.head = nn.Linear(D, labels)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


# ---- BERT on nn.MultiheadAttention, sequence first ----

class MhaBert(nn.Module):
    """Embeddings, then post-LN layers of nn.MultiheadAttention (sequence
    first, [S, B, D]) with key_padding_mask = attention_mask == 0, ReLU FFN;
    the first token's row as the pooled output."""

    def __init__(self):
        super().__init__()
        self.tok, self.pos = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D)
        self.att = nn.ModuleList(nn.MultiheadAttention(D, H) for _ in range(L))
        self.ff = nn.ModuleList(nn.Sequential(nn.Linear(D, F), nn.ReLU(), nn.Linear(F, D)) for _ in range(L))
        self.n1 = nn.ModuleList(nn.LayerNorm(D) for _ in range(L))
        self.n2 = nn.ModuleList(nn.LayerNorm(D) for _ in range(L))

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        x = (self.tok(input_ids) + self.pos(torch.arange(s)[None])).transpose(0, 1)
        pad = attention_mask == 0
        for a, f, n1, n2 in zip(self.att, self.ff, self.n1, self.n2):
            x = n1(x + a(x, x, x, key_padding_mask=pad, need_weights=False)[0])
            x = n2(x + f(x))
        x = x.transpose(0, 1)
        return x, x[:, 0]


# ---- LLaMA as Hugging Face writes it, with the padding mask ----

class HfLlamaLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_proj, self.k_proj = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.v_proj, self.o_proj = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.gate_proj, self.up_proj = nn.Linear(D, F, bias=False), nn.Linear(D, F, bias=False)
        self.down_proj = nn.Linear(F, D, bias=False)
        self.input_layernorm, self.post_attention_layernorm = RmsNorm(D, 1e-6), RmsNorm(D, 1e-6)

    def forward(self, x, cos, sin, mask):
        h = self.input_layernorm(x)
        b, s, _ = h.size()
        q = self.q_proj(h).view(b, s, H, D // H).transpose(1, 2)
        k = self.k_proj(h).view(b, s, H, D // H).transpose(1, 2)
        v = self.v_proj(h).view(b, s, H, D // H).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(D // H) + mask
        w = nn.functional.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        x = x + self.o_proj(torch.matmul(w, v).transpose(1, 2).reshape(b, s, D))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(nn.functional.silu(self.gate_proj(h)) * self.up_proj(h))


class HfLlama(nn.Module):
    """LlamaForCausalLM (transformers 4.3x): the 4-D mask made once from
    attention_mask -- a causal [S, S] of finfo.min, the padding
    (1 - m) masked_fill'ed to finfo.min, merged by masked_fill of the causal
    -- RoPE tables gathered by position ids, RMSNorm, SwiGLU, no biases."""

    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(HfLlamaLayer() for _ in range(L))
        self.norm = RmsNorm(D, 1e-6)
        self.lm_head = nn.Linear(D, VOCAB, bias=False)

    def forward(self, input_ids, attention_mask):
        b, s = input_ids.shape
        causal = torch.full((s, s), FMIN)
        cond = torch.arange(s)
        causal = causal.masked_fill(cond < (cond + 1).view(s, 1), 0.0)[None, None].expand(b, 1, s, s)
        inv = 1.0 - attention_mask[:, None, None, :].expand(b, 1, s, s).to(torch.float32)
        mask = inv.masked_fill(inv.to(torch.bool), FMIN)
        mask = mask.masked_fill(causal.to(torch.bool), FMIN)
        cos, sin = rope_tables(MAXPOS, D // H)
        pos = torch.arange(s).unsqueeze(0)
        cos, sin = cos[pos].unsqueeze(1), sin[pos].unsqueeze(1)
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.norm(x))


# ---- BERT as the Annotated Transformer / BERT-pytorch write it ----

class StdLayerNorm(nn.Module):
    """The Annotated Transformer's LayerNorm: a * (x - mean) / (std + eps) + b
    with the unbiased std, eps outside the root (not nn.LayerNorm)."""

    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.a_2, self.b_2, self.eps = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d)), eps

    def forward(self, x):
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.a_2 * (x - mean) / (std + self.eps) + self.b_2


class AnnotatedLayer(nn.Module):
    """Four Linear clones in a list, heads by view(nbatches, -1, h, d_k),
    scores.masked_fill(mask == 0, -1e9), the context back by
    view(nbatches, -1, h * d_k); pre-norm sublayer connections; the FFN's
    GELU written out in its tanh form."""

    def __init__(self):
        super().__init__()
        self.linears = nn.ModuleList(nn.Linear(D, D) for _ in range(4))
        self.w_1, self.w_2 = nn.Linear(D, F), nn.Linear(F, D)
        self.norms = nn.ModuleList(StdLayerNorm(D) for _ in range(2))

    def attn(self, x, mask):
        nb, dk = x.size(0), D // H
        q, k, v = [lin(x).view(nb, -1, H, dk).transpose(1, 2) for lin in self.linears[:3]]
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(dk)
        scores = scores.masked_fill(mask == 0, -1e9)
        y = torch.matmul(scores.softmax(dim=-1), v)
        return self.linears[3](y.transpose(1, 2).contiguous().view(nb, -1, H * dk))

    def forward(self, x, mask):
        x = x + self.attn(self.norms[0](x), mask)
        return x + self.w_2(gelu_new(self.w_1(self.norms[1](x))))


class AnnotatedBert(nn.Module):
    """BERT-pytorch: the mask made from the ids themselves (pad id 0),
    (ids > 0).unsqueeze(1).repeat(1, S, 1).unsqueeze(1) as [B, 1, S, S];
    token + position (a sinusoid buffer) + segment embeddings."""

    def __init__(self):
        super().__init__()
        self.token, self.segment = nn.Embedding(VOCAB, D, padding_idx=0), nn.Embedding(3, D, padding_idx=0)
        pe = torch.zeros(MAXPOS, D)
        pos = torch.arange(0, MAXPOS).float().unsqueeze(1)
        div = (torch.arange(0, D, 2).float() * -(math.log(10000.0) / D)).exp()
        pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
        self.register_buffer("pe", pe.unsqueeze(0))
        self.layers = nn.ModuleList(AnnotatedLayer() for _ in range(L))

    def forward(self, x, segment_label):
        mask = (x > 0).unsqueeze(1).repeat(1, x.size(1), 1).unsqueeze(1)
        h = self.token(x) + self.pe[:, : x.size(1)] + self.segment(segment_label)
        for layer in self.layers:
            h = layer(h, mask)
        return h


# ---- CLIP's vision tower, the block reading its shape from the residual ----

class ClipVisionLayer(nn.Module):
    """Pre-LN; `b, s, _ = x.shape` read from the residual stream, not from
    the normalised input the projections read; Q scaled after its
    projection, (B*H, S, d) bmm; quick_gelu."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.fc1, self.fc2 = nn.Linear(D, F), nn.Linear(F, D)

    def forward(self, x):
        b, s, _ = x.shape
        h = self.ln1(x)

        def bh(t):
            return t.view(b, s, H, D // H).transpose(1, 2).reshape(b * H, s, D // H)

        w = torch.bmm(bh(self.q(h) * (D // H) ** -0.5), bh(self.k(h)).transpose(1, 2)).softmax(-1)
        x = x + self.o(torch.bmm(w, bh(self.v(h))).view(b, H, s, D // H).transpose(1, 2).reshape(b, s, D))
        h = self.fc1(self.ln2(x))
        return x + self.fc2(h * torch.sigmoid(1.702 * h))


class ClipVision(nn.Module):
    """CLIPVisionModelWithProjection's shape: a class embedding vector,
    Conv2d patches without bias, a position_ids buffer into the position
    Embedding, pre_layrnorm, post_layernorm on the class row, a projection."""

    def __init__(self, n=16):
        super().__init__()
        self.class_embedding = nn.Parameter(torch.randn(D))
        self.patch = nn.Conv2d(3, D, 4, 4, bias=False)
        self.position_embedding = nn.Embedding(n + 1, D)
        self.register_buffer("position_ids", torch.arange(n + 1).expand((1, -1)))
        self.pre_layrnorm, self.post_layernorm = nn.LayerNorm(D), nn.LayerNorm(D)
        self.layers = nn.ModuleList(ClipVisionLayer() for _ in range(L))
        self.visual_projection = nn.Linear(D, 16, bias=False)

    def forward(self, pixel_values):
        b = pixel_values.shape[0]
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.class_embedding.expand(b, 1, -1), x], dim=1)
        x = self.pre_layrnorm(x + self.position_embedding(self.position_ids))
        for layer in self.layers:
            x = layer(x)
        return self.visual_projection(self.post_layernorm(x[:, 0, :]))


# ---- SDPA-era exports (torch 2 / transformers 4.3x written out) ----

def sdpa(q, k, v, mask):
    """torch 2's scaled_dot_product_attention as its ONNX export writes it:
    the square root of the scale on q and on k^T, the float mask added."""
    s = math.sqrt(1.0 / math.sqrt(q.size(-1)))
    w = (q * s) @ (k.transpose(-2, -1) * s)
    return torch.softmax(w + mask, dim=-1) @ v


def unmask_unattended(mask):
    # rows whose every key is finfo.min attend everywhere instead (torch.all)
    return mask.mul(~torch.all(mask == FMIN, dim=-1, keepdim=True))


class SdpaBertSelf(HfBertSelf):
    def forward(self, x, ext):
        q, k, v = (split_heads(f(x), H) for f in (self.query, self.key, self.value))
        return self.ln(self.dense(merge_heads(sdpa(q, k, v, ext))) + x)


class SdpaBert(HfBert):
    """BertModel with SDPA attention: the mask expanded to [B, 1, S, S],
    inverted and masked_fill'ed to finfo.min, unattended rows unmasked."""

    def __init__(self):
        super().__init__()
        for layer in self.layer:
            layer.attention = SdpaBertSelf("matmul_div")

    def forward(self, input_ids, attention_mask, token_type_ids):
        b, s = input_ids.shape
        x = self.word(input_ids) + self.token_type(token_type_ids) + self.position(self.position_ids[:, 0:s])
        x = self.ln(x)
        inv = 1.0 - attention_mask[:, None, None, :].expand(b, 1, s, s).to(x.dtype)
        ext = unmask_unattended(inv.masked_fill(inv.to(torch.bool), FMIN))
        for layer in self.layer:
            x = layer(x, ext)
        return x, torch.tanh(self.pooler(x[:, 0]))


class SdpaGptBlock(NanoBlock):
    def attn(self, x, mask):
        b, t, c = x.size()
        q, k, v = (z.view(b, t, H, c // H).transpose(1, 2) for z in self.c_attn(x).split(D, dim=2))
        return self.c_proj(sdpa(q, k, v, mask).transpose(1, 2).contiguous().view(b, t, c))

    def forward(self, x, mask):
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp_proj(self.gelu(self.c_fc(self.ln_2(x))))


class SdpaGpt(NanoGpt):
    """GPT-2 with SDPA and a padding mask: the causal triu of finfo.min and
    the padding merged by masked_fill into [B, 1, S, S], unattended rows
    unmasked."""

    def __init__(self):
        super().__init__(last_only=False)
        self.h = nn.ModuleList(SdpaGptBlock() for _ in range(L))

    def forward(self, idx, attention_mask):
        self.lm_head.weight = self.wte.weight
        b, t = idx.shape
        causal = torch.full((t, t), FMIN).triu(1)[None, None].expand(b, 1, t, t)
        mask = causal.masked_fill(attention_mask[:, None, None, :].expand(b, 1, t, t) == 0, FMIN)
        x = self.wte(idx) + self.wpe(torch.arange(t))
        for blk in self.h:
            x = blk(x, unmask_unattended(mask))
        return self.lm_head(self.ln_f(x))


# ---- the cases ----

def ids_mask(seed, b, s, dtype=torch.long):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, VOCAB, (b, s), generator=g)
    mask = torch.ones(b, s, dtype=torch.long)
    mask[b - 1, s - 3:] = 0
    return ids, mask.to(dtype)


def export(outdir, name, model, seed, inputs, in_names, out_names, opset, dynamic=True, fold=True):
    randomize(model, seed)
    dyn = None
    if dynamic:
        dyn = {n: (BS if t.dim() == 2 else {0: "batch"}) for n, t in zip(in_names, inputs)}
        dyn.update({o: BS for o in out_names})
        dyn.update(dynamic if isinstance(dynamic, dict) else {})
    save_case(outdir, name, model, inputs, in_names, out_names, dyn, opset, fold)


def bert_cases(outdir):
    names = ["input_ids", "attention_mask", "token_type_ids"]
    outs = ["last_hidden_state", "pooler_output"]
    pool = {"pooler_output": {0: "batch"}}

    def case(name, seed, opset, mask_dtype, fold=True, **kw):
        ids, mask = ids_mask(seed, 2, 7, mask_dtype)
        tt = torch.zeros_like(ids)
        tt[:, 4:] = 1
        export(outdir, name, HfBert(**kw), seed, [ids, mask, tt], names, outs, opset, pool, fold)

    case("v_bert_hf_ext1e4_op13_nofold", 101, 13, torch.long, fold=False)
    case("v_bert_hf_fmin_einsum_op17", 102, 17, torch.long, style="einsum", mask_kind="int64_fmin")
    case("v_bert_hf_boolmask_qscaled_op14", 103, 14, torch.bool, style="q_scaled", mask_kind="bool")
    case("v_bert_hf_int32mask_bmm_op14", 104, 14, torch.int32, style="bmm", mask_kind="int32")
    case("v_bert_hf_floatmask_kscaled_op13", 105, 13, torch.float32, style="k_scaled", mask_kind="float")
    case("v_minilm_st_meannorm_op14", 106, 14, torch.long, style="matmul_mul", pool="mean_norm")


def torch_encoder_cases(outdir):
    def case(name, seed, opset, with_mask=True, **kw):
        ids, mask = ids_mask(seed, 2, 7)
        m = TorchEncoder(with_mask=with_mask, **kw)
        ins, names = ([ids, mask], ["input_ids", "attention_mask"]) if with_mask else ([ids], ["input_ids"])
        export(outdir, name, m, seed, ins, names, ["last_hidden_state"], opset)

    case("v_tenc_bf_postln_gelu_mask_op14", 111, 14, batch_first=True, norm_first=False,
         activation="gelu", final_norm=False)
    case("v_tenc_sf_preln_relu_mask_op14", 112, 14, batch_first=False, norm_first=True,
         activation="relu", final_norm=True)
    case("v_tenc_bf_preln_gelu_nomask_op17", 113, 17, with_mask=False, batch_first=True,
         norm_first=True, activation="gelu", final_norm=True)
    # exported without dynamic axes, batch 3: the key padding mask reaches the
    # layers as a float [B * heads, 1, S] made outside them
    ids, mask = ids_mask(114, 3, 8)
    export(outdir, "v_tenc_bf_static_b3_mask_op14", TorchEncoder(True, False, "gelu", True, False), 114,
           [ids, mask], ["input_ids", "attention_mask"], ["last_hidden_state"], 14, dynamic=False)


def gpt2_cases(outdir):
    ids, mask = ids_mask(121, 2, 9)
    export(outdir, "v_gpt2_hf_conv1d_mask_op13", HfGpt2(with_mask=True, last_only=False), 121,
           [ids, mask], ["input_ids", "attention_mask"], ["logits"], 13)
    ids, _ = ids_mask(122, 2, 9)
    export(outdir, "v_gpt2_hf_lastlogits_op17", HfGpt2(with_mask=False, last_only=True), 122,
           [ids], ["input_ids"], ["logits"], 17, {"logits": {0: "batch"}})
    # a static export: no dynamic axes, the shapes fixed at [1, 8]
    ids, _ = ids_mask(123, 1, 8)
    export(outdir, "v_gpt2_hf_static_b1_s8_op14", HfGpt2(with_mask=False, last_only=False), 123,
           [ids], ["input_ids"], ["logits"], 14, dynamic=False)


def old_gpt2_cases(outdir):
    ids, _ = ids_mask(124, 2, 9)
    export(outdir, "v_gpt2_hf_old_maskedbias_op13", HfGpt2(with_mask=False, last_only=False, old=True), 124,
           [ids], ["input_ids"], ["logits"], 13)
    ids, mask = ids_mask(125, 2, 9)
    mask[0, :2] = 0  # left padding
    export(outdir, "v_gpt2_hf_old_maskedbias_mask_op13", HfGpt2(with_mask=True, last_only=False, old=True), 125,
           [ids, mask], ["input_ids", "attention_mask"], ["logits"], 13)


class OldGpt2FillBlock(HfGpt2Block):
    """The older GPT-2 block written another way: the causal mask by
    masked_fill(~causal, masked_bias) (-1e4), the scale a product, the
    padding term added after it as given (finfo.min here)."""

    def __init__(self):
        super().__init__(old=True)

    def attn(self, x, ext):
        q, k, v = self.c_attn(x).split(D, dim=2)
        q, k, v = split_heads(q, H), split_heads(k, H), split_heads(v, H)
        w = torch.matmul(q, k.transpose(-1, -2)) * (v.size(-1) ** -0.5)
        ql, kl = q.size(-2), k.size(-2)
        w = w.masked_fill(~self.bias[:, :, kl - ql: kl, :kl], self.masked_bias)
        p = nn.functional.softmax(w + ext, dim=-1)
        return self.c_proj(merge_heads(torch.matmul(p, v)))


class OldGpt2FminPad(HfGpt2):
    """HfGpt2 (old) with the blocks above and the padding (1 - m) * finfo.min:
    a left-padded row's visible keys then sit at finfo.min, below the
    future keys' -1e4, so the file's softmax averages the future real keys."""

    def __init__(self):
        super().__init__(with_mask=True, last_only=False, old=True)
        self.h = nn.ModuleList(OldGpt2FillBlock() for _ in range(L))

    def forward(self, input_ids, attention_mask):
        self.lm_head.weight = self.wte.weight
        pos = torch.arange(0, input_ids.size(-1), dtype=torch.long).unsqueeze(0)
        x = self.wte(input_ids) + self.wpe(pos)
        ext = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * FMIN
        for b in self.h:
            x = b(x, ext)
        return self.lm_head(self.ln_f(x))


def gpt2_oldpad_cases(outdir):
    ids, mask = ids_mask(126, 3, 9)
    mask[0, :3] = 0  # left padding; item 2 right padding (ids_mask)
    mask[1, :1] = 0
    export(outdir, "v_gpt2_hf_old_fill_fminpad_op17", OldGpt2FminPad(), 126,
           [ids, mask], ["input_ids", "attention_mask"], ["logits"], 17)


def vit_cases(outdir):
    g = torch.Generator().manual_seed(131)
    px = torch.randn(2, 3, 16, 16, generator=g)
    dyn = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}
    export(outdir, "v_vit_hf_cls_op14", HfVit("cls"), 131, [px], ["pixel_values"], ["logits"], 14, dyn)
    export(outdir, "v_vit_hf_meanpool_both_op17", HfVit("mean", style="both_quarter"), 132, [px],
           ["pixel_values"], ["logits"], 17, dyn)
    # as Hugging Face's exporters declare it: batch, height and width all
    # symbolic, though the position table fixes the image at 16 x 16
    px = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(133))
    dyn = {"pixel_values": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}}
    export(outdir, "v_vit_hf_dynhw_op14", HfVit("cls", layers=1), 133, [px], ["pixel_values"], ["logits"], 14,
           dyn)
    # images wider than tall (16 x 8 pixels, 4 x 2 patches): declared so,
    # and declared symbolic with the position table fixing the size
    px = torch.randn(2, 3, 8, 16, generator=torch.Generator().manual_seed(135))
    dyn = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}
    export(outdir, "v_vit_hf_nonsquare_op14", HfVit("cls", image=(8, 16)), 135, [px], ["pixel_values"],
           ["logits"], 14, dyn)
    dyn = {"pixel_values": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}}
    export(outdir, "v_vit_hf_dynhw_nonsquare_op14", HfVit("cls", image=(8, 16), layers=1), 136, [px],
           ["pixel_values"], ["logits"], 14, dyn)
    # the same axes on a model that takes any size (the probes' sizes too
    # small for its 4 x 4 patches): they stay symbolic; a 12 x 16 image
    px = torch.randn(2, 3, 12, 16, generator=torch.Generator().manual_seed(134))
    export(outdir, "v_vit_anysize_meanpool_op14", AnySizeVit(), 134, [px], ["pixel_values"], ["logits"], 14, dyn)


def more_cases(outdir):
    ids, _ = ids_mask(141, 2, 9)
    export(outdir, "v_gpt2_nanogpt_op14", NanoGpt(last_only=False), 141, [ids], ["input_ids"], ["logits"], 14)
    ids, _ = ids_mask(142, 2, 9)
    export(outdir, "v_gpt2_nanogpt_last_op17", NanoGpt(last_only=True), 142, [ids], ["input_ids"], ["logits"],
           17, {"logits": {0: "batch"}})
    ids, _ = ids_mask(148, 2, 9)
    export(outdir, "v_gpt2_nanogpt_logprob_op14", NanoScorer(last_only=False), 148, [ids], ["input_ids"],
           ["token_logprobs"], 14)
    px = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(143))
    export(outdir, "v_vit_timm_qkv_op14", TimmVit(), 143, [px], ["pixel_values"], ["logits"], 14,
           {"pixel_values": {0: "batch"}, "logits": {0: "batch"}})
    export(outdir, "v_vit_clipvis_resshape_op14", ClipVision(), 147, [px], ["pixel_values"], ["image_embeds"], 14,
           {"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}})
    ids, mask = ids_mask(144, 2, 7)
    export(outdir, "v_bert_mha_seqfirst_kpm_op14", MhaBert(), 144, [ids, mask], ["input_ids", "attention_mask"],
           ["last_hidden_state", "pooled"], 14, {"pooled": {0: "batch"}})
    ids, _ = ids_mask(146, 2, 7)
    ids[1, 4:] = 0  # the pad id
    seg = torch.ones_like(ids)
    seg[:, 4:] = 2
    seg[1, 4:] = 0
    export(outdir, "v_bert_annotated_idsmask_op14", AnnotatedBert(), 146, [ids, seg], ["input_ids", "segment_label"],
           ["last_hidden_state"], 14)
    ids, mask = ids_mask(145, 2, 7)
    mask[0, :2] = 0  # left padding too
    export(outdir, "v_llama_hf_mask_op14", HfLlama(), 145, [ids, mask], ["input_ids", "attention_mask"],
           ["logits"], 14)


def sdpa_cases(outdir):
    ids, mask = ids_mask(151, 2, 7)
    tt = torch.zeros_like(ids)
    export(outdir, "v_bert_sdpa_4dmask_op14", SdpaBert(), 151, [ids, mask, tt],
           ["input_ids", "attention_mask", "token_type_ids"], ["last_hidden_state", "pooler_output"], 14,
           {"pooler_output": {0: "batch"}})
    ids, mask = ids_mask(152, 2, 9)
    mask[0, :2] = 0  # left padding
    export(outdir, "v_gpt2_sdpa_mask_op14", SdpaGpt(), 152, [ids, mask], ["input_ids", "attention_mask"],
           ["logits"], 14)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    torch.manual_seed(0)
    only = sys.argv[2] if len(sys.argv) > 2 else ""
    for f in (bert_cases, torch_encoder_cases, gpt2_cases, old_gpt2_cases, gpt2_oldpad_cases, vit_cases, more_cases, sdpa_cases):
        if only in f.__name__:
            f(outdir)


if __name__ == "__main__":
    main()
