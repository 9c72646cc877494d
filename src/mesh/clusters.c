/*
 * clusters.c - service registry, endpoints and clusters of a snapshot (see
 * clusters.h).
 *
 * Build order: (1) the registry: visible Kubernetes Services, then the hosts
 * of visible ServiceEntries, oldest first; a host defined twice keeps the
 * definition from the proxy's own namespace, else the oldest, with a
 * warning. (2) Per service, the DestinationRule (store lookup, three tiers)
 * merged as istiod merges it: the first DR with a trafficPolicy gives the
 * policy, subsets are concatenated, first name wins. (3) Per service port,
 * the endpoint list (see clusters.h for the sources), the default cluster
 * and one cluster per subset; endpoints that are DNS names take the
 * caller's answers (clusters.h, "DNS names"). (4) PassthroughCluster and
 * BlackHoleCluster. (5) Clusters sorted by name for O(log n) lookup and
 * stable dumps.
 *
 * Everything is allocated in the snapshot arena; build-time bookkeeping that
 * points into the store (struct svcb) is on the heap of the build only and
 * is not reachable from the snapshot.
 */
#include "mesh/clusters.h"

#include "base/arena.h"
#include "base/err.h"
#include "base/map.h"
#include "base/str.h"
#include "config/host.h"
#include "config/node.h"
#include "config/resource.h"
#include "config/selector.h"
#include "config/store.h"
#include "mesh/inbound.h"
#include "mesh/scope.h"
#include "mesh/snapshot.h"

#include <arpa/inet.h>
#include <strings.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_SEC 1000000000LL
#define SERVICE_NAME_LABEL "kubernetes.io/service-name"

struct keel_cluster_set {
    const struct keel_service *const *services;
    size_t n_services;
    struct keel_host_index *by_host;            /* exact hosts -> struct keel_service * */
    const struct keel_cluster *const *clusters; /* sorted by name */
    size_t n_clusters;
    const char *const *dns_names; /* sorted, unique */
    size_t n_dns_names;
};

/* build-time view of one service (not part of the snapshot) */
struct svcb {
    struct keel_service *pub;
    const struct keel_resource *res;
    const struct keel_service_spec *k8s; /* Kubernetes Service spec */
    const struct keel_service_entry *se; /* ServiceEntry spec */
    const char *se_host;                 /* the SE host as written */
};

static const char *dup(struct keel_snapshot_build *b, const char *s)
{
    return keel_snapshot_strdup(b, s);
}

static bool is_ip(const char *s)
{
    unsigned char buf[16];
    return s && (inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1);
}

/* ---- protocols ------------------------------------------------------------------- */

static const char *const proto_names[] = {
    [KEEL_PROTO_UNKNOWN] = "",
    [KEEL_PROTO_HTTP] = "HTTP",
    [KEEL_PROTO_HTTP2] = "HTTP2",
    [KEEL_PROTO_HTTPS] = "HTTPS",
    [KEEL_PROTO_GRPC] = "GRPC",
    [KEEL_PROTO_GRPC_WEB] = "GRPC-WEB",
    [KEEL_PROTO_HTTP_PROXY] = "HTTP_PROXY",
    [KEEL_PROTO_TCP] = "TCP",
    [KEEL_PROTO_TLS] = "TLS",
    [KEEL_PROTO_MONGO] = "MONGO",
    [KEEL_PROTO_MYSQL] = "MYSQL",
    [KEEL_PROTO_REDIS] = "REDIS",
    [KEEL_PROTO_UDP] = "UDP",
};

static enum keel_proto proto_parse_n(const char *s, size_t n)
{
    for (size_t i = 1; i < sizeof(proto_names) / sizeof(proto_names[0]); i++)
        if (strlen(proto_names[i]) == n && strncasecmp(s, proto_names[i], n) == 0)
            return (enum keel_proto)i;
    return KEEL_PROTO_UNKNOWN;
}

enum keel_proto keel_clusters_proto_parse(const char *s)
{
    return s ? proto_parse_n(s, strlen(s)) : KEEL_PROTO_UNKNOWN;
}

const char *keel_clusters_proto_name(enum keel_proto p)
{
    return (unsigned)p < sizeof(proto_names) / sizeof(proto_names[0]) ? proto_names[p] : "";
}

bool keel_clusters_proto_is_http(enum keel_proto p)
{
    return p == KEEL_PROTO_HTTP || p == KEEL_PROTO_HTTP2 || p == KEEL_PROTO_GRPC || p == KEEL_PROTO_GRPC_WEB;
}

/* Kubernetes port protocol (pkg/config/kube/conversion.go): appProtocol wins,
 * then the port-name prefix before '-'; well-known server-first ports are TCP. */
static enum keel_proto k8s_port_proto(const struct keel_k8s_service_port *p)
{
    const char *ap = p->app_protocol;
    if (!keel_cstr_empty(ap)) {
        if (strcmp(ap, "kubernetes.io/h2c") == 0)
            return KEEL_PROTO_HTTP2;
        if (strcmp(ap, "kubernetes.io/ws") == 0)
            return KEEL_PROTO_HTTP;
        if (strcmp(ap, "kubernetes.io/wss") == 0)
            return KEEL_PROTO_HTTPS;
        enum keel_proto r = keel_clusters_proto_parse(ap);
        if (r != KEEL_PROTO_UNKNOWN)
            return r;
    }
    const char *name = p->name ? p->name : "";
    const char *dash = strchr(name, '-');
    enum keel_proto r = proto_parse_n(name, dash ? (size_t)(dash - name) : strlen(name));
    if (r == KEEL_PROTO_UNKNOWN && dash && strncasecmp(name, "grpc-web", 8) == 0)
        r = KEEL_PROTO_GRPC_WEB;
    if (r != KEEL_PROTO_UNKNOWN)
        return r;
    switch (p->port) {
    case 25: /* SMTP, DNS, MySQL, MongoDB: server-first, sniffing would break them */
    case 53:
    case 3306:
    case 27017:
        return KEEL_PROTO_TCP;
    default:
        return KEEL_PROTO_UNKNOWN;
    }
}

/* ---- registry -------------------------------------------------------------------- */

static void add_address(struct keel_snapshot_build *b, struct keel_arena_vec *v, const char *a)
{
    if (keel_cstr_empty(a) || strcmp(a, "None") == 0)
        return;
    *(const char **)keel_arena_vec_push(b->arena, v, sizeof(char *)) = dup(b, a);
}

static struct svcb *new_svc(struct keel_snapshot_build *b, struct keel_arena_vec *all, const struct keel_resource *r)
{
    struct svcb *sb = keel_arena_vec_push(b->arena, all, sizeof(struct svcb));
    memset(sb, 0, sizeof(*sb));
    sb->pub = keel_arena_xalloc(b->arena, sizeof(*sb->pub));
    sb->res = r;
    sb->pub->ns = dup(b, r->ns);
    sb->pub->name = dup(b, r->meta.name);
    return sb;
}

static void k8s_service(struct keel_snapshot_build *b, struct keel_arena_vec *all, const struct keel_resource *r)
{
    const struct keel_service_object *o = r->body;
    const struct keel_service_spec *sp = o ? o->spec : NULL;
    if (!sp)
        return;
    struct svcb *sb = new_svc(b, all, r);
    struct keel_service *s = sb->pub;
    sb->k8s = sp;
    s->kind = KEEL_SERVICE_K8S;
    char *h = keel_arena_printf(b->arena, "%s.%s.svc.%s", r->meta.name, r->ns, b->domain);
    s->host = keel_arena_strdup_lower(b->arena, h);
    s->resolution = KEEL_RESOLUTION_STATIC;
    struct keel_arena_vec addrs = {0};
    if (sp->type == KEEL_SERVICE_SPEC_TYPE_EXTERNALNAME) {
        s->resolution = KEEL_RESOLUTION_DNS;
    } else if (sp->cluster_ip && strcmp(sp->cluster_ip, "None") == 0) {
        s->resolution = KEEL_RESOLUTION_NONE; /* headless: passthrough */
    } else {
        add_address(b, &addrs, sp->cluster_ip);
        for (size_t i = 0; i < sp->n_cluster_ips; i++)
            if (!sp->cluster_ip || strcmp(sp->cluster_ips[i], sp->cluster_ip) != 0)
                add_address(b, &addrs, sp->cluster_ips[i]);
    }
    s->addresses = addrs.v;
    s->n_addresses = addrs.n;
    struct keel_svc_port *ports = keel_arena_xalloc(b->arena, (sp->n_ports + 1) * sizeof(*ports));
    size_t n = 0;
    for (size_t i = 0; i < sp->n_ports; i++) {
        const struct keel_k8s_service_port *p = &sp->ports[i];
        if (p->protocol && (strcasecmp(p->protocol, "UDP") == 0 || strcasecmp(p->protocol, "SCTP") == 0))
            continue; /* Istio ignores non-TCP transports */
        if (p->port <= 0 || p->port > 65535)
            continue;
        struct keel_svc_port *q = &ports[n++];
        q->number = (uint32_t)p->port;
        q->name = dup(b, p->name ? p->name : "");
        q->proto = k8s_port_proto(p);
        if (p->target_port.is_str)
            q->target_name = dup(b, p->target_port.s);
        else if (p->target_port.i > 0 && p->target_port.i <= 65535)
            q->target_port = (uint32_t)p->target_port.i;
    }
    s->ports = ports;
    s->n_ports = n;
}

