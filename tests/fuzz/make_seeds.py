#!/usr/bin/python3
"""make_seeds.py -- writes the committed seed inputs of tests/fuzz/seeds.

A development-time helper (needs numpy; never run by the build or the
tests; its output is committed):

    /usr/bin/python3 tests/fuzz/make_seeds.py

seeds/npy: small .npy files from numpy itself (every supported dtype,
versions 1.0 / 2.0 / 3.0, empty and scalar shapes) plus a few numpy can
write but the engine refuses (Fortran order, big-endian, complex).
seeds/external_data: inputs of the external-data target, one per
interesting location (format in entry_external_data.c).
seeds/onnx_model: small self-attention layers with a Softmax core and the
mask forms tests/data lacks (float additive, bool attend, bool ignore, key
padding), for the recogniser's mask placement (needs onnx); and tiny
whole models (BERT with Gather embeddings and LayerNorm, GPT-2 with a causal
mask, ViT with a Conv patch embedding; two attention layers each, d 4) so
that the fuzzer's mutations of whole graphs start from a few KB and reach
the whole-model plan many times a second (needs torch: the export is
tests/data/models/make_models.py's, at a tiny size).
"""
import io
import os

import numpy as np
from numpy.lib import format as npf

HERE = os.path.dirname(os.path.abspath(__file__))


def save(name, arr, version=None):
    buf = io.BytesIO()
    if version is None:
        np.save(buf, arr, allow_pickle=False)
    else:
        npf.write_array(buf, arr, version=version, allow_pickle=False)
    with open(os.path.join(HERE, "seeds", "npy", name), "wb") as f:
        f.write(buf.getvalue())


def npy_seeds():
    os.makedirs(os.path.join(HERE, "seeds", "npy"), exist_ok=True)
    rng = np.random.default_rng(8)
    save("f4_2x3.npy", rng.uniform(-1, 1, (2, 3)).astype("<f4"))
    save("f4_1x4x8.npy", rng.uniform(-1, 1, (1, 4, 8)).astype("<f4"))
    save("f8_3.npy", rng.uniform(-1, 1, 3).astype("<f8"))
    save("f2_2x2.npy", rng.uniform(-1, 1, (2, 2)).astype("<f2"))
    save("b1_2x5.npy", rng.uniform(size=(2, 5)) > 0.5)
    save("i8_4.npy", np.arange(4, dtype="<i8"))
    save("i4_2x2.npy", np.arange(4, dtype="<i4").reshape(2, 2))
    save("i1_3.npy", np.array([-1, 0, 1], dtype="i1"))
    save("u1_3.npy", np.array([0, 7, 255], dtype="u1"))
    save("f4_scalar.npy", np.array(1.5, dtype="<f4"))
    save("f4_empty_0x3.npy", np.zeros((0, 3), dtype="<f4"))
    save("f4_2x0x4.npy", np.zeros((2, 0, 4), dtype="<f4"))
    save("f4_v2.npy", rng.uniform(-1, 1, (2, 2)).astype("<f4"), version=(2, 0))
    save("f4_v3.npy", rng.uniform(-1, 1, (2, 2)).astype("<f4"), version=(3, 0))
    save("f4_rank8.npy", np.zeros((1, 2, 1, 2, 1, 2, 1, 2), dtype="<f4"))
    # refused by the engine
    save("f4_fortran.npy", np.asfortranarray(rng.uniform(-1, 1, (2, 3)).astype("<f4")))
    save("f4_big_endian.npy", rng.uniform(-1, 1, 3).astype(">f4"))
    save("c8_2.npy", np.array([1 + 2j, 3 - 1j], dtype="<c8"))
    save("f4_rank9.npy", np.zeros((1,) * 9, dtype="<f4"))
    # a shard of a split run (mha run --shard): its rows and run noted after
    # the dict, as npy.c writes them (numpy reads the comment as padding)
    shard = rng.uniform(-1, 1, (2, 3)).astype("<f4")
    text = ("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }  # mha-shard rows 3:5 "
            "of 5; run shard 1/2; model 0123456789abcdef; precision float32; data "
            "fedcba9876543210; lengths none; output 0")
    text += " " * (-(10 + len(text) + 1) % 64) + "\n"
    with open(os.path.join(HERE, "seeds", "npy", "f4_shard_run.npy"), "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode() +
                shard.tobytes())


