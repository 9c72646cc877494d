/*
 * exchange.c - the request exchange, whatever protocol the client speaks (see stream.h).
 *
 * The life of a request:
 *
 *   head from the codec ─► route (snapshot of the moment, held until the end)
 *   ─► local reply (404 NR, redirect, direct response, fault abort, 503
 *   NC/UH) or pick a cluster endpoint ─► upstream connection (pooled or new)
 *   ─► send head + stream the body ─► read the response head ─► stream it
 *   back through the codec ─► access log + stats ─► codec's done().
 *
 * The upstream side speaks HTTP/1.1. Bodies are streamed, never buffered
 * whole: bytes move from one side to the other as they arrive, with their
 * framing (Content-Length or chunked) tracked by the strict codec so that a
 * message can never run into the next one. When a side holds more than
 * KEEL_PROXY_OUT_HIGH bytes for the other, reading from the other stops until
 * it drains (back-pressure): memory per request is bounded.
 *
 * Failures map to Envoy's response flags: connect failure 503 UF (retried on
 * another endpoint per the route's retry policy; URX when attempts run out),
 * no endpoint 503 UH, no cluster 503 NC, no route 404 NR, timeout 504 UT,
 * upstream reset before the response 503 UC, client gone DC, protocol errors
 * 400 (downstream) / 502 UPE (upstream). A pooled connection the server had
 * closed is retried once on a fresh connection when the request can be
 * replayed (the most common cause of spurious 503s in Envoy meshes).
 */
#include "proxy/stream.h"

#include "proxy/cors.h"
#include "proxy/dfp.h"

#include "base/err.h"
#include "base/log.h"
#include "base/str.h"
#include "config/schema_gen.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* ---- life of a stream ------------------------------------------------------------------------------------------ */

struct keel_str keel_stream_dup(struct keel_arena *a, struct keel_str s)
{
    struct keel_str r = {keel_arena_strndup(a, s.p, s.n), s.n};
    return r;
}

void keel_stream_copy_head(struct keel_stream *st, const struct keel_http_head *src)
{
    struct keel_arena *a = st->arena;
    struct keel_http_head *dst = &st->req;
    *dst = *src;
    dst->method = keel_stream_dup(a, src->method);
    dst->target = keel_stream_dup(a, src->target);
    dst->path = keel_stream_dup(a, src->path);
    dst->query = keel_stream_dup(a, src->query);
    dst->authority = keel_stream_dup(a, src->authority);
    dst->scheme = keel_stream_dup(a, src->scheme);
    dst->reason = keel_stream_dup(a, src->reason);
    for (size_t i = 0; i < src->nheaders; i++) {
        dst->headers[i].name = keel_stream_dup(a, src->headers[i].name);
        dst->headers[i].value = keel_stream_dup(a, src->headers[i].value);
    }
}

/* The response head points into the upstream's input buffer, which is about to move: copy it. */
static void copy_response_head(struct keel_stream *st)
{
    struct keel_arena *a = st->arena;
    struct keel_http_head *h = &st->resp;
    h->reason = keel_stream_dup(a, h->reason);
    for (size_t i = 0; i < h->nheaders; i++) {
        h->headers[i].name = keel_stream_dup(a, h->headers[i].name);
        h->headers[i].value = keel_stream_dup(a, h->headers[i].value);
    }
}

/* A zeroed stream, except the two 128-slot header arrays (8 KiB that nheaders already bounds): zeroing them
 * on every request was the biggest single cost of a stream. */
/* Clears a stream for a new exchange, except its two header arrays (8 KiB each: entries are written before they
 * are counted, so they need no zeroing). */
static void stream_clear(struct keel_stream *st)
{
    char *p = (char *)st;
    const size_t arr = sizeof(st->req.headers);
    size_t req_h = offsetof(struct keel_stream, req) + offsetof(struct keel_http_head, headers);
    size_t resp_h = offsetof(struct keel_stream, resp) + offsetof(struct keel_http_head, headers);
    memset(p, 0, req_h);
    memset(p + req_h + arr, 0, resp_h - (req_h + arr));
    memset(p + resp_h + arr, 0, sizeof(*st) - (resp_h + arr));
}

/* A cleared stream with an empty arena: from the worker's cache (the memory is warm: no page faults, no malloc
 * of 21 KiB per request), else new. NULL when out of memory. */
static struct keel_stream *stream_take(struct keel_pworker *pw)
{
    struct keel_stream *st = pw->stream_cache;
    struct keel_arena *a;
    if (st) {
        pw->stream_cache = st->cache_next;
        pw->n_stream_cache--;
        a = st->arena;
    } else {
        st = malloc(sizeof(*st));
        a = st ? keel_arena_new(4096) : NULL;
        if (!a) {
            free(st);
            return NULL;
        }
    }
    stream_clear(st);
    st->arena = a;
    return st;
}

void keel_stream_cache_free(struct keel_pworker *pw)
{
    for (struct keel_stream *st = pw->stream_cache, *next; st; st = next) {
        next = st->cache_next;
        keel_arena_free(st->arena);
        free(st);
    }
    pw->stream_cache = NULL;
    pw->n_stream_cache = 0;
}

struct keel_stream *keel_stream_new(struct keel_downstream *ds)
{
    struct keel_pworker *pw = ds->pw;
    struct keel_stream *st = stream_take(pw);
    if (!st)
        return NULL;
    st->ds = ds;
    st->snap = keel_snapshot_ref(pw->snap);
    st->start_ms = keel_loop_now_ms(pw->loop);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    st->start_unix_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    keel_timer_init(&st->timeout);
    keel_timer_init(&st->delay);
    keel_timer_init(&st->try_timer);
    keel_buf_init(&st->replay, KEEL_PROXY_REPLAY_MAX + KEEL_H1_MAX_HEAD);
    st->replayable = true;
    st->upstream_service_ms = -1;
    if (!ds->shadow) {
        keel_stats_add(pw->stats, KEEL_STAT_DOWNSTREAM_RQ_TOTAL, 1);
        keel_stats_add(pw->stats, KEEL_STAT_DOWNSTREAM_RQ_ACTIVE, 1);
    }
    return st;
}

void keel_stream_free(struct keel_stream *st)
{
    if (!st)
        return;
    keel_dfp_cancel(st); /* a stream freed while waiting for a DNS answer leaves the line */
    keel_timer_stop(&st->timeout);
    keel_timer_stop(&st->delay);
    keel_timer_stop(&st->try_timer);
    keel_buf_free(&st->replay);
    keel_snapshot_unref(st->snap);
    struct keel_pworker *pw = st->ds->pw;
    if (KEEL_PROXY_REUSE && pw->n_stream_cache < KEEL_PROXY_STREAM_CACHE) {
        keel_arena_reset(st->arena);
        st->cache_next = pw->stream_cache;
        pw->stream_cache = st;
        pw->n_stream_cache++;
        return;
    }
    keel_arena_free(st->arena);
    free(st);
}

void keel_downstream_link(struct keel_downstream *ds)
{
    struct keel_pworker *pw = ds->pw;
    ds->prev = NULL;
    ds->next = pw->downstreams;
    if (pw->downstreams)
        pw->downstreams->prev = ds;
    pw->downstreams = ds;
}

