/* recognize_map.c -- phase 3 of the layer recogniser: with the graph
 * evaluated on a probe input (recognize_eval.c), give the chains found by
 * recognize_graph.c their meaning by re-running them on index tensors.
 *
 * The idea, for the Q side (K, V and the output are the same):
 *
 *   X       graph input [B, S, D]     element = its own flat index
 *   X'      = xchain(X)               each row must be one whole row of X:
 *                                     row r of X' is token xrow[r] = b*S + s
 *   P       projection output [.., N] element (r, c) = xrow[r] * N + c
 *   Q_op    = qchain(P)               the core's Q operand
 *
 * Reading Q_op through the core's view (slot n, row i, feature d) gives for
 * every slot its batch item, checks that row i is token i, and gives the
 * projection column col[n][d] feeding feature d of that slot. The output
 * side runs the other way: O[n, i, e] numbered by flat index, pushed through
 * ochain to the output projection input Z, tells which Z column holds
 * feature e of slot n and which token each Z row is; Y pushed to the graph
 * output checks the rows land on [b, s] in order. Heads are the slots that
 * share their output columns; their Q/K/V columns become the layer's
 * weights in standard order. */
#include "recognize_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- small helpers ---- */

static const char *rz_core_desc(const rz_ctx *z, char *buf, size_t size) {
    return rz_node_desc(z, z->core.node, buf, size);
}

static mha_status rz_unsupported(rz_ctx *z, const char *fmt, ...) MHA_PRINTF(2, 3);
static mha_status rz_unsupported(rz_ctx *z, const char *fmt, ...) {
    char d[160], msg[360];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED, "%s: %s", rz_core_desc(z, d, sizeof d), msg);
}

static int64_t rz_prod(const int64_t *d, int n) {
    int64_t p = 1;
    for (int i = 0; i < n; i++)
        p *= d[i];
    return p;
}

/* Whether t's trailing axes multiply to exactly n (a matrix of rows by n
 * columns in flat order: [.., n] or an Einsum's [.., heads, d]). */
static int rz_trailing_is(const tensor *t, int64_t n) {
    if (!t || t->rank < 1 || n <= 0) return 0;
    int64_t p = 1;
    for (int ax = t->rank - 1; ax >= 0 && p < n; ax--)
        p *= t->dims[ax];
    return p == n;
}

/* A tensor shaped like `like` whose elements are their own flat indices. */
static mha_status rz_index_tensor(rz_ctx *z, const tensor *like, tensor **out) {
    mha_status st = tensor_new(z->a, MHA_DTYPE_INT64, like->rank, like->dims, out, z->err);
    if (st != MHA_OK) return st;
    int64_t *p = (*out)->data;
    for (int64_t i = 0, n = tensor_numel(*out); i < n; i++)
        p[i] = i;
    return MHA_OK;
}

/* The past of a KV cache step as indices: element i holds -1 - i, so that
 * a traced operand tells the cached rows (negative) from the new ones. */
static mha_status rz_past_index_tensor(rz_ctx *z, const ir_node *n, tensor **out) {
    const tensor *past = rz_val(z, n->inputs[0]);
    *out = NULL;
    if (!past) return mha_fail(z->err, MHA_ERR_INTERNAL, "tracing a cache: no probe value");
    mha_status st = tensor_new(z->a, MHA_DTYPE_INT64, past->rank, past->dims, out, z->err);
    if (st != MHA_OK) return st;
    int64_t *p = (*out)->data;
    for (int64_t i = 0, n_el = tensor_numel(*out); i < n_el; i++)
        p[i] = -1 - i;
    return MHA_OK;
}

/* Re-runs the layout steps of ch on `src` (consumed). */
static mha_status rz_chain_eval(rz_ctx *z, const rz_chain *ch, tensor *src, tensor **out) {
    *out = NULL;
    tensor *cur = src;
    mha_status st = MHA_OK;
    for (int s = 0; s < ch->n && st == MHA_OK; s++) {
        const rz_step *step = &ch->steps[s];
        if (step->kind != RZ_STEP_LAYOUT && step->kind != RZ_STEP_CACHE) continue;
        const ir_node *n = &z->g->nodes[step->node];
        tensor **in = mha_calloc(z->a, n->n_inputs ? n->n_inputs : 1, sizeof *in);
        tensor **outs = mha_calloc(z->a, n->n_outputs ? n->n_outputs : 1, sizeof *outs);
        tensor *past = NULL;
        if (!in || !outs) {
            st = mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory tracing a chain");
        } else {
            if (step->kind == RZ_STEP_CACHE) st = rz_past_index_tensor(z, n, &past);
            for (size_t k = 0; k < n->n_inputs; k++)
                in[k] = (int)k == step->data_in ? cur
                        : past && k == 0        ? past
                        : n->inputs[k] >= 0     ? z->probe[n->inputs[k]]
                                                : NULL;
            if (st == MHA_OK) st = interp_eval_node(z->a, z->g, n, in, outs, z->err);
        }
        tensor_free(past);
        tensor_free(cur);
        cur = NULL;
        if (st == MHA_OK) {
            cur = outs[step->data_out];
            outs[step->data_out] = NULL;
        }
        if (outs)
            for (size_t k = 0; k < n->n_outputs; k++)
                tensor_free(outs[k]);
        mha_free(z->a, in);
        mha_free(z->a, outs);
    }
    if (st != MHA_OK) {
        tensor_free(cur);
        return st;
    }
    const tensor *want = rz_val(z, ch->dst);
    if (!cur || !want || cur->rank != want->rank ||
        memcmp(cur->dims, want->dims, sizeof(int64_t) * (size_t)want->rank) != 0) {
        tensor_free(cur);
        return mha_fail(z->err, MHA_ERR_INTERNAL,
                        "tracing '%s': the index tensor ends with another shape than the "
                        "graph's value",
                        z->g->values[ch->dst].name);
    }
    *out = cur;
    return MHA_OK;
}

/* ---- projection weights ---- */

typedef struct rz_side {
    float *w, *b; /* projection weight [din, n] row-major, bias [n] or NULL */
    int64_t din, n;
    double factor;      /* product of the scalar factors on the chain */
    int64_t width;      /* features per slot (d_head / d_head_v) */
    int64_t *col;       /* [n_slots * width] */
    int64_t *bat;       /* [n_slots] */
    int64_t seq;        /* tokens of the input it reads */
    int64_t past;       /* KV cache: the operand's first `past` rows are the cache's */
    int64_t *past_head; /* [n_slots] KV cache: the head of the past input a slot reads */
    rz_qkn qkn;         /* Q or K: a norm before the rotary (qkn.w NULL: none) */
} rz_side;

static void rz_side_free(rz_ctx *z, rz_side *s) {
    mha_free(z->a, s->w);
    mha_free(z->a, s->b);
    mha_free(z->a, s->col);
    mha_free(z->a, s->bat);
    mha_free(z->a, s->past_head);
    rz_qknorm_free(z, &s->qkn);
    memset(s, 0, sizeof *s);
}

/* The identity weights [dz, dz] of an output side without a projection,
 * dz the merged heads' width (the last axis of its value). */
static mha_status rz_identity_weights(rz_ctx *z, const rz_proj *p, rz_side *s) {
    const tensor *Z = rz_val(z, p->in_v);
    if (!Z || Z->rank < 1 || Z->dims[Z->rank - 1] <= 0)
        return rz_unsupported(z, "the attention output '%s' has no width",
                              rz_value_name(z, p->in_v));
    s->din = s->n = Z->dims[Z->rank - 1];
    s->w = mha_calloc(z->a, rz_count(s->din * s->n), sizeof(float));
    if (!s->w) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory copying weights");
    for (int64_t i = 0; i < s->din; i++)
        s->w[i * s->n + i] = 1.0f;
    return MHA_OK;
}

