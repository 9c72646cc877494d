/*
 * sock.h - non-blocking TCP sockets: addresses, listen/accept/connect,
 * socket options, original destination, read/write.
 *
 * Thin, syscall-shaped helpers with Keel's return convention: 0 (or a byte
 * count) on success, a negative KEEL_E* code on failure; errno never leaks
 * out and EINTR is retried inside. Every fd they create is non-blocking and
 * close-on-exec. Writes use send/sendmsg with MSG_NOSIGNAL, so a peer that
 * went away gives KEEL_ECLOSED, never SIGPIPE. They know nothing of the
 * event loop (net/loop.h): the caller watches the fds.
 *
 * Errors the caller acts on:
 *   KEEL_EAGAIN       nothing to do now: wait for the fd to be readable/writable;
 *   KEEL_ECLOSED      the peer is gone (orderly EOF, reset, broken pipe);
 *   KEEL_EIO          any other I/O failure (keepalive timeout, unreachable...);
 *   KEEL_EMFILE       out of fds (accept): see keel_sock_accept;
 *   KEEL_EADDRINUSE   listen on an address already taken;
 *   KEEL_ECONNREFUSED connect refused by the peer.
 */
#ifndef KEEL_NET_SOCK_H
#define KEEL_NET_SOCK_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

/* An IPv4 or IPv6 socket address. len is 0 for "no address". */
struct keel_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in v4;
        struct sockaddr_in6 v6;
    } u;
    socklen_t len;
};

/* Longest keel_addr_format output, NUL included: "[v6%scope]:65535". */
#define KEEL_ADDR_STRLEN 72
/* Longest string keel_addr_parse looks at; longer input is KEEL_EINVAL. */
#define KEEL_ADDR_MAX_INPUT 128

/* Parses "IPv4:port", "[IPv6]:port" (optionally "[fe80::1%eth0]:port") or ":port" (all IPv4 interfaces, as
 * "0.0.0.0:port"). The port is required (0-65535, decimal; 0 asks the kernel for an ephemeral port). Host names are
 * not resolved: they are KEEL_EINVAL, as is anything else malformed. out is unchanged on failure. */
int keel_addr_parse(const char *s, struct keel_addr *out);

/* Writes "1.2.3.4:80" or "[::1]:80" (a non-zero IPv6 scope as "%N") into buf with a NUL. Returns the length without
 * the NUL, KEEL_ETOOBIG if size is too small (KEEL_ADDR_STRLEN always suffices) or KEEL_EINVAL for an address that
 * is neither IPv4 nor IPv6. */
int keel_addr_format(const struct keel_addr *a, char *buf, size_t size);

/* Port in host byte order; 0 for no address. */
uint16_t keel_addr_port(const struct keel_addr *a);

bool keel_addr_equal(const struct keel_addr *a, const struct keel_addr *b);
/* 127.0.0.0/8 or ::1. */
bool keel_addr_is_loopback(const struct keel_addr *a);

/* Binds and listens on addr with SO_REUSEADDR, and SO_REUSEPORT when reuseport is set (every socket sharing the port
 * must set it; the kernel then spreads new connections across them - one listener per worker). An IPv6 listener is
 * IPV6_V6ONLY: "[::]:80" takes IPv6 only, as Envoy does by default. backlog <= 0 means SOMAXCONN. On success *fd is
 * the listening socket. Returns 0, KEEL_EADDRINUSE, KEEL_EINVAL (bad address, not permitted, e.g. a privileged
 * port), KEEL_EMFILE or KEEL_ENOMEM. */
int keel_sock_listen(const struct keel_addr *addr, bool reuseport, int backlog, int *fd);

/* Accepts one connection (accept4, non-blocking, close-on-exec). peer may be NULL. Returns 0 with *fd set,
 * KEEL_EAGAIN when no connection is waiting, KEEL_EMFILE when the process or system is out of fds (or the kernel out
 * of socket memory), KEEL_EINVAL (lfd is not a listening socket) or KEEL_EIO. A connection that was reset while it
 * waited is skipped, not reported.
 *
 * Out of fds (EMFILE/ENFILE/ENOBUFS/ENOMEM): the connection stays in the kernel's backlog and the listening socket
 * stays readable, so a level-triggered watcher would spin at 100% CPU. The strategy is HAProxy's: on KEEL_EMFILE the
 * caller pauses that listener (keel_io_modify(io, 0)) and arms a timer (KEEL_SOCK_ACCEPT_PAUSE_MS) to resume it.
 * Clients wait in the backlog meanwhile instead of being accepted and dropped. */
