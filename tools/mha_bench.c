/* mha_bench.c -- `mha bench`: the command line, and the processes that do
 * the work.
 *
 *   parent   parses the options, forks, collects, reports; never loads the
 *            model, so a child's peak RSS is (almost) its own
 *   probe    loads the model, lists the usable backends, makes the seeded
 *            inputs and runs the scalar reference; sends back a bench_probe
 *            followed by the reference outputs (float32, model output order)
 *   config   one per (backend, threads): loads the model, makes the same
 *            inputs, checks the first output against the reference, then
 *            times (offline) or searches the sustainable rate (server);
 *            sends back a bench_result. Its peak RSS comes from wait4().
 *
 * Exit status: 0 every configuration ran and passed the accuracy check,
 * 1 one failed (or could not run, or a file could not be written),
 * 2 usage error. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_internal.h"
#include "cli_options.h"
#include "mha_bench.h"

enum {
    BENCH_OPT_SHAPE = 1,
    BENCH_OPT_BACKEND,
    BENCH_OPT_THREADS,
    BENCH_OPT_WARMUP,
    BENCH_OPT_MIN_TIME,
    BENCH_OPT_JSON,
    BENCH_OPT_CSV,
    BENCH_OPT_PLOT,
    BENCH_OPT_SCENARIO,
    BENCH_OPT_P99_MS,
    BENCH_OPT_SERVER_TIME,
    BENCH_OPT_SERVER_TRIALS,
    BENCH_OPT_CLIENTS,
    BENCH_OPT_MAX_BATCH,
    BENCH_OPT_BATCH_DELAY_MS,
    BENCH_OPT_BATCH_MS,
    BENCH_OPT_DISPATCHERS,
    BENCH_OPT_RUN_THREADS,
    BENCH_OPT_CALLER_RUNS,
    BENCH_OPT_MAX_QUEUE_MS,
    BENCH_OPT_MAX_LATENCY_MS,
    BENCH_OPT_SERVER_RATE,
    BENCH_OPT_SEED,
    BENCH_OPT_PLUGIN_PATH,
    BENCH_OPT_TIMEOUT,
    BENCH_OPT_QUIET,
};

static const cli_opt bench_opts[] = {
    {BENCH_OPT_SHAPE, "shape", 0, "B,S[,S_kv]",
     "batch and sequence lengths (required). S_kv: keys attended\n"
     "in all (default S); with past key/value inputs the new keys\n"
     "are the S queries and S_kv - S come from the cache."},
    {BENCH_OPT_BACKEND, "backend", 0, "all|NAME,...",
     "backends to time (default: every usable backend but\n"
     "scalar, the slow reference, unless it is the only one;\n"
     "all = every usable backend, scalar included; auto = what\n"
     "the runtime would pick, MHA_BACKEND included)"},
    {BENCH_OPT_THREADS, "threads", 0, "LIST",
     "thread counts, e.g. 1,2,4, each in [0, 1024] (0: every\n"
     "online CPU; default 1 and the online CPUs)"},
    {BENCH_OPT_WARMUP, "warmup", 0, "N", "untimed runs first (default 3)"},
    {BENCH_OPT_MIN_TIME, "min-time", 0, "SEC",
     "time repetitions for at least SEC (default 2; >= 10 reps)"},
    {BENCH_OPT_JSON, "json", 0, "FILE", "write the results as JSON (atomically)"},
    {BENCH_OPT_CSV, "csv", 0, "FILE", "write the results as CSV (atomically)"},
    {BENCH_OPT_PLOT, "plot", 0, "FILE.svg", "write a bar chart (atomically)"},
    {BENCH_OPT_SCENARIO, "scenario", 0, "offline|server",
     "throughput of whole batches (default), or batch-1\n"
     "requests at a Poisson rate (MLPerf server)"},
    {BENCH_OPT_P99_MS, "p99-ms", 0, "X",
     "server: p99 latency bound of the rate search (default 10)"},
    {BENCH_OPT_SERVER_TIME, "server-time", 0, "SEC",
     "server: seconds per tried rate (default 0.5)"},
    {BENCH_OPT_SERVER_TRIALS, "server-trials", 0, "N",
     "server: trials a tried rate, the median p99 deciding\n"
     "(default 1: a miss is tried once more, two misses decide)"},
    {BENCH_OPT_CLIENTS, "clients", 0, "N",
     "server: client threads sharing one runtime (default 4)"},
    {BENCH_OPT_MAX_BATCH, "max-batch", 0, "N",
     "server: submit through the library's request queue,\n"
     "batching up to N requests (default 0: no queue)"},
    {BENCH_OPT_BATCH_DELAY_MS, "batch-delay-ms", 0, "X",
     "server: how long a batch waits for company (default 1)"},
    {BENCH_OPT_BATCH_MS, "batch-ms", 0, "X",
     "server: the queue's max_batch_ms: a batch takes requests\n"
     "while they would compute in X ms (default 0: the queue's\n"
     "2 ms, a fifth of a 10 ms target; off: no such bound)"},
    {BENCH_OPT_DISPATCHERS, "dispatchers", 0, "N",
     "server: the queue's num_dispatchers: batches computed at\n"
     "once, sharing the runtime's threads (default 0: one per\n"
     "runtime thread)"},
    {BENCH_OPT_RUN_THREADS, "run-threads", 0, "N",
     "server: the queue's num_threads: threads of each batch's\n"
     "run (default 0: one while the batch is short, see\n"
     "--batch-ms, else the runtime's, shared out between the\n"
     "runs in progress; 1: every batch on one core)"},
    {BENCH_OPT_CALLER_RUNS, "caller-runs", 0, NULL,
     "server: the queue's caller_runs: a client waiting on its\n"
     "request computes the next batch itself while a core is free"},
    {BENCH_OPT_MAX_QUEUE_MS, "max-queue-ms", 0, "X",
     "server: the queue's max_queue_ms: refuse a request when the\n"
     "work ahead would take longer than X ms (default 0: off)"},
    {BENCH_OPT_MAX_LATENCY_MS, "max-latency-ms", 0, "X",
     "server: the queue's max_latency_ms: refuse a request whose\n"
     "predicted completion passes X ms (default 0: twice\n"
     "--max-queue-ms if given, else off; off: none). With\n"
     "--server-rate past saturation: the overload row (accepted\n"
     "p99, refused)"},
    {BENCH_OPT_SERVER_RATE, "server-rate", 0, "R",
     "server: one trial of --server-time at R requests/s instead\n"
     "of the search (above what it sustains: saturation); its\n"
     "CPU time per request is in the JSON (cpu_ms_per_request)"},
    {BENCH_OPT_SEED, "seed", 0, "N", "seed of the random inputs (default 1)"},
    {BENCH_OPT_PLUGIN_PATH, "plugin-path", 0, "PATH", "plugin file or folder searched first"},
    {BENCH_OPT_TIMEOUT, "timeout", 0, "SEC",
     "kill a configuration that takes longer (default 600)"},
    {BENCH_OPT_QUIET, "quiet", 'q', NULL,
     "no progress and no table (warnings and errors still shown)"},
    {0},
};

/* Its own --backend and --threads (lists); --precision is the shared one. */
static const cli_spec bench_spec = {
    "Usage: mha bench MODEL --shape B,S[,S_kv] [options]\n"
    "\n"
    "Times backends and thread counts on MODEL with seeded random inputs, each\n"
    "configuration in its own process, checked against the scalar reference.\n"
    "--precision bfloat16 times the bfloat16 compute mode (in the server scenario\n"
    "every request and every batch of the queue in bfloat16); its errors are\n"
    "against the float32 reference. See docs/BENCH.md.\n",
    bench_opts,
    CLI_COMMON_PRECISION,
    NULL,
};

