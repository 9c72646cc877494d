/*
 * admin_test.c - tests for proxy/admin over real loopback sockets.
 *
 * Each test starts the admin on 127.0.0.1 port 0 on a fresh loop, runs the
 * loop in a thread, and talks to it with plain blocking client sockets:
 * readiness 200/503, the Prometheus and config-dump bodies, 404/405/400/431/
 * 413/500, keep-alive (sequential and pipelined), request bodies skipped,
 * HTTP/1.0 close, HEAD, /logging, /server_info, drain, a 1 MiB config dump
 * read slowly while another connection is served, the idle timeout, the
 * connection limit, and stopping the admin from inside its own callback.
 *
 * No test asserts a duration: every wait is a poll() with a hang guard.
 */
#include "proxy/admin.h"

#include "base/buf.h"
#include "base/err.h"
#include "base/log.h"
#include "net/loop.h"
#include "net/sock.h"
#include "proxy/stats.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

/* A hang guard, not a timing assertion. */
#define GENEROUS_MS 20000
#define BIG_DUMP (1024 * 1024)

/* ---- the fixture: loop thread + admin + a fake source ------------------------------------------------------------ */

struct fixture {
    struct keel_loop *loop;
    struct keel_admin *admin;
    pthread_t thread;
    uint16_t port;
    atomic_bool ready;
    atomic_int drains;
    atomic_bool fail_clusters;
    atomic_bool stop_in_drain;
    atomic_bool stopped_inside;
    _Atomic size_t dump_size; /* 0: a small JSON document */
    struct keel_stats_shard *shard;
};

static bool src_ready(void *ctx)
{
    struct fixture *f = ctx;
    return atomic_load(&f->ready);
}

static int src_prometheus(void *ctx, struct keel_buf *out)
{
    struct fixture *f = ctx;
    struct keel_stats_shard *const shards[] = {f->shard};
    return keel_stats_prometheus(shards, 1, out);
}

static int src_config_dump(void *ctx, struct keel_buf *out)
{
    struct fixture *f = ctx;
    size_t size = atomic_load(&f->dump_size);
    if (!size)
        return keel_buf_puts(out, "{\"configs\":[{\"@type\":\"type.googleapis.com/keel.Bootstrap\"}]}\n");
    /* {"blob":"abc...xyz"} padded to exactly size bytes with a recognisable pattern */
    int rc = keel_buf_puts(out, "{\"blob\":\"");
    char pattern[26 * 160];
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (char)('a' + i % 26);
    for (size_t left = size - 9 - 2; !rc && left;) {
        size_t n = left < sizeof(pattern) ? left : sizeof(pattern);
        rc = keel_buf_append(out, pattern, n);
        left -= n;
    }
    return rc ? rc : keel_buf_puts(out, "\"}");
}

static int src_clusters(void *ctx, struct keel_buf *out)
{
    struct fixture *f = ctx;
    if (atomic_load(&f->fail_clusters))
        return KEEL_ENOMEM;
    return keel_buf_puts(out,
                         "outbound|9080||reviews.default.svc.cluster.local::10.0.0.1:9080::health_flags::healthy\n");
}

static int src_drain(void *ctx)
{
    struct fixture *f = ctx;
    atomic_fetch_add(&f->drains, 1);
    if (atomic_load(&f->stop_in_drain)) {
        atomic_store(&f->stopped_inside, true); /* before: the client sees EOF as soon as the stop closes */
        keel_admin_stop(f->admin);              /* from inside the admin's own callback */
    }
    return 0;
}

static void *loop_main(void *p)
{
    struct fixture *f = p;
    keel_loop_run(f->loop);
    return NULL;
}

