/*
 * lb.c - the load balancer's pure parts: hashing, ring-hash and Maglev tables, locality priorities and weights,
 * the split of traffic between priorities, and the outlier-detection arithmetic (see proxy_int.h).
 *
 * Nothing here touches a socket, a clock or another thread: each function maps its arguments to a result, so the
 * unit tests (tests/unit/proxy/lb_test.c) check them directly, and outlier.c builds the tables once per cluster and
 * config generation on the main thread, never per request.
 *
 * - Hash: base/map.h's keel_hash (64-bit FNV-1a with a final avalanche), stable across runs and machines, so a
 *   header value always lands on the same endpoint of the same endpoint set.
 * - Ring hash (Envoy's RING_HASH): each endpoint gets a share of at least `min_size` points on a 64-bit ring in
 *   proportion to its weight (at least one point); a request hash goes to the first point at or after it. An
 *   ejected endpoint is skipped by walking on to the next point, which is exactly the ring the healthy endpoints
 *   would build: only the ejected endpoint's keys move.
 * - Maglev (Envoy's MAGLEV): a prime-sized lookup table filled from each endpoint's permutation (offset, skip),
 *   endpoints taking turns in proportion to their weights; a request hash picks table[h % size].
 * - Locality (Istio's ApplyLocalityLoadBalancer): with `distribute`, the first rule whose `from` matches the
 *   proxy's locality gives each endpoint locality a share of the traffic (endpoints of localities it does not name
 *   get none); otherwise, when failover applies (outlier detection configured), each endpoint gets a priority by
 *   how much of the proxy's region/zone/subzone it shares (0 = all, 1 = region and zone, 2 = region, 3 = none,
 *   4 = none and not the failover target of the proxy's region), then the used priorities are renumbered 0..n-1.
 *   failoverPriority ranks by how many of the listed labels, in order, equal the proxy's.
 * - Priority load (Envoy's priority levels): a priority takes min(100, 1.4 x its healthy percentage) of the
 *   traffic, the rest spills to the next; when all of them together are below 100 the loads are normalised.
 */
#include "proxy/proxy_int.h"

#include "base/err.h"
#include "base/map.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t keel_lb_hash(const void *p, size_t n)
{
    return keel_hash(p, n); /* base/map.h: FNV-1a with a final avalanche */
}

/* ---- ring hash ------------------------------------------------------------------------------------------------ */

struct ring_point {
    uint64_t hash;
    uint32_t host;
};

static int cmp_point(const void *a, const void *b)
{
    const struct ring_point *x = a, *y = b;
    if (x->hash != y->hash)
        return x->hash < y->hash ? -1 : 1;
    return (x->host > y->host) - (x->host < y->host);
}

int keel_lb_ring_build(struct keel_lb_ring *r, const char *const *keys, const uint32_t *weights, size_t n,
                       uint64_t min_size)
{
    memset(r, 0, sizeof(*r));
    if (n == 0)
        return 0;
    if (min_size < n)
        min_size = n;
    if (min_size > KEEL_LB_RING_MAX)
        min_size = KEEL_LB_RING_MAX;
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += weights && weights[i] ? weights[i] : (weights ? 0 : 1);
    if (total == 0)
        return 0;
    /* points per endpoint: ceil(min_size * w / total), at least one for a weighted endpoint */
    uint64_t npoints = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t w = weights ? weights[i] : 1;
        if (w)
            npoints += (min_size * w + total - 1) / total;
    }
    if (npoints > KEEL_LB_RING_MAX * 2)
        return KEEL_ETOOBIG;
    struct ring_point *pts = malloc(npoints * sizeof(*pts));
    if (!pts)
        return KEEL_ENOMEM;
    size_t k = 0;
    char buf[KEEL_ADDR_STRLEN + 24];
    for (size_t i = 0; i < n; i++) {
        uint64_t w = weights ? weights[i] : 1;
        uint64_t reps = w ? (min_size * w + total - 1) / total : 0;
        size_t klen = strlen(keys[i]);
        if (klen > KEEL_ADDR_STRLEN)
            klen = KEEL_ADDR_STRLEN;
        memcpy(buf, keys[i], klen);
        for (uint64_t j = 0; j < reps; j++) {
            int m = snprintf(buf + klen, sizeof(buf) - klen, "_%llu", (unsigned long long)j);
            pts[k].hash = keel_lb_hash(buf, klen + (size_t)m);
            pts[k].host = (uint32_t)i;
            k++;
        }
    }
    qsort(pts, k, sizeof(*pts), cmp_point);
    r->hash = malloc(k * sizeof(*r->hash));
    r->host = malloc(k * sizeof(*r->host));
    if (!r->hash || !r->host) {
        free(pts);
        keel_lb_ring_free(r);
        return KEEL_ENOMEM;
    }
    for (size_t i = 0; i < k; i++) {
        r->hash[i] = pts[i].hash;
        r->host[i] = pts[i].host;
    }
    r->n = k;
    free(pts);
    return 0;
}

