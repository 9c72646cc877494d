/*
 * snapshot_test.c - tests for mesh/snapshot (and the table assembly of
 * mesh/vhosts), each built from YAML through the loader and the store:
 * gateway selection by labels, VirtualService binding to gateways (ns/name,
 * bare names, server `ns/host`, exportTo), gateway concatenation vs the
 * sidecar's oldest-wins, default routes, short-name domains, 404 on hosts
 * with a VirtualService, reference counting and versions, the JSON dump, and
 * 1,000 services with 1,000 VirtualServices.
 */
#include "mesh/snapshot.h"

#include "base/buf.h"
#include "config/load.h"
#include "config/store.h"
#include "http/message.h"

#include <jansson.h>
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

static void fx_build(struct fx *f, const char *yaml, enum keel_proxy_kind kind, const char *ns,
                     const struct keel_kv_str *labels, size_t n_labels)
{
    struct keel_proxy_identity id = {
        .kind = kind, .ns = ns, .labels = labels, .n_labels = n_labels, .workload = "test-pod"};
    fx_load(f, yaml, &id);
}

static struct keel_str S(const char *s) {
    return keel_str_c(s);
}

/* A request head: target split into path and query. */
static void
head(struct keel_http_head *h, const char *method, const char *authority, const char *target)
{
    memset(h, 0, sizeof(*h));
    h->method = S(method);
    h->authority = S(authority);
    h->target = S(target);
    const char *q = strchr(target, '?');
    h->path = (struct keel_str){target, q ? (size_t)(q - target) : strlen(target)};
    h->query = q ? S(q + 1) : S("");
}

/* The cluster of the route a request takes ("NR" = no route, "-" = no destination). */
static const char *route_cluster(const struct keel_route_table *t, const char *authority, const char *target)
{
    struct keel_http_head h;
    head(&h, "GET", authority, target);
    const struct keel_route *r = keel_route_match(t, &h, t ? t->port : 0, NULL);
    if (!r)
        return "NR";
    const struct keel_route_dest *d = keel_route_pick(r, 0);
    return d ? d->cluster_name : "-";
}

static const struct keel_kv_str ingress_labels[] = {{"istio", "ingressgateway"}, {"app", "istio-ingressgateway"}};
static const struct keel_kv_str app_labels[] = {{"app", "productpage"}, {"version", "v1"}};

/* clang-format off */
#define SVC(name, ns, port)                                                                                     \
    "---\napiVersion: v1\nkind: Service\nmetadata: {name: " name ", namespace: " ns "}\n"                      \
    "spec:\n  ports: [{port: " port ", name: http}]\n  selector: {app: " name "}\n"
/* clang-format on */

/* ---- gateways ------------------------------------------------------------------------------ */

