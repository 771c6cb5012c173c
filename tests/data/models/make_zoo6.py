#!/usr/bin/env python3
"""make_zoo6.py -- a sixth round of the model zoo as whole models (z6_* cases
of tests/data/models): families the earlier rounds do not write, each from
its published architecture in its authors' idioms:
the BART-like translation models in one encoder-decoder graph each --
mBART (pre-LN, embeddings times sqrt(d), learned positions offset by 2,
layernorm_embedding, final encoder and decoder LayerNorms), Marian (static
sinusoidal positions, post-LN, SiLU, a padded decoder under its own mask),
Pegasus (pre-LN, sinusoidal, ReLU, final LayerNorms, masks made by `where`)
and M2M100 (fairseq sinusoids gathered at positions counted over the
non-padding tokens, pre-LN, final LayerNorms, a tied head without bias);
Funnel (a block whose first layer attends from a mean-pooled query -- the
[CLS] row kept apart -- to the unpooled keys, the later layers on the pooled
rows under a min-pooled mask); ConvBERT (half of the heads attention, half
span-based dynamic convolution, concatenated before the output projection);
Falcon-40B's decoder (grouped fused QKV of 2 K/V groups, two LayerNorms
feeding the parallel attention and MLP); Gemma-7B's form (heads times
head size 64 on a model of width 32); Qwen2 batched generation (q / k / v
biases, GQA 4 / 2, left padding, position_ids an input).

Each is small (d 32, 4 heads, FFN 64, 2 layers, vocabulary 64), seeded,
with PyTorch's outputs for two data sets (make_zoo.export: batch 2 of 7, the
second row padded; batch 3 of 5).

    /usr/bin/python3 make_zoo6.py [OUTDIR [PREFIX...]]

Needs torch (1.13) and onnx (1.12); the same bytes for the same versions.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

import make_zoo
from make_zoo import data, export, ids_mask, ids_mask_types, repeat_kv
from make_models import RmsNorm, rotate_half
from make_zoo3 import heads, merged
from make_zoo4 import fairseq_sinusoids
from make_zoo5 import ctrl_positions

D, H, FF, L, VOCAB, MAXPOS = 32, 4, 64, 2, 64, 16
DH = D // H
FMIN = torch.finfo(torch.float32).min
PAD = 1  # the translation models' padding id


# ------------------------------------------------- translation models ----

class S2sAttn(nn.Module):
    """Hugging Face's BartAttention as mBART, Marian, Pegasus and M2M100
    copy it: q scaled after its projection, [B * H, S, d] heads for bmm, the
    mask [B, 1, Sq, Skv] added to the scores viewed [B, H, Sq, Skv]."""

    def __init__(self):
        super().__init__()
        self.q_proj, self.k_proj = nn.Linear(D, D), nn.Linear(D, D)
        self.v_proj, self.out_proj = nn.Linear(D, D), nn.Linear(D, D)

    def forward(self, x, kv, mask):
        b, sq, _ = x.shape
        skv = kv.shape[1]

        def shape(t, s):
            return t.view(b, s, H, DH).transpose(1, 2).reshape(b * H, s, DH)

        q = shape(self.q_proj(x) * DH ** -0.5, sq)
        k, v = shape(self.k_proj(kv), skv), shape(self.v_proj(kv), skv)
        w = torch.bmm(q, k.transpose(1, 2)).view(b, H, sq, skv) + mask
        p = F.softmax(w.view(b * H, sq, skv), dim=-1)
        o = torch.bmm(p, v).view(b, H, sq, DH).transpose(1, 2).reshape(b, sq, D)
        return self.out_proj(o)


class S2sEncLayer(nn.Module):
    def __init__(self, pre, act):
        super().__init__()
        self.pre, self.act = pre, act
        self.self_attn, self.self_attn_layer_norm = S2sAttn(), nn.LayerNorm(D)
        self.fc1, self.fc2, self.final_layer_norm = nn.Linear(D, FF), nn.Linear(FF, D), nn.LayerNorm(D)

    def forward(self, x, mask):
        if self.pre:  # mBART, Pegasus, M2M100
            x = x + self.self_attn(*(2 * [self.self_attn_layer_norm(x)]), mask)
            return x + self.fc2(self.act(self.fc1(self.final_layer_norm(x))))
        x = self.self_attn_layer_norm(x + self.self_attn(x, x, mask))  # Marian
        return self.final_layer_norm(x + self.fc2(self.act(self.fc1(x))))


class S2sDecLayer(nn.Module):
    def __init__(self, pre, act):
        super().__init__()
        self.pre, self.act = pre, act
        self.self_attn, self.self_attn_layer_norm = S2sAttn(), nn.LayerNorm(D)
        self.encoder_attn, self.encoder_attn_layer_norm = S2sAttn(), nn.LayerNorm(D)
        self.fc1, self.fc2, self.final_layer_norm = nn.Linear(D, FF), nn.Linear(FF, D), nn.LayerNorm(D)

    def forward(self, y, causal, memory, cross):
        if self.pre:
            h = self.self_attn_layer_norm(y)
            y = y + self.self_attn(h, h, causal)
            y = y + self.encoder_attn(self.encoder_attn_layer_norm(y), memory, cross)
            return y + self.fc2(self.act(self.fc1(self.final_layer_norm(y))))
        y = self.self_attn_layer_norm(y + self.self_attn(y, y, causal))
        y = self.encoder_attn_layer_norm(y + self.encoder_attn(y, memory, cross))
        return self.final_layer_norm(y + self.fc2(self.act(self.fc1(y))))


def hf_expand_mask(mask, tgt):
    # _prepare_4d_attention_mask: [B, S] -> [B, 1, tgt, S], the inverted mask
    # masked_fill'ed with finfo.min where it is set
    b, s = mask.shape
    inverted = 1.0 - mask[:, None, None, :].expand(b, 1, tgt, s).float()
    return inverted.masked_fill(inverted.bool(), FMIN)


def hf_causal(b, t):
    # _make_causal_mask: full(finfo.min), zero where j < i + 1
    m = torch.full((t, t), FMIN)
    c = torch.arange(t)
    m = m.masked_fill(c < (c + 1).view(t, 1), 0.0)
    return m[None, None].expand(b, 1, t, t)


class MBart(nn.Module):
    """mBART (MBartForConditionalGeneration) in one graph: the shared table
    times sqrt(d) (scale_embedding), learned positions at arange + 2,
    layernorm_embedding, pre-LN layers with GELU, the encoder's and the
    decoder's final layer_norm; the decoder causal (_make_causal_mask), the
    cross-attention under the encoder's padding; tied logits plus
    final_logits_bias."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Embedding(VOCAB, D)
        self.enc_pos, self.dec_pos = nn.Embedding(MAXPOS + 2, D), nn.Embedding(MAXPOS + 2, D)
        self.enc_ln_emb, self.dec_ln_emb = nn.LayerNorm(D), nn.LayerNorm(D)
        self.encoder = nn.ModuleList(S2sEncLayer(True, F.gelu) for _ in range(L))
        self.decoder = nn.ModuleList(S2sDecLayer(True, F.gelu) for _ in range(L))
        self.enc_ln, self.dec_ln = nn.LayerNorm(D), nn.LayerNorm(D)
        self.register_buffer("final_logits_bias", torch.randn(1, VOCAB) * 0.1)

    def forward(self, input_ids, attention_mask, decoder_input_ids):
        s, t = input_ids.shape[1], decoder_input_ids.shape[1]
        scale = math.sqrt(D)
        x = self.shared(input_ids) * scale + self.enc_pos(torch.arange(s) + 2)
        x = self.enc_ln_emb(x)
        enc_mask = hf_expand_mask(attention_mask, s)
        for layer in self.encoder:
            x = layer(x, enc_mask)
        x = self.enc_ln(x)
        y = self.dec_ln_emb(self.shared(decoder_input_ids) * scale + self.dec_pos(torch.arange(t) + 2))
        causal = hf_causal(input_ids.shape[0], t)
        cross = hf_expand_mask(attention_mask, t)
        for layer in self.decoder:
            y = layer(y, causal, x, cross)
        return F.linear(self.dec_ln(y), self.shared.weight) + self.final_logits_bias


