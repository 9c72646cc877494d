/*
 * upstream_pick.c - the choice of an upstream endpoint for a request (see
 * proxy_int.h), moved out of upstream.c, which keeps the connections and pools.
 *
 * Endpoint choice follows the cluster's DestinationRule load balancer over
 * the endpoints that are not ejected by outlier detection (all of them in
 * panic: fewer healthy than minHealthPercent), in the best locality priority
 * that has healthy endpoints (traffic spills to the next as Envoy's does):
 * ROUND_ROBIN (a per-worker cursor per cluster), RANDOM, LEAST_REQUEST
 * (Envoy's default: the better of two random endpoints by requests in flight
 * from this worker), RING_HASH and MAGLEV on a hash of the request's header,
 * cookie (generated and set on the response when absent and a ttl is given),
 * query parameter or source IP (a request without one is balanced at
 * random). Weighted choices use the endpoints' weights, scaled by locality
 * `distribute` and by warmup (slow start) for endpoints added to an existing
 * cluster (not those present when the cluster appeared, at the proxy's
 * start or with a new cluster: Envoy's rule), under ROUND_ROBIN and
 * LEAST_REQUEST only (the load balancers Envoy's slow start exists for).
 *
 * Threads: the worker's (its round-robin cursors, random state and pools'
 * in-flight counts). Failure: no endpoint to use is NULL (the exchange
 * answers 503 UH); out of memory falls back to a random choice.
 */
#include "proxy/stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- endpoint choice ------------------------------------------------------------------------------------------- */

/* One choice: which endpoints may be used, and with what weight. */
struct pick {
    struct keel_pworker *pw;
    const struct keel_cluster *c;
    const struct keel_upcluster *u; /* NULL: no policies (no states for this cluster) */
    const struct keel_endpoint *avoid;
    bool panic;
    bool warming;  /* some endpoint is in its warmup window */
    int prio;      /* -1: every priority */
    int skip_prio; /* retryRemoteLocalities: the priority a retry leaves (Envoy's previous_priorities), or -1 */
    uint64_t now;
};

static bool eligible(const struct pick *x, size_t i)
{
    const struct keel_upcluster *u = x->u;
    if (!u)
        return true;
    if (x->prio >= 0 && u->prio[i] != x->prio)
        return false;
    if (!u->weight[i])
        return false;
    return x->panic || !keel_host_ejected(u->hosts[i]);
}

/* How long endpoint i has been in its cluster (warmup): UINT64_MAX for one that came with the cluster (never
 * warming); 0 while this worker's clock still reads earlier than the main thread's that stamped it. */
static uint64_t warmup_age(const struct pick *x, size_t i)
{
    uint64_t added = x->u->hosts[i]->added_ms;
    if (!added)
        return UINT64_MAX;
    return x->now > added ? x->now - added : 0;
}

static uint64_t weight_of(const struct pick *x, size_t i)
{
    const struct keel_endpoint *e = &x->c->endpoints[i];
    uint64_t w = x->u ? x->u->weight[i] : (e->weight ? e->weight : 1);
    if (x->warming) {
        const struct keel_cluster_lb *lb = &x->c->lb;
        uint64_t age = warmup_age(x, i);
        double f =
            keel_lb_warmup_factor(age, (uint64_t)(lb->warmup / 1000000), lb->warmup_min_percent, lb->warmup_aggression);
        w = (uint64_t)((double)w * 1000.0 * f);
        if (!w)
            w = 1;
    }
    return w;
}

/* weighted choice among the eligible endpoints (skipping avoid when another exists) by a random value */
static const struct keel_endpoint *weighted(const struct pick *x, uint64_t r, bool skip_avoid)
{
    const struct keel_cluster *c = x->c;
    uint64_t total = 0;
    for (size_t i = 0; i < c->n_endpoints; i++)
        if (eligible(x, i) && !(skip_avoid && &c->endpoints[i] == x->avoid))
            total += weight_of(x, i);
    if (!total)
        return NULL;
    r %= total;
    const struct keel_endpoint *last = NULL;
    for (size_t i = 0; i < c->n_endpoints; i++) {
        if (!eligible(x, i) || (skip_avoid && &c->endpoints[i] == x->avoid))
            continue;
        uint64_t w = weight_of(x, i);
        if (r < w)
            return &c->endpoints[i];
        r -= w;
        last = &c->endpoints[i];
    }
    return last;
}

/* Chooses the locality priority by the share of traffic each can take (Envoy's priority load); false when no
 * endpoint can be used. */
