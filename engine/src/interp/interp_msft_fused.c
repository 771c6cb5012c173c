/* interp_msft_fused.c -- the com.microsoft ops ONNX Runtime's optimizer
 * writes when it saves a model it fused (`optimized_model_filepath` at
 * level `extended`, optimum's ORTOptimizer), as its contrib-op
 * documentation defines them:
 *
 *   FusedMatMul(A, B)        alpha * op(A) . op(B) (MatMul broadcasting;
 *                            transA / transB swap the last two axes;
 *                            transBatchA / B are refused)
 *   FusedGemm(A, B, C)       activation(Gemm(A, B, C)): Relu, Tanh,
 *                            Sigmoid, LeakyRelu (activation_alpha)
 *   Gelu(X)                  0.5 x (1 + erf(x / sqrt 2))
 *   BiasGelu(A, bias)        Gelu(A + bias), bias [D] on the last axis
 *   FastGelu(X, bias?)       the tanh form of (X + bias)
 *   SkipLayerNormalization(input, skip, gamma, beta?, bias?)
 *       s = input + skip + bias (skip [.., S, D] or [S, D] / [1, S, D]),
 *       output = (s - mean) / sqrt(var + epsilon) * gamma + beta over the
 *       last axis; outputs output, mean, inv_std_var, s (the later ones
 *       optional)
 *   SkipSimplifiedLayerNormalization, SimplifiedLayerNormalization: the
 *       same with the RMS (no mean, no beta)
 * In double, like the interpreter's other ops. */
#include "interp_internal.h"

#include <math.h>
#include <string.h>

/* ---- products ---- */

static void fused_scale(tensor *y, double alpha) {
    const int64_t n = tensor_numel(y);
    for (int64_t i = 0; alpha != 1.0 && i < n; i++)
        tensor_set_f64(y, i, alpha * tensor_get_f64(y, i));
}

mha_status interp_op_ms_fused_matmul(interp_ctx *c) {
    int64_t ta, tb, tba, tbb;
    float alpha;
    mha_status st = interp_attr_int(c, "transA", 0, &ta);
    if (st == MHA_OK) st = interp_attr_int(c, "transB", 0, &tb);
    if (st == MHA_OK) st = interp_attr_int(c, "transBatchA", 0, &tba);
    if (st == MHA_OK) st = interp_attr_int(c, "transBatchB", 0, &tbb);
    if (st == MHA_OK) st = interp_attr_float(c, "alpha", 1.0f, &alpha);
    if (st != MHA_OK) return st;
    if (tba || tbb)
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED,
                           "transBatchA / transBatchB are not supported (only transA / transB "
                           "of the last two axes)");
    /* op(A), op(B): the last two axes of a transposed operand swapped into
     * a copy, then the MatMul of the copies */
    tensor *tin[2] = {NULL, NULL}, *ins[2];
    const int trans[2] = {ta != 0, tb != 0};
    for (int i = 0; i < 2 && st == MHA_OK; i++) {
        ins[i] = i < (int)c->n_in ? c->in[i] : NULL;
        if (!trans[i] || !ins[i]) continue;
        const tensor *x = ins[i];
        if (x->rank < 2) {
            st = interp_fail(c, MHA_ERR_SHAPE, "transA / transB on an input of rank %d", x->rank);
            break;
        }
        int64_t dims[MHA_MAX_RANK];
        memcpy(dims, x->dims, sizeof(int64_t) * (size_t)x->rank);
        const int64_t r = dims[x->rank - 2], k = dims[x->rank - 1];
        dims[x->rank - 2] = k, dims[x->rank - 1] = r;
        st = tensor_new(c->a, x->dtype, x->rank, dims, &tin[i], c->err);
        if (st != MHA_OK) break;
        const size_t es = mha_dtype_size(x->dtype);
        const int64_t mats = r * k > 0 ? tensor_numel(x) / (r * k) : 0;
        for (int64_t m = 0; m < mats; m++)
            for (int64_t a = 0; a < r; a++)
                for (int64_t b = 0; b < k; b++)
                    memcpy((char *)tin[i]->data + (size_t)(m * r * k + b * r + a) * es,
                           (const char *)x->data + (size_t)(m * r * k + a * k + b) * es, es);
        ins[i] = tin[i];
    }
    if (st == MHA_OK) {
        interp_ctx t = *c;
        t.in = ins;
        t.n_in = c->n_in < 2 ? c->n_in : 2;
        st = interp_op_matmul(&t);
    }
    tensor_free(tin[0]);
    tensor_free(tin[1]);
    if (st == MHA_OK && interp_is_float(c->out[0]->dtype)) fused_scale(c->out[0], alpha);
    return st;
}

