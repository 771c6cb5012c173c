/* interp_dft.c -- DFT (opset 17; opset 20's axis as an input) for the
 * reference interpreter: FNet's Fourier mixing as an exporter writes
 * torch.fft.fftn(x, dim=(1, 2)).real, a DFT per axis over a trailing
 * [re] or [re, im] axis.
 *
 *   input      [..., n, ..., 1 or 2] (real, or complex as re / im pairs)
 *   dft_length optional scalar: the signal zero-padded or cut to it
 *   axis       the transformed axis (not the last); opset 17: attribute,
 *              default 1; opset 20: optional third input, default -2
 *   inverse    e^{+2 pi i j k / n} / n instead of e^{-2 pi i j k / n}
 *   onesided   a real input's first floor(n / 2) + 1 frequencies only
 *   output     [..., n or n / 2 + 1, ..., 2]
 *
 * Direct O(n^2) sums in double, each angle reduced (j k mod n) before the
 * sin / cos so large products stay exact. */
#include "interp_internal.h"

#include <math.h>

mha_status interp_op_dft(interp_ctx *c) {
    const tensor *x, *tl, *ta;
    int64_t inverse, onesided, axis = c->opset >= 20 ? -2 : 1, len = -1;
    char s0[INTERP_SHAPE_BUF];
    mha_status st = interp_check_arity(c, 1, c->opset >= 20 ? 3 : 2, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_attr_int(c, "inverse", 0, &inverse);
    if (st == MHA_OK) st = interp_attr_int(c, "onesided", 0, &onesided);
    if (st == MHA_OK && c->opset < 20) st = interp_attr_int(c, "axis", 1, &axis);
    if (st == MHA_OK && (tl = interp_in(c, 1)) != NULL)
        st = interp_read_scalar_int(c, tl, "dft_length", &len);
    if (st == MHA_OK && c->opset >= 20 && (ta = interp_in(c, 2)) != NULL)
        st = interp_read_scalar_int(c, ta, "axis", &axis);
    if (st != MHA_OK) return st;
    if (!interp_is_float(x->dtype))
        return interp_fail(c, MHA_ERR_DTYPE, "input of type %s is not supported",
                           mha_dtype_name(x->dtype));
    const int r = x->rank;
    if (r < 2 || (x->dims[r - 1] != 1 && x->dims[r - 1] != 2))
        return interp_fail(c, MHA_ERR_SHAPE,
                           "input %s must end in an axis of 1 (real) or 2 (complex)",
                           interp_shape(x, s0));
    if (axis < -r || axis >= r - 1 || axis == -1)
        return interp_fail(c, MHA_ERR_SHAPE, "axis %lld is not an axis of %s before the last",
                           (long long)axis, interp_shape(x, s0));
    const int ax = (int)(axis < 0 ? axis + r : axis);
    const int cplx = x->dims[r - 1] == 2;
    if (onesided && (cplx || inverse))
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED,
                           "onesided = 1 is for a forward transform of a real input");
    const int64_t n_in = x->dims[ax];
    const int64_t n = len < 0 ? n_in : len;
    if (n < 1)
        return interp_fail(c, MHA_ERR_SHAPE, "dft_length %lld must be positive", (long long)len);
    int64_t dims[MHA_MAX_RANK];
    for (int d = 0; d < r; d++)
        dims[d] = x->dims[d];
    dims[ax] = onesided ? n / 2 + 1 : n;
    dims[r - 1] = 2;
    tensor *y;
    st = interp_out_new(c, 0, x->dtype, r, dims, &y);
    if (st != MHA_OK) return st;
    /* [outer, n_in, inner, 1 or 2] in, [outer, n_out, inner, 2] out */
    int64_t outer = 1, inner = 1;
    for (int d = 0; d < ax; d++)
        outer *= x->dims[d];
    for (int d = ax + 1; d < r - 1; d++)
        inner *= x->dims[d];
    const int64_t n_out = dims[ax], n_sig = n_in < n ? n_in : n, w = cplx ? 2 : 1;
    const double sign = inverse ? 1.0 : -1.0, two_pi = 2.0 * 3.14159265358979323846;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < inner; i++)
            for (int64_t k = 0; k < n_out; k++) {
                double re = 0.0, im = 0.0;
                for (int64_t j = 0; j < n_sig; j++) {
                    const int64_t at = ((o * n_in + j) * inner + i) * w;
                    const double a = tensor_get_f64(x, at),
                                 b = cplx ? tensor_get_f64(x, at + 1) : 0.0;
                    const double t = sign * two_pi * (double)((j * k) % n) / (double)n;
                    const double cs = cos(t), sn = sin(t);
                    re += a * cs - b * sn;
                    im += a * sn + b * cs;
                }
                if (inverse) {
                    re /= (double)n;
                    im /= (double)n;
                }
                const int64_t to = ((o * n_out + k) * inner + i) * 2;
                tensor_set_f64(y, to, re);
                tensor_set_f64(y, to + 1, im);
            }
    return MHA_OK;
}
