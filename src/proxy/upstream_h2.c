/*
 * upstream_h2.c - HTTP/2 to upstream endpoints (client side, nghttp2).
 *
 * Used when the destination port speaks HTTP/2 (Istio's `http2` and `grpc`
 * port protocols), when a DestinationRule sets h2UpgradePolicy: UPGRADE, or
 * with useClientProtocol for an HTTP/2 client (exchange.c decides). gRPC
 * needs this: its status travels in trailers, which HTTP/1.1 upstreams do not
 * carry.
 *
 * Many streams per connection (Envoy's HTTP/2 connection pool). Two kinds of
 * struct keel_upconn take part:
 *   - the connection (c->h2 set): socket, io watcher, timer, TLS, buffers and
 *     the nghttp2 session (struct keel_uph2, here); listed in its pool
 *     (upstream.c) while it takes new streams;
 *   - the handle (uc->handle set), one per attempt: what the exchange holds in
 *     st->uc, bound to a connection (uc->conn), with its stream's state
 *     (struct keel_uph2s, here). The exchange's calls (ready, flush, pending,
 *     pause, release, fail) work on the handle as on an HTTP/1.1 connection.
 * nghttp2's stream user data is the keel_uph2s, so the session's callbacks
 * reach the right keel_stream. The limits (stream counts, GOAWAY, idle and
 * duration) are upstream.c's.
 *
 * Bytes: nghttp2 writes frames into c->out (keel_uph2_produce, called by
 * keel_upstream_flush; never from inside nghttp2's callbacks: the reader
 * flushes after them) and reads c->in (keel_uph2_consume). A request body
 * waits in a bounded buffer per stream read by its DATA provider; responses
 * reach the exchange through keel_stream_upstream_head/_data/_end.
 *
 * Back-pressure is per stream: automatic WINDOW_UPDATEs are off; the
 * connection's window (16 MiB) is given back as DATA arrives, a stream's
 * only while its client keeps up (keel_uph2_window, driven by the exchange's
 * keel_upstream_pause): a slow client holds at most its stream's 64 KiB
 * window at the upstream and never stalls the connection's other streams.
 *
 * Failures: a stream the server resets (RST_STREAM) fails only its attempt
 * (keel_upstream_stream_failed; the route's retry policy applies, with
 * refused-stream for REFUSED_STREAM; a stream refused under a GOAWAY on a
 * connection that was already up gets the free retry of a request sent on a
 * pooled HTTP/1.1 connection the server had closed). A GOAWAY
 * lets the streams at or below its last id finish; the connection takes no
 * new stream and closes with its last one. A connection error (I/O, protocol
 * error, connect failure or timeout) fails every stream on it. An attempt
 * that ends early (per-try or route timeout, client gone, a retry on a
 * response, a mirror's end) resets its stream with CANCEL and nothing else.
 *
 * Ownership: struct keel_uph2 belongs to its connection and is freed with it
 * (in the connection's deferred free, so a close from inside a callback never
 * frees the session under nghttp2's feet). A struct keel_uph2s lives from the
 * request until both its handle detached and nghttp2 closed the stream
 * (nghttp2 may still ask its DATA provider for bytes after the attempt
 * ended), or until the session is freed. Threads: the worker's.
 */
#include "proxy/stream.h"

#include "base/err.h"
#include "base/log.h"

#include <nghttp2/nghttp2.h>

#include <stdlib.h>
#include <string.h>

#define KEEL_UPH2_BODY_MAX (1u << 20)
#define KEEL_UPH2_CONN_WINDOW (16u << 20) /* connection-level receive window: streams are limited one by one */

/* One stream of the session. Owned by the session (its list) from the request until nghttp2 closes the stream,
 * whichever of that and the handle's end comes last: nghttp2 may still read the request body of a stream whose
 * handle is gone (until its RST_STREAM leaves), so the DATA provider never points into the handle. */
struct keel_uph2s {
    struct keel_uph2 *h;
    struct keel_uph2s *prev, *next;
    struct keel_upconn *uc; /* the attempt's handle, NULL once detached */
    int32_t sid;            /* 0 once nghttp2 closed the stream */
    struct keel_buf body;   /* request DATA not yet framed */
    bool body_end;          /* the request body is complete */
    bool local_done;        /* END_STREAM was handed to nghttp2 (request without body, or the body's EOF) */
    bool deferred;          /* the DATA provider waits for bytes */
    bool remote_done;       /* the server ended the stream (nghttp2 closes it right after the callbacks) */
    bool paused;            /* the client is behind: received DATA is not acknowledged (flow control) */
    size_t unacked;         /* DATA bytes delivered but not yet given back to the stream's window */
};

