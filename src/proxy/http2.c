/*
 * http2.c - downstream HTTP/2 connections (the HTTP/2 codec of stream.h), on nghttp2.
 *
 * A connection arrives here from http1.c once it is known to speak HTTP/2:
 * the client sent the connection preface on a plain port (h2c with prior
 * knowledge) or chose "h2" by ALPN in the TLS handshake. nghttp2 does the
 * framing, HPACK, flow control and the protocol checks (pseudo-header rules,
 * Content-Length against DATA, connection-specific fields); this file turns
 * each request stream into a keel_stream and answers through the ops below.
 * Upstreams still speak HTTP/1.1: a request body of unknown length goes out
 * chunked, and a chunked response comes back as DATA frames.
 *
 * Memory is bounded per stream and per connection: automatic WINDOW_UPDATEs
 * are off, so a client can send a stream at most one window (64 KiB) ahead of
 * what the upstream has taken (nghttp2_session_consume() as bytes leave);
 * response bytes wait in a per-stream buffer that the upstream stops filling
 * above KEEL_PROXY_OUT_HIGH, and frames are produced only while the socket
 * keeps up. At most KEEL_H2_MAX_STREAMS streams run at once per connection.
 *
 * Ownership: struct h2conn owns the socket, the TLS state, the nghttp2
 * session and one struct h2s per open stream (freed when nghttp2 closes the
 * stream, or with the connection). An h2s owns its keel_stream until the
 * exchange calls done(); response bytes queued at that point stay in the h2s
 * until they are sent. nghttp2 is never re-entered: frames are produced only
 * outside its callbacks (c->busy), and streams starved of response bytes are
 * resumed after each write.
 *
 * Failure: a protocol error from the client ends the connection with GOAWAY
 * (nghttp2), a bad request on one stream is answered 400/431 on that stream,
 * a client that resets a stream ends its exchange with DC, a response cut by
 * the upstream resets the stream (INTERNAL_ERROR).
 */
#include "proxy/stream.h"

#include "base/err.h"
#include "base/log.h"
#include "base/str.h"

#include <nghttp2/nghttp2.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEEL_H2_MAX_STREAMS 256
#define KEEL_H2_CONN_WINDOW (1u << 20)
#define KEEL_H2_SPARE_STREAMS 32u /* ended stream states a connection keeps for reuse (when KEEL_PROXY_REUSE) */
#define KEEL_H2_SPARE_BUF (16u << 10) /* ...with their buffers, when no larger than this */

struct h2s;

struct h2conn {
    struct keel_downstream ds; /* first: the exchange's view of the connection */
    int fd;
    struct keel_io io;
    struct keel_timer idle;
    struct keel_defer free_d;
    struct keel_tls_conn *tls;
    nghttp2_session *ng;
    struct keel_buf out;       /* frames produced, not yet written */
    struct h2s *streams;       /* open streams (doubly linked) */
    struct h2s *spare;         /* ended stream states kept for reuse (through next), at most KEEL_H2_SPARE_STREAMS */
    unsigned n_spare;
    struct keel_defer flush_d; /* a flush queued for the end of this loop iteration */
    bool flush_queued;
    bool busy;   /* inside nghttp2 (recv or send): do not produce frames now */
    bool again;  /* a flush was asked for while busy */
    bool goaway; /* draining: GOAWAY sent */
    bool closed;
};

struct h2s {
    struct h2conn *c;
    struct h2s *prev, *next;
    int32_t id;
    struct keel_stream *st;  /* NULL once the exchange is over */
    struct keel_buf reqbody; /* request DATA not yet sent upstream */
    struct keel_buf resp;    /* response DATA not yet framed */
    int bad;                 /* status to answer instead of routing (400, 431), 0 = none */
    bool req_end;            /* the client ended its side */
    bool resp_end;           /* the whole response is in resp (EOF once it drains) */
    bool has_body;           /* a data provider was attached */
    bool deferred;           /* the data provider waits for bytes */
    bool gone;               /* nghttp2 closed the stream (or the connection is closing): send nothing on it */
    nghttp2_nv *trailers;    /* response trailers (gRPC status), one allocation with their bytes, or NULL */
    size_t n_trailers;
};

