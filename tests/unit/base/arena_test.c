/*
 * arena_test.c - tests for base/arena: alignment, zeroing, big allocations,
 * accounting, string helpers and the overflow guards.
 */
#include "base/arena.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static bool all_zero(const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i])
            return false;
    return true;
}

static void test_new_free(void **state)
{
    (void)state;
    struct keel_arena *a = keel_arena_new(0);
    assert_non_null(a);
    assert_int_equal(keel_arena_used(a), 0);
    keel_arena_free(a);
    keel_arena_free(NULL); /* no-op */
}

static void test_alignment_and_zeroing(void **state)
{
    (void)state;
    struct keel_arena *a = keel_arena_new(1024);
    static const size_t sizes[] = {1, 2, 3, 7, 15, 16, 17, 31, 33, 100, 255, 256, 257, 1000, 5000};
    for (int round = 0; round < 20; round++) {
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            unsigned char *p = keel_arena_alloc(a, sizes[i]);
            assert_non_null(p);
            assert_int_equal((uintptr_t)p % 16, 0);
            assert_true(all_zero(p, sizes[i]));
            memset(p, 0xAB, sizes[i]); /* dirty it: the next allocation must still be zero */
        }
    }
    keel_arena_free(a);
}

static void test_allocations_do_not_overlap(void **state)
{
    (void)state;
    struct keel_arena *a = keel_arena_new(256);
    enum { N = 500 };
    unsigned char *ptrs[N];
    size_t lens[N];
    for (size_t i = 0; i < N; i++) {
        lens[i] = 1 + (i * 37) % 300; /* mixes small and "big" (> chunk/4) requests */
        ptrs[i] = keel_arena_alloc(a, lens[i]);
        assert_non_null(ptrs[i]);
        memset(ptrs[i], (int)(i & 0xff), lens[i]);
    }
    for (size_t i = 0; i < N; i++)
        for (size_t j = 0; j < lens[i]; j++)
            assert_int_equal(ptrs[i][j], i & 0xff);
    keel_arena_free(a);
}

static void test_zero_size_gives_distinct_pointers(void **state)
{
    (void)state;
    struct keel_arena *a = keel_arena_new(0);
    void *p = keel_arena_alloc(a, 0);
    void *q = keel_arena_alloc(a, 0);
    assert_non_null(p);
    assert_non_null(q);
    assert_ptr_not_equal(p, q);
    keel_arena_free(a);
}

static void test_used_counts_aligned_bytes(void **state)
{
    (void)state;
    struct keel_arena *a = keel_arena_new(4096);
    keel_arena_alloc(a, 1);
    assert_int_equal(keel_arena_used(a), 16);
    keel_arena_alloc(a, 16);
    assert_int_equal(keel_arena_used(a), 32);
    keel_arena_alloc(a, 17);
    assert_int_equal(keel_arena_used(a), 64);
    keel_arena_alloc(a, 3000); /* big: own chunk, still counted */
    assert_int_equal(keel_arena_used(a), 64 + 3008);
    keel_arena_free(a);
}

static void test_big_allocation_keeps_head_space(void **state)
{
    (void)state;
    /* a request bigger than a quarter chunk gets a private chunk and the
     * current chunk keeps serving small requests */
    struct keel_arena *a = keel_arena_new(1024);
    char *small1 = keel_arena_alloc(a, 16);
    char *big = keel_arena_alloc(a, 100000);
    char *small2 = keel_arena_alloc(a, 16);
    assert_non_null(big);
    assert_true(all_zero(big, 100000));
    assert_ptr_equal(small2, small1 + 16);
    /* bigger than the whole chunk size, on an empty arena */
    struct keel_arena *b = keel_arena_new(64);
    char *p = keel_arena_alloc(b, 10000);
    assert_non_null(p);
    char *q = keel_arena_alloc(b, 8);
    assert_non_null(q);
    assert_true(q < p || q >= p + 10000);
    keel_arena_free(b);
    keel_arena_free(a);
}

static void test_overflow_returns_null(void **state)
{
    (void)state;
    struct keel_arena *a = keel_arena_new(0);
    assert_null(keel_arena_alloc(a, SIZE_MAX));
    assert_null(keel_arena_alloc(a, SIZE_MAX - 15));
    assert_null(keel_arena_alloc(a, SIZE_MAX - 16)); /* rounds up to a size no chunk can hold */
    /* still usable afterwards */
    assert_non_null(keel_arena_alloc(a, 10));
    assert_int_equal(keel_arena_used(a), 16);
    keel_arena_free(a);
}

static void test_strndup_strdup(void **state)
{
    (void)state;
    struct keel_arena *a = keel_arena_new(0);
    char *s = keel_arena_strndup(a, "hello world", 5);
    assert_string_equal(s, "hello");
    char *e = keel_arena_strndup(a, NULL, 0);
    assert_string_equal(e, "");
    const char bin[] = {'a', '\0', 'b'};
    char *z = keel_arena_strndup(a, bin, 3);
    assert_memory_equal(z, bin, 3);
    assert_int_equal(z[3], '\0');
    char src[] = "copy me";
    char *d = keel_arena_strdup(a, src);
    src[0] = 'X'; /* a copy, not a reference */
    assert_string_equal(d, "copy me");
    keel_arena_free(a);
}

static void test_printf(void **state)
{
    (void)state;
    struct keel_arena *a = keel_arena_new(64);
    assert_string_equal(keel_arena_printf(a, "%s/%d", "ns", 42), "ns/42");
    assert_string_equal(keel_arena_printf(a, "%s", ""), "");
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    char *p = keel_arena_printf(a, "<%s>", big);
    assert_int_equal(strlen(p), sizeof(big) + 1);
    assert_int_equal(p[0], '<');
    assert_int_equal(p[sizeof(big)], '>');
    keel_arena_free(a);
}

static void test_many_chunks(void **state)
{
    (void)state;
    struct keel_arena *a = keel_arena_new(128);
    for (int i = 0; i < 100000; i++) {
        int *p = keel_arena_xalloc(a, sizeof(int) * 3);
        p[0] = i;
    }
    assert_int_equal(keel_arena_used(a), 100000 * 16);
    keel_arena_free(a);
}

static void test_vec_push_and_lower(void **state)
{
    (void)state;
    struct keel_arena *a = keel_arena_new(0);
    struct keel_arena_vec v = {0};
    for (int i = 0; i < 1000; i++)
        *(int *)keel_arena_vec_push(a, &v, sizeof(int)) = i;
    assert_int_equal(v.n, 1000);
    assert_true(v.cap >= 1000);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(((int *)v.v)[i], i); /* kept across every growth */
    assert_string_equal(keel_arena_strdup_lower(a, "Reviews.Default.SVC"), "reviews.default.svc");
    assert_string_equal(keel_arena_strdup_lower(a, NULL), "");
    keel_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_free),
        cmocka_unit_test(test_alignment_and_zeroing),
        cmocka_unit_test(test_allocations_do_not_overlap),
        cmocka_unit_test(test_zero_size_gives_distinct_pointers),
        cmocka_unit_test(test_used_counts_aligned_bytes),
        cmocka_unit_test(test_big_allocation_keeps_head_space),
        cmocka_unit_test(test_overflow_returns_null),
        cmocka_unit_test(test_strndup_strdup),
        cmocka_unit_test(test_printf),
        cmocka_unit_test(test_many_chunks),
        cmocka_unit_test(test_vec_push_and_lower),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
