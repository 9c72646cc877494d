/*
 * outlier.c - upstream state shared by the workers: circuit-breaker counts, outlier detection, and the per-cluster
 * load-balancer tables of each config generation (see proxy_int.h).
 *
 * Envoy keeps circuit breakers per cluster per proxy and outlier detection per cluster endpoint, shared by all its
 * workers; so does keel. The design:
 *
 *   main thread                                        workers
 *   ───────────                                        ───────
 *   registry: cluster name -> keel_cluster_state       pw->upset (one reference): the view of pw->snap
 *             "cluster|ip:port" -> keel_host_state     pick: skip ejected endpoints (unless panic)
 *   publish(snapshot) ─► keel_upset: per cluster,      report: atomic consecutive counts; the worker whose
 *     its state, its endpoints' states (same objects     report reaches a threshold ejects the endpoint (CAS),
 *     as before for names that stay), locality            if maxEjectionPercent allows (CAS on the cluster's
 *     priorities/weights, ring or Maglev table            ejected count)
 *   sweep every outlierDetection.interval: return
 *     endpoints whose ejection time is over, decay the
 *     backoff of healthy ones
 *
 * - State objects are reference counted (registry, each upset that names them, and each upstream connection that
 *   counts in them), so counters survive snapshot swaps for the same cluster and endpoint, and a connection opened
 *   under the old config still decrements the count it incremented.
 * - Counting on the worker, not on the main thread: consecutive errors are atomics on the endpoint's state, so the
 *   third 503 counts as the third whichever worker saw the first two, and the ejection happens at that report,
 *   before the next request is balanced (Envoy posts to its main thread, which ejects a moment later). Nothing
 *   takes a lock on the request path.
 * - Ejection race: health goes HEALTHY -> EJECTING (CAS, one winner) -> EJECTED once the time and backoff are
 *   stored, and only the sweep (main thread) moves EJECTED -> HEALTHY; the cluster's ejected count is reserved
 *   first with a CAS loop that checks maxEjectionPercent, so two workers cannot both take the last slot.
 * - An upset is immutable: the tables (ring hash, Maglev, locality priorities) are built here once per cluster per
 *   generation, never per request, and freed by its last holder (a worker swapping configs, or the main thread).
 */
#include "proxy/stream.h"

#include "base/err.h"
#include "base/log.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct keel_upset {
    atomic_uint refs;
    struct keel_snapshot *snap; /* the upclusters' `c` live in it */
    struct keel_upcluster *v;
    size_t n;
    struct keel_map by_name; /* cluster name (the snapshot's string) -> struct keel_upcluster * */
};

struct keel_upstates {
    struct keel_loop *loop;
    struct keel_map clusters; /* name (the state's) -> struct keel_cluster_state * (one reference) */
    struct keel_map hosts;    /* key (the state's) -> struct keel_host_state * (one reference) */
    struct keel_upset *current;
    struct keel_timer sweep;
};

/* ---- references ------------------------------------------------------------------------------------------------ */

struct keel_host_state *keel_host_state_ref(struct keel_host_state *h)
{
    if (h)
        atomic_fetch_add_explicit(&h->refs, 1, memory_order_relaxed);
    return h;
}

void keel_host_state_unref(struct keel_host_state *h)
{
    if (h && atomic_fetch_sub_explicit(&h->refs, 1, memory_order_acq_rel) == 1)
        free(h);
}

