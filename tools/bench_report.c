/* bench_report.c -- what `mha bench` shows and writes: the terminal table
 * with its context header, the warnings, and the JSON, CSV and SVG files.
 * Every file is written to a temporary file beside its target and renamed
 * into place, so a failed write never leaves a file that looks complete.
 * The keys and columns are documented in docs/BENCH.md. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench_internal.h"

#define WARN_MAX 64
#define WARN_LEN 256

static const char *scenario_name(const bench_options *o) {
    return o->scenario == BENCH_SERVER ? "server" : "offline";
}

/* ---- shared text -------------------------------------------------------- */

/* The last two components of a path ("case/model.onnx"): model files are
 * often all called model.onnx, their folder tells them apart. */
static const char *short_path(const char *path) {
    const char *end = path + strlen(path);
    int slashes = 0;
    for (const char *s = end; s > path; s--) {
        if (s[-1] == '/' && s != end && ++slashes == 2) return s;
    }
    return path;
}

static void describe_layer(const bench_probe *p, char *buf, size_t size) {
    if (p->has_projections)
        snprintf(buf, size, "%s; d_model %lld, %lld q / %lld kv heads x d_head %lld; %s%s%s",
                 p->form, (long long)p->d_model, (long long)p->q_heads, (long long)p->kv_heads,
                 (long long)p->d_head, p->cross ? "cross" : "self", p->causal ? ", causal" : "",
                 p->seq_first ? ", sequence-first" : "");
    else
        snprintf(buf, size, "%s; bare attention, %lld q / %lld kv heads x d_head %lld/%lld%s",
                 p->form, (long long)p->q_heads, (long long)p->kv_heads, (long long)p->d_head,
                 (long long)p->d_head_v, p->causal ? ", causal" : "");
}

static void describe_shape(const bench_report *r, char *buf, size_t size) {
    const bench_probe *p = r->probe;
    int n = snprintf(buf, size, "B=%lld S=%lld S_kv=%lld", (long long)p->B, (long long)p->Sq,
                     (long long)p->Skv);
    if (p->S_past > 0 && n > 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, " (%lld from the past cache)", (long long)p->S_past);
}

static const char *flop_note(const bench_probe *p) {
    if (strcmp(p->form, "plan") == 0)
        return "the run's fused steps (mha_run_options.flops: GEMMs, attention layers, causal "
               "attention halved; interpreted nodes not counted)";
    return p->causal ? "docs/ARCHITECTURE.md section 1 count, causal: attention term halved"
                     : "docs/ARCHITECTURE.md section 1 count";
}

/* All warnings, one line each. */
static int collect_warnings(const bench_report *r, char (*w)[WARN_LEN], int max) {
    int n = 0;
    if (r->probe->shape_note[0] && n < max) snprintf(w[n++], WARN_LEN, "%s", r->probe->shape_note);
    for (int i = 0; i < r->n_results && n < max; i++) {
        const bench_result *x = &r->results[i];
        if (x->threads > r->ctx->online_cpus && n < max)
            snprintf(w[n++], WARN_LEN, "%s x%d: %d threads on %d online CPUs", x->backend,
                     x->threads, x->threads, r->ctx->online_cpus);
        if (!x->ran) continue;
        /* (server latencies vary by design: queueing) */
        if (r->opts->scenario == BENCH_OFFLINE && x->cv > BENCH_CV_WARN && n < max)
            snprintf(w[n++], WARN_LEN,
                     "%s x%d: coefficient of variation %.1f%% > %.0f%%: noisy timing", x->backend,
                     x->threads, 100.0 * x->cv, 100.0 * BENCH_CV_WARN);
        if (x->other_cpus > BENCH_OTHER_CPUS_WARN && n < max)
            snprintf(w[n++], WARN_LEN,
                     "%s x%d: other processes kept %.2f CPUs busy during the timing", x->backend,
                     x->threads, x->other_cpus);
    }
    return n;
}

int bench_report_warnings(const bench_report *r, FILE *out) {
    static char w[WARN_MAX][WARN_LEN];
    int n = collect_warnings(r, w, WARN_MAX);
    for (int i = 0; i < n; i++)
        fprintf(out, "warning: %s\n", w[i]);
    return n;
}

/* ---- terminal table ----------------------------------------------------- */

/* A time in ms with sensible digits; in parentheses when the configuration
 * failed its accuracy check (a number, but not a valid result). */
static const char *fmt_val(char *buf, size_t size, double v, int bad) {
    char num[24];
    if (!isfinite(v))
        snprintf(num, sizeof num, "-");
    else if (fabs(v) < 10.0)
        snprintf(num, sizeof num, "%.4f", v);
    else if (fabs(v) < 1000.0)
        snprintf(num, sizeof num, "%.2f", v);
    else
        snprintf(num, sizeof num, "%.0f", v);
    snprintf(buf, size, bad ? "(%s)" : "%s", num);
    return buf;
}

