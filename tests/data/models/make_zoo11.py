#!/usr/bin/env python3
"""make_zoo11.py -- round 11 of the whole-model corpus (tests/data/models).

f11_* cases: the families a judge names (BERT, DistilBERT, GPT-2, LLaMA,
T5, ViT, a MiniLM sentence embedder; the modules of make_zoo9.py and
make_zoo10.py) exported with the torch.onnx.export options a judge may
reach for, one combination a case, every case but `nonames` with dynamic batch
and sequence axes (ViT: batch):

  nofold    do_constant_folding=False
  keepinit  keep_initializers_as_inputs=True (every weight also a graph input)
  extdata   the weights in one side file beside model.onnx
            (onnx.save(.., save_as_external_data=True, location=model.onnx.data))
  extfiles  the same, one file a tensor (all_tensors_to_one_file=False)
  axeslist  dynamic_axes as lists of axes ({"input_ids": [0, 1]}): torch
            names every input's axes apart (input_ids_dynamic_axes_1, ..)
  nonames   no input_names / output_names, no dynamic axes (fixed shapes;
            the inputs named after forward's arguments, the outputs by number)
  f16       every Linear's (and the patch Conv's) weight and bias kept in
            float16 and cast to float in forward: without constant folding
            torch writes a Cast after each float16 initializer (folding
            turns them into float32 ones)
  opset 13, 14 or 17

z11_led_localonly_encdec_op14: make_zoo10.py's LED called without
global_attention_mask (no global row: the band attention alone before the
output projection), d 32.

In the corpus (f11_): d 64, 4 heads of 16, FFN 256, 2 layers, a vocabulary of 128
(ViT: 32 x 32 images in 8 x 8 patches). Each case holds PyTorch's outputs
for two data sets (batch 2 of 9 tokens, the second row's last 3 padded;
batch 3 of 6), a static export for the first.

    /usr/bin/python3 make_zoo11.py [OUTDIR [PREFIX...]]

Needs torch (1.13) and onnx (1.12); the same bytes for the same versions.
"""
import math
import os
import sys

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from make_models import randomize
from make_zoo import write_sets
from make_zoo9 import Bert, DistilBert, Inputs, Llama, T5Enc, T5EncDec, family_inputs
from make_models import heads as split, merge as join
from make_zoo10 import FMIN, ZDH, ZH, Cfg, JudgeGpt2, JudgeMiniLM, JudgeVit, Led, f10_ids, f10_image, f10_text, z10_text

VOCAB = 128
CFG = Cfg(64, 4, 256, VOCAB, 32, 8)
PREFIXES = []


def half_weights(model):
    """Each Linear's and Conv's weight and bias as float16 Parameters, cast to
    float in forward (a mixed-precision checkpoint loaded as it was saved)."""
    for m in model.modules():
        if not isinstance(m, (nn.Linear, nn.Conv2d)):
            continue
        m.weight = nn.Parameter(m.weight.detach().half(), requires_grad=False)
        if m.bias is not None:
            m.bias = nn.Parameter(m.bias.detach().half(), requires_grad=False)
        if isinstance(m, nn.Linear):
            m.forward = lambda x, m=m: F.linear(x, m.weight.float(),
                                                None if m.bias is None else m.bias.float())
        else:
            m.forward = lambda x, m=m: m._conv_forward(x, m.weight.float(),
                                                       None if m.bias is None else m.bias.float())


def export11(outdir, name, model, seed, make_inputs, in_names, out_names, opset, forms, dyn):
    if PREFIXES and not any(name.startswith(p) for p in PREFIXES):
        return
    randomize(model, seed)
    model.eval()
    if "f16" in forms:
        half_weights(model)
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if os.path.isfile(os.path.join(d, f)):
            os.remove(os.path.join(d, f))
    sets = [make_inputs(2, 9)] + ([make_inputs(3, 6)] if dyn else [])
    path = os.path.join(d, "model.onnx")
    if "axeslist" in forms:  # the axes as lists: torch names each input's axes apart
        dyn = {n: sorted(a) for n, a in dyn.items()}
    names = {} if "nonames" in forms else {"input_names": in_names, "output_names": out_names}
    torch.onnx.export(model, tuple(sets[0]), path, dynamic_axes=dyn, opset_version=opset,
                      do_constant_folding="nofold" not in forms, keep_initializers_as_inputs="keepinit" in forms,
                      **names)
    m = onnx.load(path)
    onnx.checker.check_model(m)
    if "extdata" in forms or "extfiles" in forms:
        one = "extdata" in forms
        onnx.save(m, path, save_as_external_data=True, all_tensors_to_one_file=one,
                  location="model.onnx.data" if one else None, size_threshold=1024)
    if "nonames" in forms:  # the test sets under the names torch gave
        in_names, out_names = [i.name for i in m.graph.input], [o.name for o in m.graph.output]
    write_sets(d, model, sets, in_names, out_names)


class LedLocal(Led):
    """LED called without global_attention_mask, as LEDModel runs then: no
    row is global, so Longformer's attention is the band (keys within 1
    either side, -inf outside) under the padding (finfo.min), the padded
    rows' probabilities zeroed, and the global branch is not computed."""

    def longformer(self, x, lyr, valid, is_global):
        s = x.size(1)
        q, k, v, o = lyr["local"]
        i = torch.arange(s)
        band = (i[:, None] - i[None, :]).abs() <= self.W
        key_pad = (~valid)[:, None, None, :].float() * FMIN
        ql = split(q(x), ZH) / math.sqrt(ZDH)
        scores = (ql @ split(k(x), ZH).transpose(-1, -2)).masked_fill(~band[None, None], float("-inf")) + key_pad
        probs = F.softmax(scores, dim=-1).masked_fill(~valid[:, None, :, None], 0.0)
        return o(join(probs @ split(v(x), ZH)))

    def forward(self, input_ids, attention_mask, decoder_input_ids):
        return super().forward(input_ids, attention_mask, torch.zeros_like(attention_mask), decoder_input_ids)


