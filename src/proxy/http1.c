/*
 * http1.c - downstream HTTP/1.1 connections and the request exchange.
 *
 * One keel_hconn per client connection, one keel_stream per request on it
 * (HTTP/1: one at a time; pipelined requests wait in the input buffer). The
 * life of a request:
 *
 *   read head ─► route (snapshot of the moment, held until the end) ─► local
 *   reply (404 NR, redirect, direct response, fault abort, 503 NC/UH)  or
 *   pick a cluster endpoint ─► upstream connection (pooled or new) ─► send
 *   head + stream the body ─► read the response head ─► stream it back ─►
 *   access log + stats ─► next request (keep-alive) or close.
 *
 * Bodies are streamed, never buffered whole: bytes move from one side's input
 * buffer to the other side's output buffer as they arrive, with their framing
 * (Content-Length or chunked) tracked by the strict codec so that a message
 * can never run into the next one. When a side's output holds more than
 * KEEL_PROXY_OUT_HIGH bytes, reading from the other side stops until it
 * drains (back-pressure): memory per request is bounded.
 *
 * Failures map to Envoy's response flags: connect failure 503 UF (retried on
 * another endpoint per the route's retry policy; URX when attempts run out),
 * no endpoint 503 UH, no cluster 503 NC, no route 404 NR, timeout 504 UT,
 * upstream reset before the response 503 UC, client gone DC, protocol errors
 * 400 (downstream) / 502 UPE (upstream). A pooled connection the server had
 * closed is retried once on a fresh connection when the request can be
 * replayed (the most common cause of spurious 503s in Envoy meshes).
 */
#include "proxy/proxy_int.h"

#include "base/arena.h"
#include "base/err.h"
#include "base/log.h"
#include "base/str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum body_mode {
    BODY_NONE,
    BODY_LENGTH,
    BODY_CHUNKED,
    BODY_UNTIL_CLOSE,
};

struct keel_hconn {
    struct keel_pworker *pw;
    enum keel_listener_role role;
    uint32_t port;
    int fd;
    struct keel_io io;
    struct keel_timer idle;
    struct keel_defer free_d;
    char peer[KEEL_ADDR_STRLEN];
    char peer_ip[KEEL_ADDR_STRLEN];
    char local[KEEL_ADDR_STRLEN];
    struct keel_buf in;
    struct keel_buf out;
    struct keel_stream *st;
    size_t head_scanned;
    struct keel_tls_conn *tls; /* terminated TLS, or NULL */
    int tls_chain[16];         /* the listener's certificate -> chain map, copied at accept */
    int chain;                 /* snapshot chain chosen by SNI; -1 = the first with routes */
    bool closing; /* close once out is flushed */
    bool closed;
    bool read_paused;
};

struct keel_stream {
    struct keel_hconn *dc;
    struct keel_snapshot *snap;
    struct keel_arena *arena;
    struct keel_http_head req;
    struct keel_h1_request req_h1;
    uint64_t req_wire_bytes; /* head + body bytes received */
    /* routing */
    const struct keel_route *route;
    const struct keel_cluster *cluster;
    const struct keel_endpoint *ep;
    const struct keel_endpoint *tried;
    struct keel_cluster_stats *cstats;
    unsigned attempts;
    const char *upstream_host; /* the endpoint's "addr:port" (lives in the snapshot this stream holds) or NULL */
    char upstream_local[KEEL_ADDR_STRLEN];
    /* upstream */
    struct keel_upconn *uc;
    struct keel_buf replay; /* serialized request (head + body) while small enough to resend */
    bool replayable;
    /* request body */
    enum body_mode req_mode;
    uint64_t req_left;
    struct keel_h1_chunked req_ch;
    bool req_done;
    /* response */
    struct keel_http_head resp;
    struct keel_h1_response resp_h1;
    enum body_mode resp_mode;
    uint64_t resp_left;
    struct keel_h1_chunked resp_ch;
    bool resp_started; /* head sent downstream */
    bool resp_done;
    bool resp_keep_alive;
    int status;
    uint32_t flags;
    const char *details;
    uint64_t bytes_sent;
    /* time */
    uint64_t start_ms;
    int64_t start_unix_ms;
    uint64_t upstream_start_ms;
    int64_t upstream_service_ms;
    struct keel_timer timeout;
    struct keel_timer delay;
    bool finished;
};

static void conn_close(struct keel_hconn *dc);
static void stream_finish(struct keel_stream *st);
static void conn_process(struct keel_hconn *dc);
static void stream_forward(struct keel_stream *st);
static void stream_dispatch_upstream(struct keel_stream *st);

/* ---- downstream connection ------------------------------------------------------------------------------------- */

static void conn_free_later(struct keel_loop *loop, struct keel_defer *d)
{
    (void)loop;
    struct keel_hconn *dc = d->data;
    keel_buf_free(&dc->in);
    keel_buf_free(&dc->out);
    free(dc);
}

static ssize_t conn_read(struct keel_hconn *dc, void *buf, size_t len)
{
    return dc->tls ? keel_tls_read(dc->tls, buf, len) : keel_sock_read(dc->fd, buf, len);
}

static ssize_t conn_write(struct keel_hconn *dc, const void *buf, size_t len)
{
    return dc->tls ? keel_tls_write(dc->tls, buf, len) : keel_sock_write(dc->fd, buf, len);
}

static void conn_set_interest(struct keel_hconn *dc)
{
    if (dc->closed)
        return;
    if (dc->tls && !keel_tls_handshake_done(dc->tls)) {
        uint32_t w = keel_tls_want(dc->tls);
        if (w != dc->io.events)
            keel_io_modify(&dc->io, w);
        return;
    }
    uint32_t want = 0;
    if (!dc->read_paused && !dc->closing)
        want |= KEEL_IO_READ;
    if (dc->out.len)
        want |= KEEL_IO_WRITE;
    if (!want)
        want = KEEL_IO_READ; /* keep noticing a client that goes away */
    if (want != dc->io.events)
        keel_io_modify(&dc->io, want);
}

/* Writes what it can; closes the connection when asked to and all is sent. */
static int conn_flush(struct keel_hconn *dc)
{
    while (dc->out.len > 0) {
        ssize_t n = conn_write(dc, dc->out.data, dc->out.len);
        if (n == KEEL_EAGAIN)
            break;
        if (n < 0) {
            conn_close(dc);
            return (int)n;
        }
        keel_stats_add(dc->pw->stats, KEEL_STAT_DOWNSTREAM_CX_TX_BYTES, n);
        memmove(dc->out.data, dc->out.data + n, dc->out.len - (size_t)n);
        dc->out.len -= (size_t)n;
        dc->out.data[dc->out.len] = '\0';
    }
    if (dc->out.len == 0 && dc->closing && !dc->st) {
        conn_close(dc);
        return KEEL_ECLOSED;
    }
    conn_set_interest(dc);
    /* the client drained: let the upstream send more */
    if (dc->st && dc->st->uc && dc->out.len < KEEL_PROXY_OUT_HIGH)
        keel_upstream_pause(dc->st->uc, false);
    return 0;
}

