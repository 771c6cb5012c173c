/* batch_axis.c -- which axis of a whole model's token ids is the batch.
 *
 * Ids [A0, A1] reach the embedding either batch first (BERT, GPT-2: [B, S])
 * or sequence first (PyTorch's tutorial language model: `src` [S, B] into
 * nn.TransformerEncoder without batch_first). Names of axes prove nothing,
 * so the graph is asked what a batch axis means: items are independent.
 *
 *   base    = graph(ids)                           probe 0, kept by the shape pass
 *   for a in (0, 1):
 *       ids' = ids with index 0 along axis a given other tokens
 *       out' = graph(ids')                         interpreted, as the probe
 *       a holds  <=>  in every output having an axis of a's size symbol,
 *           the slices at the other indices of that axis are bitwise
 *           base's, and at least one value differs
 *
 * Index 0, not 1: a causal model's first token reaches every later one,
 * so the sequence axis fails the test whichever way the ids lie. The one
 * axis that holds is the batch; both (nothing mixes the tokens) keep axis
 * 0. Neither -- a model whose batch statistics mix the items (an int8
 * model's one activation scale for the batch) -- asks again with alike
 * items: every index along a given index 0's tokens, a holds when the
 * outputs' slices along it are all alike (identical items give identical
 * results, identical tokens still differ by position). Still neither, or
 * both, or outputs without an item axis: the batch is unknown
 * (PLAN_BATCH_UNKNOWN), and what pads or splits a batch refuses the model
 * by name. A model whose ids are not [sym, sym] keeps axis 0. */
#include <string.h>

#include "plan_internal.h"

/* The integer input of rank 2 with two symbolic axes that indexes a table:
 * the token ids; -1 when there is none. */
static int batch_ids_input(const plan *P) {
    const ir_graph *g = P->g;
    for (size_t i = 0; i < g->n_inputs; i++) {
        const ir_value *v = &g->values[g->inputs[i]];
        if ((v->dtype != MHA_DTYPE_INT64 && v->dtype != MHA_DTYPE_INT32) || v->rank != 2) continue;
        if (P->in_syms[i][0] < 0 || P->in_syms[i][1] < 0 || P->in_syms[i][0] == P->in_syms[i][1])
            continue;
        if (plan_probe_index_bound(P, g->inputs[i]) >= 2) return (int)i;
    }
    return -1;
}

/* The first axis of output o following symbolic axis `sym` on both probes
 * (no other symbol of the same sizes), or -1. */
static int batch_output_axis(const plan *P, const plan_shape *s, int sym) {
    for (int d = 0; d < s->rank; d++) {
        int match = 1;
        for (int p = 0; p < PLAN_PROBES && match; p++)
            match = s->dims[p][d] == P->probe_sizes[p][sym];
        if (match) return d;
    }
    return -1;
}

/* The sizes around axis d of t: outer (the axes before it), the bytes of
 * one slice's run (the axes after it), for walking its slices. */
static void batch_around(const tensor *t, int d, int64_t *outer, size_t *run) {
    int64_t inner = 1;
    *outer = 1;
    for (int k = 0; k < d; k++)
        *outer *= t->dims[k];
    for (int k = d + 1; k < t->rank; k++)
        inner *= t->dims[k];
    *run = (size_t)inner * mha_dtype_size(t->dtype);
}

/* Whether want and got differ only in slice `keep` of axis d: 1 yes (and
 * *changed set when that slice differs), 0 another slice differs. */
static int batch_only_slice(const tensor *want, const tensor *got, int d, int64_t keep,
                            int *changed) {
    int64_t outer;
    size_t run;
    batch_around(want, d, &outer, &run);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < want->dims[d]; j++) {
            const size_t at = (size_t)(o * want->dims[d] + j) * run;
            const int same =
                memcmp((const char *)want->data + at, (const char *)got->data + at, run) == 0;
            if (j == keep && !same) *changed = 1;
            if (j != keep && !same) return 0;
        }
    return 1;
}

/* Whether every slice of t along axis d is bitwise slice 0. */
static int batch_slices_alike(const tensor *t, int d) {
    int64_t outer;
    size_t run;
    batch_around(t, d, &outer, &run);
    for (int64_t o = 0; o < outer; o++) {
        const char *first = (const char *)t->data + (size_t)(o * t->dims[d]) * run;
        for (int64_t j = 1; j < t->dims[d]; j++)
            if (memcmp(first, first + (size_t)j * run, run) != 0) return 0;
    }
    return 1;
}

