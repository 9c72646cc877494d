/*
 * validate_destinationrule.c - istiod's DestinationRule rules.
 *
 * A port of ValidateDestinationRule and the traffic-policy helpers of
 * pkg/config/validation (validateTrafficPolicy, validateConnectionPool,
 * validateLoadBalancer, validateOutlierDetection, validatePortTrafficPolicies,
 * validateTunnelSettings) and of agent.ValidateTLS / ValidateLocalityLbSetting,
 * with istiod's message texts. What the CRD schema already says (types,
 * required fields, enum values, int32 ranges, ">= 1ms" duration rules, label
 * selector wildcards) is left to the decoder, so a value is not reported
 * twice; durations here only get the checks the CRD lacks (ms precision, and
 * ">= 1ms" where the CRD has no rule).
 *
 * The connection-pool and client-TLS checks are exported through
 * validate_traffic.h: Sidecar reuses the connection pool rules.
 */
#include "config/validate_common.h"
#include "config/validate_traffic.h"

#include "base/str.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define MS 1000000LL /* one millisecond in nanoseconds */

static const char *str_or_empty(const char *s)
{
    return s ? s : "";
}

/* agent.ValidateDuration for `field` of o, when set. crd_min: the CRD rejects
 * values below 1ms itself (the decoder said so), leaving only the precision. */
static void check_duration(struct keel_vctx *v, const struct keel_obj *o, const char *field, int64_t ns, bool crd_min)
{
    if (!keel_obj_has(o, field))
        return;
    if (ns < MS) {
        if (!crd_min)
            keel_verr(v, o, field, "duration must be greater than 1ms");
        return;
    }
    if (ns % MS != 0)
        keel_verr(v, o, field, "only durations to ms precision are supported");
}

/* ValidatePercent: 0..100. */
static void check_percent(struct keel_vctx *v, const struct keel_obj *o, const char *field, int64_t val)
{
    if (val < 0 || val > 100)
        keel_verr(v, o, field, "percentage %lld is not in range 0..100", (long long)val);
}

/* ---- connection pool ----------------------------------------------------- */

static void check_http_pool(struct keel_vctx *v, const struct keel_conn_pool_http *h)
{
    const struct keel_obj *o = &h->_o;
    if (h->http1_max_pending_requests < 0)
        keel_verr(v, o, "http1MaxPendingRequests", "http1 max pending requests must be non-negative");
    if (h->http2_max_requests < 0)
        keel_verr(v, o, "http2MaxRequests", "http2 max requests must be non-negative");
    if (h->max_requests_per_connection < 0)
        keel_verr(v, o, "maxRequestsPerConnection", "max requests per connection must be non-negative");
    if (h->max_retries < 0)
        keel_verr(v, o, "maxRetries", "max retries must be non-negative");
    check_duration(v, o, "idleTimeout", h->idle_timeout, true);
    if (h->h2_upgrade_policy == KEEL_CONN_POOL_HTTP_H2_UPGRADE_POLICY_UPGRADE && h->use_client_protocol)
        keel_verr(v, o, "useClientProtocol", "use client protocol must not be true when H2UpgradePolicy is UPGRADE");
    if (h->max_concurrent_streams < 0)
        keel_verr(v, o, "maxConcurrentStreams", "max concurrent streams must be non-negative");
    const struct keel_http2_keepalive *ka = h->http2_keep_alive;
    if (ka) {
        size_t mark = keel_vpush(v, "http2KeepAlive");
        if (!keel_obj_has(&ka->_o, "interval"))
            keel_verr(v, &ka->_o, NULL, "http2 keepalive interval is required (set both interval and timeout)");
        if (!keel_obj_has(&ka->_o, "timeout"))
            keel_verr(v, &ka->_o, NULL, "http2 keepalive timeout is required (set both interval and timeout)");
        check_duration(v, &ka->_o, "interval", ka->interval, true);
        check_duration(v, &ka->_o, "timeout", ka->timeout, true);
        keel_vpop(v, mark);
    }
}

