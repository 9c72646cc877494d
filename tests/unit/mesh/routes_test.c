/*
 * routes_test.c - tests for mesh/routes (request path) and mesh/rules
 * (compiling VirtualService rules): every match type, first match wins,
 * weighted picks, redirects, direct responses, rewrites, retries (default,
 * custom, disabled), faults, mirrors, CORS, header operations, the
 * compile-time filters (port, gateways, sourceLabels), and TCP routes.
 */
#include "mesh/snapshot.h"

#include "base/err.h"
#include "config/load.h"
#include "config/store.h"
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

#include "fixture.h"

/* ---- fixture ------------------------------------------------------------------------------ */

static const struct keel_kv_str client_labels[] = {{"app", "productpage"}, {"version", "v1"}};

static void fx_build(struct fx *f, const char *yaml, const char *table)
{
    struct keel_proxy_identity id = {
        .kind = KEEL_PROXY_SIDECAR, .ns = "default", .labels = client_labels, .n_labels = 2};
    fx_load(f, yaml, &id);
    f->t = keel_snapshot_route_table(f->snap, table);
    assert_non_null(f->t);
}

static struct keel_str S(const char *s) {
    return keel_str_c(s);
}

/* Request head; extra headers as "name", "value" pairs ending with NULL. */
static void
head(struct keel_http_head *h, const char *method, const char *authority, const char *target, ...)
{
    memset(h, 0, sizeof(*h));
    h->method = S(method);
    h->authority = S(authority);
    h->target = S(target);
    const char *q = strchr(target, '?');
    h->path = (struct keel_str){target, q ? (size_t)(q - target) : strlen(target)};
    h->query = q ? S(q + 1) : S("");
    va_list ap;
    va_start(ap, target);
    const char *name;
    while ((name = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        h->headers[h->nheaders++] = (struct keel_http_header){S(name), S(value)};
    }
    va_end(ap);
}

/* Name of the route a request takes, or "NR". */
static const char *route_name(const struct fx *f, const struct keel_http_head *h)
{
    const struct keel_route *r = keel_route_match(f->t, h, f->t->port, NULL);
    return r ? r->name : "NR";
}

/* clang-format off */
#define SVC(name, port)                                                                                          \
    "---\napiVersion: v1\nkind: Service\nmetadata: {name: " name ", namespace: default}\n"                     \
    "spec:\n  ports: [{port: " port ", name: http}]\n"
#define VS(name, body)                                                                                           \
    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: " name                      \
    ", namespace: default}\nspec:\n  hosts: [" name "]\n" body
/* clang-format on */

/* ---- match semantics ----------------------------------------------------------------------- */

