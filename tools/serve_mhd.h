/* serve_mhd.h -- libmicrohttpd for `mha serve` only: the library (and
 * GnuTLS, which it needs) is opened with dlopen when `mha serve` starts,
 * not linked into `mha`. Linked, every `mha` call paid GnuTLS's start-up:
 * 13 ms of a release `mha --version`'s 17.6 ms, ~28 ms a call under ASan
 * (docs/BENCH.md, "CI time on a Zen 5").
 *
 * The serve files include this header instead of <microhttpd.h> and call
 * MHD_* as usual: each function the command uses is a macro over a pointer
 * of the function's own type (__typeof__ of libmicrohttpd's prototype), so
 * the calls are checked as before. serve_mhd_load() fills the pointers;
 * it must succeed before any MHD_* call. */
#ifndef MHA_SERVE_MHD_H
#define MHA_SERVE_MHD_H

#include <stddef.h>

#include <microhttpd.h>

/* Every libmicrohttpd function the serve files call. */
#define SERVE_MHD_FUNCTIONS(X)                                                                     \
    X(MHD_add_response_header)                                                                     \
    X(MHD_create_response_from_buffer)                                                             \
    X(MHD_create_response_from_iovec)                                                              \
    X(MHD_destroy_response)                                                                        \
    X(MHD_get_connection_info)                                                                     \
    X(MHD_get_connection_values)                                                                   \
    X(MHD_get_daemon_info)                                                                         \
    X(MHD_lookup_connection_value)                                                                 \
    X(MHD_lookup_connection_value_n)                                                               \
    X(MHD_queue_response)                                                                          \
    X(MHD_quiesce_daemon)                                                                          \
    X(MHD_resume_connection)                                                                       \
    X(MHD_start_daemon)                                                                            \
    X(MHD_stop_daemon)                                                                             \
    X(MHD_suspend_connection)

typedef struct serve_mhd_api {
#define SERVE_MHD_POINTER(name) __typeof__(name) *name;
    SERVE_MHD_FUNCTIONS(SERVE_MHD_POINTER)
#undef SERVE_MHD_POINTER
} serve_mhd_api;

extern serve_mhd_api serve_mhd;

/* Opens libmicrohttpd (its soname, then the build's copy by full path) and
 * resolves every function above, once per process (later calls return the
 * first call's result). 0 when done; else -1 with why in msg. */
int serve_mhd_load(char *msg, size_t msg_size);

/* serve_mhd.c itself names the real functions (dlsym's names). */
#ifndef SERVE_MHD_NO_MACROS
#define MHD_add_response_header (*serve_mhd.MHD_add_response_header)
#define MHD_create_response_from_buffer (*serve_mhd.MHD_create_response_from_buffer)
#define MHD_create_response_from_iovec (*serve_mhd.MHD_create_response_from_iovec)
#define MHD_destroy_response (*serve_mhd.MHD_destroy_response)
#define MHD_get_connection_info (*serve_mhd.MHD_get_connection_info)
#define MHD_get_connection_values (*serve_mhd.MHD_get_connection_values)
#define MHD_get_daemon_info (*serve_mhd.MHD_get_daemon_info)
#define MHD_lookup_connection_value (*serve_mhd.MHD_lookup_connection_value)
#define MHD_lookup_connection_value_n (*serve_mhd.MHD_lookup_connection_value_n)
#define MHD_queue_response (*serve_mhd.MHD_queue_response)
#define MHD_quiesce_daemon (*serve_mhd.MHD_quiesce_daemon)
#define MHD_resume_connection (*serve_mhd.MHD_resume_connection)
#define MHD_start_daemon (*serve_mhd.MHD_start_daemon)
#define MHD_stop_daemon (*serve_mhd.MHD_stop_daemon)
#define MHD_suspend_connection (*serve_mhd.MHD_suspend_connection)
#endif

#endif
