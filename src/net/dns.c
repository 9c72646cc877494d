/*
 * dns.c - asynchronous name resolution with c-ares on a keel_loop (see dns.h).
 *
 * c-ares tells us which sockets it wants watched through its socket-state
 * callback (ARES_OPT_SOCK_STATE_CB): each one gets a keel_io from a fixed
 * array of KEEL_DNS_MAX_SOCKETS slots (no allocation, no free while a
 * callback of the slot may be on the stack: a slot is only marked free).
 * Readiness goes back to c-ares with ares_process_fd(); after every call
 * into c-ares the resolver's one keel_timer is re-armed to ares_timeout(),
 * and when it fires ares_process_fd(BAD, BAD) lets c-ares retransmit or
 * time queries out.
 *
 * A query is a small heap object on the resolver's list. c-ares's callback
 * copies the addresses into it and defers delivery (keel_loop_defer), which
 * keeps our promise that callbacks never run inside keel_dns_resolve() (c-ares
 * answers /etc/hosts hits synchronously). Cancelling only marks the query;
 * it is freed when c-ares or the deferred delivery is done with it.
 */
#include "net/dns.h"

#include "base/err.h"
#include "base/log.h"
#include "net/loop.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct dns_sock {
    struct keel_io io;
    struct keel_dns *dns;
    int fd; /* -1: free slot */
};

struct keel_dns {
    struct keel_loop *loop;
    ares_channel channel;
    struct keel_timer timer;
    struct dns_sock socks[KEEL_DNS_MAX_SOCKETS];
    struct keel_dns_query *queries; /* every query not yet freed */
    size_t pending;                 /* of which neither delivered nor cancelled */
    bool destroying;
};

struct keel_dns_query {
    struct keel_dns *dns; /* NULL once the resolver is gone (delivery still queued) */
    struct keel_dns_query *prev, *next;
    keel_dns_cb cb;
    void *data;
    struct keel_defer defer;
    bool cancelled;
    int err;
    const char *error; /* static text (ares_strerror) */
    uint32_t ttl;
    size_t n_addrs;
    struct keel_dns_addr addrs[KEEL_DNS_MAX_ADDRS];
    char name[KEEL_DNS_MAX_NAME + 1];
};

static pthread_once_t library_once = PTHREAD_ONCE_INIT;
static int library_status;

static void library_init(void)
{
    /* c-ares wants one process-wide init before the first channel; it is never undone (nothing to free on
     * Linux), so resolvers on several threads do not race on its reference count */
    library_status = ares_library_init(ARES_LIB_INIT_ALL);
}

/* ---- timer and sockets ----------------------------------------------------------------------------------------- */

static void on_timer(struct keel_loop *loop, struct keel_timer *t);

static void rearm(struct keel_dns *d)
{
    if (d->destroying)
        return;
    struct timeval tv;
    if (!ares_timeout(d->channel, NULL, &tv)) {
        keel_timer_stop(&d->timer);
        return;
    }
    uint64_t ms = (uint64_t)tv.tv_sec * 1000u + ((uint64_t)tv.tv_usec + 999u) / 1000u;
    if (keel_timer_start(d->loop, &d->timer, ms, on_timer, d) != 0)
        keel_log(KEEL_LOG_ERROR, "dns: out of memory arming the resolver timer; queries may hang");
}

