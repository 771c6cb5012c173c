/* interp_helpers.c -- what every op of the reference interpreter uses
 * (declared in interp_internal.h): failures naming the node, arity checks,
 * inputs and outputs, typed attributes, axes, integer reads and writes, and
 * numpy broadcasting. The ops (interp_*.c) call these; the driver
 * (interp.c) calls the ops. */
#include "interp_internal.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

mha_status interp_fail(const interp_ctx *c, mha_status st, const char *fmt, ...) {
    char desc[160];
    char msg[MHA_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mha_fail(c->err, st, "%s: %s", ir_node_desc(c->n, desc, sizeof desc), msg);
}

/* "expects 2 inputs" / "expects 1 to 3 inputs" / "expects at least 1 input" */
static mha_status interp_count_fail(const interp_ctx *c, const char *what, size_t lo, size_t hi,
                                    size_t have) {
    if (lo == hi)
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "expects %zu %s, has %zu", lo, what, have);
    if (hi == SIZE_MAX)
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "expects at least %zu %s, has %zu", lo, what,
                           have);
    return interp_fail(c, MHA_ERR_MODEL_FORMAT, "expects %zu to %zu %s, has %zu", lo, hi, what,
                       have);
}

mha_status interp_check_arity(const interp_ctx *c, size_t min_in, size_t max_in, size_t min_out,
                              size_t max_out) {
    if (c->n_in < min_in || c->n_in > max_in)
        return interp_count_fail(c, "inputs", min_in, max_in, c->n_in);
    if (c->n_out < min_out || c->n_out > max_out)
        return interp_count_fail(c, "outputs", min_out, max_out, c->n_out);
    return MHA_OK;
}

const tensor *interp_in(const interp_ctx *c, size_t k) {
    return k < c->n_in ? c->in[k] : NULL;
}

mha_status interp_in_req(const interp_ctx *c, size_t k, const tensor **t) {
    *t = interp_in(c, k);
    if (*t == NULL) return interp_fail(c, MHA_ERR_MODEL_FORMAT, "required input %zu is missing", k);
    return MHA_OK;
}

const char *interp_shape(const tensor *t, char *buf) {
    return tensor_shape_str(t->rank, t->dims, buf, INTERP_SHAPE_BUF);
}

mha_status interp_tensor_new(const interp_ctx *c, mha_dtype dt, int rank, const int64_t *dims,
                             tensor **t) {
    *t = NULL;
    if (rank < 0 || rank > MHA_MAX_RANK)
        return interp_fail(c, MHA_ERR_LIMIT, "result would have rank %d (limit %d)", rank,
                           MHA_MAX_RANK);
    size_t esize = mha_dtype_size(dt);
    if (esize == 0) return interp_fail(c, MHA_ERR_DTYPE, "unsupported data type %d", (int)dt);
    size_t bytes = esize;
    for (int i = 0; i < rank; i++) {
        char sb[INTERP_SHAPE_BUF];
        if (dims[i] < 0)
            return interp_fail(c, MHA_ERR_SHAPE, "result would have negative shape %s",
                               tensor_shape_str(rank, dims, sb, sizeof sb));
        if ((uint64_t)dims[i] > SIZE_MAX || !mha_mul_size(bytes, (size_t)dims[i], &bytes) ||
            bytes > INTERP_MAX_TENSOR_BYTES)
            return interp_fail(
                c, MHA_ERR_LIMIT, "result of shape %s exceeds the interpreter's %zu-byte limit",
                tensor_shape_str(rank, dims, sb, sizeof sb), (size_t)INTERP_MAX_TENSOR_BYTES);
    }
    mha_status st = tensor_new(c->a, dt, rank, dims, t, c->err);
    if (st != MHA_OK) {
        char desc[160];
        mha_error_prefix(c->err, "%s", ir_node_desc(c->n, desc, sizeof desc));
    }
    return st;
}

