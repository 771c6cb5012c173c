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

from make_models import randomize, save_case

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
    def __init__(self):
        super().__init__()
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
        w = torch.where(causal, w.to(w.dtype), torch.full([], torch.finfo(w.dtype).min, dtype=w.dtype))
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
    last_only returns the last position's logits (scoring, generation)."""

    def __init__(self, with_mask, last_only):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, D), nn.Embedding(MAXPOS, D)
        self.h = nn.ModuleList(HfGpt2Block() for _ in range(L))
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
            ext = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
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

    def __init__(self, pool, style="matmul_div", image=16, patch=4, labels=5):
        super().__init__()
        n = (image // patch) ** 2
        self.projection = nn.Conv2d(3, D, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.randn(1, 1, D))
        self.position_embeddings = nn.Parameter(torch.randn(1, n + 1, D))
        self.layer = nn.ModuleList(HfVitLayer(style) for _ in range(L))
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


def vit_cases(outdir):
    g = torch.Generator().manual_seed(131)
    px = torch.randn(2, 3, 16, 16, generator=g)
    dyn = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}
    export(outdir, "v_vit_hf_cls_op14", HfVit("cls"), 131, [px], ["pixel_values"], ["logits"], 14, dyn)
    export(outdir, "v_vit_hf_meanpool_both_op17", HfVit("mean", style="both_quarter"), 132, [px],
           ["pixel_values"], ["logits"], 17, dyn)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    torch.manual_seed(0)
    only = sys.argv[2] if len(sys.argv) > 2 else ""
    for f in (bert_cases, torch_encoder_cases, gpt2_cases, vit_cases):
        if only in f.__name__:
            f(outdir)


if __name__ == "__main__":
    main()