static void stream_free(struct keel_stream *st)
{
    keel_timer_stop(&st->timeout);
    keel_timer_stop(&st->delay);
    keel_buf_free(&st->replay);
    keel_snapshot_unref(st->snap);
    keel_arena_free(st->arena);
    free(st);
}

static void conn_close(struct keel_hconn *dc)
{
    if (dc->closed)
        return;
    dc->closed = true;
    struct keel_stream *st = dc->st;
    if (st) {
        if (!st->finished) {
            st->flags |= KEEL_RF(DOWNSTREAM_CONNECTION_TERMINATION);
            if (!st->details)
                st->details = "downstream_remote_disconnect";
            if (st->uc) {
                keel_upstream_release(st->uc, false);
                st->uc = NULL;
            }
            stream_finish(st);
        }
        dc->st = NULL;
    }
    keel_io_stop(&dc->io);
    keel_timer_stop(&dc->idle);
    keel_tls_conn_free(dc->tls);
    dc->tls = NULL;
    close(dc->fd);
    dc->fd = -1;
    dc->pw->conns--;
    keel_stats_add(dc->pw->stats, KEEL_STAT_DOWNSTREAM_CX_ACTIVE, -1);
    keel_loop_defer(dc->pw->loop, &dc->free_d, conn_free_later, dc);
}

static void on_idle(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct keel_hconn *dc = t->data;
    if (!dc->st)
        conn_close(dc);
}

/* ---- local replies -------------------------------------------------------------------------------------------- */

static void stream_count_response(struct keel_stream *st)
{
    keel_stats_count_code(st->dc->pw->stats, st->status);
}

/* Answers the request from the proxy itself (no upstream response was sent). */
static void local_reply(struct keel_stream *st, int status, uint32_t flag, const char *details, const char *body,
                        size_t body_len, const struct keel_http_header *extra, size_t n_extra)
{
    struct keel_hconn *dc = st->dc;
    if (st->resp_started) {
        /* too late for a reply: the client already has a head; cut the connection */
        st->flags |= flag;
        st->details = details;
        dc->closing = true;
        stream_finish(st);
        return;
    }
    st->status = status;
    st->flags |= flag;
    st->details = details;
    /* RFC 9110 §6.4.1/§8.6: 1xx, 204 and 304 carry no body and 204 must not carry Content-Length. */
    bool bodiless = status < 200 || status == 204 || status == 304;
    if (bodiless) {
        body = "";
        body_len = 0;
    } else if (!body) {
        body = keel_h1_reason(status);
        body_len = strlen(body);
    }
    bool keep = st->req.keep_alive && st->req_done && !dc->closing && !dc->pw->draining;
    struct keel_http_header h[12];
    size_t n = 0;
    char len[KEEL_U64_STRLEN];
    keel_u64_to_str(body_len, len);
    if (!bodiless) {
        h[n++] = (struct keel_http_header){keel_str_c("content-length"), keel_str_c(len)};
        h[n++] = (struct keel_http_header){keel_str_c("content-type"), keel_str_c("text/plain")};
    }
    for (size_t i = 0; i < n_extra && n < 10; i++)
        h[n++] = extra[i];
    h[n++] = (struct keel_http_header){keel_str_c("server"), keel_str_c("keel")};
    if (!keep)
        h[n++] = (struct keel_http_header){keel_str_c("connection"), keel_str_c("close")};
    struct keel_http_head resp = {.version = KEEL_HTTP_11, .status = status};
    size_t before = dc->out.len;
    keel_h1_write_response_head(&dc->out, &resp, h, n);
    bool head_only = keel_str_eq_c(st->req.method, "HEAD");
    if (!head_only)
        keel_buf_append(&dc->out, body, body_len);
    st->bytes_sent += dc->out.len - before;
    st->resp_started = true;
    st->resp_done = true;
    if (!keep)
        dc->closing = true;
    stream_finish(st);
}

/* ---- request intake -------------------------------------------------------------------------------------------- */

static struct keel_str dup_str(struct keel_arena *a, struct keel_str s)
{
    struct keel_str r = {keel_arena_strndup(a, s.p, s.n), s.n};
    return r;
}

/* The parsed head points into dc->in, which is about to move: copy it. */
static void copy_head(struct keel_arena *a, struct keel_http_head *dst, const struct keel_http_head *src)
{
    *dst = *src;
    dst->method = dup_str(a, src->method);
    dst->target = dup_str(a, src->target);
    dst->path = dup_str(a, src->path);
    dst->query = dup_str(a, src->query);
    dst->authority = dup_str(a, src->authority);
    dst->scheme = dup_str(a, src->scheme);
    dst->reason = dup_str(a, src->reason);
    for (size_t i = 0; i < src->nheaders; i++) {
        dst->headers[i].name = dup_str(a, src->headers[i].name);
        dst->headers[i].value = dup_str(a, src->headers[i].value);
    }
}

