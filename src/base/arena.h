/*
 * arena.h - region allocator: many allocations, one free.
 *
 * A keel_arena hands out memory from large chunks and releases all of it in
 * keel_arena_free(). It is the lifetime of a loaded config document, of a
 * compiled snapshot and (later) of one request. Memory is zeroed and aligned
 * to 16 bytes. Not thread-safe: one owner at a time.
 *
 * Failure: keel_arena_alloc() returns NULL when memory runs out and leaves the
 * arena usable. keel_arena_xalloc() aborts instead; use it only in boot and
 * config-loading code, where OOM ends the process (docs/principles.md).
 */
#ifndef KEEL_BASE_ARENA_H
#define KEEL_BASE_ARENA_H

#include <stddef.h>

struct keel_arena;

/* New arena whose chunks hold at least chunk_size bytes (0 = 16 KiB).
 * Returns NULL on OOM. */
struct keel_arena *keel_arena_new(size_t chunk_size);

/* Frees every allocation made from the arena, and the arena. NULL is a no-op. */
void keel_arena_free(struct keel_arena *a);
/* Frees every allocation made from the arena but keeps one chunk of its chunk size (when it has one) for the next
 * allocations: an arena used once per request is reset and reused instead of freed and made again. */
void keel_arena_reset(struct keel_arena *a);

/* n zeroed bytes, 16-byte aligned; NULL on OOM (or n overflow). */
void *keel_arena_alloc(struct keel_arena *a, size_t n);

/* Like keel_arena_alloc() but aborts on OOM. */
void *keel_arena_xalloc(struct keel_arena *a, size_t n);

/* Copy of s[0..n) plus a NUL; aborts on OOM. */
char *keel_arena_strndup(struct keel_arena *a, const char *s, size_t n);

/* Copy of a NUL-terminated string; aborts on OOM. */
char *keel_arena_strdup(struct keel_arena *a, const char *s);

/* ASCII-lowercased copy of s (NULL copies as ""); aborts on OOM. For host names and header names. */
char *keel_arena_strdup_lower(struct keel_arena *a, const char *s);

/* An array that grows inside an arena (doubling; the old block stays in the arena until it is freed).
 * Zero-initialise it; v is the elements, n how many are in use. */
struct keel_arena_vec {
    void *v;
    size_t n, cap;
};

/* Room for one more element of elem bytes at the end of x (not zeroed); aborts on OOM. */
void *keel_arena_vec_push(struct keel_arena *a, struct keel_arena_vec *x, size_t elem);

/* printf into the arena; aborts on OOM. */
char *keel_arena_printf(struct keel_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Bytes handed out so far (for memory accounting and tests). */
size_t keel_arena_used(const struct keel_arena *a);

#endif
