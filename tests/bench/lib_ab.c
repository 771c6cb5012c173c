/* lib_ab.c -- two builds of libmha itself side by side on one model, in one
 * process (a program, not a test: it prints figures and checks only that
 * both builds give the same bits).
 *
 * plugin_ab compares two builds of a backend plugin under one library; a
 * change to the engine (the pool, the executor, the planner) needs two
 * builds of the library. Both shared objects (say the build before a change,
 * copied aside, and the one after) are opened with dlopen(RTLD_LOCAL), so
 * each keeps its own symbols and state; each loads the model and creates a
 * runtime on the same plugin file (--plugin; default: the avx512 plugin of
 * this build tree). Their runs alternate on the same inputs: A B, B A, A B,
 * ... (the order flips every pair). Each side of a pair is one untimed run
 * (the other runtime's worker went to sleep meanwhile: its wake-up is not
 * what is compared) and then --block timed runs back to back (give short
 * layers, W2-sized, a block of 20); the figures are the per-run mean of the
 * block's wall time and process CPU time (CLOCK_PROCESS_CPUTIME_ID: every
 * thread's). Printed: the medians per side and the median and quartiles
 * over the pairs of the ratios B / A of both.
 *
 * The first output of both sides is hashed (FNV-1a) after the last pair: a
 * change meant to keep the bits must print the same hash twice; the exit
 * status is 3 when they differ.
 *
 * Inputs: floats uniform in [-1, 1) from a fixed seed, token ids in [0,
 * 1000), other integers 1, boolean masks true; a dimension the model leaves
 * open is the batch (the first such dimension of an input, --batch) or the
 * sequence (any later one, --seq).
 *
 * Usage: lib_ab MODEL LIBMHA_A.so LIBMHA_B.so [--plugin FILE] [--backend NAME]
 *               [--batch B] [--seq S] [--threads N] [--pairs N] [--block N]
 * Exit: 0 done (same bits), 3 the bits differ, 1 a failure, 2 usage. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mha/mha.h"

#include "bench_inputs.h"
#include "bench_util.h"

#define LAB_MAX_TENSORS 16

#ifndef MHA_PLUGIN_BUILD_DIR
#define MHA_PLUGIN_BUILD_DIR "."
#endif

/* The part of the public API this program calls, from one library. */
typedef struct lab_api {
    void *handle;
    __typeof__(mha_model_options_init) *model_options_init;
    __typeof__(mha_model_load_file) *model_load_file;
    __typeof__(mha_model_get_info) *model_get_info;
    __typeof__(mha_model_input) *model_input;
    __typeof__(mha_model_output_shapes) *model_output_shapes;
    __typeof__(mha_model_free) *model_free;
    __typeof__(mha_runtime_options_init) *runtime_options_init;
    __typeof__(mha_runtime_create) *runtime_create;
    __typeof__(mha_runtime_destroy) *runtime_destroy;
    __typeof__(mha_run_options_init) *run_options_init;
    __typeof__(mha_run) *run;
    __typeof__(mha_tensor_numel) *tensor_numel;
    __typeof__(mha_dtype_size) *dtype_size;
} lab_api;

/* One side: its library, model, runtime and tensors. */
typedef struct lab_side {
    const char *path;
    lab_api api;
    mha_model *model;
    mha_runtime *rt;
    mha_tensor in[LAB_MAX_TENSORS], out[LAB_MAX_TENSORS];
    size_t n_in, n_out;
    double *wall, *cpu; /* [pairs], seconds per run */
} lab_side;

static int lab_usage(void) {
    fprintf(stderr, "usage: lib_ab MODEL LIBMHA_A.so LIBMHA_B.so [--plugin FILE] [--backend NAME] "
                    "[--batch B] [--seq S] [--threads N] [--pairs N] [--block N]\n");
    return 2;
}

static int lab_open(lab_side *s) {
    char real[PATH_MAX];
    if (!realpath(s->path, real)) {
        fprintf(stderr, "lib_ab: %s: no such library\n", s->path);
        return -1;
    }
    lab_api *a = &s->api;
    a->handle = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (!a->handle) {
        fprintf(stderr, "lib_ab: %s\n", dlerror());
        return -1;
    }
    struct {
        void **slot;
        const char *name;
    } syms[] = {{(void **)&a->model_options_init, "mha_model_options_init"},
                {(void **)&a->model_load_file, "mha_model_load_file"},
                {(void **)&a->model_get_info, "mha_model_get_info"},
                {(void **)&a->model_input, "mha_model_input"},
                {(void **)&a->model_output_shapes, "mha_model_output_shapes"},
                {(void **)&a->model_free, "mha_model_free"},
                {(void **)&a->runtime_options_init, "mha_runtime_options_init"},
                {(void **)&a->runtime_create, "mha_runtime_create"},
                {(void **)&a->runtime_destroy, "mha_runtime_destroy"},
                {(void **)&a->run_options_init, "mha_run_options_init"},
                {(void **)&a->run, "mha_run"},
                {(void **)&a->tensor_numel, "mha_tensor_numel"},
                {(void **)&a->dtype_size, "mha_dtype_size"}};
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].slot = dlsym(a->handle, syms[i].name);
        if (!*syms[i].slot) {
            fprintf(stderr, "lib_ab: %s: no symbol %s\n", s->path, syms[i].name);
            return -1;
        }
    }
    return 0;
}