def ext_seeds():
    d = os.path.join(HERE, "seeds", "external_data")
    os.makedirs(d, exist_ok=True)
    # flags byte: bits 0-1 dtype (0 float32, 1 uint8, 2 int64, 3 float16),
    # bit 2 data_location DEFAULT, bit 3 raw_data too, bit 4 2-D shape
    seeds = {
        "inside_f32": (0, "w.bin\n0\n16\n4"),
        "inside_offset_u8": (1, "w.bin\n100\n8\n8"),
        "inside_whole_i64": (2, "w.bin\n-\n256"),
        "inside_sub_f16": (3, "sub/x.bin\n4\n8\n4"),
        "inside_deeper": (1, "sub/deeper/y.bin\n0\n40\n40"),
        "inside_dot": (1, "./w.bin\n0\n4\n4"),
        "inside_link": (1, "link_in\n0\n4\n4"),
        "inside_link_up": (1, "sub/link_up\n0\n4\n4"),
        "empty_file": (1, "empty.bin\n0\n0\n0"),
        "past_end": (0, "w.bin\n250\n16\n4"),
        "offset_overflow": (1, "w.bin\n18446744073709551615\n1\n1"),
        "length_mismatch": (0, "w.bin\n0\n15\n4"),
        "negative_offset": (1, "w.bin\n-1\n1\n1"),
        "escape_dotdot": (1, "../outside/secret.bin\n0\n16\n16"),
        "escape_sub_dotdot": (1, "sub/../../sibling.bin\n0\n16\n16"),
        "escape_link": (1, "link_out\n0\n16\n16"),
        "escape_link_abs": (1, "link_abs\n0\n16\n16"),
        "escape_dir_link": (1, "dir_out/secret.bin\n0\n16\n16"),
        "escape_proc": (1, "proc_root/etc/passwd\n0\n4\n4"),
        "absolute": (1, "/etc/passwd\n0\n4\n4"),
        "loop": (1, "loop\n0\n4\n4"),
        "fifo": (1, "fifo\n0\n4\n4"),
        "folder": (1, "d.bin\n0\n4\n4"),
        "missing": (1, "nothere.bin\n0\n4\n4"),
        "no_location": (1, "-\n0\n4\n4"),
        "not_external": (5, "w.bin\n0\n4\n4"),
        "raw_and_external": (9, "w.bin\n0\n8\n8"),
        "two_d": (17, "w.bin\n0\n8\n8"),
    }
    for name, (flags, text) in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(bytes([flags]) + text.encode())


def softmax_layer(name, mask):
    """x [2, 5, 8] -> 2 heads of 4 -> y [2, 5, 8], a Softmax core with the
    given mask form: None, "float" [5, 5] additive, "bool_attend" [2, 1, 5, 5]
    (True = attend), "bool_ignore" [5, 5] (True = masked, torch's
    convention), "kpm" [2, 5] (True = padding)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    B, S, D, H = 2, 5, 8, 2
    dh = D // H
    rng = np.random.default_rng(len(name))
    inits = []

    def const(n, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), n))
        return n

    for p in "qkvo":
        const("W" + p, rng.uniform(-0.5, 0.5, (D, D)).astype(np.float32))
        const("b" + p, rng.uniform(-0.1, 0.1, D).astype(np.float32))
    const("heads", np.array([B, S, H, dh], dtype=np.int64))
    const("flat", np.array([B, S, D], dtype=np.int64))
    const("scale", np.array(1.0 / np.sqrt(dh), dtype=np.float32))
    const("zero", np.array(0.0, dtype=np.float32))
    const("neginf", np.array(-np.inf, dtype=np.float32))
    const("axes12", np.array([1, 2], dtype=np.int64))
    nodes = []

    def node(op, ins, out, **attrs):
        nodes.append(helper.make_node(op, ins, [out], **attrs))
        return out

    def proj(p):
        mm = node("MatMul", ["x", "W" + p], p + "_mm")
        return node("Add", [mm, "b" + p], p + "_lin")

    q = node("Transpose", [node("Reshape", [proj("q"), "heads"], "q_h")], "q_t", perm=[0, 2, 1, 3])
    k = node("Transpose", [node("Reshape", [proj("k"), "heads"], "k_h")], "k_t", perm=[0, 2, 3, 1])
    v = node("Transpose", [node("Reshape", [proj("v"), "heads"], "v_h")], "v_t", perm=[0, 2, 1, 3])
    scores = node("Mul", [node("MatMul", [q, k], "qk"), "scale"], "scores")
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [B, S, D])]
    if mask == "float":
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [S, S]))
        scores = node("Add", [scores, "mask"], "masked")
    elif mask == "bool_attend":
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.BOOL, [B, 1, S, S]))
        bias = node("Where", ["mask", "zero", "neginf"], "bias")
        scores = node("Add", [scores, bias], "masked")
    elif mask == "bool_ignore":
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.BOOL, [S, S]))
        bias = node("Where", ["mask", "neginf", "zero"], "bias")
        scores = node("Add", [scores, bias], "masked")
    elif mask == "kpm":
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.BOOL, [B, S]))
        wide = node("Unsqueeze", ["mask", "axes12"], "mask4")
        bias = node("Where", [wide, "neginf", "zero"], "bias")
        scores = node("Add", [scores, bias], "masked")
    probs = node("Softmax", [scores], "probs", axis=-1)
    ctx = node("Transpose", [node("MatMul", [probs, v], "ctx_h")], "ctx_t", perm=[0, 2, 1, 3])
    flat = node("Reshape", [ctx, "flat"], "ctx")
    node("Add", [node("MatMul", [flat, "Wo"], "o_mm"), "bo"], "y")
    graph = helper.make_graph(nodes, name, inputs,
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [B, S, D])],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    d = os.path.join(HERE, "seeds", "onnx_model")
    os.makedirs(d, exist_ok=True)
    onnx.save(model, os.path.join(d, name + ".onnx"))


def compact(path):
    """Drops node names and doc strings and renames the inner values to
    short names: torch's names ("/layers.0/attn/Reshape_output_0") are most
    of a tiny model's bytes, and the engine reads none of them."""
    import onnx

    m = onnx.load(path)
    g = m.graph
    keep = {v.name for v in list(g.input) + list(g.output)}
    short = {}

    def rename(n):
        if not n or n in keep:
            return n
        return short.setdefault(n, "t%x" % len(short))

    for t in g.initializer:
        t.name = rename(t.name)
    for n in g.node:
        n.name = ""
        n.doc_string = ""
        n.input[:] = [rename(x) for x in n.input]
        n.output[:] = [rename(x) for x in n.output]
    m.producer_name, m.producer_version, m.doc_string = "", "", ""
    onnx.checker.check_model(m)
    onnx.save(m, path)