struct keel_cluster_state *keel_cluster_state_ref(struct keel_cluster_state *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void keel_cluster_state_unref(struct keel_cluster_state *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        free(s);
}

struct keel_upset *keel_upset_ref(struct keel_upset *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

static void upset_free(struct keel_upset *s)
{
    for (size_t i = 0; i < s->n; i++) {
        struct keel_upcluster *u = &s->v[i];
        if (u->hosts)
            for (size_t j = 0; j < u->c->n_endpoints; j++)
                keel_host_state_unref(u->hosts[j]);
        keel_cluster_state_unref(u->cs);
        free(u->hosts);
        free(u->prio);
        free(u->weight);
        keel_lb_ring_free(&u->ring);
        keel_lb_maglev_free(&u->maglev);
    }
    free(s->v);
    keel_map_free(&s->by_name);
    keel_snapshot_unref(s->snap);
    free(s);
}

void keel_upset_unref(struct keel_upset *s)
{
    if (s && atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
        upset_free(s);
}

const struct keel_upcluster *keel_upset_cluster(const struct keel_upset *s, const struct keel_cluster *c)
{
    if (!s || !c || !c->name)
        return NULL;
    return keel_map_get(&s->by_name, c->name, strlen(c->name));
}

struct keel_host_state *keel_upcluster_host(const struct keel_upcluster *u, const struct keel_cluster *c,
                                            const struct keel_endpoint *ep)
{
    if (!u || !ep || !u->hosts)
        return NULL;
    if (u->c == c) {
        if (ep < c->endpoints || ep >= c->endpoints + c->n_endpoints)
            return NULL; /* not one of the cluster's (a passthrough endpoint) */
        return u->hosts[ep - c->endpoints];
    }
    /* a stream of an older generation: the same endpoint by address (rare: only across a config swap) */
    for (size_t i = 0; i < u->c->n_endpoints; i++)
        if (!strcmp(u->c->endpoints[i].hostport, ep->hostport))
            return u->hosts[i];
    return NULL;
}

/* ---- the registry (main thread) ------------------------------------------------------------------------------- */

static void on_sweep(struct keel_loop *loop, struct keel_timer *t);

struct keel_upstates *keel_upstates_new(struct keel_loop *loop)
{
    struct keel_upstates *u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    u->loop = loop;
    keel_map_init(&u->clusters);
    keel_map_init(&u->hosts);
    keel_timer_init(&u->sweep);
    u->sweep.data = u;
    return u;
}

static void drop_all(struct keel_map *m, bool hosts)
{
    size_t it = 0;
    const struct keel_map_slot *s;
    while ((s = keel_map_next(m, &it)) != NULL) {
        if (hosts)
            keel_host_state_unref(s->val);
        else
            keel_cluster_state_unref(s->val);
    }
    keel_map_free(m);
}

void keel_upstates_free(struct keel_upstates *u)
{
    if (!u)
        return;
    keel_timer_stop(&u->sweep);
    keel_upset_unref(u->current);
    drop_all(&u->clusters, false);
    drop_all(&u->hosts, true);
    free(u);
}

static struct keel_cluster_state *cluster_state(struct keel_upstates *u, struct keel_map *next, const char *name)
{
    size_t n = strlen(name);
    struct keel_cluster_state *s = keel_map_get(next, name, n);
    if (s)
        return s;
    s = keel_map_get(&u->clusters, name, n);
    if (s) {
        keel_cluster_state_ref(s);
    } else {
        s = calloc(1, sizeof(*s) + n + 1);
        if (!s)
            return NULL;
        atomic_init(&s->refs, 1);
        memcpy(s->name, name, n + 1);
    }
    if (keel_map_put(next, s->name, n, s, NULL) != 0) {
        keel_cluster_state_unref(s);
        return NULL;
    }
    return s;
}

static struct keel_host_state *host_state(struct keel_upstates *u, struct keel_map *next, const char *cluster,
                                          const char *hostport, uint64_t now)
{
    char key[512];
    int kn = snprintf(key, sizeof(key), "%s|%s", cluster, hostport);
    if (kn < 0 || (size_t)kn >= sizeof(key))
        return NULL;
    struct keel_host_state *h = keel_map_get(next, key, (size_t)kn);
    if (h)
        return h;
    h = keel_map_get(&u->hosts, key, (size_t)kn);
    if (h) {
        keel_host_state_ref(h);
    } else {
        h = calloc(1, sizeof(*h) + (size_t)kn + 1);
        if (!h)
            return NULL;
        atomic_init(&h->refs, 1);
        h->added_ms = now;
        memcpy(h->key, key, (size_t)kn + 1);
    }
    if (keel_map_put(next, h->key, (size_t)kn, h, NULL) != 0) {
        keel_host_state_unref(h);
        return NULL;
    }
    return h;
}

/* Builds the tables of one cluster of the new generation. */
static int build_upcluster(struct keel_upstates *u, struct keel_map *nc, struct keel_map *nh, struct keel_upcluster *uc,
                           const struct keel_cluster *c, const struct keel_lb_proxy *px, uint64_t now)
{
    uc->c = c;
    /* warmup: the endpoints a cluster has when it first appears (at the proxy's start, or a cluster new in the
     * config) are not new; only endpoints added to a cluster that exists warm up, as Envoy's slow start, which
     * counts hosts added after its load balancer was built. Those get added_ms 0. */
    uint64_t joined = keel_map_get(&u->clusters, c->name, strlen(c->name)) ? now : 0;
    uc->cs = keel_cluster_state_ref(cluster_state(u, nc, c->name));
    if (!uc->cs)
        return KEEL_ENOMEM;
    atomic_store(&uc->cs->n_hosts, (uint32_t)c->n_endpoints);
    size_t n = c->n_endpoints;
    uc->n_prio = 1;
    if (n == 0)
        return 0;
    uc->hosts = calloc(n, sizeof(*uc->hosts));
    uc->prio = calloc(n, sizeof(*uc->prio));
    uc->weight = calloc(n, sizeof(*uc->weight));
    if (!uc->hosts || !uc->prio || !uc->weight)
        return KEEL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        uc->hosts[i] = keel_host_state_ref(host_state(u, nh, c->name, c->endpoints[i].hostport, joined));
        if (!uc->hosts[i])
            return KEEL_ENOMEM;
    }
    uc->n_prio = keel_lb_locality_plan(c, px, uc->prio, uc->weight);
    if (c->lb.policy == KEEL_LB_RING_HASH || c->lb.policy == KEEL_LB_MAGLEV) {
        const char **keys = malloc(n * sizeof(*keys));
        if (!keys)
            return KEEL_ENOMEM;
        for (size_t i = 0; i < n; i++)
            keys[i] = c->endpoints[i].hostport;
        int rc = c->lb.policy == KEEL_LB_RING_HASH
                     ? keel_lb_ring_build(&uc->ring, keys, uc->weight, n, c->lb.ring_size)
                     : keel_lb_maglev_build(&uc->maglev, keys, uc->weight, n, c->lb.maglev_size);
        free(keys);
        if (rc)
            keel_log(KEEL_LOG_WARN, "cluster %s: cannot build its %s table (%s); requests are balanced at random",
                     c->name, c->lb.policy == KEEL_LB_RING_HASH ? "ring hash" : "Maglev", keel_strerror(rc));
    }
    return 0;
}

static void arm_sweep(struct keel_upstates *u)
{
    keel_timer_stop(&u->sweep);
    if (!u->current)
        return;
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < u->current->n; i++) {
        const struct keel_upcluster *uc = &u->current->v[i];
        if (uc->c->outlier.enabled && uc->cs->next_sweep_ms < next)
            next = uc->cs->next_sweep_ms;
    }
    if (next == UINT64_MAX)
        return;
    uint64_t now = keel_loop_now_ms(u->loop);
    keel_timer_start(u->loop, &u->sweep, next > now ? next - now : 0, on_sweep, u);
}

struct keel_upset *keel_upstates_publish(struct keel_upstates *u, struct keel_snapshot *snap,
                                         const struct keel_lb_proxy *px)
{
    if (!u || !snap)
        return NULL;
    uint64_t now = keel_loop_now_ms(u->loop);
    size_t n;
    const struct keel_cluster *const *cs = keel_snapshot_clusters(snap, &n);
    struct keel_upset *s = calloc(1, sizeof(*s));
    struct keel_map nc, nh;
    keel_map_init(&nc);
    keel_map_init(&nh);
    if (!s)
        goto oom;
    atomic_init(&s->refs, 1);
    keel_map_init(&s->by_name);
    s->snap = keel_snapshot_ref(snap);
    s->v = calloc(n ? n : 1, sizeof(*s->v));
    if (!s->v)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        struct keel_upcluster *uc = &s->v[s->n];
        if (build_upcluster(u, &nc, &nh, uc, cs[i], px, now) != 0) {
            s->n++; /* freed with the set */
            goto oom;
        }
        s->n++;
        if (keel_map_put(&s->by_name, cs[i]->name, strlen(cs[i]->name), uc, NULL) != 0)
            goto oom;
        struct keel_cluster_state *st = uc->cs;
        const struct keel_cluster_outlier *o = &cs[i]->outlier;
        if (o->enabled && (st->interval_ns != o->interval || !st->next_sweep_ms)) {
            st->interval_ns = o->interval;
            st->next_sweep_ms = now + (uint64_t)(o->interval / 1000000);
        }
    }
    /* endpoints that left their cluster: an ejection of theirs no longer counts against maxEjectionPercent */
    size_t it = 0;
    const struct keel_map_slot *slot;
    while ((slot = keel_map_next(&u->hosts, &it)) != NULL) {
        struct keel_host_state *h = slot->val;
        if (keel_map_get(&nh, slot->key, slot->klen))
            continue;
        int ej = KEEL_HOST_EJECTED;
        if (atomic_compare_exchange_strong(&h->health, &ej, KEEL_HOST_HEALTHY)) {
            const char *bar = strchr(h->key, '|');
            struct keel_cluster_state *st = bar ? keel_map_get(&u->clusters, h->key, (size_t)(bar - h->key)) : NULL;
            if (st)
                atomic_fetch_sub(&st->ejected, 1);
        }
    }
    drop_all(&u->clusters, false);
    drop_all(&u->hosts, true);
    u->clusters = nc;
    u->hosts = nh;
    keel_upset_unref(u->current);
    u->current = keel_upset_ref(s);
    arm_sweep(u);
    return s;
oom:
    keel_log(KEEL_LOG_ERROR, "out of memory building the upstream states of config version %llu",
             (unsigned long long)keel_snapshot_version(snap));
    drop_all(&nc, false);
    drop_all(&nh, true);
    if (s)
        upset_free(s);
    return NULL;
}

