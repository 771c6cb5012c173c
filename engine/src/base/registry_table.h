/* registry_table.h -- what a plugin table declares (precisions, optional
 * ops, GEMM epilogues, its rotary and norm entries), read the same way by
 * the registry that loads plugins and by the stages that call them (exec,
 * plan), and the built-in scalar table: pure reads of mha/plugin.h, so the
 * stages need nothing of the registry above them. */
#ifndef MHA_REGISTRY_TABLE_H
#define MHA_REGISTRY_TABLE_H

#include "mha/plugin.h"

/* 1 when plugin p serves compute precision `precision` (MHA_PRECISION_*),
 * as its table declares. */
int registry_plugin_serves(const mha_plugin *p, int precision);
/* 1 when p declares every optional op of `op` (MHA_OP_*). */
int registry_plugin_has_op(const mha_plugin *p, uint32_t op);
/* 1 when p's GEMM applies activation `activation` (MHA_ACT_*; NONE always)
 * and, when `residual`, the residual add: the host may then pass them. */
int registry_plugin_epilogue(const mha_plugin *p, int activation, int residual);
/* The plugin's rotary entry, or NULL (it does not declare MHA_OP_ROTARY):
 * the host then rotates with the built-in scalar's. */
typedef int (*registry_rotary_fn)(void *state, const mha_rotary_args *args);
registry_rotary_fn registry_plugin_rotary(const mha_plugin *p);
/* The plugin's norm entry, or NULL (it does not declare MHA_OP_NORM): the
 * host then normalises with the built-in scalar's. */
typedef int (*registry_norm_fn)(void *state, const mha_norm_args *args);
registry_norm_fn registry_plugin_norm(const mha_plugin *p);

/* The built-in scalar backend (backends/scalar), compiled into libmha. */
const mha_plugin *mha_scalar_plugin_table(void);

#endif