/* Seeded inputs for the model's open axes (see the top of the file). */
static int lab_inputs(lab_side *s, int64_t batch, int64_t seq) {
    const lab_api *a = &s->api;
    uint32_t seed = 12345;
    for (size_t i = 0; i < s->n_in; i++) {
        mha_io_info io;
        a->model_input(s->model, i, &io);
        mha_tensor *t = &s->in[i];
        t->dtype = io.dtype;
        t->rank = io.rank;
        int open = 0;
        for (int d = 0; d < io.rank; d++)
            t->shape[d] = io.shape[d] >= 0 ? io.shape[d] : open++ == 0 ? batch : seq;
        const int64_t n = a->tensor_numel(t);
        const size_t es = a->dtype_size(io.dtype);
        t->data = calloc((size_t)(n > 0 ? n : 1), es ? es : 1);
        if (!t->data) return -1;
        bench_fill_seeded(t->data, n, io.dtype, io.role == MHA_ROLE_TOKEN_IDS, &seed);
    }
    return 0;
}

static int lab_setup(lab_side *s, const char *model_path, const char *plugin, const char *backend,
                     int threads, int64_t batch, int64_t seq) {
    const lab_api *a = &s->api;
    mha_error err;
    mha_model_options mo;
    a->model_options_init(&mo);
    mo.skip_verify = 1;
    if (a->model_load_file(model_path, &mo, &s->model, &err) != MHA_OK) {
        fprintf(stderr, "lib_ab: %s: %s\n", s->path, err.message);
        return -1;
    }
    mha_runtime_options ro;
    a->runtime_options_init(&ro);
    ro.num_threads = threads;
    ro.backend = backend;
    ro.plugin_path = plugin;
    ro.no_env = 1;
    if (a->runtime_create(&ro, &s->rt, &err) != MHA_OK) {
        fprintf(stderr, "lib_ab: %s: %s\n", s->path, err.message);
        return -1;
    }
    mha_model_info info;
    a->model_get_info(s->model, &info);
    if (info.num_inputs > LAB_MAX_TENSORS || info.num_outputs > LAB_MAX_TENSORS ||
        info.num_outputs < 1) {
        fprintf(stderr, "lib_ab: %s: too many inputs or outputs\n", model_path);
        return -1;
    }
    s->n_in = info.num_inputs;
    s->n_out = info.num_outputs;
    if (lab_inputs(s, batch, seq) != 0 ||
        a->model_output_shapes(s->model, s->in, s->n_in, s->out, s->n_out, &err) != MHA_OK) {
        fprintf(stderr, "lib_ab: %s: %s\n", model_path, err.message);
        return -1;
    }
    for (size_t i = 0; i < s->n_out; i++) {
        const int64_t n = a->tensor_numel(&s->out[i]);
        s->out[i].data = malloc((size_t)(n > 0 ? n : 1) * a->dtype_size(s->out[i].dtype));
        if (!s->out[i].data) return -1;
    }
    return 0;
}

static int lab_run(lab_side *s) {
    mha_run_options run;
    mha_error err;
    s->api.run_options_init(&run);
    if (s->api.run(s->rt, s->model, s->in, s->n_in, s->out, s->n_out, &run, &err) == MHA_OK)
        return 0;
    fprintf(stderr, "lib_ab: %s: %s\n", s->path, err.message);
    return -1;
}

static void lab_free(lab_side *s) {
    for (size_t i = 0; i < LAB_MAX_TENSORS; i++) {
        free(s->in[i].data);
        free(s->out[i].data);
    }
    if (s->rt) s->api.runtime_destroy(s->rt);
    if (s->model) s->api.model_free(s->model);
    free(s->wall);
    free(s->cpu);
}