const struct keel_upcluster *keel_upstates_cluster(struct keel_upstates *u, const struct keel_cluster *c)
{
    return u ? keel_upset_cluster(u->current, c) : NULL;
}

/* ---- ejection (workers) and the sweep (main thread) ---------------------------------------------------------- */

static const char *const od_type_names[] = {"consecutive 5xx", "consecutive gateway errors",
                                            "consecutive local-origin failures"};

/* A consecutive count of hs reached its threshold (type 0: 5xx, 1: gateway, 2: local origin). */
static void threshold_reached(struct keel_pworker *pw, const struct keel_cluster *c, struct keel_cluster_state *cs,
                              struct keel_host_state *hs, int type)
{
    static const enum keel_od_stat detected[] = {KEEL_OD_DETECTED_5XX, KEEL_OD_DETECTED_GATEWAY,
                                                 KEEL_OD_DETECTED_LOCAL};
    static const enum keel_od_stat enforced[] = {KEEL_OD_ENFORCED_5XX, KEEL_OD_ENFORCED_GATEWAY,
                                                 KEEL_OD_ENFORCED_LOCAL};
    /* the count starts again whatever happens, as Envoy's does after its main thread saw the event */
    _Atomic uint32_t *counter = type == 0 ? &hs->cons_5xx : type == 1 ? &hs->cons_gateway : &hs->cons_local;
    atomic_store(counter, 0);
    if (atomic_load(&hs->health) != KEEL_HOST_HEALTHY)
        return;
    atomic_fetch_add_explicit(&cs->od[detected[type]], 1, memory_order_relaxed);
    uint32_t hosts = atomic_load(&cs->n_hosts);
    uint32_t ej = atomic_load(&cs->ejected);
    do {
        if (!keel_lb_may_eject(ej, hosts, c->outlier.max_ejection_percent)) {
            atomic_fetch_add_explicit(&cs->od[KEEL_OD_OVERFLOW], 1, memory_order_relaxed);
            keel_log(KEEL_LOG_INFO,
                     "outlier detection: %s would eject %s (%s) but maxEjectionPercent %u%% of %u endpoints allows "
                     "%u",
                     c->name, strchr(hs->key, '|') + 1, od_type_names[type], c->outlier.max_ejection_percent, hosts,
                     c->outlier.max_ejection_percent * hosts / 100);
            return;
        }
    } while (!atomic_compare_exchange_weak(&cs->ejected, &ej, ej + 1));
    int healthy = KEEL_HOST_HEALTHY;
    if (!atomic_compare_exchange_strong(&hs->health, &healthy, KEEL_HOST_EJECTING)) {
        atomic_fetch_sub(&cs->ejected, 1); /* another worker ejected it first */
        return;
    }
    uint64_t base_ms = (uint64_t)(c->outlier.base_ejection_time / 1000000);
    uint32_t backoff = atomic_load(&hs->backoff);
    uint64_t max_ms = KEEL_OUTLIER_MAX_EJECTION_MS > base_ms ? KEEL_OUTLIER_MAX_EJECTION_MS : base_ms;
    if ((uint64_t)backoff * base_ms < max_ms + base_ms)
        backoff++;
    atomic_store(&hs->backoff, backoff);
    atomic_store(&hs->ejected_ms, keel_loop_now_ms(pw->loop));
    atomic_fetch_add(&hs->ejections, 1);
    atomic_store_explicit(&hs->health, KEEL_HOST_EJECTED, memory_order_release);
    atomic_fetch_add_explicit(&cs->od[KEEL_OD_ENFORCED_TOTAL], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&cs->od[enforced[type]], 1, memory_order_relaxed);
    keel_log(KEEL_LOG_INFO, "outlier detection: %s ejected %s for %llu ms (%s)", c->name, strchr(hs->key, '|') + 1,
             (unsigned long long)keel_lb_ejection_ms(base_ms, backoff, max_ms), od_type_names[type]);
}

