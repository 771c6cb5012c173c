/* serve_mhd.c -- opens libmicrohttpd for `mha serve` (see serve_mhd.h).
 *
 * MHA_MHD_SONAME (e.g. "libmicrohttpd.so.12") and MHA_MHD_PATH (the file
 * the build found, by full path) come from tools/CMakeLists.txt. The
 * soname first: an installed `mha` finds the system's library wherever the
 * build's was; the full path serves a library outside the loader's search
 * path (a prefix of its own found through pkg-config). */
#define SERVE_MHD_NO_MACROS
#include "serve_mhd.h"

#include <dlfcn.h>
#include <stdio.h>

#ifndef MHA_MHD_SONAME
#error "MHA_MHD_SONAME: libmicrohttpd's soname, set by tools/CMakeLists.txt"
#endif
#ifndef MHA_MHD_PATH
#define MHA_MHD_PATH MHA_MHD_SONAME
#endif

serve_mhd_api serve_mhd;

int serve_mhd_load(char *msg, size_t msg_size) {
    static int state; /* 0: not tried, 1: loaded, -1: failed */
    static char why[512];
    if (state == 0) {
        /* never closed: its threads and callbacks live as long as serve */
        void *lib = dlopen(MHA_MHD_SONAME, RTLD_NOW | RTLD_LOCAL);
        if (!lib) lib = dlopen(MHA_MHD_PATH, RTLD_NOW | RTLD_LOCAL);
        state = lib ? 1 : -1;
        if (!lib) {
            const char *e = dlerror();
            snprintf(why, sizeof why, "cannot open %s (`mha serve` needs GNU libmicrohttpd): %s",
                     MHA_MHD_SONAME, e ? e : "unknown error");
        }
#define SERVE_MHD_RESOLVE(name)                                                                    \
    if (state == 1 && !(serve_mhd.name = (__typeof__(name) *)dlsym(lib, #name))) {                 \
        snprintf(why, sizeof why, "%s has no %s (an older libmicrohttpd than the build's)",        \
                 MHA_MHD_SONAME, #name);                                                           \
        state = -1;                                                                                \
    }
        SERVE_MHD_FUNCTIONS(SERVE_MHD_RESOLVE)
#undef SERVE_MHD_RESOLVE
    }
    if (state == 1) return 0;
    if (msg && msg_size) snprintf(msg, msg_size, "%s", why);
    return -1;
}
