/*
 * rules.c - compile one VirtualService's rules into routes (see rules.h).
 */
#include "mesh/rules.h"

#include "base/arena.h"
#include "base/err.h"
#include "base/str.h"
#include "config/host.h"
#include "config/resource.h"
#include "config/selector.h"
#include "config/store.h"
#include "mesh/clusters.h"
#include "mesh/regex.h"
#include "mesh/snapshot.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define PER_MILLION 1000000u

/* ---- compile: shared helpers ------------------------------------------------------ */

/* Field paths for diagnostics ("spec.http[0].match[1].uri"). A path longer than its buffer is cut short,
 * which only shortens a message; vsnprintf keeps gcc's -Wformat-truncation from flagging every call. */
__attribute__((format(printf, 3, 4))) static void subpath(char *dst, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, cap, fmt, ap);
    va_end(ap);
}

static const char *dup(struct keel_snapshot_build *b, const char *s)
{
    return keel_snapshot_strdup(b, s);
}

static uint32_t per_million(double pct)
{
    if (pct <= 0)
        return 0;
    if (pct >= 100)
        return PER_MILLION;
    return (uint32_t)(pct * 10000.0);
}

/* Istio resolveGatewayName: "mesh", "ns/name" ("." = the VS namespace),
 * legacy "name.ns[.svc...]", or a bare name in the VS namespace. */
const char *keel_rules_gateway_name(const char *g, const char *vs_ns, char *buf, size_t n)
{
    if (!g || strcmp(g, "mesh") == 0)
        return "mesh";
    const char *slash = strchr(g, '/');
    if (slash) {
        if (slash == g + 1 && g[0] == '.')
            snprintf(buf, n, "%s/%s", vs_ns, slash + 1);
        else
            snprintf(buf, n, "%s", g);
    } else if (strchr(g, '.')) {
        const char *dot = strchr(g, '.');
        const char *ns = dot + 1, *end = strchr(ns, '.');
        snprintf(buf, n, "%.*s/%.*s", (int)(end ? end - ns : (ptrdiff_t)strlen(ns)), ns, (int)(dot - g), g);
    } else {
        snprintf(buf, n, "%s/%s", vs_ns, g);
    }
    return buf;
}

/* The gateways a match block names apply here? ctx_name is "mesh" or "ns/gw". */
static bool names_gateway(const char *const *gws, size_t n, const char *vs_ns, const char *ctx_name)
{
    for (size_t i = 0; i < n; i++) {
        char buf[320];
        if (strcmp(keel_rules_gateway_name(gws[i], vs_ns, buf, sizeof(buf)), ctx_name) == 0)
            return true;
    }
    return false;
}

/* Destination -> cluster name (istio route.go GetDestinationCluster). */
static void resolve_dest(const struct keel_rules_ctx *x, const struct keel_resource *res, const char *path,
                         const struct keel_destination *d, const char **name, const struct keel_cluster **cluster)
{
    struct keel_snapshot_build *b = x->b;
    const char *host =
        keel_arena_strdup_lower(b->arena, keel_host_fqdn(b->arena, d->host ? d->host : "", res->ns, b->domain));
    const struct keel_service *svc = keel_clusters_service(x->cs, host);
    uint32_t port = x->port;
    bool explicit_port = d->port && d->port->number > 0;
    if (explicit_port)
        port = (uint32_t)d->port->number;
    else if (svc && svc->n_ports == 1)
        port = svc->ports[0].number;
    const char *subset = keel_cstr_empty(d->subset) ? "" : d->subset;
    *name = keel_arena_printf(b->arena, "outbound|%u|%s|%s", port, subset, host);
    *cluster = keel_clusters_find(x->cs, *name);
    if (*cluster)
        return;
    struct keel_loc at = keel_obj_loc(&d->_o, *subset ? "subset" : "host");
    if (!svc)
        keel_snapshot_warn_at(b, res, at, path, "referenced host not found: \"%s\"; requests routed there get 503 (NC)",
                              host);
    else if (!keel_clusters_service_port(svc, port))
        keel_snapshot_warn_at(b, res, at, path,
                              "port %u is not a port of service \"%s\"%s; requests routed there get 503 (NC)", port,
                              host, explicit_port ? "" : " (set destination.port: the service has several ports)");
    else
        keel_snapshot_warn_at(b, res, at, path,
                              "referenced host+subset in destinationrule not found: \"%s+%s\"; requests routed there "
                              "get 503 (NC)",
                              host, subset);
}

/* ---- compile: conditions ----------------------------------------------------------- */

static bool compile_sm(const struct keel_rules_ctx *x, const struct keel_resource *res, const char *path,
                       const struct keel_string_match *in, bool presence_ok, struct keel_str_matcher *out)
{
    memset(out, 0, sizeof(*out));
    if (!in || (!in->exact && !in->prefix && !in->regex)) {
        out->kind = KEEL_SM_PRESENT;
        return true;
    }
    if (in->exact) {
        out->kind = KEEL_SM_EXACT;
        out->value = dup(x->b, in->exact);
    } else if (in->prefix) {
        out->kind = KEEL_SM_PREFIX;
        out->value = dup(x->b, in->prefix);
    } else if (presence_ok && strcmp(in->regex, "*") == 0) {
        out->kind = KEEL_SM_PRESENT; /* Istio: regex "*" means "present" (istio/istio#20629) */
        return true;
    } else {
        char err[160];
        out->kind = KEEL_SM_REGEX;
        out->value = dup(x->b, in->regex);
        out->re = keel_regex_compile(x->b->arena, &x->b->regexes, in->regex, true, err, sizeof(err));
        if (!out->re) {
            keel_snapshot_warn_at(x->b, res, keel_obj_loc(&in->_o, "regex"), path,
                                  "regex \"%s\" does not compile (%s): this match is not used", in->regex, err);
            return false;
        }
    }
    out->len = strlen(out->value);
    return true;
}

static int cmp_header_matcher(const void *a, const void *b)
{
    return strcmp(((const struct keel_header_matcher *)a)->name, ((const struct keel_header_matcher *)b)->name);
}

static bool add_header_matcher(const struct keel_rules_ctx *x, const struct keel_resource *res, const char *path,
                               struct keel_arena_vec *v, const char *name, const struct keel_string_match *sm,
                               bool invert)
{
    struct keel_header_matcher *m = keel_arena_vec_push(x->b->arena, v, sizeof(*m));
    memset(m, 0, sizeof(*m));
    m->name = keel_arena_strdup_lower(x->b->arena, name);
    m->name_len = strlen(m->name);
    m->invert = invert;
    if (!compile_sm(x, res, path, sm, true, &m->m))
        return false;
    m->treat_missing_as_empty = invert && m->m.kind != KEEL_SM_PRESENT;
    return true;
}

