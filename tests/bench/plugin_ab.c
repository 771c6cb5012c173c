/* plugin_ab.c -- two builds of one backend plugin side by side on one model,
 * in one process (a program, not a test: it prints figures and checks only
 * that both builds give the same bits).
 *
 * A kernel change of a percent or two is smaller than what a shared
 * machine's load does to two runs minutes apart. Here both plugin files
 * (say the build before a change, copied aside, and the one after) are
 * loaded by two runtimes of the same backend name (mha_runtime_options
 * .plugin_path names each file), and their runs alternate on the same
 * inputs and output buffers' shapes: A B, B A, A B, ... (the order flips
 * every pair, so neither build always runs right after the other). Each
 * run's CPU time (CLOCK_PROCESS_CPUTIME_ID: every thread of the process)
 * and wall time are recorded; the figure that matters is the median over
 * the pairs of the per-pair ratio B / A (CPU time at one thread; wall time
 * at more, where a waiting thread spins), with its quartiles.
 *
 * Both builds' first outputs are hashed (FNV-1a over the bytes) after the
 * last pair: a change meant to keep the bits must print the same hash
 * twice; the exit status is 3 when they differ.
 *
 * Inputs: floats uniform in [-1, 1) from a fixed seed, token ids 1, masks
 * that let every key through (--pad N: an integer attention mask [B, S]
 * keeps S - (N b mod S) keys of item b, the rest 0: a padded batch, e.g.
 * BERT's at B 8 S 128 N 13 keeps 128, 115, ..., 37); a dimension the
 * model leaves open is the batch (the first such
 * dimension of an input, --batch) or the sequence (any later one, --seq).
 *
 * Usage: plugin_ab MODEL PLUGIN_A PLUGIN_B [--backend NAME] [--batch B]
 *                  [--seq S] [--threads N] [--pairs N]
 *                  [--precision float32|bfloat16] [--pad N]
 * Exit: 0 done (same bits), 3 the bits differ, 1 a failure, 2 usage. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mha/mha.h"

#include "bench_util.h"

#define AB_MAX_TENSORS 16

static int ab_usage(void) {
    fprintf(stderr, "usage: plugin_ab MODEL PLUGIN_A PLUGIN_B [--backend NAME] [--batch B] "
                    "[--seq S] [--threads N] [--pairs N] [--precision float32|bfloat16] "
                    "[--pad N]\n");
    return 2;
}

int main(int argc, char **argv) {
    if (argc < 4 || argv[2][0] == '-' || argv[3][0] == '-') return ab_usage();
    const char *model_path = argv[1], *plugin[2] = {argv[2], argv[3]}, *backend = "avx512";
    int64_t batch = 1, seq = 128, pad = 0;
    int threads = 1, pairs = 41, precision = MHA_PRECISION_FLOAT32;
    for (int i = 4; i < argc; i++) {
        if (i + 1 >= argc) return ab_usage();
        const char *v = argv[++i];
        if (!strcmp(argv[i - 1], "--backend")) {
            backend = v;
        } else if (!strcmp(argv[i - 1], "--batch")) {
            batch = atoll(v);
        } else if (!strcmp(argv[i - 1], "--seq")) {
            seq = atoll(v);
        } else if (!strcmp(argv[i - 1], "--pad")) {
            pad = atoll(v);
        } else if (!strcmp(argv[i - 1], "--threads")) {
            threads = atoi(v);
        } else if (!strcmp(argv[i - 1], "--pairs")) {
            pairs = atoi(v);
        } else if (!strcmp(argv[i - 1], "--precision")) {
            if (!strcmp(v, "float32"))
                precision = MHA_PRECISION_FLOAT32;
            else if (!strcmp(v, "bfloat16"))
                precision = MHA_PRECISION_BFLOAT16;
            else
                return ab_usage();
        } else {
            return ab_usage();
        }
    }
    if (batch < 1 || seq < 1 || threads < 1 || pairs < 1 || pad < 0) return ab_usage();

    mha_error err;
    mha_model_options mo;
    mha_model_options_init(&mo);
    mo.skip_verify = 1;
    mha_model *model = NULL;
    if (mha_model_load_file(model_path, &mo, &model, &err) != MHA_OK) {
        fprintf(stderr, "plugin_ab: %s\n", err.message);
        return 1;
    }
    /* the plugin files by absolute path (the runtime never searches the
     * current folder, so a relative name would find its namesake elsewhere),
     * and each runtime's backend checked to come from its file */
    char path[2][PATH_MAX];
    mha_runtime *rt[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        if (!realpath(plugin[k], path[k])) {
            fprintf(stderr, "plugin_ab: %s: no such plugin file\n", plugin[k]);
            mha_runtime_destroy(rt[0]);
            mha_model_free(model);
            return 1;
        }
        mha_runtime_options ro;
        mha_runtime_options_init(&ro);
        ro.num_threads = threads;
        ro.backend = backend;
        ro.plugin_path = path[k];
        ro.no_env = 1;
        const char *chosen = NULL;
        char got[PATH_MAX];
        if (mha_runtime_create(&ro, &rt[k], &err) != MHA_OK) {
            fprintf(stderr, "plugin_ab: %s: %s\n", plugin[k], err.message);
        } else {
            for (size_t i = 0; i < mha_runtime_plugin_count(rt[k]); i++) {
                mha_plugin_info pi;
                if (mha_runtime_plugin(rt[k], i, &pi) == MHA_OK && pi.selected) chosen = pi.path;
            }
            if (!chosen || !realpath(chosen, got) || strcmp(path[k], got))
                fprintf(stderr, "plugin_ab: %s: not the %s backend the runtime chose (%s)\n",
                        plugin[k], backend, chosen ? chosen : "none");
            else
                continue;
        }
        mha_runtime_destroy(rt[0]);
        mha_runtime_destroy(rt[1]);
        mha_model_free(model);
        return 1;
    }

    mha_model_info info;
    mha_model_get_info(model, &info);
    if (info.num_inputs > AB_MAX_TENSORS || info.num_outputs > AB_MAX_TENSORS ||
        info.num_outputs < 1) {
        fprintf(stderr, "plugin_ab: %s: too many inputs or outputs\n", model_path);
        return 1;
    }
    mha_tensor in[AB_MAX_TENSORS], out[2][AB_MAX_TENSORS];
    memset(in, 0, sizeof in);
    memset(out, 0, sizeof out);
    uint32_t seed = 12345;
    for (size_t i = 0; i < info.num_inputs; i++) {
        mha_io_info io;
        mha_model_input(model, i, &io);
        mha_tensor *t = &in[i];
        t->dtype = io.dtype;
        t->rank = io.rank;
        int open = 0;
        for (int d = 0; d < io.rank; d++)
            t->shape[d] = io.shape[d] >= 0 ? io.shape[d] : open++ == 0 ? batch : seq;
        const int64_t n = mha_tensor_numel(t);
        const size_t es = mha_dtype_size(io.dtype);
        t->data = calloc((size_t)(n > 0 ? n : 1), es ? es : 1);
        if (!t->data) {
            fprintf(stderr, "plugin_ab: out of memory\n");
            return 1;
        }
        if (io.dtype == MHA_DTYPE_FLOAT32) {
            float *x = t->data;
            for (int64_t k = 0; k < n; k++) {
                seed = seed * 1664525u + 1013904223u;
                x[k] = (float)(seed >> 8) / 16777216.0f * 2.0f - 1.0f;
            }
        } else if (io.dtype == MHA_DTYPE_BOOL) { /* every key attended */
            const int ignore =
                io.role == MHA_ROLE_KEY_PADDING_MASK && info.key_padding_true_means_ignore;
            memset(t->data, ignore ? 0 : 1, (size_t)n);
        } else if (io.dtype == MHA_DTYPE_INT64 || io.dtype == MHA_DTYPE_INT32) {
            /* 1, or with --pad an attention mask [B, S] of a padded batch */
            const int padded = pad && io.role == MHA_ROLE_ATTN_MASK && t->rank == 2;
            for (int64_t k = 0; k < n; k++) {
                const int64_t s = padded ? t->shape[1] : 1, b = k / s;
                const int keep = !padded || k % s < s - pad * b % s;
                if (io.dtype == MHA_DTYPE_INT64)
                    ((int64_t *)t->data)[k] = keep;
                else
                    ((int32_t *)t->data)[k] = keep;
            }
        }
    }
    for (int k = 0; k < 2; k++) {
        if (mha_model_output_shapes(model, in, info.num_inputs, out[k], info.num_outputs, &err) !=
            MHA_OK) {
            fprintf(stderr, "plugin_ab: %s: %s\n", model_path, err.message);
            return 1;
        }
        for (size_t i = 0; i < info.num_outputs; i++) {
            const int64_t n = mha_tensor_numel(&out[k][i]);
            out[k][i].data = malloc((size_t)(n > 0 ? n : 1) * mha_dtype_size(out[k][i].dtype));
            if (!out[k][i].data) {
                fprintf(stderr, "plugin_ab: out of memory\n");
                return 1;
            }
        }
    }

    mha_run_options run;
    mha_run_options_init(&run);
    run.precision = precision;
    double flops = 0.0;
    run.flops = &flops;
    double *cpu[2], *wall[2], *ratio = malloc((size_t)pairs * sizeof(double));
    for (int k = 0; k < 2; k++) {
        cpu[k] = malloc((size_t)pairs * sizeof(double));
        wall[k] = malloc((size_t)pairs * sizeof(double));
        if (!cpu[k] || !wall[k] || !ratio) {
            fprintf(stderr, "plugin_ab: out of memory\n");
            return 1;
        }
        /* a warm-up run each: packed weights, scratch, pages */
        if (mha_run(rt[k], model, in, info.num_inputs, out[k], info.num_outputs, &run, &err) !=
            MHA_OK) {
            fprintf(stderr, "plugin_ab: %s: %s\n", plugin[k], err.message);
            return 1;
        }
    }
    for (int p = 0; p < pairs; p++) {
        for (int j = 0; j < 2; j++) {
            const int k = (p & 1) ? 1 - j : j;
            const double c0 = bench_clock(CLOCK_PROCESS_CPUTIME_ID),
                         w0 = bench_clock(CLOCK_MONOTONIC);
            if (mha_run(rt[k], model, in, info.num_inputs, out[k], info.num_outputs, &run, &err) !=
                MHA_OK) {
                fprintf(stderr, "plugin_ab: %s: %s\n", plugin[k], err.message);
                return 1;
            }
            cpu[k][p] = bench_clock(CLOCK_PROCESS_CPUTIME_ID) - c0;
            wall[k][p] = bench_clock(CLOCK_MONOTONIC) - w0;
        }
        ratio[p] = threads == 1 ? cpu[1][p] / cpu[0][p] : wall[1][p] / wall[0][p];
    }

    uint64_t hash[2];
    for (int k = 0; k < 2; k++) {
        const mha_tensor *o = &out[k][0];
        hash[k] = bench_fnv1a(o->data, (size_t)mha_tensor_numel(o) * mha_dtype_size(o->dtype));
        qsort(cpu[k], (size_t)pairs, sizeof(double), bench_cmp_double);
        qsort(wall[k], (size_t)pairs, sizeof(double), bench_cmp_double);
    }
    qsort(ratio, (size_t)pairs, sizeof(double), bench_cmp_double);
    printf("%s batch %lld seq %lld, %d thread(s), %s, %d pairs\n", model_path, (long long)batch,
           (long long)seq, threads, precision == MHA_PRECISION_BFLOAT16 ? "bfloat16" : "float32",
           pairs);
    for (int k = 0; k < 2; k++)
        printf("  %c %s: median cpu %.3f ms, wall %.3f ms (%.1f GFLOP/s by %s), output hash "
               "%016llx\n",
               'A' + k, plugin[k], 1e3 * cpu[k][pairs / 2], 1e3 * wall[k][pairs / 2],
               1e-9 * flops / (threads == 1 ? cpu[k][pairs / 2] : wall[k][pairs / 2]),
               threads == 1 ? "cpu" : "wall", (unsigned long long)hash[k]);
    printf("  B / A per pair (%s time): median %.4f, quartiles %.4f %.4f; bits %s\n",
           threads == 1 ? "cpu" : "wall", ratio[pairs / 2], ratio[pairs / 4],
           ratio[(3 * pairs) / 4], hash[0] == hash[1] ? "the same" : "DIFFER");

    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < info.num_outputs; i++)
            free(out[k][i].data);
        free(cpu[k]);
        free(wall[k]);
        mha_runtime_destroy(rt[k]);
    }
    for (size_t i = 0; i < info.num_inputs; i++)
        free(in[i].data);
    free(ratio);
    mha_model_free(model);
    return hash[0] == hash[1] ? 0 : 3;
}