static struct fixture *fixture_new(bool with_clusters, uint64_t idle_ms)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->loop = keel_loop_new();
    assert_non_null(f->loop);
    f->shard = keel_stats_shard_new();
    assert_non_null(f->shard);
    atomic_store(&f->ready, true);
    struct keel_admin_source src = {
        .ctx = f,
        .ready = src_ready,
        .stats_prometheus = src_prometheus,
        .config_dump = src_config_dump,
        .clusters = with_clusters ? src_clusters : NULL,
        .drain = src_drain,
        .version = "0.1.0-test",
    };
    struct keel_addr addr;
    assert_int_equal(keel_addr_parse("127.0.0.1:0", &addr), 0);
    assert_int_equal(keel_admin_start(f->loop, &addr, &src, &f->admin), 0);
    f->port = keel_admin_port(f->admin);
    assert_true(f->port != 0);
    if (idle_ms)
        keel_admin_set_idle_timeout(f->admin, idle_ms);
    assert_int_equal(pthread_create(&f->thread, NULL, loop_main, f), 0);
    return f;
}

static void fixture_free(struct fixture *f)
{
    keel_loop_stop(f->loop);
    pthread_join(f->thread, NULL);
    if (!atomic_load(&f->stopped_inside))
        keel_admin_stop(f->admin);
    keel_loop_free(f->loop);
    keel_stats_shard_free(f->shard);
    free(f);
}

/* ---- a tiny blocking HTTP client --------------------------------------------------------------------------------- */

struct client {
    int fd;
    char *buf; /* received, not yet returned */
    size_t len, cap;
};

struct response {
    int status;
    char head[4096];
    char *body;
    size_t body_len;
};

static void client_open_rcvbuf(struct client *c, uint16_t port, int rcvbuf)
{
    memset(c, 0, sizeof(*c));
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(c->fd >= 0);
    if (rcvbuf)
        assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)), 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
}

static void client_open(struct client *c, uint16_t port)
{
    client_open_rcvbuf(c, port, 0);
}

static void client_close(struct client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    c->fd = -1;
    c->buf = NULL;
}

static void client_send(struct client *c, const char *s)
{
    size_t n = strlen(s), off = 0;
    while (off < n) {
        ssize_t w = send(c->fd, s + off, n - off, MSG_NOSIGNAL);
        assert_true(w > 0);
        off += (size_t)w;
    }
}

/* Waits until readable (hang guard); returns the bytes read, 0 at EOF. */
static ssize_t client_recv(struct client *c, size_t max)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, GENEROUS_MS), 1);
    if (c->cap - c->len < max + 1) {
        c->cap = c->cap * 2 > c->len + max + 1 ? c->cap * 2 : c->len + max + 1;
        c->buf = realloc(c->buf, c->cap);
        assert_non_null(c->buf);
    }
    ssize_t r = recv(c->fd, c->buf + c->len, max, 0);
    if (r < 0 && errno == ECONNRESET)
        r = 0;
    assert_true(r >= 0);
    c->len += (size_t)r;
    c->buf[c->len] = '\0';
    return r;
}

static void take(struct client *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
    c->buf[c->len] = '\0';
}

/* Reads one response; head_only: the answer to HEAD (Content-Length without a body). chunk limits each read. */
static void read_response_ex(struct client *c, struct response *r, bool head_only, size_t chunk)
{
    memset(r, 0, sizeof(*r));
    char *end;
    while (!c->buf || !(end = strstr(c->buf, "\r\n\r\n")))
        assert_true(client_recv(c, 4096) > 0);
    size_t hl = (size_t)(end - c->buf) + 4;
    assert_true(hl < sizeof(r->head));
    memcpy(r->head, c->buf, hl);
    r->head[hl] = '\0';
    take(c, hl);
    assert_int_equal(sscanf(r->head, "HTTP/1.1 %d ", &r->status), 1);
    const char *cl = strcasestr(r->head, "\r\ncontent-length:");
    assert_non_null(cl);
    size_t n = strtoul(cl + 17, NULL, 10);
    r->body_len = head_only ? 0 : n;
    while (c->len < r->body_len)
        assert_true(client_recv(c, chunk) > 0);
    r->body = malloc(r->body_len + 1);
    assert_non_null(r->body);
    memcpy(r->body, c->buf, r->body_len);
    r->body[r->body_len] = '\0';
    take(c, r->body_len);
}

static void read_response(struct client *c, struct response *r)
{
    read_response_ex(c, r, false, 65536);
}

static void response_free(struct response *r)
{
    free(r->body);
    r->body = NULL;
}

/* The peer closes: EOF (or reset) with nothing more to read. */
static void expect_eof(struct client *c)
{
    assert_int_equal(c->len, 0);
    assert_int_equal(client_recv(c, 4096), 0);
}