int keel_sock_accept(int lfd, int *fd, struct keel_addr *peer);

/* Suggested pause of a listener after KEEL_EMFILE before accepting again. */
#define KEEL_SOCK_ACCEPT_PAUSE_MS 100

/* Starts a non-blocking connect to addr. Returns 0 (connected already), KEEL_EAGAIN (in progress: wait until the fd
 * is writable, then call keel_sock_connect_result) or an error (KEEL_ECONNREFUSED, KEEL_EINVAL, KEEL_EMFILE,
 * KEEL_EIO - including no free local port). *fd is set for 0 and KEEL_EAGAIN and the caller closes it; on any other
 * result no fd is left open. */
int keel_sock_connect(const struct keel_addr *addr, int *fd);

/* Outcome of a connect that returned KEEL_EAGAIN: 0 (connected), KEEL_EAGAIN (still in progress), or
 * KEEL_ECONNREFUSED, KEEL_ETIMEDOUT, KEEL_ECLOSED (reset), KEEL_EIO. Reads SO_ERROR, which the kernel then clears:
 * call it once the fd is writable. */
int keel_sock_connect_result(int fd);

/* TCP_NODELAY on or off. */
int keel_sock_set_nodelay(int fd, bool on);

/* SO_KEEPALIVE on, with TCP_KEEPIDLE idle_s, TCP_KEEPINTVL interval_s and TCP_KEEPCNT probes (the options Istio's
 * EnvoyFilter examples set on gateway listeners). A value of 0 keeps the kernel's default for that one; negative
 * values are KEEL_EINVAL. Returns 0 or KEEL_EINVAL. */
int keel_sock_set_keepalive(int fd, int idle_s, int interval_s, int probes);

/* setsockopt(fd, level, name, &value, sizeof(int)) for integer options (EnvoyFilter socket_options pass raw
 * level/name/int_value triples). Returns 0, KEEL_EINVAL (unknown option or bad value) or KEEL_EIO. */
int keel_sock_setopt(int fd, int level, int name, int value);

/* Reads an integer option into *value. Returns 0, KEEL_EINVAL or KEEL_EIO. */
int keel_sock_getopt(int fd, int level, int name, int *value);

/* The destination a client dialled before iptables REDIRECTed it to us (SO_ORIGINAL_DST for IPv4,
 * IP6T_SO_ORIGINAL_DST for IPv6, from conntrack). Returns 0, or KEEL_ENOTFOUND when the kernel has no record for this
 * connection (not redirected, or conntrack not loaded); then callers use keel_sock_local_addr. Note that with
 * conntrack loaded, a connection that was not redirected reports its own local address. */
int keel_sock_original_dst(int fd, struct keel_addr *out);

/* getsockname / getpeername. Return 0, KEEL_ECLOSED (not connected) or KEEL_EINVAL. */
int keel_sock_local_addr(int fd, struct keel_addr *out);
int keel_sock_peer_addr(int fd, struct keel_addr *out);

/* Reads up to len bytes from a socket (recv). Returns the count (> 0; 0 only when len is 0), KEEL_EAGAIN, KEEL_ECLOSED (EOF or reset)
 * or KEEL_EIO. */
ssize_t keel_sock_read(int fd, void *buf, size_t len);

/* Writes up to len bytes / the iovecs (at most IOV_MAX of them are used). Returns the count written, which may be
 * short, KEEL_EAGAIN (nothing written), KEEL_ECLOSED (peer gone; never SIGPIPE) or KEEL_EIO. */
ssize_t keel_sock_write(int fd, const void *buf, size_t len);
ssize_t keel_sock_writev(int fd, const struct iovec *iov, int iovcnt);

/* Half-close: no more writes from us (the peer reads EOF); reads continue. Returns 0, KEEL_ECLOSED or KEEL_EIO. */
int keel_sock_shutdown_write(int fd);

#endif