/* ---- option parsing ----------------------------------------------------- */

static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!cli_number_text(s) || errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!cli_number_text(s) || errno || end == s || *end || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

/* "B,S[,S_kv]" */
static int parse_shape(const char *s, bench_options *o) {
    int64_t v[3];
    int n = 0;
    const char *p = s;
    while (n < 3) {
        char part[32];
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= sizeof part) return -1;
        memcpy(part, p, len);
        part[len] = '\0';
        if (parse_i64(part, 1, INT32_MAX, &v[n]) != 0) return -1;
        n++;
        p += len;
        if (*p == '\0') break;
        p++;
    }
    if (*p != '\0' || n < 2) return -1;
    o->B = v[0];
    o->S = v[1];
    o->S_kv = n == 3 ? v[2] : v[1];
    return 0;
}

static int valid_backend_name(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return 0;
    return 1;
}

static int parse_backends(const char *s, bench_options *o) {
    o->n_backends = 0;
    o->backend_all = 0;
    o->skip_scalar = 0;
    if (strcmp(s, "all") == 0) {
        o->backend_all = 1;
        return 0;
    }
    const char *p = s;
    for (;;) {
        size_t len = strcspn(p, ",");
        if (len == 0 || len >= BENCH_NAME_MAX || o->n_backends >= BENCH_MAX_BACKENDS) return -1;
        char *dst = o->backends[o->n_backends];
        memcpy(dst, p, len);
        dst[len] = '\0';
        if (!valid_backend_name(dst) || strcmp(dst, "all") == 0) return -1;
        if (strcmp(dst, "auto") == 0) o->has_auto = 1;
        int dup = 0;
        for (int i = 0; i < o->n_backends; i++)
            dup |= strcmp(o->backends[i], dst) == 0;
        if (!dup) o->n_backends++;
        p += len;
        if (*p == '\0') break;
        p++;
    }
    return 0;
}

/* Returns -1 to go on, else the exit status (a usage error printed, or
 * --help / --version answered). */
