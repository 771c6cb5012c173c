/* epilogue.c -- elementwise epilogues of GEMM steps, found by data flow,
 * not by pattern: after a GEMM's output y, the largest run of float
 * elementwise nodes (Add, Sub, Mul, Div, Pow, Sqrt, Erf, Tanh, Relu,
 * Sigmoid, Neg, Exp) whose operands are y, values of the run, scalar
 * constants, constant vectors along the last axis, or one tensor of y's
 * shape (a residual) becomes a small program run on the host right after
 * the GEMM: GELU in its erf and tanh forms, ReLU, SiLU, the residual add,
 * whatever order the exporter wrote the operands in. Only the run's last
 * value may be read outside it. Computed in float32, in blocks of elements
 * so each op is a plain loop. */
#include <math.h>
#include <string.h>

#include "mha/plugin.h"
#include "plan_internal.h"

static const char *const ew_unary[] = {"Sqrt", "Erf", "Tanh", "Relu", "Sigmoid", "Neg", "Exp"};
static const char *const ew_binary[] = {"Add", "Sub", "Mul", "Div", "Pow"};

static int ew_find(const char *op, const char *const *list, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(op, list[i]) == 0) return i;
    return -1;
}

/* Same rank, dtype and dims on both probes. */
static int ew_same(const plan_shape *a, const plan_shape *b) {
    if (a->rank < 0 || a->rank != b->rank || a->dtype != b->dtype) return 0;
    for (int p = 0; p < PLAN_PROBES; p++)
        if (memcmp(a->dims[p], b->dims[p], sizeof(int64_t) * (size_t)a->rank) != 0) return 0;
    return 1;
}

/* Operand of a node in the run: its register (y or a run value), a
 * constant scalar / vector, or the one external tensor. 0 = not allowed. */
static int ew_operand(const plan *P, const plan_shape *shp, const int *reg, int y, int before,
                      int v, int64_t N, plan_ew_arg *arg, int *ext) {
    memset(arg, 0, sizeof *arg);
    if (reg[v] >= 0) {
        arg->kind = PLAN_EW_REG;
        arg->reg = reg[v];
        return 1;
    }
    const tensor *c = plan_const(P, v);
    if (c) {
        if (c->dtype != MHA_DTYPE_FLOAT32) return 0;
        int64_t n = tensor_numel(c);
        if (n == 1) {
            arg->kind = PLAN_EW_SCALAR;
            arg->scalar = ((const float *)c->data)[0];
            return 1;
        }
        if (n == N && c->rank >= 1 && c->dims[c->rank - 1] == N) {
            arg->kind = PLAN_EW_VECTOR;
            arg->vec = c->data;
            return 1;
        }
        return 0;
    }
    if ((*ext < 0 || *ext == v) && ew_same(&shp[v], &shp[y]) && P->g->values[v].producer < before) {
        *ext = v;
        arg->kind = PLAN_EW_EXT;
        return 1;
    }
    return 0;
}