static void check_tcp_pool(struct keel_vctx *v, const struct keel_conn_pool_tcp *t)
{
    const struct keel_obj *o = &t->_o;
    if (t->max_connections < 0)
        keel_verr(v, o, "maxConnections", "max connections must be non-negative");
    check_duration(v, o, "connectTimeout", t->connect_timeout, true);
    check_duration(v, o, "maxConnectionDuration", t->max_connection_duration, true);
    /* 0s (anything under 1ms, as Go truncates to milliseconds) disables the timeout */
    if (t->idle_timeout <= -MS || t->idle_timeout >= MS)
        check_duration(v, o, "idleTimeout", t->idle_timeout, false);
    if (t->tcp_keepalive) {
        size_t mark = keel_vpush(v, "tcpKeepalive");
        check_duration(v, &t->tcp_keepalive->_o, "time", t->tcp_keepalive->time, true);
        check_duration(v, &t->tcp_keepalive->_o, "interval", t->tcp_keepalive->interval, true);
        keel_vpop(v, mark);
    }
}

void keel_vcheck_connection_pool(struct keel_vctx *v, const struct keel_connection_pool *cp)
{
    if (!cp)
        return;
    if (!cp->http && !cp->tcp) {
        keel_verr(v, &cp->_o, NULL, "connection pool must have at least one field");
        return;
    }
    if (cp->http) {
        size_t mark = keel_vpush(v, "http");
        check_http_pool(v, cp->http);
        keel_vpop(v, mark);
    }
    if (cp->tcp) {
        size_t mark = keel_vpush(v, "tcp");
        check_tcp_pool(v, cp->tcp);
        keel_vpop(v, mark);
    }
}

/* ---- client TLS ----------------------------------------------------------- */

/* credentials.ParseResourceName for "configmap://ns/name", then the namespace rule. */
static void check_configmap_credential(struct keel_vctx *v, const struct keel_client_tls *tls, const char *ns)
{
    const char *cred = tls->credential_name;
    const char *res = cred + strlen("configmap://");
    const char *slash = strchr(res, '/');
    if (!slash) {
        keel_verr(v, &tls->_o, "credentialName",
                  "invalid configmap:// credentialName: invalid resource name \"%s\". Expected namespace and name",
                  cred);
        return;
    }
    size_t nslen = (size_t)(slash - res);
    const char *name = slash + 1;
    if (nslen == 0) {
        keel_verr(v, &tls->_o, "credentialName",
                  "invalid configmap:// credentialName: invalid resource name \"%s\". Expected namespace", cred);
        return;
    }
    if (*name == '\0' || *name == '/') {
        keel_verr(v, &tls->_o, "credentialName",
                  "invalid configmap:// credentialName: invalid resource name \"%s\". Expected name", cred);
        return;
    }
    if (!*ns || strlen(ns) != nslen || strncmp(res, ns, nslen) != 0)
        keel_verr(v, &tls->_o, "credentialName",
                  "invalid configmap:// credentialName: namespace must match the configuration namespace \"%s\"", ns);
}

void keel_vcheck_client_tls(struct keel_vctx *v, const struct keel_client_tls *tls, const char *ns)
{
    if (!tls)
        return;
    const struct keel_obj *o = &tls->_o;
    const char *cred = str_or_empty(tls->credential_name);
    const char *ca = str_or_empty(tls->ca_certificates);
    const char *cert = str_or_empty(tls->client_certificate);
    const char *key = str_or_empty(tls->private_key);
    const char *crl = str_or_empty(tls->ca_crl);
    bool sans = tls->n_subject_alt_names > 0;
    bool simple = tls->mode == KEEL_CLIENT_TLS_MODE_SIMPLE;
    bool mutual = tls->mode == KEEL_CLIENT_TLS_MODE_MUTUAL;

    if (keel_cstr_has_prefix(cred, "configmap://"))
        check_configmap_credential(v, tls, ns ? ns : "");

    if (tls->insecure_skip_verify) {
        if (simple && (*ca || *cred || sans))
            keel_verr(
                v, o, "insecureSkipVerify",
                "cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set "
                "true");
        /* with MUTUAL, credentialName may carry the client certificate only */
        if (mutual && (*ca || sans))
            keel_verr(v, o, "insecureSkipVerify",
                      "cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true");
    }

    if ((simple || mutual) && *cred) {
        if (*cert || *ca || *key || *crl)
            keel_verr(v, o, "credentialName",
                      "cannot specify client certificates or CA certificate or CA CRL If credentialName is set");
        return; /* credentials are fetched through SDS */
    }
    if (mutual) {
        if (!*cert)
            keel_verr(v, o, "clientCertificate", "client certificate required for mutual tls");
        if (!*key)
            keel_verr(v, o, "privateKey", "private key required for mutual tls");
    }
}

