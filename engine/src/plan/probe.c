/* probe.c -- the probe inputs of a whole model: each symbolic axis of the
 * graph inputs (batch, sequence, ...) gets a small size per probe, different
 * between probes so that what depends on it shows; token ids stay inside
 * the embedding tables they index, integer masks are 0 / 1, mostly 1. */
#include <string.h>

#include "plan_internal.h"

/* Whether the one symbolic axis is the first axis of each input that has
 * it, in front of fixed ones. */
int plan_probe_items_fixed(const plan *P) {
    const ir_graph *g = P->g;
    if (P->n_syms != 1) return 0;
    for (size_t i = 0; i < g->n_inputs; i++) {
        const ir_value *v = &g->values[g->inputs[i]];
        int has = 0;
        for (int d = 0; d < v->rank; d++)
            if (P->in_syms[i][d] >= 0) {
                if (d != 0) return 0;
                has = 1;
            }
        if (has && v->rank < 2) return 0;
    }
    return 1;
}

/* An axis the file leaves unnamed: no name, or the one torch.onnx.export
 * makes up when dynamic_axes lists indices ("input_ids_dynamic_axes_1"). */
static int probe_axis_unnamed(const char *input, const char *param) {
    static const char tail[] = "_dynamic_axes_";
    if (!param || !*param) return 1;
    const size_t n = input ? strlen(input) : 0;
    if (!input || strncmp(param, input, n) != 0 || strncmp(param + n, tail, sizeof tail - 1) != 0)
        return 0;
    const char *p = param + n + sizeof tail - 1;
    if (!*p) return 0;
    for (; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    return 1;
}

int plan_probe_has_unnamed(const plan *P) {
    const ir_graph *g = P->g;
    for (size_t i = 0; i < g->n_inputs; i++) {
        const ir_value *v = &g->values[g->inputs[i]];
        for (int d = 0; d < v->rank && d < MHA_MAX_RANK; d++)
            if (v->dims[d] < 0 && probe_axis_unnamed(v->name, v->dim_params[d])) return 1;
    }
    return 0;
}

/* Which stream an input's unnamed sequence axes belong to: an
 * encoder-decoder's `decoder_*` inputs (decoder_input_ids,
 * decoder_attention_mask) have a length of their own, the other inputs
 * share the source's; the batch axis is one for all. */
static int probe_stream(const char *input) {
    static const char dec[] = "decoder_";
    return input && strncmp(input, dec, sizeof dec - 1) == 0;
}

/* P->in_syms from the inputs' axes: one symbol per name; with
 * P->merge_unnamed an unnamed axis takes the symbol of the first symbolic
 * axis of its index (the ids' and the mask's batch and sequence) among the
 * inputs of its stream (the first axis: among all inputs).
 * *too_many when there are more than PLAN_MAX_SYMS. */
static mha_status probe_assign_syms(plan *P, int *too_many, mha_error *err) {
    const ir_graph *g = P->g;
    const char *names[PLAN_MAX_SYMS] = {0};
    int at[2][MHA_MAX_RANK];
    for (int d = 0; d < MHA_MAX_RANK; d++)
        at[0][d] = at[1][d] = -1;
    P->n_syms = 0;
    *too_many = 0;
    for (size_t i = 0; i < g->n_inputs; i++) {
        const ir_value *v = &g->values[g->inputs[i]];
        if (v->rank < 0 || v->rank > MHA_MAX_RANK || v->dtype == MHA_DTYPE_UNDEFINED)
            return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                            "graph input '%s' has no declared type and shape", v->name);
        for (int d = 0; d < MHA_MAX_RANK; d++)
            P->in_syms[i][d] = -1;
        const int stream = probe_stream(v->name);
        for (int d = 0; d < v->rank; d++) {
            if (v->dims[d] >= 0) continue;
            int *first = &at[d == 0 ? 0 : stream][d];
            int k = -1;
            if (P->merge_unnamed && *first >= 0 && probe_axis_unnamed(v->name, v->dim_params[d]))
                k = *first;
            for (int s = 0; s < P->n_syms && k < 0 && v->dim_params[d]; s++)
                if (names[s] && strcmp(names[s], v->dim_params[d]) == 0) k = s;
            if (k < 0) {
                if (P->n_syms == PLAN_MAX_SYMS) {
                    *too_many = 1;
                    return mha_fail(err, MHA_ERR_MODEL_UNSUPPORTED,
                                    "graph input '%s': more than %d symbolic axes over the "
                                    "inputs",
                                    v->name, PLAN_MAX_SYMS);
                }
                k = P->n_syms++;
                names[k] = v->dim_params[d];
            }
            if (*first < 0) *first = k;
            P->in_syms[i][d] = k;
        }
    }
    return MHA_OK;
}

