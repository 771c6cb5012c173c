/* gen_blocks.c -- the pieces of a transformer as PyTorch 1.13 exports them
 * (opset 17), for `mha gen` (see gen.h): so that a generated model goes
 * through the same recogniser and plan paths as a real export. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "gen.h"

#define GEN_MAX_INPUTS 8

/* A node's name under prefix: "/<prefix>/<op>". */
#define NAME(op) ow_fmt(g->w, "/%s/" op, prefix)

const char *gen_op(gen_graph *g, ow_msg **node, const char *op, const char *name, ...) {
    const char *ins[GEN_MAX_INPUTS + 1];
    size_t n = 0;
    va_list ap;
    va_start(ap, name);
    for (const char *s; n < GEN_MAX_INPUTS && (s = va_arg(ap, const char *));)
        ins[n++] = s;
    va_end(ap);
    ins[n] = NULL;
    const char *out = g->out_name ? g->out_name : ow_fmt(g->w, "%s_output_0", name);
    g->out_name = NULL;
    const char *outs[2] = {out, NULL};
    ow_msg *m = ow_node(g->w, op, name, ins, outs);
    if (node) *node = m;
    return out;
}

const char *gen_const_f(gen_graph *g, float v) {
    const char *name = ow_fmt(g->w, "/Constant_%d_output_0", g->n_const++);
    ow_floats(g->w, name, &v, 0);
    return name;
}

const char *gen_const_iv(gen_graph *g, const int64_t *v, size_t n) {
    const char *name = ow_fmt(g->w, "/Constant_%d_output_0", g->n_const++);
    ow_ints(g->w, name, v, n);
    return name;
}

const char *gen_const_i(gen_graph *g, int64_t v) {
    return gen_const_iv(g, &v, 0);
}

const char *gen_linear(gen_graph *g, const char *prefix, const char *x, int64_t in, int64_t out,
                       int bias) {
    const char *final = g->out_name; /* for the last node only */
    g->out_name = NULL;
    const char *wname = ow_fmt(g->w, "%s.weight", prefix);
    int64_t dims[2] = {in, out};
    float scale = (float)(1.0 / sqrt((double)in));
    ow_random(g->w, wname, 2, dims, scale, 0.0f, &g->seed);
    if (!bias) g->out_name = final;
    const char *y = gen_op(g, NULL, "MatMul", ow_fmt(g->w, "/%s/MatMul", prefix), x, wname, NULL);
    if (!bias) return y;
    g->out_name = final;
    const char *bname = ow_fmt(g->w, "%s.bias", prefix);
    ow_random(g->w, bname, 1, &dims[1], scale, 0.0f, &g->seed);
    return gen_op(g, NULL, "Add", ow_fmt(g->w, "/%s/Add", prefix), bname, y, NULL);
}

/* Norm parameters: weights near 1, biases near 0 (random, so that a norm
 * that dropped them would be caught). */
static const char *gen_norm_param(gen_graph *g, const char *prefix, const char *what, int64_t d,
                                  float offset) {
    const char *name = ow_fmt(g->w, "%s.%s", prefix, what);
    ow_random(g->w, name, 1, &d, 0.25f, offset, &g->seed);
    return name;
}

const char *gen_norm(gen_graph *g, int norm, const char *prefix, const char *x, int64_t d) {
    const char *final = g->out_name; /* for the last node only */
    g->out_name = NULL;
    const char *wt = gen_norm_param(g, prefix, "weight", d, 1.0f);
    const int64_t last[1] = {-1};
    ow_msg *n;
    if (norm == GEN_NORM_RMSNORM) {
        /* x * (1 / sqrt(mean(x^2) + eps)) * weight */
        const char *sq = gen_op(g, NULL, "Pow", NAME("Pow"), x, gen_const_f(g, 2.0f), NULL);
        const char *ms = gen_op(g, &n, "ReduceMean", NAME("ReduceMean"), sq, NULL);
        ow_attr_ints(n, "axes", last, 1);
        ow_attr_int(n, "keepdims", 1);
        const char *va = gen_op(g, NULL, "Add", NAME("Add"), ms, gen_const_f(g, 1e-6f), NULL);
        const char *sd = gen_op(g, NULL, "Sqrt", NAME("Sqrt"), va, NULL);
        const char *inv = gen_op(g, NULL, "Div", NAME("Div"), gen_const_f(g, 1.0f), sd, NULL);
        const char *xn = gen_op(g, NULL, "Mul", NAME("Mul"), x, inv, NULL);
        g->out_name = final;
        return gen_op(g, NULL, "Mul", NAME("Mul_1"), wt, xn, NULL);
    }
    const char *bias = gen_norm_param(g, prefix, "bias", d, 0.0f);
    if (norm == GEN_NORM_LAYERNORM_OP) {
        g->out_name = final;
        const char *y =
            gen_op(g, &n, "LayerNormalization", NAME("LayerNormalization"), x, wt, bias, NULL);
        ow_attr_int(n, "axis", -1);
        ow_attr_float(n, "epsilon", 1e-12f);
        return y;
    }
    /* (x - mean) / sqrt(var + eps) * weight + bias */
    const char *mu = gen_op(g, &n, "ReduceMean", NAME("ReduceMean"), x, NULL);
    ow_attr_ints(n, "axes", last, 1);
    const char *xc = gen_op(g, NULL, "Sub", NAME("Sub"), x, mu, NULL);
    const char *sq = gen_op(g, NULL, "Pow", NAME("Pow"), xc, gen_const_f(g, 2.0f), NULL);
    const char *var = gen_op(g, &n, "ReduceMean", NAME("ReduceMean_1"), sq, NULL);
    ow_attr_ints(n, "axes", last, 1);
    const char *va = gen_op(g, NULL, "Add", NAME("Add"), var, gen_const_f(g, 1e-12f), NULL);
    const char *sd = gen_op(g, NULL, "Sqrt", NAME("Sqrt"), va, NULL);
    const char *xn = gen_op(g, NULL, "Div", NAME("Div"), xc, sd, NULL);
    const char *y = gen_op(g, NULL, "Mul", NAME("Mul"), xn, wt, NULL);
    g->out_name = final;
    return gen_op(g, NULL, "Add", NAME("Add_1"), y, bias, NULL);
}

