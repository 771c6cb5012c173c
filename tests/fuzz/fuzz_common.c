/* fuzz_common.c -- what the fuzz entries share: the failure report, the
 * clean-error check, the descriptor-leak probe, a private temporary folder,
 * and the table of targets the replay driver walks. */
#define _GNU_SOURCE
#include "fuzz_entry.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const fuzz_target fuzz_targets[] = {
    {"onnx_model", fuzz_onnx_model_one},
    {"npy", fuzz_npy_one},
    {"tensor_proto", fuzz_tensor_proto_one},
    {"external_data", fuzz_external_data_one},
};
const size_t fuzz_target_count = sizeof fuzz_targets / sizeof fuzz_targets[0];

void fuzz_check_failed(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz check failed at %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
    abort();
}

void fuzz_check_error(const char *what, mha_status st, const mha_error *err) {
    FUZZ_CHECK(st != MHA_OK, "%s: expected a failure", what);
    FUZZ_CHECK(strcmp(mha_status_name(st), "MHA_UNKNOWN_STATUS") != 0, "%s: unknown status %d",
               what, (int)st);
    FUZZ_CHECK(st != MHA_ERR_INTERNAL, "%s: internal error on input data: %s", what, err->message);
    FUZZ_CHECK(err->status == st, "%s: returned %s but err says %s (%s)", what, mha_status_name(st),
               mha_status_name(err->status), err->message);
    size_t n = strnlen(err->message, sizeof err->message);
    FUZZ_CHECK(n > 0 && n < sizeof err->message, "%s: %s without a message", what,
               mha_status_name(st));
    FUZZ_CHECK(!strchr(err->message, '\n'), "%s: message is not one line: %s", what, err->message);
}

void fuzz_note(const char *what, mha_status st, const mha_error *err) {
    static int verbose = -1;
    if (verbose < 0) verbose = getenv("MHA_FUZZ_VERBOSE") != NULL;
    if (verbose)
        fprintf(stderr, "%s: %s%s%s\n", what, mha_status_name(st), st != MHA_OK ? " " : "",
                st != MHA_OK && err ? err->message : "");
}

int fuzz_lowest_free_fd(void) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) close(fd);
    return fd;
}

static char tmp_root[4096];

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void tmp_cleanup(void) {
    if (tmp_root[0]) nftw(tmp_root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

const char *fuzz_tmpdir(void) {
    if (tmp_root[0]) return tmp_root;
    const char *base = getenv("MHA_FUZZ_TMP");
    if (!base || !*base) base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(tmp_root, sizeof tmp_root, "%s/mha-fuzz-XXXXXX", base);
    if (!mkdtemp(tmp_root)) {
        fprintf(stderr, "fuzz: cannot create a folder under %s\n", base);
        abort();
    }
    atexit(tmp_cleanup);
    return tmp_root;
}
