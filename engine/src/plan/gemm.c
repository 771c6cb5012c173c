/* gemm.c -- GEMM steps: every MatMul with a constant [K, N] float32 weight
 * (and the Add of a constant [N] bias right after it, fused), and every
 * Gemm with constant B and C, that no attention layer owns, each with the
 * elementwise epilogue that follows it (epilogue.c). Its input is
 * float32 with K as the last axis on both probes; a Gemm with transB gets a
 * transposed copy of B. A Conv whose kernel is its stride (no padding or
 * dilation: ViT's patch embedding; SqueezeBERT's grouped Conv1d of kernel
 * 1) is a GEMM over the patches too; any other Conv of group 1 (speech
 * front ends: kernels 3-10, strides 1-5, padding, auto_pad) a GEMM over
 * the rows of its receptive fields, with the elementwise run after it
 * (GELU); a grouped one G such GEMMs, one per group (wav2vec2's positional
 * Conv); a depthwise one (one input channel per group: CvT's projections)
 * a direct loop over its taps (conv_direct.c). Everything else stays
 * interpreted. */
#include <stdio.h>
#include <string.h>

#include "plan_internal.h"

static int gemm_is_f32(const tensor *t, int rank) {
    return t && t->dtype == MHA_DTYPE_FLOAT32 && (rank < 0 || t->rank == rank);
}

/* Same dtype, rank and dims on both probes. */
static int gemm_same_shape(const plan_shape *a, const plan_shape *b) {
    if (a->rank < 0 || a->rank != b->rank || a->dtype != b->dtype) return 0;
    for (int p = 0; p < PLAN_PROBES; p++)
        if (memcmp(a->dims[p], b->dims[p], sizeof(int64_t) * (size_t)a->rank) != 0) return 0;
    return 1;
}

/* A constant float32 vector of N elements (leading axes of size 1). */
static const float *gemm_bias(const tensor *t, int64_t N) {
    if (!gemm_is_f32(t, -1) || t->rank < 1 || tensor_numel(t) != N || t->dims[t->rank - 1] != N)
        return NULL;
    return t->data;
}

/* The input of a GEMM: float32, last axis K on every probe. */
static int gemm_input_ok(const plan_shape *s, int64_t K, int want_rank) {
    if (s->rank < 1 || s->dtype != MHA_DTYPE_FLOAT32) return 0;
    if (want_rank > 0 && s->rank != want_rank) return 0;
    for (int p = 0; p < PLAN_PROBES; p++)
        if (s->dims[p][s->rank - 1] != K) return 0;
    return 1;
}

/* The Add that adds a constant bias to MatMul output o, or -1. */
static int gemm_bias_add(const plan *P, const plan_uses *u, const plan_shape *shp,
                         const unsigned char *taken, int o, int64_t N, const float **bias) {
    const ir_graph *g = P->g;
    if (u->first[o + 1] - u->first[o] != 1) return -1;
    for (size_t k = 0; k < g->n_outputs; k++)
        if (g->outputs[k] == o) return -1;
    int ai = u->node[u->first[o]];
    const ir_node *a = &g->nodes[ai];
    if (taken[ai] || strcmp(a->op_type, "Add") != 0 || a->n_inputs != 2 || a->outputs[0] < 0)
        return -1;
    int other = a->inputs[0] == o ? a->inputs[1] : a->inputs[0];
    *bias = gemm_bias(plan_const(P, other), N);
    if (!*bias || !gemm_same_shape(&shp[a->outputs[0]], &shp[o])) return -1;
    return ai;
}

/* GPT-2's Conv1D, torch.addmm over flat rows: A = Reshape(X [.., K] ->
 * [M, K]), the product [M, N] reshaped back to X's leading axes [.., N].
 * The step reads X and writes the rows as [.., N] itself (the same rows),
 * so the epilogue after the view (GELU, the residual add) fuses too. The
 * two Reshapes become the step's (view[0..2)); 0 when the form is not there. */
