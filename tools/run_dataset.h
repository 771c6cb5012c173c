/* run_dataset.h -- `mha run` at dataset scale: .npy inputs read in chunks
 * of rows (memory-mapped, the next chunk prefetched while this one
 * computes), outputs appended to a partial file with checkpoints, resume
 * after an interruption, shards of a split run, and an MPI mode in the
 * mha-mpi binary. mha_run.c parses the command line and hands the run
 * here when every input and output is a .npy file. */
#ifndef MHA_RUN_DATASET_H
#define MHA_RUN_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "mha_cli.h"

/* Rows per chunk when --batch-size is not given. */
#define DS_DEFAULT_BATCH_ROWS 64
/* Seconds between checkpoints when --checkpoint-every is not given. */
#define DS_DEFAULT_CHECKPOINT_SECONDS 5.0

typedef struct ds_options {
    const char *model_path;
    const char *const *in_args; /* INPUT arguments (FILE or NAME=FILE) */
    size_t n_in_args;
    const char *const *out_files; /* -o files, outputs in order (.npy) */
    size_t n_out_files;
    int64_t batch_rows;           /* rows per chunk (> 0) */
    const char *lengths_path;     /* --lengths FILE.npy or NULL */
    int resume;                   /* --resume */
    int shard_index, shard_count; /* --shard i/N; shard_count 0 = none */
    int mpi;                      /* --mpi (mha-mpi only) */
    int quiet;                    /* no progress bar, no summary */
    double checkpoint_seconds;    /* 0 = after every chunk */
    int dataset_options;          /* any of --lengths, --resume, --shard given */
    /* --batch-size / --checkpoint-every given: a run that would go in one
     * piece, or keep no checkpoint, is refused rather than drop them */
    int batch_size_given, checkpoint_given;
} ds_options;

/* ds_run's answer when the model cannot be run by rows (sequence-first
 * inputs, an output without a batch axis, no rows) and no dataset option,
 * --batch-size or --checkpoint-every asked for it: the caller runs it in
 * one piece instead. */
#define DS_ONE_SHOT (-1)

/* Runs the model over the dataset; prints its one error line itself and
 * returns the exit status (CLI_OK, CLI_FAIL, CLI_USAGE) or DS_ONE_SHOT. */
int ds_run(const cli_common *c, const ds_options *o);

/* Binds INPUT arguments to the model's inputs: NAME=FILE by name, the rest
 * in order into the free slots; in_file[i] gets input i's file. With
 * lengths_given, a bool key-padding mask or lengths input may stay without
 * a file (it is made from --lengths). Prints usage errors. */
int ds_bind_inputs(const cli_common *c, const mha_io_info *info, size_t n_in,
                   const char *const *args, size_t n_args, const char **in_file, int lengths_given,
                   int whole);

/* Whether this binary was built with MPI (mha-mpi). */
int ds_have_mpi(void);

/* How many of `rows` rows of per_row elements of dtype dt hold a NaN or an
 * infinity (the summary's "rows with non-finite outputs"): float32,
 * float16 (a whole float16 model's outputs) and bfloat16; 0 for others. */
long long ds_nonfinite_rows(const void *data, mha_dtype dt, size_t rows, size_t per_row);

#endif
