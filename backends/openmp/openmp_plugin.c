/* openmp_plugin.c -- the table, probe and init of the openmp backend.
 * Compiled without ISA flags and without LTO, like every plugin's probe.
 * The baseline kernels need only SSE2, so the probe accepts any x86-64 CPU;
 * init() then picks, from the CPU features the host lends it (after
 * MHA_CPU_MASK), the best of the three kernel variants built into
 * this object: AVX-512, AVX2+FMA or baseline. The plugin state is a pointer
 * to that variant's static const kernel set (its kernels and its packed-B
 * layout), so there is nothing to free and no mutable global; init() says
 * at debug level which variant it chose.
 * The choice never comes from this plugin's own CPUID: a masked feature
 * must stay unused.
 *
 * Flags MHA_PLUGIN_SELF_PARALLEL: the host gives it whole problems on one
 * thread and the worker count in args->num_threads, so only one parallel
 * layer (OpenMP's) is ever active. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/backend_scores.h"
#include "common/kernel_common.h"
#include "openmp/openmp_kernels.h"
#include "plugin_probe.h"

/* What each variant's -m flags let the compiler use (the AVX-512 object may
 * contain AVX2 and FMA code too). */
#define OPENMP_AVX2_NEEDS (MHA_CPU_AVX | MHA_CPU_AVX2 | MHA_CPU_FMA)
#define OPENMP_AVX512_NEEDS                                                                        \
    (OPENMP_AVX2_NEEDS | MHA_CPU_AVX512F | MHA_CPU_AVX512DQ | MHA_CPU_AVX512BW | MHA_CPU_AVX512VL)

/* The stack size the OpenMP runtime gives its threads from the
 * environment, read as libgomp (and libomp) read OMP_STACKSIZE, else
 * GOMP_STACKSIZE: a number, then B, K, M or G (K without one), blanks
 * around. 0 when unset or a value they refuse (they then warn and keep
 * their default). *name receives the variable's name. */
static unsigned long long openmp_env_stack_bytes(const char **name) {
    static const char *const vars[] = {"OMP_STACKSIZE", "GOMP_STACKSIZE"};
    for (size_t i = 0; i < 2; i++) {
        const char *v = getenv(vars[i]);
        if (!v) continue;
        *name = vars[i];
        while (isspace((unsigned char)*v))
            v++;
        if (!isdigit((unsigned char)*v)) return 0;
        errno = 0;
        char *end = NULL;
        unsigned long long n = strtoull(v, &end, 10);
        if (errno) return 0;
        while (isspace((unsigned char)*end))
            end++;
        static const char units[] = "bkmg"; /* shifts 0, 10, 20, 30 */
        const char *unit = *end ? strchr(units, tolower((unsigned char)*end)) : NULL;
        int shift = unit ? 10 * (int)(unit - units) : 10;
        if (unit) end++;
        while (isspace((unsigned char)*end))
            end++;
        if (*end || ((n << shift) >> shift) != n) return 0;
        return n << shift;
    }
    return 0;
}

static void *openmp_idle_thread(void *arg) {
    return arg;
}

/* The OpenMP runtime ends the process when it cannot start a thread of a
 * team ("libgomp: Thread creation failed", exit 1, at a run's first
 * parallel region): with OMP_STACKSIZE=100000G, say, every run of this
 * backend did, which a library must never do. So a thread with that stack
 * is started here first, and the backend refused when it cannot be. (A
 * stack each thread can have but not all of them together is still the
 * runtime's to fail on.) */
static int openmp_env_stack_usable(const char **reason) {
    static _Thread_local char why[160];
    const char *name = NULL;
    unsigned long long bytes = openmp_env_stack_bytes(&name);
    if (!bytes) return 1;
    pthread_attr_t attr;
    pthread_t t;
    int e = pthread_attr_init(&attr);
    if (e == 0) {
        e = bytes > (unsigned long long)SIZE_MAX ? EINVAL
                                                 : pthread_attr_setstacksize(&attr, (size_t)bytes);
        if (e == 0) e = pthread_create(&t, &attr, openmp_idle_thread, NULL);
        if (e == 0) pthread_join(t, NULL);
        pthread_attr_destroy(&attr);
    }
    if (e == 0) return 1;
    snprintf(why, sizeof why,
             "%s=%s: the OpenMP runtime cannot start a thread with that stack (%s), and would end "
             "the process",
             name, getenv(name), strerror(e));
    if (reason) *reason = why;
    return 0;
}

