/*
 * diag.c - diagnostic lists and field paths (see diag.h).
 */
#include "base/diag.h"

#include "base/arena.h"
#include "base/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void keel_diags_init(struct keel_diags *d)
{
    d->arena = keel_arena_new(8192);
    if (!d->arena) {
        fprintf(stderr, "keel: out of memory\n");
        abort();
    }
    keel_vec_init(&d->items, sizeof(struct keel_diag));
    d->errors = 0;
    d->warnings = 0;
}

void keel_diags_free(struct keel_diags *d)
{
    keel_vec_free(&d->items);
    keel_arena_free(d->arena);
    d->arena = NULL;
}

struct keel_diag *keel_diags_vadd(struct keel_diags *d, enum keel_severity sev, const struct keel_loc *loc,
                                  const char *path, const char *fmt, va_list ap)
{
    struct keel_diag *g = keel_vec_push(&d->items);
    if (!g) {
        fprintf(stderr, "keel: out of memory\n");
        abort();
    }
    g->sev = sev;
    if (loc) {
        g->loc = *loc;
        if (loc->file)
            g->loc.file = keel_arena_strdup(d->arena, loc->file);
    }
    g->path = (path && *path) ? keel_arena_strdup(d->arena, path) : NULL;
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    char *msg = keel_arena_xalloc(d->arena, n > 0 ? (size_t)n + 1 : 1);
    if (n > 0)
        vsnprintf(msg, (size_t)n + 1, fmt, ap);
    g->msg = msg;
    if (sev == KEEL_SEV_ERROR)
        d->errors++;
    else
        d->warnings++;
    return g;
}

struct keel_diag *keel_diags_add(struct keel_diags *d, enum keel_severity sev, const struct keel_loc *loc,
                                 const char *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct keel_diag *g = keel_diags_vadd(d, sev, loc, path, fmt, ap);
    va_end(ap);
    return g;
}

void keel_diags_set_resource(struct keel_diags *d, size_t from, const char *kind, const char *ns, const char *name)
{
    const char *k = kind ? keel_arena_strdup(d->arena, kind) : NULL;
    const char *n = ns ? keel_arena_strdup(d->arena, ns) : NULL;
    const char *m = name ? keel_arena_strdup(d->arena, name) : NULL;
    for (size_t i = from; i < d->items.len; i++) {
        struct keel_diag *g = keel_diags_at(d, i);
        if (!g->kind) {
            g->kind = k;
            g->ns = n;
            g->name = m;
        }
    }
}

void keel_path_init(struct keel_path *p, const char *root)
{
    p->len = 0;
    p->buf[0] = '\0';
    if (root)
        keel_path_field(p, root);
}

static size_t append(struct keel_path *p, const char *fmt, const char *s, size_t i)
{
    size_t old = p->len;
    int n = s ? snprintf(p->buf + p->len, sizeof(p->buf) - p->len, fmt, s)
              : snprintf(p->buf + p->len, sizeof(p->buf) - p->len, fmt, i);
    if (n < 0 || (size_t)n >= sizeof(p->buf) - p->len) {
        /* too deep: keep the path cut but well-formed */
        p->len = old;
        p->buf[old] = '\0';
        return old;
    }
    p->len += (size_t)n;
    return old;
}

size_t keel_path_field(struct keel_path *p, const char *name)
{
    return append(p, p->len ? ".%s" : "%s", name, 0);
}

size_t keel_path_index(struct keel_path *p, size_t i)
{
    return append(p, "[%zu]", NULL, i);
}

size_t keel_path_key(struct keel_path *p, const char *key)
{
    /* map keys print as .key when they look like identifiers, else [key] */
    int plain = *key != '\0';
    for (const char *c = key; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' ||
              *c == '_'))
            plain = 0;
    return append(p, plain ? (p->len ? ".%s" : "%s") : "[%s]", key, 0);
}

void keel_path_truncate(struct keel_path *p, size_t len)
{
    if (len <= p->len) {
        p->len = len;
        p->buf[len] = '\0';
    }
}

int keel_diag_format(const struct keel_diag *g, bool color, struct keel_buf *b)
{
    const char *sev = g->sev == KEEL_SEV_ERROR ? "error" : "warning";
    keel_buf_puts(b, g->loc.file ? g->loc.file : "<input>");
    if (g->loc.line)
        keel_buf_printf(b, ":%u:%u", g->loc.line, g->loc.col);
    if (color)
        keel_buf_printf(b, ": %s%s:\033[0m ", g->sev == KEEL_SEV_ERROR ? "\033[1;31m" : "\033[1;35m", sev);
    else
        keel_buf_printf(b, ": %s: ", sev);
    if (g->kind) {
        keel_buf_puts(b, g->kind);
        if (g->name)
            keel_buf_printf(b, " %s%s%s", g->ns ? g->ns : "", g->ns ? "/" : "", g->name);
        keel_buf_puts(b, ": ");
    }
    if (g->path)
        keel_buf_printf(b, "%s: ", g->path);
    return keel_buf_puts(b, g->msg);
}
