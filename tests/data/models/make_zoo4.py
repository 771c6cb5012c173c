#!/usr/bin/env python3
"""make_zoo4.py -- a fourth round of the model zoo as whole models (z4_* cases
of tests/data/models): families the earlier rounds do not write, each from
its published architecture in its authors' idioms:
GPT-Neo (no 1/sqrt(d) on the scores, q and k upcast, a local window in
alternate layers cut from a registered tril buffer by xor), DETR (position
embeddings added to the query and key inputs but not to the value's, in the
encoder, the decoder's self-attention and its cross-attention; written as
the original with nn.MultiheadAttention sequence first, and as Hugging
Face's DetrAttention with a pixel mask), MobileBERT (bottlenecks, NoNorm,
query and key from a shared bottleneck and the value from the full-width
hidden state, four stacked FFNs), BERT with relative_key / relative_key_query
position embeddings, Granite (multipliers on the embeddings, the residual
branches and the logits; the attention's scale a configured number),
Persimmon (a per-head LayerNorm of q and k, rotary on half of each head,
squared ReLU), StarCoder2 (GQA, biases, a sliding window), XGLM (scaled
embeddings, sinusoidal positions offset by 2) and SqueezeBERT (grouped
Conv1d projections over [B, C, S]).

Each is small (d 32 -- MobileBERT 64 wide with a 32 bottleneck --, 4 heads,
FFN 64, 2 layers, vocabulary 64; images 16 x 16), seeded, with PyTorch's
outputs for two data sets (make_zoo.export: batch 2 of 7, the second row
padded; batch 3 of 5).

    /usr/bin/python3 make_zoo4.py [OUTDIR [PREFIX...]]

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
from make_zoo import export, ids_mask, ids_mask_types, repeat_kv
from make_zoo2 import SwiGlu, causal_padding, images, padding_ext, rope
from make_zoo3 import heads, merged

D, H, FF, L, VOCAB, MAXPOS = 32, 4, 64, 2, 64, 16
DH = D // H
FMIN = torch.finfo(torch.float32).min


# --------------------------------------------------------------- GPT-Neo ----

class GptNeoAttn(nn.Module):
    """Hugging Face's GPTNeoSelfAttention (eager): q, k, v without bias, q
    and k upcast to float32, no scaling of the scores, the causal mask a
    slice of a registered bool buffer through where(finfo.min); a local
    layer's buffer is the tril xor'ed with the tril `window` below."""

    def __init__(self, local, window):
        super().__init__()
        bias = torch.tril(torch.ones((MAXPOS, MAXPOS), dtype=torch.bool)).view(1, 1, MAXPOS, MAXPOS)
        if local:
            bias = torch.bitwise_xor(bias, torch.tril(bias, -window))
        self.register_buffer("bias", bias, persistent=False)
        self.k_proj, self.v_proj = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.q_proj, self.out_proj = nn.Linear(D, D, bias=False), nn.Linear(D, D)

    def forward(self, x, ext):
        q, k, v = heads(self.q_proj(x), H, DH), heads(self.k_proj(x), H, DH), heads(self.v_proj(x), H, DH)
        q, k = q.to(torch.float32), k.to(torch.float32)
        w = torch.matmul(q, k.transpose(-1, -2))
        ql, kl = q.size(-2), k.size(-2)
        causal = self.bias[:, :, kl - ql:kl, :kl]
        mask_value = torch.tensor(torch.finfo(w.dtype).min, dtype=w.dtype)
        w = torch.where(causal, w, mask_value) + ext
        w = F.softmax(w, dim=-1).to(v.dtype)
        return self.out_proj(merged(torch.matmul(w, v)))


class GptNeoBlock(nn.Module):
    def __init__(self, local, window):
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.attn = GptNeoAttn(local, window)
        self.c_fc, self.c_proj = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, ext):
        x = x + self.attn(self.ln_1(x), ext)
        return x + self.c_proj(gelu_new(self.c_fc(self.ln_2(x))))


class GptNeo(nn.Module):
    """GPT-Neo: attention_types [global, local], learned positions from
    arange, the padding `(1 - m) * finfo.min`, a final LayerNorm, the
    logits by the tied token table."""

    def __init__(self, window):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D)
        self.h = nn.ModuleList(GptNeoBlock(i % 2 == 1, window) for i in range(L))
        self.ln_f = nn.LayerNorm(D)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        pos = torch.arange(0, s, dtype=torch.long).unsqueeze(0)
        x = self.wte(input_ids) + self.wpe(pos)
        ext = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * FMIN
        for block in self.h:
            x = block(x, ext)
        return F.linear(self.ln_f(x), self.wte.weight)


# ------------------------------------------------------------------ DETR ----

def sine_positions(not_mask, d, temperature=10000.0):
    """DETR's PositionEmbeddingSine (normalize=True, scale 2 pi): [B, h, w]
    of 0 / 1 -> [B, d, h, w], y then x, sin and cos interleaved."""
    npf = d // 2
    y = not_mask.cumsum(1, dtype=torch.float32)
    x = not_mask.cumsum(2, dtype=torch.float32)
    eps, scale = 1e-6, 2 * math.pi
    y = y / (y[:, -1:, :] + eps) * scale
    x = x / (x[:, :, -1:] + eps) * scale
    dim_t = torch.arange(npf, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / npf)
    px, py = x[:, :, :, None] / dim_t, y[:, :, :, None] / dim_t
    px = torch.stack((px[:, :, :, 0::2].sin(), px[:, :, :, 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[:, :, :, 0::2].sin(), py[:, :, :, 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)


class DetrEncLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(D, H)
        self.linear1, self.linear2 = nn.Linear(D, FF), nn.Linear(FF, D)
        self.norm1, self.norm2 = nn.LayerNorm(D), nn.LayerNorm(D)

    def forward(self, src, pos):
        q = k = src + pos
        src = self.norm1(src + self.self_attn(q, k, value=src)[0])
        return self.norm2(src + self.linear2(F.relu(self.linear1(src))))


class DetrDecLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn, self.multihead_attn = nn.MultiheadAttention(D, H), nn.MultiheadAttention(D, H)
        self.linear1, self.linear2 = nn.Linear(D, FF), nn.Linear(FF, D)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(D), nn.LayerNorm(D), nn.LayerNorm(D)

    def forward(self, tgt, memory, pos, query_pos):
        q = k = tgt + query_pos
        tgt = self.norm1(tgt + self.self_attn(q, k, value=tgt)[0])
        t2 = self.multihead_attn(query=tgt + query_pos, key=memory + pos, value=memory)[0]
        tgt = self.norm2(tgt + t2)
        return self.norm3(tgt + self.linear2(F.relu(self.linear1(tgt))))


class Detr(nn.Module):
    """The original DETR (facebookresearch/detr): a Conv backbone (4 x 4
    patches, ReLU) and a 1 x 1 input projection, sine positions from the
    (all-valid) mask by cumsum, sequence-first nn.MultiheadAttention with
    the positions on q and k only, 5 learned object queries, post-LN
    encoder and decoder, the decoder's final norm, class and box heads."""

    def __init__(self, queries=5, classes=7):
        super().__init__()
        self.backbone, self.input_proj = nn.Conv2d(3, 16, 4, 4), nn.Conv2d(16, D, 1)
        self.enc = nn.ModuleList(DetrEncLayer() for _ in range(L))
        self.dec = nn.ModuleList(DetrDecLayer() for _ in range(L))
        self.dec_norm = nn.LayerNorm(D)
        self.query_embed = nn.Embedding(queries, D)
        self.class_embed = nn.Linear(D, classes + 1)
        self.bbox1, self.bbox2 = nn.Linear(D, D), nn.Linear(D, 4)

    def forward(self, pixel_values):
        src = self.input_proj(F.relu(self.backbone(pixel_values)))
        b, c, h, w = src.shape
        not_mask = torch.ones(b, h, w, dtype=torch.float32)
        pos = sine_positions(not_mask, D).flatten(2).permute(2, 0, 1)
        src = src.flatten(2).permute(2, 0, 1)
        query_pos = self.query_embed.weight.unsqueeze(1).repeat(1, b, 1)
        tgt = torch.zeros_like(query_pos)
        for layer in self.enc:
            src = layer(src, pos)
        for layer in self.dec:
            tgt = layer(tgt, src, pos, query_pos)
        hs = self.dec_norm(tgt).transpose(0, 1)
        return self.class_embed(hs), self.bbox2(F.relu(self.bbox1(hs))).sigmoid()


