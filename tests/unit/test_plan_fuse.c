/* test_plan_fuse.c -- nodes after a step taken into it.
 *
 * The residual Add after an attention layer (plan/residual.c, the output
 * projection's epilogue in exec.c): found in pre-norm (GPT-2, ViT) and
 * post-norm (BERT) graphs and after a sequence-first layer's folded
 * Transposes; the layer run with the residual gives bitwise the layer's
 * output plus the residual, on a plugin declaring the residual epilogue and
 * on one that does not (the host adds it per tile), at 1 and 3 threads, in
 * float32 and bfloat16.
 *
 * A post-norm LayerNorm as the row epilogue of the GEMM step that makes its
 * input (plan/postnorm.c, exec_gemm_run's rows callback): found in
 * BERT-style post-norm graphs (the op and the decomposed form), with no
 * norm step of its own; each row tile reaches the callback exactly once,
 * after every column of it is done, whatever the cut (column pieces at the
 * end of a run, column slabs of a wide weight, 1 to 3 threads); and a norm
 * run there gives the bits of the product normalised apart.
 *
 * Whole models with both against the interpreter on every backend:
 * test_plan_steps' test_models_on_every_backend (GPT-2, RoBERTa). */
#include "testutil.h"

#include <stdatomic.h>
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
 * output the Add's; no Add stays interpreted: the position embeddings'
 * (GPT-2, ViT) and the first of BERT's embedding sums are add steps, the
 * second the residual of the norm step after it. */
static void test_residual_found(void **state) {
    (void)state;
    const char *names[4] = {"gpt2_preln_causal_l2_d64_h4", "bert_postln_l2_d64_h4",
                            "vit_preln_l2_d64_h4_p4", "h_vit_torchvision_op13"};
    for (int k = 0; k < 4; k++) {
        plan *P = build(names[k]);
        assert_true(P->n_layers >= 2);
        for (size_t li = 0; li < P->n_layers; li++) {
            const plan_layer *pl = &P->layers[li];
            if (!pl->recognised || !pl->residual)
                fail_msg("%s: layer %zu without its residual", names[k], li);
            const ir_node *add = &P->g->nodes[pl->nodes[pl->n_nodes - 1]];
            assert_string_equal(add->op_type, "Add");
            /* the step's output: the Add's, or the post-norm LayerNorm's of it */
            if (pl->norm >= 0)
                assert_int_equal(add->outputs[0], P->norms[pl->norm].in_value);
            else
                assert_int_equal(add->outputs[0], pl->out_value);
            const int x = pl->in_values[pl->L.n_inputs];
            assert_true(add->inputs[0] == x || add->inputs[1] == x);
            assert_int_equal(plan_layer_n_reads(pl), pl->L.n_inputs + 1);
            assert_non_null(strstr(pl->desc, "+residual"));
        }
        if (interpreted_adds(P) != 0 || P->n_adds != 1)
            fail_msg("%s: %zu Adds interpreted, %zu add steps", names[k], interpreted_adds(P),
                     P->n_adds);
        plan_free(P);
    }
}

/* What the rows callback saw: each row's visits, and whether the row was
 * complete (equal to the full product) when it came. */
typedef struct rows_seen {
    const float *want; /* [M, N]: the product computed whole */
    int64_t M, N;
    atomic_int *visits; /* [M] */
    atomic_int incomplete;
    const plan_norm *nm; /* NULL: only count */
} rows_seen;