/* ---- outlier detection ---------------------------------------------------- */

static void check_outlier(struct keel_vctx *v, const struct keel_outlier_detection *od)
{
    const struct keel_obj *o = &od->_o;
    check_duration(v, o, "baseEjectionTime", od->base_ejection_time, true);
    if (od->consecutive_errors != 0)
        keel_vwarn(v, o, "consecutiveErrors",
                   "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or "
                   "consecutive5xxErrors instead");
    if (!od->split_external_local_origin_errors && od->consecutive_local_origin_failures > 0)
        keel_verr(v, o, "consecutiveLocalOriginFailures",
                  "outlier detection consecutive local origin failures is specified, but split external local origin "
                  "errors is set to false");
    check_duration(v, o, "interval", od->interval, true);
    check_percent(v, o, "maxEjectionPercent", od->max_ejection_percent);
    check_percent(v, o, "minHealthPercent", od->min_health_percent);
}

/* ---- locality load balancing --------------------------------------------- */

/* One locality split as region/zone/subzone; `level` 0, 1 or 2 = how many
 * parts after the region. Missing trailing parts read as "*". */
struct locality {
    const char *part[3];
    size_t len[3];
    int level;
};

static bool part_eq(const struct locality *a, int i, const struct locality *b)
{
    return a->len[i] == b->len[i] && memcmp(a->part[i], b->part[i], a->len[i]) == 0;
}

static bool part_is_star(const struct locality *a, int i)
{
    return a->len[i] == 1 && a->part[i][0] == '*';
}

/* getLocalityParam: false when a part is empty. */
static bool parse_locality(const char *s, struct locality *l)
{
    l->level = 0;
    const char *p = s;
    for (int i = 0; i < 3; i++) {
        l->part[i] = "*";
        l->len[i] = 1;
    }
    for (int i = 0;; i++) {
        const char *slash = i < 2 ? strchr(p, '/') : NULL;
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 0)
            return false;
        l->part[i] = p;
        l->len[i] = n;
        l->level = i;
        if (!slash)
            return true;
        p = slash + 1;
    }
}

/* Is b (an accepted earlier locality) overlapping a, per validateLocalities? */
static bool locality_overlaps(const struct locality *a, const struct locality *b)
{
    if (!part_eq(a, 0, b))
        return false;
    if (a->level == 0 || b->level == 0)
        return true;
    /* same region, both name a zone (b's zone may be "*") */
    if (part_is_star(b, 1))
        return true;
    if (!part_eq(a, 1, b))
        return false;
    if (a->level == 1 || b->level == 1)
        return true;
    return part_is_star(b, 2) || part_eq(a, 2, b);
}

/* Reads item i of a list of localities. */
typedef const char *(*locality_at_cb)(const void *list, size_t i);

static const char *distribute_to_at(const void *list, size_t i)
{
    return ((const struct keel_locality_distribute *)list)->to[i].key;
}

static const char *distribute_from_at(const void *list, size_t i)
{
    return ((const struct keel_locality_lb *)list)->distribute[i].from;
}

/* validateLocalities over n localities read with at(): the first problem, or NULL. */
static const char *check_localities(const void *list, size_t n, locality_at_cb at, char *buf, size_t bufn)
{
    for (size_t i = 0; i < n; i++) {
        const char *s = str_or_empty(at(list, i));
        size_t stars = 0;
        for (const char *p = s; *p; p++)
            stars += *p == '*';
        if (stars > 0 && (stars > 1 || s[strlen(s) - 1] != '*')) {
            snprintf(buf, bufn, "locality %s wildcard '*' number can not exceed 1 and must be in the end", s);
            return buf;
        }
        /* every earlier entry was accepted (the first problem ends the check) */
        struct locality a, b;
        bool a_ok = parse_locality(s, &a);
        for (size_t j = 0; j < i; j++) {
            if (!parse_locality(str_or_empty(at(list, j)), &b))
                continue;
            bool star_region = b.level == 0 && part_is_star(&b, 0);
            if (star_region || (a_ok && locality_overlaps(&a, &b))) {
                snprintf(buf, bufn, "locality %s overlap with previous specified ones", s);
                return buf;
            }
        }
        if (!a_ok) {
            snprintf(buf, bufn, "locality %s must not contain empty region/zone/subzone info", s);
            return buf;
        }
    }
    return NULL;
}

