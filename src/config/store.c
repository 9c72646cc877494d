/*
 * store.c - config store and Istio scoping queries (see store.h).
 *
 * Layout: per kind, a map namespace -> struct nsinfo holding a map name ->
 * entry and the namespace's resources oldest first; plus the whole kind's
 * list. Everything the queries need is precomputed at build time, so that
 * they only walk short lists and probe hash tables:
 *   - DestinationRules: per namespace a host index of the DRs visible there
 *     (tier 1) and one of the DRs exported elsewhere (tiers 2 and 3), plus
 *     the root namespace's private DRs (tier 1 for proxies in the root ns).
 *     Each index value is a dr_group: the DRs of one host, consolidated as
 *     istiod does (pilot/pkg/model/push_context.go setDestinationRules,
 *     destination_rule.go mergeDestinationRule).
 *   - EnvoyFilters: per namespace, also sorted by priority.
 *   - Services and ServiceEntries: a host index host -> list, to find a
 *     service's namespace.
 * All arrays live in the store arena; the maps' tables are malloc'd and
 * freed in keel_store_free().
 */
#include "config/store.h"

#include "base/arena.h"
#include "base/err.h"
#include "base/map.h"
#include "base/str.h"
#include "base/vec.h"
#include "config/host.h"
#include "config/load.h"
#include "config/selector.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_ROOT_NS "istio-system"
#define DEFAULT_DOMAIN "cluster.local"
#define EXPORT_TO_ANNOTATION "networking.istio.io/exportTo"

/* growable pointer list in an arena (old arrays are left to the arena) */
struct plist {
    const struct keel_resource **v;
    size_t n, cap;
};

struct entry {
    const struct keel_resource *r;
    uint64_t content; /* hash of the document */
    uint64_t gen;     /* generation of the last change */
    int64_t ts_sec;   /* creationTimestamp, when has_ts */
    int32_t ts_nsec;
    bool has_ts;
    bool dead; /* replaced by a later document with the same key */
};

/* One consolidated DestinationRule (Istio ConsolidatedDestRule). */
struct dr_cons {
    const struct keel_workload_selector *sel; /* NULL = the catch-all (selector-less) rule */
    const struct keel_resource **drs;         /* merge order */
    size_t n;
};

/* The DestinationRules of one host in one index. */
struct dr_group {
    const char *host;     /* FQDN, lower-cased */
    struct dr_cons *cons; /* selector rules in order of appearance, then the catch-all */
    size_t ncons;
    const char *const *export_to; /* exported index: exportTo of the first rule that has one */
    size_t n_export_to;
};

struct nsinfo {
    const char *ns;                      /* NULL = cluster-scoped */
    struct keel_map names;               /* name -> struct entry * */
    struct plist list;                   /* oldest first */
    struct plist ef_by_prio;             /* EnvoyFilter: priority ascending, then oldest first */
    struct keel_host_index *dr_local;    /* DestinationRule: visible in this namespace */
    struct keel_host_index *dr_exported; /* DestinationRule: exported beyond it */
};

struct kindinfo {
    struct keel_map nss; /* namespace ("" = cluster-scoped) -> struct nsinfo * */
    const struct keel_resource **all;
    size_t n;
};

struct keel_store {
    struct keel_arena *arena;
    struct keel_diags diags;
    struct keel_mesh_defaults md;
    uint64_t generation;
    size_t removed;
    struct kindinfo kinds[KEEL_KIND__COUNT];
    struct keel_host_index *dr_root_local; /* root namespace's private DRs */
    struct keel_host_index *services;      /* host -> struct plist * of Services, then ServiceEntries */
};

/* ---- small helpers ------------------------------------------------------------ */

static bool str_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static bool list_has(const char *const *v, size_t n, const char *x)
{
    for (size_t i = 0; i < n; i++)
        if (str_eq(v[i], x))
            return true;
    return false;
}

static void plist_push(struct keel_arena *a, struct plist *l, const struct keel_resource *r)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        const struct keel_resource **v = keel_arena_xalloc(a, cap * sizeof(*v));
        if (l->n)
            memcpy(v, l->v, l->n * sizeof(*v));
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = r;
}

static void xmap_put(struct keel_map *m, const char *key, size_t klen, void *val)
{
    if (keel_map_put(m, key, klen, val, NULL) != 0) {
        fprintf(stderr, "keel: out of memory building the config store\n");
        abort();
    }
}

/* what keel_host_index_build() accepts; validation rejects the rest */
static bool host_ok(const char *h)
{
    if (keel_cstr_empty(h))
        return false;
    return h[0] != '*' || h[1] == '\0' || (h[1] == '.' && h[2] != '\0');
}

static bool valid_kind(int kind)
{
    return kind > KEEL_KIND_NONE && kind < KEEL_KIND__COUNT;
}

/* ---- content hash ------------------------------------------------------------- */

static uint64_t fmix(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    k *= 0xc4ceb9fe1a85ec53ULL;
    k ^= k >> 33;
    return k;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
    return fmix(h ^ (v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2)));
}

/* Order of keys in a mapping does not change the hash; everything else does. */
static uint64_t node_hash(const struct keel_node *n)
{
    if (!n)
        return 0x6e6f6e65ULL;
    uint64_t h = fmix((uint64_t)n->type + 1);
    switch (n->type) {
    case KEEL_NODE_NULL:
        break;
    case KEEL_NODE_BOOL:
        h = mix(h, n->v.b);
        break;
    case KEEL_NODE_INT:
        h = mix(h, (uint64_t)n->v.i);
        break;
    case KEEL_NODE_FLOAT: {
        uint64_t bits;
        memcpy(&bits, &n->v.d, sizeof(bits));
        h = mix(h, bits);
        break;
    }
    case KEEL_NODE_STRING:
        h = mix(h, keel_hash(n->str, n->len));
        break;
    case KEEL_NODE_SEQ:
        for (size_t i = 0; i < n->n; i++)
            h = mix(h, node_hash(n->c.items[i]));
        h = mix(h, n->n);
        break;
    case KEEL_NODE_MAP: {
        uint64_t sum = 0;
        for (size_t i = 0; i < n->n; i++) {
            const struct keel_pair *p = &n->c.pairs[i];
            sum += fmix(mix(keel_hash(p->key->str, p->key->len), node_hash(p->value)));
        }
        h = mix(mix(h, sum), n->n);
        break;
    }
    }
    return h;
}

