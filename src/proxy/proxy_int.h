/*
 * proxy_int.h - what the proxy's own files share (not part of the API).
 *
 *   runtime.c   main thread: options, config load/reload (inotify), snapshot
 *               publication, admin callbacks, signals, drain
 *   listener.c  per-worker listeners, reconciled with each new snapshot
 *   http1.c     downstream HTTP/1.1 connections (stream.h: the codec interface)
 *   http2.c     downstream HTTP/2 connections (h2c prior knowledge, ALPN h2), nghttp2
 *   exchange.c  one request exchange whatever the client's protocol: route, upstream, response
 *   upstream_tls.c TLS origination (DestinationRule tls SIMPLE/MUTUAL): client contexts per worker
 *   upstream_h2.c  HTTP/2 to upstreams (gRPC, http2 ports, h2UpgradePolicy UPGRADE), nghttp2
 *   upstream.c  upstream connections, per-worker pools, endpoint choice
 *   tcp.c       L4 sessions: TCP proxying and TLS passthrough by SNI (sni.c)
 *
 * Threads: a struct keel_pworker and everything hanging off it belong to one
 * worker thread; only the runtime's published snapshot pointer and the
 * stats shards are read across threads (see stats.h).
 */
#ifndef KEEL_PROXY_PROXY_INT_H
#define KEEL_PROXY_PROXY_INT_H

#include "base/buf.h"
#include "base/map.h"
#include "http/h1.h"
#include "http/message.h"
#include "mesh/snapshot.h"
#include "net/loop.h"
#include "net/sock.h"
#include "net/tls.h"
#include "proxy/accesslog.h"
#include "proxy/proxy.h"
#include "proxy/stats.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct keel_worker;
struct keel_runtime;
struct keel_upconn;
struct keel_stream;
struct keel_tconn;
struct keel_downstream;
struct keel_uph2;

/* Buffer limits per connection: reads stop (back-pressure) while the peer's
 * output holds more than KEEL_PROXY_OUT_HIGH bytes. */
#define KEEL_PROXY_IN_MAX (KEEL_H1_MAX_HEAD + 16384)
#define KEEL_PROXY_OUT_MAX (4u << 20)
#define KEEL_PROXY_OUT_HIGH (256u << 10)
#define KEEL_PROXY_READ_CHUNK 16384
#define KEEL_PROXY_IDLE_MS (3600u * 1000u)  /* downstream idle, Envoy's 1 h */
#define KEEL_PROXY_UP_IDLE_MS (55u * 1000u) /* pooled upstream connection idle */
#define KEEL_PROXY_REPLAY_MAX (64u << 10)   /* request bytes kept to replay on a stale pooled connection */

enum keel_listener_role {
    KEEL_PL_GATEWAY,      /* a Gateway server port: route tables from its chains */
    KEEL_PL_OUTBOUND,     /* sidecar outbound: route by Host/:authority and port */
    KEEL_PL_INBOUND,      /* sidecar inbound: to the workload's own ports; port 0 = the --inbound address itself,
                             where HTTP requests pick the inbound port by the authority's port (like outbound) */
    KEEL_PL_OUTBOUND_TCP, /* sidecar outbound, one per TCP-only service port, on the outbound address's IP (tcp.c) */
};

struct keel_plistener {
    struct keel_pworker *pw;
    struct keel_plistener *next;
    int fd;
    struct keel_io io;
    struct keel_timer pause; /* accept paused after EMFILE */
    enum keel_listener_role role;
    uint32_t port; /* the snapshot listener's port (gateway), or the listening port */
    struct keel_addr addr;
    char name[96];            /* "0.0.0.0_8080" */
    bool mark;                /* reconcile: still wanted */
    struct keel_tls_ctx *tls; /* terminating TLS (Gateway SIMPLE servers), or NULL */
    int tls_chain[16];        /* certificate index -> chain index of the snapshot listener */
    uint64_t tls_version;     /* snapshot version the context was built from */
};

