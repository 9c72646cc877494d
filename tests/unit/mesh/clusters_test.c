/*
 * clusters_test.c - tests for mesh/clusters: cluster names, endpoints from
 * every source (ServiceEntry endpoints and workloadSelector, WorkloadEntry
 * port maps, Kubernetes Endpoints, EndpointSlices and Pods), subsets by
 * labels, traffic policy resolution (port-level settings and subset policies
 * replace blocks, never merge), defaults, MeshConfig connectTimeout, TLS,
 * resolution types, and the lookups.
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

/* ---- fixture ------------------------------------------------------------------------------ */

static void fx_build(struct fx *f, const char *yaml)
{
    struct keel_kv_str labels[] = {{"app", "client"}};
    struct keel_proxy_identity id = {.kind = KEEL_PROXY_SIDECAR, .ns = "default", .labels = labels, .n_labels = 1};
    fx_load(f, yaml, &id);
}

static const struct keel_cluster *cluster(const struct fx *f, const char *name)
{
    const struct keel_cluster *c = keel_snapshot_cluster(f->snap, name);
    if (!c)
        fail_msg("no cluster %s", name);
    return c;
}

static const struct keel_endpoint *endpoint(const struct keel_cluster *c, const char *address)
{
    for (size_t i = 0; i < c->n_endpoints; i++)
        if (strcmp(c->endpoints[i].address, address) == 0)
            return &c->endpoints[i];
    fail_msg("cluster %s has no endpoint %s", c->name, address);
    return NULL;
}

/* ---- subsets and policies ------------------------------------------------------------------- */

static const char *se_yaml =
    "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: shop, namespace: default}\n"
    "spec:\n  hosts: [shop.internal]\n  location: MESH_INTERNAL\n  resolution: STATIC\n"
    "  ports: [{number: 9080, name: http, protocol: HTTP}, {number: 9081, name: admin, protocol: HTTP}]\n"
    "  endpoints:\n"
    "  - {address: 10.0.0.1, labels: {version: v1}}\n"
    "  - {address: 10.0.0.2, labels: {version: v1, zone: a}}\n"
    "  - {address: 10.0.0.3, labels: {version: v2}, ports: {admin: 19081}}\n"
    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: shop, namespace: default}\n"
    "spec:\n  host: shop.internal\n  trafficPolicy:\n"
    "    loadBalancer: {simple: ROUND_ROBIN}\n"
    "    connectionPool: {tcp: {maxConnections: 100}}\n"
    "    outlierDetection: {consecutive5xxErrors: 7}\n"
    "    portLevelSettings:\n    - port: {number: 9080}\n      loadBalancer: {simple: RANDOM}\n"
    "  subsets:\n"
    "  - {name: v1, labels: {version: v1}}\n"
    "  - name: v2\n    labels: {version: v2}\n"
    "    trafficPolicy: {connectionPool: {http: {http2MaxRequests: 5}}}\n"
    "  - {name: all}\n";

static void test_subsets_by_labels(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, se_yaml);
    const struct keel_cluster *all = cluster(&f, "outbound|9080||shop.internal");
    assert_int_equal(all->n_endpoints, 3);
    assert_int_equal(all->type, KEEL_CLUSTER_EDS);
    const struct keel_cluster *v1 = cluster(&f, "outbound|9080|v1|shop.internal");
    assert_int_equal(v1->n_endpoints, 2);
    endpoint(v1, "10.0.0.1");
    endpoint(v1, "10.0.0.2");
    const struct keel_cluster *v2 = cluster(&f, "outbound|9080|v2|shop.internal");
    assert_int_equal(v2->n_endpoints, 1);
    assert_int_equal(endpoint(v2, "10.0.0.3")->port, 9080);
    assert_string_equal(endpoint(v2, "10.0.0.3")->hostport, "10.0.0.3:9080");
    /* the WorkloadEntry `ports` map renames the port, by service port name */
    assert_int_equal(endpoint(cluster(&f, "outbound|9081|v2|shop.internal"), "10.0.0.3")->port, 19081);
    assert_string_equal(endpoint(cluster(&f, "outbound|9081|v2|shop.internal"), "10.0.0.3")->hostport,
                        "10.0.0.3:19081");
    assert_int_equal(cluster(&f, "outbound|9080|all|shop.internal")->n_endpoints, 3); /* no labels: all */
    assert_string_equal(v1->destination_rule, "default/shop");
    fx_free(&f);
}