static bool choose_priority(struct pick *x)
{
    const struct keel_upcluster *u = x->u;
    const struct keel_cluster *c = x->c;
    uint32_t healthy[KEEL_LB_MAX_PRIORITIES] = {0}, total[KEEL_LB_MAX_PRIORITIES] = {0};
    uint32_t all_healthy = 0, all = 0;
    for (size_t i = 0; i < c->n_endpoints; i++) {
        if (!u->weight[i])
            continue;
        bool ok = !keel_host_ejected(u->hosts[i]);
        total[u->prio[i]]++;
        healthy[u->prio[i]] += ok;
        all++;
        all_healthy += ok;
    }
    if (!all)
        return false;
    /* panic (Envoy's healthy_panic_threshold = minHealthPercent): too few healthy, ejections are ignored */
    uint32_t panic = c->outlier.enabled ? c->outlier.min_health_percent : 0;
    x->panic = panic && (uint64_t)all_healthy * 100 < (uint64_t)panic * all;
    if (x->panic)
        for (unsigned p = 0; p < u->n_prio; p++)
            healthy[p] = total[p];
    if (u->n_prio <= 1) {
        x->prio = -1;
        return x->panic || all_healthy > 0;
    }
    if (x->skip_prio >= 0 && (unsigned)x->skip_prio < u->n_prio) {
        /* a retry with retryRemoteLocalities goes elsewhere when elsewhere has a healthy endpoint */
        uint32_t others = 0;
        for (unsigned p = 0; p < u->n_prio; p++)
            others += (int)p == x->skip_prio ? 0 : healthy[p];
        if (others)
            healthy[x->skip_prio] = 0;
    }
    uint32_t load[KEEL_LB_MAX_PRIORITIES];
    keel_lb_priority_load(healthy, total, u->n_prio, load);
    uint32_t r = keel_pworker_random(x->pw) % 100, acc = 0;
    for (unsigned p = 0; p < u->n_prio; p++) {
        acc += load[p];
        if (load[p] && r < acc) {
            x->prio = (int)p;
            return true;
        }
    }
    return false; /* nothing healthy anywhere */
}

/* The n-th eligible endpoint (round robin), skipping avoid when another exists. */
static const struct keel_endpoint *nth_eligible(const struct pick *x, uintptr_t cur)
{
    const struct keel_cluster *c = x->c;
    size_t count = 0;
    for (size_t i = 0; i < c->n_endpoints; i++)
        count += eligible(x, i);
    if (!count)
        return NULL;
    for (int round = 0; round < 2; round++, cur++) {
        size_t want = cur % count, k = 0;
        for (size_t i = 0; i < c->n_endpoints; i++) {
            if (!eligible(x, i))
                continue;
            if (k++ == want) {
                if (&c->endpoints[i] == x->avoid && count > 1 && round == 0)
                    break;
                return &c->endpoints[i];
            }
        }
    }
    return NULL;
}

static const struct keel_endpoint *round_robin(struct pick *x)
{
    /* per-worker cursor per cluster; the key is our own copy of the name, since the snapshot that owns c->name
     * may be gone by the next request */
    struct keel_pworker *pw = x->pw;
    const struct keel_cluster *c = x->c;
    size_t klen = strlen(c->name);
    uintptr_t cur = 0;
    void *v = keel_map_get(&pw->rr, c->name, klen);
    if (v) {
        cur = (uintptr_t)v - 1;
    } else {
        char *key = strdup(c->name);
        if (!key || keel_map_put(&pw->rr, key, klen, (void *)1, NULL) != 0) {
            free(key);
            return weighted(x, keel_pworker_random(pw), true);
        }
    }
    const struct keel_endpoint *ep = nth_eligible(x, cur);
    keel_map_put(&pw->rr, c->name, klen, (void *)(cur + 2), NULL); /* existing key: kept, value replaced */
    return ep;
}

/* Consistent hash: the ring's first eligible endpoint at or after h, or Maglev's entry (probing on when ejected). */
static const struct keel_endpoint *by_hash(const struct pick *x, uint64_t h)
{
    const struct keel_upcluster *u = x->u;
    const struct keel_cluster *c = x->c;
    if (c->lb.policy == KEEL_LB_RING_HASH && u->ring.n) {
        size_t at = keel_lb_ring_find(&u->ring, h);
        for (size_t k = 0; k < u->ring.n; k++) {
            uint32_t i = u->ring.host[(at + k) % u->ring.n];
            if (eligible(x, i) && &c->endpoints[i] != x->avoid)
                return &c->endpoints[i];
        }
    } else if (c->lb.policy == KEEL_LB_MAGLEV && u->maglev.size) {
        uint64_t hh = h;
        for (int k = 0; k < 64; k++) {
            uint32_t i = u->maglev.table[hh % u->maglev.size];
            if (eligible(x, i) && &c->endpoints[i] != x->avoid)
                return &c->endpoints[i];
            hh = keel_lb_hash(&hh, sizeof(hh));
        }
    }
    return NULL;
}