static const char *match_yaml = SVC("api", "80") VS(
    "api",
    "  http:\n"
    "  - name: exact\n    match: [{uri: {exact: /exact}}]\n    route: [{destination: {host: api}}]\n"
    "  - name: nocase\n    match: [{uri: {prefix: /Case/}, ignoreUriCase: true}]\n"
    "    route: [{destination: {host: api}}]\n"
    "  - name: regex\n    match: [{uri: {regex: \"/items/[0-9]+\"}}]\n    route: [{destination: {host: api}}]\n"
    "  - name: method\n    match: [{method: {exact: DELETE}}]\n    route: [{destination: {host: api}}]\n"
    "  - name: authority\n    match: [{authority: {prefix: \"api:\"}, uri: {prefix: /auth}}]\n"
    "    route: [{destination: {host: api}}]\n"
    "  - name: scheme\n    match: [{scheme: {exact: https}, uri: {prefix: /sch}}]\n"
    "    route: [{destination: {host: api}}]\n"
    "  - name: hdr-exact\n    match: [{headers: {x-user: {exact: jason}}}]\n    route: [{destination: {host: api}}]\n"
    "  - name: hdr-prefix\n    match: [{headers: {x-user: {prefix: adm}}}]\n    route: [{destination: {host: api}}]\n"
    "  - name: hdr-regex\n    match: [{headers: {x-id: {regex: \"[a-f0-9]{4}\"}}}]\n"
    "    route: [{destination: {host: api}}]\n"
    "  - name: hdr-present\n    match: [{headers: {x-debug: {}}}]\n    route: [{destination: {host: api}}]\n"
    "  - name: without\n    match: [{uri: {prefix: /wo}, withoutHeaders: {x-block: {exact: \"yes\"}}}]\n"
    "    route: [{destination: {host: api}}]\n"
    "  - name: query\n    match: [{queryParams: {v: {exact: \"2\"}, tag: {prefix: be}, id: {regex: \"[0-9]+\"}, "
    "flag: {}}}]\n    route: [{destination: {host: api}}]\n"
    "  - name: and-or\n    match:\n    - {uri: {prefix: /both}, headers: {x-a: {exact: \"1\"}}}\n"
    "    - {uri: {prefix: /either}}\n    route: [{destination: {host: api}}]\n"
    "  - name: first\n    match: [{uri: {prefix: /order}}]\n    route: [{destination: {host: api}}]\n"
    "  - name: second\n    match: [{uri: {prefix: /order/deeper}}]\n    route: [{destination: {host: api}}]\n"
    "  - name: other-port\n    match: [{port: 8080, uri: {prefix: /port}}]\n    route: [{destination: {host: api}}]\n"
    "  - name: this-port\n    match: [{port: 80, uri: {prefix: /port}}]\n    route: [{destination: {host: api}}]\n"
    "  - name: gw-only\n    match: [{gateways: [istio-system/gw], uri: {prefix: /gw}}]\n"
    "    route: [{destination: {host: api}}]\n"
    "  - name: mesh\n    match: [{gateways: [mesh], uri: {prefix: /gw}}]\n    route: [{destination: {host: api}}]\n"
    "  - name: src-other\n    match: [{sourceLabels: {app: reviews}, uri: {prefix: /src}}]\n"
    "    route: [{destination: {host: api}}]\n"
    "  - name: src-me\n    match: [{sourceLabels: {app: productpage}, sourceNamespace: default, uri: {prefix: /src}}]\n"
    "    route: [{destination: {host: api}}]\n");

static void test_uri_matches(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, match_yaml, "80");
    struct keel_http_head h;
    head(&h, "GET", "api", "/exact", NULL);
    assert_string_equal(route_name(&f, &h), "exact");
    head(&h, "GET", "api", "/exact?x=1", NULL); /* exact ignores the query */
    assert_string_equal(route_name(&f, &h), "exact");
    head(&h, "GET", "api", "/exact/more", NULL);
    assert_string_equal(route_name(&f, &h), "NR");
    head(&h, "GET", "api", "/cAsE/x", NULL);
    assert_string_equal(route_name(&f, &h), "nocase");
    head(&h, "GET", "api", "/items/42", NULL);
    assert_string_equal(route_name(&f, &h), "regex");
    head(&h, "GET", "api", "/items/42x", NULL); /* regexes match the whole path */
    assert_string_equal(route_name(&f, &h), "NR");
    head(&h, "GET", "api", "/x/items/42", NULL);
    assert_string_equal(route_name(&f, &h), "NR");
    fx_free(&f);
}

static void test_method_authority_scheme(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, match_yaml, "80");
    struct keel_http_head h;
    head(&h, "DELETE", "api", "/anything", NULL);
    assert_string_equal(route_name(&f, &h), "method");
    head(&h, "delete", "api", "/anything", NULL); /* case-sensitive */
    assert_string_equal(route_name(&f, &h), "NR");
    head(&h, "GET", "api:80", "/auth", NULL);
    assert_string_equal(route_name(&f, &h), "authority");
    head(&h, "GET", "api", "/auth", NULL);
    assert_string_equal(route_name(&f, &h), "NR");
    head(&h, "GET", "api", "/sch", NULL); /* HTTP/1 without :scheme reads as http */
    assert_string_equal(route_name(&f, &h), "NR");
    h.scheme = S("https");
    assert_string_equal(route_name(&f, &h), "scheme");
    fx_free(&f);
}

