/* mha_peak.c -- `mha peak`: the FP32 FMA throughput this machine reaches right
 * now, per ISA and thread count, so "% of peak" in benchmark tables is
 * measured against the same clock the timings ran at (a shared machine's
 * boost clock moves: the same core measured 222 and 270 GFLOP/s on two days).
 *
 * Each thread runs independent FMA chains held in registers (16 ZMM or 12 YMM
 * accumulators: more than FMA latency x FMA ports, so the loop is bound by
 * throughput, not latency); no memory is touched. FLOP = 2 per lane per FMA.
 * The bfloat16 peak (avx512bf16, the compute mode --precision bfloat16)
 * runs VDPBF16PS the same way: 16 accumulators, each instruction 2 products
 * per lane, FLOP = 4 per lane per instruction.
 * A measurement is the wall time from a common start to the last thread's
 * end; the figure is the median of --reps measurements.
 *
 * The command is built without ISA flags: the kernels carry target
 * attributes and run only when the CPU reports the ISA. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_options.h"
#include "mha_cli.h"
#include "peak_gemm.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define PEAK_X86 1
#endif

#define PEAK_MAX_THREADS CLI_THREADS_MAX
#define PEAK_MAX_REPS 99

typedef uint64_t (*peak_kernel)(uint64_t iters, float seed, float *sink);

#ifdef PEAK_X86
/* A kernel of 16 ZMM accumulator chains acc[i] = OP, held in registers;
 * FLOP per lane per OP; the constants OP reads are declared by the
 * trailing declarations. */
#define PEAK_AVX512_KERNEL(NAME, TARGET, OP, FLOP, ...)                                            \
    __attribute__((target(TARGET))) static uint64_t NAME(uint64_t iters, float seed,               \
                                                         float *sink) {                            \
        __m512 acc[16];                                                                            \
        for (int i = 0; i < 16; i++)                                                               \
            acc[i] = _mm512_set1_ps(seed + 0.01f * (float)i);                                      \
        __VA_ARGS__                                                                                \
        for (uint64_t it = 0; it < iters; it++) {                                                  \
            _Pragma("GCC unroll 16") for (int i = 0; i < 16; i++) acc[i] = OP;                     \
        }                                                                                          \
        __m512 s = acc[0];                                                                         \
        for (int i = 1; i < 16; i++)                                                               \
            s = _mm512_add_ps(s, acc[i]);                                                          \
        *sink = _mm512_reduce_add_ps(s);                                                           \
        return iters * 16u * 16u * (FLOP);                                                         \
    }

/* acc = acc * x + y converges to y / (1 - x) = 1: no overflow, no denormal. */
PEAK_AVX512_KERNEL(peak_avx512, "avx512f,fma", _mm512_fmadd_ps(acc[i], x, y), 2u,
                   const __m512 x = _mm512_set1_ps(0.999f);
                   const __m512 y = _mm512_set1_ps(0.001f);)

/* acc += 0.5 * 1 - 0.5 * 1 per lane (bfloat16 pairs (0.5, -0.5) and (1, 1)):
 * the products cancel, acc stays put. */
PEAK_AVX512_KERNEL(peak_avx512bf16, "avx512f,avx512bf16", _mm512_dpbf16_ps(acc[i], a, b), 4u,
                   const __m512bh a = (__m512bh)_mm512_set1_epi32((int)0xBF003F00u);
                   const __m512bh b = (__m512bh)_mm512_set1_epi32(0x3F803F80);)

__attribute__((target("avx2,fma"))) static uint64_t peak_avx2(uint64_t iters, float seed,
                                                              float *sink) {
    __m256 acc[12];
    for (int i = 0; i < 12; i++)
        acc[i] = _mm256_set1_ps(seed + 0.01f * (float)i);
    const __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(0.001f);
    for (uint64_t it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)
            acc[i] = _mm256_fmadd_ps(acc[i], x, y);
    }
    __m256 s = acc[0];
    for (int i = 1; i < 12; i++)
        s = _mm256_add_ps(s, acc[i]);
    float lanes[8];
    _mm256_storeu_ps(lanes, s);
    float t = 0.0f;
    for (int i = 0; i < 8; i++)
        t += lanes[i];
    *sink = t;
    return iters * 12u * 8u * 2u;
}
#endif

