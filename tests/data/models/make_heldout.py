#!/usr/bin/env python3
"""make_heldout.py -- a rehearsal of the held-out judging models (h_* cases
of tests/data/models).

The judges bring BERT-base, MiniLM-L6, ViT-B/16 and GPT-2 small written
independently from the published architectures and exported with
torch.onnx.export. These modules are written a third time, in styles
neither make_models.py nor make_variants.py uses: BERT with one fused qkv
Linear chunked in three, positions from arange and the extended mask
(1.0 - mask[:, None, None, :]) * -10000.0, pooler and two outputs, at
opset 12 with the axes named as users name them; a MiniLM sentence
embedder with a bool mask masked_fill'ed to -inf on K^T permuted directly,
masked mean pooling, exported without constant folding at opset 16; GPT-2
with the output head tied to the token embedding (h @ wte.T, or F.linear
on the last row with a bias: a Gemm with transB reading the Gather's
table), a registered tril buffer sliced to the length through torch.where
or masked_fill(-inf), positions from arange, at opsets 12, 14 and 17; a
ViT with a learned CLS token concatenated, tanh GELU, at opset 12; and
torchvision's own vit_b_16 (nn.MultiheadAttention inside its encoder).

    python3 make_heldout.py                 the tiny cases, into this folder
    python3 make_heldout.py OUTDIR full     the same modules at full size
                                            (12 layers d 768, MiniLM 6 layers d 384)
    python3 make_heldout.py OUTDIR SIZE dataset CASE N S
                                            token ids [N, S], lengths, masks and
                                            PyTorch's outputs of each row alone
                                            at its length, for `mha run`

Run with a Python that has torch (1.13), torchvision (0.14) and onnx; each
case is seeded, so the output is the same bytes for the same versions.
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from make_models import save_case

# layers, d, heads, FFN, vocabulary, positions (ViT: image size, patch size)
SIZES = {
    "tiny": dict(bert=(2, 24, 4, 32, 32, 16), minilm=(2, 24, 4, 32, 32, 16), gpt2=(2, 24, 4, 32, 32, 16),
                 vit=(2, 24, 4, 32, 16, 4)),
    "full": dict(bert=(12, 768, 12, 3072, 30522, 512), minilm=(6, 384, 12, 1536, 30522, 512),
                 gpt2=(12, 768, 12, 3072, 50257, 1024), vit=(12, 768, 12, 3072, 224, 16)),
}


def init(model, seed, tiny):
    # tiny: large weights test more; full: GPT-2's 0.02 keeps 12 layers in range
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if p.dim() >= 2:
                p.copy_(r * (0.15 if tiny else 0.02))
            elif ("norm" in n or "ln" in n) and n.endswith("weight"):
                p.copy_(1.0 + 0.2 * r)
            else:
                p.copy_((0.3 if tiny else 0.02) * r)


# ---------------- BERT: fused qkv Linear chunked, arange positions ------------
class BertAttn(nn.Module):
    def __init__(self, d, h):
        super().__init__(); self.h = h; self.qkv = nn.Linear(d, 3 * d); self.o = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x, ext):
        B, S, D = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q, k, v = [t.reshape(B, S, self.h, D // self.h).transpose(1, 2) for t in (q, k, v)]
        att = (q @ k.transpose(-2, -1)) / math.sqrt(D // self.h) + ext
        ctx = att.softmax(-1) @ v
        return self.norm(x + self.o(ctx.transpose(1, 2).reshape(B, S, D)))


class BertBlock(nn.Module):
    def __init__(self, d, h, f):
        super().__init__(); self.attn = BertAttn(d, h); self.fc1 = nn.Linear(d, f); self.fc2 = nn.Linear(f, d)
        self.norm = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x, ext):
        x = self.attn(x, ext)
        return self.norm(x + self.fc2(F.gelu(self.fc1(x))))


class HandBert(nn.Module):
    def __init__(self, L, d, h, f, vocab, maxpos):
        super().__init__()
        self.tok = nn.Embedding(vocab, d); self.pos = nn.Embedding(maxpos, d); self.typ = nn.Embedding(2, d)
        self.emb_norm = nn.LayerNorm(d, eps=1e-12)
        self.blocks = nn.ModuleList([BertBlock(d, h, f) for _ in range(L)])
        self.pool = nn.Linear(d, d)

    def forward(self, input_ids, attention_mask, token_type_ids):
        S = input_ids.shape[1]
        pos = torch.arange(S, device=input_ids.device).unsqueeze(0)
        x = self.emb_norm(self.tok(input_ids) + self.pos(pos) + self.typ(token_type_ids))
        ext = (1.0 - attention_mask[:, None, None, :].float()) * -10000.0
        for b in self.blocks:
            x = b(x, ext)
        return x, torch.tanh(self.pool(x[:, 0]))


# ---------------- MiniLM sentence embedder: bool masked_fill(-inf), mean pool --
class MiniAttn(nn.Module):
    def __init__(self, d, h):
        super().__init__(); self.h = h
        self.query = nn.Linear(d, d); self.key = nn.Linear(d, d); self.value = nn.Linear(d, d); self.out = nn.Linear(d, d)

    def forward(self, x, keep):
        B, S, D = x.shape
        dh = D // self.h
        q = self.query(x).view(B, -1, self.h, dh).permute(0, 2, 1, 3)
        k = self.key(x).view(B, -1, self.h, dh).permute(0, 2, 3, 1)  # K^T directly
        v = self.value(x).view(B, -1, self.h, dh).permute(0, 2, 1, 3)
        sc = torch.matmul(q, k) * (1.0 / math.sqrt(dh))
        sc = sc.masked_fill(~keep, float("-inf"))
        p = F.softmax(sc, dim=-1)
        return self.out(torch.matmul(p, v).permute(0, 2, 1, 3).flatten(2))


class MiniBlock(nn.Module):
    def __init__(self, d, h, f):
        super().__init__(); self.att = MiniAttn(d, h); self.ln1 = nn.LayerNorm(d); self.ff = nn.Sequential(
            nn.Linear(d, f), nn.GELU(), nn.Linear(f, d)); self.ln2 = nn.LayerNorm(d)

    def forward(self, x, keep):
        x = self.ln1(x + self.att(x, keep))
        return self.ln2(x + self.ff(x))


class MiniLM(nn.Module):
    def __init__(self, L, d, h, f, vocab, maxpos):
        super().__init__()
        self.word = nn.Embedding(vocab, d); self.position = nn.Embedding(maxpos, d); self.ln = nn.LayerNorm(d)
        self.layers = nn.ModuleList([MiniBlock(d, h, f) for _ in range(L)])
        self.register_buffer("position_ids", torch.arange(maxpos).expand((1, -1)), persistent=False)

    def forward(self, input_ids, attention_mask):
        S = input_ids.size(1)
        x = self.ln(self.word(input_ids) + self.position(self.position_ids[:, :S]))
        keep = attention_mask.bool()[:, None, None, :]
        for l in self.layers:
            x = l(x, keep)
        m = attention_mask.unsqueeze(-1).expand(x.size()).float()
        return torch.sum(x * m, 1) / torch.clamp(m.sum(1), min=1e-9)


# ---------------- GPT-2: tied wte, tril buffer, arange positions, final LN ----
class GptAttn(nn.Module):
    def __init__(self, d, h, maxpos, where):
        super().__init__(); self.h = h; self.where = where
        self.qkv = nn.Linear(d, 3 * d); self.proj = nn.Linear(d, d)
        self.register_buffer("tril", torch.tril(torch.ones(maxpos, maxpos)).view(1, 1, maxpos, maxpos))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, self.h, C // self.h).transpose(1, 2)
        k = k.view(B, T, self.h, C // self.h).transpose(1, 2)
        v = v.view(B, T, self.h, C // self.h).transpose(1, 2)
        att = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(k.size(-1))
        causal = self.tril[:, :, :T, :T]
        if self.where:
            att = torch.where(causal.bool(), att, torch.tensor(float("-inf")))
        else:
            att = att.masked_fill(causal == 0, float("-inf"))
        y = torch.matmul(F.softmax(att, dim=-1), v)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class GptBlock(nn.Module):
    def __init__(self, d, h, f, maxpos, where):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d); self.attn = GptAttn(d, h, maxpos, where); self.ln_2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, f); self.proj = nn.Linear(f, d)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.proj(F.gelu(self.fc(self.ln_2(x)), approximate="tanh"))


class TiedGpt2(nn.Module):
    def __init__(self, L, d, h, f, vocab, maxpos, where, last=False):
        super().__init__()
        self.last = last
        if last:  # the head's own bias (as BERT's MLM decoder has beside its tied weight)
            self.head_bias = nn.Parameter(torch.zeros(vocab))
        self.wte = nn.Embedding(vocab, d); self.wpe = nn.Embedding(maxpos, d)
        self.h = nn.ModuleList([GptBlock(d, h, f, maxpos, where) for _ in range(L)])
        self.ln_f = nn.LayerNorm(d)

    def forward(self, input_ids):
        T = input_ids.size(1)
        pos = torch.arange(0, T, dtype=torch.long, device=input_ids.device)
        x = self.wte(input_ids) + self.wpe(pos)
        for b in self.h:
            x = b(x)
        if self.last:  # the next token's logits only: [B, D] rows, F.linear on the tied table
            return F.linear(self.ln_f(x)[:, -1, :], self.wte.weight, self.head_bias)
        return self.ln_f(x) @ self.wte.weight.T


# ---------------- hand ViT: learned CLS concatenated, tanh GELU --------------
class VitBlock(nn.Module):
    def __init__(self, d, h, f):
        super().__init__(); self.h = h
        self.n1 = nn.LayerNorm(d, eps=1e-6); self.q = nn.Linear(d, d); self.k = nn.Linear(d, d); self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d); self.n2 = nn.LayerNorm(d, eps=1e-6); self.f1 = nn.Linear(d, f); self.f2 = nn.Linear(f, d)
        self.act = nn.GELU(approximate="tanh")

    def forward(self, x):
        B, N, D = x.shape
        y = self.n1(x)
        dh = D // self.h
        q = self.q(y).reshape(B, N, self.h, dh).transpose(1, 2) * dh ** -0.5
        k = self.k(y).reshape(B, N, self.h, dh).transpose(1, 2)
        v = self.v(y).reshape(B, N, self.h, dh).transpose(1, 2)
        a = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        x = x + self.o((a @ v).transpose(1, 2).reshape(B, N, D))
        return x + self.f2(self.act(self.f1(self.n2(x))))


class HandVit(nn.Module):
    def __init__(self, L, d, h, f, image, patch, classes):
        super().__init__()
        self.patch = nn.Conv2d(3, d, patch, stride=patch)
        n = (image // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, d)); self.pos = nn.Parameter(torch.zeros(1, n + 1, d))
        self.blocks = nn.Sequential(*[VitBlock(d, h, f) for _ in range(L)])
        self.norm = nn.LayerNorm(d, eps=1e-6); self.head = nn.Linear(d, classes)

    def forward(self, pixel_values):
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0]), x


def ids_mask(g, b, s, vocab):
    # row 0 full, row i padded by 2 i tokens at the end
    ids = torch.randint(0, vocab, (b, s), generator=g)
    m = torch.ones(b, s, dtype=torch.long)
    for i in range(1, b):
        m[i, s - 2 * i:] = 0
    return ids, m


def case_bert(z, tiny, g, B, S):
    m = HandBert(*z["bert"])
    ids, mask = ids_mask(g, B, S, z["bert"][4])
    tt = torch.zeros_like(ids)
    tt[:, S // 2:] = 1
    names = ["input_ids", "attention_mask", "token_type_ids"]
    ax = {0: "batch_size", 1: "sequence_length"}
    dyn = {n: ax for n in names}
    dyn.update({"last_hidden_state": ax, "pooler_output": {0: "batch_size"}})
    return m, [ids, mask, tt], names, ["last_hidden_state", "pooler_output"], dyn, 12, True


def case_minilm(z, tiny, g, B, S):
    m = MiniLM(*z["minilm"])
    ids, mask = ids_mask(g, B + 1, S, z["minilm"][4])
    ax = {0: "batch", 1: "tokens"}
    dyn = {"input_ids": ax, "attention_mask": ax, "sentence_embedding": {0: "batch"}}
    return m, [ids, mask], ["input_ids", "attention_mask"], ["sentence_embedding"], dyn, 16, False


def case_gpt2(where, opset, last=False):
    def make(z, tiny, g, B, S):
        m = TiedGpt2(*z["gpt2"], where, last)
        ids = torch.randint(0, z["gpt2"][4], (B, S), generator=g)
        ax = {0: "batch", 1: "sequence"}
        out = "next_token_logits" if last else "logits"
        return m, [ids], ["input_ids"], [out], {"input_ids": ax, out: {0: "batch"} if last else ax}, opset, True
    return make


def case_vit(z, tiny, g, B, S):
    L, d, h, f, image, patch = z["vit"]
    m = HandVit(L, d, h, f, image, patch, 10 if tiny else 1000)
    x = torch.randn(B, 3, image, image, generator=g)
    dyn = {"pixel_values": {0: "N"}, "logits": {0: "N"}, "tokens": {0: "N"}}
    return m, [x], ["pixel_values"], ["logits", "tokens"], dyn, 12, True


def case_torchvision(z, tiny, g, B, S):
    import torchvision
    L, d, h, f, image, patch = z["vit"]
    if tiny:  # its graph is larger than the others': narrower to stay small
        d, f = 16, 32
    m = torchvision.models.VisionTransformer(image_size=image, patch_size=patch, num_layers=L, num_heads=h,
                                             hidden_dim=d, mlp_dim=f, num_classes=10 if tiny else 1000)
    x = torch.randn(B, 3, image, image, generator=g)
    return m, [x], ["images"], ["logits"], {"images": {0: "batch"}, "logits": {0: "batch"}}, 13, True


# name: (maker, seed)
CASES = {
    "h_bert_qkvchunk_ext1e4_op12": (case_bert, 1),
    "h_minilm_st_boolinf_op16_nofold": (case_minilm, 2),
    "h_gpt2_tied_where_op17": (case_gpt2(True, 17), 3),
    "h_gpt2_tied_mfill_op12": (case_gpt2(False, 12), 4),
    "h_gpt2_tied_lastrow_gemm_op14": (case_gpt2(True, 14, last=True), 5),
    "h_vit_cls_tanhgelu_op12": (case_vit, 6),
    "h_vit_torchvision_op13": (case_torchvision, 7),
}


def build(name, size, B=2, S=7):
    """case `name` at `size`: the module with its weights, and the export's
    arguments"""
    make, seed = CASES[name]
    tiny = size == "tiny"
    torch.manual_seed(seed)
    m, *rest = make(SIZES[size], tiny, torch.Generator().manual_seed(seed), B, S)
    init(m, seed, tiny)
    return (m.eval(), *rest)


def dataset(outdir, size, name, n, s):
    """OUTDIR/NAME/dataset: ids.npy [n, s] (int64), lengths.npy, mask.npy (1
    for the first length tokens), tt.npy (segment 0) and expected_<k>.npy,
    PyTorch's outputs of each row run alone at its length (per-token outputs
    zero past it)."""
    m = build(name, size)[0]
    vocab = m.tok.num_embeddings if hasattr(m, "tok") else m.word.num_embeddings if hasattr(m, "word") \
        else m.wte.num_embeddings
    g = torch.Generator().manual_seed(11)
    ids = torch.randint(0, vocab, (n, s), generator=g)
    lengths = torch.randint(1, s + 1, (n,), generator=g)
    lengths[0] = s
    rows = []
    with torch.no_grad():
        for i in range(n):
            x = ids[i:i + 1, :int(lengths[i])]
            one = torch.ones_like(x)
            out = m(x, one, torch.zeros_like(x)) if "bert" in name else m(x, one) if "minilm" in name else m(x)
            out = out if isinstance(out, tuple) else (out,)
            rows.append([torch.cat([t, t.new_zeros(1, s - t.shape[1], t.shape[2])], 1) if t.dim() == 3 else t
                         for t in out])
    d = os.path.join(outdir, name, "dataset")
    os.makedirs(d, exist_ok=True)
    np.save(os.path.join(d, "ids.npy"), ids.numpy())
    np.save(os.path.join(d, "lengths.npy"), lengths.numpy())
    np.save(os.path.join(d, "mask.npy"), (torch.arange(s)[None, :] < lengths[:, None]).long().numpy())
    np.save(os.path.join(d, "tt.npy"), torch.zeros_like(ids).numpy())
    for k in range(len(rows[0])):
        np.save(os.path.join(d, "expected_%d.npy" % k), torch.cat([r[k] for r in rows]).numpy())


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    outdir = sys.argv[1] if len(sys.argv) > 1 else here
    size = sys.argv[2] if len(sys.argv) > 2 else "tiny"
    if sys.argv[3:4] == ["dataset"]:
        dataset(outdir, size, sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
        return
    for name in sys.argv[3:] or list(CASES):
        m, inputs, ins, outs, dyn, opset, fold = build(name, size, 2, 7 if size == "tiny" else 24)
        # outside no_grad: nn.MultiheadAttention's fused fast path has no ONNX export
        save_case(outdir, name, m, inputs, ins, outs, dyn, opset, fold)
        print(name, os.path.getsize(os.path.join(outdir, name, "model.onnx")), "bytes", flush=True)


if __name__ == "__main__":
    main()
