/*
 * decode_test.c - tests for config/decode over the real generated schemas:
 * unknown fields and suggestions, type errors and their hints, enums,
 * required fields, oneofs, integer ranges, durations, null handling, map-key
 * rules, list rules, string rules, paths and locations.
 */
#include "config/decode.h"

#include "base/arena.h"
#include "base/diag.h"
#include "base/err.h"
#include "config/schema_gen.h"
#include "config/yaml.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static struct {
    struct keel_arena *a;
    struct keel_diags d;
    struct keel_node *root;
    int rc;
} F;

static int take_root(void *ctx, struct keel_node *root, const struct keel_loc *loc)
{
    (void)ctx;
    (void)loc;
    F.root = root;
    return 1;
}

static int setup(void **state)
{
    (void)state;
    memset(&F, 0, sizeof(F));
    F.a = keel_arena_new(0);
    keel_diags_init(&F.d);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    keel_diags_free(&F.d);
    keel_arena_free(F.a);
    return 0;
}

/* Parses yaml (must be well-formed) and decodes it with m under path root. */
static void *decode_at(const struct keel_msgdesc *m, const char *root, const char *yaml)
{
    F.root = NULL;
    size_t before = keel_diags_count(&F.d);
    keel_yaml_load_buf(F.a, "t.yaml", yaml, strlen(yaml), &F.d, take_root, NULL);
    assert_int_equal(keel_diags_count(&F.d), before);
    assert_non_null(F.root);
    void *out = keel_arena_xalloc(F.a, m->size);
    struct keel_decode dc;
    keel_decode_init(&dc, F.a, &F.d, root);
    F.rc = keel_decode_msg(&dc, m, F.root, out);
    assert_int_equal(dc.errors, keel_diags_count(&F.d) - before);
    assert_int_equal(F.rc, dc.errors ? KEEL_EINVALID_CONFIG : 0);
    return out;
}

static void *decode(const struct keel_msgdesc *m, const char *yaml)
{
    return decode_at(m, NULL, yaml);
}

static void dump_diags(void)
{
    for (size_t i = 0; i < keel_diags_count(&F.d); i++) {
        const struct keel_diag *g = keel_diags_at(&F.d, i);
        print_error("  diag %zu: %u:%u %s: %s\n", i, g->loc.line, g->loc.col, g->path ? g->path : "-", g->msg);
    }
}

static void no_diags(void)
{
    if (keel_diags_count(&F.d))
        dump_diags();
    assert_int_equal(keel_diags_count(&F.d), 0);
    assert_int_equal(F.rc, 0);
}

/* The diagnostic whose message contains `part` (there must be one). */
static const struct keel_diag *diag_with(const char *part)
{
    for (size_t i = 0; i < keel_diags_count(&F.d); i++)
        if (strstr(keel_diags_at(&F.d, i)->msg, part))
            return keel_diags_at(&F.d, i);
    print_error("no diagnostic contains \"%s\"\n", part);
    dump_diags();
    fail();
    return NULL;
}

/* Exactly one diagnostic, whose message contains every one of the given
 * parts (messages are checked by what they must say - the value, the
 * limit, the suggestion - not by their exact wording). */
static const struct keel_diag *only_(const char *first, ...)
{
    bool ok = keel_diags_count(&F.d) == 1;
    const char *msg = ok ? keel_diags_at(&F.d, 0)->msg : "";
    va_list ap;
    va_start(ap, first);
    for (const char *part = first; part; part = va_arg(ap, const char *)) {
        if (!strstr(msg, part)) {
            print_error("message lacks: %s\n", part);
            ok = false;
        }
    }
    va_end(ap);
    if (!ok)
        dump_diags();
    assert_true(ok);
    assert_int_equal(F.rc, KEEL_EINVALID_CONFIG);
    return keel_diags_at(&F.d, 0);
}
#define only(...) only_(__VA_ARGS__, (const char *)NULL)

static void reset_diags(void)
{
    keel_diags_free(&F.d);
    keel_diags_init(&F.d);
}

#define NS 1000000LL
#define SEC 1000000000LL

/* ---- well-formed input -------------------------------------------------------- */

