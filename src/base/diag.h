/*
 * diag.h - diagnostics: errors and warnings with a location and a field path.
 *
 * The config library never prints. It appends keel_diag records to a
 * keel_diags list and keeps going, so one run reports every problem. Only
 * the CLI (or the proxy's admin API) formats them, compiler style:
 *
 *   file.yaml:12:7: error: VirtualService default/reviews: spec.http[0].retries: ...
 *
 * All strings in a diagnostic are copied into the list's own arena; the
 * list owns them and frees them in keel_diags_free().
 *
 * keel_path builds field paths ("spec.http[0].route[1]") incrementally:
 * push a segment, recurse, then truncate back to the saved length.
 */
#ifndef KEEL_BASE_DIAG_H
#define KEEL_BASE_DIAG_H

#include "base/vec.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keel_arena;

enum keel_severity {
    KEEL_SEV_ERROR,
    KEEL_SEV_WARNING,
};

/* A position in a source: 1-based line and column; line 0 = unknown. */
struct keel_loc {
    const char *file; /* borrowed; owned by whoever loaded the source */
    uint32_t line;
    uint32_t col;
    uint32_t doc; /* 0-based document index in a multi-document stream */
};

struct keel_diag {
    enum keel_severity sev;
    struct keel_loc loc; /* loc.file copied into the diags arena */
    const char *kind;    /* resource identity, or NULL */
    const char *ns;
    const char *name;
    const char *path; /* field path, or NULL */
    const char *msg;
};

struct keel_diags {
    struct keel_arena *arena;
    struct keel_vec items; /* struct keel_diag */
    size_t errors;
    size_t warnings;
};

void keel_diags_init(struct keel_diags *d);
void keel_diags_free(struct keel_diags *d);

/* Appends a diagnostic; strings are copied. Aborts on OOM (config phase). */
struct keel_diag *keel_diags_add(struct keel_diags *d, enum keel_severity sev, const struct keel_loc *loc,
                                 const char *path, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
struct keel_diag *keel_diags_vadd(struct keel_diags *d, enum keel_severity sev, const struct keel_loc *loc,
                                  const char *path, const char *fmt, va_list ap);

struct keel_buf;

/* Appends g to b as one line the way `keel validate` prints it (no newline):
 *   file:line:col: error: Kind ns/name: field.path: message
 * color wraps the severity in ANSI bold red (errors) or magenta (warnings).
 * Returns 0 or the keel_buf error. Shared by `keel validate` and `keel run`
 * so both report a mistake with the same words. */
int keel_diag_format(const struct keel_diag *g, bool color, struct keel_buf *b);

/* Sets the resource identity on diagnostics [from, end) that have none. */
void keel_diags_set_resource(struct keel_diags *d, size_t from, const char *kind, const char *ns, const char *name);

static inline size_t keel_diags_count(const struct keel_diags *d)
{
    return d->items.len;
}

static inline struct keel_diag *keel_diags_at(const struct keel_diags *d, size_t i)
{
    return (struct keel_diag *)keel_vec_at(&d->items, i);
}

#define KEEL_PATH_MAX 512

struct keel_path {
    char buf[KEEL_PATH_MAX];
    size_t len;
};

void keel_path_init(struct keel_path *p, const char *root);
/* Each push returns the previous length, to pass to keel_path_truncate(). */
size_t keel_path_field(struct keel_path *p, const char *name);
size_t keel_path_index(struct keel_path *p, size_t i);
size_t keel_path_key(struct keel_path *p, const char *key);
void keel_path_truncate(struct keel_path *p, size_t len);
static inline const char *keel_path_str(const struct keel_path *p)
{
    return p->buf;
}

#endif
