/*
 * inbound.c - the sidecar's inbound ports and their tables (see inbound.h).
 *
 * keel_inbound_collect() reads the Sidecar `ingress` of the proxy, else the
 * registry services that select it, and produces one keel_inbound per
 * workload port in the build's arena (cluster pointers are filled later by
 * clusters.c, which owns cluster defaults). keel_inbound_tables() then gives
 * each port the table its protocol needs; the tables are ordinary route and
 * TCP tables, so the request path (routes.c) and the dumps treat them like
 * the outbound ones.
 */
#include "mesh/inbound.h"

#include "base/arena.h"
#include "base/str.h"
#include "config/host.h"
#include "config/resource.h"
#include "config/selector.h"
#include "config/store.h"
#include "mesh/snapshot.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The proxy's WorkloadEntry or Pod (from id->workload "NAME[.NS]"), or NULL. */
static const struct keel_resource *own_workload(struct keel_snapshot_build *b, bool *is_pod)
{
    const char *w = b->id->workload;
    *is_pod = false;
    if (keel_cstr_empty(w))
        return NULL;
    char name[256];
    snprintf(name, sizeof(name), "%s", w);
    char *dot = strchr(name, '.');
    const char *ns = b->ns;
    if (dot) {
        *dot = '\0';
        ns = dot + 1;
    }
    const struct keel_resource *r = keel_store_get(b->store, KEEL_KIND_WORKLOAD_ENTRY, ns, name);
    if (r && r->spec)
        return r;
    r = keel_store_get(b->store, KEEL_KIND_POD, ns, name);
    *is_pod = r != NULL;
    return r;
}

/* Container port named name of a Pod, or 0. */
static uint32_t pod_port(const struct keel_resource *pod, const char *name)
{
    const struct keel_pod_object *o = pod->body;
    if (!o || !o->spec || !name)
        return 0;
    for (size_t i = 0; i < o->spec->n_containers; i++)
        for (size_t k = 0; k < o->spec->containers[i].n_ports; k++) {
            const struct keel_container_port *cp = &o->spec->containers[i].ports[k];
            if (cp->name && strcmp(cp->name, name) == 0 && cp->container_port > 0 && cp->container_port <= 65535)
                return (uint32_t)cp->container_port;
        }
    return 0;
}

/* The endpoint port of this workload for service port sp (as mesh/clusters.c computes it), or 0. */
static uint32_t workload_port(const struct keel_resource *w, bool is_pod, const struct keel_svc_port *sp)
{
    if (w && !is_pod) {
        const struct keel_workload_entry *we = w->spec;
        for (size_t i = 0; i < we->n_ports; i++)
            if (strcmp(we->ports[i].key, sp->name) == 0 && we->ports[i].value > 0 && we->ports[i].value <= 65535)
                return (uint32_t)we->ports[i].value;
    }
    if (sp->target_name)
        return w && is_pod ? pod_port(w, sp->target_name) : 0;
    return sp->target_port ? sp->target_port : sp->number;
}

struct ibuild {
    struct keel_inbound *v;
    size_t n, cap;
};

static struct keel_inbound *find_port(struct ibuild *ib, uint32_t port)
{
    for (size_t i = 0; i < ib->n; i++)
        if (ib->v[i].port == port)
            return &ib->v[i];
    return NULL;
}

static struct keel_inbound *add_port(struct keel_snapshot_build *b, struct ibuild *ib, uint32_t port, const char *name,
                                     enum keel_proto proto, const char *source)
{
    if (ib->n == ib->cap) {
        size_t cap = ib->cap ? ib->cap * 2 : 8;
        struct keel_inbound *nv = keel_arena_xalloc(b->arena, cap * sizeof(*nv));
        if (ib->n)
            memcpy(nv, ib->v, ib->n * sizeof(*nv));
        ib->v = nv;
        ib->cap = cap;
    }
    struct keel_inbound *in = &ib->v[ib->n++];
    memset(in, 0, sizeof(*in));
    in->port = port;
    in->port_name = keel_snapshot_strdup(b, name ? name : "");
    in->proto = proto;
    in->source = keel_snapshot_strdup(b, source);
    in->cluster_name = keel_arena_printf(b->arena, "inbound|%u||", port);
    in->address = "127.0.0.1";
    in->app_port = port;
    return in;
}

