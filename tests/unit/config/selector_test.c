/*
 * selector_test.c - tests for config/selector: Istio label subsets (empty
 * selector, missing key, different value, case sensitivity), label-set
 * equality, and Kubernetes LabelSelector matchExpressions (In, NotIn,
 * Exists, DoesNotExist, combined with matchLabels, malformed expressions).
 */
#include "config/selector.h"

#include "base/arena.h"
#include "base/diag.h"
#include "config/yaml.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const struct keel_kv_str pod[] = {
    {"app", "reviews"},
    {"version", "v2"},
    {"tier", "backend"},
};

static void test_labels_match(void **state)
{
    (void)state;
    const struct keel_kv_str one[] = {{"app", "reviews"}};
    const struct keel_kv_str two[] = {{"version", "v2"}, {"app", "reviews"}};
    const struct keel_kv_str other_value[] = {{"app", "ratings"}};
    const struct keel_kv_str missing[] = {{"app", "reviews"}, {"zone", "a"}};
    const struct keel_kv_str upper[] = {{"App", "reviews"}};
    const struct keel_kv_str empty_value[] = {{"app", ""}};
    assert_true(keel_labels_match(one, 1, pod, N(pod)));
    assert_true(keel_labels_match(two, 2, pod, N(pod)));
    assert_false(keel_labels_match(other_value, 1, pod, N(pod)));
    assert_false(keel_labels_match(missing, 2, pod, N(pod)));
    assert_false(keel_labels_match(upper, 1, pod, N(pod))); /* keys are case-sensitive */
    assert_false(keel_labels_match(empty_value, 1, pod, N(pod)));
    /* empty selector matches everything, even a workload without labels */
    assert_true(keel_labels_match(NULL, 0, pod, N(pod)));
    assert_true(keel_labels_match(NULL, 0, NULL, 0));
    /* a non-empty selector never matches an unlabelled workload */
    assert_false(keel_labels_match(one, 1, NULL, 0));

    assert_string_equal(keel_labels_get(pod, N(pod), "tier"), "backend");
    assert_null(keel_labels_get(pod, N(pod), "zone"));
}

static void test_labels_equal(void **state)
{
    (void)state;
    const struct keel_kv_str a[] = {{"app", "x"}, {"v", "1"}};
    const struct keel_kv_str b[] = {{"v", "1"}, {"app", "x"}};
    const struct keel_kv_str c[] = {{"app", "x"}};
    const struct keel_kv_str d[] = {{"app", "x"}, {"v", "2"}};
    assert_true(keel_labels_equal(a, 2, b, 2));
    assert_false(keel_labels_equal(a, 2, c, 1));
    assert_false(keel_labels_equal(c, 1, a, 2));
    assert_false(keel_labels_equal(a, 2, d, 2));
    assert_true(keel_labels_equal(NULL, 0, NULL, 0));
}

/* parse one YAML document (a matchExpressions list) */
struct doc {
    struct keel_node *root;
};

static int take(void *ctx, struct keel_node *root, const struct keel_loc *loc)
{
    (void)loc;
    ((struct doc *)ctx)->root = root;
    return 1;
}

static const struct keel_node *parse(struct keel_arena *a, struct keel_diags *d, const char *yaml)
{
    struct doc doc = {NULL};
    keel_yaml_load_buf(a, "test.yaml", yaml, strlen(yaml), d, take, &doc);
    assert_non_null(doc.root);
    return doc.root;
}

static bool sel_matches(struct keel_arena *a, struct keel_diags *d, const struct keel_kv_str *ml, size_t nml,
                        const char *exprs)
{
    struct keel_label_selector s = {ml, nml, exprs ? parse(a, d, exprs) : NULL};
    assert_null(keel_label_selector_error(&s));
    return keel_label_selector_matches(&s, pod, N(pod));
}

