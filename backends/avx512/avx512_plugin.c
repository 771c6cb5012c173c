/* avx512_plugin.c -- the table and probe of the avx512 backend. Compiled
 * WITHOUT ISA flags and without LTO: the host runs probe() before it knows
 * whether this CPU has AVX-512, so no instruction here may need it. */
#include "avx512/avx512_kernels.h"
#include "common/kernel_common.h"
#include "common/backend_scores.h"
#include "plugin_probe.h"

/* The kernels are built with -mavx512f -mavx512dq -mavx512bw -mavx512vl
 * -mfma, which also lets the compiler use AVX2; require all of them. */
#define AVX512_REQUIRED                                                                            \
    (MHA_CPU_AVX | MHA_CPU_AVX2 | MHA_CPU_FMA | MHA_CPU_AVX512F | MHA_CPU_AVX512DQ |               \
     MHA_CPU_AVX512BW | MHA_CPU_AVX512VL)

static int avx512_probe(uint64_t cpu_features, const char **reason) {
    return plugin_probe_require(cpu_features, AVX512_REQUIRED, MHA_SCORE_AVX512, reason);
}

/* The two states init() chooses between: read-only, shared by every
 * runtime (the plugin keeps no mutable global state). */
static const avx512_state avx512_with_dpbf16 = {.has_dpbf16 = 1};
static const avx512_state avx512_baseline = {.has_dpbf16 = 0};

/* The ISA is chosen once here, from the features the host detected (and
 * masked), never from the plugin's own CPUID. */
static int avx512_init(const mha_plugin_services *services, void **state) {
    if (!state) return 0;
    uint64_t f = 0;
    if (services && services->struct_size >= MHA_SERVICES_SIZE_2_0) f = services->cpu_features;
    const avx512_state *s = (f & MHA_CPU_AVX512BF16) ? &avx512_with_dpbf16 : &avx512_baseline;
    *state = (void *)(uintptr_t)s;
    return 0;
}

static const mha_plugin avx512_plugin = {
    .abi_major = MHA_PLUGIN_ABI_MAJOR,
    .abi_minor = MHA_PLUGIN_ABI_MINOR,
    .struct_size = sizeof(mha_plugin),
    .name = "avx512",
    .version = "0.1.0",
    .description = "AVX-512F: 12x32 GEMM micro-kernel (float32; bfloat16 by VDPBF16PS or its "
                   "emulation), flash attention (16 lanes)",
    .flags = 0,
    .precisions =
        MHA_PRECISION_BIT(MHA_PRECISION_FLOAT32) | MHA_PRECISION_BIT(MHA_PRECISION_BFLOAT16),
    .ops = MHA_OP_ALIBI | MHA_OP_ROTARY | MHA_OP_NORM,
    .epilogues = KERNEL_EPILOGUES,
    .probe = avx512_probe,
    .init = avx512_init,
    .fini = NULL, /* the states are static */
    .gemm_m_block = 12,
    .gemm_n_block = 32,
    .gemm_packed_size = avx512_gemm_packed_size,
    .gemm_pack_b = avx512_gemm_pack_b,
    .gemm = avx512_gemm,
    .attention_workspace_size = avx512_attention_workspace_size,
    .attention = avx512_attention,
    .rotary = avx512_rotary,
    .norm = avx512_norm,
};

const mha_plugin *mha_avx512_plugin_table(void);

const mha_plugin *mha_avx512_plugin_table(void) {
    return &avx512_plugin;
}