static int parse_args(int argc, char **argv, bench_options *o, cli_common *c) {
    int have_shape = 0;
    memset(o, 0, sizeof *o);
    o->backend_all = 1;
    o->skip_scalar = 1;
    o->warmup = 3;
    o->min_time = 2.0;
    o->scenario = BENCH_OFFLINE;
    o->seed = 1;
    o->p99_ms = 10.0;
    o->server_time = 0.5;
    o->server_trials = 1;
    o->clients = 4;
    o->dispatchers = 0;
    o->run_threads = 0;
    o->batch_delay_ms = 1.0;
    o->timeout = 600.0;

    cli_parser p;
    if (cli_parse_begin(&p, &bench_spec, c, argc, argv) != 0) return cli_fail("too many options");
    for (int id; (id = cli_parse_next(&p)) != CLI_PARSE_END;) {
        const char *val = p.value;
        long long n;
        switch (id) {
        case CLI_PARSE_EXIT:
            return p.status;
        case CLI_PARSE_ARG:
            if (o->model_path) return cli_usage_error(c, "more than one model given ('%s')", val);
            o->model_path = val;
            break;
        case BENCH_OPT_QUIET:
            o->quiet = 1;
            break;
        case BENCH_OPT_SHAPE:
            if (parse_shape(val, o) != 0)
                return cli_usage_error(c,
                                       "--shape wants B,S or B,S,S_kv (positive integers), "
                                       "not '%s'",
                                       val);
            have_shape = 1;
            break;
        case BENCH_OPT_BACKEND:
            if (parse_backends(val, o) != 0)
                return cli_usage_error(c,
                                       "--backend wants 'all' or names like scalar,avx2 "
                                       "([a-z0-9_]), not '%s'",
                                       val);
            break;
        case BENCH_OPT_THREADS:
            if (!cli_parse_thread_list(c, val, o->threads, BENCH_MAX_THREADS, &o->n_threads))
                return CLI_USAGE;
            break;
        case BENCH_OPT_WARMUP:
            if (!cli_parse_int(c, "--warmup", val, 0, 1000000, &n)) return CLI_USAGE;
            o->warmup = (int)n;
            break;
        case BENCH_OPT_MIN_TIME:
            if (parse_double(val, 0.0, 86400.0, &o->min_time) != 0)
                return cli_usage_error(c, "--min-time wants seconds >= 0, not '%s'", val);
            break;
        case BENCH_OPT_JSON:
            o->json_path = val;
            break;
        case BENCH_OPT_CSV:
            o->csv_path = val;
            break;
        case BENCH_OPT_PLOT:
            o->plot_path = val;
            break;
        case BENCH_OPT_SCENARIO:
            if (strcmp(val, "offline") == 0)
                o->scenario = BENCH_OFFLINE;
            else if (strcmp(val, "server") == 0)
                o->scenario = BENCH_SERVER;
            else
                return cli_usage_error(c, "--scenario wants offline or server, not '%s'", val);
            break;
        case BENCH_OPT_SEED: /* as gen's --seed */
            if (!cli_parse_int(c, "--seed", val, 0, INT64_MAX, &n)) return CLI_USAGE;
            o->seed = (unsigned long long)n;
            break;
        case BENCH_OPT_TIMEOUT:
            if (parse_double(val, 1.0, 1e6, &o->timeout) != 0)
                return cli_usage_error(c, "--timeout wants seconds >= 1, not '%s'", val);
            break;
        case BENCH_OPT_PLUGIN_PATH:
            o->plugin_path = val;
            break;
        case BENCH_OPT_P99_MS:
            if (parse_double(val, 1e-3, 1e7, &o->p99_ms) != 0)
                return cli_usage_error(c, "--p99-ms wants milliseconds > 0, not '%s'", val);
            break;
        case BENCH_OPT_SERVER_TIME:
            if (parse_double(val, 0.01, 3600.0, &o->server_time) != 0)
                return cli_usage_error(c, "--server-time wants seconds >= 0.01, not '%s'", val);
            break;
        case BENCH_OPT_SERVER_TRIALS:
            if (!cli_parse_int(c, "--server-trials", val, 1, 9, &n)) return CLI_USAGE;
            o->server_trials = (int)n;
            break;
        case BENCH_OPT_CLIENTS:
            if (!cli_parse_int(c, "--clients", val, 1, 256, &n)) return CLI_USAGE;
            o->clients = (int)n;
            break;
        case BENCH_OPT_MAX_BATCH:
            if (!cli_parse_int(c, "--max-batch", val, 0, 4096, &n)) return CLI_USAGE;
            o->max_batch = (int)n;
            break;
        case BENCH_OPT_DISPATCHERS:
            if (!cli_parse_int(c, "--dispatchers", val, 0, 64, &n)) return CLI_USAGE;
            o->dispatchers = (int)n;
            break;
        case BENCH_OPT_RUN_THREADS:
            if (!cli_parse_int(c, "--run-threads", val, 0, 1024, &n)) return CLI_USAGE;
            o->run_threads = (int)n;
            break;
        case BENCH_OPT_CALLER_RUNS:
            o->caller_runs = 1;
            break;
        case BENCH_OPT_SERVER_RATE:
            if (parse_double(val, 1e-3, 1e7, &o->server_rate) != 0)
                return cli_usage_error(c, "--server-rate wants requests per second > 0, not '%s'",
                                       val);
            break;
        case BENCH_OPT_MAX_QUEUE_MS:
        case BENCH_OPT_MAX_LATENCY_MS:
            if (id == BENCH_OPT_MAX_LATENCY_MS && !strcmp(val, "off")) {
                o->max_latency_ms = -1.0; /* mha.h: negative is off */
                break;
            }
            /* the bounds and words of `mha serve`'s same options */
            if (parse_double(val, 0.0, 600000.0,
                             id == BENCH_OPT_MAX_QUEUE_MS ? &o->max_queue_ms
                                                          : &o->max_latency_ms) != 0)
                return cli_usage_error(
                    c, "--%s wants milliseconds in [0, 600000], got '%s'",
                    id == BENCH_OPT_MAX_QUEUE_MS ? "max-queue-ms" : "max-latency-ms", val);
            break;
        case BENCH_OPT_BATCH_DELAY_MS:
        case BENCH_OPT_BATCH_MS:
            if (id == BENCH_OPT_BATCH_MS && !strcmp(val, "off")) {
                o->batch_ms = -1.0; /* mha.h: negative is off */
                break;
            }
            if (parse_double(val, 0.0, 60000.0,
                             id == BENCH_OPT_BATCH_MS ? &o->batch_ms : &o->batch_delay_ms) != 0)
                return cli_usage_error(c, "--%s wants milliseconds >= 0, not '%s'",
                                       id == BENCH_OPT_BATCH_MS ? "batch-ms" : "batch-delay-ms",
                                       val);
            break;
        }
    }
    o->precision = c->precision;
    if (!o->model_path) return cli_usage_error(c, "no model given");
    if (!have_shape) return cli_usage_error(c, "--shape B,S[,S_kv] is required");
    if (o->n_threads == 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        o->threads[o->n_threads++] = 1;
        if (online > 1) o->threads[o->n_threads++] = (int)(online > 1024 ? 1024 : online);
    }
    return -1;
}

