/*
 * scope.c - a sidecar's egress scope (see scope.h).
 *
 * keel_scope_build() parses the Sidecar's egress hosts once per build, then
 * per egress listener lists the mesh VirtualServices it imports (by
 * "ns/name", never by pointer: the snapshot must not point into the store)
 * and the destination hosts those VirtualServices name. The queries are
 * linear in the listener's hosts and VirtualServices, which are few; they
 * run only while compiling.
 */
#include "mesh/scope.h"

#include "base/arena.h"
#include "base/str.h"
#include "config/host.h"
#include "config/resource.h"
#include "config/store.h"
#include "mesh/snapshot.h"

#include <stdio.h>
#include <string.h>

enum ns_kind {
    NS_ANY,   /* `*` */
    NS_SELF,  /* `.`: the proxy's namespace */
    NS_NONE,  /* `~` */
    NS_NAMED, /* a namespace */
};

struct ehost {
    enum ns_kind kind;
    const char *ns;  /* NS_NAMED */
    const char *dns; /* lower-cased */
    const char *text;
};

struct elistener {
    uint32_t port; /* 0: the catch-all listener */
    struct ehost *hosts;
    size_t n_hosts;
    const char **vs; /* "ns/name" of the imported VirtualServices */
    size_t n_vs;
    const char **inferred; /* destination hosts of those VirtualServices (FQDN, lower-case) */
    size_t n_inferred;
};

struct keel_scope {
    const char *sidecar; /* "ns/name" */
    const char *source;  /* "workload", "namespace", "root namespace" */
    const char *ns;      /* the proxy's namespace */
    struct elistener *l;
    size_t n;
    bool registry_only;
    const char *policy_from; /* "Sidecar" or "MeshConfig" */
    const char *egress_proxy;
};

static bool ns_ok(const struct keel_scope *sc, const struct ehost *h, const char *ns)
{
    switch (h->kind) {
    case NS_ANY:
        return true;
    case NS_SELF:
        return strcmp(ns, sc->ns) == 0;
    case NS_NONE:
        return false;
    case NS_NAMED:
        return strcmp(ns, h->ns) == 0;
    }
    return false;
}

static bool host_ok(const struct ehost *h, const char *host)
{
    return strcmp(h->dns, "*") == 0 || keel_host_matches(host, h->dns);
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

static void push_str(struct keel_arena *a, const char ***v, size_t *n, size_t *cap, const char *s)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*v)[i], s) == 0)
            return;
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        const char **nv = keel_arena_xalloc(a, nc * sizeof(*nv));
        if (*n)
            memcpy(nv, *v, *n * sizeof(*nv));
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = s;
}

static void infer(struct keel_snapshot_build *b, const struct keel_resource *r, const struct keel_destination *d,
                  const char ***v, size_t *n, size_t *cap)
{
    if (!d || keel_cstr_empty(d->host))
        return;
    push_str(b->arena, v, n, cap,
             keel_arena_strdup_lower(b->arena, keel_host_fqdn(b->arena, d->host, r->ns, b->domain)));
}

/* The mesh VirtualServices listener l imports, and the destinations they name. */
static void import_vs(struct keel_snapshot_build *b, const struct keel_scope *sc, struct elistener *l)
{
    size_t n;
    const struct keel_resource *const *v = keel_store_list(b->store, KEEL_KIND_VIRTUAL_SERVICE, &n);
    size_t cap_vs = 0, cap_inf = 0;
    for (size_t i = 0; i < n; i++) {
        const struct keel_virtual_service *vs = v[i]->spec;
        if (!vs || !vs->n_hosts || !bound_to_mesh(vs) || !keel_store_visible(b->store, v[i], b->ns))
            continue;
        bool hit = false;
        for (size_t k = 0; k < l->n_hosts && !hit; k++) {
            if (!ns_ok(sc, &l->hosts[k], v[i]->ns))
                continue;
            for (size_t h = 0; h < vs->n_hosts && !hit; h++) {
                const char *fq =
                    keel_arena_strdup_lower(b->arena, keel_host_fqdn(b->arena, vs->hosts[h], v[i]->ns, b->domain));
                hit = host_ok(&l->hosts[k], fq);
            }
        }
        if (!hit)
            continue;
        push_str(b->arena, &l->vs, &l->n_vs, &cap_vs, keel_arena_printf(b->arena, "%s/%s", v[i]->ns, v[i]->meta.name));
        for (size_t r = 0; r < vs->n_http; r++) {
            const struct keel_http_route *hr = &vs->http[r];
            for (size_t d = 0; d < hr->n_route; d++)
                infer(b, v[i], hr->route[d].destination, &l->inferred, &l->n_inferred, &cap_inf);
            infer(b, v[i], hr->mirror, &l->inferred, &l->n_inferred, &cap_inf);
            for (size_t m = 0; m < hr->n_mirrors; m++)
                infer(b, v[i], hr->mirrors[m].destination, &l->inferred, &l->n_inferred, &cap_inf);
        }
        for (size_t r = 0; r < vs->n_tcp; r++)
            for (size_t d = 0; d < vs->tcp[r].n_route; d++)
                infer(b, v[i], vs->tcp[r].route[d].destination, &l->inferred, &l->n_inferred, &cap_inf);
        for (size_t r = 0; r < vs->n_tls; r++)
            for (size_t d = 0; d < vs->tls[r].n_route; d++)
                infer(b, v[i], vs->tls[r].route[d].destination, &l->inferred, &l->n_inferred, &cap_inf);
    }
}

