/*
 * validate_envoyfilter.c - istiod's EnvoyFilter rules.
 *
 * A port of ValidateEnvoyFilter (pkg/config/validation/envoyfilter): the
 * standing warning that EnvoyFilter exposes internals, the workload
 * selector, and per config patch: applyTo/patch/operation/value present,
 * proxyVersion a valid RE2, the match class fitting applyTo (listener,
 * route configuration or cluster), filter/subFilter names, deprecated
 * filter names (warnings). Plus the CRD's CEL rules that span fields:
 * targetRefs xor workloadSelector, and the waypoint match only with the
 * WAYPOINT context.
 *
 * istiod also decodes patch.value into the Envoy proto for applyTo, which
 * needs Envoy's descriptor registry. Keel checks what can be checked
 * without it: the value is an object, every `@type` is a string naming a
 * type that can exist (v2 and other non-v3 Envoy types are rejected with
 * istiod's "referenced type unknown" message), and `typed_config` objects
 * carry an `@type`.
 *
 * A patch istiod accepts but keel does not apply (config/envoyfilter.h says
 * which) gets a warning naming it and the reason, so nothing is dropped
 * silently.
 */
#include "config/envoyfilter.h"
#include "config/validate_common.h"
#include "config/validate_traffic.h"

#include "base/str.h"

#include <string.h>

#define HCM "envoy.filters.network.http_connection_manager"

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

static const char *const apply_to_names[] = {
    "INVALID",      "LISTENER",   "FILTER_CHAIN", "NETWORK_FILTER",   "HTTP_FILTER", "ROUTE_CONFIGURATION",
    "VIRTUAL_HOST", "HTTP_ROUTE", "CLUSTER",      "EXTENSION_CONFIG", "BOOTSTRAP",   "LISTENER_FILTER",
};

static const char *apply_to_name(enum keel_ef_config_patch_apply_to a)
{
    return (unsigned)a < sizeof(apply_to_names) / sizeof(apply_to_names[0]) ? apply_to_names[a] : "UNKNOWN";
}

