/* bench_util.h -- helpers the bench programs share (the programs of tests/bench):
 * doubles in ascending order for qsort (medians, quartiles), the FNV-1a
 * hash of a buffer's bytes (two builds' outputs compared bit for bit) and a
 * clock in seconds. */
#ifndef MHA_TESTS_BENCH_UTIL_H
#define MHA_TESTS_BENCH_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

static inline int bench_cmp_double(const void *x, const void *y) {
    const double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

static inline uint64_t bench_fnv1a(const void *p, size_t n) {
    const unsigned char *c = p;
    uint64_t h = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

/* clock id (CLOCK_MONOTONIC, CLOCK_PROCESS_CPUTIME_ID, ...) in seconds */
static inline double bench_clock(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#endif