/* ---- pipe helpers ------------------------------------------------------- */

static int write_full(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_full(int fd, void *buf, size_t n) {
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Why a child ended without an answer, from its wait status. */
static void describe_exit(int status, double timeout, char *buf, size_t size) {
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        snprintf(buf, size, "timed out: the child process took more than %.0f s (--timeout)",
                 timeout);
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "the child process was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else if (WIFEXITED(status))
        snprintf(buf, size, "the child process exited with status %d without a result",
                 WEXITSTATUS(status));
    else
        snprintf(buf, size, "the child process ended abnormally");
}

/* ---- children ----------------------------------------------------------- */

static mha_status runtime_open(const bench_options *o, const char *backend, int threads,
                               mha_runtime **rt, mha_error *err) {
    mha_runtime_options ro;
    mha_runtime_options_init(&ro);
    ro.backend = backend;
    ro.num_threads = threads;
    ro.plugin_path = o->plugin_path;
    return mha_runtime_create(&ro, rt, err);
}

/* The run options of a timed configuration: its precision. */
static mha_run_options bench_run_options(const bench_options *o) {
    mha_run_options ro;
    mha_run_options_init(&ro);
    ro.precision = o->precision;
    return ro;
}

static int64_t run_batch(const bench_options *o) {
    return o->scenario == BENCH_SERVER ? 1 : o->B;
}

/* Threads of the reference run: the widest configuration, at most the
 * online CPUs (the result is bitwise the same for any count). */
static int reference_threads(const bench_options *o) {
    int m = 1;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 0; i < o->n_threads; i++)
        if (o->threads[i] > m) m = o->threads[i];
    if (online >= 1 && m > online) m = (int)online;
    return m;
}

/* The probe child: see the top of the file. Never returns. */
static void probe_child(const bench_options *o, int fd) {
    bench_probe p;
    bench_tensors t;
    mha_model *model = NULL;
    mha_runtime *rt = NULL;
    mha_error err;
    float *ref = NULL;
    mha_status st;
    memset(&p, 0, sizeof p);
    memset(&t, 0, sizeof t);
    mha_error_clear(&err);

    st = mha_model_load_file(o->model_path, NULL, &model, &err);
    if (st != MHA_OK) {
        snprintf(p.error, sizeof p.error, "%s", err.message[0] ? err.message : mha_status_text(st));
        goto send;
    }
    /* every usable plugin: a runtime made for "auto" opens them all (one
     * made for "scalar" opens only scalar's file); first, while this
     * process has one thread and plugins are probed in child processes */
    mha_runtime *rt_all = NULL;
    st = runtime_open(o, "auto", 1, &rt_all, &err);
    if (st != MHA_OK) {
        snprintf(p.error, sizeof p.error, "listing the backends: %s", err.message);
        goto send;
    }
    /* a --plugin-path file that is no plugin usable here (an empty file, a
     * FIFO, one for another CPU) was left out in silence, the others timed:
     * refused. Files of a --plugin-path folder that are no plugin at all
     * (they cannot be opened, loaded or read as one; one that only refuses
     * this CPU is left out as `auto` leaves it) were left out in silence
     * too: counted, the first named, said in one line, the others timed */
    char named[PATH_MAX];
    struct stat ns;
    const int named_ok =
        o->plugin_path && stat(o->plugin_path, &ns) == 0 && realpath(o->plugin_path, named);
    const int named_file = named_ok && !S_ISDIR(ns.st_mode), named_dir = named_ok && !named_file;
    const size_t named_len = named_dir ? strlen(named) : 0;
    for (size_t i = 0; i < mha_runtime_plugin_count(rt_all); i++) {
        mha_plugin_info pi;
        if (mha_runtime_plugin(rt_all, i, &pi) != MHA_OK) continue;
        if (named_dir && !pi.name && pi.path && strncmp(pi.path, named, named_len) == 0 &&
            pi.path[named_len] == '/' && !strchr(pi.path + named_len + 1, '/')) {
            if (!p.n_broken++)
                snprintf(p.broken, sizeof p.broken, "%s",
                         pi.reason && pi.reason[0] ? pi.reason : pi.path);
            continue;
        }
        if (named_file && !pi.usable && pi.path &&
            (strcmp(pi.path, o->plugin_path) == 0 || strcmp(pi.path, named) == 0)) {
            const char *why = pi.reason && pi.reason[0] ? pi.reason : "not usable here";
            /* the registry's reason mostly starts with the file: not twice */
            if (strncmp(why, pi.path, strlen(pi.path)) == 0)
                snprintf(p.error, sizeof p.error, "--plugin-path %s", why);
            else
                snprintf(p.error, sizeof p.error, "--plugin-path %s: %s", pi.path, why);
            mha_runtime_destroy(rt_all);
            goto send;
        }
        if (!pi.usable || !pi.name) continue;
        int dup = 0;
        for (int k = 0; k < p.n_backends; k++)
            dup |= strcmp(p.backends[k], pi.name) == 0;
        if (dup || p.n_backends >= BENCH_MAX_BACKENDS) continue;
        snprintf(p.backends[p.n_backends++], BENCH_NAME_MAX, "%s", pi.name);
    }
    mha_runtime_destroy(rt_all);
    st = runtime_open(o, "scalar", reference_threads(o), &rt, &err);
    if (st != MHA_OK) {
        snprintf(p.error, sizeof p.error, "scalar reference backend: %s", err.message);
        goto send;
    }
    p.cpu_features = mha_runtime_cpu_features(rt);
    if (o->has_auto) { /* what "auto" picks, with MHA_BACKEND honoured as it would be */
        mha_runtime *rt_auto = NULL;
        st = runtime_open(o, NULL, 1, &rt_auto, &err);
        if (st != MHA_OK) {
            snprintf(p.error, sizeof p.error, "backend auto: %s", err.message);
            goto send;
        }
        snprintf(p.auto_backend, sizeof p.auto_backend, "%s", mha_runtime_backend(rt_auto));
        mha_runtime_destroy(rt_auto);
    }
    if (bench_tensors_make(model, run_batch(o), o->S, o->S_kv, o->seed, &t, &p, p.error,
                           sizeof p.error) != 0)
        goto send;
    p.flops = bench_flops(&p, 1);
    p.flops_full = bench_flops(&p, 0);
    /* a whole model: the library counts the FLOPs of the run (its fused
     * steps at these sizes, causal attention halved) */
    double run_flops = 0.0;
    mha_run_options ro;
    mha_run_options_init(&ro);
    ro.flops = &run_flops;
    st = mha_run(rt, model, t.inputs, t.n_inputs, t.outputs, t.n_outputs, &ro, &err);
    if (st != MHA_OK) {
        snprintf(p.error, sizeof p.error, "scalar reference run: %s", err.message);
        goto send;
    }
    if (strcmp(p.form, "plan") == 0) p.flops = p.flops_full = run_flops;
    ref = malloc((p.n_ref_floats + 1) * sizeof *ref);
    if (!ref) {
        snprintf(p.error, sizeof p.error, "out of memory for the reference output");
        goto send;
    }
    {
        size_t at = 0;
        for (size_t i = 0; i < t.n_outputs; i++) {
            if (t.outputs[i].dtype != MHA_DTYPE_FLOAT32) continue;
            size_t n = (size_t)mha_tensor_numel(&t.outputs[i]);
            memcpy(ref + at, t.outputs[i].data, n * sizeof *ref);
            at += n;
        }
    }
    p.ok = 1;
send:
    if (write_full(fd, &p, sizeof p) != 0 ||
        (p.ok && write_full(fd, ref, p.n_ref_floats * sizeof *ref) != 0))
        _exit(1);
    _exit(p.ok ? 0 : 1);
}

/* Compares every float32 output of t with the reference; max_rel is the
 * worst over the outputs of max|y - ref| / max|ref|, mean_rel the mean over
 * every element of |y - ref| / max|ref| of its output. */
static void check_accuracy(const bench_options *o, const bench_probe *p, const float *ref,
                           const bench_tensors *t, bench_result *r) {
    size_t at = 0, n_all = 0;
    int k = 0;
    double rel_sum = 0.0;
    r->max_abs_err = 0.0;
    r->max_rel_err = 0.0;
    for (size_t i = 0; i < t->n_outputs && k < p->n_outputs; i++) {
        if (t->outputs[i].dtype != MHA_DTYPE_FLOAT32) continue;
        size_t n = p->output_floats[k++];
        double abs_err, ref_max, rel;
        bench_compare(t->outputs[i].data, ref + at, n, &abs_err, &ref_max);
        const float *y = t->outputs[i].data;
        for (size_t e = 0; e < n; e++) {
            const double d = fabs((double)y[e] - (double)ref[at + e]);
            rel_sum += ref_max > 0.0 ? d / ref_max : d;
        }
        n_all += n;
        at += n;
        rel = ref_max > 0.0 ? abs_err / ref_max : abs_err;
        if (abs_err > r->max_abs_err || isnan(abs_err)) r->max_abs_err = abs_err;
        if (rel > r->max_rel_err || isnan(rel)) r->max_rel_err = rel;
    }
    r->mean_rel_err = n_all ? rel_sum / (double)n_all : 0.0;
    r->accuracy_ok = r->max_rel_err <= bench_tolerance(o->precision);
}

/* Test hook of tests/cli/bench.sh, compiled into the test build only
 * (mha-testhooks, MHA_TEST_HOOKS; the shipped `mha` reads no such
 * variable): MHA_TEST_BENCH_NOISE_MS=X adds X ms to every other timed run,
 * a measurement that is noisy for certain. 0 when unset. */
static double bench_test_noise_ms(void) {
#ifdef MHA_TEST_HOOKS
    const char *v = getenv("MHA_TEST_BENCH_NOISE_MS");
    return v && *v ? strtod(v, NULL) : 0.0;
#else
    return 0.0;
#endif
}

static void sleep_ms(double ms) {
    struct timespec ts = {(time_t)(ms / 1e3), (long)(fmod(ms, 1e3) * 1e6)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Warm-up, then repetitions until min_time (and at least BENCH_MIN_REPS). */
static int time_offline(const bench_options *o, const bench_probe *p, mha_runtime *rt,
                        const mha_model *model, bench_tensors *t, bench_result *r) {
    mha_error err;
    size_t cap = 1024, n = 0;
    double *ms = malloc(cap * sizeof *ms);
    bench_cpu_sample s0, s1;
    bench_stats st;
    int have_cpu;
    if (!ms) {
        snprintf(r->error, sizeof r->error, "out of memory");
        return -1;
    }
    const mha_run_options ro = bench_run_options(o);
    const double noise_ms = bench_test_noise_ms();
    for (int i = 0; i < o->warmup; i++) {
        if (mha_run(rt, model, t->inputs, t->n_inputs, t->outputs, t->n_outputs, &ro, &err) !=
            MHA_OK) {
            snprintf(r->error, sizeof r->error, "warm-up run: %s", err.message);
            free(ms);
            return -1;
        }
    }
    have_cpu = bench_cpu_sample_take(&s0) == 0;
    double start = bench_now();
    for (;;) {
        double t0 = bench_now();
        mha_status rs =
            mha_run(rt, model, t->inputs, t->n_inputs, t->outputs, t->n_outputs, &ro, &err);
        if (noise_ms > 0.0 && n % 2) sleep_ms(noise_ms);
        double t1 = bench_now();
        if (rs != MHA_OK) {
            snprintf(r->error, sizeof r->error, "timed run: %s", err.message);
            free(ms);
            return -1;
        }
        if (n == cap) {
            double *grown = realloc(ms, 2 * cap * sizeof *ms);
            if (!grown) break;
            ms = grown;
            cap *= 2;
        }
        ms[n++] = (t1 - t0) * 1e3;
        if (n >= BENCH_MAX_REPS) break;
        if (n >= BENCH_MIN_REPS && t1 - start >= o->min_time) break;
    }
    if (have_cpu && bench_cpu_sample_take(&s1) == 0)
        r->other_cpus = bench_cpu_other(&s0, &s1, (int)sysconf(_SC_NPROCESSORS_ONLN), &r->own_cpus);
    /* the raw times before the sort below reorders them */
    r->n_samples = n < BENCH_MAX_SAMPLES ? (int)n : BENCH_MAX_SAMPLES;
    memcpy(r->samples_ms, ms, (size_t)r->n_samples * sizeof *ms);
    bench_stats_compute(ms, n, &st);
    free(ms);
    r->reps = (long)n;
    r->median_ms = st.median;
    r->p90_ms = st.p90;
    r->p99_ms = st.p99;
    r->min_ms = st.min;
    r->max_ms = st.max;
    r->p25_ms = st.p25;
    r->p75_ms = st.p75;
    r->mean_ms = st.mean;
    r->cv = st.cv;
    r->gflops = st.median > 0.0 ? p->flops / (st.median * 1e-3) / 1e9 : 0.0;
    return 0;
}

/* A configuration child: see the top of the file. Never returns. */
static void config_child(const bench_options *o, const bench_probe *p, const float *ref,
                         const char *backend, int threads, int fd) {
    bench_result r;
    bench_tensors t;
    mha_model *model = NULL;
    mha_runtime *rt = NULL;
    mha_error err;
    mha_status st;
    memset(&r, 0, sizeof r);
    memset(&t, 0, sizeof t);
    mha_error_clear(&err);
    snprintf(r.backend, sizeof r.backend, "%s", backend);
    r.threads = threads;

    st = mha_model_load_file(o->model_path, NULL, &model, &err);
    if (st != MHA_OK) {
        snprintf(r.error, sizeof r.error, "%s", err.message);
        goto send;
    }
    if (bench_tensors_make(model, p->B, p->Sq, p->Skv, o->seed, &t, NULL, r.error,
                           sizeof r.error) != 0)
        goto send;
    st = runtime_open(o, backend, threads, &rt, &err);
    if (st != MHA_OK) {
        snprintf(r.error, sizeof r.error, "%s", err.message);
        goto send;
    }
    if (strcmp(mha_runtime_backend(rt), backend) != 0) {
        snprintf(r.error, sizeof r.error, "asked for backend '%s', the runtime chose '%s'", backend,
                 mha_runtime_backend(rt));
        goto send;
    }
    /* accuracy first, on the same inputs as the reference */
    const mha_run_options ro = bench_run_options(o);
    st = mha_run(rt, model, t.inputs, t.n_inputs, t.outputs, t.n_outputs, &ro, &err);
    if (st != MHA_OK) {
        snprintf(r.error, sizeof r.error, "first run: %s", err.message);
        goto send;
    }
    check_accuracy(o, p, ref, &t, &r);
    if (o->scenario == BENCH_OFFLINE) {
        if (time_offline(o, p, rt, model, &t, &r) != 0) goto send;
    } else {
        if (bench_server_run(rt, model, &t, o, &r) != 0) goto send;
        r.gflops = p->flops * r.achieved_rps / 1e9;
    }
    r.ran = 1;
send:
    /* the peak RSS is taken by the parent (wait4) */
    if (write_full(fd, &r, sizeof r) != 0) _exit(1);
    _exit(0);
}

/* Forks fn(...) with a pipe to it; reads `size` bytes of answer into buf
 * (then *extra_out of *extra_floats floats for the probe). The child's
 * peak RSS in MiB goes to *rss_mib. 0 ok, -1 with msg. */
typedef struct child_job {
    int kind; /* 0 probe, 1 config */
    const bench_options *o;
    const bench_probe *p;
    const float *ref;
    const char *backend;
    int threads;
} child_job;

static int run_child(const child_job *job, void *buf, size_t size, float **ref_out, double *rss_mib,
                     char *msg, size_t msg_size) {
    int fds[2];
    pid_t pid;
    int status = 0, got;
    struct rusage ru;
    fflush(NULL);
    if (pipe(fds) != 0) {
        snprintf(msg, msg_size, "pipe: %s", strerror(errno));
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        snprintf(msg, msg_size, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        close(fds[0]);
        /* a hung backend must not hang the bench: SIGALRM ends the child */
        alarm((unsigned)job->o->timeout);
        if (job->kind == 0)
            probe_child(job->o, fds[1]);
        else
            config_child(job->o, job->p, job->ref, job->backend, job->threads, fds[1]);
        _exit(1); /* not reached */
    }
    close(fds[1]);
    got = read_full(fds[0], buf, size) == 0;
    if (got && ref_out) {
        const bench_probe *p = buf;
        *ref_out = NULL;
        if (p->ok) {
            *ref_out = malloc((p->n_ref_floats + 1) * sizeof **ref_out);
            if (!*ref_out || read_full(fds[0], *ref_out, p->n_ref_floats * sizeof **ref_out))
                got = 0;
        }
    }
    close(fds[0]);
    memset(&ru, 0, sizeof ru);
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) break;
    }
    if (rss_mib) *rss_mib = (double)ru.ru_maxrss / 1024.0; /* KiB on Linux */
    if (!got) {
        describe_exit(status, job->o->timeout, msg, msg_size);
        if (ref_out) {
            free(*ref_out);
            *ref_out = NULL;
        }
        return -1;
    }
    return 0;
}

/* ---- the command -------------------------------------------------------- */

static void progress(const bench_options *o, int k, int n, const bench_result *r) {
    if (o->quiet) return;
    fprintf(stderr, "[%d/%d] %s, %d thread%s: ", k, n, r->backend, r->threads,
            r->threads == 1 ? "" : "s");
    if (!r->ran)
        fprintf(stderr, "ERROR %s\n", r->error);
    else if (o->scenario == BENCH_OFFLINE)
        fprintf(stderr, "%s (max_rel_err %.2g, mean %.2g), median %.4g ms over %ld reps\n",
                r->accuracy_ok ? "ok" : "FAIL", r->max_rel_err, r->mean_rel_err, r->median_ms,
                r->reps);
    else
        fprintf(stderr, "%s (max_rel_err %.2g), max rate %.4g req/s\n",
                r->accuracy_ok ? "ok" : "FAIL", r->max_rel_err, r->max_rate_rps);
}

/* The bench once its options are parsed and its output files claimed. */
static int bench_run(bench_options o) {
    bench_probe probe;
    bench_context ctx;
    bench_result *results = NULL;
    float *ref = NULL;
    char msg[BENCH_ERROR_MAX];
    int n_results = 0, rc = 0;
    double t_reference = 0.0;

    /* the probe: model info, backends, reference */
    {
        child_job job = {0, &o, NULL, NULL, NULL, 0};
        memset(&probe, 0, sizeof probe);
        /* said once the probe has run: a model that does not load is then
         * one line, its error, not a progress line and the error */
        const double t_probe = cli_now();
        if (run_child(&job, &probe, sizeof probe, &ref, NULL, msg, sizeof msg) != 0) {
            fprintf(stderr, "mha bench: %s: probing the model failed: %s\n", o.model_path, msg);
            return 1;
        }
        if (!probe.ok) {
            /* a load failure's message names the model already (a long
             * path by its end: mha_failv keeps that) */
            const size_t n = strlen(o.model_path);
            const int named = strstr(probe.error, o.model_path) ||
                              (n > 64 && strstr(probe.error, o.model_path + n - 64));
            fprintf(stderr, "mha bench: %s%s%s\n", named ? "" : o.model_path, named ? "" : ": ",
                    probe.error);
            free(ref);
            return 1;
        }
        t_reference = cli_now() - t_probe;
    }
    bench_context_fill(&ctx, probe.cpu_features);

    /* the configurations: backends x threads ("auto" named by what it picks) */
    if (o.has_auto) {
        int k = 0;
        for (int b = 0; b < o.n_backends; b++) {
            const char *name =
                strcmp(o.backends[b], "auto") == 0 ? probe.auto_backend : o.backends[b];
            int dup = 0;
            for (int j = 0; j < k; j++)
                dup |= strcmp(o.backends[j], name) == 0;
            if (!dup) memmove(o.backends[k++], name, strlen(name) + 1);
        }
        o.n_backends = k;
    }
    /* a named backend that is not usable here is a wrong option, said in
     * one line before any timing -- not an ERROR row among the results */
    for (int b = 0; !o.backend_all && b < o.n_backends; b++) {
        int usable = 0;
        for (int k = 0; k < probe.n_backends; k++)
            usable |= strcmp(probe.backends[k], o.backends[b]) == 0;
        if (usable) continue;
        char list[BENCH_MAX_BACKENDS * (BENCH_NAME_MAX + 2) + 1] = "";
        for (int k = 0; k < probe.n_backends; k++) {
            if (k) strcat(list, ", ");
            strcat(list, probe.backends[k]);
        }
        fprintf(stderr, "mha bench: --backend %s: no such backend usable here; usable here: %s\n",
                o.backends[b], probe.n_backends ? list : "none");
        free(ref);
        return 1;
    }
    if (probe.n_broken)
        fprintf(stderr,
                "mha bench: --plugin-path %s: %d file%s there load%s as no plugin, left out "
                "(%s%s); timing the others\n",
                o.plugin_path, probe.n_broken, probe.n_broken == 1 ? "" : "s",
                probe.n_broken == 1 ? "s" : "", probe.broken,
                probe.n_broken > 1 ? "; 'mha backends' with MHA_PLUGIN_PATH at the folder lists "
                                     "every one"
                                   : "");
    if (!o.quiet)
        fprintf(stderr, "mha bench: reference run (scalar) on %s: %.3g s\n", o.model_path,
                t_reference);
    if (o.backend_all) {
        /* the default leaves out the scalar reference (it already ran once,
         * in the probe) unless nothing else is usable */
        int k = 0;
        for (int b = 0; b < probe.n_backends; b++)
            if (!(o.skip_scalar && probe.n_backends > 1 &&
                  strcmp(probe.backends[b], "scalar") == 0))
                memcpy(o.backends[k++], probe.backends[b], BENCH_NAME_MAX);
        o.n_backends = k;
    }
    const char(*names)[BENCH_NAME_MAX] = o.backends;
    int n_names = o.n_backends;
    results = calloc((size_t)(n_names * o.n_threads) + 1, sizeof *results);
    if (!results) {
        fprintf(stderr, "mha bench: out of memory\n");
        free(ref);
        return 1;
    }
    for (int b = 0; b < n_names; b++) {
        for (int k = 0; k < o.n_threads; k++) {
            bench_result *r = &results[n_results++];
            child_job job = {1, &o, &probe, ref, names[b], o.threads[k]};
            double rss = 0.0;
            if (run_child(&job, r, sizeof *r, NULL, &rss, msg, sizeof msg) != 0) {
                memset(r, 0, sizeof *r);
                snprintf(r->backend, sizeof r->backend, "%s", names[b]);
                r->threads = o.threads[k];
                snprintf(r->error, sizeof r->error, "%s", msg);
            }
            r->peak_rss_mib = rss;
            if (!r->ran || !r->accuracy_ok) rc = 1;
            progress(&o, n_results, n_names * o.n_threads, r);
        }
    }

    bench_report rep = {&o, &probe, &ctx, results, n_results};
    if (!o.quiet) bench_report_table(&rep, stdout);
    fflush(stdout);
    bench_report_warnings(&rep, stderr);
    /* a signal while a result file is written ends the command once the
     * file is whole, never with its temporary left behind */
    cli_signals sigs;
    cli_signals_catch(&sigs);
    if (o.json_path && bench_report_json(&rep, o.json_path, msg, sizeof msg) != 0) {
        fprintf(stderr, "mha bench: %s\n", msg);
        rc = 1;
    }
    if (o.csv_path && bench_report_csv(&rep, o.csv_path, msg, sizeof msg) != 0) {
        fprintf(stderr, "mha bench: %s\n", msg);
        rc = 1;
    }
    if (o.plot_path && bench_report_svg(&rep, o.plot_path, msg, sizeof msg) != 0) {
        fprintf(stderr, "mha bench: %s\n", msg);
        rc = 1;
    }
    rc = cli_signals_end(&sigs, rc);
    for (int i = 0; i < n_results; i++) {
        if (!results[i].ran)
            fprintf(stderr, "mha bench: %s with %d thread%s could not run: %s\n",
                    results[i].backend, results[i].threads, results[i].threads == 1 ? "" : "s",
                    results[i].error);
        else if (!results[i].accuracy_ok)
            fprintf(stderr,
                    "mha bench: %s with %d thread%s FAILED the accuracy check: "
                    "max_rel_err %.3g > %.3g\n",
                    results[i].backend, results[i].threads, results[i].threads == 1 ? "" : "s",
                    results[i].max_rel_err, bench_tolerance(o.precision));
    }
    if (n_results == 0) {
        fprintf(stderr, "mha bench: no backend to run\n");
        rc = 1;
    }
    free(results);
    free(ref);
    return rc;
}

/* A result file whose name says another format than the option writes
 * (--plot chart.png, --json out.csv): refused before the timing, not
 * written as the option's format under that name. */
static int bench_report_format_check(const cli_common *c, const char *option, const char *path,
                                     const char *ext, const char *what) {
    static const char *const named[][2] = {{".json", "JSON"},        {".csv", "CSV"},
                                           {".svg", "SVG"},          {".png", "a PNG image"},
                                           {".jpg", "a JPEG image"}, {".jpeg", "a JPEG image"},
                                           {".gif", "a GIF image"},  {".pdf", "a PDF document"}};
    const char *dot = path ? strrchr(path, '.') : NULL;
    if (!dot || strchr(dot, '/') || strcasecmp(dot, ext) == 0) return CLI_OK;
    for (size_t k = 0; k < sizeof named / sizeof named[0]; k++)
        if (strcasecmp(dot, named[k][0]) == 0)
            return cli_usage_error(c, "%s writes %s, not '%s' (%s is %s)", option, what, path, dot,
                                   named[k][1]);
    return CLI_OK;
}

int mha_cmd_bench(int argc, char **argv) {
    bench_options o;
    cli_common c = {0};
    int pr = parse_args(argc, argv, &o, &c);
    if (pr >= 0) return pr;
    /* the result files are checked (a missing folder named) and locked
     * before minutes of timing, not after */
    const char *outs[3] = {o.json_path, o.csv_path, o.plot_path};
    const char *ins[2] = {o.model_path, o.plugin_path};
    static const char *const opts[3] = {"--json", "--csv", "--plot"};
    /* the model itself named first (the more precise line), then any
     * model or data file by its name */
    int rc = cli_outputs_spare_inputs(&c, outs, 3, ins, 2, "input");
    static const char *const exts[3][2] = {
        {".json", "a JSON report"}, {".csv", "a CSV table"}, {".svg", "an SVG chart"}};
    for (int k = 0; k < 3 && rc == CLI_OK; k++)
        rc = cli_report_path_check(&c, opts[k], "a report", outs[k]);
    for (int k = 0; k < 3 && rc == CLI_OK; k++)
        rc = bench_report_format_check(&c, opts[k], outs[k], exts[k][0], exts[k][1]);
    if (rc != CLI_OK) return rc;
    cli_outputs claimed;
    rc = cli_outputs_claim(&c, outs, 3, 1, &claimed);
    if (rc != CLI_OK) return rc;
    rc = bench_run(o);
    cli_outputs_release(&claimed);
    return rc;
}
