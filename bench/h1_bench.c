/*
 * h1_bench.c - micro-benchmark of the HTTP/1.1 codec (http/h1.c).
 *
 * Times keel_h1_parse_request() on a typical ~300-byte proxied request
 * (origin-form, Host, a browser-ish field set), a small GET, a response
 * head, keel_h1_chunked_feed() over a 16 KiB body in 1 KiB chunks, and
 * keel_h1_write_request_head(). Each case runs for about 0.3 s after a
 * warm-up; the best of 5 rounds is printed as ns per operation.
 *
 * Not part of the CMake build (tests never assert timings); build and run:
 *   cc -O2 -std=c11 -D_GNU_SOURCE -Isrc bench/h1_bench.c src/http/h1.c src/http/message.c \
 *      src/base/err.c src/base/buf.c src/base/str.c -o build/h1_bench && build/h1_bench
 */
#include "base/buf.h"
#include "base/err.h"
#include "http/h1.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char typical[] = "GET /api/v1/products/12345/reviews?page=2&sort=recent HTTP/1.1\r\n"
                              "Host: reviews.shop.svc.cluster.local:9080\r\n"
                              "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101\r\n"
                              "Accept: application/json\r\n"
                              "Accept-Encoding: gzip, deflate, br\r\n"
                              "Accept-Language: en-US,en;q=0.5\r\n"
                              "x-request-id: 6f1c2a9e-0d3b-4c55-9a8e-2b7f0c1d3e4f\r\n"
                              "Connection: keep-alive\r\n"
                              "\r\n";

static const char small[] = "GET / HTTP/1.1\r\nHost: a.example\r\n\r\n";

static const char response[] = "HTTP/1.1 200 OK\r\n"
                               "content-type: application/json\r\n"
                               "content-length: 1234\r\n"
                               "date: Mon, 27 Jul 2026 12:28:53 GMT\r\n"
                               "x-envoy-upstream-service-time: 3\r\n"
                               "server: istio-envoy\r\n"
                               "\r\n";

static struct keel_http_head head;
static volatile size_t sink;
static char *body;
static size_t body_len;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void op_typical(void)
{
    size_t c = 0;
    if (keel_h1_parse_request(typical, sizeof(typical) - 1, &head, &c) != 0)
        abort();
    sink += c;
}

static void op_small(void)
{
    size_t c = 0;
    if (keel_h1_parse_request(small, sizeof(small) - 1, &head, &c) != 0)
        abort();
    sink += c;
}

static void op_response(void)
{
    size_t c = 0;
    struct keel_h1_response r;
    if (keel_h1_parse_response(response, sizeof(response) - 1, keel_str_c("GET"), NULL, &head, &r, &c) != 0)
        abort();
    sink += c;
}

static void op_chunked(void)
{
    struct keel_h1_chunked st;
    keel_h1_chunked_init(&st);
    size_t pos = 0, total = 0;
    for (;;) {
        const char *d;
        size_t used, dn;
        int rc = keel_h1_chunked_feed(&st, body + pos, body_len - pos, &used, &d, &dn);
        pos += used;
        total += dn;
        if (rc == KEEL_H1_CHUNKED_END)
            break;
        if (rc != 0)
            abort();
    }
    sink += total;
}

static struct keel_buf wbuf;

static void op_write(void)
{
    keel_buf_reset(&wbuf);
    if (keel_h1_write_request_head(&wbuf, &head, NULL, 0) != 0)
        abort();
    sink += wbuf.len;
}

static void run(const char *name, void (*op)(void), size_t bytes)
{
    double best = 1e9;
    for (int round = 0; round < 5; round++) {
        size_t n = 0;
        double t0 = now(), t;
        do {
            for (int i = 0; i < 1000; i++)
                op();
            n += 1000;
            t = now();
        } while (t - t0 < 0.3);
        double ns = (t - t0) * 1e9 / (double)n;
        if (ns < best)
            best = ns;
    }
    printf("%-34s %8.1f ns/op  %6zu bytes  %6.2f GB/s\n", name, best, bytes, (double)bytes / best);
}

int main(void)
{
    struct keel_buf b;
    keel_buf_init(&b, 1 << 20);
    char chunk[1024];
    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < 16; i++)
        keel_h1_write_chunk(&b, chunk, sizeof(chunk));
    keel_h1_write_last_chunk(&b, NULL, 0);
    body = b.data;
    body_len = b.len;
    keel_buf_init(&wbuf, 1 << 16);

    run("parse_request typical", op_typical, sizeof(typical) - 1);
    run("parse_request small GET", op_small, sizeof(small) - 1);
    run("parse_response 6 fields", op_response, sizeof(response) - 1);
    run("chunked_feed 16 x 1 KiB", op_chunked, body_len);
    op_typical();
    run("write_request_head typical", op_write, sizeof(typical) - 1);
    keel_buf_free(&b);
    keel_buf_free(&wbuf);
    return 0;
}
