/* common.c -- error messages, the allocator every allocation goes through
 * (with the fault-injection switch the tests use), checked arithmetic, and
 * the small public helpers (versions, status names, dtypes). */
#include "common.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>
#endif

/* ---- version and status names (public) ---- */

MHA_API unsigned mha_version_number(void) {
    return MHA_VERSION_NUMBER;
}

MHA_API const char *mha_version_string(void) {
    return MHA_VERSION_STRING;
}

MHA_API const char *mha_status_name(mha_status status) {
    switch (status) {
#define MHA_STATUS_NAME_(name, value, text)                                                        \
    case name:                                                                                     \
        return #name;
        MHA_STATUS_LIST(MHA_STATUS_NAME_)
#undef MHA_STATUS_NAME_
    }
    return "MHA_UNKNOWN_STATUS";
}

MHA_API const char *mha_status_text(mha_status status) {
    switch (status) {
#define MHA_STATUS_TEXT_(name, value, text)                                                        \
    case name:                                                                                     \
        return text;
        MHA_STATUS_LIST(MHA_STATUS_TEXT_)
#undef MHA_STATUS_TEXT_
    }
    return "unknown status";
}

MHA_API void mha_error_clear(mha_error *err) {
    if (!err) return;
    err->status = MHA_OK;
    err->message[0] = '\0';
}

int mha_dtype_in_models(mha_dtype dtype) {
    return mha_dtype_size(dtype) > 0 && dtype != MHA_DTYPE_UINT16 && dtype != MHA_DTYPE_INT16 &&
           dtype != MHA_DTYPE_UINT32;
}

MHA_API size_t mha_dtype_size(mha_dtype dtype) {
    switch (dtype) {
    case MHA_DTYPE_FLOAT32:
    case MHA_DTYPE_INT32:
        return 4;
    case MHA_DTYPE_UINT8:
    case MHA_DTYPE_INT8:
    case MHA_DTYPE_BOOL:
        return 1;
    case MHA_DTYPE_INT64:
    case MHA_DTYPE_FLOAT64:
        return 8;
    case MHA_DTYPE_FLOAT16:
    case MHA_DTYPE_BFLOAT16:
    case MHA_DTYPE_UINT16:
    case MHA_DTYPE_INT16:
        return 2;
    case MHA_DTYPE_UINT32:
        return 4;
    case MHA_DTYPE_UNDEFINED:
        break;
    }
    return 0;
}

MHA_API const char *mha_dtype_name(mha_dtype dtype) {
    switch (dtype) {
    case MHA_DTYPE_FLOAT32:
        return "float32";
    case MHA_DTYPE_UINT8:
        return "uint8";
    case MHA_DTYPE_INT8:
        return "int8";
    case MHA_DTYPE_INT32:
        return "int32";
    case MHA_DTYPE_INT64:
        return "int64";
    case MHA_DTYPE_BOOL:
        return "bool";
    case MHA_DTYPE_FLOAT16:
        return "float16";
    case MHA_DTYPE_FLOAT64:
        return "float64";
    case MHA_DTYPE_BFLOAT16:
        return "bfloat16";
    case MHA_DTYPE_UINT16:
        return "uint16";
    case MHA_DTYPE_INT16:
        return "int16";
    case MHA_DTYPE_UINT32:
        return "uint32";
    case MHA_DTYPE_UNDEFINED:
        break;
    }
    return "undefined";
}

MHA_API const char *mha_io_role_name(mha_io_role role) {
    switch (role) {
    case MHA_ROLE_QUERY:
        return "query";
    case MHA_ROLE_KEY_VALUE:
        return "key_value";
    case MHA_ROLE_Q:
        return "q";
    case MHA_ROLE_K:
        return "k";
    case MHA_ROLE_V:
        return "v";
    case MHA_ROLE_ATTN_MASK:
        return "attn_mask";
    case MHA_ROLE_KEY_PADDING_MASK:
        return "key_padding_mask";
    case MHA_ROLE_PAST_KEY:
        return "past_key";
    case MHA_ROLE_PAST_VALUE:
        return "past_value";
    case MHA_ROLE_NONPAD_KV_SEQLEN:
        return "nonpad_kv_seqlen";
    case MHA_ROLE_OUTPUT:
        return "output";
    case MHA_ROLE_PRESENT_KEY:
        return "present_key";
    case MHA_ROLE_PRESENT_VALUE:
        return "present_value";
    case MHA_ROLE_QK_OUTPUT:
        return "qk_output";
    case MHA_ROLE_ATTN_WEIGHTS:
        return "attn_weights";
    case MHA_ROLE_TOKEN_IDS:
        return "token_ids";
    case MHA_ROLE_POSITION_IDS:
        return "position_ids";
    case MHA_ROLE_ROTARY_COS:
        return "rotary_cos";
    case MHA_ROLE_ROTARY_SIN:
        return "rotary_sin";
    case MHA_ROLE_VALUE_INPUT:
        return "value_input";
    case MHA_ROLE_ATTN_BIAS:
        return "attn_bias";
    }
    return "unknown";
}

