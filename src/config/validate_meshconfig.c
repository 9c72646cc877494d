/*
 * validate_meshconfig.c - istiod's rules for MeshConfig (the `mesh` key of
 * the istio ConfigMap).
 *
 * Ports agent.ValidateMeshConfig and agent/extensionprovider.go from
 * istio/istio pkg/config/validation: ports, connect and protocol-detection
 * timeouts, the defaultConfig ProxyConfig (paths, cluster name, drain
 * duration, proxy addresses, tracers, admin and status ports, auth policy,
 * private key provider), localityLbSetting, serviceSettings, trust domain
 * and aliases, meshMTLS and tlsDefaults.
 *
 * istiod validates the mesh config after merging it over its defaults, so a
 * field the user did not write holds a valid default: every check here runs
 * only for fields present in the document (keel_obj_has). What istiod
 * rejects is an error; what istiod only logs (invalid extension providers,
 * which "can be ignored if the given extension provider is not used") is a
 * warning, as are a few checks istiod does not make but whose violation
 * breaks the data plane at run time (defaultProviders naming an unknown
 * provider, default exportTo values, negative concurrency, tracing sampling
 * out of 0..100, the default retry policy, an invalid rootNamespace).
 * Nothing is allocated; messages are built on the stack.
 */
#include "config/validate.h"

#include "base/str.h"
#include "config/validate_common.h"
#include "config/validate_traffic.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MSG_MAX 512
#define NS_PER_MS 1000000LL
#define NS_PER_S 1000000000LL

static bool empty(const char *s)
{
    return !s || !*s;
}

/* ---- Go formatting helpers ---------------------------------------------------- */

/* time.Duration.String(): "1h0m0s", "1m30s", "1.5s", "300ms", "0s". */
static const char *go_duration(int64_t ns, char *buf, size_t n)
{
    char tmp[64];
    bool neg = ns < 0;
    uint64_t u = neg ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
    if (u == 0) {
        snprintf(buf, n, "0s");
        return buf;
    }
    if (u < (uint64_t)NS_PER_S) {
        const char *unit = "ns";
        uint64_t div = 1;
        if (u >= 1000000) {
            unit = "ms";
            div = 1000000;
        } else if (u >= 1000) {
            unit = "\xc2\xb5s";
            div = 1000;
        }
        int len = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)(u / div));
        uint64_t frac = u % div;
        if (frac) {
            char f[16];
            int w = div == 1000000 ? 6 : 3;
            snprintf(f, sizeof(f), "%0*llu", w, (unsigned long long)frac);
            for (int i = w - 1; i >= 0 && f[i] == '0'; i--)
                f[i] = '\0';
            snprintf(tmp + len, sizeof(tmp) - (size_t)len, ".%s", f);
        }
        snprintf(buf, n, "%s%s%s", neg ? "-" : "", tmp, unit);
        return buf;
    }
    uint64_t secs = u / (uint64_t)NS_PER_S, frac = u % (uint64_t)NS_PER_S;
    uint64_t h = secs / 3600, m = secs / 60 % 60, s = secs % 60;
    char fs[16] = "";
    if (frac) {
        snprintf(fs, sizeof(fs), ".%09llu", (unsigned long long)frac);
        size_t i = strlen(fs);
        while (i > 1 && fs[i - 1] == '0')
            fs[--i] = '\0';
    }
    if (h)
        snprintf(tmp, sizeof(tmp), "%lluh%llum%llu%ss", (unsigned long long)h, (unsigned long long)m,
                 (unsigned long long)s, fs);
    else if (m)
        snprintf(tmp, sizeof(tmp), "%llum%llu%ss", (unsigned long long)m, (unsigned long long)s, fs);
    else
        snprintf(tmp, sizeof(tmp), "%llu%ss", (unsigned long long)s, fs);
    snprintf(buf, n, "%s%s", neg ? "-" : "", tmp);
    return buf;
}

/*
 * agent.ValidateProxyAddress: net.SplitHostPort, a numeric port in
 * 1..65535, and an FQDN or IP host. Returns NULL or the message in buf.
 */
static const char *proxy_address_error(const char *addr, char *buf, size_t n)
{
    const char *host = addr, *port = NULL, *why = NULL;
    size_t host_len = 0;
    if (addr[0] == '[') {
        const char *close = strchr(addr, ']');
        if (!close)
            why = "missing ']' in address";
        else if (close[1] == '\0')
            why = "missing port in address";
        else if (close[1] != ':')
            why = strchr(close + 1, ':') ? "too many colons in address" : "missing port in address";
        else {
            host = addr + 1;
            host_len = (size_t)(close - addr) - 1;
            port = close + 2;
            if (memchr(host, '[', host_len))
                why = "unexpected '[' in address";
            else if (strchr(port, '[') || strchr(port, ']'))
                why = "unexpected ']' in address";
        }
    } else {
        const char *colon = strrchr(addr, ':');
        if (!colon)
            why = "missing port in address";
        else {
            host_len = (size_t)(colon - addr);
            port = colon + 1;
            if (memchr(addr, ':', host_len))
                why = "too many colons in address";
            else if (strpbrk(addr, "[]"))
                why = strchr(addr, '[') ? "unexpected '[' in address" : "unexpected ']' in address";
        }
    }
    if (why) {
        snprintf(buf, n, "unable to split \"%.80s\": address %.80s: %s", addr, addr, why);
        return buf;
    }
    char *end = NULL;
    errno = 0;
    long long p = *port ? strtoll(port, &end, 10) : 0;
    if (!*port || *end || errno == ERANGE || !(isdigit((unsigned char)*port) || *port == '-' || *port == '+')) {
        snprintf(buf, n, "port (%.60s) is not a number: strconv.Atoi: parsing \"%.60s\": invalid syntax", port, port);
        return buf;
    }
    if (keel_check_port(p, buf, n))
        return buf;
    char h[256], tmp[KEEL_MSG_MAX];
    snprintf(h, sizeof(h), "%.*s", (int)(host_len < sizeof(h) - 1 ? host_len : sizeof(h) - 1), host);
    if (keel_check_fqdn(h, tmp, sizeof(tmp)) && keel_check_ip_address(h, tmp, sizeof(tmp))) {
        snprintf(buf, n, "\"%.150s\" is not a valid hostname or an IP address", h);
        return buf;
    }
    return NULL;
}

