/*
 * store_test.c - tests for config/store, each built from YAML with
 * keel_load_buf(): only valid resources enter, duplicates replace, Istio's
 * oldest-wins order, generations across rebuilds, exportTo (`.` vs names vs
 * `*` vs `~`, MeshConfig defaults, Service annotation), the three
 * DestinationRule tiers (workloadSelector, most specific host per tier,
 * exported-to checks, Istio's no-fallback quirks, merge order), Sidecar
 * selection, and root-namespace policy selection per kind.
 */
#include "config/store.h"

#include "config/load.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- fixtures -------------------------------------------------------------------- */

static void load(struct keel_loadset *ls, const char *yaml, bool expect_valid)
{
    keel_loadset_init(ls, NULL);
    assert_int_equal(keel_load_buf(ls, "test.yaml", yaml, strlen(yaml)), 0);
    if (expect_valid && ls->invalid) {
        for (size_t i = 0; i < keel_diags_count(&ls->diags); i++) {
            const struct keel_diag *d = keel_diags_at(&ls->diags, i);
            fprintf(stderr, "%u:%u: %s: %s\n", d->loc.line, d->loc.col, d->path ? d->path : "", d->msg);
        }
        fail_msg("test YAML has %zu invalid resources", ls->invalid);
    }
}

static struct keel_store *build(struct keel_loadset *ls, const char *yaml, const struct keel_mesh_defaults *md)
{
    load(ls, yaml, true);
    return keel_store_build(ls, md, NULL);
}

static const char *name_of(const struct keel_resource *r)
{
    return r ? r->meta.name : "(null)";
}

/* names of a list joined with spaces, for compact assertions */
static const char *names(const struct keel_resource *const *v, size_t n, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? " " : "", v[i]->meta.name);
    return buf;
}

/* clang-format off */
#define VS(name, ns, extra)                                                                                      \
    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: " name ", namespace: " ns \
    "}\nspec:\n  hosts: [" name ".example.com]\n" extra "  http: [{route: [{destination: {host: x}}]}]\n"

#define DR(name, ns, host, extra)                                                                                \
    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: " name ", namespace: " ns \
    "}\nspec:\n  host: \"" host "\"\n" extra

#define DR_TS(name, ns, ts, host, extra)                                                                         \
    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: " name ", namespace: " ns \
    ", creationTimestamp: \"" ts "\"}\nspec:\n  host: \"" host "\"\n" extra

#define SERVICE(name, ns, meta_extra)                                                                            \
    "---\napiVersion: v1\nkind: Service\nmetadata: {name: " name ", namespace: " ns meta_extra                  \
    "}\nspec:\n  ports: [{port: 80, name: http}]\n"
/* clang-format on */

/* ---- building ----------------------------------------------------------------------- */

static void test_only_valid_resources(void **state)
{
    (void)state;
    struct keel_loadset ls;
    load(&ls,
         VS("good", "prod", "")
         /* invalid: unknown field */
         "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bad, namespace: prod}\n"
         "spec:\n  hosts: [bad.example.com]\n  bogusField: 1\n  http: [{route: [{destination: {host: x}}]}]\n"
         "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n"
         "---\napiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: rs, namespace: prod}\n"
         "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
         "spec:\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n",
         false);
    assert_int_equal(ls.invalid, 1);
    size_t diags_before = keel_diags_count(&ls.diags);
    struct keel_store *s = keel_store_build(&ls, NULL, NULL);

    size_t n;
    keel_store_list(s, KEEL_KIND_VIRTUAL_SERVICE, &n);
    assert_int_equal(n, 1);
    assert_non_null(keel_store_get(s, KEEL_KIND_VIRTUAL_SERVICE, "prod", "good"));
    assert_null(keel_store_get(s, KEEL_KIND_VIRTUAL_SERVICE, "prod", "bad"));
    assert_null(keel_store_get(s, KEEL_KIND_VIRTUAL_SERVICE, "default", "good"));
    assert_null(keel_store_get(s, KEEL_KIND_DESTINATION_RULE, "prod", "good"));
    /* cluster-scoped: namespace NULL */
    assert_non_null(keel_store_get(s, KEEL_KIND_NAMESPACE, NULL, "prod"));
    /* resources without a namespace get the loadset's default */
    assert_non_null(keel_store_get(s, KEEL_KIND_GATEWAY, "default", "gw"));
    keel_store_list_ns(s, KEEL_KIND_GATEWAY, "default", &n);
    assert_int_equal(n, 1);
    keel_store_list_ns(s, KEEL_KIND_GATEWAY, "prod", &n);
    assert_int_equal(n, 0);
    keel_store_list(s, KEEL_KIND_NONE, &n);
    assert_int_equal(n, 0);
    /* the invalid resource's diagnostics stay in the loadset, untouched */
    assert_int_equal(keel_diags_count(&ls.diags), diags_before);
    assert_int_equal(keel_diags_count(keel_store_diags(s)), 0);
    assert_int_equal(keel_store_generation(s), 1);
    /* defaults */
    const struct keel_mesh_defaults *md = keel_store_mesh_defaults(s);
    assert_string_equal(md->root_ns, "istio-system");
    assert_string_equal(md->domain, "cluster.local");
    assert_int_equal(md->n_default_vs_export_to, 1);
    assert_string_equal(md->default_vs_export_to[0], "*");
    keel_store_free(s);
    keel_loadset_free(&ls);
}