/* ---- creationTimestamp -------------------------------------------------------- */

static bool digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*p)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *p += n;
    *out = v;
    return true;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* RFC 3339: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM) */
static bool parse_time(const char *s, int64_t *sec, int32_t *nsec)
{
    if (!s)
        return false;
    const char *p = s;
    int y, mo, d, h, mi, se;
    if (!digits(&p, 4, &y) || *p++ != '-' || !digits(&p, 2, &mo) || *p++ != '-' || !digits(&p, 2, &d))
        return false;
    if (*p != 'T' && *p != 't' && *p != ' ')
        return false;
    p++;
    if (!digits(&p, 2, &h) || *p++ != ':' || !digits(&p, 2, &mi) || *p++ != ':' || !digits(&p, 2, &se))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60)
        return false;
    int32_t ns = 0;
    if (*p == '.') {
        p++;
        int nd = 0;
        for (; *p >= '0' && *p <= '9'; p++, nd++)
            if (nd < 9)
                ns = ns * 10 + (*p - '0');
        if (nd == 0)
            return false;
        for (; nd < 9; nd++)
            ns *= 10;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (!digits(&p, 2, &oh) || *p++ != ':' || !digits(&p, 2, &om))
            return false;
        off = sign * ((int64_t)oh * 3600 + om * 60);
    } else {
        return false;
    }
    if (*p)
        return false;
    *sec = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se - off;
    *nsec = ns;
    return true;
}

/* Istio's "oldest wins" order: timestamped first by time then ns/name; then
 * the others in reading order. */
static int cmp_age(const void *pa, const void *pb)
{
    const struct entry *a = *(const struct entry *const *)pa, *b = *(const struct entry *const *)pb;
    if (a->has_ts != b->has_ts)
        return a->has_ts ? -1 : 1;
    if (a->has_ts) {
        if (a->ts_sec != b->ts_sec)
            return a->ts_sec < b->ts_sec ? -1 : 1;
        if (a->ts_nsec != b->ts_nsec)
            return a->ts_nsec < b->ts_nsec ? -1 : 1;
        int c = strcmp(a->r->ns ? a->r->ns : "", b->r->ns ? b->r->ns : "");
        if (c)
            return c;
        c = strcmp(a->r->meta.name, b->r->meta.name);
        if (c)
            return c;
    }
    return a->r->seq < b->r->seq ? -1 : a->r->seq > b->r->seq;
}

/* ---- namespace tables --------------------------------------------------------- */

static struct nsinfo *find_ns(const struct keel_store *s, int kind, const char *ns)
{
    if (!valid_kind(kind))
        return NULL;
    const char *k = ns ? ns : "";
    return keel_map_get(&s->kinds[kind].nss, k, strlen(k));
}

static struct nsinfo *get_ns(struct keel_store *s, int kind, const char *ns)
{
    struct nsinfo *ni = find_ns(s, kind, ns);
    if (ni)
        return ni;
    ni = keel_arena_xalloc(s->arena, sizeof(*ni));
    ni->ns = ns ? keel_arena_strdup(s->arena, ns) : NULL;
    keel_map_init(&ni->names);
    const char *k = ni->ns ? ni->ns : "";
    xmap_put(&s->kinds[kind].nss, k, strlen(k), ni);
    return ni;
}

static struct entry *find_entry(const struct keel_store *s, int kind, const char *ns, const char *name)
{
    struct nsinfo *ni = find_ns(s, kind, ns);
    if (!ni || !name)
        return NULL;
    return keel_map_get(&ni->names, name, strlen(name));
}

/* ---- mesh defaults ------------------------------------------------------------ */

void keel_mesh_defaults_from_mesh(struct keel_mesh_defaults *md, const struct keel_mesh_config *mesh)
{
    memset(md, 0, sizeof(*md));
    if (!mesh)
        return;
    md->root_ns = mesh->root_namespace;
    md->default_service_export_to = (const char *const *)mesh->default_service_export_to;
    md->n_default_service_export_to = mesh->n_default_service_export_to;
    md->default_vs_export_to = (const char *const *)mesh->default_virtual_service_export_to;
    md->n_default_vs_export_to = mesh->n_default_virtual_service_export_to;
    md->default_dr_export_to = (const char *const *)mesh->default_destination_rule_export_to;
    md->n_default_dr_export_to = mesh->n_default_destination_rule_export_to;
}

static void copy_list(struct keel_arena *a, const char *const *src, size_t n, const char *const **dst, size_t *dn)
{
    static const char *const star[] = {"*"};
    if (n == 0) {
        *dst = star;
        *dn = 1;
        return;
    }
    const char **v = keel_arena_xalloc(a, n * sizeof(*v));
    for (size_t i = 0; i < n; i++)
        v[i] = keel_arena_strdup(a, src[i] ? src[i] : "");
    *dst = v;
    *dn = n;
}

static void copy_defaults(struct keel_store *s, const struct keel_mesh_defaults *in)
{
    struct keel_mesh_defaults def = {0};
    if (!in)
        in = &def;
    struct keel_mesh_defaults *md = &s->md;
    md->root_ns = keel_arena_strdup(s->arena, keel_cstr_empty(in->root_ns) ? DEFAULT_ROOT_NS : in->root_ns);
    md->domain = keel_arena_strdup(s->arena, keel_cstr_empty(in->domain) ? DEFAULT_DOMAIN : in->domain);
    copy_list(s->arena, in->default_service_export_to, in->n_default_service_export_to, &md->default_service_export_to,
              &md->n_default_service_export_to);
    copy_list(s->arena, in->default_vs_export_to, in->n_default_vs_export_to, &md->default_vs_export_to,
              &md->n_default_vs_export_to);
    copy_list(s->arena, in->default_dr_export_to, in->n_default_dr_export_to, &md->default_dr_export_to,
              &md->n_default_dr_export_to);
}

