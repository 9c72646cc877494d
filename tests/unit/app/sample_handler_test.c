/*
 * sample_handler_test.c - tests for app/sample_handler: the path parsers (routes, /status and /delay arguments,
 * decimal seconds) and exchanges on a real event loop: answers that are ready at once, the JSON and response fields
 * they carry, --fail-rate 0 and 1, and /delay answered by a timer while the loop keeps running.
 */
#include "app/sample_handler.h"

#include "base/err.h"
#include "base/str.h"
#include "net/loop.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static struct keel_sample_route route(const char *p)
{
    return keel_sample_route_parse(keel_str_c(p));
}

static void test_routes(void **state)
{
    (void)state;
    assert_int_equal(route("/").kind, KEEL_SAMPLE_ROUTE_ROOT);
    assert_int_equal(route("/healthz").kind, KEEL_SAMPLE_ROUTE_HEALTHZ);
    assert_int_equal(route("/headers").kind, KEEL_SAMPLE_ROUTE_HEADERS);
    assert_int_equal(route("/ip").kind, KEEL_SAMPLE_ROUTE_IP);
    assert_int_equal(route("/ip/").kind, KEEL_SAMPLE_ROUTE_NOT_FOUND);
    assert_int_equal(route("").kind, KEEL_SAMPLE_ROUTE_NOT_FOUND);
    assert_int_equal(route("/HEADERS").kind, KEEL_SAMPLE_ROUTE_NOT_FOUND);
    struct keel_sample_route r = route("/status/418");
    assert_int_equal(r.kind, KEEL_SAMPLE_ROUTE_STATUS);
    assert_int_equal(r.status, 418);
    assert_int_equal(route("/status/200").status, 200);
    assert_int_equal(route("/status/599").status, 599);
    const char *bad_status[] = {"/status/",     "/status/199",  "/status/100",
                                "/status/600",  "/status/abc",  "/status/4x",
                                "/status/-200", "/status/ 200", "/status/99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad_status) / sizeof(bad_status[0]); i++) {
        r = route(bad_status[i]);
        assert_int_equal(r.kind, KEEL_SAMPLE_ROUTE_BAD_ARG);
        assert_non_null(r.error);
    }
    r = route("/delay/0.5");
    assert_int_equal(r.kind, KEEL_SAMPLE_ROUTE_DELAY);
    assert_int_equal(r.delay_ms, 500);
    assert_int_equal(route("/delay/60").delay_ms, 60000);
    r = route("/bytes/1000000");
    assert_int_equal(r.kind, KEEL_SAMPLE_ROUTE_BYTES);
    assert_int_equal(r.bytes, 1000000);
    assert_int_equal(route("/bytes/4194305").kind, KEEL_SAMPLE_ROUTE_BAD_ARG);
    assert_int_equal(route("/bytes/x").kind, KEEL_SAMPLE_ROUTE_BAD_ARG);
    assert_int_equal(route("/delay/0").delay_ms, 0);
    const char *bad_delay[] = {"/delay/",  "/delay/60.001", "/delay/61",  "/delay/-1",  "/delay/1e3",
                               "/delay/.", "/delay/abc",    "/delay/1/2", "/delay/0x10"};
    for (size_t i = 0; i < sizeof(bad_delay) / sizeof(bad_delay[0]); i++)
        assert_int_equal(route(bad_delay[i]).kind, KEEL_SAMPLE_ROUTE_BAD_ARG);
}