static void conn_close(struct h2conn *c);
static void conn_flush(struct h2conn *c);
static void on_idle(struct keel_loop *loop, struct keel_timer *t);
static void flush_soon(struct h2conn *c);

static inline struct h2s *h2s_of(const struct keel_stream *st)
{
    return st->codec;
}

/* ---- streams --------------------------------------------------------------------------------------------------- */

static void h2s_free(struct h2s *s)
{
    struct h2conn *c = s->c;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s->trailers);
    s->trailers = NULL;
    if (KEEL_PROXY_REUSE && c->n_spare < KEEL_H2_SPARE_STREAMS && !c->closed) {
        /* kept for the connection's next stream, with its buffers unless they grew large */
        if (s->reqbody.cap > KEEL_H2_SPARE_BUF)
            keel_buf_free(&s->reqbody);
        if (s->resp.cap > KEEL_H2_SPARE_BUF)
            keel_buf_free(&s->resp);
        keel_buf_reset(&s->reqbody);
        keel_buf_reset(&s->resp);
        s->next = c->spare;
        c->spare = s;
        c->n_spare++;
        return;
    }
    keel_buf_free(&s->reqbody);
    keel_buf_free(&s->resp);
    free(s);
}

/* A cleared stream state: a spare one of the connection, else new. NULL when out of memory. */
static struct h2s *h2s_take(struct h2conn *c)
{
    struct h2s *s = c->spare;
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (s) {
            keel_buf_init(&s->reqbody, 1u << 20);
            keel_buf_init(&s->resp, KEEL_PROXY_OUT_MAX);
        }
        return s;
    }
    c->spare = s->next;
    c->n_spare--;
    struct keel_buf reqbody = s->reqbody, resp = s->resp;
    *s = (struct h2s){.reqbody = reqbody, .resp = resp};
    return s;
}

static void h2s_spares_free(struct h2conn *c)
{
    for (struct h2s *s = c->spare, *next; s; s = next) {
        next = s->next;
        keel_buf_free(&s->reqbody);
        keel_buf_free(&s->resp);
        free(s);
    }
    c->spare = NULL;
    c->n_spare = 0;
}

/* The exchange of s ends without a complete response from the client's side (reset, connection gone). */
static void h2s_abandon(struct h2s *s, const char *details)
{
    struct keel_stream *st = s->st;
    if (!st || st->finished)
        return;
    st->flags |= KEEL_RF(DOWNSTREAM_CONNECTION_TERMINATION);
    if (!st->details)
        st->details = details;
    keel_stream_finish(st); /* done() clears s->st and frees st */
}

/* ---- the codec's side of the exchange (stream.h) --------------------------------------------------------------- */

static ssize_t read_response(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                             nghttp2_data_source *src, void *user)
{
    (void)user;
    struct h2s *s = src->ptr;
    size_t n = s->resp.len < len ? s->resp.len : len;
    if (n) {
        memcpy(buf, s->resp.data, n);
        keel_buf_consume(&s->resp, n);
    }
    if (s->resp.len == 0 && s->resp_end) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (s->n_trailers && nghttp2_submit_trailer(ng, id, s->trailers, s->n_trailers) == 0)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM; /* the trailers end the stream */
        return (ssize_t)n;
    }
    if (n == 0) {
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

static void resume(struct h2s *s)
{
    if (s->deferred) {
        s->deferred = false;
        nghttp2_session_resume_data(s->c->ng, s->id);
    }
}

static int h2_head(struct keel_stream *st, int status, struct keel_str reason, const struct keel_http_header *h,
                   size_t n)
{
    (void)reason;
    struct h2s *s = h2s_of(st);
    nghttp2_nv nv[KEEL_HTTP_MAX_HEADERS + 16];
    size_t m = 0, cap = sizeof(nv) / sizeof(nv[0]) - 1;
    char code[KEEL_U64_STRLEN], clen[KEEL_U64_STRLEN];
    keel_u64_to_str((uint64_t)status, code);
    nv[m++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)code, 7, strlen(code), NGHTTP2_NV_FLAG_NONE};
    char names[8192]; /* lower-cased names (nghttp2 copies them); a name that does not fit goes to the arena */
    size_t used = 0;
    for (size_t i = 0; i < n && m < cap; i++) {
        /* HTTP/2 field names are lower case; HTTP/1 upstreams may send any case */
        size_t len = h[i].name.n;
        char *name = used + len <= sizeof(names) ? names + used : keel_arena_alloc(st->arena, len + 1);
        if (!name)
            return KEEL_ENOMEM;
        if (name == names + used)
            used += len;
        for (size_t k = 0; k < len; k++) {
            char c = h[i].name.p[k];
            name[k] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
        }
        nv[m++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)h[i].value.p, len, h[i].value.n, NGHTTP2_NV_FLAG_NONE};
    }
    if (!st->local && st->resp.has_content_length && m < sizeof(nv) / sizeof(nv[0])) {
        keel_u64_to_str(st->resp.content_length, clen);
        nv[m++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)clen, 14, strlen(clen), NGHTTP2_NV_FLAG_NONE};
    }
    nghttp2_data_provider dp = {.source.ptr = s, .read_callback = read_response};
    s->has_body = st->resp_mode != KEEL_BODY_NONE;
    int rc = nghttp2_submit_response(s->c->ng, s->id, nv, m, s->has_body ? &dp : NULL);
    return rc == 0 ? 0 : KEEL_EINVAL;
}

