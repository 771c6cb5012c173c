/* bench_internal.h -- what the files of `mha bench` share: the options, the
 * summary of the model the probe child sends back, one configuration's
 * result (sent from its child through a pipe as plain bytes), and the
 * functions of each part (inputs, statistics, context, reports, server).
 *
 * Process layout: the parent never loads the model. A probe child loads it,
 * lists the backends, makes the seeded inputs and computes the scalar
 * reference; then one child per (backend, threads) loads, checks accuracy
 * against that reference and times. Each child's peak RSS is its own. */
#ifndef MHA_TOOLS_BENCH_INTERNAL_H
#define MHA_TOOLS_BENCH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mha/mha.h"
#include "mha_cli.h"

#define BENCH_NAME_MAX 64
#define BENCH_IO_NAME_MAX 256 /* graph input names: kept whole for ort_bench.js */
#define BENCH_ERROR_MAX (MHA_ERROR_MESSAGE_MAX + 128) /* a library message + context */
#define BENCH_MAX_BACKENDS 32
#define BENCH_MAX_THREADS 32
#define BENCH_MAX_INPUTS 16
#define BENCH_MAX_OUTPUTS 8
#define BENCH_MAX_TRIALS 64
#define BENCH_MIN_REPS 10
#define BENCH_MAX_REPS 1000000
#define BENCH_TOLERANCE_REL 1e-4 /* max |y - ref| / max |ref| */
/* The same bound in bfloat16 (--precision bfloat16), against the float32
 * scalar reference: rounding an operand to bfloat16 (8 significant bits)
 * moves it by at most 2^-8, a product by at most 2^-7; a layer chains three
 * such products (the projections, Q.K^T and P.V, the output projection),
 * so 3 x 2^-7 bounds the relative error of sums whose terms share a sign
 * (cancellation relative to max |ref| only lowers it). */
#define BENCH_TOLERANCE_REL_BF16 (3.0 / 128.0)
/* Offline run times kept per configuration for the JSON (the first ones, in
 * timing order): enough to redo the statistics, small enough to send back
 * through the pipe in one bench_result (16 KiB). */
#define BENCH_MAX_SAMPLES 2048
#define BENCH_CV_WARN 0.05         /* coefficient of variation */
#define BENCH_OTHER_CPUS_WARN 0.05 /* CPUs kept busy by other processes */

typedef enum bench_scenario { BENCH_OFFLINE = 0, BENCH_SERVER = 1 } bench_scenario;

typedef struct bench_options {
    const char *model_path;
    int64_t B, S, S_kv; /* S_kv = total keys attended (past + new) */
    int backend_all;    /* --backend all, or no --backend */
    int skip_scalar;    /* no --backend: all usable but scalar (minutes of
                           timing the reference for no news); see docs/BENCH.md */
    int has_auto;       /* "auto" is among backends */
    char backends[BENCH_MAX_BACKENDS][BENCH_NAME_MAX];
    int n_backends;
    int threads[BENCH_MAX_THREADS];
    int n_threads;
    int warmup;
    double min_time; /* seconds of timed repetitions */
    const char *json_path, *csv_path, *plot_path;
    bench_scenario scenario;
    uint64_t seed;
    int quiet;
    const char *plugin_path;
    double timeout; /* seconds a child may take before it is killed */
    /* server scenario */
    double p99_ms;         /* latency bound of the rate search */
    double server_time;    /* seconds per tried rate */
    int server_trials;     /* > 1: trials a rate, the median p99 decides */
    int clients;           /* client threads sharing one runtime */
    int max_batch;         /* 0: each client calls mha_run; else requests go
                              through an mha_queue batching up to this many */
    double batch_delay_ms; /* the queue's max_delay_ms */
    double batch_ms;       /* the queue's max_batch_ms (0: its default, < 0: off) */
    int dispatchers;       /* the queue's num_dispatchers (0: one per runtime thread) */
    int run_threads;       /* the queue's num_threads per batch run (0: the runtime's) */
    int caller_runs;       /* the queue's caller_runs */
    double max_queue_ms;   /* the queue's max_queue_ms (0: off) */
    double max_latency_ms; /* the queue's max_latency_ms (0: its default) */
    double server_rate;    /* > 0: one trial at this rate instead of the search */
    int precision;         /* MHA_PRECISION_* of every timed run (the reference: float32) */
} bench_options;

