/*
 * clusters.h - the service registry and the upstream clusters of a snapshot.
 *
 * Compiling a snapshot starts here: every service the proxy can see (a
 * Kubernetes Service, or one host of a ServiceEntry) becomes a keel_service,
 * and every (service, port) and every (service, port, DestinationRule subset)
 * becomes a keel_cluster named as Istio names it, `outbound|<port>|<subset>|
 * <fqdn>` (reference §4.13), with its endpoints and its traffic policy
 * resolved the way istiod resolves it (§4.6):
 *
 *   - endpoints: ServiceEntry `endpoints` (IPs, or DNS names: see "DNS
 *     names" below), ServiceEntry
 *     `workloadSelector` -> WorkloadEntries and Pods of its namespace, and
 *     Kubernetes Service selector -> EndpointSlices, else Endpoints, else
 *     Pods, plus WorkloadEntries; the port comes from the workload's `ports`
 *     map by service port name, else the target port, else the port itself;
 *   - a subset's endpoints are those whose labels include the subset labels;
 *   - policy: the DestinationRule from keel_store_destination_rule_for();
 *     a matching `portLevelSettings` entry REPLACES the top-level policy (the
 *     blocks it omits fall back to defaults, not to the top level), then the
 *     subset's policy replaces each block it sets (istio util.go
 *     MergeSubsetTrafficPolicy). Defaults: LEAST_REQUEST, circuit breakers
 *     2^32-1, connect timeout = MeshConfig connectTimeout (10s), no outlier
 *     detection, TLS "unset" (the proxy applies auto-mTLS).
 *
 * DNS names (STRICT_DNS / LOGICAL_DNS clusters: ServiceEntry `resolution:
 * DNS` or `DNS_ROUND_ROBIN` endpoints that are names, or its hosts when it
 * has no endpoints; Kubernetes ExternalName). The compile does no I/O: the
 * caller passes what its resolver last answered (struct keel_dns_answers,
 * read-only). A name with addresses becomes one endpoint per address for
 * STRICT_DNS and one endpoint with the first address for LOGICAL_DNS, each
 * keeping the port, labels, weight and locality of the endpoint it came from
 * and naming it in `hostname`. A name without addresses (not resolved yet,
 * or NXDOMAIN) gives no endpoint; it is listed in the cluster's `unresolved`
 * (for the admin dumps), so requests get 503 UH. keel_clusters_dns_names()
 * lists every name the snapshot needs, answered or not, for the resolver.
 *
 * Everything here lives in the snapshot arena and is immutable once built:
 * worker threads read it without locks. Strings are copies, never pointers
 * into the config store.
 */
#ifndef KEEL_MESH_CLUSTERS_H
#define KEEL_MESH_CLUSTERS_H

#include "config/schema.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keel_snapshot_json;
struct keel_snapshot_build;

/* Application protocol of a port (pkg/config/protocol). UNKNOWN = sniffed. */
enum keel_proto {
    KEEL_PROTO_UNKNOWN,
    KEEL_PROTO_HTTP,
    KEEL_PROTO_HTTP2,
    KEEL_PROTO_HTTPS,
    KEEL_PROTO_GRPC,
    KEEL_PROTO_GRPC_WEB,
    KEEL_PROTO_HTTP_PROXY,
    KEEL_PROTO_TCP,
    KEEL_PROTO_TLS,
    KEEL_PROTO_MONGO,
    KEEL_PROTO_MYSQL,
    KEEL_PROTO_REDIS,
    KEEL_PROTO_UDP,
};

/* Case-insensitive protocol name ("http", "GRPC-WEB"); NULL/unknown = UNKNOWN. */
enum keel_proto keel_clusters_proto_parse(const char *s);
/* "HTTP", "TCP", ... ("" for UNKNOWN). */
const char *keel_clusters_proto_name(enum keel_proto p);
/* HTTP, HTTP2, GRPC, GRPC-WEB (the protocols routed by HTTP route tables). */
bool keel_clusters_proto_is_http(enum keel_proto p);

/* ---- the service registry -------------------------------------------------------- */

enum keel_service_kind {
    KEEL_SERVICE_K8S,           /* Kubernetes Service */
    KEEL_SERVICE_SERVICE_ENTRY, /* one host of a ServiceEntry */
};

enum keel_resolution {
    KEEL_RESOLUTION_STATIC,      /* endpoints known (EDS) */
    KEEL_RESOLUTION_NONE,        /* passthrough: original destination */
    KEEL_RESOLUTION_DNS,         /* STRICT_DNS: resolve every endpoint name */
    KEEL_RESOLUTION_DNS_RR,      /* LOGICAL_DNS: first address per connection */
    KEEL_RESOLUTION_DYNAMIC_DNS, /* resolve Host/SNI per request */
};

struct keel_svc_port {
    uint32_t number;
    const char *name; /* may be "" */
    enum keel_proto proto;
    uint32_t target_port;    /* 0 = same as number (or named, see target_name) */
    const char *target_name; /* Kubernetes named targetPort, else NULL */
};

