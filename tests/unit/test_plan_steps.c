/* test_plan_steps.c -- the step kinds of a plan beyond attention, GEMM and
 * LayerNorm: the RMSNorm of LLaMA and T5 (Pow / ReduceMean / Add / Sqrt and
 * a Div or a Mul by 1 / s, times gamma) as one norm step, SwiGLU's second
 * GEMM multiplying by the first one's SiLU in its epilogue, ViT's
 * patch-embedding Conv (kernel = stride) as a GEMM over its patches,
 * grouped Convs (SqueezeBERT's kernel 1, wav2vec2's positional one) as a
 * GEMM per group, depthwise ones as a direct loop, auto_pad. Each
 * model with such steps runs on every backend this machine has and matches
 * the reference interpreter of its graph. */
#include "testutil.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "interp.h"
#include "model.h"
#include "onnx_ir.h"
#include "plan/plan_internal.h"

static mha_alloc_ctx g_alloc;

#define LLAMA "llama_gqa_l2_d32_h4_kv2"
#define T5 "t5enc_relbias_l2_d32_h4"
#define VIT "vit_preln_l2_d64_h4_p4"
#define SQUEEZEBERT "z4_squeezebert_groupconv_op14"

static void model_path(const char *name, char *path, size_t size) {
    snprintf(path, size, "%s/models/%s/model.onnx", MHA_TEST_DATA, name);
}

static ir_graph *load_graph(const char *name) {
    char path[1024];
    model_path(name, path, sizeof path);
    ir_graph *g = NULL;
    mha_error err;
    if (ir_load_file(&g_alloc, path, NULL, &g, &err) != MHA_OK)
        fail_msg("loading %s: %s", path, err.message);
    return g;
}

/* The plan of a test model, verified against the interpreter at build. */
static plan *build(const char *name) {
    ir_graph *g = load_graph(name);
    plan *P = NULL;
    mha_error err;
    if (plan_build(&g_alloc, &g, 0, &P, &err) != MHA_OK)
        fail_msg("plan of %s: %s", name, err.message);
    return P;
}

static size_t interpreted(const plan *P, const char *op) {
    size_t n = 0;
    for (size_t s = 0; s < P->n_steps; s++)
        n += P->steps[s].kind == PLAN_STEP_INTERP &&
             strcmp(P->g->nodes[P->steps[s].index].op_type, op) == 0;
    return n;
}

/* Every RMSNorm of LLaMA (x * (1 / Sqrt(...)) * w) and of T5 is a norm
 * step: two per layer and the final one, none of their nodes left to the
 * interpreter, and the step's rows are the RMSNorm formula. */
static void test_rmsnorm_steps(void **state) {
    (void)state;
    const char *names[2] = {LLAMA, T5};
    for (int k = 0; k < 2; k++) {
        plan *P = build(names[k]);
        assert_int_equal(P->n_norms, 5);
        for (size_t i = 0; i < P->n_norms; i++) {
            const plan_norm *nm = &P->norms[i];
            assert_int_equal(nm->kind, MHA_NORM_RMS);
            assert_int_equal(nm->D, 32);
            assert_non_null(nm->gamma);
            assert_null(nm->beta);
            /* Pow, ReduceMean, Add, Sqrt, Div (1 / s), Mul (x), Mul (gamma) */
            assert_int_equal(nm->n_nodes, 7);
            assert_string_equal(nm->desc, "rmsnorm");
        }
        assert_int_equal(interpreted(P, "Pow"), 0);
        assert_int_equal(interpreted(P, "ReduceMean"), 0);
        assert_int_equal(interpreted(P, "Sqrt"), 0);
        if (k == 0) {
            assert_int_equal(interpreted(P, "Mul"), 0); /* the norms' and SwiGLU's */
            assert_int_equal(interpreted(P, "Div"), 0);
        }
        /* rows of the step against the formula in double */
        plan_norm nm = P->norms[0];
        float gamma[32], x[3 * 32], y[3 * 32];
        for (int i = 0; i < 32; i++)
            gamma[i] = 0.5f + 0.03f * (float)i;
        nm.gamma = gamma;
        tu_fill_random(x, 3 * 32, 11);
        assert_int_equal(plan_norm_rows(&nm, x, NULL, y, 3), 0);
        for (int r = 0; r < 3; r++) {
            double ss = 0.0;
            for (int i = 0; i < 32; i++)
                ss += (double)x[r * 32 + i] * x[r * 32 + i];
            double inv = 1.0 / sqrt(ss / 32.0 + (double)nm.eps);
            for (int i = 0; i < 32; i++)
                assert_float_equal(y[r * 32 + i], x[r * 32 + i] * inv * gamma[i], 1e-5);
        }
        plan_free(P);
    }
}

static const ir_node *producer(const ir_graph *g, int v) {
    return g->values[v].producer >= 0 ? &g->nodes[g->values[v].producer] : NULL;
}

/* The Div (1 / s) of the RMSNorm with output r, or NULL. */
static ir_node *rms_inverse(ir_graph *g, ir_node *d) {
    if (strcmp(d->op_type, "Div") != 0 || d->n_inputs != 2 || d->inputs[1] < 0) return NULL;
    const ir_node *s = producer(g, d->inputs[1]), *one = producer(g, d->inputs[0]);
    int one_const = g->values[d->inputs[0]].init || (one && strcmp(one->op_type, "Constant") == 0);
    return s && strcmp(s->op_type, "Sqrt") == 0 && one_const ? d : NULL;
}

