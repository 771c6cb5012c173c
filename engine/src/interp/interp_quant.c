/* interp_quant.c -- the 8-bit quantization ops the reference interpreter
 * runs, as ONNX Runtime's quantization tools write them:
 *   quantize_dynamic (operator form): DynamicQuantizeLinear of the
 *     activation, MatMulInteger with the int8 / uint8 weight, Cast to
 *     float and Mul by the two scales; its optimizer's
 *     com.microsoft.MatMulIntegerToFloat and DynamicQuantizeMatMul;
 *   quantize_static / QDQ: QuantizeLinear and DequantizeLinear pairs
 *     (opset 10 per tensor, 13+ per axis).
 * The quantized math follows the operators' definitions exactly:
 *     q = saturate(round_half_even(x / scale) + zero_point)
 *     x = (q - zero_point) * scale
 * in float32 (the division too), so the integers match ONNX Runtime's.
 * Blocked quantization (opset 21 block_size) and 4-bit / 16-bit / float8
 * types are refused by name. */
#include <math.h>
#include <string.h>

#include "interp_internal.h"

static int quant_is_8bit(mha_dtype dt) {
    return dt == MHA_DTYPE_UINT8 || dt == MHA_DTYPE_INT8;
}

/* round half to even, then clamp to the 8-bit type's range */
static int64_t quant_saturate(mha_dtype dt, float v) {
    const float lo = dt == MHA_DTYPE_UINT8 ? 0.0f : -128.0f;
    const float hi = dt == MHA_DTYPE_UINT8 ? 255.0f : 127.0f;
    if (isnan(v)) return 0;
    v = v < lo ? lo : v > hi ? hi : v;
    return (int64_t)nearbyintf(v);
}

static float quant_round_half_even(float v) {
    /* nearbyintf follows the rounding mode, which is round-to-nearest-even
     * unless someone changed it; rintf-style ties to even is what the
     * specification asks for */
    return nearbyintf(v);
}

/* The scale / zero point per element of x for axis ax: one value (per
 * tensor) or one per index of axis ax (per axis). *axis_len is 0 per tensor. */
static mha_status quant_params(const interp_ctx *c, const tensor *x, const tensor *scale,
                               const tensor *zp, int *ax, int64_t *inner, int64_t *axis_len) {
    char s0[INTERP_SHAPE_BUF], s1[INTERP_SHAPE_BUF];
    int64_t axis_attr;
    int64_t block = 0;
    mha_status st = interp_attr_int(c, "axis", 1, &axis_attr);
    if (st == MHA_OK) st = interp_attr_int(c, "block_size", 0, &block);
    if (st != MHA_OK) return st;
    if (block != 0)
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED,
                           "blocked quantization (block_size %lld) is not supported",
                           (long long)block);
    if (!interp_is_float(scale->dtype))
        return interp_fail(c, MHA_ERR_DTYPE, "the scale must be a float tensor, not %s",
                           mha_dtype_name(scale->dtype));
    const int64_t ns = tensor_numel(scale);
    if (zp && tensor_numel(zp) != ns)
        return interp_fail(c, MHA_ERR_SHAPE, "the zero point %s must match the scale %s",
                           interp_shape(zp, s0), interp_shape(scale, s1));
    *axis_len = 0;
    *inner = 1;
    *ax = 0;
    if (scale->rank == 0 || (scale->rank == 1 && ns == 1 && (x->rank == 0 || c->opset < 13)))
        return ns == 1 ? MHA_OK
                       : interp_fail(c, MHA_ERR_SHAPE, "the scale %s must hold one value",
                                     interp_shape(scale, s0));
    if (scale->rank != 1 || c->opset < 13)
        return interp_fail(c, MHA_ERR_SHAPE,
                           "the scale %s must be a scalar or (opset 13+) one value per index "
                           "of the axis",
                           interp_shape(scale, s0));
    st = interp_axis(c, axis_attr, x->rank, "axis", ax);
    if (st != MHA_OK) return st;
    if (x->dims[*ax] != ns)
        return interp_fail(c, MHA_ERR_SHAPE, "the scale %s must hold %lld values (axis %d of %s)",
                           interp_shape(scale, s0), (long long)x->dims[*ax], *ax,
                           interp_shape(x, s1));
    int64_t outer;
    interp_around_axis(x, *ax, &outer, inner);
    *axis_len = ns;
    return MHA_OK;
}