static void test_port_level_replaces(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, se_yaml);
    /* 9080 has port-level settings: they replace the top level, omitted blocks take the defaults */
    const struct keel_cluster *c = cluster(&f, "outbound|9080||shop.internal");
    assert_int_equal(c->lb.policy, KEEL_LB_RANDOM);
    assert_int_equal(c->limits.max_connections, KEEL_CLUSTERS_UNLIMITED);
    assert_false(c->outlier.enabled);
    /* 9081 has none: the top-level policy */
    c = cluster(&f, "outbound|9081||shop.internal");
    assert_int_equal(c->lb.policy, KEEL_LB_ROUND_ROBIN);
    assert_int_equal(c->limits.max_connections, 100);
    assert_true(c->outlier.enabled);
    assert_int_equal(c->outlier.consecutive_5xx, 7);
    assert_int_equal(c->outlier.interval, 10000000000LL);
    assert_int_equal(c->outlier.base_ejection_time, 30000000000LL);
    assert_int_equal(c->outlier.max_ejection_percent, 10);
    /* a subset policy replaces the blocks it sets: connectionPool whole, LB inherited */
    c = cluster(&f, "outbound|9081|v2|shop.internal");
    assert_int_equal(c->lb.policy, KEEL_LB_ROUND_ROBIN);
    assert_int_equal(c->limits.max_requests, 5);
    assert_int_equal(c->limits.max_connections, KEEL_CLUSTERS_UNLIMITED);
    assert_true(c->outlier.enabled);
    c = cluster(&f, "outbound|9080|v2|shop.internal"); /* port level first, then the subset */
    assert_int_equal(c->lb.policy, KEEL_LB_RANDOM);
    assert_int_equal(c->limits.max_requests, 5);
    assert_false(c->outlier.enabled);
    fx_free(&f);
}

static void test_defaults(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, "apiVersion: v1\nkind: Service\nmetadata: {name: plain, namespace: default}\n"
                 "spec:\n  clusterIP: 10.9.0.1\n  ports: [{port: 80, name: http}]\n");
    const struct keel_cluster *c = cluster(&f, "outbound|80||plain.default.svc.cluster.local");
    assert_int_equal(c->lb.policy, KEEL_LB_LEAST_REQUEST);
    assert_int_equal(c->limits.max_connections, KEEL_CLUSTERS_UNLIMITED);
    assert_int_equal(c->limits.max_pending_requests, KEEL_CLUSTERS_UNLIMITED);
    assert_int_equal(c->limits.max_requests, KEEL_CLUSTERS_UNLIMITED);
    assert_int_equal(c->limits.max_retries, KEEL_CLUSTERS_UNLIMITED);
    assert_int_equal(c->limits.connect_timeout, 10000000000LL);
    assert_false(c->outlier.enabled);
    assert_int_equal(c->tls.mode, KEEL_CLUSTER_TLS_UNSET);
    assert_null(c->destination_rule);
    assert_string_equal(c->service->addresses[0], "10.9.0.1");
    /* iteration: sorted by name, lookups agree */
    size_t n;
    const struct keel_cluster *const *all = keel_snapshot_clusters(f.snap, &n);
    assert_int_equal(n, 3); /* + BlackHoleCluster, PassthroughCluster */
    for (size_t i = 0; i < n; i++) {
        assert_ptr_equal(keel_snapshot_cluster(f.snap, all[i]->name), all[i]);
        if (i)
            assert_true(strcmp(all[i - 1]->name, all[i]->name) < 0);
    }
    assert_int_equal(cluster(&f, "PassthroughCluster")->type, KEEL_CLUSTER_ORIGINAL_DST);
    assert_null(keel_snapshot_cluster(f.snap, "outbound|81||plain.default.svc.cluster.local"));
    fx_free(&f);
}

