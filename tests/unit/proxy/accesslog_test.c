/*
 * accesslog_test.c - tests for proxy/accesslog: Istio's default TEXT line
 * for a full entry (exact bytes), Istio's default JSON line (typed values,
 * null for missing, sorted keys), every command operator on its own,
 * response flags in Envoy's order, "%%", custom JSON formats, and the
 * errors for bad formats (each naming the operator or the offset).
 */
#include "proxy/accesslog.h"

#include "base/buf.h"
#include "base/err.h"
#include "http/message.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define START_MS 1767323045678LL /* 2026-01-02T03:04:05.678Z */

static struct keel_http_head req, resp;
static struct keel_accesslog_entry full;

static struct keel_str sl(const char *s)
{
    return keel_str_c(s);
}

static void add_header(struct keel_http_head *h, const char *name, const char *value)
{
    h->headers[h->nheaders].name = sl(name);
    h->headers[h->nheaders].value = sl(value);
    h->nheaders++;
}

static int setup(void **state)
{
    (void)state;
    memset(&req, 0, sizeof(req));
    req.version = KEEL_HTTP_11;
    req.method = sl("GET");
    req.target = sl("/productpage?u=1");
    req.path = sl("/productpage");
    req.query = sl("u=1");
    req.authority = sl("productpage:9080");
    add_header(&req, "Host", "productpage:9080");
    add_header(&req, "User-Agent", "curl/8.5.0");
    add_header(&req, "X-Forwarded-For", "10.0.0.9");
    add_header(&req, "x-request-id", "abc-123");

    memset(&resp, 0, sizeof(resp));
    resp.version = KEEL_HTTP_11;
    resp.status = 200;
    add_header(&resp, "content-type", "text/html");

    full = (struct keel_accesslog_entry){
        .start_unix_ms = START_MS,
        .req = &req,
        .resp = &resp,
        .protocol = sl("HTTP/1.1"),
        .response_code = 200,
        .flags = 0,
        .response_code_details = "via_upstream",
        .termination_details = NULL,
        .upstream_failure = NULL,
        .bytes_received = 0,
        .bytes_sent = 1683,
        .duration_ms = 12,
        .upstream_service_time_ms = 10,
        .upstream_host = "10.244.0.12:9080",
        .upstream_cluster = "outbound|9080||productpage.default.svc.cluster.local",
        .upstream_local_address = "10.244.0.9:45678",
        .downstream_local_address = "10.96.1.1:9080",
        .downstream_remote_address = "10.244.0.9:51234",
        .requested_server_name = NULL,
        .route_name = "default",
    };
    return 0;
}

/* Renders e with a format; returns the line in a static buffer. */
static const char *render(const char *fmt, bool json, const struct keel_accesslog_entry *e)
{
    static char line[8192];
    const char *err = NULL;
    struct keel_accesslog_format *f = keel_accesslog_format_new(fmt, json, &err);
    if (!f)
        fail_msg("format \"%s\" rejected: %s", fmt ? fmt : "(null)", err);
    struct keel_buf b;
    keel_buf_init(&b, 1 << 16);
    assert_int_equal(keel_accesslog_render(f, e, &b), 0);
    assert_true(b.len < sizeof(line));
    memcpy(line, keel_buf_cstr(&b), b.len + 1);
    keel_buf_free(&b);
    keel_accesslog_format_free(f);
    return line;
}

/* One TEXT operator: the line without its newline. */
static void op_is(const char *fmt, const struct keel_accesslog_entry *e, const char *want)
{
    const char *got = render(fmt, false, e);
    size_t n = strlen(got);
    assert_true(n > 0 && got[n - 1] == '\n');
    if (strlen(want) != n - 1 || memcmp(got, want, n - 1) != 0)
        fail_msg("%s: got \"%.*s\", want \"%s\"", fmt, (int)(n - 1), got, want);
}

static void bad(const char *fmt, bool json, const char *needle)
{
    const char *err = NULL;
    struct keel_accesslog_format *f = keel_accesslog_format_new(fmt, json, &err);
    if (f)
        fail_msg("format \"%s\" accepted", fmt);
    assert_non_null(err);
    if (!strstr(err, needle))
        fail_msg("format \"%s\": error \"%s\" does not mention \"%s\"", fmt, err, needle);
}