mha_status plan_probe_sizes(plan *P, mha_error *err) {
    const ir_graph *g = P->g;
    P->in_syms = mha_calloc(&P->alloc, g->n_inputs ? g->n_inputs : 1, sizeof *P->in_syms);
    if (!P->in_syms) return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    int too_many = 0;
    mha_status st = probe_assign_syms(P, &too_many, err);
    /* too many axes apart: the unnamed ones are the same per index */
    if (too_many && !P->merge_unnamed && plan_probe_has_unnamed(P)) {
        mha_error_clear(err);
        P->merge_unnamed = 1;
        st = probe_assign_syms(P, &too_many, err);
    }
    if (st != MHA_OK) return st;
    /* Probe 0: 2, 3, 4, 5; probe 1: 3, 5, 7, 9 -- no two axes alike. */
    for (int k = 0; k < PLAN_MAX_SYMS; k++) {
        P->probe_sizes[0][k] = 2 + k;
        P->probe_sizes[1][k] = 3 + 2 * k;
        P->sym_sum[k][0] = P->sym_sum[k][1] = -1;
        P->sym_sum[k][2] = 0;
        P->n_convlen[k] = 0;
    }
    /* A batch of fixed-size items (images, fixed-length texts): each probe
     * item costs a whole forward pass at full size, where a symbolic
     * sequence stays a few tokens long. Batches of 1 and 2 (2 and 3 would
     * be five items, not three) still differ, and the second has two items
     * to mix up. */
    if (plan_probe_items_fixed(P)) {
        P->probe_sizes[0][0] = 1;
        P->probe_sizes[1][0] = 2;
    }
    return MHA_OK;
}

static int probe_onnx_domain(const char *d) {
    return !d || !d[0] || strcmp(d, "ai.onnx") == 0;
}

/* Ops whose outputs' shapes and elements do not depend on the values at
 * input k (elementwise math, normalisations, contractions; the data operand
 * of a reshaping, slicing or reducing op): zeros there instead of the sums
 * change values, never shapes, and never make an op fail. */
static int probe_value_slot(const ir_node *n, size_t k) {
    static const char *const any[] = {
        "Add",        "Sub",        "Mul",      "Div",      "Pow",
        "Sqrt",       "Erf",        "Tanh",     "Relu",     "Sigmoid",
        "Exp",        "Log",        "Neg",      "Abs",      "Reciprocal",
        "Softmax",    "Concat",     "MatMul",   "Gemm",     "Conv",
        "Max",        "Min",        "Identity", "Softplus", "LayerNormalization",
        "Gelu",       "Sin",        "Cos",      "Einsum",   "SimplifiedLayerNormalization",
        "LogSoftmax", "HardSigmoid"};
    static const char *const first[] = {
        "Reshape",   "Expand",     "Tile",      "Slice",        "Pad",         "Squeeze",
        "Unsqueeze", "Transpose",  "Flatten",   "Split",        "Gather",      "ReduceMean",
        "ReduceSum", "ReduceMax",  "ReduceMin", "Dropout",      "Clip",        "Cast",
        "ReduceL2",  "ReduceProd", "CumSum",    "DepthToSpace", "SpaceToDepth"};
    if (!probe_onnx_domain(n->domain)) return 0;
    for (size_t i = 0; i < sizeof any / sizeof any[0]; i++)
        if (strcmp(n->op_type, any[i]) == 0) return 1;
    for (size_t i = 0; i < sizeof first / sizeof first[0]; i++)
        if (strcmp(n->op_type, first[i]) == 0) return k == 0;
    /* Where: the chosen values, not the condition */
    return strcmp(n->op_type, "Where") == 0 && k > 0;
}

