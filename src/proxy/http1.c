/*
 * http1.c - downstream HTTP/1.1 connections (the HTTP/1 codec of stream.h).
 *
 * One keel_hconn per client connection and one keel_stream per request on
 * it: HTTP/1 carries one exchange at a time, and pipelined requests wait in
 * the input buffer until the one before is answered. Bodies keep their wire
 * framing: a chunked request body goes to the upstream as the client framed
 * it (checked chunk by chunk by the strict decoder), and a chunked response
 * comes back the same way, so nothing is re-encoded on the hot path.
 *
 * A connection whose first bytes are the HTTP/2 connection preface (h2c
 * with prior knowledge), or whose TLS handshake chose ALPN "h2", is handed
 * to http2.c before any request is parsed.
 *
 * Failure: a malformed request head gets its 4xx from a stream of its own
 * (so it is logged and counted) and the connection closes; a client that
 * goes away mid-exchange ends the stream with DC. Nothing here allocates per
 * byte: the input and output buffers are capped (KEEL_PROXY_IN_MAX,
 * KEEL_PROXY_OUT_MAX) and reading stops while the other side is behind.
 */
#include "proxy/stream.h"

#include "base/err.h"
#include "base/log.h"
#include "base/str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct keel_hconn {
    struct keel_downstream ds; /* first: the exchange's view of the connection */
    int fd;
    struct keel_io io;
    struct keel_timer idle;
    struct keel_defer free_d;
    struct keel_buf in;
    struct keel_buf out;
    struct keel_stream *st;
    size_t head_scanned;
    uint64_t requests;
    struct keel_tls_conn *tls; /* terminated TLS, or NULL */
    int tls_chain[16];         /* the listener's certificate -> chain map, copied at accept */
    bool closed;
    bool read_paused;
};

static void conn_close(struct keel_hconn *dc);
static void conn_process(struct keel_hconn *dc);

static inline struct keel_hconn *hconn(const struct keel_stream *st)
{
    return (struct keel_hconn *)st->ds;
}

/* ---- the connection ------------------------------------------------------------------------------------------- */

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
    if (!dc->read_paused && !dc->ds.closing)
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
        keel_stats_add(dc->ds.pw->stats, KEEL_STAT_DOWNSTREAM_CX_TX_BYTES, n);
        keel_buf_consume(&dc->out, (size_t)n);
    }
    if (dc->out.len == 0 && dc->ds.closing && !dc->st) {
        conn_close(dc);
        return KEEL_ECLOSED;
    }
    conn_set_interest(dc);
    /* the client drained: let the upstream send more */
    if (dc->st && dc->st->uc && dc->out.len < KEEL_PROXY_OUT_HIGH)
        keel_upstream_pause(dc->st->uc, false);
    return 0;
}

static void conn_close(struct keel_hconn *dc)
{
    if (dc->closed)
        return;
    dc->closed = true;
    struct keel_stream *st = dc->st;
    if (st && !st->finished) {
        if (st->tunnel) {
            st->resp_done = st->req_done = true; /* the client ended the upgraded connection: its normal end */
        } else {
            st->flags |= KEEL_RF(DOWNSTREAM_CONNECTION_TERMINATION);
            if (!st->details)
                st->details = "downstream_remote_disconnect";
        }
        keel_stream_finish(st); /* frees it (done() sees dc->closed) */
    }
    dc->st = NULL;
    keel_io_stop(&dc->io);
    keel_timer_stop(&dc->idle);
    keel_tls_conn_free(dc->tls);
    dc->tls = NULL;
    close(dc->fd);
    dc->fd = -1;
    keel_downstream_unlink(&dc->ds);
    dc->ds.pw->conns--;
    keel_stats_add(dc->ds.pw->stats, KEEL_STAT_DOWNSTREAM_CX_ACTIVE, -1);
    keel_loop_defer(dc->ds.pw->loop, &dc->free_d, conn_free_later, dc);
}

static void on_idle(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct keel_hconn *dc = t->data;
    if (!dc->st)
        conn_close(dc);
}

/* Hands the connection to http2.c (h2c preface or ALPN h2): it keeps the socket, the TLS state and the
 * bytes read so far; this connection object goes away without closing anything. */