static void count(struct keel_pworker *pw, const struct keel_cluster *c, struct keel_cluster_state *cs,
                  struct keel_host_state *hs, _Atomic uint32_t *counter, uint32_t threshold, int type)
{
    uint32_t v = atomic_fetch_add_explicit(counter, 1, memory_order_acq_rel) + 1;
    if (threshold && v == threshold)
        threshold_reached(pw, c, cs, hs, type);
}

void keel_outlier_report_status(struct keel_pworker *pw, const struct keel_cluster *c, struct keel_cluster_state *cs,
                                struct keel_host_state *hs, int status)
{
    if (!c || !cs || !hs || !c->outlier.enabled)
        return;
    const struct keel_cluster_outlier *o = &c->outlier;
    if (status >= 500 && status <= 599) {
        if (status >= 502 && status <= 504)
            count(pw, c, cs, hs, &hs->cons_gateway, o->consecutive_gateway_errors, 1);
        else
            atomic_store(&hs->cons_gateway, 0);
        count(pw, c, cs, hs, &hs->cons_5xx, o->consecutive_5xx, 0);
    } else {
        atomic_store(&hs->cons_5xx, 0);
        atomic_store(&hs->cons_gateway, 0);
    }
}

void keel_outlier_report_local(struct keel_pworker *pw, const struct keel_cluster *c, struct keel_cluster_state *cs,
                               struct keel_host_state *hs, enum keel_outcome oc)
{
    if (!c || !cs || !hs || !c->outlier.enabled)
        return;
    const struct keel_cluster_outlier *o = &c->outlier;
    if (o->split_external_local_origin_errors) {
        if (oc == KEEL_OUTCOME_CONNECT_OK)
            atomic_store(&hs->cons_local, 0);
        else
            count(pw, c, cs, hs, &hs->cons_local, o->consecutive_local_origin_failures, 2);
        return;
    }
    /* not split: a connect failure or reset counts as a 503, a timeout as a 504 (Envoy's resultToHttpCode) */
    if (oc == KEEL_OUTCOME_CONNECT_FAILED)
        keel_outlier_report_status(pw, c, cs, hs, 503);
    else if (oc == KEEL_OUTCOME_TIMEOUT)
        keel_outlier_report_status(pw, c, cs, hs, 504);
}

