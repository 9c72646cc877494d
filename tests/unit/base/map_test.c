/*
 * map_test.c - tests for base/map: put/get/replace, deletion with backward
 * shift inside colliding probe runs (also across the table's wrap-around),
 * iteration, growth, and a 100k-key workout checked against a model.
 */
#include "base/map.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The value stored for a test key: distinct, non-NULL fake pointers. */
static void *V(uintptr_t i)
{
    return (void *)(i * 8 + 8);
}

static int put(struct keel_map *m, const char *k, void *v)
{
    return keel_map_put(m, k, strlen(k), v, NULL);
}

static void *get(const struct keel_map *m, const char *k)
{
    return keel_map_get(m, k, strlen(k));
}

static void *del(struct keel_map *m, const char *k)
{
    return keel_map_del(m, k, strlen(k));
}

static void test_hash(void **state)
{
    (void)state;
    assert_true(keel_hash("abc", 3) == keel_hash("abc", 3));
    assert_true(keel_hash("abc", 3) != keel_hash("abd", 3));
    assert_true(keel_hash("abc", 2) == keel_hash("abX", 2));
    assert_true(keel_hash("", 0) == keel_hash(NULL, 0));
    assert_true(keel_hash("a\0b", 3) != keel_hash("a\0c", 3)); /* length-delimited, NULs included */
}

static void test_empty_map(void **state)
{
    (void)state;
    struct keel_map m;
    keel_map_init(&m);
    assert_null(get(&m, "x"));
    assert_null(del(&m, "x"));
    size_t it = 0;
    assert_null(keel_map_next(&m, &it));
    assert_int_equal(m.len, 0);
    keel_map_free(&m);
    keel_map_free(&m);
}

static void test_put_get_replace(void **state)
{
    (void)state;
    struct keel_map m;
    keel_map_init(&m);
    assert_int_equal(put(&m, "a", V(1)), 0);
    assert_int_equal(put(&m, "b", V(2)), 0);
    assert_int_equal(m.len, 2);
    assert_ptr_equal(get(&m, "a"), V(1));
    assert_ptr_equal(get(&m, "b"), V(2));
    assert_null(get(&m, "c"));
    void *old = V(99);
    assert_int_equal(keel_map_put(&m, "a", 1, V(3), &old), 0);
    assert_ptr_equal(old, V(1));
    assert_int_equal(m.len, 2); /* replaced, not added */
    assert_ptr_equal(get(&m, "a"), V(3));
    assert_int_equal(keel_map_put(&m, "new", 3, V(4), &old), 0);
    assert_null(old);
    /* a NULL value is stored (and reads back as NULL) */
    assert_int_equal(put(&m, "nullval", NULL), 0);
    assert_int_equal(m.len, 4);
    keel_map_free(&m);
}

static void test_keys_are_byte_strings(void **state)
{
    (void)state;
    struct keel_map m;
    keel_map_init(&m);
    const char k[] = "ab\0cd";
    assert_int_equal(keel_map_put(&m, k, 5, V(1), NULL), 0);
    assert_int_equal(keel_map_put(&m, k, 2, V(2), NULL), 0); /* "ab" is a different key */
    assert_int_equal(keel_map_put(&m, "", 0, V(3), NULL), 0); /* so is the empty key */
    assert_int_equal(m.len, 3);
    assert_ptr_equal(keel_map_get(&m, "ab\0cd", 5), V(1));
    assert_ptr_equal(keel_map_get(&m, "ab", 2), V(2));
    assert_ptr_equal(keel_map_get(&m, "", 0), V(3));
    assert_null(keel_map_get(&m, "ab\0ce", 5));
    /* keys are borrowed: a lookup with another buffer holding the same bytes works */
    char copy[6];
    memcpy(copy, k, 6);
    assert_ptr_equal(keel_map_get(&m, copy, 5), V(1));
    keel_map_free(&m);
}

/* Finds n keys "kNNN" whose home slot in a table of cap slots is `home`. */
static void keys_with_home(char keys[][16], size_t n, size_t cap, size_t home, unsigned *seed)
{
    size_t found = 0;
    while (found < n) {
        snprintf(keys[found], 16, "k%u", (*seed)++);
        if ((keel_hash(keys[found], strlen(keys[found])) & (cap - 1)) == home)
            found++;
    }
}

/* Checks every key of keys[0..n) maps to V(i) unless gone[i]. */
static void check_keys(const struct keel_map *m, char keys[][16], size_t n, const bool *gone)
{
    for (size_t i = 0; i < n; i++) {
        if (gone[i])
            assert_null(get(m, keys[i]));
        else
            assert_ptr_equal(get(m, keys[i]), V(i));
    }
}

