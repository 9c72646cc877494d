/*
 * buf.h - growable byte buffer with a hard size limit.
 *
 * Every buffer is created with a maximum size ("toobig", as curl's dynbuf):
 * hostile input can never grow it without bound. The contents are always
 * NUL-terminated (the NUL is not counted in len), so text can be passed to
 * C APIs directly. The buffer owns its memory; keel_buf_free() releases it.
 */
#ifndef KEEL_BASE_BUF_H
#define KEEL_BASE_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct keel_buf {
    char *data; /* NULL until the first write */
    size_t len;
    size_t cap;
    size_t max; /* len never exceeds max */
};

/* Empty buffer limited to max bytes. Does not allocate. */
void keel_buf_init(struct keel_buf *b, size_t max);
void keel_buf_free(struct keel_buf *b);
/* Empties the buffer, keeping its memory. */
void keel_buf_reset(struct keel_buf *b);
/* Drops the first n bytes (all of them when n >= len), keeping the rest in order. */
void keel_buf_consume(struct keel_buf *b, size_t n);

/* Append n bytes. Returns 0, KEEL_ENOMEM or KEEL_ETOOBIG (nothing appended). */
int keel_buf_append(struct keel_buf *b, const void *p, size_t n);
int keel_buf_puts(struct keel_buf *b, const char *s);
int keel_buf_putc(struct keel_buf *b, char c);
int keel_buf_printf(struct keel_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int keel_buf_vprintf(struct keel_buf *b, const char *fmt, va_list ap);
/* Appends s as a JSON string literal (quotes and escapes included). */
int keel_buf_json_str(struct keel_buf *b, const char *s);

/* Contents as a C string ("" when empty); valid until the next write. */
const char *keel_buf_cstr(const struct keel_buf *b);

#endif
