/*
 * inbound.h - the sidecar's inbound side: which ports of the proxy's own
 * workload receive traffic, where that traffic goes (the app), and the
 * `inbound|<port>||` route and TCP tables that send it there.
 *
 * Istio (reference: Sidecar `ingress`; istiod buildInboundListeners): with a
 * Sidecar that selects the workload and has `ingress` entries, those entries
 * are the inbound ports, each forwarded to its `defaultEndpoint`
 * (`127.0.0.1:PORT`, `[::1]:PORT`, `unix:///path`; `0.0.0.0:PORT` and
 * `[::]:PORT`, "the instance IP", are the loopback here, since on one
 * machine the app listens there). Without one, every port of every Service
 * (proxy's namespace, selector matching the proxy's labels) and every
 * ServiceEntry (proxy's namespace, workloadSelector matching) is an inbound
 * port; its number is the endpoint port peers dial (the WorkloadEntry's
 * `ports` entry for the service port name, else the Pod's named container
 * port, else `targetPort`, else the service port: what mesh/clusters.c
 * gives the workload's endpoint), forwarded to 127.0.0.1 on that port.
 * Several service ports landing on one port share it (the first one's
 * protocol decides; a different protocol is a warning).
 *
 * Protocol from the port: HTTP, HTTP2, gRPC, gRPC-Web get an HTTP table
 * (one virtual host `*`, one catch-all route to the cluster, no retries, no
 * timeout, as Istio's inbound route); anything else, sniffed ports included,
 * is proxied at L4 (a TCP table with one route to the cluster).
 *
 * Order in a build: keel_inbound_collect() (from mesh/clusters.c, once the
 * registry is known) fills b->inbound; clusters.c then creates the clusters;
 * keel_inbound_tables() (from snapshot.c) builds the tables.
 *
 * Config phase: arena allocations, aborts on OOM. Pure: no I/O.
 */
#ifndef KEEL_MESH_INBOUND_H
#define KEEL_MESH_INBOUND_H

#include <stddef.h>

struct keel_arena_vec;
struct keel_cluster_set;
struct keel_resource;
struct keel_service;
struct keel_snapshot_build;
struct keel_snapshot_json;
struct keel_inbound;

/* A registry service and the resource it came from (Service or ServiceEntry). */
struct keel_inbound_svc {
    const struct keel_service *svc;
    const struct keel_resource *res;
};

/* Sets b->inbound / b->n_inbound (sorted by port) for a sidecar; nothing for a router. */
void keel_inbound_collect(struct keel_snapshot_build *b, const struct keel_inbound_svc *svcs, size_t n);

/* Builds the route / TCP table of every inbound port (clusters exist by now) and appends them to tables
 * (const struct keel_route_table *) and tcp (const struct keel_tcp_table *). */
void keel_inbound_tables(struct keel_snapshot_build *b, const struct keel_cluster_set *cs,
                         struct keel_arena_vec *tables, struct keel_arena_vec *tcp);

/* The "inbound" JSON array of /config_dump. */
void keel_inbound_dump_json(const struct keel_inbound *v, size_t n, struct keel_snapshot_json *j);

#endif
