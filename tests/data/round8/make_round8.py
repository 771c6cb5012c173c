#!/usr/bin/env python3
"""make_round8.py -- the inputs of tests/cli/cli_round8.sh, written once
(not at build or test time):

    MHA=build/bin/mha MHA_PEER_HOME=... /usr/bin/python3 make_round8.py

Needs onnx and numpy (Debian's python3-onnx), the `mha` command (for the
float32 layer it converts) and node with onnxruntime-node (the float16
case's expected output, through ../models/ort_oracle.js)."""
import copy
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto as TP
from onnx import helper as h
from onnx import numpy_helper as nh

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "models")
sys.path.insert(0, MODELS)


def fn_bomb(depth, path):
    """depth model-local functions, each calling the one below twice: one
    call of the top inlines to 2^(depth-1) Relu nodes."""
    fns = []
    for i in range(depth):
        if i == 0:
            nodes = [h.make_node("Relu", ["x"], ["y"])]
        else:
            nodes = [h.make_node("f%d" % (i - 1), ["x"], ["t"], domain="local"),
                     h.make_node("f%d" % (i - 1), ["t"], ["y"], domain="local")]
        fns.append(h.make_function("local", "f%d" % i, ["x"], ["y"], nodes,
                                   [h.make_opsetid("", 17)]))
    g = h.make_graph([h.make_node("f%d" % (depth - 1), ["X"], ["Y"], domain="local")], "bomb",
                     [h.make_tensor_value_info("X", TP.FLOAT, [1, 4])],
                     [h.make_tensor_value_info("Y", TP.FLOAT, [1, 4])])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("local", 1)],
                     functions=fns, ir_version=8)
    onnx.save(m, path)


def to_half(m):
    """Every float32 initializer, Constant, Cast target and graph input /
    output float16: a whole float16 model as converters write one."""
    g = m.graph
    for i, t in enumerate(g.initializer):
        if t.data_type == TP.FLOAT:
            g.initializer[i].CopyFrom(nh.from_array(nh.to_array(t).astype(np.float16), t.name))
    for n in g.node:
        for a in n.attribute:
            if n.op_type == "Constant" and a.name == "value" and a.t.data_type == TP.FLOAT:
                a.t.CopyFrom(nh.from_array(nh.to_array(a.t).astype(np.float16), a.t.name))
            if n.op_type == "Cast" and a.name == "to" and a.i == TP.FLOAT:
                a.i = TP.FLOAT16
    for v in list(g.input) + list(g.output):
        if v.type.tensor_type.elem_type == TP.FLOAT:
            v.type.tensor_type.elem_type = TP.FLOAT16
    return m


def half_case():
    import make_deploy7 as d7  # ort_run: ONNX Runtime through ort_oracle.js
    mha = os.environ.get("MHA", "mha")
    with tempfile.TemporaryDirectory() as d:
        f32 = os.path.join(d, "layer.onnx")
        subprocess.run([mha, "gen", "-d", "32", "-H", "4", "--form", "decomposed", "-o", f32,
                        "--data", os.path.join(d, "x.npy"), "--batch", "2", "--seq", "5"],
                       check=True)
        m = to_half(onnx.load(f32))
        x = np.load(os.path.join(d, "x.npy")).astype(np.float16)
    onnx.checker.check_model(m)
    case = os.path.join(HERE, "half_layer")
    os.makedirs(os.path.join(case, "test_data_set_0"), exist_ok=True)
    onnx.save(m, os.path.join(case, "model.onnx"))
    y = d7.ort_run(m, [x])[0]
    assert y.dtype == np.float16
    for name, a in (("input_0.pb", x), ("output_0.pb", y)):
        t = nh.from_array(a, m.graph.input[0].name if name.startswith("in") else m.graph.output[0].name)
        with open(os.path.join(case, "test_data_set_0", name), "wb") as f:
            f.write(t.SerializeToString())
    np.save(os.path.join(HERE, "half_x.npy"), x)
    np.save(os.path.join(HERE, "half_x_f32.npy"), x.astype(np.float32))  # the same values
    np.save(os.path.join(HERE, "half_x_i64.npy"), np.zeros(x.shape, np.int64))
    xn = x.copy()
    xn[1, 2, 3] = np.nan  # row 1 gets a NaN
    np.save(os.path.join(HERE, "half_x_nan.npy"), xn)


