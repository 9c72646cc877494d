/*
 * vec.c - growable array (see vec.h).
 */
#include "base/vec.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void keel_vec_init(struct keel_vec *v, size_t elem)
{
    v->items = NULL;
    v->len = 0;
    v->cap = 0;
    v->elem = elem;
}

void keel_vec_free(struct keel_vec *v)
{
    free(v->items);
    keel_vec_init(v, v->elem);
}

void *keel_vec_push(struct keel_vec *v)
{
    if (v->len == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        if (cap > SIZE_MAX / v->elem)
            return NULL;
        void *p = realloc(v->items, cap * v->elem);
        if (!p)
            return NULL;
        v->items = p;
        v->cap = cap;
    }
    void *slot = (char *)v->items + v->len * v->elem;
    memset(slot, 0, v->elem);
    v->len++;
    return slot;
}

void *keel_vec_at(const struct keel_vec *v, size_t i)
{
    assert(i < v->len);
    return (char *)v->items + i * v->elem;
}