void keel_downstream_unlink(struct keel_downstream *ds)
{
    if (ds->prev)
        ds->prev->next = ds->next;
    else if (ds->pw->downstreams == ds)
        ds->pw->downstreams = ds->next;
    if (ds->next)
        ds->next->prev = ds->prev;
    ds->prev = ds->next = NULL;
}

void keel_downstreams_shutdown(struct keel_pworker *pw, bool now)
{
    for (struct keel_downstream *ds = pw->downstreams, *next; ds; ds = next) {
        next = ds->next; /* shutdown may unlink ds */
        ds->ops->shutdown(ds, now);
    }
}

/* ---- local replies -------------------------------------------------------------------------------------------- */

void keel_stream_local_reply(struct keel_stream *st, int status, uint32_t flag, const char *details, const char *body,
                             size_t body_len, const struct keel_http_header *extra, size_t n_extra)
{
    if (st->finished)
        return;
    if (st->resp_started) {
        /* too late for a reply: the client already has a head; the codec cuts the stream */
        st->flags |= flag;
        st->details = details;
        keel_stream_finish(st);
        return;
    }
    st->status = status;
    st->flags |= flag;
    st->details = details;
    st->local = true;
    /* RFC 9110 §6.4.1/§8.6: 1xx, 204 and 304 carry no body and 204 must not carry Content-Length. */
    bool bodiless = status < 200 || status == 204 || status == 304;
    if (bodiless) {
        body = "";
        body_len = 0;
    } else if (!body) {
        body = keel_h1_reason(status);
        body_len = strlen(body);
    }
    struct keel_http_header h[12];
    size_t n = 0;
    char len[KEEL_U64_STRLEN];
    keel_u64_to_str(body_len, len);
    bool typed = false; /* an extra field may bring its own content-type (a gRPC answer) */
    for (size_t i = 0; i < n_extra; i++)
        typed = typed || keel_str_caseeq(extra[i].name, KEEL_STR_LIT("content-type"));
    if (!bodiless) {
        h[n++] = (struct keel_http_header){KEEL_STR_LIT("content-length"), keel_str_c(len)};
        if (!typed)
            h[n++] = (struct keel_http_header){KEEL_STR_LIT("content-type"), KEEL_STR_LIT("text/plain")};
    }
    for (size_t i = 0; i < n_extra && n < 11; i++)
        h[n++] = extra[i];
    h[n++] = (struct keel_http_header){KEEL_STR_LIT("server"), KEEL_STR_LIT("keel")};
    const struct keel_ds_ops *ops = st->ds->ops;
    st->resp_mode = bodiless || keel_str_eq_c(st->req.method, "HEAD") ? KEEL_BODY_NONE : KEEL_BODY_LENGTH;
    st->resp_started = true;
    if (ops->head(st, status, KEEL_STR_LIT(""), h, n) == 0 && st->resp_mode == KEEL_BODY_LENGTH && body_len) {
        ops->body(st, body, body_len, body, body_len);
        st->bytes_sent += body_len;
    }
    st->resp_done = true;
    ops->end(st);
    keel_stream_finish(st);
}

/* ---- routing --------------------------------------------------------------------------------------------------- */

static void on_timeout(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct keel_stream *st = t->data;
    keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_TIMEOUT, 1);
    keel_upstream_report_timeout(st); /* outlier detection: a local-origin timeout */
    if (st->uc) {
        keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_ACTIVE, -1);
        keel_upstream_release(st->uc, false);
        st->uc = NULL;
    }
    keel_stream_local_reply(st, 504, KEEL_RF(UPSTREAM_REQUEST_TIMEOUT), "response_timeout", "upstream request timeout",
                            24, NULL, 0);
}

/* Finds the route table for a request on this connection. */
static const struct keel_route_table *route_table_for(struct keel_stream *st, uint32_t *port, bool *https_redirect)
{
    struct keel_downstream *ds = st->ds;
    *https_redirect = false;
    if (ds->role == KEEL_PL_GATEWAY) {
        *port = ds->port;
        const struct keel_listener *l = keel_snapshot_listener(st->snap, ds->port);
        if (!l)
            return NULL;
        if (ds->chain >= 0 && (size_t)ds->chain < l->n_chains && l->chains[ds->chain].routes)
            return l->chains[ds->chain].routes;
        for (size_t i = 0; i < l->n_chains; i++) {
            if (l->chains[i].routes) {
                *https_redirect = l->chains[i].https_redirect;
                return l->chains[i].routes;
            }
        }
        return NULL;
    }
    /* outbound, and the inbound address itself: the authority's port (default 80) picks the table */
    uint32_t p = 80;
    struct keel_str host, ps;
    uint64_t v;
    if (keel_http_authority_split(st->req.authority, &host, &ps) && keel_str_to_u64(ps, 65535, &v) == 0)
        p = (uint32_t)v;
    if (ds->role == KEEL_PL_INBOUND) {
        /* an inbound port's listener names its port, else the authority's port names a workload or service
         * port; the table is `inbound|<port>||` (docs/proxy.md "Inbound") */
        const struct keel_inbound *in =
            ds->port ? keel_snapshot_inbound(st->snap, ds->port) : keel_snapshot_inbound_for_authority(st->snap, p);
        *port = in ? in->port : ds->port ? ds->port : p;
        return in ? in->routes : NULL;
    }
    *port = p;
    char name[KEEL_U64_STRLEN];
    keel_u64_to_str(p, name);
    return keel_snapshot_route_table(st->snap, name);
}

static void do_redirect(struct keel_stream *st, const struct keel_redirect *rd)
{
    char loc[4096];
    const char *scheme = rd->scheme ? rd->scheme : (st->req.scheme.n ? "" : "http");
    char scheme_buf[16];
    if (!rd->scheme && st->req.scheme.n)
        snprintf(scheme_buf, sizeof(scheme_buf), "%.*s", (int)st->req.scheme.n, st->req.scheme.p), scheme = scheme_buf;
    /* the request's authority; its port is dropped only when the redirect sets one */
    struct keel_str host = st->req.authority, ps;
    if (rd->port)
        keel_http_authority_split(st->req.authority, &host, &ps);
    char port[16] = "";
    if (rd->port && !(rd->strip_default_port &&
                      ((rd->port == 80 && !strcmp(scheme, "http")) || (rd->port == 443 && !strcmp(scheme, "https")))))
        snprintf(port, sizeof(port), ":%u", rd->port);
    int n;
    if (rd->authority)
        n = snprintf(loc, sizeof(loc), "%s://%s%s", scheme, rd->authority, port);
    else
        n = snprintf(loc, sizeof(loc), "%s://%.*s%s", scheme, (int)host.n, host.p, port);
    if (n < 0 || (size_t)n >= sizeof(loc))
        n = 0;
    if (rd->path)
        snprintf(loc + n, sizeof(loc) - (size_t)n, "%s", rd->path);
    else
        snprintf(loc + n, sizeof(loc) - (size_t)n, "%.*s%s%.*s", (int)st->req.path.n, st->req.path.p,
                 st->req.query.n ? "?" : "", (int)st->req.query.n, st->req.query.p);
    struct keel_http_header h = {KEEL_STR_LIT("location"), keel_str_c(loc)};
    keel_stream_local_reply(st, rd->code ? rd->code : 301, 0, "via_route_redirect", "", 0, &h, 1);
}