typedef struct peak_shared {
    atomic_int go; /* 1: start; the threads spin until then */
    peak_kernel kernel;
    uint64_t iters;
} peak_shared;

typedef struct peak_thread {
    peak_shared *sh;
    int index;
    uint64_t flop;
    float sink;
} peak_thread;

static void *peak_thread_main(void *arg) {
    peak_thread *t = arg;
    while (!atomic_load_explicit(&t->sh->go, memory_order_acquire))
        ;
    t->flop = t->sh->kernel(t->sh->iters, 1.0f + (float)t->index, &t->sink);
    return NULL;
}

/* GFLOP/s of one measurement with n threads; negative when a thread could
 * not be started (the ones that did are released with no work). */
static double peak_measure(peak_kernel kernel, int n, uint64_t iters) {
    peak_shared sh;
    atomic_init(&sh.go, 0);
    sh.kernel = kernel;
    sh.iters = iters;
    peak_thread th[PEAK_MAX_THREADS];
    pthread_t tid[PEAK_MAX_THREADS];
    int started = 0;
    for (int i = 0; i < n; i++) {
        th[i].sh = &sh;
        th[i].index = i;
        th[i].flop = 0;
        if (pthread_create(&tid[i], NULL, peak_thread_main, &th[i]) != 0) break;
        started++;
    }
    if (started < n) sh.iters = 0;
    double t0 = cli_now();
    atomic_store_explicit(&sh.go, 1, memory_order_release);
    uint64_t flop = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(tid[i], NULL);
        flop += th[i].flop;
    }
    double dt = cli_now() - t0;
    if (started < n) return -1.0;
    return dt > 0.0 ? (double)flop / dt * 1e-9 : -1.0;
}

/* GFLOP per CPU second of one measurement on the calling thread: what a
 * core reaches while it runs, whatever else shares the machine. */
static double peak_cpu_measure(peak_kernel kernel, uint64_t iters) {
    struct timespec t0, t1;
    float sink;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    const uint64_t flop = kernel(iters, 1.0f, &sink);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    const double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    return dt > 0.0 ? (double)flop / dt * 1e-9 : -1.0;
}

static int peak_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

enum { PEAK_THREADS = 1, PEAK_SECONDS, PEAK_REPS, PEAK_JSON, PEAK_GEMM, PEAK_BACKEND };

static const cli_opt peak_opts[] = {
    {PEAK_THREADS, "threads", 0, "LIST",
     "thread counts, e.g. 1,2, each in [0, 1024] (0: every\n"
     "online CPU; default 1 and the online CPUs)"},
    {PEAK_SECONDS, "seconds", 0, "S", "length of one measurement, in [0.01, 60] (default 0.3)"},
    {PEAK_REPS, "reps", 0, "N",
     "measurements per figure, in [1, 99]; the median is\nreported (default 5)"},
    {PEAK_JSON, "json", 0, "FILE",
     "also write {\"avx512\": {\"1\": GF, ...}, \"avx512bf16\": {...},\n"
     "\"avx2\": {...}}"},
    {PEAK_GEMM, "gemm", 0, "MxKxN,...",
     "also time the backend's GEMM (C = A . B + bias, B packed\n"
     "once) at these shapes, in --precision, against the peak of\n"
     "that precision (VDPBF16PS for bfloat16, FMA for float32)"},
    {PEAK_BACKEND, "backend", 0, "NAME", "the backend of --gemm (default auto)"},
    {0},
};