static const struct keel_endpoint *pick(struct keel_pworker *pw, const struct keel_cluster *c,
                                        const struct keel_endpoint *avoid, bool has_hash, uint64_t hash,
                                        const struct keel_endpoint *leave_prio_of)
{
    if (!c || c->n_endpoints == 0)
        return NULL;
    struct pick x = {.pw = pw, .c = c, .avoid = avoid, .prio = -1, .skip_prio = -1, .now = keel_loop_now_ms(pw->loop)};
    x.u = keel_cluster_view(pw, c)->u;
    if (x.u && (x.u->c != c || !x.u->hosts))
        x.u = NULL; /* a stream of an older config generation: balanced without policies */
    if (x.u && leave_prio_of && leave_prio_of >= c->endpoints && leave_prio_of < c->endpoints + c->n_endpoints)
        x.skip_prio = (int)x.u->prio[leave_prio_of - c->endpoints];
    if (!x.u && c->n_endpoints == 1)
        return &c->endpoints[0];
    if (x.u && !choose_priority(&x))
        return NULL; /* every endpoint ejected, and no panic: 503 UH (no_healthy_upstream) */
    if (x.u && c->lb.warmup > 0 && (c->lb.policy == KEEL_LB_ROUND_ROBIN || c->lb.policy == KEEL_LB_LEAST_REQUEST)) {
        uint64_t window = (uint64_t)(c->lb.warmup / 1000000);
        for (size_t i = 0; i < c->n_endpoints && !x.warming; i++)
            x.warming = eligible(&x, i) && warmup_age(&x, i) < window;
    }
    const struct keel_endpoint *ep = NULL;
    switch (c->lb.policy) {
    case KEEL_LB_RING_HASH:
    case KEEL_LB_MAGLEV:
        if (x.u && has_hash)
            ep = by_hash(&x, hash);
        if (!ep)
            ep = weighted(&x, keel_pworker_random(pw), true);
        break;
    case KEEL_LB_ROUND_ROBIN:
        ep = x.warming ? weighted(&x, keel_pworker_random(pw), true) : round_robin(&x);
        break;
    case KEEL_LB_RANDOM:
        ep = weighted(&x, keel_pworker_random(pw), true);
        break;
    default: {
        /* LEAST_REQUEST: power of two choices */
        const struct keel_endpoint *a = weighted(&x, keel_pworker_random(pw), true);
        const struct keel_endpoint *b = weighted(&x, keel_pworker_random(pw), true);
        if (!a || !b)
            ep = a ? a : b;
        else if (a == b)
            ep = a; /* one endpoint drawn twice: no in-flight counts to compare */
        else
            ep = keel_upstream_endpoint_active(pw, c, b) < keel_upstream_endpoint_active(pw, c, a) ? b : a;
        break;
    }
    }
    return ep ? ep : weighted(&x, keel_pworker_random(pw), false); /* only `avoid` is left */
}

const struct keel_endpoint *keel_upstream_pick(struct keel_pworker *pw, const struct keel_cluster *c,
                                               const struct keel_endpoint *avoid)
{
    return pick(pw, c, avoid, false, 0, NULL);
}

/* The value of cookie `name` in the request's Cookie fields (quotes removed), or false. */
static bool find_cookie(const struct keel_http_head *h, const char *name, struct keel_str *out)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < h->nheaders; i++) {
        if (!keel_str_caseeq(h->headers[i].name, KEEL_STR_LIT("cookie")))
            continue;
        const char *p = h->headers[i].value.p, *end = p + h->headers[i].value.n;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *stop = semi ? semi : end;
            const char *eq = memchr(p, '=', (size_t)(stop - p));
            if (eq && (size_t)(eq - p) == nlen && !memcmp(p, name, nlen)) {
                const char *v = eq + 1, *ve = stop;
                while (ve > v && ve[-1] == ' ')
                    ve--;
                if (ve - v >= 2 && *v == '"' && ve[-1] == '"')
                    v++, ve--;
                *out = (struct keel_str){v, (size_t)(ve - v)};
                return true;
            }
            p = stop;
        }
    }
    return false;
}

