/*
 * dns_test.c - tests for net/dns: `localhost` from /etc/hosts; names served
 * by a tiny fake DNS server (a UDP socket on the same loop answering A
 * queries with fixed records, AAAA with no records, anything else with
 * NXDOMAIN); NXDOMAIN and timeout errors; the smallest TTL; callbacks never
 * run inside keel_dns_resolve(); cancel; free with queries in flight; bad
 * server lists.
 */
#include "net/dns.h"

#include "base/err.h"
#include "net/loop.h"
#include "net/sock.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

/* Hang guard only: a lookup that never ends fails the test instead of hanging it. */
#define GENEROUS_MS 20000

/* ---- a fake DNS server on the test's loop ------------------------------------------------------------------------ */

struct fake_record {
    const char *name; /* lower case, no trailing dot */
    const char *ip;
    uint32_t ttl;
};

struct fake_dns {
    int fd;
    uint16_t port;
    struct keel_io io;
    const struct fake_record *records;
    size_t n_records;
    bool silent; /* read queries, never answer */
    unsigned queries;
};

static size_t put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return 2;
}

static void fake_answer(struct fake_dns *f, const uint8_t *q, size_t n, const struct sockaddr_in *peer)
{
    if (n < 12)
        return;
    /* the question: labels, then QTYPE and QCLASS */
    char name[256];
    size_t pos = 12, nl = 0;
    while (pos < n && q[pos] != 0) {
        size_t l = q[pos++];
        if (pos + l > n || nl + l + 1 >= sizeof(name))
            return;
        if (nl)
            name[nl++] = '.';
        for (size_t i = 0; i < l; i++) {
            char c = (char)q[pos + i];
            name[nl++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        pos += l;
    }
    name[nl] = '\0';
    if (pos + 5 > n)
        return;
    size_t qend = pos + 5;
    uint16_t qtype = (uint16_t)(q[pos + 1] << 8 | q[pos + 2]);
    uint8_t out[512];
    memcpy(out, q, qend);
    bool known = false;
    uint16_t ancount = 0;
    size_t o = qend;
    for (size_t i = 0; i < f->n_records; i++) {
        if (strcmp(f->records[i].name, name) != 0)
            continue;
        known = true;
        if (qtype != 1)
            continue;                /* AAAA and the rest: the name exists, no records of that type */
        o += put16(out + o, 0xC00C); /* the name, compressed: points at the question */
        o += put16(out + o, 1);
        o += put16(out + o, 1);
        o += put16(out + o, (uint16_t)(f->records[i].ttl >> 16));
        o += put16(out + o, (uint16_t)f->records[i].ttl);
        o += put16(out + o, 4);
        inet_pton(AF_INET, f->records[i].ip, out + o);
        o += 4;
        ancount++;
    }
    out[2] = 0x81;                /* QR, RD */
    out[3] = known ? 0x80 : 0x83; /* RA; rcode NOERROR or NXDOMAIN */
    put16(out + 4, 1);
    put16(out + 6, ancount);
    put16(out + 8, 0);
    put16(out + 10, 0);
    sendto(f->fd, out, o, 0, (const struct sockaddr *)peer, sizeof(*peer));
}

static void fake_on_io(struct keel_loop *loop, struct keel_io *io, uint32_t ev)
{
    (void)loop;
    (void)ev;
    struct fake_dns *f = io->data;
    uint8_t buf[512];
    struct sockaddr_in peer;
    socklen_t pl = sizeof(peer);
    ssize_t n = recvfrom(f->fd, buf, sizeof(buf), 0, (struct sockaddr *)&peer, &pl);
    if (n <= 0)
        return;
    f->queries++;
    if (!f->silent)
        fake_answer(f, buf, (size_t)n, &peer);
}

static void fake_start(struct keel_loop *loop, struct fake_dns *f, const struct fake_record *r, size_t n)
{
    memset(f, 0, sizeof(*f));
    f->records = r;
    f->n_records = n;
    f->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(f->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(f->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(f->fd, (struct sockaddr *)&a, &al), 0);
    f->port = ntohs(a.sin_port);
    keel_io_init(&f->io, f->fd, fake_on_io, f);
    assert_int_equal(keel_io_start(loop, &f->io, KEEL_IO_READ), 0);
}

static void fake_stop(struct fake_dns *f)
{
    keel_io_stop(&f->io);
    close(f->fd);
}

/* ---- results ----------------------------------------------------------------------------------------------------- */

struct answer {
    bool done;
    unsigned calls;
    int err;
    char error[128];
    char ips[8][KEEL_DNS_ADDRSTRLEN];
    size_t n;
    uint32_t ttl;
    bool *inside_resolve; /* set while keel_dns_resolve() runs */
    bool called_inside;
};

static void on_answer(const struct keel_dns_result *res, void *data)
{
    struct answer *a = data;
    a->calls++;
    a->done = true;
    a->err = res->err;
    snprintf(a->error, sizeof(a->error), "%s", res->error ? res->error : "");
    a->n = 0;
    for (size_t i = 0; i < res->n_addrs && i < 8; i++)
        snprintf(a->ips[a->n++], KEEL_DNS_ADDRSTRLEN, "%s", res->addrs[i].ip);
    a->ttl = res->ttl;
    if (a->inside_resolve && *a->inside_resolve)
        a->called_inside = true;
}

static void run_until(struct keel_loop *loop, const bool *done)
{
    uint64_t end = keel_now_ms() + GENEROUS_MS;
    while (!*done && keel_now_ms() < end)
        keel_loop_run_once(loop, 50);
    assert_true(*done);
}

static bool has_ip(const struct answer *a, const char *ip)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->ips[i], ip) == 0)
            return true;
    return false;
}

