/*
 * sock.c - non-blocking TCP helpers (see sock.h).
 *
 * Each function is one or two syscalls plus errno translation. Two small
 * translation tables keep the mapping in one place: map_errno() for setup
 * calls (socket, bind, listen, connect, options) and map_io_errno() for the
 * data path, which reduces everything to EAGAIN / peer gone / other. Address
 * parsing is strict and never resolves names: a listener or cluster address
 * is an IP literal here; DNS belongs to another module.
 */
#include "net/sock.h"

#include "base/err.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* From <linux/netfilter_ipv4.h> and <linux/netfilter_ipv6/ip6_tables.h>, which are not included because they clash
 * with glibc's <netinet/in.h>. Both are 80 in the kernel ABI. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

/* ---- errno translation ------------------------------------------------------------------------------------------ */

static int map_errno(int e)
{
    switch (e) {
    case EAGAIN:
    case EINPROGRESS:
        return KEEL_EAGAIN;
    case EPIPE:
    case ECONNRESET:
    case ECONNABORTED:
    case ENOTCONN:
    case ESHUTDOWN:
        return KEEL_ECLOSED;
    case ECONNREFUSED:
        return KEEL_ECONNREFUSED;
    case ETIMEDOUT:
        return KEEL_ETIMEDOUT;
    case EADDRINUSE:
        return KEEL_EADDRINUSE;
    case EMFILE:
    case ENFILE:
        return KEEL_EMFILE;
    case ENOMEM:
    case ENOBUFS:
        return KEEL_ENOMEM;
    case EBADF:
    case ENOTSOCK:
    case EINVAL:
    case EFAULT:
    case ENOPROTOOPT:
    case EOPNOTSUPP:
    case EACCES:
    case EPERM:
    case EAFNOSUPPORT:
    case EPROTONOSUPPORT:
    case EADDRNOTAVAIL:
        return KEEL_EINVAL;
    default:
        return KEEL_EIO;
    }
}

static int map_io_errno(int e)
{
    switch (e) {
    case EAGAIN:
        return KEEL_EAGAIN;
    case EPIPE:
    case ECONNRESET:
    case ENOTCONN:
    case ESHUTDOWN:
        return KEEL_ECLOSED;
    default:
        return KEEL_EIO;
    }
}

/* ---- addresses -------------------------------------------------------------------------------------------------- */

/* "0".."65535", digits only. */
static int parse_port(const char *s, uint16_t *out)
{
    if (!*s)
        return KEEL_EINVAL;
    unsigned v = 0;
    for (size_t i = 0; s[i]; i++) {
        if (s[i] < '0' || s[i] > '9' || i >= 5)
            return KEEL_EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return KEEL_EINVAL;
    *out = (uint16_t)v;
    return 0;
}

/* Zone of "fe80::1%eth0": an interface index or name. */
static int parse_zone(const char *z, uint32_t *out)
{
    if (!*z)
        return KEEL_EINVAL;
    if (strspn(z, "0123456789") == strlen(z)) {
        if (strlen(z) > 10)
            return KEEL_EINVAL;
        unsigned long long v = strtoull(z, NULL, 10);
        if (v > UINT32_MAX)
            return KEEL_EINVAL;
        *out = (uint32_t)v;
        return 0;
    }
    unsigned idx = if_nametoindex(z);
    if (idx == 0)
        return KEEL_EINVAL;
    *out = idx;
    return 0;
}

int keel_addr_parse(const char *s, struct keel_addr *out)
{
    if (!s)
        return KEEL_EINVAL;
    size_t n = strnlen(s, KEEL_ADDR_MAX_INPUT + 1);
    if (n > KEEL_ADDR_MAX_INPUT)
        return KEEL_EINVAL;
    char host[KEEL_ADDR_MAX_INPUT + 1];
    const char *port;
    struct keel_addr a;
    memset(&a, 0, sizeof(a));
    uint16_t p;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return KEEL_EINVAL;
        size_t hlen = (size_t)(close - s - 1);
        memcpy(host, s + 1, hlen);
        host[hlen] = '\0';
        port = close + 2;
        uint32_t scope = 0;
        char *pct = strchr(host, '%');
        if (pct) {
            *pct = '\0';
            if (parse_zone(pct + 1, &scope) != 0)
                return KEEL_EINVAL;
        }
        if (inet_pton(AF_INET6, host, &a.u.v6.sin6_addr) != 1 || parse_port(port, &p) != 0)
            return KEEL_EINVAL;
        a.u.v6.sin6_family = AF_INET6;
        a.u.v6.sin6_port = htons(p);
        a.u.v6.sin6_scope_id = scope;
        a.len = sizeof(a.u.v6);
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon)
            return KEEL_EINVAL;
        size_t hlen = (size_t)(colon - s);
        memcpy(host, s, hlen);
        host[hlen] = '\0';
        port = colon + 1;
        if (strchr(host, ':'))
            return KEEL_EINVAL; /* IPv6 needs brackets: "[::1]:80" */
        if (hlen == 0)
            a.u.v4.sin_addr.s_addr = htonl(INADDR_ANY);
        else if (inet_pton(AF_INET, host, &a.u.v4.sin_addr) != 1)
            return KEEL_EINVAL;
        if (parse_port(port, &p) != 0)
            return KEEL_EINVAL;
        a.u.v4.sin_family = AF_INET;
        a.u.v4.sin_port = htons(p);
        a.len = sizeof(a.u.v4);
    }
    *out = a;
    return 0;
}

