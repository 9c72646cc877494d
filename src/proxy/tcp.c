/*
 * tcp.c - L4 sessions: TCP proxying and TLS passthrough by SNI (see
 * proxy_int.h, docs/proxy-l4.md).
 *
 * One keel_tconn per accepted connection, holding the snapshot of the moment
 * until it closes. Its life:
 *
 *   accept ─► (TLS chains on the port: read the ClientHello, kept to replay,
 *   SNI parsed by sni.c) ─► filter chain and route (VirtualService tcp[] or
 *   tls[] sniHosts, weighted destination) ─► endpoint (the cluster's LB) ─►
 *   connect, with the cluster's connect timeout ─► relay both ways ─► access
 *   log + stats at close.
 *
 * Relay: bytes read from one side are written to the other at once; what the
 * other side does not take waits in that side's output buffer, and reading
 * stops while that buffer holds more than KEEL_PROXY_OUT_HIGH bytes (resumes
 * below half of it), so memory per session stays bounded whatever the speed
 * of either peer. Half-close is kept: an EOF from one side becomes a
 * shutdown(SHUT_WR) on the other once its buffered bytes are written; the
 * session ends when both directions have ended, or at once on an error (a
 * write to a peer that is gone, a reset). Idle timeout: the cluster's
 * DestinationRule connectionPool.tcp.idleTimeout (default 1 h, 0s disables),
 * counted from the last byte moved either way; maxConnectionDuration ends the
 * session with DT.
 *
 * Filter chains of a gateway port, as Envoy matches them: a TLS chain is
 * eligible when the connection starts with a TLS ClientHello and its SNI
 * matches one of the server's hosts (exact beats the longest `*.` wildcard,
 * which beats `*`; no SNI matches only `*`); a plain TCP chain takes any
 * connection at the lowest priority. No eligible chain, no route, or a
 * ClientHello that cannot be read: the connection is closed, logged with NR.
 * AUTO_PASSTHROUGH chains route by SNI `outbound_.<port>_.<subset>_.<host>`
 * straight to that cluster. TLS chains that terminate TLS (SIMPLE, MUTUAL)
 * are not handled here yet: such connections are closed and logged.
 *
 * Circuit breaker, as Envoy's tcp_proxy: the session's upstream connection
 * counts in the cluster's open connections (keel_cluster_state.cx, the count
 * the HTTP pools of every worker use too) from before the endpoint is chosen
 * until the session ends, whatever ends it. When the count is at the
 * DestinationRule's connectionPool.tcp.maxConnections, the client is closed
 * at once without connecting: UO, envoy_cluster_upstream_cx_overflow.
 *
 * Clusters without endpoints (ORIGINAL_DST: ServiceEntry resolution NONE,
 * DestinationRule PASSTHROUGH, PassthroughCluster; DYNAMIC_DNS): the
 * destination is the connection's original destination (iptables REDIRECT,
 * CONNECT to an IP), else its SNI, else the service's non-wildcard host
 * (ORIGINAL_DST only); names go through the worker's DNS cache (dfp.h). A
 * session waiting for an answer (TS_RESOLVING) is in the name's line through
 * t->dfp_wait, which finish() cancels; the connection slot is taken once the
 * address is known.
 *
 * Response flags in the access log: NR no chain/route, NC no such cluster,
 * UO maxConnections reached, UH no endpoint (or nothing to find one by),
 * DF the destination's name did not resolve, UF connect failure or timeout,
 * DT max duration.
 */
#include "proxy/proxy_int.h"

#include "base/err.h"
#include "config/host.h"
#include "config/schema_gen.h"
#include "proxy/dfp.h"
#include "proxy/sni.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Limits (docs/principles.md: next to the code that enforces them). */
#define KEEL_TCP_READ_CHUNK 65536                                    /* bytes read per wakeup and side */
#define KEEL_TCP_OUT_MAX (KEEL_PROXY_OUT_HIGH + KEEL_TCP_READ_CHUNK) /* a side's output never holds more */
#define KEEL_TCP_OUT_LOW (KEEL_PROXY_OUT_HIGH / 2)                   /* reading resumes below this */
#define KEEL_TCP_KEEP_BUF 65536                                      /* drained output buffers larger are freed */
#define KEEL_TCP_HELLO_TIMEOUT_MS 15000u                             /* Envoy's listener_filters_timeout */
#define KEEL_TCP_CONNECT_TIMEOUT_MS 10000u                           /* when the cluster has none */

enum tstate {
    TS_HELLO,      /* reading the ClientHello */
    TS_RESOLVING,  /* waiting for the destination's address (dfp.c); the client's bytes queue up meanwhile */
    TS_CONNECTING, /* upstream connect in progress */
    TS_RELAY,
};

struct tside {
    int fd;
    struct keel_io io;
    struct keel_buf out; /* bytes waiting to be written to this side */
    size_t off;          /* of them, already written */
    bool eof;            /* this side sent EOF: nothing more to read */
    bool shut;           /* we sent EOF to this side */
    bool paused;         /* reading stopped: the other side's output is above the high mark */
};

struct keel_tconn {
    struct keel_pworker *pw;
    struct keel_tconn *prev, *next; /* the worker's open sessions (pw->tcp) */
    struct keel_snapshot *snap;
    enum keel_listener_role role;
    uint32_t port;
    enum tstate state;
    struct tside down, up;
    struct keel_timer timer; /* ClientHello, connect, then idle / max duration */
    struct keel_defer free_d;
    bool closed;
    bool up_counted; /* upstream connection counted in the cluster's cx_active and the endpoint's in-flight */
    struct keel_cluster_state *cx_cs; /* the cluster whose connection count (maxConnections) holds this session */
    /* routing */
    const char *cluster_name;
    const struct keel_cluster *cluster;
    const struct keel_endpoint *ep;
    struct keel_cluster_stats *cstats;
    char sni[KEEL_SNI_MAX_NAME + 1];
    size_t hello_scan;               /* TLS records of the ClientHello seen complete up to here */
    char local_ip[INET6_ADDRSTRLEN]; /* the destination the client dialled (original destination when redirected) */
    bool has_orig_dst;               /* the connection was redirected (iptables) or CONNECTed to an IP: orig_dst */
    struct keel_addr orig_dst;
    /* destination of an ORIGINAL_DST / DYNAMIC_DNS cluster (no endpoint list): dyn_ep, from a name or orig_dst */
    struct keel_dfp_wait dfp_wait; /* in the line of dst_name's lookup (TS_RESOLVING) */
    char dst_name[KEEL_DNS_MAX_NAME + 1];
    uint32_t dst_port;
    struct keel_endpoint dyn_ep;
    char dyn_ip[KEEL_DNS_ADDRSTRLEN];
    char dyn_hostport[KEEL_ADDR_STRLEN];
    char dns_error[96];
    /* log */
    char peer[KEEL_ADDR_STRLEN];
    char local[KEEL_ADDR_STRLEN];
    char upstream_host[KEEL_ADDR_STRLEN];
    char upstream_local[KEEL_ADDR_STRLEN];
    uint32_t flags;
    const char *details;
    const char *failure;
    uint64_t rx, tx; /* bytes from / to the client */
    uint64_t start_ms, last_ms, idle_ms, deadline_ms;
    int64_t start_unix_ms;
};