class Marian(nn.Module):
    """Marian (MarianMTModel) in one graph: the shared table times sqrt(d),
    MarianSinusoidalPositionalEmbedding (a fixed [n, d] table, the sines of
    the even angles then the cosines of the odd) at arange(S), no
    layernorm_embedding, post-LN layers with SiLU (`swish`), no final
    LayerNorm; the decoder padded too: its own mask merged into the causal
    one; tied logits plus final_logits_bias."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Embedding(VOCAB, D)
        self.register_buffer("sinus", ctrl_positions(MAXPOS, D), persistent=False)
        self.encoder = nn.ModuleList(S2sEncLayer(False, F.silu) for _ in range(L))
        self.decoder = nn.ModuleList(S2sDecLayer(False, F.silu) for _ in range(L))
        self.register_buffer("final_logits_bias", torch.randn(1, VOCAB) * 0.1)

    def forward(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask):
        s, t = input_ids.shape[1], decoder_input_ids.shape[1]
        x = self.shared(input_ids) * math.sqrt(D) + self.sinus[:s]
        enc_mask = hf_expand_mask(attention_mask, s)
        for layer in self.encoder:
            x = layer(x, enc_mask)
        y = self.shared(decoder_input_ids) * math.sqrt(D) + self.sinus[:t]
        causal = hf_causal(input_ids.shape[0], t) + hf_expand_mask(decoder_attention_mask, t)
        causal = causal.clamp(min=FMIN)
        cross = hf_expand_mask(attention_mask, t)
        for layer in self.decoder:
            y = layer(y, causal, x, cross)
        return F.linear(y, self.shared.weight) + self.final_logits_bias


class Pegasus(nn.Module):
    """Pegasus (PegasusForConditionalGeneration) in one graph: the shared
    table times sqrt(d), the same fixed sinusoid table, pre-LN layers with
    ReLU, the final LayerNorms; the masks made by `where` from booleans
    (the padding [B, 1, 1, S] broadcast, the causal [T, T] from a tril);
    tied logits plus final_logits_bias."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Embedding(VOCAB, D)
        self.register_buffer("sinus", ctrl_positions(MAXPOS, D), persistent=False)
        self.encoder = nn.ModuleList(S2sEncLayer(True, F.relu) for _ in range(L))
        self.decoder = nn.ModuleList(S2sDecLayer(True, F.relu) for _ in range(L))
        self.enc_ln, self.dec_ln = nn.LayerNorm(D), nn.LayerNorm(D)
        self.register_buffer("final_logits_bias", torch.randn(1, VOCAB) * 0.1)

    def forward(self, input_ids, attention_mask, decoder_input_ids):
        s, t = input_ids.shape[1], decoder_input_ids.shape[1]
        pos = torch.arange(s)
        x = self.shared(input_ids) * math.sqrt(D) + self.sinus[pos]
        keep = attention_mask[:, None, None, :].bool()
        pad = torch.where(keep, torch.tensor(0.0), torch.tensor(FMIN))
        for layer in self.encoder:
            x = layer(x, pad)
        x = self.enc_ln(x)
        y = self.shared(decoder_input_ids) * math.sqrt(D) + self.sinus[torch.arange(t)]
        tril = torch.ones(t, t, dtype=torch.bool).tril()
        causal = torch.where(tril, torch.tensor(0.0), torch.tensor(FMIN))[None, None]
        for layer in self.decoder:
            y = layer(y, causal, x, pad)
        return F.linear(self.dec_ln(y), self.shared.weight) + self.final_logits_bias


