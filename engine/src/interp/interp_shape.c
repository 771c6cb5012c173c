/* interp_shape.c -- the reference interpreter's data-movement and shape ops:
 * Identity, Constant, ConstantOfShape, Shape, Size, Gather, GatherElements,
 * Unsqueeze, Squeeze, Concat, Reshape, Transpose, Slice, Split, Expand,
 * Range, Trilu, Flatten, Tile. They move elements as bytes (any dtype) and follow the
 * ONNX operator spec, including the opset differences that matter (axes as
 * attribute before opset 13 and as input after, Slice inputs from opset 10,
 * Shape start/end from opset 15, Split sizes as input from 13). */
#include "interp_internal.h"

#include <math.h>
#include <string.h>

/* Row-major element strides of dims. */
static void shape_strides(int rank, const int64_t *dims, int64_t *strides) {
    int64_t s = 1;
    for (int a = rank - 1; a >= 0; a--) {
        strides[a] = s;
        s *= dims[a];
    }
}

/* y[i_0..i_r] = x[base + sum_a i_a * step[a]] over y's dims: the strided
 * gather Transpose (permuted strides) and Slice (start offset, stepped
 * strides) both are. Offsets are in elements. */
/* One row of n elements of es bytes, x's a stride s apart: the element
 * sizes of the engine's types as constants, so that each copy is a move. */
static void shape_gather_row(char *dst, const char *src, int64_t n, int64_t s, size_t es) {
    if (s == 1) {
        memcpy(dst, src, (size_t)n * es);
    } else if (es == 4) {
        for (int64_t j = 0; j < n; j++)
            memcpy(dst + j * 4, src + j * s * 4, 4);
    } else if (es == 8) {
        for (int64_t j = 0; j < n; j++)
            memcpy(dst + j * 8, src + j * s * 8, 8);
    } else {
        for (int64_t j = 0; j < n; j++)
            memcpy(dst + (size_t)j * es, src + j * s * (int64_t)es, es);
    }
}

/* y = the elements of x at base + sum over axes a of i_a * step[a], y's
 * rows (its last axis) one at a time, the offset of each row stepped from
 * the last's like an odometer rather than worked out per element. */
static void shape_gather(const tensor *x, tensor *y, int64_t base, const int64_t *step) {
    const size_t es = mha_dtype_size(x->dtype);
    const int64_t total = tensor_numel(y);
    if (total <= 0) return;
    if (y->rank == 0) {
        memcpy(y->data, (const char *)x->data + (size_t)base * es, es);
        return;
    }
    const int last = y->rank - 1;
    const int64_t row = y->dims[last];
    int64_t idx[MHA_MAX_RANK] = {0}, off = base;
    char *dst = y->data;
    for (int64_t i = 0; i < total; i += row) {
        shape_gather_row(dst, (const char *)x->data + (size_t)off * es, row, step[last], es);
        dst += (size_t)row * es;
        for (int a = last - 1; a >= 0; a--) {
            off += step[a];
            if (++idx[a] < y->dims[a]) break;
            off -= step[a] * y->dims[a];
            idx[a] = 0;
        }
    }
}

static int64_t shape_prod(const int64_t *dims, int from, int to) {
    int64_t p = 1;
    for (int a = from; a < to; a++)
        p *= dims[a];
    return p;
}

/* Output k = a copy of src's bytes with new dims (same element count). */
static mha_status shape_copy_out(interp_ctx *c, size_t k, const tensor *src, int rank,
                                 const int64_t *dims) {
    tensor *y;
    mha_status st = interp_out_new(c, k, src->dtype, rank, dims, &y);
    if (st != MHA_OK) return st;
    if (y->nbytes != src->nbytes)
        return interp_fail(c, MHA_ERR_INTERNAL, "element count changed in a copy");
    if (src->nbytes) memcpy(y->data, src->data, src->nbytes);
    return MHA_OK;
}

/* Reads a list of axes: from the `axes` attribute before opset 13, from
 * input `input_k` from opset 13 on. *present = 0 when not given. */
static mha_status shape_axes(interp_ctx *c, int64_t since_opset, size_t input_k, int64_t *axes,
                             size_t *n, int *present) {
    *n = 0;
    *present = 0;
    if (c->opset < since_opset) {
        const int64_t *v;
        size_t cnt;
        mha_status st = interp_attr_ints(c, "axes", &v, &cnt);
        if (st != MHA_OK) return st;
        if (!interp_has_attr(c, "axes")) return MHA_OK;
        if (cnt > MHA_MAX_RANK)
            return interp_fail(c, MHA_ERR_SHAPE, "%zu axes given, at most %d allowed", cnt,
                               MHA_MAX_RANK);
        for (size_t i = 0; i < cnt; i++)
            axes[i] = v[i];
        *n = cnt;
        *present = 1;
        return MHA_OK;
    }
    if (interp_has_attr(c, "axes"))
        return interp_fail(c, MHA_ERR_MODEL_FORMAT,
                           "the 'axes' attribute was replaced by an input in opset %lld",
                           (long long)since_opset);
    const tensor *t = interp_in(c, input_k);
    if (t == NULL) return MHA_OK;
    *present = 1;
    return interp_read_ints(c, t, "axes", axes, MHA_MAX_RANK, n);
}

/* Normalises axes against rank into flags[]; duplicates are an error. */
static mha_status shape_axes_flags(interp_ctx *c, const int64_t *axes, size_t n, int rank,
                                   int *flags) {
    for (int a = 0; a < rank; a++)
        flags[a] = 0;
    for (size_t i = 0; i < n; i++) {
        int ax;
        mha_status st = interp_axis(c, axes[i], rank, "axis", &ax);
        if (st != MHA_OK) return st;
        if (flags[ax])
            return interp_fail(c, MHA_ERR_SHAPE, "axis %lld is repeated", (long long)axes[i]);
        flags[ax] = 1;
    }
    return MHA_OK;
}

