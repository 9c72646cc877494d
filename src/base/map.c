/*
 * map.c - open-addressing hash map (see map.h).
 */
#include "base/map.h"

#include "base/err.h"

#include <stdlib.h>
#include <string.h>

uint64_t keel_hash(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

void keel_map_init(struct keel_map *m)
{
    m->slots = NULL;
    m->cap = 0;
    m->len = 0;
}

void keel_map_free(struct keel_map *m)
{
    free(m->slots);
    keel_map_init(m);
}

static struct keel_map_slot *find(const struct keel_map *m, const char *key, size_t klen, uint64_t h)
{
    if (!m->cap)
        return NULL;
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct keel_map_slot *s = &m->slots[i];
        if (!s->key)
            return s;
        if (s->hash == h && s->klen == klen && memcmp(s->key, key, klen) == 0)
            return s;
    }
}

static int grow(struct keel_map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    struct keel_map_slot *slots = calloc(cap, sizeof(*slots));
    if (!slots)
        return KEEL_ENOMEM;
    struct keel_map old = *m;
    m->slots = slots;
    m->cap = cap;
    for (size_t i = 0; i < old.cap; i++) {
        if (old.slots[i].key) {
            struct keel_map_slot *s = find(m, old.slots[i].key, old.slots[i].klen, old.slots[i].hash);
            *s = old.slots[i];
        }
    }
    free(old.slots);
    return 0;
}

int keel_map_put(struct keel_map *m, const char *key, size_t klen, void *val, void **old)
{
    if ((m->len + 1) * 10 > m->cap * 7) {
        int rc = grow(m);
        if (rc)
            return rc;
    }
    uint64_t h = keel_hash(key, klen);
    struct keel_map_slot *s = find(m, key, klen, h);
    if (old)
        *old = s->key ? s->val : NULL;
    if (!s->key) {
        s->key = key;
        s->klen = klen;
        s->hash = h;
        m->len++;
    }
    s->val = val;
    return 0;
}

void *keel_map_get(const struct keel_map *m, const char *key, size_t klen)
{
    struct keel_map_slot *s = find(m, key, klen, keel_hash(key, klen));
    return s && s->key ? s->val : NULL;
}

void *keel_map_del(struct keel_map *m, const char *key, size_t klen)
{
    struct keel_map_slot *s = find(m, key, klen, keel_hash(key, klen));
    if (!s || !s->key)
        return NULL;
    void *val = s->val;
    size_t mask = m->cap - 1;
    size_t hole = (size_t)(s - m->slots);
    /* backward-shift: move later entries of the probe run into the hole */
    for (size_t i = (hole + 1) & mask; m->slots[i].key; i = (i + 1) & mask) {
        size_t home = m->slots[i].hash & mask;
        /* entry at i may move to hole iff home is not in (hole, i] cyclically */
        bool movable = (i > hole) ? (home <= hole || home > i) : (home <= hole && home > i);
        if (movable) {
            m->slots[hole] = m->slots[i];
            hole = i;
        }
    }
    memset(&m->slots[hole], 0, sizeof(m->slots[hole]));
    m->len--;
    return val;
}

const struct keel_map_slot *keel_map_next(const struct keel_map *m, size_t *it)
{
    while (*it < m->cap) {
        const struct keel_map_slot *s = &m->slots[(*it)++];
        if (s->key)
            return s;
    }
    return NULL;
}