def fairseq_positions(ids):
    # create_position_ids_from_input_ids: the non-padding tokens counted from
    # padding_idx + 1, the padding at padding_idx
    m = ids.ne(PAD).int()
    return (torch.cumsum(m, dim=1).type_as(m) * m).long() + PAD


class M2M100(nn.Module):
    """M2M100 / NLLB (M2M100ForConditionalGeneration) in one graph: the
    shared table times sqrt(d), M2M100SinusoidalPositionalEmbedding (the
    fairseq table, its padding row zero) index_select'ed at positions counted
    over the non-padding ids, pre-LN layers with ReLU, final LayerNorms,
    the lm_head tied without a bias."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Embedding(VOCAB, D)
        self.register_buffer("weights", fairseq_sinusoids(MAXPOS + 2, D, PAD), persistent=False)
        self.encoder = nn.ModuleList(S2sEncLayer(True, F.relu) for _ in range(L))
        self.decoder = nn.ModuleList(S2sDecLayer(True, F.relu) for _ in range(L))
        self.enc_ln, self.dec_ln = nn.LayerNorm(D), nn.LayerNorm(D)

    def positions(self, ids):
        b, s = ids.shape
        return self.weights.index_select(0, fairseq_positions(ids).view(-1)).view(b, s, D)

    def forward(self, input_ids, attention_mask, decoder_input_ids):
        t = decoder_input_ids.shape[1]
        x = self.shared(input_ids) * math.sqrt(D) + self.positions(input_ids)
        enc_mask = hf_expand_mask(attention_mask, input_ids.shape[1])
        for layer in self.encoder:
            x = layer(x, enc_mask)
        x = self.enc_ln(x)
        y = self.shared(decoder_input_ids) * math.sqrt(D) + self.positions(decoder_input_ids)
        causal = hf_causal(input_ids.shape[0], t)
        cross = hf_expand_mask(attention_mask, t)
        for layer in self.decoder:
            y = layer(y, causal, x, cross)
        return F.linear(self.dec_ln(y), self.shared.weight)


def s2s_inputs(seed, dec_mask=False, pad_ids=False):
    # the source's ids and mask (the second row padded 2), decoder ids two
    # shorter (with dec_mask: the last row's last decoder token padded too)
    def make(b, s):
        ids, mask = data(seed + s, b, s)
        dec, dmask = data(seed + 100 + s, b, s - 2, pad_last=1 if dec_mask else 0)
        if pad_ids:  # the padding as the tokenizer writes it
            ids = ids.masked_fill(mask == 0, PAD)
        return [ids, mask, dec] + ([dmask] if dec_mask else [])
    return make


# ---------------------------------------------------------------- Funnel ----

class FunnelAttn(nn.Module):
    """FunnelRelMultiheadAttention's content stream: q_head without bias,
    q and r_w_bias scaled by 1/sqrt(d), einsum scores, the mask as
    `- 1e6 * (1 - m)`, einsum context, post_proj, the residual from the
    query's rows and a post-LayerNorm. (The factorized positional and the
    token-type terms depend on Q: they are left out.)"""

    def __init__(self):
        super().__init__()
        self.q_head = nn.Linear(D, D, bias=False)
        self.k_head, self.v_head = nn.Linear(D, D), nn.Linear(D, D)
        self.r_w_bias = nn.Parameter(torch.zeros(H, DH))
        self.post_proj, self.layer_norm = nn.Linear(D, D), nn.LayerNorm(D, eps=1e-9)

    def forward(self, query, key, value, mask):
        b, sq, _ = query.shape
        sk = key.shape[1]
        scale = 1.0 / math.sqrt(DH)
        q = self.q_head(query).view(b, sq, H, DH) * scale
        k, v = self.k_head(key).view(b, sk, H, DH), self.v_head(value).view(b, sk, H, DH)
        score = torch.einsum("bind,bjnd->bnij", q + self.r_w_bias * scale, k)
        score = score.float() - 1e6 * (1 - mask[:, None, None].float())
        p = torch.softmax(score, dim=-1)
        o = torch.einsum("bnij,bjnd->bind", p, v)
        return self.layer_norm(query + self.post_proj(o.reshape(b, sq, D)))


class FunnelLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = FunnelAttn()
        self.linear_1, self.linear_2 = nn.Linear(D, FF), nn.Linear(FF, D)
        self.layer_norm = nn.LayerNorm(D, eps=1e-9)

    def forward(self, query, key, value, mask):
        x = self.attention(query, key, value, mask)
        return self.layer_norm(x + self.linear_2(F.gelu(self.linear_1(x))))


def funnel_pool(t, mode):
    # pool_tensor with separate_cls and truncate_seq: [CLS] prepended to the
    # rows without the last, pooled by 2 (ceil): [CLS] stays alone
    t = torch.cat([t[:, :1], t[:, :-1]], dim=1)
    if mode == "mean":
        return F.avg_pool2d(t[:, None], (2, 1), stride=(2, 1), ceil_mode=True)[:, 0]
    return -F.max_pool2d(-t[:, None, :, None], (2, 1), stride=(2, 1), ceil_mode=True)[:, 0, :, 0]


class Funnel(nn.Module):
    """FunnelBaseModel, block_sizes [1, 2]: word embeddings and a
    LayerNorm (no positions in the embeddings), a first block of one layer
    over the S rows; the second block's first layer attends from the
    mean-pooled rows (pool_q_only) to the S unpooled keys and values, its
    second layer on the pooled rows under the mask min-pooled; output
    [B, ceil(S / 2), D]."""

    def __init__(self):
        super().__init__()
        self.word_embeddings, self.layer_norm = nn.Embedding(VOCAB, D), nn.LayerNorm(D, eps=1e-9)
        self.layers = nn.ModuleList(FunnelLayer() for _ in range(3))

    def forward(self, input_ids, attention_mask):
        x = self.layer_norm(self.word_embeddings(input_ids))
        x = self.layers[0](x, x, x, attention_mask)
        pooled = funnel_pool(x, "mean")
        x = self.layers[1](pooled, x, x, attention_mask)
        mask = funnel_pool(attention_mask.float(), "min")
        return self.layers[2](x, x, x, mask)


# -------------------------------------------------------------- ConvBERT ----

CONV_K = 3  # conv_kernel_size (ConvBERT's default 9)


class SeparableConv1D(nn.Module):
    # a depthwise Conv1d over the sequence, a pointwise one, then a bias
    def __init__(self, cin, cout):
        super().__init__()
        self.depthwise = nn.Conv1d(cin, cin, CONV_K, groups=cin, padding=CONV_K // 2, bias=False)
        self.pointwise = nn.Conv1d(cin, cout, 1, bias=False)
        self.bias = nn.Parameter(torch.zeros(cout, 1))

    def forward(self, x):
        return self.pointwise(self.depthwise(x)) + self.bias


class ConvBertLayer(nn.Module):
    """ConvBertLayer, head_ratio 2: query / key / value of the 2 attention
    heads (head size 8); the span-based dynamic convolution of the other
    2: a kernel per row from softmax(Linear(key_conv(x) * query)), applied to
    the unfolded windows of conv_out(x); both halves concatenated per row,
    then dense, residual, LayerNorm (post-LN), a GELU FFN."""

    def __init__(self):
        super().__init__()
        self.nh = H // 2
        self.all = self.nh * DH
        self.query, self.key, self.value = (nn.Linear(D, self.all) for _ in range(3))
        self.key_conv_attn_layer = SeparableConv1D(D, self.all)
        self.conv_kernel_layer = nn.Linear(self.all, self.nh * CONV_K)
        self.conv_out_layer = nn.Linear(D, self.all)
        self.dense, self.ln1 = nn.Linear(D, D), nn.LayerNorm(D, eps=1e-12)
        self.inter, self.out, self.ln2 = nn.Linear(D, FF), nn.Linear(FF, D), nn.LayerNorm(D, eps=1e-12)

    def forward(self, x, ext):
        b, s, _ = x.shape
        mq, mk, mv = self.query(x), self.key(x), self.value(x)
        kconv = self.key_conv_attn_layer(x.transpose(1, 2)).transpose(1, 2)
        q, k, v = heads(mq, self.nh, DH), heads(mk, self.nh, DH), heads(mv, self.nh, DH)
        kernel = self.conv_kernel_layer(kconv * mq)
        kernel = torch.softmax(torch.reshape(kernel, [-1, CONV_K, 1]), dim=1)
        cout = self.conv_out_layer(x)
        cout = torch.reshape(cout, [b, -1, self.all]).transpose(1, 2).contiguous().unsqueeze(-1)
        cout = F.unfold(cout, kernel_size=[CONV_K, 1], dilation=1, padding=[(CONV_K - 1) // 2, 0],
                        stride=1)
        cout = cout.transpose(1, 2).reshape(b, -1, self.all, CONV_K)
        cout = torch.reshape(cout, [-1, DH, CONV_K])
        cout = torch.matmul(cout, kernel)
        cout = torch.reshape(cout, [-1, self.nh, DH])
        w = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(DH) + ext
        ctx = torch.matmul(F.softmax(w, dim=-1), v).permute(0, 2, 1, 3).contiguous()
        cout = torch.reshape(cout, [b, -1, self.nh, DH])
        ctx = torch.cat([ctx, cout], 2).view(b, s, D)
        x = self.ln1(x + self.dense(ctx))
        return self.ln2(x + self.out(F.gelu(self.inter(x))))


class ConvBert(nn.Module):
    """ConvBertModel: word + position + token-type embeddings, LayerNorm,
    two ConvBERT layers under the extended mask (1 - m) * finfo.min."""

    def __init__(self):
        super().__init__()
        self.word, self.pos, self.token_type = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D), nn.Embedding(2, D)
        self.ln = nn.LayerNorm(D, eps=1e-12)
        self.layers = nn.ModuleList(ConvBertLayer() for _ in range(L))

    def forward(self, input_ids, attention_mask, token_type_ids):
        s = input_ids.shape[1]
        x = self.ln(self.word(input_ids) + self.pos(torch.arange(s)[None]) + self.token_type(token_type_ids))
        ext = (1.0 - attention_mask[:, None, None, :].float()) * FMIN
        for layer in self.layers:
            x = layer(x, ext)
        return x


# ------------------------------------------------------------ Falcon-40B ----

KV = 2


def causal_padding_4d(attention_mask, s):
    # _prepare_4d_causal_attention_mask: a triu of finfo.min, the padded keys
    # masked_fill'ed with finfo.min
    causal = torch.full((s, s), FMIN).triu(1)[None, None].expand(attention_mask.shape[0], 1, s, s)
    return causal.masked_fill(attention_mask[:, None, None, :] == 0, FMIN)


def rope_pos(s, dim, base=10000.0):
    inv = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
    f = torch.outer(torch.arange(s).float(), inv)
    e = torch.cat((f, f), dim=-1)
    return e.cos()[None, None], e.sin()[None, None]


class Falcon40bBlock(nn.Module):
    """FalconDecoderLayer with new_decoder_architecture: ln_attn and ln_mlp
    both on the block's input; query_key_value grouped [KV, H / KV + 2, d]
    (each group's queries, then its key and value), the key and value
    broadcast to the group's queries; rotary; parallel residual."""

    def __init__(self):
        super().__init__()
        self.ln_attn, self.ln_mlp = nn.LayerNorm(D), nn.LayerNorm(D)
        self.query_key_value = nn.Linear(D, (H + 2 * KV) * DH, bias=False)
        self.dense = nn.Linear(D, D, bias=False)
        self.dense_h_to_4h, self.dense_4h_to_h = nn.Linear(D, FF, bias=False), nn.Linear(FF, D, bias=False)

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        qkv = self.query_key_value(self.ln_attn(x)).view(b, s, KV, H // KV + 2, DH)
        q = qkv[:, :, :, :-2]
        k = qkv[:, :, :, [-2]].expand(q.shape)  # broadcast_to: not exportable in torch 1.13
        v = qkv[:, :, :, [-1]].expand(q.shape)
        q, k, v = (t.flatten(2, 3).transpose(1, 2) for t in (q, k, v))
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        w = q @ k.transpose(-1, -2) / math.sqrt(DH) + mask
        o = F.softmax(w, dim=-1, dtype=torch.float32) @ v
        attn = self.dense(o.transpose(1, 2).reshape(b, s, D))
        mlp = self.dense_4h_to_h(F.gelu(self.dense_h_to_4h(self.ln_mlp(x))))
        return x + attn + mlp


class Falcon40b(nn.Module):
    def __init__(self):
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB, D)
        self.h = nn.ModuleList(Falcon40bBlock() for _ in range(L))
        self.ln_f, self.lm_head = nn.LayerNorm(D), nn.Linear(D, VOCAB, bias=False)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        cos, sin = rope_pos(s, DH)
        mask = causal_padding_4d(attention_mask, s)
        x = self.word_embeddings(input_ids)
        for blk in self.h:
            x = blk(x, cos, sin, mask)
        return self.lm_head(self.ln_f(x))


# ------------------------------------------------------------- Gemma-7B ----

GDH = 16  # head_dim: H * GDH = 64 on a model of width 32


class GemmaNorm(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d))

    def forward(self, x):
        out = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)
        return out * (1.0 + self.weight.float())


