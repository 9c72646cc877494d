/*
 * lb_test.c - tests for proxy/lb: the hash is stable, ring-hash and Maglev tables map a key to the same endpoint
 * every time, spread keys by weight, and move few keys when an endpoint leaves; locality matching and
 * Istio's locality priorities, failover targets and `distribute` weights; the traffic split between priorities;
 * and the outlier-detection arithmetic (maxEjectionPercent, growing ejection time, warmup).
 */
#include "proxy/proxy_int.h"

#include "base/err.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const char *const keys5[] = {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80", "10.0.0.5:80"};

static void test_hash_stable(void **state)
{
    (void)state;
    assert_int_equal(keel_lb_hash("user-1", 6), keel_lb_hash("user-1", 6));
    assert_int_not_equal(keel_lb_hash("user-1", 6), keel_lb_hash("user-2", 6));
    /* a fixed value: the mapping must not change between builds or machines */
    assert_true(keel_lb_hash("", 0) == keel_lb_hash("", 0));
}

static uint32_t ring_pick(const struct keel_lb_ring *r, uint64_t h)
{
    return r->host[keel_lb_ring_find(r, h)];
}

static void test_ring(void **state)
{
    (void)state;
    struct keel_lb_ring r;
    assert_int_equal(keel_lb_ring_build(&r, keys5, NULL, 5, 1024), 0);
    assert_true(r.n >= 1024);
    for (size_t i = 1; i < r.n; i++)
        assert_true(r.hash[i - 1] <= r.hash[i]);
    unsigned count[5] = {0};
    uint32_t first[1000];
    for (int k = 0; k < 1000; k++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "key-%d", k);
        first[k] = ring_pick(&r, keel_lb_hash(key, (size_t)n));
        assert_int_equal(first[k], ring_pick(&r, keel_lb_hash(key, (size_t)n))); /* stable */
        count[first[k]]++;
    }
    for (int i = 0; i < 5; i++)
        assert_true(count[i] > 100 && count[i] < 320); /* about 200 each */
    /* endpoint 2 leaves: only its keys move */
    const char *const keys4[] = {keys5[0], keys5[1], keys5[3], keys5[4]};
    struct keel_lb_ring r4;
    assert_int_equal(keel_lb_ring_build(&r4, keys4, NULL, 4, 1024), 0);
    static const uint32_t map4[] = {0, 1, 3, 4};
    int kept = 0, others = 0;
    for (int k = 0; k < 1000; k++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "key-%d", k);
        uint32_t now = map4[ring_pick(&r4, keel_lb_hash(key, (size_t)n))];
        if (first[k] != 2) {
            others++;
            kept += now == first[k];
        }
    }
    assert_true(kept * 100 / others >= 70); /* the points of each endpoint are a superset: few keys move */
    keel_lb_ring_free(&r4);
    keel_lb_ring_free(&r);
    /* weights: 3:1 */
    const uint32_t w[] = {3, 1};
    assert_int_equal(keel_lb_ring_build(&r, keys5, w, 2, 4096), 0);
    unsigned c2[2] = {0};
    for (int k = 0; k < 4000; k++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "w-%d", k);
        c2[ring_pick(&r, keel_lb_hash(key, (size_t)n))]++;
    }
    assert_true(c2[0] > 2600 && c2[0] < 3400);
    keel_lb_ring_free(&r);
    /* a zero weight gets no point */
    const uint32_t w0[] = {1, 0, 1};
    assert_int_equal(keel_lb_ring_build(&r, keys5, w0, 3, 64), 0);
    for (size_t i = 0; i < r.n; i++)
        assert_int_not_equal(r.host[i], 1);
    keel_lb_ring_free(&r);
}

static void test_maglev(void **state)
{
    (void)state;
    struct keel_lb_maglev m;
    assert_int_equal(keel_lb_maglev_build(&m, keys5, NULL, 5, 65537), 0);
    unsigned count[5] = {0};
    for (uint64_t i = 0; i < m.size; i++) {
        assert_true(m.table[i] < 5);
        count[m.table[i]]++;
    }
    for (int i = 0; i < 5; i++)
        assert_true(count[i] >= 65537 / 5 - 1 && count[i] <= 65537 / 5 + 1); /* Maglev: even to one entry */
    struct keel_lb_maglev again;
    assert_int_equal(keel_lb_maglev_build(&again, keys5, NULL, 5, 65537), 0);
    assert_memory_equal(m.table, again.table, m.size * sizeof(uint32_t));
    keel_lb_maglev_free(&again);
    /* one endpoint leaves: most entries of the others stay */
    const char *const keys4[] = {keys5[0], keys5[1], keys5[3], keys5[4]};
    static const uint32_t map4[] = {0, 1, 3, 4};
    struct keel_lb_maglev m4;
    assert_int_equal(keel_lb_maglev_build(&m4, keys4, NULL, 4, 65537), 0);
    uint64_t kept = 0, others = 0;
    for (uint64_t i = 0; i < m.size; i++) {
        if (m.table[i] == 2)
            continue;
        others++;
        kept += map4[m4.table[i]] == m.table[i];
    }
    assert_true(kept * 100 / others >= 80);
    keel_lb_maglev_free(&m4);
    keel_lb_maglev_free(&m);
    /* weights 2:1 */
    const uint32_t w[] = {2, 1};
    assert_int_equal(keel_lb_maglev_build(&m, keys5, w, 2, 65537), 0);
    unsigned c2[2] = {0};
    for (uint64_t i = 0; i < m.size; i++)
        c2[m.table[i]]++;
    assert_true(c2[0] > 43000 && c2[0] < 44400);
    keel_lb_maglev_free(&m);
    assert_int_equal(keel_lb_maglev_build(&m, keys5, NULL, 5, 1), KEEL_EINVAL);
}

