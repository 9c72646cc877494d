/*
 * stats.c - per-worker counter shards and their Prometheus exposition (see stats.h).
 *
 * A shard is the downstream counter array (first member, so the inline adds in stats.h reach it with one cast), a
 * mutex, and a hash map from cluster name to that cluster's counters. Only the owner worker inserts into the map,
 * and only under the mutex; the owner's own lookups need no lock (nobody else writes the map). A scrape takes each
 * shard's mutex while it walks that shard's map. Entries are never removed before the shard is freed, so their
 * names may be borrowed for the duration of a scrape.
 *
 * The exposition (text format 0.0.4) sums every shard: downstream stats as plain samples, then cluster stats with a
 * cluster_name label, one family per stat, clusters sorted by name so two scrapes of the same state are identical.
 * Gauges are kept as unsigned sums of signed deltas (wrapping), so a gauge's sum is read back as a signed value.
 */
#include "proxy/stats.h"

#include "base/buf.h"
#include "base/err.h"
#include "base/map.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct keel_stats_shard {
    struct keel_stats_counters c; /* must stay first: stats.h casts the shard to it */
    pthread_mutex_t mu;           /* guards inserts into clusters and every read by another thread */
    struct keel_map clusters;     /* name -> struct cluster_entry (whose first member is the stats) */
};

/* One cluster's counters and its name, in one allocation. */
struct cluster_entry {
    struct keel_cluster_stats st; /* first: the map value is also a struct keel_cluster_stats * */
    size_t nlen;
    char name[];
};

struct stat_desc {
    const char *name, *type, *help;
};

static const struct stat_desc downstream_desc[KEEL_STAT__COUNT] = {
#define DESC(id, name, type, help) {name, type, help},
    KEEL_DOWNSTREAM_STATS(DESC)
#undef DESC
};

static const struct stat_desc cluster_desc[KEEL_CSTAT__COUNT] = {
#define DESC(id, name, type, help) {name, type, help},
    KEEL_CLUSTER_STATS(DESC)
#undef DESC
};

struct keel_stats_shard *keel_stats_shard_new(void)
{
    struct keel_stats_shard *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    for (size_t i = 0; i < KEEL_STAT__COUNT; i++)
        atomic_init(&s->c.v[i], 0);
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return NULL;
    }
    keel_map_init(&s->clusters);
    return s;
}

void keel_stats_shard_free(struct keel_stats_shard *s)
{
    if (!s)
        return;
    size_t it = 0;
    const struct keel_map_slot *slot;
    while ((slot = keel_map_next(&s->clusters, &it)))
        free(slot->val);
    keel_map_free(&s->clusters);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

struct keel_cluster_stats *keel_stats_cluster(struct keel_stats_shard *s, const char *cluster_name)
{
    if (!s || !cluster_name)
        return NULL;
    size_t n = strlen(cluster_name);
    /* Lock-free read: this thread is the only writer of the map. */
    struct cluster_entry *e = keel_map_get(&s->clusters, cluster_name, n);
    if (e)
        return &e->st;
    e = malloc(sizeof(*e) + n + 1);
    if (!e)
        return NULL;
    for (size_t i = 0; i < KEEL_CSTAT__COUNT; i++)
        atomic_init(&e->st.v[i], 0);
    e->nlen = n;
    memcpy(e->name, cluster_name, n + 1);
    pthread_mutex_lock(&s->mu);
    int rc = keel_map_put(&s->clusters, e->name, n, e, NULL);
    pthread_mutex_unlock(&s->mu);
    if (rc) {
        free(e);
        return NULL;
    }
    return &e->st;
}

/* Index 0..4 for 1xx..5xx, -1 for anything else. */
static int code_class(int status)
{
    return status >= 100 && status <= 599 ? status / 100 - 1 : -1;
}

void keel_stats_count_code(struct keel_stats_shard *s, int status)
{
    static const enum keel_stat_id ids[5] = {KEEL_STAT_DOWNSTREAM_RQ_1XX, KEEL_STAT_DOWNSTREAM_RQ_2XX,
                                             KEEL_STAT_DOWNSTREAM_RQ_3XX, KEEL_STAT_DOWNSTREAM_RQ_4XX,
                                             KEEL_STAT_DOWNSTREAM_RQ_5XX};
    int k = code_class(status);
    if (s && k >= 0)
        keel_stats_add(s, ids[k], 1);
}

void keel_cstats_count_code(struct keel_cluster_stats *c, int status)
{
    /* Envoy has no upstream_rq_1xx: interim responses are not counted per cluster. */
    static const int ids[5] = {-1, KEEL_CSTAT_UPSTREAM_RQ_2XX, KEEL_CSTAT_UPSTREAM_RQ_3XX, KEEL_CSTAT_UPSTREAM_RQ_4XX,
                               KEEL_CSTAT_UPSTREAM_RQ_5XX};
    int k = code_class(status);
    if (c && k >= 0 && ids[k] >= 0)
        keel_cstats_add(c, (enum keel_cluster_stat_id)ids[k], 1);
}

uint64_t keel_stats_sum(struct keel_stats_shard *const *shards, size_t n, enum keel_stat_id id)
{
    uint64_t sum = 0;
    if ((unsigned)id >= KEEL_STAT__COUNT)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (shards[i])
            sum += atomic_load_explicit(&shards[i]->c.v[id], memory_order_relaxed);
    return sum;
}

/* ---- exposition ------------------------------------------------------------------------------------------------ */

/* A cluster's sums across shards during one scrape; name is borrowed from a shard entry. */
struct cluster_sum {
    const char *name;
    size_t nlen;
    uint64_t v[KEEL_CSTAT__COUNT];
};

static int cmp_sum(const void *a, const void *b)
{
    const struct cluster_sum *x = *(const struct cluster_sum *const *)a, *y = *(const struct cluster_sum *const *)b;
    size_t n = x->nlen < y->nlen ? x->nlen : y->nlen;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->nlen > y->nlen) - (x->nlen < y->nlen);
}

