/* interp_msft.c -- the reference interpreter's com.microsoft attention ops,
 * as ONNX Runtime's contrib-op documentation (ContribOperators.md) defines
 * them, written plainly (double inside) so the recogniser can probe and the
 * verifier can check graphs that use them.
 *
 * MultiHeadAttention (com.microsoft, 1), the unpacked form:
 *   query [B, S, H*dh], key [B, L, H*dh], value [B, L, H*dv]
 *   bias [H*dh + H*dh + H*dv] (optional, added to query | key | value)
 *   key_padding_mask [B] (valid key lengths) or [B, T] (0 = masked), int32
 *   attention_bias [B|1, H|1, S, T] (added to the scores)
 *   past_key / past_value [B, H, P, dh|dv] -> present_key / present_value
 *   output [B, S, H*dv]; T = P + L
 * Attention (com.microsoft, 1), the packed-weight form:
 *   input [B, S, D], weights [D, Hq_total + Hk_total + Hv_total] (the
 *   qkv_hidden_sizes attribute, else three equal thirds), bias [same],
 *   mask_index [B] (key lengths, right padding), [B, T] 0/1, [B, S, T] 0/1
 *   or [B, 1, M, M] 0/1 (the top-left [S, T] block), attention_bias as above
 *   output [B, S, Hv_total]
 * Both: scale attribute (default 1/sqrt(dh)), unidirectional = causal with
 * the frontier at i + P. Masked keys get -inf where ONNX Runtime adds
 * mask_filter_value (-10000): the same result unless a row has no visible
 * key, which gives 0 here. */
#include "interp_internal.h"

#include <math.h>
#include <string.h>

/* One attention problem in double, heads split out. */
typedef struct msft_problem {
    int64_t B, H, S, L, P, T, dh, dv;
    double *q; /* [B, H, S, dh] */
    double *k; /* [B, H, T, dh] */
    double *v; /* [B, H, T, dv] */
    double scale;
    int causal;
    const tensor *lengths; /* [B] or NULL */
    const tensor *keymask; /* [B, T] or NULL */
    const tensor *qkmask;  /* [B, S, T] or [B, 1, M, M] or NULL */
    const tensor *bias4;   /* attention_bias or NULL */
} msft_problem;

static mha_status msft_alloc(interp_ctx *c, msft_problem *p) {
    size_t nq = (size_t)(p->B * p->H * p->S * p->dh), nk = (size_t)(p->B * p->H * p->T * p->dh);
    size_t nv = (size_t)(p->B * p->H * p->T * p->dv);
    p->q = mha_calloc(c->a, nq ? nq : 1, sizeof(double));
    p->k = mha_calloc(c->a, nk ? nk : 1, sizeof(double));
    p->v = mha_calloc(c->a, nv ? nv : 1, sizeof(double));
    if (!p->q || !p->k || !p->v) return interp_fail(c, MHA_ERR_NO_MEMORY, "out of memory");
    return MHA_OK;
}

static void msft_free(interp_ctx *c, msft_problem *p) {
    mha_free(c->a, p->q);
    mha_free(c->a, p->k);
    mha_free(c->a, p->v);
}

/* Whether key j is visible to query i of batch b, and the bias to add. */
static int msft_visible(const msft_problem *p, int64_t b, int64_t h, int64_t i, int64_t j,
                        double *bias) {
    *bias = 0.0;
    if (p->causal && j > i + p->P) return 0;
    if (p->lengths && j >= tensor_get_i64(p->lengths, b)) return 0;
    if (p->keymask && tensor_get_f64(p->keymask, b * p->T + j) == 0.0) return 0;
    if (p->qkmask) {
        const tensor *m = p->qkmask;
        int64_t off =
            m->rank == 3 ? (b * p->S + i) * p->T + j : (b * m->dims[2] + i) * m->dims[3] + j;
        if (tensor_get_f64(m, off) == 0.0) return 0;
    }
    if (p->bias4) {
        const tensor *ab = p->bias4;
        int64_t bb = ab->dims[0] == 1 ? 0 : b, hh = ab->dims[1] == 1 ? 0 : h;
        double x = tensor_get_f64(ab, ((bb * ab->dims[1] + hh) * p->S + i) * p->T + j);
        if (x == -INFINITY) return 0;
        *bias = x;
    }
    return 1;
}