static void on_sweep(struct keel_loop *loop, struct keel_timer *t)
{
    struct keel_upstates *u = t->data;
    struct keel_upset *s = u->current;
    uint64_t now = keel_loop_now_ms(loop);
    for (size_t i = 0; s && i < s->n; i++) {
        struct keel_upcluster *uc = &s->v[i];
        const struct keel_cluster *c = uc->c;
        if (!c->outlier.enabled || uc->cs->next_sweep_ms > now)
            continue;
        uint64_t base_ms = (uint64_t)(c->outlier.base_ejection_time / 1000000);
        uint64_t max_ms = KEEL_OUTLIER_MAX_EJECTION_MS > base_ms ? KEEL_OUTLIER_MAX_EJECTION_MS : base_ms;
        for (size_t j = 0; j < c->n_endpoints; j++) {
            struct keel_host_state *h = uc->hosts[j];
            int health = atomic_load_explicit(&h->health, memory_order_acquire);
            if (health == KEEL_HOST_EJECTED) {
                uint64_t since = now - atomic_load(&h->ejected_ms);
                if (since >= keel_lb_ejection_ms(base_ms, atomic_load(&h->backoff), max_ms)) {
                    atomic_store(&h->cons_5xx, 0);
                    atomic_store(&h->cons_gateway, 0);
                    atomic_store(&h->cons_local, 0);
                    atomic_store_explicit(&h->health, KEEL_HOST_HEALTHY, memory_order_release);
                    atomic_fetch_sub(&uc->cs->ejected, 1);
                    keel_log(KEEL_LOG_INFO, "outlier detection: %s returned %s to service after %llu ms", c->name,
                             c->endpoints[j].hostport, (unsigned long long)since);
                }
            } else if (health == KEEL_HOST_HEALTHY) {
                uint32_t b = atomic_load(&h->backoff);
                if (b) /* Envoy: a healthy interval shortens the next ejection */
                    atomic_compare_exchange_strong(&h->backoff, &b, b - 1);
            }
        }
        uc->cs->next_sweep_ms = now + (uint64_t)(c->outlier.interval / 1000000);
    }
    arm_sweep(u);
}

