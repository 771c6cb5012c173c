/* test_plan.c -- whole models as plans (engine/src/plan): the partition
 * finds every attention layer of a BERT-style graph and hands it to the
 * recogniser (and a layer it refuses is interpreted); MatMuls / Gemms with constant weights become
 * GEMM steps (bias fused) that match the plain GEMM; the steps never run a node twice; values are
 * freed after their last step; output shapes follow the input axes; probe inputs stay in range; the
 * plan verifier catches a layer that computes something else; a refused layer is interpreted with
 * its reason. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec.h"
#include "model.h"
#include "onnx_ir.h"
#include "plan/plan_internal.h"
#include "registry.h"

static mha_alloc_ctx g_alloc;

#define BERT "bert_postln_l2_d64_h4"
#define GPT2 "gpt2_preln_causal_l2_d64_h4"

/* the plan of the model file at `path`, which has `cores` attention cores */
static plan *build_file(const char *path, int skip_verify, size_t cores) {
    ir_graph *g = NULL;
    mha_error err;
    mha_error_clear(&err);
    if (ir_load_file(&g_alloc, path, NULL, &g, &err) != MHA_OK)
        fail_msg("loading %s: %s", path, err.message);
    assert_int_equal(plan_count_cores(g), cores);
    plan *P = NULL;
    if (plan_build(&g_alloc, &g, skip_verify, &P, &err) != MHA_OK)
        fail_msg("plan of %s: %s", path, err.message);
    assert_null(g); /* the plan owns the graph */
    return P;
}

static plan *build_n(const char *name, int skip_verify, size_t cores) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s/model.onnx", MHA_TEST_DATA, name);
    return build_file(path, skip_verify, cores);
}

static plan *build(const char *name, int skip_verify) {
    return build_n(name, skip_verify, 2);
}

/* A step's kind and index do not depend on how many steps of another kind
 * there are: a thousand GEMMs (tests/data/plan/gemm_chain_1000.onnx) are a
 * thousand GEMM steps in graph order, then the one LayerNorm step (the
 * 990th GEMM was once read as norm 0, and the plan refused the model). */
static void test_steps_past_a_thousand_gemms(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/plan/gemm_chain_1000.onnx", MHA_TEST_DATA);
    plan *P = build_file(path, 0, 2);
    size_t gemms = 0, norms = 0;
    for (size_t s = 0; s < P->n_steps; s++) {
        const plan_step *st = &P->steps[s];
        if (st->kind == PLAN_STEP_GEMM) assert_int_equal(st->index, (int)gemms++);
        if (st->kind == PLAN_STEP_NORM) {
            assert_int_equal(st->index, 0);
            assert_int_equal(gemms, 1000); /* after every GEMM */
            norms++;
        }
    }
    assert_int_equal(gemms, 1000);
    assert_int_equal(norms, 1);
    plan_free(P);
}

/* mha_model_input_axis_symbol: the ids' and their padding mask's tokens
 * share a symbol; a decoder's mask over its encoder's tokens does not (what
 * `mha run --lengths` asks before it makes a mask of the ids' length). */
static void test_input_axis_symbols(void **state) {
    (void)state;
    static const struct {
        const char *model;
        int same; /* axis 1 of input 0 (the ids) and of the mask */
        size_t mask;
    } cases[] = {{"v_bert_hf_int32mask_bmm_op14", 1, 1},
                 {"w_bert_packed_lists_op14", 1, 2}, /* unnamed axes merged per index */
                 {"z_t5_dec_past_op16", 0, 2}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/models/%s/model.onnx", MHA_TEST_DATA, cases[c].model);
        mha_model *m = NULL;
        mha_error err;
        mha_error_clear(&err);
        if (mha_model_load_file(path, NULL, &m, &err) != MHA_OK) fail_msg("%s", err.message);
        mha_io_info mask;
        assert_int_equal(mha_model_input(m, cases[c].mask, &mask), MHA_OK);
        assert_int_equal(mask.role, MHA_ROLE_ATTN_MASK);
        const int ids = mha_model_input_axis_symbol(m, 0, 1);
        const int keys = mha_model_input_axis_symbol(m, cases[c].mask, 1);
        if (cases[c].same && (ids < 0 || ids != keys))
            fail_msg("%s: symbols %d, %d", cases[c].model, ids, keys);
        /* the decoder's ids are [B, 1], fixed; its mask covers the encoder's */
        if (!cases[c].same && (keys < 0 || ids == keys))
            fail_msg("%s: symbols %d, %d", cases[c].model, ids, keys);
        /* the batch is one symbol over the inputs; past the rank, -1 */
        assert_int_equal(mha_model_input_axis_symbol(m, 0, 0),
                         mha_model_input_axis_symbol(m, cases[c].mask, 0));
        assert_int_equal(mha_model_input_axis_symbol(m, 0, 5), -1);
        assert_int_equal(mha_model_input_axis_symbol(m, 99, 0), -1);
        mha_model_free(m);
    }
    assert_int_equal(mha_model_input_axis_symbol(NULL, 0, 0), -1);
}

static void test_partition_finds_every_layer(void **state) {
    (void)state;
    plan *P = build(BERT, 0);
    assert_int_equal(P->n_layers, 2);
    size_t attention_steps = 0;
    for (size_t s = 0; s < P->n_steps; s++)
        attention_steps += P->steps[s].kind == PLAN_STEP_ATTENTION;
    assert_int_equal(attention_steps, 2);
    for (size_t i = 0; i < 2; i++) {
        const plan_layer *pl = &P->layers[i];
        assert_true(pl->recognised);
        assert_int_equal(pl->L.d_model, 64);
        assert_int_equal(pl->L.q_heads, 4);
        assert_int_equal(pl->L.d_head, 16);
        /* X and the extended mask prepared once outside the layers */
        assert_int_equal(pl->L.n_inputs, 2);
        assert_int_equal(pl->L.inputs[1].role, MHA_ROLE_ATTN_MASK);
        assert_true(pl->n_nodes > 10);
    }
    /* both layers read the same mask value, computed by interpreted steps */
    assert_int_equal(P->layers[0].in_values[1], P->layers[1].in_values[1]);
    /* layer 1 reads what follows layer 0, never layer 0's own output */
    assert_int_not_equal(P->layers[1].in_values[0], P->layers[0].out_value);
    /* no node runs twice: interpreted nodes are no layer's */
    for (size_t s = 0; s < P->n_steps; s++) {
        if (P->steps[s].kind != PLAN_STEP_INTERP) continue;
        for (size_t i = 0; i < P->n_layers; i++)
            for (size_t k = 0; k < P->layers[i].n_nodes; k++)
                assert_int_not_equal(P->steps[s].index, P->layers[i].nodes[k]);
    }
    plan_free(P);
}

/* GPT-2: fused QKV, a causal mask from a tril buffer through Where with
 * the most negative float: both layers fused and causal. */
static void test_causal_decoder_layers(void **state) {
    (void)state;
    plan *P = build(GPT2, 0);
    assert_int_equal(P->n_layers, 2);
    for (size_t i = 0; i < 2; i++) {
        assert_true(P->layers[i].recognised);
        assert_true(P->layers[i].L.causal);
        assert_int_equal(P->layers[i].L.n_inputs, 1); /* the mask comes from the buffer */
    }
    plan_free(P);
}

/* Every interpreted step makes something a later step or a graph output
 * reads. GPT-2's fused steps know they are causal: the Slices of the tril
 * buffer [1, 1, 32, 32] and the Shape / Gather / Concat chains sizing the
 * layers' reshapes are dropped, and the buffer goes with the release. */
static void test_dead_steps_dropped(void **state) {
    (void)state;
    plan *P = build(GPT2, 0);
    const ir_graph *g = P->g;
    size_t interpreted = 0;
    for (size_t s = 0; s < P->n_steps; s++) {
        if (P->steps[s].kind != PLAN_STEP_INTERP) continue;
        const ir_node *n = &g->nodes[P->steps[s].index];
        int read = 0;
        for (size_t k = 0; k < n->n_outputs; k++)
            read |= n->outputs[k] >= 0 && P->last_step[n->outputs[k]] > (int)s;
        if (!read) fail_msg("step %zu (%s) makes nothing anyone reads", s, n->op_type);
        assert_string_not_equal(n->op_type, "Slice");
        interpreted++;
    }
    /* the embeddings' Gathers, positions and their sum, not the layers' */
    assert_true(interpreted < 16);
    int buffer = -1;
    for (size_t v = 0; v < g->n_values; v++)
        if (g->values[v].init && g->values[v].init->rank == 4) buffer = (int)v;
    assert_true(buffer >= 0);
    mha_error err;
    assert_int_equal(plan_release_weights(P, &err), MHA_OK);
    assert_null(g->values[buffer].init);
    plan_free(P);
}

/* Hugging Face's GPT-2: each projection (Conv1D) a Gemm over the rows
 * flattened to [B * S, D] by a Reshape whose shape is read from the 3-D
 * value before it: the layer starts at that 3-D value, with and without
 * dynamic axes. */
static void test_projection_over_flat_rows(void **state) {
    (void)state;
    const char *names[] = {"v_gpt2_hf_lastlogits_op17", "v_gpt2_hf_static_b1_s8_op14"};
    for (size_t n = 0; n < 2; n++) {
        plan *P = build(names[n], 0);
        assert_int_equal(P->n_layers, 2);
        for (size_t i = 0; i < 2; i++) {
            const plan_layer *pl = &P->layers[i];
            if (!pl->recognised) fail_msg("%s layer %zu: %s", names[n], i, pl->reason);
            assert_true(pl->L.causal);
            assert_int_equal(pl->L.inputs[0].rank, 3); /* X, not its flat rows */
        }
        plan_free(P);
    }
}

/* Hugging Face's GPT-2 and LLaMA exported with use_cache=True and no past
 * input: each layer's new K (after the head split and rotary, before the
 * GQA repeat) and V are graph outputs, taken as the present keys and values
 * of an empty cache; every layer fuses (verified) and writes them. */
