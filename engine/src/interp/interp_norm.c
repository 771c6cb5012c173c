/* interp_norm.c -- LayerNormalization (opset 17), RMSNormalization (opset 23),
 * InstanceNormalization and BatchNormalization (inference) for the reference
 * interpreter. LayerNormalization,
 * over the axes [axis, rank) of X,
 *     Y = (X - mean) / sqrt(var + epsilon) * Scale + B
 * with the optional Mean and InvStdDev outputs (X's shape with those axes
 * set to 1). Scale and B hold the normalized shape's elements (or one).
 * Computed in double, whatever stash_type says (it only asks for at least
 * float32). */
#include <math.h>

#include "interp_internal.h"

/* X seen as [outer, inner] rows normalised over the axes [axis, rank). */
static mha_status norm_rows(interp_ctx *c, const tensor *X, int64_t axis_attr, int *axis,
                            int64_t *outer, int64_t *inner) {
    if (X->rank < 1) return interp_fail(c, MHA_ERR_SHAPE, "X must have an axis");
    mha_status st = interp_axis(c, axis_attr, X->rank, "axis", axis);
    if (st != MHA_OK) return st;
    *outer = *inner = 1;
    for (int a = 0; a < X->rank; a++)
        if (a < *axis)
            *outer *= X->dims[a];
        else
            *inner *= X->dims[a];
    return MHA_OK;
}

/* The mean and 1 / sqrt(variance + eps) of X's elements [base, base + len). */
static void norm_stats(const tensor *X, int64_t base, int64_t len, float eps, double *mean,
                       double *inv) {
    double m = 0.0, var = 0.0;
    for (int64_t i = 0; i < len; i++)
        m += tensor_get_f64(X, base + i);
    m /= len > 0 ? (double)len : 1.0;
    for (int64_t i = 0; i < len; i++) {
        const double d = tensor_get_f64(X, base + i) - m;
        var += d * d;
    }
    var /= len > 0 ? (double)len : 1.0;
    *mean = m;
    *inv = 1.0 / sqrt(var + (double)eps);
}

mha_status interp_op_layer_normalization(interp_ctx *c) {
    const tensor *X, *S, *Bias;
    int64_t axis_attr;
    float eps;
    int axis;
    char s0[INTERP_SHAPE_BUF], s1[INTERP_SHAPE_BUF];
    mha_status st = interp_check_arity(c, 2, 3, 1, 3);
    if (st == MHA_OK) st = interp_in_req(c, 0, &X);
    if (st == MHA_OK) st = interp_in_req(c, 1, &S);
    if (st == MHA_OK) st = interp_attr_int(c, "axis", -1, &axis_attr);
    if (st == MHA_OK) st = interp_attr_float(c, "epsilon", 1e-5f, &eps);
    if (st != MHA_OK) return st;
    Bias = interp_in(c, 2);
    if (!interp_is_float(X->dtype) || S->dtype != X->dtype || (Bias && Bias->dtype != X->dtype))
        return interp_fail(c, MHA_ERR_DTYPE, "X, Scale and B must share one float type (X is %s)",
                           mha_dtype_name(X->dtype));
    int64_t outer = 1, inner = 1;
    st = norm_rows(c, X, axis_attr, &axis, &outer, &inner);
    if (st != MHA_OK) return st;
    int64_t ns = tensor_numel(S), nb = Bias ? tensor_numel(Bias) : 1;
    if ((ns != inner && ns != 1) || (nb != inner && nb != 1))
        return interp_fail(
            c, MHA_ERR_SHAPE, "Scale %s and B %s must hold the %lld normalized elements (or one)",
            interp_shape(S, s0), Bias ? interp_shape(Bias, s1) : "(none)", (long long)inner);
    tensor *Y, *M = NULL, *R = NULL;
    int64_t stat_dims[MHA_MAX_RANK];
    for (int a = 0; a < X->rank; a++)
        stat_dims[a] = a < axis ? X->dims[a] : 1;
    st = interp_out_new(c, 0, X->dtype, X->rank, X->dims, &Y);
    if (st == MHA_OK && c->n_out > 1 && c->n->outputs[1] >= 0)
        st = interp_out_new(c, 1, MHA_DTYPE_FLOAT32, X->rank, stat_dims, &M);
    if (st == MHA_OK && c->n_out > 2 && c->n->outputs[2] >= 0)
        st = interp_out_new(c, 2, MHA_DTYPE_FLOAT32, X->rank, stat_dims, &R);
    if (st != MHA_OK) return st;
    for (int64_t o = 0; o < outer; o++) {
        double mean, inv;
        norm_stats(X, o * inner, inner, eps, &mean, &inv);
        for (int64_t i = 0; i < inner; i++) {
            double y = (tensor_get_f64(X, o * inner + i) - mean) * inv *
                       tensor_get_f64(S, ns == 1 ? 0 : i);
            if (Bias) y += tensor_get_f64(Bias, nb == 1 ? 0 : i);
            tensor_set_f64(Y, o * inner + i, y);
        }
        if (M) tensor_set_f64(M, o, mean);
        if (R) tensor_set_f64(R, o, inv);
    }
    return MHA_OK;
}

