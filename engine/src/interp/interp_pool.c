/* interp_pool.c -- AveragePool and MaxPool for the reference interpreter:
 * 1-D (NCW) and 2-D (NCHW), float32, explicit pads (auto_pad NOTSET),
 * strides, dilations, ceil_mode and (AveragePool) count_include_pad; what a
 * Funnel Transformer's pooling of its rows (a mean over pairs of rows, the
 * mask's minimum as -MaxPool(-m)) and the usual pooling stems are written
 * as. MaxPool's Indices output is not produced. */
#include <math.h>
#include <string.h>

#include "interp_internal.h"

/* The largest kernel size, stride and dilation taken: each window's taps
 * (and the pads, smaller than its span) stay bounded for hostile files. */
#define POOL_MAX 256

typedef struct pool_geom {
    int64_t k[2], s[2], d[2], pb[2], pe[2]; /* per spatial axis (H, W) */
    int64_t in[2], out[2];
} pool_geom;

/* The output size of one axis: floor((in + pads - span) / stride) + 1, in
 * ceil mode with stride - 1 added to the numerator (a window overhanging
 * the end: PyTorch's kernel 2 over 1 row gives 1), and a last window that
 * would start past the input and its leading pad dropped (PyTorch's rule,
 * ONNX's since opset 19). */
static int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t d, int64_t pb, int64_t pe,
                        int ceil) {
    const int64_t num = in + pb + pe - (d * (k - 1) + 1) + (ceil ? s - 1 : 0);
    int64_t out = (num >= 0 ? num / s : -((-num + s - 1) / s)) + 1;
    if (ceil && out > 0 && (out - 1) * s >= in + pb) out--;
    return out > 0 ? out : 0;
}

static mha_status pool_setup(interp_ctx *c, int avg, const tensor **X, pool_geom *g, int *ceil,
                             int *incl) {
    char s0[INTERP_SHAPE_BUF];
    int64_t v;
    mha_status st = interp_check_arity(c, 1, 1, 1, avg ? 1 : 2);
    if (st == MHA_OK) st = interp_in_req(c, 0, X);
    if (st != MHA_OK) return st;
    if (!avg && c->n->n_outputs > 1 && c->n->outputs[1] >= 0)
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED, "the Indices output is not supported");
    if ((*X)->dtype != MHA_DTYPE_FLOAT32)
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED, "only float32 is supported (X is %s)",
                           mha_dtype_name((*X)->dtype));
    if ((*X)->rank != 3 && (*X)->rank != 4)
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED,
                           "only 1-D and 2-D pooling are supported (X %s)", interp_shape(*X, s0));
    const ir_attr *ap = ir_node_attr(c->n, "auto_pad");
    if (ap && ap->s && strcmp(ap->s, "NOTSET") != 0)
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED, "auto_pad %s is not supported", ap->s);
    const size_t nsp = (size_t)(*X)->rank - 2, off = 2 - nsp;
    int64_t pads[4] = {0, 0, 0, 0};
    for (int i = 0; i < 2; i++) {
        g->k[i] = g->s[i] = g->d[i] = 1;
        g->pb[i] = g->pe[i] = 0;
    }
    if (!interp_has_attr(c, "kernel_shape"))
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "kernel_shape is missing");
    st = interp_attr_ints_n(c, "kernel_shape", nsp, 1, g->k + off);
    if (st == MHA_OK) st = interp_attr_ints_n(c, "strides", nsp, 1, g->s + off);
    if (st == MHA_OK) st = interp_attr_ints_n(c, "dilations", nsp, 1, g->d + off);
    if (st == MHA_OK) st = interp_attr_ints_n(c, "pads", 2 * nsp, 0, pads);
    if (st == MHA_OK) st = interp_attr_int(c, "ceil_mode", 0, &v);
    if (st != MHA_OK) return st;
    *ceil = v != 0;
    st = interp_attr_int(c, "count_include_pad", 0, &v);
    if (st != MHA_OK) return st;
    *incl = v != 0;
    for (size_t i = 0; i < nsp; i++) {
        g->pb[off + i] = pads[i];
        g->pe[off + i] = pads[nsp + i];
    }
    g->in[0] = nsp == 2 ? (*X)->dims[2] : 1;
    g->in[1] = (*X)->dims[(*X)->rank - 1];
    for (int i = 0; i < 2; i++) {
        if (g->k[i] > POOL_MAX || g->s[i] > POOL_MAX || g->d[i] > POOL_MAX)
            return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED,
                               "kernel_shape, strides and dilations above %d are not supported",
                               POOL_MAX);
        if (g->k[i] < 1 || g->s[i] < 1 || g->d[i] < 1 || g->pb[i] < 0 || g->pe[i] < 0 ||
            g->pb[i] >= g->d[i] * (g->k[i] - 1) + 1 || g->pe[i] >= g->d[i] * (g->k[i] - 1) + 1)
            return interp_fail(c, MHA_ERR_MODEL_FORMAT,
                               "kernel_shape, strides and dilations must be positive, pads "
                               "non-negative and smaller than the kernel");
        g->out[i] = pool_out(g->in[i], g->k[i], g->s[i], g->d[i], g->pb[i], g->pe[i], *ceil);
    }
    return MHA_OK;
}