static void test_present_without_past(void **state) {
    (void)state;
    const char *names[] = {"f9_gpt2_ids_mask_present_dyn_op14",
                           "f9_llama_ids_mask_present_dyn_op17"};
    for (size_t n = 0; n < 2; n++) {
        plan *P = build(names[n], 0);
        for (size_t i = 0; i < P->n_layers; i++) {
            const plan_layer *pl = &P->layers[i];
            if (!pl->recognised) fail_msg("%s layer %zu: %s", names[n], i, pl->reason);
            assert_int_equal(pl->L.n_outputs, 3);
            assert_int_equal(pl->L.outputs[1].role + pl->L.outputs[2].role,
                             MHA_ROLE_PRESENT_KEY + MHA_ROLE_PRESENT_VALUE);
            assert_false(layer_has_cache(&pl->L));
            assert_true(layer_keeps_cache(&pl->L));
        }
        plan_free(P);
    }
}

/* The same GPT-2 with its padding mask made once outside the layers:
 * (1 - m) * finfo.min as a float [B, 1, 1, S] added after the causal
 * torch.where. Its static 1 on the query axis broadcasts (the recogniser
 * probed the layer with one query, and saw no causal pattern); the two
 * finfo.min terms add up to -inf on a padded future key (causal_finite 1,
 * read by probing the mask with finfo.min); the plan verified. */
static void test_extended_mask_beside_causal_where(void **state) {
    (void)state;
    plan *P = build("v_gpt2_hf_conv1d_mask_op13", 0);
    assert_int_equal(P->n_layers, 2);
    for (size_t i = 0; i < 2; i++) {
        const plan_layer *pl = &P->layers[i];
        if (!pl->recognised) fail_msg("layer %zu: %s", i, pl->reason);
        assert_true(pl->L.causal);
        assert_int_equal(pl->L.causal_finite, 1);
        assert_int_equal(pl->L.inputs[1].role, MHA_ROLE_ATTN_MASK);
    }
    plan_free(P);
}

/* LED's encoder layers are two attentions (Longformer's local one and the
 * global rows' own) merged by a Where before one output projection: each
 * is refused naming the other core, not carved empty ("no attention found
 * ... (0 nodes)" once); the decoder's four layers fuse. */
static void test_partition_attentions_merged_before_projection(void **state) {
    (void)state;
    plan *P = build_n("z10_led_localglobal_encdec_op14", 0, 8);
    assert_int_equal(P->n_layers, 8);
    size_t fused = 0;
    for (size_t i = 0; i < P->n_layers; i++) {
        const plan_layer *pl = &P->layers[i];
        fused += (size_t)pl->recognised;
        if (!pl->recognised && !strstr(pl->reason, "reads another attention core's output"))
            fail_msg("layer %zu: %s", i, pl->reason);
    }
    assert_int_equal(fused, 4);
    plan_free(P);
}

/* ViT: nn.MultiheadAttention (batch first) reads the shape of its input X
 * outside the layer too (to put the output back in batch-first order);
 * the partition hands the layer to the recogniser anyway (the shape of X
 * is known outside), and the patch-embedding Conv is a GEMM step. */
static void test_partition_shape_of_x_read_outside(void **state) {
    (void)state;
    plan *P = build("vit_preln_l2_d64_h4_p4", 0);
    assert_int_equal(P->n_layers, 2);
    for (size_t i = 0; i < 2; i++)
        if (!P->layers[i].recognised) {
            assert_null(strstr(P->layers[i].reason, "inside it is also read"));
            /* a refused layer: its nodes run interpreted, none is a step's */
            assert_true(P->layers[i].reason[0] != '\0');
            assert_int_equal(P->layers[i].n_nodes, 0);
        }
    int conv = 0;
    for (size_t s = 0; s < P->n_steps; s++)
        conv += P->steps[s].kind == PLAN_STEP_GEMM &&
                strcmp(P->g->nodes[P->gemms[P->steps[s].index].node].op_type, "Conv") == 0;
    assert_int_equal(conv, 1);
    plan_free(P);
}

/* Whisper's front end: both Conv1d (kernel 3, padding 1; the second of
 * stride 2) are GEMM steps over their receptive fields, each with the tanh
 * GELU after it as its epilogue; no Conv is interpreted, and the plan
 * verifies against the interpreter (the build). wav2vec2's feature Convs
 * (kernel 10 stride 5, kernel 3 stride 2) too, and its grouped positional
 * Conv (a GEMM per group since session 19). Before, only a Conv of kernel =
 * stride was a GEMM step, without its GELU. */
static void test_general_conv_gemm_steps(void **state) {
    (void)state;
    static const struct {
        const char *name;
        int general, interpreted;
    } cases[] = {{"whisper_enc_hf_l2_d32_h4", 2, 0}, {"z3_wav2vec2_fixedlen_op14", 3, 0}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        plan *P = build(cases[c].name, 0);
        int general = 0, interpreted = 0, gelu = 0;
        for (size_t s = 0; s < P->n_steps; s++) {
            const plan_step *st = &P->steps[s];
            if (st->kind == PLAN_STEP_INTERP)
                interpreted += strcmp(P->g->nodes[st->index].op_type, "Conv") == 0;
            if (st->kind != PLAN_STEP_GEMM || P->gemms[st->index].conv_kh == 0) continue;
            const plan_gemm *pg = &P->gemms[st->index];
            gelu += pg->n_ep_nodes > 0;
            if (!pg->conv_general) continue;
            assert_string_equal(P->g->nodes[pg->node].op_type, "Conv");
            assert_int_equal(pg->conv_kh, 1);
            assert_true(strncmp(pg->desc, "conv1d k", 8) == 0);
            general++;
        }
        assert_int_equal(general, cases[c].general);
        assert_int_equal(interpreted, cases[c].interpreted);
        /* a GELU after each of Whisper's Convs and after wav2vec2's second
         * and third (its third, kernel 2 stride 2, a patch Conv; its first
         * has a GroupNorm after it) */
        assert_int_equal(gelu, 2);
        plan_free(P);
    }
}

/* Layers that end at their merged heads, with no output projection of
 * their own: LeViT's (a hard swish between the merged heads and the
 * projection; they ran interpreted, no layer form had an activation
 * there) and the heads of the "Let's build GPT" lecture's GPT (a module a
 * head, each with its own softmax, concatenated before one projection;
 * refused as attentions merged before one projection). Each is a layer
 * whose output projection is the identity; the hard swish, the Concat and
 * the projection are steps of the plan after it, which verifies against
 * the interpreter (the build). */
static void test_layers_ending_at_merged_heads(void **state) {
    (void)state;
    static const struct {
        const char *name;
        size_t layers;
        int64_t heads;
    } cases[] = {{"z8_levit_attnbias_hardswish_op14", 2, 4},
                 {"z13_gpt_karpathy_headlist_op14", 8, 1}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        plan *P = build_n(cases[c].name, 0, cases[c].layers);
        assert_int_equal(P->n_layers, cases[c].layers);
        for (size_t li = 0; li < P->n_layers; li++) {
            const layer *L = &P->layers[li].L;
            if (!P->layers[li].recognised)
                fail_msg("%s layer %zu: %s", cases[c].name, li, P->layers[li].reason);
            assert_int_equal(L->q_heads, cases[c].heads);
            const int64_t w = L->q_heads * layer_dv(L);
            assert_int_equal(layer_dout(L), w);
            for (int64_t i = 0; L->wo && i < w * w; i++)
                assert_true(L->wo[i] == (i / w == i % w ? 1.0f : 0.0f));
            assert_null(L->bo);
        }
        plan_free(P);
    }
}

/* BERT: W1 and W2 of both layers (MatMul + bias Add fused) and the pooler
 * (a Gemm with transB, its bias as C) become GEMM steps. */
/* GPT-NeoX reads the sizes of its head reshape from the block's input x,
 * outside the layer (X is LayerNorm(x)): taken as X's, both layers fuse,
 * with their partial rotary (2 of 8 dims) and the cos / sin computed once
 * in the graph as inputs. */
static void test_partition_sizes_read_outside(void **state) {
    (void)state;
    plan *P = build("neox_parallel_l2_d32_h4_rot25", 0);
    assert_int_equal(P->n_layers, 2);
    for (size_t i = 0; i < 2; i++) {
        if (!P->layers[i].recognised) fail_msg("layer %zu: %s", i, P->layers[i].reason);
        assert_int_equal(P->layers[i].L.rotary, MHA_ROTARY_HALF);
        assert_int_equal(P->layers[i].L.rotary_dim, 2);
        assert_int_equal(P->layers[i].L.d_head, 8);
    }
    plan_free(P);
}

/* Sizes read from the shape of data, the same at both probes, folded
 * (shape_fold.c): nn.TransformerDecoder's cross-attention slices its packed
 * in_proj_weight by query.size(-1) (torch 1.13), so its Q projection has a
 * constant weight only then -- all four layers fuse, the cross ones with
 * their own key/value input; DeiT's reshape [B, N, 3, H, d] reads N from the
 * patch tokens (16) outside the layer, B from them too: both layers fuse. */
static void test_sizes_folded_from_shapes(void **state) {
    (void)state;
    plan *P = build_n("z_torchdec_cross_op17", 0, 4);
    assert_int_equal(P->n_layers, 4);
    for (size_t i = 0; i < 4; i++) {
        if (!P->layers[i].recognised) fail_msg("layer %zu: %s", i, P->layers[i].reason);
        assert_int_equal(P->layers[i].L.cross, (int)(i % 2));
    }
    plan_free(P);
    P = build("z_deit_disttoken_op14", 0);
    for (size_t i = 0; i < 2; i++)
        if (!P->layers[i].recognised) fail_msg("layer %zu: %s", i, P->layers[i].reason);
    plan_free(P);
}

