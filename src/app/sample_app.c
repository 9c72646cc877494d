/*
 * sample_app.c - `keel sample-app`: listener, workers, signals and the HTTP/1.1 connections (see sample_app.h).
 *
 * An HTTP/1.1 connection is a small state machine on its worker's loop, driven by a level-triggered watcher
 * (the admin server's design, proxy/admin.c):
 *
 *   read -> [first bytes: h2c preface? hand over to sample_h2.c] -> parse one head (http/h1.c)
 *        -> start an exchange (sample_handler.c) -> [wait: watcher off] -> write the response -> next request
 *
 * One request at a time per connection: pipelined requests wait in the input buffer, which is how HTTP/1.1
 * orders its responses anyway. While an exchange waits (/delay, calls) the connection watches nothing, so it costs
 * the loop nothing; other connections go on. Request bodies are read and dropped after the request was answered
 * (Content-Length or chunked, at most KEEL_SAMPLE_MAX_REQUEST_BODY).
 *
 * Lifetimes: a closed connection is unlinked, its exchange freed (a running call is told to abort) and its fd
 * closed at once; its memory is freed by a deferred callback, because it may be closed from inside its own
 * callbacks. At worker shutdown it is freed at once (no callback is running then).
 */
#include "app/sample_app.h"

#include "app/sample_call.h"
#include "app/sample_h2.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "base/str.h"
#include "http/h1.h"
#include "net/loop.h"
#include "net/sock.h"
#include "net/worker.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* Most bytes read from one connection per wakeup (fairness between connections). */
#define H1_READ_CHUNK (16 * 1024)
/* Most connections accepted per wakeup of the listener. */
#define H1_ACCEPT_BATCH 64
/* Room for the response head (our fields are few and short). */
#define H1_MAX_RESPONSE_HEAD 4096
/* Longest lingering close (see linger()). */
#define H1_LINGER_MS 2000

struct keel_sample_h1 {
    struct keel_sample_ctx *ctx;
    struct keel_sample_h1 *prev, *next;
    int fd;
    char peer[KEEL_ADDR_STRLEN];
    struct keel_io io;
    struct keel_timer idle;
    struct keel_defer defer;
    struct keel_buf in;  /* received, not yet consumed */
    size_t scanned;      /* keel_h1_has_head progress */
    size_t screened;     /* bytes of in checked for bare LF / lone CR */
    struct keel_buf out; /* response being written */
    size_t sent;
    struct keel_sample_exchange *ex; /* request being answered */
    bool head_only;                  /* the request was HEAD: no body */
    bool http10_keep_alive;          /* HTTP/1.0 with Connection: keep-alive: say so in the answer */
    bool sniffed;                    /* the first bytes were checked for the h2c preface */
    /* request body being skipped */
    bool skipping;
    bool chunked;
    uint64_t body_left;
    struct keel_h1_chunked ck;
    bool close_after;
    bool lingering;
    bool closed;
    struct keel_http_head req; /* parse scratch */
};

static void drive(struct keel_sample_h1 *c);

/* ---- lifecycle -------------------------------------------------------------------------------------------------- */

static void free_conn(struct keel_sample_h1 *c)
{
    keel_buf_free(&c->in);
    keel_buf_free(&c->out);
    free(c);
}

static void on_conn_freed(struct keel_loop *loop, struct keel_defer *d)
{
    (void)loop;
    free_conn(d->data);
}

/* Unlinks, frees the exchange and closes the fd; frees the memory now or at the end of the iteration. When
 * keep_fd is set, the fd is left open (handed over to h2c). */
static void conn_close(struct keel_sample_h1 *c, bool now, bool keep_fd)
{
    if (c->closed)
        return;
    c->closed = true;
    keel_io_stop(&c->io);
    keel_timer_stop(&c->idle);
    keel_sample_exchange_free(c->ex);
    c->ex = NULL;
    if (!keep_fd)
        close(c->fd);
    c->fd = -1;
    if (c->prev)
        c->prev->next = c->next;
    else
        c->ctx->h1_conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (now)
        free_conn(c);
    else
        keel_loop_defer(c->ctx->loop, &c->defer, on_conn_freed, c);
}

