/*
 * load_test.c - tests for config/load (and resource.c): documents to
 * resources. kind: List unrolling, kind/apiVersion resolution and its
 * messages, skipped Kubernetes kinds, metadata rules, default namespace,
 * ConfigMap data.mesh as MeshConfig with relocated locations, resource
 * status and counts, folders.
 */
#include "config/load.h"

#include "base/diag.h"
#include "base/err.h"
#include "config/resource.h"
#include "config/schema_gen.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

static struct keel_loadset LS;

static int setup(void **state)
{
    (void)state;
    keel_loadset_init(&LS, NULL);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    keel_loadset_free(&LS);
    return 0;
}

static void load(const char *yaml)
{
    assert_int_equal(keel_load_buf(&LS, "t.yaml", yaml, strlen(yaml)), 0);
}

static struct keel_resource *res(size_t i)
{
    assert_true(i < keel_loadset_count(&LS));
    return keel_loadset_at(&LS, i);
}

static void dump_diags(void)
{
    for (size_t i = 0; i < keel_diags_count(&LS.diags); i++) {
        const struct keel_diag *g = keel_diags_at(&LS.diags, i);
        print_error("  diag %zu: %s %u:%u [%s %s/%s] %s: %s\n", i, g->sev == KEEL_SEV_ERROR ? "E" : "W", g->loc.line,
                    g->loc.col, g->kind ? g->kind : "-", g->ns ? g->ns : "-", g->name ? g->name : "-",
                    g->path ? g->path : "-", g->msg);
    }
}

static void no_diags(void)
{
    if (keel_diags_count(&LS.diags))
        dump_diags();
    assert_int_equal(keel_diags_count(&LS.diags), 0);
}

static const struct keel_diag *diag_with(const char *part)
{
    for (size_t i = 0; i < keel_diags_count(&LS.diags); i++)
        if (strstr(keel_diags_at(&LS.diags, i)->msg, part))
            return keel_diags_at(&LS.diags, i);
    print_error("no diagnostic contains \"%s\"\n", part);
    dump_diags();
    fail();
    return NULL;
}

static size_t count_with(const char *part)
{
    size_t n = 0;
    for (size_t i = 0; i < keel_diags_count(&LS.diags); i++)
        n += strstr(keel_diags_at(&LS.diags, i)->msg, part) != NULL;
    return n;
}

#define VS_OK(name)                                                                                                  \
    "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: " name "\n"                      \
    "spec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n"

/* ---- envelope and kinds --------------------------------------------------------------- */

static void test_valid_resource(void **state)
{
    (void)state;
    load(VS_OK("reviews"));
    no_diags();
    assert_int_equal(keel_loadset_count(&LS), 1);
    struct keel_resource *r = res(0);
    assert_int_equal(r->status, KEEL_RES_VALID);
    assert_non_null(r->kind);
    assert_int_equal(r->kind->id, KEEL_KIND_VIRTUAL_SERVICE);
    assert_string_equal(r->api_version, "networking.istio.io/v1");
    assert_string_equal(r->kind_name, "VirtualService");
    assert_string_equal(r->meta.name, "reviews");
    assert_string_equal(r->ns, "default");
    assert_non_null(r->body);
    assert_non_null(r->spec);
    const struct keel_virtual_service *vs = r->spec;
    assert_int_equal(vs->n_hosts, 1);
    assert_string_equal(vs->hosts[0], "reviews");
    assert_null(r->mesh);
    assert_int_equal(r->errors, 0);
    assert_int_equal(r->loc.line, 1);
    assert_string_equal(r->loc.file, "t.yaml");
    assert_int_equal(LS.files, 1);
    assert_int_equal(LS.invalid, 0);
    char label[128];
    assert_string_equal(keel_resource_label(r, label, sizeof(label)), "VirtualService default/reviews");
}

static void test_every_served_version(void **state)
{
    (void)state;
    load(VS_OK("a") "---\n" "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata: {name: b}\n"
                    "spec: {hosts: [b]}\n---\n"
                    "apiVersion: networking.istio.io/v1beta1\nkind: VirtualService\nmetadata: {name: c}\n"
                    "spec: {hosts: [c]}\n");
    assert_int_equal(keel_loadset_count(&LS), 3);
    for (size_t i = 0; i < 3; i++) {
        assert_non_null(res(i)->kind);
        assert_int_equal(res(i)->loc.doc, (uint32_t)i);
        assert_int_equal(res(i)->seq, i);
    }
    assert_int_equal(count_with("not served"), 0);
}

