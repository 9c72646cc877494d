/*
 * schema.h - descriptors of Keel's typed resource model.
 *
 * Every Istio kind, the Kubernetes kinds the mesh reads and MeshConfig are
 * described by static tables (generated into schema_gen.[ch] by
 * tools/gen_schema.py from Istio's CRD schemas and the YAML files in tools/schema/).
 * A keel_msgdesc lists the fields of one message: JSON name, value type,
 * shape (one value, list, map), where the value lives in the generated C
 * struct, and the constraints the CRD schema states (required, enum values,
 * ranges, lengths, patterns, oneof groups, and the simple CEL rules).
 * config/decode.c walks these tables to turn a keel_node tree into structs;
 * nothing here allocates or changes at run time.
 *
 * Generated structs all begin with `struct keel_obj _o`, which remembers
 * the mapping node the struct was decoded from: validators use it to find
 * the location of any field, and to tell "unset" from "set to zero" for
 * scalar fields (keel_obj_has()).
 */
#ifndef KEEL_CONFIG_SCHEMA_H
#define KEEL_CONFIG_SCHEMA_H

#include "config/node.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keel_obj {
    const struct keel_node *node; /* the MAP node decoded from; NULL if absent */
};

/* map<string,string> and map<string,integer> entries */
struct keel_kv_str {
    const char *key;
    const char *value;
};
struct keel_kv_int {
    const char *key;
    int64_t value;
};
struct keel_kv_bool {
    const char *key;
    bool value;
};

/* Kubernetes IntOrString */
struct keel_intstr {
    bool is_str;
    int64_t i;
    const char *s; /* text in both cases */
};

enum keel_ftype {
    KEEL_FT_STRING,
    KEEL_FT_BYTES, /* base64 text, checked, kept as text */
    KEEL_FT_BOOL,
    KEEL_FT_INT,
    KEEL_FT_DOUBLE,
    KEEL_FT_DURATION, /* int64_t nanoseconds */
    KEEL_FT_ENUM,     /* int: index into enums[] */
    KEEL_FT_MSG,
    KEEL_FT_ANY, /* const struct keel_node *: accepted unchecked */
    KEEL_FT_INTSTR,
};

enum keel_fshape {
    KEEL_FS_ONE,
    KEEL_FS_LIST,
    KEEL_FS_MAP,
};

/* field flags */
enum {
    KEEL_FF_REQUIRED = 1u << 0,
    KEEL_FF_NULLABLE = 1u << 1,       /* protobuf wrapper type */
    KEEL_FF_DUR_MIN_1MS = 1u << 2,    /* CEL duration(self) >= duration('1ms') */
    KEEL_FF_NO_STAR = 1u << 3,        /* CEL !self.contains("*") */
    KEEL_FF_NOT_STAR = 1u << 4,       /* CEL self != "*" */
    KEEL_FF_MUST_BE_EMPTY = 1u << 5,  /* CEL self.size() == 0 */
    KEEL_FF_URL_HTTP = 1u << 6,       /* CEL url(self).getScheme() in [http, https] */
    KEEL_FF_KEY_NONEMPTY = 1u << 7,   /* map keys: size != 0 */
    KEEL_FF_KEY_NO_STAR = 1u << 8,    /* map keys: no '*' */
    KEEL_FF_KEY_PORT_NAME = 1u << 9,  /* map keys: DNS-1123 label < 63 */
    KEEL_FF_KEY_PORT_NUM = 1u << 10,  /* map keys: integer 1..65535 */
    KEEL_FF_HAS_MIN = 1u << 11,
    KEEL_FF_HAS_MAX = 1u << 12,
    KEEL_FF_UNIQUE_NUMBER = 1u << 13, /* list of objects: .number unique */
    KEEL_FF_HTTP_SCHEME = 1u << 14,   /* CEL self in ["", "HTTP", "HTTPS"] */
    KEEL_FF_OPEN = 1u << 15,          /* MSG: unknown keys accepted (Kubernetes passthrough) */
};

struct keel_msgdesc;

struct keel_field {
    const char *name; /* JSON name */
    uint8_t type;     /* enum keel_ftype */
    uint8_t shape;    /* enum keel_fshape */
    uint8_t oneof;    /* 0 = none, else group number within the message */
    uint32_t flags;
    uint32_t offset;       /* of the value (ONE) or the array pointer (LIST/MAP) */
    uint32_t count_offset; /* of the size_t count (LIST/MAP) */
    uint32_t elem_size;    /* LIST/MAP: element size */
    uint32_t value_offset; /* MAP: offset of the value inside an entry */
    const struct keel_msgdesc *msg;
    const char *const *enums;
    uint16_t nenums;
    int64_t min, max;     /* INT/DOUBLE bounds (with HAS_MIN/HAS_MAX) */
    uint32_t min_len, max_len;     /* STRING length (max 0 = unlimited) */
    uint32_t min_items, max_items; /* LIST/MAP size (max 0 = unlimited) */
    const char *pattern;   /* CRD `pattern` regex, or NULL */
    const char *rule_msg;  /* CRD message for the CEL-derived check, or NULL */
};

struct keel_msgdesc {
    const char *name; /* C struct name without keel_ prefix */
    uint32_t size;
    uint16_t nfields;
    uint32_t flags; /* KEEL_FF_OPEN */
    const struct keel_field *fields;
};

enum keel_kind_class {
    KEEL_KIND_ISTIO,   /* typed spec, validated with Istio's rules */
    KEEL_KIND_K8S,     /* typed subset of a Kubernetes kind */
};

struct keel_kind_desc {
    int id;           /* enum keel_kind */
    const char *kind; /* "VirtualService" */
    const char *group;
    const char *const *versions; /* NULL-terminated, storage version first */
    uint8_t kclass;              /* enum keel_kind_class */
    const struct keel_msgdesc *body; /* top-level fields except apiVersion/kind/metadata */
};

/* Kubernetes kinds accepted and not read (group + kind, "*" = any kind). */
struct keel_skipped_kind {
    const char *group;
    const char *kind;
};

/* Does the object's source mapping contain key `name` with a non-null value? */
bool keel_obj_has(const struct keel_obj *o, const char *name);

/* Location of field `name` (its value), or of the object when absent. */
struct keel_loc keel_obj_loc(const struct keel_obj *o, const char *name);

/* Location of item i of list field `name`; falls back like keel_obj_loc(). */
struct keel_loc keel_obj_item_loc(const struct keel_obj *o, const char *name, size_t i);

#endif
