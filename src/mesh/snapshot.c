/*
 * snapshot.c - build, reference counting, listeners and dump of a snapshot
 * (see snapshot.h).
 *
 * keel_snapshot_build() creates the arena, copies the identity, reads the
 * MeshConfig values that change compilation, then: clusters (registry,
 * endpoints, policies: mesh/clusters.c) -> VirtualService index
 * (mesh/vhosts.c) -> listeners and their route tables. Gateways (ROUTER):
 * every server of every Gateway whose selector is a subset of the proxy's
 * labels, grouped by (bind, port); a port keeps either plain HTTP servers
 * (one shared table `http.<port>`) or TLS/TCP servers, never both (Istio
 * drops the later server, with a warning here). Sidecars: one listener per
 * service port with an HTTP table (`<port>`) and/or a TCP table.
 *
 * Warnings go to the caller's diags and into the snapshot (for the dump);
 * identical ones are reported once per build. The only heap memory outside
 * the arena is PCRE2's compiled code, released with the snapshot.
 */
#include "mesh/snapshot.h"

#include "base/arena.h"
#include "base/buf.h"
#include "base/err.h"
#include "base/map.h"
#include "base/str.h"
#include "config/resource.h"
#include "config/selector.h"
#include "config/store.h"
#include "mesh/inbound.h"
#include "mesh/patches.h"
#include "mesh/regex.h"
#include "mesh/scope.h"
#include "mesh/vhosts.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CONNECT_TIMEOUT (10LL * 1000000000LL)

struct keel_snapshot {
    atomic_uint refs;
    struct keel_arena *arena;
    uint64_t version;
    struct keel_proxy_identity id;
    const struct keel_listener *listeners;
    size_t n_listeners;
    const struct keel_route_table **tables;
    size_t n_tables;
    const struct keel_tcp_table **tcp;
    size_t n_tcp;
    struct keel_cluster_set *cs;
    const struct keel_inbound *inbound;
    size_t n_inbound;
    struct keel_diag *diags;
    size_t n_diags, cap_diags;
    struct keel_regex *regexes;
    const struct keel_scope *scope;
    const struct keel_ef_report *efs;
    size_t n_efs;
};

/* ---- build helpers --------------------------------------------------------------------- */

const char *keel_snapshot_strdup(struct keel_snapshot_build *b, const char *s)
{
    return s ? keel_arena_strdup(b->arena, s) : NULL;
}

static void vwarn(struct keel_snapshot_build *b, const struct keel_resource *r, const struct keel_loc *at,
                  const char *path, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    const char *kind = r && r->kind ? r->kind->kind : NULL;
    char key[1600];
    int kn = snprintf(key, sizeof(key), "%s|%s|%s|%s|%s", kind ? kind : "", r ? r->ns : "", r ? r->meta.name : "",
                      path ? path : "", msg);
    size_t klen = kn < 0 ? 0 : (size_t)kn < sizeof(key) ? (size_t)kn : sizeof(key) - 1;
    if (keel_map_get(b->seen, key, klen))
        return;
    const char *kcopy = keel_arena_strndup(b->arena, key, klen);
    if (keel_map_put(b->seen, kcopy, klen, (void *)1, NULL) != 0)
        abort();
    struct keel_loc loc = at && at->line ? *at : r ? r->loc : (struct keel_loc){0};
    if (b->out) {
        size_t from = keel_diags_count(b->out);
        keel_diags_add(b->out, KEEL_SEV_WARNING, &loc, path, "%s", msg);
        keel_diags_set_resource(b->out, from, kind, r ? r->ns : NULL, r ? r->meta.name : NULL);
    }
    struct keel_snapshot *s = b->snap;
    if (s->n_diags == s->cap_diags) {
        size_t cap = s->cap_diags ? s->cap_diags * 2 : 16;
        struct keel_diag *v = keel_arena_xalloc(b->arena, cap * sizeof(*v));
        if (s->n_diags)
            memcpy(v, s->diags, s->n_diags * sizeof(*v));
        s->diags = v;
        s->cap_diags = cap;
    }
    struct keel_diag *d = &s->diags[s->n_diags++];
    memset(d, 0, sizeof(*d));
    d->sev = KEEL_SEV_WARNING;
    d->loc = loc;
    d->loc.file = keel_snapshot_strdup(b, loc.file);
    d->kind = keel_snapshot_strdup(b, kind);
    d->ns = r ? keel_snapshot_strdup(b, r->ns) : NULL;
    d->name = r ? keel_snapshot_strdup(b, r->meta.name) : NULL;
    d->path = keel_snapshot_strdup(b, path);
    d->msg = keel_snapshot_strdup(b, msg);
}