/* xds.ReverseDeprecatedFilterNames: the canonical name for a deprecated one, or NULL. */
static const char *canonical_filter_name(const char *name)
{
    static const char *const names[][2] = {
        {"envoy.buffer", "envoy.filters.http.buffer"},
        {"envoy.cors", "envoy.filters.http.cors"},
        {"envoy.csrf", "envoy.filters.http.csrf"},
        {"envoy.http_dynamo_filter", "envoy.filters.http.dynamo"},
        {"envoy.fault", "envoy.filters.http.fault"},
        {"envoy.grpc_http1_bridge", "envoy.filters.http.grpc_http1_bridge"},
        {"envoy.grpc_json_transcoder", "envoy.filters.http.grpc_json_transcoder"},
        {"envoy.grpc_web", "envoy.filters.http.grpc_web"},
        {"envoy.gzip", "envoy.filters.http.gzip"},
        {"envoy.health_check", "envoy.filters.http.health_check"},
        {"envoy.ip_tagging", "envoy.filters.http.ip_tagging"},
        {"envoy.lua", "envoy.filters.http.lua"},
        {"envoy.rate_limit", "envoy.filters.http.ratelimit"},
        {"envoy.router", "envoy.filters.http.router"},
        {"envoy.squash", "envoy.filters.http.squash"},
        {"envoy.listener.http_inspector", "envoy.filters.listener.http_inspector"},
        {"envoy.listener.original_dst", "envoy.filters.listener.original_dst"},
        {"envoy.listener.original_src", "envoy.filters.listener.original_src"},
        {"envoy.listener.proxy_protocol", "envoy.filters.listener.proxy_protocol"},
        {"envoy.listener.tls_inspector", "envoy.filters.listener.tls_inspector"},
        {"envoy.client_ssl_auth", "envoy.filters.network.client_ssl_auth"},
        {"envoy.ext_authz", "envoy.filters.network.ext_authz"},
        {"envoy.http_connection_manager", HCM},
        {"envoy.mongo_proxy", "envoy.filters.network.mongo_proxy"},
        {"envoy.ratelimit", "envoy.filters.network.ratelimit"},
        {"envoy.redis_proxy", "envoy.filters.network.redis_proxy"},
        {"envoy.tcp_proxy", "envoy.filters.network.tcp_proxy"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(name, names[i][0]) == 0)
            return names[i][1];
    return NULL;
}

static void warn_deprecated_name(struct keel_vctx *v, const struct keel_obj *o, const char *name)
{
    const char *canon = name ? canonical_filter_name(name) : NULL;
    if (canon)
        keel_vwarn(v, o, "name", "using deprecated filter name \"%s\"; use \"%s\" instead", name, canon);
}

/* validatePolicyTargetReference (the CRD already rejects a namespace). */
static void check_target_refs(struct keel_vctx *v, const struct keel_envoy_filter *s)
{
    static const char *const allowed[][2] = {
        {"core", "Service"},
        {"networking.istio.io", "ServiceEntry"},
        {"gateway.networking.k8s.io", "Gateway"},
        {"gateway.networking.k8s.io", "GatewayClass"},
    };
    for (size_t i = 0; i < s->n_target_refs; i++) {
        const struct keel_policy_target_ref *r = &s->target_refs[i];
        size_t mark = keel_vpush_index(v, "targetRefs", i);
        if (r->name && !*r->name)
            keel_verr(v, &r->_o, "name", "targetRef name must be set");
        const char *group = r->group && *r->group ? r->group : "core";
        const char *kind = str_or_empty(r->kind);
        bool ok = false;
        for (size_t j = 0; j < sizeof(allowed) / sizeof(allowed[0]) && !ok; j++)
            ok = strcmp(group, allowed[j][0]) == 0 && strcmp(kind, allowed[j][1]) == 0;
        if (!ok && r->kind)
            keel_verr(v, &r->_o, "kind",
                      "targetRef must be to one of [core/v1/Service networking.istio.io/v1/ServiceEntry "
                      "gateway.networking.k8s.io/v1/Gateway gateway.networking.k8s.io/v1/GatewayClass] but was %s/%s",
                      str_or_empty(r->group), kind);
        keel_vpop(v, mark);
    }
}

/* ---- patch.value ------------------------------------------------------------------ */

/* Could istiod resolve this Any type URL? Only the obviously unknown are refused. */
static void check_type_url(struct keel_vctx *v, const struct keel_obj *map, const char *url)
{
    const char *slash = strrchr(url, '/');
    const char *name = slash ? slash + 1 : url;
    bool v2 = strstr(name, ".v2.") || strstr(name, ".v2alpha.") || strstr(name, ".v2alpha1.");
    if (v2) {
        keel_verr(v, map, "@type",
                  "referenced type unknown (hint: try using the v3 XDS API): could not resolve Any message type: %s",
                  url);
        return;
    }
    bool unknown = !*name;
    if (keel_cstr_has_prefix(name, "envoy.") && !strstr(name, ".v3.") && !strstr(name, ".v3alpha."))
        unknown = true; /* every Envoy API in the registry is versioned v3 */
    if (unknown)
        keel_verr(v, map, "@type", "referenced type unknown: could not resolve Any message type: %s", url);
}

/* Walks patch.value; the current path is the node being visited. */
static void check_value_node(struct keel_vctx *v, const struct keel_node *n, int depth)
{
    if (!n || depth > 64)
        return;
    if (n->type == KEEL_NODE_SEQ) {
        for (size_t i = 0; i < n->n; i++) {
            size_t mark = keel_vpush_index(v, NULL, i);
            check_value_node(v, n->c.items[i], depth + 1);
            keel_vpop(v, mark);
        }
        return;
    }
    if (n->type != KEEL_NODE_MAP)
        return;
    struct keel_obj map = {.node = n};
    /* a TypedStruct's `value` is a plain Struct: nothing in it is resolved */
    const char *type = keel_node_get_str(n, "@type");
    bool typed_struct = type && (keel_cstr_has_suffix(type, "udpa.type.v1.TypedStruct") ||
                                 keel_cstr_has_suffix(type, "xds.type.v3.TypedStruct"));
    for (size_t i = 0; i < n->n; i++) {
        const char *key = n->c.pairs[i].key->str;
        const struct keel_node *val = n->c.pairs[i].value;
        if (strcmp(key, "@type") == 0) {
            if (val->type != KEEL_NODE_STRING)
                keel_verr(v, &map, "@type", "invalid @type: expected a type URL string, got %s",
                          keel_node_type_name(val->type));
            else
                check_type_url(v, &map, val->str);
            continue;
        }
        if ((strcmp(key, "typed_config") == 0 || strcmp(key, "typedConfig") == 0) && val->type == KEEL_NODE_MAP &&
            val->n > 0 && !keel_node_get(val, "@type"))
            keel_verr(v, &map, key, "missing \"@type\" field in %s", key);
        if (typed_struct && strcmp(key, "value") == 0)
            continue;
        size_t mark = keel_vpush(v, key);
        check_value_node(v, val, depth + 1);
        keel_vpop(v, mark);
    }
}

static void check_value(struct keel_vctx *v, const struct keel_ef_patch *p)
{
    const struct keel_node *val = p->value;
    if (!val || val->type == KEEL_NODE_NULL)
        return;
    if (val->type != KEEL_NODE_MAP) {
        keel_verr(v, &p->_o, "value", "patch value must be an object (an Envoy xDS fragment), got %s",
                  keel_node_type_name(val->type));
        return;
    }
    size_t mark = keel_vpush(v, "value");
    check_value_node(v, val, 0);
    keel_vpop(v, mark);
}

/* ---- matches ------------------------------------------------------------------------ */

/* Listener-class applyTo (LISTENER ... HTTP_FILTER). Returns false to skip the value. */
static bool check_listener_match(struct keel_vctx *v, const struct keel_ef_config_patch *cp)
{
    const struct keel_ef_match *m = cp->match;
    if (!m->listener) {
        keel_verr(v, &m->_o, NULL, "Envoy filter: applyTo for listener class objects cannot have non listener match");
        return false;
    }
    const struct keel_ef_filter_chain_match *fc = m->listener->filter_chain;
    const struct keel_ef_filter_match *f = fc ? fc->filter : NULL;
    if (!f)
        return true;
    size_t mark = keel_vpush(v, "listener");
    keel_vpush(v, "filterChain");
    keel_vpush(v, "filter");
    bool ok = true;
    if (cp->apply_to == KEEL_EF_CONFIG_PATCH_APPLY_TO_LISTENER ||
        cp->apply_to == KEEL_EF_CONFIG_PATCH_APPLY_TO_FILTER_CHAIN)
        keel_vwarn(v, &f->_o, NULL, "Envoy filter: filter match has no effect when used with %s",
                   apply_to_name(cp->apply_to));
    const char *name = str_or_empty(f->name);
    if (!*name) {
        keel_verr(v, &f->_o, "name", "Envoy filter: filter match has no name to match on");
        ok = false;
    } else if (f->sub_filter) {
        if (cp->apply_to != KEEL_EF_CONFIG_PATCH_APPLY_TO_HTTP_FILTER) {
            keel_verr(v, &f->_o, "subFilter",
                      "Envoy filter: subfilter match can be used with applyTo HTTP_FILTER only");
            ok = false;
        } else if (strcmp(name, HCM) != 0 && strcmp(name, "envoy.http_connection_manager") != 0) {
            keel_verr(v, &f->_o, "subFilter", "Envoy filter: subfilter match requires filter match with %s", HCM);
            ok = false;
        } else if (!f->sub_filter->name || !*f->sub_filter->name) {
            keel_verr(v, &f->_o, "subFilter", "Envoy filter: subfilter match has no name to match on");
            ok = false;
        }
    }
    if (ok) {
        warn_deprecated_name(v, &f->_o, f->name);
        if (f->sub_filter) {
            size_t smark = keel_vpush(v, "subFilter");
            warn_deprecated_name(v, &f->sub_filter->_o, f->sub_filter->name);
            keel_vpop(v, smark);
        }
    }
    keel_vpop(v, mark);
    return ok;
}

/* The CRD rule: match.waypoint exactly when context is WAYPOINT. */
static void check_waypoint_context(struct keel_vctx *v, const struct keel_ef_match *m)
{
    bool waypoint_ctx = m->context == KEEL_EF_MATCH_CONTEXT_WAYPOINT;
    if (waypoint_ctx != (m->waypoint != NULL))
        keel_verr(v, &m->_o, NULL, "only support waypointMatch when context is WAYPOINT (%s)",
                  waypoint_ctx ? "context WAYPOINT needs a waypoint match" : "a waypoint match needs context WAYPOINT");
}

/* Returns false when istiod would stop before looking at the value. */
static bool check_match(struct keel_vctx *v, const struct keel_ef_config_patch *cp)
{
    const struct keel_ef_match *m = cp->match;
    char buf[KEEL_MSG_MAX];
    size_t mark = keel_vpush(v, "match");
    bool ok = true;
    if (m->proxy && m->proxy->proxy_version && *m->proxy->proxy_version) {
        const char *err = keel_check_regex(m->proxy->proxy_version, buf, sizeof(buf));
        if (err) {
            size_t pmark = keel_vpush(v, "proxy");
            keel_verr(v, &m->proxy->_o, "proxyVersion", "Envoy filter: invalid regex for proxy version, [%s]", err);
            keel_vpop(v, pmark);
            keel_vpop(v, mark);
            return false;
        }
    }
    /* a waypoint match selects by its own fields, whatever the class */
    bool has_object = m->listener || m->route_configuration || m->cluster;
    if (has_object && !m->waypoint) {
        switch (cp->apply_to) {
        case KEEL_EF_CONFIG_PATCH_APPLY_TO_LISTENER:
        case KEEL_EF_CONFIG_PATCH_APPLY_TO_FILTER_CHAIN:
        case KEEL_EF_CONFIG_PATCH_APPLY_TO_NETWORK_FILTER:
        case KEEL_EF_CONFIG_PATCH_APPLY_TO_HTTP_FILTER:
            ok = check_listener_match(v, cp);
            break;
        case KEEL_EF_CONFIG_PATCH_APPLY_TO_ROUTE_CONFIGURATION:
        case KEEL_EF_CONFIG_PATCH_APPLY_TO_VIRTUAL_HOST:
        case KEEL_EF_CONFIG_PATCH_APPLY_TO_HTTP_ROUTE:
            if (!m->route_configuration)
                keel_verr(v, &m->_o, NULL,
                          "Envoy filter: applyTo for http route class objects cannot have non route configuration "
                          "match");
            break;
        case KEEL_EF_CONFIG_PATCH_APPLY_TO_CLUSTER:
            if (!m->cluster)
                keel_verr(v, &m->_o, NULL,
                          "Envoy filter: applyTo for cluster class objects cannot have non cluster match");
            break;
        default:
            break;
        }
    }
    keel_vpop(v, mark);
    return ok;
}

static void check_patch(struct keel_vctx *v, const struct keel_ef_config_patch *cp)
{
    const struct keel_obj *o = &cp->_o;
    if (cp->match) {
        size_t mark = keel_vpush(v, "match");
        check_waypoint_context(v, cp->match);
        keel_vpop(v, mark);
    }
    if (cp->apply_to == KEEL_EF_CONFIG_PATCH_APPLY_TO_INVALID) {
        keel_verr(v, o, "applyTo", "Envoy filter: missing applyTo");
        return;
    }
    const struct keel_ef_patch *p = cp->patch;
    if (!p) {
        keel_verr(v, o, "patch", "Envoy filter: missing patch");
        return;
    }
    size_t mark = keel_vpush(v, "patch");
    bool has_value = p->value && p->value->type != KEEL_NODE_NULL;
    if (p->operation == KEEL_EF_PATCH_OPERATION_INVALID) {
        keel_verr(v, &p->_o, "operation", "Envoy filter: missing patch operation");
        keel_vpop(v, mark);
        return;
    }
    if (p->operation != KEEL_EF_PATCH_OPERATION_REMOVE && !has_value) {
        keel_verr(v, &p->_o, "value", "Envoy filter: missing patch value for non-remove operation");
        keel_vpop(v, mark);
        return;
    }
    keel_vpop(v, mark);
    if (cp->match && !check_match(v, cp))
        return;
    mark = keel_vpush(v, "patch");
    check_value(v, p);
    keel_vpop(v, mark);
    /* valid for istiod; does keel apply it? (config/envoyfilter.h) never drop a patch silently */
    struct keel_ef_plan plan;
    char why[400];
    keel_envoyfilter_plan(cp, &plan, why, sizeof(why));
    if (!plan.applied)
        keel_vwarn(v, o, NULL, "%s %s patch not applied by keel: %s", apply_to_name(cp->apply_to),
                   keel_envoyfilter_operation_name((int)p->operation), plan.reason);
}

void keel_validate_envoy_filter(struct keel_vctx *v, const struct keel_envoy_filter *s)
{
    const struct keel_obj *o = &s->_o;
    keel_vwarn(v, o, NULL,
               "EnvoyFilter exposes internal implementation details that may change at any time. Prefer other APIs if "
               "possible, and exercise extreme caution, especially around upgrades.");
    if (s->workload_selector && keel_obj_has(o, "targetRefs"))
        keel_verr(v, o, "targetRefs", "only one of targetRefs or workloadSelector can be set");
    keel_vcheck_labels_selector(v, o, "workloadSelector", s->workload_selector, "Envoy filter");
    check_target_refs(v, s);
    for (size_t i = 0; i < s->n_config_patches; i++) {
        size_t mark = keel_vpush_index(v, "configPatches", i);
        check_patch(v, &s->config_patches[i]);
        keel_vpop(v, mark);
    }
}