static void test_decode_http_retry(void **state)
{
    (void)state;
    struct keel_http_retry *r = decode(&keel_msg_http_retry, "attempts: 3\nperTryTimeout: 2s\nretryOn: 5xx,reset\n"
                                                             "backoff: 1h2m3.5s\nretryRemoteLocalities: true\n");
    no_diags();
    assert_int_equal(r->attempts, 3);
    assert_true(r->per_try_timeout == 2 * SEC);
    assert_true(r->backoff == 3723 * SEC + SEC / 2);
    assert_string_equal(r->retry_on, "5xx,reset");
    assert_true(r->retry_remote_localities);
    assert_false(r->retry_ignore_previous_hosts);
    assert_ptr_equal(r->_o.node, F.root);
    assert_true(keel_obj_has(&r->_o, "attempts"));
    assert_false(keel_obj_has(&r->_o, "retryIgnorePreviousHosts"));
}

static void test_decode_virtual_service_tree(void **state)
{
    (void)state;
    struct keel_virtual_service *vs =
        decode_at(&keel_msg_virtual_service, "spec",
                  "hosts: [reviews, reviews.prod.svc.cluster.local]\n"
                  "http:\n"
                  "- match:\n  - uri: {prefix: /api}\n    headers: {end-user: {exact: jason}}\n"
                  "  route:\n  - destination: {host: reviews, subset: v2}\n    weight: 80\n"
                  "  - destination: {host: reviews, subset: v3, port: {number: 9080}}\n    weight: 20\n"
                  "  timeout: 10s\n  retries: {attempts: 2}\n"
                  "- route:\n  - destination: {host: reviews}\n");
    no_diags();
    assert_int_equal(vs->n_hosts, 2);
    assert_string_equal(vs->hosts[1], "reviews.prod.svc.cluster.local");
    assert_int_equal(vs->n_http, 2);
    struct keel_http_route *h = &vs->http[0];
    assert_int_equal(h->n_match, 1);
    assert_string_equal(h->match[0].uri->prefix, "/api");
    assert_int_equal(h->match[0].n_headers, 1);
    assert_string_equal(h->match[0].headers[0].key, "end-user");
    assert_string_equal(h->match[0].headers[0].value.exact, "jason");
    assert_int_equal(h->n_route, 2);
    assert_string_equal(h->route[0].destination->subset, "v2");
    assert_int_equal(h->route[1].weight, 20);
    assert_int_equal(h->route[1].destination->port->number, 9080);
    assert_true(h->timeout == 10 * SEC);
    assert_int_equal(h->retries->attempts, 2);
    assert_null(vs->http[1].retries);
    /* keel_obj_* locations */
    struct keel_loc l = keel_obj_loc(&vs->_o, "http");
    assert_int_equal(l.line, 3);
    l = keel_obj_item_loc(&h->_o, "route", 1);
    assert_int_equal(l.line, 9);
    l = keel_obj_loc(&h->_o, "nonexistent"); /* falls back to the object */
    assert_int_equal(l.line, h->_o.node->loc.line);
    l = keel_obj_item_loc(&h->_o, "route", 99);
    assert_int_equal(l.line, keel_obj_loc(&h->_o, "route").line);
    struct keel_obj none = {NULL};
    assert_int_equal(keel_obj_loc(&none, "x").line, 0);
    assert_false(keel_obj_has(&none, "x"));
    assert_false(keel_obj_has(NULL, "x"));
}

/* ---- unknown fields --------------------------------------------------------- */

static void test_unknown_field_did_you_mean(void **state)
{
    (void)state;
    decode_at(&keel_msg_http_retry, "spec.http[0].retries", "attempt: 3\n");
    const struct keel_diag *g = only("unknown field \"attempt\": did you mean \"attempts\"?");
    assert_string_equal(g->path, "spec.http[0].retries.attempt");
    assert_int_equal(g->loc.line, 1);
    assert_int_equal(g->loc.col, 1);
}

static void test_unknown_field_case_and_separators(void **state)
{
    (void)state;
    /* snake_case, kebab-case and wrong case all map to the camelCase name */
    decode(&keel_msg_http_retry, "per_try_timeout: 1s\nRetry-On: 5xx\nRETRYREMOTELOCALITIES: true\n");
    assert_int_equal(keel_diags_count(&F.d), 3);
    diag_with("unknown field \"per_try_timeout\": did you mean \"perTryTimeout\"?");
    diag_with("unknown field \"Retry-On\": did you mean \"retryOn\"?");
    diag_with("did you mean \"retryRemoteLocalities\"?");
}

static void test_unknown_field_lists_valid_fields(void **state)
{
    (void)state;
    decode(&keel_msg_http_retry, "zzzzzzzzzz: 1\n");
    only("unknown field \"zzzzzzzzzz\"; valid fields here: attempts, backoff, perTryTimeout, "
         "retryIgnorePreviousHosts, retryOn, retryRemoteLocalities");
}

