/*
 * resource.c - resource envelope helpers and the ObjectMeta schema.
 */
#include "config/resource.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define META_FIELD(jname, type, shape, member, flags)                                                              \
    {jname, KEEL_FT_##type, KEEL_FS_##shape, 0, flags, offsetof(struct keel_object_meta, member), 0, 0, 0,        \
     NULL, NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL}
#define META_MAP(jname, member)                                                                                    \
    {jname, KEEL_FT_STRING, KEEL_FS_MAP, 0, 0, offsetof(struct keel_object_meta, member),                          \
     offsetof(struct keel_object_meta, n_##member), sizeof(struct keel_kv_str), offsetof(struct keel_kv_str, value), \
     NULL, NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL}

static const struct keel_field meta_fields[] = {
    META_FIELD("name", STRING, ONE, name, 0),
    META_FIELD("generateName", STRING, ONE, generate_name, 0),
    META_FIELD("namespace", STRING, ONE, namespace_, 0),
    META_MAP("labels", labels),
    META_MAP("annotations", annotations),
    META_FIELD("creationTimestamp", STRING, ONE, creation_timestamp, 0),
    META_FIELD("generation", INT, ONE, generation, 0),
    META_FIELD("resourceVersion", STRING, ONE, resource_version, 0),
    META_FIELD("uid", STRING, ONE, uid, 0),
    META_FIELD("ownerReferences", ANY, ONE, owner_references, 0),
    META_FIELD("finalizers", ANY, ONE, finalizers, 0),
    META_FIELD("managedFields", ANY, ONE, managed_fields, 0),
    META_FIELD("deletionTimestamp", STRING, ONE, deletion_timestamp, 0),
    META_FIELD("deletionGracePeriodSeconds", INT, ONE, deletion_grace_period_seconds, 0),
    META_FIELD("selfLink", STRING, ONE, self_link, 0),
};

const struct keel_msgdesc keel_msg_object_meta = {
    "object_meta", sizeof(struct keel_object_meta), sizeof(meta_fields) / sizeof(meta_fields[0]), 0, meta_fields,
};

const char *keel_resource_label(const struct keel_resource *r, char *buf, size_t n)
{
    const char *kind = r->kind ? r->kind->kind : (r->kind_name ? r->kind_name : "resource");
    const char *name = r->meta.name ? r->meta.name : "(unnamed)";
    if (r->ns && *r->ns)
        snprintf(buf, n, "%s %s/%s", kind, r->ns, name);
    else
        snprintf(buf, n, "%s %s", kind, name);
    return buf;
}

const struct keel_kind_desc *keel_kind_find(const char *kind)
{
    for (size_t i = 0; i < keel_nkinds; i++)
        if (strcmp(keel_kinds[i].kind, kind) == 0)
            return &keel_kinds[i];
    return NULL;
}

const struct keel_kind_desc *keel_kind_by_id(int id)
{
    for (size_t i = 0; i < keel_nkinds; i++)
        if (keel_kinds[i].id == id)
            return &keel_kinds[i];
    return NULL;
}
