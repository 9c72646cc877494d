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
 *   upstream.c  upstream connections, per-worker pools (HTTP/2 connections carry many streams), circuit breakers
 *   upstream_pick.c  endpoint choice (the cluster's load balancer)
 *   outlier.c   upstream state shared by the workers: per cluster (circuit-breaker counts, ejections) and per
 *               cluster endpoint (consecutive errors, ejection), published with each snapshot (struct keel_upset)
 *   lb.c        the load balancer's pure parts: hashes, ring-hash/Maglev tables, locality priorities, ejection
 *               arithmetic
 *   tcp.c       L4 sessions: TCP proxying and TLS passthrough by SNI (sni.c)
 *   dfp.c       per-request DNS lookups for pass-through and DYNAMIC_DNS clusters (a host cache per worker)
 *
 * Threads: a struct keel_pworker and everything hanging off it belong to one
 * worker thread; only the runtime's published snapshot pointer, the stats
 * shards (see stats.h) and the upstream states of outlier.c (atomics) are
 * shared across threads.
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
struct keel_uph2s;
struct keel_dfp;

/* Buffer limits per connection: reads stop (back-pressure) while the peer's
 * output holds more than KEEL_PROXY_OUT_HIGH bytes. */
#define KEEL_PROXY_IN_MAX (KEEL_H1_MAX_HEAD + 16384)
#define KEEL_PROXY_OUT_MAX (4u << 20)
#define KEEL_PROXY_OUT_HIGH (256u << 10)
#define KEEL_PROXY_READ_CHUNK 16384
#define KEEL_PROXY_IDLE_MS (3600u * 1000u)  /* downstream idle, Envoy's 1 h */
#define KEEL_PROXY_UP_IDLE_MS (55u * 1000u) /* pooled upstream connection idle */
#define KEEL_PROXY_REPLAY_MAX (64u << 10)   /* request bytes kept to replay on a stale pooled connection */
/* Object reuse on the request path (ended streams kept by the worker, HTTP/2 stream states by their connection).
 * Under AddressSanitizer nothing is kept: ended objects are freed, so that a use after the end is still reported. */
#if defined(__SANITIZE_ADDRESS__)
#define KEEL_PROXY_REUSE 0u
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KEEL_PROXY_REUSE 0u
#endif
#endif
#ifndef KEEL_PROXY_REUSE
#define KEEL_PROXY_REUSE 1u
#endif
#define KEEL_PROXY_STREAM_CACHE 128u /* freed streams a worker keeps when KEEL_PROXY_REUSE (about 21 KiB each) */

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

/* Upstream connections of one cluster's endpoint ("<cluster>|ip:port"), per kind: [0] HTTP/1.1, [1] HTTP/2, [2]
 * and [3] the same over TLS (a TLS connection is reused only for the same client context). */
struct keel_upool {
    struct keel_upconn *idle[4]; /* LIFO */
    size_t n_idle[4];
    size_t active;                 /* requests in flight to this endpoint from this worker (least-request LB) */
    size_t conns;                  /* connections open (or opening) to this endpoint from this worker */
    struct keel_upconn *wait_head; /* requests waiting for a connection (circuit breaker maxConnections), FIFO */
    struct keel_upconn *wait_tail;
    struct keel_defer service; /* hands freed connections to waiting requests, outside the caller's stack */
    bool service_queued;
    char key[]; /* "<cluster>|<host:port>" */
};

/* What the request path looks up for a cluster, by name, once per worker and config: its stats in the worker's
 * shard and its shared state in the worker's upset (NULL when it has none, e.g. a cluster of an older snapshot
 * that the upset does not know by that name any more: compare u->c with the cluster). */
struct keel_cluster_view {
    const struct keel_cluster *c;
    struct keel_cluster_stats *stats;
    const struct keel_upcluster *u;
};
#define KEEL_PROXY_CLUSTER_VIEWS 64u /* direct-mapped by cluster pointer */

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
    struct keel_map tls_clients;         /* "cluster|h2" -> upstream TLS context (upstream_tls.c) */
    struct keel_upset *upset;            /* upstream states of the current snapshot (outlier.c; one reference held) */
    uint64_t rng;                        /* xorshift state */
    size_t conns;                        /* open downstream connections */
    bool draining;                       /* listeners closed; keep-alive connections close after their request */
    struct keel_buf logline;             /* access-log rendering */
    struct keel_tconn *tcp;              /* open L4 sessions (tcp.c), closed by keel_tcp_close_all() */
    struct keel_downstream *downstreams; /* open HTTP client connections (http1.c, http2.c) */
    struct keel_cluster_view cviews[KEEL_PROXY_CLUSTER_VIEWS]; /* lookups per cluster of this config (upstream.c) */
    struct keel_stream *stream_cache;    /* freed streams kept with their arena for the next ones (exchange.c) */
    unsigned n_stream_cache;
    struct keel_dfp *dfp; /* per-request DNS lookups (dfp.h), created on first use, or NULL */
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
/* Is hostport ("ip:port") one of this worker's own listeners (its address, or a loopback address on the port of
 * a wildcard listener)? A pass-through there would loop through the proxy until it runs out of descriptors; Istio
 * sends such traffic to the BlackHoleCluster (virtualOutbound-blackhole). */
bool keel_listeners_own(const struct keel_pworker *pw, const char *hostport);
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
/* Frees the worker's cache of ended streams (pw->stream_cache; worker shutdown). */
void keel_stream_cache_free(struct keel_pworker *pw);

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
    struct keel_upool *pool; /* its pool (cluster and endpoint): pools outlive their connections */
    char key[KEEL_ADDR_STRLEN]; /* the endpoint, host:port */
    char local[KEEL_ADDR_STRLEN];
    struct keel_buf in;
    struct keel_buf out;
    struct keel_stream *st; /* NULL while pooled */
    struct keel_cluster_stats *cstats;
    struct keel_upconn *next_idle;
    struct keel_tls_ctx *tls_ctx; /* TLS origination: the context asked for (owned by the worker's cache) */
    const char *sni;              /* and the SNI to send (owned by the cache entry, or sni_own) */
    char *sni_own;                /* a DYNAMIC_DNS request's host sent as SNI (upstream.c), or NULL */
    struct keel_tls_conn *tls;    /* the TLS connection once TCP is up, or NULL */
    struct keel_uph2 *h2;         /* HTTP/2 session (upstream_h2.c), or NULL: HTTP/1.1 */
    bool connected;
    bool reused; /* came from the pool for the current request */
    bool closed;
    /* policies (outlier.c; references held): the cluster's and the endpoint's shared state, or NULL */
    struct keel_cluster_state *cs;      /* the current request's cluster */
    struct keel_host_state *hs;         /* the current request's endpoint */
    struct keel_cluster_state *conn_cs; /* the cluster whose maxConnections count this connection is in */
    bool waiting;                       /* no connection yet: queued in its pool (fd -1) until one frees up */
    bool pending;                       /* counted in cs->pending (waiting, or connecting for its request) */
    bool counted_rq;                    /* counted in cs->rq for the current request */
    bool counted_retry;                 /* the current request is a retry, counted in cs->retries */
    bool h2_wanted;                     /* waiting: the attempt speaks HTTP/2 */
    uint32_t requests;                  /* requests carried so far */
    uint32_t max_requests;              /* maxRequestsPerConnection of the current request's cluster; 0 = unlimited */
    bool keepalive_set;                 /* SO_KEEPALIVE set (connectionPool.tcp.tcpKeepalive of a cluster it served) */
    uint64_t created_ms;                /* maxConnectionDuration */
    uint64_t idle_ms;                   /* pooled idle timeout */
    uint64_t max_age_ms;                /* 0 = unlimited */
    uint64_t connect_ms;                /* waiting: the connect timeout to use */
    struct keel_upconn *next_wait;
    /* HTTP/2 (upstream_h2.c): a connection (h2 set: socket, session) carries the streams of many attempts; each
     * attempt is a handle (handle set: no socket of its own), which is what the exchange holds in st->uc */
    bool handle;                     /* an HTTP/2 attempt handle */
    bool no_new;                     /* a connection that takes no new stream (GOAWAY, limits, drain) */
    bool write_failed;               /* a connection whose socket failed on write */
    bool touched;                    /* a handle whose stream got response bytes in this read */
    uint32_t nstreams;               /* a connection: handles on it */
    uint32_t max_streams;            /* a connection: DestinationRule maxConcurrentStreams, 0 = the peer's limit */
    struct keel_upconn *conn;        /* a handle: the connection carrying its stream (NULL while waiting) */
    struct keel_uph2s *h2s;          /* a handle: its stream in the session, once the request went out */
    struct keel_upconn *streams;     /* a connection: its handles */
    struct keel_upconn *next_stream; /* a handle: the connection's list */
    struct keel_upconn *prev_stream;
};