static void test_mesh_connect_timeout(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n"
                 "data:\n  mesh: |\n    connectTimeout: 3s\n"
                 "---\napiVersion: v1\nkind: Service\nmetadata: {name: plain, namespace: default}\n"
                 "spec:\n  ports: [{port: 80, name: http}]\n"
                 "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
                 "metadata: {name: plain, namespace: default}\n"
                 "spec:\n  host: plain\n  subsets:\n  - name: fast\n"
                 "    trafficPolicy: {connectionPool: {tcp: {connectTimeout: 250ms}}}\n");
    assert_int_equal(cluster(&f, "outbound|80||plain.default.svc.cluster.local")->limits.connect_timeout, 3000000000LL);
    assert_int_equal(cluster(&f, "outbound|80|fast|plain.default.svc.cluster.local")->limits.connect_timeout,
                     250000000LL);
    fx_free(&f);
}

static void test_tls_and_hash(void **state)
{
    (void)state;
    struct fx f;
    fx_build(
        &f,
        "apiVersion: v1\nkind: Service\nmetadata: {name: pay, namespace: default}\n"
        "spec:\n  ports: [{port: 443, name: https}, {port: 80, name: http}]\n"
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: pay, namespace: default}\n"
        "spec:\n  host: pay\n  trafficPolicy:\n    tls: {mode: ISTIO_MUTUAL}\n"
        "    loadBalancer: {consistentHash: {httpHeaderName: X-User}}\n"
        "    portLevelSettings:\n    - port: {number: 443}\n"
        "      tls: {mode: SIMPLE, sni: pay.example.com, subjectAltNames: [pay.example.com]}\n"
        "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: pay, namespace: default}\n"
        "spec:\n  hosts: [pay]\n  http: [{route: [{destination: {host: pay, port: {number: 80}}}]}]\n");
    const struct keel_cluster *c = cluster(&f, "outbound|80||pay.default.svc.cluster.local");
    assert_int_equal(c->tls.mode, KEEL_CLUSTER_TLS_ISTIO_MUTUAL);
    assert_string_equal(c->tls.sni, "outbound_.80_._.pay.default.svc.cluster.local");
    assert_int_equal(c->lb.policy, KEEL_LB_RING_HASH);
    assert_int_equal(c->lb.hash_key, KEEL_HASH_HEADER);
    assert_string_equal(c->lb.hash_name, "x-user");
    assert_int_equal(c->lb.ring_size, 1024);
    c = cluster(&f, "outbound|443||pay.default.svc.cluster.local");
    assert_int_equal(c->tls.mode, KEEL_CLUSTER_TLS_SIMPLE);
    assert_string_equal(c->tls.sni, "pay.example.com");
    assert_int_equal(c->tls.n_subject_alt_names, 1);
    assert_int_equal(c->lb.policy, KEEL_LB_LEAST_REQUEST); /* port level: no LB block, default */
    /* routes to a consistent-hash cluster do not avoid previous hosts on retry */
    const struct keel_route_table *t = keel_snapshot_route_table(f.snap, "80");
    struct keel_http_head h = {.method = {"GET", 3}, .authority = {"pay", 3}, .path = {"/", 1}, .target = {"/", 1}};
    const struct keel_route *r = keel_route_match(t, &h, 80, NULL);
    assert_non_null(r);
    assert_false(r->action->retry.previous_hosts);
    fx_free(&f);
}

/* ---- endpoint sources ----------------------------------------------------------------------- */