static bool lists_equal(const char *const *a, size_t na, const char *const *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (!str_eq(a[i], b[i]))
            return false;
    return true;
}

static bool defaults_equal(const struct keel_mesh_defaults *a, const struct keel_mesh_defaults *b)
{
    return str_eq(a->root_ns, b->root_ns) && str_eq(a->domain, b->domain) &&
           lists_equal(a->default_service_export_to, a->n_default_service_export_to, b->default_service_export_to,
                       b->n_default_service_export_to) &&
           lists_equal(a->default_vs_export_to, a->n_default_vs_export_to, b->default_vs_export_to,
                       b->n_default_vs_export_to) &&
           lists_equal(a->default_dr_export_to, a->n_default_dr_export_to, b->default_dr_export_to,
                       b->n_default_dr_export_to);
}

/* ---- DestinationRule indexes ---------------------------------------------------- */

static const struct keel_destination_rule *dr_spec(const struct keel_resource *r)
{
    return (const struct keel_destination_rule *)r->spec;
}

/* In the index of its own namespace (Istio namespaceLocal): selector DRs,
 * empty exportTo, or `*`, `.`, own namespace. */
static bool dr_is_local(const struct keel_resource *r)
{
    const struct keel_destination_rule *d = dr_spec(r);
    if (d->workload_selector || d->n_export_to == 0)
        return true;
    return list_has(d->export_to, d->n_export_to, "*") || list_has(d->export_to, d->n_export_to, ".") ||
           list_has(d->export_to, d->n_export_to, r->ns);
}

/* Istio isPrivateOnly: not in the exported index. */
static bool dr_is_private_only(const struct keel_store *s, const struct keel_resource *r)
{
    const struct keel_destination_rule *d = dr_spec(r);
    if (d->workload_selector)
        return true;
    if (d->n_export_to == 0)
        return list_has(s->md.default_dr_export_to, s->md.n_default_dr_export_to, ".");
    return d->n_export_to == 1 && (str_eq(d->export_to[0], ".") || str_eq(d->export_to[0], r->ns));
}

static bool same_selector(const struct keel_workload_selector *a, const struct keel_workload_selector *b)
{
    return keel_labels_equal(a->match_labels, a->n_match_labels, b->match_labels, b->n_match_labels);
}

/* Consolidates the members of one host (Istio order: selector DRs first,
 * then oldest first) the way mergeDestinationRule does: DRs with equal
 * selectors merge, and selector-less DRs merge into every selector rule
 * before them as well as forming the catch-all. */
static void consolidate(struct keel_arena *a, struct dr_group *g, const struct keel_resource **m, size_t n)
{
    size_t nless = 0;
    for (size_t i = 0; i < n; i++)
        nless += dr_spec(m[i])->workload_selector == NULL;
    g->cons = keel_arena_xalloc(a, (n + 1) * sizeof(*g->cons));
    g->ncons = 0;
    for (size_t i = 0; i < n; i++) {
        const struct keel_workload_selector *sel = dr_spec(m[i])->workload_selector;
        if (!sel)
            continue;
        bool seen = false;
        for (size_t c = 0; c < g->ncons && !seen; c++)
            seen = same_selector(g->cons[c].sel, sel);
        if (seen)
            continue;
        struct dr_cons *c = &g->cons[g->ncons++];
        c->sel = sel;
        c->drs = keel_arena_xalloc(a, (n + 1) * sizeof(*c->drs));
        for (size_t j = i; j < n; j++) {
            const struct keel_workload_selector *sj = dr_spec(m[j])->workload_selector;
            if (sj && same_selector(sj, sel))
                c->drs[c->n++] = m[j];
        }
        for (size_t j = 0; j < n; j++)
            if (!dr_spec(m[j])->workload_selector)
                c->drs[c->n++] = m[j];
    }
    if (nless) {
        struct dr_cons *c = &g->cons[g->ncons++];
        c->sel = NULL;
        c->drs = keel_arena_xalloc(a, nless * sizeof(*c->drs));
        for (size_t j = 0; j < n; j++)
            if (!dr_spec(m[j])->workload_selector)
                c->drs[c->n++] = m[j];
    }
    g->export_to = NULL;
    g->n_export_to = 0;
    for (size_t j = 0; j < n; j++) {
        const struct keel_destination_rule *d = dr_spec(m[j]);
        if (!d->workload_selector && d->n_export_to) {
            g->export_to = (const char *const *)d->export_to;
            g->n_export_to = d->n_export_to;
            break;
        }
    }
}

/* Host index over the DRs m[0..n) (already in Istio order), grouped by host. */
static struct keel_host_index *build_dr_index(struct keel_store *s, const struct keel_resource **m, size_t n)
{
    if (n == 0)
        return NULL;
    struct keel_map hosts;
    keel_map_init(&hosts);
    struct dr_group *groups = keel_arena_xalloc(s->arena, n * sizeof(*groups));
    size_t *gi = keel_arena_xalloc(s->arena, n * sizeof(*gi));
    size_t *count = keel_arena_xalloc(s->arena, n * sizeof(*count));
    size_t ng = 0;
    for (size_t i = 0; i < n; i++) {
        const char *h =
            keel_arena_strdup_lower(s->arena, keel_host_fqdn(s->arena, dr_spec(m[i])->host, m[i]->ns, s->md.domain));
        void *v = keel_map_get(&hosts, h, strlen(h));
        size_t g = v ? (size_t)(uintptr_t)v - 1 : ng;
        if (!v) {
            groups[ng].host = h;
            xmap_put(&hosts, h, strlen(h), (void *)(uintptr_t)(++ng));
        }
        gi[i] = g;
        count[g]++;
    }
    keel_map_free(&hosts);
    struct keel_host_entry *ents = keel_arena_xalloc(s->arena, ng * sizeof(*ents));
    const struct keel_resource **tmp = keel_arena_xalloc(s->arena, n * sizeof(*tmp));
    for (size_t g = 0; g < ng; g++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (gi[i] == g)
                tmp[k++] = m[i];
        consolidate(s->arena, &groups[g], tmp, k);
        ents[g].host = groups[g].host;
        ents[g].value = &groups[g];
    }
    struct keel_host_index *ix;
    int rc = keel_host_index_build(s->arena, ents, ng, &ix);
    if (rc == KEEL_ENOMEM) {
        fprintf(stderr, "keel: out of memory building the config store\n");
        abort();
    }
    return rc ? NULL : ix; /* EINVAL: malformed hosts never pass validation */
}