/* Reports `<prefix> <proxy address error>` for field of o when addr is set and invalid. */
static void check_proxy_address(struct keel_vctx *v, const struct keel_obj *o, const char *field, const char *addr,
                                const char *prefix)
{
    char buf[KEEL_MSG_MAX];
    if (addr && proxy_address_error(addr, buf, sizeof(buf)))
        keel_verr(v, o, field, "%s %s", prefix, buf);
}

/* ---- defaultConfig (agent.ValidateMeshConfigProxyConfig) --------------------- */

/* Tracer address with $(HOST_IP) replaced as istiod does before checking. */
static void check_tracer_address(struct keel_vctx *v, const struct keel_obj *o, const char *addr, const char *prefix)
{
    char fixed[512];
    const char *a = addr ? addr : "";
    const char *hip = strstr(a, "$(HOST_IP)");
    if (hip)
        snprintf(fixed, sizeof(fixed), "%.*s127.0.0.1%.200s", (int)(hip - a > 200 ? 200 : hip - a), a,
                 hip + strlen("$(HOST_IP)"));
    else
        snprintf(fixed, sizeof(fixed), "%.400s", a);
    char buf[KEEL_MSG_MAX];
    if (proxy_address_error(fixed, buf, sizeof(buf)))
        keel_verr(v, o, keel_obj_has(o, "address") ? "address" : NULL, "%s %s", prefix, buf);
}

static void check_default_tracing(struct keel_vctx *v, const struct keel_mesh_tracing *t, const char *ns)
{
    size_t mark = keel_vpush(v, "tracing");
    if (t->lightstep) {
        const struct keel_mesh_lightstep *ls = t->lightstep;
        size_t m2 = keel_vpush(v, "lightstep");
        if (empty(ls->address))
            keel_verr(v, &ls->_o, "address", "invalid lightstep config: address is required");
        check_tracer_address(v, &ls->_o, ls->address ? ls->address : "",
                             "invalid lightstep config: invalid lightstep address:");
        if (empty(ls->access_token))
            keel_verr(v, &ls->_o, "accessToken", "invalid lightstep config: access token is required");
        keel_vpop(v, m2);
    }
    if (t->zipkin) {
        size_t m2 = keel_vpush(v, "zipkin");
        check_tracer_address(v, &t->zipkin->_o, t->zipkin->address, "invalid zipkin config:");
        keel_vpop(v, m2);
    }
    if (t->datadog) {
        size_t m2 = keel_vpush(v, "datadog");
        check_tracer_address(v, &t->datadog->_o, t->datadog->address, "invalid datadog config:");
        keel_vpop(v, m2);
    }
    if (t->tls_settings) {
        size_t m2 = keel_vpush(v, "tlsSettings");
        keel_vcheck_client_tls(v, t->tls_settings, ns);
        keel_vpop(v, m2);
    }
    if (keel_obj_has(&t->_o, "sampling") && (t->sampling < 0 || t->sampling > 100))
        keel_vwarn(v, &t->_o, "sampling", "tracing sampling %g is not a percentage in 0..100", t->sampling);
    keel_vpop(v, mark);
}

/* validatePrivateKeyProvider */
static void check_private_key_provider(struct keel_vctx *v, const struct keel_mesh_private_key_provider *p)
{
    static const char *const prefix = "invalid private key provider configuration:";
    size_t mark = keel_vpush(v, "privateKeyProvider");
    const struct keel_mesh_cryptomb *c = p->cryptomb ? p->cryptomb : p->qat;
    const char *name = p->cryptomb ? "cryptomb" : "qat";
    if (!c) {
        keel_verr(v, &p->_o, NULL, "%s private key provider configuration is required", prefix);
        keel_verr(v, &p->_o, NULL, "%s unknown private key provider", prefix);
    } else if (!keel_obj_has(&c->_o, "pollDelay")) {
        size_t m2 = keel_vpush(v, name);
        keel_verr(v, &c->_o, NULL, "%s pollDelay is required", prefix);
        keel_vpop(v, m2);
    } else if (c->poll_delay == 0) {
        size_t m2 = keel_vpush(v, name);
        keel_verr(v, &c->_o, "pollDelay", "%s pollDelay must be non zero", prefix);
        keel_vpop(v, m2);
    }
    keel_vpop(v, mark);
}