static void test_service_entry_resolutions(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f,
             "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext, namespace: default}\n"
             "spec:\n  hosts: [api.example.com]\n  resolution: DNS\n"
             "  ports: [{number: 443, name: https, protocol: HTTPS, targetPort: 8443}]\n"
             "  endpoints:\n"
             "  - {address: eu.api.example.com, weight: 5, locality: eu-west/a, labels: {region: eu}}\n"
             "  - {address: 192.0.2.10, ports: {https: 9443}}\n"
             "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: bare, namespace: default}\n"
             "spec:\n  hosts: [www.example.org]\n  resolution: DNS_ROUND_ROBIN\n"
             "  ports: [{number: 80, name: http, protocol: HTTP}]\n"
             "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: any, namespace: default}\n"
             "spec:\n  hosts: [\"*.wild.example.com\"]\n  resolution: NONE\n"
             "  ports: [{number: 443, name: tls, protocol: TLS}]\n");
    const struct keel_cluster *c = cluster(&f, "outbound|443||api.example.com");
    assert_int_equal(c->type, KEEL_CLUSTER_STRICT_DNS);
    /* nothing resolved: the name is kept aside (no traffic), the IP endpoint serves */
    assert_int_equal(c->n_endpoints, 1);
    assert_int_equal(c->n_unresolved, 1);
    const struct keel_endpoint *e = &c->unresolved[0];
    assert_string_equal(e->address, "eu.api.example.com");
    assert_true(e->flags & KEEL_EP_DNS);
    assert_int_equal(e->port, 8443); /* targetPort */
    assert_int_equal(e->weight, 5);
    assert_string_equal(e->locality, "eu-west/a");
    assert_null(e->resolve_error);
    e = endpoint(c, "192.0.2.10");
    assert_false(e->flags & KEEL_EP_DNS);
    assert_int_equal(e->port, 9443); /* ports map wins */
    assert_int_equal(e->weight, 1);
    assert_true(c->service->mesh_external);

    c = cluster(&f, "outbound|80||www.example.org");
    assert_int_equal(c->type, KEEL_CLUSTER_LOGICAL_DNS);
    assert_int_equal(c->n_endpoints, 0);
    assert_int_equal(c->n_unresolved, 1); /* the host itself */
    assert_string_equal(c->unresolved[0].address, "www.example.org");
    assert_int_equal(c->unresolved[0].port, 80);
    size_t n;
    const char *const *names = keel_snapshot_dns_names(f.snap, &n);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "eu.api.example.com");
    assert_string_equal(names[1], "www.example.org");

    c = cluster(&f, "outbound|443||*.wild.example.com");
    assert_int_equal(c->type, KEEL_CLUSTER_ORIGINAL_DST); /* resolution NONE: passthrough */
    assert_int_equal(c->n_endpoints, 0);
    fx_free(&f);
}

static void test_workload_selector(void **state)
{
    (void)state;
    struct fx f;
    fx_build(
        &f,
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: vms, namespace: apps}\n"
        "spec:\n  hosts: [vm.apps.internal]\n  location: MESH_INTERNAL\n  resolution: STATIC\n"
        "  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]\n"
        "  workloadSelector: {labels: {app: vm}}\n"
        "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm-1, namespace: apps}\n"
        "spec: {address: 10.2.0.1, labels: {app: vm, version: v1}, ports: {http: 9090}, weight: 3, "
        "serviceAccount: vm-sa, network: net-2}\n"
        "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm-2, namespace: apps}\n"
        "spec: {address: 10.2.0.2, labels: {app: vm, version: v2}}\n"
        "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: other, namespace: apps}\n"
        "spec: {address: 10.2.0.3, labels: {app: db}}\n"
        "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm-x, namespace: else}\n"
        "spec: {address: 10.2.0.4, labels: {app: vm}}\n"
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: vm-pod, namespace: apps, labels: {app: vm, version: v2}}\n"
        "spec:\n  containers: [{name: c, image: x}]\nstatus: {podIP: 10.2.0.9}\n"
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: vm, namespace: apps}\n"
        "spec:\n  host: vm.apps.internal\n  subsets: [{name: v2, labels: {version: v2}}]\n");
    const struct keel_cluster *c = cluster(&f, "outbound|80||vm.apps.internal");
    assert_int_equal(c->n_endpoints, 3);
    const struct keel_endpoint *e = endpoint(c, "10.2.0.1");
    assert_int_equal(e->port, 9090);
    assert_int_equal(e->weight, 3);
    assert_string_equal(e->service_account, "vm-sa");
    assert_string_equal(e->network, "net-2");
    assert_string_equal(e->source, "WorkloadEntry apps/vm-1");
    assert_int_equal(endpoint(c, "10.2.0.2")->port, 8080); /* targetPort */
    assert_string_equal(endpoint(c, "10.2.0.9")->source, "Pod apps/vm-pod");
    c = cluster(&f, "outbound|80|v2|vm.apps.internal");
    assert_int_equal(c->n_endpoints, 2);
    endpoint(c, "10.2.0.2");
    endpoint(c, "10.2.0.9");
    fx_free(&f);
}