static void test_unknown_kind_in_istio_group(void **state)
{
    (void)state;
    load("apiVersion: networking.istio.io/v1\nkind: VirtualServce\nmetadata: {name: x}\nspec: {}\n");
    const struct keel_diag *g = diag_with("unknown kind \"VirtualServce\" for apiVersion networking.istio.io/v1: "
                                          "did you mean \"VirtualService\"? (known: ");
    /* the known kinds are those of the group */
    assert_non_null(strstr(g->msg, "DestinationRule"));
    assert_non_null(strstr(g->msg, "Gateway"));
    assert_null(strstr(g->msg, "AuthorizationPolicy"));
    assert_null(strstr(g->msg, "ConfigMap"));
    assert_string_equal(g->path, "kind");
    assert_int_equal(g->loc.line, 2);
    assert_int_equal(g->loc.col, 7);
    assert_int_equal(res(0)->status, KEEL_RES_INVALID);
    assert_null(res(0)->kind);
    assert_string_equal(res(0)->kind_name, "VirtualServce");
}

static void test_unknown_kind_without_suggestion(void **state)
{
    (void)state;
    load("apiVersion: networking.istio.io/v1\nkind: Frobnicator\nmetadata: {name: x}\n");
    diag_with("unknown kind \"Frobnicator\" for apiVersion networking.istio.io/v1; known kinds: DestinationRule, "
              "EnvoyFilter, Gateway, ProxyConfig, ServiceEntry, Sidecar, VirtualService, WorkloadEntry, "
              "WorkloadGroup");
    assert_int_equal(res(0)->status, KEEL_RES_INVALID);
}

static void test_unknown_istio_group_lists_all_kinds(void **state)
{
    (void)state;
    load("apiVersion: nothing.istio.io/v1\nkind: Frobnicator\n");
    const struct keel_diag *g = diag_with("unknown kind \"Frobnicator\" for apiVersion nothing.istio.io/v1");
    assert_non_null(strstr(g->msg, "VirtualService"));
    assert_non_null(strstr(g->msg, "AuthorizationPolicy"));
}

static void test_unknown_core_kind(void **state)
{
    (void)state;
    load("apiVersion: v1\nkind: Banana\nmetadata: {name: x}\n");
    diag_with("unknown kind \"Banana\" for apiVersion v1");
    assert_int_equal(res(0)->status, KEEL_RES_INVALID);
}

static void test_wrong_version(void **state)
{
    (void)state;
    load("apiVersion: networking.istio.io/v2\nkind: VirtualService\nmetadata: {name: x}\nspec: {}\n");
    const struct keel_diag *g = diag_with("VirtualService is not served as \"networking.istio.io/v2\"; use one of: "
                                          "networking.istio.io/v1, networking.istio.io/v1alpha3, "
                                          "networking.istio.io/v1beta1");
    assert_string_equal(g->path, "apiVersion");
    assert_int_equal(g->loc.line, 1);
    keel_loadset_free(&LS);
    keel_loadset_init(&LS, NULL);
    load("apiVersion: security.istio.io/v1alpha1\nkind: AuthorizationPolicy\nmetadata: {name: x}\nspec: {}\n");
    diag_with("AuthorizationPolicy is not served as \"security.istio.io/v1alpha1\"; use one of: security.istio.io/v1, "
              "security.istio.io/v1beta1");
    keel_loadset_free(&LS);
    keel_loadset_init(&LS, NULL);
    load("apiVersion: v2\nkind: ConfigMap\nmetadata: {name: x}\n");
    diag_with("ConfigMap is not served as \"v2\"; use one of: v1");
}

static void test_wrong_group(void **state)
{
    (void)state;
    load("apiVersion: security.istio.io/v1\nkind: Gateway\nmetadata: {name: x}\nspec: {}\n");
    diag_with("kind Gateway belongs to API group \"networking.istio.io\", not \"security.istio.io\" "
              "(apiVersion networking.istio.io/v1)");
    assert_int_equal(res(0)->status, KEEL_RES_INVALID);
}

