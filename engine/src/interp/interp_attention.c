/* interp_attention.c -- the reference interpreter's ONNX Attention op
 * (opset 23, 24, and the opset-25 window attributes), written as plainly as
 * the spec reads so the engine can check its own kernels against it.
 *
 * Shapes (4-D form; the 3-D form packs heads into the last axis and is
 * addressed in place):
 *   Q [B, Hq, Sq, dh]   K [B, Hkv, Skv, dh]   V [B, Hkv, Skv, dv]
 *   past_key [B, Hkv, P, dh], past_value [B, Hkv, P, dv]; T = P + Skv
 *   attn_mask broadcast (right-aligned) to [B, Hq, Sq, T], last axis <= T
 *   nonpad_kv_seqlen [B] (opset 24)
 *   Y [B, Hq, Sq, dv] (3-D: [B, Sq, Hq*dv]); present_* [B, Hkv, T, d*];
 *   qk_matmul_output [B, Hq, Sq, T]
 *
 * Per (b, h, i), with g = h / (Hq / Hkv) the shared K/V head:
 *   s[j] = scale * q . k[j]                       -> qk mode 0
 *   s[j] = softcap * tanh(s[j] / softcap)         -> qk mode 1 (if softcap > 0)
 *   s[j] = masked(j) ? -inf : s[j] + mask[j]      -> qk mode 2
 *   p = softmax over the keys not masked; p = 0 when all are
 *                                                 -> qk mode 3
 *   y = sum_j p[j] v[j]
 * The qk modes follow the order of the pipeline (softcap comes before the
 * mask so a -inf mask stays -inf); the conformance cases, produced by ONNX
 * Runtime, confirm mode 1 = after softcap and mode 2 = after the mask.
 *
 * Key j is masked for query i when any of:
 *   is_causal and j > i + offset (bottom-right aligned; offset = P with
 *     past_key, nonpad_kv_seqlen[b] - Sq with nonpad_kv_seqlen, else 0)
 *   left_window_size >= 0 and j < i + offset - left_window_size
 *   right_window_size >= 0 and j > i + offset + right_window_size
 *   nonpad_kv_seqlen given and j >= nonpad_kv_seqlen[b]
 *   j is beyond the mask's last axis (the spec pads the mask)
 *   a bool mask is False there, or a float mask is -inf or the lowest
 *     finite value of its type there.
 * A fully masked row gives zero output and zero probabilities, never NaN.
 * Everything accumulates in double whatever softmax_precision says. */
#include "interp_internal.h"

#include <math.h>
#include <string.h>

/* Larger than any sequence length a tensor here can have. */
#define ATTN_BIG ((int64_t)1 << 40)

/* Element offsets of the 3-D or 4-D Q/K/V layouts. */
typedef struct attn_layout {
    int rank;      /* 3 or 4 */
    int64_t heads; /* heads packed in this tensor */
    int64_t seq;   /* sequence length */
    int64_t dim;   /* per-head size */
} attn_layout;

static int64_t attn_at(const attn_layout *l, int64_t b, int64_t h, int64_t s, int64_t d) {
    if (l->rank == 4) return ((b * l->heads + h) * l->seq + s) * l->dim + d;
    return (b * l->seq + s) * (l->heads * l->dim) + h * l->dim + d;
}

typedef struct attn_params {
    int64_t B, Hq, Hkv, Sq, Skv, P, T, dh, dv;
    int64_t is_causal, mode, left, right;
    double scale, softcap;
} attn_params;