/* ---- defaults --------------------------------------------------------------------------------------------------- */

static void test_default_text(void **state)
{
    (void)state;
    const char *want =
        "[2026-01-02T03:04:05.678Z] \"GET /productpage?u=1 HTTP/1.1\" 200 - via_upstream - \"-\" 0 1683 12 10 "
        "\"10.0.0.9\" \"curl/8.5.0\" \"abc-123\" \"productpage:9080\" \"10.244.0.12:9080\" "
        "outbound|9080||productpage.default.svc.cluster.local 10.244.0.9:45678 10.96.1.1:9080 10.244.0.9:51234 - "
        "default\n";
    assert_string_equal(render(NULL, false, &full), want);
    assert_string_equal(render("", false, &full), want);
    /* the same format written out by hand gives the same line */
    assert_string_equal(
        render("[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% "
               "%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
               "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
               "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "
               "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% "
               "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
               "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n",
               false, &full),
        want);

    /* a local reply: no upstream at all */
    struct keel_accesslog_entry nr = {
        .start_unix_ms = START_MS,
        .req = &req,
        .protocol = sl("HTTP/1.1"),
        .response_code = 404,
        .flags = KEEL_RF(NO_ROUTE_FOUND),
        .response_code_details = "route_not_found",
        .bytes_received = 0,
        .bytes_sent = 0,
        .duration_ms = 0,
        .upstream_service_time_ms = -1,
        .downstream_local_address = "10.96.1.1:9080",
        .downstream_remote_address = "10.244.0.9:51234",
    };
    assert_string_equal(render(NULL, false, &nr),
                        "[2026-01-02T03:04:05.678Z] \"GET /productpage?u=1 HTTP/1.1\" 404 NR route_not_found - \"-\" 0 "
                        "0 0 - \"10.0.0.9\" \"curl/8.5.0\" \"abc-123\" \"productpage:9080\" \"-\" - - 10.96.1.1:9080 "
                        "10.244.0.9:51234 - -\n");
}

static void test_default_json(void **state)
{
    (void)state;
    const char *want = "{\"authority\":\"productpage:9080\",\"bytes_received\":0,\"bytes_sent\":1683,"
                       "\"connection_termination_details\":null,\"downstream_local_address\":\"10.96.1.1:9080\","
                       "\"downstream_remote_address\":\"10.244.0.9:51234\",\"duration\":12,\"method\":\"GET\","
                       "\"path\":\"/productpage?u=1\",\"protocol\":\"HTTP/1.1\",\"request_id\":\"abc-123\","
                       "\"requested_server_name\":null,\"response_code\":200,"
                       "\"response_code_details\":\"via_upstream\",\"response_flags\":\"-\",\"route_name\":\"default\","
                       "\"start_time\":\"2026-01-02T03:04:05.678Z\","
                       "\"upstream_cluster\":\"outbound|9080||productpage.default.svc.cluster.local\","
                       "\"upstream_host\":\"10.244.0.12:9080\",\"upstream_local_address\":\"10.244.0.9:45678\","
                       "\"upstream_service_time\":\"10\",\"upstream_transport_failure_reason\":null,"
                       "\"user_agent\":\"curl/8.5.0\",\"x_forwarded_for\":\"10.0.0.9\"}\n";
    assert_string_equal(render(NULL, true, &full), want);
    assert_string_equal(render("", true, &full), want);

    /* TCP: no request at all; flags are a string even when set */
    struct keel_accesslog_entry tcp = {
        .start_unix_ms = START_MS,
        .response_code = 0,
        .flags = KEEL_RF(UPSTREAM_CONNECTION_FAILURE) | KEEL_RF(UPSTREAM_RETRY_LIMIT_EXCEEDED),
        .bytes_received = 10,
        .bytes_sent = 0,
        .duration_ms = -1,
        .upstream_service_time_ms = -1,
        .upstream_cluster = "outbound|3306||mysql.db.svc.cluster.local",
    };
    assert_string_equal(render(NULL, true, &tcp),
                        "{\"authority\":null,\"bytes_received\":10,\"bytes_sent\":0,"
                        "\"connection_termination_details\":null,\"downstream_local_address\":null,"
                        "\"downstream_remote_address\":null,\"duration\":null,\"method\":null,\"path\":null,"
                        "\"protocol\":null,\"request_id\":null,\"requested_server_name\":null,\"response_code\":0,"
                        "\"response_code_details\":null,\"response_flags\":\"UF,URX\",\"route_name\":null,"
                        "\"start_time\":\"2026-01-02T03:04:05.678Z\","
                        "\"upstream_cluster\":\"outbound|3306||mysql.db.svc.cluster.local\",\"upstream_host\":null,"
                        "\"upstream_local_address\":null,\"upstream_service_time\":null,"
                        "\"upstream_transport_failure_reason\":null,\"user_agent\":null,\"x_forwarded_for\":null}\n");
}

