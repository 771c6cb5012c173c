/* interp_resize.c -- Resize for the reference interpreter: what a position
 * table interpolated to the image's patch grid is written with (DINOv2's
 * and ViT's interpolate_pos_encoding: F.interpolate, bicubic or bilinear).
 *
 * The modes nearest, linear and cubic are separable, so the output is made
 * one axis at a time: along axis a, output index x reads the input at the
 * coordinate x_in(x) of the coordinate_transformation_mode, from taps
 * around it (1, 2 or 4) clamped to the edge -- or, exclude_outside, the
 * outside taps dropped and the weights renormalised -- as the ONNX
 * reference does:
 *
 *   for each axis a with a scale other than 1 (or another length):
 *       for each output index x:  t = x_in(x);  x0 = floor(t);  r = t - x0
 *           nearest: one tap by nearest_mode;  linear: x0, x0 + 1 with
 *           1 - r, r;  cubic: x0 - 1 .. x0 + 2 with Keys' weights (a)
 *       y[.., x, ..] = sum of weight * x[.., tap, ..]
 */
#include <math.h>
#include <string.h>

#include "interp_internal.h"

typedef enum resize_mode { RESIZE_NEAREST = 0, RESIZE_LINEAR, RESIZE_CUBIC } resize_mode;

typedef struct resize_opts {
    resize_mode mode;
    const char *coord;   /* coordinate_transformation_mode */
    const char *nearest; /* nearest_mode */
    float cubic_a;
    int exclude_outside;
} resize_opts;

static const char *resize_str_attr(const interp_ctx *c, const char *name, const char *dflt) {
    const ir_attr *at = ir_node_attr(c->n, name);
    return at && at->type == IR_ATTR_STRING && at->s ? at->s : dflt;
}

/* The input coordinate of output index x along an axis of length in
 * resized to out with scale s; *ok = 0 for a mode this does not serve. */
static double resize_coord(const char *coord, double x, double s, int64_t in, int64_t out,
                           int *ok) {
    *ok = 1;
    if (strcmp(coord, "half_pixel") == 0) return (x + 0.5) / s - 0.5;
    if (strcmp(coord, "pytorch_half_pixel") == 0) return out > 1 ? (x + 0.5) / s - 0.5 : 0.0;
    if (strcmp(coord, "align_corners") == 0)
        return out == 1 ? 0.0 : x * (double)(in - 1) / (double)(out - 1);
    if (strcmp(coord, "asymmetric") == 0) return x / s;
    if (strcmp(coord, "half_pixel_symmetric") == 0) {
        const double adjust = (double)out / (s * (double)in);
        const double offset = (double)in / 2.0 * (1.0 - adjust);
        return offset + (x + 0.5) / s - 0.5;
    }
    *ok = 0;
    return 0.0;
}

static int64_t resize_nearest_index(const char *nearest, double t, int *ok) {
    *ok = 1;
    const double f = floor(t);
    if (strcmp(nearest, "round_prefer_floor") == 0) return (int64_t)(t - f == 0.5 ? f : round(t));
    if (strcmp(nearest, "round_prefer_ceil") == 0)
        return (int64_t)(t - f == 0.5 ? f + 1 : round(t));
    if (strcmp(nearest, "floor") == 0) return (int64_t)f;
    if (strcmp(nearest, "ceil") == 0) return (int64_t)ceil(t);
    *ok = 0;
    return 0;
}

/* The taps (input indices, clamped) and weights of output index x. */
static int resize_taps(const interp_ctx *c, const resize_opts *o, double t, int64_t in,
                       int64_t *idx, double *w, mha_status *st) {
    int n = 0, ok;
    *st = MHA_OK;
    if (o->mode == RESIZE_NEAREST) {
        idx[0] = resize_nearest_index(o->nearest, t, &ok);
        if (!ok) *st = interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED, "nearest_mode %s", o->nearest);
        w[0] = 1.0;
        n = 1;
    } else if (o->mode == RESIZE_LINEAR) {
        const double x0 = floor(t), r = t - x0;
        idx[0] = (int64_t)x0, idx[1] = (int64_t)x0 + 1;
        w[0] = 1.0 - r, w[1] = r;
        n = 2;
    } else {
        const double x0 = floor(t), r = t - x0, A = o->cubic_a;
        const double d[4] = {r + 1.0, r, 1.0 - r, 2.0 - r};
        for (int k = 0; k < 4; k++) {
            idx[k] = (int64_t)x0 - 1 + k;
            const double u = d[k];
            w[k] = u <= 1.0 ? ((A + 2.0) * u - (A + 3.0)) * u * u + 1.0
                            : ((A * u - 5.0 * A) * u + 8.0 * A) * u - 4.0 * A;
        }
        n = 4;
    }
    double kept = 0.0;
    for (int k = 0; k < n; k++) {
        const int outside = idx[k] < 0 || idx[k] >= in;
        if (outside && o->exclude_outside && o->mode != RESIZE_NEAREST) w[k] = 0.0;
        kept += w[k];
        idx[k] = idx[k] < 0 ? 0 : idx[k] >= in ? in - 1 : idx[k];
    }
    if (o->exclude_outside && o->mode != RESIZE_NEAREST && kept != 0.0)
        for (int k = 0; k < n; k++)
            w[k] /= kept;
    return n;
}