static void finish(struct keel_tconn *t);
static void update(struct keel_tconn *t);

static size_t pending(const struct tside *s)
{
    return s->out.len - s->off;
}

/* ---- end of a session ------------------------------------------------------------------------------------------ */

static void free_later(struct keel_loop *loop, struct keel_defer *d)
{
    (void)loop;
    struct keel_tconn *t = d->data;
    keel_buf_free(&t->down.out);
    keel_buf_free(&t->up.out);
    free(t);
}

static void access_log(struct keel_tconn *t)
{
    const struct keel_logcfg *lc = t->pw->log;
    if (!lc || !lc->format || lc->fd < 0)
        return;
    struct keel_accesslog_entry e = {
        .start_unix_ms = t->start_unix_ms,
        .req = NULL, /* TCP: the request and response fields print "-" */
        .flags = t->flags,
        .termination_details = t->details,
        .upstream_failure = t->failure,
        .bytes_received = t->rx,
        .bytes_sent = t->tx,
        .duration_ms = (int64_t)(keel_loop_now_ms(t->pw->loop) - t->start_ms),
        .upstream_service_time_ms = -1,
        .upstream_host = t->upstream_host[0] ? t->upstream_host : NULL,
        .upstream_cluster = t->cluster_name,
        .upstream_local_address = t->upstream_local[0] ? t->upstream_local : NULL,
        .downstream_local_address = t->local,
        .downstream_remote_address = t->peer,
        .requested_server_name = t->sni[0] ? t->sni : NULL,
    };
    struct keel_buf *b = &t->pw->logline;
    keel_buf_reset(b);
    if (keel_accesslog_render(lc->format, &e, b) == 0 && b->len) {
        ssize_t w = write(lc->fd, b->data, b->len);
        (void)w;
    }
}

static void side_close(struct tside *s)
{
    keel_io_stop(&s->io);
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}

/* Ends the session: both sockets closed, logged, counted, freed after the current callbacks. */
static void finish(struct keel_tconn *t)
{
    if (t->closed)
        return;
    t->closed = true;
    struct keel_pworker *pw = t->pw;
    if (t->prev)
        t->prev->next = t->next;
    else
        pw->tcp = t->next;
    if (t->next)
        t->next->prev = t->prev;
    keel_timer_stop(&t->timer);
    keel_dfp_wait_cancel(&t->dfp_wait); /* a DNS answer arriving later must not reach a freed session */
    side_close(&t->down);
    side_close(&t->up);
    if (t->up_counted) {
        keel_cstats_add(t->cstats, KEEL_CSTAT_UPSTREAM_CX_ACTIVE, -1);
        keel_upstream_count_active(pw, t->cluster, t->ep, -1);
    }
    if (t->cx_cs) {
        atomic_fetch_sub(&t->cx_cs->cx, 1);
        keel_cluster_state_unref(t->cx_cs);
        t->cx_cs = NULL;
    }
    pw->conns--;
    keel_stats_add(pw->stats, KEEL_STAT_TCP_DOWNSTREAM_CX_ACTIVE, -1);
    access_log(t);
    keel_snapshot_unref(t->snap); /* the cluster name logged above lives in it */
    t->snap = NULL;
    keel_loop_defer(pw->loop, &t->free_d, free_later, t);
}

/* Closes the session for a reason known before any byte was relayed. */
static void fail(struct keel_tconn *t, uint32_t flag, const char *details)
{
    t->flags |= flag;
    if (!t->details)
        t->details = details;
    if (flag & KEEL_RF(NO_ROUTE_FOUND))
        keel_stats_add(t->pw->stats, KEEL_STAT_TCP_DOWNSTREAM_CX_NO_ROUTE, 1);
    finish(t);
}

/* ---- moving bytes ---------------------------------------------------------------------------------------------- */

static void count_tx(struct keel_tconn *t, struct tside *s, size_t n)
{
    if (!n)
        return;
    if (s == &t->down) {
        t->tx += n;
        keel_stats_add(t->pw->stats, KEEL_STAT_TCP_DOWNSTREAM_CX_TX_BYTES, (int64_t)n);
    } else {
        keel_cstats_add(t->cstats, KEEL_CSTAT_UPSTREAM_CX_TX_BYTES, (int64_t)n);
    }
    t->last_ms = keel_loop_now_ms(t->pw->loop);
}

/* A side can be written to: the client always, the upstream once connected. */
static bool writable(const struct keel_tconn *t, const struct tside *s)
{
    return s == &t->down || t->state == TS_RELAY;
}

static void out_drained(struct tside *s)
{
    if (s->out.cap > KEEL_TCP_KEEP_BUF) {
        /* a burst grew it: give the memory back rather than hold it for an idle session */
        size_t max = s->out.max;
        keel_buf_free(&s->out);
        keel_buf_init(&s->out, max);
    } else {
        keel_buf_reset(&s->out);
    }
    s->off = 0;
}