static void test_gemm_steps(void **state) {
    (void)state;
    plan *P = build(BERT, 1);
    assert_int_equal(P->n_gemms, 5);
    int ffn_in = 0, ffn_out = 0, pooler = 0;
    for (size_t i = 0; i < P->n_gemms; i++) {
        const plan_gemm *g = &P->gemms[i];
        assert_non_null(g->bias);
        const char *op = P->g->nodes[g->node].op_type;
        if (strcmp(op, "MatMul") == 0) assert_true(g->bias_node >= 0);
        ffn_in += g->K == 64 && g->N == 128;
        ffn_out += g->K == 128 && g->N == 64;
        pooler += strcmp(op, "Gemm") == 0 && g->W_owned != NULL;
    }
    assert_int_equal(ffn_in, 2);
    assert_int_equal(ffn_out, 2);
    assert_int_equal(pooler, 1);
    plan_free(P);
}

static int has_op(const plan_ew_prog *p, plan_ew_code code) {
    for (int i = 0; i < p->n_ops; i++)
        if (p->ops[i].code == code) return 1;
    return 0;
}

/* The elementwise runs after GEMMs become epilogues: GELU (erf in BERT,
 * tanh in GPT-2) after W1, the residual add after W2, tanh after the
 * pooler; applied, the erf GELU program is x/2 (1 + erf(x/sqrt 2)). */
static void test_gemm_epilogues(void **state) {
    (void)state;
    plan *P = build(BERT, 1);
    int gelu = 0, residual = 0, pooler_tanh = 0;
    const plan_ew_prog *gelu_prog = NULL;
    for (size_t i = 0; i < P->n_gemms; i++) {
        const plan_gemm *g = &P->gemms[i];
        if (g->N == 128 && has_op(&g->epilogue, PLAN_EW_ERF)) {
            gelu++;
            gelu_prog = &g->epilogue;
            assert_int_equal(g->epilogue.ext_value, -1);
            /* the fused form a plugin runs: GELU (erf), no residual */
            assert_int_equal(g->fused_act, MHA_ACT_GELU_ERF);
            assert_int_equal(g->fused_residual, 0);
        }
        if (g->N == 64 && g->K == 128 && g->epilogue.ext_value >= 0) {
            residual++;
            assert_int_equal(g->fused_act, MHA_ACT_NONE);
            assert_int_equal(g->fused_residual, 1);
        }
        if (g->W_owned && has_op(&g->epilogue, PLAN_EW_TANH)) {
            pooler_tanh++;
            assert_int_equal(g->fused_act, -1); /* tanh alone: no plugin form, the host's */
        }
    }
    assert_int_equal(gelu, 2);
    assert_int_equal(residual, 2);
    assert_int_equal(pooler_tanh, 1);
    float x[300];
    for (int i = 0; i < 300; i++)
        x[i] = (float)(i - 150) / 37.0f;
    float y[300];
    memcpy(y, x, sizeof x);
    plan_ew_apply(gelu_prog, y, NULL, 300, 100, 0);
    for (int i = 0; i < 300; i++)
        assert_float_equal(y[i], 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0))), 1e-6);
    plan_free(P);
    P = build(GPT2, 1);
    int tanh_gelu = 0;
    for (size_t i = 0; i < P->n_gemms; i++)
        if (has_op(&P->gemms[i].epilogue, PLAN_EW_TANH) &&
            has_op(&P->gemms[i].epilogue, PLAN_EW_POW)) {
            tanh_gelu++;
            assert_int_equal(P->gemms[i].fused_act, MHA_ACT_GELU_TANH);
        }
    assert_int_equal(tanh_gelu, 2);
    plan_free(P);
}

/* The decomposed LayerNorms (embeddings, two per layer) become norm steps
 * with their gamma, beta and eps; a row comes out with mean beta and the
 * spread gamma gives it. */
static void test_norm_steps(void **state) {
    (void)state;
    plan *P = build(BERT, 1);
    assert_int_equal(P->n_norms, 5);
    size_t steps = 0, in_step = 0;
    for (size_t s = 0; s < P->n_steps; s++)
        steps += P->steps[s].kind == PLAN_STEP_NORM;
    for (size_t i = 0; i < P->n_norms; i++)
        in_step += P->norms[i].in_step;
    /* the norm after each FFN is its second GEMM's, the one after each
     * attention layer the layer's (test_plan_fuse) */
    assert_int_equal(in_step, 4);
    assert_int_equal(steps, 5 - in_step);
    size_t with_residual = 0;
    for (size_t i = 0; i < P->n_norms; i++) {
        const plan_norm *nm = &P->norms[i];
        assert_int_equal(nm->D, 64);
        assert_non_null(nm->gamma);
        assert_non_null(nm->beta);
        assert_float_equal(nm->eps, 1e-12, 1e-15);
        /* 2 ReduceMean, Sub, Pow, Add, Sqrt, Div, Mul, Add; and the residual Add
         * before it (the embeddings' sum; each attention layer's x + attn(x)
         * is the layer step's, test_attention_residual) */
        assert_int_equal(nm->n_nodes, nm->res_value >= 0 ? 10 : 9);
        assert_int_equal(nm->n_reads, nm->res_value >= 0 ? 2 : 1);
        with_residual += nm->res_value >= 0;
    }
    assert_int_equal(with_residual, 1);
    plan_norm one = P->norms[0];
    one.res_value = -1;
    {
        /* the LayerNormalization op (opset 17): one node a step, two with the
         * residual Add */
        plan *Q = build_n("minilm_postln_l3_d48_h6", 1, 3);
        assert_int_equal(Q->n_norms, 7);
        for (size_t i = 0; i < Q->n_norms; i++) {
            const plan_norm *nm = &Q->norms[i];
            assert_int_equal(nm->n_nodes, nm->res_value >= 0 ? 2 : 1);
            assert_string_equal(Q->g->nodes[nm->nodes[nm->n_nodes - 1]].op_type,
                                "LayerNormalization");
            assert_int_equal(Q->norms[i].D, 48);
        }
        plan_free(Q);
    }
    float gamma[64], beta[64], x[2 * 64], y[2 * 64];
    for (int i = 0; i < 64; i++) {
        gamma[i] = 2.0f;
        beta[i] = 0.5f;
    }
    one.gamma = gamma;
    one.beta = beta;
    tu_fill_random(x, 128, 3);
    for (int i = 0; i < 64; i++)
        x[64 + i] = 7.0f; /* a constant row: all beta */
    plan_norm_rows(&one, x, NULL, y, 2);
    double mean = 0.0, sq = 0.0;
    for (int i = 0; i < 64; i++) {
        mean += y[i];
        sq += (y[i] - 0.5) * (y[i] - 0.5);
        assert_float_equal(y[64 + i], 0.5, 1e-6);
    }
    assert_float_equal(mean / 64.0, 0.5, 1e-5);
    assert_float_equal(sq / 64.0, 4.0, 1e-3);
    plan_free(P);
}

/* exec_gemm_run on the built-in scalar backend matches the plain GEMM of
 * the verifier, and is bitwise the same with 1 and 2 threads. */
static void test_exec_gemm_matches_reference(void **state) {
    (void)state;
    plan *P = build(BERT, 1);
    const plan_gemm *g = &P->gemms[0];
    const mha_plugin *p = mha_scalar_plugin_table();
    exec_gemm_weights W;
    memset(&W, 0, sizeof W);
    const float *w[1] = {g->W}, *b[1] = {g->bias};
    int64_t cols[1] = {g->N};
    mha_error err;
    assert_int_equal(
        exec_pack_parts(NULL, p, NULL, MHA_PRECISION_FLOAT32, g->K, 1, w, cols, b, "W", &W, &err),
        MHA_OK);
    const int64_t M = 133; /* more than two row tiles, a ragged last one */
    float *A = malloc(sizeof(float) * (size_t)(M * g->K));
    float *want = malloc(sizeof(float) * (size_t)(M * g->N));
    float *got1 = calloc((size_t)(M * g->N), sizeof(float));
    float *got2 = calloc((size_t)(M * g->N), sizeof(float));
    assert_non_null(A);
    tu_fill_random(A, (size_t)(M * g->K), 7);
    assert_int_equal(plan_reference_backend.gemm(NULL, P, 0, A, M, want, NULL, &err), MHA_OK);
    pool *pl = NULL;
    assert_int_equal(pool_create(NULL, 1, 0, &pl, &err), MHA_OK);
    exec_env env;
    memset(&env, 0, sizeof env);
    env.plugin = p;
    env.pool = pl;
    env.num_threads = 1;
    assert_int_equal(exec_gemm_run(&env, &W, A, M, got1, NULL, NULL, &err), MHA_OK);
    env.num_threads = 2;
    assert_int_equal(exec_gemm_run(&env, &W, A, M, got2, NULL, NULL, &err), MHA_OK);
    assert_memory_equal(got1, got2, sizeof(float) * (size_t)(M * g->N));
    assert_true(tu_max_rel_err(got1, want, (size_t)(M * g->N)) < 1e-5);
    /* unpacked weights are refused, not silently zero */
    exec_gemm_weights none = {.K = g->K, .N = g->N, .packed = NULL, .bias = NULL};
    assert_int_equal(exec_gemm_run(&env, &none, A, M, got1, NULL, NULL, &err), MHA_ERR_INTERNAL);
    pool_destroy(pl);
    exec_weights_free(NULL, &W);
    free(A);
    free(want);
    free(got1);
    free(got2);
    plan_free(P);
}

/* A program made of one op on y (and a scalar): what it classifies as. */
static int classify_one(plan_ew_code code, float scalar, int *residual) {
    plan_ew_prog prog;
    memset(&prog, 0, sizeof prog);
    prog.ext_value = -1;
    prog.n_ops = 1;
    prog.n_regs = 2;
    prog.ops[0] =
        (plan_ew_op){code, 1, {PLAN_EW_REG, 0, 0.0f, NULL}, {PLAN_EW_SCALAR, 0, scalar, NULL}};
    int act;
    plan_ew_classify(&prog, &act, residual);
    return act;
}