def whole_model_seeds():
    """BERT, GPT-2 and ViT of make_models.py with d 4, 2 heads, FFN 8, 2
    layers, 16 tokens, 8 positions: every stage of the whole-model plan
    (embeddings, LayerNorm, attention cores, MLPs, the image Conv) in a
    few KB."""
    import sys

    import torch

    sys.path.insert(0, os.path.join(HERE, "..", "data", "models"))
    import make_models as mm

    mm.D, mm.HEADS, mm.FFN, mm.LAYERS, mm.VOCAB, mm.MAXPOS = 4, 2, 8, 2, 16, 8
    d = os.path.join(HERE, "seeds", "onnx_model")
    g = torch.Generator().manual_seed(5)
    bs = {0: "batch", 1: "seq"}

    def export(name, model, inputs, in_names, out_names, dyn, opset):
        mm.randomize(model, 5)
        model.eval()
        path = os.path.join(d, name + ".onnx")
        torch.onnx.export(model, tuple(inputs), path, input_names=in_names,
                          output_names=out_names, dynamic_axes=dyn, opset_version=opset)
        compact(path)

    ids = torch.randint(0, mm.VOCAB, (2, 5), generator=g)
    ones = torch.ones(2, 5, dtype=torch.long)
    export("whole_bert_l2_d4", mm.Bert(), [ids, ones, ones * 0],
           ["input_ids", "attention_mask", "token_type_ids"], ["hidden", "pooled"],
           {"input_ids": bs, "attention_mask": bs, "token_type_ids": bs, "hidden": bs,
            "pooled": {0: "batch"}}, 17)
    export("whole_gpt2_l2_d4", mm.Gpt2(), [ids], ["input_ids"], ["logits"],
           {"input_ids": bs, "logits": bs}, 14)
    export("whole_vit_l2_d4_p4", mm.Vit(image=8, patch=4, chans=1),
           [torch.randn(2, 1, 8, 8, generator=g)], ["pixel_values"], ["cls"],
           {"pixel_values": {0: "batch"}, "cls": {0: "batch"}}, 14)


def model_seeds():
    softmax_layer("softmax_nomask", None)
    softmax_layer("softmax_float_mask", "float")
    softmax_layer("softmax_bool_attend_mask", "bool_attend")
    softmax_layer("softmax_bool_ignore_mask", "bool_ignore")
    softmax_layer("softmax_key_padding_mask", "kpm")
    whole_model_seeds()


if __name__ == "__main__":
    npy_seeds()
    ext_seeds()
    model_seeds()