/* Writes what it can of s's output. Returns 0 or a negative code (the peer is gone). */
static int side_flush(struct keel_tconn *t, struct tside *s)
{
    while (pending(s) > 0) {
        ssize_t n = keel_sock_write(s->fd, s->out.data + s->off, pending(s));
        if (n == KEEL_EAGAIN)
            break;
        if (n < 0)
            return (int)n;
        s->off += (size_t)n;
        count_tx(t, s, (size_t)n);
    }
    if (pending(s) == 0)
        out_drained(s);
    return 0;
}

/* Sends bytes to s: straight to the socket when nothing is queued before them, the rest into s's output. */
static int side_send(struct keel_tconn *t, struct tside *s, const char *p, size_t n)
{
    if (pending(s) == 0 && writable(t, s)) {
        ssize_t w = keel_sock_write(s->fd, p, n);
        if (w == KEEL_EAGAIN)
            w = 0;
        else if (w < 0)
            return (int)w;
        count_tx(t, s, (size_t)w);
        p += w;
        n -= (size_t)w;
    }
    if (!n)
        return 0;
    if (s->off && (s->off >= s->out.len / 2 || s->out.len + n > s->out.max)) {
        /* compact: amortised, each byte moves at most once more than it is written */
        memmove(s->out.data, s->out.data + s->off, pending(s));
        s->out.len -= s->off;
        s->off = 0;
    }
    return keel_buf_append(&s->out, p, n); /* fits: reading stops above KEEL_PROXY_OUT_HIGH */
}

/* Reads once from a and passes the bytes to b. Returns 0, or a negative code when the session must end. */
static int side_read(struct keel_tconn *t, struct tside *a, struct tside *b)
{
    char tmp[KEEL_TCP_READ_CHUNK];
    size_t room = b->out.max - pending(b);
    if (room > sizeof(tmp))
        room = sizeof(tmp);
    if (room == 0)
        return 0;
    ssize_t n = keel_sock_read(a->fd, tmp, room);
    if (n == KEEL_EAGAIN)
        return 0;
    if (n == KEEL_ECLOSED) {
        /* EOF (or a reset, which the next write to that side reports): half-close towards b */
        a->eof = true;
        return 0;
    }
    if (n < 0) {
        t->details = a == &t->down ? "downstream_reset" : "upstream_reset";
        return (int)n;
    }
    if (a == &t->down) {
        t->rx += (size_t)n;
        keel_stats_add(t->pw->stats, KEEL_STAT_TCP_DOWNSTREAM_CX_RX_BYTES, n);
    } else {
        keel_cstats_add(t->cstats, KEEL_CSTAT_UPSTREAM_CX_RX_BYTES, n);
    }
    t->last_ms = keel_loop_now_ms(t->pw->loop);
    int rc = side_send(t, b, tmp, (size_t)n);
    if (rc < 0)
        t->details = rc == KEEL_ENOMEM ? "out_of_memory" : b == &t->down ? "downstream_reset" : "upstream_reset";
    return rc;
}

static void set_interest(struct tside *s, uint32_t want)
{
    if (s->fd < 0 || want == s->io.events)
        return;
    keel_io_modify(&s->io, want); /* 0 stops the watcher until a later call asks for something again */
}

/* After every event: half-closes, back-pressure, the end of the session, and the sockets' interest. */
static void update(struct keel_tconn *t)
{
    if (t->closed)
        return;
    struct tside *sides[2] = {&t->down, &t->up};
    for (int i = 0; i < 2 && t->state == TS_RELAY; i++) {
        struct tside *a = sides[i], *b = sides[1 - i];
        if (a->eof && !b->shut && pending(b) == 0) {
            b->shut = true;
            if (keel_sock_shutdown_write(b->fd) != 0) {
                t->details = b == &t->down ? "downstream_reset" : "upstream_reset";
                finish(t);
                return;
            }
        }
    }
    for (int i = 0; i < 2; i++) {
        struct tside *a = sides[i], *b = sides[1 - i];
        if (!a->paused && pending(b) >= KEEL_PROXY_OUT_HIGH) {
            a->paused = true;
            if (a == &t->down)
                keel_stats_add(t->pw->stats, KEEL_STAT_TCP_DOWNSTREAM_PAUSED_READING, 1);
        } else if (a->paused && pending(b) <= KEEL_TCP_OUT_LOW) {
            a->paused = false;
        }
    }
    if (t->state == TS_RELAY && t->down.eof && t->up.shut && t->up.eof && t->down.shut) {
        finish(t); /* both directions ended cleanly */
        return;
    }
    uint32_t dw = (!t->down.eof && !t->down.paused ? KEEL_IO_READ : 0) | (pending(&t->down) ? KEEL_IO_WRITE : 0);
    set_interest(&t->down, dw);
    if (t->state == TS_CONNECTING)
        set_interest(&t->up, KEEL_IO_WRITE);
    else if (t->state == TS_RELAY)
        set_interest(&t->up, (!t->up.eof && !t->up.paused ? KEEL_IO_READ : 0) | (pending(&t->up) ? KEEL_IO_WRITE : 0));
}

/* ---- timers ---------------------------------------------------------------------------------------------------- */

static void on_timer(struct keel_loop *loop, struct keel_timer *tm);

/* Re-arms the relay timer for the earlier of the idle deadline and the max duration (none: no timer). */
static void arm_relay_timer(struct keel_tconn *t)
{
    uint64_t now = keel_loop_now_ms(t->pw->loop), at = 0;
    if (t->idle_ms)
        at = t->last_ms + t->idle_ms;
    if (t->deadline_ms && (!at || t->deadline_ms < at))
        at = t->deadline_ms;
    if (!at) {
        keel_timer_stop(&t->timer);
        return;
    }
    keel_timer_start(t->pw->loop, &t->timer, at > now ? at - now : 1, on_timer, t);
}

