/*
 * dfp.c - per-request DNS resolution, the dynamic forward proxy's host cache (see dfp.h).
 *
 * One entry per name (lower-case, no trailing dot) in a map on the worker: the address in use, the last error,
 * the in-flight query, a refresh timer and the circular list of waiters (HTTP streams, L4 sessions) for the first
 * answer. An entry
 * is created by the first request for its name and freed by its own timer once no request used it for
 * KEEL_DFP_HOST_TTL_MS, or with the cache.
 *
 * Memory: an entry that cannot be allocated (or a lookup that cannot start) answers that request 503 DF, as a
 * failed lookup would; nothing aborts on the request path except the stream arena's endpoint copy, as in the
 * rest of exchange.c.
 */
#include "proxy/dfp.h"

#include "proxy/stream.h"

#include "base/err.h"
#include "base/log.h"
#include "base/map.h"
#include "mesh/clusters.h"
#include "net/dns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct keel_dfp {
    struct keel_loop *loop;
    struct keel_dns *dns;
    struct keel_map by_name; /* name -> struct entry * (the key lives in the entry) */
};

struct entry {
    struct keel_dfp *c;
    struct keel_dns_query *q;     /* in flight, or NULL */
    struct keel_timer timer;      /* next refresh (or expiry) */
    struct keel_dfp_wait waiters; /* sentinel of the waiters for the first answer */
    bool answered;                /* a first answer (address or error) is in */
    bool logged;                  /* the current error was logged */
    int err;                      /* last lookup's error, 0 when it found an address */
    char error[96];               /* its text */
    char ip[KEEL_DNS_ADDRSTRLEN]; /* the address in use, or "" */
    int family;
    uint64_t last_used_ms;
    size_t len;
    char name[]; /* the map's key */
};

/* ---- the cache ---------------------------------------------------------------------------------------------- */

static struct keel_dfp *cache_for(struct keel_pworker *pw)
{
    if (pw->dfp)
        return pw->dfp;
    if (!pw->rt)
        return NULL; /* a worker built without a runtime (fuzz targets): never resolve */
    struct keel_dfp *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    const struct keel_proxy_options *opt = keel_runtime_options(pw->rt);
    struct keel_dns_options dopt = {.servers = opt ? opt->dns_server : NULL};
    int rc = keel_dns_new(pw->loop, &dopt, &c->dns);
    if (rc != 0) {
        keel_log(KEEL_LOG_ERROR, "worker %u: cannot start a DNS resolver for per-request lookups: %s", pw->index,
                 keel_strerror(rc));
        free(c);
        return NULL;
    }
    c->loop = pw->loop;
    keel_map_init(&c->by_name);
    pw->dfp = c;
    return c;
}

static void waiters_detach(struct entry *e)
{
    struct keel_dfp_wait *s = &e->waiters;
    while (s->next != s) {
        struct keel_dfp_wait *w = s->next;
        s->next = w->next;
        w->prev = w->next = NULL;
    }
    s->prev = s;
}

static void entry_free(struct entry *e)
{
    keel_dns_cancel(e->q);
    keel_timer_stop(&e->timer);
    waiters_detach(e);
    free(e);
}

static void entry_drop(struct entry *e)
{
    keel_map_del(&e->c->by_name, e->name, e->len);
    entry_free(e);
}

static void on_answer(const struct keel_dns_result *res, void *data);

static void on_timer(struct keel_loop *loop, struct keel_timer *t)
{
    struct entry *e = t->data;
    if (keel_loop_now_ms(loop) - e->last_used_ms >= KEEL_DFP_HOST_TTL_MS && e->waiters.next == &e->waiters) {
        entry_drop(e); /* nobody asked for it lately (Envoy's host_ttl) */
        return;
    }
    if (keel_dns_resolve(e->c->dns, e->name, on_answer, e, &e->q) != 0) {
        e->q = NULL;
        keel_timer_start(loop, &e->timer, KEEL_DFP_REFRESH_MS, on_timer, e);
    }
}

