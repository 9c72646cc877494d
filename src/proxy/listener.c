/*
 * listener.c - each worker's listening sockets, kept in step with the
 * snapshot (see proxy_int.h).
 *
 * Every worker opens its own SO_REUSEPORT socket per listener, so the kernel
 * spreads connections over workers and no accept lock exists. When a new
 * snapshot arrives, keel_listeners_reconcile() opens the ports that appeared
 * and closes those that went away; connections already accepted are not
 * touched by either (a config change never drops an open connection).
 *
 * Routers listen on every Gateway server port of the snapshot (on the
 * server's bind address, 0.0.0.0 by default). Sidecars listen on the
 * outbound address given on the command line (the app uses it as its
 * http_proxy) and route by Host and port; and, for every service port that
 * is TCP only (no HTTP service shares it), on the outbound address's IP with
 * that port, where connections are proxied at L4 (there are no iptables
 * rules: the app dials that address instead of the service's).
 *
 * Sidecars also listen on the inbound address (--inbound, 127.0.0.1:15006 by
 * default), where HTTP requests pick the workload port by their authority's
 * port, and on the inbound address's IP with each inbound port of the
 * snapshot (mesh/inbound.h): what peers dial when the workload's endpoint
 * address is that IP. Each forwards to the app through `inbound|<port>||`.
 *
 * An accepted connection goes to tcp.c when its listener is L4 (a gateway
 * port whose servers are all TCP/TLS, decided from the snapshot of the
 * moment, a sidecar TCP port, or an inbound TCP port), else to http1.c.
 * Before that, the socket options EnvoyFilters merged into the snapshot
 * listener (TCP keep-alive, ...) are set on it.
 */
#include "proxy/proxy_int.h"

#include "config/schema_gen.h"

#include "base/arena.h"
#include "base/err.h"
#include "base/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void on_resume(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct keel_plistener *l = t->data;
    if (l->fd >= 0)
        keel_io_modify(&l->io, KEEL_IO_READ);
}

static bool is_l4(const struct keel_plistener *l)
{
    if (l->role == KEEL_PL_OUTBOUND_TCP)
        return true;
    if (l->role == KEEL_PL_INBOUND) {
        const struct keel_inbound *in = l->port && l->pw->snap ? keel_snapshot_inbound(l->pw->snap, l->port) : NULL;
        return in && in->tcp;
    }
    if (l->role != KEEL_PL_GATEWAY || !l->pw->snap)
        return false;
    return keel_tcp_listener_is_l4(keel_snapshot_listener(l->pw->snap, l->port));
}

/* EnvoyFilter LISTENER MERGE socket_options of the snapshot listener (mesh/patches.h), set in order on an accepted
 * socket: for one option the last patch applied wins, as when Envoy applies a merged list. */
static void apply_sockopts(const struct keel_plistener *l, int fd)
{
    if ((l->role != KEEL_PL_GATEWAY && l->role != KEEL_PL_OUTBOUND_TCP) || !l->pw->snap)
        return;
    const struct keel_listener *sl = keel_snapshot_listener(l->pw->snap, l->port);
    for (size_t i = 0; sl && i < sl->n_sockopts; i++) {
        int v = (int)sl->sockopts[i].value;
        if (setsockopt(fd, sl->sockopts[i].level, sl->sockopts[i].name, &v, sizeof(v)) != 0)
            keel_log(KEEL_LOG_DEBUG, "listener %s: socket option %d/%d = %d: %s", l->name, sl->sockopts[i].level,
                     sl->sockopts[i].name, v, strerror(errno));
    }
}

static void on_accept(struct keel_loop *loop, struct keel_io *io, uint32_t ev)
{
    (void)ev;
    struct keel_plistener *l = io->data;
    /* a bounded batch per wakeup keeps one busy listener from starving the rest */
    for (int i = 0; i < 64; i++) {
        int fd;
        struct keel_addr peer;
        int rc = keel_sock_accept(l->fd, &fd, &peer);
        if (rc == KEEL_EAGAIN)
            return;
        if (rc == KEEL_EMFILE) {
            /* out of descriptors: leave the connection in the backlog and retry soon */
            keel_io_modify(&l->io, 0);
            keel_timer_start(loop, &l->pause, KEEL_SOCK_ACCEPT_PAUSE_MS, on_resume, l);
            keel_log(KEEL_LOG_WARN, "listener %s: out of file descriptors, pausing accepts", l->name);
            return;
        }
        if (rc != 0)
            return;
        apply_sockopts(l, fd);
        if (is_l4(l))
            keel_tcp_accept(l, fd, &peer);
        else
            keel_http1_accept(l, fd, &peer);
    }
}

