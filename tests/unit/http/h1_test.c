/*
 * h1_test.c - tests for http/h1 (and http/message): every parsing rule of
 * docs/http1.md on real request and response bytes, the classic smuggling
 * vectors (CL.TE, TE.CL, TE.TE obfuscations, conflicting Content-Length,
 * obs-fold, NUL, bare CR/LF), incremental feeding at every split point,
 * the chunked decoder (sizes, extensions, trailers, splits), the writers
 * (round trips and header injection), and a replay of the fuzz corpus
 * through the fuzz target's own invariant checks.
 */
#include "http/h1.h"

#include "base/buf.h"
#include "base/err.h"
#include "http/message.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* The fuzz target's invariant checks, reused by the tests below. Its corpus is replayed by the ctest
 * fuzz-replay/h1 (tests/fuzz/replay_main.c) in every build. */
#include "../../fuzz/h1_fuzz.c"

static struct keel_http_head H;
static struct keel_h1_request RQ;
static struct keel_h1_response RS;
static size_t consumed;

/* Parses a request held in a heap copy of exactly n bytes (ASan sees any over-read). */
static int req_n(const char *s, size_t n)
{
    char *c = malloc(n ? n : 1);
    memcpy(c, s, n);
    consumed = (size_t)-1;
    int rc = keel_h1_parse_request_ex(c, n, NULL, &H, &RQ, &consumed);
    /* H points into c: keep it until the next call */
    static char *last;
    free(last);
    last = c;
    return rc;
}

static int req(const char *s)
{
    return req_n(s, strlen(s));
}

static int req_lim(const char *s, const struct keel_h1_limits *lim)
{
    consumed = (size_t)-1;
    return keel_h1_parse_request_ex(s, strlen(s), lim, &H, &RQ, &consumed);
}

static int resp_n(const char *s, size_t n, const char *method)
{
    consumed = (size_t)-1;
    return keel_h1_parse_response(s, n, keel_str_c(method), NULL, &H, &RS, &consumed);
}

static int resp(const char *s, const char *method)
{
    return resp_n(s, strlen(s), method);
}

/* A request with the given field lines after "POST / HTTP/1.1" and Host. */
static int post(const char *fields)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "POST / HTTP/1.1\r\nHost: a.example\r\n%s\r\n", fields);
    return req(buf);
}

#define assert_str(s, lit)                                                                                             \
    do {                                                                                                               \
        struct keel_str s_ = (s);                                                                                      \
        if (s_.n != strlen(lit) || memcmp(s_.p, lit, s_.n) != 0)                                                       \
            fail_msg("expected \"%s\", got \"%.*s\"", lit, (int)s_.n, s_.p);                                           \
    } while (0)

