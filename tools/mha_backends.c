/* mha_backends.c -- `mha backends [--json]`: every plugin the runtime found
 * (name, version, path, probe score or why it is unusable) and the one
 * `auto` picks on this CPU. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_options.h"
#include "mha_cli.h"
#include "mha/plugin.h"
#include "plugin_kit.h"

enum { BACKENDS_JSON = 1, BACKENDS_CHECK };

static const cli_opt backends_opts[] = {
    {BACKENDS_JSON, "json", 0, NULL, "one JSON object on stdout instead of the table"},
    {BACKENDS_CHECK, "check", 0, NULL,
     "run the plugin test kit: every usable plugin (or the one\n"
     "named by --backend) against the built-in scalar reference\n"
     "on randomised attention and GEMM problems; prints\n"
     "'N passed, M failed'"},
    {0},
};

static const cli_spec backends_spec = {
    "Usage: mha backends [--json] [options]\n"
    "\n"
    "Lists every backend plugin the runtime found (searched: MHA_PLUGIN_PATH, the\n"
    "folder beside libmha, the installed plugin folder; plus the built-in scalar),\n"
    "with its version, path and probe score on this CPU, or why it is unusable, and\n"
    "which one 'auto' picks. With --backend NAME (or $MHA_BACKEND) also checks that\n"
    "NAME can be selected; when it cannot, nothing is listed and one line on stderr\n"
    "names the backends usable here (exit 1).\n",
    backends_opts,
    CLI_COMMON_RUNTIME | CLI_COMMON_VERBOSE,
    NULL,
};

/* `mha backends --check`: the plugin test kit over the plugins an "auto"
 * runtime found (every one, whatever --backend says), each against the
 * built-in scalar table. */
static int backends_check(const cli_common *c) {
    cli_common auto_c = *c;
    auto_c.backend = "auto";
    mha_runtime *rt = NULL;
    int rc = cli_runtime_create(&auto_c, &rt);
    if (rc != CLI_OK) return rc;
    const char *only = c->backend ? c->backend : NULL;
    size_t n = mha_runtime_plugin_count(rt);
    const mha_plugin *reference = NULL;
    mha_plugin_info pi;
    for (size_t i = 0; i < n && !reference; i++)
        if (mha_runtime_plugin(rt, i, &pi) == MHA_OK && pi.path &&
            strcmp(pi.path, "(built-in)") == 0)
            reference = mha_runtime_plugin_table(rt, i);
    if (!reference) {
        mha_runtime_destroy(rt);
        return cli_fail("the built-in scalar reference is missing");
    }
    int total_pass = 0, total_fail = 0, checked = 0;
    for (size_t i = 0; i < n; i++) {
        const mha_plugin *table = mha_runtime_plugin_table(rt, i);
        if (!table || table == reference || mha_runtime_plugin(rt, i, &pi) != MHA_OK) continue;
        if (!pi.path || strcmp(pi.path, "(built-in)") == 0) continue; /* the reference */
        if (only && strcmp(only, "auto") != 0 && (!pi.name || strcmp(only, pi.name) != 0)) continue;
        int pass = 0, fail = 0;
        plugin_kit_check(table, reference, mha_runtime_cpu_features(rt), stdout, &pass, &fail);
        printf("%-10s %d passed, %d failed  (%s)\n", pi.name, pass, fail, pi.path);
        total_pass += pass, total_fail += fail, checked++;
    }
    mha_runtime_destroy(rt);
    if (!checked)
        return cli_fail("no usable plugin%s%s to check", only ? " named " : "", only ? only : "");
    printf("%d passed, %d failed\n", total_pass, total_fail);
    return total_fail ? CLI_FAIL : CLI_OK;
}

/* What the engine does in plain C around every backend's float32 kernels
 * (engine/src/exec/exec_ext.c): the kernels see only float32 tensors, a mask,
 * key lengths and causal offsets. */
/* Entry i is the built-in and a usable plugin file of the same name was
 * loaded too (a tie in score goes to the file). */
static int backends_is_shadowed(mha_runtime *rt, size_t i, const mha_plugin_info *pi) {
    if (!pi->name || !pi->path || strcmp(pi->path, "(built-in)") != 0) return 0;
    size_t n = mha_runtime_plugin_count(rt);
    for (size_t k = 0; k < n; k++) {
        mha_plugin_info o;
        if (k == i || mha_runtime_plugin(rt, k, &o) != MHA_OK) continue;
        if (o.usable && o.name && strcmp(o.name, pi->name) == 0) return 1;
    }
    return 0;
}

static const char backends_scalar_path[] =
    "qk_matmul_output, float16/bfloat16 conversion, KV-cache concatenation "
    "(present_key/present_value), opset-25 windows and short attn_mask (as an additive mask), "
    "com.microsoft integer masks";