static int64_t quant_param_index(int64_t i, int64_t inner, int64_t axis_len) {
    return axis_len == 0 ? 0 : (i / inner) % axis_len;
}

/* QuantizeLinear(x, y_scale, y_zero_point?) -> y of the zero point's type
 * (uint8 without one; opset 21's output_dtype when given). */
mha_status interp_op_quantize_linear(interp_ctx *c) {
    const tensor *x, *scale, *zp;
    int64_t out_dt = 0;
    mha_status st = interp_check_arity(c, 2, 3, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_in_req(c, 1, &scale);
    if (st == MHA_OK) st = interp_attr_int(c, "output_dtype", 0, &out_dt);
    if (st != MHA_OK) return st;
    zp = interp_in(c, 2);
    if (!interp_is_float(x->dtype))
        return interp_fail(c, MHA_ERR_DTYPE, "x must be a float tensor, not %s",
                           mha_dtype_name(x->dtype));
    mha_dtype dt = zp ? zp->dtype : MHA_DTYPE_UINT8;
    if (!zp && out_dt == 3) dt = MHA_DTYPE_INT8;
    if (!zp && out_dt != 0 && out_dt != 2 && out_dt != 3)
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED,
                           "output_dtype %lld is not supported (uint8 or int8)", (long long)out_dt);
    if (!quant_is_8bit(dt))
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED,
                           "the zero point's type %s is not supported (uint8 or int8)",
                           mha_dtype_name(dt));
    int ax;
    int64_t inner, axis_len;
    st = quant_params(c, x, scale, zp, &ax, &inner, &axis_len);
    if (st != MHA_OK) return st;
    tensor *y;
    st = interp_out_new(c, 0, dt, x->rank, x->dims, &y);
    if (st != MHA_OK) return st;
    for (int64_t i = 0, n = tensor_numel(x); i < n; i++) {
        const int64_t p = quant_param_index(i, inner, axis_len);
        const float s = (float)tensor_get_f64(scale, p);
        const float z = zp ? (float)tensor_get_i64(zp, p) : 0.0f;
        const float v = quant_round_half_even((float)tensor_get_f64(x, i) / s) + z;
        interp_set_i64(y, i, quant_saturate(dt, v));
    }
    return MHA_OK;
}

/* DequantizeLinear(x, x_scale, x_zero_point?) -> y of the scale's type. */
mha_status interp_op_dequantize_linear(interp_ctx *c) {
    const tensor *x, *scale, *zp;
    mha_status st = interp_check_arity(c, 2, 3, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st == MHA_OK) st = interp_in_req(c, 1, &scale);
    if (st != MHA_OK) return st;
    zp = interp_in(c, 2);
    if (!quant_is_8bit(x->dtype) && x->dtype != MHA_DTYPE_INT32)
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED,
                           "x of type %s is not supported (uint8, int8 or int32)",
                           mha_dtype_name(x->dtype));
    if (zp && zp->dtype != x->dtype)
        return interp_fail(c, MHA_ERR_DTYPE, "the zero point (%s) must have x's type (%s)",
                           mha_dtype_name(zp->dtype), mha_dtype_name(x->dtype));
    int ax;
    int64_t inner, axis_len;
    st = quant_params(c, x, scale, zp, &ax, &inner, &axis_len);
    if (st != MHA_OK) return st;
    tensor *y;
    st = interp_out_new(c, 0, scale->dtype, x->rank, x->dims, &y);
    if (st != MHA_OK) return st;
    for (int64_t i = 0, n = tensor_numel(x); i < n; i++) {
        const int64_t p = quant_param_index(i, inner, axis_len);
        const int64_t q = tensor_get_i64(x, i) - (zp ? tensor_get_i64(zp, p) : 0);
        tensor_set_f64(y, i, (double)((float)q * (float)tensor_get_f64(scale, p)));
    }
    return MHA_OK;
}

/* The uint8 quantization of x DynamicQuantizeLinear defines: the range
 * widened to hold 0, scale = (max - min) / 255 (1 when the range is
 * empty, as ONNX Runtime does), zero point = saturate(round(-min / scale)). */
