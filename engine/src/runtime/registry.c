/* registry.c -- the plugin registry: finds backend plugin files, checks
 * their ABI, probes them against the CPU features, and picks one.
 *
 * Search order (first found wins for a name; never the current directory):
 *   1. registry_options.plugin_path: a plugin file or a folder (a relative
 *      path is the caller's, taken from the current directory)
 *   2. MHA_PLUGIN_PATH (secure_getenv: ignored in setuid/setgid programs),
 *      ':'-separated absolute files or folders (empty and relative items
 *      skipped: unlike PATH, an empty item does NOT mean ".")
 *   3. beside libmha, found with dladdr on a libmha function: <dir>/mha/plugins
 *      and <dir>/../lib/mha/plugins (the second serves the `mha` command and
 *      the tests, which link libmha statically into build/bin/)
 *   4. the installed folder, MHA_PLUGIN_INSTALL_DIR
 * In a folder, files named mha-plugin-*.so load in sorted (byte) order. A
 * folder or file reached twice (same realpath) is scanned once.
 *
 * Loading one file, each step's failure recorded in the entry's reason and
 * logged, never fatal for the others:
 *   the file and its folders owned by root or this user and writable by
 *   no one else (reg_path_trusted) -> dlopen(RTLD_NOW|RTLD_LOCAL) ->
 *   dlsym("mha_plugin_get") -> call it with MHA_PLUGIN_ABI_MAJOR ->
 *   non-NULL (else, for a plugin of ABI 1.x, call it with 1 only to name
 *   its ABI in the refusal) -> abi_major and struct_size (before any other
 *   field) -> name, function pointers and float32 -> not a duplicate name
 *   -> probe(cpu features) > 0.
 * The built-in scalar backend is always entry 0, path "(built-in)".
 *
 * Plugins are never dlclose'd. Code and static data of a plugin are
 * referenced from places the registry does not see (the plugin table the
 * runtime holds, weights a model packed with the plugin's layout, threads of
 * an OpenMP runtime the plugin started, TLS destructors), and unloading
 * under any of them crashes later in a way that is hard to trace. dlopen of
 * the same file again only bumps a reference count, so a process creating
 * many registries does not map plugins many times.
 */
#define _GNU_SOURCE
#include "registry.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <link.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define REGISTRY_BUILTIN_PATH "(built-in)"
#define REGISTRY_FILE_PREFIX "mha-plugin-"
#define REGISTRY_FILE_SUFFIX ".so"
#define REGISTRY_NAME_MAX 32

/* State while registry_create runs. */
typedef struct reg_build {
    registry *r;
    size_t cap; /* capacity of r->entries */
    const registry_options *opts;
    int isolate; /* probe each file in a child process first */
    char **seen; /* realpaths of folders and files visited */
    size_t n_seen, cap_seen;
} reg_build;

/* ---- small helpers ---- */

static void reg_log(const registry_options *o, mha_log_level level, const char *fmt, ...)
    MHA_PRINTF(3, 4);

static void reg_log(const registry_options *o, mha_log_level level, const char *fmt, ...) {
    if (!o || !o->log || level > o->log_level) return;
    char raw[1024], msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    o->log(o->log_user, level, mha_text_escape(msg, sizeof msg, raw)); /* one line, no controls */
}

/* Grows a pointer-sized array by doubling; 0 on allocation failure. */
static int reg_grow(const mha_alloc_ctx *a, void **arr, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 1;
    size_t ncap = *cap ? *cap * 2 : 8;
    while (ncap < need)
        ncap *= 2;
    void *n = mha_calloc(a, ncap, elem);
    if (!n) return 0;
    if (*arr && *cap) memcpy(n, *arr, *cap * elem);
    mha_free(a, *arr);
    *arr = n;
    *cap = ncap;
    return 1;
}

/* Returns 1 if `real` was visited before; else remembers it and returns 0.
 * -1 on allocation failure. */
static int reg_seen_before(reg_build *b, const char *real) {
    for (size_t i = 0; i < b->n_seen; i++)
        if (strcmp(b->seen[i], real) == 0) return 1;
    if (!reg_grow(&b->r->alloc, (void **)&b->seen, &b->cap_seen, b->n_seen + 1, sizeof(char *)))
        return -1;
    char *copy = mha_strdup(&b->r->alloc, real);
    if (!copy) return -1;
    b->seen[b->n_seen++] = copy;
    return 0;
}

