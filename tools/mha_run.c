/* mha_run.c -- `mha run MODEL [INPUT...] [-o OUTPUT... | --out-dir DIR]`:
 * parses the command line; when every input and output is a .npy file the
 * run goes by chunks of rows (run_dataset.c: bounded memory, checkpoints,
 * resume, shards, MPI), otherwise the layer runs once over whole tensors
 * (.pb files, --out-dir) and its outputs are written atomically (all of
 * them, or none). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_options.h"
#include "mha_cli.h"
#include "run_dataset.h"
#include "mha/tensor_file.h"

enum {
    RUN_OUTPUT = 1,
    RUN_OUT_DIR,
    RUN_QUIET,
    RUN_BATCH_SIZE,
    RUN_LENGTHS,
    RUN_RESUME,
    RUN_CHECKPOINT_EVERY,
    RUN_SHARD,
    RUN_MPI,
};

static const cli_opt run_opts[] = {
    {RUN_OUTPUT, "output", 'o', "OUTPUT...",
     "write the outputs, in order, to these files (.npy or .pb by\n"
     "extension); every argument after -o up to the next option\n"
     "is an output file. Fewer files than outputs: the rest are\n"
     "not written. Required (-o /dev/null discards). A symlink is\n"
     "written through to its target; -, a FIFO or a device is\n"
     "written directly (.npy). A file given twice, a folder that\n"
     "is missing or not writable, or an output another run is\n"
     "writing is refused before any work."},
    {RUN_OUT_DIR, "out-dir", 0, "DIR",
     "write every output as DIR/output_<i>.pb (ONNX test-data\n"
     "layout); DIR is created if missing."},
    {RUN_QUIET, "quiet", 'q', NULL, "no progress bar and no summary on stderr"},
    {0, NULL, 0, NULL,
     "Datasets (every input and output a .npy file; rows = the batch axis, axis 0,\n"
     "or axis 1 for a whole model whose token ids are [S, B] -- outputs keep it):"},
    {RUN_BATCH_SIZE, "batch-size", 0, "N",
     "rows per chunk (default 64): memory stays bounded by the\n"
     "chunk whatever the dataset size; the result is bitwise the\n"
     "same for any N. Inputs are memory-mapped, the next chunk\n"
     "read ahead while this one computes."},
    {RUN_LENGTHS, "lengths", 0, "FILE.npy",
     "one int64/int32 length per row: keys at positions >= the\n"
     "length are ignored and the query rows there output 0 (a\n"
     "row scores as it would alone at its true length). Also\n"
     "feeds a bool key-padding mask input left without a file.\n"
     "A whole model: makes its [B, S] attention mask (1 for the\n"
     "first length tokens), the same bits as that mask's file;\n"
     "refused when no mask input is left to make."},
    {RUN_RESUME, "resume", 0, NULL,
     "continue an interrupted run from OUT.ckpt and the partial\n"
     "files it names (refused when the model, inputs -- the rows\n"
     "already scored, by content --, backend or rows differ;\n"
     "starts afresh when there is no checkpoint; says so when\n"
     "the output is already complete)"},
    {RUN_CHECKPOINT_EVERY, "checkpoint-every", 0, "SECONDS",
     "fsync the partial outputs and record a checkpoint this\n"
     "often (default 5; 0 = after every chunk)"},
    {RUN_SHARD, "shard", 0, "I/N",
     "only rows [I*B/N, (I+1)*B/N): writes a shard file whose\n"
     "header names its rows, for 'mha merge'. Without --shard,\n"
     "SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT choose it."},
    {RUN_MPI, "mpi", 0, NULL,
     "(mha-mpi only, under mpirun) each rank scores a row range\n"
     "and all write one output file through MPI-IO; with --shard\n"
     "(or a SLURM array task) the ranks split the shard's rows\n"
     "and write its shard file, as one process would"},
    {0},
};

static const cli_spec run_spec = {
    "Usage: mha run MODEL [INPUT...] [-o OUTPUT... | --out-dir DIR] [options]\n"
    "\n"
    "Runs MODEL (ONNX: an attention layer, or a whole model as a plan of steps)\n"
    "once over the given inputs.\n"
    "\n"
    "  INPUT  a .npy or ONNX TensorProto .pb file per model input, in the model's\n"
    "         input order, or NAME=FILE to bind by input name. float64,\n"
    "         float16 and bfloat16 files are converted to the model's float\n"
    "         type; int32, int16, int8, uint32, uint16 and uint8 token ids\n"
    "         and masks widened to the model's int64 (or int32, from the\n"
    "         narrower ones); any integer file to a bool mask.\n"
    "         Nothing else is converted. Token ids outside the vocabulary\n"
    "         (negative ones too) and 0/1 masks holding another value are\n"
    "         refused.\n",
    run_opts,
    CLI_COMMON_RUNTIME | CLI_COMMON_VERBOSE | CLI_COMMON_PRECISION,
    "Outputs appear only once every one of them is complete (OUT.partial.XXXXXX\n"
    "until then). SIGINT/SIGTERM stop after the current chunk, keep a checkpoint\n"
    "and exit 128 + N (130 for SIGINT).\n"
    "On a terminal a progress bar shows rows, rows/s and ETA. The summary (rows,\n"
    "seconds, rows/s, rows with non-finite outputs) goes to stderr; stdout stays\n"
    "empty.\n",
};

typedef struct run_state {
    mha_runtime *rt;
    mha_model *model;
    size_t n_in, n_out;
    mha_io_info *in_info, *out_info;
    const char **in_file; /* bound file per model input */
    mha_tensor_file **in_tf;
    int32_t **narrowed; /* int64 ids narrowed for an int32 input, per input */
    mha_tensor *ins, *outs;
    mha_output_file **pending;
    int whole; /* a whole model (a plan): the library checks every axis */
} run_state;