static void test_gateway_selection(void **state)
{
    (void)state;
    struct fx f;
    fx_build(
        &f,
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: ingress, namespace: istio-system}\n"
        "spec:\n  selector: {istio: ingressgateway}\n  servers:\n"
        "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n"
        "  - port: {number: 443, name: https, protocol: HTTPS}\n    hosts: [\"*.example.com\"]\n"
        "    tls: {mode: SIMPLE, credentialName: example-cert}\n"
        "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: egress, namespace: istio-system}\n"
        "spec:\n  selector: {istio: egressgateway}\n  servers:\n"
        "  - port: {number: 9090, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n"
        "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: everyone, namespace: other}\n"
        "spec:\n  servers:\n  - port: {number: 8080, name: http-alt, protocol: HTTP}\n    hosts: [\"*\"]\n"
        "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: shared, namespace: other}\n"
        "spec:\n  selector: {app: istio-ingressgateway}\n  servers:\n"
        "  - port: {number: 80, name: http2, protocol: HTTP}\n    hosts: [\"foo.com\"]\n"
        "    tls: {httpsRedirect: true}\n",
        KEEL_PROXY_ROUTER, "istio-system", ingress_labels, 2);
    size_t n;
    const struct keel_listener *l = keel_snapshot_listeners(f.snap, &n);
    assert_int_equal(n, 3); /* 80 (two gateways merged), 443, 8080; not 9090 */
    assert_null(keel_snapshot_listener(f.snap, 9090));
    const struct keel_listener *l80 = keel_snapshot_listener(f.snap, 80);
    assert_non_null(l80);
    assert_string_equal(l80->name, "0.0.0.0_80");
    assert_int_equal(l80->n_chains, 2);
    assert_string_equal(l80->chains[0].gateway, "istio-system/ingress");
    assert_string_equal(l80->chains[1].gateway, "other/shared");
    assert_ptr_equal(l80->chains[0].routes, l80->chains[1].routes); /* one table per HTTP port */
    assert_string_equal(l80->chains[0].routes->name, "http.80");
    assert_true(l80->chains[1].https_redirect);
    const struct keel_listener *l443 = keel_snapshot_listener(f.snap, 443);
    assert_non_null(l443);
    assert_true(l443->chains[0].has_tls);
    assert_string_equal(l443->chains[0].tls.credential_name, "example-cert");
    assert_string_equal(l443->chains[0].routes->name, "https.443.https.ingress.istio-system");
    assert_non_null(keel_snapshot_listener(f.snap, 8080));
    (void)l;
    /* httpsRedirect: foo.com redirects to https even without a VirtualService */
    struct keel_http_head h;
    head(&h, "GET", "foo.com", "/x");
    const struct keel_route *r = keel_route_match(l80->chains[0].routes, &h, 80, NULL);
    assert_non_null(r);
    assert_int_equal(r->action->kind, KEEL_ROUTE_REDIRECT);
    assert_string_equal(r->action->redirect.scheme, "https");
    assert_int_equal(r->action->redirect.code, 301);
    /* no VirtualService at all: the blackhole virtual host answers 404 */
    assert_string_equal(route_cluster(keel_snapshot_route_table(f.snap, "http.8080"), "any.host", "/"), "NR");
    fx_free(&f);
}

static const char *gw_yaml =
    "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: istio-system}\n"
    "spec:\n  selector: {istio: ingressgateway}\n  servers:\n"
    "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"apps/*.example.com\", \"./own.example.com\", "
    "\"*/open.example.com\"]\n" SVC("web", "apps", "80") SVC("web", "other", "80") SVC("web", "istio-system", "80");