static int openmp_probe(uint64_t cpu_features, const char **reason) {
    if (!openmp_env_stack_usable(reason)) return 0;
#if defined(__x86_64__) || defined(__i386__)
    return plugin_probe_require(cpu_features, MHA_CPU_SSE2, MHA_SCORE_OPENMP, reason);
#else
    (void)cpu_features;
    return MHA_SCORE_OPENMP;
#endif
}

/* The features the host told init(), or 0 (baseline) from a services table
 * too short to hold them. */
static uint64_t openmp_host_features(const mha_plugin_services *s) {
    if (!s || s->struct_size < MHA_SERVICES_SIZE_2_0) return 0;
    return s->cpu_features;
}

static const openmp_kernels *openmp_pick(uint64_t features) {
#if defined(OPENMP_HAVE_ISA_VARIANTS)
    if ((features & OPENMP_AVX512_NEEDS) == OPENMP_AVX512_NEEDS) return &openmp_kernels_avx512;
    if ((features & OPENMP_AVX2_NEEDS) == OPENMP_AVX2_NEEDS) return &openmp_kernels_avx2;
#else
    (void)features;
#endif
    return &openmp_kernels_baseline;
}

/* A state from init(); NULL (a host that never called init) runs the
 * baseline, which works everywhere. */
static const openmp_kernels *openmp_state(void *state) {
    return state ? (const openmp_kernels *)state : &openmp_kernels_baseline;
}

static int openmp_init(const mha_plugin_services *services, void **state) {
    if (!state) return 1;
    const openmp_kernels *k = openmp_pick(openmp_host_features(services));
    *state = (void *)k;
    if (services && services->log) {
        char msg[64] = "openmp: ";
        strncat(msg, k->isa, sizeof msg - strlen(msg) - 1);
        strncat(msg, " kernels", sizeof msg - strlen(msg) - 1);
        services->log(services->ctx, MHA_PLUGIN_LOG_DEBUG, msg);
    }
    return 0;
}

static size_t openmp_gemm_packed_size(void *state, int precision, int64_t K, int64_t N) {
    return openmp_state(state)->gemm_packed_size(precision, K, N);
}

static int openmp_gemm_pack_b(void *state, int precision, int64_t K, int64_t N, const float *B,
                              int64_t ldb, void *packed) {
    return openmp_state(state)->gemm_pack_b(precision, K, N, B, ldb, packed);
}

static int openmp_gemm(void *state, const mha_gemm_args *args) {
    return openmp_state(state)->gemm(args);
}

static size_t openmp_attention_workspace_size(void *state, const mha_attn_args *args) {
    return openmp_state(state)->attention_workspace_size(args);
}

static int openmp_attention(void *state, const mha_attn_args *args, void *workspace,
                            size_t workspace_size) {
    return openmp_state(state)->attention(args, workspace, workspace_size);
}

static int openmp_rotary(void *state, const mha_rotary_args *args) {
    return openmp_state(state)->rotary(args);
}

static int openmp_norm(void *state, const mha_norm_args *args) {
    return openmp_state(state)->norm(args);
}

static const mha_plugin openmp_plugin = {
    .abi_major = MHA_PLUGIN_ABI_MAJOR,
    .abi_minor = MHA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(mha_plugin),
    .name = "openmp",
    .version = "0.2.0",
    .description = "OpenMP-parallel, kernels picked at init for the host's ISA: AVX-512 (12x32 "
                   "GEMM tiles), AVX2+FMA (6x16) or baseline (6x32)",
    .flags = MHA_PLUGIN_SELF_PARALLEL,
    .precisions = MHA_PRECISION_BIT(MHA_PRECISION_FLOAT32),
    .ops = MHA_OP_ALIBI | MHA_OP_ROTARY | MHA_OP_NORM,
    .epilogues = KERNEL_EPILOGUES,
    .probe = openmp_probe,
    .init = openmp_init,
    .fini = NULL, /* the states are static tables */
    .gemm_m_block = OPENMP_GEMM_M_BLOCK,
    .gemm_n_block = OPENMP_GEMM_NR,
    .gemm_packed_size = openmp_gemm_packed_size,
    .gemm_pack_b = openmp_gemm_pack_b,
    .gemm = openmp_gemm,
    .attention_workspace_size = openmp_attention_workspace_size,
    .attention = openmp_attention,
    .rotary = openmp_rotary,
    .norm = openmp_norm,
};

const mha_plugin *mha_openmp_plugin_table(void);

const mha_plugin *mha_openmp_plugin_table(void) {
    return &openmp_plugin;
}