static void add_service_name(struct keel_snapshot_build *b, struct keel_inbound *in, const char *host, uint32_t port)
{
    const char **v = keel_arena_xalloc(b->arena, (in->n_services + 1) * sizeof(char *));
    uint32_t *p = keel_arena_xalloc(b->arena, (in->n_services + 1) * sizeof(uint32_t));
    if (in->n_services) {
        memcpy(v, in->services, in->n_services * sizeof(char *));
        memcpy(p, in->service_ports, in->n_services * sizeof(uint32_t));
    }
    v[in->n_services] = keel_arena_printf(b->arena, "%s:%u", host, port);
    p[in->n_services++] = port;
    in->services = v;
    in->service_ports = p;
}

/* Sets address/app_port from a Sidecar defaultEndpoint; false (after a warning) when malformed. */
static bool parse_endpoint(struct keel_snapshot_build *b, const struct keel_resource *sc, const char *path,
                           const char *ep, struct keel_inbound *in)
{
    if (keel_cstr_has_prefix(ep, "unix://")) {
        in->address = keel_snapshot_strdup(b, ep);
        in->app_port = 0;
        return true;
    }
    const char *colon = strrchr(ep, ':');
    uint64_t port = 0;
    if (colon && keel_str_to_u64(keel_str_c(colon + 1), 65535, &port) == 0 && port > 0) {
        size_t hl = (size_t)(colon - ep);
        const char *host = ep;
        if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
            host++;
            hl -= 2;
        }
        char ip[64];
        if (hl > 0 && hl < sizeof(ip)) {
            memcpy(ip, host, hl);
            ip[hl] = '\0';
            /* "the instance IP": on one machine the app listens on the loopback */
            const char *addr = strcmp(ip, "0.0.0.0") == 0 ? "127.0.0.1" : strcmp(ip, "::") == 0 ? "::1" : ip;
            in->address = keel_snapshot_strdup(b, addr);
            in->app_port = (uint32_t)port;
            return true;
        }
    }
    keel_snapshot_warn(b, sc, path,
                       "defaultEndpoint \"%s\" is not 127.0.0.1:PORT, [::1]:PORT, 0.0.0.0:PORT or unix:///path: "
                       "this ingress port is ignored",
                       ep);
    return false;
}

static void from_sidecar(struct keel_snapshot_build *b, const struct keel_resource *sc, struct ibuild *ib)
{
    const struct keel_sidecar *s = sc->spec;
    char src[400], label[256];
    keel_resource_label(sc, label, sizeof(label));
    for (size_t i = 0; i < s->n_ingress; i++) {
        const struct keel_sidecar_ingress *ing = &s->ingress[i];
        char path[64];
        snprintf(path, sizeof(path), "spec.ingress[%zu]", i);
        if (!ing->port || ing->port->number <= 0 || ing->port->number > 65535)
            continue;
        uint32_t port = (uint32_t)ing->port->number;
        if (find_port(ib, port)) {
            keel_snapshot_warn(b, sc, path, "port %u is already an ingress port of this Sidecar: ignored", port);
            continue;
        }
        if (!keel_cstr_empty(ing->bind) || ing->tls)
            keel_snapshot_warn(b, sc, path, "ingress %s is not applied yet: the port listens on the --inbound address",
                               ing->tls ? "tls" : "bind");
        snprintf(src, sizeof(src), "%s %s", label, path);
        struct keel_inbound tmp = {.address = "127.0.0.1", .app_port = port};
        if (!keel_cstr_empty(ing->default_endpoint)) {
            char epath[96];
            snprintf(epath, sizeof(epath), "%s.defaultEndpoint", path);
            if (!parse_endpoint(b, sc, epath, ing->default_endpoint, &tmp))
                continue;
        }
        struct keel_inbound *in =
            add_port(b, ib, port, ing->port->name, keel_clusters_proto_parse(ing->port->protocol), src);
        in->address = tmp.address;
        in->app_port = tmp.app_port;
    }
}