static void test_kubernetes_kinds_skipped(void **state)
{
    (void)state;
    load("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa, namespace: ns1}\n---\n"
         "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: ds}\nspec: {anything: [goes]}\n---\n"
         "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: ing}\n---\n"
         "apiVersion: batch/v1\nkind: Job\nmetadata: {name: job}\n---\n"
         "apiVersion: install.istio.io/v1alpha1\nkind: IstioOperator\nmetadata: {name: op}\n");
    no_diags();
    assert_int_equal(keel_loadset_count(&LS), 5);
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(res(i)->status, KEEL_RES_SKIPPED);
        assert_null(res(i)->kind);
        assert_null(res(i)->body);
    }
    assert_string_equal(res(0)->meta.name, "sa");
    assert_string_equal(res(0)->ns, "ns1");
    assert_string_equal(res(1)->kind_name, "DaemonSet");
    assert_int_equal(LS.skipped, 5);
    assert_int_equal(LS.invalid, 0);
}

static void test_foreign_kind_skipped_with_warning(void **state)
{
    (void)state;
    load("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {whatever: 1}\n");
    assert_int_equal(keel_diags_count(&LS.diags), 1);
    const struct keel_diag *g = diag_with("kind Widget (apiVersion example.com/v1) is not a kind Keel reads");
    assert_int_equal(g->sev, KEEL_SEV_WARNING);
    assert_int_equal(res(0)->status, KEEL_RES_SKIPPED);
    assert_int_equal(res(0)->warnings, 1);
    assert_int_equal(LS.skipped, 1);
}

static void test_missing_or_bad_envelope(void **state)
{
    (void)state;
    load("metadata: {name: x}\n---\napiVersion: 1\nkind: [Service]\n---\n- a\n---\nplain text\n");
    assert_int_equal(keel_loadset_count(&LS), 4);
    diag_with("missing required field \"apiVersion\"");
    diag_with("missing required field \"kind\"");
    diag_with("expected string, got integer");
    diag_with("expected string, got list");
    assert_int_equal(count_with("expected a Kubernetes object (a mapping with apiVersion, kind, metadata and spec), "
                                "got "),
                     2);
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(res(i)->status, KEEL_RES_INVALID);
    assert_int_equal(res(0)->errors, 2);
    assert_int_equal(LS.invalid, 4);
}

static void test_missing_spec_and_unknown_top_level_field(void **state)
{
    (void)state;
    load("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: x}\nspecs: {hosts: [a]}\n");
    const struct keel_diag *g = diag_with("unknown field \"specs\": did you mean \"spec\"?");
    assert_string_equal(g->path, "specs");
    assert_int_equal(g->loc.line, 4);
    g = diag_with("missing required field \"spec\"");
    assert_string_equal(g->path, "spec");
    assert_null(res(0)->spec);
    assert_int_equal(res(0)->status, KEEL_RES_INVALID);
}

static void test_spec_errors_are_stamped(void **state)
{
    (void)state;
    load(VS_OK("ok") "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: bad\n"
                     "  namespace: prod\nspec:\n  hosts: [a]\n  http:\n  - route: [{destination: {host: a}}]\n"
                     "    retries: {attempt: 3}\n");
    const struct keel_diag *g = diag_with("unknown field \"attempt\": did you mean \"attempts\"?");
    assert_string_equal(g->path, "spec.http[0].retries.attempt");
    assert_string_equal(g->kind, "VirtualService");
    assert_string_equal(g->ns, "prod");
    assert_string_equal(g->name, "bad");
    assert_string_equal(g->loc.file, "t.yaml");
    assert_int_equal(g->loc.doc, 1);
    assert_int_equal(g->loc.line, 20);
    assert_int_equal(res(0)->status, KEEL_RES_VALID);
    assert_int_equal(res(1)->status, KEEL_RES_INVALID);
    assert_int_equal(res(1)->errors, 1);
    assert_string_equal(res(1)->ns, "prod");
}