mha_status interp_out_new(interp_ctx *c, size_t k, mha_dtype dt, int rank, const int64_t *dims,
                          tensor **t) {
    *t = NULL;
    if (k >= c->n_out)
        return interp_fail(c, MHA_ERR_INTERNAL, "output %zu beyond the node's %zu outputs", k,
                           c->n_out);
    mha_status st = interp_tensor_new(c, dt, rank, dims, t);
    if (st != MHA_OK) return st;
    tensor_free(c->out[k]);
    c->out[k] = *t;
    return MHA_OK;
}

int interp_has_attr(const interp_ctx *c, const char *name) {
    return ir_node_attr(c->n, name) != NULL;
}

mha_status interp_attr_int(const interp_ctx *c, const char *name, int64_t dflt, int64_t *v) {
    const ir_attr *at = ir_node_attr(c->n, name);
    *v = dflt;
    if (at == NULL) return MHA_OK;
    if (at->type != IR_ATTR_INT)
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "attribute '%s' must be an int", name);
    *v = at->i;
    return MHA_OK;
}

mha_status interp_attr_flag(const interp_ctx *c, const char *name, int64_t dflt, int64_t *v) {
    mha_status st = interp_attr_int(c, name, dflt, v);
    if (st == MHA_OK && *v != 0 && *v != 1)
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "attribute '%s' is %lld, not 0 or 1", name,
                           (long long)*v);
    return st;
}

mha_status interp_attr_float(const interp_ctx *c, const char *name, float dflt, float *v) {
    const ir_attr *at = ir_node_attr(c->n, name);
    *v = dflt;
    if (at == NULL) return MHA_OK;
    if (at->type == IR_ATTR_INT) { /* a float written as an int: accepted */
        *v = (float)at->i;
        return MHA_OK;
    }
    if (at->type != IR_ATTR_FLOAT)
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "attribute '%s' must be a float", name);
    *v = at->f;
    return MHA_OK;
}

mha_status interp_attr_ints(const interp_ctx *c, const char *name, const int64_t **ints,
                            size_t *n) {
    const ir_attr *at = ir_node_attr(c->n, name);
    *ints = NULL;
    *n = 0;
    if (at == NULL) return MHA_OK;
    if (at->type != IR_ATTR_INTS)
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "attribute '%s' must be a list of ints", name);
    if (at->n > 0 && at->ints == NULL)
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "attribute '%s' has no data", name);
    *ints = at->ints;
    *n = at->n;
    return MHA_OK;
}

mha_status interp_attr_ints_n(const interp_ctx *c, const char *name, size_t n, int64_t dflt,
                              int64_t *out) {
    const int64_t *v;
    size_t got;
    mha_status st = interp_attr_ints(c, name, &v, &got);
    if (st != MHA_OK) return st;
    if (!v) {
        for (size_t i = 0; i < n; i++)
            out[i] = dflt;
        return MHA_OK;
    }
    if (got != n)
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "%s has %zu values, wanted %zu", name, got, n);
    memcpy(out, v, n * sizeof *v);
    return MHA_OK;
}

mha_status interp_read_ints(const interp_ctx *c, const tensor *t, const char *what, int64_t *buf,
                            size_t max, size_t *n) {
    char sb[INTERP_SHAPE_BUF];
    *n = 0;
    if (t->dtype != MHA_DTYPE_INT64 && t->dtype != MHA_DTYPE_INT32)
        return interp_fail(c, MHA_ERR_DTYPE, "%s must be int64 or int32, not %s", what,
                           mha_dtype_name(t->dtype));
    if (t->rank > 1)
        return interp_fail(c, MHA_ERR_SHAPE, "%s must be 1-D, has shape %s", what,
                           interp_shape(t, sb));
    int64_t count = tensor_numel(t);
    if (count < 0 || (uint64_t)count > max)
        return interp_fail(c, MHA_ERR_SHAPE, "%s has %lld values, at most %zu allowed", what,
                           (long long)count, max);
    for (int64_t i = 0; i < count; i++)
        buf[i] = tensor_get_i64(t, i);
    *n = (size_t)count;
    return MHA_OK;
}

