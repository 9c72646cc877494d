/*
 * sample_h2.c - h2c connections of the sample app, on nghttp2 (see sample_h2.h).
 *
 * nghttp2 is used without its I/O callbacks: bytes read from the socket go to nghttp2_session_mem_recv(), and
 * flush() takes frames from nghttp2_session_mem_send() into a capped output buffer and writes it, watching
 * KEEL_IO_WRITE only while that buffer is not empty. nghttp2 checks the HTTP/2 rules (pseudo-headers, field
 * characters, flow control) and answers protocol errors with RST_STREAM or GOAWAY itself.
 *
 * A stream collects its header fields into its own buffer (offsets, since the buffer may move while it grows); at
 * END_STREAM it becomes an exchange. The exchange's answer is submitted at once or from the exchange's callback,
 * and the body is read out of the exchange by a data provider. nghttp2_session_del() does not report open streams,
 * so the connection keeps its own list of streams and frees them itself.
 *
 * Lifetimes: nothing here closes the connection from inside an nghttp2 callback; a closed connection frees its
 * exchanges at once (their timers and calls stop) and its session and memory at the end of the loop iteration.
 */
#include "app/sample_h2.h"

#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "base/str.h"
#include "net/loop.h"
#include "net/sock.h"

#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define H2_READ_CHUNK (16 * 1024)
/* Output buffered before writing; frames are taken from nghttp2 until it is this full. */
#define H2_OUT_SOFT_CAP (64 * 1024)
#define H2_OUT_MAX (KEEL_SAMPLE_MAX_BODY + 1024 * 1024)

struct h2_field {
    uint32_t name_off, name_len, value_off, value_len;
};

struct h2_stream {
    struct keel_sample_h2 *conn;
    struct h2_stream *prev, *next;
    int32_t id;
    struct keel_buf hbuf; /* field bytes */
    struct h2_field fields[KEEL_HTTP_MAX_HEADERS];
    size_t nfields;
    struct h2_field method, path, authority; /* pseudo-headers (len 0: absent) */
    struct keel_sample_exchange *ex;
    size_t body_off; /* body bytes handed to nghttp2 */
    bool head_only;
};

struct keel_sample_h2 {
    struct keel_sample_ctx *ctx;
    struct keel_sample_h2 *prev, *next;
    int fd;
    char peer[KEEL_ADDR_STRLEN];
    struct keel_io io;
    struct keel_timer idle;
    struct keel_defer defer;
    nghttp2_session *session;
    struct keel_buf out;
    size_t sent;
    struct h2_stream *streams;
    bool closed;
};

/* ---- streams ---------------------------------------------------------------------------------------------------- */

static void stream_free(struct h2_stream *s)
{
    struct keel_sample_h2 *h = s->conn;
    if (s->prev)
        s->prev->next = s->next;
    else
        h->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    keel_sample_exchange_free(s->ex);
    keel_buf_free(&s->hbuf);
    free(s);
}

static struct keel_str field_str(const struct h2_stream *s, uint32_t off, uint32_t len)
{
    return (struct keel_str){s->hbuf.data + off, len};
}

/* Appends bytes to the stream's field buffer; their offset in *off. */
static int keep(struct h2_stream *s, const uint8_t *p, size_t n, uint32_t *off)
{
    *off = (uint32_t)s->hbuf.len;
    return keel_buf_append(&s->hbuf, p, n);
}

/* ---- output ----------------------------------------------------------------------------------------------------- */

static void conn_close(struct keel_sample_h2 *h, bool now);

static void set_interest(struct keel_sample_h2 *h)
{
    if (h->closed)
        return;
    uint32_t ev = KEEL_IO_READ | (h->out.len > h->sent ? KEEL_IO_WRITE : 0);
    if (keel_io_modify(&h->io, ev) != 0)
        conn_close(h, false);
}

/* Takes frames from nghttp2 and writes them until the socket is full or nothing is left; closes the connection
 * when both sides are done or the socket failed. */
