/*
 * map.h - hash map from byte-string keys to pointers.
 *
 * Open addressing with linear probing and backward-shift deletion; the table
 * doubles at 70% load. Keys are borrowed, not copied: the caller keeps them
 * alive (typically in an arena) while they are in the map. Values are opaque
 * pointers the map never dereferences. Not thread-safe for writers; any
 * number of readers may share a map nobody writes (e.g. inside a snapshot).
 */
#ifndef KEEL_BASE_MAP_H
#define KEEL_BASE_MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct keel_map_slot {
    const char *key; /* NULL = empty slot */
    size_t klen;
    uint64_t hash;
    void *val;
};

struct keel_map {
    struct keel_map_slot *slots;
    size_t cap; /* 0 or a power of two */
    size_t len;
};

/* 64-bit hash of n bytes (FNV-1a with a final avalanche). */
uint64_t keel_hash(const void *p, size_t n);

void keel_map_init(struct keel_map *m);
void keel_map_free(struct keel_map *m);

/* Inserts or replaces. Returns 0 or KEEL_ENOMEM (map unchanged). If old is
 * non-NULL it receives the replaced value (or NULL). */
int keel_map_put(struct keel_map *m, const char *key, size_t klen, void *val, void **old);

/* Value for key, or NULL. */
void *keel_map_get(const struct keel_map *m, const char *key, size_t klen);

/* Removes key; returns its value or NULL when absent. */
void *keel_map_del(struct keel_map *m, const char *key, size_t klen);

/* Iteration: start with *it = 0; returns the next occupied slot or NULL. The
 * map must not change during iteration. */
const struct keel_map_slot *keel_map_next(const struct keel_map *m, size_t *it);

#endif