static void fault_abort(struct keel_stream *st)
{
    const struct keel_fault *f = st->route->action->fault;
    if (f->abort_grpc_status != KEEL_ROUTES_GRPC_NONE) {
        /* a gRPC abort: 200 with the status in the head (a trailers-only response) */
        char code[KEEL_U64_STRLEN];
        keel_u64_to_str((uint64_t)f->abort_grpc_status, code);
        struct keel_http_header h[] = {{KEEL_STR_LIT("content-type"), KEEL_STR_LIT("application/grpc")},
                                       {KEEL_STR_LIT("grpc-status"), keel_str_c(code)},
                                       {KEEL_STR_LIT("grpc-message"), KEEL_STR_LIT("fault filter abort")}};
        keel_stream_local_reply(st, 200, KEEL_RF(FAULT_INJECTED), "fault_filter_abort", "", 0, h, 3);
        return;
    }
    int status = f->abort_http_status ? (int)f->abort_http_status : 503;
    keel_stream_local_reply(st, status, KEEL_RF(FAULT_INJECTED), "fault_filter_abort", "fault filter abort", 18, NULL,
                            0);
}

/* The fault's delay is over (or a retry's back-off): abort as the fault says, else on to the upstream. */
static void on_delay(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct keel_stream *st = t->data;
    if (st->abort_after_delay) {
        st->abort_after_delay = false;
        fault_abort(st);
        return;
    }
    keel_stream_dispatch(st);
}

static bool per_million(struct keel_pworker *pw, uint32_t pm)
{
    if (pm >= 1000000)
        return true;
    return pm && keel_pworker_random(pw) % 1000000 < pm;
}

/* A whole number of milliseconds in header `name` replaces *ms (0 = no limit); other values are ignored. */
static void header_ms(const struct keel_http_head *h, const char *name, int64_t *ms)
{
    const struct keel_str *v = keel_http_head_get(h, name);
    uint64_t n;
    if (v && keel_str_to_u64(*v, (uint64_t)INT64_MAX / 1000000, &n) == 0)
        *ms = (int64_t)n;
}

/* Routes a new request: local reply, or on to an upstream. */
static void stream_route(struct keel_stream *st)
{
    struct keel_pworker *pw = st->ds->pw;
    uint32_t port;
    bool https_redirect;
    const struct keel_route_table *t = route_table_for(st, &port, &https_redirect);
    if (https_redirect) {
        struct keel_redirect rd = {.scheme = "https", .code = 301, .port = 443, .strip_default_port = true};
        do_redirect(st, &rd);
        return;
    }
    st->route = t ? keel_route_match(t, &st->req, port, NULL) : NULL;
    if (!t && st->ds->role == KEEL_PL_OUTBOUND) {
        /* a port no service uses: the outbound traffic policy decides (allow_any: pass
         * through to the address asked for; block_all: 502), as in every table's "*" host */
        size_t n = 0;
        const struct keel_route_table *const *all = keel_snapshot_route_tables(st->snap, &n);
        const struct keel_vhost *vh = n ? keel_route_vhost(all[0], KEEL_STR_LIT("*")) : NULL;
        if (vh && vh->n_routes)
            st->route = vh->routes[vh->n_routes - 1];
    }
    if (!st->route) {
        keel_stats_add(pw->stats, KEEL_STAT_DOWNSTREAM_RQ_NO_ROUTE, 1);
        keel_stream_local_reply(st, 404, KEEL_RF(NO_ROUTE_FOUND), "route_not_found", "", 0, NULL, 0);
        return;
    }
    const struct keel_route_action *a = st->route->action;
    /* Envoy's filter order: CORS, then fault (delay, then abort), then the router */
    switch (keel_cors_check(a->cors, &st->req)) {
    case KEEL_CORS_PREFLIGHT: {
        struct keel_http_header h[8];
        size_t n = keel_cors_preflight_fields(a->cors, &st->req, h, 8);
        keel_stream_local_reply(st, 200, 0, "cors_preflight", "", 0, h, n);
        return;
    }
    case KEEL_CORS_PREFLIGHT_IGNORED:
        keel_stream_local_reply(st, 200, 0, "cors_preflight", "", 0, NULL, 0);
        return;
    case KEEL_CORS_DECORATE:
        st->cors_decorate = true;
        break;
    case KEEL_CORS_PASS:
        break;
    }
    bool abort = a->fault && a->fault->abort && per_million(pw, a->fault->abort_per_million);
    bool delay = a->fault && a->fault->delay && per_million(pw, a->fault->delay_per_million);
    if (abort && !delay) {
        fault_abort(st);
        return;
    }
    if (a->kind == KEEL_ROUTE_REDIRECT) {
        do_redirect(st, &a->redirect);
        return;
    }
    if (a->kind == KEEL_ROUTE_DIRECT_RESPONSE) {
        keel_stream_local_reply(st, a->status, 0, "direct_response", a->body ? a->body : "", a->body ? a->body_len : 0,
                                NULL, 0);
        return;
    }
    int64_t timeout_ms = a->timeout / 1000000;
    st->per_try_ms = a->retry.per_try_timeout / 1000000;
    if (st->ds->role != KEEL_PL_GATEWAY) {
        /* inside the mesh the caller may shorten or set the timeouts (Envoy honours these from internal callers;
         * a gateway's clients are external, so there they are ignored) */
        header_ms(&st->req, "x-envoy-upstream-rq-timeout-ms", &timeout_ms);
        header_ms(&st->req, "x-envoy-upstream-rq-per-try-timeout-ms", &st->per_try_ms);
    }
    if (timeout_ms > 0) {
        st->timeout.data = st;
        keel_timer_start(pw->loop, &st->timeout, (uint64_t)timeout_ms, on_timeout, st);
    }
    if (delay) {
        st->flags |= KEEL_RF(DELAY_INJECTED);
        st->abort_after_delay = abort;
        st->delay.data = st;
        keel_timer_start(pw->loop, &st->delay, (uint64_t)(a->fault->delay_ns / 1000000), on_delay, st);
        return;
    }
    keel_stream_dispatch(st);
}

static void make_request_id(struct keel_pworker *pw, char out[37])
{
    unsigned char b[16];
    for (int i = 0; i < 16; i += 4) {
        uint32_t r = keel_pworker_random(pw);
        memcpy(b + i, &r, 4);
    }
    b[6] = (unsigned char)((b[6] & 0x0F) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3F) | 0x80);
    keel_uuid_to_str(b, out);
}

void keel_stream_start(struct keel_stream *st)
{
    struct keel_pworker *pw = st->ds->pw;
    if (!keel_http_head_get(&st->req, "x-request-id") && st->req.nheaders < KEEL_HTTP_MAX_HEADERS) {
        /* generated once here, so the access log and the upstream see the same id */
        char *id = keel_arena_xalloc(st->arena, 37);
        make_request_id(pw, id);
        st->req.headers[st->req.nheaders++] = (struct keel_http_header){KEEL_STR_LIT("x-request-id"), {id, 36}};
    }
    if (st->req_mode == KEEL_BODY_CHUNKED)
        keel_h1_chunked_init(&st->req_ch);
    if (!st->snap) {
        keel_stream_local_reply(st, 503, 0, "no_config", "no configuration yet", 20, NULL, 0);
        return;
    }
    stream_route(st);
}

