/*
 * routes.c - the request side of compiled routes: virtual-host lookup, route
 * matching, weighted picks, path rewrites, TCP/TLS route matching (see
 * routes.h).
 *
 * Nothing here allocates or writes shared state: a lookup reads the
 * immutable snapshot, parses the query string at most once into a stack
 * array (KEEL_ROUTES_MAX_QUERY_PARAMS), joins repeated headers into a stack
 * buffer (KEEL_ROUTES_MAX_JOINED_HEADER; a longer value does not match), and
 * runs regexes through mesh/regex.h, which keeps its match data on the stack.
 * Envoy semantics kept: `prefix` compares against the path with its query
 * string, `exact` and `regex` against the path alone; regexes ignore
 * ignoreUriCase; a missing :scheme on HTTP/1 reads as "http"; query values
 * are compared undecoded, first occurrence wins.
 */
#include "mesh/routes.h"

#include "base/err.h"
#include "base/str.h"
#include "config/host.h"
#include "config/selector.h"
#include "http/message.h"
#include "mesh/regex.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* ---- request side: values of a request ------------------------------------------ */

struct qparam {
    struct keel_str name, value;
};

static size_t parse_query(struct keel_str q, struct qparam *out, size_t cap)
{
    size_t n = 0, i = 0;
    while (i < q.n && n < cap) {
        size_t start = i;
        while (i < q.n && q.p[i] != '&')
            i++;
        if (i > start) {
            struct keel_str part = {q.p + start, i - start};
            const char *eq = memchr(part.p, '=', part.n);
            out[n].name = (struct keel_str){part.p, eq ? (size_t)(eq - part.p) : part.n};
            out[n].value =
                eq ? (struct keel_str){eq + 1, part.n - (size_t)(eq + 1 - part.p)} : (struct keel_str){"", 0};
            n++;
        }
        i++;
    }
    return n;
}

static bool ci_eq(const char *a, size_t an, const char *b, size_t bn)
{
    return an == bn && (an == 0 || strncasecmp(a, b, an) == 0);
}

/* Value of a header for matching: pseudo-headers from the head, repeated
 * headers joined with "," into join (Envoy's getAllOfHeaderAsString).
 * Returns false when absent; *overflow when the joined value does not fit. */
static bool header_value(const struct keel_http_head *h, const struct keel_header_matcher *m, char *join,
                         struct keel_str *out, bool *overflow)
{
    *overflow = false;
    if (m->name[0] == ':' || ci_eq(m->name, m->name_len, "host", 4)) {
        if (ci_eq(m->name, m->name_len, ":authority", 10) || ci_eq(m->name, m->name_len, "host", 4))
            *out = h->authority;
        else if (ci_eq(m->name, m->name_len, ":method", 7))
            *out = h->method;
        else if (ci_eq(m->name, m->name_len, ":scheme", 7))
            *out = h->scheme.n ? h->scheme : (struct keel_str){"http", 4};
        else if (ci_eq(m->name, m->name_len, ":path", 5))
            *out = h->target;
        else
            return false;
        return m->name[0] == ':' || out->n > 0;
    }
    size_t found = 0, used = 0;
    for (size_t i = 0; i < h->nheaders; i++) {
        const struct keel_http_header *x = &h->headers[i];
        if (!ci_eq(x->name.p, x->name.n, m->name, m->name_len))
            continue;
        if (found == 0) {
            *out = x->value;
        } else {
            if (found == 1) {
                if (out->n > KEEL_ROUTES_MAX_JOINED_HEADER) {
                    *overflow = true;
                    return true;
                }
                memcpy(join, out->p, out->n);
                used = out->n;
            }
            if (used + 1 + x->value.n > KEEL_ROUTES_MAX_JOINED_HEADER) {
                *overflow = true;
                return true;
            }
            join[used++] = ',';
            memcpy(join + used, x->value.p, x->value.n);
            used += x->value.n;
            *out = (struct keel_str){join, used};
        }
        found++;
    }
    return found > 0;
}

