/* plugin_probe.h -- the probe helper the in-tree plugins share: "every one
 * of these CPU feature bits, or 0 with a reason naming the first missing
 * one". Header-only and ISA-free: it runs before the host knows whether the
 * plugin's kernels can execute here. */
#ifndef MHA_PLUGINS_PLUGIN_PROBE_H
#define MHA_PLUGINS_PLUGIN_PROBE_H

#include <stdint.h>

#include "mha/plugin.h"

/* Returns `score` when every bit of `required` is in `features`; else 0 and
 * *reason = a static "needs <feature>" for the first missing bit. */
static inline int plugin_probe_require(uint64_t features, uint64_t required, int score,
                                       const char **reason) {
    static const struct {
        uint64_t bit;
        const char *why;
    } names[] = {
        {MHA_CPU_SSE2, "needs SSE2"},
        {MHA_CPU_SSE41, "needs SSE4.1"},
        {MHA_CPU_AVX, "needs AVX (with OS support for YMM state)"},
        {MHA_CPU_F16C, "needs F16C"},
        {MHA_CPU_FMA, "needs FMA"},
        {MHA_CPU_AVX2, "needs AVX2"},
        {MHA_CPU_AVX512F, "needs AVX-512F (with OS support for ZMM state)"},
        {MHA_CPU_AVX512DQ, "needs AVX-512DQ"},
        {MHA_CPU_AVX512BW, "needs AVX-512BW"},
        {MHA_CPU_AVX512VL, "needs AVX-512VL"},
        {MHA_CPU_AVX512BF16, "needs AVX-512 BF16"},
    };
    uint64_t missing = required & ~features;
    if (!missing) return score;
    if (reason) {
        *reason = "needs a CPU feature this machine lacks";
        for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
            if (missing & names[i].bit) {
                *reason = names[i].why;
                break;
            }
    }
    return 0;
}

#endif
