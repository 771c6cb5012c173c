#!/usr/bin/env python3
"""make_round9.py -- the inputs of tests/cli/cli_round9.sh, written once
(not at build or test time):

    /usr/bin/python3 make_round9.py

Needs onnx and numpy (Debian's python3-onnx). Every model is small (a few
KB): the cases are about one node's attributes, not about size."""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper as nh

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "models"))


def save(m, name):
    # (onnx 1.12's checker predates opset 23: not checked here)
    onnx.save(m, os.path.join(HERE, name))
    print(name, os.path.getsize(os.path.join(HERE, name)), "bytes")


def set_attr(m, op, name, value):
    """Sets attribute `name` of every `op` node to value."""
    for n in m.graph.node:
        if n.op_type != op:
            continue
        for a in list(n.attribute):
            if a.name == name:
                n.attribute.remove(a)
        n.attribute.append(h.make_attribute(name, value))
    return m


def rope_models():
    """make_round4's opset-23 LLaMA (RMSNormalization, RotaryEmbedding on
    Q and K, Attention-23, GQA, causal) at d 16, one layer, 16 tokens of
    vocabulary and positions: with RotaryEmbedding's interleaved 1 (loads),
    2 (ONNX's reference reads it as true, ONNX Runtime as false) and
    rotary_embedding_dim -2 (ONNX Runtime refuses it)."""
    import make_round4 as r4
    r4.D, r4.FF, r4.L, r4.V, r4.MAXPOS = 16, 16, 1, 16, 16
    # heads, kv heads, causal, rotary, interleaved, mask, position_ids
    base = r4.onnx23(91, 2, 1, 1, 1, 1, 0, 0)
    save(base, "rope_ok.onnx")
    m = onnx.ModelProto()
    m.CopyFrom(base)
    save(set_attr(m, "RotaryEmbedding", "interleaved", 2), "rope_interleaved2.onnx")
    m = onnx.ModelProto()
    m.CopyFrom(base)
    save(set_attr(m, "RotaryEmbedding", "rotary_embedding_dim", -2), "rope_dim_negative.onnx")


def causal_flag_models():
    """is_causal 2 on rope_ok.onnx's Attention-23 (ONNX Runtime reads it as
    0, the reference as 1: outputs 2.4 apart), and a com.microsoft
    Attention layer (packed QKV weight, d 8, 2 heads) with unidirectional
    1 (loads) and 2 (outputs 0.087 apart on a BERT)."""
    base = onnx.load(os.path.join(HERE, "rope_ok.onnx"))
    save(set_attr(base, "Attention", "is_causal", 2), "attention_causal2.onnx")
    r = np.random.RandomState(19)
    D = 8
    for flag, name in ((1, "ms_attention_ok.onnx"), (2, "ms_attention_unidirectional2.onnx")):
        inits = [nh.from_array((r.randn(D, 3 * D) * 0.3).astype(np.float32), "w"),
                 nh.from_array((r.randn(3 * D) * 0.1).astype(np.float32), "b")]
        n = h.make_node("Attention", ["x", "w", "b"], ["y"], name="attn", domain="com.microsoft",
                        num_heads=2, unidirectional=flag)
        g = h.make_graph([n], "ms_attention",
                         [h.make_tensor_value_info("x", TP.FLOAT, ["batch", "seq", D])],
                         [h.make_tensor_value_info("y", TP.FLOAT, ["batch", "seq", D])], inits)
        m = h.make_model(g, opset_imports=[h.make_opsetid("", 14),
                                           h.make_opsetid("com.microsoft", 1)],
                         producer_name="make_round9")
        m.ir_version = 8
        save(m, name)


