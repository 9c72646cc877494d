/*
 * store.h - the config store: valid resources by (kind, namespace, name), and
 * the Istio scoping queries the data plane compiles from.
 *
 * A keel_store is an immutable snapshot built from one keel_loadset. It holds
 * only the loadset's VALID resources: invalid and skipped documents are left
 * out, and their diagnostics stay in the loadset. The store does not decide
 * what happens when a reload brings invalid config: keeping the last good
 * store serving (and not swapping in one that lost resources) is the
 * caller's job. Two valid documents with the same (kind, namespace, name)
 * are not an error: the one read last replaces the earlier one, as
 * `kubectl apply` would, and the store records a warning (keel_store_diags).
 *
 * Order. Every per-kind list is in Istio's "oldest wins" order: resources
 * with metadata.creationTimestamp first, by time, ties broken by namespace
 * then name; then resources without a timestamp in the order they were read
 * (which is also their creation order when applied). Every query that says
 * "oldest" or "first" means this order.
 *
 * Generations. keel_store_generation() counts changes: a store built
 * without a predecessor has generation 1; built with `prev`, it has
 * prev's generation when nothing changed (same keys, same document content,
 * same mesh defaults), else prev's + 1. Each resource carries the generation
 * at which it last changed (keel_store_changed_at), so consumers can skip
 * recompiling what did not change. Content is compared by a 64-bit hash of
 * the document tree (key order in maps ignored).
 *
 * Queries (Istio sources in docs/config-store.md):
 *   keel_store_visible               exportTo (reference §0.3, §4.2)
 *   keel_store_destination_rule_for  the three-tier DestinationRule lookup (§4.6)
 *   keel_store_sidecar_for           Sidecar selection (§4.9)
 *   keel_store_policies_for          root-namespace + namespace + selector policies (§4.3)
 *
 * Memory: the store owns its indexes and copies of its keys (one arena); it
 * BORROWS the resources, which live in the loadset's arena: keep the loadset
 * alive and unchanged until keel_store_free(). `prev` (with its loadset,
 * which it borrows from) is only read during keel_store_build() and may be
 * freed right after.
 *
 * Failure: building aborts on OOM (config phase, docs/principles.md); the
 * queries never allocate and never fail.
 *
 * Thread-safety: build on one thread; once built the store is immutable and
 * any number of worker threads may query it concurrently without locks.
 */
#ifndef KEEL_CONFIG_STORE_H
#define KEEL_CONFIG_STORE_H

#include "base/diag.h"
#include "config/resource.h"
#include "config/schema_gen.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keel_loadset;
struct keel_store;

/* MeshConfig values that change scoping. Strings are copied by
 * keel_store_build(). A list with no entries means Istio's default, {"*"}. */
struct keel_mesh_defaults {
    const char *root_ns; /* meshConfig.rootNamespace; NULL/"" = "istio-system" */
    const char *domain;  /* cluster domain for short host names; NULL/"" = "cluster.local" */
    const char *const *default_service_export_to;
    size_t n_default_service_export_to;
    const char *const *default_vs_export_to;
    size_t n_default_vs_export_to;
    const char *const *default_dr_export_to;
    size_t n_default_dr_export_to;
};

/* Fills md from a decoded MeshConfig (NULL = all defaults). md borrows
 * mesh's strings. */
void keel_mesh_defaults_from_mesh(struct keel_mesh_defaults *md, const struct keel_mesh_config *mesh);

/* Builds a store from the VALID resources of ls. md NULL = Istio defaults.
 * prev (may be NULL) is the store this one replaces, for generations.
 * Never returns NULL (aborts on OOM). */
struct keel_store *keel_store_build(const struct keel_loadset *ls, const struct keel_mesh_defaults *md,
                                    const struct keel_store *prev);

/* Frees the store (not the loadset). NULL is a no-op. */
void keel_store_free(struct keel_store *s);

