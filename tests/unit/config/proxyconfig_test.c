/*
 * proxyconfig_test.c - tests for config/proxyconfig: the effective
 * ProxyConfig of a proxy (MeshConfig defaultConfig < root namespace <
 * namespace < workload selector), concurrency replaced by the highest level
 * that sets it (0 included), environmentVariables merged key by key, the
 * sources listed, and a proxy in the root namespace.
 */
#include "config/proxyconfig.h"

#include "base/arena.h"
#include "config/load.h"
#include "config/resource.h"
#include "config/store.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* clang-format off */
#define PC(name, ns, ts, spec)                                                                                  \
    "---\napiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nmetadata: {name: " name ", namespace: " \
    ns ", creationTimestamp: \"" ts "\"}\nspec:\n" spec
#define MESH(body)                                                                                              \
    "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n" \
    body
/* clang-format on */

struct pfx {
    struct keel_loadset ls;
    struct keel_store *st;
    struct keel_arena *a;
    struct keel_proxyconfig pc;
};

static void resolve(struct pfx *f, const char *yaml, const char *ns, const struct keel_kv_str *labels, size_t n)
{
    memset(f, 0, sizeof(*f));
    keel_loadset_init(&f->ls, NULL);
    assert_int_equal(keel_load_buf(&f->ls, "test.yaml", yaml, strlen(yaml)), 0);
    assert_int_equal(f->ls.invalid, 0);
    f->st = keel_store_build(&f->ls, NULL, NULL);
    f->a = keel_arena_new(1024);
    const struct keel_resource *cm = keel_store_get(f->st, KEEL_KIND_CONFIG_MAP, "istio-system", "istio");
    keel_proxyconfig_resolve(f->st, cm ? cm->mesh : NULL, ns, labels, n, f->a, &f->pc);
}

static void pfx_free(struct pfx *f)
{
    keel_arena_free(f->a);
    keel_store_free(f->st);
    keel_loadset_free(&f->ls);
}

static const char *env(const struct keel_proxyconfig *pc, const char *key, const char **from)
{
    for (size_t i = 0; i < pc->n_env; i++)
        if (strcmp(pc->env[i].key, key) == 0) {
            if (from)
                *from = pc->env[i].from;
            return pc->env[i].value;
        }
    return NULL;
}

static const char *const ALL = MESH("    defaultConfig:\n"
                                    "      concurrency: 4\n"
                                    "      proxyMetadata: {A: mesh, B: mesh, C: mesh}\n")
    PC("root", "istio-system", "2024-01-01T00:00:00Z", "  concurrency: 3\n  environmentVariables: {B: root}\n")
        PC("ns", "prod", "2024-01-01T00:00:00Z", "  concurrency: 2\n  environmentVariables: {C: ns}\n")
            PC("web", "prod", "2024-01-02T00:00:00Z",
               "  selector: {matchLabels: {app: web}}\n  concurrency: 1\n  environmentVariables: {D: web}\n")
                PC("web-newer", "prod", "2024-01-03T00:00:00Z",
                   "  selector: {matchLabels: {app: web}}\n  concurrency: 7\n");

static void test_levels(void **state)
{
    (void)state;
    static const struct keel_kv_str web[] = {{"app", "web"}};
    static const struct keel_kv_str db[] = {{"app", "db"}};
    struct pfx f;
    const char *from = NULL;

    /* workload > namespace > root > MeshConfig; the oldest matching workload ProxyConfig */
    resolve(&f, ALL, "prod", web, N(web));
    assert_true(f.pc.has_concurrency);
    assert_int_equal(f.pc.concurrency, 1);
    assert_string_equal(f.pc.concurrency_from, "ProxyConfig prod/web (workload)");
    assert_string_equal(env(&f.pc, "A", &from), "mesh");
    assert_string_equal(from, "MeshConfig defaultConfig");
    assert_string_equal(env(&f.pc, "B", &from), "root");
    assert_string_equal(env(&f.pc, "C", &from), "ns");
    assert_string_equal(env(&f.pc, "D", &from), "web");
    assert_int_equal(f.pc.n_env, 4);
    assert_string_equal(f.pc.env[0].key, "A"); /* sorted */
    assert_int_equal(f.pc.n_sources, 4);
    assert_string_equal(f.pc.sources[0], "MeshConfig defaultConfig");
    assert_string_equal(f.pc.sources[3], "ProxyConfig prod/web (workload)");
    pfx_free(&f);

    /* no workload match: the namespace's */
    resolve(&f, ALL, "prod", db, N(db));
    assert_int_equal(f.pc.concurrency, 2);
    assert_string_equal(f.pc.concurrency_from, "ProxyConfig prod/ns (namespace)");
    assert_null(env(&f.pc, "D", NULL));
    pfx_free(&f);

    /* a namespace without ProxyConfig: the root namespace's */
    resolve(&f, ALL, "other", web, N(web));
    assert_int_equal(f.pc.concurrency, 3);
    assert_string_equal(f.pc.concurrency_from, "ProxyConfig istio-system/root (root namespace)");
    assert_string_equal(env(&f.pc, "C", NULL), "mesh");
    pfx_free(&f);

    /* a proxy in the root namespace (a gateway): the root ProxyConfig is its namespace's */
    resolve(&f, ALL, "istio-system", NULL, 0);
    assert_int_equal(f.pc.concurrency, 3);
    pfx_free(&f);
}

static void test_mesh_only_and_none(void **state)
{
    (void)state;
    struct pfx f;
    resolve(&f, MESH("    defaultConfig: {concurrency: 4}\n"), "prod", NULL, 0);
    assert_true(f.pc.has_concurrency);
    assert_int_equal(f.pc.concurrency, 4);
    assert_string_equal(f.pc.concurrency_from, "MeshConfig defaultConfig");
    pfx_free(&f);

    resolve(&f, MESH("    accessLogFile: /dev/stdout\n"), "prod", NULL, 0);
    assert_false(f.pc.has_concurrency);
    assert_null(f.pc.concurrency_from);
    assert_int_equal(f.pc.n_env, 0);
    assert_int_equal(f.pc.n_sources, 0);
    pfx_free(&f);
}

static void test_zero_overrides(void **state)
{
    (void)state;
    /* concurrency 0 ("all cores") at a higher level replaces a lower level's value */
    struct pfx f;
    resolve(&f,
            MESH("    defaultConfig: {concurrency: 4}\n")
                PC("ns", "prod", "2024-01-01T00:00:00Z", "  concurrency: 0\n"),
            "prod", NULL, 0);
    assert_true(f.pc.has_concurrency);
    assert_int_equal(f.pc.concurrency, 0);
    assert_string_equal(f.pc.concurrency_from, "ProxyConfig prod/ns (namespace)");
    pfx_free(&f);

    /* a level without concurrency keeps the lower one's; `selector: {}` is neither namespace nor workload level */
    resolve(&f,
            PC("root", "istio-system", "2024-01-01T00:00:00Z", "  concurrency: 5\n")
                PC("ns", "prod", "2024-01-01T00:00:00Z", "  environmentVariables: {X: y}\n")
                    PC("empty-sel", "prod", "2024-01-02T00:00:00Z", "  selector: {}\n  concurrency: 9\n"),
            "prod", NULL, 0);
    assert_int_equal(f.pc.concurrency, 5);
    assert_string_equal(env(&f.pc, "X", NULL), "y");
    pfx_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_mesh_only_and_none),
        cmocka_unit_test(test_zero_overrides),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