/* The activation after the up projection h (GELU erf as nn.GELU writes it,
 * GELU tanh as GPT-2's gelu_new, ReLU). */
static const char *gen_activation(gen_graph *g, int act, const char *prefix, const char *h) {
    if (act == GEN_ACT_RELU) return gen_op(g, NULL, "Relu", NAME("Relu"), h, NULL);
    if (act == GEN_ACT_GELU) {
        /* x * 0.5 * (1 + erf(x / sqrt(2))) */
        const char *a = gen_op(g, NULL, "Div", NAME("Div"), h, gen_const_f(g, 1.4142135f), NULL);
        const char *e = gen_op(g, NULL, "Erf", NAME("Erf"), a, NULL);
        const char *b = gen_op(g, NULL, "Add", NAME("Add"), e, gen_const_f(g, 1.0f), NULL);
        const char *c = gen_op(g, NULL, "Mul", NAME("Mul"), h, b, NULL);
        return gen_op(g, NULL, "Mul", NAME("Mul_1"), c, gen_const_f(g, 0.5f), NULL);
    }
    /* 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) */
    const char *half = gen_op(g, NULL, "Mul", NAME("Mul"), h, gen_const_f(g, 0.5f), NULL);
    const char *cube = gen_op(g, NULL, "Pow", NAME("Pow"), h, gen_const_f(g, 3.0f), NULL);
    const char *c3 = gen_op(g, NULL, "Mul", NAME("Mul_1"), cube, gen_const_f(g, 0.044715f), NULL);
    const char *in = gen_op(g, NULL, "Add", NAME("Add"), h, c3, NULL);
    const char *sc = gen_op(g, NULL, "Mul", NAME("Mul_2"), in,
                            gen_const_f(g, (float)sqrt(2.0 / 3.14159265358979323846)), NULL);
    const char *t = gen_op(g, NULL, "Tanh", NAME("Tanh"), sc, NULL);
    const char *t1 = gen_op(g, NULL, "Add", NAME("Add_1"), t, gen_const_f(g, 1.0f), NULL);
    return gen_op(g, NULL, "Mul", NAME("Mul_3"), half, t1, NULL);
}

const char *gen_ffn(gen_graph *g, const gen_params *p, const char *prefix, const char *x) {
    const char *h;
    if (p->act == GEN_ACT_SWIGLU) {
        /* LLaMA: down(silu(gate(x)) * up(x)), silu(a) = a * sigmoid(a) */
        const char *gate = gen_linear(g, ow_fmt(g->w, "%s.gate", prefix), x, p->d, p->ffn, p->bias);
        const char *up = gen_linear(g, ow_fmt(g->w, "%s.up", prefix), x, p->d, p->ffn, p->bias);
        const char *sg = gen_op(g, NULL, "Sigmoid", NAME("Sigmoid"), gate, NULL);
        const char *silu = gen_op(g, NULL, "Mul", NAME("Mul"), gate, sg, NULL);
        h = gen_op(g, NULL, "Mul", NAME("Mul_1"), silu, up, NULL);
    } else {
        h = gen_linear(g, ow_fmt(g->w, "%s.fc1", prefix), x, p->d, p->ffn, p->bias);
        h = gen_activation(g, p->act, prefix, h);
    }
    return gen_linear(g, ow_fmt(g->w, "%s.fc2", prefix), h, p->ffn, p->d, p->bias);
}

/* One of q, k, v [B, S, n*dh] in head layout: [B, n, S, dh] (perm 0 2 1 3)
 * or, for K, [B, n, dh, S] (perm 0 2 3 1). */
static const char *gen_heads(gen_graph *g, const char *prefix, const char *which, const char *x,
                             int64_t n, int64_t dh, const int64_t perm[4]) {
    const int64_t shape[4] = {0, 0, n, dh};
    const char *r = gen_op(g, NULL, "Reshape", ow_fmt(g->w, "/%s/%s/Reshape", prefix, which), x,
                           gen_const_iv(g, shape, 4), NULL);
    ow_msg *t;
    const char *y =
        gen_op(g, &t, "Transpose", ow_fmt(g->w, "/%s/%s/Transpose", prefix, which), r, NULL);
    ow_attr_ints(t, "perm", perm, 4);
    return y;
}