static void test_kind_lookup(void **state)
{
    (void)state;
    const struct keel_kind_desc *k = keel_kind_find("VirtualService");
    assert_non_null(k);
    assert_int_equal(k->id, KEEL_KIND_VIRTUAL_SERVICE);
    assert_string_equal(k->group, "networking.istio.io");
    assert_string_equal(k->versions[0], "v1");
    assert_null(keel_kind_find("virtualservice"));
    assert_null(keel_kind_find(""));
    assert_ptr_equal(keel_kind_by_id(KEEL_KIND_VIRTUAL_SERVICE), k);
    assert_string_equal(keel_kind_by_id(KEEL_KIND_CONFIG_MAP)->kind, "ConfigMap");
    assert_null(keel_kind_by_id(KEEL_KIND_NONE));
    assert_null(keel_kind_by_id(KEEL_KIND__COUNT));
    for (int id = KEEL_KIND_NONE + 1; id < KEEL_KIND__COUNT; id++) {
        const struct keel_kind_desc *d = keel_kind_by_id(id);
        assert_non_null(d);
        assert_ptr_equal(keel_kind_find(d->kind), d);
        assert_non_null(d->body);
        assert_non_null(d->versions[0]);
    }
}

/* ---- List -------------------------------------------------------------------------- */

static void test_list_is_unrolled(void **state)
{
    (void)state;
    load("apiVersion: v1\nkind: List\nitems:\n"
         "- apiVersion: networking.istio.io/v1\n  kind: DestinationRule\n  metadata: {name: dr}\n"
         "  spec: {host: reviews}\n"
         "- apiVersion: v1\n  kind: ServiceAccount\n  metadata: {name: sa}\n"
         "- apiVersion: v1\n  kind: Namespace\n  metadata: {name: team-a}\n");
    no_diags();
    assert_int_equal(keel_loadset_count(&LS), 3);
    assert_int_equal(res(0)->kind->id, KEEL_KIND_DESTINATION_RULE);
    assert_int_equal(res(0)->loc.line, 4);
    assert_int_equal(res(0)->loc.doc, 0);
    assert_int_equal(res(1)->status, KEEL_RES_SKIPPED);
    assert_int_equal(res(2)->kind->id, KEEL_KIND_NAMESPACE);
    assert_null(res(2)->ns); /* cluster-scoped: no default namespace */
    assert_int_equal(res(2)->loc.line, 11);
    char label[64];
    assert_string_equal(keel_resource_label(res(2), label, sizeof(label)), "Namespace team-a");
}

static void test_list_edge_cases(void **state)
{
    (void)state;
    load("apiVersion: v1\nkind: List\nitems: []\n---\napiVersion: v1\nkind: List\n---\n"
         "apiVersion: v1\nkind: List\nitems: {a: b}\n");
    /* an empty List holds nothing; a List without items is one invalid resource each */
    assert_int_equal(keel_loadset_count(&LS), 2);
    assert_int_equal(count_with("a List needs an \"items\" list"), 2);
    assert_string_equal(res(0)->kind_name, "List");
    assert_int_equal(res(0)->status, KEEL_RES_INVALID);
    assert_int_equal(res(0)->loc.doc, 1);
    assert_int_equal(res(1)->loc.doc, 2);
}

static void test_nested_list_is_not_unrolled(void **state)
{
    (void)state;
    load("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: List\n  items:\n"
         "  - apiVersion: v1\n    kind: Namespace\n    metadata: {name: inner}\n");
    assert_int_equal(keel_loadset_count(&LS), 1);
    diag_with("unknown kind \"List\" for apiVersion v1");
}

/* ---- metadata --------------------------------------------------------------------------- */

static void test_metadata_name_rules(void **state)
{
    (void)state;
    char long_name[300];
    memset(long_name, 'a', 260);
    long_name[260] = '\0';
    char doc[1024];
    snprintf(doc, sizeof(doc),
             "apiVersion: v1\nkind: Namespace\n---\n"
             "apiVersion: v1\nkind: Namespace\nmetadata: {labels: {a: b}}\n---\n"
             "apiVersion: v1\nkind: Namespace\nmetadata: {generateName: gen-}\n---\n"
             "apiVersion: v1\nkind: Namespace\nmetadata: {name: \"\"}\n---\n"
             "apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n",
             long_name);
    load(doc);
    assert_int_equal(keel_loadset_count(&LS), 5);
    assert_int_equal(count_with("missing required field \"name\""), 2);
    const struct keel_diag *g = diag_with("missing required field \"name\"");
    assert_string_equal(g->path, "metadata.name");
    assert_int_equal(res(0)->status, KEEL_RES_INVALID);
    assert_int_equal(res(1)->status, KEEL_RES_INVALID);
    assert_int_equal(res(2)->status, KEEL_RES_VALID); /* generateName is enough */
    assert_int_equal(res(3)->status, KEEL_RES_INVALID);
    assert_int_equal(res(4)->status, KEEL_RES_INVALID);
    assert_int_equal(count_with("invalid name \""), 2);
    g = diag_with("invalid name \"aaaa");
    assert_non_null(strstr(g->msg, "...\"")); /* long names are clipped in messages */
    assert_string_equal(g->path, "metadata.name");
    assert_int_equal(g->loc.line, 18);
}