static void check_failover_entries(struct keel_vctx *v, const struct keel_locality_failover *fo, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *from = str_or_empty(fo[i].from), *to = str_or_empty(fo[i].to);
        size_t mark = keel_vpush_index(v, "failover", i);
        if (strcmp(from, to) == 0)
            keel_verr(v, &fo[i]._o, NULL, "locality lb failover settings must specify different regions");
        if (strchr(from, '/') || strchr(to, '/'))
            keel_verr(v, &fo[i]._o, NULL, "locality lb failover only specify region");
        if (strchr(from, '*') || strchr(to, '*'))
            keel_verr(v, &fo[i]._o, NULL, "locality lb failover region should not contain '*' wildcard");
        keel_vpop(v, mark);
    }
}

static bool is_topology_label(const char *s)
{
    return s && (strcmp(s, "topology.kubernetes.io/region") == 0 || strcmp(s, "topology.kubernetes.io/zone") == 0 ||
                 strcmp(s, "topology.istio.io/subzone") == 0);
}

/* agent.ValidateLocalityLbSetting; outlier_set tells whether outlier detection is configured. */
static void check_locality_lb(struct keel_vctx *v, const struct keel_locality_lb *lb, bool outlier_set)
{
    const struct keel_obj *o = &lb->_o;
    char buf[KEEL_MSG_MAX + 128];
    if (lb->n_distribute > 0 && lb->n_failover > 0) {
        keel_verr(v, o, NULL, "can not simultaneously specify 'distribute' and 'failover'");
        return;
    }
    if (lb->n_failover > 0) {
        for (size_t i = 0; i < lb->n_failover_priority; i++) {
            if (is_topology_label(lb->failover_priority[i])) {
                keel_verr_item(v, o, "failoverPriority", i,
                               "can not simultaneously set 'failover' and topology label '%s' in 'failover_priority'",
                               lb->failover_priority[i]);
                return;
            }
        }
    }
    for (size_t i = 0; i < lb->n_distribute; i++) {
        const struct keel_locality_distribute *d = &lb->distribute[i];
        size_t mark = keel_vpush_index(v, "distribute", i);
        int64_t total = 0;
        for (size_t j = 0; j < d->n_to; j++) {
            if (d->to[j].value <= 0 || d->to[j].value > 100) {
                keel_verr_key(v, &d->_o, "to", d->to[j].key, "locality weight must be in range [1, 100]");
                keel_vpop(v, mark);
                return;
            }
            total += d->to[j].value;
        }
        if (total != 100) {
            keel_verr(v, &d->_o, "to", "total locality weight %lld != 100", (long long)total);
            keel_vpop(v, mark);
            return;
        }
        const char *err = check_localities(d, d->n_to, distribute_to_at, buf, sizeof(buf));
        if (err)
            keel_verr(v, &d->_o, "to", "%s", err);
        keel_vpop(v, mark);
    }
    if (lb->n_distribute > 0) {
        const char *err = check_localities(lb, lb->n_distribute, distribute_from_at, buf, sizeof(buf));
        if (err)
            keel_verr(v, o, "distribute", "%s", err);
    }
    if ((lb->n_failover > 0 || lb->n_failover_priority > 0) && !outlier_set)
        keel_vwarn(v, o, NULL, "outlier detection policy must be provided for failover");
    check_failover_entries(v, lb->failover, lb->n_failover);
}

/* ---- load balancer --------------------------------------------------------- */

/* Envoy's isPrime (source/common/common/utility.cc), as istiod copies it. */
static bool is_prime(uint64_t x)
{
    if (x != 0 && x < 4)
        return true;
    if ((x & 1) == 0)
        return false;
    for (uint64_t f = 3; f <= x / f; f += 2)
        if (x % f == 0)
            return false;
    return true;
}

static void check_http_cookie(struct keel_vctx *v, const struct keel_hash_cookie *c)
{
    if (c->name && !*c->name)
        keel_verr(v, &c->_o, "name", "name required for HttpCookie");
    for (size_t i = 0; i < c->n_attributes; i++) {
        const char *name = c->attributes[i].name;
        if (!name)
            continue; /* required by the schema: already reported */
        if (!*name) {
            keel_verr_item(v, &c->_o, "attributes", i, "cookie attribute name cannot be empty");
            continue;
        }
        for (size_t j = 0; j < i; j++) {
            if (c->attributes[j].name && strcmp(c->attributes[j].name, name) == 0) {
                keel_verr_item(v, &c->_o, "attributes", i, "duplicate cookie attribute name: %s", name);
                break;
            }
        }
    }
}

