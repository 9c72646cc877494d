/*
 * envoyfilter.c - what Keel does with an EnvoyFilter patch (see envoyfilter.h).
 *
 * The decision depends only on the patch, never on the proxy, so `keel
 * validate` can say "not applied by keel" for exactly the patches the proxy
 * will not apply. Whether an applied patch matches a listener of a given
 * proxy (context, name, port) is the compile's business (mesh/patches.c).
 */
#include "config/envoyfilter.h"

#include "config/node.h"
#include "config/schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    int level, name;
    const char *text;
} sockopts[] = {
    {1, 9, "SO_KEEPALIVE"}, {6, 4, "TCP_KEEPIDLE"}, {6, 5, "TCP_KEEPINTVL"},
    {6, 6, "TCP_KEEPCNT"},  {6, 1, "TCP_NODELAY"},  {6, 18, "TCP_USER_TIMEOUT"},
};

const char *keel_envoyfilter_sockopt_name(int level, int name)
{
    for (size_t i = 0; i < sizeof(sockopts) / sizeof(sockopts[0]); i++)
        if (sockopts[i].level == level && sockopts[i].name == name)
            return sockopts[i].text;
    return NULL;
}

const char *keel_envoyfilter_apply_to_name(int a)
{
    static const char *const names[] = {
        "INVALID",      "LISTENER",   "FILTER_CHAIN", "NETWORK_FILTER",   "HTTP_FILTER", "ROUTE_CONFIGURATION",
        "VIRTUAL_HOST", "HTTP_ROUTE", "CLUSTER",      "EXTENSION_CONFIG", "BOOTSTRAP",   "LISTENER_FILTER",
    };
    return a >= 0 && (size_t)a < sizeof(names) / sizeof(names[0]) ? names[a] : "UNKNOWN";
}

const char *keel_envoyfilter_operation_name(int op)
{
    static const char *const names[] = {"INVALID",      "MERGE",         "ADD",
                                        "REMOVE",       "INSERT_BEFORE", "INSERT_AFTER",
                                        "INSERT_FIRST", "REPLACE",       "MERGE_AND_REPLACE_LIST"};
    return op >= 0 && (size_t)op < sizeof(names) / sizeof(names[0]) ? names[op] : "UNKNOWN";
}

static const char *apply_to_reason(enum keel_ef_config_patch_apply_to a)
{
    switch (a) {
    case KEEL_EF_CONFIG_PATCH_APPLY_TO_HTTP_FILTER:
    case KEEL_EF_CONFIG_PATCH_APPLY_TO_NETWORK_FILTER:
    case KEEL_EF_CONFIG_PATCH_APPLY_TO_LISTENER_FILTER:
    case KEEL_EF_CONFIG_PATCH_APPLY_TO_FILTER_CHAIN:
        return "keel runs no Envoy filter chains (routing, faults, CORS, retries and L4 proxying are built in); "
               "express the behaviour with VirtualService, DestinationRule or Telemetry";
    case KEEL_EF_CONFIG_PATCH_APPLY_TO_ROUTE_CONFIGURATION:
    case KEEL_EF_CONFIG_PATCH_APPLY_TO_VIRTUAL_HOST:
    case KEEL_EF_CONFIG_PATCH_APPLY_TO_HTTP_ROUTE:
        return "keel compiles routes from VirtualServices and has no Envoy route configuration to patch; change the "
               "VirtualService instead";
    case KEEL_EF_CONFIG_PATCH_APPLY_TO_CLUSTER:
        return "keel compiles clusters from DestinationRules and has no Envoy cluster to patch; use the "
               "DestinationRule trafficPolicy (e.g. connectionPool.tcp.tcpKeepalive)";
    case KEEL_EF_CONFIG_PATCH_APPLY_TO_EXTENSION_CONFIG:
        return "keel loads no Envoy extensions";
    case KEEL_EF_CONFIG_PATCH_APPLY_TO_BOOTSTRAP:
        return "keel has no Envoy bootstrap (BOOTSTRAP is deprecated in Istio too)";
    default:
        return "unsupported applyTo";
    }
}

/* An integer field of a socket option (Envoy's JSON takes int64 as a number or a numeric string). */
static bool int_field(const struct keel_node *m, const char *a, const char *b, bool required, int64_t *out)
{
    const struct keel_node *n = keel_node_get(m, a);
    if (!n && b)
        n = keel_node_get(m, b);
    if (!n)
        return !required;
    if (n->type == KEEL_NODE_INT) {
        *out = n->v.i;
        return true;
    }
    if (n->type == KEEL_NODE_STRING && n->len) {
        char *end;
        long long v = strtoll(n->str, &end, 10);
        if (*end == '\0') {
            *out = v;
            return true;
        }
    }
    return false;
}

