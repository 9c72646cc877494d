/*
 * dns.h - asynchronous name resolution on a keel_loop (the c-ares adapter).
 *
 * keel_dns_resolve() looks a name up (A and AAAA, with c-ares's
 * ares_getaddrinfo: /etc/hosts first, then the DNS servers of
 * /etc/resolv.conf or the ones given in the options) and later calls back
 * with every address found, or with an error. Nothing blocks: c-ares's
 * sockets are watched with keel_io and its retransmission deadlines run on a
 * keel_timer of the same loop.
 *
 * Threads: one resolver per loop, used only on that loop's thread (the proxy
 * keeps one on its main thread for the snapshot's DNS endpoints, and each
 * worker that needs one makes its own for per-request lookups: proxy/dfp.c,
 * pass-through and DYNAMIC_DNS to host names). c-ares is the only
 * library it uses and this file pair its only user (docs/principles.md:
 * one adapter per third-party library).
 *
 * Ownership: the resolver owns its c-ares channel, its watchers and every
 * query. A query handle (struct keel_dns_query) stays valid until its
 * callback returns or keel_dns_cancel() is called, whichever comes first;
 * after that the caller must forget it. The result passed to the callback
 * (addresses, error text) lives only during the call: copy what you keep.
 *
 * Callbacks never run inside keel_dns_resolve(), even when c-ares answers at
 * once (an /etc/hosts entry, a numeric address): the answer is delivered
 * from the loop's deferred work in the same iteration, so a caller may
 * store the handle after keel_dns_resolve() returns without racing its
 * callback.
 *
 * Failures: a name that does not exist (NXDOMAIN) or has no A/AAAA record
 * answers KEEL_ENOTFOUND; no answer from any server within
 * timeout_ms x tries answers KEEL_ETIMEDOUT; anything else (server failure,
 * refused, malformed answer) answers KEEL_EIO. The error text is c-ares's
 * ("Domain name not found"). keel_dns_free() cancels every query still
 * pending: their callbacks are not called.
 */
#ifndef KEEL_NET_DNS_H
#define KEEL_NET_DNS_H

#include <stddef.h>
#include <stdint.h>

struct keel_loop;
struct keel_dns;
struct keel_dns_query;

/* Longest name accepted (253 characters plus an optional trailing dot). */
#define KEEL_DNS_MAX_NAME 254
/* Most addresses kept from one answer; the rest are ignored. */
#define KEEL_DNS_MAX_ADDRS 64
/* Most sockets c-ares may have open at once on one resolver (one UDP socket per server, TCP for truncated
 * answers); a socket beyond this is not watched and its queries time out. */
#define KEEL_DNS_MAX_SOCKETS 16
/* Room for a numeric IPv4 or IPv6 address with its NUL (INET6_ADDRSTRLEN). */
#define KEEL_DNS_ADDRSTRLEN 46

struct keel_dns_options {
    /* DNS servers as "IP:PORT[,IP:PORT...]" ("[::1]:53" for IPv6; the port may be omitted), or NULL/"" for the
     * servers of /etc/resolv.conf. /etc/hosts is read either way. */
    const char *servers;
    unsigned timeout_ms; /* per try; 0 = KEEL_DNS_DEFAULT_TIMEOUT_MS */
    unsigned tries;      /* 0 = KEEL_DNS_DEFAULT_TRIES */
};

#define KEEL_DNS_DEFAULT_TIMEOUT_MS 2000
#define KEEL_DNS_DEFAULT_TRIES 2

struct keel_dns_addr {
    int family;                   /* AF_INET or AF_INET6 */
    char ip[KEEL_DNS_ADDRSTRLEN]; /* numeric form, "10.0.0.1" or "2001:db8::1" */
};

struct keel_dns_result {
    const char *name;                  /* as asked */
    int err;                           /* 0, KEEL_ENOTFOUND, KEEL_ETIMEDOUT, KEEL_EIO or KEEL_ENOMEM */
    const char *error;                 /* NULL on success, else why (c-ares's words) */
    const struct keel_dns_addr *addrs; /* in c-ares's order, duplicates removed; n_addrs >= 1 when err == 0 */
    size_t n_addrs;
    uint32_t ttl; /* seconds: the smallest TTL of the records; 0 when unknown (/etc/hosts, numeric names) */
};

/* Called once per query on the loop's thread, unless the query was cancelled. res is valid only during the
 * call. */
typedef void (*keel_dns_cb)(const struct keel_dns_result *res, void *data);

/* A resolver on loop. Returns 0 with *out set, KEEL_EINVAL (opt->servers is not a list of IP[:PORT]) or
 * KEEL_ENOMEM / KEEL_EIO (c-ares could not start: memory, /etc/resolv.conf unreadable). opt may be NULL. */
int keel_dns_new(struct keel_loop *loop, const struct keel_dns_options *opt, struct keel_dns **out);

/* Cancels every pending query (callbacks not called), stops the watchers and frees the resolver. NULL is a no-op.
 * On the loop's thread; the loop must still exist. */
void keel_dns_free(struct keel_dns *dns);

/* Starts looking up name (A and AAAA). cb runs later, from the loop (never inside this call). Returns 0 with *q
 * set (q may be NULL when the caller will never cancel), KEEL_EINVAL (empty or too long name) or KEEL_ENOMEM;
 * on failure cb is never called. */
int keel_dns_resolve(struct keel_dns *dns, const char *name, keel_dns_cb cb, void *data, struct keel_dns_query **q);

/* Cancels a query whose callback has not run yet: it will not run. q must not be used afterwards. NULL is a
 * no-op. Do not call it from the query's own callback (the handle is already gone then). */
void keel_dns_cancel(struct keel_dns_query *q);

/* Queries started and not yet delivered or cancelled. For tests and the admin dump. */
size_t keel_dns_pending(const struct keel_dns *dns);

#endif
