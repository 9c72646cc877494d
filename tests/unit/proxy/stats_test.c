/*
 * stats_test.c - tests for proxy/stats: counters written by several threads
 * into their own shards add up, gauges go up and down, status codes land in
 * the right class, the per-cluster table returns stable pointers, and the
 * Prometheus exposition is well-formed line by line (HELP/TYPE then samples
 * "name{labels} value"), sums clusters across shards, sorts them and
 * escapes label values.
 */
#include "proxy/stats.h"

#include "base/buf.h"
#include "base/err.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define NTHREADS 4
#define NITER 20000

struct worker_arg {
    struct keel_stats_shard *shard;
    int index;
};

static void *worker(void *p)
{
    struct worker_arg *w = p;
    struct keel_cluster_stats *shared = keel_stats_cluster(w->shard, "outbound|80||shared.default.svc.cluster.local");
    char own[64];
    snprintf(own, sizeof(own), "outbound|80||w%d.default.svc.cluster.local", w->index);
    for (int i = 0; i < NITER; i++) {
        keel_stats_add(w->shard, KEEL_STAT_DOWNSTREAM_RQ_TOTAL, 1);
        keel_stats_add(w->shard, KEEL_STAT_DOWNSTREAM_RQ_ACTIVE, 1);
        keel_stats_count_code(w->shard, 200 + (i % 2) * 300); /* 2xx and 5xx alternately */
        keel_stats_add(w->shard, KEEL_STAT_DOWNSTREAM_RQ_ACTIVE, -1);
        keel_cstats_add(shared, KEEL_CSTAT_UPSTREAM_RQ_TOTAL, 1);
        /* looked up every time: the table must return the same entry */
        keel_cstats_add(keel_stats_cluster(w->shard, own), KEEL_CSTAT_UPSTREAM_RQ_TOTAL, 1);
    }
    keel_stats_add(w->shard, KEEL_STAT_DOWNSTREAM_CX_ACTIVE, w->index + 1);
    return NULL;
}

/* A scraper running while the workers count (exercises the shard mutex). */
static atomic_bool scraping;
static atomic_int scrape_failures, scrapes;

static void *scraper(void *p)
{
    struct keel_stats_shard **shards = p;
    struct keel_buf b;
    keel_buf_init(&b, 1 << 20);
    while (atomic_load(&scraping)) {
        keel_buf_reset(&b);
        if (keel_stats_prometheus(shards, NTHREADS, &b) != 0) /* no cmocka asserts off the main thread */
            atomic_fetch_add(&scrape_failures, 1);
        atomic_fetch_add(&scrapes, 1);
    }
    keel_buf_free(&b);
    return NULL;
}

