/*
 * validate_workload.c - istiod's WorkloadEntry and WorkloadGroup rules.
 *
 * A port of ValidateWorkloadEntry / validateWorkloadEntry, ValidateWorkloadGroup
 * and validateReadinessProbe (pkg/config/validation), plus the CEL rules of
 * the CRDs that span fields ("Address is required", "UDS may not include
 * ports") or that the decoder does not run (the UDS path rules). Where a CEL
 * rule and an istiod rule say the same thing, the CEL wording is used once.
 *
 * The WorkloadEntry checks are shared with ServiceEntry endpoints through
 * keel_vcheck_workload_entry() (validate_traffic.h); the mode tells which
 * address forms the endpoint may use.
 */
#include "config/validate_common.h"
#include "config/validate_traffic.h"

#include "base/str.h"

#include <stdio.h>
#include <string.h>

#define UNIX_PREFIX "unix://"

/* The CRD's CEL rules on a unix:// address and its ports map. */
static void check_uds(struct keel_vctx *v, const struct keel_obj *o, const char *addr, bool has_ports)
{
    const char *path = addr + strlen(UNIX_PREFIX);
    if (path[0] != '/' && path[0] != '@')
        keel_verr(v, o, "address", "UDS must be an absolute path or abstract socket (got \"%s\")", addr);
    else if (keel_cstr_has_suffix(addr, "/"))
        keel_verr(v, o, "address", "UDS may not be a dir (got \"%s\")", addr);
    if (has_ports)
        keel_verr(v, o, "ports", "UDS may not include ports: unix endpoint %s must not include ports", addr);
}

static bool svc_port_defined(const struct keel_service_port *ports, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (ports[i].name && strcmp(ports[i].name, name) == 0)
            return true;
    return false;
}

void keel_vcheck_workload_entry(struct keel_vctx *v, const struct keel_workload_entry *we, enum keel_we_mode mode,
                                const struct keel_service_port *svc_ports, size_t n_svc_ports)
{
    const struct keel_obj *o = &we->_o;
    const char *addr = we->address ? we->address : "";
    const char *net = we->network ? we->network : "";
    char buf[KEEL_MSG_MAX];
    bool is_unix = keel_cstr_has_prefix(addr, UNIX_PREFIX);

    if (!*addr) {
        if (!*net)
            keel_verr(v, o, keel_obj_has(o, "address") ? "address" : NULL, "Address is required");
        else if (mode == KEEL_WE_DNS)
            keel_verr(v, o, "network", "endpoint address \"\" is not a valid FQDN or an IP address");
        else if (mode != KEEL_WE_OTHER)
            keel_vwarn(v, o, "network", "address is unset with network %s", keel_quote(net, buf, sizeof(buf)));
    }
    if (is_unix) {
        check_uds(v, o, addr, keel_obj_has(o, "ports"));
        if (mode == KEEL_WE_DNS)
            keel_verr(v, o, "address", "endpoint address %s is not a valid FQDN or an IP address",
                      keel_quote(addr, buf, sizeof(buf)));
        if (mode == KEEL_WE_STATIC && svc_ports && n_svc_ports != 1)
            keel_verr(v, o, "address", "exactly 1 service port required for unix endpoints");
    } else if (*addr && !keel_valid_ip(addr)) {
        if (mode == KEEL_WE_STATIC)
            keel_verr(v, o, "address", "endpoint address %s is not a valid IP address",
                      keel_quote(addr, buf, sizeof(buf)));
        else if (mode != KEEL_WE_OTHER && keel_check_fqdn(addr, buf, sizeof(buf)))
            keel_verr(v, o, "address", "endpoint address %s is not a valid FQDN or an IP address",
                      keel_quote(addr, buf, sizeof(buf)));
    }
    if (mode == KEEL_WE_OTHER)
        return;
    for (size_t i = 0; i < we->n_ports; i++) {
        const struct keel_kv_int *p = &we->ports[i];
        if (svc_ports && !svc_port_defined(svc_ports, n_svc_ports, p->key))
            keel_verr_key(v, o, "ports", p->key, "endpoint port %lld is not defined by the service entry",
                          (long long)p->value);
        /* the name's syntax and the port range are the schema's (the decoder reported them) */
    }
    keel_vcheck_labels(v, o, "labels", we->labels, we->n_labels);
}

void keel_validate_workload_entry(struct keel_vctx *v, const struct keel_workload_entry *s)
{
    keel_vcheck_workload_entry(v, s, KEEL_WE_ENTRY, NULL, 0);
}

/* validateReadinessProbe: what the schema leaves (ranges, ports, the
 * header-name pattern and the oneof are the decoder's). */
static void check_probe(struct keel_vctx *v, const struct keel_readiness_probe *p)
{
    if (!p->http_get && !p->tcp_socket && !p->exec && !p->grpc) {
        keel_verr(v, &p->_o, NULL, "unknown health check method: set one of httpGet, tcpSocket, exec or grpc");
        return;
    }
    if (p->exec && p->exec->n_command == 0 && keel_obj_has(&p->exec->_o, "command")) {
        size_t mark = keel_vpush(v, "exec");
        keel_verr(v, &p->exec->_o, "command", "exec.command is required");
        keel_vpop(v, mark);
    }
}

void keel_validate_workload_group(struct keel_vctx *v, const struct keel_workload_group *s)
{
    size_t mark;
    if (s->metadata) {
        mark = keel_vpush(v, "metadata");
        keel_vcheck_labels(v, &s->metadata->_o, "labels", s->metadata->labels, s->metadata->n_labels);
        keel_vpop(v, mark);
    }
    /* template is required by the schema; its address/ports only get the CEL rules */
    const struct keel_wg_template *t = s->template;
    if (t && t->address && keel_cstr_has_prefix(t->address, UNIX_PREFIX)) {
        mark = keel_vpush(v, "template");
        check_uds(v, &t->_o, t->address, keel_obj_has(&t->_o, "ports"));
        keel_vpop(v, mark);
    }
    if (s->probe) {
        mark = keel_vpush(v, "probe");
        check_probe(v, s->probe);
        keel_vpop(v, mark);
    }
}
