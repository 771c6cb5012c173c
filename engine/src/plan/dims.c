/* dims.c -- the rule of each axis of a graph output: a fixed size, or a
 * function of one symbolic input axis x,
 *
 *     size = floor((mul * x + offset) / div)
 *
 * which covers an input axis as it is (mul = div = 1, offset 0), plus a
 * constant (a class token before the patches: N + 1), and the output size
 * of a strided Conv or pooling (floor((x + 2 pad - kernel) / stride) + 1,
 * ceil mode adding stride - 1 to the numerator; stacked ones compose to the
 * same form: floor((floor(y / s) + c) / t) = floor((y + c s) / (s t))).
 *
 * The two probes change every symbolic axis at once, so they cannot say
 * which axis an output axis follows (Whisper's ceil(frames / 2) at frames
 * 3, 5 gives 2, 3: the batch sizes of those probes) nor which form: a
 * graph with several symbolic axes, or whose one axis an output axis
 * does not follow as it is, is run on one more probe per symbolic axis
 * (probe 0 with that axis alone grown, plan_dim_probe_sizes) -- but the
 * first (the batch, mostly), whose axes follow it as they are: only when an
 * output axis none of the other probes moved is not it. An output axis
 * follows the one symbolic axis whose growth changes it (else the first,
 * as it is), by the simplest rule that fits the three sizes it took; or,
 * when the growth of two changes it one for one, their sum plus a
 * constant (past + new keys). A length through strided Convs takes the
 * Convs' composed rule that the probes agree with (convlen.c), not a fit.
 * A rule that a later input does
 * not obey is caught at run time (plan_run compares the graph's shapes with it). */
#include <string.h>

#include "plan_internal.h"

/* Search bounds of the fit: strides up to 64 (a patch or a pooling
 * window), up to 4 times the input (an upsampling). */
#define DIMS_MAX_DIV 64
#define DIMS_MAX_MUL 4

static int64_t dims_floor_div(int64_t n, int64_t d) {
    int64_t q = n / d;
    return (n % d != 0 && (n < 0) != (d < 0)) ? q - 1 : q;
}

int64_t plan_dim_apply(const plan_dim_rule *r, int64_t x) {
    if (r->fixed >= 0) return r->fixed;
    const int64_t div = r->div > 0 ? r->div : 1, mul = r->mul > 0 ? r->mul : 1;
    const int64_t y = dims_floor_div(mul * x + r->offset, div);
    return r->cap > 0 && y > r->cap ? r->cap : y;
}

void plan_dim_sums(const plan *P, int64_t *sizes) {
    for (int k = 0; k < P->n_syms && k < PLAN_MAX_SYMS; k++) {
        const int a = P->sym_sum[k][0], b = P->sym_sum[k][1];
        if (a >= 0) sizes[k] = sizes[a] + (b >= 0 ? sizes[b] : 0) + P->sym_sum[k][2];
    }
}

void plan_dim_probe_sizes(const plan *P, int k, int64_t *sizes) {
    for (int s = 0; s < PLAN_MAX_SYMS; s++)
        sizes[s] = P->probe_sizes[0][s];
    /* past both probes: three sizes of k, two of them adjacent (3, 5, 6
     * for the second axis), so that strides 2 and 3 show their phase */
    sizes[k] = P->probe_sizes[1][k] + 1;
    plan_dim_sums(P, sizes);
}

/* A summed symbolic axis (past + new keys) whose sizes output axis d of
 * output k takes at both probes and at every extra probe that ran: the
 * axis, or -1. Growing either term moves it, so no single free axis
 * explains it. */
static int dims_summed_axis(const plan *P, const plan_shape *s, size_t k, int d,
                            const int64_t *qdims) {
    for (int t = 0; t < P->n_syms; t++) {
        if (P->sym_sum[t][0] < 0) continue;
        int same = s->dims[0][d] == P->probe_sizes[0][t] && s->dims[1][d] == P->probe_sizes[1][t];
        for (int q = 0; qdims && q < P->n_syms && same; q++) {
            const int64_t yq = qdims[(k * PLAN_MAX_SYMS + (size_t)q) * MHA_MAX_RANK + d];
            int64_t sizes[PLAN_MAX_SYMS];
            plan_dim_probe_sizes(P, q, sizes);
            same = yq == PLAN_DIM_NOT_PROBED || yq == sizes[t];
        }
        if (same) return t;
    }
    return -1;
}