mha_status plan_probe_shape_only(const plan *P, unsigned char *skip, mha_error *err) {
    const ir_graph *g = P->g;
    /* decides[v]: v reaches an input that is not a value slot (nodes come
     * in order, so every reader of a node's outputs is seen first) */
    unsigned char *decides = mha_calloc(&P->alloc, g->n_values ? g->n_values : 1, 1);
    if (!decides) return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    memset(skip, 0, g->n_nodes);
    for (size_t ni = g->n_nodes; ni-- > 0;) {
        const ir_node *n = &g->nodes[ni];
        int out_decides = 0;
        for (size_t k = 0; k < n->n_outputs; k++)
            if (n->outputs[k] >= 0 && decides[n->outputs[k]]) out_decides = 1;
        /* Shape and Size read only the shape */
        const int shape_of = strcmp(n->op_type, "Shape") == 0 || strcmp(n->op_type, "Size") == 0;
        for (size_t k = 0; k < n->n_inputs && !shape_of; k++)
            if (n->inputs[k] >= 0 && (out_decides || !probe_value_slot(n, k)))
                decides[n->inputs[k]] = 1;
        skip[ni] = !out_decides && n->n_outputs > 0 && probe_onnx_domain(n->domain) &&
                   (strcmp(n->op_type, "MatMul") == 0 || strcmp(n->op_type, "Gemm") == 0 ||
                    strcmp(n->op_type, "Conv") == 0);
    }
    mha_free(&P->alloc, decides);
    return MHA_OK;
}

/* Adds the elements of each value a probe made to *(int64_t *)user. */
static void probe_count_value(void *user, int v, const tensor *t) {
    (void)v;
    plan_add_elements(user, t);
}

/* 4 x the elements of the model's weights, at least floor: what probes of
 * the graph may make (a real model's probe makes a fraction of that). */
static int64_t probe_budget(const ir_graph *g, int64_t floor) {
    int64_t weights = 0;
    for (size_t v = 0; v < g->n_values; v++)
        if (g->values[v].init) plan_add_elements(&weights, g->values[v].init);
    return weights > INT64_MAX / 4 ? INT64_MAX : weights * 4 > floor ? weights * 4 : floor;
}

int64_t plan_probe_run_budget(const ir_graph *g) {
    return probe_budget(g, (int64_t)1 << 25);
}

/* Whether the graph runs (for shapes: skip) on probe inputs of the given
 * symbolic sizes, adding the elements of the values it made to *made;
 * MHA_ERR_NO_MEMORY is passed on, every other failure is a 0. */
static mha_status probe_runs_at(plan *P, const int64_t *sizes, const unsigned char *skip, int *runs,
                                int64_t *made, mha_error *err) {
    const ir_graph *g = P->g;
    *runs = 0;
    tensor **in = mha_calloc(&P->alloc, g->n_inputs ? g->n_inputs : 1, sizeof *in);
    if (!in) return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    tensor **values = NULL;
    plan_observer obs = {probe_count_value, made, skip, plan_probe_run_budget(g)};
    mha_error e;
    mha_error_clear(&e);
    mha_status st = plan_probe_inputs_sized(P, sizes, 0x696d616765ull, in, &e);
    if (st == MHA_OK) st = plan_exec_observed(P, in, NULL, &obs, &values, &e);
    if (values) plan_values_free(P, in, values);
    plan_free_tensors(&P->alloc, in, g->n_inputs);
    *runs = st == MHA_OK;
    return st == MHA_ERR_NO_MEMORY ? mha_fail(err, st, "%s", e.message) : MHA_OK;
}

mha_status plan_probe_runs_at(plan *P, const int64_t *sizes, const unsigned char *skip, int *runs,
                              int64_t *made, mha_error *err) {
    return probe_runs_at(P, sizes, skip, runs, made, err);
}

/* The image input the probes failed on: input i, its symbolic axes kh, kw
 * (H, W), and the Conv reading it (kernel and stride per axis). 0: none. */
