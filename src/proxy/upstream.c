/*
 * upstream.c - connections to upstream endpoints, per-worker pools, and the
 * choice of an endpoint (see proxy_int.h).
 *
 * Each worker keeps, per endpoint ("ip:port"), a LIFO of idle keep-alive
 * connections; a pooled connection keeps read interest so that a server
 * closing it is noticed and the connection dropped before anyone reuses it.
 * Nothing here is shared between workers.
 *
 * Endpoint choice follows the cluster's DestinationRule load balancer:
 * ROUND_ROBIN (a per-worker cursor per cluster), RANDOM, and LEAST_REQUEST
 * (Envoy's default: the better of two random endpoints by requests in
 * flight from this worker). Weights of ROUND_ROBIN/RANDOM choices follow the
 * endpoints' weights.
 */
#include "proxy/stream.h"

#include "base/err.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct keel_upool *pool_get(struct keel_pworker *pw, const char *key, bool create)
{
    struct keel_upool *p = keel_map_get(&pw->pools, key, strlen(key));
    if (p || !create)
        return p;
    p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    snprintf(p->key, sizeof(p->key), "%s", key);
    if (keel_map_put(&pw->pools, p->key, strlen(p->key), p, NULL) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

static size_t endpoint_active(struct keel_pworker *pw, const struct keel_endpoint *ep)
{
    struct keel_upool *p = pool_get(pw, ep->hostport, false);
    return p ? p->active : 0;
}

/* weighted choice by a random value */
static const struct keel_endpoint *weighted(const struct keel_cluster *c, uint64_t r, const struct keel_endpoint *avoid)
{
    uint64_t total = 0;
    for (size_t i = 0; i < c->n_endpoints; i++)
        if (&c->endpoints[i] != avoid || c->n_endpoints == 1)
            total += c->endpoints[i].weight ? c->endpoints[i].weight : 1;
    if (!total)
        return NULL;
    r %= total;
    for (size_t i = 0; i < c->n_endpoints; i++) {
        if (&c->endpoints[i] == avoid && c->n_endpoints > 1)
            continue;
        uint64_t w = c->endpoints[i].weight ? c->endpoints[i].weight : 1;
        if (r < w)
            return &c->endpoints[i];
        r -= w;
    }
    return &c->endpoints[c->n_endpoints - 1];
}

const struct keel_endpoint *keel_upstream_pick(struct keel_pworker *pw, const struct keel_cluster *c,
                                               const struct keel_endpoint *avoid)
{
    if (!c || c->n_endpoints == 0)
        return NULL;
    if (c->n_endpoints == 1)
        return &c->endpoints[0];
    switch (c->lb.policy) {
    case KEEL_LB_ROUND_ROBIN: {
        /* per-worker cursor per cluster; the key is our own copy of the name, since the
         * snapshot that owns c->name may be gone by the next request */
        size_t klen = strlen(c->name);
        uintptr_t cur = 0;
        void *v = keel_map_get(&pw->rr, c->name, klen);
        if (v) {
            cur = (uintptr_t)v - 1;
        } else {
            char *key = strdup(c->name);
            if (!key || keel_map_put(&pw->rr, key, klen, (void *)1, NULL) != 0) {
                free(key);
                return weighted(c, keel_pworker_random(pw), avoid);
            }
        }
        const struct keel_endpoint *ep = &c->endpoints[cur % c->n_endpoints];
        if (ep == avoid)
            ep = &c->endpoints[++cur % c->n_endpoints];
        keel_map_put(&pw->rr, c->name, klen, (void *)(cur + 2), NULL); /* existing key: kept, value replaced */
        return ep;
    }
    case KEEL_LB_RANDOM:
        return weighted(c, keel_pworker_random(pw), avoid);
    default: {
        /* LEAST_REQUEST: power of two choices */
        const struct keel_endpoint *a = weighted(c, keel_pworker_random(pw), avoid);
        const struct keel_endpoint *b = weighted(c, keel_pworker_random(pw), avoid);
        if (!a || !b)
            return a ? a : b;
        return endpoint_active(pw, b) < endpoint_active(pw, a) ? b : a;
    }
    }
}

static void free_later(struct keel_loop *loop, struct keel_defer *d)
{
    (void)loop;
    struct keel_upconn *uc = d->data;
    keel_uph2_free(uc); /* here, not in upconn_close: a close may happen inside the session's callbacks */
    keel_buf_free(&uc->in);
    keel_buf_free(&uc->out);
    free(uc);
}

static int pool_kind(bool h2, bool tls)
{
    return (h2 ? 1 : 0) + (tls ? 2 : 0);
}

static void pool_remove(struct keel_upconn *uc)
{
    struct keel_upool *p = pool_get(uc->pw, uc->key, false);
    if (!p)
        return;
    int k = pool_kind(uc->h2 != NULL, uc->tls_ctx != NULL);
    for (struct keel_upconn **pp = &p->idle[k]; *pp; pp = &(*pp)->next_idle) {
        if (*pp == uc) {
            *pp = uc->next_idle;
            p->n_idle[k]--;
            break;
        }
    }
    uc->next_idle = NULL;
}

static void active_dec(struct keel_upconn *uc)
{
    struct keel_upool *p = pool_get(uc->pw, uc->key, false);
    if (p && p->active)
        p->active--;
}

static void upconn_close(struct keel_upconn *uc)
{
    if (uc->closed)
        return;
    uc->closed = true;
    if (!uc->st)
        pool_remove(uc);
    keel_io_stop(&uc->io);
    keel_timer_stop(&uc->timer);
    keel_tls_conn_free(uc->tls);
    uc->tls = NULL;
    if (uc->fd >= 0)
        close(uc->fd);
    uc->fd = -1;
    keel_cstats_add(uc->cstats, KEEL_CSTAT_UPSTREAM_CX_ACTIVE, -1);
    keel_loop_defer(uc->pw->loop, &uc->free_d, free_later, uc);
}

static void on_timer(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct keel_upconn *uc = t->data;
    if (uc->st && !uc->connected) {
        keel_cstats_add(uc->cstats, KEEL_CSTAT_UPSTREAM_CX_CONNECT_TIMEOUT, 1);
        keel_cstats_add(uc->cstats, KEEL_CSTAT_UPSTREAM_CX_CONNECT_FAIL, 1);
        struct keel_stream *st = uc->st;
        uc->st = NULL;
        active_dec(uc);
        upconn_close(uc);
        keel_stream_upstream_failed(st, KEEL_ETIMEDOUT, true, false);
    } else if (!uc->st) {
        upconn_close(uc); /* pooled and idle too long */
    }
}

static int read_some(struct keel_upconn *uc)
{
    size_t room = uc->in.max - uc->in.len;
    if (room == 0)
        return 0;
    char tmp[KEEL_PROXY_READ_CHUNK];
    ssize_t total = 0, n;
    do { /* TLS may hold more decrypted records than the socket announces */
        size_t want = room - (size_t)total < sizeof(tmp) ? room - (size_t)total : sizeof(tmp);
        n = uc->tls ? keel_tls_read(uc->tls, tmp, want) : keel_sock_read(uc->fd, tmp, want);
        if (n > 0) {
            keel_buf_append(&uc->in, tmp, (size_t)n);
            keel_cstats_add(uc->cstats, KEEL_CSTAT_UPSTREAM_CX_RX_BYTES, n);
            total += n;
        }
    } while (n > 0 && uc->tls && (size_t)total < room);
    if (total > 0)
        return (int)total;
    return n == 0 ? KEEL_ECLOSED : (int)n;
}

static void on_io(struct keel_loop *loop, struct keel_io *io, uint32_t ev)
{
    (void)loop;
    struct keel_upconn *uc = io->data;
    if (!uc->connected) {
        struct keel_stream *st = uc->st;
        int rc = 0;
        if (uc->tls) {
            rc = keel_tls_handshake(uc->tls); /* TCP is up; TLS origination in progress */
            if (rc == KEEL_EAGAIN) {
                keel_io_modify(&uc->io, keel_tls_want(uc->tls));
                return;
            }
            if (rc != 0)
                keel_log(KEEL_LOG_DEBUG, "TLS to %s (SNI %s) failed: %s", uc->key, uc->sni ? uc->sni : "-",
                         keel_tls_error(uc->tls));
        } else {
            if (!(ev & (KEEL_IO_WRITE | KEEL_IO_ERROR)))
                return;
            rc = keel_sock_connect_result(uc->fd);
            if (rc == 0 && uc->tls_ctx) {
                rc = keel_tls_connect(uc->tls_ctx, uc->fd, uc->sni, &uc->tls);
                if (rc == 0) {
                    on_io(loop, io, KEEL_IO_WRITE); /* the ClientHello goes out now */
                    return;
                }
            }
        }
        if (rc != 0) {
            keel_cstats_add(uc->cstats, KEEL_CSTAT_UPSTREAM_CX_CONNECT_FAIL, 1);
            uc->st = NULL;
            active_dec(uc);
            upconn_close(uc);
            if (st)
                keel_stream_upstream_failed(st, rc, true, false);
            return;
        }
        uc->connected = true;
        keel_timer_stop(&uc->timer);
        struct keel_addr local;
        if (keel_sock_local_addr(uc->fd, &local) == 0)
            keel_addr_format(&local, uc->local, sizeof(uc->local));
        keel_io_modify(&uc->io, KEEL_IO_READ);
        if (st)
            keel_stream_upstream_ready(st);
        return;
    }
    if (!uc->st && uc->tls && !uc->h2 && (ev & KEEL_IO_READ)) {
        /* pooled TLS: records without data (TLS 1.3 session tickets) are fine; data or EOF ends it */
        char b[1];
        if (keel_tls_read(uc->tls, b, 1) == KEEL_EAGAIN)
            return;
        upconn_close(uc);
        return;
    }
    if (!uc->st) {
        /* pooled: HTTP/2 control frames (SETTINGS, PING, GOAWAY) are answered; any other byte or EOF means the
         * server is done with us */
        if (uc->h2 && (ev & KEEL_IO_READ) && read_some(uc) > 0 && keel_uph2_consume(uc) == 0 &&
            keel_uph2_reusable(uc) && keel_upstream_flush(uc) == 0)
            return;
        upconn_close(uc);
        return;
    }
    if (ev & KEEL_IO_WRITE) {
        int rc = keel_upstream_flush(uc);
        if (rc < 0) {
            keel_upstream_fail(uc, rc);
            return;
        }
        if (uc->out.len < KEEL_PROXY_OUT_HIGH && uc->st)
            keel_stream_upstream_writable(uc->st);
        if (uc->closed || !uc->st)
            return;
    }
    if (ev & (KEEL_IO_READ | KEEL_IO_ERROR)) {
        int rc = read_some(uc);
        if (rc > 0 && uc->h2) {
            struct keel_stream *st = uc->st;
            rc = keel_uph2_consume(uc); /* the response reaches st through the session's callbacks */
            if (rc < 0) {
                if (!uc->closed)
                    keel_upstream_fail(uc, rc);
                return;
            }
            if (uc->closed)
                return;
            if (keel_upstream_flush(uc) < 0) {
                keel_upstream_fail(uc, KEEL_ECLOSED);
                return;
            }
            if (uc->st == st && st)
                st->ds->ops->flush(st); /* what the callbacks gave the client goes out now */
        } else if (rc > 0) {
            keel_stream_upstream_readable(uc->st);
        } else if (rc < 0 && rc != KEEL_EAGAIN) {
            keel_upstream_fail(uc, rc);
        }
    }
}

void keel_upstream_fail(struct keel_upconn *uc, int err)
{
    struct keel_stream *st = uc->st;
    bool reused = uc->reused;
    uc->st = NULL;
    active_dec(uc);
    upconn_close(uc);
    if (st)
        keel_stream_upstream_failed(st, err, false, reused);
}

size_t keel_upstream_pending(const struct keel_upconn *uc)
{
    return uc->out.len + (uc->h2 ? keel_uph2_pending(uc) : 0);
}

int keel_upstream_attach(struct keel_pworker *pw, struct keel_stream *st, const struct keel_cluster *c,
                         const struct keel_endpoint *ep, int64_t connect_timeout_ns, bool h2, struct keel_upconn **out)
{
    const char *key = ep->hostport;
    struct keel_upool *p = pool_get(pw, key, true);
    struct keel_cluster_stats *cs = keel_stats_cluster(pw->stats, c->name);
    const char *sni = NULL;
    struct keel_tls_ctx *tctx = keel_upstream_tls_ctx(pw, c, h2, &sni);
    if (!tctx && (c->tls.mode == KEEL_CLUSTER_TLS_SIMPLE || c->tls.mode == KEEL_CLUSTER_TLS_MUTUAL)) {
        keel_cstats_add(cs, KEEL_CSTAT_UPSTREAM_CX_CONNECT_FAIL, 1);
        return KEEL_EINVAL; /* the context could not be built (logged): never fall back to plain text */
    }
    int k = pool_kind(h2, tctx != NULL);
    struct keel_upconn **pp = p ? &p->idle[k] : NULL;
    while (pp && *pp && (*pp)->tls_ctx != tctx)
        pp = &(*pp)->next_idle;
    if (pp && *pp) {
        struct keel_upconn *uc = *pp;
        *pp = uc->next_idle;
        p->n_idle[k]--;
        uc->next_idle = NULL;
        uc->st = st;
        uc->reused = true;
        uc->cstats = cs;
        keel_timer_stop(&uc->timer);
        keel_buf_reset(&uc->in);
        keel_buf_reset(&uc->out);
        p->active++;
        *out = uc;
        return 0;
    }
    struct keel_addr addr;
    int rc = keel_addr_parse(key, &addr);
    if (rc)
        return rc; /* a host name: resolution is not in this build yet */
    int fd;
    rc = keel_sock_connect(&addr, &fd);
    if (rc != 0 && rc != KEEL_EAGAIN) {
        keel_cstats_add(cs, KEEL_CSTAT_UPSTREAM_CX_CONNECT_FAIL, 1);
        return rc;
    }
    struct keel_upconn *uc = calloc(1, sizeof(*uc));
    if (!uc) {
        close(fd);
        return KEEL_ENOMEM;
    }
    uc->pw = pw;
    uc->fd = fd;
    uc->st = st;
    uc->cstats = cs;
    uc->tls_ctx = tctx;
    uc->sni = sni;
    snprintf(uc->key, sizeof(uc->key), "%s", key);
    keel_buf_init(&uc->in, KEEL_PROXY_IN_MAX);
    keel_buf_init(&uc->out, KEEL_PROXY_OUT_MAX);
    if (h2 && keel_uph2_new(uc) != 0) {
        close(fd);
        keel_buf_free(&uc->in);
        keel_buf_free(&uc->out);
        free(uc);
        return KEEL_ENOMEM;
    }
    keel_sock_set_nodelay(fd, true);
    keel_io_init(&uc->io, fd, on_io, uc);
    keel_timer_init(&uc->timer);
    uc->timer.data = uc;
    if (keel_io_start(pw->loop, &uc->io, KEEL_IO_WRITE | KEEL_IO_READ) != 0) {
        close(fd);
        keel_uph2_free(uc);
        keel_buf_free(&uc->in);
        keel_buf_free(&uc->out);
        free(uc);
        return KEEL_ENOMEM;
    }
    uint64_t ms = connect_timeout_ns > 0 ? (uint64_t)(connect_timeout_ns / 1000000) : 10000;
    keel_timer_start(pw->loop, &uc->timer, ms ? ms : 1, on_timer, uc);
    keel_cstats_add(cs, KEEL_CSTAT_UPSTREAM_CX_TOTAL, 1);
    keel_cstats_add(cs, KEEL_CSTAT_UPSTREAM_CX_ACTIVE, 1);
    if (p)
        p->active++;
    *out = uc;
    return 0;
}

int keel_upstream_flush(struct keel_upconn *uc)
{
    if (uc->h2 && uc->connected) {
        int rc = keel_uph2_produce(uc);
        if (rc < 0)
            return rc;
    }
    while (uc->out.len > 0) {
        ssize_t n = uc->tls ? keel_tls_write(uc->tls, uc->out.data, uc->out.len)
                            : keel_sock_write(uc->fd, uc->out.data, uc->out.len);
        if (n == KEEL_EAGAIN)
            break;
        if (n < 0)
            return (int)n;
        keel_cstats_add(uc->cstats, KEEL_CSTAT_UPSTREAM_CX_TX_BYTES, n);
        keel_buf_consume(&uc->out, (size_t)n);
    }
    uint32_t want = (uc->io.events & KEEL_IO_READ) | (uc->out.len ? KEEL_IO_WRITE : 0);
    if (!want)
        want = KEEL_IO_READ;
    if (want != uc->io.events)
        keel_io_modify(&uc->io, want);
    return 0;
}

void keel_upstream_pause(struct keel_upconn *uc, bool pause)
{
    if (uc->closed)
        return;
    uint32_t want = pause ? (uc->io.events & ~KEEL_IO_READ) : (uc->io.events | KEEL_IO_READ);
    if (!want)
        want = KEEL_IO_READ; /* never fully stop: errors must still arrive */
    if (want != uc->io.events)
        keel_io_modify(&uc->io, want);
}

void keel_upstream_release(struct keel_upconn *uc, bool keep_alive)
{
    struct keel_upool *p = pool_get(uc->pw, uc->key, false);
    active_dec(uc);
    uc->st = NULL;
    uc->reused = false;
    bool clean = uc->h2 ? keel_uph2_reusable(uc) : (uc->in.len == 0 && uc->out.len == 0);
    if (!keep_alive || uc->closed || !uc->connected || !clean || !p || uc->pw->draining) {
        upconn_close(uc);
        return;
    }
    int k = pool_kind(uc->h2 != NULL, uc->tls_ctx != NULL);
    uc->next_idle = p->idle[k];
    p->idle[k] = uc;
    p->n_idle[k]++;
    keel_io_modify(&uc->io, KEEL_IO_READ);
    keel_timer_start(uc->pw->loop, &uc->timer, KEEL_PROXY_UP_IDLE_MS, on_timer, uc);
}

void keel_upstream_count_active(struct keel_pworker *pw, const struct keel_endpoint *ep, int delta)
{
    struct keel_upool *p = pool_get(pw, ep->hostport, delta > 0);
    if (!p)
        return;
    if (delta > 0)
        p->active += (size_t)delta;
    else if (p->active >= (size_t)-delta)
        p->active -= (size_t)-delta;
    else
        p->active = 0;
}

void keel_upstream_pools_close(struct keel_pworker *pw)
{
    size_t it = 0;
    const struct keel_map_slot *s;
    while ((s = keel_map_next(&pw->pools, &it)) != NULL) {
        struct keel_upool *p = s->val;
        for (int k = 0; k < 4; k++)
            while (p->idle[k])
                upconn_close(p->idle[k]); /* unlinks itself */
    }
}

void keel_upstream_state_free(struct keel_pworker *pw)
{
    keel_upstream_pools_close(pw);
    keel_upstream_tls_free(pw);
    size_t it = 0;
    const struct keel_map_slot *s;
    while ((s = keel_map_next(&pw->pools, &it)) != NULL)
        free(s->val);
    keel_map_free(&pw->pools);
    it = 0;
    while ((s = keel_map_next(&pw->rr, &it)) != NULL)
        free((void *)s->key);
    keel_map_free(&pw->rr);
}
