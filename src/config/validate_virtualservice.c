/*
 * validate_virtualservice.c - istiod's admission rules for VirtualService.
 *
 * A port of ValidateVirtualService and everything it calls in istio/istio's
 * pkg/config/validation (validation.go, virtualservice.go): hosts and
 * gateway names, the three route kinds (http, tls, tcp), delegate (chained)
 * VirtualServices, and the analysis that warns about rules a catch-all or a
 * duplicate match makes unreachable. The decoder has already enforced the
 * CRD schema (types, oneofs, required fields, durations >= 1ms), so only the
 * webhook's own rules are checked here. Every problem is reported, at the
 * path of the field it is about, with istiod's wording; where istiod stops
 * at the first problem of a sub-message (redirect, rewrite, authority) this
 * file does the same, so the same inputs fail for the same reason.
 */
#include "config/validate.h"

#include "base/str.h"
#include "config/validate_common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NS_PER_MS 1000000LL
#define NS_PER_S 1000000000LL

/* internal.istio.io/route-semantics: gateway (converted from Gateway API) */
#define ROUTE_SEMANTICS_ANNOTATION "internal.istio.io/route-semantics"

enum route_type { ROUTE_INDEPENDENT, ROUTE_ROOT, ROUTE_DELEGATE };

struct vs {
    struct keel_vctx *v;
    const struct keel_virtual_service *s;
    bool gateway_semantics;
};

/* snprintf for messages: truncation of an over-long value is acceptable */
__attribute__((format(printf, 3, 4))) static void msgf(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, n, fmt, ap);
    va_end(ap);
}

/* ---- small helpers ------------------------------------------------------------ */

static bool empty(const char *s)
{
    return !s || !*s;
}

static const char *str(const char *s)
{
    return s ? s : "";
}

/* Go's %v of a float64: the shortest digits that read back, in %e form when
 * the exponent is < -4 or >= 6 (e.g. 120, 0.5, 1e-05, 1.5e+06) */
