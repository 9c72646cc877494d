/*
 * diag_test.c - tests for base/diag: the diagnostics list (copies, counts,
 * keel_diags_set_resource) and field paths (fields, indexes, map keys,
 * truncation, overflow).
 */
#include "base/diag.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static void test_empty_list(void **state)
{
    (void)state;
    struct keel_diags d;
    keel_diags_init(&d);
    assert_int_equal(keel_diags_count(&d), 0);
    assert_int_equal(d.errors, 0);
    assert_int_equal(d.warnings, 0);
    keel_diags_free(&d);
}

static void test_add_copies_strings(void **state)
{
    (void)state;
    struct keel_diags d;
    keel_diags_init(&d);
    char file[] = "reviews.yaml";
    char path[] = "spec.http[0]";
    char arg[] = "attempts";
    struct keel_loc loc = {file, 12, 7, 2};
    struct keel_diag *g = keel_diags_add(&d, KEEL_SEV_ERROR, &loc, path, "unknown field \"%s\"", arg);
    /* the caller's buffers may change or die: the diagnostic owns copies */
    file[0] = path[0] = arg[0] = 'X';
    assert_ptr_equal(g, keel_diags_at(&d, 0));
    assert_int_equal(g->sev, KEEL_SEV_ERROR);
    assert_string_equal(g->loc.file, "reviews.yaml");
    assert_int_equal(g->loc.line, 12);
    assert_int_equal(g->loc.col, 7);
    assert_int_equal(g->loc.doc, 2);
    assert_string_equal(g->path, "spec.http[0]");
    assert_string_equal(g->msg, "unknown field \"attempts\"");
    assert_null(g->kind);
    assert_null(g->ns);
    assert_null(g->name);
    keel_diags_free(&d);
}

static void test_add_without_location_or_path(void **state)
{
    (void)state;
    struct keel_diags d;
    keel_diags_init(&d);
    struct keel_diag *g = keel_diags_add(&d, KEEL_SEV_WARNING, NULL, NULL, "plain");
    assert_null(g->loc.file);
    assert_int_equal(g->loc.line, 0);
    assert_null(g->path);
    g = keel_diags_add(&d, KEEL_SEV_WARNING, &(struct keel_loc){NULL, 3, 1, 0}, "", "%s", "");
    assert_null(g->loc.file);
    assert_int_equal(g->loc.line, 3);
    assert_null(g->path); /* "" path means none */
    assert_string_equal(g->msg, "");
    keel_diags_free(&d);
}

static void test_counts_by_severity(void **state)
{
    (void)state;
    struct keel_diags d;
    keel_diags_init(&d);
    for (int i = 0; i < 5; i++)
        keel_diags_add(&d, KEEL_SEV_ERROR, NULL, NULL, "e%d", i);
    for (int i = 0; i < 3; i++)
        keel_diags_add(&d, KEEL_SEV_WARNING, NULL, NULL, "w%d", i);
    assert_int_equal(keel_diags_count(&d), 8);
    assert_int_equal(d.errors, 5);
    assert_int_equal(d.warnings, 3);
    assert_string_equal(keel_diags_at(&d, 0)->msg, "e0");
    assert_string_equal(keel_diags_at(&d, 7)->msg, "w2");
    keel_diags_free(&d);
}

