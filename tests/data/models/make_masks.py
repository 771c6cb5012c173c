#!/usr/bin/env python3
"""make_masks.py -- held-out whole models, a fifth time (m_* cases of tests/data/models).

The masks and inputs users hand a model, written with other choices than the
generators before this one (d 24, 4 heads, FFN 32, 2 layers, vocabulary 32;
batch 2 of 7 tokens, the second row padded):

- BERT whose graph input is the extended mask itself: Hugging Face's
  `get_extended_attention_mask` done by the caller, `(1 - m) * finfo.min`
  as a float [B, 1, 1, S];
- LLaMA with the mask Hugging Face's `_prepare_4d_causal_attention_mask`
  makes (a `triu` of finfo.min, the padding `masked_fill`ed into it),
  `position_ids` an input, rotate-half rotary gathered by them, left padding;
- GPT-2 scoring text, the positions `cumsum(m) - 1` clamped at 0 made inside,
  a bool tril buffer through `where` with finfo.min, `(1 - m) * finfo.min`,
  log-probabilities of the next ids; left padding;
- a BERT classifier: a bool key mask `masked_fill`ed with finfo.min, pooler,
  Linear, softmax over the classes;
- sentence-transformers over a float32 0 / 1 mask: `(1 - m) * -10000`, masked
  mean pooling clamped at 1e-9, `F.normalize`;
- a decoder hiding the causal and the padding keys with `-inf` in one
  `masked_fill`, left padding: the rows inside the padding see no key, and
  the graph (as PyTorch) gives NaN there and, through P.V, on every row of
  that item in the next layer;
- a BERT whose second output weighs its rows by the count of 8-token blocks,
  `S // 8` read by `Shape(start=1, end=2)` and divided (appended to the
  export, as graph tools write it): 0 at both load-time probe lengths, 2 at
  16 tokens.

    /usr/bin/python3 make_masks.py        the cases, into this folder

Each case is seeded: the same bytes for the same torch (1.13) and onnx.
"""
import math
import os
import sys

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper
from torch import nn

from make_models import save_case
from make_whole import padded_mask, seeded_init

D, H, FF, L, V, MAXPOS = 24, 4, 32, 2, 32, 64
FMIN = torch.finfo(torch.float32).min


class Attn(nn.Module):
    # separate q / k / v, scores / sqrt(d) + an additive [B, 1, 1 | S, S] mask
    def __init__(self, d, h):
        super().__init__()
        self.h, self.dh = h, d // h
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.out = nn.Linear(d, d)

    def heads(self, t):
        b, s, _ = t.shape
        return t.view(b, s, self.h, self.dh).transpose(1, 2)

    def forward(self, x, add):
        q, k, v = self.heads(self.query(x)), self.heads(self.key(x)), self.heads(self.value(x))
        w = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.dh) + add
        c = torch.matmul(w.softmax(-1), v).transpose(1, 2)
        return self.out(c.reshape(x.shape[0], x.shape[1], -1))


class PostLNBlock(nn.Module):
    def __init__(self, d, h, f):
        super().__init__()
        self.attn, self.ln1 = Attn(d, h), nn.LayerNorm(d, eps=1e-12)
        self.fc1, self.fc2, self.ln2 = nn.Linear(d, f), nn.Linear(f, d), nn.LayerNorm(d, eps=1e-12)

    def forward(self, x, add):
        x = self.ln1(x + self.attn(x, add))
        return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.tok, self.pos = nn.Embedding(V, D), nn.Embedding(MAXPOS, D)
        self.ln = nn.LayerNorm(D, eps=1e-12)
        self.blocks = nn.ModuleList(PostLNBlock(D, H, FF) for _ in range(L))

    def forward(self, ids, add):
        x = self.ln(self.tok(ids) + self.pos(torch.arange(ids.shape[1])))
        for b in self.blocks:
            x = b(x, add)
        return x