/* activation(x) of FusedGemm, or NAN for an unknown one */
static double fused_activation(const char *act, double alpha, double x) {
    if (strcmp(act, "Relu") == 0) return x > 0 ? x : 0.0;
    if (strcmp(act, "Tanh") == 0) return tanh(x);
    if (strcmp(act, "Sigmoid") == 0) return 1.0 / (1.0 + exp(-x));
    if (strcmp(act, "LeakyRelu") == 0) return x >= 0 ? x : alpha * x;
    return NAN;
}

mha_status interp_op_ms_fused_gemm(interp_ctx *c) {
    const ir_attr *a = ir_node_attr(c->n, "activation");
    const char *act = a && a->type == IR_ATTR_STRING && a->s ? a->s : "";
    float alpha;
    mha_status st = interp_attr_float(c, "activation_alpha", 0.01f, &alpha);
    if (st != MHA_OK) return st;
    if (act[0] && isnan(fused_activation(act, alpha, 0.0)))
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED, "activation '%s' is not supported", act);
    st = interp_op_gemm(c);
    if (st != MHA_OK || !act[0]) return st;
    tensor *y = c->out[0];
    const int64_t n = tensor_numel(y);
    for (int64_t i = 0; i < n; i++)
        tensor_set_f64(y, i, fused_activation(act, alpha, tensor_get_f64(y, i)));
    return MHA_OK;
}

/* ---- GELU ---- */

/* x + bias[i % D] (bias may be NULL) through GELU, erf or tanh form. */
static mha_status fused_gelu(interp_ctx *c, size_t max_in, int tanh_form, int bias_req) {
    const tensor *X, *Bias = NULL;
    char s0[INTERP_SHAPE_BUF];
    mha_status st = interp_check_arity(c, bias_req ? 2 : 1, max_in, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &X);
    if (st != MHA_OK) return st;
    if (max_in > 1) Bias = interp_in(c, 1);
    if (!interp_is_float(X->dtype) || (Bias && Bias->dtype != X->dtype))
        return interp_fail(c, MHA_ERR_DTYPE, "input and bias must share one float type (%s)",
                           mha_dtype_name(X->dtype));
    const int64_t D = X->rank > 0 ? X->dims[X->rank - 1] : 1;
    if (Bias && (Bias->rank != 1 || Bias->dims[0] != D))
        return interp_fail(c, MHA_ERR_SHAPE, "bias %s must be [%lld] (the last axis)",
                           interp_shape(Bias, s0), (long long)D);
    tensor *Y;
    st = interp_out_new(c, 0, X->dtype, X->rank, X->dims, &Y);
    if (st != MHA_OK) return st;
    const int64_t n = tensor_numel(X);
    for (int64_t i = 0; i < n; i++) {
        double x = tensor_get_f64(X, i) + (Bias ? tensor_get_f64(Bias, i % D) : 0.0);
        double g = tanh_form
                       ? 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)))
                       : 0.5 * x * (1.0 + erf(x * 0.7071067811865476));
        tensor_set_f64(Y, i, g);
    }
    return MHA_OK;
}

mha_status interp_op_ms_gelu(interp_ctx *c) {
    return fused_gelu(c, 1, 0, 0);
}
mha_status interp_op_ms_bias_gelu(interp_ctx *c) {
    return fused_gelu(c, 2, 0, 1);
}
mha_status interp_op_ms_fast_gelu(interp_ctx *c) {
    return fused_gelu(c, 2, 1, 0);
}

