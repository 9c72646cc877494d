/*
 * validate_security.c - istiod's rules for AuthorizationPolicy,
 * PeerAuthentication and RequestAuthentication.
 *
 * Each validator ports the matching admission-webhook function of
 * istio/istio pkg/config/validation (ValidateAuthorizationPolicy,
 * ValidatePeerAuthentication, ValidateRequestAuthentication and
 * validateJwtRule, plus the attribute, IP, port and path-template helpers of
 * pkg/config/security) and the object-level CEL rules of the CRDs that the
 * schema decoder cannot express (selector/targetRef exclusivity, the
 * serviceAccounts exclusion, portLevelMtls needing a selector, jwks versus
 * jwksUri). Message texts keep istiod's wording so users can search for them;
 * where the CRD rule and the webhook word the same mistake differently, one
 * diagnostic carries both. AuthorizationPolicy errors carry istiod's
 * "invalid policy <name>.<namespace>:" prefix. The metadata and
 * selector/targetRef checks shared with the telemetry kinds are
 * keel_vcheck_annotations() and keel_vcheck_attachment() (validate_common.h);
 * jwksUri goes through Go's net/url rules in config/url.h.
 *
 * The decoder has already enforced types, enums, required fields, lengths,
 * patterns and the simple per-field CEL rules, and validation runs even when
 * it reported errors, so every pointer and string here may be missing: the
 * code checks before it looks. Inline JWKS documents are parsed with jansson.
 * Nothing here allocates beyond the stack or keeps state between calls.
 */
#include "config/validate.h"

#include "base/str.h"
#include "config/url.h"
#include "config/validate_common.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MSG_MAX 640

/* ---- reporting with an optional prefix ---------------------------------- */

/* Reporting context: AuthorizationPolicy prefixes every error. */
struct sctx {
    struct keel_vctx *v;
    const char *prefix; /* "" or "invalid policy <name>.<ns>: " */
};

