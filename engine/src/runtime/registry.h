/* registry.h -- CPU feature detection and the plugin registry: finds plugin
 * files (explicit path, MHA_PLUGIN_PATH, beside libmha, the installed
 * folder; never the current directory), checks their ABI, probes them, and
 * picks the backend ("auto" = highest score, or by name). */
#ifndef MHA_REGISTRY_H
#define MHA_REGISTRY_H

#include "common.h"
#include "mha/plugin.h"
#include "registry_table.h"

/* CPUID + XGETBV, once per call (cheap); MHA_CPU_* bits. */
uint64_t cpu_detect_features(void);
/* Parses a mask: hex ("0x60") or comma-separated names ("avx512,avx2" --
 * "avx512" hides every AVX-512 bit, "avx2" hides AVX2 and FMA). 0 on error
 * with *ok = 0. */
uint64_t cpu_parse_mask(const char *s, int *ok);
/* "sse2 avx avx2 fma avx512f ..." into buf. */
const char *cpu_features_str(uint64_t features, char *buf, size_t size);

typedef struct plugin_entry {
    char *path; /* "(built-in)" for the built-in scalar */
    char *name; /* NULL if not a valid plugin */
    char *version;
    const mha_plugin *plugin; /* NULL if not a valid plugin */
    void *dl_handle;          /* dlopen handle, NULL for built-in */
    int score;                /* probe result */
    int usable;
    char reason[256]; /* why skipped / unusable, "" if usable */
} plugin_entry;

typedef struct registry {
    mha_alloc_ctx alloc;
    plugin_entry *entries;
    size_t n_entries;
    uint64_t cpu_features; /* after the mask */
} registry;

typedef struct registry_options {
    const char *plugin_path; /* file or folder searched first, or NULL */
    /* The backend the caller will select, or NULL / "" / "auto" for any.
     * With a name, folders are searched for mha-plugin-<name>.so only: no
     * other plugin file is opened or probed (explicitly named files still
     * are). */
    const char *only_name;
    int probe_timeout_ms; /* the probing child's time to answer; 0 = 10 s */
    int use_env;          /* read MHA_PLUGIN_PATH / MHA_CPU_MASK */
    uint64_t cpu_mask;    /* features hidden */
    mha_log_fn log;
    void *log_user;
    mha_log_level log_level;
} registry_options;

/* Scans every location, loads and probes each plugin. Problems with single
 * files are logged and recorded in their entry's reason, never fatal. The
 * built-in scalar backend is always the first entry. While the process has
 * one thread (fork is only safe then), each file is first opened and
 * probed in a child process: a plugin whose constructor or probe crashes
 * or hangs is recorded as unusable instead of taking the caller down. */
mha_status registry_create(const mha_alloc_ctx *a, const registry_options *opts, registry **out,
                           mha_error *err);
/* name NULL / "" / "auto": the usable entry with the highest score (a
 * dlopen'ed "scalar" beats the built-in on ties). Else the usable entry
 * with that name. MHA_ERR_BACKEND with a list of what exists otherwise. */
mha_status registry_select(const registry *r, const char *name, const plugin_entry **out,
                           mha_error *err);
/* Does not dlclose (plugins stay loaded for the process's life: code of a
 * plugin may still be referenced by packed-weight caches of models). */
void registry_free(registry *r);

/* The ABI minor version the host may use a plugin table at: the one it
 * declares, capped at this host's. */
uint32_t registry_plugin_minor(const mha_plugin *p);

#endif
