/*
 * upstream.c - connections to upstream endpoints, per-worker pools and the
 * circuit breakers (see proxy_int.h).
 *
 * Each worker keeps, per endpoint ("ip:port"), a LIFO of idle keep-alive
 * HTTP/1.1 connections; a pooled connection keeps read interest so that a
 * server closing it is noticed and the connection dropped before anyone
 * reuses it. HTTP/2 connections carry many streams at once (Envoy's HTTP/2
 * pool): the pool's HTTP/2 lists hold the connections that may take another
 * stream (busy or idle, connected or still connecting); an attempt gets a
 * handle (a keel_upconn without a socket) bound to one of them with room
 * (streams below the peer's SETTINGS_MAX_CONCURRENT_STREAMS and the
 * DestinationRule's maxConcurrentStreams), else a new connection is opened.
 * A connection leaves the list when it takes no new stream (GOAWAY, error,
 * maxRequestsPerConnection streams carried, maxConnectionDuration, drain)
 * and closes with its last stream; one without streams closes after
 * idleTimeout from its last stream's end. See upstream_h2.c for the streams.
 * Pools are the worker's own; the counts the DestinationRule limits apply to
 * are the cluster's, shared by every worker (outlier.c).
 *
 * Endpoint choice (the load balancers) is upstream_pick.c's.
 *
 * Circuit breakers (connectionPool), as Envoy applies them per cluster and
 * proxy: http2MaxRequests caps requests in flight, maxConnections the open
 * connections (a worker with none to that endpoint still opens one, so no
 * request waits on another worker's connections), http1MaxPendingRequests
 * the requests waiting for a connection (including those whose connection
 * is being opened), maxRetries the retries in flight. Over a limit the
 * request is refused at once: KEEL_EOVERFLOW, which the exchange answers
 * with 503 UO. A request over maxConnections but within the pending limit
 * waits in its pool (a placeholder connection without a socket) until a
 * connection of that pool is released or closed (for HTTP/2: until a
 * connection has room). maxRequestsPerConnection, maxConnectionDuration and
 * idleTimeout end pooled connections. maxConnections counts connections (an
 * HTTP/2 connection once, whatever its streams), http2MaxRequests requests;
 * the per-attempt counts (rq, pending, retries) and outlier reports are the
 * handle's, as for an HTTP/1.1 attempt.
 */
#include "proxy/stream.h"

#include "base/err.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The worker's pool for endpoint hostport of cluster c, keyed "<cluster>|<host:port>": as Envoy's, a pool belongs
 * to one cluster's host (two clusters naming one address keep their connections, limits and least-request counts
 * apart). Pools live until the worker ends. NULL when absent (create false) or out of memory. */
static struct keel_upool *pool_get(struct keel_pworker *pw, const struct keel_cluster *c, const char *hostport,
                                   bool create)
{
    const char *cname = c && c->name ? c->name : "";
    size_t cn = strlen(cname), hn = strlen(hostport), kn = cn + 1 + hn;
    char stack[512], *key = kn < sizeof(stack) ? stack : malloc(kn + 1);
    if (!key)
        return NULL;
    memcpy(key, cname, cn);
    key[cn] = '|';
    memcpy(key + cn + 1, hostport, hn + 1);
    struct keel_upool *p = keel_map_get(&pw->pools, key, kn);
    if (!p && create) {
        p = calloc(1, sizeof(*p) + kn + 1);
        if (p) {
            memcpy(p->key, key, kn + 1);
            if (keel_map_put(&pw->pools, p->key, kn, p, NULL) != 0) {
                free(p);
                p = NULL;
            }
        }
    }
    if (key != stack)
        free(key);
    return p;
}

size_t keel_upstream_endpoint_active(struct keel_pworker *pw, const struct keel_cluster *c,
                                     const struct keel_endpoint *ep)
{
    struct keel_upool *p = pool_get(pw, c, ep->hostport, false);
    return p ? p->active : 0;
}

static void free_later(struct keel_loop *loop, struct keel_defer *d)
{
    (void)loop;
    struct keel_upconn *uc = d->data;
    keel_uph2_free(uc); /* here, not in upconn_close: a close may happen inside the session's callbacks */
    keel_buf_free(&uc->in);
    keel_buf_free(&uc->out);
    free(uc->sni_own);
    keel_cluster_state_unref(uc->cs);
    keel_cluster_state_unref(uc->conn_cs);
    keel_host_state_unref(uc->hs);
    free(uc);
}

static int pool_kind(bool h2, bool tls)
{
    return (h2 ? 1 : 0) + (tls ? 2 : 0);
}