/* ---- operators -------------------------------------------------------------------------------------------------- */

static void test_request_headers(void **state)
{
    (void)state;
    op_is("%REQ(:METHOD)%", &full, "GET");
    op_is("%REQ(:PATH)%", &full, "/productpage?u=1");
    op_is("%REQ_WITHOUT_QUERY(:PATH)%", &full, "/productpage");
    op_is("%REQ(:AUTHORITY)%", &full, "productpage:9080");
    op_is("%REQ(HOST)%", &full, "productpage:9080");
    op_is("%REQ(:SCHEME)%", &full, "-");
    op_is("%REQ(user-agent)%", &full, "curl/8.5.0"); /* case-insensitive */
    op_is("%REQ(USER-AGENT):4%", &full, "curl");
    op_is("%REQ(USER-AGENT):0%", &full, "");
    op_is("%REQ(USER-AGENT):100%", &full, "curl/8.5.0");
    op_is("%REQ(:PATH):14%", &full, "/productpage?u"); /* the limit spans path, '?' and query */
    op_is("%REQ(X-MISSING)%", &full, "-");
    op_is("%REQ(X-MISSING?USER-AGENT)%", &full, "curl/8.5.0");
    op_is("%REQ(X-MISSING?X-ALSO-MISSING)%", &full, "-");
    op_is("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", &full, "/productpage?u=1");

    struct keel_http_head r2 = req;
    r2.scheme = sl("https");
    add_header(&r2, "X-Envoy-Original-Path", "/orig/path?a=b");
    add_header(&r2, "X-Empty", "");
    struct keel_accesslog_entry e = full;
    e.req = &r2;
    op_is("%REQ(:SCHEME)%", &e, "https");
    op_is("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", &e, "/orig/path?a=b");
    op_is("%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%", &e, "/orig/path");
    op_is("%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH):5%", &e, "/orig");
    op_is("[%REQ(X-EMPTY)%]", &e, "[]"); /* present but empty is not missing */

    /* HTTP/2: no Host field, HOST reads :authority */
    struct keel_http_head h2;
    memset(&h2, 0, sizeof(h2));
    h2.version = KEEL_HTTP_2;
    h2.method = sl("POST");
    h2.path = sl("/api");
    h2.authority = sl("api.example.com");
    e.req = &h2;
    e.protocol = sl("HTTP/2");
    op_is("%REQ(HOST)% %REQ(:PATH)% %PROTOCOL%", &e, "api.example.com /api HTTP/2");

    /* TCP: no request */
    e.req = NULL;
    e.resp = NULL;
    op_is("%REQ(:METHOD)% %REQ(:PATH)% %RESP(CONTENT-TYPE)%", &e, "- - -");
}