static void check_default_config(struct keel_vctx *v, const struct keel_mesh_default_config *d, const char *ns)
{
    const struct keel_obj *o = &d->_o;
    char buf[KEEL_MSG_MAX];
    size_t mark = keel_vpush(v, "defaultConfig");
    if (keel_obj_has(o, "configPath") && empty(d->config_path))
        keel_verr(v, o, "configPath", "config path must be set");
    if (keel_obj_has(o, "binaryPath") && empty(d->binary_path))
        keel_verr(v, o, "binaryPath", "binary path must be set");
    if (keel_obj_has(o, "serviceCluster") && !keel_obj_has(o, "tracingServiceName") && empty(d->service_cluster))
        keel_verr(v, o, "serviceCluster", "service cluster must be specified");
    if (keel_obj_has(o, "drainDuration")) {
        const char *e = keel_check_duration(d->drain_duration);
        if (e)
            keel_verr(v, o, "drainDuration", "invalid drain duration: %s", e);
        else if (d->drain_duration % NS_PER_S != 0)
            keel_verr(v, o, "drainDuration", "drain time only supports durations to seconds precision");
    }
    if (keel_obj_has(o, "discoveryAddress")) {
        if (empty(d->discovery_address))
            keel_verr(v, o, "discoveryAddress", "discovery address must be set to the proxy discovery service");
        else
            check_proxy_address(v, o, "discoveryAddress", d->discovery_address, "invalid discovery address:");
    }
    keel_vcheck_env_names(v, o, "proxyMetadata", d->proxy_metadata, d->n_proxy_metadata);
    if (d->tracing)
        check_default_tracing(v, d->tracing, ns);
    if (!empty(d->statsd_udp_address)) {
        snprintf(buf, sizeof(buf), "invalid statsd udp address \"%.150s\":", d->statsd_udp_address);
        check_proxy_address(v, o, "statsdUdpAddress", d->statsd_udp_address, buf);
    }
    if (!empty(d->envoy_metrics_service_address)) {
        snprintf(buf, sizeof(buf),
                 "invalid envoy metrics service address \"%.150s\":", d->envoy_metrics_service_address);
        check_proxy_address(v, o, "envoyMetricsServiceAddress", d->envoy_metrics_service_address, buf);
    }
    const struct {
        const char *field, *what;
        const struct keel_mesh_envoy_access_log_service *svc;
    } services[] = {
        {"envoyMetricsService", "envoy metrics service", d->envoy_metrics_service},
        {"envoyAccessLogService", "envoy access log service", d->envoy_access_log_service},
    };
    for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++) {
        const struct keel_mesh_envoy_access_log_service *s = services[i].svc;
        if (!s || empty(s->address))
            continue;
        size_t m2 = keel_vpush(v, services[i].field);
        snprintf(buf, sizeof(buf), "invalid %s address \"%.150s\":", services[i].what, s->address);
        check_proxy_address(v, &s->_o, "address", s->address, buf);
        keel_vpop(v, m2);
    }
    char pbuf[KEEL_MSG_MAX];
    if (keel_obj_has(o, "proxyAdminPort") && keel_check_port(d->proxy_admin_port, pbuf, sizeof(pbuf)))
        keel_verr(v, o, "proxyAdminPort", "invalid proxy admin port: %s", pbuf);
    if (keel_obj_has(o, "controlPlaneAuthPolicy") &&
        d->control_plane_auth_policy != KEEL_MESH_DEFAULT_CONFIG_CONTROL_PLANE_AUTH_POLICY_NONE &&
        d->control_plane_auth_policy != KEEL_MESH_DEFAULT_CONFIG_CONTROL_PLANE_AUTH_POLICY_MUTUAL_TLS)
        keel_verr(v, o, "controlPlaneAuthPolicy",
                  "invalid authentication policy: unrecognized control plane auth policy \"INHERIT\"");
    if (keel_obj_has(o, "statusPort") && keel_check_port(d->status_port, pbuf, sizeof(pbuf)))
        keel_verr(v, o, "statusPort", "invalid status port: %s", pbuf);
    if (d->private_key_provider)
        check_private_key_provider(v, d->private_key_provider);
    if (keel_obj_has(o, "concurrency") && d->concurrency < 0)
        keel_vwarn(v, o, "concurrency",
                   "concurrency must be greater than or equal to 0 (0 uses all cores); istiod rejects this in a "
                   "ProxyConfig resource");
    keel_vpop(v, mark);
}

/* ---- localityLbSetting (agent.ValidateLocalityLbSetting) ------------------------ */

/* One locality split like getLocalityParam: level 0 region, 1 zone, 2 subzone. */
struct locality {
    char part[3][128];
    int level;
};

static bool split_locality(const char *s, struct locality *l)
{
    memset(l, 0, sizeof(*l));
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        const char *slash = i < 2 ? strchr(p, '/') : NULL;
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0)
            return false;
        snprintf(l->part[i], sizeof(l->part[i]), "%.*s", (int)(len < 127 ? len : 127), p);
        l->level = i;
        if (!slash)
            break;
        p = slash + 1;
    }
    return true;
}

