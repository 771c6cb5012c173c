/* recognize_rotary.c -- rotary position embeddings on the Q and K paths
 * (GPT-NeoX / Pythia / LLaMA / Mistral / Qwen / Falcon rotate-half, GPT-J
 * interleaved pairs, partial rotary), recognised by meaning in the
 * recogniser's two phases:
 *
 *   static (rz_rotary_pass): the Q or K path meets an Add or Concat that
 *     mixes two data-dependent values. Walking back from it, the first value
 *     every data path goes through (its dominator) is the tensor x that was
 *     rotated -- or it meets the opset-23 RotaryEmbedding op, whose input 0
 *     is x (its cos / sin caches and position_ids are read by meaning below,
 *     its heads of a 3-D [B, S, heads * d] input probed all at once); the
 *     chain continues below x as if the rotation were not there
 *     (a rotation moves no element to another position: the index tracing of
 *     recognize_map.c is the same with or without it).
 *   meaning (rz_rotary_build): the subgraph x -> y is re-run on unit vectors
 *     e_k along x's last axis (the head's features). Its output at each
 *     position is column k of the linear map M_p of that position. The
 *     columns say which dims turn (rotary_dim: the rest are e_k), in which
 *     pairs (t, t + half) or (2t, 2t + 1), and the cos / sin of every pair
 *     at every probed position, exactly as the model computes them
 *     (1 * cos + 0 * sin is exact). M_p must be the same for every batch
 *     item and head, and change along one axis: the sequence.
 *   tables: the model's own constants, never an assumed theta. A constant
 *     cos / sin cache (GPT-NeoX's cos_cached, GPT-J's sincos) whose rows
 *     hold the probed values gives the tables for all its positions; else
 *     inverse frequencies inv [half] with cos(float(p) * inv[t]) equal to
 *     the probed values give them for any position (layer_rotary_fill).
 *
 * Anything else on that Add / Concat is refused by the projection parser
 * as before, or here with what the map was not. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mha/plugin.h"
#include "recognize_internal.h"

/* Frontier of the dominator search, and the nodes it may cross. */
#define RZ_ROT_MAX_FRONTIER 32
#define RZ_ROT_MAX_EXPANSIONS 256
/* Positions tabled at load when the model gives inverse frequencies (later
 * ones are made per run): 2 MiB of tables for 64 pairs. */
#define RZ_ROT_LOAD_POSITIONS 4096

static int rz_rot_producer(const rz_ctx *z, int v) {
    return (v >= 0 && (size_t)v < z->g->n_values) ? z->g->values[v].producer : -1;
}

/* Whether node n mixes two data-dependent inputs the way a rotation's
 * output does: x * cos + rot(x) * sin (Add) or [rotated, passed] (Concat). */
static int rz_rot_candidate(const rz_ctx *z, const ir_node *n) {
    if (!rz_is_op(n, "Add") && !rz_is_op(n, "Concat")) return 0;
    int data = 0;
    for (size_t k = 0; k < n->n_inputs; k++)
        if (n->inputs[k] >= 0 && z->deps[n->inputs[k]] != 0) data++;
    return data >= 2;
}

/* The first value every data path back from y goes through, or -1: the
 * frontier of data values is expanded latest producer first until one
 * value is left. Never crosses a projection (MatMul / Gemm). */
static int rz_rot_dominator(const rz_ctx *z, int y, uint64_t data_mask) {
    int front[RZ_ROT_MAX_FRONTIER], n = 1;
    front[0] = y;
    for (int step = 0; step < RZ_ROT_MAX_EXPANSIONS; step++) {
        int best = 0;
        for (int i = 1; i < n; i++)
            if (rz_rot_producer(z, front[i]) > rz_rot_producer(z, front[best])) best = i;
        const int pid = rz_rot_producer(z, front[best]);
        if (pid < 0) return -1; /* a graph input: no single tensor was rotated */
        const ir_node *p = &z->g->nodes[pid];
        if (rz_is_op(p, "MatMul") || rz_is_op(p, "Gemm")) return -1;
        front[best] = front[--n];
        for (size_t k = 0; k < p->n_inputs; k++) {
            const int v = p->inputs[k];
            if (v < 0 || (z->deps[v] & data_mask) == 0) continue;
            int seen = 0;
            for (int i = 0; i < n; i++)
                seen |= front[i] == v;
            if (seen) continue;
            if (n == RZ_ROT_MAX_FRONTIER) return -1;
            front[n++] = v;
        }
        if (n == 1) return front[0];
        if (n == 0) return -1;
    }
    return -1;
}