static void test_unknown_field_belongs_inside(void **state)
{
    (void)state;
    /* `weight` written at the route level instead of inside route[] */
    decode(&keel_msg_http_route, "weight: 50\n");
    only("unknown field \"weight\" at this level: did you mean \"route[].weight\" (it belongs inside)?");
    reset_diags();
    /* `destination` exists under mirrors[] and route[]: some nested hint either way */
    decode(&keel_msg_http_route, "destination: {host: a}\n");
    diag_with("unknown field \"destination\" at this level: did you mean \"");
    diag_with(".destination\" (it belongs inside)?");
}

static void test_unknown_field_in_big_message(void **state)
{
    (void)state;
    /* more than 12 fields and nothing near: no list */
    decode(&keel_msg_http_route, "qqqqqqqqqqqq: 1\n");
    only("unknown field \"qqqqqqqqqqqq\"");
}

static void test_unknown_fields_all_reported(void **state)
{
    (void)state;
    decode(&keel_msg_http_retry, "a1: 1\nattempts: x\nb2: 2\n");
    assert_int_equal(keel_diags_count(&F.d), 3); /* keeps going after the first */
}

/* ---- type errors ----------------------------------------------------------- */

static void test_type_error_remove_the_quotes(void **state)
{
    (void)state;
    decode(&keel_msg_http_retry, "attempts: \"3\"\n");
    only("expected integer, got string \"3\" (remove the quotes)");
    reset_diags();
    decode(&keel_msg_http_retry, "retryRemoteLocalities: \"true\"\n");
    only("expected boolean, got string \"true\" (remove the quotes)");
}

static void test_type_error_without_hint(void **state)
{
    (void)state;
    decode(&keel_msg_http_retry, "attempts: three\nretryRemoteLocalities: yes\n");
    assert_int_equal(keel_diags_count(&F.d), 2);
    assert_string_equal(keel_diags_at(&F.d, 0)->msg, "expected integer, got string \"three\"");
    assert_string_equal(keel_diags_at(&F.d, 1)->msg, "expected boolean, got string \"yes\"");
}

static void test_type_error_quoted_non_number(void **state)
{
    (void)state;
    /* "(remove the quotes)" is offered for any quoted string where an
     * integer is expected, even when the text is not a number */
    decode(&keel_msg_http_retry, "attempts: \"three\"\n");
    const struct keel_diag *g = only("expected integer", "\"three\"");
    assert_null(strstr(g->msg, "remove the quotes"));
}

static void test_type_error_quote_it(void **state)
{
    (void)state;
    decode(&keel_msg_http_retry, "retryOn: 503\n");
    only("expected string, got integer 503 (quote it to make it a string)");
    reset_diags();
    decode(&keel_msg_http_retry, "retryOn: true\n");
    only("expected string, got boolean true (quote it to make it a string)");
}

static void test_type_error_collections(void **state)
{
    (void)state;
    decode(&keel_msg_http_retry, "attempts: [1]\nretryOn: {a: b}\n");
    assert_int_equal(keel_diags_count(&F.d), 2);
    assert_string_equal(keel_diags_at(&F.d, 0)->msg, "expected integer, got list");
    assert_string_equal(keel_diags_at(&F.d, 1)->msg, "expected string, got object");
}

static void test_object_given_a_list(void **state)
{
    (void)state;
    decode(&keel_msg_http_route, "retries:\n- attempts: 3\n");
    const struct keel_diag *g =
        only("expected object (write the fields directly, without a leading \"-\"), got list");
    assert_string_equal(g->path, "retries");
}

static void test_list_given_an_object(void **state)
{
    (void)state;
    decode(&keel_msg_virtual_service, "hosts: {a: b}\nhttp: reviews\n");
    assert_int_equal(keel_diags_count(&F.d), 2);
    assert_string_equal(keel_diags_at(&F.d, 0)->msg, "expected a list, got object (start each item with \"- \")");
    assert_string_equal(keel_diags_at(&F.d, 1)->msg, "expected list, got string \"reviews\"");
}

static void test_top_level_not_a_map(void **state)
{
    (void)state;
    keel_yaml_load_buf(F.a, "t.yaml", "[1]", 3, &F.d, take_root, NULL);
    struct keel_http_retry r;
    memset(&r, 0, sizeof(r));
    struct keel_decode dc;
    keel_decode_init(&dc, F.a, &F.d, "spec");
    assert_int_equal(keel_decode_msg(&dc, &keel_msg_http_retry, F.root, &r), KEEL_EINVALID_CONFIG);
    assert_string_equal(keel_diags_at(&F.d, 0)->msg, "expected object, got list");
    assert_string_equal(keel_diags_at(&F.d, 0)->path, "spec");
}