/* What InstanceNormalization and GroupNormalization read first: X [N, C,
 * ...], scale and bias of X's float type, num_groups (when `groups` is not
 * NULL) and epsilon. x_name, b_name: X and the bias as the op's
 * specification names them, for the messages. */
static mha_status norm_channel_args(interp_ctx *c, const char *x_name, const char *b_name,
                                    const tensor **X, const tensor **S, const tensor **Bias,
                                    float *eps, int64_t *groups) {
    mha_status st = interp_check_arity(c, 3, 3, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, X);
    if (st == MHA_OK) st = interp_in_req(c, 1, S);
    if (st == MHA_OK) st = interp_in_req(c, 2, Bias);
    if (st == MHA_OK && groups) st = interp_attr_int(c, "num_groups", 0, groups);
    if (st == MHA_OK) st = interp_attr_float(c, "epsilon", 1e-5f, eps);
    if (st != MHA_OK) return st;
    const mha_dtype dt = (*X)->dtype;
    if (!interp_is_float(dt) || (*S)->dtype != dt || (*Bias)->dtype != dt)
        return interp_fail(c, MHA_ERR_DTYPE, "%s, scale and %s must share one float type (%s)",
                           x_name, b_name, mha_dtype_name(dt));
    if ((*X)->rank < 2) return interp_fail(c, MHA_ERR_SHAPE, "%s must be [N, C, ...]", x_name);
    return MHA_OK;
}

/* InstanceNormalization(X [N, C, D1...], scale [C], B [C]): each (n, c)
 * normalised over its spatial elements, y = scale[c] * (x - mean) /
 * sqrt(var + epsilon) + B[c]. What PyTorch writes for GroupNorm with one
 * group per channel (Wav2Vec2's first feature Conv), and inside the
 * Reshape pair of any GroupNorm. In double, like LayerNormalization. */
mha_status interp_op_instance_normalization(interp_ctx *c) {
    const tensor *X, *S, *Bias;
    float eps;
    char s0[INTERP_SHAPE_BUF], s1[INTERP_SHAPE_BUF];
    mha_status st = norm_channel_args(c, "input", "B", &X, &S, &Bias, &eps, NULL);
    if (st != MHA_OK) return st;
    const int64_t ch = X->dims[1];
    if (tensor_numel(S) != ch || tensor_numel(Bias) != ch)
        return interp_fail(c, MHA_ERR_SHAPE,
                           "scale %s and B %s must hold one value per channel (%lld)",
                           interp_shape(S, s0), interp_shape(Bias, s1), (long long)ch);
    int64_t outer, inner;
    interp_around_axis(X, 1, &outer, &inner);
    tensor *Y;
    st = interp_out_new(c, 0, X->dtype, X->rank, X->dims, &Y);
    if (st != MHA_OK) return st;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < ch; k++) {
            const int64_t base = (o * ch + k) * inner;
            double mean, inv;
            norm_stats(X, base, inner, eps, &mean, &inv);
            const double a = tensor_get_f64(S, k) * inv;
            const double b = tensor_get_f64(Bias, k);
            for (int64_t i = 0; i < inner; i++)
                tensor_set_f64(Y, base + i, (tensor_get_f64(X, base + i) - mean) * a + b);
        }
    return MHA_OK;
}