/* Appends a zeroed entry for `path`; NULL on allocation failure. */
static plugin_entry *reg_add_entry(reg_build *b, const char *path) {
    registry *r = b->r;
    if (!reg_grow(&r->alloc, (void **)&r->entries, &b->cap, r->n_entries + 1, sizeof(plugin_entry)))
        return NULL;
    plugin_entry *e = &r->entries[r->n_entries];
    memset(e, 0, sizeof *e);
    e->path = mha_strdup(&r->alloc, path);
    if (!e->path) return NULL;
    r->n_entries++;
    return e;
}

static void reg_set_reason(plugin_entry *e, const char *fmt, ...) MHA_PRINTF(2, 3);

static void reg_set_reason(plugin_entry *e, const char *fmt, ...) {
    char raw[sizeof e->reason];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    mha_text_escape(e->reason, sizeof e->reason, raw); /* paths are printed by `mha backends` */
}

/* A plugin name is short and [a-z0-9_]: it is typed on command lines and
 * printed in messages. */
static int reg_name_valid(const char *name) {
    if (!name || !name[0]) return 0;
    size_t n = 0;
    for (const char *p = name; *p; p++, n++) {
        if (n >= REGISTRY_NAME_MAX) return 0;
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) return 0;
    }
    return 1;
}

/* The first function pointer of the table that is NULL although the host
 * needs it, or NULL when all are present. init and fini may be NULL (no
 * state); rotary is there exactly when ops declares it. */
static const char *reg_missing_function(const mha_plugin *p) {
    if (!p->probe) return "probe";
    if (!p->gemm_packed_size) return "gemm_packed_size";
    if (!p->gemm_pack_b) return "gemm_pack_b";
    if (!p->gemm) return "gemm";
    if (!p->attention_workspace_size) return "attention_workspace_size";
    if (!p->attention) return "attention";
    if ((p->ops & MHA_OP_ROTARY) && !p->rotary) return "rotary (ops declares MHA_OP_ROTARY)";
    if ((p->ops & MHA_OP_NORM) && !p->norm) return "norm (ops declares MHA_OP_NORM)";
    return NULL;
}

/* ---- ABI minor versions ---- */

/* The frozen sizes on LP64 targets, written out: a change here breaks every
 * plugin built before it. */
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(MHA_PLUGIN_SIZE_2_0 == 152, "mha_plugin 2.0 is frozen at 152 bytes");
_Static_assert(MHA_NORM_ARGS_SIZE_2_0 == 116, "mha_norm_args 2.0 is frozen at 116 bytes");
_Static_assert(MHA_GEMM_ARGS_SIZE_2_0 == 136, "mha_gemm_args 2.0 is frozen at 136 bytes");
_Static_assert(MHA_ATTN_ARGS_SIZE_2_0 == 352, "mha_attn_args 2.0 is frozen at 352 bytes");
_Static_assert(MHA_ROTARY_ARGS_SIZE_2_0 == 172, "mha_rotary_args 2.0 is frozen at 172 bytes");
_Static_assert(MHA_SERVICES_SIZE_2_0 == 48, "mha_plugin_services 2.0 is frozen at 48 bytes");
#endif
/* The head every ABI major keeps in place, so a table of another major can
 * be named in the refusal. */
_Static_assert(offsetof(mha_plugin, abi_major) == 0 && offsetof(mha_plugin, abi_minor) == 4 &&
                   offsetof(mha_plugin, struct_size) == 8,
               "the head of mha_plugin is shared by every ABI major");

/* The smallest table a plugin declaring `minor` may return: the frozen size
 * of that minor version; a newer minor than this host's must hold at least
 * everything this host reads. */
static size_t reg_frozen_size(uint32_t minor) {
    (void)minor; /* 2.0 is the only minor so far */
    return MHA_PLUGIN_SIZE_2_0;
}

uint32_t registry_plugin_minor(const mha_plugin *p) {
    return p->abi_minor > MHA_PLUGIN_ABI_MINOR ? MHA_PLUGIN_ABI_MINOR : p->abi_minor;
}

static void reg_set_reason(plugin_entry *e, const char *fmt, ...) MHA_PRINTF(2, 3);

/* ---- trust ---- */

/* A plugin runs with the process's rights, so whoever can replace the file,
 * or rename entries in any folder on its path, owns the process. As sudo
 * does for its plugins and ld.so for a setuid program's libraries: the file
 * and every folder up to / must belong to root or to this user and be
 * writable by nobody else -- except a folder with the sticky bit (/tmp),
 * where others cannot remove or rename what they do not own. Returns 1 when
 * `real` (a realpath) passes; else sets e's reason, naming the path that
 * failed. */