/* ---- integers --------------------------------------------------------------- */

static void test_int32_range(void **state)
{
    (void)state;
    struct keel_http_retry *r = decode(&keel_msg_http_retry, "attempts: 2147483647\n");
    no_diags();
    assert_int_equal(r->attempts, 2147483647);
    decode(&keel_msg_http_retry, "attempts: 2147483648\n");
    only("2147483648", "must be between -2147483648 and 2147483647");
    reset_diags();
    decode(&keel_msg_http_retry, "attempts: -2147483649\n");
    only("-2147483649", "must be between -2147483648 and 2147483647");
}

static void test_uint32_range(void **state)
{
    (void)state;
    decode(&keel_msg_http_match, "port: -1\n");
    only("-1", "must be between 0 and 4294967295");
    reset_diags();
    decode(&keel_msg_http_match, "port: 4294967296\n");
    only("4294967296", "must be between 0 and 4294967295");
}

static void test_int_range_with_rule_message(void **state)
{
    (void)state;
    decode(&keel_msg_service_port, "name: http\nnumber: 70000\n");
    only("port must be between 1-65535 (got 70000)");
    reset_diags();
    decode(&keel_msg_service_port, "name: http\nnumber: 0\n");
    only("port must be between 1-65535 (got 0)");
}

static void test_integral_floats_and_huge_numbers(void **state)
{
    (void)state;
    struct keel_http_retry *r = decode(&keel_msg_http_retry, "attempts: 3.0\n");
    no_diags();
    assert_int_equal(r->attempts, 3);
    r = decode(&keel_msg_http_retry, "attempts: 1e3\n");
    no_diags();
    assert_int_equal(r->attempts, 1000);
    decode(&keel_msg_http_retry, "attempts: 3.5\n");
    only("expected integer, got number 3.5");
    reset_diags();
    decode(&keel_msg_http_retry, "attempts: 99999999999999999999\n");
    only("expected integer, got number 99999999999999999999");
    reset_diags();
    decode(&keel_msg_http_retry, "attempts: .inf\n");
    only("expected integer, got number .inf");
}

/* ---- enums -------------------------------------------------------------------- */

static void test_enum_values(void **state)
{
    (void)state;
    struct keel_load_balancer *lb = decode(&keel_msg_load_balancer, "simple: LEAST_REQUEST\n");
    no_diags();
    assert_int_equal(lb->simple, KEEL_LOAD_BALANCER_SIMPLE_LEAST_REQUEST);
    lb = decode(&keel_msg_load_balancer, "simple: UNSPECIFIED\n");
    no_diags();
    assert_int_equal(lb->simple, KEEL_LOAD_BALANCER_SIMPLE_UNSPECIFIED);
}

static void test_enum_unknown_with_suggestion(void **state)
{
    (void)state;
    decode(&keel_msg_load_balancer, "simple: ROUND_ROBN\n");
    only("\"ROUND_ROBN\"", "did you mean \"ROUND_ROBIN\"?",
         "UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST");
    reset_diags();
    /* enums are case-sensitive, but the suggestion ignores case and '_' */
    decode(&keel_msg_load_balancer, "simple: round-robin\n");
    only("\"round-robin\"", "did you mean \"ROUND_ROBIN\"?");
}

static void test_enum_unknown_without_suggestion(void **state)
{
    (void)state;
    decode(&keel_msg_load_balancer, "simple: MAGLEV\n");
    const struct keel_diag *g =
        only("\"MAGLEV\"", "UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST");
    assert_null(strstr(g->msg, "did you mean"));
    reset_diags();
    decode(&keel_msg_load_balancer, "simple: 4\n");
    only("expected string, got integer 4 (quote it to make it a string)");
}

static void test_enum_long_value_is_clipped(void **state)
{
    (void)state;
    char doc[400] = "simple: ";
    memset(doc + 8, 'X', 300);
    doc[308] = '\0';
    decode(&keel_msg_load_balancer, doc);
    const struct keel_diag *g = diag_with("\"XXXX");
    assert_non_null(strstr(g->msg, "...\""));
    assert_true(strlen(g->msg) < 250);
}

/* ---- required and oneof --------------------------------------------------------- */

static void test_required_fields(void **state)
{
    (void)state;
    decode_at(&keel_msg_http_route_destination, "spec.http[0].route[0]", "weight: 10\n");
    const struct keel_diag *g = only("missing required field \"destination\"");
    assert_string_equal(g->path, "spec.http[0].route[0].destination");
    assert_int_equal(g->loc.line, 1); /* at the object that lacks it */
}

