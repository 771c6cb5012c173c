/* postnorm.c -- a post-norm LayerNorm (BERT, MiniLM: h = LN(x + f(x)))
 * taken into the GEMM or attention step that makes its input (an
 * attention step through its output projection): once every column of a
 * row tile of the product is done (bias, activation, residual added), the
 * tile's rows are normalised in place on the thread that finished it,
 * while they are in cache, instead of a norm step passing over the whole
 * output again. Only when the GEMM's output is read by the norm alone (not
 * a graph output) and the norm adds no residual of its own; the norm is
 * the same arithmetic on the same stored floats, so the bits do not
 * change. */
#include <stdio.h>
#include <string.h>

#include "plan_internal.h"

/* Whether every reader of value v is one of nm's nodes, and v no graph
 * output. */
static int postnorm_reads_alone(const plan *P, const plan_uses *u, const plan_norm *nm, int v) {
    if (plan_is_output(P->g, v)) return 0;
    for (int e = u->first[v]; e < u->first[v + 1]; e++) {
        int inside = 0;
        for (size_t k = 0; k < nm->n_nodes; k++)
            inside |= nm->nodes[k] == u->node[e];
        if (!inside) return 0;
    }
    return 1;
}

void plan_fuse_gemm_norms(plan *P, const plan_uses *u) {
    for (size_t i = 0; i < P->n_norms; i++) {
        plan_norm *nm = &P->norms[i];
        if (nm->in_step || nm->res_value >= 0 || nm->in_value < 0 ||
            !postnorm_reads_alone(P, u, nm, nm->in_value))
            continue;
        /* after an attention layer (batch-first: its Y rows are whole rows) */
        for (size_t li = 0; li < P->n_layers && !nm->in_step; li++) {
            plan_layer *pl = &P->layers[li];
            if (!pl->recognised || pl->out_value != nm->in_value || pl->norm >= 0 ||
                pl->L.seq_first || !pl->L.has_proj || pl->L.n_outputs != 1 ||
                pl->L.outputs[0].rank < 1 ||
                pl->L.outputs[0].dims[pl->L.outputs[0].rank - 1] != nm->D)
                continue;
            pl->norm = (int)i;
            pl->out_value = nm->out_value;
            nm->in_step = 1;
            if (!pl->desc[0])
                snprintf(pl->desc, sizeof pl->desc, "%s", pl->L.form ? pl->L.form : "");
            const size_t used = strlen(pl->desc);
            if (used + 1 < sizeof pl->desc)
                snprintf(pl->desc + used, sizeof pl->desc - used, "+%.*s",
                         (int)(sizeof pl->desc - used - 2), nm->desc);
        }
        for (size_t gi = 0; gi < P->n_gemms && !nm->in_step; gi++) {
            plan_gemm *pg = &P->gemms[gi];
            if (pg->out_value != nm->in_value || pg->conv_kh > 0 || pg->norm >= 0 || pg->N != nm->D)
                continue;
            pg->norm = (int)i;
            pg->out_value = nm->out_value;
            nm->in_step = 1;
            size_t used = strlen(pg->desc);
            snprintf(pg->desc + used, sizeof pg->desc - used, "+%s", nm->desc);
            break;
        }
    }
}
