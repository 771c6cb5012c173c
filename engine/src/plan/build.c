/* build.c -- plan_build: a whole graph into a plan. Constants are folded
 * once, the graph is run on two probe inputs to learn every value's shape
 * (which axes follow which input axis), the attention layers are carved out
 * and recognised (partition.c), the remaining nodes become interpreted
 * steps, each value gets the last step that reads it, and the plan is
 * verified against the reference interpreter (verify.c). */
#include <stdio.h>
#include <string.h>

#include "plan_internal.h"

static void build_drop_probe_results(plan *P);

void plan_free(plan *P) {
    if (!P) return;
    mha_alloc_ctx a = P->alloc;
    for (plan_arena *A = P->arenas, *next; A; A = next) {
        next = A->next;
        plan_arena_free(P, A);
    }
    plan_arena_blocks_free(P);
    pthread_mutex_destroy(&P->arena_lock);
    for (size_t i = 0; i < P->n_layers; i++) {
        layer_clear(&a, &P->layers[i].L);
        mha_free(&a, P->layers[i].in_values);
        mha_free(&a, P->layers[i].nodes);
    }
    build_drop_probe_results(P);
    mha_free(&a, P->layers);
    for (size_t i = 0; P->gemms && i < P->n_gemms; i++) {
        mha_free(&a, P->gemms[i].W_owned);
        mha_free(&a, P->gemms[i].dw_w);
        mha_free(&a, P->gemms[i].ep_nodes);
    }
    mha_free(&a, P->gemms);
    mha_free(&a, P->norms);
    mha_free(&a, P->adds);
    mha_free(&a, P->gathers);
    mha_free(&a, P->concats);
    if (P->g && P->consts)
        for (size_t v = 0; v < P->g->n_values; v++)
            tensor_free(P->consts[v]);
    mha_free(&a, P->consts);
    mha_free(&a, P->steps);
    mha_free(&a, P->last_step);
    mha_free(&a, P->dead);
    mha_free(&a, P->out_rules);
    mha_free(&a, P->in_syms);
    mha_free(&a, P->id_extent);
    for (int pass = 0; pass < 2; pass++) {
        layer_io *io = pass ? P->outputs : P->inputs;
        size_t n = P->g ? (pass ? P->g->n_outputs : P->g->n_inputs) : 0;
        for (size_t i = 0; io && i < n; i++)
            mha_free(&a, io[i].name);
        mha_free(&a, io);
    }
    ir_free(P->g);
    mha_free(&a, P);
}

/* Folds every node whose inputs are all known at load. */
static mha_status build_fold(plan *P, mha_error *err) {
    const ir_graph *g = P->g;
    tensor *in[64], *out[16];
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        const ir_node *n = &g->nodes[ni];
        int known = n->n_inputs <= 64 && n->n_outputs <= 16 && n->n_outputs > 0 &&
                    interp_supports(n->domain, n->op_type);
        for (size_t k = 0; known && k < n->n_inputs; k++) {
            in[k] = n->inputs[k] >= 0 ? (tensor *)plan_const(P, n->inputs[k]) : NULL;
            if (n->inputs[k] >= 0 && !in[k]) known = 0;
        }
        if (!known) continue;
        memset(out, 0, sizeof out);
        mha_status st = interp_eval_node(&P->alloc, g, n, in, out, err);
        if (st == MHA_ERR_MODEL_UNSUPPORTED) {
            mha_error_clear(err);
            continue;
        }
        if (st != MHA_OK) return st;
        for (size_t k = 0; k < n->n_outputs; k++) {
            int v = n->outputs[k];
            if (v >= 0 && !P->consts[v] && !g->values[v].init)
                P->consts[v] = out[k];
            else
                tensor_free(out[k]);
        }
    }
    return MHA_OK;
}

int plan_node_folded(const plan *P, const ir_node *n) {
    for (size_t k = 0; k < n->n_outputs; k++)
        if (n->outputs[k] >= 0 && !plan_const(P, n->outputs[k])) return 0;
    return n->n_outputs > 0;
}

/* FLOPs of a node at the first probe: 2.M.N.K for MatMul / Gemm, the
 * multiply-adds of a Conv; 0 for the rest. */
static double build_node_flops(const plan *P, const plan_shape *shp, const ir_node *n) {
    if (n->n_inputs < 2 || n->n_outputs < 1 || n->outputs[0] < 0 || n->inputs[0] < 0 ||
        n->inputs[1] < 0)
        return 0.0;
    const plan_shape *y = &shp[n->outputs[0]], *A = &shp[n->inputs[0]], *W = &shp[n->inputs[1]];
    if (y->rank < 1 || A->rank < 1 || W->rank < 1) return 0.0;
    double out = 1.0;
    for (int d = 0; d < y->rank; d++)
        out *= (double)y->dims[0][d];
    if (strcmp(n->op_type, "MatMul") == 0) return 2.0 * out * (double)A->dims[0][A->rank - 1];
    if (strcmp(n->op_type, "Gemm") == 0) {
        int ta = ir_attr_int(n, "transA", 0) != 0;
        return A->rank == 2 ? 2.0 * out * (double)A->dims[0][ta ? 0 : 1] : 0.0;
    }
    if (strcmp(n->op_type, "Conv") == 0) {
        double k = 1.0;
        for (int d = 1; d < W->rank; d++)
            k *= (double)W->dims[0][d];
        return 2.0 * out * k;
    }
    (void)P;
    return 0.0;
}