static bool has_header(const struct response *r, const char *line)
{
    return strcasestr(r->head, line) != NULL;
}

/* One request on a fresh connection. */
static void request(struct fixture *f, const char *raw, struct response *r)
{
    struct client c;
    client_open(&c, f->port);
    client_send(&c, raw);
    read_response(&c, r);
    client_close(&c);
}

static void get(struct fixture *f, const char *path, struct response *r)
{
    char raw[512];
    snprintf(raw, sizeof(raw), "GET %s HTTP/1.1\r\nHost: localhost\r\n\r\n", path);
    request(f, raw, r);
}

static void post(struct fixture *f, const char *path, struct response *r)
{
    char raw[512];
    snprintf(raw, sizeof(raw), "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n", path);
    request(f, raw, r);
}

/* ---- tests ------------------------------------------------------------------------------------------------------- */

static void test_ready(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(true, 0);
    struct response r;
    get(f, "/ready", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "LIVE\n");
    assert_true(has_header(&r, "\r\nContent-Type: text/plain"));
    response_free(&r);
    atomic_store(&f->ready, false);
    get(f, "/ready", &r);
    assert_int_equal(r.status, 503);
    assert_string_equal(r.body, "not ready\n");
    response_free(&r);
    get(f, "/healthz/ready", &r);
    assert_int_equal(r.status, 503);
    response_free(&r);
    get(f, "/server_info", &r);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "\r\nContent-Type: application/json"));
    assert_non_null(strstr(r.body, "\"version\":\"0.1.0-test\""));
    assert_non_null(strstr(r.body, "\"state\":\"PRE_INITIALIZING\""));
    assert_non_null(strstr(r.body, "\"uptime_current_epoch\":\""));
    response_free(&r);
    atomic_store(&f->ready, true);
    get(f, "/healthz/ready", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "LIVE\n");
    response_free(&r);
    get(f, "/healthz", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok");
    response_free(&r);
    get(f, "/", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "  /stats/prometheus: "));
    assert_non_null(strstr(r.body, "  (POST) /quitquitquit: "));
    response_free(&r);
    fixture_free(f);
}

static void test_stats_and_config_dump(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(true, 0);
    keel_stats_add(f->shard, KEEL_STAT_DOWNSTREAM_RQ_TOTAL, 42);
    keel_cstats_add(keel_stats_cluster(f->shard, "outbound|9080||reviews"), KEEL_CSTAT_UPSTREAM_RQ_TOTAL, 7);
    struct response r;
    get(f, "/stats/prometheus", &r);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "\r\nContent-Type: text/plain; version=0.0.4"));
    assert_non_null(
        strstr(r.body, "# TYPE envoy_http_downstream_rq_total counter\nenvoy_http_downstream_rq_total 42\n"));
    assert_non_null(strstr(r.body, "envoy_cluster_upstream_rq_total{cluster_name=\"outbound|9080||reviews\"} 7\n"));
    response_free(&r);
    get(f, "/metrics", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "envoy_http_downstream_rq_total 42\n"));
    response_free(&r);

    get(f, "/config_dump", &r);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "\r\nContent-Type: application/json\r\n"));
    assert_string_equal(r.body, "{\"configs\":[{\"@type\":\"type.googleapis.com/keel.Bootstrap\"}]}\n");
    response_free(&r);

    get(f, "/clusters", &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "::health_flags::healthy\n"));
    response_free(&r);
    get(f, "/clusters?format=json", &r); /* no clusters_json in this source */
    assert_int_equal(r.status, 404);
    response_free(&r);
    atomic_store(&f->fail_clusters, true);
    get(f, "/clusters", &r);
    assert_int_equal(r.status, 500);
    assert_string_equal(r.body, "error: out of memory\n");
    response_free(&r);
    fixture_free(f);

    /* a source without the callback: 404 */
    f = fixture_new(false, 0);
    get(f, "/clusters", &r);
    assert_int_equal(r.status, 404);
    response_free(&r);
    fixture_free(f);
}

