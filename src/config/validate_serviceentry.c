/*
 * validate_serviceentry.c - istiod's ServiceEntry rules.
 *
 * A port of ValidateServiceEntry (pkg/config/validation) plus the CEL rules
 * of the ServiceEntry CRD that span several fields ("only one of
 * WorkloadSelector or Endpoints can be set", "NONE mode cannot set
 * endpoints", "DNS_ROUND_ROBIN mode cannot have multiple endpoints", "CIDR
 * addresses are allowed only for NONE/STATIC resolution types"). When a CEL
 * rule and an istiod rule catch the same mistake, one error is reported
 * carrying both wordings. Endpoints go through the WorkloadEntry checks
 * (validate_workload.c) in the mode their resolution implies; DYNAMIC_DNS
 * (wildcard hosts resolved per request by a dynamic forward proxy) gets its
 * own rules: wildcard hosts only, no endpoints or addresses, HTTP/TLS ports.
 */
#include "config/validate_common.h"
#include "config/validate_traffic.h"

#include "base/str.h"

#include <string.h>
#include <strings.h>

static const char *const resolution_names[] = {"NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"};

static const char *resolution_name(enum keel_service_entry_resolution r)
{
    return (unsigned)r < sizeof(resolution_names) / sizeof(resolution_names[0]) ? resolution_names[r] : "UNKNOWN";
}

/* The value of label `key` on the resource, or NULL. */
static const char *resource_label(const struct keel_vctx *v, const char *key)
{
    const struct keel_object_meta *m = &v->res->meta;
    for (size_t i = 0; i < m->n_labels; i++)
        if (m->labels[i].key && strcmp(m->labels[i].key, key) == 0)
            return m->labels[i].value ? m->labels[i].value : "";
    return NULL;
}

/* protocol.Parse(p).IsTCP(): TCP, HTTPS, TLS, MONGO, REDIS, MYSQL. */
static bool proto_is_tcp(const char *p)
{
    static const char *const tcp[] = {"TCP", "HTTPS", "TLS", "MONGO", "REDIS", "MYSQL"};
    for (size_t i = 0; p && i < sizeof(tcp) / sizeof(tcp[0]); i++)
        if (strcasecmp(p, tcp[i]) == 0)
            return true;
    return false;
}

static void check_hosts(struct keel_vctx *v, const struct keel_service_entry *s)
{
    char buf[KEEL_MSG_MAX];
    for (size_t i = 0; i < s->n_hosts; i++) {
        const char *h = s->hosts[i];
        if (!h || strcmp(h, "*") == 0)
            continue; /* the schema rejects "*" ("hostname cannot be wildcard") */
        const char *err = keel_check_wildcard_domain(h, buf, sizeof(buf));
        if (err)
            keel_verr_item(v, &s->_o, "hosts", i, "%s", err);
        if (keel_check_partial_wildcard(h, buf, sizeof(buf)))
            keel_vwarn_item(v, &s->_o, "hosts", i, "%s", buf);
    }
}

/* agent.ValidateIPSubnet on every address; returns whether one is a CIDR. */
static bool check_addresses(struct keel_vctx *v, const struct keel_service_entry *s)
{
    char buf[KEEL_MSG_MAX];
    bool cidr = false;
    for (size_t i = 0; i < s->n_addresses; i++) {
        const char *a = s->addresses[i];
        if (!a)
            continue;
        cidr = cidr || strchr(a, '/');
        if (keel_check_ip_subnet(a, buf, sizeof(buf)))
            keel_verr_item(v, &s->_o, "addresses", i, "%s", buf);
    }
    return cidr;
}

