/*
 * vhosts.h - assemble route tables: which VirtualService serves which host on
 * which listener, with which domains.
 *
 * Sidecar (istio httproute.go BuildSidecarOutboundVirtualHosts, route.go
 * BuildSidecarVirtualHostWrapper): one table per service port, "<port>".
 * VirtualServices bound to `mesh` (no `gateways` = mesh) and visible in the
 * proxy's namespace are taken oldest first. Each service host is claimed by
 * one VirtualService: the oldest with that exact host, else the oldest with
 * the most specific matching wildcard host; a later VirtualService with the
 * same host is dropped for it, with a warning (istioctl IST0109 wording).
 * Claimed services get the VirtualService's routes, and no default route;
 * other HTTP (or sniffed) services get the route `default` (prefix "/" to
 * `outbound|port||host`, timeout 0, default retries). VirtualService hosts
 * that are no service get their own virtual host on the ports of the
 * services the VirtualService claims, or on port 80. Domains: the FQDN, and
 * for Kubernetes services the short forms Istio generates (`name`,
 * `name.ns`, `name.ns.svc` in the proxy's namespace; `name.ns`,
 * `name.ns.svc` elsewhere), the cluster IPs, each also with ":port"; a
 * domain already taken is skipped. A last virtual host `*` sends unknown
 * hosts to PassthroughCluster (`allow_any`) or answers 502 (`block_all`,
 * outboundTrafficPolicy REGISTRY_ONLY).
 *
 * Gateway (istio gateway.go buildGatewayHTTPRouteConfig): a table shared by
 * the plain HTTP servers of a port ("http.<port>"), or one per terminating
 * HTTPS server ("https.<port>.<portName>.<gw>.<ns>"). A VirtualService
 * attaches to a server when it names the gateway, is exported to the
 * gateway's namespace, the server's `ns/host` entries admit its namespace,
 * and its hosts intersect the server's; every host of the intersection gets
 * the routes of every such VirtualService, CONCATENATED in creation order,
 * then catch-all routes moved last (route.go SortVHostRoutes). httpsRedirect
 * turns a virtual host into a 301 to https. No virtual host at all gives the
 * `blackhole` virtual host (404 for everything).
 *
 * TCP: per sidecar port, one entry per non-HTTP service (its cluster IPs
 * select it), with the claiming VirtualService's `tcp` (or `tls` for TLS
 * ports) rules, then the service's own cluster; per gateway TCP/TLS server,
 * the `tcp` (or, for TLS passthrough, `tls`) rules of the VirtualServices
 * bound to it.
 *
 * Config phase: arena allocations, aborts on OOM.
 */
#ifndef KEEL_MESH_VHOSTS_H
#define KEEL_MESH_VHOSTS_H

#include "mesh/routes.h"

#include <stddef.h>
#include <stdint.h>

struct keel_cluster_set;
struct keel_resource;
struct keel_server;
struct keel_snapshot_build;
struct keel_snapshot_json;

/* A gateway server attached to a listener, as snapshot.c selected it. */
struct keel_vhosts_server {
    const struct keel_resource *gateway;
    const struct keel_server *server;
    const char *gw_name; /* "ns/name" */
};

/* Once per build, before the sidecar tables: indexes the mesh VirtualServices. */
void keel_vhosts_prepare(struct keel_snapshot_build *b, const struct keel_cluster_set *cs);

/* Sidecar outbound HTTP table "<port>". */
struct keel_route_table *keel_vhosts_build_sidecar(struct keel_snapshot_build *b, const struct keel_cluster_set *cs,
                                                   uint32_t port);

/* Sidecar outbound TCP table of a port, or NULL when no TCP service uses it. */
struct keel_tcp_table *keel_vhosts_build_sidecar_tcp(struct keel_snapshot_build *b, const struct keel_cluster_set *cs,
                                                     uint32_t port);

/* Gateway HTTP table `name` for the servers sharing it. */
struct keel_route_table *keel_vhosts_build_gateway(struct keel_snapshot_build *b, const struct keel_cluster_set *cs,
                                                   const char *name, uint32_t port,
                                                   const struct keel_vhosts_server *servers, size_t n);

/* Gateway TCP/TLS table for one non-HTTP server. */
struct keel_tcp_table *keel_vhosts_build_gateway_tcp(struct keel_snapshot_build *b, const struct keel_cluster_set *cs,
                                                     const struct keel_vhosts_server *server);

/* JSON of one table (an object; key NULL inside an array). */
void keel_vhosts_dump_table(const struct keel_route_table *t, struct keel_snapshot_json *j);
void keel_vhosts_dump_tcp(const struct keel_tcp_table *t, struct keel_snapshot_json *j);

#endif