static void test_locality_match(void **state)
{
    (void)state;
    assert_true(keel_lb_locality_matches("us-east/a/1", "*"));
    assert_true(keel_lb_locality_matches("us-east/a/1", "us-east/*"));
    assert_true(keel_lb_locality_matches("us-east/a/1", "us-east/a/*"));
    assert_true(keel_lb_locality_matches("us-east/a/1", "us-east"));
    assert_true(keel_lb_locality_matches("us-east/a/1", "us-east/a/1"));
    assert_false(keel_lb_locality_matches("us-east/a/1", "us-east/b/*"));
    assert_false(keel_lb_locality_matches("us-west/a", "us-east/*"));
    assert_false(keel_lb_locality_matches("us-east/a", "us-east/a/2"));
}

static void plan(const struct keel_endpoint *eps, size_t n, struct keel_cluster_locality lo, bool outlier,
                 const char *proxy_loc, uint8_t *prio, uint32_t *weight, unsigned *levels)
{
    struct keel_cluster c = {.name = "c", .endpoints = eps, .n_endpoints = n};
    c.lb.locality = lo;
    c.outlier.enabled = outlier;
    struct keel_lb_proxy px = {.locality = proxy_loc};
    *levels = keel_lb_locality_plan(&c, &px, prio, weight);
}

static void test_locality_priorities(void **state)
{
    (void)state;
    struct keel_endpoint eps[] = {
        {.hostport = "a:1", .weight = 1, .locality = "us-east/a/1"},
        {.hostport = "b:1", .weight = 1, .locality = "us-east/a/2"},
        {.hostport = "c:1", .weight = 1, .locality = "us-east/b"},
        {.hostport = "d:1", .weight = 1, .locality = "us-west/a"},
        {.hostport = "e:1", .weight = 1, .locality = "eu/a"},
    };
    uint8_t prio[5];
    uint32_t w[5];
    unsigned levels;
    struct keel_cluster_locality lo = {.enabled = true};
    plan(eps, 5, lo, true, "us-east/a/1", prio, w, &levels);
    assert_int_equal(levels, 4);
    assert_int_equal(prio[0], 0); /* same subzone */
    assert_int_equal(prio[1], 1); /* same zone */
    assert_int_equal(prio[2], 2); /* same region */
    assert_int_equal(prio[3], 3);
    assert_int_equal(prio[4], 3);
    /* failover us-east -> us-west: eu falls below us-west */
    struct keel_cluster_locality_failover fo = {"us-east", "us-west"};
    lo.failover = &fo;
    lo.n_failover = 1;
    plan(eps, 5, lo, true, "us-east/a/1", prio, w, &levels);
    assert_int_equal(levels, 5);
    assert_int_equal(prio[3], 3);
    assert_int_equal(prio[4], 4);
    /* no outlier detection: no failover, one priority */
    plan(eps, 5, lo, false, "us-east/a/1", prio, w, &levels);
    assert_int_equal(levels, 1);
    /* unknown proxy locality, or disabled: one priority */
    plan(eps, 5, lo, true, NULL, prio, w, &levels);
    assert_int_equal(levels, 1);
    lo.enabled = false;
    plan(eps, 5, lo, true, "us-east/a/1", prio, w, &levels);
    assert_int_equal(levels, 1);
    /* priorities are renumbered without gaps */
    struct keel_cluster_locality lo2 = {.enabled = true};
    plan(eps + 3, 2, lo2, true, "us-east/a/1", prio, w, &levels);
    assert_int_equal(levels, 1);
    assert_int_equal(prio[0], 0);
    assert_int_equal(prio[1], 0);
}