/* What the shape pass records of value v at probe p. */
typedef struct build_shape_pass {
    plan_shape *shp;
    int p;
} build_shape_pass;

static void build_record_shape(void *user, int v, const tensor *t) {
    const build_shape_pass *sp = user;
    plan_shape *x = &sp->shp[v];
    if (sp->p == 0) {
        x->dtype = t->dtype;
        x->rank = t->rank;
    } else if (x->rank != t->rank) {
        x->rank = -1;
        return;
    }
    for (int d = 0; d < t->rank; d++)
        x->dims[sp->p][d] = t->dims[d];
}

/* The shape pass at probe p (build_shapes); skip: NULL, or the nodes run
 * for their shapes only, and then nothing of the probe is kept. */
static mha_status build_shape_probe(plan *P, plan_shape *shp, int p, const unsigned char *skip,
                                    mha_error *err) {
    const ir_graph *g = P->g;
    tensor **in = mha_calloc(&P->alloc, g->n_inputs ? g->n_inputs : 1, sizeof *in);
    tensor **out = mha_calloc(&P->alloc, g->n_outputs ? g->n_outputs : 1, sizeof *out);
    tensor **values = NULL;
    if (!in || !out) {
        mha_free(&P->alloc, in);
        mha_free(&P->alloc, out);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    }
    build_shape_pass sp = {shp, p};
    plan_observer obs = {build_record_shape, &sp, skip, plan_probe_run_budget(g)};
    mha_status st = plan_probe_inputs(P, p, in, err);
    if (st == MHA_OK) st = plan_exec_observed(P, in, NULL, &obs, &values, err);
    if (st != MHA_OK) mha_error_prefix(err, "evaluating the graph on a probe input");
    /* what no step made: inputs, initializers, folded constants */
    for (size_t v = 0; v < g->n_values && st == MHA_OK; v++)
        if (values[v]) build_record_shape(&sp, (int)v, values[v]);
    for (size_t k = 0; k < g->n_outputs && st == MHA_OK && !skip; k++)
        if (values[g->outputs[k]]) st = tensor_clone(values[g->outputs[k]], &out[k], err);
    if (values) plan_values_free(P, in, values);
    if (skip) { /* shapes only: no reference to keep */
        plan_free_tensors(&P->alloc, in, g->n_inputs);
        plan_free_tensors(&P->alloc, out, g->n_outputs);
        return st;
    }
    P->probe_in[p] = in;
    P->probe_out[p] = out;
    return st;
}

/* Shapes of every value on both probes: the graph interpreted (every
 * value freed after its last reader, so the pass holds what one step
 * needs, not the whole graph's values). The graph outputs and the probe
 * inputs are kept in P->probe_out / probe_in: the verification compares
 * the plan against them rather than interpreting the graph again. A
 * batch of fixed-size items verifies at probe 0 only: probe 1 (two whole
 * items) is then run for its shapes, its contractions skipped where no
 * shape depends on their values (plan_probe_shape_only), and nothing of
 * it is kept. */
static mha_status build_shapes(plan *P, plan_shape *shp, mha_error *err) {
    const ir_graph *g = P->g;
    for (size_t v = 0; v < g->n_values; v++)
        shp[v].rank = -1;
    unsigned char *skip = NULL;
    if (plan_probe_items_fixed(P)) {
        skip = mha_calloc(&P->alloc, g->n_nodes ? g->n_nodes : 1, 1);
        if (!skip) return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
        mha_status st = plan_probe_shape_only(P, skip, err);
        if (st != MHA_OK) {
            mha_free(&P->alloc, skip);
            return st;
        }
    }
    mha_status st = MHA_OK;
    for (int p = 0; p < PLAN_PROBES && st == MHA_OK; p++) {
        st = build_shape_probe(P, shp, p, p == 1 ? skip : NULL, err);
        /* the values skipped after all made some op fail: run it whole */
        if (st != MHA_OK && st != MHA_ERR_NO_MEMORY && p == 1 && skip) {
            mha_error_clear(err);
            st = build_shape_probe(P, shp, p, NULL, err);
        }
    }
    mha_free(&P->alloc, skip);
    return st;
}

/* The shape pass failed with st, its axes named apart: the unnamed ones
 * made one per index (the ids' and the mask's batch and sequence, which
 * the probes gave different sizes) and run again. MHA_ERR_MODEL_UNSUPPORTED
 * when that changes nothing or does not run either (the axes as they were). */
static mha_status build_shapes_merged(plan *P, plan_shape *shp, mha_error *err) {
    if (P->merge_unnamed || !plan_probe_has_unnamed(P)) return MHA_ERR_MODEL_UNSUPPORTED;
    mha_free(&P->alloc, P->in_syms);
    P->in_syms = NULL;
    P->merge_unnamed = 1;
    mha_status st = plan_probe_sizes(P, err);
    if (st == MHA_OK) st = build_shapes(P, shp, err);
    if (st == MHA_OK || st == MHA_ERR_NO_MEMORY) return st;
    build_drop_probe_results(P);
    mha_free(&P->alloc, P->in_syms);
    P->in_syms = NULL;
    P->merge_unnamed = 0;
    st = plan_probe_sizes(P, err);
    return st == MHA_OK ? MHA_ERR_MODEL_UNSUPPORTED : st;
}