static void consume(struct keel_buf *b, size_t n)
{
    if (n >= b->len) {
        keel_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

static void on_timeout(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct keel_stream *st = t->data;
    keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_TIMEOUT, 1);
    if (st->uc) {
        keel_upstream_release(st->uc, false);
        st->uc = NULL;
    }
    local_reply(st, 504, KEEL_RF(UPSTREAM_REQUEST_TIMEOUT), "response_timeout", "upstream request timeout", 24, NULL,
                0);
}

/* Finds the route table for a request on this connection. */
static const struct keel_route_table *route_table_for(struct keel_stream *st, uint32_t *port, bool *https_redirect)
{
    struct keel_hconn *dc = st->dc;
    *https_redirect = false;
    if (dc->role == KEEL_PL_GATEWAY) {
        *port = dc->port;
        const struct keel_listener *l = keel_snapshot_listener(st->snap, dc->port);
        if (!l)
            return NULL;
        if (dc->chain >= 0 && (size_t)dc->chain < l->n_chains && l->chains[dc->chain].routes)
            return l->chains[dc->chain].routes;
        for (size_t i = 0; i < l->n_chains; i++) {
            if (l->chains[i].routes) {
                *https_redirect = l->chains[i].https_redirect;
                return l->chains[i].routes;
            }
        }
        return NULL;
    }
    /* outbound: the authority's port (default 80) picks the table */
    uint32_t p = 80;
    struct keel_str a = st->req.authority;
    for (size_t i = a.n; i > 0; i--) {
        if (a.p[i - 1] == ':') {
            uint64_t v;
            if (keel_str_to_u64((struct keel_str){a.p + i, a.n - i}, 65535, &v) == 0)
                p = (uint32_t)v;
            break;
        }
        if (a.p[i - 1] == ']')
            break;
    }
    *port = p;
    char name[16];
    snprintf(name, sizeof(name), "%u", p);
    return keel_snapshot_route_table(st->snap, name);
}

static void do_redirect(struct keel_stream *st, const struct keel_redirect *rd)
{
    char loc[4096];
    const char *scheme = rd->scheme ? rd->scheme : (st->req.scheme.n ? "" : "http");
    char scheme_buf[16];
    if (!rd->scheme && st->req.scheme.n)
        snprintf(scheme_buf, sizeof(scheme_buf), "%.*s", (int)st->req.scheme.n, st->req.scheme.p), scheme = scheme_buf;
    /* the request's authority; its port is dropped only when the redirect sets one */
    struct keel_str host = st->req.authority;
    if (rd->port) {
        for (size_t i = host.n; i > 0; i--) {
            if (host.p[i - 1] == ':') {
                host.n = i - 1;
                break;
            }
            if (host.p[i - 1] == ']')
                break;
        }
    }
    char port[16] = "";
    if (rd->port && !(rd->strip_default_port && ((rd->port == 80 && !strcmp(scheme, "http")) ||
                                                   (rd->port == 443 && !strcmp(scheme, "https")))))
        snprintf(port, sizeof(port), ":%u", rd->port);
    int n;
    if (rd->authority)
        n = snprintf(loc, sizeof(loc), "%s://%s%s", scheme, rd->authority, port);
    else
        n = snprintf(loc, sizeof(loc), "%s://%.*s%s", scheme, (int)host.n, host.p, port);
    if (n < 0 || (size_t)n >= sizeof(loc))
        n = 0;
    if (rd->path)
        snprintf(loc + n, sizeof(loc) - (size_t)n, "%s", rd->path);
    else
        snprintf(loc + n, sizeof(loc) - (size_t)n, "%.*s%s%.*s", (int)st->req.path.n, st->req.path.p,
                 st->req.query.n ? "?" : "", (int)st->req.query.n, st->req.query.p);
    struct keel_http_header h = {keel_str_c("location"), keel_str_c(loc)};
    local_reply(st, rd->code ? rd->code : 301, 0, "via_route_redirect", "", 0, &h, 1);
}

static void on_delay(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    stream_dispatch_upstream(t->data);
}

static bool per_million(struct keel_pworker *pw, uint32_t pm)
{
    if (pm >= 1000000)
        return true;
    return pm && keel_pworker_random(pw) % 1000000 < pm;
}

/* Routes a new request: local reply, or on to an upstream. */
static void stream_route(struct keel_stream *st)
{
    struct keel_hconn *dc = st->dc;
    uint32_t port;
    bool https_redirect;
    const struct keel_route_table *t = route_table_for(st, &port, &https_redirect);
    if (https_redirect) {
        struct keel_redirect rd = {.scheme = "https", .code = 301, .port = 443, .strip_default_port = true};
        do_redirect(st, &rd);
        return;
    }
    st->route = t ? keel_route_match(t, &st->req, port, NULL) : NULL;
    if (!t && st->dc->role == KEEL_PL_OUTBOUND) {
        /* a port no service uses: the outbound traffic policy decides (allow_any: pass
         * through to the address asked for; block_all: 502), as in every table's "*" host */
        size_t n = 0;
        const struct keel_route_table *const *all = keel_snapshot_route_tables(st->snap, &n);
        const struct keel_vhost *vh = n ? keel_route_vhost(all[0], keel_str_c("*")) : NULL;
        if (vh && vh->n_routes)
            st->route = vh->routes[vh->n_routes - 1];
    }
    if (!st->route) {
        keel_stats_add(dc->pw->stats, KEEL_STAT_DOWNSTREAM_RQ_NO_ROUTE, 1);
        local_reply(st, 404, KEEL_RF(NO_ROUTE_FOUND), "route_not_found", "", 0, NULL, 0);
        return;
    }
    const struct keel_route_action *a = st->route->action;
    if (a->fault && a->fault->abort && per_million(dc->pw, a->fault->abort_per_million)) {
        int status = a->fault->abort_http_status ? (int)a->fault->abort_http_status : 200;
        local_reply(st, status, KEEL_RF(FAULT_INJECTED), "fault_filter_abort", "fault filter abort", 18, NULL, 0);
        return;
    }
    if (a->kind == KEEL_ROUTE_REDIRECT) {
        do_redirect(st, &a->redirect);
        return;
    }
    if (a->kind == KEEL_ROUTE_DIRECT_RESPONSE) {
        local_reply(st, a->status, 0, "direct_response", a->body ? a->body : "", a->body ? a->body_len : 0, NULL,
                    0);
        return;
    }
    if (a->timeout > 0) {
        st->timeout.data = st;
        keel_timer_start(dc->pw->loop, &st->timeout, (uint64_t)(a->timeout / 1000000), on_timeout, st);
    }
    if (a->fault && a->fault->delay && per_million(dc->pw, a->fault->delay_per_million)) {
        st->flags |= KEEL_RF(DELAY_INJECTED);
        st->delay.data = st;
        keel_timer_start(dc->pw->loop, &st->delay, (uint64_t)(a->fault->delay_ns / 1000000), on_delay, st);
        return;
    }
    stream_dispatch_upstream(st);
}

/* The request's authority as an endpoint when it is an IP address (PassthroughCluster), else NULL. */
static const struct keel_endpoint *passthrough_endpoint(struct keel_stream *st)
{
    struct keel_str a = st->req.authority;
    char host[128];
    uint32_t port = 80;
    size_t hn = a.n;
    if (a.n && a.p[0] == '[') {
        const char *rb = memchr(a.p, ']', a.n);
        if (!rb)
            return NULL;
        hn = (size_t)(rb - a.p) + 1;
    } else {
        const char *colon = memchr(a.p, ':', a.n);
        if (colon)
            hn = (size_t)(colon - a.p);
    }
    if (hn < a.n && a.p[hn] == ':') {
        uint64_t v;
        if (keel_str_to_u64((struct keel_str){a.p + hn + 1, a.n - hn - 1}, 65535, &v) != 0 || v == 0)
            return NULL;
        port = (uint32_t)v;
    }
    if (hn == 0 || hn >= sizeof(host))
        return NULL;
    memcpy(host, a.p, hn);
    host[hn] = '\0';
    char spec[160];
    snprintf(spec, sizeof(spec), "%s:%u", host, port);
    struct keel_addr addr;
    if (keel_addr_parse(spec, &addr) != 0)
        return NULL; /* a name, not an address */
    struct keel_endpoint *ep = keel_arena_xalloc(st->arena, sizeof(*ep));
    if (host[0] == '[') {
        host[hn - 1] = '\0';
        ep->address = keel_arena_strdup(st->arena, host + 1);
    } else {
        ep->address = keel_arena_strdup(st->arena, host);
    }
    ep->hostport = keel_arena_strdup(st->arena, spec);
    ep->port = port;
    ep->weight = 1;
    return ep;
}

/* Picks a destination and endpoint and attaches an upstream connection. */
static void stream_dispatch_upstream(struct keel_stream *st)
{
    struct keel_hconn *dc = st->dc;
    if (!st->cluster) {
        const struct keel_route_dest *d = keel_route_pick(st->route, keel_pworker_random(dc->pw));
        if (!d || !d->cluster) {
            local_reply(st, 503, KEEL_RF(NO_CLUSTER_FOUND), "cluster_not_found", "no healthy upstream", 19, NULL, 0);
            return;
        }
        st->cluster = d->cluster;
        st->cstats = keel_stats_cluster(dc->pw->stats, d->cluster->name);
    }
    const struct keel_cluster *c = st->cluster;
    if (c->type == KEEL_CLUSTER_BLACKHOLE) {
        local_reply(st, 502, 0, "blackhole", "", 0, NULL, 0);
        return;
    }
    if (c->type == KEEL_CLUSTER_ORIGINAL_DST) {
        /* PassthroughCluster: the destination the client asked for */
        st->ep = passthrough_endpoint(st);
        if (!st->ep) {
            local_reply(st, 503, KEEL_RF(NO_HEALTHY_UPSTREAM), "passthrough_needs_address",
                        "passthrough to a host name needs DNS, which this build does not do yet", 70, NULL, 0);
            return;
        }
    } else {
        st->ep = keel_upstream_pick(dc->pw, c, st->tried);
    }
    if (!st->ep) {
        local_reply(st, 503, KEEL_RF(NO_HEALTHY_UPSTREAM), "no_healthy_upstream", "no healthy upstream", 19, NULL,
                    0);
        return;
    }
    st->tried = st->ep;
    st->attempts++;
    st->upstream_host = st->ep->hostport;
    st->upstream_start_ms = keel_loop_now_ms(dc->pw->loop);
    struct keel_upconn *uc;
    int rc = keel_upstream_attach(dc->pw, st, c, st->ep, c->limits.connect_timeout, &uc);
    if (rc != 0) {
        keel_stream_upstream_failed(st, rc, true, false);
        return;
    }
    st->uc = uc;
    if (uc->connected)
        keel_stream_upstream_ready(st);
}

/* ---- request head to the upstream ------------------------------------------------------------------------------ */

static bool hop_by_hop(struct keel_str name, const struct keel_http_head *h)
{
    static const char *const hop[] = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
                                      "upgrade",    "host",       "trailer"};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (keel_str_caseeq(name, keel_str_c(hop[i])))
            return true;
    /* fields named by Connection are hop-by-hop too */
    const struct keel_str *conn = keel_http_head_get(h, "connection");
    if (conn) {
        const char *p = conn->p, *end = conn->p + conn->n;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ',' || *p == '\t'))
                p++;
            const char *s = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            if (p > s && keel_str_caseeq(name, (struct keel_str){s, (size_t)(p - s)}))
                return true;
        }
    }
    return false;
}