MHA_API int64_t mha_tensor_numel(const mha_tensor *t) {
    if (!t || t->rank < 0 || t->rank > MHA_MAX_RANK) return -1;
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++) {
        if (t->shape[i] < 0 || !mha_mul_i64(n, t->shape[i], &n)) return -1;
    }
    return n;
}

/* ---- errors ---- */

/* Length of the well-formed UTF-8 sequence at s (2..4), or 0 when the
 * bytes there are not one (overlong forms, surrogates, past U+10FFFF). */
static size_t utf8_sequence_length(const unsigned char *s) {
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k < len; k++)
        if (s[k] < 0x80 || s[k] > 0xBF) return 0;
    return len;
}

MHA_API char *mha_text_escape(char *dst, size_t dst_size, const char *src) {
    if (!dst || dst_size == 0) return dst;
    const unsigned char *s = (const unsigned char *)(src ? src : "");
    size_t used = 0;
    while (*s) {
        char piece[16];
        size_t take = 1, plen;
        if (*s == '\n' || *s == '\r' || *s == '\t') {
            piece[0] = ' ';
            plen = 1;
        } else if (*s < 0x20 || *s == 0x7F) {
            plen = (size_t)snprintf(piece, sizeof piece, "\\x%02x", *s);
        } else if (*s < 0x80) {
            piece[0] = (char)*s;
            plen = 1;
        } else if ((take = utf8_sequence_length(s)) == 0) {
            take = 1;
            plen = (size_t)snprintf(piece, sizeof piece, "\\x%02x", *s);
        } else if (s[0] == 0xC2 && s[1] <= 0x9F) {
            plen = (size_t)snprintf(piece, sizeof piece, "\\x%02x\\x%02x", s[0], s[1]);
        } else {
            memcpy(piece, s, take);
            plen = take;
        }
        if (used + plen >= dst_size) break;
        memcpy(dst + used, piece, plen);
        used += plen;
        s += take;
    }
    dst[used] = '\0';
    return dst;
}

/* Room to format a message before it is fitted: a path of PATH_MAX bytes
 * and the text around it. */
#define ERROR_RAW_MAX 8192

/* src escaped into dst (dst_size = MHA_ERROR_MESSAGE_MAX): one that does
 * not fit keeps its start and its end around " ... ", so that a path of
 * thousands of bytes still leaves the reason after it ("...: File name too
 * long") rather than cutting it off; the cuts fall between UTF-8
 * characters. */
static void error_fit(char *dst, size_t dst_size, const char *src) {
    char esc[ERROR_RAW_MAX];
    mha_text_escape(esc, sizeof esc, src);
    const size_t n = strlen(esc);
    if (n < dst_size) {
        memcpy(dst, esc, n + 1);
        return;
    }
    static const char gap[] = " ... ";
    size_t head = (dst_size - sizeof gap) / 4; /* the rest for the tail */
    size_t tail = n - (dst_size - sizeof gap - head);
    while (head > 0 && ((unsigned char)esc[head] & 0xC0) == 0x80)
        head--;
    while (tail < n && ((unsigned char)esc[tail] & 0xC0) == 0x80)
        tail++;
    memcpy(dst, esc, head);
    memcpy(dst + head, gap, sizeof gap - 1);
    memcpy(dst + head + sizeof gap - 1, esc + tail, n - tail + 1);
}

mha_status mha_failv(mha_error *err, mha_status st, const char *fmt, va_list ap) {
    if (err) {
        err->status = st;
        char raw[ERROR_RAW_MAX];
        vsnprintf(raw, sizeof raw, fmt, ap);
        error_fit(err->message, sizeof err->message, raw);
    }
    return st;
}

mha_status mha_fail(mha_error *err, mha_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    mha_failv(err, st, fmt, ap);
    va_end(ap);
    return st;
}