static void conn_upgrade_h2(struct keel_hconn *dc)
{
    keel_io_stop(&dc->io);
    keel_timer_stop(&dc->idle);
    keel_downstream_unlink(&dc->ds);
    dc->closed = true;
    struct keel_tls_conn *tls = dc->tls;
    dc->tls = NULL;
    keel_http2_accept(&dc->ds, dc->fd, tls, dc->in.data, dc->in.len);
    dc->fd = -1;
    keel_loop_defer(dc->ds.pw->loop, &dc->free_d, conn_free_later, dc);
}

/* CONNECT on the sidecar's outbound listener (the app uses it as its https_proxy): the connection becomes an L4
 * session routed like the outbound TCP listener of the CONNECT's port (tcp.c: by destination IP, and by SNI for
 * TLS ports), after "200 Connection established". Returns false when there is nothing to route it to (the caller
 * answers). */
static bool conn_connect(struct keel_hconn *dc, const struct keel_http_head *head, size_t used)
{
    struct keel_str hs, ps;
    uint64_t port;
    if (!keel_http_authority_split(head->authority, &hs, &ps) || keel_str_to_u64(ps, 65535, &port) != 0 ||
        !dc->ds.pw->snap || !keel_snapshot_tcp_table(dc->ds.pw->snap, (uint32_t)port))
        return false;
    char ip[KEEL_ADDR_STRLEN] = "";
    size_t hn = hs.n;
    const char *hp = hs.p;
    if (hn >= 2 && hp[0] == '[' && hp[hn - 1] == ']') {
        hp++;
        hn -= 2;
    }
    char spec[KEEL_ADDR_STRLEN + 8];
    struct keel_addr probe;
    if (hn < sizeof(ip)) {
        memcpy(ip, hp, hn);
        ip[hn] = '\0';
        snprintf(spec, sizeof(spec), strchr(ip, ':') ? "[%s]:1" : "%s:1", ip);
        if (keel_addr_parse(spec, &probe) != 0)
            ip[0] = '\0'; /* a name: routed by port (and SNI) */
    }
    static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
    struct keel_tcp_handover h = {
        .port = (uint32_t)port,
        .dst_ip = ip,
        .peer = dc->ds.peer,
        .local = dc->ds.local,
        .reply = ok,
        .reply_len = sizeof(ok) - 1,
        .initial = dc->in.data + used,
        .n = dc->in.len - used,
    };
    struct keel_pworker *pw = dc->ds.pw;
    keel_io_stop(&dc->io);
    keel_timer_stop(&dc->idle);
    keel_downstream_unlink(&dc->ds);
    dc->closed = true;
    pw->conns--; /* the L4 session counts it from now on */
    keel_stats_add(pw->stats, KEEL_STAT_DOWNSTREAM_CX_ACTIVE, -1);
    keel_tcp_takeover(pw, dc->fd, &h);
    dc->fd = -1;
    keel_loop_defer(pw->loop, &dc->free_d, conn_free_later, dc);
    return true;
}

/* ---- the codec's side of the exchange (stream.h) --------------------------------------------------------------- */

static int h1_head(struct keel_stream *st, int status, struct keel_str reason, const struct keel_http_header *h,
                   size_t n)
{
    struct keel_hconn *dc = hconn(st);
    bool keep = st->req.keep_alive && !dc->ds.closing && !dc->ds.pw->draining &&
                (st->local ? st->req_done : st->resp_mode != KEEL_BODY_UNTIL_CLOSE);
    struct keel_http_header all[KEEL_HTTP_MAX_HEADERS + 16];
    size_t m = 0, cap = sizeof(all) / sizeof(all[0]) - 2;
    for (size_t i = 0; i < n && m < cap; i++)
        all[m++] = h[i];
    char clen[KEEL_U64_STRLEN];
    if (st->tunnel) {
        keep = true;           /* the 101 carries the upstream's Connection: upgrade, not close */
        dc->ds.closing = true; /* and the connection ends with the tunnel */
    } else if (!st->local) {
        if (st->resp_mode == KEEL_BODY_CHUNKED) {
            all[m++] = (struct keel_http_header){KEEL_STR_LIT("transfer-encoding"), KEEL_STR_LIT("chunked")};
        } else if (st->resp.has_content_length) {
            keel_u64_to_str(st->resp.content_length, clen);
            all[m++] = (struct keel_http_header){KEEL_STR_LIT("content-length"), keel_str_c(clen)};
        }
    }
    if (!keep) {
        all[m++] = (struct keel_http_header){KEEL_STR_LIT("connection"), KEEL_STR_LIT("close")};
        dc->ds.closing = true;
    }
    struct keel_http_head out = {.version = KEEL_HTTP_11, .status = status, .reason = reason};
    size_t before = dc->out.len;
    int rc = keel_h1_write_response_head(&dc->out, &out, all, m);
    st->bytes_sent += dc->out.len - before;
    return rc;
}

