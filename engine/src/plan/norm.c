/* norm.c -- norm steps: the LayerNormalization op (opset 17) and the
 * LayerNorm PyTorch writes in plain ops (opset 14-16) over the last axis of
 * a float32 value x,
 *
 *     m = ReduceMean(x)   d = x - m   v = ReduceMean(d ^ 2 | d * d)
 *     n = d / Sqrt(v + eps) | d * (1 / s) | d * Reciprocal(s)
 *     [y = n * gamma]   [y = y + beta]
 *
 * (or the numerator a second x - ReduceMean(x) of its own, as x.var() and
 * x - x.mean() write it),
 *
 * and the RMSNorm of LLaMA and T5 (no mean, no beta),
 *
 *     v = ReduceMean(x ^ 2 | x * x)   s = Sqrt(v + eps)
 *     n = x / s | x * (1 / s) | x * Reciprocal(s)   [y = n * gamma]
 *
 * (operands of Add / Mul in either order, gamma / beta constant [D]),
 * found by data flow and run natively on float rows: mean and variance in
 * double, one pass per row each. Every value inside must be read only
 * inside. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "plan_internal.h"
#include "registry_table.h"

typedef struct norm_match {
    const plan *P;
    const plan_uses *u;
    const unsigned char *taken;
    int nodes[PLAN_NORM_MAX_NODES];
    size_t n;
} norm_match;

static int norm_is(const ir_node *n, const char *op) {
    return strcmp(n->op_type, op) == 0;
}

/* The one consumer of v (no graph output, not taken), or NULL. */
static const ir_node *norm_next(norm_match *m, int v, const char *op) {
    const ir_graph *g = m->P->g;
    if (v < 0 || m->u->first[v + 1] - m->u->first[v] != 1) return NULL;
    for (size_t k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] == v) return NULL;
    int ni = m->u->node[m->u->first[v]];
    const ir_node *n = &g->nodes[ni];
    if (m->taken[ni] || !norm_is(n, op) || n->n_outputs != 1 || n->outputs[0] < 0) return NULL;
    m->nodes[m->n++] = ni;
    return n;
}

/* The other operand of a binary node whose one operand is v. */
static int norm_other(const ir_node *n, int v) {
    if (n->n_inputs != 2) return -1;
    return n->inputs[0] == v ? n->inputs[1] : n->inputs[1] == v ? n->inputs[0] : -1;
}

static const float *norm_const(const plan *P, int v, int64_t numel) {
    const tensor *t = plan_const(P, v);
    if (!t || t->dtype != MHA_DTYPE_FLOAT32 || tensor_numel(t) != numel) return NULL;
    if (numel > 1 && t->dims[t->rank - 1] != numel) return NULL;
    return t->data;
}

/* ReduceMean over the last axis only, keeping it. */
static int norm_mean_last(const plan *P, const ir_node *n, int rank) {
    if (!norm_is(n, "ReduceMean") || ir_attr_int(n, "keepdims", 1) != 1) return 0;
    const ir_attr *ax = ir_node_attr(n, "axes");
    int64_t a;
    if (ax && ax->type == IR_ATTR_INTS && ax->n == 1) {
        a = ax->ints[0];
    } else {
        const tensor *t = n->n_inputs > 1 ? plan_const(P, n->inputs[1]) : NULL;
        if (!t || tensor_numel(t) != 1) return 0;
        a = tensor_get_i64(t, 0);
    }
    return a == -1 || a == rank - 1;
}

/* Fills out for a matched norm of x whose normalised value is n_out: then
 * the affine part when it is there (* gamma, and + beta for LayerNorm). */
static void norm_finish(norm_match *m, int kind, int x, int n_out, int64_t D, float eps,
                        plan_norm *out) {
    const plan *P = m->P;
    memset(out, 0, sizeof *out);
    out->kind = kind;
    out->in_value = x;
    out->out_value = n_out;
    out->D = D;
    out->eps = eps;
    size_t keep = m->n;
    const ir_node *mul = norm_next(m, out->out_value, "Mul");
    const float *gamma = mul ? norm_const(P, norm_other(mul, out->out_value), D) : NULL;
    if (gamma) {
        out->gamma = gamma;
        out->out_value = mul->outputs[0];
        keep = m->n;
        const ir_node *ad = kind == MHA_NORM_LAYER ? norm_next(m, out->out_value, "Add") : NULL;
        const float *beta = ad ? norm_const(P, norm_other(ad, out->out_value), D) : NULL;
        if (beta) {
            out->beta = beta;
            out->out_value = ad->outputs[0];
            keep = m->n;
        }
    }
    m->n = keep;
    memcpy(out->nodes, m->nodes, m->n * sizeof *m->nodes);
    out->n_nodes = m->n;
}