static void test_duplicate_key_last_wins(void **state)
{
    (void)state;
    struct keel_loadset ls;
    struct keel_store *s = build(&ls,
                                 DR("dup", "prod", "a.example.com", "") DR("other", "prod", "b.example.com", "")
                                     DR("dup", "prod", "c.example.com", ""),
                                 NULL);
    size_t n;
    const struct keel_resource *const *v = keel_store_list(s, KEEL_KIND_DESTINATION_RULE, &n);
    assert_int_equal(n, 2);
    const struct keel_resource *r = keel_store_get(s, KEEL_KIND_DESTINATION_RULE, "prod", "dup");
    assert_string_equal(((const struct keel_destination_rule *)r->spec)->host, "c.example.com");
    /* order: the replacing document keeps its own reading position */
    char buf[128];
    assert_string_equal(names(v, n, buf, sizeof(buf)), "other dup");
    const struct keel_diags *d = keel_store_diags(s);
    assert_int_equal(d->warnings, 1);
    assert_non_null(strstr(keel_diags_at(d, 0)->msg, "defined more than once"));
    assert_string_equal(keel_diags_at(d, 0)->name, "dup");
    keel_store_free(s);
    keel_loadset_free(&ls);
}

static void test_oldest_wins_order(void **state)
{
    (void)state;
    struct keel_loadset ls;
    /* clang-format off */
    struct keel_store *s = build(&ls,
                                 DR("no-ts-1", "a", "h1.example.com", "")
                                 DR_TS("new", "a", "2024-05-01T00:00:00Z", "h2.example.com", "")
                                 DR_TS("old", "b", "2023-01-01T10:00:00+02:00", "h3.example.com", "")
                                 DR_TS("same-b", "z", "2024-01-01T00:00:00Z", "h4.example.com", "")
                                 DR_TS("same-a", "z", "2024-01-01T00:00:00Z", "h5.example.com", "")
                                 DR_TS("same-ns", "y", "2024-01-01T00:00:00Z", "h6.example.com", "")
                                 DR_TS("frac", "a", "2024-01-01T00:00:00.5Z", "h7.example.com", "")
                                 DR("no-ts-2", "a", "h8.example.com", "")
                                 DR_TS("bad-ts", "a", "yesterday", "h9.example.com", ""),
                                 NULL);
    /* clang-format on */
    size_t n;
    const struct keel_resource *const *v = keel_store_list(s, KEEL_KIND_DESTINATION_RULE, &n);
    char buf[256];
    /* timestamped by time (offsets honoured, then ns, then name), then the rest in reading order */
    assert_string_equal(names(v, n, buf, sizeof(buf)), "old same-ns same-a same-b frac new no-ts-1 no-ts-2 bad-ts");
    v = keel_store_list_ns(s, KEEL_KIND_DESTINATION_RULE, "a", &n);
    assert_string_equal(names(v, n, buf, sizeof(buf)), "frac new no-ts-1 no-ts-2 bad-ts");
    keel_store_free(s);
    keel_loadset_free(&ls);
}

static void test_generations(void **state)
{
    (void)state;
    const char *v1 = DR("a", "prod", "a.example.com", "  exportTo: ['*']\n  trafficPolicy: {tls: {mode: SIMPLE}}\n")
        DR("b", "prod", "b.example.com", "") DR("c", "prod", "c.example.com", "");
    /* a: same content, keys reordered; b: changed; c: removed; d: added */
    const char *v2 = DR("a", "prod", "a.example.com", "  trafficPolicy: {tls: {mode: SIMPLE}}\n  exportTo: ['*']\n")
        DR("b", "prod", "b.example.com", "  exportTo: ['.']\n") DR("d", "prod", "d.example.com", "");
    struct keel_loadset ls1, ls1b, ls2, ls3;
    struct keel_store *s1 = build(&ls1, v1, NULL);
    assert_int_equal(keel_store_generation(s1), 1);

    /* identical rebuild: generation unchanged */
    load(&ls1b, v1, true);
    struct keel_store *s1b = keel_store_build(&ls1b, NULL, s1);
    assert_int_equal(keel_store_generation(s1b), 1);
    assert_int_equal(keel_store_removed(s1b), 0);
    keel_store_free(s1);

    load(&ls2, v2, true);
    struct keel_store *s2 = keel_store_build(&ls2, NULL, s1b);
    keel_store_free(s1b);
    keel_loadset_free(&ls1);
    keel_loadset_free(&ls1b); /* prev's loadset may go once the new store is built */
    assert_int_equal(keel_store_generation(s2), 2);
    assert_int_equal(keel_store_removed(s2), 1);
    assert_int_equal(keel_store_changed_at(s2, keel_store_get(s2, KEEL_KIND_DESTINATION_RULE, "prod", "a")), 1);
    assert_int_equal(keel_store_changed_at(s2, keel_store_get(s2, KEEL_KIND_DESTINATION_RULE, "prod", "b")), 2);
    assert_int_equal(keel_store_changed_at(s2, keel_store_get(s2, KEEL_KIND_DESTINATION_RULE, "prod", "d")), 2);
    assert_null(keel_store_get(s2, KEEL_KIND_DESTINATION_RULE, "prod", "c"));

    /* only the mesh defaults change: new generation, resources keep theirs */
    const char *dot[] = {"."};
    struct keel_mesh_defaults md = {0};
    md.default_dr_export_to = dot;
    md.n_default_dr_export_to = 1;
    load(&ls3, v2, true);
    struct keel_store *s3 = keel_store_build(&ls3, &md, s2);
    assert_int_equal(keel_store_generation(s3), 3);
    assert_int_equal(keel_store_changed_at(s3, keel_store_get(s3, KEEL_KIND_DESTINATION_RULE, "prod", "b")), 2);
    /* a resource from another store is not "in" this one */
    assert_int_equal(keel_store_changed_at(s3, keel_store_get(s2, KEEL_KIND_DESTINATION_RULE, "prod", "b")), 0);
    keel_store_free(s2);
    keel_store_free(s3);
    keel_loadset_free(&ls2);
    keel_loadset_free(&ls3);
}