static void test_header_matches(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, match_yaml, "80");
    struct keel_http_head h;
    head(&h, "GET", "api", "/h", "X-User", "jason", NULL);
    assert_string_equal(route_name(&f, &h), "hdr-exact");
    head(&h, "GET", "api", "/h", "x-user", "admin", NULL);
    assert_string_equal(route_name(&f, &h), "hdr-prefix");
    head(&h, "GET", "api", "/h", "x-id", "beef", NULL);
    assert_string_equal(route_name(&f, &h), "hdr-regex");
    head(&h, "GET", "api", "/h", "x-id", "beefy", NULL);
    assert_string_equal(route_name(&f, &h), "NR");
    head(&h, "GET", "api", "/h", "x-debug", "", NULL);
    assert_string_equal(route_name(&f, &h), "hdr-present");
    /* repeated headers are joined with "," before matching */
    head(&h, "GET", "api", "/h", "x-user", "jason", "x-user", "bob", NULL);
    assert_string_equal(route_name(&f, &h), "NR");
    head(&h, "GET", "api", "/wo", NULL);
    assert_string_equal(route_name(&f, &h), "without");
    head(&h, "GET", "api", "/wo", "x-block", "no", NULL);
    assert_string_equal(route_name(&f, &h), "without");
    head(&h, "GET", "api", "/wo", "x-block", "yes", NULL);
    assert_string_equal(route_name(&f, &h), "NR");
    fx_free(&f);
}

static void test_query_and_blocks(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, match_yaml, "80");
    struct keel_http_head h;
    head(&h, "GET", "api", "/q?v=2&tag=beta&id=77&flag", NULL);
    assert_string_equal(route_name(&f, &h), "query");
    head(&h, "GET", "api", "/q?flag=&id=7&tag=ben&v=2&v=3", NULL); /* order free; first value counts */
    assert_string_equal(route_name(&f, &h), "query");
    head(&h, "GET", "api", "/q?v=2&tag=beta&id=77", NULL); /* flag missing */
    assert_string_equal(route_name(&f, &h), "NR");
    head(&h, "GET", "api", "/q?v=3&tag=beta&id=77&flag", NULL);
    assert_string_equal(route_name(&f, &h), "NR");
    /* AND inside a block, OR across blocks */
    head(&h, "GET", "api", "/both", "x-a", "1", NULL);
    assert_string_equal(route_name(&f, &h), "and-or");
    head(&h, "GET", "api", "/both", NULL);
    assert_string_equal(route_name(&f, &h), "NR");
    head(&h, "GET", "api", "/either", NULL);
    assert_string_equal(route_name(&f, &h), "and-or");
    /* first match wins */
    head(&h, "GET", "api", "/order/deeper", NULL);
    assert_string_equal(route_name(&f, &h), "first");
    fx_free(&f);
}

static void test_compile_time_filters(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, match_yaml, "80");
    struct keel_http_head h;
    head(&h, "GET", "api", "/port", NULL);
    assert_string_equal(route_name(&f, &h), "this-port");
    head(&h, "GET", "api", "/gw", NULL);
    assert_string_equal(route_name(&f, &h), "mesh");
    head(&h, "GET", "api", "/src", NULL);
    assert_string_equal(route_name(&f, &h), "src-me");
    /* the source is checked on the request path too */
    struct keel_kv_str other[] = {{"app", "productpage"}};
    struct keel_route_source src = {"elsewhere", other, 1};
    assert_null(keel_route_match(f.t, &h, 80, &src));
    src.ns = "default";
    const struct keel_route *r = keel_route_match(f.t, &h, 80, &src);
    assert_non_null(r);
    assert_string_equal(r->name, "src-me");
    /* a route table answers for its port: match `port` is checked when given */
    assert_true(keel_route_cond_matches(&r->cond, &h, 0, NULL));
    fx_free(&f);
}

/* ---- actions ------------------------------------------------------------------------------- */

