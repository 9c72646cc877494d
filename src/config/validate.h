/*
 * validate.h - Istio's semantic validation rules, per kind.
 *
 * After decoding (which enforces the CRD schema), each resource of an Istio
 * kind goes through its kind's validator: istiod's admission-webhook rules
 * (pkg/config/validation in istio/istio) plus the CEL rules that span several
 * fields. Validators never stop at the first problem; they report each one
 * through keel_verr()/keel_vwarn() with the field path and location, and
 * keep going.
 *
 * The registry of validators is the explicit table in validate.c.
 */
#ifndef KEEL_CONFIG_VALIDATE_H
#define KEEL_CONFIG_VALIDATE_H

#include "base/diag.h"
#include "config/resource.h"

#include <stdarg.h>

struct keel_vctx {
    struct keel_diags *diags;
    const struct keel_resource *res; /* the resource being validated */
    struct keel_path path;           /* path of the current object, e.g. "spec.http[0]" */
    size_t errors;
    size_t warnings;
};

/* Validates one decoded resource (any kind; kinds without rules pass).
 * Returns the number of errors reported. */
size_t keel_validate_resource(struct keel_diags *d, const struct keel_resource *r);

/* Error/warning about field `field` of object o (o itself when field is NULL);
 * path = current path + "." + field. */
void keel_verr(struct keel_vctx *v, const struct keel_obj *o, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void keel_vwarn(struct keel_vctx *v, const struct keel_obj *o, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Same, about item i of list field `field` (path "...field[i]"). */
void keel_verr_item(struct keel_vctx *v, const struct keel_obj *o, const char *field, size_t i, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
void keel_vwarn_item(struct keel_vctx *v, const struct keel_obj *o, const char *field, size_t i, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Same, about entry `key` of map field `field` (path "...field.key"). */
void keel_verr_key(struct keel_vctx *v, const struct keel_obj *o, const char *field, const char *key, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));

/* Path helpers: push returns a mark for keel_vpop(). */
size_t keel_vpush(struct keel_vctx *v, const char *field);
size_t keel_vpush_index(struct keel_vctx *v, const char *field, size_t i);
size_t keel_vpush_key(struct keel_vctx *v, const char *field, const char *key);
void keel_vpop(struct keel_vctx *v, size_t mark);

/* Per-kind validators (one file each: validate_<kind>.c). v->path is "spec". */
void keel_validate_virtual_service(struct keel_vctx *v, const struct keel_virtual_service *s);
void keel_validate_gateway(struct keel_vctx *v, const struct keel_gateway *s);
void keel_validate_destination_rule(struct keel_vctx *v, const struct keel_destination_rule *s);
void keel_validate_service_entry(struct keel_vctx *v, const struct keel_service_entry *s);
void keel_validate_sidecar(struct keel_vctx *v, const struct keel_sidecar *s);
void keel_validate_envoy_filter(struct keel_vctx *v, const struct keel_envoy_filter *s);
void keel_validate_workload_entry(struct keel_vctx *v, const struct keel_workload_entry *s);
void keel_validate_workload_group(struct keel_vctx *v, const struct keel_workload_group *s);
void keel_validate_proxy_config(struct keel_vctx *v, const struct keel_proxy_config *s);
void keel_validate_authorization_policy(struct keel_vctx *v, const struct keel_authorization_policy *s);
void keel_validate_peer_authentication(struct keel_vctx *v, const struct keel_peer_authentication *s);
void keel_validate_request_authentication(struct keel_vctx *v, const struct keel_request_authentication *s);
void keel_validate_telemetry(struct keel_vctx *v, const struct keel_telemetry *s);
void keel_validate_wasm_plugin(struct keel_vctx *v, const struct keel_wasm_plugin *s);
void keel_validate_traffic_extension(struct keel_vctx *v, const struct keel_traffic_extension *s);
/* istioctl's checks of Kubernetes objects (validate_kubernetes.c). */
void keel_validate_k8s_service(struct keel_vctx *v, const struct keel_service_object *svc);
void keel_validate_k8s_deployment(struct keel_vctx *v, const struct keel_deployment_object *dep);
/* MeshConfig inside a ConfigMap's data.mesh; v->path is "data.mesh". */
struct keel_mesh_config;
void keel_validate_mesh_config(struct keel_vctx *v, const struct keel_mesh_config *m);

#endif
