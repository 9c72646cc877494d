/*
 * admin.h - the proxy's admin HTTP server (Envoy's admin API on 127.0.0.1:15000).
 *
 * Runs on the main thread's event loop, never on a worker. It answers HTTP/1.1 with keep-alive and serves what a
 * caller-supplied table of callbacks provides, at Envoy's paths so istioctl, pilot-agent style probes and
 * Prometheus scrapers work unchanged:
 *
 *   GET  /                       index of the endpoints (text)
 *   GET  /ready, /healthz/ready  200 "LIVE\n" when src->ready() says so, else 503 "not ready\n"
 *   GET  /healthz                200 "ok" (the process is up and its loop runs)
 *   GET  /stats/prometheus       src->stats_prometheus (also /metrics), text format 0.0.4
 *   GET  /config_dump            src->config_dump, application/json
 *   GET  /clusters               src->clusters (text); ?format=json uses src->clusters_json
 *   GET  /server_info            version, state and uptime (JSON)
 *   GET  /logging                the current log level
 *   POST /logging?level=L        sets the process-wide log level (debug, info, warn, error, off)
 *   POST /drain_listeners        src->drain
 *   POST /quitquitquit           src->drain
 *
 * A callback left NULL makes its endpoint answer 404; one that fails answers 500. An unknown path is 404, a known
 * path with the wrong method 405 (with Allow), a malformed request the status keel_h1_error_status() gives (and
 * the connection is closed). HEAD is accepted wherever GET is.
 *
 * Limits: KEEL_ADMIN_MAX_CONNS connections (the listener pauses while they are all in use), request heads up to
 * KEEL_ADMIN_MAX_HEAD, request bodies (read and discarded) up to KEEL_ADMIN_MAX_BODY, responses up to
 * KEEL_ADMIN_MAX_RESPONSE, idle connections closed after KEEL_ADMIN_IDLE_MS. Responses are written with
 * back-pressure: a connection keeps its pending bytes and waits for the socket to be writable, and reads no new
 * request until the previous response is out, so the loop never blocks and a slow reader costs only its own
 * buffer.
 */
#ifndef KEEL_PROXY_ADMIN_H
#define KEEL_PROXY_ADMIN_H

#include <stdbool.h>
#include <stdint.h>

struct keel_addr;
struct keel_buf;
struct keel_loop;
struct keel_admin;

#define KEEL_ADMIN_MAX_CONNS 256
#define KEEL_ADMIN_MAX_HEAD (64 * 1024)
#define KEEL_ADMIN_MAX_BODY (1024 * 1024)
#define KEEL_ADMIN_MAX_RESPONSE (256u * 1024 * 1024)
#define KEEL_ADMIN_IDLE_MS 60000

/* What the admin serves. Every callback runs on the admin's loop thread and appends to out; a negative KEEL_E*
 * return makes the request fail with 500 (and discards what was appended). */
struct keel_admin_source {
    void *ctx;
    bool (*ready)(void *ctx);                                 /* GET /ready, /healthz/ready */
    int (*stats_prometheus)(void *ctx, struct keel_buf *out); /* GET /stats/prometheus (also /metrics) */
    int (*config_dump)(void *ctx, struct keel_buf *out);      /* GET /config_dump (application/json) */
    int (*clusters)(void *ctx, struct keel_buf *out);         /* GET /clusters (text) */
    int (*drain)(void *ctx);                                  /* POST /drain_listeners and /quitquitquit */
    /* Optional additions. */
    int (*clusters_json)(void *ctx, struct keel_buf *out); /* GET /clusters?format=json; NULL: 404 */
    const char *version;                                   /* /server_info "version"; NULL: "unknown" */
    int (*server_info)(void *ctx, struct keel_buf *out);   /* more /server_info members, each written as
                                                              `,"key":value`; NULL: none */
};

/* Listens on addr (e.g. 127.0.0.1:15000; port 0 picks a free port, see keel_admin_port) and serves on loop. src is
 * copied; its ctx must outlive the admin. Returns 0 with *out set, or KEEL_EADDRINUSE, KEEL_EINVAL, KEEL_EMFILE,
 * KEEL_ENOMEM (nothing left open). Loop thread only. */
int keel_admin_start(struct keel_loop *loop, const struct keel_addr *addr, const struct keel_admin_source *src,
                     struct keel_admin **out);

/* Closes the listener and every connection and frees the admin. NULL is a no-op. Loop thread only; may be called
 * from one of the admin's own callbacks (e.g. drain): the memory is then released at the end of the iteration. */
void keel_admin_stop(struct keel_admin *a);

/* The port the admin listens on (the one the kernel chose for port 0). */
uint16_t keel_admin_port(const struct keel_admin *a);

/* Open connections (for tests and the status table). */
unsigned keel_admin_conn_count(const struct keel_admin *a);

/* Overrides KEEL_ADMIN_IDLE_MS for connections accepted from now on (tests). */
void keel_admin_set_idle_timeout(struct keel_admin *a, uint64_t ms);

#endif
