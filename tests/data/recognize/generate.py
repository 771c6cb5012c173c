#!/usr/bin/python3
"""Small ONNX graphs for the recogniser's tests (tests/unit/test_recognize.c).
Regenerate from the project root with Debian's python3-onnx:

    /usr/bin/python3 tests/data/recognize/generate.py

Graphs that must be REFUSED (MHA_ERR_MODEL_UNSUPPORTED naming op and node):
  no_attention        MatMul + Add only
  two_softmax         a decomposed layer with a second Softmax on its output
  unknown_op_on_path  Sin between the Q projection and the scores
  softmax_axis        Softmax over the query axis
  weight_input        the Q projection weight is a graph input
  where_fill_zero     masked_fill of the scores with 0 (does not hide the keys)
  dyn_bias            a bias of the key position computed from the sequence length (j * j),
                      dynamic axes: neither ALiBi (linear in j) nor a function of j - i
  rotary_q_only       a rotate-half rotary embedding on Q alone (K is not turned)
  kv_cache_concat     the new keys appended to a past-key input, and no cache of values
  kv_cache_after      past keys and values appended after the new ones (a cache holds the
                      earlier positions first)
  residual_block      the layer's input added to its output (the block around the layer)
Graphs that must be RECOGNISED and verified (same layer, unusual plumbing):
  qknorm_head_ln_bias each head of q and k LayerNorm'ed with a bias (Persimmon)
  where_mask          the causal mask applied with Where instead of Add (GPT-2)
  const_bias_mask     a constant per-head bias on the scores, static sizes (T5)
  ext_mask_i64        int64 [B, S] mask as (1 - m) * finfo.min added (BERT)
  ext_mask_10000      float [B, S] mask as (1 - m) * -10000 added (older BERT)
  fill_mask_eq0       masked_fill(m == 0, finfo.min), m int64 [B, S] (DistilBERT)
  bool_ignore_mask    bool [S, S] attention mask, True = hidden (nn.MultiheadAttention)
  window_mask         causal finfo.min mask with a sliding window of 3 keys (Mistral)
  two_masks           a bool [S, S] attention mask and a bool [B, S] key padding mask,
                      True = hidden in both (nn.MultiheadAttention with both)
  bh_mask             a bool [B * H, S, S] attention mask, True = hidden (PyTorch's 3-D form)
  rel_bias            a per-head bias of the clipped distance j - i gathered from a
                      table, dynamic axes (T5's relative position bias)
  softmax_casts       Casts to float32 around the Softmax, the scores reshaped on the
                      way ([B, H, S, S] -> [B*H, S, S] -> back) (LLaMA, CLIP)
  interleaved_heads   head h uses projection columns d*H + h (not h*dh + d)
  kpm_attend          bool key padding [B, S] with True = attend (Where), scale on K
  gqa_expand          4 query heads over 2 kv heads, repeated with Expand
  gqa_tile            the same repeated with Tile: q head h uses kv head h % 2
  scale_after_mask    (Q.K^T + causal mask) * scale, no biases
  alibi_relative      ALiBi as the paper writes it: slope_h * (j - i) from the runtime
                      positions added to the scaled scores, causal
  alibi_counted       BLOOM's ALiBi: slope_h * (cumsum(m) - 1) * m from an int64 padding
                      mask m [B, S], then masked_fill(m == 0, finfo.min)
  attention_past      an ONNX Attention node (opset 23) between projections with its own
                      past_key / past_value inputs and present outputs (GQA, causal)
  ms_mha_past         com.microsoft MultiHeadAttention the same way (unidirectional)
  qknorm_head_rms     each head of q and k RMS-normalised (weight [DH], eps 1e-6) after
                      the head split (Qwen3)
  qknorm_row_ln       q alone LayerNorm'ed over its whole row (a LayerNormalization node)
                      before the head split, k not
Graphs that must be refused too:
  alibi_counted_float the same with a float mask m (fractional m would count
                      fractional positions)
"""
import math
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
D, H = 16, 4
DH = D // H
rng = np.random.default_rng(7)


def init(name, arr):
    return numpy_helper.from_array(np.asarray(arr), name)


def weights(prefix, din, dout, bias=True):
    w = (rng.standard_normal((din, dout)) / math.sqrt(din)).astype(np.float32)
    out = [init(prefix + "_w", w)]
    if bias:
        out.append(init(prefix + "_b", (0.1 * rng.standard_normal(dout)).astype(np.float32)))
    return out


def proj(nodes, x, prefix, out, bias=True):
    if bias:
        nodes.append(helper.make_node("MatMul", [x, prefix + "_w"], [out + "_mm"], name=prefix + "_matmul"))
        nodes.append(helper.make_node("Add", [out + "_mm", prefix + "_b"], [out], name=prefix + "_add"))
    else:
        nodes.append(helper.make_node("MatMul", [x, prefix + "_w"], [out], name=prefix + "_matmul"))