static const char *fmt_float(double d, char *buf, size_t n)
{
    int prec = 1;
    for (; prec < 17; prec++) {
        msgf(buf, n, "%.*e", prec - 1, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    const char *e = strchr(buf, 'e');
    int exp = e ? atoi(e + 1) : 0;
    if (exp < -4 || exp >= 6)
        msgf(buf, n, "%.*e", prec - 1, d);
    else
        msgf(buf, n, "%.*f", prec - 1 - exp > 0 ? prec - 1 - exp : 0, d);
    return buf;
}

/* Durations the CRD already holds to >= 1ms; istiod also wants whole ms. */
static void check_ms(struct keel_vctx *v, const struct keel_obj *o, const char *field, int64_t ns)
{
    if (keel_obj_has(o, field) && ns >= NS_PER_MS && ns % NS_PER_MS != 0)
        keel_verr(v, o, field, "only durations to ms precision are supported");
}

/* host.Name(a).Matches(b) */
static bool host_matches(const char *a, const char *b)
{
    bool aw = a[0] == '*', bw = b[0] == '*';
    size_t al = strlen(a), bl = strlen(b);
    if (aw && bw)
        return al < bl ? keel_cstr_has_suffix(b + 1, a + 1) : keel_cstr_has_suffix(a + 1, b + 1);
    if (aw)
        return keel_cstr_has_suffix(b, a + 1);
    if (bw)
        return keel_cstr_has_suffix(a, b + 1);
    return strcmp(a, b) == 0;
}

/* host.Name(a).SubsetOf(b) */
static bool host_subset_of(const char *a, const char *b)
{
    bool aw = a[0] == '*', bw = b[0] == '*';
    if (aw)
        return bw && strlen(a) >= strlen(b) && keel_cstr_has_suffix(a + 1, b + 1);
    if (bw)
        return keel_cstr_has_suffix(a, b + 1);
    return strcmp(a, b) == 0;
}

static bool is_gateway_vs(const struct keel_virtual_service *s)
{
    for (size_t i = 0; i < s->n_gateways; i++)
        if (s->gateways[i] && strcmp(s->gateways[i], "mesh") == 0)
            return false;
    return true;
}

static bool has_sni_hosts(const struct keel_virtual_service *s)
{
    for (size_t i = 0; i < s->n_tls; i++)
        for (size_t j = 0; j < s->tls[i].n_match; j++)
            if (s->tls[i].match[j].n_sni_hosts > 0)
                return true;
    return false;
}

/* ValidateWildcardDomainForVirtualServiceBoundToGateway: SNI hosts of the
 * form outbound_.<PORT>_._.<HOSTNAME> (AUTO_PASSTHROUGH) are accepted. */
static const char *check_gateway_host(bool sni, const char *domain, char *buf, size_t n)
{
    static const char format[] = "outbound_.<PORT>_._.<HOSTNAME>";
    char q1[KEEL_MSG_MAX], q2[KEEL_MSG_MAX / 2];
    size_t len = strlen(domain);
    if (len == 0 || len > 255 || !sni || strncmp(domain, "outbound_", 9) != 0)
        return keel_check_wildcard_domain(domain, buf, n);
    /* strings.Split(domain, "_"): need at least 4 parts */
    const char *part[4];
    size_t plen[4], np = 0;
    const char *p = domain;
    while (np < 4) {
        const char *u = strchr(p, '_');
        part[np] = p;
        plen[np] = u ? (size_t)(u - p) : strlen(p);
        np++;
        if (!u)
            break;
        p = u + 1;
    }
    if (np < 4) {
        msgf(buf, n, "domain name %s invalid, should follow '%s' format", domain, format);
        return buf;
    }
    /* port = Trim(parts[1], "."), hostname = Trim(parts[3], ".") */
    char port[128], hostname[256];
    for (int k = 1; k <= 3; k += 2) {
        const char *s = part[k];
        size_t l = plen[k];
        while (l && *s == '.')
            s++, l--;
        while (l && s[l - 1] == '.')
            l--;
        char *dst = k == 1 ? port : hostname;
        size_t cap = k == 1 ? sizeof(port) : sizeof(hostname);
        msgf(dst, cap, "%.*s", (int)(l < cap - 1 ? l : cap - 1), s);
    }
    bool digit = false, letter = false;
    for (const char *c = port; *c; c++)
        digit |= *c >= '0' && *c <= '9';
    for (const char *c = hostname; *c; c++)
        letter |= (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z');
    if (!digit || !letter) {
        msgf(buf, n, "domain name %s invalid (label %s invalid). should follow %s format",
             keel_quote(domain, q1, sizeof(q1)), keel_quote(!digit ? port : hostname, q2, sizeof(q2)), format);
        return buf;
    }
    return NULL;
}

/* validateGatewayNames: like istiod, a name without '/' ends the check */
static void check_gateway_names(struct keel_vctx *v, const struct keel_obj *o, const char *field,
                                const char *const *names, size_t n, bool gateway_semantics)
{
    char buf[KEEL_MSG_MAX], q[KEEL_MSG_MAX];
    for (size_t i = 0; i < n; i++) {
        const char *g = str(names[i]);
        const char *slash = strchr(g, '/');
        if (!slash) {
            const char *dot = strchr(g, '.');
            if (dot) {
                const char *dot2 = strchr(dot + 1, '.');
                size_t l1 = dot2 ? (size_t)(dot2 - dot - 1) : strlen(dot + 1);
                char rec[KEEL_MSG_MAX];
                msgf(rec, sizeof(rec), "%.*s/%.*s", (int)(l1 < 100 ? l1 : 100), dot + 1,
                     (int)((size_t)(dot - g) < 100 ? (size_t)(dot - g) : 100), g);
                char q2[KEEL_MSG_MAX];
                keel_vwarn_item(v, o, field, i,
                                "using legacy gatewayName format %s; prefer the <namespace>/<name> "
                                "format: %s",
                                keel_quote(g, q, sizeof(q)), keel_quote(rec, q2, sizeof(q2)));
            }
            if (keel_check_fqdn(g, buf, sizeof(buf)))
                keel_verr_item(v, o, field, i, "%s", buf);
            return;
        }
        size_t nslen = (size_t)(slash - g);
        char ns[256];
        msgf(ns, sizeof(ns), "%.*s", (int)(nslen < 255 ? nslen : 255), g);
        const char *name = slash + 1;
        if (nslen == 0 || !*name)
            keel_verr_item(v, o, field, i, "config namespace and gateway name cannot be empty");
        if (!keel_valid_istio_dns1123_label(ns))
            keel_verr_item(v, o, field, i, "invalid value for namespace: %s", keel_quote(ns, q, sizeof(q)));
        if (!keel_valid_istio_dns1123_label(name) && !gateway_semantics)
            keel_verr_item(v, o, field, i, "invalid value for gateway name: %s", keel_quote(name, q, sizeof(q)));
    }
}

/* ---- string matches ---------------------------------------------------------- */

/* validateStringRegexp */
static void check_regex(struct keel_vctx *v, const struct keel_obj *o, const char *field, const char *key,
                        const char *re, const char *where)
{
    char buf[KEEL_MSG_MAX * 3], q[KEEL_MSG_MAX];
    keel_quote(where, q, sizeof(q));
    const char *err = NULL;
    if (strlen(re) > 1024) {
        msgf(buf, sizeof(buf), "%s: regex is too large, max length allowed is 1024", q);
        err = buf;
    } else {
        char detail[KEEL_MSG_MAX];
        if (keel_check_regex(re, detail, sizeof(detail))) {
            msgf(buf, sizeof(buf),
                 "%s: %s; Istio uses RE2 style regex-based match "
                 "(https://github.com/google/re2/wiki/Syntax)",
                 q, detail);
            err = buf;
        }
    }
    if (!err)
        return;
    if (key)
        keel_verr_key(v, o, field, key, "%s", err);
    else
        keel_verr(v, o, field, "%s", err);
}

/* validateStringMatch (prefix_ok: validateStringMatchRegexp, empty prefix allowed) */
static void check_string_match(struct keel_vctx *v, const struct keel_obj *o, const char *field, const char *key,
                               const struct keel_string_match *sm, const char *where, bool prefix_ok)
{
    char q[KEEL_MSG_MAX];
    if (!sm)
        return;
    if (sm->prefix && !*sm->prefix && !prefix_ok) {
        if (key)
            keel_verr_key(v, o, field, key, "%s: prefix string match should not be empty",
                          keel_quote(where, q, sizeof(q)));
        else
            keel_verr(v, o, field, "%s: prefix string match should not be empty", keel_quote(where, q, sizeof(q)));
        return;
    }
    if (!sm->regex)
        return;
    if (!*sm->regex) {
        if (key)
            keel_verr_key(v, o, field, key, "%s: regex string match should not be empty",
                          keel_quote(where, q, sizeof(q)));
        else
            keel_verr(v, o, field, "%s: regex string match should not be empty", keel_quote(where, q, sizeof(q)));
        return;
    }
    check_regex(v, o, field, key, sm->regex, where);
}

/* ---- header manipulation -------------------------------------------------------- */

static bool is_internal_header(const char *k)
{
    return k[0] == ':' || strcasecmp(k, "host") == 0;
}

static bool is_authority_header(const char *k)
{
    return strcasecmp(k, ":authority") == 0 || strcasecmp(k, "host") == 0;
}

/* ValidateHTTPHeaderWithAuthorityOperationName (with_authority) or
 * ValidateHTTPHeaderOperationName */
static const char *header_op_name_error(const char *name, bool with_authority, char *buf, size_t n)
{
    char q[KEEL_MSG_MAX];
    if (!*name)
        return "header name cannot be empty";
    if (with_authority) {
        if (is_internal_header(name) && !is_authority_header(name)) {
            msgf(buf, n, "invalid header %s: header cannot have \":\" prefix", keel_quote(name, q, sizeof(q)));
            return buf;
        }
        return NULL;
    }
    if (strcasecmp(name, "host") == 0) {
        msgf(buf, n, "invalid header %s: cannot set Host header", keel_quote(name, q, sizeof(q)));
        return buf;
    }
    if (is_internal_header(name)) {
        msgf(buf, n, "invalid header %s: header cannot have \":\" prefix", keel_quote(name, q, sizeof(q)));
        return buf;
    }
    return NULL;
}

static void check_header_map(struct keel_vctx *v, const struct keel_header_ops *ops, const char *field,
                             const struct keel_kv_str *kv, size_t n, bool with_authority)
{
    char buf[KEEL_MSG_MAX * 2];
    for (size_t i = 0; i < n; i++) {
        const char *name = str(kv[i].key);
        const char *e = header_op_name_error(name, with_authority, buf, sizeof(buf));
        if (e)
            keel_verr_key(v, &ops->_o, field, name, "%s", e);
        e = keel_check_header_value(kv[i].value, buf, sizeof(buf));
        if (e)
            keel_verr_key(v, &ops->_o, field, name, "%s", e);
    }
}

static void check_header_ops(struct keel_vctx *v, const struct keel_header_ops *ops, const char *which, bool request)
{
    char buf[KEEL_MSG_MAX];
    if (!ops)
        return;
    size_t mark = keel_vpush(v, which);
    check_header_map(v, ops, "add", ops->add, ops->n_add, request);
    check_header_map(v, ops, "set", ops->set, ops->n_set, request);
    for (size_t i = 0; i < ops->n_remove; i++) {
        const char *e = header_op_name_error(str(ops->remove[i]), false, buf, sizeof(buf));
        if (e)
            keel_verr_item(v, &ops->_o, "remove", i, "%s", e);
    }
    keel_vpop(v, mark);
}

/* headers of a route or a route destination; the path is that object's */
static void check_headers(struct keel_vctx *v, const struct keel_headers *h)
{
    if (!h)
        return;
    size_t mark = keel_vpush(v, "headers");
    check_header_ops(v, h->request, "request", true);
    check_header_ops(v, h->response, "response", false);
    keel_vpop(v, mark);
}

/* validateAuthorityRewrite: the authority may be rewritten in one place only */
static void check_authority_rewrite(struct keel_vctx *v, const struct keel_http_route *h)
{
    const char *current = h->rewrite ? str(h->rewrite->authority) : "";
    const struct keel_header_ops *req = h->headers ? h->headers->request : NULL;
    if (!req)
        return;
    for (int pass = 0; pass < 2; pass++) {
        const struct keel_kv_str *kv = pass == 0 ? req->set : req->add;
        size_t n = pass == 0 ? req->n_set : req->n_add;
        for (size_t i = 0; i < n; i++) {
            if (!kv[i].key || !is_authority_header(kv[i].key))
                continue;
            if (*current) {
                char q1[KEEL_MSG_MAX], q2[KEEL_MSG_MAX];
                keel_verr(v, &h->_o, "headers",
                          "authority header cannot be set multiple times: have %s, attempting "
                          "to set %s",
                          keel_quote(current, q1, sizeof(q1)), keel_quote(str(kv[i].value), q2, sizeof(q2)));
                return;
            }
            current = str(kv[i].value);
        }
    }
}

/* ---- destinations ------------------------------------------------------------------ */

/* validateDestination; v->path is the destination's */
static void check_destination(struct keel_vctx *v, const struct keel_destination *d)
{
    char buf[KEEL_MSG_MAX];
    if (!d)
        return;
    if (d->host) { /* absent: the decoder reported the missing field */
        if (strcmp(d->host, "*") == 0)
            keel_verr(v, &d->_o, "host", "invalid destination host %s", d->host);
        else if (keel_check_wildcard_domain(d->host, buf, sizeof(buf)))
            keel_verr(v, &d->_o, "host", "%s", buf);
    }
    if (!empty(d->subset) && !keel_valid_istio_dns1123_label(d->subset))
        keel_verr(v, &d->_o, "subset", "subset name is invalid: %s", d->subset);
    if (d->port && keel_check_port(d->port->number, buf, sizeof(buf)))
        keel_verr(v, &d->_o, "port", "%s", buf);
}

static void check_destination_at(struct keel_vctx *v, const struct keel_destination *d, const char *field)
{
    if (!d)
        return;
    size_t mark = keel_vpush(v, field);
    check_destination(v, d);
    keel_vpop(v, mark);
}

/* validateHTTPRouteDestinations; v->path is the route's */
static void check_http_destinations(struct vs *c, const struct keel_http_route *h)
{
    struct keel_vctx *v = c->v;
    uint32_t total = 0;
    for (size_t i = 0; i < h->n_route; i++) {
        const struct keel_http_route_destination *rd = &h->route[i];
        size_t mark = keel_vpush_index(v, "route", i);
        check_headers(v, rd->headers);
        if (!c->gateway_semantics)
            check_destination_at(v, rd->destination, "destination");
        if (rd->weight < 0)
            keel_verr(v, &rd->_o, "weight", "weight %lld < 0", (long long)rd->weight);
        total += (uint32_t)rd->weight;
        keel_vpop(v, mark);
    }
    if (h->n_route > 1 && (int32_t)total == 0)
        keel_verr(v, &h->_o, "route", "total destination weight = 0");
}

/* validateRouteDestinations (TCP and TLS); v->path is the rule's */
static void check_route_destinations(struct vs *c, const struct keel_obj *o, const struct keel_route_destination *rds,
                                     size_t n)
{
    struct keel_vctx *v = c->v;
    uint32_t total = 0;
    for (size_t i = 0; i < n; i++) {
        size_t mark = keel_vpush_index(v, "route", i);
        if (!c->gateway_semantics)
            check_destination_at(v, rds[i].destination, "destination");
        if (rds[i].weight < 0)
            keel_verr(v, &rds[i]._o, "weight", "weight %lld < 0", (long long)rds[i].weight);
        total += (uint32_t)rds[i].weight;
        keel_vpop(v, mark);
    }
    if (n > 1 && (int32_t)total == 0)
        keel_verr(v, o, "route", "total destination weight = 0");
}

/* ---- HTTP route parts --------------------------------------------------------------- */

/* validateHTTPRouteConflict */
static void check_route_conflicts(struct keel_vctx *v, const struct keel_http_route *h, enum route_type type)
{
    const struct keel_obj *o = &h->_o;
    if (type == ROUTE_ROOT) {
        if (h->redirect)
            keel_verr(v, o, "redirect", "root HTTP route %s must not specify redirect", str(h->name));
        if (h->n_route > 0)
            keel_verr(v, o, "route", "root HTTP route %s must not specify route", str(h->name));
        return;
    }
    if (type == ROUTE_DELEGATE && h->delegate)
        keel_verr(v, o, "delegate", "delegate HTTP route cannot contain delegate");
    if (h->redirect) {
        if (h->n_route > 0)
            keel_verr(v, o, "route", "HTTP route cannot contain both route and redirect");
        if (h->fault)
            keel_verr(v, o, "fault", "HTTP route cannot contain both fault and redirect");
        if (h->rewrite)
            keel_verr(v, o, "rewrite", "HTTP route rule cannot contain both rewrite and redirect");
        if (h->direct_response)
            keel_verr(v, o, "directResponse", "HTTP route rule cannot contain both direct_response and redirect");
    } else if (h->direct_response) {
        if (h->n_route > 0)
            keel_verr(v, o, "route", "HTTP route cannot contain both route and direct_response");
        if (h->fault)
            keel_verr(v, o, "fault", "HTTP route cannot contain both fault and direct_response");
        if (h->rewrite)
            keel_verr(v, o, "rewrite", "HTTP route rule cannot contain both rewrite and direct_response");
    } else if (h->n_route == 0) {
        keel_verr(v, o, NULL, "HTTP route, redirect or direct_response is required");
    }
    if (h->mirror && h->n_mirrors > 0)
        keel_verr(v, o, "mirrors", "HTTP route cannot contain both mirror and mirrors");
}

static void check_header_match_map(struct keel_vctx *v, const struct keel_http_match *m, const char *field,
                                   const struct keel_string_match_entry *e, size_t n, bool without)
{
    for (size_t i = 0; i < n; i++) {
        const char *name = str(e[i].key);
        if (!*name)
            keel_verr_key(v, &m->_o, field, name, "header name cannot be empty");
        else if (!keel_valid_header_name_or_claim(name))
            keel_verr_key(v, &m->_o, field, name, "header name %s is not a valid header name", name);
        /* `*` in withoutHeaders is a presence match, not a regex */
        if (without && e[i].value.regex && strcmp(e[i].value.regex, "*") == 0)
            continue;
        check_string_match(v, &m->_o, field, name, &e[i].value, field, false);
    }
}

/* validateHTTPRouteMatchRequest; v->path is the route's */
static void check_http_matches(struct vs *c, const struct keel_http_route *h)
{
    struct keel_vctx *v = c->v;
    char buf[KEEL_MSG_MAX];
    for (size_t j = 0; j < h->n_match; j++) {
        const struct keel_http_match *m = &h->match[j];
        size_t mark = keel_vpush_index(v, "match", j);
        check_header_match_map(v, m, "headers", m->headers, m->n_headers, false);
        check_header_match_map(v, m, "withoutHeaders", m->without_headers, m->n_without_headers, true);
        check_string_match(v, &m->_o, "uri", NULL, m->uri, "uri", true);
        check_string_match(v, &m->_o, "scheme", NULL, m->scheme, "scheme", false);
        check_string_match(v, &m->_o, "method", NULL, m->method, "method", false);
        check_string_match(v, &m->_o, "authority", NULL, m->authority, "authority", false);
        for (size_t k = 0; k < m->n_query_params; k++)
            check_string_match(v, &m->_o, "queryParams", str(m->query_params[k].key), &m->query_params[k].value,
                               "queryParams", false);
        if (m->port != 0 && keel_check_port(m->port, buf, sizeof(buf)))
            keel_verr(v, &m->_o, "port", "%s", buf);
        keel_vcheck_labels(v, &m->_o, "sourceLabels", m->source_labels, m->n_source_labels);
        check_gateway_names(v, &m->_o, "gateways", m->gateways, m->n_gateways, false);
        if (!empty(m->source_namespace) && !keel_valid_istio_dns1123_label(m->source_namespace))
            keel_verr(v, &m->_o, "sourceNamespace", "sourceNamespace match %s is invalid", m->source_namespace);
        keel_vpop(v, mark);
    }
}

/* validateCORSPolicy */
static void check_cors(struct keel_vctx *v, const struct keel_cors_policy *p)
{
    char buf[KEEL_MSG_MAX];
    static const char *const methods[] = {"GET",    "HEAD",    "POST",    "PUT",   "PATCH",
                                          "DELETE", "CONNECT", "OPTIONS", "TRACE", "*"};
    if (!p)
        return;
    size_t mark = keel_vpush(v, "corsPolicy");
    for (size_t i = 0; i < p->n_allow_origins; i++) {
        const struct keel_string_match *sm = &p->allow_origins[i];
        const char *match = sm->exact ? sm->exact : sm->prefix ? sm->prefix : sm->regex ? sm->regex : "";
        size_t m2 = keel_vpush_index(v, "allowOrigins", i);
        if (!*match)
            keel_verr(v, &sm->_o, NULL, "'%s' is not a valid match type for CORS allow origins", match);
        else if (sm->regex)
            check_regex(v, &sm->_o, "regex", NULL, sm->regex, "corsPolicy.allowOrigins");
        keel_vpop(v, m2);
    }
    for (size_t i = 0; i < p->n_allow_methods; i++) {
        const char *m = str(p->allow_methods[i]);
        bool ok = false;
        for (size_t k = 0; k < sizeof(methods) / sizeof(methods[0]) && !ok; k++)
            ok = strcmp(m, methods[k]) == 0;
        if (!ok)
            keel_verr_item(v, &p->_o, "allowMethods", i, "%s is not a supported HTTP method",
                           keel_quote(m, buf, sizeof(buf)));
    }
    for (int pass = 0; pass < 2; pass++) {
        const char *field = pass == 0 ? "allowHeaders" : "exposeHeaders";
        const char **names = pass == 0 ? p->allow_headers : p->expose_headers;
        size_t n = pass == 0 ? p->n_allow_headers : p->n_expose_headers;
        for (size_t i = 0; i < n; i++) {
            const char *name = str(names[i]);
            if (!*name)
                keel_verr_item(v, &p->_o, field, i, "header name cannot be empty");
            else if (strcmp(name, "*") != 0 && !keel_valid_header_name(name))
                keel_verr_item(v, &p->_o, field, i, "header name %s is not a valid header name", name);
        }
    }
    if (keel_obj_has(&p->_o, "maxAge")) {
        check_ms(v, &p->_o, "maxAge", p->max_age);
        if (p->max_age % NS_PER_S > 0)
            keel_verr(v, &p->_o, "maxAge", "max_age duration is accurate only to seconds precision");
    }
    keel_vpop(v, mark);
}

/* validatePercentage */
static void check_percentage(struct keel_vctx *v, const struct keel_obj *o, const char *field,
                             const struct keel_percent *p)
{
    char f[40];
    if (p && !keel_valid_fraction_percent(p->value))
        keel_verr(v, o, field, "percentage %s is neither 0.0, nor in range [0.0001, 100.0]",
                  fmt_float(p->value, f, sizeof(f)));
}

/* grpc.SupportedGRPCStatus */
static bool valid_grpc_status(const char *s)
{
    static const char *const codes[] = {
        "OK",        "CANCELLED",       "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
        "NOT_FOUND", "ALREADY_EXISTS",  "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED",   "OUT_OF_RANGE",    "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
        "DATA_LOSS", "UNAUTHENTICATED",
    };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (strcmp(s, codes[i]) == 0)
            return true;
    return false;
}

/* validateHTTPStatus: istiod accepts 200..600 (its message says 599) */
static bool valid_http_status(int64_t status)
{
    return status >= 200 && status <= 600;
}

/* validateHTTPFaultInjection */
static void check_fault(struct keel_vctx *v, const struct keel_http_fault *f)
{
    if (!f)
        return;
    size_t mark = keel_vpush(v, "fault");
    if (!f->abort && !f->delay)
        keel_verr(v, &f->_o, NULL, "HTTP fault injection must have an abort and/or a delay");
    const struct keel_fault_abort *a = f->abort;
    if (a) {
        size_t m2 = keel_vpush(v, "abort");
        check_percentage(v, &a->_o, "percentage", a->percentage);
        if (a->grpc_status) {
            if (!valid_grpc_status(a->grpc_status))
                keel_verr(v, &a->_o, "grpcStatus",
                          "gRPC status \"%s\" is not supported. See "
                          "https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, "
                          "for example 'NOT_FOUND'",
                          a->grpc_status);
        } else if (a->http2_error) {
            keel_verr(v, &a->_o, "http2Error", "HTTP/2 abort fault injection not supported yet");
        } else if (keel_obj_has(&a->_o, "httpStatus")) {
            if (!valid_http_status((int32_t)a->http_status))
                keel_verr(v, &a->_o, "httpStatus", "HTTP status %d is not in range 200-599", (int32_t)a->http_status);
        } else {
            keel_vwarn(v, &a->_o, NULL, "abort configured, but error type not set");
        }
        keel_vpop(v, m2);
    }
    const struct keel_fault_delay *d = f->delay;
    if (d) {
        size_t m2 = keel_vpush(v, "delay");
        check_percentage(v, &d->_o, "percentage", d->percentage);
        if (keel_obj_has(&d->_o, "fixedDelay")) {
            check_ms(v, &d->_o, "fixedDelay", d->fixed_delay);
        } else if (keel_obj_has(&d->_o, "exponentialDelay")) {
            check_ms(v, &d->_o, "exponentialDelay", d->exponential_delay);
            keel_verr(v, &d->_o, "exponentialDelay", "exponentialDelay not supported yet");
        }
        keel_vpop(v, m2);
    }
    keel_vpop(v, mark);
}

/* http.StatusText(code) != "" */
static bool known_http_status(long long code)
{
    static const short codes[] = {100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301,
                                  302, 303, 304, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409,
                                  410, 411, 412, 413, 414, 415, 416, 417, 418, 421, 422, 423, 424, 425, 426, 428,
                                  429, 431, 451, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (codes[i] == code)
            return true;
    return false;
}

/* strconv.Atoi with the error ignored (0 on failure) */
static long long go_atoi(const char *s, size_t n)
{
    size_t i = 0;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-'))
        neg = s[i++] == '-';
    if (i == n || n - i > 18)
        return 0;
    long long r = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        r = r * 10 + (s[i] - '0');
    }
    return neg ? -r : r;
}

/* validateHTTPRetry */
static void check_retries(struct keel_vctx *v, const struct keel_http_retry *r)
{
    if (!r)
        return;
    size_t mark = keel_vpush(v, "retries");
    const struct keel_obj *o = &r->_o;
    if (r->attempts < 0)
        keel_verr(v, o, "attempts", "attempts cannot be negative");
    if (r->attempts == 0 &&
        (keel_obj_has(o, "perTryTimeout") || !empty(r->retry_on) || keel_obj_has(o, "retryRemoteLocalities")))
        keel_verr(v, o, NULL, "http retry policy configured when attempts are set to 0 (disabled)");
    check_ms(v, o, "perTryTimeout", r->per_try_timeout);
    if (!empty(r->retry_on)) {
        const char *p = r->retry_on;
        for (;;) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            bool ok = known_http_status(go_atoi(p, len)) || keel_valid_retry_on_policy(p, len);
            if (!ok) {
                char tok[KEEL_MSG_MAX], q[KEEL_MSG_MAX];
                msgf(tok, sizeof(tok), "%.*s", (int)(len < 200 ? len : 200), p);
                keel_verr(v, o, "retryOn", "%s is not a valid retryOn policy", keel_quote(tok, q, sizeof(q)));
            }
            if (!comma)
                break;
            p = comma + 1;
        }
    }
    check_ms(v, o, "backoff", r->backoff);
    keel_vpop(v, mark);
}

/* validateHTTPRedirect (stops at the first problem, like istiod) */
static void check_redirect(struct keel_vctx *v, const struct keel_http_redirect *r)
{
    char buf[KEEL_MSG_MAX];
    if (!r)
        return;
    size_t mark = keel_vpush(v, "redirect");
    const struct keel_obj *o = &r->_o;
    bool has_port = keel_obj_has(o, "port") || keel_obj_has(o, "derivePort");
    if (empty(r->uri) && empty(r->authority) && !has_port && empty(r->scheme) && empty(r->prefix_rewrite))
        keel_verr(v, o, NULL, "redirect must specify URI, authority, scheme, port, or prefixRewrite");
    else if (!empty(r->uri) && !empty(r->prefix_rewrite))
        keel_verr(v, o, "prefixRewrite", "redirect may only contain one of URI or prefixRewrite");
    else if (r->redirect_code != 0 && (r->redirect_code < 300 || r->redirect_code > 399))
        keel_verr(v, o, "redirectCode", "%lld is not a valid redirect code, must be 3xx", (long long)r->redirect_code);
    else if (!empty(r->scheme) && strcmp(r->scheme, "http") != 0 && strcmp(r->scheme, "https") != 0)
        keel_verr(v, o, "scheme", "invalid redirect scheme, must be \"http\" or \"https\"");
    else if (r->port > 0 && keel_check_port(r->port, buf, sizeof(buf)))
        keel_verr(v, o, "port", "%s", buf);
    keel_vpop(v, mark);
}

/* a redirect's prefixRewrite replaces the matched prefix: every URI match of
 * the rule has to be a prefix match */
static void check_prefix_rewrite_matches(struct keel_vctx *v, const struct keel_http_route *h)
{
    if (!h->redirect || empty(h->redirect->prefix_rewrite))
        return;
    for (size_t j = 0; j < h->n_match; j++) {
        const struct keel_string_match *u = h->match[j].uri;
        if (u && (u->exact || u->regex)) {
            size_t mark = keel_vpush_index(v, "match", j);
            keel_verr(v, &h->match[j]._o, "uri", "redirect prefixRewrite requires prefix URI matches, found %s match",
                      u->exact ? "an exact" : "a regex");
            keel_vpop(v, mark);
        }
    }
}

/* validateHTTPDirectResponse */
static void check_direct_response(struct keel_vctx *v, const struct keel_direct_response *d)
{
    if (!d)
        return;
    size_t mark = keel_vpush(v, "directResponse");
    if (d->body) {
        size_t size = 0;
        if (d->body->string) {
            size = strlen(d->body->string);
        } else if (d->body->bytes) { /* base64 text: the decoded length */
            size_t l = strlen(d->body->bytes);
            size = l / 4 * 3;
            if (l >= 1 && d->body->bytes[l - 1] == '=')
                size--;
            if (l >= 2 && d->body->bytes[l - 2] == '=')
                size--;
        }
        if (size > 1024 * 1024)
            keel_verr(v, &d->_o, "body",
                      "large direct_responses may impact control plane performance, must be less "
                      "than 1MB");
        else if (size > 100 * 1024)
            keel_vwarn(v, &d->_o, "body", "large direct_responses may impact control plane performance");
    }
    int32_t status = (int32_t)(uint32_t)d->status; /* istiod converts the uint32 to int32 */
    if (!valid_http_status(status))
        keel_verr(v, &d->_o, "status", "HTTP status %d is not in range 200-599", status);
    keel_vpop(v, mark);
}

/* validateHTTPRewrite + validateURIRegexRewrite (first problem only) */
static void check_rewrite(struct keel_vctx *v, const struct keel_http_rewrite *r)
{
    if (!r)
        return;
    size_t mark = keel_vpush(v, "rewrite");
    const struct keel_regex_rewrite *rr = r->uri_regex_rewrite;
    if (!empty(r->uri) && rr) {
        keel_verr(v, &r->_o, NULL, "rewrite may only contain one of URI or UriRegexRewrite");
    } else if (empty(r->uri) && !rr && empty(r->authority)) {
        keel_verr(v, &r->_o, NULL,
                  "rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one "
                  "of URI or UriRegexRewrite may be specified");
    } else if (rr) {
        if (empty(rr->match) || empty(rr->rewrite)) {
            keel_verr(v, &r->_o, "uriRegexRewrite",
                      "UriRegexRewrite has errors: UriRegexRewrite requires both "
                      "Rewrite and Match fields to be specified");
        } else if (strlen(rr->match) > 1024) {
            keel_verr(v, &rr->_o, "match",
                      "UriRegexRewrite has errors: \"HTTPRewrite.UriRegexRewrite.Match\": regex "
                      "is too large, max length allowed is 1024");
        } else {
            char detail[KEEL_MSG_MAX];
            if (keel_check_regex(rr->match, detail, sizeof(detail)))
                keel_verr(v, &r->_o, "uriRegexRewrite",
                          "UriRegexRewrite has errors: "
                          "\"HTTPRewrite.UriRegexRewrite.Match\": %s; Istio uses RE2 style regex-based match "
                          "(https://github.com/google/re2/wiki/Syntax)",
                          detail);
        }
    }
    keel_vpop(v, mark);
}

/* validateHTTPMirrors */
static void check_mirrors(struct keel_vctx *v, const struct keel_http_route *h)
{
    for (size_t i = 0; i < h->n_mirrors; i++) {
        const struct keel_http_mirror *m = &h->mirrors[i];
        size_t mark = keel_vpush_index(v, "mirrors", i);
        if (m->destination) {
            check_destination_at(v, m->destination, "destination");
            if (m->percentage && m->percentage->value > 100)
                keel_verr(v, &m->_o, "percentage", "mirror percentage must have a max value of 100 (it has %f)",
                          m->percentage->value);
            if (m->percentage && m->percentage->value < 0)
                keel_verr(v, &m->_o, "percentage", "mirror percentage must have a min value of 0 (it has %f)",
                          m->percentage->value);
        }
        keel_vpop(v, mark);
    }
}

/* validateHTTPRoute; v->path is the route's */
static void check_http_route(struct vs *c, const struct keel_http_route *h, bool delegate)
{
    struct keel_vctx *v = c->v;
    enum route_type type = delegate ? ROUTE_DELEGATE : h->delegate ? ROUTE_ROOT : ROUTE_INDEPENDENT;
    check_route_conflicts(v, h, type);
    check_http_matches(c, h);
    check_headers(v, h->headers);
    check_cors(v, h->cors_policy);
    check_fault(v, h->fault);
    for (int pass = 0; pass < 2; pass++) {
        /* deprecated integer mirror percentage, under either spelling */
        const char *field = pass == 0 ? "mirrorPercent" : "mirror_percent";
        int64_t value = pass == 0 ? h->mirror_percent : h->mirror_percent_legacy;
        if (!keel_obj_has(&h->_o, field))
            continue;
        if (value > 100)
            keel_verr(v, &h->_o, field, "mirror_percent must have a max value of 100 (it has %lld)", (long long)value);
        keel_vwarn(v, &h->_o, field, "using deprecated setting \"mirrorPercent\", use \"mirrorPercentage\" instead");
    }
    if (h->mirror_percentage) {
        double value = h->mirror_percentage->value;
        if (value > 100)
            keel_verr(v, &h->_o, "mirrorPercentage", "mirror_percentage must have a max value of 100 (it has %f)",
                      value);
        if (value < 0)
            keel_verr(v, &h->_o, "mirrorPercentage", "mirror_percentage must have a min value of 0 (it has %f)", value);
    }
    check_destination_at(v, h->mirror, "mirror");
    check_mirrors(v, h);
    check_redirect(v, h->redirect);
    check_prefix_rewrite_matches(v, h);
    check_direct_response(v, h->direct_response);
    check_retries(v, h->retries);
    check_rewrite(v, h->rewrite);
    check_authority_rewrite(v, h);
    check_http_destinations(c, h);
    check_ms(v, &h->_o, "timeout", h->timeout);
}

/* ---- TLS and TCP routes --------------------------------------------------------------- */

/* validateSniHost */
static void check_sni_host(struct vs *c, const struct keel_tls_match *m, size_t k)
{
    struct keel_vctx *v = c->v;
    const struct keel_virtual_service *s = c->s;
    const char *sni = str(m->sni_hosts[k]);
    char buf[KEEL_MSG_MAX], q[KEEL_MSG_MAX];
    const char *err = is_gateway_vs(s) ? check_gateway_host(true, sni, buf, sizeof(buf))
                                       : keel_check_wildcard_domain(sni, buf, sizeof(buf));
    if (err) {
        if (keel_valid_ip(sni))
            keel_vwarn_item(v, &m->_o, "sniHosts", k,
                            "using an IP address (%s) goes against SNI spec and most "
                            "clients do not support this",
                            keel_quote(sni, q, sizeof(q)));
        else
            keel_verr_item(v, &m->_o, "sniHosts", k, "%s", err);
        return;
    }
    for (size_t i = 0; i < s->n_hosts; i++)
        if (host_subset_of(sni, str(s->hosts[i])))
            return;
    char hosts[KEEL_MSG_MAX * 2];
    size_t used = 0;
    hosts[0] = '\0';
    for (size_t i = 0; i < s->n_hosts && used + 4 < sizeof(hosts); i++)
        used += (size_t)snprintf(hosts + used, sizeof(hosts) - used, "%s%s", i ? ", " : "", str(s->hosts[i]));
    keel_verr_item(v, &m->_o, "sniHosts", k,
                   "SNI host %s is not a compatible subset of any of the virtual service "
                   "hosts: [%s]",
                   keel_quote(sni, q, sizeof(q)), hosts);
}

static void check_subnets(struct keel_vctx *v, const struct keel_obj *o, const char *const *subnets, size_t n)
{
    char buf[KEEL_MSG_MAX];
    for (size_t i = 0; i < n; i++)
        if (keel_check_ip_subnet(str(subnets[i]), buf, sizeof(buf)))
            keel_verr_item(v, o, "destinationSubnets", i, "%s", buf);
}

/* validateTLSRoute; v->path is the rule's */
static void check_tls_route(struct vs *c, const struct keel_tls_route *t)
{
    struct keel_vctx *v = c->v;
    char buf[KEEL_MSG_MAX];
    if (t->n_match == 0)
        keel_verr(v, &t->_o, "match", "TLS route must have at least one match condition");
    for (size_t j = 0; j < t->n_match; j++) {
        const struct keel_tls_match *m = &t->match[j];
        size_t mark = keel_vpush_index(v, "match", j);
        if (m->n_sni_hosts == 0)
            keel_verr(v, &m->_o, "sniHosts", "TLS match must have at least one SNI host");
        for (size_t k = 0; k < m->n_sni_hosts; k++)
            check_sni_host(c, m, k);
        check_subnets(v, &m->_o, m->destination_subnets, m->n_destination_subnets);
        if (m->port != 0 && keel_check_port(m->port, buf, sizeof(buf)))
            keel_verr(v, &m->_o, "port", "%s", buf);
        keel_vcheck_labels(v, &m->_o, "sourceLabels", m->source_labels, m->n_source_labels);
        check_gateway_names(v, &m->_o, "gateways", m->gateways, m->n_gateways, false);
        keel_vpop(v, mark);
    }
    if (t->n_route == 0)
        keel_verr(v, &t->_o, "route", "TLS route is required");
    check_route_destinations(c, &t->_o, t->route, t->n_route);
}

/* validateTCPRoute; v->path is the rule's */
static void check_tcp_route(struct vs *c, const struct keel_tcp_route *t)
{
    struct keel_vctx *v = c->v;
    char buf[KEEL_MSG_MAX];
    for (size_t j = 0; j < t->n_match; j++) {
        const struct keel_l4_match *m = &t->match[j];
        size_t mark = keel_vpush_index(v, "match", j);
        check_subnets(v, &m->_o, m->destination_subnets, m->n_destination_subnets);
        if (m->port != 0 && keel_check_port(m->port, buf, sizeof(buf)))
            keel_verr(v, &m->_o, "port", "%s", buf);
        keel_vcheck_labels(v, &m->_o, "sourceLabels", m->source_labels, m->n_source_labels);
        check_gateway_names(v, &m->_o, "gateways", m->gateways, m->n_gateways, false);
        keel_vpop(v, mark);
    }
    if (t->n_route == 0)
        keel_verr(v, &t->_o, "route", "TCP route is required");
    check_route_destinations(c, &t->_o, t->route, t->n_route);
}

/* ---- unreachable rules (warnings) -------------------------------------------------------- */

/* Equality of matches as istiod compares them (JSON of the Go struct, so an
 * unset string equals "", but an unset StringMatch differs from {}). */
static bool s_eq(const char *a, const char *b)
{
    return strcmp(str(a), str(b)) == 0;
}

static bool opt_eq(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static bool sm_eq(const struct keel_string_match *a, const struct keel_string_match *b)
{
    if (!a || !b)
        return a == b;
    return opt_eq(a->exact, b->exact) && opt_eq(a->prefix, b->prefix) && opt_eq(a->regex, b->regex);
}

static bool list_eq(const char *const *a, size_t na, const char *const *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++)
        if (!s_eq(a[i], b[i]))
            return false;
    return true;
}

static bool kv_eq(const struct keel_kv_str *a, size_t na, const struct keel_kv_str *b, size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++) {
        bool found = false;
        for (size_t j = 0; j < nb && !found; j++)
            found = s_eq(a[i].key, b[j].key) && s_eq(a[i].value, b[j].value);
        if (!found)
            return false;
    }
    return true;
}

static bool smmap_eq(const struct keel_string_match_entry *a, size_t na, const struct keel_string_match_entry *b,
                     size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++) {
        bool found = false;
        for (size_t j = 0; j < nb && !found; j++)
            found = s_eq(a[i].key, b[j].key) && sm_eq(&a[i].value, &b[j].value);
        if (!found)
            return false;
    }
    return true;
}