/* Requests in flight to endpoint ep of cluster c from this worker (LEAST_REQUEST compares them). */
size_t keel_upstream_endpoint_active(struct keel_pworker *pw, const struct keel_cluster *c,
                                     const struct keel_endpoint *ep);

/* ---- upstream_pick.c ----------------------------------------------------------------------------------------- */

/* Chooses an endpoint of c for a connection (LB policy of the cluster, ejections, locality), skipping `avoid` when
 * another exists. NULL when the cluster has no endpoint to use (503 UH). */
const struct keel_endpoint *keel_upstream_pick(struct keel_pworker *pw, const struct keel_cluster *c,
                                               const struct keel_endpoint *avoid);
/* The same for a request: consistent-hash policies hash its header, cookie, query parameter or source IP (a cookie
 * generated for it goes to st->set_cookie, for the response head). `last` is the endpoint of the previous attempt
 * (NULL on the first): a retry avoids it unless the route's retryIgnorePreviousHosts is false, and leaves its
 * locality priority with retryRemoteLocalities. */
const struct keel_endpoint *keel_upstream_pick_request(struct keel_stream *st, const struct keel_cluster *c,
                                                       const struct keel_endpoint *last);
/* Outlier detection hears the response status of the attempt on st->uc (any code: success resets the counts). */
void keel_upstream_report_status(struct keel_stream *st, int status);
/* The attempt on st->uc timed out (the route's timeout): a local-origin failure for outlier detection. */
void keel_upstream_report_timeout(struct keel_stream *st);
/* May st retry (DestinationRule connectionPool.http.maxRetries across the proxy)? false counts
 * envoy_cluster_upstream_rq_retry_overflow; the retry is then not made. */