/* The first IPv4 address of the answer, else its first address. */
static const struct keel_dns_addr *choose(const struct keel_dns_result *res)
{
    for (size_t i = 0; i < res->n_addrs; i++)
        if (res->addrs[i].family == AF_INET)
            return &res->addrs[i];
    return res->n_addrs ? &res->addrs[0] : NULL;
}

static void on_answer(const struct keel_dns_result *res, void *data)
{
    struct entry *e = data;
    struct keel_dfp *c = e->c;
    e->q = NULL;
    e->answered = true;
    uint64_t next = KEEL_DFP_REFRESH_MS;
    const struct keel_dns_addr *a = res->err == 0 ? choose(res) : NULL;
    if (a) {
        snprintf(e->ip, sizeof(e->ip), "%s", a->ip);
        e->family = a->family;
        e->err = 0;
        e->error[0] = '\0';
        e->logged = false;
        if (res->ttl) {
            uint64_t ttl = (uint64_t)res->ttl * 1000;
            next = ttl > KEEL_DFP_MIN_TTL_REFRESH_MS ? ttl : KEEL_DFP_MIN_TTL_REFRESH_MS;
        }
    } else {
        int err = res->err ? res->err : KEEL_ENOTFOUND;
        if (err == KEEL_ENOTFOUND)
            e->ip[0] = '\0'; /* the name has no address any more; a timeout or server error keeps the last one */
        if (!e->logged || err != e->err)
            keel_log(KEEL_LOG_WARN, "dns: %s: %s%s", e->name, res->error ? res->error : keel_strerror(err),
                     e->ip[0] ? " (the last known address stays in use)" : "");
        e->logged = true;
        e->err = err;
        snprintf(e->error, sizeof(e->error), "%s", res->error ? res->error : keel_strerror(err));
    }
    if (next > KEEL_DFP_HOST_TTL_MS)
        next = KEEL_DFP_HOST_TTL_MS;
    keel_timer_start(c->loop, &e->timer, next, on_timer, e);
    /* the waiters go on, each taken off the list before it runs: one may finish, free or reset others (they
     * leave the list through keel_dfp_wait_cancel) */
    struct keel_dfp_wait *s = &e->waiters;
    while (s->next != s) {
        struct keel_dfp_wait *w = s->next;
        s->next = w->next;
        w->next->prev = s;
        w->prev = w->next = NULL;
        w->done(w->data);
    }
}

/* A lower-case copy of a host name that DNS could hold (letters, digits, '-', '_', dots between labels), without
 * a trailing dot. Returns its length, or 0 when it is not one. */