static void service_entry(struct keel_snapshot_build *b, struct keel_arena_vec *all, const struct keel_resource *r)
{
    const struct keel_service_entry *se = r->spec;
    if (!se)
        return;
    struct keel_svc_port *ports = keel_arena_xalloc(b->arena, (se->n_ports + 1) * sizeof(*ports));
    size_t n = 0;
    for (size_t i = 0; i < se->n_ports; i++) {
        const struct keel_service_port *p = &se->ports[i];
        if (p->number <= 0 || p->number > 65535)
            continue;
        struct keel_svc_port *q = &ports[n++];
        q->number = (uint32_t)p->number;
        q->name = dup(b, p->name ? p->name : "");
        q->proto = keel_clusters_proto_parse(p->protocol);
        if (p->target_port > 0 && p->target_port <= 65535)
            q->target_port = (uint32_t)p->target_port;
    }
    struct keel_arena_vec addrs = {0};
    for (size_t i = 0; i < se->n_addresses; i++)
        add_address(b, &addrs, se->addresses[i]);
    enum keel_resolution res;
    switch (se->resolution) {
    case KEEL_SERVICE_ENTRY_RESOLUTION_STATIC:
        res = KEEL_RESOLUTION_STATIC;
        break;
    case KEEL_SERVICE_ENTRY_RESOLUTION_DNS:
        res = KEEL_RESOLUTION_DNS;
        break;
    case KEEL_SERVICE_ENTRY_RESOLUTION_DNS_ROUND_ROBIN:
        res = KEEL_RESOLUTION_DNS_RR;
        break;
    case KEEL_SERVICE_ENTRY_RESOLUTION_DYNAMIC_DNS:
        res = KEEL_RESOLUTION_DYNAMIC_DNS;
        break;
    default:
        res = KEEL_RESOLUTION_NONE;
        break;
    }
    for (size_t h = 0; h < se->n_hosts; h++) {
        if (keel_cstr_empty(se->hosts[h]))
            continue;
        struct svcb *sb = new_svc(b, all, r);
        struct keel_service *s = sb->pub;
        sb->se = se;
        sb->se_host = se->hosts[h];
        s->kind = KEEL_SERVICE_SERVICE_ENTRY;
        s->host = keel_arena_strdup_lower(b->arena, keel_host_fqdn(b->arena, se->hosts[h], r->ns, b->domain));
        s->resolution = res;
        s->mesh_external = se->location == KEEL_SERVICE_ENTRY_LOCATION_MESH_EXTERNAL;
        s->addresses = addrs.v;
        s->n_addresses = addrs.n;
        s->ports = ports;
        s->n_ports = n;
    }
}

/* Visible services, one per host: the proxy's namespace wins, else the first. */
static struct svcb *collect_services(struct keel_snapshot_build *b, size_t *count)
{
    struct keel_arena_vec all = {0};
    size_t n;
    const struct keel_resource *const *v = keel_store_list(b->store, KEEL_KIND_SERVICE, &n);
    for (size_t i = 0; i < n; i++)
        if (keel_store_visible(b->store, v[i], b->ns))
            k8s_service(b, &all, v[i]);
    v = keel_store_list(b->store, KEEL_KIND_SERVICE_ENTRY, &n);
    for (size_t i = 0; i < n; i++)
        if (keel_store_visible(b->store, v[i], b->ns))
            service_entry(b, &all, v[i]);

    struct svcb *in = all.v;
    struct keel_map byhost;
    keel_map_init(&byhost);
    bool *drop = calloc(all.n ? all.n : 1, sizeof(bool));
    if (!drop)
        abort();
    for (size_t i = 0; i < all.n; i++) {
        const char *h = in[i].pub->host;
        void *prev = keel_map_get(&byhost, h, strlen(h));
        if (!prev) {
            if (keel_map_put(&byhost, h, strlen(h), (void *)(uintptr_t)(i + 1), NULL) != 0)
                abort();
            continue;
        }
        size_t j = (size_t)(uintptr_t)prev - 1;
        bool take_new = strcmp(in[j].pub->ns, b->ns) != 0 && strcmp(in[i].pub->ns, b->ns) == 0;
        size_t keep = take_new ? i : j, lose = take_new ? j : i;
        drop[lose] = true;
        if (take_new && keel_map_put(&byhost, h, strlen(h), (void *)(uintptr_t)(i + 1), NULL) != 0)
            abort();
        char kl[300], ll[300];
        keel_resource_label(in[keep].res, kl, sizeof(kl));
        keel_resource_label(in[lose].res, ll, sizeof(ll));
        keel_snapshot_warn(b, in[lose].res, NULL,
                           "host \"%s\" is also defined by %s, which is used; %s is ignored for it", h, kl, ll);
    }
    keel_map_free(&byhost);
    size_t out = 0;
    for (size_t i = 0; i < all.n; i++)
        if (!drop[i])
            in[out++] = in[i];
    free(drop);
    *count = out;
    return in;
}

/* ---- endpoints ------------------------------------------------------------------- */

static const struct keel_kv_str *copy_labels(struct keel_snapshot_build *b, const struct keel_kv_str *kv, size_t n)
{
    if (!n)
        return NULL;
    struct keel_kv_str *c = keel_arena_xalloc(b->arena, n * sizeof(*c));
    for (size_t i = 0; i < n; i++) {
        c[i].key = dup(b, kv[i].key);
        c[i].value = dup(b, kv[i].value);
    }
    return c;
}

/* "10.0.0.1:8080", "[::1]:8080"; the address itself for port 0 (unix sockets) */
static const char *hostport(struct keel_snapshot_build *b, const char *addr, uint32_t port)
{
    if (port == 0)
        return addr;
    size_t n = strlen(addr) + 16;
    char *hp = keel_arena_xalloc(b->arena, n);
    snprintf(hp, n, strchr(addr, ':') ? "[%s]:%u" : "%s:%u", addr, (unsigned)port);
    return hp;
}

static void add_ep(struct keel_snapshot_build *b, struct keel_arena_vec *eps, const char *addr, uint32_t port,
                   int64_t weight, const struct keel_kv_str *labels, size_t n_labels, const char *source)
{
    struct keel_endpoint *e = keel_arena_vec_push(b->arena, eps, sizeof(*e));
    memset(e, 0, sizeof(*e));
    if (keel_cstr_has_prefix(addr, "unix://")) {
        e->flags |= KEEL_EP_UDS;
        port = 0;
    } else if (!is_ip(addr)) {
        e->flags |= KEEL_EP_DNS;
    }
    e->address = dup(b, addr);
    e->port = port;
    e->hostport = hostport(b, e->address, port);
    e->weight = weight > 0 && weight <= UINT32_MAX ? (uint32_t)weight : 1;
    e->labels = copy_labels(b, labels, n_labels);
    e->n_labels = n_labels;
    e->source = dup(b, source);
}

