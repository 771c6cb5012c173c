/* recognize_relbias.c -- a position bias computed from the sequence length,
 * as T5 writes it: per head, a learned value for each bucket of the
 * relative position j - i, gathered into a [1, H, Sq, Skv] bias and added
 * to the scores. Such a bias depends on the head and on j - i only, so it
 * is a table of 2 len - 1 values per head. The recogniser runs the part of
 * the graph that computes the mask terms -- it reads only the inputs'
 * shapes -- at query and key length len, checks that every head's bias is
 * constant along each diagonal, and keeps the diagonals:
 *
 *   eff[h, i, j]  (i, j < len)  =  table[h][j - i + len - 1]
 *
 * Lengths above len are refused when the layer runs (T5's buckets are all
 * equal beyond its max_distance, 128 by default; len is 512). */
#include "recognize_internal.h"

#include <math.h>
#include <string.h>

#define RZ_RELBIAS_LEN 512

/* Runs the mask terms' part of the graph at length len (batch 1, the mask
 * input at its neutral fill) into *vals. */
static mha_status rz_relbias_eval(rz_ctx *z, const layer *L, int mi, int64_t len, tensor ***vals) {
    const ir_graph *g = z->g;
    const rz_core *c = &z->core;
    int targets[2 * RZ_MAX_MASK_TERMS], nt = 0;
    for (int t = 0; t < c->n_masks; t++) {
        targets[nt++] = c->masks[t].value;
        if (c->masks[t].kind == RZ_TERM_WHERE) targets[nt++] = c->masks[t].cond;
    }
    int self = 1;
    for (size_t i = 0; i < L->n_inputs; i++)
        if (L->inputs[i].role == MHA_ROLE_KEY_VALUE) self = 0;
    rz_sizes sz = {1, len, len, 0};
    int64_t(*dims)[MHA_MAX_RANK] = mha_calloc(z->a, g->n_inputs ? g->n_inputs : 1, sizeof *dims);
    tensor **in = mha_calloc(z->a, g->n_inputs ? g->n_inputs : 1, sizeof *in);
    mha_status st = MHA_OK;
    if (!dims || !in) st = mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    if (st == MHA_OK) st = rz_probe_dims(L, self, &sz, dims, z->err);
    for (size_t i = 0; i < g->n_inputs && st == MHA_OK; i++) {
        st = tensor_new(z->a, L->inputs[i].dtype, L->inputs[i].rank, dims[i], &in[i], z->err);
        if (st != MHA_OK || (int)i != mi) continue;
        /* the neutral fill is one value everywhere */
        double v = tensor_get_f64(z->inputs[mi], 0);
        for (int64_t k = 0, n = tensor_numel(in[i]); k < n; k++)
            tensor_set_f64(in[i], k, v);
    }
    if (st == MHA_OK)
        st = interp_run_for(z->a, g, (const tensor *const *)in, targets, (size_t)nt, vals, z->err);
    for (size_t i = 0; in && i < g->n_inputs; i++)
        tensor_free(in[i]);
    mha_free(z->a, in);
    mha_free(z->a, dims);
    return st;
}

/* The mask terms' effect e at query and key length len: the graph's part
 * that computes them run there, then placed on [1, H, len, len] scores. */
static mha_status rz_relbias_at(rz_ctx *z, const layer *L, const double *cf, int mi, int64_t H,
                                int64_t len, rz_eff *e) {
    char d[160];
    const int add = z->core.masks[0].add_node;
    tensor **vals = NULL;
    mha_status st = rz_relbias_eval(z, L, mi, len, &vals);
    if (st != MHA_OK) {
        mha_error_prefix(z->err, "%s: evaluating the position bias at length %lld",
                         rz_node_desc(z, add, d, sizeof d), (long long)len);
        return st;
    }
    tensor target;
    memset(&target, 0, sizeof target);
    target.dtype = MHA_DTYPE_FLOAT32;
    target.rank = 4;
    target.dims[0] = 1, target.dims[1] = H, target.dims[2] = len, target.dims[3] = len;
    st = rz_eff_eval_in(z, cf, vals, &target, e);
    interp_values_free(z->g, vals);
    return st;
}