static mha_status rz_proj_weights(rz_ctx *z, const rz_proj *p, const char *what, rz_side *s) {
    if (p->identity) return rz_identity_weights(z, p, s);
    const ir_node *n = &z->g->nodes[p->node];
    const tensor *W = rz_val(z, p->w_v);
    char d[160];
    /* an Einsum projection's weight is a matrix of its first k axes by the
     * rest (row-major data as it is) */
    const int ek = rz_einsum_proj_k(z, n);
    if (!W || W->dtype != MHA_DTYPE_FLOAT32 || (ek ? W->rank <= ek : W->rank != 2))
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s (%s projection): the weight must be a float32 matrix",
                        rz_node_desc(z, p->node, d, sizeof d), what);
    int gemm = rz_is_op(n, "Gemm");
    int transB = gemm && ir_attr_int(n, "transB", 0) != 0;
    double alpha = gemm ? ir_attr_float(n, "alpha", 1.0f) : 1.0;
    double beta = gemm ? ir_attr_float(n, "beta", 1.0f) : 1.0;
    if (p->bias_node >= 0) beta = 1.0;
    s->din = transB ? W->dims[1] : W->dims[0];
    s->n = transB ? W->dims[0] : W->dims[1];
    if (ek) {
        s->din = rz_prod(W->dims, ek);
        s->n = rz_prod(W->dims + ek, W->rank - ek);
    }
    if (s->din <= 0 || s->n <= 0)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s (%s projection): the weight is empty",
                        rz_node_desc(z, p->node, d, sizeof d), what);
    s->w = mha_calloc(z->a, rz_count(s->din * s->n), sizeof(float));
    if (!s->w) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory copying weights");
    const float *src = W->data;
    for (int64_t r = 0; r < s->din; r++)
        for (int64_t c = 0; c < s->n; c++)
            s->w[r * s->n + c] =
                (float)(alpha * (transB ? src[c * s->din + r] : src[r * s->n + c]));
    if (p->b_v < 0) return MHA_OK;
    const tensor *bt = rz_val(z, p->b_v);
    /* [n], or shaped like an Einsum projection's trailing output axes */
    int ok = bt && bt->dtype == MHA_DTYPE_FLOAT32 && bt->rank >= 1 &&
             (bt->dims[bt->rank - 1] == s->n || ek) && tensor_numel(bt) == s->n;
    if (!ok)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s (%s projection): the bias must be float32 with %lld values along "
                        "the last axis",
                        rz_node_desc(z, p->bias_node >= 0 ? p->bias_node : p->node, d, sizeof d),
                        what, (long long)s->n);
    s->b = mha_calloc(z->a, (size_t)s->n, sizeof(float));
    if (!s->b) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory copying a bias");
    for (int64_t c = 0; c < s->n; c++)
        s->b[c] = (float)(beta * ((const float *)bt->data)[c]);
    return MHA_OK;
}

/* Rows of the projection input: which token of graph input X each is. */
static mha_status rz_token_rows(rz_ctx *z, const rz_proj *p, const char *what, rz_side *s,
                                int64_t **xrow, int64_t *n_rows) {
    *xrow = NULL;
    int xv = z->g->inputs[p->x_input];
    const tensor *X = rz_val(z, xv);
    char d[160];
    if (!X || X->rank != 3 || X->dims[2] != s->din || X->dtype != MHA_DTYPE_FLOAT32 ||
        X->dims[0] <= 0 || X->dims[1] <= 0)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s (%s projection): input '%s' must be float32 [batch, seq, %lld]",
                        rz_node_desc(z, p->node, d, sizeof d), what, z->g->values[xv].name,
                        (long long)s->din);
    s->seq = X->dims[1];
    tensor *enc = NULL, *xp = NULL;
    mha_status st = rz_index_tensor(z, X, &enc);
    if (st == MHA_OK) st = rz_chain_eval(z, &p->xchain, enc, &xp);
    if (st != MHA_OK) return st;
    int64_t R = tensor_numel(xp) / s->din;
    if (xp->rank < 1 || xp->dims[xp->rank - 1] != s->din) {
        tensor_free(xp);
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s (%s projection): its input rows are not the feature rows of '%s'",
                        rz_node_desc(z, p->node, d, sizeof d), what, z->g->values[xv].name);
    }
    int64_t *rows = mha_calloc(z->a, (size_t)(R ? R : 1), sizeof *rows);
    if (!rows) {
        tensor_free(xp);
        return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    }
    const int64_t *e = xp->data;
    for (int64_t r = 0; r < R && st == MHA_OK; r++) {
        int64_t t = e[r * s->din] / s->din;
        rows[r] = t;
        for (int64_t k = 0; k < s->din; k++)
            if (e[r * s->din + k] != t * s->din + k) {
                st = mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                              "%s (%s projection): its input mixes the features of '%s'",
                              rz_node_desc(z, p->node, d, sizeof d), what, z->g->values[xv].name);
                break;
            }
    }
    tensor_free(xp);
    if (st != MHA_OK) {
        mha_free(z->a, rows);
        return st;
    }
    *xrow = rows;
    *n_rows = R;
    return MHA_OK;
}

/* K or V given in head layout X [B, H, S, d] (no projection): numbered as
 * the output of an identity projection of rows (b, s) and columns h * d + c
 * would be, so that the tracing below reads heads and tokens as for a
 * projected side. *enc is shaped like X. */
static mha_status rz_given_side(rz_ctx *z, const rz_proj *p, const char *what, rz_side *s,
                                tensor **enc) {
    const tensor *X = rz_val(z, p->out_v);
    if (!X || X->rank != 4 || X->dtype != MHA_DTYPE_FLOAT32 || tensor_numel(X) <= 0)
        return rz_unsupported(z, "the %s input '%s' is not float32 [batch, heads, seq, d]", what,
                              z->g->values[p->out_v].name);
    const int64_t Bn = X->dims[0], Hn = X->dims[1], Sn = X->dims[2], dn = X->dims[3];
    s->din = s->n = Hn * dn;
    s->seq = Sn;
    s->w = mha_calloc(z->a, rz_count(s->n * s->n), sizeof(float));
    if (!s->w) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    for (int64_t c = 0; c < s->n; c++)
        s->w[c * s->n + c] = 1.0f;
    mha_status st = tensor_new(z->a, MHA_DTYPE_INT64, 4, X->dims, enc, z->err);
    if (st != MHA_OK) return st;
    int64_t *e = (*enc)->data;
    for (int64_t b = 0; b < Bn; b++)
        for (int64_t h = 0; h < Hn; h++)
            for (int64_t t = 0; t < Sn; t++)
                for (int64_t c = 0; c < dn; c++)
                    e[((b * Hn + h) * Sn + t) * dn + c] = (b * Sn + t) * s->n + h * dn + c;
    return MHA_OK;
}

/* Row r < s->past of an operand read through a KV cache: element v of the
 * traced operand must be -1 - i for the past element i = [b, g, r, c] (the
 * same row and feature), of one batch item and head per slot. */
static mha_status rz_trace_past(rz_ctx *z, const tensor *past, const char *what, int64_t v,
                                int64_t n, int64_t r, int64_t c, int64_t *past_bat, rz_side *s) {
    const int64_t H = past->dims[1], P = past->dims[2], d = past->dims[3];
    const int64_t i = -1 - v;
    if (v >= 0 || i >= tensor_numel(past) || (i / d) % P != r || i % d != c)
        return rz_unsupported(z,
                              "the %s operand does not read the cache input's row %lld, feature "
                              "%lld in place ([batch, kv_heads, past, d_head] expected)",
                              what, (long long)r, (long long)c);
    const int64_t g = (i / (d * P)) % H, b = i / (d * P * H);
    if (r == 0 && c == 0) {
        s->past_head[n] = g;
        past_bat[n] = b;
    } else if (s->past_head[n] != g || past_bat[n] != b) {
        return rz_unsupported(z, "the %s operand mixes heads of the cache input in one head", what);
    }
    return MHA_OK;
}

/* A norm on the side (0 Q, 1 K) before the rotary: the chain's steps
 * below it run on a copy of the projection's index tensor enc, numbering
 * the norm's input by projection columns and tokens, then the norm is read
 * (recognize_qknorm.c). */
static mha_status rz_trace_norm(rz_ctx *z, int side, const rz_chain *ch, const tensor *enc,
                                rz_side *s) {
    rz_chain lower = *ch;
    lower.n = z->core.qkn_lower[side];
    lower.dst = z->core.qkn_x[side];
    tensor *copy = NULL, *xi = NULL;
    mha_status st = tensor_new(z->a, MHA_DTYPE_INT64, enc->rank, enc->dims, &copy, z->err);
    if (st != MHA_OK) return st;
    memcpy(copy->data, enc->data, (size_t)tensor_numel(enc) * sizeof(int64_t));
    st = rz_chain_eval(z, &lower, copy, &xi);
    if (st != MHA_OK) return st;
    return rz_qknorm_fit(z, side, xi, s->n, &s->qkn);
}

/* Traces one input side (Q, K or V) into s->col / s->bat through view vw;
 * with a KV cache (cache_side 0 for K, 1 for V; else -1), its rows come
 * after the cache's. norm_side: 0 (Q) or 1 (K) when a norm sits on the
 * side before the rotary, else -1. */