bool keel_str_matcher_eval(const struct keel_str_matcher *m, const char *p, size_t n)
{
    switch (m->kind) {
    case KEEL_SM_NONE:
    case KEEL_SM_PRESENT:
        return true;
    case KEEL_SM_EXACT:
        if (n != m->len)
            return false;
        return m->ignore_case ? (n == 0 || strncasecmp(p, m->value, n) == 0) : memcmp(p, m->value, n) == 0;
    case KEEL_SM_PREFIX:
        if (n < m->len)
            return false;
        return m->ignore_case ? strncasecmp(p, m->value, m->len) == 0 : memcmp(p, m->value, m->len) == 0;
    case KEEL_SM_REGEX:
        return keel_regex_matches(m->re, p, n);
    }
    return false;
}

/* Envoy `prefix` compares against :path with its query string. */
static bool uri_prefix(const struct keel_str_matcher *m, const struct keel_http_head *h)
{
    if (m->len <= h->path.n)
        return keel_str_matcher_eval(m, h->path.p, h->path.n);
    if (!h->query.n)
        return false;
    size_t rest = m->len - h->path.n; /* compare "?query" against the rest of the prefix */
    struct keel_str_matcher head = *m, tail = *m;
    head.len = h->path.n;
    if (!keel_str_matcher_eval(&head, h->path.p, h->path.n) || m->value[h->path.n] != '?')
        return false;
    tail.value = m->value + h->path.n + 1;
    tail.len = rest - 1;
    return keel_str_matcher_eval(&tail, h->query.p, h->query.n);
}

static bool source_ok(const struct keel_route_source *src, const struct keel_kv_str *labels, size_t n, const char *ns)
{
    if (!src)
        return true; /* decided at compile time for the proxy itself */
    if (n && !keel_labels_match(labels, n, src->labels, src->n_labels))
        return false;
    return !ns || (src->ns && strcmp(ns, src->ns) == 0);
}

static bool cond_eval(const struct keel_route_cond *c, const struct keel_http_head *h, uint32_t port,
                      const struct keel_route_source *src, const struct qparam *qp, size_t nqp, bool parsed)
{
    if (c->port && port && c->port != port)
        return false;
    if (!source_ok(src, c->source_labels, c->n_source_labels, c->source_ns))
        return false;
    if (c->uri.kind == KEEL_SM_PREFIX) {
        if (!uri_prefix(&c->uri, h))
            return false;
    } else if (!keel_str_matcher_eval(&c->uri, h->path.p, h->path.n)) {
        return false;
    }
    char join[KEEL_ROUTES_MAX_JOINED_HEADER];
    for (size_t i = 0; i < c->n_headers; i++) {
        const struct keel_header_matcher *m = &c->headers[i];
        struct keel_str v = {"", 0};
        bool overflow;
        bool present = header_value(h, m, join, &v, &overflow);
        bool ok;
        if (overflow)
            ok = false;
        else if (!present)
            ok = m->treat_missing_as_empty ? keel_str_matcher_eval(&m->m, "", 0) : false;
        else
            ok = keel_str_matcher_eval(&m->m, v.p, v.n);
        if (ok == m->invert)
            return false;
    }
    if (c->n_query) {
        struct qparam local[KEEL_ROUTES_MAX_QUERY_PARAMS];
        if (!parsed) {
            nqp = parse_query(h->query, local, KEEL_ROUTES_MAX_QUERY_PARAMS);
            qp = local;
        }
        for (size_t i = 0; i < c->n_query; i++) {
            const struct keel_query_matcher *m = &c->query[i];
            const struct qparam *hit = NULL;
            for (size_t k = 0; k < nqp && !hit; k++)
                if (qp[k].name.n == m->name_len && memcmp(qp[k].name.p, m->name, m->name_len) == 0)
                    hit = &qp[k]; /* the first occurrence, as Envoy */
            if (!hit || !keel_str_matcher_eval(&m->m, hit->value.p, hit->value.n))
                return false;
        }
    }
    return true;
}

