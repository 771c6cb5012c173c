/* interp_loss.c -- the ONNX losses a language model's scorer exports:
 * SoftmaxCrossEntropyLoss (F.cross_entropy, opset 12+) and
 * NegativeLogLikelihoodLoss (F.nll_loss) over scores / log-probabilities
 * [N, C] or [N, C, D1, ..., Dk] and integer labels [N] or [N, D1, ..., Dk]:
 *
 *     loss[n, d] = -w[c] * logp[n, c, d],  c = labels[n, d]   (0 where c is
 *                                                               ignore_index)
 *     reduction "none": loss as it is; "sum": its sum; "mean": its sum over
 *     the sum of the w[c] counted (the number of labels without weights)
 *
 * in double. SoftmaxCrossEntropyLoss's second output is the log_softmax
 * of the scores over axis 1. */
#include <math.h>
#include <string.h>

#include "interp_internal.h"

typedef enum loss_reduction { LOSS_NONE, LOSS_SUM, LOSS_MEAN } loss_reduction;

/* The operands, attributes and output shape both ops share. */
typedef struct loss_args {
    const tensor *x, *labels, *w;
    loss_reduction red;
    int has_ignore;
    int64_t ignore;
    int64_t N, C, D; /* x seen as [N, C, D] */
} loss_args;

static mha_status loss_read(interp_ctx *c, loss_args *l) {
    char sb[INTERP_SHAPE_BUF], sb2[INTERP_SHAPE_BUF];
    memset(l, 0, sizeof *l);
    mha_status st = interp_in_req(c, 0, &l->x);
    if (st == MHA_OK) st = interp_in_req(c, 1, &l->labels);
    if (st != MHA_OK) return st;
    l->w = interp_in(c, 2);
    const ir_attr *r = ir_node_attr(c->n, "reduction");
    if (r && (r->type != IR_ATTR_STRING || !r->s))
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "attribute 'reduction' must be a string");
    const char *red = r ? r->s : "mean";
    if (strcmp(red, "none") == 0)
        l->red = LOSS_NONE;
    else if (strcmp(red, "sum") == 0)
        l->red = LOSS_SUM;
    else if (strcmp(red, "mean") == 0)
        l->red = LOSS_MEAN;
    else
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "reduction '%.40s' is not none, sum or mean",
                           red);
    l->has_ignore = interp_has_attr(c, "ignore_index");
    st = interp_attr_int(c, "ignore_index", 0, &l->ignore);
    if (st != MHA_OK) return st;
    const tensor *x = l->x, *y = l->labels;
    if (!interp_is_float(x->dtype))
        return interp_fail(c, MHA_ERR_DTYPE, "scores must be a float type, not %s",
                           mha_dtype_name(x->dtype));
    if (y->dtype != MHA_DTYPE_INT64 && y->dtype != MHA_DTYPE_INT32)
        return interp_fail(c, MHA_ERR_DTYPE, "labels must be int64 or int32, not %s",
                           mha_dtype_name(y->dtype));
    /* labels: x's shape without axis 1 */
    int ok = x->rank >= 2 && y->rank == x->rank - 1 && y->dims[0] == x->dims[0];
    for (int a = 2; ok && a < x->rank; a++)
        ok = y->dims[a - 1] == x->dims[a];
    if (!ok)
        return interp_fail(c, MHA_ERR_SHAPE,
                           "scores %s and labels %s: labels must be the scores' "
                           "shape without axis 1",
                           interp_shape(x, sb), interp_shape(y, sb2));
    l->N = x->dims[0];
    l->C = x->dims[1];
    l->D = 1;
    for (int a = 2; a < x->rank; a++)
        l->D *= x->dims[a];
    if (l->w && (l->w->rank != 1 || l->w->dims[0] != l->C || !interp_is_float(l->w->dtype)))
        return interp_fail(c, MHA_ERR_SHAPE, "weights %s must be float [C] (C = %lld)",
                           interp_shape(l->w, sb), (long long)l->C);
    return MHA_OK;
}

/* Output 0 from the log-probabilities lp (x's layout [N, C, D]). */
static mha_status loss_reduce(interp_ctx *c, const loss_args *l, const tensor *lp) {
    tensor *out;
    mha_status st = l->red == LOSS_NONE
                        ? interp_out_new(c, 0, l->x->dtype, l->labels->rank, l->labels->dims, &out)
                        : interp_out_new(c, 0, l->x->dtype, 0, NULL, &out);
    if (st != MHA_OK) return st;
    double sum = 0.0, weight = 0.0;
    for (int64_t n = 0; n < l->N; n++)
        for (int64_t d = 0; d < l->D; d++) {
            const int64_t i = n * l->D + d, k = tensor_get_i64(l->labels, i);
            double e = 0.0;
            if (!l->has_ignore || k != l->ignore) {
                if (k < 0 || k >= l->C)
                    return interp_fail(c, MHA_ERR_SHAPE, "label %lld is outside [0, %lld)",
                                       (long long)k, (long long)l->C);
                const double w = l->w ? tensor_get_f64(l->w, k) : 1.0;
                e = -w * tensor_get_f64(lp, (n * l->C + k) * l->D + d);
                weight += w;
            }
            sum += e;
            if (l->red == LOSS_NONE) tensor_set_f64(out, i, e);
        }
    /* a mean over no label is 0 / 0: NaN, as the spec's formula gives */
    if (l->red != LOSS_NONE) tensor_set_f64(out, 0, l->red == LOSS_SUM ? sum : sum / weight);
    return MHA_OK;
}

mha_status interp_op_softmax_cross_entropy_loss(interp_ctx *c) {
    loss_args l;
    mha_status st = interp_check_arity(c, 2, 3, 1, 2);
    if (st == MHA_OK) st = loss_read(c, &l);
    if (st != MHA_OK) return st;
    /* log_softmax over axis 1, into output 1 when asked for, else a temporary */
    tensor *lp = NULL;
    const int keep = c->n_out > 1 && c->n->outputs[1] >= 0;
    st = keep ? interp_out_new(c, 1, l.x->dtype, l.x->rank, l.x->dims, &lp)
              : interp_tensor_new(c, MHA_DTYPE_FLOAT64, l.x->rank, l.x->dims, &lp);
    if (st != MHA_OK) return st;
    for (int64_t n = 0; n < l.N; n++)
        for (int64_t d = 0; d < l.D; d++) {
            const int64_t base = n * l.C * l.D + d;
            double mx = -INFINITY, s = 0.0;
            for (int64_t k = 0; k < l.C; k++) {
                const double v = tensor_get_f64(l.x, base + k * l.D);
                if (v > mx || isnan(v)) mx = v;
            }
            for (int64_t k = 0; k < l.C; k++)
                s += exp(tensor_get_f64(l.x, base + k * l.D) - mx);
            for (int64_t k = 0; k < l.C; k++)
                tensor_set_f64(lp, base + k * l.D,
                               tensor_get_f64(l.x, base + k * l.D) - mx - log(s));
        }
    st = loss_reduce(c, &l, lp);
    if (!keep) tensor_free(lp);
    return st;
}

mha_status interp_op_negative_log_likelihood_loss(interp_ctx *c) {
    loss_args l;
    mha_status st = interp_check_arity(c, 2, 3, 1, 1);
    if (st == MHA_OK) st = loss_read(c, &l);
    return st == MHA_OK ? loss_reduce(c, &l, l.x) : st;
}