static void build_dr_indexes(struct keel_store *s)
{
    struct kindinfo *ki = &s->kinds[KEEL_KIND_DESTINATION_RULE];
    size_t it = 0;
    const struct keel_map_slot *sl;
    const struct keel_resource **local = NULL, **exported = NULL, **rootp = NULL;
    size_t cap = 0;
    while ((sl = keel_map_next(&ki->nss, &it))) {
        struct nsinfo *ni = sl->val;
        if (ni->list.n > cap) {
            cap = ni->list.n;
            local = keel_arena_xalloc(s->arena, cap * sizeof(*local));
            exported = keel_arena_xalloc(s->arena, cap * sizeof(*exported));
            rootp = keel_arena_xalloc(s->arena, cap * sizeof(*rootp));
        }
        bool is_root = str_eq(ni->ns, s->md.root_ns);
        size_t nl = 0, ne = 0, nr = 0;
        /* Istio sorts DRs with a workloadSelector first, then oldest first */
        for (int pass = 0; pass < 2; pass++) {
            for (size_t i = 0; i < ni->list.n; i++) {
                const struct keel_resource *r = ni->list.v[i];
                if ((dr_spec(r)->workload_selector != NULL) != (pass == 0) || !host_ok(dr_spec(r)->host))
                    continue;
                if (dr_is_local(r))
                    local[nl++] = r;
                if (!dr_is_private_only(s, r))
                    exported[ne++] = r;
                else if (is_root)
                    rootp[nr++] = r;
            }
        }
        ni->dr_local = build_dr_index(s, local, nl);
        ni->dr_exported = build_dr_index(s, exported, ne);
        if (is_root)
            s->dr_root_local = build_dr_index(s, rootp, nr);
    }
}

/* ---- services ----------------------------------------------------------------- */

static void add_service_host(struct keel_store *s, struct keel_map *m, struct keel_vec *order, const char *host,
                             const struct keel_resource *r)
{
    const char *h = keel_arena_strdup_lower(s->arena, host);
    struct plist *l = keel_map_get(m, h, strlen(h));
    if (!l) {
        l = keel_arena_xalloc(s->arena, sizeof(*l));
        xmap_put(m, h, strlen(h), l);
        struct keel_host_entry *e = keel_vec_push(order);
        if (!e) {
            fprintf(stderr, "keel: out of memory building the config store\n");
            abort();
        }
        e->host = h;
        e->value = l;
    }
    if (l->n == 0 || l->v[l->n - 1] != r)
        plist_push(s->arena, l, r);
}

static void build_services(struct keel_store *s)
{
    struct keel_map m;
    keel_map_init(&m);
    struct keel_vec order;
    keel_vec_init(&order, sizeof(struct keel_host_entry));
    const struct kindinfo *svc = &s->kinds[KEEL_KIND_SERVICE];
    for (size_t i = 0; i < svc->n; i++) {
        const struct keel_resource *r = svc->all[i];
        const char *h =
            keel_arena_printf(s->arena, "%s.%s.svc.%s", r->meta.name, r->ns ? r->ns : "default", s->md.domain);
        add_service_host(s, &m, &order, h, r);
    }
    const struct kindinfo *se = &s->kinds[KEEL_KIND_SERVICE_ENTRY];
    for (size_t i = 0; i < se->n; i++) {
        const struct keel_resource *r = se->all[i];
        const struct keel_service_entry *spec = r->spec;
        for (size_t j = 0; j < spec->n_hosts; j++)
            if (host_ok(spec->hosts[j]))
                add_service_host(s, &m, &order, keel_host_fqdn(s->arena, spec->hosts[j], r->ns, s->md.domain), r);
    }
    keel_map_free(&m);
    int rc = keel_host_index_build(s->arena, order.items, order.len, &s->services);
    keel_vec_free(&order);
    if (rc == KEEL_ENOMEM) {
        fprintf(stderr, "keel: out of memory building the config store\n");
        abort();
    }
}

/* ---- build -------------------------------------------------------------------- */

static int cmp_prio(const void *pa, const void *pb)
{
    const struct keel_resource *a = *(const struct keel_resource *const *)pa;
    const struct keel_resource *b = *(const struct keel_resource *const *)pb;
    int64_t x = ((const struct keel_envoy_filter *)a->spec)->priority;
    int64_t y = ((const struct keel_envoy_filter *)b->spec)->priority;
    if (x != y)
        return x < y ? -1 : 1;
    return 0;
}

static void sort_envoy_filters(struct keel_store *s)
{
    struct kindinfo *ki = &s->kinds[KEEL_KIND_ENVOY_FILTER];
    size_t it = 0;
    const struct keel_map_slot *sl;
    while ((sl = keel_map_next(&ki->nss, &it))) {
        struct nsinfo *ni = sl->val;
        for (size_t i = 0; i < ni->list.n; i++)
            plist_push(s->arena, &ni->ef_by_prio, ni->list.v[i]);
        /* stable: insertion sort keeps oldest-first among equal priorities */
        for (size_t i = 1; i < ni->ef_by_prio.n; i++) {
            const struct keel_resource *r = ni->ef_by_prio.v[i];
            size_t j = i;
            while (j > 0 && cmp_prio(&ni->ef_by_prio.v[j - 1], &r) > 0) {
                ni->ef_by_prio.v[j] = ni->ef_by_prio.v[j - 1];
                j--;
            }
            ni->ef_by_prio.v[j] = r;
        }
    }
}