static void on_idle(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    conn_close(t->data, false, false);
}

static void touch(struct keel_sample_h1 *c, uint64_t ms)
{
    /* a first start that fails (out of memory) leaves the connection without a timeout */
    keel_timer_start(c->ctx->loop, &c->idle, ms, on_idle, c);
}

static bool pending(const struct keel_sample_h1 *c)
{
    return c->out.len > 0;
}

static void set_interest(struct keel_sample_h1 *c)
{
    if (c->closed)
        return;
    uint32_t ev = c->ex ? 0 : pending(c) && !c->lingering ? KEEL_IO_WRITE : KEEL_IO_READ;
    if (ev == 0) {
        keel_io_modify(&c->io, 0);
        keel_timer_stop(&c->idle); /* an exchange may take longer than the idle timeout: not idle */
        return;
    }
    if (keel_io_modify(&c->io, ev) != 0)
        conn_close(c, false, false);
    else if (!keel_timer_is_active(&c->idle))
        touch(c, KEEL_SAMPLE_IDLE_MS);
}

/* Closing after a response: shut the write side, then read and drop until the client closes (or H1_LINGER_MS),
 * so unread input does not make the kernel reset the connection before the client read the response. */
static void linger(struct keel_sample_h1 *c)
{
    if (c->lingering || c->closed)
        return;
    if (keel_sock_shutdown_write(c->fd) != 0) {
        conn_close(c, false, false);
        return;
    }
    c->lingering = true;
    keel_buf_reset(&c->in);
    c->skipping = false;
    touch(c, H1_LINGER_MS);
}

static void drain_input(struct keel_sample_h1 *c)
{
    char chunk[4096];
    for (int i = 0; i < 16; i++) {
        ssize_t r = keel_sock_read(c->fd, chunk, sizeof(chunk));
        if (r == KEEL_EAGAIN)
            return;
        if (r <= 0) {
            conn_close(c, false, false);
            return;
        }
    }
}

/* ---- responses -------------------------------------------------------------------------------------------------- */

/* Queues status, the fields and body (none for HEAD, 204 and 304; Content-Length unless 204/304). */
static void queue_response(struct keel_sample_h1 *c, int status, const struct keel_http_header *fields, size_t n,
                           const struct keel_buf *body)
{
    struct keel_http_header all[8];
    size_t k = 0;
    for (size_t i = 0; i < n && k < 6; i++)
        all[k++] = fields[i];
    bool no_body = status == 204 || status == 304;
    char len[KEEL_U64_STRLEN];
    if (!no_body) {
        keel_u64_to_str(body->len, len);
        all[k++] = (struct keel_http_header){keel_str_c("content-length"), keel_str_c(len)};
    }
    if (c->close_after)
        all[k++] = (struct keel_http_header){keel_str_c("connection"), keel_str_c("close")};
    else if (c->http10_keep_alive)
        all[k++] = (struct keel_http_header){keel_str_c("connection"), keel_str_c("keep-alive")};
    struct keel_http_head h = {.version = KEEL_HTTP_11, .status = status};
    keel_buf_reset(&c->out);
    c->sent = 0;
    int rc = keel_h1_write_response_head(&c->out, &h, all, k);
    if (!rc && !no_body && !c->head_only && body->len)
        rc = keel_buf_append(&c->out, body->data, body->len);
    if (rc) {
        keel_log(KEEL_LOG_WARN, "sample-app: cannot write a %d response: %s", status, keel_strerror(rc));
        keel_buf_reset(&c->out);
        conn_close(c, false, false);
    }
}

