/*
 * rules.h - compile the rules of one VirtualService into routes, for one
 * listener context.
 *
 * Follows istio route.go BuildHTTPRoutesForVirtualService, translateRoute,
 * TranslateRouteMatch, applyHTTPRouteDestination, ApplyRedirect,
 * TranslateFault, TranslateCORSPolicy and retry.go ConvertPolicy:
 *   - every `match` block of an `http` rule becomes one keel_route; the
 *     blocks of a rule share one compiled action;
 *   - blocks whose `port` differs from the listener's, whose `gateways` do
 *     not name this gateway (or `mesh`), or whose sourceLabels /
 *     sourceNamespace do not select this proxy are dropped, as istiod drops
 *     them; sidecars also keep sourceLabels/sourceNamespace in the route for
 *     the request path;
 *   - after a catch-all route nothing more of the VirtualService is used
 *     (a warning names every rule left out);
 *   - a destination gets `outbound|<port>|<subset>|<host>`: the port is the
 *     destination's, else the service's only port, else the listener's; when
 *     no such cluster exists the destination keeps the name, its cluster is
 *     NULL (503 NC at run time) and a warning says why (unknown host, port,
 *     or "referenced host+subset in destinationrule not found").
 * Unsupported features (delegate, JWT claim routing, exponential delays)
 * leave the rule or block out with a warning, never silently.
 *
 * Config phase: allocates in the snapshot arena, aborts on OOM.
 */
#ifndef KEEL_MESH_RULES_H
#define KEEL_MESH_RULES_H

#include "mesh/routes.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keel_cluster_set;
struct keel_resource;
struct keel_snapshot_build;

/* Where rules are compiled for: the listener decides the default
 * destination port, the `gateways` filters and the redirect scheme. */
struct keel_rules_ctx {
    struct keel_snapshot_build *b;
    const struct keel_cluster_set *cs;
    uint32_t port;       /* listener (service or gateway server) port */
    bool router;         /* gateway semantics */
    const char *gw_name; /* router: "ns/name" of the gateway */
    bool tls;            /* router: the server terminates TLS */
};

struct keel_rules_list {
    const struct keel_route **v;
    size_t n, cap;
};

struct keel_rules_tcp_list {
    struct keel_l4_route *v;
    size_t n, cap;
};

/* Appends the routes of VirtualService res's `http` rules that apply in x
 * (istio BuildHTTPRoutesForVirtualService; stops after a catch-all route).
 * Returns how many were added. */
size_t keel_rules_compile_http(const struct keel_rules_ctx *x, const struct keel_resource *res,
                               struct keel_rules_list *out);

/* Appends res's `tcp` (tls=false) or `tls` rules that apply in x. For TLS
 * rules, sniHosts are limited to those overlapping sni_limit (gateway server
 * hosts; n_sni_limit 0 = no limit). Returns how many were added. */
size_t keel_rules_compile_l4(const struct keel_rules_ctx *x, const struct keel_resource *res, bool tls,
                             const char *const *sni_limit, size_t n_sni_limit, struct keel_rules_tcp_list *out);

/* The action of a generated route to one cluster ("default"): timeout 0,
 * the mesh default retry policy. */
const struct keel_route_action *keel_rules_default_action(const struct keel_rules_ctx *x, const char *cluster_name);

/* Istio resolveGatewayName: "mesh", "ns/name" ("./name" = vs_ns), legacy
 * "name.ns", or a bare name in vs_ns. Returns "mesh" or buf. */
const char *keel_rules_gateway_name(const char *g, const char *vs_ns, char *buf, size_t n);

/* Envoy name of one KEEL_RETRY_* bit ("connect-failure"), or NULL. */
const char *keel_rules_retry_on_name(uint32_t bit);

#endif