/* An Add mixing the path with values of more than one graph input, none
 * of them the one tensor rotated: the form of a rotary embedding whose
 * positions (position_ids) or cos / sin tables are graph inputs. Names the
 * inputs; with one input behind it, the projection parser refuses it. */
static mha_status rz_rot_inputs_refusal(rz_ctx *z, int pid, const char *what) {
    const ir_node *n = &z->g->nodes[pid];
    uint64_t deps = 0;
    for (size_t k = 0; k < n->n_inputs; k++)
        if (n->inputs[k] >= 0) deps |= z->deps[n->inputs[k]];
    char names[240] = "";
    size_t used = 0;
    int count = 0;
    for (size_t i = 0; i < z->g->n_inputs && i < 64; i++) {
        if (!(deps & ((uint64_t)1 << i))) continue;
        int w = snprintf(names + used, sizeof names - used, "%s'%s'", count ? ", " : "",
                         z->g->values[z->g->inputs[i]].name);
        if (w > 0 && (size_t)w < sizeof names - used) used += (size_t)w;
        count++;
    }
    if (count < 2) return MHA_OK;
    char d[160];
    return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                    "%s on the %s path adds values computed from graph inputs %s: a rotary "
                    "embedding whose positions or cos / sin tables are graph inputs is not "
                    "supported (positions must come from the sequence length)",
                    rz_node_desc(z, pid, d, sizeof d), what, names);
}

/* The dominator when the rotation also reads graph inputs of its own
 * (position_ids, or cos / sin tables): followed through the values of one
 * graph input at a time, the one whose path has a single rotated tensor.
 * *others: the node's other graph inputs. */
static int rz_rot_dominator_of_one(const rz_ctx *z, int y, uint64_t *others) {
    const ir_node *n = &z->g->nodes[rz_rot_producer(z, y)];
    uint64_t deps = 0;
    for (size_t k = 0; k < n->n_inputs; k++)
        if (n->inputs[k] >= 0) deps |= z->deps[n->inputs[k]];
    for (int i = 0; i < RZ_MAX_INPUTS; i++) {
        const uint64_t bit = (uint64_t)1 << i;
        if (!(deps & bit) || deps == bit) continue;
        /* every data operand carries the rotated data (a KV cache Concat
         * of a past input and the new keys does not) */
        int all = 1;
        for (size_t k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0 && z->deps[n->inputs[k]] && !(z->deps[n->inputs[k]] & bit))
                all = 0;
        if (!all) continue;
        const int x = rz_rot_dominator(z, y, bit);
        if (x < 0 || z->deps[x] != bit) continue;
        *others = deps & ~bit;
        return x;
    }
    return -1;
}

/* The opset-23 RotaryEmbedding node n: the tensor it turns (its input 0,
 * computed from the data), or -1; *others: the graph inputs its other
 * inputs read (position_ids, cos / sin caches). */
static int rz_rot_op_input(const rz_ctx *z, const ir_node *n, uint64_t *others) {
    if (!rz_is_op(n, "RotaryEmbedding") || n->n_inputs < 3 || n->n_outputs < 1 ||
        n->inputs[0] < 0 || z->deps[n->inputs[0]] == 0)
        return -1;
    for (size_t k = 1; k < n->n_inputs; k++)
        if (n->inputs[k] >= 0) *others |= z->deps[n->inputs[k]];
    return n->inputs[0];
}

mha_status rz_rotary_pass(rz_ctx *z, int side, const char *what, rz_chain *ch) {
    const int pid = rz_rot_producer(z, ch->src);
    if (pid < 0) return MHA_OK;
    uint64_t others = 0;
    /* the op turns its input 0 by the model's tables, which are read by
     * meaning below as the decomposed forms' are */
    int x = rz_rot_op_input(z, &z->g->nodes[pid], &others);
    z->core.rot_op[side] = x >= 0;
    if (x < 0 && !rz_rot_candidate(z, &z->g->nodes[pid])) return MHA_OK;
    if (x < 0) x = rz_rot_dominator(z, ch->src, ~(uint64_t)0);
    if (x < 0) x = rz_rot_dominator_of_one(z, ch->src, &others);
    if (x < 0 && rz_is_op(&z->g->nodes[pid], "Add")) return rz_rot_inputs_refusal(z, pid, what);
    if (x < 0) return MHA_OK; /* the projection parser refuses the node */
    z->core.rot_inputs |= others;
    const int y = ch->src;
    rz_chain lower;
    /* lower (projection -> x), then the steps after y */
    mha_status st = rz_walk_back(z, x, 1, what, &lower);
    if (st == MHA_OK) st = rz_chain_splice(z, ch, &lower, 0, pid, what);
    if (st != MHA_OK) return st;
    z->core.rot_on[side] = 1;
    z->core.rot_x[side] = x;
    z->core.rot_y[side] = y;
    return MHA_OK;
}