bool keel_upstream_retry_allowed(struct keel_stream *st);
/* Response fields the load balancer adds (a generated hash cookie). Returns how many it wrote (at most cap). */
size_t keel_upstream_response_fields(const struct keel_stream *st, struct keel_http_header *h, size_t cap);
/* Gets a pooled connection to ep or starts connecting one; on success the stream is attached and
 * keel_stream_upstream_ready() (or _failed) follows from the loop. Returns 0 or a negative code
 * (bad address, no fds; KEEL_EOVERFLOW: a circuit breaker is open, answer 503 UO) with nothing attached.
 * Over connectionPool.tcp.maxConnections the request waits for a connection of this worker (*out is then a
 * placeholder without a socket; when a connection frees up, upstream.c sets st->uc to it and calls
 * keel_stream_upstream_ready()). */
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
/* The view of c (c non-NULL), cached in pw->cviews (a miss looks it up by name). */
const struct keel_cluster_view *keel_cluster_view(struct keel_pworker *pw, const struct keel_cluster *c);
/* Forgets the cached views: the worker took a new snapshot and upset (a cluster pointer of a freed snapshot may
 * come back as another cluster). */
void keel_cluster_views_forget(struct keel_pworker *pw);
/* Counts a connection to ep of cluster c that is not from the pool (tcp.c) in the endpoint's in-flight count,
 * which LEAST_REQUEST compares: +1 when it opens, -1 when it closes. */
void keel_upstream_count_active(struct keel_pworker *pw, const struct keel_cluster *c, const struct keel_endpoint *ep,
                                int delta);

/* ---- upstream_tls.c ------------------------------------------------------------------------------------------- */

/* The client TLS context for attempts to cluster c (NULL: plain text, or a context that could not be built,
 * logged), and the SNI to send. Built on first use per snapshot version, then cached on the worker. */
