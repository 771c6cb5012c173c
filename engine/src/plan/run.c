/* run.c -- running a plan: the steps in order over the graph's values,
 * interpreted nodes through the reference interpreter, attention steps
 * through the caller's function; each value is freed after the last step
 * that reads it. Also the input checks and output shapes of a run. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "layer_bind.h"
#include "plan_internal.h"

/* Whether values[v] belongs to this run (not an initializer, a folded
 * constant or a caller's input). */
static int run_owns(const plan *P, tensor *const *in, tensor *const *values, int v) {
    const ir_value *val = &P->g->values[v];
    if (!values[v] || values[v] == val->init || values[v] == P->consts[v]) return 0;
    if (val->graph_input >= 0 && val->producer < 0 && in[val->graph_input] == values[v]) return 0;
    return 1;
}

void plan_values_free(const plan *P, tensor *const *in, tensor **values) {
    if (!values) return;
    for (size_t v = 0; v < P->g->n_values; v++)
        if (run_owns(P, in, values, (int)v)) tensor_free(values[v]);
    mha_free(&P->alloc, values);
}

/* The caller's buffer for graph output value v when it is float32 of
 * `bytes` bytes (plan_run), else NULL. */
static void *run_direct(const plan *P, const plan_run_arena *ar, int v, size_t bytes) {
    for (size_t k = 0; ar && ar->outputs && k < P->g->n_outputs; k++) {
        const mha_tensor *o = &ar->outputs[k];
        if (P->g->outputs[k] == v && o->dtype == MHA_DTYPE_FLOAT32 && o->data &&
            (size_t)mha_tensor_numel(o) * sizeof(float) == bytes)
            return o->data;
    }
    return NULL;
}

/* The output tensor of a fused step, value v: the caller's output buffer
 * when v is a graph output it can take, a view into the arena where the
 * layout places it, else its own (zeroed) storage. Recorded when
 * recording, unless it goes to the caller's buffer. */
static mha_status run_output(const plan *P, const plan_run_arena *ar, int v, int rank,
                             const int64_t *dims, tensor **y, mha_error *err) {
    *y = NULL;
    int64_t n = 1;
    for (int d = 0; d < rank; d++)
        n *= dims[d];
    size_t bytes = (size_t)n * sizeof(float);
    void *direct = run_direct(P, ar, v, bytes);
    if (ar && ar->record && !direct) ar->record[v] = bytes;
    if (!direct &&
        (!ar || !ar->layout || ar->layout->offset[v] == SIZE_MAX || ar->layout->size[v] < bytes))
        return tensor_new(&P->alloc, MHA_DTYPE_FLOAT32, rank, dims, y, err);
    tensor *t = mha_calloc(&P->alloc, 1, sizeof *t);
    if (!t) return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    t->dtype = MHA_DTYPE_FLOAT32;
    t->rank = rank;
    memcpy(t->dims, dims, sizeof(int64_t) * (size_t)rank);
    t->data = direct ? direct : ar->base + ar->layout->offset[v];
    t->nbytes = bytes;
    t->owns_data = 0; /* the caller's, or the arena's */
    t->alloc = &P->alloc;
    *y = t;
    return MHA_OK;
}

/* Whether any output buffer overlaps an input's bytes (a caller running
 * in place): the outputs are then written only at the end. */
static int run_outputs_alias_inputs(const mha_tensor *inputs, size_t n_inputs,
                                    const mha_tensor *outputs, size_t n_outputs) {
    for (size_t k = 0; k < n_outputs; k++) {
        const char *o = outputs[k].data;
        size_t ob = (size_t)mha_tensor_numel(&outputs[k]) * mha_dtype_size(outputs[k].dtype);
        for (size_t i = 0; o && i < n_inputs; i++) {
            const char *x = inputs[i].data;
            size_t xb = (size_t)mha_tensor_numel(&inputs[i]) * mha_dtype_size(inputs[i].dtype);
            if (x && (uintptr_t)o < (uintptr_t)x + xb && (uintptr_t)x < (uintptr_t)o + ob) return 1;
        }
    }
    return 0;
}

static mha_status run_interp(const plan *P, int ni, tensor **values, tensor **in, tensor **out,
                             int shape_only, mha_error *err) {
    const ir_graph *g = P->g;
    const ir_node *n = &g->nodes[ni];
    char d[160];
    for (size_t k = 0; k < n->n_inputs; k++) {
        int id = n->inputs[k];
        in[k] = id >= 0 ? values[id] : NULL;
        if (id >= 0 && !in[k])
            return mha_fail(err, MHA_ERR_INTERNAL, "plan: %s: input '%s' has no value",
                            ir_node_desc(n, d, sizeof d), g->values[id].name);
    }
    mha_status st = shape_only ? interp_eval_node_shape(&P->alloc, g, n, in, out, err)
                               : interp_eval_node(&P->alloc, g, n, in, out, err);
    if (st != MHA_OK) return st;
    for (size_t k = 0; k < n->n_outputs; k++) {
        int id = n->outputs[k];
        if (id >= 0 && !values[id]) {
            values[id] = out[k];
        } else {
            tensor_free(out[k]);
        }
        out[k] = NULL;
    }
    return MHA_OK;
}

static mha_status run_attention(const plan *P, size_t li, tensor **values, const plan_backend *be,
                                const plan_run_arena *ar, mha_error *err) {
    const plan_layer *pl = &P->layers[li];
    const layer *L = &pl->L;
    enum { NOUT = 1 + PLAN_LAYER_MAX_EXTRA };
    mha_tensor min[RUN_MAX_LAYER_INPUTS], mout[NOUT];
    tensor *y[NOUT] = {NULL};
    /* the graph value of each output of L: Y, then the present keys and
     * values of a cache (partition.c) */
    int ov[NOUT] = {pl->out_value};
    const size_t nout = L->n_outputs;
    if (L->n_inputs > RUN_MAX_LAYER_INPUTS || nout != 1 + pl->n_extra || nout > NOUT || !be)
        return mha_fail(err, MHA_ERR_INTERNAL, "plan: attention step %zu cannot run", li);
    for (size_t k = 0; k < pl->n_extra; k++)
        ov[1 + k] = pl->extra_out[k];
    for (size_t i = 0; i < L->n_inputs; i++) {
        const tensor *t = values[pl->in_values[i]];
        if (!t)
            return mha_fail(err, MHA_ERR_INTERNAL, "plan: attention step %zu: input %zu missing",
                            li, i);
        tensor_as_mha(t, &min[i]);
    }
    mha_status st = layer_output_shapes(L, min, L->n_inputs, mout, nout, err);
    /* the residual the step adds to Y: float32 of Y's shape (residual.c) */
    const float *res = NULL;
    if (st == MHA_OK && pl->residual) {
        const tensor *r = values[pl->in_values[L->n_inputs]];
        if (!r || r->dtype != MHA_DTYPE_FLOAT32 || mout[0].dtype != MHA_DTYPE_FLOAT32 ||
            r->rank != mout[0].rank ||
            memcmp(r->dims, mout[0].shape, sizeof(int64_t) * (size_t)r->rank))
            return mha_fail(err, MHA_ERR_SHAPE,
                            "plan: attention step %zu: the residual is not of the output's shape",
                            li);
        res = r->data;
    }
    for (size_t k = 0; k < nout && st == MHA_OK; k++) {
        if (mout[k].dtype != MHA_DTYPE_FLOAT32)
            st = tensor_new(&P->alloc, mout[k].dtype, mout[k].rank, mout[k].shape, &y[k], err);
        else
            st = run_output(P, ar, ov[k], mout[k].rank, mout[k].shape, &y[k], err);
        /* no zeroing of an arena view: a layer writes every element of its
         * outputs (mha_run's callers hand it unzeroed buffers) */
        if (st == MHA_OK) mout[k].data = y[k]->data;
    }
    if (st == MHA_OK) st = be->attention(be->user, P, li, min, L->n_inputs, mout, nout, res, err);
    for (size_t k = 0; k < nout; k++) {
        if (st == MHA_OK)
            values[ov[k]] = y[k];
        else
            tensor_free(y[k]);
    }
    return st;
}

