/*
 * sample_handler.h - the sample app's endpoints, independent of the protocol.
 *
 * The HTTP/1.1 connections (app/sample_app.c) and the h2c connections
 * (app/sample_h2.c) turn a received request into a keel_sample_request and
 * start an exchange; the handler decides what to answer and when:
 *
 *   at once      /healthz, /headers, /ip, /status/CODE, 404s, 400s, injected
 *                failures (--fail-rate), and / without --call;
 *   on a timer   /delay/SECONDS (a keel_timer on the worker's loop: other
 *                requests and streams go on meanwhile);
 *   on a thread  / with --call URLs: one thread per such request performs the
 *                calls one after the other (app/sample_call.c, libcurl,
 *                blocking) and hands the result back to the loop with a
 *                keel_async. The loop never blocks on a downstream service.
 *
 * Ownership: the protocol layer owns the exchange it started and frees it with
 * keel_sample_exchange_free() once the response is written (or the stream is
 * gone). Everything the exchange needs from the request is copied at start,
 * so the request may point into buffers that are reused right after. Freeing
 * an exchange whose calls are still running does not wait: the thread is told
 * to abort, and the loop joins it and frees the exchange when it reports back;
 * keel_sample_ctx_fini() joins those still running when the worker stops.
 *
 * Threads: a ctx and its exchanges belong to one worker loop; every function
 * here runs on that loop's thread. The options are shared read-only by all
 * workers. A call thread touches only its own exchange's call fields until it
 * sends the async, and nothing after.
 *
 * Failures: out of memory on the request path fails that request (start
 * returns NULL: the caller answers 500 or resets the stream); a downstream call
 * that fails is reported inside the JSON, and the response is still 200.
 */
#ifndef KEEL_APP_SAMPLE_HANDLER_H
#define KEEL_APP_SAMPLE_HANDLER_H

#include "base/buf.h"
#include "base/str.h"
#include "http/message.h"
#include "net/loop.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest /delay/SECONDS, in milliseconds. */
#define KEEL_SAMPLE_MAX_DELAY_MS 60000
/* Largest JSON body the app builds (the echo of a 64 KiB head fits many times). */
#define KEEL_SAMPLE_MAX_BODY (4 * 1024 * 1024)
/* Default whole-call timeout of a downstream call (keel_sample_options.call_timeout_ms). */
#define KEEL_SAMPLE_CALL_TIMEOUT_MS 15000
/* Most --call URLs. */
#define KEEL_SAMPLE_MAX_CALLS 16

/* What the app is told on its command line; shared read-only by every worker. */
struct keel_sample_options {
    const char *listen;       /* "ADDR:PORT" */
    const char *name;         /* service name, in every answer and in x-app-name */
    const char *version;      /* in every answer and in x-app-version */
    double fail_rate;         /* 0..1: fraction of requests answered with fail_code */
    int fail_code;            /* 200..599 (503 by default) */
    const char *const *calls; /* URLs called by `/`, in order */
    size_t ncalls;
    unsigned concurrency;     /* worker threads (at least 1) */
    unsigned call_timeout_ms; /* whole-call timeout of each downstream call */
};

struct keel_sample_exchange;
struct keel_sample_h1;
struct keel_sample_h2;

/* One worker's state: its loop, the shared options, its random state and the connections and exchanges it owns. */
struct keel_sample_ctx {
    struct keel_loop *loop;
    const struct keel_sample_options *opt;
    const char *id;                       /* "hostname/pid", shared read-only */
    uint64_t rng;                         /* xorshift64 state, this worker only */
    struct keel_sample_exchange *calling; /* exchanges whose call thread has not reported back */
    struct keel_sample_h1 *h1_conns;      /* app/sample_app.c's list */
    struct keel_sample_h2 *h2_conns;      /* app/sample_h2.c's list */
};

/* A request as the protocol layer received it. Only read during keel_sample_exchange_start(). */
struct keel_sample_request {
    struct keel_str method;
    struct keel_str path;  /* without the query */
    struct keel_str query; /* without '?' */
    struct keel_str authority;
    const struct keel_http_header *headers;
    size_t nheaders;
    const char *protocol; /* "HTTP/1.1", "HTTP/1.0", "HTTP/2" */
    const char *peer;     /* "IP:port" (IPv6 in brackets) */
};

