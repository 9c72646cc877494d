/*
 * snapshot.h - compile the config store into the immutable snapshot one proxy
 * serves from.
 *
 * Keel's proxy understands Istio resources natively: instead of receiving
 * Envoy listeners, routes and clusters from istiod, it compiles them itself,
 * with istiod's rules, from the store (docs/architecture.md). This is that
 * compile step: a pure function of (store, proxy identity, mesh defaults).
 * No I/O, no threads, no global state.
 *
 *   keel_snapshot_build(store, identity, mesh, diags)
 *      -> listeners: gateway servers grouped by port (ROUTER), or one
 *         outbound listener per service port (SIDECAR);
 *      -> route tables: HTTP virtual hosts and routes, TCP/TLS routes per port
 *         (types and request path: mesh/routes.h; assembly: mesh/vhosts.h;
 *         one VirtualService's rules: mesh/rules.h; regexes: mesh/regex.h);
 *      -> clusters: `outbound|port|subset|host` with endpoints and resolved
 *         traffic policy (mesh/clusters.h).
 * docs/mesh-compile.md describes the rules and their Istio sources.
 *
 * Problems that make part of the config unusable never fail the build and
 * never silently drop a rule: each becomes a warning (in `diags` and in the
 * snapshot), and the affected route answers as Istio's would (a destination
 * without a cluster answers 503 NC). Wording follows istiod/istioctl analyze.
 *
 * Lifetime: a snapshot is immutable and reference counted (atomic count).
 * Workers take a reference for as long as they use it (keel_snapshot_ref),
 * the publisher swaps the pointer and drops its reference; the last unref
 * frees everything (one arena, plus the compiled regexes). Nothing in a
 * snapshot points into the store or its loadset, which may be freed as soon
 * as keel_snapshot_build() returns.
 *
 * Thread-safety: build on one thread; every read function may be called
 * from any number of threads without locks.
 */
#ifndef KEEL_MESH_SNAPSHOT_H
#define KEEL_MESH_SNAPSHOT_H

#include "base/diag.h"
#include "config/envoyfilter.h"
#include "config/schema.h"
#include "mesh/clusters.h"
#include "mesh/routes.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keel_buf;
struct keel_store;
struct keel_mesh_defaults;
struct keel_mesh_config;
struct keel_arena;
struct keel_map;
struct keel_resource;
struct keel_scope;

enum keel_proxy_kind {
    KEEL_PROXY_SIDECAR,
    KEEL_PROXY_ROUTER, /* a gateway */
};

/* Who the snapshot is for. Strings are copied by keel_snapshot_build(). */
struct keel_proxy_identity {
    enum keel_proxy_kind kind;
    const char *ns; /* NULL/"" = "default" */
    const struct keel_kv_str *labels;
    size_t n_labels;
    const char *service_account;
    const char *workload; /* workload (pod) name, for diagnostics and the dump */
};

/* ---- listeners -------------------------------------------------------------------- */

/* Gateway server TLS settings (copied from Gateway servers[].tls). */
struct keel_listener_tls {
    int mode; /* enum keel_server_tls_mode */
    const char *server_certificate;
    const char *private_key;
    const char *ca_certificates;
    const char *credential_name;
    const char *const *credential_names;
    size_t n_credential_names;
    const char *const *subject_alt_names;
    size_t n_subject_alt_names;
    const char *const *cipher_suites;
    size_t n_cipher_suites;
    int min_version; /* enum keel_server_tls_min_protocol_version */
    int max_version;
};

/* One server of a gateway (or the HTTP / TCP side of a sidecar port). */
struct keel_listener_chain {
    const char *gateway; /* "ns/name"; NULL for sidecars */
    const char *port_name;
    enum keel_proto proto;
    const char *const *hosts; /* server hosts as written (`ns/host` kept) */
    size_t n_hosts;
    bool has_tls;
    struct keel_listener_tls tls;
    bool https_redirect;
    const struct keel_route_table *routes; /* HTTP and terminated HTTPS */
    const struct keel_tcp_table *tcp;      /* TCP, TLS, passthrough */
};

struct keel_listener {
    const char *name; /* "<bind>_<port>", e.g. "0.0.0.0_80" */
    const char *bind; /* "0.0.0.0" unless the server sets `bind` */
    uint32_t port;
    enum keel_proto proto; /* of the first server */
    const struct keel_listener_chain *chains;
    size_t n_chains;
    /* EnvoyFilter LISTENER MERGE socket_options (mesh/patches.h), in application order: the proxy sets them on
     * every socket this listener accepts */
    const struct keel_ef_sockopt *sockopts;
    size_t n_sockopts;
};