static void parse_host(struct keel_snapshot_build *b, const char *text, struct ehost *h)
{
    h->text = keel_snapshot_strdup(b, text);
    const char *slash = strchr(text, '/');
    const char *dns = slash ? slash + 1 : text;
    size_t nl = slash ? (size_t)(slash - text) : 1;
    const char *ns = slash ? text : "*";
    if (nl == 1 && ns[0] == '*')
        h->kind = NS_ANY;
    else if (nl == 1 && ns[0] == '.')
        h->kind = NS_SELF;
    else if (nl == 1 && ns[0] == '~')
        h->kind = NS_NONE;
    else {
        h->kind = NS_NAMED;
        h->ns = keel_arena_strndup(b->arena, ns, nl);
    }
    h->dns = keel_arena_strdup_lower(b->arena, dns);
}

struct keel_scope *keel_scope_build(struct keel_snapshot_build *b)
{
    if (b->id->kind == KEEL_PROXY_ROUTER)
        return NULL;
    enum keel_sidecar_source src;
    const struct keel_resource *r = keel_store_sidecar_for(b->store, b->ns, b->id->labels, b->id->n_labels, &src);
    const struct keel_sidecar *s = r ? r->spec : NULL;
    if (!s)
        return NULL;
    struct keel_scope *sc = keel_arena_xalloc(b->arena, sizeof(*sc));
    memset(sc, 0, sizeof(*sc));
    sc->sidecar = keel_arena_printf(b->arena, "%s/%s", r->ns, r->meta.name);
    sc->source = src == KEEL_SIDECAR_WORKLOAD    ? "workload"
                 : src == KEEL_SIDECAR_NAMESPACE ? "namespace"
                                                 : "root namespace";
    sc->ns = b->ns;
    /* outboundTrafficPolicy: the Sidecar's replaces the mesh's (an empty one is REGISTRY_ONLY, the proto default) */
    const struct keel_outbound_traffic_policy *otp = s->outbound_traffic_policy;
    sc->policy_from = "MeshConfig";
    if (otp) {
        sc->policy_from = "Sidecar";
        b->registry_only = otp->mode == KEEL_OUTBOUND_TRAFFIC_POLICY_MODE_REGISTRY_ONLY;
        const struct keel_destination *ep = otp->egress_proxy;
        if (!b->registry_only && ep && !keel_cstr_empty(ep->host)) {
            const char *host = keel_arena_strdup_lower(b->arena, keel_host_fqdn(b->arena, ep->host, r->ns, b->domain));
            uint32_t port = ep->port && ep->port->number > 0 ? (uint32_t)ep->port->number : 0;
            if (port)
                b->egress_proxy =
                    keel_arena_printf(b->arena, "outbound|%u|%s|%s", port, ep->subset ? ep->subset : "", host);
            else
                keel_snapshot_warn(b, r, "spec.outboundTrafficPolicy.egressProxy.port",
                                   "egressProxy needs a port: unknown traffic is passed through instead");
        }
    }
    sc->registry_only = b->registry_only;
    sc->egress_proxy = b->egress_proxy;
    if (!s->n_egress)
        return sc; /* no import rules: everything visible */
    sc->l = keel_arena_xalloc(b->arena, s->n_egress * sizeof(*sc->l));
    for (size_t i = 0; i < s->n_egress; i++) {
        const struct keel_sidecar_egress *e = &s->egress[i];
        struct elistener *l = &sc->l[sc->n++];
        memset(l, 0, sizeof(*l));
        l->port = e->port && e->port->number > 0 && e->port->number <= 65535 ? (uint32_t)e->port->number : 0;
        l->hosts = keel_arena_xalloc(b->arena, (e->n_hosts + 1) * sizeof(*l->hosts));
        for (size_t k = 0; k < e->n_hosts; k++)
            if (!keel_cstr_empty(e->hosts[k]))
                parse_host(b, e->hosts[k], &l->hosts[l->n_hosts++]);
        if (!keel_cstr_empty(e->bind) || e->capture_mode != 0) {
            char path[64];
            snprintf(path, sizeof(path), "spec.egress[%zu]", i);
            keel_snapshot_warn(b, r, path,
                               "egress bind and captureMode are not applied: the sidecar's outbound address "
                               "(--outbound) serves every egress listener; its hosts are imported");
        }
    }
    for (size_t i = 0; i < sc->n; i++)
        import_vs(b, sc, &sc->l[i]);
    return sc;
}

