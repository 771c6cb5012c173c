/* plugin_entry.c -- the one exported symbol of every in-tree plugin,
 * mha_plugin_get(), shared by all of them. Each plugin target compiles this
 * file with -DMHA_PLUGIN_TABLE_FN=<its table function> (for example
 * mha_avx2_plugin_table). Compiled without ISA flags and without LTO: the
 * host calls this before it knows whether the CPU can run the plugin's
 * kernels, so nothing here may contain an instruction the baseline lacks. */
#include <stddef.h>
#include <stdint.h>

#include "mha/plugin.h"

#ifndef MHA_PLUGIN_TABLE_FN
#error "define MHA_PLUGIN_TABLE_FN to the plugin's table function"
#endif

const mha_plugin *MHA_PLUGIN_TABLE_FN(void);

__attribute__((visibility("default"))) const mha_plugin *mha_plugin_get(uint32_t host_abi_major);

/* A host of another ABI major could not read the table: say so with NULL
 * instead of handing it a struct it would misread. */
const mha_plugin *mha_plugin_get(uint32_t host_abi_major) {
    if (host_abi_major != MHA_PLUGIN_ABI_MAJOR) return NULL;
    return MHA_PLUGIN_TABLE_FN();
}