static void pool_remove(struct keel_upconn *uc)
{
    struct keel_upool *p = uc->pool;
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

static void wait_remove(struct keel_upool *p, struct keel_upconn *uc)
{
    struct keel_upconn *prev = NULL;
    for (struct keel_upconn *w = p->wait_head; w; prev = w, w = w->next_wait) {
        if (w != uc)
            continue;
        if (prev)
            prev->next_wait = w->next_wait;
        else
            p->wait_head = w->next_wait;
        if (p->wait_tail == w)
            p->wait_tail = prev;
        break;
    }
    uc->next_wait = NULL;
}

static void active_dec(struct keel_upconn *uc)
{
    struct keel_upool *p = uc->pool;
    if (p && p->active)
        p->active--;
}

/* ---- circuit-breaker accounting: per attempt (the request on uc) and per connection ---- */

static void pending_end(struct keel_upconn *uc)
{
    if (!uc->pending)
        return;
    uc->pending = false;
    atomic_fetch_sub(&uc->cs->pending, 1);
    keel_cstats_add(uc->cstats, KEEL_CSTAT_UPSTREAM_RQ_PENDING_ACTIVE, -1);
}

/* The request on uc is over (released, failed, handed to another connection). */
static void attempt_end(struct keel_upconn *uc)
{
    pending_end(uc);
    if (uc->counted_rq)
        atomic_fetch_sub(&uc->cs->rq, 1);
    if (uc->counted_retry)
        atomic_fetch_sub(&uc->cs->retries, 1);
    uc->counted_rq = uc->counted_retry = false;
}

static void pool_service(struct keel_loop *loop, struct keel_defer *d);
static void h2_unbind(struct keel_upconn *h);
static void handle_fail(struct keel_upconn *h, int err, bool connect_phase, bool reused);
static void h2_conn_fail(struct keel_upconn *c, int err);
static void h2_conn_ready(struct keel_upconn *c);
static void h2_conn_io(struct keel_upconn *c, uint32_t ev);

/* Serves the pool's waiting requests from the next loop iteration (never inside the caller's stack). */
static void pool_kick(struct keel_pworker *pw, struct keel_upool *p)
{
    if (p && p->wait_head && !p->service_queued) {
        p->service_queued = true;
        keel_loop_defer(pw->loop, &p->service, pool_service, p);
    }
}

static void upconn_close(struct keel_upconn *uc)
{
    if (uc->closed)
        return;
    uc->closed = true;
    struct keel_upool *p = uc->pool;
    if (uc->waiting) {
        if (p)
            wait_remove(p, uc);
    } else {
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
        if (uc->conn_cs)
            atomic_fetch_sub(&uc->conn_cs->cx, 1);
        if (p && p->conns)
            p->conns--;
        pool_kick(uc->pw, p); /* a connection slot is free: a waiting request may open one */
    }
    keel_loop_defer(uc->pw->loop, &uc->free_d, free_later, uc);
}

static void report_local(struct keel_upconn *uc, struct keel_stream *st, enum keel_outcome o)
{
    if (st && uc->hs)
        keel_outlier_report_local(uc->pw, st->cluster, uc->cs, uc->hs, o);
}

static void on_timer(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct keel_upconn *uc = t->data;
    if (uc->h2) {
        if (!uc->connected) {
            keel_cstats_add(uc->cstats, KEEL_CSTAT_UPSTREAM_CX_CONNECT_TIMEOUT, 1);
            keel_cstats_add(uc->cstats, KEEL_CSTAT_UPSTREAM_CX_CONNECT_FAIL, 1);
            h2_conn_fail(uc, KEEL_ETIMEDOUT);
        } else if (uc->nstreams == 0) {
            bool aged = uc->max_age_ms && keel_loop_now_ms(uc->pw->loop) - uc->created_ms >= uc->max_age_ms;
            keel_cstats_add(uc->cstats,
                            aged ? KEEL_CSTAT_UPSTREAM_CX_MAX_DURATION_REACHED : KEEL_CSTAT_UPSTREAM_CX_IDLE_TIMEOUT,
                            1);
            upconn_close(uc);
        }
        return;
    }
    if (uc->st && !uc->connected) {
        keel_cstats_add(uc->cstats, KEEL_CSTAT_UPSTREAM_CX_CONNECT_TIMEOUT, 1);
        keel_cstats_add(uc->cstats, KEEL_CSTAT_UPSTREAM_CX_CONNECT_FAIL, 1);
        struct keel_stream *st = uc->st;
        report_local(uc, st, KEEL_OUTCOME_CONNECT_FAILED);
        attempt_end(uc);
        uc->st = NULL;
        active_dec(uc);
        upconn_close(uc);
        keel_stream_upstream_failed(st, KEEL_ETIMEDOUT, true, false);
    } else if (!uc->st) {
        /* pooled and idle too long, or too old (maxConnectionDuration) */
        bool aged = uc->max_age_ms && keel_loop_now_ms(uc->pw->loop) - uc->created_ms >= uc->max_age_ms;
        keel_cstats_add(uc->cstats,
                        aged ? KEEL_CSTAT_UPSTREAM_CX_MAX_DURATION_REACHED : KEEL_CSTAT_UPSTREAM_CX_IDLE_TIMEOUT, 1);
        upconn_close(uc);
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
            if (uc->h2) {
                h2_conn_fail(uc, rc);
                return;
            }
            report_local(uc, st, KEEL_OUTCOME_CONNECT_FAILED);
            attempt_end(uc);
            uc->st = NULL;
            active_dec(uc);
            upconn_close(uc);
            if (st)
                keel_stream_upstream_failed(st, rc, true, false);
            return;
        }
        uc->connected = true;
        pending_end(uc); /* its request has a connection now */
        report_local(uc, st, KEEL_OUTCOME_CONNECT_OK);
        keel_timer_stop(&uc->timer);
        struct keel_addr local;
        if (keel_sock_local_addr(uc->fd, &local) == 0)
            keel_addr_format(&local, uc->local, sizeof(uc->local));
        keel_io_modify(&uc->io, KEEL_IO_READ);
        if (uc->h2)
            h2_conn_ready(uc);
        else if (st)
            keel_stream_upstream_ready(st);
        return;
    }
    if (uc->h2) {
        h2_conn_io(uc, ev);
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
        upconn_close(uc); /* pooled HTTP/1.1: any byte or EOF means the server is done with us */
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
        if (rc > 0) {
            keel_stream_upstream_readable(uc->st);
        } else if (rc < 0 && rc != KEEL_EAGAIN) {
            keel_upstream_fail(uc, rc);
        }
    }
}

void keel_upstream_fail(struct keel_upconn *uc, int err)
{
    if (uc->handle) {
        struct keel_upconn *c = uc->conn;
        bool dead = c && c->write_failed; /* the connection's socket failed: every stream on it fails */
        h2_unbind(uc);
        handle_fail(uc, err, false, dead && uc->reused);
        if (dead && !c->closed)
            h2_conn_fail(c, KEEL_ECLOSED);
        return;
    }
    struct keel_stream *st = uc->st;
    bool reused = uc->reused;
    /* a reset before the response is a local-origin failure for outlier detection; a pooled connection the
     * server had closed is not the endpoint's fault (the exchange retries it on a fresh one) */
    if (st && !reused && !st->resp_started)
        report_local(uc, st, KEEL_OUTCOME_CONNECT_FAILED);
    attempt_end(uc);
    uc->st = NULL;
    active_dec(uc);
    upconn_close(uc);
    if (st)
        keel_stream_upstream_failed(st, err, false, reused);
}