/* The listener scoping port (0: every listener, tried in turn by the callers). */
static const struct elistener *listener_for(const struct keel_scope *sc, uint32_t port)
{
    const struct elistener *any = NULL;
    for (size_t i = 0; i < sc->n; i++) {
        if (sc->l[i].port == port)
            return &sc->l[i];
        if (!sc->l[i].port && !any)
            any = &sc->l[i];
    }
    return any;
}

static bool listener_service(const struct keel_scope *sc, const struct elistener *l, const char *ns, const char *host)
{
    for (size_t k = 0; k < l->n_hosts; k++)
        if (ns_ok(sc, &l->hosts[k], ns) && host_ok(&l->hosts[k], host))
            return true;
    for (size_t k = 0; k < l->n_inferred; k++)
        if (keel_host_matches(host, l->inferred[k]))
            return true;
    return false;
}

bool keel_scope_service(const struct keel_scope *sc, const char *ns, const char *host, uint32_t port)
{
    if (!sc || !sc->n)
        return true;
    if (port) {
        const struct elistener *l = listener_for(sc, port);
        return l && listener_service(sc, l, ns, host);
    }
    for (size_t i = 0; i < sc->n; i++)
        if (listener_service(sc, &sc->l[i], ns, host))
            return true;
    return false;
}

static bool listener_vs(const struct elistener *l, const struct keel_resource *vs)
{
    size_t nn = strlen(vs->ns);
    for (size_t k = 0; k < l->n_vs; k++)
        if (strncmp(l->vs[k], vs->ns, nn) == 0 && l->vs[k][nn] == '/' && strcmp(l->vs[k] + nn + 1, vs->meta.name) == 0)
            return true;
    return false;
}

bool keel_scope_virtual_service(const struct keel_scope *sc, const struct keel_resource *vs, uint32_t port)
{
    if (!sc || !sc->n)
        return true;
    if (port) {
        const struct elistener *l = listener_for(sc, port);
        return l && listener_vs(l, vs);
    }
    for (size_t i = 0; i < sc->n; i++)
        if (listener_vs(&sc->l[i], vs))
            return true;
    return false;
}

void keel_scope_dump_json(const struct keel_scope *sc, struct keel_snapshot_json *j)
{
    if (!sc) {
        keel_snapshot_json_str(j, "sidecarScope", NULL);
        return;
    }
    keel_snapshot_json_open(j, "sidecarScope", '{');
    keel_snapshot_json_str(j, "sidecar", sc->sidecar);
    keel_snapshot_json_str(j, "selectedBy", sc->source);
    keel_snapshot_json_str(j, "outboundTrafficPolicy", sc->registry_only ? "REGISTRY_ONLY" : "ALLOW_ANY");
    keel_snapshot_json_str(j, "outboundTrafficPolicyFrom", sc->policy_from);
    if (sc->egress_proxy)
        keel_snapshot_json_str(j, "egressProxy", sc->egress_proxy);
    keel_snapshot_json_open(j, "egress", '[');
    for (size_t i = 0; i < sc->n; i++) {
        const struct elistener *l = &sc->l[i];
        keel_snapshot_json_open(j, NULL, '{');
        if (l->port)
            keel_snapshot_json_int(j, "port", l->port);
        keel_snapshot_json_open(j, "hosts", '[');
        for (size_t k = 0; k < l->n_hosts; k++)
            keel_snapshot_json_str(j, NULL, l->hosts[k].text);
        keel_snapshot_json_close(j, ']');
        keel_snapshot_json_strs(j, "virtualServices", l->vs, l->n_vs);
        keel_snapshot_json_strs(j, "inferredDestinations", l->inferred, l->n_inferred);
        keel_snapshot_json_close(j, '}');
    }
    keel_snapshot_json_close(j, ']');
    keel_snapshot_json_close(j, '}');
}