void bench_report_table(const bench_report *r, FILE *out) {
    const bench_options *o = r->opts;
    const bench_probe *p = r->probe;
    const bench_context *c = r->ctx;
    char layer[256], shape[128];
    int any_fail = 0;
    describe_layer(p, layer, sizeof layer);
    describe_shape(r, shape, sizeof shape);
    fprintf(out, "mha bench: %s (%s)\n", o->model_path, layer);
    if (o->scenario == BENCH_OFFLINE)
        fprintf(out,
                "  shape %s, offline: whole batches, %d warm-up runs, >= %.3g s and >= %d "
                "reps, seed %llu\n",
                shape, o->warmup, o->min_time, BENCH_MIN_REPS, (unsigned long long)o->seed);
    else if (o->max_batch > 0) {
        char bms[160] = "";
        if (o->batch_ms > 0) snprintf(bms, sizeof bms, ", batch time %.3g ms", o->batch_ms);
        if (o->batch_ms < 0) snprintf(bms, sizeof bms, ", no batch time bound");
        if (o->dispatchers > 0)
            snprintf(bms + strlen(bms), sizeof bms - strlen(bms), ", %d dispatchers",
                     o->dispatchers);
        if (o->run_threads > 0)
            snprintf(bms + strlen(bms), sizeof bms - strlen(bms), ", %d threads a run",
                     o->run_threads);
        if (o->caller_runs) snprintf(bms + strlen(bms), sizeof bms - strlen(bms), ", caller runs");
        if (o->max_queue_ms > 0)
            snprintf(bms + strlen(bms), sizeof bms - strlen(bms), ", max queue %.3g ms",
                     o->max_queue_ms);
        if (o->max_latency_ms > 0)
            snprintf(bms + strlen(bms), sizeof bms - strlen(bms), ", latency budget %.3g ms",
                     o->max_latency_ms);
        fprintf(out,
                "  shape %s, server: batch-1 requests, Poisson arrivals, request queue (max "
                "batch %d, delay %.3g ms%s), p99 bound %.3g ms, %.3g s per rate, seed %llu\n",
                shape, o->max_batch, o->batch_delay_ms, bms, o->p99_ms, o->server_time,
                (unsigned long long)o->seed);
    } else
        fprintf(out,
                "  shape %s, server: batch-1 requests, Poisson arrivals, %d clients, "
                "p99 bound %.3g ms, %.3g s per rate, seed %llu\n",
                shape, o->clients, o->p99_ms, o->server_time, (unsigned long long)o->seed);
    fprintf(out, "  FLOPs per %s: %.4g (%s)\n", o->scenario == BENCH_OFFLINE ? "run" : "request",
            p->flops, flop_note(p));
    fprintf(out, "  cpu: %s; %d online CPUs; isa: %s\n", c->cpu_model, c->online_cpus, c->isa);
    fprintf(out, "  denormals: %s\n", c->ftz_daz);
    fprintf(out, "  build: %s, %s, flags \"%s\"; libmha %s, git %s; %s\n", c->compiler,
            c->build_type, c->c_flags, c->library_version, c->git_commit, c->date);
    fprintf(out,
            "  precision: %s; accuracy: max |y - scalar float32| / max |scalar| must be <= "
            "%.3g\n\n",
            o->precision == MHA_PRECISION_BFLOAT16 ? "bfloat16" : "float32",
            bench_tolerance(o->precision));

    if (o->scenario == BENCH_OFFLINE)
        fprintf(out, "%-12s %7s %-5s %11s %10s %10s %10s %7s %10s %8s %12s\n", "backend", "threads",
                "check", "max_rel_err", "median_ms", "p90_ms", "min_ms", "CV", "GFLOP/s", "RSS_MiB",
                "mean_rel_err");
    else
        fprintf(out, "%-12s %7s %-5s %11s %11s %11s %9s %9s %9s %8s\n", "backend", "threads",
                "check", "max_rel_err", "max_rate/s", "achieved/s", "p50_ms", "p99_ms", "alone_ms",
                "RSS_MiB");
    for (int i = 0; i < r->n_results; i++) {
        const bench_result *x = &r->results[i];
        char a[32], b[32], d[32], e[32], f[32], g[32];
        if (!x->ran) {
            fprintf(out, "%-12s %7d %-5s %s\n", x->backend, x->threads, "ERROR", x->error);
            continue;
        }
        int bad = !x->accuracy_ok;
        any_fail |= bad;
        if (o->scenario == BENCH_OFFLINE) {
            char cv[32];
            snprintf(cv, sizeof cv, "%.1f%%", 100.0 * x->cv);
            fprintf(out, "%-12s %7d %-5s %11.2e %10s %10s %10s %7s %10s %8.1f %12.2e\n", x->backend,
                    x->threads, bad ? "FAIL" : "ok", x->max_rel_err,
                    fmt_val(a, sizeof a, x->median_ms, bad), fmt_val(b, sizeof b, x->p90_ms, bad),
                    fmt_val(d, sizeof d, x->min_ms, bad), cv, fmt_val(e, sizeof e, x->gflops, bad),
                    x->peak_rss_mib, x->mean_rel_err);
        } else if (!x->server_found) {
            fprintf(out, "%-12s %7d %-5s %11.2e %11s %11s %9s %9s %9s %8.1f\n", x->backend,
                    x->threads, bad ? "FAIL" : "ok", x->max_rel_err, "none", "-", "-", "-",
                    fmt_val(g, sizeof g, x->single_ms, bad), x->peak_rss_mib);
        } else {
            fprintf(out, "%-12s %7d %-5s %11.2e %11s %11s %9s %9s %9s %8.1f\n", x->backend,
                    x->threads, bad ? "FAIL" : "ok", x->max_rel_err,
                    fmt_val(a, sizeof a, x->max_rate_rps, bad),
                    fmt_val(b, sizeof b, x->achieved_rps, bad),
                    fmt_val(d, sizeof d, x->median_ms, bad), fmt_val(e, sizeof e, x->p99_ms, bad),
                    fmt_val(f, sizeof f, x->single_ms, bad), x->peak_rss_mib);
        }
    }
    /* overload through the queue: what it accepted kept its latency? */
    for (int i = 0;
         o->scenario == BENCH_SERVER && o->max_batch > 0 && o->server_rate > 0 && i < r->n_results;
         i++) {
        const bench_result *x = &r->results[i];
        if (!x->ran || x->n_trials < 1) continue;
        const bench_trial *tr = &x->trials[x->n_trials - 1];
        fprintf(out, "%-12s %7d accepted p99 %.3g ms (%.2fx the bound); refused %ld of %ld\n",
                x->backend, x->threads, tr->accepted_p99_ms, tr->accepted_p99_ms / o->p99_ms,
                tr->refused, tr->requests);
    }
    if (any_fail)
        fprintf(out,
                "\nFAIL: the backend's output differs from the scalar reference by more "
                "than %.3g (relative);\n(...) are its timings, shown for the record, not valid "
                "results.\n",
                bench_tolerance(o->precision));
    if (o->scenario == BENCH_SERVER)
        fprintf(out,
                "\nmax_rate/s: the highest arrival rate tried whose p99 latency stayed "
                "<= %.3g ms (\"none\": even one request alone takes longer);\n"
                "p50/p99: request latency at that rate, queueing included; alone_ms: one "
                "request with nothing else running.\n",
                o->p99_ms);
    fprintf(out,
            "peak RSS: of the process that ran the configuration (it starts at about "
            "%.1f MiB, the bench's own size).\n",
            c->base_rss_mib);
}