static void serr(const struct sctx *c, const struct keel_obj *o, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void serr(const struct sctx *c, const struct keel_obj *o, const char *field, const char *fmt, ...)
{
    char msg[MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    keel_verr(c->v, o, field, "%s%s", c->prefix, msg);
}

static void serr_item(const struct sctx *c, const struct keel_obj *o, const char *field, size_t i, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void serr_item(const struct sctx *c, const struct keel_obj *o, const char *field, size_t i, const char *fmt, ...)
{
    char msg[MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    keel_verr_item(c->v, o, field, i, "%s%s", c->prefix, msg);
}

static const char *res_name(const struct keel_vctx *v)
{
    return v->res && v->res->meta.name ? v->res->meta.name : "";
}

static const char *res_ns(const struct keel_vctx *v)
{
    const char *ns = v->res ? keel_vns(v) : NULL;
    return ns ? ns : "";
}

static bool empty(const char *s)
{
    return !s || !*s;
}

/* Is list field `field` of o written and empty (`from: []`)? */
static bool written_empty_list(const struct keel_obj *o, const char *field)
{
    const struct keel_node *n = o && o->node ? keel_node_get(o->node, field) : NULL;
    return n && n->type == KEEL_NODE_SEQ && n->n == 0;
}

/* ---- AuthorizationPolicy actions ------------------------------------------ */

enum {
    AP_ALLOW = KEEL_AUTHORIZATION_POLICY_ACTION_ALLOW,
    AP_DENY = KEEL_AUTHORIZATION_POLICY_ACTION_DENY,
    AP_AUDIT = KEEL_AUTHORIZATION_POLICY_ACTION_AUDIT,
    AP_CUSTOM = KEEL_AUTHORIZATION_POLICY_ACTION_CUSTOM,
};

static const char *ap_action_name(int a)
{
    static const char *const names[] = {"ALLOW", "DENY", "AUDIT", "CUSTOM"};
    return a >= 0 && a < 4 ? names[a] : "UNKNOWN";
}

/* ---- pkg/config/security helpers ----------------------------------------- */

/* CheckEmptyValues: reports the first empty value of list field `field`. */
static void check_empty_values(const struct sctx *c, const struct keel_obj *o, const char *field, const char *what,
                               const char *const *vals, size_t n)
{
    for (size_t i = 0; vals && i < n; i++) {
        if (empty(vals[i])) {
            serr_item(c, o, field, i, "empty value not allowed, found in %s", what);
            return;
        }
    }
}

/* ValidateIPs: netip.ParsePrefix when the value has a '/', else netip.ParseAddr. */
static const char *ip_error(const char *s, char *buf, size_t n)
{
    if (strchr(s, '/')) {
        if (!keel_valid_cidr(s)) {
            snprintf(buf, n, "bad CIDR range (%.80s): netip.ParsePrefix(\"%.80s\"): invalid prefix", s, s);
            return buf;
        }
    } else if (!keel_valid_ip(s)) {
        snprintf(buf, n, "bad IP address (%.100s)", s);
        return buf;
    }
    return NULL;
}

static void check_ips(const struct sctx *c, const struct keel_obj *o, const char *field, const char *const *vals,
                      size_t n)
{
    char buf[KEEL_MSG_MAX];
    for (size_t i = 0; vals && i < n; i++) {
        const char *e = vals[i] ? ip_error(vals[i], buf, sizeof(buf)) : NULL;
        if (e)
            serr_item(c, o, field, i, "%s", e);
    }
}

/* ValidatePorts: strconv.ParseUint(port, 10, 32) and at most 65535. */
static const char *port_error(const char *s, char *buf, size_t n)
{
    bool digits = *s != '\0';
    for (const char *p = s; *p; p++)
        if (!isdigit((unsigned char)*p))
            digits = false;
    if (!digits) {
        snprintf(buf, n, "bad port (%.60s): strconv.ParseUint: parsing \"%.60s\": invalid syntax", s, s);
        return buf;
    }
    errno = 0;
    unsigned long long v = strtoull(s, NULL, 10);
    if (errno == ERANGE || v > 4294967295ULL) {
        snprintf(buf, n, "bad port (%.60s): strconv.ParseUint: parsing \"%.60s\": value out of range", s, s);
        return buf;
    }
    if (v > 65535) {
        snprintf(buf, n, "bad port (%.60s): <nil>", s);
        return buf;
    }
    return NULL;
}

static void check_ports(const struct sctx *c, const struct keel_obj *o, const char *field, const char *const *vals,
                        size_t n)
{
    char buf[KEEL_MSG_MAX];
    for (size_t i = 0; vals && i < n; i++) {
        const char *e = vals[i] ? port_error(vals[i], buf, sizeof(buf)) : NULL;
        if (e)
            serr_item(c, o, field, i, "%s", e);
    }
}

/*
 * CheckValidPathTemplate: a path using {*} or {**} must not also use named
 * variables, {}, or bare * / ** segments; the regex is
 * \/{\w+\=\*[*]?\}|{\w*\}|\/\*[*]?|\*[*]?\/
 */
static bool is_word(char ch)
{
    return isalnum((unsigned char)ch) || ch == '_';
}

static bool unsupported_path_template(const char *p)
{
    size_t n = strlen(p);
    for (size_t i = 0; i < n; i++) {
        /* \/{\w+=\*\*?} */
        if (p[i] == '/' && i + 1 < n && p[i + 1] == '{') {
            size_t j = i + 2;
            while (j < n && is_word(p[j]))
                j++;
            if (j > i + 2 && j + 1 < n && p[j] == '=' && p[j + 1] == '*') {
                size_t k = j + 2;
                if (k < n && p[k] == '*')
                    k++;
                if (k < n && p[k] == '}')
                    return true;
            }
        }
        /* {\w*} */
        if (p[i] == '{') {
            size_t j = i + 1;
            while (j < n && is_word(p[j]))
                j++;
            if (j < n && p[j] == '}')
                return true;
        }
        /* \/\*\*? : a slash followed by a star */
        if (p[i] == '/' && i + 1 < n && p[i + 1] == '*')
            return true;
        /* \*\*?\/ : a star followed by a slash (possibly after a second star) */
        if (p[i] == '*' && i + 1 < n && (p[i + 1] == '/' || (p[i + 1] == '*' && i + 2 < n && p[i + 2] == '/')))
            return true;
    }
    return false;
}

static void check_path_templates(const struct sctx *c, const struct keel_obj *o, const char *field, const char *what,
                                 const char *const *vals, size_t n)
{
    for (size_t i = 0; vals && i < n; i++) {
        const char *p = vals[i];
        if (p && (strstr(p, "{*}") || strstr(p, "{**}")) && unsupported_path_template(p)) {
            serr_item(c, o, field, i, "invalid or unsupported path template, found in %s", what);
            return;
        }
    }
}

/* validateMapKey: "a[b]" with a non-empty a and b. */
static bool valid_map_key(const char *key)
{
    const char *open = strchr(key, '[');
    size_t n = strlen(key);
    if (!open || n < 1 || key[n - 1] != ']')
        return false;
    size_t pos = (size_t)(open - key);
    return pos > 0 && pos < n - 2;
}

enum attr_kind {
    ATTR_PLAIN,  /* no value checks */
    ATTR_IP,     /* values are IPs or CIDRs */
    ATTR_PORT,   /* values are ports */
    ATTR_MAPKEY, /* key must have the form a[b] */
    ATTR_BAD,    /* key rejected; msg says why */
};

/* The switch of security.ValidateAttribute: classifies a `when` key. */
static enum attr_kind classify_attribute(const char *key, char *msg, size_t n)
{
    static const char *const plain[] = {"source.namespace",       "source.principal",       "source.serviceAccount",
                                        "source.trustDomain",     "request.auth.principal", "request.auth.audiences",
                                        "request.auth.presenter", "connection.sni"};
    if (keel_cstr_has_prefix(key, "request.headers") || keel_cstr_has_prefix(key, "request.auth.claims") ||
        keel_cstr_has_prefix(key, "experimental.envoy.filters.")) {
        if (valid_map_key(key))
            return ATTR_MAPKEY;
        snprintf(msg, n, "bad key (%.100s): should have format a[b]", key);
        return ATTR_BAD;
    }
    if (strcmp(key, "source.ip") == 0 || strcmp(key, "remote.ip") == 0 || strcmp(key, "destination.ip") == 0)
        return ATTR_IP;
    if (strcmp(key, "destination.port") == 0)
        return ATTR_PORT;
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
        if (strcmp(key, plain[i]) == 0)
            return ATTR_PLAIN;
    if (strcmp(key, "destination.namespace") == 0)
        snprintf(msg, n, "attribute %s is replaced by the metadata.namespace", key);
    else if (keel_cstr_has_prefix(key, "destination.labels"))
        snprintf(msg, n, "attribute %.100s is replaced by the workload selector", key);
    else if (strcmp(key, "destination.name") == 0 || strcmp(key, "destination.user") == 0)
        snprintf(msg, n, "deprecated attribute %s: only supported in v1alpha1", key);
    else
        snprintf(msg, n, "unknown attribute: %.100s", key);
    return ATTR_BAD;
}

/* ---- AuthorizationPolicy -------------------------------------------------- */

/* One list field of Source/Operation, for the table-driven checks. */
enum {
    L_TCP = 1u << 0,   /* known from the connection: usable on TCP ports */
    L_IDENT = 1u << 1, /* an identity: not supported with CUSTOM */
};

struct strlist {
    const char *field; /* JSON name */
    const char *go;    /* Go field name used in istiod's messages */
    const char *const *vals;
    size_t n;
    unsigned flags;
};

/* `serviceAccounts` entries: "sa" or "ns/sa", exact names. */
static void check_service_accounts(const struct sctx *c, const struct keel_obj *o, const char *field,
                                   const char *const *vals, size_t n)
{
    for (size_t i = 0; vals && i < n; i++) {
        const char *sa = vals[i];
        if (empty(sa))
            continue; /* reported as an empty value */
        if (strchr(sa, '*')) {
            serr_item(c, o, field, i,
                      "%s value \"%.100s\" must not contain a wildcard (*): service accounts match exactly", field, sa);
            continue;
        }
        const char *slash = strchr(sa, '/');
        if (slash && (slash == sa || slash[1] == '\0' || strchr(slash + 1, '/')))
            serr_item(c, o, field, i,
                      "%s value \"%.100s\" must be \"<serviceaccount>\" or \"<namespace>/<serviceaccount>\"", field,
                      sa);
    }
}

/* `trustDomains` entries: at most one '*', only at the start or the end, no '/'. */
static void check_trust_domains(const struct sctx *c, const struct keel_obj *o, const char *field,
                                const char *const *vals, size_t n)
{
    for (size_t i = 0; vals && i < n; i++) {
        const char *td = vals[i];
        if (empty(td))
            continue;
        size_t len = strlen(td), stars = 0;
        for (size_t k = 0; k < len; k++)
            stars += td[k] == '*';
        if (strchr(td, '/'))
            serr_item(c, o, field, i, "%s value \"%.100s\" must not contain '/': a trust domain is not a principal",
                      field, td);
        if (stars > 1 || (stars == 1 && td[0] != '*' && td[len - 1] != '*'))
            serr_item(c, o, field, i, "%s value \"%.100s\" may only use a single '*' wildcard, at the start or the end",
                      field, td);
    }
}

/* Checks rules[i].from[j].source; returns whether it uses attributes available on TCP. */
static bool check_source(const struct sctx *c, bool custom, const struct keel_authz_source *src, size_t rule)
{
    const struct keel_obj *o = &src->_o;
    const struct strlist lists[] = {
        {"principals", "Principals", src->principals, src->n_principals, L_TCP | L_IDENT},
        {"requestPrincipals", "RequestPrincipals", src->request_principals, src->n_request_principals, L_IDENT},
        {"namespaces", "Namespaces", src->namespaces, src->n_namespaces, L_TCP | L_IDENT},
        {"serviceAccounts", "ServiceAccounts", src->service_accounts, src->n_service_accounts, L_TCP | L_IDENT},
        {"trustDomains", "TrustDomains", src->trust_domains, src->n_trust_domains, L_TCP | L_IDENT},
        {"ipBlocks", "IpBlocks", src->ip_blocks, src->n_ip_blocks, L_TCP},
        {"remoteIpBlocks", "RemoteIpBlocks", src->remote_ip_blocks, src->n_remote_ip_blocks, L_TCP},
        {"notPrincipals", "NotPrincipals", src->not_principals, src->n_not_principals, L_TCP | L_IDENT},
        {"notRequestPrincipals", "NotRequestPrincipals", src->not_request_principals, src->n_not_request_principals,
         L_IDENT},
        {"notNamespaces", "NotNamespaces", src->not_namespaces, src->n_not_namespaces, L_TCP | L_IDENT},
        {"notServiceAccounts", "NotServiceAccounts", src->not_service_accounts, src->n_not_service_accounts,
         L_TCP | L_IDENT},
        {"notTrustDomains", "NotTrustDomains", src->not_trust_domains, src->n_not_trust_domains, L_TCP | L_IDENT},
        {"notIpBlocks", "NotIpBlocks", src->not_ip_blocks, src->n_not_ip_blocks, L_TCP},
        {"notRemoteIpBlocks", "NotRemoteIpBlocks", src->not_remote_ip_blocks, src->n_not_remote_ip_blocks, L_TCP},
    };
    size_t total = 0;
    bool tcp = false;
    for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
        total += lists[k].n;
        if ((lists[k].flags & L_TCP) && keel_obj_has(o, lists[k].field))
            tcp = true;
    }
    if (total == 0)
        serr(c, o, NULL, "`from.source` must not be empty, found at rule %zu", rule);

    check_ips(c, o, "ipBlocks", src->ip_blocks, src->n_ip_blocks);
    check_ips(c, o, "notIpBlocks", src->not_ip_blocks, src->n_not_ip_blocks);
    check_ips(c, o, "remoteIpBlocks", src->remote_ip_blocks, src->n_remote_ip_blocks);
    check_ips(c, o, "notRemoteIpBlocks", src->not_remote_ip_blocks, src->n_not_remote_ip_blocks);
    for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++)
        check_empty_values(c, o, lists[k].field, lists[k].go, lists[k].vals, lists[k].n);

    /* CRD rule on Source: serviceAccounts exclude principals and namespaces */
    bool sa = keel_obj_has(o, "serviceAccounts") || keel_obj_has(o, "notServiceAccounts");
    if (sa && (keel_obj_has(o, "principals") || keel_obj_has(o, "notPrincipals") || keel_obj_has(o, "namespaces") ||
               keel_obj_has(o, "notNamespaces")))
        serr(c, o, keel_obj_has(o, "serviceAccounts") ? "serviceAccounts" : "notServiceAccounts",
             "Cannot set serviceAccounts with namespaces or principals");
    check_service_accounts(c, o, "serviceAccounts", src->service_accounts, src->n_service_accounts);
    check_service_accounts(c, o, "notServiceAccounts", src->not_service_accounts, src->n_not_service_accounts);
    check_trust_domains(c, o, "trustDomains", src->trust_domains, src->n_trust_domains);
    check_trust_domains(c, o, "notTrustDomains", src->not_trust_domains, src->n_not_trust_domains);

    if (custom) {
        /* CUSTOM (ext_authz) policies cannot match on identities */
        for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
            if (lists[k].n && (lists[k].flags & L_IDENT))
                serr(c, o, lists[k].field, "From.%s is currently not supported with CUSTOM action", lists[k].go);
        }
    }
    return tcp;
}

/* Checks rules[i].to[j].operation; returns whether it names ports (usable on TCP). */
static bool check_operation(const struct sctx *c, const struct keel_authz_operation *op, size_t rule)
{
    const struct keel_obj *o = &op->_o;
    const struct strlist lists[] = {
        {"ports", "Ports", op->ports, op->n_ports, L_TCP},
        {"methods", "Methods", op->methods, op->n_methods, 0},
        {"paths", "Paths", op->paths, op->n_paths, 0},
        {"hosts", "Hosts", op->hosts, op->n_hosts, 0},
        {"notPorts", "NotPorts", op->not_ports, op->n_not_ports, L_TCP},
        {"notMethods", "NotMethods", op->not_methods, op->n_not_methods, 0},
        {"notPaths", "NotPaths", op->not_paths, op->n_not_paths, 0},
        {"notHosts", "NotHosts", op->not_hosts, op->n_not_hosts, 0},
    };
    size_t total = 0;
    for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++)
        total += lists[k].n;
    if (total == 0)
        serr(c, o, NULL, "`to.operation` must not be empty, found at rule %zu", rule);
    check_ports(c, o, "ports", op->ports, op->n_ports);
    check_ports(c, o, "notPorts", op->not_ports, op->n_not_ports);
    for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++)
        check_empty_values(c, o, lists[k].field, lists[k].go, lists[k].vals, lists[k].n);
    check_path_templates(c, o, "paths", "Paths", op->paths, op->n_paths);
    check_path_templates(c, o, "notPaths", "NotPaths", op->not_paths, op->n_not_paths);
    return keel_obj_has(o, "ports") || keel_obj_has(o, "notPorts");
}