static mha_status rz_trace_side(rz_ctx *z, const rz_proj *p, const rz_chain *ch, const rz_view *vw,
                                const char *what, int cache_side, int norm_side, rz_side *s) {
    tensor *enc = NULL, *op = NULL;
    mha_status st = p->given ? rz_given_side(z, p, what, s, &enc) : rz_proj_weights(z, p, what, s);
    if (st == MHA_OK) st = rz_chain_factor(z, ch, &s->factor);
    if (st != MHA_OK) {
        tensor_free(enc);
        return st;
    }
    if (p->given && norm_side >= 0) {
        tensor_free(enc);
        return rz_unsupported(z, "a norm on the %s input given in head layout", what);
    }
    if (p->given) {
        st = rz_chain_eval(z, ch, enc, &op);
    } else {
        int64_t *xrow = NULL, R = 0;
        st = rz_token_rows(z, p, what, s, &xrow, &R);
        if (st != MHA_OK) return st;
        const tensor *P = rz_val(z, p->out_v);
        if (!P || !rz_trailing_is(P, s->n) || tensor_numel(P) != R * s->n) {
            mha_free(z->a, xrow);
            return rz_unsupported(z, "the %s projection output has an unexpected shape", what);
        }
        st = tensor_new(z->a, MHA_DTYPE_INT64, P->rank, P->dims, &enc, z->err);
        if (st == MHA_OK) {
            int64_t *e = enc->data;
            for (int64_t r = 0; r < R; r++)
                for (int64_t c = 0; c < s->n; c++)
                    e[r * s->n + c] = xrow[r] * s->n + c;
            if (norm_side >= 0) st = rz_trace_norm(z, norm_side, ch, enc, s);
            if (st == MHA_OK)
                st = rz_chain_eval(z, ch, enc, &op); /* takes enc */
            else
                tensor_free(enc);
        }
        mha_free(z->a, xrow);
    }
    if (st != MHA_OK) return st;
    const tensor *past = cache_side >= 0 ? rz_val(z, z->core.past_v[cache_side]) : NULL;
    s->past = past ? z->P : 0;
    s->width = vw->cols;
    s->col = mha_calloc(z->a, (size_t)(vw->n_slots * vw->cols), sizeof *s->col);
    s->bat = mha_calloc(z->a, (size_t)vw->n_slots, sizeof *s->bat);
    s->past_head = mha_calloc(z->a, rz_count(vw->n_slots), sizeof *s->past_head);
    int64_t *past_bat = mha_calloc(z->a, rz_count(vw->n_slots), sizeof *past_bat);
    if (!s->col || !s->bat || !s->past_head || !past_bat) {
        tensor_free(op);
        mha_free(z->a, past_bat);
        return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    }
    if (vw->rows != s->seq + s->past || (past && (past->rank != 4 || past->dims[2] != s->past))) {
        tensor_free(op);
        mha_free(z->a, past_bat);
        return rz_unsupported(z, "the %s operand has %lld rows for %lld tokens and %lld cached",
                              what, (long long)vw->rows, (long long)s->seq, (long long)s->past);
    }
    const int64_t r0 = s->past; /* the first new row */
    const int64_t *e = op->data;
    int64_t numel = tensor_numel(op);
    for (int64_t n = 0; n < vw->n_slots && st == MHA_OK; n++)
        for (int64_t r = 0; r < vw->rows && st == MHA_OK; r++)
            for (int64_t c = 0; c < vw->cols; c++) {
                int64_t idx = vw->base[n] + r * vw->s_row + c * vw->s_col;
                if (idx < 0 || idx >= numel) {
                    st = rz_unsupported(z, "the %s operand view is out of range", what);
                    break;
                }
                int64_t v = e[idx];
                if (r < r0) {
                    st = rz_trace_past(z, past, what, v, n, r, c, past_bat, s);
                    if (st != MHA_OK) break;
                    continue;
                }
                if (v < 0) {
                    st = rz_unsupported(z, "the %s operand reads the cache after the new rows",
                                        what);
                    break;
                }
                int64_t tok = v / s->n, col = v % s->n;
                int64_t b = tok / s->seq, pos = tok % s->seq;
                if (pos != r - r0) {
                    st = rz_unsupported(z,
                                        "the %s operand reorders tokens (row %lld holds "
                                        "token %lld)",
                                        what, (long long)r, (long long)pos);
                    break;
                }
                if (r == r0 && c == 0)
                    s->bat[n] = b;
                else if (s->bat[n] != b) {
                    st = rz_unsupported(z,
                                        "the %s operand mixes batch items %lld and %lld in "
                                        "one head",
                                        what, (long long)s->bat[n], (long long)b);
                    break;
                }
                if (r == r0)
                    s->col[n * vw->cols + c] = col;
                else if (s->col[n * vw->cols + c] != col) {
                    st = rz_unsupported(z,
                                        "the %s operand takes different projection columns "
                                        "for different tokens (%lld, %lld)",
                                        what, (long long)s->col[n * vw->cols + c], (long long)col);
                    break;
                }
            }
    for (int64_t n = 0; n < vw->n_slots && st == MHA_OK && r0 > 0; n++)
        if (past_bat[n] != s->bat[n])
            st = rz_unsupported(z, "the %s operand reads the cache of batch item %lld for %lld",
                                what, (long long)past_bat[n], (long long)s->bat[n]);
    mha_free(z->a, past_bat);
    tensor_free(op);
    return st;
}

/* ---- views of the core ---- */

static void rz_view_free(rz_ctx *z, rz_view *v) {
    mha_free(z->a, v->base);
    v->base = NULL;
}

static mha_status rz_view_alloc(rz_ctx *z, rz_view *v, int64_t n_slots) {
    v->n_slots = n_slots;
    v->base = mha_calloc(z->a, (size_t)(n_slots ? n_slots : 1), sizeof *v->base);
    if (!v->base) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    return MHA_OK;
}

/* Matrix offsets of operand t for every batch index of the broadcast batch
 * shape bs[0..nb) (numpy broadcasting, as MatMul does). */
static int rz_bcast_bases_numpy(const tensor *t, const int64_t *bs, int nb, int64_t mat,
                                int64_t *base);

/* As numpy broadcasting, or -- when t's batch axes hold exactly the slots
 * in another grouping ([B*H] against [B, H]: the scores of a baddbmm next
 * to the P.V of 4-D heads) -- slot n at matrix n. */
static int rz_bcast_bases(const tensor *t, const int64_t *bs, int nb, int64_t mat, int64_t *base) {
    if (rz_bcast_bases_numpy(t, bs, nb, mat, base)) return 1;
    const int64_t n_slots = rz_prod(bs, nb);
    if (t->rank < 2 || rz_prod(t->dims, t->rank - 2) != n_slots) return 0;
    for (int64_t n = 0; n < n_slots; n++)
        base[n] = n * mat;
    return 1;
}

static int rz_bcast_bases_numpy(const tensor *t, const int64_t *bs, int nb, int64_t mat,
                                int64_t *base) {
    int tb = t->rank - 2;
    if (tb > nb) return 0;
    int64_t n_slots = rz_prod(bs, nb);
    for (int64_t n = 0; n < n_slots; n++) {
        int64_t rem = n, off = 0, stride = 1;
        for (int ax = nb - 1; ax >= 0; ax--) {
            int64_t idx = rem % bs[ax];
            rem /= bs[ax];
            int tax = ax - (nb - tb);
            if (tax < 0) continue;
            int64_t dim = t->dims[tax];
            if (dim != 1 && dim != bs[ax]) return 0;
            if (dim != 1) off += idx * stride;
            stride *= dim;
        }
        base[n] = off * mat;
    }
    return 1;
}

typedef struct rz_views {
    rz_view q, k, v, o;
    int64_t dh, dv;
} rz_views;

static void rz_views_free(rz_ctx *z, rz_views *vs) {
    rz_view_free(z, &vs->q);
    rz_view_free(z, &vs->k);
    rz_view_free(z, &vs->v);
    rz_view_free(z, &vs->o);
}

/* Stride of letter ch in tensor t whose axes are `letters` (0 if absent:
 * an Einsum operand without a batch letter is shared along it). */
static int64_t rz_letter_stride(const tensor *t, const char *letters, char ch) {
    const char *at = strchr(letters, ch);
    if (!at || ch == '\0') return 0;
    int64_t st = 1;
    for (int ax = t->rank - 1; ax > (int)(at - letters); ax--)
        st *= t->dims[ax];
    return st;
}