static int probe_image_input(const plan *P, size_t *i_out, int *kh, int *kw, int64_t kernel[2],
                             int64_t stride[2]) {
    const ir_graph *g = P->g;
    for (size_t i = 0; i < g->n_inputs; i++) {
        const ir_value *v = &g->values[g->inputs[i]];
        if (v->rank != 4 || v->dtype != MHA_DTYPE_FLOAT32 || P->in_syms[i][2] < 0 ||
            P->in_syms[i][3] < 0 || P->in_syms[i][2] == P->in_syms[i][3])
            continue;
        for (size_t ni = 0; ni < g->n_nodes; ni++) {
            const ir_node *n = &g->nodes[ni];
            if (strcmp(n->op_type, "Conv") != 0 || n->n_inputs < 2 || n->inputs[0] != g->inputs[i])
                continue;
            const tensor *w = plan_const(P, n->inputs[1]);
            const ir_attr *st = ir_node_attr(n, "strides");
            if (!w || w->rank != 4) continue;
            for (int d = 0; d < 2; d++) {
                kernel[d] = w->dims[2 + d];
                stride[d] = st && st->n == 2 && st->ints[d] > 0 ? st->ints[d] : 1;
            }
            *i_out = i;
            *kh = P->in_syms[i][2];
            *kw = P->in_syms[i][3];
            return 1;
        }
    }
    return 0;
}

/* the largest grid of patches per side tried; and of patches in all, for
 * grids that are not square */
#define PROBE_MAX_GRID 64
#define PROBE_MAX_PATCHES 1024

/* What plan_probe_fit_images looks for: the image input's symbolic axes,
 * the patch Conv's kernel and stride, the probe's sizes, and how many
 * grids ran (at most 2 are looked for). */
typedef struct probe_fit {
    int kh, kw;
    int64_t kernel[2], stride[2];
    int64_t sizes[PLAN_MAX_SYMS];
    const unsigned char *skip;
    int found;
    int64_t made, budget; /* elements the probes made, and how many they may */
} probe_fit;

/* Runs the graph for shapes at a grid of gh x gw patches: the first grid
 * that runs becomes probes 0 and 1, a second one probe 1. */
static mha_status probe_fit_grid(plan *P, probe_fit *f, int64_t gh, int64_t gw, mha_error *err) {
    int runs = 0;
    int64_t span[2];
    /* a stride or kernel of a malformed file past what a probe can hold:
     * the grid does not run (the sizes would overflow) */
    if (!mha_mul_i64(f->stride[0], gh - 1, &span[0]) ||
        !mha_mul_i64(f->stride[1], gw - 1, &span[1]) || span[0] > INT64_MAX - f->kernel[0] ||
        span[1] > INT64_MAX - f->kernel[1])
        return MHA_OK;
    f->sizes[f->kh] = f->kernel[0] + span[0];
    f->sizes[f->kw] = f->kernel[1] + span[1];
    mha_status st = probe_runs_at(P, f->sizes, f->skip, &runs, &f->made, err);
    if (st != MHA_OK || !runs) return st;
    for (int p = f->found ? 1 : 0; p < PLAN_PROBES; p++) {
        P->probe_sizes[p][f->kh] = f->sizes[f->kh];
        P->probe_sizes[p][f->kw] = f->sizes[f->kw];
    }
    f->found++;
    return MHA_OK;
}

/* Square grids g x g, g = 1, 2, ..: until one runs and the next does not
 * (or two run). Then, when none did, grids of n = 2, 3, .. patches that
 * are not square (a position table of n rows fixes the count, not the
 * sides: 224 x 160 pixels are 14 x 10 patches): the squarest a x b of each
 * n and its b x a, and once one runs, the other sides of that n. */
static mha_status probe_fit_grids(plan *P, probe_fit *f, mha_error *err) {
    mha_status st = MHA_OK;
    for (int64_t g = 1; g <= PROBE_MAX_GRID + 1 && st == MHA_OK && f->found < 2; g++) {
        const int before = f->found;
        st = probe_fit_grid(P, f, g, g, err);
        if (before && f->found == before) break;
        if (!f->found && f->made > f->budget) break; /* the sizes grow, so will the probes */
    }
    f->made = 0; /* the grids that are not square: a budget of their own */
    for (int64_t n = 2; n <= PROBE_MAX_PATCHES && st == MHA_OK && !f->found && f->made <= f->budget;
         n++) {
        int64_t a = 1; /* the largest side below sqrt(n) that divides n */
        for (int64_t d = 2; d * d < n; d++)
            if (n % d == 0) a = d;
        if (n / a > PROBE_MAX_GRID) continue;
        st = probe_fit_grid(P, f, a, n / a, err);
        if (st == MHA_OK) st = probe_fit_grid(P, f, n / a, a, err);
        for (int64_t d = a - 1; d >= 1 && st == MHA_OK && f->found == 1; d--)
            if (n % d == 0 && n / d <= PROBE_MAX_GRID) {
                st = probe_fit_grid(P, f, d, n / d, err);
                if (st == MHA_OK && f->found == 1) st = probe_fit_grid(P, f, n / d, d, err);
            }
    }
    return st;
}

