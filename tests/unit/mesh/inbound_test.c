/*
 * inbound_test.c - tests for mesh/inbound: which ports of the proxy's own
 * workload are inbound ports (ServiceEntry workloadSelector with the
 * WorkloadEntry's port map, Kubernetes Service selector with numeric and
 * named targetPorts, Sidecar ingress replacing both), where they forward
 * (127.0.0.1:port, defaultEndpoint, unix sockets), the `inbound|port||`
 * clusters, HTTP and TCP tables, warnings, routers (none), and the dump.
 */
#include "mesh/snapshot.h"

#include "base/buf.h"
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

static void fx_sidecar(struct fx *f, const char *yaml, const char *workload, const char *app)
{
    struct keel_kv_str labels[] = {{"app", app}};
    struct keel_proxy_identity id = {
        .kind = KEEL_PROXY_SIDECAR, .ns = "default", .labels = labels, .n_labels = 1, .workload = workload};
    fx_load(f, yaml, &id);
}

static const struct keel_inbound *inbound(const struct fx *f, uint32_t port)
{
    const struct keel_inbound *in = keel_snapshot_inbound(f->snap, port);
    if (!in)
        fail_msg("no inbound port %u", port);
    return in;
}

static const char *reviews_yaml =
    "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: reviews, namespace: default}\n"
    "spec:\n  hosts: [reviews.default.svc.cluster.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n"
    "  ports:\n  - {number: 9080, name: http, protocol: HTTP}\n"
    "  - {number: 9090, name: tcp-echo, protocol: TCP, targetPort: 19090}\n"
    "  - {number: 9070, name: sniffed}\n"
    "  workloadSelector: {labels: {app: reviews}}\n"
    "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: reviews, namespace: default}\n"
    "spec: {address: 127.0.0.2, labels: {app: reviews}, ports: {http: 19080}}\n"
    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ratings, namespace: default}\n"
    "spec:\n  hosts: [ratings.default.svc.cluster.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n"
    "  ports: [{number: 9080, name: http, protocol: HTTP}]\n  workloadSelector: {labels: {app: ratings}}\n"
    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: other, namespace: other}\n"
    "spec:\n  hosts: [other.other.svc.cluster.local]\n  location: MESH_INTERNAL\n  resolution: STATIC\n"
    "  ports: [{number: 7777, name: http, protocol: HTTP}]\n  workloadSelector: {labels: {app: reviews}}\n";

static void test_service_entry_ports(void **state)
{
    (void)state;
    struct fx f;
    fx_sidecar(&f, reviews_yaml, "reviews.default", "reviews");
    size_t n;
    const struct keel_inbound *v = keel_snapshot_inbounds(f.snap, &n);
    /* 9070 (sniffed), 19080 (WorkloadEntry ports map), 19090 (targetPort); ratings and the other namespace's
     * entry do not select this workload */
    assert_int_equal(n, 3);
    assert_int_equal(v[0].port, 9070);
    assert_int_equal(v[1].port, 19080);
    assert_int_equal(v[2].port, 19090);
    assert_null(keel_snapshot_inbound(f.snap, 7777));
    assert_null(keel_snapshot_inbound(f.snap, 9080));
    /* the inbound address itself: by workload port, else by service port */
    assert_int_equal(keel_snapshot_inbound_for_authority(f.snap, 19080)->port, 19080);
    assert_int_equal(keel_snapshot_inbound_for_authority(f.snap, 9080)->port, 19080);
    assert_int_equal(keel_snapshot_inbound_for_authority(f.snap, 9090)->port, 19090);
    assert_null(keel_snapshot_inbound_for_authority(f.snap, 7777));

    const struct keel_inbound *http = inbound(&f, 19080);
    assert_string_equal(http->cluster_name, "inbound|19080||");
    assert_string_equal(http->endpoint, "127.0.0.1:19080");
    assert_int_equal(http->n_services, 1);
    assert_string_equal(http->services[0], "reviews.default.svc.cluster.local:9080");
    assert_int_equal(http->service_ports[0], 9080);
    assert_non_null(http->routes);
    assert_null(http->tcp);
    assert_ptr_equal(keel_snapshot_route_table(f.snap, "inbound|19080||"), http->routes);

    const struct keel_cluster *c = keel_snapshot_cluster(f.snap, "inbound|19080||");
    assert_non_null(c);
    assert_ptr_equal(http->cluster, c);
    assert_int_equal(c->n_endpoints, 1);
    assert_string_equal(c->endpoints[0].hostport, "127.0.0.1:19080");

    /* every request, whatever its host, goes to the app, without retries */
    struct keel_http_head h;
    memset(&h, 0, sizeof(h));
    h.method = keel_str_c("GET");
    h.authority = keel_str_c("reviews.default.svc.cluster.local:9080");
    h.target = h.path = keel_str_c("/reviews/1");
    const struct keel_route *r = keel_route_match(http->routes, &h, 19080, NULL);
    assert_non_null(r);
    assert_ptr_equal(r->action->dests[0].cluster, c);
    assert_false(r->action->retry.enabled);
    h.authority = keel_str_c("10.1.2.3");
    assert_non_null(keel_route_match(http->routes, &h, 19080, NULL));

    const struct keel_inbound *tcp = inbound(&f, 19090);
    assert_null(tcp->routes);
    assert_non_null(tcp->tcp);
    const struct keel_l4_route *l4 = keel_tcp_route_match(tcp->tcp, "127.0.0.2", NULL, NULL);
    assert_non_null(l4);
    assert_string_equal(l4->dests[0].cluster_name, "inbound|19090||");
    assert_non_null(l4->dests[0].cluster);
    /* a sniffed port is proxied at L4 */
    assert_non_null(inbound(&f, 9070)->tcp);
    fx_free(&f);
}