/* ------------------------------------------------------------------------ */
/* Meaning                                                                   */
/* ------------------------------------------------------------------------ */

/* What one side's probing found: cos / sin [n_pos][half] at the probed
 * positions. */
typedef struct rz_rot_found {
    int kind;
    int64_t d, rd, n_pos;
    float *cos, *sin;
} rz_rot_found;

static void rz_rot_found_free(rz_ctx *z, rz_rot_found *f) {
    mha_free(z->a, f->cos);
    mha_free(z->a, f->sin);
    memset(f, 0, sizeof *f);
}

static mha_status rz_rot_refuse(rz_ctx *z, int side, const char *why) {
    return rz_refuse_on_path(z, z->core.rot_y[side], side,
                             "mixes the projection with itself, but not as a rotary position "
                             "embedding does",
                             why);
}

/* Entry (row i, column k) of M at flat row r: cols[k][r * d + i]. */
static float rz_rot_m(const tensor *const *cols, int64_t d, int64_t r, int64_t i, int64_t k) {
    return ((const float *)cols[k]->data)[r * d + i];
}

/* Classifies the maps of one side (cols[k]: the output for e_k). */
static mha_status rz_rot_classify(rz_ctx *z, int side, const tensor *x, const tensor *const *cols,
                                  rz_rot_found *f) {
    const int64_t d = x->dims[x->rank - 1], rows = tensor_numel(x) / d;
    /* the sequence axis: the one axis along which M changes */
    int64_t stride[MHA_MAX_RANK], s = 1; /* rows between steps of each axis */
    for (int a = x->rank - 2; a >= 0; a--) {
        stride[a] = s;
        s *= x->dims[a];
    }
    int pos_axis = -1;
    for (int a = 0; a < x->rank - 1; a++) {
        if (x->dims[a] < 2) continue;
        int differs = 0;
        for (int64_t i = 0; i < d && !differs; i++)
            for (int64_t k = 0; k < d && !differs; k++)
                differs = rz_rot_m(cols, d, stride[a], i, k) != rz_rot_m(cols, d, 0, i, k);
        if (!differs) continue;
        if (pos_axis >= 0) return rz_rot_refuse(z, side, "it changes along two axes");
        pos_axis = a;
    }
    if (pos_axis < 0) return rz_rot_refuse(z, side, "it is the same at every position");
    f->n_pos = x->dims[pos_axis];
    f->d = d;
    /* the same map for every batch item and head at a position */
    for (int64_t r = 0; r < rows; r++) {
        const int64_t p = (r / stride[pos_axis]) % f->n_pos, r0 = p * stride[pos_axis];
        for (int64_t i = 0; i < d; i++)
            for (int64_t k = 0; k < d; k++)
                if (rz_rot_m(cols, d, r, i, k) != rz_rot_m(cols, d, r0, i, k))
                    return rz_rot_refuse(z, side,
                                         "it differs between batch items or heads at one "
                                         "position");
    }
    /* at position 1: the dims that turn, and how they pair */
    const int64_t r1 = stride[pos_axis];
    f->rd = 0;
    for (int64_t k = 0; k < d; k++)
        for (int64_t i = 0; i < d; i++)
            if (rz_rot_m(cols, d, r1, i, k) != (i == k ? 1.0f : 0.0f)) f->rd = k + 1;
    if (f->rd < 2 || f->rd % 2) return rz_rot_refuse(z, side, "no even number of dims turns");
    const int64_t half = f->rd / 2;
    f->kind = rz_rot_m(cols, d, r1, half, 0) != 0.0f ? MHA_ROTARY_HALF : MHA_ROTARY_INTERLEAVED;
    f->cos = mha_calloc(z->a, rz_count(f->n_pos * half), sizeof(float));
    f->sin = mha_calloc(z->a, rz_count(f->n_pos * half), sizeof(float));
    if (!f->cos || !f->sin) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    for (int64_t p = 0; p < f->n_pos; p++) {
        const int64_t r = p * stride[pos_axis];
        for (int64_t k = f->rd; k < d; k++) /* the passed dims stay put */
            for (int64_t i = 0; i < d; i++)
                if (rz_rot_m(cols, d, r, i, k) != (i == k ? 1.0f : 0.0f))
                    return rz_rot_refuse(z, side, "a dim past the turning ones moves");
        for (int64_t t = 0; t < half; t++) {
            const int64_t i1 = f->kind == MHA_ROTARY_HALF ? t : 2 * t;
            const int64_t i2 = f->kind == MHA_ROTARY_HALF ? t + half : 2 * t + 1;
            const float c = rz_rot_m(cols, d, r, i1, i1), sn = rz_rot_m(cols, d, r, i2, i1);
            f->cos[p * half + t] = c;
            f->sin[p * half + t] = sn;
            /* the pair's other column: (-sin, cos), nothing else moves */
            if (fabsf(rz_rot_m(cols, d, r, i1, i2) + sn) > 1e-6f ||
                fabsf(rz_rot_m(cols, d, r, i2, i2) - c) > 1e-6f)
                return rz_rot_refuse(z, side, "a pair does not turn as a rotation");
            for (int64_t i = 0; i < d; i++)
                if (i != i1 && i != i2 &&
                    (rz_rot_m(cols, d, r, i, i1) != 0.0f || rz_rot_m(cols, d, r, i, i2) != 0.0f))
                    return rz_rot_refuse(z, side, "a dim moves into another pair");
        }
    }
    return MHA_OK;
}