/* ---- Prometheus ------------------------------------------------------------------------------------------------- */

static const struct {
    const char *name, *type, *help;
    int od; /* enum keel_od_stat, or -1 for the computed ones below */
} od_families[] = {
    {"envoy_cluster_outlier_detection_ejections_enforced_total", "counter", "ejections enforced",
     KEEL_OD_ENFORCED_TOTAL},
    {"envoy_cluster_outlier_detection_ejections_active", "gauge", "endpoints ejected now", -1},
    {"envoy_cluster_outlier_detection_ejections_overflow", "counter",
     "ejections not made because of maxEjectionPercent", KEEL_OD_OVERFLOW},
    {"envoy_cluster_outlier_detection_ejections_enforced_consecutive_5xx", "counter", "ejections for consecutive 5xx",
     KEEL_OD_ENFORCED_5XX},
    {"envoy_cluster_outlier_detection_ejections_detected_consecutive_5xx", "counter",
     "consecutive 5xx thresholds reached", KEEL_OD_DETECTED_5XX},
    {"envoy_cluster_outlier_detection_ejections_enforced_consecutive_gateway_failure", "counter",
     "ejections for consecutive gateway errors", KEEL_OD_ENFORCED_GATEWAY},
    {"envoy_cluster_outlier_detection_ejections_detected_consecutive_gateway_failure", "counter",
     "consecutive gateway error thresholds reached", KEEL_OD_DETECTED_GATEWAY},
    {"envoy_cluster_outlier_detection_ejections_enforced_consecutive_local_origin_failure", "counter",
     "ejections for consecutive local-origin failures", KEEL_OD_ENFORCED_LOCAL},
    {"envoy_cluster_outlier_detection_ejections_detected_consecutive_local_origin_failure", "counter",
     "consecutive local-origin failure thresholds reached", KEEL_OD_DETECTED_LOCAL},
};

