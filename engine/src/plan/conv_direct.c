/* conv_direct.c -- a depthwise Conv (one input channel per group: CvT's
 * 3 x 3 projections, ConvBERT's span Conv, a conformer's Conv module) as a
 * direct loop over its taps, not a GEMM: each output channel reads one
 * input plane, so a GEMM would have K = kh kw (9) -- all packing and edge,
 * no reuse. Per output plane [Ho, Wo]:
 *
 *   y = bias
 *   for each tap (u, v):                      u < kh, v < kw
 *     for each row i whose input row hi = i sh - pt + u dh lies in x:
 *       y[i, j] += w[u, v] x[hi, j sw - pl + v dw]   j over the columns inside x
 *
 * Positions outside x read 0 (they add nothing). Every output sums its
 * taps in the same order from its bias, whichever thread takes its plane:
 * the same bits for any thread count. */
#include "plan_internal.h"

/* The first and one past the last j with 0 <= j stride + off < W (j1 <= j0:
 * none), j in [0, n). */
static void dw_span(int64_t off, int64_t stride, int64_t W, int64_t n, int64_t *j0, int64_t *j1) {
    int64_t lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
    int64_t hi = W - 1 - off < 0 ? 0 : (W - 1 - off) / stride + 1;
    *j0 = lo;
    *j1 = hi < n ? hi : n;
}

void plan_dwconv_planes(void *ctx, int64_t p0, int64_t p1) {
    const plan_dwconv *d = ctx;
    const int64_t mult = d->Nc / d->C, taps = d->kh * d->kw;
    for (int64_t p = p0; p < p1; p++) {
        const int64_t b = p / d->Nc, n = p % d->Nc;
        const float *x = d->x + (b * d->C + n / mult) * d->H * d->W, *w = d->w + n * taps;
        float *y = d->y + p * d->Ho * d->Wo;
        const float b0 = d->bias ? d->bias[n] : 0.0f;
        for (int64_t e = 0; e < d->Ho * d->Wo; e++)
            y[e] = b0;
        for (int64_t u = 0; u < d->kh; u++) {
            for (int64_t v = 0; v < d->kw; v++) {
                const float wt = w[u * d->kw + v];
                const int64_t off = v * d->dil[1] - d->pad[1], sw = d->stride[1];
                int64_t j0, j1;
                dw_span(off, sw, d->W, d->Wo, &j0, &j1);
                for (int64_t i = 0; i < d->Ho && j0 < j1; i++) {
                    const int64_t hi = i * d->stride[0] - d->pad[0] + u * d->dil[0];
                    if (hi < 0 || hi >= d->H) continue;
                    const float *xr = x + hi * d->W;
                    float *yr = y + i * d->Wo;
                    if (sw == 1)
                        for (int64_t j = j0; j < j1; j++)
                            yr[j] += wt * xr[j + off];
                    else
                        for (int64_t j = j0; j < j1; j++)
                            yr[j] += wt * xr[j * sw + off];
                }
            }
        }
    }
}