size_t keel_lb_ring_find(const struct keel_lb_ring *r, uint64_t h)
{
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->hash[mid] < h)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == r->n ? 0 : lo;
}

void keel_lb_ring_free(struct keel_lb_ring *r)
{
    free(r->hash);
    free(r->host);
    memset(r, 0, sizeof(*r));
}

/* ---- maglev ---------------------------------------------------------------------------------------------------- */

int keel_lb_maglev_build(struct keel_lb_maglev *m, const char *const *keys, const uint32_t *weights, size_t n,
                         uint64_t size)
{
    memset(m, 0, sizeof(*m));
    if (n == 0)
        return 0;
    if (size < 2 || size > KEEL_LB_MAGLEV_MAX)
        return KEEL_EINVAL;
    uint32_t wmax = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t w = weights ? weights[i] : 1;
        if (w > wmax)
            wmax = w;
    }
    if (!wmax)
        return 0;
    uint32_t *table = malloc(size * sizeof(*table));
    uint64_t *offset = malloc(n * sizeof(*offset));
    uint64_t *skip = malloc(n * sizeof(*skip));
    uint64_t *next = calloc(n, sizeof(*next));
    uint64_t *acc = calloc(n, sizeof(*acc));
    if (!table || !offset || !skip || !next || !acc) {
        free(table);
        free(offset);
        free(skip);
        free(next);
        free(acc);
        return KEEL_ENOMEM;
    }
    for (uint64_t i = 0; i < size; i++)
        table[i] = UINT32_MAX;
    for (size_t i = 0; i < n; i++) {
        size_t klen = strlen(keys[i]);
        uint64_t h = keel_lb_hash(keys[i], klen);
        offset[i] = h % size;
        skip[i] = (keel_lb_hash(&h, sizeof(h)) % (size - 1)) + 1;
    }
    uint64_t filled = 0;
    while (filled < size) {
        for (size_t i = 0; i < n && filled < size; i++) {
            uint32_t w = weights ? weights[i] : 1;
            acc[i] += w;
            if (acc[i] < wmax)
                continue; /* a lighter endpoint takes a turn every wmax/w rounds */
            acc[i] -= wmax;
            uint64_t c;
            do {
                c = (offset[i] + next[i] * skip[i]) % size;
                next[i]++;
            } while (table[c] != UINT32_MAX);
            table[c] = (uint32_t)i;
            filled++;
        }
    }
    free(offset);
    free(skip);
    free(next);
    free(acc);
    m->table = table;
    m->size = size;
    return 0;
}

void keel_lb_maglev_free(struct keel_lb_maglev *m)
{
    free(m->table);
    memset(m, 0, sizeof(*m));
}

/* ---- locality ------------------------------------------------------------------------------------------------- */

/* Splits "region/zone/subzone" (any part may be missing) into three slices. */
static void split_locality(const char *s, struct keel_str part[3])
{
    for (int i = 0; i < 3; i++)
        part[i] = (struct keel_str){"", 0};
    if (!s)
        return;
    for (int i = 0; i < 3; i++) {
        const char *slash = i < 2 ? strchr(s, '/') : NULL;
        size_t len = slash ? (size_t)(slash - s) : strlen(s);
        part[i] = (struct keel_str){s, len};
        if (!slash)
            return;
        s = slash + 1;
    }
}

static bool part_eq(struct keel_str a, struct keel_str b)
{
    return a.n == b.n && memcmp(a.p, b.p, a.n) == 0;
}

bool keel_lb_locality_matches(const char *locality, const char *pattern)
{
    /* Istio's LocalityMatch: pattern parts are compared in order; "*" matches the rest */
    struct keel_str l[3], p[3];
    split_locality(locality, l);
    split_locality(pattern, p);
    for (int i = 0; i < 3; i++) {
        if (p[i].n == 1 && p[i].p[0] == '*')
            return true;
        if (p[i].n == 0)
            return true; /* pattern ends here: a prefix match */
        if (!part_eq(l[i], p[i]))
            return false;
    }
    return true;
}