static void h2_interim(struct keel_stream *st, const char *raw, size_t len)
{
    (void)st; /* 100 Continue means nothing to an HTTP/2 client that already sends its body */
    (void)raw;
    (void)len;
}

static void h2_body(struct keel_stream *st, const char *raw, size_t raw_len, const char *data, size_t len)
{
    (void)raw;
    (void)raw_len;
    struct h2s *s = h2s_of(st);
    if (len && keel_buf_append(&s->resp, data, len) == 0)
        resume(s);
}

static void h2_end(struct keel_stream *st)
{
    struct h2s *s = h2s_of(st);
    s->resp_end = true;
    if (st->n_trailers && s->has_body) {
        /* copied: the stream's arena goes away before the DATA is all sent */
        size_t bytes = st->n_trailers * sizeof(nghttp2_nv);
        for (size_t i = 0; i < st->n_trailers; i++)
            bytes += st->trailers[i].name.n + st->trailers[i].value.n + 2;
        s->trailers = malloc(bytes);
        if (s->trailers) {
            char *p = (char *)(s->trailers + st->n_trailers);
            for (size_t i = 0; i < st->n_trailers; i++) {
                const struct keel_http_header *t = &st->trailers[i];
                nghttp2_nv *nv = &s->trailers[i];
                nv->name = (uint8_t *)p;
                for (size_t k = 0; k < t->name.n; k++)
                    p[k] =
                        (char)((t->name.p[k] >= 'A' && t->name.p[k] <= 'Z') ? t->name.p[k] - 'A' + 'a' : t->name.p[k]);
                nv->namelen = t->name.n;
                p += t->name.n + 1;
                memcpy(p, t->value.p, t->value.n);
                nv->value = (uint8_t *)p;
                nv->valuelen = t->value.n;
                p += t->value.n + 1;
                nv->flags = NGHTTP2_NV_FLAG_NONE;
            }
            s->n_trailers = st->n_trailers;
        }
    }
    resume(s);
}

static void h2_flush(struct keel_stream *st)
{
    flush_soon(h2s_of(st)->c);
}

static size_t h2_pending(const struct keel_stream *st)
{
    return h2s_of(st)->resp.len;
}

/* Moves request DATA to the upstream. */
static void h2_pump(struct keel_stream *st)
{
    struct h2s *s = h2s_of(st);
    size_t taken = 0;
    while (s->reqbody.len && keel_stream_body_room(st)) {
        size_t take = s->reqbody.len < KEEL_PROXY_READ_CHUNK ? s->reqbody.len : KEEL_PROXY_READ_CHUNK;
        keel_stream_body_out(st, s->reqbody.data, take);
        keel_buf_consume(&s->reqbody, take);
        st->req_wire_bytes += take;
        taken += take;
    }
    if (s->req_end && s->reqbody.len == 0 && !st->req_done && st->uc)
        keel_stream_body_end(st);
    if (taken)
        nghttp2_session_consume(s->c->ng, s->id, taken); /* let the client send more */
}