/* ---- inbound (sidecars) ------------------------------------------------------------ */

/* One port of the proxy's own workload (mesh/inbound.h): traffic arriving for it goes to the app through the
 * cluster `inbound|<port>||` (one endpoint: the app). HTTP ports have a route table of that name (every request
 * to the app); other ports a TCP table of that name. */
struct keel_inbound {
    uint32_t port;                 /* the workload port peers dial (endpoint port: targetPort / WorkloadEntry ports /
                                      Sidecar ingress port) */
    const char *port_name;         /* may be "" */
    enum keel_proto proto;         /* HTTP family: routes; anything else (sniffed included): TCP */
    const char *address;           /* where the app listens: "127.0.0.1", "::1" or "unix:///path" */
    uint32_t app_port;             /* 0 for unix sockets */
    const char *endpoint;          /* "127.0.0.1:9080", "[::1]:9080" or the unix:// address */
    const char *const *services;   /* "<host>:<service port>" of every service port landing here */
    const uint32_t *service_ports; /* their service port numbers */
    size_t n_services;
    const char *source; /* "Sidecar ns/name spec.ingress[i]" or "Service ns/name", "ServiceEntry ns/name" */
    const char *cluster_name;
    const struct keel_cluster *cluster;
    const struct keel_route_table *routes; /* HTTP ports, else NULL */
    const struct keel_tcp_table *tcp;      /* other ports, else NULL */
};

/* ---- the snapshot ------------------------------------------------------------------ */

struct keel_snapshot;

/* Compiles the snapshot for id. mesh NULL = the store's mesh defaults (root
 * namespace, domain). dns (may be NULL: nothing resolved yet) gives the
 * addresses of the DNS names endpoints use (mesh/clusters.h, "DNS names");
 * the caller resolves keel_snapshot_dns_names() and compiles again when the
 * answers change. diags (may be NULL) receives the warnings too. Other
 * MeshConfig values (connectTimeout, defaultHttpRetryPolicy,
 * outboundTrafficPolicy) come from the store's mesh ConfigMap (`istio` in the
 * root namespace) when there is one. Returns a snapshot holding one
 * reference. Never returns NULL (OOM aborts: config phase). */
struct keel_snapshot *keel_snapshot_build(const struct keel_store *store, const struct keel_proxy_identity *id,
                                          const struct keel_mesh_defaults *mesh, const struct keel_dns_answers *dns,
                                          struct keel_diags *diags);

/* Takes a reference; returns s. */
struct keel_snapshot *keel_snapshot_ref(struct keel_snapshot *s);
/* Drops a reference; the last one frees the snapshot. NULL is a no-op. */
void keel_snapshot_unref(struct keel_snapshot *s);

/* The store generation the snapshot was compiled from (monotonic). */
uint64_t keel_snapshot_version(const struct keel_snapshot *s);
const struct keel_proxy_identity *keel_snapshot_identity(const struct keel_snapshot *s);

const struct keel_listener *keel_snapshot_listeners(const struct keel_snapshot *s, size_t *n);
/* The listener on port (first bind), or NULL. */
const struct keel_listener *keel_snapshot_listener(const struct keel_snapshot *s, uint32_t port);

/* Route table by name ("9080", "http.80", ...), or NULL. */
const struct keel_route_table *keel_snapshot_route_table(const struct keel_snapshot *s, const char *name);
const struct keel_route_table *const *keel_snapshot_route_tables(const struct keel_snapshot *s, size_t *n);
/* Sidecar TCP table of a port, or NULL. */
const struct keel_tcp_table *keel_snapshot_tcp_table(const struct keel_snapshot *s, uint32_t port);

/* The sidecar's inbound ports, sorted by port (none for routers), and one by port (NULL when none). */
const struct keel_inbound *keel_snapshot_inbounds(const struct keel_snapshot *s, size_t *n);
const struct keel_inbound *keel_snapshot_inbound(const struct keel_snapshot *s, uint32_t port);
/* For a request to the inbound address itself, by its authority's port: the inbound port of that number, else
 * the first whose services use that service port; NULL when none. */
const struct keel_inbound *keel_snapshot_inbound_for_authority(const struct keel_snapshot *s, uint32_t port);

