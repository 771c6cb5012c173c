/* broken_plugin.c -- deliberately broken plugins for the loader tests
 * (tests/unit/test_registry.c). One source, one fault per build, chosen by
 * BROKEN_KIND:
 *   1 nosym    exports no mha_plugin_get (only another symbol)
 *   2 null     mha_plugin_get returns NULL
 *   3 badabi   the table says ABI major MHA_PLUGIN_ABI_MAJOR + 1
 *   4 small    the table's struct_size is too small for any ABI
 *   5 probe0   a valid table whose probe always returns 0
 *   6 short20    declares ABI 2.0 in a table one pointer short of the frozen
 *                2.0 size (its norm entry would be read past its end)
 *   7 hugeblock  gemm_m_block INT64_MAX (host tiles would wrap, then divide
 *                by zero)
 *   8 crashprobe its probe dies of SIGSEGV (the host probes in a child)
 *   9 crashinit  probes well (score 1000) but its init dies of SIGSEGV
 *  10 hangprobe  its probe never returns
 *  11 abi13      a plugin built against ABI 1.3, as plugins/common's entry
 *                was then: NULL for any host major but 1, and for 1 a 1.3
 *                table (168 bytes; only its first fields are declared here)
 *  12 abi11any   a 1.1 table (136 bytes) handed to any host major
 * The kernels are stubs that fail: none of these may ever be selected. */
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include "mha/plugin.h"

#ifndef BROKEN_KIND
#error "define BROKEN_KIND"
#endif

#define BROKEN_EXPORT __attribute__((visibility("default")))

static int broken_probe(uint64_t cpu_features, const char **reason) {
    (void)cpu_features;
#if BROKEN_KIND == 8
    raise(SIGSEGV);
#endif
#if BROKEN_KIND == 10
    for (;;)
        pause();
#endif
#if BROKEN_KIND == 5
    if (reason) *reason = "testing: this probe always says no";
    return 0;
#else
    (void)reason;
    return 1000; /* would win "auto" if the loader let it through */
#endif
}

#if BROKEN_KIND == 9
static int broken_init(const mha_plugin_services *services, void **state) {
    (void)services, (void)state;
    raise(SIGSEGV);
    return 1;
}
#endif

static size_t broken_packed_size(void *state, int precision, int64_t K, int64_t N) {
    (void)state, (void)precision, (void)K, (void)N;
    return 0;
}

static int broken_pack_b(void *state, int precision, int64_t K, int64_t N, const float *B,
                         int64_t ldb, void *packed) {
    (void)state, (void)precision, (void)K, (void)N, (void)B, (void)ldb, (void)packed;
    return 1;
}

static int broken_gemm(void *state, const mha_gemm_args *args) {
    (void)state, (void)args;
    return 1;
}

static size_t broken_ws(void *state, const mha_attn_args *args) {
    (void)state, (void)args;
    return 0;
}

static int broken_attention(void *state, const mha_attn_args *args, void *ws, size_t n) {
    (void)state, (void)args, (void)ws, (void)n;
    return 1;
}

__attribute__((unused)) static const mha_plugin broken_table = {
#if BROKEN_KIND == 3
    .abi_major = MHA_PLUGIN_ABI_MAJOR + 1,
#else
    .abi_major = MHA_PLUGIN_ABI_MAJOR,
#endif
    .abi_minor = 0,
#if BROKEN_KIND == 4
    .struct_size = 16,
#elif BROKEN_KIND == 6
    .struct_size = MHA_PLUGIN_SIZE_2_0 - sizeof(void *),
#else
    .struct_size = sizeof(mha_plugin),
#endif
    .name = "broken",
    .version = "0.0.0",
    .description = "loader fault test",
    .precisions = MHA_PRECISION_BIT(MHA_PRECISION_FLOAT32),
    .probe = broken_probe,
#if BROKEN_KIND == 9
    .init = broken_init,
#endif
#if BROKEN_KIND == 7
    .gemm_m_block = INT64_MAX,
#else
    .gemm_m_block = 1,
#endif
    .gemm_n_block = 1,
    .gemm_packed_size = broken_packed_size,
    .gemm_pack_b = broken_pack_b,
    .gemm = broken_gemm,
    .attention_workspace_size = broken_ws,
    .attention = broken_attention,
};

#if BROKEN_KIND == 11 || BROKEN_KIND == 12
/* The head every ABI major shares (plugin.h), then the rest of a 1.x table
 * as bytes: a host of major 2 may read the head only. */
typedef struct old_table {
    uint32_t abi_major, abi_minor, struct_size;
    const char *name;
    unsigned char rest[168 - 24];
} old_table;

#if BROKEN_KIND == 11
static const old_table old = {.abi_major = 1, .abi_minor = 3, .struct_size = 168, .name = "oldabi"};
#else
static const old_table old = {.abi_major = 1, .abi_minor = 1, .struct_size = 136, .name = "oldabi"};
#endif

BROKEN_EXPORT const void *mha_plugin_get(uint32_t host_abi_major);
const void *mha_plugin_get(uint32_t host_abi_major) {
#if BROKEN_KIND == 11
    if (host_abi_major != 1) return NULL;
#else
    (void)host_abi_major;
#endif
    return &old;
}
#elif BROKEN_KIND == 1
/* a plausible-looking but wrong name */
BROKEN_EXPORT const mha_plugin *mha_plugin_get_v0(uint32_t host_abi_major);
const mha_plugin *mha_plugin_get_v0(uint32_t host_abi_major) {
    (void)host_abi_major;
    return &broken_table;
}
#else
BROKEN_EXPORT const mha_plugin *mha_plugin_get(uint32_t host_abi_major);
const mha_plugin *mha_plugin_get(uint32_t host_abi_major) {
    (void)host_abi_major;
#if BROKEN_KIND == 2
    return NULL;
#else
    return &broken_table;
#endif
}
#endif
