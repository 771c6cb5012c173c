/* interp_conv.c -- Conv for the reference interpreter: 1-D (NCW, run as
 * 2-D with H = 1: an audio encoder's stem) and 2-D, float32, NCHW,
 * explicit pads (auto_pad NOTSET), strides, dilations and groups; what a
 * ViT's patch embedding (kernel = stride = patch size) and the usual
 * convolution stems are written as. Sums in double. */
#include <string.h>

#include "interp_internal.h"

/* Reads an INTS attribute of exactly n values, or fills dflt. */
static mha_status conv_ints(interp_ctx *c, const char *name, size_t n, int64_t dflt, int64_t *out) {
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

mha_status interp_op_conv(interp_ctx *c) {
    const tensor *X, *W, *B;
    char s0[INTERP_SHAPE_BUF], s1[INTERP_SHAPE_BUF];
    int64_t group, strides[2] = {1, 1}, dil[2] = {1, 1}, pads[4] = {0, 0, 0, 0};
    mha_status st = interp_check_arity(c, 2, 3, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &X);
    if (st == MHA_OK) st = interp_in_req(c, 1, &W);
    if (st != MHA_OK) return st;
    /* 1-D reads one stride / dilation and (begin, end) pads into the W
     * slots; the H slots keep stride 1, no pads. */
    const int one_d = X->rank == 3 && W->rank == 3;
    const size_t nsp = one_d ? 1 : 2;
    int64_t p1[2] = {0, 0};
    if (st == MHA_OK) st = interp_attr_int(c, "group", 1, &group);
    if (st == MHA_OK) st = conv_ints(c, "strides", nsp, 1, strides + 2 - nsp);
    if (st == MHA_OK) st = conv_ints(c, "dilations", nsp, 1, dil + 2 - nsp);
    if (st == MHA_OK) st = conv_ints(c, "pads", 2 * nsp, 0, one_d ? p1 : pads);
    if (st != MHA_OK) return st;
    if (one_d) {
        pads[1] = p1[0];
        pads[3] = p1[1];
    }
    const ir_attr *ap = ir_node_attr(c->n, "auto_pad");
    if (ap && ap->s && strcmp(ap->s, "NOTSET") != 0)
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED, "auto_pad %s is not supported", ap->s);
    B = interp_in(c, 2);
    if (X->dtype != MHA_DTYPE_FLOAT32 || W->dtype != X->dtype || (B && B->dtype != X->dtype))
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED, "only float32 is supported (X is %s)",
                           mha_dtype_name(X->dtype));
    if (!one_d && (X->rank != 4 || W->rank != 4))
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED,
                           "only 1-D and 2-D convolution are supported (X %s, W %s)",
                           interp_shape(X, s0), interp_shape(W, s1));
    const int64_t N = X->dims[0], C = X->dims[1], H = one_d ? 1 : X->dims[2];
    const int64_t Wd = X->dims[X->rank - 1];
    const int64_t M = W->dims[0], Cg = W->dims[1], kH = one_d ? 1 : W->dims[2];
    const int64_t kW = W->dims[W->rank - 1];
    if (group < 1 || C != Cg * group || M % group != 0 || (B && tensor_numel(B) != M))
        return interp_fail(c, MHA_ERR_SHAPE, "X %s, W %s, group %lld do not fit",
                           interp_shape(X, s0), interp_shape(W, s1), (long long)group);
    for (int i = 0; i < 2; i++)
        if (strides[i] < 1 || dil[i] < 1 || pads[i] < 0 || pads[i + 2] < 0)
            return interp_fail(c, MHA_ERR_MODEL_FORMAT,
                               "strides, dilations and pads must be "
                               "positive");
    /* OH = (H + pad_top + pad_bottom - dil (kH - 1) - 1) / stride + 1 */
    const int64_t span_h = dil[0] * (kH - 1) + 1, span_w = dil[1] * (kW - 1) + 1;
    const int64_t OH =
        H + pads[0] + pads[2] >= span_h ? (H + pads[0] + pads[2] - span_h) / strides[0] + 1 : 0;
    const int64_t OW =
        Wd + pads[1] + pads[3] >= span_w ? (Wd + pads[1] + pads[3] - span_w) / strides[1] + 1 : 0;
    int64_t dims[4] = {N, M, OH, OW}, dims1[3] = {N, M, OW};
    tensor *Y;
    st = one_d ? interp_out_new(c, 0, MHA_DTYPE_FLOAT32, 3, dims1, &Y)
               : interp_out_new(c, 0, MHA_DTYPE_FLOAT32, 4, dims, &Y);
    if (st != MHA_OK) return st;
    const float *x = X->data, *w = W->data, *b = B ? B->data : NULL;
    float *y = Y->data;
    const int64_t Mg = M / group;
    for (int64_t n = 0; n < N; n++)
        for (int64_t m = 0; m < M; m++) {
            const int64_t g = m / Mg;
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double acc = b ? (double)b[m] : 0.0;
                    for (int64_t ci = 0; ci < Cg; ci++)
                        for (int64_t i = 0; i < kH; i++) {
                            const int64_t ih = oh * strides[0] - pads[0] + i * dil[0];
                            if (ih < 0 || ih >= H) continue;
                            for (int64_t j = 0; j < kW; j++) {
                                const int64_t iw = ow * strides[1] - pads[1] + j * dil[1];
                                if (iw < 0 || iw >= Wd) continue;
                                acc += (double)x[((n * C + g * Cg + ci) * H + ih) * Wd + iw] *
                                       (double)w[((m * Cg + ci) * kH + i) * kW + j];
                            }
                        }
                    y[((n * M + m) * OH + oh) * OW + ow] = (float)acc;
                }
        }
    return MHA_OK;
}
