/* avx2_plugin.c -- the table and probe of the avx2 backend. Compiled
 * WITHOUT ISA flags and without LTO: the host runs probe() before it knows
 * whether this CPU has AVX2 and FMA, so no instruction here may need it. */
#include "avx2/avx2_kernels.h"
#include "common/backend_scores.h"
#include "plugin_probe.h"

/* The kernels are built with -mavx2 -mfma. */
#define AVX2_REQUIRED (MHA_CPU_AVX | MHA_CPU_AVX2 | MHA_CPU_FMA)

static int avx2_probe(uint64_t cpu_features, const char **reason) {
    return plugin_probe_require(cpu_features, AVX2_REQUIRED, MHA_SCORE_AVX2, reason);
}

static int avx2_init(const mha_plugin_services *services, void **state) {
    (void)services;
    if (state) *state = NULL;
    return 0;
}

static void avx2_fini(void *state) {
    (void)state;
}

static const mha_plugin avx2_plugin = {
    .abi_major = MHA_PLUGIN_ABI_MAJOR,
    .abi_minor = MHA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(mha_plugin),
    .name = "avx2",
    .version = "0.1.0",
    .description = "AVX2+FMA: 6x16 GEMM micro-kernel, flash attention (8 lanes)",
    .flags = 0,
    .probe = avx2_probe,
    .init = avx2_init,
    .fini = avx2_fini,
    .gemm_m_block = 6,
    .gemm_n_block = 16,
    .gemm_packed_size = avx2_gemm_packed_size,
    .gemm_pack_b = avx2_gemm_pack_b,
    .gemm = avx2_gemm,
    .attention_workspace_size = avx2_attention_workspace_size,
    .attention = avx2_attention,
    .get_proc = NULL,
    .rotary = avx2_rotary,
};

const mha_plugin *mha_avx2_plugin_table(void);

const mha_plugin *mha_avx2_plugin_table(void) {
    return &avx2_plugin;
}
