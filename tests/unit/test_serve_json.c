/* test_serve_json.c -- `mha serve`'s JSON numbers (tools/serve_json.c): its
 * own float formatter gives snprintf's "%.9g" text and its own parser
 * strtof's float, bit for bit, over random float32 bit patterns, the floats
 * next to powers of ten, and random decimal texts (a tie at the tenth digit
 * and a decimal that falls on a midpoint between two floats included). */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tools/serve_json.c"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static uint64_t next_u64(void) { /* xorshift64* */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545f4914f6cdd1dULL;
}

/* f formatted both ways must read the same, and read back to f. */
static void check_float(float f) {
    char want[64], got[32];
    snprintf(want, sizeof want, "%.9g", (double)f);
    const size_t n = serve_json_float(f, got);
    if (n != strlen(want) || strcmp(got, want) != 0)
        fail_msg("%a: serve_json_float '%s', snprintf '%s'", (double)f, got, want);
    if (isfinite(f)) {
        const float back = serve_json_strtof(want), ref = strtof(want, NULL);
        if (memcmp(&back, &ref, sizeof back) != 0)
            fail_msg("'%s': serve_json_strtof %a, strtof %a", want, (double)back, (double)ref);
    }
}

static void test_format_matches_snprintf(void **state) {
    (void)state;
    for (int i = 0; i < 400000; i++) {
        uint32_t b = (uint32_t)next_u64();
        float f;
        memcpy(&f, &b, sizeof f);
        if (!isnan(f)) check_float(f);
    }
    /* the floats around every power of ten a float holds, and the small
     * integers and halves (ties at the tenth digit: 2097151.875) */
    for (int p = -45; p <= 38; p++) {
        float c = (float)pow(10.0, p);
        for (int k = 0; k < 64; k++) {
            check_float(c);
            check_float(-c);
            c = nextafterf(c, INFINITY);
        }
    }
    for (int i = 0; i < 100000; i++) {
        check_float((float)i / 8.0f);
        check_float(16777216.0f - (float)i);
    }
    check_float(0.0f);
    check_float(-0.0f);
    check_float(FLT_MAX);
    check_float(FLT_MIN);
    check_float(FLT_TRUE_MIN);
    check_float(INFINITY);
}

static void test_parse_matches_strtof(void **state) {
    (void)state;
    char text[80];
    for (int i = 0; i < 400000; i++) {
        const uint64_t r = next_u64();
        const int digits = 1 + (int)(r % 18), point = (int)(r >> 8 & 31) % (digits + 1);
        size_t k = 0;
        if (r >> 20 & 1) text[k++] = '-';
        for (int d = 0; d < digits; d++) {
            if (d == point && d > 0) text[k++] = '.';
            /* no leading zero before other digits (JSON's syntax) */
            text[k++] = (char)('0' + (d == 0 && digits > 1 && point != 1 ? 1 + (int)(next_u64() % 9)
                                                                         : (int)(next_u64() % 10)));
        }
        if (r >> 21 & 1)
            k += (size_t)snprintf(text + k, sizeof text - k, "e%d", (int)(r >> 24 % 97) % 97 - 48);
        text[k] = '\0';
        const float got = serve_json_strtof(text), want = strtof(text, NULL);
        if (memcmp(&got, &want, sizeof got) != 0)
            fail_msg("'%s': serve_json_strtof %a, strtof %a", text, (double)got, (double)want);
    }
    /* decimals that are midpoints between two floats: 2^24 + odd */
    for (int i = 1; i < 4000; i += 2) {
        snprintf(text, sizeof text, "%d", 16777216 + i);
        const float got = serve_json_strtof(text), want = strtof(text, NULL);
        assert_memory_equal(&got, &want, sizeof got);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_matches_snprintf),
        cmocka_unit_test(test_parse_matches_strtof),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