static const char *action_yaml = SVC("web", "80") SVC("canary", "80") SVC(
    "shadow",
    "80") "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web, namespace: default}\n"
          "spec:\n  host: web\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]\n" VS(
              "web",
              "  http:\n"
              "  - name: split\n    match: [{uri: {prefix: /split}}]\n"
              "    route:\n    - {destination: {host: web, subset: v1}, weight: 70, headers: {request: {set: {x-v: "
              "\"1\"}}}}\n"
              "    - {destination: {host: web, subset: v2}, weight: 30}\n"
              "    - {destination: {host: canary}, weight: 0}\n"
              "  - name: moved\n    match: [{uri: {exact: /old}}]\n"
              "    redirect: {uri: /new, authority: new.example.com, scheme: https, derivePort: FROM_REQUEST_PORT}\n"
              "  - name: moved302\n    match: [{uri: {exact: /old302}}]\n    redirect: {uri: /x, redirectCode: 302, "
              "port: 8443}\n"
              "  - name: teapot\n    match: [{uri: {exact: /tea}}]\n"
              "    directResponse: {status: 418, body: {string: \"short and stout\"}}\n"
              "  - name: bytes\n    match: [{uri: {exact: /bytes}}]\n"
              "    directResponse: {status: 200, body: {bytes: aGVsbG8=}}\n"
              "  - name: rewrite\n    match: [{uri: {prefix: /v1/}}]\n    rewrite: {uri: /api/, authority: "
              "backend.internal}\n"
              "    route: [{destination: {host: web}}]\n"
              "  - name: regex-rewrite\n    match: [{uri: {prefix: /users/}}]\n"
              "    rewrite: {uriRegexRewrite: {match: \"^/users/([0-9]+)/(.*)$\", rewrite: \"/u/\\\\2/\\\\1\"}}\n"
              "    route: [{destination: {host: web}}]\n"
              "  - name: retries\n    match: [{uri: {prefix: /retry}}]\n"
              "    retries: {attempts: 3, retryOn: \"5xx,gateway-error,503,429\", perTryTimeout: 2s, "
              "retryIgnorePreviousHosts: false}\n    timeout: 10s\n    route: [{destination: {host: web}}]\n"
              "  - name: no-retries\n    match: [{uri: {prefix: /noretry}}]\n    retries: {attempts: 0}\n"
              "    route: [{destination: {host: web}}]\n"
              "  - name: faulty\n    match: [{uri: {prefix: /fault}}]\n"
              "    fault: {delay: {fixedDelay: 5s, percentage: {value: 10}}, abort: {httpStatus: 503, percentage: "
              "{value: 0.5}}}\n"
              "    mirror: {host: shadow}\n    mirrorPercentage: {value: 25}\n"
              "    corsPolicy: {allowOrigins: [{exact: \"https://a.com\"}, {regex: \"https://.*\\\\.b\\\\.com\"}], "
              "allowMethods: [GET, POST], maxAge: 24h, allowCredentials: true}\n"
              "    headers: {request: {set: {x-b: \"2\", x-a: \"1\"}, add: {x-c: \"3\"}, remove: [x-d]}, "
              "response: {remove: [server]}}\n"
              "    route: [{destination: {host: web}}]\n"
              "  - name: grpc-abort\n    match: [{uri: {prefix: /grpc}}]\n"
              "    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 100}}}\n    route: [{destination: "
              "{host: web}}]\n"
              "  - name: nc\n    match: [{uri: {prefix: /nc}}]\n    route: [{destination: {host: web, subset: v9}}]\n"
              "  - name: catch-all\n    route: [{destination: {host: web, subset: v1}}]\n");

static const struct keel_route *route_for(const struct fx *f, const char *target)
{
    struct keel_http_head h;
    head(&h, "GET", "web", target, NULL);
    const struct keel_route *r = keel_route_match(f->t, &h, 80, NULL);
    assert_non_null(r);
    return r;
}

static void test_weighted_picks(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, action_yaml, "80");
    const struct keel_route *r = route_for(&f, "/split");
    assert_int_equal(r->action->n_dests, 2); /* the weight-0 destination is dropped */
    assert_int_equal(r->action->total_weight, 100);
    assert_string_equal(r->action->dests[0].headers.request.set[0].name, "x-v");
    size_t v1 = 0, v2 = 0;
    uint32_t x = 12345;
    for (int i = 0; i < 10000; i++) {
        x = x * 1664525u + 1013904223u; /* deterministic LCG */
        const struct keel_route_dest *d = keel_route_pick(r, x);
        if (strcmp(d->cluster_name, "outbound|80|v1|web.default.svc.cluster.local") == 0)
            v1++;
        else if (strcmp(d->cluster_name, "outbound|80|v2|web.default.svc.cluster.local") == 0)
            v2++;
    }
    assert_int_equal(v1 + v2, 10000);
    assert_in_range(v1, 6800, 7200);
    assert_in_range(v2, 2800, 3200);
    /* the extremes of the random range land on the first and last destination */
    assert_ptr_equal(keel_route_pick(r, 0), &r->action->dests[0]);
    assert_ptr_equal(keel_route_pick(r, UINT32_MAX), &r->action->dests[1]);
    fx_free(&f);
}