static void workload_ep(struct keel_snapshot_build *b, struct keel_arena_vec *eps, const struct keel_workload_entry *we,
                        const struct keel_svc_port *sp, const char *source, const struct keel_resource *r)
{
    if (keel_cstr_empty(we->address)) {
        keel_snapshot_warn(b, r, "spec.address",
                           "workload without an address (reached through a network gateway) is not supported yet; "
                           "it gets no traffic");
        return;
    }
    uint32_t port = sp->target_port ? sp->target_port : sp->number;
    for (size_t i = 0; i < we->n_ports; i++)
        if (strcmp(we->ports[i].key, sp->name) == 0 && we->ports[i].value > 0 && we->ports[i].value <= 65535)
            port = (uint32_t)we->ports[i].value;
    add_ep(b, eps, we->address, port, we->weight, we->labels, we->n_labels, source);
    struct keel_endpoint *e = &((struct keel_endpoint *)eps->v)[eps->n - 1];
    e->locality = dup(b, keel_cstr_empty(we->locality) ? NULL : we->locality);
    e->network = dup(b, keel_cstr_empty(we->network) ? NULL : we->network);
    e->service_account = dup(b, keel_cstr_empty(we->service_account) ? NULL : we->service_account);
}

static const char *pod_ip(const struct keel_resource *pod)
{
    const struct keel_pod_object *o = pod->body;
    const char *ip = o && o->status ? keel_node_get_str(o->status, "podIP") : NULL;
    return keel_cstr_empty(ip) ? NULL : ip;
}

/* Container port named `name` of a pod, or 0. */
static uint32_t pod_named_port(const struct keel_resource *pod, const char *name)
{
    const struct keel_pod_object *o = pod->body;
    if (!o || !o->spec || !name)
        return 0;
    for (size_t i = 0; i < o->spec->n_containers; i++)
        for (size_t k = 0; k < o->spec->containers[i].n_ports; k++) {
            const struct keel_container_port *cp = &o->spec->containers[i].ports[k];
            if (cp->name && strcmp(cp->name, name) == 0 && cp->container_port > 0)
                return (uint32_t)cp->container_port;
        }
    return 0;
}

static void pod_ep(struct keel_snapshot_build *b, struct keel_arena_vec *eps, const struct keel_resource *pod,
                   const struct keel_svc_port *sp)
{
    const char *ip = pod_ip(pod);
    if (!ip)
        return;
    uint32_t port = sp->target_port ? sp->target_port : sp->number;
    if (sp->target_name) {
        port = pod_named_port(pod, sp->target_name);
        if (!port)
            return; /* no such container port: not an endpoint of this port */
    }
    char src[300];
    snprintf(src, sizeof(src), "Pod %s/%s", pod->ns, pod->meta.name);
    add_ep(b, eps, ip, port, 1, pod->meta.labels, pod->meta.n_labels, src);
    const struct keel_pod_object *o = pod->body;
    if (o && o->spec) {
        struct keel_endpoint *e = &((struct keel_endpoint *)eps->v)[eps->n - 1];
        const char *sa = o->spec->service_account_name ? o->spec->service_account_name : o->spec->service_account;
        e->service_account = dup(b, sa);
    }
}

/* WorkloadEntries and Pods of ns selected by sel (ServiceEntry workloadSelector,
 * Kubernetes Service selector). Pods only when with_pods. */
static void selected_eps(struct keel_snapshot_build *b, struct keel_arena_vec *eps, const char *ns,
                         const struct keel_kv_str *sel, size_t n_sel, const struct keel_svc_port *sp, bool with_pods)
{
    if (!n_sel)
        return; /* an empty selector selects nothing here */
    size_t n;
    const struct keel_resource *const *v = keel_store_list_ns(b->store, KEEL_KIND_WORKLOAD_ENTRY, ns, &n);
    for (size_t i = 0; i < n; i++) {
        const struct keel_workload_entry *we = v[i]->spec;
        if (!we)
            continue;
        const struct keel_kv_str *labels = we->n_labels ? we->labels : v[i]->meta.labels;
        size_t nl = we->n_labels ? we->n_labels : v[i]->meta.n_labels;
        if (!keel_labels_match(sel, n_sel, labels, nl))
            continue;
        char src[300];
        snprintf(src, sizeof(src), "WorkloadEntry %s/%s", v[i]->ns, v[i]->meta.name);
        struct keel_workload_entry tmp = *we;
        tmp.labels = (struct keel_kv_str *)labels;
        tmp.n_labels = nl;
        workload_ep(b, eps, &tmp, sp, src, v[i]);
    }
    if (!with_pods)
        return;
    v = keel_store_list_ns(b->store, KEEL_KIND_POD, ns, &n);
    for (size_t i = 0; i < n; i++)
        if (keel_labels_match(sel, n_sel, v[i]->meta.labels, v[i]->meta.n_labels))
            pod_ep(b, eps, v[i], sp);
}

/* Labels of the Pod a Kubernetes targetRef points at (or none). */
static const struct keel_resource *target_pod(struct keel_snapshot_build *b, const struct keel_node *ref,
                                              const char *ns)
{
    if (!ref)
        return NULL;
    const char *kind = keel_node_get_str(ref, "kind");
    const char *name = keel_node_get_str(ref, "name");
    const char *rns = keel_node_get_str(ref, "namespace");
    if (!name || (kind && strcmp(kind, "Pod") != 0))
        return NULL;
    return keel_store_get(b->store, KEEL_KIND_POD, keel_cstr_empty(rns) ? ns : rns, name);
}

static void k8s_ep(struct keel_snapshot_build *b, struct keel_arena_vec *eps, const char *addr, uint32_t port,
                   const struct keel_resource *pod, const char *source)
{
    add_ep(b, eps, addr, port, 1, pod ? pod->meta.labels : NULL, pod ? pod->meta.n_labels : 0, source);
    if (pod) {
        const struct keel_pod_object *o = pod->body;
        struct keel_endpoint *e = &((struct keel_endpoint *)eps->v)[eps->n - 1];
        if (o && o->spec)
            e->service_account =
                dup(b, o->spec->service_account_name ? o->spec->service_account_name : o->spec->service_account);
    }
}

