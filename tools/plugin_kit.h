/* plugin_kit.h -- the plugin test kit (see plugin_kit.c). */
#ifndef MHA_PLUGIN_KIT_H
#define MHA_PLUGIN_KIT_H

#include <stdint.h>
#include <stdio.h>

#include "mha/plugin.h"

/* Runs every kit problem on `plugin` against `reference` (the built-in
 * scalar), both initialised with services that report cpu_features (the
 * host's, after its mask). Prints one line per failing problem to report;
 * counts into *passed / *failed. Returns 0 when everything passed. */
int plugin_kit_check(const mha_plugin *plugin, const mha_plugin *reference, uint64_t cpu_features,
                     FILE *report, int *passed, int *failed);

/* The kit's services for a plugin's init(): malloc, a silent log,
 * cpu_features. *out must live until the plugin's fini(). */
void plugin_kit_services(uint64_t cpu_features, mha_plugin_services *out);

#endif