mha_status plan_probe_fit_images(plan *P, mha_error *err) {
    size_t i;
    probe_fit f;
    memset(&f, 0, sizeof f);
    if (!probe_image_input(P, &i, &f.kh, &f.kw, f.kernel, f.stride))
        return MHA_ERR_MODEL_UNSUPPORTED;
    const ir_graph *g = P->g;
    unsigned char *skip = mha_calloc(&P->alloc, g->n_nodes ? g->n_nodes : 1, 1);
    if (!skip) return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    f.skip = skip;
    /* What the search may make, all its probes together: a real ViT fails
     * at the wrong sizes at its position table, right after the patch Conv,
     * and runs through once at its size; a graph that fails only after its
     * attention would otherwise be run at every grid up to PROBE_MAX_GRID,
     * scores growing as grid^4: minutes, and GiBs of scores. */
    f.budget = probe_budget(g, PLAN_PROBE_MAX_ELEMENTS);
    mha_status st = plan_probe_shape_only(P, skip, err);
    memcpy(f.sizes, P->probe_sizes[0], sizeof f.sizes);
    if (P->in_syms[i][0] >= 0) f.sizes[P->in_syms[i][0]] = 1; /* one image */
    if (st == MHA_OK) st = probe_fit_grids(P, &f, err);
    mha_free(&P->alloc, skip);
    if (st != MHA_OK) return st;
    if (!f.found) return MHA_ERR_MODEL_UNSUPPORTED;
    if (f.found == 1) { /* one size: the input's, as if the file said so */
        ir_value *v = &P->g->values[g->inputs[i]];
        v->dims[2] = P->probe_sizes[0][f.kh];
        v->dims[3] = P->probe_sizes[0][f.kw];
        mha_free(&P->alloc, P->in_syms);
        P->in_syms = NULL;
        return plan_probe_sizes(P, err);
    }
    return MHA_OK;
}

/* Tries every axis k as the sum of two others a < b, then as another plus
 * a constant 0 .. PROBE_MAX_SUM_CONST (0: one axis the file names twice, a
 * cross-attention mask's keys and the encoder states'; else a step of a
 * fixed number of new tokens: "past_sequence_length + 1"), each a
 * shape-only run of both probes (at most 4 axes: 72 tries); the first under
 * which both run stands; plan_run holds the inputs to it. */
#define PROBE_MAX_SUM_CONST 4

/* One candidate k = a (+ b) + c: set, tried, kept when both probes run. */
static mha_status probe_try_sum(plan *P, const unsigned char *skip, int k, int a, int b, int c,
                                int64_t *made, int *found, mha_error *err) {
    P->sym_sum[k][0] = a;
    P->sym_sum[k][1] = b;
    P->sym_sum[k][2] = c;
    int runs = 1;
    mha_status st = MHA_OK;
    for (int p = 0; p < PLAN_PROBES && st == MHA_OK && runs; p++) {
        int64_t sizes[PLAN_MAX_SYMS];
        memcpy(sizes, P->probe_sizes[p], sizeof sizes);
        plan_dim_sums(P, sizes);
        st = probe_runs_at(P, sizes, skip, &runs, made, err);
    }
    *found = st == MHA_OK && runs;
    if (!*found) {
        P->sym_sum[k][0] = P->sym_sum[k][1] = -1;
        P->sym_sum[k][2] = 0;
    }
    return st;
}