/* An error found before any exchange started (malformed request): a short JSON body, then close. */
static void queue_error(struct keel_sample_h1 *c, int status, const char *msg)
{
    const struct keel_sample_options *o = c->ctx->opt;
    struct keel_buf body;
    keel_buf_init(&body, 4096);
    int rc = keel_buf_puts(&body, "{\"name\":");
    if (!rc)
        rc = keel_buf_json_str(&body, o->name);
    if (!rc)
        rc = keel_buf_puts(&body, ",\"error\":");
    if (!rc)
        rc = keel_buf_json_str(&body, msg);
    if (!rc)
        rc = keel_buf_puts(&body, "}\n");
    const struct keel_http_header f[] = {
        {keel_str_c("content-type"), keel_str_c("application/json")},
        {keel_str_c("x-app-name"), keel_str_c(o->name)},
        {keel_str_c("x-app-version"), keel_str_c(o->version)},
    };
    c->close_after = true;
    c->head_only = false;
    if (rc)
        keel_buf_reset(&body);
    queue_response(c, status, f, 3, &body);
    keel_buf_free(&body);
}

static void respond_exchange(struct keel_sample_h1 *c)
{
    struct keel_sample_exchange *ex = c->ex;
    const struct keel_http_header *f;
    size_t n = keel_sample_exchange_headers(ex, &f);
    queue_response(c, keel_sample_exchange_status(ex), f, n, keel_sample_exchange_body(ex));
    if (c->closed)
        return;
    c->ex = NULL;
    keel_sample_exchange_free(ex);
}

static void on_exchange_done(struct keel_sample_exchange *ex, void *data)
{
    struct keel_sample_h1 *c = data;
    (void)ex;
    respond_exchange(c);
    drive(c);
}

/* ---- request processing ----------------------------------------------------------------------------------------- */

/* Drops n bytes of input; the head scan starts over on what is left. */
static void consume(struct keel_sample_h1 *c, size_t n)
{
    c->screened = 0;
    keel_buf_consume(&c->in, n);
}

/* Skips buffered body bytes. Returns true when the body is done (or the connection closed on a framing error). */
static bool skip_body(struct keel_sample_h1 *c)
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
                conn_close(c, false, false);
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
        conn_close(c, false, false);
        return true;
    }
}

/* Whether the first bytes are (so far) the h2c preface: hands the connection over when all of it is there. Returns
 * true when the caller must stop (handed over, or more bytes needed to decide). */
static bool sniff(struct keel_sample_h1 *c)
{
    size_t n = c->in.len < KEEL_SAMPLE_H2_PREFACE_LEN ? c->in.len : KEEL_SAMPLE_H2_PREFACE_LEN;
    if (memcmp(c->in.data, KEEL_SAMPLE_H2_PREFACE, n) != 0) {
        c->sniffed = true; /* HTTP/1.x (or garbage the h1 parser rejects) */
        return false;
    }
    if (n < KEEL_SAMPLE_H2_PREFACE_LEN)
        return true;
    struct keel_sample_ctx *ctx = c->ctx;
    int fd = c->fd;
    char peer[KEEL_ADDR_STRLEN];
    memcpy(peer, c->peer, sizeof(peer));
    struct keel_buf in = c->in;
    keel_buf_init(&c->in, 0); /* the bytes go with the connection */
    conn_close(c, false, true);
    if (keel_sample_h2_start(ctx, fd, peer, in.data, in.len) != 0)
        keel_log(KEEL_LOG_WARN, "sample-app: out of memory for an h2c connection from %s", peer);
    keel_buf_free(&in);
    return true;
}

/* Whether the head received so far has a bare LF or a lone CR: then the parser rejects it now rather than after
 * KEEL_SAMPLE_MAX_HEAD bytes or the idle timeout (keel_h1_has_head only looks for CRLFCRLF). Each byte is screened
 * once. */
