/* dims_check.c -- the output axis rules of dims.c tried at sizes the probes
 * do not reach. The probes' lengths (3, 5 and 6 tokens) cannot tell an
 * axis of `S // 8` (0 at each) from a fixed one, nor `min(S, 4)` from a
 * stride (3, 4, 4 fit floor((x + 3) / 2)); a run at 16 tokens then failed
 * against the rule. So each symbolic axis k is also set alone (the others
 * at probe 0's sizes) to 1, 2 and a long size, in shape-only runs of the
 * graph (the products that decide no shape skipped):
 *
 *     check sizes of k: 1, 2, then the first of 64, 16 that runs (not for
 *     a batch beside other symbolic axes: 1 and 2 items only)
 *     (powers of two, so that a stride of 8 shows its phase; 16 would fit
 *     S // 8 as floor((S - 1) / 6) as well)
 *
 * and every output axis must take there what its rule says. One that does
 * not gets its rule fitted again through all the points of k (probe 0's and
 * the checks'), as floor((a x + c) / b), else as that capped at its largest
 * size (a truncation: `x[:, :4]`). An axis no such rule fits is refused at
 * load by name, with its sizes, when its rule is wrong at the long size
 * (most texts would fail); wrong only at 1 or 2 tokens, it keeps its rule
 * and a run at those lengths fails by name (plan_run), as before.
 * A length through strided Convs (convlen.c) is checked past its
 * receptive field instead: at three more phases of the widest stride.
 * The runs are bounded together by the probes' work budget; a check that
 * does not run (a position table shorter than the size) checks nothing. */
#include <stdio.h>
#include <string.h>

#include "plan_internal.h"

static const int64_t check_small[] = {1, 2};
static const int64_t check_long[] = {64, 16};
#define CHECK_SMALL (int)(sizeof check_small / sizeof check_small[0])
#define CHECK_LONG (int)(sizeof check_long / sizeof check_long[0])

/* Adds the elements of each value a check made to *(int64_t *)user. */
static void check_count(void *user, int v, const tensor *t) {
    (void)v;
    plan_add_elements(user, t);
}

/* The slot of output o's axis d at check c of symbolic axis k. */
static size_t check_slot(size_t o, int k, int c, int d) {
    return PLAN_MAX_SYMS * PLAN_DIM_CHECKS +
           ((o * PLAN_MAX_SYMS + (size_t)k) * PLAN_DIM_CHECKS + (size_t)c) * MHA_MAX_RANK +
           (size_t)d;
}

/* One shape-only run with symbolic axis k at size x: its outputs' axes into
 * cdims (check c), and x at cdims[k * PLAN_DIM_CHECKS + c] when it ran
 * (-1: it did not). */
static mha_status check_run(plan *P, const unsigned char *skip, int k, int c, int64_t x,
                            int64_t *made, int64_t *cdims, int *ran, mha_error *err) {
    const ir_graph *g = P->g;
    int64_t sizes[PLAN_MAX_SYMS];
    memcpy(sizes, P->probe_sizes[0], sizeof sizes);
    sizes[k] = x;
    plan_dim_sums(P, sizes);
    *ran = 0;
    tensor **in = mha_calloc(&P->alloc, g->n_inputs ? g->n_inputs : 1, sizeof *in);
    if (!in) return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    tensor **values = NULL;
    int64_t here = 0;
    const int64_t budget = plan_probe_run_budget(g);
    /* > 0 always: 0 would be no limit */
    plan_observer obs = {check_count, &here, skip, budget > *made ? budget - *made : 1};
    mha_error e;
    mha_error_clear(&e);
    mha_status st = plan_probe_inputs_sized(P, sizes, 0x636865636bull + (uint64_t)k, in, &e);
    if (st == MHA_OK) st = plan_exec_observed(P, in, NULL, &obs, &values, &e);
    *made += here;
    for (size_t o = 0; st == MHA_OK && o < g->n_outputs; o++) {
        const tensor *t = values[g->outputs[o]];
        if (!t || t->rank > MHA_MAX_RANK) {
            st = MHA_ERR_MODEL_UNSUPPORTED;
            break;
        }
        for (int d = 0; d < t->rank; d++)
            cdims[check_slot(o, k, c, d)] = t->dims[d];
    }
    if (values) plan_values_free(P, in, values);
    plan_free_tensors(&P->alloc, in, g->n_inputs);
    if (st == MHA_OK) {
        cdims[k * PLAN_DIM_CHECKS + c] = x;
        *ran = 1;
    }
    /* a size the graph fails at (or over the budget) checks nothing */
    return st == MHA_ERR_NO_MEMORY ? mha_fail(err, st, "%s", e.message) : MHA_OK;
}