/* The shape pass failed at the probes' small sizes, the fitting too: a
 * graph traced for lengths that are multiples of a block runs only there
 * (CANINE: 4 characters a molecule, the remainder a constant of the
 * trace). Every symbolic size times 4, then 8 (the two probes still apart
 * on every axis); MHA_ERR_MODEL_UNSUPPORTED, the sizes as they were, when
 * neither runs. */
static mha_status build_shapes_multiples(plan *P, plan_shape *shp, mha_error *err) {
    int64_t saved[PLAN_PROBES][PLAN_MAX_SYMS];
    memcpy(saved, P->probe_sizes, sizeof saved);
    static const int64_t factors[] = {4, 8};
    for (size_t f = 0; f < sizeof factors / sizeof factors[0]; f++) {
        for (int p = 0; p < PLAN_PROBES; p++)
            for (int k = 0; k < PLAN_MAX_SYMS; k++)
                P->probe_sizes[p][k] = saved[p][k] * factors[f];
        mha_error try_err;
        mha_error_clear(&try_err);
        mha_status st = build_shapes(P, shp, &try_err);
        if (st == MHA_OK) return MHA_OK;
        build_drop_probe_results(P);
        if (st == MHA_ERR_NO_MEMORY) {
            if (err) *err = try_err;
            return st;
        }
    }
    memcpy(P->probe_sizes, saved, sizeof saved);
    return MHA_ERR_MODEL_UNSUPPORTED;
}

/* The shape pass failed with st: an image input whose height and width
 * are symbolic may work at one size only (the position table), which the
 * probes' small sizes missed -- sized from the graph (plan_probe_fit_images)
 * and run again; a symbolic axis may be the sum of two others
 * (plan_probe_fit_sums); unnamed axes may be one (build_shapes_merged);
 * the lengths may have to be multiples of a block (build_shapes_multiples).
 * Else st and its message stand. */
static mha_status build_shapes_fitted(plan *P, plan_shape *shp, mha_status st, mha_error *err) {
    mha_error fit_err;
    mha_error_clear(&fit_err);
    build_drop_probe_results(P);
    mha_status fs = plan_probe_fit_images(P, &fit_err);
    if (fs == MHA_ERR_MODEL_UNSUPPORTED) fs = plan_probe_fit_convlen(P, 0, &fit_err);
    if (fs == MHA_ERR_MODEL_UNSUPPORTED) fs = plan_probe_fit_sums(P, &fit_err);
    if (fs == MHA_ERR_MODEL_UNSUPPORTED) {
        fs = build_shapes_merged(P, shp, &fit_err);
        if (fs == MHA_ERR_MODEL_UNSUPPORTED) fs = build_shapes_multiples(P, shp, &fit_err);
        if (fs == MHA_OK) mha_error_clear(err);
        if (fs == MHA_ERR_NO_MEMORY && err) *err = fit_err;
        /* a fault of the file (a Conv's strides, pads or kernel_shape) is
         * its own reason, whatever the probes' lengths */
        if (fs == MHA_ERR_MODEL_UNSUPPORTED && st != MHA_ERR_MODEL_FORMAT)
            plan_probe_explain_short(P, err);
        return fs == MHA_ERR_MODEL_UNSUPPORTED ? st : fs;
    }
    if (fs != MHA_OK) {
        if (err) *err = fit_err;
        return fs;
    }
    mha_error_clear(err);
    st = build_shapes(P, shp, err);
    if (st == MHA_OK || st == MHA_ERR_NO_MEMORY || st == MHA_ERR_LIMIT) return st;
    /* fitted, and still not: the fitted sizes may need multiples too */
    build_drop_probe_results(P);
    fs = build_shapes_multiples(P, shp, &fit_err);
    if (fs == MHA_OK) mha_error_clear(err);
    if (fs == MHA_ERR_NO_MEMORY && err) *err = fit_err;
    return fs == MHA_ERR_MODEL_UNSUPPORTED ? st : fs;
}

/* The sizes of every graph output axis on one more probe per symbolic axis
 * (dims.c), when the two probes leave some rule open: *qdims as
 * plan_dim_rules reads it, or NULL (not needed, or a probe failed to run:
 * the rules then come from the two probes alone). */
static mha_status build_axis_probes(plan *P, const plan_shape *shp, int64_t **qdims,
                                    mha_error *err) {
    const ir_graph *g = P->g;
    *qdims = NULL;
    if (!plan_dim_need_probes(P, shp)) return MHA_OK;
    const size_t n = (g->n_outputs ? g->n_outputs : 1) * PLAN_MAX_SYMS * MHA_MAX_RANK;
    int64_t *q = mha_calloc(&P->alloc, n, sizeof *q);
    if (!q) return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    for (size_t i = 0; i < n; i++)
        q[i] = PLAN_DIM_NOT_PROBED;
    mha_status st = MHA_OK;
    /* the first axis (the batch, mostly) last, and only when an output
     * axis the others leave to it is not that axis as it is */
    for (int step = 1; step <= P->n_syms && st == MHA_OK; step++) {
        const int k = step % P->n_syms;
        if (k == 0 && !plan_dim_need_probe0(P, shp, q)) break;
        tensor **in = mha_calloc(&P->alloc, g->n_inputs ? g->n_inputs : 1, sizeof *in);
        tensor **values = NULL;
        int64_t sizes[PLAN_MAX_SYMS];
        if (!in) {
            st = mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
            break;
        }
        plan_dim_probe_sizes(P, k, sizes);
        st = plan_probe_inputs_sized(P, sizes, 0x61786573ull + (uint64_t)k, in, err);
        if (st == MHA_OK) st = plan_exec(P, in, NULL, 0, &values, err);
        for (size_t o = 0; o < g->n_outputs && st == MHA_OK; o++) {
            const tensor *t = values[g->outputs[o]];
            if (!t || t->rank != shp[g->outputs[o]].rank) {
                st = MHA_ERR_MODEL_UNSUPPORTED;
                break;
            }
            for (int d = 0; d < t->rank; d++)
                q[(o * PLAN_MAX_SYMS + (size_t)k) * MHA_MAX_RANK + (size_t)d] = t->dims[d];
        }
        if (values) plan_values_free(P, in, values);
        plan_free_tensors(&P->alloc, in, g->n_inputs);
    }
    if (st == MHA_ERR_NO_MEMORY) {
        mha_free(&P->alloc, q);
        return st;
    }
    if (st != MHA_OK) {
        mha_error_clear(err);
        mha_free(&P->alloc, q);
        return MHA_OK;
    }
    *qdims = q;
    return MHA_OK;
}