/* The one letter of `a` that is not in `b`, or 0 if not exactly one. */
static char rz_letter_apart(const char *a, const char *b) {
    char found = 0;
    for (const char *p = a; *p; p++)
        if (!strchr(b, *p)) {
            if (found) return 0;
            found = *p;
        }
    return found;
}

/* Views of an Einsum core: the scores S = einsum(Q, K) end with (query,
 * key) axes, their other axes are the slots; P.V = einsum(P, V) names P's
 * axes with its own letters. Every operand is read through the strides of
 * its letters. */
static mha_status rz_einsum_views(rz_ctx *z, rz_views *vs) {
    const rz_core *c = &z->core;
    const ir_node *qk = &z->g->nodes[c->score_mm], *pv = &z->g->nodes[c->pv_mm];
    interp_einsum es, ep;
    if (!rz_einsum_of(qk, &es) || !rz_einsum_of(pv, &ep))
        return rz_unsupported(z, "Q.K^T and P.V must both be MatMul or both Einsum");
    const tensor *Q = rz_val(z, c->q_v), *K = rz_val(z, c->k_v), *V = rz_val(z, c->v_v);
    const tensor *S = rz_val(z, qk->outputs[0]), *O = rz_val(z, c->o_v);
    const int qi = qk->inputs[0] == c->q_v ? 0 : 1, vi = pv->inputs[0] == c->v_v ? 0 : 1;
    const char *lq = es.in[qi], *lk = es.in[1 - qi], *ls = es.out;
    const char *lp = ep.in[1 - vi], *lv = ep.in[vi], *lo = ep.out;
    const int rs = es.rank_out;
    char ck = rz_letter_apart(lq, ls); /* the contracted head feature */
    char fv = rz_letter_apart(lv, lp); /* V's feature */
    int ok = Q && K && V && S && O && rs >= 2 && S->rank == rs && ep.rank_in[1 - vi] == rs && ck &&
             fv && strchr(lk, ck) && !strchr(lq, ls[rs - 1]) && !strchr(lk, ls[rs - 2]) &&
             strchr(lq, ls[rs - 2]) && strchr(lk, ls[rs - 1]) && strchr(lv, lp[rs - 1]) &&
             strchr(lo, lp[rs - 2]) && strchr(lo, fv) && !strchr(lo, lp[rs - 1]);
    for (int a = 0; ok && a < rs - 2; a++) /* slot letters reach the output */
        ok = strchr(lo, lp[a]) != NULL;
    if (!ok)
        return rz_unsupported(z, "the Einsum equations '%s' and '%s' are not Q.K^T and P.V", ls,
                              lo);
    const int64_t Sq = S->dims[rs - 2], Skv = S->dims[rs - 1];
    vs->dh = Q->dims[strchr(lq, ck) - lq];
    vs->dv = V->dims[strchr(lv, fv) - lv];
    int64_t n_slots = rz_prod(S->dims, rs - 2);
    rz_view *views[4] = {&vs->q, &vs->k, &vs->v, &vs->o};
    mha_status st = MHA_OK;
    for (int i = 0; i < 4 && st == MHA_OK; i++)
        st = rz_view_alloc(z, views[i], n_slots);
    if (st != MHA_OK) return st;
    vs->q.rows = Sq, vs->q.cols = vs->dh;
    vs->q.s_row = rz_letter_stride(Q, lq, ls[rs - 2]), vs->q.s_col = rz_letter_stride(Q, lq, ck);
    vs->k.rows = Skv, vs->k.cols = vs->dh;
    vs->k.s_row = rz_letter_stride(K, lk, ls[rs - 1]), vs->k.s_col = rz_letter_stride(K, lk, ck);
    vs->v.rows = Skv, vs->v.cols = vs->dv;
    vs->v.s_row = rz_letter_stride(V, lv, lp[rs - 1]), vs->v.s_col = rz_letter_stride(V, lv, fv);
    vs->o.rows = Sq, vs->o.cols = vs->dv;
    vs->o.s_row = rz_letter_stride(O, lo, lp[rs - 2]), vs->o.s_col = rz_letter_stride(O, lo, fv);
    for (int64_t n = 0; n < n_slots; n++) {
        int64_t rem = n;
        for (int a = rs - 3; a >= 0; a--) {
            int64_t idx = rem % S->dims[a];
            rem /= S->dims[a];
            vs->q.base[n] += idx * rz_letter_stride(Q, lq, ls[a]);
            vs->k.base[n] += idx * rz_letter_stride(K, lk, ls[a]);
            vs->v.base[n] += idx * rz_letter_stride(V, lv, lp[a]);
            vs->o.base[n] += idx * rz_letter_stride(O, lo, lp[a]);
        }
    }
    return MHA_OK;
}

static mha_status rz_softmax_views(rz_ctx *z, rz_views *vs) {
    const rz_core *c = &z->core;
    if (rz_is_op(&z->g->nodes[c->score_mm], "Einsum") || rz_is_op(&z->g->nodes[c->pv_mm], "Einsum"))
        return rz_einsum_views(z, vs);
    const tensor *A = rz_val(z, c->q_v), *Bm = rz_val(z, c->k_v), *V = rz_val(z, c->v_v);
    const tensor *S = rz_val(z, z->g->nodes[c->score_mm].outputs[0]), *O = rz_val(z, c->o_v);
    if (!A || !Bm || !V || !S || !O || A->rank < 2 || Bm->rank < 2 || V->rank < 2 || S->rank < 2 ||
        O->rank < 2)
        return rz_unsupported(z, "the attention MatMuls need operands of rank 2 or more");
    /* scores of folded heads [B*H, Sq, Skv] may meet P.V of [B, H, ..]
     * (GPT-NeoX's baddbmm): the slots are the wider grouping's */
    const tensor *grouping = O->rank > S->rank ? O : S;
    if (O->rank != S->rank && rz_prod(O->dims, O->rank - 2) != rz_prod(S->dims, S->rank - 2))
        return rz_unsupported(z, "%s broadcasts the probabilities to more heads", "the P.V MatMul");
    /* the scores may be reshaped on their way (flat order kept): the
     * Softmax must still run over whole rows of keys */
    const ir_node *sm = &z->g->nodes[c->node];
    const tensor *SI = rz_val(z, sm->inputs[0]);
    int64_t axis = ir_attr_int(sm, "axis", z->g->opset >= 13 ? -1 : 1);
    if (!SI || SI->rank < 1) return rz_unsupported(z, "the Softmax input has no shape");
    if (axis < 0) axis += SI->rank;
    if (axis != SI->rank - 1 || SI->dims[SI->rank - 1] != S->dims[S->rank - 1] ||
        tensor_numel(SI) != tensor_numel(S))
        return rz_unsupported(z,
                              "%s over axis %lld of rank %lld scores: only the last axis "
                              "(the keys) is supported",
                              "Softmax", (long long)axis, (long long)SI->rank);
    int nb = grouping->rank - 2;
    const int64_t *bs = grouping->dims;
    if (O->rank == S->rank && memcmp(O->dims, S->dims, sizeof(int64_t) * (size_t)nb) != 0)
        return rz_unsupported(z, "%s broadcasts the probabilities to more heads", "the P.V MatMul");
    /* FusedMatMul: op(A) and op(B) swap their last two axes where transA /
     * transB say (transBatchA / B, which move the batch axes, are not read) */
    const ir_node *qk = &z->g->nodes[c->score_mm];
    const int fused = rz_is_fused_matmul(qk);
    const int ta = fused && ir_attr_int(qk, "transA", 0) != 0;
    const int tb = fused && ir_attr_int(qk, "transB", 0) != 0;
    if (fused && (ir_attr_int(qk, "transBatchA", 0) || ir_attr_int(qk, "transBatchB", 0)))
        return rz_unsupported(z, "FusedMatMul with transBatchA / transBatchB on the scores is not "
                                 "supported");
    int64_t Sq = S->dims[S->rank - 2], Skv = S->dims[S->rank - 1];
    vs->dh = A->dims[A->rank - (ta ? 2 : 1)];
    vs->dv = V->dims[V->rank - 1];
    int64_t n_slots = rz_prod(bs, nb);
    mha_status st = MHA_OK;
    rz_view *views[4] = {&vs->q, &vs->k, &vs->v, &vs->o};
    for (int i = 0; i < 4 && st == MHA_OK; i++)
        st = rz_view_alloc(z, views[i], n_slots);
    if (st != MHA_OK) return st;
    /* Q_h [.., Sq, dh]; K_h^T [.., dh, Skv] read as (slot, key j, feature d);
     * V_h [.., Skv, dv]; O [.., Sq, dv]. */
    vs->q.rows = Sq, vs->q.cols = vs->dh, vs->q.s_row = ta ? 1 : vs->dh, vs->q.s_col = ta ? Sq : 1;
    vs->k.rows = Skv, vs->k.cols = vs->dh, vs->k.s_row = tb ? vs->dh : 1;
    vs->k.s_col = tb ? 1 : Skv;
    vs->v.rows = Skv, vs->v.cols = vs->dv, vs->v.s_row = vs->dv, vs->v.s_col = 1;
    vs->o.rows = Sq, vs->o.cols = vs->dv, vs->o.s_row = vs->dv, vs->o.s_col = 1;
    int ok = rz_bcast_bases(A, bs, nb, Sq * vs->dh, vs->q.base) &&
             rz_bcast_bases(Bm, bs, nb, vs->dh * Skv, vs->k.base) &&
             rz_bcast_bases(V, bs, nb, Skv * vs->dv, vs->v.base) &&
             rz_bcast_bases(O, bs, nb, Sq * vs->dv, vs->o.base);
    if (!ok || A->dims[A->rank - (ta ? 1 : 2)] != Sq ||
        Bm->dims[Bm->rank - (tb ? 1 : 2)] != vs->dh || Bm->dims[Bm->rank - (tb ? 2 : 1)] != Skv ||
        V->dims[V->rank - 2] != Skv)
        return rz_unsupported(z, "%s operands do not line up as Q.K^T and P.V",
                              "the attention MatMul");
    return MHA_OK;
}