static void warn_duplicate(struct keel_store *s, const struct keel_resource *old, const struct keel_resource *r)
{
    size_t from = keel_diags_count(&s->diags);
    keel_diags_add(&s->diags, KEEL_SEV_WARNING, &r->loc, NULL,
                   "%s %s/%s is defined more than once; this definition replaces the one at %s:%u", r->kind->kind,
                   r->ns ? r->ns : "", r->meta.name, old->loc.file ? old->loc.file : "<input>",
                   (unsigned)old->loc.line);
    keel_diags_set_resource(&s->diags, from, r->kind->kind, r->ns, r->meta.name);
}

struct keel_store *keel_store_build(const struct keel_loadset *ls, const struct keel_mesh_defaults *md,
                                    const struct keel_store *prev)
{
    struct keel_store *s = calloc(1, sizeof(*s));
    if (!s) {
        fprintf(stderr, "keel: out of memory building the config store\n");
        abort();
    }
    s->arena = keel_arena_new(0);
    if (!s->arena) {
        fprintf(stderr, "keel: out of memory building the config store\n");
        abort();
    }
    keel_diags_init(&s->diags);
    for (int k = 0; k < KEEL_KIND__COUNT; k++)
        keel_map_init(&s->kinds[k].nss);
    copy_defaults(s, md);

    /* 1. entries, keyed; a later duplicate replaces the earlier one */
    size_t n = keel_loadset_count(ls);
    struct entry *ents = keel_arena_xalloc(s->arena, (n ? n : 1) * sizeof(*ents));
    for (size_t i = 0; i < n; i++) {
        const struct keel_resource *r = keel_loadset_at(ls, i);
        if (r->status != KEEL_RES_VALID || !r->kind || !valid_kind(r->kind->id) || keel_cstr_empty(r->meta.name))
            continue;
        struct entry *e = &ents[i];
        e->r = r;
        e->content = node_hash(r->node);
        e->has_ts = parse_time(r->meta.creation_timestamp, &e->ts_sec, &e->ts_nsec);
        struct nsinfo *ni = get_ns(s, r->kind->id, r->ns);
        struct entry *old = keel_map_get(&ni->names, r->meta.name, strlen(r->meta.name));
        if (old) {
            old->dead = true;
            warn_duplicate(s, old->r, r);
        }
        xmap_put(&ni->names, r->meta.name, strlen(r->meta.name), e);
    }

    /* 2. per-kind order, and per-namespace lists in that order */
    struct entry **tmp = keel_arena_xalloc(s->arena, (n ? n : 1) * sizeof(*tmp));
    for (int k = 1; k < KEEL_KIND__COUNT; k++) {
        struct kindinfo *ki = &s->kinds[k];
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (ents[i].r && !ents[i].dead && ents[i].r->kind->id == k)
                tmp[m++] = &ents[i];
        qsort(tmp, m, sizeof(*tmp), cmp_age);
        ki->all = keel_arena_xalloc(s->arena, (m ? m : 1) * sizeof(*ki->all));
        ki->n = m;
        for (size_t i = 0; i < m; i++) {
            ki->all[i] = tmp[i]->r;
            plist_push(s->arena, &find_ns(s, k, tmp[i]->r->ns)->list, tmp[i]->r);
        }
    }

    /* 3. generations */
    bool changed = !prev || !defaults_equal(&s->md, &prev->md);
    uint64_t gen = prev ? prev->generation + 1 : 1;
    for (size_t i = 0; i < n; i++) {
        struct entry *e = &ents[i];
        if (!e->r || e->dead)
            continue;
        const struct entry *pe = prev ? find_entry(prev, e->r->kind->id, e->r->ns, e->r->meta.name) : NULL;
        if (pe && pe->content == e->content) {
            e->gen = pe->gen;
        } else {
            e->gen = gen;
            changed = true;
        }
    }
    if (prev) {
        for (int k = 1; k < KEEL_KIND__COUNT; k++)
            for (size_t i = 0; i < prev->kinds[k].n; i++) {
                const struct keel_resource *r = prev->kinds[k].all[i];
                if (!find_entry(s, k, r->ns, r->meta.name))
                    s->removed++;
            }
        changed = changed || s->removed;
    }
    s->generation = prev ? (changed ? gen : prev->generation) : 1;

    /* 4. query indexes */
    build_dr_indexes(s);
    sort_envoy_filters(s);
    build_services(s);
    return s;
}

void keel_store_free(struct keel_store *s)
{
    if (!s)
        return;
    for (int k = 0; k < KEEL_KIND__COUNT; k++) {
        size_t it = 0;
        const struct keel_map_slot *sl;
        while ((sl = keel_map_next(&s->kinds[k].nss, &it)))
            keel_map_free(&((struct nsinfo *)sl->val)->names);
        keel_map_free(&s->kinds[k].nss);
    }
    keel_diags_free(&s->diags);
    keel_arena_free(s->arena);
    free(s);
}

const struct keel_diags *keel_store_diags(const struct keel_store *s)
{
    return &s->diags;
}

const struct keel_mesh_defaults *keel_store_mesh_defaults(const struct keel_store *s)
{
    return &s->md;
}

uint64_t keel_store_generation(const struct keel_store *s)
{
    return s->generation;
}

size_t keel_store_removed(const struct keel_store *s)
{
    return s->removed;
}

uint64_t keel_store_changed_at(const struct keel_store *s, const struct keel_resource *r)
{
    if (!r || !r->kind)
        return 0;
    const struct entry *e = find_entry(s, r->kind->id, r->ns, r->meta.name);
    return e && e->r == r ? e->gen : 0;
}

/* ---- lookup ------------------------------------------------------------------- */

static const struct keel_resource *const empty_list[1] = {NULL};

const struct keel_resource *const *keel_store_list(const struct keel_store *s, enum keel_kind kind, size_t *n)
{
    if (!valid_kind((int)kind)) {
        *n = 0;
        return empty_list;
    }
    *n = s->kinds[kind].n;
    return s->kinds[kind].all;
}

const struct keel_resource *const *keel_store_list_ns(const struct keel_store *s, enum keel_kind kind, const char *ns,
                                                      size_t *n)
{
    const struct nsinfo *ni = find_ns(s, (int)kind, ns);
    if (!ni || ni->list.n == 0) {
        *n = 0;
        return empty_list;
    }
    *n = ni->list.n;
    return ni->list.v;
}