static bool http_match_eq(const struct keel_http_match *a, const struct keel_http_match *b)
{
    return sm_eq(a->authority, b->authority) && list_eq(a->gateways, a->n_gateways, b->gateways, b->n_gateways) &&
           smmap_eq(a->headers, a->n_headers, b->headers, b->n_headers) && a->ignore_uri_case == b->ignore_uri_case &&
           sm_eq(a->method, b->method) && a->port == b->port &&
           smmap_eq(a->query_params, a->n_query_params, b->query_params, b->n_query_params) &&
           sm_eq(a->scheme, b->scheme) &&
           kv_eq(a->source_labels, a->n_source_labels, b->source_labels, b->n_source_labels) &&
           s_eq(a->source_namespace, b->source_namespace) && s_eq(a->stat_prefix, b->stat_prefix) &&
           sm_eq(a->uri, b->uri) &&
           smmap_eq(a->without_headers, a->n_without_headers, b->without_headers, b->n_without_headers);
}

static bool l4_match_eq(const struct keel_l4_match *a, const struct keel_l4_match *b)
{
    return list_eq(a->destination_subnets, a->n_destination_subnets, b->destination_subnets,
                   b->n_destination_subnets) &&
           list_eq(a->gateways, a->n_gateways, b->gateways, b->n_gateways) && a->port == b->port &&
           kv_eq(a->source_labels, a->n_source_labels, b->source_labels, b->n_source_labels) &&
           s_eq(a->source_namespace, b->source_namespace) && s_eq(a->source_subnet, b->source_subnet);
}