/* The patch rows [p0, p1) of a patch Conv's A (run_patch_conv). */
typedef struct run_patches {
    const float *x;
    float *A;
    int64_t C, H, W, Hp, Wp, kh, kw, K;
} run_patches;

static void run_patch_rows(void *ctx, int64_t p0, int64_t p1) {
    const run_patches *pr = ctx;
    const int64_t per_item = pr->Hp * pr->Wp;
    for (int64_t p = p0; p < p1; p++) {
        const int64_t b = p / per_item, i = p % per_item / pr->Wp, j = p % pr->Wp;
        float *row = pr->A + p * pr->K;
        for (int64_t c = 0; c < pr->C; c++)
            for (int64_t u = 0; u < pr->kh; u++)
                memcpy(row + (c * pr->kh + u) * pr->kw,
                       pr->x + ((b * pr->C + c) * pr->H + i * pr->kh + u) * pr->W + j * pr->kw,
                       sizeof(float) * (size_t)pr->kw);
    }
}

/* A general Conv's epilogue over elements [e0, e1) of its output. */
typedef struct run_conv_ep {
    const plan_ew_prog *prog;
    float *y;
    const float *ext;
} run_conv_ep;

static void run_conv_ep_part(void *ctx, int64_t e0, int64_t e1) {
    const run_conv_ep *c = ctx;
    plan_ew_apply(c->prog, c->y + e0, c->ext ? c->ext + e0 : NULL, e1 - e0, 1, 0);
}

/* The epilogue of a Conv step (the GELU after it) on its output y, in
 * place: scalar operands, or a tensor of y's shape. */
static mha_status run_conv_epilogue(const plan *P, const plan_gemm *pg, tensor *const *values,
                                    tensor *y, const plan_backend *be, mha_error *err) {
    if (pg->epilogue.n_ops == 0) return MHA_OK;
    const tensor *ext = pg->epilogue.ext_value >= 0 ? values[pg->epilogue.ext_value] : NULL;
    char d[160];
    if (pg->epilogue.ext_value >= 0 &&
        (!ext || ext->dtype != MHA_DTYPE_FLOAT32 || tensor_numel(ext) != tensor_numel(y)))
        return mha_fail(err, MHA_ERR_SHAPE, "plan: %s: the epilogue's operand is not of %s",
                        ir_node_desc(&P->g->nodes[pg->node], d, sizeof d), "the output's size");
    run_conv_ep ep = {&pg->epilogue, y->data, ext ? ext->data : NULL};
    if (!be->parallel) {
        run_conv_ep_part(&ep, 0, tensor_numel(y));
        return MHA_OK;
    }
    return be->parallel(be->user, run_conv_ep_part, &ep, tensor_numel(y), 4096, err);
}

/* A Conv's product rows Cm [B rows, N] as channels [0, N) of its output y
 * [B, Nall, rows] (a group's: y starts at its first channel). */
static void run_rows_to_channels(const float *Cm, float *y, int64_t B, int64_t rows, int64_t N,
                                 int64_t Nall) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < N; c++)
                y[(b * Nall + c) * rows + r] = Cm[(b * rows + r) * N + c];
}

/* A patch Conv as a GEMM (plan_gemm.conv_kh): x [B, C, H, W] cut into
 * patch rows [B Hp Wp, C kh kw] (row b Hp Wp + i Wp + j, column (c kh + u)
 * kw + v = x[b, c, i kh + u, j kw + v]), the product [B Hp Wp, N] written
 * back as y [B, N, Hp, Wp], or (conv_rows) y [B, Hp Wp, N] is the product.
 * A 1-D Conv's x [B, C, W] is one of height 1, its y [B, N, Wp]. */
static mha_status run_patch_conv(const plan *P, size_t gi, tensor **values, const plan_backend *be,
                                 const plan_run_arena *ar, mha_error *err) {
    const plan_gemm *pg = &P->gemms[gi];
    const tensor *x = values[pg->in_value];
    const int64_t kh = pg->conv_kh, kw = pg->conv_kw;
    char d[160];
    /* a 1-D Conv: x [B, C, W], an image of height 1 */
    const int one_d = x && x->rank == 3;
    if (!x || !be || x->dtype != MHA_DTYPE_FLOAT32 || (x->rank != 4 && !(one_d && kh == 1)) ||
        x->dims[1] * kh * kw != pg->K || (!one_d && x->dims[2] < kh) || x->dims[x->rank - 1] < kw)
        return mha_fail(err, MHA_ERR_SHAPE,
                        "plan: %s: input is not float32 [B, %lld, >= %lld, >= %lld]",
                        ir_node_desc(&P->g->nodes[pg->node], d, sizeof d),
                        (long long)(pg->K / (kh * kw)), (long long)kh, (long long)kw);
    const int64_t B = x->dims[0], C = x->dims[1], H = one_d ? 1 : x->dims[2];
    const int64_t W = x->dims[x->rank - 1];
    const int64_t Hp = H / kh, Wp = W / kw, rows = Hp * Wp, M = B * rows, N = pg->N;
    const int64_t dims[4] = {B, N, Hp, Wp}, dims_1d[3] = {B, N, Wp}, rows_dims[3] = {B, rows, N};
    tensor *y = NULL;
    mha_status st = pg->conv_rows ? run_output(P, ar, pg->out_value, 3, rows_dims, &y, err)
                    : one_d       ? run_output(P, ar, pg->out_value, 3, dims_1d, &y, err)
                                  : run_output(P, ar, pg->out_value, 4, dims, &y, err);
    /* the rows: a block kept between runs (the plan's one mutable part,
     * under its lock, as the arena's blocks) */
    size_t a_bytes = 0;
    float *A =
        st == MHA_OK
            ? plan_rows_block_take((plan *)P, sizeof(float) * (size_t)(M * pg->K + 1), &a_bytes)
            : NULL;
    /* patch rows: the product is the output itself */
    float *Cm = !A              ? NULL
                : pg->conv_rows ? y->data
                                : mha_malloc(&P->alloc, sizeof(float) * (size_t)(M * N + 1));
    if (st == MHA_OK && !Cm) st = mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    if (st == MHA_OK) {
        /* the patch rows on the runtime's threads: ViT-B/16's 1,568 rows of
         * 768 (4.8 MB in 75,000 copies of 64 bytes), into a fresh block,
         * took 15-18 ms of one core, the GEMM after it ~5 ms of two; the
         * step is now ~6 ms at 2 threads, ~12 ms at 1 */
        run_patches pr = {x->data, A, C, H, W, Hp, Wp, kh, kw, pg->K};
        if (be->parallel)
            st = be->parallel(be->user, run_patch_rows, &pr, M, 64, err);
        else
            run_patch_rows(&pr, 0, M);
    }
    if (st == MHA_OK) st = be->gemm(be->user, P, gi, A, M, Cm, NULL, err);
    if (st == MHA_OK && !pg->conv_rows) run_rows_to_channels(Cm, y->data, B, rows, N, N);
    plan_rows_block_give((plan *)P, A, a_bytes);
    if (!pg->conv_rows) mha_free(&P->alloc, Cm);
    if (st == MHA_OK) st = run_conv_epilogue(P, pg, values, y, be, err);
    if (st != MHA_OK) {
        tensor_free(y);
        return st;
    }
    values[pg->out_value] = y;
    return MHA_OK;
}

/* The rows [p0, p1) of a general Conv's receptive fields (run_conv):
 * row b Ho Wo + i Wo + j, column (c kh + u) kw + v = x[b, c, i sh - pt +
 * u dh, j sw - pl + v dw], 0 outside x; rows counted from row0. */
