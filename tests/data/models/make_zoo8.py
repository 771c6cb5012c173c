#!/usr/bin/env python3
"""make_zoo8.py -- whole models of an eighth round (z8_* cases of
tests/data/models): families the earlier rounds do not write, each from its
published architecture, in its authors' idioms:
CvT (Q / K / V from depthwise Convs + BatchNorm over the token grid, K / V
strided, the CLS row kept apart from the Convs and concatenated before the
Linears); LeViT (Linear + BatchNorm
projections, hard swish, an attention bias table gathered at the
offsets between the grid's positions); FNet (Fourier mixing, no attention:
the real part of the 2-D DFT written as products with cos / sin matrices,
as the paper's TPU path does, the sequence's matrices made in the graph;
and Hugging Face's `torch.fft.fftn(x, dim=(1, 2)).real`, exported as DFT
ops through a symbolic registered for it);
wav2vec2-conformer (half-step FFNs, the convolution module with GLU, a
depthwise Conv, BatchNorm and SiLU; the relative-position attention of
Transformer-XL with its rel_shift, and the rotary form); Nystromformer
(landmark attention: segment means, three softmaxes, an iterative
pseudo-inverse, a depthwise Conv on V); MobileViT (inverted residual Convs,
the feature map unfolded into 2 x 2 patches, attention across the patches
of each pixel position, folded back); PoolFormer (pooling as the token
mixer, GroupNorm, no attention); ViTMAE (the random masking from a noise
input: argsort, the kept patches gathered, the decoder unshuffling with mask
tokens); BLIP's text encoder (BERT layers with cross-attention to image
tokens of another width) and its causal text decoder; LongT5's local
attention (blocks of 4 queries on their own and the two neighbouring
blocks' keys, a 3-block relative bias); CANINE (hashed code-point
embeddings, characters downsampled to molecules by a strided Conv and
upsampled back).

Each is small (d 32, 4 heads, FFN 64, 2 layers), seeded, with PyTorch's
outputs for two data sets (make_zoo.export: batch 2, batch 3).

    /usr/bin/python3 make_zoo8.py [OUTDIR [PREFIX...]]

Needs torch (1.13) and onnx (1.12); the same bytes for the same versions.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F
from torch import nn

import make_zoo
from make_zoo import data, export, ids_mask, rel_bucket, rotate_half
from make_models import RmsNorm

D, H, FF, L, VOCAB = 32, 4, 64, 2, 64
DH = D // H
FMIN = torch.finfo(torch.float32).min


def bn_stats(bn, seed):
    """Running statistics that are not the identity (randomize() sets only
    the parameters)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g) * 0.3)
        bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) + 0.5)
    return bn


def images(seed, c=3, hw=16):
    return lambda b, s: [torch.randn(b, c, hw, hw, generator=torch.Generator().manual_seed(seed + b))]


# ------------------------------------------------------------------ CvT ----

class CvtProjection(nn.Module):
    """CvtSelfAttentionProjection: a depthwise Conv (no bias) + BatchNorm on
    the [B, D, h, w] grid, flattened back to rows."""

    def __init__(self, stride, seed):
        super().__init__()
        self.conv = nn.Conv2d(D, D, 3, stride, 1, groups=D, bias=False)
        self.bn = bn_stats(nn.BatchNorm2d(D), seed)

    def forward(self, x, h, w):
        b = x.shape[0]
        g = x.transpose(1, 2).reshape(b, D, h, w)
        return self.bn(self.conv(g)).flatten(2).transpose(1, 2)


class CvtLayer(nn.Module):
    """CvtLayer: the Conv projections of the grid rows, the CLS row (if any)
    concatenated in front of each, then the q / k / v Linears (Hugging
    Face's projection_query / _key / _value), einsum attention."""

    def __init__(self, cls, seed):
        super().__init__()
        self.cls = cls
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.q = CvtProjection(1, seed)
        self.k = CvtProjection(2, seed + 1)
        self.v = CvtProjection(2, seed + 2)
        self.q_lin, self.k_lin, self.v_lin = nn.Linear(D, D), nn.Linear(D, D), nn.Linear(D, D)
        self.out = nn.Linear(D, D)
        self.fc1, self.fc2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, h, w):
        y = self.ln1(x)
        if self.cls:
            c, y = torch.split(y, [1, h * w], 1)
        q, k, v = self.q(y, h, w), self.k(y, h, w), self.v(y, h, w)
        if self.cls:
            q, k, v = torch.cat((c, q), 1), torch.cat((c, k), 1), torch.cat((c, v), 1)
        q, k, v = self.q_lin(q), self.k_lin(k), self.v_lin(v)
        b = x.shape[0]

        def hd(t):
            return t.view(b, t.shape[1], H, DH).permute(0, 2, 1, 3)

        s = torch.einsum("bhlk,bhtk->bhlt", hd(q), hd(k)) * DH ** -0.5
        o = torch.einsum("bhlt,bhtv->bhlv", F.softmax(s, dim=-1), hd(v))
        o = o.permute(0, 2, 1, 3).reshape(b, -1, D)
        x = x + self.out(o)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class Cvt(nn.Module):
    """One CvT stage: the Conv embedding (7 x 7, stride 4) and its LayerNorm,
    with CLS (stage 3: a CLS token concatenated, the classifier on it) or
    without (stages 1-2: the classifier on the mean of the rows)."""

    def __init__(self, cls):
        super().__init__()
        self.embed = nn.Conv2d(3, D, 7, 4, 2)
        self.embed_ln = nn.LayerNorm(D)
        self.cls = nn.Parameter(torch.zeros(1, 1, D)) if cls else None
        self.layers = nn.ModuleList(CvtLayer(cls, 700 + 10 * i) for i in range(L))
        self.ln, self.head = nn.LayerNorm(D), nn.Linear(D, 10)

    def forward(self, pixel_values):
        e = self.embed(pixel_values)
        b, _, h, w = e.shape
        x = self.embed_ln(e.flatten(2).transpose(1, 2))
        if self.cls is not None:
            x = torch.cat((self.cls.expand(b, -1, -1), x), 1)
        for layer in self.layers:
            x = layer(x, h, w)
        pooled = x[:, 0] if self.cls is not None else x.mean(1)
        return self.head(self.ln(pooled)), x