static void run_state_free(run_state *s) {
    cli_bus_clear();
    for (size_t i = 0; s->in_tf && i < s->n_in; i++)
        mha_tensor_file_free(s->in_tf[i]);
    for (size_t i = 0; s->narrowed && i < s->n_in; i++)
        free(s->narrowed[i]);
    free(s->narrowed);
    for (size_t i = 0; s->outs && i < s->n_out; i++)
        free(s->outs[i].data);
    for (size_t i = 0; s->pending && i < s->n_out; i++)
        mha_output_file_abort(s->pending[i]);
    free(s->in_info);
    free(s->out_info);
    free(s->in_file);
    free(s->in_tf);
    free(s->ins);
    free(s->outs);
    free(s->pending);
    mha_model_free(s->model);
    mha_runtime_destroy(s->rt);
}

/* Shards a dataset may be cut into (--shard, SLURM_ARRAY_TASK_COUNT). */
#define RUN_MAX_SHARDS 1000000

/* "I/N" with 0 <= I < N into ds. */
static int run_parse_shard(const cli_common *c, const char *opt, const char *v, ds_options *ds) {
    long long i = -1, n = 0;
    int used = 0;
    /* digits '/' digits: sscanf alone skips spaces (' 0/ 2') and takes signs */
    size_t d1 = strspn(v, "0123456789");
    size_t d2 = v[d1] == '/' ? strspn(v + d1 + 1, "0123456789") : 0;
    if (d1 == 0 || d1 > 9 || v[d1] != '/' || d2 == 0 || d2 > 9 || v[d1 + 1 + d2] != '\0' ||
        sscanf(v, "%lld/%lld%n", &i, &n, &used) != 2 || v[used] != '\0' || n < 1 ||
        n > RUN_MAX_SHARDS || i < 0 || i >= n)
        return cli_usage_error(c, "%s: '%s' is not I/N with 0 <= I < N", opt, v);
    ds->shard_index = (int)i;
    ds->shard_count = (int)n;
    ds->dataset_options = 1;
    return CLI_OK;
}