mha_status plan_probe_fit_sums(plan *P, mha_error *err) {
    const ir_graph *g = P->g;
    if (P->n_syms < 2) return MHA_ERR_MODEL_UNSUPPORTED;
    unsigned char *skip = mha_calloc(&P->alloc, g->n_nodes ? g->n_nodes : 1, 1);
    if (!skip) return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    mha_status st = plan_probe_shape_only(P, skip, err);
    int found = 0;
    /* what the tries together may make: a file whose tries all fail at
     * great size would otherwise run 60 of them */
    int64_t made = 0;
    const int64_t budget = plan_probe_run_budget(g);
    for (int two = 1; two >= 0; two--)
        for (int k = 0; k < P->n_syms && st == MHA_OK && !found; k++)
            for (int a = 0; a < P->n_syms && st == MHA_OK && !found; a++)
                for (int b = two ? a + 1 : -1; b < (two ? P->n_syms : 0) && st == MHA_OK && !found;
                     b++)
                    for (int c = 0; c <= (two ? 0 : PROBE_MAX_SUM_CONST) && !found; c++) {
                        if (a == k || b == k || made > budget) continue;
                        st = probe_try_sum(P, skip, k, a, b, c, &made, &found, err);
                        if (st != MHA_OK) break;
                    }
    mha_free(&P->alloc, skip);
    if (st != MHA_OK) return st;
    if (!found) return MHA_ERR_MODEL_UNSUPPORTED;
    for (int p = 0; p < PLAN_PROBES; p++)
        plan_dim_sums(P, P->probe_sizes[p]);
    return MHA_OK;
}

static uint64_t probe_rand(uint64_t *s) {
    /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Rows of the smallest constant table the integer input v indexes through
 * Gather (following Cast / Reshape / Unsqueeze / Squeeze / Flatten /
 * Identity), or 0 when it indexes none. */
static int64_t probe_index_bound_at(const plan *P, int v, int depth) {
    const ir_graph *g = P->g;
    int64_t bound = 0;
    if (depth > 8) return 0;
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        const ir_node *n = &g->nodes[ni];
        if (n->n_inputs < 1) continue;
        if (strcmp(n->op_type, "Gather") == 0 && n->n_inputs == 2 && n->inputs[1] == v) {
            const tensor *table = plan_const(P, n->inputs[0]);
            int64_t axis = ir_attr_int(n, "axis", 0);
            if (!table || table->rank < 1) continue;
            if (axis < 0) axis += table->rank;
            if (axis < 0 || axis >= table->rank) continue;
            int64_t rows = table->dims[axis];
            if (bound == 0 || rows < bound) bound = rows;
        } else if (n->inputs[0] == v && n->n_outputs >= 1 &&
                   (strcmp(n->op_type, "Cast") == 0 || strcmp(n->op_type, "Reshape") == 0 ||
                    strcmp(n->op_type, "Unsqueeze") == 0 || strcmp(n->op_type, "Squeeze") == 0 ||
                    strcmp(n->op_type, "Flatten") == 0 || strcmp(n->op_type, "Identity") == 0)) {
            int64_t b = probe_index_bound_at(P, n->outputs[0], depth + 1);
            if (b > 0 && (bound == 0 || b < bound)) bound = b;
        }
    }
    return bound;
}

int64_t plan_probe_index_bound(const plan *P, int v) {
    return probe_index_bound_at(P, v, 0);
}

