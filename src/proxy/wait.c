/*
 * wait.c - `keel proxy wait`: block until a proxy's admin says it is ready
 * (the seed guide's `pilot-agent wait` postStart hook).
 *
 * Polls GET /ready every 100 ms with a short blocking request on loopback.
 */
#include "proxy/proxy.h"

#include "base/err.h"
#include "net/sock.h"

#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static bool ready_once(const struct keel_addr *a)
{
    int fd;
    int rc = keel_sock_connect(a, &fd);
    if (rc != 0 && rc != KEEL_EAGAIN)
        return false;
    struct pollfd p = {fd, POLLOUT, 0};
    if (poll(&p, 1, 1000) != 1 || keel_sock_connect_result(fd) != 0) {
        close(fd);
        return false;
    }
    const char req[] = "GET /ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if (keel_sock_write(fd, req, sizeof(req) - 1) != (ssize_t)(sizeof(req) - 1)) {
        close(fd);
        return false;
    }
    char buf[64];
    size_t got = 0;
    while (got < 12) {
        p = (struct pollfd){fd, POLLIN, 0};
        if (poll(&p, 1, 1000) != 1)
            break;
        ssize_t n = keel_sock_read(fd, buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    return strncmp(buf, "HTTP/1.1 200", 12) == 0;
}

int keel_proxy_wait(const char *admin_addr, unsigned timeout_s)
{
    struct keel_addr a;
    if (keel_addr_parse(admin_addr ? admin_addr : "127.0.0.1:15000", &a) != 0) {
        fprintf(stderr, "keel proxy wait: bad admin address \"%s\"\n", admin_addr);
        return 2;
    }
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (ready_once(&a))
            return 0;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= (time_t)timeout_s) {
            fprintf(stderr, "keel proxy wait: %s not ready after %us\n", admin_addr, timeout_s);
            return 1;
        }
        usleep(100000);
    }
}