bool keel_route_cond_matches(const struct keel_route_cond *c, const struct keel_http_head *head, uint32_t port,
                             const struct keel_route_source *source)
{
    return c && head && cond_eval(c, head, port, source, NULL, 0, false);
}

/* ---- request side: lookup -------------------------------------------------------- */

static const struct keel_vhost *lookup_domain(const struct keel_route_table *t, const char *p, size_t n, bool exact)
{
    const struct keel_host_entry *e = keel_host_index_lookup(t->domains, p, n);
    if (!e)
        return NULL;
    if (exact && !ci_eq(e->host, strlen(e->host), p, n))
        return NULL;
    return e->value;
}

const struct keel_vhost *keel_route_vhost(const struct keel_route_table *t, struct keel_str a)
{
    if (!t)
        return NULL;
    /* strip ":port" (Istio sets ignore_port_in_host_matching) */
    size_t n = a.n;
    size_t i = n;
    while (i > 0 && a.p[i - 1] >= '0' && a.p[i - 1] <= '9')
        i--;
    bool has_port =
        i > 0 && i < n && a.p[i - 1] == ':' && (a.p[0] == '[' ? a.p[i - 2] == ']' : !memchr(a.p, ':', i - 1));
    if (has_port) {
        const struct keel_vhost *v = lookup_domain(t, a.p, n, true); /* a "host:port" domain, if any */
        if (v)
            return v;
        n = i - 1;
    }
    if (n >= 2 && a.p[0] == '[' && a.p[n - 1] == ']') { /* IPv6 literal: domains hold the bare address */
        const struct keel_vhost *v = lookup_domain(t, a.p + 1, n - 2, true);
        if (v)
            return v;
    }
    return lookup_domain(t, a.p, n, false);
}

const struct keel_route *keel_route_match(const struct keel_route_table *t, const struct keel_http_head *head,
                                          uint32_t port, const struct keel_route_source *source)
{
    if (!t || !head)
        return NULL;
    const struct keel_vhost *vh = keel_route_vhost(t, head->authority);
    if (!vh)
        return NULL;
    struct keel_route_source self;
    if (!source && !t->router) {
        self = (struct keel_route_source){t->self_ns, t->self_labels, t->n_self_labels};
        source = &self;
    }
    struct qparam qp[KEEL_ROUTES_MAX_QUERY_PARAMS];
    size_t nqp = vh->needs_query ? parse_query(head->query, qp, KEEL_ROUTES_MAX_QUERY_PARAMS) : 0;
    for (size_t i = 0; i < vh->n_routes; i++)
        if (cond_eval(&vh->routes[i]->cond, head, port, t->router ? NULL : source, qp, nqp, true))
            return vh->routes[i];
    return NULL;
}

static const struct keel_route_dest *pick(const struct keel_route_dest *d, size_t n, uint64_t total, uint32_t random)
{
    if (!n || !total)
        return n ? &d[0] : NULL;
    uint64_t x = ((uint64_t)random * total) >> 32; /* in [0, total) */
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (d[mid].cumulative > x)
            hi = mid;
        else
            lo = mid + 1;
    }
    return &d[lo];
}

const struct keel_route_dest *keel_route_pick(const struct keel_route *r, uint32_t random)
{
    if (!r || r->action->kind != KEEL_ROUTE_FORWARD)
        return NULL;
    return pick(r->action->dests, r->action->n_dests, r->action->total_weight, random);
}

const struct keel_route_dest *keel_tcp_route_pick(const struct keel_l4_route *r, uint32_t random)
{
    return r ? pick(r->dests, r->n_dests, r->total_weight, random) : NULL;
}