size_t keel_upstream_pending(const struct keel_upconn *uc)
{
    if (uc->handle)
        return (uc->conn ? uc->conn->out.len : 0) + keel_uph2_pending(uc);
    return uc->out.len;
}

static struct keel_upconn *upconn_new(struct keel_pworker *pw, struct keel_upool *pool, struct keel_stream *st,
                                      const char *key)
{
    struct keel_upconn *uc = calloc(1, sizeof(*uc));
    if (!uc)
        return NULL;
    uc->pw = pw;
    uc->pool = pool;
    uc->fd = -1;
    uc->st = st;
    snprintf(uc->key, sizeof(uc->key), "%s", key);
    keel_buf_init(&uc->in, KEEL_PROXY_IN_MAX);
    keel_buf_init(&uc->out, KEEL_PROXY_OUT_MAX);
    keel_io_init(&uc->io, -1, on_io, uc);
    keel_timer_init(&uc->timer);
    uc->timer.data = uc;
    return uc;
}

/* Opens uc's socket (uc->key, TLS context, connect timeout already set) and counts the connection. Returns 0 or a
 * code, with nothing opened. */
static int upconn_open(struct keel_upconn *uc, struct keel_upool *p, bool h2, const struct keel_cluster *c)
{
    struct keel_pworker *pw = uc->pw;
    struct keel_addr addr;
    int rc = keel_addr_parse(uc->key, &addr);
    if (rc)
        return rc; /* a host name: resolution is not in this build yet */
    int fd;
    rc = keel_sock_connect(&addr, &fd);
    if (rc != 0 && rc != KEEL_EAGAIN) {
        keel_cstats_add(uc->cstats, KEEL_CSTAT_UPSTREAM_CX_CONNECT_FAIL, 1);
        return rc;
    }
    uc->fd = fd;
    if (h2 && keel_uph2_new(uc) != 0) {
        close(fd);
        uc->fd = -1;
        return KEEL_ENOMEM;
    }
    keel_sock_set_nodelay(fd, true);
    if (c && c->limits.tcp_keepalive) { /* DestinationRule connectionPool.tcp.tcpKeepalive, as tcp.c does */
        keel_sock_set_keepalive(fd, (int)(c->limits.keepalive_time / 1000000000LL),
                                (int)(c->limits.keepalive_interval / 1000000000LL), (int)c->limits.keepalive_probes);
        uc->keepalive_set = true;
    }
    keel_io_init(&uc->io, fd, on_io, uc);
    if (keel_io_start(pw->loop, &uc->io, KEEL_IO_WRITE | KEEL_IO_READ) != 0) {
        close(fd);
        uc->fd = -1;
        keel_uph2_free(uc);
        return KEEL_ENOMEM;
    }
    uint64_t ms = uc->connect_ms;
    keel_timer_start(pw->loop, &uc->timer, ms ? ms : 1, on_timer, uc);
    uc->waiting = false;
    uc->created_ms = keel_loop_now_ms(pw->loop);
    keel_cstats_add(uc->cstats, KEEL_CSTAT_UPSTREAM_CX_TOTAL, 1);
    keel_cstats_add(uc->cstats, KEEL_CSTAT_UPSTREAM_CX_ACTIVE, 1);
    if (uc->cs) {
        uc->conn_cs = keel_cluster_state_ref(uc->cs);
        atomic_fetch_add(&uc->conn_cs->cx, 1);
    }
    if (p)
        p->conns++;
    return 0;
}

/* Per-connection limits of cluster c, set on uc for its next release. */
static void set_conn_limits(struct keel_upconn *uc, const struct keel_cluster *c)
{
    const struct keel_cluster_limits *l = &c->limits;
    uc->idle_ms = l->http_idle_timeout > 0 ? (uint64_t)(l->http_idle_timeout / 1000000) : KEEL_PROXY_UP_IDLE_MS;
    if (!uc->idle_ms)
        uc->idle_ms = 1;
    uc->max_age_ms = l->max_connection_duration > 0 ? (uint64_t)(l->max_connection_duration / 1000000) : 0;
    if (l->max_connection_duration > 0 && !uc->max_age_ms)
        uc->max_age_ms = 1;
    uc->max_requests = l->max_requests_per_connection;
    uc->max_streams = l->max_concurrent_streams;
    if (uc->fd >= 0 && l->tcp_keepalive && !uc->keepalive_set) {
        /* a pooled connection opened before the DestinationRule asked for keepalive: from now on */
        keel_sock_set_keepalive(uc->fd, (int)(l->keepalive_time / 1000000000LL),
                                (int)(l->keepalive_interval / 1000000000LL), (int)l->keepalive_probes);
        uc->keepalive_set = true;
    }
}

/* The states the attempt on uc counts in (a pooled connection outlives config generations, whose states may be
 * other objects). */
static void set_attempt_states(struct keel_upconn *uc, struct keel_cluster_state *cs, struct keel_host_state *hs)
{
    if (uc->cs != cs) {
        keel_cluster_state_unref(uc->cs);
        uc->cs = keel_cluster_state_ref(cs);
    }
    if (uc->hs != hs) {
        keel_host_state_unref(uc->hs);
        uc->hs = keel_host_state_ref(hs);
    }
}

static bool over(_Atomic uint32_t *count, uint32_t max)
{
    if (max == KEEL_CLUSTERS_UNLIMITED) {
        atomic_fetch_add(count, 1);
        return false;
    }
    if (atomic_fetch_add(count, 1) >= max) {
        atomic_fetch_sub(count, 1);
        return true;
    }
    return false;
}

/* ---- HTTP/2: connections carrying the streams of many attempts ------------------------------------------------ */