/* The zone and subzone keys an accepted locality adds under its region. */
static const char *zone_key(const struct locality *l)
{
    return l->level >= 1 ? l->part[1] : "*";
}

static const char *subzone_key(const struct locality *l)
{
    return l->level >= 2 ? l->part[2] : "*";
}

/*
 * validateLocalities: wildcards only as a single trailing '*', no empty
 * parts, no locality covered by an earlier one. The nested maps of istiod
 * are replayed over the list of accepted entries. Returns NULL or buf.
 */
static const char *localities_error(const char *const *list, size_t n, char *buf, size_t bn)
{
    struct locality seen[64];
    size_t nseen = 0;
    for (size_t i = 0; i < n; i++) {
        const char *loc = list[i] ? list[i] : "";
        size_t stars = 0, len = strlen(loc);
        for (size_t k = 0; k < len; k++)
            stars += loc[k] == '*';
        if (stars && (stars > 1 || loc[len - 1] != '*')) {
            snprintf(buf, bn, "locality %.100s wildcard '*' number can not exceed 1 and must be in the end", loc);
            return buf;
        }
        bool overlap = false;
        for (size_t k = 0; k < nseen; k++)
            if (strcmp(seen[k].part[0], "*") == 0)
                overlap = true;
        struct locality l;
        if (!overlap && !split_locality(loc, &l)) {
            snprintf(buf, bn, "locality %.100s must not contain empty region/zone/subzone info", loc);
            return buf;
        }
        for (size_t k = 0; !overlap && k < nseen; k++) {
            const struct locality *s = &seen[k];
            if (strcmp(s->part[0], l.part[0]) != 0)
                continue;
            if (l.level == 0 || strcmp(zone_key(s), "*") == 0)
                overlap = true;
            else if (strcmp(zone_key(s), l.part[1]) == 0 &&
                     (l.level == 1 || strcmp(subzone_key(s), "*") == 0 || strcmp(subzone_key(s), l.part[2]) == 0))
                overlap = true;
        }
        if (overlap) {
            snprintf(buf, bn, "locality %.100s overlap with previous specified ones", loc);
            return buf;
        }
        if (nseen < sizeof(seen) / sizeof(seen[0]))
            seen[nseen++] = l;
    }
    return NULL;
}

static void check_locality_lb(struct keel_vctx *v, const struct keel_locality_lb *lb)
{
    const struct keel_obj *o = &lb->_o;
    char buf[KEEL_MSG_MAX];
    size_t mark = keel_vpush(v, "localityLbSetting");
    if (lb->n_distribute && lb->n_failover) {
        keel_verr(v, o, "failover", "can not simultaneously specify 'distribute' and 'failover'");
        keel_vpop(v, mark);
        return;
    }
    if (lb->n_failover) {
        for (size_t i = 0; lb->failover_priority && i < lb->n_failover_priority; i++) {
            const char *label = lb->failover_priority[i] ? lb->failover_priority[i] : "";
            if (strcmp(label, "topology.kubernetes.io/region") == 0 ||
                strcmp(label, "topology.kubernetes.io/zone") == 0 || strcmp(label, "topology.istio.io/subzone") == 0) {
                keel_verr_item(v, o, "failoverPriority", i,
                               "can not simultaneously set 'failover' and topology label '%s' in 'failover_priority'",
                               label);
                keel_vpop(v, mark);
                return;
            }
        }
    }
    const char *srcs[64];
    size_t nsrc = 0;
    for (size_t i = 0; lb->distribute && i < lb->n_distribute; i++) {
        const struct keel_locality_distribute *d = &lb->distribute[i];
        if (nsrc < sizeof(srcs) / sizeof(srcs[0]))
            srcs[nsrc++] = d->from;
        size_t m2 = keel_vpush_index(v, "distribute", i);
        int64_t total = 0;
        const char *dests[64];
        size_t ndest = 0;
        for (size_t k = 0; d->to && k < d->n_to; k++) {
            if (d->to[k].value <= 0 || d->to[k].value > 100) {
                keel_verr_key(v, &d->_o, "to", d->to[k].key ? d->to[k].key : "",
                              "locality weight must be in range [1, 100]");
                keel_vpop(v, m2);
                keel_vpop(v, mark);
                return;
            }
            total += d->to[k].value;
            if (ndest < sizeof(dests) / sizeof(dests[0]))
                dests[ndest++] = d->to[k].key;
        }
        if (total != 100) {
            keel_verr(v, &d->_o, "to", "total locality weight %lld != 100", (long long)total);
            keel_vpop(v, m2);
            keel_vpop(v, mark);
            return;
        }
        if (localities_error(dests, ndest, buf, sizeof(buf)))
            keel_verr(v, &d->_o, "to", "%s", buf);
        keel_vpop(v, m2);
    }
    if (localities_error(srcs, nsrc, buf, sizeof(buf)))
        keel_verr(v, o, "distribute", "%s", buf);
    for (size_t i = 0; lb->failover && i < lb->n_failover; i++) {
        const struct keel_locality_failover *f = &lb->failover[i];
        const char *from = f->from ? f->from : "", *to = f->to ? f->to : "";
        size_t m2 = keel_vpush_index(v, "failover", i);
        if (strcmp(from, to) == 0)
            keel_verr(v, &f->_o, NULL, "locality lb failover settings must specify different regions");
        if (strchr(from, '/') || strchr(to, '/'))
            keel_verr(v, &f->_o, NULL, "locality lb failover only specify region");
        if (strchr(from, '*') || strchr(to, '*'))
            keel_verr(v, &f->_o, NULL, "locality lb failover region should not contain '*' wildcard");
        keel_vpop(v, m2);
    }
    keel_vpop(v, mark);
}