mha_status interp_read_scalar_int(const interp_ctx *c, const tensor *t, const char *what,
                                  int64_t *v) {
    char sb[INTERP_SHAPE_BUF];
    if (t->dtype != MHA_DTYPE_INT64 && t->dtype != MHA_DTYPE_INT32)
        return interp_fail(c, MHA_ERR_DTYPE, "%s must be int64 or int32, not %s", what,
                           mha_dtype_name(t->dtype));
    if (tensor_numel(t) != 1)
        return interp_fail(c, MHA_ERR_SHAPE, "%s must hold one value, has shape %s", what,
                           interp_shape(t, sb));
    *v = tensor_get_i64(t, 0);
    return MHA_OK;
}

mha_status interp_axis(const interp_ctx *c, int64_t axis, int rank, const char *what, int *out) {
    if (axis < -(int64_t)rank || axis >= rank)
        return interp_fail(c, MHA_ERR_SHAPE, "%s %lld is out of range for rank %d", what,
                           (long long)axis, rank);
    *out = (int)(axis < 0 ? axis + rank : axis);
    return MHA_OK;
}

int interp_is_float(mha_dtype dt) {
    return dt == MHA_DTYPE_FLOAT32 || dt == MHA_DTYPE_FLOAT64 || dt == MHA_DTYPE_FLOAT16 ||
           dt == MHA_DTYPE_BFLOAT16;
}

int interp_is_int(mha_dtype dt) {
    return dt == MHA_DTYPE_INT64 || dt == MHA_DTYPE_INT32 || dt == MHA_DTYPE_INT8 ||
           dt == MHA_DTYPE_UINT8;
}

void interp_set_i64(tensor *t, int64_t i, int64_t v) {
    /* Narrowing goes through the unsigned type: defined modulo wrap-around,
     * what C casts of out-of-range integers do on every compiler we use. */
    switch (t->dtype) {
    case MHA_DTYPE_INT64:
        ((int64_t *)t->data)[i] = v;
        break;
    case MHA_DTYPE_INT32:
        ((int32_t *)t->data)[i] = (int32_t)(uint32_t)(uint64_t)v;
        break;
    case MHA_DTYPE_INT8:
        ((int8_t *)t->data)[i] = (int8_t)(uint8_t)(uint64_t)v;
        break;
    case MHA_DTYPE_UINT8:
        ((uint8_t *)t->data)[i] = (uint8_t)(uint64_t)v;
        break;
    case MHA_DTYPE_BOOL:
        ((uint8_t *)t->data)[i] = v != 0;
        break;
    default:
        tensor_set_f64(t, i, (double)v);
        break;
    }
}

double interp_lowest(mha_dtype dt) {
    switch (dt) {
    case MHA_DTYPE_FLOAT16:
        return -65504.0;
    case MHA_DTYPE_BFLOAT16:
        return -(double)mha_bf16_to_float(0x7f7f);
    case MHA_DTYPE_FLOAT64:
        return -DBL_MAX;
    default:
        return -(double)FLT_MAX;
    }
}