def positions(nodes, inits, x, p, grid=False):
    """p_pos = Range(0, S) of input x [B, S, D]; p_ax0 / p_ax1 = axes [0] / [1];
    with grid, p_rows [S, 1] (query i) and p_cols [1, S] (key j) too."""
    inits += [init(p + "_idx1", np.array([1], np.int64)), init(p + "_zero", np.array(0, np.int64)),
              init(p + "_one", np.array(1, np.int64)), init(p + "_ax0", np.array([0], np.int64)),
              init(p + "_ax1", np.array([1], np.int64))]
    nodes += [helper.make_node("Shape", [x], [p + "_shape"], name=p + "_shape"),
              helper.make_node("Gather", [p + "_shape", p + "_idx1"], [p + "_s1"], axis=0, name=p + "_gather"),
              helper.make_node("Squeeze", [p + "_s1", p + "_ax0"], [p + "_s"], name=p + "_squeeze"),
              helper.make_node("Range", [p + "_zero", p + "_s", p + "_one"], [p + "_pos"], name=p + "_range")]
    if grid:
        nodes += [helper.make_node("Unsqueeze", [p + "_pos", p + "_ax1"], [p + "_rows"], name=p + "_rows"),
                  helper.make_node("Unsqueeze", [p + "_pos", p + "_ax0"], [p + "_cols"], name=p + "_cols")]


def causal_mask(nodes, inits, x, out):
    """-inf above the diagonal, built from the runtime sequence length."""
    positions(nodes, inits, x, "c", grid=True)
    inits += [init("c_ninf", np.array(-np.inf, np.float32)), init("c_zf", np.array(0.0, np.float32))]
    nodes += [helper.make_node("Greater", ["c_cols", "c_rows"], ["c_future"], name="c_greater"),
              helper.make_node("Where", ["c_future", "c_ninf", "c_zf"], [out], name="c_where")]


norm_rng = np.random.default_rng(151)  # the q / k norms' weights (the graphs above keep theirs)


def rms_norm(nodes, inits, src, dst, w, eps, p):
    # w * (x / sqrt(mean(x^2, -1) + eps)), as Qwen3's RMSNorm is exported
    inits += [init(p + "_two", np.array(2.0, np.float32)), init(p + "_eps", np.array(eps, np.float32)),
              init(p + "_w", w)]
    nodes += [helper.make_node("Pow", [src, p + "_two"], [p + "_sq"], name=p + "_pow"),
              helper.make_node("ReduceMean", [p + "_sq"], [p + "_ms"], axes=[-1], name=p + "_mean"),
              helper.make_node("Add", [p + "_ms", p + "_eps"], [p + "_mse"], name=p + "_add_eps"),
              helper.make_node("Sqrt", [p + "_mse"], [p + "_rms"], name=p + "_sqrt"),
              helper.make_node("Div", [src, p + "_rms"], [p + "_n"], name=p + "_div"),
              helper.make_node("Mul", [p + "_w", p + "_n"], [dst], name=p + "_mul_w")]


def qk_norms(nodes, after, inits, variant):
    """The norms of qknorm_* on the Q and K paths, into nodes (before the
    head split) or after (behind it); {t: (reshape input, reshape output)}
    for the split."""
    src = {t: (t, t + "_4d") for t in "qkv"}
    if variant == "qknorm_head_rms":
        # each head of q and k RMS-normalised over its DH features (Qwen3)
        for t in "qk":
            src[t] = (t, t + "_4r")
            rms_norm(after, inits, t + "_4r", t + "_4d",
                     (1.0 + 0.5 * norm_rng.standard_normal(DH)).astype(np.float32), 1e-6, t + "_rms")
    elif variant == "qknorm_row_ln":
        # q alone LayerNorm'ed over all of its D features before the split
        # (a LayerNormalization node, as OLMo-2 normalises the whole row)
        inits += [init("qln_w", (1.0 + 0.5 * norm_rng.standard_normal(D)).astype(np.float32))]
        nodes.append(helper.make_node("LayerNormalization", ["q", "qln_w"], ["q_ln"], axis=-1,
                                      epsilon=1e-5, name="q_layernorm"))
        src["q"] = ("q_ln", "q_4d")
    elif variant == "qknorm_head_ln_bias":
        # a per-head LayerNorm with a bias (Persimmon)
        for t in "qk":
            inits += [init(t + "_hw", norm_rng.standard_normal(DH).astype(np.float32)),
                      init(t + "_hb", norm_rng.standard_normal(DH).astype(np.float32))]
            after.append(helper.make_node("LayerNormalization", [t + "_4r", t + "_hw", t + "_hb"],
                                          [t + "_4d"], axis=-1, epsilon=1e-5, name=t + "_head_ln"))
            src[t] = (t, t + "_4r")
    return src