/* ---- extensionProviders (agent/extensionprovider.go; istiod only logs these) --- */

/* Reporting context for one provider: warnings prefixed like istiod's log line. */
struct pctx {
    struct keel_vctx *v;
    char prefix[200];
};

static void pwarn(const struct pctx *c, const struct keel_obj *o, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void pwarn(const struct pctx *c, const struct keel_obj *o, const char *field, const char *fmt, ...)
{
    char msg[MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    keel_vwarn(c->v, o, field, "%s %s", c->prefix, msg);
}

/* validateExtensionProviderService: "[namespace/]host" with an FQDN, IP or namespace/dnsName. */
static void check_provider_service(const struct pctx *c, const struct keel_obj *o, const char *service)
{
    char buf[KEEL_MSG_MAX], buf2[KEEL_MSG_MAX];
    const char *field = keel_obj_has(o, "service") ? "service" : NULL;
    if (empty(service)) {
        pwarn(c, o, field, "service must not be empty");
        return;
    }
    const char *slash = strchr(service, '/');
    if (!slash) {
        if (keel_check_fqdn(service, buf, sizeof(buf)) && keel_check_ip_address(service, buf2, sizeof(buf2)))
            pwarn(c, o, field, "invalid service fmt %.100s: %s", service, buf2);
        return;
    }
    /* ValidateNamespaceSlashWildcardHostname(service, false, false) */
    char ns[256];
    snprintf(ns, sizeof(ns), "%.*s", (int)((size_t)(slash - service) < 255 ? (size_t)(slash - service) : 255), service);
    const char *host = slash + 1;
    if (!*ns || !*host)
        pwarn(c, o, field, "config namespace and dnsName in host entry cannot be empty");
    if (strcmp(ns, "*") != 0 && strcmp(ns, ".") != 0 && strcmp(ns, "~") != 0 && !keel_valid_istio_dns1123_label(ns))
        pwarn(c, o, field, "invalid namespace value \"%.100s\" in sidecar", ns);
    if (strcmp(host, "*") != 0 && !strchr(host, '.'))
        pwarn(c, o, field, "short names (non FQDN) are not allowed");
    if (keel_check_wildcard_domain(host, buf, sizeof(buf)))
        pwarn(c, o, field, "%s", buf);
    if (keel_check_partial_wildcard(host, buf, sizeof(buf)))
        pwarn(c, o, field, "%s", buf);
}

static void check_provider_port(const struct pctx *c, const struct keel_obj *o, int64_t port, bool service_prefix)
{
    char buf[KEEL_MSG_MAX];
    if (keel_check_port(port, buf, sizeof(buf)))
        pwarn(c, o, keel_obj_has(o, "port") ? "port" : NULL, "%s%s", service_prefix ? "invalid service port: " : "",
              buf);
}

/* validateExtensionProviderEnvoyExtAuthzStatusOnError: one of Envoy's StatusCode values. */
static void check_status_on_error(const struct pctx *c, const struct keel_obj *o, const char *status)
{
    static const int codes[] = {0,   100, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302,
                                303, 304, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409,
                                410, 411, 412, 413, 414, 415, 416, 417, 421, 422, 423, 424, 426, 428, 429,
                                431, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511};
    if (empty(status))
        return;
    char *end = NULL;
    errno = 0;
    long long code = strtoll(status, &end, 10);
    bool syntax = *end || isspace((unsigned char)status[0]);
    if (syntax || errno == ERANGE || code < -2147483648LL || code > 2147483647LL) {
        pwarn(c, o, "statusOnError", "invalid statusOnError value %.60s: strconv.ParseInt: parsing \"%.60s\": %s",
              status, status, syntax ? "invalid syntax" : "value out of range");
        return;
    }
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (codes[i] == code)
            return;
    pwarn(c, o, "statusOnError",
          "unsupported statusOnError value %.60s, supported values: the codes of Envoy's StatusCode enum (e.g. 403, "
          "500, 503)",
          status);
}

/* url.Parse of an ext_authz pathPrefix: only malformed %-escapes can fail for a path. */
static bool path_escapes_ok(const char *p)
{
    for (; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return false;
        if (*p == '%') {
            if (!isxdigit((unsigned char)p[1]) || !isxdigit((unsigned char)p[2]))
                return false;
            p += 2;
        }
    }
    return true;
}

static void check_provider(const struct pctx *c, const struct keel_mesh_extension_providers *p)
{
    struct keel_vctx *v = c->v;
    /* one field per provider kind; the decoder enforces that at most one is set */
    if (p->envoy_ext_authz_http) {
        const struct keel_mesh_envoy_ext_authz_http *h = p->envoy_ext_authz_http;
        size_t m = keel_vpush(v, "envoyExtAuthzHttp");
        check_provider_port(c, &h->_o, h->port, false);
        check_provider_service(c, &h->_o, h->service);
        check_status_on_error(c, &h->_o, h->status_on_error);
        if (!empty(h->path_prefix)) {
            if (!path_escapes_ok(h->path_prefix))
                pwarn(c, &h->_o, "pathPrefix", "invalid pathPrefix %.100s: the URL escapes are malformed",
                      h->path_prefix);
            if (h->path_prefix[0] != '/')
                pwarn(c, &h->_o, "pathPrefix", "pathPrefix should begin with `/` but found \"%.100s\"", h->path_prefix);
        }
        keel_vpop(v, m);
    } else if (p->envoy_ext_authz_grpc) {
        const struct keel_mesh_envoy_ext_authz_grpc *g = p->envoy_ext_authz_grpc;
        size_t m = keel_vpush(v, "envoyExtAuthzGrpc");
        check_provider_port(c, &g->_o, g->port, true);
        check_provider_service(c, &g->_o, g->service);
        check_status_on_error(c, &g->_o, g->status_on_error);
        keel_vpop(v, m);
    } else if (p->zipkin || p->datadog || p->opencensus || p->skywalking || p->lightstep) {
        /* tracers: service, then "invalid service port" */
        const struct keel_obj *o;
        const char *svc, *field;
        int64_t port;
        if (p->zipkin) {
            o = &p->zipkin->_o, svc = p->zipkin->service, port = p->zipkin->port, field = "zipkin";
        } else if (p->datadog) {
            o = &p->datadog->_o, svc = p->datadog->service, port = p->datadog->port, field = "datadog";
        } else if (p->opencensus) {
            o = &p->opencensus->_o, svc = p->opencensus->service, port = p->opencensus->port, field = "opencensus";
        } else if (p->skywalking) {
            o = &p->skywalking->_o, svc = p->skywalking->service, port = p->skywalking->port, field = "skywalking";
        } else {
            o = &p->lightstep->_o, svc = p->lightstep->service, port = p->lightstep->port, field = "lightstep";
        }
        size_t m = keel_vpush(v, field);
        check_provider_service(c, o, svc);
        check_provider_port(c, o, port, true);
        if (p->lightstep && empty(p->lightstep->access_token))
            pwarn(c, o, "accessToken", "access token is required");
        keel_vpop(v, m);
    } else if (p->opentelemetry || p->envoy_otel_als || p->envoy_http_als || p->envoy_tcp_als || p->sds) {
        const struct keel_obj *o;
        const char *svc, *field;
        int64_t port;
        if (p->opentelemetry) {
            o = &p->opentelemetry->_o, svc = p->opentelemetry->service, port = p->opentelemetry->port;
            field = "opentelemetry";
        } else if (p->envoy_otel_als) {
            o = &p->envoy_otel_als->_o, svc = p->envoy_otel_als->service, port = p->envoy_otel_als->port;
            field = "envoyOtelAls";
        } else if (p->envoy_http_als) {
            o = &p->envoy_http_als->_o, svc = p->envoy_http_als->service, port = p->envoy_http_als->port;
            field = "envoyHttpAls";
        } else if (p->envoy_tcp_als) {
            o = &p->envoy_tcp_als->_o, svc = p->envoy_tcp_als->service, port = p->envoy_tcp_als->port;
            field = "envoyTcpAls";
        } else {
            o = &p->sds->_o, svc = p->sds->service, port = p->sds->port, field = "sds";
        }
        size_t m = keel_vpush(v, field);
        check_provider_port(c, o, port, false);
        check_provider_service(c, o, svc);
        if (p->opentelemetry && p->opentelemetry->grpc && p->opentelemetry->http)
            pwarn(c, o, "grpc", "OpenTelemetryTracingProvider cannot specify both grpc and http");
        keel_vpop(v, m);
    } else if (!p->prometheus && !p->stackdriver && !p->envoy_file_access_log) {
        pwarn(c, &p->_o, NULL, "unsupported provider: <nil> of type <nil> (no provider kind is set)");
    }
}

static bool builtin_provider(const char *name)
{
    return strcmp(name, "prometheus") == 0 || strcmp(name, "stackdriver") == 0 || strcmp(name, "envoy") == 0;
}

static bool provider_defined(const struct keel_mesh_config *m, const char *name)
{
    if (builtin_provider(name))
        return true;
    for (size_t i = 0; m->extension_providers && i < m->n_extension_providers; i++)
        if (m->extension_providers[i].name && strcmp(m->extension_providers[i].name, name) == 0)
            return true;
    return false;
}

static void check_extension_providers(struct keel_vctx *v, const struct keel_mesh_config *m)
{
    for (size_t i = 0; m->extension_providers && i < m->n_extension_providers; i++) {
        const struct keel_mesh_extension_providers *p = &m->extension_providers[i];
        struct pctx c = {.v = v};
        const char *name = p->name ? p->name : "";
        snprintf(c.prefix, sizeof(c.prefix), "invalid extension provider %.150s:", name);
        size_t mark = keel_vpush_index(v, "extensionProviders", i);
        if (!*name) {
            pwarn(&c, &p->_o, keel_obj_has(&p->_o, "name") ? "name" : NULL, "empty extension provider name");
        } else {
            for (size_t j = 0; j < i; j++) {
                if (m->extension_providers[j].name && strcmp(m->extension_providers[j].name, name) == 0) {
                    pwarn(&c, &p->_o, "name", "duplicate extension provider name %.150s", name);
                    break;
                }
            }
        }
        check_provider(&c, p);
        keel_vpop(v, mark);
    }
    const struct keel_mesh_default_providers *d = m->default_providers;
    if (!d)
        return;
    const struct {
        const char *field;
        const char *const *names;
        size_t n;
    } lists[] = {
        {"tracing", d->tracing, d->n_tracing},
        {"metrics", d->metrics, d->n_metrics},
        {"accessLogging", d->access_logging, d->n_access_logging},
    };
    size_t mark = keel_vpush(v, "defaultProviders");
    for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
        for (size_t i = 0; lists[k].names && i < lists[k].n; i++) {
            const char *name = lists[k].names[i];
            if (name && !provider_defined(m, name))
                keel_vwarn_item(v, &d->_o, lists[k].field, i,
                                "defaultProviders.%s names \"%.100s\", which is not in extensionProviders; Telemetry "
                                "without providers will not use it",
                                lists[k].field, name);
        }
    }
    keel_vpop(v, mark);
}

/* ---- the rest of MeshConfig ------------------------------------------------------ */

/* agent.ValidateTrustDomain: dot-separated DNS-1123 labels, a trailing dot allowed. */
static bool valid_trust_domain(const char *d)
{
    if (empty(d))
        return false;
    char label[256];
    const char *p = d;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (!dot && len == 0)
            return true; /* "istio.io." */
        if (len >= sizeof(label))
            return false;
        memcpy(label, p, len);
        label[len] = '\0';
        if (!keel_valid_istio_dns1123_label(label))
            return false;
        if (!dot)
            return true;
        p = dot + 1;
    }
}