static struct keel_dns *new_dns(struct keel_loop *loop, const struct fake_dns *f, unsigned timeout_ms, unsigned tries)
{
    char servers[64];
    snprintf(servers, sizeof(servers), "127.0.0.1:%u", (unsigned)f->port);
    struct keel_dns_options o = {.servers = servers, .timeout_ms = timeout_ms, .tries = tries};
    struct keel_dns *d = NULL;
    assert_int_equal(keel_dns_new(loop, &o, &d), 0);
    return d;
}

static const struct fake_record records[] = {
    {"backend.test", "127.0.0.7", 30},
    {"backend.test", "127.0.0.8", 12},
    {"one.test", "127.0.0.9", 0},
};

/* ---- tests ------------------------------------------------------------------------------------------------------- */

static void test_localhost_from_hosts_file(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct keel_dns *d = NULL;
    assert_int_equal(keel_dns_new(loop, NULL, &d), 0);
    bool inside = false;
    struct answer a = {.inside_resolve = &inside};
    inside = true;
    assert_int_equal(keel_dns_resolve(d, "localhost", on_answer, &a, NULL), 0);
    inside = false;
    run_until(loop, &a.done);
    assert_false(a.called_inside); /* c-ares answers /etc/hosts at once; we still call back from the loop */
    assert_int_equal(a.err, 0);
    assert_true(has_ip(&a, "127.0.0.1") || has_ip(&a, "::1"));
    assert_int_equal(a.calls, 1);
    assert_int_equal(keel_dns_pending(d), 0);
    keel_dns_free(d);
    keel_loop_free(loop);
}

static void test_names_from_a_dns_server(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct fake_dns f;
    fake_start(loop, &f, records, 3);
    struct keel_dns *d = new_dns(loop, &f, 0, 0);
    struct answer a = {0}, b = {0};
    assert_int_equal(keel_dns_resolve(d, "backend.test.", on_answer, &a, NULL), 0);
    assert_int_equal(keel_dns_resolve(d, "ONE.test.", on_answer, &b, NULL), 0);
    assert_int_equal(keel_dns_pending(d), 2);
    run_until(loop, &a.done);
    run_until(loop, &b.done);
    assert_int_equal(a.err, 0);
    assert_int_equal(a.n, 2);
    assert_string_equal(a.ips[0], "127.0.0.7"); /* the server's order */
    assert_string_equal(a.ips[1], "127.0.0.8");
    assert_int_equal(a.ttl, 12); /* the smallest TTL */
    assert_int_equal(b.err, 0);
    assert_int_equal(b.n, 1);
    assert_string_equal(b.ips[0], "127.0.0.9");
    assert_int_equal(b.ttl, 0);
    assert_true(f.queries >= 2);
    assert_int_equal(keel_dns_pending(d), 0);
    keel_dns_free(d);
    fake_stop(&f);
    keel_loop_free(loop);
}

