/* mha_info.c -- `mha info MODEL`: what the engine recognised in an ONNX
 * file: the form, widths, heads, masking, scale, the inputs and outputs with
 * their roles, dtypes and shapes, and the weight bytes. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli_options.h"
#include "mha_cli.h"

enum { INFO_JSON = 1 };

static const cli_opt info_opts[] = {
    {INFO_JSON, "json", 0, NULL, "print the same as one JSON object (shapes: -1 = dynamic)"},
    {0},
};

/* No runtime options: info loads the model without a runtime. */
static const cli_spec info_spec = {
    "Usage: mha info MODEL [options]\n"
    "\n"
    "Loads MODEL (ONNX) and prints what was recognised: form, d_model, query and\n"
    "key/value heads, head sizes, causal, scale, softcap, masks (and the polarity of\n"
    "a key-padding mask), cross attention, every input and output with its role,\n"
    "dtype and shape (? = dynamic), the weight bytes and the batch axis (0: [B, S, ...],\n"
    "1: sequence first [S, B, ...]; --json: \"batch_axis\" 0, 1 or null when the\n"
    "probes cannot tell, and \"layout\"); for a whole model, its plan (attention\n"
    "layers, steps and their share of the FLOPs).\n",
    info_opts,
    0,
    NULL,
};

static const char *yes_no(int v) {
    return v ? "yes" : "no";
}

static void print_io(const char *kind, const mha_io_info *io) {
    char shape[200] = "[";
    size_t used = 1;
    for (int d = 0; d < io->rank && used < sizeof shape; d++) {
        int w = io->shape[d] < 0 ? snprintf(shape + used, sizeof shape - used, "%s?", d ? ", " : "")
                                 : snprintf(shape + used, sizeof shape - used, "%s%lld",
                                            d ? ", " : "", (long long)io->shape[d]);
        if (w < 0) break;
        used += (size_t)w;
    }
    if (io->rank < 0)
        snprintf(shape, sizeof shape, "(unknown rank)");
    else if (used < sizeof shape)
        snprintf(shape + used, sizeof shape - used, "]");
    char name[256];
    printf("  %-6s %-20s %-18s %-8s %s\n", kind, cli_escape(io->name, name, sizeof name),
           mha_io_role_name(io->role), mha_dtype_name(io->dtype), shape);
}

static void print_step_kinds(const mha_model *m, size_t n_steps, const char *kind, double total);

/* A whole model: its attention layers, then the steps, interpreted ones
 * summed per op type with their share of the FLOPs. */
static void print_plan(const mha_model *m) {
    size_t n_layers = mha_model_num_layers(m), n_steps = mha_model_num_steps(m);
    if (n_steps == 0) return;
    printf("attention layers: %zu\n", n_layers);
    for (size_t i = 0; i < n_layers; i++) {
        mha_layer_info li;
        if (mha_model_layer(m, i, &li) != MHA_OK) continue;
        if (li.recognised)
            printf("  layer %-3zu %-28s fused, %s\n", i, li.core, li.form);
        else
            printf("  layer %-3zu %-28s interpreted: %s\n", i, li.core, li.reason);
    }
    double total = 0.0, interp = 0.0, gemm = 0.0;
    size_t n_attn = 0, n_gemm = 0, n_norm = 0, n_add = 0, n_gather = 0, n_concat = 0, n_interp = 0;
    for (size_t i = 0; i < n_steps; i++) {
        mha_step_info si;
        if (mha_model_step(m, i, &si) != MHA_OK) continue;
        total += si.flops;
        if (strcmp(si.kind, "attention") == 0) {
            n_attn++;
        } else if (strcmp(si.kind, "gemm") == 0) {
            gemm += si.flops;
            n_gemm++;
        } else if (strcmp(si.kind, "norm") == 0) {
            n_norm++;
        } else if (strcmp(si.kind, "add") == 0) {
            n_add++;
        } else if (strcmp(si.kind, "gather") == 0) {
            n_gather++;
        } else if (strcmp(si.kind, "concat") == 0) {
            n_concat++;
        } else {
            interp += si.flops;
            n_interp++;
        }
    }
    printf("plan:         %zu steps: %zu attention, %zu GEMM, %zu norm, %zu add, %zu gather, %zu "
           "concat, %zu interpreted nodes\n",
           n_steps, n_attn, n_gemm, n_norm, n_add, n_gather, n_concat, n_interp);
    printf(
        "FLOPs:        %.1f %% attention layers, %.1f %% GEMM steps, %.1f %% interpreted (at the "
        "probe's sizes)\n",
        total > 0.0 ? 100.0 * (total - gemm - interp) / total : 0.0,
        total > 0.0 ? 100.0 * gemm / total : 0.0, total > 0.0 ? 100.0 * interp / total : 0.0);
    /* GEMM, norm, add and gather steps by what they fuse, then interpreted op types, in
     * order of first appearance */
    for (int pass = 0; pass < 2; pass++)
        print_step_kinds(m, n_steps, pass ? "interpreted" : "fused", total);
}