/* One match block; false = the block cannot be used (a warning says why). */
static bool compile_cond(const struct keel_rules_ctx *x, const struct keel_resource *res, const char *path,
                         const struct keel_http_match *m, struct keel_route_cond *c)
{
    struct keel_snapshot_build *b = x->b;
    memset(c, 0, sizeof(*c));
    c->uri.kind = KEEL_SM_PREFIX;
    c->uri.value = "/";
    c->uri.len = 1;
    if (!m)
        return true;
    char p[KEEL_PATH_MAX];
    if (m->uri && (m->uri->exact || m->uri->prefix || m->uri->regex)) {
        subpath(p, sizeof(p), "%s.uri", path);
        if (!compile_sm(x, res, p, m->uri, false, &c->uri))
            return false;
        c->uri.ignore_case = m->ignore_uri_case && c->uri.kind != KEEL_SM_REGEX;
    }
    struct keel_arena_vec hv = {0};
    for (size_t i = 0; i < m->n_headers; i++) {
        subpath(p, sizeof(p), "%s.headers.%s", path, m->headers[i].key);
        if (keel_cstr_has_prefix(m->headers[i].key, "@request.auth.claims")) {
            keel_snapshot_warn(b, res, p, "JWT claim based routing is not supported yet: this match is not used");
            return false;
        }
        if (!add_header_matcher(x, res, p, &hv, m->headers[i].key, &m->headers[i].value, false))
            return false;
    }
    for (size_t i = 0; i < m->n_without_headers; i++) {
        subpath(p, sizeof(p), "%s.withoutHeaders.%s", path, m->without_headers[i].key);
        if (keel_cstr_has_prefix(m->without_headers[i].key, "@request.auth.claims")) {
            keel_snapshot_warn(b, res, p, "JWT claim based routing is not supported yet: this match is not used");
            return false;
        }
        if (!add_header_matcher(x, res, p, &hv, m->without_headers[i].key, &m->without_headers[i].value, true))
            return false;
    }
    if (hv.n)
        qsort(hv.v, hv.n, sizeof(struct keel_header_matcher), cmp_header_matcher);
    static const struct {
        const char *field, *header;
        size_t off;
    } pseudo[] = {
        {"method", ":method", offsetof(struct keel_http_match, method)},
        {"authority", ":authority", offsetof(struct keel_http_match, authority)},
        {"scheme", ":scheme", offsetof(struct keel_http_match, scheme)},
    };
    for (size_t i = 0; i < sizeof(pseudo) / sizeof(pseudo[0]); i++) {
        const struct keel_string_match *sm = *(struct keel_string_match *const *)((const char *)m + pseudo[i].off);
        if (!sm)
            continue;
        subpath(p, sizeof(p), "%s.%s", path, pseudo[i].field);
        if (!add_header_matcher(x, res, p, &hv, pseudo[i].header, sm, false))
            return false;
    }
    c->headers = hv.v;
    c->n_headers = hv.n;
    if (m->n_query_params) {
        struct keel_query_matcher *q = keel_arena_xalloc(b->arena, m->n_query_params * sizeof(*q));
        for (size_t i = 0; i < m->n_query_params; i++) {
            subpath(p, sizeof(p), "%s.queryParams.%s", path, m->query_params[i].key);
            q[i].name = dup(b, m->query_params[i].key);
            q[i].name_len = strlen(q[i].name);
            if (!compile_sm(x, res, p, &m->query_params[i].value, true, &q[i].m))
                return false;
        }
        c->query = q;
        c->n_query = m->n_query_params;
    }
    c->port = m->port > 0 && m->port <= 65535 ? (uint32_t)m->port : 0;
    if (!x->router) { /* sourceLabels / sourceNamespace: sidecars only */
        c->n_source_labels = m->n_source_labels;
        if (m->n_source_labels) {
            struct keel_kv_str *kv = keel_arena_xalloc(b->arena, m->n_source_labels * sizeof(*kv));
            for (size_t i = 0; i < m->n_source_labels; i++)
                kv[i] = (struct keel_kv_str){dup(b, m->source_labels[i].key), dup(b, m->source_labels[i].value)};
            c->source_labels = kv;
        }
        c->source_ns = keel_cstr_empty(m->source_namespace) ? NULL : dup(b, m->source_namespace);
    }
    c->name = keel_cstr_empty(m->name) ? NULL : dup(b, m->name);
    return true;
}

/* translateRoute's filters: match port, gateways, sourceLabels/sourceNamespace. */
static bool block_applies(const struct keel_rules_ctx *x, const struct keel_resource *res,
                          const struct keel_http_match *m)
{
    if (!m)
        return true;
    if (m->port > 0 && (uint32_t)m->port != x->port)
        return false;
    if (m->n_gateways)
        return names_gateway((const char *const *)m->gateways, m->n_gateways, res->ns, x->router ? x->gw_name : "mesh");
    const struct keel_proxy_identity *id = x->b->id;
    if (!keel_labels_match(m->source_labels, m->n_source_labels, id->labels, id->n_labels))
        return false;
    return keel_cstr_empty(m->source_namespace) || strcmp(m->source_namespace, x->b->ns) == 0;
}

static bool is_catch_all(const struct keel_route_cond *c)
{
    bool all = (c->uri.kind == KEEL_SM_PREFIX && c->uri.len == 1 && c->uri.value[0] == '/') ||
               (c->uri.kind == KEEL_SM_REGEX && strcmp(c->uri.value, ".*") == 0);
    return all && c->n_headers == 0 && c->n_query == 0;
}

/* ---- compile: actions ------------------------------------------------------------ */

static bool internal_header(const char *k)
{
    return k[0] == ':' || strcasecmp(k, "host") == 0;
}

static int cmp_op(const void *a, const void *b)
{
    return strcmp(((const struct keel_header_op *)a)->name, ((const struct keel_header_op *)b)->name);
}

static const struct keel_header_op *ops(struct keel_snapshot_build *b, const struct keel_kv_str *kv, size_t n,
                                        size_t *out_n, const char **authority)
{
    struct keel_header_op *o = keel_arena_xalloc(b->arena, (n + 1) * sizeof(*o));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (authority && (strcasecmp(kv[i].key, ":authority") == 0 || strcasecmp(kv[i].key, "host") == 0))
            *authority = dup(b, kv[i].value);
        if (internal_header(kv[i].key))
            continue;
        o[k].name = dup(b, kv[i].key);
        o[k++].value = dup(b, kv[i].value);
    }
    qsort(o, k, sizeof(*o), cmp_op); /* Istio sorts header options by name */
    *out_n = k;
    return o;
}

static void compile_ops(struct keel_snapshot_build *b, const struct keel_header_ops *in,
                        struct keel_route_header_ops *out, const char **authority)
{
    memset(out, 0, sizeof(*out));
    if (!in)
        return;
    const char *set_auth = NULL, *add_auth = NULL;
    out->set = ops(b, in->set, in->n_set, &out->n_set, authority ? &set_auth : NULL);
    out->add = ops(b, in->add, in->n_add, &out->n_add, authority ? &add_auth : NULL);
    const char **rm = keel_arena_xalloc(b->arena, (in->n_remove + 1) * sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < in->n_remove; i++)
        if (!internal_header(in->remove[i]))
            rm[k++] = dup(b, in->remove[i]);
    out->remove = rm;
    out->n_remove = k;
    if (authority) /* `set` wins over `add` */
        *authority = set_auth ? set_auth : add_auth;
}

