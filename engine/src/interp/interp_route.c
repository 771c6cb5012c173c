/* interp_route.c -- TopK, ScatterElements and ScatterND for the reference interpreter:
 * what a mixture-of-experts router is written with (Mixtral's softmax over
 * the experts, the top k kept, their weights scattered back over all the
 * experts to weigh each expert's output). */
#include <math.h>
#include <string.h>

#include "interp_internal.h"

/* Whether element (a, ia) goes before (b, ib) in TopK's order: the larger
 * (smaller) value first, NaN the largest (as PyTorch's topk), ties by the
 * lower index (as the ONNX spec asks). */
static int route_before(double a, int64_t ia, double b, int64_t ib, int largest) {
    const int na = isnan(a), nb = isnan(b);
    if (na || nb) {
        if (na && nb) return ia < ib;
        return largest ? na : nb;
    }
    if (a != b) return largest ? a > b : a < b;
    return ia < ib;
}

/* Sorts idx[0..n) by route_before over val (val[idx[i]]), merging runs
 * bottom-up through tmp: O(n log n), whatever the values. */
static void route_sort(const double *val, int64_t *idx, int64_t *tmp, int64_t n, int largest) {
    for (int64_t w = 1; w < n; w *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * w) {
            int64_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n;
            int64_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                tmp[k++] = route_before(val[idx[j]], idx[j], val[idx[i]], idx[i], largest)
                               ? idx[j++]
                               : idx[i++];
            while (i < mid)
                tmp[k++] = idx[i++];
            while (j < hi)
                tmp[k++] = idx[j++];
        }
        for (int64_t k = 0; k < n; k++)
            idx[k] = tmp[k];
    }
}

/* TopK(X, K) -> Values, Indices along axis (opset 1: k an attribute;
 * 10+: K a one-element input; 11+: largest, sorted). Always sorted (an
 * unsorted result may be in any order). Values has X's type, Indices
 * int64; both X's shape with the axis cut to K. */
mha_status interp_op_topk(interp_ctx *c) {
    const tensor *x;
    int64_t axis_attr, k, largest;
    int ax;
    mha_status st = interp_check_arity(c, 1, 2, 2, 2);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_attr_int(c, "axis", -1, &axis_attr);
    if (st == MHA_OK) st = interp_attr_int(c, "largest", 1, &largest);
    if (st != MHA_OK) return st;
    if (c->opset < 10) {
        st = interp_attr_int(c, "k", -1, &k);
    } else {
        const tensor *kt;
        st = interp_in_req(c, 1, &kt);
        if (st == MHA_OK) st = interp_read_scalar_int(c, kt, "K", &k);
    }
    if (st == MHA_OK) st = interp_axis(c, axis_attr, x->rank, "axis", &ax);
    if (st != MHA_OK) return st;
    if (x->dtype != MHA_DTYPE_FLOAT32 && !interp_is_int(x->dtype))
        return interp_fail(c, MHA_ERR_DTYPE, "X must be float32 or an integer type, not %s",
                           mha_dtype_name(x->dtype));
    const int64_t n = x->dims[ax];
    if (k < 0 || k > n)
        return interp_fail(c, MHA_ERR_SHAPE, "K %lld is outside [0, %lld] (the axis's extent)",
                           (long long)k, (long long)n);
    int64_t dims[MHA_MAX_RANK];
    for (int a = 0; a < x->rank; a++)
        dims[a] = a == ax ? k : x->dims[a];
    tensor *vals, *inds;
    st = interp_out_new(c, 0, x->dtype, x->rank, dims, &vals);
    if (st == MHA_OK) st = interp_out_new(c, 1, MHA_DTYPE_INT64, x->rank, dims, &inds);
    if (st != MHA_OK) return st;
    int64_t outer, inner;
    interp_around_axis(x, ax, &outer, &inner);
    /* one slice along the axis at a time: its values, and the indices
     * sorted (n fits: the axis is an extent of a tensor already made) */
    double *val = mha_calloc(c->a, (size_t)(n ? n : 1), sizeof *val);
    int64_t *idx = mha_calloc(c->a, (size_t)(n ? n : 1), sizeof *idx);
    int64_t *tmp = mha_calloc(c->a, (size_t)(n ? n : 1), sizeof *tmp);
    if (!val || !idx || !tmp) {
        mha_free(c->a, val);
        mha_free(c->a, idx);
        mha_free(c->a, tmp);
        return interp_fail(c, MHA_ERR_NO_MEMORY, "out of memory");
    }
    int64_t *out_idx = inds->data;
    const int is_float = interp_is_float(x->dtype);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            for (int64_t j = 0; j < n; j++) {
                const int64_t e = (o * n + j) * inner + in;
                val[j] = is_float ? tensor_get_f64(x, e) : (double)tensor_get_i64(x, e);
                idx[j] = j;
            }
            route_sort(val, idx, tmp, n, largest != 0);
            for (int64_t j = 0; j < k; j++) {
                const int64_t src = (o * n + idx[j]) * inner + in, dst = (o * k + j) * inner + in;
                if (is_float)
                    tensor_set_f64(vals, dst, tensor_get_f64(x, src));
                else
                    interp_set_i64(vals, dst, tensor_get_i64(x, src));
                out_idx[dst] = idx[j];
            }
        }
    mha_free(c->a, val);
    mha_free(c->a, idx);
    mha_free(c->a, tmp);
    return MHA_OK;
}

