/*
 * url_test.c - tests for config/url: Go's url.Parse and url.ParseRequestURI
 * as RequestAuthentication jwksUri (Parse: scheme, authority host and port)
 * and Wasm module URLs (ParseRequestURI, then Parse for strictParseURL) use
 * them: schemes, authorities, bracketed hosts, ports, userinfo, escapes in
 * every component, fragments, control characters, the relative-URL rules,
 * Go's `parse "...": ...` wording, and *u left alone on failure.
 */
#include "config/url.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* keel_url_parse(raw) fails with exactly `want`. */
static void parse_fails(const char *raw, const char *want)
{
    struct keel_url u;
    char err[256];
    const char *e = keel_url_parse(raw, &u, err, sizeof(err));
    assert_non_null(e);
    assert_ptr_equal(e, err);
    assert_string_equal(e, want);
}

static void request_uri_fails(const char *raw, const char *want)
{
    struct keel_url u;
    char err[256];
    const char *e = keel_url_parse_request_uri(raw, &u, err, sizeof(err));
    assert_non_null(e);
    assert_string_equal(e, want);
}

/* Host of u as a C string. */
static const char *host_of(const struct keel_url *u, char *buf, size_t n)
{
    snprintf(buf, n, "%.*s", (int)u->host_len, u->host ? u->host : "");
    return buf;
}

static void test_parse_ok(void **state)
{
    (void)state;
    struct keel_url u;
    char err[256], h[128];
    const char *raw = "https://example.com:8443/.well-known/jwks.json?x=%zz#top";

    /* scheme lower-cased, authority kept as host[:port], query not checked */
    assert_null(keel_url_parse(raw, &u, err, sizeof(err)));
    assert_string_equal(u.scheme, "https");
    assert_true(u.has_authority);
    assert_string_equal(host_of(&u, h, sizeof(h)), "example.com:8443");
    assert_ptr_equal(u.host, raw + 8); /* borrowed from the input */

    assert_null(keel_url_parse("HTTP://Example.COM/", &u, err, sizeof(err)));
    assert_string_equal(u.scheme, "http");
    assert_string_equal(host_of(&u, h, sizeof(h)), "Example.COM");

    /* IPv6 literal, with and without a port; userinfo is not part of host */
    assert_null(keel_url_parse("http://[::1]:8080/x", &u, err, sizeof(err)));
    assert_string_equal(host_of(&u, h, sizeof(h)), "[::1]:8080");
    assert_null(keel_url_parse("http://[fe80::1%25en0]/", &u, err, sizeof(err)));
    assert_null(keel_url_parse("http://user:p%40ss@host:1/", &u, err, sizeof(err)));
    assert_string_equal(host_of(&u, h, sizeof(h)), "host:1");

    /* an empty port and an empty host are accepted, as by Go */
    assert_null(keel_url_parse("http://host:/", &u, err, sizeof(err)));
    assert_null(keel_url_parse("http:///path", &u, err, sizeof(err)));
    assert_true(u.has_authority);
    assert_int_equal(u.host_len, 0);
    assert_null(keel_url_parse("file:///etc/x.wasm", &u, err, sizeof(err)));
    assert_string_equal(u.scheme, "file");

    /* opaque, relative and empty URLs */
    assert_null(keel_url_parse("mailto:a@b", &u, err, sizeof(err)));
    assert_string_equal(u.scheme, "mailto");
    assert_false(u.has_authority);
    assert_null(u.host);
    assert_null(keel_url_parse("foo/bar", &u, err, sizeof(err)));
    assert_string_equal(u.scheme, "");
    assert_null(keel_url_parse("", &u, err, sizeof(err)));
    assert_null(keel_url_parse("*", &u, err, sizeof(err)));
    assert_null(keel_url_parse("//host/p", &u, err, sizeof(err)));
    assert_string_equal(host_of(&u, h, sizeof(h)), "host");
    assert_null(keel_url_parse("///p", &u, err, sizeof(err)));
    assert_false(u.has_authority);

    /* a valid fragment; the scheme is cut at KEEL_URL_SCHEME_MAX - 1 */
    assert_null(keel_url_parse("http://h/p#frag%20x", &u, err, sizeof(err)));
    assert_null(keel_url_parse("abcdefghijklmnopqrstuvwxyzABCDEFGHIJ://h", &u, err, sizeof(err)));
    assert_int_equal(strlen(u.scheme), KEEL_URL_SCHEME_MAX - 1);
    assert_string_equal(u.scheme, "abcdefghijklmnopqrstuvwxyzabcde");
}