/* ---- exportTo -------------------------------------------------------------------- */

static bool vis(const struct keel_store *s, enum keel_kind k, const char *ns, const char *name, const char *from)
{
    const struct keel_resource *r = keel_store_get(s, k, ns, name);
    assert_non_null(r);
    return keel_store_visible(s, r, from);
}

/* clang-format off */
static const char *const export_yaml =
    VS("vs-dot", "prod", "  exportTo: ['.']\n")
    VS("vs-names", "prod", "  exportTo: [web, prod]\n")
    VS("vs-star", "prod", "  exportTo: ['*']\n")
    VS("vs-default", "prod", "")
    DR("dr-sel", "prod", "r.example.com", "  workloadSelector: {matchLabels: {app: web}}\n")
    DR("dr-default", "prod", "d.example.com", "")
    DR("dr-names", "prod", "n.example.com", "  exportTo: [web]\n")
    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se-none, namespace: prod}\n"
    "spec:\n  hosts: [api.example.com]\n  exportTo: ['~']\n  ports: [{number: 443, name: tls, protocol: TLS}]\n"
    "  resolution: DNS\n"
    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: se-default, namespace: prod}\n"
    "spec:\n  hosts: [api2.example.com]\n  ports: [{number: 443, name: tls, protocol: TLS}]\n  resolution: DNS\n"
    SERVICE("svc-annot", "prod", ", annotations: {networking.istio.io/exportTo: ' ., web '}")
    SERVICE("svc-none", "prod", ", annotations: {networking.istio.io/exportTo: '~'}")
    SERVICE("svc-plain", "prod", "")
    "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: prod}\n"
    "spec:\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ['*']}]\n";
/* clang-format on */

static void test_visible_export_to(void **state)
{
    (void)state;
    struct keel_loadset ls;
    struct keel_store *s = build(&ls, export_yaml, NULL);
    enum keel_kind VSK = KEEL_KIND_VIRTUAL_SERVICE, DRK = KEEL_KIND_DESTINATION_RULE, SEK = KEEL_KIND_SERVICE_ENTRY,
                   SVK = KEEL_KIND_SERVICE;
    /* `.`: own namespace only */
    assert_true(vis(s, VSK, "prod", "vs-dot", "prod"));
    assert_false(vis(s, VSK, "prod", "vs-dot", "web"));
    /* names: exactly those namespaces (own name = `.`) */
    assert_true(vis(s, VSK, "prod", "vs-names", "web"));
    assert_true(vis(s, VSK, "prod", "vs-names", "prod"));
    assert_false(vis(s, VSK, "prod", "vs-names", "other"));
    /* `*` and the default (`*`): everyone */
    assert_true(vis(s, VSK, "prod", "vs-star", "other"));
    assert_true(vis(s, VSK, "prod", "vs-default", "other"));
    /* DR with workloadSelector: own namespace only */
    assert_true(vis(s, DRK, "prod", "dr-sel", "prod"));
    assert_false(vis(s, DRK, "prod", "dr-sel", "web"));
    assert_true(vis(s, DRK, "prod", "dr-default", "other"));
    assert_true(vis(s, DRK, "prod", "dr-names", "web"));
    assert_false(vis(s, DRK, "prod", "dr-names", "prod")); /* not even its own namespace */
    /* `~`: nobody, not even its own namespace */
    assert_false(vis(s, SEK, "prod", "se-none", "prod"));
    assert_false(vis(s, SEK, "prod", "se-none", "web"));
    assert_true(vis(s, SEK, "prod", "se-default", "web"));
    /* Service: the networking.istio.io/exportTo annotation, comma-separated */
    assert_true(vis(s, SVK, "prod", "svc-annot", "prod"));
    assert_true(vis(s, SVK, "prod", "svc-annot", "web"));
    assert_false(vis(s, SVK, "prod", "svc-annot", "other"));
    assert_false(vis(s, SVK, "prod", "svc-none", "prod"));
    assert_true(vis(s, SVK, "prod", "svc-plain", "other"));
    /* kinds without exportTo */
    assert_true(vis(s, KEEL_KIND_GATEWAY, "prod", "gw", "other"));
    keel_store_free(s);
    keel_loadset_free(&ls);

    /* MeshConfig defaults: `.` makes unexported resources private */
    const char *dot[] = {"."}, *names_only[] = {"web"};
    struct keel_mesh_defaults md = {0};
    md.default_vs_export_to = dot;
    md.n_default_vs_export_to = 1;
    md.default_dr_export_to = dot;
    md.n_default_dr_export_to = 1;
    md.default_service_export_to = names_only; /* istiod honours only `.` and `*` here */
    md.n_default_service_export_to = 1;
    s = build(&ls, export_yaml, &md);
    assert_true(vis(s, VSK, "prod", "vs-default", "prod"));
    assert_false(vis(s, VSK, "prod", "vs-default", "other"));
    assert_true(vis(s, VSK, "prod", "vs-star", "other")); /* explicit exportTo ignores the default */
    assert_true(vis(s, DRK, "prod", "dr-default", "prod"));
    assert_false(vis(s, DRK, "prod", "dr-default", "other"));
    assert_false(vis(s, SEK, "prod", "se-default", "web"));
    assert_false(vis(s, SEK, "prod", "se-default", "prod"));
    assert_false(vis(s, SVK, "prod", "svc-plain", "prod"));
    keel_store_free(s);
    keel_loadset_free(&ls);
}

