/*
 * envoyfilter.h - what Keel does with an EnvoyFilter patch.
 *
 * EnvoyFilter patches Envoy's generated xDS (reference §1.6). Keel has no
 * Envoy config to patch: it compiles Istio resources itself. A patch with a
 * Keel meaning is applied by the compile (mesh/patches.c); every other patch
 * is reported, never silently dropped: `keel validate` warns with the reason,
 * and /config_dump lists it as not applied.
 *
 * Applied today: applyTo LISTENER, operation MERGE, a value holding only
 * `socket_options` (the field guide's TCP keep-alive example): each option
 * an integer `level`/`name`/`int_value`, from the set Keel sets on the
 * accepted sockets of the listener (SO_KEEPALIVE, TCP_KEEPIDLE,
 * TCP_KEEPINTVL, TCP_KEEPCNT, TCP_NODELAY, TCP_USER_TIMEOUT), with match
 * context ANY, GATEWAY or SIDECAR_OUTBOUND and a listener match by `name`
 * and/or `portNumber` (no filterChain / listenerFilter / proxy match).
 *
 * Pure: no allocation; reasons are static strings or written into the
 * caller's buffer.
 */
#ifndef KEEL_CONFIG_ENVOYFILTER_H
#define KEEL_CONFIG_ENVOYFILTER_H

#include "config/schema_gen.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEEL_EF_MAX_SOCKOPTS 16

/* One socket option of a LISTENER MERGE patch (Envoy core.v3.SocketOption). */
struct keel_ef_sockopt {
    int level;
    int name;
    int64_t value;
};

struct keel_ef_plan {
    bool applied;       /* Keel has a meaning for this patch */
    const char *reason; /* when not: why (valid while the caller's buffer lives) */
    struct keel_ef_sockopt opts[KEEL_EF_MAX_SOCKOPTS];
    size_t n_opts;
};

/* Decides what Keel does with patch cp (a valid one: validation passed). buf (cap bytes) may receive the reason. */
void keel_envoyfilter_plan(const struct keel_ef_config_patch *cp, struct keel_ef_plan *out, char *buf, size_t cap);

/* "SO_KEEPALIVE", "TCP_KEEPIDLE", ... for a supported option, else NULL. */
const char *keel_envoyfilter_sockopt_name(int level, int name);

/* "LISTENER", "HTTP_FILTER", ... and "MERGE", "INSERT_BEFORE", ... */
const char *keel_envoyfilter_apply_to_name(int apply_to);
const char *keel_envoyfilter_operation_name(int op);

#endif