/* ---- retries ---------------------------------------------------------------------------------------------------- */

/* What a failed attempt counts as, for retryOn (Envoy's semantics: connect failures and resets are 5xx and
 * gateway errors too). */
#define RETRY_ON_CONNECT                                                                                               \
    (KEEL_RETRY_CONNECT_FAILURE | KEEL_RETRY_RESET | KEEL_RETRY_RESET_BEFORE_REQUEST | KEEL_RETRY_5XX |                \
     KEEL_RETRY_GATEWAY_ERROR)
#define RETRY_ON_RESET (KEEL_RETRY_RESET | KEEL_RETRY_REFUSED_STREAM | KEEL_RETRY_5XX | KEEL_RETRY_GATEWAY_ERROR)
#define RETRY_ON_TIMEOUT (KEEL_RETRY_RESET | KEEL_RETRY_5XX | KEEL_RETRY_GATEWAY_ERROR)

/* The retryOn conditions an upstream response head meets. */
static uint32_t retry_on_response(const struct keel_stream *st)
{
    const struct keel_retry_policy *rp = &st->route->action->retry;
    int s = st->resp.status;
    uint32_t m = 0;
    if (s >= 500)
        m |= KEEL_RETRY_5XX;
    if (s == 502 || s == 503 || s == 504)
        m |= KEEL_RETRY_GATEWAY_ERROR;
    if (s == 409)
        m |= KEEL_RETRY_RETRIABLE_4XX;
    for (size_t i = 0; i < rp->n_status_codes; i++)
        if (rp->status_codes[i] == s)
            m |= KEEL_RETRY_RETRIABLE_STATUS_CODES;
    const struct keel_str *g = keel_http_head_get(&st->resp, "grpc-status"); /* a trailers-only gRPC answer */
    uint64_t code;
    if (g && keel_str_to_u64(*g, 16, &code) == 0) {
        static const uint32_t grpc[17] = {[1] = KEEL_RETRY_CANCELLED,
                                          [4] = KEEL_RETRY_DEADLINE_EXCEEDED,
                                          [8] = KEEL_RETRY_RESOURCE_EXHAUSTED,
                                          [13] = KEEL_RETRY_INTERNAL,
                                          [14] = KEEL_RETRY_UNAVAILABLE};
        m |= grpc[code];
    }
    return m;
}

/* Envoy's back-off: a random wait in [0, (2^n - 1) x base], base 25 ms, at most 10 x base. */
static uint64_t backoff_ms(struct keel_stream *st)
{
    const struct keel_retry_policy *rp = &st->route->action->retry;
    uint64_t base = rp->backoff > 0 ? (uint64_t)(rp->backoff / 1000000) : 25;
    if (!base)
        base = 1;
    unsigned n = st->attempts < 10 ? st->attempts : 10;
    uint64_t cap = ((1ull << n) - 1) * base, max = 10 * base;
    if (cap > max)
        cap = max;
    return cap ? keel_pworker_random(st->ds->pw) % (cap + 1) : 0;
}

/* After a failed attempt that meets `outcome`: a retry when the route's policy asks for one and allows it (returns
 * true: the next attempt is scheduled), else false (the caller answers; URX marks a policy that ran out). */
static bool try_again(struct keel_stream *st, uint32_t outcome)
{
    const struct keel_retry_policy *rp = &st->route->action->retry;
    if (!rp->enabled || !(rp->retry_on & outcome) || st->ds->shadow)
        return false;
    bool can_replay = st->replayable && (st->req_done || st->replay.len == 0 || st->req_wire_bytes == 0);
    if (!can_replay || st->attempts > rp->num_retries) {
        if (st->attempts > 1)
            st->flags |= KEEL_RF(UPSTREAM_RETRY_LIMIT_EXCEEDED);
        return false;
    }
    if (!keel_upstream_retry_allowed(st))
        return false; /* DestinationRule maxRetries reached (envoy_cluster_upstream_rq_retry_overflow) */
    keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_RETRY, 1);
    keel_timer_stop(&st->try_timer);
    /* a fresh response state for the next attempt */
    st->resp = (struct keel_http_head){0};
    st->resp_h1 = (struct keel_h1_response){0};
    st->resp_mode = KEEL_BODY_NONE;
    st->resp_raw = false;
    st->trailers = NULL;
    st->n_trailers = 0;
    st->status = 0;
    st->delay.data = st;
    keel_timer_start(st->ds->pw->loop, &st->delay, backoff_ms(st), on_delay, st);
    return true;
}

static void on_try_timeout(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct keel_stream *st = t->data;
    if (st->resp_started || st->finished)
        return;
    keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_TIMEOUT, 1);
    keel_upstream_report_timeout(st); /* outlier detection: a local-origin timeout */
    if (st->uc) {
        keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_ACTIVE, -1);
        keel_upstream_release(st->uc, false);
        st->uc = NULL;
    }
    if (try_again(st, RETRY_ON_TIMEOUT))
        return;
    keel_stream_local_reply(st, 504, KEEL_RF(UPSTREAM_REQUEST_TIMEOUT), "upstream_per_try_timeout",
                            "upstream request timeout", 24, NULL, 0);
}

/* Istio's choice of the upstream protocol: HTTP/2 for http2/grpc ports, when the DestinationRule upgrades
 * (h2UpgradePolicy: UPGRADE), or when it asks to use the client's protocol and the client speaks HTTP/2. */
static bool upstream_wants_h2(const struct keel_stream *st, const struct keel_cluster *c)
{
    if (c->limits.use_client_protocol)
        return st->req.version == KEEL_HTTP_2;
    if (c->service_port && (c->service_port->proto == KEEL_PROTO_HTTP2 || c->service_port->proto == KEEL_PROTO_GRPC))
        return true;
    return c->limits.h2_upgrade == KEEL_CONN_POOL_HTTP_H2_UPGRADE_POLICY_UPGRADE;
}