/* Value checks of security.ValidateAttribute for one of values/notValues. */
static void check_condition_values(const struct sctx *c, const struct keel_authz_condition *w, const char *field,
                                   const char *what, enum attr_kind kind, const char *const *vals, size_t n)
{
    char buf[KEEL_MSG_MAX];
    const char *key = w->key;
    for (size_t i = 0; vals && i < n; i++) {
        if (empty(vals[i])) {
            serr_item(c, &w->_o, field, i, "invalid `%s` for `key` %.100s: empty value not allowed, found in %.100s",
                      what, key, key);
            return;
        }
    }
    for (size_t i = 0; vals && i < n; i++) {
        const char *e = NULL;
        if (kind == ATTR_IP)
            e = ip_error(vals[i], buf, sizeof(buf));
        else if (kind == ATTR_PORT)
            e = port_error(vals[i], buf, sizeof(buf));
        if (e)
            serr_item(c, &w->_o, field, i, "invalid `%s` for `key` %.100s: %s", what, key, e);
    }
}

static void check_condition(const struct sctx *c, bool custom, const struct keel_authz_condition *w)
{
    const char *key = w->key;
    if (empty(key)) {
        serr(c, &w->_o, "key", "`key` must not be empty");
        return;
    }
    if (w->n_values == 0 && w->n_not_values == 0) {
        serr(c, &w->_o, NULL, "at least one of `values` or `notValues` must be set for key %.100s", key);
    } else {
        char msg[KEEL_MSG_MAX];
        enum attr_kind kind = classify_attribute(key, msg, sizeof(msg));
        if (kind == ATTR_BAD)
            serr(c, &w->_o, "key", "invalid `%s` for `key` %.100s: %s", w->n_values ? "value" : "notValue", key, msg);
        else {
            check_condition_values(c, w, "values", "value", kind, w->values, w->n_values);
            check_condition_values(c, w, "notValues", "notValue", kind, w->not_values, w->n_not_values);
        }
    }
    if (custom && (strcmp(key, "source.namespace") == 0 || strcmp(key, "source.principal") == 0 ||
                   strcmp(key, "source.serviceAccount") == 0 || strcmp(key, "source.trustDomain") == 0 ||
                   keel_cstr_has_prefix(key, "request.auth.")))
        serr(c, &w->_o, "key", "%.100s is currently not supported with CUSTOM action", key);
}