int plan_ew_compile(const plan *P, const plan_uses *u, const plan_shape *shp,
                    const unsigned char *taken, int start_node, int y, int64_t N, int *reg_scratch,
                    plan_ew_prog *prog, int *out, int *nodes, size_t *n_nodes) {
    const ir_graph *g = P->g;
    memset(prog, 0, sizeof *prog);
    prog->ext_value = -1;
    *n_nodes = 0;
    *out = y;
    if (shp[y].dtype != MHA_DTYPE_FLOAT32 || shp[y].rank < 1) return 0;
    int *reg = reg_scratch; /* [n_values], -1 = not in the run */
    for (size_t v = 0; v < g->n_values; v++)
        reg[v] = -1;
    reg[y] = 0;
    int n_regs = 1, last = y, ext = -1, start = start_node;
    for (size_t ni = (size_t)(start + 1); ni < g->n_nodes; ni++) {
        const ir_node *n = &g->nodes[ni];
        if (taken[ni] || n->n_outputs != 1 || n->outputs[0] < 0) continue;
        int un = ew_find(n->op_type, ew_unary, 7), bin = ew_find(n->op_type, ew_binary, 5);
        if ((un < 0 || n->n_inputs != 1) && (bin < 0 || n->n_inputs != 2)) continue;
        int touches = 0;
        for (size_t k = 0; k < n->n_inputs; k++)
            touches |= n->inputs[k] >= 0 && reg[n->inputs[k]] >= 0;
        if (!touches) continue;
        /* the result must keep y's shape (no broadcasting beyond it) */
        if (!ew_same(&shp[n->outputs[0]], &shp[y]) || prog->n_ops == PLAN_EW_MAX_OPS ||
            n_regs == PLAN_EW_MAX_REGS)
            break;
        plan_ew_op *op = &prog->ops[prog->n_ops];
        int ext_try = ext, ok = 1;
        op->code = un >= 0 ? PLAN_EW_SQRT + un : PLAN_EW_ADD + bin;
        ok = ew_operand(P, shp, reg, y, start, n->inputs[0], N, &op->a, &ext_try);
        if (ok && bin >= 0)
            ok = ew_operand(P, shp, reg, y, start, n->inputs[1], N, &op->b, &ext_try);
        /* Pow only with a constant scalar exponent */
        if (ok && op->code == PLAN_EW_POW && op->b.kind != PLAN_EW_SCALAR) ok = 0;
        if (!ok) break;
        ext = ext_try;
        op->dst = n_regs;
        reg[n->outputs[0]] = n_regs++;
        prog->n_ops++;
        nodes[(*n_nodes)++] = (int)ni;
        last = n->outputs[0];
    }
    /* only the last value may be read outside the run */
    for (;;) {
        int bad = 0;
        for (size_t v = 0; v < g->n_values && !bad; v++) {
            if (reg[v] < 0 || (int)v == last) continue;
            for (size_t k = 0; k < g->n_outputs; k++)
                bad |= g->outputs[k] == (int)v;
            for (int e = u->first[v]; e < u->first[v + 1] && !bad; e++) {
                int c = u->node[e], inside = 0;
                for (size_t k = 0; k < *n_nodes; k++)
                    inside |= nodes[k] == c;
                bad |= !inside;
            }
        }
        if (!bad || *n_nodes == 0) break;
        /* drop the last op and try the shorter run */
        (*n_nodes)--;
        prog->n_ops--;
        reg[last] = -1;
        last = *n_nodes ? g->nodes[nodes[*n_nodes - 1]].outputs[0] : y;
    }
    if (*n_nodes == 0) return 0;
    prog->n_regs = prog->ops[prog->n_ops - 1].dst + 1;
    prog->ext_value = -1;
    for (int i = 0; i < prog->n_ops; i++)
        if (prog->ops[i].a.kind == PLAN_EW_EXT || prog->ops[i].b.kind == PLAN_EW_EXT)
            prog->ext_value = ext;
    *out = last;
    return 1;
}

/* Elements per block: each op is one loop over a block of registers. */
#define EW_BLOCK 256

static void ew_load(const plan_ew_arg *a, float (*r)[EW_BLOCK], const float *ext, int64_t e0,
                    int64_t n, int64_t N, int64_t col0, float *tmp) {
    switch (a->kind) {
    case PLAN_EW_REG:
        memcpy(tmp, r[a->reg], sizeof(float) * (size_t)n);
        break;
    case PLAN_EW_SCALAR:
        for (int64_t i = 0; i < n; i++)
            tmp[i] = a->scalar;
        break;
    case PLAN_EW_VECTOR:
        for (int64_t i = 0; i < n; i++)
            tmp[i] = a->vec[(col0 + e0 + i) % N];
        break;
    case PLAN_EW_EXT:
        memcpy(tmp, ext + e0, sizeof(float) * (size_t)n);
        break;
    }
}

void plan_ew_apply(const plan_ew_prog *prog, float *x, const float *ext, int64_t count, int64_t N,
                   int64_t col0) {
    float r[PLAN_EW_MAX_REGS][EW_BLOCK], a[EW_BLOCK], b[EW_BLOCK];
    for (int64_t e0 = 0; e0 < count; e0 += EW_BLOCK) {
        int64_t n = count - e0 < EW_BLOCK ? count - e0 : EW_BLOCK;
        memcpy(r[0], x + e0, sizeof(float) * (size_t)n);
        for (int k = 0; k < prog->n_ops; k++) {
            const plan_ew_op *op = &prog->ops[k];
            float *d = r[op->dst];
            ew_load(&op->a, r, ext, e0, n, N, col0, a);
            if (op->code >= PLAN_EW_ADD) ew_load(&op->b, r, ext, e0, n, N, col0, b);
            switch (op->code) {
            case PLAN_EW_ADD:
                for (int64_t i = 0; i < n; i++)
                    d[i] = a[i] + b[i];
                break;
            case PLAN_EW_SUB:
                for (int64_t i = 0; i < n; i++)
                    d[i] = a[i] - b[i];
                break;
            case PLAN_EW_MUL:
                for (int64_t i = 0; i < n; i++)
                    d[i] = a[i] * b[i];
                break;
            case PLAN_EW_DIV:
                for (int64_t i = 0; i < n; i++)
                    d[i] = a[i] / b[i];
                break;
            case PLAN_EW_POW:
                for (int64_t i = 0; i < n; i++)
                    d[i] = b[i] == 2.0f   ? a[i] * a[i]
                           : b[i] == 3.0f ? a[i] * a[i] * a[i]
                                          : powf(a[i], b[i]);
                break;
            case PLAN_EW_SQRT:
                for (int64_t i = 0; i < n; i++)
                    d[i] = sqrtf(a[i]);
                break;
            case PLAN_EW_ERF:
                for (int64_t i = 0; i < n; i++)
                    d[i] = erff(a[i]);
                break;
            case PLAN_EW_TANH:
                for (int64_t i = 0; i < n; i++)
                    d[i] = tanhf(a[i]);
                break;
            case PLAN_EW_RELU:
                for (int64_t i = 0; i < n; i++)
                    d[i] = a[i] > 0.0f ? a[i] : (a[i] == a[i] ? 0.0f : a[i]);
                break;
            case PLAN_EW_SIGMOID:
                for (int64_t i = 0; i < n; i++)
                    d[i] = 1.0f / (1.0f + expf(-a[i]));
                break;
            case PLAN_EW_NEG:
                for (int64_t i = 0; i < n; i++)
                    d[i] = -a[i];
                break;
            case PLAN_EW_EXP:
                for (int64_t i = 0; i < n; i++)
                    d[i] = expf(a[i]);
                break;
            }
        }
        memcpy(x + e0, r[prog->ops[prog->n_ops - 1].dst], sizeof(float) * (size_t)n);
    }
}

