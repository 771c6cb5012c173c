/* test_plan_residual.c -- the residual Add after an attention layer as part
 * of the layer's step (plan/residual.c, the output projection's epilogue in
 * exec.c): found in pre-norm (GPT-2, ViT) and post-norm (BERT) graphs and
 * after a sequence-first layer's folded Transposes; the layer run with the
 * residual gives bitwise the layer's output plus the residual, on a plugin
 * declaring the residual epilogue and on one that does not (the host adds
 * it per tile), at 1 and 3 threads, in float32 and bfloat16. Whole models
 * with the fused step against the interpreter on every backend:
 * test_plan_steps' test_models_on_every_backend. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec_ext.h"
#include "onnx_ir.h"
#include "plan/plan_internal.h"
#include "registry_table.h"

static mha_alloc_ctx g_alloc;

static plan *build(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/models/%s/model.onnx", MHA_TEST_DATA, name);
    ir_graph *g = NULL;
    mha_error err;
    if (ir_load_file(&g_alloc, path, NULL, &g, &err) != MHA_OK)
        fail_msg("loading %s: %s", path, err.message);
    plan *P = NULL;
    if (plan_build(&g_alloc, &g, 0, &P, &err) != MHA_OK)
        fail_msg("plan of %s: %s", name, err.message);
    return P;
}

static size_t interpreted_adds(const plan *P) {
    size_t n = 0;
    for (size_t s = 0; s < P->n_steps; s++)
        n += P->steps[s].kind == PLAN_STEP_INTERP &&
             strcmp(P->g->nodes[P->steps[s].index].op_type, "Add") == 0;
    return n;
}

/* Every layer of these models takes the Add after it: the Add is its last
 * node, the residual the value it reads after L's inputs, the step's
 * output the Add's; what stays interpreted is the position embeddings'
 * Add (GPT-2, ViT) and the embeddings' sums before their LayerNorm
 * (BERT: one is the norm step's residual). */
static void test_residual_found(void **state) {
    (void)state;
    const char *names[4] = {"gpt2_preln_causal_l2_d64_h4", "bert_postln_l2_d64_h4",
                            "vit_preln_l2_d64_h4_p4", "h_vit_torchvision_op13"};
    const size_t adds_left[4] = {1, 1, 1, 1};
    for (int k = 0; k < 4; k++) {
        plan *P = build(names[k]);
        assert_true(P->n_layers >= 2);
        for (size_t li = 0; li < P->n_layers; li++) {
            const plan_layer *pl = &P->layers[li];
            if (!pl->recognised || !pl->residual)
                fail_msg("%s: layer %zu without its residual", names[k], li);
            const ir_node *add = &P->g->nodes[pl->nodes[pl->n_nodes - 1]];
            assert_string_equal(add->op_type, "Add");
            assert_int_equal(add->outputs[0], pl->out_value);
            const int x = pl->in_values[pl->L.n_inputs];
            assert_true(add->inputs[0] == x || add->inputs[1] == x);
            assert_int_equal(plan_layer_n_reads(pl), pl->L.n_inputs + 1);
            assert_non_null(strstr(pl->desc, "+residual"));
        }
        if (interpreted_adds(P) != adds_left[k])
            fail_msg("%s: %zu Adds interpreted", names[k], interpreted_adds(P));
        plan_free(P);
    }
}

/* Layer 0 of a plan run through exec_run with and without the residual:
 * the fused run gives the plain run's Y + residual, bit for bit. */
static void check_layer(const plan *P, tensor **values, const mha_plugin *plugin, pool *pl,
                        int threads, int precision) {
    const plan_layer *lay = &P->layers[0];
    const layer *L = &lay->L;
    mha_tensor in[16], y;
    assert_true(L->n_inputs <= 16);
    for (size_t i = 0; i < L->n_inputs; i++)
        tensor_as_mha(values[lay->in_values[i]], &in[i]);
    const tensor *res = values[lay->in_values[L->n_inputs]];
    mha_error err;
    assert_int_equal(layer_output_shapes(L, in, L->n_inputs, &y, 1, &err), MHA_OK);
    const size_t n = (size_t)mha_tensor_numel(&y);
    assert_int_equal((int64_t)n, tensor_numel(res));
    float *plain = calloc(n, sizeof(float)), *fused = calloc(n, sizeof(float));
    exec_packed *pk = NULL;
    assert_int_equal(exec_pack_weights(NULL, L, plugin, NULL, precision, &pk, &err), MHA_OK);
    exec_env env;
    memset(&env, 0, sizeof env);
    env.plugin = plugin;
    env.pool = pl;
    env.num_threads = threads;
    env.precision = precision;
    y.data = plain;
    if (exec_run(&env, L, pk, in, L->n_inputs, &y, 1, &err) != MHA_OK)
        fail_msg("%s: %s", plugin->name, err.message);
    const float *r = res->data;
    for (size_t i = 0; i < n; i++)
        plain[i] += r[i];
    env.residual = r;
    y.data = fused;
    if (exec_run(&env, L, pk, in, L->n_inputs, &y, 1, &err) != MHA_OK)
        fail_msg("%s: %s", plugin->name, err.message);
    for (size_t i = 0; i < n; i++)
        if (memcmp(&plain[i], &fused[i], sizeof(float)) != 0)
            fail_msg("%s, %d threads, precision %d: element %zu: layer + residual %.9g, fused "
                     "%.9g",
                     plugin->name, threads, precision, i, plain[i], fused[i]);
    exec_packed_free(NULL, pk);
    free(plain), free(fused);
}

static void test_residual_in_the_epilogue(void **state) {
    (void)state;
    plan *P = build("gpt2_preln_causal_l2_d64_h4");
    assert_true(P->layers[0].residual);
    tensor *in[4] = {0};
    tensor **values = NULL;
    mha_error err;
    assert_true(P->g->n_inputs <= 4);
    assert_int_equal(plan_probe_inputs(P, 0, in, &err), MHA_OK);
    assert_int_equal(plan_exec(P, in, &plan_reference_backend, 1, &values, &err), MHA_OK);
    pool *pl = NULL;
    assert_int_equal(pool_create(NULL, 2, 0, &pl, &err), MHA_OK);
    /* the scalar declares the residual epilogue; `bare` declares none, so
     * the host adds it after each tile */
    const mha_plugin *scalar = mha_scalar_plugin_table();
    assert_true(scalar->epilogues & MHA_EPILOGUE_RESIDUAL);
    mha_plugin bare = *scalar;
    bare.epilogues = 0;
    const mha_plugin *plugins[2] = {scalar, &bare};
    for (int k = 0; k < 2; k++)
        for (int precision = MHA_PRECISION_FLOAT32; precision <= MHA_PRECISION_BFLOAT16;
             precision++) {
            check_layer(P, values, plugins[k], NULL, 1, precision);
            check_layer(P, values, plugins[k], pl, 3, precision);
        }
    pool_destroy(pl);
    plan_values_free(P, in, values);
    for (size_t i = 0; i < P->g->n_inputs; i++)
        tensor_free(in[i]);
    plan_free(P);
}

int main(void) {
    mha_alloc_ctx_init(&g_alloc, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_residual_found),
        cmocka_unit_test(test_residual_in_the_epilogue),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
