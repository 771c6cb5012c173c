/* testutil.c -- see testutil.h. */
#define _GNU_SOURCE
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

const char *tu_tmpdir(const char *name) {
    static char buf[4][1024];
    static int slot;
    char *p = buf[slot++ & 3];
    snprintf(p, 1024, "%s/%s", MHA_TEST_TMP, name);
    tu_system("rm -rf '%s' && mkdir -p '%s'", p, p);
    return p;
}

const char *tu_path(const char *dir, const char *file) {
    static char buf[8][1200];
    static int slot;
    char *p = buf[slot++ & 7];
    snprintf(p, 1200, "%s/%s", dir, file);
    return p;
}

int tu_write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = size ? fwrite(data, 1, size, f) : 0;
    int rc = fclose(f);
    return (w == size && rc == 0) ? 0 : -1;
}

void *tu_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(n > 0 ? (size_t)n : 1);
    if (p && n > 0 && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p && size) *size = (size_t)n;
    return p;
}

uint64_t tu_rand_u64(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void tu_fill_random(float *x, size_t n, uint64_t seed) {
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((double)(tu_rand_u64(&s) >> 11) * (2.0 / 9007199254740992.0) - 1.0);
}

double tu_max_rel_err(const float *a, const float *b, size_t n) {
    double scale = 1.0, err = 0.0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs((double)b[i]));
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d) return INFINITY;
        err = fmax(err, d);
    }
    return err / scale;
}

int tu_system(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc)) return -1;
    return WEXITSTATUS(rc);
}

static void *tu_svc_alloc(void *ctx, size_t size, size_t align) {
    (void)ctx;
    if (align < sizeof(void *)) align = sizeof(void *);
    void *p = NULL;
    return posix_memalign(&p, align, size ? size : 1) == 0 ? p : NULL;
}

static void tu_svc_free(void *ctx, void *p) {
    (void)ctx;
    free(p);
}

static void tu_svc_log(void *ctx, int level, const char *msg) {
    (void)ctx, (void)level, (void)msg;
}

mha_plugin_services tu_plugin_services(uint64_t cpu_features) {
    mha_plugin_services s = {sizeof s, NULL, tu_svc_log, tu_svc_alloc, tu_svc_free, cpu_features};
    return s;
}

static void *tu_count_alloc(void *user, size_t size, size_t align) {
    void *p = tu_svc_alloc(NULL, size, align);
    if (p) (*(int *)user)++;
    return p;
}

static void tu_count_free(void *user, void *p) {
    if (p) (*(int *)user)--;
    free(p);
}

mha_allocator tu_counting_allocator(int *live) {
    mha_allocator a = {tu_count_alloc, tu_count_free, live};
    return a;
}

void tu_fill_lcg(float *x, size_t n, uint64_t seed, float scale) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        x[i] = (float)((int32_t)(seed >> 32)) * 0x1p-31f * scale;
    }
}

int tu_cpu_has_avx512(void) {
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#else
    return 0;
#endif
}