typedef struct run_fields {
    const float *x;
    float *A;
    int64_t row0, C, H, W, Ho, Wo, kh, kw, K;
    const int64_t *stride, *dil, *pad;
    int64_t c0, C_all; /* channels [c0, c0 + C) of x's C_all (a group's) */
} run_fields;

static void run_field_rows(void *ctx, int64_t p0, int64_t p1) {
    const run_fields *f = ctx;
    const int64_t per_item = f->Ho * f->Wo;
    for (int64_t p = p0; p < p1; p++) {
        const int64_t q = f->row0 + p, b = q / per_item, i = q % per_item / f->Wo, j = q % f->Wo;
        float *row = f->A + p * f->K;
        for (int64_t c = 0; c < f->C; c++) {
            const float *xc = f->x + (b * f->C_all + f->c0 + c) * f->H * f->W;
            for (int64_t u = 0; u < f->kh; u++) {
                const int64_t hi = i * f->stride[0] - f->pad[0] + u * f->dil[0];
                float *out = row + (c * f->kh + u) * f->kw;
                const int64_t w0 = j * f->stride[1] - f->pad[1];
                if (f->dil[1] == 1) {
                    /* taps [v0, v1) inside x: one copy (wav2vec2's kernel of
                     * 128), zeros either side */
                    int64_t v0 = w0 < 0 ? -w0 : 0, v1 = f->W - w0 < f->kw ? f->W - w0 : f->kw;
                    if (hi < 0 || hi >= f->H || v1 < v0) v0 = v1 = 0;
                    memset(out, 0, sizeof(float) * (size_t)v0);
                    if (v1 > v0)
                        memcpy(out + v0, xc + hi * f->W + w0 + v0,
                               sizeof(float) * (size_t)(v1 - v0));
                    memset(out + v1, 0, sizeof(float) * (size_t)(f->kw - v1));
                    continue;
                }
                for (int64_t v = 0; v < f->kw; v++) {
                    const int64_t wi = w0 + v * f->dil[1];
                    out[v] = hi >= 0 && hi < f->H && wi >= 0 && wi < f->W ? xc[hi * f->W + wi] : 0;
                }
            }
        }
    }
}

/* Rows of the receptive fields a general Conv cuts at once: ~8 MiB of them
 * (Whisper's 3,000 frames of 1,152 at a time), not B Ho Wo x K. */
#define RUN_CONV_ROWS_BYTES ((int64_t)8 << 20)

/* A depthwise Conv (plan_gemm.conv_depthwise): the direct loop of
 * conv_direct.c over the output planes, y [B, Nc, (Ho,) Wo]. */
static mha_status run_dwconv(const plan *P, const plan_gemm *pg, const tensor *x, int64_t Ho,
                             int64_t Wo, const int64_t pad[4], tensor *y, const plan_backend *be,
                             mha_error *err) {
    const int one_d = x->rank == 3;
    plan_dwconv d = {x->data,
                     pg->dw_w,
                     pg->bias,
                     y->data,
                     x->dims[1],
                     one_d ? 1 : x->dims[2],
                     x->dims[x->rank - 1],
                     pg->dw_channels,
                     Ho,
                     Wo,
                     pg->conv_kh,
                     pg->conv_kw,
                     pg->conv_stride,
                     pg->conv_dil,
                     pad};
    (void)P;
    const int64_t planes = x->dims[0] * pg->dw_channels;
    /* a multiply-add per tap and output, as a GEMM's 2 M N K counts */
    if (be->flops) *be->flops += 2.0 * (double)planes * (double)(Ho * Wo * d.kh * d.kw);
    if (!be->parallel) {
        plan_dwconv_planes(&d, 0, planes);
        return MHA_OK;
    }
    return be->parallel(be->user, plan_dwconv_planes, &d, planes, 1, err);
}

/* A general Conv as a GEMM (plan_gemm.conv_general): x [B, C, (H,) W]
 * cut into the rows of its receptive fields [B Ho Wo, C kh kw] a block at
 * a time, the product [B Ho Wo, N] written as y [B, N, (Ho,) Wo] (or
 * conv_rows: the product is y [B, Ho Wo, N]), then the epilogue on y. A
 * grouped one: the same per group g, over its channels [g C / G, (g + 1) C
 * / G) with its GEMM (gemms[gi + g]), into its output channels [g N, (g +
 * 1) N) (N: a group's). A depthwise one: run_dwconv. */
static mha_status run_conv(const plan *P, size_t gi, tensor **values, const plan_backend *be,
                           const plan_run_arena *ar, mha_error *err) {
    const plan_gemm *pg = &P->gemms[gi];
    const tensor *x = values[pg->in_value];
    const int64_t kh = pg->conv_kh, kw = pg->conv_kw;
    const int64_t G = pg->conv_groups > 1 ? pg->conv_groups : 1;
    /* channels in: a group's (a depthwise Conv's K is its taps) */
    const int64_t Cg = pg->conv_depthwise ? 1 : pg->K / (kh * kw);
    const int one_d = x && x->rank == 3;
    char d[160];
    if (!x || !be || x->dtype != MHA_DTYPE_FLOAT32 || (x->rank != 4 && !(one_d && kh == 1)) ||
        (pg->conv_depthwise ? x->dims[1] < 1 || pg->dw_channels % x->dims[1] != 0
                            : x->dims[1] != Cg * G))
        return mha_fail(err, MHA_ERR_SHAPE, "plan: %s: input is not float32 [B, %lld, ...]",
                        ir_node_desc(&P->g->nodes[pg->node], d, sizeof d), (long long)(Cg * G));
    const int64_t B = x->dims[0], C = x->dims[1], H = one_d ? 1 : x->dims[2];
    const int64_t W = x->dims[x->rank - 1], N = pg->N;
    /* the output's channels: all groups', or the depthwise Conv's */
    const int64_t Nall = pg->conv_depthwise ? pg->dw_channels : N * G;
    int64_t pad[4];
    plan_conv_pads(pg, H, W, pad);
    const int64_t hspan = H + pad[0] + pad[2] - pg->conv_dil[0] * (kh - 1) - 1;
    const int64_t wspan = W + pad[1] + pad[3] - pg->conv_dil[1] * (kw - 1) - 1;
    if (hspan < 0 || wspan < 0)
        return mha_fail(err, MHA_ERR_SHAPE, "plan: %s: input of %lld x %lld is shorter than %s",
                        ir_node_desc(&P->g->nodes[pg->node], d, sizeof d), (long long)H,
                        (long long)W, "the kernel's field");
    const int64_t Ho = hspan / pg->conv_stride[0] + 1, Wo = wspan / pg->conv_stride[1] + 1;
    const int64_t rows = Ho * Wo, M = B * rows;
    const int64_t dims[4] = {B, Nall, Ho, Wo}, dims_1d[3] = {B, Nall, Wo};
    const int64_t rows_dims[3] = {B, rows, N};
    tensor *y = NULL;
    mha_status st = pg->conv_rows ? run_output(P, ar, pg->out_value, 3, rows_dims, &y, err)
                    : one_d       ? run_output(P, ar, pg->out_value, 3, dims_1d, &y, err)
                                  : run_output(P, ar, pg->out_value, 4, dims, &y, err);
    if (st == MHA_OK && pg->conv_depthwise) {
        st = run_dwconv(P, pg, x, Ho, Wo, pad, y, be, err);
        if (st == MHA_OK) st = run_conv_epilogue(P, pg, values, y, be, err);
        if (st != MHA_OK) {
            tensor_free(y);
            return st;
        }
        values[pg->out_value] = y;
        return MHA_OK;
    }
    int64_t block = pg->K > 0 ? RUN_CONV_ROWS_BYTES / (int64_t)sizeof(float) / pg->K : M;
    block = block < 64 ? 64 : block > M ? M : block;
    size_t a_bytes = 0;
    float *A =
        st == MHA_OK
            ? plan_rows_block_take((plan *)P, sizeof(float) * (size_t)(block * pg->K + 1), &a_bytes)
            : NULL;
    float *Cm = !A              ? NULL
                : pg->conv_rows ? y->data
                                : mha_malloc(&P->alloc, sizeof(float) * (size_t)(M * N + 1));
    if (st == MHA_OK && !Cm) st = mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    for (int64_t g = 0; g < G && st == MHA_OK; g++) {
        for (int64_t r0 = 0; st == MHA_OK && r0 < M; r0 += block) {
            const int64_t n = M - r0 < block ? M - r0 : block;
            run_fields f = {x->data,      A,   r0,     Cg, H,     W,
                            Ho,           Wo,  kh,     kw, pg->K, pg->conv_stride,
                            pg->conv_dil, pad, g * Cg, C};
            if (be->parallel)
                st = be->parallel(be->user, run_field_rows, &f, n, 16, err);
            else
                run_field_rows(&f, 0, n);
            if (st == MHA_OK)
                st = be->gemm(be->user, P, gi + (size_t)g, A, n, Cm + r0 * N, NULL, err);
        }
        /* group g's product [B rows, N] into its output channels */
        if (st == MHA_OK && !pg->conv_rows)
            run_rows_to_channels(Cm, (float *)y->data + g * N * rows, B, rows, N, Nall);
    }
    plan_rows_block_give((plan *)P, A, a_bytes);
    if (!pg->conv_rows) mha_free(&P->alloc, Cm);
    if (st == MHA_OK) st = run_conv_epilogue(P, pg, values, y, be, err);
    if (st != MHA_OK) {
        tensor_free(y);
        return st;
    }
    values[pg->out_value] = y;
    return MHA_OK;
}