int plan_dim_fit(const int64_t *x, const int64_t *y, int n, int general, plan_dim_rule *r) {
    const int64_t max_div = general ? DIMS_MAX_DIV : 1, max_mul = general ? DIMS_MAX_MUL : 1;
    for (int64_t div = 1; div <= max_div; div++)
        for (int64_t mul = 1; mul <= max_mul; mul++) {
            /* floor((mul x + c) / div) = y  <=>  div y <= mul x + c < div (y + 1) */
            int64_t lo = INT64_MIN, hi = INT64_MAX;
            for (int p = 0; p < n; p++) {
                const int64_t a = div * y[p] - mul * x[p], b = a + div - 1;
                lo = a > lo ? a : lo;
                hi = b < hi ? b : hi;
            }
            if (n == 0 || lo > hi) continue;
            r->mul = mul;
            r->div = div;
            r->offset = lo;
            return 1;
        }
    return 0;
}

int plan_dim_input_axis(const plan *P, int s, int *input, int *axis) {
    for (size_t i = 0; i < P->g->n_inputs; i++)
        for (int a = 0; a < MHA_MAX_RANK; a++)
            if (P->in_syms[i][a] == s) {
                *input = (int)i;
                *axis = a;
                return 1;
            }
    return 0;
}

/* The candidates of P->convlen are convlen.c's (a length through strided
 * Convs); matched here, where every output axis rule is made. */
int plan_convlen_match(const plan *P, int sym, const int64_t *x, const int64_t *y, int n,
                       plan_dim_rule *r) {
    for (int c = 0; c < P->n_convlen[sym]; c++) {
        plan_dim_rule f = *r;
        f.fixed = -1;
        f.mul = 1;
        f.div = P->convlen[sym][c][0];
        f.offset = P->convlen[sym][c][1];
        f.plus_input = f.plus_axis = -1;
        f.cap = 0;
        int ok = n > 0;
        for (int p = 0; p < n && ok; p++)
            ok = y[p] == PLAN_DIM_NOT_PROBED || plan_dim_apply(&f, x[p]) == y[p];
        if (ok && plan_dim_input_axis(P, sym, &f.input, &f.axis)) {
            *r = f;
            return 1;
        }
    }
    return 0;
}

/* Whether output axis d of s takes the sizes of symbolic axis 0 at both
 * probes (two sizes fit an offset rule and a stride alike: 2, 3 -> 1, 2 is
 * x - 1 and ceil(x / 2)). */
static int dims_follows_axis0(const plan *P, const plan_shape *s, int d) {
    return s->dims[0][d] == P->probe_sizes[0][0] && s->dims[1][d] == P->probe_sizes[1][0];
}

int plan_dim_need_probes(const plan *P, const plan_shape *shp) {
    const ir_graph *g = P->g;
    for (size_t k = 0; k < g->n_outputs; k++) {
        const plan_shape *s = &shp[g->outputs[k]];
        for (int d = 0; d < s->rank; d++) {
            if (s->dims[0][d] == s->dims[1][d]) continue;
            if (P->n_syms != 1 || !dims_follows_axis0(P, s, d)) return 1;
        }
    }
    return 0;
}

int plan_dim_need_probe0(const plan *P, const plan_shape *shp, const int64_t *qdims) {
    const ir_graph *g = P->g;
    for (size_t k = 0; k < g->n_outputs; k++) {
        const plan_shape *s = &shp[g->outputs[k]];
        for (int d = 0; d < s->rank; d++) {
            int moved = 0;
            for (int q = 1; q < P->n_syms; q++) {
                const int64_t yq = qdims[(k * PLAN_MAX_SYMS + (size_t)q) * MHA_MAX_RANK + d];
                moved |= yq != PLAN_DIM_NOT_PROBED && yq != s->dims[0][d];
            }
            if (!moved && s->dims[0][d] != s->dims[1][d] && !dims_follows_axis0(P, s, d)) return 1;
        }
    }
    return 0;
}

/* Output axis d of s as the sum of the two symbolic axes a and b plus a
 * constant (a decoding step's present keys: past + new tokens, when no
 * input has that many): both probes and each extra probe of a or b (the
 * other sizes at probe 0) agree with it, and the extra probe of any other
 * axis leaves it alone. Fills r's inputs, axes and offset. */
static int dims_two_axis_sum(const plan *P, const plan_shape *s, size_t k, int d,
                             const int64_t *qdims, int a, int b, plan_dim_rule *r) {
    const int64_t c = s->dims[0][d] - P->probe_sizes[0][a] - P->probe_sizes[0][b];
    if (s->dims[1][d] != P->probe_sizes[1][a] + P->probe_sizes[1][b] + c) return 0;
    for (int q = 0; q < P->n_syms; q++) {
        const int64_t yq = qdims[(k * PLAN_MAX_SYMS + (size_t)q) * MHA_MAX_RANK + d];
        int64_t sizes[PLAN_MAX_SYMS];
        plan_dim_probe_sizes(P, q, sizes);
        if (yq != PLAN_DIM_NOT_PROBED && yq != sizes[a] + sizes[b] + c) return 0;
    }
    if (!plan_dim_input_axis(P, a, &r->input, &r->axis) ||
        !plan_dim_input_axis(P, b, &r->plus_input, &r->plus_axis))
        return 0;
    r->mul = r->div = 1;
    r->offset = c;
    return 1;
}

