/*
 * vhosts.c - route table assembly (see vhosts.h).
 *
 * Per build, keel_vhosts_prepare() indexes the VirtualServices bound to
 * `mesh` and visible in the proxy's namespace: each gets its hosts as FQDNs,
 * which of them name no service, and the services it claims (host index:
 * exact host, else the most specific wildcard, the oldest VirtualService
 * winning a duplicate). Tables are then assembled per port; the virtual
 * host domains of a table go into one keel_host_index (first domain wins)
 * for the request path. Temporary maps are malloc'd and freed before each
 * function returns; everything reachable from the snapshot is in its arena.
 */
#include "mesh/vhosts.h"

#include "base/arena.h"
#include "base/map.h"
#include "base/str.h"
#include "config/host.h"
#include "config/resource.h"
#include "config/selector.h"
#include "config/store.h"
#include "mesh/clusters.h"
#include "mesh/rules.h"
#include "mesh/scope.h"
#include "mesh/snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SVC_DOMAINS 24

struct vsinfo {
    const struct keel_resource *res;
    const char **hosts; /* FQDN, lower-cased */
    size_t n_hosts;
    bool *nonreg; /* host names no service */
    const struct keel_service **claimed;
    size_t n_claimed, cap_claimed;
};

struct state {
    struct vsinfo *mesh;
    size_t n_mesh;
    struct keel_host_index *claims; /* VirtualService host -> struct vsinfo * */
};

/* ---- small helpers ---------------------------------------------------------------- */

static void xput(struct keel_map *m, const char *k, void *v)
{
    if (keel_map_put(m, k, strlen(k), v, NULL) != 0)
        abort();
}

static void list_push(struct keel_arena *a, struct keel_rules_list *l, const struct keel_route *r)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        const struct keel_route **v = keel_arena_xalloc(a, cap * sizeof(*v));
        if (l->n)
            memcpy(v, l->v, l->n * sizeof(*v));
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = r;
}

static bool http_or_sniffed(enum keel_proto p)
{
    return keel_clusters_proto_is_http(p) || p == KEEL_PROTO_UNKNOWN;
}

static bool has_http_port(const struct keel_service *s, uint32_t port)
{
    const struct keel_svc_port *sp = keel_clusters_service_port(s, port);
    return sp && http_or_sniffed(sp->proto);
}

static bool has_any_http_port(const struct keel_service *s)
{
    for (size_t i = 0; i < s->n_ports; i++)
        if (http_or_sniffed(s->ports[i].proto))
            return true;
    return false;
}

static bool bound_to_mesh(const struct keel_virtual_service *vs)
{
    if (!vs->n_gateways)
        return true;
    for (size_t i = 0; i < vs->n_gateways; i++)
        if (strcmp(vs->gateways[i], "mesh") == 0)
            return true;
    return false;
}

static bool bound_to_gateway(const struct keel_resource *r, const char *gw_name)
{
    const struct keel_virtual_service *vs = r->spec;
    for (size_t i = 0; i < vs->n_gateways; i++) {
        char buf[320];
        if (strcmp(keel_rules_gateway_name(vs->gateways[i], r->ns, buf, sizeof(buf)), gw_name) == 0)
            return true;
    }
    return false;
}

static const char **vs_hosts(struct keel_snapshot_build *b, const struct keel_resource *r, size_t *n)
{
    const struct keel_virtual_service *vs = r->spec;
    const char **h = keel_arena_xalloc(b->arena, (vs->n_hosts + 1) * sizeof(char *));
    for (size_t i = 0; i < vs->n_hosts; i++)
        h[i] = keel_arena_strdup_lower(b->arena, keel_host_fqdn(b->arena, vs->hosts[i], r->ns, b->domain));
    *n = vs->n_hosts;
    return h;
}

static const struct keel_route_cond catch_all_cond = {.uri = {.kind = KEEL_SM_PREFIX, .value = "/", .len = 1}};

static const struct keel_route *make_route(struct keel_snapshot_build *b, const char *name, const char *origin,
                                           const struct keel_route_action *a)
{
    struct keel_route *r = keel_arena_xalloc(b->arena, sizeof(*r));
    r->name = name;
    r->origin = origin;
    r->cond = catch_all_cond;
    r->action = a;
    r->catch_all = true;
    return r;
}

/* ---- prepare: the mesh VirtualServices ---------------------------------------------- */