struct keel_service {
    const char *host; /* FQDN lower-cased; a ServiceEntry host may be a wildcard */
    const char *ns;
    const char *name; /* Service / ServiceEntry name */
    enum keel_service_kind kind;
    enum keel_resolution resolution;
    bool mesh_external;           /* ServiceEntry MESH_EXTERNAL */
    const char *const *addresses; /* VIPs (clusterIP, SE addresses) */
    size_t n_addresses;
    const struct keel_svc_port *ports;
    size_t n_ports;
};

/* ---- clusters -------------------------------------------------------------------- */

enum {
    KEEL_EP_DNS = 1u << 0, /* address is a host name to resolve (only in keel_cluster.unresolved once compiled) */
    KEEL_EP_UDS = 1u << 1, /* address is a unix socket path (unix://...) */
};

struct keel_endpoint {
    const char *address;
    const char *hostport; /* "10.0.0.1:8080", "[::1]:8080", the address for unix sockets: the pool key and the
                             access log's UPSTREAM_HOST, formatted once here, not per request */
    uint32_t port;        /* 0 for unix sockets */
    uint32_t weight; /* >= 1 */
    uint32_t flags;
    const struct keel_kv_str *labels;
    size_t n_labels;
    const char *locality;        /* "region/zone/subzone" or NULL */
    const char *network;         /* or NULL */
    const char *service_account; /* or NULL */
    const char *source;          /* "WorkloadEntry ns/name", "Pod ns/name", "ServiceEntry ns/name", ... */
    const char *hostname;        /* DNS name the address was resolved from (STRICT/LOGICAL_DNS), else NULL */
    const char *resolve_error;   /* the resolver's last error for that name, or NULL */
};

enum keel_cluster_type {
    KEEL_CLUSTER_EDS, /* static endpoint list (below) */
    KEEL_CLUSTER_STRICT_DNS,
    KEEL_CLUSTER_LOGICAL_DNS,
    KEEL_CLUSTER_ORIGINAL_DST, /* passthrough */
    KEEL_CLUSTER_DYNAMIC_DNS,  /* dynamic forward proxy */
    KEEL_CLUSTER_BLACKHOLE,    /* BlackHoleCluster: fails every request */
};

enum keel_lb_policy {
    KEEL_LB_LEAST_REQUEST, /* default; LEAST_CONN is an alias */
    KEEL_LB_ROUND_ROBIN,
    KEEL_LB_RANDOM,
    KEEL_LB_PASSTHROUGH,
    KEEL_LB_RING_HASH,
    KEEL_LB_MAGLEV,
};

enum keel_hash_key {
    KEEL_HASH_NONE,
    KEEL_HASH_HEADER,
    KEEL_HASH_COOKIE,
    KEEL_HASH_SOURCE_IP,
    KEEL_HASH_QUERY_PARAM,
};

/* localityLbSetting (DestinationRule, else MeshConfig's; no merge), applied by the proxy (proxy/lb.c) against its
 * own locality. */
struct keel_cluster_locality_weight {
    const char *locality; /* "region/zone/subzone", trailing "*" allowed */
    uint32_t weight;      /* percent */
};

struct keel_cluster_locality_distribute {
    const char *from;
    const struct keel_cluster_locality_weight *to;
    size_t n_to;
};

struct keel_cluster_locality_failover {
    const char *from; /* region */
    const char *to;   /* region */
};

struct keel_cluster_locality {
    bool enabled; /* false: enabled: false, or no setting at all */
    const struct keel_cluster_locality_distribute *distribute;
    size_t n_distribute;
    const struct keel_cluster_locality_failover *failover;
    size_t n_failover;
    const char *const *failover_priority; /* label keys */
    size_t n_failover_priority;
};

struct keel_cluster_lb {
    enum keel_lb_policy policy;
    enum keel_hash_key hash_key;
    const char *hash_name; /* header / cookie / query parameter name */
    const char *cookie_path;
    int64_t cookie_ttl;   /* ns */
    uint64_t ring_size;   /* RING_HASH minimum ring size (1024) */
    uint64_t maglev_size; /* MAGLEV table size (65537) */
    bool locality_lb;     /* the DestinationRule gave a localityLbSetting */
    struct keel_cluster_locality locality;
    int64_t warmup;            /* ns; 0 = none */
    double warmup_min_percent; /* warmup.minimumPercent (10) */
    double warmup_aggression;  /* warmup.aggression (1.0: linear) */
};

#define KEEL_CLUSTERS_UNLIMITED 4294967295u /* Istio's circuit-breaker default, 2^32-1 */

struct keel_cluster_limits {
    uint32_t max_connections;
    uint32_t max_pending_requests;
    uint32_t max_requests;
    uint32_t max_retries;
    uint32_t max_requests_per_connection; /* 0 = unlimited */
    uint32_t max_concurrent_streams;      /* 0 = protocol default */
    int64_t connect_timeout;              /* ns */
    int64_t http_idle_timeout;            /* ns; 0 = Envoy default (1h) */
    int64_t tcp_idle_timeout;             /* ns; 0 = Envoy default (1h) unless tcp_idle_set */
    bool tcp_idle_set;                    /* idleTimeout given (0s = disabled) */
    int64_t max_connection_duration;      /* ns; 0 = unlimited */
    int h2_upgrade;                       /* enum keel_conn_pool_http_h2_upgrade_policy */
    bool use_client_protocol;
    bool tcp_keepalive;
    int64_t keepalive_time, keepalive_interval; /* ns; 0 = OS default */
    uint32_t keepalive_probes;
};