static void h1_interim(struct keel_stream *st, const char *raw, size_t len)
{
    keel_buf_append(&hconn(st)->out, raw, len);
}

static void h1_body(struct keel_stream *st, const char *raw, size_t raw_len, const char *data, size_t len)
{
    struct keel_hconn *dc = hconn(st);
    if (raw)
        keel_buf_append(&dc->out, raw, raw_len); /* the upstream's own framing, checked by the decoder */
    else if (st->resp_mode == KEEL_BODY_CHUNKED)
        keel_h1_write_chunk(&dc->out, data, len);
    else
        keel_buf_append(&dc->out, data, len);
}

static void h1_end(struct keel_stream *st)
{
    /* a body of unknown length from an HTTP/2 upstream ends with the last chunk, trailers (gRPC) included;
     * done() flushes */
    if (!st->resp_raw && st->resp_mode == KEEL_BODY_CHUNKED && !st->local)
        keel_h1_write_last_chunk(&hconn(st)->out, st->trailers, st->n_trailers);
}

static void h1_flush(struct keel_stream *st)
{
    conn_flush(hconn(st));
}

static size_t h1_pending(const struct keel_stream *st)
{
    return hconn(st)->out.len;
}

/* Moves request body bytes from the client's input to the upstream (payload only: the upstream side frames it). */
static void h1_pump(struct keel_stream *st)
{
    struct keel_hconn *dc = hconn(st);
    while (!st->req_done && dc->in.len > 0 && keel_stream_body_room(st)) {
        size_t take = 0;
        if (st->req_mode == KEEL_BODY_UNTIL_CLOSE) { /* an upgraded connection: every byte, as it comes */
            take = dc->in.len;
            keel_stream_body_out(st, dc->in.data, take);
            st->req_wire_bytes += take;
            keel_buf_consume(&dc->in, take);
            continue;
        }
        if (st->req_mode == KEEL_BODY_LENGTH) {
            take = st->req_left < dc->in.len ? (size_t)st->req_left : dc->in.len;
            st->req_left -= take;
            keel_stream_body_out(st, dc->in.data, take);
            st->req_wire_bytes += take;
            keel_buf_consume(&dc->in, take);
            if (st->req_left == 0)
                keel_stream_body_end(st);
            continue;
        }
        const char *data;
        size_t dlen;
        int rc = keel_h1_chunked_feed(&st->req_ch, dc->in.data, dc->in.len, &take, &data, &dlen);
        if (rc < 0 && rc != KEEL_EAGAIN) {
            keel_stats_add(dc->ds.pw->stats, KEEL_STAT_DOWNSTREAM_CX_PROTOCOL_ERROR, 1);
            dc->ds.closing = true;
            keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_ACTIVE, -1);
            keel_upstream_release(st->uc, false);
            st->uc = NULL;
            keel_stream_local_reply(st, 400, KEEL_RF(DOWNSTREAM_PROTOCOL_ERROR), "http1.codec_error", "", 0, NULL, 0);
            return;
        }
        if (rc == 0)
            keel_stream_body_out(st, data, dlen);
        st->req_wire_bytes += take;
        keel_buf_consume(&dc->in, take);
        if (rc == KEEL_H1_CHUNKED_END)
            keel_stream_body_end(st);
        else if (take == 0)
            break;
    }
    /* back-pressure: stop reading the client while the upstream is behind */
    bool pause = !st->req_done && st->uc && !keel_stream_body_room(st);
    if (pause != dc->read_paused) {
        dc->read_paused = pause;
        conn_set_interest(dc);
    }
}

/* The exchange is over: next request, or close. */
static void h1_done(struct keel_stream *st)
{
    struct keel_hconn *dc = hconn(st);
    if (!st->req_done || !st->resp_done)
        dc->ds.closing = true; /* unread body bytes would be read as a request; a cut response ends here */
    dc->st = NULL;
    keel_stream_free(st);
    if (dc->closed)
        return;
    dc->read_paused = false;
    if (conn_flush(dc) < 0 || dc->closed)
        return;
    if (!dc->ds.closing && dc->in.len)
        conn_process(dc); /* a pipelined request is waiting */
    else if (!dc->ds.closing)
        keel_timer_start(dc->ds.pw->loop, &dc->idle, KEEL_PROXY_IDLE_MS, on_idle, dc);
}