static int gemm_row_views(const plan *P, const plan_uses *u, const plan_shape *shp,
                          const unsigned char *taken, const plan_gemm *pg, int view[2]) {
    const ir_graph *g = P->g;
    const int ri = g->values[pg->in_value].producer, ro = plan_data_reader(P, u, pg->out_value);
    if (ri < 0 || ro < 0 || taken[ri] || taken[ro] ||
        plan_data_reader(P, u, pg->in_value) != pg->node)
        return 0;
    /* the flat rows in and out are made no more: their sizes may feed only
     * the view back */
    if (!plan_shape_reads_end_at(P, u, pg->in_value, ro) ||
        !plan_shape_reads_end_at(P, u, pg->out_value, ro))
        return 0;
    const ir_node *in = &g->nodes[ri], *out = &g->nodes[ro];
    if (strcmp(in->op_type, "Reshape") != 0 || strcmp(out->op_type, "Reshape") != 0 ||
        in->n_inputs < 1 || in->inputs[0] < 0 || out->inputs[0] != pg->out_value ||
        out->n_outputs != 1 || out->outputs[0] < 0 || shp[pg->in_value].rank != 2)
        return 0;
    const plan_shape *x = &shp[in->inputs[0]], *y = &shp[out->outputs[0]];
    if (!gemm_input_ok(x, pg->K, 0) || x->rank < 2 || y->rank != x->rank ||
        y->dtype != MHA_DTYPE_FLOAT32)
        return 0;
    for (int p = 0; p < PLAN_PROBES; p++)
        for (int d = 0; d < x->rank; d++)
            if (y->dims[p][d] != (d == x->rank - 1 ? pg->N : x->dims[p][d])) return 0;
    view[0] = ri;
    view[1] = ro;
    return 2;
}

/* "gemm", "+bias", then the epilogue's op types in order, "residual" for
 * the external operand's Add, "gated" for its Mul (the second GEMM of
 * SwiGLU / GeGLU, times the first one's activated output). */
static void gemm_describe(const ir_graph *g, plan_gemm *pg) {
    size_t used = 0;
    int w = snprintf(pg->desc, sizeof pg->desc, "gemm%s", pg->bias ? "+bias" : "");
    used = w > 0 ? (size_t)w : 0;
    for (size_t k = 0; k < pg->n_ep_nodes && used < sizeof pg->desc; k++) {
        const ir_node *n = &g->nodes[pg->ep_nodes[k]];
        if (strcmp(n->op_type, "Reshape") == 0) continue; /* a row view: no op */
        int ext = 0;
        for (size_t j = 0; j < n->n_inputs; j++)
            ext |= n->inputs[j] >= 0 && n->inputs[j] == pg->epilogue.ext_value;
        const char *what = !ext                             ? n->op_type
                           : strcmp(n->op_type, "Add") == 0 ? "residual"
                           : strcmp(n->op_type, "Mul") == 0 ? "gated"
                                                            : n->op_type;
        w = snprintf(pg->desc + used, sizeof pg->desc - used, "+%s", what);
        used += w > 0 ? (size_t)w : 0;
    }
}

/* The INTS attribute name of n, all equal to want[0..n) (absent: dflt
 * for every axis). */
static int gemm_ints_are(const ir_node *n, const char *name, const int64_t *want, size_t count,
                         int64_t dflt) {
    const ir_attr *a = ir_node_attr(n, name);
    if (!a) {
        for (size_t k = 0; k < count; k++)
            if (want[k] != dflt) return 0;
        return 1;
    }
    if (a->type != IR_ATTR_INTS || a->n != count) return 0;
    for (size_t k = 0; k < count; k++)
        if (a->ints[k] != want[k]) return 0;
    return 1;
}

/* A Conv step's bias, sizes and weight: w [N, Kg] (kernel kh x kw) as the
 * GEMM's [K, N], output channel c of group c / Ng reading rows [(c / Ng) Kg,
 * (c / Ng + 1) Kg) of the receptive field, zero elsewhere (one group: Kg = K,
 * Ng = N). 0 for a bias of another size, or out of memory (*no_memory). */
