/* layer_reference.c -- a recognised layer run single-threaded on the
 * built-in scalar backend, no runtime needed: the reference the verifier
 * and the tests compare against. */
#include <string.h>

#include "exec_ext.h"
#include "layer_reference.h"
#include "registry_table.h"

mha_status layer_reference_forward(const mha_alloc_ctx *a, const layer *L, const mha_tensor *inputs,
                                   size_t n_inputs, mha_tensor *outputs, size_t n_outputs,
                                   mha_error *err) {
    const mha_plugin *p = mha_scalar_plugin_table();
    if (!p) return mha_fail(err, MHA_ERR_BACKEND, "the built-in scalar backend is missing");
    exec_services services;
    exec_services_init(&services, a, NULL, NULL, MHA_LOG_ERROR, 0);
    void *state = NULL;
    if (p->init && p->init(&services.table, &state) != 0)
        return mha_fail(err, MHA_ERR_PLUGIN, "backend '%s': init failed", p->name);
    exec_packed *pk = NULL;
    mha_status st = exec_pack_weights(a, L, p, state, MHA_PRECISION_FLOAT32, &pk, err);
    if (st == MHA_OK) {
        exec_env env;
        memset(&env, 0, sizeof env);
        env.alloc = a;
        env.plugin = p;
        env.plugin_state = state;
        env.num_threads = 1;
        st = exec_run(&env, L, pk, inputs, n_inputs, outputs, n_outputs, err);
    }
    exec_packed_free(a, pk);
    if (p->fini) p->fini(state);
    return st;
}
