/* mha_cli.c -- the helpers every `mha` subcommand shares: the common
 * options, usage and failure messages (one line each), runtime creation,
 * shapes and clocks. */
#define _GNU_SOURCE
#include "mha_cli.h"

#include "common.h" /* mha_text_escape: the library's escaping, one copy */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

int cli_usage_error(const cli_common *c, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char safe[1024];
    fprintf(stderr, "mha %s: %s (see 'mha %s --help')\n", c->cmd,
            cli_escape(msg, safe, sizeof safe), c->cmd);
    return CLI_USAGE;
}

int cli_fail(const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* one line, and no byte of a model's names a terminal would act on */
    char safe[2048];
    fprintf(stderr, "mha: %s\n", cli_escape(msg, safe, sizeof safe));
    return CLI_FAIL;
}

const char *cli_escape(const char *s, char *buf, size_t n) {
    return mha_text_escape(buf, n, s);
}

int cli_fail_err(const char *file, const mha_error *err) {
    const char *msg = err->message[0] ? err->message : mha_status_text(err->status);
    if (!file || strstr(msg, file)) return cli_fail("%s", msg);
    return cli_fail("%s: %s", file, msg);
}

int cli_print_usage(const char *usage) {
    fputs(usage, stdout);
    fputs("\nCommon options:\n"
          "  --backend NAME|auto  backend plugin (default: $MHA_BACKEND, else auto)\n"
          "  --threads N          threads, the calling one included (default: all CPUs)\n"
          "  -v, --verbose        print the library's log lines on stderr\n"
          "  -h, --help           this text\n"
          "\nExit status: 0 success, 1 failure (one line on stderr), 2 usage error.\n",
          stdout);
    return CLI_OK;
}

int cli_option_value(const cli_common *c, int argc, char **argv, int *i, const char *name,
                     const char *short_name, const char **value) {
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) == 0 && a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (strcmp(a, name) != 0 && !(short_name && strcmp(a, short_name) == 0)) return 0;
    if (*i + 1 >= argc) {
        cli_usage_error(c, "%s needs a value", a);
        return -1;
    }
    *value = argv[++*i];
    return 1;
}

uint64_t cli_rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double cli_rng_uniform(uint64_t *state) {
    return (double)(cli_rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

int cli_parse_int(const cli_common *c, const char *opt, const char *s, long long lo, long long hi,
                  long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) {
        cli_usage_error(c, "%s wants an integer in [%lld, %lld], not '%s'", opt, lo, hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

int cli_common_option(cli_common *c, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    const char *v;
    int r;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
        c->help = 1;
        return 1;
    }
    if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
        c->verbose = 1;
        return 1;
    }
    if ((r = cli_option_value(c, argc, argv, i, "--backend", NULL, &v)) != 0) {
        if (r < 0) return -1;
        if (!*v) {
            cli_usage_error(c, "--backend wants a name or 'auto'");
            return -1;
        }
        c->backend = v;
        return 1;
    }
    if ((r = cli_option_value(c, argc, argv, i, "--threads", NULL, &v)) != 0) {
        long long n;
        if (r < 0 || !cli_parse_int(c, "--threads", v, 0, 4096, &n)) return -1;
        c->threads = (int)n;
        return 1;
    }
    return 0;
}

static void cli_log(void *user, mha_log_level level, const char *message) {
    (void)user;
    static const char *names[] = {"error", "warning", "info", "debug"};
    char safe[2048];
    fprintf(stderr, "mha: %s: %s\n", names[(int)level & 3], cli_escape(message, safe, sizeof safe));
}

int cli_runtime_create(const cli_common *c, mha_runtime **rt) {
    mha_runtime_options o;
    mha_runtime_options_init(&o);
    o.num_threads = c->threads;
    o.backend = c->backend; /* "auto" given explicitly overrides $MHA_BACKEND */
    if (c->verbose) {
        o.log = cli_log;
        o.log_level = MHA_LOG_INFO;
    }
    mha_error err;
    mha_error_clear(&err);
    if (mha_runtime_create(&o, rt, &err) != MHA_OK) return cli_fail_err(NULL, &err);
    return CLI_OK;
}

const char *cli_shape_str(int rank, const int64_t *dims, char *buf, size_t n) {
    size_t used = 0;
    buf[0] = '\0';
    if (rank == 0) {
        snprintf(buf, n, "scalar");
        return buf;
    }
    for (int i = 0; i < rank && used < n; i++) {
        int w = dims[i] < 0
                    ? snprintf(buf + used, n - used, "%s?", i ? "x" : "")
                    : snprintf(buf + used, n - used, "%s%lld", i ? "x" : "", (long long)dims[i]);
        if (w < 0) break;
        used += (size_t)w;
    }
    return buf;
}

size_t cli_tensor_bytes(const mha_tensor *t, int *ok) {
    int64_t n = mha_tensor_numel(t);
    size_t es = mha_dtype_size(t->dtype), bytes;
    *ok = n >= 0 && es > 0 && (uint64_t)n <= SIZE_MAX &&
          !__builtin_mul_overflow((size_t)n, es, &bytes);
    return *ok ? bytes : 0;
}

int cli_format(char *buf, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    return w >= 0 && (size_t)w < n;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- files written whole or not at all ---------------------------------- */

static int cli_fail_msg(char *msg, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int cli_fail_msg(char *msg, size_t size, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, size, fmt, ap);
    va_end(ap);
    return -1;
}

int cli_out_open(cli_out_file *o, const char *path, char *msg, size_t msg_size) {
    mode_t mask = umask(0);
    umask(mask);
    o->path = path;
    o->f = NULL;
    if (snprintf(o->tmp, sizeof o->tmp, "%s.tmp.XXXXXX", path) >= (int)sizeof o->tmp)
        return cli_fail_msg(msg, msg_size, "%s: path too long", path);
    int fd = mkstemp(o->tmp);
    if (fd < 0) return cli_fail_msg(msg, msg_size, "cannot write %s: %s", path, strerror(errno));
    (void)fchmod(fd, 0666 & ~mask); /* mkstemp makes 0600; give the usual mode */
    o->f = fdopen(fd, "w");
    if (!o->f) {
        close(fd);
        unlink(o->tmp);
        return cli_fail_msg(msg, msg_size, "cannot write %s: %s", path, strerror(errno));
    }
    return 0;
}

int cli_out_commit(cli_out_file *o, char *msg, size_t msg_size) {
    int bad = fflush(o->f) != 0 || ferror(o->f) || fsync(fileno(o->f)) != 0;
    int err = errno;
    if (fclose(o->f) != 0 && !bad) {
        bad = 1;
        err = errno;
    }
    if (!bad && rename(o->tmp, o->path) != 0) {
        bad = 1;
        err = errno;
    }
    if (bad) {
        unlink(o->tmp);
        return cli_fail_msg(msg, msg_size, "cannot write %s: %s", o->path, strerror(err));
    }
    return 0;
}