static void test_kubernetes_endpoints(void **state)
{
    (void)state;
    struct fx f;
    fx_build(
        &f,
        /* Endpoints object, pods found through targetRef */
        "apiVersion: v1\nkind: Service\nmetadata: {name: reviews, namespace: default}\n"
        "spec:\n  selector: {app: reviews}\n  ports: [{port: 9080, name: http, targetPort: 9081}]\n"
        "---\napiVersion: v1\nkind: Endpoints\nmetadata: {name: reviews, namespace: default}\n"
        "subsets:\n- addresses:\n  - {ip: 10.1.0.1, targetRef: {kind: Pod, name: reviews-v1}}\n"
        "  - {ip: 10.1.0.2, targetRef: {kind: Pod, name: reviews-v2}}\n"
        "  notReadyAddresses: [{ip: 10.1.0.3}]\n  ports: [{name: http, port: 9081}]\n"
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: reviews-v1, namespace: default, "
        "labels: {app: reviews, version: v1}}\nspec:\n  serviceAccountName: bookinfo-reviews\n"
        "  containers: [{name: c, image: x}]\nstatus: {podIP: 10.1.0.1}\n"
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: reviews-v2, namespace: default, "
        "labels: {app: reviews, version: v2}}\nspec:\n  containers: [{name: c, image: x}]\nstatus: {podIP: 10.1.0.2}\n"
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews, namespace: "
        "default}\n"
        "spec:\n  host: reviews\n  subsets: [{name: v1, labels: {version: v1}}]\n"
        /* EndpointSlice; not-ready endpoints are skipped */
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: ratings, namespace: default}\n"
        "spec:\n  ports: [{port: 9080, name: http}]\n"
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: ratings-abc, namespace: default, "
        "labels: {kubernetes.io/service-name: ratings}}\naddressType: IPv4\n"
        "endpoints:\n- {addresses: [10.3.0.1], conditions: {ready: true}}\n"
        "- {addresses: [10.3.0.2], conditions: {ready: false}}\nports: [{name: http, port: 9080}]\n"
        /* no endpoint objects: the selected Pods, named targetPort */
        "---\napiVersion: v1\nkind: Service\nmetadata: {name: details, namespace: default}\n"
        "spec:\n  selector: {app: details}\n  ports: [{port: 9080, name: http, targetPort: web}]\n"
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: details-1, namespace: default, labels: {app: details}}\n"
        "spec:\n  containers: [{name: c, image: x, ports: [{name: web, containerPort: 8000}]}]\n"
        "status: {podIP: 10.4.0.1}\n"
        "---\napiVersion: v1\nkind: Pod\nmetadata: {name: details-2, namespace: default, labels: {app: details}}\n"
        "spec:\n  containers: [{name: c, image: x}]\nstatus: {podIP: 10.4.0.2}\n");
    const struct keel_cluster *c = cluster(&f, "outbound|9080||reviews.default.svc.cluster.local");
    assert_int_equal(c->n_endpoints, 2);
    const struct keel_endpoint *e = endpoint(c, "10.1.0.1");
    assert_int_equal(e->port, 9081);
    assert_string_equal(e->service_account, "bookinfo-reviews");
    c = cluster(&f, "outbound|9080|v1|reviews.default.svc.cluster.local");
    assert_int_equal(c->n_endpoints, 1);
    endpoint(c, "10.1.0.1");

    c = cluster(&f, "outbound|9080||ratings.default.svc.cluster.local");
    assert_int_equal(c->n_endpoints, 1);
    assert_string_equal(endpoint(c, "10.3.0.1")->source, "EndpointSlice default/ratings-abc");

    c = cluster(&f, "outbound|9080||details.default.svc.cluster.local");
    assert_int_equal(c->n_endpoints, 1); /* details-2 has no container port named web */
    assert_int_equal(endpoint(c, "10.4.0.1")->port, 8000);
    fx_free(&f);
}