void keel_vhosts_prepare(struct keel_snapshot_build *b, const struct keel_cluster_set *cs)
{
    struct state *st = keel_arena_xalloc(b->arena, sizeof(*st));
    b->vhosts = st;
    size_t n;
    const struct keel_resource *const *v = keel_store_list(b->store, KEEL_KIND_VIRTUAL_SERVICE, &n);
    st->mesh = keel_arena_xalloc(b->arena, (n + 1) * sizeof(*st->mesh));
    for (size_t i = 0; i < n; i++) {
        const struct keel_virtual_service *vs = v[i]->spec;
        if (!vs || !vs->n_hosts || !bound_to_mesh(vs) || !keel_store_visible(b->store, v[i], b->ns) ||
            !keel_scope_virtual_service(b->scope, v[i], 0))
            continue;
        struct vsinfo *vi = &st->mesh[st->n_mesh++];
        vi->res = v[i];
        vi->hosts = vs_hosts(b, v[i], &vi->n_hosts);
        vi->nonreg = keel_arena_xalloc(b->arena, (vi->n_hosts + 1) * sizeof(bool));
    }
    /* host -> oldest VirtualService (IST0109 for the others) */
    size_t total = 0;
    for (size_t i = 0; i < st->n_mesh; i++)
        total += st->mesh[i].n_hosts;
    struct keel_host_entry *ents = calloc(total + 1, sizeof(*ents));
    if (!ents)
        abort();
    struct keel_map first;
    keel_map_init(&first);
    size_t ne = 0;
    for (size_t i = 0; i < st->n_mesh; i++) {
        struct vsinfo *vi = &st->mesh[i];
        for (size_t k = 0; k < vi->n_hosts; k++) {
            const char *h = vi->hosts[k];
            struct vsinfo *prev = keel_map_get(&first, h, strlen(h));
            if (prev && prev != vi) {
                char a[300], c[300];
                keel_resource_label(prev->res, a, sizeof(a));
                keel_resource_label(vi->res, c, sizeof(c));
                keel_snapshot_warn(b, vi->res, "spec.hosts",
                                   "the VirtualServices %s and %s associated with mesh gateway define the same host "
                                   "\"%s\" which can lead to undefined behavior; the oldest, %s, is used for it",
                                   a, c, h, a);
                continue;
            }
            if (prev)
                continue;
            xput(&first, h, vi);
            if (h[0] == '*' && h[1] != '\0' && (h[1] != '.' || !h[2]))
                continue; /* malformed wildcard: validation keeps these out */
            ents[ne++] = (struct keel_host_entry){h, vi};
        }
    }
    keel_map_free(&first);
    if (keel_host_index_build(b->arena, ents, ne, &st->claims) != 0)
        abort();
    free(ents);
    /* claims: each service to its most specific VirtualService */
    size_t ns;
    const struct keel_service *const *svcs = keel_clusters_services(cs, &ns);
    for (size_t i = 0; i < ns; i++) {
        const struct keel_host_entry *e = keel_host_index_lookup(st->claims, svcs[i]->host, strlen(svcs[i]->host));
        if (!e)
            continue;
        struct vsinfo *vi = e->value;
        if (vi->n_claimed == vi->cap_claimed) {
            size_t cap = vi->cap_claimed ? vi->cap_claimed * 2 : 4;
            const struct keel_service **nv = keel_arena_xalloc(b->arena, cap * sizeof(*nv));
            if (vi->n_claimed)
                memcpy(nv, vi->claimed, vi->n_claimed * sizeof(*nv));
            vi->claimed = nv;
            vi->cap_claimed = cap;
        }
        vi->claimed[vi->n_claimed++] = svcs[i];
    }
    /* hosts that name no service get virtual hosts of their own */
    for (size_t i = 0; i < st->n_mesh; i++) {
        struct vsinfo *vi = &st->mesh[i];
        for (size_t k = 0; k < vi->n_hosts; k++) {
            const char *h = vi->hosts[k];
            bool found = false;
            if (!keel_host_is_wildcard(h))
                found = keel_clusters_service(cs, h) != NULL;
            for (size_t s = 0; s < ns && !found && keel_host_is_wildcard(h); s++)
                found = keel_host_matches(svcs[s]->host, h);
            vi->nonreg[k] = !found;
        }
    }
}

/* ---- table builder ---------------------------------------------------------------- */

struct vh {
    const char *name;
    const char **domains;
    size_t n_domains;
    struct keel_rules_list routes;
    bool https_redirect;
};

struct tbuild {
    struct keel_snapshot_build *b;
    struct vh *v;
    size_t n, cap;
    struct keel_map taken; /* domain -> 1 */
};

static void tb_init(struct tbuild *t, struct keel_snapshot_build *b)
{
    memset(t, 0, sizeof(*t));
    t->b = b;
    keel_map_init(&t->taken);
}

/* Adds a virtual host with the domains no earlier virtual host took; a
 * virtual host left without domains is dropped. Returns it or NULL. */
static struct vh *tb_add(struct tbuild *t, const char *name, const char *const *domains, size_t n,
                         const struct keel_rules_list *routes)
{
    struct keel_arena *a = t->b->arena;
    const char **keep = keel_arena_xalloc(a, (n + 1) * sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *d = keel_arena_strdup_lower(a, domains[i]);
        if (keel_map_get(&t->taken, d, strlen(d)))
            continue;
        xput(&t->taken, d, (void *)1);
        keep[k++] = d;
    }
    if (!k)
        return NULL;
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct vh *nv = keel_arena_xalloc(a, cap * sizeof(*nv));
        if (t->n)
            memcpy(nv, t->v, t->n * sizeof(*nv));
        t->v = nv;
        t->cap = cap;
    }
    struct vh *v = &t->v[t->n++];
    memset(v, 0, sizeof(*v));
    v->name = name;
    v->domains = keep;
    v->n_domains = k;
    if (routes)
        v->routes = *routes;
    return v;
}

static struct keel_route_table *tb_finish(struct tbuild *t, const char *name, uint32_t port, bool router)
{
    struct keel_snapshot_build *b = t->b;
    keel_map_free(&t->taken);
    struct keel_route_table *rt = keel_arena_xalloc(b->arena, sizeof(*rt));
    struct keel_vhost *out = keel_arena_xalloc(b->arena, (t->n + 1) * sizeof(*out));
    size_t nd = 0;
    for (size_t i = 0; i < t->n; i++)
        nd += t->v[i].n_domains;
    struct keel_host_entry *ents = keel_arena_xalloc(b->arena, (nd + 1) * sizeof(*ents));
    size_t ne = 0;
    for (size_t i = 0; i < t->n; i++) {
        struct keel_vhost *o = &out[i];
        o->name = t->v[i].name;
        o->domains = t->v[i].domains;
        o->n_domains = t->v[i].n_domains;
        o->routes = t->v[i].routes.v;
        o->n_routes = t->v[i].routes.n;
        o->https_redirect = t->v[i].https_redirect;
        for (size_t k = 0; k < o->n_routes; k++)
            o->needs_query |= o->routes[k]->cond.n_query > 0;
        for (size_t k = 0; k < o->n_domains; k++) {
            const char *d = o->domains[k];
            if (d[0] == '*' && d[1] != '\0' && (d[1] != '.' || !d[2]))
                continue;
            ents[ne++] = (struct keel_host_entry){d, o};
        }
    }
    struct keel_host_index *ix;
    if (keel_host_index_build(b->arena, ents, ne, &ix) != 0)
        abort();
    rt->name = name;
    rt->port = port;
    rt->router = router;
    rt->vhosts = out;
    rt->n_vhosts = t->n;
    rt->domains = ix;
    rt->self_ns = b->id->ns;
    rt->self_labels = b->id->labels;
    rt->n_self_labels = b->id->n_labels;
    return rt;
}

