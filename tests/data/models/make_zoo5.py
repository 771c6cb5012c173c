#!/usr/bin/env python3
"""make_zoo5.py -- a fifth round of the model zoo as whole models (z5_* cases
of tests/data/models): families the earlier rounds do not write, each from
its published architecture in its authors' idioms:
BART as one encoder-decoder graph (learned positions offset by 2, post-LN,
q scaled after its projection, the decoder's causal self-attention and its
cross-attention over the encoder's output under the encoder's padding),
RoFormer (a BERT encoder whose q and k turn by sinusoidal rotary
embeddings, interleaved pairs, from a fixed table), LayoutLM (BERT with
2-D position embeddings: x, y, height and width of each token's box added to
the token's), and CTRL (token embeddings scaled by sqrt(d), sinusoidal
positions as [sin | cos] halves, pre-LN, the causal mask a triu of 1 times
-1e4 added to the scaled scores beside the padding's finfo.min, ReLU, an
untied head with a bias), Mllama's text cross-attention (q from the text,
k and v from float image states, an RMSNorm of each head of q and of k,
tanh-gated residuals); and two mixed-precision exports: a MiniLM sentence
encoder and a ViT whose Linear (and patch Conv) weights are float16
initializers read through a Cast to float32 (exported without constant
folding, which would fold the Casts away).

Each is small (d 32, 4 heads, FFN 64, 2 layers, vocabulary 64), seeded,
with PyTorch's outputs for two data sets (make_zoo.export: batch 2 of 7, the
second row padded; batch 3 of 5).

    /usr/bin/python3 make_zoo5.py [OUTDIR [PREFIX...]]

Needs torch (1.13) and onnx (1.12); the same bytes for the same versions.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

import make_zoo
from make_zoo import data, export, ids_mask, ids_mask_types
from make_models import RmsNorm
from make_zoo2 import SwiGlu, images
from make_zoo3 import heads, merged

D, H, FF, L, VOCAB, MAXPOS = 32, 4, 64, 2, 64, 16
DH = D // H
FMIN = torch.finfo(torch.float32).min


def padding_ext(attention_mask):
    # [B, S] of 1 / 0 -> [B, 1, 1, S] of 0 / finfo.min
    return (1.0 - attention_mask[:, None, None, :].float()) * FMIN


# ------------------------------------------------------------------ BART ----

class BartAttn(nn.Module):
    """Hugging Face's BartAttention (eager): q scaled after its projection,
    heads as [B * H, S, d] for bmm, the mask [B, 1, Sq, Skv] added to the
    scores viewed [B, H, Sq, Skv]; cross-attention takes k and v from the
    encoder's output."""

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


class BartEncLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn, self.ln1 = BartAttn(), nn.LayerNorm(D)
        self.fc1, self.fc2, self.ln2 = nn.Linear(D, FF), nn.Linear(FF, D), nn.LayerNorm(D)

    def forward(self, x, mask):
        x = self.ln1(x + self.self_attn(x, x, mask))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class BartDecLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.self_attn, self.ln1 = BartAttn(), nn.LayerNorm(D)
        self.encoder_attn, self.ln2 = BartAttn(), nn.LayerNorm(D)
        self.fc1, self.fc2, self.ln3 = nn.Linear(D, FF), nn.Linear(FF, D), nn.LayerNorm(D)

    def forward(self, x, causal, memory, cross_mask):
        x = self.ln1(x + self.self_attn(x, x, causal))
        x = self.ln2(x + self.encoder_attn(x, memory, cross_mask))
        return self.ln3(x + self.fc2(F.gelu(self.fc1(x))))