#define assert_rc(expr, want)                                                                                          \
    do {                                                                                                               \
        int got_ = (expr);                                                                                             \
        if (got_ != (want))                                                                                            \
            fail_msg("%s: expected %s, got %s", #expr, keel_h1_error_name(want), keel_h1_error_name(got_));            \
    } while (0)

static const char realistic[] = "POST /api/v1/orders?expand=items&limit=10 HTTP/1.1\r\n"
                                "Host: orders.shop.svc.cluster.local:8080\r\n"
                                "User-Agent: Mozilla/5.0 (X11; Linux x86_64) curl/8.5.0\r\n"
                                "Accept: application/json, */*;q=0.8\r\n"
                                "Accept-Encoding: gzip, deflate, br\r\n"
                                "Content-Type: application/json\r\n"
                                "Content-Length: 27\r\n"
                                "x-request-id: 6f1c2a9e-0d3b-4c55-9a8e-2b7f0c1d3e4f\r\n"
                                "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
                                "Connection: keep-alive\r\n"
                                "\r\n";

/* ---- request line ----------------------------------------------------------------------------- */

static void test_simple_get(void **state)
{
    (void)state;
    const char *s = "GET /a/b?x=1&y HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n\r\nNEXT";
    assert_rc(req(s), 0);
    assert_int_equal(consumed, strlen(s) - 4); /* the next bytes are not consumed */
    assert_str(H.method, "GET");
    assert_str(H.target, "/a/b?x=1&y");
    assert_str(H.path, "/a/b");
    assert_str(H.query, "x=1&y");
    assert_str(H.authority, "example.com");
    assert_int_equal(H.scheme.n, 0);
    assert_int_equal(H.version, KEEL_HTTP_11);
    assert_int_equal(RQ.form, KEEL_H1_FORM_ORIGIN);
    assert_false(RQ.host_ignored);
    assert_int_equal(H.nheaders, 2);
    assert_str(H.headers[1].name, "User-Agent");
    assert_str(H.headers[1].value, "t/1");
    assert_true(H.keep_alive);
    assert_false(H.chunked);
    assert_false(H.has_content_length);
    assert_false(H.upgrade);
    assert_false(H.expect_continue);
}

static void test_realistic_request(void **state)
{
    (void)state;
    assert_rc(req(realistic), 0);
    assert_int_equal(consumed, strlen(realistic));
    assert_int_equal(H.nheaders, 9);
    assert_true(H.has_content_length);
    assert_int_equal(H.content_length, 27);
    assert_str(H.authority, "orders.shop.svc.cluster.local:8080");
    assert_str(*keel_http_head_get(&H, "ACCEPT"), "application/json, */*;q=0.8");
}

static void test_short_form_matches_ex(void **state)
{
    (void)state;
    size_t c = 0;
    assert_rc(keel_h1_parse_request(realistic, strlen(realistic), &H, &c), 0);
    assert_int_equal(c, strlen(realistic));
    assert_rc(keel_h1_parse_request("GET / HTTP/1.1\r\n", 16, &H, &c), KEEL_EAGAIN);
}

static void test_pipelined_requests(void **state)
{
    (void)state;
    const char *s = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t c1 = 0, c2 = 0;
    assert_rc(keel_h1_parse_request(s, strlen(s), &H, &c1), 0);
    assert_str(H.path, "/1");
    assert_rc(keel_h1_parse_request(s + c1, strlen(s) - c1, &H, &c2), 0);
    assert_str(H.path, "/2");
    assert_int_equal(c1 + c2, strlen(s));
}

static void test_leading_empty_lines(void **state)
{
    (void)state;
    assert_rc(req("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0); /* RFC 9112 section 2.2 */
    assert_int_equal(consumed, 4 + 27);
    assert_rc(req("\r\n"), KEEL_EAGAIN);
    assert_rc(req("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), KEEL_H1_E_BARE_LF);
    assert_rc(req("\rGET / HTTP/1.1\r\nHost: a\r\n\r\n"), KEEL_H1_E_LONE_CR);
}

static void test_method(void **state)
{
    (void)state;
    assert_rc(req("PURGE /x HTTP/1.1\r\nHost: a\r\n\r\n"), 0); /* extension methods are tokens */
    assert_str(H.method, "PURGE");
    assert_rc(req("M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n"), KEEL_H1_E_TARGET_FORM);
    assert_rc(req("G@T / HTTP/1.1\r\nHost: a\r\n\r\n"), KEEL_H1_E_METHOD);
    assert_rc(req("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n"), KEEL_H1_E_METHOD);
    assert_rc(req(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), KEEL_H1_E_METHOD);
    assert_rc(req("G\xc3\x89T / HTTP/1.1\r\nHost: a\r\n\r\n"), KEEL_H1_E_METHOD);
    const char nul[] = "G\0T / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_rc(req_n(nul, sizeof(nul) - 1), KEEL_H1_E_METHOD);
    assert_rc(req("GET\r\n\r\n"), KEEL_H1_E_REQUEST_LINE);
    assert_int_equal(keel_h1_error_status(KEEL_H1_E_METHOD), 400);
}

static void test_request_line_separators(void **state)
{
    (void)state;
    assert_rc(req("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), KEEL_H1_E_REQUEST_LINE);
    assert_rc(req("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), KEEL_H1_E_REQUEST_LINE);
    assert_rc(req("GET /\tHTTP/1.1\r\nHost: a\r\n\r\n"), KEEL_H1_E_REQUEST_LINE);
    assert_rc(req("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), KEEL_H1_E_VERSION);
    assert_rc(req("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), KEEL_H1_E_VERSION);
    assert_rc(req("GET /\r\n\r\n"), KEEL_H1_E_REQUEST_LINE); /* HTTP/0.9 */
    assert_rc(req("GET / HTTP/1.1\n"), KEEL_EAGAIN);         /* too short to decide yet */
    assert_rc(req("GET / HTTP/1.1\n\n"), KEEL_H1_E_BARE_LF);
    assert_rc(req("GET / HTTP/1.1\nHost: a\n\n"), KEEL_H1_E_BARE_LF);
}

static void test_version(void **state)
{
    (void)state;
    assert_rc(req("GET / HTTP/1.0\r\n\r\n"), 0);
    assert_int_equal(H.version, KEEL_HTTP_10);
    assert_rc(req("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), KEEL_H1_E_VERSION_UNSUPPORTED);
    assert_rc(req("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), KEEL_H1_E_VERSION_UNSUPPORTED);
    assert_rc(req("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), KEEL_H1_E_VERSION_UNSUPPORTED);
    assert_rc(req("GET / HTTP/3.1\r\nHost: a\r\n\r\n"), KEEL_H1_E_VERSION_UNSUPPORTED);
    assert_int_equal(keel_h1_error_status(KEEL_H1_E_VERSION_UNSUPPORTED), 505);
    assert_rc(req("GET / http/1.1\r\nHost: a\r\n\r\n"), KEEL_H1_E_VERSION);
    assert_rc(req("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), KEEL_H1_E_VERSION);
    assert_rc(req("GET / HTTP/11\r\nHost: a\r\n\r\n"), KEEL_H1_E_VERSION);
    assert_rc(req("GET / HTTP/1.x\r\nHost: a\r\n\r\n"), KEEL_H1_E_VERSION);
    assert_rc(req("GET / HTTP/1.1\rHost: a\r\n\r\n"), KEEL_H1_E_LONE_CR);
    assert_int_equal(keel_h1_error_status(KEEL_H1_E_VERSION), 400);
}

/* Every byte inside an origin-form target: allowed exactly when it is VCHAR but '#'. */
static void test_target_characters(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        if (c == ' ')
            continue;
        char buf[64];
        int n = snprintf(buf, sizeof(buf), "GET /a%cb HTTP/1.1\r\nHost: a\r\n\r\n", c ? c : '!');
        buf[6] = (char)c;
        int rc = req_n(buf, (size_t)n);
        bool want = c > 0x20 && c < 0x7f && c != '#';
        if (want != (rc == 0))
            fail_msg("byte 0x%02x in target: rc %s", c, keel_h1_error_name(rc));
    }
    assert_rc(req("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), KEEL_H1_E_VERSION);
    assert_rc(req("GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n"), KEEL_H1_E_TARGET);
}

static void test_target_too_long(void **state)
{
    (void)state;
    size_t n = KEEL_H1_MAX_TARGET;
    char *buf = malloc(n + 64);
    memcpy(buf, "GET /", 5);
    memset(buf + 5, 'a', n - 1);
    strcpy(buf + 4 + n, " HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_rc(req(buf), 0);
    assert_int_equal(H.target.n, n);
    buf[4 + n] = 'a';
    strcpy(buf + 5 + n, " HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_rc(req(buf), KEEL_H1_E_TARGET_TOO_LONG);
    assert_int_equal(keel_h1_error_status(KEEL_H1_E_TARGET_TOO_LONG), 414);
    /* decided as soon as the limit is passed, without waiting for the end of the line */
    assert_rc(req_n(buf, 5 + n), KEEL_H1_E_TARGET_TOO_LONG);
    assert_rc(req_n(buf, 4 + n), KEEL_EAGAIN);
    struct keel_h1_limits lim = {0, 8, 0};
    assert_rc(req_lim("GET /1234567 HTTP/1.1\r\nHost: a\r\n\r\n", &lim), 0);
    assert_rc(req_lim("GET /12345678 HTTP/1.1\r\nHost: a\r\n\r\n", &lim), KEEL_H1_E_TARGET_TOO_LONG);
    free(buf);
}

static void test_origin_form(void **state)
{
    (void)state;
    assert_rc(req("GET /p? HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    assert_str(H.path, "/p");
    assert_int_equal(H.query.n, 0);
    assert_rc(req("GET /p?a?b=/c HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    assert_str(H.query, "a?b=/c");
    assert_rc(req("GET //double/%2e%2e/ HTTP/1.1\r\nHost: a\r\n\r\n"), 0); /* normalising is the router's */
    assert_str(H.path, "//double/%2e%2e/");
    assert_rc(req("GET /{\"json\":[1,2]}|^`\\ HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
}

static void test_absolute_form(void **state)
{
    (void)state;
    assert_rc(req("GET http://example.com:8080/p/q?x=1 HTTP/1.1\r\nHost: other.example\r\n\r\n"), 0);
    assert_int_equal(RQ.form, KEEL_H1_FORM_ABSOLUTE);
    assert_str(H.scheme, "http");
    assert_str(H.authority, "example.com:8080"); /* RFC 9112 section 3.2.2: not the Host field */
    assert_true(RQ.host_ignored);
    assert_str(*keel_http_head_get(&H, "host"), "other.example");
    assert_str(H.path, "/p/q");
    assert_str(H.query, "x=1");
    assert_str(H.target, "http://example.com:8080/p/q?x=1");

    assert_rc(req("GET HTTPS://Example.COM HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    assert_str(H.scheme, "HTTPS");
    assert_str(H.path, "/"); /* empty path means "/" */
    assert_rc(req("GET http://a.example?q HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    assert_str(H.path, "/");
    assert_str(H.query, "q");
    assert_rc(req("GET http://[2001:db8::1]:443/ HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    assert_str(H.authority, "[2001:db8::1]:443");
    assert_rc(req("GET http://a.example/ HTTP/1.0\r\n\r\n"), 0); /* HTTP/1.0 needs no Host */
    assert_false(RQ.host_ignored);
    assert_str(H.authority, "a.example");

    assert_rc(req("GET http://a.example/ HTTP/1.1\r\n\r\n"), KEEL_H1_E_HOST_MISSING);
    assert_rc(req("GET ftp://a.example/ HTTP/1.1\r\nHost: x\r\n\r\n"), KEEL_H1_E_TARGET);
    assert_rc(req("GET httpx://a.example/ HTTP/1.1\r\nHost: x\r\n\r\n"), KEEL_H1_E_TARGET);
    assert_rc(req("GET http:/a.example/ HTTP/1.1\r\nHost: x\r\n\r\n"), KEEL_H1_E_TARGET);
    assert_rc(req("GET http://user:pw@a.example/ HTTP/1.1\r\nHost: x\r\n\r\n"), KEEL_H1_E_TARGET);
    assert_rc(req("GET http:///p HTTP/1.1\r\nHost: x\r\n\r\n"), KEEL_H1_E_TARGET);
    assert_rc(req("GET http://:80/p HTTP/1.1\r\nHost: x\r\n\r\n"), KEEL_H1_E_TARGET);
    assert_rc(req("GET http://a.example:99999/ HTTP/1.1\r\nHost: x\r\n\r\n"), KEEL_H1_E_TARGET);
    assert_rc(req("GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n"), KEEL_H1_E_TARGET);
    assert_rc(req("GET a.example/p HTTP/1.1\r\nHost: x\r\n\r\n"), KEEL_H1_E_TARGET);
    assert_rc(req("GET 1http://a/ HTTP/1.1\r\nHost: x\r\n\r\n"), KEEL_H1_E_TARGET);
}

static void test_authority_form(void **state)
{
    (void)state;
    assert_rc(req("CONNECT db.example:5432 HTTP/1.1\r\nHost: db.example:5432\r\n\r\n"), 0);
    assert_int_equal(RQ.form, KEEL_H1_FORM_AUTHORITY);
    assert_str(H.authority, "db.example:5432");
    assert_int_equal(H.path.n, 0);
    assert_true(H.upgrade); /* the connection becomes a tunnel after a 2xx */
    assert_true(RQ.host_ignored);
    assert_rc(req("CONNECT [::1]:443 HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    assert_rc(req("CONNECT db.example:5432 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"), 0);

    assert_rc(req("CONNECT db.example HTTP/1.1\r\nHost: x\r\n\r\n"), KEEL_H1_E_TARGET); /* port required */
    assert_rc(req("CONNECT db.example: HTTP/1.1\r\nHost: x\r\n\r\n"), KEEL_H1_E_TARGET);
    assert_rc(req("CONNECT :443 HTTP/1.1\r\nHost: x\r\n\r\n"), KEEL_H1_E_TARGET);
    assert_rc(req("CONNECT / HTTP/1.1\r\nHost: x\r\n\r\n"), KEEL_H1_E_TARGET_FORM);
    assert_rc(req("CONNECT http://a:1/ HTTP/1.1\r\nHost: x\r\n\r\n"), KEEL_H1_E_TARGET);
    assert_rc(req("GET db.example:5432 HTTP/1.1\r\nHost: x\r\n\r\n"), KEEL_H1_E_TARGET);
    assert_rc(req("CONNECT a:1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"), KEEL_H1_E_CONNECT_BODY);
    assert_rc(req("CONNECT a:1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"), KEEL_H1_E_CONNECT_BODY);
}

static void test_asterisk_form(void **state)
{
    (void)state;
    assert_rc(req("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    assert_int_equal(RQ.form, KEEL_H1_FORM_ASTERISK);
    assert_str(H.path, "*");
    assert_str(H.authority, "a");
    assert_rc(req("OPTIONS /x HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    assert_rc(req("GET * HTTP/1.1\r\nHost: a\r\n\r\n"), KEEL_H1_E_TARGET_FORM);
    assert_rc(req("OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n"), KEEL_H1_E_TARGET);
    assert_rc(req("options * HTTP/1.1\r\nHost: a\r\n\r\n"), KEEL_H1_E_TARGET_FORM); /* methods are case-sensitive */
}

/* ---- Host ----------------------------------------------------------------------------------------- */

static int host(const char *value)
{
    char buf[512];
    snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", value);
    return req(buf);
}

static void test_host(void **state)
{
    (void)state;
    const char *good[] = {"a.example",
                          "A.Example.COM:80",
                          "localhost:1",
                          "127.0.0.1",
                          "10.0.0.1:8080",
                          "[::1]",
                          "[::1]:8080",
                          "[2001:db8::1]",
                          "[::ffff:1.2.3.4]",
                          "[1:2:3:4:5:6:7:8]",
                          "xn--bcher-kva",
                          "a_b.example",
                          "a%2eb",
                          "a.example.",
                          "a:0",
                          "a:65535",
                          "[1::]",
                          "[::]",
                          "a!$&'()*+,;=b",
                          ""};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        if (host(good[i]) != 0)
            fail_msg("Host \"%s\" rejected", good[i]);
    assert_rc(host("A.Example.COM:80"), 0);
    assert_str(H.authority, "A.Example.COM:80");
    const char *bad[] = {"a b",
                         "a/b",
                         "a@b",
                         "a:",
                         "a:65536",
                         "a:123456",
                         "a:8x",
                         "[::1",
                         "[::1]x",
                         "[zz::1]",
                         "[1:2:3:4:5:6:7:8:9]",
                         "[:::]",
                         "[1::2::3]",
                         "[1:2:3:4:5:6:7:1.2.3.4]",
                         "[::1.2.3.256]",
                         "[::01.2.3.4]",
                         "a%2",
                         "a%zz",
                         "[fe80::1%25eth0]",
                         "a?b",
                         "a#b",
                         "\"a\"",
                         "a\\b",
                         "[v1.x]",
                         ":80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (host(bad[i]) != KEEL_H1_E_HOST_INVALID)
            fail_msg("Host \"%s\" accepted (or other error)", bad[i]);
}

static void test_host_rules(void **state)
{
    (void)state;
    assert_rc(req("GET / HTTP/1.1\r\n\r\n"), KEEL_H1_E_HOST_MISSING);
    assert_rc(req("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), KEEL_H1_E_HOST_DUPLICATE);
    assert_rc(req("GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\nHOST: b\r\n\r\n"), KEEL_H1_E_HOST_DUPLICATE);
    assert_rc(req("GET / HTTP/1.0\r\n\r\n"), 0);
    assert_int_equal(H.authority.n, 0);
    assert_rc(req("GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"), KEEL_H1_E_HOST_DUPLICATE);
    assert_rc(req("GET / HTTP/1.1\r\nHost:\r\n\r\n"), 0); /* empty Host is allowed (RFC 9112 section 3.2) */
    assert_rc(req("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), KEEL_H1_E_HEADER_SPACE);
}

/* ---- field lines ------------------------------------------------------------------------------- */

static void test_header_names(void **state)
{
    (void)state;
    assert_rc(post("Foo Bar: x\r\n"), KEEL_H1_E_HEADER_SPACE);
    assert_rc(post("Foo : x\r\n"), KEEL_H1_E_HEADER_SPACE);
    assert_rc(post("Foo\t: x\r\n"), KEEL_H1_E_HEADER_SPACE);
    assert_rc(post(": x\r\n"), KEEL_H1_E_HEADER_NAME);
    assert_rc(post("F(o): x\r\n"), KEEL_H1_E_HEADER_NAME);
    assert_rc(post("F\xc3\xa9: x\r\n"), KEEL_H1_E_HEADER_NAME);
    assert_rc(post("Foo\r\n"), KEEL_H1_E_HEADER_COLON);
    assert_rc(post("X-Custom_Header.v2~!#$%&'*+^`|: ok\r\n"), 0);
    /* every byte in a name: allowed exactly when it is a tchar (RFC 9110 section 5.6.2) */
    for (int c = 0; c < 256; c++) {
        if (c == ':')
            continue;
        char buf[128];
        int n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX%cY: 1\r\n\r\n", '!');
        buf[26] = (char)c;
        int rc = req_n(buf, (size_t)n);
        bool want = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c && strchr("!#$%&'*+-.^_`|~", c));
        if (want != (rc == 0))
            fail_msg("byte 0x%02x in a field name: rc %s", c, keel_h1_error_name(rc));
    }
}

static void test_header_values(void **state)
{
    (void)state;
    assert_rc(post("X-A:   bar  baz \t \r\nX-B:\r\nX-C: \t\r\nX-D:x\r\n"), 0);
    assert_str(*keel_http_head_get(&H, "x-a"), "bar  baz"); /* OWS trimmed, inner spaces kept */
    assert_str(*keel_http_head_get(&H, "x-b"), "");
    assert_str(*keel_http_head_get(&H, "x-c"), "");
    assert_str(*keel_http_head_get(&H, "x-d"), "x");
    assert_rc(post("X-Name: caf\xc3\xa9 \x80\xff\r\n"), 0); /* obs-text */
    assert_str(*keel_http_head_get(&H, "x-name"), "caf\xc3\xa9 \x80\xff");
    assert_rc(post("X-Tab: a\tb\r\n"), 0);
    /* every byte in a value: allowed exactly when it is HTAB, SP, VCHAR or obs-text */
    for (int c = 0; c < 256; c++) {
        if (c == '\r')
            continue;
        char buf[128];
        int n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: a\r\nX: a%cb\r\n\r\n", '!');
        buf[29] = (char)c;
        int rc = req_n(buf, (size_t)n);
        bool want = c == '\t' || c >= 0x20;
        want = want && c != 0x7f;
        if (want != (rc == 0))
            fail_msg("byte 0x%02x in a field value: rc %s", c, keel_h1_error_name(rc));
    }
}

static void test_nul_and_controls_in_values(void **state)
{
    (void)state;
    const char a[] = "GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n";
    assert_rc(req_n(a, sizeof(a) - 1), KEEL_H1_E_HEADER_VALUE);
    const char b[] = "GET / HTTP/1.1\r\nHost: a\0.evil\r\n\r\n";
    assert_rc(req_n(b, sizeof(b) - 1), KEEL_H1_E_HEADER_VALUE);
    assert_rc(post("X: a\x7f\r\n"), KEEL_H1_E_HEADER_VALUE);
    assert_rc(post("X: a\x0b\r\n"), KEEL_H1_E_HEADER_VALUE);
    assert_rc(post("Transfer-Encoding: chunked\x0b\r\n"), KEEL_H1_E_HEADER_VALUE);
}

static void test_obs_fold(void **state)
{
    (void)state;
    assert_rc(post("X-A: one\r\n two\r\n"), KEEL_H1_E_OBS_FOLD);
    assert_rc(post("X-A: one\r\n\ttwo\r\n"), KEEL_H1_E_OBS_FOLD);
    assert_rc(req("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), KEEL_H1_E_OBS_FOLD); /* whitespace before the first field */
    /* the smuggling variant: a folded Transfer-Encoding that another parser would unfold */
    assert_rc(post("Content-Length: 5\r\nX: y\r\n Transfer-Encoding: chunked\r\n"), KEEL_H1_E_OBS_FOLD);
    assert_rc(post("Transfer-Encoding:\r\n chunked\r\n"), KEEL_H1_E_OBS_FOLD);
}

static void test_line_endings(void **state)
{
    (void)state;
    assert_rc(req("GET / HTTP/1.1\nHost: a\r\n\r\n"), KEEL_H1_E_BARE_LF);
    assert_rc(req("GET / HTTP/1.1\r\nHost: a\n\r\n"), KEEL_H1_E_BARE_LF);
    assert_rc(req("GET / HTTP/1.1\r\nHost: a\r\n\n"), KEEL_H1_E_BARE_LF);
    assert_rc(req("GET / HTTP/1.1\r\nHost: a\r\nX\n: b\r\n\r\n"), KEEL_H1_E_BARE_LF);
    assert_rc(req("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), KEEL_H1_E_LONE_CR);
    assert_rc(req("GET / HTTP/1.1\r\nHost: a\r\r\n\r\n"), KEEL_H1_E_LONE_CR);
    assert_rc(req("GET / HTTP/1.1\r\nHost: a\r\n\rX"), KEEL_H1_E_LONE_CR);
    assert_rc(req("GET / HTTP/1.1\r\nX: a\rb\r\nHost: a\r\n\r\n"), KEEL_H1_E_LONE_CR);
    assert_rc(req("GET / HTTP/1.1\r\nHost: a\r\n\r"), KEEL_EAGAIN); /* the LF may still come */
}

/* ---- limits ------------------------------------------------------------------------------------- */

static void test_head_size_limit(void **state)
{
    (void)state;
    struct keel_h1_limits lim = {64, 0, 0};
    const char *s = "GET / HTTP/1.1\r\nHost: a\r\nX: 01234567890123456789012345678901\r\n\r\n"; /* 64 bytes */
    assert_int_equal(strlen(s), 64);
    assert_rc(req_lim(s, &lim), 0);
    lim.max_head = 63;
    assert_rc(req_lim(s, &lim), KEEL_H1_E_HEAD_TOO_LARGE);
    consumed = 0;
    assert_rc(keel_h1_parse_request_ex(s, 62, &lim, &H, NULL, &consumed), KEEL_EAGAIN);
    assert_rc(keel_h1_parse_request_ex(s, 63, &lim, &H, NULL, &consumed), KEEL_H1_E_HEAD_TOO_LARGE);
    assert_int_equal(keel_h1_error_status(KEEL_H1_E_HEAD_TOO_LARGE), 431);
    /* an error inside the limit is reported as itself, not as 431 */
    assert_rc(req_lim("GET / HTTP/1.1\r\nHost: a\r\nX : 0123456789012345678901234567890123456789\r\n", &lim),
              KEEL_H1_E_HEADER_SPACE);

    /* the default: 64 KiB */
    size_t n = KEEL_H1_MAX_HEAD + 100;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    memcpy(big, "GET / HTTP/1.1\r\nHost: a\r\nX: ", 28);
    big[n] = '\0';
    assert_rc(req(big), KEEL_H1_E_HEAD_TOO_LARGE);
    memcpy(big + KEEL_H1_MAX_HEAD - 4, "\r\n\r\n", 4);
    assert_rc(req_n(big, KEEL_H1_MAX_HEAD), 0);
    assert_int_equal(consumed, KEEL_H1_MAX_HEAD);
    free(big);
}

static void test_header_count_limit(void **state)
{
    (void)state;
    char *buf = malloc(16384);
    size_t off = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 1; i < KEEL_HTTP_MAX_HEADERS; i++)
        off += (size_t)sprintf(buf + off, "X-%d: %d\r\n", i, i);
    strcpy(buf + off, "\r\n");
    assert_rc(req(buf), 0);
    assert_int_equal(H.nheaders, KEEL_HTTP_MAX_HEADERS);
    sprintf(buf + off, "X-last: 1\r\n\r\n");
    assert_rc(req(buf), KEEL_H1_E_TOO_MANY_HEADERS);
    assert_int_equal(keel_h1_error_status(KEEL_H1_E_TOO_MANY_HEADERS), 431);
    struct keel_h1_limits lim = {0, 0, 2};
    assert_rc(req_lim("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\n\r\n", &lim), 0);
    assert_rc(req_lim("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n", &lim), KEEL_H1_E_TOO_MANY_HEADERS);
    free(buf);
}

/* ---- incremental parsing ----------------------------------------------------------------------- */

static void check_same(const struct keel_http_head *a, const char *abuf, const struct keel_http_head *b,
                       const char *bbuf)
{
    check_same_head(a, abuf, b, bbuf); /* from h1_fuzz.c */
}

/* A connection that receives one byte per read: the parser sees every prefix, in order. */
static void test_request_byte_by_byte(void **state)
{
    (void)state;
    static struct keel_http_head whole;
    size_t n = strlen(realistic), c_whole = 0;
    assert_rc(keel_h1_parse_request(realistic, n, &whole, &c_whole), 0);
    char *conn = malloc(n);
    for (size_t got = 1; got <= n; got++) {
        conn[got - 1] = realistic[got - 1];
        char *view = malloc(got); /* exactly the bytes received so far */
        memcpy(view, conn, got);
        size_t c = 0;
        int rc = keel_h1_parse_request(view, got, &H, &c);
        if (got < n) {
            if (rc != KEEL_EAGAIN)
                fail_msg("prefix of %zu bytes: %s", got, keel_h1_error_name(rc));
        } else {
            assert_rc(rc, 0);
            assert_int_equal(c, c_whole);
            check_same(&whole, realistic, &H, view);
        }
        free(view);
    }
    free(conn);
}

/* Every split point of a request with a body after it, and of invalid requests: the first read
 * gives KEEL_EAGAIN or exactly the final answer. */
static void test_every_split_point(void **state)
{
    (void)state;
    const char *inputs[] = {
        realistic,
        "GET http://a.example/x HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: 1\nY: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n y\r\n\r\n",
    };
    static struct keel_http_head whole;
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        size_t n = strlen(inputs[i]), cw = 0;
        int rw = keel_h1_parse_request(inputs[i], n, &whole, &cw);
        for (size_t k = 0; k <= n; k++) {
            char *view = malloc(k ? k : 1);
            memcpy(view, inputs[i], k);
            size_t c = 0;
            int rc = keel_h1_parse_request(view, k, &H, &c);
            if (rc != KEEL_EAGAIN && rc != rw)
                fail_msg("input %zu split at %zu: %s, whole: %s", i, k, keel_h1_error_name(rc), keel_h1_error_name(rw));
            if (rc == 0) {
                assert_int_equal(c, cw);
                check_same(&whole, inputs[i], &H, view);
            }
            free(view);
        }
    }
}

static void test_has_head(void **state)
{
    (void)state;
    size_t n = strlen(realistic), scanned = 0;
    for (size_t got = 0; got < n; got++)
        assert_false(keel_h1_has_head(realistic, got, &scanned));
    assert_true(keel_h1_has_head(realistic, n, &scanned));
    assert_int_equal(scanned, n);
    scanned = 0;
    const char *lf = "GET / HTTP/1.1\r\nHost: a\r\n\n";
    assert_false(keel_h1_has_head(lf, strlen(lf), &scanned));
    scanned = 0;
    assert_false(keel_h1_has_head("\r\n\r", 3, &scanned));
    assert_true(keel_h1_has_head("\r\n\r\n", 4, &scanned));
}

/* ---- framing ------------------------------------------------------------------------------------ */

static void test_content_length(void **state)
{
    (void)state;
    assert_rc(post("Content-Length: 5\r\n"), 0);
    assert_true(H.has_content_length);
    assert_int_equal(H.content_length, 5);
    assert_false(H.chunked);
    assert_rc(post("content-length:\t 0042 \t\r\n"), 0);
    assert_int_equal(H.content_length, 42);
    assert_rc(post("Content-Length: 9223372036854775807\r\n"), 0);
    assert_int_equal(H.content_length, INT64_MAX);
    const char *bad[] = {"+5",
                         "-1",
                         "1_0",
                         "0x10",
                         "5.0",
                         "5 5",
                         "5, 5",
                         "",
                         "1e3",
                         "\xd9\xa5",
                         "9223372036854775808",
                         "18446744073709551616",
                         "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char f[128];
        snprintf(f, sizeof(f), "Content-Length: %s\r\n", bad[i]);
        if (post(f) != KEEL_H1_E_CONTENT_LENGTH)
            fail_msg("Content-Length: \"%s\" not rejected as invalid", bad[i]);
    }
    assert_rc(post("Content-Length: 5\r\nContent-Length: 5\r\n"), 0); /* identical duplicates are merged */
    assert_int_equal(H.content_length, 5);
    assert_rc(post("Content-Length: 5\r\nContent-Length: 005\r\n"), 0);
    assert_rc(post("Content-Length: 5\r\nContent-Length: 6\r\n"), KEEL_H1_E_CONTENT_LENGTH_CONFLICT);
    assert_rc(post("Content-Length: 0\r\nX: 1\r\ncontent-length: 7\r\n"), KEEL_H1_E_CONTENT_LENGTH_CONFLICT);
    assert_rc(post("Content-Length: 5\r\nContent-Length: x\r\n"), KEEL_H1_E_CONTENT_LENGTH);
}

static void test_chunked_request(void **state)
{
    (void)state;
    assert_rc(post("Transfer-Encoding: chunked\r\n"), 0);
    assert_true(H.chunked);
    assert_false(H.has_content_length);
    assert_rc(post("Transfer-Encoding: CHUNKED\r\n"), 0);
    assert_true(H.chunked);
    assert_rc(post("Transfer-Encoding: gzip, chunked\r\n"), 0);
    assert_true(H.chunked);
    assert_rc(post("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"), 0); /* one list over two lines */
    assert_true(H.chunked);
    assert_rc(post("Transfer-Encoding: x-gzip ,\tchunked\r\n"), 0);
}

static void test_smuggling_cl_te(void **state)
{
    (void)state;
    /* CL.TE: the front end reads Content-Length, the back end chunked */
    assert_rc(req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "0\r\n\r\nSMUGGLED"),
              KEEL_H1_E_TE_WITH_CONTENT_LENGTH);
    /* TE.CL: the other way round */
    assert_rc(req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
                  "8\r\nSMUGGLED\r\n0\r\n\r\n"),
              KEEL_H1_E_TE_WITH_CONTENT_LENGTH);
    assert_rc(post("Transfer-Encoding: chunked\r\nContent-Length: 0\r\n"), KEEL_H1_E_TE_WITH_CONTENT_LENGTH);
    assert_int_equal(keel_h1_error_status(KEEL_H1_E_TE_WITH_CONTENT_LENGTH), 400);
}

static void test_smuggling_te_te(void **state)
{
    (void)state;
    /* obfuscated Transfer-Encoding that one of two parsers would not see as chunked */
    assert_rc(post("Transfer-Encoding: chunked, identity\r\n"), KEEL_H1_E_TE_NOT_CHUNKED);
    assert_rc(post("Transfer-Encoding : chunked\r\n"), KEEL_H1_E_HEADER_SPACE);
    assert_rc(post("Transfer-Encoding: xchunked\r\n"), KEEL_H1_E_TE_UNKNOWN);
    assert_int_equal(keel_h1_error_status(KEEL_H1_E_TE_UNKNOWN), 501);
    assert_rc(post("Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n"), KEEL_H1_E_TE_UNKNOWN);
    assert_rc(post("Transfer-Encoding: chunked\r\nTransfer-encoding: identity\r\n"), KEEL_H1_E_TE_NOT_CHUNKED);
    assert_rc(post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), KEEL_H1_E_TE_INVALID);
    assert_rc(post("Transfer-Encoding: chunked, chunked\r\n"), KEEL_H1_E_TE_INVALID);
    assert_rc(post("Transfer-Encoding: chunked;q=1\r\n"), KEEL_H1_E_TE_INVALID);
    assert_rc(post("Transfer-Encoding: \"chunked\"\r\n"), KEEL_H1_E_TE_INVALID);
    assert_rc(post("Transfer-Encoding: , chunked\r\n"), KEEL_H1_E_TE_INVALID);
    assert_rc(post("Transfer-Encoding: chunked,\r\n"), KEEL_H1_E_TE_INVALID);
    assert_rc(post("Transfer-Encoding:\r\n"), KEEL_H1_E_TE_INVALID);
    assert_rc(post("Transfer-Encoding: chunked gzip\r\n"), KEEL_H1_E_TE_INVALID);
    assert_rc(post("Transfer-Encoding: identity\r\n"), KEEL_H1_E_TE_NOT_CHUNKED);
    assert_rc(post("Transfer-Encoding: chunked, gzip\r\n"), KEEL_H1_E_TE_NOT_CHUNKED);
    assert_rc(post("Transfer-Encoding: gzip\r\n"), KEEL_H1_E_TE_NOT_CHUNKED);
    assert_rc(post("Transfer-Encoding: chunk\r\n"), KEEL_H1_E_TE_UNKNOWN);
    assert_rc(post("Transfer-Encoding: chunkedx\r\n"), KEEL_H1_E_TE_UNKNOWN);
    assert_rc(post("Transfer-Encoding: chunked-false\r\n"), KEEL_H1_E_TE_UNKNOWN);
    /* a tab is optional whitespace: this one is plain chunked, and chunked is what we frame by */
    assert_rc(post("Transfer-Encoding:\tchunked\r\n"), 0);
    assert_true(H.chunked);
    assert_rc(post("Transfer-Encoding:\tchunked\r\nContent-Length: 4\r\n"), KEEL_H1_E_TE_WITH_CONTENT_LENGTH);
    /* look-alike names are ordinary fields: no framing from them */
    assert_rc(post("Transfer_Encoding: chunked\r\n"), 0);
    assert_false(H.chunked);
    assert_rc(post("Transfer-Encoding\x0b: chunked\r\n"), KEEL_H1_E_HEADER_NAME);
}

static void test_te_in_http10(void **state)
{
    (void)state;
    assert_rc(req("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), KEEL_H1_E_TE_HTTP10);
    assert_rc(req("POST / HTTP/1.0\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), KEEL_H1_E_TE_HTTP10);
    assert_rc(req("POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n"), 0);
    assert_int_equal(H.content_length, 3);
}

static void test_keep_alive(void **state)
{
    (void)state;
    assert_rc(req("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    assert_true(H.keep_alive);
    assert_rc(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), 0);
    assert_false(H.keep_alive);
    assert_rc(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE\r\n\r\n"), 0);
    assert_false(H.keep_alive);
    assert_rc(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: x-foo\r\nConnection: ,, Close ,\r\n\r\n"), 0);
    assert_false(H.keep_alive);
    assert_rc(req("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n"), 0);
    assert_true(H.keep_alive);
    assert_rc(req("GET / HTTP/1.0\r\n\r\n"), 0);
    assert_false(H.keep_alive);
    assert_rc(req("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), 0);
    assert_true(H.keep_alive);
    assert_rc(req("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"), 0);
    assert_false(H.keep_alive);
}

static void test_upgrade_and_expect(void **state)
{
    (void)state;
    assert_rc(req("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"), 0);
    assert_true(H.upgrade);
    assert_rc(req("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, upgrade\r\nUpgrade: h2c\r\n\r\n"), 0);
    assert_true(H.upgrade);
    assert_rc(req("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"), 0);
    assert_false(H.upgrade); /* Upgrade without the Connection option */
    assert_rc(req("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n"), 0);
    assert_false(H.upgrade);
    assert_rc(req("GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"), 0);
    assert_false(H.upgrade); /* RFC 9110 section 7.8: ignored in HTTP/1.0 */

    assert_rc(post("Content-Length: 10\r\nExpect: 100-Continue\r\n"), 0);
    assert_true(H.expect_continue);
    assert_rc(post("Content-Length: 10\r\nExpect: 200-ok\r\n"), 0);
    assert_false(H.expect_continue);
    assert_rc(req("POST / HTTP/1.0\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n"), 0);
    assert_false(H.expect_continue); /* RFC 9110 section 10.1.1 */
}

static void test_errors(void **state)
{
    (void)state;
    for (int e = KEEL__H1_E_FIRST + 1; e < KEEL__H1_E_LAST; e++) {
        assert_true(keel_cstr_has_prefix(keel_h1_error_name(e), "KEEL_H1_E_"));
        assert_true(strlen(keel_h1_strerror(e)) > 5);
        int s = keel_h1_error_status(e);
        assert_true(s == 400 || s == 414 || s == 431 || s == 501 || s == 502 || s == 505);
        assert_true(e != KEEL_EAGAIN && e != KEEL_EPROTO);
    }
    assert_string_equal(keel_h1_error_name(KEEL_H1_E_BARE_LF), "KEEL_H1_E_BARE_LF");
    assert_string_equal(keel_h1_strerror(KEEL_H1_E_OBS_FOLD),
                        "obsolete line folding (field line starts with whitespace)");
    assert_string_equal(keel_h1_error_name(KEEL_EAGAIN), keel_err_name(KEEL_EAGAIN));
    assert_string_equal(keel_h1_strerror(KEEL_ENOMEM), keel_strerror(KEEL_ENOMEM));
    assert_int_equal(keel_h1_error_status(KEEL_H1_E_TRAILERS_TOO_LARGE), 431);
    assert_int_equal(keel_h1_error_status(KEEL_EINVAL), 400);
}

/* ---- responses ---------------------------------------------------------------------------------- */

static void test_response_basic(void **state)
{
    (void)state;
    const char *s = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    assert_rc(resp(s, "GET"), 0);
    assert_int_equal(consumed, strlen(s) - 5);
    assert_int_equal(H.status, 200);
    assert_str(H.reason, "OK");
    assert_int_equal(H.version, KEEL_HTTP_11);
    assert_true(H.has_content_length);
    assert_int_equal(H.content_length, 5);
    assert_true(H.keep_alive);
    assert_false(RS.no_body || RS.tunnel || RS.body_until_close);
    assert_int_equal(H.method.n, 0);

    assert_rc(resp("HTTP/1.1 404 Not  Found \r\nContent-Length: 0\r\n\r\n", "GET"), 0);
    assert_str(H.reason, "Not  Found "); /* as received */
    assert_rc(resp("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", "GET"), 0);
    assert_int_equal(H.reason.n, 0);
    assert_rc(resp("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", "GET"), 0); /* no SP before an empty reason */
    assert_rc(resp("HTTP/1.1 200 \xc3\x89t\xc3\xa9\tok\r\nContent-Length: 0\r\n\r\n", "GET"), 0);
    assert_rc(resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n", "GET"), 0);
    assert_true(H.keep_alive);
    assert_rc(resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", "GET"), 0);
    assert_false(H.keep_alive);
    assert_rc(resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\n", "GET"), 0);
    assert_false(H.keep_alive);
}

static void test_response_status_line(void **state)
{
    (void)state;
    assert_rc(resp("HTTP/1.1 20 OK\r\n\r\n", "GET"), KEEL_H1_E_STATUS_LINE);
    assert_rc(resp("HTTP/1.1 2000 OK\r\n\r\n", "GET"), KEEL_H1_E_STATUS_LINE);
    assert_rc(resp("HTTP/1.1 600 Nope\r\n\r\n", "GET"), KEEL_H1_E_STATUS_LINE);
    assert_rc(resp("HTTP/1.1 099 Nope\r\n\r\n", "GET"), KEEL_H1_E_STATUS_LINE);
    assert_rc(resp("HTTP/1.1  200 OK\r\n\r\n", "GET"), KEEL_H1_E_STATUS_LINE);
    assert_rc(resp("HTTP/1.1 2x0 OK\r\n\r\n", "GET"), KEEL_H1_E_STATUS_LINE);
    assert_rc(resp("HTTP/1.1 200 O\x01K\r\n\r\n", "GET"), KEEL_H1_E_STATUS_LINE);
    assert_rc(resp("HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", "GET"), KEEL_H1_E_BARE_LF);
    assert_rc(resp("HTTP/1.1 200 OK\rContent-Length: 0\r\n\r\n", "GET"), KEEL_H1_E_LONE_CR);
    assert_rc(resp("HTTP/2.0 200 OK\r\n\r\n", "GET"), KEEL_H1_E_VERSION_UNSUPPORTED);
    assert_rc(resp("ICY 200 OK\r\n\r\n\r\n", "GET"), KEEL_H1_E_VERSION);
    assert_rc(resp("\r\nHTTP/1.1 200 OK\r\n\r\n", "GET"), KEEL_H1_E_VERSION);
    assert_rc(resp("HTTP/1.1 200 OK\r\n", "GET"), KEEL_EAGAIN);
    assert_rc(resp("HTTP/1.1 200 OK\r\nX : y\r\n\r\n", "GET"), KEEL_H1_E_HEADER_SPACE);
    assert_rc(resp("HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n", "GET"), KEEL_H1_E_OBS_FOLD);
}

static void test_response_framing(void **state)
{
    (void)state;
    assert_rc(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET"), 0);
    assert_true(H.chunked);
    assert_false(RS.body_until_close);
    assert_rc(resp("HTTP/1.1 200 OK\r\n\r\n", "GET"), 0);
    assert_true(RS.body_until_close);
    assert_false(H.keep_alive);
    assert_rc(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET"), 0);
    assert_true(RS.body_until_close); /* RFC 9112 section 6.3 item 4 */
    assert_false(H.chunked);
    assert_rc(resp("HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", "GET"), 0);
    assert_true(RS.no_body);
    assert_false(H.has_content_length);
    assert_rc(resp("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n", "GET"), 0);
    assert_true(RS.no_body);
    assert_false(H.chunked);
    assert_rc(resp("HTTP/1.1 100 Continue\r\n\r\n", "POST"), 0);
    assert_true(RS.no_body);
    assert_rc(resp("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", "GET"), 0);
    assert_true(RS.no_body);
    assert_rc(resp("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", "HEAD"), 0);
    assert_true(RS.no_body);
    assert_true(H.keep_alive);
    assert_rc(resp("HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", "GET"), 0);
    assert_true(RS.tunnel);
    assert_true(H.upgrade);
    assert_false(RS.no_body);
    assert_rc(resp("HTTP/1.1 200 Connection Established\r\n\r\n", "CONNECT"), 0);
    assert_true(RS.tunnel);
    assert_false(RS.body_until_close);
    /* RFC 9110 section 9.3.6: framing fields in a 2xx to CONNECT are ignored, even broken ones */
    assert_rc(resp("HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n", "CONNECT"), 0);
    assert_true(RS.tunnel);
    assert_rc(resp("HTTP/1.1 407 Proxy Auth\r\nContent-Length: 3\r\n\r\n", "CONNECT"), 0);
    assert_false(RS.tunnel);
    assert_true(H.has_content_length);
}

static void test_response_smuggling(void **state)
{
    (void)state;
    assert_rc(resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", "GET"),
              KEEL_H1_E_TE_WITH_CONTENT_LENGTH);
    assert_rc(resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\n", "GET"),
              KEEL_H1_E_CONTENT_LENGTH_CONFLICT);
    assert_rc(resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", "GET"), 0);
    assert_rc(resp("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "GET"), KEEL_H1_E_CONTENT_LENGTH);
    assert_rc(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", "GET"), KEEL_H1_E_TE_INVALID);
    assert_rc(resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: xchunked\r\n\r\n", "GET"), KEEL_H1_E_TE_UNKNOWN);
    assert_rc(resp("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET"), KEEL_H1_E_TE_HTTP10);
    const char nul[] = "HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n";
    assert_rc(resp_n(nul, sizeof(nul) - 1, "GET"), KEEL_H1_E_HEADER_VALUE);
}

static void test_response_byte_by_byte(void **state)
{
    (void)state;
    static struct keel_http_head whole;
    static struct keel_h1_response rw;
    const char *s = "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nTransfer-Encoding: chunked\r\n"
                    "Date: Mon, 27 Jul 2026 12:28:53 GMT\r\nServer: keel\r\n\r\n";
    size_t n = strlen(s), cw = 0;
    assert_rc(keel_h1_parse_response(s, n, keel_str_c("POST"), NULL, &whole, &rw, &cw), 0);
    for (size_t k = 0; k < n; k++) {
        char *view = malloc(k ? k : 1);
        memcpy(view, s, k);
        size_t c = 0;
        assert_rc(keel_h1_parse_response(view, k, keel_str_c("POST"), NULL, &H, &RS, &c), KEEL_EAGAIN);
        free(view);
    }
    assert_true(whole.chunked);
    assert_int_equal(cw, n);
}

/* ---- chunked bodies ----------------------------------------------------------------------------- */

struct body {
    int rc;
    char data[4096];
    size_t ndata;
    size_t end;
    struct keel_str trailers;
    struct keel_h1_chunked st;
};

/* Decodes s fed in pieces of `step` bytes (0: all at once), keeping unconsumed bytes as a
 * connection does. */
static void decode_body(struct body *b, const char *s, size_t n, size_t step)
{
    memset(b, 0, sizeof(*b));
    keel_h1_chunked_init(&b->st);
    size_t pos = 0, avail = step ? (step < n ? step : n) : n;
    for (;;) {
        const char *d;
        size_t used, dn;
        int rc = keel_h1_chunked_feed(&b->st, s + pos, avail - pos, &used, &d, &dn);
        assert_true(used <= avail - pos);
        if (rc == 0) {
            assert_true(dn > 0);
            memcpy(b->data + b->ndata, d, dn);
            b->ndata += dn;
        } else {
            assert_int_equal(dn, 0);
        }
        pos += used;
        if (rc == 0)
            continue;
        if (rc == KEEL_EAGAIN && avail < n) {
            avail = step && avail + step < n ? avail + step : n;
            continue;
        }
        b->rc = rc;
        b->end = pos;
        b->trailers = b->st.trailers;
        return;
    }
}

static struct body B, B2;

static int body(const char *s)
{
    decode_body(&B, s, strlen(s), 0);
    return B.rc;
}

static void test_chunked_basic(void **state)
{
    (void)state;
    const char *s = "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    assert_rc(body(s), KEEL_H1_CHUNKED_END);
    assert_int_equal(B.ndata, 11);
    assert_memory_equal(B.data, "hello world", 11);
    assert_int_equal(B.end, strlen(s) - 16); /* the next request is not consumed */
    assert_int_equal(B.trailers.n, 0);

    /* data is yielded in place, one run per call */
    struct keel_h1_chunked st;
    keel_h1_chunked_init(&st);
    const char *d;
    size_t used, dn;
    assert_int_equal(keel_h1_chunked_feed(&st, s, strlen(s), &used, &d, &dn), 0);
    assert_ptr_equal(d, s + 3);
    assert_int_equal(dn, 5);
    assert_int_equal(used, 8);
    assert_int_equal(keel_h1_chunked_feed(&st, s + 8, 5, &used, &d, &dn), KEEL_EAGAIN); /* "\r\n6\r\n" */
    assert_int_equal(used, 5);
    assert_int_equal(dn, 0);
    assert_int_equal(keel_h1_chunked_feed(&st, s + 13, 2, &used, &d, &dn), 0); /* " w" */
    assert_ptr_equal(d, s + 13);
    assert_int_equal(dn, 2);
    assert_int_equal(keel_h1_chunked_feed(&st, s + 15, 0, &used, &d, &dn), KEEL_EAGAIN);
    assert_int_equal(used, 0);
    /* after the end: the end again, nothing consumed */
    assert_rc(body("0\r\n\r\n"), KEEL_H1_CHUNKED_END);
    assert_int_equal(keel_h1_chunked_feed(&B.st, "xx", 2, &used, &d, &dn), KEEL_H1_CHUNKED_END);
    assert_int_equal(used, 0);
}

static void test_chunked_sizes(void **state)
{
    (void)state;
    assert_rc(body("A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n"), KEEL_H1_CHUNKED_END);
    assert_int_equal(B.ndata, 20);
    assert_rc(body("0005\r\nhello\r\n000\r\n\r\n"), KEEL_H1_CHUNKED_END);
    assert_int_equal(B.ndata, 5);
    assert_rc(body("g\r\n"), KEEL_H1_E_CHUNK_SIZE);
    assert_rc(body("\r\n"), KEEL_H1_E_CHUNK_SIZE);
    assert_rc(body("-5\r\nhello\r\n"), KEEL_H1_E_CHUNK_SIZE);
    assert_rc(body("+5\r\nhello\r\n"), KEEL_H1_E_CHUNK_SIZE);
    assert_rc(body("0x5\r\nhello\r\n"), KEEL_H1_E_CHUNK_SIZE);
    assert_rc(body(" 5\r\nhello\r\n"), KEEL_H1_E_CHUNK_SIZE);
    assert_rc(body("5 \r\nhello\r\n"), KEEL_H1_E_CHUNK_EXT); /* BWS only before ';' */
    assert_rc(body("5\t\r\nhello\r\n"), KEEL_H1_E_CHUNK_EXT);
    assert_rc(body("5\r\nhello\r\n\r\n"), KEEL_H1_E_CHUNK_SIZE);
}

static void test_chunked_overflow(void **state)
{
    (void)state;
    assert_rc(body("7fffffffffffffff\r\nabc"), KEEL_EAGAIN); /* 2^63 - 1: fine, more data expected */
    assert_int_equal(B.ndata, 3);
    assert_rc(body("8000000000000000\r\n"), KEEL_H1_E_CHUNK_TOO_BIG); /* 2^63 */
    assert_rc(body("ffffffffffffffff\r\n"), KEEL_H1_E_CHUNK_TOO_BIG);
    assert_rc(body("10000000000000005\r\n"), KEEL_H1_E_CHUNK_TOO_BIG); /* wraps to 5 in 64 bits */
    assert_rc(body("fffffffffffffffffffffffffff\r\n"), KEEL_H1_E_CHUNK_TOO_BIG);
    assert_rc(body("00000000000000000000000000000005\r\nhello\r\n0\r\n\r\n"), KEEL_H1_CHUNKED_END); /* 32 digits */
    assert_rc(body("000000000000000000000000000000005\r\n"), KEEL_H1_E_CHUNK_SIZE);                 /* 33 */
}

static void test_chunked_crlf_after_data(void **state)
{
    (void)state;
    assert_rc(body("5\r\nhelloX\r\n0\r\n\r\n"), KEEL_H1_E_CHUNK_CRLF);
    assert_rc(body("5\r\nhello\n0\r\n\r\n"), KEEL_H1_E_CHUNK_CRLF);
    assert_rc(body("5\r\nhello\r0\r\n\r\n"), KEEL_H1_E_CHUNK_CRLF);
    assert_rc(body("5\r\nhello0\r\n\r\n"), KEEL_H1_E_CHUNK_CRLF);
    /* TE.CL payload: more data than the chunk size says */
    assert_rc(body("3\r\nSMUGGLED\r\n0\r\n\r\n"), KEEL_H1_E_CHUNK_CRLF);
    assert_int_equal(B.ndata, 3);
}

static void test_chunked_line_endings(void **state)
{
    (void)state;
    assert_rc(body("5\nhello\r\n0\r\n\r\n"), KEEL_H1_E_BARE_LF);
    assert_rc(body("5\r\nhello\r\n0\n\r\n"), KEEL_H1_E_BARE_LF);
    assert_rc(body("5\r\nhello\r\n0\r\n\n"), KEEL_H1_E_BARE_LF);
    assert_rc(body("5;a=b\nhello\r\n0\r\n\r\n"), KEEL_H1_E_BARE_LF);
    assert_rc(body("5;a\nhello\r\n0\r\n\r\n"), KEEL_H1_E_BARE_LF);
    assert_rc(body("5\rhello\r\n"), KEEL_H1_E_LONE_CR);
    assert_rc(body("\n"), KEEL_H1_E_BARE_LF);
    assert_rc(body("5\r\nhello\r\n0\r\nX: 1\n\r\n"), KEEL_H1_E_BARE_LF);
}

static void test_chunked_extensions(void **state)
{
    (void)state;
    const char *good[] = {"5;a\r\n",
                          "5;a=b\r\n",
                          "5;a=b;c=d\r\n",
                          "5 ;a\r\n",
                          "5\t; a = b\r\n",
                          "5;a=\"q s\"\r\n",
                          "5;a=\"\\\"x\\\\\"\r\n",
                          "5;a=\"\"\r\n",
                          "5;a=\"\xc3\xa9\"\r\n",
                          "5;a=b ;c\r\n",
                          "5;a=\"x\" ;c=\"y\"\r\n",
                          "5;a ;b\r\n",
                          "5;ieof\r\n"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        char s[256];
        snprintf(s, sizeof(s), "%shello\r\n0;last=1\r\n\r\n", good[i]);
        if (body(s) != KEEL_H1_CHUNKED_END || B.ndata != 5)
            fail_msg("chunk-ext \"%s\": %s", good[i], keel_h1_error_name(B.rc));
    }
    const char *bad[] = {"5;\r\n",          "5;=b\r\n",    "5;a=\r\n",       "5;a=b c\r\n",      "5;a \r\n",
                         "5;a=b \r\n",      "5;a=\"x\r\n", "5;a=\"x\"y\r\n", "5;a=\"\x01\"\r\n", "5;a=\"\\\x01\"\r\n",
                         "5;a==b\r\n",      "5;a=b=c\r\n", "5;a@=b\r\n",     "5;a=@\r\n",        "5,a\r\n",
                         "5;a=\"x\"\"\r\n", "5 ;\r\n",     "5;a=\"x\" \r\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char s[256];
        snprintf(s, sizeof(s), "%shello\r\n0\r\n\r\n", bad[i]);
        int rc = body(s);
        if (rc != KEEL_H1_E_CHUNK_EXT && rc != KEEL_H1_E_CHUNK_SIZE)
            fail_msg("chunk-ext \"%s\" not rejected: %s", bad[i], keel_h1_error_name(rc));
    }
    assert_rc(body("5;a=\"x\ny\"\r\nhello\r\n"), KEEL_H1_E_BARE_LF);
    /* bounded: KEEL_H1_MAX_CHUNK_EXT bytes between the size and the CRLF */
    char *s = malloc(KEEL_H1_MAX_CHUNK_EXT + 64);
    s[0] = '5';
    s[1] = ';';
    memset(s + 2, 'e', KEEL_H1_MAX_CHUNK_EXT - 1);
    strcpy(s + 1 + KEEL_H1_MAX_CHUNK_EXT, "\r\nhello\r\n0\r\n\r\n");
    assert_rc(body(s), KEEL_H1_CHUNKED_END);
    s[1 + KEEL_H1_MAX_CHUNK_EXT] = 'e';
    strcpy(s + 2 + KEEL_H1_MAX_CHUNK_EXT, "\r\nhello\r\n0\r\n\r\n");
    assert_rc(body(s), KEEL_H1_E_CHUNK_EXT_TOO_LONG);
    free(s);
}

static void test_chunked_trailers(void **state)
{
    (void)state;
    const char *s = "4\r\ngrpc\r\n0\r\ngrpc-status: 0\r\nGrpc-Message:  ok \r\n\r\nNEXT";
    assert_rc(body(s), KEEL_H1_CHUNKED_END);
    assert_int_equal(B.end, strlen(s) - 4);
    assert_str(B.trailers, "grpc-status: 0\r\nGrpc-Message:  ok \r\n");
    static struct keel_http_head t;
    assert_rc(keel_h1_parse_trailers(B.trailers, &t), 0);
    assert_int_equal(t.nheaders, 2);
    assert_str(*keel_http_head_get(&t, "grpc-status"), "0");
    assert_str(*keel_http_head_get(&t, "grpc-message"), "ok");
    assert_rc(keel_h1_parse_trailers(keel_str_c(""), &t), 0);
    assert_int_equal(t.nheaders, 0);
    assert_rc(keel_h1_parse_trailers(keel_str_c("a: b"), &t), KEEL_H1_E_HEADER_COLON);
    assert_rc(keel_h1_parse_trailers(keel_str_c("a: b\r\n\r\n"), &t), KEEL_H1_E_HEADER_NAME);

    assert_rc(body("0\r\nX : y\r\n\r\n"), KEEL_H1_E_HEADER_SPACE);
    assert_rc(body("0\r\nX: y\r\n z\r\n\r\n"), KEEL_H1_E_OBS_FOLD);
    assert_rc(body("0\r\n z\r\n\r\n"), KEEL_H1_E_OBS_FOLD);
    assert_rc(body("0\r\nX: a\rb\r\n\r\n"), KEEL_H1_E_LONE_CR);
    const char nul[] = "0\r\nX: a\0b\r\n\r\n";
    decode_body(&B, nul, sizeof(nul) - 1, 0);
    assert_rc(B.rc, KEEL_H1_E_HEADER_VALUE);

    /* the trailer section arrives in pieces: it is kept and fed again until complete */
    struct keel_h1_chunked st;
    keel_h1_chunked_init(&st);
    const char *d;
    size_t used, dn;
    const char *t1 = "0\r\nA: 1\r\nB:", *t2 = "A: 1\r\nB: 2\r\n\r\n";
    assert_int_equal(keel_h1_chunked_feed(&st, t1, strlen(t1), &used, &d, &dn), KEEL_EAGAIN);
    assert_int_equal(used, 3); /* "A: 1\r\nB:" is kept by the caller */
    assert_int_equal(keel_h1_chunked_feed(&st, t2, strlen(t2), &used, &d, &dn), KEEL_H1_CHUNKED_END);
    assert_int_equal(used, strlen(t2));
    assert_str(st.trailers, "A: 1\r\nB: 2\r\n");

    /* bounded */
    keel_h1_chunked_init(&st);
    st.max_trailers = 16;
    const char *t3 = "0\r\nA: 0123456789X\r\n", *t4 = "0\r\nA: 012345678\r\n\r\n";
    assert_int_equal(keel_h1_chunked_feed(&st, t3, strlen(t3), &used, &d, &dn), KEEL_H1_E_TRAILERS_TOO_LARGE);
    keel_h1_chunked_init(&st);
    st.max_trailers = 16;
    assert_int_equal(keel_h1_chunked_feed(&st, t4, strlen(t4), &used, &d, &dn), KEEL_H1_CHUNKED_END); /* 16 exactly */
}

static void test_chunked_splits(void **state)
{
    (void)state;
    const char *inputs[] = {
        "1a;name=\"quoted \\\" value\"\r\nabcdefghijklmnopqrstuvwxyz\r\n3\r\nxyz\r\n0\r\nT: 1\r\nU: 2\r\n\r\n",
        "5\r\nhello\r\n3;x\r\nabc\r\n0\r\n\r\n",
        "5\r\nhello\r\n0\r\nBad Name: y\r\n\r\n",
        "5\r\nhelloXX",
        "4\r\nabcd\r\n8000000000000000\r\n",
    };
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        size_t n = strlen(inputs[i]);
        decode_body(&B, inputs[i], n, 0);
        for (size_t step = 1; step <= n; step++) {
            decode_body(&B2, inputs[i], n, step);
            if (B2.rc != B.rc || B2.ndata != B.ndata || B2.end != B.end || memcmp(B.data, B2.data, B.ndata) != 0 ||
                B2.trailers.n != B.trailers.n)
                fail_msg("input %zu in pieces of %zu: %s, whole: %s", i, step, keel_h1_error_name(B2.rc),
                         keel_h1_error_name(B.rc));
        }
    }
}

static void test_chunked_error_is_sticky(void **state)
{
    (void)state;
    assert_rc(body("z"), KEEL_H1_E_CHUNK_SIZE);
    const char *d;
    size_t used, dn;
    assert_int_equal(keel_h1_chunked_feed(&B.st, "0\r\n\r\n", 5, &used, &d, &dn), KEEL_H1_E_CHUNK_SIZE);
    assert_int_equal(dn, 0);
}

/* ---- writers ------------------------------------------------------------------------------------ */

static struct keel_http_header F(const char *name, const char *value) {
    struct keel_http_header h = {keel_str_c(name), keel_str_c(value)};
    return h;
}

static void
test_write_request_head(void **state)
{
    (void)state;
    static struct keel_http_head h;
    memset(&h, 0, sizeof(h));
    h.method = keel_str_c("GET");
    h.target = keel_str_c("/x?y=1");
    h.version = KEEL_HTTP_11;
    struct keel_http_header fields[] = {F("Host", "svc.ns:8080"), F("x-forwarded-proto", "http"), F("Empty", "")};
    struct keel_buf out;
    keel_buf_init(&out, 4096);
    assert_int_equal(keel_h1_write_request_head(&out, &h, fields, 3), 0);
    assert_string_equal(keel_buf_cstr(&out),
                        "GET /x?y=1 HTTP/1.1\r\nHost: svc.ns:8080\r\nx-forwarded-proto: http\r\nEmpty: \r\n\r\n");
    size_t c = 0;
    assert_rc(keel_h1_parse_request(out.data, out.len, &H, &c), 0);
    assert_int_equal(c, out.len);
    assert_str(H.query, "y=1");

    /* absolute-form received, origin-form sent: target cleared, path and query used */
    keel_buf_reset(&out);
    assert_rc(req("GET http://a.example/p?q=1 HTTP/1.0\r\nHost: b\r\nX: 1\r\n\r\n"), 0);
    H.target.n = 0;
    assert_int_equal(keel_h1_write_request_head(&out, &H, NULL, 0), 0);
    assert_string_equal(keel_buf_cstr(&out), "GET /p?q=1 HTTP/1.0\r\nHost: b\r\nX: 1\r\n\r\n");
    keel_buf_free(&out);
}

static void test_write_response_head(void **state)
{
    (void)state;
    static struct keel_http_head h;
    memset(&h, 0, sizeof(h));
    h.status = 404;
    h.version = KEEL_HTTP_11;
    struct keel_http_header fields[] = {F("Content-Length", "0")};
    struct keel_buf out;
    keel_buf_init(&out, 4096);
    assert_int_equal(keel_h1_write_response_head(&out, &h, fields, 1), 0);
    assert_string_equal(keel_buf_cstr(&out), "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    keel_buf_reset(&out);
    h.status = 299;
    h.version = KEEL_HTTP_10;
    assert_int_equal(keel_h1_write_response_head(&out, &h, NULL, 0), 0);
    assert_string_equal(keel_buf_cstr(&out), "HTTP/1.0 299 \r\n\r\n");
    keel_buf_reset(&out);
    h.status = 200;
    h.reason = keel_str_c("Fine Thanks");
    assert_int_equal(keel_h1_write_response_head(&out, &h, fields, 1), 0);
    assert_string_equal(keel_buf_cstr(&out), "HTTP/1.0 200 Fine Thanks\r\nContent-Length: 0\r\n\r\n");
    assert_rc(resp(out.data, "GET"), 0);
    assert_str(H.reason, "Fine Thanks");
    h.status = 99;
    assert_int_equal(keel_h1_write_response_head(&out, &h, NULL, 0), KEEL_EINVAL);
    h.status = 600;
    assert_int_equal(keel_h1_write_response_head(&out, &h, NULL, 0), KEEL_EINVAL);
    keel_buf_free(&out);
    assert_string_equal(keel_h1_reason(503), "Service Unavailable");
    assert_string_equal(keel_h1_reason(299), "");
    assert_string_equal(keel_h1_reason(-1), "");
    assert_string_equal(keel_h1_reason(1000), "");
}

static void test_writers_refuse_injection(void **state)
{
    (void)state;
    static struct keel_http_head h;
    memset(&h, 0, sizeof(h));
    h.method = keel_str_c("GET");
    h.target = keel_str_c("/");
    h.status = 200;
    struct keel_buf out;
    keel_buf_init(&out, 4096);
    keel_buf_puts(&out, "before");
    struct keel_http_header split[] = {F("X", "a\r\nTransfer-Encoding: chunked")};
    struct keel_http_header lf[] = {F("X", "a\nb")};
    struct keel_http_header nul[] = {{keel_str_c("X"), {"a\0b", 3}}};
    struct keel_http_header name[] = {F("Bad Name", "x")};
    struct keel_http_header empty[] = {F("", "x")};
    struct keel_http_header *all[] = {split, lf, nul, name, empty};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(keel_h1_write_request_head(&out, &h, all[i], 1), KEEL_EINVAL);
        assert_int_equal(keel_h1_write_response_head(&out, &h, all[i], 1), KEEL_EINVAL);
        assert_int_equal(keel_h1_write_last_chunk(&out, all[i], 1), KEEL_EINVAL);
    }
    h.method = keel_str_c("GET /evil");
    assert_int_equal(keel_h1_write_request_head(&out, &h, NULL, 0), KEEL_EINVAL);
    h.method = keel_str_c("GET");
    h.target = keel_str_c("/a HTTP/1.1\r\nX: y");
    assert_int_equal(keel_h1_write_request_head(&out, &h, NULL, 0), KEEL_EINVAL);
    h.target = keel_str_c("");
    h.path = keel_str_c("");
    assert_int_equal(keel_h1_write_request_head(&out, &h, NULL, 0), KEEL_EINVAL);
    h.reason = keel_str_c("OK\r\nX: y");
    assert_int_equal(keel_h1_write_response_head(&out, &h, NULL, 0), KEEL_EINVAL);
    assert_string_equal(keel_buf_cstr(&out), "before"); /* nothing written */

    /* out of room: ETOOBIG, and the buffer is as it was */
    struct keel_buf small;
    keel_buf_init(&small, 20);
    keel_buf_puts(&small, "keep");
    h.reason = keel_str_c("");
    struct keel_http_header one[] = {F("Content-Length", "12345")};
    assert_int_equal(keel_h1_write_response_head(&small, &h, one, 1), KEEL_ETOOBIG);
    assert_string_equal(keel_buf_cstr(&small), "keep");
    assert_int_equal(keel_h1_write_chunk(&small, "0123456789abcdef", 16), KEEL_ETOOBIG);
    assert_int_equal(small.len, 4);
    keel_buf_free(&small);
    keel_buf_free(&out);
}

static void test_write_chunks(void **state)
{
    (void)state;
    struct keel_buf out;
    keel_buf_init(&out, 1 << 20);
    assert_int_equal(keel_h1_write_chunk(&out, "hello", 5), 0);
    assert_int_equal(keel_h1_write_chunk(&out, "", 0), 0); /* nothing: a 0 chunk would end the body */
    char big[300];
    memset(big, 'z', sizeof(big));
    assert_int_equal(keel_h1_write_chunk(&out, big, sizeof(big)), 0);
    struct keel_http_header t[] = {F("grpc-status", "0"), F("grpc-message", "")};
    assert_int_equal(keel_h1_write_last_chunk(&out, t, 2), 0);
    assert_true(keel_cstr_has_prefix(keel_buf_cstr(&out), "5\r\nhello\r\n12c\r\nzzz"));
    assert_true(keel_cstr_has_suffix(keel_buf_cstr(&out), "zz\r\n0\r\ngrpc-status: 0\r\ngrpc-message: \r\n\r\n"));
    decode_body(&B, out.data, out.len, 7);
    assert_rc(B.rc, KEEL_H1_CHUNKED_END);
    assert_int_equal(B.ndata, 305);
    assert_int_equal(B.end, out.len);
    keel_buf_reset(&out);
    assert_int_equal(keel_h1_write_last_chunk(&out, NULL, 0), 0);
    assert_string_equal(keel_buf_cstr(&out), "0\r\n\r\n");
    keel_buf_free(&out);
}

/* ---- message.c ---------------------------------------------------------------------------------- */

static void test_head_get(void **state)
{
    (void)state;
    assert_rc(req("GET / HTTP/1.1\r\nHost: a\r\nX-Dup: 1\r\nx-dup: 2\r\nX-Empty:\r\n\r\n"), 0);
    assert_str(*keel_http_head_get(&H, "x-DUP"), "1"); /* the first one */
    assert_str(*keel_http_head_get(&H, "X-EMPTY"), "");
    assert_null(keel_http_head_get(&H, "x-du"));
    assert_null(keel_http_head_get(&H, "x-dupe"));
    assert_null(keel_http_head_get(&H, ""));
}

/* message.c: the authority's port separator is the last ':' outside brackets. */
static void test_authority_split(void **state)
{
    (void)state;
    struct keel_str h, p;
    assert_true(keel_http_authority_split(keel_str_c("reviews:9080"), &h, &p));
    assert_str(h, "reviews");
    assert_str(p, "9080");
    assert_false(keel_http_authority_split(keel_str_c("reviews"), &h, &p));
    assert_str(h, "reviews");
    assert_str(p, "");
    assert_true(keel_http_authority_split(keel_str_c("[::1]:443"), &h, &p));
    assert_str(h, "[::1]");
    assert_str(p, "443");
    assert_false(keel_http_authority_split(keel_str_c("[::1]"), &h, &p));
    assert_str(h, "[::1]");
    assert_true(keel_http_authority_split(keel_str_c("host:"), &h, &p));
    assert_str(h, "host");
    assert_str(p, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_authority_split),
        cmocka_unit_test(test_simple_get),
        cmocka_unit_test(test_realistic_request),
        cmocka_unit_test(test_short_form_matches_ex),
        cmocka_unit_test(test_pipelined_requests),
        cmocka_unit_test(test_leading_empty_lines),
        cmocka_unit_test(test_method),
        cmocka_unit_test(test_request_line_separators),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_target_characters),
        cmocka_unit_test(test_target_too_long),
        cmocka_unit_test(test_origin_form),
        cmocka_unit_test(test_absolute_form),
        cmocka_unit_test(test_authority_form),
        cmocka_unit_test(test_asterisk_form),
        cmocka_unit_test(test_host),
        cmocka_unit_test(test_host_rules),
        cmocka_unit_test(test_header_names),
        cmocka_unit_test(test_header_values),
        cmocka_unit_test(test_nul_and_controls_in_values),
        cmocka_unit_test(test_obs_fold),
        cmocka_unit_test(test_line_endings),
        cmocka_unit_test(test_head_size_limit),
        cmocka_unit_test(test_header_count_limit),
        cmocka_unit_test(test_request_byte_by_byte),
        cmocka_unit_test(test_every_split_point),
        cmocka_unit_test(test_has_head),
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_chunked_request),
        cmocka_unit_test(test_smuggling_cl_te),
        cmocka_unit_test(test_smuggling_te_te),
        cmocka_unit_test(test_te_in_http10),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_upgrade_and_expect),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_response_basic),
        cmocka_unit_test(test_response_status_line),
        cmocka_unit_test(test_response_framing),
        cmocka_unit_test(test_response_smuggling),
        cmocka_unit_test(test_response_byte_by_byte),
        cmocka_unit_test(test_chunked_basic),
        cmocka_unit_test(test_chunked_sizes),
        cmocka_unit_test(test_chunked_overflow),
        cmocka_unit_test(test_chunked_crlf_after_data),
        cmocka_unit_test(test_chunked_line_endings),
        cmocka_unit_test(test_chunked_extensions),
        cmocka_unit_test(test_chunked_trailers),
        cmocka_unit_test(test_chunked_splits),
        cmocka_unit_test(test_chunked_error_is_sticky),
        cmocka_unit_test(test_write_request_head),
        cmocka_unit_test(test_write_response_head),
        cmocka_unit_test(test_writers_refuse_injection),
        cmocka_unit_test(test_write_chunks),
        cmocka_unit_test(test_head_get),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