/* ---- sidecar tables --------------------------------------------------------------- */

static void add_domain(struct keel_snapshot_build *b, const char **out, size_t *n, const char *d, uint32_t port)
{
    if (*n + 2 > MAX_SVC_DOMAINS)
        return;
    out[(*n)++] = d;
    if (port && d[0] != '*')
        out[(*n)++] = strchr(d, ':') ? keel_arena_printf(b->arena, "[%s]:%u", d, port) /* IPv6 */
                                     : keel_arena_printf(b->arena, "%s:%u", d, port);
}

/* istio generateVirtualHostDomains + GenerateAltVirtualHosts. */
static size_t service_domains(struct keel_snapshot_build *b, const struct keel_service *s, uint32_t port,
                              const char **out)
{
    size_t n = 0;
    add_domain(b, out, &n, s->host, port);
    const char *svc = strstr(s->host, ".svc.");
    const char *dot = strchr(s->host, '.');
    if (s->kind == KEEL_SERVICE_K8S && svc && dot && dot < svc) {
        const char *name = keel_arena_strndup(b->arena, s->host, (size_t)(dot - s->host));
        const char *ns = keel_arena_strndup(b->arena, dot + 1, (size_t)(svc - dot - 1));
        const char *name_ns = keel_arena_strndup(b->arena, s->host, (size_t)(svc - s->host));
        if (strcmp(ns, b->ns) == 0)
            add_domain(b, out, &n, name, port);
        add_domain(b, out, &n, keel_arena_printf(b->arena, "%s.svc", name_ns), port);
        add_domain(b, out, &n, name_ns, port);
        if (s->resolution == KEEL_RESOLUTION_NONE) /* headless: pod DNS names */
            add_domain(b, out, &n, keel_arena_printf(b->arena, "*.%s", s->host), 0);
    }
    for (size_t i = 0; i < s->n_addresses; i++)
        if (!strchr(s->addresses[i], '/'))
            add_domain(b, out, &n, s->addresses[i], port);
    return n;
}

static void single_route(struct keel_snapshot_build *b, struct keel_rules_list *l, const struct keel_route *r)
{
    memset(l, 0, sizeof(*l));
    list_push(b->arena, l, r);
}

static void catch_all_vhost(struct keel_snapshot_build *b, struct tbuild *t, const struct keel_rules_ctx *x)
{
    struct keel_rules_list l;
    const char *star = "*";
    if (b->registry_only) {
        struct keel_route_action *a = keel_arena_xalloc(b->arena, sizeof(*a));
        a->kind = KEEL_ROUTE_DIRECT_RESPONSE;
        a->status = 502;
        single_route(b, &l, make_route(b, "block_all", "outboundTrafficPolicy REGISTRY_ONLY", a));
        tb_add(t, "block_all", &star, 1, &l);
    } else {
        /* Sidecar outboundTrafficPolicy.egressProxy: unknown hosts go to that service instead */
        const char *cluster = b->egress_proxy ? b->egress_proxy : "PassthroughCluster";
        struct keel_route_action *a = (struct keel_route_action *)keel_rules_default_action(x, cluster);
        a->retry.enabled = false; /* Istio's allow_any route has no retry policy */
        a->retry.num_retries = 0;
        single_route(b, &l,
                     make_route(b, "allow_any",
                                b->egress_proxy ? "Sidecar outboundTrafficPolicy egressProxy"
                                                : "outboundTrafficPolicy ALLOW_ANY",
                                a));
        tb_add(t, "allow_any", &star, 1, &l);
    }
}