static void check_authz_rule(const struct sctx *c, const struct keel_authorization_policy *s, size_t i)
{
    struct keel_vctx *v = c->v;
    const struct keel_authz_rule *r = &s->rules[i];
    bool custom = (int)s->action == AP_CUSTOM;
    size_t mark = keel_vpush_index(v, "rules", i);

    /* protobuf JSON reads `from: []` as unset, so istiod accepts it: say what it means */
    if (written_empty_list(&r->_o, "from"))
        keel_vwarn(v, &r->_o, "from", "`from` is empty, so it matches every source (same as leaving it out)");
    if (written_empty_list(&r->_o, "to"))
        keel_vwarn(v, &r->_o, "to", "`to` is empty, so it matches every operation (same as leaving it out)");

    bool from_exist = false, tcp_in_from = false, to_exist = false, tcp_in_to = false;
    for (size_t j = 0; r->from && j < r->n_from; j++) {
        const struct keel_authz_from *f = &r->from[j];
        size_t m2 = keel_vpush_index(v, "from", j);
        if (!f->source) {
            serr(c, &f->_o, NULL, "`from.source` must not be nil, found at rule %zu", i);
        } else {
            from_exist = true;
            size_t m3 = keel_vpush(v, "source");
            if (check_source(c, custom, f->source, i))
                tcp_in_from = true;
            keel_vpop(v, m3);
        }
        keel_vpop(v, m2);
    }
    for (size_t j = 0; r->to && j < r->n_to; j++) {
        const struct keel_authz_to *t = &r->to[j];
        size_t m2 = keel_vpush_index(v, "to", j);
        if (!t->operation) {
            serr(c, &t->_o, NULL, "`to.operation` must not be nil, found at rule %zu", i);
        } else {
            to_exist = true;
            size_t m3 = keel_vpush(v, "operation");
            if (check_operation(c, t->operation, i))
                tcp_in_to = true;
            keel_vpop(v, m3);
        }
        keel_vpop(v, m2);
    }
    for (size_t j = 0; r->when && j < r->n_when; j++) {
        size_t m2 = keel_vpush_index(v, "when", j);
        check_condition(c, custom, &r->when[j]);
        keel_vpop(v, m2);
    }
    if ((int)s->action == AP_DENY && ((from_exist && !to_exist && !tcp_in_from) || (to_exist && !tcp_in_to)))
        keel_vwarn(v, &r->_o, NULL,
                   "configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use "
                   "of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port");
    keel_vpop(v, mark);
}

