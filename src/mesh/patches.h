/*
 * patches.h - EnvoyFilter patches applied to a snapshot's listeners, and
 * the report of every patch (applied or not) for /config_dump.
 *
 * The EnvoyFilters of the proxy come from keel_store_policies_for()
 * (root namespace + the proxy's namespace, workloadSelector matching; sorted
 * by `priority` ascending, root namespace first on ties, then oldest first:
 * Istio's order), their patches in list order. A patch Keel applies
 * (config/envoyfilter.h: LISTENER MERGE of socket_options) is applied to
 * every listener its match selects: context ANY or GATEWAY on routers, ANY
 * or SIDECAR_OUTBOUND on sidecars (their L4 service-port listeners), and
 * `listener.name` / `listener.portNumber` when given. MERGE appends the
 * options to the listener's list, as protobuf merging of a repeated field
 * does, so for one option the patch applied last (highest priority) wins
 * when the proxy sets them in order on each accepted socket.
 *
 * Every patch gets a report entry: applied (with the listeners it changed),
 * or not applied with the reason (Keel has no meaning for it, or no listener
 * of this proxy matched).
 *
 * Config phase: arena allocations, aborts on OOM; pure.
 */
#ifndef KEEL_MESH_PATCHES_H
#define KEEL_MESH_PATCHES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keel_listener;
struct keel_snapshot_build;
struct keel_snapshot_json;

struct keel_ef_report {
    const char *filter; /* "ns/name" */
    size_t index;       /* configPatches[index] */
    int64_t priority;
    const char *apply_to;
    const char *operation;
    const char *context;
    bool applied;
    const char *reason;           /* when not applied */
    const char *const *listeners; /* when applied: the listeners it changed */
    size_t n_listeners;
};

/* Applies the proxy's EnvoyFilters to listeners ls[0..n) (sets their socket options) and returns the report
 * (*n_out entries, in application order). */
const struct keel_ef_report *keel_patches_apply(struct keel_snapshot_build *b, struct keel_listener *ls, size_t n,
                                                size_t *n_out);

/* The "envoyFilters" array of /config_dump. */
void keel_patches_dump_json(const struct keel_ef_report *r, size_t n, struct keel_snapshot_json *j);

#endif