static void rows_cb(void *user, float *C, int64_t N, int64_t m0, int64_t m1) {
    rows_seen *s = user;
    assert_true(N == s->N && m0 >= 0 && m1 <= s->M && m0 < m1);
    for (int64_t m = m0; m < m1; m++) {
        atomic_fetch_add(&s->visits[m], 1);
        if (memcmp(C + m * N, s->want + m * N, sizeof(float) * (size_t)N) != 0)
            atomic_store(&s->incomplete, 1);
    }
    if (s->nm) {
        mha_norm_args a;
        plan_norm_args(s->nm, C, NULL, C, s->M, &a);
        a.r0 = m0;
        a.r1 = m1;
        assert_int_equal(mha_scalar_plugin_table()->norm(NULL, &a), 0);
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
    /* a row epilogue (a post-norm LayerNorm's place): every row of Y once,
     * complete with its residual, whatever the cut */
    const int64_t d = y.shape[y.rank - 1], rows = (int64_t)n / d;
    rows_seen seen = {plain, rows, d, calloc((size_t)rows, sizeof(atomic_int)), 0, NULL};
    exec_gemm_epilogue ep = {NULL, &seen, rows_cb};
    env.y_rows = &ep;
    float *with_rows = calloc(n, sizeof(float));
    y.data = with_rows;
    if (exec_run(&env, L, pk, in, L->n_inputs, &y, 1, &err) != MHA_OK)
        fail_msg("%s: %s", plugin->name, err.message);
    for (int64_t m = 0; m < rows; m++)
        if (atomic_load(&seen.visits[m]) != 1)
            fail_msg("%s, %d threads: row %lld of Y seen %d times", plugin->name, threads,
                     (long long)m, atomic_load(&seen.visits[m]));
    assert_int_equal(atomic_load(&seen.incomplete), 0);
    free((void *)seen.visits);
    free(with_rows);
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

/* The FFN's second GEMM (+ bias + residual) of every layer takes the
 * LayerNorm after it; that norm has no step; the other norms keep theirs. */
static void test_postnorm_found(void **state) {
    (void)state;
    const char *names[2] = {"bert_postln_l2_d64_h4", "minilm_postln_l3_d48_h6"};
    const size_t layers[2] = {2, 3};
    for (int k = 0; k < 2; k++) {
        plan *P = build(names[k]);
        size_t fused = 0, norm_steps = 0, in_step = 0;
        for (size_t gi = 0; gi < P->n_gemms; gi++) {
            const plan_gemm *pg = &P->gemms[gi];
            if (pg->norm < 0) continue;
            fused++;
            const plan_norm *nm = &P->norms[pg->norm];
            assert_true(nm->in_step);
            assert_int_equal(pg->out_value, nm->out_value);
            assert_int_equal(nm->res_value, -1);
            assert_int_equal(nm->D, pg->N);
            assert_non_null(strstr(pg->desc, "+residual+layernorm"));
        }
        for (size_t s = 0; s < P->n_steps; s++)
            norm_steps += P->steps[s].kind == PLAN_STEP_NORM;
        for (size_t i = 0; i < P->n_norms; i++)
            in_step += P->norms[i].in_step;
        if (fused != layers[k]) fail_msg("%s: %zu GEMMs with a norm", names[k], fused);
        /* and the one after each attention layer (+ residual) is the layer's */
        for (size_t li = 0; li < P->n_layers; li++) {
            const plan_layer *pl = &P->layers[li];
            if (pl->norm < 0) fail_msg("%s: layer %zu without its norm", names[k], li);
            assert_int_equal(pl->out_value, P->norms[pl->norm].out_value);
            assert_true(P->norms[pl->norm].in_step);
            assert_non_null(strstr(pl->desc, "+residual+layernorm"));
            fused++;
        }
        assert_int_equal(in_step, fused);
        assert_int_equal(norm_steps, P->n_norms - in_step);
        plan_free(P);
    }
}

static void check_rows(const mha_plugin *plugin, pool *pl, int threads, int64_t M, int64_t K,
                       int64_t N, const plan_norm *nm) {
    float *A = malloc(sizeof(float) * (size_t)(M * K)),
          *Wt = malloc(sizeof(float) * (size_t)(K * N));
    float *want = malloc(sizeof(float) * (size_t)(M * N)),
          *C = malloc(sizeof(float) * (size_t)(M * N));
    tu_fill_random(A, (size_t)(M * K), (uint64_t)(M + K));
    tu_fill_random(Wt, (size_t)(K * N), (uint64_t)(K + N));
    exec_gemm_weights W;
    memset(&W, 0, sizeof W);
    mha_error err;
    const float *w[1] = {Wt}, *bias[1] = {NULL};
    int64_t cols[1] = {N};
    assert_int_equal(exec_pack_parts(NULL, plugin, NULL, MHA_PRECISION_FLOAT32, K, 1, w, cols, bias,
                                     "W", &W, &err),
                     MHA_OK);
    exec_env env;
    memset(&env, 0, sizeof env);
    env.plugin = plugin;
    env.pool = pl;
    env.num_threads = threads;
    assert_int_equal(exec_gemm_run(&env, &W, A, M, want, NULL, NULL, &err), MHA_OK);
    rows_seen s = {want, M, N, calloc((size_t)M, sizeof(atomic_int)), 0, nm};
    exec_gemm_epilogue ep = {NULL, &s, rows_cb};
    assert_int_equal(exec_gemm_run(&env, &W, A, M, C, NULL, &ep, &err), MHA_OK);
    for (int64_t m = 0; m < M; m++)
        if (atomic_load(&s.visits[m]) != 1)
            fail_msg("M %lld N %lld, %d threads: row %lld seen %d times", (long long)M,
                     (long long)N, threads, (long long)m, atomic_load(&s.visits[m]));
    assert_int_equal(atomic_load(&s.incomplete), 0);
    if (nm) { /* the product normalised apart: the same bits */
        float *apart = malloc(sizeof(float) * (size_t)(M * N));
        assert_int_equal(plan_norm_rows(nm, want, NULL, apart, M), 0);
        assert_memory_equal(apart, C, sizeof(float) * (size_t)(M * N));
        free(apart);
    }
    exec_weights_free(NULL, &W);
    free((void *)s.visits);
    free(A), free(Wt), free(want), free(C);
}

static void test_rows_once_when_complete(void **state) {
    (void)state;
    plan *P = build("bert_postln_l2_d64_h4");
    const plan_norm *nm = NULL;
    for (size_t gi = 0; gi < P->n_gemms && !nm; gi++)
        if (P->gemms[gi].norm >= 0) nm = &P->norms[P->gemms[gi].norm];
    assert_non_null(nm);
    pool *pl = NULL;
    mha_error err;
    assert_int_equal(pool_create(NULL, 2, 0, &pl, &err), MHA_OK);
    /* a few rows over 2-3 threads give column tiles, many rows the last
     * row tiles in column pieces, a wide K x N weight column slabs */
    const int64_t shapes[4][3] = {{5, 64, 64}, {301, 64, 64}, {1000, 32, 64}, {40, 1024, 1024}};
    for (int t = 1; t <= 3; t++)
        for (int k = 0; k < 4; k++) {
            const int64_t *sh = shapes[k];
            check_rows(mha_scalar_plugin_table(), t > 1 ? pl : NULL, t, sh[0], sh[1], sh[2],
                       sh[2] == nm->D ? nm : NULL);
        }
    pool_destroy(pl);
    plan_free(P);
}

int main(void) {
    mha_alloc_ctx_init(&g_alloc, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_residual_found),
        cmocka_unit_test(test_residual_in_the_epilogue),
        cmocka_unit_test(test_postnorm_found),
        cmocka_unit_test(test_rows_once_when_complete),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
