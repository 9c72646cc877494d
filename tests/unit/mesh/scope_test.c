/*
 * scope_test.c - tests for mesh/scope (Sidecar egress import rules) and
 * mesh/patches (EnvoyFilter LISTENER socket_options): `"./ *"`, `ns/host`,
 * "* / *" and "~ / *" imports, workloadSelector picking the Sidecar,
 * the Sidecar's outboundTrafficPolicy over the mesh's, VirtualService
 * import and the destinations it brings in, a port-specific egress
 * listener, egressProxy; then keep-alive options on a gateway listener,
 * priority order, and patches reported as not applied.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "base/buf.h"
#include "base/str.h"
#include "fixture.h"
#include "mesh/routes.h"

/* clang-format off */
#define SE(name, ns, host, port, extra)                                                                         \
    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: " name ", namespace: " ns   \
    "}\nspec:\n  hosts: [" host "]\n  location: MESH_INTERNAL\n  resolution: STATIC\n"                          \
    "  ports: [{number: " port ", name: http, protocol: HTTP}]\n  endpoints: [{address: 10.0.0.1}]\n" extra
#define SIDECAR(name, ns, spec)                                                                                 \
    "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: " name ", namespace: " ns        \
    "}\nspec:\n" spec
#define WE(name, ns, app)                                                                                       \
    "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: " name ", namespace: " ns  \
    "}\nspec: {address: 10.1.0.1, labels: {app: " app "}}\n"
/* clang-format on */

#define REGISTRY                                                                                                       \
    SE("a", "app", "a.app.svc.cluster.local", "8080", "")                                                              \
    SE("b", "other", "b.other.svc.cluster.local", "8080", "")                                                          \
    SE("c", "other", "c.other.svc.cluster.local", "9090", "")                                                          \
    SE("sys", "istio-system", "gw.istio-system.svc.cluster.local", "8080", "")

static void fx_sidecar(struct fx *f, const char *yaml, const char *app)
{
    struct keel_kv_str labels[] = {{"app", app}};
    struct keel_proxy_identity id = {.kind = KEEL_PROXY_SIDECAR, .ns = "app", .labels = labels, .n_labels = 1};
    fx_load(f, yaml, &id);
}

static bool has_cluster(const struct fx *f, const char *name)
{
    return keel_snapshot_cluster(f->snap, name) != NULL;
}

/* The route name a request to authority gets on table `table` ("allow_any", "block_all", "default", ...). */
static const char *route_for(const struct fx *f, const char *table, const char *authority)
{
    const struct keel_route_table *t = keel_snapshot_route_table(f->snap, table);
    if (!t)
        return "(no table)";
    const struct keel_vhost *vh = keel_route_vhost(t, keel_str_c(authority));
    return vh && vh->n_routes ? vh->routes[0]->name : "(none)";
}

static void test_no_sidecar_imports_all(void **state)
{
    (void)state;
    struct fx f;
    fx_sidecar(&f, REGISTRY, "web");
    assert_true(has_cluster(&f, "outbound|8080||b.other.svc.cluster.local"));
    assert_true(has_cluster(&f, "outbound|9090||c.other.svc.cluster.local"));
    assert_string_equal(route_for(&f, "8080", "b.other.svc.cluster.local"), "default");
    fx_free(&f);
}

static void test_import_rules(void **state)
{
    (void)state;
    struct fx f;
    /* "./ *" and one named host of another namespace */
    fx_sidecar(
        &f, REGISTRY SIDECAR("default", "app", "  egress: [{hosts: [\"./*\", \"other/c.other.svc.cluster.local\"]}]\n"),
        "web");
    assert_true(has_cluster(&f, "outbound|8080||a.app.svc.cluster.local"));
    assert_false(has_cluster(&f, "outbound|8080||b.other.svc.cluster.local"));
    assert_true(has_cluster(&f, "outbound|9090||c.other.svc.cluster.local"));
    assert_false(has_cluster(&f, "outbound|8080||gw.istio-system.svc.cluster.local"));
    assert_string_equal(route_for(&f, "8080", "a.app.svc.cluster.local"), "default");
    assert_string_equal(route_for(&f, "8080", "b.other.svc.cluster.local"), "allow_any");
    assert_false(has_diag(&f, "not applied yet"));
    fx_free(&f);

    /* everything */
    fx_sidecar(&f, REGISTRY SIDECAR("default", "app", "  egress: [{hosts: [\"*/*\"]}]\n"), "web");
    assert_true(has_cluster(&f, "outbound|8080||b.other.svc.cluster.local"));
    assert_true(has_cluster(&f, "outbound|8080||gw.istio-system.svc.cluster.local"));
    fx_free(&f);

    /* nothing, and REGISTRY_ONLY from the Sidecar: unknown hosts get block_all */
    fx_sidecar(&f,
               REGISTRY SE("keep", "app", "keep.app.svc.cluster.local", "7070", "")
                   SIDECAR("default", "app",
                           "  egress: [{port: {number: 7070, name: http, protocol: HTTP}, hosts: "
                           "[\"./*\"]}, {hosts: [\"~/*\"]}]\n  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"),
               "web");
    /* clusters are the union of the listeners' services (as Istio's CDS), routes are per port */
    assert_true(has_cluster(&f, "outbound|8080||a.app.svc.cluster.local"));
    assert_false(has_cluster(&f, "outbound|8080||b.other.svc.cluster.local"));
    /* the port-7070 listener imports "./ *" on that port only */
    assert_true(has_cluster(&f, "outbound|7070||keep.app.svc.cluster.local"));
    assert_null(keel_snapshot_route_table(f.snap, "8080"));
    assert_string_equal(route_for(&f, "7070", "keep.app.svc.cluster.local"), "default");
    assert_string_equal(route_for(&f, "7070", "b.other.svc.cluster.local"), "block_all");
    struct keel_buf out;
    keel_buf_init(&out, 1 << 20);
    assert_int_equal(keel_snapshot_dump_json(f.snap, &out), 0);
    assert_non_null(strstr(keel_buf_cstr(&out), "\"sidecarScope\":{\"sidecar\":\"app/default\""));
    assert_non_null(strstr(keel_buf_cstr(&out), "\"outboundTrafficPolicyFrom\":\"Sidecar\""));
    keel_buf_free(&out);
    fx_free(&f);
}