/* The fused forms: Relu is ReLU, y * 1 is no activation but not a form
 * (no residual either: the host runs it), Tanh and Exp are none of the
 * activations. */
static void test_epilogue_classify(void **state) {
    (void)state;
    int res = -1;
    assert_int_equal(classify_one(PLAN_EW_RELU, 0.0f, &res), MHA_ACT_RELU);
    assert_int_equal(res, 0);
    assert_int_equal(classify_one(PLAN_EW_TANH, 0.0f, &res), -1);
    assert_int_equal(classify_one(PLAN_EW_EXP, 0.0f, &res), -1);
    assert_int_equal(classify_one(PLAN_EW_MUL, 1.0f, &res), -1);
    /* SiLU as exporters write it: y * Sigmoid(y) */
    plan_ew_prog silu;
    memset(&silu, 0, sizeof silu);
    silu.ext_value = -1;
    silu.n_ops = 3;
    silu.n_regs = 4;
    silu.ops[0] = (plan_ew_op){PLAN_EW_SIGMOID, 1, {PLAN_EW_REG, 0, 0.0f, NULL}, {0}};
    silu.ops[1] =
        (plan_ew_op){PLAN_EW_MUL, 2, {PLAN_EW_REG, 1, 0.0f, NULL}, {PLAN_EW_REG, 0, 0.0f, NULL}};
    /* + the residual, external operand first */
    silu.ops[2] =
        (plan_ew_op){PLAN_EW_ADD, 3, {PLAN_EW_EXT, 0, 0.0f, NULL}, {PLAN_EW_REG, 2, 0.0f, NULL}};
    silu.ext_value = 5;
    int act;
    plan_ew_classify(&silu, &act, &res);
    assert_int_equal(act, MHA_ACT_SILU);
    assert_int_equal(res, 1);
    /* the residual added to something other than the body's value: not a form */
    silu.ops[2].b.reg = 0;
    plan_ew_classify(&silu, &act, &res);
    assert_int_equal(act, -1);
    assert_int_equal(res, 0);
}

/* A plan's GELU and residual steps run through the plugin's epilogue
 * (exec_gemm_fuse) when it declares them, and give what the host's
 * program gives within the bound of test_backends (the reference's own
 * rounding of the exporter's formula against the plugin's); a plugin
 * declaring no epilogue is never handed one. */
static void test_fused_epilogue_matches_host(void **state) {
    (void)state;
    plan *P = build(BERT, 1);
    const mha_plugin *p = mha_scalar_plugin_table();
    exec_env env;
    memset(&env, 0, sizeof env);
    env.plugin = p;
    env.num_threads = 1;
    mha_plugin bare = *p;
    bare.epilogues = 0;
    exec_env env_bare = env;
    env_bare.plugin = &bare;
    int fused_steps = 0;
    for (size_t gi = 0; gi < P->n_gemms; gi++) {
        const plan_gemm *g = &P->gemms[gi];
        if (g->fused_act < 0) continue;
        const int64_t M = 37;
        float *A = malloc(sizeof(float) * (size_t)(M * g->K));
        float *ext = malloc(sizeof(float) * (size_t)(M * g->N));
        float *host = malloc(sizeof(float) * (size_t)(M * g->N));
        float *fused = malloc(sizeof(float) * (size_t)(M * g->N));
        tu_fill_random(A, (size_t)(M * g->K), 40 + gi);
        tu_fill_random(ext, (size_t)(M * g->N), 80 + gi);
        exec_gemm_weights W;
        memset(&W, 0, sizeof W);
        const float *w[1] = {g->W}, *b[1] = {g->bias};
        int64_t cols[1] = {g->N};
        mha_error err;
        assert_int_equal(exec_pack_parts(NULL, p, NULL, MHA_PRECISION_FLOAT32, g->K, 1, w, cols, b,
                                         "W", &W, &err),
                         MHA_OK);
        const float *res = g->fused_residual ? ext : NULL;
        plan_ep ep = {&g->epilogue, res};
        /* the host's program */
        assert_int_equal(exec_gemm_run(&env, &W, A, M, host, NULL, NULL, &err), MHA_OK);
        plan_ep_tile(&ep, host, g->N, 0, M, 0, g->N);
        /* the plugin's epilogue */
        exec_gemm_fused f;
        assert_false(exec_gemm_fuse(&env_bare, g->fused_act, res, g->N, &f));
        assert_true(exec_gemm_fuse(&env, g->fused_act, res, g->N, &f));
        assert_int_equal(exec_gemm_run(&env, &W, A, M, fused, &f, NULL, &err), MHA_OK);
        double scale = 1.0;
        for (int64_t i = 0; i < M * g->N; i++)
            scale = fmax(scale, fabs(host[i]));
        for (int64_t i = 0; i < M * g->N; i++)
            if (!(fabs((double)fused[i] - (double)host[i]) <= 1e-5 * scale))
                fail_msg("gemm %zu element %lld: fused %.9g, host %.9g", gi, (long long)i, fused[i],
                         host[i]);
        fused_steps++;
        exec_weights_free(NULL, &W);
        free(A), free(ext), free(host), free(fused);
    }
    assert_int_equal(fused_steps, 4); /* two GELU, two residual */
    plan_free(P);
}

/* A plan's norm steps through the runtime path (exec_norm_run: row blocks
 * over a pool of 3) give the host reference's bits, with and without the
 * fused residual, on a plugin declaring MHA_OP_NORM and on one that does
 * not (the built-in scalar then); the residual is x + r rounded to float
 * first (a norm of that sum computed apart gives the same bits). */
static void test_norm_steps_on_the_pool(void **state) {
    (void)state;
    plan *P = build(BERT, 1);
    assert_true(P->n_norms > 0);
    const plan_norm *nm = &P->norms[0];
    const int64_t rows = 301;
    const size_t n = (size_t)(rows * nm->D);
    float *x = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
    float *got = malloc(n * sizeof(float)), *res = malloc(n * sizeof(float));
    float *sum = malloc(n * sizeof(float)), *want_res = malloc(n * sizeof(float));
    tu_fill_random(x, n, 5);
    tu_fill_random(res, n, 6);
    for (size_t i = 0; i < n; i++)
        sum[i] = x[i] + res[i];
    assert_int_equal(plan_norm_rows(nm, x, NULL, want, rows), 0);
    assert_int_equal(plan_norm_rows(nm, x, res, want_res, rows), 0);
    assert_int_equal(plan_norm_rows(nm, sum, NULL, got, rows), 0);
    assert_memory_equal(got, want_res, n * sizeof(float));
    pool *pl = NULL;
    mha_error err;
    assert_int_equal(pool_create(NULL, 2, 0, &pl, &err), MHA_OK);
    mha_plugin bare = *mha_scalar_plugin_table();
    bare.ops &= ~MHA_OP_NORM;
    bare.norm = NULL;
    const mha_plugin *plugins[2] = {mha_scalar_plugin_table(), &bare};
    for (int i = 0; i < 2; i++) {
        exec_env env;
        memset(&env, 0, sizeof env);
        env.plugin = plugins[i];
        env.pool = pl;
        env.num_threads = 3;
        mha_norm_args a;
        plan_norm_args(nm, x, res, got, rows, &a);
        memset(got, 0, n * sizeof(float));
        assert_int_equal(exec_norm_run(&env, &a, &err), MHA_OK);
        assert_memory_equal(got, want_res, n * sizeof(float));
        plan_norm_args(nm, x, NULL, got, rows, &a);
        memset(got, 0, n * sizeof(float));
        assert_int_equal(exec_norm_run(&env, &a, &err), MHA_OK);
        assert_memory_equal(got, want, n * sizeof(float));
        /* a refused argument is an error naming the backend, not garbage */
        a.eps = -1.0f;
        assert_int_equal(exec_norm_run(&env, &a, &err), MHA_ERR_PLUGIN);
        assert_non_null(strstr(err.message, "norm failed"));
    }
    pool_destroy(pl);
    free(x), free(want), free(got), free(res), free(sum), free(want_res);
    plan_free(P);
}

static mha_status reference_layer(void *user, const plan *P, size_t li, const mha_tensor *in,
                                  size_t n_in, mha_tensor *out, size_t n_out, const float *res,
                                  mha_error *err) {
    (*(int *)user)++;
    return plan_reference_backend.attention(NULL, P, li, in, n_in, out, n_out, res, err);
}

static void test_values_freed_after_last_step(void **state) {
    (void)state;
    plan *P = build(BERT, 1);
    tensor *in[3] = {0};
    mha_error err;
    assert_int_equal(plan_probe_inputs(P, 1, in, &err), MHA_OK);
    tensor **values = NULL;
    int calls = 0;
    plan_backend be = {
        reference_layer, plan_reference_backend.gemm, &calls, NULL, NULL, NULL, NULL};
    assert_int_equal(plan_exec(P, in, &be, 0, &values, &err), MHA_OK);
    assert_int_equal(calls, 2);
    /* what is left: outputs, inputs, initializers and folded constants */
    for (size_t v = 0; v < P->g->n_values; v++) {
        if (!values[v] || values[v] == plan_const(P, (int)v)) continue;
        int keep = P->g->values[v].graph_input >= 0;
        for (size_t k = 0; k < P->g->n_outputs; k++)
            keep |= P->g->outputs[k] == (int)v;
        if (!keep) fail_msg("value '%s' outlived its last step", P->g->values[v].name);
    }
    plan_values_free(P, in, values);
    for (int i = 0; i < 3; i++)
        tensor_free(in[i]);
    plan_free(P);
}

/* Releasing the weights only attention layers read frees initializers and
 * leaves a plan that computes the same bytes. */
