/* mha_gen.c -- `mha gen`: writes a seeded random-weight model as ONNX (one
 * attention layer, gen_layer.c, or a whole encoder or decoder,
 * gen_model.c) and optionally a seeded dataset for it: float32 sequences
 * [B, S, D] for a layer, token ids [B, S] (and an attention mask) for a
 * whole model. Every file is written atomically.
 *
 * The options are read into gen_options (-1: not given), then a preset
 * fills what was not given, then the defaults of the model kind. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_options.h"
#include "gen.h"
#include "mha/npy.h"
#include "mha_cli.h"

enum {
    GEN_MODEL = 1,
    GEN_PRESET,
    GEN_LAYERS,
    GEN_D_MODEL,
    GEN_HEADS,
    GEN_KV_HEADS,
    GEN_FFN,
    GEN_NORM,
    GEN_PRE_NORM,
    GEN_POST_NORM,
    GEN_ACT,
    GEN_CAUSAL,
    GEN_NO_BIAS,
    GEN_VOCAB,
    GEN_MAX_POS,
    GEN_NO_LM_HEAD,
    GEN_SEED,
    GEN_FORM,
    GEN_OUTPUT,
    GEN_DATA,
    GEN_MASK,
    GEN_BATCH,
    GEN_SEQ,
};

static const cli_opt gen_opts[] = {
    {GEN_MODEL, "model", 0, "KIND",
     "layer (one attention layer; the default), encoder\n"
     "(BERT-style: input_ids and attention_mask in,\n"
     "last_hidden_state out) or decoder (GPT-style, causal:\n"
     "input_ids in, last_hidden_state and logits out)"},
    {GEN_PRESET, "preset", 0, "NAME",
     "a whole model of a published shape: bert-base (12\n"
     "layers, d 768, 12 heads, FFN 3072), minilm-l6 (6, 384,\n"
     "12, 1536), gpt2-small (decoder, 12, 768, 12, 3072,\n"
     "pre-norm, GELU tanh, vocab 50257); other options\n"
     "override its values"},
    {GEN_LAYERS, "layers", 'L', "N", "transformer layers of a whole model (default 2)"},
    {GEN_D_MODEL, "d-model", 'd', "D", "model width (a multiple of H)"},
    {GEN_HEADS, "heads", 'H', "H", "query heads"},
    {GEN_KV_HEADS, "kv-heads", 0, "N", "key/value heads (divides H; default H; fewer = GQA/MQA)"},
    {GEN_FFN, "ffn", 0, "F", "feed-forward width of a whole model (default 4 D)"},
    {GEN_NORM, "norm", 0, "NORM",
     "layernorm (decomposed, as PyTorch 1.13 exports it; the\n"
     "default), layernorm-op (the LayerNormalization op) or\n"
     "rmsnorm (LLaMA's)"},
    {GEN_PRE_NORM, "pre-norm", 0, NULL,
     "norm before each sublayer, and a final one (decoder default)"},
    {GEN_POST_NORM, "post-norm", 0, NULL, "norm after each residual add (encoder default)"},
    {GEN_ACT, "act", 0, "ACT",
     "the FFN's activation: gelu (erf; encoder default),\n"
     "gelu-tanh (decoder default), relu or swiglu (gate and\n"
     "up projections, SiLU)"},
    {GEN_CAUSAL, "causal", 0, NULL, "causal (each position sees itself and earlier ones)"},
    {GEN_NO_BIAS, "no-bias", 0, NULL, "Linear layers without the Add of a bias"},
    {GEN_VOCAB, "vocab", 0, "V", "vocabulary size of a whole model (default 1000)"},
    {GEN_MAX_POS, "max-pos", 0, "P", "positions of a whole model (at least 5; default 512)"},
    {GEN_NO_LM_HEAD, "no-lm-head", 0, NULL, "a decoder without the LM head (no logits output)"},
    {GEN_SEED, "seed", 0, "S", "seed of the weights and the data (default 0)"},
    {GEN_FORM, "form", 0, "F",
     "a layer's attention step: attention23 (ONNX Attention,\n"
     "opset 23; default), ms_mha (com.microsoft\n"
     "MultiHeadAttention, opset 17) or decomposed\n"
     "(MatMul/Softmax/... opset 17); same weights"},
    {GEN_OUTPUT, "output", 'o', "FILE", "the model file to write"},
    {GEN_DATA, "data", 0, "FILE",
     "also write a dataset (.npy, or .pb by extension):\n"
     "float32 [B, S, D] in U(-1, 1) for a layer, int64\n"
     "token ids [B, S] for a whole model"},
    {GEN_MASK, "mask", 0, "FILE",
     "with --data, an encoder's attention_mask: int64 [B, S],\n"
     "row 0 full, the others of random lengths (padding ids 0)"},
    {GEN_BATCH, "batch", 0, "B", "the dataset's batch size"},
    {GEN_SEQ, "seq", 0, "S", "the dataset's sequence length"},
    {0},
};

/* No runtime options: gen runs no model. */
static const cli_spec gen_spec = {
    "Usage: mha gen -d D -H H [--kv-heads N] [--causal] [--no-bias] [--seed S]\n"
    "               [--form attention23|ms_mha|decomposed]\n"
    "               -o MODEL.onnx [--data FILE.npy --batch B --seq S]\n"
    "       mha gen --model encoder|decoder -d D -H H [-L N] [--ffn F] [--norm NORM]\n"
    "               [--pre-norm|--post-norm] [--act ACT] [--vocab V] [--max-pos P] ...\n"
    "               -o MODEL.onnx [--data IDS.npy [--mask MASK.npy] --batch B --seq S]\n"
    "       mha gen --preset bert-base|minilm-l6|gpt2-small -o MODEL.onnx ...\n"
    "\n"
    "Writes a random-weight model as ONNX. One attention layer: MatMul+Add\n"
    "projections, an Attention node (opset 23), MatMul+Add output projection; input\n"
    "'query' [batch, seq, D], output 'output'. A whole encoder or decoder, as PyTorch\n"
    "exports one (opset 17): token and position embeddings, layers of attention in\n"
    "head layout (MatMul, Softmax, MatMul, the mask added) and a feed-forward\n"
    "network between Linear (MatMul+Add) layers, with residual adds and norms;\n"
    "inputs 'input_ids' [batch, seq] int64 (and 'attention_mask' for an encoder),\n"
    "outputs 'last_hidden_state' [batch, seq, D] (and 'logits' [batch, seq, V] for\n"
    "a decoder). Weights ~ U(-1, 1)/sqrt(fan in), seeded.\n",
    gen_opts,
    0,
    "Example: mha gen --preset minilm-l6 -o m.onnx --data ids.npy --mask mask.npy\n"
    "         --batch 32 --seq 128; mha run m.onnx ids.npy mask.npy -o h.npy\n",
};