class HfDetrAttn(nn.Module):
    """Hugging Face's DetrAttention: the position embeddings added to the
    hidden states for q and k (and to the key-value states for k), v from
    the states without them; q scaled after its projection; bmm over
    [B * H, S, d]; the mask [B, 1, Sq, Sk] added."""

    def __init__(self):
        super().__init__()
        self.q_proj, self.k_proj = nn.Linear(D, D), nn.Linear(D, D)
        self.v_proj, self.out_proj = nn.Linear(D, D), nn.Linear(D, D)

    def shape(self, t, b):
        return t.view(b, -1, H, DH).transpose(1, 2).contiguous()

    def forward(self, hidden, pos, kv=None, kv_pos=None, mask=None):
        b, tl, _ = hidden.shape
        orig = hidden
        hidden = hidden + pos
        q = self.q_proj(hidden) * DH ** -0.5
        if kv is not None:
            k, v = self.shape(self.k_proj(kv + kv_pos), b), self.shape(self.v_proj(kv), b)
        else:
            k, v = self.shape(self.k_proj(hidden), b), self.shape(self.v_proj(orig), b)
        q = self.shape(q, b).view(b * H, -1, DH)
        k, v = k.view(b * H, -1, DH), v.view(b * H, -1, DH)
        sl = k.size(1)
        w = torch.bmm(q, k.transpose(1, 2))
        if mask is not None:
            w = (w.view(b, H, tl, sl) + mask).view(b * H, tl, sl)
        o = torch.bmm(F.softmax(w, dim=-1), v)
        return self.out_proj(o.view(b, H, tl, DH).transpose(1, 2).reshape(b, tl, D))


class HfDetrEncLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn = HfDetrAttn()
        self.self_attn_layer_norm, self.final_layer_norm = nn.LayerNorm(D), nn.LayerNorm(D)
        self.fc1, self.fc2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, pos, mask):
        x = self.self_attn_layer_norm(x + self.self_attn(x, pos, mask=mask))
        return self.final_layer_norm(x + self.fc2(F.relu(self.fc1(x))))


class HfDetrDecLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn, self.encoder_attn = HfDetrAttn(), HfDetrAttn()
        self.self_attn_layer_norm, self.encoder_attn_layer_norm = nn.LayerNorm(D), nn.LayerNorm(D)
        self.final_layer_norm = nn.LayerNorm(D)
        self.fc1, self.fc2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, query_pos, memory, pos, cross_mask):
        x = self.self_attn_layer_norm(x + self.self_attn(x, query_pos))
        x = self.encoder_attn_layer_norm(x + self.encoder_attn(x, query_pos, memory, pos, cross_mask))
        return self.final_layer_norm(x + self.fc2(F.relu(self.fc1(x))))


class HfDetr(nn.Module):
    """DETR as Hugging Face's DetrForObjectDetection writes it: a
    pixel_mask input (1 on the image, 0 on its padding) interpolated to the
    feature map, sine positions from it, the flat mask as `(1 - m) *
    finfo.min` for the encoder and the cross-attention, batch-first layers."""

    def __init__(self, queries=5, classes=7):
        super().__init__()
        self.backbone, self.input_projection = nn.Conv2d(3, 16, 4, 4), nn.Conv2d(16, D, 1)
        self.enc = nn.ModuleList(HfDetrEncLayer() for _ in range(L))
        self.dec = nn.ModuleList(HfDetrDecLayer() for _ in range(L))
        self.layernorm = nn.LayerNorm(D)
        self.query_position_embeddings = nn.Embedding(queries, D)
        self.class_labels_classifier = nn.Linear(D, classes + 1)
        self.bbox1, self.bbox2 = nn.Linear(D, D), nn.Linear(D, 4)

    def forward(self, pixel_values, pixel_mask):
        feat = F.relu(self.backbone(pixel_values))
        m = F.interpolate(pixel_mask[None].float(), size=feat.shape[-2:]).to(torch.bool)[0]
        pos = sine_positions(m.float(), D).flatten(2).permute(0, 2, 1)
        src = self.input_projection(feat).flatten(2).permute(0, 2, 1)
        flat = m.flatten(1)
        ext = (1.0 - flat[:, None, None, :].float()) * FMIN
        b = src.shape[0]
        query_pos = self.query_position_embeddings.weight.unsqueeze(0).repeat(b, 1, 1)
        for layer in self.enc:
            src = layer(src, pos, ext)
        x = torch.zeros_like(query_pos)
        cross = ext.expand(b, 1, query_pos.shape[1], flat.shape[1])
        for layer in self.dec:
            x = layer(x, query_pos, src, pos, cross)
        hs = self.layernorm(x)
        return self.class_labels_classifier(hs), self.bbox2(F.relu(self.bbox1(hs))).sigmoid()