struct keel_route_table *keel_vhosts_build_sidecar(struct keel_snapshot_build *b, const struct keel_cluster_set *cs,
                                                   uint32_t port)
{
    struct state *st = b->vhosts;
    struct keel_rules_ctx x = {.b = b, .cs = cs, .port = port};
    struct tbuild t;
    tb_init(&t, b);
    struct keel_map handled; /* services served by a VirtualService on this port */
    keel_map_init(&handled);
    const char *doms[MAX_SVC_DOMAINS];
    for (size_t i = 0; i < st->n_mesh; i++) {
        const struct vsinfo *vi = &st->mesh[i];
        if (!keel_scope_virtual_service(b->scope, vi->res, port))
            continue; /* not imported on this port by the Sidecar's egress */
        bool on_port = false, any_http = false;
        for (size_t k = 0; k < vi->n_claimed; k++) {
            on_port |= has_http_port(vi->claimed[k], port);
            any_http |= has_any_http_port(vi->claimed[k]);
        }
        if (!on_port && (any_http || port != 80))
            continue; /* istio buildSidecarVirtualHostsForVirtualService: nothing for this port */
        struct keel_rules_list routes = {0};
        if (!keel_rules_compile_http(&x, vi->res, &routes))
            continue; /* no rule applies on this port: the services keep their default routes */
        for (size_t k = 0; k < vi->n_claimed; k++) {
            const struct keel_service *s = vi->claimed[k];
            xput(&handled, s->host, (void *)1);
            if (!has_http_port(s, port) || !keel_scope_service(b->scope, s->ns, s->host, port))
                continue;
            size_t n = service_domains(b, s, port, doms);
            tb_add(&t, keel_arena_printf(b->arena, "%s:%u", s->host, port), doms, n, &routes);
        }
        for (size_t k = 0; k < vi->n_hosts; k++) {
            if (!vi->nonreg[k])
                continue;
            size_t n = 0;
            add_domain(b, doms, &n, vi->hosts[k], port);
            tb_add(&t, keel_arena_printf(b->arena, "%s:%u", vi->hosts[k], port), doms, n, &routes);
        }
    }
    size_t ns;
    const struct keel_service *const *svcs = keel_clusters_services(cs, &ns);
    for (size_t i = 0; i < ns; i++) {
        const struct keel_service *s = svcs[i];
        if (!has_http_port(s, port) || keel_map_get(&handled, s->host, strlen(s->host)) ||
            !keel_scope_service(b->scope, s->ns, s->host, port))
            continue;
        const char *cluster = keel_arena_printf(b->arena, "outbound|%u||%s", port, s->host);
        struct keel_rules_list l;
        single_route(b, &l, make_route(b, "default", "default", keel_rules_default_action(&x, cluster)));
        size_t n = service_domains(b, s, port, doms);
        tb_add(&t, keel_arena_printf(b->arena, "%s:%u", s->host, port), doms, n, &l);
    }
    keel_map_free(&handled);
    catch_all_vhost(b, &t, &x);
    return tb_finish(&t, keel_arena_printf(b->arena, "%u", port), port, false);
}

static struct keel_l4_route *default_tcp_route(struct keel_snapshot_build *b, const struct keel_cluster_set *cs,
                                               const char *cluster)
{
    struct keel_l4_route *r = keel_arena_xalloc(b->arena, sizeof(*r));
    struct keel_route_dest *d = keel_arena_xalloc(b->arena, sizeof(*d));
    d->cluster_name = cluster;
    d->cluster = keel_clusters_find(cs, cluster);
    d->weight = d->cumulative = 1;
    r->dests = d;
    r->n_dests = 1;
    r->total_weight = 1;
    r->origin = "default";
    return r;
}

static void tcp_list_push(struct keel_arena *a, struct keel_rules_tcp_list *l, const struct keel_l4_route *r)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        struct keel_l4_route *v = keel_arena_xalloc(a, cap * sizeof(*v));
        if (l->n)
            memcpy(v, l->v, l->n * sizeof(*v));
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = *r;
}

static struct keel_tcp_table *tcp_table(struct keel_snapshot_build *b, const char *name, uint32_t port,
                                        struct keel_tcp_entry *entries, size_t n)
{
    struct keel_tcp_table *t = keel_arena_xalloc(b->arena, sizeof(*t));
    t->name = name;
    t->port = port;
    t->entries = entries;
    t->n_entries = n;
    t->self_ns = b->id->ns;
    t->self_labels = b->id->labels;
    t->n_self_labels = b->id->n_labels;
    return t;
}

struct keel_tcp_table *keel_vhosts_build_sidecar_tcp(struct keel_snapshot_build *b, const struct keel_cluster_set *cs,
                                                     uint32_t port)
{
    struct state *st = b->vhosts;
    struct keel_rules_ctx x = {.b = b, .cs = cs, .port = port};
    size_t ns;
    const struct keel_service *const *svcs = keel_clusters_services(cs, &ns);
    struct keel_tcp_entry *entries = keel_arena_xalloc(b->arena, (ns + 1) * sizeof(*entries));
    size_t n = 0;
    for (size_t i = 0; i < ns; i++) {
        const struct keel_service *s = svcs[i];
        const struct keel_svc_port *sp = keel_clusters_service_port(s, port);
        if (!sp || keel_clusters_proto_is_http(sp->proto) || !keel_scope_service(b->scope, s->ns, s->host, port))
            continue;
        struct keel_rules_tcp_list l = {0};
        const struct keel_host_entry *e = keel_host_index_lookup(st->claims, s->host, strlen(s->host));
        if (e && keel_scope_virtual_service(b->scope, ((const struct vsinfo *)e->value)->res, port)) {
            const struct vsinfo *vi = e->value;
            bool tls = sp->proto == KEEL_PROTO_TLS || sp->proto == KEEL_PROTO_HTTPS;
            keel_rules_compile_l4(&x, vi->res, tls, NULL, 0, &l);
        }
        const char *cluster = keel_arena_printf(b->arena, "outbound|%u||%s", port, s->host);
        tcp_list_push(b->arena, &l, default_tcp_route(b, cs, cluster));
        struct keel_tcp_entry *en = &entries[n++];
        en->host = s->host;
        en->addresses = s->addresses;
        en->n_addresses = s->n_addresses;
        en->routes = l.v;
        en->n_routes = l.n;
    }
    if (!n)
        return NULL;
    return tcp_table(b, keel_arena_printf(b->arena, "tcp.%u", port), port, entries, n);
}

/* ---- gateway tables ---------------------------------------------------------------- */

