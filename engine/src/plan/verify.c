/* verify.c -- trust, then verify, for a whole plan: on each probe input the
 * plan (attention steps through the scalar reference layer forward) and
 * the reference interpreter of the original graph must agree on every
 * graph output, or the model is refused with the largest error. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "interp.h"
#include "layer_reference.h"
#include "plan_internal.h"

/* Relative to the output's scale (max |value|, at least 1): float32
 * through many layers against the interpreter's double sums. */
#define PLAN_VERIFY_TOLERANCE 1e-4

static mha_status verify_reference_layer(void *user, const plan *P, size_t li,
                                         const mha_tensor *inputs, size_t n_inputs,
                                         mha_tensor *outputs, size_t n_outputs,
                                         const float *residual, mha_error *err) {
    (void)user;
    mha_status st = layer_reference_forward(&P->alloc, &P->layers[li].L, inputs, n_inputs, outputs,
                                            n_outputs, err);
    /* the fused residual: the graph's Add, after the layer */
    if (st == MHA_OK && residual && n_outputs > 0) {
        float *y = outputs[0].data;
        for (int64_t i = 0, n = mha_tensor_numel(&outputs[0]); i < n; i++)
            y[i] += residual[i];
    }
    /* a post-norm LayerNorm taken into the step: on Y's rows, in place */
    const int ni = P->layers[li].norm;
    if (st == MHA_OK && ni >= 0 && n_outputs > 0) {
        const int64_t D = P->norms[ni].D, rows = D > 0 ? mha_tensor_numel(&outputs[0]) / D : 0;
        if (plan_norm_rows(&P->norms[ni], outputs[0].data, NULL, outputs[0].data, rows) != 0)
            st = mha_fail(err, MHA_ERR_SHAPE,
                          "verify: attention step %zu: its norm's eps %g refused", li,
                          (double)P->norms[ni].eps);
    }
    return st;
}

/* C = A . W + bias, each sum in double, starting from the bias and adding
 * k = 0 .. K-1 in order: the plain GEMM beside the fast ones, run blocked
 * by the interpreter's (the same bits as the triple loop). */
static mha_status verify_reference_gemm(void *user, const plan *P, size_t gi, const float *A,
                                        int64_t M, float *C, const plan_ep *ep, mha_error *err) {
    const plan_gemm *g = &P->gemms[gi];
    (void)user;
    if (!g->W) return mha_fail(err, MHA_ERR_INTERNAL, "verify: GEMM step %zu has no weights", gi);
    const interp_gemm_args ga = {.M = M,
                                 .N = g->N,
                                 .K = g->K,
                                 .A = A,
                                 .a_row = g->K,
                                 .a_col = 1,
                                 .B = g->W,
                                 .ldb = g->N,
                                 .init = g->bias,
                                 .C = C,
                                 .ldc = g->N};
    mha_status st = interp_gemm_f32(&P->alloc, &ga, err);
    if (st == MHA_OK && ep) plan_ep_tile(ep, C, g->N, 0, M, 0, g->N);
    /* a post-norm LayerNorm taken into the step: on the rows, in place */
    if (st == MHA_OK && g->norm >= 0 && plan_norm_rows(&P->norms[g->norm], C, NULL, C, M) != 0)
        st = mha_fail(err, MHA_ERR_SHAPE, "verify: GEMM step %zu: its norm's eps %g refused", gi,
                      (double)P->norms[g->norm].eps);
    return st;
}

/* norm NULL: the host's reference norm on the calling thread; parallel
 * NULL: a step's data passes on it too */
const plan_backend plan_reference_backend = {
    verify_reference_layer, verify_reference_gemm, NULL, NULL, NULL, NULL, NULL};

/* Largest error of got against want relative to want's scale (its largest
 * finite magnitude, at least 1); INFINITY when shapes or the places of
 * NaN / Inf differ. One pass: the scale divides at the end. */
static double verify_error(const tensor *want, const tensor *got, int64_t *at) {
    *at = 0;
    if (!want || !got || want->dtype != got->dtype || want->rank != got->rank ||
        memcmp(want->dims, got->dims, sizeof(int64_t) * (size_t)want->rank) != 0)
        return INFINITY;
    double scale = 1.0, worst = 0.0;
    for (int64_t i = 0, n = tensor_numel(want); i < n; i++) {
        double w = tensor_get_f64(want, i), o = tensor_get_f64(got, i);
        int w_finite = isfinite(w) != 0, o_finite = isfinite(o) != 0;
        double e;
        if (w_finite && o_finite) {
            scale = fabs(w) > scale ? fabs(w) : scale;
            e = fabs(o - w);
        } else {
            /* NaN matches NaN, an infinity the same infinity */
            e = (w == o || (w != w && o != o)) ? 0.0 : INFINITY;
        }
        if (e > worst) {
            worst = e;
            *at = i;
        }
    }
    return worst / scale;
}