/* Picks a destination and endpoint and attaches an upstream connection. */
void keel_stream_dispatch(struct keel_stream *st)
{
    struct keel_pworker *pw = st->ds->pw;
    if (!st->cluster) {
        const struct keel_route_dest *d = keel_route_pick(st->route, keel_pworker_random(pw));
        if (!d || !d->cluster) {
            keel_stream_local_reply(st, 503, KEEL_RF(NO_CLUSTER_FOUND), "cluster_not_found", "no healthy upstream", 19,
                                    NULL, 0);
            return;
        }
        st->cluster = d->cluster;
        st->cstats = keel_cluster_view(pw, d->cluster)->stats;
    }
    const struct keel_cluster *c = st->cluster;
    if (c->type == KEEL_CLUSTER_BLACKHOLE) {
        keel_stream_local_reply(st, 502, 0, "blackhole", "", 0, NULL, 0);
        return;
    }
    if (c->type == KEEL_CLUSTER_ORIGINAL_DST || c->type == KEEL_CLUSTER_DYNAMIC_DNS) {
        /* pass-through and dynamic forward proxy: the destination the client asked for, its name resolved per
         * request (dfp.c); a stream parked on a lookup comes back here when the answer arrives */
        if (keel_dfp_endpoint(st, c) != KEEL_DFP_READY)
            return;
        if (keel_listeners_own(pw, st->ep->hostport)) {
            /* to this proxy's own listener: a loop (Istio's virtualOutbound-blackhole) */
            keel_stream_local_reply(st, 502, 0, "loop_to_own_listener", "", 0, NULL, 0);
            return;
        }
    } else {
        st->ep = keel_upstream_pick_request(st, c, st->tried);
    }
    if (!st->ep) {
        keel_stream_local_reply(st, 503, KEEL_RF(NO_HEALTHY_UPSTREAM), "no_healthy_upstream", "no healthy upstream", 19,
                                NULL, 0);
        return;
    }
    st->tried = st->ep;
    st->attempts++;
    if (st->req_done && !st->mirrored && st->route->action->n_mirrors)
        keel_mirror_fire(st);
    st->upstream_host = st->ep->hostport;
    st->upstream_start_ms = keel_loop_now_ms(pw->loop);
    st->up_h2 = !st->upgrade && upstream_wants_h2(st, c); /* WebSocket over HTTP/2 (RFC 8441) is not done */
    struct keel_upconn *uc;
    int rc = keel_upstream_attach(pw, st, c, st->ep, c->limits.connect_timeout, st->up_h2, &uc);
    if (rc == KEEL_EOVERFLOW) { /* a DestinationRule connectionPool limit (circuit breaker) */
        static const char body[] = "upstream connect error or disconnect/reset before headers. reset reason: overflow";
        keel_stream_local_reply(st, 503, KEEL_RF(UPSTREAM_OVERFLOW), "upstream_reset_before_response_started{overflow}",
                                body, sizeof(body) - 1, NULL, 0);
        return;
    }
    if (rc != 0) {
        keel_stream_upstream_failed(st, rc, true, false);
        return;
    }
    st->uc = uc;
    if (st->per_try_ms > 0) {
        st->try_timer.data = st;
        keel_timer_start(pw->loop, &st->try_timer, (uint64_t)st->per_try_ms, on_try_timeout, st);
    }
    if (uc->connected)
        keel_stream_upstream_ready(st);
}

/* ---- request head to the upstream ------------------------------------------------------------------------------ */

/* Is a field hop-by-hop (RFC 9110 7.6.1: never forwarded)? conn is the message's Connection value (or NULL):
 * the fields it names are hop-by-hop too. Host is listed as it is sent separately (Host or :authority). */
static bool hop_by_hop(struct keel_str name, const struct keel_str *conn)
{
    static const struct keel_str hop[] = {KEEL_STR_LIT("connection"), KEEL_STR_LIT("keep-alive"),
                                          KEEL_STR_LIT("proxy-connection"), KEEL_STR_LIT("transfer-encoding"),
                                          KEEL_STR_LIT("te"), KEEL_STR_LIT("upgrade"), KEEL_STR_LIT("host"),
                                          KEEL_STR_LIT("trailer")};
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        if (name.n == hop[i].n && keel_str_caseeq(name, hop[i]))
            return true;
    if (conn) {
        const char *p = conn->p, *end = conn->p + conn->n;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ',' || *p == '\t'))
                p++;
            const char *s = p;
            while (p < end && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            if (p > s && keel_str_caseeq(name, (struct keel_str){s, (size_t)(p - s)}))
                return true;
        }
    }
    return false;
}

static bool op_removes(const struct keel_route_header_ops *ops, struct keel_str name)
{
    for (size_t i = 0; i < ops->n_remove; i++)
        if (keel_str_caseeq(name, keel_str_c(ops->remove[i])))
            return true;
    for (size_t i = 0; i < ops->n_set; i++)
        if (keel_str_caseeq(name, keel_str_c(ops->set[i].name)))
            return true;
    return false;
}

/* Appends set/add ops of ops to h (n in/out, cap). */
static void apply_ops(const struct keel_route_header_ops *ops, struct keel_http_header *h, size_t *n, size_t cap)
{
    for (size_t i = 0; i < ops->n_set && *n < cap; i++)
        h[(*n)++] = (struct keel_http_header){keel_str_c(ops->set[i].name), keel_str_c(ops->set[i].value)};
    for (size_t i = 0; i < ops->n_add && *n < cap; i++)
        h[(*n)++] = (struct keel_http_header){keel_str_c(ops->add[i].name), keel_str_c(ops->add[i].value)};
}

static const struct keel_route_dest *stream_dest(const struct keel_stream *st)
{
    const struct keel_route_action *a = st->route->action;
    for (size_t i = 0; i < a->n_dests; i++)
        if (a->dests[i].cluster == st->cluster)
            return &a->dests[i];
    return NULL;
}

/* The fields of the upstream request, Host first (the rewrite, else the request's authority); the caller adds the
 * body framing. path receives the rewritten path. Returns the number of fields in h. */
static size_t request_fields(struct keel_stream *st, struct keel_http_header *h, size_t cap, char *bufs,
                             size_t bufs_len)
{
    struct keel_downstream *ds = st->ds;
    const struct keel_route_action *a = st->route->action;
    const struct keel_route_dest *dest = stream_dest(st);
    size_t n = 0;
    const char *host_rw = dest && dest->host_rewrite ? dest->host_rewrite : a->host_rewrite;
    h[n++] = (struct keel_http_header){KEEL_STR_LIT("host"), host_rw ? keel_str_c(host_rw) : st->req.authority};
    bool have_xfp = false;
    const struct keel_str *xff = NULL;
    /* the caller's proxy counts attempts (Istio sets it on outbound and gateway routes); an inbound sidecar
     * passes its count on */
    bool count_attempts = ds->role != KEEL_PL_INBOUND;
    const struct keel_str *conn = keel_http_head_get(&st->req, "connection");
    for (size_t i = 0; i < st->req.nheaders && n < cap - 8; i++) {
        struct keel_str name = st->req.headers[i].name;
        if (hop_by_hop(name, conn) || keel_str_caseeq(name, KEEL_STR_LIT("content-length")) ||
            (count_attempts && keel_str_caseeq(name, KEEL_STR_LIT("x-envoy-attempt-count"))))
            continue;
        if (op_removes(&a->headers.request, name) || (dest && op_removes(&dest->headers.request, name)))
            continue;
        if (keel_str_caseeq(name, KEEL_STR_LIT("x-forwarded-for"))) {
            xff = &st->req.headers[i].value;
            if (ds->role == KEEL_PL_GATEWAY)
                continue; /* re-added below with the peer appended */
        }
        if (keel_str_caseeq(name, KEEL_STR_LIT("x-forwarded-proto")))
            have_xfp = true;
        h[n++] = st->req.headers[i];
    }
    /* bufs: the attempt count, then x-forwarded-for */
    char *attempts = bufs, *xff_buf = bufs + KEEL_U64_STRLEN;
    size_t xff_len = bufs_len - KEEL_U64_STRLEN;
    if (!have_xfp)
        h[n++] = (struct keel_http_header){KEEL_STR_LIT("x-forwarded-proto"), keel_str_c(ds->tls ? "https" : "http")};
    if (ds->role == KEEL_PL_GATEWAY) {
        /* "<received>, <peer>" or "<peer>", cut to the buffer (no printf on the request path) */
        size_t peer_n = strlen(ds->peer_ip), len = 0;
        if (xff && xff->n + 2 + peer_n <= xff_len) {
            memcpy(xff_buf, xff->p, xff->n);
            memcpy(xff_buf + xff->n, ", ", 2);
            len = xff->n + 2;
        }
        if (len + peer_n <= xff_len) {
            memcpy(xff_buf + len, ds->peer_ip, peer_n);
            len += peer_n;
        }
        h[n++] = (struct keel_http_header){KEEL_STR_LIT("x-forwarded-for"), {xff_buf, len}};
    }
    if (count_attempts) {
        keel_u64_to_str(st->attempts, attempts);
        h[n++] = (struct keel_http_header){KEEL_STR_LIT("x-envoy-attempt-count"), keel_str_c(attempts)};
    }
    const struct keel_str *up = st->upgrade ? keel_http_head_get(&st->req, "upgrade") : NULL;
    if (up) { /* hop-by-hop, but the upgrade is asked of the upstream too (Envoy's upgrade_configs) */
        h[n++] = (struct keel_http_header){KEEL_STR_LIT("connection"), KEEL_STR_LIT("upgrade")};
        h[n++] = (struct keel_http_header){KEEL_STR_LIT("upgrade"), *up};
    }
    apply_ops(&a->headers.request, h, &n, cap - 2);
    if (dest)
        apply_ops(&dest->headers.request, h, &n, cap - 2);
    return n;
}