/* BatchNormalization(X [N, C, D1...], scale, B, input_mean, input_var),
 * inference form (each [C]):
 *     y = scale[c] * (x - input_mean[c]) / sqrt(input_var[c] + epsilon) + B[c]
 * What PyTorch writes for an eval-mode BatchNorm it could not fold into a
 * Conv (LeViT's BatchNorm1d after a Linear). training_mode = 1 (batch
 * statistics, the running ones as extra outputs) is refused. In double. */
mha_status interp_op_batch_normalization(interp_ctx *c) {
    const tensor *X, *P[4];
    float eps;
    int64_t training;
    char s0[INTERP_SHAPE_BUF];
    mha_status st = interp_check_arity(c, 5, 5, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &X);
    for (size_t i = 0; st == MHA_OK && i < 4; i++)
        st = interp_in_req(c, 1 + i, &P[i]);
    if (st == MHA_OK) st = interp_attr_float(c, "epsilon", 1e-5f, &eps);
    if (st == MHA_OK) st = interp_attr_int(c, "training_mode", 0, &training);
    if (st != MHA_OK) return st;
    if (training != 0)
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED, "training_mode %lld is not supported",
                           (long long)training);
    if (!interp_is_float(X->dtype))
        return interp_fail(c, MHA_ERR_DTYPE, "X of type %s is not supported",
                           mha_dtype_name(X->dtype));
    if (X->rank < 2) return interp_fail(c, MHA_ERR_SHAPE, "X must be [N, C, ...]");
    const int64_t ch = X->dims[1];
    static const char *const names[4] = {"scale", "B", "input_mean", "input_var"};
    for (size_t i = 0; i < 4; i++) {
        if (!interp_is_float(P[i]->dtype))
            return interp_fail(c, MHA_ERR_DTYPE, "%s of type %s is not supported", names[i],
                               mha_dtype_name(P[i]->dtype));
        if (P[i]->rank != 1 || P[i]->dims[0] != ch)
            return interp_fail(c, MHA_ERR_SHAPE, "%s %s must be [%lld] (X's channels)", names[i],
                               interp_shape(P[i], s0), (long long)ch);
    }
    int64_t outer, inner;
    interp_around_axis(X, 1, &outer, &inner);
    tensor *Y;
    st = interp_out_new(c, 0, X->dtype, X->rank, X->dims, &Y);
    if (st != MHA_OK) return st;
    for (int64_t k = 0; k < ch; k++) {
        const double a = tensor_get_f64(P[0], k) / sqrt(tensor_get_f64(P[3], k) + (double)eps);
        const double m = tensor_get_f64(P[2], k), b = tensor_get_f64(P[1], k);
        for (int64_t o = 0; o < outer; o++) {
            const int64_t base = (o * ch + k) * inner;
            for (int64_t i = 0; i < inner; i++)
                tensor_set_f64(Y, base + i, (tensor_get_f64(X, base + i) - m) * a + b);
        }
    }
    return MHA_OK;
}

/* RMSNormalization (opset 23), over the axes [axis, rank) of X,
 *     Y = X / sqrt(mean(X^2) + epsilon) * scale
 * scale holding the normalized shape's elements (or one). In double, like
 * LayerNormalization (stash_type only asks for at least float32). */
