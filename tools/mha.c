/* mha.c -- the `mha` command: finds the subcommand and hands it the rest of
 * the command line (argv[0] becomes the subcommand's name). Adding a
 * subcommand is its own tools/mha_<name>.c and one line in `commands`. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "mha_bench.h"
#include "mha_cli.h"
#include "mha_merge.h"

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*main)(int argc, char **argv);
} cli_command;

static const cli_command commands[] = {
    {"run", "run a model over tensor files (.npy / .pb)", cli_cmd_run},
    {"check", "run ONNX test-case folders: 'N passed, M failed'", cli_cmd_check},
    {"info", "describe what was recognised in a model", cli_cmd_info},
    {"bench", "time backends and thread counts on a model", mha_cmd_bench},
    {"merge", "merge the outputs of split runs", mha_cmd_merge},
    {"backends", "list the backend plugins and which auto picks", cli_cmd_backends},
    {"peak", "measure this machine's FMA peak now (per ISA, per thread count)", mha_cmd_peak},
    {"gen", "write a random-weight layer or whole model (and data)", cli_cmd_gen},
#ifdef MHA_HAVE_SERVE
    {"serve", "serve a model over HTTP with dynamic batching", mha_cmd_serve},
#endif
};
#define NUM_COMMANDS (sizeof commands / sizeof commands[0])

static void print_known(FILE *f) {
    for (size_t i = 0; i < NUM_COMMANDS; i++)
        fprintf(f, "%s%s", i ? ", " : "", commands[i].name);
}

static int print_help(void) {
    printf("mha %s -- multi-head attention inference engine\n\n"
           "Usage: mha COMMAND [ARGS...]    (mha COMMAND --help for each)\n\nCommands:\n",
           mha_version_string());
    for (size_t i = 0; i < NUM_COMMANDS; i++)
        printf("  %-10s %s\n", commands[i].name, commands[i].summary);
    printf("\nEvery command takes --help and --version; the commands that run a model\n"
           "take --backend NAME|auto and --threads N (0: every online CPU).\n"
           "Environment: MHA_BACKEND (default backend), MHA_PLUGIN_PATH (extra plugin\n"
           "folders), MHA_CPU_MASK (hide CPU features from plugin probes).\n"
           "Exit status: 0 success, 1 failure (one line on stderr), 2 usage error,\n"
           "128 + N stopped by signal N (130: SIGINT).\n");
    return CLI_OK;
}

static const cli_command *find_command(const char *name) {
    for (size_t i = 0; i < NUM_COMMANDS; i++)
        if (strcmp(name, commands[i].name) == 0) return &commands[i];
    return NULL;
}

static int unknown_command(const char *name) {
    fprintf(stderr, "mha: unknown command '%s'; known commands: ", name);
    print_known(stderr);
    fprintf(stderr, "\n");
    return CLI_USAGE;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "mha: no command given; known commands: ");
        print_known(stderr);
        fprintf(stderr, " (see 'mha --help')\n");
        return CLI_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) return print_help();
    if (strcmp(name, "help") == 0) { /* mha help [COMMAND] */
        if (argc < 3) return print_help();
        const cli_command *cmd = find_command(argv[2]);
        if (!cmd) return unknown_command(argv[2]);
        static char help_option[] = "--help";
        char *help_argv[] = {argv[2], help_option, NULL};
        return cmd->main(2, help_argv);
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("mha %s (library %s)\n", MHA_VERSION_STRING, mha_version_string());
        return CLI_OK;
    }
    const cli_command *cmd = find_command(name);
    if (!cmd && name[0] == '-') {
        fprintf(stderr, "mha: unknown option '%s' (see 'mha --help')\n", name);
        return CLI_USAGE;
    }
    if (!cmd) return unknown_command(name);
    /* A write past the file size limit (ulimit -f) fails with EFBIG and is
     * reported as any failed write, the temporaries removed; by default
     * SIGXFSZ ended the process in silence and left them behind. */
    signal(SIGXFSZ, SIG_IGN);
    int rc = cmd->main(argc - 1, argv + 1);
    if (rc > CLI_SIGNALED(0) && rc < CLI_SIGNALED(65)) {
        /* stopped by a signal after cleaning up: end by that signal, so a
         * shell sees 128 + N and stops a loop around the command */
        fflush(NULL);
        signal(rc - CLI_SIGNALED(0), SIG_DFL);
        raise(rc - CLI_SIGNALED(0));
    }
    return rc;
}