static void flush(struct keel_sample_h2 *h)
{
    for (;;) {
        while (h->out.len - h->sent < H2_OUT_SOFT_CAP) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(h->session, &data);
            if (n < 0) {
                keel_log(KEEL_LOG_DEBUG, "sample-app h2c %s: %s", h->peer, nghttp2_strerror((int)n));
                conn_close(h, false);
                return;
            }
            if (n == 0)
                break;
            if (keel_buf_append(&h->out, data, (size_t)n) != 0) {
                conn_close(h, false);
                return;
            }
        }
        if (h->out.len == h->sent)
            break;
        ssize_t w = keel_sock_write(h->fd, h->out.data + h->sent, h->out.len - h->sent);
        if (w == KEEL_EAGAIN)
            break;
        if (w < 0) {
            conn_close(h, false);
            return;
        }
        h->sent += (size_t)w;
        if (h->sent == h->out.len) {
            keel_buf_reset(&h->out);
            h->sent = 0;
        }
    }
    if (h->out.len == h->sent && !nghttp2_session_want_read(h->session) && !nghttp2_session_want_write(h->session)) {
        conn_close(h, false);
        return;
    }
    set_interest(h);
}

/* ---- responses -------------------------------------------------------------------------------------------------- */

static ssize_t read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length, uint32_t *data_flags,
                         nghttp2_data_source *source, void *user_data)
{
    (void)session;
    (void)stream_id;
    (void)user_data;
    struct h2_stream *s = source->ptr;
    const struct keel_buf *body = keel_sample_exchange_body(s->ex);
    size_t n = body->len - s->body_off;
    if (n > length)
        n = length;
    memcpy(buf, body->data + s->body_off, n);
    s->body_off += n;
    if (s->body_off == body->len)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static nghttp2_nv make_nv(struct keel_str name, struct keel_str value)
{
    return (nghttp2_nv){(uint8_t *)name.p, (uint8_t *)value.p, name.n, value.n, NGHTTP2_NV_FLAG_NONE};
}

/* Submits the exchange's answer on the stream (nghttp2 copies the fields; the body stays in the exchange). */
static void submit(struct h2_stream *s)
{
    struct keel_sample_h2 *h = s->conn;
    int status = keel_sample_exchange_status(s->ex);
    const struct keel_buf *body = keel_sample_exchange_body(s->ex);
    const struct keel_http_header *f;
    size_t nf = keel_sample_exchange_headers(s->ex, &f);
    nghttp2_nv nv[8];
    size_t n = 0;
    char st[KEEL_U64_STRLEN], len[KEEL_U64_STRLEN];
    keel_u64_to_str((uint64_t)status, st);
    nv[n++] = make_nv(keel_str_c(":status"), keel_str_c(st));
    for (size_t i = 0; i < nf && n < 6; i++)
        nv[n++] = make_nv(f[i].name, f[i].value);
    bool no_body = status == 204 || status == 304;
    if (!no_body) {
        keel_u64_to_str(body->len, len);
        nv[n++] = make_nv(keel_str_c("content-length"), keel_str_c(len));
    }
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = read_body};
    bool with_body = !no_body && !s->head_only && body->len > 0;
    int rc = nghttp2_submit_response(h->session, s->id, nv, n, with_body ? &prd : NULL);
    if (rc != 0)
        nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
}

static void on_exchange_done(struct keel_sample_exchange *ex, void *data)
{
    (void)ex;
    struct h2_stream *s = data;
    struct keel_sample_h2 *h = s->conn;
    submit(s);
    flush(h);
}