static int gemm_conv_weight(plan *P, const ir_node *n, const tensor *W, int64_t K, int64_t N,
                            int64_t Kg, int64_t Ng, int64_t kh, int64_t kw, plan_gemm *pg,
                            int *no_memory) {
    const tensor *bias = n->n_inputs > 2 && n->inputs[2] >= 0 ? plan_const(P, n->inputs[2]) : NULL;
    if (n->n_inputs > 2 && n->inputs[2] >= 0 && !(pg->bias = gemm_bias(bias, N))) return 0;
    pg->K = K;
    pg->N = N;
    pg->conv_kh = kh;
    pg->conv_kw = kw;
    pg->W_owned = mha_calloc(&P->alloc, (size_t)(K * N > 0 ? K * N : 1), sizeof(float));
    if (!pg->W_owned) {
        *no_memory = 1;
        return 0;
    }
    const float *w = W->data;
    for (int64_t c = 0; c < N; c++)
        for (int64_t k = 0; k < Kg; k++)
            pg->W_owned[((c / Ng) * Kg + k) * N + c] = w[c * Kg + k];
    pg->W = pg->W_owned;
    return 1;
}

/* A 1-D or 2-D Conv of group 1, kernel = stride, no padding, dilation 1,
 * constant float32 weight [N, C, (kh,) kw] and bias [N], over a float32
 * [B, C, (H,) W] input: *pg filled, 1 (a 1-D Conv is one of height 1:
 * kh = 1). Else 0. W becomes the kernel as [C kh kw, N]. (A grouped one is
 * gemm_general_conv's: a GEMM per group.) */
static int gemm_patch_conv(plan *P, const plan_shape *shp, const ir_node *n, plan_gemm *pg,
                           int *no_memory) {
    const tensor *W = plan_const(P, n->inputs[1]);
    if (!W || (!gemm_is_f32(W, 4) && !gemm_is_f32(W, 3)) || n->n_outputs != 1) return 0;
    const int sp = W->rank - 2; /* spatial axes: 1 or 2 */
    const ir_attr *ks = ir_node_attr(n, "kernel_shape"), *ap = ir_node_attr(n, "auto_pad");
    const int64_t kh = sp == 2 ? W->dims[2] : 1, kw = W->dims[W->rank - 1];
    const int64_t kern[2] = {sp == 2 ? kh : kw, kw}, zeros[4] = {0}, ones[2] = {1, 1};
    const size_t nsp = (size_t)sp;
    const int64_t groups = ir_attr_int(n, "group", 1);
    if ((ks && !gemm_ints_are(n, "kernel_shape", kern, nsp, 0)) ||
        !gemm_ints_are(n, "strides", kern, nsp, 1) ||
        !gemm_ints_are(n, "pads", zeros, 2 * nsp, 0) ||
        !gemm_ints_are(n, "dilations", ones, nsp, 1) || groups != 1 ||
        (ap && (ap->type != IR_ATTR_STRING || (strcmp(ap->s, "NOTSET") && strcmp(ap->s, "VALID")))))
        return 0;
    const plan_shape *x = &shp[n->inputs[0]];
    const int64_t C = W->dims[1] * groups, N = W->dims[0];
    if (x->rank != W->rank || x->dtype != MHA_DTYPE_FLOAT32) return 0;
    for (int p = 0; p < PLAN_PROBES; p++)
        if (x->dims[p][1] != C || (sp == 2 && x->dims[p][2] < kh) || x->dims[p][x->rank - 1] < kw)
            return 0;
    const int64_t K = C * kh * kw;
    if (!gemm_conv_weight(P, n, W, K, N, K, N, kh, kw, pg, no_memory)) return 0;
    return 1;
}

/* The INTS attribute name of n (count values) into out, or dflt for each
 * when absent; 0 when present with another count. */
static int gemm_ints_get(const ir_node *n, const char *name, int64_t *out, size_t count,
                         int64_t dflt) {
    const ir_attr *a = ir_node_attr(n, name);
    for (size_t k = 0; k < count; k++)
        out[k] = a ? (a->type == IR_ATTR_INTS && a->n == count ? a->ints[k] : -1) : dflt;
    return !a || (a->type == IR_ATTR_INTS && a->n == count);
}

/* Output extent of a Conv along one axis: floor((x + pads - dil (k - 1)
 * - 1) / stride) + 1, or 0 when the input is shorter than the field. */
static int64_t gemm_conv_extent(int64_t x, int64_t pad_sum, int64_t k, int64_t stride,
                                int64_t dil) {
    const int64_t span = x + pad_sum - dil * (k - 1) - 1;
    return span < 0 ? 0 : span / stride + 1;
}