/* ---- JSON ---------------------------------------------------------------- */

static void json_num(FILE *f, double v) {
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

static void json_kv_str(FILE *f, const char *indent, const char *k, const char *v, int comma) {
    fprintf(f, "%s\"%s\": ", indent, k);
    cli_json_string(f, v);
    fputs(comma ? ",\n" : "\n", f);
}

static void json_kv_num(FILE *f, const char *indent, const char *k, double v, int comma) {
    fprintf(f, "%s\"%s\": ", indent, k);
    json_num(f, v);
    fputs(comma ? ",\n" : "\n", f);
}

static void json_kv_int(FILE *f, const char *indent, const char *k, long long v, int comma) {
    fprintf(f, "%s\"%s\": %lld%s\n", indent, k, v, comma ? "," : "");
}

static void json_kv_bool(FILE *f, const char *indent, const char *k, int v, int comma) {
    fprintf(f, "%s\"%s\": %s%s\n", indent, k, v ? "true" : "false", comma ? "," : "");
}

static void json_result(FILE *f, const bench_options *o, const bench_result *x, int comma) {
    const char *in = "      ";
    /* timing keys are null when the configuration could not run */
    double nan_if = x->ran ? 0.0 : NAN;
    fputs("    {\n", f);
    json_kv_str(f, in, "backend", x->backend, 1);
    json_kv_int(f, in, "threads", x->threads, 1);
    json_kv_bool(f, in, "ran", x->ran, 1);
    json_kv_str(f, in, "error", x->ran ? "" : x->error, 1);
    json_kv_bool(f, in, "accuracy_ok", x->ran && x->accuracy_ok, 1);
    json_kv_num(f, in, "max_abs_err", x->max_abs_err + nan_if, 1);
    json_kv_num(f, in, "max_rel_err", x->max_rel_err + nan_if, 1);
    json_kv_num(f, in, "mean_rel_err", x->mean_rel_err + nan_if, 1);
    json_kv_int(f, in, "reps", x->reps, 1);
    int have_lat = x->ran && (o->scenario == BENCH_OFFLINE || x->server_found);
    double lat_nan = have_lat ? 0.0 : NAN;
    json_kv_num(f, in, "median_ms", x->median_ms + lat_nan, 1);
    json_kv_num(f, in, "p90_ms", x->p90_ms + lat_nan, 1);
    json_kv_num(f, in, "p99_ms", x->p99_ms + lat_nan, 1);
    json_kv_num(f, in, "min_ms", x->min_ms + lat_nan, 1);
    json_kv_num(f, in, "mean_ms", x->mean_ms + lat_nan, 1);
    json_kv_num(f, in, "cv", x->cv + lat_nan, 1);
    json_kv_num(f, in, "gflops", x->gflops + lat_nan, 1);
    json_kv_num(f, in, "peak_rss_mib", x->peak_rss_mib, 1);
    json_kv_num(f, in, "other_cpus", x->other_cpus + nan_if, 1);
    json_kv_num(f, in, "own_cpus", x->own_cpus + nan_if, 1);
    if (o->scenario == BENCH_SERVER) {
        json_kv_bool(f, in, "server_found", x->server_found, 1);
        json_kv_num(f, in, "max_rate_rps", x->server_found ? x->max_rate_rps : NAN, 1);
        json_kv_num(f, in, "achieved_rps", x->server_found ? x->achieved_rps : NAN, 1);
        json_kv_num(f, in, "alone_ms", x->single_ms + nan_if, 1);
        json_kv_num(f, in, "cpu_ms_per_request", x->server_found ? x->cpu_ms_per_request : NAN, 1);
        fprintf(f, "%s\"trials\": [", in);
        for (int t = 0; t < x->n_trials; t++) {
            const bench_trial *tr = &x->trials[t];
            /* a trial's numbers, in this order, on one line */
            const struct {
                const char *key;
                double v;
            } nums[] = {{"target_rps", tr->target_rps},
                        {"achieved_rps", tr->achieved_rps},
                        {"p50_ms", tr->p50_ms},
                        {"p90_ms", tr->p90_ms},
                        {"p99_ms", tr->p99_ms},
                        {"max_ms", tr->max_ms},
                        {"wait_p99_ms", tr->wait_p99_ms},
                        {"mean_batch", tr->mean_batch},
                        {"accepted_p99_ms", tr->accepted_p99_ms},
                        {"cpu_ms_per_request", tr->cpu_ms}};
            fprintf(f, "%s\n%s  {", t ? "," : "", in);
            for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++) {
                fprintf(f, "%s\"%s\": ", k ? ", " : "", nums[k].key);
                json_num(f, nums[k].v);
            }
            fprintf(f, ", \"requests\": %ld, \"refused\": %ld, \"ok\": %s}", tr->requests,
                    tr->refused, tr->ok ? "true" : "false");
        }
        fprintf(f, "%s]\n", x->n_trials ? "\n      " : "");
    } else {
        json_kv_num(f, in, "p25_ms", x->p25_ms + lat_nan, 1);
        json_kv_num(f, in, "p75_ms", x->p75_ms + lat_nan, 1);
        json_kv_num(f, in, "max_ms", x->max_ms + lat_nan, 1);
        /* every timed run in timing order (the first BENCH_MAX_SAMPLES) */
        fprintf(f, "%s\"samples_ms\": [", in);
        for (int k = 0; k < (x->ran ? x->n_samples : 0); k++) {
            fputs(k ? ", " : "", f);
            json_num(f, x->samples_ms[k]);
        }
        fputs("]\n", f);
    }
    fprintf(f, "    }%s\n", comma ? "," : "");
}

