/*
 * vec.h - growable array of fixed-size elements.
 *
 * The vector owns its storage (malloc); elements are plain bytes, moved with
 * memcpy on growth, so do not keep pointers to elements across a push.
 */
#ifndef KEEL_BASE_VEC_H
#define KEEL_BASE_VEC_H

#include <stddef.h>

struct keel_vec {
    void *items;
    size_t len;
    size_t cap;
    size_t elem; /* element size in bytes */
};

void keel_vec_init(struct keel_vec *v, size_t elem);
void keel_vec_free(struct keel_vec *v);

/* Appends one zeroed element and returns it; NULL on OOM (vector unchanged). */
void *keel_vec_push(struct keel_vec *v);

/* Element i (no bounds check beyond an assert in debug builds). */
void *keel_vec_at(const struct keel_vec *v, size_t i);

#endif