static const char *compile_headers(struct keel_snapshot_build *b, const struct keel_headers *in,
                                   struct keel_route_headers *out)
{
    const char *authority = NULL;
    memset(out, 0, sizeof(*out));
    if (!in)
        return NULL;
    compile_ops(b, in->request, &out->request, &authority);
    compile_ops(b, in->response, &out->response, NULL);
    return authority;
}

static bool known_status(long c)
{
    static const short known[] = {100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301,
                                  302, 303, 304, 305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409,
                                  410, 411, 412, 413, 414, 415, 416, 417, 418, 421, 422, 423, 424, 425, 426, 428,
                                  429, 431, 451, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (known[i] == c)
            return true;
    return false;
}

static const struct {
    const char *name;
    uint32_t bit;
} retry_bits[] = {
    {"5xx", KEEL_RETRY_5XX},
    {"gateway-error", KEEL_RETRY_GATEWAY_ERROR},
    {"reset", KEEL_RETRY_RESET},
    {"reset-before-request", KEEL_RETRY_RESET_BEFORE_REQUEST},
    {"connect-failure", KEEL_RETRY_CONNECT_FAILURE},
    {"retriable-4xx", KEEL_RETRY_RETRIABLE_4XX},
    {"refused-stream", KEEL_RETRY_REFUSED_STREAM},
    {"retriable-status-codes", KEEL_RETRY_RETRIABLE_STATUS_CODES},
    {"retriable-headers", KEEL_RETRY_RETRIABLE_HEADERS},
    {"envoy-ratelimited", KEEL_RETRY_ENVOY_RATELIMITED},
    {"http3-post-connect-failure", KEEL_RETRY_HTTP3_POST_CONNECT_FAILURE},
    {"cancelled", KEEL_RETRY_CANCELLED},
    {"deadline-exceeded", KEEL_RETRY_DEADLINE_EXCEEDED},
    {"internal", KEEL_RETRY_INTERNAL},
    {"resource-exhausted", KEEL_RETRY_RESOURCE_EXHAUSTED},
    {"unavailable", KEEL_RETRY_UNAVAILABLE},
};

static uint32_t retry_bit(const char *t, size_t n)
{
    for (size_t i = 0; i < sizeof(retry_bits) / sizeof(retry_bits[0]); i++)
        if (strlen(retry_bits[i].name) == n && strncmp(retry_bits[i].name, t, n) == 0)
            return retry_bits[i].bit;
    return 0;
}

const char *keel_rules_retry_on_name(uint32_t bit)
{
    for (size_t i = 0; i < sizeof(retry_bits) / sizeof(retry_bits[0]); i++)
        if (retry_bits[i].bit == bit)
            return retry_bits[i].name;
    return NULL;
}

/* The retry fields shared by VirtualService retries and MeshConfig defaultHttpRetryPolicy. */
struct retry_in {
    const struct keel_obj *o;
    int64_t attempts, backoff, per_try_timeout;
    bool ignore_previous_hosts, remote_localities;
    const char *retry_on;
};

/* MeshConfig defaultHttpRetryPolicy as a retry_in (filled into *ri), or NULL when the mesh sets none. */
static const struct retry_in *mesh_default_retry(const struct keel_snapshot_build *b, struct retry_in *ri)
{
    if (!b->mesh || !b->mesh->default_http_retry_policy)
        return NULL;
    const struct keel_mesh_default_http_retry_policy *r = b->mesh->default_http_retry_policy;
    *ri = (struct retry_in){&r->_o,
                            r->attempts,
                            r->backoff,
                            r->per_try_timeout,
                            r->retry_ignore_previous_hosts,
                            r->retry_remote_localities,
                            r->retry_on};
    return ri;
}

static void compile_retry(struct keel_snapshot_build *b, const struct keel_resource *res, const char *path,
                          const struct retry_in *in, bool consistent_hash, struct keel_retry_policy *out)
{
    memset(out, 0, sizeof(*out));
    out->enabled = true;
    out->num_retries = 2;
    out->retry_on = KEEL_RETRY_DEFAULT_ON;
    out->previous_hosts = !consistent_hash; /* no previous_hosts predicate with consistent hashing */
    out->host_selection_max_attempts = 5;
    if (!in)
        return;
    if (in->attempts <= 0) {
        out->enabled = false; /* explicitly disabled */
        out->num_retries = 0;
        return;
    }
    out->num_retries = in->attempts > UINT32_MAX ? UINT32_MAX : (uint32_t)in->attempts;
    if (!keel_cstr_empty(in->retry_on)) {
        uint32_t on = 0;
        uint16_t codes[64];
        size_t nc = 0;
        for (const char *p = in->retry_on; *p;) {
            while (*p == ',' || *p == ' ' || *p == '\t')
                p++;
            const char *t = p;
            while (*p && *p != ',')
                p++;
            size_t n = (size_t)(p - t);
            while (n && (t[n - 1] == ' ' || t[n - 1] == '\t'))
                n--;
            if (!n)
                continue;
            char *end;
            long v = strtol(t, &end, 10);
            if (end == t + n && known_status(v)) {
                if (nc < sizeof(codes) / sizeof(codes[0]))
                    codes[nc++] = (uint16_t)v;
            } else if (retry_bit(t, n)) {
                on |= retry_bit(t, n);
            } else {
                keel_snapshot_warn(b, res, path, "\"%.*s\" is not a valid retryOn policy: ignored", (int)n, t);
            }
        }
        if (nc) {
            on |= KEEL_RETRY_RETRIABLE_STATUS_CODES;
            uint16_t *c = keel_arena_xalloc(b->arena, nc * sizeof(*c));
            memcpy(c, codes, nc * sizeof(*c));
            out->status_codes = c;
            out->n_status_codes = nc;
        }
        out->retry_on = on;
    }
    out->per_try_timeout = in->per_try_timeout;
    out->backoff = in->backoff;
    if (keel_obj_has(in->o, "retryIgnorePreviousHosts"))
        out->previous_hosts = in->ignore_previous_hosts;
    out->previous_priorities = in->remote_localities;
}

static int grpc_code(const char *name)
{
    static const char *const codes[] = {
        "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
        "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
        "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
        "DATA_LOSS", "UNAUTHENTICATED"};
    for (size_t i = 0; name && i < sizeof(codes) / sizeof(codes[0]); i++)
        if (strcmp(codes[i], name) == 0)
            return (int)i;
    return KEEL_ROUTES_GRPC_NONE;
}

static const struct keel_fault *compile_fault(struct keel_snapshot_build *b, const struct keel_resource *res,
                                              const char *path, const struct keel_http_fault *in)
{
    if (!in)
        return NULL;
    struct keel_fault *f = keel_arena_xalloc(b->arena, sizeof(*f));
    f->abort_grpc_status = KEEL_ROUTES_GRPC_NONE;
    if (in->delay) {
        if (keel_obj_has(&in->delay->_o, "fixedDelay")) {
            f->delay = true;
            f->delay_ns = in->delay->fixed_delay;
            f->delay_per_million = in->delay->percentage ? per_million(in->delay->percentage->value)
                                                         : per_million((double)in->delay->percent);
        } else {
            keel_snapshot_warn(b, res, path, "exponentialDelay is not supported: no delay is injected");
        }
    }
    if (in->abort) {
        f->abort_per_million = in->abort->percentage ? per_million(in->abort->percentage->value) : 0;
        if (keel_obj_has(&in->abort->_o, "httpStatus")) {
            f->abort = true;
            f->abort_http_status = (uint32_t)in->abort->http_status;
        } else if (grpc_code(in->abort->grpc_status) != KEEL_ROUTES_GRPC_NONE) {
            f->abort = true;
            f->abort_grpc_status = grpc_code(in->abort->grpc_status);
        } else {
            keel_snapshot_warn(b, res, path, "only HTTP and gRPC abort faults are supported: no abort is injected");
        }
    }
    return f->delay || f->abort ? f : NULL;
}

static const char *join(struct keel_snapshot_build *b, const char *const *v, size_t n)
{
    if (!n)
        return NULL;
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += strlen(v[i]) + 1;
    char *o = keel_arena_xalloc(b->arena, len + 1), *w = o;
    for (size_t i = 0; i < n; i++)
        w += sprintf(w, "%s%s", i ? "," : "", v[i]);
    return o;
}

static const struct keel_cors *compile_cors(const struct keel_rules_ctx *x, const struct keel_resource *res,
                                            const char *path, const struct keel_cors_policy *in)
{
    if (!in)
        return NULL;
    struct keel_snapshot_build *b = x->b;
    struct keel_cors *c = keel_arena_xalloc(b->arena, sizeof(*c));
    size_t n = in->n_allow_origins ? in->n_allow_origins : in->n_allow_origin;
    struct keel_str_matcher *o = keel_arena_xalloc(b->arena, (n + 1) * sizeof(*o));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (in->n_allow_origins) {
            char p[KEEL_PATH_MAX];
            subpath(p, sizeof(p), "%s.corsPolicy.allowOrigins[%zu]", path, i);
            if (compile_sm(x, res, p, &in->allow_origins[i], false, &o[k]))
                k++;
        } else {
            o[k].kind = KEEL_SM_EXACT;
            o[k].value = dup(b, in->allow_origin[i]);
            o[k++].len = strlen(in->allow_origin[i]);
        }
    }
    c->origins = o;
    c->n_origins = k;
    c->allow_methods = join(b, (const char *const *)in->allow_methods, in->n_allow_methods);
    c->allow_headers = join(b, (const char *const *)in->allow_headers, in->n_allow_headers);
    c->expose_headers = join(b, (const char *const *)in->expose_headers, in->n_expose_headers);
    if (keel_obj_has(&in->_o, "maxAge"))
        c->max_age = keel_arena_printf(b->arena, "%lld", (long long)(in->max_age / 1000000000LL));
    c->has_allow_credentials = keel_obj_has(&in->_o, "allowCredentials");
    c->allow_credentials = in->allow_credentials;
    c->forward_not_matching_preflights = in->unmatched_preflights != KEEL_CORS_POLICY_UNMATCHED_PREFLIGHTS_IGNORE;
    return c;
}