/* The session of one connection (the carrier keel_upconn). */
struct keel_uph2 {
    nghttp2_session *ng;
    struct keel_uph2s *streams;
    bool broken;  /* an error: no new streams */
    bool goaway;  /* GOAWAY received: no new streams */
    bool in_recv; /* inside nghttp2_session_mem_recv (no mem_send from its callbacks) */
};

static void h2s_free(struct keel_uph2s *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        s->h->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    keel_buf_free(&s->body);
    free(s);
}

/* ---- callbacks ------------------------------------------------------------------------------------------------- */

static struct keel_uph2s *h2s_of(nghttp2_session *ng, int32_t id)
{
    return nghttp2_session_get_stream_user_data(ng, id);
}

static struct keel_stream *stream_of(nghttp2_session *ng, int32_t id)
{
    struct keel_uph2s *s = h2s_of(ng, id);
    if (!s || !s->uc || !s->uc->st)
        return NULL;
    s->uc->touched = true;
    return s->uc->st;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user)
{
    (void)flags;
    (void)user;
    struct keel_stream *st = stream_of(ng, f->hd.stream_id);
    if (!st || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct keel_str n = {(const char *)name, namelen}, v = {(const char *)value, valuelen};
    if (st->resp_started) { /* trailers */
        if (!st->trailers)
            st->trailers = keel_arena_alloc(st->arena, 32 * sizeof(*st->trailers));
        if (st->trailers && st->n_trailers < 32)
            st->trailers[st->n_trailers++] =
                (struct keel_http_header){keel_stream_dup(st->arena, n), keel_stream_dup(st->arena, v)};
        return 0;
    }
    struct keel_http_head *r = &st->resp;
    if (keel_str_eq_c(n, ":status")) {
        uint64_t code;
        if (keel_str_to_u64(v, 999, &code) != 0 || code < 100)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        r->status = (int)code;
        return 0;
    }
    if (keel_str_eq_c(n, "content-length")) {
        uint64_t cl;
        if (keel_str_to_u64(v, UINT64_MAX, &cl) == 0) {
            r->has_content_length = true;
            r->content_length = cl;
        }
    }
    if (r->nheaders < KEEL_HTTP_MAX_HEADERS)
        r->headers[r->nheaders++] =
            (struct keel_http_header){keel_stream_dup(st->arena, n), keel_stream_dup(st->arena, v)};
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct keel_upconn *c = user;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        c->h2->goaway = true; /* streams above its last id are closed as refused by nghttp2 */
        return 0;
    }
    struct keel_stream *st = stream_of(ng, f->hd.stream_id);
    if (!st || (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA))
        return 0;
    struct keel_uph2s *s = h2s_of(ng, f->hd.stream_id);
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (f->hd.type == NGHTTP2_HEADERS && !st->resp_started) {
        if (st->resp.status < 200) {
            /* interim (100 Continue): forget it, the final head follows */
            st->resp.status = 0;
            st->resp.nheaders = 0;
            st->resp.has_content_length = false;
            return 0;
        }
        if (end)
            s->remote_done = true;
        keel_stream_upstream_head(st, end);
        st = stream_of(ng, f->hd.stream_id); /* the head may have ended the stream (a head we cannot send) */
    }
    if (st && end) {
        s->remote_done = true;
        keel_stream_upstream_end(st);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *user)
{
    (void)flags;
    (void)user;
    nghttp2_session_consume_connection(ng, len); /* the connection's window never waits for one slow client */
    struct keel_uph2s *s = h2s_of(ng, id);
    struct keel_stream *st = stream_of(ng, id);
    if (!st) {
        nghttp2_session_consume_stream(ng, id, len); /* nobody wants it: keep the window open */
        return 0;
    }
    s->unacked += len; /* given back by keel_uph2_window() once the client took it */
    keel_stream_upstream_data(st, (const char *)data, len);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *user)
{
    struct keel_upconn *c = user;
    struct keel_uph2s *s = h2s_of(ng, id);
    if (!s)
        return 0;
    s->sid = 0;
    struct keel_upconn *uc = s->uc;
    if (!uc) {
        h2s_free(s); /* its handle is gone already */
        return 0;
    }
    struct keel_stream *st = uc->st;
    if (st && !st->resp_done) {
        /* reset before the response ended: REFUSED_STREAM (also every stream above a GOAWAY's last id) means the
         * server did not process it */
        bool refused = error_code == NGHTTP2_REFUSED_STREAM;
        keel_upstream_stream_failed(uc, refused && c->h2->goaway);
    }
    return 0;
}

static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *user)
{
    (void)ng;
    (void)id;
    (void)user;
    struct keel_uph2s *s = src->ptr;
    if (!s->uc)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* the attempt is over: the stream is being reset */
    size_t n = s->body.len < len ? s->body.len : len;
    if (n) {
        memcpy(buf, s->body.data, n);
        keel_buf_consume(&s->body, n);
    }
    if (s->body.len == 0 && s->body_end) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        s->local_done = true;
        return (ssize_t)n;
    }
    if (n == 0) {
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* ---- the connection's side ------------------------------------------------------------------------------------- */

int keel_uph2_new(struct keel_upconn *c)
{
    struct keel_uph2 *h = calloc(1, sizeof(*h));
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    if (!h || nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0) {
        if (cb)
            nghttp2_session_callbacks_del(cb);
        free(h);
        return KEEL_ENOMEM;
    }
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_option_set_no_auto_window_update(opt, 1); /* per-stream flow control: see keel_uph2_window() */
    nghttp2_option_set_no_closed_streams(opt, 1);      /* no priority tree to keep them for */
    int rc = nghttp2_session_client_new2(&h->ng, cb, c, opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    /* RFC 9218: no RFC 7540 priority tree on the client side either (streams are sent in turn) */
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1}};
    if (rc != 0 || nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, 1) != 0 ||
        nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, KEEL_UPH2_CONN_WINDOW) != 0) {
        if (h->ng)
            nghttp2_session_del(h->ng);
        free(h);
        return KEEL_ENOMEM;
    }
    c->h2 = h;
    return 0;
}