void plan_probe_explain_short(const plan *P, mha_error *err) {
    const ir_graph *g = P->g;
    if (!err || !P->in_syms) return;
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        const ir_node *n = &g->nodes[ni];
        if (strcmp(n->op_type, "Conv") != 0 || n->n_inputs < 2 || n->inputs[0] < 0) continue;
        const tensor *w = plan_const(P, n->inputs[1]);
        if (!w || w->rank < 3) continue;
        /* the Conv's data back to a graph input through ops that keep its
         * last axis (wav2vec2's Unsqueeze of the samples) */
        int v = n->inputs[0];
        for (int hops = 0; hops < 4 && v >= 0 && g->values[v].graph_input < 0; hops++) {
            const int pid = g->values[v].producer;
            const ir_node *p = pid >= 0 ? &g->nodes[pid] : NULL;
            v = p && p->n_inputs >= 1 &&
                        (strcmp(p->op_type, "Unsqueeze") == 0 || strcmp(p->op_type, "Cast") == 0 ||
                         strcmp(p->op_type, "Identity") == 0)
                    ? p->inputs[0]
                    : -1;
        }
        if (v < 0 || g->values[v].graph_input < 0) continue;
        const size_t i = (size_t)g->values[v].graph_input;
        const ir_value *in = &g->values[v];
        const int last = in->rank - 1, k = last >= 0 ? P->in_syms[i][last] : -1;
        const int64_t kernel = w->dims[w->rank - 1];
        if (k < 0 || kernel <= P->probe_sizes[1][k]) continue;
        mha_error_prefix(err,
                         "input '%s': axis %d%s%.40s%s is symbolic, and the load's probes of it "
                         "(%lld and %lld) are shorter than Conv '%.60s''s kernel of %lld: a "
                         "length through strided Convs is served with the axis fixed only "
                         "(export with a fixed length)",
                         in->name, last, in->dim_params[last] ? " ('" : "",
                         in->dim_params[last] ? in->dim_params[last] : "",
                         in->dim_params[last] ? "')" : "", (long long)P->probe_sizes[0][k],
                         (long long)P->probe_sizes[1][k], n->name ? n->name : "",
                         (long long)kernel);
        return;
    }
}

int plan_probe_is_loss_target(const plan *P, int v) {
    const ir_graph *g = P->g;
    /* the values v reaches through ops that keep its elements (a walk over
     * the nodes in order: each node once, as nodes come after their inputs) */
    unsigned char *reach = mha_calloc(&P->alloc, g->n_values ? g->n_values : 1, 1);
    if (!reach || v < 0 || (size_t)v >= g->n_values) {
        mha_free(&P->alloc, reach);
        return 0;
    }
    static const char *const keep[] = {"Slice",   "Reshape",   "Flatten",  "Cast",
                                       "Squeeze", "Unsqueeze", "Identity", "Transpose"};
    int found = 0;
    reach[v] = 1;
    for (size_t ni = 0; ni < g->n_nodes && !found; ni++) {
        const ir_node *n = &g->nodes[ni];
        if (n->n_inputs < 1 || n->inputs[0] < 0) continue;
        const int loss = strcmp(n->op_type, "SoftmaxCrossEntropyLoss") == 0 ||
                         strcmp(n->op_type, "NegativeLogLikelihoodLoss") == 0;
        if (loss && n->n_inputs >= 2 && n->inputs[1] >= 0 && reach[n->inputs[1]]) found = 1;
        if (!reach[n->inputs[0]] || n->n_outputs < 1 || n->outputs[0] < 0) continue;
        for (size_t k = 0; k < sizeof keep / sizeof keep[0]; k++)
            if (strcmp(n->op_type, keep[k]) == 0) reach[n->outputs[0]] = 1;
    }
    mha_free(&P->alloc, reach);
    return found;
}

/* Whether axis a of input i and axis b of input j are one axis of the
 * model: the same symbol, or the same fixed size. */
static int probe_same_axis(const plan *P, size_t i, int a, size_t j, int b) {
    const ir_graph *g = P->g;
    const int si = P->in_syms[i][a], sj = P->in_syms[j][b];
    if (si >= 0 || sj >= 0) return si == sj;
    return g->values[g->inputs[i]].dims[a] == g->values[g->inputs[j]].dims[b];
}

int plan_probe_float_mask(const plan *P, size_t i) {
    const ir_graph *g = P->g;
    const ir_value *v = &g->values[g->inputs[i]];
    if (!P->in_syms || v->dtype != MHA_DTYPE_FLOAT32 || (v->rank != 2 && v->rank != 4)) return 0;
    /* the walk to the tables is over the whole graph: a few candidates
     * only (a malformed file may declare a thousand alike inputs) */
    int tried = 0;
    for (size_t j = 0; j < g->n_inputs && tried < 4; j++) {
        const ir_value *ids = &g->values[g->inputs[j]];
        if (j == i || ids->rank != 2 ||
            (ids->dtype != MHA_DTYPE_INT64 && ids->dtype != MHA_DTYPE_INT32))
            continue;
        /* [B, S], or [B, 1, 1 or S, S]: the ids' batch, then their tokens */
        if (!probe_same_axis(P, i, 0, j, 0) || !probe_same_axis(P, i, v->rank - 1, j, 1)) continue;
        if (v->rank == 4 &&
            (P->in_syms[i][1] >= 0 || v->dims[1] != 1 ||
             !(probe_same_axis(P, i, 2, j, 1) || (P->in_syms[i][2] < 0 && v->dims[2] == 1))))
            continue;
        tried++;
        if (plan_probe_index_bound(P, g->inputs[j]) > 0) return 1;
    }
    return 0;
}