static void test_metadata_namespace_and_labels(void **state)
{
    (void)state;
    load("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: dr\n  namespace: Bad_NS\n"
         "  labels: {\"\": x}\nspec: {host: a}\n");
    const struct keel_diag *g = diag_with("invalid namespace \"Bad_NS\"");
    assert_string_equal(g->path, "metadata.namespace");
    assert_int_equal(g->loc.line, 5);
    diag_with("invalid label key");
    assert_int_equal(res(0)->status, KEEL_RES_INVALID);
}

static void test_metadata_type_errors(void **state)
{
    (void)state;
    load("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: 42\n  labels: [a]\n  nmae: x\n");
    diag_with("expected string, got integer 42 (quote it to make it a string)");
    diag_with("expected object (a map of names to values), got list");
    const struct keel_diag *g = diag_with("unknown field \"nmae\": did you mean \"name\"?");
    assert_string_equal(g->path, "metadata.nmae");
}

static void test_default_namespace(void **state)
{
    (void)state;
    load(VS_OK("a"));
    assert_string_equal(res(0)->ns, "default");
    keel_loadset_free(&LS);
    keel_loadset_init(&LS, "prod");
    load(VS_OK("a") "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
                    "metadata: {name: b, namespace: explicit}\nspec: {hosts: [b]}\n");
    assert_string_equal(res(0)->ns, "prod");
    assert_string_equal(res(1)->ns, "explicit");
    char label[64];
    assert_string_equal(keel_resource_label(res(0), label, sizeof(label)), "VirtualService prod/a");
}

/* ---- ConfigMap data.mesh ------------------------------------------------------------------ */

static void test_configmap_mesh_decoded(void **state)
{
    (void)state;
    load("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n"
         "  mesh: |-\n    accessLogFile: /dev/stdout\n    enableTracing: true\n    defaultConfig:\n"
         "      discoveryAddress: istiod.istio-system.svc:15012\n  meshNetworks: 'networks: {}'\n");
    no_diags();
    struct keel_resource *r = res(0);
    assert_int_equal(r->kind->id, KEEL_KIND_CONFIG_MAP);
    assert_non_null(r->mesh);
    const struct keel_mesh_config *m = r->mesh;
    assert_string_equal(m->access_log_file, "/dev/stdout");
    assert_true(m->enable_tracing);
    assert_null(r->spec);
    assert_int_equal(r->status, KEEL_RES_VALID);
}

static void test_configmap_mesh_errors_relocated(void **state)
{
    (void)state;
    load("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n"
         "  mesh: |-\n    accessLogFile: /dev/stdout\n    enableTracng: true\n");
    const struct keel_diag *g = diag_with("unknown field \"enableTracng\": did you mean \"enableTracing\"?");
    assert_string_equal(g->path, "data.mesh.enableTracng");
    assert_string_equal(g->loc.file, "t.yaml");
    assert_int_equal(g->loc.line, 9); /* the line in the file, not in the block */
    assert_int_equal(g->loc.col, 5);
    assert_string_equal(g->kind, "ConfigMap");
    assert_string_equal(g->name, "istio");
    assert_int_equal(res(0)->status, KEEL_RES_INVALID);
}

static void test_configmap_mesh_syntax_error_relocated(void **state)
{
    (void)state;
    load("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio}\ndata:\n  mesh: |\n    a: 1\n    b: [1, 2\n"
         "  other: x\n");
    const struct keel_diag *g = diag_with("YAML syntax error");
    assert_string_equal(g->path, "data.mesh");
    assert_true(g->loc.line >= 7);
    assert_int_equal(res(0)->status, KEEL_RES_INVALID);
    assert_null(res(0)->mesh);
}

