/*
 * stream.h - one request exchange, whatever the client's protocol (internal to proxy/).
 *
 * A keel_stream is one request from a downstream connection: its head, the
 * route chosen for it, the upstream attempt(s) and the response. The
 * exchange itself (exchange.c: routing, local replies, endpoint choice,
 * retries, the upstream HTTP/1.1 request and response, access log, stats)
 * does not know how the client speaks. The client's codec does:
 *
 *   http1.c  HTTP/1.1 connections: one stream at a time, bytes framed as on
 *            the wire (a chunked upstream body goes out chunked, untouched)
 *   http2.c  HTTP/2 connections (nghttp2): many streams, DATA frames
 *
 * Each codec fills a keel_downstream with what the exchange needs to know
 * about the connection, and a table of keel_ds_ops through which the
 * exchange answers the client. Ownership: the codec allocates a stream with
 * keel_stream_new() and owns it; the exchange calls ops->done() exactly once
 * when the exchange is over (logged and counted), after which the codec
 * frees it with keel_stream_free() when it no longer needs it.
 *
 * Threads: a stream lives and dies on its connection's worker thread.
 */
#ifndef KEEL_PROXY_STREAM_H
#define KEEL_PROXY_STREAM_H

#include "proxy/dfp.h"
#include "proxy/proxy_int.h"

#include "base/arena.h"

/* How the request body travels to the upstream, and how the response body arrived from it. */
enum keel_body_mode {
    KEEL_BODY_NONE,
    KEEL_BODY_LENGTH,
    KEEL_BODY_CHUNKED,
    KEEL_BODY_UNTIL_CLOSE, /* a response without length, or either direction of an upgraded connection */
};

struct keel_downstream;

/* What a client codec does for the exchange. Every function gets the stream; ds = st->ds. */
struct keel_ds_ops {
    /* Final response head: status, reason, the fields to send (hop-by-hop fields and framing already
     * removed). The codec adds its own framing from st->resp_mode / st->resp (st->local: the fields
     * carry their own content-length). Returns 0, or a negative code when a field cannot be sent. */
    int (*head)(struct keel_stream *st, int status, struct keel_str reason, const struct keel_http_header *h, size_t n);
    /* An interim (1xx) response from the upstream, as raw bytes of its HTTP/1.1 head. */
    void (*interim)(struct keel_stream *st, const char *raw, size_t len);
    /* Response body: data[0..len) is payload; raw[0..raw_len) the same bytes as framed on an HTTP/1.1
     * upstream's wire (st->resp_raw; chunk framing included), or NULL when the codec frames data itself. */
    void (*body)(struct keel_stream *st, const char *raw, size_t raw_len, const char *data, size_t len);
    /* The response is complete (st->resp_done). */
    void (*end)(struct keel_stream *st);
    /* Sends what the codec holds for the client now (more of the response is still to come). */
    void (*flush)(struct keel_stream *st);
    /* Response bytes queued for the client and not yet sent (back-pressure on the upstream). */
    size_t (*pending)(const struct keel_stream *st);
    /* Moves request body bytes the client sent to the upstream with keel_stream_body_out() while
     * keel_stream_body_room(), and keel_stream_body_end() at the end. May answer the request (a bad body). */
    void (*pump)(struct keel_stream *st);
    /* The exchange is over: the codec continues with its connection (next request, close, reset a
     * stream whose response is incomplete) and frees the stream when it may. */
    void (*done)(struct keel_stream *st);
    /* Connection level: now=false asks the connection to end gracefully (close when idle, GOAWAY);
     * now=true closes it at once, ending its streams with DC. */
    void (*shutdown)(struct keel_downstream *ds, bool now);
};

/* What the exchange knows about a client connection. Embedded first in each codec's connection. */
struct keel_downstream {
    struct keel_pworker *pw;
    struct keel_downstream *prev, *next; /* the worker's open connections (pw->downstreams) */
    const struct keel_ds_ops *ops;
    enum keel_listener_role role;
    uint32_t port; /* listener port (gateway: the Gateway server's port) */
    int chain;     /* snapshot chain chosen by SNI; -1 = the first with routes */
    bool tls;      /* the client connected with TLS (x-forwarded-proto) */
    bool closing;  /* no further requests on this connection */
    bool shadow; /* a mirror's stand-in client (mirror.c): not counted, not logged, no retries */
    char peer[KEEL_ADDR_STRLEN];
    char peer_ip[KEEL_ADDR_STRLEN];
    char local[KEEL_ADDR_STRLEN];
};