class Gemma7bBlock(nn.Module):
    """GemmaDecoderLayer as Gemma-7B shapes it: 4 heads of 64 / 4 = 16 on a
    model of width 32 (q_proj 32 -> 64, o_proj 64 -> 32), multi-head K/V,
    rotary over the head size, GeGLU (tanh GELU gate)."""

    def __init__(self):
        super().__init__()
        self.input_layernorm, self.post_attention_layernorm = GemmaNorm(D), GemmaNorm(D)
        self.q_proj, self.k_proj = nn.Linear(D, H * GDH, bias=False), nn.Linear(D, H * GDH, bias=False)
        self.v_proj, self.o_proj = nn.Linear(D, H * GDH, bias=False), nn.Linear(H * GDH, D, bias=False)
        self.gate_proj, self.up_proj = nn.Linear(D, FF, bias=False), nn.Linear(D, FF, bias=False)
        self.down_proj = nn.Linear(FF, D, bias=False)

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        h = self.input_layernorm(x)
        q, k, v = heads(self.q_proj(h), H, GDH), heads(self.k_proj(h), H, GDH), heads(self.v_proj(h), H, GDH)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        w = torch.matmul(q, k.transpose(2, 3)) * GDH ** -0.5 + mask
        o = torch.matmul(F.softmax(w, dim=-1, dtype=torch.float32), v)
        x = x + self.o_proj(merged(o))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.gelu(self.gate_proj(h), approximate="tanh") * self.up_proj(h))