/* Sends the request head on the attempt's upstream connection (HTTP/1.1 bytes, or an HTTP/2 HEADERS frame). */
static int send_request_head(struct keel_stream *st)
{
    struct keel_http_header h[KEEL_HTTP_MAX_HEADERS + 16];
    char bufs[KEEL_U64_STRLEN + 1024], clen[KEEL_U64_STRLEN];
    size_t cap = sizeof(h) / sizeof(h[0]);
    size_t n = request_fields(st, h, cap, bufs, sizeof(bufs));
    char path[KEEL_H1_MAX_TARGET + 1];
    int plen = keel_route_rewrite_path(st->route, st->req.path, path, sizeof(path));
    struct keel_http_head up = {.version = KEEL_HTTP_11, .method = st->req.method};
    up.path = plen >= 0 ? (struct keel_str){path, (size_t)plen} : st->req.path;
    up.query = st->req.query;
    if (st->req.has_content_length) {
        keel_u64_to_str(st->req.content_length, clen);
        h[n++] = (struct keel_http_header){KEEL_STR_LIT("content-length"), keel_str_c(clen)};
    }
    if (st->up_h2) {
        /* gRPC needs "te: trailers" end to end; any other te is hop-by-hop */
        const struct keel_str *te = keel_http_head_get(&st->req, "te");
        if (te && keel_str_caseeq(*te, KEEL_STR_LIT("trailers")))
            h[n++] = (struct keel_http_header){KEEL_STR_LIT("te"), KEEL_STR_LIT("trailers")};
        return keel_uph2_request(st->uc, &up, h, n, st->req_mode != KEEL_BODY_NONE);
    }
    if (st->req_mode == KEEL_BODY_CHUNKED && !st->req.has_content_length)
        h[n++] = (struct keel_http_header){KEEL_STR_LIT("transfer-encoding"), KEEL_STR_LIT("chunked")};
    return keel_h1_write_request_head(&st->uc->out, &up, h, n);
}

/* Request body bytes to the upstream, framed for its protocol. */
static void send_body(struct keel_stream *st, const char *data, size_t len)
{
    if (!len)
        return;
    if (st->up_h2)
        keel_uph2_body(st->uc, data, len);
    else if (st->req_mode == KEEL_BODY_CHUNKED && !st->req.has_content_length)
        keel_h1_write_chunk(&st->uc->out, data, len);
    else
        keel_buf_append(&st->uc->out, data, len);
}

static void send_body_end(struct keel_stream *st)
{
    if (st->up_h2)
        keel_uph2_body_end(st->uc);
    else if (st->req_mode == KEEL_BODY_CHUNKED && !st->req.has_content_length)
        keel_h1_write_last_chunk(&st->uc->out, NULL, 0);
}

bool keel_stream_body_room(const struct keel_stream *st)
{
    const struct keel_upconn *uc = st->uc;
    return uc && !st->req_done && keel_upstream_pending(uc) < KEEL_PROXY_OUT_HIGH;
}

void keel_stream_body_out(struct keel_stream *st, const char *data, size_t len)
{
    if (st->replayable) {
        if (st->replay.len + len > KEEL_PROXY_REPLAY_MAX)
            st->replayable = false;
        else
            keel_buf_append(&st->replay, data, len);
    }
    send_body(st, data, len);
}

void keel_stream_body_end(struct keel_stream *st)
{
    st->req_done = true;
    send_body_end(st);
    if (!st->mirrored && st->route->action->n_mirrors)
        keel_mirror_fire(st);
}

void keel_stream_request_body(struct keel_stream *st)
{
    if (st->req_done || !st->uc || !st->uc->connected)
        return;
    st->ds->ops->pump(st);
    if (st->uc)
        keel_upstream_flush(st->uc);
}

void keel_stream_upstream_ready(struct keel_stream *st)
{
    struct keel_upconn *uc = st->uc;
    memcpy(st->upstream_local, uc->local, sizeof(st->upstream_local)); /* same size, NUL-terminated */
    keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_TOTAL, 1);
    keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_ACTIVE, 1);
    if (send_request_head(st) != 0) {
        keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_ACTIVE, -1);
        keel_upstream_release(uc, false);
        st->uc = NULL;
        keel_stream_local_reply(st, 400, KEEL_RF(DOWNSTREAM_PROTOCOL_ERROR), "invalid_request_head", "", 0, NULL, 0);
        return;
    }
    /* a retry resends the body read so far (kept in st->replay), then goes on with the rest */
    send_body(st, st->replay.data, st->replay.len);
    if (st->req_done && st->req_mode != KEEL_BODY_NONE)
        send_body_end(st);
    else if (!st->req_done)
        st->ds->ops->pump(st);
    if (!st->uc)
        return;
    if (keel_upstream_flush(uc) < 0)
        keel_upstream_fail(uc, KEEL_ECLOSED);
}

void keel_stream_upstream_writable(struct keel_stream *st)
{
    if (!st->req_done)
        st->ds->ops->pump(st);
    if (st->uc)
        keel_upstream_flush(st->uc);
}