static void quant_dynamic_params(const tensor *x, float *scale, int64_t *zp) {
    float lo = 0.0f, hi = 0.0f;
    for (int64_t i = 0, n = tensor_numel(x); i < n; i++) {
        const float v = (float)tensor_get_f64(x, i);
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    *scale = hi == lo ? 1.0f : (hi - lo) / 255.0f;
    *zp = quant_saturate(MHA_DTYPE_UINT8, quant_round_half_even(0.0f - lo / *scale));
}

static void quant_dynamic_apply(const tensor *x, float scale, int64_t zp, tensor *y) {
    for (int64_t i = 0, n = tensor_numel(x); i < n; i++) {
        const float v = quant_round_half_even((float)tensor_get_f64(x, i) / scale) + (float)zp;
        interp_set_i64(y, i, quant_saturate(MHA_DTYPE_UINT8, v));
    }
}

/* DynamicQuantizeLinear(x float32) -> y uint8, y_scale float32 [],
 * y_zero_point uint8 []. */
mha_status interp_op_dynamic_quantize_linear(interp_ctx *c) {
    const tensor *x;
    mha_status st = interp_check_arity(c, 1, 1, 3, 3);
    if (st == MHA_OK) st = interp_in_req(c, 0, &x);
    if (st != MHA_OK) return st;
    if (x->dtype != MHA_DTYPE_FLOAT32)
        return interp_fail(c, MHA_ERR_DTYPE, "x must be float32, not %s", mha_dtype_name(x->dtype));
    float scale;
    int64_t zp;
    quant_dynamic_params(x, &scale, &zp);
    tensor *y, *ys, *yz;
    st = interp_out_new(c, 0, MHA_DTYPE_UINT8, x->rank, x->dims, &y);
    if (st == MHA_OK) st = interp_out_new(c, 1, MHA_DTYPE_FLOAT32, 0, NULL, &ys);
    if (st == MHA_OK) st = interp_out_new(c, 2, MHA_DTYPE_UINT8, 0, NULL, &yz);
    if (st != MHA_OK) return st;
    quant_dynamic_apply(x, scale, zp, y);
    ((float *)ys->data)[0] = scale;
    ((uint8_t *)yz->data)[0] = (uint8_t)zp;
    return MHA_OK;
}

/* ---- integer matrix products ---- */

/* A [..., M, K] x B [..., K, N] with the batch axes broadcast (numpy, as
 * MatMul; a 1-D A or B is promoted and its axis dropped from the result),
 * each element less its zero point (a scalar, or A's per row of M, B's per
 * column of N), summed in int32. The sums go to acc (int32) or, scaled by
 * *a_scale x b_scale (per tensor or per column) plus the bias, to a float32
 * output. */
typedef struct quant_mm {
    const tensor *A, *B, *azp, *bzp;
    const tensor *a_scale, *b_scale, *bias; /* NULL for MatMulInteger */
    float a_scale_value;                    /* used when a_scale is NULL and scaling */
    int scaled;
} quant_mm;

static mha_status quant_matmul(interp_ctx *c, const quant_mm *q) {
    const tensor *A = q->A, *B = q->B;
    char s0[INTERP_SHAPE_BUF], s1[INTERP_SHAPE_BUF];
    if (!quant_is_8bit(A->dtype) || !quant_is_8bit(B->dtype))
        return interp_fail(c, MHA_ERR_DTYPE, "A and B must be uint8 or int8 (%s, %s)",
                           mha_dtype_name(A->dtype), mha_dtype_name(B->dtype));
    if (A->rank < 1 || B->rank < 1) return interp_fail(c, MHA_ERR_SHAPE, "A and B need an axis");
    /* promoted shapes */
    int64_t ad[MHA_MAX_RANK + 1], bd[MHA_MAX_RANK + 1];
    int ar = A->rank, br = B->rank;
    if (ar == 1) {
        ad[0] = 1;
        ad[1] = A->dims[0];
        ar = 2;
    } else
        memcpy(ad, A->dims, sizeof(int64_t) * (size_t)ar);
    if (br == 1) {
        bd[0] = B->dims[0];
        bd[1] = 1;
        br = 2;
    } else
        memcpy(bd, B->dims, sizeof(int64_t) * (size_t)br);
    const int64_t M = ad[ar - 2], K = ad[ar - 1], N = bd[br - 1];
    if (bd[br - 2] != K)
        return interp_fail(c, MHA_ERR_SHAPE, "A %s and B %s do not multiply", interp_shape(A, s0),
                           interp_shape(B, s1));
    int r = (ar > br ? ar : br) - 2;
    if (r + 2 > MHA_MAX_RANK) return interp_fail(c, MHA_ERR_SHAPE, "rank too high");
    int64_t od[MHA_MAX_RANK], as[MHA_MAX_RANK], bs[MHA_MAX_RANK];
    int64_t a_stride = M * K, b_stride = K * N;
    for (int i = r - 1; i >= 0; i--) {
        const int ia = i - (r - (ar - 2)), ib = i - (r - (br - 2));
        const int64_t da = ia >= 0 ? ad[ia] : 1, db = ib >= 0 ? bd[ib] : 1;
        if (da != db && da != 1 && db != 1)
            return interp_fail(c, MHA_ERR_SHAPE, "batch axes of A %s and B %s do not broadcast",
                               interp_shape(A, s0), interp_shape(B, s1));
        od[i] = da > db ? da : db;
        as[i] = da == 1 ? 0 : a_stride;
        bs[i] = db == 1 ? 0 : b_stride;
        a_stride *= da;
        b_stride *= db;
    }
    /* zero points and scales */
    const int64_t naz = q->azp ? tensor_numel(q->azp) : 0, nbz = q->bzp ? tensor_numel(q->bzp) : 0;
    /* one per row is [M], one per column [N] (or [1, ..., 1, N], ONNX
     * Runtime's batched form): a [N, 1] of N values is no column's */
    if (q->azp && (q->azp->dtype != A->dtype || (naz != 1 && (naz != M || q->azp->rank != 1))))
        return interp_fail(c, MHA_ERR_SHAPE,
                           "a_zero_point %s must be %s with one value or one per row (%lld)",
                           interp_shape(q->azp, s0), mha_dtype_name(A->dtype), (long long)M);
    if (q->bzp && (q->bzp->dtype != B->dtype ||
                   (nbz != 1 && (nbz != N || q->bzp->dims[q->bzp->rank - 1] != N))))
        return interp_fail(c, MHA_ERR_SHAPE,
                           "b_zero_point %s must be %s with one value or one per column (%lld)",
                           interp_shape(q->bzp, s0), mha_dtype_name(B->dtype), (long long)N);
    const int64_t nbs = q->b_scale ? tensor_numel(q->b_scale) : 0;
    if (q->scaled) {
        if (q->a_scale && tensor_numel(q->a_scale) != 1)
            return interp_fail(c, MHA_ERR_SHAPE, "a_scale %s must hold one value",
                               interp_shape(q->a_scale, s0));
        if (q->b_scale && nbs != 1 && nbs != N)
            return interp_fail(c, MHA_ERR_SHAPE,
                               "b_scale %s must hold one value or one per column (%lld)",
                               interp_shape(q->b_scale, s0), (long long)N);
        if (q->bias && tensor_numel(q->bias) != N)
            return interp_fail(c, MHA_ERR_SHAPE, "bias %s must hold %lld values",
                               interp_shape(q->bias, s0), (long long)N);
    }
    int orank = 0;
    int64_t odims[MHA_MAX_RANK];
    for (int i = 0; i < r; i++)
        odims[orank++] = od[i];
    if (A->rank > 1) odims[orank++] = M;
    if (B->rank > 1) odims[orank++] = N;
    tensor *Y;
    mha_status st =
        interp_out_new(c, 0, q->scaled ? MHA_DTYPE_FLOAT32 : MHA_DTYPE_INT32, orank, odims, &Y);
    if (st != MHA_OK) return st;
    int64_t batches = 1;
    for (int i = 0; i < r; i++)
        batches *= od[i];
    const float a_scale = q->a_scale ? (float)tensor_get_f64(q->a_scale, 0) : q->a_scale_value;
    for (int64_t b = 0; b < batches; b++) {
        int64_t ao = 0, bo = 0, rem = b;
        for (int i = r - 1; i >= 0; i--) {
            const int64_t idx = rem % od[i];
            rem /= od[i];
            ao += idx * as[i];
            bo += idx * bs[i];
        }
        for (int64_t m = 0; m < M; m++) {
            const int64_t za = q->azp ? tensor_get_i64(q->azp, naz == 1 ? 0 : m) : 0;
            for (int64_t n = 0; n < N; n++) {
                const int64_t zb = q->bzp ? tensor_get_i64(q->bzp, nbz == 1 ? 0 : n) : 0;
                /* int32 as ONNX says, wrapping as ONNX Runtime's int32
                 * sums do past 2^31 (K over 33025 of 255 x 255): summed
                 * in uint32, where wrapping is defined */
                uint32_t sum = 0;
                for (int64_t k = 0; k < K; k++)
                    sum += (uint32_t)((tensor_get_i64(A, ao + m * K + k) - za) *
                                      (tensor_get_i64(B, bo + k * N + n) - zb));
                const int32_t acc = (int32_t)sum;
                const int64_t o = (b * M + m) * N + n;
                if (!q->scaled) {
                    ((int32_t *)Y->data)[o] = acc;
                    continue;
                }
                /* ONNX Runtime multiplies the two scales first, then the
                 * float sum by the product */
                const float bsv =
                    q->b_scale ? (float)tensor_get_f64(q->b_scale, nbs == 1 ? 0 : n) : 1.0f;
                float v = (float)acc * (a_scale * bsv);
                if (q->bias) v += (float)tensor_get_f64(q->bias, n);
                ((float *)Y->data)[o] = v;
            }
        }
    }
    return MHA_OK;
}

/* MatMulInteger(A, B, a_zero_point?, b_zero_point?) -> int32 */
mha_status interp_op_matmul_integer(interp_ctx *c) {
    quant_mm q = {0};
    mha_status st = interp_check_arity(c, 2, 4, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &q.A);
    if (st == MHA_OK) st = interp_in_req(c, 1, &q.B);
    if (st != MHA_OK) return st;
    q.azp = interp_in(c, 2);
    q.bzp = interp_in(c, 3);
    return quant_matmul(c, &q);
}

/* com.microsoft.MatMulIntegerToFloat(A, B, a_scale, b_scale, a_zero_point?,
 * b_zero_point?, bias?) -> float32 */
mha_status interp_op_ms_matmul_integer_to_float(interp_ctx *c) {
    quant_mm q = {0};
    mha_status st = interp_check_arity(c, 4, 7, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &q.A);
    if (st == MHA_OK) st = interp_in_req(c, 1, &q.B);
    if (st == MHA_OK) st = interp_in_req(c, 2, &q.a_scale);
    if (st == MHA_OK) st = interp_in_req(c, 3, &q.b_scale);
    if (st != MHA_OK) return st;
    q.azp = interp_in(c, 4);
    q.bzp = interp_in(c, 5);
    q.bias = interp_in(c, 6);
    q.scaled = 1;
    return quant_matmul(c, &q);
}

/* com.microsoft.DynamicQuantizeMatMul(A float32, B, b_scale, b_zero_point?,
 * bias?) -> float32: A quantized to uint8 as DynamicQuantizeLinear does,
 * then MatMulIntegerToFloat. */
mha_status interp_op_ms_dynamic_quantize_matmul(interp_ctx *c) {
    const tensor *A;
    quant_mm q = {0};
    mha_status st = interp_check_arity(c, 3, 5, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &A);
    if (st == MHA_OK) st = interp_in_req(c, 1, &q.B);
    if (st == MHA_OK) st = interp_in_req(c, 2, &q.b_scale);
    if (st != MHA_OK) return st;
    if (A->dtype != MHA_DTYPE_FLOAT32)
        return interp_fail(c, MHA_ERR_DTYPE, "A must be float32, not %s", mha_dtype_name(A->dtype));
    q.bzp = interp_in(c, 3);
    q.bias = interp_in(c, 4);
    tensor *Aq;
    st = interp_tensor_new(c, MHA_DTYPE_UINT8, A->rank, A->dims, &Aq);
    if (st != MHA_OK) return st;
    int64_t zp;
    quant_dynamic_params(A, &q.a_scale_value, &zp);
    quant_dynamic_apply(A, q.a_scale_value, zp, Aq);
    uint8_t zp8 = (uint8_t)zp;
    tensor azp = {.dtype = MHA_DTYPE_UINT8, .rank = 0, .data = &zp8, .nbytes = 1};
    q.A = Aq;
    q.azp = &azp;
    q.scaled = 1;
    st = quant_matmul(c, &q);
    tensor_free(Aq);
    return st;
}