static void check_trust_domains(struct keel_vctx *v, const struct keel_mesh_config *m)
{
    if (keel_obj_has(&m->_o, "trustDomain")) {
        if (empty(m->trust_domain))
            keel_verr(v, &m->_o, "trustDomain", "trustDomain: empty domain name not allowed");
        else if (!valid_trust_domain(m->trust_domain))
            keel_verr(v, &m->_o, "trustDomain", "trustDomain: trust domain name \"%.150s\" invalid", m->trust_domain);
    }
    for (size_t i = 0; m->trust_domain_aliases && i < m->n_trust_domain_aliases; i++) {
        const char *a = m->trust_domain_aliases[i] ? m->trust_domain_aliases[i] : "";
        if (!*a)
            keel_verr_item(v, &m->_o, "trustDomainAliases", i,
                           "trustDomainAliases[%zu], domain `` : empty domain name not allowed", i);
        else if (!valid_trust_domain(a))
            keel_verr_item(v, &m->_o, "trustDomainAliases", i,
                           "trustDomainAliases[%zu], domain `%.150s` : trust domain name \"%.150s\" invalid", i, a, a);
    }
}

static void check_service_settings(struct keel_vctx *v, const struct keel_mesh_config *m)
{
    char buf[KEEL_MSG_MAX];
    for (size_t i = 0; m->service_settings && i < m->n_service_settings; i++) {
        const struct keel_mesh_service_settings *s = &m->service_settings[i];
        size_t mark = keel_vpush_index(v, "serviceSettings", i);
        for (size_t k = 0; s->hosts && k < s->n_hosts; k++) {
            const char *h = s->hosts[k] ? s->hosts[k] : "";
            if (keel_check_wildcard_domain(h, buf, sizeof(buf)))
                keel_verr_item(v, &s->_o, "hosts", k, "serviceSettings[%zu], host `%.150s`: %s", i, h, buf);
        }
        keel_vpop(v, mark);
    }
}