static void test_threads_sum(void **state)
{
    (void)state;
    struct keel_stats_shard *shards[NTHREADS];
    struct worker_arg args[NTHREADS];
    pthread_t th[NTHREADS], scr;
    for (int i = 0; i < NTHREADS; i++) {
        shards[i] = keel_stats_shard_new();
        assert_non_null(shards[i]);
        args[i] = (struct worker_arg){shards[i], i};
    }
    atomic_store(&scraping, true);
    assert_int_equal(pthread_create(&scr, NULL, scraper, shards), 0);
    for (int i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(th[i], NULL);
    atomic_store(&scraping, false);
    pthread_join(scr, NULL);
    assert_int_equal(atomic_load(&scrape_failures), 0);

    assert_int_equal(keel_stats_sum(shards, NTHREADS, KEEL_STAT_DOWNSTREAM_RQ_TOTAL), NTHREADS * NITER);
    assert_int_equal(keel_stats_sum(shards, NTHREADS, KEEL_STAT_DOWNSTREAM_RQ_ACTIVE), 0);
    assert_int_equal(keel_stats_sum(shards, NTHREADS, KEEL_STAT_DOWNSTREAM_RQ_2XX), NTHREADS * NITER / 2);
    assert_int_equal(keel_stats_sum(shards, NTHREADS, KEEL_STAT_DOWNSTREAM_RQ_5XX), NTHREADS * NITER / 2);
    assert_int_equal(keel_stats_sum(shards, NTHREADS, KEEL_STAT_DOWNSTREAM_CX_ACTIVE), 1 + 2 + 3 + 4);

    struct keel_buf b;
    keel_buf_init(&b, 1 << 20);
    assert_int_equal(keel_stats_prometheus(shards, NTHREADS, &b), 0);
    char want[256];
    snprintf(want, sizeof(want),
             "\nenvoy_cluster_upstream_rq_total{cluster_name=\"outbound|80||shared.default.svc.cluster.local\"} %d\n",
             NTHREADS * NITER);
    assert_non_null(strstr(keel_buf_cstr(&b), want));
    for (int i = 0; i < NTHREADS; i++) {
        snprintf(want, sizeof(want),
                 "\nenvoy_cluster_upstream_rq_total{cluster_name=\"outbound|80||w%d.default.svc.cluster.local\"} %d\n",
                 i, NITER);
        assert_non_null(strstr(keel_buf_cstr(&b), want));
    }
    snprintf(want, sizeof(want), "\nenvoy_http_downstream_rq_total %d\n", NTHREADS * NITER);
    assert_non_null(strstr(keel_buf_cstr(&b), want));
    keel_buf_free(&b);
    for (int i = 0; i < NTHREADS; i++)
        keel_stats_shard_free(shards[i]);
}

static void test_count_code(void **state)
{
    (void)state;
    struct keel_stats_shard *s = keel_stats_shard_new();
    assert_non_null(s);
    int codes[] = {100, 101, 199, 200, 204, 299, 301, 304, 400, 404, 499, 500, 503, 599, 0, 99, 600, 1000, -1};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        keel_stats_count_code(s, codes[i]);
    struct keel_stats_shard *const sh[] = {s};
    assert_int_equal(keel_stats_sum(sh, 1, KEEL_STAT_DOWNSTREAM_RQ_1XX), 3);
    assert_int_equal(keel_stats_sum(sh, 1, KEEL_STAT_DOWNSTREAM_RQ_2XX), 3);
    assert_int_equal(keel_stats_sum(sh, 1, KEEL_STAT_DOWNSTREAM_RQ_3XX), 2);
    assert_int_equal(keel_stats_sum(sh, 1, KEEL_STAT_DOWNSTREAM_RQ_4XX), 3);
    assert_int_equal(keel_stats_sum(sh, 1, KEEL_STAT_DOWNSTREAM_RQ_5XX), 3);

    struct keel_cluster_stats *c = keel_stats_cluster(s, "c");
    assert_non_null(c);
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        keel_cstats_count_code(c, codes[i]);
    assert_int_equal(atomic_load(&c->v[KEEL_CSTAT_UPSTREAM_RQ_2XX]), 3);
    assert_int_equal(atomic_load(&c->v[KEEL_CSTAT_UPSTREAM_RQ_3XX]), 2);
    assert_int_equal(atomic_load(&c->v[KEEL_CSTAT_UPSTREAM_RQ_4XX]), 3);
    assert_int_equal(atomic_load(&c->v[KEEL_CSTAT_UPSTREAM_RQ_5XX]), 3);
    keel_cstats_count_code(NULL, 200); /* OOM case: the caller just does not count */
    keel_cstats_add(NULL, KEEL_CSTAT_UPSTREAM_RQ_TOTAL, 1);
    keel_stats_shard_free(s);
}

static void test_cluster_table(void **state)
{
    (void)state;
    struct keel_stats_shard *s = keel_stats_shard_new();
    assert_non_null(s);
    char name[64];
    struct keel_cluster_stats *ptrs[300];
    for (int i = 0; i < 300; i++) { /* forces the map to grow several times */
        snprintf(name, sizeof(name), "cluster-%03d", i);
        ptrs[i] = keel_stats_cluster(s, name);
        assert_non_null(ptrs[i]);
        keel_cstats_add(ptrs[i], KEEL_CSTAT_UPSTREAM_CX_TOTAL, i);
        memset(name, 'x', strlen(name)); /* the shard copied the name: the caller's buffer is free to change */
    }
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "cluster-%03d", i);
        assert_ptr_equal(keel_stats_cluster(s, name), ptrs[i]);
        assert_int_equal(atomic_load(&ptrs[i]->v[KEEL_CSTAT_UPSTREAM_CX_TOTAL]), i);
    }
    assert_null(keel_stats_cluster(s, NULL));
    keel_stats_shard_free(s);
    keel_stats_shard_free(NULL);
}

/* Checks every line: comments are "# HELP name text" / "# TYPE name counter|gauge", samples "name{labels} value"
 * with a name that was announced by the TYPE line just before the family's samples. Returns the sample count. */
static int check_exposition(const char *text)
{
    int samples = 0;
    char family[128] = "";
    const char *p = text;
    assert_true(*p);
    while (*p) {
        const char *nl = strchr(p, '\n');
        assert_non_null(nl); /* every line ends with \n */
        size_t n = (size_t)(nl - p);
        char line[1024];
        assert_true(n < sizeof(line));
        memcpy(line, p, n);
        line[n] = '\0';
        if (strncmp(line, "# HELP ", 7) == 0) {
            assert_non_null(strchr(line + 7, ' '));
        } else if (strncmp(line, "# TYPE ", 7) == 0) {
            char type[32];
            assert_int_equal(sscanf(line + 7, "%127s %31s", family, type), 2);
            assert_true(strcmp(type, "counter") == 0 || strcmp(type, "gauge") == 0);
        } else {
            /* name */
            size_t i = 0;
            while ((line[i] >= 'a' && line[i] <= 'z') || line[i] == '_' || (line[i] >= '0' && line[i] <= '9'))
                i++;
            assert_true(i > 0);
            assert_true(strlen(family) == i && strncmp(line, family, i) == 0);
            /* labels */
            if (line[i] == '{') {
                i++;
                while (line[i] != '}') {
                    size_t k = i;
                    while ((line[i] >= 'a' && line[i] <= 'z') || line[i] == '_')
                        i++;
                    assert_true(i > k);
                    assert_int_equal(line[i++], '=');
                    assert_int_equal(line[i++], '"');
                    while (line[i] != '"') {
                        assert_true(line[i] != '\0');
                        if (line[i] == '\\') {
                            i++;
                            assert_true(line[i] == '\\' || line[i] == '"' || line[i] == 'n');
                        }
                        i++;
                    }
                    i++;
                    if (line[i] == ',')
                        i++;
                }
                i++;
            }
            /* value */
            assert_int_equal(line[i++], ' ');
            char *end;
            strtoll(line + i, &end, 10);
            assert_true(end > line + i);
            assert_int_equal(*end, '\0');
            samples++;
        }
        p = nl + 1;
    }
    return samples;
}