/* The request is complete: start its exchange. */
static void dispatch(struct keel_sample_h2 *h, struct h2_stream *s)
{
    struct keel_http_header hdrs[KEEL_HTTP_MAX_HEADERS];
    for (size_t i = 0; i < s->nfields; i++) {
        hdrs[i].name = field_str(s, s->fields[i].name_off, s->fields[i].name_len);
        hdrs[i].value = field_str(s, s->fields[i].value_off, s->fields[i].value_len);
    }
    struct keel_str target = field_str(s, s->path.value_off, s->path.value_len);
    struct keel_str path = target, query = {target.p + target.n, 0};
    const char *q = memchr(target.p, '?', target.n);
    if (q) {
        path.n = (size_t)(q - target.p);
        query = (struct keel_str){q + 1, target.n - path.n - 1};
    }
    struct keel_str authority = field_str(s, s->authority.value_off, s->authority.value_len);
    if (authority.n == 0)
        for (size_t i = 0; i < s->nfields; i++)
            if (keel_str_eq_c(hdrs[i].name, "host"))
                authority = hdrs[i].value;
    struct keel_sample_request req = {
        .method = field_str(s, s->method.value_off, s->method.value_len),
        .path = path,
        .query = query,
        .authority = authority,
        .headers = hdrs,
        .nheaders = s->nfields,
        .protocol = "HTTP/2",
        .peer = h->peer,
    };
    s->head_only = keel_str_eq_c(req.method, "HEAD");
    /* HTTP/2 only, for proxies' tests: /h2/reset answers with RST_STREAM (INTERNAL_ERROR); /h2/goaway is the echo
     * of / preceded by a GOAWAY naming this stream last (the connection closes once its streams are done) */
    if (keel_str_eq_c(path, "/h2/reset")) {
        nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    if (keel_str_eq_c(path, "/h2/goaway")) {
        nghttp2_submit_goaway(h->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR, NULL, 0);
        req.path = keel_str_c("/");
    }
    s->ex = keel_sample_exchange_start(h->ctx, &req, on_exchange_done, s);
    if (!s->ex)
        nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    else if (keel_sample_exchange_ready(s->ex))
        submit(s);
}

/* ---- nghttp2 callbacks ------------------------------------------------------------------------------------------ */

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct keel_sample_h2 *h = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct h2_stream *s = calloc(1, sizeof(*s));
    if (!s)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    s->conn = h;
    s->id = frame->hd.stream_id;
    keel_buf_init(&s->hbuf, KEEL_SAMPLE_H2_MAX_HEADER_BYTES);
    s->next = h->streams;
    if (s->next)
        s->next->prev = s;
    h->streams = s;
    nghttp2_session_set_stream_user_data(session, s->id, s);
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data)
{
    (void)flags;
    (void)user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers: dropped with the body */
    struct h2_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!s)
        return 0;
    struct h2_field f = {.name_len = (uint32_t)namelen, .value_len = (uint32_t)valuelen};
    if (keep(s, name, namelen, &f.name_off) != 0 || keep(s, value, valuelen, &f.value_off) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    struct keel_str n = {(const char *)name, namelen};
    if (namelen && name[0] == ':') {
        if (keel_str_eq_c(n, ":method"))
            s->method = f;
        else if (keel_str_eq_c(n, ":path"))
            s->path = f;
        else if (keel_str_eq_c(n, ":authority"))
            s->authority = f;
        return 0;
    }
    if (s->nfields == KEEL_HTTP_MAX_HEADERS)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    s->fields[s->nfields++] = f;
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct keel_sample_h2 *h = user_data;
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct h2_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s && !s->ex)
        dispatch(h, s);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data)
{
    (void)error_code;
    (void)user_data;
    struct h2_stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
    if (s) {
        nghttp2_session_set_stream_user_data(session, stream_id, NULL);
        stream_free(s);
    }
    return 0;
}

/* ---- connection ------------------------------------------------------------------------------------------------- */

static void free_conn(struct keel_sample_h2 *h)
{
    if (h->session)
        nghttp2_session_del(h->session);
    while (h->streams)
        stream_free(h->streams);
    keel_buf_free(&h->out);
    free(h);
}

static void on_conn_freed(struct keel_loop *loop, struct keel_defer *d)
{
    (void)loop;
    free_conn(d->data);
}

