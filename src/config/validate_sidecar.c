/*
 * validate_sidecar.c - istiod's Sidecar rules.
 *
 * A port of ValidateSidecar and its helpers (validateSidecarIngressPortAndBind,
 * validateSidecarEgressPortBindAndCaptureMode, validateSidecarOutboundTrafficPolicy,
 * agent.ValidateNamespaceSlashWildcardHostname and, for ingress TLS, the
 * Gateway's validateTLSOptions) from pkg/config/validation, with istiod's
 * message texts. Connection pools go through the DestinationRule rules
 * (keel_vcheck_connection_pool). Egress hosts of the form `~ns/host`
 * subtract from what the listener imports: they are checked like any host
 * but take no part in the duplicate-host warnings.
 *
 * keel_vcheck_labels_selector(), the networking workload-selector check that
 * ServiceEntry and EnvoyFilter share with Sidecar, lives here too.
 */
#include "config/validate_common.h"
#include "config/validate_traffic.h"

#include "base/str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNIX_PREFIX "unix://"

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

void keel_vcheck_labels_selector(struct keel_vctx *v, const struct keel_obj *parent, const char *field,
                                 const struct keel_labels_selector *sel, const char *who)
{
    if (!sel)
        return;
    size_t mark = keel_vpush(v, field);
    for (size_t i = 0; i < sel->n_labels; i++) {
        const char *k = str_or_empty(sel->labels[i].key), *val = str_or_empty(sel->labels[i].value);
        if (!*k)
            keel_verr_key(v, &sel->_o, "labels", k, "empty key is not supported in selector: \"%s=%s\"", k, val);
        if (strchr(k, '*')) /* wildcard values are the schema's ("wildcard is not supported in selector") */
            keel_verr_key(v, &sel->_o, "labels", k, "wildcard is not supported in selector: \"%s=%s\"", k, val);
    }
    keel_vpop(v, mark);
    if (sel->n_labels == 0)
        keel_vwarn(v, parent, field,
                   "%s: workload selector specified without labels, will be applied to all services in namespace", who);
}

/* ---- ports and binds -------------------------------------------------------- */

static void check_port_number(struct keel_vctx *v, const struct keel_obj *o, const char *field, int64_t port)
{
    char buf[KEEL_MSG_MAX];
    const char *err = keel_check_port(port, buf, sizeof(buf));
    if (err)
        keel_verr(v, o, field, "%s", err);
}

/* Port name (optional) and protocol, common to both directions. */
static void check_port_name_proto(struct keel_vctx *v, const struct keel_sidecar_port *p)
{
    if (p->name && *p->name && !keel_valid_port_name(p->name))
        keel_verr(v, &p->_o, "name", "invalid port name: %s", p->name);
    if (p->protocol && *p->protocol && !keel_valid_protocol(p->protocol))
        keel_verr(v, &p->_o, "protocol", "unsupported protocol: %s", p->protocol);
}

static void check_bind_ip(struct keel_vctx *v, const struct keel_obj *o, const char *bind)
{
    if (bind && *bind && !keel_valid_ip(bind))
        keel_verr(v, o, "bind", "%s is not a valid IP", bind);
}

static void check_unix(struct keel_vctx *v, const struct keel_obj *o, const char *field, const char *addr)
{
    char buf[KEEL_MSG_MAX];
    const char *err = keel_check_unix_address(addr + strlen(UNIX_PREFIX), buf, sizeof(buf));
    if (err)
        keel_verr(v, o, field, "%s", err);
}

/* ---- ingress -------------------------------------------------------------------- */

