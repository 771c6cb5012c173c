"""Graphs for tests/unit/test_plan.c that no exporter writes but a plan must
take: gemm_chain_1000.onnx, a thousand MatMuls by one constant 4 x 4 weight
(a cyclic shift, so values neither grow nor vanish), two self-attentions
of their result with itself (a whole model, not one layer) and a LayerNorm after it -- more GEMM steps than any model of the corpus, so a step's kind and
index never depend on how many steps of another kind come before it.
Run with Debian's python3 (numpy, onnx); the output is the same bytes on
every run.

merged_if.onnx: the shape of optimum's decoder_model_merged -- an If on the
bool input use_cache_branch choosing the first step's graph or the cached
step's (here a Relu or a Neg of the same input): refused at load, naming
the If and what to run instead (tests/cli/round3.sh)."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

N_GEMMS = 1000


def gemm_chain():
    w = np.roll(np.eye(4, dtype=np.float32), 1, axis=1)
    inits = [
        numpy_helper.from_array(w, "W"),
        numpy_helper.from_array(np.ones(4, np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(4, np.float32), "beta"),
    ]
    nodes, x = [], "X"
    for i in range(N_GEMMS):
        y = "h%d" % i
        nodes.append(helper.make_node("MatMul", [x, "W"], [y], name="mm%d" % i))
        x = y
    for a in range(2):
        nodes += [
            helper.make_node("Transpose", [x], ["xt%d" % a], perm=[0, 2, 1]),
            helper.make_node("MatMul", [x, "xt%d" % a], ["scores%d" % a]),
            helper.make_node("Softmax", ["scores%d" % a], ["p%d" % a], axis=-1),
            helper.make_node("MatMul", ["p%d" % a, x], ["att%d" % a]),
        ]
        x = "att%d" % a
    nodes.append(
        helper.make_node("LayerNormalization", [x, "gamma", "beta"], ["Y"], axis=-1, epsilon=1e-5)
    )
    g = helper.make_graph(
        nodes,
        "gemm_chain_1000",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["b", "n", 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["b", "n", 4])],
        inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="mha-tests")
    m.ir_version = 8
    onnx.checker.check_model(m)
    onnx.save(m, "gemm_chain_1000.onnx")


def merged_if():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    flag = helper.make_tensor_value_info("use_cache_branch", TensorProto.BOOL, [1])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])

    def branch(op, out):
        v = helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", 4])
        return helper.make_graph([helper.make_node(op, ["x"], [out])], op.lower(), [], [v])

    node = helper.make_node("If", ["use_cache_branch"], ["logits"], name="optimum::if",
                            then_branch=branch("Neg", "cached"), else_branch=branch("Relu", "first"))
    g = helper.make_graph([node], "decoder_model_merged", [x, flag], [y])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)], producer_name="plan-tests")
    onnx.checker.check_model(m)
    onnx.save(m, "merged_if.onnx")


if __name__ == "__main__":
    gemm_chain()
    merged_if()
