/* interp_conv.c -- Conv for the reference interpreter: 1-D (NCW, run as
 * 2-D with H = 1: an audio encoder's stem) and 2-D, float32, NCHW,
 * pads explicit or by auto_pad (SAME_UPPER, SAME_LOWER, VALID), strides,
 * dilations and groups; what a
 * ViT's patch embedding (kernel = stride = patch size) and the usual
 * convolution stems are written as. Sums in double. */
#include <string.h>

#include "interp_internal.h"

/* Without padding every tap reads the input, so a Conv is a GEMM per image
 * and group: Y [Mg, OH * OW] = bias + W [Mg, K] . cols [K, OH * OW], K =
 * Cg * kH * kW in the order (ci, i, j) the loop in interp_op_conv sums
 * (the same bits: interp_gemm_f32). cols: each output position's taps. */
static mha_status conv_as_gemm(interp_ctx *c, const float *x, const float *w, const float *b,
                               float *y, int64_t N, int64_t C, int64_t H, int64_t Wd, int64_t M,
                               int64_t Cg, int64_t kH, int64_t kW, int64_t group, int64_t OH,
                               int64_t OW, const int64_t *strides, const int64_t *dil) {
    const int64_t K = Cg * kH * kW, P = OH * OW, Mg = M / group;
    if (P == 0 || M == 0 || c->shape_only) return MHA_OK; /* y stays zero */
    float *cols = mha_malloc(c->a, (size_t)(K > 0 ? K : 1) * (size_t)P * sizeof *cols);
    if (!cols)
        return interp_fail(c, MHA_ERR_NO_MEMORY, "out of memory for %lld x %lld taps", (long long)K,
                           (long long)P);
    mha_status st = MHA_OK;
    for (int64_t n = 0; n < N && st == MHA_OK; n++)
        for (int64_t g = 0; g < group && st == MHA_OK; g++) {
            for (int64_t ci = 0; ci < Cg; ci++)
                for (int64_t i = 0; i < kH; i++)
                    for (int64_t j = 0; j < kW; j++) {
                        float *row = cols + ((ci * kH + i) * kW + j) * P;
                        const float *plane = x + (n * C + g * Cg + ci) * H * Wd;
                        for (int64_t oh = 0; oh < OH; oh++)
                            for (int64_t ow = 0; ow < OW; ow++)
                                row[oh * OW + ow] = plane[(oh * strides[0] + i * dil[0]) * Wd +
                                                          ow * strides[1] + j * dil[1]];
                    }
            const interp_gemm_args ga = {.M = Mg,
                                         .N = P,
                                         .K = K,
                                         .A = w + g * Mg * K,
                                         .a_row = K,
                                         .a_col = 1,
                                         .B = cols,
                                         .ldb = P,
                                         .init = b ? b + g * Mg : NULL,
                                         .init_per_row = 1,
                                         .C = y + (n * M + g * Mg) * P,
                                         .ldc = P};
            st = interp_gemm_f32(c->a, &ga, c->err);
        }
    mha_free(c->a, cols);
    return st;
}

#define CONV_ATTR_MAX ((int64_t)1 << 31)

int interp_conv_auto_pads(const char *mode, int64_t x, int64_t k, int64_t stride, int64_t dil,
                          int64_t *begin, int64_t *end) {
    *begin = *end = 0;
    if (!mode || strcmp(mode, "NOTSET") == 0) return 0;
    if (strcmp(mode, "VALID") == 0) return 1;
    const int upper = strcmp(mode, "SAME_UPPER") == 0;
    if (!upper && strcmp(mode, "SAME_LOWER") != 0) return -1;
    /* out = ceil(x / stride); the pads that make the last field end at
     * (out - 1) stride + dil (k - 1) + 1 */
    const int64_t out = (x + stride - 1) / stride;
    const int64_t need = (out - 1) * stride + dil * (k - 1) + 1 - x;
    const int64_t total = need > 0 ? need : 0;
    *begin = upper ? total / 2 : total - total / 2;
    *end = total - *begin;
    return 1;
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
    if (st == MHA_OK) st = interp_attr_ints_n(c, "strides", nsp, 1, strides + 2 - nsp);
    if (st == MHA_OK) st = interp_attr_ints_n(c, "dilations", nsp, 1, dil + 2 - nsp);
    if (st == MHA_OK) st = interp_attr_ints_n(c, "pads", 2 * nsp, 0, one_d ? p1 : pads);
    if (st != MHA_OK) return st;
    if (one_d) {
        pads[1] = p1[0];
        pads[3] = p1[1];
    }
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
    /* auto_pad: pads from the input's size (explicit pads ignored) */
    const ir_attr *ap = ir_node_attr(c->n, "auto_pad");
    if (ap && ap->type == IR_ATTR_STRING && ap->s && strcmp(ap->s, "NOTSET") != 0) {
        const int64_t xs[2] = {H, Wd}, ks[2] = {kH, kW};
        for (int i = one_d ? 1 : 0; i < 2; i++)
            if (strides[i] < 1 || dil[i] < 1 || strides[i] > CONV_ATTR_MAX ||
                dil[i] > CONV_ATTR_MAX ||
                interp_conv_auto_pads(ap->s, xs[i], ks[i], strides[i], dil[i], &pads[i],
                                      &pads[i + 2]) < 0)
                return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED, "auto_pad %s is not supported",
                                   ap->s);
    }
    if (group < 1 || C != Cg * group || M % group != 0 || (B && tensor_numel(B) != M))
        return interp_fail(c, MHA_ERR_SHAPE, "X %s, W %s, group %lld do not fit",
                           interp_shape(X, s0), interp_shape(W, s1), (long long)group);
    for (int i = 0; i < 2; i++)
        if (strides[i] < 1 || dil[i] < 1 || pads[i] < 0 || pads[i + 2] < 0)
            return interp_fail(c, MHA_ERR_MODEL_FORMAT,
                               "strides, dilations and pads must be "
                               "positive");
    /* past 2^31 no convolution is meant, and the spans below would
     * overflow (a dilation of 2^62 times the kernel) */
    for (int i = 0; i < 2; i++)
        if (strides[i] > CONV_ATTR_MAX || dil[i] > CONV_ATTR_MAX || pads[i] > CONV_ATTR_MAX ||
            pads[i + 2] > CONV_ATTR_MAX)
            return interp_fail(c, MHA_ERR_MODEL_FORMAT,
                               "strides, dilations and pads must be at most 2^31 (%lld, %lld, "
                               "%lld and %lld on axis %d)",
                               (long long)strides[i], (long long)dil[i], (long long)pads[i],
                               (long long)pads[i + 2], i - (one_d ? 1 : 0));
    /* kernel_shape, when given, is W's: ONNX Runtime refuses another (a
     * fault of the file, as the attributes above: not of the input's size) */
    const ir_attr *ks = ir_node_attr(c->n, "kernel_shape");
    if (ks &&
        (ks->n != nsp || !ks->ints || ks->ints[nsp - 1] != kW || (!one_d && ks->ints[0] != kH)))
        return interp_fail(c, MHA_ERR_MODEL_FORMAT,
                           "kernel_shape (%zu values, the last %lld) is not the kernel of W %s",
                           ks->n, ks->n && ks->ints ? (long long)ks->ints[ks->n - 1] : 0LL,
                           interp_shape(W, s0));
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
    if (pads[0] == 0 && pads[1] == 0 && pads[2] == 0 && pads[3] == 0)
        return conv_as_gemm(c, x, w, b, y, N, C, H, Wd, M, Cg, kH, kW, group, OH, OW, strides, dil);
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