static void check_consistent_hash(struct keel_vctx *v, const struct keel_consistent_hash *ch)
{
    const struct keel_obj *o = &ch->_o;
    if (ch->http_cookie) {
        size_t mark = keel_vpush(v, "httpCookie");
        check_http_cookie(v, ch->http_cookie);
        keel_vpop(v, mark);
    }
    if (ch->minimum_ring_size != 0) {
        keel_vwarn(v, o, "minimumRingSize",
                   "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration "
                   "instead");
        if (ch->maglev || ch->ring_hash)
            keel_verr(v, o, "minimumRingSize", "only one of MinimumRingSize or Maglev/Ringhash can be specified");
    }
    const struct keel_maglev *ml = ch->maglev;
    if (ml) {
        size_t mark = keel_vpush(v, "maglev");
        uint64_t size = ml->table_size < 0 ? 0 : (uint64_t)ml->table_size;
        if (size == 0)
            keel_verr(v, &ml->_o, "tableSize", "tableSize must be set for maglev");
        if (size >= 5000011)
            keel_verr(v, &ml->_o, "tableSize", "tableSize must be less than 5000011 for maglev");
        if (!is_prime(size))
            keel_verr(v, &ml->_o, "tableSize", "tableSize must be a prime number for maglev");
        keel_vpop(v, mark);
    }
}

static void check_load_balancer(struct keel_vctx *v, const struct keel_load_balancer *lb, bool outlier_set)
{
    const struct keel_obj *o = &lb->_o;
    if (lb->consistent_hash) {
        size_t mark = keel_vpush(v, "consistentHash");
        check_consistent_hash(v, lb->consistent_hash);
        keel_vpop(v, mark);
    }
    if (lb->locality_lb_setting && lb->zone_aware_lb_setting)
        keel_verr(v, o, "zoneAwareLbSetting", "only one of localityLbSetting or zoneAwareLbSetting can be set");
    if (lb->locality_lb_setting) {
        size_t mark = keel_vpush(v, "localityLbSetting");
        check_locality_lb(v, lb->locality_lb_setting, outlier_set);
        keel_vpop(v, mark);
    }
    if (lb->zone_aware_lb_setting) {
        size_t mark = keel_vpush(v, "zoneAwareLbSetting");
        check_failover_entries(v, lb->zone_aware_lb_setting->failover, lb->zone_aware_lb_setting->n_failover);
        keel_vpop(v, mark);
    }
    if (lb->warmup) {
        size_t mark = keel_vpush(v, "warmup");
        check_duration(v, &lb->warmup->_o, "duration", lb->warmup->duration, true);
        keel_vpop(v, mark);
    }
    check_duration(v, o, "warmupDurationSecs", lb->warmup_duration_secs, true);
}

/* ---- traffic policy ---------------------------------------------------------- */

static void check_tunnel(struct keel_vctx *v, const struct keel_tunnel *t)
{
    const struct keel_obj *o = &t->_o;
    char buf[KEEL_MSG_MAX];
    if (t->protocol && *t->protocol && strcmp(t->protocol, "CONNECT") != 0 && strcmp(t->protocol, "POST") != 0)
        keel_verr(v, o, "protocol", "tunnel protocol must be \"CONNECT\" or \"POST\"");
    if (t->target_host) {
        const char *fqdn_err = keel_check_fqdn(t->target_host, buf, sizeof(buf));
        if (fqdn_err && !keel_valid_ip(t->target_host))
            keel_verr(v, o, "targetHost",
                      "tunnel target host must be valid FQDN or IP address: %s; %s is not a valid IP", fqdn_err,
                      t->target_host);
    }
    if (keel_obj_has(o, "targetPort")) {
        const char *err = keel_check_port(t->target_port, buf, sizeof(buf));
        if (err)
            keel_verr(v, o, "targetPort", "tunnel target port is invalid: %s", err);
    }
}