mha_status interp_op_rms_normalization(interp_ctx *c) {
    const tensor *X, *S;
    int64_t axis_attr;
    float eps;
    int axis;
    char s0[INTERP_SHAPE_BUF];
    mha_status st = interp_check_arity(c, 2, 2, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &X);
    if (st == MHA_OK) st = interp_in_req(c, 1, &S);
    if (st == MHA_OK) st = interp_attr_int(c, "axis", -1, &axis_attr);
    if (st == MHA_OK) st = interp_attr_float(c, "epsilon", 1e-5f, &eps);
    if (st != MHA_OK) return st;
    if (!interp_is_float(X->dtype) || S->dtype != X->dtype)
        return interp_fail(c, MHA_ERR_DTYPE, "X and scale must share one float type (X is %s)",
                           mha_dtype_name(X->dtype));
    int64_t outer = 1, inner = 1;
    st = norm_rows(c, X, axis_attr, &axis, &outer, &inner);
    if (st != MHA_OK) return st;
    const int64_t ns = tensor_numel(S);
    if (ns != inner && ns != 1)
        return interp_fail(c, MHA_ERR_SHAPE,
                           "scale %s must hold the %lld normalized elements (or one)",
                           interp_shape(S, s0), (long long)inner);
    tensor *Y;
    st = interp_out_new(c, 0, X->dtype, X->rank, X->dims, &Y);
    if (st != MHA_OK) return st;
    for (int64_t o = 0; o < outer; o++) {
        double ss = 0.0;
        for (int64_t i = 0; i < inner; i++) {
            const double x = tensor_get_f64(X, o * inner + i);
            ss += x * x;
        }
        const double inv = 1.0 / sqrt(ss / (inner > 0 ? (double)inner : 1.0) + (double)eps);
        for (int64_t i = 0; i < inner; i++)
            tensor_set_f64(Y, o * inner + i,
                           tensor_get_f64(X, o * inner + i) * inv *
                               tensor_get_f64(S, ns == 1 ? 0 : i));
    }
    return MHA_OK;
}

/* GroupNormalization (opset 18, 21): X [N, C, D...] with its C channels in
 * num_groups groups of C / num_groups, each (n, group) normalised over its
 * channels' elements, then y = scale * xhat + bias per channel (opset 21:
 * scale and bias [C]) or per group (opset 18: [num_groups]). In double. */
mha_status interp_op_group_normalization(interp_ctx *c) {
    const tensor *X, *S, *Bias;
    int64_t groups;
    float eps;
    char s0[INTERP_SHAPE_BUF], s1[INTERP_SHAPE_BUF];
    mha_status st = norm_channel_args(c, "X", "bias", &X, &S, &Bias, &eps, &groups);
    if (st != MHA_OK) return st;
    const int64_t ch = X->dims[1];
    if (groups <= 0 || ch % groups != 0)
        return interp_fail(c, MHA_ERR_SHAPE, "num_groups %lld must divide the %lld channels",
                           (long long)groups, (long long)ch);
    const int64_t per = c->opset >= 21 ? ch : groups;
    if (tensor_numel(S) != per || tensor_numel(Bias) != per)
        return interp_fail(c, MHA_ERR_SHAPE, "scale %s and bias %s must hold %lld values",
                           interp_shape(S, s0), interp_shape(Bias, s1), (long long)per);
    int64_t outer, inner;
    interp_around_axis(X, 1, &outer, &inner);
    const int64_t cpg = ch / groups, len = cpg * inner;
    tensor *Y;
    st = interp_out_new(c, 0, X->dtype, X->rank, X->dims, &Y);
    if (st != MHA_OK) return st;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t g = 0; g < groups; g++) {
            const int64_t base = (o * ch + g * cpg) * inner;
            double mean, inv;
            norm_stats(X, base, len, eps, &mean, &inv);
            for (int64_t i = 0; i < len; i++) {
                const int64_t p = per == ch ? g * cpg + i / inner : g;
                tensor_set_f64(Y, base + i,
                               (tensor_get_f64(X, base + i) - mean) * inv * tensor_get_f64(S, p) +
                                   tensor_get_f64(Bias, p));
            }
        }
    return MHA_OK;
}