static void test_match_expressions(void **state)
{
    (void)state;
    struct keel_arena *a = keel_arena_new(0);
    struct keel_diags d;
    keel_diags_init(&d);

    assert_true(sel_matches(a, &d, NULL, 0, "- {key: app, operator: In, values: [ratings, reviews]}"));
    assert_false(sel_matches(a, &d, NULL, 0, "- {key: app, operator: In, values: [ratings]}"));
    assert_false(sel_matches(a, &d, NULL, 0, "- {key: zone, operator: In, values: [a]}"));
    assert_true(sel_matches(a, &d, NULL, 0, "- {key: version, operator: NotIn, values: [v1, v3]}"));
    assert_false(sel_matches(a, &d, NULL, 0, "- {key: version, operator: NotIn, values: [v2]}"));
    assert_true(sel_matches(a, &d, NULL, 0, "- {key: zone, operator: NotIn, values: [a]}")); /* absent key */
    assert_true(sel_matches(a, &d, NULL, 0, "- {key: tier, operator: Exists}"));
    assert_false(sel_matches(a, &d, NULL, 0, "- {key: zone, operator: Exists}"));
    assert_true(sel_matches(a, &d, NULL, 0, "- {key: zone, operator: DoesNotExist}"));
    assert_false(sel_matches(a, &d, NULL, 0, "- {key: app, operator: DoesNotExist, values: []}"));
    /* all expressions AND, and AND with matchLabels */
    assert_true(sel_matches(a, &d, NULL, 0,
                            "- {key: app, operator: In, values: [reviews]}\n"
                            "- {key: zone, operator: DoesNotExist}\n"));
    assert_false(sel_matches(a, &d, NULL, 0,
                             "- {key: app, operator: In, values: [reviews]}\n"
                             "- {key: tier, operator: NotIn, values: [backend]}\n"));
    const struct keel_kv_str v2[] = {{"version", "v2"}}, v1[] = {{"version", "v1"}};
    assert_true(sel_matches(a, &d, v2, 1, "- {key: app, operator: Exists}"));
    assert_false(sel_matches(a, &d, v1, 1, "- {key: app, operator: Exists}"));
    /* empty selector: everything; NULL selector: nothing */
    assert_true(sel_matches(a, &d, NULL, 0, NULL));
    assert_true(sel_matches(a, &d, NULL, 0, "[]"));
    assert_false(keel_label_selector_matches(NULL, pod, N(pod)));
    assert_null(keel_label_selector_error(NULL));

    keel_diags_free(&d);
    keel_arena_free(a);
}

static void test_malformed_expressions(void **state)
{
    (void)state;
    struct keel_arena *a = keel_arena_new(0);
    struct keel_diags d;
    keel_diags_init(&d);
    const char *bad[] = {
        "{key: app, operator: Exists}",                /* not a list */
        "- app",                                       /* item not an object */
        "- {operator: Exists}",                        /* no key */
        "- {key: app, operator: Equals, values: [x]}", /* unknown operator */
        "- {key: app, operator: in, values: [x]}",     /* operators are case-sensitive */
        "- {key: app, operator: In}",                  /* In without values */
        "- {key: app, operator: NotIn, values: []}",   /* NotIn with empty values */
        "- {key: app, operator: Exists, values: [x]}", /* Exists with values */
        "- {key: app, operator: In, values: x}",       /* values not a list */
        "- {key: app, operator: In, values: [[x]]}",   /* values not strings */
    };
    for (size_t i = 0; i < N(bad); i++) {
        struct keel_label_selector s = {NULL, 0, parse(a, &d, bad[i])};
        assert_non_null(keel_label_selector_error(&s));
        /* fail closed: a malformed selector selects nothing */
        assert_false(keel_label_selector_matches(&s, pod, N(pod)));
    }
    keel_diags_free(&d);
    keel_arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_labels_match),
        cmocka_unit_test(test_labels_equal),
        cmocka_unit_test(test_match_expressions),
        cmocka_unit_test(test_malformed_expressions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