int keel_route_rewrite_path(const struct keel_route *r, struct keel_str path, char *out, size_t cap)
{
    if (!r || !out || !cap)
        return KEEL_EINVAL;
    const struct keel_route_action *a = r->action;
    if (a->rewrite == KEEL_REWRITE_REGEX)
        return keel_regex_substitute(a->rewrite_re, path.p, path.n, a->rewrite_uri, out, cap);
    const char *head = "", *tail = path.p;
    size_t hn = 0, tn = path.n;
    if (a->rewrite == KEEL_REWRITE_PREFIX) {
        head = a->rewrite_uri;
        hn = strlen(head);
        size_t cut = r->cond.uri.kind == KEEL_SM_PREFIX ? r->cond.uri.len : path.n;
        if (cut > path.n)
            cut = path.n;
        tail = path.p + cut;
        tn = path.n - cut;
    }
    size_t n = hn + tn;
    if (n + 1 > cap || n > INT32_MAX)
        return KEEL_ETOOBIG;
    memcpy(out, head, hn);
    if (tn)
        memcpy(out + hn, tail, tn);
    out[n] = '\0';
    return (int)n;
}

/* ---- request side: TCP ------------------------------------------------------------ */

bool keel_routes_parse_ip(const char *s, struct keel_cidr *out)
{
    if (!s)
        return false;
    if (inet_pton(AF_INET, s, out->addr) == 1) {
        out->family = 4;
        out->bits = 32;
        return true;
    }
    if (inet_pton(AF_INET6, s, out->addr) == 1) {
        out->family = 6;
        out->bits = 128;
        return true;
    }
    return false;
}

static bool cidr_contains(const struct keel_cidr *net, const struct keel_cidr *ip)
{
    if (net->family != ip->family)
        return false;
    unsigned full = net->bits / 8u, rest = net->bits % 8u;
    if (memcmp(net->addr, ip->addr, full) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xffu << (8u - rest));
    return (net->addr[full] & mask) == (ip->addr[full] & mask);
}

static bool l4_eval(const struct keel_l4_cond *c, const struct keel_cidr *dst, bool have_dst, const char *sni,
                    const struct keel_route_source *src)
{
    if (c->n_sni_hosts) {
        bool ok = false;
        for (size_t i = 0; sni && i < c->n_sni_hosts && !ok; i++)
            ok = keel_host_matches(sni, c->sni_hosts[i]);
        if (!ok)
            return false;
    }
    if (c->n_dst_subnets) {
        bool ok = false;
        for (size_t i = 0; have_dst && i < c->n_dst_subnets && !ok; i++)
            ok = cidr_contains(&c->dst_subnets[i], dst);
        if (!ok)
            return false;
    }
    return source_ok(src, c->source_labels, c->n_source_labels, c->source_ns);
}

static const struct keel_l4_route *entry_match(const struct keel_tcp_entry *e, const struct keel_cidr *dst,
                                               bool have_dst, const char *sni, const struct keel_route_source *src)
{
    for (size_t i = 0; i < e->n_routes; i++) {
        const struct keel_l4_route *r = &e->routes[i];
        if (!r->n_conds)
            return r;
        for (size_t k = 0; k < r->n_conds; k++)
            if (l4_eval(&r->conds[k], dst, have_dst, sni, src))
                return r;
    }
    return NULL;
}

const struct keel_l4_route *keel_tcp_route_match(const struct keel_tcp_table *t, const char *dst_ip, const char *sni,
                                                 const struct keel_route_source *source)
{
    if (!t)
        return NULL;
    struct keel_cidr dst;
    bool have_dst = keel_routes_parse_ip(dst_ip, &dst);
    struct keel_route_source self = {t->self_ns, t->self_labels, t->n_self_labels};
    if (!source)
        source = &self;
    if (dst_ip)
        for (size_t i = 0; i < t->n_entries; i++)
            for (size_t k = 0; k < t->entries[i].n_addresses; k++)
                if (strcmp(t->entries[i].addresses[k], dst_ip) == 0)
                    return entry_match(&t->entries[i], &dst, have_dst, sni, source);
    for (size_t i = 0; i < t->n_entries; i++)
        if (!t->entries[i].n_addresses) {
            const struct keel_l4_route *r = entry_match(&t->entries[i], &dst, have_dst, sni, source);
            if (r || !sni)
                return r;
        }
    return NULL;
}
