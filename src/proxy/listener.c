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
 * http_proxy) and route by Host and port.
 */
#include "proxy/proxy_int.h"

#include "base/err.h"
#include "base/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void on_resume(struct keel_loop *loop, struct keel_timer *t)
{
    (void)loop;
    struct keel_plistener *l = t->data;
    if (l->fd >= 0)
        keel_io_modify(&l->io, KEEL_IO_READ);
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
        keel_http1_accept(l, fd, &peer);
    }
}

static struct keel_plistener *find(struct keel_pworker *pw, enum keel_listener_role role, const struct keel_addr *a)
{
    for (struct keel_plistener *l = pw->listeners; l; l = l->next)
        if (l->role == role && keel_addr_equal(&l->addr, a))
            return l;
    return NULL;
}

static int open_listener(struct keel_pworker *pw, enum keel_listener_role role, const struct keel_addr *a,
                         uint32_t port, const char *name)
{
    struct keel_plistener *l = find(pw, role, a);
    if (l) {
        l->mark = true;
        l->port = port;
        return 0;
    }
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
        return KEEL_ENOMEM;
    }
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
    free(l);
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
            open_listener(pw, KEEL_PL_GATEWAY, &a, ls[i].port, ls[i].name);
        }
    } else {
        struct keel_addr a;
        if (opt->outbound_addr && keel_addr_parse(opt->outbound_addr, &a) == 0)
            open_listener(pw, KEEL_PL_OUTBOUND, &a, keel_addr_port(&a), "virtualOutbound");
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

void keel_listeners_close(struct keel_pworker *pw)
{
    while (pw->listeners) {
        struct keel_plistener *l = pw->listeners;
        pw->listeners = l->next;
        close_listener(l);
    }
}