static bool tls_match_eq(const struct keel_tls_match *a, const struct keel_tls_match *b)
{
    return list_eq(a->destination_subnets, a->n_destination_subnets, b->destination_subnets,
                   b->n_destination_subnets) &&
           list_eq(a->gateways, a->n_gateways, b->gateways, b->n_gateways) && a->port == b->port &&
           list_eq(a->sni_hosts, a->n_sni_hosts, b->sni_hosts, b->n_sni_hosts) &&
           kv_eq(a->source_labels, a->n_source_labels, b->source_labels, b->n_source_labels) &&
           s_eq(a->source_namespace, b->source_namespace);
}

/* routeName / requestName */
static const char *rule_name(const char *name, size_t i, char *buf, size_t n)
{
    if (!empty(name))
        return keel_quote(name, buf, n);
    msgf(buf, n, "#%zu", i);
    return buf;
}

/* One of the kinds of rule lists, seen through accessors. */
struct rules {
    const void *base;
    size_t n, size; /* rules and the size of one */
    size_t (*n_match)(const void *rule);
    bool (*match_eq)(const void *rule_a, size_t ma, const void *rule_b, size_t mb);
    const char *(*name)(const void *rule); /* HTTP route name, else NULL */
    const char *(*match_name)(const void *rule, size_t m);
    const char *field; /* "http", "tcp", "tls" */
};