struct keel_tls_ctx *keel_upstream_tls_ctx(struct keel_pworker *pw, const struct keel_cluster *c, bool h2,
                                           const char **sni);
void keel_upstream_tls_free(struct keel_pworker *pw);

/* ---- upstream_h2.c -------------------------------------------------------------------------------------------- */

/* The HTTP/2 client session of connection c (the preface and SETTINGS are queued at once). Returns 0 or
 * KEEL_ENOMEM. keel_uph2_free() frees it with the state of every stream still open. */
int keel_uph2_new(struct keel_upconn *c);
void keel_uph2_free(struct keel_upconn *c);
/* Opens the request stream of handle uc (bound to its connection uc->conn): h->method, h->path/query, fields (the
 * first is Host, sent as :authority). has_body: DATA follows (keel_uph2_body / _body_end), else END_STREAM on
 * HEADERS. Returns 0 or KEEL_EINVAL / KEEL_ENOMEM. */
int keel_uph2_request(struct keel_upconn *uc, const struct keel_http_head *h, const struct keel_http_header *fields,
                      size_t n, bool has_body);
void keel_uph2_body(struct keel_upconn *uc, const char *data, size_t len);
void keel_uph2_body_end(struct keel_upconn *uc);
/* Request body bytes of handle uc waiting to be framed. */
size_t keel_uph2_pending(const struct keel_upconn *uc);
/* Flow control of handle uc's response: pause (the client is behind) keeps received DATA unacknowledged; resuming
 * gives it back to the stream's window. Returns true when a WINDOW_UPDATE was queued (the connection should flush). */
bool keel_uph2_window(struct keel_upconn *uc, bool pause);
/* The attempt on handle uc is over: its stream is reset (CANCEL) unless it ended both ways; the session forgets uc. */
void keel_uph2_detach(struct keel_upconn *uc);
/* Frames nghttp2 wants to send, into c->out (nothing from inside keel_uph2_consume). Returns 0 or a negative code. */
int keel_uph2_produce(struct keel_upconn *c);
/* Feeds c->in to the session (responses reach the streams through keel_stream_upstream_head/_data/_end).
 * Returns 0, or a negative code when the session failed (c must be closed). */
int keel_uph2_consume(struct keel_upconn *c);
/* Inside keel_uph2_consume (nghttp2's callbacks): no sending now. */
bool keel_uph2_in_recv(const struct keel_upconn *c);
/* The session can open more streams (no GOAWAY, no error, stream ids left). */
bool keel_uph2_reusable(const struct keel_upconn *c);
/* The peer's SETTINGS_MAX_CONCURRENT_STREAMS (unlimited until its SETTINGS arrive). */
uint32_t keel_uph2_peer_streams(const struct keel_upconn *c);
/* upstream.c: the server reset handle uc's stream before its response ended (unprocessed: refused under a GOAWAY,
 * safe to send again). Fails that attempt only. */
void keel_upstream_stream_failed(struct keel_upconn *uc, bool unprocessed);

/* ---- lb.c: pure functions ------------------------------------------------------------------------------------ */

#define KEEL_LB_RING_MAX (8u << 20) /* Envoy's maximum ring size */
#define KEEL_LB_MAGLEV_MAX 5000011u /* Istio's maximum Maglev table size */
#define KEEL_LB_MAX_PRIORITIES 66   /* locality priorities 0..4, or failoverPriority 0..64 */
#define KEEL_LB_WEIGHT_SCALE 1000u  /* locality `distribute` percentages become weights of 100000 in total */

uint64_t keel_lb_hash(const void *p, size_t n);

/* A hash ring: points sorted by hash, each naming an endpoint index. */
struct keel_lb_ring {
    uint64_t *hash;
    uint32_t *host;
    size_t n;
};
/* keys[i] names endpoint i ("ip:port"); weights NULL = all 1, a 0 weight gets no point. Returns 0 or a code. */
int keel_lb_ring_build(struct keel_lb_ring *r, const char *const *keys, const uint32_t *weights, size_t n,
                       uint64_t min_size);
/* Index of the first point at or after h (wrapping). The ring must not be empty. */
size_t keel_lb_ring_find(const struct keel_lb_ring *r, uint64_t h);
void keel_lb_ring_free(struct keel_lb_ring *r);