/* The probe inputs and graph outputs of the shape pass, once verified. */
static void build_drop_probe_results(plan *P) {
    if (!P->g) return;
    for (int p = 0; p < PLAN_PROBES; p++) {
        if (P->probe_in[p]) plan_free_tensors(&P->alloc, P->probe_in[p], P->g->n_inputs);
        if (P->probe_out[p]) plan_free_tensors(&P->alloc, P->probe_out[p], P->g->n_outputs);
        P->probe_in[p] = P->probe_out[p] = NULL;
    }
}

/* The values step st reads. */
static const int *build_step_reads(const plan *P, const plan_step *st, size_t *n) {
    *n = st->kind == PLAN_STEP_ATTENTION ? plan_layer_n_reads(&P->layers[st->index])
         : st->kind == PLAN_STEP_GEMM    ? P->gemms[st->index].n_reads
         : st->kind == PLAN_STEP_NORM    ? P->norms[st->index].n_reads
         : st->kind == PLAN_STEP_ADD     ? P->adds[st->index].n_reads
         : st->kind == PLAN_STEP_GATHER  ? P->gathers[st->index].n_reads
         : st->kind == PLAN_STEP_CONCAT  ? P->concats[st->index].n_reads
                                         : P->g->nodes[st->index].n_inputs;
    return st->kind == PLAN_STEP_ATTENTION ? P->layers[st->index].in_values
           : st->kind == PLAN_STEP_GEMM    ? P->gemms[st->index].reads
           : st->kind == PLAN_STEP_NORM    ? P->norms[st->index].reads
           : st->kind == PLAN_STEP_ADD     ? P->adds[st->index].reads
           : st->kind == PLAN_STEP_GATHER  ? P->gathers[st->index].reads
           : st->kind == PLAN_STEP_CONCAT  ? P->concats[st->index].reads
                                           : P->g->nodes[st->index].inputs;
}

/* Drops the interpreted steps whose outputs no later step and no graph
 * output reads, last to first (a dropped step's inputs may die with it),
 * and marks their nodes in P->dead. A fused step replaces a layer's data
 * nodes, not the Shape / Gather / Concat chains that size its reshapes,
 * nor a causal buffer's Slice when the step knows it is causal: without
 * this they run at every forward pass and keep their inputs loaded. */
static mha_status build_drop_dead(plan *P, mha_error *err) {
    const ir_graph *g = P->g;
    unsigned char *live = mha_calloc(&P->alloc, g->n_values ? g->n_values : 1, 1);
    mha_free(&P->alloc, P->dead);
    P->dead = mha_calloc(&P->alloc, g->n_nodes ? g->n_nodes : 1, 1);
    if (!live || !P->dead) {
        mha_free(&P->alloc, live);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    }
    for (size_t k = 0; k < g->n_outputs; k++)
        live[g->outputs[k]] = 1;
    for (size_t s = P->n_steps; s-- > 0;) {
        const plan_step *st = &P->steps[s];
        if (st->kind == PLAN_STEP_INTERP) {
            const ir_node *n = &g->nodes[st->index];
            int used = 0;
            for (size_t k = 0; k < n->n_outputs; k++)
                used |= n->outputs[k] >= 0 && live[n->outputs[k]];
            if (!used) {
                P->dead[st->index] = 1;
                continue;
            }
        }
        size_t n;
        const int *r = build_step_reads(P, st, &n);
        for (size_t k = 0; k < n; k++)
            if (r[k] >= 0) live[r[k]] = 1;
    }
    size_t kept = 0;
    for (size_t s = 0; s < P->n_steps; s++)
        if (P->steps[s].kind != PLAN_STEP_INTERP || !P->dead[P->steps[s].index])
            P->steps[kept++] = P->steps[s];
    P->n_steps = kept;
    mha_free(&P->alloc, live);
    return MHA_OK;
}

/* build_steps' owner of a node: the kind of step it makes (or OWN_NONE: an
 * interpreted node; OWN_INSIDE: a node inside another node's step) and that
 * step's index among its kind (a layer, GEMM, norm, add or gather index) */
enum { OWN_NONE, OWN_INSIDE, OWN_LAYER, OWN_GEMM, OWN_NORM, OWN_ADD, OWN_GATHER, OWN_CONCAT };
typedef struct build_owner {
    int kind, index;
} build_owner;

static void build_own(build_owner *o, int kind, size_t index) {
    o->kind = kind;
    o->index = (int)index;
}