/* ---- DestinationRule tiers ----------------------------------------------------------- */

static const struct keel_kv_str web[] = {{"app", "web"}, {"version", "v1"}};
static const struct keel_kv_str api[] = {{"app", "api"}};

/* clang-format off */
static const char *const dr_yaml =
    SERVICE("reviews", "prod", "")
    SERVICE("ratings", "prod", "")
    SERVICE("details", "prod", "")
    /* root namespace: a mesh-wide default, exported */
    DR("root-all", "istio-system", "*.cluster.local", "  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n")
    DR("root-private", "istio-system", "reviews.prod.svc.cluster.local", "  exportTo: ['.']\n")
    /* service namespace: exact (short name), wildcard, and one exported only to `client2` */
    DR_TS("prod-reviews-new", "prod", "2024-02-01T00:00:00Z", "reviews",
          "  subsets: [{name: v2, labels: {version: v2}}, {name: v1, labels: {version: v1-dup}}]\n")
    DR_TS("prod-reviews-old", "prod", "2024-01-01T00:00:00Z", "reviews",
          "  subsets: [{name: v1, labels: {version: v1}}]\n")
    DR("prod-wild", "prod", "*.prod.svc.cluster.local", "")
    DR("prod-ratings", "prod", "ratings.prod.svc.cluster.local", "  exportTo: [client2]\n")
    /* client namespace: private DR and workload-selector DRs */
    DR("client-reviews", "client", "reviews.prod.svc.cluster.local", "  exportTo: ['.']\n")
    DR("client-reviews-web", "client", "reviews.prod.svc.cluster.local",
       "  workloadSelector: {matchLabels: {app: web}}\n  subsets: [{name: canary, labels: {track: canary}}]\n")
    /* a namespace whose only DR for the host has a selector */
    DR("sel-only", "selonly", "reviews.prod.svc.cluster.local", "  workloadSelector: {matchLabels: {app: web}}\n")
    /* a namespace with both an exact and a wildcard DR: exact wins, no merge */
    DR("w-wild", "wild", "*.svc.cluster.local", "")
    DR("w-exact", "wild", "details.prod.svc.cluster.local", "");
/* clang-format on */

static const struct keel_resource *drq(const struct keel_store *s, const char *client_ns,
                                       const struct keel_kv_str *labels, size_t nl, const char *host,
                                       struct keel_dr_lookup *out)
{
    return keel_store_destination_rule_for(s, client_ns, labels, nl, host, NULL, out);
}