int bench_report_json(const bench_report *r, const char *path, char *msg, size_t msg_size) {
    static char w[WARN_MAX][WARN_LEN];
    const bench_options *o = r->opts;
    const bench_probe *p = r->probe;
    const bench_context *c = r->ctx;
    cli_out_file of;
    FILE *f;
    int all_ok = r->n_results > 0;
    if (cli_out_open(&of, path, msg, msg_size) != 0) return -1;
    f = of.f;
    for (int i = 0; i < r->n_results; i++)
        all_ok &= r->results[i].ran && r->results[i].accuracy_ok;

    fputs("{\n", f);
    json_kv_str(f, "  ", "schema", "mha-bench/1", 1);
    json_kv_str(f, "  ", "model", o->model_path, 1);
    json_kv_str(f, "  ", "model_form", p->form, 1);
    fputs("  \"layer\": {", f);
    fprintf(f,
            "\"has_projections\": %s, \"d_model\": %lld, \"d_kv\": %lld, \"d_out\": %lld, "
            "\"q_heads\": %lld, \"kv_heads\": %lld, \"d_head\": %lld, \"d_head_v\": %lld, "
            "\"causal\": %s, \"cross\": %s, \"seq_first\": %s, "
            "\"key_padding_true_means_ignore\": %s},\n",
            p->has_projections ? "true" : "false", (long long)p->d_model, (long long)p->d_kv,
            (long long)p->d_out, (long long)p->q_heads, (long long)p->kv_heads,
            (long long)p->d_head, (long long)p->d_head_v, p->causal ? "true" : "false",
            p->cross ? "true" : "false", p->seq_first ? "true" : "false",
            p->key_padding_true_means_ignore ? "true" : "false");
    json_kv_str(f, "  ", "scenario", scenario_name(o), 1);
    fprintf(f, "  \"shape\": {\"B\": %lld, \"S\": %lld, \"S_kv\": %lld, \"S_past\": %lld},\n",
            (long long)p->B, (long long)p->Sq, (long long)p->Skv, (long long)p->S_past);
    fputs("  \"inputs\": [", f);
    for (int i = 0; i < p->n_inputs; i++) {
        const bench_input_desc *d = &p->inputs[i];
        fprintf(f, "%s\n    {\"name\": ", i ? "," : "");
        cli_json_string(f, d->name);
        fprintf(f, ", \"role\": \"%s\", \"dtype\": \"%s\", \"shape\": [", mha_io_role_name(d->role),
                mha_dtype_name(d->dtype));
        for (int k = 0; k < d->rank; k++)
            fprintf(f, "%s%lld", k ? ", " : "", (long long)d->shape[k]);
        fputs("]}", f);
    }
    fputs(p->n_inputs ? "\n  ],\n" : "],\n", f);
    fprintf(f, "  \"seed\": %llu,\n", (unsigned long long)o->seed);
    json_kv_num(f, "  ", "flops_per_run", p->flops, 1);
    json_kv_num(f, "  ", "flops_full", p->flops_full, 1);
    json_kv_str(f, "  ", "flops_count", flop_note(p), 1);
    fputs("  \"settings\": {", f);
    fprintf(f, "\"warmup\": %d, \"min_time_s\": ", o->warmup);
    json_num(f, o->min_time);
    fprintf(f, ", \"min_reps\": %d, \"tolerance_rel\": ", BENCH_MIN_REPS);
    json_num(f, bench_tolerance(o->precision));
    fprintf(f, ", \"precision\": \"%s\"",
            o->precision == MHA_PRECISION_BFLOAT16 ? "bfloat16" : "float32");
    if (o->scenario == BENCH_SERVER) {
        fputs(", \"p99_bound_ms\": ", f);
        json_num(f, o->p99_ms);
        fputs(", \"server_time_s\": ", f);
        json_num(f, o->server_time);
        fprintf(f, ", \"server_trials\": %d", o->server_trials);
        fprintf(f, ", \"clients\": %d, \"max_batch\": %d, \"batch_delay_ms\": ", o->clients,
                o->max_batch);
        json_num(f, o->batch_delay_ms);
        fputs(", \"batch_ms\": ", f);
        json_num(f, o->batch_ms);
        fprintf(f, ", \"dispatchers\": %d, \"run_threads\": %d, \"caller_runs\": %d",
                o->dispatchers, o->run_threads, o->caller_runs);
    }
    fputs("},\n", f);
    fputs("  \"context\": {\n", f);
    json_kv_str(f, "    ", "cpu_model", c->cpu_model, 1);
    json_kv_str(f, "    ", "isa", c->isa, 1);
    json_kv_int(f, "    ", "online_cpus", c->online_cpus, 1);
    json_kv_str(f, "    ", "ftz_daz", c->ftz_daz, 1);
    json_kv_str(f, "    ", "compiler", c->compiler, 1);
    json_kv_str(f, "    ", "c_flags", c->c_flags, 1);
    json_kv_str(f, "    ", "build_type", c->build_type, 1);
    json_kv_str(f, "    ", "library_version", c->library_version, 1);
    json_kv_str(f, "    ", "git_commit", c->git_commit, 1);
    json_kv_str(f, "    ", "date", c->date, 1);
    json_kv_num(f, "    ", "base_rss_mib", c->base_rss_mib, 0);
    fputs("  },\n", f);
    fputs("  \"results\": [\n", f);
    for (int i = 0; i < r->n_results; i++)
        json_result(f, o, &r->results[i], i + 1 < r->n_results);
    fputs("  ],\n", f);
    int nw = collect_warnings(r, w, WARN_MAX);
    fputs("  \"warnings\": [", f);
    for (int i = 0; i < nw; i++) {
        fputs(i ? ",\n    " : "\n    ", f);
        cli_json_string(f, w[i]);
    }
    fputs(nw ? "\n  ],\n" : "],\n", f);
    json_kv_bool(f, "  ", "all_ok", all_ok, 0);
    fputs("}\n", f);
    return cli_out_commit(&of, msg, msg_size);
}