/* A GEMM over the last axis of its float32 input. */
static mha_status run_gemm(const plan *P, size_t gi, tensor **values, const plan_backend *be,
                           const plan_run_arena *ar, mha_error *err) {
    const plan_gemm *pg = &P->gemms[gi];
    if (pg->conv_general) return run_conv(P, gi, values, be, ar, err);
    if (pg->conv_kh > 0) return run_patch_conv(P, gi, values, be, ar, err);
    const tensor *A = values[pg->in_value];
    char d[160];
    if (!A || !be || A->dtype != MHA_DTYPE_FLOAT32 || A->rank < 1 || A->dims[A->rank - 1] != pg->K)
        return mha_fail(err, MHA_ERR_SHAPE, "plan: %s: input is not float32 [..., %lld]",
                        ir_node_desc(&P->g->nodes[pg->node], d, sizeof d), (long long)pg->K);
    int64_t dims[MHA_MAX_RANK];
    memcpy(dims, A->dims, sizeof dims);
    dims[A->rank - 1] = pg->N;
    tensor *y = NULL;
    /* every element is written: C = A . W (+ bias) */
    mha_status st = run_output(P, ar, pg->out_value, A->rank, dims, &y, err);
    int64_t M = pg->K > 0 ? tensor_numel(A) / pg->K : 0;
    /* the epilogue runs tile by tile right after the product (the host's
     * program, or the plugin's GEMM when it declares the fused form) */
    plan_ep ep = {&pg->epilogue, NULL};
    if (st == MHA_OK && pg->epilogue.ext_value >= 0) {
        const tensor *ext = values[pg->epilogue.ext_value];
        if (!ext || ext->dtype != MHA_DTYPE_FLOAT32 || tensor_numel(ext) != tensor_numel(y))
            st = mha_fail(err, MHA_ERR_SHAPE,
                          "plan: %s: the epilogue's operand has %lld elements, the product %lld",
                          ir_node_desc(&P->g->nodes[pg->node], d, sizeof d),
                          ext ? (long long)tensor_numel(ext) : -1LL, (long long)tensor_numel(y));
        else
            ep.ext = ext->data;
    }
    if (st == MHA_OK)
        st = be->gemm(be->user, P, gi, (const float *)A->data, M, y->data,
                      pg->epilogue.n_ops > 0 ? &ep : NULL, err);
    if (st != MHA_OK) {
        tensor_free(y);
        return st;
    }
    values[pg->out_value] = y;
    return MHA_OK;
}

/* A LayerNorm over the rows of its float32 input (after the residual
 * add before it, when fused): on be's norm (the runtime's plugin and
 * pool), else the host's reference here. */
static mha_status run_norm(const plan *P, size_t i, tensor **values, const plan_backend *be,
                           const plan_run_arena *ar, mha_error *err) {
    const plan_norm *nm = &P->norms[i];
    const tensor *x = values[nm->in_value];
    if (!x || x->dtype != MHA_DTYPE_FLOAT32 || x->rank < 1 || x->dims[x->rank - 1] != nm->D)
        return mha_fail(err, MHA_ERR_SHAPE, "plan: norm step %zu: input is not float32 [..., %lld]",
                        i, (long long)nm->D);
    const tensor *res = nm->res_value >= 0 ? values[nm->res_value] : NULL;
    if (nm->res_value >= 0 && (!res || res->dtype != MHA_DTYPE_FLOAT32 || res->rank != x->rank ||
                               memcmp(res->dims, x->dims, sizeof(int64_t) * (size_t)x->rank)))
        return mha_fail(err, MHA_ERR_SHAPE,
                        "plan: norm step %zu: the residual is not of the input's shape", i);
    tensor *y = NULL;
    mha_status st = run_output(P, ar, nm->out_value, x->rank, x->dims, &y, err);
    if (st != MHA_OK) return st;
    const int64_t rows = nm->D > 0 ? tensor_numel(x) / nm->D : 0;
    const float *r = res ? res->data : NULL;
    if (be && be->norm)
        st = be->norm(be->user, P, i, x->data, r, y->data, rows, err);
    else if (plan_norm_rows(nm, x->data, r, y->data, rows) != 0)
        st =
            mha_fail(err, MHA_ERR_SHAPE, "plan: norm step %zu: eps %g refused", i, (double)nm->eps);
    if (st != MHA_OK) {
        tensor_free(y);
        return st;
    }
    values[nm->out_value] = y;
    return MHA_OK;
}

/* Whether b runs along a's last axes (after its leading 1s) and divides it
 * (an empty b fits an empty a of its axes: a batch of 0 rows adds nothing). */
static int run_add_fits(const tensor *a, const tensor *b) {
    if (!a || !b || a->dtype != MHA_DTYPE_FLOAT32 || b->dtype != MHA_DTYPE_FLOAT32 ||
        b->rank > a->rank || (tensor_numel(b) < 1 && tensor_numel(a) > 0))
        return 0;
    int d = 0;
    while (d < b->rank && b->dims[d] == 1)
        d++;
    for (; d < b->rank; d++)
        if (b->dims[d] != a->dims[a->rank - b->rank + d]) return 0;
    return 1;
}

/* An add step: y = a + b (b of a's shape, or a constant over its last
 * axes), on the calling thread (a pass over a few MB). */
static mha_status run_add(const plan *P, size_t i, tensor **values, const plan_run_arena *ar,
                          mha_error *err) {
    const plan_add *ad = &P->adds[i];
    const tensor *a = values[ad->a_value], *b = values[ad->b_value];
    if (!run_add_fits(a, b)) {
        char d[160];
        return mha_fail(err, MHA_ERR_SHAPE, "plan: %s: operands not float32 of one shape",
                        ir_node_desc(&P->g->nodes[ad->node], d, sizeof d));
    }
    tensor *y = NULL;
    mha_status st = run_output(P, ar, ad->out_value, a->rank, a->dims, &y, err);
    if (st != MHA_OK) return st;
    plan_add_values(a->data, b->data, y->data, tensor_numel(a), tensor_numel(b));
    values[ad->out_value] = y;
    return MHA_OK;
}

