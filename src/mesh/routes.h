/*
 * routes.h - compiled HTTP route tables and TCP/TLS route tables, and the
 * request-path functions that read them. (mesh/rules.c compiles the rules,
 * mesh/vhosts.c assembles the tables.)
 *
 * A keel_route_table is what Envoy calls a RouteConfiguration: virtual hosts,
 * each with a set of domains and an ordered list of routes. It is compiled
 * from VirtualServices (istio route.go BuildHTTPRoutesForVirtualService):
 * every `match` block of an `http` rule becomes one keel_route (a rule
 * without `match` becomes one route matching everything); the routes of one
 * rule share one compiled keel_route_action. "The first rule with any match
 * block matching" is therefore "the first route that matches", which is
 * what keel_route_match() returns. Conditions decided by the proxy's
 * identity or the listener (match `port`, `gateways`, `sourceLabels`,
 * `sourceNamespace`) are resolved at compile time exactly as istiod does;
 * a catch-all route ends its VirtualService (later rules are dropped, with
 * a diagnostic). Regexes are compiled once (PCRE2, JIT when available) and
 * match the whole value, as RE2's FullMatch in Envoy does.
 *
 * Request path: keel_route_match() finds the virtual host by authority
 * (port ignored, as Istio configures Envoy: exact domain > longest `*.suffix`
 * > `*`) and returns the first matching route, or NULL: no virtual host, or
 * a host whose VirtualService has no matching rule (the proxy answers 404,
 * flag NR). keel_route_pick() chooses a weighted destination. A destination
 * whose cluster is NULL answers 503 (flag NC). None of these allocate; they
 * only read the immutable snapshot and are safe on any thread.
 */
#ifndef KEEL_MESH_ROUTES_H
#define KEEL_MESH_ROUTES_H

#include "base/str.h"
#include "config/schema.h"
#include "mesh/clusters.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keel_http_head;

/* Limits of the request-path matcher (explicit, as docs/principles.md asks). */
#define KEEL_ROUTES_MAX_QUERY_PARAMS 64    /* parameters parsed per request; later ones are ignored */
#define KEEL_ROUTES_MAX_JOINED_HEADER 4096 /* repeated headers joined with "," up to this size */

/* ---- matching ----------------------------------------------------------------- */

enum keel_str_match_kind {
    KEEL_SM_NONE, /* no condition */
    KEEL_SM_EXACT,
    KEEL_SM_PREFIX,
    KEEL_SM_REGEX,   /* whole-value match */
    KEEL_SM_PRESENT, /* header/param present (`{}` or regex "*") */
};

struct keel_regex; /* mesh/regex.h */

struct keel_str_matcher {
    enum keel_str_match_kind kind;
    bool ignore_case;  /* uri with ignoreUriCase (not for regex, as in Envoy) */
    const char *value; /* exact / prefix text, or the regex source */
    size_t len;
    const struct keel_regex *re;
};

/* Does p[0..n) satisfy m (exact, prefix, regex; NONE and PRESENT always do)? */
bool keel_str_matcher_eval(const struct keel_str_matcher *m, const char *p, size_t n);

struct keel_header_matcher {
    const char *name; /* lower-cased; ":authority", ":method", ":scheme", ":path" are pseudo-headers */
    size_t name_len;
    struct keel_str_matcher m;
    bool invert;                 /* withoutHeaders */
    bool treat_missing_as_empty; /* withoutHeaders with a value match */
};

struct keel_query_matcher {
    const char *name;
    size_t name_len;
    struct keel_str_matcher m;
};

/* One VirtualService match block: every condition must hold. */
struct keel_route_cond {
    struct keel_str_matcher uri;               /* default: prefix "/" */
    const struct keel_header_matcher *headers; /* headers, withoutHeaders, method, authority, scheme */
    size_t n_headers;
    const struct keel_query_matcher *query;
    size_t n_query;
    uint32_t port;                           /* 0 = any */
    const struct keel_kv_str *source_labels; /* sidecars only */
    size_t n_source_labels;
    const char *source_ns; /* sidecars only; NULL = any */
    const char *name;      /* match name, or NULL */
};

/* ---- actions ------------------------------------------------------------------- */

struct keel_header_op {
    const char *name;
    const char *value; /* may hold Envoy %...% formatters, passed through */
};

struct keel_route_header_ops {
    const struct keel_header_op *set; /* overwrite or add */
    size_t n_set;
    const struct keel_header_op *add; /* append */
    size_t n_add;
    const char *const *remove;
    size_t n_remove;
};

struct keel_route_headers {
    struct keel_route_header_ops request, response;
};

struct keel_route_dest {
    const char *cluster_name;
    const struct keel_cluster *cluster; /* NULL: no such cluster, the request gets 503 (NC) */
    uint32_t weight;
    uint64_t cumulative;               /* sum of weights up to and including this one */
    struct keel_route_headers headers; /* per-destination header ops */
    const char *host_rewrite;          /* authority set by this destination's headers, or NULL */
};