/* One side: probe with every e_k and classify. The RotaryEmbedding op
 * turns every head of a [.., heads * d_head] row alike: e_k is then set in
 * every head at once and the maps read on the [.., heads, d_head] view. */
static mha_status rz_rot_side(rz_ctx *z, int side, int64_t d_head, rz_rot_found *f) {
    const rz_core *c = &z->core;
    const tensor *x = z->probe[c->rot_x[side]];
    if (!x || x->dtype != MHA_DTYPE_FLOAT32 || x->rank < 2 || x->dims[x->rank - 1] < 2)
        return rz_rot_refuse(z, side, "the rotated tensor is not float32 with a feature axis");
    const int64_t full = x->dims[x->rank - 1];
    const int per_head = c->rot_op[side] && d_head > 1 && full > d_head && full % d_head == 0 &&
                         x->rank < MHA_MAX_RANK;
    const int64_t d = per_head ? d_head : full, rows = tensor_numel(x) / d;
    tensor view = *x; /* the shape the maps are read on (no data of its own) */
    if (per_head) {
        view.dims[x->rank - 1] = full / d_head;
        view.dims[x->rank] = d_head;
        view.rank = x->rank + 1;
    }
    tensor **cols = mha_calloc(z->a, (size_t)d, sizeof *cols);
    tensor *e = NULL;
    mha_status st = cols ? tensor_new(z->a, MHA_DTYPE_FLOAT32, x->rank, x->dims, &e, z->err)
                         : mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    for (int64_t k = 0; k < d && st == MHA_OK; k++) {
        float *p = e->data;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = 0; i < d; i++)
                p[r * d + i] = i == k ? 1.0f : 0.0f;
        st = rz_subgraph_eval(z, c->rot_x[side], c->rot_y[side], e, &cols[k]);
        if (st == MHA_OK && (cols[k]->dtype != MHA_DTYPE_FLOAT32 || cols[k]->rank != x->rank ||
                             memcmp(cols[k]->dims, x->dims, sizeof(int64_t) * (size_t)x->rank)))
            st = rz_rot_refuse(z, side, "its output is not shaped like its input");
    }
    if (st == MHA_OK) st = rz_rot_classify(z, side, &view, (const tensor *const *)cols, f);
    for (int64_t k = 0; cols && k < d; k++)
        tensor_free(cols[k]);
    mha_free(z->a, cols);
    tensor_free(e);
    return st;
}

/* Per value: computed from initializers and Constant nodes alone (not from
 * a graph input, nor from a Shape: a table sliced to the probe length is
 * not the model's whole table). */
static unsigned char *rz_rot_pure_constants(rz_ctx *z) {
    const ir_graph *g = z->g;
    unsigned char *pure = mha_calloc(z->a, rz_count((int64_t)g->n_values), 1);
    if (!pure) return NULL;
    for (size_t v = 0; v < g->n_values; v++)
        pure[v] = g->values[v].init != NULL && g->values[v].graph_input < 0;
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        const ir_node *n = &g->nodes[ni];
        int ok = !rz_is_op(n, "Shape") && !rz_is_op(n, "Size");
        for (size_t k = 0; k < n->n_inputs && ok; k++)
            ok = n->inputs[k] < 0 || pure[n->inputs[k]];
        for (size_t k = 0; k < n->n_outputs; k++)
            if (n->outputs[k] >= 0) pure[n->outputs[k]] = (unsigned char)ok;
    }
    return pure;
}