/* Steps in graph order: an attention step where its output is made. */
static mha_status build_steps(plan *P, const plan_shape *shp, mha_error *err) {
    const ir_graph *g = P->g;
    build_owner *owner = mha_calloc(&P->alloc, g->n_nodes ? g->n_nodes : 1, sizeof *owner);
    mha_free(&P->alloc, P->steps);
    P->steps = mha_calloc(&P->alloc, g->n_nodes ? g->n_nodes : 1, sizeof *P->steps);
    if (!owner || !P->steps) {
        mha_free(&P->alloc, owner);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    }
    for (size_t ni = 0; ni < g->n_nodes; ni++)
        build_own(&owner[ni], OWN_NONE, 0);
    for (size_t li = 0; li < P->n_layers; li++) {
        plan_layer *pl = &P->layers[li];
        pl->flops = 0.0;
        for (size_t k = 0; pl->recognised && k < pl->n_nodes; k++) {
            build_own(&owner[pl->nodes[k]], OWN_LAYER, li);
            pl->flops += build_node_flops(P, shp, &g->nodes[pl->nodes[k]]);
        }
    }
    /* GEMMs: the MatMul / Gemm makes the step, its bias Add has none */
    for (size_t gi = 0; gi < P->n_gemms; gi++) {
        if (P->gemms[gi].conv_group > 0) continue; /* a grouped Conv's later group */
        build_own(&owner[P->gemms[gi].node], OWN_GEMM, gi);
        if (P->gemms[gi].bias_node >= 0) build_own(&owner[P->gemms[gi].bias_node], OWN_INSIDE, 0);
        for (size_t k = 0; k < P->gemms[gi].n_ep_nodes; k++)
            build_own(&owner[P->gemms[gi].ep_nodes[k]], OWN_INSIDE, 0);
    }
    /* norms: the last of their nodes makes the step */
    for (size_t i = 0; i < P->n_norms; i++) {
        const plan_norm *nm = &P->norms[i];
        /* a norm in an attention step: its nodes are the step's, the step
         * placed at its last (not in pl->nodes: the norm's gamma and beta
         * are the plan's, not the layer's) */
        int by_layer = -1;
        for (size_t li = 0; nm->in_step && li < P->n_layers; li++)
            if (P->layers[li].recognised && P->layers[li].norm == (int)i) by_layer = (int)li;
        for (size_t k = 0; k < nm->n_nodes; k++) {
            if (by_layer >= 0)
                build_own(&owner[nm->nodes[k]], OWN_LAYER, (size_t)by_layer);
            else
                build_own(&owner[nm->nodes[k]], OWN_INSIDE, 0);
        }
        if (!nm->in_step) build_own(&owner[nm->nodes[nm->n_nodes - 1]], OWN_NORM, i);
    }
    /* adds, gathers and concats: the node makes the step */
    for (size_t i = 0; i < P->n_adds; i++)
        build_own(&owner[P->adds[i].node], OWN_ADD, i);
    for (size_t i = 0; i < P->n_gathers; i++)
        build_own(&owner[P->gathers[i].node], OWN_GATHER, i);
    for (size_t i = 0; i < P->n_concats; i++)
        build_own(&owner[P->concats[i].node], OWN_CONCAT, i);
    P->n_steps = 0;
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        const ir_node *n = &g->nodes[ni];
        const build_owner *o = &owner[ni];
        if (plan_node_folded(P, n) || o->kind == OWN_INSIDE) continue;
        plan_step *s = &P->steps[P->n_steps];
        s->index = o->index;
        s->flops = 0.0;
        switch (o->kind) {
        case OWN_GATHER:
            s->kind = PLAN_STEP_GATHER;
            break;
        case OWN_CONCAT:
            s->kind = PLAN_STEP_CONCAT;
            break;
        case OWN_ADD:
            s->kind = PLAN_STEP_ADD;
            break;
        case OWN_NORM:
            s->kind = PLAN_STEP_NORM;
            break;
        case OWN_GEMM:
            s->kind = PLAN_STEP_GEMM;
            s->flops = shp ? build_node_flops(P, shp, n) : 0.0;
            break;
        case OWN_LAYER: {
            const plan_layer *pl = &P->layers[o->index];
            int last = 0;
            for (size_t k = 0; k < n->n_outputs; k++)
                last |= n->outputs[k] == pl->out_value;
            if (!last) continue;
            s->kind = PLAN_STEP_ATTENTION;
            s->flops = pl->flops;
            break;
        }
        default:
            s->kind = PLAN_STEP_INTERP;
            s->index = (int)ni;
            s->flops = shp ? build_node_flops(P, shp, n) : 0.0;
            break;
        }
        P->n_steps++;
    }
    mha_free(&P->alloc, owner);
    /* the first pass (no shapes yet) interprets every node: the shape pass
     * records every value */
    if (shp) {
        mha_status st = build_drop_dead(P, err);
        if (st != MHA_OK) return st;
    }
    /* lifetimes */
    for (size_t v = 0; v < g->n_values; v++)
        P->last_step[v] = -1;
    for (size_t s = 0; s < P->n_steps; s++) {
        size_t n;
        const int *r = build_step_reads(P, &P->steps[s], &n);
        for (size_t k = 0; k < n; k++)
            if (r[k] >= 0) P->last_step[r[k]] = (int)s;
    }
    for (size_t k = 0; k < g->n_outputs; k++)
        P->last_step[g->outputs[k]] = (int)P->n_steps;
    return MHA_OK;
}