/* A Maglev lookup table of `size` entries (prime), each an endpoint index. */
struct keel_lb_maglev {
    uint32_t *table;
    uint64_t size;
};
int keel_lb_maglev_build(struct keel_lb_maglev *m, const char *const *keys, const uint32_t *weights, size_t n,
                         uint64_t size);
void keel_lb_maglev_free(struct keel_lb_maglev *m);

/* What locality load balancing knows about the proxy itself. */
struct keel_lb_proxy {
    const char *locality; /* "region/zone/subzone", or NULL: unknown (no locality load balancing) */
    const struct keel_kv_str *labels;
    size_t n_labels;
};
/* Istio's LocalityMatch: does locality fall under pattern (region, region/zone, ..., a trailing or lone star)? */
bool keel_lb_locality_matches(const char *locality, const char *pattern);
/* Fills prio[i] (0 = preferred) and weight[i] (0 = never used) for each endpoint of c as Istio's locality load
 * balancing sets them for a proxy px. Returns the number of priorities (>= 1). */
unsigned keel_lb_locality_plan(const struct keel_cluster *c, const struct keel_lb_proxy *px, uint8_t *prio,
                               uint32_t *weight);
/* Percent of the traffic per priority (sums to 100, or all 0 when nothing is healthy). */
void keel_lb_priority_load(const uint32_t *healthy, const uint32_t *total, unsigned n, uint32_t *load);
/* May one more of `hosts` be ejected with `ejected` out already, under maxEjectionPercent (Envoy: the share
 * ejected before this one is under it, so one is always allowed)? */
bool keel_lb_may_eject(uint32_t ejected, uint32_t hosts, uint32_t max_percent);
/* How long an ejection lasts: base x backoff (the times ejected, decaying), at most max (>= base). */
uint64_t keel_lb_ejection_ms(uint64_t base_ms, uint32_t backoff, uint64_t max_ms);
/* Slow start (warmup): the weight factor of an endpoint age_ms old in a window_ms window. */
double keel_lb_warmup_factor(uint64_t age_ms, uint64_t window_ms, double min_percent, double aggression);

/* ---- outlier.c: upstream state shared by the workers ------------------------------------------------------------ */

#define KEEL_OUTLIER_MAX_EJECTION_MS (300u * 1000u) /* Envoy's max_ejection_time default */

enum keel_host_health {
    KEEL_HOST_HEALTHY,
    KEEL_HOST_EJECTING, /* a worker is ejecting it (a moment) */
    KEEL_HOST_EJECTED,
};

/* One endpoint of one cluster ("cluster|ip:port"), shared by every worker and kept across config generations while
 * the cluster keeps the endpoint. Counters are atomics: consecutive errors count across workers. */
struct keel_host_state {
    atomic_uint refs;
    _Atomic uint32_t cons_5xx;
    _Atomic uint32_t cons_gateway;
    _Atomic uint32_t cons_local;
    _Atomic int health;          /* enum keel_host_health */
    _Atomic uint64_t ejected_ms; /* when (loop clock, CLOCK_MONOTONIC ms) */
    _Atomic uint32_t backoff;    /* ejection multiplier: +1 per ejection, -1 per healthy interval */
    _Atomic uint64_t ejections;  /* times ejected */
    uint64_t added_ms;           /* joined its existing cluster (warmup); 0: came with the cluster, never warms */
    char key[];
};

/* One cluster (by name), shared by every worker and kept across config generations. */
struct keel_cluster_state {
    atomic_uint refs;
    _Atomic uint32_t cx;      /* connections open to it, all workers (maxConnections) */
    _Atomic uint32_t pending; /* requests waiting for a connection (http1MaxPendingRequests) */
    _Atomic uint32_t rq;      /* requests in flight (http2MaxRequests) */
    _Atomic uint32_t retries; /* retries in flight (maxRetries) */
    _Atomic uint32_t ejected; /* endpoints ejected now */
    _Atomic uint32_t n_hosts; /* endpoints in the current generation */
    _Atomic uint64_t od[8];   /* outlier counters, enum keel_od_stat */
    uint64_t next_sweep_ms;   /* main thread: the next outlier-detection interval */
    int64_t interval_ns;      /* main thread: the interval next_sweep_ms was computed with */
    char name[];
};

