/*
 * str_test.c - tests for base/str: slices, comparisons, keel_str_to_u64
 * limits, keel_str_clip on UTF-8 boundaries, capped edit distance.
 */
#include "base/str.h"

#include "base/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static struct keel_str S(const char *s)
{
    return keel_str_c(s);
}

static void test_slice_from_cstr(void **state)
{
    (void)state;
    struct keel_str s = keel_str_c("abc");
    assert_int_equal(s.n, 3);
    assert_memory_equal(s.p, "abc", 3);
    struct keel_str n = keel_str_c(NULL);
    assert_non_null(n.p);
    assert_int_equal(n.n, 0);
}

static void test_equality(void **state)
{
    (void)state;
    assert_true(keel_str_eq(S("abc"), S("abc")));
    assert_false(keel_str_eq(S("abc"), S("abd")));
    assert_false(keel_str_eq(S("abc"), S("ab")));
    assert_true(keel_str_eq(S(""), S(NULL)));
    struct keel_str part = {"abcdef", 3};
    assert_true(keel_str_eq_c(part, "abc")); /* slices are not NUL-terminated */
    assert_false(keel_str_eq_c(part, "abcdef"));
    struct keel_str empty_null = {NULL, 0};
    assert_true(keel_str_eq(empty_null, S("")));
}

static void test_case_insensitive(void **state)
{
    (void)state;
    assert_true(keel_str_caseeq(S("Content-Type"), S("content-type")));
    assert_true(keel_str_caseeq(S("ABC"), S("abc")));
    assert_false(keel_str_caseeq(S("abc"), S("abcd")));
    assert_false(keel_str_caseeq(S("a["), S("A{"))); /* only letters fold */
    assert_false(keel_str_caseeq(S("\xc3\xa9"), S("\xc3\x89"))); /* ASCII only */
    assert_true(keel_cstr_caseeq("HTTP", "http"));
    assert_true(keel_cstr_caseeq(NULL, ""));
    assert_false(keel_cstr_caseeq(NULL, "x"));
}

static void test_prefix_suffix(void **state)
{
    (void)state;
    assert_true(keel_str_has_prefix(S("istio-system"), S("istio-")));
    assert_true(keel_str_has_prefix(S("abc"), S("")));
    assert_true(keel_str_has_prefix(S("abc"), S("abc")));
    assert_false(keel_str_has_prefix(S("ab"), S("abc")));
    assert_true(keel_str_has_suffix(S("a.istio.io"), S(".istio.io")));
    assert_false(keel_str_has_suffix(S("istio.io"), S(".istio.io")));
    assert_true(keel_str_has_suffix(S(""), S("")));
    assert_true(keel_cstr_has_prefix("x", NULL));
    assert_false(keel_cstr_has_prefix(NULL, "x"));
    assert_true(keel_cstr_has_suffix("file.yaml", ".yaml"));
    assert_false(keel_cstr_has_suffix("yaml", ".yaml"));
    assert_true(keel_cstr_empty(NULL));
    assert_true(keel_cstr_empty(""));
    assert_false(keel_cstr_empty(" "));
}