void keel_snapshot_warn(struct keel_snapshot_build *b, const struct keel_resource *r, const char *path, const char *fmt,
                        ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwarn(b, r, NULL, path, fmt, ap);
    va_end(ap);
}

void keel_snapshot_warn_at(struct keel_snapshot_build *b, const struct keel_resource *r, struct keel_loc at,
                           const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vwarn(b, r, &at, path, fmt, ap);
    va_end(ap);
}

static void copy_identity(struct keel_snapshot_build *b, const struct keel_proxy_identity *in,
                          struct keel_proxy_identity *out)
{
    out->kind = in ? in->kind : KEEL_PROXY_SIDECAR;
    out->ns = keel_snapshot_strdup(b, in && !keel_cstr_empty(in->ns) ? in->ns : "default");
    out->service_account = keel_snapshot_strdup(b, in ? in->service_account : NULL);
    out->workload = keel_snapshot_strdup(b, in ? in->workload : NULL);
    if (in && in->n_labels) {
        struct keel_kv_str *kv = keel_arena_xalloc(b->arena, in->n_labels * sizeof(*kv));
        for (size_t i = 0; i < in->n_labels; i++)
            kv[i] = (struct keel_kv_str){keel_snapshot_strdup(b, in->labels[i].key),
                                         keel_snapshot_strdup(b, in->labels[i].value)};
        out->labels = kv;
        out->n_labels = in->n_labels;
    }
}

/* The mesh ConfigMap: `istio` in the root namespace, else the first one holding mesh config. */
static const struct keel_mesh_config *find_mesh(const struct keel_store *st, const char *root_ns)
{
    const struct keel_resource *r = keel_store_get(st, KEEL_KIND_CONFIG_MAP, root_ns, "istio");
    if (r && r->mesh)
        return r->mesh;
    size_t n;
    const struct keel_resource *const *v = keel_store_list(st, KEEL_KIND_CONFIG_MAP, &n);
    for (size_t i = 0; i < n; i++)
        if (v[i]->mesh)
            return v[i]->mesh;
    return NULL;
}

/* ---- listeners ------------------------------------------------------------------------- */

struct lserver {
    struct keel_vhosts_server vs;
    enum keel_proto proto;
    bool plain_http; /* routed by the shared http.<port> table */
    bool https_term; /* HTTPS terminated here: its own table */
};

struct lbuild {
    const char *bind;
    bool bind_set;
    uint32_t port;
    struct lserver *servers;
    size_t n, cap;
};

static void copy_tls(struct keel_snapshot_build *b, const struct keel_server_tls *t, struct keel_listener_tls *o)
{
    o->mode = (int)t->mode;
    o->server_certificate = keel_snapshot_strdup(b, t->server_certificate);
    o->private_key = keel_snapshot_strdup(b, t->private_key);
    o->ca_certificates = keel_snapshot_strdup(b, t->ca_certificates);
    o->credential_name = keel_snapshot_strdup(b, t->credential_name);
    o->min_version = (int)t->min_protocol_version;
    o->max_version = (int)t->max_protocol_version;
    struct {
        const char *const *src;
        size_t n;
        const char *const **dst;
        size_t *dn;
    } lists[] = {
        {(const char *const *)t->credential_names, t->n_credential_names, &o->credential_names, &o->n_credential_names},
        {(const char *const *)t->subject_alt_names, t->n_subject_alt_names, &o->subject_alt_names,
         &o->n_subject_alt_names},
        {(const char *const *)t->cipher_suites, t->n_cipher_suites, &o->cipher_suites, &o->n_cipher_suites},
    };
    for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
        const char **v = keel_arena_xalloc(b->arena, (lists[k].n + 1) * sizeof(char *));
        for (size_t i = 0; i < lists[k].n; i++)
            v[i] = keel_snapshot_strdup(b, lists[k].src[i]);
        *lists[k].dst = v;
        *lists[k].dn = lists[k].n;
    }
}

static void add_table(struct keel_snapshot_build *b, struct keel_arena_vec *tables, const struct keel_route_table *t)
{
    *(const struct keel_route_table **)keel_arena_vec_push(b->arena, tables, sizeof(t)) = t;
}