static bool h2_has_room(struct keel_upconn *c)
{
    if (c->closed || c->no_new || !keel_uph2_reusable(c))
        return false;
    if (c->max_requests && c->requests >= c->max_requests)
        return false;
    if (c->max_age_ms && keel_loop_now_ms(c->pw->loop) - c->created_ms >= c->max_age_ms)
        return false;
    uint32_t lim = keel_uph2_peer_streams(c);
    if (c->max_streams && c->max_streams < lim)
        lim = c->max_streams;
    return c->nstreams < lim;
}

/* A connection of pool list k (same client TLS context) that takes one more stream, or NULL. */
static struct keel_upconn *h2_find(struct keel_upool *p, int k, const struct keel_tls_ctx *tctx)
{
    for (struct keel_upconn *c = p->idle[k]; c; c = c->next_idle)
        if (c->tls_ctx == tctx && h2_has_room(c))
            return c;
    return NULL;
}

static void h2_no_new(struct keel_upconn *c)
{
    c->no_new = true;
    pool_remove(c);
}

/* After a stream ended or the session changed: a connection that takes no new stream closes with its last stream;
 * one without streams waits idle (http.idleTimeout from the last stream's end); waiting requests hear of room. */
static void h2_settle(struct keel_upconn *c)
{
    if (c->closed)
        return;
    uint64_t age = keel_loop_now_ms(c->pw->loop) - c->created_ms;
    bool aged = c->max_age_ms && age >= c->max_age_ms;
    if (!c->no_new && (!keel_uph2_reusable(c) || c->pw->draining || aged)) {
        if (aged)
            keel_cstats_add(c->cstats, KEEL_CSTAT_UPSTREAM_CX_MAX_DURATION_REACHED, 1);
        h2_no_new(c);
    }
    if (c->connected && c->nstreams == 0) {
        if (c->no_new) {
            upconn_close(c);
            return;
        }
        uint64_t ms = c->idle_ms ? c->idle_ms : KEEL_PROXY_UP_IDLE_MS;
        if (c->max_age_ms && c->max_age_ms - age < ms)
            ms = c->max_age_ms - age;
        keel_timer_stop(&c->timer);
        keel_timer_start(c->pw->loop, &c->timer, ms ? ms : 1, on_timer, c);
    }
    pool_kick(c->pw, c->pool);
}

/* Puts handle h on connection c (the attempt's limits become the connection's). */
static void h2_bind(struct keel_upconn *h, struct keel_upconn *c)
{
    h->conn = c;
    h->waiting = false;
    h->prev_stream = NULL;
    h->next_stream = c->streams;
    if (c->streams)
        c->streams->prev_stream = h;
    c->streams = h;
    if (c->nstreams++ == 0 && c->connected)
        keel_timer_stop(&c->timer); /* the idle timer */
    c->requests++;
    c->idle_ms = h->idle_ms;
    c->max_age_ms = h->max_age_ms;
    c->max_requests = h->max_requests;
    c->max_streams = h->max_streams;
    c->cstats = h->cstats;
    h->requests = c->requests;
    h->reused = c->connected;
    h->connected = c->connected;
    if (c->connected)
        memcpy(h->local, c->local, sizeof(h->local));
    if (c->max_requests && c->requests >= c->max_requests) {
        keel_cstats_add(c->cstats, KEEL_CSTAT_UPSTREAM_CX_MAX_REQUESTS, 1); /* maxRequestsPerConnection */
        h2_no_new(c);
    }
}

/* Takes handle h off its connection: its stream is reset unless it ended; then the connection goes on, idles or
 * closes. */
static void h2_unbind(struct keel_upconn *h)
{
    struct keel_upconn *c = h->conn;
    if (!c)
        return;
    keel_uph2_detach(h);
    if (h->prev_stream)
        h->prev_stream->next_stream = h->next_stream;
    else
        c->streams = h->next_stream;
    if (h->next_stream)
        h->next_stream->prev_stream = h->prev_stream;
    /* h->next_stream stays: a walk of the list that is at h goes on from it */
    h->conn = NULL;
    c->nstreams--;
    if (!c->closed && c->connected && !keel_uph2_in_recv(c) && keel_upstream_flush(c) < 0)
        c->write_failed = true; /* the RST_STREAM goes out now; the read side sees the failure */
    h2_settle(c);
}

/* The attempt on handle h (already off its connection) failed: tell its stream, which may retry. */
static void handle_fail(struct keel_upconn *h, int err, bool connect_phase, bool reused)
{
    struct keel_stream *st = h->st;
    if (st && (connect_phase || (!h->reused && !st->resp_started)))
        report_local(h, st, KEEL_OUTCOME_CONNECT_FAILED);
    attempt_end(h);
    h->st = NULL;
    active_dec(h);
    h->closed = true;
    keel_loop_defer(h->pw->loop, &h->free_d, free_later, h);
    if (st)
        keel_stream_upstream_failed(st, err, connect_phase, reused);
}

/* Connection c failed (connect, I/O, protocol error): closed, and every stream on it fails. */
static void h2_conn_fail(struct keel_upconn *c, int err)
{
    bool connect_phase = !c->connected;
    upconn_close(c);
    while (c->streams) {
        struct keel_upconn *h = c->streams;
        keel_uph2_detach(h);
        c->streams = h->next_stream;
        if (c->streams)
            c->streams->prev_stream = NULL;
        h->conn = NULL;
        c->nstreams--;
        /* a stream sent on a connection the server had already closed: one free retry, as for HTTP/1.1 */
        handle_fail(h, err, connect_phase, h->reused && h->st && !h->st->resp_started);
    }
}

/* Connection c is up: the streams waiting for it send their requests. */
static void h2_conn_ready(struct keel_upconn *c)
{
    for (;;) {
        struct keel_upconn *h = c->streams;
        while (h && h->connected)
            h = h->next_stream;
        if (!h || c->closed)
            break;
        h->connected = true;
        memcpy(h->local, c->local, sizeof(h->local));
        pending_end(h);
        report_local(h, h->st, KEEL_OUTCOME_CONNECT_OK);
        if (h->st)
            keel_stream_upstream_ready(h->st);
    }
    h2_settle(c);
}