static void test_no_workload_name(void **state)
{
    (void)state;
    struct fx f;
    /* labels only: the WorkloadEntry's port map is not known, the service port (or targetPort) is used */
    fx_sidecar(&f, reviews_yaml, NULL, "reviews");
    assert_non_null(keel_snapshot_inbound(f.snap, 9080));
    assert_non_null(keel_snapshot_inbound(f.snap, 19090));
    assert_null(keel_snapshot_inbound(f.snap, 19080));
    fx_free(&f);
}

static const char *k8s_yaml =
    "apiVersion: v1\nkind: Service\nmetadata: {name: details, namespace: default}\n"
    "spec:\n  selector: {app: details}\n  ports:\n"
    "  - {name: http, port: 80, targetPort: 9080}\n"
    "  - {name: grpc-api, port: 81, targetPort: api}\n"
    "  - {name: http-missing, port: 82, targetPort: nosuch}\n"
    "---\napiVersion: v1\nkind: Service\nmetadata: {name: details-alias, namespace: default}\n"
    "spec:\n  selector: {app: details}\n  ports: [{name: tcp, port: 9080}]\n"
    "---\napiVersion: v1\nkind: Pod\nmetadata: {name: details-1, namespace: default, labels: {app: details}}\n"
    "spec:\n  containers: [{name: app, image: details, ports: [{name: api, containerPort: 9443}]}]\n"
    "status: {podIP: 10.0.0.9}\n";

static void test_kubernetes_service(void **state)
{
    (void)state;
    struct fx f;
    fx_sidecar(&f, k8s_yaml, "details-1.default", "details");
    size_t n;
    keel_snapshot_inbounds(f.snap, &n);
    assert_int_equal(n, 2);
    const struct keel_inbound *http = inbound(&f, 9080);
    assert_int_equal(http->proto, KEEL_PROTO_HTTP);
    /* two services land on 9080: both listed, the first one's protocol kept, a warning for the other */
    assert_int_equal(http->n_services, 2);
    assert_string_equal(http->services[0], "details.default.svc.cluster.local:80");
    assert_string_equal(http->services[1], "details-alias.default.svc.cluster.local:9080");
    assert_true(has_diag(&f, "already HTTP"));
    /* named targetPort: the Pod's container port */
    const struct keel_inbound *grpc = inbound(&f, 9443);
    assert_int_equal(grpc->proto, KEEL_PROTO_GRPC);
    assert_non_null(grpc->routes);
    /* the cluster carries the port's protocol (the proxy speaks HTTP/2 to gRPC apps) */
    assert_int_equal(grpc->cluster->service_port->proto, KEEL_PROTO_GRPC);
    assert_null(grpc->cluster->service);
    assert_true(has_diag(&f, "named targetPort \"nosuch\""));
    fx_free(&f);
}