static void test_response_headers(void **state)
{
    (void)state;
    op_is("%RESP(CONTENT-TYPE)%", &full, "text/html");
    op_is("%RESP(:STATUS)%", &full, "200");
    op_is("%RESP(X-MISSING?CONTENT-TYPE):4%", &full, "text");
    op_is("%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", &full, "10");
    struct keel_accesslog_entry e = full;
    e.upstream_service_time_ms = -1;
    op_is("%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", &e, "-");
    struct keel_http_head r2 = resp;
    add_header(&r2, "x-envoy-upstream-service-time", "7");
    e.resp = &r2;
    op_is("%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", &e, "7");
    e.upstream_service_time_ms = 0;
    op_is("%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%", &e, "0"); /* measured value wins */
}

static void test_stream_info(void **state)
{
    (void)state;
    struct keel_accesslog_entry e = full;
    e.termination_details = "mx_downstream_close";
    e.upstream_failure = "delayed connect error: 111";
    e.requested_server_name = "outbound_.9080_._.productpage.default.svc.cluster.local";
    e.bytes_received = 18446744073709551615ull;
    op_is("%PROTOCOL%", &e, "HTTP/1.1");
    op_is("%RESPONSE_CODE%", &e, "200");
    op_is("%RESPONSE_FLAGS%", &e, "-");
    op_is("%RESPONSE_CODE_DETAILS%", &e, "via_upstream");
    op_is("%CONNECTION_TERMINATION_DETAILS%", &e, "mx_downstream_close");
    op_is("%UPSTREAM_TRANSPORT_FAILURE_REASON%", &e, "delayed connect error: 111");
    op_is("%BYTES_RECEIVED%", &e, "18446744073709551615");
    op_is("%BYTES_SENT%", &e, "1683");
    op_is("%DURATION%", &e, "12");
    op_is("%UPSTREAM_HOST%", &e, "10.244.0.12:9080");
    op_is("%UPSTREAM_CLUSTER%", &e, "outbound|9080||productpage.default.svc.cluster.local");
    op_is("%UPSTREAM_CLUSTER_RAW%", &e, "outbound|9080||productpage.default.svc.cluster.local");
    op_is("%UPSTREAM_CLUSTER_RAW:8%", &e, "outbound");
    op_is("%UPSTREAM_LOCAL_ADDRESS%", &e, "10.244.0.9:45678");
    op_is("%DOWNSTREAM_LOCAL_ADDRESS%", &e, "10.96.1.1:9080");
    op_is("%DOWNSTREAM_REMOTE_ADDRESS%", &e, "10.244.0.9:51234");
    op_is("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", &e, "10.244.0.9");
    op_is("%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", &e, "10.96.1.1");
    op_is("%REQUESTED_SERVER_NAME%", &e, "outbound_.9080_._.productpage.default.svc.cluster.local");
    op_is("%ROUTE_NAME%", &e, "default");

    e.downstream_remote_address = "[fd00::1]:51234";
    op_is("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", &e, "fd00::1");
    e.downstream_remote_address = "/var/run/keel.sock"; /* no port */
    op_is("%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", &e, "/var/run/keel.sock");

    /* missing values */
    struct keel_accesslog_entry m = {.duration_ms = -1, .upstream_service_time_ms = -1, .route_name = ""};
    op_is("%PROTOCOL% %RESPONSE_CODE% %DURATION% %UPSTREAM_HOST% %ROUTE_NAME% %RESPONSE_CODE_DETAILS% "
          "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %BYTES_SENT%",
          &m, "- 0 - - - - - 0");
}

static void test_start_time(void **state)
{
    (void)state;
    op_is("%START_TIME%", &full, "2026-01-02T03:04:05.678Z");
    op_is("%START_TIME(%s)%", &full, "1767323045");
    op_is("%START_TIME(%Y/%m/%d %H:%M:%S.%3f)%", &full, "2026/01/02 03:04:05.678");
    op_is("%START_TIME(%E3S)%", &full, "05.678");
    op_is("%START_TIME(%6f)%", &full, "678000");
    op_is("%START_TIME(%%Y)%", &full, "%Y");
    struct keel_accesslog_entry e = full;
    e.start_unix_ms = 5; /* 1970-01-01T00:00:00.005Z */
    op_is("%START_TIME%", &e, "1970-01-01T00:00:00.005Z");
    e.start_unix_ms = 951782400000LL + 999; /* 2000-02-29 (leap day) */
    op_is("%START_TIME%", &e, "2000-02-29T00:00:00.999Z");
}

