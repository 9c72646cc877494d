/*
 * admin.c - the admin HTTP server on the main loop (see admin.h).
 *
 * One listener and a doubly linked list of connections, all on one loop. A connection is a small state machine
 * driven by its level-triggered watcher:
 *
 *   read -> parse one head (http/h1) -> route -> build the whole response (head buffer + body buffer) -> write
 *
 * While a response is pending the connection watches only KEEL_IO_WRITE and reads nothing: that is the
 * back-pressure (a 100 MB config dump to a slow client costs its buffer, never a blocked loop), and it serialises
 * pipelined requests for free. Once the response is out, whatever is already buffered (a request body to discard,
 * the next pipelined request) is processed before reading again. Handlers never read bodies; a body is skipped
 * after its request was answered (Content-Length or chunked, bounded by KEEL_ADMIN_MAX_BODY).
 *
 * Lifetimes: a closed connection is unlinked and its fd closed at once, and its memory is freed by a deferred
 * callback, because it may be closed from inside its own callback (Envoy's deferred delete). keel_admin_stop() may
 * run inside an admin callback (drain calling it): `depth` counts admin callbacks on the stack, and when it is
 * non-zero the admin's own memory is freed by a deferred callback too. Code that calls out to the source checks
 * c->closed afterwards.
 */
#include "proxy/admin.h"

#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "base/str.h"
#include "http/h1.h"
#include "http/message.h"
#include "net/loop.h"
#include "net/sock.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* Most bytes read from one connection per wakeup (fairness between connections). */
#define ADMIN_READ_CHUNK (16 * 1024)
/* Most connections accepted per wakeup of the listener. */
#define ADMIN_ACCEPT_BATCH 64
/* Response head size limit (the fields are ours and few). */
#define ADMIN_MAX_RESPONSE_HEAD 1024
/* A body buffer that grew beyond this is released after its response instead of kept for the next one. */
#define ADMIN_KEEP_BODY_CAP (64 * 1024)
/* Longest lingering close (see linger()). */
#define ADMIN_LINGER_MS 2000

struct admin_conn {
    struct keel_admin *a;
    struct admin_conn *prev, *next;
    int fd;
    struct keel_io io;
    struct keel_timer idle;
    struct keel_defer defer;
    uint64_t idle_ms;
    struct keel_buf in;   /* received, not yet consumed */
    size_t scanned;       /* keel_h1_has_head progress */
    size_t screened;      /* bytes of in checked for bare LF / lone CR */
    struct keel_buf head; /* response head being written */
    struct keel_buf body; /* response body being written */
    size_t sent;          /* bytes of head then body already written */
    /* request body being skipped */
    bool skipping;
    bool chunked;
    uint64_t body_left; /* Content-Length bytes still to skip */
    struct keel_h1_chunked ck;
    bool close_after; /* close once the pending response is out */
    bool lingering;   /* response out and write side shut: reading and discarding until EOF */
    bool closed;
};

struct keel_admin {
    struct keel_loop *loop;
    struct keel_admin_source src;
    int lfd;
    struct keel_io lio;
    struct keel_timer pause; /* listener paused after KEEL_EMFILE */
    struct keel_defer defer;
    struct admin_conn *conns;
    unsigned nconns;
    bool paused_full;  /* listener paused at KEEL_ADMIN_MAX_CONNS */
    bool paused_mfile; /* listener paused after KEEL_EMFILE */
    uint16_t port;
    uint64_t started_ms;
    uint64_t idle_ms;
    unsigned depth; /* admin callbacks on the stack */
    bool stopped;
    struct keel_http_head req; /* parse scratch: requests are handled one at a time */
};

/* ---- connection lifecycle --------------------------------------------------------------------------------------- */

static void free_conn(struct admin_conn *c)
{
    keel_buf_free(&c->in);
    keel_buf_free(&c->head);
    keel_buf_free(&c->body);
    free(c);
}

static void on_conn_freed(struct keel_loop *loop, struct keel_defer *d)
{
    (void)loop;
    free_conn(d->data);
}

static void update_listener(struct keel_admin *a)
{
    if (a->stopped || a->lfd < 0)
        return;
    bool full = a->nconns >= KEEL_ADMIN_MAX_CONNS;
    if (full != a->paused_full) {
        a->paused_full = full;
        if (!a->paused_mfile)
            keel_io_modify(&a->lio, full ? 0 : KEEL_IO_READ);
    }
}