/* Idle upstream connections to one endpoint ("ip:port"), per kind: [0] HTTP/1.1, [1] HTTP/2, [2] and [3] the
 * same over TLS (a TLS connection is reused only for the same client context). */
struct keel_upool {
    char key[KEEL_ADDR_STRLEN];
    struct keel_upconn *idle[4]; /* LIFO */
    size_t n_idle[4];
    size_t active; /* requests in flight to this endpoint from this worker (least-request LB) */
};

struct keel_pworker {
    struct keel_worker *w;
    struct keel_loop *loop;
    struct keel_runtime *rt;
    unsigned index;
    struct keel_snapshot *snap;     /* current (one reference held) */
    struct keel_logcfg *log;        /* current access-log sink (one reference held) */
    struct keel_secretset *secrets; /* current TLS secrets (one reference held) */
    struct keel_stats_shard *stats;
    struct keel_plistener *listeners;
    struct keel_map pools;               /* endpoint key -> struct keel_upool * */
    struct keel_map rr;                  /* cluster name -> round-robin cursor (uintptr_t) */
    struct keel_map tls_clients; /* "cluster|h2" -> upstream TLS context (upstream_tls.c) */
    uint64_t rng;                        /* xorshift state */
    size_t conns;                        /* open downstream connections */
    bool draining;                       /* listeners closed; keep-alive connections close after their request */
    struct keel_buf logline;             /* access-log rendering */
    struct keel_tconn *tcp;              /* open L4 sessions (tcp.c), closed by keel_tcp_close_all() */
    struct keel_downstream *downstreams; /* open HTTP client connections (http1.c, http2.c) */
};

/* ---- runtime.c (read from workers) ---------------------------------------------------------------------------- */

/* The access-log sink of one config generation, published to workers with the
 * snapshot and reference counted like it (the last holder closes the file). */
struct keel_logcfg {
    atomic_uint refs;
    struct keel_accesslog_format *format; /* NULL: access logging off */
    int fd;                               /* -1 when off */
};

void keel_logcfg_unref(struct keel_logcfg *c);

/* TLS Secrets a gateway may name in credentialName (kubernetes.io/tls Secrets of the proxy's namespace), decoded;
 * published with the snapshot and reference counted like it. */
struct keel_secret {
    const char *name;
    const char *cert;
    size_t cert_len;
    const char *key;
    size_t key_len;
};

struct keel_secretset {
    atomic_uint refs;
    struct keel_arena *arena;
    struct keel_secret *items;
    size_t n;
};

void keel_secretset_unref(struct keel_secretset *s);
const struct keel_secret *keel_secretset_find(const struct keel_secretset *s, const char *name);
const struct keel_proxy_options *keel_runtime_options(const struct keel_runtime *rt);

/* ---- listener.c ---------------------------------------------------------------------------------------------- */

/* Opens/closes this worker's listeners to match pw->snap (workers' thread). */
void keel_listeners_reconcile(struct keel_pworker *pw);
/* Closes every listener (drain or shutdown). */
void keel_listeners_close(struct keel_pworker *pw);
/* A whole (small: certificates, keys) file in a's memory, NUL-terminated; NULL when unreadable or over 4 MiB. */
char *keel_read_file(struct keel_arena *a, const char *path, size_t *len);

/* ---- http1.c ------------------------------------------------------------------------------------------------- */

/* Takes an accepted downstream connection (TLS first when the listener terminates it). */
void keel_http1_accept(struct keel_plistener *l, int fd, const struct keel_addr *peer);

/* ---- http2.c ------------------------------------------------------------------------------------------------- */

/* Takes over a client connection that speaks HTTP/2: ds is copied (listener facts, peer), fd and tls become
 * the HTTP/2 connection's, initial[0..n) are bytes already read (the preface first, for h2c). */
void keel_http2_accept(const struct keel_downstream *ds, int fd, struct keel_tls_conn *tls, const char *initial,
                       size_t n);

/* ---- exchange.c ---------------------------------------------------------------------------------------------- */

/* Every open HTTP client connection of the worker: now=false ends idle ones and asks busy ones to end after
 * their requests (drain); now=true closes them all (shutdown). */
