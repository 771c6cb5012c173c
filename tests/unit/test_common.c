/* test_common.c -- the engine's common helpers: mha_text_escape (what a
 * model's names may carry to a terminal) and the messages built on it;
 * the allocator giving the pages of large freed blocks back. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static const char *esc(const char *s, char *buf, size_t n) {
    return mha_text_escape(buf, n, s);
}

static void test_escape_controls(void **state) {
    (void)state;
    char buf[128];
    assert_string_equal(esc("plain ascii: a-z_0.9", buf, sizeof buf), "plain ascii: a-z_0.9");
    assert_string_equal(esc("\033[31mred\033[0m", buf, sizeof buf), "\\x1b[31mred\\x1b[0m");
    assert_string_equal(esc("bell\a del\x7f", buf, sizeof buf), "bell\\x07 del\\x7f");
    assert_string_equal(esc("one\ntwo\rthree\tfour", buf, sizeof buf), "one two three four");
    /* valid UTF-8 passes; C1 controls written in UTF-8 and stray bytes do not */
    assert_string_equal(esc("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", buf, sizeof buf),
                        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    assert_string_equal(esc("csi\xc2\x9b"
                            "2J",
                            buf, sizeof buf),
                        "csi\\xc2\\x9b2J");
    assert_string_equal(esc("lone\x9b"
                            "2J",
                            buf, sizeof buf),
                        "lone\\x9b2J");
    assert_string_equal(esc("over\xc0\xaflong", buf, sizeof buf), "over\\xc0\\xaflong");
    assert_string_equal(esc("surrogate\xed\xa0\x80", buf, sizeof buf), "surrogate\\xed\\xa0\\x80");
    assert_string_equal(esc("cut\xe2\x82", buf, sizeof buf), "cut\\xe2\\x82");
    /* escaping twice changes nothing */
    char twice[128];
    esc("\033]0;title\a\x9b", buf, sizeof buf);
    assert_string_equal(esc(buf, twice, sizeof twice), buf);
}

static void test_escape_truncation(void **state) {
    (void)state;
    char small[6];
    /* an escape that does not fit is left out whole, never cut */
    assert_string_equal(esc("ab\033cd", small, sizeof small), "ab");
    assert_string_equal(esc("\xe2\x82\xac\xe2\x82\xac", small, sizeof small), "\xe2\x82\xac");
    char one[1];
    assert_string_equal(esc("x", one, sizeof one), "");
    assert_string_equal(esc(NULL, small, sizeof small), "");
}

static void test_messages_escaped(void **state) {
    (void)state;
    mha_error err;
    mha_error_clear(&err);
    mha_fail(&err, MHA_ERR_MODEL_UNSUPPORTED, "node '%s' of type '%s'", "n\033[2J", "Op\a");
    assert_int_equal(err.status, MHA_ERR_MODEL_UNSUPPORTED);
    assert_string_equal(err.message, "node 'n\\x1b[2J' of type 'Op\\x07'");
    mha_error_prefix(&err, "%s", "dir\033]/model.onnx");
    assert_string_equal(err.message, "dir\\x1b]/model.onnx: node 'n\\x1b[2J' of type 'Op\\x07'");
}

/* Resident bytes of this process (statm), 0 when unknown. */
static size_t resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, res = 0;
    if (f && fscanf(f, "%lu %lu", &size, &res) != 2) res = 0;
    if (f) fclose(f);
    return (size_t)res * 4096u;
}

/* A freed block of many MiB leaves the resident set at once, even where
 * glibc would keep its pages: after a mapped block of 24 MiB is freed,
 * glibc's mmap threshold is 24 MiB, so the 16 MiB block below comes from
 * the heap, and free() alone keeps its pages (a small block after it keeps
 * it off the top of the heap). */
static void test_free_gives_pages_back(void **state) {
    (void)state;
    const size_t n = (size_t)16 << 20;
    char *raise = malloc((size_t)24 << 20);
    assert_non_null(raise);
    raise[0] = 1;
    free(raise);
    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, NULL);
    char *p = mha_malloc(&a, n);
    assert_non_null(p);
    memset(p, 1, n);
    char *guard = mha_malloc_small(&a, 64);
    assert_non_null(guard);
    size_t before = resident_bytes();
    mha_free(&a, p);
    size_t after = resident_bytes();
    mha_free(&a, guard);
    assert_true(before > 0);
    assert_true(after + n / 4 * 3 <= before);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape_controls),
        cmocka_unit_test(test_escape_truncation),
        cmocka_unit_test(test_messages_escaped),
        cmocka_unit_test(test_free_gives_pages_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
