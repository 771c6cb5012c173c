/* postnorm.c -- a post-norm LayerNorm (BERT, MiniLM: h = LN(x + f(x)))
 * taken into the GEMM step that makes its input: once every column of a
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
    for (size_t k = 0; k < P->g->n_outputs; k++)
        if (P->g->outputs[k] == v) return 0;
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
        if (nm->by_gemm || nm->res_value >= 0 || nm->in_value < 0 ||
            !postnorm_reads_alone(P, u, nm, nm->in_value))
            continue;
        for (size_t gi = 0; gi < P->n_gemms; gi++) {
            plan_gemm *pg = &P->gemms[gi];
            if (pg->out_value != nm->in_value || pg->conv_kh > 0 || pg->norm >= 0 || pg->N != nm->D)
                continue;
            pg->norm = (int)i;
            pg->out_value = nm->out_value;
            nm->by_gemm = 1;
            size_t used = strlen(pg->desc);
            snprintf(pg->desc + used, sizeof pg->desc - used, "+%s", nm->desc);
            break;
        }
    }
}