static bool op_removes(const struct keel_route_header_ops *ops, struct keel_str name)
{
    for (size_t i = 0; i < ops->n_remove; i++)
        if (keel_str_caseeq(name, keel_str_c(ops->remove[i])))
            return true;
    for (size_t i = 0; i < ops->n_set; i++)
        if (keel_str_caseeq(name, keel_str_c(ops->set[i].name)))
            return true;
    return false;
}

/* Appends set/add ops of ops to h (n in/out, cap). */
static void apply_ops(const struct keel_route_header_ops *ops, struct keel_http_header *h, size_t *n, size_t cap)
{
    for (size_t i = 0; i < ops->n_set && *n < cap; i++)
        h[(*n)++] = (struct keel_http_header){keel_str_c(ops->set[i].name), keel_str_c(ops->set[i].value)};
    for (size_t i = 0; i < ops->n_add && *n < cap; i++)
        h[(*n)++] = (struct keel_http_header){keel_str_c(ops->add[i].name), keel_str_c(ops->add[i].value)};
}

static void make_request_id(struct keel_pworker *pw, char out[37])
{
    unsigned char b[16];
    for (int i = 0; i < 16; i += 4) {
        uint32_t r = keel_pworker_random(pw);
        memcpy(b + i, &r, 4);
    }
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
    keel_uuid_to_str(b, out);
}

/* Serializes the request head for the upstream into st->uc->out (and the replay copy). */
static int write_request_head(struct keel_stream *st)
{
    struct keel_hconn *dc = st->dc;
    const struct keel_route_action *a = st->route->action;
    const struct keel_route_dest *dest = NULL;
    for (size_t i = 0; i < a->n_dests; i++)
        if (a->dests[i].cluster == st->cluster)
            dest = &a->dests[i];
    struct keel_http_head up = {.version = KEEL_HTTP_11, .method = st->req.method};
    char path[KEEL_H1_MAX_TARGET + 1];
    int plen = keel_route_rewrite_path(st->route, st->req.path, path, sizeof(path));
    up.path = plen >= 0 ? (struct keel_str){path, (size_t)plen} : st->req.path;
    up.query = st->req.query;
    struct keel_http_header h[KEEL_HTTP_MAX_HEADERS + 16];
    size_t n = 0, cap = sizeof(h) / sizeof(h[0]);
    /* Host first: the rewrite, else the request's authority */
    const char *host_rw = dest && dest->host_rewrite ? dest->host_rewrite : a->host_rewrite;
    h[n++] = (struct keel_http_header){keel_str_c("host"), host_rw ? keel_str_c(host_rw) : st->req.authority};
    bool have_xfp = false;
    const struct keel_str *xff = NULL;
    for (size_t i = 0; i < st->req.nheaders && n < cap - 8; i++) {
        struct keel_str name = st->req.headers[i].name;
        if (hop_by_hop(name, &st->req) || keel_str_caseeq(name, keel_str_c("content-length")) ||
            keel_str_caseeq(name, keel_str_c("x-envoy-attempt-count")))
            continue;
        if (op_removes(&a->headers.request, name) || (dest && op_removes(&dest->headers.request, name)))
            continue;
        if (keel_str_caseeq(name, keel_str_c("x-forwarded-for"))) {
            xff = &st->req.headers[i].value;
            if (dc->role == KEEL_PL_GATEWAY)
                continue; /* re-added below with the peer appended */
        }
        if (keel_str_caseeq(name, keel_str_c("x-forwarded-proto")))
            have_xfp = true;
        h[n++] = st->req.headers[i];
    }
    char attempts[KEEL_U64_STRLEN], xff_buf[1024], clen[KEEL_U64_STRLEN];
    if (!have_xfp)
        h[n++] = (struct keel_http_header){keel_str_c("x-forwarded-proto"), keel_str_c(dc->tls ? "https" : "http")};
    if (dc->role == KEEL_PL_GATEWAY) {
        if (xff)
            snprintf(xff_buf, sizeof(xff_buf), "%.*s, %s", (int)xff->n, xff->p, dc->peer_ip);
        else
            snprintf(xff_buf, sizeof(xff_buf), "%s", dc->peer_ip);
        h[n++] = (struct keel_http_header){keel_str_c("x-forwarded-for"), keel_str_c(xff_buf)};
    }
    keel_u64_to_str(st->attempts, attempts);
    h[n++] = (struct keel_http_header){keel_str_c("x-envoy-attempt-count"), keel_str_c(attempts)};
    if (st->req_mode == BODY_CHUNKED) {
        h[n++] = (struct keel_http_header){keel_str_c("transfer-encoding"), keel_str_c("chunked")};
    } else if (st->req_mode == BODY_LENGTH || st->req.has_content_length) {
        keel_u64_to_str(st->req.content_length, clen);
        h[n++] = (struct keel_http_header){keel_str_c("content-length"), keel_str_c(clen)};
    }
    apply_ops(&a->headers.request, h, &n, cap);
    if (dest)
        apply_ops(&dest->headers.request, h, &n, cap);
    size_t before = st->uc->out.len;
    int rc = keel_h1_write_request_head(&st->uc->out, &up, h, n);
    if (rc == 0 && st->replayable)
        keel_buf_append(&st->replay, st->uc->out.data + before, st->uc->out.len - before);
    return rc;
}