int keel_addr_format(const struct keel_addr *a, char *buf, size_t size)
{
    char ip[INET6_ADDRSTRLEN];
    char out[KEEL_ADDR_STRLEN]; /* formatted here first, so buf is untouched on failure */
    int n;
    if (a->len >= sizeof(struct sockaddr_in) && a->u.sa.sa_family == AF_INET) {
        inet_ntop(AF_INET, &a->u.v4.sin_addr, ip, sizeof(ip));
        n = snprintf(out, sizeof(out), "%s:%u", ip, (unsigned)ntohs(a->u.v4.sin_port));
    } else if (a->len >= sizeof(struct sockaddr_in6) && a->u.sa.sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &a->u.v6.sin6_addr, ip, sizeof(ip));
        if (a->u.v6.sin6_scope_id)
            n = snprintf(out, sizeof(out), "[%s%%%u]:%u", ip, (unsigned)a->u.v6.sin6_scope_id,
                         (unsigned)ntohs(a->u.v6.sin6_port));
        else
            n = snprintf(out, sizeof(out), "[%s]:%u", ip, (unsigned)ntohs(a->u.v6.sin6_port));
    } else {
        return KEEL_EINVAL;
    }
    if (n < 0 || (size_t)n >= sizeof(out))
        return KEEL_EINVAL; /* cannot happen: KEEL_ADDR_STRLEN fits the longest form */
    if ((size_t)n >= size)
        return KEEL_ETOOBIG;
    memcpy(buf, out, (size_t)n + 1);
    return n;
}

uint16_t keel_addr_port(const struct keel_addr *a)
{
    if (a->len >= sizeof(struct sockaddr_in) && a->u.sa.sa_family == AF_INET)
        return ntohs(a->u.v4.sin_port);
    if (a->len >= sizeof(struct sockaddr_in6) && a->u.sa.sa_family == AF_INET6)
        return ntohs(a->u.v6.sin6_port);
    return 0;
}

bool keel_addr_equal(const struct keel_addr *a, const struct keel_addr *b)
{
    if (a->len == 0 || b->len == 0)
        return a->len == b->len;
    if (a->u.sa.sa_family != b->u.sa.sa_family)
        return false;
    if (a->u.sa.sa_family == AF_INET)
        return a->u.v4.sin_port == b->u.v4.sin_port && a->u.v4.sin_addr.s_addr == b->u.v4.sin_addr.s_addr;
    if (a->u.sa.sa_family == AF_INET6)
        return a->u.v6.sin6_port == b->u.v6.sin6_port && a->u.v6.sin6_scope_id == b->u.v6.sin6_scope_id &&
               memcmp(&a->u.v6.sin6_addr, &b->u.v6.sin6_addr, sizeof(a->u.v6.sin6_addr)) == 0;
    return false;
}

bool keel_addr_is_loopback(const struct keel_addr *a)
{
    if (a->u.sa.sa_family == AF_INET)
        return (ntohl(a->u.v4.sin_addr.s_addr) >> 24) == 127;
    return a->u.sa.sa_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&a->u.v6.sin6_addr);
}