static void test_vs_binding(void **state)
{
    (void)state;
    char yaml[8192];
    snprintf(yaml, sizeof(yaml),
             "%s"
             /* bound by ns/name; host admitted by apps/ */
             "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: apps}\n"
             "spec:\n  hosts: [a.example.com]\n  gateways: [istio-system/gw]\n"
             "  http: [{route: [{destination: {host: web.apps.svc.cluster.local}}]}]\n"
             /* bare name resolves in the VS namespace: apps/gw does not exist */
             "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: b, namespace: apps}\n"
             "spec:\n  hosts: [b.example.com]\n  gateways: [gw]\n"
             "  http: [{route: [{destination: {host: web}}]}]\n"
             /* not exported to the gateway's namespace */
             "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: c, namespace: apps}\n"
             "spec:\n  hosts: [c.example.com]\n  gateways: [istio-system/gw]\n  exportTo: [\".\"]\n"
             "  http: [{route: [{destination: {host: web}}]}]\n"
             /* namespace not admitted by the apps/ server host */
             "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: d, namespace: other}\n"
             "spec:\n  hosts: [d.example.com, open.example.com]\n  gateways: [istio-system/gw]\n"
             "  http: [{route: [{destination: {host: web}}]}]\n"
             /* bare name in the gateway's own namespace; ./ host */
             "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: e, namespace: "
             "istio-system}\n"
             "spec:\n  hosts: [own.example.com]\n  gateways: [gw]\n"
             "  http: [{route: [{destination: {host: web}}]}]\n"
             /* bound to mesh only */
             "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: m, namespace: apps}\n"
             "spec:\n  hosts: [m.example.com]\n  http: [{route: [{destination: {host: web}}]}]\n",
             gw_yaml);
    struct fx f;
    fx_build(&f, yaml, KEEL_PROXY_ROUTER, "istio-system", ingress_labels, 2);
    const struct keel_route_table *t = keel_snapshot_route_table(f.snap, "http.80");
    assert_non_null(t);
    assert_string_equal(route_cluster(t, "a.example.com", "/"), "outbound|80||web.apps.svc.cluster.local");
    assert_string_equal(route_cluster(t, "a.example.com:80", "/"), "outbound|80||web.apps.svc.cluster.local");
    assert_string_equal(route_cluster(t, "b.example.com", "/"), "NR");
    assert_string_equal(route_cluster(t, "c.example.com", "/"), "NR");
    assert_string_equal(route_cluster(t, "d.example.com", "/"), "NR");
    assert_string_equal(route_cluster(t, "open.example.com", "/"), "outbound|80||web.other.svc.cluster.local");
    assert_string_equal(route_cluster(t, "own.example.com", "/"), "outbound|80||web.istio-system.svc.cluster.local");
    assert_string_equal(route_cluster(t, "m.example.com", "/"), "NR");
    /* the virtual host domain is the intersection: a.example.com, not *.example.com */
    const struct keel_vhost *vh = keel_route_vhost(t, S("a.example.com"));
    assert_non_null(vh);
    assert_int_equal(vh->n_domains, 1);
    assert_string_equal(vh->domains[0], "a.example.com");
    assert_null(keel_route_vhost(t, S("zzz.example.com")));
    fx_free(&f);
}

static void test_gateway_concatenation(void **state)
{
    (void)state;
    char yaml[8192];
    snprintf(yaml, sizeof(yaml),
             "%s" SVC("alpha", "apps", "80") SVC("beta", "apps", "80")
                 SVC("fallback", "apps",
                     "80") "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: old, "
                           "namespace: apps, "
                           "creationTimestamp: \"2024-01-01T00:00:00Z\"}\n"
                           "spec:\n  hosts: [shop.example.com]\n  gateways: [istio-system/gw]\n  http:\n"
                           "  - match: [{uri: {prefix: /a}}]\n    route: [{destination: {host: alpha}}]\n"
                           "  - route: [{destination: {host: fallback}}]\n"
                           "  - match: [{uri: {prefix: /never}}]\n    route: [{destination: {host: alpha}}]\n"
                           "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: new, "
                           "namespace: apps, "
                           "creationTimestamp: \"2024-02-01T00:00:00Z\"}\n"
                           "spec:\n  hosts: [shop.example.com]\n  gateways: [istio-system/gw]\n  http:\n"
                           "  - match: [{uri: {prefix: /b}}]\n    route: [{destination: {host: beta}}]\n",
             gw_yaml);
    struct fx f;
    fx_build(&f, yaml, KEEL_PROXY_ROUTER, "istio-system", ingress_labels, 2);
    const struct keel_route_table *t = keel_snapshot_route_table(f.snap, "http.80");
    const struct keel_vhost *vh = keel_route_vhost(t, S("shop.example.com"));
    assert_non_null(vh);
    /* old's /a, new's /b, then old's catch-all moved last; old's rule after its catch-all is dropped */
    assert_int_equal(vh->n_routes, 3);
    assert_true(strstr(vh->routes[0]->origin, "apps/old"));
    assert_true(strstr(vh->routes[1]->origin, "apps/new"));
    assert_true(vh->routes[2]->catch_all);
    assert_string_equal(route_cluster(t, "shop.example.com", "/a/1"), "outbound|80||alpha.apps.svc.cluster.local");
    assert_string_equal(route_cluster(t, "shop.example.com", "/b/1"), "outbound|80||beta.apps.svc.cluster.local");
    assert_string_equal(route_cluster(t, "shop.example.com", "/never"), "outbound|80||fallback.apps.svc.cluster.local");
    assert_true(has_diag(&f, "virtualService rule not used"));
    fx_free(&f);
}