const struct keel_resource *keel_store_get(const struct keel_store *s, enum keel_kind kind, const char *ns,
                                           const char *name)
{
    const struct entry *e = find_entry(s, (int)kind, ns, name);
    return e ? e->r : NULL;
}

/* ---- visibility --------------------------------------------------------------- */

/* Explicit exportTo: `*` public; `~` nobody; else `.`/names. */
static bool export_visible(const char *const *v, size_t n, const char *own, const char *from)
{
    if (list_has(v, n, "*"))
        return true;
    if (list_has(v, n, "~"))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((str_eq(v[i], ".") && str_eq(own, from)) || str_eq(v[i], from))
            return true;
    return false;
}

/* Empty exportTo, MeshConfig default: istiod honours only `.` then `*`. */
static bool default_visible(const char *const *d, size_t n, const char *own, const char *from)
{
    if (list_has(d, n, "."))
        return str_eq(own, from);
    return list_has(d, n, "*");
}

/* next comma-separated token of the annotation, trimmed; false at the end */
static bool next_token(const char **p, const char **tok, size_t *len)
{
    const char *s = *p;
    while (*s == ' ' || *s == '\t' || *s == ',')
        s++;
    if (!*s)
        return false;
    const char *e = s;
    while (*e && *e != ',')
        e++;
    const char *t = e;
    while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
        t--;
    *tok = s;
    *len = (size_t)(t - s);
    *p = e;
    return true;
}

static bool tok_is(const char *tok, size_t len, const char *x)
{
    return x && strlen(x) == len && memcmp(tok, x, len) == 0;
}

static bool annotation_visible(const char *csv, const char *own, const char *from)
{
    const char *p = csv, *t;
    size_t l;
    while (next_token(&p, &t, &l))
        if (tok_is(t, l, "*"))
            return true;
    p = csv;
    while (next_token(&p, &t, &l))
        if (tok_is(t, l, "~"))
            return false;
    p = csv;
    while (next_token(&p, &t, &l))
        if ((tok_is(t, l, ".") && str_eq(own, from)) || tok_is(t, l, from))
            return true;
    return false;
}

bool keel_store_visible(const struct keel_store *s, const struct keel_resource *r, const char *from_ns)
{
    if (!r || !r->kind)
        return false;
    const struct keel_mesh_defaults *md = &s->md;
    switch (r->kind->id) {
    case KEEL_KIND_VIRTUAL_SERVICE: {
        const struct keel_virtual_service *vs = r->spec;
        if (vs->n_export_to)
            return export_visible(vs->export_to, vs->n_export_to, r->ns, from_ns);
        return default_visible(md->default_vs_export_to, md->n_default_vs_export_to, r->ns, from_ns);
    }
    case KEEL_KIND_SERVICE_ENTRY: {
        const struct keel_service_entry *se = r->spec;
        if (se->n_export_to)
            return export_visible(se->export_to, se->n_export_to, r->ns, from_ns);
        return default_visible(md->default_service_export_to, md->n_default_service_export_to, r->ns, from_ns);
    }
    case KEEL_KIND_DESTINATION_RULE: {
        const struct keel_destination_rule *d = r->spec;
        if (d->workload_selector)
            return str_eq(r->ns, from_ns);
        if (d->n_export_to)
            return export_visible(d->export_to, d->n_export_to, r->ns, from_ns);
        return str_eq(r->ns, from_ns) || !list_has(md->default_dr_export_to, md->n_default_dr_export_to, ".");
    }
    case KEEL_KIND_SERVICE: {
        const char *a = keel_labels_get(r->meta.annotations, r->meta.n_annotations, EXPORT_TO_ANNOTATION);
        const char *p = a, *t;
        size_t l;
        if (a && next_token(&p, &t, &l))
            return annotation_visible(a, r->ns, from_ns);
        return default_visible(md->default_service_export_to, md->n_default_service_export_to, r->ns, from_ns);
    }
    default:
        return true;
    }
}

/* ---- DestinationRule lookup ----------------------------------------------------- */

const char *keel_store_service_namespace(const struct keel_store *s, const char *host, const char *client_ns)
{
    if (!host)
        return NULL;
    const struct keel_host_entry *e = keel_host_index_lookup(s->services, host, strlen(host));
    if (!e || !keel_cstr_caseeq(e->host, host))
        return NULL;
    const struct plist *l = e->value;
    for (size_t i = 0; i < l->n; i++)
        if (keel_store_visible(s, l->v[i], client_ns))
            return l->v[i]->ns;
    return NULL;
}

static void fill(struct keel_dr_lookup *out, enum keel_dr_tier tier, const struct dr_group *g, const struct dr_cons *c)
{
    out->tier = tier;
    out->host = g->host;
    out->drs = c->drs;
    out->n_drs = c->n;
}

/* Tiers 2 and 3: the most specific exported host of ns, if exported to the client. */
static bool exported_lookup(const struct keel_store *s, const char *ns, const char *host, size_t hl,
                            const char *client_ns, enum keel_dr_tier tier, struct keel_dr_lookup *out)
{
    const struct nsinfo *ni = find_ns(s, KEEL_KIND_DESTINATION_RULE, ns);
    const struct keel_host_entry *e = ni ? keel_host_index_lookup(ni->dr_exported, host, hl) : NULL;
    if (!e)
        return false;
    const struct dr_group *g = e->value;
    if (g->n_export_to && !list_has(g->export_to, g->n_export_to, "*") &&
        !list_has(g->export_to, g->n_export_to, client_ns))
        return false;
    for (size_t i = 0; i < g->ncons; i++)
        if (!g->cons[i].sel) {
            fill(out, tier, g, &g->cons[i]);
            return true;
        }
    return false;
}