# ---------------------------------------------------------------- LeViT ----

class LinearBn(nn.Module):
    """LeViT's MLPLayerWithBN: a Linear without bias, a BatchNorm1d over the
    flattened rows."""

    def __init__(self, i, o, seed):
        super().__init__()
        self.linear = nn.Linear(i, o, bias=False)
        self.bn = bn_stats(nn.BatchNorm1d(o), seed)

    def forward(self, x):
        return self.bn(self.linear(x).flatten(0, 1)).reshape(x.shape[0], x.shape[1], -1)


class LevitAttention(nn.Module):
    def __init__(self, res, kd, dv, seed):
        super().__init__()
        self.kd, self.dv = kd, dv
        self.qkv = LinearBn(D, H * (2 * kd + dv), seed)
        self.proj = LinearBn(H * dv, D, seed + 1)
        points = [(i, j) for i in range(res) for j in range(res)]
        offsets, idxs = {}, []
        for p1 in points:
            for p2 in points:
                off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                offsets.setdefault(off, len(offsets))
                idxs.append(offsets[off])
        self.attention_biases = nn.Parameter(torch.zeros(H, len(offsets)))
        self.register_buffer("attention_bias_idxs", torch.LongTensor(idxs).view(len(points), len(points)),
                             persistent=False)

    def forward(self, x):
        b, n, _ = x.shape
        qkv = self.qkv(x).view(b, n, H, -1)
        q, k, v = qkv.split([self.kd, self.kd, self.dv], dim=3)
        q, k, v = q.permute(0, 2, 1, 3), k.permute(0, 2, 1, 3), v.permute(0, 2, 1, 3)
        a = q @ k.transpose(-2, -1) * self.kd ** -0.5 + self.attention_biases[:, self.attention_bias_idxs]
        o = (a.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, H * self.dv)
        return self.proj(F.hardswish(o))


class Levit(nn.Module):
    """LeViT: four 3 x 3 Convs (BatchNorm, hard swish between; strides 2, 2,
    1 and 1 here, for a 16 x 16 image) to a 4 x 4 grid of D, residual attention and MLP blocks of LinearBn, the mean
    of the rows, a BatchNorm + Linear head."""

    def __init__(self):
        super().__init__()
        ch = (3, 8, 8, 16, D)
        self.convs = nn.ModuleList(nn.Conv2d(ch[i], ch[i + 1], 3, 2 if i < 2 else 1, 1, bias=False)
                                   for i in range(4))
        self.bns = nn.ModuleList(bn_stats(nn.BatchNorm2d(ch[i + 1]), 800 + i) for i in range(4))
        self.attn = nn.ModuleList(LevitAttention(4, 8, 16, 810 + 10 * i) for i in range(L))
        self.mlp1 = nn.ModuleList(LinearBn(D, FF, 812 + 10 * i) for i in range(L))
        self.mlp2 = nn.ModuleList(LinearBn(FF, D, 813 + 10 * i) for i in range(L))
        self.head_bn = bn_stats(nn.BatchNorm1d(D), 850)
        self.head = nn.Linear(D, 10)

    def forward(self, pixel_values):
        x = pixel_values
        for i, (conv, bn) in enumerate(zip(self.convs, self.bns)):
            x = bn(conv(x))
            if i < 3:
                x = F.hardswish(x)
        x = x.flatten(2).transpose(1, 2)
        for attn, m1, m2 in zip(self.attn, self.mlp1, self.mlp2):
            x = x + attn(x)
            x = x + m2(F.hardswish(m1(x)))
        return self.head(self.head_bn(x.mean(1))), x


# ----------------------------------------------------------------- FNet ----

def dft_real_imag(n, dtype=torch.float32):
    """cos / -sin of 2 pi j k / n, [n, n], from arange(n) (the sequence's in
    the graph)."""
    k = torch.arange(n, dtype=dtype)
    ang = (2 * math.pi / n) * (k[:, None] * k[None, :])
    return torch.cos(ang), -torch.sin(ang)


def onnx_fftn(g, x, s, dim, norm):
    """aten::fft_fftn as ONNX DFT ops (torch 1.13's exporter has none): the
    real input given a trailing [re] axis, one DFT per transformed axis."""
    y = g.op("Unsqueeze", x, g.op("Constant", value_t=torch.tensor([-1])))
    for d in torch.onnx.symbolic_helper._parse_arg(dim, "is"):
        y = g.op("DFT", y, axis_i=d, inverse_i=0, onesided_i=0)
    return y


def onnx_real(g, x):
    """aten::real: the [re, im] axis's first element."""
    def c(v):
        return g.op("Constant", value_t=torch.tensor([v]))
    return g.op("Squeeze", g.op("Slice", x, c(0), c(1), c(-1)), c(-1))


torch.onnx.register_custom_op_symbolic("aten::fft_fftn", onnx_fftn, 17)
torch.onnx.register_custom_op_symbolic("aten::real", onnx_real, 17)


class FnetLayer(nn.Module):
    def __init__(self, fft=False):
        super().__init__()
        self.fft = fft
        self.mix_ln, self.out_ln = nn.LayerNorm(D), nn.LayerNorm(D)
        self.fc1, self.fc2 = nn.Linear(D, FF), nn.Linear(FF, D)
        cr, ci = dft_real_imag(D)
        self.register_buffer("hid_re", cr, persistent=False)
        self.register_buffer("hid_im", ci, persistent=False)

    def forward(self, x, sr, si):
        if self.fft:  # Hugging Face's FNetBasicFourierTransform
            f = torch.fft.fftn(x, dim=(1, 2)).real
        else:  # Re(F_s X F_d) = F_s.re X F_d.re - F_s.im X F_d.im (X real)
            f = torch.matmul(torch.matmul(sr, x), self.hid_re) - torch.matmul(torch.matmul(si, x), self.hid_im)
        x = self.mix_ln(x + f)
        return self.out_ln(x + self.fc2(F.gelu(self.fc1(x), approximate="tanh")))