static void test_dr_tiers(void **state)
{
    (void)state;
    struct keel_loadset ls;
    struct keel_store *s = build(&ls, dr_yaml, NULL);
    struct keel_dr_lookup out;
    char buf[256];
    const char *reviews = "reviews.prod.svc.cluster.local";

    /* tier 1: the client namespace's own DR beats the service namespace's */
    assert_string_equal(name_of(drq(s, "client", api, N(api), reviews, &out)), "client-reviews");
    assert_int_equal(out.tier, KEEL_DR_TIER_CLIENT_NS);
    assert_string_equal(out.host, reviews);
    assert_int_equal(out.n_drs, 1);
    /* ... and a matching workloadSelector DR beats the selector-less one; merge order: selector DR, then the rest */
    assert_string_equal(name_of(drq(s, "client", web, N(web), reviews, &out)), "client-reviews-web");
    assert_string_equal(names(out.drs, out.n_drs, buf, sizeof(buf)), "client-reviews-web client-reviews");

    /* tier 2: the service namespace (derived from the Service), merged oldest first */
    assert_string_equal(name_of(drq(s, "other", web, N(web), reviews, &out)), "prod-reviews-old");
    assert_int_equal(out.tier, KEEL_DR_TIER_SERVICE_NS);
    assert_string_equal(names(out.drs, out.n_drs, buf, sizeof(buf)), "prod-reviews-old prod-reviews-new");
    /* host comparison ignores case; explicit service_ns works too */
    assert_string_equal(
        name_of(keel_store_destination_rule_for(s, "other", NULL, 0, "Reviews.PROD.svc.cluster.local", "prod", &out)),
        "prod-reviews-old");
    /* most specific within the tier: wildcard for a host without an exact DR */
    assert_string_equal(name_of(drq(s, "other", NULL, 0, "details.prod.svc.cluster.local", &out)), "prod-wild");
    assert_int_equal(out.tier, KEEL_DR_TIER_SERVICE_NS);
    assert_string_equal(out.host, "*.prod.svc.cluster.local");

    /* the most specific exported host is not exported to the client: Istio does not try the
     * next-best host of that tier, it goes to the root namespace */
    assert_string_equal(name_of(drq(s, "other", NULL, 0, "ratings.prod.svc.cluster.local", &out)), "root-all");
    assert_int_equal(out.tier, KEEL_DR_TIER_ROOT_NS);
    assert_string_equal(name_of(drq(s, "client2", NULL, 0, "ratings.prod.svc.cluster.local", &out)), "prod-ratings");

    /* tier 3 only: unknown service namespace */
    assert_string_equal(name_of(drq(s, "other", NULL, 0, "foo.bar.svc.cluster.local", &out)), "root-all");
    assert_int_equal(out.tier, KEEL_DR_TIER_ROOT_NS);
    assert_string_equal(out.host, "*.cluster.local");
    /* nothing matches at all */
    assert_null(drq(s, "other", NULL, 0, "www.example.com", &out));
    assert_int_equal(out.tier, KEEL_DR_TIER_NONE);
    assert_null(out.host);
    assert_int_equal(out.n_drs, 0);
    assert_null(drq(s, "other", NULL, 0, "", NULL));

    /* Istio quirk: a tier-1 host held only by non-matching selector DRs yields no DR */
    assert_null(drq(s, "selonly", api, N(api), reviews, &out));
    assert_int_equal(out.tier, KEEL_DR_TIER_NONE);
    assert_string_equal(name_of(drq(s, "selonly", web, N(web), reviews, &out)), "sel-only");
    /* other hosts from that namespace still fall through */
    assert_string_equal(name_of(drq(s, "selonly", api, N(api), "ratings.prod.svc.cluster.local", &out)), "root-all");

    /* exact and wildcard DRs of one namespace are not merged: the exact one wins alone */
    assert_string_equal(name_of(drq(s, "wild", NULL, 0, "details.prod.svc.cluster.local", &out)), "w-exact");
    assert_int_equal(out.n_drs, 1);
    assert_string_equal(name_of(drq(s, "wild", NULL, 0, reviews, &out)), "w-wild");
    assert_int_equal(out.tier, KEEL_DR_TIER_CLIENT_NS);

    /* a proxy in the root namespace: the root's private DRs first, then the service namespace */
    assert_string_equal(name_of(drq(s, "istio-system", NULL, 0, reviews, &out)), "root-private");
    assert_int_equal(out.tier, KEEL_DR_TIER_CLIENT_NS);
    assert_string_equal(name_of(drq(s, "istio-system", NULL, 0, "details.prod.svc.cluster.local", &out)), "prod-wild");
    assert_int_equal(out.tier, KEEL_DR_TIER_SERVICE_NS);
    assert_string_equal(name_of(drq(s, "istio-system", NULL, 0, "x.y.svc.cluster.local", &out)), "root-all");

    /* the service namespace comes from the registry */
    assert_string_equal(keel_store_service_namespace(s, reviews, "other"), "prod");
    assert_string_equal(keel_store_service_namespace(s, "RATINGS.prod.svc.cluster.local", "other"), "prod");
    assert_null(keel_store_service_namespace(s, "nope.prod.svc.cluster.local", "other"));
    assert_null(keel_store_service_namespace(s, "x.prod.svc.cluster.local", "other"));
    keel_store_free(s);
    keel_loadset_free(&ls);
}

static void test_dr_service_entry_and_root(void **state)
{
    (void)state;
    /* ServiceEntry hosts give the service namespace; a custom root namespace; wildcard SE host */
    /* clang-format off */
    const char *yaml =
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext, namespace: egress}\n"
        "spec:\n  hosts: ['*.api.example.com', api.example.com]\n  exportTo: [client]\n"
        "  ports: [{number: 443, name: tls, protocol: TLS}]\n  resolution: NONE\n"
        DR("egress-api", "egress", "*.api.example.com", "")
        DR("egress-exact", "egress", "api.example.com", "  exportTo: [client]\n")
        DR("mesh", "mesh-root", "*", "");
    /* clang-format on */
    const char *root_ns = "mesh-root";
    struct keel_mesh_defaults md = {0};
    md.root_ns = root_ns;
    struct keel_loadset ls;
    struct keel_store *s = build(&ls, yaml, &md);
    struct keel_dr_lookup out;
    assert_string_equal(keel_store_service_namespace(s, "api.example.com", "client"), "egress");
    assert_null(keel_store_service_namespace(s, "api.example.com", "other")); /* SE not exported there */
    assert_string_equal(name_of(drq(s, "client", NULL, 0, "api.example.com", &out)), "egress-exact");
    /* a wildcard service host matches the wildcard DR itself */
    assert_string_equal(name_of(drq(s, "client", NULL, 0, "*.api.example.com", &out)), "egress-api");
    assert_int_equal(out.tier, KEEL_DR_TIER_SERVICE_NS);
    /* from a namespace the SE is not exported to, only the root DR applies */
    assert_string_equal(name_of(drq(s, "other", NULL, 0, "api.example.com", &out)), "mesh");
    assert_int_equal(out.tier, KEEL_DR_TIER_ROOT_NS);
    assert_string_equal(out.host, "*");
    keel_store_free(s);
    keel_loadset_free(&ls);
}

/* ---- Sidecar --------------------------------------------------------------------------- */

/* clang-format off */
#define SIDECAR(name, ns, ts, extra)                                                                           \
    "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: " name ", namespace: " ns      \
    ", creationTimestamp: \"" ts "\"}\nspec:\n" extra "  egress: [{hosts: ['./*']}]\n"