static void h2_conn_io(struct keel_upconn *c, uint32_t ev)
{
    if (ev & KEEL_IO_WRITE) {
        if (keel_upstream_flush(c) < 0) {
            h2_conn_fail(c, KEEL_ECLOSED);
            return;
        }
        for (struct keel_upconn *h = c->streams, *next; h && c->out.len < KEEL_PROXY_OUT_HIGH; h = next) {
            next = h->next_stream;
            if (h->conn == c && h->st && h->connected)
                keel_stream_upstream_writable(h->st);
            if (c->closed)
                return;
        }
    }
    if (ev & (KEEL_IO_READ | KEEL_IO_ERROR)) {
        int rc = read_some(c);
        if (rc > 0) {
            rc = keel_uph2_consume(c); /* the responses reach their streams through the session's callbacks */
            if (rc < 0) {
                if (!c->closed)
                    h2_conn_fail(c, rc);
                return;
            }
            if (c->closed)
                return;
            if (keel_upstream_flush(c) < 0) {
                h2_conn_fail(c, KEEL_ECLOSED);
                return;
            }
            for (struct keel_upconn *h = c->streams, *next; h; h = next) {
                next = h->next_stream;
                if (h->touched && h->conn == c && h->st) {
                    h->touched = false;
                    h->st->ds->ops->flush(h->st); /* what the callbacks gave the client goes out now */
                }
                if (c->closed)
                    return;
            }
        } else if (rc < 0 && rc != KEEL_EAGAIN) {
            h2_conn_fail(c, rc);
            return;
        }
    }
    if (c->write_failed) {
        h2_conn_fail(c, KEEL_ECLOSED);
        return;
    }
    if (!c->no_new && !keel_uph2_reusable(c))
        h2_settle(c);
    else if (c->pool && c->pool->wait_head)
        pool_kick(c->pw, c->pool); /* SETTINGS may have raised the stream limit */
}

/* Opens a new HTTP/2 connection for handle h (limits, TLS and connect timeout from h) and lists it in its pool. */
static int h2_open(struct keel_upconn *h, struct keel_upool *p, const struct keel_cluster *cl, struct keel_upconn **out)
{
    struct keel_upconn *c = upconn_new(h->pw, p, NULL, h->key);
    if (!c)
        return KEEL_ENOMEM;
    c->cstats = h->cstats;
    c->tls_ctx = h->tls_ctx;
    c->sni = h->sni;
    if (h->sni_own && (c->sni_own = strdup(h->sni_own)) != NULL)
        c->sni = c->sni_own; /* the connection outlives the handle that opened it */
    c->cs = keel_cluster_state_ref(h->cs);
    c->connect_ms = h->connect_ms;
    int rc = upconn_open(c, p, true, cl);
    if (rc != 0) {
        c->closed = true;
        keel_loop_defer(c->pw->loop, &c->free_d, free_later, c);
        return rc;
    }
    int k = pool_kind(true, c->tls_ctx != NULL);
    c->next_idle = p->idle[k];
    p->idle[k] = c;
    p->n_idle[k]++;
    *out = c;
    return 0;
}

/* Pool service for a waiting HTTP/2 attempt: a connection with room, or a new one. false: still at maxConnections. */
static bool h2_service(struct keel_upool *p, struct keel_upconn *w)
{
    struct keel_stream *st = w->st;
    const struct keel_cluster *c = st->cluster;
    struct keel_cluster_state *cs = w->cs;
    struct keel_upconn *conn = h2_find(p, pool_kind(true, w->tls_ctx != NULL), w->tls_ctx);
    if (!conn && cs && c && c->limits.max_connections != KEEL_CLUSTERS_UNLIMITED &&
        atomic_load(&cs->cx) >= c->limits.max_connections && p->conns > 0)
        return false;
    wait_remove(p, w);
    w->waiting = false;
    int rc = conn ? 0 : h2_open(w, p, c, &conn);
    if (rc != 0) {
        if (rc != KEEL_ENOMEM && w->hs)
            keel_outlier_report_local(w->pw, c, cs, w->hs, KEEL_OUTCOME_CONNECT_FAILED);
        handle_fail(w, rc, true, false);
        return true;
    }
    h2_bind(w, conn);
    if (conn->connected) {
        pending_end(w);
        keel_stream_upstream_ready(st);
    }
    return true;
}

void keel_upstream_stream_failed(struct keel_upconn *uc, bool unprocessed)
{
    h2_unbind(uc);
    handle_fail(uc, KEEL_ECLOSED, false, unprocessed && uc->reused);
}

/* Gives back what keel_upstream_attach() counted for an attempt that will not be made: its request
 * (http2MaxRequests), its retry (maxRetries) and, when taken, its pending slot. */
static void uncount(struct keel_cluster_state *cs, bool pending, bool retry)
{
    if (!cs)
        return;
    if (pending)
        atomic_fetch_sub(&cs->pending, 1);
    atomic_fetch_sub(&cs->rq, 1);
    if (retry)
        atomic_fetch_sub(&cs->retries, 1);
}

/* Queues uc in its pool until a connection (or a connection slot) frees up (circuit breaker maxConnections). */
static void wait_append(struct keel_upool *p, struct keel_upconn *uc)
{
    uc->waiting = true;
    if (p->wait_tail)
        p->wait_tail->next_wait = uc;
    else
        p->wait_head = uc;
    p->wait_tail = uc;
}

/* What a new attempt carries, decided by keel_upstream_attach(). */
struct attempt {
    const struct keel_cluster *c;
    struct keel_cluster_stats *cstats;
    struct keel_tls_ctx *tctx;
    const char *sni, *dyn_sni; /* dyn_sni: a DYNAMIC_DNS request's host, copied (it lives in the stream's arena) */
    struct keel_cluster_state *cs;
    struct keel_host_state *hs;
    bool queued;  /* it waits for a connection (HTTP/1.1 always; HTTP/2 unless its connection is up) */
    bool pending; /* ...and holds a pending slot of the cluster (queued, with circuit breakers) */
    bool retry;
    uint64_t connect_ms;
};