void mha_error_prefix(mha_error *err, const char *fmt, ...) {
    if (!err) return;
    char prefix[ERROR_RAW_MAX], joined[ERROR_RAW_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    /* a long prefix keeps its start and the message's end (error_fit) */
    if (snprintf(joined, sizeof joined, "%s: %s", prefix, err->message) < 0) joined[0] = '\0';
    error_fit(err->message, sizeof err->message, joined);
}

/* ---- allocation ---- */

#ifdef MHA_TEST_HOOKS
/* Fault injection, compiled into test builds only (mha_static_testing): a
 * process-wide counter, which the shipped library -- no global state --
 * must not have. */
static atomic_long alloc_counter;
static atomic_long alloc_fail_at; /* 0 = off */
static atomic_int alloc_fail_persistent;

void mha_alloc_fail_at(long n, int persistent) {
    atomic_store(&alloc_counter, 0);
    atomic_store(&alloc_fail_persistent, persistent);
    atomic_store(&alloc_fail_at, n);
}

long mha_alloc_count(void) {
    return atomic_load(&alloc_counter);
}

static int alloc_should_fail(void) {
    long at = atomic_load_explicit(&alloc_fail_at, memory_order_relaxed);
    long n = atomic_fetch_add(&alloc_counter, 1) + 1;
    if (at <= 0) return 0;
    return n == at || (n > at && atomic_load(&alloc_fail_persistent));
}
#else
static int alloc_should_fail(void) {
    return 0;
}
#endif

void mha_alloc_ctx_init(mha_alloc_ctx *ctx, const mha_allocator *user) {
    memset(ctx, 0, sizeof *ctx);
    if (user && user->alloc && user->free) ctx->user = *user;
}

void *mha_malloc(const mha_alloc_ctx *ctx, size_t size) {
    if (alloc_should_fail()) return NULL;
    if (size == 0) size = 1;
    if (ctx && ctx->user.alloc) return ctx->user.alloc(ctx->user.user, size, 64);
    void *p = NULL;
    size_t rounded;
    if (!mha_add_size(size, 63, &rounded)) return NULL;
    rounded &= ~(size_t)63;
    p = aligned_alloc(64, rounded);
    return p;
}

void *mha_malloc_small(const mha_alloc_ctx *ctx, size_t size) {
    if (alloc_should_fail()) return NULL;
    if (size == 0) size = 1;
    if (ctx && ctx->user.alloc) return ctx->user.alloc(ctx->user.user, size, 16);
    return malloc(size);
}

static void *calloc_with(void *(*alloc)(const mha_alloc_ctx *, size_t), const mha_alloc_ctx *ctx,
                         size_t n, size_t size) {
    size_t total;
    if (!mha_mul_size(n, size, &total)) return NULL;
    void *p = alloc(ctx, total);
    if (p) memset(p, 0, total);
    return p;
}

void *mha_calloc(const mha_alloc_ctx *ctx, size_t n, size_t size) {
    return calloc_with(mha_malloc, ctx, n, size);
}

void *mha_calloc_small(const mha_alloc_ctx *ctx, size_t n, size_t size) {
    return calloc_with(mha_malloc_small, ctx, n, size);
}

/* Freed blocks of the C library's allocator from this size on give their
 * pages back to the system at once. glibc serves a block below its mmap
 * threshold from the heap and keeps its pages after free(); the threshold
 * rises to the size of each mapped block freed (up to 32 MiB), so once a
 * load has freed its file buffer, every probe value, weight copy and
 * activation of a few MiB comes from the heap, and each one freed and not
 * reused stays in the peak RSS. mallopt() would set the threshold for the
 * whole host process; dropping the pages of our own block as it is freed
 * does not (the next user of those pages gets them zeroed by the kernel).
 * From 4 MiB: a load's probes and verification free and allocate blocks of
 * 1-4 MiB by the thousand, and faulting each in again cost BERT-base's load
 * a third more time for 20 MiB of peak; mha_alloc_trim serves those. */
#define MHA_GIVE_BACK_BYTES ((size_t)4 << 20)

void mha_alloc_trim(const mha_alloc_ctx *ctx) {
#if defined(__GLIBC__)
    if (!ctx->user.alloc) malloc_trim(0);
#else
    (void)ctx;
#endif
}

static void alloc_give_back(void *p) {
#if defined(__GLIBC__) && defined(MADV_DONTNEED)
    size_t n = malloc_usable_size(p);
    if (n < MHA_GIVE_BACK_BYTES) return;
    long page_l = sysconf(_SC_PAGESIZE);
    uintptr_t page = page_l > 0 ? (uintptr_t)page_l : 4096;
    /* whole pages inside the block, clear of the 64 bytes at each end
     * where free() writes its list links and the next block's header */
    uintptr_t lo = ((uintptr_t)p + 64 + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)p + n - 64) & ~(page - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
#else
    (void)p;
#endif
}

void mha_free(const mha_alloc_ctx *ctx, void *p) {
    if (!p) return;
    if (ctx && ctx->user.free) {
        ctx->user.free(ctx->user.user, p);
        return;
    }
    alloc_give_back(p);
    free(p);
}

char *mha_strdup(const mha_alloc_ctx *ctx, const char *s) {
    if (!s) s = "";
    size_t n = strlen(s) + 1;
    char *d = mha_malloc_small(ctx, n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ---- checked arithmetic ---- */

int mha_mul_size(size_t a, size_t b, size_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}

int mha_add_size(size_t a, size_t b, size_t *out) {
    return !__builtin_add_overflow(a, b, out);
}

int mha_mul_i64(int64_t a, int64_t b, int64_t *out) {
    return !__builtin_mul_overflow(a, b, out);
}