/* ---- sidecars ------------------------------------------------------------------------------- */

static const char *mesh_yaml =
    SVC("reviews", "default", "9080") SVC("ratings", "default", "9080") SVC("details", "default", "9080")
        SVC("reviews", "other",
            "9080") "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, "
                    "namespace: default}\n"
                    "spec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: "
                    "{version: v2}}]\n"
                    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews-old, "
                    "namespace: default, "
                    "creationTimestamp: \"2024-01-01T00:00:00Z\"}\n"
                    "spec:\n  hosts: [reviews]\n  http: [{route: [{destination: {host: reviews, subset: v1}}]}]\n"
                    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews-new, "
                    "namespace: default, "
                    "creationTimestamp: \"2024-03-01T00:00:00Z\"}\n"
                    "spec:\n  hosts: [reviews.default.svc.cluster.local]\n"
                    "  http: [{route: [{destination: {host: reviews, subset: v2}}]}]\n"
                    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: details, "
                    "namespace: default}\n"
                    "spec:\n  hosts: [details]\n  http: [{match: [{uri: {prefix: /api}}], route: [{destination: {host: "
                    "details}}]}]\n"
                    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: gw-only, "
                    "namespace: default}\n"
                    "spec:\n  hosts: [ratings]\n  gateways: [istio-system/gw]\n"
                    "  http: [{route: [{destination: {host: details}}]}]\n";

static void test_sidecar_oldest_wins(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, mesh_yaml, KEEL_PROXY_SIDECAR, "default", app_labels, 2);
    const struct keel_route_table *t = keel_snapshot_route_table(f.snap, "9080");
    assert_non_null(t);
    assert_string_equal(route_cluster(t, "reviews", "/"), "outbound|9080|v1|reviews.default.svc.cluster.local");
    assert_true(has_diag(&f, "define the same host"));
    /* a VirtualService bound only to a gateway does not apply to sidecars */
    assert_string_equal(route_cluster(t, "ratings", "/"), "outbound|9080||ratings.default.svc.cluster.local");
    fx_free(&f);
}

static void test_default_route(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, mesh_yaml, KEEL_PROXY_SIDECAR, "default", app_labels, 2);
    const struct keel_route_table *t = keel_snapshot_route_table(f.snap, "9080");
    struct keel_http_head h;
    head(&h, "GET", "ratings.default.svc.cluster.local:9080", "/ratings/1");
    const struct keel_route *r = keel_route_match(t, &h, 9080, NULL);
    assert_non_null(r);
    assert_string_equal(r->name, "default");
    assert_int_equal(r->action->kind, KEEL_ROUTE_FORWARD);
    assert_int_equal(r->action->n_dests, 1);
    assert_string_equal(r->action->dests[0].cluster_name, "outbound|9080||ratings.default.svc.cluster.local");
    assert_non_null(r->action->dests[0].cluster);
    assert_int_equal(r->action->timeout, 0);
    assert_true(r->action->retry.enabled);
    assert_int_equal(r->action->retry.num_retries, 2);
    assert_int_equal(r->action->retry.retry_on, KEEL_RETRY_DEFAULT_ON);
    assert_int_equal(r->action->retry.n_status_codes, 0);
    /* unknown hosts go to PassthroughCluster (ALLOW_ANY) */
    assert_string_equal(route_cluster(t, "example.org", "/"), "PassthroughCluster");
    fx_free(&f);
}