/* Whether symbolic axis k is a batch beside other symbolic axes: the first
 * axis of every input that has it. No output is sized by arithmetic of the
 * batch, and its long check (64 items) would cost the most. */
static int check_is_batch(const plan *P, int k) {
    if (P->n_syms < 2) return 0;
    for (size_t i = 0; i < P->g->n_inputs; i++)
        for (int a = 1; a < MHA_MAX_RANK; a++)
            if (P->in_syms[i][a] == k) return 0;
    return 1;
}

mha_status plan_dim_check_probes(plan *P, int64_t **cdims_out, mha_error *err) {
    const ir_graph *g = P->g;
    *cdims_out = NULL;
    /* a batch of fixed-size items: each item a full forward pass, and an
     * output axis no arithmetic of the batch but the batch itself */
    if (P->n_syms == 0 || plan_probe_items_fixed(P)) return MHA_OK;
    const size_t n = check_slot(g->n_outputs ? g->n_outputs : 1, 0, 0, 0);
    int64_t *cdims = mha_calloc(&P->alloc, n, sizeof *cdims);
    unsigned char *skip = mha_calloc(&P->alloc, g->n_nodes ? g->n_nodes : 1, 1);
    if (!cdims || !skip) {
        mha_free(&P->alloc, cdims);
        mha_free(&P->alloc, skip);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    }
    for (int c = 0; c < PLAN_MAX_SYMS * PLAN_DIM_CHECKS; c++)
        cdims[c] = -1;
    mha_status st = plan_probe_shape_only(P, skip, err);
    int64_t made = 0;
    const int64_t budget = plan_probe_run_budget(g);
    for (int k = 0; k < P->n_syms && st == MHA_OK; k++) {
        if (P->sym_sum[k][0] >= 0) continue; /* sized by the axes it sums */
        int ran = 0;
        if (P->n_convlen[k] > 0) {
            /* a length through strided Convs: 1 and 2 samples make no
             * frame; three lengths past probe 0 at other phases of the
             * widest stride instead */
            int64_t wide = 1;
            for (int c = 0; c < P->n_convlen[k]; c++)
                wide = P->convlen[k][c][0] > wide ? P->convlen[k][c][0] : wide;
            const int64_t at[PLAN_DIM_CHECKS] = {P->probe_sizes[0][k] + wide / 2 + 1,
                                                 P->probe_sizes[0][k] + 7 * wide + wide / 3,
                                                 P->probe_sizes[0][k] + 14 * wide - 1};
            for (int c = 0; c < PLAN_DIM_CHECKS && st == MHA_OK && made <= budget; c++)
                st = check_run(P, skip, k, c, at[c], &made, cdims, &ran, err);
            continue;
        }
        for (int c = 0; c < CHECK_SMALL && st == MHA_OK && made <= budget; c++)
            st = check_run(P, skip, k, c, check_small[c], &made, cdims, &ran, err);
        ran = check_is_batch(P, k);
        for (int c = 0; c < CHECK_LONG && st == MHA_OK && !ran && made <= budget; c++)
            st = check_run(P, skip, k, CHECK_SMALL, check_long[c], &made, cdims, &ran, err);
    }
    mha_free(&P->alloc, skip);
    if (st != MHA_OK) {
        mha_free(&P->alloc, cdims);
        return st;
    }
    *cdims_out = cdims;
    return MHA_OK;
}

/* The size rule r gives with symbolic axis k at x, the others at probe 0. */
static int64_t check_apply(const plan *P, const plan_dim_rule *r, int k, int64_t x) {
    if (r->fixed >= 0) return r->fixed;
    int64_t sizes[PLAN_MAX_SYMS];
    memcpy(sizes, P->probe_sizes[0], sizeof sizes);
    sizes[k] = x;
    plan_dim_sums(P, sizes);
    const int a = P->in_syms[r->input][r->axis];
    int64_t v = a >= 0 ? sizes[a] : 0;
    if (r->plus_input >= 0 && P->in_syms[r->plus_input][r->plus_axis] >= 0)
        v += sizes[P->in_syms[r->plus_input][r->plus_axis]];
    return plan_dim_apply(r, v);
}