static void test_workload_selector(void **state)
{
    (void)state;
    const char *yaml = REGISTRY WE("web", "app", "web") SIDECAR("ns-default", "app", "  egress: [{hosts: [\"./*\"]}]\n")
        SIDECAR("for-web", "app", "  workloadSelector: {labels: {app: web}}\n  egress: [{hosts: [\"other/*\"]}]\n");
    struct fx f;
    fx_sidecar(&f, yaml, "web"); /* the selecting Sidecar wins */
    assert_false(has_cluster(&f, "outbound|8080||a.app.svc.cluster.local"));
    assert_true(has_cluster(&f, "outbound|8080||b.other.svc.cluster.local"));
    fx_free(&f);
    fx_sidecar(&f, yaml, "db"); /* the namespace's */
    assert_true(has_cluster(&f, "outbound|8080||a.app.svc.cluster.local"));
    assert_false(has_cluster(&f, "outbound|8080||b.other.svc.cluster.local"));
    fx_free(&f);
}

static void test_virtual_service_import(void **state)
{
    (void)state;
    /* a VirtualService for an imported host brings its destination (the egress gateway) in */
    const char *yaml = REGISTRY SE(
        "ext", "app", "ext.example.com", "8080",
        "") "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ext, namespace: app}\n"
            "spec:\n  hosts: [ext.example.com]\n  http: [{route: [{destination: {host: "
            "gw.istio-system.svc.cluster.local, "
            "port: {number: 8080}}}]}]\n" SIDECAR("default", "app", "  egress: [{hosts: [\"./ext.example.com\"]}]\n");
    struct fx f;
    fx_sidecar(&f, yaml, "web");
    assert_true(has_cluster(&f, "outbound|8080||ext.example.com"));
    assert_true(has_cluster(&f, "outbound|8080||gw.istio-system.svc.cluster.local"));
    assert_false(has_cluster(&f, "outbound|8080||a.app.svc.cluster.local"));
    const struct keel_route_table *t = keel_snapshot_route_table(f.snap, "8080");
    const struct keel_vhost *vh = keel_route_vhost(t, keel_str_c("ext.example.com"));
    assert_non_null(vh);
    assert_string_equal(vh->routes[0]->action->dests[0].cluster_name,
                        "outbound|8080||gw.istio-system.svc.cluster.local");
    fx_free(&f);

    /* the VirtualService's namespace must match the import's namespace part */
    const char *yaml2 = REGISTRY SE(
        "ext", "app", "ext.example.com", "8080",
        "") "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ext, namespace: app}\n"
            "spec:\n  hosts: [ext.example.com]\n  http: [{route: [{destination: {host: "
            "gw.istio-system.svc.cluster.local, "
            "port: {number: 8080}}}]}]\n" SIDECAR("default", "app",
                                                  "  egress: [{hosts: [\"other/ext.example.com\"]}]\n");
    fx_sidecar(&f, yaml2, "web");
    assert_false(has_cluster(&f, "outbound|8080||gw.istio-system.svc.cluster.local"));
    fx_free(&f);
}

static void test_egress_proxy(void **state)
{
    (void)state;
    struct fx f;
    fx_sidecar(&f,
               REGISTRY SIDECAR("default", "app",
                                "  outboundTrafficPolicy: {mode: ALLOW_ANY, egressProxy: {host: "
                                "gw.istio-system.svc.cluster.local, port: {number: 8080}}}\n"),
               "web");
    const struct keel_route_table *t = keel_snapshot_route_table(f.snap, "8080");
    const struct keel_vhost *vh = keel_route_vhost(t, keel_str_c("unknown.example.org"));
    assert_non_null(vh);
    assert_string_equal(vh->routes[0]->name, "allow_any");
    assert_string_equal(vh->routes[0]->action->dests[0].cluster_name,
                        "outbound|8080||gw.istio-system.svc.cluster.local");
    assert_non_null(vh->routes[0]->action->dests[0].cluster);
    fx_free(&f);
}