struct keel_cluster_outlier {
    bool enabled;                        /* false: no outlier detection (Istio's default) */
    uint32_t consecutive_5xx;            /* 0 = not enforced */
    uint32_t consecutive_gateway_errors; /* 0 = not enforced */
    uint32_t consecutive_local_origin_failures;
    bool split_external_local_origin_errors;
    int64_t interval;           /* ns */
    int64_t base_ejection_time; /* ns */
    uint32_t max_ejection_percent;
    uint32_t min_health_percent; /* panic threshold */
};

enum keel_cluster_tls_mode {
    KEEL_CLUSTER_TLS_UNSET, /* no DR tls: auto-mTLS decides per endpoint */
    KEEL_CLUSTER_TLS_DISABLE,
    KEEL_CLUSTER_TLS_SIMPLE,
    KEEL_CLUSTER_TLS_MUTUAL,
    KEEL_CLUSTER_TLS_ISTIO_MUTUAL,
};

struct keel_cluster_tls {
    enum keel_cluster_tls_mode mode;
    const char *sni; /* explicit, or Istio's `outbound_.<port>_.<subset>_.<host>` for ISTIO_MUTUAL */
    const char *ca_certificates;
    const char *ca_crl;
    const char *client_certificate;
    const char *private_key;
    const char *credential_name;
    const char *const *subject_alt_names;
    size_t n_subject_alt_names;
    bool insecure_skip_verify;
};

struct keel_cluster {
    const char *name;   /* outbound|<port>|<subset>|<host>, PassthroughCluster, BlackHoleCluster */
    const char *host;   /* NULL for the special clusters */
    const char *subset; /* "" when none */
    uint32_t port;
    const struct keel_service *service; /* NULL for the special clusters */
    const struct keel_svc_port *service_port;
    enum keel_cluster_type type;
    const struct keel_endpoint *endpoints;
    size_t n_endpoints;
    const struct keel_endpoint *unresolved; /* KEEL_EP_DNS endpoints whose name has no address: not used for
                                               traffic, shown by the admin dumps */
    size_t n_unresolved;
    struct keel_cluster_lb lb;
    struct keel_cluster_limits limits;
    struct keel_cluster_outlier outlier;
    struct keel_cluster_tls tls;
    const char *destination_rule; /* "ns/name" of the DR that set the policy, or NULL */
};

/* ---- DNS answers: an input of the compile ------------------------------------------ */

/* What the resolver last knew about one name. */
struct keel_dns_answer {
    const char *name;         /* exactly as the endpoint (or host) spells it */
    const char *const *addrs; /* numeric IPv4/IPv6 addresses in the resolver's order; may be empty */
    size_t n_addrs;
    const char *error; /* the last resolution error, or NULL */
};

/* Answers sorted by name (strcmp), read-only during the compile. */
struct keel_dns_answers {
    const struct keel_dns_answer *v;
    size_t n;
};

/* The answer for name, or NULL. O(log n). answers may be NULL. */
const struct keel_dns_answer *keel_clusters_dns_answer(const struct keel_dns_answers *answers, const char *name);

/* The registry and the clusters of one snapshot (opaque). */
struct keel_cluster_set;

/* Cluster by exact name, or NULL. O(log n), no allocation. */
const struct keel_cluster *keel_clusters_find(const struct keel_cluster_set *cs, const char *name);

/* All clusters sorted by name; *n receives the count. */
const struct keel_cluster *const *keel_clusters_all(const struct keel_cluster_set *cs, size_t *n);

/* Service by FQDN (exact host, case-insensitive), or NULL. */
const struct keel_service *keel_clusters_service(const struct keel_cluster_set *cs, const char *host);

/* Visible services, in registry order (Kubernetes Services, then ServiceEntry
 * hosts, oldest first; the proxy's own namespace wins a duplicated host). */
const struct keel_service *const *keel_clusters_services(const struct keel_cluster_set *cs, size_t *n);

/* Every DNS name the clusters need resolved (answered or not), sorted, without duplicates; *n receives the
 * count. */
const char *const *keel_clusters_dns_names(const struct keel_cluster_set *cs, size_t *n);

/* Port `number` of svc, or NULL. */
const struct keel_svc_port *keel_clusters_service_port(const struct keel_service *svc, uint32_t number);

/* ---- for the mesh modules (snapshot.c) ------------------------------------------- */

/* Builds the registry and every cluster for the proxy of b. Never fails
 * (problems become diagnostics; OOM aborts: config phase). */
struct keel_cluster_set *keel_clusters_build(struct keel_snapshot_build *b);

/* Writes the "clusters" JSON array (with endpoints). */
void keel_clusters_dump_json(const struct keel_cluster_set *cs, struct keel_snapshot_json *j);

#endif