/* The "host:port" key is formatted once at compile time: brackets for IPv6, the path alone for unix sockets. */
static void test_endpoint_hostport(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f, "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s, namespace: default}\n"
                 "spec:\n  hosts: [s.example.com]\n  location: MESH_INTERNAL\n  resolution: STATIC\n"
                 "  ports: [{number: 80, name: http, protocol: HTTP}]\n"
                 "  endpoints:\n  - address: 192.0.2.1\n  - address: 2001:db8::1\n"
                 "  - address: unix:///var/run/s.sock\n");
    const struct keel_cluster *c = cluster(&f, "outbound|80||s.example.com");
    assert_string_equal(endpoint(c, "192.0.2.1")->hostport, "192.0.2.1:80");
    assert_string_equal(endpoint(c, "2001:db8::1")->hostport, "[2001:db8::1]:80");
    assert_string_equal(endpoint(c, "unix:///var/run/s.sock")->hostport, "unix:///var/run/s.sock");
    fx_free(&f);
}

static void test_dns_answers(void **state)
{
    (void)state;
    static const char *const eu[] = {"192.0.2.1", "2001:db8::1", "192.0.2.2"};
    static const char *const www[] = {"198.51.100.7", "198.51.100.8"};
    struct keel_dns_answer v[] = {
        {"eu.api.example.com", eu, 3, NULL},
        {"gone.example.com", NULL, 0, "Domain name not found"},
        {"us.api.example.com", NULL, 0, NULL},                               /* not needed by anyone: ignored */
        {"www.example.org", www, 2, "Timeout while contacting DNS servers"}, /* last good kept, error shown */
    };
    struct keel_dns_answers answers = {v, 4};
    struct keel_kv_str labels[] = {{"app", "client"}};
    struct keel_proxy_identity id = {.kind = KEEL_PROXY_SIDECAR, .ns = "default", .labels = labels, .n_labels = 1};
    struct fx f;
    fx_load_dns(
        &f,
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext, namespace: default}\n"
        "spec:\n  hosts: [api.example.com]\n  resolution: DNS\n"
        "  ports: [{number: 443, name: https, protocol: HTTPS, targetPort: 8443}]\n"
        "  endpoints:\n"
        "  - {address: eu.api.example.com, weight: 5, locality: eu-west/a, labels: {region: eu}}\n"
        "  - {address: gone.example.com, labels: {region: eu}}\n"
        "  - {address: 192.0.2.10, ports: {https: 9443}}\n"
        "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        "metadata: {name: ext, namespace: default}\n"
        "spec:\n  host: api.example.com\n  subsets: [{name: eu, labels: {region: eu}}]\n"
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: bare, namespace: default}\n"
        "spec:\n  hosts: [www.example.org]\n  resolution: DNS_ROUND_ROBIN\n"
        "  ports: [{number: 80, name: http, protocol: HTTP}]\n",
        &id, &answers);
    /* STRICT_DNS: one endpoint per address, keeping port, weight, labels and locality */
    const struct keel_cluster *c = cluster(&f, "outbound|443||api.example.com");
    assert_int_equal(c->n_endpoints, 4);
    const struct keel_endpoint *e = endpoint(c, "192.0.2.1");
    assert_string_equal(e->hostport, "192.0.2.1:8443");
    assert_string_equal(e->hostname, "eu.api.example.com");
    assert_false(e->flags & KEEL_EP_DNS);
    assert_int_equal(e->weight, 5);
    assert_string_equal(e->locality, "eu-west/a");
    assert_int_equal(e->n_labels, 1);
    assert_string_equal(endpoint(c, "2001:db8::1")->hostport, "[2001:db8::1]:8443");
    assert_string_equal(endpoint(c, "192.0.2.2")->hostname, "eu.api.example.com");
    assert_null(endpoint(c, "192.0.2.10")->hostname);
    /* NXDOMAIN: no endpoint, listed with its error */
    assert_int_equal(c->n_unresolved, 1);
    assert_string_equal(c->unresolved[0].address, "gone.example.com");
    assert_string_equal(c->unresolved[0].resolve_error, "Domain name not found");
    /* a subset takes the resolved endpoints with its labels */
    c = cluster(&f, "outbound|443|eu|api.example.com");
    assert_int_equal(c->n_endpoints, 3);
    assert_int_equal(c->n_unresolved, 1);
    /* LOGICAL_DNS: the first address only */
    c = cluster(&f, "outbound|80||www.example.org");
    assert_int_equal(c->n_endpoints, 1);
    assert_string_equal(c->endpoints[0].hostport, "198.51.100.7:80");
    assert_string_equal(c->endpoints[0].resolve_error, "Timeout while contacting DNS servers");
    assert_int_equal(c->n_unresolved, 0);
    /* the names needed, answered or not */
    size_t n;
    const char *const *names = keel_snapshot_dns_names(f.snap, &n);
    assert_int_equal(n, 3);
    assert_string_equal(names[0], "eu.api.example.com");
    assert_string_equal(names[1], "gone.example.com");
    assert_string_equal(names[2], "www.example.org");
    /* the dump shows both */
    struct keel_buf out;
    keel_buf_init(&out, 1 << 20);
    assert_int_equal(keel_snapshot_dump_json(f.snap, &out), 0);
    assert_non_null(strstr(keel_buf_cstr(&out), "\"hostname\":\"eu.api.example.com\""));
    assert_non_null(strstr(keel_buf_cstr(&out), "\"resolveError\":\"Domain name not found\""));
    keel_buf_free(&out);
    fx_free(&f);
}