/* HELP text escaping: backslash and newline (format 0.0.4). */
static int put_help(struct keel_buf *out, const struct stat_desc *d)
{
    int rc = keel_buf_printf(out, "# HELP %s ", d->name);
    for (const char *p = d->help; !rc && *p; p++) {
        if (*p == '\\')
            rc = keel_buf_puts(out, "\\\\");
        else if (*p == '\n')
            rc = keel_buf_puts(out, "\\n");
        else
            rc = keel_buf_putc(out, *p);
    }
    return rc ? rc : keel_buf_printf(out, "\n# TYPE %s %s\n", d->name, d->type);
}

/* Label value escaping: backslash, double quote, newline (format 0.0.4). */
static int put_label_value(struct keel_buf *out, const char *s, size_t n)
{
    int rc = 0;
    size_t run = 0; /* start of the pending run of bytes that need no escape */
    for (size_t i = 0; !rc && i < n; i++) {
        const char *esc = s[i] == '\\' ? "\\\\" : s[i] == '"' ? "\\\"" : s[i] == '\n' ? "\\n" : NULL;
        if (!esc)
            continue;
        rc = keel_buf_append(out, s + run, i - run);
        if (!rc)
            rc = keel_buf_puts(out, esc);
        run = i + 1;
    }
    return rc ? rc : keel_buf_append(out, s + run, n - run);
}

static int put_value(struct keel_buf *out, const struct stat_desc *d, uint64_t v)
{
    if (strcmp(d->type, "gauge") == 0)
        return keel_buf_printf(out, " %" PRId64 "\n", (int64_t)v);
    return keel_buf_printf(out, " %" PRIu64 "\n", v);
}

static int put_downstream(struct keel_stats_shard *const *shards, size_t n, struct keel_buf *out)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < KEEL_STAT__COUNT; i++) {
        rc = put_help(out, &downstream_desc[i]);
        if (!rc)
            rc = keel_buf_puts(out, downstream_desc[i].name);
        if (!rc)
            rc = put_value(out, &downstream_desc[i], keel_stats_sum(shards, n, (enum keel_stat_id)i));
    }
    return rc;
}

/* Adds every cluster of every shard into sums (name -> struct cluster_sum). */
static int gather_clusters(struct keel_stats_shard *const *shards, size_t n, struct keel_map *sums)
{
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        struct keel_stats_shard *s = shards[i];
        if (!s)
            continue;
        pthread_mutex_lock(&s->mu);
        size_t it = 0;
        const struct keel_map_slot *slot;
        while (!rc && (slot = keel_map_next(&s->clusters, &it))) {
            const struct cluster_entry *e = slot->val;
            struct cluster_sum *cs = keel_map_get(sums, e->name, e->nlen);
            if (!cs) {
                cs = calloc(1, sizeof(*cs));
                if (!cs) {
                    rc = KEEL_ENOMEM;
                    break;
                }
                cs->name = e->name;
                cs->nlen = e->nlen;
                rc = keel_map_put(sums, cs->name, cs->nlen, cs, NULL);
                if (rc) {
                    free(cs);
                    break;
                }
            }
            for (size_t k = 0; k < KEEL_CSTAT__COUNT; k++)
                cs->v[k] += atomic_load_explicit(&e->st.v[k], memory_order_relaxed);
        }
        pthread_mutex_unlock(&s->mu);
    }
    return rc;
}

static int put_clusters(struct keel_stats_shard *const *shards, size_t n, struct keel_buf *out)
{
    struct keel_map sums;
    keel_map_init(&sums);
    struct cluster_sum **sorted = NULL;
    int rc = gather_clusters(shards, n, &sums);
    if (!rc && sums.len) {
        sorted = malloc(sums.len * sizeof(*sorted));
        if (!sorted)
            rc = KEEL_ENOMEM;
    }
    size_t count = 0;
    if (!rc && sums.len) {
        size_t it = 0;
        const struct keel_map_slot *slot;
        while ((slot = keel_map_next(&sums, &it)))
            sorted[count++] = slot->val;
        qsort(sorted, count, sizeof(*sorted), cmp_sum);
    }
    for (size_t i = 0; !rc && count && i < KEEL_CSTAT__COUNT; i++) {
        rc = put_help(out, &cluster_desc[i]);
        for (size_t c = 0; !rc && c < count; c++) {
            rc = keel_buf_printf(out, "%s{cluster_name=\"", cluster_desc[i].name);
            if (!rc)
                rc = put_label_value(out, sorted[c]->name, sorted[c]->nlen);
            if (!rc)
                rc = keel_buf_puts(out, "\"}");
            if (!rc)
                rc = put_value(out, &cluster_desc[i], sorted[c]->v[i]);
        }
    }
    free(sorted);
    size_t it = 0;
    const struct keel_map_slot *slot;
    while ((slot = keel_map_next(&sums, &it)))
        free(slot->val);
    keel_map_free(&sums);
    return rc;
}

int keel_stats_prometheus(struct keel_stats_shard *const *shards, size_t n, struct keel_buf *out)
{
    size_t start = out->len;
    int rc = put_downstream(shards, n, out);
    if (!rc)
        rc = put_clusters(shards, n, out);
    if (rc) { /* leave out as it was */
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}
