/* mha_cli.h -- what the subcommands of the `mha` command share: exit codes,
 * the values of the shared options (parsed by cli_options.h), one-line
 * error reporting, and tensor helpers.
 *
 * Conventions: exit 0 on success, 2 on a usage error, 1 on any other
 * failure, with exactly one line on stderr (`mha: FILE: problem`). stdout
 * carries only what the subcommand was asked to print. */
#ifndef MHA_CLI_H
#define MHA_CLI_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mha/mha.h"
#include "mha/tensor_file.h"

#define CLI_OK 0
#define CLI_FAIL 1
#define CLI_USAGE 2

/* The shared options of a subcommand (cli_options.h parses them). */
typedef struct cli_common {
    const char *cmd;     /* "run", "check", ... for messages */
    const char *backend; /* NULL: $MHA_BACKEND, else auto */
    int threads;         /* 0: every online CPU */
    int verbose;         /* library log lines to stderr */
    int precision;       /* --precision (run, check, bench): MHA_PRECISION_* */
} cli_common;

/* The subcommands: argv[0] is the subcommand's name; each handles --help
 * itself and returns the exit status. */
int cli_cmd_run(int argc, char **argv);
int cli_cmd_check(int argc, char **argv);
int cli_cmd_info(int argc, char **argv);
int cli_cmd_gen(int argc, char **argv);
int cli_cmd_backends(int argc, char **argv);
int mha_cmd_peak(int argc, char **argv);  /* mha_peak.c */
int mha_cmd_serve(int argc, char **argv); /* mha_serve.c (with libmicrohttpd) */

/* Run options carrying c's precision. */
mha_run_options cli_run_options(const cli_common *c);

/* splitmix64: the command's one seeded generator (model weights, datasets,
 * bench inputs, the plugin test kit); the same seed gives the same stream. */
uint64_t cli_rng_next(uint64_t *state);
double cli_rng_uniform(uint64_t *state); /* [0, 1) */

/* Whether s is a number as a person writes one on a command line: an
 * optional sign, then a digit (or '.' and a digit), and no 'x' -- strtol
 * and strtod skip leading white space (--threads ' 2') and strtod reads
 * hexadecimal ('0x1p3'), which no option means. Every numeric option and
 * variable of the command is checked with it before strtol/strtod. */
int cli_number_text(const char *s);

/* Parses a decimal integer in [lo, hi]; 0 and a usage error otherwise. */
int cli_parse_int(const cli_common *c, const char *opt, const char *s, long long lo, long long hi,
                  long long *out);