/* Lowers *extent to the extent of the gathered axis of Gather node n's
 * table when that table is a constant of the same size in every probe. */
static void build_id_extent(const plan *P, const plan_shape *shp, const ir_node *n,
                            int64_t *extent) {
    const ir_value *table = &P->g->values[n->inputs[0]];
    const plan_shape *ts = &shp[n->inputs[0]];
    int constant = table->init || (P->consts && P->consts[n->inputs[0]]);
    if (!constant || ts->rank < 1) return;
    int64_t axis = ir_attr_int(n, "axis", 0);
    if (axis < 0) axis += ts->rank;
    if (axis < 0 || axis >= ts->rank) return;
    int64_t x = ts->dims[0][axis];
    for (int p = 1; p < PLAN_PROBES; p++)
        if (ts->dims[p][axis] != x) return;
    if (x > 0 && (*extent == 0 || x < *extent)) *extent = x;
}

/* Roles of the graph inputs: token ids index an embedding table, other
 * integer or bool inputs are masks, float inputs are data. */
static mha_status build_io(plan *P, const plan_shape *shp, const int64_t *qdims, mha_error *err) {
    const ir_graph *g = P->g;
    P->inputs = mha_calloc(&P->alloc, g->n_inputs ? g->n_inputs : 1, sizeof *P->inputs);
    P->outputs = mha_calloc(&P->alloc, g->n_outputs ? g->n_outputs : 1, sizeof *P->outputs);
    P->out_rules = mha_calloc(&P->alloc, g->n_outputs ? g->n_outputs : 1, sizeof *P->out_rules);
    P->id_extent = mha_calloc(&P->alloc, g->n_inputs ? g->n_inputs : 1, sizeof *P->id_extent);
    if (!P->inputs || !P->outputs || !P->out_rules || !P->id_extent)
        return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    for (int pass = 0; pass < 2; pass++) {
        size_t n = pass ? g->n_outputs : g->n_inputs;
        for (size_t i = 0; i < n; i++) {
            int v = pass ? g->outputs[i] : g->inputs[i];
            layer_io *io = pass ? &P->outputs[i] : &P->inputs[i];
            io->name = mha_strdup(&P->alloc, g->values[v].name);
            if (!io->name) return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
            io->dtype = shp[v].rank >= 0 ? shp[v].dtype : g->values[v].dtype;
            io->rank = shp[v].rank;
            if (io->rank < 0)
                return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                                "graph output '%s' was not computed", g->values[v].name);
            for (int d = 0; d < io->rank; d++)
                io->dims[d] = shp[v].dims[0][d] == shp[v].dims[1][d] ? shp[v].dims[0][d] : -1;
            if (pass) {
                /* a declared element type the graph does not compute:
                 * another model than the declaration says (ONNX Runtime
                 * refuses it), not written in silence as the computed one */
                const mha_dtype said =
                    g->output_declared ? g->output_declared[i] : MHA_DTYPE_UNDEFINED;
                if (said != MHA_DTYPE_UNDEFINED && said != io->dtype)
                    return mha_fail(err, MHA_ERR_MODEL_FORMAT,
                                    "graph output '%s' is declared %s, but the graph computes %s "
                                    "there",
                                    io->name, mha_dtype_name(said), mha_dtype_name(io->dtype));
                io->role = MHA_ROLE_OUTPUT;
                continue;
            }
            if (io->dtype == MHA_DTYPE_INT64 || io->dtype == MHA_DTYPE_INT32) {
                int gathered = 0;
                for (size_t ni = 0; ni < g->n_nodes; ni++)
                    if (strcmp(g->nodes[ni].op_type, "Gather") == 0 && g->nodes[ni].n_inputs == 2 &&
                        g->nodes[ni].inputs[1] == v) {
                        gathered = 1;
                        build_id_extent(P, shp, &g->nodes[ni], &P->id_extent[i]);
                    }
                /* ids cast or reshaped before their Gather are ids too
                 * (their extent the tables', as the probes feed them) */
                const int64_t bound = gathered ? 0 : plan_probe_index_bound(P, v);
                if (bound > 0) P->id_extent[i] = bound;
                /* labels of a loss are ids too (any value: -100 is ignored) */
                const int labels = !gathered && bound == 0 && plan_probe_is_loss_target(P, v);
                io->role =
                    gathered || bound > 0 || labels ? MHA_ROLE_TOKEN_IDS : MHA_ROLE_ATTN_MASK;
                /* a mask by its name that indexes nothing (not position
                 * ids going into arithmetic) */
                if (!gathered && bound == 0 && !labels && strstr(io->name, "mask"))
                    P->id_extent[i] = PLAN_IDS_MASK01;
            } else {
                /* a float mask beside the ids is a mask, not data (it
                 * is what `mha run --lengths` makes) */
                io->role = io->dtype == MHA_DTYPE_BOOL || plan_probe_float_mask(P, i)
                               ? MHA_ROLE_ATTN_MASK
                               : MHA_ROLE_QUERY;
            }
        }
    }
    /* each output axis: fixed, or a rule over one input axis (dims.c) */
    return plan_dim_rules(P, shp, qdims, err);
}

/* Marks the nodes of every recognised layer taken. */
static void build_take_layers(const plan *P, unsigned char *taken) {
    for (size_t li = 0; li < P->n_layers; li++)
        for (size_t k = 0; P->layers[li].recognised && k < P->layers[li].n_nodes; k++)
            taken[P->layers[li].nodes[k]] = 1;
}