/* Whole file into the arena (certificates and keys are small); NULL when unreadable. */
char *keel_read_file(struct keel_arena *a, const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 8192;
            if (ncap > (4u << 20))
                break;
            char *nb = keel_arena_xalloc(a, ncap + 1);
            if (n)
                memcpy(nb, buf, n);
            buf = nb;
            cap = ncap;
        }
        size_t r = fread(buf + n, 1, cap - n, fp);
        if (r == 0)
            break;
        n += r;
    }
    fclose(fp);
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

/* The TLS context of a gateway listener: one certificate per terminating server (SIMPLE), chosen by SNI.
 * Returns 0 when the listener does not terminate TLS (*out NULL), or an error that keeps it closed. */
static int build_tls(struct keel_pworker *pw, const struct keel_listener *sl, struct keel_plistener *l,
                     struct keel_tls_ctx **out)
{
    *out = NULL;
    struct keel_tls_cert certs[16];
    size_t n = 0;
    struct keel_arena *a = keel_arena_new(16384);
    int rc = 0;
    for (size_t i = 0; i < sl->n_chains && n < 16; i++) {
        const struct keel_listener_chain *ch = &sl->chains[i];
        if (!ch->has_tls || ch->https_redirect || ch->tls.mode == KEEL_SERVER_TLS_MODE_PASSTHROUGH ||
            ch->tls.mode == KEEL_SERVER_TLS_MODE_AUTO_PASSTHROUGH)
            continue;
        if (ch->tls.mode != KEEL_SERVER_TLS_MODE_SIMPLE) {
            if (pw->index == 0)
                keel_log(KEEL_LOG_ERROR, "listener %s: TLS mode %s is not supported by this build (SIMPLE is)",
                         sl->name, ch->tls.mode == KEEL_SERVER_TLS_MODE_MUTUAL ? "MUTUAL" : "ISTIO_MUTUAL/OPTIONAL");
            rc = KEEL_EINVAL;
            continue;
        }
        struct keel_tls_cert *c = &certs[n];
        memset(c, 0, sizeof(*c));
        c->hosts = ch->hosts;
        c->n_hosts = ch->n_hosts;
        if (ch->tls.credential_name) {
            const struct keel_secret *sec = keel_secretset_find(pw->secrets, ch->tls.credential_name);
            if (!sec) {
                if (pw->index == 0)
                    keel_log(KEEL_LOG_ERROR, "listener %s: credentialName %s: no TLS Secret of that name in the "
                             "gateway's namespace", sl->name, ch->tls.credential_name);
                rc = KEEL_ENOTFOUND;
                continue;
            }
            c->cert_pem = sec->cert;
            c->cert_len = sec->cert_len;
            c->key_pem = sec->key;
            c->key_len = sec->key_len;
        } else {
            c->cert_pem = ch->tls.server_certificate ? keel_read_file(a, ch->tls.server_certificate, &c->cert_len) : NULL;
            c->key_pem = ch->tls.private_key ? keel_read_file(a, ch->tls.private_key, &c->key_len) : NULL;
            if (!c->cert_pem || !c->key_pem) {
                if (pw->index == 0)
                    keel_log(KEEL_LOG_ERROR, "listener %s: cannot read serverCertificate %s / privateKey %s",
                             sl->name, ch->tls.server_certificate ? ch->tls.server_certificate : "(none)",
                             ch->tls.private_key ? ch->tls.private_key : "(none)");
                rc = KEEL_ENOENT;
                continue;
            }
        }
        l->tls_chain[n] = (int)i;
        n++;
    }
    if (n > 0) {
        static const char *const alpn[] = {"h2", "http/1.1"};
        const struct keel_listener_tls *t = &sl->chains[l->tls_chain[0]].tls;
        static const int versions[] = {0, 10, 11, 12, 13}; /* TLS_AUTO, TLSV1_0 .. TLSV1_3 */
        struct keel_tls_server_options o = {
            .certs = certs,
            .n_certs = n,
            .min_version = t->min_version >= 0 && t->min_version < 5 ? versions[t->min_version] : 0,
            .max_version = t->max_version >= 0 && t->max_version < 5 ? versions[t->max_version] : 0,
            .alpn = alpn,
            .n_alpn = 2,
        };
        char err[200] = "";
        rc = keel_tls_server_ctx_new(&o, out, err, sizeof(err));
        if (rc && pw->index == 0)
            keel_log(KEEL_LOG_ERROR, "listener %s: %s", sl->name, err);
    }
    keel_arena_free(a);
    return rc;
}

static struct keel_plistener *find(struct keel_pworker *pw, enum keel_listener_role role, const struct keel_addr *a)
{
    for (struct keel_plistener *l = pw->listeners; l; l = l->next)
        if (l->role == role && keel_addr_equal(&l->addr, a))
            return l;
    return NULL;
}

