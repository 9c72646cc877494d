/*
 * host_test.c - tests for config/host: Istio host matching (`*.foo.com` vs
 * `foo.com`, any depth, `*`), subset, most-specific ordering, short-name
 * expansion, and the host index (exact before wildcard, longest suffix,
 * case-insensitivity, wildcard needles, duplicates, malformed hosts), with a
 * 10,000-host index checked against a brute-force model.
 */
#include "config/host.h"

#include "base/arena.h"
#include "base/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>

static void test_matches(void **state)
{
    (void)state;
    /* concrete vs concrete: equality, ignoring case */
    assert_true(keel_host_matches("foo.com", "foo.com"));
    assert_true(keel_host_matches("Foo.COM", "foo.com"));
    assert_false(keel_host_matches("foo.com", "bar.com"));
    assert_false(keel_host_matches("a.foo.com", "foo.com"));
    /* one wildcard: suffix at any depth, never the bare domain */
    assert_true(keel_host_matches("*.foo.com", "a.foo.com"));
    assert_true(keel_host_matches("a.foo.com", "*.foo.com"));
    assert_true(keel_host_matches("*.foo.com", "a.b.foo.com"));
    assert_true(keel_host_matches("*.FOO.com", "A.b.foo.COM"));
    assert_false(keel_host_matches("*.foo.com", "foo.com"));
    assert_false(keel_host_matches("foo.com", "*.foo.com"));
    assert_false(keel_host_matches("*.foo.com", "afoo.com"));
    assert_false(keel_host_matches("*.foo.com", "a.bar.com"));
    /* `*` matches everything, including wildcards and the empty name */
    assert_true(keel_host_matches("*", "foo.com"));
    assert_true(keel_host_matches("foo.com", "*"));
    assert_true(keel_host_matches("*", "*.foo.com"));
    assert_true(keel_host_matches("*", "*"));
    /* both wildcards: the longer's suffix contains the shorter's */
    assert_true(keel_host_matches("*.com", "*.foo.com"));
    assert_true(keel_host_matches("*.foo.com", "*.com"));
    assert_true(keel_host_matches("*.foo.com", "*.foo.com"));
    assert_false(keel_host_matches("*.foo.com", "*.bar.com"));
    assert_false(keel_host_matches("*.a.foo.com", "*.b.foo.com"));
    /* NULL is the empty name */
    assert_true(keel_host_matches(NULL, ""));
    assert_true(keel_host_matches("*", NULL));
    assert_false(keel_host_matches("foo.com", NULL));
}

static void test_subset_of(void **state)
{
    (void)state;
    assert_true(keel_host_subset_of("a.foo.com", "*.foo.com"));
    assert_true(keel_host_subset_of("a.b.foo.com", "*.foo.com"));
    assert_false(keel_host_subset_of("foo.com", "*.foo.com"));
    assert_true(keel_host_subset_of("*.foo.com", "*.com"));
    assert_false(keel_host_subset_of("*.com", "*.foo.com"));
    assert_true(keel_host_subset_of("*.foo.com", "*"));
    assert_false(keel_host_subset_of("*", "*.foo.com"));
    assert_false(keel_host_subset_of("*.foo.com", "a.foo.com"));
    assert_true(keel_host_subset_of("foo.com", "FOO.com"));
    assert_true(keel_host_subset_of("*.foo.com", "*.foo.com"));
    assert_true(keel_host_subset_of("x", "*"));
    assert_true(keel_host_subset_of("*", "*"));
}

static int cmp_qsort(const void *a, const void *b)
{
    return keel_host_cmp_specificity(*(const char *const *)a, *(const char *const *)b);
}

