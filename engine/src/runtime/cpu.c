/* cpu.c -- CPU feature detection for plugin probes: CPUID leaves 1 and 7
 * say what the processor implements, XGETBV says whether the OS saves the
 * wider registers on a context switch (without that, AVX or AVX-512 code
 * would see its upper halves clobbered). A feature is reported only when
 * both agree. Also the parser of feature masks (MHA_CPU_MASK) and the
 * printable list. */
#include "registry.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define CPU_X86 1
#else
#define CPU_X86 0
#endif

/* Every AVX-512 bit of plugin.h, hidden together by the name "avx512". */
#define CPU_AVX512_ALL                                                                             \
    (MHA_CPU_AVX512F | MHA_CPU_AVX512DQ | MHA_CPU_AVX512BW | MHA_CPU_AVX512VL | MHA_CPU_AVX512BF16)

#if CPU_X86
/* XCR0: which register states the OS saves (bit 1 SSE, 2 AVX upper halves,
 * 5-7 AVX-512 opmask / ZMM0-15 upper / ZMM16-31). Only valid with OSXSAVE. */
static uint64_t cpu_read_xcr0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}
#endif

uint64_t cpu_detect_features(void) {
    uint64_t f = 0;
#if CPU_X86
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    if (edx & (1u << 26)) f |= MHA_CPU_SSE2;
    if (ecx & (1u << 19)) f |= MHA_CPU_SSE41;

    /* AVX and everything above it needs the OS to save YMM state */
    int os_ymm = 0, os_zmm = 0;
    if (ecx & (1u << 27)) { /* OSXSAVE: XGETBV is usable */
        uint64_t xcr0 = cpu_read_xcr0();
        os_ymm = (xcr0 & 0x6) == 0x6;
        os_zmm = os_ymm && (xcr0 & 0xe0) == 0xe0;
    }
    int has_avx = os_ymm && (ecx & (1u << 28));
    if (has_avx) {
        f |= MHA_CPU_AVX;
        if (ecx & (1u << 29)) f |= MHA_CPU_F16C;
        if (ecx & (1u << 12)) f |= MHA_CPU_FMA;
    }

    unsigned max_leaf = __get_cpuid_max(0, NULL);
    if (max_leaf >= 7) {
        __cpuid_count(7, 0, eax, ebx, ecx, edx);
        unsigned max_sub7 = eax;
        if (has_avx && (ebx & (1u << 5))) f |= MHA_CPU_AVX2;
        if (os_zmm && (ebx & (1u << 16))) {
            f |= MHA_CPU_AVX512F;
            if (ebx & (1u << 17)) f |= MHA_CPU_AVX512DQ;
            if (ebx & (1u << 30)) f |= MHA_CPU_AVX512BW;
            if (ebx & (1u << 31)) f |= MHA_CPU_AVX512VL;
            if (max_sub7 >= 1) {
                __cpuid_count(7, 1, eax, ebx, ecx, edx);
                if (eax & (1u << 5)) f |= MHA_CPU_AVX512BF16;
            }
        }
    }
#endif
    return f;
}

/* Names accepted by cpu_parse_mask and printed by cpu_features_str. */
static const struct {
    const char *name;
    uint64_t bits;
} cpu_names[] = {
    {"sse2", MHA_CPU_SSE2},
    {"sse4.1", MHA_CPU_SSE41},
    {"avx", MHA_CPU_AVX},
    {"f16c", MHA_CPU_F16C},
    {"fma", MHA_CPU_FMA},
    {"avx2", MHA_CPU_AVX2},
    {"avx512f", MHA_CPU_AVX512F},
    {"avx512dq", MHA_CPU_AVX512DQ},
    {"avx512bw", MHA_CPU_AVX512BW},
    {"avx512vl", MHA_CPU_AVX512VL},
    {"avx512bf16", MHA_CPU_AVX512BF16},
};

/* Mask-only aliases: a family name hides what code built for it needs. */
static const struct {
    const char *name;
    uint64_t bits;
} cpu_mask_aliases[] = {
    {"sse41", MHA_CPU_SSE41},
    {"avx512", CPU_AVX512_ALL},
    {"avx2", MHA_CPU_AVX2 | MHA_CPU_FMA}, /* avx2 kernels are built with -mfma */
};

static int cpu_name_eq(const char *a, size_t alen, const char *b) {
    if (strlen(b) != alen) return 0;
    for (size_t i = 0; i < alen; i++)
        if (tolower((unsigned char)a[i]) != b[i]) return 0;
    return 1;
}

static uint64_t cpu_lookup_name(const char *s, size_t len, int *found) {
    *found = 1;
    for (size_t i = 0; i < sizeof cpu_mask_aliases / sizeof cpu_mask_aliases[0]; i++)
        if (cpu_name_eq(s, len, cpu_mask_aliases[i].name)) return cpu_mask_aliases[i].bits;
    for (size_t i = 0; i < sizeof cpu_names / sizeof cpu_names[0]; i++)
        if (cpu_name_eq(s, len, cpu_names[i].name)) return cpu_names[i].bits;
    *found = 0;
    return 0;
}

uint64_t cpu_parse_mask(const char *s, int *ok) {
    int dummy;
    if (!ok) ok = &dummy;
    *ok = 0;
    if (!s) return 0;
    while (isspace((unsigned char)*s))
        s++;

    /* hex: "0x60" (the MHA_CPU_* bits) */
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        const char *p = s + 2;
        uint64_t v = 0;
        int digits = 0;
        for (; isxdigit((unsigned char)*p); p++, digits++) {
            if (digits >= 16) return 0;
            int c = tolower((unsigned char)*p);
            v = (v << 4) | (uint64_t)(isdigit(c) ? c - '0' : c - 'a' + 10);
        }
        while (isspace((unsigned char)*p))
            p++;
        if (digits == 0 || *p) return 0;
        *ok = 1;
        return v;
    }

    /* names: "avx512,avx2" (an empty string hides nothing) */
    uint64_t mask = 0;
    const char *p = s;
    while (*p) {
        while (*p == ',' || isspace((unsigned char)*p))
            p++;
        if (!*p) break;
        const char *start = p;
        while (*p && *p != ',' && !isspace((unsigned char)*p))
            p++;
        int found;
        uint64_t bits = cpu_lookup_name(start, (size_t)(p - start), &found);
        if (!found) return 0;
        mask |= bits;
    }
    *ok = 1;
    return mask;
}

const char *cpu_features_str(uint64_t features, char *buf, size_t size) {
    if (!buf || size == 0) return "";
    buf[0] = '\0';
    size_t used = 0;
    for (size_t i = 0; i < sizeof cpu_names / sizeof cpu_names[0]; i++) {
        if (!(features & cpu_names[i].bits)) continue;
        int n = snprintf(buf + used, size - used, "%s%s", used ? " " : "", cpu_names[i].name);
        if (n < 0 || (size_t)n >= size - used) { /* does not fit: keep whole names */
            buf[used] = '\0';
            break;
        }
        used += (size_t)n;
    }
    if (used == 0) snprintf(buf, size, "(none)");
    return buf;
}