static int step_is(const mha_step_info *s, const char *kind) {
    int fused = strcmp(s->kind, "gemm") == 0 || strcmp(s->kind, "norm") == 0 ||
                strcmp(s->kind, "add") == 0 || strcmp(s->kind, "gather") == 0 ||
                strcmp(s->kind, "concat") == 0;
    return strcmp(kind, "fused") == 0 ? fused : strcmp(s->kind, kind) == 0;
}

static void print_step_kinds(const mha_model *m, size_t n_steps, const char *kind, double total) {
    if (strcmp(kind, "fused") == 0) printf("fused steps:\n");
    if (strcmp(kind, "interpreted") == 0) printf("interpreted nodes:\n");
    for (size_t i = 0; i < n_steps; i++) {
        mha_step_info si, sj;
        if (mha_model_step(m, i, &si) != MHA_OK || !step_is(&si, kind)) continue;
        int first = 1;
        for (size_t j = 0; j < i && first; j++)
            if (mha_model_step(m, j, &sj) == MHA_OK && step_is(&sj, kind) &&
                strcmp(sj.op, si.op) == 0)
                first = 0;
        if (!first) continue;
        size_t count = 0;
        double flops = 0.0;
        for (size_t j = i; j < n_steps; j++)
            if (mha_model_step(m, j, &sj) == MHA_OK && step_is(&sj, kind) &&
                strcmp(sj.op, si.op) == 0) {
                count++;
                flops += sj.flops;
            }
        if (flops > 0.0)
            printf("  %-32s x%-4zu %5.1f %% of the FLOPs\n", si.op, count,
                   total > 0.0 ? 100.0 * flops / total : 0.0);
        else
            printf("  %-32s x%zu\n", si.op, count);
    }
}

/* The layout's name in the JSON ("batch_axis" gives its axis). */
static const char *info_layout_name(mha_layout layout) {
    return layout == MHA_LAYOUT_SEQ_FIRST ? "sequence-first"
           : layout == MHA_LAYOUT_UNKNOWN ? "unknown"
                                          : "batch-first";
}

static void json_io(const char *sep, const mha_io_info *io) {
    printf("%s{\"name\": ", sep);
    cli_json_string(stdout, io->name);
    printf(", \"role\": ");
    cli_json_string(stdout, mha_io_role_name(io->role));
    printf(", \"dtype\": ");
    cli_json_string(stdout, mha_dtype_name(io->dtype));
    printf(", \"shape\": ");
    if (io->rank < 0) {
        printf("null}");
        return;
    }
    printf("[");
    for (int d = 0; d < io->rank; d++)
        printf("%s%lld", d ? ", " : "", (long long)(io->shape[d] < 0 ? -1 : io->shape[d]));
    printf("]}");
}