static void conn_close(struct keel_sample_h2 *h, bool now)
{
    if (h->closed)
        return;
    h->closed = true;
    keel_io_stop(&h->io);
    keel_timer_stop(&h->idle);
    close(h->fd);
    h->fd = -1;
    for (struct h2_stream *s = h->streams; s; s = s->next) { /* stop timers and calls now */
        keel_sample_exchange_free(s->ex);
        s->ex = NULL;
    }
    if (h->prev)
        h->prev->next = h->next;
    else
        h->ctx->h2_conns = h->next;
    if (h->next)
        h->next->prev = h->prev;
    if (now)
        free_conn(h);
    else
        keel_loop_defer(h->ctx->loop, &h->defer, on_conn_freed, h);
}

static void on_idle(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct keel_sample_h2 *h = t->data;
    nghttp2_session_terminate_session(h->session, NGHTTP2_NO_ERROR);
    flush(h); /* best effort: the GOAWAY, then close */
    conn_close(h, false);
}

static void touch(struct keel_sample_h2 *h)
{
    keel_timer_start(h->ctx->loop, &h->idle, KEEL_SAMPLE_H2_IDLE_MS, on_idle, h);
}

/* Feeds bytes to nghttp2; on a protocol error nghttp2 has queued a GOAWAY, which is flushed before closing. */
static void feed(struct keel_sample_h2 *h, const char *p, size_t n)
{
    ssize_t rc = nghttp2_session_mem_recv(h->session, (const uint8_t *)p, n);
    if (rc < 0) {
        keel_log(KEEL_LOG_DEBUG, "sample-app h2c %s: %s", h->peer, nghttp2_strerror((int)rc));
        nghttp2_session_terminate_session(h->session, NGHTTP2_PROTOCOL_ERROR);
        flush(h);
        conn_close(h, false);
        return;
    }
    flush(h);
}

static void on_conn_io(struct keel_loop *loop, struct keel_io *io, uint32_t revents)
{
    (void)loop;
    struct keel_sample_h2 *h = io->data;
    if (revents & KEEL_IO_WRITE) {
        flush(h);
        if (h->closed)
            return;
    }
    if (!(revents & (KEEL_IO_READ | KEEL_IO_ERROR)))
        return;
    char chunk[H2_READ_CHUNK];
    ssize_t r = keel_sock_read(h->fd, chunk, sizeof(chunk));
    if (r == KEEL_EAGAIN)
        return;
    if (r <= 0) {
        conn_close(h, false);
        return;
    }
    touch(h);
    feed(h, chunk, (size_t)r);
}

int keel_sample_h2_start(struct keel_sample_ctx *ctx, int fd, const char *peer, const char *pre, size_t n)
{
    struct keel_sample_h2 *h = calloc(1, sizeof(*h));
    nghttp2_session_callbacks *cbs = NULL;
    if (!h || nghttp2_session_callbacks_new(&cbs) != 0) {
        free(h);
        close(fd);
        return KEEL_ENOMEM;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    int rc = nghttp2_session_server_new(&h->session, cbs, h);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, KEEL_SAMPLE_H2_MAX_STREAMS}};
    if (rc == 0)
        rc = nghttp2_submit_settings(h->session, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
    if (rc != 0) {
        if (h->session)
            nghttp2_session_del(h->session);
        free(h);
        close(fd);
        return KEEL_ENOMEM;
    }
    h->ctx = ctx;
    h->fd = fd;
    snprintf(h->peer, sizeof(h->peer), "%s", peer);
    keel_buf_init(&h->out, H2_OUT_MAX);
    keel_io_init(&h->io, fd, on_conn_io, h);
    keel_timer_init(&h->idle);
    h->next = ctx->h2_conns;
    if (h->next)
        h->next->prev = h;
    ctx->h2_conns = h;
    if (keel_io_start(ctx->loop, &h->io, KEEL_IO_READ) != 0) {
        conn_close(h, true);
        return KEEL_ENOMEM;
    }
    touch(h);
    feed(h, pre, n);
    return 0;
}

void keel_sample_h2_close_all(struct keel_sample_ctx *ctx)
{
    while (ctx->h2_conns)
        conn_close(ctx->h2_conns, true);
}