/* Checks Q/K/V (3-D or 4-D) and fills sizes and layouts. */
static mha_status attn_shapes(interp_ctx *c, const tensor *Q, const tensor *K, const tensor *V,
                              int64_t q_heads_attr, int64_t kv_heads_attr, attn_params *p,
                              attn_layout *lq, attn_layout *lk, attn_layout *lv) {
    char s0[INTERP_SHAPE_BUF], s1[INTERP_SHAPE_BUF], s2[INTERP_SHAPE_BUF];
    if ((Q->rank != 3 && Q->rank != 4) || K->rank != Q->rank || V->rank != Q->rank)
        return interp_fail(c, MHA_ERR_SHAPE, "Q, K, V must all be 3-D or all 4-D, are %s, %s, %s",
                           interp_shape(Q, s0), interp_shape(K, s1), interp_shape(V, s2));
    int64_t dk;
    if (Q->rank == 4) {
        p->B = Q->dims[0];
        p->Hq = Q->dims[1];
        p->Sq = Q->dims[2];
        p->dh = Q->dims[3];
        p->Hkv = K->dims[1];
        p->Skv = K->dims[2];
        dk = K->dims[3];
        p->dv = V->dims[3];
        if (V->dims[1] != p->Hkv)
            return interp_fail(c, MHA_ERR_SHAPE, "K %s and V %s have different head counts",
                               interp_shape(K, s1), interp_shape(V, s2));
        if ((q_heads_attr > 0 && q_heads_attr != p->Hq) ||
            (kv_heads_attr > 0 && kv_heads_attr != p->Hkv))
            return interp_fail(c, MHA_ERR_SHAPE,
                               "q_num_heads %lld / kv_num_heads %lld disagree with Q %s, K %s",
                               (long long)q_heads_attr, (long long)kv_heads_attr,
                               interp_shape(Q, s0), interp_shape(K, s1));
    } else {
        if (q_heads_attr <= 0 || kv_heads_attr <= 0)
            return interp_fail(c, MHA_ERR_MODEL_FORMAT,
                               "3-D inputs need q_num_heads and kv_num_heads > 0");
        p->Hq = q_heads_attr;
        p->Hkv = kv_heads_attr;
        p->B = Q->dims[0];
        p->Sq = Q->dims[1];
        p->Skv = K->dims[1];
        if (Q->dims[2] % p->Hq || K->dims[2] % p->Hkv || V->dims[2] % p->Hkv)
            return interp_fail(c, MHA_ERR_SHAPE,
                               "hidden sizes of Q %s, K %s, V %s do not divide into %lld / "
                               "%lld heads",
                               interp_shape(Q, s0), interp_shape(K, s1), interp_shape(V, s2),
                               (long long)p->Hq, (long long)p->Hkv);
        p->dh = Q->dims[2] / p->Hq;
        dk = K->dims[2] / p->Hkv;
        p->dv = V->dims[2] / p->Hkv;
    }
    if (K->dims[0] != p->B || V->dims[0] != p->B || V->dims[Q->rank - 2] != p->Skv || dk != p->dh)
        return interp_fail(c, MHA_ERR_SHAPE, "Q %s, K %s, V %s do not fit together",
                           interp_shape(Q, s0), interp_shape(K, s1), interp_shape(V, s2));
    if (p->Hkv <= 0 || p->Hq % p->Hkv != 0)
        return interp_fail(c, MHA_ERR_SHAPE, "%lld query heads cannot share %lld key/value heads",
                           (long long)p->Hq, (long long)p->Hkv);
    if (p->dh <= 0)
        return interp_fail(c, MHA_ERR_SHAPE, "head size of Q %s is 0", interp_shape(Q, s0));
    *lq = (attn_layout){Q->rank, p->Hq, p->Sq, p->dh};
    *lk = (attn_layout){Q->rank, p->Hkv, p->Skv, p->dh};
    *lv = (attn_layout){Q->rank, p->Hkv, p->Skv, p->dv};
    return MHA_OK;
}