void keel_validate_authorization_policy(struct keel_vctx *v, const struct keel_authorization_policy *s)
{
    char prefix[320];
    snprintf(prefix, sizeof(prefix), "invalid policy %.150s.%.150s: ", res_name(v), res_ns(v));
    struct sctx c = {.v = v, .prefix = prefix};
    int action = (int)s->action;

    keel_vcheck_annotations(v, ap_action_name(action));
    keel_vcheck_attachment(v, prefix, &s->_o, s->selector, s->target_ref, s->target_refs, s->n_target_refs);

    if (action == AP_CUSTOM) {
        if (s->n_rules == 0)
            serr(&c, &s->_o, "action",
                 "CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` "
                 "if you want it be triggered for every request");
        else if (!s->provider || empty(s->provider->name))
            serr(&c, &s->_o, "provider", "`provider.name` must not be empty");
    }
    if (s->provider && action != AP_CUSTOM)
        serr(&c, &s->_o, "provider", "`provider` must not be with non CUSTOM action, found %s", ap_action_name(action));
    if (action == AP_DENY && s->n_rules == 0)
        serr(&c, &s->_o, "action",
             "DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you "
             "want it be triggered for every request");
    for (size_t i = 0; s->rules && i < s->n_rules; i++)
        check_authz_rule(&c, s, i);
}