/* The reference: the same graph with every node interpreted (folded
 * constants aside), initializers borrowed rather than copied -- what
 * interp_run computes, without a second copy of the weights. */
static mha_status verify_reference_plan(const plan *P, plan *R, mha_error *err) {
    const ir_graph *g = P->g;
    *R = *P;
    R->steps = mha_calloc(&P->alloc, g->n_nodes ? g->n_nodes : 1, sizeof *R->steps);
    if (!R->steps) return mha_fail(err, MHA_ERR_NO_MEMORY, "verify: out of memory");
    R->n_steps = 0;
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        const ir_node *n = &g->nodes[ni];
        int folded = n->n_outputs > 0;
        for (size_t k = 0; k < n->n_outputs; k++)
            if (n->outputs[k] >= 0 && !plan_const(P, n->outputs[k])) folded = 0;
        if (folded) continue;
        R->steps[R->n_steps].kind = PLAN_STEP_INTERP;
        R->steps[R->n_steps++].index = (int)ni;
    }
    return MHA_OK;
}

/* The graph's outputs on probe p's inputs: kept from the shape pass of
 * plan_build (*in, *want borrowed), else made here by interpreting every
 * node (*owned set: free in, want with plan_free_tensors). */
static mha_status verify_expected(const plan *P, int p, tensor ***in, tensor ***want, int *owned,
                                  mha_error *err) {
    const ir_graph *g = P->g;
    *owned = 0;
    if (P->probe_in[p] && P->probe_out[p]) {
        *in = P->probe_in[p];
        *want = P->probe_out[p];
        return MHA_OK;
    }
    *owned = 1;
    *in = mha_calloc(&P->alloc, g->n_inputs ? g->n_inputs : 1, sizeof **in);
    *want = mha_calloc(&P->alloc, g->n_outputs ? g->n_outputs : 1, sizeof **want);
    if (!*in || !*want) return mha_fail(err, MHA_ERR_NO_MEMORY, "verify: out of memory");
    plan R;
    tensor **values = NULL;
    memset(&R, 0, sizeof R);
    mha_status st = verify_reference_plan(P, &R, err);
    if (st == MHA_OK) st = plan_probe_inputs(P, p, *in, err);
    if (st == MHA_OK) {
        st = plan_exec(&R, *in, NULL, 1, &values, err);
        if (st != MHA_OK) mha_error_prefix(err, "verify: evaluating the graph");
    }
    /* the clones outlive R (a copy of P on this stack): they free through
     * P's allocator, not R's */
    for (size_t k = 0; k < g->n_outputs && st == MHA_OK; k++)
        if (values[g->outputs[k]]) {
            st = tensor_clone(values[g->outputs[k]], &(*want)[k], err);
            if (st == MHA_OK) (*want)[k]->alloc = &P->alloc;
        }
    if (values) plan_values_free(&R, *in, values);
    mha_free(&P->alloc, R.steps);
    return st;
}

mha_status plan_verify(const plan *P, mha_error *err) {
    const ir_graph *g = P->g;
    mha_status st = MHA_OK;
    /* a batch of fixed-size items: probe 0 (one item) only -- each item is a
     * whole forward pass; the layers' own check mixes up two items */
    const int probes = plan_probe_items_fixed(P) ? 1 : PLAN_PROBES;
    for (int p = 0; p < probes && st == MHA_OK; p++) {
        tensor **in = NULL, **want = NULL, **got = NULL;
        int owned = 0;
        st = verify_expected(P, p, &in, &want, &owned, err);
        if (st == MHA_OK) {
            st = plan_exec(P, in, &plan_reference_backend, 0, &got, err);
            if (st != MHA_OK) mha_error_prefix(err, "verify: running the plan");
        }
        for (size_t k = 0; k < g->n_outputs && st == MHA_OK; k++) {
            int v = g->outputs[k];
            int64_t at;
            double e = verify_error(want[k], got[v], &at);
            if (e > PLAN_VERIFY_TOLERANCE) {
                char shape[96];
                st = mha_fail(
                    err, MHA_ERR_MODEL_VERIFY,
                    "verify: output '%s' of the plan differs from the graph by %.3g "
                    "(relative to its scale; tolerance %g) at element %lld of %s "
                    "(probe %d)",
                    g->values[v].name, e, PLAN_VERIFY_TOLERANCE, (long long)at,
                    want[k] ? tensor_shape_str(want[k]->rank, want[k]->dims, shape, sizeof shape)
                            : "?",
                    p);
            }
        }
        if (got) plan_values_free(P, in, got);
        if (owned) {
            plan_free_tensors(&P->alloc, want, g->n_outputs);
            plan_free_tensors(&P->alloc, in, g->n_inputs);
        }
    }
    return st;
}