static bool sockopt(const struct keel_node *m, size_t i, struct keel_ef_sockopt *o, char *buf, size_t cap,
                    const char **reason)
{
    if (!m || m->type != KEEL_NODE_MAP) {
        snprintf(buf, cap, "socket_options[%zu] is not an object", i);
        *reason = buf;
        return false;
    }
    for (size_t k = 0; k < m->n; k++) {
        const char *key = m->c.pairs[k].key->str;
        static const char *const known[] = {"level", "name", "int_value", "intValue", "state", "description"};
        bool ok = false;
        for (size_t j = 0; j < sizeof(known) / sizeof(known[0]) && !ok; j++)
            ok = strcmp(key, known[j]) == 0;
        if (!ok) {
            snprintf(buf, cap, "socket_options[%zu].%s is not applied by keel (only level, name, int_value and state)",
                     i, key);
            *reason = buf;
            return false;
        }
    }
    int64_t level = 0, name = 0, value = 0;
    if (!int_field(m, "level", NULL, false, &level) || !int_field(m, "name", NULL, true, &name) ||
        !int_field(m, "int_value", "intValue", true, &value)) {
        snprintf(buf, cap, "socket_options[%zu] needs integer name and int_value (buf_value is not applied)", i);
        *reason = buf;
        return false;
    }
    const char *state = keel_node_get_str(m, "state");
    if (state && strcmp(state, "STATE_PREBIND") != 0 && strcmp(state, "STATE_BOUND") != 0 &&
        strcmp(state, "STATE_LISTENING") != 0) {
        snprintf(buf, cap, "socket_options[%zu].state %s is not a listener socket state", i, state);
        *reason = buf;
        return false;
    }
    if (!keel_envoyfilter_sockopt_name((int)level, (int)name)) {
        snprintf(buf, cap,
                 "socket option level %lld name %lld is not one keel sets (SO_KEEPALIVE 1/9, TCP_KEEPIDLE 6/4, "
                 "TCP_KEEPINTVL 6/5, TCP_KEEPCNT 6/6, TCP_NODELAY 6/1, TCP_USER_TIMEOUT 6/18)",
                 (long long)level, (long long)name);
        *reason = buf;
        return false;
    }
    if (value < 0 || value > 0x7fffffff) {
        snprintf(buf, cap, "socket_options[%zu].int_value %lld is out of range", i, (long long)value);
        *reason = buf;
        return false;
    }
    *o = (struct keel_ef_sockopt){(int)level, (int)name, value};
    return true;
}

void keel_envoyfilter_plan(const struct keel_ef_config_patch *cp, struct keel_ef_plan *out, char *buf, size_t cap)
{
    memset(out, 0, sizeof(*out));
    const struct keel_ef_patch *p = cp->patch;
    const struct keel_ef_match *m = cp->match;
    if (cp->apply_to != KEEL_EF_CONFIG_PATCH_APPLY_TO_LISTENER) {
        out->reason = apply_to_reason(cp->apply_to);
        return;
    }
    if (!p || p->operation != KEEL_EF_PATCH_OPERATION_MERGE) {
        snprintf(buf, cap, "LISTENER %s is not applied (keel applies LISTENER MERGE of socket_options only)",
                 keel_envoyfilter_operation_name(p ? (int)p->operation : 0));
        out->reason = buf;
        return;
    }
    if (m && m->context == KEEL_EF_MATCH_CONTEXT_SIDECAR_INBOUND) {
        out->reason = "context SIDECAR_INBOUND: keel does not patch inbound listeners yet";
        return;
    }
    if (m && m->context == KEEL_EF_MATCH_CONTEXT_WAYPOINT) {
        out->reason = "context WAYPOINT: keel has no waypoints";
        return;
    }
    if (m && m->proxy) {
        out->reason = "match.proxy (proxyVersion, metadata) is not evaluated by keel";
        return;
    }
    if (m && m->listener && (m->listener->filter_chain || m->listener->listener_filter)) {
        out->reason =
            "match.listener.filterChain / listenerFilter: keel listeners have no Envoy filter chains to match";
        return;
    }
    if (m && m->listener && m->listener->port_name) {
        out->reason = "match.listener.portName is not evaluated by keel (use portNumber or name)";
        return;
    }
    const struct keel_node *v = p->value;
    if (!v || v->type != KEEL_NODE_MAP) {
        out->reason = "patch.value is not an object";
        return;
    }
    const struct keel_node *so = NULL;
    for (size_t k = 0; k < v->n; k++) {
        const char *key = v->c.pairs[k].key->str;
        if (strcmp(key, "socket_options") == 0 || strcmp(key, "socketOptions") == 0) {
            so = v->c.pairs[k].value;
            continue;
        }
        snprintf(buf, cap, "listener field %s has no keel equivalent (keel applies socket_options only)", key);
        out->reason = buf;
        return;
    }
    if (!so || so->type != KEEL_NODE_SEQ || !so->n) {
        out->reason = "socket_options is not a non-empty list";
        return;
    }
    if (so->n > KEEL_EF_MAX_SOCKOPTS) {
        snprintf(buf, cap, "more than %d socket_options", KEEL_EF_MAX_SOCKOPTS);
        out->reason = buf;
        return;
    }
    for (size_t i = 0; i < so->n; i++)
        if (!sockopt(so->c.items[i], i, &out->opts[i], buf, cap, &out->reason)) {
            out->n_opts = 0;
            return;
        }
    out->n_opts = so->n;
    out->applied = true;
}