/* A layer the load computed once (every input of its core a constant of
 * the model or of its sizes: DETR's first decoder layer reads only its
 * object queries) has no attention step: it is not run, so not fused. */
static void build_drop_folded_layers(plan *P) {
    for (size_t li = 0; li < P->n_layers; li++) {
        plan_layer *pl = &P->layers[li];
        int stepped = 0;
        for (size_t k = 0; k < P->n_steps && !stepped; k++)
            stepped = P->steps[k].kind == PLAN_STEP_ATTENTION && P->steps[k].index == (int)li;
        if (!pl->recognised || stepped) continue;
        pl->recognised = 0;
        snprintf(pl->reason, sizeof pl->reason,
                 "its inputs are constants of the model: computed once at load");
    }
}

/* GEMMs first (their epilogues take the residual adds), over the nodes no
 * attention layer owns; then the Transposes around sequence-first layers
 * folded into them (a layer's output is then the batch-first one); then
 * the residual Add after each layer into its step; then norms; then the
 * float32 Adds left and the embedding Gathers. */
static mha_status build_fused(plan *P, const plan_uses *u, const plan_shape *shp, mha_error *err) {
    const ir_graph *g = P->g;
    unsigned char *taken = mha_calloc(&P->alloc, g->n_nodes ? g->n_nodes : 1, 1);
    if (!taken) return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    build_take_layers(P, taken);
    mha_status st = plan_find_gemms(P, u, shp, taken, err);
    size_t folded = 0;
    if (st == MHA_OK) st = plan_fold_layouts(P, u, shp, &folded, err);
    build_take_layers(P, taken); /* the Transposes folded into layers */
    if (st == MHA_OK) st = plan_fuse_residuals(P, u, shp, taken, err);
    if (st == MHA_OK) st = plan_find_norms(P, u, shp, taken, err);
    if (st == MHA_OK) plan_fuse_gemm_norms(P, u);
    if (st == MHA_OK) st = plan_find_node_steps(P, shp, taken, err);
    mha_free(&P->alloc, taken);
    return st;
}

mha_status plan_release_weights(plan *P, mha_error *err) {
    ir_graph *g = P->g;
    unsigned char *owned = mha_calloc(&P->alloc, g->n_nodes ? g->n_nodes : 1, 1);
    unsigned char *needed = mha_calloc(&P->alloc, g->n_values ? g->n_values : 1, 1);
    if (!owned || !needed) {
        mha_free(&P->alloc, owned);
        mha_free(&P->alloc, needed);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    }
    for (size_t li = 0; li < P->n_layers; li++)
        for (size_t k = 0; P->layers[li].recognised && k < P->layers[li].n_nodes; k++)
            owned[P->layers[li].nodes[k]] = 1;
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        const ir_node *n = &g->nodes[ni];
        if (owned[ni] || plan_node_folded(P, n) || (P->dead && P->dead[ni])) continue;
        for (size_t k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0) needed[n->inputs[k]] = 1;
    }
    for (size_t k = 0; k < g->n_outputs; k++)
        needed[g->outputs[k]] = 1;
    for (size_t v = 0; v < g->n_values; v++) {
        if (needed[v]) continue;
        tensor_free(g->values[v].init);
        g->values[v].init = NULL;
        tensor_free(P->consts[v]);
        P->consts[v] = NULL;
    }
    mha_free(&P->alloc, owned);
    mha_free(&P->alloc, needed);
    return MHA_OK;
}