static const void *rule_at(const struct rules *r, size_t i)
{
    return (const char *)r->base + i * r->size;
}

static size_t http_n_match(const void *rule)
{
    return ((const struct keel_http_route *)rule)->n_match;
}
static bool http_eq(const void *a, size_t ma, const void *b, size_t mb)
{
    return http_match_eq(&((const struct keel_http_route *)a)->match[ma],
                         &((const struct keel_http_route *)b)->match[mb]);
}
static const char *http_name(const void *rule)
{
    return ((const struct keel_http_route *)rule)->name;
}
static const char *http_match_name(const void *rule, size_t m)
{
    return ((const struct keel_http_route *)rule)->match[m].name;
}
static size_t tcp_n_match(const void *rule)
{
    return ((const struct keel_tcp_route *)rule)->n_match;
}
static bool tcp_eq(const void *a, size_t ma, const void *b, size_t mb)
{
    return l4_match_eq(&((const struct keel_tcp_route *)a)->match[ma], &((const struct keel_tcp_route *)b)->match[mb]);
}
static size_t tls_n_match(const void *rule)
{
    return ((const struct keel_tls_route *)rule)->n_match;
}
static bool tls_eq(const void *a, size_t ma, const void *b, size_t mb)
{
    return tls_match_eq(&((const struct keel_tls_route *)a)->match[ma], &((const struct keel_tls_route *)b)->match[mb]);
}