# ---- BERT taking the extended mask [B, 1, 1, S] as its input -----------------
class BertExt4d(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc, self.pool = Encoder(), nn.Linear(D, D)

    def forward(self, input_ids, extended_attention_mask):
        h = self.enc(input_ids, extended_attention_mask)
        return h, torch.tanh(self.pool(h[:, 0]))


# ---- a BERT classifier over a bool mask ---------------------------------------
class BertClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc, self.pool, self.cls = Encoder(), nn.Linear(D, D), nn.Linear(D, 3)

    def forward(self, input_ids, attention_mask):
        add = torch.zeros(attention_mask.shape[0], 1, 1, attention_mask.shape[1])
        add = add.masked_fill(~attention_mask[:, None, None, :], FMIN)
        h = self.enc(input_ids, add)
        return self.cls(torch.tanh(self.pool(h[:, 0]))).softmax(-1)


# ---- sentence-transformers over a float mask --------------------------------
class SentenceEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = Encoder()

    def forward(self, input_ids, attention_mask):
        h = self.enc(input_ids, (1.0 - attention_mask[:, None, None, :]) * -10000.0)
        m = attention_mask.unsqueeze(-1)
        pooled = (h * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
        return F.normalize(pooled, p=2, dim=1)


# ---- a BERT whose second output weighs its rows by S // 8 -------------------
class BertRows(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = Encoder()

    def forward(self, input_ids, attention_mask):
        return self.enc(input_ids, (1.0 - attention_mask[:, None, None, :].float()) * FMIN)


def append_block_scale(path):
    # blocks = float(S // 8), S read by Shape(start=1, end=2); a second output
    # hidden * blocks (the count of 8-token blocks weighing each row)
    m = onnx.load(path)
    g = m.graph
    hidden = g.output[0].name
    g.initializer.extend([numpy_helper.from_array(np.array([8], np.int64), "rows_per_block")])
    g.node.extend([helper.make_node("Shape", [hidden], ["seq_len"], name="/blocks/Shape", start=1, end=2),
                   helper.make_node("Div", ["seq_len", "rows_per_block"], ["n_blocks"], name="/blocks/Div"),
                   helper.make_node("Cast", ["n_blocks"], ["blocks"], name="/blocks/Cast", to=onnx.TensorProto.FLOAT),
                   helper.make_node("Mul", [hidden, "blocks"], ["block_weighted"], name="/blocks/Mul")])
    g.output.append(helper.make_tensor_value_info("block_weighted", onnx.TensorProto.FLOAT, ["batch", "seq", D]))
    onnx.checker.check_model(m)
    onnx.save(m, path)


# ---- LLaMA with HF's combined 4-D mask and position_ids ---------------------
class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class LlamaAttn(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h, self.dh = h, d // h
        self.q_proj, self.k_proj = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.v_proj, self.o_proj = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        inv = 1.0 / (10000 ** (torch.arange(0, self.dh, 2).float() / self.dh))
        t = torch.outer(torch.arange(MAXPOS).float(), inv)
        emb = torch.cat((t, t), dim=-1)
        self.register_buffer("cos_cached", emb.cos(), persistent=False)
        self.register_buffer("sin_cached", emb.sin(), persistent=False)

    def forward(self, x, mask4d, position_ids):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.h, self.dh).transpose(1, 2)
        k = self.k_proj(x).view(b, s, self.h, self.dh).transpose(1, 2)
        v = self.v_proj(x).view(b, s, self.h, self.dh).transpose(1, 2)
        cos, sin = self.cos_cached[position_ids].unsqueeze(1), self.sin_cached[position_ids].unsqueeze(1)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        w = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(self.dh) + mask4d
        w = F.softmax(w, dim=-1, dtype=torch.float32).to(q.dtype)
        return self.o_proj(torch.matmul(w, v).transpose(1, 2).reshape(b, s, -1))


class LlamaBlock(nn.Module):
    def __init__(self, d, h, f):
        super().__init__()
        self.input_layernorm, self.attn, self.post_attention_layernorm = RMSNorm(d), LlamaAttn(d, h), RMSNorm(d)
        self.gate, self.up, self.down = nn.Linear(d, f, bias=False), nn.Linear(d, f, bias=False), nn.Linear(f, d, bias=False)

    def forward(self, x, mask4d, pos):
        x = x + self.attn(self.input_layernorm(x), mask4d, pos)
        h = self.post_attention_layernorm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama4d(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, D)
        self.layers = nn.ModuleList(LlamaBlock(D, H, FF) for _ in range(L))
        self.norm, self.lm_head = RMSNorm(D), nn.Linear(D, V, bias=False)

    def forward(self, input_ids, attention_mask, position_ids):
        b, s = input_ids.shape
        causal = torch.full((s, s), FMIN).triu(1)[None, None].expand(b, 1, s, s)
        inverted = 1.0 - attention_mask[:, None, None, :].expand(b, 1, s, s).float()
        inverted = inverted.masked_fill(inverted.bool(), FMIN)
        mask4d = causal.masked_fill(inverted.bool(), FMIN)
        x = self.embed(input_ids)
        for layer in self.layers:
            x = layer(x, mask4d, position_ids)
        return self.lm_head(self.norm(x))


# ---- GPT-2 scoring, positions from the mask's cumsum ------------------------
class GPT2Attn(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h, self.dh = h, d // h
        self.c_attn, self.c_proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.register_buffer("bias", torch.tril(torch.ones(MAXPOS, MAXPOS, dtype=torch.bool))[None, None],
                             persistent=False)

    def forward(self, x, pad):
        b, s, d = x.shape
        q, k, v = (t.view(b, s, self.h, self.dh).transpose(1, 2) for t in self.c_attn(x).split(d, dim=2))
        w = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.dh)
        w = torch.where(self.bias[:, :, :s, :s], w, torch.tensor(FMIN)) + pad
        c = torch.matmul(w.softmax(-1), v).transpose(1, 2).reshape(b, s, d)
        return self.c_proj(c)


class GPT2Block(nn.Module):
    def __init__(self, d, h, f):
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(d), GPT2Attn(d, h), nn.LayerNorm(d)
        self.c_fc, self.c_proj = nn.Linear(d, f), nn.Linear(f, d)

    def forward(self, x, pad):
        x = x + self.attn(self.ln_1(x), pad)
        return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2Body(nn.Module):
    # token and position tables, L blocks of the given kind, the final norm
    def __init__(self, block):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(V, D), nn.Embedding(MAXPOS, D)
        self.h = nn.ModuleList(block(D, H, FF) for _ in range(L))
        self.ln_f = nn.LayerNorm(D)


class GPT2CumsumScore(GPT2Body):
    def __init__(self):
        super().__init__(GPT2Block)

    def forward(self, input_ids, attention_mask):
        pos = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        pad = (1.0 - attention_mask[:, None, None, :].float()) * FMIN
        x = self.wte(input_ids) + self.wpe(pos)
        for blk in self.h:
            x = blk(x, pad)
        logits = F.linear(self.ln_f(x), self.wte.weight)
        lp = logits[:, :-1].log_softmax(-1).gather(-1, input_ids[:, 1:, None]).squeeze(-1)
        return logits, lp * attention_mask[:, 1:].float()


# ---- a decoder hiding with -inf, left padding: NaN as its graph gives -------
class InfAttn(GPT2Attn):
    # causal and padding one bool, masked_fill(~keep, -inf): a query row
    # inside the left padding keeps no key, and its softmax is NaN
    def forward(self, x, keep):
        b, s, d = x.shape
        q, k, v = (t.view(b, s, self.h, self.dh).transpose(1, 2) for t in self.c_attn(x).split(d, dim=2))
        w = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(self.dh))
        w = w.masked_fill(~keep, float("-inf"))
        return self.c_proj((w.softmax(-1) @ v).transpose(1, 2).reshape(b, s, d))


class InfBlock(GPT2Block):
    def __init__(self, d, h, f):
        super().__init__(d, h, f)
        self.attn = InfAttn(d, h)


class InfDecoder(GPT2Body):
    def __init__(self):
        super().__init__(InfBlock)

    def forward(self, input_ids, attention_mask):
        s = input_ids.shape[1]
        keep = torch.ones(s, s, dtype=torch.bool).tril()[None, None] & attention_mask.bool()[:, None, None, :]
        x = self.wte(input_ids) + self.wpe(torch.arange(s))
        for blk in self.h:
            x = blk(x, keep)
        return F.linear(self.ln_f(x), self.wte.weight)


def ids(g, B, S):
    return torch.randint(0, V, (B, S), generator=g)


AX = {0: "batch", 1: "seq"}


def case_bert_ext4d(g, B, S):
    m = padded_mask(B, S)
    ext = (1.0 - m[:, None, None, :].float()) * FMIN
    return (BertExt4d(), [ids(g, B, S), ext], ["input_ids", "extended_attention_mask"],
            ["last_hidden_state", "pooler_output"],
            {"input_ids": AX, "extended_attention_mask": {0: "batch", 3: "seq"}, "last_hidden_state": AX,
             "pooler_output": {0: "batch"}}, 14)


def case_bert_cls(g, B, S):
    return (BertClassifier(), [ids(g, B, S), padded_mask(B, S, torch.bool)], ["input_ids", "attention_mask"],
            ["probs"], {"input_ids": AX, "attention_mask": AX, "probs": {0: "batch"}}, 14)


def case_st(g, B, S):
    return (SentenceEncoder(), [ids(g, B, S), padded_mask(B, S, torch.float32)], ["input_ids", "attention_mask"],
            ["sentence_embedding"], {"input_ids": AX, "attention_mask": AX, "sentence_embedding": {0: "batch"}}, 14)


def case_rows(g, B, S):
    return (BertRows(), [ids(g, B, 16), padded_mask(B, 16)], ["input_ids", "attention_mask"],
            ["last_hidden_state"], {"input_ids": AX, "attention_mask": AX, "last_hidden_state": AX}, 15)


def case_llama(g, B, S):
    m = padded_mask(B, S, left=True)
    pos = (m.cumsum(-1) - 1).masked_fill(m == 0, 1)
    return (Llama4d(), [ids(g, B, S), m, pos], ["input_ids", "attention_mask", "position_ids"], ["logits"],
            {"input_ids": AX, "attention_mask": AX, "position_ids": AX, "logits": AX}, 14)


def case_gpt2(g, B, S):
    return (GPT2CumsumScore(), [ids(g, B, S), padded_mask(B, S, left=True)], ["input_ids", "attention_mask"],
            ["logits", "token_logprobs"],
            {"input_ids": AX, "attention_mask": AX, "logits": AX, "token_logprobs": {0: "batch", 1: "seq_1"}}, 14)


def case_inf_leftpad(g, B, S):
    return (InfDecoder(), [ids(g, B, S), padded_mask(B, S, left=True)], ["input_ids", "attention_mask"], ["logits"],
            {"input_ids": AX, "attention_mask": AX, "logits": AX}, 14)


# name: (maker, seed)
CASES = {
    "m_bert_hf_ext4d_fmin_input_op14": (case_bert_ext4d, 41),
    "m_llama_hf_4dmask_posids_leftpad_op14": (case_llama, 42),
    "m_gpt2_cumsum_pos_score_leftpad_op14": (case_gpt2, 43),
    "m_bert_cls_boolmask_softmax_op14": (case_bert_cls, 44),
    "m_st_floatmask_meanpool_l2norm_op14": (case_st, 45),
    "m_bert_shape_blocks_seqdiv8_op15": (case_rows, 46),
    "m_gpt_inf_leftpad_nan_op14": (case_inf_leftpad, 47),
}


def main():
    outdir = os.path.dirname(os.path.abspath(__file__))
    for name in sys.argv[1:] or list(CASES):
        make, seed = CASES[name]
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        model, inputs, ins, outs, dyn, opset = make(g, 2, 7)
        seeded_init(model, seed, 0.15)
        model.eval()
        save_case(outdir, name, model, inputs, ins, outs, dyn, opset)
        if name.startswith("m_bert_shape_blocks"):
            path = os.path.join(outdir, name, "model.onnx")
            append_block_scale(path)
            with torch.no_grad():
                weighted = model(*inputs) * float(inputs[0].shape[1] // 8)
            p = os.path.join(outdir, name, "test_data_set_0", "output_1.pb")
            with open(p, "wb") as f:
                f.write(numpy_helper.from_array(weighted.numpy(), "block_weighted").SerializeToString())
        print(name, os.path.getsize(os.path.join(outdir, name, "model.onnx")), "bytes", flush=True)


if __name__ == "__main__":
    main()