int main(int argc, char **argv) {
    if (argc < 4 || argv[2][0] == '-' || argv[3][0] == '-') return lab_usage();
    const char *model_path = argv[1], *plugin = MHA_PLUGIN_BUILD_DIR "/mha-plugin-avx512.so";
    const char *backend = "avx512";
    int64_t batch = 1, seq = 128;
    int threads = 2, pairs = 21, block = 1;
    for (int i = 4; i < argc; i += 2) {
        if (i + 1 >= argc) return lab_usage();
        const char *opt = argv[i], *v = argv[i + 1];
        if (!strcmp(opt, "--plugin"))
            plugin = v;
        else if (!strcmp(opt, "--backend"))
            backend = v;
        else if (!strcmp(opt, "--batch"))
            batch = atoll(v);
        else if (!strcmp(opt, "--seq"))
            seq = atoll(v);
        else if (!strcmp(opt, "--threads"))
            threads = atoi(v);
        else if (!strcmp(opt, "--pairs"))
            pairs = atoi(v);
        else if (!strcmp(opt, "--block"))
            block = atoi(v);
        else
            return lab_usage();
    }
    if (batch < 1 || seq < 1 || threads < 1 || pairs < 1 || block < 1) return lab_usage();
    char plugin_real[PATH_MAX];
    if (!realpath(plugin, plugin_real)) {
        fprintf(stderr, "lib_ab: %s: no such plugin file\n", plugin);
        return 1;
    }

    lab_side side[2];
    memset(side, 0, sizeof side);
    side[0].path = argv[2];
    side[1].path = argv[3];
    double *ratio_wall = malloc((size_t)pairs * sizeof(double));
    double *ratio_cpu = malloc((size_t)pairs * sizeof(double));
    int rc = 1;
    for (int k = 0; k < 2; k++) {
        lab_side *s = &side[k];
        s->wall = malloc((size_t)pairs * sizeof(double));
        s->cpu = malloc((size_t)pairs * sizeof(double));
        if (!s->wall || !s->cpu || !ratio_wall || !ratio_cpu) {
            fprintf(stderr, "lib_ab: out of memory\n");
            goto done;
        }
        if (lab_open(s) != 0 ||
            lab_setup(s, model_path, plugin_real, backend, threads, batch, seq) != 0 ||
            lab_run(s) != 0 || lab_run(s) != 0) /* warm-up: packed weights, scratch, pages */
            goto done;
    }
    for (int p = 0; p < pairs; p++) {
        for (int j = 0; j < 2; j++) {
            lab_side *s = &side[(p & 1) ? 1 - j : j];
            if (lab_run(s) != 0) goto done; /* untimed: the worker's wake-up */
            const double c0 = bench_clock(CLOCK_PROCESS_CPUTIME_ID),
                         w0 = bench_clock(CLOCK_MONOTONIC);
            for (int r = 0; r < block; r++)
                if (lab_run(s) != 0) goto done;
            s->cpu[p] = (bench_clock(CLOCK_PROCESS_CPUTIME_ID) - c0) / block;
            s->wall[p] = (bench_clock(CLOCK_MONOTONIC) - w0) / block;
        }
        ratio_wall[p] = side[1].wall[p] / side[0].wall[p];
        ratio_cpu[p] = side[1].cpu[p] / side[0].cpu[p];
    }

    uint64_t hash[2];
    for (int k = 0; k < 2; k++) {
        const mha_tensor *o = &side[k].out[0];
        hash[k] = bench_fnv1a(o->data, (size_t)side[k].api.tensor_numel(o) *
                                           side[k].api.dtype_size(o->dtype));
        qsort(side[k].wall, (size_t)pairs, sizeof(double), bench_cmp_double);
        qsort(side[k].cpu, (size_t)pairs, sizeof(double), bench_cmp_double);
    }
    qsort(ratio_wall, (size_t)pairs, sizeof(double), bench_cmp_double);
    qsort(ratio_cpu, (size_t)pairs, sizeof(double), bench_cmp_double);
    printf("%s batch %lld seq %lld, %d thread(s), %d pairs of %d run(s)\n", model_path,
           (long long)batch, (long long)seq, threads, pairs, block);
    for (int k = 0; k < 2; k++)
        printf("  %c %s: median wall %.3f ms, cpu %.3f ms per run, output hash %016llx\n", 'A' + k,
               side[k].path, 1e3 * side[k].wall[pairs / 2], 1e3 * side[k].cpu[pairs / 2],
               (unsigned long long)hash[k]);
    printf("  B / A per pair: wall %.4f [%.4f, %.4f], cpu %.4f [%.4f, %.4f]; bits %s\n",
           ratio_wall[pairs / 2], ratio_wall[pairs / 4], ratio_wall[(3 * pairs) / 4],
           ratio_cpu[pairs / 2], ratio_cpu[pairs / 4], ratio_cpu[(3 * pairs) / 4],
           hash[0] == hash[1] ? "the same" : "DIFFER");
    rc = hash[0] == hash[1] ? 0 : 3;
done:
    for (int k = 0; k < 2; k++)
        lab_free(&side[k]);
    free(ratio_wall);
    free(ratio_cpu);
    return rc;
}