static void add_tcp(struct keel_snapshot_build *b, struct keel_arena_vec *tcp, const struct keel_tcp_table *t)
{
    *(const struct keel_tcp_table **)keel_arena_vec_push(b->arena, tcp, sizeof(t)) = t;
}

static struct lbuild *listener_for(struct lbuild **ls, size_t *n, size_t *cap, const char *bind, bool bind_set,
                                   uint32_t port)
{
    for (size_t i = 0; i < *n; i++)
        if ((*ls)[i].port == port && strcmp((*ls)[i].bind, bind) == 0)
            return &(*ls)[i];
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        struct lbuild *nv = realloc(*ls, *cap * sizeof(**ls));
        if (!nv)
            abort();
        *ls = nv;
    }
    struct lbuild *l = &(*ls)[(*n)++];
    memset(l, 0, sizeof(*l));
    l->bind = bind;
    l->bind_set = bind_set;
    l->port = port;
    return l;
}

static void gateway_listeners(struct keel_snapshot_build *b, struct keel_cluster_set *cs, struct keel_arena_vec *out,
                              struct keel_arena_vec *tables, struct keel_arena_vec *tcp)
{
    size_t ng;
    const struct keel_resource *const *gws = keel_store_list(b->store, KEEL_KIND_GATEWAY, &ng);
    struct lbuild *ls = NULL;
    size_t nl = 0, capl = 0;
    for (size_t g = 0; g < ng; g++) {
        const struct keel_gateway *gw = gws[g]->spec;
        if (!gw || !keel_labels_match(gw->selector, gw->n_selector, b->id->labels, b->id->n_labels))
            continue;
        const char *gw_name = keel_arena_printf(b->arena, "%s/%s", gws[g]->ns, gws[g]->meta.name);
        for (size_t i = 0; i < gw->n_servers; i++) {
            const struct keel_server *srv = &gw->servers[i];
            if (!srv->port || srv->port->number <= 0 || srv->port->number > 65535)
                continue;
            bool bind_set = !keel_cstr_empty(srv->bind);
            struct lbuild *l =
                listener_for(&ls, &nl, &capl, bind_set ? srv->bind : "0.0.0.0", bind_set, (uint32_t)srv->port->number);
            struct lserver s = {.vs = {gws[g], srv, gw_name}};
            s.proto = keel_clusters_proto_parse(srv->port->protocol);
            s.plain_http = keel_clusters_proto_is_http(s.proto);
            s.https_term = s.proto == KEEL_PROTO_HTTPS && srv->tls &&
                           srv->tls->mode != KEEL_SERVER_TLS_MODE_PASSTHROUGH &&
                           srv->tls->mode != KEEL_SERVER_TLS_MODE_AUTO_PASSTHROUGH;
            if (l->n && l->servers[0].plain_http != s.plain_http) {
                char path[64];
                snprintf(path, sizeof(path), "spec.servers[%zu].port", i);
                keel_snapshot_warn(b, gws[g], path,
                                   "port %u is already used by a %s server of Gateway %s; plain HTTP and TLS/TCP "
                                   "servers cannot share a port: this server is ignored",
                                   l->port, l->servers[0].plain_http ? "plain HTTP" : "TLS/TCP",
                                   l->servers[0].vs.gw_name);
                continue;
            }
            if (l->n == l->cap) {
                l->cap = l->cap ? l->cap * 2 : 4;
                struct lserver *nv = realloc(l->servers, l->cap * sizeof(*nv));
                if (!nv)
                    abort();
                l->servers = nv;
            }
            l->servers[l->n++] = s;
        }
    }
    for (size_t i = 0; i < nl; i++) {
        struct lbuild *l = &ls[i];
        struct keel_listener *o = keel_arena_vec_push(b->arena, out, sizeof(*o));
        memset(o, 0, sizeof(*o));
        o->bind = keel_snapshot_strdup(b, l->bind);
        o->port = l->port;
        o->name = keel_arena_printf(b->arena, "%s_%u", l->bind, l->port);
        o->proto = l->servers[0].proto;
        struct keel_listener_chain *chains = keel_arena_xalloc(b->arena, l->n * sizeof(*chains));
        const struct keel_route_table *shared = NULL;
        if (l->servers[0].plain_http) {
            struct keel_vhosts_server *sv = malloc(l->n * sizeof(*sv));
            if (!sv)
                abort();
            for (size_t k = 0; k < l->n; k++)
                sv[k] = l->servers[k].vs;
            const char *name = l->bind_set ? keel_arena_printf(b->arena, "http.%u.%s", l->port, l->bind)
                                           : keel_arena_printf(b->arena, "http.%u", l->port);
            shared = keel_vhosts_build_gateway(b, cs, name, l->port, sv, l->n);
            free(sv);
            add_table(b, tables, shared);
        }
        for (size_t k = 0; k < l->n; k++) {
            const struct lserver *s = &l->servers[k];
            const struct keel_server *srv = s->vs.server;
            struct keel_listener_chain *c = &chains[k];
            c->gateway = s->vs.gw_name;
            c->port_name = keel_snapshot_strdup(b, srv->port->name);
            c->proto = s->proto;
            const char **hosts = keel_arena_xalloc(b->arena, (srv->n_hosts + 1) * sizeof(char *));
            for (size_t h = 0; h < srv->n_hosts; h++)
                hosts[h] = keel_snapshot_strdup(b, srv->hosts[h]);
            c->hosts = hosts;
            c->n_hosts = srv->n_hosts;
            if (srv->tls) {
                c->https_redirect = srv->tls->https_redirect;
                c->has_tls = !s->plain_http; /* plain HTTP servers may only carry httpsRedirect */
                if (c->has_tls)
                    copy_tls(b, srv->tls, &c->tls);
            }
            if (s->plain_http) {
                c->routes = shared;
            } else if (s->https_term) {
                const char *name =
                    keel_arena_printf(b->arena, "https.%u.%s.%s.%s", l->port, srv->port->name ? srv->port->name : "",
                                      s->vs.gateway->meta.name, s->vs.gateway->ns);
                c->routes = keel_vhosts_build_gateway(b, cs, name, l->port, &s->vs, 1);
                add_table(b, tables, c->routes);
            } else {
                c->tcp = keel_vhosts_build_gateway_tcp(b, cs, &s->vs);
                add_tcp(b, tcp, c->tcp);
            }
        }
        o->chains = chains;
        o->n_chains = l->n;
        free(l->servers);
    }
    free(ls);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void sidecar_listeners(struct keel_snapshot_build *b, struct keel_cluster_set *cs, struct keel_arena_vec *out,
                              struct keel_arena_vec *tables, struct keel_arena_vec *tcp)
{
    size_t ns, np = 0;
    const struct keel_service *const *svcs = keel_clusters_services(cs, &ns);
    for (size_t i = 0; i < ns; i++)
        np += svcs[i]->n_ports;
    bool has_http = false;
    uint32_t *ports = malloc((np + 1) * sizeof(*ports));
    if (!ports)
        abort();
    np = 0;
    for (size_t i = 0; i < ns; i++)
        for (size_t k = 0; k < svcs[i]->n_ports; k++)
            ports[np++] = svcs[i]->ports[k].number;
    qsort(ports, np, sizeof(*ports), cmp_u32);
    for (size_t i = 0; i < np; i++) {
        if (i && ports[i] == ports[i - 1])
            continue;
        uint32_t port = ports[i];
        bool http = false, l4 = false;
        for (size_t k = 0; k < ns; k++) {
            const struct keel_svc_port *sp = keel_clusters_service_port(svcs[k], port);
            if (!sp || !keel_scope_service(b->scope, svcs[k]->ns, svcs[k]->host, port))
                continue;
            http |= keel_clusters_proto_is_http(sp->proto) || sp->proto == KEEL_PROTO_UNKNOWN;
            l4 |= !keel_clusters_proto_is_http(sp->proto);
        }
        if (!http && !l4)
            continue; /* no service imported on this port (Sidecar egress) */
        struct keel_listener *o = keel_arena_vec_push(b->arena, out, sizeof(*o));
        memset(o, 0, sizeof(*o));
        o->bind = "0.0.0.0";
        o->port = port;
        o->name = keel_arena_printf(b->arena, "0.0.0.0_%u", port);
        o->proto = http && !l4 ? KEEL_PROTO_HTTP : !http ? KEEL_PROTO_TCP : KEEL_PROTO_UNKNOWN;
        struct keel_listener_chain *chains = keel_arena_xalloc(b->arena, 2 * sizeof(*chains));
        size_t nc = 0;
        if (http) {
            chains[nc].proto = KEEL_PROTO_HTTP;
            chains[nc].routes = keel_vhosts_build_sidecar(b, cs, port);
            add_table(b, tables, chains[nc++].routes);
        }
        if (l4) {
            chains[nc].proto = KEEL_PROTO_TCP;
            chains[nc].tcp = keel_vhosts_build_sidecar_tcp(b, cs, port);
            if (chains[nc].tcp)
                add_tcp(b, tcp, chains[nc++].tcp);
        }
        o->chains = chains;
        o->n_chains = nc;
        has_http |= http;
    }
    free(ports);
    /* no HTTP port imported at all (Sidecar egress hosts "~/any", or no services): one table with only the outbound
     * traffic policy's `*` host, so requests to unknown hosts still get allow_any / block_all and never fall to a
     * later (inbound) table */
    if (!has_http)
        add_table(b, tables, keel_vhosts_build_sidecar(b, cs, 0));
}

/* ---- build ----------------------------------------------------------------------------- */

struct keel_snapshot *keel_snapshot_build(const struct keel_store *store, const struct keel_proxy_identity *id,
                                          const struct keel_mesh_defaults *mesh, const struct keel_dns_answers *dns,
                                          struct keel_diags *diags)
{
    struct keel_arena *arena = keel_arena_new(64 * 1024);
    if (!arena) {
        fprintf(stderr, "keel: out of memory compiling a snapshot\n");
        abort();
    }
    struct keel_snapshot *s = keel_arena_xalloc(arena, sizeof(*s));
    atomic_init(&s->refs, 1u);
    s->arena = arena;
    s->version = keel_store_generation(store);
    struct keel_map seen;
    keel_map_init(&seen);
    struct keel_snapshot_build b = {.snap = s, .arena = arena, .store = store, .dns = dns, .out = diags, .seen = &seen};
    copy_identity(&b, id, &s->id);
    b.id = &s->id;
    b.ns = s->id.ns;
    const struct keel_mesh_defaults *md = mesh ? mesh : keel_store_mesh_defaults(store);
    b.domain = keel_snapshot_strdup(&b, md && !keel_cstr_empty(md->domain) ? md->domain : "cluster.local");
    b.root_ns = keel_snapshot_strdup(&b, md && !keel_cstr_empty(md->root_ns) ? md->root_ns : "istio-system");
    b.mesh = find_mesh(store, b.root_ns);
    b.connect_timeout = b.mesh && b.mesh->connect_timeout > 0 ? b.mesh->connect_timeout : DEFAULT_CONNECT_TIMEOUT;
    const struct keel_mesh_outbound_traffic_policy *otp = b.mesh ? b.mesh->outbound_traffic_policy : NULL;
    b.registry_only =
        otp && keel_obj_has(&otp->_o, "mode") && otp->mode == KEEL_MESH_OUTBOUND_TRAFFIC_POLICY_MODE_REGISTRY_ONLY;
    b.scope = keel_scope_build(&b); /* may override registry_only (Sidecar outboundTrafficPolicy) */
    s->scope = b.scope;