/* y = x resized along axis ax to out with scale s. */
static mha_status resize_axis(const interp_ctx *c, const resize_opts *o, const tensor *x, int ax,
                              int64_t out, double s, tensor **y) {
    int64_t dims[MHA_MAX_RANK];
    memcpy(dims, x->dims, sizeof dims);
    dims[ax] = out;
    mha_status st = interp_tensor_new(c, x->dtype, x->rank, dims, y);
    if (st != MHA_OK) return st;
    int64_t outer, inner;
    interp_around_axis(x, ax, &outer, &inner);
    const int64_t in = x->dims[ax];
    const size_t es = mha_dtype_size(x->dtype);
    for (int64_t j = 0; j < out && st == MHA_OK; j++) {
        int ok;
        const double t = resize_coord(o->coord, (double)j, s, in, out, &ok);
        if (!ok) {
            st = interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED, "coordinate_transformation_mode %s",
                             o->coord);
            break;
        }
        int64_t idx[4];
        double w[4];
        const int n = resize_taps(c, o, t, in, idx, w, &st);
        if (st != MHA_OK) break;
        for (int64_t a = 0; a < outer; a++)
            for (int64_t b = 0; b < inner; b++) {
                const int64_t dst = (a * out + j) * inner + b;
                if (o->mode == RESIZE_NEAREST) { /* any type: the element itself */
                    memcpy((char *)(*y)->data + (size_t)dst * es,
                           (const char *)x->data + (size_t)((a * in + idx[0]) * inner + b) * es,
                           es);
                    continue;
                }
                double v = 0.0;
                for (int k = 0; k < n; k++)
                    v += w[k] * tensor_get_f64(x, (a * in + idx[k]) * inner + b);
                tensor_set_f64(*y, dst, v);
            }
    }
    if (st != MHA_OK) {
        tensor_free(*y);
        *y = NULL;
    }
    return st;
}

/* Reads the options; refuses what the engine does not serve. */
static mha_status resize_read_opts(const interp_ctx *c, const tensor *x, resize_opts *o) {
    const char *mode = resize_str_attr(c, "mode", "nearest");
    o->mode = strcmp(mode, "linear") == 0  ? RESIZE_LINEAR
              : strcmp(mode, "cubic") == 0 ? RESIZE_CUBIC
                                           : RESIZE_NEAREST;
    if (o->mode == RESIZE_NEAREST && strcmp(mode, "nearest") != 0)
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED, "mode %s is not supported", mode);
    /* opset 10: asymmetric coordinates, nearest rounding down */
    o->coord = resize_str_attr(c, "coordinate_transformation_mode",
                               c->opset < 11 ? "asymmetric" : "half_pixel");
    o->nearest = resize_str_attr(c, "nearest_mode", c->opset < 11 ? "floor" : "round_prefer_floor");
    int64_t excl = 0, anti = 0;
    mha_status st = interp_attr_float(c, "cubic_coeff_a", -0.75f, &o->cubic_a);
    if (st == MHA_OK) st = interp_attr_int(c, "exclude_outside", 0, &excl);
    if (st == MHA_OK) st = interp_attr_int(c, "antialias", 0, &anti);
    if (st != MHA_OK) return st;
    o->exclude_outside = excl != 0;
    const char *policy = resize_str_attr(c, "keep_aspect_ratio_policy", "stretch");
    if (anti != 0 || strcmp(policy, "stretch") != 0)
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED,
                           "antialias and keep_aspect_ratio_policy %s are not supported", policy);
    if (o->mode != RESIZE_NEAREST && !interp_is_float(x->dtype))
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED, "%s mode on %s data", mode,
                           mha_dtype_name(x->dtype));
    return MHA_OK;
}

