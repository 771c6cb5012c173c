/* gen_layer.c -- one attention layer for `mha gen` (see gen.h), by default
 * in the form of tests/data/conformance/mha_self_*:
 *
 *   query [batch, seq, D]
 *     -> MatMul(q_proj.weight [D, H*dh]) (+ Add q_proj.bias)      q_3d
 *     -> MatMul(k_proj.weight [D, Hkv*dh]) (+ Add k_proj.bias)    k_3d
 *     -> MatMul(v_proj.weight [D, Hkv*dh]) (+ Add v_proj.bias)    v_3d
 *   Attention(q_3d, k_3d, v_3d; q_num_heads H, kv_num_heads Hkv[, is_causal])
 *     -> MatMul(out_proj.weight [H*dh, D]) (+ Add out_proj.bias)  output [batch, seq, D]
 *
 * opset 23, IR version 11 (attention23). The same layer -- same seed, same
 * weights, same projections -- can be written with the middle step in two
 * other forms, so engines can be compared on each:
 *   ms_mha      com.microsoft MultiHeadAttention(q_3d, k_3d, v_3d;
 *               num_heads H, scale[, unidirectional]); opset 17
 *   decomposed  plain opset-17 ops: Reshape to [B, S, H, dh], Transpose
 *               (K to [B, H, dh, S]), MatMul, Mul(scale), [Add of a causal
 *               -inf mask built from Shape / Range / Greater / Where],
 *               Softmax, MatMul, Transpose, Reshape
 *
 * Weights ~ U(-1, 1) / sqrt(D), drawn in the order q, k, v, out (each
 * weight, then its bias). */
#include <math.h>

#include "gen.h"
#include "mha/mha.h"

/* Node helpers of this file: its names are its own (not PyTorch's). */
static ow_msg *layer_node(ow_writer *w, const char *op, const char *name, const char *in0,
                          const char *in1, const char *in2, const char *out) {
    const char *ins[4] = {in0, in1, in2, NULL};
    const char *outs[2] = {out, NULL};
    return ow_node(w, op, name, ins, outs);
}

static void layer_perm(ow_msg *n, int64_t p0, int64_t p1, int64_t p2, int64_t p3) {
    const int64_t perm[4] = {p0, p1, p2, p3};
    ow_attr_ints(n, "perm", perm, 4);
}

/* The decomposed middle step: q_3d, k_3d, v_3d [B, S, H*dh] -> attn_out
 * [B, S, H*dh]. */
static void layer_decomposed(ow_writer *w, const gen_params *p, int64_t dh) {
    const int64_t bshd[4] = {0, 0, p->heads, dh}, bsd[3] = {0, 0, p->heads * dh};
    const float scale = (float)(1.0 / sqrt((double)dh));
    ow_ints(w, "shape_bshd", bshd, 4);
    ow_ints(w, "shape_bsd", bsd, 3);
    ow_floats(w, "attn_scale", &scale, 0);
    layer_node(w, "Reshape", "q_reshape", "q_3d", "shape_bshd", NULL, "q_4d");
    layer_node(w, "Reshape", "k_reshape", "k_3d", "shape_bshd", NULL, "k_4d");
    layer_node(w, "Reshape", "v_reshape", "v_3d", "shape_bshd", NULL, "v_4d");
    /* q, v -> [B, H, S, dh]; k -> [B, H, dh, S] */
    layer_perm(layer_node(w, "Transpose", "q_transpose", "q_4d", NULL, NULL, "q_t"), 0, 2, 1, 3);
    layer_perm(layer_node(w, "Transpose", "k_transpose", "k_4d", NULL, NULL, "k_t"), 0, 2, 3, 1);
    layer_perm(layer_node(w, "Transpose", "v_transpose", "v_4d", NULL, NULL, "v_t"), 0, 2, 1, 3);
    layer_node(w, "MatMul", "qk_matmul", "q_t", "k_t", NULL, "qk");
    layer_node(w, "Mul", "qk_scale", "qk", "attn_scale", NULL, "qk_s");
    const char *scores = "qk_s";
    if (p->causal) {
        /* mask[i, j] = -inf where j > i, from the runtime sequence length */
        const int64_t one = 1, zero = 0;
        const float neg_inf = -INFINITY, zero_f = 0.0f;
        ow_ints(w, "seq_axis", &one, 1);
        ow_ints(w, "zero_i", &zero, 0);
        ow_ints(w, "one_i", &one, 0);
        ow_ints(w, "axis0", &zero, 1);
        ow_ints(w, "axis1", &one, 1);
        ow_floats(w, "neg_inf", &neg_inf, 0);
        ow_floats(w, "zero_f", &zero_f, 0);
        layer_node(w, "Shape", "mask_shape", "query", NULL, NULL, "x_shape");
        ow_attr_int(layer_node(w, "Gather", "mask_gather", "x_shape", "seq_axis", NULL, "seq_1d"),
                    "axis", 0);
        layer_node(w, "Squeeze", "mask_squeeze", "seq_1d", "axis0", NULL, "seq_len");
        layer_node(w, "Range", "mask_range", "zero_i", "seq_len", "one_i", "pos");
        layer_node(w, "Unsqueeze", "mask_rows", "pos", "axis1", NULL, "pos_rows");
        layer_node(w, "Unsqueeze", "mask_cols", "pos", "axis0", NULL, "pos_cols");
        layer_node(w, "Greater", "mask_greater", "pos_cols", "pos_rows", NULL, "future");
        layer_node(w, "Where", "mask_where", "future", "neg_inf", "zero_f", "causal_mask");
        layer_node(w, "Add", "qk_mask", "qk_s", "causal_mask", NULL, "qk_m");
        scores = "qk_m";
    }
    ow_attr_int(layer_node(w, "Softmax", "softmax", scores, NULL, NULL, "probs"), "axis", -1);
    layer_node(w, "MatMul", "pv_matmul", "probs", "v_t", NULL, "ctx");
    layer_perm(layer_node(w, "Transpose", "ctx_transpose", "ctx", NULL, NULL, "ctx_t"), 0, 2, 1, 3);
    layer_node(w, "Reshape", "ctx_reshape", "ctx_t", "shape_bsd", NULL, "attn_out");
}

