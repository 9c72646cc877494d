/*
 * upstream_h2.c - HTTP/2 to upstream endpoints (client side, nghttp2).
 *
 * Used when the destination port speaks HTTP/2 (Istio's `http2` and `grpc`
 * port protocols), when a DestinationRule sets h2UpgradePolicy: UPGRADE, or
 * with useClientProtocol for an HTTP/2 client (exchange.c decides). gRPC
 * needs this: its status travels in trailers, which HTTP/1.1 upstreams do not
 * carry.
 *
 * One request stream at a time per connection, like the HTTP/1.1 pool: an
 * upstream connection is attached to one keel_stream, and goes back to the
 * endpoint's pool (upstream.c, the HTTP/2 list) when its stream ended cleanly
 * and the session can take another (no GOAWAY, no error). Multiplexing many
 * streams on one upstream connection is the next step; this keeps the
 * pool, back-pressure and failure model of upstream.c unchanged.
 *
 * Bytes: nghttp2 writes frames into uc->out (keel_uph2_produce, called by
 * keel_upstream_flush) and reads uc->in (keel_uph2_consume). The request body
 * waits in a bounded buffer read by the DATA provider; the response reaches
 * the exchange through keel_stream_upstream_head/_data/_end, called from
 * nghttp2's callbacks. Response back-pressure is TCP's: upstream.c stops
 * reading the socket while the client is behind, and nghttp2 keeps
 * replenishing the window only for bytes it was given.
 *
 * Ownership: struct keel_uph2 belongs to its keel_upconn and is freed with
 * it (in the connection's deferred free, so a close from inside a callback
 * never frees the session under nghttp2's feet). Failure: a reset stream, a
 * GOAWAY that covers it or a protocol error fails the attempt through
 * keel_upstream_fail(), so the route's retry policy applies.
 */
#include "proxy/stream.h"

#include "base/err.h"
#include "base/log.h"

#include <nghttp2/nghttp2.h>

#include <stdlib.h>
#include <string.h>

#define KEEL_UPH2_BODY_MAX (1u << 20)

struct keel_uph2 {
    nghttp2_session *ng;
    int32_t sid;          /* the request stream, 0 when none */
    struct keel_buf body; /* request DATA not yet framed */
    bool body_end;        /* the request body is complete */
    bool deferred;        /* the DATA provider waits for bytes */
    bool broken;          /* GOAWAY received or a stream reset: not reusable */
    bool final_seen;      /* the final (non-1xx) response head arrived */
    bool remote_done;     /* the server ended the stream (nghttp2 closes it right after the callbacks) */
};

/* ---- callbacks ------------------------------------------------------------------------------------------------- */

static struct keel_stream *stream_of(struct keel_upconn *uc, int32_t id)
{
    return uc->h2 && id == uc->h2->sid ? uc->st : NULL;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user)
{
    (void)ng;
    (void)flags;
    struct keel_upconn *uc = user;
    struct keel_stream *st = stream_of(uc, f->hd.stream_id);
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
    (void)ng;
    struct keel_upconn *uc = user;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        uc->h2->broken = true;
        return 0;
    }
    struct keel_stream *st = stream_of(uc, f->hd.stream_id);
    if (!st || (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA))
        return 0;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (f->hd.type == NGHTTP2_HEADERS && !st->resp_started) {
        if (st->resp.status < 200) {
            /* interim (100 Continue): forget it, the final head follows */
            st->resp.status = 0;
            st->resp.nheaders = 0;
            st->resp.has_content_length = false;
            return 0;
        }
        uc->h2->final_seen = true;
        keel_stream_upstream_head(st, end);
        st = stream_of(uc, f->hd.stream_id); /* the head may have ended the stream (a head we cannot send) */
    }
    if (st && end) {
        uc->h2->remote_done = true;
        keel_stream_upstream_end(st);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len, void *user)
{
    (void)ng;
    (void)flags;
    struct keel_stream *st = stream_of(user, id);
    if (st)
        keel_stream_upstream_data(st, (const char *)data, len);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t error_code, void *user)
{
    (void)ng;
    struct keel_upconn *uc = user;
    if (!uc->h2 || id != uc->h2->sid)
        return 0;
    uc->h2->sid = 0;
    struct keel_stream *st = uc->st;
    if (error_code != NGHTTP2_NO_ERROR)
        uc->h2->broken = true;
    if (st && !st->resp_done)
        keel_upstream_fail(uc, KEEL_ECLOSED); /* reset before the response ended */
    return 0;
}