static int open_listener(struct keel_pworker *pw, enum keel_listener_role role, const struct keel_addr *a,
                         uint32_t port, const char *name, const struct keel_listener *sl)
{
    struct keel_plistener *l = find(pw, role, a);
    if (l) {
        l->mark = true;
        l->port = port;
        /* certificates may have changed with the config: new connections get the new ones */
        if (sl && l->tls_version != keel_snapshot_version(pw->snap)) {
            struct keel_tls_ctx *ctx;
            if (build_tls(pw, sl, l, &ctx) == 0) {
                keel_tls_ctx_free(l->tls);
                l->tls = ctx;
                l->tls_version = keel_snapshot_version(pw->snap);
            }
        }
        return 0;
    }
    struct keel_tls_ctx *tls = NULL;
    struct keel_plistener probe = {0};
    if (sl && build_tls(pw, sl, &probe, &tls) != 0)
        return KEEL_EINVAL; /* a server whose TLS cannot be set up must not serve plain text */
    int fd;
    int rc = keel_sock_listen(a, true, 1024, &fd);
    if (rc != 0) {
        char buf[KEEL_ADDR_STRLEN];
        keel_addr_format(a, buf, sizeof(buf));
        if (pw->index == 0)
            keel_log(KEEL_LOG_ERROR, "cannot listen on %s (%s): %s", buf, name, keel_strerror(rc));
        return rc;
    }
    l = calloc(1, sizeof(*l));
    if (!l) {
        close(fd);
        keel_tls_ctx_free(tls);
        return KEEL_ENOMEM;
    }
    l->tls = tls;
    memcpy(l->tls_chain, probe.tls_chain, sizeof(l->tls_chain));
    l->tls_version = pw->snap ? keel_snapshot_version(pw->snap) : 0;
    l->pw = pw;
    l->fd = fd;
    l->role = role;
    l->port = port;
    l->addr = *a;
    l->mark = true;
    snprintf(l->name, sizeof(l->name), "%s", name);
    keel_io_init(&l->io, fd, on_accept, l);
    keel_timer_init(&l->pause);
    l->pause.data = l;
    if (keel_io_start(pw->loop, &l->io, KEEL_IO_READ) != 0) {
        close(fd);
        keel_tls_ctx_free(l->tls);
        free(l);
        return KEEL_ENOMEM;
    }
    l->next = pw->listeners;
    pw->listeners = l;
    if (pw->index == 0)
        keel_log(KEEL_LOG_INFO, "listening on %s", name);
    return 0;
}

static void close_listener(struct keel_plistener *l)
{
    keel_io_stop(&l->io);
    keel_timer_stop(&l->pause);
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    keel_tls_ctx_free(l->tls); /* connections keep their own references */
    free(l);
}

/* One listener per TCP-only service port of the sidecar snapshot, on the outbound address's IP. */
static void open_sidecar_tcp(struct keel_pworker *pw, const struct keel_addr *outbound)
{
    size_t n = 0;
    const struct keel_listener *ls = pw->snap ? keel_snapshot_listeners(pw->snap, &n) : NULL;
    for (size_t i = 0; i < n; i++) {
        if (ls[i].port == keel_addr_port(outbound) || !keel_tcp_listener_is_l4(&ls[i]))
            continue;
        struct keel_addr a = *outbound;
        if (a.u.sa.sa_family == AF_INET6)
            a.u.v6.sin6_port = htons((uint16_t)ls[i].port);
        else
            a.u.v4.sin_port = htons((uint16_t)ls[i].port);
        char addr[KEEL_ADDR_STRLEN], name[96];
        keel_addr_format(&a, addr, sizeof(addr));
        snprintf(name, sizeof(name), "%s (%s)", addr, ls[i].name);
        open_listener(pw, KEEL_PL_OUTBOUND_TCP, &a, ls[i].port, name, NULL);
    }
}

static struct keel_plistener *find_any(struct keel_pworker *pw, const struct keel_addr *a)
{
    for (struct keel_plistener *l = pw->listeners; l; l = l->next)
        if (l->mark && keel_addr_equal(&l->addr, a))
            return l;
    return NULL;
}

static bool is_wildcard(const struct keel_addr *a)
{
    static const struct in6_addr any6 = IN6ADDR_ANY_INIT;
    if (a->u.sa.sa_family == AF_INET6)
        return memcmp(&a->u.v6.sin6_addr, &any6, sizeof(any6)) == 0;
    return a->u.v4.sin_addr.s_addr == htonl(INADDR_ANY);
}

/* The inbound address (port 0: HTTP by the authority's port), then one listener per inbound port of the
 * snapshot on the inbound address's IP with that port (docs/proxy.md "Inbound"), except a port whose
 * listener would be the app's own address (forwarding to itself) or is already taken by the outbound side. */
