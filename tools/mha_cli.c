/* mha_cli.c -- the helpers every `mha` subcommand shares: usage and
 * failure messages (one line each), runtime creation, shapes and clocks. */
#define _GNU_SOURCE
#include "mha_cli.h"

#include "mha/tensor_file.h"

#include <ctype.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
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

/* The longest error line printed. A longer one keeps its first quarter
 * and its end around " ... ": a file name of thousands of bytes (PATH_MAX
 * is 4096) must not push out the reason that follows it. */
#define CLI_FAIL_LINE_MAX 2048

int cli_fail(const char *fmt, ...) {
    char msg[4 * 4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* one line, and no byte of a model's names a terminal would act on */
    char safe[4 * 4096];
    cli_escape(msg, safe, sizeof safe);
    size_t n = strlen(safe);
    if (n >= CLI_FAIL_LINE_MAX) {
        size_t head = CLI_FAIL_LINE_MAX / 4, tail = n - (CLI_FAIL_LINE_MAX - 1 - head - 5);
        while (head > 0 && ((unsigned char)safe[head] & 0xC0) == 0x80) /* whole characters */
            head--;
        while (tail < n && ((unsigned char)safe[tail] & 0xC0) == 0x80)
            tail++;
        fprintf(stderr, "mha: %.*s ... %s\n", (int)head, safe, safe + tail);
    } else {
        fprintf(stderr, "mha: %s\n", safe);
    }
    return CLI_FAIL;
}

const char *cli_escape(const char *s, char *buf, size_t n) {
    return mha_text_escape(buf, n, s);
}

int cli_fail_err(const char *file, const mha_error *err) {
    const char *msg = err->message[0] ? err->message : mha_status_text(err->status);
    /* a long path in the library's message keeps its end (mha_failv) */
    const size_t n = file ? strlen(file) : 0;
    if (!file || strstr(msg, file) || (n > 64 && strstr(msg, file + n - 64)))
        return cli_fail("%s", msg);
    return cli_fail("%s: %s", file, msg);
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

int cli_number_text(const char *s) {
    if (!s) return 0;
    const char *p = s + (*s == '+' || *s == '-');
    if (!(isdigit((unsigned char)p[0]) || (p[0] == '.' && isdigit((unsigned char)p[1])))) return 0;
    return strpbrk(p, "xX") == NULL;
}

int cli_parse_int(const cli_common *c, const char *opt, const char *s, long long lo, long long hi,
                  long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (!cli_number_text(s) || errno || end == s || *end != '\0' || v < lo || v > hi) {
        cli_usage_error(c, "%s wants an integer in [%lld, %lld], not '%s'", opt, lo, hi, s);
        return 0;
    }
    *out = v;
    return 1;
}

mha_run_options cli_run_options(const cli_common *c) {
    mha_run_options ro;
    mha_run_options_init(&ro);
    ro.precision = c->precision;
    return ro;
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
    mha_status st = mha_runtime_create(&o, rt, &err);
    if (st == MHA_OK) return CLI_OK;
    const char *named = c->backend ? c->backend : getenv("MHA_BACKEND");
    if (st != MHA_ERR_BACKEND || !named || !*named || strcmp(named, "auto") == 0)
        return cli_fail_err(NULL, &err);
    /* A named backend opens no other plugin file, so the library's list
     * holds what it opened -- the built-in scalar alone, though avx2 may
     * be usable here. Say which option or variable named it, and what a
     * search of every plugin finds usable. */
    char *list = strstr(err.message, "; found: ");
    if (!list) list = strstr(err.message, "; usable: ");
    if (list) *list = '\0';
    mha_runtime_options all;
    mha_runtime_options_init(&all);
    all.backend = "auto";
    all.num_threads = 1;
    mha_runtime *probe = NULL;
    mha_error probe_err;
    mha_error_clear(&probe_err);
    char usable[512] = "none";
    if (mha_runtime_create(&all, &probe, &probe_err) == MHA_OK) {
        cli_usable_backends(probe, usable, sizeof usable);
        mha_runtime_destroy(probe);
    }
    return cli_fail("%s%s: %s; usable here: %s", c->backend ? "--backend " : "MHA_BACKEND=", named,
                    err.message, usable);
}

void cli_usable_backends(mha_runtime *rt, char *buf, size_t n) {
    size_t used = 0, count = mha_runtime_plugin_count(rt);
    buf[0] = '\0';
    for (size_t i = 0; i < count; i++) {
        mha_plugin_info pi;
        if (mha_runtime_plugin(rt, i, &pi) != MHA_OK || !pi.usable || !pi.name) continue;
        if (strstr(buf, pi.name)) continue; /* the built-in scalar beside its file */
        int k = snprintf(buf + used, n - used, "%s%s", used ? ", " : "", pi.name);
        if (k < 0 || (size_t)k >= n - used) {
            buf[used] = '\0';
            break;
        }
        used += (size_t)k;
    }
    if (!used) snprintf(buf, n, "none");
}

int cli_check_input_shape(const char *file, const mha_io_info *info, int rank, const int64_t *dims,
                          int check_last) {
    char have[160], want[160];
    cli_shape_str(rank, dims, have, sizeof have);
    cli_shape_str(info->rank, info->shape, want, sizeof want);
    if (info->rank >= 0 && rank != info->rank)
        return cli_fail("%s: input '%s': %d axes, the model takes %d (shape %s, got %s)", file,
                        info->name, rank, info->rank, want, have);
    const int last = info->rank - 1;
    if (check_last && last >= 0 && info->shape[last] >= 0 && dims[last] != info->shape[last])
        return cli_fail("%s: input '%s': axis %d is %lld, the model takes %lld only (shape %s, "
                        "got %s)",
                        file, info->name, last, (long long)dims[last], (long long)info->shape[last],
                        want, have);
    return CLI_OK;
}

size_t cli_message_input(const char *message, const mha_io_info *info, size_t n) {
    size_t best = n;
    const char *first = NULL;
    for (size_t i = 0; i < n; i++) {
        char quoted[300];
        snprintf(quoted, sizeof quoted, "'%s'", info[i].name ? info[i].name : "");
        const char *at = strstr(message, quoted);
        if (at && (!first || at < first)) {
            first = at;
            best = i;
        }
    }
    return best;
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

/* (far below the cost of scoring the rows it vouches for) */
uint64_t cli_hash_bytes(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    const uint64_t k = 0x9e3779b97f4a7c15ull;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * k;
        h ^= h >> 29;
    }
    uint64_t tail = (uint64_t)n << 56; /* the length keeps "ab" and "ab\0" apart */
    for (size_t i = 0; i < n; i++)
        tail |= (uint64_t)p[i] << (8 * i);
    h = (h ^ tail) * k;
    return h ^ (h >> 29);
}

uint64_t cli_hash_rows(uint64_t h, const void *data, int64_t m, int64_t outer, size_t row_bytes) {
    const size_t run = outer > 0 ? row_bytes / (size_t)outer : 0;
    for (int64_t b = 0; b < m; b++)
        for (int64_t o = 0; o < outer; o++)
            h = cli_hash_bytes(h, (const char *)data + (size_t)(o * m + b) * run, run);
    return h;
}

int cli_narrows_to_int32(mha_dtype from, mha_dtype to) {
    return to == MHA_DTYPE_INT32 && (from == MHA_DTYPE_INT64 || from == MHA_DTYPE_UINT32);
}

size_t cli_narrow_ids(const void *src, mha_dtype from, int32_t *dst, size_t n, int64_t *bad) {
    const unsigned char *p = src;
    const size_t es = mha_dtype_size(from);
    for (size_t e = 0; e < n; e++) {
        int64_t v;
        if (from == MHA_DTYPE_UINT32) {
            uint32_t u;
            memcpy(&u, p + e * es, sizeof u);
            v = u;
        } else {
            memcpy(&v, p + e * es, sizeof v);
        }
        if (v < INT32_MIN || v > INT32_MAX) {
            *bad = v;
            return e;
        }
        const int32_t w = (int32_t)v; /* element e is read before dst[e] is written */
        memcpy(dst + e, &w, sizeof w);
    }
    return n;
}

int cli_ids_as_int32(const mha_tensor *t, const char *name, mha_tensor *out, int32_t **buf,
                     char *msg, size_t cap) {
    *out = *t;
    *buf = NULL;
    if (t->dtype == MHA_DTYPE_INT32) return 0;
    const int64_t n = mha_tensor_numel(t);
    const int widen = mha_dtype_can_convert(t->dtype, MHA_DTYPE_INT32);
    if ((!widen && !cli_narrows_to_int32(t->dtype, MHA_DTYPE_INT32)) || n < 0) {
        snprintf(msg, cap, "holds %s data but int32 is needed", mha_dtype_name(t->dtype));
        return -1;
    }
    if (!(*buf = malloc(n ? (size_t)n * sizeof(int32_t) : 1))) {
        snprintf(msg, cap, "out of memory");
        return -1;
    }
    if (widen) mha_dtype_convert(t->data, t->dtype, *buf, MHA_DTYPE_INT32, (size_t)n);
    int64_t bad = 0;
    const size_t at = widen ? (size_t)n : cli_narrow_ids(t->data, t->dtype, *buf, (size_t)n, &bad);
    if (at != (size_t)n) {
        snprintf(msg, cap,
                 "element %zu holds %lld, past the int32 that input '%s' takes (its int64 "
                 "values are narrowed when they fit)",
                 at, (long long)bad, name);
        return -1;
    }
    out->dtype = MHA_DTYPE_INT32;
    out->data = *buf;
    return 0;
}

int cli_warn_declared_shape(const char *model_path, const mha_model *m, size_t i, int rank,
                            const int64_t *dims, const char *done) {
    mha_io_info said;
    if (mha_model_output_declared(m, i, &said) != MHA_OK || said.rank < 0) return 0;
    int differ = said.rank != rank;
    for (int d = 0; d < rank && !differ; d++)
        differ = said.shape[d] >= 0 && dims[d] >= 0 && said.shape[d] != dims[d];
    if (!differ) return 0;
    char want[160], have[160], msg[1024], safe[2048];
    cli_shape_str(said.rank, said.shape, want, sizeof want);
    cli_shape_str(rank, dims, have, sizeof have);
    snprintf(msg, sizeof msg,
             "%s: graph output '%s' is declared %s, but the graph computes %s: %s as computed",
             model_path, said.name, want, have, done);
    fprintf(stderr, "mha: warning: %s\n", cli_escape(msg, safe, sizeof safe));
    return 1;
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
    memset(o, 0, sizeof *o);
    o->path = path;
    mha_error err;
    mha_error_clear(&err);
    if (mha_output_check(path, &err) != MHA_OK)
        return cli_fail_msg(msg, msg_size, "%s", err.message);
    o->f = open_memstream(&o->buf, &o->len);
    if (!o->f) return cli_fail_msg(msg, msg_size, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

void cli_out_discard(cli_out_file *o) {
    if (o->f) fclose(o->f);
    free(o->buf);
    memset(o, 0, sizeof *o);
}

int cli_out_commit(cli_out_file *o, char *msg, size_t msg_size) {
    const char *path = o->path;
    int bad = fflush(o->f) != 0 || ferror(o->f);
    bad |= fclose(o->f) != 0;
    o->f = NULL;
    if (bad) {
        cli_out_discard(o);
        return cli_fail_msg(msg, msg_size, "cannot write %s: out of memory", path);
    }
    mha_error err;
    mha_error_clear(&err);
    int rc = 0;
    if (mha_output_save(path, o->buf, o->len, &err) != MHA_OK)
        rc = cli_fail_msg(msg, msg_size, "%s", err.message);
    cli_out_discard(o);
    return rc;
}

/* ---- outputs claimed before the work ------------------------------------ */

int cli_outputs_claim(const cli_common *c, const char *const *paths, size_t n, int lock,
                      cli_outputs *out) {
    memset(out, 0, sizeof *out);
    mha_error err;
    mha_error_clear(&err);
    out->locks = calloc(n ? n : 1, sizeof *out->locks);
    out->n = n;
    int rc = out->locks ? CLI_OK : cli_fail("out of memory");
    for (size_t i = 0; i < n && rc == CLI_OK; i++)
        if (paths[i] && mha_output_check(paths[i], &err) != MHA_OK)
            rc = cli_fail_err(paths[i], &err);
    for (size_t i = 0; i < n && rc == CLI_OK; i++)
        for (size_t j = 0; j < i && rc == CLI_OK && paths[i]; j++)
            if (paths[j] && mha_output_same_file(paths[j], paths[i]))
                rc = cli_usage_error(c,
                                     "'%s' and '%s' are the same file: give each output its "
                                     "own file",
                                     paths[j], paths[i]);
    for (size_t i = 0; i < n && rc == CLI_OK; i++)
        if (lock && paths[i] && mha_output_lock_acquire(paths[i], &out->locks[i], &err) != MHA_OK)
            rc = cli_fail_err(paths[i], &err);
    if (rc != CLI_OK) cli_outputs_release(out);
    return rc;
}

void cli_outputs_release(cli_outputs *o) {
    for (size_t i = 0; o->locks && i < o->n; i++)
        mha_output_lock_release(o->locks[i]);
    free(o->locks);
    memset(o, 0, sizeof *o);
}

int cli_report_path_check(const cli_common *c, const char *option, const char *what,
                          const char *path) {
    static const char *const data[][2] = {
        {".onnx", "a model"}, {".npy", "data"}, {".npz", "data"}, {".pb", "a tensor file"}};
    const char *dot = path ? strrchr(path, '.') : NULL;
    if (!dot || strchr(dot, '/')) return CLI_OK;
    for (size_t k = 0; k < sizeof data / sizeof data[0]; k++)
        if (strcasecmp(dot, data[k][0]) == 0)
            return cli_usage_error(c, "%s writes %s, not '%s' (%s is %s)", option, what, path, dot,
                                   data[k][1]);
    return CLI_OK;
}

int cli_outputs_spare_inputs(const cli_common *c, const char *const *outs, size_t n_out,
                             const char *const *ins, size_t n_in, const char *what) {
    struct stat o, i;
    for (size_t k = 0; k < n_out; k++) {
        if (!outs[k] || stat(outs[k], &o) != 0 || !S_ISREG(o.st_mode)) continue;
        for (size_t j = 0; j < n_in; j++)
            if (ins[j] && stat(ins[j], &i) == 0 && i.st_dev == o.st_dev && i.st_ino == o.st_ino)
                return cli_usage_error(c, "the output '%s' is also the %s '%s'", outs[k], what,
                                       ins[j]);
    }
    return CLI_OK;
}

/* ---- SIGBUS from a mapped input cut short ------------------------------ */

typedef struct cli_bus_map {
    const char *base;
    size_t len;
    char *line; /* "mha: PATH: ...\n", escaped and formed before any fault */
} cli_bus_map;
static cli_bus_map cli_bus_maps[CLI_BUS_MAX];
static char *cli_bus_files[CLI_BUS_MAX];
static char *cli_bus_keep;
static volatile sig_atomic_t cli_bus_n_maps, cli_bus_n_files, cli_bus_on;

/* Only async-signal-safe calls: write, access, unlink, _exit. */
static void cli_on_bus(int sig, siginfo_t *si, void *ctx) {
    (void)ctx;
    const char *a = si ? (const char *)si->si_addr : NULL;
    for (int i = 0; a && i < cli_bus_n_maps; i++) {
        const cli_bus_map *m = &cli_bus_maps[i];
        if (a < m->base || a >= m->base + m->len) continue;
        /* one line however many threads fault: the first ends the process */
        static int fired;
        if (__atomic_exchange_n(&fired, 1, __ATOMIC_SEQ_CST))
            for (;;)
                pause();
        ssize_t w = write(STDERR_FILENO, m->line, strlen(m->line));
        (void)w;
        if (!cli_bus_keep || access(cli_bus_keep, F_OK) != 0)
            for (int k = 0; k < cli_bus_n_files; k++)
                unlink(cli_bus_files[k]);
        _exit(CLI_FAIL);
    }
    /* not a watched file's: the default action, when the access is retried */
    signal(sig, SIG_DFL);
}

static void cli_bus_install(void) {
    if (cli_bus_on) return;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = cli_on_bus;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGBUS, &sa, NULL) == 0) cli_bus_on = 1;
}

void cli_bus_watch(const void *base, size_t len, const char *path) {
    if (!base || len == 0 || cli_bus_n_maps >= CLI_BUS_MAX) return;
    char safe[4096], line[4352];
    snprintf(line, sizeof line,
             "mha: %s: the file became shorter while being read (changed during the run)\n",
             cli_escape(path, safe, sizeof safe));
    char *copy = strdup(line);
    if (!copy) return;
    cli_bus_maps[cli_bus_n_maps].base = base;
    cli_bus_maps[cli_bus_n_maps].len = len;
    cli_bus_maps[cli_bus_n_maps].line = copy;
    cli_bus_n_maps++; /* visible to the handler once the entry is whole */
    cli_bus_install();
}

void cli_bus_remove(const char *path, const char *keep_if) {
    if (!path || cli_bus_n_files >= CLI_BUS_MAX) return;
    char *copy = strdup(path);
    if (!copy) return;
    if (keep_if && !cli_bus_keep) cli_bus_keep = strdup(keep_if);
    cli_bus_files[cli_bus_n_files] = copy;
    cli_bus_n_files++;
}

void cli_bus_clear(void) {
    const int maps = cli_bus_n_maps, files = cli_bus_n_files;
    cli_bus_n_maps = 0;
    cli_bus_n_files = 0;
    for (int i = 0; i < maps; i++)
        free(cli_bus_maps[i].line);
    for (int i = 0; i < files; i++)
        free(cli_bus_files[i]);
    free(cli_bus_keep);
    cli_bus_keep = NULL;
}

/* ---- signals ------------------------------------------------------------- */

static volatile sig_atomic_t cli_caught_signal;

static void cli_on_signal(int sig) {
    cli_caught_signal = sig;
}

void cli_signals_catch(cli_signals *saved) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = cli_on_signal;
    sigemptyset(&sa.sa_mask);
    cli_caught_signal = 0;
    sigaction(SIGINT, &sa, &saved->old_int);
    sigaction(SIGTERM, &sa, &saved->old_term);
    sigaction(SIGHUP, &sa, &saved->old_hup);
}

int cli_signal_caught(void) {
    return (int)cli_caught_signal;
}

void cli_signals_restore(cli_signals *saved) {
    sigaction(SIGINT, &saved->old_int, NULL);
    sigaction(SIGTERM, &saved->old_term, NULL);
    sigaction(SIGHUP, &saved->old_hup, NULL);
}

const char *cli_signal_name(int sig) {
    return sig == SIGINT ? "SIGINT" : sig == SIGHUP ? "SIGHUP" : "SIGTERM";
}

int cli_signal_stop(const char *path) {
    int sig = cli_signal_caught();
    if (!sig) return 0;
    cli_fail("%s: interrupted by %s; nothing written", path, cli_signal_name(sig));
    return CLI_SIGNALED(sig);
}

int cli_signals_end(cli_signals *saved, int rc) {
    cli_signals_restore(saved);
    int sig = cli_signal_caught();
    return sig ? CLI_SIGNALED(sig) : rc;
}

/* ---- JSON ---- */

/* Bytes of the well-formed UTF-8 sequence at p (1 to 4), 0 when the bytes
 * there are not one (a stray continuation byte, a truncated or overlong
 * sequence, a surrogate, past U+10FFFF). Names (file names, model names)
 * can hold any bytes; JSON and XML readers refuse those. */
size_t cli_utf8_sequence(const unsigned char *p) {
    if (p[0] < 0x80) return 1;
    size_t n = p[0] >= 0xc2 && p[0] <= 0xdf   ? 2
               : p[0] >= 0xe0 && p[0] <= 0xef ? 3
               : p[0] >= 0xf0 && p[0] <= 0xf4 ? 4
                                              : 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    if (n == 3 && ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0))) return 0;
    if (n == 4 && ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))) return 0;
    return n;
}

void cli_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        size_t n = cli_utf8_sequence(p);
        if (n == 0) {
            fputs("\\ufffd", f); /* a byte that is no UTF-8: the replacement character */
        } else if (n > 1) {
            fwrite(p, 1, n, f);
            p += n - 1;
        } else if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}
