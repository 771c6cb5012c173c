/* interp_rotary.c -- RotaryEmbedding (opset 23) for the reference
 * interpreter.
 *
 *   X            [B, H, S, d] (4-D) or [B, S, H * d] (3-D, num_heads given)
 *   cos, sin     [max_pos, r / 2] gathered by position_ids [B, S], or
 *                [B, S, r / 2] when there are no position_ids
 *   r            rotary_embedding_dim (0: the whole head, d)
 * For each (b, s, h) the first r features of the head turn by the angle of
 * position (b, s), pair t of them being
 *   interleaved = 0:  (x[t], x[t + r / 2])     (rotate-half, GPT-NeoX)
 *   interleaved = 1:  (x[2t], x[2t + 1])       (GPT-J)
 *   x1' = cos_t x1 - sin_t x2,   x2' = sin_t x1 + cos_t x2
 * and the features past r are copied. In double. */
#include "interp_internal.h"

mha_status interp_op_rotary_embedding(interp_ctx *c) {
    const tensor *X, *C, *Sn, *Pos;
    int64_t interleaved, rdim, heads;
    char s0[INTERP_SHAPE_BUF], s1[INTERP_SHAPE_BUF];
    mha_status st = interp_check_arity(c, 3, 4, 1, 1);
    if (st == MHA_OK) st = interp_in_req(c, 0, &X);
    if (st == MHA_OK) st = interp_in_req(c, 1, &C);
    if (st == MHA_OK) st = interp_in_req(c, 2, &Sn);
    if (st == MHA_OK) st = interp_attr_flag(c, "interleaved", 0, &interleaved);
    if (st == MHA_OK) st = interp_attr_int(c, "rotary_embedding_dim", 0, &rdim);
    if (st == MHA_OK) st = interp_attr_int(c, "num_heads", 0, &heads);
    if (st != MHA_OK) return st;
    /* a negative rotary_embedding_dim means nothing (ONNX Runtime refuses
     * it too); interleaved is a flag (interp_attr_flag) */
    if (rdim < 0)
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "rotary_embedding_dim %lld is negative",
                           (long long)rdim);
    Pos = interp_in(c, 3);
    if (!interp_is_float(X->dtype) || C->dtype != X->dtype || Sn->dtype != X->dtype)
        return interp_fail(c, MHA_ERR_DTYPE,
                           "X, cos_cache and sin_cache must share one float type");
    if (Pos && Pos->dtype != MHA_DTYPE_INT64)
        return interp_fail(c, MHA_ERR_DTYPE, "position_ids must be int64");
    int64_t B, S, H, d;
    if (X->rank == 4) {
        B = X->dims[0], H = X->dims[1], S = X->dims[2], d = X->dims[3];
    } else if (X->rank == 3) {
        if (heads <= 0 || X->dims[2] % heads != 0)
            return interp_fail(c, MHA_ERR_MODEL_FORMAT,
                               "a 3-D X %s needs num_heads dividing its last axis (%lld)",
                               interp_shape(X, s0), (long long)heads);
        B = X->dims[0], S = X->dims[1], H = heads, d = X->dims[2] / heads;
    } else {
        return interp_fail(c, MHA_ERR_SHAPE, "X %s must be 3-D or 4-D", interp_shape(X, s0));
    }
    const int64_t r = rdim > 0 ? rdim : d;
    if (r > d || r % 2 != 0)
        return interp_fail(c, MHA_ERR_MODEL_FORMAT,
                           "rotary_embedding_dim %lld must be even and at most the head size %lld",
                           (long long)r, (long long)d);
    const int64_t half = r / 2;
    int64_t max_pos = 0;
    if (Pos) {
        if (C->rank != 2 || Sn->rank != 2 || C->dims[1] != half || Sn->dims[0] != C->dims[0] ||
            Sn->dims[1] != half || Pos->rank != 2 || Pos->dims[0] != B || Pos->dims[1] != S)
            return interp_fail(c, MHA_ERR_SHAPE,
                               "cos_cache %s and sin_cache %s must be [max_pos, %lld] and "
                               "position_ids [%lld, %lld]",
                               interp_shape(C, s0), interp_shape(Sn, s1), (long long)half,
                               (long long)B, (long long)S);
        max_pos = C->dims[0];
    } else if (C->rank != 3 || Sn->rank != 3 || C->dims[0] != B || C->dims[1] != S ||
               C->dims[2] != half || Sn->dims[0] != B || Sn->dims[1] != S || Sn->dims[2] != half) {
        return interp_fail(c, MHA_ERR_SHAPE,
                           "without position_ids cos_cache %s and sin_cache %s must be "
                           "[%lld, %lld, %lld]",
                           interp_shape(C, s0), interp_shape(Sn, s1), (long long)B, (long long)S,
                           (long long)half);
    }
    tensor *Y;
    st = interp_out_new(c, 0, X->dtype, X->rank, X->dims, &Y);
    if (st != MHA_OK) return st;
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++) {
            int64_t row; /* the cache row of (b, s), in elements */
            if (Pos) {
                const int64_t p = tensor_get_i64(Pos, b * S + s);
                if (p < 0 || p >= max_pos)
                    return interp_fail(c, MHA_ERR_SHAPE,
                                       "position_ids[%lld, %lld] = %lld is outside the caches' "
                                       "%lld rows",
                                       (long long)b, (long long)s, (long long)p,
                                       (long long)max_pos);
                row = p * half;
            } else {
                row = (b * S + s) * half;
            }
            for (int64_t h = 0; h < H; h++) {
                /* element offset of feature 0 of head h at (b, s) */
                const int64_t base =
                    X->rank == 4 ? ((b * H + h) * S + s) * d : (b * S + s) * H * d + h * d;
                for (int64_t t = 0; t < half; t++) {
                    const int64_t i1 = interleaved ? 2 * t : t;
                    const int64_t i2 = interleaved ? 2 * t + 1 : t + half;
                    const double x1 = tensor_get_f64(X, base + i1),
                                 x2 = tensor_get_f64(X, base + i2);
                    const double cs = tensor_get_f64(C, row + t), sn = tensor_get_f64(Sn, row + t);
                    tensor_set_f64(Y, base + i1, cs * x1 - sn * x2);
                    tensor_set_f64(Y, base + i2, sn * x1 + cs * x2);
                }
                for (int64_t i = r; i < d; i++)
                    tensor_set_f64(Y, base + i, tensor_get_f64(X, base + i));
            }
        }
    return MHA_OK;
}