/* A square written as Mul(x, x) and a normalisation written as x / s are
 * the same RMSNorm step; x^2 * (1 / s) (the square read twice) is none,
 * and still computes what the graph says. */
static void test_rmsnorm_forms(void **state) {
    (void)state;
    for (int form = 0; form < 3; form++) {
        ir_graph *g = load_graph(LLAMA);
        for (size_t ni = 0; ni < g->n_nodes; ni++) {
            ir_node *n = &g->nodes[ni];
            if (form == 0 && strcmp(n->op_type, "Pow") == 0) { /* x * x */
                strcpy(n->op_type, "Mul");
                n->inputs[1] = n->inputs[0];
            }
            ir_node *d = form ? rms_inverse(g, n) : NULL;
            if (!d) continue;
            for (size_t mi = ni + 1; mi < g->n_nodes; mi++) {
                ir_node *m = &g->nodes[mi];
                if (strcmp(m->op_type, "Mul") != 0 || m->inputs[1] != d->outputs[0]) continue;
                if (form == 1) {
                    /* x * (1 / s) becomes x / s; the Div left reads only
                     * constants (folded, its output unread) */
                    strcpy(m->op_type, "Div");
                    m->inputs[1] = d->inputs[1];
                    d->inputs[1] = d->inputs[0];
                } else {
                    /* the square in place of x: s = Sqrt(Add(ReduceMean(p), eps)) */
                    const ir_node *sq = producer(g, d->inputs[1]);
                    const ir_node *add = producer(g, sq->inputs[0]);
                    int mean = add->inputs[producer(g, add->inputs[0]) ? 0 : 1];
                    m->inputs[0] = producer(g, mean)->inputs[0];
                }
                break;
            }
        }
        plan *P = NULL;
        mha_error err;
        if (plan_build(&g_alloc, &g, 0, &P, &err) != MHA_OK)
            fail_msg("form %d: %s", form, err.message);
        size_t rms = 0;
        for (size_t i = 0; i < P->n_norms; i++)
            rms += P->norms[i].kind == MHA_NORM_RMS;
        if (rms != (form == 2 ? 0u : 5u)) fail_msg("form %d: %zu RMSNorm steps", form, rms);
        plan_free(P);
    }
}

/* SwiGLU: silu(x W1) * (x W3). The first GEMM ends in its SiLU, the second
 * multiplies by that buffer in its epilogue ("gated"): no Mul interpreted. */
static void test_swiglu_gated_epilogue(void **state) {
    (void)state;
    plan *P = build(LLAMA);
    size_t silu = 0, gated = 0;
    for (size_t i = 0; i < P->n_gemms; i++) {
        const plan_gemm *pg = &P->gemms[i];
        silu += pg->fused_act == MHA_ACT_SILU;
        if (strstr(pg->desc, "+gated")) {
            gated++;
            assert_int_equal(pg->epilogue.n_ops, 1);
            assert_int_equal(pg->epilogue.ops[0].code, PLAN_EW_MUL);
            assert_true(pg->epilogue.ext_value >= 0);
            assert_int_equal(pg->n_reads, 2);
            /* the gate is the output of a GEMM step with the SiLU */
            int from_silu = 0;
            for (size_t j = 0; j < P->n_gemms; j++)
                from_silu |= P->gemms[j].out_value == pg->epilogue.ext_value &&
                             P->gemms[j].fused_act == MHA_ACT_SILU;
            assert_true(from_silu);
        }
    }
    assert_int_equal(silu, 2);
    assert_int_equal(gated, 2);
    plan_free(P);
}

/* ViT's patch embedding (Conv 4x4, stride 4, over [B, 3, 16, 16]) is a
 * GEMM step: K = 3 * 4 * 4, N = d_model, its bias fused, no Conv left to
 * the interpreter; and a Conv with padding is one of receptive fields
 * (conv_general: rows read past the edge are zeros), the plan verified. */
static void test_patch_conv_gemm(void **state) {
    (void)state;
    plan *P = build(VIT);
    size_t convs = 0;
    for (size_t i = 0; i < P->n_gemms; i++) {
        const plan_gemm *pg = &P->gemms[i];
        if (pg->conv_kh == 0) continue;
        convs++;
        assert_int_equal(pg->conv_kh, 4);
        assert_int_equal(pg->conv_kw, 4);
        assert_int_equal(pg->K, 48);
        assert_int_equal(pg->N, 64);
        assert_non_null(pg->bias);
        assert_int_equal(pg->epilogue.n_ops, 0);
        /* its output only flattened and transposed to rows: written as those */
        assert_int_equal(pg->conv_rows, 1);
        assert_string_equal(pg->desc, "patch-conv gemm+bias as rows");
        assert_string_equal(P->g->nodes[pg->node].op_type, "Conv");
    }
    assert_int_equal(convs, 1);
    assert_int_equal(interpreted(P, "Conv"), 0);
    assert_int_equal(interpreted(P, "Transpose"), 0);
    plan_free(P);
    ir_graph *g = load_graph(VIT);
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        ir_node *n = &g->nodes[ni];
        if (strcmp(n->op_type, "Conv") != 0) continue;
        for (size_t k = 0; k < n->n_attrs; k++)
            if (strcmp(n->attrs[k].name, "pads") == 0) n->attrs[k].ints[0] = 1;
    }
    mha_error err;
    if (plan_build(&g_alloc, &g, 0, &P, &err) != MHA_OK) fail_msg("padded: %s", err.message);
    assert_int_equal(interpreted(P, "Conv"), 0);
    size_t general = 0;
    for (size_t i = 0; i < P->n_gemms; i++) {
        const plan_gemm *pg = &P->gemms[i];
        if (!pg->conv_general) continue;
        general++;
        /* the top row padded alone: pads [h begin, w begin, h end, w end] */
        assert_int_equal(pg->conv_pad[0], 1);
        assert_int_equal(pg->conv_pad[1] + pg->conv_pad[2] + pg->conv_pad[3], 0);
        assert_int_equal(pg->conv_stride[0], 4);
        assert_int_equal(pg->conv_stride[1], 4);
    }
    assert_int_equal(general, 1);
    plan_free(P);
}