/* `mha info --json`: what the text says, as one object. */
static void print_json(const char *path, const mha_model *m, const mha_model_info *mi) {
    printf("{\"model\": ");
    cli_json_string(stdout, path);
    printf(", \"form\": ");
    cli_json_string(stdout, mi->form ? mi->form : "");
    printf(", \"has_projections\": %s, \"d_model\": %lld, \"d_kv\": %lld",
           mi->has_projections ? "true" : "false", (long long)mi->d_model, (long long)mi->d_kv);
    printf(", \"q_heads\": %lld, \"kv_heads\": %lld, \"d_head\": %lld, \"d_head_v\": %lld",
           (long long)mi->q_heads, (long long)mi->kv_heads, (long long)mi->d_head,
           (long long)mi->d_head_v);
    printf(", \"causal\": %s, \"scale\": %.9g, \"softcap\": %.9g, \"cross\": %s",
           mi->causal ? "true" : "false", (double)mi->scale, (double)mi->softcap,
           mi->cross ? "true" : "false");
    printf(", \"idioms\": ");
    const char *idioms = mha_model_idioms(m);
    cli_json_string(stdout, idioms ? idioms : "");
    const mha_layout layout = mha_model_layout(m);
    printf(", \"weight_bytes\": %zu, \"batch_axis\": %s, \"layout\": \"%s\"", mi->weight_bytes,
           layout == MHA_LAYOUT_SEQ_FIRST ? "1"
           : layout == MHA_LAYOUT_UNKNOWN ? "null"
                                          : "0",
           info_layout_name(layout));
    printf(", \"inputs\": [");
    for (size_t i = 0; i < mi->num_inputs; i++) {
        mha_io_info io;
        if (mha_model_input(m, i, &io) == MHA_OK) json_io(i ? ", " : "", &io);
    }
    printf("], \"outputs\": [");
    for (size_t i = 0; i < mi->num_outputs; i++) {
        mha_io_info io;
        if (mha_model_output(m, i, &io) == MHA_OK) json_io(i ? ", " : "", &io);
    }
    printf("], \"layers\": [");
    size_t n_layers = mha_model_num_layers(m), n_steps = mha_model_num_steps(m);
    for (size_t i = 0; i < n_layers; i++) {
        mha_layer_info li;
        if (mha_model_layer(m, i, &li) != MHA_OK) continue;
        printf("%s{\"core\": ", i ? ", " : "");
        cli_json_string(stdout, li.core);
        printf(", \"fused\": %s, \"form\": ", li.recognised ? "true" : "false");
        cli_json_string(stdout, li.recognised ? li.form : "");
        printf(", \"reason\": ");
        cli_json_string(stdout, li.recognised ? "" : li.reason);
        printf("}");
    }
    printf("], \"steps\": [");
    for (size_t i = 0; i < n_steps; i++) {
        mha_step_info si;
        if (mha_model_step(m, i, &si) != MHA_OK) continue;
        printf("%s{\"kind\": ", i ? ", " : "");
        cli_json_string(stdout, si.kind);
        printf(", \"op\": ");
        cli_json_string(stdout, si.op);
        printf(", \"flops\": %.17g}", si.flops);
    }
    printf("]}\n");
}

/* The (first) attention layer's description: projections, heads, masks. */
static void print_layer(const mha_model *m, const mha_model_info *mi) {
    if (mi->has_projections) {
        printf("d_model:      %lld\n", (long long)mi->d_model);
        if (mi->cross || mi->d_kv != mi->d_model)
            printf("d_kv:         %lld\n", (long long)mi->d_kv);
    } else {
        printf("projections:  none (bare attention: Q, K, V are inputs)\n");
    }
    const char *grouping = mi->kv_heads == mi->q_heads ? ""
                           : mi->kv_heads == 1         ? " (MQA)"
                                                       : " (GQA)";
    printf("heads:        %lld query, %lld key/value%s\n", (long long)mi->q_heads,
           (long long)mi->kv_heads, grouping);
    if (mi->d_head_v != mi->d_head)
        printf("head size:    %lld (q, k), %lld (v)\n", (long long)mi->d_head,
               (long long)mi->d_head_v);
    else
        printf("head size:    %lld\n", (long long)mi->d_head);
    printf("causal:       %s\n", yes_no(mi->causal));
    double dflt = mi->d_head > 0 ? 1.0 / sqrt((double)mi->d_head) : 0.0;
    printf("scale:        %.9g%s\n", (double)mi->scale,
           fabs((double)mi->scale - dflt) <= 1e-6 * dflt ? " (1/sqrt(head size))" : "");
    if (mi->softcap > 0)
        printf("softcap:      %g\n", (double)mi->softcap);
    else
        printf("softcap:      none\n");

    /* masks come from the inputs' roles */
    char masks[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < mi->num_inputs; i++) {
        mha_io_info io;
        if (mha_model_input(m, i, &io) != MHA_OK) continue;
        const char *what = NULL;
        char buf[400], name[256];
        cli_escape(io.name, name, sizeof name);
        if (io.role == MHA_ROLE_ATTN_MASK) {
            snprintf(buf, sizeof buf, "attention mask '%s' (%s)", name,
                     io.dtype == MHA_DTYPE_BOOL ? "bool, true = attend" : "additive");
            what = buf;
        } else if (io.role == MHA_ROLE_KEY_PADDING_MASK) {
            snprintf(buf, sizeof buf, "key padding mask '%s' (%s, true = %s)", name,
                     mha_dtype_name(io.dtype),
                     mi->key_padding_true_means_ignore ? "padding, ignored" : "real token");
            what = buf;
        } else if (io.role == MHA_ROLE_NONPAD_KV_SEQLEN) {
            snprintf(buf, sizeof buf, "valid key lengths '%s'", name);
            what = buf;
        }
        if (what && used < sizeof masks) {
            int w = snprintf(masks + used, sizeof masks - used, "%s%s", used ? "; " : "", what);
            if (w > 0) used += (size_t)w;
        }
    }
    printf("masks:        %s\n", used ? masks : "none");
    const char *idioms = mha_model_idioms(m);
    printf("idioms:       %s\n", idioms && idioms[0] ? idioms : "none");
    printf("cross:        %s\n", yes_no(mi->cross));
}