/* The scatter ops' reduction attribute: 0 none, 1 add, 2 mul, 3 max, 4 min. */
static mha_status route_reduction(const interp_ctx *c, int *red) {
    static const char *const names[] = {"none", "add", "mul", "max", "min"};
    const ir_attr *r = ir_node_attr(c->n, "reduction");
    if (r && (r->type != IR_ATTR_STRING || !r->s))
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "attribute 'reduction' must be a string");
    *red = r ? -1 : 0;
    for (int k = 0; r && k < 5; k++)
        if (strcmp(r->s, names[k]) == 0) *red = k;
    if (*red < 0)
        return interp_fail(c, MHA_ERR_MODEL_FORMAT,
                           "reduction '%.40s' is not none, add, mul, max or min", r->s);
    return MHA_OK;
}

/* The scatter ops' data, indices (int64 / int32), updates (data's type:
 * float32 or an integer) and reduction. */
static mha_status route_scatter_inputs(const interp_ctx *c, const tensor **x, const tensor **idx,
                                       const tensor **upd, int *red) {
    mha_status st = interp_check_arity(c, 3, 3, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, x);
    if (st == MHA_OK) st = interp_in_req(c, 1, idx);
    if (st == MHA_OK) st = interp_in_req(c, 2, upd);
    if (st == MHA_OK) st = route_reduction(c, red);
    if (st != MHA_OK) return st;
    if ((*idx)->dtype != MHA_DTYPE_INT64 && (*idx)->dtype != MHA_DTYPE_INT32)
        return interp_fail(c, MHA_ERR_DTYPE, "indices must be int64 or int32, not %s",
                           mha_dtype_name((*idx)->dtype));
    if ((*upd)->dtype != (*x)->dtype ||
        ((*x)->dtype != MHA_DTYPE_FLOAT32 && !interp_is_int((*x)->dtype)))
        return interp_fail(c, MHA_ERR_DTYPE, "data and updates must share one type (%s, %s)",
                           mha_dtype_name((*x)->dtype), mha_dtype_name((*upd)->dtype));
    return MHA_OK;
}

/* y[o] takes (or is reduced with) upd[i]. */
static void route_apply(tensor *y, int64_t o, const tensor *upd, int64_t i, int red) {
    if (interp_is_float(y->dtype)) {
        const double u = tensor_get_f64(upd, i), v = tensor_get_f64(y, o);
        const double res[] = {u, v + u, v * u, v > u ? v : u, v < u ? v : u};
        tensor_set_f64(y, o, res[red]);
    } else {
        const int64_t u = tensor_get_i64(upd, i), v = tensor_get_i64(y, o);
        /* add / mul in unsigned arithmetic: wrapping, as the type would */
        const int64_t res[] = {u, (int64_t)((uint64_t)v + (uint64_t)u),
                               (int64_t)((uint64_t)v * (uint64_t)u), v > u ? v : u, v < u ? v : u};
        interp_set_i64(y, o, res[red]);
    }
}

/* ScatterElements(data, indices, updates) along axis (opset 11+;
 * reduction none / add / mul (16+), max / min (18+)): a copy of data in
 * which, for each element of indices, the element at its coordinates with
 * the axis replaced by the index takes (or is reduced with) the update.
 * Repeated indices without a reduction keep the last update. */
