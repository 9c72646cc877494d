/*
 * cors.c - VirtualService corsPolicy, as Envoy's CORS filter applies it.
 *
 * A preflight (OPTIONS with Origin and Access-Control-Request-Method) from an
 * allowed origin is answered by the proxy itself: 200 with
 * Access-Control-Allow-Origin (the origin), -Methods, -Headers, -Max-Age and
 * -Credentials as configured. A preflight from another origin goes on to the
 * upstream (unmatchedPreflights: FORWARD, Istio's default) or gets a 200
 * without CORS fields (IGNORE). An ordinary request from an allowed origin
 * gets Access-Control-Allow-Origin, -Credentials and -Expose-Headers added to
 * its response. Pure functions over the route's compiled policy; the fields
 * point into the policy (snapshot) or the request.
 */
#include "proxy/cors.h"

#include <string.h>

static const struct keel_str *origin_of(const struct keel_http_head *req)
{
    const struct keel_str *o = keel_http_head_get(req, "origin");
    return o && o->n ? o : NULL;
}

static bool origin_allowed(const struct keel_cors *c, struct keel_str origin)
{
    for (size_t i = 0; i < c->n_origins; i++)
        if (keel_str_matcher_eval(&c->origins[i], origin.p, origin.n))
            return true;
    return false;
}

enum keel_cors_verdict keel_cors_check(const struct keel_cors *c, const struct keel_http_head *req)
{
    const struct keel_str *origin = c ? origin_of(req) : NULL;
    if (!origin)
        return KEEL_CORS_PASS;
    bool preflight =
        keel_str_eq_c(req->method, "OPTIONS") && keel_http_head_get(req, "access-control-request-method") != NULL;
    bool allowed = origin_allowed(c, *origin);
    if (!preflight)
        return allowed ? KEEL_CORS_DECORATE : KEEL_CORS_PASS;
    if (allowed)
        return KEEL_CORS_PREFLIGHT;
    return c->forward_not_matching_preflights ? KEEL_CORS_PASS : KEEL_CORS_PREFLIGHT_IGNORED;
}

#define ADD(n, v)                                                                                                      \
    do {                                                                                                               \
        if (k < cap)                                                                                                   \
            h[k++] = (struct keel_http_header){keel_str_c(n), (v)};                                                    \
    } while (0)

size_t keel_cors_preflight_fields(const struct keel_cors *c, const struct keel_http_head *req,
                                  struct keel_http_header *h, size_t cap)
{
    size_t k = 0;
    ADD("access-control-allow-origin", *origin_of(req));
    if (c->allow_methods)
        ADD("access-control-allow-methods", keel_str_c(c->allow_methods));
    if (c->allow_headers)
        ADD("access-control-allow-headers", keel_str_c(c->allow_headers));
    if (c->max_age)
        ADD("access-control-max-age", keel_str_c(c->max_age));
    if (c->has_allow_credentials && c->allow_credentials)
        ADD("access-control-allow-credentials", KEEL_STR_LIT("true"));
    return k;
}

size_t keel_cors_response_fields(const struct keel_cors *c, const struct keel_http_head *req,
                                 struct keel_http_header *h, size_t cap)
{
    size_t k = 0;
    ADD("access-control-allow-origin", *origin_of(req));
    if (c->has_allow_credentials && c->allow_credentials)
        ADD("access-control-allow-credentials", KEEL_STR_LIT("true"));
    if (c->expose_headers)
        ADD("access-control-expose-headers", keel_str_c(c->expose_headers));
    return k;
}
