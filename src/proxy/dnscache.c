/*
 * dnscache.c - the proxy's table of DNS names (see dnscache.h).
 *
 * Entries are heap objects (each embeds its refresh timer and is the data
 * of its in-flight query), kept in an array of pointers sorted by name, so
 * a sync is a merge of two sorted lists and the answers handed to the
 * compile come out sorted. The answers array is rebuilt lazily after a
 * change; its address lists point into the entries.
 *
 * Memory: this runs on the main thread in the config phase, so running out
 * of memory aborts (docs/principles.md), as compiling a snapshot does.
 */
#include "proxy/dnscache.h"

#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "mesh/clusters.h"
#include "net/dns.h"
#include "net/loop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    struct keel_dnscache *c;
    char *name;
    struct keel_dns_query *q; /* in flight, or NULL */
    struct keel_timer timer;  /* next lookup */
    char **addrs;             /* last known, in the resolver's order */
    size_t n_addrs;
    char *error; /* last lookup's error, or NULL */
    uint32_t ttl;
    bool answered;
    uint64_t next_ms; /* loop clock of the next lookup, while the timer runs */
    uint64_t lookups, failures;
};

struct keel_dnscache {
    struct keel_loop *loop;
    struct keel_dns *dns;
    keel_dnscache_changed_cb changed;
    void *data;
    uint64_t refresh_ms;
    struct entry **v; /* sorted by name */
    size_t n;
    bool warm;
    bool had_names; /* a sync named something once: readiness waited for those answers */
    bool dirty;     /* answers must be rebuilt */
    struct keel_dns_answer *ans;
    struct keel_dns_answers answers;
};

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "keel: out of memory in the DNS table\n");
        abort();
    }
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xcalloc(n, 1);
    memcpy(p, s, n);
    return p;
}

static void free_addrs(char **a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(a[i]);
    free(a);
}

static bool all_answered(const struct keel_dnscache *c)
{
    for (size_t i = 0; i < c->n; i++)
        if (!c->v[i]->answered)
            return false;
    return true;
}

static void start_lookup(struct entry *e);

static void on_timer(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    start_lookup(t->data);
}

static void schedule(struct entry *e, uint64_t ms)
{
    e->next_ms = keel_loop_now_ms(e->c->loop) + ms;
    if (keel_timer_start(e->c->loop, &e->timer, ms, on_timer, e) != 0)
        keel_log(KEEL_LOG_ERROR, "dns: %s: out of memory arming the refresh timer; it will not be refreshed", e->name);
}

