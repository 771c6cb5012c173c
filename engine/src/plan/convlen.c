/* convlen.c -- a length through strided 1-D Convs (wav2vec2, HuBERT,
 * WavLM: raw samples [B, T] to frames through a feature encoder of Convs
 * with kernels / strides 10 / 5, 3 / 2, ..). The probes' few samples make
 * no frame, and three sizes past the receptive field fit thousands of
 * floor rules (the phase of a stride 320 is not seen); so the rule is not
 * fitted but composed from the Convs themselves. Each Conv makes
 *
 *     L' = floor((L + pads - dil (k - 1) - 1) / s) + 1
 *        = floor((L + c) / s),  c = pads - dil (k - 1) - 1 + s
 *
 * and floor((floor((T + o) / d) + c) / s) = floor((T + o + c d) / (d s)),
 * so the Convs the samples reach, in node order, give one candidate rule
 * per prefix of the chain (a later stride-1 Conv on the frames, the
 * position Conv, is a prefix too). The probes are set past the whole
 * chain's receptive field; dims.c takes for an output axis the candidate
 * that every probe and check of the axis agrees with, and a length no
 * candidate explains is fitted as before. */
#include <string.h>

#include "plan_internal.h"

/* a stride product past this is a malformed file, not audio */
#define CONVLEN_MAX_DIV ((int64_t)1 << 24)

/* Conv n's c and s over its one spatial axis (see above); 0: not a 1-D
 * Conv with a constant weight, or attributes past what a probe holds. */
static int convlen_conv(const plan *P, const ir_node *n, int64_t *c, int64_t *s) {
    const tensor *w = n->n_inputs >= 2 && n->inputs[1] >= 0 ? plan_const(P, n->inputs[1]) : NULL;
    if (!w || w->rank != 3) return 0;
    const int64_t k = w->dims[2];
    const ir_attr *st = ir_node_attr(n, "strides"), *dl = ir_node_attr(n, "dilations");
    const ir_attr *pd = ir_node_attr(n, "pads"), *ap = ir_node_attr(n, "auto_pad");
    *s = st && st->n == 1 ? st->ints[0] : 1;
    const int64_t dil = dl && dl->n == 1 ? dl->ints[0] : 1;
    if (*s < 1 || *s > CONVLEN_MAX_DIV || dil < 1 || dil > CONVLEN_MAX_DIV || k < 1 ||
        k > CONVLEN_MAX_DIV)
        return 0;
    if (ap && ap->s && strncmp(ap->s, "SAME", 4) == 0) {
        *c = *s - 1; /* ceil(L / s) */
        return 1;
    }
    int64_t pads = 0;
    if (pd && !(ap && ap->s && strcmp(ap->s, "VALID") == 0)) {
        if (pd->n != 2 || pd->ints[0] < 0 || pd->ints[1] < 0 || pd->ints[0] > CONVLEN_MAX_DIV ||
            pd->ints[1] > CONVLEN_MAX_DIV)
            return 0;
        pads = pd->ints[0] + pd->ints[1];
    }
    *c = pads - dil * (k - 1) - 1 + *s;
    return 1;
}

int plan_convlen_rules(const plan *P, size_t input, int64_t (*rules)[2], int max) {
    const ir_graph *g = P->g;
    unsigned char *reach = mha_calloc(&P->alloc, g->n_values ? g->n_values : 1, 1);
    if (!reach) return 0;
    reach[g->inputs[input]] = 1;
    int n = 0;
    int64_t div = 1, off = 0;
    for (size_t ni = 0; ni < g->n_nodes && n < max; ni++) {
        const ir_node *nd = &g->nodes[ni];
        int in = 0;
        for (size_t k = 0; k < nd->n_inputs; k++)
            in |= nd->inputs[k] >= 0 && reach[nd->inputs[k]];
        if (!in) continue;
        for (size_t k = 0; k < nd->n_outputs; k++)
            if (nd->outputs[k] >= 0) reach[nd->outputs[k]] = 1;
        int64_t c, s;
        if (strcmp(nd->op_type, "Conv") != 0 || nd->n_inputs < 2 || nd->inputs[0] < 0 ||
            !reach[nd->inputs[0]] || !convlen_conv(P, nd, &c, &s))
            continue;
        int64_t cd, nd_div, noff;
        if (!mha_mul_i64(c, div, &cd) || !mha_mul_i64(div, s, &nd_div) ||
            nd_div > CONVLEN_MAX_DIV || cd > CONVLEN_MAX_DIV * CONVLEN_MAX_DIV ||
            cd < -CONVLEN_MAX_DIV * CONVLEN_MAX_DIV)
            break;
        noff = off + cd;
        div = nd_div;
        off = noff;
        rules[n][0] = div;
        rules[n][1] = off;
        n++;
    }
    mha_free(&P->alloc, reach);
    return n;
}

mha_status plan_probe_fit_convlen(plan *P, int only_short, mha_error *err) {
    const ir_graph *g = P->g;
    for (size_t i = 0; i < g->n_inputs; i++) {
        const ir_value *v = &g->values[g->inputs[i]];
        const int last = v->rank - 1, k = last >= 1 ? P->in_syms[i][last] : -1;
        if (v->dtype != MHA_DTYPE_FLOAT32 || k < 0 || P->sym_sum[k][0] >= 0) continue;
        int64_t rules[PLAN_MAX_CONVLEN][2];
        const int n = plan_convlen_rules(P, i, rules, PLAN_MAX_CONVLEN);
        if (n == 0) continue;
        /* the receptive field: the fewest samples every prefix makes a
         * frame of; the widest stride */
        int64_t field = 1, wide = 1;
        for (int c = 0; c < n; c++) {
            const int64_t t = rules[c][0] - rules[c][1];
            field = t > field ? t : field;
            wide = rules[c][0] > wide ? rules[c][0] : wide;
        }
        /* two frames at probe 0; probe 1 (and its + 1, dims.c) 3.5 strides
         * on, so that the phase of the widest stride shows */
        if (field > CONVLEN_MAX_DIV || wide > CONVLEN_MAX_DIV) continue;
        if (only_short && P->probe_sizes[1][k] >= field) continue;
        const int64_t old0 = P->probe_sizes[0][k], old1 = P->probe_sizes[1][k];
        P->probe_sizes[0][k] = field + wide;
        P->probe_sizes[1][k] = field + 4 * wide + wide / 2;
        unsigned char *skip = mha_calloc(&P->alloc, g->n_nodes ? g->n_nodes : 1, 1);
        if (!skip) return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
        mha_status st = plan_probe_shape_only(P, skip, err);
        int runs = st == MHA_OK;
        int64_t made = 0;
        for (int p = 0; p < PLAN_PROBES && st == MHA_OK && runs; p++)
            st = plan_probe_runs_at(P, P->probe_sizes[p], skip, &runs, &made, err);
        mha_free(&P->alloc, skip);
        if (st != MHA_OK) return st;
        if (!runs) {
            P->probe_sizes[0][k] = old0;
            P->probe_sizes[1][k] = old1;
            continue;
        }
        memcpy(P->convlen[k], rules, sizeof rules[0] * (size_t)n);
        P->n_convlen[k] = n;
        P->convlen_min[k] = field;
        return MHA_OK;
    }
    return MHA_ERR_MODEL_UNSUPPORTED;
}