/* Group g's weight of a grouped Conv's w [N, Kg] (groups of Ng output
 * channels) as its GEMM's [Kg, Ng]. */
static void gemm_group_weight(const float *w, int64_t Kg, int64_t Ng, int64_t g, float *out) {
    for (int64_t c = 0; c < Ng; c++)
        for (int64_t k = 0; k < Kg; k++)
            out[k * Ng + c] = w[(g * Ng + c) * Kg + k];
}

/* The auto_pad of Conv n: 0 NOTSET or absent, 1 SAME_UPPER, 2 SAME_LOWER,
 * 3 VALID (no pads, whatever `pads` says); -1 another. */
static int gemm_auto_pad(const ir_node *n) {
    const ir_attr *ap = ir_node_attr(n, "auto_pad");
    if (!ap) return 0;
    if (ap->type != IR_ATTR_STRING || !ap->s) return -1;
    static const char *const modes[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"};
    for (int k = 0; k < 4; k++)
        if (strcmp(ap->s, modes[k]) == 0) return k;
    return -1;
}

void plan_conv_pads(const plan_gemm *pg, int64_t H, int64_t W, int64_t pad[4]) {
    memcpy(pad, pg->conv_pad, sizeof pg->conv_pad);
    if (!pg->conv_auto) return;
    const char *mode = pg->conv_auto == 1 ? "SAME_UPPER" : "SAME_LOWER";
    interp_conv_auto_pads(mode, H, pg->conv_kh, pg->conv_stride[0], pg->conv_dil[0], &pad[0],
                          &pad[2]);
    interp_conv_auto_pads(mode, W, pg->conv_kw, pg->conv_stride[1], pg->conv_dil[1], &pad[1],
                          &pad[3]);
}

/* A 1-D or 2-D Conv of any kernel, stride, padding (or auto_pad) and
 * dilation, constant float32 weight [N, C / G, (kh,) kw] and bias [N],
 * over a float32 [B, C, (H,) W] input that gives at least one output
 * position on every probe: *pg filled (conv_general), 1. Else 0. Group 1:
 * W becomes the kernel as [C kh kw, N], the columns of x's receptive
 * fields (run.c). G groups of several channels: pg is group 0's GEMM [C /
 * G kh kw, N / G] (conv_groups G; plan_find_gemms adds the others). One
 * channel per group: a depthwise Conv (conv_depthwise, conv_direct.c). */
static int gemm_general_conv(plan *P, const plan_shape *shp, const ir_node *n, plan_gemm *pg,
                             int *no_memory) {
    const tensor *W = plan_const(P, n->inputs[1]);
    const int64_t groups = ir_attr_int(n, "group", 1);
    const int mode = gemm_auto_pad(n);
    if (!W || (!gemm_is_f32(W, 4) && !gemm_is_f32(W, 3)) || n->n_outputs != 1 || groups < 1 ||
        W->dims[0] % groups != 0 || mode < 0)
        return 0;
    const int64_t Cg = W->dims[1], depthwise = groups > 1 && Cg == 1;
    if (groups > 1 && !depthwise && groups > PLAN_CONV_MAX_GROUPS) return 0;
    const int sp = W->rank - 2;
    const size_t nsp = (size_t)sp;
    const int64_t kh = sp == 2 ? W->dims[2] : 1, kw = W->dims[W->rank - 1];
    const int64_t kern[2] = {sp == 2 ? kh : kw, kw};
    int64_t st[2], dl[2], pd[4];
    if ((ir_node_attr(n, "kernel_shape") && !gemm_ints_are(n, "kernel_shape", kern, nsp, 0)) ||
        !gemm_ints_get(n, "strides", st, nsp, 1) || !gemm_ints_get(n, "dilations", dl, nsp, 1) ||
        !gemm_ints_get(n, "pads", pd, 2 * nsp, 0))
        return 0;
    if (mode != 0) memset(pd, 0, sizeof pd); /* auto_pad: `pads` is not read */
    for (size_t k = 0; k < nsp; k++)
        if (st[k] < 1 || dl[k] < 1 || st[k] > INT32_MAX || dl[k] > INT32_MAX) return 0;
    for (size_t k = 0; k < 2 * nsp; k++)
        if (pd[k] < 0 || pd[k] > INT32_MAX) return 0;
    /* [h, w]: a 1-D Conv is one of height 1 */
    pg->conv_kh = kh;
    pg->conv_kw = kw;
    pg->conv_stride[0] = sp == 2 ? st[0] : 1;
    pg->conv_stride[1] = st[nsp - 1];
    pg->conv_dil[0] = sp == 2 ? dl[0] : 1;
    pg->conv_dil[1] = dl[nsp - 1];
    pg->conv_pad[0] = sp == 2 ? pd[0] : 0;
    pg->conv_pad[1] = pd[nsp - 1];
    pg->conv_pad[2] = sp == 2 ? pd[2] : 0;
    pg->conv_pad[3] = pd[2 * nsp - 1];
    pg->conv_auto = mode == 1 || mode == 2 ? mode : 0;
    const plan_shape *x = &shp[n->inputs[0]], *y = &shp[n->outputs[0]];
    const int64_t C = Cg * groups, N = W->dims[0], K = Cg * kh * kw;
    if (x->rank != W->rank || x->dtype != MHA_DTYPE_FLOAT32 || y->rank != x->rank) return 0;
    for (int p = 0; p < PLAN_PROBES; p++) {
        const int64_t H = sp == 2 ? x->dims[p][2] : 1, Wd = x->dims[p][x->rank - 1];
        int64_t pad[4];
        plan_conv_pads(pg, H, Wd, pad);
        if (p == 0) memcpy(pg->conv_pad, pad, sizeof pad);
        const int64_t ho =
            gemm_conv_extent(H, pad[0] + pad[2], kh, pg->conv_stride[0], pg->conv_dil[0]);
        const int64_t wo =
            gemm_conv_extent(Wd, pad[1] + pad[3], kw, pg->conv_stride[1], pg->conv_dil[1]);
        if (x->dims[p][1] != C || ho < 1 || wo < 1 || y->dims[p][1] != N ||
            y->dims[p][x->rank - 1] != wo || (sp == 2 && y->dims[p][2] != ho))
            return 0;
    }
    const tensor *bias = n->n_inputs > 2 && n->inputs[2] >= 0 ? plan_const(P, n->inputs[2]) : NULL;
    if (groups > 1 && !depthwise) {
        /* group 0's GEMM; the bias of all N checked, its first N / G read */
        const int64_t Ng = N / groups;
        if (n->n_inputs > 2 && n->inputs[2] >= 0 && !(pg->bias = gemm_bias(bias, N))) return 0;
        pg->K = K;
        pg->N = Ng;
        pg->W_owned = mha_calloc(&P->alloc, (size_t)(K * Ng > 0 ? K * Ng : 1), sizeof(float));
        if (!pg->W_owned) {
            *no_memory = 1;
            return 0;
        }
        gemm_group_weight(W->data, K, Ng, 0, pg->W_owned);
        pg->W = pg->W_owned;
        pg->conv_groups = (int)groups;
    } else if (!gemm_conv_weight(P, n, W, K, N, K, N, kh, kw, pg, no_memory)) {
        return 0;
    }
    if (depthwise) {
        /* its own copy of w [N, kh kw] for the direct loop (W is freed once packed) */
        pg->dw_w = mha_malloc(&P->alloc, sizeof(float) * (size_t)(N * K > 0 ? N * K : 1));
        if (!pg->dw_w) {
            mha_free(&P->alloc, pg->W_owned);
            pg->W = pg->W_owned = NULL;
            *no_memory = 1;
            return 0;
        }
        memcpy(pg->dw_w, W->data, sizeof(float) * (size_t)(N * K));
        pg->conv_depthwise = 1;
        pg->dw_channels = N;
    }
    pg->conv_general = 1;
    return 1;
}

/* The elementwise run after a general Conv's output (its GELU), taken when
 * its operands are scalars or a tensor of the output's shape (no vector
 * along the last axis, which is not the channels'): pg's epilogue and
 * ep_nodes. 0, or MHA_ERR_NO_MEMORY. */
static mha_status gemm_conv_epilogue(plan *P, const plan_uses *u, const plan_shape *shp,
                                     unsigned char *taken, int *reg, plan_gemm *pg,
                                     mha_error *err) {
    int nodes[PLAN_EW_MAX_OPS], last;
    size_t n_ep = 0;
    /* N -1: no constant vector is taken */
    if (!plan_ew_compile(P, u, shp, taken, pg->node, pg->out_value, -1, reg, &pg->epilogue, &last,
                         nodes, &n_ep) ||
        n_ep == 0) {
        memset(&pg->epilogue, 0, sizeof pg->epilogue);
        pg->epilogue.ext_value = -1;
        return MHA_OK;
    }
    pg->ep_nodes = mha_calloc(&P->alloc, n_ep, sizeof *pg->ep_nodes);
    if (!pg->ep_nodes) return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    memcpy(pg->ep_nodes, nodes, n_ep * sizeof *nodes);
    pg->n_ep_nodes = n_ep;
    for (size_t k = 0; k < n_ep; k++)
        taken[nodes[k]] = 1;
    pg->out_value = last;
    if (pg->epilogue.ext_value >= 0) pg->reads[pg->n_reads++] = pg->epilogue.ext_value;
    return MHA_OK;
}

/* "conv1d k3 s2 p1 gemm+bias+Div+Erf+Add+Mul+Mul": a general Conv's
 * geometry (stride, pad, dilation when not 1 / 0; "same-upper" /
 * "same-lower" for auto_pad's pads; "g16" for 16 groups, "depthwise" and
 * "direct" for the direct loop), or "conv1d" / "patch-conv" for a Conv of
 * kernel = stride, then the GEMM's. */
static void gemm_conv_describe(const ir_graph *g, const plan_shape *shp, plan_gemm *pg) {
    char geo[48];
    const ir_node *n = &g->nodes[pg->node];
    const int one_d = shp[n->inputs[0]].rank == 3;
    int w = !pg->conv_general ? snprintf(geo, sizeof geo, "%s", one_d ? "conv1d" : "patch-conv")
            : one_d           ? snprintf(geo, sizeof geo, "conv1d k%lld", (long long)pg->conv_kw)
                    : snprintf(geo, sizeof geo, "conv2d k%lldx%lld", (long long)pg->conv_kh,
                               (long long)pg->conv_kw);
    size_t used = w > 0 ? (size_t)w : 0;
    const int64_t s = pg->conv_stride[1], p = pg->conv_pad[1], d = pg->conv_dil[1];
    if (pg->conv_general && used < sizeof geo && s != 1)
        used += (size_t)snprintf(geo + used, sizeof geo - used, " s%lld", (long long)s);
    if (pg->conv_general && used < sizeof geo && p != 0 && !pg->conv_auto)
        used += (size_t)snprintf(geo + used, sizeof geo - used, " p%lld", (long long)p);
    if (pg->conv_general && used < sizeof geo && d != 1)
        used += (size_t)snprintf(geo + used, sizeof geo - used, " d%lld", (long long)d);
    if (pg->conv_general && used < sizeof geo && pg->conv_auto)
        used += (size_t)snprintf(geo + used, sizeof geo - used, " %s",
                                 pg->conv_auto == 1 ? "same-upper" : "same-lower");
    /* "g16" and G GEMMs; "depthwise" and its direct loop instead of "gemm" */
    if (used < sizeof geo && pg->conv_groups > 1)
        snprintf(geo + used, sizeof geo - used, " g%d", pg->conv_groups);
    else if (used < sizeof geo && pg->conv_depthwise)
        snprintf(geo + used, sizeof geo - used, " depthwise");
    gemm_describe(g, pg);
    char tail[96];
    memcpy(tail, pg->desc, sizeof tail);
    /* cut short at sizeof desc */
    if (snprintf(pg->desc, sizeof pg->desc, "%s %s%s", geo, pg->conv_depthwise ? "direct" : "",
                 pg->conv_depthwise ? tail + 4 : tail) < 0)
        pg->desc[0] = '\0';
}

/* Groups 1 .. G - 1 of grouped Conv head (P->gemms[gi]): an entry each
 * after it, its weight [Kg, Ng] and its slice of the bias, no step of its
 * own. 0, or MHA_ERR_NO_MEMORY. */
static mha_status gemm_conv_groups(plan *P, size_t gi, mha_error *err) {
    const plan_gemm *head = &P->gemms[gi];
    const tensor *W = plan_const(P, P->g->nodes[head->node].inputs[1]);
    for (int grp = 1; grp < head->conv_groups; grp++) {
        plan_gemm *pg = &P->gemms[P->n_gemms];
        memset(pg, 0, sizeof *pg);
        pg->node = head->node;
        pg->bias_node = -1;
        pg->norm = -1;
        pg->fused_act = -1;
        pg->in_value = head->in_value;
        pg->out_value = -1;
        pg->epilogue.ext_value = -1;
        pg->K = head->K;
        pg->N = head->N;
        pg->conv_group = grp;
        pg->bias = head->bias ? head->bias + grp * head->N : NULL;
        pg->W_owned =
            mha_calloc(&P->alloc, (size_t)(pg->K * pg->N > 0 ? pg->K * pg->N : 1), sizeof(float));
        if (!pg->W_owned) return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
        gemm_group_weight(W->data, pg->K, pg->N, grp, pg->W_owned);
        pg->W = pg->W_owned;
        snprintf(pg->desc, sizeof pg->desc, "group %d of %.72s", grp, head->desc);
        P->n_gemms++;
    }
    return MHA_OK;
}

/* The entries plan_find_gemms may fill: a node each, and a grouped Conv's
 * groups past its first. */
static size_t gemm_slots(const plan *P) {
    const ir_graph *g = P->g;
    size_t slots = g->n_nodes ? g->n_nodes : 1;
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        const ir_node *n = &g->nodes[ni];
        const int64_t groups = ir_attr_int(n, "group", 1);
        const tensor *W = n->n_inputs > 1 ? plan_const(P, n->inputs[1]) : NULL;
        if (strcmp(n->op_type, "Conv") == 0 && W && W->rank >= 3 && W->dims[1] > 1 && groups > 1 &&
            groups <= PLAN_CONV_MAX_GROUPS)
            slots += (size_t)(groups - 1);
    }
    return slots;
}