static int reg_path_trusted(plugin_entry *e, const char *real) {
    char path[PATH_MAX];
    size_t len = strlen(real);
    if (len == 0 || len >= sizeof path || real[0] != '/') {
        reg_set_reason(e, "%s: not an absolute path", real);
        return 0;
    }
    memcpy(path, real, len + 1);
    uid_t me = geteuid();
    for (int is_file = 1;; is_file = 0) {
        struct stat sb;
        if (lstat(path, &sb) != 0) {
            reg_set_reason(e, "%s: %s", path, strerror(errno));
            return 0;
        }
        const char *what = is_file ? "plugin file" : "folder of the plugin";
        if (is_file && !S_ISREG(sb.st_mode)) { /* dlopen of a FIFO would wait forever */
            reg_set_reason(e, "%s: not a regular file", path);
            return 0;
        }
        if (sb.st_uid != 0 && sb.st_uid != me) {
            reg_set_reason(e, "%s %s is owned by uid %u, neither root nor this user: refused", what,
                           path, (unsigned)sb.st_uid);
            return 0;
        }
        int sticky_dir = S_ISDIR(sb.st_mode) && (sb.st_mode & S_ISVTX);
        if ((sb.st_mode & (S_IWGRP | S_IWOTH)) && !sticky_dir) {
            reg_set_reason(e, "%s %s is writable by %s: refused", what, path,
                           (sb.st_mode & S_IWOTH) ? "everyone" : "its group");
            return 0;
        }
        if (strcmp(path, "/") == 0) return 1;
        char *slash = strrchr(path, '/');
        if (slash == path)
            slash[1] = '\0';
        else
            *slash = '\0';
    }
}

/* ---- probing in a child process ---- */

#define REG_PREFLIGHT_TIMEOUT_MS 10000

/* 1 when this process runs one thread: fork() then copies everything the
 * child needs, and no lock (the loader's, malloc's) can be held by a
 * thread that does not exist in the child. */
static int reg_single_threaded(void) {
    FILE *f = fopen("/proc/self/status", "re");
    if (!f) return 0;
    char line[256];
    int threads = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &threads) == 1) break;
    fclose(f);
    return threads == 1;
}

/* Services for init() in the probing child: memory from the C library,
 * log lines dropped (the child says nothing). */
static void reg_child_log(void *ctx, int level, const char *message) {
    (void)ctx, (void)level, (void)message;
}

static void *reg_child_alloc(void *ctx, size_t size, size_t align) {
    (void)ctx;
    if (align < 64) align = 64;
    size_t rounded;
    if ((align & (align - 1)) || !mha_add_size(size ? size : 1, align - 1, &rounded)) return NULL;
    return aligned_alloc(align, rounded & ~(align - 1));
}

static void reg_child_free(void *ctx, void *ptr) {
    (void)ctx;
    free(ptr);
}

/* Opens `path` and calls its probe (and, when the probe accepts, init and
 * fini) in a child process, which reports back
 * through a pipe only once the probe returned. Returns 1 when it did (or
 * when no child can be made: the file is then loaded as before); else
 * records why in e and returns 0 -- the file is never opened here. A crash
 * in a plugin's constructor, mha_plugin_get, probe or init thus costs only
 * that plugin. The child calls nothing of the library and leaves with _exit (no
 * atexit handlers, no stdio flush of the parent's buffers). */