/* Without the extra probes (they failed to run): the first symbolic input
 * axis whose two sizes the output axis takes, else that plus a constant. */
static int dims_two_probe_rule(const plan *P, const plan_shape *shp, const plan_shape *s, int d,
                               plan_dim_rule *r) {
    const ir_graph *g = P->g;
    for (int shifted = 0; shifted < 2; shifted++)
        for (size_t i = 0; i < g->n_inputs; i++) {
            const plan_shape *is = &shp[g->inputs[i]];
            for (int a = 0; a < is->rank; a++) {
                const int64_t off = s->dims[0][d] - is->dims[0][a];
                if (P->in_syms[i][a] >= 0 && (off == 0 || shifted) &&
                    s->dims[1][d] - is->dims[1][a] == off) {
                    r->input = (int)i;
                    r->axis = a;
                    r->mul = r->div = 1;
                    r->offset = off;
                    return 1;
                }
            }
        }
    return 0;
}

mha_status plan_dim_rules(plan *P, const plan_shape *shp, const int64_t *qdims, mha_error *err) {
    const ir_graph *g = P->g;
    for (size_t k = 0; k < g->n_outputs; k++) {
        const plan_shape *s = &shp[g->outputs[k]];
        const char *name = g->values[g->outputs[k]].name;
        for (int d = 0; d < s->rank; d++) {
            plan_dim_rule *r = &P->out_rules[k][d];
            memset(r, 0, sizeof *r);
            r->mul = r->div = 1;
            r->plus_input = r->plus_axis = -1;
            const int64_t y0 = s->dims[0][d];
            int changed[PLAN_MAX_SYMS], n_changed = 0, moves = s->dims[1][d] != y0;
            for (int q = 0; qdims && q < P->n_syms; q++) {
                const int64_t yq = qdims[(k * PLAN_MAX_SYMS + (size_t)q) * MHA_MAX_RANK + d];
                if (yq != PLAN_DIM_NOT_PROBED && yq != y0) changed[n_changed++] = q;
            }
            moves |= n_changed > 0;
            if (!moves) {
                r->fixed = y0;
                continue;
            }
            r->fixed = -1;
            const int summed = dims_summed_axis(P, s, k, d, qdims);
            if (summed >= 0 && plan_dim_input_axis(P, summed, &r->input, &r->axis)) {
                r->offset = 0; /* that input axis as it is */
                continue;
            }
            if (!qdims && P->n_syms != 1) {
                if (!dims_two_probe_rule(P, shp, s, d, r))
                    return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                                    "graph output '%s': axis %d follows no input axis", name, d);
                continue;
            }
            /* the one symbolic axis; or the first, when the others' probes
             * left it alone and its own did not run */
            if (!qdims || (n_changed == 0 &&
                           qdims[(k * PLAN_MAX_SYMS) * MHA_MAX_RANK + d] == PLAN_DIM_NOT_PROBED))
                changed[n_changed++] = 0;
            if (n_changed == 2 && dims_two_axis_sum(P, s, k, d, qdims, changed[0], changed[1], r))
                continue;
            if (n_changed != 1)
                return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                                n_changed ? "graph output '%s': axis %d follows several symbolic "
                                            "input axes at once (only one is supported)"
                                          : "graph output '%s': axis %d follows no single "
                                            "symbolic input axis",
                                name, d);
            const int sym = changed[0];
            int64_t sizes[PLAN_MAX_SYMS];
            plan_dim_probe_sizes(P, sym, sizes);
            const int64_t x[3] = {P->probe_sizes[0][sym], P->probe_sizes[1][sym], sizes[sym]};
            const int64_t y[3] = {
                y0, s->dims[1][d],
                qdims ? qdims[(k * PLAN_MAX_SYMS + (size_t)sym) * MHA_MAX_RANK + d] : 0};
            const int three = qdims && y[2] != PLAN_DIM_NOT_PROBED;
            /* a length through strided Convs: their composed rule */
            if (plan_convlen_match(P, sym, x, y, three ? 3 : 2, r)) continue;
            if (!plan_dim_input_axis(P, sym, &r->input, &r->axis) ||
                !plan_dim_fit(x, y, three ? 3 : 2, three, r))
                return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                                "graph output '%s': axis %d (%lld, %lld at sizes %lld, %lld of an "
                                "input axis) follows no rule floor((a x + c) / b)",
                                name, d, (long long)y[0], (long long)y[1], (long long)x[0],
                                (long long)x[1]);
        }
    }
    return MHA_OK;
}
