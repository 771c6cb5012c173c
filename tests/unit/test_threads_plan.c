/* test_threads_plan.c -- one whole model (a plan) and one runtime shared by
 * several threads (runs under TSan, label "threads"): the first runs race
 * to pack the weights and pack them once; every thread's results, shape
 * after shape, are bitwise those of a run alone. */
#include "testutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mha/tensor_file.h"
#include "model.h"

#define N_THREADS 4
#define N_RUNS 6

typedef struct job {
    const mha_model *m;
    mha_runtime *rt;
    int64_t B, S;
    int64_t *ids, *mask, *seg;
    mha_tensor in[3], out[2];
} job;

/* Inputs of shape [B, S]: ids in range of the 100-row table, the last
 * tokens of odd rows padded, segments 0 then 1. */
static void job_init(job *j, const mha_model *m, mha_runtime *rt, int64_t B, int64_t S) {
    memset(j, 0, sizeof *j);
    j->m = m;
    j->rt = rt;
    j->B = B;
    j->S = S;
    size_t n = (size_t)(B * S);
    j->ids = malloc(n * sizeof(int64_t));
    j->mask = malloc(n * sizeof(int64_t));
    j->seg = malloc(n * sizeof(int64_t));
    assert_non_null(j->ids);
    for (int64_t b = 0; b < B; b++)
        for (int64_t s = 0; s < S; s++) {
            j->ids[b * S + s] = (b * 31 + s * 7) % 100;
            j->mask[b * S + s] = (b % 2 == 1 && s >= S - 2) ? 0 : 1;
            j->seg[b * S + s] = s >= S / 2;
        }
    int64_t *data[3] = {j->ids, j->mask, j->seg};
    for (int i = 0; i < 3; i++) {
        j->in[i].dtype = MHA_DTYPE_INT64;
        j->in[i].rank = 2;
        j->in[i].shape[0] = B;
        j->in[i].shape[1] = S;
        j->in[i].data = data[i];
    }
    mha_error err;
    assert_int_equal(mha_model_output_shapes(m, j->in, 3, j->out, 2, &err), MHA_OK);
    for (int k = 0; k < 2; k++) {
        j->out[k].data = calloc((size_t)mha_tensor_numel(&j->out[k]), sizeof(float));
        assert_non_null(j->out[k].data);
    }
}

static void job_free(job *j) {
    free(j->ids);
    free(j->mask);
    free(j->seg);
    for (int k = 0; k < 2; k++)
        free(j->out[k].data);
}

static size_t job_bytes(const job *j, int k) {
    return (size_t)mha_tensor_numel(&j->out[k]) * sizeof(float);
}

typedef struct worker {
    job jobs[N_RUNS];
    const job *want; /* [N_RUNS], computed alone */
    int ok;
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    w->ok = 1;
    for (int r = 0; r < N_RUNS; r++) {
        job *j = &w->jobs[r];
        mha_error err;
        if (mha_run(j->rt, j->m, j->in, 3, j->out, 2, NULL, &err) != MHA_OK) {
            w->ok = 0;
            continue;
        }
        for (int k = 0; k < 2; k++)
            if (memcmp(j->out[k].data, w->want[r].out[k].data, job_bytes(j, k)) != 0) w->ok = 0;
    }
    return NULL;
}

static void test_plan_shared_by_threads(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/models/bert_postln_l2_d64_h4/model.onnx", MHA_TEST_DATA);
    mha_model *m = NULL;
    mha_error err;
    assert_int_equal(mha_model_load_file(path, NULL, &m, &err), MHA_OK);
    mha_runtime_options o;
    mha_runtime_options_init(&o);
    o.num_threads = 2;
    mha_runtime *rt = NULL;
    assert_int_equal(mha_runtime_create(&o, &rt, &err), MHA_OK);

    /* the reference results: a second model, run alone, one shape at a time */
    mha_model *alone = NULL;
    assert_int_equal(mha_model_load_file(path, NULL, &alone, &err), MHA_OK);
    job want[N_RUNS];
    for (int r = 0; r < N_RUNS; r++) {
        job_init(&want[r], alone, rt, 1 + r % 3, 3 + r);
        assert_int_equal(mha_run(rt, alone, want[r].in, 3, want[r].out, 2, NULL, &err), MHA_OK);
    }

    worker w[N_THREADS];
    pthread_t t[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        for (int r = 0; r < N_RUNS; r++)
            job_init(&w[i].jobs[r], m, rt, 1 + r % 3, 3 + r);
        w[i].want = want;
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < N_THREADS; i++) {
        assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_true(w[i].ok);
        for (int r = 0; r < N_RUNS; r++)
            job_free(&w[i].jobs[r]);
    }
    /* the racing first runs packed the weights once */
    assert_int_equal(model_pack_count(m), 1);
    for (int r = 0; r < N_RUNS; r++)
        job_free(&want[r]);
    mha_model_free(alone);
    mha_model_free(m);
    mha_runtime_destroy(rt);
}

