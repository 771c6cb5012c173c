/* registry_table.c -- the reads of a plugin table (see registry_table.h). */
#include "registry_table.h"

int registry_plugin_serves(const mha_plugin *p, int precision) {
    if (precision < 0 || precision > 31) return 0;
    return (p->precisions & MHA_PRECISION_BIT(precision)) != 0;
}

int registry_plugin_has_op(const mha_plugin *p, uint32_t op) {
    return (p->ops & op) == op;
}

int registry_plugin_epilogue(const mha_plugin *p, int activation, int residual) {
    if (activation < MHA_ACT_NONE || activation >= MHA_ACT_COUNT) return 0;
    if (activation != MHA_ACT_NONE && !(p->epilogues & MHA_EPILOGUE_ACT(activation))) return 0;
    return !residual || (p->epilogues & MHA_EPILOGUE_RESIDUAL);
}

registry_rotary_fn registry_plugin_rotary(const mha_plugin *p) {
    return (p->ops & MHA_OP_ROTARY) ? p->rotary : NULL;
}

registry_norm_fn registry_plugin_norm(const mha_plugin *p) {
    return (p->ops & MHA_OP_NORM) ? p->norm : NULL;
}