static void test_exposition(void **state)
{
    (void)state;
    struct keel_stats_shard *a = keel_stats_shard_new(), *b = keel_stats_shard_new();
    assert_non_null(a);
    assert_non_null(b);
    keel_stats_add(a, KEEL_STAT_DOWNSTREAM_CX_TOTAL, 3);
    keel_stats_add(b, KEEL_STAT_DOWNSTREAM_CX_TOTAL, 4);
    keel_stats_add(a, KEEL_STAT_DOWNSTREAM_CX_ACTIVE, 2);
    keel_stats_add(b, KEEL_STAT_DOWNSTREAM_CX_ACTIVE, -1);
    keel_cstats_add(keel_stats_cluster(b, "zeta"), KEEL_CSTAT_UPSTREAM_RQ_TOTAL, 5);
    keel_cstats_add(keel_stats_cluster(a, "alpha"), KEEL_CSTAT_UPSTREAM_RQ_TOTAL, 1);
    keel_cstats_add(keel_stats_cluster(b, "alpha"), KEEL_CSTAT_UPSTREAM_RQ_TOTAL, 2);
    keel_cstats_add(keel_stats_cluster(a, "we\"ird\\na\nme"), KEEL_CSTAT_UPSTREAM_CX_ACTIVE, 1);

    struct keel_stats_shard *const shards[] = {a, NULL, b}; /* NULL shards are skipped */
    struct keel_buf out;
    keel_buf_init(&out, 1 << 20);
    keel_buf_puts(&out, "# existing\n");
    assert_int_equal(keel_stats_prometheus(shards, 3, &out), 0);
    const char *t = keel_buf_cstr(&out);
    assert_true(strncmp(t, "# existing\n", 11) == 0); /* appends */
    int samples = check_exposition(t + 11);
    assert_int_equal(samples, KEEL_STAT__COUNT + KEEL_CSTAT__COUNT * 3);

    assert_non_null(strstr(t, "# HELP envoy_http_downstream_cx_total downstream connections accepted\n"
                              "# TYPE envoy_http_downstream_cx_total counter\n"
                              "envoy_http_downstream_cx_total 7\n"));
    assert_non_null(strstr(t, "# TYPE envoy_http_downstream_cx_active gauge\nenvoy_http_downstream_cx_active 1\n"));
    /* summed per cluster, sorted by name, label escaped */
    assert_non_null(strstr(t, "# TYPE envoy_cluster_upstream_rq_total counter\n"
                              "envoy_cluster_upstream_rq_total{cluster_name=\"alpha\"} 3\n"
                              "envoy_cluster_upstream_rq_total{cluster_name=\"we\\\"ird\\\\na\\nme\"} 0\n"
                              "envoy_cluster_upstream_rq_total{cluster_name=\"zeta\"} 5\n"));
    assert_non_null(strstr(t, "envoy_cluster_upstream_cx_active{cluster_name=\"we\\\"ird\\\\na\\nme\"} 1\n"));

    /* stable output */
    struct keel_buf again;
    keel_buf_init(&again, 1 << 20);
    keel_buf_puts(&again, "# existing\n");
    assert_int_equal(keel_stats_prometheus(shards, 3, &again), 0);
    assert_string_equal(keel_buf_cstr(&again), t);

    /* a buffer too small fails and is left as it was */
    struct keel_buf small;
    keel_buf_init(&small, 100);
    keel_buf_puts(&small, "keep");
    assert_int_equal(keel_stats_prometheus(shards, 3, &small), KEEL_ETOOBIG);
    assert_string_equal(keel_buf_cstr(&small), "keep");

    /* no clusters: downstream families only */
    struct keel_stats_shard *c = keel_stats_shard_new();
    struct keel_stats_shard *const one[] = {c};
    keel_buf_reset(&again);
    assert_int_equal(keel_stats_prometheus(one, 1, &again), 0);
    assert_int_equal(check_exposition(keel_buf_cstr(&again)), KEEL_STAT__COUNT);
    assert_null(strstr(keel_buf_cstr(&again), "envoy_cluster_"));

    keel_buf_free(&out);
    keel_buf_free(&again);
    keel_buf_free(&small);
    keel_stats_shard_free(a);
    keel_stats_shard_free(b);
    keel_stats_shard_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_sum),
        cmocka_unit_test(test_count_code),
        cmocka_unit_test(test_cluster_table),
        cmocka_unit_test(test_exposition),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