/* The constant cache whose rows [p0, p0 + n_pos) hold want [n_pos][half]
 * at some column offset (p0: the probe's first position, the past length
 * of a KV cache): its rows (the most of any match) into *tab. */
static mha_status rz_rot_find_cache(rz_ctx *z, const unsigned char *pure, const float *want,
                                    int64_t p0, int64_t n_pos, int64_t half, float **tab,
                                    int64_t *rows) {
    *tab = NULL;
    *rows = 0;
    const tensor *best = NULL;
    int64_t best_c0 = 0, best_w = 0;
    for (size_t v = 0; v < z->g->n_values; v++) {
        const tensor *t = z->probe[v];
        if (!pure[v] || !t || t->dtype != MHA_DTYPE_FLOAT32 || t->rank < 1) continue;
        const int64_t w = t->dims[t->rank - 1], n = w > 0 ? tensor_numel(t) / w : 0;
        if (w < half || n < p0 + n_pos || (best && n <= *rows)) continue;
        const float *p = t->data;
        for (int64_t c0 = 0; c0 + half <= w; c0++) {
            int same = 1;
            for (int64_t r = 0; r < n_pos && same; r++)
                same = memcmp(p + (p0 + r) * w + c0, want + r * half,
                              (size_t)half * sizeof(float)) == 0;
            if (!same) continue;
            best = t, best_c0 = c0, best_w = w, *rows = n;
            break;
        }
    }
    if (!best) return MHA_OK;
    *tab = mha_malloc(z->a, (size_t)(*rows * half) * sizeof(float));
    if (!*tab) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory for rotary tables");
    for (int64_t r = 0; r < *rows; r++)
        memcpy(*tab + r * half, (const float *)best->data + r * best_w + best_c0,
               (size_t)half * sizeof(float));
    return MHA_OK;
}

/* Constant inverse frequencies [half] that give the probed tables (the
 * probe's positions start at z->P, the past length of a KV cache). */
static const float *rz_rot_find_inv_freq(rz_ctx *z, const unsigned char *pure,
                                         const rz_rot_found *f) {
    const int64_t half = f->rd / 2;
    float *c = mha_malloc(z->a, (size_t)(2 * f->n_pos * half) * sizeof(float));
    if (!c) return NULL;
    const float *found = NULL;
    for (size_t v = 0; v < z->g->n_values && !found; v++) {
        const tensor *t = z->probe[v];
        if (!pure[v] || !t || t->dtype != MHA_DTYPE_FLOAT32 || tensor_numel(t) != half) continue;
        layer_rotary_fill(t->data, half, z->P, f->n_pos, c, c + f->n_pos * half);
        int same = 1;
        for (int64_t i = 0; i < f->n_pos * half && same; i++)
            same = fabsf(c[i] - f->cos[i]) <= 2.5e-7f &&
                   fabsf(c[f->n_pos * half + i] - f->sin[i]) <= 2.5e-7f;
        if (same) found = t->data;
    }
    mha_free(z->a, c);
    return found;
}

/* The whole tables of the layer from the model's constants. */
static mha_status rz_rot_tables(rz_ctx *z, const rz_rot_found *f, layer *L) {
    unsigned char *pure = rz_rot_pure_constants(z);
    if (!pure) return mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory");
    const int64_t half = f->rd / 2;
    int64_t nc = 0, ns = 0;
    mha_status st = rz_rot_find_cache(z, pure, f->cos, z->P, f->n_pos, half, &L->rotary_cos, &nc);
    if (st == MHA_OK)
        st = rz_rot_find_cache(z, pure, f->sin, z->P, f->n_pos, half, &L->rotary_sin, &ns);
    if (st == MHA_OK && L->rotary_cos && L->rotary_sin) {
        L->rotary_n_pos = nc < ns ? nc : ns;
    } else if (st == MHA_OK) {
        mha_free(z->a, L->rotary_cos);
        mha_free(z->a, L->rotary_sin);
        L->rotary_cos = L->rotary_sin = NULL;
        const float *inv = rz_rot_find_inv_freq(z, pure, f);
        if (!inv) {
            st = rz_rot_refuse(z, 0,
                               "its cos / sin are neither rows of a constant table nor made "
                               "from constant inverse frequencies as cos(position * inv_freq)");
        } else {
            const size_t bytes = (size_t)half * sizeof(float);
            const int64_t n = RZ_ROT_LOAD_POSITIONS;
            L->rotary_inv_freq = mha_malloc(z->a, bytes);
            L->rotary_cos = mha_malloc(z->a, (size_t)n * bytes);
            L->rotary_sin = mha_malloc(z->a, (size_t)n * bytes);
            if (!L->rotary_inv_freq || !L->rotary_cos || !L->rotary_sin) {
                st = mha_fail(z->err, MHA_ERR_NO_MEMORY, "out of memory for rotary tables");
            } else {
                memcpy(L->rotary_inv_freq, inv, bytes);
                layer_rotary_fill(inv, half, 0, n, L->rotary_cos, L->rotary_sin);
                L->rotary_n_pos = n;
            }
        }
    }
    mha_free(z->a, pure);
    return st;
}

