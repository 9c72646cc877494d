/*
 * arena.c - chunked bump allocator (see arena.h).
 *
 * Chunks form a singly linked list; the newest chunk is at the head and is
 * the only one allocated from. A request larger than a quarter of the chunk
 * size gets its own chunk, linked behind the head, so it does not waste the
 * head's free space.
 */
#include "base/arena.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARENA_ALIGN 16u

struct chunk {
    struct chunk *next;
    size_t size; /* usable bytes in data[] */
    size_t used;
    _Alignas(16) unsigned char data[];
};

struct keel_arena {
    struct chunk *head;
    size_t chunk_size;
    size_t used;
};

struct keel_arena *keel_arena_new(size_t chunk_size)
{
    struct keel_arena *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->chunk_size = chunk_size ? chunk_size : 16384;
    return a;
}

void keel_arena_free(struct keel_arena *a)
{
    if (!a)
        return;
    struct chunk *c = a->head;
    while (c) {
        struct chunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

void keel_arena_reset(struct keel_arena *a)
{
    struct chunk *keep = NULL;
    for (struct chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        if (!keep && c->size == a->chunk_size)
            keep = c;
        else
            free(c);
    }
    if (keep) {
        keep->next = NULL;
        keep->used = 0;
    }
    a->head = keep;
    a->used = 0;
}

static struct chunk *chunk_new(size_t size)
{
    if (size > SIZE_MAX - sizeof(struct chunk))
        return NULL;
    struct chunk *c = malloc(sizeof(*c) + size);
    if (!c)
        return NULL;
    c->next = NULL;
    c->size = size;
    c->used = 0;
    return c;
}

void *keel_arena_alloc(struct keel_arena *a, size_t n)
{
    if (n == 0)
        n = 1;
    if (n > SIZE_MAX - ARENA_ALIGN)
        return NULL;
    size_t need = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    struct chunk *c = a->head;
    if (!c || c->size - c->used < need) {
        if (need > a->chunk_size / 4) {
            /* big allocation: private chunk behind the head */
            struct chunk *big = chunk_new(need);
            if (!big)
                return NULL;
            big->used = need;
            if (a->head) {
                big->next = a->head->next;
                a->head->next = big;
            } else {
                a->head = big;
            }
            a->used += need;
            memset(big->data, 0, need);
            return big->data;
        }
        c = chunk_new(a->chunk_size);
        if (!c)
            return NULL;
        c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += need;
    a->used += need;
    memset(p, 0, need);
    return p;
}

void *keel_arena_xalloc(struct keel_arena *a, size_t n)
{
    void *p = keel_arena_alloc(a, n);
    if (!p) {
        fprintf(stderr, "keel: out of memory (arena, %zu bytes)\n", n);
        abort();
    }
    return p;
}

char *keel_arena_strndup(struct keel_arena *a, const char *s, size_t n)
{
    char *p = keel_arena_xalloc(a, n + 1);
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *keel_arena_strdup(struct keel_arena *a, const char *s)
{
    return keel_arena_strndup(a, s, strlen(s));
}

char *keel_arena_strdup_lower(struct keel_arena *a, const char *s)
{
    char *d = keel_arena_strdup(a, s ? s : "");
    for (char *p = d; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p + ('a' - 'A'));
    return d;
}

void *keel_arena_vec_push(struct keel_arena *a, struct keel_arena_vec *x, size_t elem)
{
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 8;
        void *nv = keel_arena_xalloc(a, cap * elem);
        if (x->n)
            memcpy(nv, x->v, x->n * elem);
        x->v = nv;
        x->cap = cap;
    }
    return (char *)x->v + elem * x->n++;
}

char *keel_arena_printf(struct keel_arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *p = keel_arena_xalloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

size_t keel_arena_used(const struct keel_arena *a)
{
    return a->used;
}