static mha_status pool_run(interp_ctx *c, int avg) {
    const tensor *X;
    pool_geom g;
    int ceil, incl;
    mha_status st = pool_setup(c, avg, &X, &g, &ceil, &incl);
    if (st != MHA_OK) return st;
    const int one_d = X->rank == 3;
    const int64_t N = X->dims[0], C = X->dims[1], IH = g.in[0], IW = g.in[1];
    const int64_t OH = g.out[0], OW = g.out[1];
    int64_t dims[4] = {N, C, OH, OW}, dims1[3] = {N, C, OW};
    tensor *Y;
    st = one_d ? interp_out_new(c, 0, MHA_DTYPE_FLOAT32, 3, dims1, &Y)
               : interp_out_new(c, 0, MHA_DTYPE_FLOAT32, 4, dims, &Y);
    if (st != MHA_OK) return st;
    const float *x = X->data;
    float *y = Y->data;
    for (int64_t nc = 0; nc < N * C; nc++) {
        const float *plane = x + nc * IH * IW;
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                const int64_t h0 = oh * g.s[0] - g.pb[0], w0 = ow * g.s[1] - g.pb[1];
                double sum = 0.0;
                float best = -INFINITY;
                int64_t taken = 0, padded = 0;
                for (int64_t i = 0; i < g.k[0]; i++) {
                    const int64_t ih = h0 + i * g.d[0];
                    /* taps beyond the input and its trailing pad (a ceil
                     * mode overhang) count nowhere */
                    if (ih >= IH + g.pe[0]) break;
                    for (int64_t j = 0; j < g.k[1]; j++) {
                        const int64_t iw = w0 + j * g.d[1];
                        if (iw >= IW + g.pe[1]) break;
                        if (ih < 0 || iw < 0 || ih >= IH || iw >= IW) {
                            padded++;
                            continue;
                        }
                        const float v = plane[ih * IW + iw];
                        sum += (double)v;
                        if (isnan(v) || v > best) best = v; /* a NaN stays */
                        taken++;
                    }
                }
                float r;
                if (avg) {
                    const int64_t div = taken + (incl ? padded : 0);
                    r = div > 0 ? (float)(sum / (double)div) : 0.0f;
                } else {
                    r = taken > 0 ? best : -INFINITY;
                }
                y[(nc * OH + oh) * OW + ow] = r;
            }
    }
    return MHA_OK;
}

mha_status interp_op_average_pool(interp_ctx *c) {
    return pool_run(c, 1);
}

mha_status interp_op_max_pool(interp_ctx *c) {
    return pool_run(c, 0);
}