/* The default domain's Gelu (opset 20): approximate 'none' (erf) or 'tanh',
 * which PyTorch 2.1+ writes for F.gelu at opset 20. */
mha_status interp_op_gelu(interp_ctx *c) {
    const ir_attr *a = ir_node_attr(c->n, "approximate");
    if (a && (a->type != IR_ATTR_STRING || !a->s))
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "attribute 'approximate' must be a string");
    const int tanh_form = a && strcmp(a->s, "tanh") == 0;
    if (a && !tanh_form && strcmp(a->s, "none") != 0)
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "approximate '%.40s' is not none or tanh",
                           a->s);
    return fused_gelu(c, 1, tanh_form, 0);
}

/* ---- the norms ---- */

/* One row s[0..D) normalised about mean into Y[off..off + D): (s - mean) /
 * sqrt(mean((s - mean)^2) + eps) * gamma + beta; *inv the 1 / sqrt. */
static void fused_norm_row(const double *s, int64_t D, double mean, float eps, const tensor *G,
                           const tensor *Beta, tensor *Y, int64_t off, double *inv) {
    double var = 0.0;
    for (int64_t i = 0; i < D; i++)
        var += (s[i] - mean) * (s[i] - mean);
    *inv = 1.0 / sqrt(var / (double)(D > 0 ? D : 1) + (double)eps);
    for (int64_t i = 0; i < D; i++)
        tensor_set_f64(Y, off + i,
                       (s[i] - mean) * *inv * tensor_get_f64(G, i) +
                           (Beta ? tensor_get_f64(Beta, i) : 0.0));
}

/* (Skip)(Simplified)LayerNormalization over the last axis. first_gamma:
 * the input index of gamma (2 with a skip, 1 without). */
static mha_status fused_norm(interp_ctx *c, int skip, int rms) {
    const tensor *X, *Skip = NULL, *G, *Beta = NULL, *Bias = NULL;
    float eps;
    char s0[INTERP_SHAPE_BUF], s1[INTERP_SHAPE_BUF];
    const size_t g = skip ? 2 : 1;
    const size_t max_in = skip ? (rms ? 4 : 5) : (rms ? 2 : 3);
    mha_status st = interp_check_arity(c, g + 1, max_in, 1, 4);
    if (st == MHA_OK) st = interp_in_req(c, 0, &X);
    if (st == MHA_OK && skip) st = interp_in_req(c, 1, &Skip);
    if (st == MHA_OK) st = interp_in_req(c, g, &G);
    if (st == MHA_OK) st = interp_attr_float(c, "epsilon", 1e-5f, &eps);
    if (st != MHA_OK) return st;
    if (!rms) Beta = interp_in(c, g + 1);
    if (skip) Bias = interp_in(c, rms ? g + 1 : g + 2);
    if (X->rank < 1 || !interp_is_float(X->dtype))
        return interp_fail(c, MHA_ERR_DTYPE, "input must be a float tensor with an axis");
    const int64_t D = X->dims[X->rank - 1], rows = tensor_numel(X) / (D > 0 ? D : 1);
    const tensor *vec[3] = {G, Beta, Bias};
    for (int k = 0; k < 3; k++)
        if (vec[k] && (vec[k]->dtype != X->dtype || tensor_numel(vec[k]) != D))
            return interp_fail(c, MHA_ERR_SHAPE,
                               "gamma, beta and bias must be %s [%lld], one is %s",
                               mha_dtype_name(X->dtype), (long long)D, interp_shape(vec[k], s0));
    int64_t skip_rows = rows;
    if (Skip) {
        /* skip: the input's shape, or its last two axes (shared by the batch) */
        const int64_t ns = tensor_numel(Skip);
        skip_rows = ns / (D > 0 ? D : 1);
        if (Skip->dtype != X->dtype || Skip->dims[Skip->rank - 1] != D || skip_rows == 0 ||
            rows % skip_rows != 0)
            return interp_fail(c, MHA_ERR_SHAPE, "skip %s does not fit input %s",
                               interp_shape(Skip, s0), interp_shape(X, s1));
    }
    tensor *Y, *M = NULL, *R = NULL, *Sum = NULL;
    int64_t stat_dims[MHA_MAX_RANK];
    for (int a = 0; a < X->rank; a++)
        stat_dims[a] = a < X->rank - 1 ? X->dims[a] : 1;
    st = interp_out_new(c, 0, X->dtype, X->rank, X->dims, &Y);
    if (st == MHA_OK && c->n_out > 1 && c->n->outputs[1] >= 0)
        st = interp_out_new(c, 1, MHA_DTYPE_FLOAT32, X->rank, stat_dims, &M);
    if (st == MHA_OK && c->n_out > 2 && c->n->outputs[2] >= 0)
        st = interp_out_new(c, 2, MHA_DTYPE_FLOAT32, X->rank, stat_dims, &R);
    if (st == MHA_OK && c->n_out > 3 && c->n->outputs[3] >= 0)
        st = interp_out_new(c, 3, X->dtype, X->rank, X->dims, &Sum);
    if (st != MHA_OK) return st;
    double *s = mha_malloc(c->a, (size_t)(D > 0 ? D : 1) * sizeof *s);
    if (!s)
        return interp_fail(c, MHA_ERR_NO_MEMORY, "out of memory for a row of %lld", (long long)D);
    for (int64_t r = 0; r < rows; r++) {
        double mean = 0.0;
        for (int64_t i = 0; i < D; i++) {
            s[i] = tensor_get_f64(X, r * D + i);
            if (Skip) s[i] += tensor_get_f64(Skip, (r % skip_rows) * D + i);
            if (Bias) s[i] += tensor_get_f64(Bias, i);
            if (Sum) tensor_set_f64(Sum, r * D + i, s[i]);
            mean += s[i];
        }
        double inv;
        mean = rms ? 0.0 : mean / (double)(D > 0 ? D : 1);
        fused_norm_row(s, D, mean, eps, G, Beta, Y, r * D, &inv);
        if (M) tensor_set_f64(M, r, mean);
        if (R) tensor_set_f64(R, r, inv);
    }
    mha_free(c->a, s);
    return MHA_OK;
}

