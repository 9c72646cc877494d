/*
 * node.h - Keel's own document tree: what YAML and JSON files become.
 *
 * config/yaml.c (the only user of libfyaml) turns each YAML or JSON document
 * into a tree of keel_node, and everything above works on this tree: the
 * schema decoder, the validators, `keel validate`. Scalars are resolved with
 * the YAML 1.2 core schema (plain `80` is an int, `"80"` a string, `true` a
 * bool, `~`/`null`/empty a null); quoted and block scalars are always
 * strings. Mapping keys are kept as text in source order. Aliases share the
 * anchored subtree (the tree is a DAG and must be treated as read-only).
 *
 * Memory: every node, string and array lives in the keel_arena given to the
 * loader; the tree is freed with that arena. Locations point into the file
 * name owned by the same arena.
 */
#ifndef KEEL_CONFIG_NODE_H
#define KEEL_CONFIG_NODE_H

#include "base/diag.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum keel_node_type {
    KEEL_NODE_NULL,
    KEEL_NODE_BOOL,
    KEEL_NODE_INT,
    KEEL_NODE_FLOAT,
    KEEL_NODE_STRING,
    KEEL_NODE_SEQ,
    KEEL_NODE_MAP,
};

struct keel_node;

struct keel_pair {
    struct keel_node *key; /* always a scalar; key->str is its text */
    struct keel_node *value;
};

struct keel_node {
    enum keel_node_type type;
    bool quoted;         /* scalar written quoted or as a block */
    bool merged;         /* MAP: received keys from a `<<` merge */
    bool block;          /* scalar written as a literal (|) or folded (>) block; loc is its first line */
    struct keel_loc loc; /* where the node starts */
    const char *str;     /* scalar text, NUL-terminated ("" for null/collections) */
    size_t len;          /* scalar text length */
    union {
        bool b;
        int64_t i;
        double d;
    } v;
    size_t n;      /* SEQ: items; MAP: pairs */
    size_t weight; /* nodes in this subtree, counting shared (aliased) subtrees each time */
    union {
        struct keel_node **items;
        struct keel_pair *pairs;
    } c;
};

/* Name of a node type for messages: "string", "integer", "list", "object"... */
const char *keel_node_type_name(enum keel_node_type t);

/* Value of key in a MAP node, or NULL (also NULL when node is not a MAP). */
struct keel_node *keel_node_get(const struct keel_node *map, const char *key);

/* The pair for key in a MAP node, or NULL. */
const struct keel_pair *keel_node_pair(const struct keel_node *map, const char *key);

/* Text of a scalar value of key, or NULL when missing or not a scalar. */
const char *keel_node_get_str(const struct keel_node *map, const char *key);

#endif