/* clang-format on */

static void test_sidecar_for(void **state)
{
    (void)state;
    /* clang-format off */
    const char *yaml = SIDECAR("ns-new", "prod", "2024-03-01T00:00:00Z", "")
        SIDECAR("ns-old", "prod", "2024-01-01T00:00:00Z", "")
        SIDECAR("web-new", "prod", "2024-02-02T00:00:00Z", "  workloadSelector: {labels: {app: web}}\n")
        SIDECAR("web-old", "prod", "2024-02-01T00:00:00Z", "  workloadSelector: {labels: {version: v1}}\n")
        SIDECAR("db", "prod", "2023-01-01T00:00:00Z", "  workloadSelector: {labels: {app: db}}\n")
        SIDECAR("only-sel", "lonely", "2023-01-01T00:00:00Z", "  workloadSelector: {labels: {app: web}}\n")
        SIDECAR("root", "istio-system", "2024-01-01T00:00:00Z", "")
        SIDECAR("root-sel", "istio-system", "2020-01-01T00:00:00Z", "  workloadSelector: {labels: {app: api}}\n");
    /* clang-format on */
    struct keel_loadset ls;
    struct keel_store *s = build(&ls, yaml, NULL);
    enum keel_sidecar_source src;
    /* two matching selectors: the oldest */
    assert_string_equal(name_of(keel_store_sidecar_for(s, "prod", web, N(web), &src)), "web-old");
    assert_int_equal(src, KEEL_SIDECAR_WORKLOAD);
    /* no selector match: the oldest selector-less of the namespace */
    assert_string_equal(name_of(keel_store_sidecar_for(s, "prod", api, N(api), &src)), "ns-old");
    assert_int_equal(src, KEEL_SIDECAR_NAMESPACE);
    /* a namespace with only non-matching selector Sidecars falls back to the root default */
    assert_string_equal(name_of(keel_store_sidecar_for(s, "lonely", api, N(api), &src)), "root");
    assert_int_equal(src, KEEL_SIDECAR_ROOT);
    assert_string_equal(name_of(keel_store_sidecar_for(s, "lonely", web, N(web), &src)), "only-sel");
    /* root-namespace selector Sidecars never apply elsewhere */
    assert_string_equal(name_of(keel_store_sidecar_for(s, "other", api, N(api), &src)), "root");
    assert_int_equal(src, KEEL_SIDECAR_ROOT);
    /* ... but do in the root namespace itself */
    assert_string_equal(name_of(keel_store_sidecar_for(s, "istio-system", api, N(api), &src)), "root-sel");
    assert_int_equal(src, KEEL_SIDECAR_WORKLOAD);
    assert_string_equal(name_of(keel_store_sidecar_for(s, "istio-system", NULL, 0, NULL)), "root");
    keel_store_free(s);
    keel_loadset_free(&ls);

    s = build(&ls, SIDECAR("x", "prod", "2024-01-01T00:00:00Z", "  workloadSelector: {labels: {app: db}}\n"), NULL);
    assert_null(keel_store_sidecar_for(s, "prod", web, N(web), &src));
    assert_int_equal(src, KEEL_SIDECAR_DEFAULT);
    keel_store_free(s);
    keel_loadset_free(&ls);
}

/* ---- policies ----------------------------------------------------------------------------- */

/* clang-format off */
#define POLICY(api_version, kind, name, ns, ts, spec)                                                          \
    "---\napiVersion: " api_version "\nkind: " kind "\nmetadata: {name: " name ", namespace: " ns              \
    ", creationTimestamp: \"" ts "\"}\nspec:\n" spec
#define AP(name, ns, ts, spec) POLICY("security.istio.io/v1", "AuthorizationPolicy", name, ns, ts, spec)
#define RA(name, ns, ts, spec) POLICY("security.istio.io/v1", "RequestAuthentication", name, ns, ts, spec)
#define PA(name, ns, ts, spec) POLICY("security.istio.io/v1", "PeerAuthentication", name, ns, ts, spec)
#define TEL(name, ns, ts, spec) POLICY("telemetry.istio.io/v1", "Telemetry", name, ns, ts, spec)
#define PC(name, ns, ts, spec) POLICY("networking.istio.io/v1beta1", "ProxyConfig", name, ns, ts, spec)
#define EF(name, ns, ts, spec)                                                                                 \
    POLICY("networking.istio.io/v1alpha3", "EnvoyFilter", name, ns, ts,                                       \
           spec "  configPatches: [{applyTo: HTTP_FILTER, match: {context: SIDECAR_INBOUND}, "                \
                "patch: {operation: INSERT_BEFORE, value: {name: foo}}}]\n")

#define T1 "2024-01-01T00:00:00Z"
#define T2 "2024-02-01T00:00:00Z"
#define T3 "2024-03-01T00:00:00Z"
#define SEL_WEB "  selector: {matchLabels: {app: web}}\n"
#define SEL_DB "  selector: {matchLabels: {app: db}}\n"
#define JWT "  jwtRules: [{issuer: 'https://example.com'}]\n"