int cli_cmd_info(int argc, char **argv) {
    cli_common c = {0};
    c.cmd = "info";
    const char *model_path = NULL;
    int json = 0;
    cli_parser p;
    if (cli_parse_begin(&p, &info_spec, &c, argc, argv) != 0) return cli_fail("too many options");
    for (int id; (id = cli_parse_next(&p)) != CLI_PARSE_END;) {
        if (id == CLI_PARSE_EXIT) return p.status;
        if (id == INFO_JSON) json = 1;
        if (id != CLI_PARSE_ARG) continue;
        if (model_path) return cli_usage_error(&c, "one model at a time ('%s' is extra)", p.value);
        model_path = p.value;
    }
    if (!model_path) return cli_usage_error(&c, "no model given");

    mha_model *m = NULL;
    mha_error err;
    mha_error_clear(&err);
    if (mha_model_load_file(model_path, NULL, &m, &err) != MHA_OK)
        return cli_fail_err(model_path, &err);
    mha_model_info mi;
    if (mha_model_get_info(m, &mi) != MHA_OK) {
        mha_model_free(m);
        return cli_fail("%s: no model information", model_path);
    }

    if (json) {
        print_json(model_path, m, &mi);
        mha_model_free(m);
        return CLI_OK;
    }
    char safe_path[1024];
    printf("model:        %s\n", cli_escape(model_path, safe_path, sizeof safe_path));
    printf("form:         %s\n", mi.form ? mi.form : "?");
    /* a plan without attention (FNet, PoolFormer): no layer to describe */
    if (strcmp(mi.form ? mi.form : "", "plan") == 0 && mha_model_num_layers(m) == 0)
        printf("attention:    none (every step a GEMM, a norm or interpreted)\n");
    else
        print_layer(m, &mi);
    printf("weights:      %zu bytes (%.2f MiB)\n", mi.weight_bytes,
           (double)mi.weight_bytes / (1024.0 * 1024.0));
    const mha_layout layout = mha_model_layout(m);
    printf("batch axis:   %s\n", layout == MHA_LAYOUT_SEQ_FIRST ? "1 (sequence first: [S, B, ...])"
                                 : layout == MHA_LAYOUT_UNKNOWN
                                     ? "unknown (one item's tokens change other items' "
                                       "outputs along either axis of the ids)"
                                     : "0 (batch first: [B, S, ...])");
    printf("inputs and outputs:\n");
    for (size_t i = 0; i < mi.num_inputs; i++) {
        mha_io_info io;
        if (mha_model_input(m, i, &io) == MHA_OK) print_io("input", &io);
    }
    for (size_t i = 0; i < mi.num_outputs; i++) {
        mha_io_info io;
        if (mha_model_output(m, i, &io) == MHA_OK) print_io("output", &io);
    }
    print_plan(m);
    mha_model_free(m);
    return CLI_OK;
}