static size_t b64_decode(const char *in, char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        int v;
        char ch = *p;
        if (ch >= 'A' && ch <= 'Z')
            v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z')
            v = ch - 'a' + 26;
        else if (ch >= '0' && ch <= '9')
            v = ch - '0' + 52;
        else if (ch == '+' || ch == '-')
            v = 62;
        else if (ch == '/' || ch == '_')
            v = 63;
        else
            continue; /* padding, whitespace */
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    return n;
}

static void compile_redirect(const struct keel_rules_ctx *x, const struct keel_resource *res, const char *path,
                             const struct keel_http_redirect *in, struct keel_route_action *a)
{
    struct keel_snapshot_build *b = x->b;
    struct keel_redirect *r = &a->redirect;
    a->kind = KEEL_ROUTE_REDIRECT;
    r->path = keel_cstr_empty(in->uri) ? NULL : dup(b, in->uri);
    r->authority = keel_cstr_empty(in->authority) ? NULL : dup(b, in->authority);
    r->scheme = keel_cstr_empty(in->scheme) ? NULL : dup(b, in->scheme);
    bool port_set = false;
    if (keel_obj_has(&in->_o, "derivePort")) {
        port_set = true;
        if (in->derive_port == KEEL_HTTP_REDIRECT_DERIVE_PORT_FROM_REQUEST_PORT)
            r->port = x->port; /* routes are compiled per listener port */
    } else if (in->port > 0 && in->port <= 65535) {
        port_set = true;
        r->port = (uint32_t)in->port;
    }
    if (port_set) {
        const char *scheme = r->scheme ? r->scheme : (x->tls ? "https" : "http");
        if ((r->port == 80 && strcmp(scheme, "http") == 0) || (r->port == 443 && strcmp(scheme, "https") == 0))
            r->port = 0; /* no explicit :80 / :443 */
    }
    if (!keel_cstr_empty(in->prefix_rewrite))
        keel_snapshot_warn(b, res, path, "redirect.prefixRewrite is not supported yet: the path is kept");
    switch (in->redirect_code) {
    case 0:
    case 301:
        r->code = 301;
        break;
    case 302:
    case 303:
    case 307:
    case 308:
        r->code = (uint16_t)in->redirect_code;
        break;
    default:
        keel_snapshot_warn(b, res, path,
                           "redirect code %lld is not supported (301, 302, 303, 307 and 308 are): the route "
                           "answers 503",
                           (long long)in->redirect_code);
        a->kind = KEEL_ROUTE_DIRECT_RESPONSE;
        a->status = 503;
        break;
    }
}

static void compile_direct(struct keel_snapshot_build *b, const struct keel_direct_response *in,
                           struct keel_route_action *a)
{
    a->kind = KEEL_ROUTE_DIRECT_RESPONSE;
    a->status = in->status > 0 && in->status < 1000 ? (uint16_t)in->status : 503;
    if (!in->body)
        return;
    if (in->body->string) {
        a->body = dup(b, in->body->string);
        a->body_len = strlen(in->body->string);
    } else if (in->body->bytes) {
        char *o = keel_arena_xalloc(b->arena, strlen(in->body->bytes) + 1);
        a->body_len = b64_decode(in->body->bytes, o);
        a->body = o;
    }
}

static void add_mirror(const struct keel_rules_ctx *x, const struct keel_resource *res, const char *path,
                       const struct keel_destination *d, uint32_t pm, struct keel_arena_vec *out)
{
    if (!d || !pm)
        return;
    struct keel_mirror *m = keel_arena_vec_push(x->b->arena, out, sizeof(*m));
    resolve_dest(x, res, path, d, &m->cluster_name, &m->cluster);
    m->per_million = pm;
}