static bool bad_eol(struct keel_sample_h1 *c)
{
    const char *p = c->in.data;
    size_t i = c->screened ? c->screened : 1;
    if (c->in.len && p[0] == '\n')
        return true;
    for (; i < c->in.len; i++)
        if ((p[i] == '\n' && p[i - 1] != '\r') || (p[i - 1] == '\r' && p[i] != '\n'))
            return true;
    c->screened = c->in.len; /* a CR at the very end may still get its LF: looked at again next time */
    return false;
}

static const char *protocol_name(const struct keel_http_head *h)
{
    return h->version == KEEL_HTTP_10 ? "HTTP/1.0" : "HTTP/1.1";
}

/* Handles buffered input until a response is pending or waited for, more input is needed, or the connection
 * closed. */
static void process(struct keel_sample_h1 *c)
{
    while (!c->closed && !pending(c) && !c->ex) {
        if (c->close_after) {
            linger(c);
            return;
        }
        if (c->skipping && !skip_body(c))
            return;
        if (c->closed || c->in.len == 0)
            return;
        if (!c->sniffed && sniff(c))
            return;
        if (!keel_h1_has_head(c->in.data, c->in.len, &c->scanned) && c->in.len < c->in.max && !bad_eol(c))
            return;
        size_t used = 0;
        int rc = keel_h1_parse_request(c->in.data, c->in.len, &c->req, &used);
        if (rc == KEEL_EAGAIN) {
            if (c->in.len < c->in.max)
                return;
            rc = KEEL_H1_E_HEAD_TOO_LARGE;
        }
        c->scanned = 0;
        if (rc < 0) {
            char msg[160];
            snprintf(msg, sizeof(msg), "bad request: %s", keel_h1_strerror(rc));
            keel_buf_reset(&c->in);
            queue_error(c, keel_h1_error_status(rc), msg);
            return;
        }
        const struct keel_http_head *h = &c->req;
        if (!h->keep_alive || h->upgrade)
            c->close_after = true;
        if (h->has_content_length && h->content_length > KEEL_SAMPLE_MAX_REQUEST_BODY) {
            queue_error(c, 413, "request body too large");
            return;
        }
        c->head_only = keel_str_eq_c(h->method, "HEAD");
        c->http10_keep_alive = h->version == KEEL_HTTP_10 && !c->close_after;
        struct keel_sample_request req = {
            .method = h->method,
            .path = h->path,
            .query = h->query,
            .authority = h->authority,
            .headers = h->headers,
            .nheaders = h->nheaders,
            .protocol = protocol_name(h),
            .peer = c->peer,
        };
        c->ex = keel_sample_exchange_start(c->ctx, &req, on_exchange_done, c);
        if (!c->ex) {
            queue_error(c, 500, "out of memory");
            return;
        }
        consume(c, used); /* h points into c->in: only now */
        if (h->chunked) {
            c->skipping = true;
            c->chunked = true;
            c->body_left = KEEL_SAMPLE_MAX_REQUEST_BODY;
            keel_h1_chunked_init(&c->ck);
        } else if (h->has_content_length && h->content_length) {
            c->skipping = true;
            c->chunked = false;
            c->body_left = h->content_length;
        }
        if (keel_sample_exchange_ready(c->ex))
            respond_exchange(c);
    }
}

static void flush(struct keel_sample_h1 *c)
{
    while (pending(c)) {
        ssize_t w = keel_sock_write(c->fd, c->out.data + c->sent, c->out.len - c->sent);
        if (w == KEEL_EAGAIN)
            return;
        if (w < 0) {
            conn_close(c, false, false);
            return;
        }
        c->sent += (size_t)w;
        if (c->sent == c->out.len) {
            c->sent = 0;
            keel_buf_reset(&c->out);
        }
    }
}

/* Processes and writes until the connection waits for the socket, for input or for an exchange. */
static void drive(struct keel_sample_h1 *c)
{
    for (;;) {
        if (!c->closed && !pending(c))
            process(c);
        if (c->closed || !pending(c))
            break;
        flush(c);
        if (c->closed || pending(c))
            break; /* the socket is full: wait for KEEL_IO_WRITE */
    }
    if (!c->closed && !pending(c) && !c->ex && c->close_after)
        linger(c);
    if (!c->closed && !c->lingering)
        touch(c, KEEL_SAMPLE_IDLE_MS);
    set_interest(c);
}