/* A SLURM job array picks the shard when --shard is absent: task ids run
 * from SLURM_ARRAY_TASK_MIN (default 0), SLURM_ARRAY_TASK_COUNT of them. */
static int run_shard_from_slurm(const cli_common *c, ds_options *ds) {
    const char *id = getenv("SLURM_ARRAY_TASK_ID"), *count = getenv("SLURM_ARRAY_TASK_COUNT");
    if (!id || !*id || !count || !*count) return CLI_OK;
    const char *min = getenv("SLURM_ARRAY_TASK_MIN");
    char *e1 = NULL, *e2 = NULL, *e3 = NULL;
    errno = 0;
    long long i = strtoll(id, &e1, 10), n = strtoll(count, &e2, 10);
    long long m = min && *min ? strtoll(min, &e3, 10) : 0;
    /* out of range saturates (ERANGE): a count of 10^20 became LLONG_MAX,
     * then -1 as an int, and the whole dataset was written as if unsharded;
     * the bounds of --shard, and i - m formed only when both are >= 0 */
    if (errno == ERANGE || !cli_number_text(id) || !cli_number_text(count) ||
        (min && *min && !cli_number_text(min)) || *e1 || *e2 || (e3 && *e3) || n < 1 ||
        n > RUN_MAX_SHARDS || i < 0 || m < 0 || i < m || i - m >= n)
        return cli_usage_error(c,
                               "SLURM_ARRAY_TASK_ID=%s, SLURM_ARRAY_TASK_COUNT=%s, "
                               "SLURM_ARRAY_TASK_MIN=%s do not name a shard",
                               id, count, min ? min : "(unset)");
    ds->shard_index = (int)(i - m);
    ds->shard_count = (int)n;
    ds->dataset_options = 1;
    return CLI_OK;
}

/* Reads input i and checks it against what the model declares, so that a
 * wrong file is reported by its name. */
static int run_read_input(run_state *s, size_t i) {
    const mha_io_info *info = &s->in_info[i];
    const char *file = s->in_file[i];
    mha_tensor_file_options o;
    mha_tensor_file_options_init(&o);
    o.want = info->dtype;
    mha_error err;
    mha_error_clear(&err);
    /* int64 (or uint32) ids for an int32 input: read as stored, then
     * narrowed with every value checked, as a dataset's are */
    if (info->dtype == MHA_DTYPE_INT32) o.want = MHA_DTYPE_UNDEFINED;
    if (mha_tensor_file_read(file, &o, &s->in_tf[i], &err) != MHA_OK)
        return cli_fail_err(file, &err);
    const mha_tensor *t = mha_tensor_file_tensor(s->in_tf[i]);
    int sized;
    const size_t bytes = cli_tensor_bytes(t, &sized);
    if (sized) cli_bus_watch(t->data, bytes, file); /* (mapped when large) */
    if (info->dtype == MHA_DTYPE_INT32 && t->dtype != MHA_DTYPE_INT32) {
        char why[512];
        if (cli_ids_as_int32(t, info->name, &s->ins[i], &s->narrowed[i], why, sizeof why) != 0)
            return cli_fail("%s: %s", file, why);
    }
    /* Batch and sequence lengths a model declares are not binding (mha.h);
     * the feature width of a layer's sequence input is. The library checks
     * the rest (masks against the sequences, heads, a whole model's every
     * axis) and names the input. */
    int sequence = info->role == MHA_ROLE_QUERY || info->role == MHA_ROLE_KEY_VALUE ||
                   info->role == MHA_ROLE_VALUE_INPUT || info->role == MHA_ROLE_Q ||
                   info->role == MHA_ROLE_K || info->role == MHA_ROLE_V ||
                   info->role == MHA_ROLE_PAST_KEY || info->role == MHA_ROLE_PAST_VALUE;
    int rc = cli_check_input_shape(file, info, t->rank, t->shape, sequence && !s->whole);
    if (rc != CLI_OK) return rc;
    if (!s->narrowed[i]) s->ins[i] = *t;
    return CLI_OK;
}