static void test_registry_visibility(void **state)
{
    (void)state;
    struct fx f;
    fx_build(&f,
             "apiVersion: v1\nkind: Service\nmetadata: {name: hidden, namespace: team, "
             "annotations: {networking.istio.io/exportTo: \".\"}}\n"
             "spec:\n  ports: [{port: 80, name: http}]\n"
             "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: dup, namespace: team}\n"
             "spec:\n  hosts: [dup.example.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n"
             "  resolution: DNS\n"
             "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: dup, namespace: default}\n"
             "spec:\n  hosts: [dup.example.com]\n  ports: [{number: 8080, name: http, protocol: HTTP}]\n"
             "  resolution: DNS\n");
    assert_null(keel_snapshot_cluster(f.snap, "outbound|80||hidden.team.svc.cluster.local"));
    /* the proxy's own namespace wins a host defined twice */
    assert_non_null(keel_snapshot_cluster(f.snap, "outbound|8080||dup.example.com"));
    assert_null(keel_snapshot_cluster(f.snap, "outbound|80||dup.example.com"));
    const struct keel_service *s = keel_clusters_service(keel_snapshot_cluster_set(f.snap), "DUP.example.com");
    assert_non_null(s);
    assert_string_equal(s->ns, "default");
    size_t n;
    keel_snapshot_diags(f.snap, &n);
    assert_true(n >= 1);
    fx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subsets_by_labels),
        cmocka_unit_test(test_port_level_replaces),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_mesh_connect_timeout),
        cmocka_unit_test(test_tls_and_hash),
        cmocka_unit_test(test_service_entry_resolutions),
        cmocka_unit_test(test_workload_selector),
        cmocka_unit_test(test_kubernetes_endpoints),
        cmocka_unit_test(test_registry_visibility),
        cmocka_unit_test(test_dns_answers),
        cmocka_unit_test(test_endpoint_hostport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