/* Retries per the route's retry policy (connect failures), or gives up with 503. */
void keel_stream_upstream_failed(struct keel_stream *st, int err, bool connect_phase, bool reused)
{
    bool had_conn = st->uc != NULL;
    st->uc = NULL;
    if (had_conn)
        keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_ACTIVE, -1);
    if (st->resp_mode == KEEL_BODY_UNTIL_CLOSE && st->resp_started && err == KEEL_ECLOSED) {
        /* the server ended a read-until-close body: that is the end of the response */
        st->resp_done = true;
        st->resp_keep_alive = false;
        st->ds->ops->end(st);
        keel_stream_finish(st);
        return;
    }
    if (st->resp_started) {
        /* the upstream went away in the middle of the response: cut the client too */
        st->flags |= KEEL_RF(UPSTREAM_CONNECTION_TERMINATION);
        st->details = "upstream_reset_after_response_started";
        keel_stream_finish(st);
        return;
    }
    bool can_replay = st->replayable && (st->req_done || st->replay.len == 0 || st->req_wire_bytes == 0);
    /* a pooled connection the server had closed: one free retry on a fresh connection */
    if (!connect_phase && reused && can_replay && st->attempts < 8) {
        st->tried = NULL;
        st->attempts--; /* not an attempt the user asked for */
        keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_RETRY, 1);
        keel_stream_dispatch(st);
        return;
    }
    keel_timer_stop(&st->try_timer);
    if (try_again(st, connect_phase ? RETRY_ON_CONNECT : RETRY_ON_RESET))
        return;
    uint32_t flag = connect_phase ? KEEL_RF(UPSTREAM_CONNECTION_FAILURE) : KEEL_RF(UPSTREAM_CONNECTION_TERMINATION);
    keel_stream_local_reply(
        st, 503, flag,
        connect_phase ? "upstream_reset_before_response_started{connection_failure}"
                      : "upstream_reset_before_response_started{connection_termination}",
        connect_phase ? "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
                      : "upstream connect error or disconnect/reset before headers. reset reason: connection "
                        "termination",
        0, NULL, 0);
    (void)err;
}

/* ---- response ---------------------------------------------------------------------------------------------------- */

/* Sends the upstream's response head through the codec, with the route's header operations. */
static int send_response_head(struct keel_stream *st)
{
    const struct keel_route_action *a = st->route->action;
    const struct keel_route_dest *dest = stream_dest(st);
    struct keel_http_header h[KEEL_HTTP_MAX_HEADERS + 16];
    size_t n = 0, cap = sizeof(h) / sizeof(h[0]);
    /* a bodiless answer (to HEAD, 304) keeps the Content-Length it announces; otherwise the codec frames */
    bool keep_length = st->resp_h1.no_body && st->resp.status >= 200 && st->resp.status != 204;
    const struct keel_str *conn = keel_http_head_get(&st->resp, "connection");
    for (size_t i = 0; i < st->resp.nheaders && n < cap - 6; i++) {
        struct keel_str name = st->resp.headers[i].name;
        bool tunnel_field = st->tunnel && (keel_str_caseeq(name, KEEL_STR_LIT("connection")) ||
                                           keel_str_caseeq(name, KEEL_STR_LIT("upgrade")));
        if ((hop_by_hop(name, conn) && !tunnel_field) ||
            (!keep_length && keel_str_caseeq(name, KEEL_STR_LIT("content-length"))))
            continue;
        if (op_removes(&a->headers.response, name) || (dest && op_removes(&dest->headers.response, name)))
            continue;
        h[n++] = st->resp.headers[i];
    }
    char ust[KEEL_U64_STRLEN];
    keel_u64_to_str(st->upstream_service_ms > 0 ? (uint64_t)st->upstream_service_ms : 0, ust);
    h[n++] = (struct keel_http_header){KEEL_STR_LIT("x-envoy-upstream-service-time"), keel_str_c(ust)};
    if (st->cors_decorate)
        n += keel_cors_response_fields(a->cors, &st->req, h + n, cap - n);
    apply_ops(&a->headers.response, h, &n, cap);
    if (dest)
        apply_ops(&dest->headers.response, h, &n, cap);
    n += keel_upstream_response_fields(st, h + n, cap - n); /* a generated consistent-hash cookie */
    return st->ds->ops->head(st, st->resp.status, st->resp.reason, h, n);
}

/* Moves response body bytes from the upstream's input to the client. */
static void forward_response_body(struct keel_stream *st)
{
    const struct keel_ds_ops *ops = st->ds->ops;
    struct keel_upconn *uc = st->uc;
    while (!st->resp_done && uc && uc->in.len > 0 && ops->pending(st) < KEEL_PROXY_OUT_HIGH) {
        size_t take;
        const char *data = uc->in.data;
        size_t dlen;
        if (st->resp_mode == KEEL_BODY_LENGTH) {
            take = st->resp_left < uc->in.len ? (size_t)st->resp_left : uc->in.len;
            st->resp_left -= take;
            if (st->resp_left == 0)
                st->resp_done = true;
            dlen = take;
        } else if (st->resp_mode == KEEL_BODY_CHUNKED) {
            int rc = keel_h1_chunked_feed(&st->resp_ch, uc->in.data, uc->in.len, &take, &data, &dlen);
            if (rc == KEEL_H1_CHUNKED_END) {
                st->resp_done = true;
            } else if (rc < 0 && rc != KEEL_EAGAIN) {
                st->flags |= KEEL_RF(UPSTREAM_PROTOCOL_ERROR);
                st->details = "upstream_chunked_error";
                keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_ACTIVE, -1);
                keel_upstream_release(uc, false);
                st->uc = NULL;
                keel_stream_finish(st);
                return;
            }
            if (take == 0)
                break;
        } else { /* until close */
            take = uc->in.len;
            dlen = take;
        }
        ops->body(st, uc->in.data, take, data, dlen);
        st->bytes_sent += take;
        keel_buf_consume(&uc->in, take);
    }
    if (uc)
        keel_upstream_pause(uc, ops->pending(st) >= KEEL_PROXY_OUT_HIGH);
}

/* The final response head is in st->resp (status, fields in the stream's arena, framing in st->resp_mode): count
 * it and send it to the client. Returns false when the stream was answered otherwise (a head we cannot send). */
static bool response_head(struct keel_stream *st)
{
    keel_timer_stop(&st->try_timer);
    keel_cstats_count_code(st->cstats, st->resp.status); /* every attempt's answer counts */
    keel_upstream_report_status(st, st->resp.status);    /* outlier detection, every attempt too */
    uint32_t outcome = retry_on_response(st);
    struct keel_upconn *uc = st->uc;
    if (outcome && try_again(st, outcome)) {
        st->uc = NULL; /* this answer's body is not wanted: the connection closes */
        keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_ACTIVE, -1);
        keel_upstream_release(uc, false);
        return false;
    }
    st->status = st->resp.status;
    st->upstream_service_ms = (int64_t)(keel_loop_now_ms(st->ds->pw->loop) - st->upstream_start_ms);
    keel_timer_stop(&st->timeout);
    st->resp_started = true;
    if (send_response_head(st) != 0) {
        uc = st->uc;
        st->resp_started = false;
        st->uc = NULL;
        keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_ACTIVE, -1);
        keel_upstream_release(uc, false);
        keel_stream_local_reply(st, 502, KEEL_RF(UPSTREAM_PROTOCOL_ERROR), "upstream_invalid_header", "", 0, NULL, 0);
        return false;
    }
    st->details = "via_upstream";
    return true;
}

/* ---- the HTTP/2 upstream codec's calls (upstream_h2.c) ---- */

void keel_stream_upstream_head(struct keel_stream *st, bool end_stream)
{
    int s = st->resp.status;
    if (end_stream || keel_str_eq_c(st->req.method, "HEAD") || s == 204 || s == 304)
        st->resp_mode = KEEL_BODY_NONE;
    else if (st->resp.has_content_length)
        st->resp_mode = KEEL_BODY_LENGTH;
    else
        st->resp_mode = KEEL_BODY_CHUNKED; /* length unknown: an HTTP/1.1 client gets it chunked */
    st->resp_keep_alive = true;
    response_head(st);
}