/* A library message about the inputs names a model input ('query'); report
 * it against that input's file. */
/* Rows (axis 0) of a float output holding a NaN or an infinity -- what
 * the summary of a dataset run counts: a NaN input (or overflow) must not
 * pass unsaid because the output is one .pb file. */
static long long run_nonfinite_rows(const mha_tensor *y) {
    if (!y || !y->data) return 0;
    size_t numel = 1;
    for (int a = 0; a < y->rank; a++)
        numel *= (size_t)y->shape[a];
    size_t rows = y->rank >= 1 ? (size_t)y->shape[0] : 1;
    if (!rows || !numel) return 0;
    return ds_nonfinite_rows(y->data, y->dtype, rows, numel / rows);
}

static int run_fail_inputs(const run_state *s, const char *model_path, const mha_error *err) {
    const size_t i = cli_message_input(err->message, s->in_info, s->n_in);
    return cli_fail_err(i < s->n_in ? s->in_file[i] : model_path, err);
}

/* The files a run reads: the model, each INPUT argument both as it is
 * and, for NAME=FILE, as the FILE after the '=' (only files that exist
 * match, so the reading that is not the file costs nothing), --lengths.
 * An output that is one of them is refused before any work: the run
 * would replace its own input. */
static int run_spare_inputs(const cli_common *c, const char *const *outs, size_t n_out,
                            const char *model_path, const char **in_args, size_t n_in_args,
                            const char *lengths_path) {
    const char **ins = calloc(2 * n_in_args + 2, sizeof *ins);
    if (!ins) return cli_fail("out of memory");
    size_t n = 0;
    ins[n++] = model_path;
    ins[n++] = lengths_path;
    for (size_t k = 0; k < n_in_args; k++) {
        const char *eq = strchr(in_args[k], '=');
        ins[n++] = in_args[k];
        if (eq) ins[n++] = eq + 1;
    }
    int rc = cli_outputs_spare_inputs(c, outs, n_out, ins, n, "input");
    free(ins);
    return rc;
}

/* Checks every output before the work: -o files resolved, distinct and
 * locked (not under --mpi, where every rank runs this; rank 0 alone creates
 * the files); --out-dir an existing writable folder, or one that can be
 * created. */
static int run_claim_outputs(const cli_common *c, const char **out_args, size_t n_out_args,
                             const char *out_dir, int mpi, cli_outputs *claimed) {
    if (!out_dir) return cli_outputs_claim(c, out_args, n_out_args, !mpi, claimed);
    struct stat sb;
    if (stat(out_dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode)) return cli_fail("%s: --out-dir: not a folder", out_dir);
        if ((sb.st_mode & 0222) == 0) /* by its mode bits, for root too */
            return cli_fail("%s: --out-dir: cannot create files in the folder: it is read-only "
                            "(mode %04o)",
                            out_dir, (unsigned)(sb.st_mode & 07777));
        if (access(out_dir, W_OK | X_OK) != 0)
            return cli_fail("%s: --out-dir: cannot create files in the folder: %s", out_dir,
                            strerror(errno));
        return CLI_OK;
    }
    /* missing: its parent folder must take it (named in the message) */
    const char *const one[1] = {out_dir};
    int rc = cli_outputs_claim(c, one, 1, 0, claimed);
    cli_outputs_release(claimed);
    return rc;
}

/* --out-dir once the number of outputs is known: the folder made (before
 * the work, as `mkdir -p` would be) and DIR/output_<i>.pb claimed like -o
 * files. */