static void test_required_nested_and_null(void **state)
{
    (void)state;
    /* destination present but its required host missing, and host: null */
    decode(&keel_msg_http_route_destination, "destination: {subset: v1}\n");
    const struct keel_diag *g = only("missing required field \"host\"");
    assert_string_equal(g->path, "destination.host");
    reset_diags();
    decode(&keel_msg_destination, "host: null\n");
    only("missing required field \"host\"");
    reset_diags();
    decode(&keel_msg_service_port, "{}");
    assert_int_equal(keel_diags_count(&F.d), 2);
    diag_with("missing required field \"name\"");
    diag_with("missing required field \"number\"");
}

static void test_oneof_conflict(void **state)
{
    (void)state;
    decode(&keel_msg_http_redirect, "port: 8080\nderivePort: FROM_REQUEST_PORT\n");
    const struct keel_diag *g = only("only one of \"port\" and \"derivePort\" may be set");
    assert_int_equal(g->loc.line, 2);
    assert_string_equal(g->path, "derivePort");
    reset_diags();
    decode(&keel_msg_load_balancer, "consistentHash: {httpHeaderName: x}\nsimple: RANDOM\n");
    only("only one of \"consistentHash\" and \"simple\" may be set");
}

static void test_oneof_single_member_and_null(void **state)
{
    (void)state;
    struct keel_http_redirect *r = decode(&keel_msg_http_redirect, "port: 8080\nuri: /x\nredirectCode: 301\n");
    no_diags();
    assert_int_equal(r->port, 8080);
    /* a null member is unset: no conflict */
    decode(&keel_msg_http_redirect, "port: 8080\nderivePort: null\n");
    no_diags();
}

/* ---- durations ------------------------------------------------------------------ */

static void test_duration_parse_go_style(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t ns;
    } ok[] = {
        {"0", 0},
        {"-0", 0},
        {"+5s", 5 * SEC},
        {"1s", SEC},
        {"1.5s", 3 * SEC / 2},
        {".5s", SEC / 2},
        {"1.s", SEC},
        {"300ms", 300 * NS},
        {"0.001s", NS},
        {"-1s", -SEC},
        {"1h2m3.5s", 3723 * SEC + SEC / 2},
        {"2h45m", (2 * 3600 + 45 * 60) * SEC},
        {"1m1m", 120 * SEC},
        {"100ns", 100},
        {"1us", 1000},
        {"1\xc2\xb5s", 1000},
        {"1\xce\xbcs", 1000},
        {"1.000000001s", SEC + 1},
        {"9223372036854775807ns", INT64_MAX},
        {"2562047h", 2562047LL * 3600 * SEC},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        int64_t ns = -42;
        int rc = keel_duration_parse(ok[i].s, &ns);
        if (rc != 0 || ns != ok[i].ns)
            print_error("\"%s\": rc %d ns %lld (want %lld)\n", ok[i].s, rc, (long long)ns, (long long)ok[i].ns);
        assert_int_equal(rc, 0);
        assert_true(ns == ok[i].ns);
    }
}

static void test_duration_parse_errors(void **state)
{
    (void)state;
    static const char *const bad[] = {"", "-", "+", "s", "1", "10", "1d", "1w", "1sec", "1 s", " 1s", "1s ",
                                      "1e3s", "1.5.5s", "1h-1m", "ms", ".s", "1S", "1H", "--1s", "0x10s", "1,5s"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ns = -42;
        int rc = keel_duration_parse(bad[i], &ns);
        if (rc != KEEL_EINVAL)
            print_error("\"%s\": rc %d ns %lld\n", bad[i], rc, (long long)ns);
        assert_int_equal(rc, KEEL_EINVAL);
        assert_true(ns == -42);
    }
    int64_t ns = -42;
    assert_int_equal(keel_duration_parse("9223372036854775808ns", &ns), KEEL_ETOOBIG);
    assert_int_equal(keel_duration_parse("2562048h", &ns), KEEL_ETOOBIG);
    assert_int_equal(keel_duration_parse("99999999999999999999999999h", &ns), KEEL_ETOOBIG);
    assert_true(ns == -42);
}