static void test_errors(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(true, 0);
    struct response r;
    get(f, "/nope", &r);
    assert_int_equal(r.status, 404);
    response_free(&r);
    get(f, "/ready/", &r);
    assert_int_equal(r.status, 404);
    response_free(&r);
    get(f, "/quitquitquit", &r);
    assert_int_equal(r.status, 405);
    assert_true(has_header(&r, "\r\nAllow: POST\r\n"));
    response_free(&r);
    assert_int_equal(atomic_load(&f->drains), 0);
    post(f, "/ready", &r);
    assert_int_equal(r.status, 405);
    assert_true(has_header(&r, "\r\nAllow: GET, HEAD\r\n"));
    response_free(&r);
    request(f, "DELETE /logging HTTP/1.1\r\nHost: x\r\n\r\n", &r);
    assert_int_equal(r.status, 405);
    assert_true(has_header(&r, "\r\nAllow: GET, HEAD, POST\r\n"));
    response_free(&r);

    /* HEAD gets no body, whatever the status: the connection stays in sync */
    struct client h;
    client_open(&h, f->port);
    client_send(&h, "HEAD /nope HTTP/1.1\r\nHost: x\r\n\r\nHEAD /quitquitquit HTTP/1.1\r\nHost: x\r\n\r\n"
                    "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    read_response_ex(&h, &r, true, 4096);
    assert_int_equal(r.status, 404);
    response_free(&r);
    read_response_ex(&h, &r, true, 4096);
    assert_int_equal(r.status, 405);
    response_free(&r);
    read_response(&h, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok");
    response_free(&r);
    client_close(&h);

    /* malformed request: 400 and the connection closes */
    struct client c;
    client_open(&c, f->port);
    client_send(&c, "GET /ready HTTP/1.1\nHost: x\n\n");
    read_response(&c, &r);
    assert_int_equal(r.status, 400);
    assert_true(has_header(&r, "\r\nConnection: close\r\n"));
    response_free(&r);
    expect_eof(&c);
    client_close(&c);

    /* HTTP/1.1 without Host */
    client_open(&c, f->port);
    client_send(&c, "GET /ready HTTP/1.1\r\n\r\n");
    read_response(&c, &r);
    assert_int_equal(r.status, 400);
    response_free(&r);
    expect_eof(&c);
    client_close(&c);

    /* a head larger than 64 KiB: 431 */
    client_open(&c, f->port);
    char *big = malloc(KEEL_ADMIN_MAX_HEAD + 100);
    assert_non_null(big);
    strcpy(big, "GET /ready HTTP/1.1\r\nHost: x\r\nX-Big: ");
    size_t n = strlen(big);
    memset(big + n, 'a', KEEL_ADMIN_MAX_HEAD + 50 - n);
    big[KEEL_ADMIN_MAX_HEAD + 50] = '\0';
    client_send(&c, big);
    free(big);
    read_response(&c, &r);
    assert_int_equal(r.status, 431);
    response_free(&r);
    client_close(&c);

    /* a body larger than the limit: 413, closed */
    client_open(&c, f->port);
    client_send(&c, "POST /logging HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n");
    read_response(&c, &r);
    assert_int_equal(r.status, 413);
    response_free(&r);
    expect_eof(&c);
    client_close(&c);
    fixture_free(f);
}

static void test_keep_alive(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(true, 0);
    struct client c;
    struct response r;
    client_open(&c, f->port);
    client_send(&c, "GET /ready HTTP/1.1\r\nHost: x\r\n\r\n");
    read_response(&c, &r);
    assert_int_equal(r.status, 200);
    assert_false(has_header(&r, "Connection: close"));
    response_free(&r);
    client_send(&c, "GET /config_dump HTTP/1.1\r\nHost: x\r\n\r\n");
    read_response(&c, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "keel.Bootstrap"));
    response_free(&r);

    /* pipelined: three requests in one write, one with a body to skip, answered in order */
    client_send(&c, "POST /logging HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /healthz HTTP/1.1\r\n"
                    "Host: x\r\n\r\nPOST /drain_listeners HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "3\r\nabc\r\n0\r\n\r\nHEAD /ready HTTP/1.1\r\nHost: x\r\n\r\n");
    read_response(&c, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "active log level: "));
    response_free(&r);
    read_response(&c, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok");
    response_free(&r);
    read_response(&c, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "OK\n");
    response_free(&r);
    assert_int_equal(atomic_load(&f->drains), 1);
    read_response_ex(&c, &r, true, 4096);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "\r\nContent-Length: 5\r\n")); /* of "LIVE\n", not sent */
    response_free(&r);
    /* still open: one more */
    client_send(&c, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    read_response(&c, &r);
    assert_int_equal(r.status, 200);
    assert_true(has_header(&r, "\r\nConnection: close\r\n"));
    response_free(&r);
    expect_eof(&c);
    client_close(&c);

    /* HTTP/1.0: closes unless asked to keep alive */
    client_open(&c, f->port);
    client_send(&c, "GET /healthz HTTP/1.0\r\n\r\n");
    read_response(&c, &r);
    assert_int_equal(r.status, 200);
    response_free(&r);
    expect_eof(&c);
    client_close(&c);
    client_open(&c, f->port);
    client_send(&c, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    read_response(&c, &r);
    assert_true(has_header(&r, "\r\nConnection: keep-alive\r\n"));
    response_free(&r);
    client_send(&c, "GET /healthz HTTP/1.0\r\n\r\n");
    read_response(&c, &r);
    assert_int_equal(r.status, 200);
    response_free(&r);
    expect_eof(&c);
    client_close(&c);
    fixture_free(f);
}

static void test_logging(void **state)
{
    (void)state;
    enum keel_log_level saved = keel_log_get_level();
    struct fixture *f = fixture_new(true, 0);
    struct response r;
    post(f, "/logging?level=error", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "active log level: error\n");
    response_free(&r);
    assert_int_equal(keel_log_get_level(), KEEL_LOG_ERROR);
    get(f, "/logging", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "active log level: error\n");
    response_free(&r);
    post(f, "/logging?paths=all&level=debug", &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(keel_log_get_level(), KEEL_LOG_DEBUG);
    response_free(&r);
    post(f, "/logging?level=verbose", &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "invalid log level \"verbose\""));
    response_free(&r);
    post(f, "/logging?level=debugdebugdebugdebug", &r);
    assert_int_equal(r.status, 400);
    response_free(&r);
    get(f, "/logging?level=info", &r); /* changing needs POST */
    assert_int_equal(r.status, 405);
    response_free(&r);
    assert_int_equal(keel_log_get_level(), KEEL_LOG_DEBUG);
    fixture_free(f);
    keel_log_set_level(saved);
}

static void test_drain(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(true, 0);
    struct response r;
    post(f, "/drain_listeners", &r);
    assert_int_equal(r.status, 200);
    response_free(&r);
    post(f, "/quitquitquit", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "OK\n");
    response_free(&r);
    assert_int_equal(atomic_load(&f->drains), 2);

    /* a drain that stops the admin from inside its callback: the connection just closes */
    atomic_store(&f->stop_in_drain, true);
    struct client c, idle;
    client_open(&idle, f->port); /* another open connection, closed by the stop too */
    client_send(&idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    read_response(&idle, &r);
    response_free(&r);
    client_open(&c, f->port);
    client_send(&c, "POST /quitquitquit HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_eof(&c);
    expect_eof(&idle);
    assert_true(atomic_load(&f->stopped_inside));
    client_close(&c);
    client_close(&idle);
    fixture_free(f);
}

static void big_dump_slow_reader(size_t size)
{
    struct fixture *f = fixture_new(true, 0);
    atomic_store(&f->dump_size, size);
    struct client slow, other;
    client_open_rcvbuf(&slow, f->port, 4096);
    client_send(&slow, "GET /config_dump HTTP/1.1\r\nHost: x\r\n\r\n");
    /* read a little, then stop reading: the admin must keep serving other connections meanwhile */
    assert_true(client_recv(&slow, 100) > 0);
    client_open(&other, f->port);
    for (int i = 0; i < 3; i++) {
        struct response r;
        client_send(&other, "GET /ready HTTP/1.1\r\nHost: x\r\n\r\n");
        read_response(&other, &r);
        assert_int_equal(r.status, 200);
        response_free(&r);
    }
    client_close(&other);
    /* now drain it in small reads (the slow reader) */
    struct response r;
    read_response_ex(&slow, &r, false, 1000);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, size);
    assert_true(strncmp(r.body, "{\"blob\":\"abcdefghijklmnopqrstuvwxyzabc", 37) == 0);
    for (size_t i = 0; i < size - 11; i++)
        if (r.body[9 + i] != (char)('a' + i % 26))
            fail_msg("byte %zu of the dump is wrong", 9 + i);
    assert_string_equal(r.body + size - 2, "\"}");
    response_free(&r);
    /* and the connection is reusable after the big response */
    client_send(&slow, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    read_response(&slow, &r);
    assert_string_equal(r.body, "ok");
    response_free(&r);
    client_close(&slow);
    fixture_free(f);
}

/* 1 MiB, as a large config dump. */
static void test_big_dump_slow_reader(void **state)
{
    (void)state;
    big_dump_slow_reader(BIG_DUMP);
}

/* Larger than the kernel's largest send buffer (tcp_wmem max, 4 MiB by default), so the admin surely meets
 * KEEL_EAGAIN and must wait for the socket to become writable again. */
static void test_huge_dump_back_pressure(void **state)
{
    (void)state;
    big_dump_slow_reader(8 * BIG_DUMP);
}

static void test_idle_timeout(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(true, 50);
    struct client c;
    struct response r;
    client_open(&c, f->port);
    client_send(&c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    read_response(&c, &r);
    assert_int_equal(r.status, 200);
    response_free(&r);
    expect_eof(&c); /* nothing more sent: the admin closes it */
    client_close(&c);
    /* a connection that never sends anything is closed too */
    client_open(&c, f->port);
    expect_eof(&c);
    client_close(&c);
    fixture_free(f);
}

static void test_connection_limit(void **state)
{
    (void)state;
    struct fixture *f = fixture_new(true, 0);
    static struct client cs[KEEL_ADMIN_MAX_CONNS];
    struct response r;
    for (int i = 0; i < KEEL_ADMIN_MAX_CONNS; i++) {
        client_open(&cs[i], f->port);
        client_send(&cs[i], "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        read_response(&cs[i], &r); /* answered: accepted and served */
        response_free(&r);
    }
    /* one more: the kernel completes the handshake, the admin does not accept it while all slots are used */
    struct client extra;
    client_open(&extra, f->port);
    client_send(&extra, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    struct pollfd p = {.fd = extra.fd, .events = POLLIN};
    assert_int_equal(poll(&p, 1, 200), 0);
    client_close(&cs[0]); /* frees a slot */
    read_response(&extra, &r);
    assert_int_equal(r.status, 200);
    response_free(&r);
    client_close(&extra);
    for (int i = 1; i < KEEL_ADMIN_MAX_CONNS; i++)
        client_close(&cs[i]);
    fixture_free(f);
}

static void test_start_errors(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    assert_non_null(loop);
    struct keel_admin_source src = {0};
    struct keel_addr addr;
    struct keel_admin *a = NULL, *b = NULL;
    assert_int_equal(keel_addr_parse("127.0.0.1:0", &addr), 0);
    assert_int_equal(keel_admin_start(loop, &addr, &src, &a), 0);
    /* the same port again */
    char s[64];
    snprintf(s, sizeof(s), "127.0.0.1:%u", keel_admin_port(a));
    assert_int_equal(keel_addr_parse(s, &addr), 0);
    assert_int_equal(keel_admin_start(loop, &addr, &src, &b), KEEL_EADDRINUSE);
    assert_null(b);
    assert_int_equal(keel_admin_start(loop, NULL, &src, &b), KEEL_EINVAL);
    assert_int_equal(keel_admin_conn_count(a), 0);
    keel_admin_stop(a);
    keel_admin_stop(NULL);
    assert_int_equal(keel_admin_port(NULL), 0);
    keel_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready),
        cmocka_unit_test(test_stats_and_config_dump),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_logging),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_big_dump_slow_reader),
        cmocka_unit_test(test_huge_dump_back_pressure),
        cmocka_unit_test(test_idle_timeout),
        cmocka_unit_test(test_connection_limit),
        cmocka_unit_test(test_start_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
