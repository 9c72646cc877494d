/*
 * regex.c - PCRE2 adapter (see regex.h). The only file of the mesh layer
 * that includes pcre2.h.
 */
#include "mesh/regex.h"

#include "base/arena.h"
#include "base/err.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdint.h>
#include <stdio.h>
#include <string.h>

struct keel_regex {
    pcre2_code *code;
    struct keel_regex *next;
};

/* Bump allocator over a stack buffer, for match data and interpreter frames. */
struct scratch {
    _Alignas(16) unsigned char buf[KEEL_REGEX_SCRATCH];
    size_t used;
};

static void *scratch_alloc(PCRE2_SIZE n, void *data)
{
    struct scratch *s = data;
    size_t need = ((size_t)n + 15u) & ~(size_t)15u;
    if (need > sizeof(s->buf) - s->used)
        return NULL;
    void *p = s->buf + s->used;
    s->used += need;
    return p;
}

static void scratch_free(void *p, void *data)
{
    (void)p;
    (void)data; /* released with the caller's stack frame */
}

/* Match data with room for every group of code (NULL: just the whole match). */
static pcre2_match_data *scratch_match_data(struct scratch *s, const pcre2_code *code)
{
    s->used = 0;
    pcre2_general_context *gc = pcre2_general_context_create(scratch_alloc, scratch_free, s);
    if (!gc)
        return NULL;
    return code ? pcre2_match_data_create_from_pattern(code, gc) : pcre2_match_data_create(1, gc);
}

struct keel_regex *keel_regex_compile(struct keel_arena *a, struct keel_regex **list, const char *pattern, bool full,
                                      char *err, size_t errlen)
{
    const char *src = full ? keel_arena_printf(a, "(?:%s)\\z", pattern) : pattern;
    int code;
    PCRE2_SIZE off;
    uint32_t opts = PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | (full ? PCRE2_ANCHORED : 0);
    pcre2_code *c = pcre2_compile((PCRE2_SPTR)src, PCRE2_ZERO_TERMINATED, opts, &code, &off, NULL);
    if (!c) {
        if (pcre2_get_error_message(code, (PCRE2_UCHAR *)err, errlen) < 0)
            snprintf(err, errlen, "invalid regular expression");
        return NULL;
    }
    (void)pcre2_jit_compile(c, PCRE2_JIT_COMPLETE); /* the interpreter is the fallback */
    struct keel_regex *re = keel_arena_xalloc(a, sizeof(*re));
    re->code = c;
    re->next = *list;
    *list = re;
    return re;
}

bool keel_regex_matches(const struct keel_regex *re, const char *s, size_t n)
{
    if (!re)
        return false;
    struct scratch sc;
    pcre2_match_data *md = scratch_match_data(&sc, NULL);
    if (!md)
        return false;
    return pcre2_match(re->code, (PCRE2_SPTR)(s ? s : ""), n, 0, 0, md, NULL) >= 0;
}

int keel_regex_substitute(const struct keel_regex *re, const char *s, size_t n, const char *repl, char *out, size_t cap)
{
    if (!re || !out || !cap)
        return KEEL_EINVAL;
    struct scratch sc;
    pcre2_match_data *md = scratch_match_data(&sc, re->code);
    if (!md)
        return KEEL_ENOMEM;
    PCRE2_SIZE olen = cap;
    int rc = pcre2_substitute(re->code, (PCRE2_SPTR)(s ? s : ""), n, 0, PCRE2_SUBSTITUTE_GLOBAL, md, NULL,
                              (PCRE2_SPTR)(repl ? repl : ""), PCRE2_ZERO_TERMINATED, (PCRE2_UCHAR *)out, &olen);
    if (rc == PCRE2_ERROR_NOMEMORY)
        return KEEL_ETOOBIG;
    if (rc < 0 || olen > INT32_MAX)
        return KEEL_EINVAL;
    return (int)olen;
}

const char *keel_regex_from_re2_substitution(struct keel_arena *a, const char *s)
{
    size_t n = strlen(s);
    char *o = keel_arena_xalloc(a, 2 * n + 1), *w = o;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '9') {
            *w++ = '$';
            *w++ = s[++i];
        } else if (s[i] == '\\' && i + 1 < n && s[i + 1] == '\\') {
            *w++ = '\\';
            i++;
        } else if (s[i] == '$') {
            *w++ = '$';
            *w++ = '$';
        } else {
            *w++ = s[i];
        }
    }
    *w = '\0';
    return o;
}

void keel_regex_release(struct keel_regex *list)
{
    for (struct keel_regex *r = list; r; r = r->next)
        pcre2_code_free(r->code);
}