static bool port_name_eq(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* EndpointSlices labelled for the service; returns whether any exists. */
static bool slice_eps(struct keel_snapshot_build *b, struct keel_arena_vec *eps, const struct svcb *sb,
                      const struct keel_svc_port *sp)
{
    size_t n;
    bool any = false;
    const struct keel_resource *const *v = keel_store_list_ns(b->store, KEEL_KIND_ENDPOINT_SLICE, sb->res->ns, &n);
    for (size_t i = 0; i < n; i++) {
        const char *svc = keel_labels_get(v[i]->meta.labels, v[i]->meta.n_labels, SERVICE_NAME_LABEL);
        if (!svc || strcmp(svc, sb->res->meta.name) != 0)
            continue;
        any = true;
        const struct keel_endpoint_slice_object *o = v[i]->body;
        if (!o)
            continue;
        uint32_t port = 0;
        for (size_t k = 0; k < o->n_ports; k++)
            if (port_name_eq(o->ports[k].name, sp->name) && o->ports[k].port > 0)
                port = (uint32_t)o->ports[k].port;
        if (!port)
            continue;
        char src[300];
        snprintf(src, sizeof(src), "EndpointSlice %s/%s", v[i]->ns, v[i]->meta.name);
        for (size_t k = 0; k < o->n_endpoints; k++) {
            const struct keel_endpoint_slice_endpoints *e = &o->endpoints[k];
            const struct keel_endpoint_slice_conditions *c = e->conditions;
            bool ready = !c || !keel_obj_has(&c->_o, "ready") || c->ready;
            if (!ready && !sb->k8s->publish_not_ready_addresses)
                continue;
            const struct keel_resource *pod = target_pod(b, e->target_ref, v[i]->ns);
            for (size_t a = 0; a < e->n_addresses; a++)
                k8s_ep(b, eps, e->addresses[a], port, pod, src);
        }
    }
    return any;
}

static bool endpoints_eps(struct keel_snapshot_build *b, struct keel_arena_vec *eps, const struct svcb *sb,
                          const struct keel_svc_port *sp)
{
    const struct keel_resource *r = keel_store_get(b->store, KEEL_KIND_ENDPOINTS, sb->res->ns, sb->res->meta.name);
    if (!r || !r->body)
        return false;
    const struct keel_endpoints_object *o = r->body;
    char src[300];
    snprintf(src, sizeof(src), "Endpoints %s/%s", r->ns, r->meta.name);
    for (size_t i = 0; i < o->n_subsets; i++) {
        const struct keel_endpoints_subsets *s = &o->subsets[i];
        uint32_t port = 0;
        for (size_t k = 0; k < s->n_ports; k++)
            if ((port_name_eq(s->ports[k].name, sp->name) || s->n_ports == 1) && s->ports[k].port > 0)
                port = (uint32_t)s->ports[k].port;
        if (!port)
            continue;
        for (size_t k = 0; k < s->n_addresses; k++)
            if (!keel_cstr_empty(s->addresses[k].ip))
                k8s_ep(b, eps, s->addresses[k].ip, port, target_pod(b, s->addresses[k].target_ref, r->ns), src);
        if (sb->k8s->publish_not_ready_addresses)
            for (size_t k = 0; k < s->n_not_ready_addresses; k++)
                if (!keel_cstr_empty(s->not_ready_addresses[k].ip))
                    k8s_ep(b, eps, s->not_ready_addresses[k].ip, port,
                           target_pod(b, s->not_ready_addresses[k].target_ref, r->ns), src);
    }
    return true;
}

/* Every endpoint of (service, port), before subset filtering. */
static void service_eps(struct keel_snapshot_build *b, const struct svcb *sb, const struct keel_svc_port *sp,
                        struct keel_arena_vec *eps)
{
    const struct keel_service *s = sb->pub;
    if (sb->k8s) {
        if (sb->k8s->type == KEEL_SERVICE_SPEC_TYPE_EXTERNALNAME) {
            if (!keel_cstr_empty(sb->k8s->external_name))
                add_ep(b, eps, sb->k8s->external_name, sp->target_port ? sp->target_port : sp->number, 1, NULL, 0,
                       "Service externalName");
            return;
        }
        bool found = slice_eps(b, eps, sb, sp) || endpoints_eps(b, eps, sb, sp);
        /* no endpoint objects (files mode): the selected Pods */
        selected_eps(b, eps, s->ns, sb->k8s->selector, sb->k8s->n_selector, sp, !found);
        return;
    }
    const struct keel_service_entry *se = sb->se;
    char src[300];
    snprintf(src, sizeof(src), "ServiceEntry %s/%s", sb->res->ns, sb->res->meta.name);
    if (s->resolution == KEEL_RESOLUTION_NONE || s->resolution == KEEL_RESOLUTION_DYNAMIC_DNS)
        return;
    for (size_t i = 0; i < se->n_endpoints; i++)
        workload_ep(b, eps, &se->endpoints[i], sp, src, sb->res);
    if (se->workload_selector)
        selected_eps(b, eps, sb->res->ns, se->workload_selector->labels, se->workload_selector->n_labels, sp, true);
    if (!se->n_endpoints && !se->workload_selector &&
        (s->resolution == KEEL_RESOLUTION_DNS || s->resolution == KEEL_RESOLUTION_DNS_RR) &&
        !keel_host_is_wildcard(sb->se_host))
        add_ep(b, eps, s->host, sp->target_port ? sp->target_port : sp->number, 1, NULL, 0, src);
}

/* ---- DNS names ------------------------------------------------------------------- */

static int cmp_answer(const void *key, const void *elem)
{
    return strcmp(key, ((const struct keel_dns_answer *)elem)->name);
}

const struct keel_dns_answer *keel_clusters_dns_answer(const struct keel_dns_answers *answers, const char *name)
{
    if (!answers || !answers->n || !name)
        return NULL;
    return bsearch(name, answers->v, answers->n, sizeof(answers->v[0]), cmp_answer);
}

/* build-time set of the DNS names seen (names: map for dedup, list: the arena copies) */
struct dnsnames {
    struct keel_map seen;
    struct keel_arena_vec list;
};

static void note_name(struct keel_snapshot_build *b, struct dnsnames *dn, const char *name)
{
    size_t len = strlen(name);
    if (keel_map_get(&dn->seen, name, len))
        return;
    const char *copy = dup(b, name);
    if (keel_map_put(&dn->seen, copy, len, (void *)1, NULL) != 0)
        abort();
    *(const char **)keel_arena_vec_push(b->arena, &dn->list, sizeof(char *)) = copy;
}

/* Replaces the KEEL_EP_DNS endpoints of eps by their answers: every address (STRICT_DNS), or the first one
 * (LOGICAL_DNS: Envoy connects to the first address of the latest answer). A name without addresses goes to
 * unres instead. */
static void resolve_eps(struct keel_snapshot_build *b, const struct keel_service *s, struct dnsnames *dn,
                        struct keel_arena_vec *eps, struct keel_arena_vec *unres)
{
    const struct keel_endpoint *in = eps->v;
    bool any = false;
    for (size_t i = 0; i < eps->n && !any; i++)
        any = (in[i].flags & KEEL_EP_DNS) != 0;
    if (!any)
        return;
    struct keel_arena_vec out = {0};
    for (size_t i = 0; i < eps->n; i++) {
        const struct keel_endpoint *e = &in[i];
        if (!(e->flags & KEEL_EP_DNS)) {
            *(struct keel_endpoint *)keel_arena_vec_push(b->arena, &out, sizeof(*e)) = *e;
            continue;
        }
        note_name(b, dn, e->address);
        const struct keel_dns_answer *a = keel_clusters_dns_answer(b->dns, e->address);
        const char *err = a ? dup(b, a->error) : NULL;
        size_t na = a ? a->n_addrs : 0;
        if (na > 1 && s->resolution == KEEL_RESOLUTION_DNS_RR)
            na = 1;
        if (na == 0) {
            struct keel_endpoint *u = keel_arena_vec_push(b->arena, unres, sizeof(*u));
            *u = *e;
            u->resolve_error = err;
            continue;
        }
        for (size_t k = 0; k < na; k++) {
            struct keel_endpoint *r = keel_arena_vec_push(b->arena, &out, sizeof(*r));
            *r = *e;
            r->flags &= ~(uint32_t)KEEL_EP_DNS;
            r->hostname = e->address;
            r->address = dup(b, a->addrs[k]);
            r->hostport = hostport(b, r->address, r->port);
            r->resolve_error = err;
        }
    }
    *eps = out;
}

/* ---- traffic policy (istio util.go MergeSubsetTrafficPolicy) ----------------------- */

struct tp {
    bool set;
    const struct keel_connection_pool *cp;
    const struct keel_load_balancer *lb;
    const struct keel_outlier_detection *od;
    const struct keel_client_tls *tls;
    const struct keel_tunnel *tunnel;
    const struct keel_proxy_protocol *pp;
};

static struct tp port_level(const struct keel_traffic_policy *p, uint32_t port, bool *has_pl)
{
    struct tp t = {0};
    *has_pl = false;
    if (!p)
        return t;
    t.set = true;
    for (size_t i = 0; i < p->n_port_level_settings; i++) {
        const struct keel_port_traffic_policy *pl = &p->port_level_settings[i];
        if (pl->port && pl->port->number == (int64_t)port) {
            /* port-level settings do not inherit: omitted blocks take the defaults */
            t.cp = pl->connection_pool;
            t.lb = pl->load_balancer;
            t.od = pl->outlier_detection;
            t.tls = pl->tls;
            *has_pl = true;
            return t;
        }
    }
    t.cp = p->connection_pool;
    t.lb = p->load_balancer;
    t.od = p->outlier_detection;
    t.tls = p->tls;
    t.tunnel = p->tunnel;
    t.pp = p->proxy_protocol;
    return t;
}

static struct tp merge_policy(const struct keel_traffic_policy *top, const struct keel_traffic_policy *subset,
                              uint32_t port)
{
    bool ignored, has_pl;
    struct tp orig = port_level(top, port, &ignored);
    if (!subset)
        return orig;
    struct tp sub = port_level(subset, port, &has_pl);
    if (!orig.set)
        return sub;
    struct tp m = orig;
    if (sub.cp || has_pl)
        m.cp = sub.cp;
    if (sub.od || has_pl)
        m.od = sub.od;
    if (sub.lb || has_pl)
        m.lb = sub.lb;
    if (sub.tls || has_pl)
        m.tls = sub.tls;
    if (sub.tunnel)
        m.tunnel = sub.tunnel;
    if (sub.pp)
        m.pp = sub.pp;
    return m;
}

static uint32_t limit(int64_t v)
{
    return v > 0 && v < (int64_t)KEEL_CLUSTERS_UNLIMITED ? (uint32_t)v : KEEL_CLUSTERS_UNLIMITED;
}

/* A localityLbSetting copied into the snapshot (the proxy applies it: proxy/lb.c). `enabled` defaults to true. */
static void apply_locality(struct keel_snapshot_build *b, struct keel_cluster *c, const struct keel_locality_lb *l)
{
    struct keel_cluster_locality *o = &c->lb.locality;
    *o = (struct keel_cluster_locality){0};
    o->enabled = !keel_obj_has(&l->_o, "enabled") || l->enabled;
    if (l->n_distribute) {
        struct keel_cluster_locality_distribute *d = keel_arena_xalloc(b->arena, l->n_distribute * sizeof(*d));
        for (size_t i = 0; i < l->n_distribute; i++) {
            struct keel_cluster_locality_weight *w =
                keel_arena_xalloc(b->arena, (l->distribute[i].n_to + 1) * sizeof(*w));
            for (size_t k = 0; k < l->distribute[i].n_to; k++) {
                w[k].locality = dup(b, l->distribute[i].to[k].key);
                int64_t v = l->distribute[i].to[k].value;
                w[k].weight = v > 0 && v <= 100 ? (uint32_t)v : 0;
            }
            d[i] = (struct keel_cluster_locality_distribute){dup(b, l->distribute[i].from), w, l->distribute[i].n_to};
        }
        o->distribute = d;
        o->n_distribute = l->n_distribute;
    }
    if (l->n_failover) {
        struct keel_cluster_locality_failover *f = keel_arena_xalloc(b->arena, l->n_failover * sizeof(*f));
        for (size_t i = 0; i < l->n_failover; i++)
            f[i] = (struct keel_cluster_locality_failover){dup(b, l->failover[i].from), dup(b, l->failover[i].to)};
        o->failover = f;
        o->n_failover = l->n_failover;
    }
    if (l->n_failover_priority) {
        const char **fp = keel_arena_xalloc(b->arena, l->n_failover_priority * sizeof(*fp));
        for (size_t i = 0; i < l->n_failover_priority; i++)
            fp[i] = dup(b, l->failover_priority[i]);
        o->failover_priority = fp;
        o->n_failover_priority = l->n_failover_priority;
    }
}

static void apply_lb(struct keel_snapshot_build *b, struct keel_cluster *c, const struct keel_load_balancer *lb,
                     const struct keel_resource *dr)
{
    (void)dr;
    c->lb.policy = KEEL_LB_LEAST_REQUEST;
    c->lb.ring_size = 1024;
    c->lb.maglev_size = 65537;
    c->lb.warmup_min_percent = 10;
    c->lb.warmup_aggression = 1.0;
    /* MeshConfig localityLbSetting (Istio's default: enabled) unless the DestinationRule sets one: no merge */
    if (b->mesh && b->mesh->locality_lb_setting)
        apply_locality(b, c, b->mesh->locality_lb_setting);
    else
        c->lb.locality.enabled = true;
    if (!lb)
        return;
    switch (lb->simple) {
    case KEEL_LOAD_BALANCER_SIMPLE_RANDOM:
        c->lb.policy = KEEL_LB_RANDOM;
        break;
    case KEEL_LOAD_BALANCER_SIMPLE_ROUND_ROBIN:
        c->lb.policy = KEEL_LB_ROUND_ROBIN;
        break;
    case KEEL_LOAD_BALANCER_SIMPLE_PASSTHROUGH:
        c->lb.policy = KEEL_LB_PASSTHROUGH;
        c->type = KEEL_CLUSTER_ORIGINAL_DST;
        break;
    default: /* UNSPECIFIED, LEAST_CONN (alias), LEAST_REQUEST */
        break;
    }
    const struct keel_consistent_hash *ch = lb->consistent_hash;
    if (ch) {
        c->lb.policy = ch->maglev ? KEEL_LB_MAGLEV : KEEL_LB_RING_HASH;
        if (ch->maglev && ch->maglev->table_size > 0)
            c->lb.maglev_size = (uint64_t)ch->maglev->table_size;
        if (ch->ring_hash && ch->ring_hash->minimum_ring_size > 0)
            c->lb.ring_size = (uint64_t)ch->ring_hash->minimum_ring_size;
        else if (ch->minimum_ring_size > 0)
            c->lb.ring_size = (uint64_t)ch->minimum_ring_size;
        if (!keel_cstr_empty(ch->http_header_name)) {
            c->lb.hash_key = KEEL_HASH_HEADER;
            c->lb.hash_name = keel_arena_strdup_lower(b->arena, ch->http_header_name);
        } else if (ch->http_cookie) {
            c->lb.hash_key = KEEL_HASH_COOKIE;
            c->lb.hash_name = dup(b, ch->http_cookie->name);
            c->lb.cookie_path = dup(b, ch->http_cookie->path);
            c->lb.cookie_ttl = ch->http_cookie->ttl;
        } else if (ch->use_source_ip) {
            c->lb.hash_key = KEEL_HASH_SOURCE_IP;
        } else if (!keel_cstr_empty(ch->http_query_parameter_name)) {
            c->lb.hash_key = KEEL_HASH_QUERY_PARAM;
            c->lb.hash_name = dup(b, ch->http_query_parameter_name);
        }
    }
    if (lb->locality_lb_setting) {
        c->lb.locality_lb = true;
        apply_locality(b, c, lb->locality_lb_setting);
    }
    c->lb.warmup_min_percent = 10;
    c->lb.warmup_aggression = 1.0;
    if (lb->warmup) {
        c->lb.warmup = lb->warmup->duration;
        if (keel_obj_has(&lb->warmup->_o, "minimumPercent"))
            c->lb.warmup_min_percent = lb->warmup->minimum_percent;
        if (keel_obj_has(&lb->warmup->_o, "aggression") && lb->warmup->aggression > 0)
            c->lb.warmup_aggression = lb->warmup->aggression;
    } else if (lb->warmup_duration_secs) {
        c->lb.warmup = lb->warmup_duration_secs;
    }
}

static void apply_pool(struct keel_snapshot_build *b, struct keel_cluster *c, const struct keel_connection_pool *cp)
{
    struct keel_cluster_limits *l = &c->limits;
    l->max_connections = l->max_pending_requests = l->max_requests = l->max_retries = KEEL_CLUSTERS_UNLIMITED;
    l->connect_timeout = b->connect_timeout;
    if (!cp)
        return;
    if (cp->tcp) {
        const struct keel_conn_pool_tcp *t = cp->tcp;
        l->max_connections = limit(t->max_connections);
        if (t->connect_timeout > 0)
            l->connect_timeout = t->connect_timeout;
        if (keel_obj_has(&t->_o, "idleTimeout")) {
            l->tcp_idle_set = true;
            l->tcp_idle_timeout = t->idle_timeout;
        }
        l->max_connection_duration = t->max_connection_duration;
        if (t->tcp_keepalive) {
            l->tcp_keepalive = true;
            l->keepalive_time = t->tcp_keepalive->time;
            l->keepalive_interval = t->tcp_keepalive->interval;
            l->keepalive_probes = t->tcp_keepalive->probes > 0 ? (uint32_t)t->tcp_keepalive->probes : 0;
        }
    }
    if (cp->http) {
        const struct keel_conn_pool_http *h = cp->http;
        l->max_pending_requests = limit(h->http1_max_pending_requests);
        l->max_requests = limit(h->http2_max_requests);
        l->max_retries = limit(h->max_retries);
        l->max_requests_per_connection =
            h->max_requests_per_connection > 0 && h->max_requests_per_connection <= UINT32_MAX
                ? (uint32_t)h->max_requests_per_connection
                : 0;
        l->max_concurrent_streams = h->max_concurrent_streams > 0 && h->max_concurrent_streams <= UINT32_MAX
                                        ? (uint32_t)h->max_concurrent_streams
                                        : 0;
        l->http_idle_timeout = h->idle_timeout;
        l->h2_upgrade = (int)h->h2_upgrade_policy;
        l->use_client_protocol = h->use_client_protocol;
    }
}

static void apply_outlier(struct keel_cluster *c, const struct keel_outlier_detection *od)
{
    struct keel_cluster_outlier *o = &c->outlier;
    if (!od)
        return; /* Istio: no outlierDetection, no ejection at all */
    o->enabled = true;
    o->consecutive_5xx = 5;
    if (keel_obj_has(&od->_o, "consecutive5xxErrors"))
        o->consecutive_5xx = od->consecutive5xx_errors > 0 ? (uint32_t)od->consecutive5xx_errors : 0;
    else if (od->consecutive_errors > 0)
        o->consecutive_5xx = (uint32_t)od->consecutive_errors;
    o->consecutive_gateway_errors = od->consecutive_gateway_errors > 0 ? (uint32_t)od->consecutive_gateway_errors : 0;
    o->consecutive_local_origin_failures =
        keel_obj_has(&od->_o, "consecutiveLocalOriginFailures") ? (uint32_t)od->consecutive_local_origin_failures : 5;
    o->split_external_local_origin_errors = od->split_external_local_origin_errors;
    o->interval = od->interval > 0 ? od->interval : 10 * NS_PER_SEC;
    o->base_ejection_time = od->base_ejection_time > 0 ? od->base_ejection_time : 30 * NS_PER_SEC;
    o->max_ejection_percent = od->max_ejection_percent > 0 ? (uint32_t)od->max_ejection_percent : 10;
    o->min_health_percent = od->min_health_percent > 0 ? (uint32_t)od->min_health_percent : 0;
}

static void apply_tls(struct keel_snapshot_build *b, struct keel_cluster *c, const struct keel_client_tls *t)
{
    struct keel_cluster_tls *o = &c->tls;
    if (!t)
        return; /* UNSET: auto-mTLS */
    static const enum keel_cluster_tls_mode modes[] = {
        [KEEL_CLIENT_TLS_MODE_DISABLE] = KEEL_CLUSTER_TLS_DISABLE,
        [KEEL_CLIENT_TLS_MODE_SIMPLE] = KEEL_CLUSTER_TLS_SIMPLE,
        [KEEL_CLIENT_TLS_MODE_MUTUAL] = KEEL_CLUSTER_TLS_MUTUAL,
        [KEEL_CLIENT_TLS_MODE_ISTIO_MUTUAL] = KEEL_CLUSTER_TLS_ISTIO_MUTUAL,
    };
    o->mode = (unsigned)t->mode < sizeof(modes) / sizeof(modes[0]) ? modes[t->mode] : KEEL_CLUSTER_TLS_DISABLE;
    o->sni = dup(b, keel_cstr_empty(t->sni) ? NULL : t->sni);
    if (!o->sni && o->mode == KEEL_CLUSTER_TLS_ISTIO_MUTUAL)
        o->sni = keel_arena_printf(b->arena, "outbound_.%u_.%s_.%s", c->port, c->subset, c->host);
    o->ca_certificates = dup(b, t->ca_certificates);
    o->ca_crl = dup(b, t->ca_crl);
    o->client_certificate = dup(b, t->client_certificate);
    o->private_key = dup(b, t->private_key);
    o->credential_name = dup(b, t->credential_name);
    o->insecure_skip_verify = t->insecure_skip_verify;
    if (t->n_subject_alt_names) {
        const char **sans = keel_arena_xalloc(b->arena, t->n_subject_alt_names * sizeof(char *));
        for (size_t i = 0; i < t->n_subject_alt_names; i++)
            sans[i] = dup(b, t->subject_alt_names[i]);
        o->subject_alt_names = sans;
        o->n_subject_alt_names = t->n_subject_alt_names;
    }
}

/* ---- clusters -------------------------------------------------------------------- */

/* The effective DestinationRule of a service: policy and subsets (merge order). */
struct drv {
    const struct keel_resource *top_res; /* the DR giving the top-level policy */
    const struct keel_traffic_policy *top;
    const struct keel_subset **subsets;
    const struct keel_resource **subset_res;
    size_t n_subsets;
    const char *label; /* "ns/name" of drs[0] */
};

static void dr_for(struct keel_snapshot_build *b, const struct svcb *sb, struct drv *d)
{
    memset(d, 0, sizeof(*d));
    struct keel_dr_lookup lk;
    const struct keel_proxy_identity *id = b->id;
    if (!keel_store_destination_rule_for(b->store, b->ns, id->labels, id->n_labels, sb->pub->host, sb->pub->ns, &lk))
        return;
    d->label = keel_arena_printf(b->arena, "%s/%s", lk.drs[0]->ns, lk.drs[0]->meta.name);
    size_t total = 0;
    for (size_t i = 0; i < lk.n_drs; i++) {
        const struct keel_destination_rule *dr = lk.drs[i]->spec;
        total += dr ? dr->n_subsets : 0;
    }
    d->subsets = keel_arena_xalloc(b->arena, (total + 1) * sizeof(*d->subsets));
    d->subset_res = keel_arena_xalloc(b->arena, (total + 1) * sizeof(*d->subset_res));
    for (size_t i = 0; i < lk.n_drs; i++) {
        const struct keel_destination_rule *dr = lk.drs[i]->spec;
        if (!dr)
            continue;
        if (!d->top && dr->traffic_policy) {
            d->top = dr->traffic_policy;
            d->top_res = lk.drs[i];
        }
        for (size_t k = 0; k < dr->n_subsets; k++) {
            const struct keel_subset *s = &dr->subsets[k];
            bool dupname = false;
            for (size_t j = 0; j < d->n_subsets && !dupname; j++)
                dupname = strcmp(d->subsets[j]->name, s->name) == 0;
            if (dupname) {
                keel_snapshot_warn_at(b, lk.drs[i], keel_obj_item_loc(&dr->_o, "subsets", k), "spec.subsets",
                                      "duplicate subset \"%s\" for host \"%s\": the one from an older DestinationRule "
                                      "is used",
                                      s->name, sb->pub->host);
                continue;
            }
            d->subset_res[d->n_subsets] = lk.drs[i];
            d->subsets[d->n_subsets++] = s;
        }
    }
}

static void warn_unsupported(struct keel_snapshot_build *b, const struct keel_resource *dr, const struct tp *t)
{
    if (t->tunnel)
        keel_snapshot_warn(b, dr, "trafficPolicy.tunnel", "tunnel settings are not applied yet");
    if (t->pp)
        keel_snapshot_warn(b, dr, "trafficPolicy.proxyProtocol", "proxyProtocol is not applied yet");
}

static struct keel_cluster *new_cluster(struct keel_snapshot_build *b, struct keel_arena_vec *out,
                                        const struct svcb *sb, const struct keel_svc_port *sp, const char *subset)
{
    struct keel_cluster *c = keel_arena_xalloc(b->arena, sizeof(*c));
    *(struct keel_cluster **)keel_arena_vec_push(b->arena, out, sizeof(c)) = c;
    const struct keel_service *s = sb->pub;
    c->host = s->host;
    c->subset = subset ? dup(b, subset) : "";
    c->port = sp->number;
    c->name = keel_arena_printf(b->arena, "outbound|%u|%s|%s", sp->number, c->subset, s->host);
    c->service = s;
    c->service_port = sp;
    switch (s->resolution) {
    case KEEL_RESOLUTION_NONE:
        c->type = KEEL_CLUSTER_ORIGINAL_DST;
        break;
    case KEEL_RESOLUTION_DNS:
        c->type = KEEL_CLUSTER_STRICT_DNS;
        break;
    case KEEL_RESOLUTION_DNS_RR:
        c->type = KEEL_CLUSTER_LOGICAL_DNS;
        break;
    case KEEL_RESOLUTION_DYNAMIC_DNS:
        c->type = KEEL_CLUSTER_DYNAMIC_DNS;
        break;
    default:
        c->type = KEEL_CLUSTER_EDS;
        break;
    }
    return c;
}

static void finish_policy(struct keel_snapshot_build *b, struct keel_cluster *c, const struct drv *d,
                          const struct keel_traffic_policy *subset_policy, const struct keel_resource *subset_res)
{
    struct tp t = merge_policy(d->top, subset_policy, c->port);
    const struct keel_resource *res = subset_policy ? subset_res : d->top_res;
    apply_lb(b, c, t.lb, res);
    apply_pool(b, c, t.cp);
    apply_outlier(c, t.od);
    apply_tls(b, c, t.tls);
    warn_unsupported(b, res, &t);
    c->destination_rule = d->label;
}

/* Endpoints of eps (n of them) whose labels include the subset's. */
static const struct keel_endpoint *subset_eps(struct keel_snapshot_build *b, const struct keel_subset *ss,
                                              const struct keel_arena_vec *eps, size_t *n)
{
    struct keel_endpoint *sel = keel_arena_xalloc(b->arena, (eps->n + 1) * sizeof(*sel));
    *n = 0;
    for (size_t e = 0; e < eps->n; e++) {
        const struct keel_endpoint *ep = &((const struct keel_endpoint *)eps->v)[e];
        if (keel_labels_match(ss->labels, ss->n_labels, ep->labels, ep->n_labels))
            sel[(*n)++] = *ep;
    }
    return sel;
}

static void build_service_clusters(struct keel_snapshot_build *b, const struct svcb *sb, struct dnsnames *dn,
                                   struct keel_arena_vec *out)
{
    struct drv d;
    dr_for(b, sb, &d);
    const struct keel_service *s = sb->pub;
    for (size_t i = 0; i < s->n_ports; i++) {
        const struct keel_svc_port *sp = &s->ports[i];
        struct keel_arena_vec eps = {0}, unres = {0};
        service_eps(b, sb, sp, &eps);
        resolve_eps(b, s, dn, &eps, &unres);
        struct keel_cluster *c = new_cluster(b, out, sb, sp, NULL);
        c->endpoints = eps.v;
        c->n_endpoints = eps.n;
        c->unresolved = unres.v;
        c->n_unresolved = unres.n;
        finish_policy(b, c, &d, NULL, NULL);
        for (size_t k = 0; k < d.n_subsets; k++) {
            const struct keel_subset *ss = d.subsets[k];
            struct keel_cluster *sc = new_cluster(b, out, sb, sp, ss->name);
            sc->endpoints = subset_eps(b, ss, &eps, &sc->n_endpoints);
            sc->unresolved = subset_eps(b, ss, &unres, &sc->n_unresolved);
            finish_policy(b, sc, &d, ss->traffic_policy, d.subset_res[k]);
        }
    }
}

static void special_cluster(struct keel_snapshot_build *b, struct keel_arena_vec *out, const char *name,
                            enum keel_cluster_type type)
{
    struct keel_cluster *c = keel_arena_xalloc(b->arena, sizeof(*c));
    *(struct keel_cluster **)keel_arena_vec_push(b->arena, out, sizeof(c)) = c;
    c->name = name;
    c->subset = "";
    c->type = type;
    c->lb.policy = type == KEEL_CLUSTER_ORIGINAL_DST ? KEEL_LB_PASSTHROUGH : KEEL_LB_LEAST_REQUEST;
    apply_pool(b, c, NULL);
}

/* `inbound|<port>||`: one endpoint, the app (mesh/inbound.h); default connection settings. */
static void inbound_clusters(struct keel_snapshot_build *b, const struct svcb *svcs, size_t n,
                             struct keel_arena_vec *out)
{
    struct keel_inbound_svc *v = calloc(n + 1, sizeof(*v));
    if (!v)
        abort();
    for (size_t i = 0; i < n; i++)
        v[i] = (struct keel_inbound_svc){svcs[i].pub, svcs[i].res};
    keel_inbound_collect(b, v, n);
    free(v);
    for (size_t i = 0; i < b->n_inbound; i++) {
        struct keel_inbound *in = &b->inbound[i];
        struct keel_cluster *c = keel_arena_xalloc(b->arena, sizeof(*c));
        *(struct keel_cluster **)keel_arena_vec_push(b->arena, out, sizeof(c)) = c;
        c->name = in->cluster_name;
        c->subset = "";
        c->port = in->port;
        c->type = KEEL_CLUSTER_EDS;
        c->lb.policy = KEEL_LB_ROUND_ROBIN;
        /* the port's protocol, so HTTP2/gRPC ports reach the app over HTTP/2 like outbound ones (no service) */
        struct keel_svc_port *sp = keel_arena_xalloc(b->arena, sizeof(*sp));
        *sp = (struct keel_svc_port){.number = in->port, .name = in->port_name, .proto = in->proto};
        c->service_port = sp;
        struct keel_arena_vec eps = {0};
        add_ep(b, &eps, in->address, in->app_port, 1, b->id->labels, b->id->n_labels, in->source);
        c->endpoints = eps.v;
        c->n_endpoints = eps.n;
        apply_pool(b, c, NULL);
        in->cluster = c;
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_cluster(const void *a, const void *b)
{
    const struct keel_cluster *x = *(const struct keel_cluster *const *)a;
    const struct keel_cluster *y = *(const struct keel_cluster *const *)b;
    return strcmp(x->name, y->name);
}

struct keel_cluster_set *keel_clusters_build(struct keel_snapshot_build *b)
{
    struct keel_cluster_set *cs = keel_arena_xalloc(b->arena, sizeof(*cs));
    size_t nall;
    struct svcb *all = collect_services(b, &nall);
    /* the outbound side sees what the Sidecar's egress imports (mesh/scope.h); the inbound side every service */
    struct svcb *svcs = all;
    size_t n = nall;
    if (b->scope) {
        svcs = keel_arena_xalloc(b->arena, (nall + 1) * sizeof(*svcs));
        n = 0;
        for (size_t i = 0; i < nall; i++)
            if (keel_scope_service(b->scope, all[i].pub->ns, all[i].pub->host, 0))
                svcs[n++] = all[i];
    }
    const struct keel_service **pub = keel_arena_xalloc(b->arena, (n + 1) * sizeof(*pub));
    struct keel_host_entry *ents = calloc(n + 1, sizeof(*ents));
    if (!ents)
        abort();
    size_t ne = 0;
    for (size_t i = 0; i < n; i++) {
        pub[i] = svcs[i].pub;
        ents[ne].host = svcs[i].pub->host;
        ents[ne++].value = svcs[i].pub;
    }
    cs->services = pub;
    cs->n_services = n;
    if (keel_host_index_build(b->arena, ents, ne, &cs->by_host) != 0) {
        /* validation keeps malformed hosts out; index what we can */
        ne = 0;
        for (size_t i = 0; i < n; i++) {
            const char *h = svcs[i].pub->host;
            if (h[0] != '*' || h[1] == '\0' || (h[1] == '.' && h[2]))
                ents[ne++] = (struct keel_host_entry){h, svcs[i].pub};
        }
        if (keel_host_index_build(b->arena, ents, ne, &cs->by_host) != 0)
            abort();
    }
    free(ents);

    struct keel_arena_vec out = {0};
    struct dnsnames dn = {0};
    keel_map_init(&dn.seen);
    for (size_t i = 0; i < n; i++)
        build_service_clusters(b, &svcs[i], &dn, &out);
    keel_map_free(&dn.seen);
    if (dn.list.n)
        qsort(dn.list.v, dn.list.n, sizeof(char *), cmp_str);
    cs->dns_names = dn.list.v;
    cs->n_dns_names = dn.list.n;
    inbound_clusters(b, all, nall, &out);
    special_cluster(b, &out, "PassthroughCluster", KEEL_CLUSTER_ORIGINAL_DST);
    special_cluster(b, &out, "BlackHoleCluster", KEEL_CLUSTER_BLACKHOLE);
    qsort(out.v, out.n, sizeof(struct keel_cluster *), cmp_cluster);
    cs->clusters = out.v;
    cs->n_clusters = out.n;
    return cs;
}

/* ---- lookups --------------------------------------------------------------------- */

const struct keel_cluster *keel_clusters_find(const struct keel_cluster_set *cs, const char *name)
{
    if (!cs || !name)
        return NULL;
    size_t lo = 0, hi = cs->n_clusters;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, cs->clusters[mid]->name);
        if (c == 0)
            return cs->clusters[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const struct keel_cluster *const *keel_clusters_all(const struct keel_cluster_set *cs, size_t *n)
{
    *n = cs ? cs->n_clusters : 0;
    return cs ? cs->clusters : NULL;
}

const struct keel_service *keel_clusters_service(const struct keel_cluster_set *cs, const char *host)
{
    if (!cs || !host)
        return NULL;
    size_t len = strlen(host);
    const struct keel_host_entry *e = keel_host_index_lookup(cs->by_host, host, len);
    if (!e || strlen(e->host) != len || strncasecmp(e->host, host, len) != 0)
        return NULL; /* exact names only, as istiod's serviceRegistry map */
    return e->value;
}

const struct keel_service *const *keel_clusters_services(const struct keel_cluster_set *cs, size_t *n)
{
    *n = cs ? cs->n_services : 0;
    return cs ? cs->services : NULL;
}

const char *const *keel_clusters_dns_names(const struct keel_cluster_set *cs, size_t *n)
{
    *n = cs ? cs->n_dns_names : 0;
    return cs ? cs->dns_names : NULL;
}

const struct keel_svc_port *keel_clusters_service_port(const struct keel_service *svc, uint32_t number)
{
    for (size_t i = 0; svc && i < svc->n_ports; i++)
        if (svc->ports[i].number == number)
            return &svc->ports[i];
    return NULL;
}

/* ---- dump ------------------------------------------------------------------------ */

static const char *const type_names[] = {"EDS",          "STRICT_DNS",  "LOGICAL_DNS",
                                         "ORIGINAL_DST", "DYNAMIC_DNS", "BLACKHOLE"};
static const char *const lb_names[] = {"LEAST_REQUEST", "ROUND_ROBIN", "RANDOM", "PASSTHROUGH", "RING_HASH", "MAGLEV"};
static const char *const hash_names[] = {NULL, "header", "cookie", "sourceIp", "queryParameter"};
static const char *const tls_names[] = {NULL, "DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"};

static void dump_endpoint(struct keel_snapshot_json *j, const struct keel_endpoint *e)
{
    keel_snapshot_json_open(j, NULL, '{');
    keel_snapshot_json_str(j, "address", e->address);
    keel_snapshot_json_int(j, "port", e->port);
    keel_snapshot_json_int(j, "weight", e->weight);
    if (e->flags & KEEL_EP_DNS)
        keel_snapshot_json_bool(j, "resolve", true);
    if (e->hostname)
        keel_snapshot_json_str(j, "hostname", e->hostname);
    if (e->resolve_error)
        keel_snapshot_json_str(j, "resolveError", e->resolve_error);
    if (e->flags & KEEL_EP_UDS)
        keel_snapshot_json_bool(j, "unix", true);
    if (e->n_labels)
        keel_snapshot_json_labels(j, "labels", e->labels, e->n_labels);
    if (e->locality)
        keel_snapshot_json_str(j, "locality", e->locality);
    if (e->network)
        keel_snapshot_json_str(j, "network", e->network);
    if (e->service_account)
        keel_snapshot_json_str(j, "serviceAccount", e->service_account);
    keel_snapshot_json_str(j, "source", e->source);
    keel_snapshot_json_close(j, '}');
}

static void dump_cluster(struct keel_snapshot_json *j, const struct keel_cluster *c)
{
    keel_snapshot_json_open(j, NULL, '{');
    keel_snapshot_json_str(j, "name", c->name);
    keel_snapshot_json_str(j, "type", type_names[c->type]);
    if (c->service) {
        keel_snapshot_json_str(j, "host", c->host);
        keel_snapshot_json_int(j, "port", c->port);
        keel_snapshot_json_str(j, "subset", c->subset);
        keel_snapshot_json_str(j, "protocol", keel_clusters_proto_name(c->service_port->proto));
        keel_snapshot_json_str(j, "service", c->service->name);
        keel_snapshot_json_str(j, "namespace", c->service->ns);
    }
    if (c->destination_rule)
        keel_snapshot_json_str(j, "destinationRule", c->destination_rule);
    keel_snapshot_json_open(j, "loadBalancer", '{');
    keel_snapshot_json_str(j, "policy", lb_names[c->lb.policy]);
    if (c->lb.hash_key) {
        keel_snapshot_json_str(j, "hashOn", hash_names[c->lb.hash_key]);
        if (c->lb.hash_name)
            keel_snapshot_json_str(j, "hashName", c->lb.hash_name);
    }
    if (c->lb.policy == KEEL_LB_RING_HASH)
        keel_snapshot_json_int(j, "minimumRingSize", (int64_t)c->lb.ring_size);
    if (c->lb.policy == KEEL_LB_MAGLEV)
        keel_snapshot_json_int(j, "tableSize", (int64_t)c->lb.maglev_size);
    if (c->lb.locality_lb) {
        const struct keel_cluster_locality *lo = &c->lb.locality;
        keel_snapshot_json_open(j, "localityLbSetting", '{');
        keel_snapshot_json_bool(j, "enabled", lo->enabled);
        if (lo->n_distribute) {
            keel_snapshot_json_open(j, "distribute", '[');
            for (size_t i = 0; i < lo->n_distribute; i++) {
                keel_snapshot_json_open(j, NULL, '{');
                keel_snapshot_json_str(j, "from", lo->distribute[i].from);
                keel_snapshot_json_open(j, "to", '{');
                for (size_t k = 0; k < lo->distribute[i].n_to; k++)
                    keel_snapshot_json_int(j, lo->distribute[i].to[k].locality, lo->distribute[i].to[k].weight);
                keel_snapshot_json_close(j, '}');
                keel_snapshot_json_close(j, '}');
            }
            keel_snapshot_json_close(j, ']');
        }
        if (lo->n_failover) {
            keel_snapshot_json_open(j, "failover", '[');
            for (size_t i = 0; i < lo->n_failover; i++) {
                keel_snapshot_json_open(j, NULL, '{');
                keel_snapshot_json_str(j, "from", lo->failover[i].from);
                keel_snapshot_json_str(j, "to", lo->failover[i].to);
                keel_snapshot_json_close(j, '}');
            }
            keel_snapshot_json_close(j, ']');
        }
        if (lo->n_failover_priority)
            keel_snapshot_json_strs(j, "failoverPriority", lo->failover_priority, lo->n_failover_priority);
        keel_snapshot_json_close(j, '}');
    }
    if (c->lb.warmup)
        keel_snapshot_json_int(j, "warmupMs", c->lb.warmup / 1000000);
    keel_snapshot_json_close(j, '}');
    const struct keel_cluster_limits *l = &c->limits;
    keel_snapshot_json_open(j, "circuitBreakers", '{');
    keel_snapshot_json_int(j, "maxConnections", l->max_connections);
    keel_snapshot_json_int(j, "maxPendingRequests", l->max_pending_requests);
    keel_snapshot_json_int(j, "maxRequests", l->max_requests);
    keel_snapshot_json_int(j, "maxRetries", l->max_retries);
    keel_snapshot_json_close(j, '}');
    keel_snapshot_json_int(j, "connectTimeoutMs", l->connect_timeout / 1000000);
    if (l->max_requests_per_connection)
        keel_snapshot_json_int(j, "maxRequestsPerConnection", l->max_requests_per_connection);
    if (c->outlier.enabled) {
        const struct keel_cluster_outlier *o = &c->outlier;
        keel_snapshot_json_open(j, "outlierDetection", '{');
        keel_snapshot_json_int(j, "consecutive5xx", o->consecutive_5xx);
        keel_snapshot_json_int(j, "consecutiveGatewayErrors", o->consecutive_gateway_errors);
        keel_snapshot_json_int(j, "intervalMs", o->interval / 1000000);
        keel_snapshot_json_int(j, "baseEjectionTimeMs", o->base_ejection_time / 1000000);
        keel_snapshot_json_int(j, "maxEjectionPercent", o->max_ejection_percent);
        keel_snapshot_json_int(j, "minHealthPercent", o->min_health_percent);
        keel_snapshot_json_close(j, '}');
    }
    if (c->tls.mode) {
        keel_snapshot_json_open(j, "tls", '{');
        keel_snapshot_json_str(j, "mode", tls_names[c->tls.mode]);
        if (c->tls.sni)
            keel_snapshot_json_str(j, "sni", c->tls.sni);
        if (c->tls.credential_name)
            keel_snapshot_json_str(j, "credentialName", c->tls.credential_name);
        if (c->tls.ca_certificates)
            keel_snapshot_json_str(j, "caCertificates", c->tls.ca_certificates);
        if (c->tls.client_certificate)
            keel_snapshot_json_str(j, "clientCertificate", c->tls.client_certificate);
        if (c->tls.n_subject_alt_names)
            keel_snapshot_json_strs(j, "subjectAltNames", c->tls.subject_alt_names, c->tls.n_subject_alt_names);
        keel_snapshot_json_close(j, '}');
    }
    keel_snapshot_json_open(j, "endpoints", '[');
    for (size_t i = 0; i < c->n_endpoints; i++)
        dump_endpoint(j, &c->endpoints[i]);
    keel_snapshot_json_close(j, ']');
    if (c->n_unresolved) {
        /* DNS names without an address (not answered yet, or NXDOMAIN): no traffic goes to them */
        keel_snapshot_json_open(j, "unresolved", '[');
        for (size_t i = 0; i < c->n_unresolved; i++)
            dump_endpoint(j, &c->unresolved[i]);
        keel_snapshot_json_close(j, ']');
    }
    keel_snapshot_json_close(j, '}');
}

void keel_clusters_dump_json(const struct keel_cluster_set *cs, struct keel_snapshot_json *j)
{
    keel_snapshot_json_open(j, "clusters", '[');
    for (size_t i = 0; cs && i < cs->n_clusters; i++)
        dump_cluster(j, cs->clusters[i]);
    keel_snapshot_json_close(j, ']');
}