/* Checks the optional inputs against the sizes; fills P and T. */
static mha_status attn_optional(interp_ctx *c, const tensor *Q, const tensor *mask,
                                const tensor *pk, const tensor *pv, const tensor *nonpad,
                                attn_params *p) {
    char s0[INTERP_SHAPE_BUF], s1[INTERP_SHAPE_BUF];
    p->P = 0;
    if ((pk == NULL) != (pv == NULL))
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "past_key and past_value come together");
    if (pk != NULL) {
        if (pk->dtype != Q->dtype || pv->dtype != Q->dtype)
            return interp_fail(c, MHA_ERR_DTYPE, "past_key / past_value must be %s",
                               mha_dtype_name(Q->dtype));
        if (pk->rank != 4 || pv->rank != 4 || pk->dims[0] != p->B || pk->dims[1] != p->Hkv ||
            pk->dims[3] != p->dh || pv->dims[0] != p->B || pv->dims[1] != p->Hkv ||
            pv->dims[2] != pk->dims[2] || pv->dims[3] != p->dv)
            return interp_fail(c, MHA_ERR_SHAPE,
                               "past_key %s / past_value %s must be [%lld, %lld, P, %lld] / "
                               "[%lld, %lld, P, %lld]",
                               interp_shape(pk, s0), interp_shape(pv, s1), (long long)p->B,
                               (long long)p->Hkv, (long long)p->dh, (long long)p->B,
                               (long long)p->Hkv, (long long)p->dv);
        p->P = pk->dims[2];
    }
    p->T = p->P + p->Skv;
    if (mask != NULL) {
        if (mask->dtype != MHA_DTYPE_BOOL && !interp_is_float(mask->dtype))
            return interp_fail(c, MHA_ERR_DTYPE, "attn_mask must be bool or float, not %s",
                               mha_dtype_name(mask->dtype));
        /* right-aligned against [B, Hq, Sq, T]; the last axis may be short */
        const int64_t full[4] = {p->B, p->Hq, p->Sq, p->T};
        int ok = mask->rank >= 1 && mask->rank <= 4 && mask->dims[mask->rank - 1] <= p->T;
        for (int a = 0; ok && a < mask->rank - 1; a++) {
            int64_t d = mask->dims[a], want = full[a + 4 - mask->rank];
            ok = d == 1 || d == want;
        }
        if (!ok)
            return interp_fail(c, MHA_ERR_SHAPE,
                               "attn_mask of shape %s does not broadcast to %lldx%lldx%lldx%lld",
                               interp_shape(mask, s0), (long long)p->B, (long long)p->Hq,
                               (long long)p->Sq, (long long)p->T);
    }
    if (nonpad != NULL) {
        if (nonpad->dtype != MHA_DTYPE_INT64 && nonpad->dtype != MHA_DTYPE_INT32)
            return interp_fail(c, MHA_ERR_DTYPE, "nonpad_kv_seqlen must be int64, not %s",
                               mha_dtype_name(nonpad->dtype));
        if (nonpad->rank != 1 || nonpad->dims[0] != p->B)
            return interp_fail(c, MHA_ERR_SHAPE, "nonpad_kv_seqlen of shape %s must be [%lld]",
                               interp_shape(nonpad, s0), (long long)p->B);
    }
    return MHA_OK;
}

/* present = concat(past, new) along the sequence axis, as [B, Hkv, T, d]. */
static void attn_concat(tensor *present, const tensor *past, const tensor *x, const attn_layout *lx,
                        const attn_params *p, int64_t d) {
    size_t es = mha_dtype_size(x->dtype);
    for (int64_t b = 0; b < p->B; b++)
        for (int64_t g = 0; g < p->Hkv; g++)
            for (int64_t j = 0; j < p->T; j++)
                for (int64_t e = 0; e < d; e++) {
                    int64_t dst = ((b * p->Hkv + g) * p->T + j) * d + e;
                    const void *src =
                        j < p->P
                            ? (const char *)past->data +
                                  (size_t)(((b * p->Hkv + g) * p->P + j) * d + e) * es
                            : (const char *)x->data + (size_t)attn_at(lx, b, g, j - p->P, e) * es;
                    memcpy((char *)present->data + (size_t)dst * es, src, es);
                }
}