static void on_conn_io(struct keel_loop *loop, struct keel_io *io, uint32_t revents)
{
    (void)loop;
    struct keel_sample_h1 *c = io->data;
    if (c->lingering) {
        drain_input(c);
        return;
    }
    if (pending(c)) {
        flush(c);
    } else if (revents & (KEEL_IO_READ | KEEL_IO_ERROR)) {
        char chunk[H1_READ_CHUNK];
        size_t room = c->in.max - c->in.len;
        if (room) {
            ssize_t r = keel_sock_read(c->fd, chunk, room < sizeof(chunk) ? room : sizeof(chunk));
            if (r == KEEL_EAGAIN)
                return;
            if (r <= 0 || keel_buf_append(&c->in, chunk, (size_t)r) != 0) {
                conn_close(c, false, false);
                return;
            }
        }
    }
    if (!c->closed)
        drive(c);
}

void keel_sample_h1_accept(struct keel_sample_ctx *ctx, int fd, const char *peer)
{
    struct keel_sample_h1 *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->ctx = ctx;
    c->fd = fd;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    keel_buf_init(&c->in, KEEL_SAMPLE_MAX_HEAD);
    keel_buf_init(&c->out, H1_MAX_RESPONSE_HEAD + KEEL_SAMPLE_MAX_BODY);
    keel_io_init(&c->io, fd, on_conn_io, c);
    keel_timer_init(&c->idle);
    if (keel_io_start(ctx->loop, &c->io, KEEL_IO_READ) != 0 ||
        keel_timer_start(ctx->loop, &c->idle, KEEL_SAMPLE_IDLE_MS, on_idle, c) != 0) {
        keel_io_stop(&c->io);
        close(fd);
        free_conn(c);
        return;
    }
    c->next = ctx->h1_conns;
    if (c->next)
        c->next->prev = c;
    ctx->h1_conns = c;
}

void keel_sample_h1_close_all(struct keel_sample_ctx *ctx)
{
    while (ctx->h1_conns)
        conn_close(ctx->h1_conns, true, false);
}

/* ---- workers ---------------------------------------------------------------------------------------------------- */

/* What every worker shares, read-only once the workers start. */
struct app_shared {
    const struct keel_sample_options *opt;
    int lfd;
    char id[300];
};

struct app_worker {
    struct keel_sample_ctx ctx;
    int lfd;
    struct keel_io lio;
    struct keel_timer pause; /* accept paused after KEEL_EMFILE */
};

static void on_resume(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct app_worker *w = t->data;
    keel_io_modify(&w->lio, KEEL_IO_READ);
}

static void on_accept(struct keel_loop *loop, struct keel_io *io, uint32_t revents)
{
    (void)revents;
    struct app_worker *w = io->data;
    for (int i = 0; i < H1_ACCEPT_BATCH; i++) {
        int fd;
        struct keel_addr peer = {0};
        int rc = keel_sock_accept(w->lfd, &fd, &peer);
        if (rc == KEEL_EAGAIN)
            break;
        if (rc == KEEL_EMFILE) {
            keel_log(KEEL_LOG_WARN, "sample-app: out of file descriptors; pausing accept for %d ms",
                     KEEL_SOCK_ACCEPT_PAUSE_MS);
            if (keel_timer_start(loop, &w->pause, KEEL_SOCK_ACCEPT_PAUSE_MS, on_resume, w) == 0)
                keel_io_modify(&w->lio, 0);
            break;
        }
        if (rc < 0)
            break;
        char addr[KEEL_ADDR_STRLEN] = "";
        if (keel_addr_format(&peer, addr, sizeof(addr)) < 0)
            snprintf(addr, sizeof(addr), "unknown");
        keel_sock_set_nodelay(fd, true);
        keel_sample_h1_accept(&w->ctx, fd, addr);
    }
}