static void h2_done(struct keel_stream *st)
{
    struct h2s *s = h2s_of(st);
    struct h2conn *c = s->c;
    s->st = NULL;
    if (!st->resp_done && !s->gone && !c->closed) {
        /* the response was cut: the client must not take what it got for the whole */
        nghttp2_submit_rst_stream(c->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    }
    if (s->reqbody.len && !s->gone && !c->closed) {
        nghttp2_session_consume(c->ng, s->id, s->reqbody.len); /* never forwarded: free the window */
        keel_buf_reset(&s->reqbody);
    }
    keel_stream_free(st);
    flush_soon(c);
}

static void h2_shutdown(struct keel_downstream *ds, bool now)
{
    struct h2conn *c = (struct h2conn *)ds;
    if (now)
        conn_close(c);
    else
        conn_flush(c); /* sends GOAWAY (pw->draining); closes once the streams are done */
}

static const struct keel_ds_ops h2_ops = {
    .head = h2_head,
    .interim = h2_interim,
    .body = h2_body,
    .end = h2_end,
    .flush = h2_flush,
    .pending = h2_pending,
    .pump = h2_pump,
    .done = h2_done,
    .shutdown = h2_shutdown,
};

/* ---- nghttp2 callbacks: requests in --------------------------------------------------------------------------- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct h2conn *c = user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2s *s = h2s_take(c);
    struct keel_stream *st = s ? keel_stream_new(&c->ds) : NULL;
    if (!st) {
        if (s) {
            keel_buf_free(&s->reqbody);
            keel_buf_free(&s->resp);
        }
        free(s);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets this stream */
    }
    s->c = c;
    s->id = f->hd.stream_id;
    s->st = st;
    s->next = c->streams;
    if (c->streams)
        c->streams->prev = s;
    c->streams = s;
    st->codec = s;
    st->req.version = KEEL_HTTP_2;
    st->req.keep_alive = true;
    keel_timer_stop(&c->idle);
    nghttp2_session_set_stream_user_data(ng, s->id, s);
    return 0;
}

/* A :path nghttp2 accepted may still hold bytes an HTTP/1 request line cannot carry. */
static bool path_ok(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] <= 0x20 || p[i] >= 0x7f || p[i] == '#') /* RFC 3986: no fragment, no raw bytes past ASCII */
            return false;
    return n > 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user)
{
    (void)flags;
    (void)user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers: an HTTP/1.1 upstream request carries none */
    struct h2s *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!s || !s->st || s->bad)
        return 0;
    struct keel_stream *st = s->st;
    struct keel_http_head *r = &st->req;
    struct keel_str n = {(const char *)name, namelen}, v = {(const char *)value, valuelen};
    st->req_wire_bytes += namelen + valuelen;
    if (namelen && name[0] == ':') {
        struct keel_str copy = keel_stream_dup(st->arena, v);
        if (keel_str_eq_c(n, ":method")) {
            r->method = copy;
        } else if (keel_str_eq_c(n, ":scheme")) {
            r->scheme = copy;
        } else if (keel_str_eq_c(n, ":authority")) {
            if (!keel_h1_authority_valid(v.p, v.n)) {
                s->bad = 400; /* what the HTTP/1.1 parser answers to the same Host */
                return 0;
            }
            r->authority = copy;
        } else if (keel_str_eq_c(n, ":path")) {
            if (!path_ok(value, valuelen)) {
                s->bad = 400;
                return 0;
            }
            r->target = copy;
            const char *q = memchr(copy.p, '?', copy.n);
            r->path = (struct keel_str){copy.p, q ? (size_t)(q - copy.p) : copy.n};
            r->query = q ? (struct keel_str){q + 1, copy.n - (size_t)(q - copy.p) - 1} : KEEL_STR_LIT("");
        }
        return 0;
    }
    if (keel_str_eq_c(n, "host")) {
        if (!keel_h1_authority_valid(v.p, v.n))
            s->bad = 400;
        else if (!r->authority.n)
            r->authority = keel_stream_dup(st->arena, v);
        return 0;
    }
    if (keel_str_eq_c(n, "content-length")) {
        uint64_t cl;
        if (keel_str_to_u64(v, UINT64_MAX, &cl) == 0) {
            r->has_content_length = true;
            r->content_length = cl;
        }
        return 0;
    }
    if (keel_str_eq_c(n, "cookie")) {
        /* RFC 9113 §8.2.3: split cookie fields are joined with "; " for an HTTP/1.1 hop */
        for (size_t i = 0; i < r->nheaders; i++) {
            if (keel_str_eq_c(r->headers[i].name, "cookie")) {
                struct keel_str old = r->headers[i].value;
                char *j = keel_arena_xalloc(st->arena, old.n + 2 + valuelen + 1);
                memcpy(j, old.p, old.n);
                memcpy(j + old.n, "; ", 2);
                memcpy(j + old.n + 2, value, valuelen);
                j[old.n + 2 + valuelen] = '\0';
                r->headers[i].value = (struct keel_str){j, old.n + 2 + valuelen};
                return 0;
            }
        }
    }
    if (r->nheaders >= KEEL_HTTP_MAX_HEADERS) {
        s->bad = 431;
        return 0;
    }
    r->headers[r->nheaders++] = (struct keel_http_header){keel_stream_dup(st->arena, n), keel_stream_dup(st->arena, v)};
    return 0;
}