static unsigned locality_priority(const char *proxy, const char *ep)
{
    struct keel_str a[3], b[3];
    split_locality(proxy, a);
    split_locality(ep, b);
    if (!part_eq(a[0], b[0]))
        return 3;
    if (!part_eq(a[1], b[1]))
        return 2;
    return part_eq(a[2], b[2]) ? 0 : 1;
}

/* The proxy's value for a failoverPriority key: its label, or the locality part for the topology keys. */
static const char *proxy_value(const struct keel_lb_proxy *px, const char *key, char *buf, size_t bufn)
{
    struct keel_str part[3];
    int k = !strcmp(key, "topology.kubernetes.io/region") ? 0
            : !strcmp(key, "topology.kubernetes.io/zone") ? 1
            : !strcmp(key, "topology.istio.io/subzone")   ? 2
                                                          : -1;
    if (k >= 0 && px->locality) {
        split_locality(px->locality, part);
        snprintf(buf, bufn, "%.*s", (int)part[k].n, part[k].p);
        return buf;
    }
    for (size_t i = 0; i < px->n_labels; i++)
        if (!strcmp(px->labels[i].key, key))
            return px->labels[i].value;
    return NULL;
}

static const char *endpoint_value(const struct keel_endpoint *e, const char *key, char *buf, size_t bufn)
{
    struct keel_str part[3];
    int k = !strcmp(key, "topology.kubernetes.io/region") ? 0
            : !strcmp(key, "topology.kubernetes.io/zone") ? 1
            : !strcmp(key, "topology.istio.io/subzone")   ? 2
                                                          : -1;
    for (size_t i = 0; i < e->n_labels; i++)
        if (!strcmp(e->labels[i].key, key))
            return e->labels[i].value;
    if (k >= 0 && e->locality) {
        split_locality(e->locality, part);
        snprintf(buf, bufn, "%.*s", (int)part[k].n, part[k].p);
        return buf;
    }
    return NULL;
}

unsigned keel_lb_locality_plan(const struct keel_cluster *c, const struct keel_lb_proxy *px, uint8_t *prio,
                               uint32_t *weight)
{
    size_t n = c->n_endpoints;
    for (size_t i = 0; i < n; i++) {
        prio[i] = 0;
        weight[i] = c->endpoints[i].weight ? c->endpoints[i].weight : 1;
    }
    const struct keel_cluster_locality *lo = &c->lb.locality;
    if (!px->locality || !px->locality[0] || !lo->enabled || n == 0)
        return 1;
    for (size_t d = 0; d < lo->n_distribute; d++) {
        const struct keel_cluster_locality_distribute *rule = &lo->distribute[d];
        if (!keel_lb_locality_matches(px->locality, rule->from))
            continue;
        /* each endpoint goes to the first `to` entry that matches it; an entry's percentage is shared by the
         * endpoints it matched in proportion to their weights; endpoints no entry matched get no traffic */
        uint64_t *share = calloc(n, sizeof(*share));
        int *which = malloc(n * sizeof(*which));
        if (!share || !which) {
            free(share);
            free(which);
            return 1;
        }
        for (size_t i = 0; i < n; i++) {
            which[i] = -1;
            for (size_t k = 0; k < rule->n_to; k++) {
                if (keel_lb_locality_matches(c->endpoints[i].locality ? c->endpoints[i].locality : "",
                                             rule->to[k].locality)) {
                    which[i] = (int)k;
                    break;
                }
            }
        }
        for (size_t k = 0; k < rule->n_to; k++) {
            uint64_t total = 0;
            for (size_t i = 0; i < n; i++)
                if (which[i] == (int)k)
                    total += weight[i];
            for (size_t i = 0; i < n; i++)
                if (which[i] == (int)k && total)
                    share[i] = (KEEL_LB_WEIGHT_SCALE * rule->to[k].weight * weight[i] + total - 1) / total;
        }
        for (size_t i = 0; i < n; i++)
            weight[i] = (uint32_t)share[i]; /* 0: not served */
        free(share);
        free(which);
        return 1;
    }
    if (!c->outlier.enabled)
        return 1; /* Istio applies failover only with outlier detection: nothing would ever fail over */
    unsigned used[256] = {0};
    char b1[128], b2[128];
    for (size_t i = 0; i < n; i++) {
        const struct keel_endpoint *e = &c->endpoints[i];
        unsigned p;
        if (lo->n_failover_priority) {
            size_t k = 0;
            for (; k < lo->n_failover_priority && k < 64; k++) {
                /* "key": the endpoint's value must be the proxy's; "key=value": it must be that value */
                const char *fp = lo->failover_priority[k], *eq = strchr(fp, '='), *a;
                char key[128];
                if (eq) {
                    snprintf(key, sizeof(key), "%.*s", (int)(eq - fp), fp);
                    a = eq + 1;
                } else {
                    snprintf(key, sizeof(key), "%s", fp);
                    a = proxy_value(px, key, b1, sizeof(b1));
                }
                const char *b = endpoint_value(e, key, b2, sizeof(b2));
                if (!a || !b || strcmp(a, b))
                    break;
            }
            p = (unsigned)(lo->n_failover_priority - k);
            if (p > 64)
                p = 64;
        } else {
            p = locality_priority(px->locality, e->locality ? e->locality : "");
            if (p == 3) {
                struct keel_str pr[3], er[3];
                split_locality(px->locality, pr);
                split_locality(e->locality ? e->locality : "", er);
                for (size_t f = 0; f < lo->n_failover; f++) {
                    if (part_eq(pr[0], keel_str_c(lo->failover[f].from))) {
                        if (!part_eq(er[0], keel_str_c(lo->failover[f].to)))
                            p = 4;
                        break;
                    }
                }
            }
        }
        prio[i] = (uint8_t)p;
        used[p] = 1;
    }
    /* renumber the priorities in use as 0..n-1 (Envoy wants no gaps) */
    unsigned map[256], levels = 0;
    for (unsigned p = 0; p < 256; p++)
        map[p] = used[p] ? levels++ : 0;
    for (size_t i = 0; i < n; i++)
        prio[i] = (uint8_t)map[prio[i]];
    return levels ? levels : 1;
}

