/* recognize_qknorm.c -- a norm of Q and K between their projections and
 * the rotary (Qwen3, OLMo-2, Gemma-3: RMSNorm; Cohere: LayerNorm without a
 * bias, its weight [heads, d]; Persimmon: LayerNorm with one), recognised by meaning in the
 * recogniser's two phases, as the rotation is (recognize_rotary.c):
 *
 *   static (rz_qknorm_pass): the Q or K path starts at a value made by
 *     elementwise ops and at least one reduction whose data paths all meet
 *     again in one tensor x below them (the norm's input). The chain goes
 *     on below x as if the norm were not there: a norm moves no element.
 *   meaning (rz_qknorm_fit): the subgraph x -> y is re-run on chosen x
 *     along its last axis (the group): +-1 alternating (mean 0, mean square
 *     1) gives the weight of every element, its negation the bias (half
 *     the sum: Persimmon's LayerNorm has one), a shift by 3 tells a LayerNorm (unchanged) from an
 *     RMSNorm, a small multiple picks the epsilon among the graph's
 *     constants. The whole reading must then give the probe's y from the
 *     probe's x, or the norm is refused.
 *   placement (rz_qknorm_place): through the index tracing of
 *     recognize_map.c each element of x is a projection column and a token;
 *     a group must be one token's features of one head (per head) or of all
 *     heads (OLMo-2's norm over d_model before the heads split). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "recognize_internal.h"

/* Frontier of the search for x, and the nodes it may cross. */
#define RZ_QKN_MAX_FRONTIER 16
#define RZ_QKN_MAX_EXPANSIONS 64
/* The largest group read (a [d_model] norm of a wide model probes one
 * subgraph run per candidate epsilon, each over the probe's x). */
#define RZ_QKN_MAX_GROUP ((int64_t)1 << 16)