static void open_inbound(struct keel_pworker *pw, const struct keel_addr *inbound)
{
    open_listener(pw, KEEL_PL_INBOUND, inbound, 0, "virtualInbound", NULL);
    size_t n = 0;
    const struct keel_inbound *v = pw->snap ? keel_snapshot_inbounds(pw->snap, &n) : NULL;
    for (size_t i = 0; i < n; i++) {
        struct keel_addr a = *inbound;
        if (a.u.sa.sa_family == AF_INET6)
            a.u.v6.sin6_port = htons((uint16_t)v[i].port);
        else
            a.u.v4.sin_port = htons((uint16_t)v[i].port);
        char addr[KEEL_ADDR_STRLEN], name[96];
        keel_addr_format(&a, addr, sizeof(addr));
        struct keel_addr app;
        const char *why = NULL;
        if (keel_addr_equal(&a, inbound))
            why = "the inbound address itself (requests there pick the port by their authority)";
        else if (v[i].app_port == v[i].port && keel_addr_parse(v[i].endpoint, &app) == 0 &&
                 (keel_addr_equal(&app, &a) || is_wildcard(&a)))
            why = "where the app listens (give --inbound another IP, e.g. 127.0.0.2, or a Sidecar ingress "
                  "defaultEndpoint)";
        else if (find_any(pw, &a) && find(pw, KEEL_PL_INBOUND, &a) == NULL)
            why = "already an outbound listener (give --inbound and --outbound different IPs)";
        if (why) {
            if (pw->index == 0)
                keel_log(KEEL_LOG_INFO, "inbound port %u: not listening on %s, %s", v[i].port, addr, why);
            continue;
        }
        snprintf(name, sizeof(name), "%s (%s)", addr, v[i].cluster_name);
        open_listener(pw, KEEL_PL_INBOUND, &a, v[i].port, name, NULL);
    }
}

void keel_listeners_reconcile(struct keel_pworker *pw)
{
    if (pw->draining)
        return;
    for (struct keel_plistener *l = pw->listeners; l; l = l->next)
        l->mark = false;
    const struct keel_proxy_options *opt = keel_runtime_options(pw->rt);
    if (opt->mode == KEEL_PROXY_MODE_ROUTER) {
        size_t n = 0;
        const struct keel_listener *ls = pw->snap ? keel_snapshot_listeners(pw->snap, &n) : NULL;
        for (size_t i = 0; i < n; i++) {
            char spec[128];
            const char *bind = ls[i].bind && *ls[i].bind ? ls[i].bind : "0.0.0.0";
            if (strchr(bind, ':'))
                snprintf(spec, sizeof(spec), "[%s]:%u", bind, ls[i].port);
            else
                snprintf(spec, sizeof(spec), "%s:%u", bind, ls[i].port);
            struct keel_addr a;
            if (keel_addr_parse(spec, &a) != 0)
                continue; /* unix sockets: not in this build */
            open_listener(pw, KEEL_PL_GATEWAY, &a, ls[i].port, ls[i].name, &ls[i]);
        }
    } else {
        struct keel_addr a;
        if (opt->outbound_addr && keel_addr_parse(opt->outbound_addr, &a) == 0) {
            open_listener(pw, KEEL_PL_OUTBOUND, &a, keel_addr_port(&a), "virtualOutbound", NULL);
            open_sidecar_tcp(pw, &a);
        }
        if (opt->inbound_addr && keel_addr_parse(opt->inbound_addr, &a) == 0)
            open_inbound(pw, &a);
    }
    for (struct keel_plistener **pp = &pw->listeners; *pp;) {
        struct keel_plistener *l = *pp;
        if (!l->mark) {
            *pp = l->next;
            if (pw->index == 0)
                keel_log(KEEL_LOG_INFO, "stopped listening on %s", l->name);
            close_listener(l);
        } else {
            pp = &l->next;
        }
    }
}

bool keel_listeners_own(const struct keel_pworker *pw, const char *hostport)
{
    struct keel_addr dst;
    if (!hostport || keel_addr_parse(hostport, &dst) != 0)
        return false;
    for (const struct keel_plistener *l = pw->listeners; l; l = l->next) {
        if (keel_addr_port(&l->addr) != keel_addr_port(&dst))
            continue;
        if (keel_addr_equal(&l->addr, &dst) || (is_wildcard(&l->addr) && keel_addr_is_loopback(&dst)))
            return true;
    }
    return false;
}

void keel_listeners_close(struct keel_pworker *pw)
{
    while (pw->listeners) {
        struct keel_plistener *l = pw->listeners;
        pw->listeners = l->next;
        close_listener(l);
    }
}