/* Same addresses (as sets) and the same first one (LOGICAL_DNS uses it). */
static bool same_addrs(char **a, size_t na, const struct keel_dns_addr *b, size_t nb)
{
    if (na != nb)
        return false;
    if (na && strcmp(a[0], b[0].ip) != 0)
        return false;
    for (size_t i = 0; i < nb; i++) {
        bool found = false;
        for (size_t k = 0; k < na && !found; k++)
            found = strcmp(a[k], b[i].ip) == 0;
        if (!found)
            return false;
    }
    return true;
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static uint64_t next_interval(const struct keel_dnscache *c, const struct keel_dns_result *res)
{
    uint64_t refresh = c->refresh_ms;
    if (res->err || res->ttl == 0)
        return refresh;
    uint64_t floor = refresh < KEEL_DNSCACHE_MIN_TTL_REFRESH_MS ? refresh : KEEL_DNSCACHE_MIN_TTL_REFRESH_MS;
    uint64_t ttl = (uint64_t)res->ttl * 1000u;
    return ttl > floor ? ttl : floor;
}

static void on_answer(const struct keel_dns_result *res, void *data)
{
    struct entry *e = data;
    struct keel_dnscache *c = e->c;
    e->q = NULL;
    e->lookups++;
    bool was_answered = e->answered;
    e->answered = true;
    bool changed = false;
    if (res->err == 0 || res->err == KEEL_ENOTFOUND) {
        /* an authoritative answer, possibly "no such name": it replaces what we knew */
        if (!same_addrs(e->addrs, e->n_addrs, res->addrs, res->n_addrs)) {
            char **a = xcalloc(res->n_addrs, sizeof(char *));
            for (size_t i = 0; i < res->n_addrs; i++)
                a[i] = xstrdup(res->addrs[i].ip);
            free_addrs(e->addrs, e->n_addrs);
            e->addrs = a;
            e->n_addrs = res->n_addrs;
            changed = true;
            if (res->n_addrs) {
                char list[512];
                size_t used = 0;
                for (size_t i = 0; i < res->n_addrs && used < sizeof(list); i++) {
                    int w = snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", res->addrs[i].ip);
                    used += w > 0 ? (size_t)w : 0;
                }
                keel_log(KEEL_LOG_INFO, "dns: %s -> %s", e->name, list);
            }
        }
        e->ttl = res->ttl;
    }
    /* timeouts and server failures keep the last known addresses */
    if (res->err)
        e->failures++;
    if (!same_str(e->error, res->error)) {
        if (res->error)
            keel_log(KEEL_LOG_WARN, "dns: %s: %s (%s; retried every %llu ms)", e->name, res->error,
                     e->n_addrs ? "keeping the last known addresses" : "no endpoints for it",
                     (unsigned long long)c->refresh_ms);
        else if (e->error)
            keel_log(KEEL_LOG_INFO, "dns: %s resolves again", e->name);
        free(e->error);
        e->error = res->error ? xstrdup(res->error) : NULL;
        changed = true;
    }
    schedule(e, next_interval(c, res));
    if (!was_answered && !c->warm && all_answered(c))
        c->warm = true;
    if (changed) {
        c->dirty = true;
        c->changed(c->data);
    }
}

static void start_lookup(struct entry *e)
{
    if (e->q)
        return;
    int rc = keel_dns_resolve(e->c->dns, e->name, on_answer, e, &e->q);
    if (rc != 0) {
        e->q = NULL;
        keel_log(KEEL_LOG_WARN, "dns: cannot look up %s: %s", e->name, keel_strerror(rc));
        e->answered = true; /* do not hold readiness back for a name nobody can resolve */
        if (!e->c->warm && all_answered(e->c))
            e->c->warm = true;
        schedule(e, e->c->refresh_ms);
    }
}

static void entry_free(struct entry *e)
{
    keel_dns_cancel(e->q);
    keel_timer_stop(&e->timer);
    free_addrs(e->addrs, e->n_addrs);
    free(e->error);
    free(e->name);
    free(e);
}

struct keel_dnscache *keel_dnscache_new(struct keel_loop *loop, struct keel_dns *dns, keel_dnscache_changed_cb changed,
                                        void *data)
{
    struct keel_dnscache *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->loop = loop;
    c->dns = dns;
    c->changed = changed;
    c->data = data;
    c->refresh_ms = KEEL_DNSCACHE_DEFAULT_REFRESH_MS;
    c->warm = true;
    return c;
}

void keel_dnscache_free(struct keel_dnscache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        entry_free(c->v[i]);
    free(c->v);
    free(c->ans);
    free(c);
}

void keel_dnscache_sync(struct keel_dnscache *c, const char *const *names, size_t n, uint64_t refresh_ms)
{
    c->refresh_ms = refresh_ms ? (refresh_ms < KEEL_DNSCACHE_MIN_REFRESH_MS ? KEEL_DNSCACHE_MIN_REFRESH_MS : refresh_ms)
                               : KEEL_DNSCACHE_DEFAULT_REFRESH_MS;
    struct entry **v = xcalloc(n, sizeof(*v));
    size_t i = 0, k = 0, out = 0;
    while (k < n) {
        int cmp = i < c->n ? strcmp(c->v[i]->name, names[k]) : 1;
        if (cmp < 0) {
            entry_free(c->v[i++]); /* no longer needed */
        } else if (cmp == 0) {
            v[out++] = c->v[i++];
            k++;
        } else {
            struct entry *e = xcalloc(1, sizeof(*e));
            e->c = c;
            e->name = xstrdup(names[k++]);
            keel_timer_init(&e->timer);
            v[out++] = e;
        }
    }
    while (i < c->n)
        entry_free(c->v[i++]);
    free(c->v);
    c->v = v;
    c->n = out;
    c->dirty = true;
    if (!c->had_names && n > 0) {
        c->had_names = true;
        c->warm = false; /* the first names ever: readiness waits for their answers */
    }
    for (size_t j = 0; j < c->n; j++)
        if (!c->v[j]->answered && !c->v[j]->q && !keel_timer_is_active(&c->v[j]->timer))
            start_lookup(c->v[j]);
    if (!c->warm && all_answered(c))
        c->warm = true;
}

const struct keel_dns_answers *keel_dnscache_answers(struct keel_dnscache *c)
{
    if (c->dirty || !c->ans) {
        free(c->ans);
        c->ans = xcalloc(c->n, sizeof(*c->ans));
        for (size_t i = 0; i < c->n; i++) {
            const struct entry *e = c->v[i];
            c->ans[i] = (struct keel_dns_answer){e->name, (const char *const *)e->addrs, e->n_addrs, e->error};
        }
        c->answers.v = c->ans;
        c->answers.n = c->n;
        c->dirty = false;
    }
    return &c->answers;
}

bool keel_dnscache_warm(const struct keel_dnscache *c)
{
    return c->warm;
}

int keel_dnscache_dump_json(const struct keel_dnscache *c, struct keel_buf *out)
{
    int rc = keel_buf_putc(out, '[');
    for (size_t i = 0; i < c->n && rc == 0; i++) {
        const struct entry *e = c->v[i];
        rc = keel_buf_puts(out, i ? ", {\"name\": " : "{\"name\": ");
        if (rc == 0)
            rc = keel_buf_json_str(out, e->name);
        if (rc == 0)
            rc = keel_buf_puts(out, ", \"addresses\": [");
        for (size_t k = 0; k < e->n_addrs && rc == 0; k++) {
            rc = k ? keel_buf_puts(out, ", ") : 0;
            if (rc == 0)
                rc = keel_buf_json_str(out, e->addrs[k]);
        }
        if (rc == 0)
            rc = keel_buf_printf(out, "], \"ttl\": %u, \"lookups\": %llu, \"failures\": %llu, \"resolving\": %s",
                                 (unsigned)e->ttl, (unsigned long long)e->lookups, (unsigned long long)e->failures,
                                 e->q ? "true" : "false");
        if (rc == 0 && keel_timer_is_active(&e->timer)) {
            uint64_t now = keel_loop_now_ms(c->loop);
            uint64_t due = e->next_ms > now ? e->next_ms - now : 0;
            rc = keel_buf_printf(out, ", \"nextLookupMs\": %llu", (unsigned long long)due);
        }
        if (rc == 0)
            rc = keel_buf_puts(out, ", \"error\": ");
        if (rc == 0)
            rc = e->error ? keel_buf_json_str(out, e->error) : keel_buf_puts(out, "null");
        if (rc == 0)
            rc = keel_buf_putc(out, '}');
    }
    if (rc == 0)
        rc = keel_buf_putc(out, ']');
    return rc;
}