/* ---- EnvoyFilter --------------------------------------------------------------------------------------------- */

#define GW                                                                                                             \
    "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: foo}\nspec:\n"            \
    "  selector: {istio: ingressgateway}\n  servers:\n"                                                                \
    "  - {port: {number: 8443, name: http, protocol: HTTP}, hosts: [\"*\"]}\n"                                         \
    "  - {port: {number: 8080, name: http2, protocol: HTTP}, hosts: [\"*\"]}\n"

#define KEEPALIVE(name, prio, idle)                                                                                    \
    "---\napiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: " name ", namespace: foo}\n"   \
    "spec:\n  priority: " prio "\n  configPatches:\n  - applyTo: LISTENER\n"                                           \
    "    match: {context: GATEWAY, listener: {name: 0.0.0.0_8443, portNumber: 8443}}\n"                                \
    "    patch:\n      operation: MERGE\n      value:\n        socket_options:\n"                                      \
    "        - {level: 1, name: 9, int_value: 1, state: STATE_PREBIND}\n"                                              \
    "        - {level: 6, name: 4, int_value: " idle ", state: STATE_PREBIND}\n"

static void fx_gateway(struct fx *f, const char *yaml)
{
    struct keel_kv_str labels[] = {{"istio", "ingressgateway"}};
    struct keel_proxy_identity id = {.kind = KEEL_PROXY_ROUTER, .ns = "foo", .labels = labels, .n_labels = 1};
    fx_load(f, yaml, &id);
}

static int64_t last_opt(const struct keel_listener *l, int level, int name)
{
    int64_t v = -1;
    for (size_t i = 0; i < l->n_sockopts; i++)
        if (l->sockopts[i].level == level && l->sockopts[i].name == name)
            v = l->sockopts[i].value;
    return v;
}

static void test_envoyfilter_keepalive(void **state)
{
    (void)state;
    struct fx f;
    /* priority: -1 applied first, 10 last (its value wins) */
    fx_gateway(
        &f,
        GW KEEPALIVE("late", "10", "30") KEEPALIVE(
            "early", "-1",
            "15") "---\napiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata: {name: lua, "
                  "namespace: foo}\nspec:\n  configPatches:\n  - applyTo: HTTP_FILTER\n    match: {context: "
                  "GATEWAY, listener: {filterChain: {filter: {name: envoy.filters.network.http_connection_manager}}}}\n"
                  "    patch: {operation: INSERT_BEFORE, value: {name: envoy.lua}}\n");
    const struct keel_listener *l = keel_snapshot_listener(f.snap, 8443);
    assert_non_null(l);
    assert_int_equal(l->n_sockopts, 4);
    assert_int_equal(last_opt(l, 1, 9), 1);
    assert_int_equal(last_opt(l, 6, 4), 30);
    assert_int_equal(l->sockopts[1].value, 15); /* "early" first */
    assert_int_equal(keel_snapshot_listener(f.snap, 8080)->n_sockopts, 0);
    struct keel_buf out;
    keel_buf_init(&out, 1 << 20);
    assert_int_equal(keel_snapshot_dump_json(f.snap, &out), 0);
    const char *dump = keel_buf_cstr(&out);
    const char *early = strstr(dump, "\"name\":\"foo/early\"");
    const char *late = strstr(dump, "\"name\":\"foo/late\"");
    const char *lua = strstr(dump, "\"name\":\"foo/lua\"");
    assert_non_null(early);
    assert_non_null(late);
    assert_non_null(lua);
    assert_true(early < lua && lua < late); /* priority -1, 0, 10 */
    assert_non_null(strstr(lua, "\"applied\":false,\"reason\":\"keel runs no Envoy filter chains"));
    assert_non_null(strstr(early, "\"applied\":true,\"listeners\":[\"0.0.0.0_8443\"]"));
    assert_non_null(strstr(dump, "\"option\":\"TCP_KEEPIDLE\""));
    keel_buf_free(&out);
    fx_free(&f);

    /* a sidecar: context GATEWAY does not apply; a listener that does not exist matches nothing */
    struct keel_proxy_identity id = {.kind = KEEL_PROXY_SIDECAR, .ns = "foo"};
    fx_load(&f, GW KEEPALIVE("early", "-1", "15"), &id);
    keel_buf_init(&out, 1 << 20);
    assert_int_equal(keel_snapshot_dump_json(f.snap, &out), 0);
    assert_non_null(strstr(keel_buf_cstr(&out), "\"reason\":\"context GATEWAY does not apply to this sidecar\""));
    keel_buf_free(&out);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_sidecar_imports_all), cmocka_unit_test(test_import_rules),
        cmocka_unit_test(test_workload_selector),      cmocka_unit_test(test_virtual_service_import),
        cmocka_unit_test(test_egress_proxy),           cmocka_unit_test(test_envoyfilter_keepalive),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