/* ---- PeerAuthentication ---------------------------------------------------- */

void keel_validate_peer_authentication(struct keel_vctx *v, const struct keel_peer_authentication *s)
{
    struct sctx c = {.v = v, .prefix = ""};
    keel_vcheck_annotations(v, NULL);
    bool empty_selector = !s->selector || s->selector->n_match_labels == 0;
    if (empty_selector && keel_obj_has(&s->_o, "portLevelMtls"))
        serr(&c, &s->_o, "portLevelMtls",
             "portLevelMtls requires selector (mesh/namespace peer authentication cannot have port level mTLS)");
    keel_vcheck_workload_selector(v, &s->_o, "selector", s->selector);
}

/* ---- RequestAuthentication -------------------------------------------------- */

/* security.ParseJwksURI: url.Parse, scheme http or https, numeric port. */
static void check_jwks_uri(struct keel_vctx *v, const struct keel_obj *o, const char *field, const char *uri)
{
    struct keel_url u;
    char err[KEEL_MSG_MAX];
    if (keel_url_parse(uri, &u, err, sizeof(err))) {
        keel_verr(v, o, field, "%s", err);
        return;
    }
    if (strcmp(u.scheme, "http") != 0 && strcmp(u.scheme, "https") != 0) {
        keel_verr(v, o, field, "URI scheme \"%s\" is not supported", u.scheme);
        return;
    }
    /* Hostname() and Port() of the authority */
    const char *h = u.host;
    size_t hl = u.host_len, name_len = hl;
    const char *port = NULL;
    size_t pl = 0;
    if (h && hl && h[0] == '[') {
        const char *close = memchr(h, ']', hl);
        name_len = close ? (size_t)(close - h) - 1 : 0;
        if (close && (size_t)(close - h) + 1 < hl) {
            port = close + 2;
            pl = hl - (size_t)(close - h) - 2;
        }
    } else if (h) {
        for (size_t i = 0; i < hl; i++) {
            if (h[i] == ':') {
                name_len = i;
                port = h + i + 1;
                pl = hl - i - 1;
            }
        }
    }
    if (port && pl > 0) {
        /* strconv.Atoi on the digits url.Parse let through */
        char pbuf[32];
        errno = 0;
        if (pl < sizeof(pbuf)) {
            memcpy(pbuf, port, pl);
            pbuf[pl] = '\0';
            (void)strtoll(pbuf, NULL, 10);
        }
        if (pl >= sizeof(pbuf) || errno == ERANGE) {
            keel_verr(v, o, field, "strconv.Atoi: parsing \"%.*s\": value out of range", (int)(pl > 40 ? 40 : pl),
                      port);
            return;
        }
    }
    if (name_len == 0)
        keel_vwarn(v, o, field, "jwksUri \"%.200s\" names no host, so the JWKS cannot be fetched", uri);
}