static void on_timer(struct keel_loop *loop, struct keel_timer *tm)
{
    struct keel_tconn *t = tm->data;
    uint64_t now = keel_loop_now_ms(loop);
    switch (t->state) {
    case TS_HELLO:
        fail(t, KEEL_RF(NO_ROUTE_FOUND), "client_hello_timeout");
        return;
    case TS_RESOLVING:
        return; /* no timer while resolving: the resolver's own timeouts end the wait */
    case TS_CONNECTING:
        keel_cstats_add(t->cstats, KEEL_CSTAT_UPSTREAM_CX_CONNECT_TIMEOUT, 1);
        keel_cstats_add(t->cstats, KEEL_CSTAT_UPSTREAM_CX_CONNECT_FAIL, 1);
        t->failure = "connect_timeout";
        fail(t, KEEL_RF(UPSTREAM_CONNECTION_FAILURE), "upstream_connect_timeout");
        return;
    case TS_RELAY:
        if (t->deadline_ms && now >= t->deadline_ms) {
            fail(t, KEEL_RF(DURATION_TIMEOUT), "max_connection_duration");
            return;
        }
        if (t->idle_ms && now >= t->last_ms + t->idle_ms) {
            keel_stats_add(t->pw->stats, KEEL_STAT_TCP_IDLE_TIMEOUT, 1);
            t->details = "idle_timeout";
            finish(t);
            return;
        }
        arm_relay_timer(t); /* bytes moved since it was armed */
        return;
    }
}

/* ---- relay ----------------------------------------------------------------------------------------------------- */

static void on_side_io(struct keel_tconn *t, struct tside *a, struct tside *b, uint32_t ev)
{
    if (ev & KEEL_IO_WRITE) {
        if (side_flush(t, a) < 0) {
            t->details = a == &t->down ? "downstream_reset" : "upstream_reset";
            finish(t);
            return;
        }
    }
    if ((ev & (KEEL_IO_READ | KEEL_IO_ERROR)) && !a->eof && !a->paused) {
        if (side_read(t, a, b) < 0) {
            finish(t);
            return;
        }
    }
    update(t);
}

static void on_up_io(struct keel_loop *loop, struct keel_io *io, uint32_t ev)
{
    (void)loop;
    struct keel_tconn *t = io->data;
    if (t->state == TS_CONNECTING) {
        if (!(ev & (KEEL_IO_WRITE | KEEL_IO_ERROR)))
            return;
        int rc = keel_sock_connect_result(t->up.fd);
        if (rc == KEEL_EAGAIN)
            return;
        if (rc != 0) {
            keel_cstats_add(t->cstats, KEEL_CSTAT_UPSTREAM_CX_CONNECT_FAIL, 1);
            t->failure = keel_strerror(rc);
            fail(t, KEEL_RF(UPSTREAM_CONNECTION_FAILURE), "upstream_connect_failure");
            return;
        }
        t->state = TS_RELAY;
        struct keel_addr la;
        if (keel_sock_local_addr(t->up.fd, &la) == 0)
            keel_addr_format(&la, t->upstream_local, sizeof(t->upstream_local));
        t->last_ms = keel_loop_now_ms(t->pw->loop);
        arm_relay_timer(t);
        /* the ClientHello and whatever the client sent meanwhile */
        if (side_flush(t, &t->up) < 0) {
            t->details = "upstream_reset";
            finish(t);
            return;
        }
        update(t);
        return;
    }
    on_side_io(t, &t->up, &t->down, ev);
}

/* ---- routing --------------------------------------------------------------------------------------------------- */

static const char *strip_ns(const char *host)
{
    const char *slash = strchr(host, '/');
    return slash ? slash + 1 : host;
}

/* How well a server host matches the SNI: 0 no match, 1 `*`, 2+ a `*.` wildcard by length, exact highest. */
static size_t host_score(const char *sni, const char *host)
{
    host = strip_ns(host);
    if (strcmp(host, "*") == 0)
        return 1;
    if (!sni)
        return 0;
    if (host[0] == '*')
        return keel_host_matches(sni, host) ? 1 + strlen(host) : 0;
    return strcasecmp(sni, host) == 0 ? (size_t)KEEL_SNI_MAX_NAME + 10 : 0;
}

static bool chain_is_tls(const struct keel_listener_chain *c)
{
    return c->has_tls || c->proto == KEEL_PROTO_TLS || c->proto == KEEL_PROTO_HTTPS;
}

/* The filter chain for a connection: best SNI match among TLS chains, else the first plain TCP chain. */
static const struct keel_listener_chain *pick_chain(const struct keel_listener *l, bool tls, const char *sni)
{
    const struct keel_listener_chain *best = NULL, *plain = NULL;
    size_t best_score = 0;
    for (size_t i = 0; i < l->n_chains; i++) {
        const struct keel_listener_chain *c = &l->chains[i];
        if (!c->tcp)
            continue;
        if (!chain_is_tls(c)) {
            if (!plain)
                plain = c;
            continue;
        }
        if (!tls)
            continue;
        for (size_t h = 0; h < c->n_hosts; h++) {
            size_t s = host_score(sni, c->hosts[h]);
            if (s > best_score) {
                best_score = s;
                best = c;
            }
        }
    }
    return best ? best : plain;
}

static bool listener_wants_hello(const struct keel_listener *l)
{
    for (size_t i = 0; i < l->n_chains; i++)
        if (l->chains[i].tcp && chain_is_tls(&l->chains[i]))
            return true;
    return false;
}

/* A destination found by the SNI: a DYNAMIC_DNS or pass-through cluster of a TLS service port (the client speaks
 * first there, so waiting for its ClientHello never stalls a server-first protocol). */
static bool dest_wants_sni(const struct keel_route_dest *d)
{
    const struct keel_cluster *c = d->cluster;
    if (!c || !c->service_port || (c->type != KEEL_CLUSTER_DYNAMIC_DNS && c->type != KEEL_CLUSTER_ORIGINAL_DST))
        return false;
    return c->service_port->proto == KEEL_PROTO_TLS || c->service_port->proto == KEEL_PROTO_HTTPS;
}

static bool table_wants_hello(const struct keel_tcp_table *t)
{
    for (size_t i = 0; t && i < t->n_entries; i++)
        for (size_t r = 0; r < t->entries[i].n_routes; r++) {
            const struct keel_l4_route *rt = &t->entries[i].routes[r];
            for (size_t c = 0; c < rt->n_conds; c++)
                if (rt->conds[c].n_sni_hosts)
                    return true;
            for (size_t d = 0; d < rt->n_dests; d++)
                if (dest_wants_sni(&rt->dests[d]))
                    return true;
        }
    return false;
}