/* net.SplitHostPort: false (with *why set) on a malformed address. */
static bool split_host_port(const char *s, char *host, size_t hn, const char **port, const char **why)
{
    const char *colon = strrchr(s, ':');
    const char *h = s, *hend;
    size_t j = 0, k = 0;
    host[0] = '\0';
    *port = "";
    if (!colon) {
        *why = "missing port in address";
        return false;
    }
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end) {
            *why = "missing ']' in address";
            return false;
        }
        if (end[1] == '\0') {
            *why = "missing port in address";
            return false;
        }
        if (end + 1 != colon) {
            *why = end[1] == ':' ? "too many colons in address" : "missing port in address";
            return false;
        }
        h = s + 1;
        hend = end;
        j = 1;
        k = (size_t)(end - s) + 1;
    } else {
        hend = colon;
        if (memchr(s, ':', (size_t)(colon - s))) {
            *why = "too many colons in address";
            return false;
        }
    }
    if (strchr(s + j, '[')) {
        *why = "unexpected '[' in address";
        return false;
    }
    if (strchr(s + k, ']')) {
        *why = "unexpected ']' in address";
        return false;
    }
    size_t n = (size_t)(hend - h);
    if (n >= hn)
        n = hn - 1;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = colon + 1;
    return true;
}

static void check_default_endpoint(struct keel_vctx *v, const struct keel_sidecar_ingress *in)
{
    const struct keel_obj *o = &in->_o;
    const char *ep = in->default_endpoint;
    if (keel_cstr_has_prefix(ep, UNIX_PREFIX)) {
        check_unix(v, o, "defaultEndpoint", ep);
        return;
    }
    /* 127.0.0.1:port, [::1]:port or :port */
    char host[256];
    const char *port, *why;
    if (!split_host_port(ep, host, sizeof(host), &port, &why))
        keel_verr(v, o, "defaultEndpoint", "address %s: %s", ep, why);
    if (*host && strcmp(host, "127.0.0.1") != 0 && strcmp(host, "0.0.0.0") != 0 && strcmp(host, "::1") != 0 &&
        strcmp(host, "::") != 0)
        keel_verr(v, o, "defaultEndpoint",
                  "sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,"
                  "unix://filepath or unset");
    long long num;
    if (keel_go_atoi(port, &num) != 0)
        keel_verr(v, o, "defaultEndpoint", "sidecar: defaultEndpoint port (%s) is not a number", port);
    else
        check_port_number(v, o, "defaultEndpoint", num);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The cipher-suite warnings: invalid names, or (duplicates) valid names given
 * twice, as one sorted list "[a b c]" like istiod prints it. */
static void warn_cipher_set(struct keel_vctx *v, const struct keel_server_tls *tls, bool duplicates)
{
    size_t n = tls->n_cipher_suites;
    const char **sel = n ? malloc(n * sizeof(*sel)) : NULL;
    size_t m = 0;
    if (!sel)
        return;
    for (size_t i = 0; i < n; i++) {
        const char *cs = str_or_empty(tls->cipher_suites[i]);
        bool pick;
        if (!duplicates) {
            pick = !keel_valid_cipher_suite(cs);
        } else {
            pick = false;
            if (keel_valid_cipher_suite(cs))
                for (size_t j = 0; j < i && !pick; j++)
                    pick = strcmp(str_or_empty(tls->cipher_suites[j]), cs) == 0;
        }
        if (pick)
            sel[m++] = cs;
    }
    if (m) {
        qsort(sel, m, sizeof(*sel), cmp_str);
        char buf[1024];
        size_t used = 0;
        for (size_t i = 0; i < m && used < sizeof(buf) - 2; i++) {
            if (i && strcmp(sel[i], sel[i - 1]) == 0)
                continue;
            used += (size_t)snprintf(buf + used, sizeof(buf) - used, "%s%s", used ? " " : "", sel[i]);
        }
        if (used >= sizeof(buf))
            used = sizeof(buf) - 1;
        buf[used] = '\0';
        keel_vwarn(v, &tls->_o, "cipherSuites", "ignoring %s cipher suites: [%s]", duplicates ? "duplicate" : "invalid",
                   buf);
    }
    free(sel);
}

/* The Gateway's validateTLSOptions, applied to Sidecar ingress TLS. */
static void check_server_tls(struct keel_vctx *v, const struct keel_server_tls *tls)
{
    const struct keel_obj *o = &tls->_o;
    const char *cert = str_or_empty(tls->server_certificate), *key = str_or_empty(tls->private_key);
    const char *ca = str_or_empty(tls->ca_certificates), *cred = str_or_empty(tls->credential_name);
    const char *crl = str_or_empty(tls->ca_crl);
    enum keel_server_tls_mode mode = tls->mode;

    if ((tls->min_protocol_version == KEEL_SERVER_TLS_MIN_PROTOCOL_VERSION_TLSV1_0 ||
         tls->min_protocol_version == KEEL_SERVER_TLS_MIN_PROTOCOL_VERSION_TLSV1_1) &&
        tls->n_cipher_suites == 0)
        keel_vwarn(v, o, "minProtocolVersion",
                   "TLS version below TLSV1_2 require setting compatible ciphers as by default they no longer include "
                   "compatible ciphers.");
    warn_cipher_set(v, tls, false);
    warn_cipher_set(v, tls, true);

    if (mode == KEEL_SERVER_TLS_MODE_ISTIO_MUTUAL) {
        if (*cert)
            keel_verr(v, o, "serverCertificate", "ISTIO_MUTUAL TLS cannot have associated server certificate");
        if (*key)
            keel_verr(v, o, "privateKey", "ISTIO_MUTUAL TLS cannot have associated private key");
        if (*ca)
            keel_verr(v, o, "caCertificates", "ISTIO_MUTUAL TLS cannot have associated CA bundle");
        if (tls->n_tls_certificates)
            keel_verr(v, o, "tlsCertificates", "ISTIO_MUTUAL TLS cannot have associated tlsCertificates");
        if (*cred)
            keel_verr(v, o, "credentialName", "ISTIO_MUTUAL TLS cannot have associated credentialName");
        if (tls->n_credential_names)
            keel_verr(v, o, "credentialNames", "ISTIO_MUTUAL TLS cannot have associated credentialNames");
        return;
    }
    bool passthrough = mode == KEEL_SERVER_TLS_MODE_PASSTHROUGH || mode == KEEL_SERVER_TLS_MODE_AUTO_PASSTHROUGH;
    if (passthrough && (*crl || *cert || *key || *ca || tls->n_tls_certificates || *cred || tls->n_credential_names))
        keel_vwarn(v, o, "mode", "%s mode does not use certificates, they will be ignored",
                   mode == KEEL_SERVER_TLS_MODE_PASSTHROUGH ? "PASSTHROUGH" : "AUTO_PASSTHROUGH");

    int sources = (*cert && *key) + (*cred != '\0') + (tls->n_credential_names > 0) + (tls->n_tls_certificates > 0);
    if (sources > 1)
        keel_verr(v, o, NULL,
                  "only one of credential_name, credential_names, server_certificate/private_key, tls_certificates "
                  "should be specified");

    bool simple = mode == KEEL_SERVER_TLS_MODE_SIMPLE;
    bool mutual = mode == KEEL_SERVER_TLS_MODE_MUTUAL || mode == KEEL_SERVER_TLS_MODE_OPTIONAL_MUTUAL;
    if ((simple || mutual) && (*cred || tls->n_credential_names))
        return; /* credentials are fetched through SDS */
    if (simple || mutual) {
        const char *what = simple ? "SIMPLE TLS" : "MUTUAL TLS";
        if (mutual && !*ca)
            keel_verr(v, o, "caCertificates", "%s requires a client CA bundle", what);
        if (tls->n_tls_certificates > 2)
            keel_vwarn(v, o, "tlsCertificates", "%s can support up to 2 server certificates", what);
        if (tls->n_tls_certificates) {
            for (size_t i = 0; i < tls->n_tls_certificates; i++) {
                const struct keel_server_tls_certificate *c = &tls->tls_certificates[i];
                size_t mark = keel_vpush_index(v, "tlsCertificates", i);
                if (!c->server_certificate || !*c->server_certificate)
                    keel_verr(v, &c->_o, "serverCertificate", "%s requires a server certificate", what);
                if (!c->private_key || !*c->private_key)
                    keel_verr(v, &c->_o, "privateKey", "%s requires a private key", what);
                keel_vpop(v, mark);
            }
        } else {
            if (!*cert)
                keel_verr(v, o, "serverCertificate", "%s requires a server certificate", what);
            if (!*key)
                keel_verr(v, o, "privateKey", "%s requires a private key", what);
        }
    }
    if (*crl) {
        if (*cred)
            keel_verr(v, o, "caCrl",
                      "CRL is not supported with credentialName. CRL has to be specified in the credential");
        if (simple)
            keel_verr(v, o, "caCrl", "CRL is not supported with SIMPLE TLS");
    }
}

static void check_ingress_tls(struct keel_vctx *v, const struct keel_sidecar_ingress *in)
{
    const struct keel_server_tls *tls = in->tls;
    const struct keel_obj *o = &tls->_o;
    size_t mark = keel_vpush(v, "tls");
    if (tls->n_subject_alt_names)
        keel_verr(v, o, "subjectAltNames", "sidecar: subjectAltNames is not supported in ingress tls");
    if (tls->https_redirect)
        keel_verr(v, o, "httpsRedirect", "sidecar: httpsRedirect is not supported");
    if (tls->credential_name && *tls->credential_name)
        keel_verr(v, o, "credentialName", "sidecar: credentialName is not currently supported");
    if (tls->n_credential_names)
        keel_verr(v, o, "credentialNames", "sidecar: credentialNames is not currently supported");
    if (tls->n_tls_certificates)
        keel_verr(v, o, "tlsCertificates", "sidecar: tls_certificates is not currently supported");
    if (tls->mode == KEEL_SERVER_TLS_MODE_ISTIO_MUTUAL || tls->mode == KEEL_SERVER_TLS_MODE_AUTO_PASSTHROUGH)
        keel_verr(v, o, "mode", "configuration is invalid: cannot set mode to %s in sidecar ingress tls",
                  tls->mode == KEEL_SERVER_TLS_MODE_ISTIO_MUTUAL ? "ISTIO_MUTUAL" : "AUTO_PASSTHROUGH");
    if (!keel_protocol_is_tls(in->port->protocol))
        keel_verr(v, o, NULL, "server cannot have TLS settings for non HTTPS/TLS ports (port protocol is \"%s\")",
                  str_or_empty(in->port->protocol));
    check_server_tls(v, tls);
    keel_vpop(v, mark);
}

static void check_ingress(struct keel_vctx *v, const struct keel_sidecar *s, size_t i)
{
    const struct keel_sidecar_ingress *in = &s->ingress[i];
    const struct keel_sidecar_port *p = in->port;
    if (!p)
        return; /* required by the schema: already reported */
    size_t mark = keel_vpush_index(v, "ingress", i);
    size_t pmark = keel_vpush(v, "port");
    if (p->target_port > 0)
        keel_verr(v, &p->_o, "targetPort", "targetPort has no impact on Sidecars");
    check_port_name_proto(v, p);
    check_port_number(v, &p->_o, "number", p->number);
    keel_vpop(v, pmark);
    check_bind_ip(v, &in->_o, in->bind);
    for (size_t j = 0; j < i; j++) {
        if (s->ingress[j].port && s->ingress[j].port->number == p->number) {
            keel_verr(v, &in->_o, "port", "sidecar: ports on IP bound listeners must be unique");
            break;
        }
    }
    if (in->default_endpoint && *in->default_endpoint)
        check_default_endpoint(v, in);
    if (in->tls)
        check_ingress_tls(v, in);
    if (in->connection_pool) {
        size_t cmark = keel_vpush(v, "connectionPool");
        keel_vcheck_connection_pool(v, in->connection_pool);
        keel_vpop(v, cmark);
        char q[KEEL_MSG_MAX];
        if (in->connection_pool->http && !keel_protocol_is_http(p->protocol))
            keel_vwarn(v, &in->_o, "connectionPool",
                       "sidecar: HTTP connection pool settings are configured for port %lld (%s) but its protocol is "
                       "not HTTP (%s); only TCP settings will apply",
                       (long long)p->number, keel_quote(p->name, q, sizeof(q)), str_or_empty(p->protocol));
    }
    keel_vpop(v, mark);
}

/* ---- egress ----------------------------------------------------------------------- */

static void check_egress_port(struct keel_vctx *v, const struct keel_sidecar_egress *e)
{
    const struct keel_sidecar_port *p = e->port;
    const char *bind = str_or_empty(e->bind);
    size_t mark = keel_vpush(v, "port");
    if (p->target_port > 0)
        keel_verr(v, &p->_o, "targetPort", "targetPort has no impact on Sidecars");
    check_port_name_proto(v, p);
    if (p->number != 0)
        check_port_number(v, &p->_o, "number", p->number);
    keel_vpop(v, mark);
    if (p->number == 0) { /* a unix domain socket listener */
        if (!keel_cstr_has_prefix(bind, UNIX_PREFIX))
            keel_verr(v, &e->_o, "bind", "sidecar: ports with 0 value must have a unix domain socket bind address");
        else
            check_unix(v, &e->_o, "bind", bind);
        if (e->capture_mode != KEEL_SIDECAR_EGRESS_CAPTURE_MODE_DEFAULT &&
            e->capture_mode != KEEL_SIDECAR_EGRESS_CAPTURE_MODE_NONE)
            keel_verr(v, &e->_o, "captureMode",
                      "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners");
    } else {
        check_bind_ip(v, &e->_o, e->bind);
    }
}

/* One `namespace/dnsName` host split in place: slices into the string. */
struct egress_host {
    const char *ns;
    size_t nslen;
    const char *svc;
    bool ok;
};

static struct egress_host split_egress_host(const char *h, const char *own_ns)
{
    struct egress_host r = {0};
    const char *slash = h ? strchr(h, '/') : NULL;
    if (!slash)
        return r;
    r.ok = true;
    r.ns = h;
    r.nslen = (size_t)(slash - h);
    r.svc = slash + 1;
    if (r.nslen == 1 && h[0] == '.') {
        r.ns = own_ns;
        r.nslen = strlen(own_ns);
    }
    return r;
}

static bool same_ns(const struct egress_host *a, const struct egress_host *b)
{
    return a->nslen == b->nslen && memcmp(a->ns, b->ns, a->nslen) == 0;
}

static bool is_exclusion(const struct egress_host *h)
{
    return h->nslen > 0 && h->ns[0] == '~';
}

/* agent.ValidateNamespaceSlashWildcardHostname(host, isGateway=false); a
 * "~ns/host" exclusion is checked as "ns/host" ("~/host" keeps its "~"). */
static void check_egress_host(struct keel_vctx *v, const struct keel_sidecar_egress *e, size_t i)
{
    const char *h = str_or_empty(e->hosts[i]);
    if (h[0] == '~' && h[1] != '/' && h[1] != '~' && h[1] != '\0')
        h++;
    keel_vcheck_ns_slash_host(v, &e->_o, "hosts", i, h, false, false);
}

/* The duplicate-host warnings istiod gives for one listener. */
static void warn_egress_duplicates(struct keel_vctx *v, const struct keel_sidecar_egress *e)
{
    const char *own = keel_vns(v);
    bool all = false, other_ns = false;
    struct egress_host first = {0};
    for (size_t i = 0; i < e->n_hosts; i++) {
        struct egress_host a = split_egress_host(e->hosts[i], own);
        if (!a.ok || is_exclusion(&a))
            continue;
        bool a_star = strcmp(a.svc, "*") == 0;
        bool dup = false;
        for (size_t j = 0; j < i && !dup; j++) {
            struct egress_host b = split_egress_host(e->hosts[j], own);
            if (!b.ok || is_exclusion(&b) || !same_ns(&a, &b))
                continue;
            dup = a_star || strcmp(b.svc, a.svc) == 0 || strcmp(b.svc, "*") == 0;
        }
        if (dup)
            keel_vwarn_item(v, &e->_o, "hosts", i, "duplicated egress host: %s", e->hosts[i]);
        if (a.nslen == 1 && a.ns[0] == '*' && a_star)
            all = true;
        if (!first.ok)
            first = a;
        else if (!same_ns(&first, &a))
            other_ns = true;
    }
    if (all && other_ns)
        keel_vwarn(v, &e->_o, "hosts", "`*/*` host select all resources, no other hosts can be added");
}

static void check_egress(struct keel_vctx *v, const struct keel_sidecar *s)
{
    bool catch_all = false;
    for (size_t i = 0; i < s->n_egress; i++) {
        const struct keel_sidecar_egress *e = &s->egress[i];
        size_t mark = keel_vpush_index(v, "egress", i);
        if (!e->port) {
            /* at most one listener without a port, and it comes last */
            if (catch_all) {
                keel_verr(v, &e->_o, NULL, "sidecar: egress can have only one listener with empty port");
                keel_vpop(v, mark);
                continue;
            }
            if (i == s->n_egress - 1)
                catch_all = true;
            else
                keel_verr(v, &e->_o, NULL,
                          "sidecar: the egress listener with empty port should be the last listener in the list");
        } else {
            check_egress_port(v, e);
            for (size_t j = 0; j < i; j++) {
                const struct keel_sidecar_egress *f = &s->egress[j];
                if (!f->port || (f->port->number == 0) != (e->port->number == 0))
                    continue;
                if (e->port->number == 0 && strcmp(str_or_empty(f->bind), str_or_empty(e->bind)) == 0) {
                    keel_verr(v, &e->_o, "bind", "sidecar: unix domain socket values for listeners must be unique");
                    break;
                }
                if (e->port->number != 0 && f->port->number == e->port->number) {
                    keel_verr(v, &e->_o, "port", "sidecar: ports on IP bound listeners must be unique");
                    break;
                }
            }
        }
        if (e->n_hosts == 0) {
            if (keel_obj_has(&e->_o, "hosts")) /* absent: the schema already said it is required */
                keel_verr(v, &e->_o, "hosts", "sidecar: egress listener must contain at least one host");
        } else {
            for (size_t j = 0; j < e->n_hosts; j++)
                check_egress_host(v, e, j);
            warn_egress_duplicates(v, e);
        }
        keel_vpop(v, mark);
    }
}

/* ---- outbound traffic policy ------------------------------------------------------- */

static void check_outbound(struct keel_vctx *v, const struct keel_outbound_traffic_policy *tp)
{
    const struct keel_destination *d = tp->egress_proxy;
    char buf[KEEL_MSG_MAX];
    if (!d)
        return;
    if (tp->mode != KEEL_OUTBOUND_TRAFFIC_POLICY_MODE_ALLOW_ANY) {
        keel_verr(v, &tp->_o, "egressProxy",
                  "sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode");
        return;
    }
    size_t mark = keel_vpush(v, "egressProxy");
    if (d->host) {
        const char *err = keel_check_fqdn(d->host, buf, sizeof(buf));
        if (err)
            keel_verr(v, &d->_o, "host", "%s", err);
    }
    if (!d->port) {
        keel_verr(v, &d->_o, NULL, "sidecar: egress_proxy port must be non-nil");
    } else {
        if (d->subset && *d->subset && !keel_valid_istio_dns1123_label(d->subset))
            keel_verr(v, &d->_o, "subset", "subset name is invalid: %s", d->subset);
        size_t pmark = keel_vpush(v, "port");
        check_port_number(v, &d->port->_o, "number", d->port->number);
        keel_vpop(v, pmark);
    }
    keel_vpop(v, mark);
}

/* ---- the kind -------------------------------------------------------------------------- */

void keel_validate_sidecar(struct keel_vctx *v, const struct keel_sidecar *s)
{
    keel_vcheck_labels_selector(v, &s->_o, "workloadSelector", s->workload_selector, "sidecar");
    if (s->n_egress == 0 && s->n_ingress == 0 && !s->outbound_traffic_policy && !s->inbound_connection_pool) {
        keel_verr(v, &s->_o, NULL, "sidecar: empty configuration provided");
        return;
    }
    for (size_t i = 0; i < s->n_ingress; i++)
        check_ingress(v, s, i);
    if (s->inbound_connection_pool) {
        size_t mark = keel_vpush(v, "inboundConnectionPool");
        keel_vcheck_connection_pool(v, s->inbound_connection_pool);
        keel_vpop(v, mark);
    }
    check_egress(v, s);
    if (s->outbound_traffic_policy) {
        size_t mark = keel_vpush(v, "outboundTrafficPolicy");
        check_outbound(v, s->outbound_traffic_policy);
        keel_vpop(v, mark);
    }
}