mha_status plan_build(const mha_alloc_ctx *a, ir_graph **gp, int flags, plan **out,
                      mha_error *err) {
    const int skip_verify = (flags & PLAN_SKIP_VERIFY) != 0;
    *out = NULL;
    plan *P = mha_calloc(a, 1, sizeof *P);
    if (!P) {
        ir_free(*gp);
        *gp = NULL;
        return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    }
    P->alloc = *a;
    if (pthread_mutex_init(&P->arena_lock, NULL) != 0) {
        mha_free(a, P);
        ir_free(*gp);
        *gp = NULL;
        return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: cannot create a mutex");
    }
    P->g = *gp;
    *gp = NULL;
    P->keep_graph = (flags & PLAN_KEEP_GRAPH) != 0;
    const ir_graph *g = P->g;
    plan_uses u;
    memset(&u, 0, sizeof u);
    plan_shape *shp = NULL;
    int64_t *qdims = NULL, *cdims = NULL;
    mha_status st = MHA_OK;
    P->consts = mha_calloc(a, g->n_values ? g->n_values : 1, sizeof *P->consts);
    P->last_step = mha_calloc(a, g->n_values ? g->n_values : 1, sizeof *P->last_step);
    shp = mha_calloc(a, g->n_values ? g->n_values : 1, sizeof *shp);
    if (!P->consts || !P->last_step || !shp)
        st = mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    if (st == MHA_OK) st = build_fold(P, err);
    if (st == MHA_OK) plan_fold_batchnorm(P);
    if (st == MHA_OK) st = plan_probe_sizes(P, err);
    if (st == MHA_OK) st = build_steps(P, NULL, err); /* every node interpreted */
    if (st == MHA_OK) {
        /* only a failed shape pass is fitted again: a fold or probe-size
         * failure before it leaves no probe axes to fit; nor is one over a
         * limit (the probe's work budget: a fixed axis of 10^6 in a
         * malformed file), which the fitting's tries at other sizes of the
         * same axes would each run into again */
        /* samples shorter than a strided Conv chain's receptive field make
         * no frame: a graph that runs on the empty frames anyway (no norm
         * over them) gave its output lengths from nothing, and refused
         * most lengths at run time ("the graph computed a shape other than
         * its rule gives"); the probes are set past the field first */
        mha_error fit_err;
        mha_error_clear(&fit_err);
        mha_status fs = plan_probe_fit_convlen(P, 1, &fit_err);
        if (fs != MHA_OK && fs != MHA_ERR_MODEL_UNSUPPORTED) {
            st = fs;
            if (err) *err = fit_err;
        }
    }
    if (st == MHA_OK) {
        st = build_shapes(P, shp, err);
        if (st != MHA_OK && st != MHA_ERR_NO_MEMORY && st != MHA_ERR_LIMIT)
            st = build_shapes_fitted(P, shp, st, err);
    }
    if (st == MHA_OK) {
        /* sizes the same at both probes, then what is computed from them */
        size_t folded = 0;
        st = plan_fold_static_dims(P, shp, &folded, err);
        if (st == MHA_OK && folded) st = build_fold(P, err);
    }
    if (st == MHA_OK) st = build_axis_probes(P, shp, &qdims, err);
    if (st == MHA_OK) st = plan_find_batch_axis(P, shp, err);
    if (st == MHA_OK) st = plan_dim_check_probes(P, &cdims, err);
    if (st == MHA_OK) st = plan_uses_build(a, g, &u, err);
    if (st == MHA_OK) st = plan_partition(P, &u, shp, err);
    if (st == MHA_OK) st = build_fused(P, &u, shp, err);
    if (st == MHA_OK) st = build_steps(P, shp, err);
    if (st == MHA_OK) build_drop_folded_layers(P);
    if (st == MHA_OK) st = build_io(P, shp, qdims, err);
    if (st == MHA_OK) st = plan_dim_check(P, shp, cdims, err);
    if (st == MHA_OK && !skip_verify) st = plan_verify(P, err);
    build_drop_probe_results(P);
    plan_uses_free(a, &u);
    mha_free(a, shp);
    mha_free(a, qdims);
    mha_free(a, cdims);
    if (st != MHA_OK) {
        plan_free(P);
        return st;
    }
    *out = P;
    return MHA_OK;
}

int plan_gemms_alike(const plan *P, const plan *fresh, size_t i, size_t j) {
    const plan_gemm *g = &P->gemms[i], *h = &P->gemms[j];
    const float *w = g->W ? g->W : fresh ? fresh->gemms[i].W : NULL;
    const float *v = h->W ? h->W : fresh ? fresh->gemms[j].W : NULL;
    if (!w || !v || g->K != h->K || g->N != h->N || !g->bias != !h->bias) return 0;
    const size_t n = (size_t)g->K * (size_t)g->N;
    return (w == v || memcmp(w, v, n * sizeof *w) == 0) &&
           (g->bias == h->bias || memcmp(g->bias, h->bias, (size_t)g->N * sizeof *w) == 0);
}

size_t plan_weight_bytes(const plan *P) {
    size_t bytes = 0;
    /* layers and steps with the same weights (ALBERT's) count once, as
     * they are packed once (runtime/model.c) */
    for (size_t i = 0; i < P->n_layers; i++) {
        int seen = 0;
        for (size_t j = 0; j < i && !seen && P->layers[i].recognised; j++)
            seen = P->layers[j].recognised && layer_weights_alike(&P->layers[i].L, &P->layers[j].L);
        if (P->layers[i].recognised && !seen) bytes += layer_weight_bytes(&P->layers[i].L);
    }
    for (size_t i = 0; i < P->n_gemms; i++) {
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = plan_gemms_alike(P, NULL, i, j);
        if (!seen) bytes += (size_t)(P->gemms[i].K + 1) * (size_t)P->gemms[i].N * sizeof(float);
    }
    unsigned char *read = mha_calloc(&P->alloc, P->g->n_values ? P->g->n_values : 1, 1);
    if (!read) return bytes;
    for (size_t s = 0; s < P->n_steps; s++) {
        const plan_step *st = &P->steps[s];
        /* the constants a step of one node reads (not a GEMM's or a layer's:
         * counted above) */
        const int ni = st->kind == PLAN_STEP_INTERP   ? st->index
                       : st->kind == PLAN_STEP_ADD    ? P->adds[st->index].node
                       : st->kind == PLAN_STEP_GATHER ? P->gathers[st->index].node
                       : st->kind == PLAN_STEP_CONCAT ? P->concats[st->index].node
                                                      : -1;
        if (ni < 0) continue;
        const ir_node *n = &P->g->nodes[ni];
        for (size_t k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0) read[n->inputs[k]] = 1;
    }
    for (size_t v = 0; v < P->g->n_values; v++)
        if (read[v] && plan_const(P, (int)v)) bytes += plan_const(P, (int)v)->nbytes;
    mha_free(&P->alloc, read);
    return bytes;
}

double plan_flops(const plan *P, double *interp_flops) {
    double all = 0.0, in = 0.0;
    for (size_t s = 0; s < P->n_steps; s++) {
        all += P->steps[s].flops;
        if (P->steps[s].kind == PLAN_STEP_INTERP) in += P->steps[s].flops;
    }
    if (interp_flops) *interp_flops = in;
    return all;
}