/* r fitted again through the n points of axis k: a length rule of the
 * Convs k passes through (convlen.c), else floor((a x + c) / b), else
 * that below a cap (the points at the largest size set aside). */
static int check_refit(const plan *P, int k, const int64_t *x, const int64_t *y, int n,
                       plan_dim_rule *r) {
    if (plan_convlen_match(P, k, x, y, n, r)) return 1;
    plan_dim_rule f = *r;
    f.fixed = -1;
    f.plus_input = f.plus_axis = -1;
    f.cap = 0;
    if (!plan_dim_input_axis(P, k, &f.input, &f.axis)) return 0;
    int ok = plan_dim_fit(x, y, n, 1, &f);
    if (!ok) {
        int64_t top = y[0], lx[PLAN_DIM_CHECKS + 2], ly[PLAN_DIM_CHECKS + 2];
        int m = 0;
        for (int p = 1; p < n; p++)
            top = y[p] > top ? y[p] : top;
        for (int p = 0; p < n; p++)
            if (y[p] < top) {
                lx[m] = x[p];
                ly[m++] = y[p];
            }
        ok = m >= 2 && m < n && plan_dim_fit(lx, ly, m, 1, &f);
        f.cap = top;
        /* the capped rule must still give each point (the top ones too) */
        for (int p = 0; ok && p < n; p++)
            ok = plan_dim_apply(&f, x[p]) == y[p];
    }
    if (ok) *r = f;
    return ok;
}

mha_status plan_dim_check(plan *P, const plan_shape *shp, const int64_t *cdims, mha_error *err) {
    const ir_graph *g = P->g;
    if (!cdims) return MHA_OK;
    for (size_t o = 0; o < g->n_outputs; o++) {
        const plan_shape *s = &shp[g->outputs[o]];
        for (int d = 0; d < s->rank && d < MHA_MAX_RANK; d++) {
            plan_dim_rule *r = &P->out_rules[o][d];
            for (int k = 0; k < P->n_syms && k < PLAN_MAX_SYMS; k++) {
                int64_t x[PLAN_DIM_CHECKS + 2], y[PLAN_DIM_CHECKS + 2];
                int n = 0, wrong = 0, wrong_long = 0;
                for (int c = 0; c < PLAN_DIM_CHECKS; c++) {
                    if (cdims[k * PLAN_DIM_CHECKS + c] < 0) continue;
                    x[n] = cdims[k * PLAN_DIM_CHECKS + c];
                    y[n] = cdims[check_slot(o, k, c, d)];
                    const int64_t want = check_apply(P, r, k, x[n]);
                    /* a rule below 0 is an input too short, refused by name
                     * at run time whatever the graph makes of it */
                    if (want != y[n] && want >= 0) {
                        wrong = 1;
                        wrong_long |= c >= CHECK_SMALL || P->n_convlen[k] > 0;
                    }
                    n++;
                }
                if (!wrong) continue;
                /* probe 0 is a point of k too (the others at its sizes) */
                x[n] = P->probe_sizes[0][k];
                y[n++] = s->dims[0][d];
                const int a = r->fixed >= 0 ? k : P->in_syms[r->input][r->axis];
                const int fits = a == k && r->plus_input < 0 && check_refit(P, k, x, y, n, r);
                if (fits) P->outputs[o].dims[d] = -1; /* no longer one size */
                if (!fits && wrong_long) {
                    char pts[160];
                    size_t at = 0;
                    for (int p = 0; p < n && at < sizeof pts; p++)
                        at += (size_t)snprintf(pts + at, sizeof pts - at, "%s%lld at %lld",
                                               p ? ", " : "", (long long)y[p], (long long)x[p]);
                    return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                                    "graph output '%s': axis %d follows no rule floor((a x + c) "
                                    "/ b) of a symbolic input axis (capped or not): it is %s",
                                    g->values[g->outputs[o]].name, d, pts);
                }
            }
        }
    }
    return MHA_OK;
}