/* Copies a kernel-filled sockaddr of len bytes into out; KEEL_EINVAL for families other than IPv4/IPv6. */
static int addr_from_kernel(const struct keel_addr *tmp, socklen_t len, struct keel_addr *out)
{
    if (!((tmp->u.sa.sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) ||
          (tmp->u.sa.sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6))))
        return KEEL_EINVAL;
    *out = *tmp;
    out->len = tmp->u.sa.sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    return 0;
}

static bool addr_valid(const struct keel_addr *a)
{
    return (a->u.sa.sa_family == AF_INET && a->len == sizeof(struct sockaddr_in)) ||
           (a->u.sa.sa_family == AF_INET6 && a->len == sizeof(struct sockaddr_in6));
}

/* ---- options ---------------------------------------------------------------------------------------------------- */

int keel_sock_setopt(int fd, int level, int name, int value)
{
    if (setsockopt(fd, level, name, &value, sizeof(value)) != 0)
        return errno == ENOMEM || errno == ENOBUFS ? KEEL_EIO : map_errno(errno);
    return 0;
}

int keel_sock_getopt(int fd, int level, int name, int *value)
{
    int v = 0;
    socklen_t len = sizeof(v);
    if (getsockopt(fd, level, name, &v, &len) != 0)
        return errno == ENOMEM || errno == ENOBUFS ? KEEL_EIO : map_errno(errno);
    *value = v;
    return 0;
}

int keel_sock_set_nodelay(int fd, bool on)
{
    return keel_sock_setopt(fd, IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0);
}

int keel_sock_set_keepalive(int fd, int idle_s, int interval_s, int probes)
{
    if (idle_s < 0 || interval_s < 0 || probes < 0)
        return KEEL_EINVAL;
    int rc = keel_sock_setopt(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
    if (rc == 0 && idle_s > 0)
        rc = keel_sock_setopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, idle_s);
    if (rc == 0 && interval_s > 0)
        rc = keel_sock_setopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, interval_s);
    if (rc == 0 && probes > 0)
        rc = keel_sock_setopt(fd, IPPROTO_TCP, TCP_KEEPCNT, probes);
    return rc == 0 ? 0 : KEEL_EINVAL;
}

/* ---- listen, accept, connect ------------------------------------------------------------------------------------ */

int keel_sock_listen(const struct keel_addr *addr, bool reuseport, int backlog, int *fd)
{
    if (!addr_valid(addr))
        return KEEL_EINVAL;
    int family = addr->u.sa.sa_family;
    int s = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0)
        return map_errno(errno);
    int rc = keel_sock_setopt(s, SOL_SOCKET, SO_REUSEADDR, 1);
    if (rc == 0 && reuseport)
        rc = keel_sock_setopt(s, SOL_SOCKET, SO_REUSEPORT, 1);
    if (rc == 0 && family == AF_INET6)
        rc = keel_sock_setopt(s, IPPROTO_IPV6, IPV6_V6ONLY, 1);
    if (rc == 0 && bind(s, &addr->u.sa, addr->len) != 0)
        rc = map_errno(errno);
    if (rc == 0 && listen(s, backlog > 0 ? backlog : SOMAXCONN) != 0)
        rc = map_errno(errno);
    if (rc != 0) {
        close(s);
        return rc;
    }
    *fd = s;
    return 0;
}

int keel_sock_accept(int lfd, int *fd, struct keel_addr *peer)
{
    for (;;) {
        struct keel_addr tmp;
        memset(&tmp, 0, sizeof(tmp));
        socklen_t len = sizeof(tmp.u);
        int s = accept4(lfd, &tmp.u.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (s >= 0) {
            if (peer && addr_from_kernel(&tmp, len, peer) != 0)
                memset(peer, 0, sizeof(*peer)); /* not IP (cannot happen on a TCP listener): "no address" */
            *fd = s;
            return 0;
        }
        switch (errno) {
        case EINTR:
        case ECONNABORTED: /* reset while in the backlog: next one */
        /* accept(2): errors already pending on the new socket; take the next connection. */
        case EPROTO:
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case ENETUNREACH:
            continue;
        case EAGAIN:
            return KEEL_EAGAIN;
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            return KEEL_EMFILE;
        default:
            return map_errno(errno) == KEEL_EINVAL ? KEEL_EINVAL : KEEL_EIO;
        }
    }
}

int keel_sock_connect(const struct keel_addr *addr, int *fd)
{
    if (!addr_valid(addr))
        return KEEL_EINVAL;
    int s = socket(addr->u.sa.sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s < 0)
        return map_errno(errno);
    int rc;
    do {
        rc = connect(s, &addr->u.sa, addr->len);
    } while (rc != 0 && errno == EINTR);
    if (rc == 0) {
        *fd = s;
        return 0;
    }
    int e = errno;
    if (e == EINPROGRESS) {
        *fd = s;
        return KEEL_EAGAIN;
    }
    close(s);
    if (e == EAGAIN || e == EADDRNOTAVAIL)
        return KEEL_EIO; /* for TCP this means no free local port, not "try again later on this fd" */
    return map_errno(e);
}

int keel_sock_connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        return map_errno(errno) == KEEL_EINVAL ? KEEL_EINVAL : KEEL_EIO;
    if (err != 0) {
        int rc = map_errno(err);
        if (rc == KEEL_EAGAIN || rc == KEEL_EINVAL || rc == KEEL_ENOMEM || rc == KEEL_EMFILE || rc == KEEL_EADDRINUSE)
            return KEEL_EIO;
        return rc;
    }
    struct sockaddr_storage ss;
    len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0)
        return 0;
    return errno == ENOTCONN ? KEEL_EAGAIN : KEEL_EIO;
}

