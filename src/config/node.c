/*
 * node.c - helpers over the document tree (see node.h).
 */
#include "config/node.h"

#include <string.h>

const char *keel_node_type_name(enum keel_node_type t)
{
    switch (t) {
    case KEEL_NODE_NULL:
        return "null";
    case KEEL_NODE_BOOL:
        return "boolean";
    case KEEL_NODE_INT:
        return "integer";
    case KEEL_NODE_FLOAT:
        return "number";
    case KEEL_NODE_STRING:
        return "string";
    case KEEL_NODE_SEQ:
        return "list";
    case KEEL_NODE_MAP:
        return "object";
    }
    return "?";
}

const struct keel_pair *keel_node_pair(const struct keel_node *map, const char *key)
{
    if (!map || map->type != KEEL_NODE_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->c.pairs[i].key->str, key) == 0)
            return &map->c.pairs[i];
    return NULL;
}

struct keel_node *keel_node_get(const struct keel_node *map, const char *key)
{
    const struct keel_pair *p = keel_node_pair(map, key);
    return p ? p->value : NULL;
}

const char *keel_node_get_str(const struct keel_node *map, const char *key)
{
    const struct keel_node *v = keel_node_get(map, key);
    if (!v || v->type == KEEL_NODE_SEQ || v->type == KEEL_NODE_MAP || v->type == KEEL_NODE_NULL)
        return NULL;
    return v->str;
}
