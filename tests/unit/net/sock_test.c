/*
 * sock_test.c - tests for net/sock: address parsing and formatting (IPv4,
 * IPv6, bad input), listen/connect/accept/read/write over loopback with
 * ephemeral ports, EAGAIN and peer-gone results, SO_REUSEPORT, socket
 * options read back with getsockopt, EMFILE from accept.
 */
#include "net/sock.h"

#include "base/err.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

/* Hang guard for poll(): only a broken kernel or test would reach it. */
#define GENEROUS_MS 20000

static void wait_fd(int fd, short events)
{
    struct pollfd p = {.fd = fd, .events = events};
    assert_int_equal(poll(&p, 1, GENEROUS_MS), 1);
}

static void parse_ok(const char *in, const char *formatted)
{
    struct keel_addr a;
    char buf[KEEL_ADDR_STRLEN];
    assert_int_equal(keel_addr_parse(in, &a), 0);
    int n = keel_addr_format(&a, buf, sizeof(buf));
    assert_int_equal(n, (int)strlen(formatted));
    assert_string_equal(buf, formatted);
}

static void parse_bad(const char *in)
{
    struct keel_addr a;
    memset(&a, 0xab, sizeof(a));
    struct keel_addr before = a;
    if (keel_addr_parse(in, &a) != KEEL_EINVAL)
        fail_msg("accepted bad address \"%s\"", in ? in : "(null)");
    assert_memory_equal(&a, &before, sizeof(a)); /* unchanged on failure */
}

/* ---- addresses -------------------------------------------------------------------------------------------------- */

static void test_addr_parse_ipv4(void **state)
{
    (void)state;
    parse_ok("127.0.0.1:8080", "127.0.0.1:8080");
    parse_ok("0.0.0.0:80", "0.0.0.0:80");
    parse_ok(":8080", "0.0.0.0:8080");
    parse_ok("10.1.2.3:0", "10.1.2.3:0");
    parse_ok("255.255.255.255:65535", "255.255.255.255:65535");
    parse_ok("1.2.3.4:080", "1.2.3.4:80");
    struct keel_addr a;
    assert_int_equal(keel_addr_parse("192.168.0.1:15001", &a), 0);
    assert_int_equal(a.u.sa.sa_family, AF_INET);
    assert_int_equal(a.len, sizeof(struct sockaddr_in));
    assert_int_equal(keel_addr_port(&a), 15001);
}

static void test_addr_parse_ipv6(void **state)
{
    (void)state;
    parse_ok("[::1]:8080", "[::1]:8080");
    parse_ok("[::]:443", "[::]:443");
    parse_ok("[2001:db8::a:1]:15006", "[2001:db8::a:1]:15006");
    parse_ok("[2001:DB8:0:0:0:0:0:1]:1", "[2001:db8::1]:1"); /* canonical form out */
    parse_ok("[::ffff:10.0.0.1]:80", "[::ffff:10.0.0.1]:80");
    parse_ok("[fe80::1%3]:80", "[fe80::1%3]:80");
    parse_ok("[fe80::1%lo]:80", "[fe80::1%1]:80"); /* interface names become indexes; lo is 1 on Linux */
    struct keel_addr a;
    assert_int_equal(keel_addr_parse("[::1]:9", &a), 0);
    assert_int_equal(a.u.sa.sa_family, AF_INET6);
    assert_int_equal(a.len, sizeof(struct sockaddr_in6));
    assert_int_equal(keel_addr_port(&a), 9);
}