enum keel_od_stat {
    KEEL_OD_ENFORCED_TOTAL,
    KEEL_OD_OVERFLOW,
    KEEL_OD_ENFORCED_5XX,
    KEEL_OD_DETECTED_5XX,
    KEEL_OD_ENFORCED_GATEWAY,
    KEEL_OD_DETECTED_GATEWAY,
    KEEL_OD_ENFORCED_LOCAL,
    KEEL_OD_DETECTED_LOCAL,
};

/* One cluster of one config generation: immutable once published. */
struct keel_upcluster {
    const struct keel_cluster *c;
    struct keel_cluster_state *cs;
    struct keel_host_state **hosts; /* [c->n_endpoints] */
    uint8_t *prio;                  /* locality priority per endpoint */
    uint32_t *weight;               /* effective weight per endpoint (0: never used) */
    unsigned n_prio;
    struct keel_lb_ring ring;     /* RING_HASH */
    struct keel_lb_maglev maglev; /* MAGLEV */
};

/* The upstream states of one snapshot: published to the workers with it (reference counted; the last holder frees
 * it, on any thread). */
struct keel_upset;
struct keel_upstates;

/* Local-origin outcomes of an attempt. */
enum keel_outcome {
    KEEL_OUTCOME_CONNECT_OK,
    KEEL_OUTCOME_CONNECT_FAILED, /* refused, connect timeout, TLS handshake, reset before the response */
    KEEL_OUTCOME_TIMEOUT,        /* the route's timeout */
};

/* Main thread. */
struct keel_upstates *keel_upstates_new(struct keel_loop *loop);
void keel_upstates_free(struct keel_upstates *u);
/* The states of snap's clusters (reusing those of clusters and endpoints that stay) for a proxy px; starts the
 * outlier sweep. Returns a new reference, or NULL when out of memory (workers then balance without policies). */
struct keel_upset *keel_upstates_publish(struct keel_upstates *u, struct keel_snapshot *snap,
                                         const struct keel_lb_proxy *px);
/* Prometheus families of the current generation (outlier detection, circuit-breaker gauges). */
int keel_upstates_prometheus(struct keel_upstates *u, struct keel_buf *out);
/* /clusters: the view of the current generation's cluster c, or NULL. */
const struct keel_upcluster *keel_upstates_cluster(struct keel_upstates *u, const struct keel_cluster *c);

/* Any thread. */
struct keel_upset *keel_upset_ref(struct keel_upset *s);
void keel_upset_unref(struct keel_upset *s);
/* The view of cluster c (by name) in s, or NULL. Its `c` is the cluster of s's snapshot, which may be another
 * generation's than the caller's. */
const struct keel_upcluster *keel_upset_cluster(const struct keel_upset *s, const struct keel_cluster *c);
/* The state of endpoint ep of c (c may be another generation's than u->c: found by address), or NULL. */
struct keel_host_state *keel_upcluster_host(const struct keel_upcluster *u, const struct keel_cluster *c,
                                            const struct keel_endpoint *ep);
struct keel_host_state *keel_host_state_ref(struct keel_host_state *h);
void keel_host_state_unref(struct keel_host_state *h);
struct keel_cluster_state *keel_cluster_state_ref(struct keel_cluster_state *s);
void keel_cluster_state_unref(struct keel_cluster_state *s);
static inline bool keel_host_ejected(const struct keel_host_state *h)
{
    return h && atomic_load_explicit(&h->health, memory_order_acquire) == KEEL_HOST_EJECTED;
}
/* Workers: outcomes for outlier detection of cluster c (its DestinationRule's outlierDetection). */
void keel_outlier_report_status(struct keel_pworker *pw, const struct keel_cluster *c, struct keel_cluster_state *cs,
                                struct keel_host_state *hs, int status);
void keel_outlier_report_local(struct keel_pworker *pw, const struct keel_cluster *c, struct keel_cluster_state *cs,
                               struct keel_host_state *hs, enum keel_outcome o);

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