/* The request head is complete: route it. */
static void request_head_done(struct h2s *s, bool end_stream)
{
    struct keel_stream *st = s->st;
    struct keel_http_head *r = &st->req;
    s->req_end = end_stream;
    if (end_stream) {
        st->req_mode = KEEL_BODY_NONE;
        st->req_done = true;
    } else if (r->has_content_length) {
        st->req_mode = KEEL_BODY_LENGTH;
        st->req_left = r->content_length;
    } else {
        st->req_mode = KEEL_BODY_CHUNKED;
    }
    if (s->bad) {
        keel_stream_local_reply(st, s->bad, KEEL_RF(DOWNSTREAM_PROTOCOL_ERROR), "http2.invalid_header",
                                s->bad == 431 ? "too many header fields" : "invalid :path or :authority",
                                s->bad == 431 ? 22 : 28, NULL, 0);
        return;
    }
    if (keel_str_eq_c(r->method, "CONNECT")) {
        keel_stream_local_reply(st, 501, 0, "upgrade_not_supported", "", 0, NULL, 0);
        return;
    }
    if (!r->authority.n) {
        keel_stream_local_reply(st, 400, KEEL_RF(DOWNSTREAM_PROTOCOL_ERROR), "http2.missing_authority",
                                "missing :authority", 18, NULL, 0);
        return;
    }
    keel_stream_start(st);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    (void)user;
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
        return 0;
    struct h2s *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (!s || !s->st)
        return 0;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        request_head_done(s, end);
        return 0;
    }
    if (end) { /* the last DATA frame, or trailers */
        s->req_end = true;
        keel_stream_request_body(s->st);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *user)
{
    (void)flags;
    (void)user;
    struct h2s *s = nghttp2_session_get_stream_user_data(ng, id);
    if (!s || !s->st) {
        nghttp2_session_consume(ng, id, len); /* nobody wants it: keep the windows open */
        return 0;
    }
    if (keel_buf_append(&s->reqbody, data, len) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    keel_stream_request_body(s->st);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *user)
{
    (void)error_code;
    struct h2conn *c = user;
    struct h2s *s = nghttp2_session_get_stream_user_data(ng, id);
    if (!s)
        return 0;
    s->gone = true;
    h2s_abandon(s, "downstream_remote_reset");
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    h2s_free(s);
    if (!c->streams && !c->closed)
        keel_timer_start(c->ds.pw->loop, &c->idle, KEEL_PROXY_IDLE_MS, on_idle, c);
    return 0;
}

/* ---- the connection ------------------------------------------------------------------------------------------- */

static void conn_free_later(struct keel_loop *loop, struct keel_defer *d)
{
    (void)loop;
    struct h2conn *c = d->data;
    keel_buf_free(&c->out);
    h2s_spares_free(c);
    free(c);
}

static void conn_close(struct h2conn *c)
{
    if (c->closed)
        return;
    c->closed = true;
    while (c->streams) {
        struct h2s *s = c->streams;
        s->gone = true;
        h2s_abandon(s, "downstream_remote_disconnect");
        h2s_free(s);
    }
    nghttp2_session_del(c->ng);
    c->ng = NULL;
    keel_io_stop(&c->io);
    keel_timer_stop(&c->idle);
    keel_tls_conn_free(c->tls);
    c->tls = NULL;
    close(c->fd);
    c->fd = -1;
    keel_downstream_unlink(&c->ds);
    c->ds.pw->conns--;
    keel_stats_add(c->ds.pw->stats, KEEL_STAT_DOWNSTREAM_CX_ACTIVE, -1);
    keel_loop_defer(c->ds.pw->loop, &c->free_d, conn_free_later, c);
}

static ssize_t conn_write(struct h2conn *c, const void *buf, size_t len)
{
    return c->tls ? keel_tls_write(c->tls, buf, len) : keel_sock_write(c->fd, buf, len);
}

static ssize_t conn_read(struct h2conn *c, void *buf, size_t len)
{
    return c->tls ? keel_tls_read(c->tls, buf, len) : keel_sock_read(c->fd, buf, len);
}

/* Produces frames while the socket keeps up, writes them, and lets streams whose response buffer drained take
 * more from their upstream. Closes the connection when nghttp2 has nothing more to say or hear. Inside nghttp2
 * (c->busy) it only notes that another round is wanted. */
static void conn_flush(struct h2conn *c)
{
    if (c->closed)
        return;
    if (c->busy) {
        c->again = true;
        return;
    }
    c->busy = true;
    if (c->ds.pw->draining && !c->goaway) {
        c->goaway = true;
        nghttp2_submit_goaway(c->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(c->ng),
                              NGHTTP2_NO_ERROR, NULL, 0);
    }
    int rc = 0;
    for (int round = 0; round < 16 && rc == 0; round++) {
        c->again = false;
        while (c->out.len < KEEL_PROXY_OUT_HIGH) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(c->ng, &data);
            if (n <= 0) {
                rc = n < 0 ? KEEL_EIO : 0;
                break;
            }
            rc = keel_buf_append(&c->out, data, (size_t)n);
            if (rc)
                break;
        }
        while (rc == 0 && c->out.len) {
            ssize_t n = conn_write(c, c->out.data, c->out.len);
            if (n == KEEL_EAGAIN)
                break;
            if (n < 0) {
                rc = (int)n;
                break;
            }
            keel_stats_add(c->ds.pw->stats, KEEL_STAT_DOWNSTREAM_CX_TX_BYTES, n);
            keel_buf_consume(&c->out, (size_t)n);
        }
        if (rc || c->out.len)
            break; /* failed, or the socket is full: wait for it */
        for (struct h2s *s = c->streams; s; s = s->next) {
            struct keel_stream *st = s->st;
            if (st && st->uc && st->resp_started && !st->resp_done && s->resp.len < KEEL_PROXY_OUT_HIGH)
                keel_stream_resume_response(st); /* may finish st (done() does not free s) */
        }
        if (!c->again && !nghttp2_session_want_write(c->ng))
            break;
    }
    c->busy = false;
    if (rc || (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng) && c->out.len == 0)) {
        conn_close(c);
        return;
    }
    uint32_t want = KEEL_IO_READ;
    if (c->out.len)
        want |= KEEL_IO_WRITE;
    if (want != c->io.events)
        keel_io_modify(&c->io, want);
}