static int worker_init(struct keel_worker *kw, void *data)
{
    const struct app_shared *sh = data;
    struct app_worker *w = calloc(1, sizeof(*w));
    if (!w)
        return KEEL_ENOMEM;
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        seed = keel_now_ms();
    seed ^= (uint64_t)(keel_worker_index(kw) + 1) * 0x9e3779b97f4a7c15ull;
    struct keel_loop *loop = keel_worker_loop(kw);
    keel_sample_ctx_init(&w->ctx, loop, sh->opt, sh->id, seed);
    w->lfd = sh->lfd;
    keel_timer_init(&w->pause);
    keel_io_init(&w->lio, w->lfd, on_accept, w);
    int rc = keel_io_start(loop, &w->lio, KEEL_IO_READ);
    if (rc) {
        free(w);
        return rc;
    }
    keel_worker_set_data(kw, w);
    return 0;
}

static void worker_fini(struct keel_worker *kw, void *data)
{
    (void)data;
    struct app_worker *w = keel_worker_data(kw);
    if (!w)
        return;
    keel_io_stop(&w->lio);
    keel_timer_stop(&w->pause);
    keel_sample_h1_close_all(&w->ctx);
    keel_sample_h2_close_all(&w->ctx);
    keel_sample_ctx_fini(&w->ctx);
    free(w);
}

int keel_sample_app_run(const struct keel_sample_options *opt)
{
    struct keel_addr addr;
    if (keel_addr_parse(opt->listen, &addr) != 0) {
        fprintf(stderr, "keel sample-app: --listen wants IP:PORT or [IPv6]:PORT, got \"%s\"\n", opt->listen);
        return 1;
    }
    struct app_shared sh = {.opt = opt, .lfd = -1};
    int rc = keel_sock_listen(&addr, false, 0, &sh.lfd);
    if (rc) {
        fprintf(stderr, "keel sample-app: cannot listen on %s: %s\n", opt->listen, keel_strerror(rc));
        return 1;
    }
    char host[256] = "";
    if (gethostname(host, sizeof(host) - 1) != 0)
        snprintf(host, sizeof(host), "localhost");
    snprintf(sh.id, sizeof(sh.id), "%s/%ld", host, (long)getpid());

    /* SIGTERM and SIGINT are taken with sigwait below; every thread started from here on inherits the mask. */
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (keel_sample_call_global_init() != 0) {
        fprintf(stderr, "keel sample-app: libcurl failed to initialise\n");
        close(sh.lfd);
        return 1;
    }
    struct keel_workers *ws = NULL;
    struct keel_workers_config wc = {
        .count = opt->concurrency ? opt->concurrency : 1, .init = worker_init, .fini = worker_fini, .data = &sh};
    rc = keel_workers_start(&wc, &ws);
    if (rc) {
        fprintf(stderr, "keel sample-app: cannot start the workers: %s\n", keel_strerror(rc));
        keel_sample_call_global_cleanup();
        close(sh.lfd);
        return 1;
    }
    struct keel_addr local;
    char where[KEEL_ADDR_STRLEN] = "?";
    if (keel_sock_local_addr(sh.lfd, &local) == 0)
        keel_addr_format(&local, where, sizeof(where));
    keel_log(KEEL_LOG_INFO, "sample-app %s version %s listening on %s (HTTP/1.1 and h2c), %u worker(s), %zu call(s)",
             opt->name, opt->version, where, wc.count, opt->ncalls);

    int sig = 0;
    while (sigwait(&mask, &sig) != 0)
        ;
    keel_log(KEEL_LOG_INFO, "sample-app: signal %d received, stopping", sig);
    keel_workers_stop_join(ws);
    keel_sample_call_global_cleanup();
    close(sh.lfd);
    return 0;
}