static void test_configmap_mesh_in_flow_scalar(void **state)
{
    (void)state;
    /* a flow scalar's text starts on its own line, at its own column */
    load("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio}\ndata:\n  mesh: \"enableTracng: true\"\n");
    const struct keel_diag *g = diag_with("unknown field \"enableTracng\"");
    assert_int_equal(g->loc.line, 5);
}

static void test_configmap_mesh_aliases_relocated_once(void **state)
{
    (void)state;
    /* relocate() walks the tree as if it were a tree; aliased (shared)
     * nodes are shifted once per use */
    load("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio}\ndata:\n  mesh: |-\n"
         "    defaultServiceExportTo: &e [7]\n    defaultVirtualServiceExportTo: *e\n");
    assert_int_equal(count_with("expected string, got integer 7"), 2);
    for (size_t i = 0; i < keel_diags_count(&LS.diags); i++)
        assert_int_equal(keel_diags_at(&LS.diags, i)->loc.line, 6);
}

static void test_configmap_not_named_istio(void **state)
{
    (void)state;
    load("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: my-mesh}\ndata:\n  mesh: 'enableTracing: false'\n"
         "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio-1-22}\ndata:\n  mesh: 'enableTracing: false'\n"
         "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: plain}\ndata:\n  key: value\n");
    assert_int_equal(keel_diags_count(&LS.diags), 1);
    const struct keel_diag *g = diag_with("Istio reads mesh config only from the ConfigMap named \"istio\"");
    assert_int_equal(g->sev, KEEL_SEV_WARNING);
    assert_string_equal(g->name, "my-mesh");
    assert_int_equal(res(0)->status, KEEL_RES_VALID);
    assert_int_equal(res(0)->warnings, 1);
    assert_non_null(res(1)->mesh);
    assert_null(res(2)->mesh);
}

/* ---- streams, statuses and counts ------------------------------------------------------------ */

static void test_status_counts(void **state)
{
    (void)state;
    load(VS_OK("good") "---\n"
         "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bad}\nspec: {hots: [a]}\n---\n"
         "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa}\n---\n"
         "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n---\n"
         "apiVersion: v1\nkind: Namespace\nmetadata: {name: x\n");
    assert_int_equal(keel_loadset_count(&LS), 5);
    assert_int_equal(res(0)->status, KEEL_RES_VALID);
    assert_int_equal(res(1)->status, KEEL_RES_INVALID);
    assert_int_equal(res(2)->status, KEEL_RES_SKIPPED);
    assert_int_equal(res(3)->status, KEEL_RES_INVALID); /* duplicate key: reported, first value kept */
    assert_non_null(res(3)->node);
    assert_int_equal(res(3)->errors, 1);
    assert_string_equal(res(3)->meta.name, "a");
    assert_int_equal(res(4)->status, KEEL_RES_INVALID); /* syntax error */
    assert_int_equal(res(4)->errors, 1);
    assert_int_equal(LS.invalid, 3);
    assert_int_equal(LS.skipped, 1);
    assert_true(LS.diags.errors >= 4);
    size_t sum = 0;
    for (size_t i = 0; i < keel_loadset_count(&LS); i++)
        sum += res(i)->errors;
    assert_int_equal(sum, LS.diags.errors);
    diag_with("duplicate key \"name\" (first defined at line 23)");
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(res(i)->seq, i);
}

static void test_several_buffers(void **state)
{
    (void)state;
    assert_int_equal(keel_load_buf(&LS, "a.yaml", VS_OK("a"), strlen(VS_OK("a"))), 0);
    assert_int_equal(keel_load_buf(&LS, "b.yaml", "kind: [", 7), 0);
    assert_int_equal(keel_load_buf(&LS, "c.yaml", "", 0), 0);
    assert_int_equal(LS.files, 3);
    assert_int_equal(keel_loadset_count(&LS), 2);
    assert_string_equal(res(0)->loc.file, "a.yaml");
    assert_string_equal(res(1)->loc.file, "b.yaml");
    assert_string_equal(keel_diags_at(&LS.diags, 0)->loc.file, "b.yaml");
}

static void test_json_resources(void **state)
{
    (void)state;
    load("{\"apiVersion\": \"security.istio.io/v1\", \"kind\": \"PeerAuthentication\",\n"
         " \"metadata\": {\"name\": \"default\", \"namespace\": \"istio-system\"},\n"
         " \"spec\": {\"mtls\": {\"mode\": \"STRICTT\"}}}\n");
    const struct keel_diag *g = diag_with("\"STRICTT\": did you mean \"STRICT\"?");
    assert_int_equal(g->loc.line, 3);
    assert_string_equal(g->path, "spec.mtls.mode");
    assert_string_equal(g->ns, "istio-system");
}