/* The output length and scale of every axis, from scales or sizes (over
 * `axes` from opset 18, else every axis). */
static mha_status resize_read_sizes(const interp_ctx *c, const tensor *x, int64_t *out,
                                    double *scale) {
    const tensor *scales = interp_in(c, c->opset < 11 ? 1 : 2);
    const tensor *sizes = c->opset < 11 ? NULL : interp_in(c, 3);
    if (scales && tensor_numel(scales) == 0) scales = NULL; /* an empty placeholder */
    if ((scales != NULL) == (sizes != NULL))
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "needs exactly one of scales and sizes");
    const int64_t *axes_attr;
    size_t n_axes;
    mha_status st = interp_attr_ints(c, "axes", &axes_attr, &n_axes);
    if (st != MHA_OK) return st;
    int axes[MHA_MAX_RANK];
    if (!axes_attr) n_axes = (size_t)x->rank;
    if (n_axes > (size_t)x->rank) return interp_fail(c, MHA_ERR_SHAPE, "too many axes");
    for (size_t k = 0; k < n_axes; k++) {
        if (!axes_attr)
            axes[k] = (int)k;
        else if ((st = interp_axis(c, axes_attr[k], x->rank, "axes", &axes[k])) != MHA_OK)
            return st;
    }
    for (int i = 0; i < x->rank; i++) {
        out[i] = x->dims[i];
        scale[i] = 1.0;
    }
    const tensor *given = scales ? scales : sizes;
    if (tensor_numel(given) != (int64_t)n_axes)
        return interp_fail(c, MHA_ERR_SHAPE, "%s has %lld values for %zu axes",
                           scales ? "scales" : "sizes", (long long)tensor_numel(given), n_axes);
    if (scales && !interp_is_float(scales->dtype))
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "scales must be float");
    if (sizes && !interp_is_int(sizes->dtype))
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "sizes must be integers");
    for (size_t k = 0; k < n_axes; k++) {
        const int a = axes[k];
        const int64_t in = x->dims[a];
        if (scales) {
            const double s = tensor_get_f64(scales, (int64_t)k);
            const double len = floor((double)in * s);
            if (!(s > 0.0) || !(len < (double)((int64_t)1 << 40)))
                return interp_fail(c, MHA_ERR_SHAPE, "scale %g of axis %d is not usable", s, a);
            out[a] = (int64_t)len;
            scale[a] = s;
        } else {
            const int64_t len = tensor_get_i64(sizes, (int64_t)k);
            if (len < 0 || len > ((int64_t)1 << 40))
                return interp_fail(c, MHA_ERR_SHAPE, "size %lld of axis %d is not usable",
                                   (long long)len, a);
            out[a] = len;
            scale[a] = in > 0 ? (double)len / (double)in : 1.0;
        }
        if (out[a] > 0 && in == 0)
            return interp_fail(c, MHA_ERR_SHAPE, "axis %d is empty, resized to %lld", a,
                               (long long)out[a]);
    }
    return MHA_OK;
}

mha_status interp_op_resize(interp_ctx *c) {
    const tensor *x;
    mha_status st = interp_check_arity(c, 1, 4, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    resize_opts o;
    if (st == MHA_OK) st = resize_read_opts(c, x, &o);
    int64_t out[MHA_MAX_RANK];
    double scale[MHA_MAX_RANK];
    if (st == MHA_OK) st = resize_read_sizes(c, x, out, scale);
    if (st != MHA_OK) return st;
    /* every output exists before the work: its size checked up front */
    tensor *y = NULL, *cur = NULL;
    st = interp_out_new(c, 0, x->dtype, x->rank, out, &y);
    for (int a = 0; a < x->rank && st == MHA_OK; a++) {
        if (out[a] == x->dims[a] && scale[a] == 1.0) continue;
        tensor *next = NULL;
        st = resize_axis(c, &o, cur ? cur : x, a, out[a], scale[a], &next);
        tensor_free(cur);
        cur = next;
    }
    if (st == MHA_OK)
        memcpy(y->data, (cur ? cur : x)->data, (size_t)tensor_numel(y) * mha_dtype_size(y->dtype));
    tensor_free(cur);
    return st;
}