class Bart(nn.Module):
    """BART (BartForConditionalGeneration) in one graph: shared token table,
    learned positions at arange + 2 in encoder and decoder, layernorm_embedding
    on both sides, post-LN layers, the decoder's causal mask of finfo.min
    (triu), the cross-attention's mask the encoder's padding expanded to
    [B, 1, Sdec, Senc]; logits by the tied table plus final_logits_bias."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Embedding(VOCAB, D)
        self.enc_pos, self.dec_pos = nn.Embedding(MAXPOS + 2, D), nn.Embedding(MAXPOS + 2, D)
        self.enc_ln, self.dec_ln = nn.LayerNorm(D), nn.LayerNorm(D)
        self.encoder = nn.ModuleList(BartEncLayer() for _ in range(L))
        self.decoder = nn.ModuleList(BartDecLayer() for _ in range(L))
        self.register_buffer("final_logits_bias", torch.randn(1, VOCAB) * 0.1)

    def forward(self, input_ids, attention_mask, decoder_input_ids):
        s, t = input_ids.shape[1], decoder_input_ids.shape[1]
        x = self.enc_ln(self.shared(input_ids) + self.enc_pos(torch.arange(s) + 2))
        m = attention_mask[:, None, None, :].float()
        enc_mask = ((1.0 - m) * FMIN).expand(-1, 1, s, s)
        for layer in self.encoder:
            x = layer(x, enc_mask)
        y = self.dec_ln(self.shared(decoder_input_ids) + self.dec_pos(torch.arange(t) + 2))
        causal = torch.full((t, t), FMIN).triu(1)[None, None].expand(input_ids.shape[0], 1, t, t)
        cross = ((1.0 - m) * FMIN).expand(-1, 1, t, s)
        for layer in self.decoder:
            y = layer(y, causal, x, cross)
        return F.linear(y, self.shared.weight) + self.final_logits_bias


def ids_mask_dec(seed):
    # the encoder's ids and mask, and decoder ids two shorter
    def make(b, s):
        ids, mask = data(seed + s, b, s)
        dec, _ = data(seed + 100 + s, b, s - 2, pad_last=0)
        return [ids, mask, dec]
    return make


# ------------------------------------------------------------------ BERT ----

class BertLayer(nn.Module):
    # Hugging Face's BertLayer (eager): post-LN, erf GELU, scores / sqrt(d);
    # with `sinus` RoFormer's: q and k turned by it before their product
    def __init__(self):
        super().__init__()
        self.query, self.key, self.value = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.dense, self.ln1 = nn.Linear(D, D), nn.LayerNorm(D, eps=1e-12)
        self.inter, self.out, self.ln2 = nn.Linear(D, FF), nn.Linear(FF, D), nn.LayerNorm(D, eps=1e-12)

    def forward(self, x, ext, sinus=None):
        q, k, v = heads(self.query(x), H, DH), heads(self.key(x), H, DH), heads(self.value(x), H, DH)
        if sinus is not None:
            sin, cos = sinus.chunk(2, dim=-1)
            sin = torch.stack([sin, sin], dim=-1).reshape_as(sinus)
            cos = torch.stack([cos, cos], dim=-1).reshape_as(sinus)
            q, k = rotate_pairs(q, sin, cos), rotate_pairs(k, sin, cos)
        w = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(DH) + ext
        o = merged(torch.matmul(F.softmax(w, dim=-1), v))
        x = self.ln1(x + self.dense(o))
        return self.ln2(x + self.out(F.gelu(self.inter(x))))


# -------------------------------------------------------------- RoFormer ----

def roformer_sinusoids(n, d):
    # Hugging Face's RoFormerSinusoidalPositionalEmbedding: [n, d], the sin
    # of each frequency in the first half, the cos in the second
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    inv = 1.0 / (10000 ** (2 * torch.arange(d // 2, dtype=torch.float32) / d))
    f = pos * inv[None]
    return torch.cat([f.sin(), f.cos()], dim=-1)


def rotate_pairs(x, sin, cos):
    # RoFormer's apply_rotary_position_embeddings: pairs (2i, 2i+1) turn by
    # angle i, sin / cos each repeated to [.., d]
    x2 = torch.stack([-x[..., 1::2], x[..., ::2]], dim=-1).reshape_as(x)
    return x * cos + x2 * sin


class RoFormer(nn.Module):
    """RoFormer: word and token-type embeddings (no absolute positions),
    LayerNorm; each layer's q and k turned by the rotary table sliced to the
    length ([1, 1, S, d]), post-LN, erf GELU; the extended mask (1 - m) *
    finfo.min."""

    def __init__(self):
        super().__init__()
        self.word, self.token_type = nn.Embedding(VOCAB, D), nn.Embedding(2, D)
        self.ln = nn.LayerNorm(D, eps=1e-12)
        self.register_buffer("sinus", roformer_sinusoids(MAXPOS, DH), persistent=False)
        self.layers = nn.ModuleList(BertLayer() for _ in range(L))

    def forward(self, input_ids, attention_mask, token_type_ids):
        s = input_ids.shape[1]
        x = self.ln(self.word(input_ids) + self.token_type(token_type_ids))
        sinus = self.sinus[:s][None, None]
        ext = padding_ext(attention_mask)
        for layer in self.layers:
            x = layer(x, ext, sinus)
        return x


# ------------------------------------------------------------- LayoutLM ----

BOX = 32  # coordinates 0..BOX-1 (LayoutLM: 0..1000)


class LayoutLM(nn.Module):
    """LayoutLM: word + 1-D position + the box's x0, y0, x1, y1 (x and y
    tables shared by both corners) + height and width (y1 - y0, x1 - x0) +
    token type, LayerNorm; a BERT encoder with the extended mask (1 - m) *
    -10000; the pooler."""

    def __init__(self):
        super().__init__()
        self.word, self.pos = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D)
        self.x_pos, self.y_pos = nn.Embedding(BOX, D), nn.Embedding(BOX, D)
        self.h_pos, self.w_pos = nn.Embedding(BOX, D), nn.Embedding(BOX, D)
        self.token_type, self.ln = nn.Embedding(2, D), nn.LayerNorm(D, eps=1e-12)
        self.layers = nn.ModuleList(BertLayer() for _ in range(L))
        self.pooler = nn.Linear(D, D)

    def forward(self, input_ids, bbox, attention_mask, token_type_ids):
        s = input_ids.shape[1]
        x = (self.word(input_ids) + self.pos(torch.arange(s)[None]) + self.x_pos(bbox[:, :, 0]) +
             self.y_pos(bbox[:, :, 1]) + self.x_pos(bbox[:, :, 2]) + self.y_pos(bbox[:, :, 3]) +
             self.h_pos(bbox[:, :, 3] - bbox[:, :, 1]) + self.w_pos(bbox[:, :, 2] - bbox[:, :, 0]) +
             self.token_type(token_type_ids))
        x = self.ln(x)
        ext = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
        for layer in self.layers:
            x = layer(x, ext)
        return x, torch.tanh(self.pooler(x[:, 0]))


def ids_box_mask_types(seed):
    def make(b, s):
        ids, mask = data(seed + s, b, s)
        g = torch.Generator().manual_seed(seed + 50 + s)
        x0 = torch.randint(0, BOX // 2, (b, s), generator=g)
        y0 = torch.randint(0, BOX // 2, (b, s), generator=g)
        x1 = x0 + torch.randint(0, BOX // 2, (b, s), generator=g)
        y1 = y0 + torch.randint(0, BOX // 2, (b, s), generator=g)
        types = (torch.arange(s)[None] >= s // 2).long().expand(b, s).contiguous()
        return [ids, torch.stack([x0, y0, x1, y1], dim=-1), mask, types]
    return make


# ------------------------------------------------------------------ CTRL ----

def ctrl_positions(n, d):
    # CTRL's positional_encoding: angle pos / 10000^(2 (i // 2) / d), the
    # sines of every angle then the cosines: [n, d]
    pos = torch.arange(n, dtype=torch.float32)[:, None]
    i = torch.arange(d, dtype=torch.float32)[None]
    angle = pos / torch.pow(10000, (2 * (i // 2)) / d)
    return torch.cat([torch.sin(angle[:, 0::2]), torch.cos(angle[:, 1::2])], dim=-1)


class CtrlBlock(nn.Module):
    """CTRL's EncoderLayer: pre-LN (eps 1e-6), Wq / Wk / Wv, the scores
    q.k^T / sqrt(d) plus mask * -1e4 (the causal triu) plus the padding's
    (1 - m) * finfo.min, ReLU FFN."""

    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D, eps=1e-6), nn.LayerNorm(D, eps=1e-6)
        self.Wq, self.Wk, self.Wv, self.dense = (nn.Linear(D, D) for _ in range(4))
        self.ff1, self.ff2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, causal, ext):
        h = self.ln1(x)
        q, k, v = heads(self.Wq(h), H, DH), heads(self.Wk(h), H, DH), heads(self.Wv(h), H, DH)
        w = torch.matmul(q, k.permute(0, 1, 3, 2)) / math.sqrt(DH)
        w = w + causal * -1e4 + ext
        x = x + self.dense(merged(torch.matmul(torch.softmax(w, dim=-1), v)))
        return x + self.ff2(F.relu(self.ff1(self.ln2(x))))


class Ctrl(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Embedding(VOCAB, D)
        self.register_buffer("pos_encoding", ctrl_positions(MAXPOS, D), persistent=False)
        self.h = nn.ModuleList(CtrlBlock() for _ in range(L))
        self.layernorm = nn.LayerNorm(D, eps=1e-6)
        self.lm_head = nn.Linear(D, VOCAB)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        x = self.w(input_ids) * math.sqrt(D) + self.pos_encoding[torch.arange(s)][None]
        causal = torch.triu(torch.ones(s, s), 1)
        ext = padding_ext(attention_mask)
        for block in self.h:
            x = block(x, causal, ext)
        return self.lm_head(self.layernorm(x))


# ------------------------------------------- cross-attention with q / k norm ----

class CrossQkNormAttn(nn.Module):
    """Mllama's text cross-attention (eager): q from the text, k and v from
    the vision states, no biases; an RMSNorm of each head of q and of k
    (q_norm, k_norm over d), no rotary; the scores scaled by 1/sqrt(d)."""

    def __init__(self):
        super().__init__()
        self.q_proj, self.k_proj = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.v_proj, self.o_proj = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.q_norm, self.k_norm = RmsNorm(DH, 1e-5), RmsNorm(DH, 1e-5)

    def forward(self, x, states):
        q = self.q_norm(heads(self.q_proj(x), H, DH))
        k = self.k_norm(heads(self.k_proj(states), H, DH))
        v = heads(self.v_proj(states), H, DH)
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(DH)
        return self.o_proj(merged(torch.matmul(F.softmax(w, dim=-1, dtype=torch.float32), v)))


class CrossQkNormBlock(nn.Module):
    # Mllama's cross-attention decoder layer: gated by tanh of a scalar
    def __init__(self):
        super().__init__()
        self.input_layernorm, self.post_attention_layernorm = RmsNorm(D, 1e-5), RmsNorm(D, 1e-5)
        self.cross_attn = CrossQkNormAttn()
        self.cross_attn_attn_gate, self.cross_attn_mlp_gate = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
        self.mlp = SwiGlu()

    def forward(self, x, states):
        x = x + self.cross_attn_attn_gate.tanh() * self.cross_attn(self.input_layernorm(x), states)
        return x + self.cross_attn_mlp_gate.tanh() * self.mlp(self.post_attention_layernorm(x))


class CrossQkNorm(nn.Module):
    """Token embeddings, two Mllama cross-attention layers over float
    `cross_attention_states` [B, T, D] (the projected image features), a
    final RMSNorm, an untied head."""

    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(CrossQkNormBlock() for _ in range(L))
        self.norm, self.lm_head = RmsNorm(D, 1e-5), nn.Linear(D, VOCAB, bias=False)

    def forward(self, input_ids, cross_attention_states):
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(x, cross_attention_states)
        return self.lm_head(self.norm(x))


def ids_states(seed):
    # the text's ids and 6 + s // 2 rows of image features
    def make(b, s):
        ids, _ = data(seed + s, b, s, pad_last=0)
        g = torch.Generator().manual_seed(seed + 50 + s)
        return [ids, torch.randn(b, 6 + s // 2, D, generator=g)]
    return make


# ------------------------------------------------ float16 weights + Cast ----

class HalfLinear(nn.Module):
    """A Linear whose weight and bias are stored as float16 and cast to
    float32 where they are used (a mixed-precision export: the file holds
    float16 initializers, each read through a Cast)."""

    def __init__(self, din, dout):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(dout, din, dtype=torch.float16))
        self.bias = nn.Parameter(torch.zeros(dout, dtype=torch.float16))

    def forward(self, x):
        return F.linear(x, self.weight.float(), self.bias.float())


class HalfBertLayer(BertLayer):
    def __init__(self):
        super().__init__()
        self.query, self.key, self.value = HalfLinear(D, D), HalfLinear(D, D), HalfLinear(D, D)
        self.dense, self.inter, self.out = HalfLinear(D, D), HalfLinear(D, FF), HalfLinear(FF, D)


class HalfMiniLM(nn.Module):
    """A MiniLM sentence encoder saved with float16 weights: every Linear's
    weight and bias float16 through a Cast, the embeddings and LayerNorms
    float32; mean pooling over the mask."""

    def __init__(self):
        super().__init__()
        self.word, self.pos = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D)
        self.ln = nn.LayerNorm(D, eps=1e-12)
        self.layers = nn.ModuleList(HalfBertLayer() for _ in range(L))

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        x = self.ln(self.word(input_ids) + self.pos(torch.arange(s)[None]))
        ext = (1.0 - attention_mask[:, None, None, :].float()) * FMIN
        for layer in self.layers:
            x = layer(x, ext)
        m = attention_mask[:, :, None].float()
        return (x * m).sum(1) / m.sum(1).clamp(min=1e-9)


class HalfVit(nn.Module):
    """A ViT (4 x 4 patches of 16 x 16 images, CLS token, pre-LN) whose
    patch Conv weight and bias and every Linear are float16 through a Cast."""

    def __init__(self):
        super().__init__()
        self.patch_w = nn.Parameter(torch.zeros(D, 3, 4, 4, dtype=torch.float16))
        self.patch_b = nn.Parameter(torch.zeros(D, dtype=torch.float16))
        self.cls, self.pos = nn.Parameter(torch.zeros(1, 1, D)), nn.Parameter(torch.zeros(1, 17, D))
        self.ln1 = nn.ModuleList(nn.LayerNorm(D) for _ in range(L))
        self.ln2 = nn.ModuleList(nn.LayerNorm(D) for _ in range(L))
        self.qkv = nn.ModuleList(HalfLinear(D, 3 * D) for _ in range(L))
        self.proj = nn.ModuleList(HalfLinear(D, D) for _ in range(L))
        self.fc1 = nn.ModuleList(HalfLinear(D, FF) for _ in range(L))
        self.fc2 = nn.ModuleList(HalfLinear(FF, D) for _ in range(L))
        self.norm, self.head = nn.LayerNorm(D), HalfLinear(D, 10)

    def forward(self, pixel_values):
        x = F.conv2d(pixel_values, self.patch_w.float(), self.patch_b.float(), stride=4)
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        for i in range(L):
            b, n, _ = x.shape
            qkv = self.qkv[i](self.ln1[i](x)).reshape(b, n, 3, H, DH).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
            a = F.softmax((q * DH ** -0.5) @ k.transpose(-2, -1), dim=-1)
            x = x + self.proj[i]((a @ v).transpose(1, 2).reshape(b, n, D))
            x = x + self.fc2[i](F.gelu(self.fc1[i](self.ln2[i](x))))
        return self.head(self.norm(x)[:, 0])


# ---------------------------------------------------------------- export ----

LM = ["input_ids", "attention_mask"]
TYPES = ["input_ids", "attention_mask", "token_type_ids"]


def cases():
    """(name, model, seed, inputs, input names, output names, opset, export
    keywords) of each case, the models built in this order from seed 0."""
    return [
        ("z5_bart_encdec_onegraph_op14", Bart(), 701, ids_mask_dec(101),
         ["input_ids", "attention_mask", "decoder_input_ids"], ["logits"], 14, {}),
        ("z5_roformer_rotary_enc_op14", RoFormer(), 702, ids_mask_types(102), TYPES,
         ["last_hidden_state"], 14, {}),
        ("z5_layoutlm_2dpos_op14", LayoutLM(), 703, ids_box_mask_types(103),
         ["input_ids", "bbox", "attention_mask", "token_type_ids"],
         ["last_hidden_state", "pooler_output"], 14, {}),
        ("z5_ctrl_sinus_triu1e4_op14", Ctrl(), 704, ids_mask(104), LM, ["logits"], 14, {}),
        ("z5_mllama_cross_qknorm_op14", CrossQkNorm(), 707, ids_states(107),
         ["input_ids", "cross_attention_states"], ["logits"], 14,
         {"dynamic": {"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"},
                      "cross_attention_states": {0: "batch", 1: "image_rows"}}}),
        ("z5_minilm_f16weights_cast_op14", HalfMiniLM(), 705, ids_mask(105), LM, ["sentence_embedding"],
         14, {"fold": False}),
        ("z5_vit_f16weights_cast_op14", HalfVit(), 706, images(106), ["pixel_values"], ["logits"], 14,
         {"dynamic": {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}, "fold": False}),
    ]


if __name__ == "__main__":
    make_zoo.PREFIXES.extend(sys.argv[2:])
    torch.manual_seed(0)
    for name, model, seed, make_inputs, ins, outs, opset, kw in cases():
        export(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)),
               name, model, seed, make_inputs, ins, outs, opset, **kw)