void keel_stream_upstream_data(struct keel_stream *st, const char *data, size_t len)
{
    if (st->finished || !st->resp_started || !len)
        return;
    st->ds->ops->body(st, NULL, 0, data, len);
    st->bytes_sent += len;
    if (st->uc)
        keel_upstream_pause(st->uc, st->ds->ops->pending(st) >= KEEL_PROXY_OUT_HIGH);
}

void keel_stream_upstream_end(struct keel_stream *st)
{
    if (st->finished || !st->resp_started)
        return;
    st->resp_done = true;
    st->ds->ops->end(st);
    keel_stream_finish(st);
}

/* ---- the HTTP/1.1 upstream ---- */

void keel_stream_upstream_readable(struct keel_stream *st)
{
    struct keel_upconn *uc = st->uc;
    while (!st->resp_started && uc) {
        size_t used;
        int rc = keel_h1_parse_response(uc->in.data, uc->in.len, st->req.method, NULL, &st->resp, &st->resp_h1, &used);
        if (rc == KEEL_EAGAIN)
            return;
        if (rc != 0) {
            st->uc = NULL;
            keel_upstream_release(uc, false);
            keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_ACTIVE, -1);
            keel_stream_local_reply(st, 502, KEEL_RF(UPSTREAM_PROTOCOL_ERROR), "upstream_protocol_error",
                                    "upstream sent an invalid response", 33, NULL, 0);
            return;
        }
        if (st->resp.status >= 100 && st->resp.status < 200 && st->resp.status != 101) {
            /* interim (100 Continue): pass it on, wait for the final one */
            st->ds->ops->interim(st, uc->in.data, used);
            keel_buf_consume(&uc->in, used);
            continue;
        }
        copy_response_head(st);
        keel_buf_consume(&uc->in, used);
        if (st->resp_h1.tunnel && st->upgrade && st->resp.status == 101) {
            /* WebSocket: after the 101 the connection is a byte pipe both ways */
            st->tunnel = true;
            st->resp_mode = KEEL_BODY_UNTIL_CLOSE;
            st->req_mode = KEEL_BODY_UNTIL_CLOSE;
            st->req_done = false;
            st->replayable = false;
        } else if (st->resp_h1.tunnel) {
            /* a 101 nobody asked for (or a 2xx to a CONNECT keel never sends): the connection now carries
             * something else, and HTTP/2 clients cannot even be told (RFC 9113 section 8.6) */
            st->uc = NULL;
            keel_upstream_release(uc, false);
            keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_ACTIVE, -1);
            keel_stream_local_reply(st, 502, KEEL_RF(UPSTREAM_PROTOCOL_ERROR), "upstream_unexpected_upgrade",
                                    "upstream switched protocols unasked", 35, NULL, 0);
            return;
        } else if (st->resp_h1.no_body) {
            st->resp_mode = KEEL_BODY_NONE;
        } else if (st->resp.chunked)
            st->resp_mode = KEEL_BODY_CHUNKED;
        else if (st->resp.has_content_length)
            st->resp_mode = st->resp.content_length ? KEEL_BODY_LENGTH : KEEL_BODY_NONE;
        else
            st->resp_mode = KEEL_BODY_UNTIL_CLOSE;
        st->resp_raw = true;
        st->resp_left = st->resp.content_length;
        keel_h1_chunked_init(&st->resp_ch);
        st->resp_keep_alive = st->resp.keep_alive && !st->tunnel;
        if (!response_head(st))
            return;
        if (st->resp_mode == KEEL_BODY_NONE)
            st->resp_done = true;
        if (st->tunnel) {
            st->ds->ops->pump(st); /* client bytes that came with or after the request head */
            if (st->finished || !st->uc)
                return;
            keel_upstream_flush(st->uc);
        }
    }
    if (st->finished)
        return;
    forward_response_body(st);
    if (st->finished)
        return;
    if (st->resp_done) {
        st->ds->ops->end(st);
        keel_stream_finish(st);
    } else {
        st->ds->ops->flush(st);
    }
}

void keel_stream_resume_response(struct keel_stream *st)
{
    if (st->finished || !st->uc)
        return;
    if (st->up_h2)
        keel_upstream_pause(st->uc, st->ds->ops->pending(st) >= KEEL_PROXY_OUT_HIGH); /* nothing waits in uc->in */
    else
        keel_stream_upstream_readable(st);
}

/* ---- end of a request ------------------------------------------------------------------------------------------ */

static void access_log(struct keel_stream *st)
{
    struct keel_downstream *ds = st->ds;
    const struct keel_logcfg *lc = ds->pw->log;
    if (!lc || !lc->format || lc->fd < 0)
        return;
    const char *proto = st->req.version == KEEL_HTTP_2    ? "HTTP/2"
                        : st->req.version == KEEL_HTTP_10 ? "HTTP/1.0"
                                                          : "HTTP/1.1";
    struct keel_accesslog_entry e = {
        .start_unix_ms = st->start_unix_ms,
        .req = &st->req,
        .resp = st->resp.status ? &st->resp : NULL,
        .protocol = keel_str_c(proto),
        .response_code = st->status,
        .flags = st->flags,
        .response_code_details = st->details,
        .bytes_received = st->req_wire_bytes,
        .bytes_sent = st->bytes_sent,
        .duration_ms = (int64_t)(keel_loop_now_ms(ds->pw->loop) - st->start_ms),
        .upstream_service_time_ms = st->resp.status ? st->upstream_service_ms : -1,
        .upstream_host = st->upstream_host,
        .upstream_cluster = st->cluster ? st->cluster->name : NULL,
        .upstream_local_address = st->upstream_local[0] ? st->upstream_local : NULL,
        .downstream_local_address = ds->local,
        .downstream_remote_address = ds->peer,
        .route_name = st->route ? st->route->name : NULL,
    };
    struct keel_buf *b = &ds->pw->logline;
    keel_buf_reset(b);
    if (keel_accesslog_render(lc->format, &e, b) == 0 && b->len) {
        ssize_t w = write(lc->fd, b->data, b->len);
        (void)w;
    }
}

void keel_stream_finish(struct keel_stream *st)
{
    if (st->finished)
        return;
    st->finished = true;
    struct keel_pworker *pw = st->ds->pw;
    keel_dfp_cancel(st); /* answered (timeout, reset) while waiting for a DNS answer */
    keel_timer_stop(&st->timeout);
    keel_timer_stop(&st->delay);
    keel_timer_stop(&st->try_timer);
    if (st->uc) {
        bool reuse = st->resp_done && st->req_done && st->resp_keep_alive;
        keel_cstats_add(st->cstats, KEEL_CSTAT_UPSTREAM_RQ_ACTIVE, -1);
        keel_upstream_release(st->uc, reuse);
        st->uc = NULL;
    }
    if (!st->ds->shadow) {
        keel_stats_count_code(pw->stats, st->status);
        keel_stats_add(pw->stats, KEEL_STAT_DOWNSTREAM_RQ_ACTIVE, -1);
        access_log(st);
    }
    st->ds->ops->done(st);
}