static void test_flags(void **state)
{
    (void)state;
    struct keel_buf b;
    keel_buf_init(&b, 1024);
    assert_int_equal(keel_response_flags_format(0, &b), 0);
    assert_string_equal(keel_buf_cstr(&b), "-");
    keel_buf_reset(&b);
    assert_int_equal(keel_response_flags_format(0xffffffffu, &b), 0);
    assert_string_equal(keel_buf_cstr(&b),
                        "LH,UH,UT,LR,UR,UF,UC,UO,NR,DI,FI,RL,UAEX,RLSE,DC,URX,SI,IH,DPE,UMSDR,RFCF,NFCF,DT,UPE,NC,OM,"
                        "DF,DO");
    keel_buf_reset(&b);
    /* Envoy's order, not the order they were set in */
    assert_int_equal(keel_response_flags_format(KEEL_RF(UPSTREAM_RETRY_LIMIT_EXCEEDED) |
                                                    KEEL_RF(UPSTREAM_CONNECTION_FAILURE) | KEEL_RF(NO_HEALTHY_UPSTREAM),
                                                &b),
                     0);
    assert_string_equal(keel_buf_cstr(&b), "UH,UF,URX");
    keel_buf_reset(&b);
    assert_int_equal(keel_response_flags_format(KEEL_RF(DOWNSTREAM_CONNECTION_TERMINATION), &b), 0);
    assert_string_equal(keel_buf_cstr(&b), "DC");
    /* appends; failure leaves the buffer as it was */
    struct keel_buf small;
    keel_buf_init(&small, 6);
    keel_buf_puts(&small, "x=");
    assert_int_equal(keel_response_flags_format(KEEL_RF(NO_ROUTE_FOUND), &small), 0);
    assert_string_equal(keel_buf_cstr(&small), "x=NR");
    assert_int_equal(keel_response_flags_format(KEEL_RF(UPSTREAM_OVERFLOW) | KEEL_RF(NO_ROUTE_FOUND), &small),
                     KEEL_ETOOBIG);
    assert_string_equal(keel_buf_cstr(&small), "x=NR");
    keel_buf_free(&b);
    keel_buf_free(&small);

    struct keel_accesslog_entry e = full;
    e.flags = KEEL_RF(UPSTREAM_REQUEST_TIMEOUT) | KEEL_RF(UPSTREAM_RETRY_LIMIT_EXCEEDED);
    op_is("%RESPONSE_FLAGS%", &e, "UT,URX");
    op_is("%RESPONSE_FLAGS:2%", &e, "UT");
}

static void test_percent_and_literals(void **state)
{
    (void)state;
    op_is("100%% done", &full, "100% done");
    op_is("%%%RESPONSE_CODE%%%", &full, "%200%");
    op_is("%%REQ(:METHOD)%%", &full, "%REQ(:METHOD)%");
    op_is("plain text", &full, "plain text");
    assert_string_equal(render("line\n", false, &full), "line\n"); /* newline not doubled */
    assert_string_equal(render("a\nb", false, &full), "a\nb\n");
}

static void test_custom_json(void **state)
{
    (void)state;
    struct keel_http_head r2 = req;
    add_header(&r2, "X-Weird", "a\"b\\c\td");
    struct keel_accesslog_entry e = full;
    e.req = &r2;
    assert_string_equal(
        render(" { \"route\": \"%ROUTE_NAME%:%UPSTREAM_HOST%\", \"code\" : \"%RESPONSE_CODE%\","
               "\"lit\": -1.5e3, \"flag\": true, \"nothing\": null, \"missing\": \"%REQ(X-NOPE)%\","
               "\"mixed\": \"a %REQ(X-NOPE)% b\", \"esc\": \"%REQ(X-WEIRD)%\", \"text\": \"fixed\","
               "\"caf\\u00e9\\n\": \"%PROTOCOL%\", \"pct\": \"100%%\", \"short\": \"%BYTES_SENT:2%\","
               "\"flags\": \"%RESPONSE_FLAGS%\" } ",
               true, &e),
        "{\"caf\xc3\xa9\\n\":\"HTTP/1.1\",\"code\":200,\"esc\":\"a\\\"b\\\\c\\td\",\"flag\":true,"
        "\"flags\":\"-\",\"lit\":-1.5e3,\"missing\":null,\"mixed\":\"a - b\",\"nothing\":null,"
        "\"pct\":\"100%\",\"route\":\"default:10.244.0.12:9080\",\"short\":\"16\",\"text\":\"fixed\"}\n");
    assert_string_equal(render("{}", true, &e), "{}\n");
}

