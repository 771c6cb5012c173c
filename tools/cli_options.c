/* cli_options.c -- the option parser of every `mha` subcommand: a table of
 * options turned into getopt_long's tables, the shared options handled in
 * one place, each usage error one line, and --help printed from the table.
 *
 * getopt_long runs with "-:" in front of the short options: arguments come
 * back in order (code 1), so a subcommand may give them meaning by position
 * (`run -o A B`: B is an output too); a missing value is reported as ':'
 * rather than '?'; and getopt prints nothing (opterr = 0) -- the messages
 * are ours. */
#define _GNU_SOURCE
#include "cli_options.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
    CLI_OPT_HELP = CLI_OPT_COMMON_BASE,
    CLI_OPT_VERSION,
    CLI_OPT_VERBOSE,
    CLI_OPT_BACKEND,
    CLI_OPT_THREADS,
    CLI_OPT_PRECISION,
};

/* The shared options, in the order --help lists them, and the CLI_COMMON_*
 * bit that turns each on (0: always on). */
static const struct {
    cli_opt opt;
    unsigned bit;
} common_opts[] = {
    {{CLI_OPT_BACKEND, "backend", 0, "NAME|auto",
      "backend plugin (default: $MHA_BACKEND, else auto)"},
     CLI_COMMON_RUNTIME},
    {{CLI_OPT_THREADS, "threads", 0, "N",
      "threads, the calling one included, in [0, 1024];\n0 (the default): every online CPU"},
     CLI_COMMON_RUNTIME},
    {{CLI_OPT_PRECISION, "precision", 0, "float32|bfloat16", "compute precision (default float32)"},
     CLI_COMMON_PRECISION},
    {{CLI_OPT_VERBOSE, "verbose", 'v', NULL, "print the library's log lines on stderr"},
     CLI_COMMON_VERBOSE},
    {{CLI_OPT_HELP, "help", 'h', NULL, "this text"}, 0},
    {{CLI_OPT_VERSION, "version", 0, NULL, "the version of mha and libmha"}, 0},
};
#define NUM_COMMON (sizeof common_opts / sizeof common_opts[0])

/* getopt_long's val of row i: above every char, so a short option's letter
 * and a row never collide. */
#define CLI_ROW_VAL(i) (256 + (i))

static int cli_add_row(cli_parser *p, const cli_opt *o) {
    if (p->n_rows >= CLI_PARSE_MAX_OPTS) return -1;
    int i = p->n_rows++;
    p->rows[i] = o;
    p->longopts[i] =
        (struct option){o->name, o->value ? required_argument : no_argument, NULL, CLI_ROW_VAL(i)};
    if (o->short_name) {
        size_t n = strlen(p->shortopts);
        p->shortopts[n++] = o->short_name;
        if (o->value) p->shortopts[n++] = ':';
        p->shortopts[n] = '\0';
    }
    return 0;
}

int cli_parse_begin(cli_parser *p, const cli_spec *spec, cli_common *c, int argc, char **argv) {
    memset(p, 0, sizeof *p);
    p->spec = spec;
    p->c = c;
    p->argc = argc;
    p->argv = argv;
    c->cmd = argv[0];
    strcpy(p->shortopts, "-:");
    for (const cli_opt *o = spec->opts; o && (o->id || o->name || o->help); o++)
        if (o->name && cli_add_row(p, o) != 0) return -1;
    for (size_t k = 0; k < NUM_COMMON; k++)
        if ((!common_opts[k].bit || (spec->common & common_opts[k].bit)) &&
            cli_add_row(p, &common_opts[k].opt) != 0)
            return -1;
    p->longopts[p->n_rows] = (struct option){0};
    optind = 0; /* glibc: start afresh (a second parse in one process) */
    opterr = 0;
    return 0;
}

static int cli_row_of_short(const cli_parser *p, int ch) {
    for (int i = 0; i < p->n_rows; i++)
        if (p->rows[i]->short_name == ch) return i;
    return -1;
}

/* A refused option as the user wrote it, up to any "=VALUE". */
static void cli_written(const char *arg, char *buf, size_t n) {
    size_t len = strcspn(arg, "=");
    if (len >= n) len = n - 1;
    memcpy(buf, arg, len);
    buf[len] = '\0';
}

static int cli_parse_error(cli_parser *p) {
    p->status = CLI_USAGE;
    return CLI_PARSE_EXIT;
}

/* '?' from getopt_long: an unknown option, an ambiguous prefix, or a value
 * given to a flag (--quiet=1). */