static void compile_forward(const struct keel_rules_ctx *x, const struct keel_resource *res, const char *path,
                            const struct keel_http_route *h, const char *hdr_authority, struct keel_route_action *a)
{
    struct keel_snapshot_build *b = x->b;
    char p[KEEL_PATH_MAX];
    a->kind = KEEL_ROUTE_FORWARD;
    a->timeout = h->timeout;
    a->host_rewrite = hdr_authority;
    if (h->rewrite) {
        if (h->rewrite->uri_regex_rewrite && !keel_cstr_empty(h->rewrite->uri_regex_rewrite->match)) {
            char err[160];
            a->rewrite_re = keel_regex_compile(b->arena, &b->regexes, h->rewrite->uri_regex_rewrite->match, false, err,
                                               sizeof(err));
            if (a->rewrite_re) {
                a->rewrite = KEEL_REWRITE_REGEX;
                a->rewrite_uri = keel_regex_from_re2_substitution(
                    b->arena, h->rewrite->uri_regex_rewrite->rewrite ? h->rewrite->uri_regex_rewrite->rewrite : "");
            } else {
                subpath(p, sizeof(p), "%s.rewrite.uriRegexRewrite.match", path);
                keel_snapshot_warn(b, res, p, "regex does not compile (%s): the path is not rewritten", err);
            }
        } else if (!keel_cstr_empty(h->rewrite->uri)) {
            a->rewrite = KEEL_REWRITE_PREFIX;
            a->rewrite_uri = dup(b, h->rewrite->uri);
        }
        if (!keel_cstr_empty(h->rewrite->authority))
            a->host_rewrite = dup(b, h->rewrite->authority);
    }
    /* mirrors */
    struct keel_arena_vec mv = {0};
    if (h->mirror) {
        uint32_t pm = PER_MILLION;
        if (h->mirror_percentage)
            pm = per_million(h->mirror_percentage->value);
        else if (keel_obj_has(&h->_o, "mirrorPercent"))
            pm = per_million((double)h->mirror_percent);
        else if (keel_obj_has(&h->_o, "mirror_percent"))
            pm = per_million((double)h->mirror_percent_legacy);
        subpath(p, sizeof(p), "%s.mirror", path);
        add_mirror(x, res, p, h->mirror, pm, &mv);
    }
    for (size_t i = 0; i < h->n_mirrors; i++) {
        const struct keel_http_mirror *m = &h->mirrors[i];
        subpath(p, sizeof(p), "%s.mirrors[%zu].destination", path, i);
        add_mirror(x, res, p, m->destination, m->percentage ? per_million(m->percentage->value) : PER_MILLION, &mv);
    }
    a->mirrors = mv.v;
    a->n_mirrors = mv.n;
    /* destinations */
    struct keel_route_dest *d = keel_arena_xalloc(b->arena, (h->n_route + 1) * sizeof(*d));
    size_t n = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < h->n_route; i++) {
        const struct keel_http_route_destination *rd = &h->route[i];
        if (h->n_route > 1 && rd->weight <= 0)
            continue; /* zero weights are dropped when there are several destinations */
        if (!rd->destination)
            continue;
        subpath(p, sizeof(p), "%s.route[%zu].destination", path, i);
        resolve_dest(x, res, p, rd->destination, &d[n].cluster_name, &d[n].cluster);
        d[n].weight = h->n_route == 1 ? 1 : (uint32_t)(rd->weight > UINT32_MAX ? UINT32_MAX : rd->weight);
        total += d[n].weight;
        d[n].cumulative = total;
        const char *auth = compile_headers(b, rd->headers, &d[n].headers);
        if (auth && (h->n_route > 1 || !a->host_rewrite))
            d[n].host_rewrite = auth;
        n++;
    }
    a->dests = d;
    a->n_dests = n;
    a->total_weight = total;
    /* retries: VS retries, else MeshConfig defaultHttpRetryPolicy, else Istio's default */
    struct retry_in ri;
    const struct retry_in *rip = NULL;
    if (h->retries) {
        const struct keel_http_retry *r = h->retries;
        ri = (struct retry_in){&r->_o,
                               r->attempts,
                               r->backoff,
                               r->per_try_timeout,
                               r->retry_ignore_previous_hosts,
                               r->retry_remote_localities,
                               r->retry_on};
        rip = &ri;
    } else {
        rip = mesh_default_retry(b, &ri);
    }
    bool hash = n == 1 && d[0].cluster && d[0].cluster->lb.hash_key != KEEL_HASH_NONE;
    subpath(p, sizeof(p), "%s.retries.retryOn", path);
    compile_retry(b, res, p, rip, hash, &a->retry);
}

static const struct keel_route_action *compile_action(const struct keel_rules_ctx *x, const struct keel_resource *res,
                                                      const char *path, const struct keel_http_route *h)
{
    struct keel_snapshot_build *b = x->b;
    struct keel_route_action *a = keel_arena_xalloc(b->arena, sizeof(*a));
    const char *authority = compile_headers(b, h->headers, &a->headers);
    if (h->redirect)
        compile_redirect(x, res, path, h->redirect, a);
    else if (h->direct_response)
        compile_direct(b, h->direct_response, a);
    else
        compile_forward(x, res, path, h, authority, a);
    char p[KEEL_PATH_MAX];
    subpath(p, sizeof(p), "%s.fault", path);
    a->fault = compile_fault(b, res, p, h->fault);
    a->cors = compile_cors(x, res, path, h->cors_policy);
    return a;
}

static void list_push(struct keel_snapshot_build *b, struct keel_rules_list *out, const struct keel_route *r)
{
    if (out->n == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 16;
        const struct keel_route **v = keel_arena_xalloc(b->arena, cap * sizeof(*v));
        if (out->n)
            memcpy(v, out->v, out->n * sizeof(*v));
        out->v = v;
        out->cap = cap;
    }
    out->v[out->n++] = r;
}

/* ---- delegate VirtualServices (Istio's mergeVirtualServices) ------------------------ */

/* Istio's stringMatchConflict: a delegate's match must narrow the root's, never widen or contradict it. */
static bool sm_conflict(const struct keel_string_match *root, const struct keel_string_match *leaf)
{
    if (!root || !leaf)
        return false;
    if (root->regex || leaf->regex)
        return true;
    if (root->exact)
        return leaf->prefix || !leaf->exact || strcmp(leaf->exact, root->exact) != 0;
    if (root->prefix) {
        const char *l = leaf->prefix ? leaf->prefix : leaf->exact;
        return !l || !keel_cstr_has_prefix(l, root->prefix);
    }
    return true;
}

static const struct keel_string_match *entry_get(const struct keel_string_match_entry *e, size_t n, const char *k)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(e[i].key, k) == 0)
            return &e[i].value;
    return NULL;
}