static void h1_shutdown(struct keel_downstream *ds, bool now)
{
    struct keel_hconn *dc = (struct keel_hconn *)ds;
    dc->ds.closing = true; /* the current response says Connection: close */
    if (now)
        conn_close(dc);
    else if (!dc->st)
        conn_flush(dc); /* closes once what is queued is sent */
}

static const struct keel_ds_ops h1_ops = {
    .head = h1_head,
    .interim = h1_interim,
    .body = h1_body,
    .end = h1_end,
    .flush = h1_flush,
    .pending = h1_pending,
    .pump = h1_pump,
    .done = h1_done,
    .shutdown = h1_shutdown,
};

/* ---- reading the client ---------------------------------------------------------------------------------------- */

/* Starts the exchange for a parsed head. route=false: the caller answers it itself (a rejected request). */
static void stream_start(struct keel_hconn *dc, const struct keel_http_head *head, size_t head_len, bool route)
{
    struct keel_stream *st = keel_stream_new(&dc->ds);
    if (!st) {
        conn_close(dc);
        return;
    }
    keel_stream_copy_head(st, head);
    st->req_wire_bytes = head_len;
    if (head->chunked) {
        st->req_mode = KEEL_BODY_CHUNKED;
    } else if (head->has_content_length && head->content_length > 0) {
        st->req_mode = KEEL_BODY_LENGTH;
        st->req_left = head->content_length;
    } else {
        st->req_mode = KEEL_BODY_NONE;
        st->req_done = true;
    }
    dc->st = st;
    dc->requests++;
    keel_timer_stop(&dc->idle);
    keel_buf_consume(&dc->in, head_len);
    if (!route)
        return;
    if (head->upgrade) {
        const struct keel_str *up = keel_http_head_get(&st->req, "upgrade");
        if (keel_str_eq_c(head->method, "CONNECT") || !up || !keel_str_caseeq(*up, KEEL_STR_LIT("websocket"))) {
            /* CONNECT tunnels and upgrades other than WebSocket are not in this build yet */
            dc->ds.closing = true;
            keel_stream_local_reply(st, 501, 0, "upgrade_not_supported", "", 0, NULL, 0);
            return;
        }
        st->upgrade = true; /* Istio allows WebSocket upgrades on every HTTP route */
    }
    if (head->expect_continue && st->req_mode != KEEL_BODY_NONE) {
        /* the upstream decides; meanwhile tell the client to go on (as Envoy does by default) */
        keel_buf_puts(&dc->out, "HTTP/1.1 100 Continue\r\n\r\n");
    }
    keel_stream_start(st);
}

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* Parses and starts the next request in dc->in, if complete. */
static void conn_process(struct keel_hconn *dc)
{
    if (dc->st || dc->closed || dc->ds.closing)
        return;
    if (dc->in.len == 0)
        return;
    if (dc->requests == 0 && !dc->tls && dc->in.data[0] == 'P') {
        /* h2c with prior knowledge: the preface, or a prefix of it so far */
        size_t plen = sizeof(h2_preface) - 1, n = dc->in.len < plen ? dc->in.len : plen;
        if (memcmp(dc->in.data, h2_preface, n) == 0) {
            if (n == plen)
                conn_upgrade_h2(dc);
            return;
        }
    }
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
        keel_stats_add(dc->ds.pw->stats, KEEL_STAT_DOWNSTREAM_CX_PROTOCOL_ERROR, 1);
        /* answer the rejection from a stream of its own, so it is logged and counted */
        struct keel_http_head bad = {.version = KEEL_HTTP_11, .method = KEEL_STR_LIT("-"), .path = KEEL_STR_LIT("-")};
        dc->ds.closing = true;
        keel_buf_reset(&dc->in);
        stream_start(dc, &bad, 0, false);
        if (dc->st) {
            const char *why = keel_h1_strerror(rc);
            keel_stream_local_reply(dc->st, keel_h1_error_status(rc), KEEL_RF(DOWNSTREAM_PROTOCOL_ERROR),
                                    "http1.codec_error", why, strlen(why), NULL, 0);
        }
        return;
    }
    if (keel_str_eq_c(head.method, "CONNECT") && dc->ds.role == KEEL_PL_OUTBOUND && !dc->tls) {
        if (conn_connect(dc, &head, used))
            return;
        dc->ds.closing = true;
        stream_start(dc, &head, used, false);
        if (dc->st)
            keel_stream_local_reply(dc->st, 404, KEEL_RF(NO_ROUTE_FOUND), "connect_route_not_found",
                                    "no TCP or TLS service on that port", 34, NULL, 0);
        return;
    }
    stream_start(dc, &head, used, true);
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
            keel_log(KEEL_LOG_DEBUG, "TLS handshake with %s failed: %s", dc->ds.peer, keel_tls_error(dc->tls));
            keel_stats_add(dc->ds.pw->stats, KEEL_STAT_DOWNSTREAM_CX_PROTOCOL_ERROR, 1);
            conn_close(dc);
            return;
        }
        size_t ci = keel_tls_cert_index(dc->tls);
        dc->ds.chain = ci < 16 ? dc->tls_chain[ci] : -1;
        const char *alpn = keel_tls_alpn(dc->tls);
        if (alpn && strcmp(alpn, "h2") == 0) {
            conn_upgrade_h2(dc);
            return;
        }
        conn_set_interest(dc);
        ev |= KEEL_IO_READ; /* the client's first request may already be decrypted */
    }
    if (ev & KEEL_IO_WRITE) {
        if (conn_flush(dc) < 0 || dc->closed)
            return;
        if (dc->st)
            keel_stream_resume_response(dc->st); /* more response may fit now */
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
            keel_stats_add(dc->ds.pw->stats, KEEL_STAT_DOWNSTREAM_CX_DESTROY_REMOTE, 1);
        conn_close(dc);
        return;
    }
    keel_stats_add(dc->ds.pw->stats, KEEL_STAT_DOWNSTREAM_CX_RX_BYTES, n);
    keel_buf_append(&dc->in, tmp, (size_t)n);
    /* TLS may hold more decrypted records than the socket shows: drain them now */
    while (dc->tls && dc->in.len < dc->in.max) {
        size_t r2 = dc->in.max - dc->in.len;
        ssize_t m = conn_read(dc, tmp, r2 < sizeof(tmp) ? r2 : sizeof(tmp));
        if (m <= 0)
            break; /* EAGAIN, or an error the next wakeup reports */
        keel_stats_add(dc->ds.pw->stats, KEEL_STAT_DOWNSTREAM_CX_RX_BYTES, m);
        keel_buf_append(&dc->in, tmp, (size_t)m);
    }
    if (dc->st) {
        keel_stream_request_body(dc->st);
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
    dc->ds.pw = pw;
    dc->ds.ops = &h1_ops;
    dc->ds.role = l->role;
    dc->ds.port = l->port;
    dc->ds.tls = l->tls != NULL;
    dc->fd = fd;
    keel_buf_init(&dc->in, KEEL_PROXY_IN_MAX);
    keel_buf_init(&dc->out, KEEL_PROXY_OUT_MAX);
    keel_addr_format(peer, dc->ds.peer, sizeof(dc->ds.peer));
    snprintf(dc->ds.peer_ip, sizeof(dc->ds.peer_ip), "%s", dc->ds.peer);
    char *colon = strrchr(dc->ds.peer_ip, ':');
    if (colon)
        *colon = '\0';
    if (dc->ds.peer_ip[0] == '[') {
        memmove(dc->ds.peer_ip, dc->ds.peer_ip + 1, strlen(dc->ds.peer_ip));
        char *rb = strchr(dc->ds.peer_ip, ']');
        if (rb)
            *rb = '\0';
    }
    struct keel_addr local;
    if (keel_sock_local_addr(fd, &local) == 0)
        keel_addr_format(&local, dc->ds.local, sizeof(dc->ds.local));
    keel_sock_set_nodelay(fd, true);
    dc->ds.chain = -1;
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
    keel_downstream_link(&dc->ds);
    keel_stats_add(pw->stats, KEEL_STAT_DOWNSTREAM_CX_TOTAL, 1);
    keel_stats_add(pw->stats, KEEL_STAT_DOWNSTREAM_CX_ACTIVE, 1);
    keel_timer_start(pw->loop, &dc->idle, KEEL_PROXY_IDLE_MS, on_idle, dc);
}