static int reg_preflight(plugin_entry *e, const char *path, uint64_t features, int timeout_ms) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return 1;
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return 1;
    }
    if (pid == 0) {
        close(fds[0]);
        /* a crash must end the child: the caller's handlers (a test
         * framework's longjmp, a sanitizer's report) would carry on running
         * the caller's code in the child */
        static const int fatal[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT, SIGTRAP, SIGSYS};
        for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++)
            signal(fatal[i], SIG_DFL);
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        void *sym = h ? dlsym(h, MHA_PLUGIN_ENTRY_SYMBOL) : NULL;
        if (sym) {
            mha_plugin_get_fn get;
            memcpy(&get, &sym, sizeof get);
            const mha_plugin *p = get(MHA_PLUGIN_ABI_MAJOR);
            /* the full table checks run later in the parent; here only what
             * calling probe needs */
            if (p && p->abi_major == MHA_PLUGIN_ABI_MAJOR &&
                p->struct_size >= MHA_PLUGIN_SIZE_2_0 && p->probe) {
                const char *why = NULL;
                void *state = NULL;
                mha_plugin_services svc = {.struct_size = sizeof svc,
                                           .log = reg_child_log,
                                           .alloc = reg_child_alloc,
                                           .free = reg_child_free,
                                           .cpu_features = features};
                if (p->probe(features, &why) > 0 && (!p->init || p->init(&svc, &state) == 0) &&
                    p->fini)
                    p->fini(state);
            }
        }
        const char done = 1;
        ssize_t w = write(fds[1], &done, 1);
        _exit(w == 1 ? 0 : 1);
    }
    close(fds[1]);
    struct pollfd pfd = {.fd = fds[0], .events = POLLIN};
    int ready;
    do
        ready = poll(&pfd, 1, timeout_ms);
    while (ready < 0 && errno == EINTR);
    char done = 0;
    ssize_t got = ready > 0 ? read(fds[0], &done, 1) : 0;
    close(fds[0]);
    if (ready == 0) kill(pid, SIGKILL);
    int status = 0;
    pid_t w;
    do
        w = waitpid(pid, &status, 0);
    while (w < 0 && errno == EINTR);
    if (got == 1 && done == 1) return 1;
    if (ready == 0)
        reg_set_reason(e,
                       "%s: opening and probing it in a child process did not return within %d ms "
                       "(killed)",
                       path, timeout_ms);
    else if (w == pid && WIFSIGNALED(status))
        reg_set_reason(e,
                       "%s: opening and probing it in a child process did not return: killed by "
                       "signal %d (%s)",
                       path, WTERMSIG(status), strsignal(WTERMSIG(status)));
    else if (w == pid && WIFEXITED(status))
        reg_set_reason(e,
                       "%s: opening and probing it in a child process did not return: exit "
                       "status %d",
                       path, WEXITSTATUS(status));
    else
        reg_set_reason(e, "%s: opening and probing it in a child process did not return", path);
    return 0;
}

/* ---- loading one file ---- */

/* Checks the table a plugin returned, in ABI order: abi_major and
 * struct_size first (the only fields every ABI version shares), then the
 * rest. Returns 1 when valid; else sets e->reason. */
static int reg_check_table(plugin_entry *e, const char *path, const mha_plugin *p) {
    if (p->abi_major != MHA_PLUGIN_ABI_MAJOR) {
        if (p->abi_major == 1)
            reg_set_reason(e,
                           "%s: built for plugin ABI 1.%u; this host loads ABI %u plugins only "
                           "(rebuild it against this libmha's mha/plugin.h)",
                           path, p->abi_minor, MHA_PLUGIN_ABI_MAJOR);
        else
            reg_set_reason(e, "%s: %s() returned a table of ABI major %u; this host speaks %u",
                           path, MHA_PLUGIN_ENTRY_SYMBOL, p->abi_major, MHA_PLUGIN_ABI_MAJOR);
        return 0;
    }
    const size_t need = reg_frozen_size(p->abi_minor);
    if (p->struct_size < need) {
        reg_set_reason(e, "%s: %s() returned a table of %u bytes; ABI %u.%u needs %zu", path,
                       MHA_PLUGIN_ENTRY_SYMBOL, p->struct_size, MHA_PLUGIN_ABI_MAJOR, p->abi_minor,
                       need);
        return 0;
    }
    if (!reg_name_valid(p->name)) {
        reg_set_reason(e, "%s: plugin name is missing or not [a-z0-9_]{1,%d}", path,
                       REGISTRY_NAME_MAX);
        return 0;
    }
    const char *missing = reg_missing_function(p);
    if (missing) {
        reg_set_reason(e, "%s: plugin '%s' has no '%s' function", path, p->name, missing);
        return 0;
    }
    if (!registry_plugin_serves(p, MHA_PRECISION_FLOAT32)) {
        reg_set_reason(e, "%s: plugin '%s' does not declare float32 in its precisions (0x%x)", path,
                       p->name, p->precisions);
        return 0;
    }
    if (p->gemm_m_block < 1 || p->gemm_n_block < 1 || p->gemm_m_block > MHA_PLUGIN_GEMM_BLOCK_MAX ||
        p->gemm_n_block > MHA_PLUGIN_GEMM_BLOCK_MAX) {
        reg_set_reason(e, "%s: plugin '%s' has gemm blocks %lld x %lld (need 1..%d)", path, p->name,
                       (long long)p->gemm_m_block, (long long)p->gemm_n_block,
                       MHA_PLUGIN_GEMM_BLOCK_MAX);
        return 0;
    }
    return 1;
}

/* The earlier dlopen'ed entry that already holds `name`, or NULL. The
 * built-in scalar does not count: a scalar plugin file is allowed beside it
 * (and preferred on ties, see registry_select). */