static void test_release_weights(void **state) {
    (void)state;
    plan *P = build(BERT, PLAN_SKIP_VERIFY | PLAN_KEEP_GRAPH);
    tensor *in[3] = {0}, **before = NULL, **after = NULL;
    mha_error err;
    assert_int_equal(P->g->n_outputs, 2);
    assert_int_equal(plan_probe_inputs(P, 0, in, &err), MHA_OK);
    assert_int_equal(plan_exec(P, in, &plan_reference_backend, 0, &before, &err), MHA_OK);
    /* the outputs, kept; the rest of that run freed before the release */
    tensor *want[2];
    for (size_t k = 0; k < 2; k++)
        assert_int_equal(tensor_clone(before[P->g->outputs[k]], &want[k], &err), MHA_OK);
    plan_values_free(P, in, before);
    size_t inits0 = 0, inits1 = 0;
    for (size_t v = 0; v < P->g->n_values; v++)
        inits0 += P->g->values[v].init != NULL;
    assert_int_equal(plan_release_weights(P, &err), MHA_OK);
    for (size_t v = 0; v < P->g->n_values; v++)
        inits1 += P->g->values[v].init != NULL;
    /* Wq, bq, Wk, bk, Wv, bv, Wo, bo of two layers at least */
    assert_true(inits1 + 16 <= inits0);
    assert_int_equal(plan_exec(P, in, &plan_reference_backend, 0, &after, &err), MHA_OK);
    for (size_t k = 0; k < 2; k++) {
        const tensor *a = want[k], *b = after[P->g->outputs[k]];
        assert_int_equal(a->nbytes, b->nbytes);
        assert_memory_equal(a->data, b->data, a->nbytes);
        tensor_free(want[k]);
    }
    plan_values_free(P, in, after);
    for (int i = 0; i < 3; i++)
        tensor_free(in[i]);
    plan_free(P);
}

/* The build frees each recognised layer's initializers as soon as the
 * layer holds its copy (the load holds the weights once, not the graph's
 * beside every layer's): the projection weights and biases of both
 * layers are gone right after plan_build, before plan_release_weights,
 * what stays is what the other steps read, and the plan computes the same
 * bytes as one built keeping every initializer. */
static void test_build_frees_layer_weights(void **state) {
    (void)state;
    plan *P = build(BERT, 0), *K = build(BERT, PLAN_SKIP_VERIFY | PLAN_KEEP_GRAPH);
    size_t inits = 0, kept = 0;
    for (size_t v = 0; v < P->g->n_values; v++) {
        inits += P->g->values[v].init != NULL;
        kept += K->g->values[v].init != NULL;
    }
    assert_true(inits + 16 <= kept); /* Wq, bq, ... Wo, bo of two layers */
    /* nothing a remaining step reads went */
    for (size_t s = 0; s < P->n_steps; s++) {
        if (P->steps[s].kind != PLAN_STEP_INTERP) continue;
        const ir_node *n = &P->g->nodes[P->steps[s].index];
        for (size_t k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= 0 && K->g->values[n->inputs[k]].init)
                assert_non_null(P->g->values[n->inputs[k]].init);
    }
    for (size_t i = 0; i < P->n_gemms; i++)
        assert_non_null(P->gemms[i].W);
    tensor *in[3] = {0}, **a = NULL, **b = NULL;
    mha_error err;
    assert_int_equal(plan_probe_inputs(P, 0, in, &err), MHA_OK);
    assert_int_equal(plan_exec(P, in, &plan_reference_backend, 0, &a, &err), MHA_OK);
    assert_int_equal(plan_exec(K, in, &plan_reference_backend, 0, &b, &err), MHA_OK);
    for (size_t k = 0; k < P->g->n_outputs; k++) {
        const tensor *x = a[P->g->outputs[k]], *y = b[K->g->outputs[k]];
        assert_int_equal(x->nbytes, y->nbytes);
        assert_memory_equal(x->data, y->data, x->nbytes);
    }
    plan_values_free(P, in, a);
    plan_values_free(K, in, b);
    for (int i = 0; i < 3; i++)
        tensor_free(in[i]);
    plan_free(P);
    plan_free(K);
}

/* Runs m on rt (precision prec) over the first probe input of its plan
 * (at most 3 inputs); its outputs (at most 2) are malloc'd into out. */
static mha_status run_probe(mha_runtime *rt, const mha_model *m, int prec, mha_tensor *out,
                            mha_error *err) {
    const size_t n_in = m->plan->g->n_inputs, n_out = m->plan->g->n_outputs;
    tensor *in[3] = {0};
    mha_tensor min[3];
    assert_true(n_in <= 3 && n_out <= 2);
    assert_int_equal(plan_probe_inputs(m->plan, 0, in, err), MHA_OK);
    for (size_t i = 0; i < n_in; i++)
        tensor_as_mha(in[i], &min[i]);
    assert_int_equal(mha_model_output_shapes(m, min, n_in, out, n_out, err), MHA_OK);
    for (size_t k = 0; k < n_out; k++)
        out[k].data = calloc((size_t)mha_tensor_numel(&out[k]), sizeof(float));
    mha_run_options o;
    mha_run_options_init(&o);
    o.precision = prec;
    mha_status st = mha_run(rt, m, min, n_in, out, n_out, &o, err);
    for (size_t i = 0; i < n_in; i++)
        tensor_free(in[i]);
    return st;
}

/* A copy of test model `name` in a temporary folder `dir` (its path);
 * the file's bytes in *bytes (malloc'd) when bytes is not NULL. */
static const char *copy_model(const char *name, const char *dir, unsigned char **bytes,
                              size_t *size) {
    char src[1024];
    snprintf(src, sizeof src, "%s/models/%s/model.onnx", MHA_TEST_DATA, name);
    unsigned char *b = tu_read_file(src, size);
    assert_non_null(b);
    const char *path = tu_path(tu_tmpdir(dir), "model.onnx");
    assert_int_equal(tu_write_file(path, b, *size), 0);
    if (bytes)
        *bytes = b;
    else
        free(b);
    return path;
}

/* A runtime on the scalar backend, one thread. */
static mha_runtime *scalar_runtime(void) {
    mha_runtime *rt = NULL;
    mha_runtime_options ro;
    mha_error err;
    mha_runtime_options_init(&ro);
    ro.backend = "scalar";
    ro.num_threads = 1;
    ro.no_env = 1;
    assert_int_equal(mha_runtime_create(&ro, &rt, &err), MHA_OK);
    return rt;
}

/* A model loaded from a file frees its unpacked GEMM weights after the
 * first packing; a packing for another precision builds them from the
 * file again and computes what a fresh model does; a file changed in
 * between is refused, naming it. */
static void test_gemm_weights_released_after_packing(void **state) {
    (void)state;
    char src[1024];
    size_t size;
    const char *path = copy_model(BERT, "plan_release", NULL, &size);
    void *bytes;
    mha_error err;
    mha_model *m = NULL, *fresh = NULL;
    mha_runtime *rt = scalar_runtime();
    assert_int_equal(mha_model_load_file(path, NULL, &m, &err), MHA_OK);
    assert_int_equal(mha_model_load_file(path, NULL, &fresh, &err), MHA_OK);
    mha_tensor a[2], b[2], c[2];
    assert_int_equal(mha_model_arena_bytes(m), 0); /* planned by the first run */
    assert_int_equal(run_probe(rt, m, MHA_PRECISION_FLOAT32, a, &err), MHA_OK);
    /* the fused steps' outputs: at least the last attention layer's [B, S, D] */
    const size_t one = (size_t)(m->plan->probe_sizes[0][0] * m->plan->probe_sizes[0][1] *
                                m->plan->layers[1].L.d_model) *
                       sizeof(float);
    assert_true(mha_model_arena_bytes(m) >= one);
    size_t released = 0;
    for (size_t i = 0; i < m->plan->n_gemms; i++)
        released += m->plan->gemms[i].W == NULL;
    assert_int_equal(released, m->plan->n_gemms); /* every one: nothing else reads them */
    /* and the projections of every attention layer: packed, so not kept */
    assert_int_equal(m->plan->n_layers, 2);
    for (size_t i = 0; i < m->plan->n_layers; i++) {
        const plan_layer *pl = &m->plan->layers[i];
        assert_true(pl->recognised && pl->w_released);
        assert_true(!pl->L.wq && !pl->L.wk && !pl->L.wv && !pl->L.wo);
    }
    assert_true(plan_weight_bytes(m->plan) < plan_weight_bytes(fresh->plan));
    /* another precision: packed again from the file */
    assert_int_equal(run_probe(rt, m, MHA_PRECISION_BFLOAT16, b, &err), MHA_OK);
    assert_int_equal(run_probe(rt, fresh, MHA_PRECISION_BFLOAT16, c, &err), MHA_OK);
    for (int k = 0; k < 2; k++) {
        assert_memory_equal(b[k].data, c[k].data, (size_t)mha_tensor_numel(&b[k]) * sizeof(float));
        free(a[k].data);
        free(b[k].data);
        free(c[k].data);
    }
    mha_model_free(m);
    /* the file replaced by another model before the second packing */
    assert_int_equal(mha_model_load_file(path, NULL, &m, &err), MHA_OK);
    assert_int_equal(run_probe(rt, m, MHA_PRECISION_FLOAT32, a, &err), MHA_OK);
    snprintf(src, sizeof src, "%s/models/minilm_postln_l3_d48_h6/model.onnx", MHA_TEST_DATA);
    bytes = tu_read_file(src, &size);
    assert_non_null(bytes);
    assert_int_equal(tu_write_file(path, bytes, size), 0);
    free(bytes);
    assert_int_equal(run_probe(rt, m, MHA_PRECISION_BFLOAT16, b, &err), MHA_ERR_IO);
    assert_non_null(strstr(err.message, "changed"));
    for (int k = 0; k < 2; k++) {
        free(a[k].data);
        free(b[k].data);
    }
    mha_model_free(m);
    mha_model_free(fresh);
    mha_runtime_destroy(rt);
}

/* GPT-2 with its head tied to the token embedding and read by a Gemm with
 * transB (F.linear on the last row): the table stays for the Gather, the
 * step's transposed copy of it goes once packed, and a second packing
 * (another precision) takes it from the file again. */