static const char *sidecar_yaml =
    "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: reviews, namespace: default}\n"
    "spec:\n  workloadSelector: {labels: {app: reviews}}\n  ingress:\n"
    "  - {port: {number: 9080, protocol: HTTP, name: http}, defaultEndpoint: 127.0.0.1:8080}\n"
    "  - {port: {number: 9081, protocol: TCP, name: tcp}, defaultEndpoint: \"[::1]:8081\"}\n"
    "  - {port: {number: 9082, protocol: HTTP, name: http-uds}, defaultEndpoint: unix:///var/run/app.sock}\n"
    "  - {port: {number: 9083, protocol: HTTP, name: http-any}, defaultEndpoint: 0.0.0.0:8083}\n"
    "  - {port: {number: 9084, protocol: HTTP, name: http-none}}\n";

static void test_sidecar_ingress(void **state)
{
    (void)state;
    char yaml[8192];
    snprintf(yaml, sizeof(yaml), "%s---\n%s", reviews_yaml, sidecar_yaml);
    struct fx f;
    fx_sidecar(&f, yaml, "reviews.default", "reviews");
    size_t n;
    keel_snapshot_inbounds(f.snap, &n);
    assert_int_equal(n, 5); /* the ingress list replaces the services' ports */
    assert_null(keel_snapshot_inbound(f.snap, 19080));
    assert_string_equal(inbound(&f, 9080)->endpoint, "127.0.0.1:8080");
    assert_string_equal(inbound(&f, 9080)->source, "Sidecar default/reviews spec.ingress[0]");
    assert_string_equal(inbound(&f, 9081)->endpoint, "[::1]:8081");
    assert_non_null(inbound(&f, 9081)->tcp);
    assert_string_equal(inbound(&f, 9082)->endpoint, "unix:///var/run/app.sock");
    const struct keel_cluster *c = keel_snapshot_cluster(f.snap, "inbound|9082||");
    assert_non_null(c);
    assert_true(c->endpoints[0].flags & KEEL_EP_UDS);
    assert_string_equal(inbound(&f, 9083)->endpoint, "127.0.0.1:8083");
    assert_string_equal(inbound(&f, 9084)->endpoint, "127.0.0.1:9084");
    assert_false(has_diag(&f, "egress"));
    fx_free(&f);
}

static void test_router_has_none(void **state)
{
    (void)state;
    struct fx f;
    struct keel_kv_str labels[] = {{"app", "reviews"}};
    struct keel_proxy_identity id = {.kind = KEEL_PROXY_ROUTER, .ns = "default", .labels = labels, .n_labels = 1};
    fx_load(&f, reviews_yaml, &id);
    size_t n = 99;
    keel_snapshot_inbounds(f.snap, &n);
    assert_int_equal(n, 0);
    assert_null(keel_snapshot_cluster(f.snap, "inbound|19080||"));
    fx_free(&f);
}

static void test_dump(void **state)
{
    (void)state;
    struct fx f;
    fx_sidecar(&f, reviews_yaml, "reviews.default", "reviews");
    struct keel_buf b;
    keel_buf_init(&b, 1 << 20);
    assert_int_equal(keel_snapshot_dump_json(f.snap, &b), 0);
    const char *s = keel_buf_cstr(&b);
    assert_non_null(strstr(s, "\"inbound\":[{\"port\":9070"));
    assert_non_null(strstr(s, "\"cluster\":\"inbound|19080||\",\"routeTable\":\"inbound|19080||\""));
    assert_non_null(strstr(s, "\"endpoint\":\"127.0.0.1:19090\""));
    assert_non_null(strstr(s, "\"name\":\"inbound|19090||\""));
    keel_buf_free(&b);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_service_entry_ports), cmocka_unit_test(test_no_workload_name),
        cmocka_unit_test(test_kubernetes_service),  cmocka_unit_test(test_sidecar_ingress),
        cmocka_unit_test(test_router_has_none),     cmocka_unit_test(test_dump),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
