/*
 * vec_test.c - tests for base/vec: zeroed pushes, growth that preserves
 * contents, element sizes, free and reuse.
 */
#include "base/vec.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

struct rec {
    int id;
    char name[20];
    double weight;
};

static void test_init_empty(void **state)
{
    (void)state;
    struct keel_vec v;
    keel_vec_init(&v, sizeof(int));
    assert_null(v.items);
    assert_int_equal(v.len, 0);
    assert_int_equal(v.cap, 0);
    assert_int_equal(v.elem, sizeof(int));
    keel_vec_free(&v);
    keel_vec_free(&v);
    assert_int_equal(v.elem, sizeof(int)); /* free keeps the element size for reuse */
}

static void test_push_returns_zeroed_slot(void **state)
{
    (void)state;
    struct keel_vec v;
    keel_vec_init(&v, sizeof(struct rec));
    for (int i = 0; i < 100; i++) {
        struct rec *r = keel_vec_push(&v);
        assert_non_null(r);
        assert_int_equal(r->id, 0);
        assert_int_equal(r->name[0], '\0');
        assert_true(r->weight == 0.0);
        r->id = i;
        memset(r->name, 'x', sizeof(r->name) - 1);
        r->weight = i * 1.5;
    }
    assert_int_equal(v.len, 100);
    assert_true(v.cap >= 100);
    for (int i = 0; i < 100; i++) {
        struct rec *r = keel_vec_at(&v, (size_t)i);
        assert_int_equal(r->id, i);
        assert_true(r->weight == i * 1.5);
    }
    keel_vec_free(&v);
}

static void test_growth_doubles_and_preserves(void **state)
{
    (void)state;
    struct keel_vec v;
    keel_vec_init(&v, sizeof(uint64_t));
    size_t last_cap = 0, growths = 0;
    for (uint64_t i = 0; i < 100000; i++) {
        uint64_t *p = keel_vec_push(&v);
        *p = i * 2654435761u;
        if (v.cap != last_cap) {
            if (last_cap)
                assert_int_equal(v.cap, last_cap * 2);
            last_cap = v.cap;
            growths++;
        }
    }
    assert_true(growths < 20); /* geometric, not linear */
    for (uint64_t i = 0; i < 100000; i++)
        assert_true(*(uint64_t *)keel_vec_at(&v, (size_t)i) == i * 2654435761u);
    keel_vec_free(&v);
}

static void test_pointer_elements(void **state)
{
    (void)state;
    /* the loader keeps `struct keel_resource *` in a vec: elements are pointers */
    struct keel_vec v;
    keel_vec_init(&v, sizeof(char *));
    static char a[] = "a", b[] = "b";
    *(char **)keel_vec_push(&v) = a;
    *(char **)keel_vec_push(&v) = b;
    assert_ptr_equal(*(char **)keel_vec_at(&v, 0), a);
    assert_ptr_equal(*(char **)keel_vec_at(&v, 1), b);
    keel_vec_free(&v);
}

static void test_single_byte_and_large_elements(void **state)
{
    (void)state;
    struct keel_vec v;
    keel_vec_init(&v, 1);
    for (int i = 0; i < 300; i++)
        *(unsigned char *)keel_vec_push(&v) = (unsigned char)i;
    for (int i = 0; i < 300; i++)
        assert_int_equal(*(unsigned char *)keel_vec_at(&v, (size_t)i), i & 0xff);
    keel_vec_free(&v);

    struct big {
        char data[4096];
    };
    keel_vec_init(&v, sizeof(struct big));
    for (int i = 0; i < 20; i++) {
        struct big *p = keel_vec_push(&v);
        assert_non_null(p);
        p->data[4095] = (char)i;
    }
    for (int i = 0; i < 20; i++)
        assert_int_equal(((struct big *)keel_vec_at(&v, (size_t)i))->data[4095], i);
    keel_vec_free(&v);
}

static void test_reuse_after_free(void **state)
{
    (void)state;
    struct keel_vec v;
    keel_vec_init(&v, sizeof(int));
    *(int *)keel_vec_push(&v) = 1;
    keel_vec_free(&v);
    assert_int_equal(v.len, 0);
    int *p = keel_vec_push(&v);
    assert_non_null(p);
    assert_int_equal(*p, 0);
    assert_int_equal(v.len, 1);
    keel_vec_free(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_empty),
        cmocka_unit_test(test_push_returns_zeroed_slot),
        cmocka_unit_test(test_growth_doubles_and_preserves),
        cmocka_unit_test(test_pointer_elements),
        cmocka_unit_test(test_single_byte_and_large_elements),
        cmocka_unit_test(test_reuse_after_free),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