/* output [B, S, H*dv] = softmax(scale q.k^T + bias, visible keys) v */
static mha_status msft_attend(interp_ctx *c, const msft_problem *p, tensor *out) {
    double *s = mha_calloc(c->a, (size_t)(p->T ? p->T : 1), sizeof(double));
    if (!s) return interp_fail(c, MHA_ERR_NO_MEMORY, "out of memory");
    for (int64_t b = 0; b < p->B; b++)
        for (int64_t h = 0; h < p->H; h++)
            for (int64_t i = 0; i < p->S; i++) {
                const double *qi = p->q + ((b * p->H + h) * p->S + i) * p->dh;
                double mx = -INFINITY;
                int live = 0;
                for (int64_t j = 0; j < p->T; j++) {
                    double bias;
                    if (!msft_visible(p, b, h, i, j, &bias)) {
                        s[j] = -INFINITY;
                        continue;
                    }
                    const double *kj = p->k + ((b * p->H + h) * p->T + j) * p->dh;
                    double dot = 0.0;
                    for (int64_t d = 0; d < p->dh; d++)
                        dot += qi[d] * kj[d];
                    s[j] = p->scale * dot + bias;
                    if (s[j] > mx) mx = s[j];
                    if (s[j] != -INFINITY) live = 1; /* NaN is live: never a masked row */
                }
                /* every key masked: 0; a NaN or +inf score: the row is NaN */
                double sum = 0.0;
                for (int64_t j = 0; j < p->T; j++) {
                    s[j] = s[j] == -INFINITY ? 0.0 : exp(s[j] - mx);
                    sum += s[j];
                }
                for (int64_t e = 0; e < p->dv; e++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < p->T; j++)
                        if (s[j] != 0.0)
                            acc += s[j] * p->v[((b * p->H + h) * p->T + j) * p->dv + e];
                    tensor_set_f64(out, (b * p->S + i) * (p->H * p->dv) + h * p->dv + e,
                                   live ? acc / sum : 0.0);
                }
            }
    mha_free(c->a, s);
    return MHA_OK;
}

/* x [B, n, H*d] (+ bias[off .. off + H*d)) -> dst [B, H, seq0 + n, d] rows
 * seq0.. */
static void msft_split(const tensor *x, const tensor *bias, int64_t off, int64_t B, int64_t H,
                       int64_t n, int64_t d, int64_t seq_total, int64_t seq0, double *dst) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < n; t++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t e = 0; e < d; e++) {
                    double v = tensor_get_f64(x, (b * n + t) * (H * d) + h * d + e);
                    if (bias) v += tensor_get_f64(bias, off + h * d + e);
                    dst[((b * H + h) * seq_total + seq0 + t) * d + e] = v;
                }
}