static void check_ports(struct keel_vctx *v, const struct keel_service_entry *s)
{
    char q[KEEL_MSG_MAX];
    for (size_t i = 0; i < s->n_ports; i++) {
        const struct keel_service_port *p = &s->ports[i];
        const struct keel_obj *o = &p->_o;
        size_t mark = keel_vpush_index(v, "ports", i);
        if (p->name) {
            for (size_t j = 0; j < i; j++) {
                if (s->ports[j].name && strcmp(s->ports[j].name, p->name) == 0) {
                    keel_verr(v, o, "name", "Duplicate value: service entry port name %s already defined",
                              keel_quote(p->name, q, sizeof(q)));
                    break;
                }
            }
            if (!keel_valid_port_name(p->name))
                keel_verr(v, o, "name", "invalid port name: %s", p->name);
        }
        const char *proto = p->protocol ? p->protocol : "";
        if (*proto && !keel_valid_protocol(proto))
            keel_verr(v, o, "protocol", "unsupported protocol: %s", proto);
        if (s->n_addresses == 0 && (!*proto || strcmp(proto, "TCP") == 0))
            keel_vwarn(v, o, NULL,
                       "addresses are required for ports serving TCP (or unset) protocol when IP Autoallocation is "
                       "not enabled");
        keel_vpop(v, mark);
    }
}

static void check_endpoints(struct keel_vctx *v, const struct keel_service_entry *s, enum keel_we_mode mode)
{
    for (size_t i = 0; i < s->n_endpoints; i++) {
        size_t mark = keel_vpush_index(v, "endpoints", i);
        keel_vcheck_workload_entry(v, &s->endpoints[i], mode, s->ports, s->n_ports);
        keel_vpop(v, mark);
    }
}

static void check_dns(struct keel_vctx *v, const struct keel_service_entry *s)
{
    const struct keel_obj *o = &s->_o;
    const char *res = resolution_name(s->resolution);
    char buf[KEEL_MSG_MAX];
    if (s->n_endpoints == 0) {
        for (size_t i = 0; i < s->n_hosts; i++)
            if (s->hosts[i] && keel_check_fqdn(s->hosts[i], buf, sizeof(buf)))
                keel_verr_item(v, o, "hosts", i,
                               "hosts must be FQDN if no endpoints are provided for resolution mode %s", res);
    }
    if (s->resolution == KEEL_SERVICE_ENTRY_RESOLUTION_DNS_ROUND_ROBIN && s->n_endpoints > 1)
        keel_verr(v, o, "endpoints",
                  "DNS_ROUND_ROBIN mode cannot have multiple endpoints (there must only be 0 or 1 endpoint for "
                  "resolution mode DNS_ROUND_ROBIN)");
    check_endpoints(v, s, KEEL_WE_DNS);
    if (s->n_addresses > 0 && s->n_hosts > 1) {
        for (size_t i = 0; i < s->n_ports; i++) {
            if (proto_is_tcp(s->ports[i].protocol)) {
                keel_vwarn(v, o, "hosts",
                           "service entry can not have more than one host specified simultaneously with address and "
                           "tcp port");
                break;
            }
        }
    }
}

/* Protocols a dynamic forward proxy can route on: Host header or SNI. */
static bool dynamic_dns_protocol(const char *p)
{
    return p && (strcasecmp(p, "HTTP") == 0 || strcasecmp(p, "HTTP2") == 0 || strcasecmp(p, "GRPC") == 0 ||
                 strcasecmp(p, "TLS") == 0);
}