mha_status interp_op_identity(interp_ctx *c) {
    const tensor *x;
    mha_status st = interp_check_arity(c, 1, 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = shape_copy_out(c, 0, x, x->rank, x->dims);
    return st;
}

mha_status interp_op_constant(interp_ctx *c) {
    mha_status st = interp_check_arity(c, 0, 0, 1, 1);
    if (st != MHA_OK) return st;
    if (c->n->n_attrs != 1)
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "needs exactly one value attribute, has %zu",
                           c->n->n_attrs);
    const ir_attr *at = &c->n->attrs[0];
    tensor *y;
    if (strcmp(at->name, "value") == 0 && at->type == IR_ATTR_TENSOR && at->t != NULL) {
        st = shape_copy_out(c, 0, at->t, at->t->rank, at->t->dims);
    } else if (strcmp(at->name, "value_float") == 0 && at->type == IR_ATTR_FLOAT) {
        st = interp_out_new(c, 0, MHA_DTYPE_FLOAT32, 0, NULL, &y);
        if (st == MHA_OK) ((float *)y->data)[0] = at->f;
    } else if (strcmp(at->name, "value_int") == 0 && at->type == IR_ATTR_INT) {
        st = interp_out_new(c, 0, MHA_DTYPE_INT64, 0, NULL, &y);
        if (st == MHA_OK) ((int64_t *)y->data)[0] = at->i;
    } else if (strcmp(at->name, "value_floats") == 0 && at->type == IR_ATTR_FLOATS) {
        int64_t d = (int64_t)at->n;
        st = interp_out_new(c, 0, MHA_DTYPE_FLOAT32, 1, &d, &y);
        if (st == MHA_OK && at->n) {
            if (at->floats == NULL)
                return interp_fail(c, MHA_ERR_MODEL_FORMAT, "value_floats has no data");
            memcpy(y->data, at->floats, at->n * sizeof(float));
        }
    } else if (strcmp(at->name, "value_ints") == 0 && at->type == IR_ATTR_INTS) {
        int64_t d = (int64_t)at->n;
        st = interp_out_new(c, 0, MHA_DTYPE_INT64, 1, &d, &y);
        if (st == MHA_OK && at->n) {
            if (at->ints == NULL)
                return interp_fail(c, MHA_ERR_MODEL_FORMAT, "value_ints has no data");
            memcpy(y->data, at->ints, at->n * sizeof(int64_t));
        }
    } else {
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED,
                           "attribute '%s' of this type is not supported", at->name);
    }
    return st;
}

mha_status interp_op_constant_of_shape(interp_ctx *c) {
    const tensor *shape;
    int64_t dims[MHA_MAX_RANK];
    size_t rank;
    mha_status st = interp_check_arity(c, 1, 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &shape);
    if (st == MHA_OK) st = interp_read_ints(c, shape, "shape", dims, MHA_MAX_RANK, &rank);
    if (st != MHA_OK) return st;
    const ir_attr *at = ir_node_attr(c->n, "value");
    mha_dtype dt = MHA_DTYPE_FLOAT32;
    if (at != NULL) {
        if (at->type != IR_ATTR_TENSOR || at->t == NULL)
            return interp_fail(c, MHA_ERR_MODEL_FORMAT, "attribute 'value' must be a tensor");
        if (tensor_numel(at->t) != 1)
            return interp_fail(c, MHA_ERR_MODEL_FORMAT,
                               "attribute 'value' must hold one element, has %lld",
                               (long long)tensor_numel(at->t));
        dt = at->t->dtype;
    }
    tensor *y;
    st = interp_out_new(c, 0, dt, (int)rank, dims, &y);
    if (st != MHA_OK) return st;
    if (at != NULL) {
        size_t es = mha_dtype_size(dt);
        int64_t n = tensor_numel(y);
        for (int64_t i = 0; i < n; i++)
            memcpy((char *)y->data + (size_t)i * es, at->t->data, es);
    }
    return MHA_OK;
}

mha_status interp_op_shape(interp_ctx *c) {
    const tensor *x;
    int64_t start = 0, end;
    mha_status st = interp_check_arity(c, 1, 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st != MHA_OK) return st;
    end = x->rank;
    if (c->opset >= 15) {
        st = interp_attr_int(c, "start", 0, &start);
        if (st == MHA_OK) st = interp_attr_int(c, "end", x->rank, &end);
        if (st != MHA_OK) return st;
    }
    /* Negative start/end count from the back; both clamp to [0, rank]. */
    if (start < 0) start += x->rank;
    if (end < 0) end += x->rank;
    if (start < 0) start = 0;
    if (start > x->rank) start = x->rank;
    if (end < 0) end = 0;
    if (end > x->rank) end = x->rank;
    int64_t n = end > start ? end - start : 0;
    tensor *y;
    st = interp_out_new(c, 0, MHA_DTYPE_INT64, 1, &n, &y);
    if (st != MHA_OK) return st;
    for (int64_t i = 0; i < n; i++)
        ((int64_t *)y->data)[i] = x->dims[start + i];
    return MHA_OK;
}

mha_status interp_op_size(interp_ctx *c) {
    const tensor *x;
    tensor *y;
    mha_status st = interp_check_arity(c, 1, 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_out_new(c, 0, MHA_DTYPE_INT64, 0, NULL, &y);
    if (st == MHA_OK) ((int64_t *)y->data)[0] = shape_prod(x->dims, 0, x->rank);
    return st;
}

/* Gather's and GatherElements' operands: data x (rank >= 1), integer
 * indices, the axis of x they index. */
static mha_status shape_gather_operands(interp_ctx *c, const tensor **x, const tensor **idx,
                                        int *axis) {
    int64_t axis_attr;
    char sb[INTERP_SHAPE_BUF];
    mha_status st = interp_check_arity(c, 2, 2, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, x);
    if (st == MHA_OK) st = interp_in_req(c, 1, idx);
    if (st == MHA_OK) st = interp_attr_int(c, "axis", 0, &axis_attr);
    if (st != MHA_OK) return st;
    if ((*x)->rank < 1)
        return interp_fail(c, MHA_ERR_SHAPE, "data must have rank >= 1, has shape %s",
                           interp_shape(*x, sb));
    if ((*idx)->dtype != MHA_DTYPE_INT64 && (*idx)->dtype != MHA_DTYPE_INT32)
        return interp_fail(c, MHA_ERR_DTYPE, "indices must be int64 or int32, not %s",
                           mha_dtype_name((*idx)->dtype));
    return interp_axis(c, axis_attr, (*x)->rank, "axis", axis);
}

mha_status interp_op_gather(interp_ctx *c) {
    const tensor *x, *idx;
    int axis;
    mha_status st = shape_gather_operands(c, &x, &idx, &axis);
    if (st != MHA_OK) return st;
    /* y.shape = x.shape[:axis] + idx.shape + x.shape[axis+1:] */
    int rank = idx->rank + x->rank - 1;
    if (rank > MHA_MAX_RANK)
        return interp_fail(c, MHA_ERR_LIMIT, "output rank %d exceeds %d", rank, MHA_MAX_RANK);
    int64_t dims[MHA_MAX_RANK];
    int r = 0;
    for (int a = 0; a < axis; a++)
        dims[r++] = x->dims[a];
    for (int a = 0; a < idx->rank; a++)
        dims[r++] = idx->dims[a];
    for (int a = axis + 1; a < x->rank; a++)
        dims[r++] = x->dims[a];
    int64_t n_idx = tensor_numel(idx), extent = x->dims[axis];
    for (int64_t i = 0; i < n_idx; i++) {
        int64_t k = tensor_get_i64(idx, i);
        if (k < -extent || k >= extent)
            return interp_fail(c, MHA_ERR_SHAPE,
                               "index %lld is out of range for axis %d of extent %lld",
                               (long long)k, axis, (long long)extent);
    }
    tensor *y;
    st = interp_out_new(c, 0, x->dtype, rank, dims, &y);
    if (st != MHA_OK) return st;
    size_t es = mha_dtype_size(x->dtype);
    int64_t outer = shape_prod(x->dims, 0, axis), inner = shape_prod(x->dims, axis + 1, x->rank);
    size_t chunk = (size_t)inner * es;
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < n_idx; i++) {
            int64_t k = tensor_get_i64(idx, i);
            if (k < 0) k += extent;
            memcpy((char *)y->data + (size_t)(o * n_idx + i) * chunk,
                   (const char *)x->data + (size_t)(o * extent + k) * chunk, chunk);
        }
    }
    return MHA_OK;
}

