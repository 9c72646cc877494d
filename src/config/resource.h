/*
 * resource.h - one Kubernetes-style object read from a file: envelope + body.
 *
 * A keel_resource is what the loader makes of one YAML/JSON document:
 * apiVersion, kind and metadata (the envelope), plus the typed body decoded
 * with the kind's schema (for Istio kinds, `spec`). It records where it came
 * from, and whether it passed decoding and validation.
 *
 * Memory: everything a resource points to lives in the arena of the
 * keel_loadset that read it (config/load.h).
 */
#ifndef KEEL_CONFIG_RESOURCE_H
#define KEEL_CONFIG_RESOURCE_H

#include "config/schema_gen.h"

#include <stdbool.h>
#include <stdint.h>

/* Kubernetes ObjectMeta (the fields Keel reads; the others are accepted). */
struct keel_object_meta {
    struct keel_obj _o;
    const char *name;
    const char *generate_name;
    const char *namespace_;
    struct keel_kv_str *labels;
    size_t n_labels;
    struct keel_kv_str *annotations;
    size_t n_annotations;
    const char *creation_timestamp; /* RFC 3339, or NULL */
    int64_t generation;
    const char *resource_version;
    const char *uid;
    const struct keel_node *owner_references;
    const struct keel_node *finalizers;
    const struct keel_node *managed_fields;
    const char *deletion_timestamp;
    int64_t deletion_grace_period_seconds;
    const char *self_link;
};

extern const struct keel_msgdesc keel_msg_object_meta;

enum keel_resource_status {
    KEEL_RES_VALID,
    KEEL_RES_INVALID,
    KEEL_RES_SKIPPED, /* a Kubernetes kind Keel does not read */
};

struct keel_resource {
    const struct keel_kind_desc *kind; /* NULL when skipped or unreadable */
    const char *api_version;           /* as written */
    const char *kind_name;             /* as written */
    struct keel_object_meta meta;
    const char *ns;   /* metadata.namespace, or the loader's default */
    void *body;       /* struct keel_<kind>_object * */
    void *spec;       /* the `spec` member of body for Istio kinds, else NULL */
    void *mesh;       /* ConfigMap with data.mesh: struct keel_mesh_config *, else NULL */
    const struct keel_node *node; /* the document root */
    struct keel_loc loc;          /* where the document starts */
    enum keel_resource_status status;
    uint32_t errors;   /* error diagnostics about this resource */
    uint32_t warnings;
    uint64_t seq;      /* order in which the loader read it */
};

/* "VirtualService default/reviews" style label; writes into buf. */
const char *keel_resource_label(const struct keel_resource *r, char *buf, size_t n);

/* Kind descriptor by kind name ("VirtualService"), or NULL. */
const struct keel_kind_desc *keel_kind_find(const char *kind);

/* Kind descriptor by id, or NULL. */
const struct keel_kind_desc *keel_kind_by_id(int id);

#endif
