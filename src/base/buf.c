/*
 * buf.c - growable, capped byte buffer (see buf.h).
 */
#include "base/buf.h"

#include "base/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void keel_buf_init(struct keel_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void keel_buf_free(struct keel_buf *b)
{
    free(b->data);
    keel_buf_init(b, b->max);
}

void keel_buf_reset(struct keel_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void keel_buf_consume(struct keel_buf *b, size_t n)
{
    if (n >= b->len) {
        keel_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

static int reserve(struct keel_buf *b, size_t extra)
{
    if (extra > b->max - b->len || b->len > b->max)
        return KEEL_ETOOBIG;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap * 2 < cap ? need : cap * 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return KEEL_ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int keel_buf_append(struct keel_buf *b, const void *p, size_t n)
{
    int rc = reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int keel_buf_puts(struct keel_buf *b, const char *s)
{
    return keel_buf_append(b, s, strlen(s));
}

int keel_buf_putc(struct keel_buf *b, char c)
{
    return keel_buf_append(b, &c, 1);
}

int keel_buf_vprintf(struct keel_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return KEEL_EINVAL;
    int rc = reserve(b, (size_t)n);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int keel_buf_printf(struct keel_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = keel_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int keel_buf_json_str(struct keel_buf *b, const char *s)
{
    int rc = keel_buf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)s; !rc && *p; p++) {
        switch (*p) {
        case '"':
            rc = keel_buf_puts(b, "\\\"");
            break;
        case '\\':
            rc = keel_buf_puts(b, "\\\\");
            break;
        case '\n':
            rc = keel_buf_puts(b, "\\n");
            break;
        case '\r':
            rc = keel_buf_puts(b, "\\r");
            break;
        case '\t':
            rc = keel_buf_puts(b, "\\t");
            break;
        default:
            if (*p < 0x20)
                rc = keel_buf_printf(b, "\\u%04x", *p);
            else
                rc = keel_buf_putc(b, (char)*p);
        }
    }
    return rc ? rc : keel_buf_putc(b, '"');
}

const char *keel_buf_cstr(const struct keel_buf *b)
{
    return b->data ? b->data : "";
}