/* Cluster by name, or NULL; and every cluster sorted by name. */
const struct keel_cluster *keel_snapshot_cluster(const struct keel_snapshot *s, const char *name);
const struct keel_cluster *const *keel_snapshot_clusters(const struct keel_snapshot *s, size_t *n);
const struct keel_cluster_set *keel_snapshot_cluster_set(const struct keel_snapshot *s);
/* The DNS names the snapshot's clusters need (keel_clusters_dns_names). */
const char *const *keel_snapshot_dns_names(const struct keel_snapshot *s, size_t *n);

/* Warnings recorded while compiling (copies; valid while s lives). */
const struct keel_diag *keel_snapshot_diags(const struct keel_snapshot *s, size_t *n);

/* What /config_dump shows: version, identity, listeners, route tables (each
 * route with the VirtualService it came from), clusters with endpoints,
 * diagnostics. One JSON object appended to out. Returns 0 or KEEL_ETOOBIG /
 * KEEL_ENOMEM (out keeps what was written). */
int keel_snapshot_dump_json(const struct keel_snapshot *s, struct keel_buf *out);

/* ---- for the mesh modules only: the state of one build ----------------------------- */

struct keel_snapshot_build {
    struct keel_snapshot *snap;
    struct keel_arena *arena; /* the snapshot's */
    const struct keel_store *store;
    const struct keel_proxy_identity *id; /* the snapshot's copy */
    const char *ns;                       /* id->ns, never NULL */
    const char *domain;                   /* cluster domain, never NULL */
    const char *root_ns;
    const struct keel_mesh_config *mesh; /* the store's MeshConfig, or NULL */
    int64_t connect_timeout;             /* ns */
    bool registry_only;                  /* outboundTrafficPolicy REGISTRY_ONLY (the Sidecar's, else the mesh's) */
    const char *egress_proxy;            /* Sidecar outboundTrafficPolicy.egressProxy cluster, or NULL */
    struct keel_scope *scope;            /* sidecar egress scope (mesh/scope.h); NULL = import everything */
    const struct keel_dns_answers *dns;  /* caller's, may be NULL */
    struct keel_diags *out;              /* caller's, may be NULL */
    struct keel_map *seen;               /* diagnostics already reported */
    void *vhosts;                        /* vhosts.c per-build state */
    struct keel_regex *regexes;          /* compiled regexes, freed with the snapshot */
    struct keel_inbound *inbound;        /* sidecar inbound ports (mesh/inbound.c), clusters set by clusters.c */
    size_t n_inbound;
};

/* Records a warning about resource r (may be NULL) at field path (may be
 * NULL); identical warnings are reported once per build. */
void keel_snapshot_warn(struct keel_snapshot_build *b, const struct keel_resource *r, const char *path, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));

/* The same, located at `at` (from keel_obj_loc()) instead of the document. */
void keel_snapshot_warn_at(struct keel_snapshot_build *b, const struct keel_resource *r, struct keel_loc at,
                           const char *path, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Arena copy of s (NULL stays NULL). */
const char *keel_snapshot_strdup(struct keel_snapshot_build *b, const char *s);

/* A small streaming JSON writer for the dump functions of the mesh modules:
 * commas are placed automatically; the first error sticks in err and turns
 * every later call into a no-op. key NULL inside arrays and at the top. */
#define KEEL_SNAPSHOT_JSON_DEPTH 32

struct keel_snapshot_json {
    struct keel_buf *buf;
    int err;
    int depth;
    bool more[KEEL_SNAPSHOT_JSON_DEPTH]; /* an item was written at this depth */
};

void keel_snapshot_json_open(struct keel_snapshot_json *j, const char *key, char bracket);   /* '{' or '[' */
void keel_snapshot_json_close(struct keel_snapshot_json *j, char bracket);                   /* '}' or ']' */
void keel_snapshot_json_str(struct keel_snapshot_json *j, const char *key, const char *val); /* NULL -> null */
void keel_snapshot_json_strn(struct keel_snapshot_json *j, const char *key, const char *val, size_t n);
void keel_snapshot_json_int(struct keel_snapshot_json *j, const char *key, int64_t val);
void keel_snapshot_json_bool(struct keel_snapshot_json *j, const char *key, bool val);
void keel_snapshot_json_labels(struct keel_snapshot_json *j, const char *key, const struct keel_kv_str *kv, size_t n);
void keel_snapshot_json_strs(struct keel_snapshot_json *j, const char *key, const char *const *v, size_t n);

#endif