enum {
    KEEL_RETRY_5XX = 1u << 0,
    KEEL_RETRY_GATEWAY_ERROR = 1u << 1,
    KEEL_RETRY_RESET = 1u << 2,
    KEEL_RETRY_RESET_BEFORE_REQUEST = 1u << 3,
    KEEL_RETRY_CONNECT_FAILURE = 1u << 4,
    KEEL_RETRY_RETRIABLE_4XX = 1u << 5,
    KEEL_RETRY_REFUSED_STREAM = 1u << 6,
    KEEL_RETRY_RETRIABLE_STATUS_CODES = 1u << 7,
    KEEL_RETRY_RETRIABLE_HEADERS = 1u << 8,
    KEEL_RETRY_ENVOY_RATELIMITED = 1u << 9,
    KEEL_RETRY_HTTP3_POST_CONNECT_FAILURE = 1u << 10,
    KEEL_RETRY_CANCELLED = 1u << 11, /* gRPC status codes from here on */
    KEEL_RETRY_DEADLINE_EXCEEDED = 1u << 12,
    KEEL_RETRY_INTERNAL = 1u << 13,
    KEEL_RETRY_RESOURCE_EXHAUSTED = 1u << 14,
    KEEL_RETRY_UNAVAILABLE = 1u << 15,
};

/* Istio's default (retry.go DefaultPolicy, no 503 since 1.24). */
#define KEEL_RETRY_DEFAULT_ON                                                                                          \
    (KEEL_RETRY_CONNECT_FAILURE | KEEL_RETRY_REFUSED_STREAM | KEEL_RETRY_UNAVAILABLE | KEEL_RETRY_CANCELLED |          \
     KEEL_RETRY_RETRIABLE_STATUS_CODES)

struct keel_retry_policy {
    bool enabled;         /* false: retries disabled (attempts <= 0) */
    uint32_t num_retries; /* retries after the first try */
    uint32_t retry_on;    /* KEEL_RETRY_* */
    const uint16_t *status_codes;
    size_t n_status_codes;
    int64_t per_try_timeout;  /* ns; 0 = none */
    int64_t backoff;          /* ns base interval; 0 = Envoy default (25ms) */
    bool previous_hosts;      /* retry host predicate: avoid hosts already tried */
    bool previous_priorities; /* retryRemoteLocalities */
    uint32_t host_selection_max_attempts;
};

#define KEEL_ROUTES_GRPC_NONE (-1)

struct keel_fault {
    bool delay;
    int64_t delay_ns;
    uint32_t delay_per_million;
    bool abort;
    uint32_t abort_http_status; /* 0 when gRPC */
    int32_t abort_grpc_status;  /* KEEL_ROUTES_GRPC_NONE when HTTP */
    uint32_t abort_per_million;
};

struct keel_mirror {
    const char *cluster_name;
    const struct keel_cluster *cluster; /* NULL: no such cluster (the copy is not sent) */
    uint32_t per_million;
};

struct keel_cors {
    const struct keel_str_matcher *origins;
    size_t n_origins;
    const char *allow_methods; /* joined with ",", or NULL */
    const char *allow_headers;
    const char *expose_headers;
    const char *max_age; /* seconds as text, or NULL */
    bool allow_credentials;
    bool has_allow_credentials;
    bool forward_not_matching_preflights;
};

struct keel_redirect {
    const char *scheme;      /* NULL = keep */
    const char *authority;   /* NULL = keep */
    const char *path;        /* NULL = keep */
    uint32_t port;           /* 0 = keep (or default for the scheme) */
    uint16_t code;           /* 301, 302, 303, 307, 308 */
    bool strip_default_port; /* Envoy https_redirect: drop ":80" when switching to https */
};

enum keel_rewrite_kind {
    KEEL_REWRITE_NONE,
    KEEL_REWRITE_PREFIX, /* replace the matched prefix (or the whole path for exact/regex matches) */
    KEEL_REWRITE_REGEX,  /* uriRegexRewrite: substitute every match */
};

enum keel_route_kind {
    KEEL_ROUTE_FORWARD,
    KEEL_ROUTE_REDIRECT,
    KEEL_ROUTE_DIRECT_RESPONSE,
};

struct keel_route_action {
    enum keel_route_kind kind;
    /* FORWARD */
    const struct keel_route_dest *dests;
    size_t n_dests;
    uint64_t total_weight;
    enum keel_rewrite_kind rewrite;
    const char *rewrite_uri; /* PREFIX: replacement; REGEX: substitution */
    const struct keel_regex *rewrite_re;
    const char *host_rewrite; /* rewrite.authority or headers' :authority/host */
    int64_t timeout;          /* ns; 0 = none */
    struct keel_retry_policy retry;
    const struct keel_mirror *mirrors;
    size_t n_mirrors;
    /* REDIRECT / DIRECT_RESPONSE */
    struct keel_redirect redirect;
    uint16_t status;
    const char *body; /* decoded bytes, not NUL-terminated by contract (one is added) */
    size_t body_len;
    /* every kind */
    const struct keel_fault *fault;    /* NULL = none */
    const struct keel_cors *cors;      /* NULL = none */
    struct keel_route_headers headers; /* route-level header ops */
};

