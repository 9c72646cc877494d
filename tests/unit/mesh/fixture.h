/*
 * fixture.h - the fixture the mesh unit tests share: YAML in, snapshot out.
 *
 * fx_load() loads the YAML (failing the test, with every diagnostic printed,
 * when a resource is invalid), builds the store and compiles a snapshot for
 * the given proxy identity (fx_load_dns(): with DNS answers); fx_free() releases all of it. Each test file
 * wraps fx_load() in its own fx_build() that picks the identity. Header-only
 * (static inline) because it is included by test programs, never linked.
 */
#ifndef KEEL_TESTS_MESH_FIXTURE_H
#define KEEL_TESTS_MESH_FIXTURE_H

#include "config/load.h"
#include "config/store.h"
#include "mesh/snapshot.h"

#include <stdio.h>
#include <string.h>

struct fx {
    struct keel_loadset ls;
    struct keel_store *st;
    struct keel_diags diags; /* the snapshot compiler's warnings */
    struct keel_snapshot *snap;
    const struct keel_route_table *t; /* set by tests that look at one route table */
};

/* fx_load() with DNS answers for the compile (NULL: nothing resolved). */
static inline void fx_load_dns(struct fx *f, const char *yaml, const struct keel_proxy_identity *id,
                               const struct keel_dns_answers *dns)
{
    memset(f, 0, sizeof(*f));
    keel_loadset_init(&f->ls, NULL);
    assert_int_equal(keel_load_buf(&f->ls, "test.yaml", yaml, strlen(yaml)), 0);
    if (f->ls.invalid) {
        for (size_t i = 0; i < keel_diags_count(&f->ls.diags); i++) {
            const struct keel_diag *d = keel_diags_at(&f->ls.diags, i);
            fprintf(stderr, "%u:%u: %s: %s\n", d->loc.line, d->loc.col, d->path ? d->path : "", d->msg);
        }
        fail_msg("test YAML has %zu invalid resources", f->ls.invalid);
    }
    f->st = keel_store_build(&f->ls, NULL, NULL);
    keel_diags_init(&f->diags);
    f->snap = keel_snapshot_build(f->st, id, NULL, dns, &f->diags);
}

static inline void fx_load(struct fx *f, const char *yaml, const struct keel_proxy_identity *id)
{
    fx_load_dns(f, yaml, id, NULL);
}

static inline void fx_free(struct fx *f)
{
    keel_snapshot_unref(f->snap);
    keel_diags_free(&f->diags);
    keel_store_free(f->st);
    keel_loadset_free(&f->ls);
}

/* Whether the snapshot compiler said something containing needle. */
static inline bool has_diag(const struct fx *f, const char *needle)
{
    for (size_t i = 0; i < keel_diags_count(&f->diags); i++)
        if (strstr(keel_diags_at(&f->diags, i)->msg, needle))
            return true;
    return false;
}

#endif