mha_status plan_find_gemms(plan *P, const plan_uses *u, const plan_shape *shp, unsigned char *taken,
                           mha_error *err) {
    const ir_graph *g = P->g;
    int *reg = mha_calloc(&P->alloc, g->n_values ? g->n_values : 1, sizeof *reg);
    P->gemms = mha_calloc(&P->alloc, gemm_slots(P), sizeof *P->gemms);
    if (!reg || !P->gemms) {
        mha_free(&P->alloc, reg);
        return mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
    }
    mha_status st = MHA_OK;
    for (size_t ni = 0; ni < g->n_nodes && st == MHA_OK; ni++) {
        const ir_node *n = &g->nodes[ni];
        int mm = strcmp(n->op_type, "MatMul") == 0, gm = strcmp(n->op_type, "Gemm") == 0;
        int cv = strcmp(n->op_type, "Conv") == 0;
        if (taken[ni] || (!mm && !gm && !cv) || n->n_inputs < 2 || n->n_outputs < 1 ||
            n->outputs[0] < 0 || n->inputs[0] < 0 || plan_const(P, n->outputs[0]))
            continue;
        plan_gemm pg;
        memset(&pg, 0, sizeof pg);
        pg.norm = -1;
        pg.node = (int)ni;
        pg.bias_node = -1;
        pg.in_value = n->inputs[0];
        pg.out_value = n->outputs[0];
        if (cv) {
            /* kernel = stride: patches; else any Conv (grouped: a GEMM
             * per group; depthwise: a direct loop) */
            int no_memory = 0;
            if (!gemm_patch_conv(P, shp, n, &pg, &no_memory) && !no_memory) {
                pg.bias = NULL;
                pg.conv_kh = pg.conv_kw = 0;
                gemm_general_conv(P, shp, n, &pg, &no_memory);
            }
            if (!pg.W) {
                if (no_memory) st = mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
                continue;
            }
            /* the epilogue on the output [B, N, ..] (gemm_conv_epilogue) */
            taken[ni] = 1;
            pg.reads[pg.n_reads++] = pg.in_value;
            pg.fused_act = -1;
            st = gemm_conv_epilogue(P, u, shp, taken, reg, &pg, err);
            if (st != MHA_OK) {
                mha_free(&P->alloc, pg.W_owned);
                mha_free(&P->alloc, pg.dw_w);
                break;
            }
            gemm_conv_describe(g, shp, &pg);
            P->gemms[P->n_gemms++] = pg;
            if (pg.conv_groups > 1) st = gemm_conv_groups(P, P->n_gemms - 1, err);
            continue;
        }
        const tensor *W = plan_const(P, n->inputs[1]);
        if (!gemm_is_f32(W, 2)) continue;
        int trans_b = gm && ir_attr_int(n, "transB", 0) != 0;
        pg.K = W->dims[trans_b ? 1 : 0];
        pg.N = W->dims[trans_b ? 0 : 1];
        if (gm) {
            const tensor *C =
                n->n_inputs > 2 && n->inputs[2] >= 0 ? plan_const(P, n->inputs[2]) : NULL;
            if (ir_attr_int(n, "transA", 0) != 0 || ir_attr_float(n, "alpha", 1.0f) != 1.0f ||
                (C && ir_attr_float(n, "beta", 1.0f) != 1.0f) ||
                (n->n_inputs > 2 && n->inputs[2] >= 0 && !(pg.bias = gemm_bias(C, pg.N))) ||
                !gemm_input_ok(&shp[pg.in_value], pg.K, 2))
                continue;
        } else {
            if (!gemm_input_ok(&shp[pg.in_value], pg.K, 0) || shp[pg.in_value].rank < 2) continue;
            int add = gemm_bias_add(P, u, shp, taken, pg.out_value, pg.N, &pg.bias);
            if (add >= 0) {
                pg.bias_node = add;
                pg.out_value = g->nodes[add].outputs[0];
                taken[add] = 1;
            }
        }
        if (trans_b) {
            int64_t kn = pg.K * pg.N; /* both dims of a loaded tensor: no overflow */
            pg.W_owned = mha_calloc(&P->alloc, (size_t)(kn > 0 ? kn : 1), sizeof(float));
            if (!pg.W_owned) {
                st = mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
                break;
            }
            const float *b = W->data;
            for (int64_t k = 0; k < pg.K; k++)
                for (int64_t c = 0; c < pg.N; c++)
                    pg.W_owned[k * pg.N + c] = b[c * pg.K + k];
            pg.W = pg.W_owned;
        } else {
            pg.W = W->data;
        }
        taken[ni] = 1;
        int ep_nodes[PLAN_EW_MAX_OPS + 2], last;
        size_t n_ep = 0, n_view = (size_t)gemm_row_views(P, u, shp, taken, &pg, ep_nodes);
        if (n_view) {
            pg.in_value = g->nodes[ep_nodes[0]].inputs[0];
            pg.out_value = g->nodes[ep_nodes[1]].outputs[0];
            taken[ep_nodes[0]] = taken[ep_nodes[1]] = 1;
        }
        pg.reads[pg.n_reads++] = pg.in_value;
        /* an operand of the epilogue is made before the GEMM node (the step runs there) */
        int ew = plan_ew_compile(P, u, shp, taken, (int)ni, pg.out_value, pg.N, reg, &pg.epilogue,
                                 &last, ep_nodes + n_view, &n_ep);
        n_ep += n_view;
        if (n_ep > 0) {
            pg.ep_nodes = mha_calloc(&P->alloc, n_ep, sizeof *pg.ep_nodes);
            if (!pg.ep_nodes) {
                mha_free(&P->alloc, pg.W_owned);
                st = mha_fail(err, MHA_ERR_NO_MEMORY, "plan: out of memory");
                break;
            }
            memcpy(pg.ep_nodes, ep_nodes, n_ep * sizeof *ep_nodes);
            pg.n_ep_nodes = n_ep;
            for (size_t k = 0; k < n_ep; k++)
                taken[ep_nodes[k]] = 1;
            if (ew) pg.out_value = last;
            if (pg.epilogue.ext_value >= 0) pg.reads[pg.n_reads++] = pg.epilogue.ext_value;
        }
        plan_ew_classify(&pg.epilogue, &pg.fused_act, &pg.fused_residual);
        gemm_describe(g, &pg);
        P->gemms[P->n_gemms++] = pg;
    }
    mha_free(&P->alloc, reg);
    return st;
}