bool keel_tcp_listener_is_l4(const struct keel_listener *l)
{
    if (!l || !l->n_chains)
        return false;
    for (size_t i = 0; i < l->n_chains; i++)
        if (!l->chains[i].tcp || l->chains[i].routes)
            return false;
    return true;
}

/* AUTO_PASSTHROUGH: SNI "outbound_.<port>_.<subset>_.<host>" names the cluster "outbound|<port>|<subset>|<host>". */
static const struct keel_cluster *auto_passthrough_cluster(struct keel_tconn *t, char *name, size_t cap)
{
    const char *s = t->sni;
    if (strncmp(s, "outbound_.", 10) != 0)
        return NULL;
    const char *port = s + 10, *e1 = strstr(port, "_.");
    if (!e1)
        return NULL;
    const char *subset = e1 + 2, *e2 = strstr(subset, "_.");
    if (!e2 || e1 == port || e2[2] == '\0')
        return NULL;
    int n = snprintf(name, cap, "outbound|%.*s|%.*s|%s", (int)(e1 - port), port, (int)(e2 - subset), subset, e2 + 2);
    if (n < 0 || (size_t)n >= cap)
        return NULL;
    return keel_snapshot_cluster(t->snap, name);
}

/* The sidecar's TCP table for this port; a lone service on the port takes connections to any address (no
 * iptables: the app dials the outbound IP, not the service VIP). */
static const struct keel_l4_route *sidecar_route(struct keel_tconn *t, const char *sni)
{
    const struct keel_tcp_table *tab = keel_snapshot_tcp_table(t->snap, t->port);
    if (!tab)
        return NULL;
    const struct keel_l4_route *r = keel_tcp_route_match(tab, t->local_ip, sni, NULL);
    if (r || tab->n_entries != 1)
        return r;
    struct keel_tcp_entry one = tab->entries[0];
    one.n_addresses = 0;
    struct keel_tcp_table only = *tab;
    only.entries = &one;
    only.n_entries = 1;
    return keel_tcp_route_match(&only, t->local_ip, sni, NULL);
}

/* Takes one of the cluster's connections (maxConnections; the count is shared with the HTTP pools of every worker,
 * outlier.c), held until finish(). false when the cluster is at its limit. A cluster without shared state (none in
 * the current generation) has nothing to count in. */
static bool take_connection(struct keel_tconn *t)
{
    const struct keel_upcluster *u = keel_upset_cluster(t->pw->upset, t->cluster);
    if (!u || !u->cs)
        return true;
    uint32_t max = t->cluster->limits.max_connections;
    uint32_t was = atomic_fetch_add(&u->cs->cx, 1);
    if (max != KEEL_CLUSTERS_UNLIMITED && was >= max) {
        atomic_fetch_sub(&u->cs->cx, 1);
        return false;
    }
    t->cx_cs = keel_cluster_state_ref(u->cs);
    return true;
}

/* take_connection(), or the session closed with UO. */
static bool take_or_overflow(struct keel_tconn *t)
{
    if (take_connection(t))
        return true;
    /* Envoy's tcp_proxy checks the cluster's connections before choosing a host: closed, never queued */
    keel_cstats_add(t->cstats, KEEL_CSTAT_UPSTREAM_CX_OVERFLOW, 1);
    fail(t, KEEL_RF(UPSTREAM_OVERFLOW), "upstream_cx_overflow");
    return false;
}

/* Connects to t->ep (chosen, connection slot taken). */
static void connect_endpoint(struct keel_tconn *t)
{
    struct keel_pworker *pw = t->pw;
    const struct keel_cluster *c = t->cluster;
    snprintf(t->upstream_host, sizeof(t->upstream_host), "%s", t->ep->hostport);
    struct keel_addr addr;
    if (keel_addr_parse(t->upstream_host, &addr) != 0) {
        /* a DNS name or a unix socket: not in this build yet */
        keel_cstats_add(t->cstats, KEEL_CSTAT_UPSTREAM_CX_CONNECT_FAIL, 1);
        t->failure = "endpoint_address_not_supported";
        fail(t, KEEL_RF(UPSTREAM_CONNECTION_FAILURE), "upstream_connect_failure");
        return;
    }
    int fd = -1;
    int rc = keel_sock_connect(&addr, &fd);
    if (rc != 0 && rc != KEEL_EAGAIN) {
        keel_cstats_add(t->cstats, KEEL_CSTAT_UPSTREAM_CX_CONNECT_FAIL, 1);
        t->failure = keel_strerror(rc);
        fail(t, KEEL_RF(UPSTREAM_CONNECTION_FAILURE), "upstream_connect_failure");
        return;
    }
    t->up.fd = fd;
    keel_sock_set_nodelay(fd, true);
    const struct keel_cluster_limits *lim = &c->limits;
    if (lim->tcp_keepalive)
        keel_sock_set_keepalive(fd, (int)(lim->keepalive_time / 1000000000LL),
                                (int)(lim->keepalive_interval / 1000000000LL), (int)lim->keepalive_probes);
    keel_io_init(&t->up.io, fd, on_up_io, t);
    if (keel_io_start(pw->loop, &t->up.io, KEEL_IO_WRITE) != 0) {
        side_close(&t->up);
        t->failure = "out_of_memory";
        fail(t, KEEL_RF(UPSTREAM_CONNECTION_FAILURE), "upstream_connect_failure");
        return;
    }
    keel_cstats_add(t->cstats, KEEL_CSTAT_UPSTREAM_CX_TOTAL, 1);
    keel_cstats_add(t->cstats, KEEL_CSTAT_UPSTREAM_CX_ACTIVE, 1);
    keel_upstream_count_active(pw, t->cluster, t->ep, 1);
    t->up_counted = true;
    /* idle: DestinationRule connectionPool.tcp.idleTimeout (0s disables), else Envoy's 1 h */
    if (!lim->tcp_idle_set)
        t->idle_ms = KEEL_PROXY_IDLE_MS;
    else if (lim->tcp_idle_timeout <= 0)
        t->idle_ms = 0;
    else
        t->idle_ms = lim->tcp_idle_timeout < 1000000 ? 1 : (uint64_t)(lim->tcp_idle_timeout / 1000000);
    if (lim->max_connection_duration > 0)
        t->deadline_ms = t->start_ms + (uint64_t)(lim->max_connection_duration / 1000000) + 1;
    t->state = TS_CONNECTING;
    uint64_t ms = lim->connect_timeout > 0 ? (uint64_t)(lim->connect_timeout / 1000000) : KEEL_TCP_CONNECT_TIMEOUT_MS;
    keel_timer_start(pw->loop, &t->timer, ms ? ms : 1, on_timer, t);
    if (rc == 0) {
        on_up_io(pw->loop, &t->up.io, KEEL_IO_WRITE); /* connected at once (loopback) */
        return;
    }
    update(t);
}

