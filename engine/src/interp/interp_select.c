/* interp_select.c -- Clip and ArgMax / ArgMin for the reference
 * interpreter: what pooling heads are written with (sentence-transformers'
 * mean pooling divides by clamp(count, min=1e-9); CLIP's text model takes
 * the row of the EOS token as argmax of the ids). */
#include <math.h>

#include "interp_internal.h"

/* Clip(x, min?, max?) (opset 11+: bounds as optional scalar inputs; the
 * attributes of opset 6 too). Float and integer x; y has x's type. */
mha_status interp_op_clip(interp_ctx *c) {
    const tensor *x;
    mha_status st = interp_check_arity(c, 1, 3, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st != MHA_OK) return st;
    double lo = -INFINITY, hi = INFINITY;
    float alo, ahi;
    if (interp_has_attr(c, "min") && (st = interp_attr_float(c, "min", 0.f, &alo)) == MHA_OK)
        lo = alo;
    if (st == MHA_OK && interp_has_attr(c, "max") &&
        (st = interp_attr_float(c, "max", 0.f, &ahi)) == MHA_OK)
        hi = ahi;
    if (st != MHA_OK) return st;
    for (size_t k = 1; k <= 2; k++) {
        const tensor *b = interp_in(c, k);
        if (!b) continue;
        if (tensor_numel(b) != 1 || b->dtype != x->dtype)
            return interp_fail(c, MHA_ERR_SHAPE, "bound %zu must be one %s value", k,
                               mha_dtype_name(x->dtype));
        *(k == 1 ? &lo : &hi) = tensor_get_f64(b, 0);
    }
    tensor *y;
    st = interp_out_new(c, 0, x->dtype, x->rank, x->dims, &y);
    if (st != MHA_OK) return st;
    const int is_float = interp_is_float(x->dtype);
    const int64_t n = tensor_numel(x);
    for (int64_t i = 0; i < n; i++) {
        if (is_float) {
            double v = tensor_get_f64(x, i);
            v = v < lo ? lo : v;
            tensor_set_f64(y, i, v > hi ? hi : v);
        } else {
            int64_t v = tensor_get_i64(x, i);
            if ((double)v < lo) v = (int64_t)lo;
            if ((double)v > hi) v = (int64_t)hi;
            interp_set_i64(y, i, v);
        }
    }
    return MHA_OK;
}

/* ArgMax / ArgMin along axis (keepdims, select_last_index): int64 indices,
 * the first extreme unless select_last_index. NaN is never selected. */
static mha_status select_arg(interp_ctx *c, int want_max) {
    const tensor *x;
    int64_t axis, keep, last;
    int ax;
    mha_status st = interp_check_arity(c, 1, 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_attr_int(c, "axis", 0, &axis);
    if (st == MHA_OK) st = interp_attr_int(c, "keepdims", 1, &keep);
    if (st == MHA_OK) st = interp_attr_int(c, "select_last_index", 0, &last);
    if (st == MHA_OK) st = interp_axis(c, axis, x->rank, "axis", &ax);
    if (st != MHA_OK) return st;
    if (x->dims[ax] == 0) return interp_fail(c, MHA_ERR_SHAPE, "the reduced axis is empty");
    int64_t dims[MHA_MAX_RANK];
    int rank = 0;
    for (int i = 0; i < x->rank; i++)
        if (i != ax || keep) dims[rank++] = i == ax ? 1 : x->dims[i];
    tensor *y;
    st = interp_out_new(c, 0, MHA_DTYPE_INT64, rank, dims, &y);
    if (st != MHA_OK) return st;
    int64_t outer, inner;
    interp_around_axis(x, ax, &outer, &inner);
    const int64_t n = x->dims[ax];
    int64_t *out = y->data;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            int64_t best = -1;
            double bv = 0.0;
            for (int64_t k = 0; k < n; k++) {
                const double v = tensor_get_f64(x, (o * n + k) * inner + in);
                if (isnan(v)) continue;
                const int better = best < 0 || (want_max ? v > bv : v < bv) || (last && v == bv);
                if (better) {
                    best = k;
                    bv = v;
                }
            }
            out[o * inner + in] = best < 0 ? 0 : best;
        }
    return MHA_OK;
}

mha_status interp_op_argmax(interp_ctx *c) {
    return select_arg(c, 1);
}
mha_status interp_op_argmin(interp_ctx *c) {
    return select_arg(c, 0);
}