static void warn_unused(struct keel_vctx *v, const struct keel_virtual_service *s, const struct rules *r, size_t i,
                        const char *reason)
{
    char rn[KEEL_MSG_MAX];
    keel_vwarn_item(v, &s->_o, r->field, i, "virtualService rule %s not used (%s)",
                    rule_name(r->name ? r->name(rule_at(r, i)) : NULL, i, rn, sizeof(rn)), reason);
}

static void warn_ineffective(struct keel_vctx *v, const struct keel_virtual_service *s, const char *field, size_t i,
                             const char *rule, const char *match, const char *dup)
{
    keel_vwarn_item(v, &s->_o, field, i,
                    "virtualService rule %s match %s is not used (duplicate/overlapping match in "
                    "rule %s)",
                    rule, match, dup);
}

/* analyzeUnreachable{HTTP,TCP,TLS}Rules, except the HTTP prefix overlaps.
 * included (optional, one flag per match in rule order) receives the matches
 * that stay in istiod's "encountered" list. */
static void analyze_rules(struct keel_vctx *v, const struct keel_virtual_service *s, const struct rules *r,
                          bool *included)
{
    bool catch_all = false;
    size_t flat = 0; /* index of the current match among all matches */
    for (size_t i = 0; i < r->n; i++) {
        const void *rule = rule_at(r, i);
        size_t nm = r->n_match(rule);
        if (nm == 0) {
            if (catch_all)
                warn_unused(v, s, r, i, "only the last rule can have no matches");
            catch_all = true;
            continue;
        }
        size_t duplicates = 0;
        for (size_t m = 0; m < nm; m++, flat++) {
            if (catch_all) {
                warn_unused(v, s, r, i, "route without matches defined before");
                continue;
            }
            /* the first earlier match that is equal and was encountered */
            bool dup = false;
            size_t dup_rule = 0;
            size_t f2 = 0;
            for (size_t i2 = 0; i2 <= i && !dup; i2++) {
                const void *rule2 = rule_at(r, i2);
                size_t nm2 = i2 == i ? m : r->n_match(rule2);
                for (size_t m2 = 0; m2 < nm2 && !dup; m2++, f2++) {
                    if (included && !included[f2])
                        continue;
                    if (r->match_eq(rule2, m2, rule, m)) {
                        dup = true;
                        dup_rule = i2;
                    }
                }
            }
            if (dup) {
                char rn[KEEL_MSG_MAX], mn[KEEL_MSG_MAX], dn[KEEL_MSG_MAX];
                const char *mname = r->match_name ? r->match_name(rule, m) : NULL;
                warn_ineffective(v, s, r->field, i, rule_name(r->name ? r->name(rule) : NULL, i, rn, sizeof(rn)),
                                 rule_name(mname, m, mn, sizeof(mn)),
                                 rule_name(r->name ? r->name(rule_at(r, dup_rule)) : NULL, dup_rule, dn, sizeof(dn)));
                duplicates++;
                continue;
            }
            if (included)
                included[flat] = true;
        }
        if (duplicates == nm)
            warn_unused(v, s, r, i, "all matches used by prior rules");
    }
}