/* Istio's hasConflict(root, leaf). */
static bool match_conflict(const struct keel_http_match *r, const struct keel_http_match *l)
{
    if (sm_conflict(r->uri, l->uri) || sm_conflict(r->scheme, l->scheme) || sm_conflict(r->method, l->method) ||
        sm_conflict(r->authority, l->authority))
        return true;
    for (size_t i = 0; i < l->n_headers; i++)
        if (sm_conflict(entry_get(r->headers, r->n_headers, l->headers[i].key), &l->headers[i].value))
            return true;
    for (size_t i = 0; i < l->n_without_headers; i++)
        if (sm_conflict(entry_get(r->without_headers, r->n_without_headers, l->without_headers[i].key),
                        &l->without_headers[i].value))
            return true;
    for (size_t i = 0; i < l->n_query_params; i++)
        if (sm_conflict(entry_get(r->query_params, r->n_query_params, l->query_params[i].key),
                        &l->query_params[i].value))
            return true;
    if (r->ignore_uri_case != l->ignore_uri_case)
        return true;
    if (r->port > 0 && l->port > 0 && r->port != l->port)
        return true;
    if (!keel_cstr_empty(r->source_namespace) &&
        (keel_cstr_empty(l->source_namespace) || strcmp(r->source_namespace, l->source_namespace) != 0))
        return true;
    for (size_t i = 0; i < l->n_source_labels; i++)
        for (size_t j = 0; j < r->n_source_labels; j++)
            if (strcmp(l->source_labels[i].key, r->source_labels[j].key) == 0 &&
                strcmp(l->source_labels[i].value, r->source_labels[j].value) != 0)
                return true;
    for (size_t i = 0; r->n_gateways && i < l->n_gateways; i++) { /* the root's gateways must include the leaf's */
        bool found = false;
        for (size_t j = 0; j < r->n_gateways && !found; j++)
            found = strcmp(l->gateways[i], r->gateways[j]) == 0;
        if (!found)
            return true;
    }
    return false;
}

/* Entries of the leaf, then the root's for keys the leaf does not have. */
static struct keel_string_match_entry *merge_entries(struct keel_snapshot_build *b,
                                                     const struct keel_string_match_entry *l, size_t nl,
                                                     const struct keel_string_match_entry *r, size_t nr, size_t *n)
{
    *n = 0;
    if (!nl && !nr)
        return NULL;
    struct keel_string_match_entry *out = keel_arena_xalloc(b->arena, (nl + nr) * sizeof(*out));
    for (size_t i = 0; i < nl; i++)
        out[(*n)++] = l[i];
    for (size_t i = 0; i < nr; i++)
        if (!entry_get(l, nl, r[i].key))
            out[(*n)++] = r[i];
    return out;
}

/* Istio's mergeHTTPMatchRequest: the leaf's conditions, the root's where the leaf has none. */
static struct keel_http_match *merge_match(struct keel_snapshot_build *b, const struct keel_http_match *r,
                                           const struct keel_http_match *l)
{
    struct keel_http_match *m = keel_arena_xalloc(b->arena, sizeof(*m));
    *m = *l;
    if (keel_cstr_empty(l->name))
        m->name = r->name;
    else if (!keel_cstr_empty(r->name))
        m->name = keel_arena_printf(b->arena, "%s-%s", r->name, l->name);
    if (!m->uri)
        m->uri = r->uri;
    if (!m->scheme)
        m->scheme = r->scheme;
    if (!m->method)
        m->method = r->method;
    if (!m->authority)
        m->authority = r->authority;
    m->headers = merge_entries(b, l->headers, l->n_headers, r->headers, r->n_headers, &m->n_headers);
    m->without_headers = merge_entries(b, l->without_headers, l->n_without_headers, r->without_headers,
                                       r->n_without_headers, &m->n_without_headers);
    m->query_params =
        merge_entries(b, l->query_params, l->n_query_params, r->query_params, r->n_query_params, &m->n_query_params);
    if (m->port <= 0)
        m->port = r->port;
    if (keel_cstr_empty(m->source_namespace))
        m->source_namespace = r->source_namespace;
    if (!m->n_source_labels) {
        m->source_labels = r->source_labels;
        m->n_source_labels = r->n_source_labels;
    }
    if (!m->n_gateways) {
        m->gateways = r->gateways;
        m->n_gateways = r->n_gateways;
    }
    return m;
}

static bool exported_to(const struct keel_virtual_service *vs, const char *vs_ns, const char *ns)
{
    if (!vs->n_export_to)
        return true;
    for (size_t i = 0; i < vs->n_export_to; i++) {
        const char *e = vs->export_to[i];
        if (strcmp(e, "*") == 0 || strcmp(e, ns) == 0 || (strcmp(e, ".") == 0 && strcmp(vs_ns, ns) == 0))
            return true;
    }
    return false;
}

static void add_rule_routes(const struct keel_rules_ctx *x, const struct keel_resource *res, const char *path,
                            const struct keel_http_route *h, const struct keel_http_match *const *ms, size_t nm,
                            const char *const *paths, struct keel_rules_list *out);

/* A root rule with `delegate`: the delegate VirtualService's rules take its place, each match merged with the
 * root's (a delegate match that contradicts every root match is dropped, as Istio does). One level only. */
static void compile_delegate(const struct keel_rules_ctx *x, const struct keel_resource *root, const char *path,
                             const struct keel_http_route *h, struct keel_rules_list *out)
{
    struct keel_snapshot_build *b = x->b;
    const char *ns = keel_cstr_empty(h->delegate->namespace) ? root->ns : h->delegate->namespace;
    const struct keel_resource *d = keel_cstr_empty(h->delegate->name)
                                        ? NULL
                                        : keel_store_get(b->store, KEEL_KIND_VIRTUAL_SERVICE, ns, h->delegate->name);
    const struct keel_virtual_service *dvs = d ? d->spec : NULL;
    if (!dvs || dvs->n_hosts || !exported_to(dvs, d->ns, root->ns)) {
        keel_snapshot_warn_at(b, root, keel_obj_loc(&h->_o, "delegate"), path,
                              !dvs           ? "delegate VirtualService %s/%s not found: this rule is ignored"
                              : dvs->n_hosts ? "delegate VirtualService %s/%s has hosts (a delegate must not): this "
                                               "rule is ignored"
                                             : "delegate VirtualService %s/%s is not exported to this namespace: this "
                                               "rule is ignored",
                              ns, h->delegate->name ? h->delegate->name : "");
        return;
    }
    char dpath[KEEL_PATH_MAX], mpath[KEEL_PATH_MAX + 32];
    for (size_t i = 0; i < dvs->n_http; i++) {
        const struct keel_http_route *dh = &dvs->http[i];
        subpath(dpath, sizeof(dpath), "spec.http[%zu]", i);
        if (dh->delegate) {
            keel_snapshot_warn_at(b, d, keel_obj_loc(&dh->_o, "delegate"), dpath,
                                  "a delegate VirtualService cannot delegate again: this rule is ignored");
            continue;
        }
        size_t nr = h->n_match ? h->n_match : 1, nl = dh->n_match ? dh->n_match : 1;
        const struct keel_http_match **ms = keel_arena_xalloc(b->arena, nr * nl * sizeof(*ms));
        const char **paths = keel_arena_xalloc(b->arena, nr * nl * sizeof(*paths));
        size_t n = 0;
        for (size_t r = 0; r < nr; r++) {
            const struct keel_http_match *rm = h->n_match ? &h->match[r] : NULL;
            for (size_t l = 0; l < nl; l++) {
                const struct keel_http_match *lm = dh->n_match ? &dh->match[l] : NULL;
                if (rm && lm && match_conflict(rm, lm))
                    continue;
                ms[n] = rm && lm ? merge_match(b, rm, lm) : rm ? rm : lm;
                subpath(mpath, sizeof(mpath), "%s.match[%zu]", dpath, l);
                paths[n++] = dup(b, mpath);
            }
        }
        if (!n) {
            keel_snapshot_warn_at(b, d, keel_obj_loc(&dh->_o, "match"), dpath,
                                  "every match of this rule conflicts with the root VirtualService's match at %s: "
                                  "the rule is ignored",
                                  path);
            continue;
        }
        add_rule_routes(x, d, dpath, dh, ms, n, paths, out);
    }
}