/* Every slice of t along axis d made slice 0's. */
static void batch_copy_slice0(tensor *t, int d) {
    int64_t outer;
    size_t run;
    batch_around(t, d, &outer, &run);
    for (int64_t o = 0; o < outer; o++) {
        char *first = (char *)t->data + (size_t)(o * t->dims[d]) * run;
        for (int64_t j = 1; j < t->dims[d]; j++)
            memcpy(first + (size_t)j * run, first, run);
    }
}

/* The test of the top for axis a (symmetric 0): index 0 along a given
 * other tokens, outputs changed in that slice only. symmetric 1: every
 * index along a given index 0's tokens, the outputs' slices along a all
 * alike -- identical items give identical results even where a batch
 * statistic mixes them (an int8 model's one scale for the whole batch),
 * while identical tokens at every position still differ by position. */
static mha_status batch_try_axis(plan *P, const plan_shape *shp, int ids, int a, int symmetric,
                                 int *holds, mha_error *err) {
    const ir_graph *g = P->g;
    tensor **base_in = P->probe_in[0], **base_out = P->probe_out[0];
    *holds = 0;
    tensor **in = mha_calloc(&P->alloc, g->n_inputs, sizeof *in);
    if (!in) return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    mha_status st = MHA_OK;
    for (size_t i = 0; i < g->n_inputs && st == MHA_OK; i++)
        st = tensor_clone(base_in[i], &in[i], err);
    tensor **values = NULL;
    if (st == MHA_OK) {
        tensor *t = in[ids];
        const int64_t bound = plan_probe_index_bound(P, g->inputs[ids]);
        const int sym = P->in_syms[ids][a];
        for (int64_t r = 0; !symmetric && r < t->dims[0]; r++)
            for (int64_t c = 0; c < t->dims[1]; c++) {
                const int64_t e = r * t->dims[1] + c;
                if ((a == 0 ? r : c) == 0) /* moved to the next id of the table */
                    tensor_set_f64(t, e, (double)((tensor_get_i64(t, e) + 1) % bound));
            }
        /* alike: index 0's along every axis of a's symbol, the masks' too */
        for (size_t i = 0; symmetric && i < g->n_inputs; i++)
            for (int d = 0; d < in[i]->rank && d < MHA_MAX_RANK; d++)
                if (P->in_syms[i][d] == sym) batch_copy_slice0(in[i], d);
        st = plan_exec(P, in, NULL, 0, &values, err);
    }
    if (st == MHA_OK) {
        const int sym = P->in_syms[ids][a];
        int seen = 0, changed = 0, ok = 1;
        for (size_t o = 0; o < g->n_outputs && ok; o++) {
            const int v = g->outputs[o];
            const tensor *want = base_out[o], *got = values[v];
            const int d = batch_output_axis(P, &shp[v], sym);
            if (d < 0 || !want || !got || want->rank != got->rank || d >= want->rank ||
                want->dtype != got->dtype ||
                memcmp(want->dims, got->dims, sizeof(int64_t) * (size_t)want->rank) != 0)
                continue;
            seen = 1;
            ok = symmetric ? batch_slices_alike(got, d)
                           : batch_only_slice(want, got, d, 0, &changed);
        }
        *holds = seen && ok && (symmetric || changed);
    }
    if (values) plan_values_free(P, in, values);
    plan_free_tensors(&P->alloc, in, g->n_inputs);
    return st;
}

mha_status plan_find_batch_axis(plan *P, const plan_shape *shp, mha_error *err) {
    P->batch_axis = 0;
    P->ids_input = -1;
    const int ids = batch_ids_input(P);
    if (ids < 0 || !P->probe_in[0] || !P->probe_out[0]) return MHA_OK;
    P->ids_input = ids;
    /* independence first; the items mixed (both fail): alike items */
    for (int symmetric = 0; symmetric < 2; symmetric++) {
        int holds[2] = {0, 0};
        for (int a = 0; a < 2; a++) {
            mha_error e;
            mha_error_clear(&e);
            mha_status st = batch_try_axis(P, shp, ids, a, symmetric, &holds[a], &e);
            if (st == MHA_ERR_NO_MEMORY) return mha_fail(err, st, "%s", e.message);
            if (st != MHA_OK) { /* a probe that does not run: the batch unknown */
                P->batch_axis = PLAN_BATCH_UNKNOWN;
                return MHA_OK;
            }
        }
        if (holds[0] || holds[1]) {
            P->batch_axis = holds[0] && holds[1] && symmetric ? PLAN_BATCH_UNKNOWN
                            : holds[0]                        ? 0
                                                              : 1;
            return MHA_OK;
        }
    }
    P->batch_axis = PLAN_BATCH_UNKNOWN;
    return MHA_OK;
}