void keel_uph2_free(struct keel_upconn *c)
{
    struct keel_uph2 *h = c->h2;
    if (!h)
        return;
    nghttp2_session_del(h->ng); /* reports no stream closes */
    while (h->streams) {
        if (h->streams->uc)
            h->streams->uc->h2s = NULL;
        h2s_free(h->streams);
    }
    free(h);
    c->h2 = NULL;
}

int keel_uph2_request(struct keel_upconn *uc, const struct keel_http_head *req, const struct keel_http_header *fields,
                      size_t n, bool has_body)
{
    struct keel_uph2 *h = uc->conn && uc->conn->h2 ? uc->conn->h2 : NULL;
    struct keel_stream *st = uc->st;
    nghttp2_nv nv[KEEL_HTTP_MAX_HEADERS + 24];
    size_t m = 0, cap = sizeof(nv) / sizeof(nv[0]);
    if (!h || uc->h2s)
        return KEEL_EINVAL;
    /* :path is the path and query as one string */
    size_t plen = req->path.n + (req->query.n ? 1 + req->query.n : 0);
    char *path = keel_arena_alloc(st->arena, plen + 1);
    if (!path || !n)
        return KEEL_EINVAL;
    memcpy(path, req->path.p, req->path.n);
    if (req->query.n) {
        path[req->path.n] = '?';
        memcpy(path + req->path.n + 1, req->query.p, req->query.n);
    }
#define NV(k, kl, v, vl) (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), (kl), (vl), NGHTTP2_NV_FLAG_NONE}
    nv[m++] = NV(":method", 7, req->method.p, req->method.n);
    nv[m++] = NV(":scheme", 7, "http", 4);
    nv[m++] = NV(":authority", 10, fields[0].value.p, fields[0].value.n); /* Host */
    nv[m++] = NV(":path", 5, path, plen);
    for (size_t i = 1; i < n && m < cap; i++) {
        /* field names are lower case in HTTP/2 (RFC 9113 §8.2.1) */
        char *name = keel_arena_strndup(st->arena, fields[i].name.p, fields[i].name.n);
        if (!name)
            return KEEL_ENOMEM;
        for (char *p = name; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        nv[m++] = NV(name, fields[i].name.n, fields[i].value.p, fields[i].value.n);
    }
#undef NV
    struct keel_uph2s *s = calloc(1, sizeof(*s));
    if (!s)
        return KEEL_ENOMEM;
    keel_buf_init(&s->body, KEEL_UPH2_BODY_MAX);
    s->h = h;
    s->uc = uc;
    s->body_end = !has_body;
    s->local_done = !has_body;
    s->next = h->streams;
    if (h->streams)
        h->streams->prev = s;
    h->streams = s;
    nghttp2_data_provider dp = {.source.ptr = s, .read_callback = read_body};
    int32_t id = nghttp2_submit_request(h->ng, NULL, nv, m, has_body ? &dp : NULL, s);
    if (id < 0) {
        h2s_free(s);
        return KEEL_EINVAL;
    }
    s->sid = id;
    uc->h2s = s;
    return 0;
}

void keel_uph2_body(struct keel_upconn *uc, const char *data, size_t len)
{
    struct keel_uph2s *s = uc->h2s;
    if (!s || keel_buf_append(&s->body, data, len) != 0)
        return; /* bounded by keel_stream_body_room(); never reached */
    if (s->deferred && s->sid) {
        s->deferred = false;
        nghttp2_session_resume_data(s->h->ng, s->sid);
    }
}

void keel_uph2_body_end(struct keel_upconn *uc)
{
    struct keel_uph2s *s = uc->h2s;
    if (!s)
        return;
    s->body_end = true;
    if (s->deferred && s->sid) {
        s->deferred = false;
        nghttp2_session_resume_data(s->h->ng, s->sid);
    }
}

size_t keel_uph2_pending(const struct keel_upconn *uc)
{
    return uc->h2s ? uc->h2s->body.len : 0;
}

bool keel_uph2_window(struct keel_upconn *uc, bool pause)
{
    struct keel_uph2s *s = uc->h2s;
    if (!s)
        return false;
    s->paused = pause;
    if (pause || !s->unacked || !s->sid)
        return false;
    nghttp2_session_consume_stream(s->h->ng, s->sid, s->unacked);
    s->unacked = 0;
    return true;
}

void keel_uph2_detach(struct keel_upconn *uc)
{
    struct keel_uph2s *s = uc->h2s;
    if (!s)
        return;
    uc->h2s = NULL;
    s->uc = NULL;
    if (!s->sid) {
        h2s_free(s); /* nghttp2 closed it already */
        return;
    }
    if (!(s->remote_done && s->local_done))
        nghttp2_submit_rst_stream(s->h->ng, NGHTTP2_FLAG_NONE, s->sid, NGHTTP2_CANCEL);
    if (s->unacked) /* what the client will never take: the window of a stream that goes on (or not) */
        nghttp2_session_consume_stream(s->h->ng, s->sid, s->unacked);
    s->unacked = 0;
}

int keel_uph2_produce(struct keel_upconn *c)
{
    struct keel_uph2 *h = c->h2;
    if (h->in_recv)
        return 0; /* the caller of mem_recv produces when it returns */
    while (c->out.len < KEEL_PROXY_OUT_HIGH) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(h->ng, &data);
        if (n < 0)
            return KEEL_EIO;
        if (n == 0)
            break;
        if (keel_buf_append(&c->out, data, (size_t)n) != 0)
            return KEEL_ENOMEM;
    }
    return 0;
}

int keel_uph2_consume(struct keel_upconn *c)
{
    struct keel_uph2 *h = c->h2;
    h->in_recv = true;
    ssize_t n = nghttp2_session_mem_recv(h->ng, (const uint8_t *)c->in.data, c->in.len);
    h->in_recv = false;
    keel_buf_reset(&c->in);
    if (n < 0) {
        keel_log(KEEL_LOG_DEBUG, "HTTP/2 upstream %s: %s", c->key, nghttp2_strerror((int)n));
        h->broken = true;
        return KEEL_EIO;
    }
    if (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng))
        h->broken = true;
    return 0;
}

bool keel_uph2_in_recv(const struct keel_upconn *c)
{
    return c->h2 && c->h2->in_recv;
}

bool keel_uph2_reusable(const struct keel_upconn *c)
{
    const struct keel_uph2 *h = c->h2;
    return h && !h->broken && !h->goaway && nghttp2_session_want_read(h->ng) &&
           nghttp2_session_get_next_stream_id(h->ng) < (1u << 30);
}

uint32_t keel_uph2_peer_streams(const struct keel_upconn *c)
{
    return c->h2 ? nghttp2_session_get_remote_settings(c->h2->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS) : 0;
}