def mmi_zero_point_rows():
    """d7_bert_ortdyn_int8_perchannel_op14 with the first MatMulInteger's
    b_zero_point [N] rewritten [N, 1] (ONNX: a scalar or one per column)."""
    m = onnx.load(os.path.join(MODELS, "d7_bert_ortdyn_int8_perchannel_op14", "model.onnx"))
    mi = [n for n in m.graph.node if n.op_type == "MatMulInteger"][0]
    for i, t in enumerate(m.graph.initializer):
        if t.name == mi.input[3]:
            z = nh.to_array(t)
            m.graph.initializer[i].CopyFrom(nh.from_array(z.reshape(-1, 1).copy(), t.name))
    onnx.save(m, os.path.join(HERE, "mmi_bzp_column.onnx"))


def conv_layer(name, **attrs):
    """`mha gen --model encoder -d 16 -H 2 -L 1` with a Conv over its output (Transpose to
    [B, 16, S], W [16, 16, 3], pads 1, 1, Transpose back); attrs override
    the Conv's."""
    mha = os.environ.get("MHA", "mha")
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "l.onnx")
        subprocess.run([mha, "gen", "--model", "encoder", "-d", "16", "-H", "2", "-L", "1",
                        "--vocab", "16", "--max-pos", "8", "-o", p], check=True)
        m = onnx.load(p)
    g = m.graph
    y = g.output[0].name
    for n in g.node:
        n.output[:] = [o + "_attn" if o == y else o for o in n.output]
    w = np.random.default_rng(8).uniform(-0.2, 0.2, (16, 16, 3)).astype(np.float32)
    g.initializer.append(nh.from_array(w, "conv_w"))
    a = {"pads": [1, 1], "strides": [1], "dilations": [1], "kernel_shape": [3]}
    a.update(attrs)
    g.node.extend([
        h.make_node("Transpose", [y + "_attn"], ["to_ch"], name="to_ch", perm=[0, 2, 1]),
        h.make_node("Conv", ["to_ch", "conv_w"], ["conv_y"], name="conv", **a),
        h.make_node("Transpose", ["conv_y"], [y], name="to_seq", perm=[0, 2, 1])])
    onnx.save(m, os.path.join(HERE, name))


def fn_lists():
    """`mha gen -d 16 -H 2 --form decomposed` with its Softmax a call of a
    model-local function: defined twice, in the default domain, referring
    to an attribute it does not declare."""
    mha = os.environ.get("MHA", "mha")
    with tempfile.TemporaryDirectory() as d:
        p = os.path.join(d, "l.onnx")
        subprocess.run([mha, "gen", "-d", "16", "-H", "2", "--form", "decomposed", "-o", p],
                       check=True)
        base = onnx.load(p)
    op = [h.make_opsetid("", 17)]

    def softmax_fn(dom="local", name="Sm", axis=-1):
        return h.make_function(dom, name, ["x"], ["y"],
                               [h.make_node("Softmax", ["x"], ["y"], axis=axis)], op)

    def with_fn(fns, dom="local", name="Sm", attrs=None):
        m = onnx.ModelProto()
        m.CopyFrom(base)
        for n in m.graph.node:
            if n.op_type == "Softmax":
                n.op_type, n.domain = name, dom
                del n.attribute[:]
                for k, v in (attrs or {}).items():
                    n.attribute.append(h.make_attribute(k, v))
        m.functions.extend(fns)
        if dom not in [o.domain for o in m.opset_import]:
            m.opset_import.append(h.make_opsetid(dom, 1))
        m.ir_version = 8
        return m

    onnx.save(with_fn([softmax_fn(), softmax_fn(axis=0)]), os.path.join(HERE, "fn_twice.onnx"))
    onnx.save(with_fn([softmax_fn("", "Softmax", 0)], dom="", name="Softmax"),
              os.path.join(HERE, "fn_default_domain.onnx"))
    f = h.make_function("local", "Sm", ["x"], ["y"], [h.make_node("Softmax", ["x"], ["y"])], op,
                        attributes=["ax"])
    ref = onnx.AttributeProto()
    ref.name, ref.ref_attr_name, ref.type = "axis", "nosuch", onnx.AttributeProto.INT
    f.node[0].attribute.append(ref)
    onnx.save(with_fn([f], attrs={"ax": -1}), os.path.join(HERE, "fn_undeclared_ref.onnx"))


def main():
    fn_bomb(20, os.path.join(HERE, "fn_bomb20.onnx"))
    mmi_zero_point_rows()
    half_case()
    conv_layer("conv_kernel_shape.onnx", kernel_shape=[5])
    conv_layer("conv_dilation_2e62.onnx", dilations=[1 << 62])
    conv_layer("conv_ok.onnx")
    fn_lists()


if __name__ == "__main__":
    main()