static size_t normalize(struct keel_str h, char *out, size_t cap)
{
    if (h.n && h.p[h.n - 1] == '.')
        h.n--;
    if (h.n == 0 || h.n > 253 || h.n >= cap)
        return 0;
    size_t label = 0;
    for (size_t i = 0; i < h.n; i++) {
        char ch = h.p[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if (ch == '.') {
            if (label == 0)
                return 0;
            label = 0;
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_') {
            if (++label > 63)
                return 0;
        } else {
            return 0;
        }
        out[i] = ch;
    }
    out[h.n] = '\0';
    return h.n;
}

enum lookup_status { LOOKUP_READY, LOOKUP_WAIT, LOOKUP_FAILED, LOOKUP_OVERFLOW };

static enum lookup_status lookup(struct keel_dfp *c, const char *name, size_t len, struct keel_dfp_wait *w,
                                 const struct entry **out)
{
    struct entry *e = keel_map_get(&c->by_name, name, len);
    if (!e) {
        if (c->by_name.len >= KEEL_DFP_MAX_HOSTS)
            return LOOKUP_OVERFLOW;
        e = calloc(1, sizeof(*e) + len + 1);
        if (!e)
            return LOOKUP_FAILED;
        memcpy(e->name, name, len + 1);
        e->len = len;
        e->c = c;
        e->waiters.prev = e->waiters.next = &e->waiters;
        keel_timer_init(&e->timer);
        e->timer.data = e;
        if (keel_map_put(&c->by_name, e->name, len, e, NULL) != 0) {
            free(e);
            return LOOKUP_FAILED;
        }
        if (keel_dns_resolve(c->dns, e->name, on_answer, e, &e->q) != 0) {
            e->q = NULL;
            entry_drop(e);
            return LOOKUP_FAILED;
        }
    }
    e->last_used_ms = keel_loop_now_ms(c->loop);
    *out = e;
    if (e->ip[0])
        return LOOKUP_READY;
    if (e->answered)
        return LOOKUP_FAILED;
    /* the first lookup is in flight: wait in line */
    w->next = &e->waiters;
    w->prev = e->waiters.prev;
    e->waiters.prev->next = w;
    e->waiters.prev = w;
    return LOOKUP_WAIT;
}

/* ---- the stream's side --------------------------------------------------------------------------------------- */

static void reply_dns_failure(struct keel_stream *st)
{
    static const char body[] = "DNS resolution failure";
    keel_stream_local_reply(st, 503, KEEL_RF(DNS_RESOLUTION_FAILED), "dns_resolution_failure", body, sizeof(body) - 1,
                            NULL, 0);
}

static void stream_answered(void *data)
{
    keel_stream_dispatch(data);
}

static enum keel_dfp_status set_endpoint(struct keel_stream *st, const char *ip, int family, uint32_t port,
                                         const char *hostname)
{
    struct keel_endpoint *ep = keel_arena_xalloc(st->arena, sizeof(*ep));
    memset(ep, 0, sizeof(*ep));
    ep->address = keel_arena_strdup(st->arena, ip);
    ep->hostport = family == AF_INET6 ? keel_arena_printf(st->arena, "[%s]:%u", ip, port)
                                      : keel_arena_printf(st->arena, "%s:%u", ip, port);
    ep->port = port;
    ep->weight = 1;
    ep->hostname = hostname ? keel_arena_strdup(st->arena, hostname) : NULL;
    st->ep = ep;
    return KEEL_DFP_READY;
}

enum keel_dfp_status keel_dfp_endpoint(struct keel_stream *st, const struct keel_cluster *c)
{
    struct keel_str host, ps;
    uint32_t port = 0;
    st->ep = NULL;
    if (keel_http_authority_split(st->req.authority, &host, &ps)) {
        uint64_t v;
        if (keel_str_to_u64(ps, 65535, &v) != 0 || v == 0) {
            keel_stream_local_reply(st, 503, KEEL_RF(NO_HEALTHY_UPSTREAM), "invalid_authority_port",
                                    "no healthy upstream", 19, NULL, 0);
            return KEEL_DFP_ANSWERED;
        }
        port = (uint32_t)v;
    }
    if (c->type == KEEL_CLUSTER_DYNAMIC_DNS && c->port) {
        /* the ServiceEntry port the request was routed to (its targetPort when it names one) */
        port = c->service_port && c->service_port->target_port ? c->service_port->target_port : c->port;
    } else if (!port) {
        /* pass-through without a port: a service cluster's port, else the scheme's */
        port = c->port ? c->port : keel_str_eq_c(st->req.scheme, "https") ? 443 : 80;
    }
    /* an IP literal is the destination itself */
    char lit[KEEL_DNS_ADDRSTRLEN + 8];
    if (host.n >= 2 && host.p[0] == '[' && host.p[host.n - 1] == ']' && host.n - 2 < KEEL_DNS_ADDRSTRLEN) {
        char spec[KEEL_ADDR_MAX_INPUT];
        snprintf(spec, sizeof(spec), "%.*s:%u", (int)host.n, host.p, port);
        struct keel_addr a;
        snprintf(lit, sizeof(lit), "%.*s", (int)(host.n - 2), host.p + 1);
        if (keel_addr_parse(spec, &a) == 0 && !strchr(lit, '%'))
            return set_endpoint(st, lit, AF_INET6, port, NULL);
    } else if (host.n && host.n < KEEL_DNS_ADDRSTRLEN) {
        char spec[KEEL_ADDR_MAX_INPUT];
        snprintf(spec, sizeof(spec), "%.*s:%u", (int)host.n, host.p, port);
        struct keel_addr a;
        snprintf(lit, sizeof(lit), "%.*s", (int)host.n, host.p);
        if (keel_addr_parse(spec, &a) == 0 && a.u.sa.sa_family == AF_INET)
            return set_endpoint(st, lit, AF_INET, port, NULL);
    }
    /* a name */
    char name[KEEL_DNS_MAX_NAME + 1];
    size_t len = normalize(host, name, sizeof(name));
    struct keel_dfp *cache = len ? cache_for(st->ds->pw) : NULL;
    if (!cache) {
        reply_dns_failure(st);
        return KEEL_DFP_ANSWERED;
    }
    const struct entry *e = NULL;
    st->dfp_wait.done = stream_answered;
    st->dfp_wait.data = st;
    switch (lookup(cache, name, len, &st->dfp_wait, &e)) {
    case LOOKUP_READY:
        return set_endpoint(st, e->ip, e->family, port, e->name);
    case LOOKUP_WAIT:
        return KEEL_DFP_PARKED;
    case LOOKUP_OVERFLOW: {
        static const char body[] = "DNS cache overflow";
        keel_stream_local_reply(st, 503, 0, "dns_cache_overflow", body, sizeof(body) - 1, NULL, 0);
        return KEEL_DFP_ANSWERED;
    }
    case LOOKUP_FAILED:
    default:
        reply_dns_failure(st);
        return KEEL_DFP_ANSWERED;
    }
}

void keel_dfp_cancel(struct keel_stream *st)
{
    keel_dfp_wait_cancel(&st->dfp_wait);
}

/* ---- other callers (L4 sessions) ----------------------------------------------------------------------------- */

enum keel_dfp_result keel_dfp_resolve(struct keel_pworker *pw, const char *host, struct keel_dfp_wait *w,
                                      struct keel_dfp_addr *out)
{
    out->ip[0] = out->error[0] = '\0';
    out->family = 0;
    size_t hn = strlen(host);
    /* an IP literal is the destination itself */
    if (hn && hn < KEEL_DNS_ADDRSTRLEN && !strchr(host, '%')) {
        char spec[KEEL_ADDR_MAX_INPUT];
        snprintf(spec, sizeof(spec), strchr(host, ':') ? "[%s]:1" : "%s:1", host);
        struct keel_addr a;
        if (keel_addr_parse(spec, &a) == 0) {
            snprintf(out->ip, sizeof(out->ip), "%s", host);
            out->family = a.u.sa.sa_family;
            return KEEL_DFP_RES_READY;
        }
    }
    char name[KEEL_DNS_MAX_NAME + 1];
    size_t len = normalize(keel_str_c(host), name, sizeof(name));
    struct keel_dfp *cache = len ? cache_for(pw) : NULL;
    if (!cache) {
        snprintf(out->error, sizeof(out->error), "%s", len ? "no resolver" : "not a host name");
        return KEEL_DFP_RES_FAILED;
    }
    const struct entry *e = NULL;
    switch (lookup(cache, name, len, w, &e)) {
    case LOOKUP_READY:
        snprintf(out->ip, sizeof(out->ip), "%s", e->ip);
        out->family = e->family;
        return KEEL_DFP_RES_READY;
    case LOOKUP_WAIT:
        return KEEL_DFP_RES_WAIT;
    case LOOKUP_OVERFLOW:
        return KEEL_DFP_RES_OVERFLOW;
    case LOOKUP_FAILED:
    default:
        snprintf(out->error, sizeof(out->error), "%s", e && e->error[0] ? e->error : "lookup failed");
        return KEEL_DFP_RES_FAILED;
    }
}

void keel_dfp_wait_cancel(struct keel_dfp_wait *w)
{
    if (!w->next)
        return;
    w->prev->next = w->next;
    w->next->prev = w->prev;
    w->prev = w->next = NULL;
}

void keel_dfp_free(struct keel_pworker *pw)
{
    struct keel_dfp *c = pw->dfp;
    if (!c)
        return;
    size_t it = 0;
    const struct keel_map_slot *s;
    while ((s = keel_map_next(&c->by_name, &it)) != NULL)
        entry_free(s->val);
    keel_map_free(&c->by_name);
    keel_dns_free(c->dns);
    free(c);
    pw->dfp = NULL;
}