ow_writer *gen_layer(const gen_params *p) {
    const int opset17 = p->form != GEN_FORM_ATTENTION23;
    ow_writer *w = ow_create(opset17 ? 8 : 11, opset17 ? 17 : 23, p->form == GEN_FORM_MS_MHA,
                             MHA_VERSION_STRING, p->name);
    if (!w) return NULL;
    int64_t D = p->d, dh = p->d / p->heads, dq = p->heads * dh, dkv = p->kv_heads * dh;
    float scale = (float)(1.0 / sqrt((double)D));
    uint64_t seed = p->seed;
    static const char *names[4][7] = {
        {"q_proj.weight", "q_proj.bias", "q_proj_matmul", "q_proj_add", "q_mm", "q_3d"},
        {"k_proj.weight", "k_proj.bias", "k_proj_matmul", "k_proj_add", "k_mm", "k_3d"},
        {"v_proj.weight", "v_proj.bias", "v_proj_matmul", "v_proj_add", "v_mm", "v_3d"},
        {"out_proj.weight", "out_proj.bias", "out_proj_matmul", "out_proj_add", "o_mm", "output"},
    };
    const int64_t dims[4][2] = {{D, dq}, {D, dkv}, {D, dkv}, {dq, D}};
    for (int k = 0; k < 4; k++) {
        ow_random(w, names[k][0], 2, dims[k], scale, 0.0f, &seed);
        if (p->bias) ow_random(w, names[k][1], 1, &dims[k][1], scale, 0.0f, &seed);
    }
    /* the projections, the attention, the output projection */
    for (int k = 0; k < 3; k++) {
        const char *mm_out = p->bias ? names[k][4] : names[k][5];
        layer_node(w, "MatMul", names[k][2], "query", names[k][0], NULL, mm_out);
        if (p->bias) layer_node(w, "Add", names[k][3], names[k][4], names[k][1], NULL, names[k][5]);
    }
    if (p->form == GEN_FORM_ATTENTION23) {
        ow_msg *att = layer_node(w, "Attention", "attention", "q_3d", "k_3d", "v_3d", "attn_out");
        if (p->causal) ow_attr_int(att, "is_causal", 1);
        ow_attr_int(att, "kv_num_heads", p->kv_heads);
        ow_attr_int(att, "q_num_heads", p->heads);
    } else if (p->form == GEN_FORM_MS_MHA) {
        ow_msg *att =
            layer_node(w, "MultiHeadAttention", "mha", "q_3d", "k_3d", "v_3d", "attn_out");
        ow_attr_int(att, "num_heads", p->heads);
        ow_attr_float(att, "scale", (float)(1.0 / sqrt((double)dh)));
        if (p->causal) ow_attr_int(att, "unidirectional", 1);
        ow_domain(att, "com.microsoft");
    } else {
        layer_decomposed(w, p, dh);
    }
    layer_node(w, "MatMul", names[3][2], "attn_out", names[3][0], NULL,
               p->bias ? names[3][4] : names[3][5]);
    if (p->bias) layer_node(w, "Add", names[3][3], names[3][4], names[3][1], NULL, names[3][5]);

    const int64_t io_dims[3] = {-1, -1, D};
    const char *const axes[3] = {"batch", "seq", NULL};
    ow_input(w, "query", OW_FLOAT, 3, io_dims, axes);
    ow_output(w, "output", OW_FLOAT, 3, io_dims, axes);
    return w;
}