/* A gather step: rows of the table by ids into y [ids..., D]; an id
 * outside [-V, V) fails the run, as the interpreter's Gather does. */
static mha_status run_gather(const plan *P, size_t i, tensor **values, const plan_run_arena *ar,
                             mha_error *err) {
    const plan_gather *ga = &P->gathers[i];
    const tensor *tab = values[ga->table_value], *ids = values[ga->ids_value];
    char d[160];
    if (!tab || !ids || tab->dtype != MHA_DTYPE_FLOAT32 || tab->rank != 2 ||
        (ids->dtype != MHA_DTYPE_INT64 && ids->dtype != MHA_DTYPE_INT32) ||
        ids->rank + 1 > MHA_MAX_RANK)
        return mha_fail(err, MHA_ERR_SHAPE, "plan: %s: not a table and ids",
                        ir_node_desc(&P->g->nodes[ga->node], d, sizeof d));
    const int64_t V = tab->dims[0], D = tab->dims[1], n = tensor_numel(ids);
    for (int64_t k = 0; k < n; k++) {
        const int64_t id = tensor_get_i64(ids, k);
        if (id < -V || id >= V)
            return mha_fail(err, MHA_ERR_SHAPE,
                            "plan: %s: index %lld is out of range for axis 0 of extent %lld",
                            ir_node_desc(&P->g->nodes[ga->node], d, sizeof d), (long long)id,
                            (long long)V);
    }
    int64_t dims[MHA_MAX_RANK];
    memcpy(dims, ids->dims, sizeof(int64_t) * (size_t)ids->rank);
    dims[ids->rank] = D;
    tensor *y = NULL;
    mha_status st = run_output(P, ar, ga->out_value, ids->rank + 1, dims, &y, err);
    if (st != MHA_OK) return st;
    const float *rows = tab->data;
    float *out = y->data;
    for (int64_t k = 0; k < n; k++) {
        const int64_t id = tensor_get_i64(ids, k);
        memcpy(out + k * D, rows + (id < 0 ? id + V : id) * D, sizeof(float) * (size_t)D);
    }
    values[ga->out_value] = y;
    return MHA_OK;
}

/* A concat step: y = the inputs one after another along the axis, every
 * input float32 of y's rank and of the first input's dims off the axis
 * (the interpreter's Concat refuses the rest the same way). */
static mha_status run_concat(const plan *P, size_t i, tensor **values, const plan_run_arena *ar,
                             mha_error *err) {
    const plan_concat *cc = &P->concats[i];
    const tensor *x0 = values[cc->reads[0]];
    char d[160];
    int64_t dims[MHA_MAX_RANK];
    int ok = x0 && x0->dtype == MHA_DTYPE_FLOAT32 && x0->rank > cc->axis;
    if (ok) memcpy(dims, x0->dims, sizeof(int64_t) * (size_t)x0->rank);
    for (size_t k = 1; ok && k < cc->n_reads; k++) {
        const tensor *x = values[cc->reads[k]];
        ok = x && x->dtype == MHA_DTYPE_FLOAT32 && x->rank == x0->rank;
        for (int a = 0; ok && a < x0->rank; a++)
            ok = a == cc->axis || x->dims[a] == x0->dims[a];
        if (ok) dims[cc->axis] += x->dims[cc->axis];
    }
    if (!ok)
        return mha_fail(err, MHA_ERR_SHAPE, "plan: %s: inputs not float32 of one shape off axis %d",
                        ir_node_desc(&P->g->nodes[cc->node], d, sizeof d), cc->axis);
    tensor *y = NULL;
    mha_status st = run_output(P, ar, cc->out_value, x0->rank, dims, &y, err);
    if (st != MHA_OK) return st;
    /* outer: the product of the dims before the axis; each input's piece of
     * an outer index is its dims from the axis on, contiguous */
    int64_t outer = 1;
    for (int a = 0; a < cc->axis; a++)
        outer *= dims[a];
    float *out = y->data;
    for (int64_t o = 0; o < outer; o++)
        for (size_t k = 0; k < cc->n_reads; k++) {
            const tensor *x = values[cc->reads[k]];
            const int64_t piece = outer > 0 ? tensor_numel(x) / outer : 0;
            if (piece > 0)
                memcpy(out, (const float *)x->data + o * piece, sizeof(float) * (size_t)piece);
            out += piece;
        }
    values[cc->out_value] = y;
    return MHA_OK;
}

/* The values step s reads: the node's inputs, or the layer's. */
static const int *run_step_reads(const plan *P, const plan_step *s, size_t *n) {
    if (s->kind == PLAN_STEP_NORM) {
        *n = P->norms[s->index].n_reads;
        return P->norms[s->index].reads;
    }
    if (s->kind == PLAN_STEP_GEMM) {
        *n = P->gemms[s->index].n_reads;
        return P->gemms[s->index].reads;
    }
    if (s->kind == PLAN_STEP_ADD) {
        *n = P->adds[s->index].n_reads;
        return P->adds[s->index].reads;
    }
    if (s->kind == PLAN_STEP_GATHER) {
        *n = P->gathers[s->index].n_reads;
        return P->gathers[s->index].reads;
    }
    if (s->kind == PLAN_STEP_CONCAT) {
        *n = P->concats[s->index].n_reads;
        return P->concats[s->index].reads;
    }
    if (s->kind == PLAN_STEP_ATTENTION) {
        *n = plan_layer_n_reads(&P->layers[s->index]);
        return P->layers[s->index].in_values;
    }
    *n = P->g->nodes[s->index].n_inputs;
    return P->g->nodes[s->index].inputs;
}

static mha_status run_steps(const plan *P, tensor *const *in, const plan_backend *be, int keep_all,
                            const plan_observer *obs, const plan_run_arena *ar,
                            tensor ***values_out, mha_error *err);

mha_status plan_exec(const plan *P, tensor *const *in, const plan_backend *be, int keep_all,
                     tensor ***values_out, mha_error *err) {
    return run_steps(P, in, be, keep_all, NULL, NULL, values_out, err);
}

mha_status plan_exec_observed(const plan *P, tensor *const *in, const plan_backend *be,
                              const plan_observer *obs, tensor ***values_out, mha_error *err) {
    return run_steps(P, in, be, 0, obs, NULL, values_out, err);
}

mha_status plan_exec_arena(const plan *P, tensor *const *in, const plan_backend *be,
                           const plan_run_arena *ar, tensor ***values_out, mha_error *err) {
    return run_steps(P, in, be, 0, NULL, ar, values_out, err);
}

/* Tells obs about what step s wrote, before anything is freed, adding its
 * elements to *made. */
static void run_observe(const plan *P, const plan_step *s, tensor *const *values,
                        const plan_observer *obs, int64_t *made) {
    if (s->kind != PLAN_STEP_INTERP) {
        int v = s->kind == PLAN_STEP_ATTENTION ? P->layers[s->index].out_value
                : s->kind == PLAN_STEP_GEMM    ? P->gemms[s->index].out_value
                : s->kind == PLAN_STEP_ADD     ? P->adds[s->index].out_value
                : s->kind == PLAN_STEP_GATHER  ? P->gathers[s->index].out_value
                : s->kind == PLAN_STEP_CONCAT  ? P->concats[s->index].out_value
                                               : P->norms[s->index].out_value;
        if (v >= 0 && values[v]) {
            obs->value(obs->user, v, values[v]);
            plan_add_elements(made, values[v]);
        }
        for (size_t k = 0; s->kind == PLAN_STEP_ATTENTION && k < P->layers[s->index].n_extra; k++) {
            int e = P->layers[s->index].extra_out[k];
            if (values[e]) {
                obs->value(obs->user, e, values[e]);
                plan_add_elements(made, values[e]);
            }
        }
        return;
    }
    const ir_node *nd = &P->g->nodes[s->index];
    for (size_t k = 0; k < nd->n_outputs; k++)
        if (nd->outputs[k] >= 0 && values[nd->outputs[k]]) {
            obs->value(obs->user, nd->outputs[k], values[nd->outputs[k]]);
            plan_add_elements(made, values[nd->outputs[k]]);
        }
}