/* assignExactOrPrefix, as a (tag, value) pair */
struct tagged {
    const char *tag, *val;
};

static struct tagged exact_or_prefix(const struct keel_string_match *sm)
{
    struct tagged t = {"", ""};
    if (sm && !empty(sm->exact))
        t = (struct tagged){"exact:", sm->exact};
    else if (sm && !empty(sm->prefix))
        t = (struct tagged){"prefix:", sm->prefix};
    return t;
}

static char tagged_at(struct tagged t, size_t i)
{
    size_t tl = strlen(t.tag);
    return i < tl ? t.tag[i] : t.val[i - tl];
}

static size_t tagged_len(struct tagged t)
{
    return strlen(t.tag) + strlen(t.val);
}

/* a == b, or strings.HasPrefix(a, b) */
static bool tagged_covers(struct tagged a, struct tagged b)
{
    size_t nb = tagged_len(b);
    if (nb > tagged_len(a))
        return false;
    for (size_t i = 0; i < nb; i++)
        if (tagged_at(a, i) != tagged_at(b, i))
            return false;
    return true;
}

static struct tagged method_of(const struct keel_http_match *m)
{
    struct tagged t = exact_or_prefix(m->method);
    if (!*t.tag)
        t = (struct tagged){"exact:", "GET"};
    return t;
}

static bool smmap_covers(const struct keel_string_match_entry *a, size_t na, const struct keel_string_match_entry *b,
                         size_t nb)
{
    if (na != nb)
        return false;
    for (size_t i = 0; i < na; i++) {
        const struct keel_string_match_entry *found = NULL;
        for (size_t j = 0; j < nb && !found; j++)
            if (s_eq(a[i].key, b[j].key))
                found = &b[j];
        if (!found || !tagged_covers(exact_or_prefix(&a[i].value), exact_or_prefix(&found->value)))
            return false;
    }
    return true;
}

/* coveredValidation: does prefix match a make the later match b unreachable? */
static bool covered(const struct keel_http_match *a, const struct keel_http_match *b)
{
    if (!keel_cstr_has_prefix(b->uri->prefix, a->uri->prefix) || a->port != b->port)
        return false;
    if (!tagged_covers(method_of(a), method_of(b)))
        return false;
    if (!tagged_covers(exact_or_prefix(a->authority), exact_or_prefix(b->authority)))
        return false;
    return smmap_covers(a->headers, a->n_headers, b->headers, b->n_headers) &&
           smmap_covers(a->query_params, a->n_query_params, b->query_params, b->n_query_params) &&
           smmap_covers(a->without_headers, a->n_without_headers, b->without_headers, b->n_without_headers);
}