static void test_duration_format(void **state)
{
    (void)state;
    char buf[32];
    assert_string_equal(keel_duration_format(0, buf, sizeof(buf)), "0s");
    assert_string_equal(keel_duration_format(2 * SEC, buf, sizeof(buf)), "2s");
    assert_string_equal(keel_duration_format(3 * SEC / 2, buf, sizeof(buf)), "1500ms");
    assert_string_equal(keel_duration_format(NS, buf, sizeof(buf)), "1ms");
    assert_string_equal(keel_duration_format(1, buf, sizeof(buf)), "1ns");
    assert_string_equal(keel_duration_format(-SEC, buf, sizeof(buf)), "-1s");
    /* format then parse gives the value back */
    static const int64_t vals[] = {0, 1, 999, NS, 3723 * SEC + SEC / 2, -7 * NS, INT64_MAX};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        int64_t back = 0;
        assert_int_equal(keel_duration_parse(keel_duration_format(vals[i], buf, sizeof(buf)), &back), 0);
        assert_true(back == vals[i]);
    }
}

static void test_duration_fields(void **state)
{
    (void)state;
    struct keel_http_retry *r = decode(&keel_msg_http_retry, "perTryTimeout: 1ms\nbackoff: 0.25s\n");
    no_diags();
    assert_true(r->per_try_timeout == NS);
    assert_true(r->backoff == SEC / 4);
    decode(&keel_msg_http_retry, "perTryTimeout: 10x\n");
    only("invalid duration \"10x\": expected a number with a unit, e.g. 10s, 1.5s, 300ms, 1h2m");
    reset_diags();
    decode(&keel_msg_http_retry, "perTryTimeout: 5\n");
    only("expected a duration string with a unit, got number 5 (write e.g. \"5s\")");
    reset_diags();
    decode(&keel_msg_http_retry, "perTryTimeout: [1s]\n");
    only("expected duration string, got list");
}

static void test_duration_below_1ms(void **state)
{
    (void)state;
    decode(&keel_msg_http_retry, "perTryTimeout: 0.5ms\n");
    only("must be a valid duration greater than 1ms (got \"0.5ms\")");
    reset_diags();
    decode(&keel_msg_http_retry, "perTryTimeout: -1s\n");
    only("must be a valid duration greater than 1ms (got \"-1s\")");
    reset_diags();
    decode(&keel_msg_http_retry, "backoff: 0s\n");
    only("must be a valid duration greater than 1ms (got \"0s\")");
    reset_diags();
    decode(&keel_msg_http_retry, "backoff: 999us\n");
    only("must be a valid duration greater than 1ms (got \"999us\")");
}

/* ---- null and empty ----------------------------------------------------------------- */

static void test_null_means_unset(void **state)
{
    (void)state;
    struct keel_http_retry *r = decode(&keel_msg_http_retry, "attempts: null\nperTryTimeout: ~\nretryOn:\n");
    no_diags();
    assert_int_equal(r->attempts, 0);
    assert_null(r->retry_on);
    assert_false(keel_obj_has(&r->_o, "attempts"));
    struct keel_virtual_service *vs = decode(&keel_msg_virtual_service, "hosts: null\nhttp: ~\n");
    no_diags();
    assert_int_equal(vs->n_hosts, 0);
    assert_null(vs->http);
}

static void test_message_field_without_value_is_unset(void **state)
{
    (void)state;
    /* `retries:` with nothing after it is null, and null means unset, for
     * message fields too (as Kubernetes and protojson read it); `{}` is an
     * empty object */
    struct keel_http_route *h = decode(&keel_msg_http_route, "retries:\nfault: {}\nrewrite: null\n");
    no_diags();
    assert_null(h->retries);
    assert_non_null(h->fault);
    assert_null(h->rewrite);
    assert_false(keel_obj_has(&h->_o, "retries"));
    assert_true(keel_obj_has(&h->_o, "fault"));
    /* so a required message written as `destination:` is missing */
    decode(&keel_msg_http_route_destination, "destination:\n");
    only("missing required field \"destination\"");
    reset_diags();
    /* and an empty object still has its own required fields checked */
    decode(&keel_msg_http_route_destination, "destination: {}\n");
    only("missing required field \"host\"");
}

static void test_list_items_may_not_be_null(void **state)
{
    (void)state;
    struct keel_virtual_service *vs = decode(&keel_msg_virtual_service, "hosts: [a, null, b]\n");
    const struct keel_diag *g = only("list items may not be null");
    assert_string_equal(g->path, "hosts[1]");
    assert_int_equal(vs->n_hosts, 2); /* the good items are kept */
    assert_string_equal(vs->hosts[1], "b");
}

/* ---- maps ------------------------------------------------------------------------------ */

