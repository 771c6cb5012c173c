#!/usr/bin/python3
"""generate.py -- the opset-25 Attention cases (sliding windows) that ONNX
Runtime 1.30 cannot run, with expected outputs from the plain numpy
reference below (float64 inside, cast to the case's type at the end).

Run with Debian's python3 (numpy + onnx):
    /usr/bin/python3 tests/data/opset25/generate.py tests/data/opset25

Each case mirrors one row of tests/data/conformance/cases.tsv marked
"no oracle" (same shapes, attributes, optional inputs/outputs and opset);
the data is our own, seeded: uniform [-1, 1) floats, int64 key lengths,
random bool masks. Layout as in tests/data/conformance (model.onnx,
test_data_set_0/input_<i>.pb, output_<i>.pb).

The reading of the spec this reference implements (ONNX Attention-25):
for query i of batch b the frontier is f = i + offset[b], with offset =
past length when past_key is given, else nonpad_kv_seqlen[b] - S_q when
nonpad_kv_seqlen is given, else 0. Key j is visible when all of:
    is_causal          -> j <= f
    left_window_size  >= 0 -> j >= f - left_window_size
    right_window_size >= 0 -> j <= f + right_window_size
    nonpad_kv_seqlen   -> j <  nonpad_kv_seqlen[b]
    attn_mask          -> True (bool) / not -inf (float, added otherwise);
                          a mask shorter than the keys hides the keys past it
Scores: s = scale * q.k, then softcap, then + mask; softmax over visible
keys (a row with none gives 0); qk_matmul_output mode 0 = s before softcap,
1 = after softcap, 2 = after the mask (-inf where hidden), 3 = softmax.
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

NP_OF = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16,
         TensorProto.BOOL: np.bool_, TensorProto.INT64: np.int64}


def reference(Q, K, V, mask=None, past_key=None, past_value=None, nonpad=None,
              scale=None, is_causal=0, q_num_heads=None, kv_num_heads=None,
              softcap=0.0, left=-1, right=-1, mode=0):
    dtype = Q.dtype
    three_d = Q.ndim == 3
    q, k, v = (x.astype(np.float64) for x in (Q, K, V))
    if three_d:
        B, Sq, _ = q.shape
        q = q.reshape(B, Sq, q_num_heads, -1).transpose(0, 2, 1, 3)
        k = k.reshape(B, k.shape[1], kv_num_heads, -1).transpose(0, 2, 1, 3)
        v = v.reshape(B, v.shape[1], kv_num_heads, -1).transpose(0, 2, 1, 3)
    B, Hq, Sq, dh = q.shape
    Hkv = k.shape[1]
    P = 0
    if past_key is not None:
        P = past_key.shape[2]
        k = np.concatenate([past_key.astype(np.float64), k], axis=2)
        v = np.concatenate([past_value.astype(np.float64), v], axis=2)
    T = k.shape[2]
    if scale is None:
        scale = 1.0 / np.sqrt(dh)
    group = Hq // Hkv
    k_rep = np.repeat(k, group, axis=1)
    v_rep = np.repeat(v, group, axis=1)

    visible = np.ones((B, Hq, Sq, T), dtype=bool)
    bias = np.zeros((B, Hq, Sq, T))
    i_idx = np.arange(Sq)[:, None]
    j_idx = np.arange(T)[None, :]
    for b in range(B):
        if past_key is not None:
            offset = P
        elif nonpad is not None:
            offset = int(nonpad[b]) - Sq
        else:
            offset = 0
        f = i_idx + offset
        ok = np.ones((Sq, T), dtype=bool)
        if is_causal:
            ok &= j_idx <= f
        if left >= 0:
            ok &= j_idx >= f - left
        if right >= 0:
            ok &= j_idx <= f + right
        if nonpad is not None:
            ok &= j_idx < int(nonpad[b])
        visible[b] &= ok[None]
    if mask is not None:
        m = mask
        if m.dtype == np.bool_:
            full = np.zeros(m.shape[:-1] + (T,), dtype=bool)
            full[..., :m.shape[-1]] = m
            visible &= np.broadcast_to(full, visible.shape)
        else:
            full = np.full(m.shape[:-1] + (T,), -np.inf)
            full[..., :m.shape[-1]] = m.astype(np.float64)
            lowest = float(np.finfo(m.dtype).min)
            full[full <= lowest] = -np.inf
            full = np.broadcast_to(full, visible.shape)
            visible &= full != -np.inf
            bias = np.where(visible, full, 0.0)

    raw = scale * np.einsum('bhid,bhjd->bhij', q, k_rep)
    capped = softcap * np.tanh(raw / softcap) if softcap > 0 else raw
    masked = np.where(visible, capped + bias, -np.inf)
    mx = masked.max(axis=-1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    e = np.where(visible, np.exp(masked - mx), 0.0)
    s = e.sum(axis=-1, keepdims=True)
    p = np.divide(e, s, out=np.zeros_like(e), where=s > 0)
    y = np.einsum('bhij,bhjd->bhid', p, v_rep)
    if three_d:
        y = y.transpose(0, 2, 1, 3).reshape(B, Sq, -1)
    qk = [raw, capped, masked, p][mode]
    return (y.astype(dtype), k.astype(dtype), v.astype(dtype), qk.astype(dtype))


def make_case(root, name, opset, attrs, inputs, outputs, seed):
    """inputs: list of (node slot, name, shape, onnx type); outputs: list of
    (node slot, name). Writes root/name/{model.onnx,test_data_set_0}."""
    rng = np.random.default_rng(seed)
    values = {}
    for slot, iname, shape, ty in inputs:
        if ty == TensorProto.BOOL:
            a = rng.random(shape) < 0.75
            a[..., 0] = True
        elif ty == TensorProto.INT64:
            skv = values['K'].shape[-2]
            a = np.array([skv - 1 - b for b in range(shape[0])], dtype=np.int64)
        else:
            a = rng.uniform(-1.0, 1.0, shape).astype(NP_OF[ty])
        values[iname] = a
    slots = [''] * 7
    for slot, iname, _, _ in inputs:
        slots[slot] = iname
    while slots and slots[-1] == '':
        slots.pop()
    out_slots = [''] * 4
    for slot, oname in outputs:
        out_slots[slot] = oname
    while out_slots[-1] == '':
        out_slots.pop()
    node = helper.make_node('Attention', slots, out_slots, **attrs)

    a = attrs
    res = reference(values['Q'], values['K'], values['V'], values.get('attn_mask'),
                    values.get('past_key'), values.get('past_value'),
                    values.get('nonpad_kv_seqlen'), a.get('scale'), a.get('is_causal', 0),
                    a.get('q_num_heads'), a.get('kv_num_heads'), a.get('softcap', 0.0),
                    a.get('left_window_size', -1), a.get('right_window_size', -1),
                    a.get('qk_matmul_output_mode', 0))
    out_values = {slot: res[slot] for slot, _ in outputs}
    g_inputs = [helper.make_tensor_value_info(n, ty, list(values[n].shape))
                for _, n, _, ty in inputs]
    qtype = inputs[0][3]
    g_outputs = [helper.make_tensor_value_info(n, qtype, list(out_values[slot].shape))
                 for slot, n in outputs]
    graph = helper.make_graph([node], name, g_inputs, g_outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)],
                              producer_name='mha tests/data/opset25/generate.py')
    model.ir_version = 11 if opset <= 23 else 12 if opset == 24 else 13
    d = os.path.join(root, name)
    os.makedirs(os.path.join(d, 'test_data_set_0'), exist_ok=True)
    with open(os.path.join(d, 'model.onnx'), 'wb') as f:
        f.write(model.SerializeToString())
    for k, (_, n, _, _) in enumerate(inputs):
        t = numpy_helper.from_array(values[n], n)
        with open(os.path.join(d, 'test_data_set_0', 'input_%d.pb' % k), 'wb') as f:
            f.write(t.SerializeToString())
    for k, (slot, n) in enumerate(outputs):
        t = numpy_helper.from_array(out_values[slot], n)
        with open(os.path.join(d, 'test_data_set_0', 'output_%d.pb' % k), 'wb') as f:
            f.write(t.SerializeToString())


F, H, B_, I = TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.BOOL, TensorProto.INT64


def qkv(qs, ks, vs, ty=F):
    return [(0, 'Q', qs, ty), (1, 'K', ks, ty), (2, 'V', vs, ty)]


CASES = [
    ('onnx_attention_3d_local_window', 25,
     dict(is_causal=1, kv_num_heads=1, left_window_size=2, q_num_heads=4),
     qkv([2, 4, 32], [2, 6, 8], [2, 6, 6]), [(0, 'Y')]),
    ('onnx_attention_bidirectional_window', 25,
     dict(left_window_size=1, right_window_size=2),
     qkv([1, 1, 5, 1], [1, 1, 5, 1], [1, 1, 5, 1]), [(0, 'Y')]),
    ('onnx_attention_local_window', 25, dict(is_causal=1, left_window_size=2),
     qkv([2, 3, 4, 8], [2, 3, 6, 8], [2, 3, 6, 8]), [(0, 'Y')]),
    ('onnx_attention_local_window_default', 25,
     dict(left_window_size=-1, right_window_size=-1),
     qkv([2, 3, 4, 8], [2, 3, 6, 8], [2, 3, 6, 8]), [(0, 'Y')]),
    ('onnx_attention_local_window_ext_cache_float16_mask', 25,
     dict(is_causal=1, left_window_size=2),
     qkv([2, 3, 4, 8], [2, 3, 8, 8], [2, 3, 8, 8], H) +
     [(3, 'attn_mask', [1, 8], H), (6, 'nonpad_kv_seqlen', [2], I)], [(0, 'Y')]),
    ('onnx_attention_local_window_ext_cache_rank2_mask', 25,
     dict(is_causal=1, left_window_size=2),
     qkv([2, 3, 4, 8], [2, 3, 8, 8], [2, 3, 8, 8]) +
     [(3, 'attn_mask', [1, 8], F), (6, 'nonpad_kv_seqlen', [2], I)], [(0, 'Y')]),
    ('onnx_attention_local_window_ext_cache_rank3_head_mask', 25,
     dict(is_causal=1, left_window_size=2),
     qkv([2, 3, 4, 8], [2, 3, 8, 8], [2, 3, 8, 8]) +
     [(3, 'attn_mask', [3, 4, 8], F), (6, 'nonpad_kv_seqlen', [2], I)], [(0, 'Y')]),
    ('onnx_attention_local_window_ext_cache_rank4_batch_mask', 25,
     dict(is_causal=1, left_window_size=2),
     qkv([2, 3, 4, 8], [2, 3, 8, 8], [2, 3, 8, 8]) +
     [(3, 'attn_mask', [2, 1, 4, 8], F), (6, 'nonpad_kv_seqlen', [2], I)], [(0, 'Y')]),
    ('onnx_attention_local_window_gqa_rank4_mask', 25,
     dict(is_causal=1, left_window_size=2, qk_matmul_output_mode=3, softcap=2.0,
          softmax_precision=TensorProto.DOUBLE),
     qkv([2, 4, 4, 8], [2, 2, 6, 8], [2, 2, 6, 6]) + [(3, 'attn_mask', [2, 4, 4, 6], B_)],
     [(0, 'Y'), (3, 'qk_matmul_output')]),
    ('onnx_attention_local_window_rank1_boolean_mask', 25,
     dict(is_causal=1, left_window_size=2),
     qkv([2, 3, 4, 8], [2, 3, 6, 8], [2, 3, 6, 8]) + [(3, 'attn_mask', [6], B_)], [(0, 'Y')]),
    ('onnx_attention_local_window_with_past', 25, dict(is_causal=1, left_window_size=2),
     qkv([2, 3, 4, 8], [2, 3, 2, 8], [2, 3, 2, 8]) +
     [(4, 'past_key', [2, 3, 8, 8], F), (5, 'past_value', [2, 3, 8, 8], F)],
     [(0, 'Y'), (1, 'present_key'), (2, 'present_value')]),
    # opset 24, refused by ONNX Runtime: a mask shorter than the keys
    ('onnx_attention_4d_diff_heads_mask4d_padded_kv', 24, {},
     qkv([2, 3, 4, 8], [2, 3, 6, 8], [2, 3, 6, 10]) +
     [(3, 'attn_mask', [2, 3, 4, 4], F), (6, 'nonpad_kv_seqlen', [2], I)], [(0, 'Y')]),
]


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    for k, (name, opset, attrs, inputs, outputs) in enumerate(CASES):
        make_case(root, name, opset, attrs, inputs, outputs, seed=2500 + k)
        print(name)


if __name__ == '__main__':
    main()