static void test_404_on_vs_host(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, mesh_yaml, KEEL_PROXY_SIDECAR, "default", app_labels, 2);
    const struct keel_route_table *t = keel_snapshot_route_table(f.snap, "9080");
    assert_string_equal(route_cluster(t, "details", "/api/v1"), "outbound|9080||details.default.svc.cluster.local");
    assert_non_null(keel_route_vhost(t, S("details")));
    assert_string_equal(route_cluster(t, "details", "/other"), "NR"); /* no fallback to the default route */
    fx_free(&f);
}

static void test_short_names(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, mesh_yaml, KEEL_PROXY_SIDECAR, "default", app_labels, 2);
    const struct keel_route_table *t = keel_snapshot_route_table(f.snap, "9080");
    const struct keel_vhost *v = keel_route_vhost(t, S("ratings.default.svc.cluster.local"));
    assert_non_null(v);
    const char *forms[] = {"ratings",
                           "ratings:9080",
                           "ratings.default",
                           "ratings.default.svc",
                           "ratings.default.svc.cluster.local:9080",
                           "RATINGS.Default"};
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++)
        assert_ptr_equal(keel_route_vhost(t, S(forms[i])), v);
    /* the other namespace's reviews: only qualified forms */
    assert_string_equal(route_cluster(t, "reviews.other", "/"), "outbound|9080||reviews.other.svc.cluster.local");
    fx_free(&f);

    /* a proxy in another namespace does not get the bare name */
    fx_build(&f, mesh_yaml, KEEL_PROXY_SIDECAR, "other", app_labels, 2);
    t = keel_snapshot_route_table(f.snap, "9080");
    assert_string_equal(route_cluster(t, "ratings", "/"), "PassthroughCluster");
    assert_string_equal(route_cluster(t, "ratings.default", "/"), "outbound|9080||ratings.default.svc.cluster.local");
    assert_string_equal(route_cluster(t, "reviews", "/"), "outbound|9080||reviews.other.svc.cluster.local");
    fx_free(&f);
}

static void test_refcount_and_version(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, mesh_yaml, KEEL_PROXY_SIDECAR, "default", app_labels, 2);
    assert_int_equal(keel_snapshot_version(f.snap), keel_store_generation(f.st));
    struct keel_snapshot *extra = keel_snapshot_ref(f.snap);
    assert_ptr_equal(extra, f.snap);
    /* the store and loadset can go: the snapshot owns copies of everything */
    keel_store_free(f.st);
    keel_loadset_free(&f.ls);
    keel_snapshot_unref(extra);
    const struct keel_route_table *t = keel_snapshot_route_table(f.snap, "9080");
    assert_string_equal(route_cluster(t, "reviews", "/"), "outbound|9080|v1|reviews.default.svc.cluster.local");
    assert_string_equal(keel_snapshot_identity(f.snap)->ns, "default");
    keel_snapshot_unref(f.snap);
    keel_diags_free(&f.diags);
}

static void test_dump_json(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, mesh_yaml, KEEL_PROXY_SIDECAR, "default", app_labels, 2);
    struct keel_buf b;
    keel_buf_init(&b, 64 << 20);
    assert_int_equal(keel_snapshot_dump_json(f.snap, &b), 0);
    json_error_t err;
    json_t *root = json_loads(keel_buf_cstr(&b), 0, &err);
    if (!root)
        fail_msg("dump is not JSON: %s at %d", err.text, err.position);
    assert_int_equal(json_integer_value(json_object_get(root, "version")), (json_int_t)keel_store_generation(f.st));
    assert_true(json_array_size(json_object_get(root, "listeners")) > 0);
    assert_true(json_array_size(json_object_get(root, "clusters")) > 0);
    assert_true(json_array_size(json_object_get(root, "diagnostics")) > 0);
    json_t *tables = json_object_get(root, "routeTables");
    assert_true(json_array_size(tables) > 0);
    assert_non_null(strstr(keel_buf_cstr(&b), "\"origin\":\"VirtualService default/reviews-old spec.http[0]\""));
    assert_non_null(strstr(keel_buf_cstr(&b), "\"cluster\":\"outbound|9080|v1|reviews.default.svc.cluster.local\""));
    json_decref(root);
    keel_buf_free(&b);
    fx_free(&f);
}

