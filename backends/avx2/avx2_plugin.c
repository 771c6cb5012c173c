/* avx2_plugin.c -- the table and probe of the avx2 backend. Compiled
 * WITHOUT ISA flags and without LTO: the host runs probe() before it knows
 * whether this CPU has AVX2 and FMA, so no instruction here may need it. */
#include "avx2/avx2_kernels.h"
#include "common/kernel_common.h"
#include "common/backend_scores.h"
#include "plugin_probe.h"

/* The kernels are built with -mavx2 -mfma. */
#define AVX2_REQUIRED (MHA_CPU_AVX | MHA_CPU_AVX2 | MHA_CPU_FMA)

static int avx2_probe(uint64_t cpu_features, const char **reason) {
    return plugin_probe_require(cpu_features, AVX2_REQUIRED, MHA_SCORE_AVX2, reason);
}

/* No state (init and fini NULL): one set of kernels, one layout. */
static const mha_plugin avx2_plugin = {
    .abi_major = MHA_PLUGIN_ABI_MAJOR,
    .abi_minor = MHA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(mha_plugin),
    .name = "avx2",
    .version = "0.1.0",
    .description = "AVX2+FMA: 6x16 GEMM micro-kernel, flash attention (8 lanes)",
    .flags = 0,
    .precisions = MHA_PRECISION_BIT(MHA_PRECISION_FLOAT32),
    .ops = MHA_OP_ALIBI | MHA_OP_ROTARY | MHA_OP_NORM,
    .epilogues = KERNEL_EPILOGUES,
    .probe = avx2_probe,
    .gemm_m_block = 6,
    .gemm_n_block = 16,
    .gemm_packed_size = avx2_gemm_packed_size,
    .gemm_pack_b = avx2_gemm_pack_b,
    .gemm = avx2_gemm,
    .attention_workspace_size = avx2_attention_workspace_size,
    .attention = avx2_attention,
    .rotary = avx2_rotary,
    .norm = avx2_norm,
};

const mha_plugin *mha_avx2_plugin_table(void);

const mha_plugin *mha_avx2_plugin_table(void) {
    return &avx2_plugin;
}