static void test_locality_distribute(void **state)
{
    (void)state;
    struct keel_endpoint eps[] = {
        {.hostport = "a:1", .weight = 1, .locality = "us-east/a"},
        {.hostport = "b:1", .weight = 3, .locality = "us-east/a"},
        {.hostport = "c:1", .weight = 1, .locality = "us-west/a"},
        {.hostport = "d:1", .weight = 1, .locality = "eu/a"},
    };
    struct keel_cluster_locality_weight to[] = {{"us-east/a/*", 80}, {"us-west/*", 20}};
    struct keel_cluster_locality_distribute d = {"us-east/a/*", to, 2};
    struct keel_cluster_locality lo = {.enabled = true, .distribute = &d, .n_distribute = 1};
    uint8_t prio[4];
    uint32_t w[4];
    unsigned levels;
    plan(eps, 4, lo, false, "us-east/a/1", prio, w, &levels);
    assert_int_equal(levels, 1);
    assert_int_equal(w[0], 80 * KEEL_LB_WEIGHT_SCALE / 4);
    assert_int_equal(w[1], 80 * KEEL_LB_WEIGHT_SCALE * 3 / 4);
    assert_int_equal(w[2], 20 * KEEL_LB_WEIGHT_SCALE);
    assert_int_equal(w[3], 0); /* named by no `to`: no traffic */
    /* a proxy the rule is not from: endpoint weights */
    plan(eps, 4, lo, false, "eu/a", prio, w, &levels);
    assert_int_equal(w[0], 1);
    assert_int_equal(w[1], 3);
}

static void test_priority_load(void **state)
{
    (void)state;
    uint32_t load[3];
    uint32_t healthy[] = {3, 2, 1}, total[] = {3, 2, 1};
    keel_lb_priority_load(healthy, total, 3, load);
    assert_int_equal(load[0], 100);
    assert_int_equal(load[1], 0);
    /* 2 of 3 healthy: 2/3 * 1.4 = 93% stays, 7% spills */
    healthy[0] = 2;
    keel_lb_priority_load(healthy, total, 3, load);
    assert_int_equal(load[0], 93);
    assert_int_equal(load[1], 7);
    /* all of priority 0 ejected: all to 1 */
    healthy[0] = 0;
    keel_lb_priority_load(healthy, total, 3, load);
    assert_int_equal(load[0], 0);
    assert_int_equal(load[1], 100);
    /* little health anywhere: normalised */
    uint32_t h2[] = {1, 0}, t2[] = {10, 10};
    keel_lb_priority_load(h2, t2, 2, load);
    assert_int_equal(load[0], 100);
    uint32_t h3[] = {0, 0}, t3[] = {1, 1};
    keel_lb_priority_load(h3, t3, 2, load);
    assert_int_equal(load[0] + load[1], 0);
}

static void test_ejection_arithmetic(void **state)
{
    (void)state;
    /* Envoy: the share ejected before this ejection must be under maxEjectionPercent */
    assert_true(keel_lb_may_eject(0, 3, 10)); /* the first ejection always happens (the guide's 3 endpoints) */
    assert_false(keel_lb_may_eject(1, 3, 10));
    assert_true(keel_lb_may_eject(0, 10, 10));
    assert_false(keel_lb_may_eject(1, 10, 10));
    assert_true(keel_lb_may_eject(1, 3, 50)); /* 33% < 50% */
    assert_false(keel_lb_may_eject(2, 3, 50));
    assert_true(keel_lb_may_eject(2, 3, 100));
    assert_false(keel_lb_may_eject(3, 3, 100));
    assert_false(keel_lb_may_eject(0, 0, 100));
    /* baseEjectionTime x times ejected, capped at max(300 s, base) */
    assert_int_equal(keel_lb_ejection_ms(30000, 1, 300000), 30000);
    assert_int_equal(keel_lb_ejection_ms(30000, 3, 300000), 90000);
    assert_int_equal(keel_lb_ejection_ms(30000, 20, 300000), 300000);
    assert_int_equal(keel_lb_ejection_ms(400000, 2, 300000), 400000);
    /* warmup: linear by default, minimumPercent floor, done after the window */
    assert_true(keel_lb_warmup_factor(5000, 10000, 10, 1.0) > 0.49 &&
                keel_lb_warmup_factor(5000, 10000, 10, 1.0) < 0.51);
    assert_true(keel_lb_warmup_factor(1, 10000, 10, 1.0) >= 0.1);
    assert_true(keel_lb_warmup_factor(10000, 10000, 10, 1.0) == 1.0);
    assert_true(keel_lb_warmup_factor(2500, 10000, 0, 2.0) > 0.49 && keel_lb_warmup_factor(2500, 10000, 0, 2.0) < 0.51);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_stable),
        cmocka_unit_test(test_ring),
        cmocka_unit_test(test_maglev),
        cmocka_unit_test(test_locality_match),
        cmocka_unit_test(test_locality_priorities),
        cmocka_unit_test(test_locality_distribute),
        cmocka_unit_test(test_priority_load),
        cmocka_unit_test(test_ejection_arithmetic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