struct keel_route {
    const char *name; /* rule name [+ "." + match name]; "default" for generated routes */
    struct keel_route_cond cond;
    const struct keel_route_action *action;
    const char *origin; /* "VirtualService ns/name http[i] match[j]", or "default", ... */
    bool catch_all;     /* prefix "/" (or regex ".*") and nothing else: Istio's IsCatchAllRoute */
};

struct keel_vhost {
    const char *name; /* "<host>:<port>" */
    const char *const *domains;
    size_t n_domains;
    const struct keel_route *const *routes;
    size_t n_routes;
    bool https_redirect; /* gateway httpsRedirect: routes hold one redirect route */
    bool needs_query;    /* some route matches query parameters */
};

struct keel_host_index;

struct keel_route_table {
    const char *name; /* "<port>" (sidecar) or "http.<port>" / "https.<port>.<portName>.<gw>.<ns>" */
    uint32_t port;
    bool router; /* built for a gateway */
    const struct keel_vhost *vhosts;
    size_t n_vhosts;
    const struct keel_host_index *domains; /* domain -> vhost */
    const char *self_ns;                   /* the proxy's namespace and labels: the default `source` */
    const struct keel_kv_str *self_labels;
    size_t n_self_labels;
};

/* The client of a request, for sourceLabels/sourceNamespace (sidecars). */
struct keel_route_source {
    const char *ns;
    const struct keel_kv_str *labels;
    size_t n_labels;
};

/* Virtual host for an authority (":port" ignored), or NULL. */
const struct keel_vhost *keel_route_vhost(const struct keel_route_table *t, struct keel_str authority);

/* First route of the request's virtual host that matches, or NULL (404 NR).
 * port: the listener port the request arrived on (0 = do not check match
 * `port`). source: the client; NULL = the proxy the table was built for. */
const struct keel_route *keel_route_match(const struct keel_route_table *t, const struct keel_http_head *head,
                                          uint32_t port, const struct keel_route_source *source);

/* One condition block against a request (exported for tests and tools). */
bool keel_route_cond_matches(const struct keel_route_cond *c, const struct keel_http_head *head, uint32_t port,
                             const struct keel_route_source *source);

/* Weighted choice among the FORWARD destinations: random spreads over the
 * weights in proportion (O(log n)). NULL when the route does not forward. */
const struct keel_route_dest *keel_route_pick(const struct keel_route *r, uint32_t random);

/* The upstream path after the route's rewrite, into out (cap bytes, NUL
 * added). Returns its length, or KEEL_ETOOBIG / KEEL_EINVAL. No rewrite:
 * the path is copied. No allocation. */
int keel_route_rewrite_path(const struct keel_route *r, struct keel_str path, char *out, size_t cap);

/* ---- TCP / TLS routes ----------------------------------------------------------- */

struct keel_cidr {
    uint8_t family; /* 4 or 6 */
    uint8_t bits;
    uint8_t addr[16];
};

struct keel_l4_cond {
    uint32_t port;                /* 0 = any */
    const char *const *sni_hosts; /* TLS routes; empty = any */
    size_t n_sni_hosts;
    const struct keel_cidr *dst_subnets;
    size_t n_dst_subnets;
    const struct keel_kv_str *source_labels;
    size_t n_source_labels;
    const char *source_ns;
};

struct keel_l4_route {
    const struct keel_l4_cond *conds; /* any; none = always */
    size_t n_conds;
    const struct keel_route_dest *dests;
    size_t n_dests;
    uint64_t total_weight;
    const char *origin;
};

/* Routes for one destination service (sidecar) or one gateway server. */
struct keel_tcp_entry {
    const char *host;
    const char *const *addresses; /* destination IPs that select this entry; none = any address */
    size_t n_addresses;
    const struct keel_l4_route *routes;
    size_t n_routes;
};

struct keel_tcp_table {
    const char *name;
    uint32_t port;
    const struct keel_tcp_entry *entries;
    size_t n_entries;
    const char *self_ns;
    const struct keel_kv_str *self_labels;
    size_t n_self_labels;
};

/* First TCP/TLS route for a connection: the entry whose address is dst_ip,
 * else the first address-less entry; then its first route whose condition
 * holds (sni may be NULL when no TLS ClientHello was seen). NULL = none. */
const struct keel_l4_route *keel_tcp_route_match(const struct keel_tcp_table *t, const char *dst_ip, const char *sni,
                                                 const struct keel_route_source *source);

const struct keel_route_dest *keel_tcp_route_pick(const struct keel_l4_route *r, uint32_t random);

/* Parses an IPv4 or IPv6 address (bits = 32 / 128). */
bool keel_routes_parse_ip(const char *s, struct keel_cidr *out);

#endif