static void collision_case(size_t home)
{
    /* 16 slots hold at most 11 keys before growing (70%). Build one probe
     * run: 4 keys with the same home, then 3 keys homed one slot later
     * (they land after the first group), then 3 homed at home+2. */
    enum { N = 10 };
    char keys[N][16];
    unsigned seed = 0;
    keys_with_home(keys, 4, 16, home, &seed);
    keys_with_home(keys + 4, 3, 16, (home + 1) & 15, &seed);
    keys_with_home(keys + 7, 3, 16, (home + 2) & 15, &seed);
    /* every deletion order of interest: first, middle, last of the run */
    static const size_t orders[][N] = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9},
        {9, 8, 7, 6, 5, 4, 3, 2, 1, 0},
        {3, 0, 5, 9, 1, 7, 2, 8, 4, 6},
        {4, 7, 0, 1, 8, 5, 2, 9, 6, 3},
    };
    for (size_t o = 0; o < sizeof(orders) / sizeof(orders[0]); o++) {
        struct keel_map m;
        keel_map_init(&m);
        for (size_t i = 0; i < N; i++)
            assert_int_equal(put(&m, keys[i], V(i)), 0);
        assert_int_equal(m.cap, 16); /* no growth: the run is really there */
        bool gone[N] = {false};
        check_keys(&m, keys, N, gone);
        for (size_t j = 0; j < N; j++) {
            size_t victim = orders[o][j];
            assert_ptr_equal(del(&m, keys[victim]), V(victim));
            gone[victim] = true;
            assert_int_equal(m.len, N - j - 1);
            check_keys(&m, keys, N, gone);
            assert_null(del(&m, keys[victim])); /* already gone */
        }
        /* reinsert after deleting everything: the table is clean */
        for (size_t i = 0; i < N; i++)
            assert_int_equal(put(&m, keys[i], V(i)), 0);
        memset(gone, 0, sizeof(gone));
        check_keys(&m, keys, N, gone);
        keel_map_free(&m);
    }
}

static void test_delete_backward_shift_collisions(void **state)
{
    (void)state;
    collision_case(3);
}

static void test_delete_backward_shift_wraparound(void **state)
{
    (void)state;
    /* the run starts at slot 14 and wraps to slots 0, 1, ... */
    collision_case(14);
    collision_case(15);
}

static void test_delete_keeps_unrelated_runs(void **state)
{
    (void)state;
    /* an entry whose home is between the hole and its slot must not move */
    char a[3][16], b[2][16];
    unsigned seed = 1000;
    keys_with_home(a, 3, 16, 5, &seed); /* slots 5, 6, 7 */
    keys_with_home(b, 2, 16, 7, &seed); /* homes 7: land at 8, 9 */
    struct keel_map m;
    keel_map_init(&m);
    for (int i = 0; i < 3; i++)
        put(&m, a[i], V((uintptr_t)i));
    for (int i = 0; i < 2; i++)
        put(&m, b[i], V((uintptr_t)10 + (uintptr_t)i));
    assert_ptr_equal(del(&m, a[1]), V(1));
    assert_ptr_equal(get(&m, a[0]), V(0));
    assert_ptr_equal(get(&m, a[2]), V(2));
    assert_ptr_equal(get(&m, b[0]), V(10));
    assert_ptr_equal(get(&m, b[1]), V(11));
    /* slots hold each key at most one probe run away from home */
    size_t it = 0, n = 0;
    const struct keel_map_slot *s;
    while ((s = keel_map_next(&m, &it)) != NULL) {
        size_t slot = it - 1, home = s->hash & (m.cap - 1);
        assert_true(((slot - home) & (m.cap - 1)) < 5);
        n++;
    }
    assert_int_equal(n, 4);
    keel_map_free(&m);
}

static void test_iteration(void **state)
{
    (void)state;
    struct keel_map m;
    keel_map_init(&m);
    static char keys[50][8];
    for (int i = 0; i < 50; i++) {
        snprintf(keys[i], sizeof(keys[i]), "key%d", i);
        put(&m, keys[i], V((uintptr_t)i));
    }
    for (int i = 0; i < 50; i += 3)
        del(&m, keys[i]);
    bool seen[50] = {false};
    size_t it = 0, n = 0;
    const struct keel_map_slot *s;
    while ((s = keel_map_next(&m, &it)) != NULL) {
        int idx = atoi(s->key + 3);
        assert_true(idx >= 0 && idx < 50);
        assert_false(seen[idx]);
        assert_true(idx % 3 != 0);
        assert_int_equal(s->klen, strlen(keys[idx]));
        assert_ptr_equal(s->val, V((uintptr_t)idx));
        assert_true(s->hash == keel_hash(s->key, s->klen));
        seen[idx] = true;
        n++;
    }
    assert_int_equal(n, m.len);
    assert_int_equal(n, 50 - 17);
    assert_null(keel_map_next(&m, &it)); /* stays at the end */
    keel_map_free(&m);
}