def audio_model(strides=5, kernel_shape=None):
    """A HuBERT-shaped front end on symbolic samples: input_values [batch,
    samples] -> Unsqueeze -> Conv (W [8, 1, 10], stride 5) -> Transpose ->
    two Attention-23 self-attention layers (2 heads of 4) -> output [batch,
    frames, 8]. The frames follow the samples by the conv-length rule
    (plan/convlen.c)."""
    r = np.random.RandomState(9)
    D = 8

    def W(*shape):
        return nh.from_array((r.randn(*shape) * 0.3).astype(np.float32))

    inits = []
    for name, shape in (("conv_w", (D, 1, 10)), ("wq", (D, D)), ("wk", (D, D)), ("wv", (D, D)),
                        ("wo", (D, D)), ("wq1", (D, D)), ("wk1", (D, D)), ("wv1", (D, D)),
                        ("wo1", (D, D))):
        t = W(*shape)
        t.name = name
        inits.append(t)
    inits.append(nh.from_array(np.array([1], np.int64), "ax1"))
    conv_attrs = {"strides": [strides], "pads": [0, 0], "dilations": [1]}
    if kernel_shape is not None:
        conv_attrs["kernel_shape"] = [kernel_shape]
    nodes = [
        h.make_node("Unsqueeze", ["input_values", "ax1"], ["u"], name="unsq"),
        h.make_node("Conv", ["u", "conv_w"], ["c"], name="/convs.0/Conv", **conv_attrs),
        h.make_node("Transpose", ["c"], ["x"], name="tr", perm=[0, 2, 1]),
        h.make_node("MatMul", ["x", "wq"], ["q"], name="q"),
        h.make_node("MatMul", ["x", "wk"], ["k"], name="k"),
        h.make_node("MatMul", ["x", "wv"], ["v"], name="v"),
        h.make_node("Attention", ["q", "k", "v"], ["a"], name="attn", q_num_heads=2,
                    kv_num_heads=2),
        h.make_node("MatMul", ["a", "wo"], ["x1"], name="o"),
        h.make_node("MatMul", ["x1", "wq1"], ["q1"], name="q1"),
        h.make_node("MatMul", ["x1", "wk1"], ["k1"], name="k1"),
        h.make_node("MatMul", ["x1", "wv1"], ["v1"], name="v1"),
        h.make_node("Attention", ["q1", "k1", "v1"], ["a1"], name="attn1", q_num_heads=2,
                    kv_num_heads=2),
        h.make_node("MatMul", ["a1", "wo1"], ["y"], name="o1"),
    ]
    g = h.make_graph(nodes, "audio",
                     [h.make_tensor_value_info("input_values", TP.FLOAT, ["batch", "samples"])],
                     [h.make_tensor_value_info("y", TP.FLOAT, ["batch", "frames", D])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 23)], producer_name="make_round9")
    m.ir_version = 10
    return m


def audio_case(m):
    """audio_case/: the good front end as an ONNX test case, ONNX Runtime's
    outputs at 29 samples (4 frames, a length the load's probes did not
    fit) and 1000 (199 frames); needs node with onnxruntime-node."""
    import make_deploy7 as d7  # ort_run: ONNX Runtime through ort_oracle.js
    case = os.path.join(HERE, "audio_case")
    os.makedirs(case, exist_ok=True)
    onnx.save(m, os.path.join(case, "model.onnx"))
    r = np.random.RandomState(29)
    for k, T in enumerate((29, 1000)):
        x = r.randn(1, T).astype(np.float32)
        y = d7.ort_run(m, [x])[0]
        d = os.path.join(case, "test_data_set_%d" % k)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "input_0.pb"), "wb") as f:
            f.write(nh.from_array(x, "input_values").SerializeToString())
        with open(os.path.join(d, "output_0.pb"), "wb") as f:
            f.write(nh.from_array(y, "y").SerializeToString())
        print("audio_case", T, "samples ->", y.shape)


def conv_models():
    save(audio_model(), "audio_ok.onnx")
    audio_case(audio_model())
    save(audio_model(strides=0), "audio_conv_strides0.onnx")
    save(audio_model(kernel_shape=7), "audio_conv_kernel_shape7.onnx")


def main():
    rope_models()
    causal_flag_models()
    conv_models()


if __name__ == "__main__":
    main()
