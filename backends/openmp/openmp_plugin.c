/* openmp_plugin.c -- the table and probe of the openmp backend. Compiled
 * without ISA flags and without LTO, like every plugin's probe. The kernels
 * need only the baseline ISA, so the probe accepts any x86-64 (SSE2) CPU.
 *
 * Flags MHA_PLUGIN_SELF_PARALLEL: the host gives it whole problems on one
 * thread and the worker count in args->num_threads, so only one parallel
 * layer (OpenMP's) is ever active. */
#include "common/backend_scores.h"
#include "openmp/openmp_kernels.h"
#include "plugin_probe.h"

static int openmp_probe(uint64_t cpu_features, const char **reason) {
#if defined(__x86_64__) || defined(__i386__)
    return plugin_probe_require(cpu_features, MHA_CPU_SSE2, MHA_SCORE_OPENMP, reason);
#else
    (void)cpu_features;
    (void)reason;
    return MHA_SCORE_OPENMP;
#endif
}

static int openmp_init(const mha_plugin_services *services, void **state) {
    (void)services;
    if (state) *state = NULL;
    return 0;
}

static void openmp_fini(void *state) {
    (void)state;
}

static const mha_plugin openmp_plugin = {
    .abi_major = MHA_PLUGIN_ABI_MAJOR,
    .abi_minor = MHA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(mha_plugin),
    .name = "openmp",
    .version = "0.1.0",
    .description = "OpenMP-parallel, baseline ISA: 4x8 GEMM tiles, flash attention (4 lanes)",
    .flags = MHA_PLUGIN_SELF_PARALLEL,
    .probe = openmp_probe,
    .init = openmp_init,
    .fini = openmp_fini,
    .gemm_m_block = OPENMP_GEMM_MR,
    .gemm_n_block = OPENMP_GEMM_NR,
    .gemm_packed_size = openmp_gemm_packed_size,
    .gemm_pack_b = openmp_gemm_pack_b,
    .gemm = openmp_gemm,
    .attention_workspace_size = openmp_attention_workspace_size,
    .attention = openmp_attention,
    .get_proc = NULL,
};

const mha_plugin *mha_openmp_plugin_table(void);

const mha_plugin *mha_openmp_plugin_table(void) {
    return &openmp_plugin;
}