/* What the command line says; -1 (or NULL) where it says nothing. */
typedef struct gen_options {
    gen_params p;
    const char *preset, *out, *data, *mask;
    long long batch, seq;
} gen_options;

typedef struct gen_preset {
    const char *name;
    int kind;
    long long layers, d, heads, ffn, vocab, max_pos;
    int pre_norm, act;
} gen_preset;

/* The shapes of issue 15's models (their published architectures). */
static const gen_preset gen_presets[] = {
    {"bert-base", GEN_KIND_ENCODER, 12, 768, 12, 3072, 30522, 512, 0, GEN_ACT_GELU},
    {"minilm-l6", GEN_KIND_ENCODER, 6, 384, 12, 1536, 30522, 512, 0, GEN_ACT_GELU},
    {"gpt2-small", GEN_KIND_DECODER, 12, 768, 12, 3072, 50257, 1024, 1, GEN_ACT_GELU_TANH},
};

/* Picks one of `n` names; -1 when s is none of them. */
static int gen_pick(const char *s, const char *const *names, int n) {
    for (int i = 0; i < n; i++)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

static void gen_set_ll(long long *v, long long dflt) {
    if (*v < 0) *v = dflt;
}

static void gen_set_int(int *v, int dflt) {
    if (*v < 0) *v = dflt;
}

/* The preset, then the defaults, into what was not given; then the checks
 * that need every value. CLI_OK or a usage error printed. */
static int gen_resolve(const cli_common *c, gen_options *o) {
    gen_params *p = &o->p;
    if (o->preset) {
        const gen_preset *ps = NULL;
        for (size_t i = 0; i < sizeof gen_presets / sizeof *gen_presets; i++)
            if (strcmp(o->preset, gen_presets[i].name) == 0) ps = &gen_presets[i];
        if (!ps)
            return cli_usage_error(c, "--preset wants bert-base, minilm-l6 or gpt2-small, not '%s'",
                                   o->preset);
        gen_set_int(&p->kind, ps->kind);
        gen_set_ll(&p->layers, ps->layers);
        gen_set_ll(&p->d, ps->d);
        gen_set_ll(&p->heads, ps->heads);
        gen_set_ll(&p->ffn, ps->ffn);
        gen_set_ll(&p->vocab, ps->vocab);
        gen_set_ll(&p->max_pos, ps->max_pos);
        gen_set_int(&p->pre_norm, ps->pre_norm);
        gen_set_int(&p->act, ps->act);
    }
    gen_set_int(&p->kind, GEN_KIND_LAYER);
    const int whole = p->kind != GEN_KIND_LAYER, decoder = p->kind == GEN_KIND_DECODER;
    if (p->d < 0 || p->heads < 0) return cli_usage_error(c, "-d D and -H H are required");
    if (!o->out) return cli_usage_error(c, "-o MODEL.onnx is required");
    /* an .npy or .pb model is a mistake: those are the command's tensor
     * files (mha run reads a .pb argument as one TensorProto, mha check's
     * cases hold them), and --data writes them */
    if (mha_file_format_of(o->out) == MHA_FILE_NPY)
        return cli_usage_error(c,
                               "-o writes the model as ONNX, not '%s' (.npy is data: --data "
                               "writes it)",
                               o->out);
    if (mha_file_format_of(o->out) == MHA_FILE_PB)
        return cli_usage_error(c,
                               "-o writes the model as ONNX, not '%s' (.pb is a tensor file: "
                               "--data writes it; name the model .onnx)",
                               o->out);
    gen_set_ll(&p->kv_heads, p->heads);
    if (p->d % p->heads)
        return cli_usage_error(c, "d_model %lld is not a multiple of %lld heads", p->d, p->heads);
    if (p->kv_heads > p->heads || p->heads % p->kv_heads)
        return cli_usage_error(c, "%lld kv heads do not divide %lld heads", p->kv_heads, p->heads);
    if (!whole) {
        if (p->layers >= 0 || p->ffn >= 0 || p->norm >= 0 || p->pre_norm >= 0 || p->act >= 0 ||
            p->vocab >= 0 || p->max_pos >= 0 || p->lm_head >= 0 || o->mask)
            return cli_usage_error(c, "-L, --ffn, --norm, --pre-norm, --post-norm, --act, "
                                      "--vocab, --max-pos, --no-lm-head and --mask go with "
                                      "--model encoder|decoder or --preset");
        gen_set_int(&p->form, GEN_FORM_ATTENTION23);
        if (p->form != GEN_FORM_ATTENTION23 && p->kv_heads != p->heads)
            return cli_usage_error(c, "--form %s writes as many kv heads as heads",
                                   p->form == GEN_FORM_MS_MHA ? "ms_mha" : "decomposed");
    } else {
        if (p->form >= 0)
            return cli_usage_error(c, "--form is for one layer: a whole model writes its "
                                      "attention in plain ops");
        gen_set_ll(&p->layers, 2);
        gen_set_ll(&p->ffn, 4 * p->d);
        gen_set_ll(&p->vocab, 1000);
        gen_set_ll(&p->max_pos, 512);
        /* the whole-model plan probes sequences of up to 5 tokens: with
         * fewer positions it fits the sequence to the batch, and the model
         * written would refuse every other shape */
        if (p->max_pos < 5)
            return cli_usage_error(c, "--max-pos %lld: a whole model needs at least 5 positions",
                                   p->max_pos);
        gen_set_int(&p->norm, GEN_NORM_LAYERNORM);
        gen_set_int(&p->pre_norm, decoder);
        gen_set_int(&p->act, decoder ? GEN_ACT_GELU_TANH : GEN_ACT_GELU);
        if (p->lm_head == 0 && !decoder) return cli_usage_error(c, "--no-lm-head is for a decoder");
        gen_set_int(&p->lm_head, decoder);
        if (decoder) p->causal = 1;
        if (o->mask && decoder)
            return cli_usage_error(c, "--mask is for an encoder (a decoder takes no mask)");
    }
    int have_batch = o->batch >= 0, have_seq = o->seq >= 0;
    if (o->data && (!have_batch || !have_seq))
        return cli_usage_error(c, "--data needs --batch and --seq");
    if (!o->data && (have_batch || have_seq || o->mask))
        return cli_usage_error(c, "--batch, --seq and --mask only go with --data");
    const char *files[2] = {o->data, o->mask};
    for (int i = 0; i < 2; i++)
        if (files[i] && mha_file_output_format(files[i]) == MHA_FILE_UNKNOWN)
            return cli_usage_error(c, "--%s writes .npy or .pb files ('%s')", i ? "mask" : "data",
                                   files[i]);
    if (o->data && whole && o->seq > p->max_pos)
        return cli_usage_error(c, "--seq %lld is longer than the model's %lld positions", o->seq,
                               p->max_pos);
    if (o->data) {
        size_t bytes;
        size_t width = whole ? 8 : (size_t)p->d * 4;
        if (__builtin_mul_overflow((size_t)o->batch * (size_t)o->seq, width, &bytes) ||
            bytes > ((size_t)1 << 40))
            return cli_usage_error(c, "a %lldx%lld dataset is too large", o->batch, o->seq);
        const int64_t dims[3] = {o->batch, o->seq, p->d};
        mha_error err;
        mha_error_clear(&err);
        for (int i = 0; i < 2; i++)
            if (files[i] &&
                mha_tensor_file_check_output(files[i], whole ? MHA_DTYPE_INT64 : MHA_DTYPE_FLOAT32,
                                             whole ? 2 : 3, dims, &err) != MHA_OK)
                return cli_fail_err(files[i], &err);
    }
    return CLI_OK;
}

static int gen_write_model(const gen_options *o) {
    const gen_params *src = &o->p;
    static const char *kinds[3] = {"layer", "encoder", "decoder"};
    static const char *forms[3] = {"attention23", "ms_mha", "decomposed"};
    char name[160];
    if (src->kind == GEN_KIND_LAYER)
        snprintf(name, sizeof name, "mha_gen_%s_d%lld_h%lld_kv%lld%s_seed%llu", forms[src->form],
                 src->d, src->heads, src->kv_heads, src->causal ? "_causal" : "", src->seed);
    else
        snprintf(name, sizeof name, "mha_gen_%s_l%lld_d%lld_h%lld_kv%lld_ffn%lld%s_seed%llu",
                 kinds[src->kind], src->layers, src->d, src->heads, src->kv_heads, src->ffn,
                 src->causal ? "_causal" : "", src->seed);
    gen_params p = *src;
    p.name = name;
    ow_writer *w = p.kind == GEN_KIND_LAYER ? gen_layer(&p) : gen_model(&p);
    size_t size = 0;
    uint8_t *buf = ow_failed(w) ? NULL : ow_serialize(w, &size);
    ow_free(w);
    if (!buf) return cli_fail("%s: out of memory for the model", o->out);
    mha_error err;
    mha_error_clear(&err);
    int rc = cli_signal_stop(o->out); /* building a big model takes a while */
    if (rc == CLI_OK && mha_output_save(o->out, buf, size, &err) != MHA_OK)
        rc = cli_fail_err(o->out, &err);
    free(buf);
    return rc;
}

/* A dataset file being written: .npy row by row (any size), or .pb (one
 * TensorProto, named as the model's input) kept whole until the end. */
typedef struct gen_sink {
    const char *path, *name;
    mha_tensor t;
    mha_npy_writer *npy;
    uint8_t *whole;
    size_t row_bytes, rows;
} gen_sink;

static mha_status gen_sink_begin(gen_sink *k, const char *path, const char *name, mha_dtype dtype,
                                 int rank, const int64_t *dims, mha_error *err) {
    memset(k, 0, sizeof *k);
    k->path = path, k->name = name;
    k->t.dtype = dtype, k->t.rank = rank;
    k->row_bytes = dtype == MHA_DTYPE_INT64 ? 8 : 4;
    for (int i = 0; i < rank; i++) {
        k->t.shape[i] = dims[i];
        if (i) k->row_bytes *= (size_t)dims[i];
    }
    if (mha_file_output_format(path) == MHA_FILE_NPY)
        return mha_npy_writer_begin(path, dtype, rank, dims, NULL, &k->npy, err);
    if (!(k->whole = malloc(k->row_bytes * (size_t)dims[0] + 1))) {
        err->status = MHA_ERR_NO_MEMORY;
        snprintf(err->message, sizeof err->message, "%s: out of memory for the dataset", path);
        return MHA_ERR_NO_MEMORY;
    }
    return MHA_OK;
}

static mha_status gen_sink_row(gen_sink *k, const void *row, mha_error *err) {
    if (k->npy) return mha_npy_writer_write_rows(k->npy, row, 1, err);
    memcpy(k->whole + k->rows++ * k->row_bytes, row, k->row_bytes);
    return MHA_OK;
}

/* Publishes the file (and frees the sink). */
static mha_status gen_sink_commit(gen_sink *k, mha_error *err) {
    mha_status st;
    if (k->npy) {
        st = mha_npy_writer_commit(k->npy, err);
    } else {
        mha_output_file *f = NULL;
        k->t.data = k->whole;
        st = mha_tensor_file_write_pending(k->path, &k->t, k->name, NULL, &f, err);
        if (st == MHA_OK) st = mha_output_file_commit(f, err);
        free(k->whole);
    }
    memset(k, 0, sizeof *k);
    return st;
}

static void gen_sink_abort(gen_sink *k) {
    mha_npy_writer_abort(k->npy);
    free(k->whole);
    memset(k, 0, sizeof *k);
}

/* The datasets, row by row: a layer's float32 [B, S, D] in U(-1, 1); a
 * whole model's token ids [B, S] in [1, V) (0 past a row's length) and,
 * when asked, its attention mask. Row 0 is full; the others, with a mask,
 * have lengths in [1, S]. */
static int gen_write_data(const gen_options *o) {
    const gen_params *p = &o->p;
    const int whole = p->kind != GEN_KIND_LAYER;
    const size_t row = (size_t)o->seq * (whole ? 1 : (size_t)p->d);
    float *x = whole ? NULL : malloc(row * sizeof *x);
    int64_t *ids = whole ? malloc(row * sizeof *ids) : NULL;
    int64_t *mask = o->mask ? malloc(row * sizeof *mask) : NULL;
    if ((!x && !ids) || (o->mask && !mask)) {
        free(x), free(ids), free(mask);
        return cli_fail("%s: out of memory for a row of %zu values", o->data, row);
    }
    mha_error err;
    mha_error_clear(&err);
    gen_sink data, msk;
    memset(&msk, 0, sizeof msk);
    uint64_t seed = p->seed ^ 0x5eed0da7a5eed0daull; /* not the weights' stream */
    uint64_t len_seed = p->seed ^ 0x1e6c7415a5eed0daull;
    const int64_t dims[3] = {o->batch, o->seq, p->d};
    const char *failed = NULL;
    int rc = CLI_OK;
    if (gen_sink_begin(&data, o->data, whole ? "input_ids" : "query",
                       whole ? MHA_DTYPE_INT64 : MHA_DTYPE_FLOAT32, whole ? 2 : 3, dims,
                       &err) != MHA_OK)
        failed = o->data;
    else if (mask && gen_sink_begin(&msk, o->mask, "attention_mask", MHA_DTYPE_INT64, 2, dims,
                                    &err) != MHA_OK)
        failed = o->mask;
    for (long long b = 0; b < o->batch && !failed && rc == CLI_OK; b++) {
        if ((rc = cli_signal_stop(o->data)) != CLI_OK) break;
        if (!whole) {
            for (size_t i = 0; i < row; i++)
                x[i] = (float)(2.0 * cli_rng_uniform(&seed) - 1.0);
        } else {
            long long len = o->seq;
            if (mask && b > 0) len = 1 + (long long)(cli_rng_uniform(&len_seed) * (double)o->seq);
            for (long long s = 0; s < o->seq; s++) {
                int64_t id = 1 + (int64_t)(cli_rng_uniform(&seed) * (double)(p->vocab - 1));
                ids[s] = s < len ? id : 0;
                if (mask) mask[s] = s < len;
            }
        }
        if (gen_sink_row(&data, whole ? (void *)ids : (void *)x, &err) != MHA_OK)
            failed = o->data;
        else if (mask && gen_sink_row(&msk, mask, &err) != MHA_OK)
            failed = o->mask;
    }
    if (rc == CLI_OK && !failed && gen_sink_commit(&data, &err) != MHA_OK) failed = o->data;
    if (rc == CLI_OK && !failed && mask && gen_sink_commit(&msk, &err) != MHA_OK) failed = o->mask;
    gen_sink_abort(&data);
    gen_sink_abort(&msk);
    free(x), free(ids), free(mask);
    return failed ? cli_fail_err(failed, &err) : rc;
}

/* --model, --norm, --act, --form: one of a list of names. */
static int gen_parse_choice(const cli_common *c, int id, const char *v, gen_params *p) {
    static const char *models[] = {"layer", "encoder", "decoder"};
    static const char *norms[] = {"layernorm", "layernorm-op", "rmsnorm"};
    static const char *acts[] = {"gelu", "gelu-tanh", "relu", "swiglu"};
    static const char *forms[] = {"attention23", "ms_mha", "decomposed"};
    struct {
        int id;
        const char *opt, *const *names, *want;
        int n, *out;
    } t[] = {
        {GEN_MODEL, "--model", models, "layer, encoder or decoder", 3, &p->kind},
        {GEN_NORM, "--norm", norms, "layernorm, layernorm-op or rmsnorm", 3, &p->norm},
        {GEN_ACT, "--act", acts, "gelu, gelu-tanh, relu or swiglu", 4, &p->act},
        {GEN_FORM, "--form", forms, "attention23, ms_mha or decomposed", 3, &p->form},
    };
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        if (t[i].id != id) continue;
        if ((*t[i].out = gen_pick(v, t[i].names, t[i].n)) < 0)
            return cli_usage_error(c, "%s wants %s, not '%s'", t[i].opt, t[i].want, v);
        return CLI_OK;
    }
    return CLI_OK;
}

