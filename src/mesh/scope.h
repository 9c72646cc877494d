/*
 * scope.h - a sidecar's egress scope: which services and VirtualServices its
 * outbound side imports (Istio's SidecarScope, reference §4.9).
 *
 * The Sidecar resource for the proxy (keel_store_sidecar_for: workload
 * selector > namespace > root namespace) lists `egress[]` listeners, each
 * with `hosts` of the form `ns/dnsName`:
 *
 *   ns       `*` any namespace, `.` the proxy's namespace, `~` none, else
 *            that namespace (of the Service / ServiceEntry / VirtualService);
 *   dnsName  `*`, `*.suffix` or an FQDN, matched with Istio's symmetric
 *            overlap (host.Name.Matches).
 *
 * A listener with a `port` scopes that port; the port-less listener (at
 * most one, last) scopes every other port. A port no listener scopes
 * imports nothing. A service is imported on port P when a host of P's
 * listener admits it, or when a VirtualService that listener imports names
 * it as a destination (route, mirror: Istio infers those destinations,
 * sidecar.go "Infer more possible destinations from virtual services").
 * The clusters are those of services imported on any port. Without a
 * Sidecar, or with one without `egress`, everything visible is imported
 * (Istio's default: every namespace, every host).
 *
 * Non-imported destinations are not blocked by the scope itself: they fall
 * to the outbound traffic policy, which the Sidecar's
 * `outboundTrafficPolicy.mode` overrides for this proxy (MeshConfig
 * otherwise); `egressProxy` (ALLOW_ANY only) sends unknown HTTP traffic to
 * that service instead of PassthroughCluster.
 *
 * Routers have no scope (Sidecar does not apply to gateways).
 *
 * Config phase: arena allocations (aborts on OOM); pure.
 */
#ifndef KEEL_MESH_SCOPE_H
#define KEEL_MESH_SCOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keel_resource;
struct keel_snapshot_build;
struct keel_snapshot_json;
struct keel_scope;

/* The scope of the proxy of b: NULL when everything visible is imported (routers, no Sidecar, no egress). Also
 * sets b->registry_only and b->egress_proxy from the Sidecar's outboundTrafficPolicy. */
struct keel_scope *keel_scope_build(struct keel_snapshot_build *b);

/* Is the service host (FQDN, lower-case) of namespace ns imported on port (0 = on any port)? sc NULL = yes. */
bool keel_scope_service(const struct keel_scope *sc, const char *ns, const char *host, uint32_t port);

/* Is the mesh VirtualService vs imported on port (0 = on any port)? sc NULL = yes. */
bool keel_scope_virtual_service(const struct keel_scope *sc, const struct keel_resource *vs, uint32_t port);

/* The "sidecarScope" object of /config_dump (null without a scope). */
void keel_scope_dump_json(const struct keel_scope *sc, struct keel_snapshot_json *j);

#endif