/* Prints "mha CMD: <message>" on stderr and returns CLI_USAGE. */
int cli_usage_error(const cli_common *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Prints "mha: <message>" (one line) and returns CLI_FAIL. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints a library error: "mha: FILE: message" (FILE left out when the
 * message already names it). Returns CLI_FAIL. */
int cli_fail_err(const char *file, const mha_error *err);
/* s with control characters and invalid UTF-8 written as \xNN (see
 * mha_text_escape), into buf: for names from a model or a folder printed on
 * a terminal. Returns buf. */
const char *cli_escape(const char *s, char *buf, size_t n);
/* Bytes of the well-formed UTF-8 sequence at p (1 to 4), 0 when the bytes
 * there are not one. */
size_t cli_utf8_sequence(const unsigned char *p);
/* s as a JSON string (NULL as ""): quotes and controls escaped, bytes that
 * are not UTF-8 written as U+FFFD, so any name gives valid JSON. */
void cli_json_string(FILE *f, const char *s);

/* Creates the runtime the common options ask for. Prints the error (a
 * backend named by --backend or $MHA_BACKEND that is not usable: that
 * option and the backends usable here). */
int cli_runtime_create(const cli_common *c, mha_runtime **rt);
/* The names of rt's usable backends, "scalar, avx2, ..." ("none"). */
void cli_usable_backends(mha_runtime *rt, char *buf, size_t n);

/* "2x8x32" or "?x?x32" into buf. */
const char *cli_shape_str(int rank, const int64_t *dims, char *buf, size_t n);
/* The hash of checkpoints and shard files: n bytes at data folded into h
 * (start from CLI_HASH_SEED), 8 bytes at a time, a multiply and a shift
 * per word (several GB/s). It finds a file changed by accident or by hand
 * since it was written, not an adversary's collision. */
uint64_t cli_hash_bytes(uint64_t h, const void *data, size_t n);
#define CLI_HASH_SEED 0x6d68612d636b7074ull /* "mha-ckpt" */
/* m rows of row_bytes folded into h one row at a time, so that any
 * chunking of the rows gives the same hash. Rows along axis 1 (data
 * [outer, m, ...], a sequence-first model's) are `outer` runs each, hashed
 * in order; outer 1 is rows lying one after another. */
uint64_t cli_hash_rows(uint64_t h, const void *data, int64_t m, int64_t outer, size_t row_bytes);
/* Token ids stored as int64 (or uint32) for a model taking int32 ids:
 * narrowed when every value fits (numpy and torch save ids as int64). */
int cli_narrows_to_int32(mha_dtype from, mha_dtype to);
/* n ids of `from` at src (any alignment) narrowed to int32 at dst, which
 * may be src itself. Returns n, or the index of the first value past
 * int32 (in *bad; dst is then partly written). */
size_t cli_narrow_ids(const void *src, mha_dtype from, int32_t *dst, size_t n, int64_t *bad);
/* Tensor t, read as stored, for an int32 input `name`: a narrower integer
 * type widened, int64 / uint32 narrowed with every value checked, into a
 * new buffer (*buf, freed by the caller; NULL when t is int32 already).
 * *out is t with that data. 0, or -1 with the reason in msg ("holds int64
 * data but int32 is needed", "element 7 holds 2147483648, past the int32
 * ..."), the file's name for the caller to put in front. */
int cli_ids_as_int32(const mha_tensor *t, const char *name, mha_tensor *out, int32_t **buf,
                     char *msg, size_t cap);
/* Output i of m computed as [dims] (rank axes; -1 = not known yet) where
 * the file declares another rank or another fixed size: one stderr line,
 * "mha: warning: MODEL: graph output 'y' is declared AxB, but the graph
 * computes CxD: DONE as computed" (DONE "written", "answered"; ONNX Runtime
 * warns likewise and runs with the computed shape). Returns 1 when it
 * warned. */
int cli_warn_declared_shape(const char *model_path, const mha_model *m, size_t i, int rank,
                            const int64_t *dims, const char *done);
/* An input file's shape (rank, dims) against what the model declares for
 * the input: CLI_OK, or one line "FILE: input 'NAME': ..." naming the
 * axis and the size the model takes against the one given (CLI_FAIL).
 * The number of axes always; the last axis when check_last (a layer's
 * feature width: a whole model's axes are checked by the library, which
 * knows the file's names for them). */
int cli_check_input_shape(const char *file, const mha_io_info *info, int rank, const int64_t *dims,
                          int check_last);
/* Which of the n inputs a library message is about: the one whose quoted
 * name ('input_ids') comes first in it (a message may name another input
 * after it), n when none is named. */
size_t cli_message_input(const char *message, const mha_io_info *info, size_t n);
/* Bytes of a tensor's data, 0 (and *ok = 0) if it overflows. */
size_t cli_tensor_bytes(const mha_tensor *t, int *ok);

/* snprintf that reports truncation: 1 when the whole text fit. */
int cli_format(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* A text file written whole or not at all: cli_out_open checks that path
 * can be written (before the work, so a bad path fails at once) and gives a
 * memory stream; cli_out_commit writes what was printed through the atomic
 * writer (a temporary beside the target renamed into place; "-", FIFOs and
 * devices written directly); cli_out_discard drops it. On failure msg says
 * which file and why. open and commit return 0 or -1. */
typedef struct cli_out_file {
    FILE *f;
    const char *path;
    char *buf;
    size_t len;
} cli_out_file;
int cli_out_open(cli_out_file *o, const char *path, char *msg, size_t msg_size);
int cli_out_commit(cli_out_file *o, char *msg, size_t msg_size);
void cli_out_discard(cli_out_file *o);

/* The output files of a subcommand, claimed before any work starts: every
 * path resolved and checked (a missing or read-only folder is named), no
 * file named twice (character devices such as /dev/null excepted), and
 * each locked (lock = 1) so that a second process writing the same output
 * is refused. NULL paths are skipped. Returns CLI_OK, CLI_USAGE (a file given twice) or
 * CLI_FAIL, with the one line printed. Release when the files are written
 * (or abandoned). */
typedef struct cli_outputs {
    size_t n;
    mha_output_lock **locks;
} cli_outputs;
int cli_outputs_claim(const cli_common *c, const char *const *paths, size_t n, int lock,
                      cli_outputs *out);
void cli_outputs_release(cli_outputs *o);
/* A report (--json, --csv, --plot; `what` says what the option writes:
 * "a report", "the port number") named as a model or tensor file (.onnx,
 * .npy, .npz, .pb, any case) is a usage error naming the option: it would
 * replace the model or dataset (mha bench --json x.npy). CLI_OK otherwise,
 * and for NULL. */
int cli_report_path_check(const cli_common *c, const char *option, const char *what,
                          const char *path);

/* Refuses (CLI_USAGE, the one line printed) an output that is one of the
 * files the command reads: the same file by device and inode (a symlink
 * or hard link to it included), as writing it would replace the input --
 * the model, a dataset, a shard -- with the result; `what` names the
 * inputs in the message ("input", "shard"). Paths that do not exist
 * (yet) and NULLs match nothing. */
int cli_outputs_spare_inputs(const cli_common *c, const char *const *outs, size_t n_out,
                             const char *const *ins, size_t n_in, const char *what);

/* SIGINT, SIGTERM and SIGHUP (the terminal closed, an ssh session dropped)
 * recorded instead of ending the process, so that a long
 * loop stops at a safe point (a checkpoint, removing a temporary):
 * cli_signals_catch installs the handler, cli_signal_caught gives the
 * signal number (0: none), cli_signals_restore puts the old handlers back.
 * A subcommand stopped by signal N returns CLI_SIGNALED(N); main then ends
 * by that signal, so the shell sees 128 + N (130 for SIGINT) and a loop
 * around the command stops as it would for any interrupted program. */
#define CLI_SIGNALED(sig) (128 + (sig))
typedef struct cli_signals {
    struct sigaction old_int, old_term, old_hup;
} cli_signals;
void cli_signals_catch(cli_signals *saved);
int cli_signal_caught(void);
/* "SIGINT", "SIGTERM" or "SIGHUP": the name of a signal caught. */
const char *cli_signal_name(int sig);
void cli_signals_restore(cli_signals *saved);
/* A mapped input file cut short while it is read (a dataset rewritten in
 * place during a run) faults with SIGBUS where its pages are gone: by
 * default the process ended in silence, its partial outputs left behind.
 * Inputs watched (the mapped bytes [base, base + len) of path) make such a
 * fault one stderr line, "mha: PATH: the file became shorter while being
 * read (changed during the run)", the files given to cli_bus_remove
 * removed unless the checkpoint `keep_if` (may be NULL) exists, and exit
 * status 1. A fault anywhere else ends the process as before. Up to
 * CLI_BUS_MAX of each; cli_bus_clear forgets them all. Strings are copied. */
#define CLI_BUS_MAX 16
void cli_bus_watch(const void *base, size_t len, const char *path);
void cli_bus_remove(const char *path, const char *keep_if);
void cli_bus_clear(void);
/* For writers: when a signal was caught, says "PATH: interrupted by
 * SIGTERM; nothing written" and returns CLI_SIGNALED(N), else 0. A writer
 * catches before its first temporary exists (a signal between the
 * temporary's creation and the catch would end the process and leave it
 * behind), checks this before publishing, and removes its temporaries. */
int cli_signal_stop(const char *path);
/* Restores the old handlers and returns rc, or CLI_SIGNALED(N) when signal
 * N arrived meanwhile (say, while a whole file was being renamed into
 * place): the command still ends by the signal it was sent. */
int cli_signals_end(cli_signals *saved, int rc);

/* Seconds on the monotonic clock. */
double cli_now(void);

/* Element comparison as ../shared/conformance/check.py does it: NULL when
 * `got` matches `want`, else a one-line reason in buf (dtype, shape, or how
 * many elements are off and the worst one). */
const char *cli_compare_tensors(const mha_tensor *want, const mha_tensor *got, char *buf, size_t n);

#endif