static const plugin_entry *reg_find_loaded(const registry *r, const char *name,
                                           const plugin_entry *self) {
    for (size_t i = 1; i < r->n_entries; i++) {
        const plugin_entry *e = &r->entries[i];
        if (e == self || !e->plugin || !e->name) continue;
        if (strncmp(e->reason, "duplicate", 9) == 0) continue;
        if (strcmp(e->name, name) == 0) return e;
    }
    return NULL;
}

/* Loads, checks and probes one file; problems go into the entry. Returns
 * MHA_ERR_NO_MEMORY only (everything else is recorded, not returned). */
static mha_status reg_load_file(reg_build *b, const char *path) {
    registry *r = b->r;
    plugin_entry *e = reg_add_entry(b, path);
    if (!e) return MHA_ERR_NO_MEMORY;

    /* 0. nobody else can have written it */
    char real[PATH_MAX];
    if (!realpath(path, real)) {
        reg_set_reason(e, "%s: %s", path, strerror(errno));
        goto skipped;
    }
    if (!reg_path_trusted(e, real)) goto skipped;
    /* from here on the file whose path was checked: dlopen of a name
     * without a slash ("myplugin.so", a relative plugin_path) would search
     * the library path instead and load another file, or none */
    if (b->isolate && !reg_preflight(e, real, r->cpu_features,
                                     b->opts->probe_timeout_ms > 0 ? b->opts->probe_timeout_ms
                                                                   : REG_PREFLIGHT_TIMEOUT_MS))
        goto skipped;

    /* 1. dlopen: resolve every symbol now so a broken file fails here */
    dlerror();
    void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        reg_set_reason(e, "dlopen failed: %s", why ? why : path);
        goto skipped;
    }
    e->dl_handle = h;

    /* 2. the one exported entry symbol */
    dlerror();
    void *sym = dlsym(h, MHA_PLUGIN_ENTRY_SYMBOL);
    if (!sym) {
        reg_set_reason(e, "%s: no symbol '%s' (not an mha plugin)", path, MHA_PLUGIN_ENTRY_SYMBOL);
        goto skipped;
    }
    mha_plugin_get_fn get;
    memcpy(&get, &sym, sizeof get); /* object -> function pointer, as POSIX allows */

    /* 3. ask for a table this host can read */
    const mha_plugin *p = get(MHA_PLUGIN_ABI_MAJOR);
    if (!p) {
        /* a plugin of ABI 1.x answers NULL to any other major: ask it for
         * its own table, to name the ABI it was built for (only the head
         * shared by every major is read) */
        const mha_plugin *old = get(1);
        if (old && old->abi_major == 1)
            reg_check_table(e, path, old);
        else
            reg_set_reason(e, "%s: %s(%u) returned NULL (plugin cannot serve this host's ABI)",
                           path, MHA_PLUGIN_ENTRY_SYMBOL, MHA_PLUGIN_ABI_MAJOR);
        goto skipped;
    }
    if (!reg_check_table(e, path, p)) goto skipped;

    e->name = mha_strdup(&r->alloc, p->name);
    char version[64]; /* free text from the plugin, printed by `mha backends` */
    e->version = mha_strdup(&r->alloc, mha_text_escape(version, sizeof version, p->version));
    if (!e->name || !e->version) return MHA_ERR_NO_MEMORY;
    e->plugin = p;

    /* 4. first of a name wins */
    const plugin_entry *first = reg_find_loaded(r, p->name, e);
    if (first) {
        reg_set_reason(e, "duplicate: plugin '%s' already loaded from %s", p->name, first->path);
        goto skipped;
    }

    /* 5. can it run on this CPU? */
    const char *why = NULL;
    int score = p->probe(r->cpu_features, &why);
    if (score <= 0) {
        reg_set_reason(e, "%s: probe of '%s' returned %d: %s", path, p->name, score,
                       why ? why : "cannot run on this CPU");
        e->score = 0;
        goto skipped;
    }
    e->score = score;
    e->usable = 1;
    reg_log(b->opts, MHA_LOG_INFO, "plugin '%s' %s from %s: usable, score %d", e->name, e->version,
            path, score);
    return MHA_OK;

skipped:
    reg_log(b->opts, MHA_LOG_WARN, "plugin skipped: %s", e->reason);
    return MHA_OK;
}

/* ---- scanning locations ---- */