/* The graph input with role r, or -1. */
static int rz_rot_role_input(const layer *L, mha_io_role r) {
    for (size_t i = 0; i < L->n_inputs; i++)
        if (L->inputs[i].role == r) return (int)i;
    return -1;
}

/* Whether io may be ChatGLM's rotary cache: float [S, B | 1, r / 2, 2] or
 * [S, r / 2, 2], the sequence first, cos and sin of a pair side by side. */
static int rz_rot_stacked_shape(const layer_io *io) {
    return io->dtype == MHA_DTYPE_FLOAT32 && (io->rank == 3 || io->rank == 4) &&
           io->dims[io->rank - 1] == 2;
}

mha_status rz_rotary_roles(rz_ctx *z, layer *L, unsigned char *used) {
    const uint64_t in = z->core.rot_inputs;
    int ints[2], floats[3], ni = 0, nf = 0;
    for (size_t i = 0; i < L->n_inputs && i < RZ_MAX_INPUTS; i++) {
        if (!(in & ((uint64_t)1 << i))) continue;
        const layer_io *io = &L->inputs[i];
        if (used[i])
            return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                            "graph input '%s' feeds the rotary embedding and is also the layer's "
                            "%s",
                            io->name, mha_io_role_name(io->role));
        const int is_int = io->dtype == MHA_DTYPE_INT64 || io->dtype == MHA_DTYPE_INT32;
        if (is_int && io->rank == 2 && ni < 2) {
            ints[ni++] = (int)i;
        } else if (io->dtype == MHA_DTYPE_FLOAT32 && io->rank >= 2 && io->rank <= 4 && nf < 3) {
            floats[nf++] = (int)i;
        } else {
            return mha_fail(
                z->err, MHA_ERR_MODEL_UNSUPPORTED,
                "graph input '%s' (%s, rank %d) feeds the rotary embedding: position "
                "ids [B, S] (integer) or cos / sin tables [S, d] or [B, S, d] (float32) are "
                "supported",
                io->name, mha_dtype_name(io->dtype), io->rank);
        }
    }
    if (ni == 0 && nf == 0) return MHA_OK;
    if (ni == 0 && nf == 1 && rz_rot_stacked_shape(&L->inputs[floats[0]])) {
        /* ChatGLM's cache: cos and sin of each pair stacked, [S, B | 1, r / 2, 2] */
        L->inputs[floats[0]].role = MHA_ROLE_ROTARY_COS;
        L->rotary_tables_input = 3;
        used[floats[0]] = 1;
        return MHA_OK;
    }
    if (!(ni == 1 && nf == 0) && !(ni == 0 && nf == 2))
        return mha_fail(z->err, MHA_ERR_MODEL_UNSUPPORTED,
                        "the rotary embedding reads %d integer and %d float graph inputs: one "
                        "position_ids input, or one cos and one sin table, is supported",
                        ni, nf);
    if (ni) {
        L->inputs[ints[0]].role = MHA_ROLE_POSITION_IDS;
        used[ints[0]] = 1;
        return MHA_OK;
    }
    /* provisional: rz_rot_given_tables swaps them if the graph says so */
    L->inputs[floats[0]].role = MHA_ROLE_ROTARY_COS;
    L->inputs[floats[1]].role = MHA_ROLE_ROTARY_SIN;
    used[floats[0]] = used[floats[1]] = 1;
    return MHA_OK;
}

/* ChatGLM's stacked cache tc [S, B', r / 2, 2] (or [S, r / 2, 2]): the
 * probed angles must be its values, batch item 0's, pair by pair, and it
 * turns interleaved pairs (2t, 2t + 1). */