static int rz_qkn_is_reduction(const ir_node *n) {
    static const char *const ops[] = {"ReduceMean",
                                      "ReduceSum",
                                      "ReduceSumSquare",
                                      "ReduceL2",
                                      "LayerNormalization",
                                      "RMSNormalization",
                                      "SimplifiedLayerNormalization"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (rz_is_op(n, ops[i])) return 1;
    return 0;
}

/* The ops a norm is written with. */
static int rz_qkn_is_norm_op(const ir_node *n) {
    static const char *const ops[] = {"Mul",  "Div",  "Add", "Sub",      "Pow",
                                      "Sqrt", "Cast", "Neg", "Identity", "Reciprocal"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (rz_is_op(n, ops[i])) return 1;
    return rz_qkn_is_reduction(n);
}

/* x of the norm whose output is y, or -1: the frontier of data values is
 * expanded latest producer first, crossing norm ops only, until one value
 * is left whose producer is not one (a layout op, the projection) after a
 * reduction was crossed. */
static int rz_qkn_input(const rz_ctx *z, int y) {
    int front[RZ_QKN_MAX_FRONTIER], n = 1, reduced = 0;
    front[0] = y;
    for (int step = 0; step < RZ_QKN_MAX_EXPANSIONS; step++) {
        if (n == 1) {
            const int pid = rz_producer_id(z, front[0]);
            if (pid < 0) return -1;
            const ir_node *p = &z->g->nodes[pid];
            if (!rz_qkn_is_norm_op(p)) return reduced && front[0] != y ? front[0] : -1;
            /* below the reduction, an op of one data value with a constant
             * (the projection's bias Add) is not the norm's: x is above it
             * (a Cast to float32 may be either) */
            int data = 0;
            for (size_t k = 0; k < p->n_inputs; k++)
                data += p->inputs[k] >= 0 && z->deps[p->inputs[k]] != 0;
            if (reduced && data == 1 && !rz_is_op(p, "Cast") && !rz_is_op(p, "Identity"))
                return front[0];
        }
        int best = 0;
        for (int i = 1; i < n; i++)
            if (rz_producer_id(z, front[i]) > rz_producer_id(z, front[best])) best = i;
        const int pid = rz_producer_id(z, front[best]);
        if (pid < 0) return -1;
        const ir_node *p = &z->g->nodes[pid];
        if (!rz_qkn_is_norm_op(p)) return -1;
        reduced |= rz_qkn_is_reduction(p);
        front[best] = front[--n];
        for (size_t k = 0; k < p->n_inputs; k++) {
            const int v = p->inputs[k];
            if (v < 0 || z->deps[v] == 0) continue;
            int seen = 0;
            for (int i = 0; i < n; i++)
                seen |= front[i] == v;
            if (seen) continue;
            if (n == RZ_QKN_MAX_FRONTIER) return -1;
            front[n++] = v;
        }
        if (n == 0) return -1;
    }
    return -1;
}

mha_status rz_qknorm_pass(rz_ctx *z, int side, const char *what, rz_chain *ch) {
    const int pid = rz_producer_id(z, ch->src);
    if (pid < 0 || !rz_qkn_is_norm_op(&z->g->nodes[pid])) return MHA_OK;
    const int x = rz_qkn_input(z, ch->src);
    if (x < 0) return MHA_OK; /* the projection parser refuses the node */
    /* no factors below the norm: it would undo them (bar its epsilon) */
    /* the factors right above it (its weight, the walk took it for one;
     * a scalar too) are the norm's: its weight holds them */
    int y = ch->src, above = 0;
    while (above < ch->n &&
           (ch->steps[above].kind == RZ_STEP_MUL || ch->steps[above].kind == RZ_STEP_DIV)) {
        const rz_step *s = &ch->steps[above++];
        y = z->g->nodes[s->node].outputs[s->data_out];
    }
    /* no factors below the norm: it would undo them (bar its epsilon) */
    rz_chain lower;
    mha_status st = rz_walk_back(z, x, 0, what, &lower);
    if (st == MHA_OK) st = rz_chain_splice(z, ch, &lower, above, pid, what);
    if (st != MHA_OK) return st;
    z->core.qkn_on[side] = 1;
    z->core.qkn_x[side] = x;
    z->core.qkn_y[side] = y;
    z->core.qkn_lower[side] = lower.n;
    return MHA_OK;
}

/* ------------------------------------------------------------------------ */
/* Meaning                                                                   */
/* ------------------------------------------------------------------------ */

void rz_qknorm_free(rz_ctx *z, rz_qkn *f) {
    mha_free(z->a, f->w);
    mha_free(z->a, f->b);
    tensor_free(f->xi);
    memset(f, 0, sizeof *f);
}

static mha_status rz_qkn_refuse(rz_ctx *z, int side, const char *why) {
    return rz_refuse_on_path(z, z->core.qkn_y[side], side,
                             "normalises the projection, but not as a per-head RMSNorm or "
                             "LayerNorm with a weight does",
                             why);
}

/* The subgraph on x = t * a + shift, a = +-1 alternating along the group. */
static mha_status rz_qkn_probe(rz_ctx *z, int side, const tensor *x, double t, double shift,
                               tensor **out) {
    tensor *in = NULL;
    mha_status st = tensor_new(z->a, MHA_DTYPE_FLOAT32, x->rank, x->dims, &in, z->err);
    if (st != MHA_OK) return st;
    const int64_t G = x->dims[x->rank - 1], numel = tensor_numel(x);
    float *p = in->data;
    for (int64_t i = 0; i < numel; i++)
        p[i] = (float)(t * ((i % G) % 2 ? -1.0 : 1.0) + shift);
    st = rz_subgraph_eval(z, z->core.qkn_x[side], z->core.qkn_y[side], in, out);
    tensor_free(in);
    if (st == MHA_OK && ((*out)->dtype != MHA_DTYPE_FLOAT32 || tensor_numel(*out) != numel)) {
        tensor_free(*out);
        *out = NULL;
        return rz_qkn_refuse(z, side, "its output is not float32 shaped like its input");
    }
    return st;
}

/* The epsilons the norm's nodes name: scalar constants added to a data
 * value, and the epsilon of the norm ops. */
static int rz_qkn_eps_candidates(const rz_ctx *z, int side, double *eps, int max) {
    const int first = rz_producer_id(z, z->core.qkn_x[side]) + 1;
    const int last = rz_producer_id(z, z->core.qkn_y[side]);
    int n = 0;
    for (int ni = first; ni <= last && n < max; ni++) {
        const ir_node *nd = &z->g->nodes[ni];
        if (rz_qkn_is_reduction(nd) && !rz_is_op(nd, "ReduceMean") && !rz_is_op(nd, "ReduceSum") &&
            !rz_is_op(nd, "ReduceSumSquare") && !rz_is_op(nd, "ReduceL2"))
            eps[n++] = ir_attr_float(nd, "epsilon", 1e-5f);
        if (!rz_is_op(nd, "Add") || nd->n_inputs != 2) continue;
        for (int k = 0; k < 2 && n < max; k++) {
            const int c = nd->inputs[k], o = nd->inputs[1 - k];
            const tensor *tc = rz_val(z, c);
            if (c < 0 || o < 0 || z->deps[c] != 0 || z->deps[o] == 0 || !tc ||
                tc->dtype != MHA_DTYPE_FLOAT32 || tensor_numel(tc) != 1)
                continue;
            const double v = ((const float *)tc->data)[0];
            if (v >= 0.0 && v < 1.0) eps[n++] = v;
        }
    }
    return n;
}

/* max |a - b| / (tol_abs + |b|) over n floats. */
static double rz_qkn_err(const float *a, const float *b, int64_t n, double tol_abs) {
    double e = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)b[i]) / (tol_abs + fabs((double)b[i]));
        if (!(d <= e)) e = d; /* NaN counts as the worst */
    }
    return e;
}