/* A new attempt for st (an HTTP/1.1 connection or an HTTP/2 stream handle) with its circuit-breaker counts, which
 * attach has taken; counted as a pending request when queued. NULL when out of memory (the caller gives the counts
 * back). */
static struct keel_upconn *attempt_new(struct keel_pworker *pw, struct keel_upool *p, struct keel_stream *st,
                                       const char *key, const struct attempt *a)
{
    struct keel_upconn *uc = upconn_new(pw, p, st, key);
    if (!uc)
        return NULL;
    uc->cstats = a->cstats;
    uc->tls_ctx = a->tctx;
    uc->sni = a->sni;
    if (a->dyn_sni && (uc->sni_own = strdup(a->dyn_sni)) != NULL)
        uc->sni = uc->sni_own; /* the stream's arena may go before the handshake ends */
    uc->cs = keel_cluster_state_ref(a->cs);
    uc->hs = keel_host_state_ref(a->hs);
    uc->pending = a->pending;
    uc->counted_rq = a->cs != NULL;
    uc->counted_retry = a->retry;
    uc->connect_ms = a->connect_ms;
    set_conn_limits(uc, a->c);
    if (a->queued)
        keel_cstats_add(a->cstats, KEEL_CSTAT_UPSTREAM_RQ_PENDING_TOTAL, 1);
    if (uc->pending)
        keel_cstats_add(a->cstats, KEEL_CSTAT_UPSTREAM_RQ_PENDING_ACTIVE, 1);
    return uc;
}

int keel_upstream_attach(struct keel_pworker *pw, struct keel_stream *st, const struct keel_cluster *c,
                         const struct keel_endpoint *ep, int64_t connect_timeout_ns, bool h2, struct keel_upconn **out)
{
    const char *key = ep->hostport;
    const struct keel_cluster_view *view = keel_cluster_view(pw, c);
    struct keel_cluster_stats *cstats = view->stats;
    const char *sni = NULL;
    struct keel_tls_ctx *tctx = keel_upstream_tls_ctx(pw, c, h2, &sni);
    if (!tctx && (c->tls.mode == KEEL_CLUSTER_TLS_SIMPLE || c->tls.mode == KEEL_CLUSTER_TLS_MUTUAL)) {
        keel_cstats_add(cstats, KEEL_CSTAT_UPSTREAM_CX_CONNECT_FAIL, 1);
        return KEEL_EINVAL; /* the context could not be built (logged): never fall back to plain text */
    }
    /* Envoy's auto_sni and auto_san_validation for the dynamic forward proxy: without a DestinationRule `sni`, a
     * DYNAMIC_DNS request's own host name is sent as the SNI and checked in the certificate, and its
     * connections pool apart per host name (two names on one address never share a TLS session) */
    const char *pool_ep = key, *dyn_sni = NULL;
    if (tctx && c->type == KEEL_CLUSTER_DYNAMIC_DNS && !c->tls.sni && ep->hostname) {
        dyn_sni = ep->hostname;
        pool_ep = keel_arena_printf(st->arena, "%s@%s", ep->hostname, key);
    }
    struct keel_upool *p = pool_get(pw, c, pool_ep, true);
    /* the cluster's shared state (circuit breakers, outlier detection); none for the passthrough cluster */
    const struct keel_upcluster *u = view->u;
    struct keel_cluster_state *cs = u ? u->cs : NULL;
    struct keel_host_state *hs = keel_upcluster_host(u, c, ep);
    const struct keel_cluster_limits *lim = &c->limits;
    if (cs && over(&cs->rq, lim->max_requests)) {
        keel_cstats_add(cstats, KEEL_CSTAT_UPSTREAM_RQ_PENDING_OVERFLOW, 1);
        return KEEL_EOVERFLOW;
    }
    bool retry = cs && st->attempts > 1;
    if (retry)
        atomic_fetch_add(&cs->retries, 1);
    int k = pool_kind(h2, tctx != NULL);
    if (h2 && !p) {
        uncount(cs, false, retry);
        return KEEL_ENOMEM; /* HTTP/2 streams live on their pool's connections */
    }
    struct attempt a = {.c = c,
                        .cstats = cstats,
                        .tctx = tctx,
                        .sni = sni,
                        .dyn_sni = dyn_sni,
                        .cs = cs,
                        .hs = hs,
                        .queued = true,
                        .pending = cs != NULL,
                        .retry = retry,
                        .connect_ms = connect_timeout_ns > 0 ? (uint64_t)(connect_timeout_ns / 1000000) : 10000};
    if (h2) {
        /* a stream on a connection with room, else a new connection (or a wait, at maxConnections) */
        struct keel_upconn *conn = !p->wait_head || !cs ? h2_find(p, k, tctx) : NULL;
        bool wait = !conn && cs && lim->max_connections != KEEL_CLUSTERS_UNLIMITED &&
                    atomic_load(&cs->cx) >= lim->max_connections && p->conns > 0;
        bool pend = !conn || !conn->connected;
        if (wait)
            keel_cstats_add(cstats, KEEL_CSTAT_UPSTREAM_CX_OVERFLOW, 1);
        if (pend && cs && over(&cs->pending, lim->max_pending_requests)) {
            uncount(cs, false, retry);
            keel_cstats_add(cstats, KEEL_CSTAT_UPSTREAM_RQ_PENDING_OVERFLOW, 1);
            return KEEL_EOVERFLOW;
        }
        a.queued = pend; /* a stream on a connection that is up does not wait */
        a.pending = pend && cs;
        struct keel_upconn *h = attempt_new(pw, p, st, key, &a);
        if (!h) {
            uncount(cs, a.pending, retry);
            return KEEL_ENOMEM;
        }
        h->handle = true;
        h->h2_wanted = true;
        p->active++;
        if (wait) {
            wait_append(p, h);
            *out = h;
            return 0;
        }
        int rc = conn ? 0 : h2_open(h, p, c, &conn);
        if (rc != 0) {
            if (rc != KEEL_ENOMEM && hs)
                keel_outlier_report_local(pw, c, cs, hs, KEEL_OUTCOME_CONNECT_FAILED);
            attempt_end(h);
            active_dec(h);
            h->st = NULL;
            h->closed = true;
            keel_loop_defer(pw->loop, &h->free_d, free_later, h);
            return rc;
        }
        h2_bind(h, conn);
        *out = h;
        return 0;
    }
    struct keel_upconn **pp = p ? &p->idle[k] : NULL;
    while (pp && *pp && (*pp)->tls_ctx != tctx)
        pp = &(*pp)->next_idle;
    if (pp && *pp && (!p->wait_head || !cs)) {
        struct keel_upconn *uc = *pp;
        *pp = uc->next_idle;
        p->n_idle[k]--;
        uc->next_idle = NULL;
        uc->st = st;
        uc->reused = true;
        uc->cstats = cstats;
        set_attempt_states(uc, cs, hs);
        uc->counted_rq = cs != NULL;
        uc->counted_retry = retry;
        uc->requests++;
        set_conn_limits(uc, c);
        keel_timer_stop(&uc->timer);
        keel_buf_reset(&uc->in);
        keel_buf_reset(&uc->out);
        p->active++;
        *out = uc;
        return 0;
    }
    /* no idle connection: the request waits for one (a new one, or a busy one when at maxConnections) */
    bool wait = cs && p && lim->max_connections != KEEL_CLUSTERS_UNLIMITED &&
                atomic_load(&cs->cx) >= lim->max_connections && p->conns > 0;
    if (wait)
        keel_cstats_add(cstats, KEEL_CSTAT_UPSTREAM_CX_OVERFLOW, 1);
    if (cs && over(&cs->pending, lim->max_pending_requests)) {
        uncount(cs, false, retry);
        keel_cstats_add(cstats, KEEL_CSTAT_UPSTREAM_RQ_PENDING_OVERFLOW, 1);
        return KEEL_EOVERFLOW;
    }
    struct keel_upconn *uc = attempt_new(pw, p, st, key, &a);
    if (!uc) {
        uncount(cs, a.pending, retry);
        return KEEL_ENOMEM;
    }
    uc->h2_wanted = h2;
    uc->requests = 1;
    if (wait) {
        wait_append(p, uc);
        p->active++;
        *out = uc;
        return 0;
    }
    int rc = upconn_open(uc, p, h2, c);
    if (rc != 0) {
        if (rc != KEEL_ENOMEM && hs)
            keel_outlier_report_local(pw, c, cs, hs, KEEL_OUTCOME_CONNECT_FAILED);
        attempt_end(uc);
        uc->closed = true;
        keel_loop_defer(pw->loop, &uc->free_d, free_later, uc);
        return rc;
    }
    if (p)
        p->active++;
    *out = uc;
    return 0;
}