static void test_parse_milli(void **state)
{
    (void)state;
    struct {
        const char *in;
        int rc;
        uint64_t out;
    } cases[] = {
        {"0", 0, 0},
        {"2", 0, 2000},
        {"0.5", 0, 500},
        {".25", 0, 250},
        {"1.", 0, 1000},
        {"1.2345", 0, 1234},
        {"0.123456789", 0, 123},
        {"0.1234567890", KEEL_EINVAL, 0},
        {"", KEEL_EINVAL, 0},
        {".", KEEL_EINVAL, 0},
        {"1.2.3", KEEL_EINVAL, 0},
        {"+1", KEEL_EINVAL, 0},
        {"1 ", KEEL_EINVAL, 0},
        {"60", 0, 60000},
        {"60.0009", 0, 60000},
        {"60.001", KEEL_ETOOBIG, 0},
        {"18446744073709551616", KEEL_ETOOBIG, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint64_t out = 777;
        int rc = keel_sample_parse_milli(keel_str_c(cases[i].in), 60000, &out);
        assert_int_equal(rc, cases[i].rc);
        assert_int_equal(out, rc ? 777 : cases[i].out);
    }
}

struct fixture {
    struct keel_loop *loop;
    struct keel_sample_options opt;
    struct keel_sample_ctx ctx;
    int done;
};

static int setup(void **state)
{
    static struct fixture f;
    memset(&f, 0, sizeof(f));
    f.loop = keel_loop_new();
    assert_non_null(f.loop);
    f.opt = (struct keel_sample_options){.listen = "127.0.0.1:0",
                                         .name = "svc",
                                         .version = "v9",
                                         .fail_code = 503,
                                         .concurrency = 1,
                                         .call_timeout_ms = 1000};
    keel_sample_ctx_init(&f.ctx, f.loop, &f.opt, "host/1", 42);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    keel_sample_ctx_fini(&f->ctx);
    keel_loop_free(f->loop);
    return 0;
}

static void on_done(struct keel_sample_exchange *ex, void *data)
{
    (void)ex;
    struct fixture *f = data;
    f->done++;
}

static struct keel_sample_exchange *start(struct fixture *f, const char *path)
{
    static const struct keel_http_header hdrs[] = {
        {{"X-Custom", 8}, {"a\"b\x01\xff", 5}},
        {{"x-custom", 8}, {"second", 6}},
    };
    struct keel_sample_request req = {
        .method = keel_str_c("GET"),
        .path = keel_str_c(path),
        .authority = keel_str_c("svc:8080"),
        .headers = hdrs,
        .nheaders = 2,
        .protocol = "HTTP/1.1",
        .peer = "[::1]:5555",
    };
    return keel_sample_exchange_start(&f->ctx, &req, on_done, f);
}

static const char *body(const struct keel_sample_exchange *ex)
{
    return keel_buf_cstr(keel_sample_exchange_body(ex));
}

static void test_ready_answers(void **state)
{
    struct fixture *f = *state;
    struct keel_sample_exchange *ex = start(f, "/headers");
    assert_true(keel_sample_exchange_ready(ex));
    assert_int_equal(keel_sample_exchange_status(ex), 200);
    /* repeated fields joined; quotes, controls and bytes >= 0x80 escaped */
    assert_non_null(strstr(body(ex), "\"X-Custom\":\"a\\\"b\\u0001\\u00ff, second\""));
    assert_non_null(strstr(body(ex), "\"name\":\"svc\",\"version\":\"v9\",\"id\":\"host/1\""));
    const struct keel_http_header *h;
    size_t n = keel_sample_exchange_headers(ex, &h);
    assert_int_equal(n, 5);
    assert_true(keel_str_eq_c(h[1].name, "x-app-name") && keel_str_eq_c(h[1].value, "svc"));
    assert_true(keel_str_eq_c(h[2].name, "x-app-version") && keel_str_eq_c(h[2].value, "v9"));
    assert_true(keel_str_eq_c(h[4].name, "x-app-peer") && keel_str_eq_c(h[4].value, "[::1]:5555"));
    keel_sample_exchange_free(ex);

    ex = start(f, "/ip");
    assert_non_null(strstr(body(ex), "\"origin\":\"::1\""));
    keel_sample_exchange_free(ex);
    ex = start(f, "/status/418");
    assert_int_equal(keel_sample_exchange_status(ex), 418);
    keel_sample_exchange_free(ex);
    ex = start(f, "/status/1");
    assert_int_equal(keel_sample_exchange_status(ex), 400);
    keel_sample_exchange_free(ex);
    ex = start(f, "/missing");
    assert_int_equal(keel_sample_exchange_status(ex), 404);
    keel_sample_exchange_free(ex);
    ex = start(f, "/");
    assert_true(keel_sample_exchange_ready(ex));
    assert_non_null(strstr(body(ex), "\"protocol\":\"HTTP/1.1\",\"method\":\"GET\",\"path\":\"/\""));
    keel_sample_exchange_free(ex);
    assert_int_equal(f->done, 0); /* ready answers never call back */
}

static void test_fail_rate(void **state)
{
    struct fixture *f = *state;
    f->opt.fail_rate = 1;
    f->opt.fail_code = 500;
    struct keel_sample_exchange *ex = start(f, "/");
    assert_int_equal(keel_sample_exchange_status(ex), 500);
    assert_non_null(strstr(body(ex), "\"error\""));
    keel_sample_exchange_free(ex);
    ex = start(f, "/healthz"); /* spared */
    assert_int_equal(keel_sample_exchange_status(ex), 200);
    keel_sample_exchange_free(ex);
    f->opt.fail_rate = 0;
    for (int i = 0; i < 100; i++) {
        ex = start(f, "/ip");
        assert_int_equal(keel_sample_exchange_status(ex), 200);
        keel_sample_exchange_free(ex);
    }
}

static void test_delay(void **state)
{
    struct fixture *f = *state;
    struct keel_sample_exchange *slow = start(f, "/delay/0.05");
    struct keel_sample_exchange *gone = start(f, "/delay/0.05");
    assert_false(keel_sample_exchange_ready(slow));
    keel_sample_exchange_free(gone); /* freed while waiting: its timer must not fire */
    struct keel_sample_exchange *now = start(f, "/delay/0");
    assert_true(keel_sample_exchange_ready(now));
    keel_sample_exchange_free(now);
    uint64_t t0 = keel_now_ms();
    while (f->done == 0 && keel_now_ms() - t0 < 5000)
        keel_loop_run_once(f->loop, 100);
    assert_int_equal(f->done, 1);
    assert_true(keel_sample_exchange_ready(slow));
    assert_int_equal(keel_sample_exchange_status(slow), 200);
    assert_non_null(strstr(body(slow), "\"delay_ms\":50"));
    keel_sample_exchange_free(slow);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_parse_milli),
        cmocka_unit_test_setup_teardown(test_ready_answers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fail_rate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delay, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