static int reg_cmp_str(const void *x, const void *y) {
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static int reg_is_plugin_file_name(const char *n) {
    size_t len = strlen(n), lp = strlen(REGISTRY_FILE_PREFIX), ls = strlen(REGISTRY_FILE_SUFFIX);
    return len > lp + ls && strncmp(n, REGISTRY_FILE_PREFIX, lp) == 0 &&
           strcmp(n + len - ls, REGISTRY_FILE_SUFFIX) == 0;
}

/* With registry_options.only_name set (and not "auto"): 1 when the file
 * name is mha-plugin-<only_name>.so. Always 1 without it. */
static int reg_file_wanted(const registry_options *o, const char *n) {
    const char *only = o->only_name;
    if (!only || !only[0] || strcmp(only, "auto") == 0) return 1;
    size_t lp = strlen(REGISTRY_FILE_PREFIX), lo = strlen(only);
    return strncmp(n, REGISTRY_FILE_PREFIX, lp) == 0 && strncmp(n + lp, only, lo) == 0 &&
           strcmp(n + lp + lo, REGISTRY_FILE_SUFFIX) == 0;
}

/* Loads every mha-plugin-*.so of folder `dir` (only the wanted one when a
 * name was given), sorted. */
static mha_status reg_scan_folder(reg_build *b, const char *dir) {
    const mha_alloc_ctx *a = &b->r->alloc;
    DIR *d = opendir(dir);
    if (!d) {
        reg_log(b->opts, MHA_LOG_WARN, "plugin folder %s: %s", dir, strerror(errno));
        return MHA_OK;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    mha_status st = MHA_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (!reg_is_plugin_file_name(de->d_name) || !reg_file_wanted(b->opts, de->d_name)) continue;
        if (!reg_grow(a, (void **)&names, &cap, n + 1, sizeof(char *))) {
            st = MHA_ERR_NO_MEMORY;
            break;
        }
        names[n] = mha_strdup(a, de->d_name);
        if (!names[n]) {
            st = MHA_ERR_NO_MEMORY;
            break;
        }
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof(char *), reg_cmp_str);

    reg_log(b->opts, MHA_LOG_DEBUG, "plugin folder %s: %zu candidate file(s)", dir, n);
    for (size_t i = 0; i < n && st == MHA_OK; i++) {
        char path[PATH_MAX];
        int len = snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        if (len < 0 || (size_t)len >= sizeof path) continue;
        char real[PATH_MAX];
        struct stat sb;
        if (!realpath(path, real) || stat(real, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            plugin_entry *e = reg_add_entry(b, path);
            if (!e) {
                st = MHA_ERR_NO_MEMORY;
                break;
            }
            reg_set_reason(e, "%s: not a readable regular file", path);
            reg_log(b->opts, MHA_LOG_WARN, "plugin skipped: %s", e->reason);
            continue;
        }
        int seen = reg_seen_before(b, real);
        if (seen < 0)
            st = MHA_ERR_NO_MEMORY;
        else if (!seen)
            st = reg_load_file(b, path);
    }
    for (size_t i = 0; i < n; i++)
        mha_free(a, names[i]);
    mha_free(a, names);
    return st;
}

/* A file or a folder. `origin` says where the location came from (for the
 * messages); `required` records a missing location as an entry (explicit
 * paths), otherwise it is only logged at debug level. */
static mha_status reg_scan_location(reg_build *b, const char *loc, const char *origin,
                                    int required) {
    char real[PATH_MAX];
    struct stat sb;
    if (!realpath(loc, real) || stat(real, &sb) != 0) {
        int e = errno;
        if (required) {
            plugin_entry *ent = reg_add_entry(b, loc);
            if (!ent) return MHA_ERR_NO_MEMORY;
            reg_set_reason(ent, "%s %s: %s", origin, loc, strerror(e));
            reg_log(b->opts, MHA_LOG_WARN, "%s", ent->reason);
        } else {
            reg_log(b->opts, MHA_LOG_DEBUG, "%s %s: %s", origin, loc, strerror(e));
        }
        return MHA_OK;
    }
    int seen = reg_seen_before(b, real);
    if (seen < 0) return MHA_ERR_NO_MEMORY;
    if (seen) return MHA_OK;
    if (S_ISDIR(sb.st_mode)) return reg_scan_folder(b, real); /* "bin/../lib" -> "lib" */
    return reg_load_file(b, loc);
}

/* Folder of the object holding libmha's code: the shared libmha, or the
 * executable that linked it statically. 0 when it cannot be found. */
static int reg_self_dir(char *out, size_t size) {
    char file[PATH_MAX];
    Dl_info info;
    void *addr;
    mha_status (*self)(const mha_alloc_ctx *, const registry_options *, registry **, mha_error *) =
        registry_create;
    memcpy(&addr, &self, sizeof addr);
#if defined(__GLIBC__)
    struct link_map *lm = NULL;
    if (!dladdr1(addr, &info, (void **)&lm, RTLD_DL_LINKMAP)) return 0;
    if (lm && lm->l_name && lm->l_name[0] == '\0') {
        /* the main executable: dli_fname would be argv[0], which may be a
         * bare name resolved through PATH -- never use it as a folder */
        ssize_t n = readlink("/proc/self/exe", file, sizeof file - 1);
        if (n <= 0) return 0;
        file[n] = '\0';
    } else
#else
    if (!dladdr(addr, &info)) return 0;
#endif
    {
        if (!info.dli_fname || !strchr(info.dli_fname, '/')) return 0;
        if (!realpath(info.dli_fname, file)) return 0;
    }
    char *slash = strrchr(file, '/');
    if (!slash) return 0;
    if (slash == file)
        slash[1] = '\0';
    else
        *slash = '\0';
    int n = snprintf(out, size, "%s", file);
    return n > 0 && (size_t)n < size;
}

/* ---- public (internal) API ---- */

static void reg_free_seen(reg_build *b) {
    for (size_t i = 0; i < b->n_seen; i++)
        mha_free(&b->r->alloc, b->seen[i]);
    mha_free(&b->r->alloc, b->seen);
    b->seen = NULL;
    b->n_seen = b->cap_seen = 0;
}

static mha_status reg_scan_all(reg_build *b, const registry_options *o) {
    mha_status st;
    /* 1. explicit path */
    if (o->plugin_path && o->plugin_path[0]) {
        st = reg_scan_location(b, o->plugin_path, "plugin_path", 1);
        if (st) return st;
    }
    /* 2. MHA_PLUGIN_PATH */
    /* secure_getenv: a setuid or setgid program never takes plugin folders
     * from whoever started it */
    const char *env = o->use_env ? secure_getenv("MHA_PLUGIN_PATH") : NULL;
    if (env) {
        const char *p = env;
        while (*p) {
            const char *colon = strchr(p, ':');
            size_t len = colon ? (size_t)(colon - p) : strlen(p);
            if (len > 0 && len < PATH_MAX) {
                char item[PATH_MAX];
                memcpy(item, p, len);
                item[len] = '\0';
                /* a relative item would resolve in the current directory,
                 * which is never searched; it is listed (unusable, with the
                 * reason) so that `mha backends` shows it was ignored */
                if (item[0] != '/') {
                    plugin_entry *ent = reg_add_entry(b, item);
                    if (!ent) return MHA_ERR_NO_MEMORY;
                    reg_set_reason(ent,
                                   "MHA_PLUGIN_PATH item '%s' is not an absolute path: ignored "
                                   "(plugins are never loaded relative to the current directory)",
                                   item);
                    reg_log(o, MHA_LOG_WARN, "%s", ent->reason);
                } else {
                    st = reg_scan_location(b, item, "MHA_PLUGIN_PATH item", 0);
                    if (st) return st;
                }
            }
            if (!colon) break;
            p = colon + 1;
        }
    }
    /* 3. beside libmha */
    char self[PATH_MAX];
    if (reg_self_dir(self, sizeof self)) {
        char dir[PATH_MAX + 32];
        snprintf(dir, sizeof dir, "%s/mha/plugins", self);
        st = reg_scan_location(b, dir, "folder beside libmha", 0);
        if (st) return st;
        snprintf(dir, sizeof dir, "%s/../lib/mha/plugins", self);
        st = reg_scan_location(b, dir, "folder beside libmha", 0);
        if (st) return st;
    } else {
        reg_log(b->opts, MHA_LOG_DEBUG, "cannot locate libmha with dladdr; skipping its folder");
    }
    /* 4. the installed folder */
#ifdef MHA_PLUGIN_INSTALL_DIR
    st = reg_scan_location(b, MHA_PLUGIN_INSTALL_DIR, "installed plugin folder", 0);
    if (st) return st;
#endif
    return MHA_OK;
}

mha_status registry_create(const mha_alloc_ctx *a, const registry_options *opts, registry **out,
                           mha_error *err) {
    if (!out) return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "registry_create: out is NULL");
    *out = NULL;
    registry_options none;
    if (!opts) {
        memset(&none, 0, sizeof none);
        opts = &none;
    }
    mha_alloc_ctx local;
    if (!a) {
        mha_alloc_ctx_init(&local, NULL);
        a = &local;
    }

    /* CPU features, minus what the caller or MHA_CPU_MASK hides */
    uint64_t hidden = opts->cpu_mask;
    const char *env_mask = opts->use_env ? secure_getenv("MHA_CPU_MASK") : NULL;
    if (env_mask) {
        int ok;
        uint64_t m = cpu_parse_mask(env_mask, &ok);
        if (!ok)
            return mha_fail(err, MHA_ERR_INVALID_ARGUMENT,
                            "MHA_CPU_MASK='%.64s': expected hex bits (0x60) or feature names "
                            "(avx512,avx2,fma,...)",
                            env_mask);
        hidden |= m;
    }

    registry *r = mha_calloc(a, 1, sizeof *r);
    if (!r) return mha_fail(err, MHA_ERR_NO_MEMORY, "plugin registry: out of memory");
    r->alloc = *a;
    r->cpu_features = cpu_detect_features() & ~hidden;

    reg_build b = {.r = r, .cap = 0, .opts = opts, .isolate = reg_single_threaded()};
    char fbuf[256];
    reg_log(opts, MHA_LOG_DEBUG, "cpu features: %s",
            cpu_features_str(r->cpu_features, fbuf, sizeof fbuf));

    /* entry 0: the built-in scalar, always usable */
    plugin_entry *e0 = reg_add_entry(&b, REGISTRY_BUILTIN_PATH);
    mha_status st = MHA_OK;
    if (!e0) {
        st = MHA_ERR_NO_MEMORY;
    } else {
        const mha_plugin *sp = mha_scalar_plugin_table();
        e0->plugin = sp;
        e0->name = mha_strdup(a, sp->name);
        e0->version = mha_strdup(a, sp->version);
        const char *why = NULL;
        e0->score = sp->probe(r->cpu_features, &why);
        e0->usable = e0->score > 0;
        if (!e0->name || !e0->version) st = MHA_ERR_NO_MEMORY;
    }
    if (st == MHA_OK) st = reg_scan_all(&b, opts);
    reg_free_seen(&b);
    if (st != MHA_OK) {
        registry_free(r);
        return mha_fail(err, st, "plugin registry: out of memory while loading plugins");
    }
    *out = r;
    return MHA_OK;
}

/* "scalar (built-in, score 10), avx2 (score 30), avx512 (unusable)" */
static void reg_list(const registry *r, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < r->n_entries; i++) {
        const plugin_entry *e = &r->entries[i];
        if (!e->name || strncmp(e->reason, "duplicate", 9) == 0) continue;
        char item[96];
        if (e->usable)
            snprintf(item, sizeof item, "%s (%sscore %d)", e->name,
                     e->dl_handle ? "" : "built-in, ", e->score);
        else
            snprintf(item, sizeof item, "%s (cannot run here)", e->name);
        int n = snprintf(buf + used, size - used, "%s%s", used ? ", " : "", item);
        if (n < 0 || (size_t)n >= size - used) {
            buf[used] = '\0';
            break;
        }
        used += (size_t)n;
    }
}

