/*
 * validate_traffic.h - checks shared by the traffic-management validators.
 *
 * DestinationRule, ServiceEntry, Sidecar, EnvoyFilter, WorkloadEntry and
 * WorkloadGroup reuse a few of istiod's helpers: the connection-pool and
 * client-TLS rules (DestinationRule and Sidecar), the networking workload
 * selector (`workloadSelector.labels`), the unix-socket address rules and
 * the WorkloadEntry rules that also apply to ServiceEntry endpoints. Each is
 * defined once, in the file named next to it, and reports through the
 * keel_vctx like the kind validators do (paths relative to v->path).
 * Checks every kind uses are in validate_common.h.
 */
#ifndef KEEL_CONFIG_VALIDATE_TRAFFIC_H
#define KEEL_CONFIG_VALIDATE_TRAFFIC_H

#include "config/validate.h"

#include <stdbool.h>
#include <stddef.h>

/* ---- validate_destinationrule.c ----------------------------------------- */

/* validateConnectionPool: at least one of http/tcp, non-negative limits,
 * durations, useClientProtocol vs UPGRADE. cp may be NULL (nothing to do);
 * reports relative to the current path, which must be the pool itself. */
void keel_vcheck_connection_pool(struct keel_vctx *v, const struct keel_connection_pool *cp);

/* agent.ValidateTLS for ClientTLSSettings in namespace ns (configmap://
 * credentials must live there). tls may be NULL; the current path must be
 * the settings object itself. */
void keel_vcheck_client_tls(struct keel_vctx *v, const struct keel_client_tls *tls, const char *ns);

/* ---- validate_sidecar.c ------------------------------------------------- */

/* ValidateAlphaWorkloadSelector for `field` of parent (a networking
 * WorkloadSelector with `labels`): empty or wildcard keys are errors, an
 * empty selector is the warning "<who>: workload selector specified without
 * labels, will be applied to all services in namespace". sel may be NULL. */
void keel_vcheck_labels_selector(struct keel_vctx *v, const struct keel_obj *parent, const char *field,
                                 const struct keel_labels_selector *sel, const char *who);

/* ---- validate_workload.c ------------------------------------------------ */

/* How the address of a WorkloadEntry-shaped endpoint is judged. */
enum keel_we_mode {
    KEEL_WE_ENTRY,  /* WorkloadEntry kind: IP, FQDN or unix:// */
    KEEL_WE_STATIC, /* ServiceEntry STATIC endpoint: IP or unix:// */
    KEEL_WE_DNS,    /* ServiceEntry DNS / DNS_ROUND_ROBIN endpoint: IP or FQDN */
    KEEL_WE_OTHER,  /* other resolutions: only the CRD's CEL rules */
};

/* validateWorkloadEntry plus the CRD's CEL rules on it ("Address is
 * required", "UDS may not include ports", UDS path rules). svc_ports, when
 * not NULL, are the ServiceEntry's ports: endpoint port names must be among
 * them. The current path must be the entry itself. */
void keel_vcheck_workload_entry(struct keel_vctx *v, const struct keel_workload_entry *we, enum keel_we_mode mode,
                                const struct keel_service_port *svc_ports, size_t n_svc_ports);

#endif