static void test_growth_load_factor(void **state)
{
    (void)state;
    struct keel_map m;
    keel_map_init(&m);
    static char keys[1000][8];
    for (int i = 0; i < 1000; i++) {
        snprintf(keys[i], sizeof(keys[i]), "%d", i);
        assert_int_equal(put(&m, keys[i], V((uintptr_t)i)), 0);
        assert_true((m.cap & (m.cap - 1)) == 0); /* power of two */
        assert_true(m.len * 10 <= m.cap * 7);     /* at most 70% full */
    }
    for (int i = 0; i < 1000; i++)
        assert_ptr_equal(get(&m, keys[i]), V((uintptr_t)i));
    keel_map_free(&m);
}

static void test_100k_inserts(void **state)
{
    (void)state;
    enum { N = 100000 };
    char *store = malloc((size_t)N * 12);
    assert_non_null(store);
    struct keel_map m;
    keel_map_init(&m);
    for (size_t i = 0; i < N; i++) {
        char *k = store + i * 12;
        snprintf(k, 12, "svc-%zu", i);
        assert_int_equal(put(&m, k, V(i)), 0);
    }
    assert_int_equal(m.len, N);
    for (size_t i = 0; i < N; i++)
        assert_ptr_equal(get(&m, store + i * 12), V(i));
    assert_null(get(&m, "svc-100000"));
    size_t it = 0, n = 0;
    while (keel_map_next(&m, &it))
        n++;
    assert_int_equal(n, N);
    /* delete every other key, then check all of them */
    for (size_t i = 0; i < N; i += 2)
        assert_ptr_equal(del(&m, store + i * 12), V(i));
    assert_int_equal(m.len, N / 2);
    for (size_t i = 0; i < N; i++) {
        if (i % 2)
            assert_ptr_equal(get(&m, store + i * 12), V(i));
        else
            assert_null(get(&m, store + i * 12));
    }
    keel_map_free(&m);
    free(store);
}

static void test_random_ops_against_model(void **state)
{
    (void)state;
    /* small key space, many operations: lots of collisions, deletions in
     * every position of every run, growth in the middle */
    enum { K = 600, OPS = 60000 };
    static char keys[K][8];
    static void *model[K];
    for (int i = 0; i < K; i++) {
        snprintf(keys[i], sizeof(keys[i]), "r%d", i);
        model[i] = NULL;
    }
    struct keel_map m;
    keel_map_init(&m);
    size_t live = 0;
    uint64_t x = 88172645463325252ULL;
    for (int op = 0; op < OPS; op++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int k = (int)(x % K);
        if ((x >> 32) % 3 == 0) {
            void *got = del(&m, keys[k]);
            assert_ptr_equal(got, model[k]);
            if (model[k])
                live--;
            model[k] = NULL;
        } else {
            void *v = V((uintptr_t)op + 1);
            void *old = NULL;
            assert_int_equal(keel_map_put(&m, keys[k], strlen(keys[k]), v, &old), 0);
            assert_ptr_equal(old, model[k]);
            if (!model[k])
                live++;
            model[k] = v;
        }
        assert_int_equal(m.len, live);
        if (op % 5000 == 0)
            for (int i = 0; i < K; i++)
                assert_ptr_equal(get(&m, keys[i]), model[i]);
    }
    for (int i = 0; i < K; i++)
        assert_ptr_equal(get(&m, keys[i]), model[i]);
    keel_map_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_empty_map),
        cmocka_unit_test(test_put_get_replace),
        cmocka_unit_test(test_keys_are_byte_strings),
        cmocka_unit_test(test_delete_backward_shift_collisions),
        cmocka_unit_test(test_delete_backward_shift_wraparound),
        cmocka_unit_test(test_delete_keeps_unrelated_runs),
        cmocka_unit_test(test_iteration),
        cmocka_unit_test(test_growth_load_factor),
        cmocka_unit_test(test_100k_inserts),
        cmocka_unit_test(test_random_ops_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