mha_status registry_select(const registry *r, const char *name, const plugin_entry **out,
                           mha_error *err) {
    if (!r || !out)
        return mha_fail(err, MHA_ERR_INVALID_ARGUMENT, "registry_select: NULL argument");
    *out = NULL;
    int is_auto = !name || !name[0] || strcmp(name, "auto") == 0;
    const plugin_entry *best = NULL, *unusable = NULL;
    for (size_t i = 0; i < r->n_entries; i++) {
        const plugin_entry *e = &r->entries[i];
        if (!e->plugin || !e->name) continue;
        if (!is_auto && strcmp(e->name, name) != 0) continue;
        if (!e->usable) {
            if (!unusable) unusable = e;
            continue;
        }
        /* higher score wins; on a tie a loaded file beats the built-in */
        if (!best || e->score > best->score || (e->score == best->score && !best->dl_handle))
            best = e;
    }
    if (best) {
        *out = best;
        return MHA_OK;
    }
    char list[384];
    reg_list(r, list, sizeof list);
    if (unusable)
        return mha_fail(err, MHA_ERR_BACKEND, "backend '%s' cannot run here (%s); usable: %s", name,
                        unusable->reason, list);
    return mha_fail(err, MHA_ERR_BACKEND, "backend '%s' not found; found: %s",
                    is_auto ? "auto" : name, list);
}

void registry_free(registry *r) {
    if (!r) return;
    mha_alloc_ctx a = r->alloc;
    for (size_t i = 0; i < r->n_entries; i++) {
        mha_free(&a, r->entries[i].path);
        mha_free(&a, r->entries[i].name);
        mha_free(&a, r->entries[i].version);
        /* no dlclose: see the comment at the top of this file */
    }
    mha_free(&a, r->entries);
    mha_free(&a, r);
}