typedef void (*keel_sample_done_cb)(struct keel_sample_exchange *ex, void *data);

/* Which endpoint a path names, and its argument. */
enum keel_sample_route_kind {
    KEEL_SAMPLE_ROUTE_ROOT,    /* "/" */
    KEEL_SAMPLE_ROUTE_HEALTHZ, /* "/healthz" */
    KEEL_SAMPLE_ROUTE_HEADERS, /* "/headers" */
    KEEL_SAMPLE_ROUTE_IP,      /* "/ip" */
    KEEL_SAMPLE_ROUTE_STATUS,  /* "/status/CODE": code in status */
    KEEL_SAMPLE_ROUTE_DELAY,   /* "/delay/SECONDS": delay_ms */
    KEEL_SAMPLE_ROUTE_BYTES,   /* "/bytes/N": bytes */
    KEEL_SAMPLE_ROUTE_BAD_ARG, /* a known endpoint with a malformed argument: 400, reason in error */
    KEEL_SAMPLE_ROUTE_NOT_FOUND,
};

struct keel_sample_route {
    enum keel_sample_route_kind kind;
    int status;        /* STATUS */
    uint64_t delay_ms; /* DELAY */
    uint64_t bytes;    /* BYTES */
    const char *error; /* BAD_ARG: static text */
};

/* Maps a request path (untrusted bytes, no query) to its endpoint. Pure; never fails: anything unknown is
 * NOT_FOUND, a bad argument BAD_ARG. /status/ takes 200..599 (1xx are interim, never a final answer);
 * /delay/ takes a decimal number of seconds ("2", "0.5", ".25"; at most 3 fractional digits count, more are
 * truncated, at most 9 are accepted) up to KEEL_SAMPLE_MAX_DELAY_MS. */
struct keel_sample_route keel_sample_route_parse(struct keel_str path);

/* Parses a decimal "D+[.D*]" or ".D+" into thousandths (0.5 -> 500), refusing more than 9 fractional digits and
 * values above max_milli. Returns 0, KEEL_EINVAL (malformed) or KEEL_ETOOBIG. *out unchanged on failure. */
int keel_sample_parse_milli(struct keel_str s, uint64_t max_milli, uint64_t *out);

/* Sets up a worker's ctx (seeds its random state with seed). Never fails. */
void keel_sample_ctx_init(struct keel_sample_ctx *ctx, struct keel_loop *loop, const struct keel_sample_options *opt,
                          const char *id, uint64_t seed);
/* Joins the call threads still running (they are told to abort first) and frees their exchanges. Call it after
 * every connection of the ctx was closed. */
void keel_sample_ctx_fini(struct keel_sample_ctx *ctx);

/* Starts answering req. Returns the exchange, NULL when out of memory. When keel_sample_exchange_ready() is false
 * the answer comes later: cb(ex, data) runs on the loop (never inside this call) and may free ex. */
struct keel_sample_exchange *keel_sample_exchange_start(struct keel_sample_ctx *ctx,
                                                        const struct keel_sample_request *req, keel_sample_done_cb cb,
                                                        void *data);
bool keel_sample_exchange_ready(const struct keel_sample_exchange *ex);
/* The answer, once ready: status, body and the response fields to send (content-type, x-app-name, x-app-version,
 * x-app-id; names in lower case). The fields stay valid until the exchange is freed. A HEAD request's body is
 * still returned: the protocol layer drops it. */
int keel_sample_exchange_status(const struct keel_sample_exchange *ex);
const struct keel_buf *keel_sample_exchange_body(const struct keel_sample_exchange *ex);
size_t keel_sample_exchange_headers(const struct keel_sample_exchange *ex, const struct keel_http_header **out);
/* Frees ex at any time (see the ownership note above). NULL is a no-op. */
void keel_sample_exchange_free(struct keel_sample_exchange *ex);

#endif
