/* common.h -- internal helpers shared by every engine module: error
 * reporting into mha_error, the allocator every allocation goes through,
 * checked size arithmetic. */
#ifndef MHA_COMMON_H
#define MHA_COMMON_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "mha/mha.h"

#if defined(__GNUC__)
#define MHA_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define MHA_INTERNAL __attribute__((visibility("hidden")))
#else
#define MHA_PRINTF(a, b)
#define MHA_INTERNAL
#endif

/* Sets err (if not NULL) to st and a formatted one-line message; returns st.
 * Usage: return mha_fail(err, MHA_ERR_SHAPE, "input '%s': ...", name); */
mha_status mha_fail(mha_error *err, mha_status st, const char *fmt, ...) MHA_PRINTF(3, 4);
mha_status mha_failv(mha_error *err, mha_status st, const char *fmt, va_list ap);
/* Prefixes the message already in err with "prefix: " (e.g. a file name). */
void mha_error_prefix(mha_error *err, const char *fmt, ...) MHA_PRINTF(2, 3);

/* The allocator of a runtime or model. NULL means malloc. Every allocation of
 * the library goes through mha_malloc / mha_calloc / mha_free with one. The
 * fault-injection hook (tests) lives behind it. */
typedef struct mha_alloc_ctx {
    mha_allocator user; /* alloc == NULL: use the C library */
} mha_alloc_ctx;

void mha_alloc_ctx_init(mha_alloc_ctx *ctx, const mha_allocator *user);
void *mha_malloc(const mha_alloc_ctx *ctx, size_t size);           /* 64-byte aligned */
void *mha_calloc(const mha_alloc_ctx *ctx, size_t n, size_t size); /* checked product */
void mha_free(const mha_alloc_ctx *ctx, void *p);
char *mha_strdup(const mha_alloc_ctx *ctx, const char *s); /* mha_malloc_small'd */
/* For small pieces no kernel reads with SIMD loads (names, protobuf-c's
 * structs): the C library's own alignment (16), no rounding to 64 bytes --
 * a 5-byte name costs ~32 bytes instead of ~128, which is what a file of
 * many tiny fields multiplies. Freed with mha_free. */
void *mha_malloc_small(const mha_alloc_ctx *ctx, size_t size);
void *mha_calloc_small(const mha_alloc_ctx *ctx, size_t n, size_t size); /* checked product */
/* Gives the pages of freed heap blocks back to the system (glibc keeps
 * them otherwise) when ctx is the C library's allocator; between the phases
 * of a load. */
void mha_alloc_trim(const mha_alloc_ctx *ctx);
/* What a load frees before a trim is worth its cost (mha_alloc_trim walks the
 * heap; the pages it returns fault in again when reused). */
#define MHA_TRIM_AFTER_BYTES ((size_t)4 << 20)

#ifdef MHA_TEST_HOOKS
/* Test hook, in test builds only (mha_static_testing): when set to N > 0,
 * the N-th allocation from now (process-wide, counted over every context)
 * fails; persistent = every one after it too. */
void mha_alloc_fail_at(long n, int persistent);
long mha_alloc_count(void);
#endif

/* Whether a model may compute in dtype: a known size, and not one of the
 * file-only storage types of token ids (uint16, int16, uint32), which the
 * readers widen and the importer and interpreter refuse as before. */
int mha_dtype_in_models(mha_dtype dtype);

/* Checked arithmetic: return 0 on overflow. */
int mha_mul_size(size_t a, size_t b, size_t *out);
int mha_add_size(size_t a, size_t b, size_t *out);
int mha_mul_i64(int64_t a, int64_t b, int64_t *out);

#endif