class Gemma7b(nn.Module):
    """Gemma: embeddings times a sqrt(d) normalizer tensor, the 4-D causal
    and padding mask, (1 + w) RMSNorms, the head tied."""

    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(Gemma7bBlock() for _ in range(L))
        self.norm = GemmaNorm(D)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        cos, sin = rope_pos(s, GDH)
        x = self.embed_tokens(input_ids) * torch.tensor(D ** 0.5, dtype=torch.float32)
        mask = causal_padding_4d(attention_mask, s)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x) @ self.embed_tokens.weight.t()


# ----------------------------------------------------------------- Qwen2 ----

class Qwen2Block(nn.Module):
    """Qwen2DecoderLayer: q / k / v with biases, o without, GQA 4 / 2 by
    repeat_kv, rotary gathered by position_ids, RMSNorm, SwiGLU."""

    def __init__(self):
        super().__init__()
        self.input_layernorm, self.post_attention_layernorm = RmsNorm(D, 1e-6), RmsNorm(D, 1e-6)
        self.q_proj, self.k_proj = nn.Linear(D, D), nn.Linear(D, KV * DH)
        self.v_proj, self.o_proj = nn.Linear(D, KV * DH), nn.Linear(D, D, bias=False)
        self.gate_proj, self.up_proj = nn.Linear(D, FF, bias=False), nn.Linear(D, FF, bias=False)
        self.down_proj = nn.Linear(FF, D, bias=False)

    def forward(self, x, cos, sin, mask):
        h = self.input_layernorm(x)
        q, k, v = heads(self.q_proj(h), H, DH), heads(self.k_proj(h), KV, DH), heads(self.v_proj(h), KV, DH)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, H // KV), repeat_kv(v, H // KV)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(DH) + mask
        o = torch.matmul(F.softmax(w, dim=-1, dtype=torch.float32), v)
        x = x + self.o_proj(merged(o))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Qwen2(nn.Module):
    """Qwen2 as batched generation runs it: left padding, position_ids an
    input (cumsum(mask) - 1, 1 on the padding), cos / sin from
    inv_freq @ position_ids, the 4-D causal and padding mask, an untied
    head."""

    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(Qwen2Block() for _ in range(L))
        self.norm, self.lm_head = RmsNorm(D, 1e-6), nn.Linear(D, VOCAB, bias=False)
        self.register_buffer("inv_freq", 1.0 / (1e6 ** (torch.arange(0, DH, 2).float() / DH)),
                             persistent=False)

    def forward(self, input_ids, attention_mask, position_ids):
        s = input_ids.shape[1]
        f = (self.inv_freq[None, :, None] @ position_ids[:, None, :].float()).transpose(1, 2)
        emb = torch.cat((f, f), dim=-1)
        cos, sin = emb.cos()[:, None], emb.sin()[:, None]
        mask = causal_padding_4d(attention_mask, s)
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.norm(x))