/* A decoder's rows of hidden keys (m_gpt_inf_leftpad_nan_op14: item 1 is
 * padded on the left, its padding rows are NaN in the graph, and so every
 * row of that item after the next layer's P.V, 0 x NaN): the scan of each
 * layer's values for a NaN is shared out among the attention units, each
 * kv head by the unit that holds its first query head. At 1, 2 and 3
 * threads the output is the graph's pattern (item 1 NaN in every element,
 * item 0 in none), bitwise the same at each count. */
static void test_plan_nan_values_at_any_thread_count(void **state) {
    (void)state;
    const char *dir = MHA_TEST_DATA "/models/m_gpt_inf_leftpad_nan_op14";
    char path[1024];
    snprintf(path, sizeof path, "%s/model.onnx", dir);
    mha_model *m = NULL;
    mha_error err;
    if (mha_model_load_file(path, NULL, &m, &err) != MHA_OK) fail_msg("%s", err.message);
    mha_tensor_file *f[2] = {NULL, NULL};
    mha_tensor in[2];
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/test_data_set_0/input_%d.pb", dir, i);
        if (mha_tensor_file_read(path, NULL, &f[i], &err) != MHA_OK) fail_msg("%s", err.message);
        in[i] = *mha_tensor_file_tensor(f[i]);
    }
    mha_tensor out[3];
    float *first = NULL;
    for (int t = 1; t <= 3; t++) {
        mha_runtime_options o;
        mha_runtime_options_init(&o);
        o.num_threads = t;
        mha_runtime *rt = NULL;
        assert_int_equal(mha_runtime_create(&o, &rt, &err), MHA_OK);
        assert_int_equal(mha_model_output_shapes(m, in, 2, out, 1, &err), MHA_OK);
        const int64_t n = mha_tensor_numel(&out[0]), B = out[0].shape[0];
        float *y = calloc((size_t)n, sizeof *y);
        assert_non_null(y);
        out[0].data = y;
        if (mha_run(rt, m, in, 2, out, 1, NULL, &err) != MHA_OK) fail_msg("%s", err.message);
        assert_int_equal(B, 2);
        for (int64_t e = 0; e < n; e++)
            assert_int_equal(y[e] != y[e], e >= n / B); /* item 1 NaN, item 0 finite */
        if (!first)
            first = y;
        else {
            assert_memory_equal(y, first, (size_t)n * sizeof *y);
            free(y);
        }
        mha_runtime_destroy(rt);
    }
    free(first);
    for (int i = 0; i < 2; i++)
        mha_tensor_file_free(f[i]);
    mha_model_free(m);
}

/* A batch of 8 x 30 tokens is 240 rows, 4 row tiles of every GEMM: at 2
 * and 3 threads the last two are cut into column pieces, at 2 threads
 * after the body's tiles claimed from both ends, at 3 in order. The
 * output is bitwise the same at 1, 2 and 3 threads, run after run. */
static void test_plan_end_pieces_at_any_thread_count(void **state) {
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/models/bert_postln_l2_d64_h4/model.onnx", MHA_TEST_DATA);
    mha_model *m = NULL;
    mha_error err;
    assert_int_equal(mha_model_load_file(path, NULL, &m, &err), MHA_OK);
    job first;
    job_init(&first, m, NULL, 8, 30);
    for (int t = 1; t <= 3; t++) {
        mha_runtime_options o;
        mha_runtime_options_init(&o);
        o.num_threads = t;
        mha_runtime *rt = NULL;
        assert_int_equal(mha_runtime_create(&o, &rt, &err), MHA_OK);
        for (int r = 0; r < 3; r++) {
            job j;
            job_init(&j, m, rt, 8, 30);
            if (mha_run(rt, m, j.in, 3, j.out, 2, NULL, &err) != MHA_OK)
                fail_msg("%d threads: %s", t, err.message);
            if (t == 1 && r == 0)
                for (int k = 0; k < 2; k++)
                    memcpy(first.out[k].data, j.out[k].data, job_bytes(&j, k));
            for (int k = 0; k < 2; k++)
                if (memcmp(first.out[k].data, j.out[k].data, job_bytes(&j, k)) != 0)
                    fail_msg("%d threads, run %d: output %d differs from 1 thread's", t, r, k);
            job_free(&j);
        }
        mha_runtime_destroy(rt);
    }
    job_free(&first);
    mha_model_free(m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_shared_by_threads),
        cmocka_unit_test(test_plan_nan_values_at_any_thread_count),
        cmocka_unit_test(test_plan_end_pieces_at_any_thread_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