/* ---- destinations of clusters without endpoints (ORIGINAL_DST, DYNAMIC_DNS) ------------------------------------ */

/* The address a redirected client dialled, as text; "::ffff:a.b.c.d" (a dual-stack socket) as "a.b.c.d". */
static void addr_ip(const struct keel_addr *a, char *out, size_t n);

static void plain_ip(const struct keel_addr *a, char *out, size_t n)
{
    addr_ip(a, out, n);
    if (strncmp(out, "::ffff:", 7) == 0 && strchr(out, '.'))
        memmove(out, out + 7, strlen(out + 7) + 1);
}

/* The session's endpoint is ip:port; takes the cluster's connection slot and connects. */
static void connect_dynamic(struct keel_tconn *t, const char *ip, int family, uint32_t port)
{
    snprintf(t->dyn_ip, sizeof(t->dyn_ip), "%s", ip);
    snprintf(t->dyn_hostport, sizeof(t->dyn_hostport), family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
    memset(&t->dyn_ep, 0, sizeof(t->dyn_ep));
    t->dyn_ep.address = t->dyn_ip;
    t->dyn_ep.hostport = t->dyn_hostport;
    t->dyn_ep.port = port;
    t->dyn_ep.weight = 1;
    t->dyn_ep.hostname = t->dst_name[0] ? t->dst_name : NULL;
    if (keel_listeners_own(t->pw, t->dyn_hostport)) {
        /* to this proxy's own listener: a loop (Istio's virtualOutbound-blackhole) */
        fail(t, 0, "loop_to_own_listener");
        return;
    }
    if (!take_or_overflow(t))
        return;
    t->ep = &t->dyn_ep;
    connect_endpoint(t);
}

static void resolve_destination(struct keel_tconn *t);

static void on_resolved(void *data)
{
    resolve_destination(data); /* the cache has the answer now */
}

/* Looks up t->dst_name (dfp.c, the worker's cache) and connects to it on t->dst_port, now or once the answer is
 * in. */
static void resolve_destination(struct keel_tconn *t)
{
    struct keel_dfp_addr a;
    t->dfp_wait.done = on_resolved;
    t->dfp_wait.data = t;
    switch (keel_dfp_resolve(t->pw, t->dst_name, &t->dfp_wait, &a)) {
    case KEEL_DFP_RES_READY:
        connect_dynamic(t, a.ip, a.family, t->dst_port);
        return;
    case KEEL_DFP_RES_WAIT:
        t->state = TS_RESOLVING;
        update(t); /* the client's bytes queue up meanwhile */
        return;
    case KEEL_DFP_RES_OVERFLOW:
        fail(t, 0, "dns_cache_overflow");
        return;
    case KEEL_DFP_RES_FAILED:
    default:
        snprintf(t->dns_error, sizeof(t->dns_error), "%s", a.error);
        t->failure = t->dns_error[0] ? t->dns_error : NULL;
        fail(t, KEEL_RF(DNS_RESOLUTION_FAILED), "dns_resolution_failure");
        return;
    }
}

/* The destination of a cluster without endpoints, as Envoy finds it for Istio:
 *   ORIGINAL_DST: the original destination of a redirected (or CONNECTed) connection; else the SNI of a TLS
 *   passthrough session, resolved; else the service's own host (what the app would have dialled), resolved;
 *   DYNAMIC_DNS: the SNI, resolved (Envoy's sni_dynamic_forward_proxy).
 * Port: the original destination's; else the service port's targetPort, else its number, else (PassthroughCluster)
 * the listener's port. Nothing to go by: closed, UH. */
static void dynamic_destination(struct keel_tconn *t)
{
    const struct keel_cluster *c = t->cluster;
    if (c->type == KEEL_CLUSTER_ORIGINAL_DST && t->has_orig_dst) {
        char ip[INET6_ADDRSTRLEN];
        plain_ip(&t->orig_dst, ip, sizeof(ip));
        connect_dynamic(t, ip, strchr(ip, ':') ? AF_INET6 : AF_INET, keel_addr_port(&t->orig_dst));
        return;
    }
    uint32_t port = c->service_port && c->service_port->target_port ? c->service_port->target_port : c->port;
    if (!port)
        port = t->port;
    const char *name = NULL;
    if (t->sni[0])
        name = t->sni;
    else if (c->type == KEEL_CLUSTER_ORIGINAL_DST && c->service && c->host && c->host[0] && c->host[0] != '*')
        name = c->host;
    if (!name) {
        fail(t, KEEL_RF(NO_HEALTHY_UPSTREAM),
             c->type == KEEL_CLUSTER_DYNAMIC_DNS ? "dynamic_dns_without_sni" : "no_original_destination");
        return;
    }
    snprintf(t->dst_name, sizeof(t->dst_name), "%s", name);
    t->dst_port = port;
    resolve_destination(t);
}

static void connect_upstream(struct keel_tconn *t)
{
    struct keel_pworker *pw = t->pw;
    const struct keel_cluster *c = t->cluster;
    t->cstats = keel_stats_cluster(pw->stats, c->name);
    if (c->type == KEEL_CLUSTER_ORIGINAL_DST || c->type == KEEL_CLUSTER_DYNAMIC_DNS) {
        dynamic_destination(t);
        return;
    }
    if (!take_or_overflow(t))
        return;
    t->ep = keel_upstream_pick(pw, c, NULL);
    if (!t->ep) {
        fail(t, KEEL_RF(NO_HEALTHY_UPSTREAM), "no_healthy_upstream");
        return;
    }
    connect_endpoint(t);
}

/* Chooses chain, route, destination and cluster; then connects. hello: the sni.c result (1 when none was read). */
static void route(struct keel_tconn *t, int hello)
{
    bool tls = hello == 0 || hello == KEEL_ENOTFOUND;
    const char *sni = hello == 0 ? t->sni : NULL;
    if (hello == KEEL_ETOOBIG || (hello == KEEL_EPROTO && t->up.out.len && t->up.out.data[0] == 0x16)) {
        /* a TLS handshake we cannot read: no filter chain can be chosen */
        fail(t, KEEL_RF(NO_ROUTE_FOUND), hello == KEEL_ETOOBIG ? "client_hello_too_large" : "client_hello_invalid");
        return;
    }
    const struct keel_l4_route *r = NULL;
    const struct keel_cluster *direct = NULL;
    char auto_name[512];
    if (t->role == KEEL_PL_OUTBOUND_TCP) {
        r = sidecar_route(t, sni);
    } else if (t->role == KEEL_PL_INBOUND) {
        const struct keel_inbound *in = keel_snapshot_inbound(t->snap, t->port);
        r = in && in->tcp ? keel_tcp_route_match(in->tcp, t->local_ip, NULL, NULL) : NULL;
    } else {
        const struct keel_listener *l = keel_snapshot_listener(t->snap, t->port);
        const struct keel_listener_chain *c = l ? pick_chain(l, tls, sni) : NULL;
        if (!c) {
            fail(t, KEEL_RF(NO_ROUTE_FOUND), "filter_chain_not_found");
            return;
        }
        if (c->has_tls && c->tls.mode == KEEL_SERVER_TLS_MODE_AUTO_PASSTHROUGH) {
            direct = sni ? auto_passthrough_cluster(t, auto_name, sizeof(auto_name)) : NULL;
            if (!direct) {
                fail(t, KEEL_RF(NO_ROUTE_FOUND), "filter_chain_not_found");
                return;
            }
        } else if (chain_is_tls(c) && !(c->has_tls && c->tls.mode == KEEL_SERVER_TLS_MODE_PASSTHROUGH)) {
            /* TLS terminated before tcp routes: not in this build yet */
            fail(t, KEEL_RF(NO_ROUTE_FOUND), "tls_termination_not_supported");
            return;
        } else {
            r = keel_tcp_route_match(c->tcp, t->local_ip, sni, NULL);
        }
    }
    if (direct) {
        t->cluster = direct;
        t->cluster_name = direct->name;
    } else {
        const struct keel_route_dest *d = r ? keel_tcp_route_pick(r, keel_pworker_random(t->pw)) : NULL;
        if (!d) {
            fail(t, KEEL_RF(NO_ROUTE_FOUND), "route_not_found");
            return;
        }
        t->cluster_name = d->cluster_name;
        t->cluster = d->cluster;
        if (!t->cluster) {
            fail(t, KEEL_RF(NO_CLUSTER_FOUND), "cluster_not_found");
            return;
        }
    }
    connect_upstream(t);
}

/* ---- downstream ------------------------------------------------------------------------------------------------ */

/* True while the last TLS record is still incomplete: parsing waits for it, so a ClientHello arriving in small
 * pieces costs O(n) in all rather than a full parse per read. Non-TLS bytes go to the parser at once. */
static bool record_pending(struct keel_tconn *t)
{
    const uint8_t *p = (const uint8_t *)t->up.out.data;
    size_t n = t->up.out.len;
    if (n == 0 || p[0] != 0x16)
        return false;
    while (t->hello_scan + 5 <= n) {
        size_t len = (size_t)p[t->hello_scan + 3] << 8 | p[t->hello_scan + 4];
        if (p[t->hello_scan] != 0x16 || len == 0 || len > KEEL_SNI_MAX_INPUT)
            return false; /* the parser refuses it now */
        if (t->hello_scan + 5 + len > n)
            return true;
        t->hello_scan += 5 + len;
    }
    return t->hello_scan < n; /* part of a record header */
}

/* Parses what arrived of the ClientHello (in the upstream's output) and routes once it is complete. */
static void parse_hello(struct keel_tconn *t)
{
    if (t->up.out.len < KEEL_SNI_MAX_INPUT && record_pending(t))
        return;
    size_t len = 0;
    int rc = keel_sni_parse((const uint8_t *)t->up.out.data, t->up.out.len, t->sni, &len);
    if (rc == KEEL_EAGAIN && t->up.out.len < KEEL_SNI_MAX_INPUT)
        return;
    if (rc == KEEL_EAGAIN)
        rc = KEEL_ETOOBIG;
    keel_timer_stop(&t->timer);
    if (rc != 0)
        t->sni[0] = '\0';
    t->state = TS_CONNECTING; /* no more hello reading, whatever route() decides */
    route(t, rc);
}

/* Reads the ClientHello into the upstream's output (it is replayed from there). */
static void read_hello(struct keel_tconn *t)
{
    struct tside *s = &t->down;
    char tmp[KEEL_SNI_MAX_INPUT];
    size_t room = KEEL_SNI_MAX_INPUT - t->up.out.len;
    ssize_t n = keel_sock_read(s->fd, tmp, room);
    if (n == KEEL_EAGAIN)
        return;
    if (n < 0) {
        t->flags |= KEEL_RF(DOWNSTREAM_CONNECTION_TERMINATION);
        fail(t, KEEL_RF(NO_ROUTE_FOUND), "downstream_closed_before_client_hello");
        return;
    }
    t->rx += (size_t)n;
    keel_stats_add(t->pw->stats, KEEL_STAT_TCP_DOWNSTREAM_CX_RX_BYTES, n);
    if (keel_buf_append(&t->up.out, tmp, (size_t)n) != 0) {
        fail(t, KEEL_RF(NO_ROUTE_FOUND), "out_of_memory");
        return;
    }
    parse_hello(t);
}

static void on_down_io(struct keel_loop *loop, struct keel_io *io, uint32_t ev)
{
    (void)loop;
    struct keel_tconn *t = io->data;
    if (t->state == TS_HELLO) {
        if (ev & (KEEL_IO_READ | KEEL_IO_ERROR))
            read_hello(t);
        return;
    }
    on_side_io(t, &t->down, &t->up, ev);
}

static void addr_ip(const struct keel_addr *a, char *out, size_t n)
{
    out[0] = '\0';
    if (a->u.sa.sa_family == AF_INET)
        inet_ntop(AF_INET, &a->u.v4.sin_addr, out, (socklen_t)n);
    else if (a->u.sa.sa_family == AF_INET6)
        inet_ntop(AF_INET6, &a->u.v6.sin6_addr, out, (socklen_t)n);
}

/* A new session on an accepted (or handed over) client socket; NULL when out of memory (fd closed). */
static struct keel_tconn *session_new(struct keel_pworker *pw, int fd, enum keel_listener_role role, uint32_t port)
{
    struct keel_tconn *t = calloc(1, sizeof(*t));
    if (!t) {
        close(fd);
        return NULL;
    }
    t->pw = pw;
    t->role = role;
    t->port = port;
    t->down.fd = fd;
    t->up.fd = -1;
    keel_buf_init(&t->down.out, KEEL_TCP_OUT_MAX);
    keel_buf_init(&t->up.out, KEEL_TCP_OUT_MAX);
    keel_sock_set_nodelay(fd, true);
    keel_io_init(&t->down.io, fd, on_down_io, t);
    keel_io_init(&t->up.io, -1, on_up_io, t);
    keel_timer_init(&t->timer);
    t->timer.data = t;
    if (keel_io_start(pw->loop, &t->down.io, KEEL_IO_READ) != 0) {
        close(fd);
        keel_buf_free(&t->down.out);
        keel_buf_free(&t->up.out);
        free(t);
        return NULL;
    }
    t->next = pw->tcp;
    if (pw->tcp)
        pw->tcp->prev = t;
    pw->tcp = t;
    t->snap = keel_snapshot_ref(pw->snap);
    t->start_ms = t->last_ms = keel_loop_now_ms(pw->loop);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    t->start_unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    pw->conns++;
    keel_stats_add(pw->stats, KEEL_STAT_TCP_DOWNSTREAM_CX_TOTAL, 1);
    keel_stats_add(pw->stats, KEEL_STAT_TCP_DOWNSTREAM_CX_ACTIVE, 1);
    return t;
}

/* Routes at once, or waits for the ClientHello when the port's chains or routes choose by SNI. */
static void session_start(struct keel_tconn *t)
{
    if (!t->snap) {
        fail(t, KEEL_RF(NO_ROUTE_FOUND), "no_config");
        return;
    }
    bool hello;
    if (t->role == KEEL_PL_INBOUND) {
        hello = false; /* one route per inbound port: nothing to choose by SNI */
    } else if (t->role == KEEL_PL_OUTBOUND_TCP) {
        hello = table_wants_hello(keel_snapshot_tcp_table(t->snap, t->port));
    } else {
        const struct keel_listener *sl = keel_snapshot_listener(t->snap, t->port);
        hello = sl && listener_wants_hello(sl);
    }
    if (!hello) {
        route(t, 1);
        return;
    }
    t->state = TS_HELLO;
    keel_timer_start(t->pw->loop, &t->timer, KEEL_TCP_HELLO_TIMEOUT_MS, on_timer, t);
    if (t->up.out.len)
        parse_hello(t); /* handed over with the first bytes already read */
}

void keel_tcp_accept(struct keel_plistener *l, int fd, const struct keel_addr *peer)
{
    struct keel_tconn *t = session_new(l->pw, fd, l->role, l->port);
    if (!t)
        return;
    keel_addr_format(peer, t->peer, sizeof(t->peer));
    struct keel_addr local, dst;
    bool have_local = keel_sock_local_addr(fd, &local) == 0;
    if (have_local)
        keel_addr_format(&local, t->local, sizeof(t->local));
    if (keel_sock_original_dst(fd, &dst) == 0) {
        addr_ip(&dst, t->local_ip, sizeof(t->local_ip));
        /* redirected when conntrack's destination is not where we accepted it (without NAT it is the same) */
        char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN] = "", c[INET6_ADDRSTRLEN];
        plain_ip(&dst, a, sizeof(a));
        if (have_local)
            plain_ip(&local, b, sizeof(b));
        plain_ip(&l->addr, c, sizeof(c));
        uint16_t dp = keel_addr_port(&dst);
        bool is_local = have_local && strcmp(a, b) == 0 && dp == keel_addr_port(&local);
        bool is_listener = strcmp(a, c) == 0 && dp == keel_addr_port(&l->addr);
        if (!is_local && !is_listener && dp) {
            t->orig_dst = dst;
            t->has_orig_dst = true;
        }
    } else if (have_local) {
        addr_ip(&local, t->local_ip, sizeof(t->local_ip));
    }
    session_start(t);
}