/* Server hosts that admit VirtualServices of vs_ns, without the `ns/` part. */
static size_t server_hosts(struct keel_snapshot_build *b, const struct keel_vhosts_server *sv, const char *vs_ns,
                           const char **out)
{
    size_t n = 0;
    const struct keel_server *s = sv->server;
    for (size_t i = 0; i < s->n_hosts; i++) {
        const char *h = s->hosts[i];
        const char *slash = strchr(h, '/');
        if (slash) {
            size_t nl = (size_t)(slash - h);
            if (vs_ns) { /* `*` = any namespace, `.` = the gateway's, else that namespace */
                const char *want = nl == 1 && h[0] == '.' ? sv->gateway->ns : NULL;
                bool ok = (nl == 1 && h[0] == '*') ||
                          (want ? strcmp(vs_ns, want) == 0 : strlen(vs_ns) == nl && strncmp(vs_ns, h, nl) == 0);
                if (!ok)
                    continue;
            }
            h = slash + 1;
        }
        out[n++] = keel_arena_strdup_lower(b->arena, h);
    }
    return n;
}

struct gwcache {
    const char *gw;
    const struct keel_resource *vs;
    struct keel_rules_list routes;
};

static void vs_routes_cached(const struct keel_rules_ctx *x, const struct keel_resource *vs, struct gwcache **cache,
                             size_t *n, size_t *cap, struct keel_rules_list *out)
{
    for (size_t i = 0; i < *n; i++)
        if ((*cache)[i].vs == vs && strcmp((*cache)[i].gw, x->gw_name) == 0) {
            *out = (*cache)[i].routes;
            return;
        }
    memset(out, 0, sizeof(*out));
    keel_rules_compile_http(x, vs, out);
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        struct gwcache *nc = realloc(*cache, *cap * sizeof(**cache));
        if (!nc)
            abort();
        *cache = nc;
    }
    (*cache)[(*n)++] = (struct gwcache){x->gw_name, vs, *out};
}

struct gvh {
    const char *host;
    struct keel_rules_list routes;
    bool redirect;
};

static struct gvh *gvh_get(struct keel_snapshot_build *b, struct keel_map *m, struct gvh **v, size_t *n, size_t *cap,
                           const char *host)
{
    void *idx = keel_map_get(m, host, strlen(host));
    if (idx)
        return &(*v)[(uintptr_t)idx - 1];
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        struct gvh *nv = realloc(*v, *cap * sizeof(**v));
        if (!nv)
            abort();
        *v = nv;
    }
    struct gvh *g = &(*v)[(*n)++];
    memset(g, 0, sizeof(*g));
    g->host = keel_arena_strdup(b->arena, host);
    xput(m, g->host, (void *)(uintptr_t)*n);
    return g;
}

/* host.Names.Intersection: VS hosts covered by server hosts and vice versa. */
static size_t intersect(const char *const *sh, size_t nsh, const char *const *vh, size_t nvh, const char **out)
{
    size_t n = 0;
    for (size_t i = 0; i < nsh; i++)
        for (size_t k = 0; k < nvh; k++) {
            const char *x = keel_host_subset_of(vh[k], sh[i])   ? vh[k]
                            : keel_host_subset_of(sh[i], vh[k]) ? sh[i]
                                                                : NULL;
            bool seen = !x;
            for (size_t j = 0; j < n && !seen; j++)
                seen = keel_cstr_caseeq(out[j], x);
            if (!seen)
                out[n++] = x;
        }
    return n;
}

static const struct keel_route *redirect_route(struct keel_snapshot_build *b, const char *gw)
{
    struct keel_route_action *a = keel_arena_xalloc(b->arena, sizeof(*a));
    a->kind = KEEL_ROUTE_REDIRECT;
    a->redirect.scheme = "https";
    a->redirect.code = 301;
    a->redirect.strip_default_port = true;
    return make_route(b, "require_tls", keel_arena_printf(b->arena, "Gateway %s httpsRedirect", gw), a);
}

/* route.go SortVHostRoutes: catch-all routes last, order kept otherwise. */
static void sort_catch_all_last(struct keel_snapshot_build *b, struct keel_rules_list *l)
{
    const struct keel_route **v = keel_arena_xalloc(b->arena, (l->n + 1) * sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; i < l->n; i++)
        if (!l->v[i]->catch_all)
            v[k++] = l->v[i];
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i]->catch_all)
            v[k++] = l->v[i];
    l->v = v;
    l->cap = l->n + 1;
}