mha_status plan_probe_inputs(const plan *P, int p, tensor **in, mha_error *err) {
    return plan_probe_inputs_sized(P, P->probe_sizes[p], 0x706c616e70726f62ull + (uint64_t)p, in,
                                   err);
}

mha_status plan_probe_inputs_sized(const plan *P, const int64_t *sizes, uint64_t seed, tensor **in,
                                   mha_error *err) {
    const ir_graph *g = P->g;
    int64_t summed[PLAN_MAX_SYMS];
    memcpy(summed, sizes, sizeof summed);
    plan_dim_sums(P, summed);
    sizes = summed;
    for (size_t i = 0; i < g->n_inputs; i++) {
        const ir_value *v = &g->values[g->inputs[i]];
        int64_t dims[MHA_MAX_RANK];
        /* fixed dims come from the file: a probe input is bounded (as the
         * recogniser's are), never sized by a declared shape alone */
        int64_t numel = 1;
        int over = 0;
        for (int d = 0; d < v->rank; d++) {
            dims[d] = P->in_syms[i][d] >= 0 ? sizes[P->in_syms[i][d]] : v->dims[d];
            if (!mha_mul_i64(numel, dims[d] > 0 ? dims[d] : 0, &numel)) over = 1;
        }
        if (over || numel > PLAN_PROBE_MAX_ELEMENTS)
            return mha_fail(err, MHA_ERR_LIMIT,
                            "input '%s': a probe of its declared shape would hold over %lld "
                            "elements (the probe limit)",
                            v->name, (long long)PLAN_PROBE_MAX_ELEMENTS);
        mha_status st = tensor_new(&P->alloc, v->dtype, v->rank, dims, &in[i], err);
        if (st != MHA_OK) return st;
        int64_t n = tensor_numel(in[i]);
        int is_int = v->dtype == MHA_DTYPE_INT64 || v->dtype == MHA_DTYPE_INT32;
        int64_t bound = is_int ? plan_probe_index_bound(P, g->inputs[i]) : 0;
        /* a float 0 / 1 mask [B, S] beside the ids is probed as an integer
         * one (an extended [B, 1, 1, S] one holds additive terms: any
         * float) */
        if (!is_int && v->rank == 2 && plan_probe_float_mask(P, i)) is_int = 1;
        /* an integer mask [B, S] keeps the first key of each row, as a batch
         * padded on the right does, but for the last of two or more items:
         * padded on the left, its first half hidden and its last key kept,
         * so that a causal model's first rows see nothing but padding (NaN
         * in a graph hiding with -inf, an average of the finite terms with
         * finfo.min) and the plan must give what the graph gives there */
        const int64_t keys = is_int && bound == 0 && v->rank >= 2 ? in[i]->dims[v->rank - 1] : 0;
        const int64_t left_from = v->rank == 2 && in[i]->dims[0] >= 2 ? n - keys : n;
        for (int64_t e = 0; e < n; e++) {
            uint64_t r = probe_rand(&seed);
            double x;
            if (bound > 0)
                x = (double)(r % (uint64_t)bound);
            else if (keys > 0 && e >= left_from)
                x = e - left_from < (keys + 1) / 2 ? 0.0 : e == n - 1 || (r & 3) != 0;
            else if (keys > 0 && e % keys == 0)
                x = 1.0;
            else if (is_int || v->dtype == MHA_DTYPE_BOOL)
                x = (r & 3) != 0; /* masks: 1 three times in four */
            else
                x = (double)(r >> 11) * (2.0 / 9007199254740992.0) - 1.0;
            tensor_set_f64(in[i], e, x);
        }
    }
    return MHA_OK;
}

void plan_free_tensors(const mha_alloc_ctx *a, tensor **t, size_t n) {
    if (!t) return;
    for (size_t i = 0; i < n; i++)
        tensor_free(t[i]);
    mha_free(a, t);
}