mha_status interp_op_scatter_elements(interp_ctx *c) {
    const tensor *x, *idx, *upd;
    int64_t axis_attr;
    int ax;
    char sb[INTERP_SHAPE_BUF], sb2[INTERP_SHAPE_BUF];
    int red;
    mha_status st = route_scatter_inputs(c, &x, &idx, &upd, &red);
    if (st == MHA_OK) st = interp_attr_int(c, "axis", 0, &axis_attr);
    if (st == MHA_OK) st = interp_axis(c, axis_attr, x->rank, "axis", &ax);
    if (st != MHA_OK) return st;
    if (idx->rank != x->rank || upd->rank != x->rank)
        return interp_fail(c, MHA_ERR_SHAPE, "data %s and indices %s must have one rank",
                           interp_shape(x, sb), interp_shape(idx, sb2));
    for (int a = 0; a < x->rank; a++)
        if (upd->dims[a] != idx->dims[a] || (a != ax && idx->dims[a] > x->dims[a]))
            return interp_fail(c, MHA_ERR_SHAPE, "indices %s do not fit data %s",
                               interp_shape(idx, sb2), interp_shape(x, sb));
    tensor *y;
    st = interp_out_new(c, 0, x->dtype, x->rank, x->dims, &y);
    if (st != MHA_OK) return st;
    const size_t es = mha_dtype_size(x->dtype);
    memcpy(y->data, x->data, (size_t)tensor_numel(x) * es);
    for (int64_t i = 0, n = tensor_numel(idx); i < n; i++) {
        int64_t off;
        st = interp_element_at(c, x, idx, ax, i, &off);
        if (st != MHA_OK) return st;
        route_apply(y, off, upd, i, red);
    }
    return MHA_OK;
}

/* ScatterND(data, indices [..., k], updates) (opset 11+; reduction none /
 * add / mul 16+, max / min 18+): a copy of data in which each index tuple
 * of indices (its last axis, k <= rank) names a slice data[i0, .., ik-1]
 * that takes (or is reduced with) the matching slice of updates (shape
 * indices.shape[:-1] + data.shape[k:]). What a KV cache's in-place update
 * (cache[:, :, pos] = new) exports as. Negative indices count from the end. */
mha_status interp_op_scatter_nd(interp_ctx *c) {
    const tensor *x, *idx, *upd;
    char sb[INTERP_SHAPE_BUF], sb2[INTERP_SHAPE_BUF], sb3[INTERP_SHAPE_BUF];
    int red;
    mha_status st = route_scatter_inputs(c, &x, &idx, &upd, &red);
    if (st != MHA_OK) return st;
    if (idx->rank < 1 || idx->dims[idx->rank - 1] > x->rank || idx->dims[idx->rank - 1] < 1)
        return interp_fail(c, MHA_ERR_SHAPE, "indices %s must end in an axis of 1..%d",
                           interp_shape(idx, sb), x->rank);
    const int k = (int)idx->dims[idx->rank - 1];
    /* updates: indices.shape[:-1] + data.shape[k:] */
    int ok = upd->rank == idx->rank - 1 + x->rank - k;
    for (int a = 0; ok && a < idx->rank - 1; a++)
        ok = upd->dims[a] == idx->dims[a];
    for (int a = k; ok && a < x->rank; a++)
        ok = upd->dims[idx->rank - 1 + a - k] == x->dims[a];
    if (!ok)
        return interp_fail(c, MHA_ERR_SHAPE, "updates %s do not fit indices %s and data %s",
                           interp_shape(upd, sb), interp_shape(idx, sb2), interp_shape(x, sb3));
    int64_t slice = 1;
    for (int a = k; a < x->rank; a++)
        slice *= x->dims[a];
    tensor *y;
    st = interp_out_new(c, 0, x->dtype, x->rank, x->dims, &y);
    if (st != MHA_OK) return st;
    const size_t es = mha_dtype_size(x->dtype);
    memcpy(y->data, x->data, (size_t)tensor_numel(x) * es);
    const int64_t n_tuples = tensor_numel(idx) / k;
    for (int64_t t = 0; t < n_tuples; t++) {
        int64_t off = 0;
        for (int a = 0; a < k; a++) {
            int64_t v = tensor_get_i64(idx, t * k + a);
            if (v < 0) v += x->dims[a];
            if (v < 0 || v >= x->dims[a])
                return interp_fail(c, MHA_ERR_SHAPE, "index %lld out of range for axis %d (%lld)",
                                   (long long)tensor_get_i64(idx, t * k + a), a,
                                   (long long)x->dims[a]);
            off = off * x->dims[a] + v;
        }
        off *= slice;
        for (int64_t e = 0; e < slice; e++) {
            const int64_t i = t * slice + e, o = off + e;
            route_apply(y, o, upd, i, red);
        }
    }
    return MHA_OK;
}