static void test_redirect_direct_rewrite(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, action_yaml, "80");
    const struct keel_route *r = route_for(&f, "/old");
    assert_int_equal(r->action->kind, KEEL_ROUTE_REDIRECT);
    assert_int_equal(r->action->redirect.code, 301);
    assert_string_equal(r->action->redirect.path, "/new");
    assert_string_equal(r->action->redirect.authority, "new.example.com");
    assert_string_equal(r->action->redirect.scheme, "https");
    assert_int_equal(r->action->redirect.port, 80); /* FROM_REQUEST_PORT: the listener port */
    assert_null(keel_route_pick(r, 0));
    r = route_for(&f, "/old302");
    assert_int_equal(r->action->redirect.code, 302);
    assert_int_equal(r->action->redirect.port, 8443);
    assert_null(r->action->redirect.scheme);

    r = route_for(&f, "/tea");
    assert_int_equal(r->action->kind, KEEL_ROUTE_DIRECT_RESPONSE);
    assert_int_equal(r->action->status, 418);
    assert_int_equal(r->action->body_len, 15);
    assert_memory_equal(r->action->body, "short and stout", 15);
    r = route_for(&f, "/bytes");
    assert_int_equal(r->action->body_len, 5);
    assert_memory_equal(r->action->body, "hello", 5);

    char out[256];
    r = route_for(&f, "/v1/items?x=1");
    assert_int_equal(r->action->rewrite, KEEL_REWRITE_PREFIX);
    assert_string_equal(r->action->host_rewrite, "backend.internal");
    assert_int_equal(keel_route_rewrite_path(r, S("/v1/items"), out, sizeof(out)), 10);
    assert_string_equal(out, "/api/items");
    assert_int_equal(keel_route_rewrite_path(r, S("/v1/items"), out, 5), KEEL_ETOOBIG);
    r = route_for(&f, "/users/42/profile");
    assert_int_equal(r->action->rewrite, KEEL_REWRITE_REGEX);
    assert_true(keel_route_rewrite_path(r, S("/users/42/profile"), out, sizeof(out)) > 0);
    assert_string_equal(out, "/u/profile/42");
    r = route_for(&f, "/tea"); /* no rewrite: the path is copied */
    assert_int_equal(keel_route_rewrite_path(r, S("/tea"), out, sizeof(out)), 4);
    assert_string_equal(out, "/tea");
    fx_free(&f);
}

static void test_retries(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, action_yaml, "80");
    /* default: 2 retries on connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes, no codes */
    const struct keel_route *r = route_for(&f, "/split");
    const struct keel_retry_policy *p = &r->action->retry;
    assert_true(p->enabled);
    assert_int_equal(p->num_retries, 2);
    assert_int_equal(p->retry_on, KEEL_RETRY_CONNECT_FAILURE | KEEL_RETRY_REFUSED_STREAM | KEEL_RETRY_UNAVAILABLE |
                                      KEEL_RETRY_CANCELLED | KEEL_RETRY_RETRIABLE_STATUS_CODES);
    assert_int_equal(p->n_status_codes, 0);
    assert_int_equal(p->per_try_timeout, 0);
    assert_true(p->previous_hosts);
    assert_int_equal(p->host_selection_max_attempts, 5);
    assert_int_equal(r->action->timeout, 0);

    r = route_for(&f, "/retry");
    p = &r->action->retry;
    assert_int_equal(p->num_retries, 3);
    assert_int_equal(p->retry_on, KEEL_RETRY_5XX | KEEL_RETRY_GATEWAY_ERROR | KEEL_RETRY_RETRIABLE_STATUS_CODES);
    assert_int_equal(p->n_status_codes, 2);
    assert_int_equal(p->status_codes[0], 503);
    assert_int_equal(p->status_codes[1], 429);
    assert_int_equal(p->per_try_timeout, 2000000000LL);
    assert_false(p->previous_hosts);
    assert_int_equal(r->action->timeout, 10000000000LL);

    r = route_for(&f, "/noretry");
    assert_false(r->action->retry.enabled);
    fx_free(&f);
}

/* MeshConfig defaultHttpRetryPolicy replaces Istio's built-in default, both on VirtualService rules without
 * `retries` and on the default route of a host no VirtualService names. */
