/*
 * url.h - Go's net/url parsing rules, as istiod applies them to user URLs.
 *
 * Mirrors url.Parse and url.ParseRequestURI of Go's net/url as far as the
 * validation webhook depends on them: security.ParseJwksURI
 * (RequestAuthentication jwksUri) and validateWasmPluginURL's strictParseURL
 * (WasmPlugin and TrafficExtension url), plus the Kubernetes isURL() CEL
 * function that the same CRDs use. It checks what Go checks (control
 * characters, the scheme, "first path segment" colons, the authority's
 * userinfo, host characters and port, and every %-escape in the host,
 * userinfo, path and fragment) and reports Go's own error text, wrapped the
 * way *url.Error prints it: `parse "<raw>": <reason>` (raw clipped to 100
 * bytes). It does not decode escapes, nor split the path, query or userinfo
 * further: callers only need the verdict, the scheme and the authority.
 *
 * Ownership: nothing is allocated. The parsed URL borrows from the input
 * string (host points into raw), and messages go into the caller's buffer.
 * The functions are pure and thread-safe.
 *
 * Return convention: these return NULL on success and the message (err) on
 * failure, like the keel_check_* helpers, rather than a KEEL_E* code: the
 * callers report Go's message verbatim, so the message is the result. On
 * failure *u is left unchanged.
 */
#ifndef KEEL_CONFIG_URL_H
#define KEEL_CONFIG_URL_H

#include <stdbool.h>
#include <stddef.h>

/* KEEL_URL_SCHEME_MAX - 1 is the longest scheme kept; a longer one is cut. */
#define KEEL_URL_SCHEME_MAX 32

struct keel_url {
    char scheme[KEEL_URL_SCHEME_MAX]; /* lower-cased; "" when there is none */
    bool has_authority;               /* "//" authority present (host may still be empty) */
    const char *host;                 /* authority host[:port] in raw, not NUL-terminated; NULL without authority */
    size_t host_len;
};

/* url.Parse(raw): a fragment after '#' is allowed (its escapes are checked).
 * Returns NULL and fills *u, or writes the *url.Error text into err[0..en)
 * (truncated if needed, always NUL-terminated when en > 0) and returns err. */
const char *keel_url_parse(const char *raw, struct keel_url *u, char *err, size_t en);

/* url.ParseRequestURI(raw): no fragment handling ('#' is part of the path),
 * "" is an error ("empty url"), and a relative path without a scheme must
 * start with '/' ("invalid URI for request"). Same return convention as
 * keel_url_parse(). */
const char *keel_url_parse_request_uri(const char *raw, struct keel_url *u, char *err, size_t en);

#endif