void keel_lb_priority_load(const uint32_t *healthy, const uint32_t *total, unsigned n, uint32_t *load)
{
    uint32_t health[KEEL_LB_MAX_PRIORITIES];
    uint32_t sum = 0;
    for (unsigned p = 0; p < n; p++) {
        uint64_t h = total[p] ? (uint64_t)healthy[p] * 140 / total[p] : 0; /* overprovisioning factor 1.4 */
        health[p] = h > 100 ? 100 : (uint32_t)h;
        sum += health[p];
    }
    if (sum == 0) {
        for (unsigned p = 0; p < n; p++)
            load[p] = 0;
        return;
    }
    if (sum < 100) {
        /* not enough healthy capacity anywhere: share the traffic in proportion to health */
        uint32_t given = 0;
        int last = -1;
        for (unsigned p = 0; p < n; p++) {
            load[p] = health[p] * 100 / sum;
            given += load[p];
            if (health[p])
                last = (int)p;
        }
        if (last >= 0)
            load[last] += 100 - given;
        return;
    }
    uint32_t left = 100;
    for (unsigned p = 0; p < n; p++) {
        load[p] = health[p] < left ? health[p] : left;
        left -= load[p];
    }
}

/* ---- outlier-detection arithmetic ------------------------------------------------------------------------------- */

bool keel_lb_may_eject(uint32_t ejected, uint32_t hosts, uint32_t max_percent)
{
    /* Envoy (outlier_detection_impl.cc ejectHost): the share already ejected, before this one, must be under
     * max_ejection_percent; so the first ejection always happens, whatever the percentage */
    if (hosts == 0)
        return false;
    return (uint64_t)ejected * 100 < (uint64_t)(max_percent > 100 ? 100 : max_percent) * hosts;
}

uint64_t keel_lb_ejection_ms(uint64_t base_ms, uint32_t backoff, uint64_t max_ms)
{
    uint64_t t = base_ms * (backoff ? backoff : 1);
    if (max_ms < base_ms)
        max_ms = base_ms;
    return t < max_ms ? t : max_ms;
}

double keel_lb_warmup_factor(uint64_t age_ms, uint64_t window_ms, double min_percent, double aggression)
{
    if (!window_ms || age_ms >= window_ms)
        return 1.0;
    /* Envoy's slow start: (age / window) ^ (1 / aggression), never under minimumPercent */
    double x = (double)(age_ms ? age_ms : 1) / (double)window_ms;
    double f = aggression > 0 && aggression != 1.0 ? pow(x, 1.0 / aggression) : x;
    double floor_ = min_percent / 100.0;
    return f < floor_ ? floor_ : f;
}