static void test_mesh_default_retry_policy(void **state)
{
    (void)state;
    struct fx f;
    /* clang-format off */
    fx_build(&f,
             SVC("web", "80") SVC("plain", "80") VS("web", "  http:\n  - route: [{destination: {host: web}}]\n")
                 "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n"
                 "data:\n  mesh: |\n    defaultHttpRetryPolicy: {attempts: 4, retryOn: \"5xx,429\"}\n",
             "80");
    /* clang-format on */
    struct keel_http_head h;
    const char *hosts[] = {"web", "plain"};
    for (size_t i = 0; i < 2; i++) {
        head(&h, "GET", hosts[i], "/", NULL);
        const struct keel_route *r = keel_route_match(f.t, &h, 80, NULL);
        assert_non_null(r);
        const struct keel_retry_policy *p = &r->action->retry;
        assert_true(p->enabled);
        assert_int_equal(p->num_retries, 4);
        assert_int_equal(p->retry_on, KEEL_RETRY_5XX | KEEL_RETRY_RETRIABLE_STATUS_CODES);
        assert_int_equal(p->n_status_codes, 1);
        assert_int_equal(p->status_codes[0], 429);
    }
    fx_free(&f);
}

static void test_fault_mirror_cors_headers(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, action_yaml, "80");
    const struct keel_route *r = route_for(&f, "/fault");
    const struct keel_route_action *a = r->action;
    assert_non_null(a->fault);
    assert_true(a->fault->delay);
    assert_int_equal(a->fault->delay_ns, 5000000000LL);
    assert_int_equal(a->fault->delay_per_million, 100000);
    assert_true(a->fault->abort);
    assert_int_equal(a->fault->abort_http_status, 503);
    assert_int_equal(a->fault->abort_per_million, 5000);
    assert_int_equal(a->n_mirrors, 1);
    assert_string_equal(a->mirrors[0].cluster_name, "outbound|80||shadow.default.svc.cluster.local");
    assert_non_null(a->mirrors[0].cluster);
    assert_int_equal(a->mirrors[0].per_million, 250000);
    assert_non_null(a->cors);
    assert_int_equal(a->cors->n_origins, 2);
    assert_int_equal(a->cors->origins[1].kind, KEEL_SM_REGEX);
    assert_string_equal(a->cors->allow_methods, "GET,POST");
    assert_string_equal(a->cors->max_age, "86400");
    assert_true(a->cors->allow_credentials);
    assert_int_equal(a->headers.request.n_set, 2);
    assert_string_equal(a->headers.request.set[0].name, "x-a"); /* sorted, as Istio does */
    assert_int_equal(a->headers.request.n_add, 1);
    assert_string_equal(a->headers.request.remove[0], "x-d");
    assert_string_equal(a->headers.response.remove[0], "server");

    r = route_for(&f, "/grpc");
    assert_true(r->action->fault->abort);
    assert_int_equal(r->action->fault->abort_grpc_status, 14);
    assert_int_equal(r->action->fault->abort_per_million, 1000000);
    fx_free(&f);
}

static void test_undefined_subset_is_nc(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, action_yaml, "80");
    const struct keel_route *r = route_for(&f, "/nc");
    const struct keel_route_dest *d = keel_route_pick(r, 7);
    assert_string_equal(d->cluster_name, "outbound|80|v9|web.default.svc.cluster.local");
    assert_null(d->cluster); /* 503 NC at run time */
    assert_true(has_diag(&f, "referenced host+subset in destinationrule not found: "
                             "\"web.default.svc.cluster.local+v9\""));
    /* the rest of the VirtualService is unaffected; the catch-all comes last */
    r = route_for(&f, "/anything-else");
    assert_string_equal(r->name, "catch-all");
    assert_true(r->catch_all);
    assert_non_null(keel_route_pick(r, 0)->cluster);
    fx_free(&f);
}

/* ---- TCP ----------------------------------------------------------------------------------- */