int cli_cmd_gen(int argc, char **argv) {
    cli_common c = {0};
    c.cmd = "gen";
    gen_options o = {0};
    gen_params *p = &o.p;
    p->kind = p->norm = p->pre_norm = p->act = p->lm_head = p->form = -1;
    p->d = p->heads = p->kv_heads = p->layers = p->ffn = p->vocab = p->max_pos = -1;
    p->bias = 1;
    o.batch = o.seq = -1;
    cli_parser cp;
    if (cli_parse_begin(&cp, &gen_spec, &c, argc, argv) != 0) return cli_fail("too many options");
    for (int id; (id = cli_parse_next(&cp)) != CLI_PARSE_END;) {
        const char *v = cp.value;
        long long *num = NULL, lo = 1, hi = 8192, seed;
        char opt[64];
        snprintf(opt, sizeof opt, "--%s", cp.name ? cp.name : "");
        switch (id) {
        case CLI_PARSE_EXIT:
            return cp.status;
        case CLI_PARSE_ARG:
            return cli_usage_error(&c, "unexpected argument '%s'", v);
        case GEN_MODEL:
        case GEN_NORM:
        case GEN_ACT:
        case GEN_FORM:
            if (gen_parse_choice(&c, id, v, p) != CLI_OK) return CLI_USAGE;
            break;
        case GEN_PRESET:
            o.preset = v;
            break;
        case GEN_LAYERS:
            num = &p->layers, hi = 1024;
            break;
        case GEN_D_MODEL:
            num = &p->d, hi = 65536;
            break;
        case GEN_HEADS:
            num = &p->heads;
            break;
        case GEN_KV_HEADS:
            num = &p->kv_heads;
            break;
        case GEN_FFN:
            num = &p->ffn, hi = 1 << 20;
            break;
        case GEN_VOCAB:
            num = &p->vocab, lo = 2, hi = 1 << 24;
            break;
        case GEN_MAX_POS:
            num = &p->max_pos, hi = 1 << 20;
            break;
        case GEN_BATCH:
            num = &o.batch, hi = 1ll << 31;
            break;
        case GEN_SEQ:
            num = &o.seq, hi = 1ll << 31;
            break;
        case GEN_PRE_NORM:
        case GEN_POST_NORM:
            if (p->pre_norm >= 0 && p->pre_norm != (id == GEN_PRE_NORM))
                return cli_usage_error(&c, "--pre-norm and --post-norm exclude each other");
            p->pre_norm = id == GEN_PRE_NORM;
            break;
        case GEN_NO_LM_HEAD:
            p->lm_head = 0;
            break;
        case GEN_SEED:
            if (!cli_parse_int(&c, opt, v, 0, INT64_MAX, &seed)) return CLI_USAGE;
            p->seed = (unsigned long long)seed;
            break;
        case GEN_OUTPUT:
            o.out = v;
            break;
        case GEN_DATA:
            o.data = v;
            break;
        case GEN_MASK:
            o.mask = v;
            break;
        case GEN_CAUSAL:
            p->causal = 1;
            break;
        case GEN_NO_BIAS:
            p->bias = 0;
            break;
        }
        if (num && !cli_parse_int(&c, opt, v, lo, hi, num)) return CLI_USAGE;
    }
    int rc = gen_resolve(&c, &o);
    if (rc != CLI_OK) return rc;
    /* every file checked, distinct and locked before any is written */
    const char *outs[3] = {o.out, o.data, o.mask};
    cli_outputs claimed;
    rc = cli_outputs_claim(&c, outs, 3, 1, &claimed);
    if (rc != CLI_OK) return rc;
    /* SIGINT / SIGTERM: caught before the first temporary exists, so that
     * the one being written is removed (cli_signal_stop) */
    cli_signals sigs;
    cli_signals_catch(&sigs);
    rc = gen_write_model(&o);
    if (rc == CLI_OK && o.data) rc = gen_write_data(&o);
    rc = cli_signals_end(&sigs, rc);
    cli_outputs_release(&claimed);
    return rc;
}
