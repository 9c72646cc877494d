/*
 * validate.c - validator registry and reporting helpers (see validate.h).
 */
#include "config/validate.h"

#include <stdio.h>

/* Calls a typed validator on the resource's spec. */
#define SPEC_VALIDATOR(fn, type)                                                                                     \
    static void run_##fn(struct keel_vctx *v, const struct keel_resource *r)                                        \
    {                                                                                                                \
        if (r->spec)                                                                                                 \
            keel_validate_##fn(v, (const struct type *)r->spec);                                                     \
    }
SPEC_VALIDATOR(virtual_service, keel_virtual_service)
SPEC_VALIDATOR(gateway, keel_gateway)
SPEC_VALIDATOR(destination_rule, keel_destination_rule)
SPEC_VALIDATOR(service_entry, keel_service_entry)
SPEC_VALIDATOR(sidecar, keel_sidecar)
SPEC_VALIDATOR(envoy_filter, keel_envoy_filter)
SPEC_VALIDATOR(workload_entry, keel_workload_entry)
SPEC_VALIDATOR(workload_group, keel_workload_group)
SPEC_VALIDATOR(proxy_config, keel_proxy_config)
SPEC_VALIDATOR(authorization_policy, keel_authorization_policy)
SPEC_VALIDATOR(peer_authentication, keel_peer_authentication)
SPEC_VALIDATOR(request_authentication, keel_request_authentication)
SPEC_VALIDATOR(telemetry, keel_telemetry)
SPEC_VALIDATOR(wasm_plugin, keel_wasm_plugin)
SPEC_VALIDATOR(traffic_extension, keel_traffic_extension)
#undef SPEC_VALIDATOR

static void run_config_map(struct keel_vctx *v, const struct keel_resource *r)
{
    if (!r->mesh)
        return;
    keel_path_init(&v->path, "data");
    keel_path_field(&v->path, "mesh");
    keel_validate_mesh_config(v, r->mesh);
}

static void run_service(struct keel_vctx *v, const struct keel_resource *r)
{
    keel_validate_k8s_service(v, r->body);
}

static void run_deployment(struct keel_vctx *v, const struct keel_resource *r)
{
    keel_validate_k8s_deployment(v, r->body);
}

/* The registry: every kind with semantic rules, one line each. */
static const struct {
    int kind;
    void (*run)(struct keel_vctx *, const struct keel_resource *);
} validators[] = {
    {KEEL_KIND_VIRTUAL_SERVICE, run_virtual_service},
    {KEEL_KIND_GATEWAY, run_gateway},
    {KEEL_KIND_DESTINATION_RULE, run_destination_rule},
    {KEEL_KIND_SERVICE_ENTRY, run_service_entry},
    {KEEL_KIND_SIDECAR, run_sidecar},
    {KEEL_KIND_ENVOY_FILTER, run_envoy_filter},
    {KEEL_KIND_WORKLOAD_ENTRY, run_workload_entry},
    {KEEL_KIND_WORKLOAD_GROUP, run_workload_group},
    {KEEL_KIND_PROXY_CONFIG, run_proxy_config},
    {KEEL_KIND_AUTHORIZATION_POLICY, run_authorization_policy},
    {KEEL_KIND_PEER_AUTHENTICATION, run_peer_authentication},
    {KEEL_KIND_REQUEST_AUTHENTICATION, run_request_authentication},
    {KEEL_KIND_TELEMETRY, run_telemetry},
    {KEEL_KIND_WASM_PLUGIN, run_wasm_plugin},
    {KEEL_KIND_TRAFFIC_EXTENSION, run_traffic_extension},
    {KEEL_KIND_CONFIG_MAP, run_config_map},
    {KEEL_KIND_SERVICE, run_service},
    {KEEL_KIND_DEPLOYMENT, run_deployment},
};

size_t keel_validate_resource(struct keel_diags *d, const struct keel_resource *r)
{
    if (!r->kind)
        return 0;
    struct keel_vctx v = {.diags = d, .res = r};
    keel_path_init(&v.path, "spec");
    for (size_t i = 0; i < sizeof(validators) / sizeof(validators[0]); i++)
        if (validators[i].kind == r->kind->id)
            validators[i].run(&v, r);
    return v.errors;
}

static void report(struct keel_vctx *v, enum keel_severity sev, struct keel_loc loc, const char *fmt, va_list ap)
{
    if (!loc.line)
        loc = v->res ? v->res->loc : loc;
    keel_diags_vadd(v->diags, sev, &loc, keel_path_str(&v->path), fmt, ap);
    if (sev == KEEL_SEV_ERROR)
        v->errors++;
    else
        v->warnings++;
}

size_t keel_vpush(struct keel_vctx *v, const char *field)
{
    return keel_path_field(&v->path, field);
}

size_t keel_vpush_index(struct keel_vctx *v, const char *field, size_t i)
{
    size_t mark = field ? keel_path_field(&v->path, field) : v->path.len;
    keel_path_index(&v->path, i);
    return mark;
}

size_t keel_vpush_key(struct keel_vctx *v, const char *field, const char *key)
{
    size_t mark = field ? keel_path_field(&v->path, field) : v->path.len;
    keel_path_key(&v->path, key);
    return mark;
}

void keel_vpop(struct keel_vctx *v, size_t mark)
{
    keel_path_truncate(&v->path, mark);
}

void keel_verr(struct keel_vctx *v, const struct keel_obj *o, const char *field, const char *fmt, ...)
{
    size_t mark = field ? keel_vpush(v, field) : v->path.len;
    va_list ap;
    va_start(ap, fmt);
    report(v, KEEL_SEV_ERROR, keel_obj_loc(o, field), fmt, ap);
    va_end(ap);
    keel_vpop(v, mark);
}

void keel_vwarn(struct keel_vctx *v, const struct keel_obj *o, const char *field, const char *fmt, ...)
{
    size_t mark = field ? keel_vpush(v, field) : v->path.len;
    va_list ap;
    va_start(ap, fmt);
    report(v, KEEL_SEV_WARNING, keel_obj_loc(o, field), fmt, ap);
    va_end(ap);
    keel_vpop(v, mark);
}

void keel_verr_item(struct keel_vctx *v, const struct keel_obj *o, const char *field, size_t i, const char *fmt, ...)
{
    size_t mark = keel_vpush_index(v, field, i);
    va_list ap;
    va_start(ap, fmt);
    report(v, KEEL_SEV_ERROR, keel_obj_item_loc(o, field, i), fmt, ap);
    va_end(ap);
    keel_vpop(v, mark);
}

void keel_vwarn_item(struct keel_vctx *v, const struct keel_obj *o, const char *field, size_t i, const char *fmt, ...)
{
    size_t mark = keel_vpush_index(v, field, i);
    va_list ap;
    va_start(ap, fmt);
    report(v, KEEL_SEV_WARNING, keel_obj_item_loc(o, field, i), fmt, ap);
    va_end(ap);
    keel_vpop(v, mark);
}

void keel_verr_key(struct keel_vctx *v, const struct keel_obj *o, const char *field, const char *key, const char *fmt,
                   ...)
{
    size_t mark = keel_vpush_key(v, field, key);
    struct keel_loc loc = keel_obj_loc(o, field);
    const struct keel_node *m = o && o->node ? keel_node_get(o->node, field) : NULL;
    const struct keel_pair *p = m ? keel_node_pair(m, key) : NULL;
    if (p)
        loc = p->key->loc;
    va_list ap;
    va_start(ap, fmt);
    report(v, KEEL_SEV_ERROR, loc, fmt, ap);
    va_end(ap);
    keel_vpop(v, mark);
}