static void test_addr_parse_rejects_bad_input(void **state)
{
    (void)state;
    const char *bad[] = {
        NULL,
        "",
        ":",
        "8080",
        "127.0.0.1",
        "127.0.0.1:",
        "127.0.0.1:65536",
        "127.0.0.1:99999999",
        "127.0.0.1:-1",
        "127.0.0.1:+80",
        "127.0.0.1: 80",
        "127.0.0.1:80 ",
        " 127.0.0.1:80",
        "127.0.0.1:8o",
        "256.0.0.1:80",
        "1.2.3:80",
        "1.2.3.4.5:80",
        "01.2.3.4:80",
        "localhost:80",
        "example.com:443",
        "::1:80",
        ":::80",
        "[::1]",
        "[::1]80",
        "[::1]:",
        "[::1:80",
        "::1]:80",
        "[1.2.3.4]:80",
        "[::g]:80",
        "[fe80::1%]:80",
        "[fe80::1%no-such-if0]:80",
        "[fe80::1%99999999999]:80",
        "[]:80",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        parse_bad(bad[i]);
    char longs[KEEL_ADDR_MAX_INPUT + 10];
    memset(longs, '1', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = '\0';
    parse_bad(longs);
}

static void test_addr_format_limits(void **state)
{
    (void)state;
    struct keel_addr a;
    assert_int_equal(keel_addr_parse("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535", &a), 0);
    char buf[KEEL_ADDR_STRLEN];
    int n = keel_addr_format(&a, buf, sizeof(buf));
    assert_true(n > 0 && n < KEEL_ADDR_STRLEN);
    assert_string_equal(buf, "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff%4294967295]:65535");

    assert_int_equal(keel_addr_parse("1.2.3.4:5", &a), 0);
    char small[9] = "untouchd";
    assert_int_equal(keel_addr_format(&a, small, sizeof(small)), KEEL_ETOOBIG);
    assert_memory_equal(small, "untouchd", sizeof(small)); /* untouched on failure */
    char exact[10];
    assert_int_equal(keel_addr_format(&a, exact, sizeof(exact)), 9);

    struct keel_addr none;
    memset(&none, 0, sizeof(none));
    assert_int_equal(keel_addr_format(&none, buf, sizeof(buf)), KEEL_EINVAL);
    assert_int_equal(keel_addr_port(&none), 0);
}

static void test_addr_equal(void **state)
{
    (void)state;
    struct keel_addr a, b, c, d;
    assert_int_equal(keel_addr_parse("10.0.0.1:80", &a), 0);
    assert_int_equal(keel_addr_parse("10.0.0.1:80", &b), 0);
    assert_int_equal(keel_addr_parse("10.0.0.1:81", &c), 0);
    assert_int_equal(keel_addr_parse("[::ffff:10.0.0.1]:80", &d), 0);
    assert_true(keel_addr_equal(&a, &b));
    assert_false(keel_addr_equal(&a, &c));
    assert_false(keel_addr_equal(&a, &d)); /* different families */
}

/* ---- listen, connect, accept, read, write ----------------------------------------------------------------------- */

struct tcp_pair {
    int lfd, client, server;
    struct keel_addr listen_addr;
};

static void tcp_pair_open(struct tcp_pair *p, const char *bind_addr)
{
    struct keel_addr a;
    assert_int_equal(keel_addr_parse(bind_addr, &a), 0);
    assert_int_equal(keel_sock_listen(&a, false, 16, &p->lfd), 0);
    assert_int_equal(keel_sock_local_addr(p->lfd, &p->listen_addr), 0);
    assert_int_not_equal(keel_addr_port(&p->listen_addr), 0); /* ephemeral port assigned */

    int rc = keel_sock_connect(&p->listen_addr, &p->client);
    assert_true(rc == 0 || rc == KEEL_EAGAIN);
    if (rc == KEEL_EAGAIN) {
        wait_fd(p->client, POLLOUT);
        assert_int_equal(keel_sock_connect_result(p->client), 0);
    }
    wait_fd(p->lfd, POLLIN);
    struct keel_addr peer, client_local;
    assert_int_equal(keel_sock_accept(p->lfd, &p->server, &peer), 0);
    assert_int_equal(keel_sock_local_addr(p->client, &client_local), 0);
    assert_true(keel_addr_equal(&peer, &client_local));

    struct keel_addr server_peer, client_peer;
    assert_int_equal(keel_sock_peer_addr(p->server, &server_peer), 0);
    assert_true(keel_addr_equal(&server_peer, &client_local));
    assert_int_equal(keel_sock_peer_addr(p->client, &client_peer), 0);
    assert_true(keel_addr_equal(&client_peer, &p->listen_addr));
}

static void tcp_pair_close(struct tcp_pair *p)
{
    if (p->client >= 0)
        close(p->client);
    if (p->server >= 0)
        close(p->server);
    close(p->lfd);
}

static void assert_nonblocking_cloexec(int fd)
{
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

static void test_listen_connect_accept_ipv4(void **state)
{
    (void)state;
    struct tcp_pair p;
    tcp_pair_open(&p, "127.0.0.1:0");
    assert_nonblocking_cloexec(p.lfd);
    assert_nonblocking_cloexec(p.client);
    assert_nonblocking_cloexec(p.server);
    int v = 0;
    assert_int_equal(keel_sock_getopt(p.lfd, SOL_SOCKET, SO_REUSEADDR, &v), 0);
    assert_int_equal(v, 1);

    /* nothing else waiting */
    int fd = -1;
    assert_int_equal(keel_sock_accept(p.lfd, &fd, NULL), KEEL_EAGAIN);
    assert_int_equal(fd, -1);

    char buf[64];
    assert_int_equal(keel_sock_read(p.server, buf, sizeof(buf)), KEEL_EAGAIN);
    assert_int_equal(keel_sock_write(p.client, "ping", 4), 4);
    wait_fd(p.server, POLLIN);
    assert_int_equal(keel_sock_read(p.server, buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "ping", 4);
    assert_int_equal(keel_sock_read(p.server, buf, 0), 0);

    struct iovec iov[3] = {{"he", 2}, {"llo ", 4}, {"world", 5}};
    assert_int_equal(keel_sock_writev(p.server, iov, 3), 11);
    wait_fd(p.client, POLLIN);
    size_t got = 0;
    while (got < 11) {
        ssize_t n = keel_sock_read(p.client, buf + got, sizeof(buf) - got);
        if (n == KEEL_EAGAIN) {
            wait_fd(p.client, POLLIN);
            continue;
        }
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_memory_equal(buf, "hello world", 11);
    assert_int_equal(keel_sock_writev(p.server, iov, 0), 0);
    assert_int_equal(keel_sock_writev(p.server, iov, -1), KEEL_EINVAL);

    /* half-close: the peer reads EOF, the other direction still works */
    assert_int_equal(keel_sock_shutdown_write(p.client), 0);
    wait_fd(p.server, POLLIN);
    assert_int_equal(keel_sock_read(p.server, buf, sizeof(buf)), KEEL_ECLOSED);
    assert_int_equal(keel_sock_write(p.server, "late", 4), 4);
    wait_fd(p.client, POLLIN);
    assert_int_equal(keel_sock_read(p.client, buf, sizeof(buf)), 4);
    tcp_pair_close(&p);
}

static void test_listen_connect_accept_ipv6(void **state)
{
    (void)state;
    struct keel_addr a;
    int fd;
    assert_int_equal(keel_addr_parse("[::1]:0", &a), 0);
    int rc = keel_sock_listen(&a, false, 0, &fd);
    if (rc == KEEL_EINVAL) {
        skip(); /* no IPv6 loopback here */
        return;
    }
    assert_int_equal(rc, 0);
    int v = 0;
    assert_int_equal(keel_sock_getopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v), 0);
    assert_int_equal(v, 1);
    close(fd);

    struct tcp_pair p;
    tcp_pair_open(&p, "[::1]:0");
    char text[KEEL_ADDR_STRLEN];
    assert_true(keel_addr_format(&p.listen_addr, text, sizeof(text)) > 0);
    assert_int_equal(strncmp(text, "[::1]:", 6), 0);
    assert_int_equal(keel_sock_write(p.client, "v6", 2), 2);
    wait_fd(p.server, POLLIN);
    char buf[4];
    assert_int_equal(keel_sock_read(p.server, buf, sizeof(buf)), 2);
    tcp_pair_close(&p);
}

static void test_read_after_peer_close(void **state)
{
    (void)state;
    struct tcp_pair p;
    tcp_pair_open(&p, "127.0.0.1:0");
    assert_int_equal(keel_sock_write(p.client, "bye", 3), 3);
    close(p.client);
    p.client = -1;
    char buf[8];
    wait_fd(p.server, POLLIN);
    assert_int_equal(keel_sock_read(p.server, buf, sizeof(buf)), 3); /* data before the FIN is delivered */
    assert_int_equal(keel_sock_read(p.server, buf, sizeof(buf)), KEEL_ECLOSED);
    tcp_pair_close(&p);
}

static void test_write_to_closed_peer_no_sigpipe(void **state)
{
    (void)state;
    /* SIGPIPE's default action would kill this process; the test passing proves MSG_NOSIGNAL. */
    struct sigaction dfl = {.sa_handler = SIG_DFL}, old;
    sigaction(SIGPIPE, &dfl, &old);
    struct tcp_pair p;
    tcp_pair_open(&p, "127.0.0.1:0");
    close(p.client);
    p.client = -1;
    ssize_t rc = 0;
    struct iovec iov = {"data", 4};
    for (int i = 0; i < 1000 && rc >= 0; i++) {
        rc = (i % 2) ? keel_sock_write(p.server, "data", 4) : keel_sock_writev(p.server, &iov, 1);
        if (rc >= 0)
            poll(NULL, 0, 1); /* let the peer's RST arrive */
    }
    assert_int_equal(rc, KEEL_ECLOSED);
    assert_int_equal(keel_sock_write(p.server, "x", 1), KEEL_ECLOSED);
    tcp_pair_close(&p);
    sigaction(SIGPIPE, &old, NULL);
}

static void test_write_until_eagain(void **state)
{
    (void)state;
    struct tcp_pair p;
    tcp_pair_open(&p, "127.0.0.1:0");
    assert_int_equal(keel_sock_setopt(p.client, SOL_SOCKET, SO_SNDBUF, 4096), 0);
    assert_int_equal(keel_sock_setopt(p.server, SOL_SOCKET, SO_RCVBUF, 4096), 0);
    static char chunk[65536];
    size_t total = 0;
    ssize_t rc;
    struct iovec iov[2] = {{chunk, sizeof(chunk) / 2}, {chunk + sizeof(chunk) / 2, sizeof(chunk) / 2}};
    for (int i = 0; i < 100000; i++) {
        rc = keel_sock_writev(p.client, iov, 2);
        if (rc < 0)
            break;
        total += (size_t)rc;
    }
    assert_int_equal(rc, KEEL_EAGAIN); /* the buffers filled up; nothing blocks */
    assert_true(total > 0);

    /* drain everything on the other side */
    size_t got = 0;
    static char sink[65536];
    while (got < total) {
        ssize_t n = keel_sock_read(p.server, sink, sizeof(sink));
        if (n == KEEL_EAGAIN) {
            wait_fd(p.server, POLLIN);
            continue;
        }
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_int_equal(got, total);
    tcp_pair_close(&p);
}

static void test_connect_refused(void **state)
{
    (void)state;
    struct keel_addr a, bound;
    int lfd, fd = -1;
    assert_int_equal(keel_addr_parse("127.0.0.1:0", &a), 0);
    assert_int_equal(keel_sock_listen(&a, false, 1, &lfd), 0);
    assert_int_equal(keel_sock_local_addr(lfd, &bound), 0);
    close(lfd); /* nobody listens on that port now */
    int rc = keel_sock_connect(&bound, &fd);
    if (rc == KEEL_EAGAIN) {
        wait_fd(fd, POLLOUT);
        rc = keel_sock_connect_result(fd);
        close(fd);
    } else {
        assert_int_equal(fd, -1); /* no fd on failure */
    }
    assert_int_equal(rc, KEEL_ECONNREFUSED);
}

static void test_listen_errors(void **state)
{
    (void)state;
    struct keel_addr a, bound;
    int fd1, fd2 = -1;
    assert_int_equal(keel_addr_parse("127.0.0.1:0", &a), 0);
    assert_int_equal(keel_sock_listen(&a, false, 0, &fd1), 0);
    assert_int_equal(keel_sock_local_addr(fd1, &bound), 0);
    assert_int_equal(keel_sock_listen(&bound, false, 0, &fd2), KEEL_EADDRINUSE);
    assert_int_equal(fd2, -1);
    close(fd1);

    struct keel_addr none;
    memset(&none, 0, sizeof(none));
    assert_int_equal(keel_sock_listen(&none, false, 0, &fd2), KEEL_EINVAL);
    assert_int_equal(keel_sock_connect(&none, &fd2), KEEL_EINVAL);
    assert_int_equal(keel_addr_parse("192.0.2.1:0", &a), 0); /* TEST-NET-1: not a local address */
    assert_int_equal(keel_sock_listen(&a, false, 0, &fd2), KEEL_EINVAL);
    assert_int_equal(fd2, -1);

    /* accept on something that is not a listening socket */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    assert_int_equal(keel_sock_accept(sv[0], &fd2, NULL), KEEL_EINVAL);
    close(sv[0]);
    close(sv[1]);
    struct keel_addr out;
    assert_int_equal(keel_sock_local_addr(-1, &out), KEEL_EINVAL);
}

static void test_reuseport_two_listeners_same_port(void **state)
{
    (void)state;
    struct keel_addr a, bound;
    int l1, l2, l3 = -1;
    assert_int_equal(keel_addr_parse("127.0.0.1:0", &a), 0);
    assert_int_equal(keel_sock_listen(&a, true, 64, &l1), 0);
    assert_int_equal(keel_sock_local_addr(l1, &bound), 0);
    assert_int_equal(keel_sock_listen(&bound, true, 64, &l2), 0); /* same port, both SO_REUSEPORT */
    int v = 0;
    assert_int_equal(keel_sock_getopt(l2, SOL_SOCKET, SO_REUSEPORT, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(keel_sock_listen(&bound, false, 64, &l3), KEEL_EADDRINUSE); /* every member must opt in */

    /* the kernel spreads connections over both; together they accept every one */
    enum { N = 32 };
    int clients[N];
    for (int i = 0; i < N; i++) {
        int rc = keel_sock_connect(&bound, &clients[i]);
        assert_true(rc == 0 || rc == KEEL_EAGAIN);
    }
    int accepted = 0;
    for (int round = 0; round < 1000 && accepted < N; round++) {
        struct pollfd pf[2] = {{.fd = l1, .events = POLLIN}, {.fd = l2, .events = POLLIN}};
        assert_true(poll(pf, 2, GENEROUS_MS) > 0);
        for (int k = 0; k < 2; k++) {
            int fd;
            while (keel_sock_accept(pf[k].fd, &fd, NULL) == 0) {
                close(fd);
                accepted++;
            }
        }
    }
    assert_int_equal(accepted, N);
    for (int i = 0; i < N; i++)
        close(clients[i]);
    close(l1);
    close(l2);
}

/* ---- options ---------------------------------------------------------------------------------------------------- */

static int getopt_int(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof(v);
    assert_int_equal(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

static void test_keepalive_and_nodelay_are_set(void **state)
{
    (void)state;
    struct tcp_pair p;
    tcp_pair_open(&p, "127.0.0.1:0");
    /* the values from the guide's EnvoyFilter example for a gateway listener */
    assert_int_equal(keel_sock_set_keepalive(p.server, 60, 10, 3), 0);
    assert_int_equal(getopt_int(p.server, SOL_SOCKET, SO_KEEPALIVE), 1);
    assert_int_equal(getopt_int(p.server, IPPROTO_TCP, TCP_KEEPIDLE), 60);
    assert_int_equal(getopt_int(p.server, IPPROTO_TCP, TCP_KEEPINTVL), 10);
    assert_int_equal(getopt_int(p.server, IPPROTO_TCP, TCP_KEEPCNT), 3);

    /* 0 keeps the kernel's value for that option */
    int idle_before = getopt_int(p.client, IPPROTO_TCP, TCP_KEEPIDLE);
    assert_int_equal(keel_sock_set_keepalive(p.client, 0, 5, 0), 0);
    assert_int_equal(getopt_int(p.client, SOL_SOCKET, SO_KEEPALIVE), 1);
    assert_int_equal(getopt_int(p.client, IPPROTO_TCP, TCP_KEEPIDLE), idle_before);
    assert_int_equal(getopt_int(p.client, IPPROTO_TCP, TCP_KEEPINTVL), 5);
    assert_int_equal(keel_sock_set_keepalive(p.client, -1, 5, 0), KEEL_EINVAL);
    assert_int_equal(keel_sock_set_keepalive(p.client, 1000000, 5, 0), KEEL_EINVAL); /* above the kernel's max */

    assert_int_equal(keel_sock_set_nodelay(p.client, true), 0);
    assert_int_not_equal(getopt_int(p.client, IPPROTO_TCP, TCP_NODELAY), 0);
    assert_int_equal(keel_sock_set_nodelay(p.client, false), 0);
    assert_int_equal(getopt_int(p.client, IPPROTO_TCP, TCP_NODELAY), 0);

    /* generic: raw level/name/value triples as EnvoyFilter socket_options give them (SOL_SOCKET=1, SO_KEEPALIVE=9) */
    assert_int_equal(keel_sock_setopt(p.client, 1, 9, 0), 0);
    assert_int_equal(getopt_int(p.client, SOL_SOCKET, SO_KEEPALIVE), 0);
    int v;
    assert_int_equal(keel_sock_getopt(p.client, SOL_SOCKET, SO_KEEPALIVE, &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(keel_sock_setopt(p.client, SOL_SOCKET, 0x7fff, 1), KEEL_EINVAL); /* unknown option */
    assert_int_equal(keel_sock_setopt(-1, SOL_SOCKET, SO_KEEPALIVE, 1), KEEL_EINVAL);
    tcp_pair_close(&p);
}

static void test_original_dst_without_redirect(void **state)
{
    (void)state;
    struct tcp_pair p;
    tcp_pair_open(&p, "127.0.0.1:0");
    struct keel_addr dst, local;
    memset(&dst, 0, sizeof(dst));
    assert_int_equal(keel_sock_local_addr(p.server, &local), 0);
    int rc = keel_sock_original_dst(p.server, &dst);
    /* no iptables redirect here: conntrack either has no record or reports the address dialled, i.e. ours */
    if (rc == 0)
        assert_true(keel_addr_equal(&dst, &local));
    else
        assert_int_equal(rc, KEEL_ENOTFOUND);
    assert_int_equal(keel_sock_original_dst(-1, &dst), KEEL_EINVAL);
    tcp_pair_close(&p);
}

/* ---- fd exhaustion ---------------------------------------------------------------------------------------------- */

static int highest_open_fd(void)
{
    int max = 2;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int fd = atoi(e->d_name);
        if (fd > max)
            max = fd;
    }
    closedir(d);
    return max;
}

static void test_accept_emfile_leaves_connection_queued(void **state)
{
    (void)state;
    struct keel_addr a, bound;
    int lfd, client, fd = -1;
    assert_int_equal(keel_addr_parse("127.0.0.1:0", &a), 0);
    assert_int_equal(keel_sock_listen(&a, false, 4, &lfd), 0);
    assert_int_equal(keel_sock_local_addr(lfd, &bound), 0);
    int rc = keel_sock_connect(&bound, &client);
    assert_true(rc == 0 || rc == KEEL_EAGAIN);
    wait_fd(lfd, POLLIN);

    struct rlimit old, low;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
    low = old;
    low.rlim_cur = (rlim_t)highest_open_fd() + 8;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    /* fill every free slot below the limit (there may be holes below the highest fd) */
    int *fillers = calloc(low.rlim_cur, sizeof(int));
    int nfill = 0, dup_errno = 0;
    for (;;) {
        int f = dup(lfd);
        if (f < 0) {
            dup_errno = errno;
            break;
        }
        fillers[nfill++] = f;
    }
    rc = keel_sock_accept(lfd, &fd, NULL);
    for (int i = 0; i < nfill; i++)
        close(fillers[i]);
    free(fillers);
    assert_int_equal(dup_errno, EMFILE);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
    assert_int_equal(rc, KEEL_EMFILE);
    assert_int_equal(fd, -1);

    /* the connection waited in the backlog: accepted once fds are available again */
    assert_int_equal(keel_sock_accept(lfd, &fd, NULL), 0);
    close(fd);
    close(client);
    close(lfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_parse_ipv4),
        cmocka_unit_test(test_addr_parse_ipv6),
        cmocka_unit_test(test_addr_parse_rejects_bad_input),
        cmocka_unit_test(test_addr_format_limits),
        cmocka_unit_test(test_addr_equal),
        cmocka_unit_test(test_listen_connect_accept_ipv4),
        cmocka_unit_test(test_listen_connect_accept_ipv6),
        cmocka_unit_test(test_read_after_peer_close),
        cmocka_unit_test(test_write_to_closed_peer_no_sigpipe),
        cmocka_unit_test(test_write_until_eagain),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_listen_errors),
        cmocka_unit_test(test_reuseport_two_listeners_same_port),
        cmocka_unit_test(test_keepalive_and_nodelay_are_set),
        cmocka_unit_test(test_original_dst_without_redirect),
        cmocka_unit_test(test_accept_emfile_leaves_connection_queued),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
