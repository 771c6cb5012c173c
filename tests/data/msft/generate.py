#!/usr/bin/python3
"""generate.py -- com.microsoft attention cases (the forms ONNX Runtime's
transformer optimizer writes), with expected outputs from the plain numpy
reference below (float64 inside, float32 at the end).

Run with Debian's python3 (numpy + onnx):
    /usr/bin/python3 tests/data/msft/generate.py tests/data/msft

Forms (semantics per ONNX Runtime's docs/ContribOperators.md):
  ms_mha_*        MatMul+Add projections -> com.microsoft.MultiHeadAttention
                  (query, key, value [B, S, H*d], num_heads, unidirectional)
                  -> MatMul+Add output projection
  ms_attention_*  com.microsoft.Attention: input [B, S, D], packed weights
                  [D, 3D] and bias [3D] initializers, num_heads, optional
                  mask_index graph input (int32): [B] key lengths (right
                  padding), [B, S] 0/1 key mask, [B, S, S] 0/1 mask; then an
                  output projection MatMul+Add, or none.
Masked keys are excluded from the softmax (ONNX Runtime adds -10000, the
same result for rows that keep a key; every case keeps key 0).
"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def attend(q, k, v, heads, causal, visible):
    """q [B, S, H*dh], k [B, T, H*dh], v [B, T, H*dv]; visible [B, S, T]."""
    B, S, _ = q.shape
    T = k.shape[1]
    dh = q.shape[2] // heads
    dv = v.shape[2] // heads
    qh = q.reshape(B, S, heads, dh).transpose(0, 2, 1, 3)
    kh = k.reshape(B, T, heads, dh).transpose(0, 2, 1, 3)
    vh = v.reshape(B, T, heads, dv).transpose(0, 2, 1, 3)
    s = np.einsum('bhid,bhjd->bhij', qh, kh) / np.sqrt(dh)
    vis = np.broadcast_to(visible[:, None], s.shape).copy()
    if causal:
        vis &= np.tril(np.ones((S, T), dtype=bool))[None, None]
    s = np.where(vis, s, -np.inf)
    mx = s.max(axis=-1, keepdims=True)
    e = np.where(vis, np.exp(s - mx), 0.0)
    p = e / e.sum(axis=-1, keepdims=True)
    o = np.einsum('bhij,bhjd->bhid', p, vh)
    return o.transpose(0, 2, 1, 3).reshape(B, S, heads * dv)


def save_case(root, name, nodes, inits, inputs, output_name, out_shape, in_values, y):
    g_inputs = [helper.make_tensor_value_info(n, ty, shape) for n, ty, shape in inputs]
    g_out = [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, out_shape)]
    graph = helper.make_graph(nodes, name, g_inputs, g_out,
                              initializer=[numpy_helper.from_array(a, n) for n, a in inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17),
                                                    helper.make_opsetid('com.microsoft', 1)],
                              producer_name='mha tests/data/msft/generate.py')
    model.ir_version = 8
    d = os.path.join(root, name)
    os.makedirs(os.path.join(d, 'test_data_set_0'), exist_ok=True)
    with open(os.path.join(d, 'model.onnx'), 'wb') as f:
        f.write(model.SerializeToString())
    for k, (n, _, _) in enumerate(inputs):
        with open(os.path.join(d, 'test_data_set_0', 'input_%d.pb' % k), 'wb') as f:
            f.write(numpy_helper.from_array(in_values[n], n).SerializeToString())
    with open(os.path.join(d, 'test_data_set_0', 'output_0.pb'), 'wb') as f:
        f.write(numpy_helper.from_array(y.astype(np.float32), output_name).SerializeToString())


def ms_mha_case(root, name, D, H, B, S, causal, seed):
    rng = np.random.default_rng(seed)
    w = {n: (rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float32)
         for n in ('Wq', 'Wk', 'Wv', 'Wo')}
    b = {n: (0.1 * rng.standard_normal(D)).astype(np.float32) for n in ('bq', 'bk', 'bv', 'bo')}
    x = rng.uniform(-1, 1, (B, S, D)).astype(np.float32)
    nodes = []
    for p in 'qkv':
        nodes += [helper.make_node('MatMul', ['x', 'W' + p], [p + '_mm']),
                  helper.make_node('Add', [p + '_mm', 'b' + p], [p])]
    nodes.append(helper.make_node('MultiHeadAttention', ['q', 'k', 'v'], ['attn'], name='mha',
                                  domain='com.microsoft', num_heads=H, unidirectional=causal))
    nodes += [helper.make_node('MatMul', ['attn', 'Wo'], ['o_mm']),
              helper.make_node('Add', ['o_mm', 'bo'], ['y'])]
    x64 = x.astype(np.float64)
    proj = {p: x64 @ w['W' + p].astype(np.float64) + b['b' + p] for p in 'qkv'}
    o = attend(proj['q'], proj['k'], proj['v'], H, causal, np.ones((B, S, S), dtype=bool))
    y = o @ w['Wo'].astype(np.float64) + b['bo']
    inits = list(w.items()) + list(b.items())
    save_case(root, name, nodes, inits, [('x', TensorProto.FLOAT, ['batch', 'seq', D])], 'y',
              ['batch', 'seq', D], {'x': x}, y)


def ms_attention_case(root, name, D, H, B, S, causal, mask_kind, out_proj, seed):
    rng = np.random.default_rng(seed)
    W = (rng.standard_normal((D, 3 * D)) / np.sqrt(D)).astype(np.float32)
    bias = (0.1 * rng.standard_normal(3 * D)).astype(np.float32)
    Wo = (rng.standard_normal((D, D)) / np.sqrt(D)).astype(np.float32)
    bo = (0.1 * rng.standard_normal(D)).astype(np.float32)
    x = rng.uniform(-1, 1, (B, S, D)).astype(np.float32)
    values = {'x': x}
    inputs = [('x', TensorProto.FLOAT, ['batch', 'seq', D])]
    visible = np.ones((B, S, S), dtype=bool)
    att_inputs = ['x', 'W', 'bias']
    if mask_kind == 'lengths':
        lens = np.array([S - b for b in range(B)], dtype=np.int32)
        visible &= np.arange(S)[None, None, :] < lens[:, None, None]
        values['mask_index'] = lens
        inputs.append(('mask_index', TensorProto.INT32, ['batch']))
    elif mask_kind == 'keymask':
        m = (rng.random((B, S)) < 0.7).astype(np.int32)
        m[:, 0] = 1
        visible &= m[:, None, :] != 0
        values['mask_index'] = m
        inputs.append(('mask_index', TensorProto.INT32, ['batch', 'seq']))
    elif mask_kind == 'mask3d':
        m = (rng.random((B, S, S)) < 0.7).astype(np.int32)
        m[:, :, 0] = 1
        visible &= m != 0
        values['mask_index'] = m
        inputs.append(('mask_index', TensorProto.INT32, ['batch', 'seq', 'seq']))
    if mask_kind:
        att_inputs.append('mask_index')
    out = 'attn' if out_proj else 'y'
    nodes = [helper.make_node('Attention', att_inputs, [out], name='attention',
                              domain='com.microsoft', num_heads=H, unidirectional=causal)]
    inits = [('W', W), ('bias', bias)]
    x64 = x.astype(np.float64)
    qkv = x64 @ W.astype(np.float64) + bias
    o = attend(qkv[..., :D], qkv[..., D:2 * D], qkv[..., 2 * D:], H, causal, visible)
    if out_proj:
        nodes += [helper.make_node('MatMul', ['attn', 'Wo'], ['o_mm']),
                  helper.make_node('Add', ['o_mm', 'bo'], ['y'])]
        inits += [('Wo', Wo), ('bo', bo)]
        o = o @ Wo.astype(np.float64) + bo
    save_case(root, name, nodes, inits, inputs, 'y', ['batch', 'seq', D], values, o)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    ms_mha_case(root, 'ms_mha_d32_h4_b2_s5', 32, 4, 2, 5, 0, 7001)
    ms_mha_case(root, 'ms_mha_causal_d32_h4_b2_s6', 32, 4, 2, 6, 1, 7002)
    ms_attention_case(root, 'ms_attention_d32_h4_b2_s5', 32, 4, 2, 5, 0, None, True, 7101)
    ms_attention_case(root, 'ms_attention_noproj_causal_d16_h2_b2_s6', 16, 2, 2, 6, 1, None,
                      False, 7102)
    ms_attention_case(root, 'ms_attention_keylen_d32_h4_b3_s6', 32, 4, 3, 6, 0, 'lengths', True,
                      7103)
    ms_attention_case(root, 'ms_attention_keymask_d32_h4_b2_s7', 32, 4, 2, 7, 0, 'keymask', True,
                      7104)
    ms_attention_case(root, 'ms_attention_mask3d_d16_h2_b2_s5', 16, 2, 2, 5, 0, 'mask3d', True,
                      7105)
    ms_attention_case(root, 'ms_attention_keylen_causal_d16_h4_b2_s6', 16, 4, 2, 6, 1, 'lengths',
                      True, 7106)


if __name__ == '__main__':
    main()