mha_status interp_bcast_init(const interp_ctx *c, interp_bcast *b, int n_ops,
                             const tensor *const *ops) {
    memset(b, 0, sizeof *b);
    b->n_ops = n_ops;
    int rank = 0;
    for (int k = 0; k < n_ops; k++)
        if (ops[k]->rank > rank) rank = ops[k]->rank;
    b->rank = rank;
    /* Right-aligned: axis a of the output is axis a - (rank - r) of an
     * operand of rank r; dims must agree or be 1. */
    for (int a = 0; a < rank; a++) {
        int64_t d = 1;
        for (int k = 0; k < n_ops; k++) {
            int ax = a - (rank - ops[k]->rank);
            if (ax < 0) continue;
            int64_t dk = ops[k]->dims[ax];
            if (dk == 1) continue;
            if (d != 1 && dk != d) {
                char s0[INTERP_SHAPE_BUF], s1[INTERP_SHAPE_BUF];
                return interp_fail(c, MHA_ERR_SHAPE, "shapes %s and %s do not broadcast",
                                   interp_shape(ops[0], s0), interp_shape(ops[k], s1));
            }
            d = dk;
        }
        b->dims[a] = d;
    }
    /* The product of the nonzero extents must fit (it bounds every stride
     * below, also when an empty axis makes the element count 0). */
    int64_t span = 1;
    int empty = 0;
    for (int a = 0; a < rank; a++) {
        if (b->dims[a] == 0) empty = 1;
        if (!mha_mul_i64(span, b->dims[a] ? b->dims[a] : 1, &span)) {
            char sb[INTERP_SHAPE_BUF];
            return interp_fail(c, MHA_ERR_LIMIT, "broadcast shape %s is too large",
                               tensor_shape_str(rank, b->dims, sb, sizeof sb));
        }
    }
    /* every operand extent is 1 or the output's: strides stay <= span */
    for (int k = 0; k < n_ops; k++) {
        int64_t stride = 1;
        for (int a = rank - 1; a >= 0; a--) {
            int ax = a - (rank - ops[k]->rank);
            if (ax < 0 || ops[k]->dims[ax] == 1) {
                b->strides[k][a] = 0;
            } else {
                b->strides[k][a] = stride;
            }
            if (ax >= 0) stride *= ops[k]->dims[ax];
        }
    }
    b->numel = empty ? 0 : span;
    return MHA_OK;
}

void interp_bcast_offsets(const interp_bcast *b, int64_t i, int64_t *off) {
    for (int k = 0; k < b->n_ops; k++)
        off[k] = 0;
    for (int a = b->rank - 1; a >= 0; a--) {
        int64_t d = b->dims[a];
        int64_t idx = d ? i % d : 0;
        i = d ? i / d : 0;
        for (int k = 0; k < b->n_ops; k++)
            off[k] += idx * b->strides[k][a];
    }
}

void interp_bcast_rows(const interp_bcast *b, interp_bcast *outer, int64_t *row_len,
                       int64_t row_stride[3]) {
    *outer = *b;
    *row_len = 1;
    for (int k = 0; k < 3; k++)
        row_stride[k] = 0;
    if (b->rank < 1) return;
    const int last = b->rank - 1;
    *row_len = b->dims[last];
    for (int k = 0; k < b->n_ops; k++)
        row_stride[k] = b->strides[k][last];
    outer->rank = last;
}

void interp_bcast_walk_start(const interp_bcast *b, interp_bcast_walk *w) {
    (void)b; /* every axis starts at 0 */
    memset(w, 0, sizeof *w);
}

void interp_bcast_walk_step(const interp_bcast *b, interp_bcast_walk *w) {
    for (int a = b->rank - 1; a >= 0; a--) {
        for (int k = 0; k < b->n_ops; k++)
            w->off[k] += b->strides[k][a];
        if (++w->idx[a] < b->dims[a]) return;
        /* the axis wraps: back to its start, carry into the one before */
        for (int k = 0; k < b->n_ops; k++)
            w->off[k] -= b->dims[a] * b->strides[k][a];
        w->idx[a] = 0;
    }
}

mha_status interp_element_at(const interp_ctx *c, const tensor *x, const tensor *idx, int axis,
                             int64_t i, int64_t *off) {
    const int64_t extent = x->dims[axis];
    int64_t k = tensor_get_i64(idx, i);
    if (k < -extent || k >= extent)
        return interp_fail(c, MHA_ERR_SHAPE,
                           "index %lld is out of range for axis %d of extent %lld", (long long)k,
                           axis, (long long)extent);
    if (k < 0) k += extent;
    int64_t rem = i, o = 0, stride = 1;
    for (int a = x->rank - 1; a >= 0; a--) {
        const int64_t coord = rem % idx->dims[a];
        rem /= idx->dims[a];
        o += (a == axis ? k : coord) * stride;
        stride *= x->dims[a];
    }
    *off = o;
    return MHA_OK;
}