/* Hands freed connections (or free connection slots) of pool p to its waiting requests, oldest first. */
static void pool_service(struct keel_loop *loop, struct keel_defer *d)
{
    (void)loop;
    struct keel_upool *p = d->data;
    p->service_queued = false;
    while (p->wait_head) {
        struct keel_upconn *w = p->wait_head;
        if (w->handle) {
            if (!h2_service(p, w))
                break;
            continue;
        }
        struct keel_stream *st = w->st;
        struct keel_pworker *pw = w->pw;
        int k = pool_kind(w->h2_wanted, w->tls_ctx != NULL);
        struct keel_upconn **pp = &p->idle[k];
        while (*pp && (*pp)->tls_ctx != w->tls_ctx)
            pp = &(*pp)->next_idle;
        if (*pp) {
            /* an idle connection: the waiting request moves onto it */
            struct keel_upconn *uc = *pp;
            *pp = uc->next_idle;
            p->n_idle[k]--;
            uc->next_idle = NULL;
            wait_remove(p, w);
            pending_end(w);
            uc->st = st;
            uc->reused = true;
            uc->cstats = w->cstats;
            uc->counted_rq = w->counted_rq;
            uc->counted_retry = w->counted_retry;
            w->counted_rq = w->counted_retry = false;
            uc->requests++;
            uc->idle_ms = w->idle_ms;
            uc->max_age_ms = w->max_age_ms;
            uc->max_requests = w->max_requests;
            set_attempt_states(uc, w->cs, w->hs);
            keel_timer_stop(&uc->timer);
            keel_buf_reset(&uc->in);
            keel_buf_reset(&uc->out);
            w->st = NULL;
            w->closed = true;
            keel_loop_defer(pw->loop, &w->free_d, free_later, w);
            st->uc = uc; /* the attempt's connection is this one now (see keel_upstream_attach) */
            keel_stream_upstream_ready(st);
            continue;
        }
        struct keel_cluster_state *cs = w->cs;
        const struct keel_cluster *c = st->cluster;
        if (cs && c && c->limits.max_connections != KEEL_CLUSTERS_UNLIMITED &&
            atomic_load(&cs->cx) >= c->limits.max_connections && p->conns > 0)
            break; /* still at maxConnections: wait for the next release or close */
        wait_remove(p, w);
        int rc = upconn_open(w, p, w->h2_wanted, c); /* opened in place: st->uc stays w */
        if (rc != 0) {
            if (rc != KEEL_ENOMEM && w->hs)
                keel_outlier_report_local(pw, c, cs, w->hs, KEEL_OUTCOME_CONNECT_FAILED);
            attempt_end(w);
            w->st = NULL;
            active_dec(w);
            w->closed = true;
            keel_loop_defer(pw->loop, &w->free_d, free_later, w);
            keel_stream_upstream_failed(st, rc, true, false);
        }
    }
}
int keel_upstream_flush(struct keel_upconn *uc)
{
    if (uc->handle) {
        struct keel_upconn *c = uc->conn;
        if (!c || c->closed || !c->connected || keel_uph2_in_recv(c))
            return 0; /* waiting, or inside the session's callbacks: the connection flushes after them */
        int rc = keel_upstream_flush(c);
        if (rc < 0)
            c->write_failed = true;
        return rc;
    }
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
    if (uc->handle) {
        /* HTTP/2: the stream's flow-control window, not the socket (the connection's other streams go on) */
        struct keel_upconn *c = uc->conn;
        if (c && !c->closed && keel_uph2_window(uc, pause) && c->connected && !keel_uph2_in_recv(c) &&
            keel_upstream_flush(c) < 0)
            c->write_failed = true;
        return;
    }
    if (uc->closed || uc->waiting)
        return;
    uint32_t want = pause ? (uc->io.events & ~KEEL_IO_READ) : (uc->io.events | KEEL_IO_READ);
    if (!want)
        want = KEEL_IO_READ; /* never fully stop: errors must still arrive */
    if (want != uc->io.events)
        keel_io_modify(&uc->io, want);
}