/* The routes of rule h for the matches ms (a delegate's merged matches; paths[i] names each for diagnostics). */
static void add_rule_routes(const struct keel_rules_ctx *x, const struct keel_resource *res, const char *path,
                            const struct keel_http_route *h, const struct keel_http_match *const *ms, size_t nm,
                            const char *const *paths, struct keel_rules_list *out)
{
    struct keel_snapshot_build *b = x->b;
    char label[300];
    keel_resource_label(res, label, sizeof(label));
    const struct keel_route_action *act = NULL;
    for (size_t j = 0; j < nm; j++) {
        const struct keel_http_match *m = ms[j];
        if (!block_applies(x, res, m))
            continue;
        struct keel_route *r = keel_arena_xalloc(b->arena, sizeof(*r));
        if (!compile_cond(x, res, paths[j], m, &r->cond))
            continue;
        if (!act)
            act = compile_action(x, res, path, h);
        r->action = act;
        const char *rn = keel_cstr_empty(h->name) ? "" : h->name;
        r->name = m && !keel_cstr_empty(m->name) ? keel_arena_printf(b->arena, "%s.%s", rn, m->name) : dup(b, rn);
        r->origin = keel_arena_printf(b->arena, "%s %s", label, paths[j]);
        r->catch_all = is_catch_all(&r->cond);
        list_push(b, out, r);
    }
}

/* ---- compile: one VirtualService ------------------------------------------------- */

size_t keel_rules_compile_http(const struct keel_rules_ctx *x, const struct keel_resource *res,
                               struct keel_rules_list *out)
{
    struct keel_snapshot_build *b = x->b;
    const struct keel_virtual_service *vs = res->spec;
    size_t before = out->n;
    char path[KEEL_PATH_MAX], p[KEEL_PATH_MAX + 64], label[300];
    keel_resource_label(res, label, sizeof(label));
    size_t catchall_rule = SIZE_MAX;
    for (size_t i = 0; vs && i < vs->n_http && catchall_rule == SIZE_MAX; i++) {
        const struct keel_http_route *h = &vs->http[i];
        subpath(path, sizeof(path), "spec.http[%zu]", i);
        if (h->delegate) {
            compile_delegate(x, res, path, h, out);
            continue;
        }
        const struct keel_route_action *act = NULL;
        size_t nm = h->n_match ? h->n_match : 1;
        for (size_t j = 0; j < nm; j++) {
            const struct keel_http_match *m = h->n_match ? &h->match[j] : NULL;
            if (!block_applies(x, res, m))
                continue;
            struct keel_route *r = keel_arena_xalloc(b->arena, sizeof(*r));
            subpath(p, sizeof(p), "%s.match[%zu]", path, j);
            if (!compile_cond(x, res, p, m, &r->cond))
                continue;
            if (!act)
                act = compile_action(x, res, path, h);
            r->action = act;
            const char *rn = keel_cstr_empty(h->name) ? "" : h->name;
            r->name = m && !keel_cstr_empty(m->name) ? keel_arena_printf(b->arena, "%s.%s", rn, m->name) : dup(b, rn);
            r->origin = h->n_match ? keel_arena_printf(b->arena, "%s %s", label, p)
                                   : keel_arena_printf(b->arena, "%s %s", label, path);
            r->catch_all = is_catch_all(&r->cond);
            list_push(b, out, r);
            if (r->catch_all) {
                catchall_rule = i; /* routes are matched in order: nothing after this one can match */
                if (j + 1 < nm) {
                    subpath(p, sizeof(p), "%s.match[%zu]", path, j + 1);
                    keel_snapshot_warn(b, res, p,
                                       "match not used: an earlier match of this rule matches every "
                                       "request");
                }
                break;
            }
        }
    }
    for (size_t i = catchall_rule + 1; catchall_rule != SIZE_MAX && i < vs->n_http; i++) {
        /* a rule none of whose blocks applies to this proxy (another gateway or port: the guide's egress
         * VirtualService with gateways [mesh, egress]) would not be used here anyway: nothing to report */
        const struct keel_http_route *h = &vs->http[i];
        bool applies = !h->n_match;
        for (size_t j = 0; j < h->n_match && !applies; j++)
            applies = block_applies(x, res, &h->match[j]);
        if (!applies)
            continue;
        subpath(path, sizeof(path), "spec.http[%zu]", i);
        keel_snapshot_warn_at(b, res, keel_obj_item_loc(&vs->_o, "http", i), path,
                              "virtualService rule not used: rule spec.http[%zu] matches every request", catchall_rule);
    }
    return out->n - before;
}

/* ---- compile: TCP and TLS rules -------------------------------------------------- */

static bool l4_applies(const struct keel_rules_ctx *x, const struct keel_resource *res, int64_t port,
                       const char *const *gws, size_t n_gws, const struct keel_kv_str *sl, size_t n_sl, const char *sns)
{
    if (port > 0 && (uint32_t)port != x->port)
        return false;
    if (n_gws)
        return names_gateway(gws, n_gws, res->ns, x->router ? x->gw_name : "mesh");
    const struct keel_proxy_identity *id = x->b->id;
    if (!keel_labels_match(sl, n_sl, id->labels, id->n_labels))
        return false;
    return keel_cstr_empty(sns) || strcmp(sns, x->b->ns) == 0;
}

