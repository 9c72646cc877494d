/*
 * dfp.h - per-request DNS resolution: the dynamic forward proxy's host cache (internal to proxy/).
 *
 * Clusters of type ORIGINAL_DST (PassthroughCluster under ALLOW_ANY, ServiceEntry `resolution: NONE`,
 * DestinationRule `loadBalancer.simple: PASSTHROUGH`) and DYNAMIC_DNS (ServiceEntry `resolution: DYNAMIC_DNS`)
 * have no endpoint list: the destination is the request's own authority. An app that uses the sidecar as its
 * `http_proxy` never resolves names itself, so a host name there is resolved here, per request, as Envoy's
 * dynamic forward proxy does (its DNS cache with Istio's settings):
 *
 *   - an IP literal is used as it is; a name is looked up (A and AAAA, net/dns.h) and the stream waits
 *     ("parked") until the answer arrives; every request for a name being looked up waits on that one lookup;
 *   - the address used is the answer's first IPv4 address, else its first IPv6 one (Envoy's DFP uses the
 *     first address of the answer; Istio asks for IPv4 first on IPv4 proxies);
 *   - an answer is kept and refreshed in the background, never waited for again: after an answer with a TTL
 *     at max(TTL, 5 s) (Envoy's dns_min_refresh_rate), after one without (/etc/hosts) or a failure at 5 s,
 *     at most at KEEL_DFP_HOST_TTL_MS;
 *   - failures (dnscache.h's rules): NXDOMAIN / no address forgets the address; a timeout or server error keeps
 *     the last known one; a name without address answers 503 DF `dns_resolution_failure` until a later lookup
 *     finds one;
 *   - a name no request used for KEEL_DFP_HOST_TTL_MS (Envoy's host_ttl, 5 min) is forgotten at its next
 *     refresh; at most KEEL_DFP_MAX_HOSTS names are kept (Envoy's max_hosts): a new name beyond that answers
 *     503 `dns_cache_overflow` instead of growing the cache.
 *
 * Port: for DYNAMIC_DNS, the ServiceEntry port the request was routed to (its targetPort when set; on a gateway
 * the authority's port is the gateway's own); for pass-through, the authority's port, else the cluster's port
 * when it is a service's, else 80 (443 for an https request).
 *
 * L4 sessions (tcp.c) ask for a name with keel_dfp_resolve(): the SNI of a TLS passthrough session (DYNAMIC_DNS,
 * Envoy's sni_dynamic_forward_proxy; ORIGINAL_DST without an original destination), or the service's host. The
 * same cache, the same rules; a failure closes the session (DF) instead of answering 503.
 *
 * Threads and ownership: one cache per proxy worker (pw->dfp), shared by its HTTP streams and its L4 sessions,
 * created on the worker's thread the first time one of them needs a lookup, with its own resolver on the worker's
 * loop (the DNS servers of the runtime's --dns-server option); freed by keel_dfp_free() when the worker ends. A
 * worker without a runtime (the fuzz targets build one by hand) has no resolver: names fail (503 DF), no DNS
 * traffic ever leaves.
 * A waiter (struct keel_dfp_wait, embedded in its owner: st->dfp_wait, the L4 session's) is linked to its name
 * while the first lookup is in flight; when the answer arrives it is unlinked, then its done(data) runs once and
 * the owner asks again (the cache answers at once). keel_dfp_wait_cancel() (keel_dfp_cancel() for a stream;
 * the owner finished or freed) unlinks it, and freeing the cache detaches every waiter without calling it, so an
 * answer never reaches an owner that is gone. The endpoint given to a stream lives in the stream's arena (not in
 * the cluster: outlier detection and the circuit breakers' per-host state ignore it, the cluster's limits still
 * apply).
 */
#ifndef KEEL_PROXY_DFP_H
#define KEEL_PROXY_DFP_H

#include "net/dns.h"

struct keel_cluster;
struct keel_pworker;
struct keel_stream;

#define KEEL_DFP_MAX_HOSTS 1024u            /* Envoy's max_hosts default */
#define KEEL_DFP_HOST_TTL_MS (300u * 1000u) /* Envoy's host_ttl default: unused names are forgotten */
#define KEEL_DFP_REFRESH_MS 5000u           /* refresh after an answer without TTL, and after a failure */
#define KEEL_DFP_MIN_TTL_REFRESH_MS 5000u   /* Envoy's dns_min_refresh_rate */

/* A place in the line of a name being looked up (embedded in its owner: struct keel_stream, an L4 session; all
 * zero = not waiting). The owner sets done and data; done(data) runs once, after the waiter left the line. */
struct keel_dfp_wait {
    struct keel_dfp_wait *prev, *next; /* circular list through the name's entry */
    void (*done)(void *data);
    void *data;
};

enum keel_dfp_status {
    KEEL_DFP_READY,    /* st->ep is set: go on with the attempt */
    KEEL_DFP_PARKED,   /* waiting for an answer: keel_stream_dispatch(st) runs again when it arrives */
    KEEL_DFP_ANSWERED, /* the stream was answered (503: no address, cache full, bad authority) */
};

/* The endpoint of a request to c (ORIGINAL_DST or DYNAMIC_DNS), from its authority. */
enum keel_dfp_status keel_dfp_endpoint(struct keel_stream *st, const struct keel_cluster *c);

/* The stream no longer waits (it was answered otherwise, reset, or freed). Idempotent. */
void keel_dfp_cancel(struct keel_stream *st);

/* ---- for other callers (L4 sessions) ---- */

enum keel_dfp_result {
    KEEL_DFP_RES_READY,    /* out holds the address */
    KEEL_DFP_RES_WAIT,     /* w is in line: w->done(w->data) runs when the first answer arrives; ask again then */
    KEEL_DFP_RES_FAILED,   /* not a host name, no address (NXDOMAIN, timeout, ...), no resolver or no memory */
    KEEL_DFP_RES_OVERFLOW, /* a new name and the cache is full (KEEL_DFP_MAX_HOSTS) */
};

struct keel_dfp_addr {
    char ip[KEEL_DNS_ADDRSTRLEN]; /* numeric */
    int family;                   /* AF_INET or AF_INET6 */
    char error[96];               /* FAILED: the lookup's error, or "" */
};

/* The address of host (an IPv4 or IPv6 literal, used as it is, or a host name, looked up through the worker's
 * cache). w must not be in a line already; its done and data are set by the caller. On pw's thread. */
enum keel_dfp_result keel_dfp_resolve(struct keel_pworker *pw, const char *host, struct keel_dfp_wait *w,
                                      struct keel_dfp_addr *out);

/* w leaves its line (its owner ends). Idempotent; a waiter not in a line is left alone. */
void keel_dfp_wait_cancel(struct keel_dfp_wait *w);

/* Cancels the worker's lookups, detaches waiting streams and frees the cache and its resolver. On the worker's
 * thread, while its loop exists. */
void keel_dfp_free(struct keel_pworker *pw);

#endif