def ids_mask_left_pos(seed):
    # the second row padded 2 on the left, positions as generate() makes them
    def make(b, s):
        ids, mask = data(seed + s, b, s)
        mask = mask.flip(1)
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)
        return [ids, mask, pos]
    return make


# ----------------------------------------------------------------- XLNet ----

class XLNetLayer(nn.Module):
    """XLNetRelativeAttention's content stream and XLNetFeedForward, written
    as Hugging Face does, sequence first ([S, B, D]): q / k / v / o as
    [D, H, d] einsum weights, the relative keys from the sinusoid of the
    distances klen .. -qlen + 1, the scores ac (q + r_w_bias against k) plus
    bd (q + r_r_bias against the relative keys, rel_shift_bnij'd), scaled,
    minus 1e30 times the mask; post-LN, GELU."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o, self.r = (nn.Parameter(torch.zeros(D, H, DH)) for _ in range(5))
        self.r_r_bias, self.r_w_bias = nn.Parameter(torch.zeros(H, DH)), nn.Parameter(torch.zeros(H, DH))
        self.layer_norm = nn.LayerNorm(D, eps=1e-12)
        self.layer_1, self.layer_2 = nn.Linear(D, FF), nn.Linear(FF, D)
        self.ff_norm = nn.LayerNorm(D, eps=1e-12)

    @staticmethod
    def rel_shift_bnij(x, klen):
        b, n, i, j = x.shape
        x = x.reshape(b, n, j, i)[:, :, 1:, :]
        x = x.reshape(b, n, i, j - 1)
        return torch.index_select(x, 3, torch.arange(klen, dtype=torch.long))

    def forward(self, h, pos_emb, mask):
        q = torch.einsum("ibh,hnd->ibnd", h, self.q)
        k = torch.einsum("ibh,hnd->ibnd", h, self.k)
        v = torch.einsum("ibh,hnd->ibnd", h, self.v)
        kr = torch.einsum("ibh,hnd->ibnd", pos_emb, self.r)
        ac = torch.einsum("ibnd,jbnd->bnij", q + self.r_w_bias, k)
        bd = torch.einsum("ibnd,jbnd->bnij", q + self.r_r_bias, kr)
        bd = self.rel_shift_bnij(bd, klen=ac.shape[3])
        score = (ac + bd) * (1 / DH ** 0.5)
        score = score - 1e30 * torch.einsum("ijbn->bnij", mask)
        p = F.softmax(score, dim=3)
        vec = torch.einsum("bnij,jbnd->ibnd", p, v)
        h = self.layer_norm(torch.einsum("ibnd,hnd->ibh", vec, self.o) + h)
        return self.ff_norm(h + self.layer_2(F.gelu(self.layer_1(h))))


class XLNet(nn.Module):
    """XLNetModel (attn_type "bi", no memory, no two-stream): the ids
    transposed to [S, B], word embeddings, the relative position encoding
    [2S, 1, D] ([sin | cos] of the distances S .. -S + 1) expanded over the
    batch, the mask ((1 - m) [1, S, B, 1] minus the identity) > 0 so each
    row sees itself; the output back to [B, S, D]."""

    def __init__(self):
        super().__init__()
        self.word_embedding = nn.Embedding(VOCAB, D)
        self.layer = nn.ModuleList(XLNetLayer() for _ in range(L))

    def forward(self, input_ids, attention_mask):
        ids = input_ids.transpose(0, 1).contiguous()
        s, b = ids.shape
        data_mask = (1.0 - attention_mask.transpose(0, 1).contiguous().float())[None]
        attn_mask = data_mask[:, :, :, None]
        non_tgt = -torch.eye(s)
        mask = ((attn_mask + non_tgt[:, :, None, None]) > 0).float()
        inv = 1 / torch.pow(10000, torch.arange(0, D, 2.0) / D)
        fwd = torch.arange(s, -s, -1.0)
        sinus = torch.einsum("i,d->id", fwd, inv)
        pos_emb = torch.cat([torch.sin(sinus), torch.cos(sinus)], dim=-1)[:, None, :].expand(-1, b, -1)
        h = self.word_embedding(ids)
        for layer in self.layer:
            h = layer(h, pos_emb, mask)
        return h.permute(1, 0, 2).contiguous()


# ---------------------------------------------------------------- export ----

LM = ["input_ids", "attention_mask"]
S2S = ["input_ids", "attention_mask", "decoder_input_ids"]


def cases():
    """(name, model, seed, inputs, input names, output names, opset, export
    keywords) of each case, the models built in this order from seed 0."""
    funnel_axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                   "last_hidden_state": {0: "batch", 1: "pooled_seq"}}
    marian_axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
                   "decoder_input_ids": {0: "batch", 1: "dec_seq"},
                   "decoder_attention_mask": {0: "batch", 1: "dec_seq"},
                   "logits": {0: "batch", 1: "dec_seq"}}
    return [
        ("z6_mbart_preln_encdec_op14", MBart(), 801, s2s_inputs(201), S2S, ["logits"], 14, {}),
        ("z6_marian_sinus_postln_decmask_op14", Marian(), 802, s2s_inputs(202, dec_mask=True),
         S2S + ["decoder_attention_mask"], ["logits"], 14, {"dynamic": marian_axes}),
        ("z6_pegasus_preln_sinus_where_op14", Pegasus(), 803, s2s_inputs(203), S2S, ["logits"], 14, {}),
        ("z6_m2m100_padpos_encdec_op14", M2M100(), 804, s2s_inputs(204, pad_ids=True), S2S,
         ["logits"], 14, {}),
        ("z6_funnel_pooledq_op14", Funnel(), 805, ids_mask(205), LM, ["last_hidden_state"], 14,
         {"dynamic": funnel_axes}),
        ("z6_convbert_spanconv_op14", ConvBert(), 806, ids_mask_types(206),
         ["input_ids", "attention_mask", "token_type_ids"], ["last_hidden_state"], 14, {}),
        ("z6_falcon40b_groupqkv_twoln_op14", Falcon40b(), 807, ids_mask(207), LM, ["logits"], 14, {}),
        ("z6_gemma7b_headdim16_op14", Gemma7b(), 808, ids_mask(208), LM, ["logits"], 14, {}),
        ("z6_qwen2_leftpad_posids_gqa_op14", Qwen2(), 809, ids_mask_left_pos(209),
         ["input_ids", "attention_mask", "position_ids"], ["logits"], 14, {}),
        ("z6_xlnet_relshift_seqfirst_op14", XLNet(), 810, ids_mask(210), LM, ["last_hidden_state"], 14, {}),
    ]


if __name__ == "__main__":
    make_zoo.PREFIXES.extend(sys.argv[2:])
    torch.manual_seed(0)
    for name, model, seed, make_inputs, ins, outs, opset, kw in cases():
        export(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)),
               name, model, seed, make_inputs, ins, outs, opset, **kw)