/* Mask element strides for output axes (b, h, i, j): 0 where broadcast. */
static void attn_mask_strides(const tensor *mask, int64_t *ms) {
    int64_t stride = 1;
    for (int a = 3; a >= 0; a--) {
        int ax = a - (4 - mask->rank);
        ms[a] = 0;
        if (ax < 0) continue;
        /* an extent-1 axis broadcasts; the key axis never does (it is padded) */
        if (mask->dims[ax] != 1 || a == 3) ms[a] = stride;
        stride *= mask->dims[ax];
    }
}

mha_status interp_op_attention(interp_ctx *c) {
    const tensor *Q, *K, *V;
    int64_t q_heads, kv_heads, softmax_precision;
    float scale_attr, softcap;
    attn_params p = {0};
    attn_layout lq = {0}, lk = {0}, lv = {0};
    mha_status st = interp_check_arity(c, 3, c->opset >= 24 ? 7 : 6, 1, 4);
    if (st == MHA_OK) st = interp_in_req(c, 0, &Q);
    if (st == MHA_OK) st = interp_in_req(c, 1, &K);
    if (st == MHA_OK) st = interp_in_req(c, 2, &V);
    if (st == MHA_OK) st = interp_attr_int(c, "q_num_heads", 0, &q_heads);
    if (st == MHA_OK) st = interp_attr_int(c, "kv_num_heads", 0, &kv_heads);
    if (st == MHA_OK) st = interp_attr_flag(c, "is_causal", 0, &p.is_causal);
    if (st == MHA_OK) st = interp_attr_int(c, "qk_matmul_output_mode", 0, &p.mode);
    if (st == MHA_OK) st = interp_attr_int(c, "softmax_precision", 0, &softmax_precision);
    if (st == MHA_OK) st = interp_attr_int(c, "left_window_size", -1, &p.left);
    if (st == MHA_OK) st = interp_attr_int(c, "right_window_size", -1, &p.right);
    if (st == MHA_OK) st = interp_attr_float(c, "softcap", 0.0f, &softcap);
    if (st == MHA_OK) st = interp_attr_float(c, "scale", 0.0f, &scale_attr);
    if (st != MHA_OK) return st;
    const tensor *mask = interp_in(c, 3), *pk = interp_in(c, 4), *pv = interp_in(c, 5);
    const tensor *nonpad = interp_in(c, 6);
    if (!interp_is_float(Q->dtype) || K->dtype != Q->dtype || V->dtype != Q->dtype)
        return interp_fail(c, MHA_ERR_DTYPE, "Q, K, V must share one float type (%s, %s, %s)",
                           mha_dtype_name(Q->dtype), mha_dtype_name(K->dtype),
                           mha_dtype_name(V->dtype));
    if (p.mode < 0 || p.mode > 3)
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "qk_matmul_output_mode %lld is not 0..3",
                           (long long)p.mode);
    if (!(softcap >= 0.0f) || isinf(softcap))
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "softcap %g must be finite and >= 0",
                           (double)softcap);
    if (p.left < -1 || p.right < -1)
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "window sizes must be >= -1");
    /* Windows (and below, nonpad lengths) beyond any possible sequence
     * length mean the same as 2^40; clamping keeps the frontier arithmetic
     * free of overflow. */
    if (p.left > ATTN_BIG) p.left = ATTN_BIG;
    if (p.right > ATTN_BIG) p.right = ATTN_BIG;
    st = attn_shapes(c, Q, K, V, q_heads, kv_heads, &p, &lq, &lk, &lv);
    if (st == MHA_OK) st = attn_optional(c, Q, mask, pk, pv, nonpad, &p);
    if (st != MHA_OK) return st;
    if (interp_has_attr(c, "scale")) {
        if (!isfinite(scale_attr))
            return interp_fail(c, MHA_ERR_MODEL_FORMAT, "scale %g is not finite",
                               (double)scale_attr);
        p.scale = scale_attr;
    } else {
        p.scale = 1.0 / sqrt((double)p.dh);
    }
    p.softcap = softcap;

    /* ---- outputs; present K/V double as the concatenated caches ---- */
    int64_t ydims[4];
    int yrank = Q->rank;
    if (yrank == 4) {
        ydims[0] = p.B, ydims[1] = p.Hq, ydims[2] = p.Sq, ydims[3] = p.dv;
    } else {
        ydims[0] = p.B, ydims[1] = p.Sq;
        if (!mha_mul_i64(p.Hq, p.dv, &ydims[2]))
            return interp_fail(c, MHA_ERR_LIMIT, "output hidden size overflows");
    }
    int64_t kdims[4] = {p.B, p.Hkv, p.T, p.dh}, vdims[4] = {p.B, p.Hkv, p.T, p.dv};
    int64_t qkdims[4] = {p.B, p.Hq, p.Sq, p.T};
    tensor *Y, *Kp = NULL, *Vp = NULL, *QK = NULL, *Ktmp = NULL, *Vtmp = NULL;
    st = interp_out_new(c, 0, Q->dtype, yrank, ydims, &Y);
    if (st == MHA_OK)
        st = c->n_out > 1 ? interp_out_new(c, 1, Q->dtype, 4, kdims, &Kp)
                          : interp_tensor_new(c, Q->dtype, 4, kdims, &Ktmp);
    if (st == MHA_OK)
        st = c->n_out > 2 ? interp_out_new(c, 2, Q->dtype, 4, vdims, &Vp)
                          : interp_tensor_new(c, Q->dtype, 4, vdims, &Vtmp);
    if (st == MHA_OK && c->n_out > 3) st = interp_out_new(c, 3, Q->dtype, 4, qkdims, &QK);
    if (st != MHA_OK) {
        tensor_free(Ktmp);
        tensor_free(Vtmp);
        return st;
    }
    if (Kp == NULL) Kp = Ktmp;
    if (Vp == NULL) Vp = Vtmp;
    attn_concat(Kp, pk, K, &lk, &p, p.dh);
    attn_concat(Vp, pv, V, &lv, &p, p.dv);

    /* ---- per query row: scores, mask, softmax, weighted sum ---- */
    size_t T = (size_t)p.T;
    /* T can be huge while K holds no element (a zero-sized batch or head
     * axis): bound the per-row buffers like any result. */
    if (T > INTERP_MAX_TENSOR_BYTES / (3 * sizeof(double))) {
        tensor_free(Ktmp);
        tensor_free(Vtmp);
        return interp_fail(c, MHA_ERR_LIMIT,
                           "%zu keys per query row exceed the interpreter's %zu-byte limit", T,
                           (size_t)INTERP_MAX_TENSOR_BYTES);
    }
    double *score = mha_malloc(c->a, (T ? T : 1) * sizeof(double) * 3);
    unsigned char *masked = mha_malloc(c->a, T ? T : 1);
    if (score == NULL || masked == NULL) {
        mha_free(c->a, score);
        mha_free(c->a, masked);
        tensor_free(Ktmp);
        tensor_free(Vtmp);
        return interp_fail(c, MHA_ERR_NO_MEMORY, "out of memory for %zu scores", T);
    }
    double *raw = score + T, *capped = score + 2 * T;
    int64_t ms[4] = {0, 0, 0, 0};
    int64_t mask_len = 0;
    double mask_lowest = 0.0;
    if (mask != NULL) {
        attn_mask_strides(mask, ms);
        mask_len = mask->dims[mask->rank - 1];
        mask_lowest = interp_lowest(mask->dtype);
    }
    int64_t group = p.Hq / p.Hkv;
    for (int64_t b = 0; b < p.B; b++) {
        /* bottom-right alignment of the causal / window frontier */
        int64_t offset = 0, valid = p.T;
        if (nonpad != NULL) {
            valid = tensor_get_i64(nonpad, b);
            valid = valid > ATTN_BIG ? ATTN_BIG : valid < -ATTN_BIG ? -ATTN_BIG : valid;
        }
        if (pk != NULL)
            offset = p.P;
        else if (nonpad != NULL)
            offset = valid - p.Sq;
        for (int64_t h = 0; h < p.Hq; h++) {
            int64_t g = h / group;
            for (int64_t i = 0; i < p.Sq; i++) {
                double mx = -INFINITY;
                for (int64_t j = 0; j < p.T; j++) {
                    /* s = scale * q_i . k_j */
                    double dot = 0.0;
                    for (int64_t d = 0; d < p.dh; d++)
                        dot += tensor_get_f64(Q, attn_at(&lq, b, h, i, d)) *
                               tensor_get_f64(Kp, ((b * p.Hkv + g) * p.T + j) * p.dh + d);
                    double s = p.scale * dot;
                    raw[j] = s;
                    if (p.softcap > 0.0) s = p.softcap * tanh(s / p.softcap);
                    capped[j] = s;
                    int m = 0;
                    int64_t frontier = i + offset; /* last key the causal rule allows */
                    if (p.is_causal && j > frontier) m = 1;
                    if (p.left >= 0 && j < frontier - p.left) m = 1;
                    if (p.right >= 0 && j > frontier + p.right) m = 1;
                    if (j >= valid) m = 1;
                    if (mask != NULL && !m) {
                        if (j >= mask_len) {
                            m = 1; /* the spec pads a short mask with -inf / False */
                        } else {
                            int64_t mi = b * ms[0] + h * ms[1] + i * ms[2] + j * ms[3];
                            double mv = tensor_get_f64(mask, mi);
                            if (mask->dtype == MHA_DTYPE_BOOL)
                                m = mv == 0.0;
                            else if (mv <= mask_lowest)
                                m = 1; /* -inf or the lowest finite value */
                            else
                                s += mv;
                        }
                    }
                    masked[j] = (unsigned char)m;
                    score[j] = m ? -INFINITY : s;
                    if (!m && (s > mx || isnan(s))) mx = s;
                }
                /* softmax over the unmasked keys; none (or all -inf) -> 0 */
                double sum = 0.0;
                int empty = !(mx > -INFINITY) && !isnan(mx);
                for (int64_t j = 0; j < p.T; j++) {
                    double e = (masked[j] || empty) ? 0.0 : exp(score[j] - mx);
                    sum += e;
                    if (QK != NULL) {
                        int64_t qi = ((b * p.Hq + h) * p.Sq + i) * p.T + j;
                        double out = p.mode == 0   ? raw[j]
                                     : p.mode == 1 ? capped[j]
                                     : p.mode == 2 ? score[j]
                                                   : e; /* normalised below */
                        tensor_set_f64(QK, qi, out);
                    }
                    raw[j] = e; /* raw[] now holds the unnormalised weights */
                }
                double inv = sum > 0.0 ? 1.0 / sum : 0.0;
                if (QK != NULL && p.mode == 3) {
                    for (int64_t j = 0; j < p.T; j++) {
                        int64_t qi = ((b * p.Hq + h) * p.Sq + i) * p.T + j;
                        tensor_set_f64(QK, qi, raw[j] * inv);
                    }
                }
                /* y = sum_j p_j v_j */
                for (int64_t e = 0; e < p.dv; e++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < p.T; j++)
                        if (raw[j] != 0.0)
                            acc += raw[j] * inv *
                                   tensor_get_f64(Vp, ((b * p.Hkv + g) * p.T + j) * p.dv + e);
                    int64_t yi = yrank == 4 ? ((b * p.Hq + h) * p.Sq + i) * p.dv + e
                                            : (b * p.Sq + i) * (p.Hq * p.dv) + h * p.dv + e;
                    tensor_set_f64(Y, yi, acc);
                }
            }
        }
    }
    mha_free(c->a, score);
    mha_free(c->a, masked);
    tensor_free(Ktmp);
    tensor_free(Vtmp);
    return MHA_OK;
}