/* What the fitted norm makes of x (per element weights we and biases
 * be [numel], be NULL: none). */
static void rz_qkn_apply(const float *x, int64_t rows, int64_t G, int kind, double eps,
                         const double *we, const double *be, float *y) {
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * G;
        double mean = 0.0, ms = 0.0;
        if (kind == LAYER_QK_NORM_LAYER) {
            for (int64_t i = 0; i < G; i++)
                mean += xr[i];
            mean /= (double)G;
        }
        for (int64_t i = 0; i < G; i++)
            ms += (xr[i] - mean) * (xr[i] - mean);
        const double inv = 1.0 / sqrt(ms / (double)G + eps);
        for (int64_t i = 0; i < G; i++)
            y[r * G + i] =
                (float)(we[r * G + i] * (xr[i] - mean) * inv + (be ? be[r * G + i] : 0.0));
    }
}

mha_status rz_qknorm_fit(rz_ctx *z, int side, tensor *xi, int64_t n, rz_qkn *f) {
    memset(f, 0, sizeof *f);
    f->xi = xi;
    f->n = n;
    const tensor *x = rz_val(z, z->core.qkn_x[side]), *y = rz_val(z, z->core.qkn_y[side]);
    if (!x || !y || x->dtype != MHA_DTYPE_FLOAT32 || y->dtype != MHA_DTYPE_FLOAT32 || x->rank < 1 ||
        y->rank != x->rank || memcmp(x->dims, y->dims, sizeof(int64_t) * (size_t)x->rank) != 0 ||
        !xi || tensor_numel(xi) != tensor_numel(x) || n <= 0)
        return rz_qkn_refuse(z, side, "its input and output are not float32 of one shape");
    const int64_t G = x->dims[x->rank - 1], numel = tensor_numel(x);
    if (G < 2 || G % 2 || G > RZ_QKN_MAX_GROUP || numel <= 0)
        return rz_qkn_refuse(z, side, "its last axis is not an even number of features");
    f->group = G;
    tensor *yp = NULL, *yn = NULL, *ys = NULL, *yt = NULL;
    double *we = NULL, *be = NULL;
    float *pred = NULL;
    const double t_small = 1e-3;
    mha_status st = rz_qkn_probe(z, side, x, 1.0, 0.0, &yp);
    if (st == MHA_OK) st = rz_qkn_probe(z, side, x, -1.0, 0.0, &yn);
    if (st == MHA_OK) st = rz_qkn_probe(z, side, x, 1.0, 3.0, &ys);
    if (st == MHA_OK) st = rz_qkn_probe(z, side, x, t_small, 0.0, &yt);
    if (st != MHA_OK) goto done;
    float *p = yp->data, *s = ys->data, *tt = yt->data;
    const float *q = yn->data;
    double big = 0.0;
    int biased = 0;
    for (int64_t i = 0; i < numel; i++)
        big = fmax(big, fabs((double)p[i]));
    for (int64_t i = 0; i < numel; i++)
        biased |= !(fabs((double)p[i] + (double)q[i]) <= 1e-5 * big);
    if (biased) {
        /* a bias: half the sum of y(a) and y(-a), read off every output
         * (then y - b is odd in a, as without one) */
        be = mha_malloc(z->a, (size_t)numel * sizeof *be);
        if (!be) {
            st = mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory reading a norm");
            goto done;
        }
        for (int64_t i = 0; i < numel; i++) {
            be[i] = 0.5 * ((double)p[i] + (double)q[i]);
            p[i] = (float)((double)p[i] - be[i]);
            s[i] = (float)((double)s[i] - be[i]);
            tt[i] = (float)((double)tt[i] - be[i]);
        }
    }
    /* a LayerNorm removes the mean: the shifted input gives the same */
    f->kind = rz_qkn_err(s, p, numel, 1e-6 * big + 1e-30) <= 1e-4 ? LAYER_QK_NORM_LAYER
                                                                  : LAYER_QK_NORM_RMS;
    /* the epsilon: at t_small, y = w t a / sqrt(t^2 + eps) against
     * y(1) = w a / sqrt(1 + eps); the graph's candidate that fits best */
    double cand[8];
    const int nc = rz_qkn_eps_candidates(z, side, cand, 8);
    double best = INFINITY, eps = 0.0;
    for (int c = 0; c < nc; c++) {
        const double k = t_small * sqrt(1.0 + cand[c]) / sqrt(t_small * t_small + cand[c]);
        double e = 0.0;
        for (int64_t i = 0; i < numel; i++) {
            const double d = fabs((double)tt[i] - k * p[i]) / (1e-6 * big * k + fabs(k * p[i]));
            if (!(d <= e)) e = d;
        }
        if (e < best) best = e, eps = cand[c];
    }
    if (!(best <= 1e-3)) {
        st = rz_qkn_refuse(z, side, "no epsilon among its constants fits");
        goto done;
    }
    f->eps = (float)eps;
    /* the weight of each element, then of each projection column */
    we = mha_malloc(z->a, (size_t)numel * sizeof *we);
    pred = mha_malloc(z->a, (size_t)numel * sizeof *pred);
    f->w = mha_malloc(z->a, (size_t)n * sizeof *f->w);
    if (be) f->b = mha_malloc(z->a, (size_t)n * sizeof *f->b);
    if (!we || !pred || !f->w || (be && !f->b)) {
        st = mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory reading a norm");
        goto done;
    }
    for (int64_t c = 0; c < n; c++) {
        f->w[c] = NAN;
        if (f->b) f->b[c] = NAN;
    }
    const int64_t *ix = xi->data;
    for (int64_t i = 0; i < numel && st == MHA_OK; i++) {
        const double a = (i % G) % 2 ? -1.0 : 1.0;
        we[i] = (double)p[i] * sqrt(1.0 + eps) / a;
        const int64_t col = ix[i] >= 0 ? ix[i] % n : -1;
        if (col < 0) {
            st = rz_qkn_refuse(z, side, "it reads cached rows");
        } else if (isnan(f->w[col])) {
            f->w[col] = (float)we[i];
        } else if (!(fabs((double)f->w[col] - we[i]) <= 1e-6 * (1.0 + fabs(we[i])))) {
            st = rz_qkn_refuse(z, side, "its weight differs between tokens");
        }
        if (st == MHA_OK && f->b && col >= 0) {
            if (isnan(f->b[col]))
                f->b[col] = (float)be[i];
            else if (!(fabs((double)f->b[col] - be[i]) <= 1e-6 * (1.0 + fabs(be[i]))))
                st = rz_qkn_refuse(z, side, "its bias differs between tokens");
        }
    }
    if (st != MHA_OK) goto done;
    /* the reading must give the probe's own y from its x */
    rz_qkn_apply(x->data, numel / G, G, f->kind, eps, we, be, pred);
    if (!(rz_qkn_err(pred, y->data, numel, 1e-4) <= 1e-3))
        st = rz_qkn_refuse(z, side,
                           "read as a norm over its last axis, it does not give its "
                           "output on the probe");
done:
    tensor_free(yp);
    tensor_free(yn);
    tensor_free(ys);
    tensor_free(yt);
    mha_free(z->a, we);
    mha_free(z->a, be);
    mha_free(z->a, pred);
    return st;
}