/* The square of d: Pow(d, 2) or Mul(d, d). */
static int norm_is_square(const plan *P, const ir_node *n, int d) {
    if (n->n_inputs != 2 || n->inputs[0] != d || n->n_outputs != 1 || n->outputs[0] < 0) return 0;
    if (norm_is(n, "Mul")) return n->inputs[1] == d;
    const float *two = norm_is(n, "Pow") ? norm_const(P, n->inputs[1], 1) : NULL;
    return two && *two == 2.0f;
}

/* x - m, m = ReduceMean(x) over the last axis (node ri, read only by the
 * Sub): the Sub, its nodes added, or NULL. */
static const ir_node *norm_centered(norm_match *m, int ri, int x, int rank) {
    const ir_node *r = &m->P->g->nodes[ri];
    if (m->taken[ri] || r->inputs[0] != x || r->n_outputs != 1 || r->outputs[0] < 0 ||
        !norm_mean_last(m->P, r, rank))
        return NULL;
    m->nodes[m->n++] = ri;
    const ir_node *sub = norm_next(m, r->outputs[0], "Sub");
    return sub && sub->inputs[0] == x && sub->inputs[1] == r->outputs[0] ? sub : NULL;
}

/* num / s, num * (1 / s) or num * Reciprocal(s), s read only there: the
 * quotient, or -1. *num < 0 takes any numerator and sets it. */
static int norm_divided(norm_match *m, int s, int *num) {
    const ir_node *dv = norm_next(m, s, "Div");
    if (dv && dv->inputs[1] == s &&
        (*num < 0 ? !plan_const(m->P, dv->inputs[0]) : dv->inputs[0] == *num)) {
        *num = dv->inputs[0];
        return dv->outputs[0];
    }
    const float *one = dv && dv->inputs[1] == s ? norm_const(m->P, dv->inputs[0], 1) : NULL;
    const ir_node *inv = one && *one == 1.0f ? dv : dv ? NULL : norm_next(m, s, "Reciprocal");
    const ir_node *mul = inv ? norm_next(m, inv->outputs[0], "Mul") : NULL;
    const int other = mul ? norm_other(mul, inv->outputs[0]) : -1;
    if (other < 0 || (*num >= 0 ? other != *num : plan_const(m->P, other) != NULL)) return -1;
    *num = other;
    return mul->outputs[0];
}

/* The decomposed LayerNorm from its first ReduceMean ni: the variance of
 * d = x - mean(x) squared by Pow or Mul, and the numerator d itself or (as
 * x.var() and (x - x.mean()) write it) a second x - mean(x) of its own. */
static int norm_try(norm_match *m, const plan_shape *shp, int ni, plan_norm *out) {
    const plan *P = m->P;
    const ir_graph *g = P->g;
    int x = g->nodes[ni].inputs[0];
    const plan_shape *xs = &shp[x];
    if (xs->rank < 1 || xs->dtype != MHA_DTYPE_FLOAT32 || plan_const(P, x)) return 0;
    int64_t D = xs->dims[0][xs->rank - 1];
    if (D != xs->dims[1][xs->rank - 1]) return 0;
    m->n = 0;
    const ir_node *sub = norm_centered(m, ni, x, xs->rank);
    if (!sub) return 0;
    const int d = sub->outputs[0];
    /* d's readers: the square (one or two slots), and maybe the division */
    const ir_node *sq = NULL;
    int sq_at = -1, uses = m->u->first[d + 1] - m->u->first[d];
    for (int e = m->u->first[d]; e < m->u->first[d + 1] && !sq; e++)
        if (!m->taken[m->u->node[e]] && norm_is_square(P, &g->nodes[m->u->node[e]], d)) {
            sq_at = m->u->node[e];
            sq = &g->nodes[sq_at];
        }
    const int sq_uses = sq && sq->inputs[1] == d ? 2 : 1;
    if (!sq || (uses != sq_uses && uses != sq_uses + 1)) return 0;
    for (size_t k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] == d) return 0;
    m->nodes[m->n++] = sq_at;
    const ir_node *r2 = norm_next(m, sq->outputs[0], "ReduceMean");
    if (!r2 || !norm_mean_last(P, r2, xs->rank)) return 0;
    const ir_node *add = norm_next(m, r2->outputs[0], "Add");
    const float *eps = add ? norm_const(P, norm_other(add, r2->outputs[0]), 1) : NULL;
    const ir_node *sq_root = eps ? norm_next(m, add->outputs[0], "Sqrt") : NULL;
    if (!sq_root) return 0;
    const size_t before = m->n;
    int num = uses == sq_uses ? -1 : d;
    const int n_out = norm_divided(m, sq_root->outputs[0], &num);
    if (n_out < 0) return 0;
    if (num != d) {
        /* the numerator's own x - mean(x), its nodes before the division's */
        const int pi = g->values[num].producer;
        if (pi < 0 || m->u->first[num + 1] - m->u->first[num] != 1 ||
            m->n + 2 > PLAN_NORM_MAX_NODES)
            return 0;
        const ir_node *s2 = &g->nodes[pi];
        const int ri =
            s2->n_inputs == 2 && s2->inputs[1] >= 0 ? g->values[s2->inputs[1]].producer : -1;
        if (m->taken[pi] || !norm_is(s2, "Sub") || ri < 0 ||
            !norm_is(&g->nodes[ri], "ReduceMean") ||
            m->u->first[s2->inputs[1] + 1] - m->u->first[s2->inputs[1]] != 1)
            return 0;
        const size_t n = m->n;
        if (norm_centered(m, ri, x, xs->rank) != s2) return 0;
        /* norm_centered appended ri and pi at n: move them before the division */
        memmove(m->nodes + before + 2, m->nodes + before, (n - before) * sizeof *m->nodes);
        m->nodes[before] = ri;
        m->nodes[before + 1] = pi;
    }
    norm_finish(m, MHA_NORM_LAYER, x, n_out, D, *eps, out);
    return 1;
}