static int cli_refused(cli_parser *p) {
    const cli_common *c = p->c;
    if (optopt >= CLI_ROW_VAL(0)) {
        cli_usage_error(c, "option '--%s' takes no value", p->rows[optopt - CLI_ROW_VAL(0)]->name);
        return cli_parse_error(p);
    }
    if (optopt > 0) {
        cli_usage_error(c, "unknown option '-%c'", optopt);
        return cli_parse_error(p);
    }
    char written[128];
    cli_written(p->argv[optind - 1], written, sizeof written);
    /* a prefix of several long options: name them */
    char names[512] = "";
    size_t used = 0;
    int matches = 0;
    size_t len = strlen(written);
    for (int i = 0; len > 2 && written[0] == '-' && written[1] == '-' && i < p->n_rows; i++)
        if (strncmp(p->rows[i]->name, written + 2, len - 2) == 0) {
            int w = snprintf(names + used, sizeof names - used, "%s--%s", matches ? ", " : "",
                             p->rows[i]->name);
            if (w > 0 && (size_t)w < sizeof names - used) used += (size_t)w;
            matches++;
        }
    if (matches > 1)
        cli_usage_error(c, "option '%s' is ambiguous (%s)", written, names);
    else
        cli_usage_error(c, "unknown option '%s'", written);
    return cli_parse_error(p);
}

/* An option that takes several arguments ("OUTPUT..."), as opposed to one
 * value or a comma list of values ("NAME,..."). */
static int cli_row_repeats(const cli_opt *o) {
    size_t n = o->value ? strlen(o->value) : 0;
    return n > 3 && strcmp(o->value + n - 3, "...") == 0 && o->value[n - 4] != ',';
}

/* An option with one value given a second time with another value: which
 * one was meant is not ours to guess (the last silently won: `gen -o a.onnx
 * -o b.onnx` wrote b.onnx alone). The same value again is harmless. */
static int cli_given_twice(cli_parser *p, int row, const char *v) {
    const cli_opt *o = p->rows[row];
    if (!o->value || cli_row_repeats(o)) return 0;
    const char *was = p->given[row];
    p->given[row] = v;
    if (!was || strcmp(was, v) == 0) return 0;
    if (o->short_name)
        cli_usage_error(p->c, "-%c/--%s is given twice, as '%s' and '%s': give it once",
                        o->short_name, o->name, was, v);
    else
        cli_usage_error(p->c, "--%s is given twice, as '%s' and '%s': give it once", o->name, was,
                        v);
    return 1;
}

static int cli_parse_threads(const char *s, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!cli_number_text(s) || errno || end == s || *end || v < 0 || v > CLI_THREADS_MAX) return 0;
    *out = (int)v;
    return 1;
}

/* One wording for a refused --threads, list or not, in every subcommand. */
static int cli_threads_error(const cli_common *c, const char *s) {
    return cli_usage_error(c,
                           "--threads: '%s' is not a thread count in [0, %d] (0: every online CPU)",
                           s, CLI_THREADS_MAX);
}

int cli_parse_thread_list(const cli_common *c, const char *s, int *counts, int max, int *n) {
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1) online = 1;
    if (online > CLI_THREADS_MAX) online = CLI_THREADS_MAX;
    *n = 0;
    for (const char *p = s;;) {
        char part[16];
        size_t len = strcspn(p, ",");
        int v;
        if (len == 0 || len >= sizeof part) return cli_threads_error(c, s), 0;
        memcpy(part, p, len);
        part[len] = '\0';
        if (!cli_parse_threads(part, &v)) return cli_threads_error(c, s), 0;
        if (v == 0) v = (int)online;
        int dup = 0;
        for (int i = 0; i < *n; i++)
            dup |= counts[i] == v;
        if (!dup) {
            if (*n >= max) {
                cli_usage_error(c, "--threads: at most %d thread counts, not '%s'", max, s);
                return 0;
            }
            counts[(*n)++] = v;
        }
        p += len;
        if (*p == '\0') return 1;
        p++;
    }
}

/* A shared option: applied to p->c; returns 0 to go on, or CLI_PARSE_EXIT. */
static int cli_common_apply(cli_parser *p, int id, const char *v) {
    cli_common *c = p->c;
    switch (id) {
    case CLI_OPT_HELP:
        p->status = cli_print_help(p->spec);
        return CLI_PARSE_EXIT;
    case CLI_OPT_VERSION:
        printf("mha %s (library %s)\n", MHA_VERSION_STRING, mha_version_string());
        p->status = CLI_OK;
        return CLI_PARSE_EXIT;
    case CLI_OPT_VERBOSE:
        c->verbose = 1;
        return 0;
    case CLI_OPT_BACKEND:
        if (!*v) {
            cli_usage_error(c, "--backend wants a name or 'auto'");
            return cli_parse_error(p);
        }
        c->backend = v;
        return 0;
    case CLI_OPT_THREADS:
        if (!cli_parse_threads(v, &c->threads)) {
            cli_threads_error(c, v);
            return cli_parse_error(p);
        }
        return 0;
    case CLI_OPT_PRECISION:
        if (strcmp(v, "float32") == 0) {
            c->precision = MHA_PRECISION_FLOAT32;
        } else if (strcmp(v, "bfloat16") == 0) {
            c->precision = MHA_PRECISION_BFLOAT16;
        } else {
            cli_usage_error(c, "--precision wants float32 or bfloat16, not '%s'", v);
            return cli_parse_error(p);
        }
        return 0;
    }
    return 0;
}