mha_status interp_op_ms_skip_layer_norm(interp_ctx *c) {
    return fused_norm(c, 1, 0);
}
mha_status interp_op_ms_skip_simplified_layer_norm(interp_ctx *c) {
    return fused_norm(c, 1, 1);
}
mha_status interp_op_ms_simplified_layer_norm(interp_ctx *c) {
    return fused_norm(c, 0, 1);
}

/* EmbedLayerNormalization(input_ids, segment_ids?, word_embedding,
 * position_embedding, segment_embedding?, gamma, beta?, mask?,
 * position_ids?) -> output, mask_index?, embedding_sum?: BERT's embeddings
 * as ONNX Runtime's optimizer fuses them (ids int32):
 *     e = word[ids] + position[position_ids or s] + segment[segment_ids]
 *     output = LayerNorm(e) * gamma + beta (epsilon, default 1e-12)
 * mask_index [B] int32: the count of each row's ones in mask (0 without). */
mha_status interp_op_ms_embed_layer_norm(interp_ctx *c) {
    const tensor *ids, *W, *P, *G;
    float eps;
    char s0[INTERP_SHAPE_BUF];
    mha_status st = interp_check_arity(c, 6, 9, 1, 3);
    if (st == MHA_OK) st = interp_in_req(c, 0, &ids);
    if (st == MHA_OK) st = interp_in_req(c, 2, &W);
    if (st == MHA_OK) st = interp_in_req(c, 3, &P);
    if (st == MHA_OK) st = interp_in_req(c, 5, &G);
    if (st == MHA_OK) st = interp_attr_float(c, "epsilon", 1e-12f, &eps);
    if (st != MHA_OK) return st;
    const tensor *seg = interp_in(c, 1), *SE = interp_in(c, 4), *Beta = interp_in(c, 6);
    const tensor *mask = interp_in(c, 7), *pos = interp_in(c, 8);
    if (ids->rank != 2 || !interp_is_int(ids->dtype))
        return interp_fail(c, MHA_ERR_SHAPE, "input_ids must be integer [B, S], not %s %s",
                           mha_dtype_name(ids->dtype), interp_shape(ids, s0));
    const int64_t B = ids->dims[0], S = ids->dims[1];
    if (W->rank != 2 || W->dtype != MHA_DTYPE_FLOAT32)
        return interp_fail(c, MHA_ERR_SHAPE, "word_embedding must be float32 [V, H], not %s",
                           interp_shape(W, s0));
    const int64_t H = W->dims[1];
    const tensor *tables[2] = {P, SE};
    for (int k = 0; k < 2; k++)
        if (tables[k] && (tables[k]->rank != 2 || tables[k]->dims[1] != H ||
                          tables[k]->dtype != MHA_DTYPE_FLOAT32))
            return interp_fail(c, MHA_ERR_SHAPE, "the embedding tables must be float32 [*, %lld]",
                               (long long)H);
    if (tensor_numel(G) != H || (Beta && tensor_numel(Beta) != H))
        return interp_fail(c, MHA_ERR_SHAPE, "gamma and beta must hold %lld values", (long long)H);
    const tensor *rows[3] = {seg, mask, pos};
    for (int k = 0; k < 3; k++)
        if (rows[k] && (!interp_is_int(rows[k]->dtype) ||
                        (tensor_numel(rows[k]) != B * S && (k != 2 || tensor_numel(rows[k]) != S))))
            return interp_fail(c, MHA_ERR_SHAPE,
                               "segment_ids, mask and position_ids must be integer [%lld, %lld]",
                               (long long)B, (long long)S);
    if (seg && !SE)
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "segment_ids without a segment_embedding");
    const int64_t odims[3] = {B, S, H};
    tensor *Y, *MI = NULL, *Sum = NULL;
    st = interp_out_new(c, 0, MHA_DTYPE_FLOAT32, 3, odims, &Y);
    if (st == MHA_OK && c->n_out > 1 && c->n->outputs[1] >= 0)
        st = interp_out_new(c, 1, MHA_DTYPE_INT32, 1, odims, &MI);
    if (st == MHA_OK && c->n_out > 2 && c->n->outputs[2] >= 0)
        st = interp_out_new(c, 2, MHA_DTYPE_FLOAT32, 3, odims, &Sum);
    if (st != MHA_OK) return st;
    double *s = mha_malloc(c->a, (size_t)(H > 0 ? H : 1) * sizeof *s);
    if (!s)
        return interp_fail(c, MHA_ERR_NO_MEMORY, "out of memory for a row of %lld", (long long)H);
    for (int64_t r = 0; r < B * S && st == MHA_OK; r++) {
        const int64_t at[3] = {tensor_get_i64(ids, r),
                               pos ? tensor_get_i64(pos, tensor_numel(pos) == S ? r % S : r)
                                   : r % S,
                               seg ? tensor_get_i64(seg, r) : 0};
        const tensor *tab[3] = {W, P, seg ? SE : NULL};
        double mean = 0.0, inv;
        for (int k = 0; k < 3; k++)
            if (tab[k] && (at[k] < 0 || at[k] >= tab[k]->dims[0]))
                st =
                    interp_fail(c, MHA_ERR_SHAPE, "index %lld out of range of table %d (%lld rows)",
                                (long long)at[k], k, (long long)tab[k]->dims[0]);
        for (int64_t i = 0; i < H && st == MHA_OK; i++) {
            s[i] = 0.0;
            for (int k = 0; k < 3; k++)
                if (tab[k]) s[i] += tensor_get_f64(tab[k], at[k] * H + i);
            if (Sum) tensor_set_f64(Sum, r * H + i, s[i]);
            mean += s[i];
        }
        if (st == MHA_OK)
            fused_norm_row(s, H, mean / (double)(H > 0 ? H : 1), eps, G, Beta, Y, r * H, &inv);
    }
    for (int64_t b = 0; MI && b < B; b++) {
        int64_t n = 0;
        for (int64_t j = 0; mask && j < S; j++)
            n += tensor_get_i64(mask, b * S + j) == 1;
        ((int32_t *)MI->data)[b] = (int32_t)n;
    }
    mha_free(c->a, s);
    return st;
}