/* The RMSNorm from its square node ni (Pow(x, 2) or Mul(x, x)). */
static int norm_try_rms(norm_match *m, const plan_shape *shp, int ni, plan_norm *out) {
    const plan *P = m->P;
    const ir_graph *g = P->g;
    const ir_node *sq = &g->nodes[ni];
    int x = sq->inputs[0];
    if (!norm_is_square(P, sq, x)) return 0;
    const plan_shape *xs = &shp[x];
    if (xs->rank < 1 || xs->dtype != MHA_DTYPE_FLOAT32 || plan_const(P, x)) return 0;
    int64_t D = xs->dims[0][xs->rank - 1];
    if (D != xs->dims[1][xs->rank - 1]) return 0;
    m->n = 0;
    m->nodes[m->n++] = ni;
    const ir_node *r = norm_next(m, sq->outputs[0], "ReduceMean");
    if (!r || !norm_mean_last(P, r, xs->rank)) return 0;
    const ir_node *add = norm_next(m, r->outputs[0], "Add");
    const float *eps = add ? norm_const(P, norm_other(add, r->outputs[0]), 1) : NULL;
    const ir_node *sqrt_n = eps ? norm_next(m, add->outputs[0], "Sqrt") : NULL;
    if (!sqrt_n) return 0;
    int num = x;
    const int n_out = norm_divided(m, sqrt_n->outputs[0], &num);
    if (n_out < 0) return 0;
    norm_finish(m, MHA_NORM_RMS, x, n_out, D, *eps, out);
    return 1;
}

/* The LayerNormalization op (opset 17) over the last axis, constant Scale
 * (and B), its Mean / InvStdDev outputs absent or unread. */
static int norm_try_op(norm_match *m, const plan_shape *shp, int ni, plan_norm *out) {
    const plan *P = m->P;
    const ir_graph *g = P->g;
    const ir_node *n = &g->nodes[ni];
    if (n->n_inputs < 2 || n->inputs[0] < 0 || n->n_outputs < 1 || n->outputs[0] < 0) return 0;
    const plan_shape *xs = &shp[n->inputs[0]];
    if (xs->rank < 1 || xs->dtype != MHA_DTYPE_FLOAT32) return 0;
    int64_t D = xs->dims[0][xs->rank - 1], axis = ir_attr_int(n, "axis", -1);
    if (D != xs->dims[1][xs->rank - 1] || (axis != -1 && axis != xs->rank - 1)) return 0;
    for (size_t k = 1; k < n->n_outputs; k++) {
        int o = n->outputs[k];
        if (o < 0) continue;
        if (m->u->first[o + 1] != m->u->first[o]) return 0;
        for (size_t j = 0; j < g->n_outputs; j++)
            if (g->outputs[j] == o) return 0;
    }
    const float *scale = norm_const(P, n->inputs[1], D);
    const float *bias =
        n->n_inputs > 2 && n->inputs[2] >= 0 ? norm_const(P, n->inputs[2], D) : NULL;
    if (!scale || (n->n_inputs > 2 && n->inputs[2] >= 0 && !bias)) return 0;
    memset(out, 0, sizeof *out);
    out->kind = MHA_NORM_LAYER;
    out->in_value = n->inputs[0];
    out->out_value = n->outputs[0];
    out->D = D;
    out->eps = ir_attr_float(n, "epsilon", 1e-5f);
    out->gamma = scale;
    out->beta = bias;
    out->nodes[0] = ni;
    out->n_nodes = 1;
    return 1;
}

/* The residual Add before a norm: x = a + b, both float32 of x's shape on
 * both probes, x read only by the norm's nodes. Folds the Add in (first
 * of its nodes; the last still makes the step). */