struct keel_stream {
    struct keel_downstream *ds;
    struct keel_stream *cache_next; /* in the worker's stream cache (pw->stream_cache) once freed */
    void *codec; /* the codec's per-stream state (http2.c), or NULL */
    struct keel_snapshot *snap;
    struct keel_arena *arena;
    struct keel_http_head req;
    uint64_t req_wire_bytes; /* head + body bytes received */
    /* routing */
    const struct keel_route *route;
    const struct keel_cluster *cluster;
    const struct keel_endpoint *ep;
    const struct keel_endpoint *tried;
    struct keel_cluster_stats *cstats;
    unsigned attempts;
    const char *upstream_host; /* the endpoint's "addr:port" (lives in the snapshot this stream holds) or NULL */
    const char *set_cookie;    /* Set-Cookie value the load balancer generated (consistent hash on a cookie), or NULL */
    char upstream_local[KEEL_ADDR_STRLEN];
    /* upstream */
    struct keel_upconn *uc;
    bool up_h2;             /* this attempt speaks HTTP/2 to the upstream (upstream_h2.c) */
    struct keel_buf replay; /* request body sent so far, while small enough to resend on a retry */
    bool replayable;
    /* request body, as sent to the upstream */
    enum keel_body_mode req_mode;
    uint64_t req_left;
    struct keel_h1_chunked req_ch;
    bool req_done;
    /* response */
    struct keel_http_head resp;
    struct keel_h1_response resp_h1;
    enum keel_body_mode resp_mode;
    uint64_t resp_left;
    struct keel_h1_chunked resp_ch;
    bool resp_started; /* head sent downstream */
    bool resp_done;
    bool resp_keep_alive; /* the upstream connection may be reused */
    bool resp_raw;        /* body() gets the upstream's HTTP/1.1 framing in raw (else the codec frames data) */
    struct keel_http_header *trailers; /* response trailers (HTTP/2 upstream), in the arena */
    size_t n_trailers;
    bool local;   /* answered by the proxy itself */
    bool upgrade; /* the client asked for a protocol upgrade (WebSocket) */
    bool tunnel;  /* the upstream agreed (101): bytes flow both ways until one side closes */
    int status;
    uint32_t flags;
    const char *details;
    uint64_t bytes_sent;
    /* time */
    uint64_t start_ms;
    int64_t start_unix_ms;
    uint64_t upstream_start_ms;
    int64_t upstream_service_ms;
    struct keel_timer timeout;   /* the route's timeout, over every attempt */
    struct keel_timer delay;     /* fault delay, then retry back-off */
    struct keel_timer try_timer; /* perTryTimeout of the current attempt */
    int64_t per_try_ms;          /* 0 = none */
    bool abort_after_delay;      /* the fault's abort fires once the fault's delay is over */
    bool mirrored;               /* the shadow copies were sent (or skipped) */
    bool cors_decorate;          /* add the CORS response fields (an allowed origin) */
    bool finished;
    struct keel_dfp_wait dfp_wait; /* parked on a DNS lookup (dfp.c: pass-through / DYNAMIC_DNS to a name) */
};

/* ---- exchange.c ---------------------------------------------------------------------------------------------- */

/* A new stream on ds (counted as an active request), or NULL when out of memory. */
struct keel_stream *keel_stream_new(struct keel_downstream *ds);
/* Ends a stream: its timers, snapshot reference and buffers are released; the stream and its (reset) arena go to
 * the worker's cache of KEEL_PROXY_STREAM_CACHE streams, or are freed when it is full. st->ds must still be alive.
 * NULL is a no-op. */
void keel_stream_free(struct keel_stream *st);
/* Copies a parsed head into the stream's arena as st->req. */
void keel_stream_copy_head(struct keel_stream *st, const struct keel_http_head *src);
/* The head is complete (st->req, st->req_mode, st->req_left set): add x-request-id, then route. */
void keel_stream_start(struct keel_stream *st);
/* Answers from the proxy itself; when a response was already started the stream is cut instead. */
void keel_stream_local_reply(struct keel_stream *st, int status, uint32_t flag, const char *details, const char *body,
                             size_t body_len, const struct keel_http_header *extra, size_t n_extra);
/* The exchange is over: count, log, release the upstream, then ops->done(). Idempotent. */
void keel_stream_finish(struct keel_stream *st);
/* The client can take more response bytes: move what the upstream has. */
void keel_stream_resume_response(struct keel_stream *st);
/* Request body bytes arrived from the client: forward them if an upstream is connected. */
void keel_stream_request_body(struct keel_stream *st);
/* Picks an endpoint of the stream's cluster (st->cluster, else the route's weighted choice) and starts the
 * attempt. */
void keel_stream_dispatch(struct keel_stream *st);
/* mirror.c: sends the shadow copies the route asks for (VirtualService mirror/mirrors), once per request, when the
 * request is complete and its body (if any) was kept whole in st->replay. */
void keel_mirror_fire(struct keel_stream *st);

/* The worker's list of open client connections (keel_downstreams_shutdown walks it). */
void keel_downstream_link(struct keel_downstream *ds);
void keel_downstream_unlink(struct keel_downstream *ds);
/* Request body, from a codec's pump(): room for more, payload bytes, the end (sets st->req_done). */
bool keel_stream_body_room(const struct keel_stream *st);
void keel_stream_body_out(struct keel_stream *st, const char *data, size_t len);
void keel_stream_body_end(struct keel_stream *st);
/* Copies s into a's memory. */
struct keel_str keel_stream_dup(struct keel_arena *a, struct keel_str s);

#endif
