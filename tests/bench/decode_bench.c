/* decode_bench.c -- times one decoding step of a decoder exported with
 * its KV cache (past_* inputs, present_* outputs) on the public API: the
 * model loaded once, random past tensors of P positions, B rows of one new
 * token (or S), a mask of ones over P + S keys; prints the median, minimum
 * and maximum wall time of RUNS runs after one warm-up, and the time of
 * the fused attention steps (step_seconds), for each B of a list and 1 to
 * THREADS threads (mha_run_options.num_threads), the configurations taken
 * in turn RUNS times. `mha bench` takes at most 16 inputs and 8 outputs;
 * a 12-layer decoder has 26 and 25. The model loads without verification.
 *
 *   decode_bench MODEL B[,B...] P THREADS [RUNS [BACKEND [S]]]
 *
 * Build: cc -O2 -I engine/include tests/bench/decode_bench.c -L build/lib -lmha
 *        -Wl,-rpath,build/lib -o decode_bench; or the build target decode_bench */
#define _POSIX_C_SOURCE 200809L
#include <mha/mha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s MODEL B[,B...] P THREADS [RUNS [BACKEND [S]]]\n", argv[0]);
        return 2;
    }
    int64_t Bs[8];
    int nB = 0;
    for (char *p = argv[2]; *p && nB < 8; p++) {
        Bs[nB++] = strtoll(p, &p, 10);
        if (!*p) break;
    }
    const int64_t P = atoll(argv[3]);
    const int max_threads = atoi(argv[4]), runs = argc > 5 ? atoi(argv[5]) : 9;
    const char *backend = argc > 6 ? argv[6] : NULL;
    const int64_t S = argc > 7 ? atoll(argv[7]) : 1;
    mha_error err;
    mha_error_clear(&err);
    mha_runtime_options ro;
    mha_runtime_options_init(&ro);
    ro.num_threads = max_threads;
    ro.backend = backend;
    mha_model_options mo;
    mha_model_options_init(&mo);
    mo.skip_verify = 1;
    mha_runtime *rt = NULL;
    mha_model *m = NULL;
    if (mha_runtime_create(&ro, &rt, &err) != MHA_OK ||
        mha_model_load_file(argv[1], &mo, &m, &err) != MHA_OK) {
        fprintf(stderr, "%s: %s\n", argv[1], err.message);
        return 1;
    }
    mha_model_info info;
    mha_model_get_info(m, &info);
    const size_t ni = info.num_inputs, no = info.num_outputs, ns = mha_model_num_steps(m);
    const int nconf = nB * max_threads;
    mha_tensor *in = calloc(ni * (size_t)nB, sizeof *in),
               *out = calloc(no * (size_t)nB, sizeof *out);
    double *step = calloc(ns ? ns : 1, sizeof *step);
    double *t = calloc((size_t)(runs * nconf), sizeof *t);
    double *attn = calloc((size_t)(runs * nconf), sizeof *attn);
    srand(1);
    for (int c = 0; c < nB; c++) {
        mha_tensor *ic = in + (size_t)c * ni, *oc = out + (size_t)c * no;
        for (size_t i = 0; i < ni; i++) {
            mha_io_info io;
            mha_model_input(m, i, &io);
            ic[i].dtype = io.dtype;
            ic[i].rank = io.rank;
            for (int a = 0; a < io.rank; a++)
                ic[i].shape[a] = io.shape[a];
            ic[i].shape[0] = Bs[c];
            if (io.role == MHA_ROLE_TOKEN_IDS)
                ic[i].shape[1] = S;
            else if (io.role == MHA_ROLE_ATTN_MASK)
                ic[i].shape[1] = P + S;
            else
                ic[i].shape[2] = P; /* a past key or value [B, Hkv, P, d] */
            const int64_t n = mha_tensor_numel(&ic[i]);
            ic[i].data = malloc((size_t)(n ? n : 1) * mha_dtype_size(io.dtype));
            for (int64_t j = 0; j < n; j++) {
                if (io.dtype == MHA_DTYPE_INT64)
                    ((int64_t *)ic[i].data)[j] =
                        io.role == MHA_ROLE_TOKEN_IDS ? 1 + rand() % 50 : 1;
                else
                    ((float *)ic[i].data)[j] = (float)rand() / (float)RAND_MAX - 0.5f;
            }
        }
        if (mha_model_output_shapes(m, ic, ni, oc, no, &err) != MHA_OK) {
            fprintf(stderr, "%s: %s\n", argv[1], err.message);
            return 1;
        }
        for (size_t i = 0; i < no; i++)
            oc[i].data = malloc((size_t)mha_tensor_numel(&oc[i]) * mha_dtype_size(oc[i].dtype));
    }
    mha_run_options opt;
    mha_run_options_init(&opt);
    opt.step_seconds = step;
    for (int r = -1; r < runs; r++)
        for (int k = 0; k < nconf; k++) {
            const int c = k / max_threads;
            opt.num_threads = 1 + k % max_threads;
            const double t0 = now_s();
            if (mha_run(rt, m, in + (size_t)c * ni, ni, out + (size_t)c * no, no, &opt, &err) !=
                MHA_OK) {
                fprintf(stderr, "%s: %s\n", argv[1], err.message);
                return 1;
            }
            if (r < 0) continue; /* the warm-up */
            t[k * runs + r] = now_s() - t0;
            for (size_t j = 0; j < ns; j++) {
                mha_step_info si;
                mha_model_step(m, j, &si);
                if (!strcmp(si.kind, "attention")) attn[k * runs + r] += step[j];
            }
        }
    for (int k = 0; k < nconf; k++) {
        double *tk = t + k * runs, *ak = attn + k * runs;
        qsort(tk, (size_t)runs, sizeof *tk, cmp_double);
        qsort(ak, (size_t)runs, sizeof *ak, cmp_double);
        printf("B %lld P %lld S %lld threads %d %s: median %.2f ms (min %.2f, max %.2f, %d runs), "
               "attention steps median %.2f ms (min %.2f)\n",
               (long long)Bs[k / max_threads], (long long)P, (long long)S, 1 + k % max_threads,
               mha_runtime_backend(rt), 1e3 * tk[runs / 2], 1e3 * tk[0], 1e3 * tk[runs - 1], runs,
               1e3 * ak[runs / 2], 1e3 * ak[0]);
    }
    return 0;
}