static void norm_take_residual(norm_match *m, const plan_shape *shp, plan_norm *nm) {
    const plan *P = m->P;
    const ir_graph *g = P->g;
    int x = nm->in_value, pi = g->values[x].producer;
    nm->res_value = -1;
    nm->reads[0] = nm->in_value;
    nm->n_reads = 1;
    if (pi < 0 || m->taken[pi] || nm->n_nodes >= PLAN_NORM_MAX_NODES) return;
    const ir_node *add = &g->nodes[pi];
    if (!norm_is(add, "Add") || add->n_inputs != 2 || add->n_outputs != 1) return;
    for (size_t k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] == x) return;
    for (int e = m->u->first[x]; e < m->u->first[x + 1]; e++) {
        int inside = 0;
        for (size_t k = 0; k < nm->n_nodes; k++)
            inside |= nm->nodes[k] == m->u->node[e];
        if (!inside) return;
    }
    for (int k = 0; k < 2; k++) {
        int v = add->inputs[k];
        if (v < 0 || plan_const(P, v) || shp[v].rank != shp[x].rank ||
            shp[v].dtype != MHA_DTYPE_FLOAT32)
            return;
        for (int p = 0; p < PLAN_PROBES; p++)
            if (memcmp(shp[v].dims[p], shp[x].dims[p], sizeof(int64_t) * (size_t)shp[x].rank))
                return;
    }
    memmove(nm->nodes + 1, nm->nodes, nm->n_nodes * sizeof *nm->nodes);
    nm->nodes[0] = pi;
    nm->n_nodes++;
    nm->in_value = add->inputs[0];
    nm->res_value = add->inputs[1];
    nm->reads[0] = nm->in_value;
    nm->reads[1] = nm->res_value;
    nm->n_reads = 2;
}

/* "residual+rmsnorm", "layernorm (no affine)", ... */
static void norm_describe(plan_norm *nm) {
    snprintf(nm->desc, sizeof nm->desc, "%s%s%s", nm->res_value >= 0 ? "residual+" : "",
             nm->kind == MHA_NORM_RMS ? "rmsnorm" : "layernorm", nm->gamma ? "" : " (no affine)");
}

mha_status plan_find_norms(plan *P, const plan_uses *u, const plan_shape *shp, unsigned char *taken,
                           mha_error *err) {
    const ir_graph *g = P->g;
    P->norms = mha_calloc(&P->alloc, g->n_nodes ? g->n_nodes : 1, sizeof *P->norms);
    if (!P->norms) return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    norm_match m = {P, u, taken, {0}, 0};
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        const ir_node *n = &g->nodes[ni];
        plan_norm *nm = &P->norms[P->n_norms];
        if (!taken[ni] && norm_is(n, "LayerNormalization") && norm_try_op(&m, shp, (int)ni, nm)) {
            norm_take_residual(&m, shp, nm);
            norm_describe(nm);
            for (size_t k = 0; k < nm->n_nodes; k++)
                taken[nm->nodes[k]] = 1;
            P->n_norms++;
            continue;
        }
        if (taken[ni] || n->n_inputs < 1 || n->inputs[0] < 0 || n->n_outputs != 1 ||
            n->outputs[0] < 0)
            continue;
        int rms = (norm_is(n, "Pow") || norm_is(n, "Mul")) && n->n_inputs == 2;
        if (rms ? !norm_try_rms(&m, shp, (int)ni, nm)
                : !norm_is(n, "ReduceMean") || !norm_try(&m, shp, (int)ni, nm))
            continue;
        norm_take_residual(&m, shp, nm);
        norm_describe(nm);
        for (size_t k = 0; k < nm->n_nodes; k++)
            taken[nm->nodes[k]] = 1;
        P->n_norms++;
    }
    return MHA_OK;
}

void plan_norm_args(const plan_norm *nm, const float *x, const float *res, float *y, int64_t rows,
                    mha_norm_args *out) {
    *out = (mha_norm_args){.struct_size = sizeof *out,
                           .kind = nm->kind,
                           .rows = rows,
                           .D = nm->D,
                           .x = x,
                           .ldx = nm->D,
                           .y = y,
                           .ldy = nm->D,
                           .residual = res,
                           .ldr = nm->D,
                           .gamma = nm->gamma,
                           .beta = nm->beta,
                           .eps = nm->eps,
                           .r1 = rows,
                           .num_threads = 1};
}

/* The built-in scalar backend's norm: the one reference every backend
 * shares (backends/common/kernel_common.h). */
int plan_norm_rows(const plan_norm *nm, const float *x, const float *res, float *y, int64_t rows) {
    mha_norm_args a;
    plan_norm_args(nm, x, res, y, rows, &a);
    return mha_scalar_plugin_table()->norm(NULL, &a);
}