/* GPT-BigCode's multi-query attention folds the query heads into the rows
 * of one bmm: Q [B, S*H, d] (row t*H + h is token t of head h) against
 * the one key head K^T [B, d, S], scores [B, S*H, S], P.V [B, S*H, dv].
 * Q and the output then have f = H rows per token, K and V one: each slot
 * becomes f, slot n*f + h reading rows h, h + f, .. of Q and of the output
 * and K and V as they are (heads are then told apart by their columns, one
 * key/value head shared by all). z->fold = f says the scores' rows are
 * folded too (rz_eff_eval_in); 1 when nothing is. */
static mha_status rz_unfold_heads(rz_ctx *z, rz_views *vs) {
    const rz_core *c = &z->core;
    z->fold = 1;
    if (c->qp.given || c->kp.given || c->vp.given || c->cache_on[0] || c->cache_on[1])
        return MHA_OK;
    const tensor *X = rz_val(z, z->g->inputs[c->qp.x_input]);
    const tensor *Y = rz_val(z, z->g->inputs[c->kp.x_input]);
    if (!X || X->rank != 3 || !Y || Y->rank != 3 || X->dims[1] <= 0) return MHA_OK;
    const int64_t seq = X->dims[1], f = vs->q.rows / seq;
    if (f < 2 || vs->q.rows != f * seq || vs->o.rows != vs->q.rows || vs->k.rows != Y->dims[1])
        return MHA_OK;
    rz_view *all[4] = {&vs->q, &vs->o, &vs->k, &vs->v};
    const int64_t n = vs->q.n_slots;
    for (int i = 0; i < 4; i++) {
        rz_view old = *all[i];
        mha_status st = rz_view_alloc(z, all[i], n * f);
        if (st != MHA_OK) {
            all[i]->base = old.base;
            return st;
        }
        const int rows = i < 2; /* Q and the output: their rows unfold */
        for (int64_t s = 0; s < n; s++)
            for (int64_t h = 0; h < f; h++)
                all[i]->base[s * f + h] = old.base[s] + (rows ? h * old.s_row : 0);
        if (rows) {
            all[i]->rows = seq;
            all[i]->s_row = old.s_row * f;
        }
        mha_free(z->a, old.base);
    }
    z->fold = f;
    return MHA_OK;
}

static mha_status rz_attention_views(rz_ctx *z, rz_views *vs, int64_t *hq_out, int64_t *hkv_out,
                                     int *rank_out) {
    const rz_core *c = &z->core;
    const ir_node *n = &z->g->nodes[c->node];
    const tensor *Q = rz_val(z, c->q_v), *K = rz_val(z, c->k_v), *V = rz_val(z, c->v_v);
    const tensor *O = rz_val(z, c->o_v);
    if (!Q || !K || !V || !O || Q->rank != K->rank || Q->rank != V->rank ||
        (Q->rank != 3 && Q->rank != 4))
        return rz_unsupported(z, "%s must all be 3D or all 4D", "Q, K and V");
    int r4 = Q->rank == 4;
    int64_t B = Q->dims[0], Hq, Hkv, Sq, Skv, dh, dv;
    if (r4) {
        Hq = Q->dims[1], Sq = Q->dims[2], dh = Q->dims[3];
        Hkv = K->dims[1], Skv = K->dims[2], dv = V->dims[3];
    } else {
        int ms = strcmp(n->domain, "com.microsoft") == 0; /* MultiHeadAttention */
        Hq = ir_attr_int(n, ms ? "num_heads" : "q_num_heads", 0);
        Hkv = ir_attr_int(n, ms ? "num_heads" : "kv_num_heads", 0);
        if (Hq <= 0 || Hkv <= 0 || Q->dims[2] % Hq || K->dims[2] % Hkv || V->dims[2] % Hkv)
            return rz_unsupported(z,
                                  "3D inputs need q_num_heads / kv_num_heads dividing the "
                                  "hidden sizes (%lld, %lld)",
                                  (long long)Hq, (long long)Hkv);
        Sq = Q->dims[1], Skv = K->dims[1];
        dh = Q->dims[2] / Hq, dv = V->dims[2] / Hkv;
    }
    if (dh <= 0 || dv <= 0 || B <= 0)
        return rz_unsupported(z, "empty heads (head sizes %lld / %lld, batch %lld)", (long long)dh,
                              (long long)dv, (long long)B);
    if (Hkv <= 0 || Hq % Hkv)
        return rz_unsupported(z, "%s: %lld query heads are not a multiple of %lld kv heads", "GQA",
                              (long long)Hq, (long long)Hkv);
    int64_t G = Hq / Hkv, n_slots = B * Hq;
    mha_status st = MHA_OK;
    rz_view *views[4] = {&vs->q, &vs->k, &vs->v, &vs->o};
    for (int i = 0; i < 4 && st == MHA_OK; i++)
        st = rz_view_alloc(z, views[i], n_slots);
    if (st != MHA_OK) return st;
    vs->dh = dh;
    vs->dv = dv;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < Hq; h++) {
            int64_t s = b * Hq + h, g = h / G;
            if (r4) {
                vs->q.base[s] = (b * Hq + h) * Sq * dh;
                vs->k.base[s] = (b * Hkv + g) * Skv * dh;
                vs->v.base[s] = (b * Hkv + g) * Skv * dv;
                vs->o.base[s] = (b * Hq + h) * Sq * dv;
            } else {
                vs->q.base[s] = b * Sq * Hq * dh + h * dh;
                vs->k.base[s] = b * Skv * Hkv * dh + g * dh;
                vs->v.base[s] = b * Skv * Hkv * dv + g * dv;
                vs->o.base[s] = b * Sq * Hq * dv + h * dv;
            }
        }
    vs->q.rows = vs->o.rows = Sq;
    vs->k.rows = vs->v.rows = Skv;
    vs->q.cols = vs->k.cols = dh;
    vs->v.cols = vs->o.cols = dv;
    vs->q.s_col = vs->k.s_col = vs->v.s_col = vs->o.s_col = 1;
    vs->q.s_row = r4 ? dh : Hq * dh;
    vs->k.s_row = r4 ? dh : Hkv * dh;
    vs->v.s_row = r4 ? dv : Hkv * dv;
    vs->o.s_row = r4 ? dv : Hq * dv;
    *hq_out = Hq;
    *hkv_out = Hkv;
    *rank_out = Q->rank;
    return MHA_OK;
}

/* ---- the output side ---- */

typedef struct rz_out {
    float *w, *b; /* [dz, dout], [dout] */
    int64_t dz, dout;
    double f_pre;         /* factors between the core and the projection (scale W) */
    double f_post;        /* factors after the bias (scale W and b) */
    int64_t *col;         /* [n_slots * dv]: the Z column holding feature e of slot n */
    int64_t *rowb, *rowi; /* [rows of Z]: batch item and token of each row */
    int64_t rows;
} rz_out;