static void on_timer(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct keel_dns *d = t->data;
    ares_process_fd(d->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    rearm(d);
}

static void on_sock(struct keel_loop *loop, struct keel_io *io, uint32_t ev)
{
    (void)loop;
    struct dns_sock *s = io->data;
    struct keel_dns *d = s->dns;
    int fd = s->fd;
    ares_socket_t r = (ev & (KEEL_IO_READ | KEEL_IO_ERROR)) ? fd : ARES_SOCKET_BAD;
    ares_socket_t w = (ev & KEEL_IO_WRITE) ? fd : ARES_SOCKET_BAD;
    /* may close fd (sock_state -> slot freed) and deliver answers; s is not touched afterwards */
    ares_process_fd(d->channel, r, w);
    rearm(d);
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct keel_dns *d = data;
    struct dns_sock *s = NULL, *free_slot = NULL;
    for (size_t i = 0; i < KEEL_DNS_MAX_SOCKETS; i++) {
        if (d->socks[i].fd == fd)
            s = &d->socks[i];
        else if (d->socks[i].fd < 0 && !free_slot)
            free_slot = &d->socks[i];
    }
    uint32_t events = (readable ? KEEL_IO_READ : 0) | (writable ? KEEL_IO_WRITE : 0);
    if (!events) {
        /* c-ares is about to close fd */
        if (s) {
            keel_io_stop(&s->io);
            s->fd = -1;
        }
        return;
    }
    if (!s) {
        if (!free_slot) {
            keel_log(KEEL_LOG_ERROR, "dns: more than %d resolver sockets; socket %d is not watched",
                     KEEL_DNS_MAX_SOCKETS, (int)fd);
            return;
        }
        s = free_slot;
        s->fd = fd;
        s->dns = d;
        keel_io_init(&s->io, fd, on_sock, s);
    }
    int rc = keel_io_start(d->loop, &s->io, events);
    if (rc != 0) {
        keel_log(KEEL_LOG_ERROR, "dns: cannot watch resolver socket %d: %s", (int)fd, keel_strerror(rc));
        s->fd = -1;
    }
}

/* ---- queries --------------------------------------------------------------------------------------------------- */

static void unlink_query(struct keel_dns_query *q)
{
    struct keel_dns *d = q->dns;
    if (!d)
        return;
    if (q->prev)
        q->prev->next = q->next;
    else
        d->queries = q->next;
    if (q->next)
        q->next->prev = q->prev;
    q->prev = q->next = NULL;
    q->dns = NULL;
}

static void deliver(struct keel_loop *loop, struct keel_defer *df)
{
    (void)loop;
    struct keel_dns_query *q = df->data;
    if (q->dns && !q->cancelled)
        q->dns->pending--;
    unlink_query(q);
    if (!q->cancelled) {
        struct keel_dns_result res = {.name = q->name,
                                      .err = q->err,
                                      .error = q->error,
                                      .addrs = q->n_addrs ? q->addrs : NULL,
                                      .n_addrs = q->n_addrs,
                                      .ttl = q->ttl};
        q->cb(&res, q->data);
    }
    free(q);
}

static int map_status(int status)
{
    switch (status) {
    case ARES_SUCCESS:
        return 0;
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
    case ARES_ENONAME:
        return KEEL_ENOTFOUND;
    case ARES_ETIMEOUT:
        return KEEL_ETIMEDOUT;
    case ARES_ENOMEM:
        return KEEL_ENOMEM;
    default:
        return KEEL_EIO;
    }
}

static void add_addr(struct keel_dns_query *q, const struct ares_addrinfo_node *n)
{
    char ip[KEEL_DNS_ADDRSTRLEN];
    const void *src;
    if (n->ai_family == AF_INET && n->ai_addrlen >= (ares_socklen_t)sizeof(struct sockaddr_in))
        src = &((const struct sockaddr_in *)(const void *)n->ai_addr)->sin_addr;
    else if (n->ai_family == AF_INET6 && n->ai_addrlen >= (ares_socklen_t)sizeof(struct sockaddr_in6))
        src = &((const struct sockaddr_in6 *)(const void *)n->ai_addr)->sin6_addr;
    else
        return;
    if (!inet_ntop(n->ai_family, src, ip, sizeof(ip)))
        return;
    for (size_t i = 0; i < q->n_addrs; i++)
        if (strcmp(q->addrs[i].ip, ip) == 0)
            return; /* c-ares may list an address once per socket type */
    if (q->n_addrs == KEEL_DNS_MAX_ADDRS)
        return;
    struct keel_dns_addr *a = &q->addrs[q->n_addrs++];
    a->family = n->ai_family;
    memcpy(a->ip, ip, sizeof(ip));
    if (n->ai_ttl > 0 && (q->ttl == 0 || (uint32_t)n->ai_ttl < q->ttl))
        q->ttl = (uint32_t)n->ai_ttl;
}

static void on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
    (void)timeouts;
    struct keel_dns_query *q = arg;
    if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED) {
        /* keel_dns_free(): nobody is told */
        if (q->dns && !q->cancelled)
            q->dns->pending--;
        unlink_query(q);
        if (ai)
            ares_freeaddrinfo(ai);
        free(q);
        return;
    }
    q->err = map_status(status);
    if (status == ARES_SUCCESS && ai)
        for (const struct ares_addrinfo_node *n = ai->nodes; n; n = n->ai_next)
            add_addr(q, n);
    if (q->err == 0 && q->n_addrs == 0) {
        q->err = KEEL_ENOTFOUND;
        q->error = "no IPv4 or IPv6 address";
    } else if (q->err) {
        q->error = ares_strerror(status);
    }
    if (ai)
        ares_freeaddrinfo(ai);
    keel_loop_defer(q->dns->loop, &q->defer, deliver, q);
}