static void on_flush_soon(struct keel_loop *loop, struct keel_defer *d)
{
    (void)loop;
    struct h2conn *c = d->data;
    c->flush_queued = false;
    conn_flush(c);
}

/* One flush at the end of the loop iteration for everything the streams of c did in it: the responses that
 * complete together (upstream answers read in one epoll batch) go out in one write. */
static void flush_soon(struct h2conn *c)
{
    if (c->closed || c->flush_queued)
        return;
    c->flush_queued = true;
    keel_loop_defer(c->ds.pw->loop, &c->flush_d, on_flush_soon, c);
}

static void on_idle(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct h2conn *c = t->data;
    if (!c->streams)
        conn_close(c);
}

/* Feeds bytes to nghttp2. Returns false when the connection was closed. */
static bool conn_feed(struct h2conn *c, const char *p, size_t n)
{
    c->busy = true;
    ssize_t rc = nghttp2_session_mem_recv(c->ng, (const uint8_t *)p, n);
    c->busy = false;
    if (c->closed)
        return false;
    if (rc < 0) {
        keel_log(KEEL_LOG_DEBUG, "HTTP/2 connection from %s: %s", c->ds.peer, nghttp2_strerror((int)rc));
        keel_stats_add(c->ds.pw->stats, KEEL_STAT_DOWNSTREAM_CX_PROTOCOL_ERROR, 1);
        conn_close(c);
        return false;
    }
    return true;
}