static mha_status rz_rot_stacked_table(rz_ctx *z, const rz_rot_found *f, layer *L,
                                       const tensor *tc) {
    const int64_t half = f->rd / 2;
    const int64_t items = tc->rank == 4 ? tc->dims[1] : 1;
    if (f->kind != MHA_ROTARY_INTERLEAVED || tc->dims[tc->rank - 2] != half ||
        tc->dims[0] < f->n_pos || items < 1)
        return rz_rot_refuse(z, 0,
                             "its one float input is not a [S, B, rotary_dim / 2, 2] cache of "
                             "the cos and sin of interleaved pairs");
    const float *x = tc->data;
    int same = 1;
    for (int64_t p = 0; p < f->n_pos; p++)
        for (int64_t t = 0; t < half; t++) {
            const float *c = x + (p * items * half + t) * 2;
            same &= f->cos[p * half + t] == c[0] && f->sin[p * half + t] == c[1];
        }
    if (!same)
        return rz_rot_refuse(z, 0,
                             "its angles are not the values of the cos / sin cache input at "
                             "each token's row");
    L->rotary_n_pos = 0;
    return MHA_OK;
}

/* The rotation reads its cos / sin from inputs: the probed angles must be
 * the probe's table values, token by token, with both columns of a pair
 * alike (rotate-half pairs (t, t + half) turn by columns t and t + half,
 * as cat(freqs, freqs) makes them; GPT-J's pairs (2t, 2t + 1) by columns
 * 2t and 2t + 1, as repeat_interleave(freqs, 2) makes them). */
static mha_status rz_rot_given_tables(rz_ctx *z, const rz_rot_found *f, layer *L) {
    const int ic = rz_rot_role_input(L, MHA_ROLE_ROTARY_COS);
    const int is = rz_rot_role_input(L, MHA_ROLE_ROTARY_SIN);
    if (L->rotary_tables_input == 3) return rz_rot_stacked_table(z, f, L, z->inputs[ic]);
    const tensor *tc = z->inputs[ic], *ts = z->inputs[is];
    const int64_t half = f->rd / 2;
    /* a column per turning dim, or (Meta's LLaMA, llama2.c: the angles of
     * the pairs, outer(t, freqs)) one per pair */
    const int64_t W = tc->dims[tc->rank - 1] == half ? half : f->rd;
    /* tokens per batch item: [S, d], [B, S, d], [B, 1, S, d], [B, S, 1, d] */
    const int64_t items = tc->rank == 2 ? 1 : tc->dims[0];
    const int64_t tokens = items > 0 && W > 0 ? tensor_numel(tc) / items / W : 0;
    if (tc->dims[tc->rank - 1] != W || tokens < f->n_pos || tensor_numel(ts) != tensor_numel(tc))
        return rz_rot_refuse(z, 0,
                             "its cos / sin inputs are not [.., S, rotary_dim] tables of the "
                             "turning dims, nor [.., S, rotary_dim / 2] of their pairs");
    int as_named = 1, swapped = 1;
    for (int64_t p = 0; p < f->n_pos; p++)
        for (int64_t t = 0; t < half; t++) {
            const float c = f->cos[p * half + t], sn = f->sin[p * half + t];
            const float *vc = (const float *)tc->data + p * W,
                        *vs = (const float *)ts->data + p * W;
            const int64_t c1 = W == half ? t : f->kind == MHA_ROTARY_HALF ? t : 2 * t;
            const int64_t c2 = W == half ? t : f->kind == MHA_ROTARY_HALF ? t + half : 2 * t + 1;
            as_named &= c == vc[c1] && c == vc[c2] && sn == vs[c1] && sn == vs[c2];
            swapped &= c == vs[c1] && c == vs[c2] && sn == vc[c1] && sn == vc[c2];
        }
    if (!as_named && !swapped)
        return rz_rot_refuse(z, 0,
                             "its angles are not the values of the cos / sin inputs at each "
                             "token's row");
    if (!as_named) {
        L->inputs[ic].role = MHA_ROLE_ROTARY_SIN;
        L->inputs[is].role = MHA_ROLE_ROTARY_COS;
    }
    L->rotary_tables_input = W == half ? 2 : 1;
    L->rotary_n_pos = 0;
    return MHA_OK;
}

/* Meta's LLaMA (and llama2.c) turn the pairs of a [.., d / 2, 2] view of
 * the features: x = Reshape(q) splits the last axis, the halves are
 * unbound, turned and stacked, and the one reader of y (Reshape, Flatten;
 * Shape nodes aside) merges the last two axes back. The rotation is then read on the head's
 * features: from the Reshape's input to the merged value, the same shape. */