static void test_more_specific(void **state)
{
    (void)state;
    /* concrete before wildcard, even when shorter */
    assert_true(keel_host_more_specific("a.com", "*.foo.bar.com"));
    assert_false(keel_host_more_specific("*.foo.bar.com", "a.com"));
    /* longer before shorter */
    assert_true(keel_host_more_specific("*.foo.com", "*.com"));
    assert_true(keel_host_more_specific("*.com", "*"));
    assert_true(keel_host_more_specific("www.foo.com", "foo.com"));
    /* ties alphabetical, ignoring case */
    assert_true(keel_host_more_specific("a.com", "b.com"));
    assert_true(keel_host_more_specific("*.a.com", "*.B.com"));
    assert_int_equal(keel_host_cmp_specificity("Foo.com", "foo.COM"), 0);
    assert_false(keel_host_more_specific("foo.com", "foo.com"));

    const char *hosts[] = {"*", "*.com", "b.foo.com", "*.foo.com", "foo.com", "a.foo.com", "*.bar.com", "x.io"};
    qsort(hosts, sizeof(hosts) / sizeof(hosts[0]), sizeof(hosts[0]), cmp_qsort);
    const char *want[] = {"a.foo.com", "b.foo.com", "foo.com", "x.io", "*.bar.com", "*.foo.com", "*.com", "*"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        assert_string_equal(hosts[i], want[i]);
}

static void test_fqdn(void **state)
{
    (void)state;
    struct keel_arena *a = keel_arena_new(0);
    assert_string_equal(keel_host_fqdn(a, "reviews", "default", NULL), "reviews.default.svc.cluster.local");
    assert_string_equal(keel_host_fqdn(a, "reviews", "prod", "example.local"), "reviews.prod.svc.example.local");
    assert_string_equal(keel_host_fqdn(a, "reviews", NULL, ""), "reviews.default.svc.cluster.local");
    const char *dotted = "reviews.prod";
    assert_ptr_equal(keel_host_fqdn(a, dotted, "default", NULL), dotted);
    const char *wild = "*.foo.com";
    assert_ptr_equal(keel_host_fqdn(a, wild, "default", NULL), wild);
    const char *star = "*";
    assert_ptr_equal(keel_host_fqdn(a, star, "default", NULL), star);
    assert_string_equal(keel_host_fqdn(a, "", "default", NULL), "");
    assert_null(keel_host_fqdn(a, NULL, "default", NULL));
    keel_arena_free(a);
}

/* index helpers ------------------------------------------------------------ */

static struct keel_host_index *build(struct keel_arena *a, const char *const *hosts, size_t n)
{
    struct keel_host_entry *e = keel_arena_xalloc(a, (n + 1) * sizeof(*e));
    for (size_t i = 0; i < n; i++) {
        e[i].host = hosts[i];
        e[i].value = (void *)(uintptr_t)(i + 1);
    }
    struct keel_host_index *ix = NULL;
    assert_int_equal(keel_host_index_build(a, e, n, &ix), 0);
    assert_non_null(ix);
    return ix;
}

static const char *look(const struct keel_host_index *ix, const char *name)
{
    const struct keel_host_entry *e = keel_host_index_lookup(ix, name, strlen(name));
    return e ? e->host : NULL;
}

static void test_index_basic(void **state)
{
    (void)state;
    struct keel_arena *a = keel_arena_new(0);
    const char *hosts[] = {"foo.com", "*.foo.com", "*.b.foo.com", "*.com", "*", "Api.Example.ORG"};
    struct keel_host_index *ix = build(a, hosts, 6);
    assert_int_equal(keel_host_index_count(ix), 6);
    /* exact wins over every wildcard */
    assert_string_equal(look(ix, "foo.com"), "foo.com");
    /* `*.foo.com` does not match foo.com, but does match at any depth */
    assert_string_equal(look(ix, "a.foo.com"), "*.foo.com");
    assert_string_equal(look(ix, "x.a.foo.com"), "*.foo.com");
    /* longest suffix */
    assert_string_equal(look(ix, "a.b.foo.com"), "*.b.foo.com");
    assert_string_equal(look(ix, "z.y.a.b.foo.com"), "*.b.foo.com");
    assert_string_equal(look(ix, "b.foo.com"), "*.foo.com");
    assert_string_equal(look(ix, "bar.com"), "*.com");
    assert_string_equal(look(ix, "com"), "*");
    assert_string_equal(look(ix, "localhost"), "*");
    assert_string_equal(look(ix, ""), "*");
    /* case-insensitive, stored lower-cased */
    assert_string_equal(look(ix, "A.B.FOO.COM"), "*.b.foo.com");
    assert_string_equal(look(ix, "api.example.org"), "api.example.org");
    assert_string_equal(look(ix, "API.EXAMPLE.ORG"), "api.example.org");
    /* the value pointer is the one given */
    const struct keel_host_entry *e = keel_host_index_lookup(ix, "q.b.foo.com", 11);
    assert_ptr_equal(e->value, (void *)(uintptr_t)3);
    /* explicit length: a Host header slice without its port */
    const char *hdr = "a.b.foo.com:8080";
    e = keel_host_index_lookup(ix, hdr, 11);
    assert_string_equal(e->host, "*.b.foo.com");
    /* wildcard needles match wildcard entries only: itself, then shorter suffixes */
    assert_string_equal(look(ix, "*.foo.com"), "*.foo.com");
    assert_string_equal(look(ix, "*.a.foo.com"), "*.foo.com");
    assert_string_equal(look(ix, "*.bar.com"), "*.com");
    assert_string_equal(look(ix, "*"), "*");
    assert_string_equal(keel_host_index_at(ix, 5)->host, "api.example.org");
    keel_arena_free(a);
}

static void test_index_no_catch_all(void **state)
{
    (void)state;
    struct keel_arena *a = keel_arena_new(0);
    const char *hosts[] = {"foo.com", "*.foo.com"};
    struct keel_host_index *ix = build(a, hosts, 2);
    assert_null(look(ix, "bar.com"));
    assert_null(look(ix, "afoo.com")); /* not a label boundary */
    assert_null(look(ix, "oo.com"));
    assert_null(look(ix, "*.com")); /* a wider wildcard is not inside a narrower one */
    assert_null(look(ix, "*"));
    assert_string_equal(look(ix, "a.foo.com"), "*.foo.com");
    /* a concrete entry never matches a wildcard needle */
    const char *only_exact[] = {"a.foo.com"};
    struct keel_host_index *ix2 = build(a, only_exact, 1);
    assert_null(look(ix2, "*.foo.com"));
    assert_string_equal(look(ix2, "A.foo.com"), "a.foo.com");
    /* empty index */
    struct keel_host_index *ix3 = NULL;
    assert_int_equal(keel_host_index_build(a, NULL, 0, &ix3), 0);
    assert_int_equal(keel_host_index_count(ix3), 0);
    assert_null(look(ix3, "foo.com"));
    assert_null(keel_host_index_lookup(NULL, "foo.com", 7));
    keel_arena_free(a);
}

static void test_index_duplicates_and_errors(void **state)
{
    (void)state;
    struct keel_arena *a = keel_arena_new(0);
    const char *hosts[] = {"Foo.com", "foo.COM", "*.x.io", "*.X.IO"};
    struct keel_host_index *ix = build(a, hosts, 4);
    assert_int_equal(keel_host_index_count(ix), 2);
    assert_ptr_equal(keel_host_index_lookup(ix, "foo.com", 7)->value, (void *)(uintptr_t)1); /* first wins */
    assert_ptr_equal(keel_host_index_lookup(ix, "a.x.io", 6)->value, (void *)(uintptr_t)3);

    const char *bad[][1] = {{""}, {"*foo.com"}, {"*."}, {NULL}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct keel_host_entry e = {bad[i][0], NULL};
        struct keel_host_index *out = (struct keel_host_index *)&e;
        assert_int_equal(keel_host_index_build(a, &e, 1, &out), KEEL_EINVAL);
        assert_null(out);
    }
    keel_arena_free(a);
}

/* 10,000-host index against a brute-force model ------------------------------ */

#define NHOSTS 10000

/* The model: among all hosts h with keel_host_matches-style suffix semantics,
 * the exact one, else the most specific wildcard (Istio MostSpecificHostMatch). */
static const char *model(char **hosts, size_t n, const char *name)
{
    bool wild = name[0] == '*';
    const char *best = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *h = hosts[i];
        if (!wild && h[0] != '*' && strcasecmp(h, name) == 0)
            return h;
        if (h[0] != '*')
            continue;
        bool ok = wild ? keel_host_subset_of(name, h) : keel_host_matches(h, name);
        if (ok && (!best || keel_host_more_specific(h, best)))
            best = h;
    }
    return best;
}