void keel_downstreams_shutdown(struct keel_pworker *pw, bool now);

/* Called by upstream.c as the upstream connection progresses. */
void keel_stream_upstream_ready(struct keel_stream *st); /* connected (or reused): send the request */
void keel_stream_upstream_failed(struct keel_stream *st, int err, bool connect_phase, bool reused);
void keel_stream_upstream_readable(struct keel_stream *st); /* HTTP/1.1: bytes in uc->in */
/* HTTP/2 upstream (upstream_h2.c): the final head is in st->resp (fields in the stream's arena), DATA payload,
 * the end of the response (st->trailers may hold trailers). */
void keel_stream_upstream_head(struct keel_stream *st, bool end_stream);
void keel_stream_upstream_data(struct keel_stream *st, const char *data, size_t len);
void keel_stream_upstream_end(struct keel_stream *st);
void keel_stream_upstream_writable(struct keel_stream *st); /* uc->out drained below the high mark */

/* ---- upstream.c ---------------------------------------------------------------------------------------------- */

struct keel_upconn {
    struct keel_pworker *pw;
    int fd;
    struct keel_io io;
    struct keel_timer timer; /* connect timeout, then pool idle timeout */
    struct keel_defer free_d;
    char key[KEEL_ADDR_STRLEN];
    char local[KEEL_ADDR_STRLEN];
    struct keel_buf in;
    struct keel_buf out;
    struct keel_stream *st; /* NULL while pooled */
    struct keel_cluster_stats *cstats;
    struct keel_upconn *next_idle;
    struct keel_tls_ctx *tls_ctx; /* TLS origination: the context asked for (owned by the worker's cache) */
    const char *sni;              /* and the SNI to send (owned by the cache entry) */
    struct keel_tls_conn *tls;    /* the TLS connection once TCP is up, or NULL */
    struct keel_uph2 *h2;         /* HTTP/2 session (upstream_h2.c), or NULL: HTTP/1.1 */
    bool connected;
    bool reused; /* came from the pool for the current request */
    bool closed;
};

/* Chooses an endpoint of c for a request (LB policy of the cluster), skipping `avoid` when another exists.
 * NULL when the cluster has no endpoints. */
const struct keel_endpoint *keel_upstream_pick(struct keel_pworker *pw, const struct keel_cluster *c,
                                               const struct keel_endpoint *avoid);
/* Gets a pooled connection to ep or starts connecting one; on success the stream is attached and
 * keel_stream_upstream_ready() (or _failed) follows from the loop. Returns 0 or a negative code
 * (bad address, no fds) with nothing attached. */
int keel_upstream_attach(struct keel_pworker *pw, struct keel_stream *st, const struct keel_cluster *c,
                         const struct keel_endpoint *ep, int64_t connect_timeout_ns, bool h2, struct keel_upconn **out);
/* Request bytes queued on uc and not yet written (back-pressure on the client). */
size_t keel_upstream_pending(const struct keel_upconn *uc);
/* The exchange on uc failed after the connection was up (reset, protocol error): closes uc and tells the stream
 * (keel_stream_upstream_failed), which may retry elsewhere. */
void keel_upstream_fail(struct keel_upconn *uc, int err);
/* Sends uc->out; re-arms write interest while anything is left. Returns 0 or a negative code (peer gone). */
int keel_upstream_flush(struct keel_upconn *uc);
/* Stops or resumes reading from the upstream (back-pressure). */
void keel_upstream_pause(struct keel_upconn *uc, bool pause);
/* The exchange is over: keep_alive returns the connection to the pool, else it is closed. */
void keel_upstream_release(struct keel_upconn *uc, bool keep_alive);
/* Closes every pooled connection of the worker. */
void keel_upstream_pools_close(struct keel_pworker *pw);
/* Frees the worker's pools and load-balancer state (after its loop stopped). */
void keel_upstream_state_free(struct keel_pworker *pw);
/* Counts a connection to ep that is not from the pool (tcp.c) in the endpoint's in-flight count, which
 * LEAST_REQUEST compares: +1 when it opens, -1 when it closes. */