def layer(variant):
    """A decomposed self-attention layer [B, S, D] -> [B, S, D] with variations."""
    nodes, inits = [], []
    hq, hkv = H, H
    if variant in ("gqa_expand", "gqa_tile"):
        hkv = 2
    bias = variant != "scale_after_mask"
    inits += weights("q", D, hq * DH, bias) + weights("k", D, hkv * DH, bias)
    inits += weights("v", D, hkv * DH, bias) + weights("o", hq * DH, D, bias)
    proj(nodes, "x", "q", "q", bias)
    proj(nodes, "x", "k", "k", bias)
    proj(nodes, "x", "v", "v", bias)
    # const_bias_mask has a [5, 5] bias: static sizes there
    dims = [2, 5, D] if variant == "const_bias_mask" else ["batch", "seq", D]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)]
    scale = np.array(1.0 / math.sqrt(DH), np.float32)
    inits.append(init("scale", scale))
    inits.append(init("sqrt_dh", np.array(math.sqrt(DH), np.float32)))

    if variant == "interleaved_heads":
        # columns c = d * H + h: reshape [B, S, dh, H], heads to axis 1
        inits.append(init("shape_bsdh", np.array([0, 0, DH, H], np.int64)))
        for t in "qkv":
            nodes.append(helper.make_node("Reshape", [t, "shape_bsdh"], [t + "_4d"], name=t + "_reshape"))
        nodes.append(helper.make_node("Transpose", ["q_4d"], ["q_t"], perm=[0, 3, 1, 2], name="q_transpose"))
        nodes.append(helper.make_node("Transpose", ["k_4d"], ["k_t"], perm=[0, 3, 2, 1], name="k_transpose"))
        nodes.append(helper.make_node("Transpose", ["v_4d"], ["v_t"], perm=[0, 3, 1, 2], name="v_transpose"))
    elif variant == "gqa_expand":
        inits.append(init("shape_q", np.array([0, 0, hq, DH], np.int64)))
        inits.append(init("shape_kv5", np.array([0, 0, hkv, 1, DH], np.int64)))
        inits.append(init("ones5", np.array([1, 1, 1, hq // hkv, 1], np.int64)))
        inits.append(init("shape_kv4", np.array([0, 0, hq, DH], np.int64)))
        nodes.append(helper.make_node("Reshape", ["q", "shape_q"], ["q_4d"], name="q_reshape"))
        for t in "kv":
            nodes.append(helper.make_node("Reshape", [t, "shape_kv5"], [t + "_5d"], name=t + "_reshape5"))
            nodes.append(helper.make_node("Expand", [t + "_5d", "ones5"], [t + "_rep"], name=t + "_expand"))
            nodes.append(helper.make_node("Reshape", [t + "_rep", "shape_kv4"], [t + "_4d"], name=t + "_reshape4"))
        nodes.append(helper.make_node("Transpose", ["q_4d"], ["q_t"], perm=[0, 2, 1, 3], name="q_transpose"))
        nodes.append(helper.make_node("Transpose", ["k_4d"], ["k_t"], perm=[0, 2, 3, 1], name="k_transpose"))
        nodes.append(helper.make_node("Transpose", ["v_4d"], ["v_t"], perm=[0, 2, 1, 3], name="v_transpose"))
    elif variant == "gqa_tile":
        # Tile repeats the kv heads as a whole: q head h uses kv head h % Hkv
        inits.append(init("shape_q", np.array([0, 0, hq, DH], np.int64)))
        inits.append(init("shape_kv", np.array([0, 0, hkv, DH], np.int64)))
        inits.append(init("reps", np.array([1, 1, hq // hkv, 1], np.int64)))
        nodes.append(helper.make_node("Reshape", ["q", "shape_q"], ["q_4d"], name="q_reshape"))
        for t in "kv":
            nodes.append(helper.make_node("Reshape", [t, "shape_kv"], [t + "_kv4"], name=t + "_reshape"))
            nodes.append(helper.make_node("Tile", [t + "_kv4", "reps"], [t + "_4d"], name=t + "_tile"))
        nodes.append(helper.make_node("Transpose", ["q_4d"], ["q_t"], perm=[0, 2, 1, 3], name="q_transpose"))
        nodes.append(helper.make_node("Transpose", ["k_4d"], ["k_t"], perm=[0, 2, 3, 1], name="k_transpose"))
        nodes.append(helper.make_node("Transpose", ["v_4d"], ["v_t"], perm=[0, 2, 1, 3], name="v_transpose"))
    else:
        inits.append(init("shape_bshd", np.array([0, 0, H, DH], np.int64)))
        after = []  # the per-head norms, after the split
        src = qk_norms(nodes, after, inits, variant)
        for t in "qkv":
            nodes.append(helper.make_node("Reshape", [src[t][0], "shape_bshd"], [src[t][1]],
                                          name=t + "_reshape"))
        nodes += after
        nodes.append(helper.make_node("Transpose", ["q_4d"], ["q_t0"], perm=[0, 2, 1, 3], name="q_transpose"))
        k4 = "k_4d"
        v4 = "v_4d"
        if variant == "kv_cache_concat":
            # the new keys appended to a past input [B, P, H, d]
            inputs.append(helper.make_tensor_value_info("past_k", TensorProto.FLOAT, ["batch", "past", H, DH]))
            nodes.append(helper.make_node("Concat", ["past_k", "k_4d"], ["k_all"], axis=1, name="k_cache_concat"))
            k4 = "k_all"
        if variant == "kv_cache_after":
            # both caches [B, P, H, d], but appended after the new rows
            for t in "kv":
                inputs.append(helper.make_tensor_value_info("past_" + t, TensorProto.FLOAT,
                                                            ["batch", "past", H, DH]))
                nodes.append(helper.make_node("Concat", [t + "_4d", "past_" + t], [t + "_all"], axis=1,
                                              name=t + "_cache_concat"))
            k4, v4 = "k_all", "v_all"
        nodes.append(helper.make_node("Transpose", [k4], ["k_t0"], perm=[0, 2, 3, 1], name="k_transpose"))
        nodes.append(helper.make_node("Transpose", [v4], ["v_t"], perm=[0, 2, 1, 3], name="v_transpose"))
        if variant == "unknown_op_on_path":
            nodes.append(helper.make_node("Sin", ["q_t0"], ["q_t"], name="q_sin"))
        elif variant == "rotary_q_only":
            # q * cos + rotate_half(q) * sin, tables gathered by position
            positions(nodes, inits, "x", "r")
            freqs = np.outer(np.arange(16), 10000.0 ** (-np.arange(0, DH, 2) / DH))
            emb = np.concatenate([freqs, freqs], axis=-1)
            inits += [init("r_cos", np.cos(emb).astype(np.float32)),
                      init("r_sin", np.sin(emb).astype(np.float32)),
                      init("r_lo_s", np.array([0], np.int64)), init("r_mid", np.array([DH // 2], np.int64)),
                      init("r_end", np.array([DH], np.int64)), init("r_last", np.array([-1], np.int64))]
            nodes += [helper.make_node("Gather", ["r_cos", "r_pos"], ["r_cv"], axis=0, name="r_gather_cos"),
                      helper.make_node("Gather", ["r_sin", "r_pos"], ["r_sv"], axis=0, name="r_gather_sin"),
                      helper.make_node("Slice", ["q_t0", "r_lo_s", "r_mid", "r_last"], ["q_lo"], name="q_lo"),
                      helper.make_node("Slice", ["q_t0", "r_mid", "r_end", "r_last"], ["q_hi"], name="q_hi"),
                      helper.make_node("Neg", ["q_hi"], ["q_nhi"], name="q_neg"),
                      helper.make_node("Concat", ["q_nhi", "q_lo"], ["q_half"], axis=-1, name="q_rotate_half"),
                      helper.make_node("Mul", ["q_t0", "r_cv"], ["q_ra"], name="q_mul_cos"),
                      helper.make_node("Mul", ["q_half", "r_sv"], ["q_rb"], name="q_mul_sin"),
                      helper.make_node("Add", ["q_ra", "q_rb"], ["q_t"], name="q_rot_add")]
        else:
            nodes.append(helper.make_node("Identity", ["q_t0"], ["q_t"], name="q_identity"))
        if variant == "kpm_attend":
            nodes.append(helper.make_node("Div", ["k_t0", "sqrt_dh"], ["k_t"], name="k_scale"))
        else:
            nodes.append(helper.make_node("Identity", ["k_t0"], ["k_t"], name="k_identity"))

    nodes.append(helper.make_node("MatMul", ["q_t", "k_t"], ["qk"], name="qk_matmul"))
    if variant == "kpm_attend":
        scores = "qk"
    elif variant == "scale_after_mask":
        scores = "qk"
    else:
        nodes.append(helper.make_node("Mul", ["qk", "scale"], ["qk_s"], name="qk_scale"))
        scores = "qk_s"

    if variant in ("where_mask", "scale_after_mask"):
        causal_mask(nodes, inits, "x", "cmask")
        if variant == "where_mask":
            nodes.append(helper.make_node("IsInf", ["cmask"], ["cmask_b"], name="m_isinf"))
            inits.append(init("ninf", np.array(-np.inf, np.float32)))
            nodes.append(helper.make_node("Where", ["cmask_b", "ninf", scores], ["qk_m"], name="m_where_scores"))
            scores = "qk_m"
        else:
            nodes.append(helper.make_node("Add", [scores, "cmask"], ["qk_m"], name="qk_mask"))
            nodes.append(helper.make_node("Mul", ["qk_m", "scale"], ["qk_ms"], name="qk_scale_after"))
            scores = "qk_ms"
    if variant == "where_fill_zero":
        causal_mask(nodes, inits, "x", "cmask")
        nodes.append(helper.make_node("IsInf", ["cmask"], ["cmask_b"], name="m_isinf"))
        inits.append(init("zero_f", np.array(0.0, np.float32)))
        nodes.append(helper.make_node("Where", ["cmask_b", "zero_f", scores], ["qk_m"], name="m_where_zero"))
        scores = "qk_m"
    if variant == "alibi_relative":
        # slope_h * (j - i), slopes 2^(-8 (h + 1) / H), then the causal mask
        positions(nodes, inits, "x", "ab")
        slopes = np.array([2.0 ** (-8.0 * (h + 1) / H) for h in range(H)], np.float32)
        inits.append(init("ab_slopes", slopes.reshape(H, 1, 1)))
        nodes += [helper.make_node("Cast", ["ab_pos"], ["ab_posf"], to=TensorProto.FLOAT, name="ab_cast"),
                  helper.make_node("Unsqueeze", ["ab_posf", "ab_ax1"], ["ab_rows"], name="ab_rows"),
                  helper.make_node("Unsqueeze", ["ab_posf", "ab_ax0"], ["ab_cols"], name="ab_cols"),
                  helper.make_node("Sub", ["ab_cols", "ab_rows"], ["ab_dist"], name="ab_sub"),
                  helper.make_node("Mul", ["ab_slopes", "ab_dist"], ["ab_bias"], name="ab_mul"),
                  helper.make_node("Add", [scores, "ab_bias"], ["qk_ab"], name="qk_alibi")]
        scores = "qk_ab"
        causal_mask(nodes, inits, "x", "cmask")
        nodes.append(helper.make_node("Add", [scores, "cmask"], ["qk_abm"], name="qk_causal"))
        scores = "qk_abm"
    if variant in ("alibi_counted", "alibi_counted_float"):
        mt = TensorProto.FLOAT if variant == "alibi_counted_float" else TensorProto.INT64
        inputs.append(helper.make_tensor_value_info("m", mt, ["batch", "seq"]))
        slopes = np.array([2.0 ** (-8.0 * (h + 1) / H) for h in range(H)], np.float32)
        inits += [init("ac_slopes", slopes.reshape(1, H, 1, 1)), init("ac_axis", np.array(1, np.int64)),
                  init("ac_one", np.array(1.0, np.float32)), init("ac_zero", np.array(0.0, np.float32)),
                  init("ac_axes", np.array([1, 2], np.int64)),
                  init("ac_min", np.array(np.finfo(np.float32).min, np.float32))]
        nodes += [helper.make_node("Cast", ["m"], ["ac_mf"], to=TensorProto.FLOAT, name="ac_cast"),
                  helper.make_node("CumSum", ["ac_mf", "ac_axis"], ["ac_cum"], name="ac_cumsum"),
                  helper.make_node("Sub", ["ac_cum", "ac_one"], ["ac_cm1"], name="ac_sub"),
                  helper.make_node("Mul", ["ac_cm1", "ac_mf"], ["ac_pos"], name="ac_pos"),
                  helper.make_node("Unsqueeze", ["ac_pos", "ac_axes"], ["ac_pos4"], name="ac_unsqueeze"),
                  helper.make_node("Mul", ["ac_slopes", "ac_pos4"], ["ac_bias"], name="ac_mul"),
                  helper.make_node("Add", [scores, "ac_bias"], ["qk_ac"], name="qk_alibi_counted"),
                  helper.make_node("Unsqueeze", ["ac_mf", "ac_axes"], ["ac_m4"], name="ac_m4"),
                  helper.make_node("Equal", ["ac_m4", "ac_zero"], ["ac_pad"], name="ac_equal"),
                  helper.make_node("Where", ["ac_pad", "ac_min", "qk_ac"], ["qk_acm"], name="ac_fill")]
        scores = "qk_acm"
    if variant == "dyn_bias":
        # bias[i, j] = j * j (a float of the key position): not a mask, and
        # not ALiBi (which is linear in j)
        positions(nodes, inits, "x", "db")
        nodes += [helper.make_node("Cast", ["db_pos"], ["db_posf"], to=TensorProto.FLOAT, name="db_cast"),
                  helper.make_node("Mul", ["db_posf", "db_posf"], ["db_sq"], name="db_square"),
                  helper.make_node("Add", [scores, "db_sq"], ["qk_m"], name="qk_dyn_bias")]
        scores = "qk_m"
    if variant == "rel_bias":
        positions(nodes, inits, "x", "rb", grid=True)
        inits += [init("rb_hi", np.array(3, np.int64)), init("rb_lo", np.array(-3, np.int64)),
                  init("rb_table", rng.standard_normal((7, H)).astype(np.float32))]
        nodes += [helper.make_node("Sub", ["rb_cols", "rb_rows"], ["rb_rel"], name="rb_sub"),
                  helper.make_node("Min", ["rb_rel", "rb_hi"], ["rb_min"], name="rb_min"),
                  helper.make_node("Max", ["rb_min", "rb_lo"], ["rb_clip"], name="rb_max"),
                  helper.make_node("Add", ["rb_clip", "rb_hi"], ["rb_idx"], name="rb_shift"),
                  helper.make_node("Gather", ["rb_table", "rb_idx"], ["rb_ssh"], axis=0, name="rb_gather"),
                  helper.make_node("Transpose", ["rb_ssh"], ["rb_hss"], perm=[2, 0, 1], name="rb_transpose"),
                  helper.make_node("Unsqueeze", ["rb_hss", "rb_ax0"], ["rb_bias"], name="rb_unsqueeze"),
                  helper.make_node("Add", [scores, "rb_bias"], ["qk_m"], name="rb_add")]
        scores = "qk_m"
    if variant in ("ext_mask_i64", "ext_mask_10000", "fill_mask_eq0"):
        mt = TensorProto.FLOAT if variant == "ext_mask_10000" else TensorProto.INT64
        inputs.append(helper.make_tensor_value_info("m", mt, ["batch", "seq"]))
        fill = -10000.0 if variant == "ext_mask_10000" else float(np.finfo(np.float32).min)
        inits += [init("em_axes", np.array([1, 2], np.int64)), init("em_one", np.array(1.0, np.float32)),
                  init("em_fill", np.array(fill, np.float32)), init("em_zero_i", np.array(0, np.int64))]
        nodes.append(helper.make_node("Unsqueeze", ["m", "em_axes"], ["m4"], name="em_unsqueeze"))
        if variant == "fill_mask_eq0":
            nodes.append(helper.make_node("Equal", ["m4", "em_zero_i"], ["m_pad"], name="em_equal"))
            nodes.append(helper.make_node("Where", ["m_pad", "em_fill", scores], ["qk_m"], name="em_fill_where"))
        else:
            nodes.append(helper.make_node("Cast", ["m4"], ["m4f"], to=TensorProto.FLOAT, name="em_cast"))
            nodes.append(helper.make_node("Sub", ["em_one", "m4f"], ["m_inv"], name="em_sub"))
            nodes.append(helper.make_node("Mul", ["m_inv", "em_fill"], ["m_add"], name="em_mul"))
            nodes.append(helper.make_node("Add", [scores, "m_add"], ["qk_m"], name="em_add"))
        scores = "qk_m"
    if variant == "two_masks":
        inputs.append(helper.make_tensor_value_info("am", TensorProto.BOOL, ["seq", "seq"]))
        inputs.append(helper.make_tensor_value_info("kpm", TensorProto.BOOL, ["batch", "seq"]))
        inits += [init("tm_ninf", np.array(-np.inf, np.float32)), init("tm_zero", np.array(0.0, np.float32)),
                  init("tm_axes", np.array([1, 2], np.int64))]
        nodes += [helper.make_node("Where", ["am", "tm_ninf", "tm_zero"], ["tm_am"], name="tm_am_where"),
                  helper.make_node("Unsqueeze", ["kpm", "tm_axes"], ["tm_kpm4"], name="tm_unsqueeze"),
                  helper.make_node("Where", ["tm_kpm4", "tm_ninf", "tm_zero"], ["tm_kp"], name="tm_kp_where"),
                  helper.make_node("Add", ["tm_am", "tm_kp"], ["tm_both"], name="tm_sum"),
                  helper.make_node("Add", [scores, "tm_both"], ["qk_m"], name="tm_add")]
        scores = "qk_m"
    if variant == "bh_mask":
        inputs.append(helper.make_tensor_value_info("am", TensorProto.BOOL, ["batch_heads", "seq", "seq"]))
        inits += [init("bh_ninf", np.array(-np.inf, np.float32)), init("bh_zero", np.array(0.0, np.float32))]
        # the scores as [B * H, S, S] around the Add, as PyTorch's 3-D layout
        inits += [init("bh_m1", np.array([-1], np.int64)), init("bh_2", np.array([2], np.int64)),
                  init("bh_4", np.array([4], np.int64))]
        nodes += [helper.make_node("Where", ["am", "bh_ninf", "bh_zero"], ["bh_add"], name="bh_where"),
                  helper.make_node("Shape", [scores], ["bh_shape"], name="bh_shape"),
                  helper.make_node("Slice", ["bh_shape", "bh_2", "bh_4"], ["bh_ss"], name="bh_slice"),
                  helper.make_node("Concat", ["bh_m1", "bh_ss"], ["bh_3d"], axis=0, name="bh_concat"),
                  helper.make_node("Reshape", [scores, "bh_3d"], ["bh_s3"], name="bh_to3d"),
                  helper.make_node("Add", ["bh_s3", "bh_add"], ["bh_m3"], name="bh_add_scores"),
                  helper.make_node("Reshape", ["bh_m3", "bh_shape"], ["qk_m"], name="bh_to4d")]
        scores = "qk_m"
    if variant == "bool_ignore_mask":
        inputs.append(helper.make_tensor_value_info("am", TensorProto.BOOL, ["seq", "seq"]))
        inits += [init("bi_ninf", np.array(-np.inf, np.float32)), init("bi_zero", np.array(0.0, np.float32))]
        nodes.append(helper.make_node("Where", ["am", "bi_ninf", "bi_zero"], ["am_add"], name="bi_where"))
        nodes.append(helper.make_node("Add", [scores, "am_add"], ["qk_m"], name="bi_add"))
        scores = "qk_m"
    if variant == "window_mask":
        # allowed iff j <= i and i - j < 3, else finfo.min (added)
        positions(nodes, inits, "x", "w", grid=True)
        inits += [init("w_w", np.array(3, np.int64)), init("w_zf", np.array(0.0, np.float32)),
                  init("w_min", np.array(np.finfo(np.float32).min, np.float32))]
        nodes += [helper.make_node("Greater", ["w_cols", "w_rows"], ["w_future"], name="w_greater"),
                  helper.make_node("Sub", ["w_rows", "w_cols"], ["w_dist"], name="w_sub"),
                  helper.make_node("GreaterOrEqual", ["w_dist", "w_w"], ["w_far"], name="w_ge"),
                  helper.make_node("Or", ["w_future", "w_far"], ["w_hide"], name="w_or"),
                  helper.make_node("Where", ["w_hide", "w_min", "w_zf"], ["w_add"], name="w_where"),
                  helper.make_node("Add", [scores, "w_add"], ["qk_m"], name="w_add_scores")]
        scores = "qk_m"
    if variant == "softmax_casts":
        causal_mask(nodes, inits, "x", "cmask")
        inits += [init("sc_bh", np.array([-1, 0, 0], np.int64))]
        nodes.append(helper.make_node("Shape", [scores], ["sc_shape4"], name="sc_shape"))
        nodes.append(helper.make_node("Reshape", [scores, "sc_bh"], ["qk_3d"], name="sc_to3d"))
        nodes.append(helper.make_node("Reshape", ["qk_3d", "sc_shape4"], ["qk_4d"], name="sc_to4d"))
        nodes.append(helper.make_node("Add", ["qk_4d", "cmask"], ["qk_m"], name="sc_mask"))
        nodes.append(helper.make_node("Cast", ["qk_m"], ["qk_f"], to=TensorProto.FLOAT, name="sc_cast_in"))
        scores = "qk_f"
    if variant == "const_bias_mask":
        inits.append(init("bias_ss", rng.standard_normal((1, H, 5, 5)).astype(np.float32)))
        nodes.append(helper.make_node("Add", [scores, "bias_ss"], ["qk_m"], name="qk_const_bias"))
        scores = "qk_m"
    if variant == "kpm_attend":
        inputs.append(helper.make_tensor_value_info("keep", TensorProto.BOOL, ["batch", "seq"]))
        inits += [init("kp_shape", np.array([0, 1, 1, -1], np.int64)),
                  init("kp_zero", np.array(0.0, np.float32)), init("kp_ninf", np.array(-np.inf, np.float32))]
        nodes.append(helper.make_node("Reshape", ["keep", "kp_shape"], ["keep4"], name="kp_reshape"))
        nodes.append(helper.make_node("Where", ["keep4", "kp_zero", "kp_ninf"], ["kp_add"], name="kp_where"))
        nodes.append(helper.make_node("Add", [scores, "kp_add"], ["qk_m"], name="qk_kpm"))
        scores = "qk_m"

    axis = -2 if variant == "softmax_axis" else -1
    nodes.append(helper.make_node("Softmax", [scores], ["probs"], axis=axis, name="softmax"))
    probs = "probs"
    if variant == "softmax_casts":
        nodes.append(helper.make_node("Cast", ["probs"], ["probs_c"], to=TensorProto.FLOAT, name="sc_cast_out"))
        probs = "probs_c"
    nodes.append(helper.make_node("MatMul", [probs, "v_t"], ["ctx"], name="pv_matmul"))
    if variant == "interleaved_heads":
        nodes.append(helper.make_node("Transpose", ["ctx"], ["ctx_t"], perm=[0, 2, 3, 1], name="ctx_transpose"))
    else:
        nodes.append(helper.make_node("Transpose", ["ctx"], ["ctx_t"], perm=[0, 2, 1, 3], name="ctx_transpose"))
    inits.append(init("shape_bsd", np.array([0, 0, hq * DH], np.int64)))
    nodes.append(helper.make_node("Reshape", ["ctx_t", "shape_bsd"], ["attn"], name="ctx_reshape"))
    out = "y"
    if variant in ("two_softmax", "residual_block"):
        out = "y0"
    proj(nodes, "attn", "o", out, bias)
    if variant == "two_softmax":
        nodes.append(helper.make_node("Softmax", ["y0"], ["y"], axis=-1, name="extra_softmax"))
    if variant == "residual_block":
        nodes.append(helper.make_node("Add", ["y0", "x"], ["y"], name="residual_add"))
    if variant == "weight_input":
        inits = [i for i in inits if i.name != "q_w"]
        inputs.append(helper.make_tensor_value_info("q_w", TensorProto.FLOAT, [D, D]))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)]
    return helper.make_graph(nodes, variant, inputs, outputs, initializer=inits)


def no_attention():
    inits = weights("p", D, D)
    nodes = []
    proj(nodes, "x", "p", "y")
    return helper.make_graph(nodes, "no_attention",
                             [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", D])],
                             [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", D])],
                             initializer=inits)


def save(graph, name):
    model = helper.make_model(graph, producer_name="tests/data/recognize/generate.py",
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, os.path.join(HERE, name + ".onnx"))
    print("wrote", name)


save(no_attention(), "no_attention")
for v in ("two_softmax", "unknown_op_on_path", "where_mask", "softmax_axis", "weight_input",
          "const_bias_mask", "interleaved_heads", "kpm_attend", "gqa_expand", "gqa_tile", "scale_after_mask",
          "where_fill_zero", "dyn_bias", "ext_mask_i64", "ext_mask_10000", "fill_mask_eq0",
          "bool_ignore_mask", "window_mask", "softmax_casts", "rotary_q_only", "alibi_relative",
          "rel_bias", "alibi_counted", "alibi_counted_float", "two_masks", "bh_mask",
          "kv_cache_concat", "kv_cache_after", "residual_block"):
    save(layer(v), v)


def save_cached(name, nodes, inits, hkv, mask, opsets, ir_version):
    """A layer x [B, S, D] -> out with past_key / past_value [B, hkv, P, d]
    inputs (after a bool mask [B, 1, S, P + S] when `mask`) and present
    outputs, saved unchecked (onnx 1.12's checker knows no opset 23)."""
    past = ["batch", hkv, "past", DH]
    total = ["batch", hkv, "total", DH]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", D])]
    if mask:
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.BOOL,
                                                    ["batch", 1, "seq", "total"]))
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, past)
               for n in ("past_key", "past_value")]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", "seq", D])]
    outputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, total)
                for n in ("present_key", "present_value")]
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = helper.make_model(graph, producer_name="tests/data/recognize/generate.py",
                              opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = ir_version
    onnx.save(model, os.path.join(HERE, name + ".onnx"))
    print("wrote", name)


def attention_past():
    """An ONNX Attention node (opset 23) between MatMul projections with its
    own KV cache: past_key / past_value [B, 2, P, d] graph inputs, present
    outputs, GQA (4 query heads over 2), causal, a bool mask [B, 1, S, P + S]."""
    hkv = 2
    inits = weights("q", D, H * DH, False) + weights("k", D, hkv * DH, False)
    inits += weights("v", D, hkv * DH, False) + weights("o", H * DH, D, False)
    nodes = []
    for t in "qkv":
        proj(nodes, "x", t, t, False)
    nodes.append(helper.make_node("Attention", ["q", "k", "v", "mask", "past_key", "past_value"],
                                  ["y", "present_key", "present_value"], q_num_heads=H,
                                  kv_num_heads=hkv, is_causal=1, name="attention"))
    proj(nodes, "y", "o", "out", False)
    save_cached("attention_past", nodes, inits, hkv, True, [("", 23)], 10)


def ms_mha_past():
    """com.microsoft MultiHeadAttention between MatMul + Add projections with
    its own KV cache: past_key / past_value [B, H, P, d] graph inputs 6 and
    7, present outputs, unidirectional (causal at i + P)."""
    inits = weights("q", D, D) + weights("k", D, D) + weights("v", D, D) + weights("o", D, D)
    nodes = []
    for t in "qkv":
        proj(nodes, "x", t, t)
    nodes.append(helper.make_node("MultiHeadAttention",
                                  ["q", "k", "v", "", "", "", "past_key", "past_value"],
                                  ["y", "present_key", "present_value"], domain="com.microsoft",
                                  num_heads=H, unidirectional=1, name="mha"))
    proj(nodes, "y", "o", "out")
    save_cached("ms_mha_past", nodes, inits, H, False, [("", 17), ("com.microsoft", 1)], 8)


attention_past()
ms_mha_past()
# after every graph above, whose random weights they leave as they were
for v in ("qknorm_head_rms", "qknorm_row_ln", "qknorm_head_ln_bias"):
    save(layer(v), v)