static mha_status msft_check_masks(interp_ctx *c, msft_problem *p, const tensor *kpm,
                                   const tensor *ab) {
    char s0[INTERP_SHAPE_BUF];
    if (kpm) {
        if (kpm->rank == 1 && kpm->dims[0] == p->B) {
            p->lengths = kpm;
        } else if (kpm->rank == 2 && kpm->dims[0] == p->B && kpm->dims[1] == p->T) {
            p->keymask = kpm;
        } else if (kpm->rank == 3 && kpm->dims[0] == p->B && kpm->dims[1] == p->S &&
                   kpm->dims[2] == p->T) {
            p->qkmask = kpm;
        } else if (kpm->rank == 4 && kpm->dims[0] == p->B && kpm->dims[1] == 1 &&
                   kpm->dims[2] >= p->S && kpm->dims[3] >= p->T && kpm->dims[2] == kpm->dims[3]) {
            p->qkmask = kpm;
        } else {
            return interp_fail(c, MHA_ERR_SHAPE,
                               "mask of shape %s is none of [B], [B, T], [B, S, T], "
                               "[B, 1, M, M] (B %lld, S %lld, T %lld)",
                               interp_shape(kpm, s0), (long long)p->B, (long long)p->S,
                               (long long)p->T);
        }
    }
    if (ab) {
        if (ab->rank != 4 || (ab->dims[0] != 1 && ab->dims[0] != p->B) ||
            (ab->dims[1] != 1 && ab->dims[1] != p->H) || ab->dims[2] != p->S || ab->dims[3] != p->T)
            return interp_fail(c, MHA_ERR_SHAPE,
                               "attention_bias of shape %s must be [B|1, H|1, %lld, %lld]",
                               interp_shape(ab, s0), (long long)p->S, (long long)p->T);
        p->bias4 = ab;
    }
    return MHA_OK;
}