void plan_ep_tile(const plan_ep *ep, float *C, int64_t N, int64_t m0, int64_t m1, int64_t n0,
                  int64_t n1) {
    for (int64_t m = m0; m < m1; m++)
        plan_ew_apply(ep->prog, C + m * N + n0, ep->ext ? ep->ext + m * N + n0 : NULL, n1 - n0, N,
                      n0);
}

/* ---- the fused form ---- */

/* The activations of plugin.h in double: what an exporter's program is
 * compared with. */
static double ew_act_ref(int act, double x) {
    switch (act) {
    case MHA_ACT_GELU_ERF:
        return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case MHA_ACT_GELU_TANH:
        return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
    case MHA_ACT_RELU:
        return x > 0.0 ? x : 0.0;
    case MHA_ACT_SILU:
        return x / (1.0 + exp(-x));
    default:
        return x;
    }
}

/* 1 when the operand reads only registers and scalar constants. */
static int ew_pointwise(const plan_ew_arg *a) {
    return a->kind == PLAN_EW_REG || a->kind == PLAN_EW_SCALAR;
}

/*
 * prog = body, then optionally one Add of the body's value and the
 * external operand (either order). The body reads y and scalars only, so
 * it is a function f of one float: sampled on [-12, 12] (481 points, where
 * every activation bends, plus the far tails) it must agree with one
 * activation within 1e-5 (1 + |x|) -- far below the 1e-4..1e-3 that
 * separate GELU's two forms, far above the float rounding of an
 * exporter's formula. The plan is still verified as a whole at load.
 */
#define EW_SAMPLES 485

void plan_ew_classify(const plan_ew_prog *prog, int *act, int *residual) {
    *act = -1;
    *residual = 0;
    int n = prog->n_ops;
    if (n <= 0) return;
    const plan_ew_op *last = &prog->ops[n - 1];
    const int body_out = n >= 2 ? prog->ops[n - 2].dst : 0;
    if (last->code == PLAN_EW_ADD &&
        ((last->a.kind == PLAN_EW_EXT && last->b.kind == PLAN_EW_REG && last->b.reg == body_out) ||
         (last->b.kind == PLAN_EW_EXT && last->a.kind == PLAN_EW_REG && last->a.reg == body_out))) {
        *residual = 1;
        n--;
    }
    for (int k = 0; k < n; k++)
        if (!ew_pointwise(&prog->ops[k].a) ||
            (prog->ops[k].code >= PLAN_EW_ADD && !ew_pointwise(&prog->ops[k].b)))
            return;
    if (n == 0) {
        *act = *residual ? MHA_ACT_NONE : -1;
        return;
    }
    plan_ew_prog body = *prog;
    body.n_ops = n;
    body.n_regs = body.ops[n - 1].dst + 1;
    float x[EW_SAMPLES], y[EW_SAMPLES];
    for (int i = 0; i < EW_SAMPLES - 4; i++)
        x[i] = (float)(i - (EW_SAMPLES - 4) / 2) / 20.0f;
    x[EW_SAMPLES - 4] = -30.0f, x[EW_SAMPLES - 3] = 30.0f;
    x[EW_SAMPLES - 2] = -1e-3f, x[EW_SAMPLES - 1] = 1e-3f;
    memcpy(y, x, sizeof x);
    plan_ew_apply(&body, y, NULL, EW_SAMPLES, EW_SAMPLES, 0);
    for (int a = MHA_ACT_GELU_ERF; a < MHA_ACT_COUNT; a++) {
        int ok = 1;
        for (int i = 0; i < EW_SAMPLES && ok; i++)
            ok = fabs((double)y[i] - ew_act_ref(a, x[i])) <= 1e-5 * (1.0 + fabs((double)x[i]));
        if (ok) {
            *act = a;
            return;
        }
    }
    *residual = 0; /* a body no plugin computes: the host runs all of it */
}