static bool find_query(struct keel_str q, const char *name, struct keel_str *out)
{
    size_t nlen = strlen(name);
    const char *p = q.p, *end = q.p + q.n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *ne = eq ? eq : stop;
        if ((size_t)(ne - p) == nlen && !memcmp(p, name, nlen)) {
            *out = eq ? (struct keel_str){eq + 1, (size_t)(stop - eq - 1)} : (struct keel_str){"", 0};
            return true;
        }
        p = stop + (amp ? 1 : 0);
    }
    return false;
}

/* The request's hash for consistent-hash policies; false when it has none (then: random). */
static bool request_hash(struct keel_stream *st, const struct keel_cluster *c, uint64_t *h)
{
    const struct keel_cluster_lb *lb = &c->lb;
    struct keel_str v;
    switch (lb->hash_key) {
    case KEEL_HASH_HEADER: {
        const struct keel_str *hv = lb->hash_name ? keel_http_head_get(&st->req, lb->hash_name) : NULL;
        if (!hv)
            return false;
        *h = keel_lb_hash(hv->p, hv->n);
        return true;
    }
    case KEEL_HASH_SOURCE_IP:
        *h = keel_lb_hash(st->ds->peer_ip, strlen(st->ds->peer_ip));
        return true;
    case KEEL_HASH_QUERY_PARAM:
        if (!lb->hash_name || !find_query(st->req.query, lb->hash_name, &v))
            return false;
        *h = keel_lb_hash(v.p, v.n);
        return true;
    case KEEL_HASH_COOKIE: {
        if (!lb->hash_name)
            return false;
        if (find_cookie(&st->req, lb->hash_name, &v)) {
            *h = keel_lb_hash(v.p, v.n);
            return true;
        }
        if (lb->cookie_ttl <= 0)
            return false; /* Envoy generates the cookie only when a ttl is given */
        /* Envoy's generated value: the hash of the client's address, so a client's concurrent requests agree */
        char val[17];
        snprintf(val, sizeof(val), "%016llx", (unsigned long long)keel_lb_hash(st->ds->peer, strlen(st->ds->peer)));
        *h = keel_lb_hash(val, 16);
        if (!st->set_cookie) {
            size_t cap = strlen(lb->hash_name) + (lb->cookie_path ? strlen(lb->cookie_path) : 0) + 80;
            char *sc = keel_arena_alloc(st->arena, cap);
            if (sc) {
                int n = snprintf(sc, cap, "%s=\"%s\"; Max-Age=%lld", lb->hash_name, val,
                                 (long long)(lb->cookie_ttl / 1000000000));
                if (lb->cookie_path && lb->cookie_path[0] && n > 0 && (size_t)n < cap)
                    n += snprintf(sc + n, cap - (size_t)n, "; Path=%s", lb->cookie_path);
                if (n > 0 && (size_t)n < cap)
                    snprintf(sc + n, cap - (size_t)n, "; HttpOnly");
                st->set_cookie = sc;
            }
        }
        return true;
    }
    default:
        return false;
    }
}

const struct keel_endpoint *keel_upstream_pick_request(struct keel_stream *st, const struct keel_cluster *c,
                                                       const struct keel_endpoint *last)
{
    uint64_t h = 0;
    bool has = c && (c->lb.policy == KEEL_LB_RING_HASH || c->lb.policy == KEEL_LB_MAGLEV) && request_hash(st, c, &h);
    const struct keel_retry_policy *rp = st->route ? &st->route->action->retry : NULL;
    /* Envoy's retry predicates as Istio sets them: previous_hosts unless retryIgnorePreviousHosts is false (or the
     * route hashes), previous_priorities with retryRemoteLocalities */
    const struct keel_endpoint *avoid = last && (!rp || rp->previous_hosts) ? last : NULL;
    const struct keel_endpoint *leave = last && rp && rp->previous_priorities ? last : NULL;
    return pick(st->ds->pw, c, avoid, has, h, leave);
}

size_t keel_upstream_response_fields(const struct keel_stream *st, struct keel_http_header *h, size_t cap)
{
    if (!st->set_cookie || cap == 0)
        return 0;
    h[0] = (struct keel_http_header){KEEL_STR_LIT("set-cookie"), keel_str_c(st->set_cookie)};
    return 1;
}