struct keel_route_table *keel_vhosts_build_gateway(struct keel_snapshot_build *b, const struct keel_cluster_set *cs,
                                                   const char *name, uint32_t port,
                                                   const struct keel_vhosts_server *servers, size_t nserv)
{
    size_t nvs;
    const struct keel_resource *const *vss = keel_store_list(b->store, KEEL_KIND_VIRTUAL_SERVICE, &nvs);
    struct keel_map idx;
    keel_map_init(&idx);
    struct gvh *gv = NULL;
    size_t ng = 0, capg = 0;
    struct gwcache *cache = NULL;
    size_t nc = 0, capc = 0;
    for (size_t s = 0; s < nserv; s++) {
        const struct keel_vhosts_server *sv = &servers[s];
        const struct keel_server *srv = sv->server;
        bool redirect = srv->tls && srv->tls->https_redirect;
        struct keel_rules_ctx x = {
            .b = b, .cs = cs, .port = port, .router = true, .gw_name = sv->gw_name, .tls = srv->tls != NULL};
        const char **sh = keel_arena_xalloc(b->arena, (srv->n_hosts + 1) * sizeof(char *));
        for (size_t v = 0; v < nvs; v++) {
            const struct keel_resource *r = vss[v];
            const struct keel_virtual_service *vs = r->spec;
            if (!vs || !vs->n_hosts || !bound_to_gateway(r, sv->gw_name) ||
                !keel_store_visible(b->store, r, sv->gateway->ns))
                continue;
            size_t nvh, nsh = server_hosts(b, sv, r->ns, sh);
            const char **vh = vs_hosts(b, r, &nvh);
            const char **both = keel_arena_xalloc(b->arena, (nsh * nvh + 1) * sizeof(char *));
            size_t nb = intersect(sh, nsh, vh, nvh, both);
            if (!nb)
                continue;
            struct keel_rules_list routes;
            vs_routes_cached(&x, r, &cache, &nc, &capc, &routes);
            if (!routes.n)
                continue;
            for (size_t k = 0; k < nb; k++) {
                struct gvh *g = gvh_get(b, &idx, &gv, &ng, &capg, both[k]);
                for (size_t i = 0; i < routes.n; i++)
                    list_push(b->arena, &g->routes, routes.v[i]);
                g->redirect |= redirect;
            }
        }
        if (redirect) {
            size_t nsh = server_hosts(b, sv, NULL, sh);
            for (size_t k = 0; k < nsh; k++)
                gvh_get(b, &idx, &gv, &ng, &capg, sh[k])->redirect = true;
        }
    }
    free(cache);
    keel_map_free(&idx);
    struct tbuild t;
    tb_init(&t, b);
    for (size_t i = 0; i < ng; i++) {
        struct gvh *g = &gv[i];
        sort_catch_all_last(b, &g->routes);
        if (g->redirect) {
            struct keel_rules_list l = {0};
            list_push(b->arena, &l, redirect_route(b, servers[0].gw_name));
            for (size_t k = 0; k < g->routes.n; k++)
                list_push(b->arena, &l, g->routes.v[k]);
            g->routes = l;
        }
        const char *d = g->host;
        struct vh *v = tb_add(&t, keel_arena_printf(b->arena, "%s:%u", g->host, port), &d, 1, &g->routes);
        if (v)
            v->https_redirect = g->redirect;
    }
    free(gv);
    if (!t.n) {
        const char *star = "*";
        tb_add(&t, keel_arena_printf(b->arena, "blackhole:%u", port), &star, 1, NULL); /* 404 NR for everything */
    }
    return tb_finish(&t, name, port, true);
}

struct keel_tcp_table *keel_vhosts_build_gateway_tcp(struct keel_snapshot_build *b, const struct keel_cluster_set *cs,
                                                     const struct keel_vhosts_server *sv)
{
    const struct keel_server *srv = sv->server;
    uint32_t port = (uint32_t)srv->port->number;
    enum keel_proto p = keel_clusters_proto_parse(srv->port->protocol);
    bool passthrough = (p == KEEL_PROTO_TLS || p == KEEL_PROTO_HTTPS) && srv->tls &&
                       srv->tls->mode == KEEL_SERVER_TLS_MODE_PASSTHROUGH;
    struct keel_rules_ctx x = {
        .b = b, .cs = cs, .port = port, .router = true, .gw_name = sv->gw_name, .tls = srv->tls != NULL};
    struct keel_rules_tcp_list l = {0};
    bool auto_pt = srv->tls && srv->tls->mode == KEEL_SERVER_TLS_MODE_AUTO_PASSTHROUGH;
    size_t nvs;
    const struct keel_resource *const *vss = keel_store_list(b->store, KEEL_KIND_VIRTUAL_SERVICE, &nvs);
    const char **sh = keel_arena_xalloc(b->arena, (srv->n_hosts + 1) * sizeof(char *));
    for (size_t v = 0; v < nvs && !auto_pt; v++) {
        const struct keel_resource *r = vss[v];
        const struct keel_virtual_service *vs = r->spec;
        if (!vs || !vs->n_hosts || !bound_to_gateway(r, sv->gw_name) ||
            !keel_store_visible(b->store, r, sv->gateway->ns))
            continue;
        size_t nvh, nsh = server_hosts(b, sv, r->ns, sh);
        const char **vh = vs_hosts(b, r, &nvh);
        const char **both = keel_arena_xalloc(b->arena, (nsh * nvh + 1) * sizeof(char *));
        if (!intersect(sh, nsh, vh, nvh, both))
            continue;
        keel_rules_compile_l4(&x, r, passthrough, passthrough ? sh : NULL, passthrough ? nsh : 0, &l);
    }
    struct keel_tcp_entry *e = keel_arena_xalloc(b->arena, sizeof(*e));
    e->host = "*";
    e->routes = l.v;
    e->n_routes = l.n;
    const char *name = keel_arena_printf(b->arena, "tcp.%u.%s.%s.%s", port, srv->port->name ? srv->port->name : "",
                                         sv->gateway->meta.name, sv->gateway->ns);
    return tcp_table(b, name, port, e, 1);
}

/* ---- dump ------------------------------------------------------------------------- */

static const char *const sm_names[] = {NULL, "exact", "prefix", "regex", "present"};

static void dump_sm(struct keel_snapshot_json *j, const char *key, const struct keel_str_matcher *m)
{
    keel_snapshot_json_open(j, key, '{');
    if (m->kind == KEEL_SM_PRESENT)
        keel_snapshot_json_bool(j, "present", true);
    else if (m->kind != KEEL_SM_NONE)
        keel_snapshot_json_strn(j, sm_names[m->kind], m->value, m->len);
    if (m->ignore_case)
        keel_snapshot_json_bool(j, "ignoreCase", true);
    keel_snapshot_json_close(j, '}');
}