mha_status rz_qknorm_place(rz_ctx *z, int side, const rz_qkn *f, const int64_t *col,
                           const int64_t *rep, int64_t heads, int64_t width, layer *L) {
    const int64_t N = heads * width, G = f->group, numel = tensor_numel(f->xi);
    int64_t *std_of = mha_malloc(z->a, rz_count(f->n) * sizeof *std_of);
    unsigned char *covered = mha_calloc(z->a, rz_count(N), 1);
    float *w = mha_malloc(z->a, rz_count(N) * sizeof *w);
    float *b = f->b ? mha_malloc(z->a, rz_count(N) * sizeof *b) : NULL;
    mha_status st = MHA_OK;
    if (!std_of || !covered || !w || (f->b && !b)) {
        st = mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory placing a norm");
        goto done;
    }
    if (G != width && G != N) {
        st = rz_qkn_refuse(z, side, "its group is neither one head's features nor all heads'");
        goto done;
    }
    for (int64_t c = 0; c < f->n; c++)
        std_of[c] = -1;
    for (int64_t h = 0; h < heads; h++)
        for (int64_t d = 0; d < width; d++) {
            const int64_t c = col[rep[h] * width + d];
            if (c < 0 || c >= f->n) {
                st = mha_fail(z->err, MHA_ERR_INTERNAL, "a norm's projection column %lld",
                              (long long)c);
                goto done;
            }
            std_of[c] = h * width + d;
            w[h * width + d] = f->w[c];
            if (b) b[h * width + d] = f->b[c];
        }
    /* each group: one token's features of one head (or of all heads) */
    const int64_t *ix = f->xi->data;
    for (int64_t g0 = 0; g0 < numel && st == MHA_OK; g0 += G) {
        const int64_t tok = ix[g0] / f->n, head = std_of[ix[g0] % f->n] / width;
        for (int64_t i = g0; i < g0 + G; i++) {
            const int64_t sc = std_of[ix[i] % f->n];
            if (sc < 0 || ix[i] / f->n != tok || (G == width && sc / width != head)) {
                st = rz_qkn_refuse(z, side, "a group mixes tokens, heads or other columns");
                break;
            }
            covered[sc] = 1;
        }
    }
    for (int64_t c = 0; c < N && st == MHA_OK; c++)
        if (!covered[c] || !isfinite(w[c]) || (b && !isfinite(b[c])))
            st = rz_qkn_refuse(z, side, "a feature of a head is not normalised");
    if (st != MHA_OK) goto done;
    L->qk_norm[side] = f->kind;
    L->qk_norm_whole[side] = G != width;
    L->qk_norm_eps[side] = f->eps;
    L->qk_norm_w[side] = w;
    L->qk_norm_b[side] = b;
    w = b = NULL;
done:
    mha_free(z->a, std_of);
    mha_free(z->a, covered);
    mha_free(z->a, w);
    mha_free(z->a, b);
    return st;
}