static void test_tied_gemm_copy_released(void **state) {
    (void)state;
    const char *path = copy_model("h_gpt2_tied_lastrow_gemm_op14", "plan_tied", NULL, &(size_t){0});
    mha_error err;
    mha_model *m = NULL, *fresh = NULL;
    mha_runtime *rt = scalar_runtime();
    assert_int_equal(mha_model_load_file(path, NULL, &m, &err), MHA_OK);
    assert_int_equal(mha_model_load_file(path, NULL, &fresh, &err), MHA_OK);
    const plan *P = m->plan;
    const plan_gemm *head = NULL;
    for (size_t i = 0; i < P->n_gemms; i++)
        if (P->gemms[i].W_owned) head = &P->gemms[i];
    assert_non_null(head); /* the only transposed weight: the tied table */
    const int table = P->g->nodes[head->node].inputs[1];
    assert_non_null(P->g->values[table].init);
    mha_tensor a[1], b[1], c[1];
    assert_int_equal(run_probe(rt, m, MHA_PRECISION_FLOAT32, a, &err), MHA_OK);
    assert_null(head->W_owned);
    assert_null(head->W);
    assert_non_null(P->g->values[table].init); /* the Gather reads it */
    assert_int_equal(run_probe(rt, m, MHA_PRECISION_BFLOAT16, b, &err), MHA_OK);
    assert_int_equal(run_probe(rt, fresh, MHA_PRECISION_BFLOAT16, c, &err), MHA_OK);
    assert_memory_equal(b[0].data, c[0].data, (size_t)mha_tensor_numel(&b[0]) * sizeof(float));
    free(a[0].data);
    free(b[0].data);
    free(c[0].data);
    mha_model_free(m);
    mha_model_free(fresh);
    mha_runtime_destroy(rt);
}

/* The first place of needle [n] in hay [size], or NULL. */
static const unsigned char *find_bytes(const unsigned char *hay, size_t size, const void *needle,
                                       size_t n) {
    for (size_t i = 0; n && i + n <= size; i++)
        if (memcmp(hay + i, needle, n) == 0) return hay + i;
    return NULL;
}

/* A released attention weight is checked too: the file changed in one
 * byte of a layer's W_q (nothing else differs, GEMM steps alike) before a
 * second packing is refused rather than packed. */
static void test_layer_weights_checked_on_reload(void **state) {
    (void)state;
    size_t size;
    unsigned char *bytes;
    const char *path = copy_model(BERT, "plan_release_layer", &bytes, &size);
    mha_error err;
    mha_model *m = NULL;
    mha_runtime *rt = scalar_runtime();
    assert_int_equal(mha_model_load_file(path, NULL, &m, &err), MHA_OK);
    /* where layer 1's W_q sits in the file: its bytes as the initializer
     * holds them ([d_model, d_model], as the layer keeps them) */
    const layer *L = &m->plan->layers[1].L;
    const size_t wq_bytes = (size_t)(L->d_model * L->q_heads * L->d_head) * sizeof(float);
    const unsigned char *at = find_bytes(bytes, size, L->wq, wq_bytes);
    assert_non_null(at);
    mha_tensor a[2], b[2];
    assert_int_equal(run_probe(rt, m, MHA_PRECISION_FLOAT32, a, &err), MHA_OK);
    assert_true(m->plan->layers[1].w_released);
    bytes[(size_t)(at - bytes) + wq_bytes / 2] ^= 0x01; /* a low mantissa bit */
    assert_int_equal(tu_write_file(path, bytes, size), 0);
    assert_int_equal(run_probe(rt, m, MHA_PRECISION_BFLOAT16, b, &err), MHA_ERR_IO);
    assert_non_null(strstr(err.message, "changed"));
    for (int k = 0; k < 2; k++) {
        free(a[k].data);
        free(b[k].data);
    }
    free(bytes);
    mha_model_free(m);
    mha_runtime_destroy(rt);
}

/* Runs P through plan_run with the reference backend on probe p's inputs;
 * outputs malloc'd into out[2]. */
static void plan_run_probe(const plan *P, int p, mha_tensor *out) {
    tensor *in[3] = {0};
    mha_tensor min[3];
    mha_error err;
    assert_int_equal(plan_probe_inputs(P, p, in, &err), MHA_OK);
    for (int i = 0; i < 3; i++)
        tensor_as_mha(in[i], &min[i]);
    assert_int_equal(plan_output_shapes(P, min, 3, out, 2, &err), MHA_OK);
    for (int k = 0; k < 2; k++)
        out[k].data = calloc((size_t)mha_tensor_numel(&out[k]), sizeof(float));
    if (plan_run(P, min, 3, out, 2, &plan_reference_backend, &err) != MHA_OK)
        fail_msg("plan_run: %s", err.message);
    for (int i = 0; i < 3; i++)
        tensor_free(in[i]);
}

/* The first run at some input sizes plans an arena for the outputs of the
 * fused steps: smaller than all of them together (values of disjoint
 * lifetimes share bytes), never sharing between values alive at one step;
 * the runs through it give the same bytes. Other sizes get their own. The
 * graph outputs a fused step makes are not in it: the step writes them
 * into the caller's output buffers (held once, not in the arena and again
 * in the caller's copy). */
static void test_arena_by_lifetimes(void **state) {
    (void)state;
    plan *P = build(BERT, 1);
    mha_tensor a[2], b[2], c[2];
    plan_run_probe(P, 0, a);
    assert_non_null(P->arenas);
    assert_null(P->arenas->next);
    const plan_arena *A = P->arenas;
    size_t all = 0, placed = 0;
    for (size_t v = 0; v < P->g->n_values; v++)
        if (A->offset[v] != SIZE_MAX) {
            all += A->size[v];
            placed++;
            assert_true(A->offset[v] + A->size[v] <= A->bytes);
        }
    /* every GEMM, norm, add, gather and attention output of the model but the graph
     * outputs (BERT's last hidden state, made by a norm step) */
    size_t direct = 0;
    for (size_t k = 0; k < P->g->n_outputs; k++) {
        int v = P->g->outputs[k];
        for (size_t i = 0; i < P->n_norms; i++)
            direct += !P->norms[i].in_step && P->norms[i].out_value == v;
        for (size_t i = 0; i < P->n_gemms; i++)
            direct += P->gemms[i].out_value == v;
        assert_true(A->offset[v] == SIZE_MAX);
    }
    assert_true(direct >= 1);
    size_t norm_steps = 0; /* a norm in a GEMM's epilogue has no output of its own */
    for (size_t i = 0; i < P->n_norms; i++)
        norm_steps += !P->norms[i].in_step;
    assert_int_equal(placed, P->n_gemms + norm_steps + P->n_adds + P->n_gathers + P->n_concats + 2 -
                                 direct);
    assert_true(A->bytes < all);
    plan_run_probe(P, 0, b); /* through the arena */
    plan_run_probe(P, 0, c);
    for (int k = 0; k < 2; k++) {
        size_t bytes = (size_t)mha_tensor_numel(&a[k]) * sizeof(float);
        assert_memory_equal(a[k].data, b[k].data, bytes);
        assert_memory_equal(a[k].data, c[k].data, bytes);
        free(a[k].data);
        free(b[k].data);
        free(c[k].data);
    }
    plan_run_probe(P, 1, a); /* the other probe's sizes: a layout of its own */
    assert_non_null(P->arenas->next);
    for (int k = 0; k < 2; k++)
        free(a[k].data);
    plan_free(P);
}

static void test_output_shapes_follow_inputs(void **state) {
    (void)state;
    plan *P = build(BERT, 1);
    int64_t ids[3 * 6] = {0};
    mha_tensor in[3], out[2];
    for (int i = 0; i < 3; i++) {
        memset(&in[i], 0, sizeof in[i]);
        in[i].dtype = MHA_DTYPE_INT64;
        in[i].rank = 2;
        in[i].shape[0] = 3;
        in[i].shape[1] = 6;
        in[i].data = ids;
    }
    mha_error err;
    assert_int_equal(plan_output_shapes(P, in, 3, out, 2, &err), MHA_OK);
    assert_int_equal(out[0].rank, 3);
    assert_int_equal(out[0].shape[0], 3);
    assert_int_equal(out[0].shape[1], 6);
    assert_int_equal(out[0].shape[2], 64);
    assert_int_equal(out[1].rank, 2);
    assert_int_equal(out[1].shape[0], 3);
    assert_int_equal(out[1].shape[1], 64);
    /* the mask's sequence axis must be the ids' */
    in[1].shape[1] = 5;
    assert_int_equal(plan_output_shapes(P, in, 3, out, 2, &err), MHA_ERR_SHAPE);
    in[1].shape[1] = 6;
    in[2].dtype = MHA_DTYPE_FLOAT32;
    assert_int_equal(plan_output_shapes(P, in, 3, out, 2, &err), MHA_ERR_DTYPE);
    plan_free(P);
}

/* ViT's class token concatenated before the patches inside the graph: the
 * output has N + 1 tokens, an input axis plus a constant, and the layer
 * after the Concat is still one fused attention step. */
static void test_output_axis_with_offset(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/families/vit_clstoken_op17/model.onnx", MHA_TEST_DATA);
    ir_graph *g = NULL;
    mha_error err;
    mha_error_clear(&err);
    if (ir_load_file(&g_alloc, path, NULL, &g, &err) != MHA_OK) fail_msg("%s", err.message);
    plan *P = NULL;
    if (plan_build(&g_alloc, &g, 0, &P, &err) != MHA_OK) fail_msg("plan: %s", err.message);
    assert_int_equal(P->n_layers, 1);
    assert_true(P->layers[0].recognised);
    float x[2 * 5 * 48] = {0};
    mha_tensor in, out;
    memset(&in, 0, sizeof in);
    in.dtype = MHA_DTYPE_FLOAT32;
    in.rank = 3;
    in.shape[0] = 2;
    in.shape[1] = 5;
    in.shape[2] = 48;
    in.data = x;
    assert_int_equal(plan_output_shapes(P, &in, 1, &out, 1, &err), MHA_OK);
    assert_int_equal(out.rank, 3);
    assert_int_equal(out.shape[0], 2);
    assert_int_equal(out.shape[1], 6);
    assert_int_equal(out.shape[2], 48);
    plan_free(P);
}