static void test_string_map(void **state)
{
    (void)state;
    struct keel_workload_selector *s =
        decode(&keel_msg_workload_selector, "matchLabels: {app: reviews, version: v1, empty: }\n");
    no_diags();
    assert_int_equal(s->n_match_labels, 3);
    assert_string_equal(s->match_labels[0].key, "app");
    assert_string_equal(s->match_labels[1].value, "v1");
    assert_string_equal(s->match_labels[2].value, ""); /* `key:` in a string map is "" */
}

static void test_map_key_rules_labels(void **state)
{
    (void)state;
    decode_at(&keel_msg_workload_selector, "spec.selector",
              "matchLabels:\n  \"\": a\n  \"app*\": b\n  ok: \"v*\"\n  long: "
              "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n");
    assert_int_equal(keel_diags_count(&F.d), 4);
    const struct keel_diag *g = diag_with("key must not be empty");
    assert_int_equal(g->loc.line, 2);
    assert_string_equal(g->path, "spec.selector.matchLabels[]");
    g = diag_with("wildcard not allowed in label key match");
    assert_string_equal(g->path, "spec.selector.matchLabels[app*]");
    g = diag_with("wildcard not allowed in label value match");
    assert_string_equal(g->path, "spec.selector.matchLabels.ok");
    g = diag_with("(got 69)");
    assert_non_null(strstr(g->msg, "63"));
}

static void test_map_key_rules_port_numbers(void **state)
{
    (void)state;
    struct keel_peer_authentication *pa = decode(&keel_msg_peer_authentication,
                                                 "portLevelMtls:\n  8080: {mode: STRICT}\n  \"0\": {mode: DISABLE}\n"
                                                 "  \"65536\": {}\n  http: {}\n  \"9090\":\n");
    assert_int_equal(keel_diags_count(&F.d), 3);
    diag_with("port must be between 1-65535 (got \"0\")");
    diag_with("port must be between 1-65535 (got \"65536\")");
    const struct keel_diag *g = diag_with("port must be between 1-65535 (got \"http\")");
    assert_int_equal(g->loc.line, 5);
    assert_string_equal(pa->port_level_mtls[0].key, "8080");
    assert_int_equal(pa->port_level_mtls[0].value.mode, KEEL_PEER_MTLS_MODE_STRICT);
    /* `"9090":` with no value is an empty object (a presence match) */
    assert_int_equal(pa->n_port_level_mtls, 5);
    assert_string_equal(pa->port_level_mtls[4].key, "9090");
}

static void test_map_key_rules_port_names_and_values(void **state)
{
    (void)state;
    struct keel_workload_entry *we = decode(&keel_msg_workload_entry,
                                            "address: 1.2.3.4\nports:\n  http: 8080\n  -bad: 80\n  grpc: 70000\n"
                                            "  tcp:\n  \"a b\": 1\n");
    assert_int_equal(keel_diags_count(&F.d), 4);
    diag_with("port name must be valid (got \"-bad\")");
    diag_with("port name must be valid (got \"a b\")");
    diag_with("port must be between 1-65535 (got 70000)");
    diag_with("expected an integer value, got null");
    assert_string_equal(we->ports[0].key, "http");
    assert_int_equal(we->ports[0].value, 8080);
}

static void test_map_given_a_list(void **state)
{
    (void)state;
    decode(&keel_msg_workload_selector, "matchLabels: [app]\n");
    only("expected object (a map of names to values), got list");
}

/* ---- lists and strings ------------------------------------------------------------------ */

static void test_list_rules(void **state)
{
    (void)state;
    decode_at(&keel_msg_service_entry, "spec",
              "hosts: []\nports:\n- {number: 80, name: http}\n- {number: 443, name: https}\n"
              "- {number: 80, name: http2}\n");
    assert_int_equal(keel_diags_count(&F.d), 2);
    diag_with("must have at least 1 item");
    const struct keel_diag *g = diag_with("port number cannot be duplicated (80)");
    assert_string_equal(g->path, "spec.ports[2]");
    assert_int_equal(g->loc.line, 5);
}

static void test_string_rules(void **state)
{
    (void)state;
    decode(&keel_msg_service_entry, "hosts: [\"*\", \"*.example.com\"]\n");
    const struct keel_diag *g = only("hostname cannot be wildcard");
    assert_string_equal(g->path, "hosts[0]");
    reset_diags();
    decode(&keel_msg_policy_target_ref, "kind: 1Service\nname: x\nnamespace: other\ngroup: \"\"\n");
    assert_int_equal(keel_diags_count(&F.d), 2);
    const struct keel_diag *g2 = diag_with("\"1Service\"");
    assert_non_null(strstr(g2->msg, "^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$"));
    diag_with("cross namespace referencing is not currently supported");
    reset_diags();
    decode(&keel_msg_policy_target_ref, "kind: Service\nname: \"\"\n");
    only("\"\"", "at least 1");
}