/* SqueezeBERT's projections are Conv1d of kernel 1 over [B, C, S], most
 * of them in 4 groups: each one a GEMM step (K = C, N = the out channels),
 * a grouped one a GEMM per group (K = C / G, N = out / G: the entry of group
 * 0 makes the step, gemms[i + g] hold group g's weight and bias, no step of
 * their own) -- no longer a block-diagonal weight of G times the
 * multiply-adds -- and no Conv left to the interpreter. */
static void test_grouped_conv1d_gemm(void **state) {
    (void)state;
    plan *P = build(SQUEEZEBERT);
    size_t convs = 0, grouped = 0, with_epilogue = 0;
    for (size_t i = 0; i < P->n_gemms; i++) {
        const plan_gemm *pg = &P->gemms[i];
        if (pg->conv_kw == 0 || pg->conv_group > 0) continue;
        const ir_node *n = &P->g->nodes[pg->node];
        assert_string_equal(n->op_type, "Conv");
        convs++;
        assert_int_equal(pg->conv_kh, 1);
        assert_int_equal(pg->conv_kw, 1);
        assert_non_null(pg->bias);
        /* the GELU after the intermediate Convs, the residual Add after
         * the output ones: run on the Conv's [B, N, S] output */
        with_epilogue += pg->epilogue.n_ops > 0;
        const int64_t groups = ir_attr_int(n, "group", 1);
        const tensor *w = P->g->values[n->inputs[1]].init;
        assert_non_null(w);
        assert_int_equal(pg->K, w->dims[1]);
        assert_int_equal(pg->N * groups, w->dims[0]);
        if (groups == 1) {
            assert_non_null(strstr(pg->desc, "conv1d gemm+bias"));
            continue;
        }
        grouped++;
        assert_int_equal(pg->conv_groups, groups);
        assert_non_null(strstr(pg->desc, "g4 gemm+bias"));
        /* group g's weight [Kg, Ng] is w[g Ng + c, k] */
        for (int64_t g = 0; g < groups; g++) {
            const plan_gemm *q = &P->gemms[i + (size_t)g];
            assert_int_equal(q->node, pg->node);
            assert_int_equal(q->conv_group, g);
            assert_int_equal(q->K, pg->K);
            assert_int_equal(q->N, pg->N);
            assert_ptr_equal(q->bias, pg->bias + g * pg->N);
            for (int64_t k = 0; k < q->K; k++)
                for (int64_t c = 0; c < q->N; c++)
                    assert_true(q->W[k * q->N + c] ==
                                ((const float *)w->data)[(g * pg->N + c) * pg->K + k]);
        }
    }
    assert_int_equal(convs, 12);
    assert_int_equal(grouped, 10);
    assert_int_equal(with_epilogue, 6);
    assert_int_equal(interpreted(P, "Conv"), 0);
    /* one step per Conv, not per group */
    size_t conv_steps = 0;
    for (size_t s = 0; s < P->n_steps; s++)
        conv_steps += P->steps[s].kind == PLAN_STEP_GEMM &&
                      strcmp(P->g->nodes[P->gemms[P->steps[s].index].node].op_type, "Conv") == 0;
    assert_int_equal(conv_steps, 12);
    plan_free(P);
}

/* Round 12's grouped and depthwise Convs (make_zoo12.py) and the ones of
 * earlier rounds: wav2vec2's positional Conv (8 groups of kernel 16; 4 of
 * kernel 4) a GEMM per group; a conformer's depthwise Conv1d of two outputs
 * per channel (kernel 7, dilation 2) and CvT's depthwise 3 x 3 projections
 * (stride 1 and 2) the direct loop; Convs with auto_pad SAME_UPPER /
 * SAME_LOWER / VALID steps too. No Conv left to the interpreter. */