/* The rule floor((mul x + offset) / div) fitted on the three sizes a
 * symbolic axis takes (its two probes and the grown one) is the Conv /
 * pooling / Concat formula it came from at every size. */
static int64_t conv_len(int64_t x, int64_t k, int64_t s, int64_t pad, int ceil_mode) {
    const int64_t n = x + 2 * pad - k;
    return (ceil_mode ? (n + s - 1) / s : n / s) + 1;
}

static void test_dim_rule_fit(void **state) {
    (void)state;
    /* k, stride, pad, ceil mode; mul and offset for the rest */
    const struct {
        int64_t k, s, pad;
        int ceil_mode;
        int64_t mul, add; /* k 0: y = mul x + add */
    } cases[] = {
        {3, 2, 1, 0, 0, 0},                     /* Whisper's second Conv1d: ceil(x / 2) */
        {3, 1, 1, 0, 0, 0},                     /* the first: x */
        {2, 2, 0, 0, 0, 0},                     /* MaxPool k2 s2: floor(x / 2) */
        {2, 2, 0, 1, 0, 0},                     /* the same, ceil_mode */
        {5, 2, 2, 0, 0, 0}, {0, 0, 0, 0, 1, 1}, /* a class token: x + 1 */
        {0, 0, 0, 0, 2, 0},                     /* an upsampling: 2 x */
    };
    const int64_t xs[2][3] = {{2, 3, 4}, {3, 5, 6}}; /* the first two symbolic axes */
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int a = 0; a < 2; a++) {
            int64_t y[3];
            for (int p = 0; p < 3; p++)
                y[p] = cases[c].k ? conv_len(xs[a][p], cases[c].k, cases[c].s, cases[c].pad,
                                             cases[c].ceil_mode)
                                  : cases[c].mul * xs[a][p] + cases[c].add;
            plan_dim_rule r;
            memset(&r, 0, sizeof r);
            r.fixed = -1;
            assert_true(plan_dim_fit(xs[a], y, 3, 1, &r));
            for (int64_t x = 4; x < 200; x++) {
                int64_t want = cases[c].k ? conv_len(x, cases[c].k, cases[c].s, cases[c].pad,
                                                     cases[c].ceil_mode)
                                          : cases[c].mul * x + cases[c].add;
                if (plan_dim_apply(&r, x) != want)
                    fail_msg("case %zu, axis %d: at %lld the rule (%lld x + %lld) / %lld gives "
                             "%lld, want %lld",
                             c, a, (long long)x, (long long)r.mul, (long long)r.offset,
                             (long long)r.div, (long long)plan_dim_apply(&r, x), (long long)want);
            }
        }
    /* two probes alone: offset rules only; a shrinking size fits nothing */
    plan_dim_rule r;
    const int64_t x2[2] = {3, 5}, half[2] = {2, 3}, down[3] = {5, 3, 2};
    assert_false(plan_dim_fit(x2, half, 2, 0, &r));
    assert_false(plan_dim_fit(xs[1], down, 3, 1, &r));
    /* the division rounds down below zero too */
    plan_dim_rule neg = {.fixed = -1, .mul = 1, .div = 2, .offset = -3};
    assert_int_equal(plan_dim_apply(&neg, 0), -2);
}

/* Whisper: the stride-2 Conv1d makes the output length ceil(frames / 2),
 * which the two probes (frames 3, 5 -> 2, 3) cannot tell from the batch
 * axis (2, 3): the output follows the frames at every length, and the
 * graph computes that shape at lengths no probe took. */
static void test_output_axis_strided(void **state) {
    (void)state;
    plan *P = build("whisper_enc_l2_d32_h4", 1);
    enum { B = 3, MELS = 8, FMAX = 13 };
    float x[B * MELS * FMAX];
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = (float)((i * 7) % 11) / 11.0f - 0.5f;
    mha_tensor in, out;
    memset(&in, 0, sizeof in);
    in.dtype = MHA_DTYPE_FLOAT32;
    in.rank = 3;
    in.shape[0] = B;
    in.shape[1] = MELS;
    in.data = x;
    mha_error err;
    for (int64_t f = 1; f <= FMAX; f++) {
        in.shape[2] = f;
        assert_int_equal(plan_output_shapes(P, &in, 1, &out, 1, &err), MHA_OK);
        assert_int_equal(out.rank, 3);
        assert_int_equal(out.shape[0], B);
        assert_int_equal(out.shape[1], (f + 1) / 2);
        assert_int_equal(out.shape[2], 32);
        if (f != 8 && f != 13) continue;
        float *y = calloc((size_t)(B * out.shape[1] * 32), sizeof(float));
        out.data = y;
        if (plan_run(P, &in, 1, &out, 1, &plan_reference_backend, &err) != MHA_OK)
            fail_msg("frames %lld: %s", (long long)f, err.message);
        free(y);
    }
    plan_free(P);
}

static void test_probe_inputs_in_range(void **state) {
    (void)state;
    plan *P = build(BERT, 1);
    for (int p = 0; p < PLAN_PROBES; p++) {
        tensor *in[3] = {0};
        mha_error err;
        assert_int_equal(plan_probe_inputs(P, p, in, &err), MHA_OK);
        const int64_t bound[3] = {100, 2, 2}; /* vocabulary, mask, segments */
        int64_t seen_max[3] = {0, 0, 0};
        for (int i = 0; i < 3; i++) {
            assert_int_equal(in[i]->dims[0], P->probe_sizes[p][0]);
            assert_int_equal(in[i]->dims[1], P->probe_sizes[p][1]);
            for (int64_t e = 0; e < tensor_numel(in[i]); e++) {
                int64_t x = tensor_get_i64(in[i], e);
                assert_true(x >= 0 && x < bound[i]);
                if (x > seen_max[i]) seen_max[i] = x;
            }
            tensor_free(in[i]);
        }
        assert_true(seen_max[0] > 1); /* ids are not just a mask */
    }
    plan_free(P);
}

/* A decoder hiding the causal and the padding keys with -inf: a query row
 * inside a left padding sees no key, NaN in the graph. Its Softmax layers
 * give NaN there too (softmax_nan), and the plan's probes hold such rows
 * (the last probe item padded on the left): a layer giving zeros there
 * instead, as the kernels' contract does, is caught. */
static void test_verify_rows_of_hidden_keys(void **state) {
    (void)state;
    plan *P = build("m_gpt_inf_leftpad_nan_op14", PLAN_SKIP_VERIFY | PLAN_KEEP_GRAPH);
    mha_error err;
    mha_error_clear(&err);
    assert_int_equal(P->n_layers, 2);
    for (size_t i = 0; i < 2; i++) {
        if (!P->layers[i].recognised) fail_msg("layer %zu: %s", i, P->layers[i].reason);
        assert_true(P->layers[i].L.softmax_nan);
    }
    if (plan_verify(P, &err) != MHA_OK) fail_msg("%s", err.message);
    P->layers[0].L.softmax_nan = 0; /* zeros on the rows of padding */
    assert_int_equal(plan_verify(P, &err), MHA_ERR_MODEL_VERIFY);
    assert_non_null(strstr(err.message, "differs from the graph"));
    plan_free(P);
}

static void test_verify_catches_a_wrong_layer(void **state) {
    (void)state;
    plan *P = build(BERT, PLAN_SKIP_VERIFY | PLAN_KEEP_GRAPH); /* verified below */
    mha_error err;
    mha_error_clear(&err);
    assert_int_equal(plan_verify(P, &err), MHA_OK);
    P->layers[1].L.wo[5] += 0.25f; /* layer 1 computes something else */
    assert_int_equal(plan_verify(P, &err), MHA_ERR_MODEL_VERIFY);
    assert_non_null(strstr(err.message, "differs from the graph"));
    plan_free(P);
}

/* A ViT's images have a fixed size and only the batch is symbolic: the
 * probes are batches of 1 and 2 (each item is a pass at full size; a
 * symbolic sequence keeps 2 and 3), and the verification at those sizes
 * still catches a wrong layer. */
static void test_verify_batch_of_images(void **state) {
    (void)state;
    plan *T = build(BERT, PLAN_SKIP_VERIFY);
    assert_int_equal(T->probe_sizes[0][0], 2);
    assert_int_equal(T->probe_sizes[1][0], 3);
    plan_free(T);
    plan *P = build("vit_preln_l2_d64_h4_p4", PLAN_SKIP_VERIFY | PLAN_KEEP_GRAPH);
    assert_int_equal(P->n_syms, 1);
    assert_int_equal(P->probe_sizes[0][0], 1);
    assert_int_equal(P->probe_sizes[1][0], 2);
    mha_error err;
    mha_error_clear(&err);
    if (plan_verify(P, &err) != MHA_OK) fail_msg("%s", err.message);
    size_t li = 0;
    while (li < P->n_layers && !P->layers[li].recognised)
        li++;
    assert_true(li < P->n_layers);
    P->layers[li].L.wo[5] += 0.25f;
    assert_int_equal(plan_verify(P, &err), MHA_ERR_MODEL_VERIFY);
    assert_non_null(strstr(err.message, "differs from the graph"));
    plan_free(P);
}

/* torchvision's ViT: nn.MultiheadAttention at a fixed sequence, [17,
 * batch, 16] -- sequence-first on its face, so the recogniser reads it
 * through the sequence-first view first; every layer is recognised (and
 * then reads the batch-first values between its Transposes, layout.c) and
 * the plan verified. */
