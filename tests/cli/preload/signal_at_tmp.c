/* signal_at_tmp.c -- a preload library for tests/cli/signals.sh: sends the
 * process a signal at the very moment it has created a temporary file, the
 * window a test that polls for the file can only hit by luck.
 *
 * MHA_TEST_SIGNAL_AT_TMP="SIG N": right after the N-th call of mkostemp or
 * mkstemp in this process returns a descriptor (the file exists, nothing
 * is written in it yet), raise(SIG). raise() runs a handler the program
 * installed before returning, or ends the process by the default action,
 * so what the program does next is fixed, not a race. Unset: the calls
 * pass straight to the C library. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

static int calls; /* temporaries created so far */

/* After each successful creation: the signal when this is the N-th. */
static void signal_at_tmp_after(int fd) {
    const char *spec = getenv("MHA_TEST_SIGNAL_AT_TMP");
    int sig = 0, nth = 0;
    if (fd < 0 || !spec || sscanf(spec, "%d %d", &sig, &nth) != 2) return;
    if (++calls == nth) raise(sig);
}

int mkostemp(char *template, int flags) {
    int (*real)(char *, int) = (int (*)(char *, int))dlsym(RTLD_NEXT, "mkostemp");
    int fd = real ? real(template, flags) : -1;
    signal_at_tmp_after(fd);
    return fd;
}

int mkstemp(char *template) {
    int (*real)(char *) = (int (*)(char *))dlsym(RTLD_NEXT, "mkstemp");
    int fd = real ? real(template) : -1;
    signal_at_tmp_after(fd);
    return fd;
}
