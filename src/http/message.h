/*
 * message.h - protocol-neutral view of an HTTP request or response head.
 *
 * Codecs (HTTP/1.1 in http/h1.c, HTTP/2 later) fill a keel_http_head from
 * the bytes they parse; the router, the filters and the access log read it
 * and never branch on the protocol version. A head borrows its bytes: every
 * keel_str points into the connection's input buffer (or a per-request
 * arena), which must outlive the head. Header names are kept as received;
 * lookups are ASCII case-insensitive. Nothing here allocates.
 */
#ifndef KEEL_HTTP_MESSAGE_H
#define KEEL_HTTP_MESSAGE_H

#include "base/str.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEEL_HTTP_MAX_HEADERS 128

struct keel_http_header {
    struct keel_str name;
    struct keel_str value;
};

enum keel_http_version {
    KEEL_HTTP_10,
    KEEL_HTTP_11,
    KEEL_HTTP_2,
};

struct keel_http_head {
    enum keel_http_version version;
    /* request */
    struct keel_str method;
    struct keel_str target;    /* request-target as received: origin-form, absolute-form, authority-form or "*" */
    struct keel_str path;      /* path part of the target, without the query ("/a/b") */
    struct keel_str query;     /* after '?', without it; empty when none */
    struct keel_str authority; /* Host header (HTTP/1) or :authority (HTTP/2) */
    struct keel_str scheme;    /* "http"/"https" from absolute-form or :scheme; empty otherwise */
    /* response */
    int status;
    struct keel_str reason;
    /* both */
    struct keel_http_header headers[KEEL_HTTP_MAX_HEADERS];
    size_t nheaders;
    /* framing, as decided by the codec */
    bool chunked;            /* body uses chunked transfer coding */
    bool has_content_length;
    uint64_t content_length;
    bool keep_alive;         /* connection may be reused after this message */
    bool upgrade;            /* Connection: upgrade (WebSocket) or CONNECT */
    bool expect_continue;    /* Expect: 100-continue */
};

/* Splits an authority ("host", "host:port", "[v6]:port") at its port separator, the last ':' not inside
 * brackets: *host is what comes before it (brackets kept), *port what follows (maybe empty or not a number).
 * Returns whether there was a separator; without one *host is all of a and *port empty. */
bool keel_http_authority_split(struct keel_str a, struct keel_str *host, struct keel_str *port);

/* Value of the first header named `name` (case-insensitive), or NULL. */
const struct keel_str *keel_http_head_get(const struct keel_http_head *h, const char *name);

#endif