/* Monotonic wall time in seconds (plan_backend.step_seconds). */
static double run_clock(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* The steps in order; keep_all: no value freed (verification). */
static mha_status run_steps(const plan *P, tensor *const *in, const plan_backend *be, int keep_all,
                            const plan_observer *obs, const plan_run_arena *ar,
                            tensor ***values_out, mha_error *err) {
    const ir_graph *g = P->g;
    *values_out = NULL;
    size_t max_io = 1;
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (g->nodes[i].n_inputs > max_io) max_io = g->nodes[i].n_inputs;
        if (g->nodes[i].n_outputs > max_io) max_io = g->nodes[i].n_outputs;
    }
    tensor **values = mha_calloc(&P->alloc, g->n_values ? g->n_values : 1, sizeof *values);
    tensor **nin = mha_calloc(&P->alloc, max_io, sizeof *nin);
    tensor **nout = mha_calloc(&P->alloc, max_io, sizeof *nout);
    mha_status st = MHA_OK;
    int64_t made = 0; /* elements the steps made (obs->max_elements) */
    if (!values || !nin || !nout) {
        st = mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory for %zu values", g->n_values);
        goto done;
    }
    for (size_t v = 0; v < g->n_values; v++)
        values[v] = (tensor *)plan_const(P, (int)v);
    for (size_t i = 0; i < g->n_inputs; i++)
        values[g->inputs[i]] = in[i];
    double *const seconds = be ? be->step_seconds : NULL;
    for (size_t s = 0; seconds && s < P->n_steps; s++)
        seconds[s] = 0.0;
    for (size_t s = 0; s < P->n_steps && st == MHA_OK; s++) {
        const plan_step *step = &P->steps[s];
        const double t0 = seconds ? run_clock() : 0.0;
        if (step->kind == PLAN_STEP_ATTENTION)
            st = run_attention(P, (size_t)step->index, values, be, ar, err);
        else if (step->kind == PLAN_STEP_GEMM)
            st = run_gemm(P, (size_t)step->index, values, be, ar, err);
        else if (step->kind == PLAN_STEP_NORM)
            st = run_norm(P, (size_t)step->index, values, be, ar, err);
        else if (step->kind == PLAN_STEP_ADD)
            st = run_add(P, (size_t)step->index, values, ar, err);
        else if (step->kind == PLAN_STEP_GATHER)
            st = run_gather(P, (size_t)step->index, values, ar, err);
        else if (step->kind == PLAN_STEP_CONCAT)
            st = run_concat(P, (size_t)step->index, values, ar, err);
        else
            st = run_interp(P, step->index, values, nin, nout,
                            obs && obs->shape_only && obs->shape_only[step->index], err);
        if (seconds) seconds[s] = run_clock() - t0;
        if (st == MHA_OK && obs) {
            run_observe(P, step, values, obs, &made);
            if (obs->max_elements > 0 && made > obs->max_elements)
                st = mha_fail(err, MHA_ERR_LIMIT,
                              "a probe of the graph made over %lld elements of values (the "
                              "bound for a model of these weights)",
                              (long long)obs->max_elements);
        }
        if (st != MHA_OK || keep_all) continue;
        /* lifetimes: what this step read for the last time, and what it
         * wrote that nobody reads */
        size_t n;
        const int *reads = run_step_reads(P, step, &n);
        for (size_t k = 0; k < n; k++) {
            int v = reads[k];
            if (v >= 0 && P->last_step[v] == (int)s && run_owns(P, in, values, v)) {
                tensor_free(values[v]);
                values[v] = NULL;
            }
        }
        if (step->kind == PLAN_STEP_INTERP) {
            const ir_node *nd = &g->nodes[step->index];
            for (size_t k = 0; k < nd->n_outputs; k++) {
                int v = nd->outputs[k];
                if (v >= 0 && P->last_step[v] < 0 && run_owns(P, in, values, v)) {
                    tensor_free(values[v]);
                    values[v] = NULL;
                }
            }
        }
    }
done:
    mha_free(&P->alloc, nin);
    mha_free(&P->alloc, nout);
    if (st != MHA_OK) {
        plan_values_free(P, in, values);
        return st;
    }
    *values_out = values;
    return MHA_OK;
}

/* Token ids outside the vocabulary of the tables input i indexes, or a
 * 0 / 1 mask holding another value: the first one, by its place in the
 * input ([row, position] for [B, S]). */
static mha_status run_check_ids(const plan *P, size_t i, const mha_tensor *t, mha_error *err) {
    const int64_t x = P->id_extent ? P->id_extent[i] : 0;
    if (x == 0 || (t->dtype != MHA_DTYPE_INT64 && t->dtype != MHA_DTYPE_INT32)) return MHA_OK;
    const int64_t hi = x > 0 ? x : 2;
    const int64_t n = mha_tensor_numel(t);
    for (int64_t e = 0; e < n; e++) {
        int64_t id = t->dtype == MHA_DTYPE_INT64 ? ((const int64_t *)t->data)[e]
                                                 : ((const int32_t *)t->data)[e];
        if (id >= 0 && id < hi) continue;
        int64_t idx[MHA_MAX_RANK], rest = e; /* e as an index, last axis fastest */
        for (int d = t->rank - 1; d >= 0; d--) {
            idx[d] = rest % t->shape[d];
            rest /= t->shape[d];
        }
        char at[128] = "";
        size_t len = 0;
        for (int d = 0; d < t->rank && len < sizeof at - 24; d++)
            len += (size_t)snprintf(at + len, sizeof at - len, "%s%lld", d ? ", " : "",
                                    (long long)idx[d]);
        if (x == PLAN_IDS_MASK01)
            return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                            "input '%s' [%s]: mask value %lld is neither 0 nor 1",
                            P->inputs[i].name, at, (long long)id);
        /* the table the ids index, as the input's name says it: positions
         * and token types are not the vocabulary */
        const char *name = P->inputs[i].name;
        const char *what = "token id";
        char table[64];
        snprintf(table, sizeof table, "the vocabulary of %lld", (long long)x);
        if (strstr(name, "position") || strstr(name, "pos_ids")) {
            what = "position id";
            snprintf(table, sizeof table, "the model's %lld positions", (long long)x);
        } else if (strstr(name, "token_type") || strstr(name, "segment")) {
            what = "token type";
            snprintf(table, sizeof table, "the model's %lld token types", (long long)x);
        }
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "input '%s' [%s]: %s %lld is outside %s (ids in [0, %lld))", name, at, what,
                        (long long)id, table, (long long)x);
    }
    return MHA_OK;
}

/* Each symbolic axis the load found to be another (plus one more, plus a
 * constant) -- a cross-attention mask's keys named apart from the encoder
 * states', a cache's keys (past + new) -- must be that in these inputs:
 * the graph would otherwise broadcast or fail deep inside. One line naming
 * the input, its axis and the size the other inputs make it. */