/* Unlinks and closes; frees now when no admin callback is on the stack, otherwise at the end of the iteration. */
static void conn_close(struct admin_conn *c)
{
    if (c->closed)
        return;
    struct keel_admin *a = c->a;
    c->closed = true;
    keel_io_stop(&c->io);
    keel_timer_stop(&c->idle);
    close(c->fd);
    c->fd = -1;
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->nconns--;
    update_listener(a);
    if (a->depth)
        keel_loop_defer(a->loop, &c->defer, on_conn_freed, c);
    else
        free_conn(c);
}

static void on_idle(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct admin_conn *c = t->data;
    struct keel_admin *a = c->a;
    a->depth++;
    keel_log(KEEL_LOG_DEBUG, "admin: closing a connection idle for %" PRIu64 " ms", c->idle_ms);
    conn_close(c);
    a->depth--;
}

static void touch(struct admin_conn *c)
{
    /* Re-arming a pending timer cannot fail; a first start that fails leaves the connection without a timeout. */
    keel_timer_start(c->a->loop, &c->idle, c->idle_ms, on_idle, c);
}

static bool pending(const struct admin_conn *c)
{
    return c->head.len + c->body.len > 0;
}

static void set_interest(struct admin_conn *c)
{
    if (c->closed)
        return;
    if (keel_io_modify(&c->io, pending(c) && !c->lingering ? KEEL_IO_WRITE : KEEL_IO_READ) != 0)
        conn_close(c);
}

/*
 * Closing after a response (Connection: close, an error): shut the write side so the client reads the response
 * and then EOF, and discard what it still sends until it closes (or ADMIN_LINGER_MS). Closing at once with unread
 * input would make the kernel send a reset, which can destroy the response before the client reads it (nginx's
 * lingering_close).
 */
static void linger(struct admin_conn *c)
{
    if (c->lingering || c->closed)
        return;
    if (keel_sock_shutdown_write(c->fd) != 0) {
        conn_close(c);
        return;
    }
    c->lingering = true;
    keel_buf_reset(&c->in);
    c->skipping = false;
    keel_timer_start(c->a->loop, &c->idle, c->idle_ms < ADMIN_LINGER_MS ? c->idle_ms : ADMIN_LINGER_MS, on_idle, c);
}

/* Reads and drops input of a lingering connection; closes it at EOF or on error. */
static void drain_input(struct admin_conn *c)
{
    char chunk[4096];
    for (int i = 0; i < 16; i++) {
        ssize_t r = keel_sock_read(c->fd, chunk, sizeof(chunk));
        if (r == KEEL_EAGAIN)
            return;
        if (r <= 0) {
            conn_close(c);
            return;
        }
    }
}

/* ---- responses -------------------------------------------------------------------------------------------------- */

/* Queues the response: c->body holds the body; the answer to HEAD drops it but keeps its Content-Length. */
static void respond(struct admin_conn *c, const struct keel_http_head *req, int status, const char *ctype,
                    const char *extra)
{
    bool head_only = req && keel_str_eq_c(req->method, "HEAD");
    bool http10 = req && req->version == KEEL_HTTP_10;
    const char *conn = c->close_after ? "Connection: close\r\n" : http10 ? "Connection: keep-alive\r\n" : "";
    keel_buf_reset(&c->head);
    int rc = keel_buf_printf(&c->head,
                             "HTTP/1.1 %d %s\r\n"
                             "Content-Type: %s\r\n"
                             "Content-Length: %zu\r\n"
                             "Cache-Control: no-cache, max-age=0\r\n"
                             "X-Content-Type-Options: nosniff\r\n"
                             "%s%s\r\n",
                             status, keel_h1_reason(status), ctype, c->body.len, extra ? extra : "", conn);
    if (rc) { /* cannot happen with our own short fields; fail the connection rather than send half a head */
        keel_buf_reset(&c->head);
        keel_buf_reset(&c->body);
        c->close_after = true;
        return;
    }
    if (head_only)
        keel_buf_reset(&c->body);
}

static void respond_text(struct admin_conn *c, const struct keel_http_head *req, int status, const char *text)
{
    keel_buf_reset(&c->body);
    keel_buf_puts(&c->body, text);
    respond(c, req, status, "text/plain; charset=UTF-8", NULL);
}