static void test_to_u64_valid(void **state)
{
    (void)state;
    uint64_t v = 99;
    assert_int_equal(keel_str_to_u64(S("0"), 10, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(keel_str_to_u64(S("007"), 10, &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(keel_str_to_u64(S("65535"), 65535, &v), 0);
    assert_int_equal(v, 65535);
    assert_int_equal(keel_str_to_u64(S("18446744073709551615"), UINT64_MAX, &v), 0);
    assert_true(v == UINT64_MAX);
    struct keel_str part = {"12345", 2};
    assert_int_equal(keel_str_to_u64(part, 100, &v), 0);
    assert_int_equal(v, 12);
}

static void test_to_u64_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {"", "-1", "+1", " 1", "1 ", "1a", "0x10", "1.0", "１"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t v = 4242;
        assert_int_equal(keel_str_to_u64(S(bad[i]), UINT64_MAX, &v), KEEL_EINVAL);
        assert_int_equal(v, 4242); /* untouched on error */
    }
}

static void test_to_u64_overflow(void **state)
{
    (void)state;
    uint64_t v = 4242;
    assert_int_equal(keel_str_to_u64(S("18446744073709551616"), UINT64_MAX, &v), KEEL_ETOOBIG);
    assert_int_equal(keel_str_to_u64(S("99999999999999999999999"), UINT64_MAX, &v), KEEL_ETOOBIG);
    assert_int_equal(keel_str_to_u64(S("65536"), 65535, &v), KEEL_ETOOBIG);
    assert_int_equal(keel_str_to_u64(S("70000"), 65535, &v), KEEL_ETOOBIG);
    assert_int_equal(keel_str_to_u64(S("1"), 0, &v), KEEL_ETOOBIG);
    assert_int_equal(keel_str_to_u64(S("256"), 255, &v), KEEL_ETOOBIG);
    assert_int_equal(v, 4242);
    assert_int_equal(keel_str_to_u64(S("0"), 0, &v), 0);
    assert_int_equal(v, 0);
}

static void test_to_u64_digit_above_small_max(void **state)
{
    (void)state;
    /* a single digit larger than max (the check must not compute max - d) */
    uint64_t v = 4242;
    assert_int_equal(keel_str_to_u64(S("7"), 5, &v), KEEL_ETOOBIG);
    assert_int_equal(keel_str_to_u64(S("19"), 5, &v), KEEL_ETOOBIG);
    assert_int_equal(v, 4242);
}

static void test_clip_short_strings_untouched(void **state)
{
    (void)state;
    char buf[32];
    const char *s = "short";
    assert_ptr_equal(keel_str_clip(s, 5, buf, sizeof(buf)), s);
    assert_ptr_equal(keel_str_clip(s, 100, buf, sizeof(buf)), s);
    const char *e = "";
    assert_ptr_equal(keel_str_clip(e, 0, buf, sizeof(buf)), e);
}

static void test_clip_ascii(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(keel_str_clip("hello world", 5, buf, sizeof(buf)), "hello...");
    assert_string_equal(keel_str_clip("hello world", 10, buf, sizeof(buf)), "hello worl...");
    assert_string_equal(keel_str_clip("abc", 0, buf, sizeof(buf)), "...");
}

static void test_clip_utf8_boundaries(void **state)
{
    (void)state;
    char buf[64];
    /* "héllo": h, C3 A9, l, l, o */
    const char *s = "h\xc3\xa9llo";
    assert_string_equal(keel_str_clip(s, 1, buf, sizeof(buf)), "h...");
    assert_string_equal(keel_str_clip(s, 2, buf, sizeof(buf)), "h...");           /* would split é */
    assert_string_equal(keel_str_clip(s, 3, buf, sizeof(buf)), "h\xc3\xa9...");   /* é whole */
    /* 4-byte character (U+1F600) after "ab" */
    const char *e = "ab\xf0\x9f\x98\x80" "cd";
    assert_string_equal(keel_str_clip(e, 2, buf, sizeof(buf)), "ab...");
    assert_string_equal(keel_str_clip(e, 3, buf, sizeof(buf)), "ab...");
    assert_string_equal(keel_str_clip(e, 4, buf, sizeof(buf)), "ab...");
    assert_string_equal(keel_str_clip(e, 5, buf, sizeof(buf)), "ab...");
    assert_string_equal(keel_str_clip(e, 6, buf, sizeof(buf)), "ab\xf0\x9f\x98\x80...");
    assert_string_equal(keel_str_clip(e, 7, buf, sizeof(buf)), "ab\xf0\x9f\x98\x80" "c...");
    /* all multi-byte: never cut inside a character */
    const char *jp = "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e"; /* 3 x 3 bytes */
    for (size_t max = 0; max < 9; max++) {
        const char *c = keel_str_clip(jp, max, buf, sizeof(buf));
        size_t body = strlen(c) - 3;
        assert_int_equal(body % 3, 0);
        assert_true(body <= max);
        assert_string_equal(c + body, "...");
    }
}

static void test_clip_respects_buffer_size(void **state)
{
    (void)state;
    char buf[8];
    memset(buf, 0, sizeof(buf));
    /* a string within max is returned as is, whatever the buffer size */
    const char *s = "abcdefghijklmnop";
    assert_ptr_equal(keel_str_clip(s, 100, buf, sizeof(buf)), s);
    /* a longer one is cut to fit the buffer, even when max is larger */
    const char *c = keel_str_clip(s, 10, buf, sizeof(buf));
    assert_ptr_equal(c, buf);
    assert_string_equal(c, "abcd...");
    assert_true(strlen(c) < sizeof(buf));
    /* and on a UTF-8 boundary inside a small buffer */
    char b2[6];
    assert_string_equal(keel_str_clip("a\xc3\xa9\xc3\xa9\xc3\xa9", 6, b2, sizeof(b2)), "a...");
}

static void test_clip_tiny_buffer(void **state)
{
    (void)state;
    /* with n < 4 there is no room for "...": the result must still fit in n
     * bytes (keel_str_clip writes 4 bytes of "...\0" after the cut) */
    char buf[16];
    memset(buf, 'Z', sizeof(buf));
    const char *c = keel_str_clip("abcdef", 2, buf, 3);
    assert_true(strlen(c) < 3);
    assert_int_equal(buf[3], 'Z');
}

static void test_edit_distance(void **state)
{
    (void)state;
    assert_int_equal(keel_str_edit_distance("", "", 3), 0);
    assert_int_equal(keel_str_edit_distance("abc", "abc", 3), 0);
    assert_int_equal(keel_str_edit_distance("abc", "", 3), 3);
    assert_int_equal(keel_str_edit_distance("", "ab", 3), 2);
    assert_int_equal(keel_str_edit_distance("kitten", "sitting", 3), 3);
    assert_int_equal(keel_str_edit_distance("attempt", "attempts", 3), 1);
    assert_int_equal(keel_str_edit_distance("hosts", "host", 3), 1);
    assert_int_equal(keel_str_edit_distance("ab", "ba", 3), 2); /* plain Levenshtein: no transposition */
    /* ASCII case does not count */
    assert_int_equal(keel_str_edit_distance("VirtualService", "virtualservice", 3), 0);
    assert_int_equal(keel_str_edit_distance("ROUND_ROBIN", "round_robn", 3), 1);
}

static void test_edit_distance_cap(void **state)
{
    (void)state;
    /* anything beyond the cap reports exactly cap + 1 */
    assert_int_equal(keel_str_edit_distance("kitten", "sitting", 2), 3);
    assert_int_equal(keel_str_edit_distance("kitten", "sitting", 1), 2);
    assert_int_equal(keel_str_edit_distance("abcdef", "uvwxyz", 2), 3);
    assert_int_equal(keel_str_edit_distance("a", "completely different", 3), 4);
    assert_int_equal(keel_str_edit_distance("abc", "abd", 0), 1);
    assert_int_equal(keel_str_edit_distance("abc", "abc", 0), 0);
    /* inputs longer than 64 bytes are never "near" */
    char l1[80], l2[80];
    memset(l1, 'a', 70);
    l1[70] = '\0';
    memcpy(l2, l1, sizeof(l1));
    assert_int_equal(keel_str_edit_distance(l1, l2, 3), 4);
    char m1[65], m2[65];
    memset(m1, 'a', 64);
    m1[64] = '\0';
    memcpy(m2, m1, sizeof(m1));
    m2[63] = 'b';
    assert_int_equal(keel_str_edit_distance(m1, m2, 3), 1); /* 64 is still measured */
}

static void test_u64_to_str(void **state)
{
    (void)state;
    char out[KEEL_U64_STRLEN];
    assert_int_equal(keel_u64_to_str(0, out), 1);
    assert_string_equal(out, "0");
    assert_int_equal(keel_u64_to_str(1234567, out), 7);
    assert_string_equal(out, "1234567");
    assert_int_equal(keel_u64_to_str(UINT64_MAX, out), 20);
    assert_string_equal(out, "18446744073709551615");
    char ref[32];
    for (uint64_t v = 1; v < UINT64_MAX / 7; v = v * 7 + 3) { /* agrees with printf across magnitudes */
        snprintf(ref, sizeof(ref), "%llu", (unsigned long long)v);
        keel_u64_to_str(v, out);
        assert_string_equal(out, ref);
    }
}

static void test_uuid_to_str(void **state)
{
    (void)state;
    const unsigned char b[16] = {0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x42, 0xd3,
                                 0xa4, 0x56, 0x42, 0x66, 0x14, 0x17, 0x40, 0x00};
    char out[37];
    keel_uuid_to_str(b, out);
    assert_string_equal(out, "123e4567-e89b-42d3-a456-426614174000");
}

static void test_hex_value(void **state)
{
    (void)state;
    const char *digits = "0123456789abcdef", *upper = "ABCDEF";
    for (int i = 0; i < 16; i++)
        assert_int_equal(keel_hex_value(digits[i]), i);
    for (int i = 0; i < 6; i++)
        assert_int_equal(keel_hex_value(upper[i]), 10 + i);
    assert_int_equal(keel_hex_value('g'), -1);
    assert_int_equal(keel_hex_value('/'), -1);
    assert_int_equal(keel_hex_value(0xff), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slice_from_cstr),
        cmocka_unit_test(test_equality),
        cmocka_unit_test(test_case_insensitive),
        cmocka_unit_test(test_prefix_suffix),
        cmocka_unit_test(test_to_u64_valid),
        cmocka_unit_test(test_to_u64_invalid),
        cmocka_unit_test(test_to_u64_overflow),
        cmocka_unit_test(test_to_u64_digit_above_small_max),
        cmocka_unit_test(test_clip_short_strings_untouched),
        cmocka_unit_test(test_clip_ascii),
        cmocka_unit_test(test_clip_utf8_boundaries),
        cmocka_unit_test(test_clip_respects_buffer_size),
        cmocka_unit_test(test_clip_tiny_buffer),
        cmocka_unit_test(test_edit_distance),
        cmocka_unit_test(test_edit_distance_cap),
        cmocka_unit_test(test_u64_to_str),
        cmocka_unit_test(test_uuid_to_str),
        cmocka_unit_test(test_hex_value),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