def images_mask(seed, size=16):
    # the second image's right quarter padding
    def make(b, s):
        px = images(seed, size)(b, s)[0]
        m = torch.ones(b, size, size, dtype=torch.long)
        m[1, :, 3 * size // 4:] = 0
        return [px, m]
    return make


# ------------------------------------------------------------ MobileBERT ----

HID, INTRA, EMB = 64, 32, 16


class NoNorm(nn.Module):
    # MobileBERT's NoNorm: an elementwise affine map where BERT has LayerNorm
    def __init__(self, n):
        super().__init__()
        self.weight, self.bias = nn.Parameter(torch.ones(n)), nn.Parameter(torch.zeros(n))

    def forward(self, x):
        return x * self.weight + self.bias


class LinearNoNorm(nn.Module):
    def __init__(self, i, o):
        super().__init__()
        self.dense, self.LayerNorm = nn.Linear(i, o), NoNorm(o)

    def forward(self, x, residual=None):
        y = self.dense(x)
        return self.LayerNorm(y if residual is None else y + residual)


class MobileBertFfn(nn.Module):
    def __init__(self):
        super().__init__()
        self.intermediate, self.output = nn.Linear(INTRA, FF), LinearNoNorm(FF, INTRA)

    def forward(self, x):
        return self.output(F.relu(self.intermediate(x)), x)


class MobileBertLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.bottleneck_input, self.bottleneck_attention = LinearNoNorm(HID, INTRA), LinearNoNorm(HID, INTRA)
        self.query, self.key, self.value = nn.Linear(INTRA, INTRA), nn.Linear(INTRA, INTRA), nn.Linear(HID, INTRA)
        self.attention_output = LinearNoNorm(INTRA, INTRA)
        self.ffn = nn.ModuleList(MobileBertFfn() for _ in range(3))
        self.intermediate = nn.Linear(INTRA, FF)
        self.output = LinearNoNorm(FF, INTRA)
        self.output_bottleneck = LinearNoNorm(INTRA, HID)

    def forward(self, hidden, ext):
        layer_input = self.bottleneck_input(hidden)
        shared = self.bottleneck_attention(hidden)
        dh = INTRA // H
        q, k = heads(self.query(shared), H, dh), heads(self.key(shared), H, dh)
        v = heads(self.value(hidden), H, dh)
        att = F.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh) + ext, dim=-1)
        a = self.attention_output(merged(torch.matmul(att, v)), layer_input)
        for f in self.ffn:
            a = f(a)
        out = self.output(F.relu(self.intermediate(a)), a)
        return self.output_bottleneck(out, hidden)


class MobileBert(nn.Module):
    """MobileBERT: embeddings of 16 as a trigram (the next, this and the
    previous token's, padded at the ends) mapped to 64, positions and token
    types added, NoNorm; key_query_shared_bottleneck layers: q and k from
    a 32-wide bottleneck shared by both, v from the 64-wide hidden state,
    the attention 32 wide, 3 extra FFNs, the output bottleneck back to 64;
    `(1 - m) * finfo.min`."""

    def __init__(self):
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB, EMB)
        self.embedding_transformation = nn.Linear(3 * EMB, HID)
        self.position_embeddings, self.token_type_embeddings = nn.Embedding(MAXPOS, HID), nn.Embedding(2, HID)
        self.emb_norm = NoNorm(HID)
        self.layer = nn.ModuleList(MobileBertLayer() for _ in range(L))

    def forward(self, input_ids, attention_mask, token_type_ids):
        s = input_ids.shape[1]
        e = self.word_embeddings(input_ids)
        e = torch.cat([F.pad(e[:, 1:], [0, 0, 0, 1, 0, 0], value=0.0), e,
                       F.pad(e[:, :-1], [0, 0, 1, 0, 0, 0], value=0.0)], dim=2)
        x = self.embedding_transformation(e)
        x = x + self.position_embeddings(torch.arange(s)[None]) + self.token_type_embeddings(token_type_ids)
        x = self.emb_norm(x)
        ext = padding_ext(attention_mask)
        for layer in self.layer:
            x = layer(x, ext)
        return x