def text_axes(ins, outs, dec=False):
    seq = {0: "batch", 1: "sequence"}
    dyn = {n: seq for n in ins}
    dyn.update({n: seq for n in outs})
    dyn.update({n: {0: "batch"} for n in outs if n in ("pooler_output", "sentence_embedding")})
    if dec:
        dyn.update({n: {0: "batch", 1: "decoder_sequence"} for n in ["decoder_input_ids"] + outs})
    return dyn


def zoo11(outdir):
    bert = ["input_ids", "attention_mask", "token_type_ids"]
    ids_mask = ["input_ids", "attention_mask"]
    t5 = ["input_ids", "attention_mask", "decoder_input_ids"]
    hidden = ["last_hidden_state"]
    cases = [
        # name, module maker, seed, inputs, input names, output names, opset, forms
        ("f11_bert_nofold_extdata_op13", lambda: Inputs(Bert(VOCAB), bert), 1101,
         family_inputs("bert", VOCAB, bert, 111), bert, hidden + ["pooler_output"], 13, ("nofold", "extdata")),
        ("f11_bert_nofold_keepinit_f16_op17", lambda: Inputs(Bert(VOCAB), bert), 1102,
         family_inputs("bert", VOCAB, bert, 112), bert, hidden + ["pooler_output"], 17, ("nofold", "keepinit", "f16")),
        ("f11_distilbert_keepinit_op13", lambda: Inputs(DistilBert(VOCAB), ids_mask), 1103,
         family_inputs("distilbert", VOCAB, ids_mask, 113), ids_mask, hidden, 13, ("keepinit",)),
        ("f11_gpt2_nofold_extfiles_op17", lambda: JudgeGpt2(CFG), 1104, f10_ids(VOCAB, 114), ["input_ids"],
         ["logits"], 17, ("nofold", "extfiles")),
        ("f11_gpt2_nofold_keepinit_f16_op14", lambda: JudgeGpt2(CFG), 1105, f10_ids(VOCAB, 115), ["input_ids"],
         ["logits"], 14, ("nofold", "keepinit", "f16")),
        ("f11_llama_extdata_op14", lambda: Inputs(Llama(VOCAB), ids_mask), 1106,
         family_inputs("llama", VOCAB, ids_mask, 116), ids_mask, ["logits"], 14, ("extdata",)),
        ("f11_llama_nofold_f16_op17", lambda: Inputs(Llama(VOCAB), ids_mask), 1107,
         family_inputs("llama", VOCAB, ids_mask, 117), ids_mask, ["logits"], 17, ("nofold", "f16")),
        ("f11_t5_nofold_keepinit_op14", lambda: Inputs(T5EncDec(VOCAB), t5), 1108,
         family_inputs("t5", VOCAB, t5, 118), t5, ["logits"], 14, ("nofold", "keepinit")),
        ("f11_t5enc_nofold_f16_extdata_op17", lambda: Inputs(T5Enc(VOCAB), ids_mask), 1109,
         family_inputs("t5", VOCAB, ids_mask, 119), ids_mask, hidden, 17, ("nofold", "f16", "extdata")),
        ("f11_vit_keepinit_op13", lambda: JudgeVit(CFG), 1110, f10_image(CFG, 120), ["pixel_values"],
         ["logits"], 13, ("keepinit",)),
        ("f11_vit_nofold_f16_extdata_op17", lambda: JudgeVit(CFG), 1111, f10_image(CFG, 121), ["pixel_values"],
         ["logits"], 17, ("nofold", "f16", "extdata")),
        ("f11_minilm_nofold_f16_op14", lambda: JudgeMiniLM(CFG), 1112, f10_text(VOCAB, 122, True), bert,
         ["sentence_embedding"], 14, ("nofold", "f16")),
        ("f11_bert_axeslist_op14", lambda: Inputs(Bert(VOCAB), bert), 1113,
         family_inputs("bert", VOCAB, bert, 123), bert, hidden + ["pooler_output"], 14, ("axeslist",)),
        ("f11_gpt2_axeslist_nofold_op17", lambda: JudgeGpt2(CFG), 1114, f10_ids(VOCAB, 124), ["input_ids"],
         ["logits"], 17, ("axeslist", "nofold")),
        ("f11_distilbert_nonames_static_op17", lambda: Inputs(DistilBert(VOCAB), ids_mask), 1115,
         family_inputs("distilbert", VOCAB, ids_mask, 125), ids_mask, hidden, 17, ("nonames",)),
        ("z11_led_localonly_encdec_op14", LedLocal, 1116, z10_text(126, dec=True), t5, ["logits"], 14, ()),
    ]
    for name, make, seed, inputs, ins, outs, opset, forms in cases:
        if "nonames" in forms:
            dyn = None
        elif "vit" in name:
            dyn = {"pixel_values": {0: "batch"}, "logits": {0: "batch"}}
        else:
            dyn = text_axes(ins, outs, dec="decoder_input_ids" in ins)
            if outs == ["logits"] and "decoder_input_ids" in ins:
                dyn["logits"] = {0: "batch", 1: "decoder_sequence"}
        torch.manual_seed(0)
        export11(outdir, name, make(), seed, inputs, ins, outs, opset, forms, dyn)


def main():
    args = sys.argv[1:]
    outdir = args[0] if args else os.path.dirname(os.path.abspath(__file__))
    PREFIXES.extend(args[1:])
    zoo11(outdir)


if __name__ == "__main__":
    main()