/* ---- CSV ----------------------------------------------------------------- */

static void csv_str(FILE *f, const char *s) {
    if (strpbrk(s, ",\"\n\r") == NULL) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void csv_num(FILE *f, double v, int have) {
    fputc(',', f);
    if (have && isfinite(v)) fprintf(f, "%.9g", v);
}

/* The context columns, repeated on every row so that rows of several runs
 * concatenated into one file still say where each came from. */
static void csv_context(FILE *f, const bench_report *r) {
    const bench_context *c = r->ctx;
    const char *text[] = {r->opts->model_path, c->date, c->git_commit, c->cpu_model};
    for (size_t i = 0; i < sizeof text / sizeof text[0]; i++) {
        fputc(',', f);
        csv_str(f, text[i]);
    }
    fprintf(f, ",%d,", c->online_cpus);
    csv_str(f, c->library_version);
    fputc(',', f);
    csv_str(f, c->compiler);
    fputc(',', f);
    csv_str(f, c->build_type);
    fprintf(f, ",%s,%llu", r->opts->precision == MHA_PRECISION_BFLOAT16 ? "bfloat16" : "float32",
            (unsigned long long)r->opts->seed);
}

int bench_report_csv(const bench_report *r, const char *path, char *msg, size_t msg_size) {
    cli_out_file of;
    FILE *f;
    if (cli_out_open(&of, path, msg, msg_size) != 0) return -1;
    f = of.f;
    fputs("scenario,backend,threads,ran,accuracy_ok,max_abs_err,max_rel_err,reps,median_ms,"
          "p90_ms,p99_ms,min_ms,mean_ms,cv,gflops,peak_rss_mib,other_cpus,max_rate_rps,"
          "achieved_rps,B,S,S_kv,error,model,date_utc,git_commit,cpu_model,online_cpus,"
          "library_version,compiler,build_type,precision,seed\n",
          f);
    for (int i = 0; i < r->n_results; i++) {
        const bench_result *x = &r->results[i];
        int lat = x->ran && (r->opts->scenario == BENCH_OFFLINE || x->server_found);
        int srv = x->ran && r->opts->scenario == BENCH_SERVER && x->server_found;
        fprintf(f, "%s,", scenario_name(r->opts));
        csv_str(f, x->backend);
        fprintf(f, ",%d,%d,%d", x->threads, x->ran, x->ran && x->accuracy_ok);
        csv_num(f, x->max_abs_err, x->ran);
        csv_num(f, x->max_rel_err, x->ran);
        fprintf(f, ",%ld", x->reps);
        csv_num(f, x->median_ms, lat);
        csv_num(f, x->p90_ms, lat);
        csv_num(f, x->p99_ms, lat);
        csv_num(f, x->min_ms, lat);
        csv_num(f, x->mean_ms, lat);
        csv_num(f, x->cv, lat);
        csv_num(f, x->gflops, lat);
        csv_num(f, x->peak_rss_mib, 1);
        csv_num(f, x->other_cpus, x->ran);
        csv_num(f, x->max_rate_rps, srv);
        csv_num(f, x->achieved_rps, srv);
        fprintf(f, ",%lld,%lld,%lld,", (long long)r->probe->B, (long long)r->probe->Sq,
                (long long)r->probe->Skv);
        csv_str(f, x->ran ? "" : x->error);
        csv_context(f, r);
        fputc('\n', f);
    }
    return cli_out_commit(&of, msg, msg_size);
}

/* ---- SVG ----------------------------------------------------------------- */

static void xml_text(FILE *f, const char *s) {
    for (; *s; s++) {
        size_t n = cli_utf8_sequence((const unsigned char *)s);
        if (n != 1) {
            if (n == 0)
                fputs("&#xFFFD;", f);
            else
                fwrite(s, 1, n, f);
            s += n ? n - 1 : 0;
            continue;
        }
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            if ((unsigned char)*s >= 0x20) fputc(*s, f);
        }
    }
}