static void dump_cond(struct keel_snapshot_json *j, const struct keel_route_cond *c)
{
    keel_snapshot_json_open(j, "match", '{');
    dump_sm(j, "uri", &c->uri);
    if (c->n_headers) {
        keel_snapshot_json_open(j, "headers", '[');
        for (size_t i = 0; i < c->n_headers; i++) {
            const struct keel_header_matcher *h = &c->headers[i];
            keel_snapshot_json_open(j, NULL, '{');
            keel_snapshot_json_str(j, "name", h->name);
            dump_sm(j, "value", &h->m);
            if (h->invert)
                keel_snapshot_json_bool(j, "invert", true);
            keel_snapshot_json_close(j, '}');
        }
        keel_snapshot_json_close(j, ']');
    }
    if (c->n_query) {
        keel_snapshot_json_open(j, "queryParams", '[');
        for (size_t i = 0; i < c->n_query; i++) {
            keel_snapshot_json_open(j, NULL, '{');
            keel_snapshot_json_str(j, "name", c->query[i].name);
            dump_sm(j, "value", &c->query[i].m);
            keel_snapshot_json_close(j, '}');
        }
        keel_snapshot_json_close(j, ']');
    }
    if (c->port)
        keel_snapshot_json_int(j, "port", c->port);
    if (c->n_source_labels)
        keel_snapshot_json_labels(j, "sourceLabels", c->source_labels, c->n_source_labels);
    if (c->source_ns)
        keel_snapshot_json_str(j, "sourceNamespace", c->source_ns);
    keel_snapshot_json_close(j, '}');
}

static void dump_ops(struct keel_snapshot_json *j, const char *key, const struct keel_route_header_ops *o)
{
    if (!o->n_set && !o->n_add && !o->n_remove)
        return;
    keel_snapshot_json_open(j, key, '{');
    static const char *const names[] = {"set", "add"};
    const struct keel_header_op *lists[] = {o->set, o->add};
    size_t counts[] = {o->n_set, o->n_add};
    for (size_t k = 0; k < 2; k++) {
        if (!counts[k])
            continue;
        keel_snapshot_json_open(j, names[k], '{');
        for (size_t i = 0; i < counts[k]; i++)
            keel_snapshot_json_str(j, lists[k][i].name, lists[k][i].value);
        keel_snapshot_json_close(j, '}');
    }
    if (o->n_remove)
        keel_snapshot_json_strs(j, "remove", o->remove, o->n_remove);
    keel_snapshot_json_close(j, '}');
}

static void dump_dests(struct keel_snapshot_json *j, const struct keel_route_dest *d, size_t n)
{
    keel_snapshot_json_open(j, "destinations", '[');
    for (size_t i = 0; i < n; i++) {
        keel_snapshot_json_open(j, NULL, '{');
        keel_snapshot_json_str(j, "cluster", d[i].cluster_name);
        keel_snapshot_json_int(j, "weight", d[i].weight);
        if (!d[i].cluster)
            keel_snapshot_json_str(j, "missing", "cluster not found: requests get 503 (NC)");
        if (d[i].host_rewrite)
            keel_snapshot_json_str(j, "hostRewrite", d[i].host_rewrite);
        dump_ops(j, "requestHeaders", &d[i].headers.request);
        dump_ops(j, "responseHeaders", &d[i].headers.response);
        keel_snapshot_json_close(j, '}');
    }
    keel_snapshot_json_close(j, ']');
}

static void dump_retry(struct keel_snapshot_json *j, const struct keel_retry_policy *r)
{
    keel_snapshot_json_open(j, "retries", '{');
    keel_snapshot_json_int(j, "attempts", r->enabled ? r->num_retries : 0);
    if (r->enabled) {
        char on[400] = "";
        for (uint32_t bit = 1; bit && bit <= KEEL_RETRY_UNAVAILABLE; bit <<= 1)
            if (r->retry_on & bit)
                snprintf(on + strlen(on), sizeof(on) - strlen(on), "%s%s", on[0] ? "," : "",
                         keel_rules_retry_on_name(bit));
        keel_snapshot_json_str(j, "retryOn", on);
        if (r->n_status_codes) {
            keel_snapshot_json_open(j, "retriableStatusCodes", '[');
            for (size_t i = 0; i < r->n_status_codes; i++)
                keel_snapshot_json_int(j, NULL, r->status_codes[i]);
            keel_snapshot_json_close(j, ']');
        }
        if (r->per_try_timeout)
            keel_snapshot_json_int(j, "perTryTimeoutMs", r->per_try_timeout / 1000000);
        keel_snapshot_json_bool(j, "previousHosts", r->previous_hosts);
    }
    keel_snapshot_json_close(j, '}');
}