static void on_io(struct keel_loop *loop, struct keel_io *io, uint32_t ev)
{
    (void)loop;
    struct h2conn *c = io->data;
    if (ev & (KEEL_IO_READ | KEEL_IO_ERROR)) {
        char tmp[KEEL_PROXY_READ_CHUNK];
        for (int i = 0; i < 4; i++) {
            ssize_t n = conn_read(c, tmp, sizeof(tmp));
            if (n == KEEL_EAGAIN)
                break;
            if (n <= 0) {
                if (!c->streams)
                    keel_stats_add(c->ds.pw->stats, KEEL_STAT_DOWNSTREAM_CX_DESTROY_REMOTE, 1);
                conn_close(c);
                return;
            }
            keel_stats_add(c->ds.pw->stats, KEEL_STAT_DOWNSTREAM_CX_RX_BYTES, n);
            if (!conn_feed(c, tmp, (size_t)n))
                return;
            if ((size_t)n < sizeof(tmp) && !c->tls)
                break;
        }
    }
    conn_flush(c);
}

void keel_http2_accept(const struct keel_downstream *ds, int fd, struct keel_tls_conn *tls, const char *initial,
                       size_t n)
{
    struct h2conn *c = calloc(1, sizeof(*c));
    nghttp2_session_callbacks *cb = NULL;
    nghttp2_option *opt = NULL;
    if (!c || nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&opt) != 0)
        goto fail;
    c->ds = *ds;
    c->ds.ops = &h2_ops;
    c->fd = fd;
    c->tls = tls;
    keel_buf_init(&c->out, KEEL_PROXY_OUT_MAX);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_no_closed_streams(opt, 1); /* no RFC 7540 priority tree to keep them for */
    int rc = nghttp2_session_server_new2(&c->ng, cb, c, opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    cb = NULL;
    opt = NULL;
    if (rc != 0)
        goto fail;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, KEEL_H2_MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 65535},
        /* RFC 9218: keel does not schedule by RFC 7540 priorities (nor does Envoy or HAProxy), so nghttp2 keeps
         * no dependency tree: streams are served in turn, and priority frames cost nothing */
        {NGHTTP2_SETTINGS_NO_RFC7540_PRIORITIES, 1},
    };
    if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0 ||
        nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0, KEEL_H2_CONN_WINDOW) != 0)
        goto fail;
    keel_io_init(&c->io, fd, on_io, c);
    keel_timer_init(&c->idle);
    c->idle.data = c;
    if (keel_io_start(c->ds.pw->loop, &c->io, KEEL_IO_READ) != 0)
        goto fail;
    keel_downstream_link(&c->ds);
    keel_stats_add(c->ds.pw->stats, KEEL_STAT_DOWNSTREAM_CX_HTTP2_TOTAL, 1);
    keel_timer_start(c->ds.pw->loop, &c->idle, KEEL_PROXY_IDLE_MS, on_idle, c);
    if (n && !conn_feed(c, initial, n))
        return;
    /* TLS may already hold decrypted records the socket will not announce again */
    on_io(c->ds.pw->loop, &c->io, c->tls ? KEEL_IO_READ : 0);
    return;
fail:
    if (cb)
        nghttp2_session_callbacks_del(cb);
    if (opt)
        nghttp2_option_del(opt);
    if (c && c->ng)
        nghttp2_session_del(c->ng);
    if (c)
        keel_buf_free(&c->out);
    free(c);
    keel_tls_conn_free(tls);
    close(fd);
    ds->pw->conns--;
    keel_stats_add(ds->pw->stats, KEEL_STAT_DOWNSTREAM_CX_ACTIVE, -1);
}