/* ValidateMeshTLSConfig and ValidateMeshTLSDefaults */
static void check_mesh_tls(struct keel_vctx *v, const struct keel_mesh_config *m)
{
    if (m->mesh_mtls && m->mesh_mtls->n_ecdh_curves > 0) {
        size_t mark = keel_vpush(v, "meshMTLS");
        keel_verr(v, &m->mesh_mtls->_o, "ecdhCurves", "mesh TLS does not support ECDH curves configuration");
        keel_vpop(v, mark);
    }
    const struct keel_mesh_mesh_mtls *t = m->tls_defaults;
    if (!t)
        return;
    size_t mark = keel_vpush(v, "tlsDefaults");
    for (size_t i = 0; t->ecdh_curves && i < t->n_ecdh_curves; i++) {
        const char *cv = t->ecdh_curves[i] ? t->ecdh_curves[i] : "";
        if (!keel_valid_ecdh_curve(cv)) {
            keel_vwarn_item(v, &t->_o, "ecdhCurves", i, "detected unrecognized ECDH curves: [%.100s]", cv);
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            if (t->ecdh_curves[j] && strcmp(t->ecdh_curves[j], cv) == 0) {
                keel_vwarn_item(v, &t->_o, "ecdhCurves", i, "detected duplicate ECDH curves: [%.100s]", cv);
                break;
            }
        }
    }
    keel_vpop(v, mark);
}