static void dump_action(struct keel_snapshot_json *j, const struct keel_route_action *a)
{
    keel_snapshot_json_open(j, "action", '{');
    switch (a->kind) {
    case KEEL_ROUTE_FORWARD:
        dump_dests(j, a->dests, a->n_dests);
        keel_snapshot_json_int(j, "timeoutMs", a->timeout / 1000000);
        dump_retry(j, &a->retry);
        if (a->rewrite)
            keel_snapshot_json_str(j, a->rewrite == KEEL_REWRITE_REGEX ? "regexRewrite" : "prefixRewrite",
                                   a->rewrite_uri);
        if (a->host_rewrite)
            keel_snapshot_json_str(j, "hostRewrite", a->host_rewrite);
        if (a->n_mirrors) {
            keel_snapshot_json_open(j, "mirrors", '[');
            for (size_t i = 0; i < a->n_mirrors; i++) {
                keel_snapshot_json_open(j, NULL, '{');
                keel_snapshot_json_str(j, "cluster", a->mirrors[i].cluster_name);
                keel_snapshot_json_int(j, "perMillion", a->mirrors[i].per_million);
                keel_snapshot_json_close(j, '}');
            }
            keel_snapshot_json_close(j, ']');
        }
        break;
    case KEEL_ROUTE_REDIRECT:
        keel_snapshot_json_open(j, "redirect", '{');
        keel_snapshot_json_int(j, "code", a->redirect.code);
        if (a->redirect.scheme)
            keel_snapshot_json_str(j, "scheme", a->redirect.scheme);
        if (a->redirect.authority)
            keel_snapshot_json_str(j, "authority", a->redirect.authority);
        if (a->redirect.path)
            keel_snapshot_json_str(j, "path", a->redirect.path);
        if (a->redirect.port)
            keel_snapshot_json_int(j, "port", a->redirect.port);
        keel_snapshot_json_close(j, '}');
        break;
    case KEEL_ROUTE_DIRECT_RESPONSE:
        keel_snapshot_json_open(j, "directResponse", '{');
        keel_snapshot_json_int(j, "status", a->status);
        if (a->body)
            keel_snapshot_json_strn(j, "body", a->body, a->body_len);
        keel_snapshot_json_close(j, '}');
        break;
    }
    if (a->fault) {
        const struct keel_fault *f = a->fault;
        keel_snapshot_json_open(j, "fault", '{');
        if (f->delay) {
            keel_snapshot_json_int(j, "delayMs", f->delay_ns / 1000000);
            keel_snapshot_json_int(j, "delayPerMillion", f->delay_per_million);
        }
        if (f->abort) {
            if (f->abort_grpc_status != KEEL_ROUTES_GRPC_NONE)
                keel_snapshot_json_int(j, "abortGrpcStatus", f->abort_grpc_status);
            else
                keel_snapshot_json_int(j, "abortHttpStatus", f->abort_http_status);
            keel_snapshot_json_int(j, "abortPerMillion", f->abort_per_million);
        }
        keel_snapshot_json_close(j, '}');
    }
    if (a->cors) {
        keel_snapshot_json_open(j, "cors", '{');
        keel_snapshot_json_open(j, "allowOrigins", '[');
        for (size_t i = 0; i < a->cors->n_origins; i++)
            dump_sm(j, NULL, &a->cors->origins[i]);
        keel_snapshot_json_close(j, ']');
        if (a->cors->allow_methods)
            keel_snapshot_json_str(j, "allowMethods", a->cors->allow_methods);
        if (a->cors->allow_headers)
            keel_snapshot_json_str(j, "allowHeaders", a->cors->allow_headers);
        if (a->cors->max_age)
            keel_snapshot_json_str(j, "maxAge", a->cors->max_age);
        keel_snapshot_json_close(j, '}');
    }
    dump_ops(j, "requestHeaders", &a->headers.request);
    dump_ops(j, "responseHeaders", &a->headers.response);
    keel_snapshot_json_close(j, '}');
}

void keel_vhosts_dump_table(const struct keel_route_table *t, struct keel_snapshot_json *j)
{
    keel_snapshot_json_open(j, NULL, '{');
    keel_snapshot_json_str(j, "name", t->name);
    keel_snapshot_json_int(j, "port", t->port);
    keel_snapshot_json_open(j, "virtualHosts", '[');
    for (size_t i = 0; i < t->n_vhosts; i++) {
        const struct keel_vhost *v = &t->vhosts[i];
        keel_snapshot_json_open(j, NULL, '{');
        keel_snapshot_json_str(j, "name", v->name);
        keel_snapshot_json_strs(j, "domains", v->domains, v->n_domains);
        if (v->https_redirect)
            keel_snapshot_json_bool(j, "httpsRedirect", true);
        keel_snapshot_json_open(j, "routes", '[');
        for (size_t k = 0; k < v->n_routes; k++) {
            const struct keel_route *r = v->routes[k];
            keel_snapshot_json_open(j, NULL, '{');
            keel_snapshot_json_str(j, "name", r->name);
            keel_snapshot_json_str(j, "origin", r->origin);
            dump_cond(j, &r->cond);
            dump_action(j, r->action);
            keel_snapshot_json_close(j, '}');
        }
        keel_snapshot_json_close(j, ']');
        keel_snapshot_json_close(j, '}');
    }
    keel_snapshot_json_close(j, ']');
    keel_snapshot_json_close(j, '}');
}

void keel_vhosts_dump_tcp(const struct keel_tcp_table *t, struct keel_snapshot_json *j)
{
    keel_snapshot_json_open(j, NULL, '{');
    keel_snapshot_json_str(j, "name", t->name);
    keel_snapshot_json_int(j, "port", t->port);
    keel_snapshot_json_open(j, "entries", '[');
    for (size_t i = 0; i < t->n_entries; i++) {
        const struct keel_tcp_entry *e = &t->entries[i];
        keel_snapshot_json_open(j, NULL, '{');
        keel_snapshot_json_str(j, "host", e->host);
        keel_snapshot_json_strs(j, "addresses", e->addresses, e->n_addresses);
        keel_snapshot_json_open(j, "routes", '[');
        for (size_t k = 0; k < e->n_routes; k++) {
            const struct keel_l4_route *r = &e->routes[k];
            keel_snapshot_json_open(j, NULL, '{');
            keel_snapshot_json_str(j, "origin", r->origin);
            if (r->n_conds) {
                keel_snapshot_json_open(j, "match", '[');
                for (size_t c = 0; c < r->n_conds; c++) {
                    keel_snapshot_json_open(j, NULL, '{');
                    keel_snapshot_json_strs(j, "sniHosts", r->conds[c].sni_hosts, r->conds[c].n_sni_hosts);
                    keel_snapshot_json_int(j, "destinationSubnets", (int64_t)r->conds[c].n_dst_subnets);
                    keel_snapshot_json_close(j, '}');
                }
                keel_snapshot_json_close(j, ']');
            }
            dump_dests(j, r->dests, r->n_dests);
            keel_snapshot_json_close(j, '}');
        }
        keel_snapshot_json_close(j, ']');
        keel_snapshot_json_close(j, '}');
    }
    keel_snapshot_json_close(j, ']');
    keel_snapshot_json_close(j, '}');
}