static void check_dynamic_dns(struct keel_vctx *v, const struct keel_service_entry *s)
{
    const struct keel_obj *o = &s->_o;
    if (keel_obj_has(o, "endpoints"))
        keel_verr(v, o, "endpoints", "no endpoints should be provided for resolution type DYNAMIC_DNS");
    check_endpoints(v, s, KEEL_WE_OTHER);
    if (s->n_addresses > 0)
        keel_verr(v, o, "addresses", "no addresses should be provided for resolution type DYNAMIC_DNS");
    for (size_t i = 0; i < s->n_hosts; i++)
        if (s->hosts[i] && !keel_cstr_has_prefix(s->hosts[i], "*."))
            keel_verr_item(v, o, "hosts", i,
                           "hosts must be wildcarded (e.g. *.example.com) for resolution type "
                           "DYNAMIC_DNS: %s",
                           s->hosts[i]);
    for (size_t i = 0; i < s->n_ports; i++) {
        const struct keel_service_port *p = &s->ports[i];
        if (!dynamic_dns_protocol(p->protocol)) {
            size_t mark = keel_vpush_index(v, "ports", i);
            keel_verr(v, &p->_o, "protocol",
                      "only HTTP, HTTP2, GRPC and TLS ports are supported for resolution type DYNAMIC_DNS (got \"%s\")",
                      p->protocol ? p->protocol : "");
            keel_vpop(v, mark);
        }
    }
    const char *waypoint = resource_label(v, "istio.io/use-waypoint");
    if (s->location == KEEL_SERVICE_ENTRY_LOCATION_MESH_INTERNAL && waypoint && strcmp(waypoint, "none") != 0)
        keel_verr(v, o, "resolution",
                  "resolution type DYNAMIC_DNS is not supported for MESH_INTERNAL services that use a waypoint "
                  "(label istio.io/use-waypoint=%s)",
                  waypoint);
}

void keel_validate_service_entry(struct keel_vctx *v, const struct keel_service_entry *s)
{
    const struct keel_obj *o = &s->_o;
    keel_vcheck_labels_selector(v, o, "workloadSelector", s->workload_selector, "service entry");
    if (s->workload_selector && keel_obj_has(o, "endpoints"))
        keel_verr(v, o, "endpoints", "only one of WorkloadSelector or Endpoints can be set");
    check_hosts(v, s);
    if (check_addresses(v, s) && s->resolution != KEEL_SERVICE_ENTRY_RESOLUTION_NONE &&
        s->resolution != KEEL_SERVICE_ENTRY_RESOLUTION_STATIC)
        keel_verr(v, o, "addresses", "CIDR addresses are allowed only for NONE/STATIC resolution types");
    check_ports(v, s);

    switch (s->resolution) {
    case KEEL_SERVICE_ENTRY_RESOLUTION_NONE:
        if (keel_obj_has(o, "endpoints"))
            keel_verr(v, o, "endpoints",
                      "NONE mode cannot set endpoints (no endpoints should be provided for resolution type none)");
        check_endpoints(v, s, KEEL_WE_OTHER);
        if (s->workload_selector)
            keel_vwarn(v, o, "workloadSelector", "workloadSelector should not be set when resolution mode is NONE");
        break;
    case KEEL_SERVICE_ENTRY_RESOLUTION_STATIC:
        check_endpoints(v, s, KEEL_WE_STATIC);
        break;
    case KEEL_SERVICE_ENTRY_RESOLUTION_DNS:
    case KEEL_SERVICE_ENTRY_RESOLUTION_DNS_ROUND_ROBIN:
        check_dns(v, s);
        break;
    case KEEL_SERVICE_ENTRY_RESOLUTION_DYNAMIC_DNS:
        check_dynamic_dns(v, s);
        break;
    default:
        keel_verr(v, o, "resolution", "unsupported resolution type %s", resolution_name(s->resolution));
        break;
    }

    /* plain TCP cannot tell hosts apart (HTTP uses the Host header, TLS the SNI) */
    if (s->resolution != KEEL_SERVICE_ENTRY_RESOLUTION_NONE && s->n_hosts > 1) {
        for (size_t i = 0; i < s->n_ports; i++) {
            const char *proto = s->ports[i].protocol;
            if (!keel_protocol_is_http(proto) && !keel_protocol_is_tls(proto)) {
                keel_verr_item(v, o, "ports", i, "multiple hosts provided with non-HTTP, non-TLS ports");
                break;
            }
        }
    }
    keel_vcheck_export_to(v, o, "exportTo", s->export_to, s->n_export_to, true, false);
}
