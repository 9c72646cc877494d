/*
 * mirror.c - traffic mirroring (VirtualService `mirror`, `mirrorPercentage`, `mirrors`).
 *
 * A shadow copy of a request goes to each mirror cluster, fire and forget:
 * its answer is read and dropped, it is never retried, never logged, never
 * counted as a downstream request, and it cannot slow or fail the real
 * request. As in Envoy the copy's authority gets "-shadow" after the host
 * ("reviews:9080" -> "reviews-shadow:9080"), so the receiving side can tell.
 *
 * A copy is sent once the request is complete: at the first attempt for a
 * request without a body, else when its body ended, provided the whole body
 * was kept for retries (st->replay, up to KEEL_PROXY_REPLAY_MAX); a larger
 * body is not mirrored (Envoy streams it; this build does not). Each copy is
 * a keel_stream of its own whose "client" is a struct shadow: the exchange
 * answers it through shadow_ops, which discard everything.
 *
 * Ownership: a struct shadow owns its stream and a copy of the body; both
 * are freed when the exchange calls done(). It is in the worker's list of
 * client connections, so a shutdown ends a copy still in flight. Failure: a copy that cannot be
 * allocated is skipped; an unreachable mirror only costs its own attempt.
 */
#include "proxy/stream.h"

#include "base/err.h"
#include "base/log.h"

#include <stdlib.h>
#include <string.h>

struct shadow {
    struct keel_downstream ds; /* first: the exchange's view of the stand-in client; linked in the worker's list */
    struct keel_buf body;      /* the request body to send */
    struct keel_stream *st;    /* the copy's exchange */
};

static int shadow_head(struct keel_stream *st, int status, struct keel_str reason, const struct keel_http_header *h,
                       size_t n)
{
    (void)st;
    (void)status;
    (void)reason;
    (void)h;
    (void)n;
    return 0;
}

static void shadow_interim(struct keel_stream *st, const char *raw, size_t len)
{
    (void)st;
    (void)raw;
    (void)len;
}

static void shadow_body(struct keel_stream *st, const char *raw, size_t raw_len, const char *data, size_t len)
{
    (void)st;
    (void)raw;
    (void)raw_len;
    (void)data;
    (void)len;
}

static void shadow_nothing(struct keel_stream *st)
{
    (void)st;
}

static size_t shadow_pending(const struct keel_stream *st)
{
    (void)st;
    return 0;
}

static void shadow_pump(struct keel_stream *st)
{
    struct shadow *sh = (struct shadow *)st->ds;
    if (sh->body.len && keel_stream_body_room(st)) {
        keel_stream_body_out(st, sh->body.data, sh->body.len);
        keel_buf_reset(&sh->body);
    }
    if (!sh->body.len && !st->req_done)
        keel_stream_body_end(st);
}

static void shadow_done(struct keel_stream *st)
{
    struct shadow *sh = (struct shadow *)st->ds;
    keel_downstream_unlink(&sh->ds);
    keel_stream_free(st);
    keel_buf_free(&sh->body);
    free(sh);
}

/* The worker drains or stops: a copy still waiting for its answer is dropped (now), or left to finish (drain). */
static void shadow_shutdown(struct keel_downstream *ds, bool now)
{
    struct shadow *sh = (struct shadow *)ds;
    if (now && sh->st && !sh->st->finished)
        keel_stream_finish(sh->st); /* frees sh */
}

static const struct keel_ds_ops shadow_ops = {
    .head = shadow_head,
    .interim = shadow_interim,
    .body = shadow_body,
    .end = shadow_nothing,
    .flush = shadow_nothing,
    .pending = shadow_pending,
    .pump = shadow_pump,
    .done = shadow_done,
    .shutdown = shadow_shutdown,
};

/* "host[:port]" -> "host-shadow[:port]" in a's memory. */
static struct keel_str shadow_authority(struct keel_arena *a, struct keel_str in)
{
    struct keel_str hs, ps;
    keel_http_authority_split(in, &hs, &ps);
    size_t host = hs.n;
    char *out = keel_arena_alloc(a, in.n + 8);
    if (!out)
        return in;
    memcpy(out, in.p, host);
    memcpy(out + host, "-shadow", 7);
    memcpy(out + host + 7, in.p + host, in.n - host);
    out[in.n + 7] = '\0';
    return (struct keel_str){out, in.n + 7};
}

static void send_copy(struct keel_stream *st, const struct keel_mirror *m)
{
    struct shadow *sh = calloc(1, sizeof(*sh));
    if (!sh)
        return;
    sh->ds = *st->ds;
    sh->ds.ops = &shadow_ops;
    sh->ds.shadow = true;
    sh->ds.prev = sh->ds.next = NULL;
    keel_buf_init(&sh->body, KEEL_PROXY_REPLAY_MAX);
    struct keel_stream *c = keel_stream_new(&sh->ds);
    if (!c || (st->replay.len && keel_buf_append(&sh->body, st->replay.data, st->replay.len) != 0)) {
        keel_stream_free(c);
        keel_buf_free(&sh->body);
        free(sh);
        return;
    }
    sh->st = c;
    keel_downstream_link(&sh->ds); /* so that a worker's shutdown ends it (keel_downstreams_shutdown) */
    keel_stream_copy_head(c, &st->req);
    c->req.authority = shadow_authority(c->arena, c->req.authority);
    c->req.has_content_length = st->replay.len > 0 || st->req.has_content_length;
    c->req.content_length = st->replay.len;
    c->req_mode = st->replay.len ? KEEL_BODY_LENGTH : KEEL_BODY_NONE;
    c->req_done = c->req_mode == KEEL_BODY_NONE;
    c->route = st->route;
    c->cluster = m->cluster;
    c->cstats = keel_stats_cluster(st->ds->pw->stats, m->cluster->name);
    c->mirrored = true;
    keel_stream_dispatch(c); /* may finish (and free) c at once */
}

void keel_mirror_fire(struct keel_stream *st)
{
    const struct keel_route_action *a = st->route->action;
    st->mirrored = true;
    if (st->ds->shadow)
        return;
    bool whole = st->req_mode == KEEL_BODY_NONE || (st->replayable && st->req_done);
    if (!whole) {
        keel_log(KEEL_LOG_DEBUG, "route %s: request body larger than %u bytes is not mirrored", st->route->name,
                 (unsigned)KEEL_PROXY_REPLAY_MAX);
        return;
    }
    for (size_t i = 0; i < a->n_mirrors; i++) {
        const struct keel_mirror *m = &a->mirrors[i];
        if (!m->cluster)
            continue;
        uint32_t pm = m->per_million;
        if (pm < 1000000 && (pm == 0 || keel_pworker_random(st->ds->pw) % 1000000 >= pm))
            continue;
        send_copy(st, m);
    }
}