/* Default exportTo lists: ".", "*", "~" (services only) or a namespace; istiod does not check them. */
static void check_default_export_to(struct keel_vctx *v, const struct keel_mesh_config *m)
{
    const struct {
        const char *field;
        const char *const *vals;
        size_t n;
        bool services;
    } lists[] = {
        {"defaultServiceExportTo", m->default_service_export_to, m->n_default_service_export_to, true},
        {"defaultVirtualServiceExportTo", m->default_virtual_service_export_to, m->n_default_virtual_service_export_to,
         false},
        {"defaultDestinationRuleExportTo", m->default_destination_rule_export_to,
         m->n_default_destination_rule_export_to, false},
    };
    for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
        for (size_t i = 0; lists[k].vals && i < lists[k].n; i++) {
            const char *e = lists[k].vals[i] ? lists[k].vals[i] : "";
            bool ok = strcmp(e, "*") == 0 || strcmp(e, ".") == 0 || (lists[k].services && strcmp(e, "~") == 0) ||
                      keel_valid_istio_dns1123_label(e);
            if (!ok)
                keel_vwarn_item(v, &m->_o, lists[k].field, i,
                                "only .,*, or a valid DNS 1123 label is allowed as exportTo entry (got \"%.100s\")", e);
            else if (strcmp(e, "*") == 0 && lists[k].n > 1)
                keel_vwarn_item(v, &m->_o, lists[k].field, i,
                                "cannot have both public (*) and non-public exportTo values for a resource");
        }
    }
}

/* supportedRetryOnPolicies of istiod's validateHTTPRetry, plus any status code 100..599. */
static bool retry_on_ok(const char *policy)
{
    if (keel_valid_retry_on_policy(policy, strlen(policy)))
        return true;
    char *end = NULL;
    long code = strtol(policy, &end, 10);
    return *policy && !*end && code >= 100 && code <= 599;
}

/* defaultHttpRetryPolicy: istiod's HTTPRetry rules, as warnings (the mesh config is not rejected). */
static void check_default_retry(struct keel_vctx *v, const struct keel_mesh_default_http_retry_policy *r)
{
    const struct keel_obj *o = &r->_o;
    size_t mark = keel_vpush(v, "defaultHttpRetryPolicy");
    if (r->attempts < 0)
        keel_vwarn(v, o, "attempts", "attempts cannot be negative");
    if (keel_obj_has(o, "perTryTimeout")) {
        const char *e = keel_check_duration(r->per_try_timeout);
        if (e)
            keel_vwarn(v, o, "perTryTimeout", "%s", e);
    }
    if (!empty(r->retry_on)) {
        char policy[128];
        const char *p = r->retry_on;
        for (;;) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            snprintf(policy, sizeof(policy), "%.*s", (int)(len < 127 ? len : 127), p);
            if (!retry_on_ok(policy))
                keel_vwarn(v, o, "retryOn", "\"%s\" is not a valid retryOn policy", policy);
            if (!comma)
                break;
            p = comma + 1;
        }
    }
    keel_vpop(v, mark);
}

void keel_validate_mesh_config(struct keel_vctx *v, const struct keel_mesh_config *m)
{
    const struct keel_obj *o = &m->_o;
    char buf[KEEL_MSG_MAX], d1[80], d2[80], d3[80];
    if (keel_obj_has(o, "proxyListenPort") && keel_check_port(m->proxy_listen_port, buf, sizeof(buf)))
        keel_verr(v, o, "proxyListenPort", "invalid proxy listen port: %s", buf);
    if (keel_obj_has(o, "connectTimeout")) {
        const char *e = keel_check_duration(m->connect_timeout);
        if (e)
            keel_verr(v, o, "connectTimeout", "invalid connect timeout: %s", e);
        else if (m->connect_timeout > 3600 * NS_PER_S)
            keel_verr(v, o, "connectTimeout", "invalid connect timeout: time %s must be >%s and <%s",
                      go_duration(m->connect_timeout, d1, sizeof(d1)), go_duration(NS_PER_MS, d2, sizeof(d2)),
                      go_duration(3600 * NS_PER_S, d3, sizeof(d3)));
    }
    if (keel_obj_has(o, "protocolDetectionTimeout") && m->protocol_detection_timeout != 0 &&
        m->protocol_detection_timeout % NS_PER_MS != 0)
        keel_verr(v, o, "protocolDetectionTimeout",
                  "invalid protocol detection timeout: only durations to ms precision are supported");
    const char *root_ns = !empty(m->root_namespace) ? m->root_namespace : "istio-system";
    if (keel_obj_has(o, "rootNamespace") && !keel_valid_dns1123_label(m->root_namespace ? m->root_namespace : ""))
        keel_vwarn(v, o, "rootNamespace",
                   "rootNamespace \"%.100s\" is not a valid namespace name (a DNS-1123 label), so no namespace gets "
                   "mesh-wide configuration",
                   m->root_namespace ? m->root_namespace : "");
    if (m->default_config)
        check_default_config(v, m->default_config, root_ns);
    if (m->locality_lb_setting)
        check_locality_lb(v, m->locality_lb_setting);
    check_service_settings(v, m);
    check_trust_domains(v, m);
    check_extension_providers(v, m);
    check_mesh_tls(v, m);
    check_default_export_to(v, m);
    if (m->default_http_retry_policy)
        check_default_retry(v, m->default_http_retry_policy);
}