void keel_tcp_takeover(struct keel_pworker *pw, int fd, const struct keel_tcp_handover *h)
{
    struct keel_tconn *t = session_new(pw, fd, KEEL_PL_OUTBOUND_TCP, h->port);
    if (!t)
        return;
    snprintf(t->peer, sizeof(t->peer), "%s", h->peer);
    snprintf(t->local, sizeof(t->local), "%s", h->local);
    snprintf(t->local_ip, sizeof(t->local_ip), "%s", h->dst_ip ? h->dst_ip : "");
    if (t->local_ip[0]) {
        /* CONNECT to an IP: that is where the client wants to go (the original destination) */
        char spec[KEEL_ADDR_MAX_INPUT];
        snprintf(spec, sizeof(spec), strchr(t->local_ip, ':') ? "[%s]:%u" : "%s:%u", t->local_ip, h->port);
        t->has_orig_dst = keel_addr_parse(spec, &t->orig_dst) == 0;
    }
    if ((h->reply_len && side_send(t, &t->down, h->reply, h->reply_len) < 0) ||
        (h->n && keel_buf_append(&t->up.out, h->initial, h->n) != 0)) {
        fail(t, KEEL_RF(NO_ROUTE_FOUND), "out_of_memory");
        return;
    }
    t->rx += h->n;
    session_start(t);
}

void keel_tcp_close_all(struct keel_pworker *pw)
{
    while (pw->tcp) {
        struct keel_tconn *t = pw->tcp;
        t->details = "proxy_shutdown";
        finish(t); /* unlinks it */
    }
}
