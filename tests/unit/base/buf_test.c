/*
 * buf_test.c - tests for base/buf: growth, the hard size limit (KEEL_ETOOBIG
 * with nothing appended), printf, JSON string escaping.
 */
#include "base/buf.h"

#include "base/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void test_empty_buffer(void **state)
{
    (void)state;
    struct keel_buf b;
    keel_buf_init(&b, 100);
    assert_null(b.data); /* init does not allocate */
    assert_int_equal(b.len, 0);
    assert_string_equal(keel_buf_cstr(&b), "");
    keel_buf_reset(&b); /* reset of an unallocated buffer is fine */
    keel_buf_free(&b);
    keel_buf_free(&b); /* twice is fine */
    assert_int_equal(b.max, 100);
}

static void test_append_and_grow(void **state)
{
    (void)state;
    struct keel_buf b;
    keel_buf_init(&b, 1 << 20);
    char expect[10000];
    for (size_t i = 0; i < sizeof(expect); i++) {
        char c = (char)('a' + i % 26);
        expect[i] = c;
        assert_int_equal(keel_buf_putc(&b, c), 0);
        assert_int_equal(b.len, i + 1);
        assert_int_equal(b.data[b.len], '\0'); /* always terminated */
    }
    assert_true(b.cap > b.len);
    assert_memory_equal(b.data, expect, sizeof(expect));
    keel_buf_free(&b);
}

static void test_binary_data_and_zero_length(void **state)
{
    (void)state;
    struct keel_buf b;
    keel_buf_init(&b, 64);
    const char bin[] = {'x', '\0', 'y'};
    assert_int_equal(keel_buf_append(&b, bin, 3), 0);
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, bin, 3);
    assert_int_equal(keel_buf_append(&b, NULL, 0), 0);
    assert_int_equal(b.len, 3);
    assert_int_equal(keel_buf_puts(&b, ""), 0);
    assert_int_equal(b.len, 3);
    keel_buf_free(&b);
}

static void test_max_size_exact_fit(void **state)
{
    (void)state;
    struct keel_buf b;
    keel_buf_init(&b, 10);
    assert_int_equal(keel_buf_puts(&b, "0123456789"), 0);
    assert_int_equal(b.len, 10);
    assert_string_equal(keel_buf_cstr(&b), "0123456789");
    /* full: even an empty append is fine, one more byte is not */
    assert_int_equal(keel_buf_append(&b, "", 0), 0);
    assert_int_equal(keel_buf_putc(&b, 'x'), KEEL_ETOOBIG);
    assert_int_equal(b.len, 10);
    assert_string_equal(keel_buf_cstr(&b), "0123456789");
    keel_buf_free(&b);
}

static void test_too_big_appends_nothing(void **state)
{
    (void)state;
    struct keel_buf b;
    keel_buf_init(&b, 16);
    assert_int_equal(keel_buf_puts(&b, "hello"), 0);
    /* 12 more bytes would make 17 > 16: rejected whole, not truncated */
    assert_int_equal(keel_buf_puts(&b, " world, bye!"), KEEL_ETOOBIG);
    assert_int_equal(b.len, 5);
    assert_string_equal(keel_buf_cstr(&b), "hello");
    assert_int_equal(keel_buf_printf(&b, "%s", "0123456789AB"), KEEL_ETOOBIG);
    assert_int_equal(b.len, 5);
    assert_string_equal(keel_buf_cstr(&b), "hello");
    /* a size that would overflow len + n */
    assert_int_equal(keel_buf_append(&b, "x", SIZE_MAX), KEEL_ETOOBIG);
    assert_int_equal(keel_buf_append(&b, "x", SIZE_MAX - 2), KEEL_ETOOBIG);
    assert_int_equal(b.len, 5);
    /* still usable up to the limit */
    assert_int_equal(keel_buf_puts(&b, " world!!!!!"), 0);
    assert_int_equal(b.len, 16);
    keel_buf_free(&b);
}

static void test_zero_max(void **state)
{
    (void)state;
    struct keel_buf b;
    keel_buf_init(&b, 0);
    assert_int_equal(keel_buf_putc(&b, 'a'), KEEL_ETOOBIG);
    assert_int_equal(keel_buf_append(&b, "", 0), 0);
    assert_string_equal(keel_buf_cstr(&b), "");
    keel_buf_free(&b);
}

static void test_reset_keeps_memory(void **state)
{
    (void)state;
    struct keel_buf b;
    keel_buf_init(&b, 1000);
    keel_buf_puts(&b, "some text that allocates");
    char *data = b.data;
    size_t cap = b.cap;
    keel_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(keel_buf_cstr(&b), "");
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.cap, cap);
    keel_buf_puts(&b, "again");
    assert_string_equal(keel_buf_cstr(&b), "again");
    keel_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
    assert_int_equal(b.cap, 0);
}

static void test_printf(void **state)
{
    (void)state;
    struct keel_buf b;
    keel_buf_init(&b, 1 << 16);
    assert_int_equal(keel_buf_printf(&b, "%s:%u:%u", "f.yaml", 12u, 7u), 0);
    assert_int_equal(keel_buf_printf(&b, "%s", ""), 0);
    assert_int_equal(keel_buf_printf(&b, " %zu", (size_t)42), 0);
    assert_string_equal(keel_buf_cstr(&b), "f.yaml:12:7 42");
    assert_int_equal(b.len, strlen("f.yaml:12:7 42"));
    /* long output grows the buffer in one go */
    char big[3000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(keel_buf_printf(&b, "[%s]", big), 0);
    assert_int_equal(b.len, strlen("f.yaml:12:7 42") + sizeof(big) + 1);
    assert_int_equal(b.data[b.len - 1], ']');
    assert_int_equal(b.data[b.len], '\0');
    keel_buf_free(&b);
}

static const char *json(struct keel_buf *b, const char *s)
{
    keel_buf_reset(b);
    assert_int_equal(keel_buf_json_str(b, s), 0);
    return keel_buf_cstr(b);
}

static void test_json_str(void **state)
{
    (void)state;
    struct keel_buf b;
    keel_buf_init(&b, 1024);
    assert_string_equal(json(&b, ""), "\"\"");
    assert_string_equal(json(&b, "plain"), "\"plain\"");
    assert_string_equal(json(&b, "a\"b\\c"), "\"a\\\"b\\\\c\"");
    assert_string_equal(json(&b, "l1\nl2\r\tx"), "\"l1\\nl2\\r\\tx\"");
    assert_string_equal(json(&b, "\x01\x1f"), "\"\\u0001\\u001f\"");
    assert_string_equal(json(&b, "\x7f"), "\"\x7f\"");          /* DEL is legal in JSON */
    assert_string_equal(json(&b, "h\xc3\xa9"), "\"h\xc3\xa9\""); /* UTF-8 passes through */
    assert_string_equal(json(&b, "/"), "\"/\"");
    keel_buf_free(&b);
}

static void test_json_str_too_big(void **state)
{
    (void)state;
    struct keel_buf b;
    keel_buf_init(&b, 8);
    assert_int_equal(keel_buf_json_str(&b, "0123456789"), KEEL_ETOOBIG);
    assert_true(b.len <= 8);
    keel_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_buffer),
        cmocka_unit_test(test_append_and_grow),
        cmocka_unit_test(test_binary_data_and_zero_length),
        cmocka_unit_test(test_max_size_exact_fit),
        cmocka_unit_test(test_too_big_appends_nothing),
        cmocka_unit_test(test_zero_max),
        cmocka_unit_test(test_reset_keeps_memory),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_json_str),
        cmocka_unit_test(test_json_str_too_big),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
