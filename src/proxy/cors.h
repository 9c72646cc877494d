/*
 * cors.h - VirtualService corsPolicy decisions (see cors.c). Pure; no allocation.
 */
#ifndef KEEL_PROXY_CORS_H
#define KEEL_PROXY_CORS_H

#include "http/message.h"
#include "mesh/routes.h"

enum keel_cors_verdict {
    KEEL_CORS_PASS,              /* no policy, no Origin, or an origin the policy does not allow: nothing to do */
    KEEL_CORS_DECORATE,          /* an allowed origin's request: add keel_cors_response_fields to the response */
    KEEL_CORS_PREFLIGHT,         /* an allowed origin's preflight: answer 200 with keel_cors_preflight_fields */
    KEEL_CORS_PREFLIGHT_IGNORED, /* unmatchedPreflights IGNORE: answer 200 without CORS fields */
};

/* What policy c (NULL: none) asks for the request. */
enum keel_cors_verdict keel_cors_check(const struct keel_cors *c, const struct keel_http_head *req);
/* The fields of a preflight answer / of a decorated response, into h (cap entries); returns how many. They point
 * into c and into req. */
size_t keel_cors_preflight_fields(const struct keel_cors *c, const struct keel_http_head *req,
                                  struct keel_http_header *h, size_t cap);
size_t keel_cors_response_fields(const struct keel_cors *c, const struct keel_http_head *req,
                                 struct keel_http_header *h, size_t cap);

#endif