/* GatherElements (torch.gather: a language model's log-probability of
 * each next token): y[..., i_axis, ...] = x[..., idx[..., i_axis, ...],
 * ...]; y has idx's shape, idx x's rank and no larger extent off the axis. */
mha_status interp_op_gather_elements(interp_ctx *c) {
    const tensor *x, *idx;
    int axis;
    char sb[INTERP_SHAPE_BUF], sb2[INTERP_SHAPE_BUF];
    mha_status st = shape_gather_operands(c, &x, &idx, &axis);
    if (st != MHA_OK) return st;
    if (idx->rank != x->rank)
        return interp_fail(c, MHA_ERR_SHAPE, "data %s and indices %s must have one rank",
                           interp_shape(x, sb), interp_shape(idx, sb2));
    for (int a = 0; a < x->rank; a++)
        if (a != axis && idx->dims[a] > x->dims[a])
            return interp_fail(c, MHA_ERR_SHAPE, "indices %s exceed data %s on axis %d",
                               interp_shape(idx, sb2), interp_shape(x, sb), a);
    tensor *y;
    st = interp_out_new(c, 0, x->dtype, idx->rank, idx->dims, &y);
    if (st != MHA_OK) return st;
    size_t es = mha_dtype_size(x->dtype);
    for (int64_t i = 0, n = tensor_numel(idx); i < n; i++) {
        int64_t off;
        st = interp_element_at(c, x, idx, axis, i, &off);
        if (st != MHA_OK) return st;
        memcpy((char *)y->data + (size_t)i * es, (const char *)x->data + (size_t)off * es, es);
    }
    return MHA_OK;
}