/* ---- addresses of a socket -------------------------------------------------------------------------------------- */

static int name_of(int fd, bool peer, struct keel_addr *out)
{
    struct keel_addr tmp;
    memset(&tmp, 0, sizeof(tmp));
    socklen_t len = sizeof(tmp.u);
    int rc = peer ? getpeername(fd, &tmp.u.sa, &len) : getsockname(fd, &tmp.u.sa, &len);
    if (rc != 0)
        return errno == ENOTCONN ? KEEL_ECLOSED : KEEL_EINVAL;
    return addr_from_kernel(&tmp, len, out);
}

int keel_sock_local_addr(int fd, struct keel_addr *out)
{
    return name_of(fd, false, out);
}

int keel_sock_peer_addr(int fd, struct keel_addr *out)
{
    return name_of(fd, true, out);
}

int keel_sock_original_dst(int fd, struct keel_addr *out)
{
    struct keel_addr local;
    int rc = keel_sock_local_addr(fd, &local);
    if (rc != 0)
        return rc;
    struct keel_addr tmp;
    memset(&tmp, 0, sizeof(tmp));
    socklen_t len;
    if (local.u.sa.sa_family == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&local.u.v6.sin6_addr)) {
        len = sizeof(tmp.u.v6);
        rc = getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &tmp.u.v6, &len);
    } else {
        /* IPv4, or IPv4 mapped into a dual-stack IPv6 socket: conntrack knows it as IPv4. */
        len = sizeof(tmp.u.v4);
        rc = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &tmp.u.v4, &len);
    }
    if (rc != 0) {
        if (errno == ENOENT || errno == ENOPROTOOPT || errno == EOPNOTSUPP)
            return KEEL_ENOTFOUND;
        return map_errno(errno) == KEEL_EINVAL ? KEEL_EINVAL : KEEL_EIO;
    }
    return addr_from_kernel(&tmp, len, out);
}

/* ---- data ------------------------------------------------------------------------------------------------------- */

ssize_t keel_sock_read(int fd, void *buf, size_t len)
{
    if (len == 0)
        return 0;
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0); /* not read(): recv skips the VFS layer (about 3% of a proxy's time) */
        if (n > 0)
            return n;
        if (n == 0)
            return KEEL_ECLOSED;
        if (errno != EINTR)
            return map_io_errno(errno);
    }
}

ssize_t keel_sock_write(int fd, const void *buf, size_t len)
{
    for (;;) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return map_io_errno(errno);
    }
}

ssize_t keel_sock_writev(int fd, const struct iovec *iov, int iovcnt)
{
    if (iovcnt < 0)
        return KEEL_EINVAL;
    if (iovcnt > IOV_MAX)
        iovcnt = IOV_MAX; /* a short write: the caller sends the rest later, as for any short write */
    struct msghdr msg;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = (struct iovec *)iov; /* sendmsg does not write through it */
    msg.msg_iovlen = (size_t)iovcnt;
    for (;;) {
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return map_io_errno(errno);
    }
}

int keel_sock_shutdown_write(int fd)
{
    if (shutdown(fd, SHUT_WR) != 0)
        return (int)map_io_errno(errno);
    return 0;
}