static void test_parse_errors(void **state)
{
    (void)state;
    parse_fails(":foo", "parse \":foo\": missing protocol scheme");
    parse_fails("1a:b", "parse \"1a:b\": first path segment in URL cannot contain colon");
    parse_fails("http://x/\x01", "parse \"http://x/\x01\": net/url: invalid control character in URL");
    parse_fails("http://x/\x7f", "parse \"http://x/\x7f\": net/url: invalid control character in URL");

    /* escapes: path, fragment, userinfo, host */
    parse_fails("http://x/%zz", "parse \"http://x/%zz\": invalid URL escape \"%zz\"");
    parse_fails("http://x/a%4", "parse \"http://x/a%4\": invalid URL escape \"%4\"");
    parse_fails("http://x/a%", "parse \"http://x/a%\": invalid URL escape \"%\"");
    parse_fails("http://x/#%zz", "parse \"http://x/#%zz\": invalid URL escape \"%zz\"");
    parse_fails("http://u%zz@x/", "parse \"http://u%zz@x/\": invalid URL escape \"%zz\"");
    parse_fails("http://%41/", "parse \"http://%41/\": invalid URL escape \"%41\"");

    /* host characters and ports */
    parse_fails("http://a b/", "parse \"http://a b/\": invalid character \" \" in host name");
    parse_fails("http://a{b/", "parse \"http://a{b/\": invalid character \"{\" in host name");
    parse_fails("http://host:abc/", "parse \"http://host:abc/\": invalid port \":abc\" after host");
    parse_fails("http://[::1]x/", "parse \"http://[::1]x/\": invalid port \"x\" after host");
    parse_fails("http://[::1/x", "parse \"http://[::1/x\": missing ']' in host");

    /* userinfo: bad characters; the host is checked first */
    parse_fails("http://a^b@host/", "parse \"http://a^b@host/\": net/url: invalid userinfo");
    parse_fails("http://a^b@ho st/", "parse \"http://a^b@ho st/\": invalid character \" \" in host name");

    /* the raw URL is clipped to 100 bytes in the message */
    char raw[200], want[256];
    snprintf(raw, sizeof(raw), "http://x/%0150d%%zz", 0);
    snprintf(want, sizeof(want), "parse \"%.100s\": invalid URL escape \"%%zz\"", raw);
    parse_fails(raw, want);
}

static void test_request_uri(void **state)
{
    (void)state;
    struct keel_url u;
    char err[256];

    assert_null(keel_url_parse_request_uri("oci://registry/img:tag", &u, err, sizeof(err)));
    assert_string_equal(u.scheme, "oci");
    assert_null(keel_url_parse_request_uri("/abs/path", &u, err, sizeof(err)));
    assert_string_equal(u.scheme, "");
    assert_false(u.has_authority);
    assert_null(keel_url_parse_request_uri("*", &u, err, sizeof(err)));
    /* no fragment handling: '#' is part of the path, and so are its escapes */
    assert_null(keel_url_parse_request_uri("http://h/p#frag", &u, err, sizeof(err)));
    request_uri_fails("http://h/p#%zz", "parse \"http://h/p#%zz\": invalid URL escape \"%zz\"");
    /* "//" without a scheme is a path, not an authority */
    assert_null(keel_url_parse_request_uri("//a b/", &u, err, sizeof(err)));
    assert_false(u.has_authority);

    request_uri_fails("", "parse \"\": empty url");
    request_uri_fails("foo/bar", "parse \"foo/bar\": invalid URI for request");
    request_uri_fails("registry/img:tag", "parse \"registry/img:tag\": invalid URI for request");
    request_uri_fails("http://a b/", "parse \"http://a b/\": invalid character \" \" in host name");
}

/* The WasmPlugin flow: ParseRequestURI, retried with "http://" prepended. */
static void test_wasm_flow(void **state)
{
    (void)state;
    struct keel_url u;
    char err[256];
    assert_non_null(keel_url_parse_request_uri("registry.io/img:v1", &u, err, sizeof(err)));
    assert_null(keel_url_parse_request_uri("http://registry.io/img:v1", &u, err, sizeof(err)));
    assert_string_equal(u.scheme, "http");
    assert_null(keel_url_parse("http://registry.io/img:v1", &u, err, sizeof(err)));
}

static void test_failure_leaves_output(void **state)
{
    (void)state;
    struct keel_url u;
    char err[256];
    assert_null(keel_url_parse("https://good/", &u, err, sizeof(err)));
    struct keel_url before = u;
    assert_non_null(keel_url_parse("https://bad host/", &u, err, sizeof(err)));
    assert_memory_equal(&u, &before, sizeof(u));
    assert_non_null(keel_url_parse_request_uri("", &u, err, sizeof(err)));
    assert_memory_equal(&u, &before, sizeof(u));

    /* a small buffer: truncated, still terminated */
    char small[8];
    assert_ptr_equal(keel_url_parse(":x", &u, small, sizeof(small)), small);
    assert_string_equal(small, "parse \"");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_ok),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_request_uri),
        cmocka_unit_test(test_wasm_flow),
        cmocka_unit_test(test_failure_leaves_output),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