const struct keel_resource *keel_store_destination_rule_for(const struct keel_store *s, const char *client_ns,
                                                            const struct keel_kv_str *client_labels,
                                                            size_t n_client_labels, const char *host,
                                                            const char *service_ns, struct keel_dr_lookup *out)
{
    struct keel_dr_lookup tmp;
    if (!out)
        out = &tmp;
    memset(out, 0, sizeof(*out));
    if (keel_cstr_empty(host))
        return NULL;
    size_t hl = strlen(host);

    /* tier 1: the client's namespace */
    const struct keel_host_index *t1 = s->dr_root_local;
    if (!str_eq(client_ns, s->md.root_ns)) {
        const struct nsinfo *ni = find_ns(s, KEEL_KIND_DESTINATION_RULE, client_ns);
        t1 = ni ? ni->dr_local : NULL;
    }
    const struct keel_host_entry *e = keel_host_index_lookup(t1, host, hl);
    if (e) {
        const struct dr_group *g = e->value;
        const struct dr_cons *catch_all = NULL;
        for (size_t i = 0; i < g->ncons; i++) {
            const struct dr_cons *c = &g->cons[i];
            if (!c->sel) {
                catch_all = c;
            } else if (keel_labels_match(c->sel->match_labels, c->sel->n_match_labels, client_labels,
                                         n_client_labels)) {
                fill(out, KEEL_DR_TIER_CLIENT_NS, g, c);
                return out->drs[0];
            }
        }
        if (catch_all) {
            fill(out, KEEL_DR_TIER_CLIENT_NS, g, catch_all);
            return out->drs[0];
        }
        return NULL; /* Istio: the host is taken by selector DRs that do not apply; no fallback */
    }

    /* tier 2: the service's namespace */
    if (!service_ns)
        service_ns = keel_store_service_namespace(s, host, client_ns);
    if (service_ns && exported_lookup(s, service_ns, host, hl, client_ns, KEEL_DR_TIER_SERVICE_NS, out))
        return out->drs[0];

    /* tier 3: the root namespace */
    if (exported_lookup(s, s->md.root_ns, host, hl, client_ns, KEEL_DR_TIER_ROOT_NS, out))
        return out->drs[0];
    return NULL;
}

/* ---- Sidecar ------------------------------------------------------------------ */

static const struct keel_labels_selector *sidecar_selector(const struct keel_resource *r)
{
    return ((const struct keel_sidecar *)r->spec)->workload_selector;
}

const struct keel_resource *keel_store_sidecar_for(const struct keel_store *s, const char *ns,
                                                   const struct keel_kv_str *labels, size_t n_labels,
                                                   enum keel_sidecar_source *src)
{
    enum keel_sidecar_source dummy;
    if (!src)
        src = &dummy;
    const struct nsinfo *ni = find_ns(s, KEEL_KIND_SIDECAR, ns);
    if (ni) {
        for (size_t i = 0; i < ni->list.n; i++) {
            const struct keel_labels_selector *sel = sidecar_selector(ni->list.v[i]);
            if (sel && keel_labels_match(sel->labels, sel->n_labels, labels, n_labels)) {
                *src = KEEL_SIDECAR_WORKLOAD;
                return ni->list.v[i];
            }
        }
        for (size_t i = 0; i < ni->list.n; i++)
            if (!sidecar_selector(ni->list.v[i])) {
                *src = KEEL_SIDECAR_NAMESPACE;
                return ni->list.v[i];
            }
    }
    const struct nsinfo *root = find_ns(s, KEEL_KIND_SIDECAR, s->md.root_ns);
    if (root)
        for (size_t i = 0; i < root->list.n; i++)
            if (!sidecar_selector(root->list.v[i])) {
                *src = KEEL_SIDECAR_ROOT;
                return root->list.v[i];
            }
    *src = KEEL_SIDECAR_DEFAULT;
    return NULL;
}

/* ---- policies ----------------------------------------------------------------- */

struct polinfo {
    bool has_sel; /* the selector object is present */
    const struct keel_kv_str *labels;
    size_t n_labels;
    bool target_refs; /* attaches by targetRef(s): not selected by labels */
};

static struct polinfo pol_info(const struct keel_resource *r)
{
    struct polinfo p = {0};
    const struct keel_workload_selector *ws = NULL;
    switch (r->kind->id) {
    case KEEL_KIND_AUTHORIZATION_POLICY: {
        const struct keel_authorization_policy *x = r->spec;
        ws = x->selector;
        p.target_refs = x->target_ref || x->n_target_refs;
        break;
    }
    case KEEL_KIND_REQUEST_AUTHENTICATION: {
        const struct keel_request_authentication *x = r->spec;
        ws = x->selector;
        p.target_refs = x->target_ref || x->n_target_refs;
        break;
    }
    case KEEL_KIND_PEER_AUTHENTICATION:
        ws = ((const struct keel_peer_authentication *)r->spec)->selector;
        break;
    case KEEL_KIND_TELEMETRY: {
        const struct keel_telemetry *x = r->spec;
        ws = x->selector;
        p.target_refs = x->target_ref || x->n_target_refs;
        break;
    }
    case KEEL_KIND_PROXY_CONFIG:
        ws = ((const struct keel_proxy_config *)r->spec)->selector;
        break;
    case KEEL_KIND_ENVOY_FILTER: {
        const struct keel_envoy_filter *x = r->spec;
        p.target_refs = x->n_target_refs != 0;
        if (x->workload_selector) {
            p.has_sel = true;
            p.labels = x->workload_selector->labels;
            p.n_labels = x->workload_selector->n_labels;
        }
        return p;
    }
    default:
        break;
    }
    if (ws) {
        p.has_sel = true;
        p.labels = ws->match_labels;
        p.n_labels = ws->n_match_labels;
    }
    return p;
}

struct emitter {
    struct keel_policy_ref *out;
    size_t cap, n;
};

static void emit(struct emitter *em, const struct keel_resource *r, enum keel_policy_level level)
{
    if (!r)
        return;
    if (em->n < em->cap) {
        em->out[em->n].res = r;
        em->out[em->n].level = level;
    }
    em->n++;
}

static const struct plist *ns_list(const struct keel_store *s, int kind, const char *ns)
{
    const struct nsinfo *ni = find_ns(s, kind, ns);
    return ni ? &ni->list : NULL;
}

static enum keel_policy_level level_of(bool in_root, const struct polinfo *p)
{
    if (in_root)
        return p->n_labels ? KEEL_POLICY_MESH_WORKLOAD : KEEL_POLICY_MESH;
    return p->n_labels ? KEEL_POLICY_WORKLOAD : KEEL_POLICY_NAMESPACE;
}