int keel_dns_resolve(struct keel_dns *d, const char *name, keel_dns_cb cb, void *data, struct keel_dns_query **out)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > KEEL_DNS_MAX_NAME || !cb)
        return KEEL_EINVAL;
    struct keel_dns_query *q = calloc(1, sizeof(*q));
    if (!q)
        return KEEL_ENOMEM;
    memcpy(q->name, name, len + 1);
    q->dns = d;
    q->cb = cb;
    q->data = data;
    q->next = d->queries;
    if (d->queries)
        d->queries->prev = q;
    d->queries = q;
    d->pending++;
    if (out)
        *out = q;
    struct ares_addrinfo_hints hints = {.ai_family = AF_UNSPEC};
    ares_getaddrinfo(d->channel, q->name, NULL, &hints, on_addrinfo, q);
    rearm(d);
    return 0;
}

void keel_dns_cancel(struct keel_dns_query *q)
{
    if (!q || q->cancelled)
        return;
    q->cancelled = true;
    if (q->dns)
        q->dns->pending--;
}

size_t keel_dns_pending(const struct keel_dns *d)
{
    return d ? d->pending : 0;
}

/* ---- resolver ------------------------------------------------------------------------------------------------- */

int keel_dns_new(struct keel_loop *loop, const struct keel_dns_options *opt, struct keel_dns **out)
{
    pthread_once(&library_once, library_init);
    if (library_status != ARES_SUCCESS)
        return KEEL_ENOMEM;
    struct keel_dns *d = calloc(1, sizeof(*d));
    if (!d)
        return KEEL_ENOMEM;
    d->loop = loop;
    keel_timer_init(&d->timer);
    d->timer.data = d;
    for (size_t i = 0; i < KEEL_DNS_MAX_SOCKETS; i++)
        d->socks[i].fd = -1;
    struct ares_options ao;
    memset(&ao, 0, sizeof(ao));
    ao.sock_state_cb = sock_state;
    ao.sock_state_cb_data = d;
    ao.timeout = (int)(opt && opt->timeout_ms ? opt->timeout_ms : KEEL_DNS_DEFAULT_TIMEOUT_MS);
    ao.tries = (int)(opt && opt->tries ? opt->tries : KEEL_DNS_DEFAULT_TRIES);
    int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    int st = ares_init_options(&d->channel, &ao, mask);
    if (st != ARES_SUCCESS) {
        keel_log(KEEL_LOG_ERROR, "dns: cannot start the resolver: %s", ares_strerror(st));
        free(d);
        return st == ARES_ENOMEM ? KEEL_ENOMEM : KEEL_EIO;
    }
    if (opt && opt->servers && *opt->servers) {
        st = ares_set_servers_ports_csv(d->channel, opt->servers);
        if (st != ARES_SUCCESS) {
            d->destroying = true;
            ares_destroy(d->channel);
            free(d);
            return st == ARES_ENOMEM ? KEEL_ENOMEM : KEEL_EINVAL;
        }
    }
    *out = d;
    return 0;
}

void keel_dns_free(struct keel_dns *d)
{
    if (!d)
        return;
    d->destroying = true;
    keel_timer_stop(&d->timer);
    /* queries still inside c-ares come back with ARES_EDESTRUCTION and are freed there; sockets are reported
     * closed through sock_state, which stops their watchers */
    ares_destroy(d->channel);
    for (size_t i = 0; i < KEEL_DNS_MAX_SOCKETS; i++)
        if (d->socks[i].fd >= 0) {
            keel_io_stop(&d->socks[i].io);
            d->socks[i].fd = -1;
        }
    /* the rest have a delivery queued on the loop: it frees them without calling back */
    while (d->queries) {
        struct keel_dns_query *q = d->queries;
        q->cancelled = true;
        unlink_query(q);
    }
    free(d);
}