static void test_grouped_depthwise_autopad_steps(void **state) {
    (void)state;
    static const struct {
        const char *name;
        int grouped, depthwise, same;
        const char *desc; /* one step's */
    } cases[] = {
        {"z12_w2v2_posconv_g8k16_op14", 1, 0, 0, "conv1d k16 p8 g8 gemm+bias"},
        {"z3_wav2vec2_posconv_op14", 1, 0, 0, "conv1d k4 p2 g4 gemm+bias"},
        {"z12_conformer_dwconv_mult2_op17", 1, 1, 0, "conv1d k7 p6 d2 depthwise direct"},
        {"z8_cvt_convproj_cls_op14", 0, 6, 0, "conv2d k3x3 s2 p1 depthwise direct"},
        {"z12_tf_autopad_conv1d_op13", 1, 1, 2, "conv1d k4 same-lower depthwise direct+bias"},
        {"z12_tf_autopad_conv2d_op13", 1, 1, 2, "conv2d k3x3 s2 same-upper gemm+bias+Relu"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        plan *P = build(cases[c].name);
        int grouped = 0, depthwise = 0, same = 0, desc = 0;
        for (size_t s = 0; s < P->n_steps; s++) {
            if (P->steps[s].kind != PLAN_STEP_GEMM) continue;
            const plan_gemm *pg = &P->gemms[P->steps[s].index];
            grouped += pg->conv_groups > 1;
            depthwise += pg->conv_depthwise;
            same += pg->conv_auto != 0;
            desc += strncmp(pg->desc, cases[c].desc, strlen(cases[c].desc)) == 0;
        }
        if (interpreted(P, "Conv") != 0 || grouped != cases[c].grouped ||
            depthwise != cases[c].depthwise || same != cases[c].same || desc < 1)
            fail_msg("%s: %zu Convs interpreted, %d grouped, %d depthwise, %d auto_pad SAME, "
                     "%d steps \"%s\"",
                     cases[c].name, interpreted(P, "Conv"), grouped, depthwise, same, desc,
                     cases[c].desc);
        plan_free(P);
    }
}

/* nn.MultiheadAttention in a batch-first model (torchvision's ViT, a
 * batch-first TransformerEncoder): the Transposes of the first two axes
 * before and after each sequence-first layer are folded into its step,
 * which reads and writes the batch-first values as a batch-first layer.
 * (ViT's patch-flattening Transpose goes with test_patch_conv_gemm's
 * fold.) The outputs against the
 * interpreter on every backend are test_models_on_every_backend's (ViT)
 * and `mha check`'s. */
static void test_seq_first_transposes_folded(void **state) {
    (void)state;
    const char *names[3] = {VIT, "h_vit_torchvision_op13", "v_tenc_bf_preln_gelu_nomask_op17"};
    const size_t left[3] = {0, 0, 0};
    for (int k = 0; k < 3; k++) {
        plan *P = build(names[k]);
        if (interpreted(P, "Transpose") != left[k])
            fail_msg("%s: %zu Transposes interpreted", names[k], interpreted(P, "Transpose"));
        assert_true(P->n_layers >= 2);
        for (size_t li = 0; li < P->n_layers; li++) {
            const plan_layer *pl = &P->layers[li];
            assert_true(pl->recognised);
            assert_int_equal(pl->L.seq_first, 0);
            const ir_graph *g = P->g;
            int prod = g->values[pl->in_values[0]].producer;
            assert_true(prod < 0 || strcmp(g->nodes[prod].op_type, "Transpose") != 0);
            /* the Transpose back, then the residual Add taken after it */
            const size_t back = pl->n_nodes - 1 - (pl->residual ? 1 : 0);
            assert_string_equal(g->nodes[pl->nodes[back]].op_type, "Transpose");
        }
        plan_free(P);
    }
}

/* The probe inputs of P's graph (probe p), as mha tensors over t[]. */
static size_t probe_inputs(const plan *P, int p, tensor **t, mha_tensor *in) {
    mha_error err;
    assert_int_equal(plan_probe_inputs(P, p, t, &err), MHA_OK);
    for (size_t i = 0; i < P->g->n_inputs; i++)
        tensor_as_mha(t[i], &in[i]);
    return P->g->n_inputs;
}

/* A test model loaded, its plan's probe inputs (t, borrowed as in) and
 * the reference interpreter's values of its graph on them. */
typedef struct ref_model {
    mha_model *m;
    tensor *t[4];
    mha_tensor in[4];
    size_t n_in;
    ir_graph *g;
    tensor **values;
} ref_model;

/* ref_load at probe p (the second: a batch of 2 where the first has 1). */
static void ref_load_probe(const char *name, int p, ref_model *r) {
    char path[1024];
    model_path(name, path, sizeof path);
    mha_error err;
    memset(r, 0, sizeof *r);
    if (mha_model_load_file(path, NULL, &r->m, &err) != MHA_OK)
        fail_msg("%s: %s", name, err.message);
    r->n_in = probe_inputs(r->m->plan, p, r->t, r->in);
    r->g = load_graph(name);
    if (interp_run(&g_alloc, r->g, (const tensor *const *)r->t, &r->values, &err) != MHA_OK)
        fail_msg("interp %s: %s", name, err.message);
}

static void ref_load(const char *name, ref_model *r) {
    ref_load_probe(name, 0, r);
}

static void ref_free(ref_model *r) {
    interp_values_free(r->g, r->values);
    ir_free(r->g);
    for (size_t i = 0; i < r->n_in; i++)
        tensor_free(r->t[i]);
    mha_model_free(r->m);
}

/* r's model run on rt over r's inputs: its largest error against the
 * interpreter's output on the probe input. */
static double ref_run_error(ref_model *r, mha_runtime *rt) {
    mha_error err;
    mha_tensor out;
    assert_int_equal(mha_model_output_shapes(r->m, r->in, r->n_in, &out, 1, &err), MHA_OK);
    const tensor *want = r->values[r->g->outputs[0]];
    assert_int_equal(mha_tensor_numel(&out), tensor_numel(want));
    out.data = calloc((size_t)mha_tensor_numel(&out), sizeof(float));
    if (mha_run(rt, r->m, r->in, r->n_in, &out, 1, NULL, &err) != MHA_OK)
        fail_msg("run: %s", err.message);
    double e = tu_max_rel_err(out.data, want->data, (size_t)tensor_numel(want));
    free(out.data);
    return e;
}

/* Value id of the value named as P's value v in graph g. */
static int same_value(const plan *P, int v, const ir_graph *g) {
    for (size_t w = 0; w < g->n_values; w++)
        if (strcmp(g->values[w].name, P->g->values[v].name) == 0) return (int)w;
    fail_msg("no value %s", P->g->values[v].name);
    return -1;
}

/* The position embeddings' Add (GPT-2: token rows + position rows; ViT:
 * the position table over the class token and the patches) is an add step
 * and no Add stays interpreted; the step's sum of the interpreter's
 * operands (the table broadcast over the batch) is bitwise the
 * interpreter's Add. */
static void test_position_add_step(void **state) {
    (void)state;
    const char *names[3] = {VIT, "gpt2_preln_causal_l2_d64_h4", "h_vit_torchvision_op13"};
    for (int k = 0; k < 3; k++) {
        ref_model r;
        ref_load_probe(names[k], 1, &r);
        const plan *P = r.m->plan;
        if (P->n_adds != 1 || interpreted(P, "Add") != 0)
            fail_msg("%s: %zu add steps, %zu Adds interpreted", names[k], P->n_adds,
                     interpreted(P, "Add"));
        const plan_add *ad = &P->adds[0];
        const int a = same_value(P, ad->a_value, r.g), b = same_value(P, ad->b_value, r.g),
                  y = same_value(P, ad->out_value, r.g);
        const tensor *ta = r.values[a], *tb = r.values[b] ? r.values[b] : r.g->values[b].init,
                     *want = r.values[y];
        assert_non_null(ta);
        assert_non_null(tb);
        assert_non_null(want);
        const int64_t n = tensor_numel(want);
        assert_int_equal(tensor_numel(ta), n);
        /* the table or the position rows are one item's, the second
         * probe's batch several items */
        assert_true(tb->dims[0] == 1 && ta->dims[0] >= 2 && tensor_numel(tb) * ta->dims[0] == n);
        float *got = calloc((size_t)n, sizeof *got);
        assert_non_null(got);
        plan_add_values(ta->data, tb->data, got, n, tensor_numel(tb));
        assert_memory_equal(got, want->data, sizeof(float) * (size_t)n);
        free(got);
        ref_free(&r);
    }
}

/* Plan P of model name run on the reference backend at the second probe
 * (a batch of several items; inputs in[4]) into *got, and the original
 * graph interpreted on the same inputs into *ref: the graph returned. */
static ir_graph *run_plan_and_graph(const char *name, plan *P, tensor **in, tensor ***got,
                                    tensor ***ref) {
    mha_error err;
    assert_true(P->g->n_inputs <= 4);
    assert_int_equal(plan_probe_inputs(P, 1, in, &err), MHA_OK);
    if (plan_exec(P, in, &plan_reference_backend, 1, got, &err) != MHA_OK)
        fail_msg("%s: %s", name, err.message);
    ir_graph *g = load_graph(name);
    if (interp_run(&g_alloc, g, (const tensor *const *)in, ref, &err) != MHA_OK)
        fail_msg("interp %s: %s", name, err.message);
    return g;
}

static void free_plan_and_graph(plan *P, tensor **in, tensor **got, ir_graph *g, tensor **ref) {
    interp_values_free(g, ref);
    ir_free(g);
    plan_values_free(P, in, got);
    for (size_t i = 0; i < P->g->n_inputs; i++)
        tensor_free(in[i]);
    plan_free(P);
}

/* A backend's parallel pass that records its calls and runs the pieces
 * last first, 3 items each (any split must give the same bits). */
typedef struct pieces_seen {
    int calls;
    int64_t n, grain;
} pieces_seen;

static mha_status pieces_backwards(void *user, void (*fn)(void *ctx, int64_t i0, int64_t i1),
                                   void *ctx, int64_t n, int64_t grain, mha_error *err) {
    pieces_seen *seen = user;
    (void)err;
    seen->calls++;
    seen->n = n;
    seen->grain = grain;
    for (int64_t i0 = (n - 1) / 3 * 3; i0 >= 0; i0 -= 3)
        fn(ctx, i0, i0 + 3 < n ? i0 + 3 : n);
    return MHA_OK;
}

/* ViT's patch rows (the patch Conv's A) are built through the backend's
 * parallel pass, one call over every patch of the batch, into a block the
 * plan keeps for the next run; the step's output is bitwise that of the
 * rows built in one piece (the reference backend has no parallel pass). */
static void test_patch_rows_in_pieces(void **state) {
    (void)state;
    plan *P = build(VIT);
    tensor *in[4] = {0};
    tensor **one = NULL, **split = NULL;
    mha_error err;
    assert_int_equal(plan_probe_inputs(P, 1, in, &err), MHA_OK);
    assert_int_equal(plan_exec(P, in, &plan_reference_backend, 1, &one, &err), MHA_OK);
    pieces_seen seen = {0, 0, 0};
    plan_backend be = plan_reference_backend;
    be.user = &seen;
    be.parallel = pieces_backwards;
    if (plan_exec(P, in, &be, 1, &split, &err) != MHA_OK) fail_msg("%s", err.message);
    const plan_gemm *conv = NULL;
    for (size_t i = 0; i < P->n_gemms; i++)
        if (P->gemms[i].conv_kh > 0) conv = &P->gemms[i];
    assert_non_null(conv);
    const tensor *x = in[0], *a = one[conv->out_value], *b = split[conv->out_value];
    assert_non_null(a);
    assert_non_null(b);
    /* [B, 3, 16, 16] in 4 x 4 patches: 16 per item */
    assert_int_equal(seen.calls, 1);
    assert_int_equal(seen.n, x->dims[0] * 16);
    assert_true(x->dims[0] >= 2 && seen.grain >= 1);
    assert_int_equal(tensor_numel(a), tensor_numel(b));
    assert_memory_equal(a->data, b->data, sizeof(float) * (size_t)tensor_numel(a));
    /* the rows' block is kept by the plan and taken again by the next run
     * (no fresh pages a run) */
    const void *kept = P->rows_block;
    assert_non_null(kept);
    assert_true(P->rows_bytes >= sizeof(float) * (size_t)(seen.n * conv->K));
    tensor **again = NULL;
    assert_int_equal(plan_exec(P, in, &be, 0, &again, &err), MHA_OK);
    assert_ptr_equal(P->rows_block, kept);
    plan_values_free(P, in, again);
    plan_values_free(P, in, one);
    plan_values_free(P, in, split);
    for (size_t i = 0; i < P->g->n_inputs; i++)
        tensor_free(in[i]);
    plan_free(P);
}

/* The embedding lookups (BERT's and MiniLM's token, position and segment
 * rows, GPT-2's token and position rows) are gather steps and no Gather of
 * a float table stays interpreted; each step's rows, in a run of the plan
 * on the reference backend at the second probe (a batch of several
 * items), are bitwise the interpreter's Gather. */
static void test_embedding_gather_steps(void **state) {
    (void)state;
    const char *names[3] = {"bert_postln_l2_d64_h4", "gpt2_preln_causal_l2_d64_h4",
                            "minilm_postln_l3_d48_h6"};
    const size_t want[3] = {3, 2, 3};
    for (int k = 0; k < 3; k++) {
        plan *P = build(names[k]);
        if (P->n_gathers != want[k]) fail_msg("%s: %zu gather steps", names[k], P->n_gathers);
        for (size_t s = 0; s < P->n_steps; s++) {
            const ir_node *n = &P->g->nodes[P->steps[s].index];
            const tensor *t = P->steps[s].kind == PLAN_STEP_INTERP && n->n_inputs > 0
                                  ? plan_const(P, n->inputs[0])
                                  : NULL;
            if (t && strcmp(n->op_type, "Gather") == 0 && t->dtype == MHA_DTYPE_FLOAT32)
                fail_msg("%s: %s interpreted", names[k], n->name);
        }
        tensor *in[4] = {0};
        tensor **got = NULL, **ref = NULL;
        ir_graph *g = run_plan_and_graph(names[k], P, in, &got, &ref);
        size_t batched = 0;
        for (size_t i = 0; i < P->n_gathers; i++) {
            const tensor *y = got[P->gathers[i].out_value],
                         *w = ref[same_value(P, P->gathers[i].out_value, g)];
            assert_non_null(y);
            assert_non_null(w);
            assert_int_equal(y->rank, w->rank);
            batched += y->dims[0] >= 2; /* the token rows; position rows may be [1, S, D] */
            assert_memory_equal(y->dims, w->dims, sizeof(int64_t) * (size_t)y->rank);
            assert_memory_equal(y->data, w->data, w->nbytes);
        }
        assert_true(batched >= 1);
        free_plan_and_graph(P, in, got, g, ref);
    }
}

/* ViT's class token before its patches is a concat step and no float32
 * Concat stays interpreted (the Concats of shapes do); the step's output, in
 * a run of the plan on the reference backend at the second probe (several
 * images), is bitwise the interpreter's Concat, a class row first in each
 * image. */
static void test_class_token_concat_step(void **state) {
    (void)state;
    const char *names[3] = {"vit_preln_l2_d64_h4_p4", "h_vit_torchvision_op13",
                            "v_vit_hf_cls_op14"};
    for (int k = 0; k < 3; k++) {
        plan *P = build(names[k]);
        if (P->n_concats != 1) fail_msg("%s: %zu concat steps", names[k], P->n_concats);
        assert_int_equal(P->concats[0].axis, 1);
        tensor *in[4] = {0};
        tensor **got = NULL, **ref = NULL;
        ir_graph *g = run_plan_and_graph(names[k], P, in, &got, &ref);
        for (size_t s = 0; s < P->n_steps; s++) {
            const ir_node *n = &P->g->nodes[P->steps[s].index];
            if (P->steps[s].kind == PLAN_STEP_INTERP && strcmp(n->op_type, "Concat") == 0 &&
                ref[same_value(P, n->outputs[0], g)]->dtype == MHA_DTYPE_FLOAT32)
                fail_msg("%s: %s interpreted", names[k], n->name);
        }
        const tensor *y = got[P->concats[0].out_value],
                     *w = ref[same_value(P, P->concats[0].out_value, g)];
        assert_non_null(y);
        assert_non_null(w);
        assert_int_equal(y->rank, 3);
        assert_int_equal(w->rank, 3);
        assert_true(y->dims[0] >= 2); /* several images: the class row repeats per image */
        assert_memory_equal(y->dims, w->dims, sizeof(int64_t) * 3);
        assert_memory_equal(y->data, w->data, w->nbytes);
        free_plan_and_graph(P, in, got, g, ref);
    }
}

/* The whole model on every backend found (scalar at least) against the
 * reference interpreter of the original graph, on the plan's probe input. */
static void test_models_on_every_backend(void **state) {
    (void)state;
    /* GPT-2 and RoBERTa: the residual after each layer in its step */
    /* and the grouped, depthwise and auto_pad Convs (make_zoo12.py) */
    const char *names[] = {LLAMA,
                           T5,
                           VIT,
                           "gpt2_preln_causal_l2_d64_h4",
                           "roberta_cls_l2_d32_h4",
                           "z12_w2v2_posconv_g8k16_op14",
                           "z12_conformer_dwconv_mult2_op17",
                           "z12_tf_autopad_conv1d_op13",
                           "z12_tf_autopad_conv2d_op13"};
    const char *backends[4] = {"scalar", "avx2", "avx512", "openmp"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        mha_error err;
        ref_model r;
        ref_load(names[k], &r);
        const tensor *want = r.values[r.g->outputs[0]];
        size_t n = (size_t)tensor_numel(want), ran = 0;
        for (int b = 0; b < 4; b++) {
            mha_runtime_options ro;
            mha_runtime_options_init(&ro);
            ro.backend = backends[b];
            ro.num_threads = 2;
            ro.no_env = 1;
            ro.plugin_path = MHA_PLUGIN_BUILD_DIR;
            mha_runtime *rt = NULL;
            if (mha_runtime_create(&ro, &rt, &err) != MHA_OK) continue; /* not on this machine */
            mha_tensor out;
            assert_int_equal(mha_model_output_shapes(r.m, r.in, r.n_in, &out, 1, &err), MHA_OK);
            assert_int_equal((size_t)mha_tensor_numel(&out), n);
            out.data = calloc(n, sizeof(float));
            if (mha_run(rt, r.m, r.in, r.n_in, &out, 1, NULL, &err) != MHA_OK)
                fail_msg("%s on %s: %s", names[k], backends[b], err.message);
            double e = tu_max_rel_err(out.data, want->data, n);
            if (e > 1e-4) fail_msg("%s on %s: error %g", names[k], backends[b], e);
            free(out.data);
            mha_runtime_destroy(rt);
            ran++;
        }
        print_message("%s: %zu backends\n", names[k], ran);
        assert_true(ran >= 2); /* the built-in scalar and at least the plugin of this build */
        ref_free(&r);
    }
}

/* A runtime of the defaults, and r's float32 output allocated (free
 * out->data). */
static mha_runtime *default_runtime(const ref_model *r, mha_tensor *out) {
    mha_error err;
    mha_runtime *rt = NULL;
    assert_int_equal(mha_runtime_create(NULL, &rt, &err), MHA_OK);
    assert_int_equal(mha_model_output_shapes(r->m, r->in, r->n_in, out, 1, &err), MHA_OK);
    out->data = calloc((size_t)mha_tensor_numel(out), sizeof(float));
    return rt;
}

/* FLOPs of g's products as the interpreter ran them (values): 2 x the
 * output's elements x the reduced length of every MatMul / Gemm / Conv; a
 * MatMul of two computed values (an attention core's Q K^T or P V) halved
 * when causal. The count mha_run_options.flops must give. */
static double graph_flops(const ir_graph *g, tensor **values, int causal) {
    double sum = 0.0;
    for (size_t i = 0; i < g->n_nodes; i++) {
        const ir_node *n = &g->nodes[i];
        const int conv = strcmp(n->op_type, "Conv") == 0, mm = strcmp(n->op_type, "MatMul") == 0;
        if (!conv && !mm && strcmp(n->op_type, "Gemm") != 0) continue;
        const tensor *a = values[n->inputs[0]], *w = values[n->inputs[1]];
        const tensor *y = values[n->outputs[0]];
        double k = (double)a->dims[a->rank - 1];
        if (conv) k = (double)(tensor_numel(w) / w->dims[0]);
        double f = 2.0 * (double)tensor_numel(y) * k;
        if (mm && causal && !g->values[n->inputs[0]].init && !g->values[n->inputs[1]].init)
            f *= 0.5;
        sum += f;
    }
    return sum;
}

/* mha_run_options.flops of a whole model (GPT-2: causal attention, a
 * logits GEMM; ViT: the patch Conv as a GEMM; the conformer: a depthwise
 * Conv's direct loop, which calls no GEMM) equals the count of the
 * graph's products at the run's sizes; a caller built before the field
 * (struct_size without it) gets nothing written. */
static void test_run_flops(void **state) {
    (void)state;
    const char *names[3] = {"gpt2_preln_causal_l2_d64_h4", VIT, "z12_conformer_dwconv_mult2_op17"};
    for (int k = 0; k < 3; k++) {
        mha_error err;
        ref_model r;
        ref_load(names[k], &r);
        mha_model_info info;
        assert_int_equal(mha_model_get_info(r.m, &info), MHA_OK);
        const double want = graph_flops(r.g, r.values, info.causal);
        mha_tensor out;
        mha_runtime *rt = default_runtime(&r, &out);
        double flops = -1.0;
        mha_run_options ro;
        mha_run_options_init(&ro);
        ro.flops = &flops;
        assert_int_equal(mha_run(rt, r.m, r.in, r.n_in, &out, 1, &ro, &err), MHA_OK);
        print_message("%s: %.0f FLOPs, the graph's products %.0f\n", names[k], flops, want);
        assert_true(want > 0.0 && fabs(flops - want) <= 1e-9 * want);
        flops = -1.0;
        ro.struct_size = (uint32_t)offsetof(mha_run_options, flops);
        assert_int_equal(mha_run(rt, r.m, r.in, r.n_in, &out, 1, &ro, &err), MHA_OK);
        assert_true(flops == -1.0);
        free(out.data);
        mha_runtime_destroy(rt);
        ref_free(&r);
    }
}

/* mha_run_options.step_seconds of a whole model: one wall time per step
 * (each step ran, so each is > 0), together no more than the run's wall
 * time; a caller built before the field (struct_size without it) gets
 * nothing written. */
static void test_run_step_seconds(void **state) {
    (void)state;
    ref_model r;
    ref_load(VIT, &r);
    mha_error err;
    mha_tensor out;
    mha_runtime *rt = default_runtime(&r, &out);
    const size_t n = mha_model_num_steps(r.m);
    assert_true(n > 1);
    double *sec = malloc(n * sizeof *sec);
    for (size_t s = 0; s < n; s++)
        sec[s] = -1.0;
    mha_run_options ro;
    mha_run_options_init(&ro);
    ro.step_seconds = sec;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(mha_run(rt, r.m, r.in, r.n_in, &out, 1, &ro, &err), MHA_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    const double wall = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    double sum = 0.0;
    for (size_t s = 0; s < n; s++) {
        if (!(sec[s] > 0.0)) fail_msg("step %zu of %zu: %g s", s, n, sec[s]);
        sum += sec[s];
    }
    print_message("%zu steps, %.3f ms of %.3f ms\n", n, 1e3 * sum, 1e3 * wall);
    assert_true(sum <= wall);
    for (size_t s = 0; s < n; s++)
        sec[s] = -1.0;
    ro.struct_size = (uint32_t)offsetof(mha_run_options, step_seconds);
    assert_int_equal(mha_run(rt, r.m, r.in, r.n_in, &out, 1, &ro, &err), MHA_OK);
    for (size_t s = 0; s < n; s++)
        assert_true(sec[s] == -1.0);
    free(sec);
    free(out.data);
    mha_runtime_destroy(rt);
    ref_free(&r);
}

/* GPT-2's causal mask, sliced out of its [1, 1, n, n] buffer and cast
 * per layer, feeds only the attention layer, which recognises it as causal
 * and does not take it: those nodes (and the Shape / Gather / Concat work
 * that sizes the slices) are not steps. Every interpreted step left has an
 * output a later step or the graph's output reads, and the model still
 * matches the interpreter (test_models_on_every_backend's check, here on
 * the default backend). */
static void test_unread_steps_dropped(void **state) {
    (void)state;
    const char *name = "gpt2_preln_causal_l2_d64_h4";
    plan *P = build(name);
    assert_int_equal(interpreted(P, "Slice"), 0);
    assert_int_equal(interpreted(P, "Concat"), 0);
    for (size_t s = 0; s < P->n_steps; s++) {
        if (P->steps[s].kind != PLAN_STEP_INTERP) continue;
        const ir_node *n = &P->g->nodes[P->steps[s].index];
        int read = 0;
        for (size_t k = 0; k < n->n_outputs; k++)
            read |= n->outputs[k] >= 0 && P->last_step[n->outputs[k]] > (int)s;
        if (!read) fail_msg("%s: step %zu (%s) is read by nobody", name, s, n->op_type);
    }
    plan_free(P);
    ref_model r;
    ref_load(name, &r);
    mha_error err;
    mha_runtime *rt = NULL;
    assert_int_equal(mha_runtime_create(NULL, &rt, &err), MHA_OK);
    assert_true(ref_run_error(&r, rt) < 1e-4);
    mha_runtime_destroy(rt);
    ref_free(&r);
}

/* A run's arena holds the previous run's values: an attention step
 * writes every element of its output there without zeroing it first, so a
 * run after one on other data still matches the interpreter (ViT: the
 * layers' outputs, the patch rows and the residuals all in the arena). */
static void test_arena_reused_across_inputs(void **state) {
    (void)state;
    ref_model r;
    ref_load(VIT, &r);
    mha_error err;
    mha_runtime *rt = NULL;
    assert_int_equal(mha_runtime_create(NULL, &rt, &err), MHA_OK);
    /* first on the image negated and scaled: other values everywhere */
    float *x = r.in[0].data;
    const size_t nx = (size_t)mha_tensor_numel(&r.in[0]);
    float *keep = malloc(nx * sizeof(float));
    memcpy(keep, x, nx * sizeof(float));
    for (size_t i = 0; i < nx; i++)
        x[i] = -3.0f * x[i];
    assert_true(ref_run_error(&r, rt) > 1e-2); /* it did differ */
    memcpy(x, keep, nx * sizeof(float));
    free(keep);
    double e = ref_run_error(&r, rt);
    if (e > 1e-4) fail_msg("second run: error %g", e);
    mha_runtime_destroy(rt);
    ref_free(&r);
}

int main(void) {
    mha_alloc_ctx_init(&g_alloc, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm_steps),
        cmocka_unit_test(test_rmsnorm_forms),
        cmocka_unit_test(test_swiglu_gated_epilogue),
        cmocka_unit_test(test_patch_conv_gemm),
        cmocka_unit_test(test_patch_rows_in_pieces),
        cmocka_unit_test(test_grouped_conv1d_gemm),
        cmocka_unit_test(test_grouped_depthwise_autopad_steps),
        cmocka_unit_test(test_models_on_every_backend),
        cmocka_unit_test(test_position_add_step),
        cmocka_unit_test(test_embedding_gather_steps),
        cmocka_unit_test(test_class_token_concat_step),
        cmocka_unit_test(test_run_flops),
        cmocka_unit_test(test_run_step_seconds),
        cmocka_unit_test(test_unread_steps_dropped),
        cmocka_unit_test(test_seq_first_transposes_folded),
        cmocka_unit_test(test_arena_reused_across_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