/* base64 or base64url text, padded or not (jwx decodes both). */
static bool b64_ok(const char *s)
{
    size_t n = strlen(s), pad = 0;
    while (n > 0 && s[n - 1] == '=') {
        n--;
        pad++;
    }
    if (pad > 2 || n % 4 == 1)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!isalnum(ch) && ch != '-' && ch != '_' && ch != '+' && ch != '/')
            return false;
    }
    return true;
}

/* Checks one JWK; returns NULL or the reason it is not a key jwx accepts. *private_key is set for private keys. */
static const char *check_jwk(json_t *key, bool *private_key, char *buf, size_t n)
{
    static const struct {
        const char *kty;
        const char *members[3];
    } kinds[] = {
        {"RSA", {"n", "e", NULL}},
        {"EC", {"crv", "x", "y"}},
        {"OKP", {"crv", "x", NULL}},
        {"oct", {"k", NULL, NULL}},
    };
    if (!json_is_object(key))
        return "a key must be a JSON object";
    json_t *kty = json_object_get(key, "kty");
    if (!json_is_string(kty))
        return "failed to unmarshal JSON into key: missing \"kty\" field";
    const char *t = json_string_value(kty);
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        if (strcmp(t, kinds[i].kty) != 0)
            continue;
        for (size_t m = 0; m < 3 && kinds[i].members[m]; m++) {
            const char *name = kinds[i].members[m];
            json_t *val = json_object_get(key, name);
            if (!json_is_string(val)) {
                snprintf(buf, n, "failed to unmarshal JSON into key (%s): required field %s is missing", t, name);
                return buf;
            }
            if (strcmp(name, "crv") != 0 && !b64_ok(json_string_value(val))) {
                snprintf(buf, n, "failed to unmarshal JSON into key (%s): failed to decode %s: illegal base64 data", t,
                         name);
                return buf;
            }
        }
        json_t *d = json_object_get(key, "d");
        if (d && !json_is_string(d)) {
            snprintf(buf, n, "failed to unmarshal JSON into key (%s): field d must be a string", t);
            return buf;
        }
        if (json_is_string(d) && !b64_ok(json_string_value(d))) {
            snprintf(buf, n, "failed to unmarshal JSON into key (%s): failed to decode d: illegal base64 data", t);
            return buf;
        }
        *private_key = d != NULL || strcmp(t, "oct") == 0;
        return NULL;
    }
    snprintf(buf, n, "invalid key type from JSON (%.40s)", t);
    return buf;
}