/* The accuracy bound of runs in `precision`. */
static inline double bench_tolerance(int precision) {
    return precision == MHA_PRECISION_BFLOAT16 ? BENCH_TOLERANCE_REL_BF16 : BENCH_TOLERANCE_REL;
}

/* One model input as the bench feeds it. */
typedef struct bench_input_desc {
    char name[BENCH_IO_NAME_MAX];
    mha_io_role role;
    mha_dtype dtype;
    int rank;
    int64_t shape[MHA_MAX_RANK];
} bench_input_desc;

/* What the probe child learnt; sent to the parent through the pipe,
 * followed by n_ref_floats floats of reference output. */
typedef struct bench_probe {
    int ok;
    char error[BENCH_ERROR_MAX];
    char form[BENCH_NAME_MAX];
    int has_projections, causal, cross, seq_first;
    int key_padding_true_means_ignore;
    int64_t d_model, d_kv, d_out, q_heads, kv_heads, d_head, d_head_v;
    int64_t B, Sq, Skv, S_past; /* the shape actually run (Skv: keys attended) */
    double flops;               /* per run, the count used for GFLOP/s */
    double flops_full;          /* the same without halving for causal */
    uint64_t cpu_features;
    int n_backends; /* usable backends, registry order */
    char backends[BENCH_MAX_BACKENDS][BENCH_NAME_MAX];
    char auto_backend[BENCH_NAME_MAX]; /* what "auto" picks here */
    char shape_note[256];              /* "" or: the run's shape departs from a static
                                          dimension of the model's inputs */
    int n_inputs;
    bench_input_desc inputs[BENCH_MAX_INPUTS];
    int n_outputs; /* float32 outputs compared */
    size_t output_floats[BENCH_MAX_OUTPUTS];
    size_t n_ref_floats; /* sum of output_floats */
    /* files of a --plugin-path folder that are no plugin (not for another
     * CPU: none that loads), and the registry's reason for the first */
    int n_broken;
    char broken[BENCH_ERROR_MAX];
} bench_probe;

/* One tried arrival rate of the server scenario; latencies of its requests
 * (arrival to completion, queueing included). */
typedef struct bench_trial {
    double target_rps, achieved_rps;
    double p50_ms, p90_ms, p99_ms, min_ms, mean_ms, cv;
    double max_ms;
    /* through the queue (else NAN): the p99 of the time from submit to the
     * batch's start (the rest of a latency is the run and the submitter's
     * own lateness), and the mean batch run a request was in */
    double wait_p99_ms, mean_batch;
    /* through the queue: the p99 of the requests it accepted (a refused one
     * counts as infinitely late in p99_ms) and how many it refused */
    double accepted_p99_ms;
    long refused;
    double cpu_ms; /* the process's CPU time (every thread) per request */
    long requests;
    int ok; /* p99 within the bound */
} bench_trial;

/* One (backend, threads) configuration. */
typedef struct bench_result {
    char backend[BENCH_NAME_MAX];
    int threads;
    int ran; /* 0: could not run, error says why */
    char error[BENCH_ERROR_MAX];
    int accuracy_ok;
    double max_abs_err, max_rel_err;
    double mean_rel_err; /* mean |y - ref| / max |ref| over the elements */
    /* offline: times of whole runs; server: request latencies at the
     * highest rate that met the bound (reps = its requests) */
    long reps;
    double median_ms, p90_ms, p99_ms, min_ms, mean_ms, cv, gflops;
    double p25_ms, p75_ms, max_ms;        /* offline: the quartiles (the plot's error bars) */
    int n_samples;                        /* offline: min(reps, BENCH_MAX_SAMPLES) */
    double samples_ms[BENCH_MAX_SAMPLES]; /* offline: run times, timing order */
    /* both */
    double peak_rss_mib;
    double other_cpus; /* CPUs kept busy by other processes while timing */
    double own_cpus;   /* CPUs this configuration kept busy */
    /* server */
    int server_found; /* some rate met the bound */
    double max_rate_rps, achieved_rps;
    double single_ms;          /* median latency of one request alone */
    double cpu_ms_per_request; /* of the reported trial */
    int n_trials;
    bench_trial trials[BENCH_MAX_TRIALS];
} bench_result;