static mha_status run_check_sums(const plan *P, const mha_tensor *inputs, const int64_t *sym,
                                 const size_t *sym_from, mha_error *err) {
    const ir_graph *g = P->g;
    for (int k = 0; k < P->n_syms && k < PLAN_MAX_SYMS; k++) {
        const int a = P->sym_sum[k][0], b = P->sym_sum[k][1];
        if (a < 0 || sym[k] < 0 || sym[a] < 0 || (b >= 0 && sym[b] < 0)) continue;
        const int64_t want = sym[a] + (b >= 0 ? sym[b] : 0) + P->sym_sum[k][2];
        if (sym[k] == want) continue;
        const size_t i = sym_from[k], j = sym_from[a];
        const ir_value *v = &g->values[g->inputs[i]];
        int d = 0, e = 0;
        while (d < v->rank && P->in_syms[i][d] != k)
            d++;
        while (e < MHA_MAX_RANK && P->in_syms[j][e] != a)
            e++;
        char s1[96], more[160] = "";
        if (b >= 0 || P->sym_sum[k][2])
            snprintf(more, sizeof more, "%s%s%s plus %d", b >= 0 ? " plus that of input '" : "",
                     b >= 0 ? g->values[g->inputs[sym_from[b]]].name : "", b >= 0 ? "'" : "",
                     P->sym_sum[k][2]);
        return mha_fail(err, MHA_ERR_SHAPE,
                        "input '%s': axis %d%s%.40s%s is %lld, but the model takes %lld there "
                        "(axis %d of input '%s'%s: the same keys; got %s)",
                        v->name, d, v->dim_params[d] ? " ('" : "",
                        v->dim_params[d] ? v->dim_params[d] : "", v->dim_params[d] ? "')" : "",
                        (long long)sym[k], (long long)want, e, g->values[g->inputs[j]].name, more,
                        tensor_shape_str(inputs[i].rank, inputs[i].shape, s1, sizeof s1));
    }
    return MHA_OK;
}

/* A length through strided Convs (convlen.c) shorter than their receptive
 * field makes no frame: one line naming the input, its axis and the
 * fewest samples the Convs take. */
static mha_status run_check_convlen(const plan *P, const mha_tensor *inputs, const int64_t *sym,
                                    const size_t *sym_from, mha_error *err) {
    const ir_graph *g = P->g;
    for (int k = 0; k < P->n_syms && k < PLAN_MAX_SYMS; k++) {
        if (P->n_convlen[k] == 0 || sym[k] < 0 || sym[k] >= P->convlen_min[k]) continue;
        const size_t i = sym_from[k];
        const ir_value *v = &g->values[g->inputs[i]];
        int d = 0;
        while (d < v->rank && P->in_syms[i][d] != k)
            d++;
        char s1[96];
        return mha_fail(err, MHA_ERR_SHAPE,
                        "input '%s': axis %d%s%.40s%s is %lld, shorter than the %lld the model's "
                        "strided Convs take for one frame (got %s)",
                        v->name, d, v->dim_params[d] ? " ('" : "",
                        v->dim_params[d] ? v->dim_params[d] : "", v->dim_params[d] ? "')" : "",
                        (long long)sym[k], (long long)P->convlen_min[k],
                        tensor_shape_str(inputs[i].rank, inputs[i].shape, s1, sizeof s1));
    }
    return MHA_OK;
}

mha_status plan_output_shapes(const plan *P, const mha_tensor *inputs, size_t n_inputs,
                              mha_tensor *outputs, size_t n_outputs, mha_error *err) {
    const ir_graph *g = P->g;
    char s0[96], s1[96], ax[96];
    if (n_inputs != g->n_inputs || n_outputs != g->n_outputs)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                        "the model has %zu inputs and %zu outputs, %zu and %zu given", g->n_inputs,
                        g->n_outputs, n_inputs, n_outputs);
    if ((n_inputs && !inputs) || (n_outputs && !outputs))
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "inputs or outputs is NULL");
    /* each symbolic axis's size, and the input that set it */
    int64_t sym[PLAN_MAX_SYMS];
    size_t sym_from[PLAN_MAX_SYMS];
    for (int k = 0; k < PLAN_MAX_SYMS; k++) {
        sym[k] = -1;
        sym_from[k] = 0;
    }
    /* Every refusal is one line naming the input, the axis (with the
     * file's name for it) and the size the model takes against the one
     * given; the caller adds the file the input came from. */
    for (size_t i = 0; i < n_inputs; i++) {
        const ir_value *v = &g->values[g->inputs[i]];
        const mha_tensor *t = &inputs[i];
        if (t->dtype != v->dtype)
            return mha_fail(err, MHA_ERR_DTYPE, "input '%s': expected %s, got %s", v->name,
                            mha_dtype_name(v->dtype), mha_dtype_name(t->dtype));
        if (t->rank != v->rank)
            return mha_fail(err, MHA_ERR_SHAPE,
                            "input '%s': %d axes, the model takes %d (shape %s, got %s)", v->name,
                            t->rank, v->rank, tensor_shape_str(v->rank, v->dims, s0, sizeof s0),
                            tensor_shape_str(t->rank, t->shape, s1, sizeof s1));
        for (int d = 0; d < v->rank; d++) {
            const int k = P->in_syms[i][d];
            enum { AXIS_OK, AXIS_NEGATIVE, AXIS_FIXED, AXIS_SHARED } why = AXIS_OK;
            if (t->shape[d] < 0)
                why = AXIS_NEGATIVE;
            else if (k < 0 && t->shape[d] != v->dims[d])
                why = AXIS_FIXED;
            else if (k >= 0 && sym[k] >= 0 && sym[k] != t->shape[d])
                why = AXIS_SHARED;
            else if (k >= 0) {
                sym[k] = t->shape[d];
                sym_from[k] = i;
            }
            if (why == AXIS_OK) continue;
            /* axis d, and the file's name for it when it has one */
            snprintf(ax, sizeof ax, "axis %d%s%.40s%s", d, v->dim_params[d] ? " ('" : "",
                     v->dim_params[d] ? v->dim_params[d] : "", v->dim_params[d] ? "')" : "");
            if (why == AXIS_SHARED) /* the same symbolic axis as an input before it */
                return mha_fail(err, MHA_ERR_SHAPE,
                                "input '%s': %s is %lld, but %lld in input '%s' (the same axis "
                                "of the model; shape %s, got %s)",
                                v->name, ax, (long long)t->shape[d], (long long)sym[k],
                                g->values[g->inputs[sym_from[k]]].name,
                                tensor_shape_str(v->rank, v->dims, s0, sizeof s0),
                                tensor_shape_str(t->rank, t->shape, s1, sizeof s1));
            if (why == AXIS_NEGATIVE)
                return mha_fail(err, MHA_ERR_SHAPE, "input '%s': %s is %lld (shape %s, got %s)",
                                v->name, ax, (long long)t->shape[d],
                                tensor_shape_str(v->rank, v->dims, s0, sizeof s0),
                                tensor_shape_str(t->rank, t->shape, s1, sizeof s1));
            /* a fixed axis of another size (an image's height the file
             * left symbolic, fitted at load, has its name from the file) */
            return mha_fail(err, MHA_ERR_SHAPE,
                            "input '%s': %s is %lld, the model takes %lld only (shape %s, got %s)",
                            v->name, ax, (long long)t->shape[d], (long long)v->dims[d],
                            tensor_shape_str(v->rank, v->dims, s0, sizeof s0),
                            tensor_shape_str(t->rank, t->shape, s1, sizeof s1));
        }
        if (t->rank && mha_tensor_numel(t) > 0 && !t->data)
            return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "input '%s': data is NULL", v->name);
        mha_status st = run_check_ids(P, i, t, err);
        if (st != MHA_OK) return st;
    }
    mha_status st = run_check_sums(P, inputs, sym, sym_from, err);
    if (st == MHA_OK) st = run_check_convlen(P, inputs, sym, sym_from, err);
    if (st != MHA_OK) return st;
    for (size_t k = 0; k < n_outputs; k++) {
        const layer_io *io = &P->outputs[k];
        outputs[k].dtype = io->dtype;
        outputs[k].rank = io->rank;
        for (int d = 0; d < io->rank; d++) {
            const plan_dim_rule *r = &P->out_rules[k][d];
            int64_t x = r->fixed >= 0 ? 0 : inputs[r->input].shape[r->axis];
            if (r->fixed < 0 && r->plus_input >= 0) x += inputs[r->plus_input].shape[r->plus_axis];
            outputs[k].shape[d] = plan_dim_apply(r, x);
            if (outputs[k].shape[d] < 0)
                return mha_fail(err, MHA_ERR_SHAPE,
                                "input '%s': axis %d of %lld is too short for output '%s' (its "
                                "axis %d would be %lld)",
                                g->values[g->inputs[r->input]].name, r->axis, (long long)x,
                                io->name, d, (long long)outputs[k].shape[d]);
        }
    }
    return MHA_OK;
}