static void rz_out_free(rz_ctx *z, rz_out *o) {
    mha_free(z->a, o->w);
    mha_free(z->a, o->b);
    mha_free(z->a, o->col);
    mha_free(z->a, o->rowb);
    mha_free(z->a, o->rowi);
    memset(o, 0, sizeof *o);
}

static mha_status rz_trace_output(rz_ctx *z, const rz_view *ov, const int64_t *bat, rz_out *o) {
    rz_core *c = &z->core;
    rz_side ws;
    memset(&ws, 0, sizeof ws);
    mha_status st = rz_proj_weights(z, &c->op, "output", &ws);
    o->w = ws.w;
    o->b = ws.b;
    o->dz = ws.din;
    o->dout = ws.n;
    if (st == MHA_OK) st = rz_chain_factor(z, &c->ochain, &o->f_pre);
    if (st == MHA_OK) st = rz_chain_factor(z, &c->ychain, &o->f_post);
    if (st != MHA_OK) return st;
    const tensor *O = rz_val(z, c->o_v);
    int64_t on = tensor_numel(O), per = ov->rows * ov->cols;
    int64_t *inv = mha_calloc(z->a, (size_t)(on ? on : 1), sizeof *inv);
    o->col = mha_calloc(z->a, rz_count(ov->n_slots * ov->cols), sizeof *o->col);
    if (!inv || !o->col) {
        mha_free(z->a, inv);
        return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    }
    for (int64_t i = 0; i < on; i++)
        inv[i] = -1;
    for (int64_t i = 0; i < ov->n_slots * ov->cols; i++)
        o->col[i] = -1;
    for (int64_t n = 0; n < ov->n_slots; n++)
        for (int64_t r = 0; r < ov->rows; r++)
            for (int64_t e = 0; e < ov->cols; e++) {
                int64_t idx = ov->base[n] + r * ov->s_row + e * ov->s_col;
                if (idx >= 0 && idx < on) inv[idx] = n * per + r * ov->cols + e;
            }
    tensor *enc = NULL, *zt = NULL;
    st = rz_index_tensor(z, O, &enc);
    if (st == MHA_OK) st = rz_chain_eval(z, &c->ochain, enc, &zt);
    if (st != MHA_OK) {
        mha_free(z->a, inv);
        return st;
    }
    if (!rz_trailing_is(zt, o->dz)) {
        st = rz_unsupported(z, "the output projection input is not %lld wide", (long long)o->dz);
    } else {
        o->rows = tensor_numel(zt) / o->dz;
        o->rowb = mha_calloc(z->a, (size_t)(o->rows ? o->rows : 1), sizeof *o->rowb);
        o->rowi = mha_calloc(z->a, (size_t)(o->rows ? o->rows : 1), sizeof *o->rowi);
        if (!o->rowb || !o->rowi) st = mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    }
    const int64_t *e = st == MHA_OK ? zt->data : NULL;
    for (int64_t r = 0; st == MHA_OK && r < o->rows; r++)
        for (int64_t col = 0; col < o->dz; col++) {
            int64_t f = e[r * o->dz + col];
            int64_t t = (f >= 0 && f < on) ? inv[f] : -1;
            if (t < 0) {
                st = rz_unsupported(z,
                                    "the %s projection reads values the attention did not "
                                    "produce",
                                    "output");
                break;
            }
            int64_t n = t / per, i = (t % per) / ov->cols, fe = t % ov->cols;
            if (col == 0) {
                o->rowb[r] = bat[n];
                o->rowi[r] = i;
            } else if (o->rowb[r] != bat[n] || o->rowi[r] != i) {
                st = rz_unsupported(z,
                                    "a row of the %s projection input mixes tokens "
                                    "(row %lld, column %lld)",
                                    "output", (long long)r, (long long)col);
                break;
            }
            int64_t *slot = &o->col[n * ov->cols + fe];
            if (*slot < 0)
                *slot = col;
            else if (*slot != col) {
                st = rz_unsupported(z,
                                    "the %s projection reads one head feature from "
                                    "columns %lld and %lld",
                                    "output", (long long)*slot, (long long)col);
                break;
            }
        }
    for (int64_t i = 0; st == MHA_OK && i < ov->n_slots * ov->cols; i++)
        if (o->col[i] < 0)
            st = rz_unsupported(z,
                                "the %s projection does not read every head feature"
                                "",
                                "output");
    tensor_free(zt);
    mha_free(z->a, inv);
    if (st != MHA_OK) return st;

    /* Y rows must land on graph output [b, s, :] in order. */
    const tensor *Y = rz_val(z, c->op.out_v);
    int64_t yrows = Y && rz_trailing_is(Y, o->dout) ? tensor_numel(Y) / o->dout : -1;
    if (yrows != o->rows)
        return rz_unsupported(z, "the %s projection output has %lld rows, its input %lld", "output",
                              (long long)yrows, (long long)o->rows);
    tensor *yenc = NULL, *gt = NULL;
    st = rz_index_tensor(z, Y, &yenc);
    if (st == MHA_OK) st = rz_chain_eval(z, &c->ychain, yenc, &gt);
    if (st != MHA_OK) return st;
    if (gt->rank != 3 || gt->dims[0] != z->B || gt->dims[2] != o->dout) {
        tensor_free(gt);
        return rz_unsupported(z, "the graph output must be [batch, seq, %lld]", (long long)o->dout);
    }
    const int64_t *ge = gt->data;
    int64_t S = gt->dims[1];
    for (int64_t b = 0; b < gt->dims[0] && st == MHA_OK; b++)
        for (int64_t s = 0; s < S && st == MHA_OK; s++)
            for (int64_t k = 0; k < o->dout; k++) {
                int64_t v = ge[(b * S + s) * o->dout + k], r = v / o->dout;
                if (v % o->dout != k || r < 0 || r >= o->rows || o->rowb[r] != b ||
                    o->rowi[r] != s) {
                    st = rz_unsupported(z, "the %s does not put token (%lld, %lld) in place",
                                        "graph output", (long long)b, (long long)s);
                    break;
                }
            }
    tensor_free(gt);
    return st;
}

/* ---- heads ---- */

typedef struct rz_heads {
    int64_t hq, hkv;
    int64_t *rep;     /* [hq] a slot of each final q head */
    int64_t *kv_rep;  /* [hkv] a slot of each final kv head */
    int64_t *head_of; /* [n_slots] final q head of each slot */
} rz_heads;

static void rz_heads_free(rz_ctx *z, rz_heads *h) {
    mha_free(z->a, h->rep);
    mha_free(z->a, h->kv_rep);
    mha_free(z->a, h->head_of);
    memset(h, 0, sizeof *h);
}

static int rz_same(const int64_t *a, const int64_t *b, int64_t n) {
    return memcmp(a, b, sizeof(int64_t) * (size_t)n) == 0;
}

