/* bench_context.c -- the environment a benchmark ran in (CPU model, ISA
 * the runtime detected, cores, denormal mode, compiler and flags, library
 * version, git commit, date; never the host name), the RSS of a process,
 * and /proc/stat sampling to notice other processes keeping CPUs busy
 * while we time. */
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#include "bench_internal.h"
#include "mha/plugin.h"

/* Filled in by tools/bench.cmake at configure time. */
#ifndef MHA_BENCH_COMPILER
#define MHA_BENCH_COMPILER "unknown"
#endif
#ifndef MHA_BENCH_C_FLAGS
#define MHA_BENCH_C_FLAGS "unknown"
#endif
#ifndef MHA_BENCH_BUILD_TYPE
#define MHA_BENCH_BUILD_TYPE "unknown"
#endif
#ifndef MHA_BENCH_GIT_COMMIT
#define MHA_BENCH_GIT_COMMIT "unknown"
#endif

double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

const char *bench_features_str(uint64_t f, char *buf, size_t size) {
    static const struct {
        uint64_t bit;
        const char *name;
    } names[] = {
        {MHA_CPU_SSE2, "sse2"},
        {MHA_CPU_SSE41, "sse4.1"},
        {MHA_CPU_AVX, "avx"},
        {MHA_CPU_F16C, "f16c"},
        {MHA_CPU_FMA, "fma"},
        {MHA_CPU_AVX2, "avx2"},
        {MHA_CPU_AVX512F, "avx512f"},
        {MHA_CPU_AVX512DQ, "avx512dq"},
        {MHA_CPU_AVX512BW, "avx512bw"},
        {MHA_CPU_AVX512VL, "avx512vl"},
        {MHA_CPU_AVX512BF16, "avx512bf16"},
    };
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(f & names[i].bit)) continue;
        int n = snprintf(buf + used, size - used, "%s%s", used ? " " : "", names[i].name);
        if (n < 0 || (size_t)n >= size - used) break;
        used += (size_t)n;
    }
    if (!used) snprintf(buf, size, "none");
    return buf;
}

static void read_cpu_model(char *out, size_t size) {
    char line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    snprintf(out, size, "unknown");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        char *colon = strchr(line, ':');
        if (!colon) continue;
        colon++;
        while (*colon == ' ' || *colon == '\t')
            colon++;
        colon[strcspn(colon, "\n")] = '\0';
        snprintf(out, size, "%s", colon);
        break;
    }
    fclose(f);
}

double bench_rss_now_mib(void) {
    long pages_total = 0, pages_rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0.0;
    if (fscanf(f, "%ld %ld", &pages_total, &pages_rss) != 2) pages_rss = 0;
    fclose(f);
    return (double)pages_rss * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

void bench_context_fill(bench_context *c, uint64_t cpu_features) {
    time_t now = time(NULL);
    struct tm tm;
    memset(c, 0, sizeof *c);
    read_cpu_model(c->cpu_model, sizeof c->cpu_model);
    bench_features_str(cpu_features, c->isa, sizeof c->isa);
    c->online_cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
#if defined(__x86_64__) || defined(__i386__)
    {
        unsigned csr = _mm_getcsr();
        snprintf(c->ftz_daz, sizeof c->ftz_daz,
                 "FTZ+DAZ set by libmha in its pool threads for each run; "
                 "bench thread outside runs: FTZ %s, DAZ %s",
                 (csr & 0x8000u) ? "on" : "off", (csr & 0x0040u) ? "on" : "off");
    }
#else
    snprintf(c->ftz_daz, sizeof c->ftz_daz, "not applicable (not x86)");
#endif
    snprintf(c->compiler, sizeof c->compiler, "%s", MHA_BENCH_COMPILER);
    snprintf(c->c_flags, sizeof c->c_flags, "%s", MHA_BENCH_C_FLAGS);
    snprintf(c->build_type, sizeof c->build_type, "%s", MHA_BENCH_BUILD_TYPE);
    snprintf(c->library_version, sizeof c->library_version, "%s", mha_version_string());
    snprintf(c->git_commit, sizeof c->git_commit, "%s", MHA_BENCH_GIT_COMMIT);
    if (gmtime_r(&now, &tm))
        strftime(c->date, sizeof c->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    else
        snprintf(c->date, sizeof c->date, "unknown");
    c->base_rss_mib = bench_rss_now_mib();
}

int bench_cpu_sample_take(bench_cpu_sample *s) {
    unsigned long long v[10] = {0};
    char tag[16];
    struct rusage ru;
    FILE *f;
    memset(s, 0, sizeof *s);
    s->wall = bench_now();
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        s->own_cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
    f = fopen("/proc/stat", "r");
    if (!f) return -1;
    /* cpu  user nice system idle iowait irq softirq steal guest guest_nice */
    int n = fscanf(f, "%15s %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu", tag, &v[0], &v[1],
                   &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
    fclose(f);
    if (n < 5 || strcmp(tag, "cpu") != 0) return -1;
    /* guest time is already counted in user; idle and iowait are not busy */
    s->busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    s->total = s->busy + v[3] + v[4];
    return 0;
}

double bench_cpu_other(const bench_cpu_sample *a, const bench_cpu_sample *b, int online,
                       double *own_cpus) {
    double wall = b->wall - a->wall;
    double own = wall > 0.0 ? (b->own_cpu - a->own_cpu) / wall : 0.0;
    double busy_cpus = 0.0;
    if (own_cpus) *own_cpus = own;
    if (b->total <= a->total || online <= 0) return 0.0;
    busy_cpus = (double)(b->busy - a->busy) / (double)(b->total - a->total) * (double)online;
    return busy_cpus > own ? busy_cpus - own : 0.0;
}