/* AuthorizationPolicy / RequestAuthentication: every matching policy of each namespace in turn. */
static void select_all(const struct keel_store *s, int kind, const char *first, const char *second,
                       const struct keel_kv_str *labels, size_t n_labels, struct emitter *em)
{
    const char *nss[2] = {first, second};
    for (int k = 0; k < 2; k++) {
        if (k == 1 && str_eq(first, second))
            break;
        const struct plist *l = ns_list(s, kind, nss[k]);
        bool in_root = str_eq(nss[k], s->md.root_ns);
        for (size_t i = 0; l && i < l->n; i++) {
            struct polinfo p = pol_info(l->v[i]);
            if (!p.target_refs && keel_labels_match(p.labels, p.n_labels, labels, n_labels))
                emit(em, l->v[i], level_of(in_root, &p));
        }
    }
}

enum level_rule {
    NS_WIDE_NO_LABELS,  /* namespace level = no selector labels (PeerAuthentication, Telemetry) */
    NS_WIDE_NO_SELECTOR /* namespace level = no selector object at all (ProxyConfig) */
};

static const struct keel_resource *first_ns_wide(const struct keel_store *s, int kind, const char *ns,
                                                 enum level_rule rule)
{
    const struct plist *l = ns_list(s, kind, ns);
    for (size_t i = 0; l && i < l->n; i++) {
        struct polinfo p = pol_info(l->v[i]);
        if (p.target_refs)
            continue;
        if (rule == NS_WIDE_NO_SELECTOR ? !p.has_sel : p.n_labels == 0)
            return l->v[i];
    }
    return NULL;
}

static const struct keel_resource *first_workload(const struct keel_store *s, int kind, const char *ns,
                                                  const struct keel_kv_str *labels, size_t n_labels)
{
    const struct plist *l = ns_list(s, kind, ns);
    for (size_t i = 0; l && i < l->n; i++) {
        struct polinfo p = pol_info(l->v[i]);
        if (!p.target_refs && p.n_labels && keel_labels_match(p.labels, p.n_labels, labels, n_labels))
            return l->v[i];
    }
    return NULL;
}

/* PeerAuthentication / Telemetry / ProxyConfig: the oldest of each level. */
static void select_levels(const struct keel_store *s, int kind, const char *ns, const struct keel_kv_str *labels,
                          size_t n_labels, struct emitter *em)
{
    const char *root = s->md.root_ns;
    bool in_root = str_eq(ns, root);
    enum level_rule rule = kind == KEEL_KIND_PROXY_CONFIG ? NS_WIDE_NO_SELECTOR : NS_WIDE_NO_LABELS;
    emit(em, first_ns_wide(s, kind, root, rule), KEEL_POLICY_MESH);
    if (!in_root)
        emit(em, first_ns_wide(s, kind, ns, rule), KEEL_POLICY_NAMESPACE);
    /* PeerAuthentication ignores selector policies of the root namespace */
    if (!(kind == KEEL_KIND_PEER_AUTHENTICATION && in_root))
        emit(em, first_workload(s, kind, ns, labels, n_labels), KEEL_POLICY_WORKLOAD);
}

/* EnvoyFilter: root and namespace lists merged by priority, root first on ties. */
static size_t next_ef(const struct plist *l, size_t i, const struct keel_kv_str *labels, size_t n_labels)
{
    for (; l && i < l->n; i++) {
        struct polinfo p = pol_info(l->v[i]);
        if (!p.target_refs && keel_labels_match(p.labels, p.n_labels, labels, n_labels))
            return i;
    }
    return l ? l->n : 0;
}

static void select_envoy_filters(const struct keel_store *s, const char *ns, const struct keel_kv_str *labels,
                                 size_t n_labels, struct emitter *em)
{
    const struct nsinfo *ri = find_ns(s, KEEL_KIND_ENVOY_FILTER, s->md.root_ns);
    const struct nsinfo *ni = str_eq(ns, s->md.root_ns) ? NULL : find_ns(s, KEEL_KIND_ENVOY_FILTER, ns);
    const struct plist *rl = ri ? &ri->ef_by_prio : NULL, *nl = ni ? &ni->ef_by_prio : NULL;
    size_t i = next_ef(rl, 0, labels, n_labels), j = next_ef(nl, 0, labels, n_labels);
    size_t rn = rl ? rl->n : 0, nn = nl ? nl->n : 0;
    while (i < rn || j < nn) {
        bool take_root = j >= nn || (i < rn && cmp_prio(&rl->v[i], &nl->v[j]) <= 0);
        if (take_root) {
            struct polinfo p = pol_info(rl->v[i]);
            emit(em, rl->v[i], level_of(true, &p));
            i = next_ef(rl, i + 1, labels, n_labels);
        } else {
            struct polinfo p = pol_info(nl->v[j]);
            emit(em, nl->v[j], level_of(false, &p));
            j = next_ef(nl, j + 1, labels, n_labels);
        }
    }
}

size_t keel_store_policies_for(const struct keel_store *s, enum keel_kind kind, const char *ns,
                               const struct keel_kv_str *labels, size_t n_labels, struct keel_policy_ref *out,
                               size_t cap)
{
    struct emitter em = {out, out ? cap : 0, 0};
    const char *root = s->md.root_ns;
    switch (kind) {
    case KEEL_KIND_AUTHORIZATION_POLICY:
        select_all(s, kind, root, ns, labels, n_labels, &em);
        break;
    case KEEL_KIND_REQUEST_AUTHENTICATION:
        select_all(s, kind, ns, root, labels, n_labels, &em);
        break;
    case KEEL_KIND_PEER_AUTHENTICATION:
    case KEEL_KIND_TELEMETRY:
    case KEEL_KIND_PROXY_CONFIG:
        select_levels(s, kind, ns, labels, n_labels, &em);
        break;
    case KEEL_KIND_ENVOY_FILTER:
        select_envoy_filters(s, ns, labels, n_labels, &em);
        break;
    default:
        break;
    }
    return em.n;
}