static void test_alias_bomb_is_one_invalid_resource(void **state)
{
    (void)state;
    char doc[2048];
    size_t n = (size_t)snprintf(doc, sizeof(doc), "a: &a [x,x,x,x,x,x,x,x,x,x]\n");
    for (char c = 'b'; c <= 'j'; c++)
        n += (size_t)snprintf(doc + n, sizeof(doc) - n, "%c: &%c [*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c,*%c]\n", c, c,
                              c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1, c - 1);
    load(doc);
    assert_int_equal(keel_loadset_count(&LS), 1);
    assert_int_equal(res(0)->status, KEEL_RES_INVALID);
    diag_with("document too large");
}

/* ---- files and folders ------------------------------------------------------------------------- */

static void write_file(const char *dir, const char *name, const char *body)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(body, fp);
    fclose(fp);
}

static void test_load_path_folder(void **state)
{
    (void)state;
    char dir[] = "/tmp/keel-load-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char sub[600];
    snprintf(sub, sizeof(sub), "%s/sub", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    write_file(dir, "b.yaml", VS_OK("b"));
    write_file(dir, "a.yml", VS_OK("a"));
    write_file(dir, "c.json", "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"c\"}}");
    write_file(dir, "d.txt", VS_OK("ignored"));
    write_file(dir, ".hidden.yaml", VS_OK("hidden"));
    write_file(sub, "e.yaml", VS_OK("e"));
    assert_int_equal(keel_load_path(&LS, dir), 0);
    no_diags();
    assert_int_equal(keel_loadset_count(&LS), 4);
    /* name order, folders recursively */
    assert_string_equal(res(0)->meta.name, "a");
    assert_string_equal(res(1)->meta.name, "b");
    assert_string_equal(res(2)->meta.name, "c");
    assert_string_equal(res(3)->meta.name, "e");
    assert_non_null(strstr(res(3)->loc.file, "/sub/e.yaml"));
    assert_int_equal(LS.files, 4);
    /* a single file is read whatever its suffix */
    char txt[600];
    snprintf(txt, sizeof(txt), "%s/d.txt", dir);
    assert_int_equal(keel_load_path(&LS, txt), 0);
    assert_int_equal(keel_loadset_count(&LS), 5);
    assert_string_equal(res(4)->meta.name, "ignored");
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_load_path_missing(void **state)
{
    (void)state;
    assert_int_equal(keel_load_path(&LS, "/nonexistent/keel/dir"), KEEL_ENOENT);
    const struct keel_diag *g = diag_with("cannot read");
    assert_string_equal(g->loc.file, "/nonexistent/keel/dir");
    assert_int_equal(keel_loadset_count(&LS), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_valid_resource),
        T(test_every_served_version),
        T(test_unknown_kind_in_istio_group),
        T(test_unknown_kind_without_suggestion),
        T(test_unknown_istio_group_lists_all_kinds),
        T(test_unknown_core_kind),
        T(test_wrong_version),
        T(test_wrong_group),
        T(test_kubernetes_kinds_skipped),
        T(test_foreign_kind_skipped_with_warning),
        T(test_missing_or_bad_envelope),
        T(test_missing_spec_and_unknown_top_level_field),
        T(test_spec_errors_are_stamped),
        T(test_kind_lookup),
        T(test_list_is_unrolled),
        T(test_list_edge_cases),
        T(test_nested_list_is_not_unrolled),
        T(test_metadata_name_rules),
        T(test_metadata_namespace_and_labels),
        T(test_metadata_type_errors),
        T(test_default_namespace),
        T(test_configmap_mesh_decoded),
        T(test_configmap_mesh_errors_relocated),
        T(test_configmap_mesh_syntax_error_relocated),
        T(test_configmap_mesh_in_flow_scalar),
        T(test_configmap_mesh_aliases_relocated_once),
        T(test_configmap_not_named_istio),
        T(test_status_counts),
        T(test_several_buffers),
        T(test_json_resources),
        T(test_alias_bomb_is_one_invalid_resource),
        T(test_load_path_folder),
        T(test_load_path_missing),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