static const char *const policy_yaml =
    AP("ap-root-sel", "istio-system", T2, SEL_WEB "  rules: [{}]\n")
    AP("ap-root", "istio-system", T1, "  action: DENY\n  rules: [{to: [{operation: {paths: ['/admin']}}]}]\n")
    AP("ap-web", "prod", T1, SEL_WEB "  rules: [{}]\n")
    AP("ap-db", "prod", T1, SEL_DB "  rules: [{}]\n")
    AP("ap-ns", "prod", T3, "  rules: [{}]\n")
    AP("ap-ref", "prod", T1, "  targetRefs: [{kind: Service, group: '', name: reviews}]\n  rules: [{}]\n")
    AP("ap-empty-sel", "prod", T2, "  selector: {}\n  rules: [{}]\n")
    RA("ra-root", "istio-system", T1, JWT)
    RA("ra-web", "prod", T2, SEL_WEB JWT)
    RA("ra-ns", "prod", T1, JWT)
    PA("pa-mesh-new", "istio-system", T2, "  mtls: {mode: PERMISSIVE}\n")
    PA("pa-mesh-old", "istio-system", T1, "  mtls: {mode: STRICT}\n")
    PA("pa-root-sel", "istio-system", T1, SEL_WEB "  mtls: {mode: DISABLE}\n")
    PA("pa-ns", "prod", T2, "  mtls: {mode: STRICT}\n")
    PA("pa-ns-empty-sel", "prod", T1, "  selector: {matchLabels: {}}\n  mtls: {mode: PERMISSIVE}\n")
    PA("pa-web-new", "prod", T3, SEL_WEB "  mtls: {mode: DISABLE}\n")
    PA("pa-web-old", "prod", T2, "  selector: {matchLabels: {version: v1}}\n  mtls: {mode: PERMISSIVE}\n")
    TEL("tel-root", "istio-system", T1, "  accessLogging: [{providers: [{name: envoy}]}]\n")
    TEL("tel-root-sel", "istio-system", T1, SEL_WEB "  accessLogging: [{disabled: true}]\n")
    TEL("tel-ns", "prod", T2, "  accessLogging: [{disabled: true}]\n")
    TEL("tel-web", "prod", T1, SEL_WEB "  accessLogging: [{disabled: false}]\n")
    PC("pc-root", "istio-system", T1, "  concurrency: 1\n")
    PC("pc-ns-empty-sel", "prod", T1, "  selector: {}\n  concurrency: 2\n")
    PC("pc-ns", "prod", T2, "  concurrency: 3\n")
    PC("pc-web", "prod", T1, SEL_WEB "  concurrency: 4\n")
    EF("ef-root-10", "istio-system", T1, "  priority: 10\n")
    EF("ef-root-m5", "istio-system", T2, "  priority: -5\n")
    EF("ef-root-db", "istio-system", T1, "  workloadSelector: {labels: {app: db}}\n")
    EF("ef-prod-m5", "prod", T1, "  priority: -5\n  workloadSelector: {labels: {app: web}}\n")
    EF("ef-prod-0-new", "prod", T3, "")
    EF("ef-prod-0-old", "prod", T2, "");
/* clang-format on */

static const char *refs(const struct keel_policy_ref *r, size_t n, char *buf, size_t cap)
{
    static const char *const lv[] = {"mesh", "mesh-wl", "ns", "wl"};
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s/%s", i ? " " : "", r[i].res->meta.name, lv[r[i].level]);
    return buf;
}

static const char *pol(const struct keel_store *s, enum keel_kind k, const char *ns, const struct keel_kv_str *l,
                       size_t nl, char *buf, size_t cap)
{
    struct keel_policy_ref out[16];
    size_t n = keel_store_policies_for(s, k, ns, l, nl, out, N(out));
    assert_true(n <= N(out));
    return refs(out, n, buf, cap);
}