mha_status interp_op_ms_multihead_attention(interp_ctx *c) {
    const tensor *Q, *K, *V;
    int64_t heads, causal;
    float scale;
    mha_status st = interp_check_arity(c, 3, 10, 1, 3);
    if (st == MHA_OK) st = interp_in_req(c, 0, &Q);
    if (st == MHA_OK) st = interp_in_req(c, 1, &K);
    if (st == MHA_OK) st = interp_in_req(c, 2, &V);
    if (st == MHA_OK) st = interp_attr_int(c, "num_heads", 0, &heads);
    if (st == MHA_OK) st = interp_attr_flag(c, "unidirectional", 0, &causal);
    if (st == MHA_OK) st = interp_attr_float(c, "scale", 0.0f, &scale);
    if (st != MHA_OK) return st;
    const tensor *bias = interp_in(c, 3), *kpm = interp_in(c, 4), *ab = interp_in(c, 5);
    const tensor *pk = interp_in(c, 6), *pv = interp_in(c, 7);
    char s0[INTERP_SHAPE_BUF], s1[INTERP_SHAPE_BUF], s2[INTERP_SHAPE_BUF];
    for (size_t k = 8; k < c->n_in; k++)
        if (interp_in(c, k))
            return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED, "input %zu is not supported", k);
    if (heads <= 0) return interp_fail(c, MHA_ERR_MODEL_FORMAT, "num_heads must be > 0");
    if (Q->rank != 3 || K->rank != 3 || V->rank != 3 || K->dims[0] != Q->dims[0] ||
        V->dims[0] != Q->dims[0] || V->dims[1] != K->dims[1] || Q->dims[2] % heads ||
        K->dims[2] != Q->dims[2] || V->dims[2] % heads || !interp_is_float(Q->dtype))
        return interp_fail(c, MHA_ERR_SHAPE,
                           "query %s, key %s, value %s must be float [B, S, H*d] with %lld "
                           "heads (packed forms are not supported)",
                           interp_shape(Q, s0), interp_shape(K, s1), interp_shape(V, s2),
                           (long long)heads);
    msft_problem p;
    memset(&p, 0, sizeof p);
    p.B = Q->dims[0], p.H = heads, p.S = Q->dims[1], p.L = K->dims[1];
    p.dh = Q->dims[2] / heads, p.dv = V->dims[2] / heads;
    if ((pk == NULL) != (pv == NULL))
        return interp_fail(c, MHA_ERR_MODEL_FORMAT, "past_key and past_value come together");
    if (pk) {
        if (pk->rank != 4 || pv->rank != 4 || pk->dims[0] != p.B || pk->dims[1] != p.H ||
            pk->dims[3] != p.dh || pv->dims[0] != p.B || pv->dims[1] != p.H ||
            pv->dims[2] != pk->dims[2] || pv->dims[3] != p.dv)
            return interp_fail(c, MHA_ERR_SHAPE, "past_key %s / past_value %s do not fit",
                               interp_shape(pk, s0), interp_shape(pv, s1));
        p.P = pk->dims[2];
    }
    p.T = p.P + p.L;
    if (bias && (bias->rank != 1 || bias->dims[0] != 2 * Q->dims[2] + V->dims[2]))
        return interp_fail(c, MHA_ERR_SHAPE, "bias %s must be [%lld]", interp_shape(bias, s0),
                           (long long)(2 * Q->dims[2] + V->dims[2]));
    p.scale = interp_has_attr(c, "scale") ? (double)scale : 1.0 / sqrt((double)p.dh);
    p.causal = causal != 0;
    st = msft_check_masks(c, &p, kpm, ab);
    if (st == MHA_OK) st = msft_alloc(c, &p);
    tensor *Y = NULL, *Kp = NULL, *Vp = NULL;
    int64_t yd[3] = {p.B, p.S, p.H * p.dv};
    int64_t kd[4] = {p.B, p.H, p.T, p.dh}, vd[4] = {p.B, p.H, p.T, p.dv};
    if (st == MHA_OK) st = interp_out_new(c, 0, Q->dtype, 3, yd, &Y);
    if (st == MHA_OK && c->n_out > 1 && c->out != NULL)
        st = interp_out_new(c, 1, Q->dtype, 4, kd, &Kp);
    if (st == MHA_OK && c->n_out > 2) st = interp_out_new(c, 2, Q->dtype, 4, vd, &Vp);
    if (st != MHA_OK) {
        msft_free(c, &p);
        return st;
    }
    msft_split(Q, bias, 0, p.B, p.H, p.S, p.dh, p.S, 0, p.q);
    for (int64_t i = 0; pk && i < p.B * p.H * p.P; i++) {
        int64_t b = i / (p.H * p.P), h = (i / p.P) % p.H, j = i % p.P;
        for (int64_t e = 0; e < p.dh; e++)
            p.k[((b * p.H + h) * p.T + j) * p.dh + e] = tensor_get_f64(pk, i * p.dh + e);
        for (int64_t e = 0; e < p.dv; e++)
            p.v[((b * p.H + h) * p.T + j) * p.dv + e] = tensor_get_f64(pv, i * p.dv + e);
    }
    msft_split(K, bias, Q->dims[2], p.B, p.H, p.L, p.dh, p.T, p.P, p.k);
    msft_split(V, bias, 2 * Q->dims[2], p.B, p.H, p.L, p.dv, p.T, p.P, p.v);
    st = msft_attend(c, &p, Y);
    for (int64_t i = 0; st == MHA_OK && Kp && i < p.B * p.H * p.T * p.dh; i++)
        tensor_set_f64(Kp, i, p.k[i]);
    for (int64_t i = 0; st == MHA_OK && Vp && i < p.B * p.H * p.T * p.dv; i++)
        tensor_set_f64(Vp, i, p.v[i]);
    msft_free(c, &p);
    return st;
}