/* ---- scale -------------------------------------------------------------------------------------- */

#define SCALE 1000

static void test_thousand_services(void **state)
{
    (void)state;
    struct keel_buf y;
    keel_buf_init(&y, 16 << 20);
    for (int i = 0; i < SCALE; i++)
        keel_buf_printf(&y,
                        "---\napiVersion: v1\nkind: Service\nmetadata: {name: svc-%d, namespace: ns%d}\n"
                        "spec:\n  ports: [{port: 80, name: http}, {port: 9000, name: tcp-data}]\n",
                        i, i % 10);
    for (int i = 0; i < SCALE; i++)
        keel_buf_printf(&y,
                        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
                        "metadata: {name: vs-%d, namespace: ns%d}\n"
                        "spec:\n  hosts: [svc-%d]\n  http:\n"
                        "  - match: [{uri: {prefix: /own}, headers: {x-n: {exact: \"%d\"}}}]\n"
                        "    route: [{destination: {host: svc-%d, port: {number: 80}}}]\n"
                        "  - route: [{destination: {host: svc-%d.ns%d.svc.cluster.local, port: {number: 80}}}]\n",
                        i, i % 10, i, i, i, (i + 1) % SCALE, ((i + 1) % SCALE) % 10);
    struct fx f;
    fx_build(&f, keel_buf_cstr(&y), KEEL_PROXY_SIDECAR, "ns0", app_labels, 2);
    const struct keel_route_table *t = keel_snapshot_route_table(f.snap, "80");
    assert_non_null(t);
    assert_int_equal(t->n_vhosts, SCALE + 1); /* + allow_any */
    char host[64], want[128], n[16];
    for (int i = 0; i < SCALE; i++) {
        snprintf(host, sizeof(host), "svc-%d.ns%d.svc.cluster.local", i, i % 10);
        struct keel_http_head h;
        head(&h, "GET", host, "/own/x");
        snprintf(n, sizeof(n), "%d", i);
        h.headers[0] = (struct keel_http_header){S("X-N"), S(n)};
        h.nheaders = 1;
        const struct keel_route *r = keel_route_match(t, &h, 80, NULL);
        assert_non_null(r);
        snprintf(want, sizeof(want), "outbound|80||%s", host);
        assert_string_equal(keel_route_pick(r, 12345)->cluster_name, want);
        assert_non_null(keel_route_pick(r, 12345)->cluster);
        snprintf(want, sizeof(want), "outbound|80||svc-%d.ns%d.svc.cluster.local", (i + 1) % SCALE,
                 ((i + 1) % SCALE) % 10);
        assert_string_equal(route_cluster(t, host, "/elsewhere"), want);
    }
    /* short names work in the proxy's namespace only */
    assert_non_null(keel_route_vhost(t, S("svc-10")));
    assert_ptr_equal(keel_route_vhost(t, S("svc-11")), keel_route_vhost(t, S("*"))); /* ns1: allow_any */
    size_t nc;
    keel_snapshot_clusters(f.snap, &nc);
    assert_int_equal(nc, 2 * SCALE + 2);
    assert_non_null(keel_snapshot_tcp_table(f.snap, 9000));
    fx_free(&f);
    keel_buf_free(&y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gateway_selection),
        cmocka_unit_test(test_vs_binding),
        cmocka_unit_test(test_gateway_concatenation),
        cmocka_unit_test(test_sidecar_oldest_wins),
        cmocka_unit_test(test_default_route),
        cmocka_unit_test(test_404_on_vs_host),
        cmocka_unit_test(test_short_names),
        cmocka_unit_test(test_refcount_and_version),
        cmocka_unit_test(test_dump_json),
        cmocka_unit_test(test_thousand_services),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