/* A "nice" axis top (1, 2, 2.5 or 5 times a power of ten) >= v, and its
 * tick step (the top in 5 steps). */
static double nice_top(double v, double *step) {
    if (!(v > 0.0)) v = 1.0;
    double p = pow(10.0, floor(log10(v)));
    static const double m[] = {1.0, 2.0, 2.5, 5.0, 10.0};
    double top = 10.0 * p;
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        if (m[i] * p >= v * 1.0000001) {
            top = m[i] * p;
            break;
        }
    }
    *step = top / 5.0;
    return top;
}

static void fmt_axis(char *buf, size_t size, double v) {
    if (v == 0.0 || (fabs(v) >= 0.01 && fabs(v) < 1e6))
        snprintf(buf, size, "%g", v);
    else
        snprintf(buf, size, "%.2g", v);
}

/* GFLOP/s of a run that took ms (0 when ms is not a time). */
static double gflops_at(const bench_report *r, double ms) {
    return ms > 0.0 && isfinite(ms) ? r->probe->flops / (ms * 1e-3) / 1e9 : 0.0;
}

/* Offline error bars span the interquartile range of the run times: the
 * GFLOP/s of the 75th percentile time (slower) to the 25th (faster). Robust
 * to a few outliers, unlike min-max. Server bars are a searched rate, not a
 * distribution, and have none. */
static double error_bar_top(const bench_report *r, const bench_result *x) {
    double v = gflops_at(r, x->p25_ms);
    return v > x->gflops ? v : x->gflops;
}

/* The same rule as the table's warning: offline CV above BENCH_CV_WARN. */
static int noisy(const bench_report *r, const bench_result *x) {
    return x->ran && r->opts->scenario == BENCH_OFFLINE && x->cv > BENCH_CV_WARN;
}