static void rz_rot_widen(rz_ctx *z, int side, int64_t d_head) {
    const ir_graph *g = z->g;
    const int x = z->core.rot_x[side], y = z->core.rot_y[side], xp = rz_rot_producer(z, x);
    const tensor *tx = z->probe[x], *ty = z->probe[y];
    if (xp < 0 || !tx || !ty || tx->rank < 3 || tx->dims[tx->rank - 1] != 2 ||
        !rz_is_op(&g->nodes[xp], "Reshape") || g->nodes[xp].n_inputs < 1)
        return;
    int reader = -1;
    for (size_t ni = (size_t)rz_rot_producer(z, y) + 1; ni < g->n_nodes; ni++)
        for (size_t k = 0; k < g->nodes[ni].n_inputs; k++)
            if (g->nodes[ni].inputs[k] == y && !rz_is_op(&g->nodes[ni], "Shape")) {
                if (reader >= 0 && reader != (int)ni) return;
                reader = (int)ni;
            }
    if (reader < 0 || g->nodes[reader].n_outputs < 1 ||
        (!rz_is_op(&g->nodes[reader], "Reshape") && !rz_is_op(&g->nodes[reader], "Flatten")))
        return;
    const int x2 = g->nodes[xp].inputs[0], y2 = g->nodes[reader].outputs[0];
    const tensor *tx2 = x2 >= 0 ? z->probe[x2] : NULL, *ty2 = y2 >= 0 ? z->probe[y2] : NULL;
    if (!tx2 || !ty2 || tx2->rank != tx->rank - 1 || tx2->dims[tx2->rank - 1] != d_head ||
        2 * tx->dims[tx->rank - 2] != d_head || ty->rank != tx->rank || ty2->rank != tx2->rank ||
        memcmp(ty->dims, tx->dims, sizeof(int64_t) * (size_t)tx->rank) != 0 ||
        memcmp(ty2->dims, tx2->dims, sizeof(int64_t) * (size_t)tx2->rank) != 0 ||
        memcmp(tx2->dims, tx->dims, sizeof(int64_t) * (size_t)(tx2->rank - 1)) != 0)
        return;
    z->core.rot_x[side] = x2;
    z->core.rot_y[side] = y2;
}

mha_status rz_rotary_build(rz_ctx *z, layer *L) {
    const rz_core *c = &z->core;
    if (!c->rot_on[0] && !c->rot_on[1]) return MHA_OK;
    if (!c->rot_on[0] || !c->rot_on[1])
        return rz_rot_refuse(z, c->rot_on[1],
                             "only one of Q and K is rotated (a rotary embedding turns both)");
    if (L->cross)
        return rz_rot_refuse(z, 0, "a rotary embedding on cross-attention is not supported");
    rz_rot_found f[2];
    memset(f, 0, sizeof f);
    rz_rot_widen(z, 0, L->d_head);
    rz_rot_widen(z, 1, L->d_head);
    mha_status st = rz_rot_side(z, 0, L->d_head, &f[0]);
    if (st == MHA_OK) st = rz_rot_side(z, 1, L->d_head, &f[1]);
    if (st == MHA_OK && (f[0].kind != f[1].kind || f[0].rd != f[1].rd))
        st = rz_rot_refuse(z, 1, "Q and K turn differently");
    if (st == MHA_OK && (f[0].d != L->d_head || f[0].rd > L->d_head))
        st = rz_rot_refuse(z, 0, "it turns another axis than the head's features");
    if (st == MHA_OK) {
        const int64_t n = f[0].n_pos < f[1].n_pos ? f[0].n_pos : f[1].n_pos;
        const size_t bytes = (size_t)(n * (f[0].rd / 2)) * sizeof(float);
        if (memcmp(f[0].cos, f[1].cos, bytes) || memcmp(f[0].sin, f[1].sin, bytes))
            st = rz_rot_refuse(z, 1, "Q and K turn by different angles");
    }
    if (st == MHA_OK) {
        const rz_rot_found *w = f[0].n_pos >= f[1].n_pos ? &f[0] : &f[1];
        L->rotary = w->kind;
        L->rotary_dim = w->rd;
        st = rz_rot_role_input(L, MHA_ROLE_ROTARY_COS) >= 0 ? rz_rot_given_tables(z, w, L)
                                                            : rz_rot_tables(z, w, L);
    }
    rz_rot_found_free(z, &f[0]);
    rz_rot_found_free(z, &f[1]);
    return st;
}