static void test_many_and_long_messages(void **state)
{
    (void)state;
    struct keel_diags d;
    keel_diags_init(&d);
    char big[20000];
    memset(big, 'm', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    keel_diags_add(&d, KEEL_SEV_ERROR, NULL, NULL, "%s", big);
    for (int i = 0; i < 10000; i++)
        keel_diags_add(&d, KEEL_SEV_ERROR, &(struct keel_loc){"f.yaml", (uint32_t)i + 1, 1, 0}, "spec", "n=%d", i);
    assert_int_equal(strlen(keel_diags_at(&d, 0)->msg), sizeof(big) - 1);
    assert_int_equal(keel_diags_count(&d), 10001);
    assert_string_equal(keel_diags_at(&d, 10000)->msg, "n=9999");
    assert_int_equal(keel_diags_at(&d, 10000)->loc.line, 10000);
    keel_diags_free(&d);
}

static void add_va(struct keel_diags *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_va(struct keel_diags *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    keel_diags_vadd(d, KEEL_SEV_ERROR, NULL, "p", fmt, ap);
    va_end(ap);
}

static void test_vadd(void **state)
{
    (void)state;
    struct keel_diags d;
    keel_diags_init(&d);
    add_va(&d, "%s=%d", "x", 5);
    assert_string_equal(keel_diags_at(&d, 0)->msg, "x=5");
    assert_string_equal(keel_diags_at(&d, 0)->path, "p");
    keel_diags_free(&d);
}

static void test_set_resource(void **state)
{
    (void)state;
    struct keel_diags d;
    keel_diags_init(&d);
    keel_diags_add(&d, KEEL_SEV_ERROR, NULL, NULL, "before");
    size_t from = keel_diags_count(&d);
    keel_diags_add(&d, KEEL_SEV_ERROR, NULL, NULL, "one");
    struct keel_diag *pre = keel_diags_add(&d, KEEL_SEV_WARNING, NULL, NULL, "already labelled");
    pre->kind = "Gateway";
    keel_diags_add(&d, KEEL_SEV_ERROR, NULL, NULL, "two");
    char kind[] = "VirtualService", ns[] = "default", name[] = "reviews";
    keel_diags_set_resource(&d, from, kind, ns, name);
    kind[0] = ns[0] = name[0] = 'X'; /* copied */
    assert_null(keel_diags_at(&d, 0)->kind); /* before `from`: untouched */
    assert_string_equal(keel_diags_at(&d, 1)->kind, "VirtualService");
    assert_string_equal(keel_diags_at(&d, 1)->ns, "default");
    assert_string_equal(keel_diags_at(&d, 1)->name, "reviews");
    assert_string_equal(keel_diags_at(&d, 2)->kind, "Gateway"); /* has one: kept */
    assert_null(keel_diags_at(&d, 2)->name);
    assert_string_equal(keel_diags_at(&d, 3)->kind, "VirtualService");
    /* NULL parts stay NULL; from == count is a no-op */
    keel_diags_set_resource(&d, 0, "Namespace", NULL, "ns1");
    assert_string_equal(keel_diags_at(&d, 0)->kind, "Namespace");
    assert_null(keel_diags_at(&d, 0)->ns);
    assert_string_equal(keel_diags_at(&d, 0)->name, "ns1");
    assert_string_equal(keel_diags_at(&d, 1)->kind, "VirtualService");
    keel_diags_set_resource(&d, keel_diags_count(&d), "X", "y", "z");
    keel_diags_free(&d);
}

static void test_path_building(void **state)
{
    (void)state;
    struct keel_path p;
    keel_path_init(&p, "spec");
    assert_string_equal(keel_path_str(&p), "spec");
    size_t m1 = keel_path_field(&p, "http");
    assert_int_equal(m1, 4);
    size_t m2 = keel_path_index(&p, 0);
    keel_path_field(&p, "route");
    keel_path_index(&p, 12);
    keel_path_field(&p, "destination");
    assert_string_equal(keel_path_str(&p), "spec.http[0].route[12].destination");
    assert_int_equal(p.len, strlen(keel_path_str(&p)));
    keel_path_truncate(&p, m2);
    assert_string_equal(keel_path_str(&p), "spec.http");
    keel_path_truncate(&p, m1);
    assert_string_equal(keel_path_str(&p), "spec");
    keel_path_truncate(&p, 1000); /* beyond the end: no-op */
    assert_string_equal(keel_path_str(&p), "spec");
    keel_path_truncate(&p, 0);
    assert_string_equal(keel_path_str(&p), "");
}

static void test_path_without_root(void **state)
{
    (void)state;
    struct keel_path p;
    keel_path_init(&p, NULL);
    assert_string_equal(keel_path_str(&p), "");
    keel_path_field(&p, "metadata"); /* first segment: no leading dot */
    assert_string_equal(keel_path_str(&p), "metadata");
    keel_path_init(&p, NULL);
    keel_path_index(&p, 3);
    assert_string_equal(keel_path_str(&p), "[3]");
}

static void test_path_map_keys(void **state)
{
    (void)state;
    struct keel_path p;
    keel_path_init(&p, "metadata");
    size_t m = keel_path_field(&p, "labels");
    keel_path_key(&p, "app");
    assert_string_equal(keel_path_str(&p), "metadata.labels.app");
    keel_path_truncate(&p, m);
    keel_path_field(&p, "labels");
    keel_path_key(&p, "Version_2-x");
    assert_string_equal(keel_path_str(&p), "metadata.labels.Version_2-x");
    keel_path_truncate(&p, m);
    /* keys that are not identifiers are bracketed */
    keel_path_key(&p, "app.kubernetes.io/name");
    assert_string_equal(keel_path_str(&p), "metadata[app.kubernetes.io/name]");
    keel_path_truncate(&p, m);
    keel_path_key(&p, "");
    assert_string_equal(keel_path_str(&p), "metadata[]");
    keel_path_truncate(&p, m);
    keel_path_key(&p, "has space");
    assert_string_equal(keel_path_str(&p), "metadata[has space]");
    keel_path_truncate(&p, m);
    keel_path_key(&p, "8080");
    assert_string_equal(keel_path_str(&p), "metadata.8080");
}

static void test_path_overflow_stays_well_formed(void **state)
{
    (void)state;
    struct keel_path p;
    keel_path_init(&p, "spec");
    size_t marks[400];
    size_t n = 0;
    /* push far more than KEEL_PATH_MAX bytes */
    for (n = 0; n < 400; n++)
        marks[n] = (n % 2) ? keel_path_index(&p, n) : keel_path_field(&p, "field");
    assert_true(p.len < KEEL_PATH_MAX);
    assert_int_equal(strlen(keel_path_str(&p)), p.len);
    /* the cut is on a segment boundary: the path ends with a whole segment */
    const char *s = keel_path_str(&p);
    assert_true(s[p.len - 1] == ']' || s[p.len - 1] == 'd');
    /* a long segment that does not fit is dropped whole */
    char longname[600];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    size_t before = p.len;
    size_t mark = keel_path_field(&p, longname);
    assert_int_equal(mark, before);
    assert_int_equal(p.len, before);
    /* unwinding with the saved marks gets back to the root */
    while (n > 0)
        keel_path_truncate(&p, marks[--n]);
    assert_string_equal(keel_path_str(&p), "spec");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_list),
        cmocka_unit_test(test_add_copies_strings),
        cmocka_unit_test(test_add_without_location_or_path),
        cmocka_unit_test(test_counts_by_severity),
        cmocka_unit_test(test_many_and_long_messages),
        cmocka_unit_test(test_vadd),
        cmocka_unit_test(test_set_resource),
        cmocka_unit_test(test_path_building),
        cmocka_unit_test(test_path_without_root),
        cmocka_unit_test(test_path_map_keys),
        cmocka_unit_test(test_path_overflow_stays_well_formed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