/* Warnings found while building (duplicate keys). Owned by the store. */
const struct keel_diags *keel_store_diags(const struct keel_store *s);

/* The effective mesh defaults (root_ns and domain never NULL; empty lists
 * already replaced by {"*"}). Owned by the store. */
const struct keel_mesh_defaults *keel_store_mesh_defaults(const struct keel_store *s);

/* Change counter, see above. */
uint64_t keel_store_generation(const struct keel_store *s);

/* Generation at which r last changed, or 0 when r is not in the store. */
uint64_t keel_store_changed_at(const struct keel_store *s, const struct keel_resource *r);

/* Number of resources (any kind) of prev whose keys are gone from this store. */
size_t keel_store_removed(const struct keel_store *s);

/* ---- lookup and iteration ---------------------------------------------------- */

/* All resources of a kind, oldest first; *n receives the count. The array is
 * owned by the store (never NULL; may be empty). O(1). */
const struct keel_resource *const *keel_store_list(const struct keel_store *s, enum keel_kind kind, size_t *n);

/* Resources of a kind in one namespace (NULL = cluster-scoped), oldest first. O(1). */
const struct keel_resource *const *keel_store_list_ns(const struct keel_store *s, enum keel_kind kind, const char *ns,
                                                      size_t *n);

/* The resource (kind, ns, name), or NULL. ns NULL = cluster-scoped. O(1). */
const struct keel_resource *keel_store_get(const struct keel_store *s, enum keel_kind kind, const char *ns,
                                           const char *name);

/* ---- Istio scoping queries --------------------------------------------------- */

/* Is r visible to proxies in namespace from_ns (exportTo)? For
 * VirtualService, DestinationRule, ServiceEntry and Service (annotation
 * networking.istio.io/exportTo): `*` = everyone, `.` = own namespace, a name
 * = that namespace, `~` = nobody (ServiceEntry; an SE's own workloads are not
 * modelled here). Empty exportTo takes the MeshConfig default, of which, like
 * istiod, only `.` (private) and `*` (public) are honoured; a DestinationRule
 * without exportTo is always visible in its own namespace, and elsewhere
 * unless the default contains `.`. A DestinationRule with a workloadSelector
 * is visible only in its own namespace. Kinds without exportTo are visible
 * everywhere (their scoping is the other queries' job). O(|exportTo|). */
bool keel_store_visible(const struct keel_store *s, const struct keel_resource *r, const char *from_ns);

/* Namespace of the service named host (FQDN) as seen from client_ns: a
 * Kubernetes Service whose `<name>.<ns>.svc.<domain>` is host, else a
 * ServiceEntry listing host; the first visible to client_ns wins (Services
 * before ServiceEntries, oldest first). NULL when none. O(1) + candidates. */
const char *keel_store_service_namespace(const struct keel_store *s, const char *host, const char *client_ns);

enum keel_dr_tier {
    KEEL_DR_TIER_NONE,
    KEEL_DR_TIER_CLIENT_NS,  /* the client proxy's namespace (root ns: its private DRs) */
    KEEL_DR_TIER_SERVICE_NS, /* the service's namespace, exported to the client */
    KEEL_DR_TIER_ROOT_NS,    /* the root namespace, exported to the client */
};

struct keel_dr_lookup {
    enum keel_dr_tier tier;
    const char *host; /* the winning DR host, FQDN lower-cased; NULL when none */
    /* DestinationRules that make the effective rule, in Istio's merge order
     * (§4.6): drs[0] gives trafficPolicy/exportTo, later ones add subsets
     * whose names are new. A workloadSelector match lists the DRs with that
     * same selector, then the selector-less ones; otherwise the selector-less
     * ones, oldest first. Owned by the store. */
    const struct keel_resource *const *drs;
    size_t n_drs;
};

