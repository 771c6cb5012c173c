#!/usr/bin/env python3
"""model_table_models.py -- the four full-size models of the whole-model
table (docs/PERFORMANCE.md), random weights, exported to ONNX:

    bert_base   BERT-base: 12 layers, d 768, 12 heads, FFN 3072, post-LN, vocab 30522
    minilm_l6   MiniLM-L6: 6 layers, d 384, 12 heads, FFN 1536, post-LN (LayerNormalization op)
    vit_b16     ViT-B/16: 12 layers, d 768, 12 heads, FFN 3072, pre-LN, 224x224 images, patch 16
    gpt2_small  GPT-2 small: 12 layers, d 768, 12 heads, FFN 3072, pre-LN, causal, vocab 50257,
                logits through the tied embedding

The architectures are the small test models' (tests/data/models/make_models.py)
at the published sizes. BERT and MiniLM take input_ids and attention_mask
only (segment 0 for every token), so any runner can feed them token ids.

    /usr/bin/python3 tools/model_table_models.py OUTDIR [name ...]

writes OUTDIR/<name>/model.onnx (skipped when it exists).
"""
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "models"))
import make_models as mm  # noqa: E402  (the architectures, sized by its module globals)


class BertTwoInputs(nn.Module):
    """BERT without the token_type_ids input: every token in segment 0."""

    def __init__(self):
        super().__init__()
        self.bert = mm.Bert()

    def forward(self, input_ids, attention_mask):
        return self.bert(input_ids, attention_mask, torch.zeros_like(input_ids))


def init_weights(model, seed):
    # GPT-2's scale (std 0.02) for matrices and embeddings keeps a 12-layer
    # residual stream in range; norms near 1, small biases
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if p.dim() >= 2:
                p.copy_(r * 0.02)
            elif "ln" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * r)
            else:
                p.copy_(0.02 * r)


# name: (D, heads, FFN, layers, vocab, max positions, opset)
SHAPES = {
    "bert_base": (768, 12, 3072, 12, 30522, 512, 14),
    "minilm_l6": (384, 12, 1536, 6, 30522, 512, 17),
    "vit_b16": (768, 12, 3072, 12, 1, 1, 14),
    "gpt2_small": (768, 12, 3072, 12, 50257, 1024, 15),
}


def build(name):
    d, heads, ffn, layers, vocab, maxpos, opset = SHAPES[name]
    mm.D, mm.HEADS, mm.FFN, mm.LAYERS, mm.VOCAB, mm.MAXPOS = d, heads, ffn, layers, vocab, maxpos
    bs = {0: "batch", 1: "seq"}
    ids = torch.randint(0, 1000, (2, 16))
    if name in ("bert_base", "minilm_l6"):
        model = BertTwoInputs()
        args = (ids, torch.ones(2, 16, dtype=torch.long))
        ins, outs = ["input_ids", "attention_mask"], ["last_hidden_state", "pooler_output"]
        dyn = {"input_ids": bs, "attention_mask": bs, "last_hidden_state": bs, "pooler_output": {0: "batch"}}
    elif name == "gpt2_small":
        model = mm.Gpt2()
        args = (ids,)
        ins, outs, dyn = ["input_ids"], ["logits"], {"input_ids": bs, "logits": bs}
    else:
        model = mm.Vit(image=224, patch=16)
        args = (torch.randn(2, 3, 224, 224),)
        ins, outs = ["pixel_values"], ["cls"]
        dyn = {"pixel_values": {0: "batch"}, "cls": {0: "batch"}}
    init_weights(model, sorted(SHAPES).index(name) + 21)
    model.eval()
    return model, args, ins, outs, dyn, opset


def main():
    usage = "usage: model_table_models.py OUTDIR [name ...] (names: %s)" % ", ".join(sorted(SHAPES))
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit(usage)
    outdir = sys.argv[1]
    for name in sys.argv[2:]:
        if name not in SHAPES:
            sys.exit("model_table_models.py: no model '%s' (%s)" % (name, usage))
    for name in sys.argv[2:] or list(SHAPES):
        path = os.path.join(outdir, name, "model.onnx")
        if os.path.exists(path):
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        model, args, ins, outs, dyn, opset = build(name)
        # outside no_grad: nn.MultiheadAttention's fused fast path has no ONNX export
        torch.onnx.export(model, args, path + ".tmp", input_names=ins, output_names=outs,
                          dynamic_axes=dyn, opset_version=opset, do_constant_folding=True)
        os.replace(path + ".tmp", path)
        print(name, os.path.getsize(path) // (1 << 20), "MiB")


if __name__ == "__main__":
    main()
