/*
 * sample_handler.c - the sample app's endpoints (see sample_handler.h).
 *
 * An exchange is built in one go at start: the route is parsed, the fault
 * decision taken, and the JSON body written. Only two things wait: /delay (a
 * timer; the body is already written) and / with --call URLs (the echo part of
 * the body is written at start, the thread appends the "calls" array, the loop
 * closes the object when the thread reports back).
 *
 * Every body is JSON. Strings taken from the request are escaped byte by byte:
 * ASCII controls and bytes of 0x80 and above are written as \u00XX, so the body
 * stays valid JSON whatever the client sent (non-ASCII header bytes read as
 * Latin-1, as RFC 9110 section 5.5 suggests for obs-text).
 */
#include "app/sample_handler.h"

#include "app/sample_call.h"
#include "base/err.h"
#include "base/log.h"
#include "http/h1.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Headers a call forwards from the request that caused it: Istio bookinfo's list (productpage.py), plus b3 and
 * end-user. Tracing only works when every hop propagates them (Istio's sidecars cannot join the spans otherwise). */
static const char *const propagated[] = {
    "x-request-id",
    "traceparent",
    "tracestate",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "b3",
    "x-ot-span-context",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "sw8",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "end-user",
    "user-agent",
    "cookie",
    "authorization",
    "jwt",
};
#define NPROPAGATED (sizeof(propagated) / sizeof(propagated[0]))

enum ex_state {
    EX_READY,
    EX_DELAY,   /* timer pending */
    EX_CALLING, /* call thread running */
};

struct keel_sample_exchange {
    struct keel_sample_ctx *ctx;
    keel_sample_done_cb cb;
    void *data;
    enum ex_state state;
    int status;
    struct keel_buf body;
    char len_text[KEEL_U64_STRLEN];
    struct keel_http_header hdrs[5];
    size_t nhdrs;
    char peer[64]; /* the client's "IP:port" (x-app-peer) */
    struct keel_timer timer;
    /* calls (EX_CALLING): between pthread_create and keel_async_send only the thread touches calls_json */
    pthread_t thread;
    struct keel_async async;
    atomic_bool abort;
    bool orphan; /* freed by its owner while the thread ran: free it when the thread reports back */
    char *fwd[NPROPAGATED];
    size_t nfwd;
    struct keel_buf calls_json;
    struct keel_sample_exchange *prev, *next; /* ctx->calling */
};

/* ---- parsing (untrusted bytes; fuzzed by tests/fuzz/sample_route_fuzz.c) --------------------------------------- */

int keel_sample_parse_milli(struct keel_str s, uint64_t max_milli, uint64_t *out)
{
    size_t i = 0;
    uint64_t whole = 0;
    size_t nint = 0;
    while (i < s.n && s.p[i] >= '0' && s.p[i] <= '9') {
        if (whole > max_milli / 1000)
            return KEEL_ETOOBIG; /* leading digits only grow it */
        whole = whole * 10 + (uint64_t)(s.p[i] - '0');
        i++;
        nint++;
    }
    uint64_t frac = 0;
    size_t nfrac = 0;
    if (i < s.n && s.p[i] == '.') {
        i++;
        while (i < s.n && s.p[i] >= '0' && s.p[i] <= '9') {
            if (++nfrac > 9)
                return KEEL_EINVAL;
            if (nfrac <= 3)
                frac = frac * 10 + (uint64_t)(s.p[i] - '0');
            i++;
        }
        if (nfrac == 0 && nint == 0)
            return KEEL_EINVAL;
        for (size_t k = nfrac; k < 3; k++)
            frac *= 10;
    }
    if (i != s.n || (nint == 0 && nfrac == 0))
        return KEEL_EINVAL;
    if (whole > max_milli / 1000 || whole * 1000 + frac > max_milli)
        return KEEL_ETOOBIG;
    *out = whole * 1000 + frac;
    return 0;
}

struct keel_sample_route keel_sample_route_parse(struct keel_str path)
{
    struct keel_sample_route r = {.kind = KEEL_SAMPLE_ROUTE_NOT_FOUND};
    static const struct keel_str status_prefix = {"/status/", 8}, delay_prefix = {"/delay/", 7},
                                 bytes_prefix = {"/bytes/", 7};
    if (keel_str_eq_c(path, "/")) {
        r.kind = KEEL_SAMPLE_ROUTE_ROOT;
    } else if (keel_str_eq_c(path, "/healthz")) {
        r.kind = KEEL_SAMPLE_ROUTE_HEALTHZ;
    } else if (keel_str_eq_c(path, "/headers")) {
        r.kind = KEEL_SAMPLE_ROUTE_HEADERS;
    } else if (keel_str_eq_c(path, "/ip")) {
        r.kind = KEEL_SAMPLE_ROUTE_IP;
    } else if (keel_str_has_prefix(path, status_prefix)) {
        struct keel_str arg = {path.p + status_prefix.n, path.n - status_prefix.n};
        uint64_t code = 0;
        if (keel_str_to_u64(arg, 999, &code) != 0 || code < 200 || code > 599) {
            r.kind = KEEL_SAMPLE_ROUTE_BAD_ARG;
            r.error = "/status/CODE wants a status code from 200 to 599 (1xx are interim, never a final answer)";
        } else {
            r.kind = KEEL_SAMPLE_ROUTE_STATUS;
            r.status = (int)code;
        }
    } else if (keel_str_has_prefix(path, delay_prefix)) {
        struct keel_str arg = {path.p + delay_prefix.n, path.n - delay_prefix.n};
        uint64_t ms = 0;
        if (keel_sample_parse_milli(arg, KEEL_SAMPLE_MAX_DELAY_MS, &ms) != 0) {
            r.kind = KEEL_SAMPLE_ROUTE_BAD_ARG;
            r.error = "/delay/SECONDS wants a number of seconds from 0 to 60, such as 2 or 0.5";
        } else {
            r.kind = KEEL_SAMPLE_ROUTE_DELAY;
            r.delay_ms = ms;
        }
    } else if (keel_str_has_prefix(path, bytes_prefix)) {
        struct keel_str arg = {path.p + bytes_prefix.n, path.n - bytes_prefix.n};
        if (keel_str_to_u64(arg, KEEL_SAMPLE_MAX_BODY, &r.bytes) != 0) {
            r.kind = KEEL_SAMPLE_ROUTE_BAD_ARG;
            r.error = "/bytes/N wants a number of bytes from 0 to 4194304";
        } else {
            r.kind = KEEL_SAMPLE_ROUTE_BYTES;
        }
    }
    return r;
}

/* ---- JSON ------------------------------------------------------------------------------------------------------- */

static int json_slice(struct keel_buf *b, struct keel_str s)
{
    int rc = keel_buf_putc(b, '"');
    for (size_t i = 0; !rc && i < s.n; i++) {
        unsigned char c = (unsigned char)s.p[i];
        if (c == '"' || c == '\\')
            rc = keel_buf_printf(b, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            rc = keel_buf_printf(b, "\\u%04x", c);
        else
            rc = keel_buf_putc(b, (char)c);
    }
    return rc ? rc : keel_buf_putc(b, '"');
}

static int json_key(struct keel_buf *b, const char *key, bool first)
{
    int rc = first ? 0 : keel_buf_putc(b, ',');
    if (!rc)
        rc = keel_buf_json_str(b, key);
    return rc ? rc : keel_buf_putc(b, ':');
}

static int json_kv(struct keel_buf *b, const char *key, struct keel_str val, bool first)
{
    int rc = json_key(b, key, first);
    return rc ? rc : json_slice(b, val);
}

/* "headers":{name: value, ...}; repeated fields are joined with ", " under the first one's name. */
static int json_headers(struct keel_buf *b, const struct keel_sample_request *req)
{
    int rc = json_key(b, "headers", false);
    if (!rc)
        rc = keel_buf_putc(b, '{');
    bool first = true;
    for (size_t i = 0; !rc && i < req->nheaders; i++) {
        const struct keel_http_header *h = &req->headers[i];
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = keel_str_caseeq(req->headers[j].name, h->name);
        if (seen)
            continue;
        rc = first ? 0 : keel_buf_putc(b, ',');
        first = false;
        if (!rc)
            rc = json_slice(b, h->name);
        if (!rc)
            rc = keel_buf_puts(b, ":\"");
        bool more = false;
        for (size_t j = i; !rc && j < req->nheaders; j++) {
            if (!keel_str_caseeq(req->headers[j].name, h->name))
                continue;
            if (more)
                rc = keel_buf_puts(b, ", ");
            more = true;
            if (!rc) { /* the value without its quotes */
                size_t at = b->len;
                rc = json_slice(b, req->headers[j].value);
                if (!rc) {
                    memmove(b->data + at, b->data + at + 1, b->len - at - 2);
                    b->len -= 2;
                    b->data[b->len] = '\0';
                }
            }
        }
        if (!rc)
            rc = keel_buf_putc(b, '"');
    }
    return rc ? rc : keel_buf_putc(b, '}');
}

/* The IP of "IP:port" or "[IPv6]:port". */
static struct keel_str peer_ip(const char *peer)
{
    struct keel_str s = keel_str_c(peer);
    const char *colon = strrchr(peer, ':');
    if (!colon)
        return s;
    s.n = (size_t)(colon - peer);
    if (s.n >= 2 && s.p[0] == '[' && s.p[s.n - 1] == ']') {
        s.p++;
        s.n -= 2;
    }
    return s;
}

/* {"name":..,"version":..,"id":.. - the identity every body opens with (no closing brace). */
static int json_identity(struct keel_buf *b, const struct keel_sample_ctx *ctx)
{
    int rc = keel_buf_putc(b, '{');
    if (!rc)
        rc = json_kv(b, "name", keel_str_c(ctx->opt->name), true);
    if (!rc)
        rc = json_kv(b, "version", keel_str_c(ctx->opt->version), false);
    if (!rc)
        rc = json_kv(b, "id", keel_str_c(ctx->id), false);
    return rc;
}

/* The echo of `/` and /delay: identity, request line, origin and headers (no closing brace). */
static int json_echo(struct keel_buf *b, const struct keel_sample_ctx *ctx, const struct keel_sample_request *req)
{
    int rc = json_identity(b, ctx);
    if (!rc)
        rc = json_kv(b, "protocol", keel_str_c(req->protocol), false);
    if (!rc)
        rc = json_kv(b, "method", req->method, false);
    if (!rc)
        rc = json_kv(b, "path", req->path, false);
    if (!rc)
        rc = json_kv(b, "query", req->query, false);
    if (!rc)
        rc = json_kv(b, "authority", req->authority, false);
    if (!rc)
        rc = json_kv(b, "origin", peer_ip(req->peer), false);
    if (!rc)
        rc = json_headers(b, req);
    return rc;
}

/* ---- exchanges -------------------------------------------------------------------------------------------------- */

static uint64_t next_random(struct keel_sample_ctx *ctx)
{
    uint64_t x = ctx->rng; /* xorshift64 (Marsaglia); never 0 once seeded non-zero */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    ctx->rng = x;
    return x;
}

void keel_sample_ctx_init(struct keel_sample_ctx *ctx, struct keel_loop *loop, const struct keel_sample_options *opt,
                          const char *id, uint64_t seed)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->loop = loop;
    ctx->opt = opt;
    ctx->id = id;
    ctx->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
}

static void destroy(struct keel_sample_exchange *ex)
{
    for (size_t i = 0; i < ex->nfwd; i++)
        free(ex->fwd[i]);
    keel_buf_free(&ex->body);
    keel_buf_free(&ex->calls_json);
    free(ex);
}

static void unlink_calling(struct keel_sample_exchange *ex)
{
    if (ex->prev)
        ex->prev->next = ex->next;
    else
        ex->ctx->calling = ex->next;
    if (ex->next)
        ex->next->prev = ex->prev;
    ex->prev = ex->next = NULL;
}

/* Sets the response fields once status and body are final. */
static void finish(struct keel_sample_exchange *ex, int status)
{
    ex->status = status;
    ex->state = EX_READY;
    const struct keel_sample_options *o = ex->ctx->opt;
    ex->hdrs[0] = (struct keel_http_header){keel_str_c("content-type"), keel_str_c("application/json")};
    ex->hdrs[1] = (struct keel_http_header){keel_str_c("x-app-name"), keel_str_c(o->name)};
    ex->hdrs[2] = (struct keel_http_header){keel_str_c("x-app-version"), keel_str_c(o->version)};
    ex->hdrs[3] = (struct keel_http_header){keel_str_c("x-app-id"), keel_str_c(ex->ctx->id)};
    ex->hdrs[4] = (struct keel_http_header){keel_str_c("x-app-peer"), keel_str_c(ex->peer)};
    ex->nhdrs = 5;
}

/* Replaces the body with {"name":..,"version":..,"id":..,"error":msg} and finishes with status. */
static void fail(struct keel_sample_exchange *ex, int status, const char *msg)
{
    keel_buf_reset(&ex->body);
    int rc = json_identity(&ex->body, ex->ctx);
    if (!rc)
        rc = keel_buf_printf(&ex->body, ",\"status\":%d", status);
    if (!rc)
        rc = json_kv(&ex->body, "error", keel_str_c(msg), false);
    if (!rc)
        rc = keel_buf_puts(&ex->body, "}\n");
    if (rc) { /* out of memory: an empty body still carries the status */
        keel_buf_free(&ex->body);
        keel_buf_init(&ex->body, KEEL_SAMPLE_MAX_BODY);
    }
    finish(ex, status);
}

static void on_delay(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct keel_sample_exchange *ex = t->data;
    ex->state = EX_READY;
    ex->cb(ex, ex->data); /* may free ex */
}

static void *call_thread(void *arg)
{
    struct keel_sample_exchange *ex = arg;
    const struct keel_sample_options *o = ex->ctx->opt;
    int rc = keel_buf_puts(&ex->calls_json, ",\"calls\":[");
    for (size_t i = 0; !rc && i < o->ncalls; i++) {
        if (i)
            rc = keel_buf_putc(&ex->calls_json, ',');
        if (!rc)
            rc = keel_sample_call_json(o->calls[i], (const char *const *)ex->fwd, ex->nfwd, o->call_timeout_ms,
                                       &ex->abort, &ex->calls_json);
    }
    if (!rc)
        rc = keel_buf_puts(&ex->calls_json, "]}\n");
    if (rc)
        keel_buf_free(&ex->calls_json); /* seen as empty by on_calls_done: 500 */
    keel_async_send(&ex->async);        /* the last touch of ex on this thread */
    return NULL;
}

static void on_calls_done(struct keel_loop *loop, struct keel_async *a)
{
    (void)loop;
    struct keel_sample_exchange *ex = a->data;
    pthread_join(ex->thread, NULL);
    keel_async_close(&ex->async);
    unlink_calling(ex);
    if (ex->orphan) {
        destroy(ex);
        return;
    }
    if (ex->calls_json.len == 0 || keel_buf_append(&ex->body, ex->calls_json.data, ex->calls_json.len) != 0)
        fail(ex, 500, "out of memory while collecting the calls");
    else
        finish(ex, 200);
    ex->cb(ex, ex->data); /* may free ex */
}

/* Copies the propagated request fields ("name: value") for the call thread. Returns 0 or KEEL_ENOMEM. */
static int copy_propagated(struct keel_sample_exchange *ex, const struct keel_sample_request *req)
{
    for (size_t i = 0; i < NPROPAGATED; i++) {
        for (size_t j = 0; j < req->nheaders; j++) {
            const struct keel_http_header *h = &req->headers[j];
            if (!keel_str_caseeq(h->name, keel_str_c(propagated[i])))
                continue;
            size_t n = strlen(propagated[i]) + 2 + h->value.n + 1;
            char *line = malloc(n);
            if (!line)
                return KEEL_ENOMEM;
            snprintf(line, n, "%s: %.*s", propagated[i], (int)h->value.n, h->value.p);
            ex->fwd[ex->nfwd++] = line;
            break; /* the first occurrence only */
        }
    }
    return 0;
}

/* / with --call: the echo now, the calls on a thread. Returns 0 or a KEEL_E* code (nothing started). */
static int start_calls(struct keel_sample_exchange *ex, const struct keel_sample_request *req)
{
    int rc = copy_propagated(ex, req);
    if (rc)
        return rc;
    ex->state = EX_CALLING;
    keel_async_init(ex->ctx->loop, &ex->async, on_calls_done, ex);
    if (pthread_create(&ex->thread, NULL, call_thread, ex) != 0) {
        keel_async_close(&ex->async);
        ex->state = EX_READY;
        return KEEL_ENOMEM;
    }
    ex->next = ex->ctx->calling;
    if (ex->next)
        ex->next->prev = ex;
    ex->ctx->calling = ex;
    return 0;
}

struct keel_sample_exchange *keel_sample_exchange_start(struct keel_sample_ctx *ctx,
                                                        const struct keel_sample_request *req, keel_sample_done_cb cb,
                                                        void *data)
{
    struct keel_sample_exchange *ex = calloc(1, sizeof(*ex));
    if (!ex)
        return NULL;
    ex->ctx = ctx;
    snprintf(ex->peer, sizeof(ex->peer), "%s", req->peer ? req->peer : "");
    ex->cb = cb;
    ex->data = data;
    keel_buf_init(&ex->body, KEEL_SAMPLE_MAX_BODY);
    keel_buf_init(&ex->calls_json, KEEL_SAMPLE_MAX_BODY);
    keel_timer_init(&ex->timer);
    atomic_init(&ex->abort, false);

    struct keel_sample_route r = keel_sample_route_parse(req->path);
    const struct keel_sample_options *o = ctx->opt;
    /* Injected failures spare /healthz, so a fault demo does not get the app killed by its liveness probe. */
    if (r.kind != KEEL_SAMPLE_ROUTE_HEALTHZ && o->fail_rate > 0 &&
        (double)(next_random(ctx) >> 11) * 0x1.0p-53 < o->fail_rate) {
        fail(ex, o->fail_code, "failure injected by --fail-rate");
        return ex;
    }
    struct keel_buf *b = &ex->body;
    int rc = 0;
    switch (r.kind) {
    case KEEL_SAMPLE_ROUTE_NOT_FOUND:
        fail(ex, 404, "no such endpoint; try /, /headers, /ip, /status/CODE, /delay/SECONDS, /bytes/N or /healthz");
        return ex;
    case KEEL_SAMPLE_ROUTE_BAD_ARG:
        fail(ex, 400, r.error);
        return ex;
    case KEEL_SAMPLE_ROUTE_HEALTHZ:
        rc = json_identity(b, ctx);
        if (!rc)
            rc = keel_buf_puts(b, ",\"status\":\"ok\"}\n");
        break;
    case KEEL_SAMPLE_ROUTE_HEADERS:
        rc = json_identity(b, ctx);
        if (!rc)
            rc = json_headers(b, req);
        if (!rc)
            rc = keel_buf_puts(b, "}\n");
        break;
    case KEEL_SAMPLE_ROUTE_IP:
        rc = json_identity(b, ctx);
        if (!rc)
            rc = json_kv(b, "origin", peer_ip(req->peer), false);
        if (!rc)
            rc = keel_buf_puts(b, "}\n");
        break;
    case KEEL_SAMPLE_ROUTE_STATUS:
        rc = json_identity(b, ctx);
        if (!rc)
            rc = keel_buf_printf(b, ",\"status\":%d}\n", r.status);
        break;
    case KEEL_SAMPLE_ROUTE_DELAY:
        rc = json_echo(b, ctx, req);
        if (!rc)
            rc = keel_buf_printf(b, ",\"delay_ms\":%llu}\n", (unsigned long long)r.delay_ms);
        break;
    case KEEL_SAMPLE_ROUTE_BYTES: /* N bytes of 'x' (large answers, for flow-control tests) */
        for (uint64_t left = r.bytes; !rc && left > 0;) {
            char xs[1024];
            memset(xs, 'x', sizeof(xs));
            size_t n = left < sizeof(xs) ? (size_t)left : sizeof(xs);
            rc = keel_buf_append(b, xs, n);
            left -= n;
        }
        break;
    case KEEL_SAMPLE_ROUTE_ROOT:
        rc = json_echo(b, ctx, req);
        if (!rc && o->ncalls == 0)
            rc = keel_buf_puts(b, "}\n");
        break;
    }
    if (rc) {
        fail(ex, 500, "out of memory");
        return ex;
    }
    finish(ex, r.kind == KEEL_SAMPLE_ROUTE_STATUS ? r.status : 200);
    if (r.kind == KEEL_SAMPLE_ROUTE_DELAY && r.delay_ms > 0) {
        if (keel_timer_start(ctx->loop, &ex->timer, r.delay_ms, on_delay, ex) != 0)
            fail(ex, 500, "out of memory");
        else
            ex->state = EX_DELAY;
    } else if (r.kind == KEEL_SAMPLE_ROUTE_ROOT && o->ncalls) {
        if (start_calls(ex, req) != 0)
            fail(ex, 500, "cannot start the calls (out of memory or threads)");
    }
    return ex;
}

bool keel_sample_exchange_ready(const struct keel_sample_exchange *ex)
{
    return ex->state == EX_READY;
}

int keel_sample_exchange_status(const struct keel_sample_exchange *ex)
{
    return ex->status;
}

const struct keel_buf *keel_sample_exchange_body(const struct keel_sample_exchange *ex)
{
    return &ex->body;
}

size_t keel_sample_exchange_headers(const struct keel_sample_exchange *ex, const struct keel_http_header **out)
{
    *out = ex->hdrs;
    return ex->nhdrs;
}

void keel_sample_exchange_free(struct keel_sample_exchange *ex)
{
    if (!ex)
        return;
    if (ex->state == EX_CALLING) {
        ex->orphan = true;
        atomic_store(&ex->abort, true);
        return; /* on_calls_done (or keel_sample_ctx_fini) frees it */
    }
    keel_timer_stop(&ex->timer);
    destroy(ex);
}

void keel_sample_ctx_fini(struct keel_sample_ctx *ctx)
{
    while (ctx->calling) {
        struct keel_sample_exchange *ex = ctx->calling;
        atomic_store(&ex->abort, true);
        pthread_join(ex->thread, NULL);
        keel_async_close(&ex->async);
        unlink_calling(ex);
        if (!ex->orphan)
            keel_log(KEEL_LOG_WARN, "sample-app: an exchange was still owned at shutdown");
        destroy(ex);
    }
}