/* The DestinationRule(s) applying to traffic from a proxy in client_ns with
 * client_labels to service host (an FQDN, or a ServiceEntry wildcard host).
 * service_ns is the namespace of the service (NULL = derive it with
 * keel_store_service_namespace()). Tiers, each picking the most specific DR
 * host (§4.1) and the first tier with a match winning:
 *   1. DRs of client_ns visible there (incl. workloadSelector DRs; for a
 *      proxy in the root namespace, the root's private DRs);
 *   2. DRs of service_ns exported to client_ns;
 *   3. DRs of the root namespace exported to client_ns.
 * In tier 1 a DR with a matching workloadSelector wins over the selector-less
 * one. Istio quirk kept for compatibility: when the tier-1 winning host has
 * only workloadSelector DRs and none matches, the result is NONE; lower tiers
 * are not consulted (istio/istio#52691, #57719).
 * Returns drs[0] or NULL; fills *out when out is non-NULL. No allocation:
 * O(labels of host) per tier plus the selector checks. */
const struct keel_resource *keel_store_destination_rule_for(const struct keel_store *s, const char *client_ns,
                                                            const struct keel_kv_str *client_labels,
                                                            size_t n_client_labels, const char *host,
                                                            const char *service_ns, struct keel_dr_lookup *out);

enum keel_sidecar_source {
    KEEL_SIDECAR_DEFAULT,   /* none: import everything visible */
    KEEL_SIDECAR_WORKLOAD,  /* a Sidecar of the namespace whose workloadSelector matches */
    KEEL_SIDECAR_NAMESPACE, /* the namespace's selector-less Sidecar */
    KEEL_SIDECAR_ROOT,      /* the root namespace's selector-less Sidecar */
};

/* The Sidecar for a workload in ns with labels: the oldest Sidecar of ns
 * whose workloadSelector matches > the oldest selector-less Sidecar of ns >
 * the oldest selector-less Sidecar of the root namespace > NULL (default).
 * *src (may be NULL) says which. O(Sidecars in ns). */
const struct keel_resource *keel_store_sidecar_for(const struct keel_store *s, const char *ns,
                                                   const struct keel_kv_str *labels, size_t n_labels,
                                                   enum keel_sidecar_source *src);

enum keel_policy_level {
    KEEL_POLICY_MESH,          /* root namespace, no selector: mesh-wide */
    KEEL_POLICY_MESH_WORKLOAD, /* root namespace, selector matching the workload (any namespace) */
    KEEL_POLICY_NAMESPACE,     /* workload's namespace, no selector */
    KEEL_POLICY_WORKLOAD,      /* workload's namespace, selector matching the workload */
};

struct keel_policy_ref {
    const struct keel_resource *res;
    enum keel_policy_level level;
};

/* Policies of `kind` applying to a workload in ns with labels (sidecar
 * selection; policies using targetRef(s) attach to waypoints/gateways and are
 * skipped). Writes up to cap refs to out and returns how many apply (may be
 * more than cap). Per kind (Istio pilot/pkg/model):
 *   AuthorizationPolicy    root ns then ns; all whose selector.matchLabels
 *                          match (empty = all); root-ns selectors select in
 *                          every namespace.
 *   RequestAuthentication  ns then root ns; same matching.
 *   EnvoyFilter            root ns + ns whose workloadSelector.labels match
 *                          (absent = all), sorted priority ascending, root
 *                          first, then oldest first.
 *   PeerAuthentication,    at most one per level, oldest, in the order
 *   Telemetry,             MESH, NAMESPACE, WORKLOAD (later overrides
 *   ProxyConfig            earlier). Namespace level = no selector labels
 *                          (ProxyConfig: no `selector` at all); workload
 *                          level = non-empty selector in ns matching.
 *                          Selector policies in the root namespace apply
 *                          only to workloads of the root namespace (and
 *                          never for PeerAuthentication).
 * Other kinds: 0. No allocation. */
size_t keel_store_policies_for(const struct keel_store *s, enum keel_kind kind, const char *ns,
                               const struct keel_kv_str *labels, size_t n_labels, struct keel_policy_ref *out,
                               size_t cap);

#endif