static ssize_t read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *user)
{
    (void)ng;
    (void)id;
    (void)user;
    struct keel_uph2 *h = src->ptr;
    size_t n = h->body.len < len ? h->body.len : len;
    if (n) {
        memcpy(buf, h->body.data, n);
        keel_buf_consume(&h->body, n);
    }
    if (h->body.len == 0 && h->body_end) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
    }
    if (n == 0) {
        h->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

/* ---- the connection's side ------------------------------------------------------------------------------------- */

int keel_uph2_new(struct keel_upconn *uc)
{
    struct keel_uph2 *h = calloc(1, sizeof(*h));
    nghttp2_session_callbacks *cb = NULL;
    if (!h || nghttp2_session_callbacks_new(&cb) != 0) {
        free(h);
        return KEEL_ENOMEM;
    }
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    int rc = nghttp2_session_client_new(&h->ng, cb, uc);
    nghttp2_session_callbacks_del(cb);
    if (rc != 0 || nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, NULL, 0) != 0) {
        if (h->ng)
            nghttp2_session_del(h->ng);
        free(h);
        return KEEL_ENOMEM;
    }
    keel_buf_init(&h->body, KEEL_UPH2_BODY_MAX);
    uc->h2 = h;
    return 0;
}

void keel_uph2_free(struct keel_upconn *uc)
{
    struct keel_uph2 *h = uc->h2;
    if (!h)
        return;
    nghttp2_session_del(h->ng);
    keel_buf_free(&h->body);
    free(h);
    uc->h2 = NULL;
}

int keel_uph2_request(struct keel_upconn *uc, const struct keel_http_head *req, const struct keel_http_header *fields,
                      size_t n, bool has_body)
{
    struct keel_uph2 *h = uc->h2;
    struct keel_stream *st = uc->st;
    nghttp2_nv nv[KEEL_HTTP_MAX_HEADERS + 24];
    size_t m = 0, cap = sizeof(nv) / sizeof(nv[0]);
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
    keel_buf_reset(&h->body);
    h->body_end = !has_body;
    h->deferred = false;
    h->final_seen = false;
    h->remote_done = false;
    nghttp2_data_provider dp = {.source.ptr = h, .read_callback = read_body};
    int32_t id = nghttp2_submit_request(h->ng, NULL, nv, m, has_body ? &dp : NULL, NULL);
    if (id < 0)
        return KEEL_EINVAL;
    h->sid = id;
    return 0;
}

void keel_uph2_body(struct keel_upconn *uc, const char *data, size_t len)
{
    struct keel_uph2 *h = uc->h2;
    if (keel_buf_append(&h->body, data, len) != 0)
        return; /* bounded by keel_stream_body_room(); never reached */
    if (h->deferred && h->sid) {
        h->deferred = false;
        nghttp2_session_resume_data(h->ng, h->sid);
    }
}

void keel_uph2_body_end(struct keel_upconn *uc)
{
    struct keel_uph2 *h = uc->h2;
    h->body_end = true;
    if (h->deferred && h->sid) {
        h->deferred = false;
        nghttp2_session_resume_data(h->ng, h->sid);
    }
}

size_t keel_uph2_pending(const struct keel_upconn *uc)
{
    return uc->h2 ? uc->h2->body.len : 0;
}

int keel_uph2_produce(struct keel_upconn *uc)
{
    struct keel_uph2 *h = uc->h2;
    while (uc->out.len < KEEL_PROXY_OUT_HIGH) {
        const uint8_t *data;
        ssize_t n = nghttp2_session_mem_send(h->ng, &data);
        if (n < 0)
            return KEEL_EIO;
        if (n == 0)
            break;
        if (keel_buf_append(&uc->out, data, (size_t)n) != 0)
            return KEEL_ENOMEM;
    }
    return 0;
}

int keel_uph2_consume(struct keel_upconn *uc)
{
    struct keel_uph2 *h = uc->h2;
    ssize_t n = nghttp2_session_mem_recv(h->ng, (const uint8_t *)uc->in.data, uc->in.len);
    keel_buf_reset(&uc->in);
    if (n < 0) {
        keel_log(KEEL_LOG_DEBUG, "HTTP/2 upstream %s: %s", uc->key, nghttp2_strerror((int)n));
        h->broken = true;
        return KEEL_EIO;
    }
    if (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng))
        h->broken = true;
    return 0;
}

bool keel_uph2_reusable(const struct keel_upconn *uc)
{
    const struct keel_uph2 *h = uc->h2;
    bool stream_over = h && (h->sid == 0 || (h->remote_done && h->body_end && h->body.len == 0));
    return h && !h->broken && stream_over && nghttp2_session_want_read(h->ng);
}