static void test_index_10k(void **state)
{
    (void)state;
    struct keel_arena *a = keel_arena_new(0);
    char **hosts = keel_arena_xalloc(a, NHOSTS * sizeof(*hosts));
    struct keel_host_entry *ents = keel_arena_xalloc(a, NHOSTS * sizeof(*ents));
    size_t n = 0;
    /* 6,000 exact service names, 3,000 wildcards at three depths, a few
     * wider wildcards; deterministic pseudo-random mix */
    uint32_t seed = 12345;
    while (n < NHOSTS) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = (seed >> 8) % 1000;
        unsigned k = (unsigned)n;
        if (n == NHOSTS - 1)
            hosts[n] = keel_arena_strdup(a, "*.net");
        else if (r < 600)
            hosts[n] = keel_arena_printf(a, "svc%u.ns%u.svc.cluster.local", k, k % 97);
        else if (r < 800)
            hosts[n] = keel_arena_printf(a, "*.ns%u.example.com", k % 503);
        else if (r < 900)
            hosts[n] = keel_arena_printf(a, "*.t%u.ns%u.example.com", k % 211, k % 503);
        else if (r < 990)
            hosts[n] = keel_arena_printf(a, "api%u.Partner%u.IO", k, k % 31);
        else
            hosts[n] = keel_arena_printf(a, "*.partner%u.io", k % 31);
        ents[n].host = hosts[n];
        ents[n].value = hosts[n];
        n++;
    }
    struct keel_host_index *ix;
    assert_int_equal(keel_host_index_build(a, ents, n, &ix), 0);

    size_t checked = 0, wild_hits = 0, exact_hits = 0, misses = 0;
    char name[256];
    for (uint32_t i = 0; i < 4000; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = (seed >> 8) % 10, k = (seed >> 4) % NHOSTS;
        switch (r) {
        case 0: /* one of the hosts itself, in upper case */
            snprintf(name, sizeof(name), "%s", hosts[k]);
            for (char *p = name; *p; p++)
                if (*p >= 'a' && *p <= 'z')
                    *p = (char)(*p - 32);
            break;
        case 1:
        case 2:
            snprintf(name, sizeof(name), "svc%u.ns%u.svc.cluster.local", k, k % 97);
            break;
        case 3:
            snprintf(name, sizeof(name), "a.b.t%u.ns%u.example.com", k % 211, k % 503);
            break;
        case 4:
            snprintf(name, sizeof(name), "x.ns%u.example.com", k % 503);
            break;
        case 5:
            snprintf(name, sizeof(name), "ns%u.example.com", k % 503); /* bare suffix: no `*.ns.example.com` */
            break;
        case 6:
            snprintf(name, sizeof(name), "deep.er.api%u.partner%u.io", k, k % 31);
            break;
        case 7:
            snprintf(name, sizeof(name), "*.t%u.ns%u.example.com", k % 211, k % 503);
            break;
        case 8:
            snprintf(name, sizeof(name), "host%u.example.net", k);
            break;
        default:
            snprintf(name, sizeof(name), "unknown%u.org", k);
            break;
        }
        const struct keel_host_entry *got = keel_host_index_lookup(ix, name, strlen(name));
        const char *want = model(hosts, n, name);
        if (!want) {
            assert_null(got);
            misses++;
        } else {
            assert_non_null(got);
            if (strcasecmp(got->host, want) != 0)
                fail_msg("lookup(%s) = %s, model says %s", name, got->host, want);
            /* the first entry of that host (case-insensitively) */
            assert_true(strcasecmp((const char *)got->value, want) == 0);
            if (want[0] == '*')
                wild_hits++;
            else
                exact_hits++;
        }
        checked++;
    }
    assert_int_equal(checked, 4000);
    assert_true(wild_hits > 500);
    assert_true(exact_hits > 500);
    assert_true(misses > 100);
    keel_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches),
        cmocka_unit_test(test_subset_of),
        cmocka_unit_test(test_more_specific),
        cmocka_unit_test(test_fqdn),
        cmocka_unit_test(test_index_basic),
        cmocka_unit_test(test_index_no_catch_all),
        cmocka_unit_test(test_index_duplicates_and_errors),
        cmocka_unit_test(test_index_10k),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
