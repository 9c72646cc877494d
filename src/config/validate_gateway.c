/*
 * validate_gateway.c - istiod's admission rules for Gateway.
 *
 * A port of ValidateGateway, validateServer, validateServerPort,
 * validateServerBind and validateTLSOptions from istio/istio's
 * pkg/config/validation: the resource name must be a DNS label, every
 * server needs hosts of the form [namespace/]dnsName and a well-formed
 * port, port names are unique across servers, and the TLS settings must fit
 * the TLS mode (certificates for SIMPLE/MUTUAL, none for ISTIO_MUTUAL,
 * ignored with a warning for the passthrough modes). Schema-level checks
 * (required fields, enums, the CEL rules on certificate sources) are the
 * decoder's; what is left is reported here with istiod's wording, errors and
 * warnings alike, each at the path of its field.
 */
#include "config/validate.h"

#include "base/str.h"
#include "config/validate_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* internal.istio.io/gateway-semantics: gateway (converted from Gateway API) */
#define GATEWAY_SEMANTICS_ANNOTATION "internal.istio.io/gateway-semantics"
#define UNIX_PREFIX "unix://"

/* snprintf for messages: truncation of an over-long value is acceptable */
__attribute__((format(printf, 3, 4))) static void msgf(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

static const char *const tls_mode_names[] = {"PASSTHROUGH",      "SIMPLE",       "MUTUAL",
                                             "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"};

static bool set(const char *s)
{
    return s && *s;
}

/* Go's %v of a networking.Port, as in "port name must be set: %v" */
static const char *port_text(const struct keel_gateway_port *p, char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = '\0';
    if (p->number)
        used += (size_t)snprintf(buf + used, n - used, "number:%lld", (long long)p->number);
    if (set(p->protocol) && used < n)
        used += (size_t)snprintf(buf + used, n - used, "%sprotocol:\"%s\"", used ? " " : "", p->protocol);
    if (set(p->name) && used < n)
        used += (size_t)snprintf(buf + used, n - used, "%sname:\"%s\"", used ? " " : "", p->name);
    if (p->target_port && used < n)
        msgf(buf + used, n - used, "%starget_port:%lld", used ? " " : "", (long long)p->target_port);
    return buf;
}

/* validateServerPort; returns whether it found a problem */
static bool check_server_port(struct keel_vctx *v, const struct keel_server *srv)
{
    const struct keel_gateway_port *p = srv->port;
    char buf[KEEL_MSG_MAX], q[KEEL_MSG_MAX];
    size_t before = v->errors;
    size_t mark = keel_vpush(v, "port");
    if (p->protocol && !keel_valid_protocol(p->protocol)) /* absent: the decoder reported it */
        keel_verr(v, &p->_o, "protocol",
                  "invalid protocol %s, supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, "
                  "MONGO, REDIS, MYSQL, TCP",
                  keel_quote(p->protocol ? p->protocol : "", q, sizeof(q)));
    if ((p->number > 0 || !keel_cstr_has_prefix(srv->bind, UNIX_PREFIX)) &&
        keel_check_port(p->number, buf, sizeof(buf)))
        keel_verr(v, &p->_o, "number", "%s", buf);
    if (p->target_port > 0)
        keel_verr(v, &p->_o, "targetPort", "targetPort has no impact on Gateways");
    if (!set(p->name) && keel_obj_has(&p->_o, "name")) /* absent: the decoder reported it */
        keel_verr(v, &p->_o, "name", "port name must be set: %s", port_text(p, buf, sizeof(buf)));
    keel_vpop(v, mark);
    return v->errors > before;
}

/* validateServerBind */
static void check_server_bind(struct keel_vctx *v, const struct keel_server *srv)
{
    char buf[KEEL_MSG_MAX];
    if (keel_cstr_has_prefix(srv->bind, UNIX_PREFIX)) {
        if (keel_check_unix_address(srv->bind + strlen(UNIX_PREFIX), buf, sizeof(buf)))
            keel_verr(v, &srv->_o, "bind", "%s", buf);
        if (srv->port && srv->port->number != 0) {
            char pt[KEEL_MSG_MAX];
            keel_verr(v, &srv->_o, "bind", "port number must be 0 for unix domain socket: %s",
                      port_text(srv->port, pt, sizeof(pt)));
        }
    } else if (set(srv->bind) && keel_check_ip_address(srv->bind, buf, sizeof(buf))) {
        keel_verr(v, &srv->_o, "bind", "%s", buf);
    }
}

static const char *cipher_at(const struct keel_server_tls *t, size_t i)
{
    return t->cipher_suites[i] ? t->cipher_suites[i] : "";
}

/* which == 0: an invalid suite; which == 1: a valid one seen before */
static bool cipher_is(const struct keel_server_tls *t, size_t i, int which)
{
    if (!keel_valid_cipher_suite(cipher_at(t, i)))
        return which == 0;
    if (which == 0)
        return false;
    for (size_t j = 0; j < i; j++)
        if (strcmp(cipher_at(t, j), cipher_at(t, i)) == 0)
            return true;
    return false;
}

/* sets.SortedList of the selected suites, as Go's %v prints it: "[a b]" */
static const char *cipher_list(const struct keel_server_tls *t, int which, char *buf, size_t cap)
{
    size_t used = 0;
    const char *prev = NULL;
    buf[used++] = '[';
    buf[used] = '\0';
    for (;;) {
        /* the smallest selected suite greater than prev */
        const char *next = NULL;
        for (size_t i = 0; i < t->n_cipher_suites; i++) {
            const char *cs = cipher_at(t, i);
            if ((prev && strcmp(cs, prev) <= 0) || (next && strcmp(cs, next) >= 0) || !cipher_is(t, i, which))
                continue;
            next = cs;
        }
        if (!next || used + strlen(next) + 3 >= cap)
            break;
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", prev ? " " : "", next);
        prev = next;
    }
    buf[used++] = ']';
    buf[used] = '\0';
    return buf;
}

static void check_cipher_suites(struct keel_vctx *v, const struct keel_server_tls *t)
{
    bool any[2] = {false, false};
    for (size_t i = 0; i < t->n_cipher_suites; i++)
        for (int which = 0; which < 2; which++)
            any[which] |= cipher_is(t, i, which);
    char buf[KEEL_MSG_MAX * 2];
    if (any[0])
        keel_vwarn(v, &t->_o, "cipherSuites", "ignoring invalid cipher suites: %s",
                   cipher_list(t, 0, buf, sizeof(buf)));
    if (any[1])
        keel_vwarn(v, &t->_o, "cipherSuites", "ignoring duplicate cipher suites: %s",
                   cipher_list(t, 1, buf, sizeof(buf)));
}

/* validateTLSOptions; v->path is the server's */
static void check_tls(struct keel_vctx *v, const struct keel_server_tls *t)
{
    if (!t)
        return;
    size_t mark = keel_vpush(v, "tls");
    const struct keel_obj *o = &t->_o;
    enum keel_server_tls_mode mode = t->mode;
    if ((t->min_protocol_version == KEEL_SERVER_TLS_MIN_PROTOCOL_VERSION_TLSV1_0 ||
         t->min_protocol_version == KEEL_SERVER_TLS_MIN_PROTOCOL_VERSION_TLSV1_1) &&
        t->n_cipher_suites == 0)
        keel_vwarn(v, o, "minProtocolVersion",
                   "TLS version below TLSV1_2 require setting compatible ciphers as by "
                   "default they no longer include compatible ciphers.");
    check_cipher_suites(v, t);

    if (mode == KEEL_SERVER_TLS_MODE_ISTIO_MUTUAL) {
        if (set(t->server_certificate))
            keel_verr(v, o, "serverCertificate", "ISTIO_MUTUAL TLS cannot have associated server certificate");
        if (set(t->private_key))
            keel_verr(v, o, "privateKey", "ISTIO_MUTUAL TLS cannot have associated private key");
        if (set(t->ca_certificates))
            keel_verr(v, o, "caCertificates", "ISTIO_MUTUAL TLS cannot have associated CA bundle");
        if (t->n_tls_certificates > 0)
            keel_verr(v, o, "tlsCertificates", "ISTIO_MUTUAL TLS cannot have associated tlsCertificates");
        if (set(t->credential_name))
            keel_verr(v, o, "credentialName", "ISTIO_MUTUAL TLS cannot have associated credentialName");
        if (t->n_credential_names > 0)
            keel_verr(v, o, "credentialNames", "ISTIO_MUTUAL TLS cannot have associated credentialNames");
        keel_vpop(v, mark);
        return;
    }
    if ((mode == KEEL_SERVER_TLS_MODE_PASSTHROUGH || mode == KEEL_SERVER_TLS_MODE_AUTO_PASSTHROUGH) &&
        (set(t->ca_crl) || set(t->server_certificate) || set(t->private_key) || set(t->ca_certificates) ||
         t->n_tls_certificates > 0 || set(t->credential_name) || t->n_credential_names > 0))
        keel_vwarn(v, o, "mode", "%s mode does not use certificates, they will be ignored", tls_mode_names[mode]);

    int sources = (set(t->server_certificate) && set(t->private_key)) + set(t->credential_name) +
                  (t->n_credential_names > 0) + (t->n_tls_certificates > 0);
    if (sources > 1)
        keel_verr(v, o, NULL,
                  "only one of credential_name, credential_names, server_certificate/private_key, "
                  "tls_certificates should be specified");

    bool terminating = mode == KEEL_SERVER_TLS_MODE_SIMPLE || mode == KEEL_SERVER_TLS_MODE_MUTUAL ||
                       mode == KEEL_SERVER_TLS_MODE_OPTIONAL_MUTUAL;
    if (terminating && (set(t->credential_name) || t->n_credential_names > 0)) {
        /* credentials come from the secret: no files needed */
        keel_vpop(v, mark);
        return;
    }
    if (terminating) {
        const char *prefix = mode == KEEL_SERVER_TLS_MODE_SIMPLE ? "SIMPLE TLS" : "MUTUAL TLS";
        if (mode != KEEL_SERVER_TLS_MODE_SIMPLE && !set(t->ca_certificates))
            keel_verr(v, o, "caCertificates", "%s requires a client CA bundle", prefix);
        if (t->n_tls_certificates > 2)
            keel_vwarn(v, o, "tlsCertificates", "%s can support up to 2 server certificates", prefix);
        if (t->n_tls_certificates > 0) {
            for (size_t i = 0; i < t->n_tls_certificates; i++) {
                const struct keel_server_tls_certificate *c = &t->tls_certificates[i];
                if (!set(c->server_certificate))
                    keel_verr_item(v, o, "tlsCertificates", i, "%s requires a server certificate", prefix);
                if (!set(c->private_key))
                    keel_verr_item(v, o, "tlsCertificates", i, "%s requires a private key", prefix);
            }
        } else {
            if (!set(t->server_certificate))
                keel_verr(v, o, "serverCertificate", "%s requires a server certificate", prefix);
            if (!set(t->private_key))
                keel_verr(v, o, "privateKey", "%s requires a private key", prefix);
        }
    }
    if (set(t->ca_crl)) {
        if (set(t->credential_name))
            keel_verr(v, o, "caCrl",
                      "CRL is not supported with credentialName. CRL has to be specified in the "
                      "credential");
        if (mode == KEEL_SERVER_TLS_MODE_SIMPLE)
            keel_verr(v, o, "caCrl", "CRL is not supported with SIMPLE TLS");
    }
    keel_vpop(v, mark);
}

/* validateServer; v->path is the server's */
static void check_server(struct keel_vctx *v, const struct keel_server *srv, bool gateway_semantics)
{
    if (srv->n_hosts == 0 && keel_obj_has(&srv->_o, "hosts"))
        keel_verr(v, &srv->_o, "hosts", "server config must contain at least one host");
    for (size_t i = 0; i < srv->n_hosts; i++)
        keel_vcheck_ns_slash_host(v, &srv->_o, "hosts", i, srv->hosts[i], true, gateway_semantics);
    /* a missing port was reported by the decoder; istiod then skips the TLS checks */
    bool port_ok = srv->port && !check_server_port(v, srv);
    check_server_bind(v, srv);
    check_tls(v, srv->tls);
    if (!port_ok)
        return;
    const char *proto = srv->port->protocol;
    const struct keel_server_tls *t = srv->tls;
    if (keel_protocol_is_tls(proto) && !t) {
        keel_verr(v, &srv->_o, NULL, "server must have TLS settings for HTTPS/TLS protocols");
    } else if (!keel_protocol_is_tls(proto) && t) {
        if (keel_protocol_is_http(proto)) {
            bool passthrough =
                t->mode == KEEL_SERVER_TLS_MODE_PASSTHROUGH || t->mode == KEEL_SERVER_TLS_MODE_AUTO_PASSTHROUGH;
            if (!passthrough || set(t->ca_certificates) || set(t->private_key) || set(t->server_certificate))
                keel_verr(v, &srv->_o, "tls", "server cannot have TLS settings for plain text HTTP ports");
        } else {
            keel_verr(v, &srv->_o, "tls", "server cannot have TLS settings for non HTTPS/TLS ports");
        }
    }
}

void keel_validate_gateway(struct keel_vctx *v, const struct keel_gateway *s)
{
    if (!s)
        return;
    const char *sem = keel_vannotation(v, GATEWAY_SEMANTICS_ANNOTATION);
    bool gateway_semantics = sem && strcmp(sem, "gateway") == 0;
    const char *name = v->res ? v->res->meta.name : NULL;
    if (name && !keel_valid_istio_dns1123_label(name) && !gateway_semantics) {
        char q[KEEL_MSG_MAX];
        struct keel_path saved = v->path; /* the name lives under metadata, not spec */
        keel_path_init(&v->path, "metadata");
        keel_verr(v, &v->res->meta._o, "name", "invalid gateway name: %s", keel_quote(name, q, sizeof(q)));
        v->path = saved;
    }
    if (s->n_servers == 0)
        keel_verr(v, &s->_o, "servers", "gateway must have at least one server");
    for (size_t i = 0; i < s->n_servers; i++) {
        size_t mark = keel_vpush_index(v, "servers", i);
        check_server(v, &s->servers[i], gateway_semantics);
        keel_vpop(v, mark);
    }
    /* port names are unique across servers */
    for (size_t i = 0; i < s->n_servers; i++) {
        const struct keel_server *srv = &s->servers[i];
        if (!srv->port)
            continue;
        const char *pname = srv->port->name ? srv->port->name : "";
        for (size_t j = 0; j < i; j++) {
            const struct keel_server *prev = &s->servers[j];
            if (prev->port && strcmp(prev->port->name ? prev->port->name : "", pname) == 0) {
                size_t mark = keel_vpush_index(v, "servers", i);
                keel_vpush(v, "port");
                keel_verr(v, &srv->port->_o, "name", "port names in servers must be unique: duplicate name %s", pname);
                keel_vpop(v, mark);
                break;
            }
        }
        if (!keel_protocol_is_http(srv->port->protocol) && srv->tls && srv->tls->https_redirect) {
            size_t mark = keel_vpush_index(v, "servers", i);
            keel_vpush(v, "tls");
            keel_vwarn(v, &srv->tls->_o, "httpsRedirect", "tls.httpsRedirect should only be used with http servers");
            keel_vpop(v, mark);
        }
    }
}