/* Whether registry service sv (from res) selects the proxy. */
static bool selects_proxy(struct keel_snapshot_build *b, const struct keel_inbound_svc *sv)
{
    const struct keel_resource *r = sv->res;
    if (!r || strcmp(r->ns, b->ns) != 0)
        return false;
    const struct keel_kv_str *sel = NULL;
    size_t n = 0;
    if (sv->svc->kind == KEEL_SERVICE_K8S) {
        const struct keel_service_object *o = r->body;
        if (o && o->spec) {
            sel = o->spec->selector;
            n = o->spec->n_selector;
        }
    } else {
        const struct keel_service_entry *se = r->spec;
        if (se && se->workload_selector) {
            sel = se->workload_selector->labels;
            n = se->workload_selector->n_labels;
        }
    }
    return n > 0 && keel_labels_match(sel, n, b->id->labels, b->id->n_labels);
}

static void from_services(struct keel_snapshot_build *b, const struct keel_inbound_svc *svcs, size_t n,
                          struct ibuild *ib)
{
    bool is_pod;
    const struct keel_resource *w = own_workload(b, &is_pod);
    for (size_t i = 0; i < n; i++) {
        if (!selects_proxy(b, &svcs[i]))
            continue;
        const struct keel_service *s = svcs[i].svc;
        char label[256];
        keel_resource_label(svcs[i].res, label, sizeof(label));
        for (size_t k = 0; k < s->n_ports; k++) {
            const struct keel_svc_port *sp = &s->ports[k];
            uint32_t port = workload_port(w, is_pod, sp);
            if (!port) {
                keel_snapshot_warn(b, svcs[i].res, NULL,
                                   "port %u: named targetPort \"%s\" is not a container port of this workload: "
                                   "no inbound port for it",
                                   sp->number, sp->target_name);
                continue;
            }
            struct keel_inbound *in = find_port(ib, port);
            if (!in) {
                in = add_port(b, ib, port, sp->name, sp->proto, label);
            } else if (in->proto != sp->proto) {
                keel_snapshot_warn(b, svcs[i].res, NULL,
                                   "port %u (%s) reaches workload port %u, already %s for %s: that protocol is used",
                                   sp->number, keel_clusters_proto_name(sp->proto), port,
                                   keel_clusters_proto_name(in->proto), in->source);
            }
            add_service_name(b, in, s->host, sp->number);
        }
    }
}

static int cmp_inbound(const void *a, const void *b)
{
    uint32_t x = ((const struct keel_inbound *)a)->port, y = ((const struct keel_inbound *)b)->port;
    return x < y ? -1 : x > y;
}

void keel_inbound_collect(struct keel_snapshot_build *b, const struct keel_inbound_svc *svcs, size_t n)
{
    if (b->id->kind != KEEL_PROXY_SIDECAR)
        return;
    struct ibuild ib = {0};
    const struct keel_resource *sc = keel_store_sidecar_for(b->store, b->ns, b->id->labels, b->id->n_labels, NULL);
    const struct keel_sidecar *s = sc ? sc->spec : NULL;
    if (s && s->n_ingress)
        from_sidecar(b, sc, &ib);
    else
        from_services(b, svcs, n, &ib);
    for (size_t i = 0; i < ib.n; i++) {
        struct keel_inbound *in = &ib.v[i];
        if (in->app_port == 0)
            in->endpoint = in->address;
        else
            in->endpoint =
                keel_arena_printf(b->arena, strchr(in->address, ':') ? "[%s]:%u" : "%s:%u", in->address, in->app_port);
    }
    if (ib.n)
        qsort(ib.v, ib.n, sizeof(*ib.v), cmp_inbound);
    b->inbound = ib.v;
    b->n_inbound = ib.n;
}

/* ---- tables ----------------------------------------------------------------------- */

static const struct keel_route_dest *one_dest(struct keel_snapshot_build *b, const struct keel_inbound *in)
{
    struct keel_route_dest *d = keel_arena_xalloc(b->arena, sizeof(*d));
    d->cluster_name = in->cluster_name;
    d->cluster = in->cluster;
    d->weight = d->cumulative = 1;
    return d;
}