/* Moves request body bytes from the client's input to the upstream's output. */
static void forward_request_body(struct keel_stream *st)
{
    struct keel_hconn *dc = st->dc;
    struct keel_upconn *uc = st->uc;
    while (!st->req_done && dc->in.len > 0 && uc && uc->out.len < KEEL_PROXY_OUT_HIGH) {
        size_t take = 0;
        if (st->req_mode == BODY_LENGTH) {
            take = st->req_left < dc->in.len ? (size_t)st->req_left : dc->in.len;
            st->req_left -= take;
            if (st->req_left == 0)
                st->req_done = true;
        } else { /* chunked: forward the raw bytes the decoder accepts */
            size_t used;
            const char *data;
            size_t dlen;
            int rc = keel_h1_chunked_feed(&st->req_ch, dc->in.data, dc->in.len, &used, &data, &dlen);
            if (rc == KEEL_H1_CHUNKED_END) {
                st->req_done = true;
            } else if (rc < 0 && rc != KEEL_EAGAIN) {
                keel_stats_add(dc->pw->stats, KEEL_STAT_DOWNSTREAM_CX_PROTOCOL_ERROR, 1);
                dc->closing = true;
                keel_upstream_release(uc, false);
                st->uc = NULL;
                local_reply(st, 400, KEEL_RF(DOWNSTREAM_PROTOCOL_ERROR), "http1.codec_error", "", 0, NULL, 0);
                return;
            }
            take = used;
            if (take == 0)
                break;
        }
        keel_buf_append(&uc->out, dc->in.data, take);
        if (st->replayable) {
            if (st->replay.len + take > KEEL_PROXY_REPLAY_MAX)
                st->replayable = false;
            else
                keel_buf_append(&st->replay, dc->in.data, take);
        }
        st->req_wire_bytes += take;
        consume(&dc->in, take);
    }
    /* back-pressure: stop reading the client while the upstream is behind */
    bool pause = !st->req_done && uc && uc->out.len >= KEEL_PROXY_OUT_HIGH;
    if (pause != dc->read_paused) {
        dc->read_paused = pause;
        conn_set_interest(dc);
    }
}

void keel_stream_upstream_ready(struct keel_stream *st)
{
    struct keel_upconn *uc = st->uc;
    snprintf(st->upstream_local, sizeof(st->upstream_local), "%s", uc->local);
    keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_TOTAL, 1);
    keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_ACTIVE, 1);
    if (st->replay.len && st->attempts > 1) {
        /* a retry: resend what was sent before (head and body so far) */
        keel_buf_append(&uc->out, st->replay.data, st->replay.len);
    } else {
        keel_buf_reset(&st->replay);
        if (write_request_head(st) != 0) {
            keel_upstream_release(uc, false);
            st->uc = NULL;
            local_reply(st, 400, KEEL_RF(DOWNSTREAM_PROTOCOL_ERROR), "invalid_request_head", "", 0, NULL, 0);
            return;
        }
        forward_request_body(st);
        if (!st->uc)
            return;
    }
    if (keel_upstream_flush(uc) < 0)
        keel_stream_upstream_failed(st, KEEL_ECLOSED, false, uc->reused);
}

void keel_stream_upstream_writable(struct keel_stream *st)
{
    forward_request_body(st);
    if (st->uc && st->uc->out.len)
        keel_upstream_flush(st->uc);
}

/* Retries per the route's retry policy (connect failures), or gives up with 503. */
void keel_stream_upstream_failed(struct keel_stream *st, int err, bool connect_phase, bool reused)
{
    struct keel_hconn *dc = st->dc;
    bool had_conn = st->uc != NULL;
    st->uc = NULL;
    if (had_conn)
        keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_ACTIVE, -1);
    if (st->resp_mode == BODY_UNTIL_CLOSE && st->resp_started && err == KEEL_ECLOSED) {
        /* the server ended a read-until-close body: that is the end of the response */
        st->resp_done = true;
        st->resp_keep_alive = false;
        dc->closing = true;
        stream_finish(st);
        return;
    }
    if (st->resp_started) {
        /* the upstream went away in the middle of the response: cut the client too */
        st->flags |= KEEL_RF(UPSTREAM_CONNECTION_TERMINATION);
        st->details = "upstream_reset_after_response_started";
        dc->closing = true;
        stream_finish(st);
        return;
    }
    const struct keel_retry_policy *rp = &st->route->action->retry;
    bool can_replay = st->replayable && (st->req_done || st->replay.len == 0 || st->req_wire_bytes == 0);
    /* a pooled connection the server had closed: one free retry on a fresh connection */
    if (!connect_phase && reused && can_replay && st->attempts < 8) {
        st->tried = NULL;
        st->attempts--; /* not an attempt the user asked for */
        keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_RETRY, 1);
        stream_dispatch_upstream(st);
        return;
    }
    bool retriable = connect_phase ? (rp->retry_on & KEEL_RETRY_CONNECT_FAILURE) != 0
                                   : (rp->retry_on & (KEEL_RETRY_RESET | KEEL_RETRY_5XX)) != 0;
    if (rp->enabled && retriable && can_replay && st->attempts <= rp->num_retries) {
        keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_RETRY, 1);
        stream_dispatch_upstream(st);
        return;
    }
    uint32_t flag = connect_phase ? KEEL_RF(UPSTREAM_CONNECTION_FAILURE) : KEEL_RF(UPSTREAM_CONNECTION_TERMINATION);
    if (rp->enabled && retriable && st->attempts > 1)
        flag |= KEEL_RF(UPSTREAM_RETRY_LIMIT_EXCEEDED);
    local_reply(st, 503, flag,
                connect_phase ? "upstream_reset_before_response_started{connection_failure}"
                              : "upstream_reset_before_response_started{connection_termination}",
                connect_phase ? "upstream connect error or disconnect/reset before headers. reset reason: connection "
                                "failure"
                              : "upstream connect error or disconnect/reset before headers. reset reason: connection "
                                "termination",
                0, NULL, 0);
    (void)err;
}