static void l4_cond_common(const struct keel_rules_ctx *x, const struct keel_resource *res, const char *path,
                           const char *const *subnets, size_t n_subnets, struct keel_l4_cond *c)
{
    struct keel_snapshot_build *b = x->b;
    if (!n_subnets)
        return;
    struct keel_cidr *v = keel_arena_xalloc(b->arena, n_subnets * sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; i < n_subnets; i++) {
        char ip[64];
        const char *slash = strchr(subnets[i], '/');
        snprintf(ip, sizeof(ip), "%.*s", (int)(slash ? slash - subnets[i] : (ptrdiff_t)strlen(subnets[i])), subnets[i]);
        if (!keel_routes_parse_ip(ip, &v[k])) {
            keel_snapshot_warn(b, res, path, "destinationSubnets entry \"%s\" is not an IP or CIDR: ignored",
                               subnets[i]);
            continue;
        }
        if (slash) {
            long bits = strtol(slash + 1, NULL, 10);
            if (bits >= 0 && bits <= v[k].bits)
                v[k].bits = (uint8_t)bits;
        }
        k++;
    }
    c->dst_subnets = v;
    c->n_dst_subnets = k;
}

static void l4_source(const struct keel_rules_ctx *x, const struct keel_kv_str *sl, size_t n, const char *sns,
                      struct keel_l4_cond *c)
{
    if (x->router)
        return;
    if (n) {
        struct keel_kv_str *kv = keel_arena_xalloc(x->b->arena, n * sizeof(*kv));
        for (size_t i = 0; i < n; i++)
            kv[i] = (struct keel_kv_str){dup(x->b, sl[i].key), dup(x->b, sl[i].value)};
        c->source_labels = kv;
        c->n_source_labels = n;
    }
    c->source_ns = keel_cstr_empty(sns) ? NULL : dup(x->b, sns);
}

static void l4_dests(const struct keel_rules_ctx *x, const struct keel_resource *res, const char *path,
                     const struct keel_route_destination *rd, size_t n_rd, struct keel_l4_route *r)
{
    struct keel_route_dest *d = keel_arena_xalloc(x->b->arena, (n_rd + 1) * sizeof(*d));
    size_t n = 0;
    uint64_t total = 0;
    for (size_t i = 0; i < n_rd; i++) {
        if ((n_rd > 1 && rd[i].weight <= 0) || !rd[i].destination)
            continue;
        char p[KEEL_PATH_MAX];
        subpath(p, sizeof(p), "%s.route[%zu].destination", path, i);
        resolve_dest(x, res, p, rd[i].destination, &d[n].cluster_name, &d[n].cluster);
        d[n].weight = n_rd == 1 ? 1 : (uint32_t)(rd[i].weight > UINT32_MAX ? UINT32_MAX : rd[i].weight);
        total += d[n].weight;
        d[n].cumulative = total;
        n++;
    }
    r->dests = d;
    r->n_dests = n;
    r->total_weight = total;
}

size_t keel_rules_compile_l4(const struct keel_rules_ctx *x, const struct keel_resource *res, bool tls,
                             const char *const *sni_limit, size_t n_sni_limit, struct keel_rules_tcp_list *out)
{
    struct keel_snapshot_build *b = x->b;
    const struct keel_virtual_service *vs = res->spec;
    size_t before = out->n;
    size_t nrules = tls ? vs->n_tls : vs->n_tcp;
    char path[KEEL_PATH_MAX], label[300];
    keel_resource_label(res, label, sizeof(label));
    for (size_t i = 0; i < nrules; i++) {
        subpath(path, sizeof(path), "spec.%s[%zu]", tls ? "tls" : "tcp", i);
        size_t nm = tls ? vs->tls[i].n_match : vs->tcp[i].n_match;
        struct keel_l4_cond *conds = keel_arena_xalloc(b->arena, (nm + 1) * sizeof(*conds));
        size_t nc = 0;
        for (size_t j = 0; j < nm; j++) {
            struct keel_l4_cond *c = &conds[nc];
            char p[KEEL_PATH_MAX + 64];
            subpath(p, sizeof(p), "%s.match[%zu]", path, j);
            if (tls) {
                const struct keel_tls_match *m = &vs->tls[i].match[j];
                if (!l4_applies(x, res, m->port, (const char *const *)m->gateways, m->n_gateways, m->source_labels,
                                m->n_source_labels, m->source_namespace))
                    continue;
                const char **sni = keel_arena_xalloc(b->arena, (m->n_sni_hosts + 1) * sizeof(char *));
                size_t ns = 0;
                for (size_t k = 0; k < m->n_sni_hosts; k++) {
                    const char *h = keel_arena_strdup_lower(b->arena, m->sni_hosts[k]);
                    bool ok = !n_sni_limit;
                    for (size_t l = 0; l < n_sni_limit && !ok; l++)
                        ok = keel_host_matches(h, sni_limit[l]);
                    if (ok)
                        sni[ns++] = h;
                }
                if (!ns)
                    continue;
                c->sni_hosts = sni;
                c->n_sni_hosts = ns;
                l4_cond_common(x, res, p, (const char *const *)m->destination_subnets, m->n_destination_subnets, c);
                l4_source(x, m->source_labels, m->n_source_labels, m->source_namespace, c);
            } else {
                const struct keel_l4_match *m = &vs->tcp[i].match[j];
                if (!l4_applies(x, res, m->port, (const char *const *)m->gateways, m->n_gateways, m->source_labels,
                                m->n_source_labels, m->source_namespace))
                    continue;
                if (!keel_cstr_empty(m->source_subnet))
                    keel_snapshot_warn(b, res, p, "sourceSubnet is not implemented by sidecars: ignored");
                l4_cond_common(x, res, p, (const char *const *)m->destination_subnets, m->n_destination_subnets, c);
                l4_source(x, m->source_labels, m->n_source_labels, m->source_namespace, c);
            }
            c->port = x->port;
            nc++;
        }
        if (nm && !nc)
            continue; /* no match block applies here */
        if (out->n == out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 8;
            struct keel_l4_route *v = keel_arena_xalloc(b->arena, cap * sizeof(*v));
            if (out->n)
                memcpy(v, out->v, out->n * sizeof(*v));
            out->v = v;
            out->cap = cap;
        }
        struct keel_l4_route *r = &out->v[out->n++];
        memset(r, 0, sizeof(*r));
        r->conds = conds;
        r->n_conds = nc;
        r->origin = keel_arena_printf(b->arena, "%s %s", label, path);
        if (tls)
            l4_dests(x, res, path, vs->tls[i].route, vs->tls[i].n_route, r);
        else
            l4_dests(x, res, path, vs->tcp[i].route, vs->tcp[i].n_route, r);
    }
    return out->n - before;
}

/* A route to one cluster (default routes). */
const struct keel_route_action *keel_rules_default_action(const struct keel_rules_ctx *x, const char *cluster_name)
{
    struct keel_snapshot_build *b = x->b;
    struct keel_route_action *a = keel_arena_xalloc(b->arena, sizeof(*a));
    struct keel_route_dest *d = keel_arena_xalloc(b->arena, sizeof(*d));
    a->kind = KEEL_ROUTE_FORWARD;
    d->cluster_name = cluster_name;
    d->cluster = keel_clusters_find(x->cs, cluster_name);
    d->weight = 1;
    d->cumulative = 1;
    a->dests = d;
    a->n_dests = 1;
    a->total_weight = 1;
    struct retry_in ri;
    compile_retry(b, NULL, NULL, mesh_default_retry(b, &ri), false, &a->retry);
    return a;
}