mha_status rz_relbias_take(rz_ctx *z, layer *L, const double *cf, int mi, const int64_t *head) {
    const rz_core *c = &z->core;
    char d[160];
    const int add = c->masks[0].add_node;
    const tensor *S = z->probe[z->g->nodes[c->score_mm].outputs[0]];
    for (int i = 0; i < c->n_score_steps; i++) /* the terms must see the scores' shape */
        if (c->score_steps[i].kind == RZ_STEP_LAYOUT) S = NULL;
    if (!S || S->rank != 4)
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "%s: the scores get a bias that is neither a mask nor zero, computed "
                        "from the sequence length; only a relative position bias on 4-D "
                        "[batch, heads, query, key] scores is supported",
                        rz_node_desc(z, add, d, sizeof d));
    const int64_t H = S->dims[1];
    int64_t len = RZ_RELBIAS_LEN;
    rz_eff e;
    memset(&e, 0, sizeof e);
    mha_status st = rz_relbias_at(z, L, cf, mi, H, len, &e);
    if (st == MHA_ERR_MODEL_UNSUPPORTED) {
        /* A bias sliced from a buffer of the model's maximum length (MPT's
         * attn_bias) exists only up to that length, and so does the file:
         * keep the longest length it computes. The probe's lengths ran. */
        int64_t lo = S->dims[2] > S->dims[3] ? S->dims[2] : S->dims[3], hi = len;
        while (hi - lo > 1) {
            const int64_t mid = lo + (hi - lo) / 2;
            rz_eff_free(z, &e);
            st = rz_relbias_at(z, L, cf, mi, H, mid, &e);
            if (st == MHA_OK)
                lo = mid;
            else if (st == MHA_ERR_MODEL_UNSUPPORTED)
                hi = mid;
            else
                break;
        }
        if (st == MHA_OK || st == MHA_ERR_MODEL_UNSUPPORTED) {
            rz_eff_free(z, &e);
            len = lo;
            st = rz_relbias_at(z, L, cf, mi, H, len, &e);
            if (st == MHA_OK) mha_error_clear(z->err);
        }
    }
    const int64_t w = 2 * len - 1;
    float *table = NULL;
    unsigned char *seen = NULL;
    if (st == MHA_OK) {
        table = mha_calloc(z->a, rz_count(H * w), sizeof(float));
        seen = mha_calloc(z->a, rz_count(H * w), 1);
        if (!table || !seen) st = mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    }
    /* slot h of batch item 0 is final head head[h]; hidden keys must be
     * the causal ones (or none), the rest constant along each diagonal */
    for (int64_t h = 0; h < H && st == MHA_OK; h++)
        for (int64_t i = 0; i < len && st == MHA_OK; i++)
            for (int64_t j = 0; j < len; j++) {
                double v = e.raw[(h * len + i) * len + j];
                if (rz_is_masked_value(v) != (L->causal && j > i)) {
                    st = mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                                  "%s: at length %lld the bias hides other keys than the "
                                  "causal mask does",
                                  rz_node_desc(z, add, d, sizeof d), (long long)len);
                    break;
                }
                if (L->causal && j > i) continue;
                int64_t at = head[h] * w + (j - i + len - 1);
                if (!seen[at]) {
                    table[at] = (float)v;
                    seen[at] = 1;
                } else if (fabs(table[at] - v) > 1e-5 * (1.0 + fabs(v))) {
                    st = mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                                  "%s: the bias on the scores depends on more than the head "
                                  "and the key - query distance (%lld)",
                                  rz_node_desc(z, add, d, sizeof d), (long long)(j - i));
                    break;
                }
            }
    rz_eff_free(z, &e);
    mha_free(z->a, seen);
    if (st != MHA_OK) {
        mha_free(z->a, table);
        return st;
    }
    L->bias = table;
    L->bias_heads = H;
    L->bias_rel_len = len;
    L->idioms |= LAYER_IDIOM_POS_BIAS;
    return MHA_OK;
}