/* Its own --threads (a list): no runtime options. */
static const cli_spec peak_spec = {
    "Usage: mha peak [--threads LIST] [--seconds S] [--reps N] [--json FILE]\n"
    "                [--gemm MxKxN,... [--backend NAME] [--precision P]]\n"
    "\n"
    "Measures the FP32 FMA throughput of this machine now: register-only FMA\n"
    "chains per thread, AVX-512 and AVX2 (each when the CPU has it), for each\n"
    "thread count; and the bfloat16 dot-product peak (VDPBF16PS, avx512bf16: the\n"
    "bound of --precision bfloat16). Prints the median and the range of --reps\n"
    "measurements. With --gemm, only the peak of --precision, then the GEMM at\n"
    "each shape (the rows in 72-row units claimed by the threads).\n",
    peak_opts,
    CLI_COMMON_PRECISION,
    NULL,
};

int mha_cmd_peak(int argc, char **argv) {
    int threads[16], n_threads = 0, reps = 5;
    double seconds = 0.3;
    const char *json = NULL, *gemm = NULL, *backend = NULL;
    cli_common c = {0};
    cli_parser p;
    long long n;
    if (cli_parse_begin(&p, &peak_spec, &c, argc, argv) != 0) return cli_fail("too many options");
    for (int id; (id = cli_parse_next(&p)) != CLI_PARSE_END;) {
        const char *v = p.value;
        char *end = NULL;
        switch (id) {
        case CLI_PARSE_EXIT:
            return p.status;
        case CLI_PARSE_ARG:
            return cli_usage_error(&c, "unexpected argument '%s'", v);
        case PEAK_THREADS:
            if (!cli_parse_thread_list(&c, v, threads, 16, &n_threads)) return CLI_USAGE;
            break;
        case PEAK_SECONDS:
            seconds = strtod(v, &end);
            if (!cli_number_text(v) || end == v || *end || !(seconds >= 0.01 && seconds <= 60.0))
                return cli_usage_error(&c, "--seconds wants a number in [0.01, 60], not '%s'", v);
            break;
        case PEAK_REPS:
            if (!cli_parse_int(&c, "--reps", v, 1, PEAK_MAX_REPS, &n)) return CLI_USAGE;
            reps = (int)n;
            break;
        case PEAK_JSON:
            json = v;
            break;
        case PEAK_GEMM:
            gemm = v;
            break;
        case PEAK_BACKEND:
            backend = v;
            break;
        }
    }
    if (!gemm && (backend || c.precision != MHA_PRECISION_FLOAT32))
        return cli_usage_error(&c, "--backend and --precision go with --gemm");
    if (cli_report_path_check(&c, "--json", "a report", json) != CLI_OK) return CLI_USAGE;
    if (n_threads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        threads[n_threads++] = 1;
        if (cpus > 1)
            threads[n_threads++] = (int)(cpus > PEAK_MAX_THREADS ? PEAK_MAX_THREADS : cpus);
    }

    struct {
        const char *name;
        peak_kernel kernel;
        int usable;
        double gflops[16];
    } isa[3];
    int n_isa = 0;
#ifdef PEAK_X86
    __builtin_cpu_init();
    isa[n_isa].name = "avx512";
    isa[n_isa].kernel = peak_avx512;
    isa[n_isa++].usable = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    isa[n_isa].name = "avx512bf16";
    isa[n_isa].kernel = peak_avx512bf16;
    isa[n_isa++].usable = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
    isa[n_isa].name = "avx2";
    isa[n_isa].kernel = peak_avx2;
    isa[n_isa++].usable = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    if (n_isa == 0) return cli_fail("peak: no FMA kernel for this architecture");
    if (gemm) { /* only the peak the GEMM is read against */
        const char *want = c.precision == MHA_PRECISION_BFLOAT16 ? "avx512bf16" : "avx512";
        for (int k = 0; k < n_isa; k++)
            if (strcmp(isa[k].name, want) != 0) isa[k].usable = -1;
    }

    /* the JSON file is opened first: a path that cannot be written fails
     * before minutes of measuring, and nothing is printed */
    cli_out_file of;
    char msg[512];
    if (json && cli_out_open(&of, json, msg, sizeof msg) != 0) return cli_fail("%s", msg);

    double core_peak = 0.0; /* --gemm: one core's peak per CPU second */
    printf("isa        threads   GFLOP/s  (median of %d; min-max)\n", reps);
    for (int k = 0; k < n_isa; k++) {
        if (isa[k].usable < 0) continue;
        if (!isa[k].usable) {
            printf("%-10s  not supported by this CPU\n", isa[k].name);
            continue;
        }
        /* calibrate: iterations for about `seconds` on one thread */
        uint64_t iters = 1u << 16;
        for (;;) {
            double t0 = cli_now();
            float sink;
            isa[k].kernel(iters, 1.0f, &sink);
            double dt = cli_now() - t0;
            if (dt >= 0.02 || iters >= (UINT64_C(1) << 40)) {
                double want = (double)iters * seconds / (dt > 1e-6 ? dt : 1e-6);
                iters = want < 1.0 ? 1u : (uint64_t)want;
                break;
            }
            iters *= 4;
        }
        if (gemm && isa[k].usable > 0) { /* the CPU-time peak the GEMM's CPU figure needs */
            double v[PEAK_MAX_REPS];
            for (int r = 0; r < reps; r++)
                v[r] = peak_cpu_measure(isa[k].kernel, iters);
            qsort(v, (size_t)reps, sizeof v[0], peak_cmp);
            core_peak = v[reps / 2];
            printf("%-10s %7s %9.1f  (%.1f-%.1f) per CPU second\n", isa[k].name, "1", core_peak,
                   v[0], v[reps - 1]);
        }
        for (int t = 0; t < n_threads; t++) {
            double v[PEAK_MAX_REPS];
            for (int r = 0; r < reps; r++) {
                v[r] = peak_measure(isa[k].kernel, threads[t], iters);
                if (v[r] < 0.0) {
                    if (json) cli_out_discard(&of);
                    return cli_fail("peak: could not start %d threads", threads[t]);
                }
            }
            qsort(v, (size_t)reps, sizeof v[0], peak_cmp);
            isa[k].gflops[t] = v[reps / 2];
            printf("%-10s %7d %9.1f  (%.1f-%.1f)\n", isa[k].name, threads[t], v[reps / 2], v[0],
                   v[reps - 1]);
            fflush(stdout);
        }
    }

    if (gemm) {
        double peak[16] = {0};
        for (int k = 0; k < n_isa; k++)
            if (isa[k].usable > 0)
                for (int t = 0; t < n_threads; t++)
                    peak[t] = isa[k].gflops[t];
        printf("\n");
        int rc = peak_gemm_run(gemm, backend, c.precision, threads, n_threads, seconds, reps, peak,
                               core_peak);
        if (rc != CLI_OK) {
            if (json) cli_out_discard(&of);
            return rc;
        }
    }

    if (json) {
        fprintf(of.f, "{");
        int first_isa = 1;
        for (int k = 0; k < n_isa; k++) {
            if (isa[k].usable <= 0) continue;
            fprintf(of.f, "%s\"%s\": {", first_isa ? "" : ", ", isa[k].name);
            first_isa = 0;
            for (int t = 0; t < n_threads; t++)
                fprintf(of.f, "%s\"%d\": %.1f", t ? ", " : "", threads[t], isa[k].gflops[t]);
            fprintf(of.f, "}");
        }
        fprintf(of.f, "}\n");
        /* a signal while the file is written ends the command once it is
         * whole, never with its temporary left behind */
        cli_signals sigs;
        cli_signals_catch(&sigs);
        int rc = cli_out_commit(&of, msg, sizeof msg) != 0 ? cli_fail("%s", msg) : CLI_OK;
        return cli_signals_end(&sigs, rc);
    }
    return CLI_OK;
}