/* ---- response ---------------------------------------------------------------------------------------------------- */

static int write_response_head(struct keel_stream *st)
{
    struct keel_hconn *dc = st->dc;
    const struct keel_route_action *a = st->route->action;
    const struct keel_route_dest *dest = NULL;
    for (size_t i = 0; i < a->n_dests; i++)
        if (a->dests[i].cluster == st->cluster)
            dest = &a->dests[i];
    struct keel_http_header h[KEEL_HTTP_MAX_HEADERS + 8];
    size_t n = 0, cap = sizeof(h) / sizeof(h[0]);
    for (size_t i = 0; i < st->resp.nheaders && n < cap - 6; i++) {
        struct keel_str name = st->resp.headers[i].name;
        if (hop_by_hop(name, &st->resp) || keel_str_caseeq(name, keel_str_c("content-length")))
            continue;
        if (op_removes(&a->headers.response, name) || (dest && op_removes(&dest->headers.response, name)))
            continue;
        h[n++] = st->resp.headers[i];
    }
    char clen[KEEL_U64_STRLEN], ust[KEEL_U64_STRLEN];
    if (st->resp_mode == BODY_CHUNKED)
        h[n++] = (struct keel_http_header){keel_str_c("transfer-encoding"), keel_str_c("chunked")};
    else if (st->resp.has_content_length) {
        keel_u64_to_str(st->resp.content_length, clen);
        h[n++] = (struct keel_http_header){keel_str_c("content-length"), keel_str_c(clen)};
    }
    keel_u64_to_str(st->upstream_service_ms > 0 ? (uint64_t)st->upstream_service_ms : 0, ust);
    h[n++] = (struct keel_http_header){keel_str_c("x-envoy-upstream-service-time"), keel_str_c(ust)};
    bool keep = st->req.keep_alive && st->resp_mode != BODY_UNTIL_CLOSE && !dc->pw->draining && !dc->closing;
    if (!keep) {
        h[n++] = (struct keel_http_header){keel_str_c("connection"), keel_str_c("close")};
        dc->closing = true;
    }
    apply_ops(&a->headers.response, h, &n, cap);
    if (dest)
        apply_ops(&dest->headers.response, h, &n, cap);
    struct keel_http_head out = {.version = KEEL_HTTP_11, .status = st->resp.status, .reason = st->resp.reason};
    size_t before = dc->out.len;
    int rc = keel_h1_write_response_head(&dc->out, &out, h, n);
    st->bytes_sent += dc->out.len - before;
    return rc;
}

/* Moves response body bytes from the upstream's input to the client's output. */
static void forward_response_body(struct keel_stream *st)
{
    struct keel_hconn *dc = st->dc;
    struct keel_upconn *uc = st->uc;
    while (!st->resp_done && uc && uc->in.len > 0 && dc->out.len < KEEL_PROXY_OUT_HIGH) {
        size_t take;
        if (st->resp_mode == BODY_LENGTH) {
            take = st->resp_left < uc->in.len ? (size_t)st->resp_left : uc->in.len;
            st->resp_left -= take;
            if (st->resp_left == 0)
                st->resp_done = true;
        } else if (st->resp_mode == BODY_CHUNKED) {
            size_t used;
            const char *data;
            size_t dlen;
            int rc = keel_h1_chunked_feed(&st->resp_ch, uc->in.data, uc->in.len, &used, &data, &dlen);
            if (rc == KEEL_H1_CHUNKED_END) {
                st->resp_done = true;
            } else if (rc < 0 && rc != KEEL_EAGAIN) {
                st->flags |= KEEL_RF(UPSTREAM_PROTOCOL_ERROR);
                st->details = "upstream_chunked_error";
                keel_upstream_release(uc, false);
                st->uc = NULL;
                dc->closing = true;
                stream_finish(st);
                return;
            }
            take = used;
            if (take == 0)
                break;
        } else { /* until close */
            take = uc->in.len;
        }
        keel_buf_append(&dc->out, uc->in.data, take);
        st->bytes_sent += take;
        consume(&uc->in, take);
    }
    if (uc)
        keel_upstream_pause(uc, dc->out.len >= KEEL_PROXY_OUT_HIGH);
}

void keel_stream_upstream_readable(struct keel_stream *st)
{
    struct keel_hconn *dc = st->dc;
    struct keel_upconn *uc = st->uc;
    while (!st->resp_started && uc) {
        size_t used;
        int rc = keel_h1_parse_response(uc->in.data, uc->in.len, st->req.method, NULL, &st->resp, &st->resp_h1, &used);
        if (rc == KEEL_EAGAIN)
            return;
        if (rc != 0) {
            st->uc = NULL;
            keel_upstream_release(uc, false);
            keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_ACTIVE, -1);
            local_reply(st, 502, KEEL_RF(UPSTREAM_PROTOCOL_ERROR), "upstream_protocol_error",
                        "upstream sent an invalid response", 33, NULL, 0);
            return;
        }
        if (st->resp.status >= 100 && st->resp.status < 200 && st->resp.status != 101) {
            /* interim (100 Continue): pass it on, wait for the final one */
            keel_buf_append(&dc->out, uc->in.data, used);
            consume(&uc->in, used);
            continue;
        }
        /* the head points into uc->in: copy before consuming */
        struct keel_http_head tmp = st->resp;
        copy_head(st->arena, &st->resp, &tmp);
        consume(&uc->in, used);
        st->status = st->resp.status;
        st->upstream_service_ms = (int64_t)(keel_loop_now_ms(dc->pw->loop) - st->upstream_start_ms);
        keel_cstats_count_code(st->cstats, st->status);
        if (st->resp_h1.no_body || st->resp_h1.tunnel)
            st->resp_mode = BODY_NONE;
        else if (st->resp.chunked)
            st->resp_mode = BODY_CHUNKED;
        else if (st->resp.has_content_length)
            st->resp_mode = st->resp.content_length ? BODY_LENGTH : BODY_NONE;
        else
            st->resp_mode = BODY_UNTIL_CLOSE;
        st->resp_left = st->resp.content_length;
        keel_h1_chunked_init(&st->resp_ch);
        st->resp_keep_alive = st->resp.keep_alive;
        keel_timer_stop(&st->timeout);
        if (write_response_head(st) != 0) {
            st->flags |= KEEL_RF(UPSTREAM_PROTOCOL_ERROR);
            st->uc = NULL;
            keel_upstream_release(uc, false);
            local_reply(st, 502, KEEL_RF(UPSTREAM_PROTOCOL_ERROR), "upstream_invalid_header", "", 0, NULL, 0);
            return;
        }
        st->resp_started = true;
        st->details = "via_upstream";
        if (st->resp_mode == BODY_NONE)
            st->resp_done = true;
    }
    forward_response_body(st);
    if (dc->closed)
        return;
    if (st->resp_done && !st->finished) {
        stream_finish(st);
        return;
    }
    conn_flush(dc);
}

