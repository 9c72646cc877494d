/*
 * load.h - read files, folders and streams of resources into a loadset.
 *
 * A keel_loadset is the result of reading some config: every document found
 * becomes a keel_resource (valid, invalid or skipped), and every problem a
 * diagnostic. Sources may be files, folders (read recursively: *.yaml, *.yml,
 * *.json, in name order, hidden entries skipped), or "-" for standard input.
 * Multi-document streams and `kind: List` objects are unrolled.
 *
 * For each document the loader checks the envelope (apiVersion, kind,
 * metadata), decodes the body with the kind's schema (config/decode.h) and
 * runs the kind's semantic rules (config/validate.h). A ConfigMap with a
 * `mesh` key has that key read and checked as MeshConfig.
 *
 * Memory: the loadset owns one arena holding every node, resource and
 * string; keel_loadset_free() releases everything at once. Not thread-safe.
 */
#ifndef KEEL_CONFIG_LOAD_H
#define KEEL_CONFIG_LOAD_H

#include "base/diag.h"
#include "base/vec.h"
#include "config/resource.h"

struct keel_arena;

struct keel_loadset {
    struct keel_arena *arena;
    struct keel_diags diags;
    struct keel_vec resources; /* struct keel_resource * in reading order */
    const char *default_ns;    /* namespace for resources that name none */
    size_t files;
    size_t invalid;
    size_t skipped;
};

/* default_ns may be NULL ("default"). Aborts on OOM. */
void keel_loadset_init(struct keel_loadset *ls, const char *default_ns);
void keel_loadset_free(struct keel_loadset *ls);

/* Reads a file, a folder (recursively) or "-" (stdin). Returns 0, or a
 * negative KEEL_E* code when the path itself could not be read (a
 * diagnostic says why). Invalid content is not an error return: see
 * ls->invalid and the diagnostics. */
int keel_load_path(struct keel_loadset *ls, const char *path);

/* Reads len bytes of YAML/JSON named `name`. */
int keel_load_buf(struct keel_loadset *ls, const char *name, const char *buf, size_t len);

static inline size_t keel_loadset_count(const struct keel_loadset *ls)
{
    return ls->resources.len;
}

static inline struct keel_resource *keel_loadset_at(const struct keel_loadset *ls, size_t i)
{
    return *(struct keel_resource **)keel_vec_at(&ls->resources, i);
}

#endif
