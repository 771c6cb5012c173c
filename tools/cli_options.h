/* cli_options.h -- the one option parser of every `mha` subcommand: a
 * subcommand describes its options in a table, getopt_long parses them, and
 * --help is printed from the same table, so the help text and the parser
 * cannot disagree.
 *
 * What every subcommand therefore accepts alike:
 *   -oFILE, -o FILE, --output=FILE, --output FILE (any option with a value);
 *   short flags grouped (-qv); a long option abbreviated when the prefix
 *   names one option only (an ambiguous prefix is refused, naming the
 *   candidates); `--` ends the options (what follows is an argument even if
 *   it starts with '-'); a lone `-` is an argument (standard output/input);
 *   options and arguments in any order.
 * Usage errors are one line on stderr, `mha SUB: ... (see 'mha SUB --help')`,
 * and exit 2: an unknown option, a missing value, a value given to a flag.
 *
 * The shared options (CLI_COMMON_*) have one syntax and one range wherever
 * they are accepted: --threads N is a count in [0, CLI_THREADS_MAX] with 0
 * meaning every online CPU (bench and peak take a comma list of such
 * counts: cli_parse_thread_list); --precision float32|bfloat16. */
#ifndef MHA_CLI_OPTIONS_H
#define MHA_CLI_OPTIONS_H

#include <getopt.h>

#include "mha_cli.h"

/* The shared options a subcommand takes (a bit set; -h/--help and
 * --version are always taken). */
#define CLI_COMMON_RUNTIME 1u   /* --backend NAME|auto, --threads N */
#define CLI_COMMON_VERBOSE 2u   /* -v, --verbose */
#define CLI_COMMON_PRECISION 4u /* --precision float32|bfloat16 */

/* The largest thread count any subcommand accepts (the runtime's pool). */
#define CLI_THREADS_MAX 1024

/* One row of a subcommand's table. id > 0 identifies the option to the
 * caller (ids >= CLI_OPT_COMMON_BASE are the parser's own). A row with
 * name NULL and help set is a heading printed in --help between options;
 * the table ends with a row of all zeros. */
typedef struct cli_opt {
    int id;
    const char *name;  /* long name without "--" (NULL: a heading row) */
    char short_name;   /* 0: no short form */
    const char *value; /* the value's placeholder in --help ("N", "FILE");
                          NULL: a flag that takes no value. One ending in
                          "..." (not ",...": a comma list is one value) takes
                          several arguments, so it may be given again; any
                          other option given twice with two values is a
                          usage error (the first would be dropped) */
    const char *help;  /* lines separated by '\n' */
} cli_opt;

#define CLI_OPT_COMMON_BASE 1000

/* A subcommand's command line. usage: the synopsis line ("Usage: mha SUB
 * ...") and the description, printed first by --help; epilog (may be
 * NULL): text printed after the options. */
typedef struct cli_spec {
    const char *usage;
    const cli_opt *opts;
    unsigned common;
    const char *epilog;
} cli_spec;

/* What cli_parse_next returns besides an option's id. */
#define CLI_PARSE_ARG (-1) /* an argument (not an option): in p->value */
#define CLI_PARSE_END (-2) /* the command line is done */
#define CLI_PARSE_EXIT                                                                             \
    (-3) /* stop with p->status: --help or --version                                               \
            printed (0), or a usage error printed (2) */

#define CLI_PARSE_MAX_OPTS 64

typedef struct cli_parser {
    const cli_spec *spec;
    cli_common *c;
    int argc;
    char **argv;
    int status;         /* with CLI_PARSE_EXIT */
    const char *value;  /* the option's value, or the argument */
    const char *name;   /* the option as "--name", for messages */
    int after_dashdash; /* the arguments now come after `--` */
    int n_rows;         /* options in use: the spec's, then the shared ones */
    const cli_opt *rows[CLI_PARSE_MAX_OPTS];
    const char *given[CLI_PARSE_MAX_OPTS];          /* each row's value so far (NULL: not given) */
    struct option longopts[CLI_PARSE_MAX_OPTS + 1]; /* getopt_long's view of rows */
    char shortopts[3 * CLI_PARSE_MAX_OPTS + 4];
} cli_parser;

/* Starts parsing argv[1..argc) (argv[0] is the subcommand's name, which
 * also names it in messages: c->cmd). c receives the shared options.
 * Returns 0, or -1 when the table is too large (a programming error,
 * reported as a failure). */
int cli_parse_begin(cli_parser *p, const cli_spec *spec, cli_common *c, int argc, char **argv);
/* The next option's id (its value in p->value, NULL for a flag) or a
 * CLI_PARSE_* code. Shared options are handled here and not returned. */
int cli_parse_next(cli_parser *p);

/* Prints the subcommand's --help from its table on stdout; returns CLI_OK. */
int cli_print_help(const cli_spec *spec);

/* --threads as a comma list of counts, each in [0, CLI_THREADS_MAX], 0 =
 * the online CPUs (resolved here), duplicates dropped; at most max counts.
 * Returns 1, or 0 after the one-line usage error (the same message as the
 * single --threads N of the other subcommands). */
int cli_parse_thread_list(const cli_common *c, const char *s, int *counts, int max, int *n);

#endif