/* The size of each symbolic axis in these inputs (-1 unused): what the
 * shape of every value follows. */
static void run_arena_key(const plan *P, const mha_tensor *inputs, int64_t *key) {
    for (int k = 0; k < PLAN_MAX_SYMS; k++)
        key[k] = -1;
    for (size_t i = 0; i < P->g->n_inputs; i++)
        for (int d = 0; d < inputs[i].rank; d++)
            if (P->in_syms[i][d] >= 0) key[P->in_syms[i][d]] = inputs[i].shape[d];
}

/* A step that fails on shapes in a run of a verified plan fails on what
 * this run's inputs are (a sequence past the model's position table, a
 * position computed from the mask): the message is put against the first
 * input with a symbolic axis, with its shape, so that a caller reports it
 * against that input's file, not the model's -- unless it names an input
 * already. */
static void run_blame_input(const plan *P, const mha_tensor *inputs, size_t n_inputs,
                            mha_error *err) {
    if (!err) return;
    for (size_t i = 0; i < n_inputs; i++) {
        char quoted[MHA_ERROR_MESSAGE_MAX];
        snprintf(quoted, sizeof quoted, "'%s'", P->inputs[i].name);
        if (strstr(err->message, quoted)) return;
    }
    for (size_t i = 0; i < n_inputs; i++)
        for (int d = 0; d < inputs[i].rank; d++)
            if (P->in_syms[i][d] >= 0) {
                char shape[96], beside[MHA_ERROR_MESSAGE_MAX / 2] = "";
                /* the first input with an axis of its own (a cache's past
                 * length): the sizes may fail together (past + new tokens
                 * beyond the positions) */
                for (size_t j = 0; j < n_inputs && !beside[0]; j++)
                    for (int e = 0; j != i && e < inputs[j].rank && !beside[0]; e++) {
                        int own = P->in_syms[j][e] >= 0;
                        for (int f = 0; own && f < inputs[i].rank; f++)
                            own = P->in_syms[i][f] != P->in_syms[j][e];
                        if (!own) continue;
                        char s2[96];
                        snprintf(beside, sizeof beside, ", beside '%s' of shape %s",
                                 P->inputs[j].name,
                                 tensor_shape_str(inputs[j].rank, inputs[j].shape, s2, sizeof s2));
                    }
                mha_error_prefix(
                    err, "input '%s' (shape %s%s): the model cannot run on it", P->inputs[i].name,
                    tensor_shape_str(inputs[i].rank, inputs[i].shape, shape, sizeof shape), beside);
                return;
            }
}

mha_status plan_run(const plan *P, const mha_tensor *inputs, size_t n_inputs, mha_tensor *outputs,
                    size_t n_outputs, const plan_backend *be, mha_error *err) {
    const ir_graph *g = P->g;
    mha_tensor want[RUN_MAX_OUTPUTS];
    if (n_outputs > RUN_MAX_OUTPUTS)
        return mha_fail(err, MHA_ERR_LIMIT, "the model has %zu outputs (at most %d)", n_outputs,
                        RUN_MAX_OUTPUTS);
    mha_status st = plan_output_shapes(P, inputs, n_inputs, want, n_outputs, err);
    for (size_t k = 0; k < n_outputs && st == MHA_OK; k++) {
        char s0[96], s1[96];
        if (outputs[k].dtype != want[k].dtype || outputs[k].rank != want[k].rank ||
            memcmp(outputs[k].shape, want[k].shape, sizeof(int64_t) * (size_t)want[k].rank) != 0)
            st = mha_fail(err, MHA_ERR_SHAPE, "output '%s': must be %s %s, got %s %s",
                          P->outputs[k].name, mha_dtype_name(want[k].dtype),
                          tensor_shape_str(want[k].rank, want[k].shape, s0, sizeof s0),
                          mha_dtype_name(outputs[k].dtype),
                          tensor_shape_str(outputs[k].rank, outputs[k].shape, s1, sizeof s1));
        else if (mha_tensor_numel(&want[k]) > 0 && !outputs[k].data)
            st = mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "output '%s': data is NULL",
                          P->outputs[k].name);
    }
    if (st != MHA_OK) return st;
    /* the caller's inputs, borrowed as tensors the interpreter reads */
    tensor *in_t = mha_calloc(&P->alloc, n_inputs ? n_inputs : 1, sizeof *in_t);
    tensor **in = mha_calloc(&P->alloc, n_inputs ? n_inputs : 1, sizeof *in);
    tensor **values = NULL;
    plan_run_arena ar = {NULL, NULL, NULL, NULL};
    size_t block_bytes = 0;
    if (!in_t || !in) {
        st = mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_inputs; i++) {
        tensor *t = &in_t[i];
        t->dtype = inputs[i].dtype;
        t->rank = inputs[i].rank;
        for (int d = 0; d < t->rank; d++)
            t->dims[d] = inputs[i].shape[d];
        t->data = (void *)inputs[i].data;
        t->nbytes = (size_t)mha_tensor_numel(&inputs[i]) * mha_dtype_size(t->dtype);
        t->alloc = &P->alloc;
        in[i] = t;
    }
    /* the arena: its layout for these input sizes, else this run records
     * the bytes of each fused output and plans one for the next runs */
    int64_t key[PLAN_MAX_SYMS];
    run_arena_key(P, inputs, key);
    ar.layout = plan_arena_find((plan *)P, key);
    if (!run_outputs_alias_inputs(inputs, n_inputs, outputs, n_outputs)) ar.outputs = outputs;
    if (ar.layout) {
        ar.base =
            plan_arena_block_take((plan *)P, ar.layout->bytes ? ar.layout->bytes : 1, &block_bytes);
        if (!ar.base) ar.layout = NULL; /* each output on its own, as without */
    } else {
        ar.record = mha_calloc(&P->alloc, g->n_values ? g->n_values : 1, sizeof *ar.record);
    }
    st = plan_exec_arena(P, in, be, &ar, &values, err);
    if (st == MHA_ERR_SHAPE) run_blame_input(P, inputs, n_inputs, err);
    if (st == MHA_OK && ar.record) {
        plan_arena *A = NULL;
        mha_error ignored; /* without a layout the next run records again */
        if (plan_arena_plan(P, key, ar.record, &A, &ignored) == MHA_OK)
            plan_arena_keep((plan *)P, A);
    }
    for (size_t k = 0; k < n_outputs && st == MHA_OK; k++) {
        const tensor *y = values[g->outputs[k]];
        size_t bytes = (size_t)mha_tensor_numel(&want[k]) * mha_dtype_size(want[k].dtype);
        if (!y || y->dtype != want[k].dtype || y->rank != want[k].rank ||
            memcmp(y->dims, want[k].shape, sizeof(int64_t) * (size_t)y->rank) != 0)
            st = mha_fail(err, MHA_ERR_SHAPE,
                          "output '%s': the graph computed a shape other than its rule gives",
                          P->outputs[k].name);
        else if (bytes && y->data != outputs[k].data) /* else written there directly */
            memcpy(outputs[k].data, y->data, bytes);
    }
done:
    if (values) plan_values_free(P, in, values);
    plan_arena_block_give((plan *)P, ar.base, block_bytes);
    mha_free(&P->alloc, ar.record);
    mha_free(&P->alloc, in_t);
    mha_free(&P->alloc, in);
    return st;
}