static void test_policies_for(void **state)
{
    (void)state;
    struct keel_loadset ls;
    struct keel_store *s = build(&ls, policy_yaml, NULL);
    char buf[512];
    const struct keel_kv_str db[] = {{"app", "db"}};

    /* AuthorizationPolicy: root first, then the namespace; targetRef policies skipped; `selector: {}` = all */
    assert_string_equal(pol(s, KEEL_KIND_AUTHORIZATION_POLICY, "prod", web, N(web), buf, sizeof(buf)),
                        "ap-root/mesh ap-root-sel/mesh-wl ap-web/wl ap-empty-sel/ns ap-ns/ns");
    assert_string_equal(pol(s, KEEL_KIND_AUTHORIZATION_POLICY, "prod", db, N(db), buf, sizeof(buf)),
                        "ap-root/mesh ap-db/wl ap-empty-sel/ns ap-ns/ns");
    /* a root-namespace selector selects in every namespace */
    assert_string_equal(pol(s, KEEL_KIND_AUTHORIZATION_POLICY, "other", web, N(web), buf, sizeof(buf)),
                        "ap-root/mesh ap-root-sel/mesh-wl");
    /* a workload of the root namespace gets the root policies once */
    assert_string_equal(pol(s, KEEL_KIND_AUTHORIZATION_POLICY, "istio-system", web, N(web), buf, sizeof(buf)),
                        "ap-root/mesh ap-root-sel/mesh-wl");

    /* RequestAuthentication: the namespace first, then root */
    assert_string_equal(pol(s, KEEL_KIND_REQUEST_AUTHENTICATION, "prod", web, N(web), buf, sizeof(buf)),
                        "ra-ns/ns ra-web/wl ra-root/mesh");
    assert_string_equal(pol(s, KEEL_KIND_REQUEST_AUTHENTICATION, "prod", db, N(db), buf, sizeof(buf)),
                        "ra-ns/ns ra-root/mesh");

    /* PeerAuthentication: oldest per level; empty matchLabels = namespace level; root selectors ignored */
    assert_string_equal(pol(s, KEEL_KIND_PEER_AUTHENTICATION, "prod", web, N(web), buf, sizeof(buf)),
                        "pa-mesh-old/mesh pa-ns-empty-sel/ns pa-web-old/wl");
    assert_string_equal(pol(s, KEEL_KIND_PEER_AUTHENTICATION, "other", web, N(web), buf, sizeof(buf)),
                        "pa-mesh-old/mesh");
    assert_string_equal(pol(s, KEEL_KIND_PEER_AUTHENTICATION, "istio-system", web, N(web), buf, sizeof(buf)),
                        "pa-mesh-old/mesh");

    /* Telemetry: root, namespace, workload; root selectors only for root-namespace workloads */
    assert_string_equal(pol(s, KEEL_KIND_TELEMETRY, "prod", web, N(web), buf, sizeof(buf)),
                        "tel-root/mesh tel-ns/ns tel-web/wl");
    assert_string_equal(pol(s, KEEL_KIND_TELEMETRY, "other", web, N(web), buf, sizeof(buf)), "tel-root/mesh");
    assert_string_equal(pol(s, KEEL_KIND_TELEMETRY, "istio-system", web, N(web), buf, sizeof(buf)),
                        "tel-root/mesh tel-root-sel/wl");

    /* ProxyConfig: namespace level needs no selector at all (`selector: {}` is neither level) */
    assert_string_equal(pol(s, KEEL_KIND_PROXY_CONFIG, "prod", web, N(web), buf, sizeof(buf)),
                        "pc-root/mesh pc-ns/ns pc-web/wl");
    assert_string_equal(pol(s, KEEL_KIND_PROXY_CONFIG, "prod", db, N(db), buf, sizeof(buf)), "pc-root/mesh pc-ns/ns");

    /* EnvoyFilter: priority ascending, root first on ties, then oldest first */
    assert_string_equal(pol(s, KEEL_KIND_ENVOY_FILTER, "prod", web, N(web), buf, sizeof(buf)),
                        "ef-root-m5/mesh ef-prod-m5/wl ef-prod-0-old/ns ef-prod-0-new/ns ef-root-10/mesh");
    assert_string_equal(pol(s, KEEL_KIND_ENVOY_FILTER, "prod", db, N(db), buf, sizeof(buf)),
                        "ef-root-m5/mesh ef-root-db/mesh-wl ef-prod-0-old/ns ef-prod-0-new/ns ef-root-10/mesh");
    assert_string_equal(pol(s, KEEL_KIND_ENVOY_FILTER, "istio-system", NULL, 0, buf, sizeof(buf)),
                        "ef-root-m5/mesh ef-root-10/mesh");

    /* capacity: returns how many apply, writes only cap */
    struct keel_policy_ref two[2];
    assert_int_equal(keel_store_policies_for(s, KEEL_KIND_AUTHORIZATION_POLICY, "prod", web, N(web), two, 2), 5);
    assert_string_equal(refs(two, 2, buf, sizeof(buf)), "ap-root/mesh ap-root-sel/mesh-wl");
    assert_int_equal(keel_store_policies_for(s, KEEL_KIND_ENVOY_FILTER, "prod", web, N(web), NULL, 0), 5);
    /* kinds without policy semantics */
    assert_int_equal(keel_store_policies_for(s, KEEL_KIND_VIRTUAL_SERVICE, "prod", web, N(web), two, 2), 0);
    keel_store_free(s);
    keel_loadset_free(&ls);
}

static void test_mesh_defaults_from_mesh(void **state)
{
    (void)state;
    struct keel_mesh_defaults md;
    keel_mesh_defaults_from_mesh(&md, NULL);
    assert_null(md.root_ns);
    assert_int_equal(md.n_default_vs_export_to, 0);
    const char *yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\n"
                       "data:\n  mesh: |\n    rootNamespace: mesh-root\n    defaultVirtualServiceExportTo: ['.']\n";
    struct keel_loadset ls;
    load(&ls, yaml, true);
    const struct keel_resource *cm = keel_loadset_at(&ls, 0);
    assert_non_null(cm->mesh);
    keel_mesh_defaults_from_mesh(&md, cm->mesh);
    assert_string_equal(md.root_ns, "mesh-root");
    assert_int_equal(md.n_default_vs_export_to, 1);
    assert_string_equal(md.default_vs_export_to[0], ".");
    struct keel_store *s = keel_store_build(&ls, &md, NULL);
    assert_string_equal(keel_store_mesh_defaults(s)->root_ns, "mesh-root");
    assert_string_equal(keel_store_mesh_defaults(s)->default_service_export_to[0], "*");
    keel_store_free(s);
    keel_loadset_free(&ls);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_only_valid_resources),
        cmocka_unit_test(test_duplicate_key_last_wins),
        cmocka_unit_test(test_oldest_wins_order),
        cmocka_unit_test(test_generations),
        cmocka_unit_test(test_visible_export_to),
        cmocka_unit_test(test_dr_tiers),
        cmocka_unit_test(test_dr_service_entry_and_root),
        cmocka_unit_test(test_sidecar_for),
        cmocka_unit_test(test_policies_for),
        cmocka_unit_test(test_mesh_defaults_from_mesh),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