static void test_seq_first_fixed_sequence(void **state) {
    (void)state;
    plan *P = build("h_vit_torchvision_op13", 0);
    for (size_t li = 0; li < P->n_layers; li++) {
        if (!P->layers[li].recognised) fail_msg("layer %zu: %s", li, P->layers[li].reason);
        assert_string_equal(P->layers[li].L.form, "torch-mha");
    }
    plan_free(P);
}

static int is_contraction(const ir_node *n) {
    return strcmp(n->op_type, "MatMul") == 0 || strcmp(n->op_type, "Gemm") == 0 ||
           strcmp(n->op_type, "Conv") == 0;
}

/* A batch of fixed-size items runs its second probe for shapes only: every
 * contraction of a ViT is skipped there (its values decide no shape) --
 * until one's output is made to decide one (wired here into a Reshape's
 * shape), when it and every contraction upstream of it are summed. A text
 * model's symbolic sequence is not such a batch. */
static void test_shape_probe_skips_contractions(void **state) {
    (void)state;
    plan *T = build(BERT, PLAN_SKIP_VERIFY);
    assert_false(plan_probe_items_fixed(T));
    plan_free(T);
    plan *P = build("vit_preln_l2_d64_h4_p4", PLAN_SKIP_VERIFY | PLAN_KEEP_GRAPH);
    assert_true(plan_probe_items_fixed(P));
    ir_graph *g = P->g;
    unsigned char *skip = calloc(g->n_nodes, 1);
    mha_error err;
    assert_int_equal(plan_probe_shape_only(P, skip, &err), MHA_OK);
    size_t first = g->n_nodes, last = g->n_nodes, reshape = g->n_nodes;
    for (size_t ni = 0; ni < g->n_nodes; ni++) {
        const ir_node *n = &g->nodes[ni];
        assert_int_equal(skip[ni], is_contraction(n));
        if (is_contraction(n) && first == g->n_nodes) first = ni;
        if (is_contraction(n) && ni < g->n_nodes / 2) last = ni;
    }
    for (size_t ni = last + 1; ni < g->n_nodes && reshape == g->n_nodes; ni++)
        if (strcmp(g->nodes[ni].op_type, "Reshape") == 0) reshape = ni;
    assert_true(first < last && reshape < g->n_nodes);
    const int saved = g->nodes[reshape].inputs[1];
    g->nodes[reshape].inputs[1] = g->nodes[last].outputs[0];
    assert_int_equal(plan_probe_shape_only(P, skip, &err), MHA_OK);
    assert_int_equal(skip[last], 0);
    assert_int_equal(skip[first], 0);
    size_t after = 0;
    for (size_t ni = reshape + 1; ni < g->n_nodes; ni++)
        after += skip[ni];
    assert_true(after > 0); /* the ones after the Reshape still skipped */
    g->nodes[reshape].inputs[1] = saved;
    free(skip);
    plan_free(P);
}

/* At load the verification compares the plan against the graph outputs
 * the shape pass computed (P->probe_in / probe_out) instead of
 * interpreting the graph again: those are what it reads -- a wrong layer
 * is caught against them, and so is a wrong expectation. */
static void test_verify_reads_the_shape_pass(void **state) {
    (void)state;
    plan *P = build(BERT, PLAN_SKIP_VERIFY | PLAN_KEEP_GRAPH);
    mha_error err;
    /* the expectations as the shape pass keeps them: the reference plan
     * (every node interpreted) on the probe inputs */
    plan R = *P;
    R.steps = calloc(P->g->n_nodes, sizeof *R.steps);
    R.n_steps = 0;
    for (size_t ni = 0; ni < P->g->n_nodes; ni++) {
        int folded = 1;
        for (size_t k = 0; k < P->g->nodes[ni].n_outputs; k++)
            folded &= plan_const(P, P->g->nodes[ni].outputs[k]) != NULL;
        if (folded) continue;
        R.steps[R.n_steps].kind = PLAN_STEP_INTERP;
        R.steps[R.n_steps++].index = (int)ni;
    }
    for (int p = 0; p < PLAN_PROBES; p++) {
        tensor **values = NULL;
        P->probe_in[p] = calloc(P->g->n_inputs, sizeof(tensor *));
        P->probe_out[p] = calloc(P->g->n_outputs, sizeof(tensor *));
        assert_int_equal(plan_probe_inputs(P, p, P->probe_in[p], &err), MHA_OK);
        assert_int_equal(plan_exec(&R, P->probe_in[p], NULL, 1, &values, &err), MHA_OK);
        for (size_t k = 0; k < P->g->n_outputs; k++)
            assert_int_equal(tensor_clone(values[P->g->outputs[k]], &P->probe_out[p][k], &err),
                             MHA_OK);
        plan_values_free(&R, P->probe_in[p], values);
    }
    free(R.steps);
    assert_int_equal(plan_verify(P, &err), MHA_OK);
    /* a wrong expectation: probe 1's first output moved */
    tensor *y = P->probe_out[1][0];
    ((float *)y->data)[tensor_numel(y) / 2] += 0.5f;
    assert_int_equal(plan_verify(P, &err), MHA_ERR_MODEL_VERIFY);
    assert_non_null(strstr(err.message, "(probe 1)"));
    ((float *)y->data)[tensor_numel(y) / 2] -= 0.5f;
    assert_int_equal(plan_verify(P, &err), MHA_OK);
    /* a wrong layer, against the kept expectations */
    P->layers[1].L.wo[5] += 0.25f;
    assert_int_equal(plan_verify(P, &err), MHA_ERR_MODEL_VERIFY);
    assert_non_null(strstr(err.message, "differs from the graph"));
    plan_free(P); /* frees the kept expectations too */
}

/* Allocation failures while loading a whole model, at points spread over
 * the whole load (a full sweep of its thousands of allocations would take
 * minutes): each is a clean MHA_ERR_NO_MEMORY with no model, or -- a
 * once-only failure something retried around -- a model that still loads;
 * nothing leaks (LeakSanitizer in the ASan build). */
static void test_load_alloc_failures(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s/model.onnx", MHA_TEST_DATA, BERT);
    mha_error err;
    mha_model *m = NULL;
    mha_alloc_fail_at(1L << 40, 0); /* counts without failing */
    assert_int_equal(mha_model_load_file(path, NULL, &m, &err), MHA_OK);
    long total = mha_alloc_count();
    mha_alloc_fail_at(0, 0);
    mha_model_free(m);
    assert_true(total > 100);
    print_message("loading %s: %ld allocations\n", BERT, total);
    const long points = 400;
    for (int persistent = 0; persistent < 2; persistent++)
        for (long i = 0; i < points; i++) {
            /* up to 99 % of the way: the number of allocations of a load
             * varies by a few between loads of the same file (one layer
             * too: 440 to 444 for a conformance case), so the last points
             * may lie past the end of a shorter load */
            long n = 1 + i * (total * 99 / 100 - 1) / (points - 1);
            mha_error_clear(&err);
            m = (mha_model *)&err; /* must be overwritten */
            mha_alloc_fail_at(n, persistent);
            mha_status st = mha_model_load_file(path, NULL, &m, &err);
            mha_alloc_fail_at(0, 0);
            if (st == MHA_OK) {
                if (persistent)
                    fail_msg("allocation %ld of %ld failing for good: loaded", n, total);
                assert_non_null(m);
                mha_model_free(m);
                continue;
            }
            if (st != MHA_ERR_NO_MEMORY)
                fail_msg("allocation %ld of %ld failing (%s) gave %s: %s", n, total,
                         persistent ? "all" : "once", mha_status_name(st), err.message);
            assert_null(m);
        }
}

int main(void) {
    mha_alloc_ctx_init(&g_alloc, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partition_finds_every_layer),
        cmocka_unit_test(test_causal_decoder_layers),
        cmocka_unit_test(test_dead_steps_dropped),
        cmocka_unit_test(test_projection_over_flat_rows),
        cmocka_unit_test(test_present_without_past),
        cmocka_unit_test(test_extended_mask_beside_causal_where),
        cmocka_unit_test(test_partition_attentions_merged_before_projection),
        cmocka_unit_test(test_partition_shape_of_x_read_outside),
        cmocka_unit_test(test_general_conv_gemm_steps),
        cmocka_unit_test(test_layers_ending_at_merged_heads),
        cmocka_unit_test(test_partition_sizes_read_outside),
        cmocka_unit_test(test_sizes_folded_from_shapes),
        cmocka_unit_test(test_gemm_steps),
        cmocka_unit_test(test_gemm_epilogues),
        cmocka_unit_test(test_norm_steps),
        cmocka_unit_test(test_exec_gemm_matches_reference),
        cmocka_unit_test(test_epilogue_classify),
        cmocka_unit_test(test_fused_epilogue_matches_host),
        cmocka_unit_test(test_norm_steps_on_the_pool),
        cmocka_unit_test(test_values_freed_after_last_step),
        cmocka_unit_test(test_release_weights),
        cmocka_unit_test(test_build_frees_layer_weights),
        cmocka_unit_test(test_gemm_weights_released_after_packing),
        cmocka_unit_test(test_tied_gemm_copy_released),
        cmocka_unit_test(test_layer_weights_checked_on_reload),
        cmocka_unit_test(test_arena_by_lifetimes),
        cmocka_unit_test(test_output_shapes_follow_inputs),
        cmocka_unit_test(test_output_axis_with_offset),
        cmocka_unit_test(test_dim_rule_fit),
        cmocka_unit_test(test_output_axis_strided),
        cmocka_unit_test(test_probe_inputs_in_range),
        cmocka_unit_test(test_verify_catches_a_wrong_layer),
        cmocka_unit_test(test_verify_batch_of_images),
        cmocka_unit_test(test_seq_first_fixed_sequence),
        cmocka_unit_test(test_verify_reads_the_shape_pass),
        cmocka_unit_test(test_shape_probe_skips_contractions),
        cmocka_unit_test(test_load_alloc_failures),
        cmocka_unit_test(test_verify_rows_of_hidden_keys),
        cmocka_unit_test(test_steps_past_a_thousand_gemms),
        cmocka_unit_test(test_input_axis_symbols),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