class Fnet(nn.Module):
    """FNetModel: word, position and token-type embeddings, LayerNorm, the
    embedding projection; Fourier layers (post-LN, gelu_new); the pooler.
    fft: the mixing as `torch.fft.fftn(x, dim=(1, 2)).real`, exported as
    two DFT ops; else by the DFT matrices."""

    def __init__(self, fft=False):
        super().__init__()
        self.fft = fft
        self.word, self.pos, self.tok_type = nn.Embedding(VOCAB, D), nn.Embedding(16, D), nn.Embedding(2, D)
        self.ln, self.proj = nn.LayerNorm(D), nn.Linear(D, D)
        self.layers = nn.ModuleList(FnetLayer(fft) for _ in range(L))
        self.pool = nn.Linear(D, D)

    def forward(self, input_ids, token_type_ids):
        s = input_ids.shape[1]
        pos = torch.arange(s, device=input_ids.device)
        x = self.proj(self.ln(self.word(input_ids) + self.pos(pos)[None] + self.tok_type(token_type_ids)))
        sr, si = (None, None) if self.fft else dft_real_imag(s)
        for layer in self.layers:
            x = layer(x, sr, si)
        return x, torch.tanh(self.pool(x[:, 0]))


def ids_types(seed):
    def make(b, s):
        ids, _ = data(seed + s, b, s, 0)
        return [ids, (torch.arange(s) >= s // 2).long().expand(b, s).contiguous()]
    return make


# ---------------------------------------------------- wav2vec2-conformer ----

class ConformerConv(nn.Module):
    """Wav2Vec2ConformerConvolutionModule: LayerNorm, pointwise Conv to 2 D,
    GLU over the channels, a depthwise Conv (kernel 3, 'same'), BatchNorm,
    SiLU, a pointwise Conv."""

    def __init__(self, seed):
        super().__init__()
        self.ln = nn.LayerNorm(D)
        self.pw1 = nn.Conv1d(D, 2 * D, 1, bias=False)
        self.dw = nn.Conv1d(D, D, 3, padding=1, groups=D, bias=False)
        self.bn = bn_stats(nn.BatchNorm1d(D), seed)
        self.pw2 = nn.Conv1d(D, D, 1, bias=False)

    def forward(self, x):
        y = F.glu(self.pw1(self.ln(x).transpose(1, 2)), dim=1)
        return self.pw2(F.silu(self.bn(self.dw(y)))).transpose(1, 2)


def rel_sinusoids(t):
    """Wav2Vec2ConformerRelPositionalEmbedding for t frames: [1, 2t - 1, D],
    the positive distances t - 1 .. 0 then the negative -1 .. -(t - 1)."""
    pos = torch.arange(t - 1, -t, -1, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, D, 2, dtype=torch.float32) * -(math.log(10000.0) / D))
    pe = torch.stack((torch.sin(pos * div), torch.cos(pos * div)), -1).reshape(2 * t - 1, D)
    return pe[None]


class ConformerAttn(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        if kind == "relative":
            self.linear_pos = nn.Linear(D, D, bias=False)
            self.pos_bias_u = nn.Parameter(torch.zeros(H, DH))
            self.pos_bias_v = nn.Parameter(torch.zeros(H, DH))

    def forward(self, x, pe):
        b, t, _ = x.shape
        if self.kind == "rotary":
            # the rotary form turns the block's input, [T, B, H, d], before
            # the projections (as Hugging Face's module does)
            cos, sin = pe
            r = x.transpose(0, 1).view(t, b, H, DH)
            r = (r * cos + rotate_half(r) * sin).view(t, b, D).transpose(0, 1)
            q, k = self.q(r), self.k(r)
        else:
            q, k = self.q(x), self.k(x)
        q = q.view(b, t, H, DH)
        k = k.view(b, t, H, DH).transpose(1, 2)
        v = self.v(x).view(b, t, H, DH).transpose(1, 2)
        if self.kind == "relative":
            p = self.linear_pos(pe).view(1, -1, H, DH).transpose(1, 2)
            ac = torch.matmul((q + self.pos_bias_u).transpose(1, 2), k.transpose(-2, -1))
            bd = torch.matmul((q + self.pos_bias_v).transpose(1, 2), p.transpose(-2, -1))
            # rel_shift: pad a zero column, view, drop the first row
            zero = torch.zeros(b, H, t, 1, dtype=bd.dtype)
            bd = torch.cat([zero, bd], -1).view(b, H, 2 * t, t)[:, :, 1:].view(b, H, t, 2 * t - 1)
            s = (ac + bd[:, :, :, :t]) / math.sqrt(DH)
        else:
            s = torch.matmul(q.transpose(1, 2), k.transpose(-2, -1)) / math.sqrt(DH)
        o = torch.matmul(F.softmax(s, dim=-1), v).transpose(1, 2).reshape(b, t, D)
        return self.o(o)


class ConformerLayer(nn.Module):
    def __init__(self, kind, seed):
        super().__init__()
        self.ffn1_ln, self.ffn2_ln = nn.LayerNorm(D), nn.LayerNorm(D)
        self.ffn1 = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        self.ffn2 = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        self.attn_ln = nn.LayerNorm(D)
        self.attn = ConformerAttn(kind)
        self.conv = ConformerConv(seed)
        self.final_ln = nn.LayerNorm(D)

    def forward(self, x, pe):
        x = x + 0.5 * self.ffn1(self.ffn1_ln(x))
        x = x + self.attn(self.attn_ln(x), pe)
        x = x + self.conv(x)
        x = x + 0.5 * self.ffn2(self.ffn2_ln(x))
        return self.final_ln(x)


class Conformer(nn.Module):
    """Wav2Vec2ConformerEncoder over features already extracted (80-wide
    filterbank frames as the speech conformers take them, 16 here): the
    feature projection, the layers (their FFNs of width 32), a final
    LayerNorm."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.fp_ln, self.fp = nn.LayerNorm(16), nn.Linear(16, D)
        self.layers = nn.ModuleList(ConformerLayer(kind, 900 + i) for i in range(L))
        self.ln = nn.LayerNorm(D)

    def forward(self, input_features):
        x = self.fp(self.fp_ln(input_features))
        t = x.shape[1]
        if self.kind == "rotary":
            inv = 1.0 / (10000 ** (torch.arange(0, DH, 2, dtype=torch.float32) / DH))
            f = torch.einsum("i,j->ij", torch.arange(t, dtype=torch.float32), inv)
            e = torch.cat((f, f), -1)
            pe = (e.cos()[:, None, None], e.sin()[:, None, None])
        else:
            pe = rel_sinusoids(t)
        for layer in self.layers:
            x = layer(x, pe)
        return self.ln(x)


def features(seed):
    return lambda b, s: [torch.randn(b, s, 16, generator=torch.Generator().manual_seed(seed + s))]


# -------------------------------------------------------- Nystromformer ----

def iterative_inv(m, n_iter=6):
    """Nystromformer's pseudo-inverse (init 'original')."""
    i = torch.eye(m.size(-1), device=m.device)
    k = m
    v = 1 / torch.max(torch.sum(k, dim=-2)) * k.transpose(-1, -2)
    for _ in range(n_iter):
        kv = torch.matmul(k, v)
        v = torch.matmul(0.25 * v, 13 * i - torch.matmul(kv, 15 * i - torch.matmul(kv, 7 * i - kv)))
    return v


class NystromAttention(nn.Module):
    """As both published implementations write it: the segments' length a
    constant, the configuration's sequence length (max_seq_len /
    segment_means_seq_len) over the landmarks -- the inputs padded to it."""

    def __init__(self, landmarks, seq_len):
        super().__init__()
        self.m, self.seq_len = landmarks, seq_len
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        self.conv = nn.Conv2d(H, H, (3, 1), padding=(1, 0), groups=H, bias=False)

    def forward(self, x, mask):
        b, s, _ = x.shape

        def hd(t):
            return t.view(b, s, H, DH).permute(0, 2, 1, 3)

        q = hd(self.q(x)) / math.sqrt(math.sqrt(DH))
        k = hd(self.k(x)) / math.sqrt(math.sqrt(DH))
        v = hd(self.v(x))
        ql = q.reshape(-1, H, self.m, self.seq_len // self.m, DH).mean(dim=-2)
        kl = k.reshape(-1, H, self.m, self.seq_len // self.m, DH).mean(dim=-2)
        k1 = F.softmax(torch.matmul(q, kl.transpose(-1, -2)), dim=-1)
        k2 = F.softmax(torch.matmul(ql, kl.transpose(-1, -2)), dim=-1)
        k3 = F.softmax(torch.matmul(ql, k.transpose(-1, -2)) + mask, dim=-1)
        o = torch.matmul(torch.matmul(k1, iterative_inv(k2)), torch.matmul(k3, v))
        o = o + self.conv(v)
        return self.o(o.permute(0, 2, 1, 3).reshape(b, s, D))


class NystromLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = NystromAttention(4, NYSTROM_LEN)
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.fc1, self.fc2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x, mask):
        x = self.ln1(x + self.attn(x, mask))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class Nystromformer(nn.Module):
    """NystromformerModel: BERT's embeddings (positions offset by 2 as its
    position_ids buffer has them), post-LN layers of landmark attention (4
    landmarks over a sequence of 8: the batch the only symbolic axis), the
    padding `(1 - m) * -1e4` added to the third kernel's scores only."""

    def __init__(self):
        super().__init__()
        self.word, self.pos, self.tok_type = nn.Embedding(VOCAB, D), nn.Embedding(32, D), nn.Embedding(2, D)
        self.ln = nn.LayerNorm(D)
        self.layers = nn.ModuleList(NystromLayer() for _ in range(L))

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        pos = torch.arange(s, device=input_ids.device) + 2
        x = self.ln(self.word(input_ids) + self.pos(pos)[None] + self.tok_type(torch.zeros_like(input_ids)))
        mask = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
        for layer in self.layers:
            x = layer(x, mask)
        return x


NYSTROM_LEN = 8


def ids_mask_padded(seed):
    # padded to the model's sequence length, as its tokenizer pads
    return lambda b, s: list(data(seed + b, b, NYSTROM_LEN, 3 if b == 2 else 5))


# ------------------------------------------------------------ MobileViT ----

class ConvBn(nn.Module):
    def __init__(self, i, o, k, stride=1, groups=1, act=True, seed=0):
        super().__init__()
        self.conv = nn.Conv2d(i, o, k, stride, k // 2, groups=groups, bias=False)
        self.bn = bn_stats(nn.BatchNorm2d(o), seed)
        self.act = act

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.silu(x) if self.act else x


class MobileVitLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(D, FF), nn.Linear(FF, D)

    def forward(self, x):
        b, n, _ = x.shape
        y = self.ln1(x)

        def hd(t):
            return t.view(b, n, H, DH).permute(0, 2, 1, 3)

        s = torch.matmul(hd(self.q(y)), hd(self.k(y)).transpose(-1, -2)) / math.sqrt(DH)
        o = torch.matmul(F.softmax(s, dim=-1), hd(self.v(y))).permute(0, 2, 1, 3).reshape(b, n, D)
        x = x + self.o(o)
        return x + self.fc2(F.silu(self.fc1(self.ln2(x))))


class MobileVit(nn.Module):
    """MobileViT: a 3 x 3 stride-2 stem, an inverted residual (expand,
    depthwise stride 2, project), a MobileViT block (local 3 x 3 and 1 x 1
    Convs, the map unfolded into 2 x 2 patches -- [B * 4, patches, D] --
    the layers, a LayerNorm, folded back, a 1 x 1 Conv, concatenated with
    the block's input and fused by a 3 x 3 Conv), a 1 x 1 expansion, the
    spatial mean, a classifier."""

    def __init__(self):
        super().__init__()
        c = 16
        self.stem = ConvBn(3, c, 3, 2, seed=960)
        self.expand = ConvBn(c, 2 * c, 1, seed=961)
        self.dw = ConvBn(2 * c, 2 * c, 3, 2, groups=2 * c, seed=962)
        self.project = ConvBn(2 * c, c, 1, act=False, seed=963)
        self.local = ConvBn(c, c, 3, seed=964)
        self.to_d = nn.Conv2d(c, D, 1, bias=False)
        self.layers = nn.ModuleList(MobileVitLayer() for _ in range(L))
        self.ln = nn.LayerNorm(D)
        self.from_d = ConvBn(D, c, 1, seed=965)
        self.fuse = ConvBn(2 * c, c, 3, seed=966)
        self.last = ConvBn(c, 4 * c, 1, seed=967)
        self.head = nn.Linear(4 * c, 10)

    def forward(self, pixel_values):
        x = self.project(self.dw(self.expand(self.stem(pixel_values))))
        res = x
        f = self.to_d(self.local(x))
        b, c, h, w = f.shape
        nh, nw = h // 2, w // 2
        # unfolding (MobileViTLayer.unfolding): [B * 4, nh * nw, D]
        p = f.reshape(b * c * nh, 2, nw, 2).transpose(1, 2)
        p = p.reshape(b, c, nh * nw, 4).transpose(1, 3).reshape(b * 4, nh * nw, c)
        for layer in self.layers:
            p = layer(p)
        p = self.ln(p)
        # folding
        f = p.contiguous().view(b, 4, nh * nw, c).transpose(1, 3).reshape(b * c * nh, nw, 2, 2)
        f = f.transpose(1, 2).reshape(b, c, h, w)
        x = self.fuse(torch.cat((res, self.from_d(f)), 1))
        return self.head(self.last(x).mean(dim=[-2, -1]))


# ----------------------------------------------------------- PoolFormer ----

class PoolFormerBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.n1, self.n2 = nn.GroupNorm(1, c), nn.GroupNorm(1, c)
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.fc1, self.fc2 = nn.Conv2d(c, 2 * c, 1), nn.Conv2d(2 * c, c, 1)
        self.s1 = nn.Parameter(torch.ones(c))
        self.s2 = nn.Parameter(torch.ones(c))

    def forward(self, x):
        y = self.n1(x)
        x = x + self.s1[:, None, None] * (self.pool(y) - y)
        return x + self.s2[:, None, None] * self.fc2(F.gelu(self.fc1(self.n2(x))))


class PoolFormer(nn.Module):
    """PoolFormer (MetaFormer): a 7 x 7 stride-4 patch embedding, blocks
    whose token mixer is AvgPool(3, count_include_pad=False) minus its
    input, GroupNorm(1), layer scales, a 3 x 3 stride-2 downsampling between
    the two stages, the final GroupNorm, the mean, a classifier."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Conv2d(3, 16, 7, 4, 2)
        self.stage1 = nn.Sequential(PoolFormerBlock(16), PoolFormerBlock(16))
        self.down = nn.Conv2d(16, D, 3, 2, 1)
        self.stage2 = nn.Sequential(PoolFormerBlock(D), PoolFormerBlock(D))
        self.norm, self.head = nn.GroupNorm(1, D), nn.Linear(D, 10)

    def forward(self, pixel_values):
        x = self.stage2(self.down(self.stage1(self.embed(pixel_values))))
        return self.head(self.norm(x).mean([-2, -1]))


# --------------------------------------------------------------- ViTMAE ----

class VitLayer(nn.Module):
    """Hugging Face's ViTLayer (pre-LN, GELU), of width d."""

    def __init__(self, d=D):
        super().__init__()
        self.d = d
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x):
        b, n, d = x.shape
        dh = d // H
        y = self.ln1(x)

        def hd(t):
            return t.view(b, n, H, dh).permute(0, 2, 1, 3)

        s = torch.matmul(hd(self.q(y)), hd(self.k(y)).transpose(-1, -2)) / math.sqrt(dh)
        o = torch.matmul(F.softmax(s, dim=-1), hd(self.v(y))).permute(0, 2, 1, 3).reshape(b, n, d)
        x = x + self.o(o)
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


def sincos_2d(d, grid, cls=True):
    """ViTMAE's fixed 2-D sin-cos position table (a CLS row of zeros)."""
    g = torch.arange(grid, dtype=torch.float32)
    gy, gx = torch.meshgrid(g, g, indexing="ij")

    def one(pos, dd):
        om = 1.0 / 10000 ** (torch.arange(dd // 2, dtype=torch.float32) / (dd / 2.0))
        o = pos.reshape(-1)[:, None] * om[None]
        return torch.cat((torch.sin(o), torch.cos(o)), 1)

    e = torch.cat((one(gx, d // 2), one(gy, d // 2)), 1)
    return torch.cat((torch.zeros(1, d), e), 0)[None] if cls else e[None]


class VitMae(nn.Module):
    """ViTMAEForPreTraining: 4 x 4 patches of a 16 x 16 image (16 patches),
    the fixed sin-cos positions, the random masking from a `noise` input
    (argsort, the first 25 % kept, the rest masked: ids_restore), a CLS
    token, two encoder layers; the decoder (width 24) appends mask tokens,
    unshuffles by ids_restore, adds its positions, one layer, predicts each
    patch's pixels; the mask is the second output."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, D, 4, 4)
        self.cls = nn.Parameter(torch.zeros(1, 1, D))
        self.register_buffer("pos", sincos_2d(D, 4), persistent=False)
        self.layers = nn.ModuleList(VitLayer() for _ in range(L))
        self.ln = nn.LayerNorm(D)
        dd = 16
        self.dec_embed = nn.Linear(D, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.register_buffer("dec_pos", sincos_2d(dd, 4), persistent=False)
        self.dec_layers = nn.ModuleList([VitLayer(dd)])
        self.dec_ln, self.dec_pred = nn.LayerNorm(dd), nn.Linear(dd, 4 * 4 * 3)

    def forward(self, pixel_values, noise):
        x = self.patch(pixel_values).flatten(2).transpose(1, 2) + self.pos[:, 1:]
        b, n, d = x.shape
        keep = n // 4
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :keep]
        x = torch.gather(x, 1, ids_keep.unsqueeze(-1).repeat(1, 1, d))
        mask = torch.ones(b, n)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        x = torch.cat(((self.cls + self.pos[:, :1]).expand(b, -1, -1), x), 1)
        for layer in self.layers:
            x = layer(x)
        x = self.dec_embed(self.ln(x))
        m = self.mask_token.repeat(b, n + 1 - x.shape[1], 1)
        y = torch.cat((x[:, 1:], m), 1)
        y = torch.gather(y, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat((x[:, :1], y), 1) + self.dec_pos
        for layer in self.dec_layers:
            x = layer(x)
        return self.dec_pred(self.dec_ln(x))[:, 1:], mask


def image_noise(seed):
    def make(b, s):
        g = torch.Generator().manual_seed(seed + b)
        return [torch.randn(b, 3, 16, 16, generator=g), torch.rand(b, 16, generator=g)]
    return make


# ------------------------------------------------------------ BLIP text ----

class BlipAttn(nn.Module):
    """BlipTextSelfAttention: BERT's, key / value from the image width for
    the cross-attention."""

    def __init__(self, kv_width):
        super().__init__()
        self.q = nn.Linear(D, D)
        self.k, self.v = nn.Linear(kv_width, D), nn.Linear(kv_width, D)
        self.o, self.ln = nn.Linear(D, D), nn.LayerNorm(D)

    def forward(self, x, kv, mask):
        b, sq, _ = x.shape
        skv = kv.shape[1]

        def hd(t, s):
            return t.view(b, s, H, DH).permute(0, 2, 1, 3)

        s = torch.matmul(hd(self.q(x), sq), hd(self.k(kv), skv).transpose(-1, -2)) / math.sqrt(DH) + mask
        o = torch.matmul(F.softmax(s, dim=-1), hd(self.v(kv), skv)).permute(0, 2, 1, 3).reshape(b, sq, D)
        return self.ln(x + self.o(o))


class BlipLayer(nn.Module):
    def __init__(self, img):
        super().__init__()
        self.self_attn, self.cross = BlipAttn(D), BlipAttn(img)
        self.fc1, self.fc2, self.ln = nn.Linear(D, FF), nn.Linear(FF, D), nn.LayerNorm(D)

    def forward(self, x, mask, enc, enc_mask):
        x = self.cross(self.self_attn(x, x, mask), enc, enc_mask)
        return self.ln(x + self.fc2(F.gelu(self.fc1(x))))


class BlipText(nn.Module):
    """BlipTextModel: BERT embeddings (absolute positions), post-LN layers
    each with self-attention and cross-attention to `encoder_hidden_states`
    (the vision tower's tokens, width 24, all attended: the extended mask of
    ones, `(1 - m) * -10000`); as the decoder (BlipTextLMHeadModel) the
    self-attention mask is causal times the padding and a tied LM head
    follows."""

    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder
        self.word, self.pos = nn.Embedding(VOCAB, D), nn.Embedding(16, D)
        self.ln = nn.LayerNorm(D)
        self.layers = nn.ModuleList(BlipLayer(24) for _ in range(L))
        if decoder:
            self.tr, self.tr_ln = nn.Linear(D, D), nn.LayerNorm(D)
            self.bias = nn.Parameter(torch.zeros(VOCAB))

    def forward(self, input_ids, attention_mask, encoder_hidden_states):
        b, s = input_ids.shape
        x = self.ln(self.word(input_ids) + self.pos(torch.arange(s, device=input_ids.device))[None])
        m = attention_mask[:, None, None, :].float()
        if self.decoder:
            seq = torch.arange(s, device=input_ids.device)
            causal = (seq[None, None, :].repeat(b, s, 1) <= seq[None, :, None]).float()
            m = causal[:, None, :, :] * m
        mask = (1.0 - m) * -10000.0
        enc_mask = (1.0 - torch.ones(encoder_hidden_states.shape[:2])[:, None, None, :]) * -10000.0
        for layer in self.layers:
            x = layer(x, mask, encoder_hidden_states, enc_mask)
        if self.decoder:
            x = self.tr_ln(F.gelu(self.tr(x)))
            return x @ self.word.weight.t() + self.bias
        return x


def ids_mask_image(seed):
    def make(b, s):
        ids, mask = data(seed + s, b, s)
        img = torch.randn(b, 5, 24, generator=torch.Generator().manual_seed(seed + 100 + s))
        return [ids, mask, img]
    return make


# --------------------------------------------------------------- LongT5 ----

def pad_to_multiple(x, block_len, dim, value=0):
    pad_len = -x.shape[dim] % block_len
    pad = [0, 0] * (x.dim() - 1 - dim) + [0, pad_len]
    return F.pad(x, pad, value=value)


def split_blocks(x, block_len, dim):
    """LongT5's _split_into_blocks: padded to whole blocks (traced on a
    length that needs padding: the pad is computed from the length), the
    axis split into [blocks, block_len]."""
    if x.shape[dim] % block_len != 0:
        x = pad_to_multiple(x, block_len, dim)
    shape = x.shape[:dim] + (x.shape[dim] // block_len, block_len) + x.shape[dim + 1:]
    return x.reshape(shape)


def concat_3_blocks(x, block_dim, seq_dim, value=0):
    """Each block beside its neighbours: [.., blocks, 3 * block_len, ..]."""
    n = x.shape[block_dim]
    pad = [0, 0] * (x.dim() - 1 - block_dim) + [1, 1]
    x = F.pad(x, pad, value=value)
    parts = []
    for i in range(3):
        idx = [slice(0, None)] * x.dim()
        idx[block_dim] = slice(i, i + n)
        parts.append(x[tuple(idx)])
    return torch.cat(parts, dim=seq_dim)


def three_block_rel(block_len):
    pos = torch.arange(3 * block_len, dtype=torch.int64)
    return pos[None, :] - pos[block_len:-block_len][:, None]


class LongT5LocalLayer(nn.Module):
    def __init__(self, block_len, has_bias):
        super().__init__()
        self.bl = block_len
        self.ln1, self.ln2 = RmsNorm(D, 1e-6), RmsNorm(D, 1e-6)
        self.q, self.k, self.v, self.o = (nn.Linear(D, D, bias=False) for _ in range(4))
        self.rel = nn.Embedding(8, H) if has_bias else None
        self.wi0, self.wi1 = nn.Linear(D, D, bias=False), nn.Linear(D, D, bias=False)
        self.wo = nn.Linear(D, D, bias=False)

    def compute_bias(self):
        buckets = rel_bucket(three_block_rel(self.bl), True)
        return self.rel(buckets).permute(2, 0, 1)[None, None]  # [1, 1, H, bl, 3 bl]

    def forward(self, x, mask, bias):
        b, s, _ = x.shape
        y = self.ln1(x)

        def shape(t):
            return t.view(b, -1, H, DH)

        q = split_blocks(shape(self.q(y)), self.bl, 1)
        k = concat_3_blocks(split_blocks(shape(self.k(y)), self.bl, 1), 1, 2)
        v = concat_3_blocks(split_blocks(shape(self.v(y)), self.bl, 1), 1, 2)
        if bias is None:
            bias = self.compute_bias() + mask.transpose(1, 2)
        scores = torch.einsum("...qhd,...khd->...hqk", q, k) + bias
        w = F.softmax(scores.float(), dim=-1).type_as(scores)
        o = torch.einsum("...hqk,...khd->...qhd", w, v)
        o = o.reshape(b, -1, D)[:, :s]
        x = x + self.o(o)
        z = self.ln2(x)
        return x + self.wo(F.gelu(self.wi0(z), approximate="tanh") * self.wi1(z)), bias


class LongT5Local(nn.Module):
    """LongT5EncoderModel with local attention (local_radius 3: blocks of 4):
    each block's queries on the keys of it and its two neighbours, the
    3-block relative bias of the first layer (bidirectional T5 buckets)
    shared with the next, the mask `_get_local_attention_mask` (padding of
    both sides and |distance| < block_len) as where(.., 0, -1e10) -- float64
    under torch 1.13, as the bias added to it --, RMS norms, gated-GELU FFN
    (width 32), no scaling; the rows padded to whole blocks are
    cut after the attention."""

    def __init__(self):
        super().__init__()
        self.bl = 4
        self.embed = nn.Embedding(VOCAB, D)
        self.layers = nn.ModuleList(LongT5LocalLayer(self.bl, i == 0) for i in range(L))
        self.ln = RmsNorm(D, 1e-6)

    def forward(self, input_ids, attention_mask):
        x = self.embed(input_ids)
        blocked = split_blocks(attention_mask, self.bl, 1)  # [B, nb, bl]
        three = concat_3_blocks(blocked, 1, 2)  # [B, nb, 3 bl]
        local = torch.logical_and(blocked.unsqueeze(-1), three.unsqueeze(-2))
        near = (three_block_rel(self.bl).abs() < self.bl)[None, None]
        local = torch.logical_and(local, near).unsqueeze(1)  # [B, 1, nb, bl, 3 bl]
        mask = torch.where(local, 0.0, -1e10)
        bias = None
        for layer in self.layers:
            x, bias = layer(x, mask, bias)
        return self.ln(x)


# --------------------------------------------------------------- CANINE ----

class CanineLayer(nn.Module):
    """BERT's post-LN layer (FFN of width 16 here)."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v, self.o = (nn.Linear(D, D) for _ in range(4))
        self.ln1, self.ln2 = nn.LayerNorm(D), nn.LayerNorm(D)
        self.fc1, self.fc2 = nn.Linear(D, 16), nn.Linear(16, D)

    def forward(self, x, mask):
        b, s, _ = x.shape

        def hd(t):
            return t.view(b, s, H, DH).permute(0, 2, 1, 3)

        a = torch.matmul(hd(self.q(x)), hd(self.k(x)).transpose(-1, -2)) / math.sqrt(DH) + mask
        o = torch.matmul(F.softmax(a, dim=-1), hd(self.v(x))).permute(0, 2, 1, 3).reshape(b, s, D)
        x = self.ln1(x + self.o(o))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class Canine(nn.Module):
    """CanineModel: code points hashed by 2 primes into 16 buckets each
    (`((ids + 1) * prime) % buckets`, half the width each), positions and
    token types, LayerNorm; the initial character layer (local attention in
    chunks of 128: one chunk at these lengths); CharactersToMolecules (a
    Conv1d of kernel and stride 4, GELU, the CLS character kept, LayerNorm)
    under the mask max-pooled by 4; a deep layer on the molecules; the
    molecules repeated 4 times each (and the last for the remainder),
    concatenated with the characters, a 'same' Conv1d of kernel 4, GELU,
    LayerNorm, the final character layer; the pooler on the molecules'
    CLS. The remainder of the length over 4 is a Python number in Hugging
    Face's code (`.item()`): traced on 8 characters, run on 8 and 12.
    hf_repeat: the repetition by `repeat_interleave`, which torch 1.13
    exports over a dynamic length as a Loop; else by expand + reshape."""

    def __init__(self, hf_repeat):
        super().__init__()
        self.hf_repeat = hf_repeat
        self.rate, self.buckets, self.primes = 4, 16, (31, 43)
        self.hash = nn.ModuleList(nn.Embedding(self.buckets, D // 2) for _ in self.primes)
        self.pos, self.tok_type = nn.Embedding(32, D), nn.Embedding(2, D)
        self.ln = nn.LayerNorm(D)
        self.initial, self.final = CanineLayer(), CanineLayer()
        self.down = nn.Conv1d(D, D, self.rate, self.rate)
        self.down_ln = nn.LayerNorm(D)
        self.deep = nn.ModuleList([CanineLayer()])
        self.up = nn.Conv1d(2 * D, D, self.rate)
        self.up_ln = nn.LayerNorm(D)
        self.pool = nn.Linear(D, D)

    def forward(self, input_ids, attention_mask):
        b, s = input_ids.shape
        x = torch.cat([emb(((input_ids + 1) * p) % self.buckets) for emb, p in zip(self.hash, self.primes)], -1)
        x = x + self.pos(torch.arange(s, device=input_ids.device))[None] + self.tok_type(torch.zeros_like(input_ids))
        x = self.ln(x)
        mask = (1.0 - attention_mask[:, None, None, :].float()) * FMIN
        chars = self.initial(x, mask)
        m = F.gelu(self.down(chars.transpose(1, 2)).transpose(1, 2))
        m = self.down_ln(torch.cat([chars[:, 0:1], m], 1))
        pooled_mask = F.max_pool1d(attention_mask.float().reshape(b, 1, s), self.rate, self.rate).squeeze(1)
        mmask = torch.cat([torch.ones(b, 1), pooled_mask], 1)
        mmask = (1.0 - mmask[:, None, None, :]) * FMIN
        for layer in self.deep:
            m = layer(m, mmask)
        if self.hf_repeat:
            rep = m[:, 1:].repeat_interleave(self.rate, dim=-2)
        else:
            n = m.shape[1] - 1
            rep = m[:, 1:, None].expand(b, n, self.rate, D).reshape(b, n * self.rate, D)
        rem = s % self.rate
        if rem:
            rep = torch.cat([rep, m[:, -1:].repeat_interleave(rem, dim=-2)], -2)
        y = torch.cat([chars, rep], -1).transpose(1, 2)
        y = F.gelu(self.up(F.pad(y, ((self.rate - 1) // 2, self.rate - 1 - (self.rate - 1) // 2))))
        y = self.final(self.up_ln(y.transpose(1, 2)), mask)
        return y, torch.tanh(self.pool(m[:, 0]))


def chars_mask(seed):
    # 8 and 12 code points (the last row padded): multiples of the rate
    return lambda b, s: list(data(seed + b, b, 8 if b == 2 else 12, 3))


def cases():
    pix = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}, "last_hidden_state": {0: "batch"}}
    feats = {"input_features": {0: "batch", 1: "frames"}, "last_hidden_state": {0: "batch", 1: "frames"}}
    blip = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
            "encoder_hidden_states": {0: "batch", 1: "image_tokens"}}
    mae = {"pixel_values": {0: "batch"}, "noise": {0: "batch"}, "logits": {0: "batch"}, "mask": {0: "batch"}}
    return [
        ("z8_cvt_convproj_cls_op14", Cvt(True), 1001, images(401), ["pixel_values"],
         ["logits", "last_hidden_state"], 14, {"dynamic": pix}),
        ("z8_cvt_convproj_meanpool_op17", Cvt(False), 1002, images(402), ["pixel_values"],
         ["logits", "last_hidden_state"], 17, {"dynamic": pix}),
        ("z8_levit_attnbias_hardswish_op14", Levit(), 1003, images(403), ["pixel_values"],
         ["logits", "last_hidden_state"], 14, {"dynamic": pix}),
        ("z8_fnet_dftmatmul_op14", Fnet(), 1004, ids_types(404), ["input_ids", "token_type_ids"],
         ["last_hidden_state", "pooler_output"], 14, {}),
        ("z8_fnet_fftn_dft_op17", Fnet(fft=True), 1013, ids_types(413), ["input_ids", "token_type_ids"],
         ["last_hidden_state", "pooler_output"], 17, {}),
        ("z8_w2v2conformer_relpos_op14", Conformer("relative"), 1005, features(405), ["input_features"],
         ["last_hidden_state"], 14, {"dynamic": feats}),
        ("z8_w2v2conformer_rotary_op17", Conformer("rotary"), 1006, features(406), ["input_features"],
         ["last_hidden_state"], 17, {"dynamic": feats}),
        ("z8_canine_hashdown_expand_op14", Canine(False), 1015, chars_mask(415),
         ["input_ids", "attention_mask"], ["last_hidden_state", "pooler_output"], 14, {}),
        ("z8_canine_hashdown_repeatinterleave_op14", Canine(True), 1016, chars_mask(416),
         ["input_ids", "attention_mask"], ["last_hidden_state", "pooler_output"], 14, {}),
        ("z8_longt5_local_op14", LongT5Local(), 1014, ids_mask(414), ["input_ids", "attention_mask"],
         ["last_hidden_state"], 14, {}),
        ("z8_nystromformer_landmarks_op14", Nystromformer(), 1007, ids_mask_padded(407),
         ["input_ids", "attention_mask"], ["last_hidden_state"], 14,
         {"dynamic": {"input_ids": {0: "batch"}, "attention_mask": {0: "batch"},
                      "last_hidden_state": {0: "batch"}}}),
        ("z8_mobilevit_unfold_op14", MobileVit(), 1008, images(408), ["pixel_values"], ["logits"], 14,
         {"dynamic": pix}),
        ("z8_poolformer_pool_op14", PoolFormer(), 1009, images(409), ["pixel_values"], ["logits"], 14,
         {"dynamic": pix}),
        ("z8_vitmae_noise_op14", VitMae(), 1010, image_noise(410), ["pixel_values", "noise"],
         ["logits", "mask"], 14, {"dynamic": mae}),
        ("z8_blip_text_cross_op14", BlipText(False), 1011, ids_mask_image(411),
         ["input_ids", "attention_mask", "encoder_hidden_states"], ["last_hidden_state"], 14,
         {"dynamic": dict(blip, last_hidden_state={0: "batch", 1: "seq"})}),
        ("z8_blip_textdec_causal_cross_op17", BlipText(True), 1012, ids_mask_image(412),
         ["input_ids", "attention_mask", "encoder_hidden_states"], ["logits"], 17,
         {"dynamic": dict(blip, logits={0: "batch", 1: "seq"})}),
    ]


if __name__ == "__main__":
    make_zoo.PREFIXES.extend(sys.argv[2:])
    torch.manual_seed(0)
    for name, model, seed, make_inputs, ins, outs, opset, kw in cases():
        export(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__)),
               name, model, seed, make_inputs, ins, outs, opset, **kw)