void keel_upstream_release(struct keel_upconn *uc, bool keep_alive)
{
    struct keel_upool *p = uc->pool;
    if (uc->handle) {
        /* HTTP/2: the stream ends (reset when unfinished: timeouts, client gone, retries); the connection stays */
        attempt_end(uc);
        active_dec(uc);
        uc->st = NULL;
        if (uc->waiting) {
            upconn_close(uc);
            return;
        }
        h2_unbind(uc);
        uc->closed = true;
        keel_loop_defer(uc->pw->loop, &uc->free_d, free_later, uc);
        return;
    }
    attempt_end(uc);
    active_dec(uc);
    uc->st = NULL;
    uc->reused = false;
    if (uc->waiting) {
        upconn_close(uc); /* it never had a connection */
        return;
    }
    bool clean = uc->in.len == 0 && uc->out.len == 0;
    uint64_t now = keel_loop_now_ms(uc->pw->loop);
    uint64_t age = now - uc->created_ms;
    if (keep_alive && uc->max_requests && uc->requests >= uc->max_requests) {
        keel_cstats_add(uc->cstats, KEEL_CSTAT_UPSTREAM_CX_MAX_REQUESTS, 1); /* maxRequestsPerConnection */
        keep_alive = false;
    } else if (keep_alive && uc->max_age_ms && age >= uc->max_age_ms) {
        keel_cstats_add(uc->cstats, KEEL_CSTAT_UPSTREAM_CX_MAX_DURATION_REACHED, 1);
        keep_alive = false;
    }
    if (!keep_alive || uc->closed || !uc->connected || !clean || !p || uc->pw->draining) {
        upconn_close(uc);
        return;
    }
    int k = pool_kind(uc->h2 != NULL, uc->tls_ctx != NULL);
    uc->next_idle = p->idle[k];
    p->idle[k] = uc;
    p->n_idle[k]++;
    keel_io_modify(&uc->io, KEEL_IO_READ);
    uint64_t ms = uc->idle_ms ? uc->idle_ms : KEEL_PROXY_UP_IDLE_MS;
    if (uc->max_age_ms && uc->max_age_ms - age < ms)
        ms = uc->max_age_ms - age;
    keel_timer_start(uc->pw->loop, &uc->timer, ms ? ms : 1, on_timer, uc);
    pool_kick(uc->pw, p); /* a waiting request takes it */
}

void keel_upstream_count_active(struct keel_pworker *pw, const struct keel_cluster *c, const struct keel_endpoint *ep,
                                int delta)
{
    struct keel_upool *p = pool_get(pw, c, ep->hostport, delta > 0);
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
        for (int k = 0; k < 4; k++) {
            while (p->idle[k]) {
                struct keel_upconn *c = p->idle[k];
                if (c->h2 && c->nstreams)
                    h2_no_new(c); /* HTTP/2 with streams: closes after its last one */
                else
                    upconn_close(c); /* unlinks itself */
            }
        }
    }
}

_Static_assert(KEEL_PROXY_CLUSTER_VIEWS == 64, "keel_cluster_view() indexes with the top 6 bits of a hash");

const struct keel_cluster_view *keel_cluster_view(struct keel_pworker *pw, const struct keel_cluster *c)
{
    uint64_t h = ((uint64_t)(uintptr_t)c >> 4) * 0x9E3779B97F4A7C15ull;
    struct keel_cluster_view *v = &pw->cviews[h >> 58]; /* the top 6 bits: KEEL_PROXY_CLUSTER_VIEWS slots */
    if (v->c != c)
        *v = (struct keel_cluster_view){c, keel_stats_cluster(pw->stats, c->name), keel_upset_cluster(pw->upset, c)};
    return v;
}

void keel_cluster_views_forget(struct keel_pworker *pw)
{
    memset(pw->cviews, 0, sizeof(pw->cviews));
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

/* ---- outlier detection and retry budget: the exchange's reports ----------------------------------------------- */

void keel_upstream_report_status(struct keel_stream *st, int status)
{
    struct keel_upconn *uc = st->uc;
    if (uc && uc->hs)
        keel_outlier_report_status(st->ds->pw, st->cluster, uc->cs, uc->hs, status);
}

void keel_upstream_report_timeout(struct keel_stream *st)
{
    struct keel_upconn *uc = st->uc;
    if (uc && uc->hs && !st->resp_started)
        keel_outlier_report_local(st->ds->pw, st->cluster, uc->cs, uc->hs, KEEL_OUTCOME_TIMEOUT);
}

bool keel_upstream_retry_allowed(struct keel_stream *st)
{
    const struct keel_upcluster *u = st->cluster ? keel_cluster_view(st->ds->pw, st->cluster)->u : NULL;
    uint32_t max = st->cluster ? st->cluster->limits.max_retries : KEEL_CLUSTERS_UNLIMITED;
    if (!u || max == KEEL_CLUSTERS_UNLIMITED || atomic_load(&u->cs->retries) < max)
        return true;
    keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_RETRY_OVERFLOW, 1);
    return false;
}