/* ---- end of a request ------------------------------------------------------------------------------------------ */

static void access_log(struct keel_stream *st)
{
    struct keel_hconn *dc = st->dc;
    const struct keel_logcfg *lc = dc->pw->log;
    if (!lc || !lc->format || lc->fd < 0)
        return;
    const struct keel_accesslog_format *f = lc->format;
    int fd = lc->fd;
    struct keel_accesslog_entry e = {
        .start_unix_ms = st->start_unix_ms,
        .req = &st->req,
        .resp = st->resp.status ? &st->resp : NULL,
        .protocol = keel_str_c(st->req.version == KEEL_HTTP_10 ? "HTTP/1.0" : "HTTP/1.1"),
        .response_code = st->status,
        .flags = st->flags,
        .response_code_details = st->details,
        .bytes_received = st->req_wire_bytes,
        .bytes_sent = st->bytes_sent,
        .duration_ms = (int64_t)(keel_loop_now_ms(dc->pw->loop) - st->start_ms),
        .upstream_service_time_ms = st->resp.status ? st->upstream_service_ms : -1,
        .upstream_host = st->upstream_host,
        .upstream_cluster = st->cluster ? st->cluster->name : NULL,
        .upstream_local_address = st->upstream_local[0] ? st->upstream_local : NULL,
        .downstream_local_address = dc->local,
        .downstream_remote_address = dc->peer,
        .route_name = st->route ? st->route->name : NULL,
    };
    struct keel_buf *b = &dc->pw->logline;
    keel_buf_reset(b);
    if (keel_accesslog_render(f, &e, b) == 0 && b->len) {
        ssize_t w = write(fd, b->data, b->len);
        (void)w;
    }
}

/* The exchange is over (response sent or abandoned): log, count, release, and go on with the connection. */
static void stream_finish(struct keel_stream *st)
{
    if (st->finished)
        return;
    st->finished = true;
    struct keel_hconn *dc = st->dc;
    keel_timer_stop(&st->timeout);
    keel_timer_stop(&st->delay);
    if (st->uc) {
        bool reuse = st->resp_done && st->req_done && st->resp_keep_alive;
        keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_ACTIVE, -1);
        keel_upstream_release(st->uc, reuse);
        st->uc = NULL;
    }
    if (!st->req_done)
        dc->closing = true; /* the rest of the request body would be read as a new request */
    stream_count_response(st);
    keel_stats_add(dc->pw->stats, KEEL_STAT_DOWNSTREAM_RQ_ACTIVE, -1);
    access_log(st);
    dc->st = NULL;
    stream_free(st);
    if (dc->closed)
        return;
    dc->read_paused = false;
    if (conn_flush(dc) < 0 || dc->closed)
        return;
    if (!dc->closing && dc->in.len)
        conn_process(dc); /* a pipelined request is waiting */
    else if (!dc->closing)
        keel_timer_start(dc->pw->loop, &dc->idle, KEEL_PROXY_IDLE_MS, on_idle, dc);
}

/* ---- reading the client ---------------------------------------------------------------------------------------- */

/* Starts the exchange for a parsed head. route=false: the caller answers it itself (a rejected request). */
static void stream_start(struct keel_hconn *dc, const struct keel_http_head *head, const struct keel_h1_request *h1,
                         size_t head_len, bool route)
{
    struct keel_pworker *pw = dc->pw;
    struct keel_stream *st = calloc(1, sizeof(*st));
    struct keel_arena *a = st ? keel_arena_new(4096) : NULL;
    if (!st || !a) {
        free(st);
        keel_arena_free(a);
        conn_close(dc);
        return;
    }
    st->dc = dc;
    st->arena = a;
    st->snap = keel_snapshot_ref(pw->snap);
    copy_head(a, &st->req, head);
    st->req_h1 = *h1;
    if (!keel_http_head_get(&st->req, "x-request-id") && st->req.nheaders < KEEL_HTTP_MAX_HEADERS) {
        /* generated once here, so the access log and the upstream see the same id */
        char *id = keel_arena_xalloc(a, 37);
        make_request_id(pw, id);
        st->req.headers[st->req.nheaders++] = (struct keel_http_header){keel_str_c("x-request-id"), {id, 36}};
    }
    st->req_wire_bytes = head_len;
    st->start_ms = keel_loop_now_ms(pw->loop);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    st->start_unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    keel_timer_init(&st->timeout);
    keel_timer_init(&st->delay);
    keel_buf_init(&st->replay, KEEL_PROXY_REPLAY_MAX + KEEL_H1_MAX_HEAD);
    st->replayable = true;
    st->upstream_service_ms = -1;
    if (head->chunked) {
        st->req_mode = BODY_CHUNKED;
        keel_h1_chunked_init(&st->req_ch);
    } else if (head->has_content_length && head->content_length > 0) {
        st->req_mode = BODY_LENGTH;
        st->req_left = head->content_length;
    } else {
        st->req_mode = BODY_NONE;
        st->req_done = true;
    }
    dc->st = st;
    keel_timer_stop(&dc->idle);
    keel_stats_add(pw->stats, KEEL_STAT_DOWNSTREAM_RQ_TOTAL, 1);
    keel_stats_add(pw->stats, KEEL_STAT_DOWNSTREAM_RQ_ACTIVE, 1);
    consume(&dc->in, head_len);
    if (!route)
        return;
    if (!pw->snap) {
        local_reply(st, 503, 0, "no_config", "no configuration yet", 20, NULL, 0);
        return;
    }
    if (head->upgrade) {
        /* WebSocket and CONNECT tunnels are not in this build yet */
        dc->closing = true;
        local_reply(st, 501, 0, "upgrade_not_supported", "", 0, NULL, 0);
        return;
    }
    if (head->expect_continue && st->req_mode != BODY_NONE) {
        /* the upstream decides; meanwhile tell the client to go on (as Envoy does by default) */
        keel_buf_puts(&dc->out, "HTTP/1.1 100 Continue\r\n\r\n");
    }
    stream_route(st);
}