static mha_status rz_assemble_heads(rz_ctx *z, int64_t n_slots, const rz_side *q, const rz_side *k,
                                    const rz_side *v, const rz_out *o, int64_t dh, int64_t dv,
                                    rz_heads *H) {
    mha_status st = MHA_OK;
    int64_t *hid = mha_calloc(z->a, (size_t)n_slots, sizeof *hid); /* head by o columns */
    int64_t *hrep = mha_calloc(z->a, (size_t)n_slots, sizeof *hrep);
    int64_t *kid = mha_calloc(z->a, (size_t)n_slots, sizeof *kid); /* kv pair id */
    int64_t *krep = mha_calloc(z->a, (size_t)n_slots, sizeof *krep);
    int64_t *order = mha_calloc(z->a, (size_t)n_slots, sizeof *order);
    int64_t *kvorder = mha_calloc(z->a, (size_t)n_slots, sizeof *kvorder);
    int64_t *final_of = mha_calloc(z->a, (size_t)n_slots, sizeof *final_of);
    unsigned char *seen = NULL;
    H->head_of = mha_calloc(z->a, (size_t)n_slots, sizeof *H->head_of);
    if (!hid || !hrep || !kid || !krep || !order || !kvorder || !final_of || !H->head_of) {
        st = mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    int64_t nh = 0, nkv = 0;
    if (n_slots <= 0 || dh <= 0 || dv <= 0) {
        st = rz_unsupported(z, "empty heads (%lld slots of %lld / %lld features)",
                            (long long)n_slots, (long long)dh, (long long)dv);
        goto done;
    }
    for (int64_t n = 0; n < n_slots && st == MHA_OK; n++) {
        if (q->bat[n] != k->bat[n] || q->bat[n] != v->bat[n] || q->bat[n] < 0 ||
            q->bat[n] >= z->B) {
            st = rz_unsupported(z, "a head mixes batch items (%lld for Q, %lld for K)",
                                (long long)q->bat[n], (long long)k->bat[n]);
            break;
        }
        int64_t h = 0;
        while (h < nh && !rz_same(&o->col[hrep[h] * dv], &o->col[n * dv], dv))
            h++;
        if (h == nh) hrep[nh++] = n;
        hid[n] = h;
        int64_t r = hrep[h];
        if (!rz_same(&q->col[r * dh], &q->col[n * dh], dh) ||
            !rz_same(&k->col[r * dh], &k->col[n * dh], dh) ||
            !rz_same(&v->col[r * dv], &v->col[n * dv], dv)) {
            st = rz_unsupported(z, "%s of batch items %lld and %lld differ", "a head's weights",
                                (long long)q->bat[r], (long long)q->bat[n]);
            break;
        }
        int64_t g = 0;
        while (g < nkv && !(rz_same(&k->col[krep[g] * dh], &k->col[n * dh], dh) &&
                            rz_same(&v->col[krep[g] * dv], &v->col[n * dv], dv)))
            g++;
        if (g == nkv) krep[nkv++] = n;
        kid[n] = g;
    }
    if (st != MHA_OK) goto done;
    if (nh * z->B != n_slots) {
        st = rz_unsupported(z, "%s: %lld slots for %lld heads", "heads", (long long)n_slots,
                            (long long)nh);
        goto done;
    }
    seen = mha_calloc(z->a, (size_t)n_slots, 1);
    if (!seen) {
        st = mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    for (int64_t n = 0; n < n_slots; n++) {
        int64_t key = q->bat[n] * nh + hid[n];
        if (seen[key]) {
            st = rz_unsupported(z, "%s: head %lld of batch item %lld appears twice", "heads",
                                (long long)hid[n], (long long)q->bat[n]);
            goto done;
        }
        seen[key] = 1;
    }
    /* Output columns of different heads must not overlap. */
    for (int64_t a = 0; a < nh; a++)
        for (int64_t b = a + 1; b < nh; b++)
            for (int64_t e = 0; e < dv; e++)
                for (int64_t f = 0; f < dv; f++)
                    if (o->col[hrep[a] * dv + e] == o->col[hrep[b] * dv + f]) {
                        st = rz_unsupported(z, "%s %lld and %lld share output columns", "heads",
                                            (long long)a, (long long)b);
                        goto done;
                    }
    if (nh * dv != o->dz) {
        st = rz_unsupported(z,
                            "%s: %lld heads x %lld features do not fill the output "
                            "projection input",
                            "heads", (long long)nh, (long long)dv);
        goto done;
    }
    /* Order: heads by their first output column (the file's own order),
     * then grouped by kv head in order of first use -- the standard GQA
     * layout where q head h uses kv head h / (Hq / Hkv). */
    for (int64_t h = 0; h < nh; h++)
        order[h] = h;
    for (int64_t i = 1; i < nh; i++)
        for (int64_t j = i; j > 0 && o->col[hrep[order[j]] * dv] < o->col[hrep[order[j - 1]] * dv];
             j--) {
            int64_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    int64_t n_kvseen = 0;
    for (int64_t i = 0; i < nh; i++) {
        int64_t g = kid[hrep[order[i]]], j = 0;
        while (j < n_kvseen && kvorder[j] != g)
            j++;
        if (j == n_kvseen) kvorder[n_kvseen++] = g;
    }
    if (n_kvseen != nkv || nh % nkv) {
        st = rz_unsupported(z, "%s: %lld query heads over %lld key/value heads", "GQA",
                            (long long)nh, (long long)nkv);
        goto done;
    }
    int64_t G = nh / nkv, pos = 0;
    H->rep = mha_calloc(z->a, (size_t)nh, sizeof *H->rep);
    H->kv_rep = mha_calloc(z->a, (size_t)nkv, sizeof *H->kv_rep);
    if (!H->rep || !H->kv_rep) {
        st = mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
        goto done;
    }
    for (int64_t j = 0; j < nkv; j++)
        H->kv_rep[j] = krep[kvorder[j]];
    for (int64_t j = 0; j < nkv; j++) {
        int64_t cnt = 0;
        for (int64_t i = 0; i < nh; i++)
            if (kid[hrep[order[i]]] == kvorder[j]) {
                H->rep[pos] = hrep[order[i]];
                pos++;
                cnt++;
            }
        if (cnt != G) {
            st = rz_unsupported(z, "%s: key/value head %lld serves %lld query heads", "GQA",
                                (long long)j, (long long)cnt);
            goto done;
        }
    }
    /* final index of each (file) head id */
    for (int64_t f = 0; f < nh; f++)
        final_of[hid[H->rep[f]]] = f;
    for (int64_t n = 0; n < n_slots; n++)
        H->head_of[n] = final_of[hid[n]];
    H->hq = nh;
    H->hkv = nkv;
done:
    mha_free(z->a, hid);
    mha_free(z->a, hrep);
    mha_free(z->a, kid);
    mha_free(z->a, krep);
    mha_free(z->a, order);
    mha_free(z->a, kvorder);
    mha_free(z->a, final_of);
    mha_free(z->a, seen);
    return st;
}

/* Gathers columns col_of(head, feature) of side s into a new [din, heads*width]. */
static mha_status rz_gather(rz_ctx *z, const rz_side *s, const int64_t *rep, int64_t heads,
                            double f, float **w, float **b) {
    int64_t W = s->width, out_n = heads * W;
    *w = mha_calloc(z->a, rz_count(s->din * out_n), sizeof(float));
    if (!*w) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory assembling weights");
    for (int64_t r = 0; r < s->din; r++)
        for (int64_t h = 0; h < heads; h++)
            for (int64_t d = 0; d < W; d++)
                (*w)[r * out_n + h * W + d] = (float)(f * s->w[r * s->n + s->col[rep[h] * W + d]]);
    if (!s->b) return MHA_OK;
    *b = mha_calloc(z->a, (size_t)out_n, sizeof(float));
    if (!*b) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory assembling weights");
    for (int64_t h = 0; h < heads; h++)
        for (int64_t d = 0; d < W; d++)
            (*b)[h * W + d] = (float)(f * s->b[s->col[rep[h] * W + d]]);
    return MHA_OK;
}

/* K and V given in head layout: the layer reads them as they are, so head
 * h of the core must be head h of the inputs and feature c feature c (the
 * gathered "weights" the identity), and V carry no factor. */
static mha_status rz_given_heads(rz_ctx *z, layer *L) {
    const int64_t nk = L->kv_heads * L->d_head, nv = L->kv_heads * L->d_head_v;
    int same = L->d_kv == nk && !L->bk && !L->bv;
    for (int64_t r = 0; same && r < nk; r++)
        for (int64_t c = 0; same && c < nk; c++)
            same = L->wk[r * nk + c] == (r == c ? 1.0f : 0.0f);
    for (int64_t r = 0; same && r < nv; r++)
        for (int64_t c = 0; same && c < nv; c++)
            same = L->wv[r * nv + c] == (r == c ? 1.0f : 0.0f);
    if (!same)
        return rz_unsupported(z, "K and V are given in head layout, but the core reads their "
                                 "heads or features in another order (or scales V)");
    if (L->need_weights)
        return rz_unsupported(z, "K and V given in head layout with the attention weights as an "
                                 "output are not supported");
    mha_free(z->a, L->wk);
    mha_free(z->a, L->wv);
    L->wk = L->wv = NULL;
    L->kv_given = 1;
    L->d_kv = 0;
    return MHA_OK;
}

mha_status rz_build_projected(rz_ctx *z, layer *L) {
    rz_core *c = &z->core;
    rz_views vs;
    rz_side q, k, v;
    rz_out o;
    rz_heads H;
    memset(&vs, 0, sizeof vs);
    memset(&q, 0, sizeof q);
    memset(&k, 0, sizeof k);
    memset(&v, 0, sizeof v);
    memset(&o, 0, sizeof o);
    memset(&H, 0, sizeof H);
    int64_t att_hq = 0, att_hkv = 0;
    int att_rank = 0;
    mha_status st = c->kind == RZ_CORE_SOFTMAX
                        ? rz_softmax_views(z, &vs)
                        : rz_attention_views(z, &vs, &att_hq, &att_hkv, &att_rank);
    /* a cache Concat on the K / V chains (a Softmax core): the operands'
     * first rows are the past's; an Attention node appends them itself */
    const int cache = c->cache_on[0] && c->cache_on[1];
    const int in_chain = cache && c->kind == RZ_CORE_SOFTMAX;
    z->fold = 1;
    if (st == MHA_OK && c->kind == RZ_CORE_SOFTMAX) st = rz_unfold_heads(z, &vs);
    if (st == MHA_OK)
        st = rz_trace_side(z, &c->qp, &c->qchain, &vs.q, "Q", -1, c->qkn_on[0] ? 0 : -1, &q);
    if (st == MHA_OK)
        st = rz_trace_side(z, &c->kp, &c->kchain, &vs.k, "K", in_chain ? 0 : -1,
                           c->qkn_on[1] ? 1 : -1, &k);
    if (st == MHA_OK)
        st = rz_trace_side(z, &c->vp, &c->vchain, &vs.v, "V", in_chain ? 1 : -1, -1, &v);
    if (st == MHA_OK) st = rz_trace_output(z, &vs.o, q.bat, &o);
    if (st == MHA_OK) st = rz_assemble_heads(z, vs.q.n_slots, &q, &k, &v, &o, vs.dh, vs.dv, &H);
    /* the cache's heads in the layer's kv head order: slot n reads head
     * head_of[n] / (Hq / Hkv) of the past */
    for (int64_t n = 0; st == MHA_OK && in_chain && n < vs.q.n_slots; n++) {
        const int64_t g = H.head_of[n] / (H.hq / H.hkv);
        if (k.past_head[n] != g || v.past_head[n] != g)
            st = rz_unsupported(z,
                                "key/value head %lld reads head %lld of the cache inputs (they "
                                "must be in the layer's head order)",
                                (long long)g, (long long)k.past_head[n]);
    }
    /* a factor after the cache Concat scales the cached values too (not
     * a V weight); one before an Attention node's own cache scales only the
     * new keys (not the scale) */
    if (st == MHA_OK && in_chain && v.factor != 1.0)
        st = rz_unsupported(z, "a factor on V is applied to the cached values too");
    if (st == MHA_OK && cache && !in_chain && k.factor != 1.0)
        st = rz_unsupported(z, "a factor on K before the cache is not applied to the cached keys");
    if (st != MHA_OK) goto done;

    L->has_proj = 1;
    L->d_model = q.din;
    L->d_kv = k.din;
    L->d_out = o.dout;
    L->q_heads = H.hq;
    L->kv_heads = H.hkv;
    L->d_head = vs.dh;
    L->d_head_v = vs.dv;
    L->cross = c->qp.x_input != c->kp.x_input;
    L->v_input = !c->kp.given && c->kp.x_input != c->vp.x_input;
    /* K on the query input, V on its own: a cross layer whose key input is
     * the query's (the two GEMMs apart) */
    L->k_from_query = L->v_input && !L->cross;
    if (L->k_from_query) L->cross = 1;
    if (L->v_input && v.din != k.din) L->d_v_in = v.din;
    if (!c->kp.given && (c->qp.node == c->kp.node || c->kp.node == c->vp.node))
        L->idioms |= LAYER_IDIOM_FUSED_QKV;
    L->seq_first = 0;
    st = rz_gather(z, &q, H.rep, H.hq, 1.0, &L->wq, &L->bq);
    if (st == MHA_OK) st = rz_gather(z, &k, H.kv_rep, H.hkv, 1.0, &L->wk, &L->bk);
    if (st == MHA_OK) st = rz_gather(z, &v, H.kv_rep, H.hkv, v.factor, &L->wv, &L->bv);
    if (st == MHA_OK && c->kp.given) st = rz_given_heads(z, L);
    if (st == MHA_OK && q.qkn.w) st = rz_qknorm_place(z, 0, &q.qkn, q.col, H.rep, H.hq, q.width, L);
    if (st == MHA_OK && k.qkn.w)
        st = rz_qknorm_place(z, 1, &k.qkn, k.col, H.kv_rep, H.hkv, k.width, L);
    if (st == MHA_OK && (q.qkn.w || k.qkn.w) && L->need_weights)
        st = rz_unsupported(z, "a norm of Q or K with the attention weights as an output is not "
                               "supported");
    if (st != MHA_OK) goto done;
    /* Wo rows in head order: row (h, e) is Z column o.col[rep(h), e]. */
    int64_t zin = H.hq * vs.dv;
    L->wo = mha_calloc(z->a, rz_count(zin * o.dout), sizeof(float));
    if (!L->wo) {
        st = mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory assembling weights");
        goto done;
    }
    for (int64_t h = 0; h < H.hq; h++)
        for (int64_t e = 0; e < vs.dv; e++) {
            int64_t zc = o.col[H.rep[h] * vs.dv + e];
            for (int64_t kk = 0; kk < o.dout; kk++)
                L->wo[(h * vs.dv + e) * o.dout + kk] =
                    (float)(o.f_pre * o.f_post * o.w[zc * o.dout + kk]);
        }
    if (o.b) {
        L->bo = mha_calloc(z->a, (size_t)o.dout, sizeof(float));
        if (!L->bo) {
            st = mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory assembling weights");
            goto done;
        }
        for (int64_t kk = 0; kk < o.dout; kk++)
            L->bo[kk] = (float)(o.f_post * o.b[kk]);
    }

    double fqk = q.factor * k.factor;
    if (c->kind == RZ_CORE_ATTENTION) {
        const ir_node *n = &z->g->nodes[c->node];
        const ir_attr *sa = ir_node_attr(n, "scale");
        double base = sa ? (double)sa->f : 1.0 / sqrt((double)vs.dh);
        int ms = strcmp(n->domain, "com.microsoft") == 0; /* MultiHeadAttention */
        L->form = ms ? "ms-mha" : "onnx-attention-layer";
        L->scale = (float)(base * fqk);
        L->softcap = ir_attr_float(n, "softcap", 0.0f);
        L->causal = ir_attr_int(n, ms ? "unidirectional" : "is_causal", 0) != 0;
        if (L->softcap != 0.0f && fqk != 1.0)
            st = rz_unsupported(z, "softcap with scalar factors on Q or K is not supported");
    } else {
        /* casts after the Softmax must keep float32 (softmax in float32) */
        rz_chain pc;
        double pf;
        pc.n = c->n_p_steps;
        memcpy(pc.steps, c->p_steps, sizeof(rz_step) * (size_t)c->n_p_steps);
        st = rz_chain_factor(z, &pc, &pf);
        if (st != MHA_OK) goto done;
        if (c->n_p_steps) L->idioms |= LAYER_IDIOM_SOFTMAX_CAST;
        for (int i = 0; i < c->n_score_steps; i++) {
            const ir_node *sn = &z->g->nodes[c->score_steps[i].node];
            if (c->score_steps[i].kind == RZ_STEP_IDENTITY && rz_is_op(sn, "Cast"))
                L->idioms |= LAYER_IDIOM_SOFTMAX_CAST;
            if (c->score_steps[i].kind == RZ_STEP_LAYOUT) L->idioms |= LAYER_IDIOM_SCORE_RESHAPE;
        }
        if (q.factor != 1.0 && k.factor != 1.0) L->idioms |= LAYER_IDIOM_QK_FACTORS;
        /* with soft-capping, c * tanh(s * f / c) is the ONNX Attention's
         * softcap c over scale f: c the factors after the Tanh */
        double fs = 1.0, cap = 1.0;
        for (int i = 0; i < c->n_score_steps; i++) {
            rz_chain one;
            one.n = 1;
            one.steps[0] = c->score_steps[i];
            double f;
            st = rz_chain_factor(z, &one, &f);
            if (st != MHA_OK) goto done;
            fs *= f;
            if (c->softcap_on && i < c->softcap_at) cap *= f;
        }
        /* FusedMatMul's alpha: the scale it multiplies Q.K^T by */
        const ir_node *qk = &z->g->nodes[c->score_mm];
        const double alpha = rz_is_fused_matmul(qk) ? ir_attr_float(qk, "alpha", 1.0f) : 1.0;
        L->scale = (float)(fs * fqk * alpha);
        L->softcap = c->softcap_on ? (float)cap : 0.0f;
        if (c->softcap_on && !(cap > 0.0 && isfinite(cap))) {
            st = rz_unsupported(z, "soft-capping of the scores by %g (must be positive)", cap);
            goto done;
        }
        st = rz_place_masks(z, L, q.bat, H.head_of, vs.q.n_slots);
    }
done:
    rz_views_free(z, &vs);
    rz_side_free(z, &q);
    rz_side_free(z, &k);
    rz_side_free(z, &v);
    rz_out_free(z, &o);
    rz_heads_free(z, &H);
    return st;
}