# ---------------------------------------------- BERT, relative positions ----

class RelBertLayer(nn.Module):
    """Hugging Face's BertSelfAttention with position_embedding_type
    relative_key (a q-by-distance-embedding term) or relative_key_query
    (and a k-by-distance-embedding term), both by einsum, before the
    1/sqrt(d); post-LN, GELU."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.query, self.key, self.value = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.distance_embedding = nn.Embedding(2 * MAXPOS - 1, DH)
        self.dense, self.ln1 = nn.Linear(D, D), nn.LayerNorm(D, eps=1e-12)
        self.intermediate, self.output, self.ln2 = nn.Linear(D, FF), nn.Linear(FF, D), nn.LayerNorm(D, eps=1e-12)

    def forward(self, x, ext):
        q, k, v = heads(self.query(x), H, DH), heads(self.key(x), H, DH), heads(self.value(x), H, DH)
        scores = torch.matmul(q, k.transpose(-1, -2))
        s = x.shape[1]
        left = torch.arange(s, dtype=torch.long).view(-1, 1)
        right = torch.arange(s, dtype=torch.long).view(1, -1)
        pe = self.distance_embedding(left - right + MAXPOS - 1)
        scores = scores + torch.einsum("bhld,lrd->bhlr", q, pe)
        if self.kind == "relative_key_query":
            scores = scores + torch.einsum("bhrd,lrd->bhlr", k, pe)
        att = F.softmax(scores / math.sqrt(DH) + ext, dim=-1)
        x = self.ln1(x + self.dense(merged(torch.matmul(att, v))))
        return self.ln2(x + self.output(F.gelu(self.intermediate(x))))


class RelBert(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.word, self.token_type = nn.Embedding(VOCAB, D), nn.Embedding(2, D)
        self.ln = nn.LayerNorm(D, eps=1e-12)
        self.layer = nn.ModuleList(RelBertLayer(kind) for _ in range(L))

    def forward(self, input_ids, attention_mask, token_type_ids):
        # no absolute positions with a relative position_embedding_type
        x = self.ln(self.word(input_ids) + self.token_type(token_type_ids))
        ext = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
        for layer in self.layer:
            x = layer(x, ext)
        return x


# --------------------------------------------------------------- Granite ----

class GraniteAttn(nn.Module):
    def __init__(self, kv, scale):
        super().__init__()
        self.kv, self.scale = kv, scale
        self.q_proj, self.k_proj = nn.Linear(D, D, bias=False), nn.Linear(D, kv * DH, bias=False)
        self.v_proj, self.o_proj = nn.Linear(D, kv * DH, bias=False), nn.Linear(D, D, bias=False)

    def forward(self, x, cos, sin, mask):
        q, k, v = heads(self.q_proj(x), H, DH), heads(self.k_proj(x), self.kv, DH), heads(self.v_proj(x), self.kv, DH)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, H // self.kv), repeat_kv(v, H // self.kv)
        w = torch.matmul(q, k.transpose(2, 3)) * self.scale + mask
        att = F.softmax(w, dim=-1, dtype=torch.float32)
        return self.o_proj(merged(torch.matmul(att, v)))


class GraniteBlock(nn.Module):
    def __init__(self, kv, scale, residual_multiplier):
        super().__init__()
        self.rm = residual_multiplier
        self.input_layernorm, self.post_attention_layernorm = RmsNorm(D, 1e-6), RmsNorm(D, 1e-6)
        self.self_attn, self.mlp = GraniteAttn(kv, scale), SwiGlu()

    def forward(self, x, cos, sin, mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask) * self.rm
        return x + self.mlp(self.post_attention_layernorm(x)) * self.rm


class Granite(nn.Module):
    """Granite-3: LLaMA (GQA 4 / 2, RMSNorm, SwiGLU) with embedding_multiplier
    12, attention_multiplier 0.0625 as the scores' scale (not 1/sqrt(8)),
    residual_multiplier 0.22 on each branch, the logits divided by
    logits_scaling 8; positions from the length."""

    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(GraniteBlock(2, 0.0625, 0.22) for _ in range(L))
        self.norm = RmsNorm(D, 1e-6)
        self.lm_head = nn.Linear(D, VOCAB, bias=False)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        cos, sin = rope(s, DH)
        mask = causal_padding(attention_mask, s)
        x = self.embed_tokens(input_ids) * 12.0
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.norm(x)) / 8.0


# ------------------------------------------------------------- Persimmon ----

class PersimmonBlock(nn.Module):
    """Hugging Face's PersimmonDecoderLayer: one query_key_value Linear
    viewed [B, S, H, 3, d], a LayerNorm over each head of q and of k,
    rotary on the first half of each head (rotate-half), float32 softmax,
    squared ReLU MLP, pre-LN."""

    def __init__(self):
        super().__init__()
        self.input_layernorm, self.post_attention_layernorm = nn.LayerNorm(D), nn.LayerNorm(D)
        self.query_key_value, self.dense = nn.Linear(D, 3 * D), nn.Linear(D, D)
        self.q_layernorm, self.k_layernorm = nn.LayerNorm(DH), nn.LayerNorm(DH)
        self.dense_h_to_4h, self.dense_4h_to_h = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, cos, sin, mask):
        b, s, _ = x.shape
        h = self.input_layernorm(x)
        fused = self.query_key_value(h).view(b, s, H, 3, DH)
        q, k, v = fused[..., 0, :], fused[..., 1, :], fused[..., 2, :]
        q, k = self.q_layernorm(q).transpose(1, 2), self.k_layernorm(k).transpose(1, 2)
        v = v.transpose(1, 2)
        rot = cos.shape[-1]
        qr, qp, kr, kp = q[..., :rot], q[..., rot:], k[..., :rot], k[..., rot:]
        qr, kr = qr * cos + rotate_half(qr) * sin, kr * cos + rotate_half(kr) * sin
        q, k = torch.cat((qr, qp), dim=-1), torch.cat((kr, kp), dim=-1)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(DH) + mask
        att = F.softmax(w, dtype=torch.float32, dim=-1).to(q.dtype)
        x = x + self.dense(merged(torch.matmul(att, v)))
        return x + self.dense_4h_to_h(torch.square(F.relu(self.dense_h_to_4h(self.post_attention_layernorm(x)))))


class Persimmon(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(PersimmonBlock() for _ in range(L))
        self.final_layernorm = nn.LayerNorm(D)
        self.lm_head = nn.Linear(D, VOCAB, bias=False)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        cos, sin = rope(s, DH // 2, base=25000.0)
        mask = causal_padding(attention_mask, s)
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.final_layernorm(x))


# ------------------------------------------------------------ StarCoder2 ----

def window_padding(attention_mask, s, window):
    # causal, a sliding window of `window` keys and the padding merged into
    # [B, 1, S, S] of finfo.min (Hugging Face's sliding-window causal mask)
    i = torch.arange(s)
    hide = (i[None, :] > i[:, None]) | (i[:, None] - i[None, :] >= window)
    hide = hide[None, None] | (attention_mask[:, None, None, :] == 0)
    return torch.zeros(hide.shape).masked_fill(hide, FMIN)


class Starcoder2Block(nn.Module):
    def __init__(self, kv):
        super().__init__()
        self.kv = kv
        self.input_layernorm, self.post_attention_layernorm = nn.LayerNorm(D), nn.LayerNorm(D)
        self.q_proj, self.k_proj = nn.Linear(D, D), nn.Linear(D, kv * DH)
        self.v_proj, self.o_proj = nn.Linear(D, kv * DH), nn.Linear(D, D)
        self.c_fc, self.c_proj = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, cos, sin, mask):
        h = self.input_layernorm(x)
        q, k, v = heads(self.q_proj(h), H, DH), heads(self.k_proj(h), self.kv, DH), heads(self.v_proj(h), self.kv, DH)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        k, v = repeat_kv(k, H // self.kv), repeat_kv(v, H // self.kv)
        w = torch.matmul(q, k.transpose(2, 3)) * DH ** -0.5 + mask
        att = F.softmax(w, dim=-1, dtype=torch.float32)
        x = x + self.o_proj(merged(torch.matmul(att, v)))
        return x + self.c_proj(F.gelu(self.c_fc(self.post_attention_layernorm(x)), approximate="tanh"))


class Starcoder2(nn.Module):
    """StarCoder2: GQA 4 / 2 with biases on every projection, rotary,
    LayerNorm, a sliding window (4 keys here), tanh-GELU MLP with biases."""

    def __init__(self, window=4):
        super().__init__()
        self.window = window
        self.embed_tokens = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(Starcoder2Block(2) for _ in range(L))
        self.norm = nn.LayerNorm(D)
        self.lm_head = nn.Linear(D, VOCAB, bias=False)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        cos, sin = rope(s, DH, base=100000.0)
        mask = window_padding(attention_mask, s, self.window)
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.lm_head(self.norm(x))


# ------------------------------------------------------------------ XGLM ----

def fairseq_sinusoids(n, d, padding_idx=1):
    # fairseq / XGLM's table: sin of the first half, cos of the second, the
    # padding row zero
    half = d // 2
    f = math.log(10000) / (half - 1)
    f = torch.exp(torch.arange(half, dtype=torch.float) * -f)
    e = torch.arange(n, dtype=torch.float).unsqueeze(1) * f.unsqueeze(0)
    e = torch.cat([torch.sin(e), torch.cos(e)], dim=1)
    e[padding_idx, :] = 0
    return e


class Xglm(nn.Module):
    """XGLM: token embeddings scaled by sqrt(d), fairseq sinusoidal
    positions (a buffer) gathered at arange + offset 2, OPT's fairseq
    block (pre-LN, q scaled after its projection, bmm attention with the
    scores clamped at finfo.min) with GELU, a final LayerNorm, the tied
    head."""

    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, D)
        self.register_buffer("weights", fairseq_sinusoids(MAXPOS + 2, D), persistent=False)
        self.layers = nn.ModuleList(make_zoo.OptBlock(F.gelu) for _ in range(L))
        self.layer_norm = nn.LayerNorm(D)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        pos = torch.arange(0, s, dtype=torch.long)
        x = self.embed_tokens(input_ids) * math.sqrt(D)
        x = x + self.weights.index_select(0, pos + 2)[None]
        mask = causal_padding(attention_mask, s)
        for layer in self.layers:
            x = layer(x, mask)
        return F.linear(self.layer_norm(x), self.embed_tokens.weight)


# ----------------------------------------------------------- SqueezeBERT ----

class ChannelNorm(nn.Module):
    # SqueezeBERT's LayerNorm over the channels of [B, C, S]
    def __init__(self, c):
        super().__init__()
        self.ln = nn.LayerNorm(c, eps=1e-12)

    def forward(self, x):
        return self.ln(x.permute(0, 2, 1)).permute(0, 2, 1)


class SqueezeBertLayer(nn.Module):
    """Hugging Face's SqueezeBertModule: q, k, v by Conv1d of kernel 1 in 4
    groups over [B, C, S]; q as [B, H, S, d], k as [B, H, d, S], scores /
    sqrt(d) + mask; the context back to [B, C, S]; the post-attention
    Conv1d (1 group), the intermediate and output Conv1d in 4 groups, each
    with its residual and a LayerNorm over the channels."""

    def __init__(self, groups=4):
        super().__init__()
        self.query = nn.Conv1d(D, D, 1, groups=groups)
        self.key = nn.Conv1d(D, D, 1, groups=groups)
        self.value = nn.Conv1d(D, D, 1, groups=groups)
        self.post_attention, self.post_norm = nn.Conv1d(D, D, 1), ChannelNorm(D)
        self.intermediate = nn.Conv1d(D, FF, 1, groups=groups)
        self.output, self.output_norm = nn.Conv1d(FF, D, 1, groups=groups), ChannelNorm(D)

    def forward(self, x, ext):
        b, c, s = x.shape
        q = self.query(x).view(b, H, DH, s).permute(0, 1, 3, 2)
        k = self.key(x).view(b, H, DH, s)
        v = self.value(x).view(b, H, DH, s).permute(0, 1, 3, 2)
        att = F.softmax(torch.matmul(q, k) / math.sqrt(DH) + ext, dim=-1)
        ctx = torch.matmul(att, v).permute(0, 1, 3, 2).contiguous().view(b, c, s)
        x = self.post_norm(self.post_attention(ctx) + x)
        return self.output_norm(self.output(F.gelu(self.intermediate(x))) + x)


class SqueezeBert(nn.Module):
    def __init__(self):
        super().__init__()
        self.word, self.position, self.token_type = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D), nn.Embedding(2, D)
        self.ln = nn.LayerNorm(D, eps=1e-12)
        self.layers = nn.ModuleList(SqueezeBertLayer() for _ in range(L))
        self.pooler = nn.Linear(D, D)

    def forward(self, input_ids, attention_mask, token_type_ids):
        s = input_ids.shape[1]
        x = self.word(input_ids) + self.position(torch.arange(s)[None]) + self.token_type(token_type_ids)
        x = self.ln(x).permute(0, 2, 1)
        ext = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
        for layer in self.layers:
            x = layer(x, ext)
        x = x.permute(0, 2, 1)
        return x, torch.tanh(self.pooler(x[:, 0]))


# ---------------------------------------------------------------- export ----

LM = ["input_ids", "attention_mask"]
TYPES = ["input_ids", "attention_mask", "token_type_ids"]
DETR_AXES = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}, "pred_boxes": {0: "batch"}}


def cases():
    """(name, model, seed, inputs, input names, output names, opset, export
    keywords) of each case, the models built in this order from seed 0."""
    hf_detr_axes = dict(DETR_AXES, pixel_mask={0: "batch"})
    return [
        ("z4_gptneo_local_upcast_op14", GptNeo(4), 601, ids_mask(81), LM, ["logits"], 14, {}),
        ("z4_gptneo_window256_op17", GptNeo(256), 602, make_zoo.ids_mask_left(82), LM, ["logits"], 17, {}),
        ("z4_detr_torchmha_seqfirst_op14", Detr(), 603, images(83), ["pixel_values"],
         ["logits", "pred_boxes"], 14, {"dynamic": DETR_AXES}),
        ("z4_detr_hf_pixelmask_op17", HfDetr(), 604, images_mask(84), ["pixel_values", "pixel_mask"],
         ["logits", "pred_boxes"], 17, {"dynamic": hf_detr_axes}),
        ("z4_mobilebert_nonorm_op14", MobileBert(), 605, ids_mask_types(85), TYPES, ["last_hidden_state"], 14, {}),
        ("z4_bert_relkeyquery_op14", RelBert("relative_key_query"), 606, ids_mask_types(86), TYPES,
         ["last_hidden_state"], 14, {}),
        ("z4_bert_relkey_op17", RelBert("relative_key"), 607, ids_mask_types(87), TYPES,
         ["last_hidden_state"], 17, {}),
        ("z4_granite_multipliers_op14", Granite(), 608, ids_mask(88), LM, ["logits"], 14, {}),
        ("z4_persimmon_qkln_halfrot_op17", Persimmon(), 609, ids_mask(89), LM, ["logits"], 17, {}),
        ("z4_starcoder2_window_bias_op16", Starcoder2(), 610, ids_mask(90), LM, ["logits"], 16, {}),
        ("z4_xglm_sinus_offset_op14", Xglm(), 611, ids_mask(91), LM, ["logits"], 14, {}),
        ("z4_squeezebert_groupconv_op14", SqueezeBert(), 612, ids_mask_types(92), TYPES,
         ["last_hidden_state", "pooler_output"], 14, {}),
    ]


if __name__ == "__main__":
    make_zoo.PREFIXES.extend(sys.argv[2:])
    torch.manual_seed(0)
    for name, model, seed, make_inputs, ins, outs, opset, kw in cases():
        export(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)),
               name, model, seed, make_inputs, ins, outs, opset, **kw)