static int run_claim_out_dir(const cli_common *c, const char *out_dir, size_t n,
                             const char *model_path, const char **in_args, size_t n_in_args,
                             cli_outputs *claimed) {
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST)
        return cli_fail("%s: cannot create the folder: %s", out_dir, strerror(errno));
    char **paths = calloc(n ? n : 1, sizeof *paths);
    int rc = paths ? CLI_OK : cli_fail("out of memory");
    for (size_t i = 0; i < n && rc == CLI_OK; i++) {
        size_t len = strlen(out_dir) + 32;
        if (!(paths[i] = malloc(len)))
            rc = cli_fail("out of memory");
        else
            snprintf(paths[i], len, "%s/output_%zu.pb", out_dir, i);
    }
    if (rc == CLI_OK)
        rc = run_spare_inputs(c, (const char *const *)paths, n, model_path, in_args, n_in_args,
                              NULL);
    if (rc == CLI_OK) rc = cli_outputs_claim(c, (const char *const *)paths, n, 1, claimed);
    for (size_t i = 0; paths && i < n; i++)
        free(paths[i]);
    free(paths);
    return rc;
}

int cli_cmd_run(int argc, char **argv) {
    cli_common c = {0};
    c.cmd = "run";
    const char *model_path = NULL, *out_dir = NULL;
    const char **in_args = calloc((size_t)argc, sizeof *in_args);
    const char **out_args = calloc((size_t)argc, sizeof *out_args);
    size_t n_in_args = 0, n_out_args = 0;
    int quiet = 0, in_outputs = 0, rc = CLI_OK, catching = 0;
    int batch_size_given = 0, checkpoint_given = 0; /* dataset options, .npy only */
    cli_signals sigs;
    run_state s = {0};
    cli_outputs claimed = {0};
    ds_options ds;
    memset(&ds, 0, sizeof ds);
    ds.batch_rows = DS_DEFAULT_BATCH_ROWS;
    ds.checkpoint_seconds = DS_DEFAULT_CHECKPOINT_SECONDS;
    if (!in_args || !out_args) {
        rc = cli_fail("out of memory");
        goto done;
    }

    /* -- command line -- */
    cli_parser p;
    if (cli_parse_begin(&p, &run_spec, &c, argc, argv) != 0) {
        rc = cli_fail("too many options");
        goto done;
    }
    for (int id; (id = cli_parse_next(&p)) != CLI_PARSE_END;) {
        const char *v = p.value;
        long long n = 0;
        if (id != CLI_PARSE_ARG) in_outputs = 0;
        switch (id) {
        case CLI_PARSE_EXIT:
            rc = p.status;
            goto done;
        case CLI_PARSE_ARG:
            if (in_outputs && !p.after_dashdash)
                out_args[n_out_args++] = v;
            else if (!model_path)
                model_path = v;
            else
                in_args[n_in_args++] = v;
            break;
        case RUN_OUTPUT:
            out_args[n_out_args++] = v;
            in_outputs = 1;
            break;
        case RUN_OUT_DIR:
            out_dir = v;
            break;
        case RUN_QUIET:
            quiet = 1;
            break;
        case RUN_RESUME:
            ds.resume = 1;
            ds.dataset_options = 1;
            break;
        case RUN_MPI:
            ds.mpi = 1;
            break;
        case RUN_BATCH_SIZE:
            if (!cli_parse_int(&c, "--batch-size", v, 1, (long long)1 << 40, &n)) {
                rc = CLI_USAGE;
                goto done;
            }
            ds.batch_rows = n;
            batch_size_given = ds.batch_size_given = 1;
            break;
        case RUN_LENGTHS:
            ds.lengths_path = v;
            ds.dataset_options = 1;
            break;
        case RUN_CHECKPOINT_EVERY: {
            char *end = NULL;
            double sec = strtod(v, &end);
            if (!cli_number_text(v) || end == v || *end != '\0' || !(sec >= 0.0 && sec < 1e9)) {
                rc = cli_usage_error(&c, "--checkpoint-every: '%s' is not a number of seconds >= 0",
                                     v);
                goto done;
            }
            ds.checkpoint_seconds = sec;
            checkpoint_given = ds.checkpoint_given = 1;
            break;
        }
        case RUN_SHARD:
            if ((rc = run_parse_shard(&c, "--shard", v, &ds)) != CLI_OK) goto done;
            break;
        }
    }
    if (!model_path) {
        rc = cli_usage_error(&c, "no model given");
        goto done;
    }
    if (n_out_args && out_dir) {
        rc = cli_usage_error(&c, "give either -o files or --out-dir, not both");
        goto done;
    }
    if (!n_out_args && !out_dir) {
        /* computing a whole dataset to throw it away is almost always a
         * forgotten -o; saying so beats minutes of work with nothing to show */
        rc = cli_usage_error(&c, "no output given: -o FILE... writes the outputs (-o /dev/null "
                                 "discards them; 'mha bench' times a model)");
        goto done;
    }
    for (size_t k = 0; k < n_out_args; k++)
        if (mha_file_output_format(out_args[k]) == MHA_FILE_UNKNOWN) {
            rc = cli_usage_error(&c, "output '%s': unknown extension (use .npy or .pb)",
                                 out_args[k]);
            goto done;
        }
    for (size_t k = 0; k < n_in_args; k++)
        if (mha_file_format_of(in_args[k]) == MHA_FILE_UNKNOWN) {
            rc = cli_usage_error(&c, "input '%s': unknown extension (use .npy or .pb)", in_args[k]);
            goto done;
        }

    /* -- outputs checked, distinct and locked before any work -- */
    if ((rc = run_spare_inputs(&c, out_args, n_out_args, model_path, in_args, n_in_args,
                               ds.lengths_path)) != CLI_OK)
        goto done;
    if ((rc = run_claim_outputs(&c, out_args, n_out_args, out_dir, ds.mpi, &claimed)) != CLI_OK)
        goto done;

    /* -- a dataset run when every file is .npy -- */
    int all_npy = !out_dir;
    for (size_t k = 0; k < n_out_args; k++)
        all_npy &= mha_file_output_format(out_args[k]) == MHA_FILE_NPY;
    for (size_t k = 0; k < n_in_args; k++)
        all_npy &= mha_file_format_of(in_args[k]) == MHA_FILE_NPY;
    /* (with --mpi too: the ranks then split the shard's rows) */
    if (all_npy && !ds.shard_count && (rc = run_shard_from_slurm(&c, &ds)) != CLI_OK) goto done;
    if (ds.mpi && ds.resume) {
        rc = cli_usage_error(&c, "--resume is not available with --mpi");
        goto done;
    }
    if ((ds.dataset_options || ds.mpi) && !all_npy) {
        rc = cli_usage_error(&c, "--lengths, --resume, --shard and --mpi need .npy inputs and "
                                 ".npy outputs (-o)");
        goto done;
    }
    /* a .pb file runs in one piece: a chunk size or a checkpoint period
     * would be dropped in silence (and the memory bound with it) */
    if ((batch_size_given || checkpoint_given) && !all_npy) {
        rc = cli_usage_error(&c,
                             "%s needs .npy inputs and .npy outputs (-o): a .pb file or "
                             "--out-dir runs in one piece",
                             batch_size_given ? "--batch-size" : "--checkpoint-every");
        goto done;
    }
    if (ds.lengths_path && mha_file_format_of(ds.lengths_path) != MHA_FILE_NPY) {
        rc = cli_usage_error(&c, "--lengths '%s': expected a .npy file", ds.lengths_path);
        goto done;
    }
    if (all_npy) {
        ds.model_path = model_path;
        ds.in_args = in_args;
        ds.n_in_args = n_in_args;
        ds.out_files = out_args;
        ds.n_out_files = n_out_args;
        ds.quiet = quiet;
        rc = ds_run(&c, &ds);
        if (rc != DS_ONE_SHOT) goto done;
        rc = CLI_OK; /* cannot go by rows: run it in one piece below */
    }

    /* -- model and inputs -- */
    mha_error err;
    mha_error_clear(&err);
    double t_start = cli_now();
    if (mha_model_load_file(model_path, NULL, &s.model, &err) != MHA_OK) {
        rc = cli_fail_err(model_path, &err);
        goto done;
    }
    mha_model_info mi;
    mha_model_get_info(s.model, &mi);
    s.whole = strcmp(mi.form, "plan") == 0;
    s.n_in = mi.num_inputs;
    s.n_out = mi.num_outputs;
    s.in_info = calloc(s.n_in + 1, sizeof *s.in_info);
    s.out_info = calloc(s.n_out + 1, sizeof *s.out_info);
    s.in_file = calloc(s.n_in + 1, sizeof *s.in_file);
    s.in_tf = calloc(s.n_in + 1, sizeof *s.in_tf);
    s.narrowed = calloc(s.n_in + 1, sizeof *s.narrowed);
    s.ins = calloc(s.n_in + 1, sizeof *s.ins);
    s.outs = calloc(s.n_out + 1, sizeof *s.outs);
    s.pending = calloc(s.n_out + 1, sizeof *s.pending);
    if (!s.in_info || !s.out_info || !s.in_file || !s.in_tf || !s.narrowed || !s.ins || !s.outs ||
        !s.pending) {
        rc = cli_fail("out of memory");
        goto done;
    }
    for (size_t i = 0; i < s.n_in; i++)
        mha_model_input(s.model, i, &s.in_info[i]);
    for (size_t i = 0; i < s.n_out; i++)
        mha_model_output(s.model, i, &s.out_info[i]);
    if (n_out_args > s.n_out) {
        rc = cli_usage_error(&c, "the model has %zu output%s but %zu -o files were given", s.n_out,
                             s.n_out == 1 ? "" : "s", n_out_args);
        goto done;
    }
    if ((rc = ds_bind_inputs(&c, s.in_info, s.n_in, in_args, n_in_args, s.in_file, 0, 0)) != CLI_OK)
        goto done;
    for (size_t i = 0; i < s.n_in; i++)
        if ((rc = run_read_input(&s, i)) != CLI_OK) goto done;

    /* -- outputs: shapes from the model, storage from us -- */
    if (mha_model_output_shapes(s.model, s.ins, s.n_in, s.outs, s.n_out, &err) != MHA_OK) {
        rc = run_fail_inputs(&s, model_path, &err);
        goto done;
    }
    /* -- every output can be written as asked (the 2 GiB of a .pb) -- */
    size_t n_write = out_dir ? s.n_out : n_out_args;
    char path[4096];
    for (size_t i = 0; i < n_write; i++) {
        int fits = out_dir ? cli_format(path, sizeof path, "%s/output_%zu.pb", out_dir, i)
                           : cli_format(path, sizeof path, "%s", out_args[i]);
        if (!fits) {
            rc = cli_fail("%s: path too long", out_dir ? out_dir : out_args[i]);
            goto done;
        }
        if (mha_tensor_file_check_output(path, s.outs[i].dtype, s.outs[i].rank, s.outs[i].shape,
                                         &err) != MHA_OK) {
            rc = cli_fail_err(path, &err);
            goto done;
        }
    }
    if (out_dir && (rc = run_claim_out_dir(&c, out_dir, n_write, model_path, in_args, n_in_args,
                                           &claimed)) != CLI_OK)
        goto done;

    for (size_t i = 0; i < s.n_out; i++) {
        cli_warn_declared_shape(model_path, s.model, i, s.outs[i].rank, s.outs[i].shape, "written");
        int ok;
        size_t bytes = cli_tensor_bytes(&s.outs[i], &ok);
        s.outs[i].data = ok ? calloc(bytes ? bytes : 1, 1) : NULL;
        if (!s.outs[i].data) {
            rc = cli_fail("%s: output '%s' of %zu bytes does not fit in memory", model_path,
                          s.out_info[i].name, bytes);
            goto done;
        }
    }

    /* -- run -- */
    if ((rc = cli_runtime_create(&c, &s.rt)) != CLI_OK) goto done;
    double t0 = cli_now();
    const mha_run_options ro = cli_run_options(&c);
    if (mha_run(s.rt, s.model, s.ins, s.n_in, s.outs, s.n_out, &ro, &err) != MHA_OK) {
        rc = run_fail_inputs(&s, model_path, &err);
        goto done;
    }
    double seconds = cli_now() - t0;

    /* -- write every output to a temporary, then publish them all -- */
    cli_signals_catch(&sigs); /* before the first temporary: cli_signal_stop */
    catching = 1;
    for (size_t i = 0; i < n_write; i++) {
        if (out_dir)
            cli_format(path, sizeof path, "%s/output_%zu.pb", out_dir, i); /* fit above */
        else
            cli_format(path, sizeof path, "%s", out_args[i]);
        mha_output_clean_stale(path); /* what kill -9 left; ours: locked */
        if (mha_tensor_file_write_pending(path, &s.outs[i], s.out_info[i].name, NULL, &s.pending[i],
                                          &err) != MHA_OK) {
            rc = cli_fail_err(path, &err);
            goto done;
        }
    }
    if (n_write && (rc = cli_signal_stop(out_dir ? out_dir : out_args[0])) != CLI_OK) goto done;
    for (size_t i = 0; i < n_write; i++) {
        mha_output_file *f = s.pending[i];
        s.pending[i] = NULL;
        cli_format(path, sizeof path, "%s", mha_output_file_path(f)); /* fit above */
        if (mha_output_file_commit(f, &err) != MHA_OK) {
            rc = cli_fail_err(path, &err);
            goto done;
        }
    }

    if (!quiet) {
        /* rows = batch items of the query; tokens = rows x query length */
        const mha_tensor *q = s.n_in ? &s.ins[0] : NULL;
        for (size_t i = 0; i < s.n_in; i++)
            if (s.in_info[i].role == MHA_ROLE_QUERY || s.in_info[i].role == MHA_ROLE_Q) {
                q = &s.ins[i];
                break;
            }
        long long rows = q && q->rank >= 1 ? (long long)q->shape[0] : 1;
        long long tokens = q && q->rank >= 3 ? rows * (long long)q->shape[q->rank - 2] : rows;
        if (q && q->rank == 2 && q->dtype == MHA_DTYPE_INT64) /* token ids [B, S] */
            tokens = rows * (long long)q->shape[1];
        double per = seconds > 0 ? 1.0 / seconds : 0.0;
        char where[4200] = "";
        if (out_dir)
            snprintf(where, sizeof where, "; wrote %zu file%s to %s", n_write,
                     n_write == 1 ? "" : "s", out_dir);
        else if (n_write)
            snprintf(where, sizeof where, "; wrote %s%s", out_args[0], n_write > 1 ? ", ..." : "");
        char arena[96] = ""; /* a whole model's activations */
        if (mha_model_arena_bytes(s.model))
            snprintf(arena, sizeof arena, "; arena %zu bytes, scratch %zu bytes",
                     mha_model_arena_bytes(s.model), mha_runtime_scratch_bytes(s.rt));
        fprintf(stderr,
                "mha run: %lld rows (%lld tokens) in %.3f s: %.1f rows/s, %.0f tokens/s; "
                "%lld rows with non-finite outputs; backend %s, %d thread%s; %.3f s with I/O%s%s\n",
                rows, tokens, seconds, (double)rows * per, (double)tokens * per,
                run_nonfinite_rows(s.n_out ? &s.outs[0] : NULL), mha_runtime_backend(s.rt),
                mha_runtime_num_threads(s.rt), mha_runtime_num_threads(s.rt) == 1 ? "" : "s",
                cli_now() - t_start, arena, where);
    }

done:
    run_state_free(&s); /* removes the temporaries not published */
    if (catching) rc = cli_signals_end(&sigs, rc);
    cli_outputs_release(&claimed);
    free(in_args);
    free(out_args);
    return rc;
}