static const struct keel_route_table *http_table(struct keel_snapshot_build *b, const struct keel_inbound *in)
{
    struct keel_route_action *a = keel_arena_xalloc(b->arena, sizeof(*a));
    a->kind = KEEL_ROUTE_FORWARD;
    a->dests = one_dest(b, in);
    a->n_dests = 1;
    a->total_weight = 1;
    /* Istio's inbound route: no retries (the caller's outbound side retries), no timeout */
    a->retry.enabled = false;
    struct keel_route *r = keel_arena_xalloc(b->arena, sizeof(*r));
    r->name = "default";
    r->origin = in->source;
    r->cond.uri = (struct keel_str_matcher){.kind = KEEL_SM_PREFIX, .value = "/", .len = 1};
    r->action = a;
    r->catch_all = true;
    const struct keel_route **routes = keel_arena_xalloc(b->arena, sizeof(*routes));
    routes[0] = r;
    struct keel_vhost *vh = keel_arena_xalloc(b->arena, sizeof(*vh));
    const char **domains = keel_arena_xalloc(b->arena, sizeof(*domains));
    domains[0] = "*";
    vh->name = keel_arena_printf(b->arena, "inbound|http|%u", in->port);
    vh->domains = domains;
    vh->n_domains = 1;
    vh->routes = routes;
    vh->n_routes = 1;
    struct keel_host_entry e = {"*", vh};
    struct keel_host_index *ix;
    if (keel_host_index_build(b->arena, &e, 1, &ix) != 0)
        abort();
    struct keel_route_table *t = keel_arena_xalloc(b->arena, sizeof(*t));
    t->name = in->cluster_name;
    t->port = in->port;
    t->vhosts = vh;
    t->n_vhosts = 1;
    t->domains = ix;
    t->self_ns = b->id->ns;
    t->self_labels = b->id->labels;
    t->n_self_labels = b->id->n_labels;
    return t;
}

static const struct keel_tcp_table *tcp_table(struct keel_snapshot_build *b, const struct keel_inbound *in)
{
    struct keel_l4_route *r = keel_arena_xalloc(b->arena, sizeof(*r));
    r->dests = one_dest(b, in);
    r->n_dests = 1;
    r->total_weight = 1;
    r->origin = in->source;
    struct keel_tcp_entry *e = keel_arena_xalloc(b->arena, sizeof(*e));
    e->host = in->cluster_name;
    e->routes = r;
    e->n_routes = 1;
    struct keel_tcp_table *t = keel_arena_xalloc(b->arena, sizeof(*t));
    t->name = in->cluster_name;
    t->port = in->port;
    t->entries = e;
    t->n_entries = 1;
    t->self_ns = b->id->ns;
    t->self_labels = b->id->labels;
    t->n_self_labels = b->id->n_labels;
    return t;
}

void keel_inbound_tables(struct keel_snapshot_build *b, const struct keel_cluster_set *cs,
                         struct keel_arena_vec *tables, struct keel_arena_vec *tcp)
{
    for (size_t i = 0; i < b->n_inbound; i++) {
        struct keel_inbound *in = &b->inbound[i];
        if (!in->cluster)
            in->cluster = keel_clusters_find(cs, in->cluster_name);
        if (keel_clusters_proto_is_http(in->proto)) {
            in->routes = http_table(b, in);
            *(const struct keel_route_table **)keel_arena_vec_push(b->arena, tables, sizeof(in->routes)) = in->routes;
        } else {
            in->tcp = tcp_table(b, in);
            *(const struct keel_tcp_table **)keel_arena_vec_push(b->arena, tcp, sizeof(in->tcp)) = in->tcp;
        }
    }
}

/* ---- dump ------------------------------------------------------------------------- */

void keel_inbound_dump_json(const struct keel_inbound *v, size_t n, struct keel_snapshot_json *j)
{
    keel_snapshot_json_open(j, "inbound", '[');
    for (size_t i = 0; i < n; i++) {
        const struct keel_inbound *in = &v[i];
        keel_snapshot_json_open(j, NULL, '{');
        keel_snapshot_json_int(j, "port", in->port);
        keel_snapshot_json_str(j, "portName", in->port_name);
        keel_snapshot_json_str(j, "protocol", keel_clusters_proto_is_http(in->proto) ? "HTTP" : "TCP");
        keel_snapshot_json_str(j, "cluster", in->cluster_name);
        if (in->routes)
            keel_snapshot_json_str(j, "routeTable", in->routes->name);
        if (in->tcp)
            keel_snapshot_json_str(j, "tcpTable", in->tcp->name);
        keel_snapshot_json_str(j, "endpoint", in->endpoint);
        keel_snapshot_json_strs(j, "services", in->services, in->n_services);
        keel_snapshot_json_str(j, "source", in->source);
        keel_snapshot_json_close(j, '}');
    }
    keel_snapshot_json_close(j, ']');
}