static void test_tcp_routes(void **state)
{
    (void)state;
    const char *yaml =
        "apiVersion: v1\nkind: Service\nmetadata: {name: db, namespace: default}\n"
        "spec:\n  clusterIP: 10.0.0.7\n  ports: [{port: 5432, name: tcp-pg}]\n"
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: cache, namespace: default}\n"
        "spec:\n  clusterIP: 10.0.0.8\n  ports: [{port: 5432, name: tcp-pg}]\n"
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: db, namespace: default}\n"
        "spec:\n  hosts: [db]\n  tcp:\n"
        "  - match: [{port: 5432, destinationSubnets: [10.0.0.0/24]}]\n"
        "    route: [{destination: {host: cache, port: {number: 5432}}, weight: 80}, "
        "{destination: {host: db, port: {number: 5432}}, weight: 20}]\n"
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\n"
        "spec:\n  ports: [{port: 80, name: http}]\n";
    struct fx f;
    fx_build(&f, yaml, "80");
    const struct keel_tcp_table *t = keel_snapshot_tcp_table(f.snap, 5432);
    assert_non_null(t);
    const struct keel_l4_route *r = keel_tcp_route_match(t, "10.0.0.7", NULL, NULL);
    assert_non_null(r);
    assert_int_equal(r->n_dests, 2);
    assert_string_equal(keel_tcp_route_pick(r, 0)->cluster_name, "outbound|5432||cache.default.svc.cluster.local");
    assert_string_equal(keel_tcp_route_pick(r, UINT32_MAX)->cluster_name,
                        "outbound|5432||db.default.svc.cluster.local");
    r = keel_tcp_route_match(t, "10.0.0.8", NULL, NULL); /* cache: no VirtualService, its own cluster */
    assert_non_null(r);
    assert_string_equal(keel_tcp_route_pick(r, 99)->cluster_name, "outbound|5432||cache.default.svc.cluster.local");
    assert_null(keel_tcp_route_match(t, "192.168.1.1", NULL, NULL));
    assert_null(keel_snapshot_tcp_table(f.snap, 80));
    fx_free(&f);
}

/* Delegate VirtualServices: the delegate's rules replace the root rule, each match merged with the root's; a
 * match that contradicts the root's is dropped; a missing delegate is reported. */
static void test_delegate(void **state)
{
    (void)state;
    const char *yaml =
        SVC("reviews", "80") SVC("other", "80") VS(
            "reviews",
            "  http:\n"
            "  - name: root\n    match: [{uri: {prefix: /reviews}, headers: {x-team: {exact: a}}}]\n"
            "    delegate: {name: reviews-rules}\n"
            "  - name: missing\n    match: [{uri: {prefix: /gone}}]\n    delegate: {name: nope}\n"
            "  - name: fallback\n    route: [{destination: {host: other}}]\n")
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        "metadata: {name: reviews-rules, namespace: default}\nspec:\n  http:\n"
        "  - name: v2\n    match: [{uri: {prefix: /reviews/v2}, name: two}, {uri: {prefix: /elsewhere}}]\n"
        "    route: [{destination: {host: reviews}}]\n    timeout: 3s\n"
        "  - name: rest\n    route: [{destination: {host: reviews}}]\n";
    struct fx f;
    fx_build(&f, yaml, "80");
    struct keel_http_head h;
    head(&h, "GET", "reviews", "/reviews/v2/x", "x-team", "a", NULL);
    const struct keel_route *r = keel_route_match(f.t, &h, 80, NULL);
    assert_non_null(r);
    assert_string_equal(r->name, "v2.two"); /* the delegate's rule, with the delegate's own settings */
    assert_int_equal(r->action->timeout, 3000000000LL);
    head(&h, "GET", "reviews", "/reviews/v2/x", NULL); /* the root's header condition still applies */
    assert_string_equal(route_name(&f, &h), "fallback");
    head(&h, "GET", "reviews", "/reviews/x", "x-team", "a", NULL);
    assert_string_equal(route_name(&f, &h), "rest"); /* no match of its own: the root's */
    head(&h, "GET", "reviews", "/elsewhere", "x-team", "a", NULL); /* widens the root's prefix: dropped */
    assert_string_equal(route_name(&f, &h), "fallback");
    head(&h, "GET", "reviews", "/gone", NULL);
    assert_string_equal(route_name(&f, &h), "fallback");
    assert_true(has_diag(&f, "delegate VirtualService default/nope not found"));
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uri_matches),
        cmocka_unit_test(test_method_authority_scheme),
        cmocka_unit_test(test_header_matches),
        cmocka_unit_test(test_query_and_blocks),
        cmocka_unit_test(test_compile_time_filters),
        cmocka_unit_test(test_weighted_picks),
        cmocka_unit_test(test_redirect_direct_rewrite),
        cmocka_unit_test(test_retries),
        cmocka_unit_test(test_mesh_default_retry_policy),
        cmocka_unit_test(test_fault_mirror_cors_headers),
        cmocka_unit_test(test_undefined_subset_is_nc),
        cmocka_unit_test(test_tcp_routes),
        cmocka_unit_test(test_delegate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