/* jwk.Parse: a JWK Set ({"keys": [...]}) or a single JWK. */
static void check_jwks(struct keel_vctx *v, const struct keel_obj *o, const char *jwks)
{
    json_error_t jerr;
    json_t *root = json_loads(jwks, JSON_DECODE_ANY, &jerr);
    char buf[KEEL_MSG_MAX];
    if (!root) {
        keel_verr(v, o, "jwks", "jwks parse error: failed to unmarshal JWK set: %s (line %d, column %d)", jerr.text,
                  jerr.line, jerr.column);
        return;
    }
    json_t *keys = json_is_object(root) ? json_object_get(root, "keys") : NULL;
    bool priv = false;
    const char *e = NULL;
    if (!json_is_object(root)) {
        e = "failed to unmarshal JWK set: expected a JSON object";
    } else if (keys) {
        if (!json_is_array(keys)) {
            e = "failed to unmarshal JWK set: \"keys\" must be an array";
        } else {
            for (size_t i = 0; !e && i < json_array_size(keys); i++) {
                bool p = false;
                e = check_jwk(json_array_get(keys, i), &p, buf, sizeof(buf));
                priv = priv || p;
            }
        }
    } else {
        e = check_jwk(root, &priv, buf, sizeof(buf));
    }
    if (e)
        keel_verr(v, o, "jwks", "jwks parse error: %s", e);
    else if (priv)
        keel_vwarn(v, o, "jwks", "jwks contains a private key; publish only public keys in a JWKS");
    json_decref(root);
}

static void check_jwt_rule(struct keel_vctx *v, const struct keel_jwt_rule *r)
{
    const struct keel_obj *o = &r->_o;
    /* jwksUri and jwks_uri are two JSON spellings of one proto field */
    const char *uri_field = r->jwks_uri ? "jwksUri" : "jwks_uri";
    const char *uri = r->jwks_uri ? r->jwks_uri : r->jwks_uri_legacy;
    int sources = keel_obj_has(o, "jwksUri") + keel_obj_has(o, "jwks_uri") + keel_obj_has(o, "jwks");
    if (sources > 1)
        keel_verr(v, o, keel_obj_has(o, "jwks") ? "jwks" : "jwks_uri", "only one of jwks or jwksUri can be set");
    if (empty(r->issuer) && empty(uri))
        keel_verr(v, o, "issuer", "issuer or jwksUri must be non-empty string");
    if (!empty(uri))
        check_jwks_uri(v, o, uri_field, uri);
    if (!empty(r->jwks))
        check_jwks(v, o, r->jwks);
    for (size_t i = 0; r->output_claim_to_headers && i < r->n_output_claim_to_headers; i++) {
        const char *h = r->output_claim_to_headers[i].header;
        for (size_t j = 0; h && j < i; j++) {
            const char *p = r->output_claim_to_headers[j].header;
            if (p && strcasecmp(h, p) == 0) {
                keel_vwarn_item(v, o, "outputClaimToHeaders", i,
                                "header \"%.100s\" is already the target of outputClaimToHeaders[%zu]; only one "
                                "claim can be copied to a header",
                                h, j);
                break;
            }
        }
    }
    for (size_t i = 0; r->from_headers && i < r->n_from_headers; i++) {
        const char *h = r->from_headers[i].name;
        for (size_t j = 0; h && j < i; j++) {
            const char *p = r->from_headers[j].name;
            if (p && strcasecmp(h, p) == 0) {
                keel_vwarn_item(v, o, "fromHeaders", i, "header \"%.100s\" is listed more than once in fromHeaders", h);
                break;
            }
        }
    }
    if (keel_obj_has(o, "timeout") && r->timeout >= 1000000 && r->timeout % 1000000 != 0)
        keel_verr(v, o, "timeout", "only durations to ms precision are supported");
}

void keel_validate_request_authentication(struct keel_vctx *v, const struct keel_request_authentication *s)
{
    keel_vcheck_annotations(v, NULL);
    keel_vcheck_attachment(v, "", &s->_o, s->selector, s->target_ref, s->target_refs, s->n_target_refs);
    for (size_t i = 0; s->jwt_rules && i < s->n_jwt_rules; i++) {
        size_t mark = keel_vpush_index(v, "jwtRules", i);
        check_jwt_rule(v, &s->jwt_rules[i]);
        keel_vpop(v, mark);
    }
}
