/*
 * sample_call.h - the sample app's outgoing calls (the only libcurl and
 * jansson user in app/).
 *
 * One blocking HTTP GET per call, made on a call thread of
 * app/sample_handler.c, never on a loop thread. libcurl honours the usual
 * proxy variables: with `http_proxy` set (a sidecar's outbound listener, e.g.
 * http://127.0.0.1:15001) the request goes to the proxy in absolute form with
 * its Host header, so the sidecar routes it by Host; `no_proxy` exempts hosts.
 * Without it the app connects directly.
 *
 * The result is described as one JSON object appended to a buffer:
 *   {"url":U,"status":S,"body":B}   B is the downstream body embedded as JSON
 *                                   when it parses as JSON (so a chain nests),
 *                                   otherwise as a string;
 *   {"url":U,"error":"..."}         when no response came (refused, timeout,
 *                                   abort, body over KEEL_SAMPLE_CALL_MAX_BODY).
 *
 * Threads: keel_sample_call_global_init() once from the main thread before any
 * worker starts (libcurl's rule); keel_sample_call_json() from any thread, each
 * call with its own handle (no shared state). Aborting: the call polls *abort
 * and gives up within about a second once it is set.
 */
#ifndef KEEL_APP_SAMPLE_CALL_H
#define KEEL_APP_SAMPLE_CALL_H

#include "base/buf.h"

#include <stdatomic.h>
#include <stddef.h>

/* Largest downstream body kept; a larger one is reported as an error. */
#define KEEL_SAMPLE_CALL_MAX_BODY (1024 * 1024)

/* Returns 0 or KEEL_EIO when libcurl cannot initialise. */
int keel_sample_call_global_init(void);
void keel_sample_call_global_cleanup(void);

/* GETs url with the given request header lines ("name: value", NUL-terminated) and appends the result object to
 * out. timeout_ms bounds the whole call. Returns 0, or KEEL_ENOMEM / KEEL_ETOOBIG when out cannot take the result
 * (out may then hold part of it). */
int keel_sample_call_json(const char *url, const char *const *headers, size_t nheaders, unsigned timeout_ms,
                          const atomic_bool *abort, struct keel_buf *out);

#endif