/* The environment the numbers were taken in. */
typedef struct bench_context {
    char cpu_model[128];
    char isa[256];
    int online_cpus;
    char ftz_daz[160];
    char compiler[128];
    char c_flags[256];
    char build_type[32];
    char library_version[32];
    char git_commit[48];
    char date[32];
    double base_rss_mib; /* the bench parent's RSS when it forks */
} bench_context;

/* ---- inputs (bench_inputs.c) ---------------------------------------------- */
/* Random values come from cli_rng_* (mha_cli.h): the same seed gives the
 * same inputs in every child. */

/* The tensors of one run: inputs bound to the model, outputs allocated. */
typedef struct bench_tensors {
    mha_tensor inputs[BENCH_MAX_INPUTS];
    size_t n_inputs;
    mha_tensor outputs[BENCH_MAX_OUTPUTS];
    size_t n_outputs;
} bench_tensors;

/* Makes seeded inputs for model at batch B, Sq queries and Skv keys in all
 * (past + new), and allocates the outputs. Fills probe's shape, input and
 * output fields. Returns 0, or -1 with a message in msg. */
int bench_tensors_make(const mha_model *model, int64_t B, int64_t Sq, int64_t Skv, uint64_t seed,
                       bench_tensors *t, bench_probe *probe, char *msg, size_t msg_size);
void bench_tensors_free(bench_tensors *t);
/* Allocates another set of outputs shaped like t's (server clients). */
int bench_outputs_clone(const bench_tensors *t, mha_tensor *outputs);
void bench_outputs_free(mha_tensor *outputs, size_t n);

/* ---- statistics (bench_stats.c) ---------------------------------------- */

typedef struct bench_stats {
    double median, p25, p75, p90, p99, min, max, mean, cv;
} bench_stats;

/* Sorts v in place and fills *s. n >= 1. Percentiles interpolate linearly
 * between the order statistics. */
void bench_stats_compute(double *v, size_t n, bench_stats *s);
double bench_percentile_sorted(const double *v, size_t n, double p);

/* FLOPs of one run of the layer (docs/ARCHITECTURE.md section 1, written per
 * head so GQA and d_out != d_model count right; equal to the document's
 * formula when H*d_head = D). causal_halved: the attention term halved. */
double bench_flops(const bench_probe *p, int causal_halved);

/* Max |a - b| over n floats and max |b|; NaN in a counts as infinite. */
void bench_compare(const float *a, const float *b, size_t n, double *max_abs, double *max_ref);

/* ---- context (bench_context.c) ----------------------------------------- */

void bench_context_fill(bench_context *c, uint64_t cpu_features);
const char *bench_features_str(uint64_t features, char *buf, size_t size);
double bench_rss_now_mib(void);

/* Busy and total jiffies of all CPUs from /proc/stat. 0 on success. */
typedef struct bench_cpu_sample {
    unsigned long long busy, total;
    double wall;    /* seconds, CLOCK_MONOTONIC */
    double own_cpu; /* seconds of CPU this process used */
} bench_cpu_sample;
int bench_cpu_sample_take(bench_cpu_sample *s);
/* CPUs kept busy by processes other than this one between a and b. */
double bench_cpu_other(const bench_cpu_sample *a, const bench_cpu_sample *b, int online,
                       double *own_cpus);
double bench_now(void); /* seconds, CLOCK_MONOTONIC */

/* ---- reports (bench_report.c) ------------------------------------------ */

typedef struct bench_report {
    const bench_options *opts;
    const bench_probe *probe;
    const bench_context *ctx;
    const bench_result *results;
    int n_results;
} bench_report;

void bench_report_table(const bench_report *r, FILE *out);
/* Warnings (CV, busy CPUs, thread count over cores) to out; count returned. */
int bench_report_warnings(const bench_report *r, FILE *out);
/* Each writes atomically (temp file + rename). 0 ok, -1 with msg. */
int bench_report_json(const bench_report *r, const char *path, char *msg, size_t msg_size);
int bench_report_csv(const bench_report *r, const char *path, char *msg, size_t msg_size);
int bench_report_svg(const bench_report *r, const char *path, char *msg, size_t msg_size);

/* ---- server scenario (bench_server.c) ---------------------------------- */

/* Searches the highest Poisson arrival rate whose p99 latency stays under
 * opts->p99_ms, with opts->clients threads sharing rt. Fills the server
 * fields of *res. 0 ok, -1 with res->error set. */
int bench_server_run(mha_runtime *rt, const mha_model *model, bench_tensors *t,
                     const bench_options *opts, bench_result *res);

#endif