/* The four blocks a port-level policy shares with the top level. */
static void check_policy_blocks(struct keel_vctx *v, const struct keel_outlier_detection *od,
                                const struct keel_connection_pool *cp, const struct keel_load_balancer *lb,
                                const struct keel_client_tls *tls)
{
    size_t mark;
    if (od) {
        mark = keel_vpush(v, "outlierDetection");
        check_outlier(v, od);
        keel_vpop(v, mark);
    }
    if (cp) {
        mark = keel_vpush(v, "connectionPool");
        keel_vcheck_connection_pool(v, cp);
        keel_vpop(v, mark);
    }
    if (lb) {
        mark = keel_vpush(v, "loadBalancer");
        check_load_balancer(v, lb, od != NULL);
        keel_vpop(v, mark);
    }
    if (tls) {
        mark = keel_vpush(v, "tls");
        keel_vcheck_client_tls(v, tls, keel_vns(v));
        keel_vpop(v, mark);
    }
}

static void check_port_policies(struct keel_vctx *v, const struct keel_traffic_policy *tp)
{
    for (size_t i = 0; i < tp->n_port_level_settings; i++) {
        const struct keel_port_traffic_policy *p = &tp->port_level_settings[i];
        size_t mark = keel_vpush_index(v, "portLevelSettings", i);
        if (!p->port)
            keel_verr(v, &p->_o, NULL, "portTrafficPolicy must have valid port");
        if (!p->outlier_detection && !p->connection_pool && !p->load_balancer && !p->tls)
            keel_verr(v, &p->_o, NULL, "port traffic policy must have at least one field");
        else
            check_policy_blocks(v, p->outlier_detection, p->connection_pool, p->load_balancer, p->tls);
        keel_vpop(v, mark);
    }
}

/* validateTrafficPolicy; the current path is the policy. */
static void check_traffic_policy(struct keel_vctx *v, const struct keel_traffic_policy *tp)
{
    if (!tp->outlier_detection && !tp->connection_pool && !tp->load_balancer && !tp->tls &&
        tp->n_port_level_settings == 0 && !tp->tunnel && !tp->proxy_protocol) {
        keel_verr(v, &tp->_o, NULL, "traffic policy must have at least one field");
        return;
    }
    if (tp->tunnel && tp->proxy_protocol) {
        keel_verr(v, &tp->_o, "proxyProtocol", "tunnel and proxyProtocol must not be set together");
        return;
    }
    check_policy_blocks(v, tp->outlier_detection, tp->connection_pool, tp->load_balancer, tp->tls);
    check_port_policies(v, tp);
    if (tp->tunnel) {
        size_t mark = keel_vpush(v, "tunnel");
        check_tunnel(v, tp->tunnel);
        keel_vpop(v, mark);
    }
}

/* ---- the kind ------------------------------------------------------------------ */

static void check_subset(struct keel_vctx *v, const struct keel_destination_rule *s, size_t i)
{
    const struct keel_subset *sub = &s->subsets[i];
    size_t mark = keel_vpush_index(v, "subsets", i);
    if (sub->name) {
        for (size_t j = 0; j < i; j++) {
            if (s->subsets[j].name && strcmp(s->subsets[j].name, sub->name) == 0) {
                keel_verr(v, &sub->_o, "name", "duplicate subset names: %s", sub->name);
                break;
            }
        }
        if (!*sub->name)
            keel_verr(v, &sub->_o, "name", "subset name cannot be empty");
        else if (!keel_valid_istio_dns1123_label(sub->name))
            keel_verr(v, &sub->_o, "name", "subset name is invalid: %s", sub->name);
    }
    keel_vcheck_labels(v, &sub->_o, "labels", sub->labels, sub->n_labels);
    if (sub->traffic_policy) {
        size_t m2 = keel_vpush(v, "trafficPolicy");
        check_traffic_policy(v, sub->traffic_policy);
        keel_vpop(v, m2);
    }
    keel_vpop(v, mark);
}

void keel_validate_destination_rule(struct keel_vctx *v, const struct keel_destination_rule *s)
{
    char buf[KEEL_MSG_MAX];
    if (s->host) {
        const char *err = keel_check_wildcard_domain(s->host, buf, sizeof(buf));
        if (err)
            keel_verr(v, &s->_o, "host", "%s", err);
    }
    if (s->traffic_policy) {
        size_t mark = keel_vpush(v, "trafficPolicy");
        check_traffic_policy(v, s->traffic_policy);
        keel_vpop(v, mark);
    }
    for (size_t i = 0; i < s->n_subsets; i++)
        check_subset(v, s, i);
    keel_vcheck_export_to(v, &s->_o, "exportTo", s->export_to, s->n_export_to, false, s->workload_selector != NULL);
    keel_vcheck_workload_selector(v, &s->_o, "workloadSelector", s->workload_selector);
}