static void analyze_http(struct keel_vctx *v, const struct keel_virtual_service *s)
{
    struct rules r = {s->http, s->n_http, sizeof(*s->http), http_n_match, http_eq, http_name, http_match_name, "http"};
    size_t total = 0;
    for (size_t i = 0; i < s->n_http; i++)
        total += s->http[i].n_match;
    bool *included = total ? calloc(total, sizeof(*included)) : NULL;
    analyze_rules(v, s, &r, included);
    if (!included)
        return;
    /* genMatchHTTPRoutes + the overlap check between prefix matches */
    struct pm {
        size_t rule, match;
    } *pms = calloc(total, sizeof(*pms));
    size_t npm = 0, flat = 0;
    for (size_t i = 0; pms && i < s->n_http; i++)
        for (size_t m = 0; m < s->http[i].n_match; m++, flat++) {
            const struct keel_string_match *u = s->http[i].match[m].uri;
            if (included[flat] && u && !empty(u->prefix))
                pms[npm++] = (struct pm){i, m};
        }
    for (size_t x = 0; npm > 1 && x < npm; x++) {
        const struct keel_http_route *ra = &s->http[pms[x].rule];
        const struct keel_http_match *a = &ra->match[pms[x].match];
        for (size_t y = x + 1; y < npm; y++) {
            const struct keel_http_route *rb = &s->http[pms[y].rule];
            const struct keel_http_match *b = &rb->match[pms[y].match];
            if (strcmp(a->uri->prefix, b->uri->prefix) == 0 || !covered(a, b))
                continue;
            char rbn[KEEL_MSG_MAX], ran[KEEL_MSG_MAX], mbn[KEEL_MSG_MAX], man[KEEL_MSG_MAX];
            char what[KEEL_MSG_MAX * 2], dup[KEEL_MSG_MAX * 3];
            msgf(what, sizeof(what), "%s of prefix %s", rule_name(b->name, pms[y].match, mbn, sizeof(mbn)),
                 b->uri->prefix);
            msgf(dup, sizeof(dup), "%s of prefix %s on %s", rule_name(a->name, pms[x].match, man, sizeof(man)),
                 a->uri->prefix, rule_name(ra->name, pms[x].rule, ran, sizeof(ran)));
            warn_ineffective(v, s, "http", pms[y].rule, rule_name(rb->name, pms[y].rule, rbn, sizeof(rbn)), what, dup);
        }
    }
    free(pms);
    free(included);
}

/* ---- the VirtualService --------------------------------------------------------------- */

/* hosts: wildcard rules, "*" only on gateways, no overlaps */
static void check_hosts(struct vs *c, bool applies_to_mesh, bool applies_to_gateway)
{
    struct keel_vctx *v = c->v;
    const struct keel_virtual_service *s = c->s;
    char buf[KEEL_MSG_MAX];
    bool all_valid = true;
    bool sni = has_sni_hosts(s);
    for (size_t i = 0; i < s->n_hosts; i++) {
        const char *h = str(s->hosts[i]);
        const char *err = applies_to_gateway ? check_gateway_host(sni, h, buf, sizeof(buf))
                                             : keel_check_wildcard_domain(h, buf, sizeof(buf));
        if (err) {
            if (!keel_valid_ip(h)) {
                keel_verr_item(v, &s->_o, "hosts", i, "%s", err);
                all_valid = false;
            }
        } else if (applies_to_mesh && strcmp(h, "*") == 0) {
            keel_verr_item(v, &s->_o, "hosts", i,
                           "wildcard host * is not allowed for virtual services bound to the "
                           "mesh gateway");
            all_valid = false;
        }
    }
    if (!all_valid)
        return;
    for (size_t i = 0; i < s->n_hosts; i++)
        for (size_t j = i + 1; j < s->n_hosts; j++)
            if (host_matches(str(s->hosts[i]), str(s->hosts[j])))
                keel_verr_item(v, &s->_o, "hosts", j, "duplicate hosts in virtual service: %s & %s", str(s->hosts[i]),
                               str(s->hosts[j]));
}

/* JWT claim routing needs a gateway */
static void check_claim_routes(struct vs *c)
{
    struct keel_vctx *v = c->v;
    const struct keel_virtual_service *s = c->s;
    char gws[KEEL_MSG_MAX];
    size_t used = 0;
    gws[0] = '\0';
    for (size_t i = 0; i < s->n_gateways && used + 4 < sizeof(gws); i++)
        used += (size_t)snprintf(gws + used, sizeof(gws) - used, "%s%s", i ? " " : "", str(s->gateways[i]));
    for (size_t i = 0; i < s->n_http; i++) {
        const struct keel_http_route *h = &s->http[i];
        for (size_t j = 0; j < h->n_match; j++) {
            const struct keel_http_match *m = &h->match[j];
            size_t mark = keel_vpush_index(v, "http", i);
            keel_vpush_index(v, "match", j);
            for (int pass = 0; pass < 2; pass++) {
                const char *field = pass == 0 ? "headers" : "withoutHeaders";
                const struct keel_string_match_entry *e = pass == 0 ? m->headers : m->without_headers;
                size_t n = pass == 0 ? m->n_headers : m->n_without_headers;
                for (size_t k = 0; k < n; k++)
                    if (keel_is_jwt_claim_route(e[k].key))
                        keel_verr_key(v, &m->_o, field, e[k].key,
                                      "JWT claim based routing (key: %s) is only supported "
                                      "for gateway, found no gateways: [%s]",
                                      e[k].key, gws);
            }
            keel_vpop(v, mark);
        }
    }
}

void keel_validate_virtual_service(struct keel_vctx *v, const struct keel_virtual_service *s)
{
    if (!s)
        return;
    const char *sem = keel_vannotation(v, ROUTE_SEMANTICS_ANNOTATION);
    struct vs c = {v, s, sem && strcmp(sem, "gateway") == 0};
    bool delegate = s->n_hosts == 0;
    if (delegate) {
        if (s->n_gateways)
            keel_verr(v, &s->_o, "gateways", "delegate virtual service must have no gateways specified");
        if (s->n_tls)
            keel_verr(v, &s->_o, "tls", "delegate virtual service must have no tls route specified");
        if (s->n_tcp)
            keel_verr(v, &s->_o, "tcp", "delegate virtual service must have no tcp route specified");
    }
    bool applies_to_mesh = true, applies_to_gateway = false;
    if (s->n_gateways) {
        check_gateway_names(v, &s->_o, "gateways", s->gateways, s->n_gateways, c.gateway_semantics);
        applies_to_gateway = is_gateway_vs(s);
        applies_to_mesh = !applies_to_gateway;
    }
    if (!applies_to_gateway)
        check_claim_routes(&c);
    check_hosts(&c, applies_to_mesh, applies_to_gateway);
    if (s->n_http == 0 && s->n_tcp == 0 && s->n_tls == 0)
        keel_verr(v, &s->_o, NULL, "http, tcp or tls must be provided in virtual service");
    for (size_t i = 0; i < s->n_http; i++) {
        size_t mark = keel_vpush_index(v, "http", i);
        check_http_route(&c, &s->http[i], delegate);
        keel_vpop(v, mark);
    }
    for (size_t i = 0; i < s->n_tls; i++) {
        size_t mark = keel_vpush_index(v, "tls", i);
        check_tls_route(&c, &s->tls[i]);
        keel_vpop(v, mark);
    }
    for (size_t i = 0; i < s->n_tcp; i++) {
        size_t mark = keel_vpush_index(v, "tcp", i);
        check_tcp_route(&c, &s->tcp[i]);
        keel_vpop(v, mark);
    }
    keel_vcheck_export_to(v, &s->_o, "exportTo", s->export_to, s->n_export_to, false, false);

    analyze_http(v, s);
    struct rules tcp = {s->tcp, s->n_tcp, sizeof(*s->tcp), tcp_n_match, tcp_eq, NULL, NULL, "tcp"};
    analyze_rules(v, s, &tcp, NULL);
    struct rules tls = {s->tls, s->n_tls, sizeof(*s->tls), tls_n_match, tls_eq, NULL, NULL, "tls"};
    analyze_rules(v, s, &tls, NULL);
}