static void test_render_failure_leaves_buffer(void **state)
{
    (void)state;
    const char *err;
    struct keel_accesslog_format *f = keel_accesslog_format_new(NULL, false, &err);
    assert_non_null(f);
    struct keel_buf b;
    keel_buf_init(&b, 64);
    keel_buf_puts(&b, "previous line\n");
    assert_int_equal(keel_accesslog_render(f, &full, &b), KEEL_ETOOBIG);
    assert_string_equal(keel_buf_cstr(&b), "previous line\n");
    keel_buf_free(&b);
    keel_accesslog_format_free(f);
    keel_accesslog_format_free(NULL);
}

static void test_bad_formats(void **state)
{
    (void)state;
    bad("%FOO%", false, "Not supported field in StreamInfo: FOO");
    bad("x %RESPONSE_COD% y", false, "did you mean %RESPONSE_CODE%");
    bad("%RESPONSE_COD%", false, "offset 0");
    bad("%REQ%", false, "needs a header name");
    bad("%REQ()%", false, "needs a header name");
    bad("%PROTOCOL(x)%", false, "takes no argument");
    bad("%REQ(:PATH", false, "no closing ')'");
    bad("%REQ(:PATH)", false, "not terminated");
    bad("%DURATION", false, "DURATION is not terminated");
    bad("50% of", false, "write %% for a literal");
    bad("%", false, "offset 0");
    bad("%REQ(A):x%", false, "decimal");
    bad("%REQ(A):%", false, "decimal");
    bad("%REQ(?B)%", false, "X?Y");
    bad("%REQ(A?)%", false, "X?Y");
    bad("%REQ(A?B?C)%", false, "X?Y");
    bad("%start_time%", false, "'%' must start a command operator");
    bad("not json", true, "expected a JSON object");
    bad("{\"a\": {\"b\": \"c\"}}", true, "nested objects");
    bad("{\"a\": [1]}", true, "nested objects");
    bad("{\"a\": \"%BAD%\"}", true, "Not supported field in StreamInfo: BAD");
    bad("{\"a\": \"x\", \"a\": \"y\"}", true, "duplicate key \"a\"");
    bad("{\"a\": \"x\"} trailing", true, "unexpected text");
    bad("{\"a\": \"x\",}", true, "expected a string");
    bad("{\"a\" \"x\"}", true, "expected ':'");
    bad("{\"a\": \"x\"", true, "expected ',' or '}'");
    bad("{\"a\": \"\\q\"}", true, "bad escape");
    bad("{\"a\": \"\\ud800\"}", true, "surrogate");
    bad("{\"a\": 01}", true, "expected ',' or '}'");
    bad("{\"a\": tru}", true, "expected a string, a number");
    /* a NULL err pointer is allowed */
    assert_null(keel_accesslog_format_new("%NOPE%", false, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_default_text, setup),
        cmocka_unit_test_setup(test_default_json, setup),
        cmocka_unit_test_setup(test_request_headers, setup),
        cmocka_unit_test_setup(test_response_headers, setup),
        cmocka_unit_test_setup(test_stream_info, setup),
        cmocka_unit_test_setup(test_start_time, setup),
        cmocka_unit_test_setup(test_flags, setup),
        cmocka_unit_test_setup(test_percent_and_literals, setup),
        cmocka_unit_test_setup(test_custom_json, setup),
        cmocka_unit_test_setup(test_render_failure_leaves_buffer, setup),
        cmocka_unit_test_setup(test_bad_formats, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