int cli_cmd_backends(int argc, char **argv) {
    cli_common c = {0};
    c.cmd = "backends";
    int json = 0, check = 0;
    cli_parser p;
    if (cli_parse_begin(&p, &backends_spec, &c, argc, argv) != 0)
        return cli_fail("too many options");
    for (int id; (id = cli_parse_next(&p)) != CLI_PARSE_END;) {
        if (id == CLI_PARSE_EXIT) return p.status;
        if (id == CLI_PARSE_ARG) return cli_usage_error(&c, "unexpected argument '%s'", p.value);
        json |= id == BACKENDS_JSON;
        check |= id == BACKENDS_CHECK;
    }
    if (check) return backends_check(&c);

    /* what auto picks, whatever the environment says */
    cli_common auto_c = c;
    auto_c.backend = "auto";
    mha_runtime *rt = NULL;
    int rc = cli_runtime_create(&auto_c, &rt);
    if (rc != CLI_OK) return rc;
    const char *auto_name = mha_runtime_backend(rt);

    /* what this command line (or $MHA_BACKEND) would select */
    const char *wanted = c.backend ? c.backend : getenv("MHA_BACKEND");
    mha_runtime *rt_sel = NULL;
    mha_error sel_err;
    mha_error_clear(&sel_err);
    const char *selected = auto_name;
    if (wanted && *wanted && strcmp(wanted, "auto") != 0) {
        mha_runtime_options o;
        mha_runtime_options_init(&o);
        o.backend = wanted;
        o.num_threads = 1;
        if (mha_runtime_create(&o, &rt_sel, &sel_err) == MHA_OK)
            selected = mha_runtime_backend(rt_sel);
        else
            selected = NULL;
    }

    size_t n = mha_runtime_plugin_count(rt);
    if (!selected) {
        /* a backend that cannot be selected is an error: its one line names
         * what auto would find here, and no table is printed */
        char usable[1024];
        cli_usable_backends(rt, usable, sizeof usable);
        char *found = strstr(sel_err.message, "; found: "); /* the list below says more */
        if (found) *found = '\0';
        rc = cli_fail("%s; usable here: %s", sel_err.message, usable);
        mha_runtime_destroy(rt);
        return rc;
    }
    char features[256];
    mha_cpu_features_string(mha_runtime_cpu_features(rt), features, sizeof features);
    if (json) {
        printf("{\"cpu_features\": ");
        cli_json_string(stdout, features);
        printf(", \"auto\": ");
        cli_json_string(stdout, auto_name);
        printf(", \"selected\": ");
        cli_json_string(stdout, selected);
        printf(", \"plugins\": [");
        for (size_t i = 0; i < n; i++) {
            mha_plugin_info pi;
            if (mha_runtime_plugin(rt, i, &pi) != MHA_OK) continue;
            printf("%s{\"name\": ", i ? ", " : "");
            if (pi.name)
                cli_json_string(stdout, pi.name);
            else
                printf("null");
            printf(", \"version\": ");
            if (pi.version)
                cli_json_string(stdout, pi.version);
            else
                printf("null");
            printf(", \"path\": ");
            cli_json_string(stdout, pi.path);
            printf(", \"score\": %d, \"usable\": %s, \"auto\": %s, \"reason\": ", pi.score,
                   pi.usable ? "true" : "false", pi.selected ? "true" : "false");
            cli_json_string(stdout, pi.reason);
            printf("}");
        }
        printf("], \"features_via_scalar_path\": ");
        cli_json_string(stdout, backends_scalar_path);
        printf("}\n");
    } else {
        const char *shadowed = NULL;
        printf("cpu features: %s\n", features);
        printf("%-10s %-9s %6s  %-9s %s\n", "NAME", "VERSION", "SCORE", "STATUS", "PATH");
        for (size_t i = 0; i < n; i++) {
            mha_plugin_info pi;
            if (mha_runtime_plugin(rt, i, &pi) != MHA_OK) continue;
            /* the built-in scalar stands in only when no plugin file of that
             * name loads: beside one, it is a fallback (said below the
             * table), not a second "scalar" to choose from */
            if (pi.usable && backends_is_shadowed(rt, i, &pi)) {
                shadowed = pi.name;
                continue;
            }
            printf("%-10s %-9s %6d  %-9s %s", pi.name ? pi.name : "-",
                   pi.version ? pi.version : "-", pi.score, pi.usable ? "usable" : "unusable",
                   pi.path ? pi.path : "-");
            if (pi.reason && *pi.reason) printf("  (%s)", pi.reason);
            printf("\n");
        }
        if (shadowed)
            printf("built-in %s: the fallback when no %s plugin file loads\n", shadowed, shadowed);
        printf("auto picks: %s\n", auto_name);
        if (selected && strcmp(selected, auto_name) != 0) printf("selected: %s\n", selected);
        printf("features via scalar path (engine, every backend): %s\n", backends_scalar_path);
    }
    fflush(stdout);
    mha_runtime_destroy(rt_sel);
    mha_runtime_destroy(rt);
    return rc;
}