static const struct {
    const char *name, *help;
    int which; /* 0 cx, 1 pending, 2 rq, 3 retries */
} cb_families[] = {
    {"envoy_cluster_circuit_breakers_default_cx_open", "1 when maxConnections is reached", 0},
    {"envoy_cluster_circuit_breakers_default_rq_pending_open", "1 when http1MaxPendingRequests is reached", 1},
    {"envoy_cluster_circuit_breakers_default_rq_open", "1 when http2MaxRequests is reached", 2},
    {"envoy_cluster_circuit_breakers_default_rq_retry_open", "1 when maxRetries is reached", 3},
};

static int put_label(struct keel_buf *out, const char *family, const char *cluster)
{
    int rc = keel_buf_printf(out, "%s{cluster_name=\"", family);
    for (const char *p = cluster; !rc && *p; p++)
        rc = *p == '"' || *p == '\\' ? keel_buf_printf(out, "\\%c", *p) : keel_buf_putc(out, *p);
    return rc ? rc : keel_buf_puts(out, "\"}");
}

int keel_upstates_prometheus(struct keel_upstates *u, struct keel_buf *out)
{
    struct keel_upset *s = u ? u->current : NULL;
    if (!s)
        return 0;
    int rc = 0;
    bool any_od = false;
    for (size_t i = 0; i < s->n; i++)
        any_od |= s->v[i].c->outlier.enabled;
    for (size_t f = 0; any_od && !rc && f < sizeof(od_families) / sizeof(od_families[0]); f++) {
        rc = keel_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", od_families[f].name, od_families[f].help,
                             od_families[f].name, od_families[f].type);
        for (size_t i = 0; !rc && i < s->n; i++) {
            const struct keel_upcluster *uc = &s->v[i];
            if (!uc->c->outlier.enabled)
                continue;
            uint64_t v =
                od_families[f].od >= 0 ? atomic_load(&uc->cs->od[od_families[f].od]) : atomic_load(&uc->cs->ejected);
            rc = put_label(out, od_families[f].name, uc->c->name);
            if (!rc)
                rc = keel_buf_printf(out, " %" PRIu64 "\n", v);
        }
    }
    for (size_t f = 0; !rc && f < sizeof(cb_families) / sizeof(cb_families[0]); f++) {
        rc = keel_buf_printf(out, "# HELP %s %s\n# TYPE %s gauge\n", cb_families[f].name, cb_families[f].help,
                             cb_families[f].name);
        for (size_t i = 0; !rc && i < s->n; i++) {
            const struct keel_upcluster *uc = &s->v[i];
            const struct keel_cluster_limits *l = &uc->c->limits;
            uint32_t max = cb_families[f].which == 0   ? l->max_connections
                           : cb_families[f].which == 1 ? l->max_pending_requests
                           : cb_families[f].which == 2 ? l->max_requests
                                                       : l->max_retries;
            uint32_t now = cb_families[f].which == 0   ? atomic_load(&uc->cs->cx)
                           : cb_families[f].which == 1 ? atomic_load(&uc->cs->pending)
                           : cb_families[f].which == 2 ? atomic_load(&uc->cs->rq)
                                                       : atomic_load(&uc->cs->retries);
            rc = put_label(out, cb_families[f].name, uc->c->name);
            if (!rc)
                rc = keel_buf_printf(out, " %d\n", now >= max ? 1 : 0);
        }
    }
    return rc;
}