/* Parses and starts the next request in dc->in, if complete. */
static void conn_process(struct keel_hconn *dc)
{
    if (dc->st || dc->closed || dc->closing)
        return;
    if (dc->in.len == 0)
        return;
    /* short inputs go to the parser at once, so garbage (a TLS ClientHello on a
     * plain port, binary noise) is refused now instead of waiting for a CRLFCRLF
     * that never comes; longer ones only once their head is complete */
    if (!keel_h1_has_head(dc->in.data, dc->in.len, &dc->head_scanned) && dc->in.len >= 4096 &&
        dc->in.len < KEEL_H1_MAX_HEAD)
        return;
    dc->head_scanned = 0;
    struct keel_http_head head;
    struct keel_h1_request h1;
    size_t used = 0;
    int rc = keel_h1_parse_request_ex(dc->in.data, dc->in.len, NULL, &head, &h1, &used);
    if (rc == KEEL_EAGAIN)
        return;
    if (rc != 0) {
        keel_stats_add(dc->pw->stats, KEEL_STAT_DOWNSTREAM_CX_PROTOCOL_ERROR, 1);
        /* answer the rejection from a stream of its own, so it is logged and counted */
        struct keel_http_head bad = {.version = KEEL_HTTP_11, .method = keel_str_c("-"), .path = keel_str_c("-")};
        struct keel_h1_request bh1 = {0};
        dc->closing = true;
        keel_buf_reset(&dc->in);
        stream_start(dc, &bad, &bh1, 0, false);
        if (dc->st) {
            const char *why = keel_h1_strerror(rc);
            local_reply(dc->st, keel_h1_error_status(rc), KEEL_RF(DOWNSTREAM_PROTOCOL_ERROR), "http1.codec_error",
                        why, strlen(why), NULL, 0);
        }
        return;
    }
    stream_start(dc, &head, &h1, used, true);
}

static void on_conn_io(struct keel_loop *loop, struct keel_io *io, uint32_t ev)
{
    (void)loop;
    struct keel_hconn *dc = io->data;
    if (dc->tls && !keel_tls_handshake_done(dc->tls)) {
        int rc = keel_tls_handshake(dc->tls);
        if (rc == KEEL_EAGAIN) {
            conn_set_interest(dc);
            return;
        }
        if (rc != 0) {
            keel_log(KEEL_LOG_DEBUG, "TLS handshake with %s failed: %s", dc->peer, keel_tls_error(dc->tls));
            keel_stats_add(dc->pw->stats, KEEL_STAT_DOWNSTREAM_CX_PROTOCOL_ERROR, 1);
            conn_close(dc);
            return;
        }
        size_t ci = keel_tls_cert_index(dc->tls);
        dc->chain = ci < 16 ? dc->tls_chain[ci] : -1;
        conn_set_interest(dc);
        ev |= KEEL_IO_READ; /* the client's first request may already be decrypted */
    }
    if (ev & KEEL_IO_WRITE) {
        if (conn_flush(dc) < 0 || dc->closed)
            return;
        if (dc->st && dc->st->uc)
            keel_stream_upstream_readable(dc->st); /* more response may fit now */
        if (dc->closed)
            return;
    }
    if (!(ev & (KEEL_IO_READ | KEEL_IO_ERROR)) || dc->read_paused)
        return;
    size_t room = dc->in.max - dc->in.len;
    if (room == 0) {
        /* buffer full: a pipelining client waits for us, or a head too large */
        if (!dc->st)
            conn_process(dc);
        dc->read_paused = true;
        conn_set_interest(dc);
        return;
    }
    char tmp[KEEL_PROXY_READ_CHUNK];
    ssize_t n = conn_read(dc, tmp, room < sizeof(tmp) ? room : sizeof(tmp));
    if (n == KEEL_EAGAIN)
        return;
    if (n <= 0) {
        if (!dc->st)
            keel_stats_add(dc->pw->stats, KEEL_STAT_DOWNSTREAM_CX_DESTROY_REMOTE, 1);
        conn_close(dc);
        return;
    }
    keel_stats_add(dc->pw->stats, KEEL_STAT_DOWNSTREAM_CX_RX_BYTES, n);
    keel_buf_append(&dc->in, tmp, (size_t)n);
    /* TLS may hold more decrypted records than the socket shows: drain them now */
    while (dc->tls && dc->in.len < dc->in.max) {
        size_t r2 = dc->in.max - dc->in.len;
        ssize_t m = conn_read(dc, tmp, r2 < sizeof(tmp) ? r2 : sizeof(tmp));
        if (m <= 0)
            break; /* EAGAIN, or an error the next wakeup reports */
        keel_stats_add(dc->pw->stats, KEEL_STAT_DOWNSTREAM_CX_RX_BYTES, m);
        keel_buf_append(&dc->in, tmp, (size_t)m);
    }
    if (dc->st) {
        if (!dc->st->req_done && dc->st->uc && dc->st->uc->connected) {
            forward_request_body(dc->st);
            if (dc->st && dc->st->uc)
                keel_upstream_flush(dc->st->uc);
        }
        return;
    }
    conn_process(dc);
}

void keel_http1_accept(struct keel_plistener *l, int fd, const struct keel_addr *peer)
{
    struct keel_pworker *pw = l->pw;
    struct keel_hconn *dc = calloc(1, sizeof(*dc));
    if (!dc) {
        close(fd);
        return;
    }
    dc->pw = pw;
    dc->role = l->role;
    dc->port = l->port;
    dc->fd = fd;
    keel_buf_init(&dc->in, KEEL_PROXY_IN_MAX);
    keel_buf_init(&dc->out, KEEL_PROXY_OUT_MAX);
    keel_addr_format(peer, dc->peer, sizeof(dc->peer));
    snprintf(dc->peer_ip, sizeof(dc->peer_ip), "%s", dc->peer);
    char *colon = strrchr(dc->peer_ip, ':');
    if (colon)
        *colon = '\0';
    if (dc->peer_ip[0] == '[') {
        memmove(dc->peer_ip, dc->peer_ip + 1, strlen(dc->peer_ip));
        char *rb = strchr(dc->peer_ip, ']');
        if (rb)
            *rb = '\0';
    }
    struct keel_addr local;
    if (keel_sock_local_addr(fd, &local) == 0)
        keel_addr_format(&local, dc->local, sizeof(dc->local));
    keel_sock_set_nodelay(fd, true);
    dc->chain = -1;
    if (l->tls) {
        memcpy(dc->tls_chain, l->tls_chain, sizeof(dc->tls_chain));
        if (keel_tls_accept(l->tls, fd, &dc->tls) != 0) {
            close(fd);
            keel_buf_free(&dc->in);
            keel_buf_free(&dc->out);
            free(dc);
            return;
        }
    }
    keel_io_init(&dc->io, fd, on_conn_io, dc);
    keel_timer_init(&dc->idle);
    dc->idle.data = dc;
    if (keel_io_start(pw->loop, &dc->io, KEEL_IO_READ) != 0) {
        keel_tls_conn_free(dc->tls);
        close(fd);
        keel_buf_free(&dc->in);
        keel_buf_free(&dc->out);
        free(dc);
        return;
    }
    pw->conns++;
    keel_stats_add(pw->stats, KEEL_STAT_DOWNSTREAM_CX_TOTAL, 1);
    keel_stats_add(pw->stats, KEEL_STAT_DOWNSTREAM_CX_ACTIVE, 1);
    keel_timer_start(pw->loop, &dc->idle, KEEL_PROXY_IDLE_MS, on_idle, dc);
}

/* silence the unused forward declaration when nothing else references it */
static void stream_forward(struct keel_stream *st) __attribute__((unused));
static void stream_forward(struct keel_stream *st)
{
    forward_request_body(st);
}