static void test_url_rule(void **state)
{
    (void)state;
    decode(&keel_msg_jwt_rule, "issuer: a\njwksUri: ftp://keys.example.com/jwks\n");
    diag_with("(got \"ftp://keys.example.com/jwks\")");
    reset_diags();
    decode(&keel_msg_jwt_rule, "issuer: a\njwksUri: https://keys.example.com/jwks\n");
    no_diags();
}

static void test_string_with_nul_byte(void **state)
{
    (void)state;
    decode(&keel_msg_http_retry, "retryOn: \"5xx\\0reset\"\n");
    only("string contains a NUL byte");
}

static void test_base64(void **state)
{
    (void)state;
    assert_true(keel_base64_valid(""));
    assert_true(keel_base64_valid("aGk="));
    assert_true(keel_base64_valid("aGVsbG8="));
    assert_true(keel_base64_valid("aGVsbA=="));
    assert_true(keel_base64_valid("ab+/"));
    assert_false(keel_base64_valid("aGk"));
    assert_false(keel_base64_valid("a=bc"));
    assert_false(keel_base64_valid("===="));
    assert_false(keel_base64_valid("ab=c"));
    assert_false(keel_base64_valid("ab-_")); /* URL alphabet is not standard base64 */
    assert_false(keel_base64_valid("aGk=\n"));
}

/* ---- paths and locations ------------------------------------------------------------------ */

static void test_paths_through_lists(void **state)
{
    (void)state;
    decode_at(&keel_msg_virtual_service, "spec",
              "hosts: [a]\nhttp:\n- route:\n  - destination: {host: a}\n- route:\n  - destination: {host: b}\n"
              "    weight: heavy\n");
    const struct keel_diag *g = only("expected integer, got string \"heavy\"");
    assert_string_equal(g->path, "spec.http[1].route[0].weight");
    assert_int_equal(g->loc.line, 7);
    assert_int_equal(g->loc.col, 13);
    assert_string_equal(g->loc.file, "t.yaml");
}

static void test_decoder_counts_its_own_errors(void **state)
{
    (void)state;
    decode(&keel_msg_http_retry, "attempts: 1\n");
    no_diags();
    decode(&keel_msg_http_retry, "attempts: x\nbackoff: y\n");
    assert_int_equal(keel_diags_count(&F.d), 2);
    /* a second decoder on the same list starts at zero */
    decode(&keel_msg_http_retry, "attempts: 1\n");
    assert_int_equal(F.rc, 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_decode_http_retry),
        T(test_decode_virtual_service_tree),
        T(test_unknown_field_did_you_mean),
        T(test_unknown_field_case_and_separators),
        T(test_unknown_field_lists_valid_fields),
        T(test_unknown_field_belongs_inside),
        T(test_unknown_field_in_big_message),
        T(test_unknown_fields_all_reported),
        T(test_type_error_remove_the_quotes),
        T(test_type_error_without_hint),
        T(test_type_error_quoted_non_number),
        T(test_type_error_quote_it),
        T(test_type_error_collections),
        T(test_object_given_a_list),
        T(test_list_given_an_object),
        T(test_top_level_not_a_map),
        T(test_int32_range),
        T(test_uint32_range),
        T(test_int_range_with_rule_message),
        T(test_integral_floats_and_huge_numbers),
        T(test_enum_values),
        T(test_enum_unknown_with_suggestion),
        T(test_enum_unknown_without_suggestion),
        T(test_enum_long_value_is_clipped),
        T(test_required_fields),
        T(test_required_nested_and_null),
        T(test_oneof_conflict),
        T(test_oneof_single_member_and_null),
        T(test_duration_parse_go_style),
        T(test_duration_parse_errors),
        T(test_duration_format),
        T(test_duration_fields),
        T(test_duration_below_1ms),
        T(test_null_means_unset),
        T(test_message_field_without_value_is_unset),
        T(test_list_items_may_not_be_null),
        T(test_string_map),
        T(test_map_key_rules_labels),
        T(test_map_key_rules_port_numbers),
        T(test_map_key_rules_port_names_and_values),
        T(test_map_given_a_list),
        T(test_list_rules),
        T(test_string_rules),
        T(test_url_rule),
        T(test_string_with_nul_byte),
        T(test_base64),
        T(test_paths_through_lists),
        T(test_decoder_counts_its_own_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