int cli_parse_next(cli_parser *p) {
    for (;;) {
        if (p->after_dashdash) {
            if (optind >= p->argc) return CLI_PARSE_END;
            p->value = p->argv[optind++];
            p->name = NULL;
            return CLI_PARSE_ARG;
        }
        int ch = getopt_long(p->argc, p->argv, p->shortopts, p->longopts, NULL);
        if (ch == -1) {
            /* the end, or a "--": the rest are arguments */
            p->after_dashdash = 1;
            continue;
        }
        if (ch == 1) {
            p->value = optarg;
            p->name = NULL;
            return CLI_PARSE_ARG;
        }
        if (ch == '?') return cli_refused(p);
        int row = ch >= CLI_ROW_VAL(0) ? ch - CLI_ROW_VAL(0) : cli_row_of_short(p, ch);
        if (ch == ':') {
            row = optopt >= CLI_ROW_VAL(0) ? optopt - CLI_ROW_VAL(0) : cli_row_of_short(p, optopt);
            if (row < 0) return cli_parse_error(p); /* not reached: getopt knows only ours */
            /* named as written: -d or --d-model */
            if (optopt < CLI_ROW_VAL(0))
                cli_usage_error(p->c, "option '-%c' needs a value", optopt);
            else
                cli_usage_error(p->c, "option '--%s' needs a value", p->rows[row]->name);
            return cli_parse_error(p);
        }
        if (row < 0) {
            cli_usage_error(p->c, "unknown option '-%c'", ch);
            return cli_parse_error(p);
        }
        const cli_opt *o = p->rows[row];
        p->value = o->value ? optarg : NULL;
        p->name = o->name;
        if (cli_given_twice(p, row, p->value)) return cli_parse_error(p);
        if (o->id < CLI_OPT_COMMON_BASE) return o->id;
        int r = cli_common_apply(p, o->id, p->value);
        if (r) return r;
    }
}

/* ---- --help ---------------------------------------------------------------- */

/* An option's help starts at this column and is wrapped before CLI_HELP_WIDTH
 * (the table's texts are written without caring where their lines break). */
#define CLI_HELP_COLUMN 24
#define CLI_HELP_WIDTH 80

static void cli_print_row(const cli_opt *o) {
    char left[128];
    if (o->short_name)
        snprintf(left, sizeof left, "  -%c, --%s%s%s", o->short_name, o->name, o->value ? " " : "",
                 o->value ? o->value : "");
    else
        snprintf(left, sizeof left, "  --%s%s%s", o->name, o->value ? " " : "",
                 o->value ? o->value : "");
    size_t col = strlen(left);
    fputs(left, stdout);
    if (col + 2 > CLI_HELP_COLUMN) {
        fputc('\n', stdout);
        col = 0;
    }
    int line_has_words = 0;
    for (const char *h = o->help ? o->help : ""; *h;) {
        h += strspn(h, " \n");
        size_t n = strcspn(h, " \n");
        if (n == 0) break;
        if (line_has_words && col + 1 + n >= CLI_HELP_WIDTH) {
            fputc('\n', stdout);
            col = 0;
            line_has_words = 0;
        }
        if (!line_has_words) {
            printf("%*s", (int)(CLI_HELP_COLUMN - col), "");
            col = CLI_HELP_COLUMN;
        } else {
            fputc(' ', stdout);
            col++;
        }
        printf("%.*s", (int)n, h);
        col += n;
        line_has_words = 1;
        h += n;
    }
    fputc('\n', stdout);
}

int cli_print_help(const cli_spec *spec) {
    fputs(spec->usage, stdout);
    int any = 0;
    for (const cli_opt *o = spec->opts; o && (o->id || o->name || o->help); o++) {
        if (!any) fputs("\nOptions:\n", stdout);
        any = 1;
        if (o->name)
            cli_print_row(o);
        else
            printf("\n%s\n", o->help);
    }
    fputs("\nCommon options:\n", stdout);
    for (size_t k = 0; k < NUM_COMMON; k++)
        if (!common_opts[k].bit || (spec->common & common_opts[k].bit))
            cli_print_row(&common_opts[k].opt);
    if (spec->epilog) printf("\n%s", spec->epilog);
    fputs("\nOptions with a value take it as --name VALUE or --name=VALUE (-xVALUE or\n"
          "-x VALUE for a short one); a long name may be shortened to any prefix that\n"
          "names one option; one given twice with two values is refused; -- ends the\n"
          "options.\n"
          "Exit status: 0 success, 1 failure (one line on stderr), 2 usage error,\n"
          "128 + N stopped by signal N (130: SIGINT).\n",
          stdout);
    return CLI_OK;
}