void keel_upstream_count_active(struct keel_pworker *pw, const struct keel_endpoint *ep, int delta);

/* ---- upstream_tls.c ------------------------------------------------------------------------------------------- */

/* The client TLS context for attempts to cluster c (NULL: plain text, or a context that could not be built,
 * logged), and the SNI to send. Built on first use per snapshot version, then cached on the worker. */
struct keel_tls_ctx *keel_upstream_tls_ctx(struct keel_pworker *pw, const struct keel_cluster *c, bool h2,
                                           const char **sni);
void keel_upstream_tls_free(struct keel_pworker *pw);

/* ---- upstream_h2.c -------------------------------------------------------------------------------------------- */

/* An HTTP/2 client session on uc (the preface and SETTINGS are queued at once). Returns 0 or KEEL_ENOMEM. */
int keel_uph2_new(struct keel_upconn *uc);
void keel_uph2_free(struct keel_upconn *uc);
/* Opens the request stream of uc->st: h->method, h->path/query, fields (the first is Host, sent as :authority).
 * has_body: DATA follows (keel_uph2_body / _body_end), else END_STREAM on HEADERS. Returns 0 or KEEL_EINVAL. */
int keel_uph2_request(struct keel_upconn *uc, const struct keel_http_head *h, const struct keel_http_header *fields,
                      size_t n, bool has_body);
void keel_uph2_body(struct keel_upconn *uc, const char *data, size_t len);
void keel_uph2_body_end(struct keel_upconn *uc);
/* Frames nghttp2 wants to send, into uc->out. Returns 0 or a negative code (session failed). */
int keel_uph2_produce(struct keel_upconn *uc);
/* Feeds uc->in to the session (responses reach the stream through keel_stream_upstream_head/_data/_end).
 * Returns 0, or a negative code when the session failed (uc must be closed). */
int keel_uph2_consume(struct keel_upconn *uc);
/* Request body bytes waiting to be framed. */
size_t keel_uph2_pending(const struct keel_upconn *uc);
/* The session can carry another request (no GOAWAY, no error, nothing of the last stream left). */
bool keel_uph2_reusable(const struct keel_upconn *uc);

/* ---- tcp.c --------------------------------------------------------------------------------------------------- */

/* True when the connections of a snapshot listener are proxied at L4: every chain has a TCP/TLS table (TCP
 * servers, TLS PASSTHROUGH / AUTO_PASSTHROUGH, TLS terminated to tcp routes). Ports with an HTTP table
 * (plain HTTP, terminated HTTPS) stay with http1.c. */
bool keel_tcp_listener_is_l4(const struct keel_listener *l);
/* Takes an accepted downstream connection of a gateway L4 listener, a KEEL_PL_OUTBOUND_TCP listener or a
 * KEEL_PL_INBOUND listener of a TCP port (straight to its inbound cluster). */
void keel_tcp_accept(struct keel_plistener *l, int fd, const struct keel_addr *peer);
/* A client connection handed over by http1.c after a CONNECT on the sidecar's outbound listener: it becomes an
 * L4 session routed like the outbound TCP listener of `port` (by the destination IP when the CONNECT named one, and
 * by SNI for TLS ports). reply (the "200 Connection established") goes to the client first; initial are bytes the
 * client already sent after its CONNECT head. */
struct keel_tcp_handover {
    uint32_t port;
    const char *dst_ip; /* IP literal of the CONNECT authority, or "" for a name */
    const char *peer, *local;
    const char *reply;
    size_t reply_len;
    const char *initial;
    size_t n;
};
void keel_tcp_takeover(struct keel_pworker *pw, int fd, const struct keel_tcp_handover *h);
/* Closes (and logs) every open L4 session of the worker: its shutdown, after the drain time. */
void keel_tcp_close_all(struct keel_pworker *pw);

/* xorshift64* on the worker's state */
static inline uint32_t keel_pworker_random(struct keel_pworker *pw)
{
    uint64_t x = pw->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    pw->rng = x;
    return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

#endif
