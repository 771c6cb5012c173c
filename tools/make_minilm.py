#!/usr/bin/env python3
"""make_minilm.py -- a MiniLM-shaped whole model for serving measurements.

The published all-MiniLM-L6 shape (BERT architecture: 6 post-LN layers,
d_model 384, 12 heads of 32, FFN 1536, vocabulary 30522, 512 positions),
written with the BERT module of tests/data/models/make_models.py, seeded
random weights, exported with dynamic batch and sequence axes (opset 17):
inputs input_ids, attention_mask, token_type_ids [batch, seq] int64; outputs
last_hidden_state [batch, seq, 384], pooler_output [batch, 384]. About 90 MB.

Run with a Python that has torch and onnx:  python3 make_minilm.py OUT.onnx
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data",
                                "models"))
import make_models as mm  # noqa: E402


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_minilm.py OUT.onnx")
    mm.D, mm.HEADS, mm.FFN, mm.LAYERS, mm.VOCAB, mm.MAXPOS = 384, 12, 1536, 6, 30522, 512
    torch.manual_seed(0)
    model = mm.Bert()
    mm.randomize(model, 21)
    model.eval()
    ids = torch.randint(0, mm.VOCAB, (2, 16), generator=torch.Generator().manual_seed(3))
    mask = torch.ones(2, 16, dtype=torch.long)
    seg = torch.zeros(2, 16, dtype=torch.long)
    bs = {0: "batch", 1: "seq"}
    torch.onnx.export(model, (ids, mask, seg), sys.argv[1], opset_version=17,
                      input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["last_hidden_state", "pooler_output"],
                      dynamic_axes={"input_ids": bs, "attention_mask": bs, "token_type_ids": bs,
                                    "last_hidden_state": bs, "pooler_output": {0: "batch"}},
                      do_constant_folding=True)


if __name__ == "__main__":
    main()