mha_status interp_op_ms_attention(interp_ctx *c) {
    const tensor *X, *W;
    int64_t heads, causal;
    float scale;
    mha_status st = interp_check_arity(c, 2, 7, 1, 2);
    if (st == MHA_OK) st = interp_in_req(c, 0, &X);
    if (st == MHA_OK) st = interp_in_req(c, 1, &W);
    if (st == MHA_OK) st = interp_attr_int(c, "num_heads", 0, &heads);
    if (st == MHA_OK) st = interp_attr_flag(c, "unidirectional", 0, &causal);
    if (st == MHA_OK) st = interp_attr_float(c, "scale", 0.0f, &scale);
    if (st != MHA_OK) return st;
    const tensor *bias = interp_in(c, 2), *mask = interp_in(c, 3), *ab = interp_in(c, 5);
    char s0[INTERP_SHAPE_BUF], s1[INTERP_SHAPE_BUF];
    if (interp_in(c, 4) || interp_in(c, 6) || c->n_out > 1)
        return interp_fail(c, MHA_ERR_MODEL_UNSUPPORTED,
                           "past / present state and past_sequence_length are not supported");
    if (heads <= 0) return interp_fail(c, MHA_ERR_MODEL_FORMAT, "num_heads must be > 0");
    if (X->rank != 3 || W->rank != 2 || W->dims[0] != X->dims[2] || !interp_is_float(X->dtype))
        return interp_fail(c, MHA_ERR_SHAPE, "input %s and weights %s must be [B, S, D], [D, N]",
                           interp_shape(X, s0), interp_shape(W, s1));
    int64_t hq = W->dims[1] / 3, hk = hq, hv = W->dims[1] - 2 * hq;
    const ir_attr *sizes = NULL;
    for (size_t i = 0; i < c->n->n_attrs; i++)
        if (strcmp(c->n->attrs[i].name, "qkv_hidden_sizes") == 0) sizes = &c->n->attrs[i];
    if (sizes) {
        if (sizes->n != 3 || !sizes->ints)
            return interp_fail(c, MHA_ERR_MODEL_FORMAT, "qkv_hidden_sizes must have 3 values");
        hq = sizes->ints[0], hk = sizes->ints[1], hv = sizes->ints[2];
    }
    if (hq != hk || hq <= 0 || hv <= 0 || hq % heads || hv % heads || hq + hk + hv != W->dims[1])
        return interp_fail(c, MHA_ERR_SHAPE,
                           "weights %s do not split into Q, K, V widths %lld, %lld, %lld of %lld "
                           "heads",
                           interp_shape(W, s1), (long long)hq, (long long)hk, (long long)hv,
                           (long long)heads);
    if (bias && (bias->rank != 1 || bias->dims[0] != W->dims[1]))
        return interp_fail(c, MHA_ERR_SHAPE, "bias %s must be [%lld]", interp_shape(bias, s0),
                           (long long)W->dims[1]);
    msft_problem p;
    memset(&p, 0, sizeof p);
    p.B = X->dims[0], p.H = heads, p.S = X->dims[1], p.L = p.S, p.T = p.S;
    p.dh = hq / heads, p.dv = hv / heads;
    p.scale = interp_has_attr(c, "scale") ? (double)scale : 1.0 / sqrt((double)p.dh);
    p.causal = causal != 0;
    st = msft_check_masks(c, &p, mask, ab);
    if (st == MHA_OK) st = msft_alloc(c, &p);
    tensor *Y = NULL;
    int64_t yd[3] = {p.B, p.S, hv};
    if (st == MHA_OK) st = interp_out_new(c, 0, X->dtype, 3, yd, &Y);
    if (st != MHA_OK) {
        msft_free(c, &p);
        return st;
    }
    /* the projections: column n of X . W + bias, split into Q | K | V */
    const int64_t N = W->dims[1], D = X->dims[2];
    for (int64_t r = 0; r < p.B * p.S; r++) {
        int64_t b = r / p.S, t = r % p.S;
        for (int64_t n = 0; n < N; n++) {
            double acc = bias ? tensor_get_f64(bias, n) : 0.0;
            for (int64_t k = 0; k < D; k++)
                acc += tensor_get_f64(X, r * D + k) * tensor_get_f64(W, k * N + n);
            int64_t part = n < hq ? 0 : n < hq + hk ? 1 : 2;
            int64_t col = n - (part == 0 ? 0 : part == 1 ? hq : hq + hk);
            int64_t d = part == 2 ? p.dv : p.dh, h = col / d, e = col % d;
            double *dst = part == 0 ? p.q : part == 1 ? p.k : p.v;
            dst[((b * p.H + h) * p.S + t) * d + e] = acc;
        }
    }
    st = msft_attend(c, &p, Y);
    msft_free(c, &p);
    return st;
}