/* ---- handlers --------------------------------------------------------------------------------------------------- */

#define M_GET 0x1u /* GET and HEAD */
#define M_POST 0x2u

/* A handler appends the body to `body`, sets *ctype when it is not text, and returns the status (or a negative
 * KEEL_E* code from the source: 500). */
typedef int (*handler_fn)(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body,
                          const char **ctype);

struct route {
    const char *path;
    unsigned methods;
    handler_fn fn;
    const char *help;
};

static int h_index(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body, const char **ctype);
static int h_ready(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body, const char **ctype);
static int h_healthz(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body, const char **ctype);
static int h_prometheus(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body,
                        const char **ctype);
static int h_config_dump(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body,
                         const char **ctype);
static int h_clusters(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body,
                      const char **ctype);
static int h_server_info(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body,
                         const char **ctype);
static int h_logging(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body, const char **ctype);
static int h_drain(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body, const char **ctype);

/* The endpoint registry, in the order the index lists them. */
static const struct route routes[] = {
    {"/", M_GET, h_index, "this list"},
    {"/help", M_GET, h_index, "this list"},
    {"/ready", M_GET, h_ready, "200 LIVE when the proxy is ready to serve, 503 otherwise"},
    {"/healthz/ready", M_GET, h_ready, "same as /ready"},
    {"/healthz", M_GET, h_healthz, "200 ok while the process runs"},
    {"/stats/prometheus", M_GET, h_prometheus, "statistics in Prometheus text format 0.0.4"},
    {"/metrics", M_GET, h_prometheus, "same as /stats/prometheus"},
    {"/config_dump", M_GET, h_config_dump, "the active configuration (JSON)"},
    {"/clusters", M_GET, h_clusters, "upstream clusters and their endpoints (?format=json)"},
    {"/server_info", M_GET, h_server_info, "version, state and uptime (JSON)"},
    {"/logging", M_GET | M_POST, h_logging, "GET: the log level; POST ?level=debug|info|warn|error|off: set it"},
    {"/drain_listeners", M_POST, h_drain, "start draining: stop accepting, finish what is in flight"},
    {"/quitquitquit", M_POST, h_drain, "drain and exit"},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* Value of query parameter `name` (not percent-decoded; admin values are plain tokens); false when absent. */
static bool query_param(struct keel_str q, const char *name, struct keel_str *val)
{
    size_t nlen = strlen(name);
    size_t i = 0;
    while (i <= q.n && q.n) {
        const char *amp = memchr(q.p + i, '&', q.n - i);
        size_t end = amp ? (size_t)(amp - q.p) : q.n;
        struct keel_str kv = {q.p + i, end - i};
        const char *eq = memchr(kv.p, '=', kv.n);
        size_t kn = eq ? (size_t)(eq - kv.p) : kv.n;
        if (kn == nlen && memcmp(kv.p, name, nlen) == 0) {
            *val = eq ? (struct keel_str){eq + 1, kv.n - kn - 1} : (struct keel_str){kv.p + kn, 0};
            return true;
        }
        if (!amp)
            break;
        i = end + 1;
    }
    return false;
}

static int h_index(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body, const char **ctype)
{
    (void)a;
    (void)req;
    (void)ctype;
    int rc = keel_buf_puts(body, "admin commands are:\n");
    for (size_t i = 0; !rc && i < NROUTES; i++)
        rc = keel_buf_printf(body, "  %s%s: %s\n", routes[i].methods & M_GET ? "" : "(POST) ", routes[i].path,
                             routes[i].help);
    return rc ? rc : 200;
}

static int h_ready(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body, const char **ctype)
{
    (void)req;
    (void)ctype;
    /* No readiness callback: a process with nothing to wait for is ready once it serves. */
    bool ready = !a->src.ready || a->src.ready(a->src.ctx);
    int rc = keel_buf_puts(body, ready ? "LIVE\n" : "not ready\n");
    return rc ? rc : ready ? 200 : 503;
}

static int h_healthz(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body, const char **ctype)
{
    (void)a;
    (void)req;
    (void)ctype;
    int rc = keel_buf_puts(body, "ok");
    return rc ? rc : 200;
}

/* Runs an optional source callback: 404 when it is missing, its error, or 200. */
static int call_source(int (*fn)(void *, struct keel_buf *), void *ctx, struct keel_buf *body)
{
    if (!fn) {
        int rc = keel_buf_puts(body, "not available in this process\n");
        return rc ? rc : 404;
    }
    int rc = fn(ctx, body);
    return rc < 0 ? rc : 200;
}

static int h_prometheus(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body,
                        const char **ctype)
{
    (void)req;
    int st = call_source(a->src.stats_prometheus, a->src.ctx, body);
    if (st == 200)
        *ctype = "text/plain; version=0.0.4; charset=utf-8";
    return st;
}

static int h_config_dump(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body,
                         const char **ctype)
{
    (void)req;
    int st = call_source(a->src.config_dump, a->src.ctx, body);
    if (st == 200)
        *ctype = "application/json";
    return st;
}

static int h_clusters(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body, const char **ctype)
{
    struct keel_str fmt;
    if (query_param(req->query, "format", &fmt) && keel_str_eq_c(fmt, "json")) {
        int st = call_source(a->src.clusters_json, a->src.ctx, body);
        if (st == 200)
            *ctype = "application/json";
        return st;
    }
    return call_source(a->src.clusters, a->src.ctx, body);
}

static int h_server_info(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body,
                         const char **ctype)
{
    (void)req;
    bool ready = !a->src.ready || a->src.ready(a->src.ctx);
    uint64_t up = (keel_loop_now_ms(a->loop) - a->started_ms) / 1000;
    int rc = keel_buf_puts(body, "{\"version\":");
    if (!rc)
        rc = keel_buf_json_str(body, a->src.version ? a->src.version : "unknown");
    if (!rc)
        rc = keel_buf_printf(body,
                             ",\"state\":\"%s\",\"uptime_current_epoch\":\"%" PRIu64
                             "s\",\"uptime_all_epochs\":\"%" PRIu64 "s\"",
                             ready ? "LIVE" : "PRE_INITIALIZING", up, up);
    if (!rc && a->src.server_info)
        rc = a->src.server_info(a->src.ctx, body);
    if (!rc)
        rc = keel_buf_puts(body, "}\n");
    *ctype = "application/json";
    return rc ? rc : 200;
}

static int h_logging(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body, const char **ctype)
{
    (void)a;
    (void)ctype;
    struct keel_str lv;
    if (query_param(req->query, "level", &lv)) {
        if (!keel_str_eq_c(req->method, "POST")) {
            int rc = keel_buf_puts(body, "changing the log level needs POST /logging?level=...\n");
            return rc ? rc : 405;
        }
        char name[16];
        enum keel_log_level level;
        size_t n = lv.n < sizeof(name) - 1 ? lv.n : sizeof(name) - 1;
        memcpy(name, lv.p, n);
        name[n] = '\0';
        if (lv.n != n || keel_log_level_parse(name, &level) != 0) {
            char clip[48];
            int rc = keel_buf_printf(body, "invalid log level \"%s\": use debug, info, warn, error or off\n",
                                     keel_str_clip(name, 32, clip, sizeof(clip)));
            return rc ? rc : 400;
        }
        keel_log_set_level(level);
        keel_log(KEEL_LOG_INFO, "admin: log level set to %s", keel_log_level_name(level));
    }
    int rc = keel_buf_printf(body, "active log level: %s\n", keel_log_level_name(keel_log_get_level()));
    return rc ? rc : 200;
}

static int h_drain(struct keel_admin *a, const struct keel_http_head *req, struct keel_buf *body, const char **ctype)
{
    (void)req;
    (void)ctype;
    if (!a->src.drain) {
        int rc = keel_buf_puts(body, "not available in this process\n");
        return rc ? rc : 404;
    }
    int rc = a->src.drain(a->src.ctx);
    if (rc < 0)
        return rc;
    rc = keel_buf_puts(body, "OK\n");
    return rc ? rc : 200;
}

/* Answers one parsed request into c's response buffers. May close c (through a source callback stopping the
 * admin): the caller checks c->closed. */
static void handle(struct admin_conn *c, const struct keel_http_head *req)
{
    struct keel_admin *a = c->a;
    const struct route *r = NULL;
    for (size_t i = 0; i < NROUTES && !r; i++)
        if (keel_str_eq_c(req->path, routes[i].path))
            r = &routes[i];
    if (!r) {
        respond_text(c, req, 404, "invalid path; GET / lists the admin endpoints\n");
        return;
    }
    bool is_head = keel_str_eq_c(req->method, "HEAD");
    unsigned m = keel_str_eq_c(req->method, "GET") || is_head ? M_GET : keel_str_eq_c(req->method, "POST") ? M_POST : 0;
    if (!(m & r->methods)) {
        const char *allow = r->methods == M_POST  ? "Allow: POST\r\n"
                            : r->methods == M_GET ? "Allow: GET, HEAD\r\n"
                                                  : "Allow: GET, HEAD, POST\r\n";
        keel_buf_reset(&c->body);
        keel_buf_printf(&c->body, "method %.*s not allowed for %s\n", (int)(req->method.n > 32 ? 32 : req->method.n),
                        req->method.p, r->path);
        respond(c, req, 405, "text/plain; charset=UTF-8", allow);
        return;
    }
    keel_buf_reset(&c->body);
    const char *ctype = "text/plain; charset=UTF-8";
    int st = r->fn(a, req, &c->body, &ctype);
    if (c->closed)
        return;
    if (st < 0) {
        keel_log(KEEL_LOG_WARN, "admin: %.*s %s failed: %s", (int)req->method.n, req->method.p, r->path,
                 keel_strerror(st));
        keel_buf_reset(&c->body);
        if (st == KEEL_ENOMEM || st == KEEL_ETOOBIG)
            keel_buf_free(&c->body); /* give the memory back before writing the error */
        keel_buf_printf(&c->body, "error: %s\n", keel_strerror(st));
        respond(c, req, 500, "text/plain; charset=UTF-8", NULL);
        return;
    }
    respond(c, req, st, ctype, NULL);
}

/* ---- request processing ----------------------------------------------------------------------------------------- */

/* Drops n bytes of input; the head scan starts over on what is left. */
static void consume(struct admin_conn *c, size_t n)
{
    c->screened = 0;
    keel_buf_consume(&c->in, n);
}

/* Skips buffered request-body bytes. Returns true when the body is done (or on a framing error, which closes). */
static bool skip_body(struct admin_conn *c)
{
    if (!c->chunked) {
        size_t n = c->body_left < c->in.len ? (size_t)c->body_left : c->in.len;
        consume(c, n);
        c->body_left -= n;
        c->skipping = c->body_left > 0;
        return !c->skipping;
    }
    for (;;) {
        size_t used = 0, dn = 0;
        const char *data;
        int rc = keel_h1_chunked_feed(&c->ck, c->in.data ? c->in.data : "", c->in.len, &used, &data, &dn);
        consume(c, used);
        if (rc == 0) {
            if (dn > c->body_left) {
                conn_close(c); /* body larger than KEEL_ADMIN_MAX_BODY */
                return true;
            }
            c->body_left -= dn;
            continue;
        }
        if (rc == KEEL_H1_CHUNKED_END) {
            c->skipping = false;
            return true;
        }
        if (rc == KEEL_EAGAIN)
            return false;
        conn_close(c); /* malformed chunked body: the stream is lost */
        return true;
    }
}

/* Whether the head received so far has a bare LF or a lone CR: then the parser rejects it now rather than after
 * KEEL_ADMIN_MAX_HEAD bytes (keel_h1_has_head only looks for CRLFCRLF). Each byte is screened once. */
static bool bad_eol(struct admin_conn *c)
{
    const char *p = c->in.data;
    size_t i = c->screened ? c->screened : 1;
    if (c->in.len && p[0] == '\n')
        return true;
    for (; i < c->in.len; i++)
        if ((p[i] == '\n' && p[i - 1] != '\r') || (p[i - 1] == '\r' && p[i] != '\n'))
            return true;
    /* a CR at the very end may still be followed by its LF: look at it again next time */
    c->screened = c->in.len;
    return false;
}

/* Handles buffered input until a response is pending, more input is needed, or the connection closed. */
static void process(struct admin_conn *c)
{
    struct keel_admin *a = c->a;
    while (!c->closed && !pending(c)) {
        if (c->close_after) {
            linger(c);
            return;
        }
        if (c->skipping && !skip_body(c))
            return;
        if (c->closed || c->in.len == 0)
            return;
        if (!keel_h1_has_head(c->in.data, c->in.len, &c->scanned) && c->in.len < c->in.max && !bad_eol(c))
            return;
        size_t used = 0;
        const struct keel_h1_limits lim = {.max_head = KEEL_ADMIN_MAX_HEAD};
        int rc = keel_h1_parse_request_ex(c->in.data, c->in.len, &lim, &a->req, NULL, &used);
        if (rc == KEEL_EAGAIN) {
            if (c->in.len < c->in.max)
                return;
            rc = KEEL_H1_E_HEAD_TOO_LARGE;
        }
        c->scanned = 0;
        if (rc < 0) {
            char line[160];
            snprintf(line, sizeof(line), "bad request: %s\n", keel_h1_strerror(rc));
            c->close_after = true;
            keel_buf_reset(&c->in);
            respond_text(c, NULL, keel_h1_error_status(rc), line);
            return;
        }
        const struct keel_http_head *req = &a->req;
        if (!req->keep_alive || req->upgrade)
            c->close_after = true;
        if (req->has_content_length && req->content_length > KEEL_ADMIN_MAX_BODY) {
            c->close_after = true;
            respond_text(c, req, 413, "request body too large\n");
        } else {
            handle(c, req);
            if (c->closed)
                return;
        }
        consume(c, used); /* req points into c->in: only now */
        if (req->chunked) {
            c->skipping = true;
            c->chunked = true;
            c->body_left = KEEL_ADMIN_MAX_BODY;
            keel_h1_chunked_init(&c->ck);
        } else if (req->has_content_length && req->content_length) {
            c->skipping = true;
            c->chunked = false;
            c->body_left = req->content_length;
        }
    }
}

/* Writes as much of the pending response as the socket takes. */
static void flush(struct admin_conn *c)
{
    while (pending(c)) {
        struct iovec iov[2];
        int n = 0;
        size_t off = c->sent;
        if (off < c->head.len) {
            iov[n++] = (struct iovec){c->head.data + off, c->head.len - off};
            off = 0;
        } else {
            off -= c->head.len;
        }
        if (c->body.len > off)
            iov[n++] = (struct iovec){c->body.data + off, c->body.len - off};
        ssize_t w = keel_sock_writev(c->fd, iov, n);
        if (w == KEEL_EAGAIN)
            return;
        if (w < 0) {
            conn_close(c);
            return;
        }
        c->sent += (size_t)w;
        if (!c->lingering)
            touch(c);
        if (c->sent == c->head.len + c->body.len) {
            c->sent = 0;
            keel_buf_reset(&c->head);
            if (c->body.cap > ADMIN_KEEP_BODY_CAP)
                keel_buf_free(&c->body);
            else
                keel_buf_reset(&c->body);
        }
    }
}

/* Reads one chunk. Returns false when the connection was closed. */
static bool read_some(struct admin_conn *c)
{
    char chunk[ADMIN_READ_CHUNK];
    size_t room = c->in.max - c->in.len;
    if (room == 0)
        return true; /* process() reports the oversized head */
    ssize_t r = keel_sock_read(c->fd, chunk, room < sizeof(chunk) ? room : sizeof(chunk));
    if (r == KEEL_EAGAIN)
        return true;
    if (r <= 0 || keel_buf_append(&c->in, chunk, (size_t)r) != 0) {
        conn_close(c);
        return false;
    }
    touch(c);
    return true;
}

static void on_conn_io(struct keel_loop *loop, struct keel_io *io, uint32_t revents)
{
    (void)loop;
    struct admin_conn *c = io->data;
    struct keel_admin *a = c->a;
    a->depth++;
    if (c->lingering) {
        drain_input(c);
        set_interest(c);
        a->depth--;
        return;
    }
    if (pending(c))
        flush(c);
    else if (revents & (KEEL_IO_READ | KEEL_IO_ERROR))
        read_some(c);
    /* Handle what is buffered (the request just read, the next pipelined one once the last response is out),
     * writing each response at once: usually it all fits in the socket and no writable event is needed. */
    for (;;) {
        if (!c->closed && !pending(c))
            process(c);
        if (c->closed || !pending(c))
            break;
        flush(c);
        if (c->closed || pending(c))
            break; /* the socket is full: wait for KEEL_IO_WRITE */
    }
    if (!c->closed && !pending(c) && c->close_after)
        linger(c);
    set_interest(c);
    a->depth--;
}

/* ---- listener --------------------------------------------------------------------------------------------------- */

static void on_resume(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct keel_admin *a = t->data;
    a->paused_mfile = false;
    if (!a->paused_full)
        keel_io_modify(&a->lio, KEEL_IO_READ);
}

static void add_conn(struct keel_admin *a, int fd)
{
    struct admin_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->a = a;
    c->fd = fd;
    c->idle_ms = a->idle_ms;
    keel_buf_init(&c->in, KEEL_ADMIN_MAX_HEAD);
    keel_buf_init(&c->head, ADMIN_MAX_RESPONSE_HEAD);
    keel_buf_init(&c->body, KEEL_ADMIN_MAX_RESPONSE);
    keel_io_init(&c->io, fd, on_conn_io, c);
    keel_timer_init(&c->idle);
    if (keel_io_start(a->loop, &c->io, KEEL_IO_READ) != 0 ||
        keel_timer_start(a->loop, &c->idle, c->idle_ms, on_idle, c) != 0) {
        keel_io_stop(&c->io);
        close(fd);
        free_conn(c);
        return;
    }
    c->next = a->conns;
    if (a->conns)
        a->conns->prev = c;
    a->conns = c;
    a->nconns++;
}

static void on_accept(struct keel_loop *loop, struct keel_io *io, uint32_t revents)
{
    (void)revents;
    struct keel_admin *a = io->data;
    a->depth++;
    for (int i = 0; i < ADMIN_ACCEPT_BATCH && a->nconns < KEEL_ADMIN_MAX_CONNS; i++) {
        int fd;
        int rc = keel_sock_accept(a->lfd, &fd, NULL);
        if (rc == KEEL_EAGAIN)
            break;
        if (rc == KEEL_EMFILE) {
            keel_log(KEEL_LOG_WARN, "admin: out of file descriptors; pausing accept for %d ms",
                     KEEL_SOCK_ACCEPT_PAUSE_MS);
            if (keel_timer_start(loop, &a->pause, KEEL_SOCK_ACCEPT_PAUSE_MS, on_resume, a) == 0) {
                a->paused_mfile = true;
                keel_io_modify(&a->lio, 0);
            }
            break;
        }
        if (rc < 0)
            break;
        add_conn(a, fd);
    }
    update_listener(a);
    a->depth--;
}

/* ---- public ----------------------------------------------------------------------------------------------------- */

int keel_admin_start(struct keel_loop *loop, const struct keel_addr *addr, const struct keel_admin_source *src,
                     struct keel_admin **out)
{
    if (!loop || !addr || !src || !out)
        return KEEL_EINVAL;
    struct keel_admin *a = calloc(1, sizeof(*a));
    if (!a)
        return KEEL_ENOMEM;
    a->loop = loop;
    a->src = *src;
    a->idle_ms = KEEL_ADMIN_IDLE_MS;
    keel_timer_init(&a->pause);
    int rc = keel_sock_listen(addr, false, 0, &a->lfd);
    if (rc) {
        free(a);
        return rc;
    }
    struct keel_addr local;
    rc = keel_sock_local_addr(a->lfd, &local);
    if (!rc) {
        a->port = keel_addr_port(&local);
        keel_io_init(&a->lio, a->lfd, on_accept, a);
        rc = keel_io_start(loop, &a->lio, KEEL_IO_READ);
    }
    if (rc) {
        close(a->lfd);
        free(a);
        return rc == KEEL_ECLOSED ? KEEL_EIO : rc;
    }
    keel_loop_update_now(loop);
    a->started_ms = keel_loop_now_ms(loop);
    *out = a;
    return 0;
}

static void on_admin_freed(struct keel_loop *loop, struct keel_defer *d)
{
    (void)loop;
    free(d->data);
}

void keel_admin_stop(struct keel_admin *a)
{
    if (!a || a->stopped)
        return;
    keel_io_stop(&a->lio);
    keel_timer_stop(&a->pause);
    close(a->lfd);
    a->lfd = -1;
    while (a->conns)
        conn_close(a->conns);
    a->stopped = true;
    if (a->depth)
        keel_loop_defer(a->loop, &a->defer, on_admin_freed, a);
    else
        free(a);
}

uint16_t keel_admin_port(const struct keel_admin *a)
{
    return a ? a->port : 0;
}

unsigned keel_admin_conn_count(const struct keel_admin *a)
{
    return a ? a->nconns : 0;
}

void keel_admin_set_idle_timeout(struct keel_admin *a, uint64_t ms)
{
    if (a)
        a->idle_ms = ms;
}
