/*
 * err_test.c - tests for base/err: the KEEL_ERRNO_MAP codes, names and
 * messages.
 */
#include "base/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static const int all_codes[] = {
#define CODE(name, msg) KEEL_E##name,
    KEEL_ERRNO_MAP(CODE)
#undef CODE
};
#define NCODES (sizeof(all_codes) / sizeof(all_codes[0]))

static void test_codes_negative_and_distinct(void **state)
{
    (void)state;
    assert_int_equal(KEEL_OK, 0);
    assert_true(NCODES >= 13);
    for (size_t i = 0; i < NCODES; i++) {
        assert_true(all_codes[i] < 0);
        for (size_t j = 0; j < i; j++)
            assert_int_not_equal(all_codes[i], all_codes[j]);
    }
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(keel_err_name(KEEL_OK), "KEEL_OK");
    assert_string_equal(keel_err_name(KEEL_ENOMEM), "KEEL_ENOMEM");
    assert_string_equal(keel_err_name(KEEL_ETOOBIG), "KEEL_ETOOBIG");
    assert_string_equal(keel_err_name(KEEL_EINVALID_CONFIG), "KEEL_EINVALID_CONFIG");
    assert_string_equal(keel_err_name(KEEL_EPROTO), "KEEL_EPROTO");
    /* every code has its own name, all of the KEEL_E* form */
    for (size_t i = 0; i < NCODES; i++) {
        const char *n = keel_err_name(all_codes[i]);
        assert_non_null(n);
        assert_int_equal(strncmp(n, "KEEL_E", 6), 0);
        assert_string_not_equal(n, "KEEL_E?");
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(n, keel_err_name(all_codes[j]));
    }
}

static void test_messages(void **state)
{
    (void)state;
    assert_string_equal(keel_strerror(KEEL_OK), "success");
    assert_string_equal(keel_strerror(KEEL_ENOMEM), "out of memory");
    assert_string_equal(keel_strerror(KEEL_EINVAL), "invalid argument");
    assert_string_equal(keel_strerror(KEEL_ETOOBIG), "value too large");
    assert_string_equal(keel_strerror(KEEL_ENOENT), "no such file or directory");
    assert_string_equal(keel_strerror(KEEL_EINVALID_CONFIG), "invalid configuration");
    for (size_t i = 0; i < NCODES; i++) {
        const char *m = keel_strerror(all_codes[i]);
        assert_non_null(m);
        assert_true(strlen(m) > 0);
        assert_string_not_equal(m, "unknown error");
    }
}

static void test_unknown_codes(void **state)
{
    (void)state;
    static const int unknown[] = {1, 42, -1, -999, -1000, -100000, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        int is_code = 0;
        for (size_t j = 0; j < NCODES; j++)
            is_code |= all_codes[j] == unknown[i];
        if (is_code)
            continue;
        assert_string_equal(keel_strerror(unknown[i]), "unknown error");
        assert_string_equal(keel_err_name(unknown[i]), "KEEL_E?");
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_codes_negative_and_distinct),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_unknown_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