/* [B, kv, S, dh] -> [B, H, S, dh]: each kv head repeated H / kv times in a
 * row (LLaMA's repeat_kv: Unsqueeze, Expand, Reshape). */
static const char *gen_repeat_kv(gen_graph *g, const char *prefix, const char *which, const char *x,
                                 int64_t heads, int64_t kv_heads, int64_t dh) {
    const int64_t axis[1] = {2}, rep[5] = {1, 1, heads / kv_heads, 1, 1};
    const int64_t shape[4] = {0, heads, -1, dh};
    const char *u = gen_op(g, NULL, "Unsqueeze", ow_fmt(g->w, "/%s/%s/Unsqueeze", prefix, which), x,
                           gen_const_iv(g, axis, 1), NULL);
    const char *e = gen_op(g, NULL, "Expand", ow_fmt(g->w, "/%s/%s/Expand", prefix, which), u,
                           gen_const_iv(g, rep, 5), NULL);
    return gen_op(g, NULL, "Reshape", ow_fmt(g->w, "/%s/%s/Reshape_1", prefix, which), e,
                  gen_const_iv(g, shape, 4), NULL);
}

const char *gen_attention_core(gen_graph *g, const char *prefix, const char *q, const char *k,
                               const char *v, int64_t heads, int64_t kv_heads, int64_t dh,
                               const char *mask) {
    static const int64_t bhsd[4] = {0, 2, 1, 3}, bhds[4] = {0, 2, 3, 1}, to_ds[4] = {0, 1, 3, 2};
    const char *qh = gen_heads(g, prefix, "q", q, heads, dh, bhsd);
    const char *kh, *vh = gen_heads(g, prefix, "v", v, kv_heads, dh, bhsd);
    if (kv_heads == heads) {
        kh = gen_heads(g, prefix, "k", k, heads, dh, bhds);
    } else {
        kh = gen_repeat_kv(g, prefix, "k", gen_heads(g, prefix, "k", k, kv_heads, dh, bhsd), heads,
                           kv_heads, dh);
        ow_msg *t;
        kh = gen_op(g, &t, "Transpose", ow_fmt(g->w, "/%s/k/Transpose_1", prefix), kh, NULL);
        ow_attr_ints(t, "perm", to_ds, 4);
        vh = gen_repeat_kv(g, prefix, "v", vh, heads, kv_heads, dh);
    }
    const char *s = gen_op(g, NULL, "MatMul", NAME("MatMul"), qh, kh, NULL);
    s = gen_op(g, NULL, "Div", NAME("Div"), s, gen_const_f(g, (float)sqrt((double)dh)), NULL);
    if (mask) s = gen_op(g, NULL, "Add", NAME("Add"), s, mask, NULL);
    ow_msg *n;
    const char *pr = gen_op(g, &n, "Softmax", NAME("Softmax"), s, NULL);
    ow_attr_int(n, "axis", -1);
    const char *c = gen_op(g, NULL, "MatMul", NAME("MatMul_1"), pr, vh, NULL);
    c = gen_op(g, &n, "Transpose", NAME("Transpose"), c, NULL);
    ow_attr_ints(n, "perm", bhsd, 4);
    const int64_t bsd[3] = {0, 0, heads * dh};
    return gen_op(g, NULL, "Reshape", NAME("Reshape"), c, gen_const_iv(g, bsd, 3), NULL);
}

const char *gen_positions(gen_graph *g, const char *prefix, const char *like) {
    ow_msg *n;
    const char *shape = gen_op(g, NULL, "Shape", NAME("Shape"), like, NULL);
    const char *len = gen_op(g, &n, "Gather", NAME("Gather"), shape, gen_const_i(g, 1), NULL);
    ow_attr_int(n, "axis", 0);
    /* one statement per constant: their numbering must not depend on the
     * order in which a compiler evaluates arguments */
    const char *start = gen_const_i(g, 0);
    const char *step = gen_const_i(g, 1);
    return gen_op(g, NULL, "Range", NAME("Range"), start, len, step, NULL);
}

const char *gen_causal_mask(gen_graph *g, const char *prefix, const char *pos) {
    const int64_t zero[1] = {0}, one[1] = {1};
    const char *rows =
        gen_op(g, NULL, "Unsqueeze", NAME("Unsqueeze"), pos, gen_const_iv(g, one, 1), NULL);
    const char *cols =
        gen_op(g, NULL, "Unsqueeze", NAME("Unsqueeze_1"), pos, gen_const_iv(g, zero, 1), NULL);
    const char *future = gen_op(g, NULL, "Greater", NAME("Greater"), cols, rows, NULL);
    const char *hidden = gen_const_f(g, -INFINITY);
    const char *seen = gen_const_f(g, 0.0f);
    return gen_op(g, NULL, "Where", NAME("Where"), future, hidden, seen, NULL);
}
#undef NAME