    s->cs = keel_clusters_build(&b);
    keel_vhosts_prepare(&b, s->cs);
    struct keel_arena_vec listeners = {0}, tables = {0}, tcp = {0};
    if (s->id.kind == KEEL_PROXY_ROUTER)
        gateway_listeners(&b, s->cs, &listeners, &tables, &tcp);
    else
        sidecar_listeners(&b, s->cs, &listeners, &tables, &tcp);
    keel_inbound_tables(&b, s->cs, &tables, &tcp);
    s->efs = keel_patches_apply(&b, listeners.v, listeners.n, &s->n_efs);
    s->inbound = b.inbound;
    s->n_inbound = b.n_inbound;
    s->listeners = listeners.v;
    s->n_listeners = listeners.n;
    s->tables = tables.v;
    s->n_tables = tables.n;
    s->tcp = tcp.v;
    s->n_tcp = tcp.n;
    s->regexes = b.regexes;
    keel_map_free(&seen);
    return s;
}

struct keel_snapshot *keel_snapshot_ref(struct keel_snapshot *s)
{
    if (s)
        atomic_fetch_add_explicit(&s->refs, 1u, memory_order_relaxed);
    return s;
}

void keel_snapshot_unref(struct keel_snapshot *s)
{
    if (!s || atomic_fetch_sub_explicit(&s->refs, 1u, memory_order_acq_rel) != 1u)
        return;
    keel_regex_release(s->regexes);
    keel_arena_free(s->arena); /* s itself lives in the arena */
}

/* ---- reads ----------------------------------------------------------------------------- */

uint64_t keel_snapshot_version(const struct keel_snapshot *s)
{
    return s->version;
}

const struct keel_proxy_identity *keel_snapshot_identity(const struct keel_snapshot *s)
{
    return &s->id;
}

const struct keel_listener *keel_snapshot_listeners(const struct keel_snapshot *s, size_t *n)
{
    *n = s->n_listeners;
    return s->listeners;
}

const struct keel_listener *keel_snapshot_listener(const struct keel_snapshot *s, uint32_t port)
{
    for (size_t i = 0; i < s->n_listeners; i++)
        if (s->listeners[i].port == port)
            return &s->listeners[i];
    return NULL;
}

const struct keel_route_table *keel_snapshot_route_table(const struct keel_snapshot *s, const char *name)
{
    for (size_t i = 0; name && i < s->n_tables; i++)
        if (strcmp(s->tables[i]->name, name) == 0)
            return s->tables[i];
    return NULL;
}

const struct keel_route_table *const *keel_snapshot_route_tables(const struct keel_snapshot *s, size_t *n)
{
    *n = s->n_tables;
    return s->tables;
}

const struct keel_tcp_table *keel_snapshot_tcp_table(const struct keel_snapshot *s, uint32_t port)
{
    for (size_t i = 0; i < s->n_listeners; i++)
        for (size_t k = 0; s->listeners[i].port == port && k < s->listeners[i].n_chains; k++)
            if (s->listeners[i].chains[k].tcp)
                return s->listeners[i].chains[k].tcp;
    return NULL;
}

const struct keel_inbound *keel_snapshot_inbounds(const struct keel_snapshot *s, size_t *n)
{
    *n = s->n_inbound;
    return s->inbound;
}

const struct keel_inbound *keel_snapshot_inbound(const struct keel_snapshot *s, uint32_t port)
{
    size_t lo = 0, hi = s->n_inbound;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->inbound[mid].port == port)
            return &s->inbound[mid];
        if (s->inbound[mid].port < port)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const struct keel_inbound *keel_snapshot_inbound_for_authority(const struct keel_snapshot *s, uint32_t port)
{
    const struct keel_inbound *in = keel_snapshot_inbound(s, port);
    for (size_t i = 0; !in && i < s->n_inbound; i++)
        for (size_t k = 0; k < s->inbound[i].n_services; k++)
            if (s->inbound[i].service_ports[k] == port)
                return &s->inbound[i];
    return in;
}

const struct keel_cluster *keel_snapshot_cluster(const struct keel_snapshot *s, const char *name)
{
    return keel_clusters_find(s->cs, name);
}

const struct keel_cluster *const *keel_snapshot_clusters(const struct keel_snapshot *s, size_t *n)
{
    return keel_clusters_all(s->cs, n);
}

const struct keel_cluster_set *keel_snapshot_cluster_set(const struct keel_snapshot *s)
{
    return s->cs;
}

const char *const *keel_snapshot_dns_names(const struct keel_snapshot *s, size_t *n)
{
    return keel_clusters_dns_names(s->cs, n);
}

const struct keel_diag *keel_snapshot_diags(const struct keel_snapshot *s, size_t *n)
{
    *n = s->n_diags;
    return s->diags;
}

/* ---- JSON writer ------------------------------------------------------------------------ */

static void jput(struct keel_snapshot_json *j, int rc)
{
    if (!j->err && rc)
        j->err = rc;
}

static void jkey(struct keel_snapshot_json *j, const char *key)
{
    if (j->err)
        return;
    if (j->more[j->depth])
        jput(j, keel_buf_putc(j->buf, ','));
    j->more[j->depth] = true;
    if (key) {
        jput(j, keel_buf_json_str(j->buf, key));
        jput(j, keel_buf_putc(j->buf, ':'));
    }
}

void keel_snapshot_json_open(struct keel_snapshot_json *j, const char *key, char bracket)
{
    jkey(j, key);
    if (j->err)
        return;
    if (j->depth + 1 >= KEEL_SNAPSHOT_JSON_DEPTH) {
        j->err = KEEL_ETOOBIG;
        return;
    }
    jput(j, keel_buf_putc(j->buf, bracket));
    j->more[++j->depth] = false;
}

void keel_snapshot_json_close(struct keel_snapshot_json *j, char bracket)
{
    if (j->err)
        return;
    j->depth--;
    jput(j, keel_buf_putc(j->buf, bracket));
}

void keel_snapshot_json_str(struct keel_snapshot_json *j, const char *key, const char *val)
{
    jkey(j, key);
    if (!j->err)
        jput(j, val ? keel_buf_json_str(j->buf, val) : keel_buf_puts(j->buf, "null"));
}

void keel_snapshot_json_strn(struct keel_snapshot_json *j, const char *key, const char *val, size_t n)
{
    jkey(j, key);
    if (j->err)
        return;
    static const char hex[] = "0123456789abcdef";
    jput(j, keel_buf_putc(j->buf, '"'));
    for (size_t i = 0; i < n && !j->err; i++) {
        unsigned char c = (unsigned char)val[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            jput(j, keel_buf_append(j->buf, e, 2));
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            jput(j, keel_buf_append(j->buf, e, 6));
        } else {
            jput(j, keel_buf_putc(j->buf, (char)c));
        }
    }
    jput(j, keel_buf_putc(j->buf, '"'));
}

void keel_snapshot_json_int(struct keel_snapshot_json *j, const char *key, int64_t val)
{
    jkey(j, key);
    if (!j->err)
        jput(j, keel_buf_printf(j->buf, "%lld", (long long)val));
}

void keel_snapshot_json_bool(struct keel_snapshot_json *j, const char *key, bool val)
{
    jkey(j, key);
    if (!j->err)
        jput(j, keel_buf_puts(j->buf, val ? "true" : "false"));
}

void keel_snapshot_json_labels(struct keel_snapshot_json *j, const char *key, const struct keel_kv_str *kv, size_t n)
{
    keel_snapshot_json_open(j, key, '{');
    for (size_t i = 0; i < n; i++)
        keel_snapshot_json_str(j, kv[i].key, kv[i].value);
    keel_snapshot_json_close(j, '}');
}

void keel_snapshot_json_strs(struct keel_snapshot_json *j, const char *key, const char *const *v, size_t n)
{
    keel_snapshot_json_open(j, key, '[');
    for (size_t i = 0; i < n; i++)
        keel_snapshot_json_str(j, NULL, v[i]);
    keel_snapshot_json_close(j, ']');
}

/* ---- dump ------------------------------------------------------------------------------- */

static const char *const server_tls_modes[] = {"PASSTHROUGH",      "SIMPLE",       "MUTUAL",
                                               "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"};

static void dump_listener(struct keel_snapshot_json *j, const struct keel_listener *l)
{
    keel_snapshot_json_open(j, NULL, '{');
    keel_snapshot_json_str(j, "name", l->name);
    keel_snapshot_json_str(j, "bind", l->bind);
    keel_snapshot_json_int(j, "port", l->port);
    keel_snapshot_json_str(j, "protocol", keel_clusters_proto_name(l->proto));
    keel_snapshot_json_open(j, "chains", '[');
    for (size_t i = 0; i < l->n_chains; i++) {
        const struct keel_listener_chain *c = &l->chains[i];
        keel_snapshot_json_open(j, NULL, '{');
        if (c->gateway) {
            keel_snapshot_json_str(j, "gateway", c->gateway);
            keel_snapshot_json_str(j, "portName", c->port_name);
            keel_snapshot_json_strs(j, "hosts", c->hosts, c->n_hosts);
        }
        keel_snapshot_json_str(j, "protocol", keel_clusters_proto_name(c->proto));
        if (c->has_tls) {
            keel_snapshot_json_open(j, "tls", '{');
            if ((unsigned)c->tls.mode < sizeof(server_tls_modes) / sizeof(server_tls_modes[0]))
                keel_snapshot_json_str(j, "mode", server_tls_modes[c->tls.mode]);
            if (c->tls.credential_name)
                keel_snapshot_json_str(j, "credentialName", c->tls.credential_name);
            if (c->tls.server_certificate)
                keel_snapshot_json_str(j, "serverCertificate", c->tls.server_certificate);
            if (c->tls.private_key)
                keel_snapshot_json_str(j, "privateKey", c->tls.private_key);
            if (c->tls.ca_certificates)
                keel_snapshot_json_str(j, "caCertificates", c->tls.ca_certificates);
            keel_snapshot_json_close(j, '}');
        }
        if (c->https_redirect)
            keel_snapshot_json_bool(j, "httpsRedirect", true);
        if (c->routes)
            keel_snapshot_json_str(j, "routeTable", c->routes->name);
        if (c->tcp)
            keel_snapshot_json_str(j, "tcpTable", c->tcp->name);
        keel_snapshot_json_close(j, '}');
    }
    keel_snapshot_json_close(j, ']');
    if (l->n_sockopts) {
        keel_snapshot_json_open(j, "socketOptions", '[');
        for (size_t i = 0; i < l->n_sockopts; i++) {
            const struct keel_ef_sockopt *o = &l->sockopts[i];
            keel_snapshot_json_open(j, NULL, '{');
            keel_snapshot_json_str(j, "option", keel_envoyfilter_sockopt_name(o->level, o->name));
            keel_snapshot_json_int(j, "level", o->level);
            keel_snapshot_json_int(j, "name", o->name);
            keel_snapshot_json_int(j, "value", o->value);
            keel_snapshot_json_close(j, '}');
        }
        keel_snapshot_json_close(j, ']');
    }
    keel_snapshot_json_close(j, '}');
}

int keel_snapshot_dump_json(const struct keel_snapshot *s, struct keel_buf *out)
{
    struct keel_snapshot_json j = {.buf = out};
    keel_snapshot_json_open(&j, NULL, '{');
    keel_snapshot_json_int(&j, "version", (int64_t)s->version);
    keel_snapshot_json_open(&j, "identity", '{');
    keel_snapshot_json_str(&j, "kind", s->id.kind == KEEL_PROXY_ROUTER ? "router" : "sidecar");
    keel_snapshot_json_str(&j, "namespace", s->id.ns);
    keel_snapshot_json_labels(&j, "labels", s->id.labels, s->id.n_labels);
    keel_snapshot_json_str(&j, "serviceAccount", s->id.service_account);
    keel_snapshot_json_str(&j, "workload", s->id.workload);
    keel_snapshot_json_close(&j, '}');
    keel_snapshot_json_open(&j, "listeners", '[');
    for (size_t i = 0; i < s->n_listeners; i++)
        dump_listener(&j, &s->listeners[i]);
    keel_snapshot_json_close(&j, ']');
    keel_snapshot_json_open(&j, "routeTables", '[');
    for (size_t i = 0; i < s->n_tables; i++)
        keel_vhosts_dump_table(s->tables[i], &j);
    keel_snapshot_json_close(&j, ']');
    keel_snapshot_json_open(&j, "tcpTables", '[');
    for (size_t i = 0; i < s->n_tcp; i++)
        keel_vhosts_dump_tcp(s->tcp[i], &j);
    keel_snapshot_json_close(&j, ']');
    keel_inbound_dump_json(s->inbound, s->n_inbound, &j);
    keel_scope_dump_json(s->scope, &j);
    keel_patches_dump_json(s->efs, s->n_efs, &j);
    keel_clusters_dump_json(s->cs, &j);
    keel_snapshot_json_open(&j, "diagnostics", '[');
    for (size_t i = 0; i < s->n_diags; i++) {
        const struct keel_diag *d = &s->diags[i];
        keel_snapshot_json_open(&j, NULL, '{');
        keel_snapshot_json_str(&j, "severity", d->sev == KEEL_SEV_ERROR ? "error" : "warning");
        if (d->kind) {
            char res[600];
            snprintf(res, sizeof(res), "%s %s/%s", d->kind, d->ns ? d->ns : "", d->name ? d->name : "");
            keel_snapshot_json_str(&j, "resource", res);
        }
        if (d->loc.file) {
            char at[600];
            snprintf(at, sizeof(at), "%s:%u:%u", d->loc.file, d->loc.line, d->loc.col);
            keel_snapshot_json_str(&j, "at", at);
        }
        if (d->path)
            keel_snapshot_json_str(&j, "path", d->path);
        keel_snapshot_json_str(&j, "message", d->msg);
        keel_snapshot_json_close(&j, '}');
    }
    keel_snapshot_json_close(&j, ']');
    keel_snapshot_json_close(&j, '}');
    return j.err;
}
