/* fuzz_entry.h -- the per-input code of the four fuzz targets. Each entry
 * takes one input, drives the engine's parser on it and checks what came
 * back (a clean status with a message, or a result whose invariants hold);
 * a broken invariant prints what broke and aborts, which libFuzzer reports
 * as a crash. The same entries serve the libFuzzer binaries (fuzz_main.c)
 * and the regression replay of the unit tests (test_fuzz_regressions.c), so
 * a saved crash reproduces in every build, with or without sanitizers. */
#ifndef MHA_FUZZ_ENTRY_H
#define MHA_FUZZ_ENTRY_H

#include <stddef.h>
#include <stdint.h>

#include "mha/mha.h"

/* bytes -> ir_load_memory; when it succeeds, the graph's invariants, then
 * mha_model_load_memory (recognise + verify) and, for a small recognised
 * layer, one mha_run on the scalar backend. */
int fuzz_onnx_model_one(const uint8_t *data, size_t size);

/* bytes -> npy_parse_header, and the same bytes as a file through
 * tensorfile_read (pread and mmap paths): both must agree, and what is read
 * must be the file's data. */
int fuzz_npy_one(const uint8_t *data, size_t size);

/* bytes -> ir_load_tensor_proto; a loaded tensor must survive a round trip
 * through ir_save_tensor_proto unchanged. */
int fuzz_tensor_proto_one(const uint8_t *data, size_t size);

/* bytes -> location / offset / length of an external-data initializer of a
 * small model loaded in a temporary folder that holds a few files and
 * symlinks pointing outside; nothing outside the folder may ever be read.
 * Input format: see entry_external_data.c. */
int fuzz_external_data_one(const uint8_t *data, size_t size);

/* The four targets by name ("onnx_model", "npy", "tensor_proto",
 * "external_data"), for the replay driver. */
typedef int (*fuzz_entry_fn)(const uint8_t *data, size_t size);
typedef struct fuzz_target {
    const char *name;
    fuzz_entry_fn one;
} fuzz_target;
extern const fuzz_target fuzz_targets[];
extern const size_t fuzz_target_count;

/* Checks shared by the entries (fuzz_common.c). */

/* Prints "fuzz check failed at file:line: what" and aborts. */
void fuzz_check_failed(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) fuzz_check_failed(__FILE__, __LINE__, __VA_ARGS__);                           \
    } while (0)

/* A failed call must leave a clean error: st a known status other than
 * MHA_OK and MHA_ERR_INTERNAL, err->status == st, a non-empty one-line
 * message. `what` names the call. */
void fuzz_check_error(const char *what, mha_status st, const mha_error *err);

/* The lowest free file descriptor: equal before and after an entry means
 * no descriptor leaked. */
int fuzz_lowest_free_fd(void);

/* With MHA_FUZZ_VERBOSE set, the entries say on stderr how far each input
 * got ("ir_load_memory: MHA_ERR_... message"): for studying a regression. */
void fuzz_note(const char *what, mha_status st, const mha_error *err);

/* A private temporary folder for this process (created on first use under
 * $MHA_FUZZ_TMP, $TMPDIR or /tmp, removed at exit). */
const char *fuzz_tmpdir(void);

#endif