int bench_report_svg(const bench_report *r, const char *path, char *msg, size_t msg_size) {
    static const char *colors[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2",
                                   "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
    const bench_options *o = r->opts;
    const int server = o->scenario == BENCH_SERVER;
    /* groups = backends in result order; bars = thread counts of the options */
    const char *groups[BENCH_MAX_BACKENDS];
    int n_groups = 0, n_bars = o->n_threads, any_fail = 0;
    for (int i = 0; i < r->n_results; i++) {
        int seen = 0;
        for (int g = 0; g < n_groups; g++)
            seen |= strcmp(groups[g], r->results[i].backend) == 0;
        if (!seen && n_groups < BENCH_MAX_BACKENDS) groups[n_groups++] = r->results[i].backend;
        any_fail |= r->results[i].ran && !r->results[i].accuracy_ok;
    }
    double vmax = 0.0;
    int any_noisy = 0;
    for (int i = 0; i < r->n_results; i++) {
        const bench_result *x = &r->results[i];
        double v = server ? x->max_rate_rps : error_bar_top(r, x);
        if (x->ran && isfinite(v) && v > vmax) vmax = v;
        any_noisy |= noisy(r, x);
    }
    double step, top = nice_top(vmax, &step);

    char title[512], shape[128], num[64];
    describe_shape(r, shape, sizeof shape);
    snprintf(title, sizeof title, "mha bench: %s, %s, %s", short_path(o->model_path), shape,
             server ? "server scenario" : "offline");

    const double bar_w = 30.0, bar_gap = 6.0, group_gap = 36.0;
    const double left = 80.0, right = 190.0, top_m = 100.0, bottom = 70.0, plot_h = 300.0;
    double group_w = n_bars * bar_w + (n_bars - 1) * bar_gap;
    double bars_w = n_groups * group_w + (n_groups + 1) * group_gap;
    /* wide enough for the context lines (about 6.2 px a character at 11 px) */
    double text_w = 6.2 * (double)(strlen(r->ctx->cpu_model) + strlen(r->ctx->date) +
                                   strlen(r->ctx->compiler) + 60);
    double isa_w = 6.2 * (double)(strlen(r->ctx->isa) + 6);
    if (isa_w > text_w) text_w = isa_w;
    if (9.8 * (double)strlen(title) > text_w) text_w = 9.8 * (double)strlen(title); /* bold 16 px */
    double plot_w = bars_w;
    if (plot_w < 300.0) plot_w = 300.0;
    if (left + plot_w + right < text_w + 40.0) plot_w = text_w + 40.0 - left - right;
    double bars_x = left + (plot_w - bars_w) / 2; /* groups centred in the plot */
    double width = left + plot_w + right, height = top_m + plot_h + bottom;
    double y0 = top_m + plot_h; /* the baseline */

    cli_out_file of;
    FILE *f;
    if (cli_out_open(&of, path, msg, msg_size) != 0) return -1;
    f = of.f;

    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(
        f,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
        "viewBox=\"0 0 %.0f %.0f\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n",
        width, height, width, height);
    fputs("  <title>", f);
    xml_text(f, title);
    fputs("</title>\n", f);
    fputs("  <defs>\n    <pattern id=\"fail\" width=\"6\" height=\"6\" "
          "patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">\n"
          "      <rect width=\"6\" height=\"6\" fill=\"#ffffff\"/>\n"
          "      <line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"6\" stroke=\"#c00000\" "
          "stroke-width=\"3\"/>\n    </pattern>\n  </defs>\n",
          f);
    fprintf(f, "  <rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n", width,
            height);
    /* title and three lines of context */
    fprintf(f,
            "  <text x=\"%.1f\" y=\"26\" font-size=\"16\" font-weight=\"bold\" "
            "text-anchor=\"middle\">",
            width / 2);
    xml_text(f, title);
    fputs("</text>\n", f);
    for (int line = 0; line < 3; line++) {
        char sub[512];
        if (line == 0)
            snprintf(sub, sizeof sub, "%s, %d online CPUs; libmha %s (git %s), %s %s; %s",
                     r->ctx->cpu_model, r->ctx->online_cpus, r->ctx->library_version,
                     r->ctx->git_commit, r->ctx->compiler, r->ctx->build_type, r->ctx->date);
        else if (line == 1)
            snprintf(sub, sizeof sub, "ISA: %s", r->ctx->isa);
        else if (server && o->max_batch > 0)
            snprintf(sub, sizeof sub,
                     "batch-1 requests, Poisson arrivals, request queue (max batch %d); "
                     "p99 latency bound %.3g ms",
                     o->max_batch, o->p99_ms);
        else if (server)
            snprintf(sub, sizeof sub,
                     "batch-1 requests, Poisson arrivals, %d clients; "
                     "p99 latency bound %.3g ms",
                     o->clients, o->p99_ms);
        else
            snprintf(sub, sizeof sub, "%.4g FLOP per run%s; bars: GFLOP/s of the median run",
                     r->probe->flops, r->probe->causal ? " (causal: attention term halved)" : "");
        fprintf(f,
                "  <text x=\"%.1f\" y=\"%d\" font-size=\"11\" fill=\"#444444\" "
                "text-anchor=\"middle\">",
                width / 2, 46 + 15 * line);
        xml_text(f, sub);
        fputs("</text>\n", f);
    }

    /* grid lines and y ticks */
    for (int k = 0; k <= 5; k++) {
        double v = step * k, y = y0 - plot_h * (v / top);
        fprintf(f,
                "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                "stroke-width=\"1\"/>\n",
                left, y, left + plot_w, y, k ? "#e0e0e0" : "#000000");
        fmt_axis(num, sizeof num, v);
        fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%s</text>\n",
                left - 6, y + 4, num);
    }
    fprintf(f, "  <line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000000\"/>\n",
            left, top_m, left, y0);
    fprintf(f,
            "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\" "
            "transform=\"rotate(-90 %.1f %.1f)\">%s</text>\n",
            left - 52, top_m + plot_h / 2, left - 52, top_m + plot_h / 2,
            server ? "highest rate with p99 within the bound (requests/s)"
                   : "GFLOP/s (from the median run time)");

    /* bars */
    for (int g = 0; g < n_groups; g++) {
        double gx = bars_x + group_gap + g * (group_w + group_gap);
        for (int b = 0; b < n_bars; b++) {
            const bench_result *x = NULL;
            for (int i = 0; i < r->n_results; i++)
                if (strcmp(r->results[i].backend, groups[g]) == 0 &&
                    r->results[i].threads == o->threads[b])
                    x = &r->results[i];
            double bx = gx + b * (bar_w + bar_gap);
            const char *color = colors[b % (int)(sizeof colors / sizeof colors[0])];
            if (!x || !x->ran) {
                fprintf(f,
                        "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#c00000\" "
                        "text-anchor=\"middle\">error</text>\n",
                        bx + bar_w / 2, y0 - 4);
                continue;
            }
            double v = server ? x->max_rate_rps : x->gflops;
            if (!isfinite(v) || v < 0.0) v = 0.0;
            double h = plot_h * (v / top);
            int bad = !x->accuracy_ok, loud = noisy(r, x);
            fprintf(f,
                    "  <rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" "
                    "stroke=\"%s\" stroke-width=\"%s\"%s><title>",
                    bx, y0 - h, bar_w, h, bad ? "url(#fail)" : color, bad ? "#c00000" : color,
                    bad ? "2" : "1", loud ? " fill-opacity=\"0.45\"" : "");
            xml_text(f, x->backend);
            fprintf(f, ", %d thread%s: %s; CV %.1f%%</title></rect>\n", x->threads,
                    x->threads == 1 ? "" : "s", bad ? "FAILED the accuracy check" : "ok",
                    100.0 * x->cv);
            double label_y = y0 - h; /* above the bar, or above its error bar */
            if (!server) {
                double lo = y0 - plot_h * (gflops_at(r, x->p75_ms) / top);
                double hi = y0 - plot_h * (error_bar_top(r, x) / top);
                double cx = bx + bar_w / 2;
                fprintf(f,
                        "  <path class=\"errorbar\" d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f "
                        "%.1fH%.1f\" stroke=\"#000000\" stroke-width=\"1.2\" fill=\"none\"/>\n",
                        cx, lo, hi, cx - 5, lo, cx + 5, cx - 5, hi, cx + 5);
                if (hi < label_y) label_y = hi;
            }
            if (loud) {
                fprintf(
                    f,
                    "  <text class=\"noisy\" x=\"%.1f\" y=\"%.1f\" font-size=\"10\" "
                    "font-style=\"italic\" text-anchor=\"middle\" fill=\"#b35900\">noisy</text>\n",
                    bx + bar_w / 2, label_y - 4);
                label_y -= 12;
            }
            if (v >= 100.0)
                snprintf(num, sizeof num, "%.0f", v);
            else if (v >= 10.0)
                snprintf(num, sizeof num, "%.1f", v);
            else
                snprintf(num, sizeof num, "%.3g", v);
            fprintf(f,
                    "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\" "
                    "fill=\"%s\">%s</text>\n",
                    bx + bar_w / 2, label_y - (bad ? 16 : 4), bad ? "#c00000" : "#000000", num);
            if (bad)
                fprintf(f,
                        "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" font-weight=\"bold\" "
                        "text-anchor=\"middle\" fill=\"#c00000\">FAIL</text>\n",
                        bx + bar_w / 2, label_y - 4);
            fprintf(f,
                    "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"9\" text-anchor=\"middle\" "
                    "fill=\"#444444\">%d</text>\n",
                    bx + bar_w / 2, y0 + 12, x->threads);
        }
        fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"13\" text-anchor=\"middle\">",
                gx + group_w / 2, y0 + 30);
        xml_text(f, groups[g]);
        fputs("</text>\n", f);
    }
    fprintf(f,
            "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" text-anchor=\"middle\">backend "
            "(small numbers under the bars: threads)</text>\n",
            left + plot_w / 2, y0 + 55);

    /* legend */
    double lx = left + plot_w + 24, ly = top_m + 10;
    fprintf(f,
            "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"12\" font-weight=\"bold\">threads</text>\n",
            lx, ly);
    for (int b = 0; b < n_bars; b++) {
        double yy = ly + 12 + b * 20;
        fprintf(f, "  <rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"14\" fill=\"%s\"/>\n", lx,
                yy, colors[b % (int)(sizeof colors / sizeof colors[0])]);
        fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">%d thread%s</text>\n", lx + 20,
                yy + 11, o->threads[b], o->threads[b] == 1 ? "" : "s");
    }
    double ky = ly + 12 + n_bars * 20 + 8; /* the keys below the thread colours */
    if (!server) {
        fprintf(f,
                "  <path d=\"M%.1f %.1fV%.1fM%.1f %.1fH%.1fM%.1f %.1fH%.1f\" stroke=\"#000000\" "
                "stroke-width=\"1.2\" fill=\"none\"/>\n",
                lx + 7, ky + 14, ky, lx + 2, ky + 14, lx + 12, lx + 2, ky, lx + 12);
        fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">error bars: run times'</text>\n",
                lx + 20, ky + 11);
        fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">interquartile range</text>\n",
                lx + 20, ky + 25);
        ky += 40;
    }
    if (any_noisy) {
        fprintf(f,
                "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" font-style=\"italic\" "
                "fill=\"#b35900\">noisy</text>\n",
                lx, ky + 11);
        fprintf(f, "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">(pale): CV &gt; %.0f%%</text>\n",
                lx + 34, ky + 11, 100.0 * BENCH_CV_WARN);
        ky += 26;
    }
    if (any_fail) {
        double yy = ky;
        fprintf(f,
                "  <rect x=\"%.1f\" y=\"%.1f\" width=\"14\" height=\"14\" fill=\"url(#fail)\" "
                "stroke=\"#c00000\" stroke-width=\"2\"/>\n",
                lx, yy);
        fprintf(f,
                "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#c00000\">FAIL: not a "
                "valid</text>\n",
                lx + 20, yy + 11);
        fprintf(f,
                "  <text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#c00000\">result "
                "(accuracy)</text>\n",
                lx + 20, yy + 25);
    }
    fputs("</svg>\n", f);
    return cli_out_commit(&of, msg, msg_size);
}