mha_status interp_op_unsqueeze(interp_ctx *c) {
    const tensor *x;
    int64_t axes[MHA_MAX_RANK];
    size_t n;
    int present, flags[MHA_MAX_RANK];
    mha_status st = interp_check_arity(c, 1, c->opset >= 13 ? 2 : 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = shape_axes(c, 13, 1, axes, &n, &present);
    if (st != MHA_OK) return st;
    if (!present) return interp_fail(c, MHA_ERR_MODEL_FORMAT, "axes are required");
    int rank = x->rank + (int)n;
    if (rank > MHA_MAX_RANK)
        return interp_fail(c, MHA_ERR_LIMIT, "output rank %d exceeds %d", rank, MHA_MAX_RANK);
    /* axes index the output: each inserted axis gets extent 1. */
    st = shape_axes_flags(c, axes, n, rank, flags);
    if (st != MHA_OK) return st;
    int64_t dims[MHA_MAX_RANK];
    for (int a = 0, k = 0; a < rank; a++)
        dims[a] = flags[a] ? 1 : x->dims[k++];
    return shape_copy_out(c, 0, x, rank, dims);
}

mha_status interp_op_squeeze(interp_ctx *c) {
    const tensor *x;
    int64_t axes[MHA_MAX_RANK];
    size_t n;
    int present, flags[MHA_MAX_RANK];
    char sb[INTERP_SHAPE_BUF];
    mha_status st = interp_check_arity(c, 1, c->opset >= 13 ? 2 : 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = shape_axes(c, 13, 1, axes, &n, &present);
    if (st != MHA_OK) return st;
    if (present) {
        st = shape_axes_flags(c, axes, n, x->rank, flags);
        if (st != MHA_OK) return st;
        for (int a = 0; a < x->rank; a++)
            if (flags[a] && x->dims[a] != 1)
                return interp_fail(c, MHA_ERR_SHAPE,
                                   "cannot squeeze axis %d of extent %lld (shape %s)", a,
                                   (long long)x->dims[a], interp_shape(x, sb));
    } else {
        for (int a = 0; a < x->rank; a++)
            flags[a] = x->dims[a] == 1;
    }
    int64_t dims[MHA_MAX_RANK];
    int rank = 0;
    for (int a = 0; a < x->rank; a++)
        if (!flags[a]) dims[rank++] = x->dims[a];
    return shape_copy_out(c, 0, x, rank, dims);
}

mha_status interp_op_concat(interp_ctx *c) {
    int64_t axis_attr;
    int axis;
    char s0[INTERP_SHAPE_BUF], s1[INTERP_SHAPE_BUF];
    mha_status st = interp_check_arity(c, 1, SIZE_MAX, 1, 1);
    if (st != MHA_OK) return st;
    if (!interp_has_attr(c, "axis"))
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "attribute 'axis' is required");
    st = interp_attr_int(c, "axis", 0, &axis_attr);
    if (st != MHA_OK) return st;
    const tensor *x0;
    st = interp_in_req(c, 0, &x0);
    if (st != MHA_OK) return st;
    if (x0->rank < 1) return interp_fail(c, MHA_ERR_SHAPE, "cannot concatenate scalars");
    st = interp_axis(c, axis_attr, x0->rank, "axis", &axis);
    if (st != MHA_OK) return st;
    int64_t dims[MHA_MAX_RANK];
    for (int a = 0; a < x0->rank; a++)
        dims[a] = x0->dims[a];
    dims[axis] = 0;
    for (size_t k = 0; k < c->n_in; k++) {
        const tensor *x;
        st = interp_in_req(c, k, &x);
        if (st != MHA_OK) return st;
        if (x->dtype != x0->dtype)
            return interp_fail(c, MHA_ERR_DTYPE, "input %zu is %s, input 0 is %s", k,
                               mha_dtype_name(x->dtype), mha_dtype_name(x0->dtype));
        int bad = x->rank != x0->rank;
        for (int a = 0; !bad && a < x->rank; a++)
            if (a != axis && x->dims[a] != x0->dims[a]) bad = 1;
        if (bad)
            return interp_fail(c, MHA_ERR_SHAPE,
                               "input %zu of shape %s does not match input 0 of shape %s "
                               "outside axis %d",
                               k, interp_shape(x, s1), interp_shape(x0, s0), axis);
        dims[axis] += x->dims[axis];
    }
    tensor *y;
    st = interp_out_new(c, 0, x0->dtype, x0->rank, dims, &y);
    if (st != MHA_OK) return st;
    size_t es = mha_dtype_size(x0->dtype);
    int64_t outer = shape_prod(dims, 0, axis), inner = shape_prod(dims, axis + 1, x0->rank);
    char *dst = y->data;
    for (int64_t o = 0; o < outer; o++) {
        for (size_t k = 0; k < c->n_in; k++) {
            const tensor *x = c->in[k];
            size_t chunk = (size_t)(x->dims[axis] * inner) * es;
            if (chunk) memcpy(dst, (const char *)x->data + (size_t)o * chunk, chunk);
            dst += chunk;
        }
    }
    return MHA_OK;
}

mha_status interp_op_reshape(interp_ctx *c) {
    const tensor *x;
    int64_t shape[MHA_MAX_RANK], allowzero = 0;
    size_t n;
    char sb[INTERP_SHAPE_BUF];
    mha_status st = interp_check_arity(c, c->opset >= 5 ? 2 : 1, c->opset >= 5 ? 2 : 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st != MHA_OK) return st;
    if (c->opset >= 5) {
        const tensor *s;
        st = interp_in_req(c, 1, &s);
        if (st == MHA_OK) st = interp_read_ints(c, s, "shape", shape, MHA_MAX_RANK, &n);
    } else {
        const int64_t *v;
        st = interp_attr_ints(c, "shape", &v, &n);
        if (st == MHA_OK && n > MHA_MAX_RANK)
            st = interp_fail(c, MHA_ERR_LIMIT, "shape has %zu dims, at most %d allowed", n,
                             MHA_MAX_RANK);
        for (size_t i = 0; st == MHA_OK && i < n; i++)
            shape[i] = v[i];
    }
    if (st == MHA_OK && c->opset >= 14) st = interp_attr_int(c, "allowzero", 0, &allowzero);
    if (st != MHA_OK) return st;
    /* 0 copies the input's extent at that index (unless allowzero); one -1
     * is inferred from the element count. */
    int infer = -1, has_zero = 0;
    int64_t known = 1;
    for (size_t i = 0; i < n; i++) {
        if (shape[i] == -1) {
            if (infer >= 0) return interp_fail(c, MHA_ERR_SHAPE, "shape has more than one -1");
            infer = (int)i;
            continue;
        }
        if (shape[i] < -1)
            return interp_fail(c, MHA_ERR_SHAPE, "shape has invalid extent %lld",
                               (long long)shape[i]);
        if (shape[i] == 0) {
            has_zero = 1;
            if (!allowzero) {
                if ((int)i >= x->rank)
                    return interp_fail(c, MHA_ERR_SHAPE,
                                       "shape[%zu] = 0 copies a dimension the input of shape %s "
                                       "does not have",
                                       i, interp_shape(x, sb));
                shape[i] = x->dims[i];
            }
        }
        if (!mha_mul_i64(known, shape[i], &known))
            return interp_fail(c, MHA_ERR_LIMIT, "shape is too large");
    }
    if (allowzero && has_zero && infer >= 0)
        return interp_fail(c, MHA_ERR_SHAPE, "shape has both 0 and -1 with allowzero=1");
    int64_t total = tensor_numel(x);
    if (infer >= 0) {
        if (known == 0 || total % known != 0)
            return interp_fail(c, MHA_ERR_SHAPE, "cannot infer -1: %lld elements of shape %s",
                               (long long)total, interp_shape(x, sb));
        shape[infer] = total / known;
    } else if (known != total) {
        char s1[INTERP_SHAPE_BUF];
        return interp_fail(c, MHA_ERR_SHAPE, "cannot reshape %s (%lld elements) to %s",
                           interp_shape(x, sb), (long long)total,
                           tensor_shape_str((int)n, shape, s1, sizeof s1));
    }
    return shape_copy_out(c, 0, x, (int)n, shape);
}

mha_status interp_op_transpose(interp_ctx *c) {
    const tensor *x;
    const int64_t *perm_attr;
    size_t n;
    mha_status st = interp_check_arity(c, 1, 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_attr_ints(c, "perm", &perm_attr, &n);
    if (st != MHA_OK) return st;
    int perm[MHA_MAX_RANK], seen[MHA_MAX_RANK] = {0};
    if (interp_has_attr(c, "perm")) {
        if (n != (size_t)x->rank)
            return interp_fail(c, MHA_ERR_SHAPE, "perm has %zu entries for rank %d", n, x->rank);
        for (size_t i = 0; i < n; i++) {
            if (perm_attr[i] < 0 || perm_attr[i] >= x->rank || seen[perm_attr[i]])
                return interp_fail(c, MHA_ERR_SHAPE, "perm is not a permutation of 0..%d",
                                   x->rank - 1);
            seen[perm_attr[i]] = 1;
            perm[i] = (int)perm_attr[i];
        }
    } else {
        for (int a = 0; a < x->rank; a++)
            perm[a] = x->rank - 1 - a;
    }
    int64_t dims[MHA_MAX_RANK], xs[MHA_MAX_RANK], step[MHA_MAX_RANK];
    shape_strides(x->rank, x->dims, xs);
    for (int a = 0; a < x->rank; a++) {
        dims[a] = x->dims[perm[a]];
        step[a] = xs[perm[a]]; /* y axis a walks x axis perm[a] */
    }
    tensor *y;
    st = interp_out_new(c, 0, x->dtype, x->rank, dims, &y);
    if (st != MHA_OK) return st;
    shape_gather(x, y, 0, step);
    return MHA_OK;
}

mha_status interp_op_slice(interp_ctx *c) {
    const tensor *x;
    int64_t starts[MHA_MAX_RANK], ends[MHA_MAX_RANK], axes[MHA_MAX_RANK], steps[MHA_MAX_RANK];
    size_t ns, ne, na = 0, nst = 0;
    int has_axes = 0, has_steps = 0;
    mha_status st;
    if (c->opset >= 10) {
        const tensor *ts, *te, *ta, *tst;
        st = interp_check_arity(c, 3, 5, 1, 1);
        if (st == MHA_OK) st = interp_in_req(c, 0, &x);
        if (st == MHA_OK) st = interp_in_req(c, 1, &ts);
        if (st == MHA_OK) st = interp_in_req(c, 2, &te);
        if (st == MHA_OK) st = interp_read_ints(c, ts, "starts", starts, MHA_MAX_RANK, &ns);
        if (st == MHA_OK) st = interp_read_ints(c, te, "ends", ends, MHA_MAX_RANK, &ne);
        if (st == MHA_OK && (ta = interp_in(c, 3)) != NULL) {
            has_axes = 1;
            st = interp_read_ints(c, ta, "axes", axes, MHA_MAX_RANK, &na);
        }
        if (st == MHA_OK && (tst = interp_in(c, 4)) != NULL) {
            has_steps = 1;
            st = interp_read_ints(c, tst, "steps", steps, MHA_MAX_RANK, &nst);
        }
    } else {
        const int64_t *vs, *ve, *va;
        st = interp_check_arity(c, 1, 1, 1, 1);
        if (st == MHA_OK) st = interp_in_req(c, 0, &x);
        if (st == MHA_OK) st = interp_attr_ints(c, "starts", &vs, &ns);
        if (st == MHA_OK) st = interp_attr_ints(c, "ends", &ve, &ne);
        if (st == MHA_OK) st = interp_attr_ints(c, "axes", &va, &na);
        if (st == MHA_OK && (ns > MHA_MAX_RANK || ne > MHA_MAX_RANK || na > MHA_MAX_RANK))
            st = interp_fail(c, MHA_ERR_SHAPE, "too many slice entries");
        if (st == MHA_OK) {
            has_axes = interp_has_attr(c, "axes");
            for (size_t i = 0; i < ns; i++)
                starts[i] = vs[i];
            for (size_t i = 0; i < ne; i++)
                ends[i] = ve[i];
            for (size_t i = 0; i < na; i++)
                axes[i] = va[i];
        }
    }
    if (st != MHA_OK) return st;
    if (ns != ne || (has_axes && na != ns) || (has_steps && nst != ns))
        return interp_fail(c, MHA_ERR_SHAPE,
                           "starts (%zu), ends (%zu), axes and steps must have the same length", ns,
                           ne);
    if (!has_axes)
        for (size_t i = 0; i < ns; i++)
            axes[i] = (int64_t)i;
    if (!has_steps)
        for (size_t i = 0; i < ns; i++)
            steps[i] = 1;
    /* Per axis: first index, step and count; untouched axes take all. */
    int64_t first[MHA_MAX_RANK], step[MHA_MAX_RANK], dims[MHA_MAX_RANK];
    int flags[MHA_MAX_RANK];
    st = shape_axes_flags(c, axes, ns, x->rank, flags);
    if (st != MHA_OK) return st;
    for (int a = 0; a < x->rank; a++) {
        first[a] = 0;
        step[a] = 1;
        dims[a] = x->dims[a];
    }
    for (size_t i = 0; i < ns; i++) {
        int a = (int)(axes[i] < 0 ? axes[i] + x->rank : axes[i]);
        int64_t d = x->dims[a], s = starts[i], e = ends[i], k = steps[i];
        if (k == 0) return interp_fail(c, MHA_ERR_SHAPE, "step of axis %d is 0", a);
        if (s < 0) s += d;
        if (e < 0) e += d;
        int64_t cnt;
        if (d == 0) {
            cnt = 0; /* nothing to take, whatever the clamps below would say */
            s = 0;
        } else if (k > 0) {
            s = s < 0 ? 0 : s > d ? d : s;
            e = e < 0 ? 0 : e > d ? d : e;
            cnt = e > s ? (e - s - 1) / k + 1 : 0;
        } else {
            s = s < 0 ? 0 : s > d - 1 ? d - 1 : s;
            e = e < -1 ? -1 : e > d - 1 ? d - 1 : e;
            uint64_t mag = (uint64_t)0 - (uint64_t)k; /* |k| without overflow at INT64_MIN */
            cnt = s > e ? (int64_t)((uint64_t)(s - e - 1) / mag) + 1 : 0;
        }
        first[a] = s;
        step[a] = k;
        dims[a] = cnt;
    }
    /* An axis that yields one element never steps (its step may be huge), and
     * an empty result reads nothing: only real offsets are formed, so they
     * stay inside x. */
    int64_t xs[MHA_MAX_RANK], xstep[MHA_MAX_RANK], base = 0, count = 1;
    shape_strides(x->rank, x->dims, xs);
    for (int a = 0; a < x->rank; a++)
        count *= dims[a] > 0 ? 1 : 0;
    for (int a = 0; a < x->rank; a++) {
        base += count ? first[a] * xs[a] : 0;
        xstep[a] = dims[a] > 1 ? step[a] * xs[a] : 0;
    }
    tensor *y;
    st = interp_out_new(c, 0, x->dtype, x->rank, dims, &y);
    if (st != MHA_OK) return st;
    shape_gather(x, y, base, xstep);
    return MHA_OK;
}

mha_status interp_op_split(interp_ctx *c) {
    const tensor *x, *split_in = NULL;
    const int64_t *split_attr = NULL;
    size_t n_split_attr = 0;
    int64_t axis_attr, num_outputs = 0;
    int axis;
    mha_status st = interp_check_arity(c, 1, c->opset >= 13 ? 2 : 1, 1, SIZE_MAX);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_attr_int(c, "axis", 0, &axis_attr);
    if (st != MHA_OK) return st;
    if (x->rank < 1) return interp_fail(c, MHA_ERR_SHAPE, "cannot split a scalar");
    st = interp_axis(c, axis_attr, x->rank, "axis", &axis);
    if (st != MHA_OK) return st;
    if (c->opset >= 13) {
        split_in = interp_in(c, 1);
        if (interp_has_attr(c, "split"))
            return interp_fail(c, MHA_ERR_MODEL_FORMAT,
                               "the 'split' attribute was replaced by an input in opset 13");
    } else {
        st = interp_attr_ints(c, "split", &split_attr, &n_split_attr);
        if (st != MHA_OK) return st;
    }
    if (c->opset >= 18) {
        st = interp_attr_int(c, "num_outputs", 0, &num_outputs);
        if (st != MHA_OK) return st;
    }
    size_t n = c->n_out;
    int64_t d = x->dims[axis];
    int64_t chunk = 0;
    if (split_in != NULL) {
        if (split_in->dtype != MHA_DTYPE_INT64 && split_in->dtype != MHA_DTYPE_INT32)
            return interp_fail(c, MHA_ERR_DTYPE, "split must be int64");
        if (split_in->rank != 1 || (size_t)split_in->dims[0] != n)
            return interp_fail(c, MHA_ERR_SHAPE, "split must be 1-D with %zu values", n);
        if (num_outputs != 0)
            return interp_fail(c, MHA_ERR_MODEL_FORMAT,
                               "split and num_outputs cannot both be given");
    } else if (split_attr != NULL || interp_has_attr(c, "split")) {
        if (n_split_attr != n)
            return interp_fail(c, MHA_ERR_SHAPE, "split has %zu values for %zu outputs",
                               n_split_attr, n);
    } else if (num_outputs != 0) {
        /* Equal chunks of ceil(d / n); the last one takes what remains. */
        if ((uint64_t)num_outputs != n)
            return interp_fail(c, MHA_ERR_MODEL_FORMAT, "num_outputs %lld but %zu outputs",
                               (long long)num_outputs, n);
        chunk = (d + (int64_t)n - 1) / (int64_t)n;
        if (chunk * ((int64_t)n - 1) > d)
            return interp_fail(c, MHA_ERR_SHAPE, "cannot split extent %lld into %zu parts",
                               (long long)d, n);
    } else {
        if (d % (int64_t)n != 0)
            return interp_fail(c, MHA_ERR_SHAPE,
                               "extent %lld of axis %d does not split evenly into %zu parts",
                               (long long)d, axis, n);
        chunk = d / (int64_t)n;
    }
    /* Sizes of part k, checked to sum to d. */
    int64_t sum = 0;
    for (size_t k = 0; k < n; k++) {
        int64_t sz = split_in      ? tensor_get_i64(split_in, (int64_t)k)
                     : split_attr  ? split_attr[k]
                     : (k + 1 < n) ? chunk
                                   : d - chunk * ((int64_t)n - 1);
        if (sz < 0 || sz > d - sum)
            return interp_fail(c, MHA_ERR_SHAPE, "split sizes do not add up to extent %lld",
                               (long long)d);
        sum += sz;
    }
    if (sum != d)
        return interp_fail(c, MHA_ERR_SHAPE, "split sizes add up to %lld, extent is %lld",
                           (long long)sum, (long long)d);
    size_t es = mha_dtype_size(x->dtype);
    int64_t outer = shape_prod(x->dims, 0, axis), inner = shape_prod(x->dims, axis + 1, x->rank);
    int64_t at = 0;
    for (size_t k = 0; k < n; k++) {
        int64_t sz = split_in      ? tensor_get_i64(split_in, (int64_t)k)
                     : split_attr  ? split_attr[k]
                     : (k + 1 < n) ? chunk
                                   : d - chunk * ((int64_t)n - 1);
        int64_t dims[MHA_MAX_RANK];
        for (int a = 0; a < x->rank; a++)
            dims[a] = x->dims[a];
        dims[axis] = sz;
        tensor *y;
        st = interp_out_new(c, k, x->dtype, x->rank, dims, &y);
        if (st != MHA_OK) return st;
        size_t part = (size_t)(sz * inner) * es, row = (size_t)(d * inner) * es;
        for (int64_t o = 0; o < outer && part; o++)
            memcpy((char *)y->data + (size_t)o * part,
                   (const char *)x->data + (size_t)o * row + (size_t)(at * inner) * es, part);
        at += sz;
    }
    return MHA_OK;
}

mha_status interp_op_expand(interp_ctx *c) {
    const tensor *x, *s;
    int64_t shape[MHA_MAX_RANK];
    size_t n;
    mha_status st = interp_check_arity(c, 2, 2, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_in_req(c, 1, &s);
    if (st == MHA_OK) st = interp_read_ints(c, s, "shape", shape, MHA_MAX_RANK, &n);
    if (st != MHA_OK) return st;
    /* Bidirectional broadcast of x's shape with the given one (a 1 in the
     * given shape keeps x's extent). */
    tensor target = {.dtype = x->dtype, .rank = (int)n};
    for (size_t i = 0; i < n; i++) {
        if (shape[i] < 0)
            return interp_fail(c, MHA_ERR_SHAPE, "shape has negative extent %lld",
                               (long long)shape[i]);
        target.dims[i] = shape[i];
    }
    const tensor *ops[2] = {x, &target};
    interp_bcast b;
    st = interp_bcast_init(c, &b, 2, ops);
    if (st != MHA_OK) return st;
    tensor *y;
    st = interp_out_new(c, 0, x->dtype, b.rank, b.dims, &y);
    if (st != MHA_OK) return st;
    /* row by row of the last axis (interp_bcast_rows): one copy per row
     * when x's last axis is not broadcast */
    const size_t es = mha_dtype_size(x->dtype);
    const char *px = x->data;
    char *py = y->data;
    interp_bcast outer;
    int64_t D, rs[3];
    interp_bcast_rows(&b, &outer, &D, rs);
    interp_bcast_walk w;
    interp_bcast_walk_start(&outer, &w);
    for (int64_t i0 = 0; D > 0 && i0 < b.numel; i0 += D, interp_bcast_walk_step(&outer, &w)) {
        const char *src = px + (size_t)w.off[0] * es;
        if (rs[0] == 1)
            memcpy(py + (size_t)i0 * es, src, (size_t)D * es);
        else
            for (int64_t j = 0; j < D; j++)
                memcpy(py + (size_t)(i0 + j) * es, src, es);
    }
    return MHA_OK;
}

mha_status interp_op_range(interp_ctx *c) {
    const tensor *ts, *tl, *td;
    char sb[INTERP_SHAPE_BUF];
    mha_status st = interp_check_arity(c, 3, 3, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &ts);
    if (st == MHA_OK) st = interp_in_req(c, 1, &tl);
    if (st == MHA_OK) st = interp_in_req(c, 2, &td);
    if (st != MHA_OK) return st;
    const tensor *all[3] = {ts, tl, td};
    for (int k = 0; k < 3; k++) {
        if (all[k]->dtype != ts->dtype)
            return interp_fail(c, MHA_ERR_DTYPE, "start, limit and delta must share a type");
        if (tensor_numel(all[k]) != 1 || all[k]->rank > 1)
            return interp_fail(c, MHA_ERR_SHAPE, "input %d must be a scalar, has shape %s", k,
                               interp_shape(all[k], sb));
    }
    mha_dtype dt = ts->dtype;
    if (!interp_is_float(dt) && dt != MHA_DTYPE_INT64 && dt != MHA_DTYPE_INT32)
        return interp_fail(c, MHA_ERR_DTYPE, "Range of %s is not supported", mha_dtype_name(dt));
    double s = tensor_get_f64(ts, 0), l = tensor_get_f64(tl, 0), dlt = tensor_get_f64(td, 0);
    if (dlt == 0 || isnan(dlt) || isnan(s) || isnan(l) || isinf(s) || isinf(l))
        return interp_fail(c, MHA_ERR_SHAPE, "invalid range start %g limit %g delta %g", s, l, dlt);
    /* count = max(ceil((limit - start) / delta), 0) */
    double cnt = ceil((l - s) / dlt);
    if (!(cnt > 0)) cnt = 0;
    if (cnt > 9.0e15)
        return interp_fail(c, MHA_ERR_LIMIT, "range of %g elements is too large", cnt);
    int64_t n = (int64_t)cnt;
    tensor *y;
    st = interp_out_new(c, 0, dt, 1, &n, &y);
    if (st != MHA_OK) return st;
    if (interp_is_float(dt)) {
        for (int64_t i = 0; i < n; i++)
            tensor_set_f64(y, i, s + (double)i * dlt);
    } else {
        int64_t si = tensor_get_i64(ts, 0), di = tensor_get_i64(td, 0);
        for (int64_t i = 0; i < n; i++)
            interp_set_i64(y, i, (int64_t)((uint64_t)si + (uint64_t)i * (uint64_t)di));
    }
    return MHA_OK;
}

mha_status interp_op_trilu(interp_ctx *c) {
    const tensor *x, *tk;
    int64_t upper, k = 0;
    char sb[INTERP_SHAPE_BUF];
    mha_status st = interp_check_arity(c, 1, 2, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_attr_int(c, "upper", 1, &upper);
    if (st == MHA_OK && (tk = interp_in(c, 1)) != NULL) st = interp_read_scalar_int(c, tk, "k", &k);
    if (st != MHA_OK) return st;
    if (x->rank < 2)
        return interp_fail(c, MHA_ERR_SHAPE, "input must have rank >= 2, has shape %s",
                           interp_shape(x, sb));
    tensor *y;
    st = shape_copy_out(c, 0, x, x->rank, x->dims);
    if (st != MHA_OK) return st;
    y = c->out[0];
    /* Upper keeps j - i >= k, lower keeps j - i <= k; the rest becomes 0. */
    int64_t rows = x->dims[x->rank - 2], cols = x->dims[x->rank - 1];
    int64_t total = tensor_numel(x);
    size_t es = mha_dtype_size(x->dtype);
    for (int64_t e = 0; e < total; e++) {
        int64_t j = e % cols, i = (e / cols) % rows;
        int keep = upper ? (j - i >= k) : (j - i <= k);
        if (!keep) memset((char *)y->data + (size_t)e * es, 0, es);
    }
    return MHA_OK;
}

/* EyeLike: the input's 2-D shape, ones where j - i == k, zeros elsewhere;
 * the dtype attribute's type, else the input's (XLNet's -eye(S) of the
 * rows that always see themselves). */
mha_status interp_op_eye_like(interp_ctx *c) {
    const tensor *x;
    int64_t k, to;
    char sb[INTERP_SHAPE_BUF];
    mha_status st = interp_check_arity(c, 1, 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_attr_int(c, "k", 0, &k);
    if (st == MHA_OK) st = interp_attr_int(c, "dtype", (int64_t)x->dtype, &to);
    if (st != MHA_OK) return st;
    if (x->rank != 2)
        return interp_fail(c, MHA_ERR_SHAPE, "input must have rank 2, has shape %s",
                           interp_shape(x, sb));
    if (to <= 0 || to > 64 || !mha_dtype_in_models((mha_dtype)to))
        return interp_fail(c, MHA_ERR_DTYPE, "unsupported data type %lld", (long long)to);
    tensor *y;
    st = interp_out_new(c, 0, (mha_dtype)to, 2, x->dims, &y);
    if (st != MHA_OK) return st;
    for (int64_t i = 0; i < x->dims[0]; i++) {
        const int64_t j = i + k;
        if (j >= 0 && j < x->dims[1]) interp_set_i64(y, i * x->dims[1] + j, 1);
    }
    return MHA_OK;
}

mha_status interp_op_flatten(interp_ctx *c) {
    const tensor *x;
    int64_t axis;
    mha_status st = interp_check_arity(c, 1, 1, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_attr_int(c, "axis", 1, &axis);
    if (st != MHA_OK) return st;
    /* axis may be rank itself: [prod(all), 1]. */
    if (axis < -(int64_t)x->rank || axis > x->rank)
        return interp_fail(c, MHA_ERR_SHAPE, "axis %lld is out of range for rank %d",
                           (long long)axis, x->rank);
    int ax = (int)(axis < 0 ? axis + x->rank : axis);
    int64_t dims[2] = {shape_prod(x->dims, 0, ax), shape_prod(x->dims, ax, x->rank)};
    return shape_copy_out(c, 0, x, 2, dims);
}

mha_status interp_op_tile(interp_ctx *c) {
    const tensor *x, *tr;
    int64_t reps[MHA_MAX_RANK];
    size_t n;
    mha_status st = interp_check_arity(c, 2, 2, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_in_req(c, 1, &tr);
    if (st == MHA_OK) st = interp_read_ints(c, tr, "repeats", reps, MHA_MAX_RANK, &n);
    if (st != MHA_OK) return st;
    if (n != (size_t)x->rank)
        return interp_fail(c, MHA_ERR_SHAPE, "repeats has %zu values for rank %d", n, x->rank);
    int64_t dims[MHA_MAX_RANK], xs[MHA_MAX_RANK];
    for (int a = 0; a < x->rank; a++) {
        if (reps[a] < 0)
            return interp_fail(c, MHA_ERR_SHAPE, "repeats[%d] = %lld is negative", a,
                               (long long)reps[a]);
        if (!mha_mul_i64(x->dims[a], reps[a], &dims[a]))
            return interp_fail(c, MHA_ERR_LIMIT, "tiled extent of axis %d overflows", a);
    }
    shape_strides(x->rank, x->dims, xs);
    tensor *y;
    st = interp_out_new(c, 0, x->dtype, x->rank, dims, &y);
    if (st != MHA_OK) return st;
    size_t es = mha_dtype_size(x->dtype);
    int64_t total = tensor_numel(y);
    for (int64_t i = 0; i < total; i++) {
        int64_t rem = i, off = 0;
        for (int a = x->rank - 1; a >= 0; a--) {
            off += ((rem % dims[a]) % x->dims[a]) * xs[a];
            rem /= dims[a];
        }
        memcpy((char *)y->data + (size_t)i * es, (const char *)x->data + (size_t)off * es, es);
    }
    return MHA_OK;
}

/* Pad (opsets 2 and 11+; axes from 18, wrap from 19): y[i] reads x[i -
 * begin] along each axis; an index outside x takes the constant value
 * (mode constant), the nearest edge element (edge), its mirror image
 * without the edge repeated (reflect) or x's other end (wrap). A negative
 * pad crops. */
mha_status interp_op_pad(interp_ctx *c) {
    const tensor *x;
    int64_t pads[2 * MHA_MAX_RANK], axes[MHA_MAX_RANK];
    size_t np = 0, na = 0;
    double value = 0.0;
    mha_status st;
    if (c->opset >= 11) {
        const tensor *tp, *tv, *ta;
        st = interp_check_arity(c, 2, 4, 1, 1);
        if (st == MHA_OK) st = interp_in_req(c, 0, &x);
        if (st == MHA_OK) st = interp_in_req(c, 1, &tp);
        if (st == MHA_OK) st = interp_read_ints(c, tp, "pads", pads, 2 * MHA_MAX_RANK, &np);
        if (st == MHA_OK && (tv = interp_in(c, 2)) != NULL) {
            if (tensor_numel(tv) != 1 || tv->dtype != x->dtype)
                st = interp_fail(c, MHA_ERR_SHAPE,
                                 "constant_value must be one value of the data's type");
            else
                value = tensor_get_f64(tv, 0);
        }
        if (st == MHA_OK && (ta = interp_in(c, 3)) != NULL)
            st = interp_read_ints(c, ta, "axes", axes, MHA_MAX_RANK, &na);
        else if (st == MHA_OK)
            na = (size_t)x->rank;
        if (st == MHA_OK && interp_in(c, 3) == NULL)
            for (size_t a = 0; a < na; a++)
                axes[a] = (int64_t)a;
    } else {
        const int64_t *vp;
        float fv;
        st = interp_check_arity(c, 1, 1, 1, 1);
        if (st == MHA_OK) st = interp_in_req(c, 0, &x);
        if (st == MHA_OK) st = interp_attr_ints(c, "pads", &vp, &np);
        if (st == MHA_OK && np > 2 * MHA_MAX_RANK)
            st = interp_fail(c, MHA_ERR_SHAPE, "pads has %zu values", np);
        if (st == MHA_OK) st = interp_attr_float(c, "value", 0.0f, &fv);
        if (st == MHA_OK) {
            for (size_t i = 0; i < np; i++)
                pads[i] = vp[i];
            value = fv;
            na = (size_t)x->rank;
            for (size_t a = 0; a < na; a++)
                axes[a] = (int64_t)a;
        }
    }
    if (st != MHA_OK) return st;
    enum { PAD_CONSTANT, PAD_EDGE, PAD_REFLECT, PAD_WRAP } mode = PAD_CONSTANT;
    const ir_attr *am = ir_node_attr(c->n, "mode");
    if (am) {
        const char *s = am->type == IR_ATTR_STRING && am->s ? am->s : "";
        if (strcmp(s, "edge") == 0)
            mode = PAD_EDGE;
        else if (strcmp(s, "reflect") == 0)
            mode = PAD_REFLECT;
        else if (strcmp(s, "wrap") == 0 && c->opset >= 19)
            mode = PAD_WRAP;
        else if (strcmp(s, "constant") != 0)
            return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED, "mode '%s' is not a Pad mode", s);
    }
    if (np != 2 * na)
        return interp_fail(c, MHA_ERR_SHAPE, "pads has %zu values for %zu axes", np, na);
    int64_t begin[MHA_MAX_RANK] = {0}, end[MHA_MAX_RANK] = {0}, dims[MHA_MAX_RANK];
    int seen[MHA_MAX_RANK] = {0};
    for (size_t k = 0; k < na; k++) {
        int ax;
        st = interp_axis(c, axes[k], x->rank, "axes", &ax);
        if (st != MHA_OK) return st;
        if (seen[ax]) return interp_fail(c, MHA_ERR_SHAPE, "axis %d is padded twice", ax);
        seen[ax] = 1;
        begin[ax] = pads[k];
        end[ax] = pads[k + na];
    }
    for (int a = 0; a < x->rank; a++) {
        int64_t d;
        if (__builtin_add_overflow(x->dims[a], begin[a], &d) ||
            __builtin_add_overflow(d, end[a], &dims[a]) || dims[a] < 0)
            return interp_fail(c, MHA_ERR_SHAPE, "axis %d of %lld padded by %lld and %lld", a,
                               (long long)x->dims[a], (long long)begin[a], (long long)end[a]);
        if (mode != PAD_CONSTANT && x->dims[a] == 0 && dims[a] > 0)
            return interp_fail(c, MHA_ERR_SHAPE, "axis %d is empty: nothing to pad it with", a);
    }
    int64_t xs[MHA_MAX_RANK];
    shape_strides(x->rank, x->dims, xs);
    tensor *y;
    st = interp_out_new(c, 0, x->dtype, x->rank, dims, &y);
    if (st != MHA_OK) return st;
    const size_t es = mha_dtype_size(x->dtype);
    const int64_t total = tensor_numel(y);
    for (int64_t i = 0; i < total; i++) {
        int64_t rem = i, off = 0;
        int outside = 0;
        for (int a = x->rank - 1; a >= 0; a--) {
            const int64_t n = x->dims[a];
            int64_t s = rem % dims[a] - begin[a];
            rem /= dims[a];
            if (s < 0 || s >= n) {
                if (mode == PAD_CONSTANT) {
                    outside = 1;
                    continue;
                }
                if (mode == PAD_EDGE) {
                    s = s < 0 ? 0 : n - 1;
                } else if (mode == PAD_WRAP) {
                    s %= n;
                    if (s < 0) s += n;
                } else if (n == 1) {
                    s = 0;
                } else { /* reflect: period 2 (n - 1) */
                    const int64_t p = 2 * (n - 1);
                    s %= p;
                    if (s < 0) s += p;
                    if (s >= n) s = p - s;
                }
            }
            off += s * xs[a];
        }
        if (outside)
            tensor_set_f64(y, i, value);
        else
            memcpy((char *)y->data + (size_t)i * es, (const char *)x->data + (size_t)off * es, es);
    }
    return MHA_OK;
}