static void test_unknown_name_is_not_found(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct fake_dns f;
    fake_start(loop, &f, records, 3);
    struct keel_dns *d = new_dns(loop, &f, 0, 0);
    struct answer a = {0};
    assert_int_equal(keel_dns_resolve(d, "nowhere.test.", on_answer, &a, NULL), 0);
    run_until(loop, &a.done);
    assert_int_equal(a.err, KEEL_ENOTFOUND);
    assert_int_equal(a.n, 0);
    assert_true(a.error[0] != '\0');
    keel_dns_free(d);
    fake_stop(&f);
    keel_loop_free(loop);
}

static void test_silent_server_times_out(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct fake_dns f;
    fake_start(loop, &f, records, 3);
    f.silent = true;
    struct keel_dns *d = new_dns(loop, &f, 100, 1);
    struct answer a = {0};
    assert_int_equal(keel_dns_resolve(d, "backend.test.", on_answer, &a, NULL), 0);
    run_until(loop, &a.done);
    assert_int_equal(a.err, KEEL_ETIMEDOUT);
    assert_true(f.queries >= 1);
    keel_dns_free(d);
    fake_stop(&f);
    keel_loop_free(loop);
}

static void test_cancel_and_free_with_queries_in_flight(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct fake_dns f;
    fake_start(loop, &f, records, 3);
    struct keel_dns *d = new_dns(loop, &f, 0, 0);
    struct answer cancelled = {0}, kept = {0}, at_free = {0}, hosts = {0};
    struct keel_dns_query *q = NULL;
    assert_int_equal(keel_dns_resolve(d, "backend.test.", on_answer, &cancelled, &q), 0);
    assert_int_equal(keel_dns_resolve(d, "one.test.", on_answer, &kept, NULL), 0);
    keel_dns_cancel(q);
    assert_int_equal(keel_dns_pending(d), 1);
    run_until(loop, &kept.done);
    for (int i = 0; i < 5; i++)
        keel_loop_run_once(loop, 0);
    assert_false(cancelled.done);
    /* one query still at the server, one answered from /etc/hosts and queued for delivery: neither calls back */
    f.silent = true;
    assert_int_equal(keel_dns_resolve(d, "backend.test.", on_answer, &at_free, NULL), 0);
    assert_int_equal(keel_dns_resolve(d, "localhost", on_answer, &hosts, NULL), 0);
    keel_dns_free(d);
    for (int i = 0; i < 5; i++)
        keel_loop_run_once(loop, 0);
    assert_false(at_free.done);
    assert_false(hosts.done);
    fake_stop(&f);
    keel_loop_free(loop);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct keel_loop *loop = keel_loop_new();
    struct keel_dns *d = NULL;
    struct keel_dns_options o = {.servers = "not an address"};
    assert_int_equal(keel_dns_new(loop, &o, &d), KEEL_EINVAL);
    assert_null(d);
    assert_int_equal(keel_dns_new(loop, NULL, &d), 0);
    struct answer a = {0};
    assert_int_equal(keel_dns_resolve(d, "", on_answer, &a, NULL), KEEL_EINVAL);
    char longname[KEEL_DNS_MAX_NAME + 2];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(keel_dns_resolve(d, longname, on_answer, &a, NULL), KEEL_EINVAL);
    assert_int_equal(keel_dns_pending(d), 0);
    keel_dns_free(d);
    keel_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_localhost_from_hosts_file),
        cmocka_unit_test(test_names_from_a_dns_server),
        cmocka_unit_test(test_unknown_name_is_not_found),
        cmocka_unit_test(test_silent_server_times_out),
        cmocka_unit_test(test_cancel_and_free_with_queries_in_flight),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
