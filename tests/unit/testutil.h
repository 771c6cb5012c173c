/* testutil.h -- small helpers shared by the cmocka unit tests: temporary
 * folders, files, seeded random data. cmocka headers need these includes in
 * this order, so every test includes this file first. */
#ifndef MHA_TESTUTIL_H
#define MHA_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mha/mha.h"
#include "mha/plugin.h"

/* TEST_UNDER_TSAN: defined in ThreadSanitizer builds (gcc or clang). */
#if defined(__SANITIZE_THREAD__)
#define TEST_UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TEST_UNDER_TSAN 1
#endif
#endif

/* TEST_UNDER_ASAN: defined in AddressSanitizer builds (gcc or clang). */
#if defined(__SANITIZE_ADDRESS__)
#define TEST_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_UNDER_ASAN 1
#endif
#endif

/* A fresh, empty folder MHA_TEST_TMP/<name> (created, old contents removed). */
const char *tu_tmpdir(const char *name);
/* path = dir + "/" + file, in a static rotating buffer (8 slots). */
const char *tu_path(const char *dir, const char *file);
int tu_write_file(const char *path, const void *data, size_t size);
/* malloc'd contents (free it), NULL on error. */
void *tu_read_file(const char *path, size_t *size);
/* Uniform [-1, 1) floats from a splitmix64 stream. */
void tu_fill_random(float *x, size_t n, uint64_t seed);
uint64_t tu_rand_u64(uint64_t *state);
/* Uniform [-scale, scale) floats from a 64-bit LCG (the kernel tests' data). */
void tu_fill_lcg(float *x, size_t n, uint64_t seed, float scale);
/* 1 when this CPU runs the avx512 kernels (AVX-512 F and DQ). */
int tu_cpu_has_avx512(void);
/* max |a-b| / max(1, max |b|) -- relative to the reference's scale. */
double tu_max_rel_err(const float *a, const float *b, size_t n);
/* Runs a shell command, returns its exit status (or -1). */
int tu_system(const char *fmt, ...);
/* Services for a plugin's init() in tests: malloc-backed alloc / free (any
 * alignment), a silent log, and the CPU features the plugin may use. */
mha_plugin_services tu_plugin_services(uint64_t cpu_features);
/* An allocator (any alignment) that counts in *live the blocks it handed
 * out and has not had back: 0 after a balanced use. */
mha_allocator tu_counting_allocator(int *live);

#endif
